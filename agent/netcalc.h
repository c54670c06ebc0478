/*
 * Private to the agent: the host dataplane's desired state outside policy, calculated from plain
 * input (calico-behaviour.md 5.7-5.9, DESIGN.md section 6). Pure: no store, no kernel, no clock;
 * the same input gives the same output on every host and after every restart, which is what lets a
 * restarted agent fix only the differences (netsync.c).
 *
 * What it decides, for this node ("self"):
 * - a blackhole route for each block affine to self;
 * - a route for each block affine to another node N, via N, chosen by the block's pool: encap
 *   never: via N's address on the underlay (direct); IP-in-IP always: via N's address dev tunl0
 *   onlink; VXLAN always: via N's VTEP address dev vxlan.tabby (IPv6: vxlan-v6.tabby) onlink;
 *   cross-subnet modes: direct when N is on a subnet self shares, the tunnel otherwise. IPv6 has
 *   no IP-in-IP. A pool with both ipip and vxlan set (refused by IPAM) uses ipip.
 * - for an allocation whose node differs from its block's affinity (a borrowed address, or any
 *   address of a block without affinity): nothing on the allocation's own node, a /32 (/128) via
 *   that node everywhere else, by the same rule as its pool;
 * - for each local workload endpoint address: "addr dev <interface> scope link";
 * - the tunnel devices self needs and their peers, and which tunnel addresses it should ask
 *   IPAM for;
 * - the pools NAT outgoing masquerades for, and every pool (the destinations never masqueraded);
 * - the addresses this host's tunnels may take packets from (the nodes' underlay addresses).
 * Everything it cannot do (a node without an address of a family, a remote node without a VTEP
 * yet, a direct route to a node on no shared subnet) is named in a note, which the caller logs
 * once.
 */
#ifndef TABBY_AGENT_NETCALC_H
#define TABBY_AGENT_NETCALC_H

#include <stdbool.h>
#include <stdint.h>

#include "ipam/ipam.h"

#define NETCALC_IPIP_DEV      "tunl0"
#define NETCALC_IPIP_MTU      1440
#define NETCALC_VXLAN_DEV4    "vxlan.tabby"
#define NETCALC_VXLAN_DEV6    "vxlan-v6.tabby"
#define NETCALC_VXLAN_VNI4    4096
#define NETCALC_VXLAN_VNI6    6096
#define NETCALC_VXLAN_PORT    4789
#define NETCALC_VXLAN_MTU4    1450
#define NETCALC_VXLAN_MTU6    1430
#define NETCALC_IPIP_HANDLE   "ipip-tunnel-addr-"     /* + node name */
#define NETCALC_VXLAN_HANDLE  "vxlan-tunnel-addr-"    /* + node name (IPv4 VTEP) */
#define NETCALC_VXLAN6_HANDLE "vxlan-v6-tunnel-addr-" /* + node name (IPv6 VTEP) */

/* Route scopes, the kernel's values (rtm_scope). */
#define NETCALC_SCOPE_UNIVERSE 0
#define NETCALC_SCOPE_LINK     253

/* A host address with the prefix length of its subnet ("10.99.0.11/24"). */
struct netcalc_hostaddr {
	bool set;
	struct ipam_addr addr;
	uint8_t prefix;
};

/* One node of the cluster, from its node resource and its tunnel address handles. */
struct netcalc_node {
	const char *name;
	struct netcalc_hostaddr ip4, ip6;
	/* Tunnel addresses (IPAM handles NETCALC_*_HANDLE<name>); family 0 when none. */
	struct ipam_addr ipip;
	struct ipam_addr vxlan4, vxlan6;
};

/* An allocation whose node differs from its block's affinity. */
struct netcalc_alloc {
	struct ipam_addr addr;
	struct ipam_cidr block;
	const char *node;
};

/* A workload endpoint of this node: its host interface and its addresses (/32, /128). */
struct netcalc_workload {
	const char *iface;
	const struct ipam_cidr *addrs;
	unsigned n_addrs;
};

struct netcalc_input {
	const char *self;
	const struct netcalc_node *nodes; /* self included when it has a node resource */
	unsigned n_nodes;
	const struct ipam_pool *pools;
	unsigned n_pools;
	const struct ipam_block_info *blocks;
	unsigned n_blocks;
	const struct netcalc_alloc *allocs;
	unsigned n_allocs;
	const struct netcalc_workload *workloads;
	unsigned n_workloads;
};

enum netcalc_route_type { NETCALC_UNICAST = 1, NETCALC_BLACKHOLE = 6 /* RTN_BLACKHOLE */ };

/* Why a route is wanted (reports, and the conntrack flush of a gone workload address). */
enum netcalc_route_kind {
	NETCALC_R_BLOCK_LOCAL = 1, /* blackhole for a block affine to self */
	NETCALC_R_BLOCK = 2,       /* another node's block */
	NETCALC_R_BORROWED = 3,    /* an address another node holds outside its own blocks */
	NETCALC_R_WORKLOAD = 4,    /* a local workload address */
};

struct netcalc_route {
	struct ipam_cidr dst;
	uint8_t type;        /* enum netcalc_route_type */
	uint8_t kind;        /* enum netcalc_route_kind */
	struct ipam_addr gw; /* family 0: none */
	char dev[16];        /* "" : the kernel picks it from the gateway */
	bool onlink;
	uint8_t scope; /* NETCALC_SCOPE_* */
};

/* One remote VTEP on a VXLAN device: FDB "mac -> node_ip" and neighbour "vtep -> mac". */
struct netcalc_vtep {
	uint8_t mac[6];
	struct ipam_addr vtep;    /* the remote node's VXLAN tunnel address */
	struct ipam_addr node_ip; /* the remote node's underlay address */
};

struct netcalc_ipip {
	bool wanted;           /* some pool uses IP-in-IP */
	struct ipam_addr addr; /* self's tunnel address (/32 on tunl0); family 0: none yet */
	unsigned mtu;
};

struct netcalc_vxlan {
	bool wanted; /* some pool of the family uses VXLAN and self has an address of it */
	int family;  /* 4 or 6 */
	char dev[16];
	uint32_t vni;
	uint16_t port;
	unsigned mtu;
	struct ipam_addr local; /* self's underlay address */
	struct ipam_addr addr;  /* self's VTEP address (/32, /128); family 0: none yet */
	uint8_t mac[6];
	struct netcalc_vtep *peers; /* in node name order */
	unsigned n_peers;
};

/* A tunnel address self should ask IPAM for: 1 address of the family from pool, handle. */
struct netcalc_tunnel_req {
	bool wanted;
	struct ipam_cidr pool;
	char handle[IPAM_NAME_MAX + 1];
};

struct netcalc_state {
	struct netcalc_route *routes; /* sorted by family, address, prefix; one per destination */
	unsigned n_routes;
	struct netcalc_ipip ipip;
	struct netcalc_vxlan vxlan[2]; /* [0] IPv4, [1] IPv6 */
	struct netcalc_tunnel_req req_ipip, req_vxlan[2];
	struct ipam_cidr *nat_pools; /* pools with NAT outgoing, in pool order */
	unsigned n_nat_pools;
	struct ipam_cidr *all_pools;
	unsigned n_all_pools;
	/* The only sources this host's tunnels take packets from: every node's underlay address
	 * (IPv4 when IP-in-IP or IPv4 VXLAN is wanted, IPv6 when IPv6 VXLAN is), sorted by family
	 * and address. Anyone else could hand the tunnel a packet with any inner source, a
	 * container's included, and pass every policy as that source (Felix's all-hosts set). */
	struct ipam_addr *tunnel_sources;
	unsigned n_tunnel_sources;
	char **notes; /* one line each: what could not be done and why */
	unsigned n_notes;
};

/* Calculate the desired state. Returns 0 or -ENOMEM (then *out holds nothing to free). */
int netcalc_compute(const struct netcalc_input *in, struct netcalc_state *out);

/* Free what netcalc_compute() allocated; *s is zeroed. */
void netcalc_state_free(struct netcalc_state *s);

/* The VTEP MAC of a node for a family: locally administered unicast, derived from the name (a
 * hash), so every host computes the same without storing it. */
void netcalc_vtep_mac(const char *node, int family, uint8_t mac[6]);

/* Route order (family, address, prefix); 0 for the same destination. */
int netcalc_route_cmp(const struct netcalc_route *a, const struct netcalc_route *b);

/* Whether two routes are the same in every field the kernel holds. */
bool netcalc_route_equal(const struct netcalc_route *a, const struct netcalc_route *b);

/* "10.0.1.0/26 via 10.99.0.12 dev tunl0 onlink" (blackhole: "blackhole 10.0.0.0/26") into buf;
 * returns buf. */
char *netcalc_route_format(const struct netcalc_route *r, char *buf, size_t len);

#endif
