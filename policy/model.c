/*
 * The model: the parsed resources of a cluster, built from normalized resources (policy.h).
 *
 * Layout. Every kind lives in an array of pointers kept sorted, so that lookups are binary
 * searches and a put or remove costs O(log n) plus one memmove of pointers: policies twice (in
 * evaluation order, which is what the evaluator and the compiler walk, and by name, for lookups),
 * profiles and nodes by name, endpoints by key. Addresses are indexed in two small open-addressing
 * hash maps (endpoints' and nodes'), because the evaluator and the compiler ask "whose address is
 * this?" for every selector test.
 *
 * Two endpoints may claim the same address (a stale record next to a new one). The maps keep both
 * and answer with the one whose key sorts first, so the answer does not depend on the order in
 * which the records arrived.
 *
 * put() parses the whole resource before it touches the model: a malformed resource is refused
 * with a message and leaves the model as it was.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

/* ------------------------------------------------------------------------------------------ */
/* Address maps                                                                                */

enum { SLOT_EMPTY = 0, SLOT_LIVE = 1, SLOT_DEAD = 2 };

struct addr_slot {
	struct ipam_addr addr;
	uint8_t state;
	void *owner;
};

/* Of two owners of one address, whether a should answer rather than b. */
typedef bool (*owner_before_fn)(const void *a, const void *b);

struct addr_map {
	struct addr_slot *slots;
	size_t cap;  /* a power of two, or 0 */
	size_t used; /* live and dead slots: what keeps probe chains long */
	size_t live;
};

static size_t addr_hash(const struct ipam_addr *a)
{
	/* FNV-1a: addresses are not chosen by an adversary who could gain anything from
	 * collisions beyond a slower trace. */
	uint64_t h = 0xcbf29ce484222325ULL;

	h = (h ^ a->family) * 0x100000001b3ULL;
	for (unsigned i = 0; i < 16; i++)
		h = (h ^ a->b[i]) * 0x100000001b3ULL;
	return (size_t)(h ^ (h >> 32));
}

static bool addr_eq(const struct ipam_addr *a, const struct ipam_addr *b)
{
	return a->family == b->family && memcmp(a->b, b->b, 16) == 0;
}

static int addr_map_resize(struct addr_map *m, size_t cap)
{
	struct addr_slot *slots = calloc(cap, sizeof(*slots));

	if (slots == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < m->cap; i++) {
		size_t j;

		if (m->slots[i].state != SLOT_LIVE)
			continue;
		j = addr_hash(&m->slots[i].addr) & (cap - 1);
		while (slots[j].state != SLOT_EMPTY)
			j = (j + 1) & (cap - 1);
		slots[j] = m->slots[i];
	}
	free(m->slots);
	m->slots = slots;
	m->cap = cap;
	m->used = m->live;
	return 0;
}

/* Make room for k more entries: the table stays at most half used (dead slots included). */
static int addr_map_reserve(struct addr_map *m, size_t k)
{
	size_t cap = 16;

	if ((m->used + k) * 2 <= m->cap)
		return 0;
	while (cap < (m->live + k) * 4)
		cap *= 2;
	return addr_map_resize(m, cap);
}

/* Callers reserve first, so an add cannot fail half way through an endpoint's addresses. */
static void addr_map_add(struct addr_map *m, const struct ipam_addr *a, void *owner)
{
	size_t j = addr_hash(a) & (m->cap - 1);

	while (m->slots[j].state == SLOT_LIVE)
		j = (j + 1) & (m->cap - 1);
	if (m->slots[j].state == SLOT_EMPTY)
		m->used++;
	m->slots[j].addr = *a;
	m->slots[j].owner = owner;
	m->slots[j].state = SLOT_LIVE;
	m->live++;
}

static void addr_map_del(struct addr_map *m, const struct ipam_addr *a, const void *owner)
{
	if (m->cap == 0)
		return;
	for (size_t j = addr_hash(a) & (m->cap - 1); m->slots[j].state != SLOT_EMPTY;
	     j = (j + 1) & (m->cap - 1)) {
		struct addr_slot *s = &m->slots[j];
		if (s->state == SLOT_LIVE && s->owner == owner && addr_eq(&s->addr, a)) {
			s->state = SLOT_DEAD;
			s->owner = NULL;
			m->live--;
			return;
		}
	}
}

static void *addr_map_get(const struct addr_map *m, const struct ipam_addr *a,
                          owner_before_fn before)
{
	void *best = NULL;

	if (m->cap == 0 || a == NULL)
		return NULL;
	for (size_t j = addr_hash(a) & (m->cap - 1); m->slots[j].state != SLOT_EMPTY;
	     j = (j + 1) & (m->cap - 1)) {
		const struct addr_slot *s = &m->slots[j];
		if (s->state == SLOT_LIVE && addr_eq(&s->addr, a) &&
		    (best == NULL || before(s->owner, best)))
			best = s->owner;
	}
	return best;
}

/* ------------------------------------------------------------------------------------------ */
/* Sorted pointer arrays                                                                       */

struct parray {
	void **v;
	unsigned n, cap;
};

/* Insert p at index i (room is reserved first so that nothing fails after a replacement began).
 */
static int parray_reserve(struct parray *a)
{
	void **v;
	unsigned cap;

	if (a->n < a->cap)
		return 0;
	cap = a->cap == 0 ? 16 : a->cap * 2;
	v = realloc(a->v, cap * sizeof(*v));
	if (v == NULL)
		return -ENOMEM;
	a->v = v;
	a->cap = cap;
	return 0;
}

static void parray_insert(struct parray *a, unsigned i, void *p)
{
	memmove(&a->v[i + 1], &a->v[i], (a->n - i) * sizeof(*a->v));
	a->v[i] = p;
	a->n++;
}

static void parray_delete(struct parray *a, unsigned i)
{
	memmove(&a->v[i], &a->v[i + 1], (a->n - i - 1) * sizeof(*a->v));
	a->n--;
}

/* The index of the first element not less than key (cmp(element, key) >= 0); *found when equal.
 */
static unsigned parray_search(const struct parray *a, const void *key,
                              int (*cmp)(const void *elem, const void *key), bool *found)
{
	unsigned lo = 0;
	unsigned hi = a->n;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (cmp(a->v[mid], key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < a->n && cmp(a->v[lo], key) == 0;
	return lo;
}

/* ------------------------------------------------------------------------------------------ */
/* The model                                                                                   */

/* Endpoints by kind and key, for policy_model_endpoint(): the compiler asks it for the labels of
 * every member it files, thousands for a new broad selector, and a binary search of 10,000 keys
 * was a seventh of an incremental compile. Open addressing, linear probing, at most half full;
 * a deletion shifts the run after it back, so there are no tombstones. */
struct ep_slot {
	const struct policy_endpoint *e; /* NULL: free */
	uint64_t h;
};

struct ep_index {
	struct ep_slot *slot;
	unsigned n, cap; /* cap a power of two, or 0 */
};

struct policy_model {
	struct parray policies; /* evaluation order */
	struct parray policies_by_name;
	struct parray profiles;  /* by name */
	struct parray endpoints; /* by key, then kind */
	struct parray nodes;     /* by name */
	struct ep_index ep_index;
	struct addr_map endpoint_addrs;
	struct addr_map node_addrs;
};

/* Evaluation order: ordered before unordered, ascending order, then name (byte order). */
static int policy_cmp(const void *elem, const void *key)
{
	const struct policy_policy *a = elem;
	const struct policy_policy *b = key;

	if (a->has_order != b->has_order)
		return a->has_order ? -1 : 1;
	if (a->has_order && a->order != b->order)
		return a->order < b->order ? -1 : 1;
	return strcmp(a->name, b->name);
}

static int policy_name_cmp(const void *elem, const void *key)
{
	return strcmp(((const struct policy_policy *)elem)->name, key);
}

static int profile_name_cmp(const void *elem, const void *key)
{
	return strcmp(((const struct policy_profile *)elem)->name, key);
}

static int node_name_cmp(const void *elem, const void *key)
{
	return strcmp(((const struct policy_node *)elem)->name, key);
}

struct endpoint_id {
	enum policy_kind kind;
	const char *key;
};

static int endpoint_cmp(const void *elem, const void *key)
{
	const struct policy_endpoint *e = elem;
	const struct endpoint_id *id = key;
	int c = strcmp(e->key, id->key);

	if (c != 0)
		return c;
	return (int)e->kind - (int)id->kind;
}

/* FNV-1a over the key, then the kind, finished by a multiply-xorshift so the low bits (the
 * probe's start) depend on every byte. */
static uint64_t ep_hash(enum policy_kind kind, const char *key)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 0x100000001b3ULL;
	h = (h ^ (uint64_t)kind) * 0x100000001b3ULL;
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ULL;
	return h ^ (h >> 32);
}

static unsigned ep_index_find(const struct ep_index *x, uint64_t h, enum policy_kind kind,
                              const char *key)
{
	unsigned mask = x->cap - 1, i = (unsigned)h & mask;

	while (x->slot[i].e != NULL && (x->slot[i].h != h || x->slot[i].e->kind != kind ||
	                                strcmp(x->slot[i].e->key, key) != 0))
		i = (i + 1) & mask;
	return i;
}

/* Room for one more endpoint. Returns 0 or -ENOMEM (the index unchanged). */
static int ep_index_reserve(struct ep_index *x)
{
	if ((x->n + 1) * 2 <= x->cap)
		return 0;
	unsigned cap = x->cap ? x->cap * 2 : 64;
	struct ep_slot *slot = calloc(cap, sizeof(*slot));
	if (slot == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < x->cap; i++) {
		if (x->slot[i].e == NULL)
			continue;
		unsigned j = (unsigned)x->slot[i].h & (cap - 1);
		while (slot[j].e != NULL)
			j = (j + 1) & (cap - 1);
		slot[j] = x->slot[i];
	}
	free(x->slot);
	x->slot = slot;
	x->cap = cap;
	return 0;
}

/* Files e, in place of the endpoint of its kind and key if there is one. ep_index_reserve()
 * first. */
static void ep_index_put(struct ep_index *x, const struct policy_endpoint *e)
{
	uint64_t h = ep_hash(e->kind, e->key);
	unsigned i = ep_index_find(x, h, e->kind, e->key);

	if (x->slot[i].e == NULL)
		x->n++;
	x->slot[i] = (struct ep_slot){e, h};
}

static void ep_index_del(struct ep_index *x, enum policy_kind kind, const char *key)
{
	if (x->cap == 0)
		return;
	unsigned mask = x->cap - 1, i = ep_index_find(x, ep_hash(kind, key), kind, key), j = i;

	if (x->slot[i].e == NULL)
		return;
	x->n--;
	/* Knuth's deletion for linear probing: an entry after the hole moves into it unless its
	 * home lies cyclically in (hole, entry], where a search for it never passes the hole. */
	for (;;) {
		j = (j + 1) & mask;
		if (x->slot[j].e == NULL)
			break;
		unsigned k = (unsigned)x->slot[j].h & mask;
		if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		x->slot[i] = x->slot[j];
		i = j;
	}
	x->slot[i].e = NULL;
}

static bool endpoint_before(const void *a, const void *b)
{
	const struct policy_endpoint *x = a;
	const struct policy_endpoint *y = b;
	struct endpoint_id id = {y->kind, y->key};

	return endpoint_cmp(x, &id) < 0;
}

static bool node_before(const void *a, const void *b)
{
	return strcmp(((const struct policy_node *)a)->name,
	              ((const struct policy_node *)b)->name) < 0;
}

/* ---- freeing ---- */

static void entity_free(struct policy_entity *e)
{
	free(e->tag);
	free(e->not_tag);
	policy_selector_free(e->tag_sel);
	policy_selector_free(e->not_tag_sel);
	policy_selector_free(e->selector);
	policy_selector_free(e->not_selector);
	free(e->nets);
	free(e->not_nets);
	free(e->ports);
	free(e->not_ports);
	memset(e, 0, sizeof(*e));
}

static void rules_free(struct policy_rules *r)
{
	for (unsigned i = 0; i < r->n; i++) {
		entity_free(&r->v[i].src);
		entity_free(&r->v[i].dst);
	}
	free(r->v);
	r->v = NULL;
	r->n = 0;
}

static void strv_free(char **v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void policy_free(struct policy_policy *p)
{
	if (p == NULL)
		return;
	free(p->name);
	free(p->selector_text);
	policy_selector_free(p->selector);
	rules_free(&p->ingress);
	rules_free(&p->egress);
	free(p);
}

static void profile_free(struct policy_profile *p)
{
	if (p == NULL)
		return;
	free(p->name);
	policy_labels_free(&p->labels);
	strv_free(p->tags, p->n_tags);
	rules_free(&p->ingress);
	rules_free(&p->egress);
	free(p);
}

static void endpoint_free(struct policy_endpoint *e)
{
	if (e == NULL)
		return;
	free(e->key);
	free(e->node);
	free(e->name);
	free(e->orchestrator);
	free(e->workload);
	free(e->interface);
	free(e->addrs);
	policy_labels_free(&e->labels);
	strv_free(e->profiles, e->n_profiles);
	free(e);
}

static void node_free(struct policy_node *n)
{
	if (n == NULL)
		return;
	free(n->name);
	policy_labels_free(&n->labels);
	free(n);
}

struct policy_model *policy_model_new(void)
{
	return calloc(1, sizeof(struct policy_model));
}

void policy_model_free(struct policy_model *m)
{
	if (m == NULL)
		return;
	/* policies_by_name holds the same objects as policies. */
	for (unsigned i = 0; i < m->policies.n; i++)
		policy_free(m->policies.v[i]);
	for (unsigned i = 0; i < m->profiles.n; i++)
		profile_free(m->profiles.v[i]);
	for (unsigned i = 0; i < m->endpoints.n; i++)
		endpoint_free(m->endpoints.v[i]);
	for (unsigned i = 0; i < m->nodes.n; i++)
		node_free(m->nodes.v[i]);
	free(m->policies.v);
	free(m->policies_by_name.v);
	free(m->profiles.v);
	free(m->endpoints.v);
	free(m->ep_index.slot);
	free(m->nodes.v);
	free(m->endpoint_addrs.slots);
	free(m->node_addrs.slots);
	free(m);
}

/* ------------------------------------------------------------------------------------------ */
/* Parsing normalized resources                                                                */

/* Where a parse is: the resource ("policy web") for every message. */
struct pctx {
	char what[300];
	char *err;
	size_t errlen;
};

static int __attribute__((format(printf, 3, 4)))
bad(struct pctx *c, const char *path, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->errlen > 0)
		snprintf(c->err, c->errlen, "%s: %s: %s", c->what, path, msg);
	return -EINVAL;
}

static int nomem(struct pctx *c)
{
	if (c->errlen > 0)
		snprintf(c->err, c->errlen, "%s: out of memory", c->what);
	return -ENOMEM;
}

/* Fields of obj that are not in allowed (NULL-terminated): the first one, or NULL. Unknown
 * fields are refused rather than ignored, so that a rule the model does not understand never
 * matches more than its author meant. */
static const char *unknown_field(const json_t *obj, const char *const *allowed)
{
	const char *k;
	json_t *v;

	json_object_foreach ((json_t *)obj, k, v) {
		const char *const *a;
		(void)v;
		for (a = allowed; *a != NULL; a++)
			if (strcmp(*a, k) == 0)
				break;
		if (*a == NULL)
			return k;
	}
	return NULL;
}

/* A string field: *out is NULL when absent (and !required). */
static int get_string(struct pctx *c, const json_t *obj, const char *field, const char *path,
                      bool required, const char **out)
{
	const json_t *v = json_object_get(obj, field);

	*out = NULL;
	if (v == NULL) {
		if (required)
			return bad(c, path, "missing");
		return 0;
	}
	if (!json_is_string(v))
		return bad(c, path, "not a string");
	*out = json_string_value(v);
	return 0;
}

static int dup_string(struct pctx *c, const char *s, char **out)
{
	*out = NULL;
	if (s == NULL)
		return 0;
	*out = strdup(s);
	return *out == NULL ? nomem(c) : 0;
}

/* An array of strings (absent: none). */
static int get_strv(struct pctx *c, const json_t *v, const char *path, char ***out, unsigned *n)
{
	char **strs;
	size_t count;

	*out = NULL;
	*n = 0;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_array(v))
		return bad(c, path, "not a list");
	count = json_array_size(v);
	if (count == 0)
		return 0;
	strs = calloc(count, sizeof(*strs));
	if (strs == NULL)
		return nomem(c);
	for (size_t i = 0; i < count; i++) {
		const char *s = json_string_value(json_array_get(v, i));
		if (s == NULL) {
			char p[128];
			snprintf(p, sizeof(p), "%s[%zu]", path, i);
			strv_free(strs, (unsigned)i);
			return bad(c, p, "not a string");
		}
		strs[i] = strdup(s);
		if (strs[i] == NULL) {
			strv_free(strs, (unsigned)i);
			return nomem(c);
		}
	}
	*out = strs;
	*n = (unsigned)count;
	return 0;
}

static int get_labels(struct pctx *c, const json_t *meta, struct policy_labels *out)
{
	char msg[256];
	const json_t *v = json_object_get(meta, "labels");
	int rv;

	memset(out, 0, sizeof(*out));
	if (v != NULL && !json_is_object(v))
		return bad(c, "metadata.labels", "not a mapping");
	rv = policy_labels_from_json(v, out, msg, sizeof(msg));
	if (rv == -EINVAL)
		return bad(c, "metadata.labels", "%s", msg);
	if (rv != 0)
		return nomem(c);
	return 0;
}

static int get_int(struct pctx *c, const json_t *obj, const char *field, const char *path,
                   json_int_t lo, json_int_t hi, json_int_t *out)
{
	const json_t *v = json_object_get(obj, field);

	if (!json_is_integer(v))
		return bad(c, path, v == NULL ? "missing" : "not an integer");
	*out = json_integer_value(v);
	if (*out < lo || *out > hi)
		return bad(c, path,
		           "%" JSON_INTEGER_FORMAT " is out of range %" JSON_INTEGER_FORMAT
		           "-%" JSON_INTEGER_FORMAT,
		           *out, lo, hi);
	return 0;
}

static int parse_selector(struct pctx *c, const char *text, const char *path,
                          struct policy_selector **out)
{
	char msg[256];
	int rv = policy_selector_parse(text, out, NULL, msg, sizeof(msg));

	if (rv == -EINVAL)
		return bad(c, path, "%s", msg);
	if (rv != 0 || *out == NULL)
		return rv == -ENOMEM || rv == 0 ? nomem(c) : bad(c, path, "%s", msg);
	return 0;
}

/* A tag T is the selector has(T). */
static int parse_tag(struct pctx *c, const char *tag, const char *path, char **name,
                     struct policy_selector **sel)
{
	char *text;
	int rv;

	/* Only label-key characters, so that the tag cannot change the selector around it. */
	if (tag[0] == '\0' || strspn(tag, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                                  "0123456789_./-") != strlen(tag))
		return bad(c, path, "'%s' is not a tag", tag);
	if (asprintf(&text, "has(%s)", tag) < 0)
		return nomem(c);
	rv = parse_selector(c, text, path, sel);
	free(text);
	if (rv != 0)
		return rv;
	return dup_string(c, tag, name);
}

/* Append the CIDRs of v (one string, or a list of them) to *cidrs. */
static int add_cidrs(struct pctx *c, const json_t *v, bool list, const char *path,
                     struct ipam_cidr **cidrs, unsigned *n)
{
	size_t count = list ? json_array_size(v) : 1;
	struct ipam_cidr *grown;
	char msg[256];
	char p[160];

	if (list && !json_is_array(v))
		return bad(c, path, "not a list");
	if (count == 0)
		return 0;
	grown = realloc(*cidrs, (*n + count) * sizeof(*grown));
	if (grown == NULL)
		return nomem(c);
	*cidrs = grown;
	for (size_t i = 0; i < count; i++) {
		const json_t *s = list ? json_array_get(v, i) : v;
		if (list)
			snprintf(p, sizeof(p), "%s[%zu]", path, i);
		else
			snprintf(p, sizeof(p), "%s", path);
		if (!json_is_string(s))
			return bad(c, p, "not a string");
		if (!ipam_cidr_parse(json_string_value(s), &grown[*n], msg, sizeof(msg)))
			return bad(c, p, "%s", msg);
		(*n)++;
	}
	return 0;
}

/* Ports: an integer, or a string "lo:hi" (also a single number as a string). */
static int parse_ports(struct pctx *c, const json_t *v, const char *path,
                       struct policy_port_range **out, unsigned *n)
{
	size_t count;
	char p[160];

	if (!json_is_array(v))
		return bad(c, path, "not a list");
	count = json_array_size(v);
	*out = calloc(count > 0 ? count : 1, sizeof(**out));
	if (*out == NULL)
		return nomem(c);
	for (size_t i = 0; i < count; i++) {
		const json_t *e = json_array_get(v, i);
		long lo;
		long hi;

		snprintf(p, sizeof(p), "%s[%zu]", path, i);
		if (json_is_integer(e)) {
			lo = hi = (long)json_integer_value(e);
		} else if (json_is_string(e)) {
			const char *s = json_string_value(e);
			char *end;
			lo = strtol(s, &end, 10);
			if (end == s || (*end != ':' && *end != '\0'))
				return bad(c, p, "'%s' is not a port or a range", s);
			hi = lo;
			if (*end == ':') {
				const char *h = end + 1;
				hi = strtol(h, &end, 10);
				if (end == h || *end != '\0')
					return bad(c, p, "'%s' is not a port range", s);
			}
		} else {
			return bad(c, p, "not a port or a range");
		}
		if (lo < 1 || lo > 65535 || hi < 1 || hi > 65535 || lo > hi)
			return bad(c, p, "%ld:%ld is not a port range", lo, hi);
		(*out)[*n].lo = (uint16_t)lo;
		(*out)[*n].hi = (uint16_t)hi;
		(*n)++;
	}
	return 0;
}

static int parse_entity(struct pctx *c, const json_t *v, const char *path, struct policy_entity *e)
{
	static const char *const fields[] = {"tag",   "notTag",   "net",      "notNet",
	                                     "nets",  "notNets",  "selector", "notSelector",
	                                     "ports", "notPorts", NULL};
	const char *k;
	const char *s;
	char p[160];
	int rv;

	if (v == NULL)
		return 0;
	if (!json_is_object(v))
		return bad(c, path, "not a mapping");
	k = unknown_field(v, fields);
	if (k != NULL)
		return bad(c, path, "unknown field '%s'", k);

#define SUB(name) (snprintf(p, sizeof(p), "%s.%s", path, name), p)
	if ((rv = get_string(c, v, "tag", SUB("tag"), false, &s)) != 0)
		return rv;
	if (s != NULL && (rv = parse_tag(c, s, p, &e->tag, &e->tag_sel)) != 0)
		return rv;
	if ((rv = get_string(c, v, "notTag", SUB("notTag"), false, &s)) != 0)
		return rv;
	if (s != NULL && (rv = parse_tag(c, s, p, &e->not_tag, &e->not_tag_sel)) != 0)
		return rv;
	if ((rv = get_string(c, v, "selector", SUB("selector"), false, &s)) != 0)
		return rv;
	if (s != NULL && (rv = parse_selector(c, s, p, &e->selector)) != 0)
		return rv;
	if ((rv = get_string(c, v, "notSelector", SUB("notSelector"), false, &s)) != 0)
		return rv;
	if (s != NULL && (rv = parse_selector(c, s, p, &e->not_selector)) != 0)
		return rv;
	if (json_object_get(v, "net") != NULL &&
	    (rv = add_cidrs(c, json_object_get(v, "net"), false, SUB("net"), &e->nets,
	                    &e->n_nets)) != 0)
		return rv;
	if (json_object_get(v, "nets") != NULL &&
	    (rv = add_cidrs(c, json_object_get(v, "nets"), true, SUB("nets"), &e->nets,
	                    &e->n_nets)) != 0)
		return rv;
	if (json_object_get(v, "notNet") != NULL &&
	    (rv = add_cidrs(c, json_object_get(v, "notNet"), false, SUB("notNet"), &e->not_nets,
	                    &e->n_not_nets)) != 0)
		return rv;
	if (json_object_get(v, "notNets") != NULL &&
	    (rv = add_cidrs(c, json_object_get(v, "notNets"), true, SUB("notNets"), &e->not_nets,
	                    &e->n_not_nets)) != 0)
		return rv;
	if (json_object_get(v, "ports") != NULL &&
	    (rv = parse_ports(c, json_object_get(v, "ports"), SUB("ports"), &e->ports,
	                      &e->n_ports)) != 0)
		return rv;
	if (json_object_get(v, "notPorts") != NULL &&
	    (rv = parse_ports(c, json_object_get(v, "notPorts"), SUB("notPorts"), &e->not_ports,
	                      &e->n_not_ports)) != 0)
		return rv;
#undef SUB
	return 0;
}

/* A protocol: a name or a number 1-255. */
static int parse_protocol(struct pctx *c, const json_t *v, const char *path, int16_t *out)
{
	int proto = -1;

	if (json_is_integer(v) && json_integer_value(v) >= 1 && json_integer_value(v) <= 255)
		proto = (int)json_integer_value(v);
	else if (json_is_string(v))
		proto = policy_protocol_parse(json_string_value(v));
	if (proto < 1 || proto > 255) {
		if (json_is_string(v))
			return bad(c, path, "'%s' is not a protocol", json_string_value(v));
		return bad(c, path, "not a protocol");
	}
	*out = (int16_t)proto;
	return 0;
}

static int parse_icmp(struct pctx *c, const json_t *v, const char *path, int16_t *type,
                      int16_t *code)
{
	static const char *const fields[] = {"type", "code", NULL};
	char p[160];
	json_int_t t = 0;
	json_int_t cd = 0;
	const char *k;
	int rv;

	if (!json_is_object(v))
		return bad(c, path, "not a mapping");
	k = unknown_field(v, fields);
	if (k != NULL)
		return bad(c, path, "unknown field '%s'", k);
	snprintf(p, sizeof(p), "%s.type", path);
	if ((rv = get_int(c, v, "type", p, 0, 255, &t)) != 0)
		return rv;
	*type = (int16_t)t;
	if (json_object_get(v, "code") != NULL) {
		snprintf(p, sizeof(p), "%s.code", path);
		if ((rv = get_int(c, v, "code", p, 0, 255, &cd)) != 0)
			return rv;
		*code = (int16_t)cd;
	}
	return 0;
}

/* The family every CIDR of a rule has (they must agree with each other and with ipVersion), 0
 * when the rule has none. */
static int rule_check_family(struct pctx *c, const struct policy_rule *r, const char *path)
{
	const struct policy_entity *ents[2] = {&r->src, &r->dst};
	int fam = r->ip_version;

	for (int e = 0; e < 2; e++) {
		const struct policy_entity *en = ents[e];
		for (unsigned i = 0; i < en->n_nets + en->n_not_nets; i++) {
			const struct ipam_cidr *cd =
			    i < en->n_nets ? &en->nets[i] : &en->not_nets[i - en->n_nets];
			char buf[IPAM_CIDR_STRLEN];
			if (fam != 0 && cd->addr.family != fam)
				return bad(c, path, "%s is not IPv%d like the rest of the rule",
				           ipam_cidr_format(cd, buf), fam);
			fam = cd->addr.family;
		}
	}
	return 0;
}

static int parse_rule(struct pctx *c, const json_t *v, const char *path, bool profile,
                      struct policy_rule *r)
{
	static const char *const fields[] = {"action",      "ipVersion",   "protocol",
	                                     "notProtocol", "icmp",        "notICMP",
	                                     "source",      "destination", NULL};
	const char *action;
	const char *k;
	const json_t *f;
	char p[160];
	json_int_t ipv = 0;
	int rv;

	memset(r, 0, sizeof(*r));
	r->protocol = r->not_protocol = -1;
	r->icmp_type = r->icmp_code = r->not_icmp_type = r->not_icmp_code = -1;
	if (!json_is_object(v))
		return bad(c, path, "not a mapping");
	k = unknown_field(v, fields);
	if (k != NULL)
		return bad(c, path, "unknown field '%s'", k);
#define SUB(name) (snprintf(p, sizeof(p), "%s.%s", path, name), p)
	if ((rv = get_string(c, v, "action", SUB("action"), true, &action)) != 0)
		return rv;
	if (strcmp(action, "allow") == 0)
		r->action = POLICY_ACTION_ALLOW;
	else if (strcmp(action, "deny") == 0)
		r->action = POLICY_ACTION_DENY;
	else if (strcmp(action, "log") == 0)
		r->action = POLICY_ACTION_LOG;
	else if (strcmp(action, "pass") == 0 && !profile)
		r->action = POLICY_ACTION_PASS;
	else
		return bad(c, p, "'%s' is not an action%s", action,
		           profile ? " of a profile (allow, deny or log)" : "");
	if (json_object_get(v, "ipVersion") != NULL) {
		if ((rv = get_int(c, v, "ipVersion", SUB("ipVersion"), 4, 6, &ipv)) != 0)
			return rv;
		if (ipv == 5)
			return bad(c, p, "5 is not an IP version");
		r->ip_version = (uint8_t)ipv;
	}
	if ((f = json_object_get(v, "protocol")) != NULL &&
	    (rv = parse_protocol(c, f, SUB("protocol"), &r->protocol)) != 0)
		return rv;
	if ((f = json_object_get(v, "notProtocol")) != NULL &&
	    (rv = parse_protocol(c, f, SUB("notProtocol"), &r->not_protocol)) != 0)
		return rv;
	if ((f = json_object_get(v, "icmp")) != NULL &&
	    (rv = parse_icmp(c, f, SUB("icmp"), &r->icmp_type, &r->icmp_code)) != 0)
		return rv;
	if ((f = json_object_get(v, "notICMP")) != NULL &&
	    (rv = parse_icmp(c, f, SUB("notICMP"), &r->not_icmp_type, &r->not_icmp_code)) != 0)
		return rv;
	if ((rv = parse_entity(c, json_object_get(v, "source"), SUB("source"), &r->src)) != 0)
		return rv;
	if ((rv = parse_entity(c, json_object_get(v, "destination"), SUB("destination"),
	                       &r->dst)) != 0)
		return rv;
#undef SUB
	return rule_check_family(c, r, path);
}

static int parse_rules(struct pctx *c, const json_t *spec, const char *field, bool profile,
                       struct policy_rules *out)
{
	const json_t *v = json_object_get(spec, field);
	size_t count;
	char p[64];
	int rv;

	memset(out, 0, sizeof(*out));
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_array(v))
		return bad(c, field, "not a list");
	count = json_array_size(v);
	if (count == 0)
		return 0;
	out->v = calloc(count, sizeof(*out->v));
	if (out->v == NULL)
		return nomem(c);
	for (size_t i = 0; i < count; i++) {
		snprintf(p, sizeof(p), "spec.%s[%zu]", field, i);
		/* n counts the rule being parsed so that rules_free() frees what it got. */
		out->n = (unsigned)i + 1;
		rv = parse_rule(c, json_array_get(v, i), p, profile, &out->v[i]);
		if (rv != 0)
			return rv;
	}
	return 0;
}

/* The envelope: kind as expected, metadata and spec mappings, metadata.name when asked. */
static int envelope(struct pctx *c, const json_t *in, const json_t **meta, const json_t **spec)
{
	*meta = json_object_get(in, "metadata");
	*spec = json_object_get(in, "spec");
	if (!json_is_object(*meta))
		return bad(c, "metadata", "missing or not a mapping");
	if (*spec == NULL)
		*spec = json_object();
	else if (!json_is_object(*spec))
		return bad(c, "spec", "not a mapping");
	else
		json_incref((json_t *)*spec);
	return *spec == NULL ? nomem(c) : 0;
}

static int get_bool(struct pctx *c, const json_t *spec, const char *field, bool *out)
{
	const json_t *v = json_object_get(spec, field);

	*out = false;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return bad(c, field, "not a boolean");
	*out = json_is_true(v);
	return 0;
}

static int parse_policy(struct pctx *c, const json_t *meta, const json_t *spec,
                        struct policy_policy **out)
{
	struct policy_policy *p = calloc(1, sizeof(*p));
	const json_t *order = json_object_get(spec, "order");
	const json_t *types = json_object_get(spec, "types");
	const char *name;
	const char *sel;
	int rv;

	if (p == NULL)
		return nomem(c);
	if ((rv = get_string(c, meta, "name", "metadata.name", true, &name)) != 0 ||
	    (rv = dup_string(c, name, &p->name)) != 0)
		goto err;
	snprintf(c->what, sizeof(c->what), "policy %s", name);
	if (order != NULL && !json_is_null(order)) {
		if (!json_is_number(order) || !isfinite(json_number_value(order))) {
			rv = bad(c, "spec.order", "not a number");
			goto err;
		}
		p->has_order = true;
		p->order = json_number_value(order);
	}
	if ((rv = get_string(c, spec, "selector", "spec.selector", false, &sel)) != 0)
		goto err;
	if ((rv = dup_string(c, sel != NULL ? sel : "", &p->selector_text)) != 0 ||
	    (rv = parse_selector(c, p->selector_text, "spec.selector", &p->selector)) != 0)
		goto err;
	if ((rv = get_bool(c, spec, "doNotTrack", &p->do_not_track)) != 0 ||
	    (rv = get_bool(c, spec, "preDNAT", &p->pre_dnat)) != 0)
		goto err;
	if ((rv = parse_rules(c, spec, "ingress", false, &p->ingress)) != 0 ||
	    (rv = parse_rules(c, spec, "egress", false, &p->egress)) != 0)
		goto err;
	if (types == NULL || json_is_null(types)) {
		/* Normalized policies carry their types; a form without them gets the v1
		 * defaulting (section 3.3). */
		p->ingress_type = p->egress.n == 0 || p->ingress.n > 0;
		p->egress_type = p->egress.n > 0;
	} else if (!json_is_array(types)) {
		rv = bad(c, "spec.types", "not a list");
		goto err;
	} else {
		for (size_t i = 0; i < json_array_size(types); i++) {
			const char *t = json_string_value(json_array_get(types, i));
			if (t != NULL && strcmp(t, "ingress") == 0) {
				p->ingress_type = true;
			} else if (t != NULL && strcmp(t, "egress") == 0) {
				p->egress_type = true;
			} else {
				char path[64];
				snprintf(path, sizeof(path), "spec.types[%zu]", i);
				rv = bad(c, path, "not ingress or egress");
				goto err;
			}
		}
	}
	*out = p;
	return 0;
err:
	policy_free(p);
	return rv;
}

static int parse_profile(struct pctx *c, const json_t *meta, const json_t *spec,
                         struct policy_profile **out)
{
	struct policy_profile *p = calloc(1, sizeof(*p));
	const char *name;
	int rv;

	if (p == NULL)
		return nomem(c);
	if ((rv = get_string(c, meta, "name", "metadata.name", true, &name)) != 0 ||
	    (rv = dup_string(c, name, &p->name)) != 0)
		goto err;
	snprintf(c->what, sizeof(c->what), "profile %s", name);
	if ((rv = get_labels(c, meta, &p->labels)) != 0 ||
	    (rv = get_strv(c, json_object_get(meta, "tags"), "metadata.tags", &p->tags,
	                   &p->n_tags)) != 0)
		goto err;
	if ((rv = parse_rules(c, spec, "ingress", true, &p->ingress)) != 0 ||
	    (rv = parse_rules(c, spec, "egress", true, &p->egress)) != 0)
		goto err;
	*out = p;
	return 0;
err:
	profile_free(p);
	return rv;
}

/* Addresses of an endpoint: ipNetworks (single-address CIDRs) or expectedIPs (addresses). */
static int parse_addrs(struct pctx *c, const json_t *v, const char *path, bool cidrs,
                       struct policy_endpoint *e)
{
	char p[160];
	char msg[256];
	size_t count;

	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_array(v))
		return bad(c, path, "not a list");
	count = json_array_size(v);
	if (count == 0)
		return 0;
	e->addrs = calloc(count, sizeof(*e->addrs));
	if (e->addrs == NULL)
		return nomem(c);
	for (size_t i = 0; i < count; i++) {
		const char *s = json_string_value(json_array_get(v, i));
		struct ipam_cidr cd;

		snprintf(p, sizeof(p), "%s[%zu]", path, i);
		if (s == NULL)
			return bad(c, p, "not a string");
		if (cidrs) {
			if (!ipam_cidr_parse(s, &cd, msg, sizeof(msg)))
				return bad(c, p, "%s", msg);
			if (cd.prefix != (cd.addr.family == 4 ? 32 : 128))
				return bad(c, p, "%s is not a single address", s);
			e->addrs[i] = cd.addr;
		} else if (!ipam_addr_parse(s, &e->addrs[i])) {
			return bad(c, p, "'%s' is not an IP address", s);
		}
		e->n_addrs++;
	}
	return 0;
}

static int parse_endpoint(struct pctx *c, enum policy_kind kind, const json_t *meta,
                          const json_t *spec, struct policy_endpoint **out)
{
	struct policy_endpoint *e = calloc(1, sizeof(*e));
	bool wep = kind == POLICY_KIND_WORKLOADENDPOINT;
	const char *name;
	const char *node;
	const char *orch = NULL;
	const char *workload = NULL;
	const char *iface;
	int rv;

	if (e == NULL)
		return nomem(c);
	e->kind = kind;
	if ((rv = get_string(c, meta, "name", "metadata.name", true, &name)) != 0 ||
	    (rv = get_string(c, meta, "node", "metadata.node", true, &node)) != 0)
		goto err;
	if (wep &&
	    ((rv = get_string(c, meta, "orchestrator", "metadata.orchestrator", true, &orch)) !=
	         0 ||
	     (rv = get_string(c, meta, "workload", "metadata.workload", true, &workload)) != 0))
		goto err;
	if (wep)
		rv = asprintf(&e->key, "%s/%s/%s/%s", node, orch, workload, name);
	else
		rv = asprintf(&e->key, "%s/%s", node, name);
	if (rv < 0) {
		e->key = NULL;
		rv = nomem(c);
		goto err;
	}
	snprintf(c->what, sizeof(c->what), "%s %s", policy_kind_name(kind), e->key);
	if ((rv = dup_string(c, name, &e->name)) != 0 ||
	    (rv = dup_string(c, node, &e->node)) != 0 ||
	    (rv = dup_string(c, orch, &e->orchestrator)) != 0 ||
	    (rv = dup_string(c, workload, &e->workload)) != 0)
		goto err;
	if ((rv = get_string(c, spec, "interfaceName", "spec.interfaceName", false, &iface)) != 0 ||
	    (rv = dup_string(c, iface, &e->interface)) != 0)
		goto err;
	if ((rv = get_labels(c, meta, &e->labels)) != 0 ||
	    (rv = get_strv(c, json_object_get(spec, "profiles"), "spec.profiles", &e->profiles,
	                   &e->n_profiles)) != 0)
		goto err;
	if (wep)
		rv =
		    parse_addrs(c, json_object_get(spec, "ipNetworks"), "spec.ipNetworks", true, e);
	else
		rv = parse_addrs(c, json_object_get(spec, "expectedIPs"), "spec.expectedIPs", false,
		                 e);
	if (rv != 0)
		goto err;
	*out = e;
	return 0;
err:
	endpoint_free(e);
	return rv;
}

/* "10.0.7.11/24" (an address and its subnet) or a plain address. */
static int parse_node_addr(struct pctx *c, const json_t *bgp, const char *field, int family,
                           struct ipam_addr *out)
{
	const char *s;
	char path[64];
	char buf[IPAM_ADDR_STRLEN + 8];
	char *slash;
	int rv;

	snprintf(path, sizeof(path), "spec.bgp.%s", field);
	if ((rv = get_string(c, bgp, field, path, false, &s)) != 0 || s == NULL)
		return rv;
	if (strlen(s) >= sizeof(buf))
		return bad(c, path, "'%s' is not an IPv%d address", s, family);
	strcpy(buf, s);
	slash = strchr(buf, '/');
	if (slash != NULL)
		*slash = '\0';
	if (!ipam_addr_parse(buf, out) || out->family != family)
		return bad(c, path, "'%s' is not an IPv%d address", s, family);
	return 0;
}

static int parse_node(struct pctx *c, const json_t *meta, const json_t *spec,
                      struct policy_node **out)
{
	struct policy_node *n = calloc(1, sizeof(*n));
	const json_t *bgp = json_object_get(spec, "bgp");
	const char *name;
	int rv;

	if (n == NULL)
		return nomem(c);
	if ((rv = get_string(c, meta, "name", "metadata.name", true, &name)) != 0 ||
	    (rv = dup_string(c, name, &n->name)) != 0)
		goto err;
	snprintf(c->what, sizeof(c->what), "node %s", name);
	if ((rv = get_labels(c, meta, &n->labels)) != 0)
		goto err;
	if (bgp != NULL && !json_is_null(bgp)) {
		if (!json_is_object(bgp)) {
			rv = bad(c, "spec.bgp", "not a mapping");
			goto err;
		}
		if ((rv = parse_node_addr(c, bgp, "ipv4Address", 4, &n->addrs[0])) != 0 ||
		    (rv = parse_node_addr(c, bgp, "ipv6Address", 6, &n->addrs[1])) != 0)
			goto err;
	}
	*out = n;
	return 0;
err:
	node_free(n);
	return rv;
}

/* ------------------------------------------------------------------------------------------ */
/* Put and remove                                                                              */

static int put_policy(struct policy_model *m, struct policy_policy *p)
{
	unsigned i;
	unsigned j;
	bool found;
	struct policy_policy *old = NULL;

	if (parray_reserve(&m->policies) != 0 || parray_reserve(&m->policies_by_name) != 0)
		return -ENOMEM;
	j = parray_search(&m->policies_by_name, p->name, policy_name_cmp, &found);
	if (found) {
		old = m->policies_by_name.v[j];
		m->policies_by_name.v[j] = p;
		i = parray_search(&m->policies, old, policy_cmp, &found);
		parray_delete(&m->policies, i);
		policy_free(old);
	} else {
		parray_insert(&m->policies_by_name, j, p);
	}
	i = parray_search(&m->policies, p, policy_cmp, &found);
	parray_insert(&m->policies, i, p);
	return 0;
}

static int put_profile(struct policy_model *m, struct policy_profile *p)
{
	bool found;
	unsigned i;

	if (parray_reserve(&m->profiles) != 0)
		return -ENOMEM;
	i = parray_search(&m->profiles, p->name, profile_name_cmp, &found);
	if (found) {
		profile_free(m->profiles.v[i]);
		m->profiles.v[i] = p;
	} else {
		parray_insert(&m->profiles, i, p);
	}
	return 0;
}

static void endpoint_unindex(struct policy_model *m, const struct policy_endpoint *e)
{
	for (unsigned i = 0; i < e->n_addrs; i++)
		addr_map_del(&m->endpoint_addrs, &e->addrs[i], e);
}

static int put_endpoint(struct policy_model *m, struct policy_endpoint *e)
{
	struct endpoint_id id = {e->kind, e->key};
	bool found;
	unsigned i;

	if (parray_reserve(&m->endpoints) != 0 || ep_index_reserve(&m->ep_index) != 0)
		return -ENOMEM;
	/* Room for every new address first, so that indexing cannot fail half way. */
	if (addr_map_reserve(&m->endpoint_addrs, e->n_addrs) != 0)
		return -ENOMEM;
	i = parray_search(&m->endpoints, &id, endpoint_cmp, &found);
	ep_index_put(&m->ep_index, e); /* before the old one, whose key it compares, is freed */
	if (found) {
		endpoint_unindex(m, m->endpoints.v[i]);
		endpoint_free(m->endpoints.v[i]);
		m->endpoints.v[i] = e;
	} else {
		parray_insert(&m->endpoints, i, e);
	}
	for (unsigned k = 0; k < e->n_addrs; k++)
		addr_map_add(&m->endpoint_addrs, &e->addrs[k], e);
	return 0;
}

static void node_unindex(struct policy_model *m, const struct policy_node *n)
{
	for (int k = 0; k < 2; k++)
		if (n->addrs[k].family != 0)
			addr_map_del(&m->node_addrs, &n->addrs[k], n);
}

static int put_node(struct policy_model *m, struct policy_node *n)
{
	bool found;
	unsigned i;
	int rv;

	if (parray_reserve(&m->nodes) != 0)
		return -ENOMEM;
	if ((rv = addr_map_reserve(&m->node_addrs, 2)) != 0)
		return rv;
	i = parray_search(&m->nodes, n->name, node_name_cmp, &found);
	if (found) {
		node_unindex(m, m->nodes.v[i]);
		node_free(m->nodes.v[i]);
		m->nodes.v[i] = n;
	} else {
		parray_insert(&m->nodes, i, n);
	}
	for (int k = 0; k < 2; k++)
		if (n->addrs[k].family != 0)
			addr_map_add(&m->node_addrs, &n->addrs[k], n);
	return 0;
}

int policy_model_put(struct policy_model *m, const json_t *normalized, char *err, size_t errlen)
{
	struct pctx c = {.err = err, .errlen = errlen};
	const json_t *meta;
	const json_t *spec = NULL;
	const char *kind_name;
	enum policy_kind kind;
	void *obj = NULL;
	int rv;

	if (errlen > 0)
		err[0] = '\0';
	snprintf(c.what, sizeof(c.what), "resource");
	if (!json_is_object(normalized))
		return bad(&c, "(top)", "not a mapping");
	kind_name = json_string_value(json_object_get(normalized, "kind"));
	if (kind_name == NULL)
		return bad(&c, "kind", "missing or not a string");
	kind = policy_kind_parse(kind_name);
	if (kind == POLICY_KIND_NONE)
		return bad(&c, "kind", "unknown kind '%s'", kind_name);
	snprintf(c.what, sizeof(c.what), "%s", policy_kind_name(kind));
	if (kind == POLICY_KIND_IPPOOL || kind == POLICY_KIND_BGPPEER)
		return bad(&c, "kind", "%s resources are not part of the policy model",
		           policy_kind_name(kind));
	if ((rv = envelope(&c, normalized, &meta, &spec)) != 0)
		return rv;
	switch (kind) {
	case POLICY_KIND_POLICY:
		rv = parse_policy(&c, meta, spec, (struct policy_policy **)&obj);
		if (rv == 0 && (rv = put_policy(m, obj)) != 0)
			policy_free(obj);
		break;
	case POLICY_KIND_PROFILE:
		rv = parse_profile(&c, meta, spec, (struct policy_profile **)&obj);
		if (rv == 0 && (rv = put_profile(m, obj)) != 0)
			profile_free(obj);
		break;
	case POLICY_KIND_WORKLOADENDPOINT:
	case POLICY_KIND_HOSTENDPOINT:
		rv = parse_endpoint(&c, kind, meta, spec, (struct policy_endpoint **)&obj);
		if (rv == 0 && (rv = put_endpoint(m, obj)) != 0)
			endpoint_free(obj);
		break;
	case POLICY_KIND_NODE:
		rv = parse_node(&c, meta, spec, (struct policy_node **)&obj);
		if (rv == 0 && (rv = put_node(m, obj)) != 0)
			node_free(obj);
		break;
	default:
		rv = bad(&c, "kind", "not part of the policy model");
		break;
	}
	if (rv == -ENOMEM && errlen > 0 && err[0] == '\0')
		snprintf(err, errlen, "%s: out of memory", c.what);
	json_decref((json_t *)spec);
	return rv;
}

int policy_model_remove(struct policy_model *m, enum policy_kind kind, const char *key)
{
	bool found;
	unsigned i;

	if (key == NULL)
		return -ENOENT;
	switch (kind) {
	case POLICY_KIND_POLICY: {
		struct policy_policy *p;
		i = parray_search(&m->policies_by_name, key, policy_name_cmp, &found);
		if (!found)
			return -ENOENT;
		p = m->policies_by_name.v[i];
		parray_delete(&m->policies_by_name, i);
		i = parray_search(&m->policies, p, policy_cmp, &found);
		parray_delete(&m->policies, i);
		policy_free(p);
		return 0;
	}
	case POLICY_KIND_PROFILE:
		i = parray_search(&m->profiles, key, profile_name_cmp, &found);
		if (!found)
			return -ENOENT;
		profile_free(m->profiles.v[i]);
		parray_delete(&m->profiles, i);
		return 0;
	case POLICY_KIND_WORKLOADENDPOINT:
	case POLICY_KIND_HOSTENDPOINT: {
		struct endpoint_id id = {kind, key};
		i = parray_search(&m->endpoints, &id, endpoint_cmp, &found);
		if (!found)
			return -ENOENT;
		endpoint_unindex(m, m->endpoints.v[i]);
		ep_index_del(&m->ep_index, kind, key);
		endpoint_free(m->endpoints.v[i]);
		parray_delete(&m->endpoints, i);
		return 0;
	}
	case POLICY_KIND_NODE:
		i = parray_search(&m->nodes, key, node_name_cmp, &found);
		if (!found)
			return -ENOENT;
		node_unindex(m, m->nodes.v[i]);
		node_free(m->nodes.v[i]);
		parray_delete(&m->nodes, i);
		return 0;
	default:
		return -ENOENT;
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Accessors                                                                                   */

int policy_rule_family(const struct policy_rule *r)
{
	const struct policy_entity *ents[2] = {&r->src, &r->dst};

	if (r->ip_version != 0)
		return r->ip_version;
	for (int e = 0; e < 2; e++) {
		if (ents[e]->n_nets > 0)
			return ents[e]->nets[0].addr.family;
		if (ents[e]->n_not_nets > 0)
			return ents[e]->not_nets[0].addr.family;
	}
	return 0;
}

struct policy_policy *const *policy_model_policies(const struct policy_model *m, unsigned *n)
{
	*n = m->policies.n;
	return (struct policy_policy *const *)m->policies.v;
}

const struct policy_policy *policy_model_policy(const struct policy_model *m, const char *name)
{
	bool found;
	unsigned i = parray_search(&m->policies_by_name, name, policy_name_cmp, &found);

	return found ? m->policies_by_name.v[i] : NULL;
}

const struct policy_profile *policy_model_profile(const struct policy_model *m, const char *name)
{
	bool found;
	unsigned i = parray_search(&m->profiles, name, profile_name_cmp, &found);

	return found ? m->profiles.v[i] : NULL;
}

struct policy_endpoint *const *policy_model_endpoints(const struct policy_model *m, unsigned *n)
{
	*n = m->endpoints.n;
	return (struct policy_endpoint *const *)m->endpoints.v;
}

const struct policy_endpoint *policy_model_endpoint(const struct policy_model *m,
                                                    enum policy_kind kind, const char *key)
{
	if (m->ep_index.cap == 0)
		return NULL;
	return m->ep_index.slot[ep_index_find(&m->ep_index, ep_hash(kind, key), kind, key)].e;
}

const struct policy_endpoint *policy_model_endpoint_by_addr(const struct policy_model *m,
                                                            const struct ipam_addr *addr)
{
	return addr_map_get(&m->endpoint_addrs, addr, endpoint_before);
}

struct policy_node *const *policy_model_nodes(const struct policy_model *m, unsigned *n)
{
	*n = m->nodes.n;
	return (struct policy_node *const *)m->nodes.v;
}

const struct policy_node *policy_model_node(const struct policy_model *m, const char *name)
{
	bool found;
	unsigned i = parray_search(&m->nodes, name, node_name_cmp, &found);

	return found ? m->nodes.v[i] : NULL;
}

const struct policy_node *policy_model_node_by_addr(const struct policy_model *m,
                                                    const struct ipam_addr *addr)
{
	return addr_map_get(&m->node_addrs, addr, node_before);
}

/* ------------------------------------------------------------------------------------------ */
/* Effective labels                                                                            */

void policy_ep_labels_init(struct policy_ep_labels *l, const struct policy_model *m,
                           const struct policy_endpoint *ep)
{
	l->m = m;
	l->ep = ep;
	l->resolved = false;
}

const char *policy_ep_labels_get(struct policy_ep_labels *l, const char *key)
{
	const struct policy_endpoint *ep = l->ep;
	const char *v = policy_labels_get(&ep->labels, key);

	if (v != NULL || ep->n_profiles == 0)
		return v;
	if (!l->resolved) {
		for (unsigned i = 0; i < ep->n_profiles && i < POLICY_EP_LABELS_PROFILES; i++)
			l->prof[i] = policy_model_profile(l->m, ep->profiles[i]);
		l->resolved = true;
	}
	for (unsigned i = 0; i < ep->n_profiles; i++) {
		const struct policy_profile *p = i < POLICY_EP_LABELS_PROFILES
		                                     ? l->prof[i]
		                                     : policy_model_profile(l->m, ep->profiles[i]);
		if (p == NULL)
			continue;
		v = policy_labels_get(&p->labels, key);
		if (v != NULL)
			return v;
		for (unsigned t = 0; t < p->n_tags; t++)
			if (strcmp(p->tags[t], key) == 0)
				return "";
	}
	return NULL;
}

static const char *ep_labels_get(void *ctx, const char *key)
{
	return policy_ep_labels_get(ctx, key);
}

bool policy_ep_labels_match(struct policy_ep_labels *l, const struct policy_selector *sel)
{
	return policy_selector_match(sel, ep_labels_get, l);
}

const char *policy_endpoint_label(const struct policy_model *m, const struct policy_endpoint *ep,
                                  const char *key)
{
	struct policy_ep_labels l;

	policy_ep_labels_init(&l, m, ep);
	return policy_ep_labels_get(&l, key);
}

bool policy_endpoint_matches(const struct policy_model *m, const struct policy_endpoint *ep,
                             const struct policy_selector *sel)
{
	struct policy_ep_labels l;

	policy_ep_labels_init(&l, m, ep);
	return policy_ep_labels_match(&l, sel);
}

/* ------------------------------------------------------------------------------------------ */
/* Resolving command-line endpoint names                                                       */

/* The address of ep of family (0: IPv4 preferred), false when it has none. */
static bool endpoint_addr(const struct policy_endpoint *ep, int family, struct ipam_addr *out)
{
	for (int pass = 0; pass < 2; pass++) {
		int want = family != 0 ? family : pass == 0 ? 4 : 6;
		for (unsigned i = 0; i < ep->n_addrs; i++) {
			if (ep->addrs[i].family == want) {
				*out = ep->addrs[i];
				return true;
			}
		}
		if (family != 0)
			break;
	}
	return false;
}

static int no_family(const char *spec, int family, char *err, size_t errlen)
{
	if (family != 0)
		snprintf(err, errlen, "%s has no IPv%d address", spec, family);
	else
		snprintf(err, errlen, "%s has no address", spec);
	return -EINVAL;
}

static int resolve_node(const struct policy_model *m, const char *spec, const char *name,
                        int family, struct ipam_addr *out, char *err, size_t errlen)
{
	const struct policy_node *n = policy_model_node(m, name);

	if (n == NULL) {
		snprintf(err, errlen, "%s: no node named '%s'", spec, name);
		return -ENOENT;
	}
	for (int k = 0; k < 2; k++) {
		if (n->addrs[k].family != 0 && (family == 0 || n->addrs[k].family == family)) {
			*out = n->addrs[k];
			return 0;
		}
	}
	return no_family(spec, family, err, errlen);
}

/* Whether spec names ep as "WORKLOAD/NAME" or "WORKLOAD". */
static bool names_workload(const struct policy_endpoint *ep, const char *spec)
{
	size_t wl;

	if (ep->kind != POLICY_KIND_WORKLOADENDPOINT)
		return false;
	if (strcmp(spec, ep->workload) == 0)
		return true;
	wl = strlen(ep->workload);
	return strncmp(spec, ep->workload, wl) == 0 && spec[wl] == '/' &&
	       strcmp(spec + wl + 1, ep->name) == 0;
}

int policy_model_resolve(const struct policy_model *m, const char *spec, int family,
                         struct ipam_addr *out, char *err, size_t errlen)
{
	const struct policy_endpoint *ep;
	const struct policy_endpoint *found = NULL;
	unsigned count = 0;
	char list[256] = "";

	if (errlen > 0)
		err[0] = '\0';
	if (spec == NULL || spec[0] == '\0') {
		snprintf(err, errlen, "an empty endpoint name");
		return -EINVAL;
	}
	if (family != 0 && family != 4 && family != 6) {
		snprintf(err, errlen, "%s: %d is not an IP version", spec, family);
		return -EINVAL;
	}
	if (ipam_addr_parse(spec, out)) {
		if (family != 0 && out->family != family) {
			snprintf(err, errlen, "%s is not an IPv%d address", spec, family);
			return -EINVAL;
		}
		return 0;
	}
	if (strncmp(spec, "host:", 5) == 0)
		return resolve_node(m, spec, spec + 5, family, out, err, errlen);
	ep = policy_model_endpoint(m, POLICY_KIND_WORKLOADENDPOINT, spec);
	if (ep == NULL)
		ep = policy_model_endpoint(m, POLICY_KIND_HOSTENDPOINT, spec);
	if (ep == NULL) {
		/* The short forms need a look at every workload: a command-line lookup, not a
		 * per-packet one. */
		for (unsigned i = 0; i < m->endpoints.n; i++) {
			const struct policy_endpoint *e = m->endpoints.v[i];
			if (!names_workload(e, spec))
				continue;
			if (count < 3) {
				size_t len = strlen(list);
				snprintf(list + len, sizeof(list) - len, "%s%s",
				         count > 0 ? ", " : "", e->key);
			}
			count++;
			found = e;
		}
		if (count == 0) {
			snprintf(
			    err, errlen,
			    "%s: no such address, workload endpoint, host endpoint or workload",
			    spec);
			return -ENOENT;
		}
		if (count > 1) {
			snprintf(err, errlen, "%s is ambiguous: %u endpoints fit (%s%s)", spec,
			         count, list, count > 3 ? ", ..." : "");
			return -EINVAL;
		}
		ep = found;
	}
	if (!endpoint_addr(ep, family, out))
		return no_family(spec, family, err, errlen);
	return 0;
}
