/*
 * Raft roles for the members (roles.h): a pure calculation.
 */
#include <raft.h>

#include "agent/roles.h"

unsigned roles_voters_wanted(unsigned members)
{
	if (members >= ROLES_LARGE) {
		return ROLES_VOTERS_LARGE;
	}
	return members < ROLES_VOTERS ? members : ROLES_VOTERS;
}

static bool answers(const struct roles_member *m, const struct roles_policy *p)
{
	return m->id == p->self || m->silent_ms < p->online_ms;
}

static bool is_lost(const struct roles_member *m, const struct roles_policy *p)
{
	return m->id != p->self && p->lost_ms != 0 && m->silent_ms >= p->lost_ms;
}

/* Whether a is a better voter to demote than b: one that does not answer before one that does,
 * then the more silent, then the higher id (the most recent to join). */
static bool demote_before(const struct roles_member *a, const struct roles_member *b,
                          const struct roles_policy *p)
{
	if (answers(a, p) != answers(b, p)) {
		return !answers(a, p);
	}
	if (!answers(a, p) && a->silent_ms != b->silent_ms) {
		return a->silent_ms > b->silent_ms;
	}
	return a->id > b->id;
}

/* Voters in raft's configuration, and how many of them answer, leaving out `id` and, when
 * leaving is true, every member whose record is gone (the reconciler takes those out). */
static void count_voters(const struct roles_member *members, unsigned n,
                         const struct roles_policy *p, uint64_t id, bool leaving,
                         unsigned *answering, unsigned *voters)
{
	*answering = *voters = 0;
	for (unsigned i = 0; i < n; i++) {
		const struct roles_member *m = &members[i];
		if (m->id != id && m->in_config && m->role == RAFT_VOTER &&
		    (m->recorded || !leaving)) {
			(*voters)++;
			*answering += answers(m, p);
		}
	}
}

struct roles_step roles_next(const struct roles_member *members, unsigned n,
                             const struct roles_policy *p)
{
	struct roles_step step = {.action = ROLES_NONE};
	const struct roles_member *add = NULL, *spare = NULL, *candidate = NULL, *lost = NULL,
	                          *victim = NULL;
	unsigned recorded = 0, voters = 0, kept = 0, up = 0, all = 0;

	count_voters(members, n, p, 0, false, &up, &all);
	for (unsigned i = 0; i < n; i++) {
		const struct roles_member *m = &members[i];
		if (!m->recorded) {
			continue;
		}
		recorded++;
		if (!m->in_config) {
			if (!m->backed_off && (add == NULL || m->id < add->id)) {
				add = m;
			}
		} else if (m->role == RAFT_VOTER) {
			voters++;
			if (!is_lost(m, p)) {
				kept++;
			} else if (!m->backed_off &&
			           (lost == NULL || m->silent_ms > lost->silent_ms)) {
				lost = m;
			}
		} else if (m->backed_off) {
			continue;
		} else if (m->role == RAFT_SPARE) {
			if (spare == NULL || m->id < spare->id) {
				spare = m;
			}
		} else if (answers(m, p) && (candidate == NULL || m->id < candidate->id)) {
			candidate = m;
		}
	}

	/* A voter to demote when there are too many: a lost one, or any while more voters are
	 * kept than wanted. Demoting one that is kept when that leaves too few would only
	 * promote it again. */
	unsigned wanted = roles_voters_wanted(recorded);
	for (unsigned i = 0; i < n; i++) {
		const struct roles_member *m = &members[i];
		if (m->recorded && m->in_config && m->role == RAFT_VOTER && m->id != p->self &&
		    !m->backed_off && (is_lost(m, p) || kept > wanted) &&
		    (victim == NULL || demote_before(m, victim, p))) {
			victim = m;
		}
	}
	if (add != NULL) {
		step = (struct roles_step){ROLES_ADD, ROLES_NEW_MEMBER, add->id, 0};
	} else if (spare != NULL) {
		step = (struct roles_step){ROLES_STANDBY, ROLES_FULL_REPLICA, spare->id, 0};
	} else if (lost != NULL && candidate != NULL && 2 * up > all - 1) {
		/* The silent voter goes first, and its replacement is promoted next (too few).
		 * Demoting a voter that does not answer never lowers the answering count, while
		 * promoting first would count on a candidate that may have died since it last
		 * answered: four voters of which three must answer. */
		step = (struct roles_step){ROLES_STANDBY, ROLES_LOST, lost->id, candidate->id};
	} else if (kept < wanted && candidate != NULL && (all < 2 || 2 * up > all + 1)) {
		/* Promoted, the candidate is one more voter to count on: only while the others
		 * keep a majority without it, in case it died since it last answered. A cluster of
		 * one voter grows to two regardless, as it must. */
		step = (struct roles_step){ROLES_VOTER, ROLES_TOO_FEW, candidate->id, 0};
	} else if (voters > wanted && victim != NULL &&
	           2 * (up - (answers(victim, p) ? 1 : 0)) > all - 1) {
		step = (struct roles_step){
		    ROLES_STANDBY, answers(victim, p) ? ROLES_TOO_MANY : ROLES_LOST, victim->id, 0};
	}
	return step;
}

bool roles_voters_without(const struct roles_member *members, unsigned n,
                          const struct roles_policy *p, uint64_t id, unsigned *answering,
                          unsigned *voters)
{
	count_voters(members, n, p, id, false, answering, voters);
	return 2 * *answering > *voters;
}

bool roles_removal_keeps_majority(struct roles_member *members, unsigned n,
                                  const struct roles_policy *p, uint64_t id, unsigned *answering,
                                  unsigned *voters)
{
	for (unsigned i = 0; i < n; i++) {
		members[i].recorded = members[i].recorded && members[i].id != id;
	}
	/* Each step changes one member's role for good (roles_next() never undoes a step while
	 * nothing else changes), so 3 n steps bound the walk. */
	for (unsigned k = 0; k < 3 * n; k++) {
		struct roles_step st = roles_next(members, n, p);
		if (st.action == ROLES_NONE) {
			break;
		}
		for (unsigned i = 0; i < n; i++) {
			if (members[i].id == st.id) {
				members[i].in_config = true;
				members[i].role =
				    st.action == ROLES_VOTER ? RAFT_VOTER : RAFT_STANDBY;
			}
		}
	}
	/* Every member without a record leaves, this one and any removed before it. */
	count_voters(members, n, p, id, true, answering, voters);
	return *voters > 0 && 2 * *answering > *voters;
}
