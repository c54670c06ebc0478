/*
 * The replicated state machine: an LMDB-backed key-value store with revisions, bounded change
 * history, request de-duplication and a deterministic state hash.
 *
 * This header is internal to store/ (store.h is the module's face). Everything here is
 * synchronous and single-threaded except the snapshot reader, which may run on a worker thread.
 *
 * Determinism: kv_apply() of the same sequence of batches on two empty stores produces the same
 * state, the same results and the same hash, byte for byte. Nothing in the apply path may read the
 * clock, a random source or anything local to the host: the leader's wall-clock time travels in
 * the batch header and is the only notion of time the state machine has.
 */
#ifndef TABBY_STORE_KV_H
#define TABBY_STORE_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kv;

/* Error codes returned by kv functions (negative values are also valid: -errno from the OS). */
enum {
	KV_OK = 0,
	KV_ENOMEM = 1,     /* out of memory */
	KV_EMALFORMED = 2, /* a buffer could not be decoded */
	KV_ECOMPACTED = 3, /* the requested revision is older than the retained history */
	KV_EIO = 4,        /* LMDB or the file system failed; message in kv_errmsg() */
	KV_EFUTURE = 5,    /* the requested revision has not been applied yet */
	KV_ENOTFOUND = 6,  /* kv_tx_get: no such key */
	KV_EREADONLY = 7,  /* a write through a read-only view */
	KV_ENOSPC = 8,     /* the file system cannot hold the state; message in kv_errmsg() */
};

/* Keyspaces. USER is what the /v1/kv API reads and writes; SYS holds cluster records (members,
 * join token) that the public KV API never exposes; DOMAIN holds the records of domain commands
 * (KV_OP_CALL: IPAM and later ones), which only those commands may write: a PUT, DEL or TXN
 * naming DOMAIN is refused, so no raw write can break a domain invariant. All three are
 * replicated, snapshotted, hashed and watchable. */
enum kv_space { KV_SPACE_USER = 0, KV_SPACE_SYS = 1, KV_SPACE_DOMAIN = 2 };
#define KV_SPACE_LAST KV_SPACE_DOMAIN

/* ------------------------------------------------------------------------------------------ */
/* Commands                                                                                    */

enum kv_op_type {
	KV_OP_PUT = 1,  /* key, value; optional condition on the key's mod revision */
	KV_OP_DEL = 2,  /* key, or every key with the prefix */
	KV_OP_GET = 3,  /* only inside a transaction: key or prefix, with limit */
	KV_OP_TXN = 4,  /* compares, then success ops or failure ops */
	KV_OP_HASH = 5, /* no change; every replica computes its state hash at this point */
	KV_OP_NOOP = 6, /* no change, no revision; used for leader barriers and tests */
	KV_OP_CALL = 7, /* a domain command: call id and payload, run by the registered handler */
};

enum kv_cmp_target {
	KV_CMP_VALUE = 1,
	KV_CMP_MOD_REVISION = 2,
	KV_CMP_CREATE_REVISION = 3,
	KV_CMP_VERSION = 4,
};

enum kv_cmp_result { KV_CMP_EQUAL = 1, KV_CMP_NOT_EQUAL = 2, KV_CMP_LESS = 3, KV_CMP_GREATER = 4 };

/* A byte string that the caller owns. Keys and values may contain any bytes (the API layer
 * restricts them to UTF-8). Keys are 1..KV_KEY_MAX bytes (LMDB's key size limit; an empty key is
 * only valid as a prefix); a command with a longer key gets KV_R_INVALID. */
#define KV_KEY_MAX 511

struct kv_bytes {
	const uint8_t *data;
	size_t len;
};

/* One compare of a transaction. A missing key has value "" (absent), mod, create revision and
 * version 0; a VALUE compare against a missing key is false for EQUAL/LESS/GREATER and true for
 * NOT_EQUAL. */
struct kv_cmp {
	struct kv_bytes key;
	uint8_t target;        /* enum kv_cmp_target */
	uint8_t result;        /* enum kv_cmp_result */
	struct kv_bytes value; /* KV_CMP_VALUE */
	int64_t number;        /* the revision / version targets */
};

/* One operation: a top-level command (PUT, DEL, TXN, HASH, NOOP, CALL) or a transaction branch
 * op (PUT, DEL, GET; never a nested TXN). */
struct kv_op {
	uint8_t type;  /* enum kv_op_type */
	uint8_t space; /* enum kv_space; GET/PUT/DEL, and TXN: the keyspace of its compares */
	bool prefix;   /* DEL, GET: the key is a prefix */
	bool has_prev; /* PUT: apply only if the key's mod revision == prev_revision (0: absent) */
	struct kv_bytes key;
	struct kv_bytes value; /* PUT */
	int64_t prev_revision; /* PUT with has_prev */
	int64_t limit;         /* GET: at most this many keys, 0 = no limit */
	uint16_t call; /* CALL: the id of the handler (struct kv_handler); payload in value */
	/* TXN */
	const struct kv_cmp *cmps;
	unsigned n_cmps;
	const struct kv_op *success;
	unsigned n_success;
	const struct kv_op *failure;
	unsigned n_failure;
};

/* A request id makes a command idempotent: the state machine remembers the result of every
 * command with a non-zero id for KV_DEDUP_MS of leader time, and a command whose id it has seen
 * returns the remembered result without being applied again. client is chosen by the proposer
 * (a random id the proposing node draws at every start), seq increases per client. */
struct kv_reqid {
	uint64_t client;
	uint64_t seq;
};

#define KV_DEDUP_MS (10 * 60 * 1000)

struct kv_cmd {
	struct kv_reqid id;
	struct kv_op op;
};

/* Encode n commands into one batch, the payload of one raft entry. time_ms is the proposer's wall
 * clock in milliseconds since the epoch; the state machine uses it only to expire de-duplication
 * records. On success *buf is allocated with raft_malloc() (it becomes the raft entry) and the
 * caller owns it. Returns KV_OK, KV_ENOMEM or KV_EMALFORMED (a nested TXN, an unknown type). */
int kv_encode_batch(const struct kv_cmd *cmds, unsigned n, uint64_t time_ms, void **buf,
                    size_t *len);

/* Append commands that are already encoded one by one (see kv_encode_cmd) into a batch; lets a
 * proposer encode each command once when it arrives and build the batch without re-encoding.
 * cmds[i] points into caller memory. *buf is raft_malloc()ed. */
int kv_encode_cmd(const struct kv_cmd *cmd, void **buf, size_t *len); /* malloc()ed */
int kv_join_batch(const struct kv_bytes *encoded_cmds, unsigned n, uint64_t time_ms, void **buf,
                  size_t *len);

/* Split a batch back into its encoded commands without applying it (the forwarding path uses it
 * to validate what a follower sent). On success *cmds is malloc()ed (the caller frees it) and its
 * entries point into buf. */
int kv_split_batch(const void *buf, size_t len, uint64_t *time_ms, struct kv_bytes **cmds,
                   unsigned *n);

/* Read the request id of one encoded command. */
int kv_cmd_reqid(struct kv_bytes encoded_cmd, struct kv_reqid *id);

/* ------------------------------------------------------------------------------------------ */
/* Results                                                                                     */

enum kv_status {
	KV_R_OK = 0,
	KV_R_COND_FAILED = 1, /* a conditional PUT whose condition did not hold (HTTP 409) */
	KV_R_INVALID = 2,     /* the command could not be decoded or is not allowed (HTTP 400) */
	KV_R_REFUSED = 3,     /* CALL: the handler refused; nothing changed; reply says why */
};

struct kv_kv {
	uint8_t *key;
	size_t key_len;
	uint8_t *value;
	size_t value_len;
	int64_t create_revision;
	int64_t mod_revision;
	int64_t version; /* number of puts since the key was (re)created, starting at 1 */
};

struct kv_op_result {
	uint8_t type;     /* the op's type */
	int64_t revision; /* PUT: the key's new mod revision; DEL, GET: the store's revision */
	int64_t deleted;  /* DEL */
	struct kv_kv *kvs;
	unsigned n_kvs; /* GET */
	bool more;      /* GET: the limit cut the list */
};

struct kv_result {
	struct kv_reqid id;
	uint8_t status;   /* enum kv_status */
	int64_t revision; /* the store's revision after this command */
	bool duplicate;   /* the result was remembered from an earlier application of the same id */
	bool succeeded;   /* TXN: the compares held */
	struct kv_op_result *ops;
	unsigned n_ops; /* TXN: one per branch op; PUT/DEL: exactly one */
	uint64_t hash;  /* HASH: the state hash at this point */
	char *message;  /* KV_R_INVALID: why */
	uint8_t *reply; /* CALL (OK or REFUSED): the handler's answer, malloc()ed, may be NULL */
	size_t reply_len;
};

/* A change, as watchers see it. */
enum kv_event_type { KV_EV_PUT = 1, KV_EV_DELETE = 2 };

struct kv_event {
	uint8_t type;
	uint8_t space;
	struct kv_kv kv; /* DELETE: value empty, mod_revision = the deleting revision */
};

/* What applying one batch produced. Free with kv_apply_out_free(). */
struct kv_apply_out {
	struct kv_result *results;
	unsigned n_results; /* one per command, in batch order */
	struct kv_event *events;
	unsigned n_events; /* in revision order */
	int64_t revision;  /* the store's revision after the batch */
};

void kv_apply_out_free(struct kv_apply_out *out);
void kv_result_free(struct kv_result *r);
void kv_kvs_free(struct kv_kv *kvs, unsigned n);

/* ------------------------------------------------------------------------------------------ */
/* Domain commands                                                                             */

/*
 * A domain module (ipam/) keeps its records in the DOMAIN keyspace and changes them only through
 * its own commands: a KV_OP_CALL carries the handler's id and an opaque payload, and every replica
 * runs the same handler over the same state inside the batch's write transaction. The handler
 * sees the state through a struct kv_tx:
 *
 *   - reads (kv_tx_get, kv_tx_scan) see the state before the command, in any keyspace;
 *   - writes (kv_tx_put, kv_tx_del) are buffered and take effect, in call order, only when the
 *     handler returns KV_OK without setting out->refused; a refused command changes nothing, so
 *     a handler may validate and write in any order and still be all-or-nothing;
 *   - the writes of one command share one revision, kv_tx_revision(), which is unique in the
 *     cluster and never reused: a domain may use it as a generation number;
 *   - kv_tx_time_ms() is the leader's clock carried in the batch, the only time a handler may use.
 *
 * A handler must be deterministic (no clock, no randomness, no host state, no iteration over
 * pointer-keyed containers) and must not fail for bad input: a payload it cannot decode is a
 * refusal with a reply that says why. It returns KV_ENOMEM or KV_EIO only when the host failed;
 * the replica then stops. Values returned by reads point into the map and stay valid until the
 * handler returns (nothing is written while it runs).
 *
 * The same struct kv_tx, opened read-only with kv_view_begin(), serves queries outside the state
 * machine (the agent's show and check commands), so one decoder reads records in both places.
 */
struct kv_tx;

struct kv_call_out {
	uint8_t *reply; /* malloc()ed by the handler; the store takes ownership */
	size_t reply_len;
	bool refused;
};

typedef int (*kv_call_fn)(void *data, struct kv_tx *tx, struct kv_bytes payload,
                          struct kv_call_out *out);

struct kv_handler {
	uint16_t call; /* non-zero, unique */
	kv_call_fn fn;
	void *data;
};

/* value points into the map. Returns KV_OK, KV_ENOTFOUND, or KV_EIO. */
int kv_tx_get(struct kv_tx *tx, uint8_t space, struct kv_bytes key, struct kv_bytes *value);

/* Calls fn(arg, key, value) for every key with the prefix that is >= from (from.len == 0: from the
 * first key with the prefix), in key order. fn returns 0 to go on, 1 to stop, anything else to
 * stop and have kv_tx_scan return it. Returns KV_OK, fn's error, or KV_EIO. */
typedef int (*kv_scan_fn)(void *arg, struct kv_bytes key, struct kv_bytes value);
int kv_tx_scan(struct kv_tx *tx, uint8_t space, struct kv_bytes prefix, struct kv_bytes from,
               kv_scan_fn fn, void *arg);

/* Buffered writes (copied). Keys as for PUT. Returns KV_OK, KV_ENOMEM, KV_EMALFORMED (bad key or
 * keyspace) or KV_EREADONLY on a view. */
int kv_tx_put(struct kv_tx *tx, uint8_t space, struct kv_bytes key, struct kv_bytes value);
int kv_tx_del(struct kv_tx *tx, uint8_t space, struct kv_bytes key);

/* In a command: the revision its writes will carry (the store revision before it, plus one).
 * In a view: the revision the view sees. */
int64_t kv_tx_revision(const struct kv_tx *tx);
/* In a command: the batch's leader time. In a view: 0. */
uint64_t kv_tx_time_ms(const struct kv_tx *tx);

/* A read-only kv_tx over the current state. End it promptly, and before the next kv_apply() on
 * the same thread finishes (map growth waits for views). */
int kv_view_begin(struct kv *kv, struct kv_tx **tx);
void kv_view_end(struct kv_tx *tx);

/* The remembered result of the command with request id id, as the view sees the state: *found
 * false when none is remembered (never applied, or forgotten after KV_DEDUP_MS). An expired
 * record still counts: it says the command was applied and what came of it. res is filled only
 * when found (free it with kv_result_free()). */
int kv_view_result(struct kv_tx *tx, struct kv_reqid id, struct kv_result *res, bool *found);

/* ------------------------------------------------------------------------------------------ */
/* The store                                                                                   */

struct kv_config {
	size_t map_size; /* LMDB map size in bytes; 0 = 16 GiB */
	int64_t history; /* revisions of change history kept for watchers; 0 = 100000 */
	/* Domain command handlers (copied). Every replica must register the same set. */
	const struct kv_handler *handlers;
	unsigned n_handlers;
};

/* Open (creating) the LMDB environment in directory dir, discarding whatever state it held: the
 * state machine is rebuilt from raft's snapshot and log at every start, so the environment runs
 * with relaxed durability (MDB_NOSYNC) and never needs repair. */
int kv_open(struct kv **out, const char *dir, const struct kv_config *cfg);
void kv_close(struct kv *kv);

/* The last error message (KV_EIO and friends). Never NULL. */
const char *kv_errmsg(const struct kv *kv);

/* Disk space for the state is reserved ahead of its use (see kv.c). Returns 0, or the errno
 * (ENOSPC, EDQUOT, ...) with which the file system refused to renew that reserve; then *left (if
 * not NULL) gets the bytes of reserve still unused. When the last renewal failed it tries again
 * first, so calling this now and then notices that space was freed; otherwise it costs nothing.
 * With less than KV_SPACE_WRITES_MIN left the caller should propose no more writes: kv_apply() and
 * kv_restore() fail with KV_ENOSPC once the reserve cannot hold a batch. */
#define KV_SPACE_WRITES_MIN ((size_t)32 << 20)
int kv_space_check(struct kv *kv, size_t *left);

/* Apply one batch in a single LMDB write transaction. Every command gets a result; a command that
 * cannot be decoded gets KV_R_INVALID and the rest of the batch still applies (if the batch header
 * itself is malformed, every command is reported as one KV_R_INVALID result and nothing changes).
 * Returns KV_OK, or KV_ENOMEM / KV_EIO / KV_ENOSPC when the host itself failed: then nothing was
 * applied and the replica must stop, because retrying or skipping would make it diverge. */
int kv_apply(struct kv *kv, const void *buf, size_t len, struct kv_apply_out *out);

int64_t kv_revision(const struct kv *kv);
int64_t kv_compact_revision(const struct kv *kv); /* oldest revision a watch may start from */

/* Serializable read of the local state: key, or every key with the prefix, in key order, at most
 * limit (0 = all). *more tells whether the limit cut the list. *revision is the store revision the
 * read saw. kvs is malloc()ed; free with kv_kvs_free(). */
int kv_range(struct kv *kv, uint8_t space, struct kv_bytes key, bool prefix, int64_t limit,
             struct kv_kv **kvs, unsigned *n, bool *more, int64_t *revision);

/* Changes of revision > after_rev (up to the current revision), for key or prefix, in order and
 * in whole revisions: the list ends at the first revision boundary at or after max events (0: no
 * limit), so it may hold more than max by the rest of one revision. A caller pages with the last
 * event's mod_revision as the next after_rev until it gets fewer than max events.
 * Returns KV_ECOMPACTED when after_rev + 1 is older than the retained history, KV_EFUTURE when
 * after_rev is beyond the current revision.
 * events is malloc()ed; free each event's kv with kv_kvs_free semantics via kv_events_free(). */
int kv_history(struct kv *kv, int64_t after_rev, uint8_t space, struct kv_bytes key, bool prefix,
               unsigned max, struct kv_event **events, unsigned *n);
void kv_events_free(struct kv_event *events, unsigned n);

/* Hash of the whole replicated state (both keyspaces with their revisions, and the store
 * revision; not the history, not the de-duplication records' expiry bookkeeping). */
int kv_hash(struct kv *kv, uint64_t *hash);

/* Snapshots. kv_snapshot_begin() takes a consistent read view (cheap; call it on the loop
 * thread); kv_snapshot_write() serializes that view and may run on any thread while the loop
 * keeps applying; kv_snapshot_end() releases it. The result is malloc()ed bufs (caller frees).
 * kv_restore() replaces the whole state with a serialized one. */
struct kv_snapshot;
int kv_snapshot_begin(struct kv *kv, struct kv_snapshot **snap);
int kv_snapshot_write(struct kv_snapshot *snap, void **buf, size_t *len);
void kv_snapshot_end(struct kv_snapshot *snap);
int kv_restore(struct kv *kv, const void *buf, size_t len);

/* Whether a serialized snapshot is as kv_snapshot_write() wrote it (its checksum): KV_OK, or
 * KV_EMALFORMED for data damaged since. Says nothing of whether this version can restore it.
 * Pure: safe on any thread. */
int kv_snapshot_intact(const void *buf, size_t len);

#endif
