/*
 * Keeping this host's nftables policy in step with the replicated state.
 *
 * Felix's split: the calculation (policy_compiler) is pure and works from a policy_model; this
 * file feeds it and runs what it produces. At start the model is built from a view of the local
 * replica at revision R and the whole table is loaded in one transaction; a watch on the
 * resources from R + 1 then delivers every later change, which goes into the model at once and
 * is noted to the compiler. A zero-delay timer gathers every change that arrives in the same
 * loop iteration (one raft batch can carry hundreds) into one flush: one compile, one kernel
 * transaction.
 *
 * When the kernel refuses a batch (someone flushed our table by hand, the kernel ran out of
 * memory) the compiler forgets what the kernel holds and the next try, a second later, loads the
 * whole table again. When the watch falls behind the store's history ("compacted"), the model is
 * rebuilt from a fresh view the same way. The table is left in place when the agent stops: a
 * restarted agent replaces it in one transaction, so established traffic never sees a gap.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/internal.h"
#include "agent/nft.h"
#include "agent/resources.h"
#include "policy/policy.h"

#define RETRY_MS 1000

struct policy_sync {
	struct agent *a;
	struct policy_model *model;
	struct policy_compiler *compiler;
	struct agent_nft *nft;
	struct store_watch watch;
	bool watching;
	uv_timer_t timer;
	bool failed; /* the last flush failed: the next is a full load */

	/* Revisions, for policy_sync_wait(): the model holds every resource change up to
	 * model_rev; the kernel held the model at applied_rev after the last good flush. */
	int64_t model_rev, applied_rev;
	struct policy_wait *waiters; /* unordered */
	uv_timer_t wait_timer;       /* expires waiters; runs while there are any */
};

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void watch_cb(struct store_watch *w, const struct kv_event *ev, int status);

/* (Re)build the model from the local replica and watch from there on. */
static int resync(struct policy_sync *ps)
{
	struct agent *a = ps->a;
	struct kv_tx *tx;
	struct policy_model *m = NULL;
	if (ps->watching) {
		store_watch_stop(a->store, &ps->watch);
		ps->watching = false;
	}
	if (store_view_begin(a->store, &tx) != STORE_OK) {
		return -EIO;
	}
	int64_t rev = kv_tx_revision(tx);
	int rv = resources_model(tx, &m);
	store_view_end(tx);
	if (rv != 0) {
		return rv;
	}
	policy_model_free(ps->model);
	ps->model = m;
	ps->model_rev = rev;
	policy_compiler_reset(ps->compiler);
	ps->watch.data = ps;
	rv = store_watch_start(a->store, &ps->watch, KV_SPACE_DOMAIN,
	                       (struct kv_bytes){(const uint8_t *)"res/", 4}, true, rev + 1,
	                       watch_cb);
	if (rv != STORE_OK) {
		/* Without the watch the model would go stale: drop it so the retry starts over. */
		policy_model_free(ps->model);
		ps->model = NULL;
		return -EIO;
	}
	ps->watching = true;
	return 0;
}

/* Answers the waiters whose revision the kernel holds now (all of them, with applied false,
 * when everything stops). */
static void wake(struct policy_sync *ps, bool all)
{
	struct policy_wait **pp = &ps->waiters;
	uint64_t now = uv_now(ps->a->loop);
	while (*pp != NULL) {
		struct policy_wait *w = *pp;
		bool applied = !all && w->rev <= ps->applied_rev;
		if (applied || all || now >= w->deadline) {
			*pp = w->next;
			w->next = NULL;
			w->cb(w, applied);
		} else {
			pp = &w->next;
		}
	}
	if (ps->waiters == NULL && uv_is_active((uv_handle_t *)&ps->wait_timer)) {
		uv_timer_stop(&ps->wait_timer);
	}
}

static void wait_timer_cb(uv_timer_t *t)
{
	wake(t->data, false);
}

void policy_sync_wait(struct agent *a, struct policy_wait *w, int64_t rev, unsigned timeout_ms,
                      void (*cb)(struct policy_wait *w, bool applied))
{
	struct policy_sync *ps = a->policy;
	w->rev = rev;
	w->cb = cb;
	w->next = NULL;
	if (ps == NULL || a->stopping) {
		cb(w, ps == NULL);
		return;
	}
	if (rev <= ps->applied_rev) {
		cb(w, true);
		return;
	}
	w->deadline = uv_now(a->loop) + timeout_ms;
	w->next = ps->waiters;
	ps->waiters = w;
	if (!uv_is_active((uv_handle_t *)&ps->wait_timer)) {
		uv_timer_start(&ps->wait_timer, wait_timer_cb, 50, 50);
	}
}

static void flush_cb(uv_timer_t *t)
{
	struct policy_sync *ps = t->data;
	struct agent *a = ps->a;
	json_t *cmds = NULL;
	char err[1024];
	uint64_t t0 = now_us();
	if (ps->model == NULL) {
		int rv = resync(ps);
		if (rv != 0) {
			agent_log("policy: cannot read the resources (%s); retrying",
			          rv == -ENOMEM ? "out of memory" : "store error");
			uv_timer_start(&ps->timer, flush_cb, RETRY_MS, 0);
			return;
		}
	}
	int rv = policy_compiler_flush(ps->compiler, ps->model, &cmds);
	if (rv != 0) {
		agent_log("policy: cannot compile the ruleset: %s",
		          rv == -ENOMEM ? "out of memory" : "internal error");
		policy_compiler_reset(ps->compiler);
		uv_timer_start(&ps->timer, flush_cb, RETRY_MS, 0);
		return;
	}
	if (cmds == NULL) {
		ps->applied_rev = ps->model_rev;
		wake(ps, false);
		return;
	}
	rv = agent_nft_apply(ps->nft, cmds, err, sizeof err);
	json_decref(cmds);
	if (rv != 0) {
		if (!ps->failed) {
			agent_log(
			    "policy: the kernel refused the ruleset update (%s); reloading the "
			    "whole table",
			    err);
		}
		ps->failed = true;
		policy_compiler_reset(ps->compiler);
		uv_timer_start(&ps->timer, flush_cb, RETRY_MS, 0);
		return;
	}
	if (ps->failed) {
		agent_log("policy: the ruleset is loaded again");
	}
	ps->failed = false;
	ps->applied_rev = ps->model_rev;
	a->policy_flushes++;
	a->policy_last_flush_us = now_us() - t0;
	wake(ps, false);
}

static void schedule(struct policy_sync *ps)
{
	if (!uv_is_active((uv_handle_t *)&ps->timer)) {
		uv_timer_start(&ps->timer, flush_cb, 0, 0);
	}
}

/* "res/<plural>/<key>" -> kind and key. */
static enum policy_kind parse_key(const struct kv_kv *kv, char *key, size_t keylen)
{
	const char *k = (const char *)kv->key;
	size_t n = kv->key_len;
	if (n < 4 || memcmp(k, "res/", 4) != 0) {
		return POLICY_KIND_NONE;
	}
	const char *slash = memchr(k + 4, '/', n - 4);
	if (slash == NULL || (size_t)(k + n - slash - 1) >= keylen) {
		return POLICY_KIND_NONE;
	}
	size_t wlen = (size_t)(slash - (k + 4));
	for (int i = POLICY_KIND_POLICY; i <= POLICY_KIND_NODE; i++) {
		const char *p = policy_kind_plural((enum policy_kind)i);
		if (strlen(p) == wlen && memcmp(p, k + 4, wlen) == 0) {
			size_t klen = (size_t)(k + n - slash - 1);
			memcpy(key, slash + 1, klen);
			key[klen] = 0;
			return (enum policy_kind)i;
		}
	}
	return POLICY_KIND_NONE;
}

static void watch_cb(struct store_watch *w, const struct kv_event *ev, int status)
{
	struct policy_sync *ps = w->data;
	char key[POLICY_KEY_MAX], err[512];
	if (ev == NULL) {
		ps->watching = false;
		if (status == STORE_ECOMPACTED) {
			/* rebuilt from a fresh view at the next flush */
			policy_model_free(ps->model);
			ps->model = NULL;
			schedule(ps);
		}
		return;
	}
	enum policy_kind kind = parse_key(&ev->kv, key, sizeof key);
	if (kind == POLICY_KIND_NONE) {
		return;
	}
	int rv = 0;
	if (ev->type == KV_EV_PUT) {
		json_t *j = json_loadb((const char *)ev->kv.value, ev->kv.value_len, 0, NULL);
		rv = j == NULL ? -EINVAL : policy_model_put(ps->model, j, err, sizeof err);
		json_decref(j);
	} else {
		rv = policy_model_remove(ps->model, kind, key);
		rv = rv == -ENOENT ? 0 : rv;
	}
	if (rv != 0) {
		/* Only normalized resources are stored, so this is memory or a bug: start over from
		 * the replica rather than run with a model that differs from it. */
		agent_log("policy: cannot take %s %s into the model (%s); rebuilding it",
		          policy_kind_name(kind), key, rv == -ENOMEM ? "out of memory" : err);
		store_watch_stop(ps->a->store, &ps->watch);
		ps->watching = false;
		policy_model_free(ps->model);
		ps->model = NULL;
	} else {
		policy_compiler_note(ps->compiler, kind, key);
		if (ev->kv.mod_revision > ps->model_rev) {
			ps->model_rev = ev->kv.mod_revision;
		}
	}
	schedule(ps);
}

int policy_sync_start(struct agent *a)
{
	struct policy_sync *ps = calloc(1, sizeof *ps);
	if (ps == NULL) {
		return -ENOMEM;
	}
	ps->a = a;
	struct policy_compile_config cfg = {.node = a->name};
	int rv = policy_compiler_new(&cfg, &ps->compiler);
	if (rv == 0) {
		rv = agent_nft_new(&ps->nft);
	}
	if (rv != 0) {
		policy_compiler_free(ps->compiler);
		free(ps);
		return rv;
	}
	uv_timer_init(a->loop, &ps->timer);
	ps->timer.data = ps;
	uv_timer_init(a->loop, &ps->wait_timer);
	ps->wait_timer.data = ps;
	a->policy = ps;
	schedule(ps); /* the first flush builds the model and loads the whole table */
	return 0;
}

void policy_sync_stop(struct agent *a)
{
	struct policy_sync *ps = a->policy;
	if (ps == NULL) {
		return;
	}
	if (ps->watching) {
		store_watch_stop(a->store, &ps->watch);
		ps->watching = false;
	}
	wake(ps, true);
	uv_close((uv_handle_t *)&ps->timer, NULL);
	uv_close((uv_handle_t *)&ps->wait_timer, NULL);
}

void policy_sync_free(struct agent *a)
{
	struct policy_sync *ps = a->policy;
	if (ps == NULL) {
		return;
	}
	policy_model_free(ps->model);
	policy_compiler_free(ps->compiler);
	agent_nft_free(ps->nft);
	free(ps);
	a->policy = NULL;
}
