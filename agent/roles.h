/*
 * Private to the agent: which raft role each member should have, and the one configuration
 * change that moves the cluster towards it (DESIGN.md section 3, "Membership"). Pure: no store,
 * no clock, no raft calls; the leader's reconciler (main.c) feeds it the member records, raft's
 * configuration and how long each member has been silent, and carries out what it returns.
 *
 * The rules:
 * - every member with a record is in raft's configuration and holds a full replica: a voter or
 *   a standby, never a spare (raft sends spares nothing);
 * - the cluster wants 3 voters, 5 once it has 5 members or more, and every member a voter while
 *   it has fewer than 3;
 * - the voters stay who they are while they answer: a member is never demoted to give its vote to
 *   a lower id, so roles do not churn when members come and go;
 * - a voter silent for lost_ms (an agent or host that is gone) is replaced when a standby
 *   answers: the silent voter is demoted first, and the standby promoted next. Demoting a voter
 *   that does not answer never lowers the number that answer; promoting first would count on a
 *   standby that may have died since it last answered (four voters of which three must answer);
 * - a standby is promoted only while the voters already there keep an answering majority without
 *   it, in case it has just died (a single voter grows to two regardless);
 * - a voter is demoted only when the voters left, counting every voter in raft's configuration,
 *   still have a majority that answers, and never the leader itself.
 * While a replacement runs the cluster tolerates no further loss, as it did not before it began
 * either (two of three voters answering); it tolerates one again once the standby votes.
 */
#ifndef TABBY_AGENT_ROLES_H
#define TABBY_AGENT_ROLES_H

#include <stdbool.h>
#include <stdint.h>

/* Voters a cluster wants: ROLES_VOTERS, ROLES_VOTERS_LARGE from ROLES_LARGE members on. */
#define ROLES_VOTERS       3
#define ROLES_VOTERS_LARGE 5
#define ROLES_LARGE        5

/* One member as the leader sees it. A member with a record that is not in raft's configuration
 * yet has in_config false; a configuration entry whose record is gone (a member being removed)
 * has recorded false, and counts only towards the voters' majority. */
struct roles_member {
	uint64_t id;
	bool recorded;
	bool in_config;
	int role;           /* RAFT_VOTER, RAFT_STANDBY or RAFT_SPARE, when in_config */
	uint64_t silent_ms; /* since it last answered the leader; ignored for the leader itself */
	bool backed_off;    /* a recent change for it failed: do not pick it now */
};

struct roles_policy {
	uint64_t self;      /* the leader's id */
	uint64_t online_ms; /* a member silent for less than this answers */
	uint64_t lost_ms;   /* a voter silent this long is replaced; 0: never */
};

enum roles_action {
	ROLES_NONE,    /* nothing to change now */
	ROLES_ADD,     /* add id to the configuration (as a standby) */
	ROLES_VOTER,   /* make id a voter */
	ROLES_STANDBY, /* make id a standby */
};

/* Why a step is taken, for the agent's log. */
enum roles_reason {
	ROLES_NEW_MEMBER,   /* ROLES_ADD */
	ROLES_TOO_FEW,      /* ROLES_VOTER: fewer voters than wanted (growth, a replacement, a
	                       removal) */
	ROLES_LOST,         /* ROLES_STANDBY: a voter that does not answer; `other`, when not 0,
	                       is the standby that answers and is promoted next */
	ROLES_TOO_MANY,     /* ROLES_STANDBY: more voters than wanted (the cluster shrank) */
	ROLES_FULL_REPLICA, /* ROLES_STANDBY: a spare, which would hold no replica */
};

struct roles_step {
	enum roles_action action;
	enum roles_reason reason;
	uint64_t id;
	uint64_t other; /* ROLES_LOST: the standby promoted next, or 0 */
};

/* The number of voters a cluster of `members` members (with records) wants. */
unsigned roles_voters_wanted(unsigned members);

/* The next configuration change for members[0..n) under policy p, or ROLES_NONE. Adding a new
 * member comes first, then promotions, then demotions; among equals the lowest id is picked
 * for promotion and the most silent (then highest id) voter for demotion, so the result depends
 * on the input alone. */
struct roles_step roles_next(const struct roles_member *members, unsigned n,
                             const struct roles_policy *p);

/* Whether the voters in raft's configuration other than `id` have a majority that answers (the
 * reconciler's check before it takes `id` out). *answering and *voters: their counts. */
bool roles_voters_without(const struct roles_member *members, unsigned n,
                          const struct roles_policy *p, uint64_t id, unsigned *answering,
                          unsigned *voters);

/* Whether removing member `id` (deleting its record, then taking it out of the configuration
 * once the steps roles_next() asks for first are done, as the reconciler does) leaves a majority
 * of the voters answering (false when no voter would be left). *answering and *voters: the counts
 * in the configuration that results, in which every member whose record is gone is left out.
 * members[] is scratch: the walk changes it. */
bool roles_removal_keeps_majority(struct roles_member *members, unsigned n,
                                  const struct roles_policy *p, uint64_t id, unsigned *answering,
                                  unsigned *voters);

#endif
