/*
 * Binary encodings of IPAM records, requests and replies (format version 1).
 *
 * Integers are little-endian; str is a u16 length and that many bytes (no NUL); addr is
 * family u8 | 16 bytes; cidr is addr | prefix u8.
 *
 *   pool    := 1 | cidr | block_size u8 | ipip u8 | vxlan u8 | flags u8 (1 nat, 2 disabled,
 *              4 removing) | selector str | blocks u64
 *   config  := 1 | flags u8 (1 strict affinity)
 *   block   := 1 | cidr | affinity str | n u16 | n x (ordinal u16 | gen u64)  (ascending)
 *              | n u16 | n x free ordinal u16 (FIFO order, head first)
 *   ip      := 1 | gen u64 | time_ms u64 | block prefix u8 | handle str | node str
 *              | n u8 | n x (key str | value str)
 *   handle  := 1 | n u32 | n x (addr | gen u64)
 *   request := 1 | type u8 | n u16 | n x pool-spec | n u16 | n x cidr | force u8 | strict u8
 *              | node str | handle str | n u8 | n x (key str | value str) | n u16 | n x addr
 *              | num4 u32 | num6 u32 | n u16 | n x (addr | gen u64)
 *     pool-spec := cidr | block_size u8 | ipip u8 | vxlan u8 | flags u8 | selector str
 *   reply   := 1 | error u8 | message str | count u64 | n u32 | n x (addr | gen u64 | cidr)
 *
 * Decoders check every length against what is left and reject trailing bytes, so no input can
 * make them read out of bounds or allocate more than a small multiple of its own size. Block
 * records are canonical (allocations ascending, ordinals partitioned), so a record that decodes
 * is one the encoder could have written.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ipam/internal.h"

#define FORMAT_VERSION 1

bool ipam_grow(void **arr, unsigned *cap, unsigned n, size_t size)
{
	unsigned c;
	void *p;
	if (n < *cap) {
		return true;
	}
	c = *cap > 0 ? *cap * 2 : 8;
	p = realloc(*arr, (size_t)c * size);
	if (p == NULL) {
		return false;
	}
	*arr = p;
	*cap = c;
	return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Buffer and reader                                                                           */

static bool buf_grow(struct ipam_buf *b, size_t n)
{
	size_t cap;
	uint8_t *p;
	if (b->oom) {
		return false;
	}
	if (b->cap - b->len >= n) {
		return true;
	}
	cap = b->cap > 0 ? b->cap : 64;
	while (cap - b->len < n) {
		cap *= 2;
	}
	p = realloc(b->data, cap);
	if (p == NULL) {
		b->oom = true;
		return false;
	}
	b->data = p;
	b->cap = cap;
	return true;
}

void ipam_buf_raw(struct ipam_buf *b, const void *p, size_t n)
{
	if (n > 0 && buf_grow(b, n)) {
		memcpy(b->data + b->len, p, n);
		b->len += n;
	}
}

void ipam_buf_u8(struct ipam_buf *b, uint8_t v)
{
	ipam_buf_raw(b, &v, 1);
}

void ipam_buf_u16(struct ipam_buf *b, uint16_t v)
{
	uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
	ipam_buf_raw(b, x, 2);
}

void ipam_buf_u32(struct ipam_buf *b, uint32_t v)
{
	uint8_t x[4];
	for (int i = 0; i < 4; i++) {
		x[i] = (uint8_t)(v >> (8 * i));
	}
	ipam_buf_raw(b, x, 4);
}

void ipam_buf_u64(struct ipam_buf *b, uint64_t v)
{
	uint8_t x[8];
	for (int i = 0; i < 8; i++) {
		x[i] = (uint8_t)(v >> (8 * i));
	}
	ipam_buf_raw(b, x, 8);
}

void ipam_buf_str(struct ipam_buf *b, const char *s)
{
	size_t n = s != NULL ? strlen(s) : 0;
	if (n > UINT16_MAX) {
		b->oom = true; /* callers validate lengths first; refuse rather than truncate */
		return;
	}
	ipam_buf_u16(b, (uint16_t)n);
	ipam_buf_raw(b, s, n);
}

void ipam_buf_addr(struct ipam_buf *b, const struct ipam_addr *a)
{
	ipam_buf_u8(b, a->family);
	ipam_buf_raw(b, a->b, 16);
}

void ipam_buf_cidr(struct ipam_buf *b, const struct ipam_cidr *c)
{
	ipam_buf_addr(b, &c->addr);
	ipam_buf_u8(b, c->prefix);
}

static const uint8_t *rd_take(struct ipam_rd *r, size_t n)
{
	const uint8_t *p;
	if (r->bad || r->left < n) {
		r->bad = true;
		return NULL;
	}
	p = r->p;
	r->p += n;
	r->left -= n;
	return p;
}

uint8_t ipam_rd_u8(struct ipam_rd *r)
{
	const uint8_t *p = rd_take(r, 1);
	return p != NULL ? p[0] : 0;
}

uint16_t ipam_rd_u16(struct ipam_rd *r)
{
	const uint8_t *p = rd_take(r, 2);
	return p != NULL ? (uint16_t)(p[0] | (p[1] << 8)) : 0;
}

uint32_t ipam_rd_u32(struct ipam_rd *r)
{
	const uint8_t *p = rd_take(r, 4);
	uint32_t v = 0;
	for (int i = 3; p != NULL && i >= 0; i--) {
		v = (v << 8) | p[i];
	}
	return v;
}

uint64_t ipam_rd_u64(struct ipam_rd *r)
{
	const uint8_t *p = rd_take(r, 8);
	uint64_t v = 0;
	for (int i = 7; p != NULL && i >= 0; i--) {
		v = (v << 8) | p[i];
	}
	return v;
}

char *ipam_rd_str(struct ipam_rd *r, size_t max, bool allow_empty, bool *oom)
{
	uint16_t n = ipam_rd_u16(r);
	const uint8_t *p = rd_take(r, n);
	char *s;

	if (p == NULL || n > max || (n == 0 && !allow_empty) || memchr(p, '\0', n) != NULL) {
		r->bad = true;
		return NULL;
	}
	s = malloc((size_t)n + 1);
	if (s == NULL) {
		*oom = true;
		r->bad = true;
		return NULL;
	}
	memcpy(s, p, n);
	s[n] = '\0';
	if (!ipam_name_ok(s, max, allow_empty)) {
		free(s);
		r->bad = true;
		return NULL;
	}
	return s;
}

bool ipam_rd_addr(struct ipam_rd *r, struct ipam_addr *a)
{
	const uint8_t *p;
	memset(a, 0, sizeof *a);
	a->family = ipam_rd_u8(r);
	p = rd_take(r, 16);
	if (p == NULL || (a->family != 4 && a->family != 6)) {
		r->bad = true;
		return false;
	}
	memcpy(a->b, p, 16);
	if (a->family == 4) {
		for (int i = 4; i < 16; i++) {
			if (a->b[i] != 0) {
				r->bad = true;
				return false;
			}
		}
	}
	return true;
}

bool ipam_rd_cidr(struct ipam_rd *r, struct ipam_cidr *c)
{
	struct ipam_addr m;
	if (!ipam_rd_addr(r, &c->addr)) {
		return false;
	}
	c->prefix = ipam_rd_u8(r);
	if (r->bad || c->prefix > ipam_bits(c->addr.family)) {
		r->bad = true;
		return false;
	}
	ipam_addr_mask(&c->addr, c->prefix, &m);
	if (!ipam_addr_equal(&m, &c->addr)) {
		r->bad = true;
		return false;
	}
	return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Pools and config                                                                            */

static void pool_spec_encode(struct ipam_buf *b, const struct ipam_pool *p)
{
	ipam_buf_cidr(b, &p->cidr);
	ipam_buf_u8(b, p->block_size);
	ipam_buf_u8(b, p->ipip);
	ipam_buf_u8(b, p->vxlan);
	ipam_buf_u8(b, (uint8_t)((p->nat_outgoing ? 1 : 0) | (p->disabled ? 2 : 0) |
	                         (p->removing ? 4 : 0)));
	ipam_buf_str(b, p->node_selector);
}

static bool pool_spec_decode(struct ipam_rd *r, struct ipam_pool *p)
{
	uint8_t flags;
	uint16_t n;
	const uint8_t *s;

	memset(p, 0, sizeof *p);
	if (!ipam_rd_cidr(r, &p->cidr)) {
		return false;
	}
	p->block_size = ipam_rd_u8(r);
	p->ipip = ipam_rd_u8(r);
	p->vxlan = ipam_rd_u8(r);
	flags = ipam_rd_u8(r);
	n = ipam_rd_u16(r);
	s = rd_take(r, n);
	if (s == NULL || (flags & ~7u) != 0 || n >= IPAM_SELECTOR_MAX || memchr(s, '\0', n)) {
		r->bad = true;
		return false;
	}
	memcpy(p->node_selector, s, n);
	p->nat_outgoing = flags & 1;
	p->disabled = flags & 2;
	p->removing = flags & 4;
	return true;
}

void ipam_pool_encode(struct ipam_buf *b, const struct ipam_pool_rec *p)
{
	ipam_buf_u8(b, FORMAT_VERSION);
	pool_spec_encode(b, &p->pool);
	ipam_buf_u64(b, p->blocks);
}

bool ipam_pool_decode(const uint8_t *p, size_t len, struct ipam_pool_rec *out)
{
	struct ipam_rd r = {p, len, false};
	char err[256];

	if (ipam_rd_u8(&r) != FORMAT_VERSION || !pool_spec_decode(&r, &out->pool)) {
		return false;
	}
	out->blocks = ipam_rd_u64(&r);
	return !r.bad && r.left == 0 && out->pool.block_size != 0 &&
	       ipam_pool_validate(&out->pool, err, sizeof err);
}

void ipam_config_encode(struct ipam_buf *b, const struct ipam_config *c)
{
	ipam_buf_u8(b, FORMAT_VERSION);
	ipam_buf_u8(b, c->strict_affinity ? 1 : 0);
}

bool ipam_config_decode(const uint8_t *p, size_t len, struct ipam_config *out)
{
	struct ipam_rd r = {p, len, false};
	uint8_t flags;
	if (ipam_rd_u8(&r) != FORMAT_VERSION) {
		return false;
	}
	flags = ipam_rd_u8(&r);
	out->strict_affinity = flags & 1;
	return !r.bad && r.left == 0 && (flags & ~1u) == 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Blocks                                                                                      */

void ipam_block_free(struct ipam_block *b)
{
	if (b == NULL) {
		return;
	}
	free(b->affinity);
	free(b->gen);
	free(b->ring);
	free(b);
}

/* An empty block of the cidr's size with no free list yet. */
static struct ipam_block *block_alloc(const struct ipam_cidr *cidr)
{
	unsigned host_bits = ipam_bits(cidr->addr.family) - cidr->prefix;
	struct ipam_block *b;

	if (host_bits > 12) {
		return NULL; /* callers check sizes first */
	}
	b = calloc(1, sizeof *b);
	if (b == NULL) {
		return NULL;
	}
	b->cidr = *cidr;
	b->size = 1u << host_bits;
	b->gen = calloc(b->size, sizeof *b->gen);
	b->ring = malloc(b->size * sizeof *b->ring);
	if (b->gen == NULL || b->ring == NULL) {
		ipam_block_free(b);
		return NULL;
	}
	return b;
}

struct ipam_block *ipam_block_new(const struct ipam_cidr *cidr, const char *affinity)
{
	struct ipam_block *b = block_alloc(cidr);
	if (b == NULL) {
		return NULL;
	}
	if (affinity != NULL && (b->affinity = strdup(affinity)) == NULL) {
		ipam_block_free(b);
		return NULL;
	}
	for (uint32_t i = 0; i < b->size; i++) {
		b->ring[i] = (uint16_t)i;
	}
	b->head = 0;
	b->n_free = b->size;
	return b;
}

uint32_t ipam_block_take_head(struct ipam_block *b)
{
	uint32_t ord = b->ring[b->head];
	b->head = (b->head + 1) % b->size;
	b->n_free--;
	return ord;
}

/* Remove one ordinal from the middle of the FIFO, keeping the order of the rest. */
bool ipam_block_take(struct ipam_block *b, uint32_t ordinal)
{
	uint32_t i, at = b->n_free;
	for (i = 0; i < b->n_free; i++) {
		if (b->ring[(b->head + i) % b->size] == ordinal) {
			at = i;
			break;
		}
	}
	if (at == b->n_free) {
		return false;
	}
	for (i = at; i + 1 < b->n_free; i++) {
		b->ring[(b->head + i) % b->size] = b->ring[(b->head + i + 1) % b->size];
	}
	b->n_free--;
	return true;
}

void ipam_block_put_back(struct ipam_block *b, uint32_t ordinal)
{
	b->ring[(b->head + b->n_free) % b->size] = (uint16_t)ordinal;
	b->n_free++;
}

void ipam_block_addr(const struct ipam_block *b, uint32_t ordinal, struct ipam_addr *out)
{
	ipam_addr_from_value(b->cidr.addr.family, ipam_addr_value(&b->cidr.addr) + ordinal, out);
}

uint32_t ipam_block_ordinal(const struct ipam_block *b, const struct ipam_addr *a)
{
	return (uint32_t)(ipam_addr_value(a) - ipam_addr_value(&b->cidr.addr));
}

void ipam_block_encode(struct ipam_buf *buf, const struct ipam_block *b)
{
	ipam_buf_u8(buf, FORMAT_VERSION);
	ipam_buf_cidr(buf, &b->cidr);
	ipam_buf_str(buf, b->affinity);
	ipam_buf_u16(buf, (uint16_t)(b->size - b->n_free));
	for (uint32_t ord = 0; ord < b->size; ord++) {
		if (b->gen[ord] != 0) {
			ipam_buf_u16(buf, (uint16_t)ord);
			ipam_buf_u64(buf, (uint64_t)b->gen[ord]);
		}
	}
	ipam_buf_u16(buf, (uint16_t)b->n_free);
	for (uint32_t i = 0; i < b->n_free; i++) {
		ipam_buf_u16(buf, b->ring[(b->head + i) % b->size]);
	}
}

struct ipam_block *ipam_block_decode(const uint8_t *p, size_t len, bool *oom)
{
	struct ipam_rd r = {p, len, false};
	struct ipam_cidr cidr;
	struct ipam_block *b = NULL;
	char *aff;
	uint16_t n_alloc, n_free;
	int32_t prev = -1;

	*oom = false;
	if (ipam_rd_u8(&r) != FORMAT_VERSION || !ipam_rd_cidr(&r, &cidr) ||
	    ipam_bits(cidr.addr.family) - cidr.prefix > 12) {
		return NULL;
	}
	aff = ipam_rd_str(&r, IPAM_NAME_MAX, true, oom);
	if (r.bad) {
		return NULL;
	}
	b = block_alloc(&cidr);
	if (b == NULL) {
		free(aff);
		*oom = true;
		return NULL;
	}
	if (aff != NULL && aff[0] != '\0') {
		b->affinity = aff;
	} else {
		free(aff);
	}
	n_alloc = ipam_rd_u16(&r);
	if (r.bad || n_alloc > b->size) {
		goto bad;
	}
	for (unsigned i = 0; i < n_alloc; i++) {
		uint16_t ord = ipam_rd_u16(&r);
		int64_t gen = (int64_t)ipam_rd_u64(&r);
		if (r.bad || ord >= b->size || (int32_t)ord <= prev || gen <= 0) {
			goto bad;
		}
		prev = ord;
		b->gen[ord] = gen;
	}
	n_free = ipam_rd_u16(&r);
	if (r.bad || (uint32_t)n_free + n_alloc != b->size) {
		goto bad;
	}
	for (unsigned i = 0; i < n_free; i++) {
		uint16_t ord = ipam_rd_u16(&r);
		/* A free ordinal has gen 0; -1 marks it seen, so a duplicate is caught. */
		if (r.bad || ord >= b->size || b->gen[ord] != 0) {
			goto bad;
		}
		b->gen[ord] = -1;
		b->ring[i] = ord;
	}
	for (unsigned i = 0; i < n_free; i++) {
		b->gen[b->ring[i]] = 0;
	}
	b->head = 0;
	b->n_free = n_free;
	if (r.left != 0) {
		goto bad;
	}
	return b;

bad:
	ipam_block_free(b);
	return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Assigned addresses                                                                          */

void ipam_ip_encode(struct ipam_buf *b, int64_t gen, uint64_t time_ms, uint8_t block_prefix,
                    const char *handle, const char *node, const struct ipam_attr *attrs,
                    unsigned n_attrs)
{
	ipam_buf_u8(b, FORMAT_VERSION);
	ipam_buf_u64(b, (uint64_t)gen);
	ipam_buf_u64(b, time_ms);
	ipam_buf_u8(b, block_prefix);
	ipam_buf_str(b, handle);
	ipam_buf_str(b, node);
	ipam_buf_u8(b, (uint8_t)n_attrs);
	for (unsigned i = 0; i < n_attrs; i++) {
		ipam_buf_str(b, attrs[i].key);
		ipam_buf_str(b, attrs[i].value);
	}
}

void ipam_ip_clear(struct ipam_ip_rec *r)
{
	free(r->handle);
	free(r->node);
	for (unsigned i = 0; i < r->n_attrs; i++) {
		free(r->keys[i]);
		free(r->values[i]);
	}
	memset(r, 0, sizeof *r);
}

bool ipam_ip_decode(const uint8_t *p, size_t len, struct ipam_ip_rec *out, bool *oom)
{
	struct ipam_rd r = {p, len, false};

	memset(out, 0, sizeof *out);
	*oom = false;
	if (ipam_rd_u8(&r) != FORMAT_VERSION) {
		return false;
	}
	out->gen = (int64_t)ipam_rd_u64(&r);
	out->time_ms = ipam_rd_u64(&r);
	out->block_prefix = ipam_rd_u8(&r);
	out->handle = ipam_rd_str(&r, IPAM_NAME_MAX, false, oom);
	out->node = ipam_rd_str(&r, IPAM_NAME_MAX, false, oom);
	out->n_attrs = ipam_rd_u8(&r);
	if (r.bad || out->gen <= 0 || out->n_attrs > IPAM_ATTRS_MAX) {
		out->n_attrs = 0;
		ipam_ip_clear(out);
		return false;
	}
	for (unsigned i = 0; i < out->n_attrs; i++) {
		out->keys[i] = ipam_rd_str(&r, IPAM_NAME_MAX, false, oom);
		out->values[i] = ipam_rd_str(&r, IPAM_VALUE_MAX, true, oom);
	}
	if (r.bad || r.left != 0) {
		ipam_ip_clear(out);
		return false;
	}
	return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Handles                                                                                     */

void ipam_handle_encode(struct ipam_buf *b, const struct ipam_handle_entry *e, unsigned n)
{
	ipam_buf_u8(b, FORMAT_VERSION);
	ipam_buf_u32(b, n);
	for (unsigned i = 0; i < n; i++) {
		ipam_buf_addr(b, &e[i].addr);
		ipam_buf_u64(b, (uint64_t)e[i].gen);
	}
}

bool ipam_handle_decode(const uint8_t *p, size_t len, struct ipam_handle_entry **out, unsigned *n,
                        bool *oom)
{
	struct ipam_rd r = {p, len, false};
	struct ipam_handle_entry *e = NULL;
	uint32_t count;

	*out = NULL;
	*n = 0;
	*oom = false;
	if (ipam_rd_u8(&r) != FORMAT_VERSION) {
		return false;
	}
	count = ipam_rd_u32(&r);
	if (r.bad || count == 0 || count > r.left / 25) {
		return false;
	}
	e = calloc(count, sizeof *e);
	if (e == NULL) {
		*oom = true;
		return false;
	}
	for (uint32_t i = 0; i < count; i++) {
		ipam_rd_addr(&r, &e[i].addr);
		e[i].gen = (int64_t)ipam_rd_u64(&r);
		if (r.bad || e[i].gen <= 0) {
			free(e);
			return false;
		}
	}
	if (r.left != 0) {
		free(e);
		return false;
	}
	*out = e;
	*n = count;
	return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Requests                                                                                    */

#define MAX_POOLS 1024
#define MAX_ITEMS 65535

int ipam_encode_request(const struct ipam_request *q, uint8_t **out, size_t *len)
{
	struct ipam_buf b = {0};

	*out = NULL;
	*len = 0;
	if (q->n_pools > MAX_POOLS || q->n_cidrs > MAX_POOLS || q->n_attrs > IPAM_ATTRS_MAX ||
	    q->n_ips > IPAM_ASSIGN_MAX || q->n_items > MAX_ITEMS ||
	    (q->n_pools > 0 && q->pools == NULL) || (q->n_cidrs > 0 && q->cidrs == NULL) ||
	    (q->n_attrs > 0 && q->attrs == NULL) || (q->n_ips > 0 && q->ips == NULL) ||
	    (q->n_items > 0 && q->items == NULL)) {
		return -EINVAL;
	}
	if ((q->node != NULL && strlen(q->node) > IPAM_NAME_MAX) ||
	    (q->handle != NULL && strlen(q->handle) > IPAM_NAME_MAX)) {
		return -EINVAL;
	}
	for (unsigned i = 0; i < q->n_attrs; i++) {
		if (q->attrs[i].key == NULL || strlen(q->attrs[i].key) > IPAM_NAME_MAX ||
		    (q->attrs[i].value != NULL && strlen(q->attrs[i].value) > IPAM_VALUE_MAX)) {
			return -EINVAL;
		}
	}
	for (unsigned i = 0; i < q->n_pools; i++) {
		if (memchr(q->pools[i].node_selector, '\0', IPAM_SELECTOR_MAX) == NULL) {
			return -EINVAL;
		}
	}
	ipam_buf_u8(&b, FORMAT_VERSION);
	ipam_buf_u8(&b, q->type);
	ipam_buf_u16(&b, (uint16_t)q->n_pools);
	for (unsigned i = 0; i < q->n_pools; i++) {
		pool_spec_encode(&b, &q->pools[i]);
	}
	ipam_buf_u16(&b, (uint16_t)q->n_cidrs);
	for (unsigned i = 0; i < q->n_cidrs; i++) {
		ipam_buf_cidr(&b, &q->cidrs[i]);
	}
	ipam_buf_u8(&b, q->force ? 1 : 0);
	ipam_buf_u8(&b, q->config.strict_affinity ? 1 : 0);
	ipam_buf_str(&b, q->node);
	ipam_buf_str(&b, q->handle);
	ipam_buf_u8(&b, (uint8_t)q->n_attrs);
	for (unsigned i = 0; i < q->n_attrs; i++) {
		ipam_buf_str(&b, q->attrs[i].key);
		ipam_buf_str(&b, q->attrs[i].value);
	}
	ipam_buf_u16(&b, (uint16_t)q->n_ips);
	for (unsigned i = 0; i < q->n_ips; i++) {
		ipam_buf_addr(&b, &q->ips[i]);
	}
	ipam_buf_u32(&b, q->num4);
	ipam_buf_u32(&b, q->num6);
	ipam_buf_u16(&b, (uint16_t)q->n_items);
	for (unsigned i = 0; i < q->n_items; i++) {
		ipam_buf_addr(&b, &q->items[i].addr);
		ipam_buf_u64(&b, (uint64_t)q->items[i].gen);
	}
	if (b.oom) {
		free(b.data);
		return -ENOMEM;
	}
	*out = b.data;
	*len = b.len;
	return 0;
}

/* Everything a decoded request owns. */
struct req_mem {
	struct ipam_pool *pools;
	struct ipam_cidr *cidrs;
	struct ipam_attr *attrs;
	char *attr_strs[2 * IPAM_ATTRS_MAX];
	struct ipam_addr *ips;
	struct ipam_release_item *items;
	char *node, *handle;
};

void ipam_request_decoded_free(struct ipam_request_decoded *d)
{
	struct req_mem *m = d->mem;
	if (m == NULL) {
		return;
	}
	free(m->pools);
	free(m->cidrs);
	free(m->attrs);
	for (unsigned i = 0; i < 2 * IPAM_ATTRS_MAX; i++) {
		free(m->attr_strs[i]);
	}
	free(m->ips);
	free(m->items);
	free(m->node);
	free(m->handle);
	free(m);
	d->mem = NULL;
}

/* calloc n elements when the input can still hold n of min_size bytes each. */
static void *rd_array(struct ipam_rd *r, size_t n, size_t min_size, size_t size, bool *oom)
{
	void *p;
	if (r->bad || n > r->left / min_size) {
		r->bad = true;
		return NULL;
	}
	if (n == 0) {
		return NULL; /* most requests leave most arrays empty: no allocation for them */
	}
	p = calloc(n, size);
	if (p == NULL) {
		*oom = true;
		r->bad = true;
	}
	return p;
}

int ipam_request_decode(const uint8_t *p, size_t len, struct ipam_request_decoded *out,
                        const char **why)
{
	struct ipam_rd r = {p, len, false};
	struct ipam_request *q = &out->req;
	struct req_mem *m;
	bool oom = false;
	uint8_t force, strict;

	memset(out, 0, sizeof *out);
	*why = "malformed request";
	m = calloc(1, sizeof *m);
	if (m == NULL) {
		return -ENOMEM;
	}
	out->mem = m;
	if (ipam_rd_u8(&r) != FORMAT_VERSION) {
		*why = "unknown request format version";
		goto bad;
	}
	q->type = ipam_rd_u8(&r);
	q->n_pools = ipam_rd_u16(&r);
	m->pools = rd_array(&r, q->n_pools, 24, sizeof *m->pools, &oom);
	for (unsigned i = 0; !r.bad && i < q->n_pools; i++) {
		pool_spec_decode(&r, &m->pools[i]);
	}
	q->pools = m->pools;
	q->n_cidrs = ipam_rd_u16(&r);
	m->cidrs = rd_array(&r, q->n_cidrs, 18, sizeof *m->cidrs, &oom);
	for (unsigned i = 0; !r.bad && i < q->n_cidrs; i++) {
		ipam_rd_cidr(&r, &m->cidrs[i]);
	}
	q->cidrs = m->cidrs;
	force = ipam_rd_u8(&r);
	strict = ipam_rd_u8(&r);
	if (force > 1 || strict > 1) {
		goto bad;
	}
	q->force = force;
	q->config.strict_affinity = strict;
	m->node = ipam_rd_str(&r, IPAM_NAME_MAX, true, &oom);
	m->handle = ipam_rd_str(&r, IPAM_NAME_MAX, true, &oom);
	if (r.bad) {
		*why = "node or handle is too long or holds control characters";
		goto bad;
	}
	if (m->node[0] == '\0') {
		free(m->node);
		m->node = NULL;
	}
	if (m->handle[0] == '\0') {
		free(m->handle);
		m->handle = NULL;
	}
	q->node = m->node;
	q->handle = m->handle;
	q->n_attrs = ipam_rd_u8(&r);
	if (q->n_attrs > IPAM_ATTRS_MAX) {
		*why = "too many attributes";
		goto bad;
	}
	m->attrs = rd_array(&r, q->n_attrs, 4, sizeof *m->attrs, &oom);
	for (unsigned i = 0; !r.bad && i < q->n_attrs; i++) {
		m->attr_strs[2 * i] = ipam_rd_str(&r, IPAM_NAME_MAX, false, &oom);
		m->attr_strs[2 * i + 1] = ipam_rd_str(&r, IPAM_VALUE_MAX, true, &oom);
		m->attrs[i].key = m->attr_strs[2 * i];
		m->attrs[i].value = m->attr_strs[2 * i + 1];
	}
	if (r.bad) {
		*why = "an attribute key is empty, too long or holds control characters";
		goto bad;
	}
	q->attrs = m->attrs;
	q->n_ips = ipam_rd_u16(&r);
	m->ips = rd_array(&r, q->n_ips, 17, sizeof *m->ips, &oom);
	for (unsigned i = 0; !r.bad && i < q->n_ips; i++) {
		ipam_rd_addr(&r, &m->ips[i]);
	}
	q->ips = m->ips;
	q->num4 = ipam_rd_u32(&r);
	q->num6 = ipam_rd_u32(&r);
	q->n_items = ipam_rd_u16(&r);
	m->items = rd_array(&r, q->n_items, 25, sizeof *m->items, &oom);
	for (unsigned i = 0; !r.bad && i < q->n_items; i++) {
		ipam_rd_addr(&r, &m->items[i].addr);
		m->items[i].gen = (int64_t)ipam_rd_u64(&r);
	}
	q->items = m->items;
	if (r.bad || r.left != 0) {
		goto bad;
	}
	return 0;

bad:
	ipam_request_decoded_free(out);
	memset(out, 0, sizeof *out);
	return oom ? -ENOMEM : -EINVAL;
}

/* ------------------------------------------------------------------------------------------ */
/* Replies                                                                                     */

int ipam_reply_encode(const struct ipam_reply *rep, uint8_t **out, size_t *len)
{
	struct ipam_buf b = {0};

	ipam_buf_u8(&b, FORMAT_VERSION);
	ipam_buf_u8(&b, rep->error);
	ipam_buf_str(&b, rep->message);
	ipam_buf_u64(&b, rep->count);
	ipam_buf_u32(&b, rep->n_addrs);
	for (unsigned i = 0; i < rep->n_addrs; i++) {
		ipam_buf_addr(&b, &rep->addrs[i].addr);
		ipam_buf_u64(&b, (uint64_t)rep->addrs[i].gen);
		ipam_buf_cidr(&b, &rep->addrs[i].block);
	}
	if (b.oom) {
		free(b.data);
		return -ENOMEM;
	}
	*out = b.data;
	*len = b.len;
	return 0;
}

int ipam_decode_reply(const uint8_t *p, size_t len, struct ipam_reply *out)
{
	struct ipam_rd r = {p, len, false};
	bool oom = false;
	uint32_t n;

	memset(out, 0, sizeof *out);
	if (p == NULL || ipam_rd_u8(&r) != FORMAT_VERSION) {
		return -EINVAL;
	}
	out->error = ipam_rd_u8(&r);
	out->message = ipam_rd_str(&r, 4096, true, &oom);
	out->count = ipam_rd_u64(&r);
	n = ipam_rd_u32(&r);
	if (r.bad || out->error > IPAM_E_CORRUPT) {
		goto bad;
	}
	if (out->message != NULL && out->message[0] == '\0') {
		free(out->message);
		out->message = NULL;
	}
	out->addrs = rd_array(&r, n, 42, sizeof *out->addrs, &oom);
	for (uint32_t i = 0; !r.bad && i < n; i++) {
		ipam_rd_addr(&r, &out->addrs[i].addr);
		out->addrs[i].gen = (int64_t)ipam_rd_u64(&r);
		ipam_rd_cidr(&r, &out->addrs[i].block);
	}
	out->n_addrs = n;
	if (r.bad || r.left != 0) {
		goto bad;
	}
	return 0;

bad:
	ipam_reply_free(out);
	return oom ? -ENOMEM : -EINVAL;
}

void ipam_reply_free(struct ipam_reply *r)
{
	free(r->message);
	free(r->addrs);
	memset(r, 0, sizeof *r);
}
