/*
 * The IPAM tests' harness: a real LMDB store (kv_open) with ipam_apply registered as IPAM_CALL,
 * requests proposed as KV_OP_CALL commands in batches that carry a leader time, replies decoded
 * with ipam_decode_reply, reads through kv_view_begin.
 *
 * Every command the harness applies is also checked against the contract of ipam.h that holds
 * for all of them: OK <=> KV_R_OK, a refusal carries a one-line message and leaves the state hash
 * and the store revision exactly as they were, an assignment's generation is the revision of its
 * command, and ipam_check() finds nothing afterwards.
 */
#ifndef TABBY_IPAM_TESTS_HARNESS_H
#define TABBY_IPAM_TESTS_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ipam/ipam.h"
#include "store/kv.h"

#define H_T0 1700000000000ULL /* leader time of the first batch; each batch adds 1000 */

struct h {
	char dir[64];
	struct kv *kv;
	uint64_t time_ms;   /* leader time of the next batch */
	bool check_each;    /* check refusals and run ipam_check after every batch (default) */
	int64_t last_rev;   /* store revision after the last command */
	uint64_t last_time; /* leader time of the last batch */
};

/* Open a fresh store in a new temporary directory with ipam_apply as IPAM_CALL and the extra
 * handlers (may be NULL). Fails the test on error. */
void h_open(struct h *h, const struct kv_handler *extra, unsigned n_extra);
/* Close the store and remove its directory. */
void h_close(struct h *h);

/* Apply one request in its own batch. *rep is filled (free with ipam_reply_free); returns
 * rep->error. The common contract (see above) is asserted. */
uint8_t h_req(struct h *h, const struct ipam_request *req, struct ipam_reply *rep);
/* The same, for requests whose reply the caller does not need beyond its error class. */
uint8_t h_req0(struct h *h, const struct ipam_request *req);
/* Apply n requests in one batch (one leader time); reps[i] for each; ids (may be NULL) are
 * the request ids. revs[i] (may be NULL) receives each command's revision. */
void h_batch(struct h *h, const struct ipam_request *reqs, const struct kv_reqid *ids, unsigned n,
             struct ipam_reply *reps, int64_t *revs, bool *duplicate);

/* Request builders. */
uint8_t h_put_pool(struct h *h, const char *cidr, uint8_t block_size);
uint8_t h_put_pools(struct h *h, const struct ipam_pool *pools, unsigned n);
uint8_t h_remove_pool(struct h *h, const char *cidr, bool force, struct ipam_reply *rep);
uint8_t h_config(struct h *h, bool strict);
/* Automatic assignment; pools is a NULL-terminated list of CIDR texts (NULL: every pool). */
uint8_t h_assign(struct h *h, const char *node, const char *handle, uint32_t num4, uint32_t num6,
                 const char *const *pools, struct ipam_reply *rep);
/* Explicit assignment of a NULL-terminated list of addresses. */
uint8_t h_assign_ips(struct h *h, const char *node, const char *handle, const char *const *ips,
                     struct ipam_reply *rep);
uint8_t h_assign_ip(struct h *h, const char *node, const char *handle, const char *ip,
                    struct ipam_reply *rep);
/* Release one address with a generation (0: any). */
uint8_t h_release_ip(struct h *h, const char *ip, int64_t gen, struct ipam_reply *rep);
uint8_t h_release_handle(struct h *h, const char *handle, struct ipam_reply *rep);
uint8_t h_remove_node(struct h *h, const char *node, struct ipam_reply *rep);

/* Parsing shortcuts that fail the test on bad input. */
struct ipam_addr h_addr(const char *s);
struct ipam_cidr h_cidr(const char *s);
struct ipam_pool h_pool(const char *cidr, uint8_t block_size);

/* ipam_check over a view: returns the number of problems and prints them. */
unsigned h_check(struct h *h, bool print);
/* Assert ipam_check finds nothing. */
void h_check_clean(struct h *h);
uint64_t h_hash(struct h *h);

/* Reads over a view (fail the test on error). Free the arrays with free(). */
void h_pools(struct h *h, struct ipam_pool **pools, unsigned *n);
void h_blocks(struct h *h, struct ipam_block_info **blocks, unsigned *n);
bool h_config_get(struct h *h);
/* Lookup: returns whether assigned; when out is non-NULL and the address is assigned, *out is
 * filled (free with ipam_alloc_free). */
bool h_lookup(struct h *h, const char *ip, struct ipam_alloc *out);
/* Number of addresses held by handle. */
unsigned h_handle_count(struct h *h, const char *handle);
/* Number of allocations in the store. */
unsigned h_alloc_count(struct h *h);

/* The block (by CIDR text) as ipam_list_blocks shows it; false when there is no such block. */
bool h_block(struct h *h, const char *cidr, struct ipam_block_info *out);

/* Text forms, returned by value so that h_fmt(&a).s lives to the end of the full expression. */
struct h_str {
	char s[IPAM_CIDR_STRLEN];
};
struct h_str h_fmt(const struct ipam_addr *a);
struct h_str h_fmtc(const struct ipam_cidr *c);

/* a + k (k added to the low-order bytes; no carry out of the address). */
struct ipam_addr h_addr_add(struct ipam_addr a, uint32_t k);
/* The block that contains the address, among the blocks that exist; false if none. */
bool h_block_of(struct h *h, const struct ipam_addr *a, struct ipam_block_info *out);
bool h_cidr_eq(const struct ipam_cidr *a, const struct ipam_cidr *b);

/* Whether the reply's addresses, as a set, are exactly the NULL-terminated list. */
bool h_reply_is(const struct ipam_reply *rep, const char *const *ips);

#endif
