/*
 * Hash tables of pointers (ptrtab.h). Deleting leaves a marker so that probes for the items
 * after it still find them; the markers count toward the load, and a table that reaches three
 * quarters is rebuilt at twice its items (which drops the markers).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/ptrtab.h"

char ptrtab_tomb[1];

#define MIN_CAP 8u

void ptrtab_init(struct ptrtab *t, size_t klen)
{
	memset(t, 0, sizeof(*t));
	t->klen = klen;
}

void ptrtab_free(struct ptrtab *t)
{
	free(t->slot);
	ptrtab_init(t, t->klen);
}

static uint64_t mix(uint64_t h)
{
	/* the last steps of splitmix64: every input bit reaches the low bits the mask keeps */
	h ^= h >> 31;
	h *= 0x7fb5d329728ea185ull;
	h ^= h >> 27;
	h *= 0x81dadef4bc2dd44dull;
	return h ^ (h >> 33);
}

static uint64_t hash_key(const struct ptrtab *t, const void *key)
{
	if (t->klen == 0)
		return mix((uint64_t)(uintptr_t)key);
	uint64_t h = 14695981039346656037ull;
	const unsigned char *p = key;
	for (size_t i = 0; i < t->klen; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return mix(h);
}

static bool key_is(const struct ptrtab *t, const void *item, const void *key)
{
	return t->klen == 0 ? item == key : memcmp(item, key, t->klen) == 0;
}

/* The slot of key, or of the empty slot that ends its probe. */
static unsigned find(const struct ptrtab *t, const void *key)
{
	unsigned mask = t->cap - 1, i = (unsigned)hash_key(t, key) & mask;

	while (t->slot[i] != NULL && !(ptrtab_live(t->slot[i]) && key_is(t, t->slot[i], key)))
		i = (i + 1) & mask;
	return i;
}

void *ptrtab_get(const struct ptrtab *t, const void *key)
{
	return t->cap == 0 ? NULL : t->slot[find(t, key)];
}

static int rebuild(struct ptrtab *t, unsigned cap)
{
	void **slot = calloc(cap, sizeof(*slot));

	if (slot == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < t->cap; i++) {
		if (!ptrtab_live(t->slot[i]))
			continue;
		const void *key = t->slot[i];
		unsigned j = (unsigned)hash_key(t, key) & (cap - 1);
		while (slot[j] != NULL)
			j = (j + 1) & (cap - 1);
		slot[j] = t->slot[i];
	}
	free(t->slot);
	t->slot = slot;
	t->cap = cap;
	t->used = t->n;
	return 0;
}

int ptrtab_add(struct ptrtab *t, void *item)
{
	if ((t->used + 1) * 4 > t->cap * 3) {
		unsigned cap = MIN_CAP;
		while (cap * 3 < (t->n + 1) * 2 * 4)
			cap *= 2;
		if (rebuild(t, cap) != 0)
			return -ENOMEM;
	}
	/* The probe passes deleted slots; the item goes into the first of them, if any. */
	unsigned mask = t->cap - 1, i = (unsigned)hash_key(t, item) & mask, tomb = t->cap;
	for (; t->slot[i] != NULL; i = (i + 1) & mask)
		if (t->slot[i] == (void *)ptrtab_tomb && tomb == t->cap)
			tomb = i;
	if (tomb != t->cap)
		i = tomb;
	else
		t->used++;
	t->slot[i] = item;
	t->n++;
	return 0;
}

void *ptrtab_del(struct ptrtab *t, const void *key)
{
	if (t->cap == 0)
		return NULL;
	unsigned i = find(t, key);
	void *item = t->slot[i];
	if (item == NULL)
		return NULL;
	t->slot[i] = ptrtab_tomb;
	t->n--;
	return item;
}
