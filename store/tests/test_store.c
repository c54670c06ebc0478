/*
 * The store node with real raft (libuv backend, TCP on 127.0.0.1) and real LMDB: single-node
 * reads, writes, watches and restart; and three nodes in one loop, where the forward and
 * read-index hooks call the leader's store directly (the agent does the same over HTTP), and
 * where followers learn of commits without waiting for a heartbeat.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <raft.h>

#include "store/kv_internal.h"
#include "store/store.h"

#define N_MAX 3

struct cluster;

struct node {
	struct cluster *c;
	struct store *s;
	uint64_t id;
	char dir[256];
	char addr[64];
	uint8_t cluster_id[STORE_CLUSTER_ID_LEN];
	bool up;
};

struct cluster {
	uv_loop_t loop;
	struct node nodes[N_MAX];
	unsigned n;
	char root[128];
	int port_base;
	unsigned heartbeat_ms;    /* 0: 30 ms, with a 300 ms election timeout */
	unsigned fail_forwards;   /* the next N forwards fail on a later loop turn */
	unsigned refuse_forwards; /* the next N forwards cannot start (the hook returns -1) */
	/* The stranger hook's calls (any node's) and the last one's details. */
	unsigned strangers;
	uint64_t stranger_id;
	char stranger_address[64];
	bool stranger_sent_id;
	uint8_t stranger_cluster[STORE_CLUSTER_ID_LEN];
	/* The fatal hook's calls (any node's) and the last one's message. */
	unsigned fatals;
	char fatal_msg[512];
	/* The damaged-snapshot hook's calls (any node's) and the last one's message. */
	unsigned damaged;
	char damaged_msg[640];
	bool default_trailing; /* the store's own snapshot trailing, not 8 */
};

/* ------------------------------------------------------------------------------------------ */
/* Hooks: deliver to the leader's store on a later loop turn, as a network would.              */

struct hop {
	uv_timer_t t;
	struct cluster *c;
	uint64_t leader;
	void *buf;
	size_t len;
	store_forward_done fdone;
	store_readindex_done rdone;
	void *done_data;
};

static struct node *by_id(struct cluster *c, uint64_t id)
{
	for (unsigned i = 0; i < c->n; i++) {
		if (c->nodes[i].id == id && c->nodes[i].up) {
			return &c->nodes[i];
		}
	}
	return NULL;
}

static void hop_closed(uv_handle_t *h)
{
	struct hop *p = h->data;
	free(p->buf);
	free(p);
}

static void fwd_committed(void *data, int status)
{
	struct hop *p = data;
	p->fdone(p->done_data, status);
	uv_close((uv_handle_t *)&p->t, hop_closed);
}

static void ri_answered(void *data, int status, uint64_t index)
{
	struct hop *p = data;
	p->rdone(p->done_data, status, index);
	uv_close((uv_handle_t *)&p->t, hop_closed);
}

static void hop_fire(uv_timer_t *t)
{
	struct hop *p = t->data;
	struct node *l = by_id(p->c, p->leader);
	int rv = STORE_ENOLEADER;
	if (l != NULL) {
		rv = p->fdone ? store_propose_forwarded(l->s, p->buf, p->len, fwd_committed, p)
		              : store_readindex(l->s, ri_answered, p);
	}
	if (rv != STORE_OK) {
		if (p->fdone) {
			p->fdone(p->done_data, rv);
		} else {
			p->rdone(p->done_data, rv, 0);
		}
		uv_close((uv_handle_t *)&p->t, hop_closed);
	}
}

static void hop_start(struct cluster *c, struct hop *p)
{
	p->c = c;
	uv_timer_init(&c->loop, &p->t);
	p->t.data = p;
	uv_timer_start(&p->t, hop_fire, 1, 0);
}

static int hook_forward(void *data, uint64_t leader, const void *buf, size_t len,
                        store_forward_done done, void *done_data)
{
	struct cluster *c = data;
	if (c->refuse_forwards > 0) {
		c->refuse_forwards--;
		return -1;
	}
	struct hop *p = calloc(1, sizeof *p);
	assert_non_null(p);
	p->leader = leader;
	if (c->fail_forwards > 0) {
		c->fail_forwards--;
		p->leader = 0; /* nobody: answered STORE_ENOLEADER */
	}
	p->buf = malloc(len);
	memcpy(p->buf, buf, len);
	p->len = len;
	p->fdone = done;
	p->done_data = done_data;
	hop_start(data, p);
	return 0;
}

static int hook_readindex(void *data, uint64_t leader, store_readindex_done done, void *done_data)
{
	struct hop *p = calloc(1, sizeof *p);
	assert_non_null(p);
	p->leader = leader;
	p->rdone = done;
	p->done_data = done_data;
	hop_start(data, p);
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Helpers                                                                                     */

static void run_until(struct cluster *c, bool (*pred)(struct cluster *, void *), void *arg,
                      unsigned ms)
{
	uint64_t end = uv_now(&c->loop) + ms;
	while (!pred(c, arg)) {
		assert_true(uv_now(&c->loop) < end);
		uv_run(&c->loop, UV_RUN_ONCE);
		uv_update_time(&c->loop);
	}
}

static bool timer_done_pred(struct cluster *c, void *arg)
{
	(void)c;
	return *(bool *)arg;
}

static void sleep_cb(uv_timer_t *t)
{
	*(bool *)t->data = true;
}

static void run_for(struct cluster *c, unsigned ms)
{
	uv_timer_t t;
	bool done = false;
	uv_timer_init(&c->loop, &t);
	t.data = &done;
	uv_timer_start(&t, sleep_cb, ms, 0);
	run_until(c, timer_done_pred, &done, ms + 5000);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&c->loop, UV_RUN_NOWAIT);
}

static void hook_stranger(void *data, uint64_t id, const char *address, const uint8_t *theirs)
{
	struct cluster *c = data;
	c->strangers++;
	c->stranger_id = id;
	snprintf(c->stranger_address, sizeof c->stranger_address, "%s", address);
	c->stranger_sent_id = theirs != NULL;
	if (theirs != NULL) {
		memcpy(c->stranger_cluster, theirs, STORE_CLUSTER_ID_LEN);
	}
}

static void hook_fatal(void *data, const char *msg)
{
	struct cluster *c = data;
	c->fatals++;
	snprintf(c->fatal_msg, sizeof c->fatal_msg, "%s", msg);
}

static void hook_snapshot_damaged(void *data, const char *msg)
{
	struct cluster *c = data;
	c->damaged++;
	snprintf(c->damaged_msg, sizeof c->damaged_msg, "%s", msg);
}

static void node_open(struct cluster *c, unsigned i)
{
	struct node *n = &c->nodes[i];
	struct store_config cfg = {
	    .id = n->id,
	    .data_dir = n->dir,
	    .peer_address = n->addr,
	    .election_timeout_ms = c->heartbeat_ms ? 5 * c->heartbeat_ms : 300,
	    .heartbeat_timeout_ms = c->heartbeat_ms ? c->heartbeat_ms : 30,
	    .snapshot_threshold = 32,
	    .snapshot_trailing = c->default_trailing ? 0 : 8,
	    .forward = hook_forward,
	    .readindex = hook_readindex,
	    .stranger = hook_stranger,
	    .fatal = hook_fatal,
	    .snapshot_damaged = hook_snapshot_damaged,
	    .hook_data = c,
	};
	memcpy(cfg.cluster_id, n->cluster_id, sizeof cfg.cluster_id);
	char *err = NULL;
	int rv = store_new(&c->loop, &cfg, &n->s, &err);
	if (rv != STORE_OK) {
		fail_msg("store_new: %s", err ? err : "?");
	}
	n->up = true;
}

static void closed_cb(void *data)
{
	*(bool *)data = true;
}

static void node_close(struct cluster *c, unsigned i)
{
	bool closed = false;
	c->nodes[i].up = false;
	store_close(c->nodes[i].s, closed_cb, &closed);
	run_until(c, timer_done_pred, &closed, 10000);
	c->nodes[i].s = NULL;
}

static void cluster_init(struct cluster *c, unsigned n)
{
	memset(c, 0, sizeof *c);
	uv_loop_init(&c->loop);
	snprintf(c->root, sizeof c->root, "/tmp/tabby-test-store.XXXXXX");
	assert_non_null(mkdtemp(c->root));
	c->n = n;
	c->port_base = 20000 + (getpid() % 2000) * 10;
	for (unsigned i = 0; i < n; i++) {
		struct node *nd = &c->nodes[i];
		nd->c = c;
		nd->id = i + 1;
		snprintf(nd->dir, sizeof nd->dir, "%s/n%u", c->root, i + 1);
		snprintf(nd->addr, sizeof nd->addr, "127.0.0.1:%d", c->port_base + (int)i);
	}
}

static void cluster_close(struct cluster *c)
{
	for (unsigned i = 0; i < c->n; i++) {
		if (c->nodes[i].up) {
			node_close(c, i);
		}
	}
	uv_run(&c->loop, UV_RUN_NOWAIT);
	assert_int_equal(uv_loop_close(&c->loop), 0);
	char cmd[256];
	snprintf(cmd, sizeof cmd, "rm -rf %s", c->root);
	assert_int_equal(system(cmd), 0);
}

struct put {
	struct store_write w;
	bool done;
	int status;
	int rstatus;
	int64_t revision;
};

static void put_cb(struct store_write *w, int status, const struct kv_result *r)
{
	struct put *p = w->data;
	p->done = true;
	p->status = status;
	if (status == STORE_OK) {
		p->rstatus = r->status;
		p->revision = r->revision;
	}
}

static bool put_done_pred(struct cluster *c, void *arg)
{
	(void)c;
	return ((struct put *)arg)->done;
}

static struct put do_put(struct cluster *c, unsigned i, const char *key, const char *value,
                         bool has_prev, int64_t prev)
{
	struct put p = {0};
	p.w.data = &p;
	struct kv_op op = {.type = KV_OP_PUT,
	                   .space = KV_SPACE_USER,
	                   .key = {(const uint8_t *)key, strlen(key)},
	                   .value = {(const uint8_t *)value, strlen(value)},
	                   .has_prev = has_prev,
	                   .prev_revision = prev};
	assert_int_equal(store_write(c->nodes[i].s, &p.w, &op, put_cb), STORE_OK);
	run_until(c, put_done_pred, &p, 20000);
	return p;
}

/* The value of key on node i's replica, or NULL. */
static char *get_local(struct cluster *c, unsigned i, const char *key)
{
	struct kv_kv *kvs = NULL;
	unsigned n = 0;
	bool more;
	int64_t rev;
	assert_int_equal(store_range(c->nodes[i].s, KV_SPACE_USER,
	                             (struct kv_bytes){(const uint8_t *)key, strlen(key)}, false, 0,
	                             &kvs, &n, &more, &rev),
	                 STORE_OK);
	char *v = n ? strndup((const char *)kvs[0].value, kvs[0].value_len) : NULL;
	kv_kvs_free(kvs, n);
	return v;
}

static bool leader_ready_pred(struct cluster *c, void *arg)
{
	unsigned *out = arg;
	for (unsigned i = 0; i < c->n; i++) {
		struct store_status st;
		if (!c->nodes[i].up) {
			continue;
		}
		store_get_status(c->nodes[i].s, &st);
		if (st.ready) {
			*out = i;
			return true;
		}
	}
	return false;
}

/* ------------------------------------------------------------------------------------------ */
/* Tests                                                                                       */

struct watched {
	struct store_watch w;
	int n;
	int64_t last_rev;
	char last_key[64];
	int end_status; /* how the store ended the watch, or -1 */
};

static void watch_cb(struct store_watch *w, const struct kv_event *ev, int status)
{
	struct watched *x = w->data;
	if (ev == NULL) {
		x->end_status = status;
		return;
	}
	x->n++;
	x->last_rev = ev->kv.mod_revision;
	snprintf(x->last_key, sizeof x->last_key, "%.*s", (int)ev->kv.key_len,
	         (const char *)ev->kv.key);
}

static bool snapshot_taken_pred(struct cluster *c, void *arg)
{
	(void)c;
	struct store_status st;
	store_get_status(((struct node *)arg)->s, &st);
	return st.snapshots_taken >= 1;
}

/* One node: it elects itself, writes get revisions, a failed condition changes nothing, watches
 * see history and live events, and a restart rebuilds the state from raft. */
static void test_single_node(void **state)
{
	(void)state;
	struct cluster c;
	cluster_init(&c, 1);
	node_open(&c, 0);
	char *err = NULL;
	assert_int_equal(store_bootstrap(c.nodes[0].s, &err), STORE_OK);
	assert_int_equal(store_start(c.nodes[0].s, &err), STORE_OK);
	unsigned leader;
	run_until(&c, leader_ready_pred, &leader, 5000);

	struct put p1 = do_put(&c, 0, "a/1", "one", false, 0);
	assert_int_equal(p1.status, STORE_OK);
	assert_int_equal(p1.rstatus, KV_R_OK);
	struct put p2 = do_put(&c, 0, "a/2", "two", false, 0);
	assert_int_equal(p2.revision, p1.revision + 1);
	struct put bad = do_put(&c, 0, "a/1", "nope", true, p1.revision + 100);
	assert_int_equal(bad.rstatus, KV_R_COND_FAILED);
	struct put good = do_put(&c, 0, "a/1", "uno", true, p1.revision);
	assert_int_equal(good.rstatus, KV_R_OK);
	char *v = get_local(&c, 0, "a/1");
	assert_string_equal(v, "uno");
	free(v);

	/* History from the first revision, then a live event. */
	struct watched x = {.end_status = -1};
	x.w.data = &x;
	assert_int_equal(store_watch_start(c.nodes[0].s, &x.w, KV_SPACE_USER,
	                                   (struct kv_bytes){(const uint8_t *)"a/", 2}, true,
	                                   p1.revision, watch_cb),
	                 STORE_OK);
	assert_int_equal(x.n, 3);
	do_put(&c, 0, "a/3", "three", false, 0);
	do_put(&c, 0, "b/1", "other prefix", false, 0);
	assert_int_equal(x.n, 4);
	assert_string_equal(x.last_key, "a/3");
	store_watch_stop(c.nodes[0].s, &x.w);

	/* Enough writes to take snapshots (threshold 32), then restart from disk. */
	for (int i = 0; i < 100; i++) {
		char k[32];
		snprintf(k, sizeof k, "many/%03d", i);
		assert_int_equal(do_put(&c, 0, k, "v", false, 0).status, STORE_OK);
	}
	/* A snapshot's file is written on a worker thread, and the writes can outrun it on a busy
	 * disk. */
	run_until(&c, snapshot_taken_pred, &c.nodes[0], 5000);
	struct store_status st;
	store_get_status(c.nodes[0].s, &st);
	int64_t rev_before = st.revision;
	node_close(&c, 0);

	assert_true(store_has_state(c.nodes[0].dir));
	node_open(&c, 0);
	assert_int_equal(store_start(c.nodes[0].s, &err), STORE_OK);
	run_until(&c, leader_ready_pred, &leader, 5000);
	store_get_status(c.nodes[0].s, &st);
	assert_int_equal(st.revision, rev_before);
	assert_true(st.snapshots_restored >= 1);
	v = get_local(&c, 0, "many/099");
	assert_string_equal(v, "v");
	free(v);
	v = get_local(&c, 0, "a/1");
	assert_string_equal(v, "uno");
	free(v);
	/* Writes after the restart are applied, not mistaken for the remembered requests of the
	 * node's previous life. */
	struct put again = do_put(&c, 0, "a/1", "after restart", false, 0);
	assert_int_equal(again.rstatus, KV_R_OK);
	assert_true(again.revision > rev_before);
	v = get_local(&c, 0, "a/1");
	assert_string_equal(v, "after restart");
	free(v);
	cluster_close(&c);
}

static bool all_have_pred(struct cluster *c, void *arg)
{
	const char *key = arg;
	for (unsigned i = 0; i < c->n; i++) {
		if (!c->nodes[i].up) {
			continue;
		}
		char *v = get_local(c, i, key);
		free(v);
		if (v == NULL) {
			return false;
		}
	}
	return true;
}

static struct store_member *config_of(struct cluster *c, unsigned i, unsigned *n)
{
	struct store_member *m = NULL;
	assert_int_equal(store_configuration(c->nodes[i].s, &m, n), STORE_OK);
	return m;
}

/* Node i's configuration is member id alone, as a voter. */
static void assert_sole_voter(struct cluster *c, unsigned i, uint64_t id)
{
	unsigned n = 0;
	struct store_member *m = config_of(c, i, &n);
	assert_int_equal(n, 1);
	assert_int_equal(m[0].id, id);
	assert_int_equal(m[0].role, RAFT_VOTER);
	free(m);
}

struct change {
	bool done;
	int status;
};

static void change_cb(void *data, int status)
{
	struct change *ch = data;
	ch->done = true;
	ch->status = status;
}

static bool change_done_pred(struct cluster *c, void *arg)
{
	(void)c;
	return ((struct change *)arg)->done;
}

/* Node i joins as a spare and is then given role (a standby is replicated to at once, a voter
 * once it has caught up). */
static void add_member(struct cluster *c, unsigned leader, unsigned i, int role)
{
	struct change ch = {0};
	assert_int_equal(
	    store_add_member(c->nodes[leader].s, c->nodes[i].id, c->nodes[i].addr, change_cb, &ch),
	    STORE_OK);
	run_until(c, change_done_pred, &ch, 10000);
	assert_int_equal(ch.status, STORE_OK);
	ch = (struct change){0};
	assert_int_equal(
	    store_assign_member(c->nodes[leader].s, c->nodes[i].id, role, change_cb, &ch),
	    STORE_OK);
	run_until(c, change_done_pred, &ch, 10000);
	assert_int_equal(ch.status, STORE_OK);
}

static void add_voter(struct cluster *c, unsigned leader, unsigned i)
{
	add_member(c, leader, i, RAFT_VOTER);
}

struct syncw {
	bool done;
	int status;
};

static void sync_cb(void *data, int status)
{
	struct syncw *s = data;
	s->done = true;
	s->status = status;
}

static bool sync_done_pred(struct cluster *c, void *arg)
{
	(void)c;
	return ((struct syncw *)arg)->done;
}

/* Three voters, node 1 bootstrapped and leading; heartbeat_ms 0 is the default 30 ms. */
static void three_voters(struct cluster *c, unsigned heartbeat_ms)
{
	char *err = NULL;
	unsigned leader;
	cluster_init(c, 3);
	c->heartbeat_ms = heartbeat_ms;
	for (unsigned i = 0; i < 3; i++) {
		node_open(c, i);
	}
	assert_int_equal(store_bootstrap(c->nodes[0].s, &err), STORE_OK);
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(store_start(c->nodes[i].s, &err), STORE_OK);
	}
	run_until(c, leader_ready_pred, &leader, 10000);
	assert_int_equal(leader, 0);
	add_voter(c, 0, 1);
	add_voter(c, 0, 2);
}

/* A hash through raft, written on node leader: every replica of the three computes it at the
 * same revision, and they agree. */
static void hashes_agree(struct cluster *c, unsigned leader)
{
	struct put h = {0};
	h.w.data = &h;
	struct kv_op hop = {.type = KV_OP_HASH};
	assert_int_equal(store_write(c->nodes[leader].s, &h.w, &hop, put_cb), STORE_OK);
	run_until(c, put_done_pred, &h, 10000);
	assert_int_equal(h.status, STORE_OK);
	run_for(c, 300);
	uint64_t hashes[3];
	for (unsigned i = 0; i < 3; i++) {
		assert_true(store_hash_at(c->nodes[i].s, h.revision, &hashes[i]));
	}
	assert_true(hashes[0] == hashes[1] && hashes[1] == hashes[2]);
}

/* Three nodes: writes through a follower are forwarded and answered after the follower's own
 * replica applied them; linearizable sync on a follower; the leader goes away and the others go
 * on; every replica ends with the same hash. */
static void test_three_nodes(void **state)
{
	(void)state;
	struct cluster c;
	char *err = NULL;
	unsigned leader;
	three_voters(&c, 0);
	unsigned n = 0;
	struct store_member *m = config_of(&c, 0, &n);
	assert_int_equal(n, 3);
	free(m);

	/* Through a follower: answered only once the follower's own replica has it. */
	for (int i = 0; i < 20; i++) {
		char k[32];
		snprintf(k, sizeof k, "f/%02d", i);
		struct put p = do_put(&c, 2, k, "via follower", false, 0);
		assert_int_equal(p.status, STORE_OK);
		assert_int_equal(p.rstatus, KV_R_OK);
		char *v = get_local(&c, 2, k);
		assert_non_null(v);
		free(v);
	}
	/* A linearizable read barrier on another follower. */
	struct syncw sw = {0};
	assert_int_equal(store_sync(c.nodes[1].s, sync_cb, &sw), STORE_OK);
	run_until(&c, sync_done_pred, &sw, 5000);
	assert_int_equal(sw.status, STORE_OK);
	char *v = get_local(&c, 1, "f/19");
	assert_non_null(v);
	free(v);

	/* Many concurrent writes from all nodes end up batched: fewer entries than commands. */
	struct put ps[300];
	for (int i = 0; i < 300; i++) {
		char k[32], val[32];
		snprintf(k, sizeof k, "c/%03d", i);
		snprintf(val, sizeof val, "%d", i);
		memset(&ps[i], 0, sizeof ps[i]);
		ps[i].w.data = &ps[i];
		struct kv_op op = {.type = KV_OP_PUT,
		                   .space = KV_SPACE_USER,
		                   .key = {(const uint8_t *)k, strlen(k)},
		                   .value = {(const uint8_t *)val, strlen(val)}};
		assert_int_equal(store_write(c.nodes[i % 3].s, &ps[i].w, &op, put_cb), STORE_OK);
	}
	for (int i = 0; i < 300; i++) {
		run_until(&c, put_done_pred, &ps[i], 20000);
		assert_int_equal(ps[i].status, STORE_OK);
	}
	struct store_status st;
	store_get_status(c.nodes[0].s, &st);
	assert_true(st.entries_applied < st.commands_applied);

	/* The leader leaves; a new one is elected and writes through the survivors go on. */
	node_close(&c, 0);
	run_until(&c, leader_ready_pred, &leader, 10000);
	assert_true(leader == 1 || leader == 2);
	unsigned follower = leader == 1 ? 2 : 1;
	struct put p = do_put(&c, follower, "after", "failover", false, 0);
	assert_int_equal(p.status, STORE_OK);
	run_until(&c, all_have_pred, "after", 5000);

	/* The old leader returns and catches up (snapshot threshold is 32 entries). */
	node_open(&c, 0);
	assert_int_equal(store_start(c.nodes[0].s, &err), STORE_OK);
	run_until(&c, all_have_pred, "after", 10000);

	hashes_agree(&c, leader);
	cluster_close(&c);
}

/* The leader tells idle followers its commit index without waiting for a heartbeat: a write on
 * the leader reaches both followers' replicas, a write through a follower is answered, and a
 * linearizable read on a follower finishes, each well within a heartbeat timeout (1 s here; the
 * store sends the commit index 1-2 ms after the commit index rests, or at once when a follower
 * waits for it). Each round starts from an idle cluster, so no later write carries the commit
 * index along, and ends long before the next heartbeat could. */
#define LONG_HEARTBEAT_MS 1000

static double since_ms(uint64_t t0)
{
	return (double)(uv_hrtime() - t0) / 1e6;
}

static void test_followers_learn_commit(void **state)
{
	(void)state;
	struct cluster c;
	three_voters(&c, LONG_HEARTBEAT_MS);

	for (int round = 0; round < 3; round++) {
		char k[32];
		run_for(&c, 50);
		snprintf(k, sizeof k, "leader/%d", round);
		uint64_t t0 = uv_hrtime();
		struct put p = do_put(&c, 0, k, "on the leader", false, 0);
		assert_int_equal(p.status, STORE_OK);
		run_until(&c, all_have_pred, k, 5000);
		double took = since_ms(t0);
		if (took >= LONG_HEARTBEAT_MS / 4) {
			fail_msg(
			    "round %d: a write on the leader reached the followers after %.1f ms",
			    round, took);
		}

		run_for(&c, 50);
		snprintf(k, sizeof k, "follower/%d", round);
		t0 = uv_hrtime();
		p = do_put(&c, 1 + round % 2, k, "through a follower", false, 0);
		assert_int_equal(p.status, STORE_OK);
		took = since_ms(t0);
		if (took >= LONG_HEARTBEAT_MS / 4) {
			fail_msg("round %d: a write through a follower was answered after %.1f ms",
			         round, took);
		}

		run_for(&c, 50);
		struct syncw sw = {0};
		t0 = uv_hrtime();
		assert_int_equal(store_sync(c.nodes[2 - round % 2].s, sync_cb, &sw), STORE_OK);
		run_until(&c, sync_done_pred, &sw, 5000);
		assert_int_equal(sw.status, STORE_OK);
		took = since_ms(t0);
		if (took >= LONG_HEARTBEAT_MS / 4) {
			fail_msg("round %d: a linearizable read on a follower took %.1f ms", round,
			         took);
		}
	}
	cluster_close(&c);
}

/* A transfer goes to the voter asked for: raft alone picks the first voter that has caught up
 * (node 1 here), so node 2 leading afterwards shows the id was honoured. The old leader's callback
 * fires once it knows the new leader, which is ready and takes writes. A member that is not
 * another voter is refused at once, and its callback never fires. */
static void test_transfer_to(void **state)
{
	(void)state;
	struct cluster c;
	three_voters(&c, 0);
	struct put p = do_put(&c, 0, "t/before", "v", false, 0);
	assert_int_equal(p.status, STORE_OK);
	run_until(&c, all_have_pred, "t/before", 5000);

	struct change ch = {0};
	assert_int_equal(store_transfer_leadership(c.nodes[0].s, c.nodes[2].id, change_cb, &ch),
	                 STORE_OK);
	run_until(&c, change_done_pred, &ch, 5000);
	struct store_status st;
	store_get_status(c.nodes[0].s, &st);
	assert_int_equal(st.leader_id, c.nodes[2].id);
	unsigned leader = 0;
	run_until(&c, leader_ready_pred, &leader, 5000);
	assert_int_equal(leader, 2);
	p = do_put(&c, 1, "t/after", "v", false, 0);
	assert_int_equal(p.status, STORE_OK);

	struct change refused = {0};
	assert_int_equal(store_transfer_leadership(c.nodes[2].s, 99, change_cb, &refused),
	                 STORE_EINVAL);
	assert_int_equal(
	    store_transfer_leadership(c.nodes[2].s, c.nodes[2].id, change_cb, &refused),
	    STORE_EINVAL);
	assert_int_equal(
	    store_transfer_leadership(c.nodes[0].s, c.nodes[1].id, change_cb, &refused),
	    STORE_ENOTLEADER);
	run_for(&c, 100);
	assert_false(refused.done);
	cluster_close(&c);
}

static const struct store_progress *progress_of(const struct store_progress *ps, unsigned n,
                                                uint64_t id)
{
	for (unsigned i = 0; i < n; i++) {
		if (ps[i].id == id) {
			return &ps[i];
		}
	}
	fail_msg("no replication record for member %" PRIu64, id);
	return NULL;
}

/* The leader's view of how far each member trails: nobody while all keep up; a member that
 * stops storing entries is behind from the first commit it misses, for as long as it stays
 * away; back and caught up, it is behind no more. Followers have no such view. */
static void test_replication_lag(void **state)
{
	(void)state;
	struct cluster c;
	char *err = NULL;
	struct store_progress *ps = NULL;
	unsigned n = 0;
	struct store_status st;
	three_voters(&c, 0);

	assert_int_equal(do_put(&c, 0, "lag/a", "1", false, 0).status, STORE_OK);
	run_for(&c, 1200);
	assert_int_equal(store_replication(c.nodes[1].s, &ps, &n), STORE_ENOTLEADER);
	assert_null(ps);
	assert_int_equal(n, 0);
	assert_int_equal(store_replication(c.nodes[0].s, &ps, &n), STORE_OK);
	assert_int_equal(n, 2);
	store_get_status(c.nodes[0].s, &st);
	for (uint64_t id = 2; id <= 3; id++) {
		assert_int_equal(progress_of(ps, n, id)->behind_ms, 0);
		assert_int_equal(progress_of(ps, n, id)->match_index, st.commit_index);
		assert_true(progress_of(ps, n, id)->silent_ms < 1000); /* heartbeats answered */
	}
	free(ps);

	/* Node 3 stops. With nothing written it lacks no entry, so only its silence tells. */
	node_close(&c, 2);
	run_for(&c, 1500);
	assert_int_equal(store_replication(c.nodes[0].s, &ps, &n), STORE_OK);
	assert_int_equal(progress_of(ps, n, 3)->behind_ms, 0);
	assert_true(progress_of(ps, n, 2)->silent_ms < 1000);
	if (progress_of(ps, n, 3)->silent_ms < 1200) {
		fail_msg("node 3, away for 1.5 s, silent for %" PRIu64 " ms",
		         progress_of(ps, n, 3)->silent_ms);
	}
	free(ps);

	/* One write commits without it. */
	assert_int_equal(do_put(&c, 0, "lag/b", "2", false, 0).status, STORE_OK);
	run_for(&c, 2500);
	assert_int_equal(store_replication(c.nodes[0].s, &ps, &n), STORE_OK);
	assert_int_equal(n, 2);
	store_get_status(c.nodes[0].s, &st);
	assert_int_equal(progress_of(ps, n, 2)->behind_ms, 0);
	const struct store_progress *p3 = progress_of(ps, n, 3);
	if (p3->behind_ms < 1000 || p3->behind_ms > 3500) {
		fail_msg("node 3, away for 2.5 s, is behind for %" PRIu64 " ms", p3->behind_ms);
	}
	assert_true(p3->match_index < st.commit_index);
	free(ps);

	/* Back, it catches up and is behind no more. */
	node_open(&c, 2);
	assert_int_equal(store_start(c.nodes[2].s, &err), STORE_OK);
	run_until(&c, all_have_pred, "lag/b", 10000);
	run_for(&c, 1200);
	assert_int_equal(store_replication(c.nodes[0].s, &ps, &n), STORE_OK);
	assert_int_equal(progress_of(ps, n, 3)->behind_ms, 0);
	assert_true(progress_of(ps, n, 3)->silent_ms < 1000);
	free(ps);
	cluster_close(&c);
}

/* Watches whose callbacks stop or start watches: a callback that stops the next watch in line
 * (dispatch used to loop forever on it), one that stops its own watch during the catch-up from
 * history (the watch was registered anyway), and a watch started by a write's callback inside
 * the apply, from that write's revision (it got the write's event twice). */
struct stopper {
	struct watched x;
	struct store *s;
	struct store_watch *victim; /* stopped at the first event */
};

static void stopper_cb(struct store_watch *w, const struct kv_event *ev, int status)
{
	struct stopper *p = w->data;
	watch_cb(w, ev, status);
	if (ev != NULL && p->victim != NULL) {
		store_watch_stop(p->s, p->victim);
		p->victim = NULL;
	}
}

struct starter {
	struct put p;
	struct store *s;
	struct watched x;
};

static void starter_put_cb(struct store_write *w, int status, const struct kv_result *r)
{
	struct starter *st = w->data;
	st->p.done = true;
	st->p.status = status;
	st->x.w.data = &st->x;
	assert_int_equal(status, STORE_OK);
	assert_int_equal(store_watch_start(st->s, &st->x.w, KV_SPACE_USER,
	                                   (struct kv_bytes){(const uint8_t *)"s/", 2}, true,
	                                   r->revision, watch_cb),
	                 STORE_OK);
}

static bool starter_done_pred(struct cluster *c, void *arg)
{
	(void)c;
	return ((struct starter *)arg)->p.done;
}

static void test_watch_callbacks(void **state)
{
	(void)state;
	struct cluster c;
	char *err = NULL;
	unsigned leader;
	cluster_init(&c, 1);
	node_open(&c, 0);
	struct store *s = c.nodes[0].s;
	assert_int_equal(store_bootstrap(s, &err), STORE_OK);
	assert_int_equal(store_start(s, &err), STORE_OK);
	run_until(&c, leader_ready_pred, &leader, 5000);
	struct kv_bytes prefix = {(const uint8_t *)"w/", 2};

	/* a stops b, the watch after it. */
	struct stopper a = {.x = {.end_status = -1}, .s = s}, b = {.x = {.end_status = -1}, .s = s};
	a.x.w.data = &a;
	b.x.w.data = &b;
	assert_int_equal(store_watch_start(s, &a.x.w, KV_SPACE_USER, prefix, true, 0, stopper_cb),
	                 STORE_OK);
	assert_int_equal(store_watch_start(s, &b.x.w, KV_SPACE_USER, prefix, true, 0, stopper_cb),
	                 STORE_OK);
	a.victim = &b.x.w;
	struct put p = do_put(&c, 0, "w/1", "1", false, 0);
	assert_int_equal(p.status, STORE_OK);
	assert_int_equal(a.x.n, 1);
	assert_int_equal(b.x.n, 0);

	/* d stops itself at its first event from history: it stays stopped. */
	do_put(&c, 0, "w/2", "2", false, 0);
	struct stopper d = {.x = {.end_status = -1}, .s = s};
	d.x.w.data = &d;
	d.victim = &d.x.w;
	assert_int_equal(
	    store_watch_start(s, &d.x.w, KV_SPACE_USER, prefix, true, p.revision, stopper_cb),
	    STORE_OK);
	assert_int_equal(d.x.n, 1);
	do_put(&c, 0, "w/3", "3", false, 0);
	assert_int_equal(d.x.n, 1);
	assert_int_equal(a.x.n, 3);

	/* Started from the write's own callback, at its revision: its event once. */
	struct starter st = {.s = s};
	st.p.w.data = &st;
	struct kv_op op = {.type = KV_OP_PUT,
	                   .space = KV_SPACE_USER,
	                   .key = {(const uint8_t *)"s/1", 3},
	                   .value = {(const uint8_t *)"1", 1}};
	assert_int_equal(store_write(s, &st.p.w, &op, starter_put_cb), STORE_OK);
	run_until(&c, starter_done_pred, &st, 5000);
	run_for(&c, 50);
	assert_int_equal(st.x.n, 1);
	do_put(&c, 0, "s/2", "2", false, 0);
	assert_int_equal(st.x.n, 2);

	store_watch_stop(s, &a.x.w);
	store_watch_stop(s, &st.x.w);
	cluster_close(&c);
}

/* Writes whose forward failed go out again in the order they were made: three writes to one key
 * from a follower, in one forward that fails (on a later loop turn, then at once: the hook
 * cannot start it), leave the last value on every replica. Each failure used to put the writes
 * back at the head of the queue one by one, reversed. */
static void test_retry_order(void **state)
{
	(void)state;
	struct cluster c;
	three_voters(&c, 0);
	for (int round = 0; round < 2; round++) {
		struct put ps[3];
		char vals[3][16], want[16];
		if (round == 0) {
			c.fail_forwards = 1;
		} else {
			c.refuse_forwards = 1;
		}
		for (int i = 0; i < 3; i++) {
			snprintf(vals[i], sizeof vals[i], "%d", round * 3 + i + 1);
			memset(&ps[i], 0, sizeof ps[i]);
			ps[i].w.data = &ps[i];
			struct kv_op op = {.type = KV_OP_PUT,
			                   .space = KV_SPACE_USER,
			                   .key = {(const uint8_t *)"order", 5},
			                   .value = {(const uint8_t *)vals[i], strlen(vals[i])}};
			assert_int_equal(store_write(c.nodes[1].s, &ps[i].w, &op, put_cb),
			                 STORE_OK);
		}
		for (int i = 0; i < 3; i++) {
			run_until(&c, put_done_pred, &ps[i], 20000);
			assert_int_equal(ps[i].status, STORE_OK);
		}
		assert_int_equal(c.fail_forwards + c.refuse_forwards, 0);
		snprintf(want, sizeof want, "%d", round * 3 + 3);
		for (unsigned n = 0; n < 2; n++) {
			char *v = get_local(&c, n, "order");
			assert_non_null(v);
			if (strcmp(v, want) != 0) {
				fail_msg("round %d: node %u ends with %s, not %s", round, n + 1, v,
				         want);
			}
			free(v);
		}
	}
	cluster_close(&c);
}

/* Three voters, node 3 away while node 1 writes snap/000 to snap/099: far enough behind that
 * the leader's log no longer has what it missed, so it needs a snapshot. */
static void three_left_behind(struct cluster *c)
{
	three_voters(c, 0);
	assert_int_equal(do_put(c, 0, "snap/first", "1", false, 0).status, STORE_OK);
	run_until(c, all_have_pred, "snap/first", 5000);

	node_close(c, 2);
	for (int i = 0; i < 100; i++) { /* snapshot threshold 32, trailing 8 */
		char k[32];
		snprintf(k, sizeof k, "snap/%03d", i);
		assert_int_equal(do_put(c, 0, k, "while away", false, 0).status, STORE_OK);
	}
}

/* A member that trails beyond the leader's log gets its state as a snapshot while it runs. The
 * changes the snapshot brings were never applied one by one there, so a watch cannot be given
 * them: it ends with STORE_ECOMPACTED, and its owner reads the state again. (It used to go on
 * silently, missing them.) */
static void test_install_ends_watches(void **state)
{
	(void)state;
	struct cluster c;
	char *err = NULL;
	struct store_status st;
	three_left_behind(&c);
	node_open(&c, 2);
	assert_int_equal(store_start(c.nodes[2].s, &err), STORE_OK);
	store_get_status(c.nodes[2].s, &st);
	uint64_t restored = st.snapshots_restored;
	struct watched x = {.end_status = -1};
	x.w.data = &x;
	assert_int_equal(store_watch_start(c.nodes[2].s, &x.w, KV_SPACE_USER,
	                                   (struct kv_bytes){(const uint8_t *)"snap/", 5}, true, 0,
	                                   watch_cb),
	                 STORE_OK);
	run_until(&c, all_have_pred, "snap/099", 10000);
	store_get_status(c.nodes[2].s, &st);
	assert_true(st.snapshots_restored > restored); /* an install, not entries */
	if (x.end_status != STORE_ECOMPACTED) {
		fail_msg("the watch saw %d events and %s", x.n,
		         x.end_status < 0 ? "goes on" : "ended otherwise");
	}
	/* A new watch goes on from the installed state. */
	x = (struct watched){.end_status = -1};
	x.w.data = &x;
	assert_int_equal(store_watch_start(c.nodes[2].s, &x.w, KV_SPACE_USER,
	                                   (struct kv_bytes){(const uint8_t *)"snap/", 5}, true, 0,
	                                   watch_cb),
	                 STORE_OK);
	assert_int_equal(do_put(&c, 0, "snap/last", "1", false, 0).status, STORE_OK);
	run_until(&c, all_have_pred, "snap/last", 5000);
	assert_int_equal(x.n, 1);
	assert_string_equal(x.last_key, "snap/last");
	store_watch_stop(c.nodes[2].s, &x.w);
	cluster_close(&c);
}

/* fn on the whole content of file name in directory dirfd, written back in place. */
static void change_file(int dirfd, const char *name, void (*fn)(uint8_t *p, size_t len))
{
	int fd = openat(dirfd, name, O_RDWR);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	uint8_t *p = malloc((size_t)st.st_size);
	assert_non_null(p);
	assert_int_equal(pread(fd, p, (size_t)st.st_size, 0), st.st_size);
	fn(p, (size_t)st.st_size);
	assert_int_equal(pwrite(fd, p, (size_t)st.st_size, 0), st.st_size);
	free(p);
	close(fd);
}

/* Calls fn on the data of every snapshot in node i's raft directory (not the metadata files,
 * which raft checksums itself; fn NULL: none); returns how many there were. */
static unsigned each_snapshot(struct cluster *c, unsigned i, void (*fn)(uint8_t *p, size_t len))
{
	char dir[300];
	unsigned n = 0;
	snprintf(dir, sizeof dir, "%s/raft", c->nodes[i].dir);
	DIR *d = opendir(dir);
	assert_non_null(d);
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		size_t len = strlen(e->d_name);
		if (strncmp(e->d_name, "snapshot-", 9) != 0 ||
		    (len > 5 && strcmp(e->d_name + len - 5, ".meta") == 0)) {
			continue;
		}
		if (fn != NULL) {
			change_file(dirfd(d), e->d_name, fn);
		}
		n++;
	}
	closedir(d);
	return n;
}

/* Bit rot: a byte in the middle flips (the state's own checksum covers the data). */
static void flip_byte(uint8_t *p, size_t len)
{
	p[len / 2] ^= 0x5a;
}

/* Bit rot at the end of a snapshot's metadata file: in the configuration, which raft's own
 * checksum covers. */
static void flip_last(uint8_t *p, size_t len)
{
	p[len - 1] ^= 0x5a;
}

/* Intact, but in a format this version does not read (as from a newer Tabby): the format
 * number after the magic is 99, and the checksum is made right again. */
static void newer_format(uint8_t *p, size_t len)
{
	assert_true(len > 16 && memcmp(p, "TBKS", 4) == 0);
	p[4] = 99;
	p[5] = 0;
	kv_put_le64(p + len - 8, kv_fnv1a64(KV_FNV_OFFSET, p, len - 8));
}

/* Two voters write snap/000 to snap/099, far past the snapshot threshold (32, trailing 8); fn
 * changes the leader's snapshot files; only then does node 3 start and join as a standby, so the
 * first install the leader reads for it is the changed one. (A member that was away during the
 * writes could instead be sent an install read before the change, which the transport holds
 * for it while it cannot be reached.) Returns how many snapshots the leader had taken then. */
static uint64_t changed_before_join(struct cluster *c, void (*fn)(uint8_t *p, size_t len))
{
	struct store_status st;
	char *err = NULL;
	unsigned leader;
	cluster_init(c, 3);
	for (unsigned i = 0; i < 2; i++) {
		node_open(c, i);
	}
	assert_int_equal(store_bootstrap(c->nodes[0].s, &err), STORE_OK);
	for (unsigned i = 0; i < 2; i++) {
		assert_int_equal(store_start(c->nodes[i].s, &err), STORE_OK);
	}
	run_until(c, leader_ready_pred, &leader, 10000);
	assert_int_equal(leader, 0);
	add_voter(c, 0, 1);
	for (int i = 0; i < 100; i++) {
		char k[32];
		snprintf(k, sizeof k, "snap/%03d", i);
		assert_int_equal(do_put(c, 0, k, "before the join", false, 0).status, STORE_OK);
	}
	assert_true(each_snapshot(c, 0, fn) > 0);
	store_get_status(c->nodes[0].s, &st);
	assert_int_equal(st.snapshots_damaged, 0);
	node_open(c, 2);
	assert_int_equal(store_start(c->nodes[2].s, &err), STORE_OK);
	add_member(c, 0, 2, RAFT_STANDBY);
	return st.snapshots_taken;
}

/* A snapshot that rots on the leader's disk is not sent: the leader finds it damaged when it
 * loads it for a member that needs an install, says so through the hook (once per new one),
 * takes a new snapshot from its state and sends that one. The member catches up with no
 * fatal stop, and every replica hashes alike. (Before, the damaged file went to the follower
 * as it was, and the follower stopped on it: any member that fell behind or joined would.) */
static void test_damaged_snapshot_replaced(void **state)
{
	(void)state;
	struct cluster c;
	struct store_status st;
	uint64_t taken = changed_before_join(&c, flip_byte);
	uint64_t end = uv_now(&c.loop) + 15000;
	while (c.fatals == 0 && !all_have_pred(&c, "snap/099") && uv_now(&c.loop) < end) {
		uv_run(&c.loop, UV_RUN_ONCE);
		uv_update_time(&c.loop);
	}
	if (c.fatals != 0) {
		fail_msg("a member stopped: %s", c.fatal_msg);
	}
	assert_true(all_have_pred(&c, "snap/099"));
	store_get_status(c.nodes[0].s, &st);
	assert_true(st.snapshots_damaged >= 1);
	assert_true(st.snapshots_taken > taken); /* the replacement */
	assert_true(c.damaged >= 1);
	char dir[300];
	snprintf(dir, sizeof dir, "%s/raft", c.nodes[0].dir);
	if (strstr(c.damaged_msg, "damaged") == NULL || strstr(c.damaged_msg, dir) == NULL) {
		fail_msg("hook: %s", c.damaged_msg);
	}
	store_get_status(c.nodes[2].s, &st);
	assert_true(st.snapshots_restored >= 1); /* an install, not entries */

	/* It goes on from there, and every replica holds the same state. */
	assert_int_equal(do_put(&c, 0, "snap/last", "1", false, 0).status, STORE_OK);
	run_until(&c, all_have_pred, "snap/last", 5000);
	hashes_agree(&c, 0);
	assert_int_equal(c.fatals, 0);
	cluster_close(&c);
}

/* fn on the data of the newest snapshot in node i's raft directory, by raft's file name
 * (snapshot-TERM-INDEX-TIME; fn NULL: none); its name in name (256 bytes). */
static void newest_snapshot(struct cluster *c, unsigned i, void (*fn)(uint8_t *p, size_t len),
                            char *name)
{
	char dir[300];
	unsigned long long best[3] = {0}, v[3];
	snprintf(dir, sizeof dir, "%s/raft", c->nodes[i].dir);
	DIR *d = opendir(dir);
	assert_non_null(d);
	name[0] = '\0';
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		int end = 0;
		if (sscanf(e->d_name, "snapshot-%llu-%llu-%llu%n", &v[0], &v[1], &v[2], &end) ==
		        3 &&
		    e->d_name[end] == '\0' &&
		    (v[0] > best[0] || (v[0] == best[0] && v[1] > best[1]))) {
			memcpy(best, v, sizeof best);
			snprintf(name, 256, "%s", e->d_name);
		}
	}
	assert_true(name[0] != '\0');
	if (fn != NULL) {
		change_file(dirfd(d), name, fn);
	}
	closedir(d);
}

static void own_keys_present(struct cluster *c, unsigned i, int n)
{
	for (int k = 0; k < n; k++) {
		char key[32];
		snprintf(key, sizeof key, "own/%03d", k);
		char *v = get_local(c, i, key);
		if (v == NULL || strcmp(v, "kept") != 0) {
			fail_msg("%s is %s after the restart", key, v ? v : "missing");
		}
		free(v);
	}
}

static bool has_key_pred(struct cluster *c, void *arg)
{
	char *v = get_local(c, 0, arg);
	free(v);
	return v != NULL;
}

/* Node 0 has taken *arg snapshots. */
static bool own_snapshots_pred(struct cluster *c, void *arg)
{
	struct store_status st;
	store_get_status(c->nodes[0].s, &st);
	return st.snapshots_taken >= *(const unsigned *)arg;
}

/* One member, alone, with n writes (own/000...) and that many snapshots at least (snapshots);
 * stopped, its newest snapshot damaged (its name in name, 256 bytes; meta: its metadata file,
 * else its data), then opened again. default_trailing: the store's own trailing, else 8. */
static void own_damaged(struct cluster *c, bool default_trailing, int n, unsigned snapshots,
                        bool meta, char *name)
{
	char *err = NULL;
	unsigned leader;
	cluster_init(c, 1);
	c->default_trailing = default_trailing;
	node_open(c, 0);
	assert_int_equal(store_bootstrap(c->nodes[0].s, &err), STORE_OK);
	assert_int_equal(store_start(c->nodes[0].s, &err), STORE_OK);
	run_until(c, leader_ready_pred, &leader, 10000);
	for (int k = 0; k < n; k++) {
		char key[32];
		snprintf(key, sizeof key, "own/%03d", k);
		assert_int_equal(do_put(c, 0, key, "kept", false, 0).status, STORE_OK);
	}
	run_until(c, own_snapshots_pred, &snapshots, 5000);
	node_close(c, 0);
	newest_snapshot(c, 0, meta ? NULL : flip_byte, name);
	if (meta) {
		char dir[300], file[300];
		snprintf(dir, sizeof dir, "%s/raft", c->nodes[0].dir);
		snprintf(file, sizeof file, "%s.meta", name);
		DIR *d = opendir(dir);
		assert_non_null(d);
		change_file(dirfd(d), file, flip_last);
		closedir(d);
	}
	node_open(c, 0);
}

/* store_start() on the open node 0 fails, its message holding each of the NULL-terminated
 * subs; the node is closed. */
static void own_start_refused(struct cluster *c, const char *const *subs)
{
	char *err = NULL;
	assert_int_equal(store_start(c->nodes[0].s, &err), STORE_EIO);
	for (; *subs != NULL; subs++) {
		if (err == NULL || strstr(err, *subs) == NULL) {
			fail_msg("store_start: '%s' without '%s'", err ? err : "(no message)",
			         *subs);
		}
	}
	free(err);
	node_close(c, 0);
}

/* store_start() on node 0 (own_damaged()) falls back: the hook says so once, its message holding
 * each of the NULL-terminated subs; the member then takes a write, holds the n writes before it
 * and takes the replacement snapshot. */
static void own_fell_back(struct cluster *c, int n, const char *const *subs)
{
	char *err = NULL;
	unsigned leader;
	assert_int_equal(store_start(c->nodes[0].s, &err), STORE_OK);
	assert_int_equal(c->damaged, 1);
	for (; *subs != NULL; subs++) {
		if (strstr(c->damaged_msg, *subs) == NULL) {
			fail_msg("hook: '%s' without '%s'", c->damaged_msg, *subs);
		}
	}
	run_until(c, leader_ready_pred, &leader, 10000);
	assert_int_equal(do_put(c, 0, "own/after", "1", false, 0).status, STORE_OK);
	run_until(c, has_key_pred, "own/after", 5000);
	own_keys_present(c, 0, n);
	run_until(c, snapshot_taken_pred, &c->nodes[0], 5000); /* the replacement */
}

/* Node 0, after own_fell_back(), is closed and started again: plainly, from the replacement,
 * holding everything, with nothing more reported. */
static void own_restart_plain(struct cluster *c, int n)
{
	char *err = NULL;
	unsigned leader;
	node_close(c, 0);
	node_open(c, 0);
	assert_int_equal(store_start(c->nodes[0].s, &err), STORE_OK);
	run_until(c, leader_ready_pred, &leader, 10000);
	run_until(c, has_key_pred, "own/after", 5000);
	own_keys_present(c, 0, n);
	assert_int_equal(c->damaged, 1);
	assert_int_equal(c->fatals, 0);
}

/*
 * The latest snapshot of a member's own rots on its disk while it is down. With the store's own
 * trailing, the log reaches back to the snapshot before it: the member starts from that one and
 * the log after it (raft patch 0026), holding every write, and says so through the hook; a new
 * snapshot replaces the damaged one, and later starts are plain. A member alone shows that the
 * state came from its own disk, not from a peer. With a log that does not reach back (trailing
 * 8), the start is refused, naming both snapshots and the directory, and nothing is changed;
 * with every snapshot damaged, it is refused naming the newest. Before, in each case, the
 * member restored the damaged file and stopped on its checksum. A young member whose only
 * snapshot is damaged starts from its log alone; a latest snapshot whose metadata rotted is
 * skipped by raft itself, and the member reports it the same way.
 */
static void test_own_snapshot_damaged(void **state)
{
	(void)state;
	struct cluster c;
	struct store_status st;
	char name[256], newest[256], dir[300];

	/* The store's own trailing: the member starts from the snapshot before. */
	own_damaged(&c, true, 150, 2, false, name);
	snprintf(dir, sizeof dir, "%s/raft", c.nodes[0].dir);
	own_fell_back(&c, 150,
	              (const char *[]){dir, name, "its data fails its checksum",
	                               "started from the snapshot before it", NULL});
	store_get_status(c.nodes[0].s, &st);
	assert_int_equal(st.snapshots_damaged, 1);
	/* The replacement is the latest now: the next start is plain. */
	own_restart_plain(&c, 150);
	cluster_close(&c);

	/* Trailing 8: the log does not reach back; refused twice alike (the load changed
	 * nothing), naming the directory, the damaged snapshot and why. */
	own_damaged(&c, false, 150, 2, false, name);
	snprintf(dir, sizeof dir, "%s/raft", c.nodes[0].dir);
	const char *short_log[] = {dir, name, "damaged",
	                           "does not reach back to the snapshot before it", NULL};
	own_start_refused(&c, short_log);
	node_open(&c, 0);
	own_start_refused(&c, short_log);
	assert_int_equal(c.damaged, 0);
	/* Every snapshot damaged: the message names the newest and says that no older one will
	 * do either. */
	newest_snapshot(&c, 0, flip_byte, newest); /* intact again */
	assert_string_equal(newest, name);
	assert_true(each_snapshot(&c, 0, flip_byte) >= 2);
	node_open(&c, 0);
	own_start_refused(&c, (const char *[]){name, "nor can any older one",
	                                       "does not reach back to its first entry", NULL});
	cluster_close(&c);

	/* A young member: its only snapshot is damaged, and its log is kept from the first entry
	 * on. The member starts from that log alone, as before its first snapshot. */
	own_damaged(&c, true, 45, 1, false, name);
	store_get_status(c.nodes[0].s, &st);
	assert_int_equal(st.snapshots_taken, 0); /* (opened again: counts from here) */
	assert_int_equal(each_snapshot(&c, 0, NULL), 1);
	snprintf(dir, sizeof dir, "%s/raft", c.nodes[0].dir);
	own_fell_back(&c, 45, (const char *[]){dir, "its log from the first entry", NULL});
	store_get_status(c.nodes[0].s, &st);
	assert_int_equal(st.snapshots_restored, 0);
	own_restart_plain(&c, 45);
	store_get_status(c.nodes[0].s, &st);
	assert_int_equal(st.snapshots_restored, 1); /* the replacement, intact */
	cluster_close(&c);

	/* The metadata file of the latest snapshot rots instead: raft skips it (as 0.22.1 did,
	 * without a word), and the member says so, names the file and why, and replaces it. */
	own_damaged(&c, true, 150, 2, true, name);
	own_fell_back(&c, 150,
	              (const char *[]){name, "checksum mismatch",
	                               "started from the snapshot before it", NULL});
	own_restart_plain(&c, 150);
	cluster_close(&c);
}

/* A snapshot installed from the leader that does not restore (here one in a format this
 * version does not read, as a leader of a newer Tabby would send) ends the follower through
 * the fatal hook: raft has replaced its log by then, so going on would leave it acknowledging
 * entries with a state frozen before the snapshot. Started again, the member refuses to start
 * and says why, instead of failing the same way. */
static void test_install_unrestorable(void **state)
{
	(void)state;
	struct cluster c;
	char *err = NULL;
	changed_before_join(&c, newer_format);
	uint64_t end = uv_now(&c.loop) + 10000;
	while (c.fatals == 0 && uv_now(&c.loop) < end) {
		uv_run(&c.loop, UV_RUN_ONCE);
		uv_update_time(&c.loop);
	}
	if (c.fatals != 1) {
		fail_msg("node 3 %s after its install failed to restore",
		         c.fatals ? "reported more than once" : "went on, frozen,");
	}
	if (strstr(c.fatal_msg, "cannot restore the snapshot") == NULL ||
	    strstr(c.fatal_msg, "format 99") == NULL) {
		fail_msg("fatal: %s", c.fatal_msg);
	}
	assert_int_equal(c.damaged, 0); /* intact: the leader sent it */
	char *v = get_local(&c, 2, "snap/099");
	assert_null(v);

	/* raft stored the install before the restore; a restart meets it again. */
	node_close(&c, 2);
	node_open(&c, 2);
	assert_int_equal(store_start(c.nodes[2].s, &err), STORE_EIO);
	if (err == NULL || strstr(err, "cannot restore the snapshot") == NULL ||
	    strstr(err, c.nodes[2].dir) == NULL) {
		fail_msg("store_start: %s", err ? err : "(no message)");
	}
	free(err);
	assert_int_equal(c.fatals, 1); /* at start, reported, not fatal */
	node_close(&c, 2);
	c.nodes[2].up = false;

	/* The other two go on. */
	assert_int_equal(do_put(&c, 0, "snap/last", "1", false, 0).status, STORE_OK);
	run_until(&c, all_have_pred, "snap/last", 5000);
	cluster_close(&c);
}

/* n nodes, node i's cluster id all fill[i] (0: none), node 0 bootstrapped and leading. */
static void fenced_cluster(struct cluster *c, unsigned n, const uint8_t *fill)
{
	char *err = NULL;
	unsigned leader;
	cluster_init(c, n);
	for (unsigned i = 0; i < n; i++) {
		memset(c->nodes[i].cluster_id, fill[i], STORE_CLUSTER_ID_LEN);
		node_open(c, i);
	}
	assert_int_equal(store_bootstrap(c->nodes[0].s, &err), STORE_OK);
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(store_start(c->nodes[i].s, &err), STORE_OK);
	}
	run_until(c, leader_ready_pred, &leader, 10000);
	assert_int_equal(leader, 0);
}

/* Raw TCP to a member: raft's handshake for server 9 at 10.9.9.9:1, then 24 bytes of fill that
 * are no fence preamble (what a raft without the fence sends next is its first message; zeros
 * are a message header of length 0, which raft refuses). */
static int raw_stranger(const char *addr, uint8_t fill)
{
	char host[32];
	int port;
	assert_int_equal(sscanf(addr, "%31[^:]:%d", host, &port), 2);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	assert_int_equal(inet_pton(AF_INET, host, &sa.sin_addr), 1);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	uint8_t msg[24 + 16 + 24];
	memset(msg, 0, sizeof msg);
	msg[0] = 1;   /* protocol, little-endian */
	msg[8] = 9;   /* server id */
	msg[16] = 16; /* address buffer, padded to 8 */
	memcpy(msg + 24, "10.9.9.9:1", 11);
	memset(msg + 40, fill, 24);
	assert_int_equal(write(fd, msg, sizeof msg), (ssize_t)sizeof msg);
	return fd;
}

struct backupw {
	struct store_backup b;
	bool done;
	int status;
	unsigned calls;
};

static void backup_cb(struct store_backup *b, int status)
{
	struct backupw *w = (struct backupw *)b;
	w->done = true;
	w->status = status;
	w->calls++;
}

static bool backup_done_pred(struct cluster *c, void *arg)
{
	(void)c;
	return ((struct backupw *)arg)->done;
}

/* Closes the store as soon as its backup worker runs: a check handle runs right after the poll
 * phase in which the barrier answered and the work was queued, before the loop can collect the
 * worker's end. The store's private read view (white box) tells that the work is queued. */
struct close_at_work {
	uv_check_t check;
	struct backupw *w;
	struct store *s;
	bool closed, in_flight;
};

static void close_at_work_cb(uv_check_t *h)
{
	struct close_at_work *x = (struct close_at_work *)h;
	if (x->w->done || x->w->b.snap == NULL) {
		return;
	}
	x->in_flight = true;
	uv_check_stop(h);
	store_close(x->s, closed_cb, &x->closed);
}

/* Restore a backup's state into a scratch store: its revision and hash. */
static void restored(struct cluster *c, const void *data, size_t len, int64_t *rev, uint64_t *hash)
{
	char dir[192];
	struct kv *kv;
	struct kv_config cfg = {0};
	snprintf(dir, sizeof dir, "%s/restored", c->root);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(kv_open(&kv, dir, &cfg), KV_OK);
	assert_int_equal(kv_restore(kv, data, len), KV_OK);
	*rev = kv_revision(kv);
	assert_int_equal(kv_hash(kv, hash), KV_OK);
	kv_close(kv);
	char cmd[256];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* store_backup(): on a follower, while writes go on, a copy of the whole state at one revision
 * between the writes acknowledged before and after it; once writes stop, exactly the state every
 * replica hashes. The file around it (store_backup_seal/open) round-trips and refuses damage. A
 * store closed while the worker serializes answers STORE_ESHUTDOWN once, and frees itself after
 * the worker (ASan checks the rest). */
static void test_backup(void **state)
{
	(void)state;
	struct cluster c;
	unsigned leader;
	three_voters(&c, 0);
	run_until(&c, leader_ready_pred, &leader, 10000);
	unsigned f = leader == 1 ? 2 : 1;
	for (int i = 0; i < 40; i++) {
		char k[32];
		snprintf(k, sizeof k, "b/%02d", i);
		assert_int_equal(do_put(&c, (unsigned)i % 3, k, "before", false, 0).status,
		                 STORE_OK);
	}
	struct put before = do_put(&c, leader, "b/last", "acknowledged", false, 0);
	assert_int_equal(before.status, STORE_OK);

	/* Writes in flight from every member while the follower takes its copy. */
	struct put ps[60];
	for (int i = 0; i < 60; i++) {
		char k[32];
		snprintf(k, sizeof k, "w/%02d", i);
		memset(&ps[i], 0, sizeof ps[i]);
		ps[i].w.data = &ps[i];
		struct kv_op op = {.type = KV_OP_PUT,
		                   .space = KV_SPACE_USER,
		                   .key = {(const uint8_t *)k, strlen(k)},
		                   .value = {(const uint8_t *)"during", 6}};
		assert_int_equal(store_write(c.nodes[i % 3].s, &ps[i].w, &op, put_cb), STORE_OK);
	}
	struct backupw w = {0};
	assert_int_equal(store_backup(c.nodes[f].s, &w.b, true, backup_cb), STORE_OK);
	assert_false(w.done); /* never from within the call */
	run_until(&c, backup_done_pred, &w, 10000);
	assert_int_equal(w.status, STORE_OK);
	assert_int_equal(w.calls, 1);
	int64_t after = 0;
	for (int i = 0; i < 60; i++) {
		run_until(&c, put_done_pred, &ps[i], 20000);
		assert_int_equal(ps[i].status, STORE_OK);
		after = ps[i].revision > after ? ps[i].revision : after;
	}
	assert_true(w.b.revision >= before.revision && w.b.revision <= after);
	int64_t rev;
	uint64_t hash;
	restored(&c, w.b.data, w.b.len, &rev, &hash);
	assert_int_equal(rev, w.b.revision);

	/* The file: seal, open, and the state inside is the state given. */
	struct store_backup_info info = {.revision = w.b.revision, .taken_at_ms = 1234567};
	memset(info.cluster_id, 0xab, sizeof info.cluster_id);
	snprintf(info.member, sizeof info.member, "node %u", f + 1);
	snprintf(info.version, sizeof info.version, "test");
	size_t state_len = w.b.len;
	void *file = w.b.data;
	size_t len = w.b.len;
	w.b.data = NULL;
	assert_int_equal(store_backup_seal(&file, &len, &info), STORE_OK);
	struct store_backup_info got;
	size_t sl;
	char why[256];
	assert_int_equal(store_backup_open(file, len, &got, &sl, why, sizeof why), STORE_OK);
	assert_int_equal(sl, state_len);
	assert_memory_equal(&got, &info, sizeof got);
	uint8_t *bytes = file;
	for (size_t at = 0; at < len; at += len / 7 + 1) {
		bytes[at] ^= 0x20;
		assert_int_equal(store_backup_open(file, len, &got, &sl, why, sizeof why),
		                 STORE_EINVAL);
		bytes[at] ^= 0x20;
	}
	assert_int_equal(store_backup_open(file, len - 1, &got, &sl, why, sizeof why),
	                 STORE_EINVAL);
	assert_non_null(strstr(why, "it is not a Tabby backup"));
	bytes[state_len / 2] ^= 1;
	assert_int_equal(store_backup_open(file, len, &got, &sl, why, sizeof why), STORE_EINVAL);
	assert_string_equal(why, "its state fails its checksum: the file is damaged");
	free(file);
	memset(info.member, 0, sizeof info.member);
	void *empty = NULL;
	size_t elen = 0;
	assert_int_equal(store_backup_seal(&empty, &elen, &info), STORE_EINVAL); /* no name */

	/* Quiet now: the copy is exactly the state every replica hashes at its revision. */
	struct put h = {0};
	h.w.data = &h;
	struct kv_op hop = {.type = KV_OP_HASH};
	assert_int_equal(store_write(c.nodes[leader].s, &h.w, &hop, put_cb), STORE_OK);
	run_until(&c, put_done_pred, &h, 10000);
	uint64_t want;
	memset(&w, 0, sizeof w);
	assert_int_equal(store_backup(c.nodes[f].s, &w.b, true, backup_cb), STORE_OK);
	run_until(&c, backup_done_pred, &w, 10000);
	assert_int_equal(w.status, STORE_OK);
	assert_true(store_hash_at(c.nodes[f].s, w.b.revision, &want));
	restored(&c, w.b.data, w.b.len, &rev, &hash);
	assert_true(hash == want);
	free(w.b.data);

	/* Closed before the barrier answers, and while the worker runs: STORE_ESHUTDOWN, once. */
	memset(&w, 0, sizeof w);
	assert_int_equal(store_backup(c.nodes[f].s, &w.b, true, backup_cb), STORE_OK);
	node_close(&c, f);
	assert_int_equal(w.calls, 1);
	assert_int_equal(w.status, STORE_ESHUTDOWN);
	assert_null(w.b.data);
	/* 24 MiB of state, so that the worker is still serializing when the store closes. */
	char *big = malloc(1 << 20);
	assert_non_null(big);
	memset(big, 'x', (1 << 20) - 1);
	big[(1 << 20) - 1] = 0;
	for (int i = 0; i < 24; i++) {
		char k[32];
		snprintf(k, sizeof k, "big/%02d", i);
		assert_int_equal(do_put(&c, leader, k, big, false, 0).status, STORE_OK);
	}
	free(big);
	memset(&w, 0, sizeof w);
	struct close_at_work x = {.w = &w, .s = c.nodes[leader].s};
	uv_check_init(&c.loop, &x.check);
	uv_check_start(&x.check, close_at_work_cb);
	assert_int_equal(store_backup(c.nodes[leader].s, &w.b, true, backup_cb), STORE_OK);
	c.nodes[leader].up = false;
	run_until(&c, timer_done_pred, &x.closed, 10000);
	c.nodes[leader].s = NULL;
	uv_close((uv_handle_t *)&x.check, NULL);
	assert_true(x.in_flight);
	assert_int_equal(w.calls, 1);
	assert_int_equal(w.status, STORE_ESHUTDOWN);
	assert_null(w.b.data);

	/* The one member left has no quorum: a serializable backup is its replica as it is. */
	unsigned last = 3 - f - leader;
	memset(&w, 0, sizeof w);
	assert_int_equal(store_backup(c.nodes[last].s, &w.b, false, backup_cb), STORE_OK);
	assert_false(w.done);
	run_until(&c, backup_done_pred, &w, 10000);
	assert_int_equal(w.status, STORE_OK);
	struct store_status st;
	store_get_status(c.nodes[last].s, &st);
	assert_int_equal(w.b.revision, st.revision);
	restored(&c, w.b.data, w.b.len, &rev, &hash);
	assert_int_equal(rev, st.revision);
	free(w.b.data);
	cluster_close(&c);
}

/* store_restore(): a backup becomes the raft state of a one-voter member. It starts, leads at
 * once, holds exactly the backup's state at its revision and nothing written after, takes
 * writes, restarts, and a member that joins gets the restored state by snapshot install (the
 * log starts after it). A directory with raft state, a state that fails its checksum and a
 * raft/ with someone's files are refused without a change; what an interrupted restore left
 * is cleared. */
static void test_restore(void **state)
{
	(void)state;
	struct cluster c;
	char *err = NULL;
	char path[512];
	unsigned leader;
	three_voters(&c, 0);
	for (int i = 0; i < 50; i++) { /* past the snapshot threshold (32) */
		char k[32];
		snprintf(k, sizeof k, "k/%02d", i);
		assert_int_equal(do_put(&c, (unsigned)i % 3, k, "kept", false, 0).status, STORE_OK);
	}
	struct backupw w = {0};
	assert_int_equal(store_backup(c.nodes[1].s, &w.b, true, backup_cb), STORE_OK);
	run_until(&c, backup_done_pred, &w, 10000);
	assert_int_equal(w.status, STORE_OK);
	assert_int_equal(do_put(&c, 0, "after", "lost", false, 0).status, STORE_OK);
	int64_t rev;
	uint64_t want;
	restored(&c, w.b.data, w.b.len, &rev, &want);
	assert_int_equal(rev, w.b.revision);

	/* Refused, untouched: a member's own data directory; a damaged state. */
	assert_int_equal(store_restore(c.nodes[2].dir, 3, c.nodes[2].addr, w.b.data, w.b.len, &err),
	                 STORE_EINVAL);
	assert_non_null(strstr(err, "already holds raft state"));
	free(err);
	err = NULL;
	for (unsigned i = 0; i < 3; i++) {
		node_close(&c, i);
	}
	cluster_close(&c);

	cluster_init(&c, 2);
	for (unsigned i = 0; i < 2; i++) {
		memset(c.nodes[i].cluster_id, 0xd4, STORE_CLUSTER_ID_LEN);
	}
	uint8_t *bytes = w.b.data;
	bytes[w.b.len / 2] ^= 1;
	assert_int_equal(store_restore(c.nodes[0].dir, 1, c.nodes[0].addr, w.b.data, w.b.len, &err),
	                 STORE_EINVAL);
	assert_non_null(strstr(err, "fails its checksum"));
	free(err);
	err = NULL;
	bytes[w.b.len / 2] ^= 1;
	assert_false(store_has_state(c.nodes[0].dir));
	assert_int_equal(access(c.nodes[0].dir, F_OK), -1); /* nothing created */

	/* A raft/ holding files that are not raft's state is someone's: refused. */
	assert_int_equal(mkdir(c.nodes[0].dir, 0700), 0);
	snprintf(path, sizeof path, "%s/raft", c.nodes[0].dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof path, "%s/raft/notes", c.nodes[0].dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(store_restore(c.nodes[0].dir, 1, c.nodes[0].addr, w.b.data, w.b.len, &err),
	                 STORE_EINVAL);
	assert_non_null(strstr(err, "holds files but no raft metadata"));
	free(err);
	err = NULL;
	assert_int_equal(unlink(path), 0);
	/* What an interrupted restore left behind goes. */
	snprintf(path, sizeof path, "%s/raft.restoring", c.nodes[0].dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof path, "%s/raft.restoring/snapshot-1-1-1.tmp", c.nodes[0].dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fclose(f);

	assert_int_equal(store_restore(c.nodes[0].dir, 1, c.nodes[0].addr, w.b.data, w.b.len, &err),
	                 STORE_OK);
	assert_true(store_has_state(c.nodes[0].dir));
	snprintf(path, sizeof path, "%s/raft.restoring", c.nodes[0].dir);
	assert_int_equal(access(path, F_OK), -1);
	node_open(&c, 0);
	assert_int_equal(store_start(c.nodes[0].s, &err), STORE_OK);
	run_until(&c, leader_ready_pred, &leader, 5000);
	assert_int_equal(leader, 0);
	assert_sole_voter(&c, 0, 1);
	struct store_status st;
	store_get_status(c.nodes[0].s, &st);
	/* the state's revision, plus the leader's barrier if it counts one */
	assert_true(st.revision >= w.b.revision);
	char *v = get_local(&c, 0, "k/49");
	assert_string_equal(v, "kept");
	free(v);
	assert_null(get_local(&c, 0, "after"));
	struct put p = do_put(&c, 0, "restored", "yes", false, 0);
	assert_int_equal(p.status, STORE_OK);
	assert_true(p.revision > w.b.revision);

	/* A restart starts from the snapshot and the log after it. */
	node_close(&c, 0);
	node_open(&c, 0);
	assert_int_equal(store_start(c.nodes[0].s, &err), STORE_OK);
	run_until(&c, leader_ready_pred, &leader, 5000);
	v = get_local(&c, 0, "restored");
	assert_string_equal(v, "yes");
	free(v);

	/* A joining member needs index 1, which only the snapshot holds: an install. */
	node_open(&c, 1);
	assert_int_equal(store_start(c.nodes[1].s, &err), STORE_OK);
	add_voter(&c, 0, 1);
	run_until(&c, all_have_pred, "restored", 5000);
	v = get_local(&c, 1, "k/00");
	assert_string_equal(v, "kept");
	free(v);
	assert_null(get_local(&c, 1, "after"));
	store_get_status(c.nodes[1].s, &st);
	assert_true(st.snapshots_restored >= 1);
	struct put h = {0};
	h.w.data = &h;
	struct kv_op hop = {.type = KV_OP_HASH};
	assert_int_equal(store_write(c.nodes[0].s, &h.w, &hop, put_cb), STORE_OK);
	run_until(&c, put_done_pred, &h, 10000);
	assert_int_equal(h.status, STORE_OK);
	run_for(&c, 300);
	uint64_t h0, h1;
	assert_true(store_hash_at(c.nodes[0].s, h.revision, &h0));
	assert_true(store_hash_at(c.nodes[1].s, h.revision, &h1));
	assert_true(h0 == h1);

	assert_int_equal(store_restore(c.nodes[1].dir, 2, c.nodes[1].addr, w.b.data, w.b.len, &err),
	                 STORE_EINVAL);
	free(err);
	free(w.b.data);
	cluster_close(&c);
}

/* Members of two clusters on one network: the leader of cluster A has a member at an address
 * where a member of cluster B runs. B refuses every raft connection from A, reports who called
 * and from which cluster, and takes none of A's entries; A's own members replicate as before.
 * A connection without a fence preamble is refused too. */
static void test_cluster_fence(void **state)
{
	(void)state;
	struct cluster c;
	fenced_cluster(&c, 3, (const uint8_t[]){0xa1, 0xa1, 0xb2});
	add_voter(&c, 0, 1);
	assert_int_equal(c.strangers, 0);
	add_member(&c, 0, 2, RAFT_STANDBY);
	struct put p = do_put(&c, 0, "fenced", "a", false, 0);
	assert_int_equal(p.status, STORE_OK);
	run_for(&c, 600);

	char *v = get_local(&c, 1, "fenced");
	assert_non_null(v);
	free(v);
	assert_null(get_local(&c, 2, "fenced"));
	assert_true(c.strangers > 0);
	assert_int_equal(c.stranger_id, 1);
	assert_string_equal(c.stranger_address, c.nodes[0].addr);
	assert_true(c.stranger_sent_id);
	uint8_t a[STORE_CLUSTER_ID_LEN];
	memset(a, 0xa1, sizeof a);
	assert_memory_equal(c.stranger_cluster, a, sizeof a);
	struct store_status st;
	store_get_status(c.nodes[2].s, &st);
	assert_true(st.refused_connections > 0);
	store_get_status(c.nodes[1].s, &st);
	assert_int_equal(st.refused_connections, 0);

	/* No preamble at all; B's member stops, so that the leader's retries to it stop counting.
	 */
	node_close(&c, 2);
	unsigned before = c.strangers;
	int fd = raw_stranger(c.nodes[1].addr, 0xee);
	run_for(&c, 200);
	assert_int_equal(c.strangers, before + 1);
	assert_int_equal(c.stranger_id, 9);
	assert_string_equal(c.stranger_address, "10.9.9.9:1");
	assert_false(c.stranger_sent_id);
	char b;
	assert_int_equal(recv(fd, &b, 1, MSG_DONTWAIT), 0); /* closed */
	close(fd);
	store_get_status(c.nodes[1].s, &st);
	assert_int_equal(st.refused_connections, 1);
	cluster_close(&c);
}

/* A member whose data predates cluster ids (all-zero id) speaks raft's plain protocol: it sends
 * no preamble, so a fenced member refuses it as a stranger without an id, and it takes a
 * connection without a preamble as raft's own (no stranger is reported). */
static void test_fence_open(void **state)
{
	(void)state;
	struct cluster c;
	fenced_cluster(&c, 2, (const uint8_t[]){0, 0xa1});
	add_member(&c, 0, 1, RAFT_STANDBY);
	run_for(&c, 300);
	assert_true(c.strangers > 0);
	assert_int_equal(c.stranger_id, 1);
	assert_false(c.stranger_sent_id);

	node_close(&c, 1);
	unsigned before = c.strangers;
	int fd = raw_stranger(c.nodes[0].addr, 0);
	run_for(&c, 200);
	assert_int_equal(c.strangers, before);
	struct store_status st;
	store_get_status(c.nodes[0].s, &st);
	assert_int_equal(st.refused_connections, 0);
	close(fd);
	cluster_close(&c);
}

static bool node_ready_pred(struct cluster *c, void *arg)
{
	struct store_status st;
	store_get_status(c->nodes[*(unsigned *)arg].s, &st);
	return st.ready;
}

/* A lost quorum, recovered: of three voters only node 3 is left, and writes cannot commit. It
 * is restarted with a new cluster id and store_recover(): it becomes the only voter, leads, keeps
 * every write (some only in its snapshot, some only in its log) and takes new ones. The two
 * lost voters then come back on their old data: with their old configuration they still form
 * a majority between them and elect a leader, but they cannot reach the recovered node, whose
 * fence refuses their cluster, so neither side takes the other's writes and node 3 keeps
 * leading. A data dir without raft state cannot be recovered. */
static void test_recover(void **state)
{
	(void)state;
	struct cluster c;
	char *err = NULL;
	unsigned three = 2;

	cluster_init(&c, 1);
	node_open(&c, 0);
	assert_int_equal(store_recover(c.nodes[0].s, &err), STORE_EINVAL);
	assert_non_null(strstr(err, "holds no raft state"));
	free(err);
	err = NULL;
	cluster_close(&c);

	three_voters(&c, 0);
	for (int i = 0; i < 50; i++) { /* past the snapshot threshold (32) */
		char k[32];
		snprintf(k, sizeof k, "before/%02d", i);
		assert_int_equal(do_put(&c, 0, k, "v", false, 0).status, STORE_OK);
	}
	run_until(&c, all_have_pred, "before/49", 5000);
	node_close(&c, 0);
	node_close(&c, 1);
	run_for(&c, 500);
	struct store_status st;
	store_get_status(c.nodes[2].s, &st);
	assert_false(st.ready);
	node_close(&c, 2);

	memset(c.nodes[2].cluster_id, 0xc3, STORE_CLUSTER_ID_LEN);
	node_open(&c, 2);
	assert_int_equal(store_recover(c.nodes[2].s, &err), STORE_OK);
	assert_int_equal(store_start(c.nodes[2].s, &err), STORE_OK);
	run_until(&c, node_ready_pred, &three, 5000);
	assert_sole_voter(&c, 2, 3);
	char *v = get_local(&c, 2, "before/49");
	assert_non_null(v);
	free(v);
	assert_int_equal(do_put(&c, 2, "after", "recovered", false, 0).status, STORE_OK);

	/* The lost voters return with the old cluster's configuration and id. */
	for (unsigned i = 0; i < 2; i++) {
		node_open(&c, i);
		assert_int_equal(store_start(c.nodes[i].s, &err), STORE_OK);
	}
	unsigned old_leader = 0;
	uint64_t until = uv_now(&c.loop) + 10000;
	for (;;) {
		if (node_ready_pred(&c, &(unsigned){0}) || node_ready_pred(&c, &(unsigned){1})) {
			old_leader = node_ready_pred(&c, &(unsigned){0}) ? 0 : 1;
			break;
		}
		assert_true(uv_now(&c.loop) < until);
		run_for(&c, 20);
	}
	assert_int_equal(do_put(&c, old_leader, "split", "old", false, 0).status, STORE_OK);
	assert_int_equal(do_put(&c, 2, "after2", "recovered", false, 0).status, STORE_OK);
	run_for(&c, 600);
	assert_null(get_local(&c, 2, "split"));
	for (unsigned i = 0; i < 2; i++) {
		assert_null(get_local(&c, i, "after"));
		assert_null(get_local(&c, i, "after2"));
	}
	store_get_status(c.nodes[2].s, &st);
	assert_true(st.ready);
	assert_int_equal(st.leader_id, 3);
	assert_true(st.refused_connections > 0);
	v = get_local(&c, 2, "after");
	assert_string_equal(v, "recovered");
	free(v);
	cluster_close(&c);
}

int main(void)
{
	/* libuv writes to sockets with write(2): a peer that went away must be an error, not a
	 * signal (the agent ignores SIGPIPE the same way). */
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_single_node),
	    cmocka_unit_test(test_three_nodes),
	    cmocka_unit_test(test_followers_learn_commit),
	    cmocka_unit_test(test_transfer_to),
	    cmocka_unit_test(test_replication_lag),
	    cmocka_unit_test(test_watch_callbacks),
	    cmocka_unit_test(test_retry_order),
	    cmocka_unit_test(test_install_ends_watches),
	    cmocka_unit_test(test_install_unrestorable),
	    cmocka_unit_test(test_damaged_snapshot_replaced),
	    cmocka_unit_test(test_own_snapshot_damaged),
	    cmocka_unit_test(test_backup),
	    cmocka_unit_test(test_restore),
	    cmocka_unit_test(test_cluster_fence),
	    cmocka_unit_test(test_fence_open),
	    cmocka_unit_test(test_recover),
	};
	if (getenv("TF"))
		cmocka_set_test_filter(getenv("TF"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
