/* The IPAM tests' harness (see harness.h). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <raft.h>

#include "ipam/tests/harness.h"

void h_open(struct h *h, const struct kv_handler *extra, unsigned n_extra)
{
	struct kv_handler hs[8];
	struct kv_config cfg = {.map_size = 256u << 20};

	assert_true(n_extra < 8);
	memset(h, 0, sizeof *h);
	hs[0] = (struct kv_handler){.call = IPAM_CALL, .fn = ipam_apply, .data = NULL};
	for (unsigned i = 0; i < n_extra; i++) {
		hs[i + 1] = extra[i];
	}
	cfg.handlers = hs;
	cfg.n_handlers = n_extra + 1;
	strcpy(h->dir, "/tmp/test_ipam.XXXXXX");
	assert_non_null(mkdtemp(h->dir));
	assert_int_equal(kv_open(&h->kv, h->dir, &cfg), KV_OK);
	h->time_ms = H_T0;
	h->check_each = true;
}

void h_close(struct h *h)
{
	char path[128];

	if (h->kv == NULL) {
		return;
	}
	kv_close(h->kv);
	h->kv = NULL;
	snprintf(path, sizeof path, "%s/data.mdb", h->dir);
	unlink(path);
	snprintf(path, sizeof path, "%s/lock.mdb", h->dir);
	unlink(path);
	rmdir(h->dir);
}

uint64_t h_hash(struct h *h)
{
	uint64_t v;
	assert_int_equal(kv_hash(h->kv, &v), KV_OK);
	return v;
}

static void print_problem(void *arg, const char *line)
{
	if (arg != NULL) {
		fprintf(stderr, "ipam_check: %s\n", line);
	}
}

unsigned h_check(struct h *h, bool print)
{
	struct kv_tx *tx;
	unsigned problems = 0;
	int rv;

	assert_int_equal(kv_view_begin(h->kv, &tx), KV_OK);
	rv = ipam_check(tx, print_problem, print ? h : NULL, &problems);
	kv_view_end(tx);
	if (rv != 0) {
		/* A record the check cannot decode is a problem too (ipam.h: -EBADMSG). */
		assert_int_equal(rv, -EBADMSG);
		problems++;
	}
	return problems;
}

void h_check_clean(struct h *h)
{
	assert_int_equal(h_check(h, true), 0);
}

/* The contract every reply must meet. */
static void check_reply(const struct ipam_request *req, const struct kv_result *res,
                        int64_t prev_rev, struct ipam_reply *rep)
{
	assert_true(res->status == KV_R_OK || res->status == KV_R_REFUSED);
	assert_non_null(res->reply);
	assert_int_equal(ipam_decode_reply(res->reply, res->reply_len, rep), 0);
	assert_true(rep->error <= IPAM_E_CORRUPT);
	assert_int_equal(rep->error == IPAM_OK, res->status == KV_R_OK);
	if (rep->error != IPAM_OK) {
		assert_non_null(rep->message);
		assert_true(rep->message[0] != '\0');
		assert_null(strchr(rep->message, '\n'));
		/* A refusal reports no addresses, and a count only for a pool still in use. */
		assert_int_equal(rep->n_addrs, 0);
		if (req->type != IPAM_REQ_POOLS_REMOVE || rep->error != IPAM_E_INUSE) {
			assert_int_equal(rep->count, 0);
		}
		/* Nothing changed: no revision was taken. */
		assert_int_equal(res->revision, prev_rev);
		return;
	}
	assert_null(rep->message);
	for (unsigned i = 0; i < rep->n_addrs; i++) {
		const struct ipam_assigned *a = &rep->addrs[i];
		struct ipam_addr masked = a->addr;
		unsigned bits = a->addr.family == 4 ? 32 : 128;

		assert_true(a->addr.family == 4 || a->addr.family == 6);
		assert_int_equal(a->block.addr.family, a->addr.family);
		assert_true(ipam_cidr_contains(&a->block, &a->addr));
		/* The block is aligned: its address has no host bits. */
		for (unsigned bit = a->block.prefix; bit < bits; bit++) {
			masked.b[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
		}
		assert_memory_equal(masked.b, a->block.addr.b, 16);
		if (req->type == IPAM_REQ_ASSIGN) {
			/* The generation of an assignment is the revision of its command. */
			assert_int_equal(a->gen, res->revision);
		} else {
			assert_true(a->gen > 0 && a->gen <= prev_rev);
		}
		for (unsigned j = 0; j < i; j++) {
			assert_false(memcmp(&rep->addrs[j].addr, &a->addr, sizeof a->addr) == 0);
		}
	}
	if (req->type == IPAM_REQ_ASSIGN) {
		assert_int_equal(rep->n_addrs, req->n_ips > 0 ? req->n_ips : req->num4 + req->num6);
		assert_true(res->revision > prev_rev);
	}
	if (req->type == IPAM_REQ_RELEASE) {
		assert_int_equal(rep->n_addrs, req->n_items);
	}
	if (req->type == IPAM_REQ_RELEASE || req->type == IPAM_REQ_RELEASE_HANDLE ||
	    req->type == IPAM_REQ_REMOVE_NODE) {
		assert_int_equal(rep->count, rep->n_addrs);
	}
}

void h_batch(struct h *h, const struct ipam_request *reqs, const struct kv_reqid *ids, unsigned n,
             struct ipam_reply *reps, int64_t *revs, bool *duplicate)
{
	struct kv_cmd *cmds = calloc(n, sizeof *cmds);
	uint8_t **bufs = calloc(n, sizeof *bufs);
	struct kv_apply_out out;
	uint64_t hash0 = h->check_each ? h_hash(h) : 0;
	int64_t rev0 = kv_revision(h->kv), prev;
	bool changed = false;
	void *batch;
	size_t blen;

	assert_non_null(cmds);
	assert_non_null(bufs);
	for (unsigned i = 0; i < n; i++) {
		size_t len;
		assert_int_equal(ipam_encode_request(&reqs[i], &bufs[i], &len), 0);
		cmds[i].op.type = KV_OP_CALL;
		cmds[i].op.call = IPAM_CALL;
		cmds[i].op.value.data = bufs[i];
		cmds[i].op.value.len = len;
		if (ids != NULL) {
			cmds[i].id = ids[i];
		}
	}
	assert_int_equal(kv_encode_batch(cmds, n, h->time_ms, &batch, &blen), KV_OK);
	assert_int_equal(kv_apply(h->kv, batch, blen, &out), KV_OK);
	raft_free(batch);
	assert_int_equal(out.n_results, n);
	prev = rev0;
	for (unsigned i = 0; i < n; i++) {
		const struct kv_result *res = &out.results[i];
		if (duplicate != NULL) {
			duplicate[i] = res->duplicate;
		}
		if (res->duplicate) {
			/* A remembered result: decode it, nothing else can be said. */
			assert_int_equal(ipam_decode_reply(res->reply, res->reply_len, &reps[i]),
			                 0);
		} else {
			check_reply(&reqs[i], res, prev, &reps[i]);
			if (reps[i].error == IPAM_OK) {
				changed = true;
			}
			prev = res->revision;
		}
		if (revs != NULL) {
			revs[i] = res->revision;
		}
		free(bufs[i]);
	}
	h->last_rev = out.revision;
	h->last_time = h->time_ms;
	h->time_ms += 1000;
	kv_apply_out_free(&out);
	free(bufs);
	free(cmds);
	if (!changed && h->check_each) {
		/* Only refusals (or remembered results): the state is exactly as it was. */
		assert_int_equal(kv_revision(h->kv), rev0);
		assert_true(h_hash(h) == hash0);
	}
	if (h->check_each) {
		h_check_clean(h);
	}
}

uint8_t h_req(struct h *h, const struct ipam_request *req, struct ipam_reply *rep)
{
	h_batch(h, req, NULL, 1, rep, NULL, NULL);
	return rep->error;
}

uint8_t h_req0(struct h *h, const struct ipam_request *req)
{
	struct ipam_reply rep;
	uint8_t e = h_req(h, req, &rep);
	ipam_reply_free(&rep);
	return e;
}

struct ipam_addr h_addr(const char *s)
{
	struct ipam_addr a;
	if (!ipam_addr_parse(s, &a)) {
		fail_msg("bad address in test: %s", s);
	}
	return a;
}

struct ipam_cidr h_cidr(const char *s)
{
	struct ipam_cidr c;
	char err[256];
	if (!ipam_cidr_parse(s, &c, err, sizeof err)) {
		fail_msg("bad CIDR in test: %s", err);
	}
	return c;
}

struct ipam_pool h_pool(const char *cidr, uint8_t block_size)
{
	struct ipam_pool p;
	memset(&p, 0, sizeof p);
	p.cidr = h_cidr(cidr);
	p.block_size = block_size;
	return p;
}

uint8_t h_put_pools(struct h *h, const struct ipam_pool *pools, unsigned n)
{
	struct ipam_request req = {.type = IPAM_REQ_POOLS_PUT, .pools = pools, .n_pools = n};
	return h_req0(h, &req);
}

uint8_t h_put_pool(struct h *h, const char *cidr, uint8_t block_size)
{
	struct ipam_pool p = h_pool(cidr, block_size);
	return h_put_pools(h, &p, 1);
}

static uint8_t maybe_free(struct h *h, const struct ipam_request *req, struct ipam_reply *rep)
{
	if (rep != NULL) {
		return h_req(h, req, rep);
	}
	return h_req0(h, req);
}

uint8_t h_remove_pool(struct h *h, const char *cidr, bool force, struct ipam_reply *rep)
{
	struct ipam_cidr c = h_cidr(cidr);
	struct ipam_request req = {
	    .type = IPAM_REQ_POOLS_REMOVE, .cidrs = &c, .n_cidrs = 1, .force = force};
	return maybe_free(h, &req, rep);
}

uint8_t h_config(struct h *h, bool strict)
{
	struct ipam_request req = {.type = IPAM_REQ_CONFIG, .config = {.strict_affinity = strict}};
	return h_req0(h, &req);
}

uint8_t h_assign(struct h *h, const char *node, const char *handle, uint32_t num4, uint32_t num6,
                 const char *const *pools, struct ipam_reply *rep)
{
	struct ipam_cidr cidrs[16];
	unsigned n = 0;
	struct ipam_request req = {
	    .type = IPAM_REQ_ASSIGN, .node = node, .handle = handle, .num4 = num4, .num6 = num6};

	for (; pools != NULL && pools[n] != NULL; n++) {
		assert_true(n < 16);
		cidrs[n] = h_cidr(pools[n]);
	}
	req.cidrs = cidrs;
	req.n_cidrs = n;
	return maybe_free(h, &req, rep);
}

uint8_t h_assign_ips(struct h *h, const char *node, const char *handle, const char *const *ips,
                     struct ipam_reply *rep)
{
	struct ipam_addr addrs[64];
	unsigned n = 0;
	struct ipam_request req = {.type = IPAM_REQ_ASSIGN, .node = node, .handle = handle};

	for (; ips[n] != NULL; n++) {
		assert_true(n < 64);
		addrs[n] = h_addr(ips[n]);
	}
	req.ips = addrs;
	req.n_ips = n;
	return maybe_free(h, &req, rep);
}

uint8_t h_assign_ip(struct h *h, const char *node, const char *handle, const char *ip,
                    struct ipam_reply *rep)
{
	const char *ips[] = {ip, NULL};
	return h_assign_ips(h, node, handle, ips, rep);
}

uint8_t h_release_ip(struct h *h, const char *ip, int64_t gen, struct ipam_reply *rep)
{
	struct ipam_release_item item = {.addr = h_addr(ip), .gen = gen};
	struct ipam_request req = {.type = IPAM_REQ_RELEASE, .items = &item, .n_items = 1};
	return maybe_free(h, &req, rep);
}

uint8_t h_release_handle(struct h *h, const char *handle, struct ipam_reply *rep)
{
	struct ipam_request req = {.type = IPAM_REQ_RELEASE_HANDLE, .handle = handle};
	return maybe_free(h, &req, rep);
}

uint8_t h_remove_node(struct h *h, const char *node, struct ipam_reply *rep)
{
	struct ipam_request req = {.type = IPAM_REQ_REMOVE_NODE, .node = node};
	return maybe_free(h, &req, rep);
}

void h_pools(struct h *h, struct ipam_pool **pools, unsigned *n)
{
	struct kv_tx *tx;
	assert_int_equal(kv_view_begin(h->kv, &tx), KV_OK);
	assert_int_equal(ipam_list_pools(tx, pools, n), 0);
	kv_view_end(tx);
}

void h_blocks(struct h *h, struct ipam_block_info **blocks, unsigned *n)
{
	struct kv_tx *tx;
	assert_int_equal(kv_view_begin(h->kv, &tx), KV_OK);
	assert_int_equal(ipam_list_blocks(tx, blocks, n), 0);
	kv_view_end(tx);
}

bool h_config_get(struct h *h)
{
	struct kv_tx *tx;
	struct ipam_config cfg;
	assert_int_equal(kv_view_begin(h->kv, &tx), KV_OK);
	assert_int_equal(ipam_get_config(tx, &cfg), 0);
	kv_view_end(tx);
	return cfg.strict_affinity;
}

bool h_lookup(struct h *h, const char *ip, struct ipam_alloc *out)
{
	struct kv_tx *tx;
	struct ipam_addr a = h_addr(ip);
	struct ipam_alloc tmp;
	bool found = false;

	assert_int_equal(kv_view_begin(h->kv, &tx), KV_OK);
	assert_int_equal(ipam_lookup_ip(tx, &a, &found, out != NULL ? out : &tmp), 0);
	kv_view_end(tx);
	if (found && out == NULL) {
		ipam_alloc_free(&tmp);
	}
	return found;
}

unsigned h_handle_count(struct h *h, const char *handle)
{
	struct kv_tx *tx;
	struct ipam_assigned *addrs = NULL;
	unsigned n = 0;

	assert_int_equal(kv_view_begin(h->kv, &tx), KV_OK);
	assert_int_equal(ipam_handle_addrs(tx, handle, &addrs, &n), 0);
	kv_view_end(tx);
	free(addrs);
	return n;
}

static int count_cb(void *arg, const struct ipam_alloc *a)
{
	(void)a;
	(*(unsigned *)arg)++;
	return 0;
}

unsigned h_alloc_count(struct h *h)
{
	struct kv_tx *tx;
	unsigned n = 0;

	assert_int_equal(kv_view_begin(h->kv, &tx), KV_OK);
	assert_int_equal(ipam_foreach_alloc(tx, count_cb, &n), 0);
	kv_view_end(tx);
	return n;
}

bool h_block(struct h *h, const char *cidr, struct ipam_block_info *out)
{
	struct ipam_block_info *b;
	struct ipam_cidr c = h_cidr(cidr);
	unsigned n;
	bool found = false;

	h_blocks(h, &b, &n);
	for (unsigned i = 0; i < n; i++) {
		if (b[i].cidr.prefix == c.prefix &&
		    memcmp(&b[i].cidr.addr, &c.addr, sizeof c.addr) == 0) {
			if (out != NULL) {
				*out = b[i];
			}
			found = true;
		}
	}
	free(b);
	return found;
}

struct h_str h_fmt(const struct ipam_addr *a)
{
	struct h_str r;
	ipam_addr_format(a, r.s);
	return r;
}

struct h_str h_fmtc(const struct ipam_cidr *c)
{
	struct h_str r;
	ipam_cidr_format(c, r.s);
	return r;
}

bool h_reply_is(const struct ipam_reply *rep, const char *const *ips)
{
	unsigned n = 0;

	for (; ips[n] != NULL; n++) {
		struct ipam_addr a = h_addr(ips[n]);
		bool found = false;
		for (unsigned i = 0; i < rep->n_addrs; i++) {
			if (memcmp(&rep->addrs[i].addr, &a, sizeof a) == 0) {
				found = true;
			}
		}
		if (!found) {
			return false;
		}
	}
	return n == rep->n_addrs;
}

struct ipam_addr h_addr_add(struct ipam_addr a, uint32_t k)
{
	int last = a.family == 4 ? 3 : 15;
	uint32_t carry = k;

	for (int i = last; i >= 0 && carry != 0; i--) {
		uint32_t v = a.b[i] + (carry & 0xff);
		a.b[i] = (uint8_t)v;
		carry = (carry >> 8) + (v >> 8);
	}
	return a;
}

bool h_block_of(struct h *h, const struct ipam_addr *a, struct ipam_block_info *out)
{
	struct ipam_block_info *b;
	unsigned n;
	bool found = false;

	h_blocks(h, &b, &n);
	for (unsigned i = 0; i < n; i++) {
		if (ipam_cidr_contains(&b[i].cidr, a)) {
			if (out != NULL) {
				*out = b[i];
			}
			found = true;
		}
	}
	free(b);
	return found;
}

bool h_cidr_eq(const struct ipam_cidr *a, const struct ipam_cidr *b)
{
	return a->prefix == b->prefix && memcmp(&a->addr, &b->addr, sizeof a->addr) == 0;
}
