/*
 * The IPAM domain command: every change to pools, blocks, affinities and handles, decided inside
 * the replicated state machine.
 *
 * A command works on a private working set: the records it touches are decoded once into a
 * cache (pools all at the start, blocks and handles on first use), changed in memory, and
 * written back together at the end, keeping the affinity indexes in step with the blocks. A
 * refusal anywhere simply drops the working set; the store discards nothing because nothing was
 * written. Reads of the store (index scans) see the state before the command, so every scan
 * consults the cache for records the command already changed.
 *
 * Assignment follows Calico (calico-behaviour.md 2.5-2.7):
 *   1. the host's affine blocks with room, in address order (one index scan);
 *   2. claim free blocks, walking each pool's block grid from a start drawn from a hash of the
 *      host name, so one host keeps coming back to the same region and hosts spread apart;
 *   3. unless strict affinity is on, borrow from any block with room, walking the existing blocks
 *      from the same start.
 * Unlike Calico, an assignment that cannot be satisfied in full assigns nothing and says how many
 * addresses were free, so a caller never has to undo a partial answer.
 *
 * Every address assigned by a command carries the command's store revision as its generation.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipam/internal.h"

/* Return values inside this file: 0 done, REFUSED (the reply says why), a negative host failure
 * (-KV_ENOMEM, -KV_EIO), or CORRUPT: a stored record does not decode. CORRUPT travels like a
 * failure, so every path gives up at once, and ipam_apply() turns it into a refusal: the same
 * record is in every replica, and a replica that stopped on it would stop again at each replay. */
#define REFUSED 1
#define NOMEM   (-KV_ENOMEM)
#define EIOERR  (-KV_EIO)
#define CORRUPT (-1000)

struct bentry {
	struct ipam_addr base;
	struct ipam_block *blk; /* NULL once deleted */
	bool existed;           /* a record existed before the command */
	char *orig_aff;         /* affinity before the command (NULL: none) */
	bool orig_open;         /* in the open index before the command */
	bool dirty;
	int pool; /* index in ctx->pools */
};

struct hentry {
	char *handle;
	struct ipam_handle_entry *e;
	unsigned n, cap;
	bool dirty;
};

struct pentry {
	struct ipam_pool_rec rec;
	bool existed, dirty, deleted;
};

struct ctx {
	struct kv_tx *tx;
	const struct ipam_hooks *hooks; /* NULL: every selector selects every node */
	int64_t gen;
	uint64_t now;
	struct ipam_config cfg;
	bool cfg_dirty;
	struct pentry *pools;
	unsigned n_pools, cap_pools;
	struct bentry *blocks;
	unsigned n_blocks, cap_blocks;
	struct hentry *handles;
	unsigned n_handles, cap_handles;
	struct ipam_reply rep;
	unsigned cap_addrs;
};

static int refuse(struct ctx *c, uint8_t error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(struct ctx *c, uint8_t error, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	ipam_text_repair(msg); /* it quotes names, and the agent sends it on as JSON */
	free(c->rep.message);
	c->rep.error = error;
	c->rep.message = strdup(msg);
	return c->rep.message != NULL ? REFUSED : NOMEM;
}

static int host_err(int kv_rc)
{
	return kv_rc == KV_ENOMEM ? NOMEM : EIOERR;
}

static struct kv_bytes kb(const uint8_t *p, size_t n)
{
	struct kv_bytes b = {p, n};
	return b;
}

static struct kv_bytes kstr(const char *s)
{
	struct kv_bytes b = {(const uint8_t *)s, strlen(s)};
	return b;
}

static const char *family_name(uint8_t fam)
{
	return fam == 4 ? "IPv4" : "IPv6";
}

/* kv_tx_scan over the DOMAIN keyspace. The callbacks here return 0, 1 (stop), NOMEM or CORRUPT;
 * those pass through, and a store failure (a positive KV_ code) becomes NOMEM or EIOERR. */
static int scan(struct ctx *c, struct kv_bytes prefix, struct kv_bytes from, kv_scan_fn fn,
                void *arg)
{
	int rv = kv_tx_scan(c->tx, KV_SPACE_DOMAIN, prefix, from, fn, arg);
	return rv <= 0 ? rv : host_err(rv);
}

/* ------------------------------------------------------------------------------------------ */
/* Pools                                                                                       */

static int pools_scan_cb(void *arg, struct kv_bytes key, struct kv_bytes value)
{
	struct ctx *c = arg;
	struct pentry *p;
	(void)key;
	if (!ipam_grow((void **)&c->pools, &c->cap_pools, c->n_pools, sizeof *c->pools)) {
		return NOMEM;
	}
	p = &c->pools[c->n_pools];
	memset(p, 0, sizeof *p);
	if (!ipam_pool_decode(value.data, value.len, &p->rec)) {
		return CORRUPT;
	}
	p->existed = true;
	c->n_pools++;
	return 0;
}

static int load_pools(struct ctx *c)
{
	uint8_t k[IPAM_KEY_MAX];
	size_t n = ipam_prefix_pools(k);
	return scan(c, kb(k, n), kb(NULL, 0), pools_scan_cb, c);
}

/* The live pool containing a, or -1. */
static int pool_of_addr(struct ctx *c, const struct ipam_addr *a)
{
	for (unsigned i = 0; i < c->n_pools; i++) {
		if (!c->pools[i].deleted && ipam_cidr_contains(&c->pools[i].rec.pool.cidr, a)) {
			return (int)i;
		}
	}
	return -1;
}

static int pool_exact(struct ctx *c, const struct ipam_cidr *cidr)
{
	for (unsigned i = 0; i < c->n_pools; i++) {
		if (!c->pools[i].deleted && ipam_cidr_equal(&c->pools[i].rec.pool.cidr, cidr)) {
			return (int)i;
		}
	}
	return -1;
}

static bool pool_usable(const struct pentry *p)
{
	return !p->deleted && !p->rec.pool.disabled && !p->rec.pool.removing;
}

static unsigned host_bits_of_block(const struct ipam_pool *p)
{
	return ipam_bits(p->cidr.addr.family) - p->block_size;
}

/* Number of block-aligned slots in a pool: 2^(block_size - prefix). */
static u128 pool_nblocks(const struct ipam_pool *p)
{
	unsigned k = p->block_size - p->cidr.prefix;
	return k >= 128 ? ~(u128)0 : (u128)1 << k;
}

static void pool_block_base(const struct ipam_pool *p, u128 index, struct ipam_addr *out)
{
	ipam_addr_from_value(p->cidr.addr.family,
	                     ipam_addr_value(&p->cidr.addr) + (index << host_bits_of_block(p)),
	                     out);
}

static u128 pool_block_index(const struct ipam_pool *p, const struct ipam_addr *base)
{
	return (ipam_addr_value(base) - ipam_addr_value(&p->cidr.addr)) >> host_bits_of_block(p);
}

/* ------------------------------------------------------------------------------------------ */
/* Blocks                                                                                      */

static bool is_open(const struct ipam_block *b)
{
	return b != NULL && b->affinity != NULL && b->n_free > 0;
}

static struct bentry *cached_block(struct ctx *c, const struct ipam_addr *base)
{
	for (unsigned i = 0; i < c->n_blocks; i++) {
		if (ipam_addr_equal(&c->blocks[i].base, base)) {
			return &c->blocks[i];
		}
	}
	return NULL;
}

/* Decode a stored block into the cache (the caller checked it is not cached). */
static int cache_block(struct ctx *c, const struct ipam_addr *base, struct kv_bytes value,
                       struct bentry **out)
{
	struct bentry *e;
	bool oom = false;
	struct ipam_block *blk = ipam_block_decode(value.data, value.len, &oom);

	if (blk == NULL) {
		return oom ? NOMEM : CORRUPT;
	}
	if (!ipam_addr_equal(&blk->cidr.addr, base) ||
	    !ipam_grow((void **)&c->blocks, &c->cap_blocks, c->n_blocks, sizeof *c->blocks)) {
		bool bad = !ipam_addr_equal(&blk->cidr.addr, base);
		ipam_block_free(blk);
		return bad ? CORRUPT : NOMEM;
	}
	e = &c->blocks[c->n_blocks];
	memset(e, 0, sizeof *e);
	e->pool = pool_of_addr(c, base);
	/* Callers find a block by masking an address with its pool's block size and index the
	 * block's ordinals from there: a block of another size would send them out of bounds, and
	 * a larger one would overlap blocks of the right size. ipam_check reports it too. */
	if (e->pool >= 0 && blk->cidr.prefix != c->pools[e->pool].rec.pool.block_size) {
		ipam_block_free(blk);
		return CORRUPT;
	}
	e->base = *base;
	e->blk = blk;
	e->existed = true;
	e->orig_open = is_open(blk);
	if (blk->affinity != NULL && (e->orig_aff = strdup(blk->affinity)) == NULL) {
		ipam_block_free(blk);
		return NOMEM;
	}
	c->n_blocks++;
	*out = e;
	return 0;
}

/* The block at base: *out is its cache entry (with blk NULL if it does not exist). */
static int get_block(struct ctx *c, const struct ipam_addr *base, struct bentry **out)
{
	uint8_t k[IPAM_KEY_MAX];
	struct kv_bytes v;
	int rc;

	*out = cached_block(c, base);
	if (*out != NULL) {
		return 0;
	}
	rc = kv_tx_get(c->tx, KV_SPACE_DOMAIN, kb(k, ipam_key_block(k, base)), &v);
	if (rc == KV_ENOTFOUND) {
		return 0;
	}
	if (rc != KV_OK) {
		return host_err(rc);
	}
	return cache_block(c, base, v, out);
}

/* Create a block (none exists at base) affine to host in pool pi. */
static int create_block(struct ctx *c, int pi, const struct ipam_addr *base, const char *host,
                        struct bentry **out)
{
	struct ipam_pool *p = &c->pools[pi].rec.pool;
	struct ipam_cidr cidr = {*base, p->block_size};
	struct bentry *e = cached_block(c, base);

	if (e == NULL) {
		if (!ipam_grow((void **)&c->blocks, &c->cap_blocks, c->n_blocks,
		               sizeof *c->blocks)) {
			return NOMEM;
		}
		e = &c->blocks[c->n_blocks++];
		memset(e, 0, sizeof *e);
		e->base = *base;
	}
	e->blk = ipam_block_new(&cidr, host);
	if (e->blk == NULL) {
		return NOMEM;
	}
	e->pool = pi;
	e->dirty = true;
	c->pools[pi].rec.blocks++;
	c->pools[pi].dirty = true;
	*out = e;
	return 0;
}

static void delete_block(struct ctx *c, struct bentry *e)
{
	ipam_block_free(e->blk);
	e->blk = NULL;
	e->dirty = true;
	if (e->pool >= 0) {
		if (c->pools[e->pool].rec.blocks > 0) { /* 0 would be corrupt: never wrap */
			c->pools[e->pool].rec.blocks--;
		}
		c->pools[e->pool].dirty = true;
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Handles                                                                                     */

static int get_handle(struct ctx *c, const char *handle, struct hentry **out)
{
	uint8_t k[IPAM_KEY_MAX];
	struct kv_bytes v;
	struct hentry *h;
	bool oom = false;
	int rc;

	for (unsigned i = 0; i < c->n_handles; i++) {
		if (strcmp(c->handles[i].handle, handle) == 0) {
			*out = &c->handles[i];
			return 0;
		}
	}
	if (!ipam_grow((void **)&c->handles, &c->cap_handles, c->n_handles, sizeof *c->handles)) {
		return NOMEM;
	}
	h = &c->handles[c->n_handles];
	memset(h, 0, sizeof *h);
	if ((h->handle = strdup(handle)) == NULL) {
		return NOMEM;
	}
	c->n_handles++;
	rc = kv_tx_get(c->tx, KV_SPACE_DOMAIN, kb(k, ipam_key_handle(k, handle)), &v);
	if (rc == KV_OK) {
		if (!ipam_handle_decode(v.data, v.len, &h->e, &h->n, &oom)) {
			return oom ? NOMEM : CORRUPT;
		}
		h->cap = h->n;
	} else if (rc != KV_ENOTFOUND) {
		return host_err(rc);
	}
	*out = h;
	return 0;
}

static int handle_add(struct ctx *c, const char *handle, const struct ipam_addr *a, int64_t gen)
{
	struct hentry *h;
	int rv = get_handle(c, handle, &h);
	if (rv != 0) {
		return rv;
	}
	if (!ipam_grow((void **)&h->e, &h->cap, h->n, sizeof *h->e)) {
		return NOMEM;
	}
	h->e[h->n].addr = *a;
	h->e[h->n].gen = gen;
	h->n++;
	h->dirty = true;
	return 0;
}

static int handle_remove(struct ctx *c, const char *handle, const struct ipam_addr *a, int64_t gen)
{
	struct hentry *h;
	int rv = get_handle(c, handle, &h);
	if (rv != 0) {
		return rv;
	}
	for (unsigned i = 0; i < h->n; i++) {
		if (h->e[i].gen == gen && ipam_addr_equal(&h->e[i].addr, a)) {
			memmove(&h->e[i], &h->e[i + 1], (h->n - i - 1) * sizeof *h->e);
			h->n--;
			h->dirty = true;
			return 0;
		}
	}
	return 0; /* not listed: ipam_check reports such a record; releasing must still work */
}

/* ------------------------------------------------------------------------------------------ */
/* Assigning and releasing one address                                                         */

static int reply_add(struct ctx *c, const struct ipam_addr *a, int64_t gen,
                     const struct ipam_cidr *block)
{
	if (!ipam_grow((void **)&c->rep.addrs, &c->cap_addrs, c->rep.n_addrs,
	               sizeof *c->rep.addrs)) {
		return NOMEM;
	}
	c->rep.addrs[c->rep.n_addrs].addr = *a;
	c->rep.addrs[c->rep.n_addrs].gen = gen;
	c->rep.addrs[c->rep.n_addrs].block = *block;
	c->rep.n_addrs++;
	return 0;
}

/* The ip record of an assigned address (*found false if there is none: ipam_check reports
 * that; releasing must still work). */
static int get_ip(struct ctx *c, const struct ipam_addr *a, struct ipam_ip_rec *rec, bool *found)
{
	uint8_t k[IPAM_KEY_MAX];
	struct kv_bytes v;
	bool oom = false;
	int rc = kv_tx_get(c->tx, KV_SPACE_DOMAIN, kb(k, ipam_key_ip(k, a)), &v);

	*found = false;
	memset(rec, 0, sizeof *rec);
	if (rc == KV_ENOTFOUND) {
		return 0;
	}
	if (rc != KV_OK) {
		return host_err(rc);
	}
	if (!ipam_ip_decode(v.data, v.len, rec, &oom)) {
		/* A release must not free the address and leave the record and its handle's
		 * reference behind: the handle could never be released again. */
		return oom ? NOMEM : CORRUPT;
	}
	*found = true;
	return 0;
}

static int assign_ordinal(struct ctx *c, struct bentry *e, uint32_t ord,
                          const struct ipam_request *q)
{
	struct ipam_block *b = e->blk;
	struct ipam_buf buf = {0};
	uint8_t k[IPAM_KEY_MAX];
	struct ipam_addr a;
	int rc, rv;

	b->gen[ord] = c->gen;
	e->dirty = true;
	ipam_block_addr(b, ord, &a);
	ipam_ip_encode(&buf, c->gen, c->now, b->cidr.prefix, q->handle, q->node, q->attrs,
	               q->n_attrs);
	if (buf.oom) {
		free(buf.data);
		return NOMEM;
	}
	rc = kv_tx_put(c->tx, KV_SPACE_DOMAIN, kb(k, ipam_key_ip(k, &a)), kb(buf.data, buf.len));
	free(buf.data);
	if (rc != KV_OK) {
		return host_err(rc);
	}
	if ((rv = handle_add(c, q->handle, &a, c->gen)) != 0) {
		return rv;
	}
	return reply_add(c, &a, c->gen, &b->cidr);
}

static int release_ordinal(struct ctx *c, struct bentry *e, uint32_t ord)
{
	struct ipam_block *b = e->blk;
	uint8_t k[IPAM_KEY_MAX];
	struct ipam_ip_rec rec;
	struct ipam_addr a;
	int64_t gen = b->gen[ord];
	bool found;
	int rc, rv;

	ipam_block_addr(b, ord, &a);
	if ((rv = get_ip(c, &a, &rec, &found)) != 0) {
		return rv;
	}
	if (found) {
		rv = handle_remove(c, rec.handle, &a, gen);
		ipam_ip_clear(&rec);
		if (rv != 0) {
			return rv;
		}
		if ((rc = kv_tx_del(c->tx, KV_SPACE_DOMAIN, kb(k, ipam_key_ip(k, &a)))) != KV_OK) {
			return host_err(rc);
		}
	}
	b->gen[ord] = 0;
	ipam_block_put_back(b, ord);
	e->dirty = true;
	c->rep.count++;
	return reply_add(c, &a, gen, &b->cidr);
}

/* After releases: delete blocks left empty with no affinity (Calico) or in a pool being
 * removed, and the removing pools that hold no address any more. */
static int tidy(struct ctx *c)
{
	for (unsigned i = 0; i < c->n_blocks; i++) {
		struct bentry *e = &c->blocks[i];
		bool removing = e->pool >= 0 && c->pools[e->pool].rec.pool.removing;
		if (e->blk != NULL && e->dirty && ipam_block_used(e->blk) == 0 &&
		    (e->blk->affinity == NULL || removing)) {
			delete_block(c, e);
		}
	}
	for (unsigned i = 0; i < c->n_pools; i++) {
		struct pentry *p = &c->pools[i];
		if (!p->deleted && p->rec.pool.removing && p->rec.blocks == 0) {
			p->deleted = true;
			p->dirty = true;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Walking a pool's blocks                                                                     */

/* splitmix64's finalizer: spreads the FNV hash of a host name over all 64 bits. */
static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static u128 host_start(const char *host, u128 nblocks)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (const char *p = host; *p != '\0'; p++) {
		h ^= (uint8_t)*p;
		h *= 0x100000001b3ULL;
	}
	u128 seed = ((u128)mix64(h) << 64) | mix64(h ^ 0x9e3779b97f4a7c15ULL);
	return seed % nblocks;
}

/* State of a scan for the first free slot at or after cand. */
struct gap_scan {
	struct ctx *c;
	const struct ipam_pool *pool;
	u128 cand, nblocks;
};

static int gap_cb(void *arg, struct kv_bytes key, struct kv_bytes value)
{
	struct gap_scan *g = arg;
	struct ipam_addr base;
	struct bentry *e;
	u128 idx;
	(void)value;

	if (!ipam_key_tail_addr(key.data, key.len, &base) ||
	    !ipam_cidr_contains(&g->pool->cidr, &base)) {
		return 1; /* past the pool */
	}
	idx = pool_block_index(g->pool, &base);
	if (idx != g->cand) {
		return 1; /* a gap: cand has no record */
	}
	e = cached_block(g->c, &base);
	if (e != NULL && e->blk == NULL) {
		return 1; /* deleted by this command: free */
	}
	g->cand++;
	return g->cand < g->nblocks ? 0 : 1;
}

/* The first slot in [from, limit) with no block, or limit. Blocks created by this command are
 * not in the store yet: skip them through the cache. */
static int first_free_slot(struct ctx *c, int pi, u128 from, u128 limit, u128 *out)
{
	const struct ipam_pool *p = &c->pools[pi].rec.pool;
	uint8_t k[IPAM_KEY_MAX], pk[IPAM_KEY_MAX];
	struct gap_scan g = {c, p, from, pool_nblocks(p)};
	size_t pn = ipam_prefix_blocks(pk, p->cidr.addr.family);

	while (g.cand < limit) {
		struct ipam_addr base;
		struct bentry *e;
		int rv;

		pool_block_base(p, g.cand, &base);
		if ((rv = scan(c, kb(pk, pn), kb(k, ipam_key_block(k, &base)), gap_cb, &g)) != 0) {
			return rv;
		}
		if (g.cand >= limit) {
			break;
		}
		pool_block_base(p, g.cand, &base);
		e = cached_block(c, &base);
		if (e == NULL || e->blk == NULL) {
			break;
		}
		g.cand++; /* created by this command */
	}
	*out = g.cand < limit ? g.cand : limit;
	return 0;
}

/* Claim a free block of pool pi for host; *out NULL when the pool has none left. */
static int claim_block(struct ctx *c, int pi, const char *host, struct bentry **out)
{
	const struct ipam_pool *p = &c->pools[pi].rec.pool;
	u128 n = pool_nblocks(p), start, slot;
	struct ipam_addr base;
	int rv;

	*out = NULL;
	if ((u128)c->pools[pi].rec.blocks >= n) {
		return 0;
	}
	start = host_start(host, n);
	if ((rv = first_free_slot(c, pi, start, n, &slot)) != 0) {
		return rv;
	}
	if (slot == n) { /* wrap around once */
		if ((rv = first_free_slot(c, pi, 0, start, &slot)) != 0) {
			return rv;
		}
		if (slot == start) {
			return 0;
		}
	}
	pool_block_base(p, slot, &base);
	return create_block(c, pi, &base, host, out);
}

/* ------------------------------------------------------------------------------------------ */
/* Assignment                                                                                  */

struct key_list {
	struct ipam_addr *a;
	unsigned n, cap;
	const struct ipam_pool *pool; /* collect only blocks of this pool (NULL: any) */
	const char *node;             /* collect_node_cb: ip records of this node */
};

static int collect_cb(void *arg, struct kv_bytes key, struct kv_bytes value)
{
	struct key_list *l = arg;
	struct ipam_addr a;
	(void)value;
	if (!ipam_key_tail_addr(key.data, key.len, &a)) {
		return CORRUPT;
	}
	if (l->pool != NULL && !ipam_cidr_contains(&l->pool->cidr, &a)) {
		return 1;
	}
	if (!ipam_grow((void **)&l->a, &l->cap, l->n, sizeof *l->a)) {
		return NOMEM;
	}
	l->a[l->n++] = a;
	return 0;
}

/* Collect the ip records assigned for l->node. */
static int collect_node_cb(void *arg, struct kv_bytes key, struct kv_bytes value)
{
	struct key_list *l = arg;
	struct ipam_ip_rec rec;
	bool oom = false, match;

	if (!ipam_ip_decode(value.data, value.len, &rec, &oom)) {
		return oom ? NOMEM : 0; /* corrupt: ipam_check reports it */
	}
	match = strcmp(rec.node, l->node) == 0;
	ipam_ip_clear(&rec);
	return match ? collect_cb(arg, key, value) : 0;
}

static bool node_selected(struct ctx *c, const struct pentry *p, const char *node)
{
	return p->rec.pool.node_selector[0] == '\0' || c->hooks == NULL ||
	       c->hooks->node_selected(c->hooks->arg, c->tx, p->rec.pool.node_selector, node);
}

/* Whether the request names pool p among its pools, or names none. */
static bool pool_requested(const struct pentry *p, const struct ipam_request *q)
{
	if (q->n_cidrs == 0) {
		return true;
	}
	for (unsigned i = 0; i < q->n_cidrs; i++) {
		if (ipam_cidr_equal(&q->cidrs[i], &p->rec.pool.cidr)) {
			return true;
		}
	}
	return false;
}

static bool pool_allowed(struct ctx *c, int pi, const struct ipam_request *q, uint8_t fam)
{
	const struct pentry *p = &c->pools[pi];
	return pool_usable(p) && p->rec.pool.cidr.addr.family == fam &&
	       node_selected(c, p, q->node) && pool_requested(p, q);
}

static int take_from(struct ctx *c, struct bentry *e, const struct ipam_request *q, uint32_t *need)
{
	while (*need > 0 && e->blk->n_free > 0) {
		int rv = assign_ordinal(c, e, ipam_block_take_head(e->blk), q);
		if (rv != 0) {
			return rv;
		}
		(*need)--;
	}
	return 0;
}

/* The addresses of the blocks of pool p that exist in the store, in address order (l->pool is
 * p, which ends the scan at the pool's end). */
static int pool_block_keys(struct ctx *c, const struct ipam_pool *p, struct key_list *l)
{
	uint8_t pk[IPAM_KEY_MAX], k[IPAM_KEY_MAX];
	size_t pn = ipam_prefix_blocks(pk, p->cidr.addr.family);
	return scan(c, kb(pk, pn), kb(k, ipam_key_block(k, &p->cidr.addr)), collect_cb, l);
}

/* Borrow from the existing blocks of pool pi, walking from the host's start. */
static int borrow(struct ctx *c, int pi, const struct ipam_request *q, uint32_t *need)
{
	const struct ipam_pool *p = &c->pools[pi].rec.pool;
	struct key_list l = {NULL, 0, 0, p, NULL};
	struct ipam_addr base;
	unsigned first = 0;
	int rv;

	if ((rv = pool_block_keys(c, p, &l)) != 0) {
		free(l.a);
		return rv;
	}
	pool_block_base(p, host_start(q->node, pool_nblocks(p)), &base);
	while (first < l.n && ipam_addr_cmp(&l.a[first], &base) < 0) {
		first++;
	}
	for (unsigned i = 0; i<l.n && * need> 0 && rv == 0; i++) {
		struct bentry *e;
		rv = get_block(c, &l.a[(first + i) % l.n], &e);
		if (rv == 0 && e != NULL && e->blk != NULL) {
			rv = take_from(c, e, q, need);
		}
	}
	free(l.a);
	return rv;
}

static int auto_assign(struct ctx *c, const struct ipam_request *q, uint8_t fam, uint32_t num)
{
	uint8_t pk[IPAM_KEY_MAX];
	size_t pn;
	struct key_list l = {NULL, 0, 0, NULL, NULL};
	uint32_t need = num;
	bool any = false;
	int rv;

	if (num == 0) {
		return 0;
	}
	for (unsigned i = 0; i < c->n_pools; i++) {
		any = any || pool_allowed(c, (int)i, q, fam);
	}
	if (!any) {
		bool excluded = false;
		for (unsigned i = 0; i < c->n_pools; i++) {
			const struct pentry *p = &c->pools[i];
			excluded =
			    excluded || (pool_usable(p) && p->rec.pool.cidr.addr.family == fam &&
			                 !node_selected(c, p, q->node));
		}
		return refuse(c, IPAM_E_EXHAUSTED, "no enabled %s pool to assign from%s%s%s",
		              family_name(fam), q->n_cidrs > 0 ? " among the requested pools" : "",
		              excluded ? " whose node selector selects node " : "",
		              excluded ? q->node : "");
	}
	/* 1. This host's affine blocks with room. */
	pn = ipam_prefix_open(pk, q->node, fam);
	if ((rv = scan(c, kb(pk, pn), kb(NULL, 0), collect_cb, &l)) != 0) {
		free(l.a);
		return rv;
	}
	for (unsigned i = 0; i < l.n && need > 0 && rv == 0; i++) {
		struct bentry *e;
		rv = get_block(c, &l.a[i], &e);
		if (rv == 0 && e != NULL && e->blk != NULL && e->pool >= 0 &&
		    pool_allowed(c, e->pool, q, fam) && e->blk->affinity != NULL &&
		    strcmp(e->blk->affinity, q->node) == 0) {
			rv = take_from(c, e, q, &need);
		}
	}
	free(l.a);
	/* 2. Claim new blocks, pool by pool in address order. */
	for (unsigned i = 0; i < c->n_pools && need > 0 && rv == 0; i++) {
		while (need > 0 && rv == 0 && pool_allowed(c, (int)i, q, fam)) {
			struct bentry *e;
			rv = claim_block(c, (int)i, q->node, &e);
			if (rv != 0 || e == NULL) {
				break;
			}
			rv = take_from(c, e, q, &need);
		}
	}
	/* 3. Borrow. */
	for (unsigned i = 0; i < c->n_pools && need > 0 && rv == 0 && !c->cfg.strict_affinity;
	     i++) {
		if (pool_allowed(c, (int)i, q, fam)) {
			rv = borrow(c, (int)i, q, &need);
		}
	}
	if (rv != 0) {
		return rv;
	}
	if (need > 0) {
		/* Name the pools that were searched, as far as a line allows. */
		char pools[256] = "", cs[IPAM_CIDR_STRLEN];
		size_t len = 0;
		for (unsigned i = 0; i < c->n_pools; i++) {
			if (pool_allowed(c, (int)i, q, fam)) {
				int n = snprintf(pools + len, sizeof pools - len, "%s%s",
				                 len > 0 ? ", " : "",
				                 ipam_cidr_format(&c->pools[i].rec.pool.cidr, cs));
				if (n < 0 || (size_t)n >= sizeof pools - len) {
					snprintf(pools + len, sizeof pools - len, ", ...");
					break;
				}
				len += (size_t)n;
			}
		}
		return refuse(c, IPAM_E_EXHAUSTED,
		              "not enough free %s addresses in %s: %u asked for, %u free%s%s",
		              family_name(fam), pools, num, num - need,
		              c->cfg.strict_affinity ? " to this node" : "",
		              c->cfg.strict_affinity ? " (strict affinity is on)" : "");
	}
	return 0;
}

static int explicit_assign(struct ctx *c, const struct ipam_request *q, const struct ipam_addr *a)
{
	char as[IPAM_ADDR_STRLEN], ps[IPAM_CIDR_STRLEN], bs[IPAM_CIDR_STRLEN];
	int pi = pool_of_addr(c, a);
	struct ipam_addr base;
	struct bentry *e;
	uint32_t ord;
	int rv;

	ipam_addr_format(a, as);
	if (pi < 0) {
		return refuse(c, IPAM_E_INVALID, "%s is not in any IP pool", as);
	}
	ipam_cidr_format(&c->pools[pi].rec.pool.cidr, ps);
	/* The pools asked for limit an explicit address too, but its node selector does not: an
	 * explicit address ignores selectors, as Calico's AssignIP does (ipam.h). */
	if (!pool_requested(&c->pools[pi], q) && pool_usable(&c->pools[pi])) {
		return refuse(c, IPAM_E_INVALID,
		              "%s is in pool %s, which is not among the requested pools", as, ps);
	}
	if (!pool_usable(&c->pools[pi])) {
		return refuse(c, IPAM_E_CONFLICT, "%s is in pool %s, which is %s", as, ps,
		              c->pools[pi].rec.pool.removing ? "being removed" : "disabled");
	}
	ipam_addr_mask(a, c->pools[pi].rec.pool.block_size, &base);
	if ((rv = get_block(c, &base, &e)) != 0) {
		return rv;
	}
	if (e == NULL || e->blk == NULL) {
		if ((rv = create_block(c, pi, &base, q->node, &e)) != 0) {
			return rv;
		}
	} else if (c->cfg.strict_affinity && e->blk->affinity != NULL &&
	           strcmp(e->blk->affinity, q->node) != 0) {
		return refuse(
		    c, IPAM_E_CONFLICT,
		    "%s is in block %s, which is affine to node %s, and strict affinity is on", as,
		    ipam_cidr_format(&e->blk->cidr, bs), e->blk->affinity);
	}
	ord = ipam_block_ordinal(e->blk, a);
	if (e->blk->gen[ord] != 0) {
		struct ipam_ip_rec rec;
		bool found;
		if ((rv = get_ip(c, a, &rec, &found)) == CORRUPT) {
			found = false; /* only for the message: the address is taken either way */
		} else if (rv != 0) {
			return rv;
		}
		rv = refuse(c, IPAM_E_INUSE, "%s is already assigned (handle %s)", as,
		            found ? rec.handle : "unknown");
		ipam_ip_clear(&rec);
		return rv;
	}
	(void)ipam_block_take(e->blk, ord);
	return assign_ordinal(c, e, ord, q);
}

static int check_assign_args(struct ctx *c, const struct ipam_request *q)
{
	if (q->node == NULL || !ipam_name_ok(q->node, IPAM_NAME_MAX, false)) {
		return refuse(c, IPAM_E_INVALID, "a node name is required");
	}
	if (q->handle == NULL || !ipam_name_ok(q->handle, IPAM_NAME_MAX, false)) {
		return refuse(c, IPAM_E_INVALID, "a handle is required");
	}
	if (q->n_ips > 0 && (q->num4 > 0 || q->num6 > 0)) {
		return refuse(
		    c, IPAM_E_INVALID,
		    "ask either for explicit addresses or for a number of addresses, not both");
	}
	if (q->n_ips == 0 && q->num4 == 0 && q->num6 == 0) {
		return refuse(c, IPAM_E_INVALID, "no address asked for");
	}
	if (q->num4 > IPAM_ASSIGN_MAX || q->num6 > IPAM_ASSIGN_MAX ||
	    q->num4 + q->num6 > IPAM_ASSIGN_MAX) {
		return refuse(c, IPAM_E_INVALID, "at most %d addresses can be assigned at once",
		              IPAM_ASSIGN_MAX);
	}
	for (unsigned i = 0; i < q->n_attrs; i++) {
		for (unsigned j = 0; j < i; j++) {
			if (strcmp(q->attrs[i].key, q->attrs[j].key) == 0) {
				return refuse(c, IPAM_E_INVALID, "attribute %s is given twice",
				              q->attrs[i].key);
			}
		}
	}
	for (unsigned i = 0; i < q->n_cidrs; i++) {
		char cs[IPAM_CIDR_STRLEN];
		int pi = pool_exact(c, &q->cidrs[i]);
		ipam_cidr_format(&q->cidrs[i], cs);
		if (pi < 0) {
			return refuse(c, IPAM_E_NOTFOUND, "%s is not an IP pool", cs);
		}
		if (!pool_usable(&c->pools[pi])) {
			return refuse(c, IPAM_E_CONFLICT, "pool %s is %s", cs,
			              c->pools[pi].rec.pool.removing ? "being removed"
			                                             : "disabled");
		}
	}
	for (unsigned i = 0; i < q->n_ips; i++) {
		for (unsigned j = 0; j < i; j++) {
			if (ipam_addr_equal(&q->ips[i], &q->ips[j])) {
				char as[IPAM_ADDR_STRLEN];
				return refuse(c, IPAM_E_INVALID, "%s is asked for twice",
				              ipam_addr_format(&q->ips[i], as));
			}
		}
	}
	return 0;
}

static int do_assign(struct ctx *c, const struct ipam_request *q)
{
	int rv = check_assign_args(c, q);
	for (unsigned i = 0; rv == 0 && i < q->n_ips; i++) {
		rv = explicit_assign(c, q, &q->ips[i]);
	}
	if (rv == 0) {
		rv = auto_assign(c, q, 4, q->num4);
	}
	if (rv == 0) {
		rv = auto_assign(c, q, 6, q->num6);
	}
	return rv;
}

/* ------------------------------------------------------------------------------------------ */
/* Release                                                                                     */

static int release_addr(struct ctx *c, const struct ipam_addr *a, int64_t gen)
{
	char as[IPAM_ADDR_STRLEN];
	int pi = pool_of_addr(c, a);
	struct ipam_addr base;
	struct bentry *e = NULL;
	uint32_t ord = 0;
	int rv;

	ipam_addr_format(a, as);
	if (pi >= 0) {
		ipam_addr_mask(a, c->pools[pi].rec.pool.block_size, &base);
		if ((rv = get_block(c, &base, &e)) != 0) {
			return rv;
		}
	}
	if (e == NULL || e->blk == NULL || e->blk->gen[ord = ipam_block_ordinal(e->blk, a)] == 0) {
		return refuse(c, IPAM_E_NOTFOUND, "%s is not assigned", as);
	}
	if (gen != 0 && e->blk->gen[ord] != gen) {
		return refuse(c, IPAM_E_CONFLICT, "%s is held by generation %lld, not %lld%s", as,
		              (long long)e->blk->gen[ord], (long long)gen,
		              gen < e->blk->gen[ord] ? ": it was released and assigned again since"
		                                     : "");
	}
	return release_ordinal(c, e, ord);
}

static int do_release(struct ctx *c, const struct ipam_request *q)
{
	int rv = 0;
	if (q->n_items == 0) {
		return refuse(c, IPAM_E_INVALID, "no address to release");
	}
	for (unsigned i = 0; i < q->n_items; i++) {
		if (q->items[i].gen < 0) {
			return refuse(c, IPAM_E_INVALID, "generation %lld is negative",
			              (long long)q->items[i].gen);
		}
		for (unsigned j = 0; j < i; j++) {
			if (ipam_addr_equal(&q->items[i].addr, &q->items[j].addr)) {
				char as[IPAM_ADDR_STRLEN];
				return refuse(c, IPAM_E_INVALID, "%s is listed twice",
				              ipam_addr_format(&q->items[i].addr, as));
			}
		}
	}
	for (unsigned i = 0; i < q->n_items && rv == 0; i++) {
		rv = release_addr(c, &q->items[i].addr, q->items[i].gen);
	}
	return rv == 0 ? tidy(c) : rv;
}

static int do_release_handle(struct ctx *c, const struct ipam_request *q)
{
	struct hentry *h;
	struct ipam_handle_entry *copy;
	unsigned n;
	int rv;

	if (q->handle == NULL) {
		return refuse(c, IPAM_E_INVALID, "a handle is required");
	}
	if ((rv = get_handle(c, q->handle, &h)) != 0) {
		return rv;
	}
	if (h->n == 0) {
		return refuse(c, IPAM_E_NOTFOUND, "handle %s holds no addresses", q->handle);
	}
	/* release_addr edits h->e: work from a copy. */
	n = h->n;
	copy = malloc(n * sizeof *copy);
	if (copy == NULL) {
		return NOMEM;
	}
	memcpy(copy, h->e, n * sizeof *copy);
	for (unsigned i = 0; i < n && rv == 0; i++) {
		rv = release_addr(c, &copy[i].addr, copy[i].gen);
	}
	free(copy);
	return rv == 0 ? tidy(c) : rv;
}

/* ------------------------------------------------------------------------------------------ */
/* Pools                                                                                       */

static int do_pools_put(struct ctx *c, const struct ipam_request *q)
{
	char err[512], a[IPAM_CIDR_STRLEN], b[IPAM_CIDR_STRLEN];

	if (q->n_pools == 0) {
		return refuse(c, IPAM_E_INVALID, "no pool given");
	}
	for (unsigned i = 0; i < q->n_pools; i++) {
		struct ipam_pool resolved = q->pools[i];
		int pi = pool_exact(c, &resolved.cidr);
		if (resolved.block_size == 0) {
			resolved.block_size = pi >= 0 ? c->pools[pi].rec.pool.block_size
			                      : resolved.cidr.addr.family == 4
			                          ? IPAM_DEFAULT_BLOCK_V4
			                          : IPAM_DEFAULT_BLOCK_V6;
		}
		if (!ipam_pool_validate(&resolved, err, sizeof err)) {
			return refuse(c, IPAM_E_INVALID, "%s", err);
		}
		for (unsigned j = 0; j < i; j++) {
			if (ipam_cidr_overlap(&q->pools[i].cidr, &q->pools[j].cidr)) {
				ipam_cidr_format(&q->pools[i].cidr, a);
				ipam_cidr_format(&q->pools[j].cidr, b);
				if (strcmp(a, b) == 0) {
					return refuse(c, IPAM_E_INVALID, "pool %s is given twice",
					              a);
				}
				return refuse(c, IPAM_E_CONFLICT,
				              "pool %s overlaps pool %s in the same request", a, b);
			}
		}
	}
	for (unsigned i = 0; i < q->n_pools; i++) {
		struct ipam_pool np = q->pools[i];
		int pi = pool_exact(c, &np.cidr);

		np.removing = false;
		if (np.block_size == 0) {
			/* Not given: an existing pool keeps its size, a new one gets the default.
			 */
			np.block_size = pi >= 0 ? c->pools[pi].rec.pool.block_size
			                : np.cidr.addr.family == 4 ? IPAM_DEFAULT_BLOCK_V4
			                                           : IPAM_DEFAULT_BLOCK_V6;
		}
		ipam_cidr_format(&np.cidr, a);
		if (pi >= 0) {
			struct pentry *p = &c->pools[pi];
			if (p->rec.pool.block_size != np.block_size && p->rec.blocks > 0) {
				return refuse(c, IPAM_E_CONFLICT,
				              "pool %s: the block size cannot change from /%u to "
				              "/%u while the "
				              "pool has blocks",
				              a, p->rec.pool.block_size, np.block_size);
			}
			p->rec.pool = np;
			p->dirty = true;
			continue;
		}
		for (unsigned j = 0; j < c->n_pools; j++) {
			if (!c->pools[j].deleted &&
			    ipam_cidr_overlap(&c->pools[j].rec.pool.cidr, &np.cidr)) {
				return refuse(c, IPAM_E_CONFLICT,
				              "pool %s overlaps existing pool %s", a,
				              ipam_cidr_format(&c->pools[j].rec.pool.cidr, b));
			}
		}
		if (!ipam_grow((void **)&c->pools, &c->cap_pools, c->n_pools, sizeof *c->pools)) {
			return NOMEM;
		}
		memset(&c->pools[c->n_pools], 0, sizeof *c->pools);
		c->pools[c->n_pools].rec.pool = np;
		c->pools[c->n_pools].dirty = true;
		c->n_pools++;
	}
	return 0;
}

/* Load every block of pool pi into the cache; *used counts their addresses. */
static int load_pool_blocks(struct ctx *c, int pi, uint64_t *used)
{
	struct key_list l = {NULL, 0, 0, &c->pools[pi].rec.pool, NULL};
	int rv;

	*used = 0;
	if ((rv = pool_block_keys(c, l.pool, &l)) != 0) {
		free(l.a);
		return rv;
	}
	for (unsigned i = 0; i < l.n && rv == 0; i++) {
		struct bentry *e;
		rv = get_block(c, &l.a[i], &e);
		if (rv == 0 && e != NULL && e->blk != NULL) {
			*used += ipam_block_used(e->blk);
		}
	}
	free(l.a);
	return rv;
}

static int do_pools_remove(struct ctx *c, const struct ipam_request *q)
{
	char a[IPAM_CIDR_STRLEN];
	uint64_t total = 0;
	int rv;

	if (q->n_cidrs == 0) {
		return refuse(c, IPAM_E_INVALID, "no pool given");
	}
	for (unsigned i = 0; i < q->n_cidrs; i++) {
		ipam_cidr_format(&q->cidrs[i], a);
		if (pool_exact(c, &q->cidrs[i]) < 0) {
			return refuse(c, IPAM_E_NOTFOUND, "%s is not an IP pool", a);
		}
		for (unsigned j = 0; j < i; j++) {
			if (ipam_cidr_equal(&q->cidrs[i], &q->cidrs[j])) {
				return refuse(c, IPAM_E_INVALID, "pool %s is given twice", a);
			}
		}
	}
	for (unsigned i = 0; i < q->n_cidrs; i++) {
		int pi = pool_exact(c, &q->cidrs[i]);
		uint64_t used;
		if ((rv = load_pool_blocks(c, pi, &used)) != 0) {
			return rv;
		}
		if (used > 0 && !q->force) {
			c->rep.count = used;
			return refuse(
			    c, IPAM_E_INUSE,
			    "pool %s has %llu address%s in use; release %s first, or force "
			    "the removal (tabby pool remove --force)",
			    ipam_cidr_format(&q->cidrs[i], a), (unsigned long long)used,
			    used == 1 ? "" : "es", used == 1 ? "it" : "them");
		}
		total += used;
	}
	for (unsigned i = 0; i < q->n_cidrs; i++) {
		int pi = pool_exact(c, &q->cidrs[i]);
		struct pentry *p = &c->pools[pi];
		p->rec.pool.disabled = true;
		p->rec.pool.removing = true;
		p->dirty = true;
		/* As Calico: every affinity in the pool is released. Empty blocks go at once;
		 * the others keep their addresses, which are then borrowed ones (routed as /32s),
		 * and go with their last address. */
		for (unsigned j = 0; j < c->n_blocks; j++) {
			struct bentry *e = &c->blocks[j];
			if (e->blk == NULL || e->pool != pi) {
				continue;
			}
			if (ipam_block_used(e->blk) == 0) {
				delete_block(c, e);
			} else if (e->blk->affinity != NULL) {
				free(e->blk->affinity);
				e->blk->affinity = NULL;
				e->dirty = true;
			}
		}
	}
	c->rep.count = total;
	return tidy(c);
}

/* ------------------------------------------------------------------------------------------ */
/* Nodes, config, defaults                                                                     */

static int do_remove_node(struct ctx *c, const struct ipam_request *q)
{
	uint8_t pk[IPAM_KEY_MAX];
	size_t pn;
	struct key_list l = {NULL, 0, 0, NULL, NULL};
	int rv;

	if (q->node == NULL) {
		return refuse(c, IPAM_E_INVALID, "a node name is required");
	}
	/* Every address assigned for the node, wherever its block is (borrowed ones too). */
	l.node = q->node;
	pn = ipam_prefix_ips(pk);
	rv = scan(c, kb(pk, pn), kb(NULL, 0), collect_node_cb, &l);
	for (unsigned i = 0; i < l.n && rv == 0; i++) {
		struct bentry *e = NULL;
		int pi = pool_of_addr(c, &l.a[i]);
		struct ipam_addr base;
		if (pi < 0) {
			continue; /* an ip record outside every pool: ipam_check reports it */
		}
		ipam_addr_mask(&l.a[i], c->pools[pi].rec.pool.block_size, &base);
		rv = get_block(c, &base, &e);
		if (rv == 0 && e != NULL && e->blk != NULL &&
		    e->blk->gen[ipam_block_ordinal(e->blk, &l.a[i])] != 0) {
			rv = release_ordinal(c, e, ipam_block_ordinal(e->blk, &l.a[i]));
		}
	}
	free(l.a);
	if (rv != 0) {
		return rv;
	}
	/* Its affinities: empty blocks go, the others become unaffine (their addresses stay). */
	memset(&l, 0, sizeof l);
	pn = ipam_prefix_aff(pk, q->node, 0);
	rv = scan(c, kb(pk, pn), kb(NULL, 0), collect_cb, &l);
	for (unsigned i = 0; i < l.n && rv == 0; i++) {
		struct bentry *e;
		rv = get_block(c, &l.a[i], &e);
		if (rv == 0 && e != NULL && e->blk != NULL) {
			free(e->blk->affinity);
			e->blk->affinity = NULL;
			e->dirty = true;
		}
	}
	free(l.a);
	return rv != 0 ? rv : tidy(c);
}

static int do_init_defaults(struct ctx *c, const struct ipam_request *q)
{
	struct kv_bytes v;
	int rc = kv_tx_get(c->tx, KV_SPACE_DOMAIN, kstr(IPAM_KEY_INIT), &v);
	uint8_t fams[2] = {q->num4 > 0 ? 4 : 0, q->num6 > 0 ? 6 : 0};

	if (rc == KV_OK) {
		return 0; /* ran before: the operator's pools are whatever they made of them */
	}
	if (rc != KV_ENOTFOUND) {
		return host_err(rc);
	}
	for (int f = 0; f < 2; f++) {
		bool have = false;
		if (fams[f] == 0) {
			continue;
		}
		for (unsigned i = 0; i < c->n_pools; i++) {
			have = have || c->pools[i].rec.pool.cidr.addr.family == fams[f];
		}
		if (!have) {
			if (!ipam_grow((void **)&c->pools, &c->cap_pools, c->n_pools,
			               sizeof *c->pools)) {
				return NOMEM;
			}
			memset(&c->pools[c->n_pools], 0, sizeof *c->pools);
			ipam_default_pool(fams[f], &c->pools[c->n_pools].rec.pool);
			for (unsigned i = 0; i < c->n_pools; i++) {
				if (ipam_cidr_overlap(&c->pools[i].rec.pool.cidr,
				                      &c->pools[c->n_pools].rec.pool.cidr)) {
					have = true;
				}
			}
			if (!have) {
				c->pools[c->n_pools].dirty = true;
				c->n_pools++;
				c->rep.count++;
			}
		}
	}
	rc = kv_tx_put(c->tx, KV_SPACE_DOMAIN, kstr(IPAM_KEY_INIT), kb(NULL, 0));
	return rc == KV_OK ? 0 : host_err(rc);
}

/* ------------------------------------------------------------------------------------------ */
/* Writing the working set back                                                                */

static int put_buf(struct ctx *c, const uint8_t *k, size_t kn, struct ipam_buf *b)
{
	int rc;
	if (b->oom) {
		free(b->data);
		return NOMEM;
	}
	rc = kv_tx_put(c->tx, KV_SPACE_DOMAIN, kb(k, kn), kb(b->data, b->len));
	free(b->data);
	return rc == KV_OK ? 0 : host_err(rc);
}

static int del_key(struct ctx *c, const uint8_t *k, size_t kn)
{
	int rc = kv_tx_del(c->tx, KV_SPACE_DOMAIN, kb(k, kn));
	return rc == KV_OK ? 0 : host_err(rc);
}

static int flush_block(struct ctx *c, struct bentry *e)
{
	uint8_t k[IPAM_KEY_MAX];
	const char *aff = e->blk != NULL ? e->blk->affinity : NULL;
	bool open = is_open(e->blk), same_aff;
	int rv = 0;

	if (e->blk == NULL) {
		if (e->existed) {
			rv = del_key(c, k, ipam_key_block(k, &e->base));
		}
	} else {
		struct ipam_buf b = {0};
		ipam_block_encode(&b, e->blk);
		rv = put_buf(c, k, ipam_key_block(k, &e->base), &b);
	}
	same_aff = (aff == NULL && e->orig_aff == NULL) ||
	           (aff != NULL && e->orig_aff != NULL && strcmp(aff, e->orig_aff) == 0);
	if (rv == 0 && !same_aff && e->orig_aff != NULL) {
		rv = del_key(c, k, ipam_key_aff(k, e->orig_aff, &e->base));
	}
	if (rv == 0 && !same_aff && aff != NULL) {
		int rc = kv_tx_put(c->tx, KV_SPACE_DOMAIN, kb(k, ipam_key_aff(k, aff, &e->base)),
		                   kb(NULL, 0));
		rv = rc == KV_OK ? 0 : host_err(rc);
	}
	if (rv == 0 && e->orig_open && (!open || !same_aff)) {
		rv = del_key(c, k, ipam_key_open(k, e->orig_aff, &e->base));
	}
	if (rv == 0 && open && (!e->orig_open || !same_aff)) {
		int rc = kv_tx_put(c->tx, KV_SPACE_DOMAIN, kb(k, ipam_key_open(k, aff, &e->base)),
		                   kb(NULL, 0));
		rv = rc == KV_OK ? 0 : host_err(rc);
	}
	return rv;
}

static int flush(struct ctx *c)
{
	uint8_t k[IPAM_KEY_MAX];
	int rv = 0;

	for (unsigned i = 0; i < c->n_blocks && rv == 0; i++) {
		if (c->blocks[i].dirty) {
			rv = flush_block(c, &c->blocks[i]);
		}
	}
	for (unsigned i = 0; i < c->n_handles && rv == 0; i++) {
		struct hentry *h = &c->handles[i];
		if (!h->dirty) {
			continue;
		}
		if (h->n == 0) {
			rv = del_key(c, k, ipam_key_handle(k, h->handle));
		} else {
			struct ipam_buf b = {0};
			ipam_handle_encode(&b, h->e, h->n);
			rv = put_buf(c, k, ipam_key_handle(k, h->handle), &b);
		}
	}
	for (unsigned i = 0; i < c->n_pools && rv == 0; i++) {
		struct pentry *p = &c->pools[i];
		if (!p->dirty) {
			continue;
		}
		if (p->deleted) {
			if (p->existed) {
				rv = del_key(c, k, ipam_key_pool(k, &p->rec.pool.cidr.addr));
			}
		} else {
			struct ipam_buf b = {0};
			ipam_pool_encode(&b, &p->rec);
			rv = put_buf(c, k, ipam_key_pool(k, &p->rec.pool.cidr.addr), &b);
		}
	}
	if (rv == 0 && c->cfg_dirty) {
		struct ipam_buf b = {0};
		ipam_config_encode(&b, &c->cfg);
		rv = put_buf(c, (const uint8_t *)IPAM_KEY_CONFIG, strlen(IPAM_KEY_CONFIG), &b);
	}
	return rv;
}

static void ctx_free(struct ctx *c)
{
	for (unsigned i = 0; i < c->n_blocks; i++) {
		ipam_block_free(c->blocks[i].blk);
		free(c->blocks[i].orig_aff);
	}
	free(c->blocks);
	for (unsigned i = 0; i < c->n_handles; i++) {
		free(c->handles[i].handle);
		free(c->handles[i].e);
	}
	free(c->handles);
	free(c->pools);
	ipam_reply_free(&c->rep);
}

/* ------------------------------------------------------------------------------------------ */
/* Entry point                                                                                 */

int ipam_apply(void *data, struct kv_tx *tx, struct kv_bytes payload, struct kv_call_out *out)
{
	struct ctx c = {
	    .tx = tx, .hooks = data, .gen = kv_tx_revision(tx), .now = kv_tx_time_ms(tx)};
	struct ipam_request_decoded d;
	const char *why;
	int rv;

	rv = ipam_request_decode(payload.data, payload.len, &d, &why);
	if (rv == -ENOMEM) {
		return KV_ENOMEM;
	}
	if (rv != 0) {
		rv = refuse(&c, IPAM_E_INVALID, "%s", why);
		goto done;
	}
	if ((rv = ipam_get_config(tx, &c.cfg)) != 0 || (rv = load_pools(&c)) != 0) {
		rv = rv == -ENOMEM || rv == NOMEM      ? NOMEM
		     : rv == -EBADMSG || rv == CORRUPT ? CORRUPT
		                                       : EIOERR;
		goto done;
	}
	switch (d.req.type) {
	case IPAM_REQ_POOLS_PUT:
		rv = do_pools_put(&c, &d.req);
		break;
	case IPAM_REQ_POOLS_REMOVE:
		rv = do_pools_remove(&c, &d.req);
		break;
	case IPAM_REQ_CONFIG:
		c.cfg = d.req.config;
		c.cfg_dirty = true;
		rv = 0;
		break;
	case IPAM_REQ_ASSIGN:
		rv = do_assign(&c, &d.req);
		break;
	case IPAM_REQ_RELEASE:
		rv = do_release(&c, &d.req);
		break;
	case IPAM_REQ_RELEASE_HANDLE:
		rv = do_release_handle(&c, &d.req);
		break;
	case IPAM_REQ_REMOVE_NODE:
		rv = do_remove_node(&c, &d.req);
		break;
	case IPAM_REQ_INIT_DEFAULTS:
		rv = do_init_defaults(&c, &d.req);
		break;
	default:
		rv = refuse(&c, IPAM_E_INVALID, "unknown IPAM request type %u", d.req.type);
		break;
	}
	if (rv == 0) {
		rv = flush(&c);
	}
done:
	if (rv == CORRUPT) {
		rv = refuse(
		    &c, IPAM_E_CORRUPT,
		    "an IPAM record this request needs is corrupt; nothing was changed (tabby "
		    "ipam check names it)");
	}
	ipam_request_decoded_free(&d);
	if (rv < 0) {
		ctx_free(&c);
		return rv == NOMEM ? KV_ENOMEM : KV_EIO;
	}
	if (rv == REFUSED) {
		/* A refusal reports no addresses, only what was wrong (and a count, for in_use). */
		free(c.rep.addrs);
		c.rep.addrs = NULL;
		c.rep.n_addrs = 0;
		if (d.req.type != IPAM_REQ_POOLS_REMOVE) {
			c.rep.count = 0; /* releases counted before the refusal did not happen */
		}
		out->refused = true;
	}
	if (ipam_reply_encode(&c.rep, &out->reply, &out->reply_len) != 0) {
		ctx_free(&c);
		return KV_ENOMEM;
	}
	ctx_free(&c);
	return KV_OK;
}
