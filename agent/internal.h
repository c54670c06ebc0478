/*
 * Private to the agent: the daemon's state shared by main.c, routes.c and metrics.c.
 */
#ifndef TABBY_AGENT_INTERNAL_H
#define TABBY_AGENT_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "agent/http.h"
#include "store/store.h"

#define AGENT_MAX_BODY (4u << 20)
/* /v1/internal/forward carries a follower's batch of encoded commands, which the store keeps
 * within 4 MiB unless one command alone is bigger: a PUT whose value nearly fills
 * AGENT_MAX_BODY, plus its key (KV_KEY_MAX) and the encodings' headers. */
#define AGENT_MAX_FORWARD_BODY (AGENT_MAX_BODY + (64u << 10))

/* SYS keyspace layout. */
#define SYS_MEMBER_PREFIX "members/"
/* The host end of every veth the CNI plugin makes is named this and more (cni_state.c). */
#define AGENT_IFACE_PREFIX "cali"
#define SYS_ID_PREFIX      "ids/"
#define SYS_TOKEN_KEY      "join-token"

/* Member-to-member requests name the sender's cluster in this header (main.c). */
#define CLUSTER_HEADER "Tabby-Cluster"

struct member_rec {
	char name[128];
	uint64_t id;
	char peer_address[64];
	char api_address[64];
};

struct leaks;

struct agent {
	uv_loop_t *loop;
	char *name;
	char *data_dir;
	char *socket_path;
	char *peer_address;
	char *api_address;
	uint64_t id;
	bool bootstrap_pending; /* write the first member record and token once leader */
	bool token_published;   /* DATA_DIR/join-token written and the token printed */
	bool token_check; /* restarted first member: repair a bootstrap cut short (reconcile) */
	char token[65];
	/* This member's cluster (node.json "cluster"), carried by every raft connection and
	 * member-to-member request so that members of another cluster on the same addresses are
	 * refused (store/fence.h). cluster_hex is "" and the id all zero for a member whose data
	 * predates cluster ids. */
	uint8_t cluster_id[STORE_CLUSTER_ID_LEN];
	char cluster_hex[2 * STORE_CLUSTER_ID_LEN + 1];
	/* The cluster this member left when it was recovered from a lost quorum
	 * (--force-new-cluster), as node.json records it: "" if never, "none" for one without an
	 * id. A later start given the same flag finds it here and does not recover again. */
	char recovered_from[2 * STORE_CLUSTER_ID_LEN + 1];
	/* The backup this member was restored from (--restore), as node.json records it: the
	 * backup's cluster and revision; restored is false if never. A later start given a
	 * --restore of the same backup finds it here and does not restore again (restore.c). */
	bool restored;
	char restored_cluster[2 * STORE_CLUSTER_ID_LEN + 1];
	int64_t restored_revision;
	uint64_t stranger_logged;      /* when a refused raft connection was last logged */
	unsigned strangers_quiet;      /* refused since then without a line */
	uint64_t foreign_probe_logged; /* when a removal probe last met another cluster */

	struct store *store;
	bool backup_running; /* a GET /v1/backup is being answered (routes_backup.c) */
	struct http_server *http;
	struct http_client *client;
	uv_signal_t sigint, sigterm;
	uv_timer_t reconcile;
	bool change_inflight;
	uint64_t change_id; /* the member the change in flight adds or re-assigns; 0: other */
	/* Members whose addition or promotion failed, and when to try again: one that never
	 * catches up (its host died after the join) must not hold up every later change. */
	struct change_backoff {
		uint64_t id, retry_at;
		unsigned failures;
	} backoff[8];
	uint64_t replace_voter_ms; /* --replace-voter-after; 0: never (roles.h) */
	uint64_t online_ms;        /* a member that answered this recently answers (roles.h) */
	bool stopping;
	/* A leader told to stop first hands leadership to an answering voter (on_signal in
	 * main.c), so that writes pause for one election round instead of an election timeout. */
	bool handing_over;
	uv_timer_t handover_timer;
	bool seen_own_record; /* this member's record has been in the local replica */
	/* Configuration entries whose record is gone, and since when: each waits out the grace
	 * period before it goes (reconcile in main.c). */
	struct removal_wait {
		uint64_t id, since;
	} removing[8];
	uint64_t hold_logged;       /* when a held removal was last logged */
	uint64_t record_gone_since; /* when this member saw its own record deleted */
	bool removal_wait_logged;
	/* A member removed while it was down never hears of it (see probe_removal in main.c). */
	uint64_t leaderless_since, probe_at;
	unsigned probe_next;
	bool probe_inflight;
	int exit_code;
	int lock_fd; /* DATA_DIR/agent.lock, held with flock() while the agent runs; -1 before */

	uint64_t requests_by_class[6]; /* 1xx..5xx responses, index status/100 */
	uint64_t started_ms;

	/* IPAM */
	bool no_default_pools;  /* --no-default-pools */
	bool ipam_init_pending; /* propose IPAM_REQ_INIT_DEFAULTS (the bootstrapping member) */
	bool ipam_init_inflight;
	uint64_t leak_grace_ms;  /* --leak-grace */
	struct leaks *leaks;     /* leaks.c */
	uint64_t leaks_released; /* releases by the leak reconciler, for /metrics */

	/* Policy dataplane (policy_sync.c) */
	bool no_policy;             /* --no-policy */
	struct policy_sync *policy; /* NULL with --no-policy */
	uint64_t policy_flushes;    /* for /metrics */
	uint64_t policy_last_flush_us;

	/* Host dataplane outside policy (netsync.c) */
	bool no_routes;              /* --no-routes: the agent programs no routes, tunnels or NAT */
	struct netsync *netsync;     /* NULL with --no-routes */
	uint64_t netsync_syncs;      /* for /metrics */
	uint64_t netsync_recomputes; /* for /metrics */
	uint64_t netsync_last_sync_us;

	/* The control plane guard (guard_sync.c) */
	bool workloads_reach_agents; /* --workloads-reach-agents: no guard */
	struct guard *guard;         /* NULL with the flag */
	unsigned guard_ports;        /* address:port pairs refused to workloads, for /metrics */

	/* This host's node resource (node.c) */
	char *node_ip4, *node_ip6; /* --node-ip, --node-ip6: "ADDR/PREFIX", NULL to detect */
	struct node_pub *nodepub;

	/* The dataplane managers start once the replica caught up (main.c) */
	uv_timer_t dataplane_timer;
	bool dataplane_sync_inflight;
	bool dataplane_started;
	bool dataplane_waiting_logged;

	/* CNI (routes_cni.c): the stale interface sweep, and counters for /metrics */
	uv_timer_t cni_gc_timer;
	bool cni_gc_started;
	uint64_t cni_adds, cni_add_failures, cni_dels;
	/* ADDs whose interfaces were made before their record existed (routes_cni.c): the sweep
	 * leaves these names alone */
	struct cctx *cni_preparing;

	/* Conntrack flushes (routes_cni.c): addresses waiting for the next flush, while at most
	 * one runs, and none while a CNI DEL removes an interface (until the oldest address has
	 * waited CT_DEFER_MAX_MS) */
	struct ipam_addr *ct_pending;
	unsigned ct_n, ct_cap;
	bool ct_running;
	uint64_t ct_since;      /* uv_now() when the oldest waiting address came */
	unsigned unwiring;      /* CNI interface removals on the worker threads now */
	unsigned wiring;        /* CNI ADD wirings on the worker threads now (netsync waits) */
	bool ct_listing_logged; /* said once that this kernel cannot filter a flush */

	/* Link removals announced in this host's namespace (linkwatch.c); NULL without */
	struct linkwatch *linkwatch;

	/* The event loop's watchdog (loopwatch.c); NULL without. Stalls of a second or more,
	 * counted on the loop thread when it runs again, for /metrics. */
	struct loopwatch *loopwatch;
	uint64_t loop_stalls;
	uint64_t loop_longest_stall_ms;
};

/* Log a line to stderr with a timestamp; safe from any thread (a line is never interleaved
 * with another). */
void agent_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Members from the SYS keyspace of the local replica. *out is malloc()ed. */
int agent_members(struct agent *a, struct member_rec **out, unsigned *n);
/* The member record with this raft id, or false. */
bool agent_member_by_id(struct agent *a, uint64_t id, struct member_rec *out);
/* The member record with this raft id (name NULL) or this name: 1 and *out, 0 when there is
 * none, -1 when the member list cannot be read. */
int agent_member_find(struct agent *a, uint64_t id, const char *name, struct member_rec *out);

/* On the leader: every member with a record or in raft's configuration as roles.c sees it, and
 * the policy the reconciler applies. *out is malloc()ed, owned by the caller. STORE_ENOTLEADER
 * elsewhere. */
struct roles_member;
struct roles_policy;
int agent_roles_view(struct agent *a, struct roles_member **out, unsigned *n,
                     struct roles_policy *policy);
/* On the leader: the voter to hand the lead to, of those other than this one that answered
 * within online_ms the one that has stored the most of the log (elected soonest, least to
 * catch up); 0 when none answers or this member does not lead. */
uint64_t agent_pick_successor(struct agent *a);
/* Whether name may name a member: 1 to AGENT_MEMBER_NAME_MAX bytes of UTF-8, no '/' and no
 * control character. */
#define AGENT_MEMBER_NAME_MAX 100
bool agent_member_name_ok(const char *name);

/* Whether GIVEN is the join token this replica holds: 1 yes, 0 no, -1 this replica cannot tell
 * (it holds no token record yet: the cluster is starting or this replica has not caught up; or
 * the read failed). Compares in time independent of where the first difference is. */
int agent_token_matches(struct agent *a, const char *given);

/* Parse a cluster id: 2 * STORE_CLUSTER_ID_LEN lowercase hex digits. */
bool agent_cluster_parse(const char *hex, uint8_t out[STORE_CLUSTER_ID_LEN]);

/* Whether a cluster id as another member gave it (NULL or "" when it gave none: data from
 * before cluster ids) is this member's. */
bool agent_cluster_is_ours(const struct agent *a, const char *hex);

/* The JSON form of a member record (malloc()ed). */
char *member_json(const struct member_rec *m);
/* The member records among kvs (a range of SYS_MEMBER_PREFIX), which it frees; a record that
 * does not parse is left out. *out is malloc()ed. 0, or -1 without memory. */
int agent_members_parse(struct kv_kv *kvs, unsigned nk, struct member_rec **out, unsigned *n);
/* *why = the formatted message, malloc()ed (NULL without memory). */
void agent_set_why(char **why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Identity (main.c): a fresh random cluster id for this member (0 or -errno), and node.json
 * written from the agent's fields (0 or -errno). */
int agent_new_cluster_id(struct agent *a);
int agent_save_identity(struct agent *a);

/* --restore FILE (restore.c). agent_restore() makes this member's empty data directory from the
 * backup: this member's identity from the backup's record of the member named a->name (its id;
 * its addresses unless given, and given ones replace them in the record), a new cluster id,
 * node.json, and raft state whose snapshot is the backup's state with this member as the only
 * voter. agent_restore_again() is for a data directory that already holds state: 0 when it was
 * restored from this same backup at an earlier start (the flag was left behind), -1 otherwise.
 * Both return -1 with *why (malloc()ed) saying what is wrong, having changed nothing that a
 * later attempt trips over. */
int agent_restore(struct agent *a, const char *file, bool peer_given, bool api_given, char **why);
int agent_restore_again(struct agent *a, const char *file, char **why);

/* HTTP entry point (routes.c). */
void agent_route(struct http_server *srv, struct http_request *req);

/* Respond with a JSON value (steals it) / a JSON error. */
void agent_reply_json(struct agent *a, struct http_request *req, int status, json_t *body);
void agent_reply_error(struct agent *a, struct http_request *req, int status, const char *code,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The query parameter consistency ("serializable" or "linearizable") into *linearizable, left as
 * it is when absent. Returns 0, or -1 after answering 400 for another value. */
int agent_query_consistency(struct agent *a, struct http_request *req, bool *linearizable);
/* Respond with a body as it is (copied), counted as the JSON replies are. */
void agent_reply_raw(struct agent *a, struct http_request *req, int status,
                     const char *content_type, const void *body, size_t len);

/* The HTTP status of a domain command's refusal code: invalid 400, not_found 404, internal 500,
 * anything else (conflict, exists, in_use, exhausted, ...) 409. */
int agent_status_of(const char *code);

/* Answer a store failure (STORE_E*) with its HTTP status and code; prefix (may be NULL) says what
 * was being done. */
void agent_reply_store_error(struct agent *a, struct http_request *req, int status,
                             const char *prefix);

/* GET /v1/backup (routes_backup.c): answers and returns true when the path is its own. */
bool agent_route_backup(struct agent *a, struct http_request *req);

/* The IPAM paths (routes_ipam.c): /v1/ippools, /v1/ippools/..., /v1/ipam/.... */
void agent_route_ipam(struct agent *a, struct http_request *req);

/* The v1 resource paths and the policy trace (routes_policy.c): answers and returns true when
 * req is one of them. */
bool agent_route_policy(struct agent *a, struct http_request *req);

/* The CNI plugin's paths /v1/cni/{add,del,check} (routes_cni.c): answers and returns true when
 * req is one of them. */
bool agent_route_cni(struct agent *a, struct http_request *req);

/* The sweep of stale container interfaces (routes_cni.c): host ends with Tabby's alias whose
 * CNI record is gone are removed, at once and every 90 s. Started with the dataplane; stop
 * closes its timer. */
void agent_cni_gc_start(struct agent *a);
void agent_cni_gc_stop(struct agent *a);

/* Delete the conntrack entries of a removed workload address on a worker thread (routes_cni.c);
 * the outcome is logged. Addresses that come while a flush runs wait for the next one, which
 * takes them all. agent_flush_conntrack_free releases what still waits (at exit). */
struct ipam_addr;
void agent_flush_conntrack(struct agent *a, const struct ipam_addr *addr);
void agent_flush_conntrack_free(struct agent *a);

/* Second half of DELETE /v1/cluster/members/NAME, after the member record's deletion (which
 * deleted it if member_deleted): release the node's addresses and block affinities and answer
 * {"removed", "released"}; without a record and without IPAM state for the node, a 404. */
void agent_ipam_remove_node(struct agent *a, struct http_request *req, const char *name,
                            bool member_deleted);

/* A wait for the kernel to announce (RTM_DELLINK) the removal of the link named name whose alias
 * is alias (NULL: one without an alias), in this host's network namespace (linkwatch.c). The
 * caller owns the struct and keeps it alive until cb runs or it cancels the wait. */
struct link_gone {
	char name[16];
	const char *alias;
	void (*cb)(struct link_gone *g);
	void *data;
	struct link_gone *next; /* private */
};
/* linkwatch_start() opens the watch of this namespace's link announcements, which listens only
 * while a wait is registered, and sets a->linkwatch (returns 0, -ENOMEM or -EIO; the agent runs
 * without, and every wait is then refused);
 * linkwatch_stop() closes it and drops the waits left, whose callbacks never run. */
int linkwatch_start(struct agent *a);
void linkwatch_stop(struct agent *a);
/* Registers g; cb runs once, on the loop thread, when the announcement comes. Returns false
 * (cb will never run) when no watch runs, g->name is empty or the kernel refused to let the watch
 * listen. Register before the removal starts: an announcement that came before is not
 * remembered. */
bool linkwatch_wait(struct agent *a, struct link_gone *g);
/* Takes g off the list if it is still there (its cb then never runs). */
void linkwatch_cancel(struct agent *a, struct link_gone *g);

/* The event loop's watchdog (loopwatch.c). loopwatch_start(), on the loop thread, starts a
 * thread that logs what the loop thread is doing in the kernel once the loop has not run for a
 * second, and a timer that logs how long such a stall lasted when it ends (and counts it in
 * a->loop_stalls); returns 0, or -ENOMEM / a negative errno from pthread_create (the agent runs
 * without). loopwatch_stop() ends the thread and closes the timer (freed once the loop ran the
 * close). */
int loopwatch_start(struct agent *a);
void loopwatch_stop(struct agent *a);

/* The leak reconciler (leaks.c). leaks_start() sets a->leaks and starts its timer on a->loop
 * (returns 0 or -ENOMEM); leaks_stop() closes the timer; leaks_free() frees it, after the loop
 * ran the close and the store answered every release (store_close). */
int leaks_start(struct agent *a);
void leaks_stop(struct agent *a);
void leaks_free(struct agent *a);
/* fn(arg, line) for each of this host's CNI handles whose namespaces are gone, read through tx.
 * Returns 0 or what the IPAM queries return. */
int leaks_report(struct agent *a, struct kv_tx *tx, void (*fn)(void *arg, const char *line),
                 void *arg);
/* Whether path is definitely not a network namespace this agent can see (nothing there, or not
 * a namespace), by the test the reconciler releases on. */
bool leaks_netns_gone(const char *path);

/* Whether s is IP:PORT (IPv6 as [ADDR]:PORT, when ipv6_ok) with a port and a specified address:
 * an address other hosts can reach a member at. */
bool agent_address_ok(const char *s, bool ipv6_ok);

/* The request body as a JSON object, or NULL after answering 400 with code (and the reason). */
json_t *agent_parse_body(struct agent *a, struct http_request *req, const char *code);

/* The policy dataplane (policy_sync.c): policy_sync_start() sets a->policy and schedules the
 * first full load of this host's nftables table (returns 0, -ENOMEM, or -ENOMEM when libnftables
 * cannot open its context); policy_sync_stop() stops the watch and closes the timer;
 * policy_sync_free() frees it after the loop ran the close. */
int policy_sync_start(struct agent *a);
void policy_sync_stop(struct agent *a);
void policy_sync_free(struct agent *a);

/* A wait for the policy dataplane to hold a revision (policy_sync.c). The caller owns the struct
 * and keeps it alive until cb runs, exactly once: applied is true once a flush took every
 * resource change up to rev into the kernel, false when timeout_ms passed first or the agent is
 * stopping. Without a policy dataplane (--no-policy) cb runs at once, inside the call. */
struct policy_wait {
	int64_t rev;
	uint64_t deadline; /* uv_now() */
	void (*cb)(struct policy_wait *w, bool applied);
	void *data;
	struct policy_wait *next; /* private */
};
void policy_sync_wait(struct agent *a, struct policy_wait *w, int64_t rev, unsigned timeout_ms,
                      void (*cb)(struct policy_wait *w, bool applied));

/* The host dataplane outside policy (netsync.c): routes to other hosts' blocks, a blackhole per
 * local block, /32 (/128) routes for borrowed addresses and for local workloads, IP-in-IP and
 * VXLAN tunnels, NAT outgoing, and conntrack flushes for removed local workload addresses; see
 * the comment at the top of netsync.c. netsync_start() sets a->netsync and schedules the first
 * full reconcile (returns 0 or -ENOMEM); netsync_kick() asks for a reconcile soon (a local veth
 * appeared or went); netsync_stop() stops watches and timers; netsync_free() frees it after the
 * loop ran the closes. */
int netsync_start(struct agent *a);
void netsync_kick(struct agent *a);
void netsync_stop(struct agent *a);
void netsync_free(struct agent *a);

/* The control plane guard (guard_sync.c, guard.h): a table that refuses TCP from this host's
 * workloads to every member's peer and API port. guard_start() sets a->guard and schedules the
 * first load, or with --workloads-reach-agents deletes the table and sets nothing (returns 0 or
 * -ENOMEM, also when libnftables cannot open its context); guard_stop() stops the watch and
 * closes the timers, leaving the table in the kernel; guard_free() frees it after the loop ran
 * the closes. */
int guard_start(struct agent *a);
void guard_stop(struct agent *a);
void guard_free(struct agent *a);

/* Publishing this host's node resource (node.c): node_publish_start() sets a->nodepub and starts
 * trying (returns 0 or -ENOMEM); node_publish_stop() closes its timer; node_publish_free() frees
 * it after the store answered every write (store_close). agent_node_ip_canonical() checks a flag
 * value, "ADDR/PREFIX" of family AF_INET or AF_INET6, and writes its canonical form to out. */
int node_publish_start(struct agent *a);
void node_publish_stop(struct agent *a);
void node_publish_free(struct agent *a);
bool agent_node_ip_canonical(const char *s, int family, char *out, size_t len);

/* Prometheus text for /metrics (metrics.c); malloc()ed. */
char *agent_metrics_text(struct agent *a, size_t *len);

/* Forward / read-index hooks (main.c). */
void agent_kick_reconcile(struct agent *a);

#endif
