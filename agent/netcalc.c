/*
 * The host dataplane's desired state outside policy; see netcalc.h for the rules.
 *
 * The calculation is a few passes over small arrays (nodes, pools, blocks and borrowed addresses
 * number in the hundreds), so lookups are linear scans: simpler than indexes and fast enough next
 * to one netlink round trip.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/netcalc.h"

struct builder {
	const struct netcalc_input *in;
	const struct netcalc_node *self; /* NULL when self has no node resource */
	struct netcalc_state *st;
	unsigned cap_routes, cap_notes;
	int err;
};

static void note(struct builder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note(struct builder *b, const char *fmt, ...)
{
	char *line = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&line, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->err = -ENOMEM;
		return;
	}
	/* The same problem found twice (two blocks of one node) is one note. */
	for (unsigned i = 0; i < b->st->n_notes; i++) {
		if (strcmp(b->st->notes[i], line) == 0) {
			free(line);
			return;
		}
	}
	if (b->st->n_notes == b->cap_notes) {
		unsigned cap = b->cap_notes ? 2 * b->cap_notes : 8;
		char **v = realloc(b->st->notes, cap * sizeof *v);
		if (v == NULL) {
			free(line);
			b->err = -ENOMEM;
			return;
		}
		b->st->notes = v;
		b->cap_notes = cap;
	}
	b->st->notes[b->st->n_notes++] = line;
}

static void add_route(struct builder *b, const struct netcalc_route *r)
{
	if (b->st->n_routes == b->cap_routes) {
		unsigned cap = b->cap_routes ? 2 * b->cap_routes : 32;
		struct netcalc_route *v = realloc(b->st->routes, cap * sizeof *v);
		if (v == NULL) {
			b->err = -ENOMEM;
			return;
		}
		b->st->routes = v;
		b->cap_routes = cap;
	}
	b->st->routes[b->st->n_routes++] = *r;
}

static const struct netcalc_node *find_node(const struct netcalc_input *in, const char *name)
{
	for (unsigned i = 0; i < in->n_nodes; i++) {
		if (strcmp(in->nodes[i].name, name) == 0) {
			return &in->nodes[i];
		}
	}
	return NULL;
}

static const struct ipam_pool *find_pool(const struct netcalc_input *in, const struct ipam_cidr *c)
{
	for (unsigned i = 0; i < in->n_pools; i++) {
		if (ipam_cidr_equal(&in->pools[i].cidr, c)) {
			return &in->pools[i];
		}
	}
	return NULL;
}

/* The pool of the block that holds a (NULL when the block or its pool is unknown). */
static const struct ipam_pool *pool_of_block(const struct netcalc_input *in,
                                             const struct ipam_cidr *block)
{
	for (unsigned i = 0; i < in->n_blocks; i++) {
		if (ipam_cidr_equal(&in->blocks[i].cidr, block)) {
			return in->blocks[i].pool.addr.family ? find_pool(in, &in->blocks[i].pool)
			                                      : NULL;
		}
	}
	return NULL;
}

static const struct netcalc_hostaddr *host_addr(const struct netcalc_node *n, int family)
{
	return family == 4 ? &n->ip4 : &n->ip6;
}

/* Whether addr lies in the subnet of h (h's address masked to its prefix). */
static bool in_subnet(const struct netcalc_hostaddr *h, const struct ipam_addr *addr)
{
	if (!h->set || h->addr.family != addr->family) {
		return false;
	}
	unsigned bits = h->prefix;
	for (unsigned i = 0; i < 16 && bits > 0; i++) {
		unsigned take = bits >= 8 ? 8 : bits;
		uint8_t mask = (uint8_t)(0xffu << (8 - take));
		if ((h->addr.b[i] & mask) != (addr->b[i] & mask)) {
			return false;
		}
		bits -= take;
	}
	return true;
}

enum encap { ENC_NONE, ENC_IPIP, ENC_VXLAN };

/* The encapsulation a pool asks for in a family, and its mode. */
static enum encap pool_encap(const struct ipam_pool *p, int family, uint8_t *mode)
{
	*mode = IPAM_ENCAP_NEVER;
	if (p == NULL) {
		return ENC_NONE;
	}
	if (family == 4 && p->ipip != IPAM_ENCAP_NEVER) {
		*mode = p->ipip;
		return ENC_IPIP;
	}
	if (p->vxlan != IPAM_ENCAP_NEVER) {
		*mode = p->vxlan;
		return ENC_VXLAN;
	}
	return ENC_NONE;
}

/* The route to dst (a block or a borrowed address, of kind) held by node n, whose pool is p (NULL
 * when the pool is gone: direct). */
static void route_via(struct builder *b, const struct ipam_cidr *dst, uint8_t kind,
                      const struct netcalc_node *n, const struct ipam_pool *p)
{
	int family = dst->addr.family;
	char ip[IPAM_ADDR_STRLEN];
	const struct netcalc_hostaddr *h = host_addr(n, family);
	if (!h->set) {
		note(b, "node %s has no IPv%d address: no IPv%d routes to it", n->name, family,
		     family);
		return;
	}
	bool shared = b->self != NULL && in_subnet(host_addr(b->self, family), &h->addr);
	uint8_t mode;
	enum encap enc = pool_encap(p, family, &mode);
	if (enc != ENC_NONE && mode == IPAM_ENCAP_CROSS_SUBNET && shared) {
		enc = ENC_NONE;
	}
	struct netcalc_route r = {.dst = *dst, .type = NETCALC_UNICAST, .kind = kind};
	switch (enc) {
	case ENC_NONE:
		r.gw = h->addr;
		if (!shared) {
			note(b,
			     "node %s (%s) is on no subnet this host shares: the direct routes to "
			     "it "
			     "need an L2-adjacent host or an encapsulating pool",
			     n->name, ipam_addr_format(&h->addr, ip));
		}
		break;
	case ENC_IPIP:
		r.gw = h->addr;
		r.onlink = true;
		snprintf(r.dev, sizeof r.dev, "%s", NETCALC_IPIP_DEV);
		break;
	case ENC_VXLAN: {
		const struct netcalc_vxlan *vx = &b->st->vxlan[family == 4 ? 0 : 1];
		const struct ipam_addr *vtep = family == 4 ? &n->vxlan4 : &n->vxlan6;
		if (!vx->wanted) {
			return; /* self has no underlay address of the family: noted already */
		}
		if (vtep->family == 0) {
			note(b,
			     "node %s has no IPv%d VXLAN tunnel address yet: no VXLAN routes to it",
			     n->name, family);
			return;
		}
		r.gw = *vtep;
		r.onlink = true;
		snprintf(r.dev, sizeof r.dev, "%s", vx->dev);
		break;
	}
	}
	add_route(b, &r);
}

/* Tunnel devices and the tunnel addresses to ask for: from every pool (a disabled pool's blocks
 * are still routed), addresses only from enabled ones. */
static void tunnels(struct builder *b)
{
	const struct netcalc_input *in = b->in;
	struct netcalc_state *st = b->st;
	const struct netcalc_node *self = b->self;
	bool ipip = false, vxlan[2] = {false, false};
	for (unsigned i = 0; i < in->n_pools; i++) {
		const struct ipam_pool *p = &in->pools[i];
		int family = p->cidr.addr.family;
		uint8_t mode;
		enum encap enc = pool_encap(p, family, &mode);
		int fi = family == 4 ? 0 : 1;
		if (enc == ENC_IPIP) {
			ipip = true;
			if (!p->disabled && !st->req_ipip.wanted) {
				st->req_ipip.wanted = true;
				st->req_ipip.pool = p->cidr;
			}
		} else if (enc == ENC_VXLAN) {
			vxlan[fi] = true;
			if (!p->disabled && !st->req_vxlan[fi].wanted) {
				st->req_vxlan[fi].wanted = true;
				st->req_vxlan[fi].pool = p->cidr;
			}
		}
	}
	st->ipip = (struct netcalc_ipip){.wanted = ipip, .mtu = NETCALC_IPIP_MTU};
	if (self != NULL) {
		st->ipip.addr = self->ipip;
	}
	if (self != NULL && self->ipip.family != 0) {
		st->req_ipip.wanted = false;
	}
	snprintf(st->req_ipip.handle, sizeof st->req_ipip.handle, "%s%s", NETCALC_IPIP_HANDLE,
	         in->self);
	for (int fi = 0; fi < 2; fi++) {
		int family = fi == 0 ? 4 : 6;
		struct netcalc_vxlan *vx = &st->vxlan[fi];
		*vx = (struct netcalc_vxlan){
		    .family = family,
		    .vni = fi == 0 ? NETCALC_VXLAN_VNI4 : NETCALC_VXLAN_VNI6,
		    .port = NETCALC_VXLAN_PORT,
		    .mtu = fi == 0 ? NETCALC_VXLAN_MTU4 : NETCALC_VXLAN_MTU6,
		};
		snprintf(vx->dev, sizeof vx->dev, "%s",
		         fi == 0 ? NETCALC_VXLAN_DEV4 : NETCALC_VXLAN_DEV6);
		netcalc_vtep_mac(in->self, family, vx->mac);
		snprintf(st->req_vxlan[fi].handle, sizeof st->req_vxlan[fi].handle, "%s%s",
		         fi == 0 ? NETCALC_VXLAN_HANDLE : NETCALC_VXLAN6_HANDLE, in->self);
		const struct ipam_addr *mine = NULL;
		if (self != NULL) {
			mine = fi == 0 ? &self->vxlan4 : &self->vxlan6;
			if (mine->family != 0) {
				st->req_vxlan[fi].wanted = false;
			}
		}
		if (!vxlan[fi]) {
			continue;
		}
		if (self == NULL || !host_addr(self, family)->set) {
			note(b,
			     "this host (%s) has no IPv%d address in its node resource: no IPv%d "
			     "VXLAN device",
			     in->self, family, family);
			st->req_vxlan[fi].wanted = false;
			continue;
		}
		vx->wanted = true;
		vx->local = host_addr(self, family)->addr;
		vx->addr = *mine;
	}
}

static int vtep_peers(struct builder *b, struct netcalc_vxlan *vx)
{
	const struct netcalc_input *in = b->in;
	int family = vx->family;
	if (!vx->wanted) {
		return 0;
	}
	vx->peers = calloc(in->n_nodes ? in->n_nodes : 1, sizeof *vx->peers);
	if (vx->peers == NULL) {
		return -ENOMEM;
	}
	/* Node name order, so that the same cluster gives the same list whatever the input
	 * order: nodes are few, so a selection pass per peer is fine. */
	const char *last = NULL;
	for (;;) {
		const struct netcalc_node *next = NULL;
		for (unsigned i = 0; i < in->n_nodes; i++) {
			const struct netcalc_node *n = &in->nodes[i];
			const struct ipam_addr *vtep = family == 4 ? &n->vxlan4 : &n->vxlan6;
			if (strcmp(n->name, in->self) == 0 || vtep->family == 0 ||
			    !host_addr(n, family)->set) {
				continue;
			}
			if (last != NULL && strcmp(n->name, last) <= 0) {
				continue;
			}
			if (next == NULL || strcmp(n->name, next->name) < 0) {
				next = n;
			}
		}
		if (next == NULL) {
			break;
		}
		struct netcalc_vtep *p = &vx->peers[vx->n_peers++];
		netcalc_vtep_mac(next->name, family, p->mac);
		p->vtep = family == 4 ? next->vxlan4 : next->vxlan6;
		p->node_ip = host_addr(next, family)->addr;
		last = next->name;
	}
	return 0;
}

static void block_routes(struct builder *b)
{
	const struct netcalc_input *in = b->in;
	char d[IPAM_CIDR_STRLEN];
	for (unsigned i = 0; i < in->n_blocks && b->err == 0; i++) {
		const struct ipam_block_info *blk = &in->blocks[i];
		if (blk->affinity[0] == 0) {
			continue; /* its addresses are all borrowed: /32s */
		}
		if (strcmp(blk->affinity, in->self) == 0) {
			struct netcalc_route r = {.dst = blk->cidr,
			                          .type = NETCALC_BLACKHOLE,
			                          .kind = NETCALC_R_BLOCK_LOCAL};
			add_route(b, &r);
			continue;
		}
		const struct netcalc_node *n = find_node(in, blk->affinity);
		if (n == NULL) {
			note(b,
			     "block %s is affine to %s, which has no node resource: no route to it",
			     ipam_cidr_format(&blk->cidr, d), blk->affinity);
			continue;
		}
		const struct ipam_pool *p =
		    blk->pool.addr.family ? find_pool(in, &blk->pool) : NULL;
		route_via(b, &blk->cidr, NETCALC_R_BLOCK, n, p);
	}
}

static void borrowed_routes(struct builder *b)
{
	const struct netcalc_input *in = b->in;
	const char *unknown = NULL; /* the last node found without a resource */
	for (unsigned i = 0; i < in->n_allocs && b->err == 0; i++) {
		const struct netcalc_alloc *al = &in->allocs[i];
		if (strcmp(al->node, in->self) == 0 ||
		    (unknown != NULL && strcmp(al->node, unknown) == 0)) {
			continue; /* the local workload route covers it; or noted already */
		}
		const struct netcalc_node *n = find_node(in, al->node);
		if (n == NULL) {
			/* One note per node, not per address: a node removed with its addresses
			 * left behind can hold thousands, mostly one after another (IPAM lists
			 * them in address order), and note() compares each with every note. */
			unknown = al->node;
			note(b,
			     "addresses are held by %s, which has no node resource: no routes to "
			     "them",
			     al->node);
			continue;
		}
		struct ipam_cidr dst = {.addr = al->addr,
		                        .prefix = (uint8_t)(al->addr.family == 4 ? 32 : 128)};
		route_via(b, &dst, NETCALC_R_BORROWED, n, pool_of_block(in, &al->block));
	}
}

static void workload_routes(struct builder *b)
{
	const struct netcalc_input *in = b->in;
	for (unsigned i = 0; i < in->n_workloads && b->err == 0; i++) {
		const struct netcalc_workload *w = &in->workloads[i];
		if (w->iface == NULL || w->iface[0] == 0 || strlen(w->iface) >= 16) {
			continue;
		}
		for (unsigned k = 0; k < w->n_addrs; k++) {
			struct netcalc_route r = {.dst = w->addrs[k],
			                          .type = NETCALC_UNICAST,
			                          .kind = NETCALC_R_WORKLOAD,
			                          .scope = NETCALC_SCOPE_LINK};
			snprintf(r.dev, sizeof r.dev, "%s", w->iface);
			add_route(b, &r);
		}
	}
}

static int cmp_cidr(const struct ipam_cidr *a, const struct ipam_cidr *b)
{
	if (a->addr.family != b->addr.family) {
		return a->addr.family < b->addr.family ? -1 : 1;
	}
	int c = memcmp(a->addr.b, b->addr.b, sizeof a->addr.b);
	if (c != 0) {
		return c;
	}
	return a->prefix < b->prefix ? -1 : a->prefix > b->prefix ? 1 : 0;
}

int netcalc_route_cmp(const struct netcalc_route *a, const struct netcalc_route *b)
{
	return cmp_cidr(&a->dst, &b->dst);
}

/* Destination order; for one destination, the route that wins first: a local workload (its
 * interface is here) over a borrowed address over a block, then a fixed order of the rest so
 * that the choice never depends on the input order. */
static int cmp_sort(const void *x, const void *y)
{
	const struct netcalc_route *a = x, *b = y;
	int c = netcalc_route_cmp(a, b);
	if (c != 0) {
		return c;
	}
	if (a->kind != b->kind) {
		return a->kind > b->kind ? -1 : 1;
	}
	if ((c = strcmp(a->dev, b->dev)) != 0) {
		return c;
	}
	return memcmp(a->gw.b, b->gw.b, sizeof a->gw.b);
}

static void sort_routes(struct builder *b)
{
	struct netcalc_state *st = b->st;
	char d[IPAM_CIDR_STRLEN], w1[128], w2[128];
	if (st->n_routes > 1) {
		qsort(st->routes, st->n_routes, sizeof *st->routes, cmp_sort);
	}
	unsigned out = 0;
	for (unsigned i = 0; i < st->n_routes; i++) {
		if (out > 0 && netcalc_route_cmp(&st->routes[out - 1], &st->routes[i]) == 0) {
			if (!netcalc_route_equal(&st->routes[out - 1], &st->routes[i])) {
				note(b, "two routes wanted for %s: %s wins over %s",
				     ipam_cidr_format(&st->routes[i].dst, d),
				     netcalc_route_format(&st->routes[out - 1], w1, sizeof w1),
				     netcalc_route_format(&st->routes[i], w2, sizeof w2));
			}
			continue;
		}
		st->routes[out++] = st->routes[i];
	}
	st->n_routes = out;
}

static int nat_pools(struct builder *b)
{
	const struct netcalc_input *in = b->in;
	struct netcalc_state *st = b->st;
	unsigned n = in->n_pools ? in->n_pools : 1;
	st->nat_pools = calloc(n, sizeof *st->nat_pools);
	st->all_pools = calloc(n, sizeof *st->all_pools);
	if (st->nat_pools == NULL || st->all_pools == NULL) {
		return -ENOMEM;
	}
	/* Disabled pools count too: their addresses still live and still need NAT. */
	for (unsigned i = 0; i < in->n_pools; i++) {
		st->all_pools[st->n_all_pools++] = in->pools[i].cidr;
		if (in->pools[i].nat_outgoing) {
			st->nat_pools[st->n_nat_pools++] = in->pools[i].cidr;
		}
	}
	return 0;
}

static int addr_order(const void *pa, const void *pb)
{
	const struct ipam_addr *a = pa, *b = pb;
	if (a->family != b->family) {
		return a->family < b->family ? -1 : 1;
	}
	return memcmp(a->b, b->b, sizeof a->b);
}

static int tunnel_sources(struct builder *b)
{
	const struct netcalc_input *in = b->in;
	struct netcalc_state *st = b->st;
	bool want4 = st->ipip.wanted || st->vxlan[0].wanted, want6 = st->vxlan[1].wanted;
	st->tunnel_sources = calloc(2 * (size_t)in->n_nodes + 1, sizeof *st->tunnel_sources);
	if (st->tunnel_sources == NULL) {
		return -ENOMEM;
	}
	unsigned n = 0;
	for (unsigned i = 0; i < in->n_nodes; i++) {
		if (want4 && in->nodes[i].ip4.set) {
			st->tunnel_sources[n++] = in->nodes[i].ip4.addr;
		}
		if (want6 && in->nodes[i].ip6.set) {
			st->tunnel_sources[n++] = in->nodes[i].ip6.addr;
		}
	}
	qsort(st->tunnel_sources, n, sizeof *st->tunnel_sources, addr_order);
	unsigned k = 0;
	for (unsigned i = 0; i < n; i++) {
		if (k == 0 || addr_order(&st->tunnel_sources[k - 1], &st->tunnel_sources[i]) != 0) {
			st->tunnel_sources[k++] = st->tunnel_sources[i];
		}
	}
	st->n_tunnel_sources = k;
	return 0;
}

int netcalc_compute(const struct netcalc_input *in, struct netcalc_state *out)
{
	*out = (struct netcalc_state){0};
	struct builder b = {.in = in, .st = out, .self = find_node(in, in->self)};
	if (b.self == NULL) {
		note(&b,
		     "this host (%s) has no node resource: every other host counts as on another "
		     "subnet",
		     in->self);
	} else if (!b.self->ip4.set || !b.self->ip6.set) {
		int family = b.self->ip4.set ? 6 : 4;
		note(&b, "this host (%s) has no IPv%d address in its node resource", in->self,
		     family);
	}
	tunnels(&b);
	if (b.err == 0) {
		b.err = vtep_peers(&b, &out->vxlan[0]);
	}
	if (b.err == 0) {
		b.err = vtep_peers(&b, &out->vxlan[1]);
	}
	if (b.err == 0) {
		block_routes(&b);
	}
	if (b.err == 0) {
		borrowed_routes(&b);
	}
	if (b.err == 0) {
		workload_routes(&b);
	}
	if (b.err == 0) {
		sort_routes(&b);
	}
	if (b.err == 0) {
		b.err = nat_pools(&b);
	}
	if (b.err == 0) {
		b.err = tunnel_sources(&b);
	}
	if (b.err != 0) {
		netcalc_state_free(out);
		return b.err;
	}
	return 0;
}

void netcalc_state_free(struct netcalc_state *s)
{
	free(s->routes);
	free(s->vxlan[0].peers);
	free(s->vxlan[1].peers);
	free(s->nat_pools);
	free(s->all_pools);
	free(s->tunnel_sources);
	for (unsigned i = 0; i < s->n_notes; i++) {
		free(s->notes[i]);
	}
	free(s->notes);
	*s = (struct netcalc_state){0};
}

void netcalc_vtep_mac(const char *node, int family, uint8_t mac[6])
{
	/* FNV-1a 64 over the family tag and the name. */
	uint64_t h = 14695981039346656037ULL;
	const char *tag = family == 6 ? "vtep6:" : "vtep4:";
	for (const char *p = tag; *p; p++) {
		h = (h ^ (uint8_t)*p) * 1099511628211ULL;
	}
	for (const char *p = node; *p; p++) {
		h = (h ^ (uint8_t)*p) * 1099511628211ULL;
	}
	for (int i = 0; i < 6; i++) {
		mac[i] = (uint8_t)(h >> (8 * i));
	}
	mac[0] = (uint8_t)((mac[0] & 0xfe) | 0x02); /* unicast, locally administered */
}

bool netcalc_route_equal(const struct netcalc_route *a, const struct netcalc_route *b)
{
	return ipam_cidr_equal(&a->dst, &b->dst) && a->dst.prefix == b->dst.prefix &&
	       a->type == b->type && a->gw.family == b->gw.family &&
	       memcmp(a->gw.b, b->gw.b, sizeof a->gw.b) == 0 && strcmp(a->dev, b->dev) == 0 &&
	       a->onlink == b->onlink && a->scope == b->scope;
}

char *netcalc_route_format(const struct netcalc_route *r, char *buf, size_t len)
{
	char d[IPAM_CIDR_STRLEN], gw[IPAM_ADDR_STRLEN];
	ipam_cidr_format(&r->dst, d);
	if (r->type == NETCALC_BLACKHOLE) {
		snprintf(buf, len, "blackhole %s", d);
		return buf;
	}
	snprintf(buf, len, "%s%s%s%s%s%s%s", d, r->gw.family ? " via " : "",
	         r->gw.family ? ipam_addr_format(&r->gw, gw) : "", r->dev[0] ? " dev " : "", r->dev,
	         r->onlink ? " onlink" : "", r->scope == NETCALC_SCOPE_LINK ? " scope link" : "");
	return buf;
}
