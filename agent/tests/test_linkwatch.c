/*
 * The link removal announcements (agent/linkwatch.c) against the real kernel: the test moves
 * itself into a private network namespace, makes veth pairs with ip(8), and runs a libuv loop
 * until the waits it registered are answered or a deadline passes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netlink/netlink.h>

#include "agent/internal.h"
#include "agent/tests/shell.h"

static bool have_root;

/* Every read linkwatch.c makes goes through the real nl_recvmsgs_report (the link flag
 * --wrap=nl_recvmsgs_report, agent/tests/meson.build), counted: messages read, and reads that
 * found the socket empty or failed. */
int __real_nl_recvmsgs_report(struct nl_sock *sk, struct nl_cb *cb);
int __wrap_nl_recvmsgs_report(struct nl_sock *sk, struct nl_cb *cb);
static int reads_msgs, reads_empty;

int __wrap_nl_recvmsgs_report(struct nl_sock *sk, struct nl_cb *cb)
{
	int rv = __real_nl_recvmsgs_report(sk, cb);
	if (rv > 0) {
		reads_msgs += rv;
	} else {
		reads_empty++;
	}
	return rv;
}

struct fx {
	uv_loop_t loop;
	struct agent a;
	uv_timer_t deadline;
	int fired[4];
	struct link_gone g[4];
};

static void on_gone(struct link_gone *g)
{
	int *n = g->data;
	(*n)++;
}

static void on_deadline(uv_timer_t *t)
{
	uv_stop(t->loop);
}

/* Runs the loop until every wait in want (a bit mask of g[]) fired or 2 s passed, then reads
 * whatever else is queued. With want 0 that read is the whole run, and it is enough to see that a
 * wait did not fire: the kernel queues a link's announcement to its listeners inside the request
 * that deleted the link, so it is on the socket before the ip(8) command returns. */
static void run_until(struct fx *f, unsigned want)
{
	uv_timer_start(&f->deadline, on_deadline, 2000, 0);
	for (;;) {
		bool all = true;
		for (int i = 0; i < 4; i++) {
			all = all && (!(want & (1u << i)) || f->fired[i] > 0);
		}
		if (all || uv_run(&f->loop, UV_RUN_ONCE) == 0 ||
		    !uv_is_active((uv_handle_t *)&f->deadline)) {
			break;
		}
	}
	uv_timer_stop(&f->deadline);
	/* anything else already queued by the kernel is read too */
	uv_run(&f->loop, UV_RUN_NOWAIT);
}

/* Link lwI (a veth pair, lwI and lwIp), with the alias when it is not NULL. */
static void link_make(int i, const char *alias)
{
	assert_int_equal(test_sh("ip link add lw%d type veth peer name lw%dp", i, i), 0);
	if (alias != NULL) {
		assert_int_equal(test_sh("ip link set lw%d alias %s", i, alias), 0);
	}
}

static void wait_for(struct fx *f, int i, const char *name, const char *alias)
{
	snprintf(f->g[i].name, sizeof f->g[i].name, "%s", name);
	f->g[i].alias = alias;
	f->g[i].cb = on_gone;
	f->g[i].data = &f->fired[i];
	assert_true(linkwatch_wait(&f->a, &f->g[i]));
}

static int setup(void **state)
{
	if (!have_root) {
		skip();
	}
	struct fx *f = calloc(1, sizeof *f);
	assert_non_null(f);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	f->a.loop = &f->loop;
	uv_timer_init(&f->loop, &f->deadline);
	assert_int_equal(linkwatch_start(&f->a), 0);
	assert_non_null(f->a.linkwatch);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	linkwatch_stop(&f->a);
	assert_null(f->a.linkwatch);
	uv_close((uv_handle_t *)&f->deadline, NULL);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	for (int i = 0; i < 4; i++) {
		test_sh("ip link del lw%d 2>/dev/null", i);
	}
	free(f);
	return 0;
}

/* A wait ends on its own link's removal and on nothing else: not another link's, not the same
 * name under another alias, not the link's creation or changes. */
static void test_removal_matches_name_and_alias(void **state)
{
	struct fx *f = *state;
	link_make(0, "tabby:c0/eth0");
	link_make(1, "tabby:c1/eth0");
	wait_for(f, 0, "lw0", "tabby:c0/eth0");
	wait_for(f, 1, "lw1", "tabby:other/eth0"); /* lw1 carries another alias */
	wait_for(f, 2, "lw2", "tabby:c2/eth0");    /* never exists */

	assert_int_equal(test_sh("ip link set lw0 up && ip link set lw1 mtu 1400"), 0);
	run_until(f, 0);
	assert_int_equal(f->fired[0], 0); /* changes are not removals */

	assert_int_equal(test_sh("ip link del lw1"), 0);
	run_until(f, 0);
	assert_int_equal(f->fired[1], 0);

	assert_int_equal(test_sh("ip link del lw0"), 0);
	run_until(f, 1u << 0);
	assert_int_equal(f->fired[0], 1);
	assert_int_equal(f->fired[1], 0);
	assert_int_equal(f->fired[2], 0);

	/* a fired wait is off the list: the same name and alias again do not fire it twice */
	link_make(0, "tabby:c0/eth0");
	assert_int_equal(test_sh("ip link del lw0"), 0);
	run_until(f, 0);
	assert_int_equal(f->fired[0], 1);
	linkwatch_cancel(&f->a, &f->g[1]);
	linkwatch_cancel(&f->a, &f->g[2]);
}

/* NULL alias: a link without one. */
static void test_no_alias(void **state)
{
	struct fx *f = *state;
	link_make(0, NULL);
	link_make(1, "tabby:c1/eth0");
	wait_for(f, 0, "lw0", NULL);
	wait_for(f, 1, "lw1", NULL);
	assert_int_equal(test_sh("ip link del lw1 && ip link del lw0"), 0);
	run_until(f, 1u << 0);
	assert_int_equal(f->fired[0], 1);
	assert_int_equal(f->fired[1], 0);
	linkwatch_cancel(&f->a, &f->g[1]);
}

/* A cancelled wait never fires; cancelling one that is not registered is harmless; an empty
 * name is refused. */
static void test_cancel(void **state)
{
	struct fx *f = *state;
	link_make(0, "tabby:c0/eth0");
	link_make(3, "tabby:c3/eth0");
	wait_for(f, 0, "lw0", "tabby:c0/eth0");
	wait_for(f, 3, "lw3", "tabby:c3/eth0");
	linkwatch_cancel(&f->a, &f->g[0]);
	linkwatch_cancel(&f->a, &f->g[0]);
	assert_int_equal(test_sh("ip link del lw0 && ip link del lw3"), 0);
	run_until(f, 1u << 3);
	assert_int_equal(f->fired[0], 0);
	assert_int_equal(f->fired[3], 1);

	struct link_gone empty = {.cb = on_gone, .data = &f->fired[1]};
	assert_false(linkwatch_wait(&f->a, &empty));
}

/* The loop reads the socket until it is empty and then waits again: one read that finds nothing
 * per wake-up, and a wake-up only when something was announced. A read loop that took the
 * empty socket's -NLE_AGAIN for an error to retry spun 256 reads per announcement, a millisecond
 * of the loop's time during every CNI ADD's wiring. */
static void test_reads_stop_when_empty(void **state)
{
	struct fx *f = *state;
	wait_for(f, 3, "lw9", "tabby:never/eth0"); /* listening while it waits */
	reads_msgs = reads_empty = 0;
	for (int i = 0; i < 4; i++) {
		link_make(i, "tabby:c/eth0");
	}
	assert_int_equal(test_sh("ip link del lw0 && ip link del lw1 && ip link del lw2 && "
	                         "ip link del lw3"),
	                 0);
	run_until(f, 0);
	assert_true(reads_msgs >= 8); /* each pair's creation and removal are announced */
	assert_true(reads_empty >= 1);
	assert_true(reads_empty <= reads_msgs);
	linkwatch_cancel(&f->a, &f->g[3]);
}

/* A link made, set up and removed is not read at all: the watch is not listening. */
static void assert_deaf(struct fx *f)
{
	reads_msgs = reads_empty = 0;
	link_make(2, "tabby:c2/eth0");
	assert_int_equal(test_sh("ip link set lw2 up && ip link del lw2"), 0);
	run_until(f, 0);
	assert_int_equal(reads_msgs, 0);
	assert_int_equal(reads_empty, 0);
}

/* With no wait registered the watch does not listen: link changes wake nothing and nothing is
 * read. It listens from the first wait on and stops once the last one has ended, by its removal
 * or by a cancel. An agent that listened all the time woke about twice per CNI ADD for
 * announcements nobody waited for. */
static void test_listens_only_while_waiting(void **state)
{
	struct fx *f = *state;
	assert_deaf(f);
	link_make(0, "tabby:c0/eth0");

	wait_for(f, 0, "lw0", "tabby:c0/eth0");
	link_make(1, "tabby:c1/eth0");
	assert_int_equal(test_sh("ip link del lw1 && ip link del lw0"), 0);
	run_until(f, 1u << 0);
	assert_int_equal(f->fired[0], 1);
	assert_true(reads_msgs >= 3); /* lw1 made and removed, lw0 removed */

	assert_deaf(f); /* the last wait ended */

	wait_for(f, 1, "lw1", "tabby:c1/eth0");
	linkwatch_cancel(&f->a, &f->g[1]);
	assert_deaf(f); /* ended by a cancel too */
	assert_int_equal(f->fired[1], 0);
}

/* A removal announced while a wait was registered but not read before the wait was cancelled
 * (the delete returned first) is dropped with the rest when the watch stops listening: a later
 * wait for the same name and alias ends on its own removal, not on that old announcement. */
static void test_stale_announcement_dropped(void **state)
{
	struct fx *f = *state;
	link_make(0, "tabby:c0/eth0");
	wait_for(f, 0, "lw0", "tabby:c0/eth0");
	assert_int_equal(test_sh("ip link del lw0"),
	                 0); /* queued, not read: the loop did not run */
	linkwatch_cancel(&f->a, &f->g[0]);
	link_make(0, "tabby:c0/eth0");
	wait_for(f, 1, "lw0", "tabby:c0/eth0");
	run_until(f, 0);
	assert_int_equal(f->fired[0], 0);
	assert_int_equal(f->fired[1], 0);
	assert_int_equal(test_sh("ip link del lw0"), 0);
	run_until(f, 1u << 1);
	assert_int_equal(f->fired[1], 1);
}

/* Stopped with waits still registered: they never fire, and nothing is left behind (ASan). */
static void test_stop_with_waits(void **state)
{
	struct fx *f = *state;
	link_make(0, "tabby:c0/eth0");
	wait_for(f, 0, "lw0", "tabby:c0/eth0");
	linkwatch_stop(&f->a);
	assert_false(linkwatch_wait(&f->a, &f->g[1])); /* no watch any more */
	assert_int_equal(test_sh("ip link del lw0"), 0);
	run_until(f, 0);
	assert_int_equal(f->fired[0], 0);
	assert_int_equal(linkwatch_start(&f->a), 0); /* teardown stops it again */
}

int main(void)
{
	have_root = geteuid() == 0 && unshare(CLONE_NEWNET) == 0;
	if (!have_root) {
		fprintf(stderr, "test_linkwatch: needs root (network namespaces); skipping\n");
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_removal_matches_name_and_alias, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_no_alias, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reads_stop_when_empty, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_listens_only_while_waiting, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stale_announcement_dropped, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stop_with_waits, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
