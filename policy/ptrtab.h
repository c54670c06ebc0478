/*
 * The compiler's hash tables of pointers (private to policy/compile.c).
 *
 * A selector used by a new policy can match a quarter of a 10,000-endpoint cluster, and its
 * members and their addresses are all filed at once, in the same flush that has to reach the
 * kernel within 10 ms. Balanced trees (tsearch) cost a node allocation and a dozen dependent
 * cache misses per insert; these tables cost one probe, usually one miss.
 *
 * Items are pointers the caller owns. A table is keyed either by the items' addresses (klen 0:
 * a set of pointers) or by the first klen bytes of each item (a map whose key is inside its
 * value). Open addressing, linear probing, at most three quarters full counting the slots that
 * deletions left behind; no order.
 */
#ifndef TABBY_POLICY_PTRTAB_H
#define TABBY_POLICY_PTRTAB_H

#include <stdbool.h>
#include <stddef.h>

struct ptrtab {
	void **slot;   /* NULL: empty; ptrtab_tomb: deleted */
	unsigned cap;  /* 0 or a power of two */
	unsigned n;    /* items */
	unsigned used; /* items and deleted slots */
	size_t klen;   /* 0: keyed by the item's address; else by its first klen bytes */
};

/* What a deleted slot holds (compare slots with ptrtab_live()). */
extern char ptrtab_tomb[1];

static inline bool ptrtab_live(const void *slot)
{
	return slot != NULL && slot != (const void *)ptrtab_tomb;
}

/* An empty table (no allocation until the first add). */
void ptrtab_init(struct ptrtab *t, size_t klen);
/* Free the slots, not the items; t is empty afterwards and may be used again. */
void ptrtab_free(struct ptrtab *t);

/* The item under key (klen 0: key is the item itself), or NULL. */
void *ptrtab_get(const struct ptrtab *t, const void *key);
/* File item, which must not be NULL and whose key must not be in t already: 0 or -ENOMEM
 * (t unchanged). */
int ptrtab_add(struct ptrtab *t, void *item);
/* Take out the item under key: it, or NULL when there was none. */
void *ptrtab_del(struct ptrtab *t, const void *key);

#endif
