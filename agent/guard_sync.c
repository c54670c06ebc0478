/*
 * The control plane guard, kept in step with the member records (guard.h says what and why;
 * guard.c builds the table).
 *
 * Follows netsync.c in small. A watch on the member records ("members/" in the system key space)
 * says that the set of members changed; a zero-delay timer reads them from the local replica,
 * builds the table and loads it when its text differs from what the last load left. Every
 * REFRESH_MS the load is unconditional, so a table deleted or edited by hand comes back. A load
 * the kernel refused is tried again after 1 s, doubling to 30 s while it keeps failing; each
 * distinct refusal is logged once. When the agent stops, the table stays: the workloads stay, and
 * an agent restart must not open the ports to them for a moment.
 *
 * The table is replaced whole because it is tiny (two sets of a few members' addresses, four
 * rules) and changes only when a member joins, leaves or moves: diffing it would buy nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/guard.h"
#include "agent/internal.h"
#include "agent/nft.h"

#define REFRESH_MS     90000
#define RETRY_FIRST_MS 1000
#define RETRY_MAX_MS   30000

struct guard {
	struct agent *a;
	struct agent_nft *nft;
	uv_timer_t timer;   /* zero delay: a load; also the retries */
	uv_timer_t refresh; /* every REFRESH_MS: an unconditional load */
	struct store_watch watch;
	bool watching;
	bool full;         /* the next load happens even when the text is the same */
	unsigned retry_ms; /* the wait before the pending retry, or 0 */
	char *loaded;      /* the text of the table the last load left, or NULL */
	char *problem;     /* the last refusal logged */
	bool stopping;
};

static void load_cb(uv_timer_t *t);
static void watch_cb(struct store_watch *w, const struct kv_event *ev, int status);

static void schedule(struct guard *g, unsigned ms)
{
	if (g->stopping) {
		return;
	}
	if (uv_is_active((uv_handle_t *)&g->timer) && uv_timer_get_due_in(&g->timer) <= ms) {
		return;
	}
	uv_timer_start(&g->timer, load_cb, ms, 0);
}

static void retry(struct guard *g, const char *what)
{
	g->retry_ms = g->retry_ms == 0
	                  ? RETRY_FIRST_MS
	                  : (g->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : g->retry_ms * 2);
	if (g->problem == NULL || strcmp(g->problem, what) != 0) {
		agent_log(
		    "guard: %s; trying again in %u ms (and after that without a line per try)",
		    what, g->retry_ms);
		free(g->problem);
		g->problem = strdup(what);
	}
	g->full = true;
	schedule(g, g->retry_ms);
}

/* What a read of the member records found besides the addresses. */
struct members_read {
	unsigned members;
	unsigned unparsable; /* addresses that are not IP:PORT */
	char first_unparsable[200];
};

/* The members' peer and API addresses, normalised. */
static int read_ports(struct guard *g, struct guard_port **out, unsigned *n,
                      struct members_read *mr)
{
	struct member_rec *ms = NULL;
	unsigned nm = 0;
	int rv = agent_members(g->a, &ms, &nm);
	if (rv != STORE_OK) {
		return rv == STORE_ENOMEM ? -ENOMEM : -EIO;
	}
	struct guard_port *v = calloc(2 * (size_t)nm + 1, sizeof *v);
	if (v == NULL) {
		free(ms);
		return -ENOMEM;
	}
	*mr = (struct members_read){.members = nm};
	unsigned k = 0;
	for (unsigned i = 0; i < nm; i++) {
		/* agent_address_ok() parses with guard_port_parse() too, so every member that
		 * started has addresses that parse; one that does not (a record from elsewhere)
		 * guards nothing, and the load says so. */
		const char *addr[2] = {ms[i].peer_address, ms[i].api_address};
		for (int j = 0; j < 2; j++) {
			if (guard_port_parse(addr[j], &v[k])) {
				k++;
			} else if (mr->unparsable++ == 0) {
				snprintf(mr->first_unparsable, sizeof mr->first_unparsable,
				         "member %s's %s address '%s'", ms[i].name,
				         j == 0 ? "peer" : "API", addr[j]);
			}
		}
	}
	free(ms);
	*out = v;
	*n = guard_ports_normalise(v, k);
	return 0;
}

static void load_cb(uv_timer_t *t)
{
	struct guard *g = t->data;
	char err[512];
	if (g->stopping) {
		return;
	}
	if (!g->watching) {
		/* Only future changes: the members are read below, after the watch started. */
		struct kv_bytes key = {(const uint8_t *)SYS_MEMBER_PREFIX,
		                       strlen(SYS_MEMBER_PREFIX)};
		g->watch.data = g;
		if (store_watch_start(g->a->store, &g->watch, KV_SPACE_SYS, key, true, 0,
		                      watch_cb) == STORE_OK) {
			g->watching = true;
		} else {
			schedule(g, RETRY_FIRST_MS); /* a member change would go unseen till then */
		}
	}
	struct guard_port *v = NULL;
	unsigned n = 0;
	struct members_read mr;
	int rv = read_ports(g, &v, &n, &mr);
	if (rv != 0) {
		retry(g, rv == -ENOMEM ? "out of memory reading the members"
		                       : "cannot read the members from the local replica");
		return;
	}
	if (mr.members == 0) {
		/* Not one record yet (the first member before its own is applied): a table for
		 * nobody would open the ports a table left by an earlier start still guards. The
		 * watch brings the first record. */
		free(v);
		schedule(g, RETRY_FIRST_MS);
		return;
	}
	json_t *cmds = guard_commands(v, n, AGENT_IFACE_PREFIX);
	free(v);
	char *text = cmds ? json_dumps(cmds, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	if (text == NULL) {
		json_decref(cmds);
		retry(g, "out of memory building the table");
		return;
	}
	if (!g->full && g->loaded != NULL && strcmp(g->loaded, text) == 0) {
		free(text);
		json_decref(cmds);
		return;
	}
	rv = agent_nft_apply(g->nft, cmds, err, sizeof err);
	json_decref(cmds);
	if (rv != 0) {
		free(text);
		char what[700];
		snprintf(what, sizeof what, "the kernel refused table inet %s: %s", GUARD_TABLE,
		         err);
		retry(g, what);
		return;
	}
	bool changed = g->loaded == NULL || strcmp(g->loaded, text) != 0;
	free(g->loaded);
	g->loaded = text;
	g->full = false;
	g->retry_ms = 0;
	free(g->problem);
	g->problem = NULL;
	g->a->guard_ports = n;
	if (changed) {
		agent_log(
		    "guard: containers on this host are refused the peer and API ports of the "
		    "%u members (%u address:port pairs, table inet %s)",
		    mr.members, n, GUARD_TABLE);
		if (mr.unparsable > 0) {
			agent_log("guard: %u member addresses are not IP:PORT and are not guarded, "
			          "%s among them",
			          mr.unparsable, mr.first_unparsable);
		}
	}
}

static void refresh_cb(uv_timer_t *t)
{
	struct guard *g = t->data;
	g->full = true;
	schedule(g, 0);
}

static void watch_cb(struct store_watch *w, const struct kv_event *ev, int status)
{
	struct guard *g = w->data;
	if (ev == NULL) {
		g->watching = false; /* started again, and the members read again, by the load */
		if (status == STORE_ESHUTDOWN) {
			return;
		}
	}
	schedule(g, 0);
}

int guard_start(struct agent *a)
{
	char err[512];
	struct agent_nft *nft = NULL;
	if (agent_nft_new(&nft) != 0) {
		return -ENOMEM;
	}
	if (a->workloads_reach_agents) {
		/* Ours, from an earlier start with the guard on: gone, as the flag asks. */
		if (agent_nft_delete_table(nft, GUARD_TABLE, err, sizeof err) != 0) {
			agent_log("guard: cannot delete table inet %s: %s", GUARD_TABLE, err);
		}
		agent_nft_free(nft);
		agent_log("guard: off (--workloads-reach-agents): containers on this host can "
		          "connect to the members' peer and API ports");
		return 0;
	}
	struct guard *g = calloc(1, sizeof *g);
	if (g == NULL) {
		agent_nft_free(nft);
		return -ENOMEM;
	}
	g->a = a;
	g->nft = nft;
	g->full = true;
	uv_timer_init(a->loop, &g->timer);
	uv_timer_init(a->loop, &g->refresh);
	g->timer.data = g->refresh.data = g;
	uv_timer_start(&g->refresh, refresh_cb, REFRESH_MS, REFRESH_MS);
	a->guard = g;
	schedule(g, 0);
	return 0;
}

void guard_stop(struct agent *a)
{
	struct guard *g = a->guard;
	if (g == NULL) {
		return;
	}
	g->stopping = true;
	if (g->watching) {
		store_watch_stop(a->store, &g->watch);
		g->watching = false;
	}
	uv_close((uv_handle_t *)&g->timer, NULL);
	uv_close((uv_handle_t *)&g->refresh, NULL);
}

void guard_free(struct agent *a)
{
	struct guard *g = a->guard;
	if (g == NULL) {
		return;
	}
	agent_nft_free(g->nft);
	free(g->loaded);
	free(g->problem);
	free(g);
	a->guard = NULL;
}
