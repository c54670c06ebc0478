/*
 * The raft library Tabby links, on its real libuv backend: two servers on one loop, talking TCP
 * on 127.0.0.1; server 1 is bootstrapped as the only voter.
 *
 * Requests made while raft_close() is under way fail at once with RAFT_CANCELED and their
 * callbacks never fire (deps/raft-patches/0009-closing-requests.patch); 0.22.1 returned an
 * uninitialized value for them. The store never makes such a request (it checks its own closing
 * flag first), so this is the library's contract, tested where it is kept.
 *
 * The leader's log is compacted, so a server that joins empty is sent the leader's snapshot,
 * which the leader first reads back from disk (deps/raft-patches/0013-snapshot-load.patch):
 *
 * - A read that completes after raft_close() has begun is dropped. raft 0.22.1 sent it anyway, on
 *   a backend whose connections were already aborted, and the new connection outlived the
 *   backend: the loop never ended, or AddressSanitizer caught a use after free.
 * - A read that fails is cleaned up and the snapshot is sent again later. raft 0.22.1 freed the
 *   configuration and data the core had left uninitialized on its stack, and leaked the
 *   configuration the backend had already decoded.
 *
 * A snapshot whose data the FSM fails to produce (the store's snapshot_async(), on the backend's
 * worker thread: deps/raft-patches/0002) is not taken, and the next one is
 * (deps/raft-patches/0016-failed-snapshot-data.patch). Before, the backend retried the write
 * forever without the FSM (whose read view was gone), with no data to write: the server never
 * took a snapshot again and its log grew without end.
 *
 * The term and vote live in two files, metadata1 and metadata2, stored in turn and overwritten in
 * place (deps/raft-patches/0017-unstored-term-and-vote.patch): a store that fails leaves the
 * version where it was, so its retry goes to the same file and the other keeps the last good
 * copy, and the load takes the other file when one does not decode (what a failed or interrupted
 * overwrite leaves). raft 0.22.1 sent the retry over the last good copy and refused to start
 * beside a file of zeros.
 *
 * Each new open segment gets a writer with its own kernel AIO context, which io_setup() refuses
 * (EAGAIN) once the host's fs.aio-max-nr is used up. The segment and the entries queued on it
 * wait, and its writer setup is retried every disk_retry, reported meanwhile by
 * raft_uv_disk_error() (deps/raft-patches/0023-writer-setup-retry.patch). raft 0.22.1 failed the
 * append instead, and the legacy layer's log and the core's disagreed from then on: the entries
 * never committed, and the next one reached the backend as no entries at all (a segmentation
 * fault).
 */
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <linux/aio_abi.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#define SNAPSHOT_SIZE (256 * 1024)
/* test_writer_setup_retry: entries of this size carry a sequence number, small segments hold
 * about 30 of them, and up to AIO_CONTEXTS contexts take the host's AIO events. */
#define SEQ_SIZE      1024
#define SMALL_SEGMENT (32 * 1024)
#define AIO_CONTEXTS  64

struct fx;

struct node {
	struct fx *f;
	unsigned id;
	char dir[64];
	char addr[32];
	struct raft_uv_transport transport;
	struct raft_io io;
	struct raft_fsm fsm;
	struct raft raft;
	uint64_t applied;      /* entries applied, or restored from a snapshot */
	uint64_t snap_applied; /* applied when the last snapshot view was taken */
	unsigned restores;
	uint64_t seq;        /* the last sequence number applied (entries of SEQ_SIZE) */
	unsigned seq_errors; /* entries of SEQ_SIZE applied out of sequence */
	bool started, close_started, closed;
};

struct fx {
	uv_loop_t loop;
	struct node n[2];
	/* The leader's snapshot_get, wrapped to watch (and time) its completions. */
	int (*snapshot_get)(struct raft_io *, struct raft_io_snapshot_get *,
	                    raft_io_snapshot_get_cb);
	raft_io_snapshot_get_cb load_cb;
	unsigned loads, failed_loads;
	bool close_on_load;
	unsigned changes;
	int change_status;
	unsigned applies, target; /* writes applied, and how many write_entries() waits for */
	unsigned cbs;             /* test_requests_while_closing: callbacks that fired */
	int last_status;
	/* test_failed_snapshot_data: snapshot_async() runs on the backend's worker thread. */
	atomic_uint async_calls, async_failures;
	/* test_writer_setup_retry: the AIO contexts holding the host's events, and the last
	 * sequence number sent. */
	aio_context_t aio[AIO_CONTEXTS];
	unsigned aio_n;
	uint64_t seq_sent;
};

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
	struct node *n = fsm->data;
	n->applied++;
	if (buf->len == SEQ_SIZE) {
		uint64_t seq;
		memcpy(&seq, buf->base, sizeof seq);
		if (seq != n->seq + 1) {
			n->seq_errors++;
		}
		n->seq = seq;
	}
	*result = NULL;
	return 0;
}

/* A snapshot of SNAPSHOT_SIZE bytes that starts with the count of applied entries and the last
 * sequence number applied. */
static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct node *n = fsm->data;
	*bufs = raft_malloc(sizeof **bufs);
	if (*bufs == NULL) {
		return RAFT_NOMEM;
	}
	(*bufs)[0].len = SNAPSHOT_SIZE;
	(*bufs)[0].base = raft_calloc(1, SNAPSHOT_SIZE);
	if ((*bufs)[0].base == NULL) {
		raft_free(*bufs);
		return RAFT_NOMEM;
	}
	memcpy((*bufs)[0].base, &n->applied, sizeof n->applied);
	memcpy((char *)(*bufs)[0].base + 8, &n->seq, sizeof n->seq);
	*n_bufs = 1;
	return 0;
}

/* FSM version 3, as the store's: snapshot() only notes the view on the loop thread,
 * snapshot_async() makes the data on the backend's worker thread, snapshot_finalize() frees it.
 * It fails while async_failures lasts, as the store's does when it cannot allocate. */
static int fsm_snapshot_view(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct node *n = fsm->data;
	n->snap_applied = n->applied;
	*bufs = NULL;
	*n_bufs = 0;
	return 0;
}

static int fsm_snapshot_async(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct node *n = fsm->data;
	unsigned failures = atomic_load(&n->f->async_failures);
	atomic_fetch_add(&n->f->async_calls, 1);
	if (failures > 0) {
		atomic_store(&n->f->async_failures, failures - 1);
		return RAFT_NOMEM;
	}
	int rv = fsm_snapshot(fsm, bufs, n_bufs);
	if (rv == 0) {
		memcpy((*bufs)[0].base, &n->snap_applied, sizeof n->snap_applied);
	}
	return rv;
}

static int fsm_snapshot_finalize(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	(void)fsm;
	for (unsigned i = 0; i < *n_bufs; i++) {
		raft_free((*bufs)[i].base);
	}
	raft_free(*bufs);
	*bufs = NULL;
	*n_bufs = 0;
	return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	struct node *n = fsm->data;
	if (buf->len != SNAPSHOT_SIZE) {
		return RAFT_MALFORMED;
	}
	memcpy(&n->applied, buf->base, sizeof n->applied);
	memcpy(&n->seq, (char *)buf->base + 8, sizeof n->seq);
	raft_free(buf->base);
	n->restores++;
	return 0;
}

static void closed_cb(struct raft *r)
{
	struct node *n = r->data;
	n->closed = true;
}

/* Closes n, started or not (raft_init() alone holds memory too). */
static void close_node(struct node *n)
{
	if (!n->close_started) {
		n->close_started = true;
		raft_close(&n->raft, closed_cb);
	}
}

/* raft's snapshot_get request leaves no room for the test's own pointer (its data field is the
 * library's), so the wrapped completion finds the fixture here. One test runs at a time. */
static struct fx *current;

/* The leader's snapshot read completed: count it, close the leader first if the test asks (so
 * the library sees exactly what it sees when raft_close() is called during a read), then hand
 * the result to the library. */
static void load_done(struct raft_io_snapshot_get *req, struct raft_snapshot *snapshot, int status)
{
	struct fx *f = current;
	f->loads++;
	if (status != 0) {
		f->failed_loads++;
	}
	if (f->close_on_load) {
		close_node(&f->n[0]);
	}
	f->load_cb(req, snapshot, status);
}

static int snapshot_get(struct raft_io *io, struct raft_io_snapshot_get *req,
                        raft_io_snapshot_get_cb cb)
{
	struct fx *f = current;
	f->load_cb = cb;
	return f->snapshot_get(io, req, load_done);
}

static void on_deadline(uv_timer_t *t)
{
	uv_stop(t->loop);
}

/* Runs the loop until done(f) or ms milliseconds passed; returns done(f). */
static bool run_until(struct fx *f, bool (*done)(struct fx *), unsigned ms)
{
	uv_timer_t deadline;
	uv_timer_init(&f->loop, &deadline);
	uv_timer_start(&deadline, on_deadline, ms, 0);
	while (!done(f) && uv_is_active((uv_handle_t *)&deadline)) {
		uv_run(&f->loop, UV_RUN_ONCE);
	}
	uv_close((uv_handle_t *)&deadline, NULL);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	return done(f);
}

/* A port on 127.0.0.1 that nothing listens on now. */
static unsigned free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

/* The backend and server of n, on its directory and address. */
static void node_open(struct fx *f, struct node *n)
{
	n->transport.version = 1;
	assert_int_equal(raft_uv_tcp_init(&n->transport, &f->loop), 0);
	assert_int_equal(raft_uv_init(&n->io, &f->loop, n->dir, &n->transport), 0);
	n->fsm.version = 1;
	n->fsm.data = n;
	n->fsm.apply = fsm_apply;
	n->fsm.snapshot = fsm_snapshot;
	n->fsm.restore = fsm_restore;
	assert_int_equal(raft_init(&n->raft, &n->io, &n->fsm, n->id, n->addr), 0);
	n->raft.data = n;
	raft_set_election_timeout(&n->raft, 100);
	raft_set_heartbeat_timeout(&n->raft, 20);
	/* A snapshot every 8 entries, keeping 2 of them: a server that joins after the first 10
	 * entries cannot be sent entries from 1 and is sent the snapshot. */
	raft_set_snapshot_threshold(&n->raft, 8);
	raft_set_snapshot_trailing(&n->raft, 2);
}

static void node_init(struct fx *f, unsigned i)
{
	struct node *n = &f->n[i];
	n->f = f;
	n->id = i + 1;
	snprintf(n->dir, sizeof n->dir, "/tmp/tabby-raft-uv.XXXXXX");
	assert_non_null(mkdtemp(n->dir));
	snprintf(n->addr, sizeof n->addr, "127.0.0.1:%u", free_port());
	node_open(f, n);
}

static void node_start(struct node *n)
{
	assert_int_equal(raft_start(&n->raft), 0);
	n->started = true;
}

/* Server 1's open segments are segment_size bytes (0: the backend's default). */
static int setup_segments(void **state, size_t segment_size)
{
	struct fx *f = calloc(1, sizeof *f);
	assert_non_null(f);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	node_init(f, 0);
	node_init(f, 1);

	struct raft_configuration conf;
	raft_configuration_init(&conf);
	assert_int_equal(raft_configuration_add(&conf, 1, f->n[0].addr, RAFT_VOTER), 0);
	assert_int_equal(raft_bootstrap(&f->n[0].raft, &conf), 0);
	raft_configuration_close(&conf);

	f->snapshot_get = f->n[0].io.snapshot_get;
	f->n[0].io.snapshot_get = snapshot_get;
	current = f;
	if (segment_size != 0) {
		raft_uv_set_segment_size(&f->n[0].io, segment_size);
	}
	node_start(&f->n[0]);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_segments(state, 0);
}

static int setup_small_segments(void **state)
{
	return setup_segments(state, SMALL_SEGMENT);
}

static bool all_closed(struct fx *f)
{
	return f->n[0].closed && f->n[1].closed;
}

static bool loop_idle(struct fx *f)
{
	return !uv_loop_alive(&f->loop);
}

static void aio_release(struct fx *f);

/* Everything the servers opened must be gone once they are closed: a handle left open (such as
 * a connection made during the close) keeps the loop alive, and uv_loop_close() refuses. */
static int teardown(void **state)
{
	struct fx *f = *state;
	aio_release(f); /* the host's AIO events, if a failed test still holds them */
	close_node(&f->n[0]);
	close_node(&f->n[1]);
	assert_true(run_until(f, all_closed, 5000));
	for (unsigned i = 0; i < 2; i++) {
		raft_uv_close(&f->n[i].io);
		raft_uv_tcp_close(&f->n[i].transport);
	}
	assert_true(run_until(f, loop_idle, 5000));
	assert_int_equal(uv_loop_close(&f->loop), 0);
	for (unsigned i = 0; i < 2; i++) {
		char cmd[128];
		snprintf(cmd, sizeof cmd, "rm -rf %s", f->n[i].dir);
		assert_int_equal(system(cmd), 0);
	}
	current = NULL;
	free(f);
	return 0;
}

static bool leads(struct fx *f)
{
	return raft_state(&f->n[0].raft) == RAFT_LEADER;
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
	struct fx *f = req->data;
	(void)result;
	assert_int_equal(status, 0);
	f->applies++;
	free(req);
}

static bool applied_target(struct fx *f)
{
	return f->applies >= f->target;
}

/* Submits k entries of size bytes through server 1 without waiting for them. Entries of SEQ_SIZE
 * carry the next sequence numbers (fsm_apply() checks their order); others are filler. */
static void submit_entries(struct fx *f, unsigned k, size_t size, raft_apply_cb cb)
{
	for (unsigned i = 0; i < k; i++) {
		struct raft_apply *req = malloc(sizeof *req);
		assert_non_null(req);
		req->data = f;
		struct raft_buffer b = {.base = raft_malloc(size), .len = size};
		assert_non_null(b.base);
		memset(b.base, 0x5a, size);
		if (size == SEQ_SIZE) {
			f->seq_sent++;
			memcpy(b.base, &f->seq_sent, sizeof f->seq_sent);
		}
		assert_int_equal(raft_apply(&f->n[0].raft, req, &b, 1, cb), 0);
	}
}

/* Applies k entries through the leader and waits for them. */
static void write_entries(struct fx *f, unsigned k)
{
	f->target = f->applies + k;
	submit_entries(f, k, 8, apply_cb);
	assert_true(run_until(f, applied_target, 5000));
}

/* Names the files of the leader's snapshots: NAME.meta holds the metadata, NAME the data. */
static unsigned snapshot_files(struct node *n, bool data, char names[][256], unsigned max)
{
	DIR *d = opendir(n->dir);
	struct dirent *e;
	unsigned k = 0;
	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		bool meta = len > 5 && strcmp(e->d_name + len - 5, ".meta") == 0;
		if (strncmp(e->d_name, "snapshot-", 9) != 0 || meta == data) {
			continue;
		}
		if (k < max) {
			snprintf(names[k], 256, "%s", e->d_name);
		}
		k++;
	}
	closedir(d);
	return k;
}

static bool has_snapshot(struct fx *f)
{
	char names[4][256];
	return snapshot_files(&f->n[0], false, names, 4) > 0;
}

static void change_cb(struct raft_change *req, int status)
{
	struct fx *f = req->data;
	f->changes++;
	f->change_status = status;
}

static void counted_apply_cb(struct raft_apply *req, int status, void *result)
{
	struct fx *f = req->data;
	(void)result;
	f->cbs++;
	f->last_status = status;
}

static void counted_barrier_cb(struct raft_barrier *req, int status)
{
	struct fx *f = req->data;
	f->cbs++;
	f->last_status = status;
}

static bool called_back(struct fx *f)
{
	return f->cbs > 0;
}

static bool leader_closed(struct fx *f);

/* Once raft_close() has begun, raft_apply() and raft_barrier() fail at once with RAFT_CANCELED,
 * their callbacks never fire, and nothing more is applied. */
static void test_requests_while_closing(void **state)
{
	struct fx *f = *state;
	struct node *n = &f->n[0];

	/* The single voter elects itself; an entry commits and applies, so the backend works. */
	assert_true(run_until(f, leads, 5000));
	struct raft_apply ok = {.data = f};
	struct raft_buffer b = {.base = raft_malloc(8), .len = 8};
	assert_non_null(b.base);
	memset(b.base, 0x5a, 8);
	assert_int_equal(raft_apply(&n->raft, &ok, &b, 1, counted_apply_cb), 0);
	assert_true(run_until(f, called_back, 5000));
	assert_int_equal(f->cbs, 1);
	assert_int_equal(f->last_status, 0);
	uint64_t applied = n->applied;
	assert_true(applied >= 1);

	/* Close, and make requests before the close completes. */
	close_node(n);
	assert_false(n->closed);

	struct raft_apply late = {.data = f};
	b.base = raft_malloc(8);
	assert_non_null(b.base);
	assert_int_equal(raft_apply(&n->raft, &late, &b, 1, counted_apply_cb), RAFT_CANCELED);
	raft_free(b.base); /* refused: the buffer stays the caller's */

	struct raft_barrier bar = {.data = f};
	assert_int_equal(raft_barrier(&n->raft, &bar, counted_barrier_cb), RAFT_CANCELED);

	assert_true(run_until(f, leader_closed, 5000));
	assert_int_equal(f->cbs, 1);           /* neither refused request called back */
	assert_int_equal(n->applied, applied); /* and nothing more was applied */
}

/* Leader elected, 20 entries written, a snapshot on disk; then server 2 starts empty and is
 * added to the configuration (which commits on the leader alone) and assigned a voter, which
 * starts its catch-up: a snapshot. */
static void join_second(struct fx *f, struct raft_change *add)
{
	assert_true(run_until(f, leads, 5000));
	write_entries(f, 20);
	assert_true(run_until(f, has_snapshot, 5000));

	node_start(&f->n[1]);
	add->data = f;
	assert_int_equal(raft_add(&f->n[0].raft, add, 2, f->n[1].addr, change_cb), 0);
}

static bool one_change(struct fx *f)
{
	return f->changes >= 1;
}

static bool one_load(struct fx *f)
{
	return f->loads >= 1;
}

static bool leader_closed(struct fx *f)
{
	return f->n[0].closed;
}

/* raft_close() begins while the leader reads the snapshot it is about to send: the read's
 * completion is dropped, and both servers close cleanly (the teardown checks that nothing is
 * left open on the loop). */
static void test_close_while_loading(void **state)
{
	struct fx *f = *state;
	struct raft_change add, assign;

	join_second(f, &add);
	assert_true(run_until(f, one_change, 5000));
	assert_int_equal(f->change_status, 0);
	f->close_on_load = true;
	assign.data = f;
	assert_int_equal(raft_assign(&f->n[0].raft, &assign, 2, RAFT_VOTER, change_cb), 0);
	assert_true(run_until(f, one_load, 5000));
	assert_int_equal(f->failed_loads, 0);
	assert_true(run_until(f, leader_closed, 5000));
	/* The dropped snapshot never reached server 2. */
	assert_int_equal(f->n[1].restores, 0);
}

static bool caught_up(struct fx *f)
{
	return f->changes >= 2 && f->n[1].applied == f->n[0].applied;
}

/* The leader's snapshot data is gone when it reads it back for server 2: the read fails, the
 * leader cleans up, and sends the next snapshot it takes; server 2 catches up from it. */
static void test_failed_load(void **state)
{
	struct fx *f = *state;
	struct raft_change add, assign;
	char names[8][256];

	join_second(f, &add);
	assert_true(run_until(f, one_change, 5000));
	assert_int_equal(f->change_status, 0);

	unsigned k = snapshot_files(&f->n[0], true, names, 8);
	assert_true(k > 0 && k <= 8);
	for (unsigned i = 0; i < k; i++) {
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", f->n[0].dir, names[i]);
		assert_int_equal(unlink(path), 0);
	}
	assign.data = f;
	assert_int_equal(raft_assign(&f->n[0].raft, &assign, 2, RAFT_VOTER, change_cb), 0);
	assert_true(run_until(f, one_load, 5000));
	assert_int_equal(f->failed_loads, 1);
	assert_int_equal(f->n[1].restores, 0);

	/* A new snapshot, whose read succeeds. */
	write_entries(f, 10);
	assert_true(run_until(f, caught_up, 10000));
	assert_int_equal(f->change_status, 0);
	assert_true(f->n[1].restores >= 1);
	assert_true(f->loads > f->failed_loads);
}

static bool first_snapshot_over(struct fx *f)
{
	return atomic_load(&f->async_calls) >= 1 && !f->n[0].raft.legacy.snapshot_taking;
}

static bool two_snapshot_calls(struct fx *f)
{
	return atomic_load(&f->async_calls) >= 2 && has_snapshot(f);
}

/* The leader's FSM fails to produce its first snapshot's data. That snapshot is not taken; the
 * next one is, and every snapshot on disk holds the FSM's data. With patch 0002 alone the first
 * put never ended: the backend retried its write every disk_retry (100 ms here) with no data,
 * and each retry failed. */
static void test_failed_snapshot_data(void **state)
{
	struct fx *f = *state;
	struct node *n = &f->n[0];
	char names[8][256];

	n->fsm.version = 3;
	n->fsm.snapshot = fsm_snapshot_view;
	n->fsm.snapshot_finalize = fsm_snapshot_finalize;
	n->fsm.snapshot_async = fsm_snapshot_async;
	raft_uv_set_disk_retry(&n->io, 100);
	atomic_store(&f->async_failures, 1);
	assert_true(run_until(f, leads, 5000));

	write_entries(f, 10); /* past the threshold of 8: a snapshot, whose data fails */
	assert_true(run_until(f, first_snapshot_over, 5000));
	write_entries(f, 10); /* the next snapshot */
	assert_true(run_until(f, two_snapshot_calls, 5000));
	assert_int_equal(atomic_load(&f->async_failures), 0);

	unsigned k = snapshot_files(n, true, names, 8);
	assert_true(k >= 1 && k <= 8);
	for (unsigned i = 0; i < k; i++) {
		char path[4096];
		struct stat st;
		uint64_t count = 0;
		snprintf(path, sizeof path, "%s/%s", n->dir, names[i]);
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_size, SNAPSHOT_SIZE);
		FILE *fp = fopen(path, "rb");
		assert_non_null(fp);
		assert_int_equal(fread(&count, sizeof count, 1, fp), 1);
		fclose(fp);
		assert_true(count >= 8); /* taken after the threshold's entries applied */
	}
}

/* metadata files on the real backend, without a server: io->init() loads them, set_term() and
 * set_vote() store them. */
struct meta_io {
	uv_loop_t loop;
	struct raft_uv_transport transport;
	struct raft_io io;
	bool inited;
};

/* metadata file N of DIR, opened in MODE. */
static FILE *meta_file(const char *dir, int n, const char *mode)
{
	char path[256];
	snprintf(path, sizeof path, "%s/metadata%d", dir, n);
	FILE *fp = fopen(path, mode);
	assert_non_null(fp);
	return fp;
}

/* Write metadata file N as {format, version, term, vote}, little endian as raft writes it. */
static void meta_put(const char *dir, int n, const uint64_t v[4])
{
	uint64_t le[4];
	for (int i = 0; i < 4; i++) {
		le[i] = htole64(v[i]);
	}
	FILE *fp = meta_file(dir, n, "wb");
	assert_int_equal(fwrite(le, sizeof le, 1, fp), 1);
	assert_int_equal(fclose(fp), 0);
}

/* metadata file N as {format, version, term, vote}. */
static void meta_get(const char *dir, int n, uint64_t v[4])
{
	FILE *fp = meta_file(dir, n, "rb");
	assert_int_equal(fread(v, sizeof(uint64_t), 4, fp), 4);
	fclose(fp);
	for (int i = 0; i < 4; i++) {
		v[i] = le64toh(v[i]);
	}
}

static void meta_expect(const char *dir, int n, uint64_t version, uint64_t term, uint64_t vote)
{
	uint64_t v[4];
	meta_get(dir, n, v);
	assert_int_equal(v[0], 1);
	assert_int_equal(v[1], version);
	assert_int_equal(v[2], term);
	assert_int_equal(v[3], vote);
}

/* Open the backend on DIR; its init, which loads the metadata, returns what it returns. */
static int meta_open(struct meta_io *m, const char *dir)
{
	memset(m, 0, sizeof *m);
	assert_int_equal(uv_loop_init(&m->loop), 0);
	m->transport.version = 1;
	assert_int_equal(raft_uv_tcp_init(&m->transport, &m->loop), 0);
	assert_int_equal(raft_uv_init(&m->io, &m->loop, dir, &m->transport), 0);
	int rv = m->io.init(&m->io, 1, "127.0.0.1:9");
	m->inited = rv == 0;
	return rv;
}

static void meta_closed(struct raft_io *io)
{
	(void)io;
}

static void meta_close(struct meta_io *m)
{
	if (m->inited) {
		m->io.close(&m->io, meta_closed);
		uv_run(&m->loop, UV_RUN_DEFAULT);
	}
	raft_uv_close(&m->io);
	raft_uv_tcp_close(&m->transport);
	uv_run(&m->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&m->loop), 0);
}

/* Open the backend on DIR, which must load the term and vote given. */
static void meta_expect_load(const char *dir, raft_term want_term, raft_id want_vote)
{
	struct meta_io m;
	struct raft_snapshot *snapshot = NULL;
	raft_index start = 0;
	struct raft_entry *entries = NULL;
	size_t n = 0;
	raft_term term;
	raft_id vote;
	assert_int_equal(meta_open(&m, dir), 0);
	assert_int_equal(m.io.load(&m.io, &term, &vote, &snapshot, &start, &entries, &n), 0);
	assert_null(snapshot);
	assert_int_equal(n, 0);
	assert_int_equal(term, want_term);
	assert_int_equal(vote, want_vote);
	meta_close(&m);
}

static void test_metadata_files(void **state)
{
	(void)state;
	char dir[] = "/tmp/tabby-raft-meta.XXXXXX";
	char path[256];
	char msg[RAFT_ERRMSG_BUF_SIZE];
	const uint64_t zero[4] = {0};
	struct meta_io m;
	assert_non_null(mkdtemp(dir));

	/* metadata2, the file of the next store, reads zeros: the load takes metadata1. */
	meta_put(dir, 1, (const uint64_t[4]){1, 3, 7, 2});
	meta_put(dir, 2, zero);
	meta_expect_load(dir, 7, 2);
	assert_int_equal(meta_open(&m, dir), 0);
	/* The next store overwrites the bad file, and leaves the good one. */
	assert_int_equal(m.io.set_term(&m.io, 8), 0);
	meta_expect(dir, 2, 4, 8, 0);
	meta_expect(dir, 1, 3, 7, 2);

	/* A store that fails (metadata1 cannot be opened for writing: a directory is in its way)
	 * leaves both files as they were and is reported; its retry goes to the same file, at the
	 * same version. */
	snprintf(path, sizeof path, "%s/metadata1", dir);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_not_equal(m.io.set_vote(&m.io, 3), 0);
	assert_int_not_equal(raft_uv_disk_error(&m.io, msg, NULL), 0);
	assert_non_null(strstr(msg, "metadata1"));
	meta_expect(dir, 2, 4, 8, 0);
	assert_int_equal(rmdir(path), 0);
	assert_int_equal(m.io.set_vote(&m.io, 3), 0);
	assert_int_equal(raft_uv_disk_error(&m.io, NULL, NULL), 0);
	meta_expect(dir, 1, 5, 8, 3);
	meta_expect(dir, 2, 4, 8, 0);
	meta_close(&m);
	meta_expect_load(dir, 8, 3);

	/* The newer file reads zeros: the older one is loaded. */
	meta_put(dir, 1, zero);
	meta_expect_load(dir, 8, 0);

	/* Nothing to fall back on: neither file decodes, or the other does not exist. */
	meta_put(dir, 2, zero);
	assert_int_equal(meta_open(&m, dir), RAFT_CORRUPT);
	assert_non_null(strstr(m.io.errmsg, "neither metadata file decodes"));
	meta_close(&m);
	snprintf(path, sizeof path, "%s/metadata2", dir);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(meta_open(&m, dir), RAFT_MALFORMED);
	assert_non_null(strstr(m.io.errmsg, "decode content of metadata1: bad format version 0"));
	meta_close(&m);

	snprintf(path, sizeof path, "rm -rf %s", dir);
	assert_int_equal(system(path), 0);
}

/* Takes every AIO event the host has left (fs.aio-max-nr is host-wide), as raft's own tests do
 * (AioFill in its test/lib/aio.c): contexts of decreasing size until io_setup() refuses even one
 * event with EAGAIN. Every other io_setup() on the host fails until aio_release(); teardown
 * releases them if the test fails first, and the kernel when the process ends. */
static void aio_fill(struct fx *f)
{
	char buf[32] = "";
	FILE *fp = fopen("/proc/sys/fs/aio-max-nr", "r");
	assert_non_null(fp);
	assert_non_null(fgets(buf, sizeof buf, fp));
	fclose(fp);
	unsigned long nr = strtoul(buf, NULL, 10);
	assert_true(nr > 0);
	while (nr > 0) {
		aio_context_t ctx = 0;
		if (syscall(__NR_io_setup, nr, &ctx) == 0) {
			f->aio[f->aio_n++] = ctx;
			assert_true(f->aio_n < AIO_CONTEXTS);
			continue;
		}
		assert_true(errno == EAGAIN || errno == EINVAL); /* EINVAL: too large for one */
		nr /= 2;
	}
	aio_context_t ctx = 0;
	assert_int_equal(syscall(__NR_io_setup, 1, &ctx), -1);
	assert_int_equal(errno, EAGAIN);
}

/* Takes the AIO events another process may have released meanwhile. */
static void aio_top_up(struct fx *f)
{
	aio_context_t ctx = 0;
	while (f->aio_n < AIO_CONTEXTS && syscall(__NR_io_setup, 1, &ctx) == 0) {
		f->aio[f->aio_n++] = ctx;
		ctx = 0;
	}
}

static void aio_release(struct fx *f)
{
	while (f->aio_n > 0) {
		f->aio_n--;
		assert_int_equal(syscall(__NR_io_destroy, f->aio[f->aio_n]), 0);
	}
}

static void seq_apply_cb(struct raft_apply *req, int status, void *result)
{
	struct fx *f = req->data;
	(void)result;
	if (status == 0) {
		f->applies++;
	} else {
		f->cbs++;
		f->last_status = status;
	}
	free(req);
}

/* Applies k entries of SEQ_SIZE bytes through server 1, numbered on from the last one sent,
 * without waiting for them; f->target is where they will all be applied. */
static void submit_seq(struct fx *f, unsigned k)
{
	submit_entries(f, k, SEQ_SIZE, seq_apply_cb);
	f->target += k;
}

static bool setup_failing(struct fx *f)
{
	return raft_uv_disk_error(&f->n[0].io, NULL, NULL) == RAFT_TOOMANY;
}

/* Runs the loop on while the host's AIO events stay taken. */
static bool aio_held(struct fx *f)
{
	aio_top_up(f);
	return false;
}

/* AIO contexts mapped into this process: their rings show in /proc/self/maps. */
static unsigned aio_rings(void)
{
	char line[512];
	unsigned k = 0;
	FILE *fp = fopen("/proc/self/maps", "r");
	assert_non_null(fp);
	while (fgets(line, sizeof line, fp) != NULL) {
		k += strstr(line, "/[aio]") != NULL;
	}
	fclose(fp);
	return k;
}

/* The snapshot is written and the open segment it closed is gone with its writer's AIO context
 * (released by a thread of its own: deps/raft-patches/0008). */
static bool no_writer(struct fx *f)
{
	return has_snapshot(f) && !f->n[0].raft.legacy.snapshot_taking && aio_rings() == 0;
}

/* Server 1 writes one entry and takes a snapshot, which closes its open segment: no writer can
 * release AIO events while they are held, and the next entry opens a new segment. */
static void close_segment(struct fx *f)
{
	struct raft *r = &f->n[0].raft;
	raft_set_snapshot_threshold(r, 1);
	submit_seq(f, 1);
	assert_true(run_until(f, applied_target, 5000));
	raft_set_snapshot_threshold(r, 1000);
	assert_true(run_until(f, no_writer, 5000));
}

/* Open segments in server 1's directory. */
static unsigned open_segments(struct fx *f)
{
	DIR *d = opendir(f->n[0].dir);
	struct dirent *e;
	unsigned k = 0;
	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		k += strncmp(e->d_name, "open-", 5) == 0;
	}
	closedir(d);
	return k;
}

static bool seq_replayed(struct fx *f)
{
	return f->n[0].seq == f->seq_sent;
}

/* Server 1 (segments of 32 KiB, about 30 entries) writes entries, and a snapshot closes its open
 * segment. Then the host's AIO events run out and 100 more entries are written, so the next
 * segments' writers cannot be set up: two come from the pool of prepared segments (set up inside
 * raft_apply()), the others are prepared meanwhile (set up when their file is ready). The failure
 * is reported, nothing is lost, and once AIO is back every entry is applied once, in order, also
 * when the log is read back after a restart. A close while the setup fails leaves nothing behind.
 */
static void test_writer_setup_retry(void **state)
{
	struct fx *f = *state;
	struct node *n = &f->n[0];
	char msg[RAFT_ERRMSG_BUF_SIZE] = "";

	raft_uv_set_disk_retry(&n->io, 100);
	raft_set_capacity_threshold(&n->raft, 0);    /* small segments report little capacity */
	raft_set_snapshot_threshold(&n->raft, 1000); /* only close_segment() takes snapshots */
	assert_true(run_until(f, leads, 5000));
	submit_seq(f, 10);
	assert_true(run_until(f, applied_target, 5000));
	if (aio_rings() == 0) {
		/* The backend writes through its thread pool where the directory's file system
		 * takes no direct I/O (tmpfs): no writer setup makes an AIO context to refuse. */
		print_message("skipped: %s takes no kernel AIO\n", n->dir);
		skip();
	}
	close_segment(f);

	unsigned applied_before = f->applies;
	aio_fill(f);
	submit_seq(f, 100);
	bool reported = run_until(f, setup_failing, 2000);
	if (reported) {
		assert_int_equal(raft_uv_disk_error(&n->io, msg, NULL), RAFT_TOOMANY);
	}
	run_until(f, aio_held, 500); /* a few retries fail */
	unsigned applied_meanwhile = f->applies;
	bool still_reported = setup_failing(f);
	aio_release(f);

	assert_true(run_until(f, applied_target, 5000));
	assert_int_equal(f->last_status, 0);
	assert_int_equal(n->seq, f->seq_sent);
	assert_int_equal(n->seq_errors, 0);
	assert_true(reported && still_reported);
	assert_non_null(strstr(msg, "setup writer for open-"));
	assert_int_equal(applied_meanwhile, applied_before); /* the new entries waited */
	assert_int_equal(raft_uv_disk_error(&n->io, NULL, NULL), 0);

	/* Later entries land where they belong. */
	submit_seq(f, 5);
	assert_true(run_until(f, applied_target, 5000));
	assert_int_equal(n->seq, f->seq_sent);

	/* The log on disk holds every entry once, in order. */
	close_node(n);
	assert_true(run_until(f, leader_closed, 5000));
	raft_uv_close(&n->io);
	raft_uv_tcp_close(&n->transport);
	assert_true(run_until(f, loop_idle, 5000));
	n->close_started = n->closed = false;
	n->seq = n->applied = 0;
	node_open(f, n);
	raft_uv_set_segment_size(&n->io, SMALL_SEGMENT);
	node_start(n);
	raft_set_capacity_threshold(&n->raft, 0);
	raft_set_snapshot_threshold(&n->raft, 1000);
	assert_true(run_until(f, seq_replayed, 5000));
	assert_int_equal(n->seq_errors, 0);
	assert_int_equal(n->restores, 1); /* the snapshot, then the entries after it */

	/* A close while the setup fails: the waiting entries fail, and their segments' files are
	 * removed. */
	assert_true(run_until(f, leads, 5000));
	close_segment(f);
	aio_fill(f);
	submit_seq(f, 40);
	assert_true(run_until(f, setup_failing, 2000));
	close_node(n);
	assert_true(run_until(f, leader_closed, 5000));
	aio_release(f);
	assert_int_equal(f->applies + f->cbs, f->seq_sent); /* every request called back */
	assert_int_equal(f->cbs, 40);
	assert_int_equal(f->last_status, RAFT_LEADERSHIPLOST);
	assert_int_equal(open_segments(f), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_requests_while_closing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_close_while_loading, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failed_load, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failed_snapshot_data, setup, teardown),
	    cmocka_unit_test(test_metadata_files),
	    cmocka_unit_test_setup_teardown(test_writer_setup_retry, setup_small_segments,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
