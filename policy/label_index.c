/*
 * The compiler's index of endpoints by effective label (label_index.h): a chained hash table of
 * entries, one per "key = value" and one per key, each with the owners filed under it in no
 * order. An owner keeps the entries it is in, so that re-filing it (its labels or its profiles
 * changed) takes it out of exactly those; taking it out of an entry is a scan of that entry,
 * which for the few labels most endpoints share is a few thousand pointers. An entry goes with
 * its last owner.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/label_index.h"

struct label_entry {
	char *key; /* "key" for any value; "key\0value" for one */
	size_t len;
	uint64_t hash;
	void **v; /* owners */
	unsigned n, cap;
	struct label_entry *next;
};

struct label_index {
	struct label_entry **b;
	unsigned nb, n;
};

static uint64_t fnv(const char *p, size_t len)
{
	uint64_t h = 14695981039346656037ull;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
	return h;
}

struct label_index *label_index_new(void)
{
	struct label_index *x = calloc(1, sizeof(*x));

	if (x != NULL && (x->b = calloc(64, sizeof(*x->b))) == NULL) {
		free(x);
		return NULL;
	}
	if (x != NULL)
		x->nb = 64;
	return x;
}

void label_index_free(struct label_index *x)
{
	if (x == NULL)
		return;
	label_index_clear(x);
	free(x->b);
	free(x);
}

void label_refs_free(struct label_refs *r)
{
	free(r->v);
	r->v = NULL;
	r->n = r->cap = 0;
}

static struct label_entry *find(const struct label_index *x, const char *key, size_t len,
                                uint64_t h)
{
	for (struct label_entry *e = x->b[h & (x->nb - 1)]; e != NULL; e = e->next)
		if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0)
			return e;
	return NULL;
}

/* The entry of key (len bytes), made when missing; NULL when out of memory. */
static struct label_entry *entry(struct label_index *x, const char *key, size_t len)
{
	uint64_t h = fnv(key, len);
	struct label_entry *e = find(x, key, len, h);

	if (e != NULL)
		return e;
	if (x->n >= x->nb) { /* keep chains short: double and rehash */
		struct label_entry **nb = calloc(2 * (size_t)x->nb, sizeof(*nb));
		if (nb == NULL)
			return NULL;
		for (unsigned i = 0; i < x->nb; i++)
			for (struct label_entry *o = x->b[i], *next; o != NULL; o = next) {
				next = o->next;
				o->next = nb[o->hash & (2 * x->nb - 1)];
				nb[o->hash & (2 * x->nb - 1)] = o;
			}
		free(x->b);
		x->b = nb;
		x->nb *= 2;
	}
	if ((e = calloc(1, sizeof(*e))) == NULL || (e->key = malloc(len)) == NULL) {
		free(e);
		return NULL;
	}
	memcpy(e->key, key, len);
	e->len = len;
	e->hash = h;
	e->next = x->b[h & (x->nb - 1)];
	x->b[h & (x->nb - 1)] = e;
	x->n++;
	return e;
}

static void drop_if_empty(struct label_index *x, struct label_entry *e);

/* Take owner out of e; an entry left empty goes, or every value a label ever had (Mesos task
 * labels carry ids and versions) would stay for the life of the agent. */
static void leave(struct label_index *x, struct label_entry *e, const void *owner)
{
	for (unsigned i = 0; i < e->n; i++)
		if (e->v[i] == owner) {
			e->v[i] = e->v[--e->n];
			break;
		}
	drop_if_empty(x, e);
}

static void drop_if_empty(struct label_index *x, struct label_entry *e)
{
	if (e->n > 0)
		return;
	for (struct label_entry **p = &x->b[e->hash & (x->nb - 1)]; *p != NULL; p = &(*p)->next)
		if (*p == e) {
			*p = e->next;
			x->n--;
			free(e->key);
			free(e->v);
			free(e);
			return;
		}
}

/* The entry key of key = value (value NULL: of key alone), *len bytes, in stack (STACK_KEY
 * bytes) when it fits, else malloc'd (free it when it is not stack); NULL when out of memory. */
#define STACK_KEY 256
static char *entry_key(const char *key, const char *value, char *stack, size_t *len)
{
	size_t klen = strlen(key), vlen = value != NULL ? strlen(value) : 0;
	char *k;

	*len = value != NULL ? klen + 1 + vlen : klen;
	if ((k = *len <= STACK_KEY ? stack : malloc(*len)) == NULL)
		return NULL;
	memcpy(k, key, klen);
	if (value != NULL) {
		k[klen] = '\0';
		memcpy(k + klen + 1, value, vlen);
	}
	return k;
}

/* File owner under key alone and under key = value; 0 or -ENOMEM. */
static int file(struct label_index *x, void *owner, struct label_refs *r, const char *key,
                const char *value)
{
	char stack[STACK_KEY];
	size_t len, klen = strlen(key);
	char *k = entry_key(key, value, stack, &len);
	int rv = -ENOMEM;

	if (k == NULL)
		return -ENOMEM;
	for (int pass = 0; pass < 2; pass++) {
		struct label_entry *e = entry(x, k, pass == 0 ? klen : len);
		struct label_entry **rv2;
		if (e == NULL)
			goto out;
		if (e->n == e->cap) {
			unsigned cap = e->cap ? e->cap * 2 : 4;
			void **v = realloc(e->v, cap * sizeof(*v));
			if (v == NULL) {
				drop_if_empty(x, e); /* made just now */
				goto out;
			}
			e->v = v;
			e->cap = cap;
		}
		if (r->n == r->cap) {
			unsigned cap = r->cap ? r->cap * 2 : 8;
			if ((rv2 = realloc(r->v, cap * sizeof(*r->v))) == NULL) {
				drop_if_empty(x, e);
				goto out;
			}
			r->v = rv2;
			r->cap = cap;
		}
		e->v[e->n++] = owner;
		r->v[r->n++] = e;
	}
	rv = 0;
out:
	if (k != stack)
		free(k);
	return rv;
}

struct pair {
	const char *key, *value;
};

static bool has_key(const struct pair *v, unsigned n, const char *key)
{
	for (unsigned i = 0; i < n; i++)
		if (strcmp(v[i].key, key) == 0)
			return true;
	return false;
}

/* Whether r holds exactly the entries of the pairs, in the order file() made them. */
static bool same(const struct label_refs *r, const struct pair *v, unsigned n)
{
	if (r->n != 2 * n)
		return false;
	for (unsigned i = 0; i < n; i++) {
		size_t klen = strlen(v[i].key), vlen = strlen(v[i].value);
		const struct label_entry *a = r->v[2 * i], *b = r->v[2 * i + 1];
		if (a->len != klen || memcmp(a->key, v[i].key, klen) != 0 ||
		    b->len != klen + 1 + vlen || memcmp(b->key, v[i].key, klen) != 0 ||
		    b->key[klen] != '\0' || memcmp(b->key + klen + 1, v[i].value, vlen) != 0)
			return false;
	}
	return true;
}

int label_index_set(struct label_index *x, void *owner, struct label_refs *r,
                    const struct policy_model *m, const struct policy_endpoint *mep)
{
	struct policy_ep_labels l;
	struct pair *v = NULL;
	unsigned n = 0, cap = 0;
	int rv = -ENOMEM;

	/* Every key the endpoint has, once, with the value policy_ep_labels_get() reads for it:
	 * its own labels, then each profile's labels and tags. */
	if (mep != NULL) {
		policy_ep_labels_init(&l, m, mep);
		for (unsigned p = 0; p <= mep->n_profiles; p++) {
			const struct policy_profile *prof =
			    p > 0 ? policy_model_profile(m, mep->profiles[p - 1]) : NULL;
			unsigned k = p == 0         ? mep->labels.n
			             : prof != NULL ? prof->labels.n + prof->n_tags
			                            : 0;
			for (unsigned i = 0; i < k; i++) {
				const char *key = p == 0 ? mep->labels.v[i].key
				                  : i < prof->labels.n
				                      ? prof->labels.v[i].key
				                      : prof->tags[i - prof->labels.n];
				const char *value;
				if (p > 0 && has_key(v, n, key))
					continue;
				if ((value = policy_ep_labels_get(&l, key)) == NULL)
					continue;
				if (n == cap) {
					cap = cap ? 2 * cap : 16;
					struct pair *nv = realloc(v, cap * sizeof(*nv));
					if (nv == NULL)
						goto out;
					v = nv;
				}
				v[n++] = (struct pair){key, value};
			}
		}
	}
	/* The usual re-filing (addresses or interface changed, or a profile's rules): the same
	 * labels, nothing to move. */
	if (same(r, v, n)) {
		rv = 0;
		goto out;
	}
	for (unsigned i = 0; i < r->n; i++)
		leave(x, r->v[i], owner);
	r->n = 0;
	rv = 0;
	for (unsigned i = 0; i < n && rv == 0; i++)
		rv = file(x, owner, r, v[i].key, v[i].value);
	if (rv != 0) {
		for (unsigned i = 0; i < r->n; i++)
			leave(x, r->v[i], owner);
		r->n = 0;
	}
out:
	free(v);
	return rv;
}

void label_index_clear(struct label_index *x)
{
	if (x == NULL)
		return;
	for (unsigned i = 0; i < x->nb; i++) {
		for (struct label_entry *e = x->b[i], *next; e != NULL; e = next) {
			next = e->next;
			free(e->key);
			free(e->v);
			free(e);
		}
		x->b[i] = NULL;
	}
	x->n = 0;
}

unsigned label_index_size(const struct label_index *x)
{
	return x->n;
}

int label_index_get(const struct label_index *x, const char *key, const char *value,
                    void *const **owners, unsigned *n)
{
	char stack[STACK_KEY];
	size_t len;
	char *k = entry_key(key, value, stack, &len);
	struct label_entry *e;

	*owners = NULL;
	*n = 0;
	if (k == NULL)
		return -ENOMEM;
	e = find(x, k, len, fnv(k, len));
	if (k != stack)
		free(k);
	if (e != NULL) {
		*owners = e->v;
		*n = e->n;
	}
	return 0;
}
