/*
 * Private to ipam/: address arithmetic, the record layouts and their codecs, the key layout.
 *
 * Keys (DOMAIN keyspace; FAM is one byte, 4 or 6; ADDR is the 16-byte struct ipam_addr.b):
 *   ipam/config                     config record
 *   ipam/init                       present once INIT_DEFAULTS has run
 *   ipam/pool/FAM ADDR              pool record (pools never overlap: the base address is unique)
 *   ipam/block/FAM ADDR             block record (blocks never overlap either)
 *   ipam/ip/FAM ADDR                one assigned address: handle, node, attributes, generation
 *   ipam/aff/HOST \0 FAM ADDR       empty: the block is affine to HOST
 *   ipam/open/HOST \0 FAM ADDR      empty: the block is affine to HOST and has a free address
 *   ipam/handle/HANDLE              handle record: the (address, generation) pairs it holds
 * Byte order of ADDR is network order, so a prefix scan walks pools and blocks in address order,
 * IPv4 before IPv6. The two indexes exist so that the common assignment (a host's own block with
 * room) costs one index lookup instead of a walk over the host's blocks; every write of a block
 * goes through one function that keeps them in step with the block, in the same command.
 */
#ifndef TABBY_IPAM_INTERNAL_H
#define TABBY_IPAM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ipam/ipam.h"

/* 128-bit arithmetic keeps IPv4 and IPv6 on one code path (an IPv6 pool may hold 2^120 blocks).
 * __extension__ because ISO C11 has no 128-bit integer; GCC and clang both provide it. */
__extension__ typedef unsigned __int128 u128;

#define IPAM_BLOCK_MAX_ORDINALS 4096 /* a /20 or a /116 */

static inline unsigned ipam_bits(uint8_t family)
{
	return family == 4 ? 32 : 128;
}

u128 ipam_addr_value(const struct ipam_addr *a);
void ipam_addr_from_value(uint8_t family, u128 v, struct ipam_addr *out);
/* Mask a to prefix bits. */
void ipam_addr_mask(const struct ipam_addr *a, uint8_t prefix, struct ipam_addr *out);
bool ipam_addr_equal(const struct ipam_addr *a, const struct ipam_addr *b);
int ipam_addr_cmp(const struct ipam_addr *a, const struct ipam_addr *b);
/* Decimal text of a 128-bit value (buf >= 40 bytes). */
void ipam_u128_format(u128 v, char *buf);

/* Make room for element n of a growable array (doubling); false when out of memory. */
bool ipam_grow(void **arr, unsigned *cap, unsigned n, size_t size);

/* A NUL-terminated name of at most max bytes (ipam_text_ok); NULL is fine when empty is. */
bool ipam_name_ok(const char *s, size_t max, bool allow_empty);

/* ------------------------------------------------------------------------------------------ */
/* Keys                                                                                        */

#define IPAM_KEY_MAX 300

size_t ipam_key_pool(uint8_t *k, const struct ipam_addr *a);
size_t ipam_key_block(uint8_t *k, const struct ipam_addr *a);
size_t ipam_key_aff(uint8_t *k, const char *host, const struct ipam_addr *a);
size_t ipam_key_open(uint8_t *k, const char *host, const struct ipam_addr *a);
size_t ipam_key_handle(uint8_t *k, const char *handle);
size_t ipam_key_ip(uint8_t *k, const struct ipam_addr *a);
/* Prefixes for scans. fam 0: every family. */
size_t ipam_prefix_pools(uint8_t *k);
size_t ipam_prefix_blocks(uint8_t *k, uint8_t fam);
size_t ipam_prefix_aff(uint8_t *k, const char *host, uint8_t fam);  /* host NULL: all hosts */
size_t ipam_prefix_open(uint8_t *k, const char *host, uint8_t fam); /* host NULL: all hosts */
size_t ipam_prefix_handles(uint8_t *k);
size_t ipam_prefix_ips(uint8_t *k);
/* The address at the end of a pool/block/index key (fam + 16 bytes). */
bool ipam_key_tail_addr(const uint8_t *k, size_t len, struct ipam_addr *out);

#define IPAM_KEY_CONFIG "ipam/config"
#define IPAM_KEY_INIT   "ipam/init"

/* ------------------------------------------------------------------------------------------ */
/* Records                                                                                     */

/* A buffer the encoders append to. */
struct ipam_buf {
	uint8_t *data;
	size_t len, cap;
	bool oom;
};
void ipam_buf_u8(struct ipam_buf *b, uint8_t v);
void ipam_buf_u16(struct ipam_buf *b, uint16_t v);
void ipam_buf_u32(struct ipam_buf *b, uint32_t v);
void ipam_buf_u64(struct ipam_buf *b, uint64_t v);
void ipam_buf_raw(struct ipam_buf *b, const void *p, size_t n);
void ipam_buf_str(struct ipam_buf *b, const char *s); /* u16 length + bytes */
void ipam_buf_addr(struct ipam_buf *b, const struct ipam_addr *a);
void ipam_buf_cidr(struct ipam_buf *b, const struct ipam_cidr *c);

/* A bounds-checked reader. */
struct ipam_rd {
	const uint8_t *p;
	size_t left;
	bool bad;
};
uint8_t ipam_rd_u8(struct ipam_rd *r);
uint16_t ipam_rd_u16(struct ipam_rd *r);
uint32_t ipam_rd_u32(struct ipam_rd *r);
uint64_t ipam_rd_u64(struct ipam_rd *r);
/* A string of at most max bytes without NUL or control bytes, copied to a new NUL-terminated
 * allocation (NULL and r->bad on failure; *oom set when malloc failed). */
char *ipam_rd_str(struct ipam_rd *r, size_t max, bool allow_empty, bool *oom);
bool ipam_rd_addr(struct ipam_rd *r, struct ipam_addr *a);
bool ipam_rd_cidr(struct ipam_rd *r, struct ipam_cidr *c);

/* Pool record. */
struct ipam_pool_rec {
	struct ipam_pool pool;
	uint64_t blocks; /* block records that exist in the pool */
};
void ipam_pool_encode(struct ipam_buf *b, const struct ipam_pool_rec *p);
bool ipam_pool_decode(const uint8_t *p, size_t len, struct ipam_pool_rec *out);

void ipam_config_encode(struct ipam_buf *b, const struct ipam_config *c);
bool ipam_config_decode(const uint8_t *p, size_t len, struct ipam_config *out);

/* A block in memory: which ordinals are assigned, at which generation, and the free list. Who
 * holds an address is in its own ip record, so a block record stays small and fixed in size
 * however many different handles share it (a /20 block holds 4096): an assignment rewrites a
 * few hundred bytes, not every holder's strings. The free list is a FIFO kept as a ring:
 * allocation takes the head, release appends at the tail, so the address freed longest ago is
 * reused first (Calico). */
struct ipam_block {
	struct ipam_cidr cidr;
	char *affinity; /* malloc()ed host name, NULL for none */
	uint32_t size;
	int64_t *gen;   /* per ordinal: the generation holding it, 0 when free */
	uint16_t *ring; /* free ordinals, size entries */
	uint32_t head, n_free;
};

struct ipam_block *ipam_block_new(const struct ipam_cidr *cidr, const char *affinity);
void ipam_block_free(struct ipam_block *b);
/* Decode; NULL with *oom false means malformed. */
struct ipam_block *ipam_block_decode(const uint8_t *p, size_t len, bool *oom);
void ipam_block_encode(struct ipam_buf *b, const struct ipam_block *blk);
static inline uint32_t ipam_block_used(const struct ipam_block *b)
{
	return b->size - b->n_free;
}
/* Take a free ordinal: the head of the FIFO, or a given one (explicit address). */
uint32_t ipam_block_take_head(struct ipam_block *b);
bool ipam_block_take(struct ipam_block *b, uint32_t ordinal);
void ipam_block_put_back(struct ipam_block *b, uint32_t ordinal);
void ipam_block_addr(const struct ipam_block *b, uint32_t ordinal, struct ipam_addr *out);
uint32_t ipam_block_ordinal(const struct ipam_block *b, const struct ipam_addr *a);

/* An assigned address. Strings are malloc()ed. */
struct ipam_ip_rec {
	int64_t gen;
	uint64_t time_ms;
	uint8_t block_prefix;
	char *handle;
	char *node;
	unsigned n_attrs;
	char *keys[IPAM_ATTRS_MAX];
	char *values[IPAM_ATTRS_MAX];
};
void ipam_ip_encode(struct ipam_buf *b, int64_t gen, uint64_t time_ms, uint8_t block_prefix,
                    const char *handle, const char *node, const struct ipam_attr *attrs,
                    unsigned n_attrs);
/* Returns false when malformed (*oom tells OOM); free with ipam_ip_clear. */
bool ipam_ip_decode(const uint8_t *p, size_t len, struct ipam_ip_rec *out, bool *oom);
void ipam_ip_clear(struct ipam_ip_rec *r);

/* Handle record: (address, generation) pairs. */
struct ipam_handle_entry {
	struct ipam_addr addr;
	int64_t gen;
};
void ipam_handle_encode(struct ipam_buf *b, const struct ipam_handle_entry *e, unsigned n);
/* *out malloc()ed (NULL when n == 0). Returns false when malformed (*oom tells OOM). */
bool ipam_handle_decode(const uint8_t *p, size_t len, struct ipam_handle_entry **out, unsigned *n,
                        bool *oom);

/* Requests and replies. A decoded request owns its arrays and strings through mem. */
struct ipam_request_decoded {
	struct ipam_request req;
	void *mem;
};
/* Returns 0, -ENOMEM, or -EINVAL with *why set (static). */
int ipam_request_decode(const uint8_t *p, size_t len, struct ipam_request_decoded *out,
                        const char **why);
void ipam_request_decoded_free(struct ipam_request_decoded *d);
int ipam_reply_encode(const struct ipam_reply *r, uint8_t **buf, size_t *len);

#endif
