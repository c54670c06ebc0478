/*
 * The replicated store: canonical/raft (libuv I/O backend) owns the log, an LMDB state machine
 * (kv.h) applies it. One struct store per agent, driven by the agent's libuv loop.
 *
 * Writes. store_write() takes one command. The store gives it a request id, queues it, and on the
 * leader batches every queued command into one raft entry per loop iteration (a few entries in
 * flight at most), so that under load one raft append and one LMDB transaction carry many
 * commands. On a follower the queued commands go to the leader in one forwarded batch through the
 * agent's forward hook. Either way the caller is answered when its OWN replica applies the
 * command (read-your-writes on the host that asked), with the state machine's result. A command
 * whose outcome is unknown (leadership lost, forward failed) is sent again with the same request
 * id; the state machine applies an id at most once.
 *
 * Leadership. A node that becomes leader appends a barrier and serves no write or linearizable
 * read until that barrier is applied: only then does its state machine hold every entry a
 * previous leader may have committed.
 */
#ifndef TABBY_STORE_STORE_H
#define TABBY_STORE_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "store/kv.h"

struct store;

/* Intrusive list link used by the private parts of requests. */
struct store_list {
	struct store_list *prev, *next;
};

/* Errors (negative values are -errno / uv errors). */
enum {
	STORE_OK = 0,
	STORE_ENOLEADER = 1, /* no leader is known, or the forward to it failed for too long */
	STORE_ETIMEDOUT = 2, /* the command may or may not have been applied */
	STORE_ESHUTDOWN = 3, /* the store is closing */
	STORE_ENOMEM = 4,
	STORE_EINVAL = 5,
	STORE_EIO = 6,        /* raft or LMDB failed on this host */
	STORE_ECOMPACTED = 7, /* watch: the start revision is older than the history */
	STORE_ENOTLEADER = 8, /* a forwarded batch reached a node that is not the ready leader */
	STORE_ENOSPC = 9,     /* the leader's disk has no room for more state (see space hook) */
	STORE_EDISK = 10,     /* the leader cannot write its raft log (see space hook) */
	STORE_ECHANGE =
	    11, /* a membership change did not complete (a new member never caught up) */
};

const char *store_strerror(int code);

/* ------------------------------------------------------------------------------------------ */
/* Forwarding hook, implemented by the agent (HTTP to the leader's API address).               */

typedef void (*store_forward_done)(void *done_data, int status);

/* Send an encoded batch (kv_join_batch format, time_ms 0) to the member with raft id leader_id,
 * whose record in the SYS keyspace gives its API address. done(done_data, 0) when the leader
 * accepted and committed it; done(done_data, STORE_ENOTLEADER / STORE_ENOLEADER / ...) otherwise:
 * the store sends the writes again, except after STORE_ENOSPC, STORE_EDISK and STORE_EINVAL (the
 * leader refused the batch itself), which end them with that status.
 * buf is owned by the store and valid until done is called. Returns 0 when done will be called,
 * never from within this call; non-zero when the send could not start (no address for the
 * leader, no memory), and then done is never called and the store tries again later. */
typedef int (*store_forward_fn)(void *data, uint64_t leader_id, const void *buf, size_t len,
                                store_forward_done done, void *done_data);

/* Ask the leader for a read index (the raft index a linearizable read must wait for). done gets
 * the index or a negative STORE_ error. Returns as the forward hook does. */
typedef void (*store_readindex_done)(void *done_data, int status, uint64_t index);
typedef int (*store_readindex_fn)(void *data, uint64_t leader_id, store_readindex_done done,
                                  void *done_data);

#define STORE_CLUSTER_ID_LEN 16

struct store_config {
	uint64_t id;                   /* this node's raft id (1 for the bootstrapping node) */
	const char *data_dir;          /* raft/ and state/ live below it */
	const char *peer_address;      /* raft transport: listen and advertise, "IP:PORT" */
	unsigned election_timeout_ms;  /* 0: 1000 */
	unsigned heartbeat_timeout_ms; /* 0: 100 */
	unsigned snapshot_threshold;   /* 0: 16384 entries */
	unsigned snapshot_trailing;    /* 0: the threshold and a quarter (node.c) */
	int64_t history;               /* 0: kv default */
	unsigned write_timeout_ms;     /* 0: 15000 */
	/* Raft connections carry it, and one from a member with another is refused (store/fence.h
	 * says why). All zero for a member whose data predates cluster ids. */
	uint8_t cluster_id[STORE_CLUSTER_ID_LEN];
	store_forward_fn forward;
	store_readindex_fn readindex;
	/* The host failed in a way that makes this replica unable to continue without diverging
	 * (LMDB write failure, out of memory while applying, a snapshot from the leader that
	 * cannot be restored). The agent logs and exits. */
	void (*fatal)(void *data, const char *msg);
	/* This member is short of disk space (err: ENOSPC, EDQUOT, ...), or no longer (err 0).
	 * what says what is short and where ("cannot reserve space for the state in DIR", "N MiB
	 * free for the raft log in DIR, which needs M MiB"); with err 0 it is the data directory.
	 * disk: the trouble is not free space but raft's log writes failing ("the raft log in DIR
	 * cannot be written: MSG", err EIO or ENOSPC from the device); with err 0, they work again
	 * and what is the raft directory. Called on each change. While in trouble, a leader hands
	 * leadership over and at last refuses writes with STORE_ENOSPC or STORE_EDISK; a follower
	 * falls behind, keeps applying what its log holds and reaches fatal() if the state's
	 * reserve runs out. */
	void (*space)(void *data, int err, bool disk, const char *what);
	/* A raft connection was refused: the raft id and address the stranger gave, and its
	 * cluster id (NULL when it sent none: not a Tabby, or one from before cluster ids). May be
	 * NULL. */
	void (*stranger)(void *data, uint64_t id, const char *address,
	                 const uint8_t *their_cluster);
	/* The snapshot this member was to send to a follower is damaged on its disk (the data
	 * fails its checksum): it was not sent, and a new one is being taken in its place. msg
	 * says so and names the directory. May be NULL. */
	void (*snapshot_damaged)(void *data, const char *msg);
	void *hook_data;
	/* Domain command handlers (kv.h); every member must register the same ones. */
	const struct kv_handler *handlers;
	unsigned n_handlers;
};

/* Create the store on loop; nothing runs until store_start(). Returns STORE_OK or an error with a
 * message in *errmsg (malloc()ed). */
int store_new(uv_loop_t *loop, const struct store_config *cfg, struct store **out, char **errmsg);

/* Write the initial single-voter configuration (this node). Only on a pristine data dir. */
int store_bootstrap(struct store *s, char **errmsg);

/* Recovery from a lost quorum: make this node the only voter of the configuration, keeping its
 * log, snapshot and term. Only on a data dir that holds raft state, between store_new() and
 * store_start(); raft then appends the one-voter configuration to the log on disk, so the node
 * elects itself at start and every entry in its log is committed. Everything the other members
 * committed that this log lacks is lost, and members of the old configuration must not reach
 * this node again with it (their log and terms would overwrite what it commits from now on):
 * the caller gives the store a new cluster id (store_config.cluster_id) so that the fence
 * refuses them. Returns STORE_OK, STORE_EINVAL when the data dir holds no raft state, or
 * STORE_EIO with a message in *errmsg. Repeating it appends the same configuration again. */
int store_recover(struct store *s, char **errmsg);

/* Whether the data dir already holds raft state (a restarted node needs no bootstrap or join). */
bool store_has_state(const char *data_dir);

int store_start(struct store *s, char **errmsg);

/* Close: fails every pending request with STORE_ESHUTDOWN, stops raft, frees the store, then
 * calls cb. */
void store_close(struct store *s, void (*cb)(void *data), void *data);

/* ------------------------------------------------------------------------------------------ */
/* Writes                                                                                      */

struct store_write;
/* status STORE_OK: result is the state machine's answer (owned by the store, valid during the
 * call; a KV_R_COND_FAILED / KV_R_INVALID result is still STORE_OK). */
typedef void (*store_write_cb)(struct store_write *req, int status, const struct kv_result *result);

struct store_write {
	void *data; /* for the caller */
	/* private */
	store_write_cb cb;
	struct kv_reqid id;
	void *encoded;
	size_t encoded_len;
	uint64_t deadline;      /* uv_now() ms */
	uint64_t start_ns;      /* uv_hrtime() at submission, for the latency histogram */
	struct store_list link; /* pending queue, while queued */
	struct store_write *next_in_bucket;
	int state;
};

/* Submit one command (copied; cmd may be freed after the call). Returns 0 and later calls cb
 * exactly once, or returns an error and never calls cb. */
int store_write(struct store *s, struct store_write *req, const struct kv_op *op,
                store_write_cb cb);

/* Leader side of forwarding: apply a batch a follower sent. done(done_data, status) once every
 * command in it is committed (STORE_OK) or the leader cannot take it. Returns an error
 * synchronously (and never calls done) when this node is not the ready leader or the batch is
 * malformed. */
int store_propose_forwarded(struct store *s, const void *buf, size_t len, store_forward_done done,
                            void *done_data);

/* Leader side of a read index: done(done_data, 0, index) after a barrier proves leadership. */
int store_readindex(struct store *s, store_readindex_done done, void *done_data);

/* ------------------------------------------------------------------------------------------ */
/* Reads                                                                                       */

/* Serializable read from the local replica (see kv_range). */
int store_range(struct store *s, uint8_t space, struct kv_bytes key, bool prefix, int64_t limit,
                struct kv_kv **kvs, unsigned *n, bool *more, int64_t *revision);

/* A read-only view of the local replica for domain queries (kv.h). End it before returning to
 * the loop. */
int store_view_begin(struct store *s, struct kv_tx **tx);
void store_view_end(struct kv_tx *tx);

/* Linearizable barrier: cb(data, status) once this replica has applied everything committed
 * before the call (via the leader's read index); then store_range() reads linearizably. */
typedef void (*store_sync_cb)(void *data, int status);
int store_sync(struct store *s, store_sync_cb cb, void *data);

/* ------------------------------------------------------------------------------------------ */
/* Backups                                                                                     */

struct store_backup;
/* With STORE_OK, req->data (malloc()ed, the caller's to free) holds the whole replicated state
 * as kv_snapshot_write() serializes it (kv_restore() reads it back), at req->revision. With any
 * other status req->data is NULL. */
typedef void (*store_backup_cb)(struct store_backup *req, int status);

struct store_backup {
	void *data;
	size_t len;
	int64_t revision;
	/* private */
	struct store *s;
	struct kv_snapshot *snap;
	uv_work_t work;
	int rv;
	store_backup_cb cb;
};

/* A consistent copy of the whole replicated state, for an operator's backup: this replica's
 * state, read in one read transaction and serialized on a libuv worker thread while the loop
 * goes on applying. linearizable: first a linearizable barrier, so that the copy holds every
 * write acknowledged anywhere before the call (it needs a leader); otherwise at once, from what
 * this replica has applied (it works without a quorum). cb fires once, never from within this
 * call, unless this returns an error. A store closed meanwhile answers STORE_ESHUTDOWN, and frees
 * itself only after the worker is done. */
int store_backup(struct store *s, struct store_backup *req, bool linearizable, store_backup_cb cb);

/* A backup file (backup.c) is the state as store_backup() gives it, then a trailer saying where
 * it came from, so that a file alone tells the operator what it holds:
 *
 *   state        kv_snapshot_write()'s serialization, with its own checksum
 *   trailer      cluster id (16 bytes) | revision (i64 LE) | taken at (u64 LE, ms since the
 *                epoch) | member name length (u8) | member name | version length (u8) | version
 *   tail         trailer length (u32 LE) | FNV-1a 64 of the trailer (u64 LE) | "TABBYBK1"
 *
 * The trailer is at the end so that the agent appends it to the state's buffer instead of
 * copying the state. */
struct store_backup_info {
	uint8_t cluster_id[STORE_CLUSTER_ID_LEN];
	int64_t revision;
	uint64_t taken_at_ms;
	char member[128]; /* the member that took it: 1-127 bytes, no control characters */
	char version[64]; /* the Tabby version that took it */
};

/* Append the trailer for info to *buf (realloc()ed; *len grows): STORE_OK, STORE_ENOMEM, or
 * STORE_EINVAL for a member name or version that does not fit the layout. */
int store_backup_seal(void **buf, size_t *len, const struct store_backup_info *info);

/* Check a backup file: its trailer, and the checksum of the state before it. STORE_OK with *info
 * and *state_len (the state is the file's first *state_len bytes, for kv_restore()); else
 * STORE_EINVAL with why saying what is wrong. The state's layout is kv_restore()'s to check. */
int store_backup_open(const void *buf, size_t len, struct store_backup_info *info,
                      size_t *state_len, char *why, size_t why_len);

/* Make data_dir the data directory of a member that starts from state (as store_backup() gives
 * it), as member id at peer_address and the only voter of its configuration: raft state holding
 * that state as its snapshot, which store_start() then restores and every member that joins
 * receives. Runs offline, on a loop of its own, before any store_new() on data_dir. The directory
 * must hold no raft state (STORE_EINVAL otherwise, nothing touched); an interrupted restore leaves
 * none, so it may run again. STORE_EINVAL also for a state that fails its checksum, STORE_EIO when
 * the files cannot be written; *errmsg (malloc()ed) says which. */
int store_restore(const char *data_dir, uint64_t id, const char *peer_address, const void *state,
                  size_t len, char **errmsg);

/* ------------------------------------------------------------------------------------------ */
/* Watches                                                                                     */

struct store_watch;
/* One event; or, with ev == NULL, the end of the watch with a status (STORE_ECOMPACTED,
 * STORE_ESHUTDOWN). The event is valid during the call. */
typedef void (*store_watch_cb)(struct store_watch *w, const struct kv_event *ev, int status);

struct store_watch {
	void *data;
	/* private */
	store_watch_cb cb;
	uint8_t space;
	bool prefix;
	uint8_t *key;
	size_t key_len;
	int64_t start_rev; /* live events older than this are not delivered */
	struct store_list link;
};

/* Watch key (or prefix) for changes with revision >= start_rev (0: only future changes). Past
 * changes come from the history first, synchronously within this call; then live ones. A
 * start_rev beyond the current revision waits for that revision. Returns
 * STORE_ECOMPACTED (and registers nothing) when start_rev is older than the history. */
int store_watch_start(struct store *s, struct store_watch *w, uint8_t space, struct kv_bytes key,
                      bool prefix, int64_t start_rev, store_watch_cb cb);
void store_watch_stop(struct store *s, struct store_watch *w);

/* ------------------------------------------------------------------------------------------ */
/* Introspection and membership                                                                */

struct store_status {
	uint64_t id;
	int state;  /* RAFT_FOLLOWER, RAFT_CANDIDATE, RAFT_LEADER, RAFT_UNAVAILABLE */
	bool ready; /* leader whose election barrier has been applied */
	uint64_t leader_id;
	uint64_t term;
	uint64_t commit_index;
	uint64_t applied_index;
	int64_t revision;
	int64_t compact_revision;
	uint64_t entries_applied;  /* raft entries (batches) applied since start */
	uint64_t commands_applied; /* commands applied since start */
	uint64_t snapshots_taken;
	uint64_t snapshots_restored; /* installed from the leader, or loaded at start */
	uint64_t snapshots_damaged;  /* found damaged while loaded to be sent, and replaced */
	int space_err; /* errno: this member cannot reserve disk space for its state (space hook) */
	char disk_error[256];         /* raft cannot write this member's log: why; "" when it can */
	uint64_t refused_connections; /* raft connections from another cluster, since start */
};

void store_get_status(struct store *s, struct store_status *st);

/* One replicated member as the leader sees it. behind_ms: how long the member has lacked an
 * entry the leader had committed, 0 when it has all of them, give or take LAG_SAMPLE_MS (half a
 * second); a healthy member never comes near a second. silent_ms: how long since the member
 * last answered this leader (heartbeats included, so it grows in an idle cluster too, where
 * behind_ms stays 0 for a dead member that had everything); counted from the start of this
 * leadership when it has not answered yet. A live member answers every heartbeat (100 ms). */
struct store_progress {
	uint64_t id;
	uint64_t match_index; /* the highest log index the member has stored */
	uint64_t behind_ms;
	uint64_t silent_ms;
};

/* On the leader: every member that is replicated to (voters and standbys, not this node and not
 * spares). *members is malloc()ed, owned by the caller. Returns STORE_ENOTLEADER elsewhere. */
int store_replication(struct store *s, struct store_progress **members, unsigned *n);

/* Apply-latency histogram (proposal to local apply, for commands proposed by this node), in
 * microseconds: bucket upper bounds and cumulative counts, Prometheus style. */
#define STORE_LATENCY_BUCKETS 14
struct store_latency {
	double le_us[STORE_LATENCY_BUCKETS];
	uint64_t count[STORE_LATENCY_BUCKETS]; /* cumulative */
	uint64_t total;
	double sum_us;
};
void store_get_latency(struct store *s, struct store_latency *lat);

/* The state hash a HASH command computed on this replica at revision rev, if it is still
 * remembered. Returns true and sets *hash if so. */
bool store_hash_at(struct store *s, int64_t rev, uint64_t *hash);

/* A member of the raft configuration. */
struct store_member {
	uint64_t id;
	char address[64];
	int role; /* RAFT_VOTER, RAFT_STANDBY, RAFT_SPARE */
};

/* The last configuration this node knows of (committed or not). *members is malloc()ed. */
int store_configuration(struct store *s, struct store_member **members, unsigned *n);

/* Configuration changes, leader only, one at a time (STORE_EINVAL-like raft errors otherwise):
 * role is RAFT_VOTER / RAFT_STANDBY / RAFT_SPARE; id 0 / address NULL invalid. cb(data, status).
 */
int store_add_member(struct store *s, uint64_t id, const char *address, store_sync_cb cb,
                     void *data);
int store_assign_member(struct store *s, uint64_t id, int role, store_sync_cb cb, void *data);
int store_remove_member(struct store *s, uint64_t id, store_sync_cb cb, void *data);

/* Hand leadership to voter id, or with id 0 to another voter raft picks (one fully caught up if
 * there is one, answering or not). Leader only; cb(data, status) when the transfer ended: once a
 * new leader is known here, or after an election timeout without one (check the leader
 * afterwards). */
int store_transfer_leadership(struct store *s, uint64_t id, store_sync_cb cb, void *data);

#endif
