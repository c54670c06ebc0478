/*
 * The leak reconciler: addresses the CNI path assigned on this host for containers that are gone.
 *
 * A CNI allocation carries the attributes `container` (the container id) and `netns` (the path of
 * its network namespace); allocations made by an operator or for tunnels carry no `container` and
 * are never touched. Every pass looks at this host's CNI allocations in the local replica, grouped
 * by handle. A handle is live while any of its addresses names a path that is a network namespace
 * now. A handle none of whose addresses names a namespace at all (an IPAM plugin run without
 * CNI_NETNS, or given a path this agent cannot see: routes_cni.c records none then) cannot be
 * judged, so it is never released: only reported. A handle that is gone becomes a candidate (in
 * memory: a restarted agent starts the wait again, which only delays a release); a candidate that
 * is still not live after the grace period is released in one IPAM_REQ_RELEASE naming every address
 * of the handle with its generation, so that if any of them was released and handed to someone else
 * meanwhile the state machine refuses the whole release and nothing is freed
 * (calico-behaviour.md 2.10).
 *
 * Only this host can tell whether its namespaces exist, so each agent reconciles its own
 * allocations; no agent ever releases another host's addresses.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "agent/cni.h"
#include "agent/internal.h"
#include "ipam/ipam.h"

#define INTERVAL_MIN_MS 1000
#define INTERVAL_MAX_MS 60000

/* One CNI allocation of this host, copied out of the view. */
struct local_alloc {
	char *handle;
	char *container;
	char *netns; /* NULL: the allocation has no netns attribute */
	struct ipam_addr addr;
	int64_t gen;
};

struct candidate {
	char *handle;
	uint64_t since; /* uv_now() of the pass that first found it not live */
	/* The allocations it was found with: when they change (released and assigned again),
	 * the wait starts again. */
	int64_t max_gen;
	unsigned n;
	bool inflight; /* a release is proposed and not answered yet */
	bool seen;     /* found again by the current pass */
};

struct leaks {
	struct agent *a;
	uv_timer_t timer;
	uint64_t interval_ms;
	struct candidate *cands; /* unordered; a host holds a few hundred handles at most */
	unsigned n_cands, cap_cands;
};

/* ------------------------------------------------------------------------------------------ */
/* This host's CNI allocations                                                                 */

struct collect {
	const char *node;
	struct local_alloc *v;
	unsigned n, cap;
};

static void collect_free(struct collect *c)
{
	for (unsigned i = 0; i < c->n; i++) {
		free(c->v[i].handle);
		free(c->v[i].container);
		free(c->v[i].netns);
	}
	free(c->v);
}

static int collect_one(void *arg, const struct ipam_alloc *al)
{
	struct collect *c = arg;
	const char *container = NULL, *netns = NULL;
	if (strcmp(al->node, c->node) != 0) {
		return 0;
	}
	for (unsigned i = 0; i < al->n_attrs; i++) {
		if (strcmp(al->attrs[i].key, "container") == 0) {
			container = al->attrs[i].value;
		} else if (strcmp(al->attrs[i].key, "netns") == 0) {
			netns = al->attrs[i].value;
		}
	}
	if (container == NULL) {
		return 0;
	}
	if (c->n == c->cap) {
		unsigned cap = c->cap ? 2 * c->cap : 64;
		struct local_alloc *v = realloc(c->v, cap * sizeof *v);
		if (v == NULL) {
			return -ENOMEM;
		}
		c->v = v;
		c->cap = cap;
	}
	struct local_alloc *x = &c->v[c->n];
	*x = (struct local_alloc){.addr = al->addr, .gen = al->gen};
	x->handle = strdup(al->handle);
	x->container = strdup(container);
	x->netns = netns != NULL ? strdup(netns) : NULL;
	c->n++; /* counted before the check so that collect_free frees what was copied */
	if (x->handle == NULL || x->container == NULL || (netns != NULL && x->netns == NULL)) {
		return -ENOMEM;
	}
	return 0;
}

static int cmp_local(const void *x, const void *y)
{
	const struct local_alloc *p = x, *q = y;
	int c = strcmp(p->handle, q->handle);
	if (c != 0) {
		return c;
	}
	if (p->addr.family != q->addr.family) {
		return p->addr.family < q->addr.family ? -1 : 1;
	}
	return memcmp(p->addr.b, q->addr.b, sizeof p->addr.b);
}

/* This host's CNI allocations in tx, sorted by handle (then address). */
static int collect(struct agent *a, struct kv_tx *tx, struct collect *c)
{
	*c = (struct collect){.node = a->name};
	int rv = ipam_foreach_alloc(tx, collect_one, c);
	if (rv != 0) {
		collect_free(c);
		*c = (struct collect){0};
		return rv;
	}
	if (c->n > 1) {
		qsort(c->v, c->n, sizeof *c->v, cmp_local);
	}
	return 0;
}

/* The end of the group of allocations with the handle of v[i]. */
static unsigned group_end(const struct collect *c, unsigned i)
{
	unsigned j = i + 1;
	while (j < c->n && strcmp(c->v[j].handle, c->v[i].handle) == 0) {
		j++;
	}
	return j;
}

/* ------------------------------------------------------------------------------------------ */
/* Liveness                                                                                    */

enum ns_state { NS_GONE, NS_LIVE, NS_UNKNOWN };

/* Whether path is a network namespace now. Only a definite answer counts as gone (nothing
 * there, or something that is not a network namespace); any other failure (out of file
 * descriptors, a permission problem) is NS_UNKNOWN, which keeps the handle, because releasing
 * the address of a running container is far worse than keeping a leaked one a little longer. */
static enum ns_state netns_state(const char *path)
{
	struct stat st;
	struct statfs sfs;
	if (path == NULL || path[0] != '/') {
		return NS_GONE;
	}
	/* Namespace files (bind mounts of nsfs, /proc/PID/ns/net) are regular files; refusing
	 * anything else keeps open() away from FIFOs and devices. */
	if (stat(path, &st) != 0) {
		return errno == ENOENT || errno == ENOTDIR ? NS_GONE : NS_UNKNOWN;
	}
	if (!S_ISREG(st.st_mode)) {
		return NS_GONE;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		return errno == ENOENT ? NS_GONE : NS_UNKNOWN;
	}
	enum ns_state s = NS_UNKNOWN;
	if (fstatfs(fd, &sfs) == 0) {
		s = NS_GONE;
		if (sfs.f_type == NSFS_MAGIC) {
			int type = ioctl(fd, NS_GET_NSTYPE);
			/* Kernels before 4.11 lack NS_GET_NSTYPE: there an nsfs file at a CNI
			 * netns path is taken for the network namespace it names. */
			s = type == CLONE_NEWNET                 ? NS_LIVE
			    : type >= 0                          ? NS_GONE
			    : errno == ENOTTY || errno == EINVAL ? NS_LIVE
			                                         : NS_UNKNOWN;
		}
	}
	close(fd);
	return s;
}

/* A handle is live (or cannot be judged now) while any of its addresses names a namespace that
 * exists, and gone when the namespaces its addresses name are all gone. Without any netns
 * attribute nothing says whether its container runs: NS_UNKNOWN, for good. *ns (when not NULL):
 * the first namespace it names, NULL with NS_UNKNOWN. */
static enum ns_state group_state(const struct collect *c, unsigned i, unsigned j, const char **ns)
{
	const char *first = NULL;
	enum ns_state st = NS_UNKNOWN;
	for (unsigned k = i; k < j && st != NS_LIVE; k++) {
		if (c->v[k].netns != NULL) {
			first = first != NULL ? first : c->v[k].netns;
			st = netns_state(c->v[k].netns) != NS_GONE ? NS_LIVE : NS_GONE;
		}
	}
	if (ns != NULL) {
		*ns = first;
	}
	return st;
}

bool leaks_netns_gone(const char *path)
{
	return netns_state(path) == NS_GONE;
}

/* ------------------------------------------------------------------------------------------ */
/* Candidates                                                                                  */

static struct candidate *find_cand(struct leaks *l, const char *handle)
{
	for (unsigned i = 0; i < l->n_cands; i++) {
		if (strcmp(l->cands[i].handle, handle) == 0) {
			return &l->cands[i];
		}
	}
	return NULL;
}

static struct candidate *add_cand(struct leaks *l, const char *handle, uint64_t now)
{
	if (l->n_cands == l->cap_cands) {
		unsigned cap = l->cap_cands ? 2 * l->cap_cands : 16;
		struct candidate *v = realloc(l->cands, cap * sizeof *v);
		if (v == NULL) {
			return NULL;
		}
		l->cands = v;
		l->cap_cands = cap;
	}
	char *h = strdup(handle);
	if (h == NULL) {
		return NULL;
	}
	struct candidate *cd = &l->cands[l->n_cands++];
	*cd = (struct candidate){.handle = h, .since = now, .max_gen = -1};
	return cd;
}

static void drop_cand(struct leaks *l, struct candidate *cd)
{
	free(cd->handle);
	*cd = l->cands[--l->n_cands];
}

/* "10.0.0.1, 10.0.0.2" for v[i..j), cut short to fit. */
static void addr_list(const struct collect *c, unsigned i, unsigned j, char *buf, size_t len)
{
	size_t at = 0;
	buf[0] = 0;
	for (unsigned k = i; k < j && at < len; k++) {
		char ip[IPAM_ADDR_STRLEN];
		int w = snprintf(buf + at, len - at, "%s%s", k > i ? ", " : "",
		                 ipam_addr_format(&c->v[k].addr, ip));
		at += w > 0 ? (size_t)w : 0;
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Release                                                                                     */

struct release_ctx {
	struct store_write w;
	struct leaks *l;
	char *handle;
	char *what; /* the log line's detail: addresses, container, namespace */
};

static void release_done(struct store_write *w, int status, const struct kv_result *r)
{
	struct release_ctx *rc = w->data;
	struct leaks *l = rc->l;
	struct candidate *cd = find_cand(l, rc->handle);
	json_t *rep = NULL;
	if (cd != NULL) {
		cd->inflight = false;
	}
	if (status == STORE_ESHUTDOWN) {
		goto out;
	}
	if (status != STORE_OK) {
		agent_log("leak reconciler: releasing handle %s failed: %s; trying again later",
		          rc->handle, store_strerror(status));
		goto out;
	}
	if ((r->status == KV_R_OK || r->status == KV_R_REFUSED) && r->reply != NULL) {
		rep = json_loadb((const char *)r->reply, r->reply_len, 0, NULL);
	}
	if (r->status == KV_R_OK && rep != NULL) {
		json_int_t eps = json_integer_value(json_object_get(rep, "deleted"));
		agent_log("leak reconciler: released %s of handle %s%s", rc->what, rc->handle,
		          eps > 0 ? " and deleted its endpoint" : "");
		l->a->leaks_released++;
		if (cd != NULL) {
			drop_cand(l, cd);
		}
		goto out;
	}
	/* Refused: some address of the handle changed hands meanwhile. Nothing was released;
	 * the next passes judge the handle as it is now, from the start of a new wait. */
	const json_t *msg = json_object_get(rep, "message");
	agent_log("leak reconciler: handle %s was not released: %s", rc->handle,
	          json_is_string(msg) ? json_string_value(msg)
	          : r->message        ? r->message
	                              : "the command was refused");
	if (cd != NULL) {
		cd->since = uv_now(l->a->loop);
	}
out:
	json_decref(rep);
	free(rc->handle);
	free(rc->what);
	free(rc);
}

/* Propose the release of every address of the handle v[i..j) with its generation. */
static void release(struct leaks *l, struct candidate *cd, const struct collect *c, unsigned i,
                    unsigned j, const char *ns)
{
	struct agent *a = l->a;
	struct release_ctx *rc = calloc(1, sizeof *rc);
	json_t *items = json_array(), *cmd = NULL;
	char *text = NULL;
	char ips[512];
	if (items == NULL || rc == NULL) {
		goto err;
	}
	for (unsigned k = i; k < j; k++) {
		char buf[IPAM_ADDR_STRLEN];
		json_array_append_new(items, json_pack("{s:s, s:I}", "ip",
		                                       ipam_addr_format(&c->v[k].addr, buf), "gen",
		                                       (json_int_t)c->v[k].gen));
	}
	/* Through the CNI command, so the container's endpoint and record go with its
	 * addresses (an address without them is released just the same). */
	cmd = json_pack("{s:s, s:s, s:s, s:O}", "op", "reap", "node", a->name, "handle",
	                c->v[i].handle, "items", items);
	if (cmd == NULL || (text = json_dumps(cmd, JSON_COMPACT)) == NULL) {
		goto err;
	}
	addr_list(c, i, j, ips, sizeof ips);
	rc->l = l;
	rc->w.data = rc;
	rc->handle = strdup(c->v[i].handle);
	if (rc->handle == NULL ||
	    asprintf(&rc->what, "%s (container %s, gone network namespace %s)", ips,
	             c->v[i].container, ns) < 0) {
		rc->what = NULL;
		goto err;
	}
	struct kv_op op = {
	    .type = KV_OP_CALL, .call = CNI_CALL, .value = {(const uint8_t *)text, strlen(text)}};
	int rv = store_write(a->store, &rc->w, &op, release_done);
	if (rv != STORE_OK) {
		agent_log("leak reconciler: cannot propose the release of handle %s: %s",
		          rc->handle, store_strerror(rv));
		goto err;
	}
	cd->inflight = true;
	free(text);
	json_decref(cmd);
	json_decref(items);
	return;
err:
	if (rc != NULL) {
		free(rc->handle);
		free(rc->what);
	}
	free(rc);
	free(text);
	json_decref(cmd);
	json_decref(items);
}

/* ------------------------------------------------------------------------------------------ */
/* The pass                                                                                    */

static void pass(struct leaks *l)
{
	struct agent *a = l->a;
	struct collect c;
	struct kv_tx *tx;
	if (a->stopping || store_view_begin(a->store, &tx) != STORE_OK) {
		return;
	}
	int rv = collect(a, tx, &c);
	store_view_end(tx);
	if (rv != 0) {
		agent_log("leak reconciler: cannot read this host's allocations (%s)",
		          rv == -ENOMEM ? "out of memory" : "store error");
		return;
	}
	uint64_t now = uv_now(a->loop);
	for (unsigned k = 0; k < l->n_cands; k++) {
		l->cands[k].seen = false;
	}
	for (unsigned i = 0, j; i < c.n; i = j) {
		j = group_end(&c, i);
		/* Liveness is judged afresh on every pass, so the pass on which the grace period
		 * runs out is the re-check right before the release. */
		const char *ns;
		if (group_state(&c, i, j, &ns) != NS_GONE) {
			continue;
		}
		struct candidate *cd = find_cand(l, c.v[i].handle);
		if (cd == NULL && (cd = add_cand(l, c.v[i].handle, now)) == NULL) {
			break; /* out of memory: try again next pass */
		}
		cd->seen = true;
		int64_t max_gen = 0;
		for (unsigned k = i; k < j; k++) {
			max_gen = c.v[k].gen > max_gen ? c.v[k].gen : max_gen;
		}
		if (cd->inflight) {
			continue;
		}
		if (cd->max_gen != max_gen || cd->n != j - i) {
			cd->since = now;
			cd->max_gen = max_gen;
			cd->n = j - i;
		}
		if (now - cd->since >= a->leak_grace_ms) {
			release(l, cd, &c, i, j, ns);
		}
	}
	/* Forget handles that are live again or gone; one with a release in flight stays until
	 * its answer. */
	for (unsigned k = 0; k < l->n_cands;) {
		if (!l->cands[k].seen && !l->cands[k].inflight) {
			drop_cand(l, &l->cands[k]);
		} else {
			k++;
		}
	}
	collect_free(&c);
}

static void pass_cb(uv_timer_t *t)
{
	pass(t->data);
}

int leaks_start(struct agent *a)
{
	struct leaks *l = calloc(1, sizeof *l);
	if (l == NULL) {
		return -ENOMEM;
	}
	l->a = a;
	l->interval_ms = a->leak_grace_ms / 4;
	l->interval_ms = l->interval_ms > INTERVAL_MAX_MS   ? INTERVAL_MAX_MS
	                 : l->interval_ms < INTERVAL_MIN_MS ? INTERVAL_MIN_MS
	                                                    : l->interval_ms;
	uv_timer_init(a->loop, &l->timer);
	l->timer.data = l;
	uv_timer_start(&l->timer, pass_cb, l->interval_ms, l->interval_ms);
	a->leaks = l;
	return 0;
}

void leaks_stop(struct agent *a)
{
	if (a->leaks != NULL) {
		uv_close((uv_handle_t *)&a->leaks->timer, NULL);
	}
}

void leaks_free(struct agent *a)
{
	struct leaks *l = a->leaks;
	if (l == NULL) {
		return;
	}
	for (unsigned k = 0; k < l->n_cands; k++) {
		free(l->cands[k].handle);
	}
	free(l->cands);
	free(l);
	a->leaks = NULL;
}

int leaks_report(struct agent *a, struct kv_tx *tx, void (*fn)(void *arg, const char *line),
                 void *arg)
{
	struct collect c;
	int rv = collect(a, tx, &c);
	if (rv != 0) {
		return rv;
	}
	uint64_t now = uv_now(a->loop);
	for (unsigned i = 0, j; i < c.n; i = j) {
		j = group_end(&c, i);
		const char *ns;
		enum ns_state st = group_state(&c, i, j, &ns);
		if (st == NS_LIVE) {
			continue;
		}
		const struct candidate *cd = a->leaks ? find_cand(a->leaks, c.v[i].handle) : NULL;
		char ips[512], when[96], *line = NULL;
		addr_list(&c, i, j, ips, sizeof ips);
		if (st == NS_UNKNOWN) {
			snprintf(
			    when, sizeof when,
			    "never released automatically; release it once the container is gone");
		} else if (cd != NULL) {
			snprintf(when, sizeof when, "a leak candidate for %llus, released at %llus",
			         (unsigned long long)((now - cd->since) / 1000),
			         (unsigned long long)(a->leak_grace_ms / 1000));
		} else {
			snprintf(when, sizeof when, "a leak candidate, released after %llus",
			         (unsigned long long)(a->leak_grace_ms / 1000));
		}
		char *whose = NULL;
		int w = st == NS_GONE ? asprintf(&whose, "whose network namespace %s is gone", ns)
		                      : asprintf(&whose, "which has no network namespace recorded");
		if (w < 0 ||
		    asprintf(&line, "handle %s on this host (%s) belongs to container %s, %s: %s",
		             c.v[i].handle, ips, c.v[i].container, whose, when) < 0) {
			free(w < 0 ? NULL : whose);
			rv = -ENOMEM;
			break;
		}
		fn(arg, line);
		free(whose);
		free(line);
	}
	collect_free(&c);
	return rv;
}
