/*
 * The members' raft roles (roles.c) on made-up clusters: growth to 3 and 5 voters, sticky
 * voters, a silent voter replaced (promotion first), the guards (no candidate, a candidate that
 * does not answer or is backed off, the leader never demoted, no demotion that costs the
 * majority), spares, and a walk over many generated clusters that applies every step and checks
 * that no step ever leaves the answering voters without a majority and that the walk settles.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raft.h>

#include "agent/roles.h"

#define MAXM   16
#define ONLINE 3000
#define LOST   30000
#define SILENT (LOST + 1000) /* long enough to be replaced */
#define QUIET  10000         /* does not answer, not replaced yet */

struct cluster {
	struct roles_member m[MAXM];
	unsigned n;
	struct roles_policy p;
};

static void init(struct cluster *c, uint64_t self)
{
	memset(c, 0, sizeof *c);
	c->p = (struct roles_policy){.self = self, .online_ms = ONLINE, .lost_ms = LOST};
}

/* A member with a record, in the configuration with `role` (-1: not in it). */
static struct roles_member *member(struct cluster *c, uint64_t id, int role, uint64_t silent)
{
	struct roles_member *m = &c->m[c->n++];
	*m = (struct roles_member){.id = id,
	                           .recorded = true,
	                           .in_config = role >= 0,
	                           .role = role >= 0 ? role : 0,
	                           .silent_ms = silent};
	return m;
}

/* The usual start: leader 1 with voters 2 and 3, 2 silent for silent2; returns member 2. */
static struct roles_member *three_voters(struct cluster *c, uint64_t silent2)
{
	init(c, 1);
	member(c, 1, RAFT_VOTER, 0);
	struct roles_member *two = member(c, 2, RAFT_VOTER, silent2);
	member(c, 3, RAFT_VOTER, 0);
	return two;
}

static struct roles_member *find(struct cluster *c, uint64_t id)
{
	for (unsigned i = 0; i < c->n; i++) {
		if (c->m[i].id == id) {
			return &c->m[i];
		}
	}
	fail_msg("no member %llu", (unsigned long long)id);
	return NULL;
}

static void apply(struct cluster *c, const struct roles_step *st)
{
	struct roles_member *m = find(c, st->id);
	switch (st->action) {
	case ROLES_ADD:
		assert_false(m->in_config);
		m->in_config = true;
		m->role = RAFT_STANDBY;
		break;
	case ROLES_VOTER:
		assert_int_not_equal(m->role, RAFT_VOTER);
		m->role = RAFT_VOTER;
		break;
	case ROLES_STANDBY:
		assert_int_not_equal(m->role, RAFT_STANDBY);
		m->role = RAFT_STANDBY;
		break;
	case ROLES_NONE:
		fail_msg("applying no step");
	}
}

/* What the next step does. */
static enum roles_action next(struct cluster *c)
{
	return roles_next(c->m, c->n, &c->p).action;
}

/* The next step must be `action` on `id` for `reason` (reason -1: any). */
static struct roles_step expect(struct cluster *c, enum roles_action action, int reason,
                                uint64_t id)
{
	struct roles_step st = roles_next(c->m, c->n, &c->p);
	assert_int_equal(st.action, action);
	if (reason >= 0) {
		assert_int_equal(st.reason, reason);
	}
	assert_int_equal(st.id, id);
	return st;
}

/* Steps until nothing is left to do (at most `max`); returns how many. */
static unsigned settle(struct cluster *c, unsigned max)
{
	for (unsigned k = 0; k < max; k++) {
		struct roles_step st = roles_next(c->m, c->n, &c->p);
		if (st.action == ROLES_NONE) {
			return k;
		}
		apply(c, &st);
	}
	fail_msg("no settled state after %u steps", max);
	return max;
}

/* The voters' ids, ascending, as "1,2,3". */
static const char *voters(const struct cluster *c)
{
	static char out[128];
	size_t used = 0;
	out[0] = 0;
	for (uint64_t id = 1; id <= 64; id++) {
		for (unsigned i = 0; i < c->n; i++) {
			if (c->m[i].id == id && c->m[i].in_config && c->m[i].role == RAFT_VOTER) {
				used += (size_t)snprintf(out + used, sizeof out - used, "%s%llu",
				                         used ? "," : "", (unsigned long long)id);
			}
		}
	}
	return out;
}

static void test_wanted(void **state)
{
	(void)state;
	unsigned want[] = {0, 1, 2, 3, 3, 5, 5, 5, 5};
	for (unsigned n = 0; n < sizeof want / sizeof want[0]; n++) {
		assert_int_equal(roles_voters_wanted(n), want[n]);
	}
	assert_int_equal(roles_voters_wanted(1000), 5);
}

/* Members join one by one: 1 voter, 2, 3, then standbys; a fifth member makes 5 voters. */
static void test_growth(void **state)
{
	(void)state;
	struct cluster c;
	init(&c, 1);
	member(&c, 1, RAFT_VOTER, 0);
	assert_int_equal(next(&c), ROLES_NONE);
	const char *expect[] = {"1", "1,2", "1,2,3", "1,2,3", "1,2,3,4,5", "1,2,3,4,5"};
	for (uint64_t id = 2; id <= 6; id++) {
		member(&c, id, -1, 0);
		struct roles_step st = roles_next(c.m, c.n, &c.p);
		assert_int_equal(st.action, ROLES_ADD);
		assert_int_equal(st.reason, ROLES_NEW_MEMBER);
		assert_int_equal(st.id, id);
		settle(&c, 8);
		assert_string_equal(voters(&c), expect[id - 1]);
	}
	/* The sixth stays a standby, holding a full replica. */
	assert_int_equal(find(&c, 6)->role, RAFT_STANDBY);
}

/* Growth promotes with the reason "too few", lowest id first. */
static void test_growth_reason(void **state)
{
	(void)state;
	struct cluster c;
	init(&c, 1);
	member(&c, 1, RAFT_VOTER, 0);
	member(&c, 4, RAFT_STANDBY, 0);
	member(&c, 3, RAFT_STANDBY, 0);
	expect(&c, ROLES_VOTER, ROLES_TOO_FEW, 3);
}

/* Voters stay voters while they answer, whatever their ids. */
static void test_sticky(void **state)
{
	(void)state;
	struct cluster c;
	init(&c, 3);
	member(&c, 1, RAFT_STANDBY, 0);
	member(&c, 3, RAFT_VOTER, 0);
	member(&c, 4, RAFT_VOTER, 0);
	member(&c, 5, RAFT_VOTER, 900);
	member(&c, 2, RAFT_STANDBY, 0);
	assert_int_equal(next(&c), ROLES_VOTER); /* 5 members: 5 voters */
	c.n = 4; /* member 2 leaves: 4 members want 3 voters, and have them */
	assert_int_equal(next(&c), ROLES_NONE);
	find(&c, 4)->silent_ms = QUIET; /* silent, not for long enough */
	assert_int_equal(next(&c), ROLES_NONE);
}

/* A voter silent past lost_ms: it is demoted first, naming the standby that answers, which is
 * promoted next; the old voter stays a standby when it answers again. */
static void test_replace_lost(void **state)
{
	(void)state;
	struct cluster c;
	init(&c, 1);
	member(&c, 1, RAFT_VOTER, 0);
	member(&c, 2, RAFT_VOTER, SILENT);
	member(&c, 3, RAFT_VOTER, 50);
	member(&c, 4, RAFT_STANDBY, 80);

	struct roles_step st = expect(&c, ROLES_STANDBY, ROLES_LOST, 2);
	assert_int_equal(st.other, 4);
	apply(&c, &st);
	st = expect(&c, ROLES_VOTER, ROLES_TOO_FEW, 4);
	apply(&c, &st);
	assert_string_equal(voters(&c), "1,3,4");
	assert_int_equal(next(&c), ROLES_NONE);

	find(&c, 2)->silent_ms = 0; /* back */
	assert_int_equal(next(&c), ROLES_NONE);
	assert_string_equal(voters(&c), "1,3,4");

	/* The review's case: had 4 died just after its last answer, demoting 2 first still
	 * leaves 1 and 3 answering of three voters. Promoting 4 first would have made four voters
	 * of which two answer, no majority. */
	find(&c, 2)->silent_ms = UINT64_MAX;
	find(&c, 4)->silent_ms = UINT64_MAX;
	unsigned up = 0, all = 0;
	assert_true(roles_voters_without(c.m, c.n, &c.p, 0, &up, &all));
	assert_int_equal(up, 2);
	assert_int_equal(all, 3);
}

/* No promotion that needs the promoted member for the majority, in case it died since it last
 * answered. */
static void test_dead_candidate(void **state)
{
	(void)state;
	struct cluster c;
	/* Voters 1, 2 and 3 with 3 silent (not lost yet) and 2 gone from the records want a
	 * third voter, but with 5 promoted, 2 of 4 voters would answer without it. */
	init(&c, 1);
	member(&c, 1, RAFT_VOTER, 0);
	member(&c, 2, RAFT_VOTER, 0)->recorded = false;
	member(&c, 3, RAFT_VOTER, QUIET);
	member(&c, 5, RAFT_STANDBY, 0);
	assert_int_equal(next(&c), ROLES_NONE);
	/* A single voter grows to two all the same. */
	init(&c, 1);
	member(&c, 1, RAFT_VOTER, 0);
	member(&c, 2, RAFT_STANDBY, 0);
	expect(&c, ROLES_VOTER, ROLES_TOO_FEW, 2);
}

/* The most silent of two lost voters goes first, then the other, then both replacements. */
static void test_replace_two(void **state)
{
	(void)state;
	struct cluster c;
	init(&c, 3);
	for (uint64_t id = 1; id <= 5; id++) {
		member(&c, id, RAFT_VOTER, 0);
	}
	member(&c, 6, RAFT_STANDBY, 0);
	member(&c, 7, RAFT_STANDBY, 0);
	find(&c, 1)->silent_ms = SILENT;
	find(&c, 2)->silent_ms = SILENT + 5000;
	struct roles_step st = expect(&c, ROLES_STANDBY, ROLES_LOST, 2);
	assert_int_equal(st.other, 6);
	apply(&c, &st);
	st = expect(&c, ROLES_STANDBY, ROLES_LOST, 1);
	apply(&c, &st);
	st = expect(&c, ROLES_VOTER, ROLES_TOO_FEW, 6);
	apply(&c, &st);
	st = expect(&c, ROLES_VOTER, ROLES_TOO_FEW, 7);
	apply(&c, &st);
	assert_int_equal(next(&c), ROLES_NONE);
	assert_string_equal(voters(&c), "3,4,5,6,7");
}

/* Nothing to do: no standby, a standby that does not answer, replacement switched off. */
static void test_no_replacement(void **state)
{
	(void)state;
	struct cluster c;
	three_voters(&c, SILENT);
	assert_int_equal(next(&c), ROLES_NONE);

	member(&c, 4, RAFT_STANDBY, ONLINE); /* silent just long enough not to count */
	assert_int_equal(next(&c), ROLES_NONE);
	find(&c, 4)->silent_ms = ONLINE - 1;
	expect(&c, ROLES_STANDBY, ROLES_LOST, 2);

	c.p.lost_ms = 0;
	assert_int_equal(next(&c), ROLES_NONE);
}

/* A standby whose last change failed is passed over for the next one. */
static void test_backed_off(void **state)
{
	(void)state;
	struct cluster c;
	three_voters(&c, SILENT);
	member(&c, 4, RAFT_STANDBY, 0)->backed_off = true;
	member(&c, 5, RAFT_STANDBY, 0);
	assert_int_equal(expect(&c, ROLES_STANDBY, ROLES_LOST, 2).other, 5);
	/* A backed-off new member is not added now; the others go ahead. */
	member(&c, 6, -1, 0)->backed_off = true;
	assert_int_equal(expect(&c, ROLES_STANDBY, ROLES_LOST, 2).other, 5);
	/* Nor is a lost voter whose demotion failed demoted again now. */
	find(&c, 2)->backed_off = true;
	assert_int_equal(next(&c), ROLES_NONE);
}

/* Shrinking from 5 members to 4: back to 3 voters, never demoting the leader, the silent voter
 * first. */
static void test_shrink(void **state)
{
	(void)state;
	struct cluster c;
	init(&c, 4);
	for (uint64_t id = 1; id <= 4; id++) {
		member(&c, id, RAFT_VOTER, 0);
	}
	expect(&c, ROLES_STANDBY, ROLES_TOO_MANY, 3); /* the highest id but the leader's */
	find(&c, 2)->silent_ms = QUIET;
	expect(&c, ROLES_STANDBY, ROLES_LOST, 2);
}

/* A removed voter (in the configuration, no record) is replaced before it is taken out. */
static void test_removed_voter_replaced(void **state)
{
	(void)state;
	struct cluster c;
	three_voters(&c, 0)->recorded = false;
	member(&c, 4, RAFT_STANDBY, 0);
	struct roles_step st = expect(&c, ROLES_VOTER, ROLES_TOO_FEW, 4);
	apply(&c, &st);
	assert_int_equal(next(&c), ROLES_NONE);
}

/* No demotion that would leave the answering voters short of a majority of all voters in the
 * configuration (a leaving voter counts until it is out). */
static void test_demotion_keeps_majority(void **state)
{
	(void)state;
	struct cluster c;
	init(&c, 1);
	c.p.lost_ms = 0;
	member(&c, 1, RAFT_VOTER, 0);
	member(&c, 2, RAFT_VOTER, 0);
	member(&c, 3, RAFT_VOTER, QUIET);
	member(&c, 4, RAFT_VOTER, QUIET);
	member(&c, 5, RAFT_VOTER, QUIET)->recorded = false;
	/* 4 recorded want 3 voters; demoting 3 or 4 leaves 2 answering of 4 voters. */
	assert_int_equal(next(&c), ROLES_NONE);
	find(&c, 5)->silent_ms = 0;
	expect(&c, ROLES_STANDBY, -1, 4);
}

/* A spare holds no replica: it becomes a standby. */
static void test_spare(void **state)
{
	(void)state;
	struct cluster c;
	three_voters(&c, 0);
	member(&c, 4, RAFT_SPARE, UINT64_MAX);
	expect(&c, ROLES_STANDBY, ROLES_FULL_REPLICA, 4);
}

/* A removal is judged after the promotions that come first: refused only when the voters left
 * would not have an answering majority. */
static void test_removal(void **state)
{
	(void)state;
	struct cluster c;
	unsigned up = 0, all = 0;
	three_voters(&c, QUIET);
	struct cluster copy = c;
	assert_false(roles_removal_keeps_majority(copy.m, copy.n, &copy.p, 3, &up, &all));
	assert_int_equal(up, 1);
	assert_int_equal(all, 2);
	copy = c; /* the silent one can go */
	assert_true(roles_removal_keeps_majority(copy.m, copy.n, &copy.p, 2, &up, &all));
	assert_int_equal(up, 2);
	copy = c; /* nor the leader: 2 and 3 would be left, one of them silent */
	assert_false(roles_removal_keeps_majority(copy.m, copy.n, &copy.p, 1, &up, &all));

	/* A standby that answers is promoted first only while the voters keep a majority
	 * without it: not with 2 silent (1 and 3 of 1, 2, 3 and 4 would have to answer)... */
	member(&c, 4, RAFT_STANDBY, 0);
	copy = c;
	assert_false(roles_removal_keeps_majority(copy.m, copy.n, &copy.p, 3, &up, &all));
	/* ...but with all three answering: 1, 2 and 4 are left. */
	c.m[1].silent_ms = 0;
	copy = c;
	assert_true(roles_removal_keeps_majority(copy.m, copy.n, &copy.p, 3, &up, &all));
	assert_int_equal(up, 3);
	assert_int_equal(all, 3);
	c.m[1].silent_ms = QUIET;
	/* One that does not answer is no help. */
	c.m[3].silent_ms = QUIET;
	copy = c;
	assert_false(roles_removal_keeps_majority(copy.m, copy.n, &copy.p, 3, &up, &all));
	/* A standby's removal changes no vote. */
	copy = c;
	assert_true(roles_removal_keeps_majority(copy.m, copy.n, &copy.p, 4, &up, &all));
	assert_int_equal(all, 3);

	/* The review's case: voter 3 already removed (no record, still in the configuration)
	 * leaves with it. Removing standby 4 now would leave 1 and 2, 2 silent: refused,
	 * although 1, 2 and 3 would be 2 of 3. */
	c.m[3].silent_ms = 0;
	c.m[2].recorded = false;
	copy = c;
	assert_false(roles_removal_keeps_majority(copy.m, copy.n, &copy.p, 4, &up, &all));
	assert_int_equal(up, 1);
	assert_int_equal(all, 2);
	/* The reconciler's check before it takes 3 out counts the configuration as it is. */
	assert_true(roles_voters_without(c.m, c.n, &c.p, 0, &up, &all));
	assert_false(roles_voters_without(c.m, c.n, &c.p, 3, &up, &all));

	/* The last member cannot go. */
	init(&c, 1);
	member(&c, 1, RAFT_VOTER, 0);
	assert_false(roles_removal_keeps_majority(c.m, c.n, &c.p, 1, &up, &all));
	assert_int_equal(all, 0);
}

static unsigned answering_voters(const struct cluster *c, unsigned *all)
{
	unsigned n = 0;
	*all = 0;
	for (unsigned i = 0; i < c->n; i++) {
		const struct roles_member *m = &c->m[i];
		if (m->in_config && m->role == RAFT_VOTER) {
			(*all)++;
			n += m->id == c->p.self || m->silent_ms < c->p.online_ms;
		}
	}
	return n;
}

/* Generated clusters (a fixed-seed generator, so every run walks the same ones): every step keeps
 * a majority of answering voters when there was one, and the walk settles with the wanted
 * number of voters when enough members answer. */
static void test_walk(void **state)
{
	(void)state;
	uint64_t x = 0x9e3779b97f4a7c15ull;
	uint64_t silences[] = {0, 40, ONLINE - 1, ONLINE, QUIET, LOST, SILENT, UINT64_MAX};
	for (unsigned round = 0; round < 20000; round++) {
		struct cluster c;
		unsigned n = 1 + (unsigned)((x >> 7) % 9);
		init(&c, 1 + (x >> 13) % n);
		for (unsigned i = 0; i < n; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			int roles[] = {-1, RAFT_VOTER, RAFT_VOTER, RAFT_STANDBY, RAFT_SPARE};
			int role = roles[x % 5];
			struct roles_member *m =
			    member(&c, i + 1, role, silences[(x >> 8) % (sizeof silences / 8)]);
			m->recorded = (x >> 20) % 8 != 0;
			m->in_config = m->in_config || !m->recorded;
			m->role = m->in_config && !(role >= 0) ? RAFT_VOTER : m->role;
			m->backed_off = (x >> 24) % 16 == 0;
		}
		struct roles_member *self = find(&c, c.p.self);
		self->recorded = self->in_config = true;
		self->role = RAFT_VOTER;
		self->silent_ms = 0;
		unsigned k;
		for (k = 0; k < 3 * MAXM; k++) {
			unsigned all = 0, up = answering_voters(&c, &all);
			struct roles_step st = roles_next(c.m, c.n, &c.p);
			if (st.action == ROLES_NONE) {
				break;
			}
			assert_int_not_equal(st.id, st.action == ROLES_STANDBY ? c.p.self : 0);
			apply(&c, &st);
			unsigned all_after = 0, up_after = answering_voters(&c, &all_after);
			if (2 * up > all && 2 * up_after <= all_after) {
				fail_msg("round %u: step %d on id %llu cost the majority (%u/%u -> "
				         "%u/%u)",
				         round, st.action, (unsigned long long)st.id, up, all,
				         up_after, all_after);
			}
			/* A promoted member may have died since it last answered: the majority
			 * must hold without it (a single voter grows to two regardless). */
			if (st.action == ROLES_VOTER && all >= 2 && 2 * up > all &&
			    2 * (up_after - 1) <= all_after) {
				fail_msg(
				    "round %u: promoting id %llu counts on it for the majority "
				    "(%u/%u -> %u/%u)",
				    round, (unsigned long long)st.id, up, all, up_after, all_after);
			}
		}
		assert_true(k < 3 * MAXM);
		/* Settled: every recorded member that is not backed off is in the configuration
		 * and no spare; with enough answering standbys, at least the wanted voters. */
		unsigned recorded = 0, kept = 0, spare_candidates = 0;
		for (unsigned i = 0; i < c.n; i++) {
			const struct roles_member *m = &c.m[i];
			if (!m->recorded) {
				continue;
			}
			recorded++;
			if (!m->backed_off) {
				assert_true(m->in_config);
				assert_int_not_equal(m->role, RAFT_SPARE);
			}
			bool lost = m->id != c.p.self && m->silent_ms >= LOST;
			kept += m->in_config && m->role == RAFT_VOTER && !lost;
			spare_candidates += m->in_config && m->role == RAFT_STANDBY &&
			                    !m->backed_off && m->silent_ms < ONLINE;
		}
		if (kept < roles_voters_wanted(recorded) && spare_candidates > 0) {
			/* Only the promotion guard holds it back: the voters would need the
			 * candidate for their majority. */
			unsigned all = 0, up = answering_voters(&c, &all);
			assert_true(all >= 2 && 2 * up <= all + 1);
		}
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_wanted),
	    cmocka_unit_test(test_growth),
	    cmocka_unit_test(test_growth_reason),
	    cmocka_unit_test(test_sticky),
	    cmocka_unit_test(test_replace_lost),
	    cmocka_unit_test(test_dead_candidate),
	    cmocka_unit_test(test_replace_two),
	    cmocka_unit_test(test_no_replacement),
	    cmocka_unit_test(test_backed_off),
	    cmocka_unit_test(test_shrink),
	    cmocka_unit_test(test_removed_voter_replaced),
	    cmocka_unit_test(test_demotion_keeps_majority),
	    cmocka_unit_test(test_spare),
	    cmocka_unit_test(test_removal),
	    cmocka_unit_test(test_walk),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
