/*
 * The agent daemon: flags, node identity, bootstrap and join, the store's forwarding hooks, the
 * membership reconciler, the default IP pools, and the loop.
 *
 * Identity lives in DATA_DIR/node.json ({"name", "id", "peer_address", "api_address", "cluster"},
 * the last absent in data from before cluster ids), written before raft first starts, so a
 * restarted agent needs neither --bootstrap nor --join.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <raft.h>

#include "agent/agent.h"
#include "agent/cni.h"
#include "agent/guard.h"
#include "agent/internal.h"
#include "agent/resources.h"
#include "agent/roles.h"
#include "ipam/ipam.h"

#define RECONCILE_MS             1000
#define DATAPLANE_RETRY_MS       200
#define REPLACE_VOTER_DEFAULT_MS 30000
#define REMOVE_GRACE_MS          2000
#define HOLD_LOG_MS              30000
/* In DATA_DIR of a member bootstrapped with --no-default-pools (see agent_main). */
#define NO_DEFAULT_POOLS_FILE "no-default-pools"
#define CHANGE_BACKOFF_MIN_MS 10000
#define CHANGE_BACKOFF_MAX_MS 300000
#define STOP_AFTER_REMOVAL_MS 10000
#define PROBE_AFTER_MS        10000 /* without a leader, before asking whether we were removed */
#define PROBE_EVERY_MS        5000
#define LEAK_GRACE_DEFAULT_MS (15 * 60 * 1000)
#define LEAK_GRACE_MAX_MS     (30ull * 24 * 3600 * 1000)

void agent_log(const char *fmt, ...)
{
	char ts[32];
	struct timespec now;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
	/* One fprintf() on the unbuffered stderr is one write(2) (glibc formats it in a buffer of
	 * its own first), so a line reaches a pipe or an O_APPEND file whole, beside other writers.
	 * Without memory for the message the line goes out in pieces, under stderr's lock against
	 * the loop's watchdog, which logs from its own thread. */
	char *msg = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n >= 0) {
		fprintf(stderr, "%s.%03ldZ %s\n", ts, now.tv_nsec / 1000000, msg);
		free(msg);
		return;
	}
	flockfile(stderr);
	fprintf(stderr, "%s.%03ldZ ", ts, now.tv_nsec / 1000000);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	funlockfile(stderr);
}

void agent_set_why(char **why, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(why, fmt, ap) < 0) {
		*why = NULL;
	}
	va_end(ap);
}

/* ------------------------------------------------------------------------------------------ */
/* Members                                                                                     */

static bool member_from_json(const uint8_t *data, size_t len, struct member_rec *m)
{
	json_error_t e;
	json_t *j = json_loadb((const char *)data, len, 0, &e);
	const char *name = NULL, *peer = NULL, *api = NULL;
	json_int_t id = 0;
	bool ok = j != NULL && json_unpack(j, "{s:s, s:I, s:s, s:s}", "name", &name, "id", &id,
	                                   "peer_address", &peer, "api_address", &api) == 0;
	if (ok) {
		memset(m, 0, sizeof *m);
		snprintf(m->name, sizeof m->name, "%s", name);
		m->id = (uint64_t)id;
		snprintf(m->peer_address, sizeof m->peer_address, "%s", peer);
		snprintf(m->api_address, sizeof m->api_address, "%s", api);
	}
	json_decref(j);
	return ok;
}

int agent_members_parse(struct kv_kv *kvs, unsigned nk, struct member_rec **out, unsigned *n)
{
	*out = calloc(nk ? nk : 1, sizeof **out);
	*n = 0;
	for (unsigned i = 0; *out != NULL && i < nk; i++) {
		if (member_from_json(kvs[i].value, kvs[i].value_len, &(*out)[*n])) {
			(*n)++;
		}
	}
	kv_kvs_free(kvs, nk);
	return *out != NULL ? 0 : -1;
}

int agent_members(struct agent *a, struct member_rec **out, unsigned *n)
{
	struct kv_kv *kvs = NULL;
	unsigned nk = 0;
	bool more;
	int64_t rev;
	struct kv_bytes prefix = {(const uint8_t *)SYS_MEMBER_PREFIX, strlen(SYS_MEMBER_PREFIX)};
	int rv = store_range(a->store, KV_SPACE_SYS, prefix, true, 0, &kvs, &nk, &more, &rev);
	if (rv != STORE_OK) {
		return rv;
	}
	return agent_members_parse(kvs, nk, out, n) == 0 ? STORE_OK : STORE_ENOMEM;
}

bool agent_member_name_ok(const char *name)
{
	/* A member's name is its IPAM node name too: IPAM's rule, and no '/' (a path segment). */
	return ipam_text_ok(name, strlen(name), 1, AGENT_MEMBER_NAME_MAX) &&
	       strchr(name, '/') == NULL;
}

int agent_member_find(struct agent *a, uint64_t id, const char *name, struct member_rec *out)
{
	struct member_rec *ms = NULL;
	unsigned n = 0;
	int found = 0;
	if (agent_members(a, &ms, &n) != STORE_OK) {
		return -1;
	}
	for (unsigned i = 0; i < n && !found; i++) {
		if (name != NULL ? strcmp(ms[i].name, name) == 0 : ms[i].id == id) {
			*out = ms[i];
			found = 1;
		}
	}
	free(ms);
	return found;
}

bool agent_member_by_id(struct agent *a, uint64_t id, struct member_rec *out)
{
	return agent_member_find(a, id, NULL, out) == 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Store hooks                                                                                 */

struct hook_call {
	struct agent *a;
	store_forward_done fdone;
	store_readindex_done rdone;
	void *done_data;
};

/* A 507 from the leader: was it its raft log that could not be written ("disk_failure"), rather
 * than its disk that is full ("no_space")? */
static bool disk_refusal(const uint8_t *body, size_t len)
{
	json_t *j = json_loadb((const char *)body, len, 0, NULL);
	const char *code = NULL;
	bool disk = j != NULL && json_unpack(j, "{s:{s:s}}", "error", "code", &code) == 0 &&
	            strcmp(code, "disk_failure") == 0;
	json_decref(j);
	return disk;
}

static void forward_reply(int status, const uint8_t *body, size_t len, void *data)
{
	struct hook_call *c = data;
	int st = STORE_ENOTLEADER;
	if (status == 200) {
		st = STORE_OK;
	} else if (status == 503 || status < 0) {
		st = STORE_ENOLEADER;
	} else if (status == 507) {
		st = disk_refusal(body, len) ? STORE_EDISK : STORE_ENOSPC;
	} else if (status == 400 || status == 413) {
		st = STORE_EINVAL; /* the same batch would be refused again */
	}
	c->fdone(c->done_data, st);
	free(c);
}

/* When there is nobody to ask, or no memory to ask with, the hooks fail at once and the store
 * tries again later (store.h). */
static int hook_forward(void *data, uint64_t leader_id, const void *buf, size_t len,
                        store_forward_done done, void *done_data)
{
	struct agent *a = data;
	struct hook_call *c = calloc(1, sizeof *c);
	struct member_rec m;
	if (c == NULL) {
		return -1;
	}
	c->a = a;
	c->fdone = done;
	c->done_data = done_data;
	if (!agent_member_by_id(a, leader_id, &m) ||
	    http_client_request(a->client, m.api_address, "POST", "/v1/internal/forward",
	                        "application/octet-stream", buf, len, 10000, forward_reply,
	                        c) != 0) {
		free(c);
		return -1;
	}
	return 0;
}

static void readindex_reply(int status, const uint8_t *body, size_t len, void *data)
{
	struct hook_call *c = data;
	uint64_t index = 0;
	int st = STORE_ENOLEADER;
	if (status == 200) {
		json_t *j = json_loadb((const char *)body, len, 0, NULL);
		json_int_t idx = 0;
		if (j != NULL && json_unpack(j, "{s:I}", "index", &idx) == 0) {
			index = (uint64_t)idx;
			st = STORE_OK;
		}
		json_decref(j);
	}
	c->rdone(c->done_data, st, index);
	free(c);
}

static int hook_readindex(void *data, uint64_t leader_id, store_readindex_done done,
                          void *done_data)
{
	struct agent *a = data;
	struct hook_call *c = calloc(1, sizeof *c);
	struct member_rec m;
	if (c == NULL) {
		return -1;
	}
	c->a = a;
	c->rdone = done;
	c->done_data = done_data;
	if (!agent_member_by_id(a, leader_id, &m) ||
	    http_client_request(a->client, m.api_address, "POST", "/v1/internal/readindex",
	                        "application/json", "{}", 2, 5000, readindex_reply, c) != 0) {
		free(c);
		return -1;
	}
	return 0;
}

static void hook_space(void *data, int err, bool disk, const char *what)
{
	(void)data;
	if (err != 0 && disk) {
		agent_log(
		    "data directory failing: %s; this member hands leadership to another and, "
		    "if it must keep it, refuses writes; as a follower it falls behind. raft "
		    "retries every 5 s. Check the disk and the volume under that directory.",
		    what);
	} else if (disk) {
		agent_log("raft log writes work again: %s", what);
	} else if (err != 0) {
		agent_log(
		    "data directory full: %s (%s); this member hands leadership to another and, "
		    "if it must keep it, refuses writes; as a follower it falls behind, and it "
		    "stops if the state's reserve runs out. Free space on that file system.",
		    what, strerror(err));
	} else {
		agent_log("data directory has space again: %s", what);
	}
}

/* The last line of defence of kv.c's disk reserve: a store into the state's map that finds no
 * disk block behind it raises SIGBUS. Say so before dying, with what was prepared at start
 * (nothing here may allocate or take a lock); the handler is reset, so returning refaults and
 * the default action ends the process with the same signal. */
static char sigbus_msg[PATH_MAX + 256];
static size_t sigbus_len;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
	ssize_t n = write(STDERR_FILENO, sigbus_msg, sigbus_len);
	(void)n;
}

static void install_sigbus(const char *data_dir)
{
	int n =
	    snprintf(sigbus_msg, sizeof sigbus_msg,
	             "fatal: SIGBUS: a write into a mapped file found no disk space or a failing "
	             "device; the state lives in %s/state. Free space on that file system and "
	             "start the agent again.\n",
	             data_dir);
	sigbus_len = n < 0 ? 0 : (size_t)n < sizeof sigbus_msg ? (size_t)n : sizeof sigbus_msg - 1;
	struct sigaction sa = {.sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO | SA_RESETHAND};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
}

static void hook_fatal(void *data, const char *msg)
{
	(void)data;
	agent_log("fatal: this replica cannot go on: %s", msg);
	/* Continuing would let this replica diverge; raft and the snapshot rebuild it on
	 * restart. */
	abort();
}

/* A disk that damages a file under the agent deserves the operator's attention even though the
 * store replaced the file (docs/operations.md, "A snapshot that does not restore"). */
static void hook_snapshot_damaged(void *data, const char *msg)
{
	(void)data;
	agent_log("error: %s; check this host's disk", msg);
}

/* ------------------------------------------------------------------------------------------ */
/* Bootstrap records and the membership reconciler                                             */

static int write_file_atomic(const char *path, const char *content, mode_t mode);

struct sys_put {
	struct store_write w;
	struct agent *a;
	bool is_token; /* publish the join token once this write is applied */
	char what[64];
};

/* The join-token file and the printed token appear only once the token's record is applied
 * here: a member that joins as soon as it sees the file then always finds the token to check
 * against. Written at startup instead, the file raced the bootstrap records by up to a reconcile
 * period, and an early joiner was refused as if its token were wrong. */
static void publish_join_token(struct agent *a)
{
	if (a->token_published) {
		return;
	}
	a->token_published = true;
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/join-token", a->data_dir);
	char line[sizeof a->token + 1];
	size_t tl = strnlen(a->token, sizeof a->token - 1);
	memcpy(line, a->token, tl);
	line[tl] = '\n';
	line[tl + 1] = 0;
	int rv = write_file_atomic(path, line, 0600);
	if (rv != 0) {
		agent_log("cannot write %s: %s (the token is printed below)", path, strerror(-rv));
	}
	printf("join token: %s\n", a->token);
	fflush(stdout);
}

static void sys_put_done(struct store_write *w, int status, const struct kv_result *r)
{
	struct sys_put *p = w->data;
	/* The token is put only if absent. Absent no more on a retry means an earlier attempt was
	 * applied after all (it timed out, or the member record beside it failed): nobody else
	 * writes the token, so it is ours if it matches. */
	bool ok = status == STORE_OK &&
	          (r->status == KV_R_OK || (p->is_token && r->status == KV_R_COND_FAILED &&
	                                    agent_token_matches(p->a, p->a->token) == 1));
	if (!ok) {
		agent_log("writing %s failed: %s", p->what,
		          status != STORE_OK ? store_strerror(status) : "condition failed");
		p->a->bootstrap_pending = true; /* try again on the next reconcile */
	} else if (p->is_token) {
		publish_join_token(p->a);
	}
	free(p);
}

static int sys_put(struct agent *a, const char *key, const char *value, bool if_absent,
                   const char *what)
{
	struct sys_put *p = calloc(1, sizeof *p);
	if (p == NULL) {
		return STORE_ENOMEM;
	}
	p->a = a;
	p->is_token = strcmp(key, SYS_TOKEN_KEY) == 0;
	p->w.data = p;
	snprintf(p->what, sizeof p->what, "%s", what);
	struct kv_op op = {
	    .type = KV_OP_PUT,
	    .space = KV_SPACE_SYS,
	    .key = {(const uint8_t *)key, strlen(key)},
	    .value = {(const uint8_t *)value, strlen(value)},
	    .has_prev = if_absent,
	    .prev_revision = 0,
	};
	int rv = store_write(a->store, &p->w, &op, sys_put_done);
	if (rv != STORE_OK) {
		free(p);
	}
	return rv;
}

char *member_json(const struct member_rec *m)
{
	json_t *j = json_pack("{s:s, s:I, s:s, s:s}", "name", m->name, "id", (json_int_t)m->id,
	                      "peer_address", m->peer_address, "api_address", m->api_address);
	char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(j);
	return s;
}

/* A fresh join token: 128 random bits as hex. */
static int new_token(struct agent *a)
{
	uint8_t rnd[16];
	if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
		return -errno;
	}
	for (int i = 0; i < 16; i++) {
		snprintf(a->token + 2 * i, 3, "%02x", rnd[i]);
	}
	return 0;
}

/* A first member killed between saving its identity and the commit of its bootstrap records
 * (its first election, up to an election timeout) restarts as a cluster with no member record
 * and no join token, which nobody could join. Restarted, it checks once it leads: no token in
 * the replica means the records were never written, and it writes them now, with a new token
 * (the old one was never published, so nobody holds it). A token whose file is missing (killed
 * after the commit, before the file was written) is published again. */
static void check_bootstrap(struct agent *a)
{
	struct kv_kv *kvs = NULL;
	unsigned n = 0;
	bool more;
	int64_t rev;
	struct kv_bytes key = {(const uint8_t *)SYS_TOKEN_KEY, strlen(SYS_TOKEN_KEY)};
	char path[PATH_MAX];

	if (store_range(a->store, KV_SPACE_SYS, key, false, 1, &kvs, &n, &more, &rev) != STORE_OK) {
		return; /* asked again at the next reconcile */
	}
	a->token_check = false;
	if (n == 0) {
		int rv = new_token(a);
		if (rv != 0) {
			agent_log("getrandom: %s", strerror(-rv));
			a->token_check = true;
			return;
		}
		agent_log("this cluster's bootstrap was cut short before its first records were "
		          "written: writing them now, with a new join token");
		a->bootstrap_pending = true;
	} else if (kvs[0].value_len < sizeof a->token) {
		memcpy(a->token, kvs[0].value, kvs[0].value_len);
		a->token[kvs[0].value_len] = 0;
		snprintf(path, sizeof path, "%s/join-token", a->data_dir);
		if (access(path, F_OK) != 0 && errno == ENOENT) {
			publish_join_token(a);
		}
	}
	kv_kvs_free(kvs, n);
}

static void write_bootstrap_records(struct agent *a)
{
	struct member_rec m = {.id = a->id};
	snprintf(m.name, sizeof m.name, "%s", a->name);
	snprintf(m.peer_address, sizeof m.peer_address, "%s", a->peer_address);
	snprintf(m.api_address, sizeof m.api_address, "%s", a->api_address);
	char *js = member_json(&m);
	char key[256];
	snprintf(key, sizeof key, SYS_MEMBER_PREFIX "%s", a->name);
	a->bootstrap_pending = false;
	if (js == NULL || sys_put(a, key, js, false, "the first member record") != STORE_OK ||
	    sys_put(a, SYS_TOKEN_KEY, a->token, true, "the join token") != STORE_OK) {
		a->bootstrap_pending = true;
	}
	free(js);
}

/* The default IP pools. The first member (id 1, the one that bootstrapped) proposes
 * IPAM_REQ_INIT_DEFAULTS right behind the bootstrap records, and again at every restart: the state
 * machine runs it once per cluster and ignores it afterwards, so a first member that crashed
 * before its proposal was committed still creates the pools when it comes back. With
 * --no-default-pools it asks for no pool, which still counts as the one run: a later restart
 * without the flag does not create pools the operator declined. */
struct ipam_init {
	struct store_write w;
	struct agent *a;
	const char *what; /* for the log */
};

static void ipam_init_done(struct store_write *w, int status, const struct kv_result *r)
{
	struct ipam_init *p = w->data;
	struct agent *a = p->a;
	struct ipam_reply rep = {0};
	a->ipam_init_inflight = false;
	if (status != STORE_OK) {
		if (status != STORE_ESHUTDOWN) {
			agent_log("creating the default IP pools failed: %s; trying again",
			          store_strerror(status));
		}
		a->ipam_init_pending = true;
	} else if ((r->status != KV_R_OK && r->status != KV_R_REFUSED) ||
	           ipam_decode_reply(r->reply, r->reply_len, &rep) != 0 || rep.error != IPAM_OK) {
		/* Not something a retry mends: say so once. */
		const char *why = rep.message ? rep.message : r->message;
		agent_log("creating the default IP pools was refused: %s",
		          why ? why : "no reason given");
	} else if (rep.count > 0) {
		agent_log("IPAM initialised: made %llu default pool%s (%s)",
		          (unsigned long long)rep.count, rep.count == 1 ? "" : "s", p->what);
	} else if (a->no_default_pools) {
		agent_log("IPAM initialised: without default pools (--no-default-pools)");
	}
	/* Otherwise the command found the pools settled at the cluster's first start, as it does at
	 * every later start of the first member: nothing happened, nothing to say. */
	ipam_reply_free(&rep);
	free(p);
}

static void init_ipam(struct agent *a, const struct store_status *st)
{
	if (!a->ipam_init_pending || a->ipam_init_inflight || a->bootstrap_pending ||
	    st->leader_id == 0) {
		return;
	}
	bool ipv6 = access("/proc/sys/net/ipv6", F_OK) == 0;
	struct ipam_request req = {.type = IPAM_REQ_INIT_DEFAULTS,
	                           .num4 = a->no_default_pools ? 0 : 1,
	                           .num6 = a->no_default_pools || !ipv6 ? 0 : 1};
	struct ipam_init *p = calloc(1, sizeof *p);
	uint8_t *buf = NULL;
	size_t len = 0;
	if (p == NULL || ipam_encode_request(&req, &buf, &len) != 0) {
		free(p);
		return; /* out of memory: the next reconcile tries again */
	}
	p->a = a;
	p->w.data = p;
	p->what = ipv6 ? "IPv4 and IPv6 asked for" : "IPv4 asked for: this host has no IPv6";
	struct kv_op op = {.type = KV_OP_CALL, .call = IPAM_CALL, .value = {buf, len}};
	if (store_write(a->store, &p->w, &op, ipam_init_done) == STORE_OK) {
		a->ipam_init_pending = false;
		a->ipam_init_inflight = true;
	} else {
		free(p);
	}
	free(buf);
}

static struct change_backoff *backoff_of(struct agent *a, uint64_t id)
{
	for (unsigned i = 0; i < sizeof a->backoff / sizeof a->backoff[0]; i++) {
		if (a->backoff[i].id == id) {
			return &a->backoff[i];
		}
	}
	return NULL;
}

/* Record a failed change for member id: tried again after 10 s, doubling up to 5 minutes, while
 * the reconciler goes on with the other members. The table is small: when it is full the entry
 * that retries first gives way (that member is then merely tried again sooner). */
static void backoff_fail(struct agent *a, uint64_t id, uint64_t now)
{
	struct change_backoff *b = backoff_of(a, id);
	if (b == NULL) {
		b = &a->backoff[0];
		for (unsigned i = 0; i < sizeof a->backoff / sizeof a->backoff[0]; i++) {
			if (a->backoff[i].id == 0 || a->backoff[i].retry_at < b->retry_at) {
				b = &a->backoff[i];
				if (b->id == 0) {
					break;
				}
			}
		}
		*b = (struct change_backoff){.id = id};
	}
	uint64_t wait = CHANGE_BACKOFF_MIN_MS << (b->failures < 5 ? b->failures : 5);
	b->failures++;
	b->retry_at = now + (wait < CHANGE_BACKOFF_MAX_MS ? wait : CHANGE_BACKOFF_MAX_MS);
}

static void change_done(void *data, int status)
{
	struct agent *a = data;
	a->change_inflight = false;
	struct change_backoff *b = a->change_id != 0 ? backoff_of(a, a->change_id) : NULL;
	if (status == STORE_OK) {
		if (b != NULL) {
			*b = (struct change_backoff){0};
		}
	} else if (a->change_id != 0 && status == STORE_ECHANGE) {
		uint64_t now = uv_now(a->loop);
		backoff_fail(a, a->change_id, now);
		b = backoff_of(a, a->change_id);
		struct member_rec m;
		bool named = agent_member_by_id(a, a->change_id, &m);
		agent_log("membership change for member %s (id %llu) failed: %s; trying it again "
		          "in %llus, the other members go ahead",
		          named ? m.name : "?", (unsigned long long)a->change_id,
		          store_strerror(status), (unsigned long long)((b->retry_at - now) / 1000));
	} else {
		agent_log("membership change failed: %s", store_strerror(status));
	}
	a->change_id = 0;
	agent_kick_reconcile(a);
}

/*
 * A member removed while it was down never learns it from its replica: nobody sends a non-member
 * anything, so it would wait for a leader for ever, serving stale reads. So a member that has
 * known no leader for PROBE_AFTER_MS asks the others it knows of, one every PROBE_EVERY_MS, for
 * their view (GET /v1/cluster); the leader's, without a record of this member's id, settles it.
 */
static void probe_done(int status, const uint8_t *body, size_t len, void *data)
{
	struct agent *a = data;
	a->probe_inflight = false;
	if (status != 200 || a->stopping) {
		return; /* UV_ECANCELED at shutdown, or that member cannot say: ask another */
	}
	json_t *j = json_loadb((const char *)body, len, 0, NULL);
	json_t *members = json_object_get(j, "members");
	const char *leader = json_string_value(json_object_get(j, "leader"));
	const char *who = json_string_value(json_object_get(j, "name"));
	const char *cluster = json_string_value(json_object_get(j, "cluster"));
	if (j != NULL && !agent_cluster_is_ours(a, cluster)) {
		/* Not this member's cluster: whatever it lists says nothing about this one. Said
		 * once a minute; the probes go on every few seconds. */
		uint64_t now = uv_now(a->loop);
		if (a->foreign_probe_logged == 0 || now - a->foreign_probe_logged >= 60000) {
			a->foreign_probe_logged = now;
			agent_log(
			    "asked %s whether this member was removed, but it is in cluster %s, "
			    "not this member's %s: this member's peers were replaced by "
			    "another cluster on their addresses",
			    who ? who : "a member", cluster ? cluster : "(none)",
			    a->cluster_hex[0] ? a->cluster_hex : "(none)");
		}
		json_decref(j);
		return;
	}
	bool listed = false;
	size_t i;
	json_t *m;
	json_array_foreach (members, i, m) {
		json_int_t id = 0;
		listed =
		    listed || (json_unpack(m, "{s:I}", "id", &id) == 0 && (uint64_t)id == a->id);
	}
	/* Only the leader's own view: a follower that is behind (catching up by snapshot) may not
	 * have applied this member's join yet. */
	if (leader != NULL && who != NULL && strcmp(leader, who) == 0 && json_is_array(members) &&
	    json_array_size(members) > 0 && !listed) {
		agent_log(
		    "this member was removed from the cluster while it was down (the leader, "
		    "%s, has no member id %llu); stopping (delete %s before joining this host "
		    "again)",
		    leader, (unsigned long long)a->id, a->data_dir);
		a->stopping = true;
		uv_stop(a->loop);
	}
	json_decref(j);
}

static void probe_removal(struct agent *a, const struct store_status *st)
{
	uint64_t now = uv_now(a->loop);
	if (st->leader_id != 0 || a->bootstrap_pending) {
		a->leaderless_since = 0;
		return;
	}
	if (a->leaderless_since == 0) {
		a->leaderless_since = now;
	}
	if (a->probe_inflight || now - a->leaderless_since < PROBE_AFTER_MS || now < a->probe_at) {
		return;
	}
	struct member_rec *ms = NULL;
	unsigned n = 0;
	if (agent_members(a, &ms, &n) != STORE_OK || n < 2) {
		free(ms);
		return;
	}
	const struct member_rec *m = &ms[a->probe_next++ % n];
	if (m->id == a->id) {
		m = &ms[a->probe_next++ % n];
	}
	a->probe_at = now + PROBE_EVERY_MS;
	if (http_client_request(a->client, m->api_address, "GET", "/v1/cluster", NULL, NULL, 0,
	                        PROBE_EVERY_MS, probe_done, a) == 0) {
		a->probe_inflight = true;
	}
	free(ms);
}

/* A removed member learns it from its own replica: its record is deleted first, and the leader
 * takes it out of raft's configuration REMOVE_GRACE_MS later, so the deletion reaches it while it
 * is still a member (nobody sends anything to a non-member). It stops STOP_AFTER_REMOVAL_MS after
 * it saw the deletion, rather than serve reads that no longer follow the cluster, and a voter not
 * before it is out of the configuration: until then the cluster may still need its vote. */
static bool removed_from_cluster(struct agent *a, const struct store_status *st)
{
	struct member_rec m;
	if (agent_member_by_id(a, a->id, &m)) {
		a->seen_own_record = true;
		a->record_gone_since = 0;
		return false;
	}
	if (!a->seen_own_record || a->bootstrap_pending) {
		return false;
	}
	uint64_t now = uv_now(a->loop);
	if (a->record_gone_since == 0) {
		a->record_gone_since = now;
	}
	if (now - a->record_gone_since < STOP_AFTER_REMOVAL_MS) {
		return false;
	}
	/* A voter that still follows a leader is still in the configuration: the leader holds
	 * its removal while the voters left would lack an answering majority, and this vote may
	 * be one of those the cluster needs meanwhile. Once out of the configuration it hears
	 * from no leader, and raft makes it a candidate. */
	struct store_member *cf = NULL;
	unsigned nc = 0;
	bool voter = false;
	if (st->leader_id != 0 && st->leader_id != a->id &&
	    store_configuration(a->store, &cf, &nc) == STORE_OK) {
		for (unsigned k = 0; k < nc; k++) {
			voter = voter || (cf[k].id == a->id && cf[k].role == RAFT_VOTER);
		}
	}
	free(cf);
	if (voter && !a->removal_wait_logged) {
		a->removal_wait_logged = true;
		agent_log(
		    "this member was removed from the cluster; it stays until the leader takes "
		    "it out of the configuration, which waits for enough other voters to answer");
	}
	return !voter;
}

static const char *roles_why(struct agent *a, const struct roles_step *st,
                             const struct roles_member *rm, unsigned n, char *buf, size_t size)
{
	uint64_t silent = 0;
	for (unsigned i = 0; i < n; i++) {
		silent = rm[i].id == st->id ? rm[i].silent_ms : silent;
	}
	switch (st->reason) {
	case ROLES_NEW_MEMBER:
		return "a new member";
	case ROLES_TOO_FEW:
		return "the cluster has fewer voters than it wants";
	case ROLES_LOST:
		if (st->other != 0) {
			struct member_rec m;
			bool named = agent_member_by_id(a, st->other, &m);
			snprintf(
			    buf, size,
			    "silent for %llu s; %s (id %llu), a standby that answers, votes in "
			    "its place next",
			    (unsigned long long)(silent / 1000), named ? m.name : "?",
			    (unsigned long long)st->other);
		} else {
			snprintf(buf, size,
			         "silent for %llu s, and the cluster has more voters than it "
			         "wants",
			         (unsigned long long)(silent / 1000));
		}
		return buf;
	case ROLES_TOO_MANY:
		return "the cluster has more voters than it wants";
	case ROLES_FULL_REPLICA:
		return "raft adds a member as a spare, which holds no replica";
	}
	return "";
}

int agent_roles_view(struct agent *a, struct roles_member **out, unsigned *n,
                     struct roles_policy *policy)
{
	*out = NULL;
	*n = 0;
	*policy = (struct roles_policy){
	    .self = a->id, .online_ms = a->online_ms, .lost_ms = a->replace_voter_ms};
	struct store_progress *ps = NULL;
	struct member_rec *ms = NULL;
	struct store_member *cf = NULL;
	unsigned np = 0, nm = 0, nc = 0;
	int rv = store_replication(a->store, &ps, &np);
	if (rv == STORE_OK) {
		rv = agent_members(a, &ms, &nm);
	}
	if (rv == STORE_OK) {
		rv = store_configuration(a->store, &cf, &nc);
	}
	struct roles_member *rm = NULL;
	if (rv == STORE_OK && (rm = calloc(nm + nc ? nm + nc : 1, sizeof *rm)) == NULL) {
		rv = STORE_ENOMEM;
	}
	if (rv != STORE_OK) {
		goto out;
	}
	uint64_t now = uv_now(a->loop);
	for (unsigned i = 0; i < nm; i++) {
		const struct change_backoff *b = backoff_of(a, ms[i].id);
		rm[(*n)++] = (struct roles_member){
		    .id = ms[i].id, .recorded = true, .backed_off = b != NULL && now < b->retry_at};
	}
	for (unsigned k = 0; k < nc; k++) {
		struct roles_member *m = NULL;
		for (unsigned i = 0; i < *n; i++) {
			m = rm[i].id == cf[k].id ? &rm[i] : m;
		}
		if (m == NULL) {
			m = &rm[(*n)++];
			*m = (struct roles_member){.id = cf[k].id};
		}
		m->in_config = true;
		m->role = cf[k].role;
		/* A member the leader does not replicate to (a spare) has never answered. */
		m->silent_ms = UINT64_MAX;
		for (unsigned j = 0; j < np; j++) {
			if (ps[j].id == cf[k].id) {
				m->silent_ms = ps[j].silent_ms;
			}
		}
	}
	*out = rm;
out:
	free(ps);
	free(ms);
	free(cf);
	return rv;
}

/* The leader's one role change, if roles.c asks for one (true when it started it). */
static bool change_roles(struct agent *a)
{
	struct roles_member *rm = NULL;
	struct roles_policy policy;
	unsigned n = 0;
	if (agent_roles_view(a, &rm, &n, &policy) != STORE_OK) {
		return false; /* not (or no longer) the leader */
	}
	struct roles_step st = roles_next(rm, n, &policy);
	if (st.action == ROLES_NONE) {
		free(rm);
		return false;
	}
	struct member_rec m;
	bool named = agent_member_by_id(a, st.id, &m);
	char buf[320];
	const char *why = roles_why(a, &st, rm, n, buf, sizeof buf);
	free(rm);
	int rv;
	if (st.action == ROLES_ADD) {
		if (!named) {
			return false; /* its record went since the range read: nothing to add */
		}
		agent_log("adding member %s (id %llu, %s)", m.name, (unsigned long long)st.id,
		          m.peer_address);
		rv = store_add_member(a->store, st.id, m.peer_address, change_done, a);
	} else {
		int role = st.action == ROLES_VOTER ? RAFT_VOTER : RAFT_STANDBY;
		agent_log("member %s (id %llu) becomes %s: %s", named ? m.name : "?",
		          (unsigned long long)st.id, role == RAFT_VOTER ? "voter" : "standby", why);
		rv = store_assign_member(a->store, st.id, role, change_done, a);
	}
	if (rv == STORE_OK) {
		a->change_inflight = true;
		a->change_id = st.id;
	}
	return true;
}

/* internal.h: a stopping or removed leader's successor, and the move-leader route's default. */
uint64_t agent_pick_successor(struct agent *a)
{
	struct store_progress *ps = NULL;
	struct store_member *cf = NULL;
	unsigned np = 0, nc = 0;
	uint64_t best = 0, best_match = 0;
	if (store_replication(a->store, &ps, &np) != STORE_OK ||
	    store_configuration(a->store, &cf, &nc) != STORE_OK) {
		goto out;
	}
	for (unsigned k = 0; k < nc; k++) {
		if (cf[k].role != RAFT_VOTER || cf[k].id == a->id) {
			continue;
		}
		for (unsigned j = 0; j < np; j++) {
			if (ps[j].id == cf[k].id && ps[j].silent_ms < a->online_ms &&
			    (best == 0 || ps[j].match_index > best_match)) {
				best = ps[j].id;
				best_match = ps[j].match_index;
			}
		}
	}
out:
	free(ps);
	free(cf);
	return best;
}

/* Whether the voters other than id, as raft's configuration has them now, have a majority that
 * answers; says once every HOLD_LOG_MS why not. */
static bool removal_keeps_quorum(struct agent *a, uint64_t id, uint64_t now)
{
	struct roles_member *rm = NULL;
	struct roles_policy policy;
	unsigned n = 0, up = 0, voters = 0;
	if (agent_roles_view(a, &rm, &n, &policy) != STORE_OK) {
		return false;
	}
	bool ok = roles_voters_without(rm, n, &policy, id, &up, &voters);
	free(rm);
	if (!ok && now >= a->hold_logged + HOLD_LOG_MS) {
		a->hold_logged = now;
		agent_log("holding the removal of member id %llu: %u of the %u voters left answer, "
		          "not a majority; it goes once enough of them answer again (or a silent "
		          "one is removed)",
		          (unsigned long long)id, up, voters);
	}
	return ok;
}

/* When this leader first saw that configuration entry id has no record. A full table gives up
 * the slot seen longest ago: that entry is removed or about to be, and if not it merely waits out
 * the grace period again. */
static uint64_t removal_seen(struct agent *a, uint64_t id, uint64_t now)
{
	struct removal_wait *w = &a->removing[0];
	for (unsigned i = 0; i < sizeof a->removing / sizeof a->removing[0]; i++) {
		if (a->removing[i].id == id) {
			return a->removing[i].since;
		}
		if (a->removing[i].since < w->since) {
			w = &a->removing[i];
		}
	}
	*w = (struct removal_wait){.id = id, .since = now};
	return now;
}

/* The leader makes raft's configuration follow the member records and roles.c's rules (every
 * member a full replica, 3 or 5 voters, a silent voter replaced); a configuration entry without a
 * record (a removed member) goes. One change at a time, as raft requires. */
static void reconcile(struct agent *a)
{
	struct store_status st;
	store_get_status(a->store, &st);
	if (a->stopping) {
		return;
	}
	/* A removed leader first hands leadership over (below); it stops once it follows. */
	probe_removal(a, &st);
	bool removed = removed_from_cluster(a, &st);
	if (removed && !st.ready) {
		agent_log("this member was removed from the cluster; stopping (delete %s before "
		          "joining this host again)",
		          a->data_dir);
		a->stopping = true;
		uv_stop(a->loop);
		return;
	}
	if (st.ready && a->token_check) {
		check_bootstrap(a);
	}
	bool bootstrapping = st.ready && a->bootstrap_pending;
	if (bootstrapping) {
		write_bootstrap_records(a);
	}
	/* Behind the bootstrap records; a restarted first member that follows proposes through
	 * whoever leads. */
	init_ipam(a, &st);
	if (!st.ready || bootstrapping) {
		return;
	}
	if (a->change_inflight) {
		return;
	}
	struct member_rec *ms = NULL;
	struct store_member *cf = NULL;
	unsigned nm = 0, nc = 0;
	if (agent_members(a, &ms, &nm) != STORE_OK || nm == 0 ||
	    store_configuration(a->store, &cf, &nc) != STORE_OK) {
		goto out;
	}
	if (change_roles(a)) {
		goto out;
	}
	uint64_t now = uv_now(a->loop);
	for (unsigned k = 0; k < nc; k++) {
		bool known = false;
		for (unsigned i = 0; i < nm; i++) {
			known = known || ms[i].id == cf[k].id;
		}
		if (known) {
			continue;
		}
		if (cf[k].id == a->id) {
			/* This leader was removed: hand leadership to another voter, whose
			 * reconciler then takes us out of the configuration. */
			agent_log("this member was removed; transferring leadership");
			if (store_transfer_leadership(a->store, agent_pick_successor(a),
			                              change_done, a) == STORE_OK) {
				a->change_inflight = true;
			}
			goto out;
		}
		/* Leave it in the configuration a little longer: the entry that deleted its record
		 * reaches it only with the leader's next messages, and once it is out of the
		 * configuration nobody sends it anything. With the deletion applied it stops by
		 * itself (removed_from_cluster). */
		if (now - removal_seen(a, cf[k].id, now) < REMOVE_GRACE_MS) {
			continue;
		}
		/* The removal was checked when it was asked for, on the promotions that would come
		 * first; a promotion that failed, a candidate that died or two removals checked at
		 * once can still leave too few: then the voter stays until enough answer. The
		 * removals after it go ahead meanwhile: the removal of a silent voter is what lets
		 * a held one go. */
		if (cf[k].role == RAFT_VOTER && !removal_keeps_quorum(a, cf[k].id, now)) {
			continue;
		}
		agent_log("removing member id %llu (%s)", (unsigned long long)cf[k].id,
		          cf[k].address);
		if (store_remove_member(a->store, cf[k].id, change_done, a) == STORE_OK) {
			a->change_inflight = true;
		}
		goto out;
	}
out:
	free(ms);
	free(cf);
}

static void reconcile_cb(uv_timer_t *t)
{
	reconcile(t->data);
}

void agent_kick_reconcile(struct agent *a)
{
	if (!a->stopping) {
		uv_timer_start(&a->reconcile, reconcile_cb, 0, RECONCILE_MS);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Identity                                                                                    */

static int write_file_atomic(const char *path, const char *content, mode_t mode)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0) {
		return -errno;
	}
	size_t len = strlen(content);
	ssize_t n = write(fd, content, len);
	if (n != (ssize_t)len || fsync(fd) != 0) {
		int e = n < 0 ? errno : EIO;
		close(fd);
		unlink(tmp);
		return -e;
	}
	close(fd);
	if (rename(tmp, path) != 0) {
		return -errno;
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Cluster id                                                                                  */

bool agent_cluster_parse(const char *hex, uint8_t out[STORE_CLUSTER_ID_LEN])
{
	if (strlen(hex) != 2 * STORE_CLUSTER_ID_LEN) {
		return false;
	}
	for (size_t i = 0; i < STORE_CLUSTER_ID_LEN; i++) {
		unsigned v = 0;
		for (size_t k = 0; k < 2; k++) {
			char c = hex[2 * i + k];
			if (c >= '0' && c <= '9') {
				v = v * 16 + (unsigned)(c - '0');
			} else if (c >= 'a' && c <= 'f') {
				v = v * 16 + (unsigned)(c - 'a' + 10);
			} else {
				return false;
			}
		}
		out[i] = (uint8_t)v;
	}
	return true;
}

bool agent_cluster_is_ours(const struct agent *a, const char *hex)
{
	return strcmp(hex ? hex : "", a->cluster_hex) == 0;
}

/* This member's cluster id; all zero (data from before cluster ids) leaves the hex empty, and
 * member-to-member requests then carry no header, as before. */
static void cluster_set(struct agent *a, const uint8_t id[STORE_CLUSTER_ID_LEN])
{
	static const uint8_t zero[STORE_CLUSTER_ID_LEN];
	memcpy(a->cluster_id, id, STORE_CLUSTER_ID_LEN);
	a->cluster_hex[0] = 0;
	if (memcmp(id, zero, sizeof zero) != 0) {
		for (size_t i = 0; i < STORE_CLUSTER_ID_LEN; i++) {
			snprintf(a->cluster_hex + 2 * i, 3, "%02x", id[i]);
		}
		/* Only fails for a header that cannot be; hex digits always can. */
		(void)http_client_set_header(a->client, CLUSTER_HEADER, a->cluster_hex);
	}
}

/* A new cluster's id: 128 random bits, so two clusters never share one. */
int agent_new_cluster_id(struct agent *a)
{
	uint8_t id[STORE_CLUSTER_ID_LEN];
	if (getrandom(id, sizeof id, 0) != (ssize_t)sizeof id) {
		return -errno;
	}
	id[0] |= 1; /* never all zero, which means "no id" */
	cluster_set(a, id);
	return 0;
}

/* A raft connection from a member of another cluster was refused (store/fence.h). The
 * stranger retries every second; one line a minute says it goes on. */
static void hook_stranger(void *data, uint64_t id, const char *address, const uint8_t *theirs)
{
	struct agent *a = data;
	uint64_t now = uv_now(a->loop);
	if (a->stranger_logged != 0 && now - a->stranger_logged < 60000) {
		a->strangers_quiet++;
		return;
	}
	char what[96];
	if (theirs == NULL) {
		/* A member without an id sends none (store/fence.h). */
		snprintf(
		    what, sizeof what,
		    "it sent no cluster id (its data predates cluster ids, or it is no Tabby)");
	} else {
		int n = snprintf(what, sizeof what, "it is in cluster ");
		for (size_t i = 0; i < STORE_CLUSTER_ID_LEN; i++) {
			n += snprintf(what + n, sizeof what - (size_t)n, "%02x", theirs[i]);
		}
	}
	agent_log("refused a raft connection from server %llu at %s: %s, and this member is in "
	          "cluster %s (%u more refused since the last such line). A member left over "
	          "from another cluster on these addresses: stop it, or delete its data "
	          "directory and join it to this cluster. After a recovery from a lost quorum "
	          "(--force-new-cluster), the member still in the old cluster joins the new "
	          "one again (docs/operations.md, \"Losing quorum\")",
	          (unsigned long long)id, address, what,
	          a->cluster_hex[0] ? a->cluster_hex : "(none: data from before cluster ids)",
	          a->strangers_quiet);
	a->stranger_logged = now;
	a->strangers_quiet = 0;
}

int agent_save_identity(struct agent *a)
{
	char path[PATH_MAX];
	json_t *j = json_pack("{s:s, s:I, s:s, s:s}", "name", a->name, "id", (json_int_t)a->id,
	                      "peer_address", a->peer_address, "api_address", a->api_address);
	if (j != NULL && a->cluster_hex[0] != 0 &&
	    json_object_set_new(j, "cluster", json_string(a->cluster_hex)) != 0) {
		json_decref(j);
		j = NULL;
	}
	if (j != NULL && a->recovered_from[0] != 0 &&
	    json_object_set_new(j, "recovered_from", json_string(a->recovered_from)) != 0) {
		json_decref(j);
		j = NULL;
	}
	if (j != NULL && a->restored &&
	    json_object_set_new(j, "restored_from",
	                        json_pack("{s:s, s:I}", "cluster", a->restored_cluster, "revision",
	                                  (json_int_t)a->restored_revision)) != 0) {
		json_decref(j);
		j = NULL;
	}
	char *js = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(j);
	if (js == NULL) {
		return -ENOMEM;
	}
	snprintf(path, sizeof path, "%s/node.json", a->data_dir);
	int rv = write_file_atomic(path, js, 0600);
	free(js);
	return rv;
}

/* Restart: this member's identity from DATA_DIR/node.json. Its addresses are in every other
 * member's record and raft configuration, so an address given explicitly (flag or environment)
 * that differs is refused: running on the stored one would ignore the operator, and taking the
 * new one would leave the others sending to the old. */
static int load_identity(struct agent *a, bool peer_given, bool api_given, char **why)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/node.json", a->data_dir);
	json_error_t e;
	json_t *j = json_load_file(path, 0, &e);
	if (j == NULL) {
		agent_set_why(why, "%s: %s", path, e.text);
		return -1;
	}
	/* The cluster id is the one field of node.json that is not in the member record. */
	json_t *cluster = json_object_get(j, "cluster");
	const char *hex = json_string_value(cluster);
	uint8_t id[STORE_CLUSTER_ID_LEN] = {0};
	if (cluster != NULL && (hex == NULL || !agent_cluster_parse(hex, id))) {
		agent_set_why(why, "%s: \"cluster\" must be %d lowercase hex digits", path,
		              2 * STORE_CLUSTER_ID_LEN);
		json_decref(j);
		return -1;
	}
	json_object_del(j, "cluster");
	json_t *from = json_object_get(j, "recovered_from");
	const char *from_hex = json_string_value(from);
	uint8_t ignored[STORE_CLUSTER_ID_LEN];
	if (from != NULL && (from_hex == NULL || (strcmp(from_hex, "none") != 0 &&
	                                          !agent_cluster_parse(from_hex, ignored)))) {
		agent_set_why(why,
		              "%s: \"recovered_from\" must be %d lowercase hex digits or \"none\"",
		              path, 2 * STORE_CLUSTER_ID_LEN);
		json_decref(j);
		return -1;
	}
	snprintf(a->recovered_from, sizeof a->recovered_from, "%s", from_hex ? from_hex : "");
	json_object_del(j, "recovered_from");
	json_t *restored = json_object_get(j, "restored_from");
	if (restored != NULL) {
		const char *rc = NULL;
		json_int_t rrev = 0;
		if (json_unpack(restored, "{s:s, s:I}", "cluster", &rc, "revision", &rrev) != 0 ||
		    (strcmp(rc, "none") != 0 && !agent_cluster_parse(rc, ignored)) || rrev < 0) {
			agent_set_why(
			    why,
			    "%s: \"restored_from\" must be {\"cluster\": %d lowercase hex "
			    "digits or \"none\", \"revision\": N}",
			    path, 2 * STORE_CLUSTER_ID_LEN);
			json_decref(j);
			return -1;
		}
		a->restored = true;
		snprintf(a->restored_cluster, sizeof a->restored_cluster, "%s", rc);
		a->restored_revision = (int64_t)rrev;
		json_object_del(j, "restored_from");
	}
	char *dump = json_dumps(j, JSON_COMPACT);
	struct member_rec m;
	bool ok = dump != NULL && member_from_json((const uint8_t *)dump, strlen(dump), &m);
	free(dump);
	json_decref(j);
	if (!ok) {
		agent_set_why(
		    why,
		    "%s: expected {name, id, peer_address, api_address} and optionally cluster, "
		    "recovered_from and restored_from",
		    path);
		return -1;
	}
	const struct {
		bool given;
		const char *flag, *have, *stored;
	} addrs[] = {{peer_given, "--peer-address", a->peer_address, m.peer_address},
	             {api_given, "--api-address", a->api_address, m.api_address}};
	for (size_t i = 0; i < 2; i++) {
		if (addrs[i].given && strcmp(addrs[i].have, addrs[i].stored) != 0) {
			agent_set_why(
			    why,
			    "%s %s differs from this member's %s, which %s records and the other "
			    "members know it by: a member's addresses cannot change. Start "
			    "without %s (or with %s), or remove the member (tabby cluster "
			    "remove %s), delete %s and join again with the new address",
			    addrs[i].flag, addrs[i].have, addrs[i].stored, path, addrs[i].flag,
			    addrs[i].stored, m.name, a->data_dir);
			return -1;
		}
	}
	if (strcmp(m.name, a->name) != 0 && a->name[0] != 0) {
		agent_log("data directory belongs to member '%s'; using that name", m.name);
	}
	free(a->name);
	free(a->peer_address);
	free(a->api_address);
	a->name = strdup(m.name);
	a->peer_address = strdup(m.peer_address);
	a->api_address = strdup(m.api_address);
	a->id = m.id;
	cluster_set(a, id);
	if (a->cluster_hex[0] == 0) {
		agent_log("%s has no cluster id (its data predates them): raft connections and "
		          "requests between members are not checked against other clusters; a "
		          "cluster built anew gets one",
		          path);
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Join                                                                                        */

struct join_ctx {
	struct agent *a;
	int status;
	char *body;
	bool done;
};

static void join_reply(int status, const uint8_t *body, size_t len, void *data)
{
	struct join_ctx *j = data;
	j->status = status;
	j->body = strndup((const char *)body, len);
	j->done = true;
}

static void timer_noop(uv_timer_t *t)
{
	(void)t;
}

/* Ask a member to admit us. Runs the loop until the answer arrives. */
static int join_cluster(struct agent *a, const char *address, const char *token, char **why)
{
	json_t *req = json_pack("{s:s, s:s, s:s, s:s}", "name", a->name, "peer_address",
	                        a->peer_address, "api_address", a->api_address, "token", token);
	char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (body == NULL) {
		agent_set_why(why, "out of memory");
		return -1;
	}
	int rv = -1;
	for (int attempt = 0; attempt < 30; attempt++) {
		struct join_ctx j = {.a = a};
		if (http_client_request(a->client, address, "POST", "/v1/cluster/join",
		                        "application/json", body, strlen(body), 15000, join_reply,
		                        &j) != 0) {
			agent_set_why(why, "cannot reach %s", address);
			break;
		}
		while (!j.done) {
			uv_run(a->loop, UV_RUN_ONCE);
		}
		if (j.status == 200) {
			json_t *r = json_loads(j.body, 0, NULL);
			json_int_t id = 0;
			json_t *cl = r ? json_object_get(r, "cluster") : NULL;
			uint8_t cid[STORE_CLUSTER_ID_LEN] = {0};
			if (r != NULL && json_unpack(r, "{s:I}", "id", &id) == 0 && id > 0 &&
			    (cl == NULL || (json_is_string(cl) &&
			                    agent_cluster_parse(json_string_value(cl), cid)))) {
				a->id = (uint64_t)id;
				cluster_set(a, cid);
				rv = 0;
			} else {
				agent_set_why(why, "unexpected answer from %s: %s", address,
				              j.body);
			}
			json_decref(r);
			free(j.body);
			break;
		}
		if (j.status >= 400 && j.status < 500) {
			json_t *r = json_loads(j.body, 0, NULL);
			const char *msg = NULL;
			json_unpack(r, "{s:{s:s}}", "error", "message", &msg);
			agent_set_why(why, "%s refused the join: %s", address, msg ? msg : j.body);
			json_decref(r);
			free(j.body);
			break;
		}
		agent_log("join through %s: %s; retrying", address,
		          j.status < 0 ? uv_strerror(j.status) : "the cluster is not ready");
		free(j.body);
		/* Wait a second, keeping the loop alive. */
		uv_timer_t t;
		uv_timer_init(a->loop, &t);
		uv_timer_start(&t, timer_noop, 1000, 0);
		while (uv_is_active((uv_handle_t *)&t)) {
			uv_run(a->loop, UV_RUN_ONCE);
		}
		uv_close((uv_handle_t *)&t, NULL);
		uv_run(a->loop, UV_RUN_NOWAIT);
		if (attempt == 29) {
			agent_set_why(why, "no answer from %s after 30 attempts", address);
		}
	}
	free(body);
	return rv;
}

/* ------------------------------------------------------------------------------------------ */
/* Flags                                                                                       */

static void usage(FILE *f)
{
	fputs(
	    "usage: tabby agent [flags]\n"
	    "\n"
	    "Runs the tabby agent: the replicated store, the local API and (later) the dataplane.\n"
	    "\n"
	    "  --name NAME             member name (TABBY_NAME; default: the host name)\n"
	    "  --data-dir DIR          state directory (TABBY_DATA_DIR; default /var/lib/tabby)\n"
	    "  --socket PATH           local API socket (TABBY_SOCKET; default "
	    "/run/tabby/tabby.sock)\n"
	    "  --peer-address IP:PORT  raft traffic (TABBY_PEER_ADDRESS; default "
	    "127.0.0.1:7790)\n"
	    "  --api-address IP:PORT   API for peers and remote operators (TABBY_API_ADDRESS;\n"
	    "                          default 127.0.0.1:7791)\n"
	    "  --bootstrap             create a new cluster (TABBY_BOOTSTRAP=1)\n"
	    "  --join IP:PORT          join the cluster of the member with this API address\n"
	    "                          (TABBY_JOIN)\n"
	    "  --token TOKEN           join token, from DATA_DIR/join-token of the first member\n"
	    "                          (TABBY_TOKEN)\n"
	    "  --election-timeout MS   raft election timeout (TABBY_ELECTION_TIMEOUT; default "
	    "1000)\n"
	    "  --history N             revisions of change history kept for watches\n"
	    "                          (TABBY_HISTORY; default 100000)\n"
	    "  --snapshot-threshold N  raft entries between snapshots\n"
	    "                          (TABBY_SNAPSHOT_THRESHOLD; default 16384)\n"
	    "  --snapshot-trailing N   entries kept in the log after a snapshot\n"
	    "                          (TABBY_SNAPSHOT_TRAILING; default: the threshold and a\n"
	    "                          quarter, so that the log reaches back to the snapshot\n"
	    "                          before the latest)\n"
	    "  --no-default-pools      with --bootstrap: create no default IP pools (otherwise\n"
	    "                          192.168.0.0/16, and fd80:24e2:f998:72d6::/64 on hosts\n"
	    "                          with IPv6) (TABBY_NO_DEFAULT_POOLS=1)\n"
	    "  --no-policy             do not enforce network policy on this host (no nftables\n"
	    "                          table) (TABBY_NO_POLICY=1)\n"
	    "  --replace-voter-after DURATION\n"
	    "                          when this member leads, promote a standby in place of a\n"
	    "                          voter that has not answered for this long: 30, 30s, 5m;\n"
	    "                          0 or never: only by hand (TABBY_REPLACE_VOTER_AFTER;\n"
	    "                          default 30s)\n"
	    "  --leak-grace DURATION   release the addresses of a container whose network\n"
	    "                          namespace has been gone this long: 900, 900s, 15m, 1h; at\n"
	    "                          least 1s (TABBY_LEAK_GRACE; default 15m)\n"
	    "  --node-ip ADDR/PREFIX   this host's IPv4 address that other hosts route its\n"
	    "                          containers through (TABBY_NODE_IP; default: the address of\n"
	    "                          --peer-address with its interface's prefix)\n"
	    "  --node-ip6 ADDR/PREFIX  the same for IPv6 (TABBY_NODE_IP6; default: the first\n"
	    "                          global IPv6 address of that interface)\n"
	    "  --no-routes             program no routes, tunnels or NAT on this host\n"
	    "                          (TABBY_NO_ROUTES=1)\n"
	    "  --workloads-reach-agents\n"
	    "                          let containers on this host connect to the members' peer\n"
	    "                          and API ports, which are refused to them by default\n"
	    "                          (TABBY_WORKLOADS_REACH_AGENTS=1)\n"
	    "\n"
	    "  --force-new-cluster CLUSTER\n"
	    "                          after losing quorum for good: make this member the only\n"
	    "                          voter of a new cluster that keeps its state, leaving\n"
	    "                          CLUSTER, its cluster id (node.json, tabby cluster status;\n"
	    "                          none for one without) (TABBY_FORCE_NEW_CLUSTER); see\n"
	    "                          docs/operations.md, \"Losing quorum\"\n"
	    "  --restore FILE          start this member, from an empty data directory, as the\n"
	    "                          only voter of a new cluster holding the state of a backup\n"
	    "                          (tabby backup save); --name picks the backup's member to\n"
	    "                          be (TABBY_RESTORE); see docs/operations.md, \"Restoring\n"
	    "                          from a backup\"\n"
	    "\n"
	    "A restarted agent needs neither --bootstrap nor --join nor --restore.\n",
	    f);
}

static char *env_or(const char *env, const char *def)
{
	const char *v = getenv(env);
	return strdup(v != NULL && v[0] != 0 ? v : def);
}

static bool parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != 0 || v > max || s[0] == '-') {
		return false;
	}
	*out = v;
	return true;
}

/* A duration: "900" (seconds), "900s", "15m", "1h"; from 1 s to LEAK_GRACE_MAX_MS (720 h). */
static bool parse_duration_ms(const char *s, uint64_t *ms)
{
	char *end;
	if (s[0] < '0' || s[0] > '9') {
		return false;
	}
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	uint64_t unit = strcmp(end, "") == 0 || strcmp(end, "s") == 0 ? 1000
	                : strcmp(end, "m") == 0                       ? 60 * 1000
	                : strcmp(end, "h") == 0                       ? 3600 * 1000
	                                                              : 0;
	if (errno != 0 || unit == 0 || v == 0 || v > LEAK_GRACE_MAX_MS / unit) {
		return false;
	}
	*ms = v * unit;
	return true;
}

/* --replace-voter-after: a duration, or 0 (0s, 0m, 0h) / "never" for no automatic replacement. */
static bool parse_replace_after(const char *s, uint64_t *ms)
{
	size_t zeros = strspn(s, "0");
	if (strcmp(s, "never") == 0 ||
	    (zeros > 0 && (s[zeros] == 0 || (strchr("smh", s[zeros]) && s[zeros + 1] == 0)))) {
		*ms = 0;
		return true;
	}
	return parse_duration_ms(s, ms);
}

static bool env_true(const char *name)
{
	const char *v = getenv(name);
	return v != NULL && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0);
}

bool agent_address_ok(const char *s, bool ipv6_ok)
{
	/* The control plane guard's own parser: an address the agent accepts is one the guard
	 * can refuse to containers (guard.h). */
	struct guard_port g;
	if (!guard_port_parse(s, &g) || (g.addr.family == 6 && !ipv6_ok)) {
		return false;
	}
	/* Other hosts reach a member at these addresses: "any address" names no host. An
	 * IPv4-mapped IPv6 address is an IPv4 one written otherwise: write it as IPv4. */
	static const uint8_t zeros[16], mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (s[0] == '[' && (g.addr.family == 4 || memcmp(g.addr.b, mapped, 12) == 0)) {
		return false;
	}
	return memcmp(g.addr.b, zeros, g.addr.family == 4 ? 4 : 16) != 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Main                                                                                        */

static void handover_end(struct agent *a, const char *how)
{
	if (!a->handing_over) {
		return;
	}
	a->handing_over = false;
	uv_timer_stop(&a->handover_timer);
	struct store_status st;
	store_get_status(a->store, &st);
	struct member_rec m;
	if (st.leader_id != 0 && st.leader_id != a->id && agent_member_by_id(a, st.leader_id, &m)) {
		agent_log("%s leads now; stopping", m.name);
	} else {
		agent_log("the leadership handover %s; stopping without it (the others elect a "
		          "leader once this member's heartbeats stop)",
		          how);
	}
	uv_stop(a->loop);
}

static void handover_done(void *data, int status)
{
	(void)status; /* raft reports none: who leads now (handover_end) says how it went */
	handover_end(data, "did not complete");
}

static void handover_timeout(uv_timer_t *t)
{
	handover_end(t->data, "timed out");
}

/* A stopping leader hands over first, as etcd does: without it the followers notice only after
 * an election timeout without heartbeats (1 s by default, up to twice that with raft's
 * randomisation), and then elect, and every write in the cluster (a CNI ADD or DEL on any host)
 * waits that long. A rolling restart of the agents pays it once per leader. A second signal stops
 * at once. */
static void on_signal(uv_signal_t *h, int signum)
{
	struct agent *a = h->data;
	(void)signum;
	if (a->handing_over) {
		agent_log("stopping at once");
		a->handing_over = false;
		uv_timer_stop(&a->handover_timer);
		uv_stop(a->loop);
		return;
	}
	if (a->stopping) {
		return;
	}
	a->stopping = true;
	uint64_t to = agent_pick_successor(a);
	struct member_rec m;
	if (to != 0 && store_transfer_leadership(a->store, to, handover_done, a) == STORE_OK) {
		a->handing_over = true;
		agent_log("stopping: handing leadership to %s first",
		          agent_member_by_id(a, to, &m) ? m.name : "another voter");
		/* raft gives a transfer an election timeout before it gives up; the margin covers
		 * the new leader's first heartbeat, which is what ends the wait here. */
		uv_timer_start(&a->handover_timer, handover_timeout, 2 * a->online_ms + 500, 0);
		return;
	}
	agent_log("stopping");
	uv_stop(a->loop);
}

static int mkdirs(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s", path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p == '/') {
			*p = 0;
			if (mkdir(tmp, mode) != 0 && errno != EEXIST) {
				return -errno;
			}
			*p = '/';
		}
	}
	return mkdir(tmp, mode) != 0 && errno != EEXIST ? -errno : 0;
}

static void closed_flag(void *data)
{
	*(bool *)data = true;
}

/* A second agent on the same data directory would open the same raft log and LMDB file as a
 * stranger: before it failed on the busy port it had already closed the running member's open
 * segments and reset its state machine, losing acknowledged writes. So the directory is locked
 * before anything in it is read, for the whole life of the process (as etcd does); the kernel
 * drops the lock when the process dies however it dies. */
static int lock_data_dir(struct agent *a)
{
	char path[PATH_MAX];
	if ((size_t)snprintf(path, sizeof path, "%s/agent.lock", a->data_dir) >= sizeof path) {
		agent_log("the data directory path %s is too long", a->data_dir);
		return -1;
	}
	a->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (a->lock_fd < 0) {
		agent_log("cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(a->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		if (errno == EWOULDBLOCK) {
			agent_log("another agent is running on %s (it holds %s): stop it first, or "
			          "give this agent a data directory of its own",
			          a->data_dir, path);
		} else {
			agent_log("cannot lock %s: %s", path, strerror(errno));
		}
		return -1;
	}
	return 0;
}

/* --force-new-cluster FROM on a restart: recover when this member is in cluster FROM (with a
 * new id, so that the old cluster's members, whose configuration still counts this one, are
 * refused: their longer log or later term would otherwise overwrite what it commits alone);
 * carry on without recovering when an earlier start already left FROM (the flag left in a unit
 * file must not split the cluster again at every restart); refuse anything else, so that a
 * flag meant for another member or cluster does nothing. */
static int recover_decide(struct agent *a, const char *from, bool *recover)
{
	const char *ours = a->cluster_hex[0] != 0 ? a->cluster_hex : "none";
	if (strcmp(from, ours) == 0) {
		snprintf(a->recovered_from, sizeof a->recovered_from, "%s", ours);
		int rv = agent_new_cluster_id(a);
		if (rv != 0) {
			agent_log("getrandom: %s", strerror(-rv));
			return -1;
		}
		*recover = true;
		return 0;
	}
	if (strcmp(from, a->recovered_from) == 0) {
		agent_log(
		    "--force-new-cluster %s: this member left that cluster at an earlier start "
		    "and is in cluster %s; not recovering again (start it without the flag)",
		    from, ours);
		return 0;
	}
	agent_log("--force-new-cluster %s: this member is in cluster %s, not in %s; nothing "
	          "recovered (the flag takes the id of the cluster to leave, from %s/node.json)",
	          from, ours, from, a->data_dir);
	return -1;
}

static void no_default_pools_marker(const struct agent *a, char path[PATH_MAX])
{
	snprintf(path, PATH_MAX, "%s/" NO_DEFAULT_POOLS_FILE, a->data_dir);
}

static void free_agent(struct agent *a)
{
	if (a->lock_fd >= 0) {
		close(a->lock_fd); /* releases the lock */
	}
	free(a->name);
	free(a->data_dir);
	free(a->socket_path);
	free(a->peer_address);
	free(a->api_address);
	free(a->node_ip4);
	free(a->node_ip6);
}

/* The dataplane managers (policy_sync, netsync) start only once this replica has applied
 * everything the cluster had committed when it asked (a linearizable barrier through the
 * leader): a restarted agent's replica first holds only its last snapshot, and a dataplane built
 * from that would delete the routes and rules of containers that are alive and well. Until then
 * the kernel keeps what the previous run left, which is the best there is; without a quorum the
 * agent keeps trying and touches nothing. */
static void dataplane_tick(uv_timer_t *t);

static void dataplane_synced(void *data, int status)
{
	struct agent *a = data;
	a->dataplane_sync_inflight = false;
	if (a->stopping) {
		return;
	}
	if (status != STORE_OK) {
		if (!a->dataplane_waiting_logged) {
			agent_log(
			    "dataplane: waiting for the cluster before programming this host (%s)",
			    store_strerror(status));
			a->dataplane_waiting_logged = true;
		}
		uv_timer_start(&a->dataplane_timer, dataplane_tick, DATAPLANE_RETRY_MS, 0);
		return;
	}
	agent_log("dataplane: this replica has caught up; programming this host");
	a->dataplane_started = true;
	agent_cni_gc_start(a);
	if (!a->no_policy && policy_sync_start(a) != 0) {
		agent_log("cannot start the policy dataplane: out of memory or no netlink socket "
		          "for nftables (--no-policy runs without it)");
		a->exit_code = 1;
		a->stopping = true;
		uv_stop(a->loop);
		return;
	}
	if (!a->no_routes && netsync_start(a) != 0) {
		agent_log("cannot start the route dataplane: out of memory or no netlink socket "
		          "(--no-routes runs without it)");
		a->exit_code = 1;
		a->stopping = true;
		uv_stop(a->loop);
		return;
	}
	if (guard_start(a) != 0) {
		agent_log(
		    "cannot start the control plane guard: out of memory or no netlink socket "
		    "for nftables (--workloads-reach-agents runs without it)");
		a->exit_code = 1;
		a->stopping = true;
		uv_stop(a->loop);
	}
}

static void dataplane_tick(uv_timer_t *t)
{
	struct agent *a = t->data;
	if (a->stopping || a->dataplane_started || a->dataplane_sync_inflight) {
		return;
	}
	if (store_sync(a->store, dataplane_synced, a) != STORE_OK) {
		uv_timer_start(&a->dataplane_timer, dataplane_tick, DATAPLANE_RETRY_MS, 0);
		return;
	}
	a->dataplane_sync_inflight = true;
}

/* libuv's default of 4 worker threads is too few here. A CNI DEL's worker waits about 20 ms in
 * the kernel (RCU) after the interface is already gone and the DEL answered (linkwatch.c), while
 * the next ADDs need a worker for their wiring: with 4, a steady ADD/DEL stream kept most of them
 * asleep and the ADDs queued behind. Sleeping threads cost nothing. An operator's own
 * UV_THREADPOOL_SIZE wins. */
#define AGENT_THREADPOOL_SIZE "32"

int agent_main(int argc, char **argv)
{
	struct agent agent = {.lock_fd = -1};
	struct agent *a = &agent;
	char hostname[256] = "tabby";
	/* before anything queues work: libuv reads it when it starts its pool */
	setenv("UV_THREADPOOL_SIZE", AGENT_THREADPOOL_SIZE, 0);
	gethostname(hostname, sizeof hostname - 1);
	a->name = env_or("TABBY_NAME", hostname);
	a->data_dir = env_or("TABBY_DATA_DIR", "/var/lib/tabby");
	a->socket_path = env_or("TABBY_SOCKET", "/run/tabby/tabby.sock");
	a->peer_address = env_or("TABBY_PEER_ADDRESS", "127.0.0.1:7790");
	a->api_address = env_or("TABBY_API_ADDRESS", "127.0.0.1:7791");
	bool peer_given = getenv("TABBY_PEER_ADDRESS") && getenv("TABBY_PEER_ADDRESS")[0];
	bool api_given = getenv("TABBY_API_ADDRESS") && getenv("TABBY_API_ADDRESS")[0];
	char *join = env_or("TABBY_JOIN", "");
	char *token = env_or("TABBY_TOKEN", "");
	char *force_from = env_or("TABBY_FORCE_NEW_CLUSTER", "");
	char *restore = env_or("TABBY_RESTORE", "");
	bool bootstrap = env_true("TABBY_BOOTSTRAP");
	a->no_default_pools = env_true("TABBY_NO_DEFAULT_POOLS");
	a->no_policy = env_true("TABBY_NO_POLICY");
	a->no_routes = env_true("TABBY_NO_ROUTES");
	a->workloads_reach_agents = env_true("TABBY_WORKLOADS_REACH_AGENTS");
	a->node_ip4 = getenv("TABBY_NODE_IP") && getenv("TABBY_NODE_IP")[0]
	                  ? strdup(getenv("TABBY_NODE_IP"))
	                  : NULL;
	a->node_ip6 = getenv("TABBY_NODE_IP6") && getenv("TABBY_NODE_IP6")[0]
	                  ? strdup(getenv("TABBY_NODE_IP6"))
	                  : NULL;
	a->leak_grace_ms = LEAK_GRACE_DEFAULT_MS;
	unsigned long long election = 1000, history = 0, snap_threshold = 0, snap_trailing = 0;
	const char *e = getenv("TABBY_ELECTION_TIMEOUT");
	if (e != NULL && (!parse_uint(e, 60000, &election) || election < 50)) {
		fprintf(stderr,
		        "tabby agent: TABBY_ELECTION_TIMEOUT: '%s' is not a number of "
		        "milliseconds between 50 and 60000\n",
		        e);
		goto fail_args;
	}
	struct {
		const char *env;
		unsigned long long *v;
	} numeric_env[] = {{"TABBY_SNAPSHOT_THRESHOLD", &snap_threshold},
	                   {"TABBY_SNAPSHOT_TRAILING", &snap_trailing}};
	for (size_t i = 0; i < 2; i++) {
		e = getenv(numeric_env[i].env);
		if (e != NULL && !parse_uint(e, 1u << 30, numeric_env[i].v)) {
			fprintf(stderr, "tabby agent: %s: '%s' is not a number of entries\n",
			        numeric_env[i].env, e);
			goto fail_args;
		}
	}
	e = getenv("TABBY_HISTORY");
	if (e != NULL && !parse_uint(e, 1ull << 40, &history)) {
		fprintf(stderr, "tabby agent: TABBY_HISTORY: '%s' is not a number\n", e);
		goto fail_args;
	}
	a->replace_voter_ms = REPLACE_VOTER_DEFAULT_MS;
	e = getenv("TABBY_REPLACE_VOTER_AFTER");
	if (e != NULL && e[0] != 0 && !parse_replace_after(e, &a->replace_voter_ms)) {
		fprintf(stderr,
		        "tabby agent: TABBY_REPLACE_VOTER_AFTER: '%s' is not 0, never or a "
		        "duration from 1s to 720h (30, 30s, 5m)\n",
		        e);
		goto fail_args;
	}
	e = getenv("TABBY_LEAK_GRACE");
	if (e != NULL && e[0] != 0 && !parse_duration_ms(e, &a->leak_grace_ms)) {
		fprintf(stderr,
		        "tabby agent: TABBY_LEAK_GRACE: '%s' is not a duration from 1s to 720h "
		        "(900, 900s, 15m, 1h)\n",
		        e);
		goto fail_args;
	}

	static const struct option opts[] = {
	    {"name", required_argument, NULL, 'n'},
	    {"data-dir", required_argument, NULL, 'd'},
	    {"socket", required_argument, NULL, 's'},
	    {"peer-address", required_argument, NULL, 'p'},
	    {"api-address", required_argument, NULL, 'a'},
	    {"bootstrap", no_argument, NULL, 'b'},
	    {"join", required_argument, NULL, 'j'},
	    {"token", required_argument, NULL, 't'},
	    {"election-timeout", required_argument, NULL, 'E'},
	    {"history", required_argument, NULL, 'H'},
	    {"snapshot-threshold", required_argument, NULL, 'S'},
	    {"snapshot-trailing", required_argument, NULL, 'T'},
	    {"no-default-pools", no_argument, NULL, 'P'},
	    {"no-policy", no_argument, NULL, 'N'},
	    {"leak-grace", required_argument, NULL, 'G'},
	    {"replace-voter-after", required_argument, NULL, 'V'},
	    {"node-ip", required_argument, NULL, '4'},
	    {"node-ip6", required_argument, NULL, '6'},
	    {"no-routes", no_argument, NULL, 'R'},
	    {"workloads-reach-agents", no_argument, NULL, 'W'},
	    {"force-new-cluster", required_argument, NULL, 'F'},
	    {"restore", required_argument, NULL, 'r'},
	    {"help", no_argument, NULL, 'h'},
	    {0, 0, 0, 0},
	};
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		char **slot = NULL;
		switch (c) {
		case 'n':
			slot = &a->name;
			break;
		case 'd':
			slot = &a->data_dir;
			break;
		case 's':
			slot = &a->socket_path;
			break;
		case 'p':
			slot = &a->peer_address;
			peer_given = true;
			break;
		case 'a':
			slot = &a->api_address;
			api_given = true;
			break;
		case 'j':
			slot = &join;
			break;
		case 't':
			slot = &token;
			break;
		case 'F':
			slot = &force_from;
			break;
		case 'r':
			slot = &restore;
			break;
		case 'b':
			bootstrap = true;
			break;
		case 'E':
			if (!parse_uint(optarg, 60000, &election) || election < 50) {
				fprintf(stderr,
				        "tabby agent: --election-timeout: '%s' is not a number of "
				        "milliseconds between 50 and 60000\n",
				        optarg);
				goto fail_args;
			}
			break;
		case 'H':
			if (!parse_uint(optarg, 1ull << 40, &history) || history == 0) {
				fprintf(stderr,
				        "tabby agent: --history: '%s' is not a positive number\n",
				        optarg);
				goto fail_args;
			}
			break;
		case 'S':
		case 'T':
			if (!parse_uint(optarg, 1u << 30,
			                c == 'S' ? &snap_threshold : &snap_trailing) ||
			    (c == 'S' ? snap_threshold : snap_trailing) == 0) {
				fprintf(stderr,
				        "tabby agent: %s: '%s' is not a positive number of "
				        "entries\n",
				        argv[optind - 1], optarg);
				goto fail_args;
			}
			break;
		case 'P':
			a->no_default_pools = true;
			break;
		case 'N':
			a->no_policy = true;
			break;
		case 'R':
			a->no_routes = true;
			break;
		case 'W':
			a->workloads_reach_agents = true;
			break;
		case '4':
			slot = &a->node_ip4;
			break;
		case '6':
			slot = &a->node_ip6;
			break;
		case 'G':
			if (!parse_duration_ms(optarg, &a->leak_grace_ms)) {
				fprintf(stderr,
				        "tabby agent: --leak-grace: '%s' is not a duration from 1s "
				        "to 720h (900, 900s, 15m, 1h)\n",
				        optarg);
				goto fail_args;
			}
			break;
		case 'V':
			if (!parse_replace_after(optarg, &a->replace_voter_ms)) {
				fprintf(
				    stderr,
				    "tabby agent: --replace-voter-after: '%s' is not 0, never or "
				    "a duration from 1s to 720h (30, 30s, 5m)\n",
				    optarg);
				goto fail_args;
			}
			break;
		case 'h':
			usage(stdout);
			free(join);
			free(token);
			free(force_from);
			free(restore);
			free_agent(a);
			return 0;
		case ':':
			fprintf(stderr, "tabby agent: flag '%s' needs a value\n", argv[optind - 1]);
			goto fail_args;
		default:
			fprintf(stderr, "tabby agent: unknown flag '%s'\n", argv[optind - 1]);
			goto fail_args;
		}
		if (slot != NULL) {
			free(*slot);
			*slot = strdup(optarg);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tabby agent: unexpected argument '%s'\n", argv[optind]);
		goto fail_args;
	}
	if (!agent_member_name_ok(a->name)) {
		fprintf(stderr,
		        "tabby agent: --name: '%s' is not a valid member name (1-100 bytes "
		        "of UTF-8, no '/' or control characters)\n",
		        a->name);
		goto fail_args;
	}
	for (int six = 0; six < 2; six++) {
		char **ip = six ? &a->node_ip6 : &a->node_ip4, canon[INET6_ADDRSTRLEN + 8];
		if (*ip != NULL &&
		    !agent_node_ip_canonical(*ip, six ? AF_INET6 : AF_INET, canon, sizeof canon)) {
			fprintf(stderr,
			        "tabby agent: --node-ip%s: '%s' is not an IPv%d ADDRESS/PREFIX\n",
			        six ? "6" : "", *ip, six ? 6 : 4);
			goto fail_args;
		}
		if (*ip != NULL) {
			free(*ip);
			*ip = strdup(canon);
		}
	}
	if (!agent_address_ok(a->peer_address, false)) {
		fprintf(stderr,
		        "tabby agent: --peer-address: '%s' is not IPv4:PORT (raft's transport "
		        "takes IPv4 only), or is 0.0.0.0: give the address other hosts reach this "
		        "one at\n",
		        a->peer_address);
		goto fail_args;
	}
	if (!agent_address_ok(a->api_address, true)) {
		fprintf(stderr,
		        "tabby agent: --api-address: '%s' is not IP:PORT, or is an unspecified "
		        "address: give the address other hosts reach this one at\n",
		        a->api_address);
		goto fail_args;
	}
	/* A member counts as answering while it answered within an election timeout, as raft
	 * itself counts one online; a voter is lost only after twice that, so a voter does not
	 * pass for lost while it merely waits for its next heartbeat. */
	a->online_ms = election;
	if (a->replace_voter_ms != 0 && a->replace_voter_ms < 2 * election) {
		fprintf(stderr,
		        "tabby agent: --replace-voter-after: %llu ms is less than twice the "
		        "election timeout (%llu ms): a voter would pass for lost between two "
		        "heartbeats\n",
		        (unsigned long long)a->replace_voter_ms, 2 * election);
		goto fail_args;
	}
	if (bootstrap && join[0] != 0) {
		fprintf(stderr, "tabby agent: --bootstrap and --join exclude each other\n");
		goto fail_args;
	}
	if (join[0] != 0 && !agent_address_ok(join, true)) {
		fprintf(stderr, "tabby agent: --join: '%s' is not IP:PORT\n", join);
		goto fail_args;
	}
	uint8_t scratch[STORE_CLUSTER_ID_LEN];
	if (force_from[0] != 0 && strcmp(force_from, "none") != 0 &&
	    !agent_cluster_parse(force_from, scratch)) {
		fprintf(stderr,
		        "tabby agent: --force-new-cluster: '%s' is not a cluster id (%d lowercase "
		        "hex digits, as node.json and tabby cluster status show it) or none\n",
		        force_from, 2 * STORE_CLUSTER_ID_LEN);
		goto fail_args;
	}
	if (force_from[0] != 0 && (bootstrap || join[0] != 0)) {
		fprintf(stderr,
		        "tabby agent: --force-new-cluster recovers a member from its own data and "
		        "excludes %s\n",
		        bootstrap ? "--bootstrap" : "--join");
		goto fail_args;
	}
	if (restore[0] != 0 && (bootstrap || join[0] != 0 || force_from[0] != 0)) {
		fprintf(
		    stderr,
		    "tabby agent: --restore starts a new cluster from a backup and excludes %s\n",
		    bootstrap      ? "--bootstrap"
		    : join[0] != 0 ? "--join"
		                   : "--force-new-cluster");
		goto fail_args;
	}
	if (join[0] != 0 && token[0] == 0) {
		fprintf(stderr, "tabby agent: --join needs --token (from the first member's "
		                "DATA_DIR/join-token)\n");
		goto fail_args;
	}

	signal(SIGPIPE, SIG_IGN);
	install_sigbus(a->data_dir);
	a->loop = uv_default_loop();
	a->started_ms = uv_now(a->loop);
	int rv = mkdirs(a->data_dir, 0700);
	if (rv != 0) {
		agent_log("cannot create %s: %s", a->data_dir, strerror(-rv));
		goto fail;
	}
	if (lock_data_dir(a) != 0) {
		goto fail;
	}
	if (a->replace_voter_ms != 0) {
		agent_log("a voter silent for %llu s is replaced when this member leads",
		          (unsigned long long)(a->replace_voter_ms / 1000));
	} else {
		agent_log("voters are replaced only by hand (--replace-voter-after 0)");
	}
	if (http_client_new(a->loop, &a->client) != 0) {
		agent_log("out of memory");
		goto fail;
	}

	bool restart = store_has_state(a->data_dir);
	bool recover = false, restored = false;
	char *why = NULL;
	if (restart) {
		if (bootstrap || join[0] != 0) {
			agent_log("%s already holds this member's state; ignoring %s", a->data_dir,
			          bootstrap ? "--bootstrap" : "--join");
		}
		if (load_identity(a, peer_given, api_given, &why) != 0) {
			agent_log("cannot restart: %s", why);
			free(why);
			goto fail;
		}
		a->ipam_init_pending = a->id == 1; /* see init_ipam */
		a->token_check = a->id == 1;       /* see check_bootstrap */
		/* A bootstrap cut short is finished by a restart without flags: it must not
		 * make the pools the operator declined. */
		char marker[PATH_MAX];
		no_default_pools_marker(a, marker);
		if (a->id == 1 && access(marker, F_OK) == 0) {
			a->no_default_pools = true;
		}
		if (force_from[0] != 0 && recover_decide(a, force_from, &recover) != 0) {
			goto fail;
		}
		if (restore[0] != 0 && agent_restore_again(a, restore, &why) != 0) {
			agent_log("cannot restore: %s", why ? why : "out of memory");
			free(why);
			goto fail;
		}
	} else if (restore[0] != 0) {
		if (agent_restore(a, restore, peer_given, api_given, &why) != 0) {
			agent_log("cannot restore: %s", why ? why : "out of memory");
			free(why);
			goto fail;
		}
		restored = true;
		a->ipam_init_pending = a->id == 1; /* see init_ipam */
		/* publishes the backup's join token (and repairs a state without one) */
		a->token_check = true;
	} else if (force_from[0] != 0) {
		agent_log("--force-new-cluster: %s holds no cluster state, so there is nothing to "
		          "recover",
		          a->data_dir);
		goto fail;
	} else if (bootstrap) {
		a->id = 1;
		a->ipam_init_pending = true;
		if ((rv = new_token(a)) != 0 || (rv = agent_new_cluster_id(a)) != 0) {
			agent_log("getrandom: %s", strerror(-rv));
			goto fail;
		}
		a->bootstrap_pending = true;
	} else if (join[0] != 0) {
		if (join_cluster(a, join, token, &why) != 0) {
			agent_log("cannot join: %s", why);
			free(why);
			goto fail;
		}
		agent_log("joined the cluster as member %s (id %llu)", a->name,
		          (unsigned long long)a->id);
	} else {
		agent_log("%s holds no cluster state: start with --bootstrap to create a cluster, "
		          "or --join IP:PORT --token TOKEN to join one",
		          a->data_dir);
		goto fail;
	}
	if (!restart && bootstrap) {
		/* A marker left in a directory without state belongs to no cluster: this
		 * bootstrap's flag decides. */
		char marker[PATH_MAX];
		no_default_pools_marker(a, marker);
		rv = a->no_default_pools                      ? write_file_atomic(marker, "", 0600)
		     : unlink(marker) == 0 || errno == ENOENT ? 0
		                                              : -errno;
		if (rv != 0) {
			agent_log("cannot %s %s: %s", a->no_default_pools ? "write" : "remove",
			          marker, strerror(-rv));
			goto fail;
		}
	}
	if (!restart && !restored && (rv = agent_save_identity(a)) != 0) {
		agent_log("cannot write %s/node.json: %s", a->data_dir, strerror(-rv));
		goto fail;
	}

	/* Every replica registers the same handlers: a member without one could not apply the
	 * log. */
	const struct kv_handler handlers[] = {
	    {IPAM_CALL, ipam_apply, (void *)&resources_ipam_hooks},
	    {RES_CALL, resources_apply, NULL},
	    {CNI_CALL, cni_apply, NULL}};
	struct store_config sc = {
	    .id = a->id,
	    .data_dir = a->data_dir,
	    .peer_address = a->peer_address,
	    .election_timeout_ms = (unsigned)election,
	    .heartbeat_timeout_ms = (unsigned)(election / 10 ? election / 10 : 10),
	    .history = (int64_t)history,
	    .snapshot_threshold = (unsigned)snap_threshold,
	    .snapshot_trailing = (unsigned)snap_trailing,
	    .forward = hook_forward,
	    .readindex = hook_readindex,
	    .fatal = hook_fatal,
	    .space = hook_space,
	    .stranger = hook_stranger,
	    .snapshot_damaged = hook_snapshot_damaged,
	    .hook_data = a,
	    .handlers = handlers,
	    .n_handlers = sizeof handlers / sizeof handlers[0],
	};
	memcpy(sc.cluster_id, a->cluster_id, sizeof sc.cluster_id);
	if (store_new(a->loop, &sc, &a->store, &why) != STORE_OK) {
		agent_log("cannot open the store: %s", why ? why : "error");
		free(why);
		goto fail;
	}
	if (bootstrap && !restart && store_bootstrap(a->store, &why) != STORE_OK) {
		agent_log("cannot bootstrap: %s", why ? why : "error");
		free(why);
		goto fail_store;
	}
	/* The log first, then node.json: a start cut short in between finds the old id in
	 * node.json and recovers again, which appends the same configuration once more. The other
	 * way round it would find the new id, take the recovery as done and wait for a quorum
	 * that is gone. */
	if (recover) {
		if (store_recover(a->store, &why) != STORE_OK) {
			agent_log("cannot recover: %s", why ? why : "error");
			free(why);
			goto fail_store;
		}
		if ((rv = agent_save_identity(a)) != 0) {
			agent_log("cannot write %s/node.json: %s", a->data_dir, strerror(-rv));
			goto fail_store;
		}
		agent_log("recovered from a lost quorum: member %s (id %llu) is the only voter of "
		          "the new cluster %s and keeps every write its log holds; it left cluster "
		          "%s, whose members it now refuses. Members still alive join again "
		          "(docs/operations.md, \"Losing quorum\"); remove lost ones with tabby "
		          "cluster remove NAME. Start this agent without --force-new-cluster from "
		          "now on",
		          a->name, (unsigned long long)a->id, a->cluster_hex, a->recovered_from);
	}
	if (store_start(a->store, &why) != STORE_OK) {
		agent_log("cannot start %s", why ? why : "raft");
		free(why);
		goto fail_store;
	}

	struct http_server_config hc = {.max_body = AGENT_MAX_FORWARD_BODY};
	if (http_server_new(a->loop, &hc, agent_route, a, &a->http) != 0) {
		agent_log("out of memory");
		goto fail_store;
	}
	char sockdir[PATH_MAX];
	snprintf(sockdir, sizeof sockdir, "%s", a->socket_path);
	char *slash = strrchr(sockdir, '/');
	if (slash != NULL && slash != sockdir) {
		*slash = 0;
		mkdirs(sockdir, 0755);
	}
	if ((rv = http_server_listen_unix(a->http, a->socket_path, 0660)) != 0) {
		agent_log("cannot listen on %s: %s", a->socket_path, uv_strerror(rv));
		goto fail_http;
	}
	if ((rv = http_server_listen_tcp(a->http, a->api_address)) != 0) {
		agent_log("cannot listen on %s: %s", a->api_address, uv_strerror(rv));
		goto fail_http;
	}
	uv_timer_init(a->loop, &a->reconcile);
	a->reconcile.data = a;
	uv_timer_start(&a->reconcile, reconcile_cb, 100, RECONCILE_MS);
	uv_timer_init(a->loop, &a->handover_timer);
	a->handover_timer.data = a;
	uv_signal_init(a->loop, &a->sigint);
	uv_signal_init(a->loop, &a->sigterm);
	a->sigint.data = a->sigterm.data = a;
	uv_signal_start(&a->sigint, on_signal, SIGINT);
	uv_signal_start(&a->sigterm, on_signal, SIGTERM);
	if (leaks_start(a) != 0) {
		agent_log("out of memory");
		a->stopping = true;
		a->exit_code = 1;
		uv_stop(a->loop); /* uv_run returns at once; the shutdown below still runs */
	}
	if (!a->stopping && node_publish_start(a) != 0) {
		agent_log("out of memory");
		a->stopping = true;
		a->exit_code = 1;
		uv_stop(a->loop);
	}
	if (!a->stopping && (rv = linkwatch_start(a)) != 0) {
		agent_log("cannot watch this host's link announcements (%s); CNI DELs answer when "
		          "the kernel has freed the interface",
		          strerror(-rv));
	}
	uv_timer_init(a->loop, &a->dataplane_timer);
	a->dataplane_timer.data = a;
	uv_timer_start(&a->dataplane_timer, dataplane_tick, 0, 0);
	agent_log("member %s (id %llu) serving %s and %s, raft on %s", a->name,
	          (unsigned long long)a->id, a->socket_path, a->api_address, a->peer_address);
	if ((rv = loopwatch_start(a)) != 0) {
		agent_log(
		    "cannot start the event loop's watchdog (%s); a stalled loop goes unreported",
		    strerror(-rv));
	}

	uv_run(a->loop, UV_RUN_DEFAULT);

	/* Orderly shutdown: the client first (its callbacks reach into the store), then the
	 * HTTP server, then the store. A handover another stop cut short ends with the store,
	 * unreported. */
	a->handing_over = false;
	uv_close((uv_handle_t *)&a->sigint, NULL);
	uv_close((uv_handle_t *)&a->sigterm, NULL);
	uv_close((uv_handle_t *)&a->reconcile, NULL);
	uv_close((uv_handle_t *)&a->handover_timer, NULL);
	uv_close((uv_handle_t *)&a->dataplane_timer, NULL);
	loopwatch_stop(a);
	agent_cni_gc_stop(a);
	linkwatch_stop(a);
	leaks_stop(a);
	policy_sync_stop(a);
	netsync_stop(a);
	guard_stop(a);
	node_publish_stop(a);
	http_client_close(a->client);
	a->client = NULL;
	bool http_closed = false, store_closed = false;
	http_server_close(a->http, closed_flag, &http_closed);
	store_close(a->store, closed_flag, &store_closed);
	while (!http_closed || !store_closed) {
		uv_run(a->loop, UV_RUN_ONCE);
	}
	uv_run(a->loop, UV_RUN_NOWAIT);
	uv_loop_close(a->loop);
	agent_flush_conntrack_free(a);
	leaks_free(a);
	policy_sync_free(a);
	netsync_free(a);
	guard_free(a);
	node_publish_free(a);
	int code = a->exit_code;
	free(join);
	free(token);
	free(force_from);
	free(restore);
	free_agent(a);
	return code;

fail_http:
	http_server_close(a->http, NULL, NULL);
fail_store : {
	bool closed = false;
	if (a->client != NULL) {
		http_client_close(a->client);
		a->client = NULL;
	}
	store_close(a->store, closed_flag, &closed);
	while (!closed) {
		uv_run(a->loop, UV_RUN_ONCE);
	}
}
fail:
	if (a->client != NULL) {
		http_client_close(a->client);
	}
	free(join);
	free(token);
	free(force_from);
	free(restore);
	free_agent(a);
	return 1;
fail_args:
	free(join);
	free(token);
	free(force_from);
	free(restore);
	free_agent(a);
	return 2;
}
