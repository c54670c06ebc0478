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

struct roles_step roles_next(const struct roles_member *members, unsigned n,
                             const struct roles_policy *p)
{
	struct roles_step step = {.action = ROLES_NONE};
	const struct roles_member *add = NULL, *spare = NULL, *candidate = NULL, *lost = NULL,
	                          *victim = NULL;
	unsigned recorded = 0, voters = 0, kept = 0;
	unsigned config_voters = 0, config_answering = 0; /* raft's majority counts these */

	for (unsigned i = 0; i < n; i++) {
		const struct roles_member *m = &members[i];
		if (m->in_config && m->role == RAFT_VOTER) {
			config_voters++;
			config_answering += answers(m, p);
		}
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
			} else if (lost == NULL || m->silent_ms > lost->silent_ms) {
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

	/* A voter to demote: a lost one, or any while more voters are kept than wanted. Demoting
	 * one that is kept when that leaves too few would only promote it again. */
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
	} else if (kept < wanted && candidate != NULL) {
		/* A promotion never costs the majority: the new voter answers. */
		if (lost != NULL) {
			step = (struct roles_step){ROLES_VOTER, ROLES_REPLACES_LOST, candidate->id,
			                           lost->id};
		} else {
			step = (struct roles_step){ROLES_VOTER, ROLES_TOO_FEW, candidate->id, 0};
		}
	} else if (voters > wanted && victim != NULL) {
		unsigned answering_after = config_answering - (answers(victim, p) ? 1 : 0);
		if (2 * answering_after > config_voters - 1) {
			step = (struct roles_step){ROLES_STANDBY,
			                           answers(victim, p) ? ROLES_TOO_MANY : ROLES_LOST,
			                           victim->id, 0};
		}
	}
	return step;
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
	*answering = *voters = 0;
	for (unsigned i = 0; i < n; i++) {
		const struct roles_member *m = &members[i];
		if (m->id != id && m->in_config && m->role == RAFT_VOTER) {
			(*voters)++;
			*answering += answers(m, p);
		}
	}
	return 2 * *answering > *voters;
}
