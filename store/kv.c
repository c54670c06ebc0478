/*
 * The state machine on LMDB.
 *
 * Layout. One environment, seven named databases:
 *
 *   meta          "compact" -> i64, "rev" -> i64 (little-endian)
 *   user, sys, domain
 *                 key -> create_revision i64 | mod_revision i64 | version i64 | value
 *   history       revision u64 BE | sequence u32 BE
 *                   -> type u8 | space u8 | create_revision i64 | version i64 | key_len u32
 *                      | key | value        (the event's mod_revision is the key's revision)
 *   dedup         client u64 BE | seq u64 BE -> time_ms u64 | encoded kv_result
 *   dedup_expiry  time_ms u64 BE | client u64 BE | seq u64 BE -> (empty)
 *
 * Big-endian where LMDB's byte order must be numeric order, little-endian everywhere else.
 *
 * Revisions. A batch runs in one write transaction. The store revision lives in struct apply
 * while the batch runs and reaches meta just before the commit. A command starts with
 * base = rev; the first change it makes claims rev = base + 1 and every later change of the same
 * command (the other writes of a TXN) reuses it, so a command advances the revision by one or
 * not at all. Each change appends one history record keyed (rev, seq), seq counting the changes
 * within the revision, so the history is naturally in revision order and MDB_APPEND applies.
 *
 * Pruning. After the commands, the batch moves the compact revision up to
 * rev - history + 1 (never below 1) and deletes history records older than it, at most a budget
 * of 2 x (events this batch) + 64 records, so a batch's cost stays proportional to its own size.
 * The budget exceeds the inflow, so a backlog (after a huge prefix delete) drains over the
 * following batches; records below the compact revision that are not deleted yet are invisible,
 * because kv_history() refuses to start below the compact revision. De-dup records are pruned
 * the same way through the expiry index, by batch time only; a lookup also treats an expired but
 * not yet pruned record as absent, so expiry is exact whatever the pruning backlog. Both depend
 * only on the replicated state and the batch, so every replica prunes the same records.
 *
 * Map growth. MDB_MAP_FULL aborts the batch, the map doubles and the batch runs again from the
 * start: LMDB forbids resizing while any transaction of the process is active, and a snapshot's
 * read transaction may be in use on a worker thread. The snapshot therefore releases its read
 * transaction as soon as kv_snapshot_write() has serialized it, and growth waits (mutex and
 * condition variable) until no snapshot holds one. A begun snapshot must therefore be written
 * or ended promptly, and before kv_close().
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lmdb.h>

#include "store/kv.h"
#include "store/kv_internal.h"

/* Snapshot order: meta first, so a restore knows the revision before checking the rest. */
enum { DB_META, DB_USER, DB_SYS, DB_DOMAIN, DB_HIST, DB_DEDUP, DB_DEXP, DB_COUNT };

static const char *const db_names[DB_COUNT] = {"meta",    "user",  "sys",         "domain",
                                               "history", "dedup", "dedup_expiry"};

#define DEFAULT_MAP_SIZE ((size_t)16 << 30)

/* Disk space. The map is a sparse file written through MDB_WRITEMAP, so a page gets its disk
 * block when a store into the map first dirties it; on a full file system that store raises
 * SIGBUS in the middle of a transaction, and the agent would die without a word. So blocks are
 * allocated (fallocate) ahead of LMDB's high-water mark: RESERVE_AHEAD beyond it, renewed
 * whenever less than RESERVE_RENEW is left, so about every 16 MiB of growth. A write transaction
 * starts only when the reserve holds RESERVE_MIN plus three times the batch (a value is stored in
 * its key's record and again in the history, and copy-on-write rewrites the branch pages above
 * them); a restore, twice the snapshot. When the file system cannot renew the reserve,
 * kv_space_check() says so and the store stops proposing writes once less than
 * KV_SPACE_WRITES_MIN is left, so that what remains carries the entries already in flight; if
 * a batch still does not fit, kv_apply() and kv_restore() fail with KV_ENOSPC and a message
 * naming the directory before LMDB touches a page. A file system without fallocate gets no
 * reserve. */
#define RESERVE_AHEAD   ((size_t)64 << 20)
#define RESERVE_RENEW   ((size_t)48 << 20)
#define RESERVE_MIN     ((size_t)8 << 20)
#define DEFAULT_HISTORY 100000
#define ENTRY_HDR       24 /* create, mod, version */
#define HIST_KEY_LEN    12
#define HIST_HDR        (1 + 1 + 8 + 8 + 4)
#define REQID_LEN       16
#define DEXP_KEY_LEN    (8 + REQID_LEN)
#define PRUNE_BASE      64

#define SNAP_MAGIC   "TBKS"
#define SNAP_VERSION 2

/* Internal only: the map is full, grow it and run the batch again. */
#define KV_EMAPFULL 1000

/* MDB_WRITEMAP: a commit then needs no write() of dirty pages. Applying large 200-PUT batches in
 * isolation it measured slower (0.47 against 0.40 ms a batch, the fresh sparse file faulting
 * in), but in the cluster, where most entries carry a few commands, it gave 1,950 against
 * 1,700 writes/s at one client and 23,400 against 21,800 at 64. The file is sparse at the map
 * size: `du`, not `ls`, tells what it uses. MDB_NOTLS lets a snapshot's read transaction move to
 * a worker thread.
 *
 * MDB_NORDAHEAD (madvise MADV_RANDOM on the map): with readahead, a fault on a page the database
 * grows into read ahead across the sparse file, zero-filling large folios; now and then one
 * such fault took tens of milliseconds, on every replica at the same entry. Applying an entry of
 * 5-40 IPAM commands took 25-65 ms about six times in 30,000 assignments, which was the 40 ms
 * p99 at 64 clients once the state held some 30,000 addresses. Without readahead a fault fills
 * the one page LMDB touches: no such apply in the same run, and a p99 of 14-16 ms. The database
 * is in memory anyway (it is a map of a file this process writes). */
#define ENV_FLAGS (MDB_NOSYNC | MDB_NOMETASYNC | MDB_NOTLS | MDB_WRITEMAP | MDB_NORDAHEAD)

struct kv {
	MDB_env *env;
	MDB_dbi dbi[DB_COUNT];
	int64_t revision; /* committed, equal to meta "rev" */
	int64_t compact;  /* committed, equal to meta "compact" */
	int64_t history;
	/* Snapshots holding a read transaction; map growth waits for zero. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned snapshots_busy;
	struct kv_handler *handlers; /* sorted by call id */
	unsigned n_handlers;
	/* Disk space reserved for the map file (see space_reserve()). */
	char *dir;
	int fd;
	size_t psize;
	/* Bytes from the file's start with blocks allocated; SIZE_MAX: no reserve. */
	size_t reserved;
	int reserve_error; /* errno of the last failed renewal, 0 when the last one succeeded */
	char errmsg[256];
};

struct kv_snapshot {
	struct kv *kv;
	MDB_txn *txn; /* NULL once written or ended */
};

/* A decoded user/sys record. value points into the map: valid until the next write. */
struct entry {
	int64_t create;
	int64_t mod;
	int64_t version;
	struct kv_bytes value;
};

/* ------------------------------------------------------------------------------------------ */
/* Helpers                                                                                     */

static int fail(struct kv *kv, int rc, const char *what)
{
	if (rc == MDB_MAP_FULL) {
		return KV_EMAPFULL;
	}
	snprintf(kv->errmsg, sizeof kv->errmsg, "%s: %s", what, mdb_strerror(rc));
	return rc == ENOMEM ? KV_ENOMEM : KV_EIO;
}

static int oom(struct kv *kv, const char *what)
{
	snprintf(kv->errmsg, sizeof kv->errmsg, "%s: out of memory", what);
	return KV_ENOMEM;
}

static int corrupt(struct kv *kv, const char *what)
{
	snprintf(kv->errmsg, sizeof kv->errmsg, "corrupt state: %s", what);
	return KV_EIO;
}

static MDB_val mval(struct kv_bytes b)
{
	MDB_val v = {b.len, (void *)b.data};
	return v;
}

static struct kv_bytes vbytes(const MDB_val *v)
{
	struct kv_bytes b = {v->mv_data, v->mv_size};
	return b;
}

static int space_db(uint8_t space)
{
	switch (space) {
	case KV_SPACE_SYS:
		return DB_SYS;
	case KV_SPACE_DOMAIN:
		return DB_DOMAIN;
	default:
		return DB_USER;
	}
}

static bool parse_entry(const MDB_val *v, struct entry *e)
{
	const uint8_t *p = v->mv_data;
	if (v->mv_size < ENTRY_HDR) {
		return false;
	}
	e->create = (int64_t)kv_get_le64(p);
	e->mod = (int64_t)kv_get_le64(p + 8);
	e->version = (int64_t)kv_get_le64(p + 16);
	e->value.data = p + ENTRY_HDR;
	e->value.len = v->mv_size - ENTRY_HDR;
	return true;
}

static bool has_prefix(struct kv_bytes k, struct kv_bytes prefix)
{
	return k.len >= prefix.len &&
	       (prefix.len == 0 || memcmp(k.data, prefix.data, prefix.len) == 0);
}

/* LMDB's default key order: bytewise, a proper prefix first. */
static int key_cmp(struct kv_bytes a, struct kv_bytes b)
{
	size_t n = a.len < b.len ? a.len : b.len;
	int c = n > 0 ? memcmp(a.data, b.data, n) : 0;
	if (c != 0) {
		return c;
	}
	return a.len < b.len ? -1 : a.len > b.len ? 1 : 0;
}

/* Never NULL, so consumers may hand it to functions that reject NULL even for length 0. */
static uint8_t *dup_bytes(const void *p, size_t n)
{
	uint8_t *d = malloc(n > 0 ? n : 1);
	if (d != NULL && n > 0) {
		memcpy(d, p, n);
	}
	return d;
}

static int fill_kv(struct kv_kv *out, struct kv_bytes key, struct kv_bytes value, int64_t create,
                   int64_t mod, int64_t version)
{
	out->key = dup_bytes(key.data, key.len);
	out->value = dup_bytes(value.data, value.len);
	if (out->key == NULL || out->value == NULL) {
		free(out->key);
		free(out->value);
		out->key = out->value = NULL;
		return KV_ENOMEM;
	}
	out->key_len = key.len;
	out->value_len = value.len;
	out->create_revision = create;
	out->mod_revision = mod;
	out->version = version;
	return KV_OK;
}

/* Grow *arr (of size elements) so that it holds at least n + 1. */
static bool reserve(void **arr, unsigned *cap, unsigned n, size_t size)
{
	unsigned new_cap;
	void *p;

	if (n < *cap) {
		return true;
	}
	new_cap = *cap == 0 ? 16 : *cap * 2;
	if (new_cap <= *cap) {
		return false;
	}
	p = realloc(*arr, (size_t)new_cap * size);
	if (p == NULL) {
		return false;
	}
	*arr = p;
	*cap = new_cap;
	return true;
}

static void reqid_key(uint8_t *k, struct kv_reqid id)
{
	kv_put_be64(k, id.client);
	kv_put_be64(k + 8, id.seq);
}

static void dexp_key(uint8_t *k, uint64_t time_ms, struct kv_reqid id)
{
	kv_put_be64(k, time_ms);
	reqid_key(k + 8, id);
}

/* Whether a de-dup record written at batch time t has expired at batch time now. */
static bool dedup_expired(uint64_t t, uint64_t now)
{
	return now > t && now - t > KV_DEDUP_MS;
}

static int read_meta(struct kv *kv, MDB_txn *txn, int64_t *rev, int64_t *compact)
{
	MDB_val k = {3, "rev"}, v;
	int rc = mdb_get(txn, kv->dbi[DB_META], &k, &v);
	if (rc != 0) {
		return fail(kv, rc, "reading the revision");
	}
	if (v.mv_size != 8) {
		return corrupt(kv, "revision record");
	}
	*rev = (int64_t)kv_get_le64(v.mv_data);
	k.mv_size = 7;
	k.mv_data = "compact";
	rc = mdb_get(txn, kv->dbi[DB_META], &k, &v);
	if (rc != 0) {
		return fail(kv, rc, "reading the compact revision");
	}
	if (v.mv_size != 8) {
		return corrupt(kv, "compact revision record");
	}
	*compact = (int64_t)kv_get_le64(v.mv_data);
	return KV_OK;
}

static int write_meta(struct kv *kv, MDB_txn *txn, int64_t rev, int64_t compact)
{
	uint8_t b[8];
	MDB_val k = {3, "rev"}, v = {8, b};
	int rc;

	kv_put_le64(b, (uint64_t)rev);
	rc = mdb_put(txn, kv->dbi[DB_META], &k, &v, 0);
	if (rc == 0) {
		k.mv_size = 7;
		k.mv_data = "compact";
		kv_put_le64(b, (uint64_t)compact);
		rc = mdb_put(txn, kv->dbi[DB_META], &k, &v, 0);
	}
	return rc == 0 ? KV_OK : fail(kv, rc, "writing the revision");
}

static int grow_map(struct kv *kv)
{
	MDB_envinfo info;
	size_t size;
	int rc;

	rc = mdb_env_info(kv->env, &info);
	if (rc != 0) {
		return fail(kv, rc, "reading the map size");
	}
	size = info.me_mapsize;
	if (size > SIZE_MAX / 2) {
		snprintf(kv->errmsg, sizeof kv->errmsg, "LMDB map full at %zu bytes", size);
		return KV_EIO;
	}
	pthread_mutex_lock(&kv->mu);
	while (kv->snapshots_busy > 0) {
		pthread_cond_wait(&kv->cv, &kv->mu);
	}
	rc = mdb_env_set_mapsize(kv->env, size * 2);
	pthread_mutex_unlock(&kv->mu);
	return rc == 0 ? KV_OK : fail(kv, rc, "growing the LMDB map");
}

/* The bytes of the map LMDB has used so far: its high-water mark. */
static size_t map_used(const struct kv *kv, const MDB_envinfo *info)
{
	return ((size_t)info->me_last_pgno + 1) * kv->psize;
}

/* Make sure disk blocks back the map from its start to LMDB's high-water mark plus need (see
 * RESERVE_AHEAD above). */
static int space_reserve(struct kv *kv, size_t need)
{
	MDB_envinfo info;
	int rc;

	if (kv->reserved == SIZE_MAX) {
		return KV_OK;
	}
	if ((rc = mdb_env_info(kv->env, &info)) != 0) {
		return fail(kv, rc, "reading the map's high-water mark");
	}
	size_t used = map_used(kv, &info);
	/* Beyond the map a transaction stops at MDB_MAP_FULL, and the map grows before the retry
	 * comes back here. */
	size_t end = used + need < info.me_mapsize ? used + need : info.me_mapsize;
	if (end <= kv->reserved && kv->reserved - used >= RESERVE_RENEW) {
		return KV_OK;
	}
	size_t target = end + RESERVE_AHEAD;
	if (target > info.me_mapsize) {
		target = info.me_mapsize;
	}
	if (target > kv->reserved) {
		if (fallocate(kv->fd, FALLOC_FL_KEEP_SIZE, (off_t)kv->reserved,
		              (off_t)(target - kv->reserved)) == 0) {
			kv->reserved = target;
			kv->reserve_error = 0;
		} else if (errno == EOPNOTSUPP || errno == ENOSYS) {
			kv->reserved = SIZE_MAX;
			kv->reserve_error = 0;
			return KV_OK;
		} else {
			kv->reserve_error = errno;
		}
	}
	if (end <= kv->reserved) {
		return KV_OK;
	}
	snprintf(kv->errmsg, sizeof kv->errmsg,
	         "no space for the state database in %s: %s (it needs %zu MiB more; free space on "
	         "that file system, then start the agent again)",
	         kv->dir, strerror(kv->reserve_error), (end - kv->reserved + (1u << 20) - 1) >> 20);
	return KV_ENOSPC;
}

int kv_space_check(struct kv *kv, size_t *left)
{
	MDB_envinfo info;

	/* Nothing to ask the file system or LMDB while the last renewal worked: this runs on every
	 * loop turn of the store. */
	if (kv->reserve_error == 0) {
		return 0;
	}
	space_reserve(kv, 0);
	if (left != NULL && kv->reserve_error != 0) {
		*left = 0;
		if (mdb_env_info(kv->env, &info) == 0) {
			size_t used = map_used(kv, &info);
			*left = kv->reserved > used ? kv->reserved - used : 0;
		}
	}
	return kv->reserve_error;
}

/* ------------------------------------------------------------------------------------------ */
/* Freeing                                                                                     */

void kv_kvs_free(struct kv_kv *kvs, unsigned n)
{
	if (kvs == NULL) {
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		free(kvs[i].key);
		free(kvs[i].value);
	}
	free(kvs);
}

void kv_events_free(struct kv_event *events, unsigned n)
{
	if (events == NULL) {
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		free(events[i].kv.key);
		free(events[i].kv.value);
	}
	free(events);
}

void kv_result_free(struct kv_result *r)
{
	if (r->ops != NULL) {
		for (unsigned i = 0; i < r->n_ops; i++) {
			kv_kvs_free(r->ops[i].kvs, r->ops[i].n_kvs);
		}
	}
	free(r->ops);
	free(r->message);
	free(r->reply);
	r->ops = NULL;
	r->n_ops = 0;
	r->message = NULL;
	r->reply = NULL;
	r->reply_len = 0;
}

void kv_apply_out_free(struct kv_apply_out *out)
{
	if (out->results != NULL) {
		for (unsigned i = 0; i < out->n_results; i++) {
			kv_result_free(&out->results[i]);
		}
	}
	free(out->results);
	kv_events_free(out->events, out->n_events);
	memset(out, 0, sizeof *out);
}

/* ------------------------------------------------------------------------------------------ */
/* Open and close                                                                              */

static int remove_file(const char *dir, const char *name)
{
	char *path;
	int rv = 0;

	if (asprintf(&path, "%s/%s", dir, name) < 0) {
		return KV_ENOMEM;
	}
	if (unlink(path) != 0 && errno != ENOENT) {
		rv = -errno;
	}
	free(path);
	return rv;
}

int kv_open(struct kv **out, const char *dir, const struct kv_config *cfg)
{
	struct kv *kv;
	size_t map_size = cfg != NULL && cfg->map_size > 0 ? cfg->map_size : DEFAULT_MAP_SIZE;
	int64_t history = cfg != NULL && cfg->history > 0 ? cfg->history : DEFAULT_HISTORY;
	MDB_txn *txn = NULL;
	int rc, rv;

	*out = NULL;
	if (cfg != NULL && cfg->history < 0) {
		return -EINVAL;
	}
	if (cfg != NULL && cfg->n_handlers > 0) {
		if (cfg->handlers == NULL) {
			return -EINVAL;
		}
		for (unsigned i = 0; i < cfg->n_handlers; i++) {
			if (cfg->handlers[i].call == 0 || cfg->handlers[i].fn == NULL) {
				return -EINVAL;
			}
			for (unsigned j = 0; j < i; j++) {
				if (cfg->handlers[j].call == cfg->handlers[i].call) {
					return -EINVAL;
				}
			}
		}
	}
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		return -errno;
	}
	/* The state is rebuilt from raft at every start; whatever is on disk is stale. */
	if ((rv = remove_file(dir, "data.mdb")) != 0 || (rv = remove_file(dir, "lock.mdb")) != 0) {
		return rv;
	}
	kv = calloc(1, sizeof *kv);
	if (kv == NULL) {
		return KV_ENOMEM;
	}
	kv->history = history;
	kv->revision = 0;
	kv->compact = 1;
	kv->fd = -1;
	if ((kv->dir = strdup(dir)) == NULL) {
		free(kv);
		return KV_ENOMEM;
	}
	if (cfg != NULL && cfg->n_handlers > 0) {
		kv->handlers = malloc(cfg->n_handlers * sizeof *kv->handlers);
		if (kv->handlers == NULL) {
			free(kv->dir);
			free(kv);
			return KV_ENOMEM;
		}
		memcpy(kv->handlers, cfg->handlers, cfg->n_handlers * sizeof *kv->handlers);
		kv->n_handlers = cfg->n_handlers;
	}
	if (pthread_mutex_init(&kv->mu, NULL) != 0) {
		free(kv->handlers);
		free(kv->dir);
		free(kv);
		return KV_ENOMEM;
	}
	if (pthread_cond_init(&kv->cv, NULL) != 0) {
		pthread_mutex_destroy(&kv->mu);
		free(kv->handlers);
		free(kv->dir);
		free(kv);
		return KV_ENOMEM;
	}
	rv = KV_EIO;
	rc = 0;
	if ((rc = mdb_env_create(&kv->env)) != 0) {
		kv->env = NULL;
		goto err;
	}
	if ((rc = mdb_env_set_maxdbs(kv->env, DB_COUNT)) != 0 ||
	    (rc = mdb_env_set_mapsize(kv->env, map_size)) != 0 ||
	    (rc = mdb_env_open(kv->env, dir, ENV_FLAGS, 0600)) != 0) {
		goto err;
	}
	if (mdb_env_get_maxkeysize(kv->env) < KV_KEY_MAX) {
		goto err;
	}
	MDB_stat st;
	if ((rc = mdb_env_stat(kv->env, &st)) != 0 ||
	    (rc = mdb_env_get_fd(kv->env, &kv->fd)) != 0) {
		goto err;
	}
	kv->psize = st.ms_psize;
	if (space_reserve(kv, RESERVE_MIN) != KV_OK) {
		rc = kv->reserve_error != 0 ? kv->reserve_error : EIO;
		goto err;
	}
	if ((rc = mdb_txn_begin(kv->env, NULL, 0, &txn)) != 0) {
		goto err;
	}
	for (int i = 0; i < DB_COUNT; i++) {
		if ((rc = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &kv->dbi[i])) != 0) {
			goto err;
		}
	}
	if (write_meta(kv, txn, 0, 1) != KV_OK) {
		goto err;
	}
	rc = mdb_txn_commit(txn);
	txn = NULL;
	if (rc != 0) {
		goto err;
	}
	*out = kv;
	return KV_OK;

err:
	/* LMDB reports system failures as positive errno values. */
	if (rc > 0) {
		rv = -rc;
	}
	if (txn != NULL) {
		mdb_txn_abort(txn);
	}
	if (kv->env != NULL) {
		mdb_env_close(kv->env);
	}
	pthread_cond_destroy(&kv->cv);
	pthread_mutex_destroy(&kv->mu);
	free(kv->handlers);
	free(kv->dir);
	free(kv);
	return rv;
}

void kv_close(struct kv *kv)
{
	if (kv == NULL) {
		return;
	}
	mdb_env_close(kv->env);
	pthread_cond_destroy(&kv->cv);
	pthread_mutex_destroy(&kv->mu);
	free(kv->handlers);
	free(kv->dir);
	free(kv);
}

const char *kv_errmsg(const struct kv *kv)
{
	return kv->errmsg;
}

int64_t kv_revision(const struct kv *kv)
{
	return kv->revision;
}

int64_t kv_compact_revision(const struct kv *kv)
{
	return kv->compact;
}

/* ------------------------------------------------------------------------------------------ */
/* Reads shared by kv_range() and GET inside a transaction                                      */

static int range_scan(struct kv *kv, MDB_txn *txn, uint8_t space, struct kv_bytes key, bool prefix,
                      int64_t limit, struct kv_kv **kvs_out, unsigned *n_out, bool *more)
{
	MDB_dbi dbi = kv->dbi[space_db(space)];
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	struct kv_kv *kvs = NULL;
	unsigned n = 0, cap = 0;
	struct entry e;
	int rc, rv = KV_OK;

	*more = false;
	/* No stored key is empty or longer than KV_KEY_MAX, and LMDB rejects such lookups. */
	if (key.len > KV_KEY_MAX || (!prefix && key.len == 0)) {
		goto done;
	}
	if (!prefix) {
		k = mval(key);
		rc = mdb_get(txn, dbi, &k, &v);
		if (rc == MDB_NOTFOUND) {
			goto done;
		}
		if (rc != 0) {
			rv = fail(kv, rc, "reading a key");
			goto done;
		}
		if (!parse_entry(&v, &e)) {
			rv = corrupt(kv, "key record");
			goto done;
		}
		kvs = malloc(sizeof *kvs);
		if (kvs == NULL || fill_kv(kvs, key, e.value, e.create, e.mod, e.version) != 0) {
			rv = oom(kv, "reading a key");
			goto done;
		}
		n = 1;
		goto done;
	}
	if ((rc = mdb_cursor_open(txn, dbi, &cur)) != 0) {
		rv = fail(kv, rc, "opening a cursor");
		goto done;
	}
	k = mval(key);
	rc = mdb_cursor_get(cur, &k, &v, key.len == 0 ? MDB_FIRST : MDB_SET_RANGE);
	while (rc == 0 && has_prefix(vbytes(&k), key)) {
		if (limit > 0 && (int64_t)n == limit) {
			*more = true;
			break;
		}
		if (!parse_entry(&v, &e)) {
			rv = corrupt(kv, "key record");
			goto done;
		}
		if (!reserve((void **)&kvs, &cap, n, sizeof *kvs) ||
		    fill_kv(&kvs[n], vbytes(&k), e.value, e.create, e.mod, e.version) != 0) {
			rv = oom(kv, "reading a range");
			goto done;
		}
		n++;
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	if (rc != 0 && rc != MDB_NOTFOUND) {
		rv = fail(kv, rc, "reading a range");
	}

done:
	if (cur != NULL) {
		mdb_cursor_close(cur);
	}
	if (rv != KV_OK) {
		kv_kvs_free(kvs, n);
		kvs = NULL;
		n = 0;
	}
	*kvs_out = kvs;
	*n_out = n;
	return rv;
}

int kv_range(struct kv *kv, uint8_t space, struct kv_bytes key, bool prefix, int64_t limit,
             struct kv_kv **kvs, unsigned *n, bool *more, int64_t *revision)
{
	MDB_txn *txn;
	int64_t compact;
	int rc, rv;

	*kvs = NULL;
	*n = 0;
	*more = false;
	if (space > KV_SPACE_LAST || limit < 0 || (key.len > 0 && key.data == NULL)) {
		return KV_EMALFORMED;
	}
	if ((rc = mdb_txn_begin(kv->env, NULL, MDB_RDONLY, &txn)) != 0) {
		return fail(kv, rc, "beginning a read");
	}
	rv = read_meta(kv, txn, revision, &compact);
	if (rv == KV_OK) {
		rv = range_scan(kv, txn, space, key, prefix, limit, kvs, n, more);
	}
	mdb_txn_abort(txn);
	return rv;
}

/* ------------------------------------------------------------------------------------------ */
/* Hash                                                                                        */

/*
 * The canonical serialization hashed with FNV-1a 64 (kv_internal.h):
 *   for the USER, SYS and DOMAIN keyspaces in turn, every key in LMDB order:
 *     space u8 | key_len u32 | key | value_len u32 | value | create i64 | mod i64 | version i64
 *   then 0xff | store revision i64
 * all little-endian. Deliberately excluded: the history, the compact revision and the de-dup
 * records, which change with time and with commands that leave the revision alone, so that
 * replicas at the same revision hash equal however far their bookkeeping has gone.
 */
static int hash_state(struct kv *kv, MDB_txn *txn, int64_t rev, uint64_t *out)
{
	uint64_t h = KV_FNV_OFFSET;
	uint8_t b[24];
	int rc = 0;

	for (uint8_t space = KV_SPACE_USER; space <= KV_SPACE_LAST; space++) {
		MDB_cursor *cur;
		MDB_val k, v;
		struct entry e;

		if ((rc = mdb_cursor_open(txn, kv->dbi[space_db(space)], &cur)) != 0) {
			return fail(kv, rc, "opening a cursor");
		}
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			if (!parse_entry(&v, &e)) {
				mdb_cursor_close(cur);
				return corrupt(kv, "key record");
			}
			b[0] = space;
			kv_put_le32(b + 1, (uint32_t)k.mv_size);
			h = kv_fnv1a64(h, b, 5);
			h = kv_fnv1a64(h, k.mv_data, k.mv_size);
			kv_put_le32(b, (uint32_t)e.value.len);
			h = kv_fnv1a64(h, b, 4);
			h = kv_fnv1a64(h, e.value.data, e.value.len);
			kv_put_le64(b, (uint64_t)e.create);
			kv_put_le64(b + 8, (uint64_t)e.mod);
			kv_put_le64(b + 16, (uint64_t)e.version);
			h = kv_fnv1a64(h, b, 24);
		}
		mdb_cursor_close(cur);
		if (rc != MDB_NOTFOUND) {
			return fail(kv, rc, "hashing");
		}
	}
	b[0] = 0xff;
	kv_put_le64(b + 1, (uint64_t)rev);
	*out = kv_fnv1a64(h, b, 9);
	return KV_OK;
}

int kv_hash(struct kv *kv, uint64_t *hash)
{
	MDB_txn *txn;
	int64_t rev, compact;
	int rc, rv;

	if ((rc = mdb_txn_begin(kv->env, NULL, MDB_RDONLY, &txn)) != 0) {
		return fail(kv, rc, "beginning a read");
	}
	rv = read_meta(kv, txn, &rev, &compact);
	if (rv == KV_OK) {
		rv = hash_state(kv, txn, rev, hash);
	}
	mdb_txn_abort(txn);
	return rv;
}

/* ------------------------------------------------------------------------------------------ */
/* Apply                                                                                       */

struct apply {
	struct kv *kv;
	MDB_txn *txn;
	uint64_t time_ms;
	int64_t rev;  /* the store revision including the changes made so far */
	int64_t base; /* the store revision before the current command */
	uint32_t seq; /* next history sequence number within rev */
	struct kv_event *events;
	unsigned n_events, cap_events;
};

/* The revision of the current command's changes: the first change claims it. */
static int64_t claim_revision(struct apply *a)
{
	if (a->rev == a->base) {
		a->rev++;
		a->seq = 0;
	}
	return a->rev;
}

/* Append a change to the history and to the batch's event list. */
static int record_event(struct apply *a, uint8_t type, uint8_t space, struct kv_bytes key,
                        struct kv_bytes value, int64_t create, int64_t version)
{
	uint8_t hk[HIST_KEY_LEN];
	MDB_val k = {HIST_KEY_LEN, hk}, v;
	struct kv_event *ev;
	uint8_t *p;
	int rc;

	kv_put_be64(hk, (uint64_t)a->rev);
	kv_put_be32(hk + 8, a->seq++);
	v.mv_size = HIST_HDR + key.len + value.len;
	v.mv_data = NULL;
	rc = mdb_put(a->txn, a->kv->dbi[DB_HIST], &k, &v, MDB_APPEND | MDB_RESERVE);
	if (rc != 0) {
		return fail(a->kv, rc, "writing history");
	}
	p = v.mv_data;
	p[0] = type;
	p[1] = space;
	kv_put_le64(p + 2, (uint64_t)create);
	kv_put_le64(p + 10, (uint64_t)version);
	kv_put_le32(p + 18, (uint32_t)key.len);
	memcpy(p + HIST_HDR, key.data, key.len);
	if (value.len > 0) {
		memcpy(p + HIST_HDR + key.len, value.data, value.len);
	}

	if (!reserve((void **)&a->events, &a->cap_events, a->n_events, sizeof *a->events)) {
		return oom(a->kv, "recording an event");
	}
	ev = &a->events[a->n_events];
	ev->type = type;
	ev->space = space;
	if (fill_kv(&ev->kv, key, value, create, a->rev, version) != KV_OK) {
		return oom(a->kv, "recording an event");
	}
	a->n_events++;
	return KV_OK;
}

/* PUT. A failed prev_revision condition sets *cond_failed and reports the key's current mod
 * revision (0: absent) in o->revision, which is what a 409 answer wants to show. */
static int apply_put(struct apply *a, const struct kv_op *op, struct kv_op_result *o,
                     bool *cond_failed)
{
	MDB_dbi dbi = a->kv->dbi[space_db(op->space)];
	MDB_val k = mval(op->key), v;
	struct entry cur = {0};
	int64_t rev, create, version;
	uint8_t *p;
	int rc;

	o->type = KV_OP_PUT;
	rc = mdb_get(a->txn, dbi, &k, &v);
	if (rc == 0) {
		if (!parse_entry(&v, &cur)) {
			return corrupt(a->kv, "key record");
		}
	} else if (rc != MDB_NOTFOUND) {
		return fail(a->kv, rc, "reading a key");
	}
	if (op->has_prev && cur.mod != op->prev_revision) {
		*cond_failed = true;
		o->revision = cur.mod;
		return KV_OK;
	}
	rev = claim_revision(a);
	create = rc == 0 ? cur.create : rev;
	version = rc == 0 ? cur.version + 1 : 1;
	v.mv_size = ENTRY_HDR + op->value.len;
	v.mv_data = NULL;
	rc = mdb_put(a->txn, dbi, &k, &v, MDB_RESERVE);
	if (rc != 0) {
		return fail(a->kv, rc, "writing a key");
	}
	p = v.mv_data;
	kv_put_le64(p, (uint64_t)create);
	kv_put_le64(p + 8, (uint64_t)rev);
	kv_put_le64(p + 16, (uint64_t)version);
	if (op->value.len > 0) {
		memcpy(p + ENTRY_HDR, op->value.data, op->value.len);
	}
	o->revision = rev;
	return record_event(a, KV_EV_PUT, op->space, op->key, op->value, create, version);
}

/* Delete the key the cursor is on and record its event, which like an etcd tombstone carries
 * only the key and the deleting revision (create revision and version 0). The key is copied to
 * keybuf first: the caller re-seeks from it, because after a delete the cursor's key no longer
 * exists. */
static int delete_at(struct apply *a, MDB_cursor *cur, uint8_t space, const MDB_val *k,
                     uint8_t *keybuf)
{
	struct kv_bytes key = {keybuf, k->mv_size}, empty = {NULL, 0};
	int rc;

	if (k->mv_size == 0 || k->mv_size > KV_KEY_MAX) {
		return corrupt(a->kv, "key length");
	}
	memcpy(keybuf, k->mv_data, k->mv_size);
	claim_revision(a);
	if ((rc = mdb_cursor_del(cur, 0)) != 0) {
		return fail(a->kv, rc, "deleting a key");
	}
	return record_event(a, KV_EV_DELETE, space, key, empty, 0, 0);
}

/* DEL of a key or a prefix. All deletions of one command share its revision; deleting nothing
 * claims none. */
static int apply_del(struct apply *a, const struct kv_op *op, struct kv_op_result *o)
{
	MDB_cursor *cur;
	MDB_val k, v;
	uint8_t keybuf[KV_KEY_MAX];
	int64_t deleted = 0;
	int rc, rv = KV_OK;

	o->type = KV_OP_DEL;
	if ((rc = mdb_cursor_open(a->txn, a->kv->dbi[space_db(op->space)], &cur)) != 0) {
		return fail(a->kv, rc, "opening a cursor");
	}
	k = mval(op->key);
	if (!op->prefix) {
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
		if (rc == 0 && (rv = delete_at(a, cur, op->space, &k, keybuf)) == KV_OK) {
			deleted = 1;
		}
	} else {
		rc = mdb_cursor_get(cur, &k, &v, op->key.len == 0 ? MDB_FIRST : MDB_SET_RANGE);
		while (rc == 0 && has_prefix(vbytes(&k), op->key)) {
			if ((rv = delete_at(a, cur, op->space, &k, keybuf)) != KV_OK) {
				break;
			}
			deleted++;
			k.mv_data = keybuf; /* k.mv_size is still the deleted key's length */
			rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		}
	}
	mdb_cursor_close(cur);
	if (rv != KV_OK) {
		return rv;
	}
	if (rc != 0 && rc != MDB_NOTFOUND) {
		return fail(a->kv, rc, "deleting");
	}
	o->deleted = deleted;
	o->revision = a->rev;
	return KV_OK;
}

static int apply_get(struct apply *a, const struct kv_op *op, struct kv_op_result *o)
{
	o->type = KV_OP_GET;
	o->revision = a->rev;
	return range_scan(a->kv, a->txn, op->space, op->key, op->prefix, op->limit, &o->kvs,
	                  &o->n_kvs, &o->more);
}

static bool compare_numbers(int64_t have, uint8_t result, int64_t want)
{
	switch (result) {
	case KV_CMP_EQUAL:
		return have == want;
	case KV_CMP_NOT_EQUAL:
		return have != want;
	case KV_CMP_LESS:
		return have < want;
	default:
		return have > want;
	}
}

static int eval_cmp(struct apply *a, uint8_t space, const struct kv_cmp *c, bool *holds)
{
	MDB_val k = mval(c->key), v;
	struct entry e = {0};
	int rc = mdb_get(a->txn, a->kv->dbi[space_db(space)], &k, &v);

	if (rc == 0) {
		if (!parse_entry(&v, &e)) {
			return corrupt(a->kv, "key record");
		}
	} else if (rc != MDB_NOTFOUND) {
		return fail(a->kv, rc, "reading a key");
	}
	switch (c->target) {
	case KV_CMP_VALUE:
		if (rc == MDB_NOTFOUND) {
			*holds = c->result == KV_CMP_NOT_EQUAL;
		} else {
			int d = key_cmp(e.value, c->value);
			*holds = compare_numbers(d < 0 ? -1 : d > 0 ? 1 : 0, c->result, 0);
		}
		break;
	case KV_CMP_MOD_REVISION:
		*holds = compare_numbers(e.mod, c->result, c->number);
		break;
	case KV_CMP_CREATE_REVISION:
		*holds = compare_numbers(e.create, c->result, c->number);
		break;
	default:
		*holds = compare_numbers(e.version, c->result, c->number);
		break;
	}
	return KV_OK;
}

static int apply_txn(struct apply *a, const struct kv_op *op, struct kv_result *res)
{
	const struct kv_op *ops;
	unsigned n;
	bool ok = true;
	int rv;

	for (unsigned i = 0; i < op->n_cmps && ok; i++) {
		if ((rv = eval_cmp(a, op->space, &op->cmps[i], &ok)) != KV_OK) {
			return rv;
		}
	}
	res->succeeded = ok;
	ops = ok ? op->success : op->failure;
	n = ok ? op->n_success : op->n_failure;
	if (n == 0) {
		return KV_OK;
	}
	res->ops = calloc(n, sizeof *res->ops);
	if (res->ops == NULL) {
		return oom(a->kv, "applying a transaction");
	}
	res->n_ops = n;
	for (unsigned i = 0; i < n; i++) {
		bool cond_failed = false; /* branch PUTs carry no condition */
		switch (ops[i].type) {
		case KV_OP_PUT:
			rv = apply_put(a, &ops[i], &res->ops[i], &cond_failed);
			break;
		case KV_OP_DEL:
			rv = apply_del(a, &ops[i], &res->ops[i]);
			break;
		default:
			rv = apply_get(a, &ops[i], &res->ops[i]);
			break;
		}
		if (rv != KV_OK) {
			return rv;
		}
	}
	return KV_OK;
}

/* The de-dup record of id, as it is stored (its batch time, then the encoded result). */
static int dedup_get(struct kv *kv, MDB_txn *txn, struct kv_reqid id, MDB_val *v, bool *found)
{
	uint8_t key[REQID_LEN];
	MDB_val k = {REQID_LEN, key};
	int rc;

	*found = false;
	reqid_key(key, id);
	rc = mdb_get(txn, kv->dbi[DB_DEDUP], &k, v);
	if (rc == MDB_NOTFOUND) {
		return KV_OK;
	}
	if (rc != 0) {
		return fail(kv, rc, "reading a de-dup record");
	}
	if (v->mv_size < 8) {
		return corrupt(kv, "de-dup record");
	}
	*found = true;
	return KV_OK;
}

static int dedup_decode(struct kv *kv, const MDB_val *v, struct kv_reqid id, struct kv_result *res)
{
	int rv = kv_decode_result((const uint8_t *)v->mv_data + 8, v->mv_size - 8, res);
	if (rv == KV_ENOMEM) {
		return oom(kv, "reading a de-dup record");
	}
	if (rv != KV_OK) {
		return corrupt(kv, "de-dup record");
	}
	res->id = id;
	res->duplicate = true;
	return KV_OK;
}

/* Look up a remembered result. *old_time is set when a record exists, expired or not (an expired
 * one is overwritten together with its expiry index entry). */
static int dedup_lookup(struct apply *a, struct kv_reqid id, struct kv_result *res, bool *have_old,
                        uint64_t *old_time)
{
	MDB_val v;
	int rv = dedup_get(a->kv, a->txn, id, &v, have_old);
	if (rv != KV_OK || !*have_old) {
		return rv;
	}
	*old_time = kv_get_le64(v.mv_data);
	if (dedup_expired(*old_time, a->time_ms)) {
		return KV_OK;
	}
	return dedup_decode(a->kv, &v, id, res);
}

static int dedup_record(struct apply *a, struct kv_reqid id, const struct kv_result *res,
                        bool have_old, uint64_t old_time)
{
	uint8_t key[REQID_LEN], ekey[DEXP_KEY_LEN];
	MDB_val k = {REQID_LEN, key}, v, ek = {DEXP_KEY_LEN, ekey}, ev = {0, NULL};
	struct kv_writer w = {0};
	int rc;

	reqid_key(key, id);
	if (have_old) {
		dexp_key(ekey, old_time, id);
		rc = mdb_del(a->txn, a->kv->dbi[DB_DEXP], &ek, NULL);
		if (rc != 0 && rc != MDB_NOTFOUND) {
			return fail(a->kv, rc, "deleting a de-dup expiry");
		}
	}
	kv_encode_result(&w, res);
	v.mv_size = 8 + w.len;
	v.mv_data = NULL;
	rc = mdb_put(a->txn, a->kv->dbi[DB_DEDUP], &k, &v, MDB_RESERVE);
	if (rc != 0) {
		return fail(a->kv, rc, "writing a de-dup record");
	}
	kv_put_le64(v.mv_data, a->time_ms);
	w.data = (uint8_t *)v.mv_data + 8;
	w.cap = w.len;
	w.len = 0;
	kv_encode_result(&w, res);
	if (w.overflow) {
		return corrupt(a->kv, "de-dup record size");
	}
	dexp_key(ekey, a->time_ms, id);
	rc = mdb_put(a->txn, a->kv->dbi[DB_DEXP], &ek, &ev, 0);
	return rc == 0 ? KV_OK : fail(a->kv, rc, "writing a de-dup expiry");
}

/* ------------------------------------------------------------------------------------------ */
/* Domain commands                                                                             */

struct tx_write {
	uint8_t type; /* KV_OP_PUT or KV_OP_DEL */
	uint8_t space;
	uint8_t *key; /* key and value share one allocation */
	size_t key_len;
	uint8_t *value;
	size_t value_len;
};

struct kv_tx {
	struct kv *kv;
	MDB_txn *txn;
	bool writable;
	int64_t revision;
	uint64_t time_ms;
	struct tx_write *writes;
	unsigned n_writes, cap_writes;
};

static void tx_writes_free(struct kv_tx *tx)
{
	for (unsigned i = 0; i < tx->n_writes; i++) {
		free(tx->writes[i].key);
	}
	free(tx->writes);
	tx->writes = NULL;
	tx->n_writes = tx->cap_writes = 0;
}

int kv_tx_get(struct kv_tx *tx, uint8_t space, struct kv_bytes key, struct kv_bytes *value)
{
	MDB_val k = mval(key), v;
	struct entry e;
	int rc;

	value->data = NULL;
	value->len = 0;
	if (space > KV_SPACE_LAST || key.len == 0 || key.len > KV_KEY_MAX) {
		return KV_ENOTFOUND; /* no such key can be stored */
	}
	rc = mdb_get(tx->txn, tx->kv->dbi[space_db(space)], &k, &v);
	if (rc == MDB_NOTFOUND) {
		return KV_ENOTFOUND;
	}
	if (rc != 0) {
		return fail(tx->kv, rc, "reading a key");
	}
	if (!parse_entry(&v, &e)) {
		return corrupt(tx->kv, "key record");
	}
	*value = e.value;
	return KV_OK;
}

int kv_tx_scan(struct kv_tx *tx, uint8_t space, struct kv_bytes prefix, struct kv_bytes from,
               kv_scan_fn fn, void *arg)
{
	struct kv_bytes start = key_cmp(from, prefix) > 0 ? from : prefix;
	MDB_cursor *cur;
	MDB_val k, v;
	struct entry e;
	int rc, rv = KV_OK;

	if (space > KV_SPACE_LAST || start.len > KV_KEY_MAX) {
		return KV_OK;
	}
	if ((rc = mdb_cursor_open(tx->txn, tx->kv->dbi[space_db(space)], &cur)) != 0) {
		return fail(tx->kv, rc, "opening a cursor");
	}
	k = mval(start);
	rc = mdb_cursor_get(cur, &k, &v, start.len == 0 ? MDB_FIRST : MDB_SET_RANGE);
	while (rc == 0 && has_prefix(vbytes(&k), prefix)) {
		if (!parse_entry(&v, &e)) {
			rv = corrupt(tx->kv, "key record");
			break;
		}
		if ((rv = fn(arg, vbytes(&k), e.value)) != 0) {
			rv = rv == 1 ? KV_OK : rv;
			break;
		}
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (rv == KV_OK && rc != 0 && rc != MDB_NOTFOUND) {
		rv = fail(tx->kv, rc, "scanning");
	}
	return rv;
}

static int tx_buffer(struct kv_tx *tx, uint8_t type, uint8_t space, struct kv_bytes key,
                     struct kv_bytes value)
{
	struct tx_write *w;

	if (!tx->writable) {
		return KV_EREADONLY;
	}
	if (space > KV_SPACE_LAST || key.len == 0 || key.len > KV_KEY_MAX || key.data == NULL ||
	    (value.len > 0 && value.data == NULL) || value.len > UINT32_MAX) {
		return KV_EMALFORMED;
	}
	if (!reserve((void **)&tx->writes, &tx->cap_writes, tx->n_writes, sizeof *tx->writes)) {
		return KV_ENOMEM;
	}
	w = &tx->writes[tx->n_writes];
	w->key = malloc(key.len + value.len);
	if (w->key == NULL) {
		return KV_ENOMEM;
	}
	memcpy(w->key, key.data, key.len);
	if (value.len > 0) {
		memcpy(w->key + key.len, value.data, value.len);
	}
	w->type = type;
	w->space = space;
	w->key_len = key.len;
	w->value = w->key + key.len;
	w->value_len = value.len;
	tx->n_writes++;
	return KV_OK;
}

int kv_tx_put(struct kv_tx *tx, uint8_t space, struct kv_bytes key, struct kv_bytes value)
{
	return tx_buffer(tx, KV_OP_PUT, space, key, value);
}

int kv_tx_del(struct kv_tx *tx, uint8_t space, struct kv_bytes key)
{
	struct kv_bytes none = {NULL, 0};
	return tx_buffer(tx, KV_OP_DEL, space, key, none);
}

int64_t kv_tx_revision(const struct kv_tx *tx)
{
	return tx->revision;
}

uint64_t kv_tx_time_ms(const struct kv_tx *tx)
{
	return tx->time_ms;
}

int kv_view_begin(struct kv *kv, struct kv_tx **out)
{
	struct kv_tx *tx = calloc(1, sizeof *tx);
	int64_t compact;
	int rc, rv;

	*out = NULL;
	if (tx == NULL) {
		return oom(kv, "beginning a view");
	}
	tx->kv = kv;
	if ((rc = mdb_txn_begin(kv->env, NULL, MDB_RDONLY, &tx->txn)) != 0) {
		free(tx);
		return fail(kv, rc, "beginning a view");
	}
	if ((rv = read_meta(kv, tx->txn, &tx->revision, &compact)) != KV_OK) {
		mdb_txn_abort(tx->txn);
		free(tx);
		return rv;
	}
	*out = tx;
	return KV_OK;
}

void kv_view_end(struct kv_tx *tx)
{
	if (tx != NULL) {
		mdb_txn_abort(tx->txn);
		free(tx);
	}
}

int kv_view_result(struct kv_tx *tx, struct kv_reqid id, struct kv_result *res, bool *found)
{
	MDB_val v;
	int rv = dedup_get(tx->kv, tx->txn, id, &v, found);
	if (rv != KV_OK || !*found) {
		return rv;
	}
	rv = dedup_decode(tx->kv, &v, id, res);
	*found = rv == KV_OK;
	return rv;
}

static const struct kv_handler *find_handler(const struct kv *kv, uint16_t call)
{
	for (unsigned i = 0; i < kv->n_handlers; i++) {
		if (kv->handlers[i].call == call) {
			return &kv->handlers[i];
		}
	}
	return NULL;
}

/* Run a domain command. Its buffered writes are applied only if the handler accepted it; they
 * then share one revision, as the writes of a TXN do. */
static int apply_call(struct apply *a, const struct kv_op *op, struct kv_result *res)
{
	const struct kv_handler *h = find_handler(a->kv, op->call);
	struct kv_tx tx = {.kv = a->kv,
	                   .txn = a->txn,
	                   .writable = true,
	                   .revision = a->base + 1,
	                   .time_ms = a->time_ms};
	struct kv_call_out out = {0};
	int rv;

	if (h == NULL) {
		res->status = KV_R_INVALID;
		if (asprintf(&res->message, "no handler for domain command %u", op->call) < 0) {
			res->message = NULL;
			return oom(a->kv, "reporting an unknown domain command");
		}
		return KV_OK;
	}
	rv = h->fn(h->data, &tx, op->value, &out);
	if (rv != KV_OK) {
		tx_writes_free(&tx);
		free(out.reply);
		if (rv == KV_ENOMEM) {
			return oom(a->kv, "running a domain command");
		}
		if (rv != KV_EIO) {
			snprintf(a->kv->errmsg, sizeof a->kv->errmsg,
			         "domain command %u failed with error %d", op->call, rv);
		}
		return KV_EIO;
	}
	res->reply = out.reply;
	res->reply_len = out.reply_len;
	res->status = out.refused ? KV_R_REFUSED : KV_R_OK;
	for (unsigned i = 0; i < tx.n_writes && !out.refused && rv == KV_OK; i++) {
		const struct tx_write *w = &tx.writes[i];
		struct kv_op wop = {.type = w->type,
		                    .space = w->space,
		                    .key = {w->key, w->key_len},
		                    .value = {w->value, w->value_len}};
		struct kv_op_result o = {0};
		bool cond_failed = false;

		rv = w->type == KV_OP_PUT ? apply_put(a, &wop, &o, &cond_failed)
		                          : apply_del(a, &wop, &o);
	}
	tx_writes_free(&tx);
	return rv;
}

static int apply_cmd(struct apply *a, struct kv_bytes enc, struct kv_result *res)
{
	struct kv_cmd cmd;
	const char *why = NULL;
	void *mem = NULL;
	bool dedup, have_old = false, cond_failed = false;
	uint64_t old_time = 0;
	int rv;

	rv = kv_decode_cmd(enc, &cmd, &mem, &why);
	if (rv == KV_ENOMEM) {
		return oom(a->kv, "decoding a command");
	}
	if (rv != KV_OK) {
		/* Never remembered: without a decodable command there is nothing to de-duplicate,
		 * and the same bytes give the same answer again. */
		(void)kv_cmd_reqid(enc, &res->id);
		res->status = KV_R_INVALID;
		res->revision = a->rev;
		if (asprintf(&res->message, "malformed command: %s", why) < 0) {
			res->message = NULL;
			return oom(a->kv, "reporting a malformed command");
		}
		return KV_OK;
	}
	res->id = cmd.id;
	dedup = cmd.id.client != 0 || cmd.id.seq != 0;
	if (dedup) {
		rv = dedup_lookup(a, cmd.id, res, &have_old, &old_time);
		if (rv != KV_OK || res->duplicate) {
			goto out;
		}
	}
	a->base = a->rev;
	switch (cmd.op.type) {
	case KV_OP_PUT:
	case KV_OP_DEL:
		res->ops = calloc(1, sizeof *res->ops);
		if (res->ops == NULL) {
			rv = oom(a->kv, "applying a command");
			goto out;
		}
		res->n_ops = 1;
		if (cmd.op.type == KV_OP_PUT) {
			rv = apply_put(a, &cmd.op, &res->ops[0], &cond_failed);
		} else {
			rv = apply_del(a, &cmd.op, &res->ops[0]);
		}
		break;
	case KV_OP_TXN:
		rv = apply_txn(a, &cmd.op, res);
		break;
	case KV_OP_HASH:
		rv = hash_state(a->kv, a->txn, a->rev, &res->hash);
		break;
	case KV_OP_CALL:
		rv = apply_call(a, &cmd.op, res);
		break;
	default: /* NOOP */
		break;
	}
	if (rv != KV_OK) {
		goto out;
	}
	if (cmd.op.type != KV_OP_CALL) {
		res->status = cond_failed ? KV_R_COND_FAILED : KV_R_OK;
	}
	res->revision = a->rev;
	if (dedup) {
		rv = dedup_record(a, cmd.id, res, have_old, old_time);
	}
out:
	free(mem);
	return rv;
}

static int prune_history(struct apply *a, int64_t *compact, size_t budget)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	if (a->rev - a->kv->history + 1 > *compact) {
		*compact = a->rev - a->kv->history + 1;
	}
	if ((rc = mdb_cursor_open(a->txn, a->kv->dbi[DB_HIST], &cur)) != 0) {
		return fail(a->kv, rc, "opening a cursor");
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && budget > 0; budget--) {
		if (k.mv_size != HIST_KEY_LEN) {
			mdb_cursor_close(cur);
			return corrupt(a->kv, "history key");
		}
		if ((int64_t)kv_get_be64(k.mv_data) >= *compact) {
			break;
		}
		if ((rc = mdb_cursor_del(cur, 0)) != 0) {
			break;
		}
		rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	}
	mdb_cursor_close(cur);
	return rc == 0 || rc == MDB_NOTFOUND ? KV_OK : fail(a->kv, rc, "pruning history");
}

static int prune_dedup(struct apply *a, size_t budget)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	if (a->time_ms <= KV_DEDUP_MS) {
		return KV_OK; /* nothing can have expired yet */
	}
	if ((rc = mdb_cursor_open(a->txn, a->kv->dbi[DB_DEXP], &cur)) != 0) {
		return fail(a->kv, rc, "opening a cursor");
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && budget > 0; budget--) {
		uint8_t id[REQID_LEN];
		uint64_t t;
		MDB_val rk = {REQID_LEN, id}, rval;

		if (k.mv_size != DEXP_KEY_LEN) {
			mdb_cursor_close(cur);
			return corrupt(a->kv, "de-dup expiry key");
		}
		t = kv_get_be64(k.mv_data);
		if (!dedup_expired(t, a->time_ms)) {
			break;
		}
		memcpy(id, (const uint8_t *)k.mv_data + 8, REQID_LEN);
		if ((rc = mdb_cursor_del(cur, 0)) != 0) {
			break;
		}
		rc = mdb_get(a->txn, a->kv->dbi[DB_DEDUP], &rk, &rval);
		if (rc == 0 && rval.mv_size >= 8 && kv_get_le64(rval.mv_data) == t) {
			rc = mdb_del(a->txn, a->kv->dbi[DB_DEDUP], &rk, NULL);
		} else if (rc == MDB_NOTFOUND || rc == 0) {
			rc = 0; /* index entry of a record that was rewritten later */
		}
		if (rc != 0) {
			break;
		}
		rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	}
	mdb_cursor_close(cur);
	return rc == 0 || rc == MDB_NOTFOUND ? KV_OK : fail(a->kv, rc, "pruning de-dup records");
}

/* One attempt at a batch. On any error the transaction is aborted and *out left empty. */
static int apply_batch(struct kv *kv, const struct kv_bytes *cmds, unsigned n, uint64_t time_ms,
                       struct kv_apply_out *out)
{
	struct apply a = {.kv = kv, .time_ms = time_ms, .rev = kv->revision};
	int64_t compact = kv->compact;
	int rc, rv = KV_OK;

	out->results = calloc(n > 0 ? n : 1, sizeof *out->results);
	if (out->results == NULL) {
		return oom(kv, "applying a batch");
	}
	out->n_results = n;
	if ((rc = mdb_txn_begin(kv->env, NULL, 0, &a.txn)) != 0) {
		rv = fail(kv, rc, "beginning a write");
		a.txn = NULL;
		goto err;
	}
	for (unsigned i = 0; i < n; i++) {
		if ((rv = apply_cmd(&a, cmds[i], &out->results[i])) != KV_OK) {
			goto err;
		}
	}
	if ((rv = prune_history(&a, &compact, 2 * (size_t)a.n_events + PRUNE_BASE)) != KV_OK ||
	    (rv = prune_dedup(&a, 2 * (size_t)n + PRUNE_BASE)) != KV_OK) {
		goto err;
	}
	if ((a.rev != kv->revision || compact != kv->compact) &&
	    (rv = write_meta(kv, a.txn, a.rev, compact)) != KV_OK) {
		goto err;
	}
	rc = mdb_txn_commit(a.txn);
	a.txn = NULL;
	if (rc != 0) {
		rv = fail(kv, rc, "committing");
		goto err;
	}
	kv->revision = a.rev;
	kv->compact = compact;
	out->events = a.events;
	out->n_events = a.n_events;
	out->revision = a.rev;
	return KV_OK;

err:
	if (a.txn != NULL) {
		mdb_txn_abort(a.txn);
	}
	kv_events_free(a.events, a.n_events);
	kv_apply_out_free(out);
	return rv;
}

int kv_apply(struct kv *kv, const void *buf, size_t len, struct kv_apply_out *out)
{
	struct kv_bytes *cmds = NULL;
	unsigned n = 0;
	uint64_t time_ms;
	int rv;

	memset(out, 0, sizeof *out);
	rv = kv_split_batch(buf, len, &time_ms, &cmds, &n);
	if (rv == KV_ENOMEM) {
		return oom(kv, "splitting a batch");
	}
	if (rv != KV_OK) {
		out->results = calloc(1, sizeof *out->results);
		if (out->results == NULL) {
			return oom(kv, "reporting a malformed batch");
		}
		out->n_results = 1;
		out->results[0].status = KV_R_INVALID;
		out->results[0].revision = kv->revision;
		out->results[0].message = strdup("malformed batch");
		if (out->results[0].message == NULL) {
			kv_apply_out_free(out);
			return oom(kv, "reporting a malformed batch");
		}
		out->revision = kv->revision;
		return KV_OK;
	}
	while ((rv = space_reserve(kv, RESERVE_MIN + 3 * len)) == KV_OK &&
	       (rv = apply_batch(kv, cmds, n, time_ms, out)) == KV_EMAPFULL) {
		if ((rv = grow_map(kv)) != KV_OK) {
			break;
		}
	}
	free(cmds);
	return rv;
}

/* ------------------------------------------------------------------------------------------ */
/* History                                                                                     */

int kv_history(struct kv *kv, int64_t after_rev, uint8_t space, struct kv_bytes key, bool prefix,
               unsigned max, struct kv_event **events_out, unsigned *n_out)
{
	MDB_txn *txn;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	uint8_t start[HIST_KEY_LEN];
	struct kv_event *events = NULL;
	unsigned n = 0, cap = 0;
	int64_t rev, compact;
	int rc, rv;

	*events_out = NULL;
	*n_out = 0;
	if (space > KV_SPACE_LAST || after_rev < 0 || (key.len > 0 && key.data == NULL)) {
		return KV_EMALFORMED;
	}
	if ((rc = mdb_txn_begin(kv->env, NULL, MDB_RDONLY, &txn)) != 0) {
		return fail(kv, rc, "beginning a read");
	}
	if ((rv = read_meta(kv, txn, &rev, &compact)) != KV_OK) {
		goto done;
	}
	if (after_rev > rev) {
		rv = KV_EFUTURE;
		goto done;
	}
	if (after_rev + 1 < compact) {
		rv = KV_ECOMPACTED;
		goto done;
	}
	if ((rc = mdb_cursor_open(txn, kv->dbi[DB_HIST], &cur)) != 0) {
		rv = fail(kv, rc, "opening a cursor");
		goto done;
	}
	kv_put_be64(start, (uint64_t)after_rev + 1);
	kv_put_be32(start + 8, 0);
	k.mv_size = HIST_KEY_LEN;
	k.mv_data = start;
	/* Whole revisions only: a caller pages by passing the last event's revision as the next
	 * after_rev, which would skip the rest of a revision cut at max. */
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		const uint8_t *p = v.mv_data;
		struct kv_bytes ekey, evalue;
		uint32_t klen;

		if (k.mv_size != HIST_KEY_LEN || v.mv_size < HIST_HDR ||
		    (klen = kv_get_le32(p + 18)) > v.mv_size - HIST_HDR) {
			rv = corrupt(kv, "history record");
			goto done;
		}
		if (max > 0 && n >= max &&
		    (int64_t)kv_get_be64(k.mv_data) != events[n - 1].kv.mod_revision) {
			break;
		}
		ekey.data = p + HIST_HDR;
		ekey.len = klen;
		if (p[1] != space || (prefix ? !has_prefix(ekey, key) : key_cmp(ekey, key) != 0)) {
			continue;
		}
		evalue.data = p + HIST_HDR + klen;
		evalue.len = v.mv_size - HIST_HDR - klen;
		if (!reserve((void **)&events, &cap, n, sizeof *events)) {
			rv = oom(kv, "reading history");
			goto done;
		}
		events[n].type = p[0];
		events[n].space = p[1];
		if (fill_kv(&events[n].kv, ekey, evalue, (int64_t)kv_get_le64(p + 2),
		            (int64_t)kv_get_be64(k.mv_data), (int64_t)kv_get_le64(p + 10)) != 0) {
			rv = oom(kv, "reading history");
			goto done;
		}
		n++;
	}
	if (rc != 0 && rc != MDB_NOTFOUND) {
		rv = fail(kv, rc, "reading history");
	}

done:
	if (cur != NULL) {
		mdb_cursor_close(cur);
	}
	mdb_txn_abort(txn);
	if (rv != KV_OK) {
		kv_events_free(events, n);
		return rv;
	}
	*events_out = events;
	*n_out = n;
	return KV_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Snapshots                                                                                   */

/*
 * Format (version 1):
 *   "TBKS" | version u16 | flags u16 (0)
 *   for each database in enum order (meta, user, sys, domain, history, dedup, dedup_expiry):
 *     count u64 | count x (key bytes | value bytes)        in LMDB key order
 *   checksum u64: FNV-1a 64 of everything before it
 * The records are LMDB's own keys and values, so a restore streams them back with MDB_APPEND.
 * The checksum makes any corruption of the buffer detectable before the state is touched.
 */

static void release_snapshot_txn(struct kv_snapshot *snap)
{
	struct kv *kv = snap->kv;

	pthread_mutex_lock(&kv->mu);
	if (snap->txn != NULL) {
		mdb_txn_abort(snap->txn);
		snap->txn = NULL;
		kv->snapshots_busy--;
		pthread_cond_broadcast(&kv->cv);
	}
	pthread_mutex_unlock(&kv->mu);
}

int kv_snapshot_begin(struct kv *kv, struct kv_snapshot **out)
{
	struct kv_snapshot *snap = malloc(sizeof *snap);
	int rc;

	*out = NULL;
	if (snap == NULL) {
		return oom(kv, "beginning a snapshot");
	}
	snap->kv = kv;
	pthread_mutex_lock(&kv->mu);
	rc = mdb_txn_begin(kv->env, NULL, MDB_RDONLY, &snap->txn);
	if (rc == 0) {
		kv->snapshots_busy++;
	}
	pthread_mutex_unlock(&kv->mu);
	if (rc != 0) {
		free(snap);
		return fail(kv, rc, "beginning a snapshot");
	}
	*out = snap;
	return KV_OK;
}

/* Writes (or, with w->data NULL, sizes) every database. Runs on the snapshot's thread, so errors
 * are not recorded in kv->errmsg, which belongs to the loop thread. */
static int snapshot_serialize(struct kv_snapshot *snap, struct kv_writer *w)
{
	struct kv *kv = snap->kv;

	kvw_raw(w, SNAP_MAGIC, 4);
	kvw_u16(w, SNAP_VERSION);
	kvw_u16(w, 0);
	for (int db = 0; db < DB_COUNT; db++) {
		MDB_cursor *cur;
		MDB_stat st;
		MDB_val k, v;
		uint64_t count = 0;
		int rc;

		if (mdb_stat(snap->txn, kv->dbi[db], &st) != 0 ||
		    mdb_cursor_open(snap->txn, kv->dbi[db], &cur) != 0) {
			return KV_EIO;
		}
		kvw_u64(w, st.ms_entries);
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			if (v.mv_size > UINT32_MAX) {
				rc = EFBIG;
				break;
			}
			kvw_bytes(w, k.mv_data, k.mv_size);
			kvw_bytes(w, v.mv_data, v.mv_size);
			count++;
		}
		mdb_cursor_close(cur);
		if (rc != MDB_NOTFOUND || count != st.ms_entries) {
			return KV_EIO;
		}
	}
	kvw_u64(w, 0); /* the checksum's place */
	return KV_OK;
}

int kv_snapshot_write(struct kv_snapshot *snap, void **buf, size_t *len)
{
	struct kv_writer w = {0};
	int rv;

	*buf = NULL;
	*len = 0;
	if (snap->txn == NULL) {
		return KV_EIO; /* written already: the read view is gone */
	}
	if ((rv = snapshot_serialize(snap, &w)) != KV_OK) {
		goto out;
	}
	w.cap = w.len;
	w.len = 0;
	w.data = malloc(w.cap);
	if (w.data == NULL) {
		rv = KV_ENOMEM;
		goto out;
	}
	if ((rv = snapshot_serialize(snap, &w)) != KV_OK || w.overflow || w.len != w.cap) {
		free(w.data);
		rv = rv != KV_OK ? rv : KV_EIO;
		goto out;
	}
	kv_put_le64(w.data + w.len - 8, kv_fnv1a64(KV_FNV_OFFSET, w.data, w.len - 8));
	*buf = w.data;
	*len = w.len;
out:
	release_snapshot_txn(snap);
	return rv;
}

void kv_snapshot_end(struct kv_snapshot *snap)
{
	if (snap == NULL) {
		return;
	}
	release_snapshot_txn(snap);
	free(snap);
}

/* Where each database's records start in a validated snapshot, and how many there are. */
struct snap_view {
	struct kv_reader db[DB_COUNT];
	uint64_t count[DB_COUNT];
	int64_t rev, compact;
};

struct dedup_ref {
	const uint8_t *key;
	uint64_t time;
};

static int dedup_ref_cmp(const void *a, const void *b)
{
	return memcmp(((const struct dedup_ref *)a)->key, ((const struct dedup_ref *)b)->key,
	              REQID_LEN);
}

/* Check one record of database db. refs collects the de-dup records for the expiry check. */
static bool snapshot_check_record(struct snap_view *sv, int db, struct kv_bytes k,
                                  struct kv_bytes v, struct dedup_ref *refs, size_t *n_refs)
{
	const uint8_t *p = v.data;
	int64_t n;

	switch (db) {
	case DB_META:
		if (v.len != 8) {
			return false;
		}
		n = (int64_t)kv_get_le64(p);
		if (k.len == 7 && memcmp(k.data, "compact", 7) == 0) {
			sv->compact = n;
			return n >= 1;
		}
		if (k.len == 3 && memcmp(k.data, "rev", 3) == 0) {
			sv->rev = n;
			return n >= 0 && sv->compact <= n + 1;
		}
		return false;
	case DB_USER:
	case DB_SYS:
	case DB_DOMAIN: {
		MDB_val mv = {v.len, (void *)v.data};
		struct entry e;
		return k.len >= 1 && k.len <= KV_KEY_MAX && parse_entry(&mv, &e) && e.create >= 1 &&
		       e.mod >= e.create && e.mod <= sv->rev && e.version >= 1;
	}
	case DB_HIST: {
		int64_t rev;
		uint32_t klen;
		if (k.len != HIST_KEY_LEN || v.len < HIST_HDR) {
			return false;
		}
		rev = (int64_t)kv_get_be64(k.data);
		klen = kv_get_le32(p + 18);
		return rev >= 1 && rev <= sv->rev && (p[0] == KV_EV_PUT || p[0] == KV_EV_DELETE) &&
		       p[1] <= KV_SPACE_LAST && klen >= 1 && klen <= KV_KEY_MAX &&
		       klen <= v.len - HIST_HDR;
	}
	case DB_DEDUP:
		if (k.len != REQID_LEN || v.len < 8 ||
		    kv_decode_result(p + 8, v.len - 8, NULL) != KV_OK) {
			return false;
		}
		refs[*n_refs].key = k.data;
		refs[*n_refs].time = kv_get_le64(p);
		(*n_refs)++;
		return true;
	default: { /* DB_DEXP: must index exactly one de-dup record, at its time */
		struct dedup_ref want, *found;
		if (k.len != DEXP_KEY_LEN || v.len != 0) {
			return false;
		}
		want.key = k.data + 8;
		found = bsearch(&want, refs, *n_refs, sizeof *refs, dedup_ref_cmp);
		return found != NULL && found->time == kv_get_be64(k.data);
	}
	}
}

int kv_snapshot_intact(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	return p != NULL && len >= 8 + 8 &&
	               kv_get_le64(p + len - 8) == kv_fnv1a64(KV_FNV_OFFSET, p, len - 8)
	           ? KV_OK
	           : KV_EMALFORMED;
}

/* Validate the whole snapshot without touching the store. On KV_EMALFORMED, why says what is
 * wrong with it, for the operator who has to decide what to do about it. */
static int snapshot_validate(const uint8_t *p, size_t len, struct snap_view *sv, char *why,
                             size_t why_len)
{
	struct kv_reader r;
	const uint8_t *magic;
	uint16_t version, flags;
	struct dedup_ref *refs = NULL;
	size_t n_refs = 0;
	int rv = KV_EMALFORMED;

	memset(sv, 0, sizeof *sv);
	if (kv_snapshot_intact(p, len) != KV_OK) {
		snprintf(why, why_len, "its checksum is wrong: the data is damaged");
		return KV_EMALFORMED;
	}
	r.p = p;
	r.left = len - 8;
	if (!kvr_take(&r, 4, &magic) || memcmp(magic, SNAP_MAGIC, 4) != 0) {
		snprintf(why, why_len, "it is not a Tabby state snapshot");
		return KV_EMALFORMED;
	}
	if (!kvr_u16(&r, &version) || !kvr_u16(&r, &flags)) {
		snprintf(why, why_len, "its layout is wrong");
		return KV_EMALFORMED;
	}
	if (version != SNAP_VERSION || flags != 0) {
		/* Intact but from another version: a member of a newer Tabby leading this one. */
		snprintf(why, why_len,
		         "it is in format %u with flags %#x, and this Tabby reads format %u "
		         "without flags",
		         (unsigned)version, (unsigned)flags, (unsigned)SNAP_VERSION);
		return KV_EMALFORMED;
	}
	snprintf(why, why_len, "its layout is wrong");
	for (int db = 0; db < DB_COUNT; db++) {
		struct kv_bytes prev = {NULL, 0};
		uint64_t count;

		/* Each record takes at least its two length prefixes. */
		if (!kvr_u64(&r, &count) || count > r.left / 8) {
			goto out;
		}
		if (db == DB_META && count != 2) {
			goto out;
		}
		if (db == DB_DEDUP && count > 0) {
			refs = malloc(count * sizeof *refs);
			if (refs == NULL) {
				rv = KV_ENOMEM;
				goto out;
			}
		}
		if (db == DB_DEXP && count != n_refs) {
			goto out;
		}
		sv->db[db] = r;
		sv->count[db] = count;
		for (uint64_t i = 0; i < count; i++) {
			struct kv_bytes k, v;
			if (!kvr_bytes(&r, &k) || !kvr_bytes(&r, &v) || k.len == 0 ||
			    k.len > KV_KEY_MAX || (i > 0 && key_cmp(prev, k) >= 0) ||
			    !snapshot_check_record(sv, db, k, v, refs, &n_refs)) {
				goto out;
			}
			prev = k;
		}
	}
	if (r.left != 0) {
		goto out;
	}
	rv = KV_OK;
out:
	free(refs);
	return rv;
}

static int restore_once(struct kv *kv, const struct snap_view *sv)
{
	MDB_txn *txn;
	int rc;

	if ((rc = mdb_txn_begin(kv->env, NULL, 0, &txn)) != 0) {
		return fail(kv, rc, "beginning a restore");
	}
	for (int db = 0; db < DB_COUNT; db++) {
		if ((rc = mdb_drop(txn, kv->dbi[db], 0)) != 0) {
			goto err;
		}
	}
	for (int db = 0; db < DB_COUNT; db++) {
		struct kv_reader r = sv->db[db];
		for (uint64_t i = 0; i < sv->count[db]; i++) {
			struct kv_bytes k, v;
			MDB_val mk, mv;
			if (!kvr_bytes(&r, &k) || !kvr_bytes(&r, &v)) {
				mdb_txn_abort(txn);
				return KV_EMALFORMED; /* unreachable: validated */
			}
			mk = mval(k);
			mv = mval(v);
			if ((rc = mdb_put(txn, kv->dbi[db], &mk, &mv, MDB_APPEND)) != 0) {
				goto err;
			}
		}
	}
	rc = mdb_txn_commit(txn);
	return rc == 0 ? KV_OK : fail(kv, rc, "committing a restore");
err:
	mdb_txn_abort(txn);
	return fail(kv, rc, "restoring");
}

int kv_restore(struct kv *kv, const void *buf, size_t len)
{
	struct snap_view sv;
	int rv;

	char why[128];
	if ((rv = snapshot_validate(buf, len, &sv, why, sizeof why)) != KV_OK) {
		if (rv == KV_EMALFORMED) {
			snprintf(kv->errmsg, sizeof kv->errmsg, "malformed snapshot: %s", why);
		}
		return rv == KV_ENOMEM ? oom(kv, "validating a snapshot") : rv;
	}
	while ((rv = space_reserve(kv, RESERVE_MIN + 2 * len)) == KV_OK &&
	       (rv = restore_once(kv, &sv)) == KV_EMAPFULL) {
		if ((rv = grow_map(kv)) != KV_OK) {
			return rv;
		}
	}
	if (rv == KV_OK) {
		kv->revision = sv.rev;
		kv->compact = sv.compact;
	}
	return rv;
}
