/*
 * Prometheus text exposition for /metrics.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <raft.h>

#include "agent/internal.h"

struct buf {
	char *data;
	size_t len, cap;
	bool failed;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct buf *b, const char *fmt, ...)
{
	for (int attempt = 0; attempt < 2 && !b->failed; attempt++) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->data ? b->data + b->len : NULL, b->data ? b->cap - b->len : 0,
		                  fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = true;
			return;
		}
		if (b->data != NULL && (size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = (b->cap + (size_t)n + 1) * 2;
		char *d = realloc(b->data, cap);
		if (d == NULL) {
			b->failed = true;
			return;
		}
		b->data = d;
		b->cap = cap;
	}
}

static void gauge(struct buf *b, const char *name, const char *help, double v)
{
	put(b, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name, v);
}

static void counter(struct buf *b, const char *name, const char *help, double v)
{
	put(b, "# HELP %s %s\n# TYPE %s counter\n%s %.17g\n", name, help, name, name, v);
}

/* A label value as the exposition format wants it: backslash, quote and newline escaped. */
static void put_label(struct buf *b, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '\\' || *v == '"') {
			put(b, "\\%c", *v);
		} else if (*v == '\n') {
			put(b, "\\n");
		} else {
			put(b, "%c", *v);
		}
	}
}

/* On the leader only: how far each member it replicates to trails. Alert on behind_seconds; a
 * healthy member stays at 0 (it is sampled every half second). silent_seconds grows for a member
 * that is gone even when nothing is written; a live one answers every tenth of a second. */
static void replication(struct buf *b, struct agent *a)
{
	struct store_progress *ps = NULL;
	unsigned n = 0;
	struct member_rec *ms = NULL;
	unsigned nm = 0;
	if (store_replication(a->store, &ps, &n) != STORE_OK) {
		return;
	}
	if (agent_members(a, &ms, &nm) != STORE_OK) {
		ms = NULL;
		nm = 0;
	}
	static const struct {
		const char *name, *help;
	} series[] = {
	    {"tabby_raft_member_behind_seconds",
	     "Leader only: how long a member has lacked entries the leader committed."},
	    {"tabby_raft_member_match_index",
	     "Leader only: the highest log index a member has stored."},
	    {"tabby_raft_member_silent_seconds",
	     "Leader only: how long since a member last answered the leader."},
	};
	for (size_t k = 0; k < sizeof series / sizeof series[0]; k++) {
		put(b, "# HELP %s %s\n# TYPE %s gauge\n", series[k].name, series[k].help,
		    series[k].name);
		for (unsigned i = 0; i < n; i++) {
			const char *name = NULL;
			for (unsigned j = 0; j < nm; j++) {
				if (ms[j].id == ps[i].id) {
					name = ms[j].name;
				}
			}
			put(b, "%s{member_id=\"%llu\",member=\"", series[k].name,
			    (unsigned long long)ps[i].id);
			put_label(b, name != NULL ? name : "");
			if (k == 0) {
				put(b, "\"} %.3f\n", (double)ps[i].behind_ms / 1000);
			} else if (k == 2) {
				put(b, "\"} %.3f\n", (double)ps[i].silent_ms / 1000);
			} else {
				put(b, "\"} %llu\n", (unsigned long long)ps[i].match_index);
			}
		}
	}
	free(ms);
	free(ps);
}

char *agent_metrics_text(struct agent *a, size_t *len)
{
	struct buf b = {0};
	struct store_status st;
	struct store_latency lat;
	store_get_status(a->store, &st);
	store_get_latency(a->store, &lat);

	gauge(&b, "tabby_raft_term", "Current raft term.", (double)st.term);
	put(&b, "# HELP tabby_raft_role Raft state of this member (1 for the current one).\n"
	        "# TYPE tabby_raft_role gauge\n");
	static const struct {
		int state;
		const char *name;
	} roles[] = {{RAFT_LEADER, "leader"},
	             {RAFT_FOLLOWER, "follower"},
	             {RAFT_CANDIDATE, "candidate"},
	             {RAFT_UNAVAILABLE, "unavailable"}};
	for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
		put(&b, "tabby_raft_role{role=\"%s\"} %d\n", roles[i].name,
		    st.state == roles[i].state);
	}
	gauge(&b, "tabby_raft_leader_ready",
	      "1 when this member leads and its election barrier is applied.", st.ready);
	gauge(&b, "tabby_raft_commit_index", "Raft commit index known to this member.",
	      (double)st.commit_index);
	gauge(&b, "tabby_raft_applied_index", "Raft index applied to the local state machine.",
	      (double)st.applied_index);
	gauge(&b, "tabby_store_revision", "Store revision of the local replica.",
	      (double)st.revision);
	gauge(&b, "tabby_store_compact_revision", "Oldest revision a watch may start from.",
	      (double)st.compact_revision);
	counter(&b, "tabby_store_entries_applied_total", "Raft entries (batches) applied.",
	        (double)st.entries_applied);
	counter(&b, "tabby_store_commands_applied_total", "Store commands applied.",
	        (double)st.commands_applied);
	counter(&b, "tabby_raft_snapshots_total", "Snapshots taken by this member.",
	        (double)st.snapshots_taken);
	counter(&b, "tabby_raft_snapshots_restored_total",
	        "Snapshots restored into the state machine (installed by the leader or loaded at "
	        "start).",
	        (double)st.snapshots_restored);
	counter(&b, "tabby_raft_snapshots_damaged_total",
	        "Snapshots of this member found damaged on its disk when loaded to be sent to a "
	        "follower; each was not sent, and a new one was taken in its place (see the log).",
	        (double)st.snapshots_damaged);
	counter(&b, "tabby_raft_refused_connections_total",
	        "Raft connections refused because they came from another cluster's member, or "
	        "carried no cluster id (see the log).",
	        (double)st.refused_connections);

	gauge(&b, "tabby_store_disk_full",
	      "1 while this member is short of disk space for its state or its raft log (see "
	      "the log).",
	      st.space_err != 0);
	gauge(&b, "tabby_raft_log_write_failing",
	      "1 while raft cannot write this member's log to its disk (see the log).",
	      st.disk_error[0] != '\0');
	replication(&b, a);

	put(&b, "# HELP tabby_apply_latency_seconds From proposal to local apply, for commands "
	        "this member proposed.\n# TYPE tabby_apply_latency_seconds histogram\n");
	for (int i = 0; i < STORE_LATENCY_BUCKETS; i++) {
		if (i == STORE_LATENCY_BUCKETS - 1) {
			put(&b, "tabby_apply_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
			    (unsigned long long)lat.total);
		} else {
			put(&b, "tabby_apply_latency_seconds_bucket{le=\"%g\"} %llu\n",
			    lat.le_us[i] / 1e6, (unsigned long long)lat.count[i]);
		}
	}
	put(&b, "tabby_apply_latency_seconds_sum %.9g\n", lat.sum_us / 1e6);
	put(&b, "tabby_apply_latency_seconds_count %llu\n", (unsigned long long)lat.total);

	put(&b, "# HELP tabby_http_requests_total HTTP responses by status class.\n"
	        "# TYPE tabby_http_requests_total counter\n");
	for (int k = 1; k <= 5; k++) {
		put(&b, "tabby_http_requests_total{code=\"%dxx\"} %llu\n", k,
		    (unsigned long long)a->requests_by_class[k]);
	}
	counter(&b, "tabby_ipam_leaks_released_total",
	        "Handles whose leaked addresses the leak reconciler released (containers gone).",
	        (double)a->leaks_released);
	counter(&b, "tabby_policy_flushes_total",
	        "Ruleset transactions the policy dataplane loaded into the kernel.",
	        (double)a->policy_flushes);
	gauge(&b, "tabby_policy_last_flush_seconds",
	      "Compile and load time of the last ruleset transaction.",
	      (double)a->policy_last_flush_us / 1e6);
	counter(&b, "tabby_event_loop_stalls_total",
	        "Times the agent's event loop did not run for a second or more (a hung disk under "
	        "the data directory, usually); the agent logs each.",
	        (double)a->loop_stalls);
	gauge(&b, "tabby_event_loop_longest_stall_seconds",
	      "The longest time the agent's event loop did not run, since it started.",
	      (double)a->loop_longest_stall_ms / 1e3);
	counter(&b, "tabby_netsync_syncs_total",
	        "Times the route dataplane brought the kernel's routes, tunnels and NAT in line.",
	        (double)a->netsync_syncs);
	counter(&b, "tabby_netsync_recomputes_total",
	        "Times the route dataplane calculated the routes this host wants, after a change "
	        "that can alter them.",
	        (double)a->netsync_recomputes);
	gauge(&b, "tabby_netsync_last_sync_seconds",
	      "Time the route dataplane's last reconcile took, in seconds.",
	      (double)a->netsync_last_sync_us / 1e6);
	counter(&b, "tabby_http_slow_clients_dropped_total",
	        "Connections closed because the client left more than 8 MiB of answers unread (a "
	        "watch that stopped reading); the client must watch again from its last revision.",
	        (double)http_server_slow_drops(a->http));
	gauge(&b, "tabby_guard_ports",
	      "Member address:port pairs (peer and API) that containers on this host are refused; "
	      "0 with --workloads-reach-agents.",
	      (double)a->guard_ports);
	counter(&b, "tabby_cni_adds_total", "CNI ADDs answered with success.", (double)a->cni_adds);
	counter(&b, "tabby_cni_add_failures_total",
	        "CNI ADDs that failed (refused, or the wiring failed and was undone).",
	        (double)a->cni_add_failures);
	counter(&b, "tabby_cni_dels_total", "CNI DELs answered with success.", (double)a->cni_dels);
	if (b.failed) {
		free(b.data);
		return NULL;
	}
	*len = b.len;
	return b.data;
}
