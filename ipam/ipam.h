/*
 * IP address management inside the replicated state machine: pools, blocks with host affinity,
 * handles, generation numbers (calico-behaviour.md section 2, decided as deterministic commands).
 *
 * How it is used. The agent registers ipam_apply() with the store as the handler of domain
 * command IPAM_CALL. To change anything it encodes a struct ipam_request with
 * ipam_encode_request() and proposes it (store_write with a KV_OP_CALL); every replica runs
 * ipam_apply() over the same state and gets the same reply, which the proposer decodes with
 * ipam_decode_reply(). A refused request (reply error != IPAM_OK) changes nothing at all. Reads
 * (ipam_list_pools and friends) run over a read-only kv_tx view of the local replica.
 *
 * Records live in the store's DOMAIN keyspace under "ipam/" in a versioned binary encoding
 * (codec.c). Every allocation records the store revision of the command that made it as its
 * generation number: unique in the cluster, never reused, so a release that names a generation
 * can never free an address that has since been handed to someone else.
 *
 * Nothing here knows about raft, HTTP or JSON; nothing here reads the clock or a random source.
 */
#ifndef TABBY_IPAM_H
#define TABBY_IPAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/kv.h"

/* The domain command id of IPAM (struct kv_handler.call). */
#define IPAM_CALL 1

/* ------------------------------------------------------------------------------------------ */
/* Addresses and CIDRs                                                                         */

/* An IPv4 or IPv6 address. b holds network byte order; an IPv4 address uses b[0..3] and leaves
 * the rest zero, so two equal addresses are equal byte for byte. */
struct ipam_addr {
	uint8_t family; /* 4 or 6 */
	uint8_t b[16];
};

struct ipam_cidr {
	struct ipam_addr addr; /* the network address: host bits zero */
	uint8_t prefix;
};

#define IPAM_ADDR_STRLEN 46 /* INET6_ADDRSTRLEN */
#define IPAM_CIDR_STRLEN 50

/* Parse a textual address. Returns true on success. */
bool ipam_addr_parse(const char *s, struct ipam_addr *out);
/* Canonical text (inet_ntop). buf has IPAM_ADDR_STRLEN bytes; returns buf. */
char *ipam_addr_format(const struct ipam_addr *a, char *buf);

/* Parse "ADDR/PREFIX". The CIDR must be canonical (host bits zero). On failure writes one line
 * naming the value and the reason to err (for example "10.0.0.1/16 is not a canonical CIDR: host
 * bits are set (the network is 10.0.0.0/16)") and returns false. */
bool ipam_cidr_parse(const char *s, struct ipam_cidr *out, char *err, size_t errlen);
char *ipam_cidr_format(const struct ipam_cidr *c, char *buf); /* IPAM_CIDR_STRLEN bytes */
bool ipam_cidr_contains(const struct ipam_cidr *c, const struct ipam_addr *a);
bool ipam_cidr_equal(const struct ipam_cidr *a, const struct ipam_cidr *b);
bool ipam_cidr_overlap(const struct ipam_cidr *a, const struct ipam_cidr *b);

/* The fewest CIDRs that cover first..last (both included) exactly, in address order, as
 * calicoctl 0.x's `pool range add` split a range (netaddr's iprange_to_cidrs). Writes the first
 * max of them to out and returns how many there are (at most 2 * bits - 2: 62 for IPv4, 254 for
 * IPv6); 0 when first and last are not of one family or first is above last. */
#define IPAM_RANGE_CIDRS_MAX 254 /* the most ipam_range_cidrs() can need (IPv6) */
unsigned ipam_range_cidrs(const struct ipam_addr *first, const struct ipam_addr *last,
                          struct ipam_cidr *out, unsigned max);

/* Whether s (len bytes) is text IPAM stores: min..max bytes of well-formed UTF-8, no NUL, no
 * control character (C0, DEL, or C1). Handles, node names, attributes and selectors are checked
 * with it wherever they enter, so the agent refuses exactly what the state machine would. */
bool ipam_text_ok(const char *s, size_t len, size_t min, size_t max);

/* Makes the NUL-terminated s well-formed UTF-8 in place, replacing each byte that is not part of
 * a whole, shortest-form character (U+0000..U+10FFFF, no surrogates) with '?'. A message cut at
 * a byte limit (snprintf's size, "%.64s") can split a character of the text it quotes; JSON
 * holds only whole ones, so every message that quotes input and leaves as JSON passes here. */
void ipam_text_repair(char *s);

/* ------------------------------------------------------------------------------------------ */
/* Pools and configuration                                                                     */

enum ipam_encap { IPAM_ENCAP_NEVER = 0, IPAM_ENCAP_ALWAYS = 1, IPAM_ENCAP_CROSS_SUBNET = 2 };

/* "never", "always", "cross-subnet" (also accepted: Calico's "Never", "Always", "CrossSubnet").
 * Returns false for anything else. */
bool ipam_encap_parse(const char *s, uint8_t *out);
const char *ipam_encap_name(uint8_t encap);

#define IPAM_DEFAULT_BLOCK_V4 26
#define IPAM_DEFAULT_BLOCK_V6 122
#define IPAM_SELECTOR_MAX     1024

struct ipam_pool {
	struct ipam_cidr cidr;
	/* Prefix length of the pool's blocks. 0 in a request: the family default for a new pool,
	 * the current size for an existing one. */
	uint8_t block_size;
	uint8_t ipip;  /* enum ipam_encap; not allowed on IPv6 */
	uint8_t vxlan; /* enum ipam_encap */
	bool nat_outgoing;
	bool disabled;
	/* Set by a forced removal while addresses are still in use: the pool is disabled and goes
	 * away with its last address. Ignored in requests; a POOLS_PUT of the same CIDR cancels
	 * the removal. */
	bool removing;
	char node_selector[IPAM_SELECTOR_MAX]; /* "" means all(); see struct ipam_hooks */
};

/* The default pools a bootstrapped cluster gets: 192.168.0.0/16 and fd80:24e2:f998:72d6::/64. */
void ipam_default_pool(int family, struct ipam_pool *out);

/* Check a pool on its own (canonical CIDR, block size range 20-32 / 116-128, at least one
 * block, not link-local, no IP-in-IP on IPv6, not IP-in-IP and VXLAN together, encapsulation
 * values). With block_size 0 the
 * checks that depend on the block size are skipped: POOLS_PUT makes them once it knows whether
 * the pool exists. Overlap with other pools is checked by POOLS_PUT against the replicated state.
 * On failure writes one line that names the pool, the value and the reason to err and returns
 * false. */
bool ipam_pool_validate(const struct ipam_pool *p, char *err, size_t errlen);

struct ipam_config {
	bool strict_affinity; /* never borrow from another host's block */
};

/* ------------------------------------------------------------------------------------------ */
/* Requests                                                                                    */

enum ipam_request_type {
	/* Add pools, or update the options of pools with an identical CIDR. All or nothing. */
	IPAM_REQ_POOLS_PUT = 1,
	/* Remove pools (cidrs). Refused, with the count, while a pool has addresses in use, unless
	 * force; then the pool is disabled and marked removing until its last address goes. Empty
	 * blocks are deleted, the affinities of the others released. All or nothing. */
	IPAM_REQ_POOLS_REMOVE = 2,
	IPAM_REQ_CONFIG = 3, /* set config */
	/* Assign addresses to handle for node: the explicit ips, or num4 + num6 automatically,
	 * from the pools listed in cidrs (none listed: every enabled pool; either way, new blocks
	 * are claimed pool by pool in address order). All or nothing. */
	IPAM_REQ_ASSIGN = 4,
	/* Release addresses (items). An item with gen != 0 is released only if that generation
	 * still holds it. All or nothing: if any item is not assigned (or held by another
	 * generation), nothing is released and the reply names it. */
	IPAM_REQ_RELEASE = 5,
	/* Release every address of handle. */
	IPAM_REQ_RELEASE_HANDLE = 6,
	/* A node left the cluster: release its block affinities (empty blocks are deleted) and
	 * every address assigned for it. */
	IPAM_REQ_REMOVE_NODE = 7,
	/* Once per cluster, at bootstrap: create the default pool of each family asked for
	 * (num4/num6 non-zero) that has no pool yet. A second call changes nothing. */
	IPAM_REQ_INIT_DEFAULTS = 8,
};

/* Handles, node names, attribute keys and values: 1..IPAM_NAME_MAX bytes of printable ASCII or
 * UTF-8, no control characters (attribute values may be empty). At most IPAM_ATTRS_MAX
 * attributes, IPAM_ASSIGN_MAX addresses in one request. */
#define IPAM_NAME_MAX   253
#define IPAM_VALUE_MAX  1024
#define IPAM_ATTRS_MAX  16
#define IPAM_ASSIGN_MAX 256

struct ipam_attr {
	const char *key;
	const char *value;
};

struct ipam_release_item {
	struct ipam_addr addr;
	int64_t gen; /* 0: whichever allocation holds it now */
};

struct ipam_request {
	uint8_t type; /* enum ipam_request_type */
	/* POOLS_PUT */
	const struct ipam_pool *pools;
	unsigned n_pools;
	/* POOLS_REMOVE: the pools; ASSIGN: the pools to draw from */
	const struct ipam_cidr *cidrs;
	unsigned n_cidrs;
	bool force; /* POOLS_REMOVE */
	/* CONFIG */
	struct ipam_config config;
	/* ASSIGN, REMOVE_NODE: node; ASSIGN, RELEASE_HANDLE: handle */
	const char *node;
	const char *handle;
	const struct ipam_attr *attrs; /* ASSIGN */
	unsigned n_attrs;
	const struct ipam_addr *ips; /* ASSIGN: explicit addresses (then num4 = num6 = 0) */
	unsigned n_ips;
	uint32_t num4, num6;                   /* ASSIGN, INIT_DEFAULTS */
	const struct ipam_release_item *items; /* RELEASE */
	unsigned n_items;
};

/* Encode a request as a domain command payload (*buf malloc()ed). Checks only what the encoding
 * needs (lengths, counts); the meaning is checked by ipam_apply(). Returns 0 or -ENOMEM /
 * -EINVAL. */
int ipam_encode_request(const struct ipam_request *req, uint8_t **buf, size_t *len);

/* ------------------------------------------------------------------------------------------ */
/* Replies                                                                                     */

/* Which error a refusal carries, where it is not obvious: an explicit address outside every pool
 * or outside the requested pools is INVALID, one in a disabled or removing pool CONFLICT; a pool
 * filter naming no pool is NOTFOUND, a disabled pool CONFLICT; an automatic assignment that
 * strict affinity leaves short is EXHAUSTED, an explicit one in another node's block CONFLICT; a
 * block size change while the pool has blocks is CONFLICT; a pool, address or attribute key given
 * twice in one request is INVALID. When several things are wrong, the first in request order is
 * reported. Removing a node that holds nothing succeeds with count 0. */
enum ipam_error {
	IPAM_OK = 0,
	IPAM_E_INVALID = 1,   /* bad input: malformed, out of range, not allowed (HTTP 400) */
	IPAM_E_NOTFOUND = 2,  /* no such pool, address not assigned, unknown handle (404) */
	IPAM_E_INUSE = 3,     /* address already assigned, pool still in use (409) */
	IPAM_E_EXHAUSTED = 4, /* not enough free addresses (409) */
	IPAM_E_CONFLICT = 5,  /* overlap with another pool, strict affinity, stale gen (409) */
	/* A record the command needs does not decode (500). Every replica meets the same record,
	 * so the command is refused on all of them alike; stopping instead would stop every member
	 * again at each replay of the entry. `tabby ipam check` names the record. */
	IPAM_E_CORRUPT = 6,
};

const char *ipam_error_code(uint8_t error); /* "invalid", "not_found", "in_use", ... */

struct ipam_assigned {
	struct ipam_addr addr;
	int64_t gen;
	struct ipam_cidr block;
};

struct ipam_reply {
	uint8_t error;  /* enum ipam_error */
	char *message;  /* error: one line naming the value and the reason; NULL when IPAM_OK */
	uint64_t count; /* POOLS_REMOVE refused: addresses in use; RELEASE*: addresses released;
	                 * INIT_DEFAULTS: the pools it made (0 after the first call) */
	/* ASSIGN: the addresses assigned; RELEASE, RELEASE_HANDLE, REMOVE_NODE: released */
	struct ipam_assigned *addrs;
	unsigned n_addrs;
};

/* Decode a reply (from kv_result.reply). Returns 0, -ENOMEM or -EINVAL (malformed). */
int ipam_decode_reply(const uint8_t *buf, size_t len, struct ipam_reply *out);
void ipam_reply_free(struct ipam_reply *r);

/* Whether a pool's node selector selects a node. IPAM stores selectors but does not speak the
 * selector language (that is the policy module's, above it): the agent passes this as the
 * handler's data. node_selected() must be deterministic, like everything in a command: it may
 * read the replicated state through tx, never anything local to the host. */
struct ipam_hooks {
	bool (*node_selected)(void *arg, struct kv_tx *tx, const char *selector, const char *node);
	void *arg;
};

/* The domain command handler (kv_call_fn). data is a const struct ipam_hooks * or NULL; without
 * hooks every node selector selects every node. An automatic assignment draws only from pools
 * whose node selector (empty: all()) selects the node; explicit addresses ignore selectors, as
 * Calico's AssignIP does. */
int ipam_apply(void *data, struct kv_tx *tx, struct kv_bytes payload, struct kv_call_out *out);

/* ------------------------------------------------------------------------------------------ */
/* Queries over a read-only view (or inside a command)                                          */
/* All return 0, -ENOMEM, -EIO (the store failed) or -EBADMSG (a record does not decode: a
 * command that meets one refuses, it must not stop the replica). Output arrays are malloc()ed;
 * free them with the matching function. */

/* Every pool (removing ones included), IPv4 first, each family in address order. */
int ipam_list_pools(struct kv_tx *tx, struct ipam_pool **pools, unsigned *n);
int ipam_get_config(struct kv_tx *tx, struct ipam_config *cfg);

struct ipam_block_info {
	struct ipam_cidr cidr;
	struct ipam_cidr pool; /* the pool it belongs to (family 0 if the pool is gone) */
	char affinity[IPAM_NAME_MAX + 1]; /* host name, "" for none */
	uint32_t size, used;
};
int ipam_list_blocks(struct kv_tx *tx, struct ipam_block_info **blocks, unsigned *n);

/* One allocation, as ipam_foreach_alloc and ipam_lookup_ip report it. Strings are valid
 * during the callback (foreach) or until ipam_alloc_free (lookup). */
struct ipam_alloc {
	struct ipam_addr addr;
	int64_t gen;
	uint64_t time_ms; /* leader time of the assignment */
	struct ipam_cidr block;
	const char *handle;
	const char *node;
	const char *affinity; /* of the block, "" for none */
	struct ipam_attr *attrs;
	unsigned n_attrs;
	void *mem; /* private */
};

/* *found tells whether the address is assigned; if so out is filled (free with
 * ipam_alloc_free). */
int ipam_lookup_ip(struct kv_tx *tx, const struct ipam_addr *a, bool *found,
                   struct ipam_alloc *out);
void ipam_alloc_free(struct ipam_alloc *a);

/* Calls fn for every allocation in address order; a non-zero return stops and is returned. */
typedef int (*ipam_alloc_fn)(void *arg, const struct ipam_alloc *a);
int ipam_foreach_alloc(struct kv_tx *tx, ipam_alloc_fn fn, void *arg);

/*
 * One changed IPAM key, as a watcher of the "ipam/" prefix sees it (the agent's route sync, which
 * must tell the changes routes depend on from the many that they do not). For an address record,
 * addr is the address and, when the change carries the record (not a deletion), block and name
 * are the block it was assigned from and the node holding it. For a block record, addr is the
 * block's base and, with the record, block is the block and name its affinity ("" for none). For
 * a handle record, name is the handle. Any other key is IPAM_CHANGE_OTHER.
 */
enum ipam_change_kind { IPAM_CHANGE_OTHER, IPAM_CHANGE_IP, IPAM_CHANGE_BLOCK, IPAM_CHANGE_HANDLE };
struct ipam_change {
	enum ipam_change_kind kind;
	bool has_record; /* IP and BLOCK: value given (false for a deletion) */
	struct ipam_addr addr;
	struct ipam_cidr block;
	char name[IPAM_NAME_MAX + 1];
};
/* Decode the change of key to value (vlen 0: deleted). Returns 0, -EBADMSG when the key or the
 * record is malformed, or -ENOMEM. */
int ipam_change_decode(const uint8_t *key, size_t klen, const uint8_t *value, size_t vlen,
                       struct ipam_change *out);

/* The addresses of a handle (none: *n == 0). */
int ipam_handle_addrs(struct kv_tx *tx, const char *handle, struct ipam_assigned **addrs,
                      unsigned *n);

/* Usage per pool: addresses in the pool (as a decimal string: an IPv6 pool may hold more than
 * 2^64) and in use. */
struct ipam_pool_usage {
	struct ipam_cidr cidr;
	char total[40];
	uint64_t in_use;
	uint64_t blocks;
};
int ipam_pool_usage(struct kv_tx *tx, struct ipam_pool_usage **usage, unsigned *n);

/* Verify every invariant of the IPAM records (blocks inside pools and aligned, free list and
 * allocations partitioning each block, handles and blocks agreeing both ways with the same
 * generations, affinity indexes matching the blocks, no empty unaffine block left behind, pool
 * counters). fn(arg, line) is called once per problem with a one-line description; *problems
 * counts them. */
typedef void (*ipam_problem_fn)(void *arg, const char *line);
int ipam_check(struct kv_tx *tx, ipam_problem_fn fn, void *arg, unsigned *problems);

#endif
