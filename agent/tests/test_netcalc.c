/*
 * The host dataplane calculation (netcalc.c) against made-up clusters: every routing rule of
 * calico-behaviour.md 5.9 and the issue (direct, IP-in-IP, VXLAN, cross-subnet, borrowed /32s on
 * the owner and elsewhere, blackholes, blocks without affinity, nodes without an address, IPv6),
 * tunnel devices and their peers, tunnel address requests, NAT pools, and determinism.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/netcalc.h"

/* ------------------------------------------------------------------------------------------ */
/* Building input                                                                              */

#define MAXN 16

struct fx {
	struct netcalc_node nodes[MAXN];
	unsigned n_nodes;
	struct ipam_pool pools[MAXN];
	unsigned n_pools;
	struct ipam_block_info blocks[MAXN];
	unsigned n_blocks;
	struct netcalc_alloc allocs[MAXN];
	unsigned n_allocs;
	struct netcalc_workload weps[MAXN];
	struct ipam_cidr wep_addrs[MAXN];
	unsigned n_weps, n_wep_addrs;
	struct netcalc_state st;
};

static struct ipam_addr A(const char *s) {
	struct ipam_addr a;
	assert_true(ipam_addr_parse(s, &a));
	return a;
}

static struct ipam_cidr
C(const char *s) {
	struct ipam_cidr c;
	char err[128];
	assert_true(ipam_cidr_parse(s, &c, err, sizeof err));
	return c;
}

static struct netcalc_hostaddr
H(const char *addr, int prefix) {
	return (struct netcalc_hostaddr){.set = true, .addr = A(addr), .prefix = (uint8_t)prefix};
}

static struct netcalc_node *
node(struct fx *f, const char *name, const char *ip4, int p4, const char *ip6, int p6)
{
	struct netcalc_node *n = &f->nodes[f->n_nodes++];
	*n = (struct netcalc_node){.name = name};
	if (ip4 != NULL) {
		n->ip4 = H(ip4, p4);
	}
	if (ip6 != NULL) {
		n->ip6 = H(ip6, p6);
	}
	return n;
}

static struct ipam_pool *pool(struct fx *f, const char *cidr, uint8_t ipip, uint8_t vxlan, bool nat)
{
	struct ipam_pool *p = &f->pools[f->n_pools++];
	*p = (struct ipam_pool){.cidr = C(cidr), .ipip = ipip, .vxlan = vxlan, .nat_outgoing = nat};
	p->block_size = p->cidr.addr.family == 4 ? 26 : 122;
	return p;
}

static void block(struct fx *f, const char *cidr, const char *pool_cidr, const char *affinity)
{
	struct ipam_block_info *b = &f->blocks[f->n_blocks++];
	*b = (struct ipam_block_info){.cidr = C(cidr)};
	if (pool_cidr != NULL) {
		b->pool = C(pool_cidr);
	}
	snprintf(b->affinity, sizeof b->affinity, "%s", affinity);
}

static void alloc(struct fx *f, const char *addr, const char *blk, const char *node_name)
{
	f->allocs[f->n_allocs++] =
	    (struct netcalc_alloc){.addr = A(addr), .block = C(blk), .node = node_name};
}

static void wep(struct fx *f, const char *iface, const char *a1, const char *a2)
{
	struct netcalc_workload *w = &f->weps[f->n_weps++];
	*w = (struct netcalc_workload){.iface = iface, .addrs = &f->wep_addrs[f->n_wep_addrs]};
	f->wep_addrs[f->n_wep_addrs++] = C(a1);
	w->n_addrs = 1;
	if (a2 != NULL) {
		f->wep_addrs[f->n_wep_addrs++] = C(a2);
		w->n_addrs = 2;
	}
}

static void compute(struct fx *f, const char *self)
{
	netcalc_state_free(&f->st);
	struct netcalc_input in = {
	    .self = self,
	    .nodes = f->nodes,
	    .n_nodes = f->n_nodes,
	    .pools = f->pools,
	    .n_pools = f->n_pools,
	    .blocks = f->blocks,
	    .n_blocks = f->n_blocks,
	    .allocs = f->allocs,
	    .n_allocs = f->n_allocs,
	    .workloads = f->weps,
	    .n_workloads = f->n_weps,
	};
	assert_int_equal(netcalc_compute(&in, &f->st), 0);
	/* Sorted, one route per destination. */
	for (unsigned i = 1; i < f->st.n_routes; i++) {
		assert_true(netcalc_route_cmp(&f->st.routes[i - 1], &f->st.routes[i]) < 0);
	}
}

static const struct netcalc_route *route(struct fx *f, const char *dst)
{
	struct ipam_cidr c = C(dst);
	for (unsigned i = 0; i < f->st.n_routes; i++) {
		if (ipam_cidr_equal(&f->st.routes[i].dst, &c)) {
			return &f->st.routes[i];
		}
	}
	return NULL;
}

/* The route to dst, formatted ("" when there is none). */
static const char *fmt(struct fx *f, const char *dst)
{
	static char buf[256];
	const struct netcalc_route *r = route(f, dst);
	if (r == NULL) {
		return "";
	}
	return netcalc_route_format(r, buf, sizeof buf);
}

/* How many notes contain part. */
static unsigned count_notes(struct fx *f, const char *part)
{
	unsigned n = 0;
	for (unsigned i = 0; i < f->st.n_notes; i++) {
		n += strstr(f->st.notes[i], part) != NULL;
	}
	return n;
}

static bool has_note(struct fx *f, const char *part)
{
	return count_notes(f, part) > 0;
}

static struct fx *fx_new(void)
{
	struct fx *f = calloc(1, sizeof *f);
	assert_non_null(f);
	return f;
}

static void fx_free(struct fx *f)
{
	netcalc_state_free(&f->st);
	free(f);
}

/* Three hosts: a and b share 10.99.0.0/24, c is on 10.98.0.0/24. */
static struct fx *three_hosts(uint8_t ipip, uint8_t vxlan)
{
	struct fx *f = fx_new();
	node(f, "a", "10.99.0.11", 24, "fd00:99::11", 64);
	node(f, "b", "10.99.0.12", 24, "fd00:99::12", 64);
	node(f, "c", "10.98.0.13", 24, "fd00:98::13", 64);
	pool(f, "10.64.0.0/16", ipip, vxlan, false);
	block(f, "10.64.0.0/26", "10.64.0.0/16", "a");
	block(f, "10.64.0.64/26", "10.64.0.0/16", "b");
	block(f, "10.64.0.128/26", "10.64.0.0/16", "c");
	return f;
}

/* ------------------------------------------------------------------------------------------ */
/* Tests                                                                                       */

static void test_direct(void **state)
{
	(void)state;
	struct fx *f = three_hosts(IPAM_ENCAP_NEVER, IPAM_ENCAP_NEVER);
	compute(f, "a");
	assert_string_equal(fmt(f, "10.64.0.0/26"), "blackhole 10.64.0.0/26");
	assert_int_equal(route(f, "10.64.0.0/26")->kind, NETCALC_R_BLOCK_LOCAL);
	assert_string_equal(fmt(f, "10.64.0.64/26"), "10.64.0.64/26 via 10.99.0.12");
	assert_int_equal(route(f, "10.64.0.64/26")->scope, NETCALC_SCOPE_UNIVERSE);
	/* c is on another subnet: still via c, and said once. */
	assert_string_equal(fmt(f, "10.64.0.128/26"), "10.64.0.128/26 via 10.98.0.13");
	assert_true(has_note(f, "node c (10.98.0.13) is on no subnet this host shares"));
	assert_false(has_note(f, "node b"));
	assert_int_equal(f->st.n_routes, 3);
	assert_false(f->st.ipip.wanted);
	assert_false(f->st.vxlan[0].wanted);
	assert_false(f->st.vxlan[1].wanted);
	assert_false(f->st.req_ipip.wanted);
	/* On c, both others are on another subnet. */
	compute(f, "c");
	assert_string_equal(fmt(f, "10.64.0.0/26"), "10.64.0.0/26 via 10.99.0.11");
	assert_string_equal(fmt(f, "10.64.0.128/26"), "blackhole 10.64.0.128/26");
	fx_free(f);
}

static void test_ipip_always(void **state)
{
	(void)state;
	struct fx *f = three_hosts(IPAM_ENCAP_ALWAYS, IPAM_ENCAP_NEVER);
	compute(f, "a");
	assert_string_equal(fmt(f, "10.64.0.64/26"),
	                    "10.64.0.64/26 via 10.99.0.12 dev tunl0 onlink");
	assert_string_equal(fmt(f, "10.64.0.128/26"),
	                    "10.64.0.128/26 via 10.98.0.13 dev tunl0 onlink");
	assert_false(has_note(f, "no subnet"));
	assert_true(f->st.ipip.wanted);
	assert_int_equal(f->st.ipip.mtu, 1440);
	assert_int_equal(f->st.ipip.addr.family, 0);
	/* No tunnel address yet: ask for one from the ipip pool. */
	assert_true(f->st.req_ipip.wanted);
	assert_string_equal(f->st.req_ipip.handle, "ipip-tunnel-addr-a");
	assert_true(ipam_cidr_equal(&f->st.req_ipip.pool, &f->pools[0].cidr));
	assert_false(f->st.req_vxlan[0].wanted);
	/* With one, it goes on tunl0 and no request is made. */
	f->nodes[0].ipip = A("10.64.0.1");
	compute(f, "a");
	assert_false(f->st.req_ipip.wanted);
	assert_true(f->st.ipip.addr.family == 4 &&
	            memcmp(f->st.ipip.addr.b, A("10.64.0.1").b, 4) == 0);
	/* A disabled pool still routes through the tunnel, but no address is asked from it. */
	f->nodes[0].ipip = (struct ipam_addr){0};
	f->pools[0].disabled = true;
	compute(f, "a");
	assert_true(f->st.ipip.wanted);
	assert_false(f->st.req_ipip.wanted);
	assert_string_equal(fmt(f, "10.64.0.64/26"),
	                    "10.64.0.64/26 via 10.99.0.12 dev tunl0 onlink");
	fx_free(f);
}

static void test_ipip_cross_subnet(void **state)
{
	(void)state;
	struct fx *f = three_hosts(IPAM_ENCAP_CROSS_SUBNET, IPAM_ENCAP_NEVER);
	compute(f, "a");
	assert_string_equal(fmt(f, "10.64.0.64/26"), "10.64.0.64/26 via 10.99.0.12");
	assert_string_equal(fmt(f, "10.64.0.128/26"),
	                    "10.64.0.128/26 via 10.98.0.13 dev tunl0 onlink");
	assert_true(f->st.ipip.wanted);
	assert_false(has_note(f, "no subnet"));
	/* The subnet is this host's: a /16 on a host makes c a neighbour. */
	f->nodes[0].ip4.prefix = 8;
	compute(f, "a");
	assert_string_equal(fmt(f, "10.64.0.128/26"), "10.64.0.128/26 via 10.98.0.13");
	fx_free(f);
}

static void test_vxlan(void **state)
{
	(void)state;
	struct fx *f = three_hosts(IPAM_ENCAP_NEVER, IPAM_ENCAP_ALWAYS);
	f->nodes[0].vxlan4 = A("10.64.0.1");
	f->nodes[1].vxlan4 = A("10.64.0.65");
	/* c has no VTEP yet */
	compute(f, "a");
	assert_string_equal(fmt(f, "10.64.0.64/26"),
	                    "10.64.0.64/26 via 10.64.0.65 dev vxlan.tabby onlink");
	assert_string_equal(fmt(f, "10.64.0.128/26"), "");
	assert_true(has_note(f, "node c has no IPv4 VXLAN tunnel address yet"));
	const struct netcalc_vxlan *vx = &f->st.vxlan[0];
	assert_true(vx->wanted);
	assert_string_equal(vx->dev, "vxlan.tabby");
	assert_int_equal(vx->vni, 4096);
	assert_int_equal(vx->port, 4789);
	assert_int_equal(vx->mtu, 1450);
	assert_memory_equal(vx->local.b, A("10.99.0.11").b, 16);
	assert_memory_equal(vx->addr.b, A("10.64.0.1").b, 16);
	uint8_t mac[6];
	netcalc_vtep_mac("a", 4, mac);
	assert_memory_equal(vx->mac, mac, 6);
	/* One peer (b): FDB mac(b) -> 10.99.0.12, neighbour 10.64.0.65 -> mac(b). */
	assert_int_equal(vx->n_peers, 1);
	netcalc_vtep_mac("b", 4, mac);
	assert_memory_equal(vx->peers[0].mac, mac, 6);
	assert_memory_equal(vx->peers[0].vtep.b, A("10.64.0.65").b, 16);
	assert_memory_equal(vx->peers[0].node_ip.b, A("10.99.0.12").b, 16);
	assert_false(f->st.vxlan[1].wanted);
	assert_false(f->st.ipip.wanted);
	assert_false(f->st.req_vxlan[0].wanted); /* a has its VTEP */
	/* c gets its VTEP: routed and a peer, in name order. */
	f->nodes[2].vxlan4 = A("10.64.0.129");
	compute(f, "a");
	assert_string_equal(fmt(f, "10.64.0.128/26"),
	                    "10.64.0.128/26 via 10.64.0.129 dev vxlan.tabby onlink");
	assert_int_equal(f->st.vxlan[0].n_peers, 2);
	netcalc_vtep_mac("c", 4, mac);
	assert_memory_equal(f->st.vxlan[0].peers[1].mac, mac, 6);
	/* b without a VTEP of its own asks for one. */
	compute(f, "b");
	assert_false(f->st.req_vxlan[0].wanted);
	f->nodes[1].vxlan4 = (struct ipam_addr){0};
	compute(f, "b");
	assert_true(f->st.req_vxlan[0].wanted);
	assert_string_equal(f->st.req_vxlan[0].handle, "vxlan-tunnel-addr-b");
	assert_memory_equal(f->st.vxlan[0].local.b, A("10.99.0.12").b, 16);
	/* Cross-subnet: b is a neighbour, c is not. */
	f->nodes[1].vxlan4 = A("10.64.0.65");
	f->pools[0].vxlan = IPAM_ENCAP_CROSS_SUBNET;
	compute(f, "a");
	assert_string_equal(fmt(f, "10.64.0.64/26"), "10.64.0.64/26 via 10.99.0.12");
	assert_string_equal(fmt(f, "10.64.0.128/26"),
	                    "10.64.0.128/26 via 10.64.0.129 dev vxlan.tabby onlink");
	fx_free(f);
}

static void test_vtep_mac(void **state)
{
	(void)state;
	uint8_t m1[6], m2[6], m3[6], m4[6];
	netcalc_vtep_mac("host-1", 4, m1);
	netcalc_vtep_mac("host-1", 4, m2);
	netcalc_vtep_mac("host-2", 4, m3);
	netcalc_vtep_mac("host-1", 6, m4);
	assert_memory_equal(m1, m2, 6);
	assert_memory_not_equal(m1, m3, 6);
	assert_memory_not_equal(m1, m4, 6);
	const uint8_t *all[] = {m1, m3, m4};
	for (int i = 0; i < 3; i++) {
		assert_int_equal(all[i][0] & 0x01, 0); /* unicast */
		assert_int_equal(all[i][0] & 0x02, 2); /* locally administered */
	}
}

static void test_borrowed(void **state)
{
	(void)state;
	struct fx *f = three_hosts(IPAM_ENCAP_NEVER, IPAM_ENCAP_NEVER);
	/* b holds an address from a's block; c one from an unaffine block. */
	alloc(f, "10.64.0.7", "10.64.0.0/26", "b");
	block(f, "10.64.1.0/26", "10.64.0.0/16", "");
	alloc(f, "10.64.1.3", "10.64.1.0/26", "c");
	alloc(f, "10.64.1.4", "10.64.1.0/26", "a");
	/* On the owner a: the /32 beats its own blackhole. */
	compute(f, "a");
	assert_string_equal(fmt(f, "10.64.0.0/26"), "blackhole 10.64.0.0/26");
	assert_string_equal(fmt(f, "10.64.0.7/32"), "10.64.0.7/32 via 10.99.0.12");
	assert_int_equal(route(f, "10.64.0.7/32")->kind, NETCALC_R_BORROWED);
	assert_string_equal(fmt(f, "10.64.1.3/32"), "10.64.1.3/32 via 10.98.0.13");
	/* a's own borrowed address: nothing extra (the workload route covers it). */
	assert_string_equal(fmt(f, "10.64.1.4/32"), "");
	assert_string_equal(fmt(f, "10.64.1.0/26"), ""); /* no affinity: no block route */
	/* On the holder b: nothing for its own address. */
	compute(f, "b");
	assert_string_equal(fmt(f, "10.64.0.7/32"), "");
	assert_string_equal(fmt(f, "10.64.0.0/26"), "10.64.0.0/26 via 10.99.0.11");
	assert_string_equal(fmt(f, "10.64.1.4/32"), "10.64.1.4/32 via 10.99.0.11");
	/* Elsewhere (c): the /32 via b, by the pool's rule (ipip always here). */
	f->pools[0].ipip = IPAM_ENCAP_ALWAYS;
	compute(f, "c");
	assert_string_equal(fmt(f, "10.64.0.7/32"), "10.64.0.7/32 via 10.99.0.12 dev tunl0 onlink");
	assert_string_equal(fmt(f, "10.64.1.3/32"), "");
	/* Held by a node without a node resource: no route, and one note for all its
	 * addresses. */
	alloc(f, "10.64.1.9", "10.64.1.0/26", "ghost");
	alloc(f, "10.64.1.10", "10.64.1.0/26", "ghost");
	alloc(f, "10.64.1.11", "10.64.1.0/26", "ghost");
	compute(f, "a");
	assert_string_equal(fmt(f, "10.64.1.9/32"), "");
	assert_string_equal(fmt(f, "10.64.1.11/32"), "");
	assert_int_equal(count_notes(f, "held by ghost, which has no node resource"), 1);
	fx_free(f);
}

static void test_node_without_address(void **state)
{
	(void)state;
	struct fx *f = three_hosts(IPAM_ENCAP_NEVER, IPAM_ENCAP_NEVER);
	pool(f, "fd80::/64", IPAM_ENCAP_NEVER, IPAM_ENCAP_NEVER, false);
	block(f, "fd80::/122", "fd80::/64", "a");
	block(f, "fd80::40/122", "fd80::/64", "b");
	block(f, "fd80::80/122", "fd80::/64", "c");
	f->nodes[1].ip6 = (struct netcalc_hostaddr){0}; /* b: IPv4 only */
	f->nodes[2].ip4 = (struct netcalc_hostaddr){0}; /* c: IPv6 only */
	compute(f, "a");
	assert_string_equal(fmt(f, "10.64.0.64/26"), "10.64.0.64/26 via 10.99.0.12");
	assert_string_equal(fmt(f, "fd80::40/122"), "");
	assert_true(has_note(f, "node b has no IPv6 address"));
	assert_string_equal(fmt(f, "10.64.0.128/26"), "");
	assert_true(has_note(f, "node c has no IPv4 address"));
	assert_string_equal(fmt(f, "fd80::80/122"), "fd80::80/122 via fd00:98::13");
	/* One note per node and family however many blocks. */
	block(f, "10.64.2.0/26", "10.64.0.0/16", "c");
	compute(f, "a");
	assert_int_equal(count_notes(f, "node c has no IPv4"), 1);
	/* A block affine to a node without a node resource. */
	block(f, "10.64.3.0/26", "10.64.0.0/16", "nobody");
	compute(f, "a");
	assert_string_equal(fmt(f, "10.64.3.0/26"), "");
	assert_true(has_note(f, "affine to nobody, which has no node resource"));
	/* This host without a node resource: blackholes still, others count as off-subnet. */
	compute(f, "stranger");
	assert_true(has_note(f, "this host (stranger) has no node resource"));
	fx_free(f);
}

static void test_ipv6(void **state)
{
	(void)state;
	struct fx *f = fx_new();
	node(f, "a", "10.99.0.11", 24, "fd00:99::11", 64);
	node(f, "b", "10.99.0.12", 24, "fd00:98::12", 64); /* another IPv6 subnet */
	/* An IPv6 pool marked ipip (IPAM refuses it; ignored here) is routed directly. */
	pool(f, "fd80::/64", IPAM_ENCAP_ALWAYS, IPAM_ENCAP_NEVER, true);
	block(f, "fd80::/122", "fd80::/64", "a");
	block(f, "fd80::40/122", "fd80::/64", "b");
	compute(f, "a");
	assert_string_equal(fmt(f, "fd80::/122"), "blackhole fd80::/122");
	assert_string_equal(fmt(f, "fd80::40/122"), "fd80::40/122 via fd00:98::12");
	assert_false(f->st.ipip.wanted);
	assert_false(f->st.req_ipip.wanted);
	/* VXLAN on IPv6: its own device over the IPv6 underlay. */
	f->pools[0].ipip = IPAM_ENCAP_NEVER;
	f->pools[0].vxlan = IPAM_ENCAP_CROSS_SUBNET;
	f->nodes[1].vxlan6 = A("fd80::41");
	compute(f, "a");
	assert_string_equal(fmt(f, "fd80::40/122"),
	                    "fd80::40/122 via fd80::41 dev vxlan-v6.tabby onlink");
	const struct netcalc_vxlan *vx = &f->st.vxlan[1];
	assert_true(vx->wanted);
	assert_false(f->st.vxlan[0].wanted);
	assert_int_equal(vx->vni, 6096);
	assert_int_equal(vx->mtu, 1430);
	assert_memory_equal(vx->local.b, A("fd00:99::11").b, 16);
	assert_int_equal(vx->n_peers, 1);
	assert_memory_equal(vx->peers[0].node_ip.b, A("fd00:98::12").b, 16);
	assert_true(f->st.req_vxlan[1].wanted);
	assert_string_equal(f->st.req_vxlan[1].handle, "vxlan-v6-tunnel-addr-a");
	/* Borrowed IPv6: a /128. */
	alloc(f, "fd80::5", "fd80::/122", "b");
	compute(f, "a");
	assert_string_equal(fmt(f, "fd80::5/128"),
	                    "fd80::5/128 via fd80::41 dev vxlan-v6.tabby onlink");
	/* The local host without an IPv6 address: no IPv6 VXLAN device, no request. */
	f->nodes[0].ip6 = (struct netcalc_hostaddr){0};
	compute(f, "a");
	assert_false(f->st.vxlan[1].wanted);
	assert_false(f->st.req_vxlan[1].wanted);
	assert_true(has_note(f, "no IPv6 VXLAN device"));
	assert_string_equal(fmt(f, "fd80::40/122"), "");
	fx_free(f);
}

static void test_workloads(void **state)
{
	(void)state;
	struct fx *f = three_hosts(IPAM_ENCAP_NEVER, IPAM_ENCAP_NEVER);
	wep(f, "cali12345678901", "10.64.0.2/32", "fd80::2/128");
	wep(f, "caliabc", "10.64.1.4/32", NULL);
	compute(f, "a");
	assert_string_equal(fmt(f, "10.64.0.2/32"), "10.64.0.2/32 dev cali12345678901 scope link");
	assert_int_equal(route(f, "10.64.0.2/32")->kind, NETCALC_R_WORKLOAD);
	assert_string_equal(fmt(f, "fd80::2/128"), "fd80::2/128 dev cali12345678901 scope link");
	assert_string_equal(fmt(f, "10.64.1.4/32"), "10.64.1.4/32 dev caliabc scope link");
	/* Stale state: an address the IPAM says b holds but a local endpoint has: the local
	 * interface wins, and the conflict is noted. */
	alloc(f, "10.64.1.4", "10.64.1.0/26", "b");
	compute(f, "a");
	assert_string_equal(fmt(f, "10.64.1.4/32"), "10.64.1.4/32 dev caliabc scope link");
	assert_true(has_note(f, "two routes wanted for 10.64.1.4/32"));
	fx_free(f);
}

static void test_nat(void **state)
{
	(void)state;
	struct fx *f = fx_new();
	node(f, "a", "10.99.0.11", 24, NULL, 0);
	pool(f, "10.64.0.0/16", IPAM_ENCAP_NEVER, IPAM_ENCAP_NEVER, true);
	pool(f, "10.65.0.0/16", IPAM_ENCAP_NEVER, IPAM_ENCAP_NEVER, false);
	pool(f, "10.66.0.0/16", IPAM_ENCAP_NEVER, IPAM_ENCAP_NEVER, true)->disabled = true;
	pool(f, "fd80::/64", IPAM_ENCAP_NEVER, IPAM_ENCAP_NEVER, true);
	compute(f, "a");
	assert_int_equal(f->st.n_all_pools, 4);
	assert_int_equal(f->st.n_nat_pools, 3);
	assert_true(ipam_cidr_equal(&f->st.nat_pools[0], &f->pools[0].cidr));
	assert_true(ipam_cidr_equal(&f->st.nat_pools[1], &f->pools[2].cidr));
	assert_true(ipam_cidr_equal(&f->st.nat_pools[2], &f->pools[3].cidr));
	assert_true(has_note(f, "this host (a) has no IPv6 address"));
	/* No pool asks: none. */
	for (unsigned i = 0; i < f->n_pools; i++) {
		f->pools[i].nat_outgoing = false;
	}
	compute(f, "a");
	assert_int_equal(f->st.n_nat_pools, 0);
	assert_int_equal(f->st.n_all_pools, 4);
	fx_free(f);
}

/* The same cluster in another input order gives the same state. */
/* The sources a tunnel takes packets from: every node's underlay address of the tunnel's
 * family, sorted, once each; none without a tunnel. */
static void test_tunnel_sources(void **state)
{
	(void)state;
	char text[IPAM_ADDR_STRLEN];
	struct fx *f = three_hosts(IPAM_ENCAP_NEVER, IPAM_ENCAP_NEVER);
	compute(f, "a");
	assert_int_equal(f->st.n_tunnel_sources, 0);

	f->pools[0].ipip = IPAM_ENCAP_CROSS_SUBNET;
	node(f, "d", "10.99.0.12", 24, NULL, 0); /* b's address again: listed once */
	compute(f, "a");
	static const char *const want4[] = {"10.98.0.13", "10.99.0.11", "10.99.0.12"};
	assert_int_equal(f->st.n_tunnel_sources, 3);
	for (unsigned i = 0; i < 3; i++) {
		assert_string_equal(ipam_addr_format(&f->st.tunnel_sources[i], text), want4[i]);
	}

	/* IPv6 VXLAN adds the IPv6 underlay addresses after the IPv4 ones. */
	pool(f, "fd80::/64", IPAM_ENCAP_NEVER, IPAM_ENCAP_ALWAYS, false);
	compute(f, "a");
	static const char *const want[] = {"10.98.0.13",  "10.99.0.11",  "10.99.0.12",
	                                   "fd00:98::13", "fd00:99::11", "fd00:99::12"};
	assert_int_equal(f->st.n_tunnel_sources, 6);
	for (unsigned i = 0; i < 6; i++) {
		assert_string_equal(ipam_addr_format(&f->st.tunnel_sources[i], text), want[i]);
	}

	/* IPv6 VXLAN alone: the IPv6 addresses only. */
	f->pools[0].ipip = IPAM_ENCAP_NEVER;
	compute(f, "a");
	assert_int_equal(f->st.n_tunnel_sources, 3);
	assert_string_equal(ipam_addr_format(&f->st.tunnel_sources[0], text), "fd00:98::13");
	fx_free(f);
}

static void test_deterministic(void **state)
{
	(void)state;
	struct fx *f = three_hosts(IPAM_ENCAP_CROSS_SUBNET, IPAM_ENCAP_NEVER);
	struct fx *g = fx_new();
	node(g, "c", "10.98.0.13", 24, "fd00:98::13", 64);
	node(g, "b", "10.99.0.12", 24, "fd00:99::12", 64);
	node(g, "a", "10.99.0.11", 24, "fd00:99::11", 64);
	pool(g, "10.64.0.0/16", IPAM_ENCAP_CROSS_SUBNET, IPAM_ENCAP_NEVER, false);
	block(g, "10.64.0.128/26", "10.64.0.0/16", "c");
	block(g, "10.64.0.64/26", "10.64.0.0/16", "b");
	block(g, "10.64.0.0/26", "10.64.0.0/16", "a");
	alloc(f, "10.64.0.9", "10.64.0.0/26", "c");
	alloc(f, "10.64.0.8", "10.64.0.0/26", "b");
	alloc(g, "10.64.0.8", "10.64.0.0/26", "b");
	alloc(g, "10.64.0.9", "10.64.0.0/26", "c");
	compute(f, "a");
	compute(g, "a");
	assert_int_equal(f->st.n_routes, g->st.n_routes);
	assert_int_equal(f->st.n_routes, 5);
	for (unsigned i = 0; i < f->st.n_routes; i++) {
		assert_true(netcalc_route_equal(&f->st.routes[i], &g->st.routes[i]));
	}
	fx_free(f);
	fx_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_direct),
	    cmocka_unit_test(test_ipip_always),
	    cmocka_unit_test(test_ipip_cross_subnet),
	    cmocka_unit_test(test_vxlan),
	    cmocka_unit_test(test_vtep_mac),
	    cmocka_unit_test(test_borrowed),
	    cmocka_unit_test(test_node_without_address),
	    cmocka_unit_test(test_ipv6),
	    cmocka_unit_test(test_workloads),
	    cmocka_unit_test(test_nat),
	    cmocka_unit_test(test_tunnel_sources),
	    cmocka_unit_test(test_deterministic),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
