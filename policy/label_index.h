/*
 * The compiler's index of endpoints by effective label (private to policy/compile.c).
 *
 * A selector first used by a flush needs its members found among every endpoint of the cluster;
 * evaluated against each, that is 3 ms for 10,000 endpoints before the first member is known.
 * Most selectors require a label: "app == 'web' && ...", "has(tier) && ...". The index keeps,
 * for each effective label (an endpoint's own labels, then what its profiles give it, as
 * policy_ep_labels_get() reads them: labels, then tags with the value ""), the endpoints that
 * have it, by key and value and by key alone, so that only those are evaluated.
 */
#ifndef TABBY_POLICY_LABEL_INDEX_H
#define TABBY_POLICY_LABEL_INDEX_H

#include "policy/policy.h"

struct label_index;
struct label_entry;

/* What an owner is filed under: its entries, for label_index_set() to take it out of. */
struct label_refs {
	struct label_entry **v;
	unsigned n, cap;
};

struct label_index *label_index_new(void);
/* Free x; the owners' refs are theirs to free (label_refs_free) and must not be used with x
 * again. */
void label_index_free(struct label_index *x);
void label_refs_free(struct label_refs *r);
/* Empty x, as after label_index_new(): the owners' refs must be freed, not used again. */
void label_index_clear(struct label_index *x);

/* File owner (any pointer, its refs in r) under the effective labels of mep in m, in place of
 * what it was filed under; mep NULL: take it out. -ENOMEM leaves it out of every entry. */
int label_index_set(struct label_index *x, void *owner, struct label_refs *r,
                    const struct policy_model *m, const struct policy_endpoint *mep);

/* How many entries x holds: one per key and one per key = value some owner is filed under. */
unsigned label_index_size(const struct label_index *x);

/* The owners filed under key == value (value NULL: under key with any value): *owners, *n of
 * them (none: NULL, 0), valid until the next label_index_set(); 0 or -ENOMEM. */
int label_index_get(const struct label_index *x, const char *key, const char *value,
                    void *const **owners, unsigned *n);

#endif
