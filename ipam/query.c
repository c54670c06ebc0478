/*
 * Read-only queries over a kv_tx (a view of the local replica, or inside a command), and the
 * consistency check behind `tabby ipam check`.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipam/internal.h"

static struct kv_bytes kb(const uint8_t *p, size_t n)
{
	struct kv_bytes b = {p, n};
	return b;
}

static int kv_err(int rc)
{
	return rc == KV_ENOMEM ? -ENOMEM : -EIO;
}

/* kv_tx_scan returns KV_ codes (positive) or what a callback returned (negative errno here). */
static int scan(struct kv_tx *tx, const uint8_t *prefix, size_t n, kv_scan_fn fn, void *arg)
{
	int rc = kv_tx_scan(tx, KV_SPACE_DOMAIN, kb(prefix, n), kb(NULL, 0), fn, arg);
	return rc == 0 ? 0 : rc < 0 ? rc : kv_err(rc);
}

/* ------------------------------------------------------------------------------------------ */
/* Pools and config                                                                            */

struct pool_list {
	struct ipam_pool_rec *p;
	unsigned n, cap;
};

static int pool_cb(void *arg, struct kv_bytes key, struct kv_bytes value)
{
	struct pool_list *l = arg;
	(void)key;
	if (!ipam_grow((void **)&l->p, &l->cap, l->n, sizeof *l->p)) {
		return -ENOMEM;
	}
	if (!ipam_pool_decode(value.data, value.len, &l->p[l->n])) {
		return -EBADMSG;
	}
	l->n++;
	return 0;
}

static int load_pool_list(struct kv_tx *tx, struct pool_list *l)
{
	uint8_t k[IPAM_KEY_MAX];
	memset(l, 0, sizeof *l);
	int rv = scan(tx, k, ipam_prefix_pools(k), pool_cb, l);
	if (rv != 0) {
		free(l->p);
		memset(l, 0, sizeof *l);
	}
	return rv;
}

static const struct ipam_pool_rec *pool_for(const struct pool_list *l, const struct ipam_addr *a)
{
	for (unsigned i = 0; i < l->n; i++) {
		if (ipam_cidr_contains(&l->p[i].pool.cidr, a)) {
			return &l->p[i];
		}
	}
	return NULL;
}

int ipam_list_pools(struct kv_tx *tx, struct ipam_pool **pools, unsigned *n)
{
	struct pool_list l;
	int rv = load_pool_list(tx, &l);

	*pools = NULL;
	*n = 0;
	if (rv != 0) {
		return rv;
	}
	if (l.n > 0) {
		*pools = malloc(l.n * sizeof **pools);
		if (*pools == NULL) {
			free(l.p);
			return -ENOMEM;
		}
		for (unsigned i = 0; i < l.n; i++) {
			(*pools)[i] = l.p[i].pool;
		}
	}
	*n = l.n;
	free(l.p);
	return 0;
}

int ipam_get_config(struct kv_tx *tx, struct ipam_config *cfg)
{
	struct kv_bytes v;
	int rc = kv_tx_get(tx, KV_SPACE_DOMAIN,
	                   kb((const uint8_t *)IPAM_KEY_CONFIG, strlen(IPAM_KEY_CONFIG)), &v);
	memset(cfg, 0, sizeof *cfg);
	if (rc == KV_ENOTFOUND) {
		return 0;
	}
	if (rc != KV_OK) {
		return kv_err(rc);
	}
	return ipam_config_decode(v.data, v.len, cfg) ? 0 : -EBADMSG;
}

/* ------------------------------------------------------------------------------------------ */
/* Blocks and allocations                                                                      */

/* Every block record, decoded in turn. */
typedef int (*block_fn)(void *arg, struct kv_bytes key, struct ipam_block *b);

struct block_walk {
	block_fn fn;
	void *arg;
};

static int block_walk_cb(void *arg, struct kv_bytes key, struct kv_bytes value)
{
	struct block_walk *w = arg;
	bool oom = false;
	struct ipam_block *b = ipam_block_decode(value.data, value.len, &oom);
	int rv;

	if (b == NULL) {
		return oom ? -ENOMEM : -EBADMSG;
	}
	rv = w->fn(w->arg, key, b);
	ipam_block_free(b);
	return rv;
}

static int walk_blocks(struct kv_tx *tx, block_fn fn, void *arg)
{
	uint8_t k[IPAM_KEY_MAX];
	struct block_walk w = {fn, arg};
	return scan(tx, k, ipam_prefix_blocks(k, 0), block_walk_cb, &w);
}

struct blocks_out {
	const struct pool_list *pools;
	struct ipam_block_info *b;
	unsigned n, cap;
};

static int blocks_cb(void *arg, struct kv_bytes key, struct ipam_block *b)
{
	struct blocks_out *o = arg;
	struct ipam_block_info *bi;
	const struct ipam_pool_rec *p = pool_for(o->pools, &b->cidr.addr);
	(void)key;

	if (!ipam_grow((void **)&o->b, &o->cap, o->n, sizeof *o->b)) {
		return -ENOMEM;
	}
	bi = &o->b[o->n++];
	memset(bi, 0, sizeof *bi);
	bi->cidr = b->cidr;
	if (p != NULL) {
		bi->pool = p->pool.cidr;
	}
	if (b->affinity != NULL) {
		snprintf(bi->affinity, sizeof bi->affinity, "%s", b->affinity);
	}
	bi->size = b->size;
	bi->used = ipam_block_used(b);
	return 0;
}

int ipam_list_blocks(struct kv_tx *tx, struct ipam_block_info **blocks, unsigned *n)
{
	struct pool_list pools;
	struct blocks_out o = {&pools, NULL, 0, 0};
	int rv;

	*blocks = NULL;
	*n = 0;
	if ((rv = load_pool_list(tx, &pools)) != 0) {
		return rv;
	}
	rv = walk_blocks(tx, blocks_cb, &o);
	free(pools.p);
	if (rv != 0) {
		free(o.b);
		return rv;
	}
	*blocks = o.b;
	*n = o.n;
	return 0;
}

/* Fill an ipam_alloc from an ip record; the strings point into rec. */
static void fill_alloc(struct ipam_alloc *a, const struct ipam_addr *addr,
                       const struct ipam_ip_rec *rec, const char *affinity, struct ipam_attr *attrs)
{
	memset(a, 0, sizeof *a);
	a->addr = *addr;
	a->gen = rec->gen;
	a->time_ms = rec->time_ms;
	a->block.prefix = rec->block_prefix;
	ipam_addr_mask(addr, rec->block_prefix, &a->block.addr);
	a->handle = rec->handle;
	a->node = rec->node;
	a->affinity = affinity != NULL ? affinity : "";
	for (unsigned i = 0; i < rec->n_attrs; i++) {
		attrs[i].key = rec->keys[i];
		attrs[i].value = rec->values[i];
	}
	a->attrs = attrs;
	a->n_attrs = rec->n_attrs;
}

/* The affinity of the block at base (a malloc()ed copy, NULL for none or no block). */
static int block_affinity(struct kv_tx *tx, const struct ipam_addr *base, char **out)
{
	uint8_t k[IPAM_KEY_MAX];
	struct kv_bytes v;
	struct ipam_block *b;
	bool oom = false;
	int rc = kv_tx_get(tx, KV_SPACE_DOMAIN, kb(k, ipam_key_block(k, base)), &v);

	*out = NULL;
	if (rc == KV_ENOTFOUND) {
		return 0;
	}
	if (rc != KV_OK) {
		return kv_err(rc);
	}
	b = ipam_block_decode(v.data, v.len, &oom);
	if (b == NULL) {
		return oom ? -ENOMEM : -EBADMSG;
	}
	*out = b->affinity; /* taken over from the block */
	b->affinity = NULL;
	ipam_block_free(b);
	return 0;
}

struct foreach_ctx {
	struct kv_tx *tx;
	ipam_alloc_fn fn;
	void *arg;
	/* Consecutive addresses mostly share a block: remember the last one's affinity. */
	struct ipam_addr last_block;
	char *last_aff;
	int stopped; /* what fn returned when it stopped the walk */
};

static int foreach_cb(void *arg, struct kv_bytes key, struct kv_bytes value)
{
	struct foreach_ctx *f = arg;
	struct ipam_attr attrs[IPAM_ATTRS_MAX];
	struct ipam_ip_rec rec;
	struct ipam_alloc a;
	struct ipam_addr addr, base;
	bool oom = false;
	int rv;

	if (!ipam_key_tail_addr(key.data, key.len, &addr) ||
	    !ipam_ip_decode(value.data, value.len, &rec, &oom)) {
		return oom ? -ENOMEM : -EBADMSG;
	}
	ipam_addr_mask(&addr, rec.block_prefix, &base);
	if (!ipam_addr_equal(&base, &f->last_block)) {
		free(f->last_aff);
		f->last_aff = NULL;
		memset(&f->last_block, 0, sizeof f->last_block);
		if ((rv = block_affinity(f->tx, &base, &f->last_aff)) != 0) {
			ipam_ip_clear(&rec);
			return rv;
		}
		f->last_block = base;
	}
	fill_alloc(&a, &addr, &rec, f->last_aff, attrs);
	rv = f->fn(f->arg, &a);
	ipam_ip_clear(&rec);
	if (rv != 0) {
		f->stopped = rv; /* any value, even 1, which kv_tx_scan would take for "stop" */
		return 1;
	}
	return 0;
}

int ipam_foreach_alloc(struct kv_tx *tx, ipam_alloc_fn fn, void *arg)
{
	struct foreach_ctx f = {.tx = tx, .fn = fn, .arg = arg};
	uint8_t k[IPAM_KEY_MAX];
	int rv = scan(tx, k, ipam_prefix_ips(k), foreach_cb, &f);
	free(f.last_aff);
	return rv != 0 ? rv : f.stopped;
}

/* Whether key is longer than the n-byte prefix p and starts with it. */
static bool under(const uint8_t *key, size_t klen, const uint8_t *p, size_t n)
{
	return klen > n && memcmp(key, p, n) == 0;
}

int ipam_change_decode(const uint8_t *key, size_t klen, const uint8_t *value, size_t vlen,
                       struct ipam_change *out)
{
	uint8_t p[IPAM_KEY_MAX];
	size_t n;
	bool oom = false;
	memset(out, 0, sizeof *out);
	if (under(key, klen, p, n = ipam_prefix_handles(p))) {
		out->kind = IPAM_CHANGE_HANDLE;
		if (klen - n > IPAM_NAME_MAX) {
			return -EBADMSG;
		}
		memcpy(out->name, key + n, klen - n);
		out->name[klen - n] = 0;
		return 0;
	}
	if (under(key, klen, p, n = ipam_prefix_ips(p))) {
		out->kind = IPAM_CHANGE_IP;
	} else if (under(key, klen, p, n = ipam_prefix_blocks(p, 0))) {
		out->kind = IPAM_CHANGE_BLOCK;
	} else {
		out->kind = IPAM_CHANGE_OTHER;
		return 0;
	}
	/* An address or a block record: the address at the key's end, then the record, if any. */
	if (!ipam_key_tail_addr(key, klen, &out->addr)) {
		return -EBADMSG;
	}
	if (vlen == 0) {
		return 0;
	}
	if (out->kind == IPAM_CHANGE_IP) {
		struct ipam_ip_rec rec;
		if (!ipam_ip_decode(value, vlen, &rec, &oom)) {
			return oom ? -ENOMEM : -EBADMSG;
		}
		out->block.prefix = rec.block_prefix;
		ipam_addr_mask(&out->addr, rec.block_prefix, &out->block.addr);
		snprintf(out->name, sizeof out->name, "%s", rec.node != NULL ? rec.node : "");
		ipam_ip_clear(&rec);
	} else {
		struct ipam_block *b = ipam_block_decode(value, vlen, &oom);
		if (b == NULL) {
			return oom ? -ENOMEM : -EBADMSG;
		}
		out->block = b->cidr;
		snprintf(out->name, sizeof out->name, "%s", b->affinity != NULL ? b->affinity : "");
		ipam_block_free(b);
	}
	out->has_record = true;
	return 0;
}

/* What ipam_lookup_ip's answer owns. */
struct lookup_mem {
	struct ipam_ip_rec rec;
	char *affinity;
	struct ipam_attr attrs[IPAM_ATTRS_MAX];
};

int ipam_lookup_ip(struct kv_tx *tx, const struct ipam_addr *a, bool *found, struct ipam_alloc *out)
{
	uint8_t k[IPAM_KEY_MAX];
	struct lookup_mem *m;
	struct ipam_addr base;
	struct kv_bytes v;
	bool oom = false;
	int rc;

	*found = false;
	memset(out, 0, sizeof *out);
	rc = kv_tx_get(tx, KV_SPACE_DOMAIN, kb(k, ipam_key_ip(k, a)), &v);
	if (rc == KV_ENOTFOUND) {
		return 0;
	}
	if (rc != KV_OK) {
		return kv_err(rc);
	}
	m = calloc(1, sizeof *m);
	if (m == NULL) {
		return -ENOMEM;
	}
	if (!ipam_ip_decode(v.data, v.len, &m->rec, &oom)) {
		free(m);
		return oom ? -ENOMEM : -EBADMSG;
	}
	ipam_addr_mask(a, m->rec.block_prefix, &base);
	if ((rc = block_affinity(tx, &base, &m->affinity)) != 0) {
		ipam_ip_clear(&m->rec);
		free(m);
		return rc;
	}
	fill_alloc(out, a, &m->rec, m->affinity, m->attrs);
	out->mem = m;
	*found = true;
	return 0;
}

void ipam_alloc_free(struct ipam_alloc *a)
{
	struct lookup_mem *m = a->mem;
	if (m != NULL) {
		ipam_ip_clear(&m->rec);
		free(m->affinity);
		free(m);
	}
	memset(a, 0, sizeof *a);
}

int ipam_handle_addrs(struct kv_tx *tx, const char *handle, struct ipam_assigned **addrs,
                      unsigned *n)
{
	uint8_t k[IPAM_KEY_MAX];
	struct ipam_handle_entry *e;
	struct pool_list pools;
	struct kv_bytes v;
	unsigned count;
	bool oom = false;
	int rc;

	*addrs = NULL;
	*n = 0;
	if (!ipam_name_ok(handle, IPAM_NAME_MAX, false)) {
		return 0;
	}
	rc = kv_tx_get(tx, KV_SPACE_DOMAIN, kb(k, ipam_key_handle(k, handle)), &v);
	if (rc == KV_ENOTFOUND) {
		return 0;
	}
	if (rc != KV_OK) {
		return kv_err(rc);
	}
	if (!ipam_handle_decode(v.data, v.len, &e, &count, &oom)) {
		return oom ? -ENOMEM : -EBADMSG;
	}
	if ((rc = load_pool_list(tx, &pools)) != 0) {
		free(e);
		return rc;
	}
	*addrs = calloc(count, sizeof **addrs);
	if (*addrs == NULL) {
		free(e);
		free(pools.p);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < count; i++) {
		const struct ipam_pool_rec *p = pool_for(&pools, &e[i].addr);
		(*addrs)[i].addr = e[i].addr;
		(*addrs)[i].gen = e[i].gen;
		(*addrs)[i].block.prefix =
		    p != NULL ? p->pool.block_size : (uint8_t)ipam_bits(e[i].addr.family);
		ipam_addr_mask(&e[i].addr, (*addrs)[i].block.prefix, &(*addrs)[i].block.addr);
	}
	*n = count;
	free(e);
	free(pools.p);
	return 0;
}

struct usage_ctx {
	const struct pool_list *pools;
	struct ipam_pool_usage *u;
};

static int usage_cb(void *arg, struct kv_bytes key, struct ipam_block *b)
{
	struct usage_ctx *c = arg;
	(void)key;
	for (unsigned i = 0; i < c->pools->n; i++) {
		if (ipam_cidr_contains(&c->pools->p[i].pool.cidr, &b->cidr.addr)) {
			c->u[i].in_use += ipam_block_used(b);
			c->u[i].blocks++;
			break;
		}
	}
	return 0;
}

int ipam_pool_usage(struct kv_tx *tx, struct ipam_pool_usage **usage, unsigned *n)
{
	struct pool_list pools;
	struct usage_ctx c;
	int rv;

	*usage = NULL;
	*n = 0;
	if ((rv = load_pool_list(tx, &pools)) != 0) {
		return rv;
	}
	c.pools = &pools;
	c.u = calloc(pools.n > 0 ? pools.n : 1, sizeof *c.u);
	if (c.u == NULL) {
		free(pools.p);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < pools.n; i++) {
		unsigned host =
		    ipam_bits(pools.p[i].pool.cidr.addr.family) - pools.p[i].pool.cidr.prefix;
		c.u[i].cidr = pools.p[i].pool.cidr;
		if (host >= 128) {
			/* 2^128 does not fit; no pool is that large in practice (::/0). */
			snprintf(c.u[i].total, sizeof c.u[i].total,
			         "340282366920938463463374607431768211456");
		} else {
			ipam_u128_format((u128)1 << host, c.u[i].total);
		}
	}
	rv = walk_blocks(tx, usage_cb, &c);
	if (rv != 0) {
		free(c.u);
		free(pools.p);
		return rv;
	}
	*usage = c.u;
	*n = pools.n;
	free(pools.p);
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Check                                                                                       */

struct seen_alloc {
	struct ipam_addr addr;
	int64_t gen;
	uint8_t prefix; /* of its block */
	char *handle;   /* from its ip record; NULL when there is none */
	bool listed;    /* found in its handle record */
};

struct check {
	struct kv_tx *tx;
	ipam_problem_fn fn;
	void *arg;
	unsigned problems;
	struct pool_list pools;
	uint64_t *pool_blocks; /* counted */
	struct seen_alloc *allocs;
	unsigned n_allocs, cap_allocs;
};

static void problem(struct check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct check *c, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	c->problems++;
	if (c->fn != NULL) {
		c->fn(c->arg, line);
	}
}

static bool index_has(struct check *c, const uint8_t *k, size_t n)
{
	struct kv_bytes v;
	return kv_tx_get(c->tx, KV_SPACE_DOMAIN, kb(k, n), &v) == KV_OK;
}

static int alloc_cmp(const void *x, const void *y)
{
	const struct seen_alloc *a = x, *b = y;
	return ipam_addr_cmp(&a->addr, &b->addr);
}

static int check_block(struct check *c, struct kv_bytes key, const struct ipam_block *b)
{
	char bs[IPAM_CIDR_STRLEN];
	uint8_t k[IPAM_KEY_MAX];
	const struct ipam_pool_rec *p = NULL;
	struct ipam_addr kaddr;
	unsigned pi;

	ipam_cidr_format(&b->cidr, bs);
	if (!ipam_key_tail_addr(key.data, key.len, &kaddr) ||
	    !ipam_addr_equal(&kaddr, &b->cidr.addr)) {
		problem(c, "block %s is stored under the key of another address", bs);
	}
	for (pi = 0; pi < c->pools.n; pi++) {
		if (ipam_cidr_contains(&c->pools.p[pi].pool.cidr, &b->cidr.addr)) {
			p = &c->pools.p[pi];
			c->pool_blocks[pi]++;
			break;
		}
	}
	if (p == NULL) {
		problem(c, "block %s is in no IP pool", bs);
	} else if (p->pool.block_size != b->cidr.prefix) {
		problem(c, "block %s has prefix /%u but its pool's block size is /%u", bs,
		        b->cidr.prefix, p->pool.block_size);
	}
	if (ipam_block_used(b) == 0 && b->affinity == NULL) {
		problem(c, "block %s is empty and has no affinity: it should have been deleted",
		        bs);
	}
	if (p != NULL && p->pool.removing && ipam_block_used(b) == 0) {
		problem(c, "block %s is empty in a pool being removed: it should have been deleted",
		        bs);
	}
	if (b->affinity != NULL && !index_has(c, k, ipam_key_aff(k, b->affinity, &b->cidr.addr))) {
		problem(c, "block %s is affine to %s but the affinity index does not list it", bs,
		        b->affinity);
	}
	if (b->affinity != NULL && b->n_free > 0 &&
	    !index_has(c, k, ipam_key_open(k, b->affinity, &b->cidr.addr))) {
		problem(c, "block %s has free addresses but is missing from %s's open-block index",
		        bs, b->affinity);
	}
	if (b->affinity != NULL && b->n_free == 0 &&
	    index_has(c, k, ipam_key_open(k, b->affinity, &b->cidr.addr))) {
		problem(c, "block %s is full but listed in %s's open-block index", bs, b->affinity);
	}
	for (uint32_t ord = 0; ord < b->size; ord++) {
		struct seen_alloc *s;
		if (b->gen[ord] == 0) {
			continue;
		}
		if (!ipam_grow((void **)&c->allocs, &c->cap_allocs, c->n_allocs,
		               sizeof *c->allocs)) {
			return -ENOMEM;
		}
		s = &c->allocs[c->n_allocs++];
		memset(s, 0, sizeof *s);
		ipam_block_addr(b, ord, &s->addr);
		s->gen = b->gen[ord];
		s->prefix = b->cidr.prefix;
	}
	return 0;
}

/* An ip record must describe an address its block holds, at the same generation. */
static int check_ip_cb(void *arg, struct kv_bytes key, struct kv_bytes value)
{
	struct check *c = arg;
	char as[IPAM_ADDR_STRLEN] = "?";
	struct seen_alloc want, *s;
	struct ipam_ip_rec rec;
	bool oom = false;

	if (!ipam_key_tail_addr(key.data, key.len, &want.addr)) {
		problem(c, "a malformed ip record key");
		return 0;
	}
	ipam_addr_format(&want.addr, as);
	if (!ipam_ip_decode(value.data, value.len, &rec, &oom)) {
		if (oom) {
			return -ENOMEM;
		}
		problem(c, "the record of %s is corrupt", as);
		return 0;
	}
	s = c->n_allocs > 0 ? bsearch(&want, c->allocs, c->n_allocs, sizeof *c->allocs, alloc_cmp)
	                    : NULL;
	if (s == NULL) {
		problem(c, "%s has a record (handle %s) but its block does not hold it", as,
		        rec.handle);
	} else if (s->gen != rec.gen) {
		problem(c, "%s is held at generation %lld by its block but %lld by its record", as,
		        (long long)s->gen, (long long)rec.gen);
	} else if (s->prefix != rec.block_prefix) {
		problem(c, "%s: its record names a /%u block, its block is a /%u", as,
		        rec.block_prefix, s->prefix);
	} else {
		s->handle = rec.handle; /* taken over */
		rec.handle = NULL;
	}
	ipam_ip_clear(&rec);
	return 0;
}

static int check_block_cb(void *arg, struct kv_bytes key, struct kv_bytes value)
{
	struct check *c = arg;
	bool oom = false;
	struct ipam_block *b = ipam_block_decode(value.data, value.len, &oom);
	int rv;

	if (b == NULL) {
		struct ipam_addr a;
		char as[IPAM_ADDR_STRLEN] = "?";
		if (oom) {
			return -ENOMEM;
		}
		if (ipam_key_tail_addr(key.data, key.len, &a)) {
			ipam_addr_format(&a, as);
		}
		problem(c, "the block record at %s is corrupt", as);
		return 0;
	}
	rv = check_block(c, key, b);
	ipam_block_free(b);
	return rv;
}

static int check_handle_cb(void *arg, struct kv_bytes key, struct kv_bytes value)
{
	struct check *c = arg;
	const char *prefix = "ipam/handle/";
	char handle[IPAM_NAME_MAX + 1], as[IPAM_ADDR_STRLEN];
	struct ipam_handle_entry *e;
	unsigned n;
	bool oom = false;
	size_t hl = key.len - strlen(prefix);

	if (hl > IPAM_NAME_MAX) {
		hl = IPAM_NAME_MAX;
	}
	memcpy(handle, key.data + strlen(prefix), hl);
	handle[hl] = '\0';
	if (!ipam_handle_decode(value.data, value.len, &e, &n, &oom)) {
		if (oom) {
			return -ENOMEM;
		}
		problem(c, "the record of handle %s is corrupt", handle);
		return 0;
	}
	for (unsigned i = 0; i < n; i++) {
		struct seen_alloc want = {.addr = e[i].addr};
		struct seen_alloc *s = c->n_allocs > 0 ? bsearch(&want, c->allocs, c->n_allocs,
		                                                 sizeof *c->allocs, alloc_cmp)
		                                       : NULL;
		ipam_addr_format(&e[i].addr, as);
		if (s == NULL) {
			problem(c, "handle %s lists %s, which is not assigned", handle, as);
		} else if (s->handle == NULL) {
			s->listed = true; /* its missing record is reported on its own */
		} else if (strcmp(s->handle, handle) != 0) {
			problem(c, "handle %s lists %s, which is assigned to handle %s", handle, as,
			        s->handle);
		} else if (s->gen != e[i].gen) {
			problem(
			    c,
			    "handle %s lists %s at generation %lld, but it is held at generation "
			    "%lld",
			    handle, as, (long long)e[i].gen, (long long)s->gen);
		} else if (s->listed) {
			problem(c, "handle %s lists %s twice", handle, as);
		} else {
			s->listed = true;
		}
	}
	free(e);
	return 0;
}

/* Index entries (affinity and open) must name a block affine to their host. */
static int check_index_cb(void *arg, struct kv_bytes key, struct kv_bytes value)
{
	struct check *c = arg;
	const char *kind = key.len > 9 && memcmp(key.data, "ipam/aff/", 9) == 0 ? "aff" : "open";
	size_t plen = strlen(kind) + 6; /* "ipam/" + kind + "/" */
	char host[IPAM_NAME_MAX + 1], bs[IPAM_ADDR_STRLEN];
	uint8_t k[IPAM_KEY_MAX];
	struct ipam_addr a;
	struct kv_bytes v;
	struct ipam_block *b;
	bool oom = false;
	size_t hl;
	int rc;
	(void)value;

	if (key.len < plen + 18 || !ipam_key_tail_addr(key.data, key.len, &a)) {
		problem(c, "a malformed %s index key", kind);
		return 0;
	}
	hl = key.len - plen - 18;
	if (hl > IPAM_NAME_MAX) {
		hl = IPAM_NAME_MAX;
	}
	memcpy(host, key.data + plen, hl);
	host[hl] = '\0';
	ipam_addr_format(&a, bs);
	rc = kv_tx_get(c->tx, KV_SPACE_DOMAIN, kb(k, ipam_key_block(k, &a)), &v);
	if (rc == KV_ENOTFOUND) {
		problem(c, "the %s index of %s lists block %s, which does not exist", kind, host,
		        bs);
		return 0;
	}
	if (rc != KV_OK) {
		return kv_err(rc);
	}
	b = ipam_block_decode(v.data, v.len, &oom);
	if (b == NULL) {
		return oom ? -ENOMEM : 0; /* reported by the block pass */
	}
	if (b->affinity == NULL || strcmp(b->affinity, host) != 0) {
		problem(c, "the %s index of %s lists block %s, which is affine to %s", kind, host,
		        bs, b->affinity != NULL ? b->affinity : "no node");
	}
	ipam_block_free(b);
	return 0;
}

int ipam_check(struct kv_tx *tx, ipam_problem_fn fn, void *arg, unsigned *problems)
{
	struct check c = {.tx = tx, .fn = fn, .arg = arg};
	uint8_t k[IPAM_KEY_MAX];
	char ps[IPAM_CIDR_STRLEN], qs[IPAM_CIDR_STRLEN], as[IPAM_ADDR_STRLEN];
	int rv;

	*problems = 0;
	if ((rv = load_pool_list(tx, &c.pools)) != 0) {
		if (rv != -EBADMSG) {
			return rv;
		}
		problem(&c, "a pool record is corrupt");
		*problems = c.problems;
		return 0;
	}
	c.pool_blocks = calloc(c.pools.n > 0 ? c.pools.n : 1, sizeof *c.pool_blocks);
	if (c.pool_blocks == NULL) {
		free(c.pools.p);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < c.pools.n; i++) {
		for (unsigned j = 0; j < i; j++) {
			if (ipam_cidr_overlap(&c.pools.p[i].pool.cidr, &c.pools.p[j].pool.cidr)) {
				problem(&c, "pools %s and %s overlap",
				        ipam_cidr_format(&c.pools.p[j].pool.cidr, ps),
				        ipam_cidr_format(&c.pools.p[i].pool.cidr, qs));
			}
		}
	}
	rv = scan(tx, k, ipam_prefix_blocks(k, 0), check_block_cb, &c);
	if (rv == 0) {
		for (unsigned i = 0; i < c.pools.n; i++) {
			const struct ipam_pool_rec *p = &c.pools.p[i];
			ipam_cidr_format(&p->pool.cidr, ps);
			if (p->blocks != c.pool_blocks[i]) {
				problem(&c, "pool %s counts %llu blocks but has %llu", ps,
				        (unsigned long long)p->blocks,
				        (unsigned long long)c.pool_blocks[i]);
			}
			if (p->pool.removing && c.pool_blocks[i] == 0) {
				problem(&c,
				        "pool %s is being removed and holds no address: it should "
				        "have been deleted",
				        ps);
			}
		}
		if (c.n_allocs > 0) {
			qsort(c.allocs, c.n_allocs, sizeof *c.allocs, alloc_cmp);
		}
		rv = scan(tx, k, ipam_prefix_ips(k), check_ip_cb, &c);
	}
	for (unsigned i = 0; rv == 0 && i < c.n_allocs; i++) {
		if (c.allocs[i].handle == NULL) {
			problem(&c, "%s is held by its block but has no record of who holds it",
			        ipam_addr_format(&c.allocs[i].addr, as));
		}
	}
	if (rv == 0) {
		rv = scan(tx, k, ipam_prefix_handles(k), check_handle_cb, &c);
	}
	for (unsigned i = 0; rv == 0 && i < c.n_allocs; i++) {
		if (c.allocs[i].handle != NULL && !c.allocs[i].listed) {
			problem(&c, "%s (handle %s) is missing from its handle's record",
			        ipam_addr_format(&c.allocs[i].addr, as), c.allocs[i].handle);
		}
	}
	if (rv == 0) {
		rv = scan(tx, k, ipam_prefix_aff(k, NULL, 0), check_index_cb, &c);
	}
	if (rv == 0) {
		rv = scan(tx, k, ipam_prefix_open(k, NULL, 0), check_index_cb, &c);
	}
	for (unsigned i = 0; i < c.n_allocs; i++) {
		free(c.allocs[i].handle);
	}
	free(c.allocs);
	free(c.pool_blocks);
	free(c.pools.p);
	*problems = c.problems;
	return rv;
}
