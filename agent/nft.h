/*
 * Private to the agent: the nftables applier. A thin owner of one libnftables context that runs
 * the compiler's libnftables JSON (policy_compiler_flush()) as one transaction and hands back
 * libnftables's own error text. No nftables syntax is written here: commands are JSON built with
 * jansson.
 *
 * The context's netlink socket is opened by agent_nft_new() in the network namespace of the
 * calling thread and stays there: to drive another namespace, create the applier from a thread
 * that has entered it. An applier is not thread-safe; use it from one thread at a time.
 */
#ifndef TABBY_AGENT_NFT_H
#define TABBY_AGENT_NFT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct agent_nft;

/* A new applier on a fresh libnftables context (JSON input, output and errors buffered in
 * memory so they never reach the agent's stdout/stderr). -ENOMEM when libnftables cannot set up
 * its context (no memory, or no netlink socket). */
int agent_nft_new(struct agent_nft **out);
/* Frees the applier and its context; NULL is a no-op. The kernel's ruleset is left as it is. */
void agent_nft_free(struct agent_nft *n);

/*
 * Run cmds, a libnftables JSON document ({"nftables": [...]}), as one kernel transaction: either
 * every command takes effect or none does. Returns 0, -EINVAL when cmds is not a JSON object (err
 * says so), -ENOMEM, or -EIO when libnftables refused or the kernel failed the transaction; err
 * then holds libnftables's error text on one line (its newlines turned into "; ").
 */
int agent_nft_apply(struct agent_nft *n, const json_t *cmds, char *err, size_t errlen);

/* Whether plain incremental batches go straight to the kernel through libnftnl (the fast path,
 * nftnl.c) instead of through libnftables; on by default. Either way a batch is one transaction
 * with the same effect; off serves tests and benchmarks that compare the two. */
void agent_nft_use_fast_path(struct agent_nft *n, bool on);
/* How many batches each path has run (successfully or not) since agent_nft_new(); a batch split
 * between the two (new sets first through libnftnl) counts as a libnftables one. */
void agent_nft_counts(const struct agent_nft *n, unsigned long *fast, unsigned long *slow);
/* How many of the libnftables ones were split (their new sets went through libnftnl first). */
unsigned long agent_nft_splits(const struct agent_nft *n);

/* The libnftables JSON command {"add": {"set": set}} with elems as the set's "elem" (an empty
 * elems adds none: nft refuses an empty list). Takes both; NULL when either is NULL or out of
 * memory. Builds JSON only, for the callers that assemble tables (netsync, the guard). */
json_t *agent_nft_add_set(json_t *set, json_t *elems);

/* Delete the inet table named table with everything in it. A table that does not exist is not
 * an error (0). Otherwise as agent_nft_apply(). */
int agent_nft_delete_table(struct agent_nft *n, const char *table, char *err, size_t errlen);

/*
 * The fast path (nftnl.c), private to nft.c. agent_nftnl_apply() runs cmds as one transaction
 * when every command has one of the plain shapes listed in nftnl.c, and returns 0 or, when the
 * kernel refused, -EIO with err naming the command and the reason (nothing took effect). It
 * returns -ENOTSUP, having sent nothing, when any command is outside those shapes; -ENOMEM.
 * agent_nftnl_forget() drops what it remembers of sets and chains (call it after anything else
 * changed the ruleset). agent_nftnl_resolve() answers in *out a copy of cmds for libnftables in
 * which every rule by position (policy.h: "delete rule" and "insert rule" with an "index") names
 * the kernel's rule by "handle" instead, or NULL when cmds has none; -EINVAL or -EIO with err
 * set when a position names no rule the chain held before the batch, -ENOMEM.
 */
struct agent_nftnl;
int agent_nftnl_new(struct agent_nftnl **out);
void agent_nftnl_free(struct agent_nftnl *f);
int agent_nftnl_apply(struct agent_nftnl *f, const json_t *cmds, char *err, size_t errlen);
void agent_nftnl_forget(struct agent_nftnl *f);
int agent_nftnl_resolve(struct agent_nftnl *f, const json_t *cmds, json_t **out, char *err,
                        size_t errlen);

#endif
