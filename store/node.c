/*
 * The store node: raft glue, write batching, forwarding, waiting for the local apply, linearizable
 * reads, watches and membership changes. See store.h for the contract.
 *
 * Every call into raft happens from the prepare handle or a timer, never from inside a raft
 * callback or the state machine's apply: callers may submit new work from their callbacks, and
 * that work is only queued here.
 *
 * The life of a write on the leader:
 *
 *   store_write() --> pending queue --prepare--> batch (one raft entry) --raft_apply-->
 *   commit --> fsm_apply() on every replica --> the replica that owns the request id completes it
 *
 * and on a follower the batch goes to the leader through the forward hook instead of raft_apply;
 * the leader puts the forwarded commands into its own batches, and the follower's request is
 * completed when the follower's own replica applies the entry. Request ids are (a random client
 * id drawn when the node starts, sequence), so the replica that applies an entry can tell which
 * commands are its own, and a restarted node never reuses an id the state machine remembers.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <raft.h>
#include <raft/uv.h>

#include "store/fence.h"
#include "store/store.h"

#define MAX_INFLIGHT_APPLIES  3 /* raft entries appended but not yet applied, on the leader */
#define MAX_INFLIGHT_FORWARDS 4 /* forwarded batches awaiting the leader's answer */
#define MAX_BATCH_COMMANDS    8192
#define MAX_BATCH_BYTES       (4u << 20)
#define TICK_MS               50
#define FORWARD_BACKOFF_MS    50
#define SYNC_TIMEOUT_MS       10000
/* How long the leader waits, after its commit index last moved, before it sends the followers
 * the commit index on its own (see send_commit()). libuv's clock counts whole milliseconds, so
 * 2 ms means between 1 and 2. */
#define COMMIT_SEND_DELAY_MS 2
#define HASH_RING            64
#define SPACE_RETRY_MS       1000 /* how often a short reserve is retried */
#define SPACE_TRANSFER_MS    5000 /* how often a member short of space hands leadership over */
/* How long a leader whose log is short goes on proposing, so that the hand-over, not a refusal,
 * is what writes meet when another voter can take the lead (raft keeps segments ready ahead). */
#define SPACE_REFUSE_MS 2000
#define LAG_SAMPLE_MS   500 /* how often the leader samples its followers' progress */
/* Free space the raft log needs: two of raft's 8 MiB segments, the one it prepares next and the
 * one after (raft keeps that many ready). */
#define RAFT_LOG_ROOM (16u << 20)

/* What troubles this member's data directory (space_check()): no reserve for the state, too
 * little room for the raft log, or raft log writes that fail although statvfs() shows room (an
 * I/O error, or a thin-provisioned volume whose pool is exhausted). */
enum { SPACE_STATE = 1, SPACE_LOG = 2, SPACE_DISK = 3 };

enum { W_QUEUED = 1, W_SENT = 2 };

/* One replicated member as the leader tracks it: it has lacked index `mark`, an index the
 * leader had committed, since `since`. */
struct lag {
	uint64_t id;
	uint64_t mark;
	uint64_t since; /* loop ms */
};

/* ------------------------------------------------------------------------------------------ */
/* Lists                                                                                       */

static void list_init(struct store_list *l)
{
	l->prev = l->next = l;
}

static bool list_empty(const struct store_list *l)
{
	return l->next == l;
}

static void list_insert_tail(struct store_list *l, struct store_list *e)
{
	e->prev = l->prev;
	e->next = l;
	l->prev->next = e;
	l->prev = e;
}

static void list_insert_head(struct store_list *l, struct store_list *e)
{
	e->next = l->next;
	e->prev = l;
	l->next->prev = e;
	l->next = e;
}

/* Everything in src, in order, into the empty list dst; src is left empty. */
static void list_move_all(struct store_list *dst, struct store_list *src)
{
	list_init(dst);
	if (!list_empty(src)) {
		dst->next = src->next;
		dst->prev = src->prev;
		dst->next->prev = dst;
		dst->prev->next = dst;
		list_init(src);
	}
}

static void list_remove(struct store_list *e)
{
	e->prev->next = e->next;
	e->next->prev = e->prev;
	e->prev = e->next = e;
}

#define CONTAINER_OF(ptr, type, field) ((type *)((char *)(ptr)-offsetof(type, field)))

/* ------------------------------------------------------------------------------------------ */
/* State                                                                                       */

/* A command a follower forwarded, queued on the leader. */
struct fgroup {
	store_forward_done done;
	void *done_data;
	unsigned pending; /* items not yet committed */
	unsigned refs;    /* items alive */
	bool finished;
};

struct fitem {
	struct store_list link;
	struct fgroup *group;
	void *buf; /* malloc()ed copy of one encoded command */
	size_t len;
};

/* One raft entry in flight on the leader. */
struct batch {
	struct raft_apply req;
	struct store *s;
	uint64_t *seqs; /* local writes in the entry, by sequence */
	unsigned n_seqs;
	struct fitem **fitems; /* forwarded commands in the entry (owned) */
	unsigned n_fitems;
};

/* One forwarded batch in flight on a follower. */
struct fwd {
	struct store *s;
	uint64_t *seqs;
	unsigned n_seqs;
	void *buf;
	size_t len;
};

/* A linearizable-read barrier: from a local store_sync() (cb) or a follower's read-index request
 * (rdone). */
enum { SY_NEW = 0, SY_BARRIER, SY_ASKED, SY_WAIT };
struct syncreq {
	struct store_list link;
	struct store *s;
	int phase;
	bool cancelled; /* finished (timed out) while raft or the hook still holds it */
	uint64_t index;
	uint64_t deadline;
	store_sync_cb cb;
	void *data;
	store_readindex_done rdone;
	void *rdata;
	struct raft_barrier barrier;
};

/* A membership change or a leadership transfer: raft's request, and whom to tell. */
struct change {
	union {
		struct raft_change req;
		struct raft_transfer transfer;
	};
	store_sync_cb cb;
	void *data;
};

enum { CH_ADD, CH_ASSIGN, CH_REMOVE, CH_TRANSFER };

struct election_barrier {
	struct raft_barrier req;
	struct store *s;
	uint64_t term;
};

struct store {
	uv_loop_t *loop;
	struct store_config cfg;
	char *data_dir;
	char *raft_dir;
	char *state_dir;
	char *peer_address;

	struct raft_io io;
	struct raft_uv_transport *transport; /* fence.h */
	uint64_t refused_connections;
	struct raft raft;
	struct raft_fsm fsm;
	struct kv *kv;
	bool io_inited, raft_inited, started, closing;
	char restore_err[512]; /* why the last snapshot restore failed (fsm_restore()) */
	void (*close_cb)(void *data);
	void *close_data;
	unsigned closing_handles;
	unsigned backups;   /* store_backup() workers running */
	bool free_deferred; /* closed, but a backup worker still reads the state */

	uv_prepare_t prepare;
	uv_timer_t tick;
	uv_timer_t commit_timer; /* leader: send_commit() once the commit index rests */
	raft_index commit_seen;  /* leader: the commit index drive() last saw */
	bool send_commit_now;    /* leader: a follower waits to apply what just committed */

	uint64_t client; /* request-id client: random per start, so ids never repeat */
	uint64_t seq;
	struct store_list pending;    /* local writes waiting to be batched or forwarded */
	struct store_write **buckets; /* local writes not yet completed, by seq */
	size_t n_buckets;
	size_t n_writes;

	struct store_list fpending; /* forwarded commands waiting to be batched (leader) */
	unsigned applies_inflight;
	unsigned forwards_inflight;
	uint64_t forward_backoff_until;

	bool was_leader;
	bool ready;
	bool barrier_inflight;
	uint64_t leader_term;

	/* Disk space (space_check()). */
	int space_err;        /* errno: kv_space_check()'s last answer, or ENOSPC for the log */
	int space_kind;       /* what is wrong: 0, SPACE_STATE, SPACE_LOG or SPACE_DISK */
	uint64_t log_free;    /* free bytes for the raft log, at the last check */
	uint64_t space_since; /* when this member became short, loop ms */
	int space_refuse;     /* leader: writes are refused with this (STORE_ENOSPC, _EDISK) */
	char disk_error[RAFT_ERRMSG_BUF_SIZE]; /* SPACE_DISK: what raft's log writes fail with */
	uint64_t space_cured;                  /* when a shortage of space last ended, loop ms */
	uint64_t space_checked;                /* when the reserve was last retried, loop ms */
	uint64_t space_transfer; /* when leadership may next be handed over, loop ms */
	bool space_transferring;
	struct raft_transfer space_xfer;

	/* Leader: how far each replicated member trails (lag_sample()). */
	struct lag *lags;
	unsigned n_lags;
	uint64_t lag_term;    /* the term the records belong to */
	uint64_t lag_sampled; /* loop ms */
	uint64_t lead_since;  /* when this node was first seen leading in lag_term, loop ms */

	struct store_list syncs;
	struct store_list watches;
	struct store_list *watch_cursor; /* dispatch_events(): the watch it visits next */

	struct {
		int64_t rev;
		uint64_t hash;
	} hashes[HASH_RING];
	unsigned hash_next;

	uint64_t entries_applied;
	uint64_t commands_applied;
	uint64_t snapshots_taken;
	uint64_t snapshots_restored;
	/* A damaged snapshot that raft did not send (snapshot_check(), on a worker thread), and
	 * its replacement (snapshot_replace()). */
	atomic_bool snap_damaged;
	uint64_t snapshots_damaged;
	/* raft's load at start runs the same check (raft patch 0026), on the loop thread: a
	 * damaged snapshot of this member's own is skipped and reported (load_fallback()), not
	 * taken for one to send. */
	atomic_bool loading;
	enum {
		REPLACE_NONE,
		REPLACE_WAITING, /* the threshold is down to one entry until the snapshot begins */
		REPLACE_WRITING, /* begun; until its file is written (or fails) */
	} snap_replace;
	unsigned snap_threshold; /* raft's snapshot threshold for this member */
	struct store_latency lat;
	struct kv_snapshot *snap;
	struct raft_buffer *snap_bufs;
};

static const double latency_bounds_us[STORE_LATENCY_BUCKETS] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 1e308};

const char *store_strerror(int code)
{
	switch (code) {
	case STORE_OK:
		return "ok";
	case STORE_ENOLEADER:
		return "no leader is available";
	case STORE_ETIMEDOUT:
		return "timed out; the write may or may not have been applied";
	case STORE_ESHUTDOWN:
		return "the store is shutting down";
	case STORE_ENOMEM:
		return "out of memory";
	case STORE_EINVAL:
		return "invalid request";
	case STORE_EIO:
		return "storage failure";
	case STORE_ECOMPACTED:
		return "the requested revision has been compacted";
	case STORE_ENOTLEADER:
		return "this member is not the leader";
	case STORE_ENOSPC:
		return "no space left for the replicated state on the leader's disk";
	case STORE_EDISK:
		return "the leader cannot write its raft log to its disk";
	case STORE_ECHANGE:
		return "the membership change did not complete (the member must be running and "
		       "reachable at its peer address to catch up with the log)";
	}
	return code < 0 ? strerror(-code) : "unknown error";
}

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static char *xasprintf(const char *fmt, const char *a, const char *b)
{
	char *out = NULL;
	if (asprintf(&out, fmt, a, b) < 0) {
		return NULL;
	}
	return out;
}

/* raft's message for its last failure, without the "io: " it puts before the disk backend's
 * own messages, which says nothing to an operator. */
static const char *raft_msg(struct store *s)
{
	const char *m = raft_errmsg(&s->raft);
	return m != NULL && strncmp(m, "io: ", 4) == 0 ? m + 4 : m;
}

static void set_err(char **errmsg, const char *what, const char *detail)
{
	if (errmsg != NULL) {
		*errmsg = xasprintf("%s: %s", what, detail);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* The table of local writes awaiting their result                                            */

static size_t bucket_of(const struct store *s, uint64_t seq)
{
	return (size_t)(seq * 0x9E3779B97F4A7C15ull >> 20) & (s->n_buckets - 1);
}

static int writes_grow(struct store *s)
{
	size_t n = s->n_buckets ? s->n_buckets * 2 : 1024;
	struct store_write **b = calloc(n, sizeof *b);
	if (b == NULL) {
		return STORE_ENOMEM;
	}
	struct store_write **old = s->buckets;
	size_t n_old = s->n_buckets;
	s->buckets = b;
	s->n_buckets = n;
	for (size_t i = 0; i < n_old; i++) {
		struct store_write *w = old[i];
		while (w != NULL) {
			struct store_write *next = w->next_in_bucket;
			size_t k = bucket_of(s, w->id.seq);
			w->next_in_bucket = b[k];
			b[k] = w;
			w = next;
		}
	}
	free(old);
	return STORE_OK;
}

static int writes_add(struct store *s, struct store_write *w)
{
	if (s->n_writes + 1 > s->n_buckets * 2) {
		int rv = writes_grow(s);
		if (rv != 0) {
			return rv;
		}
	}
	size_t k = bucket_of(s, w->id.seq);
	w->next_in_bucket = s->buckets[k];
	s->buckets[k] = w;
	s->n_writes++;
	return STORE_OK;
}

static struct store_write *writes_take(struct store *s, uint64_t seq)
{
	if (s->n_buckets == 0) {
		return NULL;
	}
	struct store_write **p = &s->buckets[bucket_of(s, seq)];
	for (; *p != NULL; p = &(*p)->next_in_bucket) {
		if ((*p)->id.seq == seq) {
			struct store_write *w = *p;
			*p = w->next_in_bucket;
			s->n_writes--;
			return w;
		}
	}
	return NULL;
}

static struct store_write *writes_find(struct store *s, uint64_t seq)
{
	if (s->n_buckets == 0) {
		return NULL;
	}
	struct store_write *w = s->buckets[bucket_of(s, seq)];
	while (w != NULL && w->id.seq != seq) {
		w = w->next_in_bucket;
	}
	return w;
}

/* Finish a local write that has already been taken out of the table. */
static void write_finish(struct store *s, struct store_write *w, int status,
                         const struct kv_result *res)
{
	if (w->state == W_QUEUED) {
		list_remove(&w->link);
	}
	w->state = 0;
	free(w->encoded);
	w->encoded = NULL;
	if (status == STORE_OK) {
		double us = (double)(uv_hrtime() - w->start_ns) / 1000.0;
		for (int i = 0; i < STORE_LATENCY_BUCKETS; i++) {
			if (us <= latency_bounds_us[i]) {
				s->lat.count[i]++;
			}
		}
		s->lat.total++;
		s->lat.sum_us += us;
	}
	w->cb(w, status, res);
}

/* A write whose entry failed or whose forward failed goes back into the queue where its seq puts
 * it, so the writes go out again in the order they were made: failures come an entry or a
 * forward at a time, and putting each write at the head reversed them (PUT k=1, k=2, k=3 ended
 * with k=1; a DEL could overtake its ADD). New writes take increasing seqs at the tail, so the
 * queue stays in seq order. */
static void write_requeue(struct store *s, uint64_t seq)
{
	struct store_write *w = writes_find(s, seq);
	if (w == NULL || w->state != W_SENT) {
		return;
	}
	struct store_list *at = s->pending.next;
	while (at != &s->pending && CONTAINER_OF(at, struct store_write, link)->id.seq < seq) {
		at = at->next;
	}
	w->state = W_QUEUED;
	list_insert_tail(at, &w->link); /* before at */
}

/* ------------------------------------------------------------------------------------------ */
/* Forward groups (leader side)                                                                */

static void fitem_release(struct fitem *it)
{
	struct fgroup *g = it->group;
	free(it->buf);
	free(it);
	if (--g->refs == 0) {
		if (!g->finished) {
			g->finished = true;
			g->done(g->done_data, STORE_ENOTLEADER);
		}
		free(g);
	}
}

static void fgroup_fail(struct fgroup *g, int status)
{
	if (!g->finished) {
		g->finished = true;
		g->done(g->done_data, status);
	}
}

/* Leadership ended: forwarded commands not yet in an entry go back to their senders. */
static void fpending_fail_all(struct store *s, int status)
{
	while (!list_empty(&s->fpending)) {
		struct fitem *it = CONTAINER_OF(s->fpending.next, struct fitem, link);
		list_remove(&it->link);
		fgroup_fail(it->group, status);
		fitem_release(it);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* The state machine                                                                           */

/* A callback may stop any watch, the next one too: the next one is kept in s->watch_cursor,
 * which store_watch_stop() moves on when it removes it. */
static void dispatch_events(struct store *s, const struct kv_apply_out *out)
{
	for (unsigned i = 0; i < out->n_events; i++) {
		const struct kv_event *ev = &out->events[i];
		struct store_list *l = s->watches.next;
		while (l != &s->watches) {
			s->watch_cursor = l->next;
			struct store_watch *w = CONTAINER_OF(l, struct store_watch, link);
			if (w->space == ev->space && ev->kv.mod_revision >= w->start_rev &&
			    (w->prefix ? ev->kv.key_len >= w->key_len &&
			                     memcmp(ev->kv.key, w->key, w->key_len) == 0
			               : ev->kv.key_len == w->key_len &&
			                     memcmp(ev->kv.key, w->key, w->key_len) == 0)) {
				w->cb(w, ev, STORE_OK);
			}
			l = s->watch_cursor;
		}
	}
	s->watch_cursor = NULL;
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
	struct store *s = fsm->data;
	struct kv_apply_out out;
	*result = NULL;

	int rv = kv_apply(s->kv, buf->base, buf->len, &out);
	if (rv != KV_OK) {
		/* Skipping the entry would make this replica diverge and retrying cannot help:
		 * the host is broken. */
		if (s->cfg.fatal != NULL) {
			s->cfg.fatal(s->cfg.hook_data, kv_errmsg(s->kv));
		}
		return RAFT_IOERR;
	}
	s->entries_applied++;
	s->commands_applied += out.n_results;

	for (unsigned i = 0; i < out.n_results; i++) {
		struct kv_result *r = &out.results[i];
		if (r->status == KV_R_OK && r->n_ops == 0 && r->hash != 0) {
			s->hashes[s->hash_next].rev = r->revision;
			s->hashes[s->hash_next].hash = r->hash;
			s->hash_next = (s->hash_next + 1) % HASH_RING;
		}
		if (r->id.client != s->client || r->id.seq == 0) {
			continue;
		}
		struct store_write *w = writes_take(s, r->id.seq);
		if (w != NULL) {
			write_finish(s, w, STORE_OK, r);
		}
	}
	dispatch_events(s, &out);
	kv_apply_out_free(&out);
	return 0;
}

/* Snapshots run in two halves. fsm_snapshot() on the loop thread takes LMDB's consistent
 * read view at the applied index (cheap); fsm_snapshot_async() serializes that view on the
 * libuv worker thread that writes the snapshot file, while the loop goes on applying (our raft
 * patch 0002 moves that call off the loop); fsm_snapshot_finalize() on the loop frees it all. */
static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct store *s = fsm->data;
	if (s->snap != NULL) {
		return RAFT_BUSY;
	}
	if (kv_snapshot_begin(s->kv, &s->snap) != KV_OK) {
		s->snap = NULL;
		return RAFT_NOMEM;
	}
	if (s->snap_replace == REPLACE_WAITING) {
		/* The replacement of a damaged snapshot begins (snapshot_replace()). */
		s->snap_replace = REPLACE_WRITING;
		raft_set_snapshot_threshold(&s->raft, s->snap_threshold);
	}
	*bufs = NULL;
	*n_bufs = 0;
	return 0;
}

static int fsm_snapshot_async(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct store *s = fsm->data;
	void *data = NULL;
	size_t len = 0;
	if (s->snap == NULL || kv_snapshot_write(s->snap, &data, &len) != KV_OK) {
		return RAFT_NOMEM;
	}
	*bufs = malloc(sizeof **bufs);
	if (*bufs == NULL) {
		free(data);
		return RAFT_NOMEM;
	}
	(*bufs)[0].base = data;
	(*bufs)[0].len = len;
	*n_bufs = 1;
	return 0;
}

/* With snapshot_finalize set, raft leaves the buffers to us. */
static int fsm_snapshot_finalize(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct store *s = fsm->data;
	if (*n_bufs > 0) {
		s->snapshots_taken++;
	}
	/* raft calls this once the snapshot's file is written, or failed: either way a damaged
	 * one found from now on is worth another replacement. */
	if (s->snap_replace == REPLACE_WRITING) {
		s->snap_replace = REPLACE_NONE;
	}
	for (unsigned i = 0; i < *n_bufs; i++) {
		free((*bufs)[i].base);
	}
	free(*bufs);
	*bufs = NULL;
	*n_bufs = 0;
	if (s->snap != NULL) {
		kv_snapshot_end(s->snap);
		s->snap = NULL;
	}
	return 0;
}

/* Local writes the restored state already holds: they will never pass through fsm_apply(), but
 * their results are in its de-dup records, so they finish from there (otherwise each would wait
 * for its timeout and report that it may or may not have been applied). The rest wait on: their
 * entries follow the snapshot, or their forward fails and they go out again. Without memory for
 * this, they wait as well. */
static void finish_restored_writes(struct store *s)
{
	uint64_t *seqs = s->n_writes ? malloc(s->n_writes * sizeof *seqs) : NULL;
	struct kv_result *res = s->n_writes ? calloc(s->n_writes, sizeof *res) : NULL;
	struct kv_tx *tx = NULL;
	size_t n = 0;

	if (seqs == NULL || res == NULL || kv_view_begin(s->kv, &tx) != KV_OK) {
		goto out;
	}
	for (size_t b = 0; b < s->n_buckets; b++) {
		for (struct store_write *w = s->buckets[b]; w != NULL; w = w->next_in_bucket) {
			bool found = false;
			if (kv_view_result(tx, w->id, &res[n], &found) == KV_OK && found) {
				seqs[n++] = w->id.seq;
			}
		}
	}
	kv_view_end(tx);
	/* Finished only now: a callback may make new writes, which changes the table. */
	for (size_t i = 0; i < n; i++) {
		struct store_write *w = writes_take(s, seqs[i]);
		if (w != NULL) {
			write_finish(s, w, STORE_OK, &res[i]);
		}
	}
out:
	for (size_t i = 0; i < n; i++) {
		kv_result_free(&res[i]);
	}
	free(res);
	free(seqs);
}

/* A snapshot replaced the state while this member ran (an install from the leader). The changes
 * between the old revision and the snapshot's were never applied here one at a time, so no
 * watch can be given them: each watch ends with STORE_ECOMPACTED, as when it asks for history
 * that is gone, and its owner reads the state again. */
static void after_restore(struct store *s)
{
	struct store_list ended;
	list_move_all(&ended, &s->watches); /* a callback may start a new watch, which stays */
	while (!list_empty(&ended)) {
		struct store_watch *w = CONTAINER_OF(ended.next, struct store_watch, link);
		list_remove(&w->link);
		free(w->key);
		w->key = NULL;
		w->cb(w, NULL, STORE_ECOMPACTED);
	}
	finish_restored_writes(s);
}

/*
 * A snapshot that cannot be restored. Raft has already replaced its log up to the snapshot and
 * never tries the restore again, so a member that went on would acknowledge entries it can
 * never apply: its state frozen where it was, serving reads and watches from it as if healthy.
 * An install from the leader therefore ends this replica like a failed apply does (a host out
 * of space or memory restores it on restart; a damaged snapshot stops the restart with the
 * message). At start, store_start() reports it instead.
 */
static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	struct store *s = fsm->data;
	int rv = kv_restore(s->kv, buf->base, buf->len);
	if (rv != KV_OK) {
		snprintf(s->restore_err, sizeof s->restore_err,
		         "cannot restore the snapshot in %s: %s", s->raft_dir, kv_errmsg(s->kv));
		if (s->started && s->cfg.fatal != NULL) {
			s->cfg.fatal(s->cfg.hook_data, s->restore_err);
		}
		return rv == KV_EMALFORMED ? RAFT_CORRUPT
		       : rv == KV_ENOMEM   ? RAFT_NOMEM
		                           : RAFT_IOERR;
	}
	raft_free(buf->base);
	s->snapshots_restored++;
	after_restore(s);
	return 0;
}

/*
 * Damaged snapshots. raft checksums only a snapshot's metadata file; the data is ours, with
 * the state's own checksum, which every restore verifies. Before this check a leader sent a
 * data file that had rotted on its disk, as it was, to each follower that needed an install,
 * and each of them stopped on it (fsm_restore()): one bad file could take down every member
 * that fell behind or joined. Now the backend runs snapshot_check() on the data it loaded to
 * send (raft patch 0025), on its worker thread, and a damaged snapshot fails the load: raft
 * does not send it and tries the install again later.
 *
 * raft would go on loading the same damaged file until its next snapshot, up to a threshold
 * of entries away, so snapshot_replace() takes a new one at once, from this member's state:
 * that state is intact (every entry that built it was applied here; a restore verified the
 * snapshot it started from), only the file is not. The next attempt sends the new one.
 */
static int snapshot_check(void *data, const struct raft_buffer *buf, char *errmsg)
{
	struct store *s = data;
	if (kv_snapshot_intact(buf->base, buf->len) == KV_OK) {
		return 0;
	}
	if (atomic_load(&s->loading)) {
		/* raft skips it (patch 0026); load_fallback() says what became of it */
		snprintf(errmsg, RAFT_ERRMSG_BUF_SIZE,
		         "its data fails its checksum: it is damaged");
		return RAFT_CORRUPT;
	}
	atomic_store(&s->snap_damaged, true);
	snprintf(errmsg, RAFT_ERRMSG_BUF_SIZE, "the snapshot's data fails its checksum");
	return RAFT_CORRUPT;
}

static void replace_barrier_cb(struct raft_barrier *req, int status)
{
	(void)status;
	free(req);
}

/* On the loop, after snapshot_check() found the snapshot to send damaged, or after a start
 * that skipped a damaged one (load_fallback()); msg goes to the hook. raft takes a snapshot
 * after a step once the commit index is a threshold past the last one: the threshold drops to
 * one entry until that snapshot begins (fsm_snapshot()), and a barrier makes sure such an entry
 * comes even with no writes. */
static void snapshot_replace(struct store *s, const char *msg)
{
	s->snapshots_damaged++;
	if (s->snap_replace != REPLACE_NONE) {
		return; /* read again before its replacement was written: said already */
	}
	if (s->cfg.snapshot_damaged != NULL) {
		s->cfg.snapshot_damaged(s->cfg.hook_data, msg);
	}
	s->snap_replace = REPLACE_WAITING;
	raft_set_snapshot_threshold(&s->raft, 1);
	if (raft_state(&s->raft) == RAFT_LEADER) {
		struct raft_barrier *req = calloc(1, sizeof *req);
		if (req != NULL && raft_barrier(&s->raft, req, replace_barrier_cb) != 0) {
			free(req); /* any later entry does as well */
		}
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Leader: batching                                                                            */

static void batch_free(struct batch *b)
{
	free(b->seqs);
	free(b->fitems);
	free(b);
}

static void batch_cb(struct raft_apply *req, int status, void *result)
{
	struct batch *b = req->data;
	struct store *s = b->s;
	(void)result;
	s->applies_inflight--;
	if (status != 0) {
		/* Not committed, or unknown (leadership lost): local writes try again through
		 * whoever leads now; the request id keeps a second application out. */
		for (unsigned i = 0; i < b->n_seqs; i++) {
			write_requeue(s, b->seqs[i]);
		}
	}
	if (status == 0 && b->n_fitems > 0) {
		/* Each forwarding follower answers its caller only once it has applied this. */
		s->send_commit_now = true;
	}
	for (unsigned i = 0; i < b->n_fitems; i++) {
		struct fitem *it = b->fitems[i];
		if (status == 0) {
			if (--it->group->pending == 0 && !it->group->finished) {
				it->group->finished = true;
				it->group->done(it->group->done_data, STORE_OK);
			}
		} else {
			fgroup_fail(it->group, s->closing ? STORE_ESHUTDOWN : STORE_ENOTLEADER);
		}
		fitem_release(it);
	}
	batch_free(b);
}

/* The items of the forward whose first item is at l: how many, and their bytes; *next is the
 * item after them. */
static void fgroup_span(const struct store *s, struct store_list *l, unsigned *n, size_t *bytes,
                        struct store_list **next)
{
	struct fgroup *g = CONTAINER_OF(l, struct fitem, link)->group;
	*n = 0;
	*bytes = 0;
	for (; l != &s->fpending && CONTAINER_OF(l, struct fitem, link)->group == g; l = l->next) {
		*bytes += CONTAINER_OF(l, struct fitem, link)->len;
		(*n)++;
	}
	*next = l;
}

/* Build one entry from the queues (local writes first, then forwarded commands) and append it. */
static void leader_flush_one(struct store *s)
{
	unsigned cap = 0;
	size_t bytes = 0;
	struct store_list *l, *next;
	unsigned n_local = 0, n_fwd = 0, gn = 0;
	size_t gbytes = 0;

	/* A follower's forward goes into one entry whole, or waits for the next: the leader
	 * answers it with one status, and refusing it for want of space (space_refuse_pending())
	 * while part of it is in an entry would tell the follower "not written" of writes that are
	 * then applied. Its items are contiguous, and it is no bigger than an entry. Local writes
	 * leave room for the first waiting forward, so that one always goes in this entry. */
	if (!list_empty(&s->fpending)) {
		fgroup_span(s, s->fpending.next, &gn, &gbytes, &next);
	}
	for (l = s->pending.next;
	     l != &s->pending && cap + gn < MAX_BATCH_COMMANDS && bytes + gbytes < MAX_BATCH_BYTES;
	     l = l->next) {
		bytes += CONTAINER_OF(l, struct store_write, link)->encoded_len;
		cap++;
		n_local++;
	}
	for (l = s->fpending.next; l != &s->fpending; l = next) {
		fgroup_span(s, l, &gn, &gbytes, &next);
		if (n_fwd > 0 &&
		    (cap + gn > MAX_BATCH_COMMANDS || bytes + gbytes > MAX_BATCH_BYTES)) {
			break;
		}
		bytes += gbytes;
		cap += gn;
		n_fwd += gn;
	}
	if (cap == 0) {
		return;
	}

	struct batch *b = calloc(1, sizeof *b);
	struct kv_bytes *cmds = calloc(cap, sizeof *cmds);
	if (b == NULL || cmds == NULL) {
		goto err;
	}
	b->s = s;
	b->seqs = calloc(n_local ? n_local : 1, sizeof *b->seqs);
	b->fitems = calloc(n_fwd ? n_fwd : 1, sizeof *b->fitems);
	if (b->seqs == NULL || b->fitems == NULL) {
		goto err;
	}
	unsigned k = 0;
	l = s->pending.next;
	for (unsigned i = 0; i < n_local; i++, l = l->next) {
		struct store_write *w = CONTAINER_OF(l, struct store_write, link);
		cmds[k].data = w->encoded;
		cmds[k++].len = w->encoded_len;
		b->seqs[i] = w->id.seq;
	}
	l = s->fpending.next;
	for (unsigned i = 0; i < n_fwd; i++, l = l->next) {
		struct fitem *it = CONTAINER_OF(l, struct fitem, link);
		cmds[k].data = it->buf;
		cmds[k++].len = it->len;
		b->fitems[i] = it;
	}

	struct raft_buffer rb;
	if (kv_join_batch(cmds, k, wall_ms(), &rb.base, &rb.len) != KV_OK) {
		goto err;
	}
	free(cmds);
	cmds = NULL;
	/* Take the items out of the queues before raft_apply: raft may apply earlier entries and
	 * run their callbacks from inside the call, and those may finish (and free) writes. */
	for (unsigned i = 0; i < n_local; i++) {
		struct store_write *w = CONTAINER_OF(s->pending.next, struct store_write, link);
		list_remove(&w->link);
		w->state = W_SENT;
	}
	for (unsigned i = 0; i < n_fwd; i++) {
		list_remove(s->fpending.next);
	}
	b->n_seqs = n_local;
	b->n_fitems = n_fwd;
	b->req.data = b;
	s->applies_inflight++;
	int rv = raft_apply(&s->raft, &b->req, &rb, 1, batch_cb);
	if (rv != 0) {
		/* raft refused the entry, so the buffer is still ours (patch 0022: once raft has
		 * the entry in its log it answers 0, whatever failed after that): it is not the
		 * leader, a majority of the voters lack 4 MiB of prepared log segments
		 * (RAFT_NOSPACE: right after start, or while preparing segments lags behind the
		 * writes), or it ran out of memory. Everything goes back to the head of its
		 * queue, in order, and the prepare handle re-routes it. */
		raft_free(rb.base);
		s->applies_inflight--;
		for (unsigned i = n_local; i-- > 0;) {
			write_requeue(s, b->seqs[i]);
		}
		for (unsigned i = n_fwd; i-- > 0;) {
			list_insert_head(&s->fpending, &b->fitems[i]->link);
		}
		batch_free(b);
	}
	return;

err:
	free(cmds);
	if (b != NULL) {
		batch_free(b);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Follower: forwarding                                                                        */

static void forward_done(void *data, int status)
{
	struct fwd *f = data;
	struct store *s = f->s;
	s->forwards_inflight--;
	if (status == STORE_ENOSPC || status == STORE_EDISK || status == STORE_EINVAL) {
		/* The leader keeps the lead only when no other member could take it: retrying
		 * cannot help until space is freed or the disk works again. A batch the leader
		 * refused as malformed or too large would be refused again. */
		for (unsigned i = 0; i < f->n_seqs; i++) {
			struct store_write *w = writes_take(s, f->seqs[i]);
			if (w != NULL) {
				write_finish(s, w, status, NULL);
			}
		}
	} else if (status != STORE_OK) {
		for (unsigned i = 0; i < f->n_seqs; i++) {
			write_requeue(s, f->seqs[i]);
		}
		s->forward_backoff_until = uv_now(s->loop) + FORWARD_BACKOFF_MS;
	}
	/* On success the writes stay SENT until this replica applies them (or time out). */
	free(f->seqs);
	free(f->buf);
	free(f);
}

static void follower_flush_one(struct store *s, uint64_t leader)
{
	unsigned n = 0;
	size_t bytes = 0;
	struct store_list *l;
	/* Within MAX_BATCH_BYTES unless the first command alone is bigger: the leader takes a
	 * forward body of that size and one command more (the agent's AGENT_MAX_FORWARD_BODY). */
	for (l = s->pending.next; l != &s->pending && n < MAX_BATCH_COMMANDS; l = l->next) {
		size_t len = CONTAINER_OF(l, struct store_write, link)->encoded_len;
		if (n > 0 && bytes + len > MAX_BATCH_BYTES) {
			break;
		}
		bytes += len;
		n++;
	}
	if (n == 0) {
		return;
	}
	struct fwd *f = calloc(1, sizeof *f);
	struct kv_bytes *cmds = calloc(n, sizeof *cmds);
	if (f == NULL || cmds == NULL || (f->seqs = calloc(n, sizeof *f->seqs)) == NULL) {
		goto err;
	}
	l = s->pending.next;
	for (unsigned i = 0; i < n; i++, l = l->next) {
		struct store_write *w = CONTAINER_OF(l, struct store_write, link);
		cmds[i].data = w->encoded;
		cmds[i].len = w->encoded_len;
		f->seqs[i] = w->id.seq;
	}
	void *rbuf;
	if (kv_join_batch(cmds, n, 0, &rbuf, &f->len) != KV_OK) {
		goto err;
	}
	/* The hook may outlive raft's allocator assumptions: hand it plain malloc() memory. */
	f->buf = malloc(f->len ? f->len : 1);
	if (f->buf == NULL) {
		raft_free(rbuf);
		goto err;
	}
	memcpy(f->buf, rbuf, f->len);
	raft_free(rbuf);
	free(cmds);
	cmds = NULL;
	f->s = s;
	f->n_seqs = n;
	for (unsigned i = 0; i < n; i++) {
		struct store_write *w = CONTAINER_OF(s->pending.next, struct store_write, link);
		list_remove(&w->link);
		w->state = W_SENT;
	}
	s->forwards_inflight++;
	if (s->cfg.forward(s->cfg.hook_data, leader, f->buf, f->len, forward_done, f) != 0) {
		/* Not sent, and done never comes: the writes wait in the queue for the backoff. */
		s->forwards_inflight--;
		for (unsigned i = 0; i < n; i++) {
			write_requeue(s, f->seqs[i]);
		}
		s->forward_backoff_until = uv_now(s->loop) + FORWARD_BACKOFF_MS;
		free(f->seqs);
		free(f->buf);
		free(f);
	}
	return;
err:
	free(cmds);
	if (f != NULL) {
		free(f->seqs);
		free(f);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Linearizable reads                                                                          */

static void sync_finish(struct store *s, struct syncreq *q, int status)
{
	(void)s;
	list_remove(&q->link);
	if (q->cb != NULL) {
		q->cb(q->data, status);
	} else if (q->rdone != NULL) {
		q->rdone(q->rdata, status, q->index);
	}
	if (q->phase == SY_BARRIER || q->phase == SY_ASKED) {
		/* raft or the hook still holds q: free it when they let go. */
		q->cancelled = true;
		return;
	}
	free(q);
}

static void sync_barrier_cb(struct raft_barrier *req, int status)
{
	struct syncreq *q = req->data;
	struct store *s = q->s;
	if (q->cancelled) {
		free(q);
		return;
	}
	if (status != 0) {
		/* Leadership moved: start over through the new leader. */
		q->phase = SY_NEW;
		return;
	}
	q->index = raft_last_applied(&s->raft);
	if (q->rdone != NULL) {
		/* A follower asked for this read index and waits to apply up to it. */
		s->send_commit_now = true;
		q->phase = SY_WAIT;
		sync_finish(s, q, STORE_OK);
		return;
	}
	q->phase = SY_WAIT;
}

static void sync_readindex_done(void *data, int status, uint64_t index)
{
	struct syncreq *q = data;
	if (q->cancelled) {
		free(q);
		return;
	}
	if (status != STORE_OK) {
		q->phase = SY_NEW;
		q->s->forward_backoff_until = uv_now(q->s->loop) + FORWARD_BACKOFF_MS;
		return;
	}
	q->index = index;
	q->phase = SY_WAIT;
}

static void syncs_process(struct store *s, uint64_t leader)
{
	uint64_t now = uv_now(s->loop);
	raft_index applied = raft_last_applied(&s->raft);
	struct store_list *l = s->syncs.next;
	while (l != &s->syncs) {
		struct syncreq *q = CONTAINER_OF(l, struct syncreq, link);
		l = l->next;
		if (q->phase == SY_WAIT && applied >= q->index) {
			sync_finish(s, q, STORE_OK);
			continue;
		}
		if (now >= q->deadline) {
			sync_finish(s, q, STORE_ETIMEDOUT);
			continue;
		}
		if (q->phase != SY_NEW) {
			continue;
		}
		if (leader == s->cfg.id && s->ready) {
			q->barrier.data = q;
			if (raft_barrier(&s->raft, &q->barrier, sync_barrier_cb) == 0) {
				q->phase = SY_BARRIER;
			}
		} else if (q->rdone == NULL && leader != 0 && leader != s->cfg.id &&
		           s->cfg.readindex != NULL && now >= s->forward_backoff_until) {
			q->phase = SY_ASKED;
			if (s->cfg.readindex(s->cfg.hook_data, leader, sync_readindex_done, q) !=
			    0) {
				q->phase = SY_NEW;
				s->forward_backoff_until = now + FORWARD_BACKOFF_MS;
			}
		} else if (q->rdone != NULL && leader != s->cfg.id) {
			sync_finish(s, q, STORE_ENOTLEADER);
		}
	}
}

/* ------------------------------------------------------------------------------------------ */
/* The driver                                                                                  */

static void election_barrier_cb(struct raft_barrier *req, int status)
{
	struct election_barrier *eb = req->data;
	struct store *s = eb->s;
	s->barrier_inflight = false;
	if (status == 0 && !s->closing && raft_state(&s->raft) == RAFT_LEADER &&
	    raft_current_term(&s->raft) == eb->term) {
		s->ready = true;
	}
	free(eb);
}

static uint64_t current_leader(struct store *s)
{
	raft_id id = 0;
	const char *addr = NULL;
	raft_leader(&s->raft, &id, &addr);
	return id;
}

/* Notice leadership changes. A new leader appends a barrier and serves nothing until it is
 * applied (raft's legacy API has no state callback, so this runs every loop iteration). */
static void track_leadership(struct store *s)
{
	bool leader = raft_state(&s->raft) == RAFT_LEADER;
	uint64_t term = raft_current_term(&s->raft);
	if (leader && (!s->was_leader || term != s->leader_term)) {
		s->was_leader = true;
		s->ready = false;
		s->leader_term = term;
	}
	if (!leader && s->was_leader) {
		s->was_leader = false;
		s->ready = false;
		fpending_fail_all(s, STORE_ENOTLEADER);
	}
	if (leader && !s->ready && !s->barrier_inflight) {
		struct election_barrier *eb = calloc(1, sizeof *eb);
		if (eb == NULL) {
			return;
		}
		eb->s = s;
		eb->term = term;
		eb->req.data = eb;
		if (raft_barrier(&s->raft, &eb->req, election_barrier_cb) == 0) {
			s->barrier_inflight = true;
		} else {
			free(eb);
		}
	}
}

static void commit_timer_cb(uv_timer_t *t)
{
	struct store *s = t->data;
	if (s->started && !s->closing) {
		raft_send_commit(&s->raft);
	}
}

/* The leader's followers learn its commit index from the AppendEntries they get, and apply only
 * up to it. While writes keep coming, each write's entries carry the commit index of the ones
 * before; but after the last write of a burst nothing would carry it until the next heartbeat,
 * 100-200 ms later. So once the commit index rests for COMMIT_SEND_DELAY_MS, the leader sends
 * it on its own (raft_send_commit(); our raft patch 0006). When a follower is known to be
 * waiting (a forwarded write, a read index), it sends at once. Sending after every commit, as
 * etcd's raft does, cost a single steady writer two more messages, two answers and two wake-ups
 * per write, all of which the next write's entries make unnecessary. Runs outside raft's
 * callbacks, which raft_send_commit() requires. */
static void send_commit(struct store *s)
{
	raft_index commit = raft_commit_index(&s->raft);
	if (commit != s->commit_seen) {
		s->commit_seen = commit;
		if (!s->send_commit_now) {
			uv_timer_start(&s->commit_timer, commit_timer_cb, COMMIT_SEND_DELAY_MS, 0);
		}
	}
	if (s->send_commit_now) {
		s->send_commit_now = false;
		uv_timer_stop(&s->commit_timer);
		raft_send_commit(&s->raft);
	}
}

static void space_transfer_cb(struct raft_transfer *req)
{
	struct store *s = req->data;
	s->space_transferring = false;
}

/* Free bytes on the file system that holds dir, as this process may use them (root may use
 * the blocks ext4 keeps back for it); UINT64_MAX when statvfs() cannot say. */
static uint64_t fs_free(const char *dir)
{
	struct statvfs v;
	if (statvfs(dir, &v) != 0) {
		return UINT64_MAX;
	}
	return (uint64_t)(geteuid() == 0 ? v.f_bfree : v.f_bavail) * v.f_frsize;
}

/* A member short of disk space, for either of its two consumers, or whose raft log cannot be
 * written, says so through the space hook on each change and, while it leads, hands leadership to
 * another voter (raft picks the most up to date), every SPACE_TRANSFER_MS at most: another
 * member's disk may well be fine.
 *
 * - The state: kv_space_check() cannot renew the reserve ahead of LMDB's map. The reserve still
 *   held carries what the member applies as a follower.
 * - The raft log: less than RAFT_LOG_ROOM is free for its segments. raft retries a segment it
 *   cannot create and meanwhile stores no entries: a follower falls behind (the leader's
 *   store_replication() shows it), a leader commits nothing. Checked every SPACE_RETRY_MS.
 * - The raft log's disk: a segment write or creation fails although statvfs() shows room (an I/O
 *   error, or a thin-provisioned volume whose pool is exhausted). raft retries it every 5 s and
 *   stores nothing past it meanwhile, so this is the same trouble as the one above, but only
 *   raft_uv_disk_error() can tell; it is asked on every turn, which costs a few loads.
 *
 * A member that keeps the lead (no other voter, or every disk is in trouble) refuses new writes,
 * with STORE_EDISK or STORE_ENOSPC, once its log has been short or failing for SPACE_REFUSE_MS or
 * less than KV_SPACE_WRITES_MIN of its state's reserve is left, so the cluster turns read-only,
 * with a clear error, rather than losing members or leaving writes to time out. While short, both
 * are retried every SPACE_RETRY_MS; freeing space or a working disk ends it all. */
static void space_check(struct store *s, bool leader)
{
	uint64_t now = uv_now(s->loop);
	bool due = now >= s->space_checked + SPACE_RETRY_MS;
	bool short_before = s->space_kind == SPACE_STATE || s->space_kind == SPACE_LOG;
	if (short_before && !due) {
		return;
	}
	size_t left = SIZE_MAX;
	int err = kv_space_check(s->kv, &left);
	if (due) {
		s->space_checked = now;
		s->log_free = fs_free(s->raft_dir);
	}
	int kind = err != 0 ? SPACE_STATE : s->log_free < RAFT_LOG_ROOM ? SPACE_LOG : 0;
	if (short_before && kind == 0) {
		s->space_cured = now;
	}
	char disk_msg[RAFT_ERRMSG_BUF_SIZE];
	uint64_t disk_at = 0;
	/* A segment that raft failed to create while the disk was full is retried within 5 s of
	 * the space coming back: until then that failure is the shortage's, which is over. A
	 * failure after it is news. */
	int disk_rv = kind == 0 ? raft_uv_disk_error(&s->io, disk_msg, &disk_at) : 0;
	if (disk_rv != 0 && disk_at > s->space_cured) {
		kind = SPACE_DISK;
	}
	if (kind == SPACE_LOG) {
		err = ENOSPC;
	}
	if (kind == SPACE_DISK) {
		err = disk_rv == RAFT_NOSPACE ? ENOSPC : EIO;
		snprintf(s->disk_error, sizeof s->disk_error, "%s", disk_msg);
	}
	if (kind != s->space_kind && s->cfg.space != NULL) {
		char what[PATH_MAX + RAFT_ERRMSG_BUF_SIZE + 128];
		bool disk = kind == SPACE_DISK || (kind == 0 && s->space_kind == SPACE_DISK);
		if (kind == SPACE_STATE) {
			snprintf(what, sizeof what, "cannot reserve space for the state in %s",
			         s->state_dir);
		} else if (kind == SPACE_LOG) {
			snprintf(what, sizeof what,
			         "%" PRIu64 " MiB free for the raft log in %s, which needs %u MiB",
			         s->log_free >> 20, s->raft_dir, RAFT_LOG_ROOM >> 20);
		} else if (kind == SPACE_DISK) {
			snprintf(what, sizeof what, "the raft log in %s cannot be written: %s",
			         s->raft_dir, disk_msg);
		} else {
			snprintf(what, sizeof what, "%s", disk ? s->raft_dir : s->data_dir);
		}
		s->cfg.space(s->cfg.hook_data, err, disk, what);
	}
	if (kind != 0 && s->space_kind == 0) {
		s->space_since = now;
	}
	s->space_kind = kind;
	s->space_err = kind == SPACE_DISK ? 0 : err;
	if (kind != SPACE_DISK) {
		s->disk_error[0] = '\0';
	}
	s->space_refuse = 0;
	if (leader && (kind == SPACE_LOG || kind == SPACE_DISK) &&
	    now >= s->space_since + SPACE_REFUSE_MS) {
		s->space_refuse = kind == SPACE_DISK ? STORE_EDISK : STORE_ENOSPC;
	} else if (leader && kind == SPACE_STATE && left < KV_SPACE_WRITES_MIN) {
		s->space_refuse = STORE_ENOSPC;
	}
	if (leader && err != 0 && !s->space_transferring && now >= s->space_transfer) {
		s->space_transfer = now + SPACE_TRANSFER_MS;
		s->space_xfer.data = s;
		if (raft_transfer(&s->raft, &s->space_xfer, 0, space_transfer_cb) == 0) {
			s->space_transferring = true;
		}
	}
}

/* Leader short of space, or unable to write its log: refuse what waits to be proposed. Only the
 * writes queued now: one that a callback submits again waits for the next loop turn, so a caller
 * that retries at once cannot keep this loop going. */
static void space_refuse_pending(struct store *s)
{
	struct store_list now;
	list_move_all(&now, &s->pending);
	while (!list_empty(&now)) {
		struct store_write *w = CONTAINER_OF(now.next, struct store_write, link);
		writes_take(s, w->id.seq);
		write_finish(s, w, s->space_refuse, NULL);
	}
	fpending_fail_all(s, s->space_refuse);
}

static void drive(struct store *s)
{
	if (!s->started || s->closing) {
		return;
	}
	track_leadership(s);
	uint64_t leader = current_leader(s);
	space_check(s, leader == s->cfg.id && s->ready);
	if (leader == s->cfg.id) {
		send_commit(s);
		if (s->ready && s->space_refuse) {
			space_refuse_pending(s);
		} else if (s->ready) {
			while (s->applies_inflight < MAX_INFLIGHT_APPLIES &&
			       (!list_empty(&s->pending) || !list_empty(&s->fpending))) {
				unsigned before = s->applies_inflight;
				leader_flush_one(s);
				if (s->applies_inflight == before) {
					break;
				}
			}
		}
	} else if (leader != 0 && s->cfg.forward != NULL &&
	           uv_now(s->loop) >= s->forward_backoff_until) {
		while (s->forwards_inflight < MAX_INFLIGHT_FORWARDS && !list_empty(&s->pending)) {
			unsigned before = s->forwards_inflight;
			follower_flush_one(s, leader);
			if (s->forwards_inflight == before) {
				break; /* no memory, or the hook could not send: the next drive()
				          retries */
			}
		}
	}
	syncs_process(s, leader);
}

static void prepare_cb(uv_prepare_t *h)
{
	drive(h->data);
}

/* How long has each follower lacked what the leader committed? A member's match index alone
 * cannot say: under load a healthy follower trails by an entry or two at any instant, and an
 * idle one that is stuck looks the same as one that is done. So every LAG_SAMPLE_MS the leader
 * gives each replicated member (voters and standbys; spares get no entries) a mark, the commit
 * index of that moment, once the member has reached its previous mark. A healthy member reaches
 * each mark within a round trip; one whose disk is full, or that a slow link or a snapshot
 * install holds back, keeps the old mark, and how long it has kept it is how long it has been
 * behind (store_replication()). Records start afresh with each term. */
static void lag_sample(struct store *s)
{
	if (raft_state(&s->raft) != RAFT_LEADER) {
		s->n_lags = 0;
		return;
	}
	uint64_t now = uv_now(s->loop);
	uint64_t term = raft_current_term(&s->raft);
	if (term != s->lag_term) {
		s->lag_term = term;
		s->lead_since = now;
		s->n_lags = 0;
	} else if (now < s->lag_sampled + LAG_SAMPLE_MS) {
		return;
	}
	s->lag_sampled = now;
	const struct raft_configuration *c = &s->raft.configuration;
	raft_index commit = raft_commit_index(&s->raft);
	struct lag *next = calloc(c->n ? c->n : 1, sizeof *next);
	if (next == NULL) {
		return; /* keep the old records; the next sample tries again */
	}
	unsigned n = 0;
	for (unsigned i = 0; i < c->n; i++) {
		const struct raft_server *sv = &c->servers[i];
		raft_index match;
		if (sv->id == s->cfg.id || sv->role == RAFT_SPARE ||
		    raft_match_index(&s->raft, sv->id, &match) != 0) {
			continue;
		}
		struct lag l = {sv->id, commit, now};
		for (unsigned k = 0; k < s->n_lags; k++) {
			if (s->lags[k].id == sv->id) {
				l = s->lags[k];
			}
		}
		if (match >= l.mark) {
			l.mark = commit;
			l.since = now;
		}
		next[n++] = l;
	}
	free(s->lags);
	s->lags = next;
	s->n_lags = n;
}

static void tick_cb(uv_timer_t *t)
{
	struct store *s = t->data;
	uint64_t now = uv_now(s->loop);
	/* Expire writes that waited too long, in any state. Collect them first: their callbacks
	 * may submit new writes, which can grow the table under our feet. */
	struct store_write *expired = NULL;
	for (size_t i = 0; i < s->n_buckets; i++) {
		struct store_write **p = &s->buckets[i];
		while (*p != NULL) {
			struct store_write *w = *p;
			if (now >= w->deadline) {
				*p = w->next_in_bucket;
				s->n_writes--;
				w->next_in_bucket = expired;
				expired = w;
			} else {
				p = &w->next_in_bucket;
			}
		}
	}
	while (expired != NULL) {
		struct store_write *w = expired;
		expired = w->next_in_bucket;
		write_finish(s, w, STORE_ETIMEDOUT, NULL);
	}
	lag_sample(s);
	if (atomic_exchange(&s->snap_damaged, false) && !s->closing) {
		char msg[PATH_MAX + 200];
		snprintf(
		    msg, sizeof msg,
		    "the latest snapshot in %s is damaged (its data fails its checksum) and was "
		    "not sent to the member that needs it; taking a new one from this member's "
		    "state to send instead",
		    s->raft_dir);
		snapshot_replace(s, msg);
	}
	drive(s);
}

/* ------------------------------------------------------------------------------------------ */
/* Life cycle                                                                                  */

static int mkdir_p(const char *path)
{
	char *tmp = strdup(path);
	if (tmp == NULL) {
		return -ENOMEM;
	}
	for (char *p = tmp + 1; *p; p++) {
		if (*p == '/') {
			*p = 0;
			if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
				int e = errno;
				free(tmp);
				return -e;
			}
			*p = '/';
		}
	}
	int rv = mkdir(tmp, 0700) != 0 && errno != EEXIST ? -errno : 0;
	free(tmp);
	return rv;
}

bool store_has_state(const char *data_dir)
{
	char path[4096];
	struct stat st;
	snprintf(path, sizeof path, "%s/raft/metadata1", data_dir);
	if (stat(path, &st) == 0) {
		return true;
	}
	snprintf(path, sizeof path, "%s/raft/metadata2", data_dir);
	return stat(path, &st) == 0;
}

_Static_assert(FENCE_ID_LEN == STORE_CLUSTER_ID_LEN, "the store hands its cluster id to the fence");

static void fence_refused(void *data, raft_id id, const char *address, const uint8_t *their_id)
{
	struct store *s = data;
	s->refused_connections++; /* here, not in the fence, which goes before the store does */
	if (s->cfg.stranger != NULL) {
		s->cfg.stranger(s->cfg.hook_data, id, address, their_id);
	}
}

int store_new(uv_loop_t *loop, const struct store_config *cfg, struct store **out, char **errmsg)
{
	struct store *s = calloc(1, sizeof *s);
	int rv;
	if (s == NULL) {
		return STORE_ENOMEM;
	}
	s->loop = loop;
	s->cfg = *cfg;
	s->log_free = UINT64_MAX; /* until space_check() looks */
	atomic_init(&s->snap_damaged, false);
	atomic_init(&s->loading, false);
	if (s->cfg.election_timeout_ms == 0) {
		s->cfg.election_timeout_ms = 1000;
	}
	if (s->cfg.heartbeat_timeout_ms == 0) {
		s->cfg.heartbeat_timeout_ms = 100;
	}
	if (s->cfg.snapshot_threshold == 0) {
		s->cfg.snapshot_threshold = 16384;
	}
	if (s->cfg.write_timeout_ms == 0) {
		s->cfg.write_timeout_ms = 15000;
	}
	/* The request ids of a restarted node must not collide with those it used before, which
	 * the state machine still remembers: the client part is drawn afresh at every start. */
	if (getrandom(&s->client, sizeof s->client, 0) != (ssize_t)sizeof s->client) {
		free(s);
		return STORE_EIO;
	}
	s->client |= 1; /* never 0, which means "no id" */
	list_init(&s->pending);
	list_init(&s->fpending);
	list_init(&s->syncs);
	list_init(&s->watches);
	for (int i = 0; i < STORE_LATENCY_BUCKETS; i++) {
		s->lat.le_us[i] = latency_bounds_us[i];
	}
	s->data_dir = strdup(cfg->data_dir);
	s->raft_dir = xasprintf("%s/%s", cfg->data_dir, "raft");
	s->state_dir = xasprintf("%s/%s", cfg->data_dir, "state");
	s->peer_address = strdup(cfg->peer_address);
	if (!s->data_dir || !s->raft_dir || !s->state_dir || !s->peer_address) {
		rv = STORE_ENOMEM;
		goto err;
	}
	s->cfg.data_dir = s->data_dir;
	s->cfg.peer_address = s->peer_address;
	if ((rv = mkdir_p(s->raft_dir)) != 0 || (rv = mkdir_p(s->state_dir)) != 0) {
		set_err(errmsg, "create data directory", strerror(-rv));
		rv = STORE_EIO;
		goto err;
	}
	struct kv_config kc = {
	    .history = cfg->history, .handlers = cfg->handlers, .n_handlers = cfg->n_handlers};
	rv = kv_open(&s->kv, s->state_dir, &kc);
	if (rv != KV_OK) {
		char what[PATH_MAX + 64];
		snprintf(what, sizeof what, "open the state database in %s", s->state_dir);
		set_err(errmsg, what,
		        rv < 0            ? strerror(-rv)
		        : rv == KV_ENOMEM ? "out of memory"
		                          : "LMDB failed");
		rv = STORE_EIO;
		goto err;
	}

	rv = fence_new(loop, cfg->cluster_id, fence_refused, s, &s->transport);
	if (rv != 0) {
		set_err(errmsg, "raft transport", raft_strerror(rv));
		rv = STORE_EIO;
		goto err;
	}
	rv = raft_uv_init(&s->io, loop, s->raft_dir, s->transport);
	if (rv != 0) {
		set_err(errmsg, "raft storage", s->io.errmsg);
		fence_free(s->transport);
		rv = STORE_EIO;
		goto err;
	}
	s->io_inited = true;
	s->fsm.version = 3;
	s->fsm.data = s;
	s->fsm.apply = fsm_apply;
	s->fsm.snapshot = fsm_snapshot;
	s->fsm.snapshot_finalize = fsm_snapshot_finalize;
	s->fsm.snapshot_async = fsm_snapshot_async;
	s->fsm.restore = fsm_restore;
	rv = raft_init(&s->raft, &s->io, &s->fsm, cfg->id, s->peer_address);
	if (rv != 0) {
		set_err(errmsg, "raft", raft_msg(s));
		rv = STORE_EIO;
		goto err;
	}
	s->raft.data = s;
	s->raft_inited = true;
	/* raft formats each of its trace messages with snprintf() before its default tracer
	 * looks whether LIBRAFT_TRACE asked for them: six to ten messages per write on every
	 * member, formatted to be thrown away. Without a tracer it skips the formatting; with
	 * LIBRAFT_TRACE set, raft's own stderr tracing stays as it was. */
	if (getenv("LIBRAFT_TRACE") == NULL) {
		s->raft.tracer = NULL;
		raft_uv_set_tracer(&s->io, NULL);
	}
	raft_set_election_timeout(&s->raft, s->cfg.election_timeout_ms);
	raft_set_heartbeat_timeout(&s->raft, s->cfg.heartbeat_timeout_ms);
	/* Members that took snapshots at the same index would write them at the same moment, and
	 * a write needs a quorum: stagger them by an eighth of the threshold per member, so that
	 * while one member writes its snapshot the others still form a majority. */
	s->snap_threshold =
	    s->cfg.snapshot_threshold + (unsigned)(cfg->id % 4) * (s->cfg.snapshot_threshold / 8);
	raft_set_snapshot_threshold(&s->raft, s->snap_threshold);
	raft_uv_set_snapshot_check(&s->io, snapshot_check, s);
	/* A member whose latest snapshot rots on its disk starts from the one before it and the
	 * log after it (load_fallback()), so by default the log reaches back past the snapshot
	 * before the latest: snapshots are a threshold apart, and a batch of entries applied at
	 * once may carry the second a little further. */
	if (s->cfg.snapshot_trailing == 0) {
		s->cfg.snapshot_trailing = s->snap_threshold + s->snap_threshold / 4;
	}
	raft_set_snapshot_trailing(&s->raft, s->cfg.snapshot_trailing);
	raft_set_pre_vote(&s->raft, true);

	uv_prepare_init(loop, &s->prepare);
	s->prepare.data = s;
	uv_timer_init(loop, &s->tick);
	s->tick.data = s;
	uv_timer_init(loop, &s->commit_timer);
	s->commit_timer.data = s;
	*out = s;
	return STORE_OK;

err:
	/* raft_init failed after raft_uv_init: the io is closed by the caller path below. */
	if (s->io_inited && !s->raft_inited) {
		raft_uv_close(&s->io);
		fence_free(s->transport);
	}
	if (s->kv != NULL) {
		kv_close(s->kv);
	}
	free(s->data_dir);
	free(s->raft_dir);
	free(s->state_dir);
	free(s->peer_address);
	free(s);
	return rv;
}

/* Bootstrap and recovery both hand raft a configuration of this node as its only voter. */
static int with_self_as_voter(struct store *s,
                              int (*fn)(struct raft *, const struct raft_configuration *))
{
	struct raft_configuration conf;
	raft_configuration_init(&conf);
	int rv = raft_configuration_add(&conf, s->cfg.id, s->peer_address, RAFT_VOTER);
	if (rv == 0) {
		rv = fn(&s->raft, &conf);
	}
	raft_configuration_close(&conf);
	return rv;
}

int store_bootstrap(struct store *s, char **errmsg)
{
	if (with_self_as_voter(s, raft_bootstrap) != 0) {
		set_err(errmsg, "bootstrap", raft_msg(s));
		return STORE_EIO;
	}
	return STORE_OK;
}

int store_recover(struct store *s, char **errmsg)
{
	if (!store_has_state(s->data_dir)) {
		set_err(errmsg, "recover", "the data directory holds no raft state");
		return STORE_EINVAL;
	}
	const char *file, *bad;
	atomic_store(&s->loading, true);
	int rv = with_self_as_voter(s, raft_recover);
	atomic_store(&s->loading, false);
	if (rv != 0) {
		/* raft_recover() leaves the backend's message where the backend wrote it */
		const char *detail = s->io.errmsg[0] != '\0' ? s->io.errmsg : raft_strerror(rv);
		char *why = raft_uv_load_skipped(&s->io, &file, &bad)
		                ? xasprintf("%s: %s", s->raft_dir, detail)
		                : NULL;
		set_err(errmsg, "recover", why != NULL ? why : detail);
		free(why);
		return STORE_EIO;
	}
	return STORE_OK; /* store_start() loads again, and says what it skipped */
}

/*
 * After raft's load at start. A snapshot of this member's own that it could not use was
 * skipped (raft patch 0026): its data failed its checksum (it rotted on this disk), or its
 * metadata failed raft's. raft went on with the snapshot before it and the log after it, or,
 * when no older snapshot would do, with the log from its first entry (restored false: a young
 * member's log is kept from there past its first snapshot). Either holds the same state: every
 * entry the skipped snapshot covered is in that log. Say so, and take a new snapshot at once,
 * so that the bad file is not the latest for longer than it takes. When the log did not reach
 * back, the load failed and store_start() says why.
 */
static void load_fallback(struct store *s, bool restored)
{
	char msg[PATH_MAX + 2 * RAFT_ERRMSG_BUF_SIZE];
	const char *file, *why;
	if (!raft_uv_load_skipped(&s->io, &file, &why)) {
		return;
	}
	snprintf(msg, sizeof msg,
	         "the latest snapshot in %s, %s, cannot be used (%s): this member started from "
	         "%s, which hold%s the same state, and takes a new snapshot to replace it",
	         s->raft_dir, file, why,
	         restored ? "the snapshot before it and the log after it"
	                  : "its log from the first entry (no older snapshot would do)",
	         restored ? "" : "s");
	snapshot_replace(s, msg);
}

int store_start(struct store *s, char **errmsg)
{
	uint64_t restored = s->snapshots_restored;
	const char *file, *why;
	atomic_store(&s->loading, true);
	int rv = raft_start(&s->raft);
	atomic_store(&s->loading, false);
	if (rv != 0) {
		/* raft leaves its message empty for some failures (a busy peer port); its message
		 * about a snapshot skipped names the file, not the directory */
		const char *detail = s->restore_err[0] ? s->restore_err : raft_msg(s);
		bool where = raft_uv_load_skipped(&s->io, &file, &why) && s->restore_err[0] == '\0';
		if (errmsg != NULL &&
		    asprintf(errmsg, "raft (peer address %s): %s%s%s", s->cfg.peer_address,
		             where ? s->raft_dir : "", where ? ": " : "",
		             detail != NULL && detail[0] != '\0' ? detail : raft_strerror(rv)) <
		        0) {
			*errmsg = NULL;
		}
		return STORE_EIO;
	}
	load_fallback(s, s->snapshots_restored != restored);
	s->started = true;
	uv_prepare_start(&s->prepare, prepare_cb);
	uv_timer_start(&s->tick, tick_cb, TICK_MS, TICK_MS);
	return STORE_OK;
}

static void store_free(struct store *s)
{
	void (*cb)(void *) = s->close_cb;
	void *data = s->close_data;
	kv_close(s->kv);
	free(s->buckets);
	free(s->lags);
	free(s->data_dir);
	free(s->raft_dir);
	free(s->state_dir);
	free(s->peer_address);
	free(s);
	if (cb != NULL) {
		cb(data);
	}
}

static void handle_closed(uv_handle_t *h)
{
	struct store *s = h->data;
	if (--s->closing_handles == 0) {
		if (s->backups > 0) {
			s->free_deferred = true; /* backup_after() frees it */
		} else {
			store_free(s);
		}
	}
}

static void raft_closed(struct raft *r)
{
	struct store *s = r->data;
	raft_uv_close(&s->io);
	fence_free(s->transport);
	s->transport = NULL;
	s->closing_handles = 3;
	uv_close((uv_handle_t *)&s->prepare, handle_closed);
	uv_close((uv_handle_t *)&s->tick, handle_closed);
	uv_close((uv_handle_t *)&s->commit_timer, handle_closed);
}

void store_close(struct store *s, void (*cb)(void *data), void *data)
{
	s->closing = true;
	s->close_cb = cb;
	s->close_data = data;
	uv_prepare_stop(&s->prepare);
	uv_timer_stop(&s->tick);
	uv_timer_stop(&s->commit_timer);

	/* Fail every local write. */
	for (size_t i = 0; i < s->n_buckets; i++) {
		while (s->buckets[i] != NULL) {
			struct store_write *w = s->buckets[i];
			s->buckets[i] = w->next_in_bucket;
			s->n_writes--;
			write_finish(s, w, STORE_ESHUTDOWN, NULL);
		}
	}
	fpending_fail_all(s, STORE_ESHUTDOWN);
	while (!list_empty(&s->syncs)) {
		struct syncreq *q = CONTAINER_OF(s->syncs.next, struct syncreq, link);
		sync_finish(s, q, STORE_ESHUTDOWN);
	}
	while (!list_empty(&s->watches)) {
		struct store_watch *w = CONTAINER_OF(s->watches.next, struct store_watch, link);
		list_remove(&w->link);
		free(w->key);
		w->key = NULL;
		w->cb(w, NULL, STORE_ESHUTDOWN);
	}
	/* raft_close fails its pending requests (batch_cb, barrier cbs) before raft_closed. */
	raft_close(&s->raft, raft_closed);
}

/* ------------------------------------------------------------------------------------------ */
/* Requests                                                                                    */

int store_write(struct store *s, struct store_write *req, const struct kv_op *op, store_write_cb cb)
{
	if (s->closing) {
		return STORE_ESHUTDOWN;
	}
	struct kv_cmd cmd = {.id = {.client = s->client, .seq = s->seq + 1}, .op = *op};
	void *enc = NULL;
	size_t len = 0;
	int rv = kv_encode_cmd(&cmd, &enc, &len);
	if (rv != KV_OK) {
		return rv == KV_ENOMEM ? STORE_ENOMEM : STORE_EINVAL;
	}
	s->seq++;
	req->cb = cb;
	req->id = cmd.id;
	req->encoded = enc;
	req->encoded_len = len;
	req->deadline = uv_now(s->loop) + s->cfg.write_timeout_ms;
	req->start_ns = uv_hrtime();
	rv = writes_add(s, req);
	if (rv != 0) {
		free(enc);
		req->encoded = NULL;
		return rv;
	}
	req->state = W_QUEUED;
	list_insert_tail(&s->pending, &req->link);
	return STORE_OK;
}

int store_propose_forwarded(struct store *s, const void *buf, size_t len, store_forward_done done,
                            void *done_data)
{
	if (s->closing || !s->ready || raft_state(&s->raft) != RAFT_LEADER) {
		return STORE_ENOTLEADER;
	}
	uint64_t t;
	struct kv_bytes *cmds = NULL;
	unsigned n = 0;
	if (kv_split_batch(buf, len, &t, &cmds, &n) != KV_OK || n == 0) {
		free(cmds);
		return STORE_EINVAL;
	}
	struct fgroup *g = calloc(1, sizeof *g);
	if (g == NULL) {
		free(cmds);
		return STORE_ENOMEM;
	}
	g->done = done;
	g->done_data = done_data;
	struct store_list items;
	list_init(&items);
	for (unsigned i = 0; i < n; i++) {
		struct fitem *it = calloc(1, sizeof *it);
		void *copy = malloc(cmds[i].len ? cmds[i].len : 1);
		if (it == NULL || copy == NULL) {
			free(it);
			free(copy);
			while (!list_empty(&items)) {
				struct fitem *x = CONTAINER_OF(items.next, struct fitem, link);
				list_remove(&x->link);
				free(x->buf);
				free(x);
			}
			free(g);
			free(cmds);
			return STORE_ENOMEM;
		}
		memcpy(copy, cmds[i].data, cmds[i].len);
		it->buf = copy;
		it->len = cmds[i].len;
		it->group = g;
		list_insert_tail(&items, &it->link);
	}
	free(cmds);
	g->pending = n;
	g->refs = n;
	while (!list_empty(&items)) {
		struct store_list *e = items.next;
		list_remove(e);
		list_insert_tail(&s->fpending, e);
	}
	return STORE_OK;
}

static int sync_new(struct store *s, store_sync_cb cb, void *data, store_readindex_done rdone,
                    void *rdata)
{
	if (s->closing) {
		return STORE_ESHUTDOWN;
	}
	struct syncreq *q = calloc(1, sizeof *q);
	if (q == NULL) {
		return STORE_ENOMEM;
	}
	q->s = s;
	q->cb = cb;
	q->data = data;
	q->rdone = rdone;
	q->rdata = rdata;
	q->deadline = uv_now(s->loop) + SYNC_TIMEOUT_MS;
	list_insert_tail(&s->syncs, &q->link);
	return STORE_OK;
}

int store_readindex(struct store *s, store_readindex_done done, void *done_data)
{
	if (!s->ready || raft_state(&s->raft) != RAFT_LEADER) {
		return STORE_ENOTLEADER;
	}
	return sync_new(s, NULL, NULL, done, done_data);
}

int store_sync(struct store *s, store_sync_cb cb, void *data)
{
	return sync_new(s, cb, data, NULL, NULL);
}

static void backup_work(uv_work_t *w)
{
	struct store_backup *req = CONTAINER_OF(w, struct store_backup, work);
	req->rv = kv_snapshot_write(req->snap, &req->data, &req->len);
}

static void backup_after(uv_work_t *w, int status)
{
	struct store_backup *req = CONTAINER_OF(w, struct store_backup, work);
	struct store *s = req->s;
	int rv = status != 0            ? STORE_EIO
	         : s->closing           ? STORE_ESHUTDOWN
	         : req->rv == KV_OK     ? STORE_OK
	         : req->rv == KV_ENOMEM ? STORE_ENOMEM
	                                : STORE_EIO;
	kv_snapshot_end(req->snap);
	req->snap = NULL;
	s->backups--;
	if (rv != STORE_OK) {
		free(req->data);
		req->data = NULL;
		req->len = 0;
	}
	req->cb(req, rv);
	if (s->free_deferred && s->backups == 0) {
		store_free(s);
	}
}

/* Take the read view and queue its serialization. The view and the revision are taken together
 * on the loop thread, between two applies, so the revision is exactly the state the view holds. */
static int backup_queue(struct store_backup *req)
{
	struct store *s = req->s;
	if (s->closing) {
		return STORE_ESHUTDOWN;
	}
	if (kv_snapshot_begin(s->kv, &req->snap) != KV_OK) {
		return STORE_EIO;
	}
	req->revision = kv_revision(s->kv);
	if (uv_queue_work(s->loop, &req->work, backup_work, backup_after) != 0) {
		kv_snapshot_end(req->snap);
		req->snap = NULL;
		return STORE_EIO;
	}
	s->backups++;
	return STORE_OK;
}

static void backup_synced(void *data, int status)
{
	struct store_backup *req = data;
	if (status == STORE_OK) {
		status = backup_queue(req);
	}
	if (status != STORE_OK) {
		req->cb(req, status);
	}
}

int store_backup(struct store *s, struct store_backup *req, bool linearizable, store_backup_cb cb)
{
	req->data = NULL;
	req->len = 0;
	req->revision = 0;
	req->s = s;
	req->snap = NULL;
	req->rv = KV_OK;
	req->cb = cb;
	return linearizable ? store_sync(s, backup_synced, req) : backup_queue(req);
}

int store_range(struct store *s, uint8_t space, struct kv_bytes key, bool prefix, int64_t limit,
                struct kv_kv **kvs, unsigned *n, bool *more, int64_t *revision)
{
	int rv = kv_range(s->kv, space, key, prefix, limit, kvs, n, more, revision);
	return rv == KV_OK ? STORE_OK : rv == KV_ENOMEM ? STORE_ENOMEM : STORE_EIO;
}

int store_view_begin(struct store *s, struct kv_tx **tx)
{
	int rv = kv_view_begin(s->kv, tx);
	return rv == KV_OK ? STORE_OK : rv == KV_ENOMEM ? STORE_ENOMEM : STORE_EIO;
}

void store_view_end(struct kv_tx *tx)
{
	kv_view_end(tx);
}

int store_watch_start(struct store *s, struct store_watch *w, uint8_t space, struct kv_bytes key,
                      bool prefix, int64_t start_rev, store_watch_cb cb)
{
	if (s->closing) {
		return STORE_ESHUTDOWN;
	}
	w->cb = cb;
	w->space = space;
	w->prefix = prefix;
	w->key_len = key.len;
	w->key = malloc(key.len ? key.len : 1);
	if (w->key == NULL) {
		return STORE_ENOMEM;
	}
	memcpy(w->key, key.data, key.len);
	/* Unlinked but removable, for a callback below that stops the watch. */
	list_init(&w->link);
	/* Catch up from the history. The loop is single-threaded, so nothing is applied between
	 * the last history read and the registration below: no event is lost or doubled. */
	if (start_rev > 0 && start_rev <= kv_revision(s->kv)) {
		int64_t after = start_rev - 1;
		for (;;) {
			struct kv_event *evs = NULL;
			unsigned n = 0;
			int rv = kv_history(s->kv, after, space, key, prefix, 1024, &evs, &n);
			if (rv == KV_ECOMPACTED) {
				free(w->key);
				w->key = NULL;
				return STORE_ECOMPACTED;
			}
			if (rv != KV_OK) {
				free(w->key);
				w->key = NULL;
				return rv == KV_ENOMEM ? STORE_ENOMEM : STORE_EIO;
			}
			for (unsigned i = 0; i < n && w->key != NULL; i++) {
				w->cb(w, &evs[i], STORE_OK);
			}
			if (n > 0) {
				after = evs[n - 1].kv.mod_revision;
			}
			kv_events_free(evs, n);
			if (w->key == NULL) {
				return STORE_OK; /* a callback stopped it */
			}
			if (n < 1024) {
				break;
			}
		}
	}
	/* Live events start after what the history gave (or after now): a watch started by a
	 * callback inside an apply must not see that apply's events a second time. */
	w->start_rev = start_rev > kv_revision(s->kv) ? start_rev : kv_revision(s->kv) + 1;
	list_insert_tail(&s->watches, &w->link);
	return STORE_OK;
}

void store_watch_stop(struct store *s, struct store_watch *w)
{
	if (w->key != NULL) {
		if (s->watch_cursor == &w->link) {
			s->watch_cursor = w->link.next; /* dispatch_events() goes on from there */
		}
		list_remove(&w->link);
		free(w->key);
		w->key = NULL;
	}
}

void store_get_status(struct store *s, struct store_status *st)
{
	memset(st, 0, sizeof *st);
	st->id = s->cfg.id;
	st->state = s->started ? raft_state(&s->raft) : RAFT_UNAVAILABLE;
	st->ready = s->ready;
	st->leader_id = s->started ? current_leader(s) : 0;
	st->term = raft_current_term(&s->raft);
	st->commit_index = raft_commit_index(&s->raft);
	st->applied_index = raft_last_applied(&s->raft);
	st->revision = kv_revision(s->kv);
	st->compact_revision = kv_compact_revision(s->kv);
	st->entries_applied = s->entries_applied;
	st->commands_applied = s->commands_applied;
	st->snapshots_taken = s->snapshots_taken;
	st->snapshots_restored = s->snapshots_restored;
	st->snapshots_damaged = s->snapshots_damaged;
	st->space_err = s->space_err;
	snprintf(st->disk_error, sizeof st->disk_error, "%s", s->disk_error);
	st->refused_connections = s->refused_connections;
}

int store_replication(struct store *s, struct store_progress **members, unsigned *n)
{
	*members = NULL;
	*n = 0;
	if (!s->started || s->closing || raft_state(&s->raft) != RAFT_LEADER) {
		return STORE_ENOTLEADER;
	}
	lag_sample(s); /* a new term's records, at least */
	*members = calloc(s->n_lags ? s->n_lags : 1, sizeof **members);
	if (*members == NULL) {
		return STORE_ENOMEM;
	}
	uint64_t now = uv_now(s->loop);
	for (unsigned i = 0; i < s->n_lags; i++) {
		const struct lag *l = &s->lags[i];
		raft_index match = 0;
		if (raft_match_index(&s->raft, l->id, &match) != 0) {
			continue; /* left the configuration since the last sample */
		}
		struct store_progress *p = &(*members)[(*n)++];
		p->id = l->id;
		p->match_index = match;
		p->behind_ms = match >= l->mark ? 0 : now - l->since;
		/* raft's clock is this loop's uv_now() (the libuv backend's time()). A member
		 * that has not answered this leader yet has been silent since the term began. */
		raft_time heard = ULLONG_MAX;
		raft_last_contact(&s->raft, l->id, &heard);
		uint64_t from =
		    heard != ULLONG_MAX && heard > s->lead_since ? heard : s->lead_since;
		p->silent_ms = now > from ? now - from : 0;
	}
	return STORE_OK;
}

void store_get_latency(struct store *s, struct store_latency *lat)
{
	*lat = s->lat;
}

bool store_hash_at(struct store *s, int64_t rev, uint64_t *hash)
{
	for (unsigned i = 0; i < HASH_RING; i++) {
		if (s->hashes[i].rev == rev && s->hashes[i].hash != 0) {
			*hash = s->hashes[i].hash;
			return true;
		}
	}
	return false;
}

int store_configuration(struct store *s, struct store_member **members, unsigned *n)
{
	const struct raft_configuration *c = &s->raft.configuration;
	*members = calloc(c->n ? c->n : 1, sizeof **members);
	if (*members == NULL) {
		return STORE_ENOMEM;
	}
	for (unsigned i = 0; i < c->n; i++) {
		(*members)[i].id = c->servers[i].id;
		snprintf((*members)[i].address, sizeof(*members)[i].address, "%s",
		         c->servers[i].address);
		(*members)[i].role = c->servers[i].role;
	}
	*n = c->n;
	return STORE_OK;
}

static void change_cb(struct raft_change *req, int status)
{
	struct change *c = req->data;
	/* Only a change that ran and failed (the member did not catch up) is the member's doing:
	 * the agent backs off that member for it. */
	int st =
	    status == 0            ? STORE_OK
	    : status == RAFT_NOMEM ? STORE_ENOMEM
	    : status == RAFT_NOTLEADER || status == RAFT_LEADERSHIPLOST || status == RAFT_CANTCHANGE
	        ? STORE_ENOTLEADER
	        : STORE_ECHANGE;
	c->cb(c->data, st);
	free(c);
}

/* raft reports no status for a transfer: whether it worked shows in who leads afterwards. */
static void transfer_cb(struct raft_transfer *req)
{
	struct change *c = req->data;
	c->cb(c->data, STORE_OK);
	free(c);
}

static int change_start(struct store *s, int kind, uint64_t id, const char *address, int role,
                        store_sync_cb cb, void *data)
{
	if (s->closing || !s->ready) {
		return STORE_ENOTLEADER;
	}
	struct change *c = calloc(1, sizeof *c);
	if (c == NULL) {
		return STORE_ENOMEM;
	}
	c->cb = cb;
	c->data = data;
	int rv;
	switch (kind) {
	case CH_ADD:
		c->req.data = c;
		rv = raft_add(&s->raft, &c->req, id, address, change_cb);
		break;
	case CH_ASSIGN:
		c->req.data = c;
		rv = raft_assign(&s->raft, &c->req, id, role, change_cb);
		break;
	case CH_REMOVE:
		c->req.data = c;
		rv = raft_remove(&s->raft, &c->req, id, change_cb);
		break;
	default:
		c->transfer.data = c;
		rv = raft_transfer(&s->raft, &c->transfer, id, transfer_cb);
		break;
	}
	if (rv != 0) {
		free(c);
		return rv == RAFT_NOTLEADER ? STORE_ENOTLEADER : STORE_EINVAL;
	}
	return STORE_OK;
}

int store_add_member(struct store *s, uint64_t id, const char *address, store_sync_cb cb,
                     void *data)
{
	if (id == 0 || address == NULL) {
		return STORE_EINVAL;
	}
	return change_start(s, CH_ADD, id, address, 0, cb, data);
}

int store_assign_member(struct store *s, uint64_t id, int role, store_sync_cb cb, void *data)
{
	return change_start(s, CH_ASSIGN, id, NULL, role, cb, data);
}

int store_remove_member(struct store *s, uint64_t id, store_sync_cb cb, void *data)
{
	return change_start(s, CH_REMOVE, id, NULL, 0, cb, data);
}

int store_transfer_leadership(struct store *s, uint64_t id, store_sync_cb cb, void *data)
{
	return change_start(s, CH_TRANSFER, id, NULL, 0, cb, data);
}
