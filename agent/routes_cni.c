/*
 * The CNI plugin's calls: POST /v1/cni/add, /v1/cni/del, /v1/cni/check (the request and answer
 * shapes are in docs/cni.md, "The agent API").
 *
 * ADD is one raft entry (cni_state.c: the address, the endpoint, the network's profile, the host
 * interface name and the container MAC, all decided by the state machine), then the wiring on a
 * worker thread (wire.c; the veth pair is made while the entry replicates, see "Preparing the
 * interfaces" below), then a wait until the policy dataplane holds the new endpoint, so that
 * when the runtime starts the container its policy is already in the kernel; until then the
 * dispatch chains drop its traffic (fail closed). If the wiring of a new interface fails, the
 * entry is undone by a second one and whatever was built is removed: a failed ADD leaves nothing
 * allocated and nothing wired. A repeated ADD finds the record, allocates nothing and runs the
 * wiring again, which repairs whatever is missing.
 *
 * DEL is one entry that releases and deletes, then the interface goes and the conntrack entries
 * of the released addresses are flushed. DEL answers as soon as the kernel announces the
 * interface's removal (linkwatch.c), long before the delete returns. CHECK reads the local replica
 * and verifies the kernel.
 */
#include <errno.h>
#include <stdatomic.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>

#include "agent/cni.h"
#include "agent/internal.h"
#include "agent/wire.h"
#include "ipam/ipam.h"

/* How long ADD waits for the policy dataplane before it answers anyway (the container's traffic
 * is dropped until its chains exist, so answering early is safe, only less convenient). */
#define POLICY_WAIT_MS 5000

enum cni_cmd { CMD_ADD, CMD_DEL, CMD_CHECK };

struct cctx {
	struct store_write w;
	uv_work_t work;
	struct policy_wait pw;
	struct agent *a;
	struct http_request *req;
	enum cni_cmd cmd;
	json_t *body;  /* the request */
	json_t *reply; /* the state machine's answer (add, del) */
	int64_t revision;
	bool wire, existed, rolling_back;
	bool succeeded; /* for the failure counter */
	/* wiring (worker thread) */
	char netns[4096];
	char ifname[16], host_ifname[16], alias[512];
	struct wire_spec spec;
	int work_rv;
	bool unwire_ran;        /* wire_del_work ran (DEL): the log says how long it took */
	bool unwiring;          /* counted in a->unwiring until its after-work callback */
	bool wiring;            /* counted in a->wiring until wired() */
	struct link_gone gone;  /* DEL: the wait for the host end's removal (linkwatch.c) */
	bool watching;          /* gone is registered */
	atomic_bool identified; /* DEL: wire_del() named what it deletes (set on the worker) */
	bool answered;          /* DEL: answered before its removal returned */
	char err[1024];
	char *message; /* the wiring error kept across the rollback */
	/* uv_hrtime() when the request arrived, the command was applied and the wiring done:
	 * an ADD's log line says where its time went. */
	uint64_t t_start, t_commit, t_wired, t_prepared;
	bool policy_applied; /* the ADD waited for the policy dataplane and it came */
	/* The preparation: the interfaces made while the command replicates (prep_start()) */
	enum { PREP_NONE, PREP_RUNNING, PREP_DONE, PREP_DISCARDING } prep;
	uv_work_t pwork;
	struct wire_spec pspec;
	char pre_host[16]; /* the host end's name the state machine is expected to give */
	bool pre_v4, pre_v6;
	struct wire_prepared prepared;
	int prep_rv;
	char prep_err[256];
	bool prep_used;         /* the wiring finishes the prepared pair */
	struct cctx *prep_next; /* in a->cni_preparing while prep is not PREP_NONE */
	atomic_int hand;        /* who finishes a prepared pair: HAND_* (hand_over()) */
	bool handed;            /* the applied ADD's spec is built, prep_done() goes on with it */
	bool finished;          /* the worker ran wire_finish() right after the preparation */
	bool stashed;           /* the command's outcome, kept while the preparation runs */
	int st_status;
	struct kv_result st_r;
};

/* The preparation is over for the sweep: off a->cni_preparing, prep PREP_NONE. */
static void prep_end(struct cctx *c)
{
	if (c->prep == PREP_NONE) {
		return;
	}
	for (struct cctx **p = &c->a->cni_preparing; *p != NULL; p = &(*p)->prep_next) {
		if (*p == c) {
			*p = c->prep_next;
			break;
		}
	}
	c->prep_next = NULL;
	c->prep = PREP_NONE;
}

/* Frees a kept outcome (stash()). */
static void stash_drop(struct cctx *c)
{
	free(c->st_r.reply);
	free(c->st_r.message);
	c->st_r = (struct kv_result){0};
	c->stashed = false;
}

/* Whether an ADD in flight made (or is making) the host interface name. */
static bool preparing(const struct agent *a, const char *name)
{
	for (const struct cctx *c = a->cni_preparing; c != NULL; c = c->prep_next) {
		if (strcmp(c->pre_host, name) == 0) {
			return true;
		}
	}
	return false;
}

static void cctx_free(struct cctx *c)
{
	if (c->cmd == CMD_ADD && !c->succeeded) {
		c->a->cni_add_failures++;
	}
	prep_end(c);
	wire_prepared_release(&c->prepared);
	stash_drop(c);
	json_decref(c->body);
	json_decref(c->reply);
	free(c->message);
	free(c);
}

static const char *jstr(const json_t *j, const char *k)
{
	const json_t *v = json_object_get(j, k);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Proposing the command                                                                       */

static void cmd_done(struct store_write *w, int status, const struct kv_result *r);

/* Propose payload (stolen) for c. A synchronous failure is answered (once an ADD's
 * preparation is over and undone) and c freed. */
static void propose(struct cctx *c, json_t *payload)
{
	struct agent *a = c->a;
	char *text = json_dumps(payload, JSON_COMPACT);
	json_decref(payload);
	int rv = STORE_ENOMEM;
	c->w.data = c;
	if (text != NULL) {
		struct kv_op op = {.type = KV_OP_CALL,
		                   .call = CNI_CALL,
		                   .value = {(const uint8_t *)text, strlen(text)}};
		rv = store_write(a->store, &c->w, &op, cmd_done);
		free(text);
	}
	if (rv != STORE_OK) {
		cmd_done(&c->w, rv, NULL);
	}
}

/* The command's payload from the request: the fields the state machine reads. */
static json_t *payload_of(struct cctx *c, const char *op)
{
	static const char *const keys[] = {"network",  "container", "ifname", "orchestrator",
	                                   "workload", "netns",     "pools",  "ips",
	                                   "labels",   NULL};
	json_t *p =
	    json_pack("{s:s, s:s, s:b, s:b, s:b, s:b}", "op", op, "node", c->a->name, "wire",
	              c->wire, "ipv4", json_is_true(json_object_get(c->body, "ipv4")), "ipv6",
	              json_is_true(json_object_get(c->body, "ipv6")), "profile",
	              !json_is_false(json_object_get(c->body, "profile")));
	for (int i = 0; p != NULL && keys[i] != NULL; i++) {
		json_t *v = json_object_get(c->body, keys[i]);
		if (v != NULL && !json_is_null(v)) {
			json_object_set(p, keys[i], v);
		}
	}
	if (p != NULL && json_object_get(c->body, "ipv4") == NULL) {
		json_object_set_new(p, "ipv4", json_true());
	}
	return p;
}

/* ------------------------------------------------------------------------------------------ */
/* Worker-thread steps                                                                         */

static void wire_add_work(uv_work_t *w)
{
	struct cctx *c = w->data;
	if (c->prep_used) {
		c->work_rv = wire_finish(&c->spec, &c->prepared, c->err, sizeof c->err);
	} else {
		c->work_rv = wire_add(&c->spec, c->err, sizeof c->err);
	}
}

static void wire_del_work(uv_work_t *w)
{
	struct cctx *c = w->data;
	const char *netns = c->netns[0] ? c->netns : NULL;
	c->work_rv = wire_del(netns, c->ifname, c->host_ifname[0] ? c->host_ifname : NULL, c->alias,
	                      &c->identified, c->err, sizeof c->err);
	c->unwire_ran = true;
}

/* The conntrack entries of released addresses are flushed on a worker after the answer, like any
 * other cleanup (wire_flush_conntrack(): a filtered flush in the kernel, about 0.5 ms per address
 * and direction, or on kernels without it one listing of the whole table, about 10 ms even when
 * it is empty). One job at a time: the addresses released meanwhile (16 DELs at once, or a node's
 * routes going) wait and share the next one.
 *
 * A job waits while a CNI DEL removes an interface. The order is the better one: the flush then
 * comes after the last packet the old interface could bring, so no entry it made survives. And a
 * listing holds softirqs off for its whole walk, which holds up the RCU grace periods that taking
 * a veth down waits for: a listing that overlapped a DEL's removal made the DEL 40 ms instead of 24
 * (bench/cni.sh). Under a steady stream of DELs the wait ends after CT_DEFER_MAX_MS, so a flush is
 * never put off for long. */
#define CT_DEFER_MAX_MS 1000

struct ct_job {
	uv_work_t work;
	struct agent *a;
	struct ipam_addr *addrs;
	unsigned n;
	bool listed; /* the kernel refused a filtered flush */
	int rv;
	char err[256];
};

static void ct_start(struct agent *a);

static void ct_work(uv_work_t *w)
{
	struct ct_job *j = w->data;
	j->rv = wire_flush_conntrack(j->addrs, j->n, false, &j->listed, j->err, sizeof j->err);
}

static void ct_done(uv_work_t *w, int status)
{
	struct ct_job *j = w->data;
	struct agent *a = j->a;
	if (status == 0 && j->rv != 0) {
		agent_log(
		    "cannot flush the conntrack entries of %u removed workload address(es): %s",
		    j->n, j->err);
	}
	if (status == 0 && j->listed && !a->ct_listing_logged) {
		a->ct_listing_logged = true;
		agent_log("this kernel cannot filter a conntrack flush: each flush lists the whole "
		          "table instead (about 10 ms of kernel time)");
	}
	free(j->addrs);
	free(j);
	a->ct_running = false;
	ct_start(a);
}

/* Hands every waiting address to one job, unless one runs or an interface is being removed. */
static void ct_start(struct agent *a)
{
	if (a->ct_running || a->ct_n == 0) {
		return;
	}
	if (a->unwiring > 0 && uv_now(a->loop) - a->ct_since < CT_DEFER_MAX_MS) {
		return; /* the removal's end starts it */
	}
	struct ct_job *j = calloc(1, sizeof *j);
	if (j == NULL) {
		return; /* they wait for the next address, or for exit */
	}
	j->a = a;
	j->addrs = a->ct_pending;
	j->n = a->ct_n;
	j->work.data = j;
	a->ct_pending = NULL;
	a->ct_n = a->ct_cap = 0;
	if (uv_queue_work(a->loop, &j->work, ct_work, ct_done) != 0) {
		/* give them back: the next address tries again */
		a->ct_pending = j->addrs;
		a->ct_n = a->ct_cap = j->n;
		free(j);
		return;
	}
	a->ct_running = true;
}

void agent_flush_conntrack(struct agent *a, const struct ipam_addr *addr)
{
	for (unsigned i = 0; i < a->ct_n; i++) {
		const struct ipam_addr *p = &a->ct_pending[i];
		if (p->family == addr->family &&
		    memcmp(p->b, addr->b, addr->family == 4 ? 4 : 16) == 0) {
			return; /* waiting already */
		}
	}
	if (a->ct_n == a->ct_cap) {
		unsigned cap = a->ct_cap ? 2 * a->ct_cap : 8;
		struct ipam_addr *v = realloc(a->ct_pending, cap * sizeof *v);
		if (v == NULL) {
			agent_log("cannot queue a conntrack flush: out of memory");
			return;
		}
		a->ct_pending = v;
		a->ct_cap = cap;
	}
	if (a->ct_n == 0) {
		a->ct_since = uv_now(a->loop);
	}
	a->ct_pending[a->ct_n++] = *addr;
	ct_start(a);
}

void agent_flush_conntrack_free(struct agent *a)
{
	free(a->ct_pending);
	a->ct_pending = NULL;
	a->ct_n = a->ct_cap = 0;
}

/* Without the route dataplane (which flushes for every workload route it removes), the CNI path
 * flushes the released addresses itself. */
static void flush_released(struct cctx *c)
{
	size_t i;
	json_t *v;
	if (c->a->netsync != NULL) {
		return;
	}
	json_array_foreach (json_object_get(c->reply, "ips"), i, v) {
		char buf[IPAM_CIDR_STRLEN];
		struct ipam_addr addr;
		snprintf(buf, sizeof buf, "%s", json_is_string(v) ? json_string_value(v) : "");
		char *slash = strchr(buf, '/');
		if (slash != NULL) {
			*slash = 0;
		}
		if (ipam_addr_parse(buf, &addr)) {
			agent_flush_conntrack(c->a, &addr);
		}
	}
}

static void wire_check_work(uv_work_t *w)
{
	struct cctx *c = w->data;
	c->work_rv = wire_check(&c->spec, c->err, sizeof c->err);
}

static int queue(struct cctx *c, uv_work_cb fn, uv_after_work_cb after)
{
	c->work.data = c;
	return uv_queue_work(c->a->loop, &c->work, fn, after);
}

/* The parts of a wiring spec that come from the request (namespace, names, alias, MTU,
 * forwarding), with the host end named host_ifname. */
static void spec_common(struct cctx *c, struct wire_spec *sp, const char *host_ifname)
{
	json_t *mtu = json_object_get(c->body, "mtu");
	memset(sp, 0, sizeof *sp);
	/* Written once: a preparation's worker reads it while hand_over() builds c->spec. */
	if (c->alias[0] == '\0') {
		snprintf(c->alias, sizeof c->alias, WIRE_ALIAS_PREFIX "%s/%s",
		         jstr(c->body, "container"), c->ifname);
	}
	sp->netns = c->netns;
	sp->ifname = c->ifname;
	sp->host_ifname = host_ifname;
	sp->alias = c->alias;
	sp->mtu = json_is_integer(mtu) ? (unsigned)json_integer_value(mtu) : 0;
	sp->allow_ip_forwarding = json_is_true(json_object_get(c->body, "allow_ip_forwarding"));
}

static bool mac_parse(const char *mac, uint8_t out[6])
{
	unsigned m[6];
	if (sscanf(mac, "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6) {
		return false;
	}
	for (int i = 0; i < 6; i++) {
		out[i] = (uint8_t)m[i];
	}
	return true;
}

/* Fill c->spec from the state machine's answer (iface, mac, ips) and the request. */
static int build_spec(struct cctx *c, const json_t *ans)
{
	const char *iface = jstr(ans, "iface"), *mac = jstr(ans, "mac");
	if (iface == NULL || mac == NULL || strlen(iface) >= sizeof c->host_ifname) {
		memset(&c->spec, 0, sizeof c->spec);
		snprintf(c->err, sizeof c->err,
		         "container %s interface %s was set up by the IPAM plugin alone, not by "
		         "the tabby network plugin",
		         jstr(c->body, "container"), c->ifname);
		return -EINVAL;
	}
	snprintf(c->host_ifname, sizeof c->host_ifname, "%s", iface);
	spec_common(c, &c->spec, c->host_ifname);
	if (!mac_parse(mac, c->spec.mac)) {
		snprintf(c->err, sizeof c->err, "bad MAC '%s' in the endpoint record", mac);
		return -EINVAL;
	}
	size_t i;
	json_t *v;
	json_array_foreach (json_object_get(ans, "ips"), i, v) {
		char buf[IPAM_CIDR_STRLEN];
		if (c->spec.n_addrs == WIRE_ADDRS_MAX || !json_is_string(v)) {
			break;
		}
		snprintf(buf, sizeof buf, "%s", json_string_value(v));
		char *slash = strchr(buf, '/');
		if (slash != NULL) {
			*slash = 0;
		}
		if (ipam_addr_parse(buf, &c->spec.addrs[c->spec.n_addrs])) {
			c->spec.n_addrs++;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Preparing the interfaces while the command replicates                                       */

/*
 * An ADD spends about half its time in raft (the leader's and a follower's disk writes, two
 * network hops) and most of the rest making the veth pair and setting it up, none of which
 * depends on the addresses raft is deciding. So the pair is made meanwhile, on a worker, under
 * the names the state machine is expected to give: this replica's view of the name index says
 * which (cni_predict_iface()), and only this host's ADDs take this host's names. Once the
 * command is applied, the wiring only adds the addresses and their routes (wire_finish()).
 *
 * A forecast can be wrong, harmlessly: if the answer names another host end or another MAC, or
 * says the interface existed, the full wiring runs as without a preparation, and it converges
 * from whatever is there, the prepared pair included. If the command fails, the prepared pair
 * is removed before the answer, so a failed ADD still leaves nothing wired. Nothing is prepared
 * over anything that exists: wire_prepare() refuses when either name is taken.
 *
 * The command's outcome can come before the preparation ends. The success of the forecast ADD is
 * handed to the preparing worker (hand_over(), below); any other outcome is kept (stash()) and
 * handled when the preparation is over, so that no answer goes while a worker still builds.
 */

static void stash(struct cctx *c, int status, const struct kv_result *r)
{
	c->stashed = true;
	c->st_status = status;
	c->st_r = (struct kv_result){0};
	if (status != STORE_OK || r == NULL) {
		return;
	}
	if (c->t_commit == 0) {
		c->t_commit = uv_hrtime();
	}
	c->st_r.status = r->status;
	c->st_r.revision = r->revision;
	if (r->reply != NULL && (c->st_r.reply = malloc(r->reply_len ? r->reply_len : 1)) != NULL) {
		memcpy(c->st_r.reply, r->reply, r->reply_len);
		c->st_r.reply_len = r->reply_len;
	}
	c->st_r.message = r->message ? strdup(r->message) : NULL;
}

/* Handle the kept outcome (c may be freed on return). */
static void unstash(struct cctx *c)
{
	struct kv_result r = c->st_r;
	int status = c->st_status;
	c->stashed = false;
	c->st_r = (struct kv_result){0}; /* r owns the copies now */
	cmd_done(&c->w, status, &r);
	free(r.reply);
	free(r.message);
}

/*
 * Most of the time the command is applied before the preparation is over. The worker that made
 * the pair then goes straight on to wire_finish(), instead of ending its work so that the loop
 * can queue the finish on a worker again: on this machine each of those two thread wake-ups took
 * 0.1-0.2 ms, a fifth of the whole ADD. c->hand settles the race between the two threads. It is
 * HAND_OPEN until either the worker's preparation is over (HAND_OVER: prep_done() sees to the
 * finish) or the loop hands over the applied command (HAND_FINISH: the worker finishes, if its
 * preparation succeeded). The loop writes c->spec before its exchange and the worker reads it
 * only after seeing HAND_FINISH; the loop touches neither c->spec nor c->prepared again before
 * prep_done().
 */
enum { HAND_OPEN, HAND_OVER, HAND_FINISH };

static void prep_work(uv_work_t *w)
{
	struct cctx *c = w->data;
	c->prep_rv = wire_prepare(&c->pspec, c->pre_v4, c->pre_v6, &c->prepared, c->prep_err,
	                          sizeof c->prep_err);
	c->t_prepared = uv_hrtime();
	int open = HAND_OPEN;
	if (!atomic_compare_exchange_strong(&c->hand, &open, HAND_OVER) && c->prep_rv == 0) {
		c->prep_used = true;
		c->work_rv = wire_finish(&c->spec, &c->prepared, c->err, sizeof c->err);
		c->finished = true;
	}
}

static void add_wire(struct cctx *c);
static void wired(uv_work_t *w, int status);

static void prep_done(uv_work_t *w, int status)
{
	struct cctx *c = w->data;
	if (status != 0) {
		c->prep_rv = -ECANCELED;
		c->t_prepared = uv_hrtime();
	}
	c->prep = PREP_DONE;
	if (c->finished) {
		prep_end(c); /* the record exists: the sweep may judge the interfaces by it */
		c->work.data = c;
		wired(&c->work, 0);
	} else if (c->handed) {
		add_wire(c);
	} else if (c->stashed) {
		unstash(c);
	}
}

/* The applied command's answer (ans, taken) becomes c's. */
static void answer_take(struct cctx *c, json_t *ans, const struct kv_result *r)
{
	json_decref(c->reply);
	c->reply = ans;
	c->revision = r->revision;
	if (c->t_commit == 0 || c->rolling_back) {
		c->t_commit = uv_hrtime();
	}
}

/* The wiring of an applied ADD starts: netsync leaves this workload's route to it until wired(). */
static void wiring_begin(struct cctx *c)
{
	if (!c->wiring) {
		c->wiring = true;
		c->a->wiring++;
	}
}

/* Whether the applied ADD (c->spec, c->existed) is of the interface prepared, under the
 * forecast host end name and MAC. */
static bool forecast_held(const struct cctx *c)
{
	return !c->existed && strcmp(c->pre_host, c->host_ifname) == 0 &&
	       memcmp(c->pspec.mac, c->spec.mac, sizeof c->spec.mac) == 0;
}

/*
 * The command's outcome while the preparation runs: true if it is the success of the ADD of the
 * interface being prepared, under the forecast names, and is taken over here (the worker or
 * prep_done() goes on with the wiring); false if prep_done() is to handle it as usual.
 */
static bool hand_over(struct cctx *c, int status, const struct kv_result *r)
{
	json_t *ans;
	if (status != STORE_OK || r == NULL || r->status != KV_R_OK || r->reply == NULL ||
	    c->cmd != CMD_ADD || c->rolling_back || !c->wire ||
	    (ans = json_loadb((const char *)r->reply, r->reply_len, 0, NULL)) == NULL) {
		return false;
	}
	/* (what this sets when it returns false, cmd_done() sets again from the kept outcome) */
	c->existed = json_is_true(json_object_get(ans, "existed"));
	if (build_spec(c, ans) != 0 || !forecast_held(c)) {
		json_decref(ans);
		return false;
	}
	answer_take(c, ans, r);
	c->handed = true;
	wiring_begin(c);
	int open = HAND_OPEN;
	/* Lost to the worker (HAND_OVER): prep_done() queues the finish, as without this. */
	(void)atomic_compare_exchange_strong(&c->hand, &open, HAND_FINISH);
	return true;
}

/* Start preparing c's interfaces, if it is an ADD of an interface this replica has no record
 * of. A failure to start is no failure: the wiring then does it all. */
static void prep_start(struct cctx *c)
{
	struct agent *a = c->a;
	struct kv_tx *tx;
	bool exists = true;
	char mac[18];
	if (!c->wire || c->netns[0] == 0 || a->stopping ||
	    store_view_begin(a->store, &tx) != STORE_OK) {
		return;
	}
	int rv = cni_predict_iface(tx, a->name, jstr(c->body, "container"), c->ifname, &exists,
	                           c->pre_host, mac);
	store_view_end(tx);
	if (rv != 0 || exists) {
		return;
	}
	spec_common(c, &c->pspec, c->pre_host);
	if (!mac_parse(mac, c->pspec.mac)) {
		return;
	}
	json_t *v4 = json_object_get(c->body, "ipv4");
	c->pre_v4 = v4 == NULL || json_is_true(v4);
	c->pre_v6 = json_is_true(json_object_get(c->body, "ipv6"));
	c->pwork.data = c;
	if (uv_queue_work(a->loop, &c->pwork, prep_work, prep_done) != 0) {
		return;
	}
	c->prep = PREP_RUNNING;
	c->prep_next = a->cni_preparing;
	a->cni_preparing = c;
}

static void discard_work(uv_work_t *w)
{
	struct cctx *c = w->data;
	char err[256];
	wire_prepared_release(&c->prepared);
	if (wire_del(c->netns, c->ifname, c->pre_host, c->alias, NULL, err, sizeof err) != 0) {
		snprintf(c->prep_err, sizeof c->prep_err, "%s", err);
		c->prep_rv = -EIO;
	} else {
		c->prep_rv = 0;
	}
}

static void discard_done(uv_work_t *w, int status)
{
	struct cctx *c = w->data;
	if (status == 0 && c->prep_rv != 0) {
		agent_log("cni: %s %s: cannot remove the interfaces made for the failed ADD: %s",
		          jstr(c->body, "container"), c->ifname, c->prep_err);
	}
	prep_end(c);
	unstash(c);
}

/*
 * The ADD failed with this outcome: if its preparation made interfaces, they are removed first
 * and the outcome is handled again afterwards, and this returns true (the caller returns at
 * once). Otherwise the preparation is forgotten and this returns false.
 */
static bool prep_discard(struct cctx *c, int status, const struct kv_result *r)
{
	if (c->prep == PREP_NONE) {
		return false;
	}
	if (c->prepared.created) {
		stash(c, status, r);
		c->pwork.data = c;
		if (uv_queue_work(c->a->loop, &c->pwork, discard_work, discard_done) == 0) {
			c->prep = PREP_DISCARDING;
			return true;
		}
		stash_drop(c); /* the sweep of stale interfaces removes them */
	}
	prep_end(c);
	wire_prepared_release(&c->prepared);
	return false;
}

/* ------------------------------------------------------------------------------------------ */
/* ADD                                                                                         */

static void add_answer(struct cctx *c)
{
	json_t *out = json_pack("{s:O, s:b, s:I}", "ips", json_object_get(c->reply, "ips"),
	                        "existed", c->existed, "revision", (json_int_t)c->revision);
	if (out != NULL && c->wire) {
		json_object_set_new(out, "interface", json_string(c->host_ifname));
		json_object_set(out, "mac", json_object_get(c->reply, "mac"));
		json_object_set_new(out, "sandbox", json_string(c->netns));
	}
	c->succeeded = true;
	c->a->cni_adds++;
	if (!c->existed) {
		char *ips = json_dumps(json_object_get(c->reply, "ips"), JSON_COMPACT);
		char took[200];
		int o = snprintf(took, sizeof took, "replicated in %.2f ms",
		                 (double)(c->t_commit - c->t_start) / 1e6);
		if (c->prep_used && o > 0 && (size_t)o < sizeof took)
			o += snprintf(took + o, sizeof took - (size_t)o,
			              ", interfaces prepared meanwhile in %.2f ms%s",
			              (double)(c->t_prepared - c->t_start) / 1e6,
			              c->finished ? " and addressed right after" : "");
		if (c->wire && c->t_wired && o > 0 && (size_t)o < sizeof took)
			o += snprintf(took + o, sizeof took - (size_t)o, ", wired in %.2f ms",
			              (double)(c->t_wired - c->t_commit) / 1e6);
		if (c->policy_applied && o > 0 && (size_t)o < sizeof took)
			snprintf(took + o, sizeof took - (size_t)o,
			         ", policy in the kernel %.2f ms later",
			         (double)(uv_hrtime() - c->t_wired) / 1e6);
		agent_log("cni: ADD %s %s on %s: %s%s%s (%s)", jstr(c->body, "container"),
		          c->ifname, jstr(c->body, "network"), ips ? ips : "",
		          c->wire ? " via " : " (IPAM only)", c->wire ? c->host_ifname : "", took);
		free(ips);
	}
	agent_reply_json(c->a, c->req, 200, out);
	cctx_free(c);
}

static void policy_waited(struct policy_wait *w, bool applied)
{
	struct cctx *c = w->data;
	c->policy_applied = applied;
	if (!applied && !c->a->stopping) {
		agent_log("cni: %s %s: policy not in the kernel after %d ms; answering anyway",
		          jstr(c->body, "container"), c->ifname, POLICY_WAIT_MS);
	}
	add_answer(c);
}

/* Queue a CNI interface removal; conntrack listings wait for it (see CT_DEFER_MAX_MS). */
static int queue_unwire(struct cctx *c, uv_after_work_cb after)
{
	int rv = queue(c, wire_del_work, after);
	if (rv == 0) {
		c->unwiring = true;
		c->a->unwiring++;
	}
	return rv;
}

/* The removal queued by queue_unwire() is over: a listing that waited may start. */
static void unwire_over(struct cctx *c)
{
	if (c->unwiring) {
		c->unwiring = false;
		c->a->unwiring--;
		ct_start(c->a);
	}
}

static void rollback_unwired(uv_work_t *w, int status)
{
	struct cctx *c = w->data;
	(void)status;
	unwire_over(c);
	if (c->work_rv != 0) {
		agent_log("cni: %s %s: cleaning up after a failed ADD: %s",
		          jstr(c->body, "container"), c->ifname, c->err);
	}
	flush_released(c);
	agent_reply_error(c->a, c->req, 500, "wiring_failed", "%s",
	                  c->message ? c->message : "wiring failed");
	cctx_free(c);
}

static void wired(uv_work_t *w, int status)
{
	struct cctx *c = w->data;
	struct agent *a = c->a;
	c->t_wired = uv_hrtime();
	if (c->wiring) {
		c->wiring = false;
		a->wiring--;
	}
	if (status != 0 && c->work_rv == 0) {
		c->work_rv = -ECANCELED;
		snprintf(c->err, sizeof c->err, "the wiring was cancelled");
	}
	if (c->work_rv != 0) {
		c->message = strdup(c->err);
		if (c->existed) {
			/* The runtime's DEL cleans up a container whose ADD failed; a repeated ADD
			 * must not take a running container's address away by itself. */
			agent_reply_error(a, c->req, 500, "wiring_failed", "%s", c->err);
			cctx_free(c);
			return;
		}
		if (a->stopping) {
			/* The store is closing: the leak reconciler releases it after the next
			 * start, once the namespace is gone. */
			agent_reply_error(a, c->req, 500, "wiring_failed", "%s", c->err);
			cctx_free(c);
			return;
		}
		/* Undo the allocation and the endpoint in one entry, then the wiring. */
		agent_log("cni: %s %s: wiring failed (%s); releasing its addresses",
		          jstr(c->body, "container"), c->ifname, c->err);
		c->rolling_back = true;
		propose(c, payload_of(c, "del"));
		return;
	}
	if (a->netsync != NULL) {
		netsync_kick(a);
	}
	c->pw.data = c;
	if (json_is_true(json_object_get(c->reply, "wrote_res"))) {
		policy_sync_wait(a, &c->pw, c->revision, POLICY_WAIT_MS, policy_waited);
	} else {
		add_answer(c);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* The command's answer                                                                        */

/* DEL's answer, once the interface is gone (t_gone; 0 when none was removed) or its removal
 * failed. A failure is only logged: the addresses are released already and a leftover interface
 * is removed by the sweep of stale interfaces, so DEL still succeeds, as Calico's does. */
static void del_answer(struct cctx *c, uint64_t t_gone)
{
	json_t *out = json_pack(
	    "{s:O, s:O, s:I}", "released", json_object_get(c->reply, "released"), "deleted",
	    json_object_get(c->reply, "deleted"), "revision", (json_int_t)c->revision);
	c->a->cni_dels++;
	if (json_is_true(json_object_get(c->reply, "deleted"))) {
		char took[96];
		int o = snprintf(took, sizeof took, "replicated in %.2f ms",
		                 (double)(c->t_commit - c->t_start) / 1e6);
		if (t_gone != 0 && o > 0 && (size_t)o < sizeof took)
			snprintf(took + o, sizeof took - (size_t)o, ", unwired in %.2f ms",
			         (double)(t_gone - c->t_commit) / 1e6);
		agent_log("cni: DEL %s %s on %s: released %lld address(es) (%s)",
		          jstr(c->body, "container"), c->ifname, jstr(c->body, "network"),
		          (long long)json_integer_value(json_object_get(c->reply, "released")),
		          took);
	}
	agent_reply_json(c->a, c->req, 200, out);
	c->answered = true;
}

/* The kernel announced the host end's removal: both ends are out of its tables, with their
 * routes and addresses, and the names are free (linkwatch.c says why this comes long before the
 * delete returns). The worker still owns c. */
static void del_gone(struct link_gone *g)
{
	struct cctx *c = g->data;
	c->watching = false;
	/* Before the worker has named the interfaces, the announcement is of another removal
	 * (the sweep of stale interfaces, say): answering now would let this container's next ADD
	 * make interfaces that the worker would then find by name. It answers when it returns. */
	if (atomic_load(&c->identified)) {
		del_answer(c, uv_hrtime());
	}
}

static void del_unwired(uv_work_t *w, int status)
{
	struct cctx *c = w->data;
	uint64_t t_done = uv_hrtime();
	(void)status;
	unwire_over(c);
	if (c->watching) {
		linkwatch_cancel(c->a, &c->gone);
		c->watching = false;
	}
	if (c->work_rv != 0) {
		agent_log("cni: DEL %s %s: %s", jstr(c->body, "container"), c->ifname, c->err);
	}
	if (c->a->netsync != NULL) {
		netsync_kick(c->a);
	}
	flush_released(c);
	if (!c->answered) {
		del_answer(c, c->unwire_ran && c->work_rv == 0 ? t_done : 0);
	}
	cctx_free(c);
}

static void cmd_done(struct store_write *w, int status, const struct kv_result *r)
{
	struct cctx *c = w->data;
	struct agent *a = c->a;
	json_t *ans = NULL;
	if (c->prep == PREP_RUNNING) {
		if (!hand_over(c, status, r)) {
			stash(c, status, r); /* prep_done() comes back */
		}
		return;
	}
	if (status != STORE_OK) {
		if (prep_discard(c, status, r)) {
			return;
		}
		if (c->rolling_back) {
			agent_log(
			    "cni: %s %s: cannot release after a failed ADD (store error %d); the "
			    "leak reconciler will",
			    jstr(c->body, "container"), c->ifname, status);
			agent_reply_error(a, c->req, 500, "wiring_failed", "%s", c->message);
			cctx_free(c);
			return;
		}
		agent_reply_store_error(a, c->req, status, NULL);
		cctx_free(c);
		return;
	}
	if ((r->status != KV_R_OK && r->status != KV_R_REFUSED) || r->reply == NULL ||
	    (ans = json_loadb((const char *)r->reply, r->reply_len, 0, NULL)) == NULL) {
		if (prep_discard(c, status, r)) {
			return;
		}
		agent_reply_error(a, c->req, 500, "internal", "the CNI command was not applied: %s",
		                  r->message ? r->message : "no answer");
		cctx_free(c);
		return;
	}
	if (r->status == KV_R_REFUSED) {
		if (prep_discard(c, status, r)) {
			json_decref(ans);
			return;
		}
		const char *code = jstr(ans, "error"), *msg = jstr(ans, "message");
		code = code ? code : "invalid";
		if (c->rolling_back) {
			agent_log("cni: %s %s: release after a failed ADD refused: %s",
			          jstr(c->body, "container"), c->ifname, msg ? msg : "");
			agent_reply_error(a, c->req, 500, "wiring_failed", "%s", c->message);
		} else {
			agent_reply_error(a, c->req, agent_status_of(code), code, "%s",
			                  msg ? msg : "refused");
		}
		json_decref(ans);
		cctx_free(c);
		return;
	}
	answer_take(c, ans, r);

	if (c->rolling_back) {
		/* The allocation is undone; now the wiring. */
		if (queue_unwire(c, rollback_unwired) != 0) {
			agent_reply_error(a, c->req, 500, "wiring_failed", "%s", c->message);
			cctx_free(c);
		}
		return;
	}
	if (c->cmd == CMD_DEL) {
		/* Only an interface the record named goes: one whose other networks remain stays,
		 * and a DEL for an interface Tabby holds no record of (a refused ADD, another
		 * plugin's eth1) touches nothing in the container. */
		const char *iface = jstr(ans, "iface");
		bool deleted = json_is_true(json_object_get(ans, "deleted")) && iface != NULL;
		snprintf(c->host_ifname, sizeof c->host_ifname, "%s", iface ? iface : "");
		const char *ctr = jstr(c->body, "container");
		snprintf(c->alias, sizeof c->alias, WIRE_ALIAS_PREFIX "%s/%s", ctr ? ctr : "",
		         c->ifname);
		/* The answer goes when the kernel announces the host end's removal, or when the
		 * removal returns if no announcement is watched for (or it was lost). */
		if (c->wire && deleted) {
			snprintf(c->gone.name, sizeof c->gone.name, "%s", c->host_ifname);
			c->gone.alias = c->alias;
			c->gone.cb = del_gone;
			c->gone.data = c;
			c->watching = linkwatch_wait(a, &c->gone);
		}
		if (!c->wire || !deleted || queue_unwire(c, del_unwired) != 0) {
			c->work.data = c;
			del_unwired(&c->work, 0);
		}
		return;
	}
	/* ADD */
	c->existed = json_is_true(json_object_get(ans, "existed"));
	if (!c->wire) {
		add_answer(c);
		return;
	}
	if (build_spec(c, ans) != 0) {
		if (prep_discard(c, status, r)) {
			return;
		}
		agent_reply_error(a, c->req, 409, "conflict", "%s", c->err);
		cctx_free(c);
		return;
	}
	add_wire(c);
}

/* The applied ADD's wiring, c->spec built: the finish of the prepared pair if the answer named
 * what was prepared, else all of it. */
static void add_wire(struct cctx *c)
{
	if (c->prep == PREP_DONE) {
		/* The record exists now: the sweep may judge the interfaces by it. */
		c->prep_used = c->prep_rv == 0 && forecast_held(c);
		if (!c->prep_used) {
			wire_prepared_release(&c->prepared);
		}
		prep_end(c);
	}
	wiring_begin(c);
	if (queue(c, wire_add_work, wired) != 0) {
		c->work.data = c;
		c->work_rv = -ENOMEM;
		snprintf(c->err, sizeof c->err, "cannot start the wiring");
		wired(&c->work, 0);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* CHECK                                                                                       */

static void checked(uv_work_t *w, int status)
{
	struct cctx *c = w->data;
	(void)status;
	if (c->work_rv != 0) {
		agent_reply_error(c->a, c->req, 409, "check_failed", "%s", c->err);
	} else {
		json_t *out =
		    json_pack("{s:O, s:s, s:O}", "ips", json_object_get(c->reply, "ips"),
		              "interface", c->host_ifname, "mac", json_object_get(c->reply, "mac"));
		agent_reply_json(c->a, c->req, 200, out);
	}
	cctx_free(c);
}

static bool same_set(const json_t *a, const json_t *b)
{
	size_t i, k;
	json_t *x, *y;
	if (json_array_size(a) != json_array_size(b)) {
		return false;
	}
	json_array_foreach (a, i, x) {
		bool found = false;
		json_array_foreach (b, k, y) {
			found = found || json_equal(x, y);
		}
		if (!found) {
			return false;
		}
	}
	return true;
}

static void do_check(struct cctx *c)
{
	struct agent *a = c->a;
	struct kv_tx *tx;
	json_t *rec = NULL;
	const char *container = jstr(c->body, "container"), *network = jstr(c->body, "network");
	if (store_view_begin(a->store, &tx) != STORE_OK) {
		agent_reply_error(a, c->req, 503, "unavailable", "cannot read the local replica");
		cctx_free(c);
		return;
	}
	int rv = cni_record_get(tx, a->name, container, c->ifname, &rec);
	store_view_end(tx);
	if (rv != 0) {
		agent_reply_error(a, c->req, 500, "internal", "cannot read the CNI record");
		goto err;
	}
	if (rec == NULL) {
		agent_reply_error(a, c->req, 404, "not_found",
		                  "container %s has no interface %s on this host (node %s)",
		                  container, c->ifname, a->name);
		goto err;
	}
	bool on_network = false;
	size_t i;
	json_t *v;
	json_array_foreach (json_object_get(rec, "networks"), i, v) {
		on_network =
		    on_network || (json_is_string(v) && strcmp(json_string_value(v), network) == 0);
	}
	if (!on_network) {
		agent_reply_error(a, c->req, 409, "check_failed",
		                  "container %s interface %s is not on network %s", container,
		                  c->ifname, network);
		goto err;
	}
	json_t *prev = json_object_get(c->body, "prev_ips");
	if (json_is_array(prev) && !same_set(prev, json_object_get(rec, "ips"))) {
		char *want = json_dumps(json_object_get(rec, "ips"), JSON_COMPACT);
		char *got = json_dumps(prev, JSON_COMPACT);
		agent_reply_error(a, c->req, 409, "check_failed",
		                  "the runtime's previous result lists %s, the container has %s",
		                  got ? got : "?", want ? want : "?");
		free(want);
		free(got);
		goto err;
	}
	c->reply = rec;
	rec = NULL;
	if (!c->wire) {
		json_t *out = json_pack("{s:O}", "ips", json_object_get(c->reply, "ips"));
		agent_reply_json(a, c->req, 200, out);
		cctx_free(c);
		return;
	}
	if (build_spec(c, c->reply) != 0) {
		agent_reply_error(a, c->req, 409, "check_failed", "%s", c->err);
		goto err;
	}
	if (queue(c, wire_check_work, checked) != 0) {
		agent_reply_error(a, c->req, 500, "internal", "cannot start the check");
		goto err;
	}
	return;
err:
	json_decref(rec);
	cctx_free(c);
}

/* ------------------------------------------------------------------------------------------ */
/* Entry                                                                                       */

bool agent_route_cni(struct agent *a, struct http_request *req)
{
	static const char prefix[] = "/v1/cni/";
	if (req->path_len < sizeof prefix - 1 ||
	    memcmp(req->path, prefix, sizeof prefix - 1) != 0) {
		return false;
	}
	const char *what = req->path + sizeof prefix - 1;
	enum cni_cmd cmd;
	if (strcmp(what, "add") == 0) {
		cmd = CMD_ADD;
	} else if (strcmp(what, "del") == 0) {
		cmd = CMD_DEL;
	} else if (strcmp(what, "check") == 0) {
		cmd = CMD_CHECK;
	} else {
		agent_reply_error(a, req, 404, "not_found", "no such path: %s", req->path);
		return true;
	}
	if (req->method != HTTP_POST) {
		agent_reply_error(a, req, 405, "method_not_allowed", "%s takes POST", req->path);
		return true;
	}
	json_t *body = agent_parse_body(a, req, "invalid");
	if (body == NULL) {
		return true;
	}
	struct cctx *c = calloc(1, sizeof *c);
	if (c == NULL) {
		json_decref(body);
		agent_reply_error(a, req, 500, "internal", "out of memory");
		return true;
	}
	atomic_init(&c->hand, HAND_OPEN);
	c->a = a;
	c->t_start = uv_hrtime();
	c->req = req;
	c->cmd = cmd;
	c->body = body;
	c->wire = !json_is_false(json_object_get(body, "wire"));

	const char *node = jstr(body, "node"), *ifname = jstr(body, "ifname");
	const char *netns = jstr(body, "netns"), *container = jstr(body, "container");
	const char *network = jstr(body, "network");
	if (network == NULL || container == NULL || ifname == NULL) {
		agent_reply_error(a, req, 400, "invalid",
		                  "the request needs network, container and "
		                  "ifname");
		goto err;
	}
	if (node != NULL && strcmp(node, a->name) != 0) {
		agent_reply_error(
		    a, req, 400, "invalid",
		    "the CNI config names node '%s' but this host's agent is node '%s' "
		    "(set nodename to the agent's --name, or leave it out)",
		    node, a->name);
		goto err;
	}
	if (strlen(ifname) >= sizeof c->ifname) {
		agent_reply_error(a, req, 400, "invalid",
		                  "interface name '%s' is longer than 15 characters", ifname);
		goto err;
	}
	snprintf(c->ifname, sizeof c->ifname, "%s", ifname);
	if (netns != NULL && netns[0] != '\0') {
		if (strlen(netns) >= sizeof c->netns) {
			agent_reply_error(a, req, 400, "invalid", "netns path too long");
			goto err;
		}
		snprintf(c->netns, sizeof c->netns, "%s", netns);
	} else if (c->wire && cmd != CMD_DEL) {
		agent_reply_error(a, req, 400, "invalid",
		                  "netns is required to wire a container (CNI_NETNS was empty)");
		goto err;
	}
	json_t *mtu = json_object_get(body, "mtu");
	if (mtu != NULL && (!json_is_integer(mtu) || json_integer_value(mtu) < 0 ||
	                    (json_integer_value(mtu) != 0 && json_integer_value(mtu) < 68) ||
	                    json_integer_value(mtu) > 65535)) {
		agent_reply_error(a, req, 400, "invalid", "mtu must be 0 or 68-65535");
		goto err;
	}
	switch (cmd) {
	case CMD_ADD:
		if (!a->dataplane_started && (!a->no_policy || !a->no_routes)) {
			/* Its policy and routes could not follow: the runtime tries again (CNI code
			 * 11) rather than start a container its host cannot police yet. */
			agent_reply_error(
			    a, req, 503, "unavailable",
			    "the agent is still catching up with the cluster (or has no "
			    "quorum); try again");
			goto err;
		}
		if (!c->wire && c->netns[0] != '\0' && leaks_netns_gone(c->netns)) {
			/* The leak reconciler would take this for a dead container and release
			 * its addresses: without a namespace recorded it never judges them. */
			agent_log("cni: ADD %s/%s: netns %s is not a network namespace this agent "
			          "can see; the address is recorded without it, and the leak "
			          "reconciler will leave it alone",
			          container, c->ifname, c->netns);
			json_object_del(body, "netns");
			c->netns[0] = '\0';
		}
		prep_start(c);
		propose(c, payload_of(c, "add"));
		return true;
	case CMD_DEL:
		propose(c, payload_of(c, "del"));
		return true;
	case CMD_CHECK:
		do_check(c);
		return true;
	}
err:
	cctx_free(c);
	return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Stale interfaces                                                                            */

/*
 * A host end whose container interface has no CNI record on this host any more is stale: its DEL
 * never came (the agent was down, the runtime crashed) or its removal failed. Only links carrying
 * Tabby's alias are considered, so nothing Tabby did not make is touched. A record is deleted
 * before its interface goes, and written before its interface exists, except for an ADD whose
 * interfaces are prepared while its entry replicates: those names are in a->cni_preparing until
 * the record is applied here (or the prepared pair is deleted again), and the sweep leaves them
 * alone. So a link without a record is never one an ADD in flight is still building.
 */
#define GC_MS 90000

struct gc_job {
	uv_work_t work;
	struct agent *a;
	char **stale; /* host end names, found on the loop thread */
	char **alias; /* and their aliases then */
	int *ifindex; /* and their indexes: a name with another index was rebuilt since */
	unsigned n;
	unsigned removed;
};

struct gc_scan {
	uv_work_t work;
	struct agent *a;
	struct wire_link *links;
	unsigned n;
	int rv;
	char err[256];
};

static void gc_del_work(uv_work_t *w)
{
	struct gc_job *j = w->data;
	char err[256];
	for (unsigned i = 0; i < j->n; i++) {
		if ((int)if_nametoindex(j->stale[i]) == j->ifindex[i] &&
		    wire_del(NULL, NULL, j->stale[i], j->alias[i], NULL, err, sizeof err) == 0) {
			j->removed++;
		}
	}
}

static void gc_job_free(struct gc_job *j)
{
	for (unsigned i = 0; i < j->n; i++) {
		free(j->stale[i]);
		free(j->alias[i]);
	}
	free(j->stale);
	free(j->alias);
	free(j->ifindex);
	free(j);
}

static void gc_del_done(uv_work_t *w, int status)
{
	struct gc_job *j = w->data;
	(void)status;
	if (j->removed > 0) {
		agent_log("cni: removed %u stale container interface(s) no endpoint wants",
		          j->removed);
	}
	gc_job_free(j);
}

static void gc_list_work(uv_work_t *w)
{
	struct gc_scan *g = w->data;
	g->rv = wire_list(&g->links, &g->n, g->err, sizeof g->err);
}

static void gc_list_done(uv_work_t *w, int status)
{
	struct gc_scan *g = w->data;
	struct agent *a = g->a;
	struct gc_job *j = NULL;
	struct kv_tx *tx = NULL;
	if (status != 0 || g->rv != 0 || a->stopping) {
		if (g->rv != 0) {
			agent_log("cni: cannot list the container interfaces: %s", g->err);
		}
		goto out;
	}
	if ((j = calloc(1, sizeof *j)) == NULL ||
	    (j->stale = calloc(g->n + 1, sizeof *j->stale)) == NULL ||
	    (j->alias = calloc(g->n + 1, sizeof *j->alias)) == NULL ||
	    (j->ifindex = calloc(g->n + 1, sizeof *j->ifindex)) == NULL ||
	    store_view_begin(a->store, &tx) != STORE_OK) {
		tx = NULL;
		goto out;
	}
	for (unsigned i = 0; i < g->n; i++) {
		/* the alias is "<container>/<ifname>"; a container id has no '/' */
		char *slash = strchr(g->links[i].alias, '/');
		json_t *rec = NULL;
		if (slash == NULL) {
			continue;
		}
		*slash = 0;
		if (cni_record_get(tx, a->name, g->links[i].alias, slash + 1, &rec) != 0) {
			continue; /* cannot tell: leave it */
		}
		bool wanted =
		    rec != NULL && json_is_string(json_object_get(rec, "iface")) &&
		    strcmp(json_string_value(json_object_get(rec, "iface")), g->links[i].name) == 0;
		json_decref(rec);
		char alias[sizeof g->links[i].alias + sizeof WIRE_ALIAS_PREFIX];
		snprintf(alias, sizeof alias, WIRE_ALIAS_PREFIX "%s/%s", g->links[i].alias,
		         slash + 1);
		wanted = wanted || preparing(a, g->links[i].name);
		if (!wanted && (j->stale[j->n] = strdup(g->links[i].name)) != NULL) {
			if ((j->alias[j->n] = strdup(alias)) == NULL) {
				free(j->stale[j->n]);
				continue;
			}
			j->ifindex[j->n++] = g->links[i].ifindex;
		}
	}
	store_view_end(tx);
	tx = NULL;
	if (j->n > 0) {
		j->a = a;
		j->work.data = j;
		if (uv_queue_work(a->loop, &j->work, gc_del_work, gc_del_done) == 0) {
			j = NULL;
		}
	}
out:
	if (tx != NULL) {
		store_view_end(tx);
	}
	if (j != NULL) {
		gc_job_free(j);
	}
	free(g->links);
	free(g);
}

static void gc_tick(uv_timer_t *t)
{
	struct agent *a = t->data;
	struct gc_scan *g = calloc(1, sizeof *g);
	if (g == NULL || a->stopping) {
		free(g);
		return;
	}
	g->a = a;
	g->work.data = g;
	if (uv_queue_work(a->loop, &g->work, gc_list_work, gc_list_done) != 0) {
		free(g);
	}
}

void agent_cni_gc_start(struct agent *a)
{
	uv_timer_init(a->loop, &a->cni_gc_timer);
	a->cni_gc_timer.data = a;
	uv_timer_start(&a->cni_gc_timer, gc_tick, 0, GC_MS);
	a->cni_gc_started = true;
}

void agent_cni_gc_stop(struct agent *a)
{
	if (a->cni_gc_started) {
		uv_close((uv_handle_t *)&a->cni_gc_timer, NULL);
		a->cni_gc_started = false;
	}
}
