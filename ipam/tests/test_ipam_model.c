/*
 * Model-based test of the IPAM state machine.
 *
 * Long random command sequences (seeds 1..5, 700 steps each by default, about 12 s under
 * ASan; a failure prints its seed and step, and TABBY_IPAM_SEED / TABBY_IPAM_STEPS replay one
 * seed, or run a longer campaign) run against the real state machine (harness.c: ipam_apply on a
 * real LMDB store, commands in batches of one to three) and against a deliberately simple
 * reference model written here from ipam.h alone: plain arrays of pools, blocks (with their free
 * lists) and per-address allocations, straightforward loops.
 *
 * The address universe is 10.0.0.0/22 and fd00::/118 (1024 addresses each). Pools are drawn
 * from a fixed list of small CIDRs that overlap one another in places (/23 .. /27, /119 ..
 * /123) plus one link-local CIDR per family; block sizes /24../32 and /120../128 (plus invalid
 * ones), so that exhaustion, borrowing, forced removal and block deletion happen all the time.
 *
 * What the model predicts exactly, for every command:
 *   - the error class of the reply (all-or-nothing; where several things are wrong the first in
 *     request order wins, which is what "the reply names it" means for a list);
 *   - POOLS_PUT / POOLS_REMOVE / CONFIG / INIT_DEFAULTS: the resulting pools and config, and the
 *     in-use count of a refused removal;
 *   - explicit ASSIGN: the exact addresses, the block each lands in, a new block's affinity;
 *   - RELEASE, RELEASE_HANDLE, REMOVE_NODE: the exact addresses released, with generation and
 *     block; which blocks are deleted (empty and unaffine, or empty in a removing pool) and
 *     which pools go away (removing, no block left).
 * What it does not predict: which block an automatic assignment takes, because Calico leaves
 * that to a host-seeded walk (and the order among a host's affine blocks is not in the
 * contract). For automatic ASSIGN the model predicts success or EXHAUSTED exactly (from the
 * capacity: the host's affine blocks, unclaimed block slots, and unless strict affinity is on
 * the free addresses of other blocks, in the allowed pools), then checks that the addresses the
 * state machine chose are a legal answer:
 *   - every address is free, in an enabled pool of the right family that the request allows;
 *   - inside a block the addresses are the head of its free list (FIFO; addresses freed by one
 *     command may come in any order among themselves); a new block's are its first ordinals;
 *   - a host's affine blocks are used up before it claims a new block or borrows, it claims
 *     before it borrows (no unclaimed slot is left in an allowed pool when it borrows), it never
 *     borrows under strict affinity, and in each of the three phases at most one block it took
 *     from is left with room;
 * and from then on follows the state machine's choice.
 *
 * After every batch the model's view is compared in full with the queries: ipam_list_pools,
 * ipam_list_blocks (cidr, pool, affinity, size, used), ipam_foreach_alloc (address, handle,
 * node, generation, leader time, block, affinity, attributes), ipam_handle_addrs for every
 * handle, ipam_pool_usage and ipam_get_config; ipam_check must be clean (harness.c). A second
 * store gets the same batches and must give the same replies and the same kv_hash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ipam/tests/harness.h"

#define NV        1024 /* addresses per family in the universe */
#define UNIV      (2 * NV)
#define MAXBS     256 /* the largest block the generator can make (a /24 or /120) */
#define MAXBLOCKS UNIV
#define NNODES    5 /* n0..n3 assign; n4 only ever gets removed */
#define NHANDLES  12
#define BATCH_MAX 3

static const char *const NODES[NNODES] = {"n0", "n1", "n2", "n3", "n4"};
static const char *const HANDLES[NHANDLES] = {"h0", "h1", "h2", "h3", "h4",  "h5",
                                              "h6", "h7", "h8", "h9", "h10", "h11"};

/* Attribute sets an assignment may carry. */
#define NATTRSETS 3
static const struct ipam_attr ATTRS1[] = {{"container", "c1"}};
static const struct ipam_attr ATTRS2[] = {{"container", "c2"}, {"netns", "/var/run/netns/c2"}};
static const struct {
	const struct ipam_attr *a;
	unsigned n;
} ATTRSETS[NATTRSETS] = {{NULL, 0}, {ATTRS1, 1}, {ATTRS2, 2}};

/* The pools the generator may name. */
static const struct cand {
	const char *text;
	uint8_t fam;
	uint32_t start; /* offset of the first address in its family's universe */
	uint8_t prefix;
	bool link_local; /* never valid, outside the universe */
} CANDS[] = {
    {"10.0.0.0/24", 4, 0, 24, false},      {"10.0.1.0/24", 4, 256, 24, false},
    {"10.0.0.0/23", 4, 0, 23, false},      {"10.0.2.0/25", 4, 512, 25, false},
    {"10.0.2.128/25", 4, 640, 25, false},  {"10.0.2.0/24", 4, 512, 24, false},
    {"10.0.3.0/26", 4, 768, 26, false},    {"10.0.3.64/27", 4, 832, 27, false},
    {"10.0.3.128/25", 4, 896, 25, false},  {"169.254.1.0/24", 4, 0, 24, true},
    {"fd00::/120", 6, 0, 120, false},      {"fd00::100/120", 6, 256, 120, false},
    {"fd00::/119", 6, 0, 119, false},      {"fd00::200/121", 6, 512, 121, false},
    {"fd00::280/121", 6, 640, 121, false}, {"fd00::300/122", 6, 768, 122, false},
    {"fd00::340/123", 6, 832, 123, false}, {"fe80::/120", 6, 0, 120, true},
};
#define NCANDS ((int)(sizeof CANDS / sizeof CANDS[0]))

/* ------------------------------------------------------------------------------------------ */
/* The model                                                                                   */

struct m_pool {
	bool live;
	uint8_t bs, ipip, vxlan;
	bool nat, disabled, removing;
	char sel[IPAM_SELECTOR_MAX];
};

struct m_block {
	bool live;
	int pool; /* candidate index */
	int u0;   /* universe index of its first address */
	uint32_t size;
	int aff;    /* node index, -1 for none */
	uint32_t n; /* free ordinals, in free-list order */
	uint16_t ord[MAXBS];
	uint32_t grp[MAXBS]; /* entries freed by one command share a group */
};

struct m_alloc {
	bool used;
	int handle, node, attrs;
	int64_t gen;
	uint64_t time;
};

struct model {
	struct m_pool pools[NCANDS];
	struct m_block blocks[MAXBLOCKS];
	int top;          /* blocks[top..] are all free */
	int blk_of[UNIV]; /* block index holding each address, -1 */
	struct m_alloc a[UNIV];
	bool strict;
	uint32_t next_grp;
	struct ipam_cidr cidr[NCANDS];
	int sorted[NCANDS]; /* candidates by family, then first address */
	/* What the runs exercised: addresses taken from affine, new and borrowed blocks; forced
	 * removals of pools in use; blocks deleted. */
	unsigned phase_addrs[4], forced_in_use, blocks_deleted;
};

static uint8_t u_fam(int u)
{
	return u < NV ? 4 : 6;
}

static uint32_t u_off(int u)
{
	return (uint32_t)u % NV;
}

static struct ipam_addr u_addr(int u)
{
	struct ipam_addr a;
	memset(&a, 0, sizeof a);
	a.family = u_fam(u);
	if (a.family == 4) {
		a.b[0] = 10;
		a.b[2] = (uint8_t)(u_off(u) >> 8);
		a.b[3] = (uint8_t)u_off(u);
	} else {
		a.b[0] = 0xfd;
		a.b[14] = (uint8_t)(u_off(u) >> 8);
		a.b[15] = (uint8_t)u_off(u);
	}
	return a;
}

static struct h_str u_str(int u)
{
	struct ipam_addr a = u_addr(u);
	return h_fmt(&a);
}

/* The universe index of an address, -1 outside. */
static int u_index(const struct ipam_addr *a)
{
	static const uint8_t zero[16] = {0};
	if (a->family == 4 && a->b[0] == 10 && a->b[1] == 0 && (a->b[2] << 8 | a->b[3]) < NV &&
	    memcmp(a->b + 4, zero, 12) == 0) {
		return a->b[2] << 8 | a->b[3];
	}
	if (a->family == 6 && a->b[0] == 0xfd && memcmp(a->b + 1, zero, 13) == 0 &&
	    (a->b[14] << 8 | a->b[15]) < NV) {
		return NV + (a->b[14] << 8 | a->b[15]);
	}
	return -1;
}

static unsigned fam_bits(uint8_t fam)
{
	return fam == 4 ? 32 : 128;
}

static uint32_t cand_size(int ci)
{
	return 1u << (fam_bits(CANDS[ci].fam) - CANDS[ci].prefix);
}

static uint32_t block_size(uint8_t fam, uint8_t bs)
{
	return 1u << (fam_bits(fam) - bs);
}

static bool cands_overlap(int a, int b)
{
	uint32_t ae = CANDS[a].start + cand_size(a), be = CANDS[b].start + cand_size(b);
	if (CANDS[a].fam != CANDS[b].fam || CANDS[a].link_local != CANDS[b].link_local) {
		return false;
	}
	return CANDS[a].start < be && CANDS[b].start < ae;
}

static bool usable(const struct model *m, int ci)
{
	return m->pools[ci].live && !m->pools[ci].disabled && !m->pools[ci].removing;
}

/* The live pool containing address u, -1. */
static int pool_of(const struct model *m, int u)
{
	for (int ci = 0; ci < NCANDS; ci++) {
		if (m->pools[ci].live && !CANDS[ci].link_local && CANDS[ci].fam == u_fam(u) &&
		    u_off(u) >= CANDS[ci].start && u_off(u) < CANDS[ci].start + cand_size(ci)) {
			return ci;
		}
	}
	return -1;
}

static unsigned blocks_in_pool(const struct model *m, int ci)
{
	unsigned n = 0;
	for (int b = 0; b < m->top; b++) {
		n += m->blocks[b].live && m->blocks[b].pool == ci;
	}
	return n;
}

static uint32_t used_of(const struct m_block *b)
{
	return b->size - b->n;
}

/* The universe index of the first address of the block of pool ci that would hold u. */
static int block_base(const struct model *m, int ci, int u)
{
	uint32_t bsz = block_size(CANDS[ci].fam, m->pools[ci].bs);
	return u - (int)(u_off(u) % bsz);
}

static int block_new(struct model *m, int ci, int u0, int aff)
{
	for (int bi = 0; bi < MAXBLOCKS; bi++) {
		struct m_block *b = &m->blocks[bi];
		if (b->live) {
			continue;
		}
		if (bi >= m->top) {
			m->top = bi + 1;
		}
		b->live = true;
		b->pool = ci;
		b->u0 = u0;
		b->size = block_size(CANDS[ci].fam, m->pools[ci].bs);
		assert_true(b->size <= MAXBS);
		b->aff = aff;
		b->n = b->size;
		for (uint32_t k = 0; k < b->size; k++) {
			b->ord[k] = (uint16_t)k;
			b->grp[k] = m->next_grp++;
			assert_int_equal(m->blk_of[u0 + (int)k], -1);
			m->blk_of[u0 + (int)k] = bi;
		}
		return bi;
	}
	fail_msg("model: out of blocks");
	return -1;
}

static void block_del(struct model *m, int bi)
{
	struct m_block *b = &m->blocks[bi];
	for (uint32_t k = 0; k < b->size; k++) {
		m->blk_of[b->u0 + (int)k] = -1;
	}
	b->live = false;
	m->blocks_deleted++;
	while (m->top > 0 && !m->blocks[m->top - 1].live) {
		m->top--;
	}
}

static struct ipam_cidr block_cidr(const struct model *m, const struct m_block *b)
{
	struct ipam_cidr c = {u_addr(b->u0), 0};
	(void)m;
	c.prefix = (uint8_t)(fam_bits(u_fam(b->u0)) - (unsigned)__builtin_ctz(b->size));
	return c;
}

static void fifo_remove(struct m_block *b, uint32_t ord)
{
	for (uint32_t i = 0; i < b->n; i++) {
		if (b->ord[i] == ord) {
			memmove(&b->ord[i], &b->ord[i + 1], (b->n - i - 1) * sizeof b->ord[0]);
			memmove(&b->grp[i], &b->grp[i + 1], (b->n - i - 1) * sizeof b->grp[0]);
			b->n--;
			return;
		}
	}
	fail_msg("model: ordinal %u is not free", ord);
}

/* Whether taking the ordinals marked in taken (k of them) is taking the head of the free list,
 * entries of one group in any order. */
static bool fifo_head_ok(const struct m_block *b, const bool *taken, unsigned k)
{
	unsigned pos = 0, rem = k, seen = 0;
	while (rem > 0) {
		unsigned end = pos, in = 0;
		if (pos >= b->n) {
			return false;
		}
		while (end < b->n && b->grp[end] == b->grp[pos]) {
			end++;
		}
		for (unsigned i = pos; i < end; i++) {
			in += taken[b->ord[i]];
		}
		if (end - pos <= rem) {
			if (in != end - pos) {
				return false;
			}
			rem -= end - pos;
		} else {
			if (in != rem) {
				return false;
			}
			rem = 0;
		}
		seen += in;
		pos = end;
	}
	return seen == k;
}

static void alloc_set(struct model *m, int u, int handle, int node, int attrs, int64_t gen,
                      uint64_t time)
{
	struct m_block *b = &m->blocks[m->blk_of[u]];
	fifo_remove(b, (uint32_t)(u - b->u0));
	m->a[u] = (struct m_alloc){true, handle, node, attrs, gen, time};
}

static void alloc_release(struct model *m, int u, uint32_t grp)
{
	struct m_block *b = &m->blocks[m->blk_of[u]];
	assert_true(m->a[u].used);
	memset(&m->a[u], 0, sizeof m->a[u]);
	b->ord[b->n] = (uint16_t)(u - b->u0);
	b->grp[b->n] = grp;
	b->n++;
}

/* After releases: empty blocks without affinity (or in a removing pool) go, and so do removing
 * pools without blocks. */
static void tidy(struct model *m)
{
	for (int bi = 0; bi < m->top; bi++) {
		struct m_block *b = &m->blocks[bi];
		if (b->live && used_of(b) == 0 && (b->aff < 0 || m->pools[b->pool].removing)) {
			block_del(m, bi);
		}
	}
	for (int ci = 0; ci < NCANDS; ci++) {
		if (m->pools[ci].live && m->pools[ci].removing && blocks_in_pool(m, ci) == 0) {
			m->pools[ci].live = false;
		}
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Requests                                                                                    */

struct gen_req {
	struct ipam_request req;
	struct ipam_pool pools[2];
	int pool_cand[2];
	struct ipam_cidr cidrs[3];
	int cidr_cand[3];
	struct ipam_addr ips[3];
	struct ipam_release_item items[3];
	int node, handle, attrs;
};

struct rng {
	uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static unsigned rn(struct rng *r, unsigned n)
{
	return (unsigned)(rnd(r) % n);
}

static bool chance(struct rng *r, unsigned percent)
{
	return rn(r, 100) < percent;
}

/* A candidate: mostly one that is a pool now (when there is one). */
static int pick_cand(struct rng *r, const struct model *m, unsigned live_percent)
{
	if (chance(r, live_percent)) {
		int live[NCANDS], n = 0;
		for (int ci = 0; ci < NCANDS; ci++) {
			if (m->pools[ci].live) {
				live[n++] = ci;
			}
		}
		if (n > 0) {
			return live[rn(r, (unsigned)n)];
		}
	}
	return (int)rn(r, NCANDS);
}

/* An address: one that is assigned, one free in a pool, or anything in the universe. */
static int pick_addr(struct rng *r, const struct model *m, unsigned assigned_percent)
{
	if (chance(r, assigned_percent)) {
		int start = (int)rn(r, UNIV);
		for (int i = 0; i < UNIV; i++) {
			int u = (start + i) % UNIV;
			if (m->a[u].used) {
				return u;
			}
		}
	}
	if (chance(r, 60)) {
		int start = (int)rn(r, UNIV);
		for (int i = 0; i < UNIV; i++) {
			int u = (start + i) % UNIV;
			if (!m->a[u].used && pool_of(m, u) >= 0) {
				return u;
			}
		}
	}
	return (int)rn(r, UNIV);
}

static uint32_t pick_num(struct rng *r)
{
	static const uint32_t nums[] = {0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 3, 5, 8, 16, 40, 70};
	return nums[rn(r, sizeof nums / sizeof nums[0])];
}

static void gen_pool(struct rng *r, const struct model *m, struct ipam_pool *p, int *cand)
{
	static const uint8_t bs4[] = {0, 0, 0, 26, 26, 27, 28, 28, 29, 30, 31, 32, 24, 25, 19, 33};
	static const uint8_t bs6[] = {0,   0,   0,   122, 122, 123, 124, 124,
	                              125, 126, 127, 128, 120, 121, 116, 129};
	int ci = pick_cand(r, m, 30);
	char err[256];

	memset(p, 0, sizeof *p);
	*cand = ci;
	assert_true(ipam_cidr_parse(CANDS[ci].text, &p->cidr, err, sizeof err));
	/* An update usually keeps the block size (a different one is refused while blocks exist).
	 */
	if (m->pools[ci].live && chance(r, 70)) {
		p->block_size = chance(r, 50) ? m->pools[ci].bs : 0;
	} else {
		p->block_size =
		    CANDS[ci].fam == 4 ? bs4[rn(r, sizeof bs4)] : bs6[rn(r, sizeof bs6)];
	}
	p->ipip = (uint8_t)(CANDS[ci].fam == 6 && !chance(r, 5) ? 0 : rn(r, 3));
	p->vxlan = (uint8_t)(p->ipip != 0 && !chance(r, 5) ? 0 : rn(r, 3));
	if (chance(r, 2)) {
		p->ipip = 3;
	}
	if (chance(r, 2)) {
		p->vxlan = 5;
	}
	p->nat_outgoing = chance(r, 50);
	p->disabled = chance(r, 8);
	p->removing = chance(r, 5); /* ignored */
	if (chance(r, 20)) {
		snprintf(p->node_selector, sizeof p->node_selector, "rack == '%u'", rn(r, 4));
	}
}

static void gen_request(struct rng *r, const struct model *m, struct gen_req *g)
{
	unsigned w = rn(r, 100);
	char err[256];

	memset(g, 0, sizeof *g);
	g->node = (int)rn(r, NNODES - 1);
	g->handle = (int)rn(r, NHANDLES);
	g->attrs = (int)rn(r, NATTRSETS);
	if (w < 8) {
		g->req.type = IPAM_REQ_POOLS_PUT;
		g->req.n_pools = chance(r, 80) ? 1 : 2;
		for (unsigned i = 0; i < g->req.n_pools; i++) {
			gen_pool(r, m, &g->pools[i], &g->pool_cand[i]);
		}
		g->req.pools = g->pools;
	} else if (w < 11) {
		g->req.type = IPAM_REQ_POOLS_REMOVE;
		g->req.n_cidrs = chance(r, 80) ? 1 : 2;
		for (unsigned i = 0; i < g->req.n_cidrs; i++) {
			g->cidr_cand[i] = pick_cand(r, m, 85);
			assert_true(ipam_cidr_parse(CANDS[g->cidr_cand[i]].text, &g->cidrs[i], err,
			                            sizeof err));
		}
		g->req.cidrs = g->cidrs;
		g->req.force = chance(r, 40);
	} else if (w < 13) {
		g->req.type = IPAM_REQ_CONFIG;
		g->req.config.strict_affinity = chance(r, 40);
	} else if (w < 47) {
		g->req.type = IPAM_REQ_ASSIGN;
		g->req.num4 = pick_num(r);
		g->req.num6 = pick_num(r);
		if (g->req.num4 + g->req.num6 == 0 && chance(r, 80)) {
			g->req.num4 = 1;
		}
		if (chance(r, 1)) {
			g->req.num4 = 200;
			g->req.num6 = 100;
		}
		if (chance(r, 25)) {
			g->req.n_cidrs = chance(r, 70) ? 1 : 2;
			for (unsigned i = 0; i < g->req.n_cidrs; i++) {
				g->cidr_cand[i] = pick_cand(r, m, 85);
				assert_true(ipam_cidr_parse(CANDS[g->cidr_cand[i]].text,
				                            &g->cidrs[i], err, sizeof err));
			}
			g->req.cidrs = g->cidrs;
		}
	} else if (w < 57) {
		g->req.type = IPAM_REQ_ASSIGN;
		g->req.n_ips = 1 + rn(r, 3);
		for (unsigned i = 0; i < g->req.n_ips; i++) {
			g->ips[i] = u_addr(pick_addr(r, m, 20));
		}
		if (g->req.n_ips > 1 && chance(r, 3)) {
			g->ips[1] = g->ips[0];
		}
		g->req.ips = g->ips;
		if (chance(r, 10)) {
			g->req.n_cidrs = 1;
			g->cidr_cand[0] = pick_cand(r, m, 85);
			assert_true(ipam_cidr_parse(CANDS[g->cidr_cand[0]].text, &g->cidrs[0], err,
			                            sizeof err));
			g->req.cidrs = g->cidrs;
		}
		if (chance(r, 2)) {
			g->req.num4 = 1;
		}
	} else if (w < 77) {
		g->req.type = IPAM_REQ_RELEASE;
		g->req.n_items = chance(r, 70) ? 1 : 2;
		for (unsigned i = 0; i < g->req.n_items; i++) {
			int u = pick_addr(r, m, 85);
			g->items[i].addr = u_addr(u);
			if (m->a[u].used) {
				unsigned c = rn(r, 10);
				g->items[i].gen = c < 5   ? m->a[u].gen
				                  : c < 8 ? 0
				                  : m->a[u].gen > 1 && chance(r, 50)
				                      ? m->a[u].gen - 1
				                      : m->a[u].gen + 1;
			}
		}
		if (g->req.n_items > 1 && chance(r, 3)) {
			g->items[1] = g->items[0];
		}
		g->req.items = g->items;
	} else if (w < 90) {
		g->req.type = IPAM_REQ_RELEASE_HANDLE;
	} else if (w < 93) {
		g->req.type = IPAM_REQ_REMOVE_NODE;
		g->node = (int)rn(r, NNODES);
	} else if (w < 94) {
		g->req.type = IPAM_REQ_INIT_DEFAULTS; /* the cluster ran it at the start: a no-op */
		g->req.num4 = 1;
		g->req.num6 = 1;
	} else {
		/* Frequent small automatic assignments keep the pools busy. */
		g->req.type = IPAM_REQ_ASSIGN;
		g->req.num4 = 1;
	}
	g->req.node = NODES[g->node];
	g->req.handle = HANDLES[g->handle];
	if (g->req.type == IPAM_REQ_ASSIGN) {
		g->req.attrs = ATTRSETS[g->attrs].a;
		g->req.n_attrs = ATTRSETS[g->attrs].n;
	}
}

static void describe(const struct gen_req *g, char *buf, size_t len)
{
	static const char *const names[] = {
	    "?",       "POOLS_PUT",      "POOLS_REMOVE", "CONFIG",       "ASSIGN",
	    "RELEASE", "RELEASE_HANDLE", "REMOVE_NODE",  "INIT_DEFAULTS"};
	const struct ipam_request *q = &g->req;
	size_t n = 0;

#define OUT(...)                                                                                   \
	do {                                                                                       \
		if (n < len) {                                                                     \
			n += (size_t)snprintf(buf + n, len - n, __VA_ARGS__);                      \
		}                                                                                  \
	} while (0)
	OUT("%s", names[q->type <= 8 ? q->type : 0]);
	switch (q->type) {
	case IPAM_REQ_POOLS_PUT:
		for (unsigned i = 0; i < q->n_pools; i++) {
			OUT(" %s bs=%u ipip=%u vxlan=%u%s", CANDS[g->pool_cand[i]].text,
			    q->pools[i].block_size, q->pools[i].ipip, q->pools[i].vxlan,
			    q->pools[i].disabled ? " disabled" : "");
		}
		break;
	case IPAM_REQ_POOLS_REMOVE:
		for (unsigned i = 0; i < q->n_cidrs; i++) {
			OUT(" %s", CANDS[g->cidr_cand[i]].text);
		}
		OUT("%s", q->force ? " force" : "");
		break;
	case IPAM_REQ_CONFIG:
		OUT(" strict=%d", q->config.strict_affinity);
		break;
	case IPAM_REQ_ASSIGN:
		OUT(" node=%s handle=%s", q->node, q->handle);
		for (unsigned i = 0; i < q->n_ips; i++) {
			OUT(" %s", h_fmt(&q->ips[i]).s);
		}
		if (q->num4 + q->num6 > 0) {
			OUT(" num4=%u num6=%u", q->num4, q->num6);
		}
		for (unsigned i = 0; i < q->n_cidrs; i++) {
			OUT(" pool=%s", CANDS[g->cidr_cand[i]].text);
		}
		break;
	case IPAM_REQ_RELEASE:
		for (unsigned i = 0; i < q->n_items; i++) {
			OUT(" %s@%lld", h_fmt(&q->items[i].addr).s, (long long)q->items[i].gen);
		}
		break;
	case IPAM_REQ_RELEASE_HANDLE:
		OUT(" %s", q->handle);
		break;
	case IPAM_REQ_REMOVE_NODE:
		OUT(" %s", q->node);
		break;
	default:
		break;
	}
#undef OUT
}

/* ------------------------------------------------------------------------------------------ */
/* Predicting                                                                                  */

struct expect {
	uint8_t err;
	bool has_count;
	uint64_t count;
	/* Explicit ASSIGN, RELEASE*: the exact addresses of the reply (universe indexes). */
	bool exact;
	int *addrs; /* UNIV entries */
	unsigned n;
};

static uint8_t pool_bs(const struct model *m, int ci, const struct ipam_pool *p);

/* The model's own pool rules (ipam.h: ipam_pool_validate, with the block size POOLS_PUT
 * resolves). */
static bool pool_valid(const struct model *m, int ci, const struct ipam_pool *p)
{
	uint8_t fam = CANDS[ci].fam;
	uint8_t bs = pool_bs(m, ci, p);
	if (CANDS[ci].link_local) {
		return false;
	}
	if (fam == 4 ? bs < 20 || bs > 32 : bs < 116 || bs > 128) {
		return false;
	}
	if (CANDS[ci].prefix > bs) {
		return false;
	}
	if (p->ipip > 2 || p->vxlan > 2 || (fam == 6 && p->ipip != 0)) {
		return false;
	}
	/* Calico: one encapsulation per pool. */
	if (p->ipip != 0 && p->vxlan != 0) {
		return false;
	}
	return true;
}

/* The block size a POOLS_PUT gives the pool: 0 keeps an existing pool's, else the default. */
static uint8_t pool_bs(const struct model *m, int ci, const struct ipam_pool *p)
{
	if (p->block_size != 0) {
		return p->block_size;
	}
	if (m->pools[ci].live) {
		return m->pools[ci].bs;
	}
	return CANDS[ci].fam == 4 ? 26 : 122;
}

static uint8_t predict_put(const struct model *m, const struct gen_req *g)
{
	const struct ipam_request *q = &g->req;
	for (unsigned i = 0; i < q->n_pools; i++) {
		if (!pool_valid(m, g->pool_cand[i], &q->pools[i])) {
			return IPAM_E_INVALID;
		}
		for (unsigned j = 0; j < i; j++) {
			if (g->pool_cand[i] == g->pool_cand[j]) {
				return IPAM_E_INVALID;
			}
			if (cands_overlap(g->pool_cand[i], g->pool_cand[j])) {
				return IPAM_E_CONFLICT;
			}
		}
	}
	for (unsigned i = 0; i < q->n_pools; i++) {
		int ci = g->pool_cand[i];
		if (m->pools[ci].live) {
			if (m->pools[ci].bs != pool_bs(m, ci, &q->pools[i]) &&
			    blocks_in_pool(m, ci) > 0) {
				return IPAM_E_CONFLICT;
			}
			continue;
		}
		for (int k = 0; k < NCANDS; k++) {
			if (m->pools[k].live && cands_overlap(ci, k)) {
				return IPAM_E_CONFLICT;
			}
		}
	}
	return IPAM_OK;
}

static void apply_put(struct model *m, const struct gen_req *g)
{
	for (unsigned i = 0; i < g->req.n_pools; i++) {
		const struct ipam_pool *p = &g->req.pools[i];
		struct m_pool *mp = &m->pools[g->pool_cand[i]];
		mp->bs = pool_bs(m, g->pool_cand[i], p); /* before live: a new pool's default */
		mp->live = true;
		mp->ipip = p->ipip;
		mp->vxlan = p->vxlan;
		mp->nat = p->nat_outgoing;
		mp->disabled = p->disabled;
		mp->removing = false;
		snprintf(mp->sel, sizeof mp->sel, "%s", p->node_selector);
	}
}

static unsigned used_in_pool(const struct model *m, int ci)
{
	unsigned n = 0;
	for (int b = 0; b < m->top; b++) {
		if (m->blocks[b].live && m->blocks[b].pool == ci) {
			n += used_of(&m->blocks[b]);
		}
	}
	return n;
}

static void predict_remove(const struct model *m, const struct gen_req *g, struct expect *e)
{
	const struct ipam_request *q = &g->req;
	uint64_t total = 0;
	for (unsigned i = 0; i < q->n_cidrs; i++) {
		if (!m->pools[g->cidr_cand[i]].live) {
			e->err = IPAM_E_NOTFOUND;
			return;
		}
		for (unsigned j = 0; j < i; j++) {
			if (g->cidr_cand[i] == g->cidr_cand[j]) {
				e->err = IPAM_E_INVALID;
				return;
			}
		}
	}
	for (unsigned i = 0; i < q->n_cidrs; i++) {
		unsigned used = used_in_pool(m, g->cidr_cand[i]);
		if (used > 0 && !q->force) {
			e->err = IPAM_E_INUSE;
			e->has_count = true;
			e->count = used;
			return;
		}
		total += used;
	}
	e->err = IPAM_OK;
	e->has_count = true;
	e->count = total;
}

static void apply_remove(struct model *m, const struct gen_req *g)
{
	for (unsigned i = 0; i < g->req.n_cidrs; i++) {
		int ci = g->cidr_cand[i];
		m->forced_in_use += used_in_pool(m, ci) > 0;
		m->pools[ci].disabled = true;
		m->pools[ci].removing = true;
		for (int bi = 0; bi < m->top; bi++) {
			struct m_block *b = &m->blocks[bi];
			if (!b->live || b->pool != ci) {
				continue;
			}
			if (used_of(b) == 0) {
				block_del(m, bi);
			} else {
				b->aff = -1; /* "the affinities of the others released" */
			}
		}
	}
	tidy(m);
}

static bool in_filter(const struct gen_req *g, int ci)
{
	if (g->req.n_cidrs == 0) {
		return true;
	}
	for (unsigned i = 0; i < g->req.n_cidrs; i++) {
		if (g->cidr_cand[i] == ci) {
			return true;
		}
	}
	return false;
}

static bool allowed(const struct model *m, const struct gen_req *g, int ci, uint8_t fam)
{
	return usable(m, ci) && CANDS[ci].fam == fam && !CANDS[ci].link_local && in_filter(g, ci);
}

/* How many addresses of fam an automatic assignment for node could get. */
static uint64_t capacity(const struct model *m, const struct gen_req *g, uint8_t fam)
{
	uint64_t cap = 0;
	for (int ci = 0; ci < NCANDS; ci++) {
		uint32_t bsz;
		if (!allowed(m, g, ci, fam)) {
			continue;
		}
		bsz = block_size(fam, m->pools[ci].bs);
		cap += (uint64_t)(cand_size(ci) / bsz - blocks_in_pool(m, ci)) * bsz;
		for (int bi = 0; bi < m->top; bi++) {
			const struct m_block *b = &m->blocks[bi];
			if (b->live && b->pool == ci && (b->aff == g->node || !m->strict)) {
				cap += b->n;
			}
		}
	}
	return cap;
}

static void predict_assign(const struct model *m, const struct gen_req *g, struct expect *e)
{
	const struct ipam_request *q = &g->req;

	e->err = IPAM_E_INVALID;
	if (q->n_ips > 0 && (q->num4 > 0 || q->num6 > 0)) {
		return;
	}
	if (q->n_ips == 0 && q->num4 == 0 && q->num6 == 0) {
		return;
	}
	if (q->num4 + q->num6 > IPAM_ASSIGN_MAX) {
		return;
	}
	for (unsigned i = 0; i < q->n_cidrs; i++) {
		int ci = g->cidr_cand[i];
		if (!m->pools[ci].live) {
			e->err = IPAM_E_NOTFOUND;
			return;
		}
		if (!usable(m, ci)) {
			e->err = IPAM_E_CONFLICT;
			return;
		}
	}
	for (unsigned i = 0; i < q->n_ips; i++) {
		for (unsigned j = 0; j < i; j++) {
			if (memcmp(&q->ips[i], &q->ips[j], sizeof q->ips[i]) == 0) {
				return;
			}
		}
	}
	e->exact = q->n_ips > 0;
	for (unsigned i = 0; i < q->n_ips; i++) {
		int u = u_index(&q->ips[i]);
		int ci = u >= 0 ? pool_of(m, u) : -1;
		int bi;
		if (ci < 0) {
			e->err = IPAM_E_INVALID;
			return;
		}
		if (!allowed(m, g, ci, u_fam(u)) && usable(m, ci)) {
			e->err = IPAM_E_INVALID; /* not among the requested pools */
			return;
		}
		if (!usable(m, ci)) {
			e->err = IPAM_E_CONFLICT;
			return;
		}
		bi = m->blk_of[u];
		if (bi >= 0 && m->strict && m->blocks[bi].aff >= 0 &&
		    m->blocks[bi].aff != g->node) {
			e->err = IPAM_E_CONFLICT;
			return;
		}
		if (m->a[u].used) {
			e->err = IPAM_E_INUSE;
			return;
		}
		e->addrs[e->n++] = u;
	}
	if ((q->num4 > 0 && capacity(m, g, 4) < q->num4) ||
	    (q->num6 > 0 && capacity(m, g, 6) < q->num6)) {
		e->err = IPAM_E_EXHAUSTED;
		return;
	}
	e->err = IPAM_OK;
}

static void apply_explicit(struct model *m, const struct gen_req *g, int64_t gen, uint64_t time)
{
	for (unsigned i = 0; i < g->req.n_ips; i++) {
		int u = u_index(&g->req.ips[i]);
		if (m->blk_of[u] < 0) {
			int ci = pool_of(m, u);
			block_new(m, ci, block_base(m, ci, u), g->node);
		}
		alloc_set(m, u, g->handle, g->node, g->attrs, gen, time);
	}
}

static void predict_release(const struct model *m, const struct gen_req *g, struct expect *e)
{
	const struct ipam_request *q = &g->req;

	e->exact = true;
	for (unsigned i = 0; i < q->n_items; i++) {
		for (unsigned j = 0; j < i; j++) {
			if (memcmp(&q->items[i].addr, &q->items[j].addr, sizeof q->items[i].addr) ==
			    0) {
				e->err = IPAM_E_INVALID;
				return;
			}
		}
	}
	for (unsigned i = 0; i < q->n_items; i++) {
		int u = u_index(&q->items[i].addr);
		if (u < 0 || !m->a[u].used) {
			e->err = IPAM_E_NOTFOUND;
			return;
		}
		if (q->items[i].gen != 0 && q->items[i].gen != m->a[u].gen) {
			e->err = IPAM_E_CONFLICT;
			return;
		}
		e->addrs[e->n++] = u;
	}
	e->err = IPAM_OK;
	e->has_count = true;
	e->count = e->n;
}

static void predict_owned(const struct model *m, const struct gen_req *g, struct expect *e,
                          bool by_node)
{
	e->exact = true;
	for (int u = 0; u < UNIV; u++) {
		if (m->a[u].used &&
		    (by_node ? m->a[u].node == g->node : m->a[u].handle == g->handle)) {
			e->addrs[e->n++] = u;
		}
	}
	e->err = by_node || e->n > 0 ? IPAM_OK : IPAM_E_NOTFOUND;
	e->has_count = e->err == IPAM_OK;
	e->count = e->n;
}

/* Release what e lists (all with one free-list group), and for a node its affinities. */
static void apply_release(struct model *m, const struct gen_req *g, const struct expect *e)
{
	uint32_t grp = m->next_grp++;
	for (unsigned i = 0; i < e->n; i++) {
		alloc_release(m, e->addrs[i], grp);
	}
	if (g->req.type == IPAM_REQ_REMOVE_NODE) {
		for (int bi = 0; bi < m->top; bi++) {
			if (m->blocks[bi].live && m->blocks[bi].aff == g->node) {
				m->blocks[bi].aff = -1;
			}
		}
	}
	tidy(m);
}

/* ------------------------------------------------------------------------------------------ */
/* Checking an automatic assignment                                                            */

struct run {
	unsigned seed, step;
	char log[8][512]; /* the last requests, for the failure message */
	unsigned n_log;
};

static void run_fail(const struct run *rn, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void run_fail(const struct run *rn, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	print_error("seed %u step %u: %s\n", rn->seed, rn->step, msg);
	print_error("last requests (oldest first):\n");
	for (unsigned i = rn->n_log > 8 ? rn->n_log - 8 : 0; i < rn->n_log; i++) {
		print_error("  %s\n", rn->log[i % 8]);
	}
	print_error("replay: TABBY_IPAM_SEED=%u TABBY_IPAM_STEPS=%u\n", rn->seed, rn->step + 1);
	fail();
}

struct touched {
	int bi;     /* the block before the command, -1 for a new one */
	int ci, u0; /* new: its pool and first address */
	int phase;  /* 1 affine, 2 new, 3 borrowed */
	unsigned k; /* addresses taken */
};

static void check_auto(struct model *m, const struct gen_req *g, const struct ipam_reply *rep,
                       uint8_t fam, uint32_t num, uint64_t time, const struct run *run)
{
	struct touched t[IPAM_ASSIGN_MAX];
	bool taken[UNIV] = {false}; /* by universe index */
	unsigned nt = 0, got = 0, nonfull[4] = {0}, uses[4] = {0};

	for (unsigned i = 0; i < rep->n_addrs; i++) {
		int u = u_index(&rep->addrs[i].addr);
		int ci, bi, base;
		unsigned j;
		if (rep->addrs[i].addr.family != fam) {
			continue;
		}
		got++;
		if (u < 0) {
			run_fail(run, "assigned %s, outside every pool",
			         h_fmt(&rep->addrs[i].addr).s);
		}
		ci = pool_of(m, u);
		if (ci < 0 || !allowed(m, g, ci, fam)) {
			run_fail(run, "assigned %s from a pool the request does not allow",
			         h_fmt(&rep->addrs[i].addr).s);
		}
		if (m->a[u].used) {
			run_fail(run, "assigned %s, which is in use", h_fmt(&rep->addrs[i].addr).s);
		}
		bi = m->blk_of[u];
		base = bi >= 0 ? m->blocks[bi].u0 : block_base(m, ci, u);
		for (j = 0; j < nt; j++) {
			if ((bi >= 0 && t[j].bi == bi) ||
			    (bi < 0 && t[j].bi < 0 && t[j].u0 == base)) {
				break;
			}
		}
		if (j == nt) {
			assert_true(nt < IPAM_ASSIGN_MAX);
			nt++;
			t[j].bi = bi;
			t[j].ci = ci;
			t[j].u0 = base;
			t[j].phase = bi < 0 ? 2 : m->blocks[bi].aff == g->node ? 1 : 3;
			t[j].k = 0;
		}
		taken[u] = true;
		t[j].k++;
	}
	if (got != num) {
		run_fail(run, "IPv%u: %u addresses assigned, %u asked for", fam, got, num);
	}
	for (unsigned j = 0; j < nt; j++) {
		uint32_t left;
		uses[t[j].phase]++;
		m->phase_addrs[t[j].phase] += t[j].k;
		if (t[j].bi >= 0) {
			const struct m_block *b = &m->blocks[t[j].bi];
			if (!fifo_head_ok(b, taken + b->u0, t[j].k)) {
				run_fail(run,
				         "block %s: the %u addresses taken are not the head of its "
				         "free list",
				         u_str(b->u0).s, t[j].k);
			}
			left = b->n - t[j].k;
		} else {
			uint32_t size = block_size(fam, m->pools[t[j].ci].bs);
			for (unsigned k = 0; k < t[j].k; k++) {
				if (!taken[t[j].u0 + (int)k]) {
					run_fail(run, "new block %s: not its first %u addresses",
					         u_str(t[j].u0).s, t[j].k);
				}
			}
			left = size - t[j].k;
		}
		if (t[j].phase == 3 && m->strict) {
			run_fail(run, "borrowed under strict affinity");
		}
		nonfull[t[j].phase] += left > 0;
	}
	for (int p = 1; p <= 3; p++) {
		if (nonfull[p] > 1) {
			run_fail(run, "phase %d left %u blocks it took from with room", p,
			         nonfull[p]);
		}
	}
	if (uses[2] > 0 || uses[3] > 0) {
		/* The host's own blocks came first: none of them has room left. */
		for (int bi = 0; bi < m->top; bi++) {
			const struct m_block *b = &m->blocks[bi];
			uint32_t left = b->n;
			if (!b->live || b->aff != g->node || !allowed(m, g, b->pool, fam)) {
				continue;
			}
			for (unsigned j = 0; j < nt; j++) {
				left -= t[j].bi == bi ? t[j].k : 0;
			}
			if (left > 0) {
				run_fail(run, "claimed or borrowed while its block %s has %u free",
				         u_str(b->u0).s, left);
			}
		}
	}
	if (uses[3] > 0) {
		/* Borrowing comes last: every new block is full and no slot is left to claim. */
		if (nonfull[2] > 0) {
			run_fail(run, "borrowed while a block it claimed has room");
		}
		for (int ci = 0; ci < NCANDS; ci++) {
			unsigned blocks;
			if (!allowed(m, g, ci, fam)) {
				continue;
			}
			blocks = blocks_in_pool(m, ci);
			for (unsigned j = 0; j < nt; j++) {
				blocks += t[j].bi < 0 && t[j].ci == ci;
			}
			if (blocks < cand_size(ci) / block_size(fam, m->pools[ci].bs)) {
				run_fail(run, "borrowed while pool %s has a free block",
				         CANDS[ci].text);
			}
		}
	}
	/* Follow the state machine's choice. */
	for (unsigned j = 0; j < nt; j++) {
		if (t[j].bi < 0) {
			block_new(m, t[j].ci, t[j].u0, g->node);
		}
	}
	for (unsigned i = 0; i < rep->n_addrs; i++) {
		int u = u_index(&rep->addrs[i].addr);
		struct ipam_cidr bc;
		if (rep->addrs[i].addr.family != fam) {
			continue;
		}
		alloc_set(m, u, g->handle, g->node, g->attrs, rep->addrs[i].gen, time);
		bc = block_cidr(m, &m->blocks[m->blk_of[u]]);
		if (!h_cidr_eq(&rep->addrs[i].block, &bc)) {
			run_fail(run, "%s: reply block %s, model %s", h_fmt(&rep->addrs[i].addr).s,
			         h_fmtc(&rep->addrs[i].block).s, h_fmtc(&bc).s);
		}
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Comparing the model with the store                                                          */

static int node_index(const char *s)
{
	for (int i = 0; i < NNODES; i++) {
		if (strcmp(NODES[i], s) == 0) {
			return i;
		}
	}
	return -1;
}

static int handle_index(const char *s)
{
	for (int i = 0; i < NHANDLES; i++) {
		if (strcmp(HANDLES[i], s) == 0) {
			return i;
		}
	}
	return -1;
}

struct cmp_ctx {
	const struct model *m;
	unsigned n;
	char bad[512];
};

static int cmp_alloc_cb(void *arg, const struct ipam_alloc *a)
{
	struct cmp_ctx *c = arg;
	int u = u_index(&a->addr);
	const struct m_alloc *ma;
	const struct m_block *b;
	struct ipam_cidr bc;

	c->n++;
	if (c->bad[0] != '\0') {
		return 0;
	}
	if (u < 0 || !c->m->a[u].used) {
		snprintf(c->bad, sizeof c->bad, "%s is assigned, the model has it free",
		         h_fmt(&a->addr).s);
		return 0;
	}
	ma = &c->m->a[u];
	b = &c->m->blocks[c->m->blk_of[u]];
	bc = block_cidr(c->m, b);
	if (handle_index(a->handle) != ma->handle || node_index(a->node) != ma->node ||
	    a->gen != ma->gen || a->time_ms != ma->time || !h_cidr_eq(&a->block, &bc) ||
	    strcmp(a->affinity, b->aff >= 0 ? NODES[b->aff] : "") != 0 ||
	    a->n_attrs != ATTRSETS[ma->attrs].n) {
		snprintf(
		    c->bad, sizeof c->bad,
		    "%s: store says handle %s node %s gen %lld time %llu block %s affinity "
		    "\"%s\" %u attrs; model says handle %s node %s gen %lld time %llu block %s "
		    "affinity \"%s\" %u attrs",
		    h_fmt(&a->addr).s, a->handle, a->node, (long long)a->gen,
		    (unsigned long long)a->time_ms, h_fmtc(&a->block).s, a->affinity, a->n_attrs,
		    HANDLES[ma->handle], NODES[ma->node], (long long)ma->gen,
		    (unsigned long long)ma->time, h_fmtc(&bc).s, b->aff >= 0 ? NODES[b->aff] : "",
		    ATTRSETS[ma->attrs].n);
		return 0;
	}
	for (unsigned i = 0; i < a->n_attrs; i++) {
		bool found = false;
		for (unsigned j = 0; j < ATTRSETS[ma->attrs].n; j++) {
			found |= strcmp(a->attrs[i].key, ATTRSETS[ma->attrs].a[j].key) == 0 &&
			         strcmp(a->attrs[i].value, ATTRSETS[ma->attrs].a[j].value) == 0;
		}
		if (!found) {
			snprintf(c->bad, sizeof c->bad, "%s: attribute %s=%s is not the model's",
			         h_fmt(&a->addr).s, a->attrs[i].key, a->attrs[i].value);
		}
	}
	return 0;
}

static void compare(struct h *h, const struct model *m, const struct run *run)
{
	struct kv_tx *tx;
	struct ipam_pool *pools;
	struct ipam_block_info *blocks;
	struct ipam_pool_usage *usage;
	struct ipam_config cfg;
	struct cmp_ctx cc = {m, 0, ""};
	unsigned n, nu, model_allocs = 0, model_blocks = 0;
	unsigned pool_blocks[NCANDS] = {0}, pool_used[NCANDS] = {0}, handle_n[NHANDLES] = {0};
	int order[NCANDS], no = 0;

	/* Live pools in the order the store lists them: IPv4 first, address order (live pools
	 * never share a first address). */
	for (int i = 0; i < NCANDS; i++) {
		if (m->pools[m->sorted[i]].live) {
			order[no++] = m->sorted[i];
		}
	}
	for (int bi = 0; bi < m->top; bi++) {
		if (m->blocks[bi].live) {
			model_blocks++;
			pool_blocks[m->blocks[bi].pool]++;
			pool_used[m->blocks[bi].pool] += used_of(&m->blocks[bi]);
		}
	}
	for (int u = 0; u < UNIV; u++) {
		if (m->a[u].used) {
			model_allocs++;
			handle_n[m->a[u].handle]++;
		}
	}

	assert_int_equal(kv_view_begin(h->kv, &tx), KV_OK);
	assert_int_equal(ipam_list_pools(tx, &pools, &n), 0);
	assert_int_equal(ipam_list_blocks(tx, &blocks, &nu), 0);
	assert_int_equal(ipam_foreach_alloc(tx, cmp_alloc_cb, &cc), 0);
	assert_int_equal(ipam_get_config(tx, &cfg), 0);
	kv_view_end(tx);

	if ((int)n != no) {
		run_fail(run, "the store has %u pools, the model %d", n, no);
	}
	for (unsigned i = 0; i < n; i++) {
		const struct m_pool *mp = &m->pools[order[i]];
		const struct ipam_pool *p = &pools[i];
		if (!h_cidr_eq(&p->cidr, &m->cidr[order[i]]) || p->block_size != mp->bs ||
		    p->ipip != mp->ipip || p->vxlan != mp->vxlan || p->nat_outgoing != mp->nat ||
		    p->disabled != mp->disabled || p->removing != mp->removing ||
		    strcmp(p->node_selector, mp->sel) != 0) {
			run_fail(
			    run,
			    "pool %u: store %s bs %u ipip %u vxlan %u nat %d disabled %d removing "
			    "%d sel \"%s\"; model %s bs %u ipip %u vxlan %u nat %d disabled %d "
			    "removing %d sel \"%s\"",
			    i, h_fmtc(&p->cidr).s, p->block_size, p->ipip, p->vxlan,
			    p->nat_outgoing, p->disabled, p->removing, p->node_selector,
			    CANDS[order[i]].text, mp->bs, mp->ipip, mp->vxlan, mp->nat,
			    mp->disabled, mp->removing, mp->sel);
		}
	}
	free(pools);

	if (nu != model_blocks) {
		run_fail(run, "the store has %u blocks, the model %u", nu, model_blocks);
	}
	for (unsigned i = 0; i < nu; i++) {
		const struct ipam_block_info *bi = &blocks[i];
		int u = u_index(&bi->cidr.addr);
		const struct m_block *b =
		    u >= 0 && m->blk_of[u] >= 0 ? &m->blocks[m->blk_of[u]] : NULL;
		struct ipam_cidr mc;
		if (b == NULL || b->u0 != u) {
			run_fail(run, "the store has block %s, the model does not",
			         h_fmtc(&bi->cidr).s);
		}
		mc = block_cidr(m, b);
		if (!h_cidr_eq(&bi->cidr, &mc) || !h_cidr_eq(&bi->pool, &m->cidr[b->pool]) ||
		    bi->size != b->size || bi->used != used_of(b) ||
		    strcmp(bi->affinity, b->aff >= 0 ? NODES[b->aff] : "") != 0) {
			run_fail(
			    run,
			    "block %s: store pool %s size %u used %u affinity \"%s\"; model %s "
			    "pool %s size %u used %u affinity \"%s\"",
			    h_fmtc(&bi->cidr).s, h_fmtc(&bi->pool).s, bi->size, bi->used,
			    bi->affinity, h_fmtc(&mc).s, CANDS[b->pool].text, b->size, used_of(b),
			    b->aff >= 0 ? NODES[b->aff] : "");
		}
	}
	free(blocks);

	if (cc.bad[0] != '\0') {
		run_fail(run, "%s", cc.bad);
	}
	if (cc.n != model_allocs) {
		run_fail(run, "the store has %u allocations, the model %u", cc.n, model_allocs);
	}
	if (cfg.strict_affinity != m->strict) {
		run_fail(run, "strict affinity: store %d, model %d", cfg.strict_affinity,
		         m->strict);
	}

	/* Every handle's addresses and generations. */
	assert_int_equal(kv_view_begin(h->kv, &tx), KV_OK);
	for (int hi = 0; hi < NHANDLES; hi++) {
		struct ipam_assigned *ha = NULL;
		unsigned nh = 0, want = handle_n[hi];
		assert_int_equal(ipam_handle_addrs(tx, HANDLES[hi], &ha, &nh), 0);
		for (unsigned i = 0; i < nh; i++) {
			int u = u_index(&ha[i].addr);
			if (u < 0 || !m->a[u].used || m->a[u].handle != hi ||
			    m->a[u].gen != ha[i].gen) {
				kv_view_end(tx);
				run_fail(run, "handle %s lists %s gen %lld, not so in the model",
				         HANDLES[hi], h_fmt(&ha[i].addr).s, (long long)ha[i].gen);
			}
		}
		free(ha);
		if (nh != want) {
			kv_view_end(tx);
			run_fail(run, "handle %s holds %u addresses, the model %u", HANDLES[hi], nh,
			         want);
		}
	}
	assert_int_equal(ipam_pool_usage(tx, &usage, &nu), 0);
	kv_view_end(tx);
	if ((int)nu != no) {
		run_fail(run, "usage lists %u pools, the model has %d", nu, no);
	}
	for (unsigned i = 0; i < nu; i++) {
		int ci = order[i];
		char total[16];
		snprintf(total, sizeof total, "%u", cand_size(ci));
		if (!h_cidr_eq(&usage[i].cidr, &m->cidr[ci]) ||
		    strcmp(usage[i].total, total) != 0 || usage[i].in_use != pool_used[ci] ||
		    usage[i].blocks != pool_blocks[ci]) {
			run_fail(
			    run,
			    "usage of %s: store total %s in use %llu blocks %llu; model %s %u %u",
			    h_fmtc(&usage[i].cidr).s, usage[i].total,
			    (unsigned long long)usage[i].in_use,
			    (unsigned long long)usage[i].blocks, total, pool_used[ci],
			    pool_blocks[ci]);
		}
	}
	free(usage);
}

/* ------------------------------------------------------------------------------------------ */
/* The run                                                                                     */

/* Compare a reply with the prediction for a deterministic command. */
static void check_exact(const struct model *m, const struct gen_req *g, const struct expect *e,
                        const struct ipam_reply *rep, int64_t rev, const struct run *run)
{
	if (rep->n_addrs != e->n) {
		run_fail(run, "reply lists %u addresses, the model %u", rep->n_addrs, e->n);
	}
	for (unsigned i = 0; i < e->n; i++) {
		int u = e->addrs[i];
		struct ipam_addr a = u_addr(u);
		bool found = false;
		for (unsigned j = 0; j < rep->n_addrs; j++) {
			const struct ipam_assigned *r = &rep->addrs[j];
			int64_t want_gen = g->req.type == IPAM_REQ_ASSIGN ? rev : m->a[u].gen;
			if (memcmp(&r->addr, &a, sizeof a) != 0) {
				continue;
			}
			found = true;
			if (r->gen != want_gen) {
				run_fail(run, "%s: reply gen %lld, model %lld", h_fmt(&a).s,
				         (long long)r->gen, (long long)want_gen);
			}
			{
				/* The block holding it, or for a new one the block it starts. */
				struct ipam_cidr bc = {u_addr(block_base(m, pool_of(m, u), u)), 0};
				bc.prefix = m->pools[pool_of(m, u)].bs;
				if (m->blk_of[u] >= 0) {
					bc = block_cidr(m, &m->blocks[m->blk_of[u]]);
				}
				if (!h_cidr_eq(&r->block, &bc)) {
					run_fail(run, "%s: reply block %s, model %s", h_fmt(&a).s,
					         h_fmtc(&r->block).s, h_fmtc(&bc).s);
				}
			}
		}
		if (!found) {
			run_fail(run, "the reply does not list %s", h_fmt(&a).s);
		}
	}
	if (e->has_count && rep->count != e->count) {
		run_fail(run, "reply count %llu, model %llu", (unsigned long long)rep->count,
		         (unsigned long long)e->count);
	}
}

static void predict(const struct model *m, const struct gen_req *g, struct expect *e)
{
	e->n = 0;
	e->exact = false;
	e->has_count = false;
	e->count = 0;
	e->err = IPAM_OK;
	switch (g->req.type) {
	case IPAM_REQ_POOLS_PUT:
		e->err = predict_put(m, g);
		break;
	case IPAM_REQ_POOLS_REMOVE:
		predict_remove(m, g, e);
		break;
	case IPAM_REQ_CONFIG:
	case IPAM_REQ_INIT_DEFAULTS:
		break;
	case IPAM_REQ_ASSIGN:
		predict_assign(m, g, e);
		break;
	case IPAM_REQ_RELEASE:
		predict_release(m, g, e);
		break;
	case IPAM_REQ_RELEASE_HANDLE:
		predict_owned(m, g, e, false);
		break;
	case IPAM_REQ_REMOVE_NODE:
		predict_owned(m, g, e, true);
		break;
	default:
		fail();
	}
}

static void apply_model(struct model *m, const struct gen_req *g, const struct expect *e,
                        const struct ipam_reply *rep, int64_t rev, uint64_t time,
                        const struct run *run)
{
	switch (g->req.type) {
	case IPAM_REQ_POOLS_PUT:
		apply_put(m, g);
		break;
	case IPAM_REQ_POOLS_REMOVE:
		apply_remove(m, g);
		break;
	case IPAM_REQ_CONFIG:
		m->strict = g->req.config.strict_affinity;
		break;
	case IPAM_REQ_INIT_DEFAULTS:
		break;
	case IPAM_REQ_ASSIGN:
		if (g->req.n_ips > 0) {
			apply_explicit(m, g, rev, time);
		} else {
			check_auto(m, g, rep, 4, g->req.num4, time, run);
			check_auto(m, g, rep, 6, g->req.num6, time, run);
		}
		break;
	case IPAM_REQ_RELEASE:
	case IPAM_REQ_RELEASE_HANDLE:
	case IPAM_REQ_REMOVE_NODE:
		apply_release(m, g, e);
		break;
	default:
		fail();
	}
}

static bool replies_equal(const struct ipam_reply *a, const struct ipam_reply *b)
{
	return a->error == b->error && a->count == b->count && a->n_addrs == b->n_addrs &&
	       (a->n_addrs == 0 ||
	        memcmp(a->addrs, b->addrs, a->n_addrs * sizeof *a->addrs) == 0) &&
	       ((a->message == NULL && b->message == NULL) ||
	        (a->message != NULL && b->message != NULL && strcmp(a->message, b->message) == 0));
}

static void run_seed(unsigned seed, unsigned steps)
{
	struct rng r = {seed * 0x2545f4914f6cdd1dULL + 1};
	struct model *m = calloc(1, sizeof *m);
	struct expect e = {.addrs = calloc(UNIV, sizeof(int))};
	struct run run = {.seed = seed};
	struct h h, h2;
	unsigned counts[9][6] = {{0}};

	assert_non_null(m);
	assert_non_null(e.addrs);
	for (int i = 0; i < UNIV; i++) {
		m->blk_of[i] = -1;
	}
	for (int ci = 0; ci < NCANDS; ci++) {
		char err[256];
		assert_true(ipam_cidr_parse(CANDS[ci].text, &m->cidr[ci], err, sizeof err));
		m->sorted[ci] = ci;
	}
	for (int i = 1; i < NCANDS; i++) { /* insertion sort */
		for (int j = i; j > 0; j--) {
			const struct cand *a = &CANDS[m->sorted[j - 1]], *b = &CANDS[m->sorted[j]];
			if (a->fam < b->fam || (a->fam == b->fam && a->start <= b->start)) {
				break;
			}
			int tmp = m->sorted[j];
			m->sorted[j] = m->sorted[j - 1];
			m->sorted[j - 1] = tmp;
		}
	}
	h_open(&h, NULL, 0);
	h_open(&h2, NULL, 0);
	h2.check_each = false;

	/* The cluster's bootstrap, without default pools: later calls must change nothing. */
	{
		struct ipam_request init = {.type = IPAM_REQ_INIT_DEFAULTS};
		assert_int_equal(h_req0(&h, &init), IPAM_OK);
		assert_int_equal(h_req0(&h2, &init), IPAM_OK);
	}

	for (run.step = 0; run.step < steps;) {
		struct gen_req g[BATCH_MAX];
		struct ipam_request reqs[BATCH_MAX];
		struct ipam_reply reps[BATCH_MAX], reps2[BATCH_MAX];
		int64_t revs[BATCH_MAX];
		unsigned nb = chance(&r, 80) ? 1 : 2 + rn(&r, BATCH_MAX - 1);

		for (unsigned i = 0; i < nb; i++) {
			gen_request(&r, m, &g[i]);
			reqs[i] = g[i].req;
			/* gen_request pointed into g[i]; the copy keeps pointing there. */
			describe(&g[i], run.log[run.n_log % 8], sizeof run.log[0]);
			run.n_log++;
		}
		h_batch(&h, reqs, NULL, nb, reps, revs, NULL);
		h_batch(&h2, reqs, NULL, nb, reps2, NULL, NULL);
		for (unsigned i = 0; i < nb; i++, run.step++) {
			if (!replies_equal(&reps[i], &reps2[i])) {
				run_fail(&run, "the two stores answered differently");
			}
			predict(m, &g[i], &e);
			if (reps[i].error != e.err) {
				run_fail(&run, "%s: error %s (%s), the model expects %s",
				         run.log[(run.n_log - nb + i) % 8],
				         ipam_error_code(reps[i].error),
				         reps[i].message != NULL ? reps[i].message : "",
				         ipam_error_code(e.err));
			}
			counts[g[i].req.type][e.err]++;
			if (e.err == IPAM_OK) {
				if (e.exact) {
					check_exact(m, &g[i], &e, &reps[i], revs[i], &run);
				} else if (e.has_count && reps[i].count != e.count) {
					run_fail(&run, "reply count %llu, model %llu",
					         (unsigned long long)reps[i].count,
					         (unsigned long long)e.count);
				}
				apply_model(m, &g[i], &e, &reps[i], revs[i], h.last_time, &run);
			} else if (e.has_count && reps[i].count != e.count) {
				run_fail(&run, "refusal count %llu, model %llu",
				         (unsigned long long)reps[i].count,
				         (unsigned long long)e.count);
			}
			ipam_reply_free(&reps[i]);
			ipam_reply_free(&reps2[i]);
		}
		compare(&h, m, &run);
		if (run.step % 200 < nb) {
			assert_true(h_hash(&h) == h_hash(&h2));
		}
	}
	assert_true(h_hash(&h) == h_hash(&h2));
	{
		unsigned allocs = 0, blocks = 0;
		for (int u = 0; u < UNIV; u++) {
			allocs += m->a[u].used;
		}
		for (int bi = 0; bi < m->top; bi++) {
			blocks += m->blocks[bi].live;
		}
		print_message(
		    "seed %u: %u steps, end state %u allocations in %u blocks; addresses "
		    "from affine/new/borrowed blocks %u/%u/%u, forced removals in use %u, "
		    "blocks deleted %u\n",
		    seed, steps, allocs, blocks, m->phase_addrs[1], m->phase_addrs[2],
		    m->phase_addrs[3], m->forced_in_use, m->blocks_deleted);
		print_message(
		    "  ok/invalid/not_found/in_use/exhausted/conflict: put %u/%u/%u/%u/%u/%u "
		    "remove %u/%u/%u/%u/%u/%u assign %u/%u/%u/%u/%u/%u release %u/%u/%u/%u/%u/%u "
		    "handle %u/%u/%u/%u/%u/%u node %u/%u/%u/%u/%u/%u\n",
		    counts[1][0], counts[1][1], counts[1][2], counts[1][3], counts[1][4],
		    counts[1][5], counts[2][0], counts[2][1], counts[2][2], counts[2][3],
		    counts[2][4], counts[2][5], counts[4][0], counts[4][1], counts[4][2],
		    counts[4][3], counts[4][4], counts[4][5], counts[5][0], counts[5][1],
		    counts[5][2], counts[5][3], counts[5][4], counts[5][5], counts[6][0],
		    counts[6][1], counts[6][2], counts[6][3], counts[6][4], counts[6][5],
		    counts[7][0], counts[7][1], counts[7][2], counts[7][3], counts[7][4],
		    counts[7][5]);
	}
	h_close(&h);
	h_close(&h2);
	free(e.addrs);
	free(m);
}

static unsigned env_uint(const char *name, unsigned dflt)
{
	const char *s = getenv(name);
	return s != NULL && *s != '\0' ? (unsigned)strtoul(s, NULL, 10) : dflt;
}

static void test_model(void **state)
{
	unsigned seed = env_uint("TABBY_IPAM_SEED", 0);
	unsigned steps = env_uint("TABBY_IPAM_STEPS", 700);
	(void)state;

	if (seed != 0) {
		run_seed(seed, steps);
		return;
	}
	for (seed = 1; seed <= 5; seed++) {
		run_seed(seed, steps);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
