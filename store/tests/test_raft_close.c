/*
 * Requests made to the raft library Tabby links while raft_close() is under way, on its real
 * libuv backend (a single voter in a temporary directory): each fails at once with RAFT_CANCELED
 * and its callback never fires (deps/raft-patches/0009-closing-requests.patch). Without the
 * patch, 0.22.1 returned an uninitialized value for them.
 *
 * The store never makes such a request (it checks its own closing flag first), so this is the
 * library's contract, tested where it is kept.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

struct fx {
	uv_loop_t loop;
	struct raft_uv_transport transport;
	struct raft_io io;
	struct raft_fsm fsm;
	struct raft raft;
	char dir[64];
	unsigned applied; /* entries the FSM applied */
	unsigned cbs;     /* apply and barrier callbacks that fired */
	int last_status;
	bool close_started, closed;
};

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
	struct fx *f = fsm->data;
	(void)buf;
	f->applied++;
	*result = NULL;
	return 0;
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
	struct fx *f = req->data;
	(void)result;
	f->cbs++;
	f->last_status = status;
}

static void barrier_cb(struct raft_barrier *req, int status)
{
	struct fx *f = req->data;
	f->cbs++;
	f->last_status = status;
}

static void closed_cb(struct raft *r)
{
	struct fx *f = r->data;
	f->closed = true;
}

static void on_deadline(uv_timer_t *t)
{
	uv_stop(t->loop);
}

static bool is_leader(struct fx *f)
{
	return raft_state(&f->raft) == RAFT_LEADER;
}

static bool called_back(struct fx *f)
{
	return f->cbs > 0;
}

static bool is_closed(struct fx *f)
{
	return f->closed;
}

/* Runs the loop until done(f) or 5 s passed. */
static void run_until(struct fx *f, bool (*done)(struct fx *))
{
	uv_timer_t deadline;
	uv_timer_init(&f->loop, &deadline);
	uv_timer_start(&deadline, on_deadline, 5000, 0);
	while (!done(f) && uv_is_active((uv_handle_t *)&deadline)) {
		uv_run(&f->loop, UV_RUN_ONCE);
	}
	uv_close((uv_handle_t *)&deadline, NULL);
	uv_run(&f->loop, UV_RUN_NOWAIT);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	assert_non_null(f);
	snprintf(f->dir, sizeof f->dir, "/tmp/tabby-raft-close.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	assert_int_equal(uv_loop_init(&f->loop), 0);
	f->transport.version = 1;
	assert_int_equal(raft_uv_tcp_init(&f->transport, &f->loop), 0);
	assert_int_equal(raft_uv_init(&f->io, &f->loop, f->dir, &f->transport), 0);
	f->fsm.version = 1;
	f->fsm.data = f;
	f->fsm.apply = fsm_apply;
	/* Port 0: the transport listens on a port of the kernel's choice; a single voter never
	 * connects to its own address. */
	assert_int_equal(raft_init(&f->raft, &f->io, &f->fsm, 1, "127.0.0.1:0"), 0);
	f->raft.data = f;
	raft_set_election_timeout(&f->raft, 50);
	raft_set_heartbeat_timeout(&f->raft, 10);

	struct raft_configuration conf;
	raft_configuration_init(&conf);
	assert_int_equal(raft_configuration_add(&conf, 1, "127.0.0.1:0", RAFT_VOTER), 0);
	assert_int_equal(raft_bootstrap(&f->raft, &conf), 0);
	raft_configuration_close(&conf);
	assert_int_equal(raft_start(&f->raft), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	if (!f->close_started) { /* the test failed before it closed raft */
		raft_close(&f->raft, closed_cb);
	}
	run_until(f, is_closed);
	raft_uv_close(&f->io);
	raft_uv_tcp_close(&f->transport);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static struct raft_buffer entry_buf(void)
{
	struct raft_buffer b = {.base = raft_malloc(8), .len = 8};
	assert_non_null(b.base);
	memset(b.base, 0x5a, 8);
	return b;
}

static void test_requests_while_closing(void **state)
{
	struct fx *f = *state;

	/* The single voter elects itself; an entry commits and applies, so the backend works. */
	run_until(f, is_leader);
	assert_true(is_leader(f));
	struct raft_apply ok = {.data = f};
	struct raft_buffer b = entry_buf();
	assert_int_equal(raft_apply(&f->raft, &ok, &b, 1, apply_cb), 0);
	run_until(f, called_back);
	assert_int_equal(f->cbs, 1);
	assert_int_equal(f->last_status, 0);
	unsigned applied = f->applied;
	assert_true(applied >= 1);

	/* Close, and make requests before the close completes. */
	raft_close(&f->raft, closed_cb);
	f->close_started = true;
	assert_false(f->closed);

	struct raft_apply late = {.data = f};
	b = entry_buf();
	assert_int_equal(raft_apply(&f->raft, &late, &b, 1, apply_cb), RAFT_CANCELED);
	raft_free(b.base); /* refused: the buffer stays the caller's */

	struct raft_barrier bar = {.data = f};
	assert_int_equal(raft_barrier(&f->raft, &bar, barrier_cb), RAFT_CANCELED);

	run_until(f, is_closed);
	assert_true(f->closed);
	assert_int_equal(f->cbs, 1);           /* neither refused request called back */
	assert_int_equal(f->applied, applied); /* and nothing more was applied */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_requests_while_closing, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
