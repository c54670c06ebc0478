/*
 * The host dataplane outside policy: routes, tunnels (and the sources they take packets from)
 * and NAT outgoing, kept in step with the replicated state (calico-behaviour.md 5.2, 5.7-5.9;
 * DESIGN.md section 6).
 *
 * Split as Felix splits it. netcalc.c turns plain input into the desired state; this file reads
 * that input from the local replica (node resources, IPAM pools, blocks and allocations, this
 * host's workload endpoints), runs the calculation, and makes the kernel hold the result.
 *
 * When. Watches on "ipam/", "res/nodes/" and this host's "res/workloadendpoints/<node>/" say
 * that something changed; a zero-delay timer gathers every change of one loop iteration (one raft
 * batch can carry hundreds) into one recompute, which reads a fresh view (cheap next to one
 * netlink round trip; this host's endpoints are kept decoded between recomputes) and applies the
 * difference between the new desired state and what the last apply left. At start and every 90 s
 * (Felix's RouteRefreshInterval) the apply is full: it reads what the kernel holds of ours and
 * fixes everything, so a route deleted by hand or a device changed under us comes back, and a
 * restarted agent, which has no memory, finds its old routes equal to the ones it wants and leaves
 * them alone: established traffic never sees a route disappear. An apply that left something
 * undone (the kernel refused a route, a device or the NAT table) is tried again 1 s later, then
 * after a wait that doubles up to 30 s while it keeps failing, since nothing else would ask again
 * before the refresh.
 *
 * Where. The kernel work runs on the loop thread with one libnl-route socket opened at start.
 * Routes are few (a block per host, a /32 per borrowed address or local workload), a netlink
 * round trip takes microseconds, and an apply after a change touches a handful of them; a worker
 * would need a copy of the state per run and a lock around the applier's memory for no gain.
 * The same reasoning made policy_sync.c run libnftables on the loop thread.
 *
 * Ownership. Routes carry protocol TABBY_RTPROT and only those are ever deleted or replaced (a
 * foreign route in the way is reported and left). Tabby owns the devices vxlan.tabby and
 * vxlan-v6.tabby, the addresses it puts on tunl0 (the kernel's IP-in-IP device, which cannot be
 * deleted), and the nftables table inet tabby-nat; the policy table inet tabby is policy_sync's.
 *
 * Tunnel addresses. When an enabled pool asks for IP-in-IP (or VXLAN) and this host has no
 * tunnel address yet, an IPAM_REQ_ASSIGN of one address from that pool under the handle
 * "ipip-tunnel-addr-<node>" (vxlan-tunnel-addr-, vxlan-v6-tunnel-addr-) is proposed, one at a
 * time per handle; the address comes back through the ipam watch like any other change.
 *
 * Conntrack. When a local workload route goes away (its endpoint was removed, here or while the
 * agent was down), the conntrack entries of its address are flushed, so a recycled address does
 * not inherit the flows of the container that had it (calico-behaviour.md 5.5).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/ipip.h>
#include <netlink/route/link/vxlan.h>
#include <netlink/route/neighbour.h>
#include <netlink/route/route.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/internal.h"
#include "agent/netcalc.h"
#include "agent/netsync.h"
#include "agent/nft.h"
#include "agent/resources.h"
#include "agent/wire.h"
#include "ipam/ipam.h"
#include "policy/policy.h"

#define REFRESH_MS     90000 /* Felix's RouteRefreshInterval */
#define RETRY_MS       1000  /* the first retry after an apply that left something undone */
#define RETRY_MAX_MS   30000 /* the longest wait between retries */
#define REQ_RETRY_MS   10000
#define IPV6_PRIO_DEF  1024 /* the metric the kernel gives an IPv6 route added without one */
#define NETSYNC_NL_BUF (64u * 1024) /* a datagram's most (32 KiB), and room for one message */

/* ========================================================================================== */
/* The kernel applier                                                                          */

struct vx_mem {
	bool known; /* the last apply configured this device fully */
	struct netcalc_vxlan vx;
	struct netcalc_vtep *peers;
};

struct netsync_kernel {
	struct nl_sock *sk;
	struct agent_nft *nft;
	netsync_gone_fn gone;
	netsync_problem_fn problem;
	void *arg;
	/* What the last apply left in the kernel (sorted), valid when routes_known. */
	struct netcalc_route *held;
	unsigned n_held;
	bool routes_known;
	bool ipip_known;
	struct netcalc_ipip ipip;
	struct vx_mem vx[2];
	char *nat; /* the NAT commands last applied (compact JSON), NULL: no table */
	bool nat_known;
	/* per apply */
	struct nl_cache *kroutes; /* lazily, when a route add meets one it does not know */
	struct netsync_report *rep;
	unsigned link_failures; /* link_failed() calls, ever: a manager that saw it grow while it
	                           worked does not mark its device known */
	int fatal;              /* the socket failed */
};

static void problem(struct netsync_kernel *k, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void problem(struct netsync_kernel *k, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (k->problem != NULL) {
		k->problem(k->arg, line);
	}
}

/* A socket-level failure: the kernel did not answer (as opposed to refusing one object). */
static void check_fatal(struct netsync_kernel *k, int nlerr)
{
	if (nlerr == -NLE_BAD_SOCK || nlerr == -NLE_NOMEM || nlerr == -NLE_DUMP_INTR ||
	    nlerr == -NLE_MSG_OVERFLOW) {
		k->fatal = nlerr == -NLE_NOMEM ? -ENOMEM : -EIO;
	}
}

/* A device, an address or an FDB or neighbour entry the kernel refused (reported already): the
 * report says so, so that the caller tries again soon. */
static void link_failed(struct netsync_kernel *k, int nlerr)
{
	check_fatal(k, nlerr);
	k->link_failures++;
	if (k->rep) {
		k->rep->links_failed++;
	}
}

static int nl_family(int family)
{
	return family == 4 ? AF_INET : AF_INET6;
}

static struct nl_addr *to_nl(const struct ipam_addr *a, int prefix)
{
	struct nl_addr *x = nl_addr_build(nl_family(a->family), a->b, a->family == 4 ? 4 : 16);
	if (x != NULL && prefix >= 0) {
		nl_addr_set_prefixlen(x, prefix);
	}
	return x;
}

static bool from_nl(struct nl_addr *x, struct ipam_addr *out)
{
	*out = (struct ipam_addr){0};
	if (x == NULL) {
		return false;
	}
	int fam = nl_addr_get_family(x);
	unsigned want = fam == AF_INET ? 4 : fam == AF_INET6 ? 16 : 0;
	unsigned len = nl_addr_get_len(x);
	if (want == 0 || (len != 0 && len != want)) {
		return false;
	}
	out->family = fam == AF_INET ? 4 : 6;
	if (len != 0) {
		memcpy(out->b, nl_addr_get_binary_addr(x), len);
	}
	return true;
}

static struct nl_addr *mac_nl(const uint8_t mac[6])
{
	return nl_addr_build(AF_LLC, mac, 6);
}

static bool addr_eq(const struct ipam_addr *a, const struct ipam_addr *b)
{
	return a->family == b->family && memcmp(a->b, b->b, sizeof a->b) == 0;
}

/* The link named name (ifindex 0) or with index ifindex, asked of the kernel one at a time:
 * *out, or NULL when there is none. Listing every link instead costs milliseconds on a host
 * with hundreds of workload veths, since each one's peer namespace is looked up among all the
 * namespaces the host knows, and an apply used to list them twice after every change. Returns 0,
 * or the netlink error (reported, and fatal to this apply). */
static int link_lookup(struct netsync_kernel *k, int ifindex, const char *name,
                       struct rtnl_link **out)
{
	*out = NULL;
	int rv = rtnl_link_get_kernel(k->sk, ifindex, name, out);
	if (rv == -NLE_OBJ_NOTFOUND || rv == -NLE_NODEV) {
		*out = NULL;
		return 0;
	}
	if (rv < 0) {
		if (name != NULL) {
			problem(k, "cannot look up the network interface %s: %s", name,
			        nl_geterror(rv));
		} else {
			problem(k, "cannot look up the network interface with index %d: %s",
			        ifindex, nl_geterror(rv));
		}
		k->fatal = rv == -NLE_NOMEM ? -ENOMEM : -EIO;
	}
	return rv;
}

/* ------------------------------------------------------------------------------------------ */
/* Addresses on a tunnel device                                                                */

/*
 * Make the device ifindex hold exactly want (/32 or /128) among its addresses of family; with
 * only_in (not NULL) delete only addresses inside those pools (tunl0: the device is the kernel's,
 * and of its addresses only those from a pool can be ours). IPv6 link-local addresses are the
 * kernel's and always stay.
 */
static void sync_addrs(struct netsync_kernel *k, int ifindex, int family,
                       const struct ipam_addr *want, const struct ipam_cidr *only_in,
                       unsigned n_only, const char *dev)
{
	struct nl_cache *cache = NULL;
	char ip[IPAM_ADDR_STRLEN];
	bool have = false;
	int rv = rtnl_addr_alloc_cache(k->sk, &cache);
	if (rv < 0) {
		problem(k, "cannot list the addresses of %s: %s", dev, nl_geterror(rv));
		link_failed(k, rv);
		return;
	}
	for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		struct rtnl_addr *ad = (struct rtnl_addr *)o;
		struct ipam_addr a;
		if (rtnl_addr_get_ifindex(ad) != ifindex ||
		    rtnl_addr_get_family(ad) != nl_family(family) ||
		    !from_nl(rtnl_addr_get_local(ad), &a)) {
			continue;
		}
		if (family == 6 && a.b[0] == 0xfe && (a.b[1] & 0xc0) == 0x80) {
			continue;
		}
		unsigned host = family == 4 ? 32 : 128;
		if (want != NULL && want->family != 0 && addr_eq(&a, want) &&
		    (unsigned)rtnl_addr_get_prefixlen(ad) == host) {
			have = true;
			continue;
		}
		if (only_in != NULL) {
			bool ours = false;
			for (unsigned i = 0; i < n_only; i++) {
				ours = ours || ipam_cidr_contains(&only_in[i], &a);
			}
			if (!ours) {
				continue;
			}
		}
		rv = rtnl_addr_delete(k->sk, ad, 0);
		if (rv < 0 && rv != -NLE_OBJ_NOTFOUND && rv != -NLE_NOADDR) {
			problem(k, "cannot delete address %s from %s: %s", ipam_addr_format(&a, ip),
			        dev, nl_geterror(rv));
			link_failed(k, rv);
		} else if (k->rep) {
			k->rep->links_changed++;
		}
	}
	nl_cache_free(cache);
	if (want == NULL || want->family == 0 || have) {
		return;
	}
	struct rtnl_addr *ad = rtnl_addr_alloc();
	struct nl_addr *local = to_nl(want, family == 4 ? 32 : 128);
	if (ad == NULL || local == NULL) {
		k->fatal = -ENOMEM;
		goto out;
	}
	rtnl_addr_set_ifindex(ad, ifindex);
	rtnl_addr_set_family(ad, nl_family(family));
	rtnl_addr_set_local(ad, local);
	if (family == 6) {
		rtnl_addr_set_flags(ad, IFA_F_NODAD);
	}
	rv = rtnl_addr_add(k->sk, ad, NLM_F_REPLACE);
	if (rv < 0) {
		problem(k, "cannot add address %s to %s: %s", ipam_addr_format(want, ip), dev,
		        nl_geterror(rv));
		link_failed(k, rv);
	} else if (k->rep) {
		k->rep->links_changed++;
	}
out:
	nl_addr_put(local);
	rtnl_addr_put(ad);
}

/* MTU and up, changed in place. */
static void link_settings(struct netsync_kernel *k, struct rtnl_link *l, unsigned mtu,
                          const uint8_t *mac, const char *dev)
{
	struct rtnl_link *ch = rtnl_link_alloc();
	struct nl_addr *m = mac ? mac_nl(mac) : NULL;
	bool change = false;
	if (ch == NULL || (mac != NULL && m == NULL)) {
		k->fatal = -ENOMEM;
		goto out;
	}
	if (rtnl_link_get_mtu(l) != mtu) {
		rtnl_link_set_mtu(ch, mtu);
		change = true;
	}
	if (m != NULL && nl_addr_cmp(rtnl_link_get_addr(l), m) != 0) {
		rtnl_link_set_addr(ch, m);
		change = true;
	}
	if (!(rtnl_link_get_flags(l) & IFF_UP)) {
		rtnl_link_set_flags(ch, IFF_UP);
		change = true;
	}
	if (change) {
		int rv = rtnl_link_change(k->sk, l, ch, 0);
		if (rv < 0) {
			problem(k, "cannot set up %s (MTU %u, up): %s", dev, mtu, nl_geterror(rv));
			link_failed(k, rv);
		} else if (k->rep) {
			k->rep->links_changed++;
		}
	}
out:
	nl_addr_put(m);
	rtnl_link_put(ch);
}

/* A tunnel device was created or deleted. The kernel drops every route through a device it
 * deletes, and the last apply's list of routes still counts them as held: an incremental pass
 * would find them unchanged and leave them out until the next refresh. So this apply's route pass
 * reads the kernel's table instead of trusting the list. */
static void tunnel_rebuilt(struct netsync_kernel *k)
{
	k->routes_known = false;
	if (k->rep) {
		k->rep->links_changed++;
	}
}

/* ------------------------------------------------------------------------------------------ */
/* IP-in-IP                                                                                    */

static void sync_ipip(struct netsync_kernel *k, const struct netcalc_state *want, bool full)
{
	const struct netcalc_ipip *ip = &want->ipip;
	if (!full && k->ipip_known && k->ipip.wanted == ip->wanted && k->ipip.mtu == ip->mtu &&
	    addr_eq(&k->ipip.addr, &ip->addr)) {
		return;
	}
	if (!full && !k->ipip_known && !ip->wanted) {
		return; /* never configured by this agent and not wanted: a full apply checks */
	}
	k->ipip_known = false;
	unsigned failures = k->link_failures;
	struct rtnl_link *l;
	if (link_lookup(k, 0, NETCALC_IPIP_DEV, &l) < 0) {
		return;
	}
	if (!ip->wanted) {
		if (l != NULL) {
			sync_addrs(k, rtnl_link_get_ifindex(l), 4, NULL, want->all_pools,
			           want->n_all_pools, NETCALC_IPIP_DEV);
			rtnl_link_put(l);
		}
		k->ipip = *ip;
		k->ipip_known = k->fatal == 0 && k->link_failures == failures;
		return;
	}
	if (l == NULL) {
		/* tunl0 is the ipip module's fallback device: asking for an ipip link loads the
		 * module, which creates it. */
		struct rtnl_link *nl = rtnl_link_ipip_alloc();
		if (nl == NULL) {
			k->fatal = -ENOMEM;
			return;
		}
		rtnl_link_set_name(nl, NETCALC_IPIP_DEV);
		int rv = rtnl_link_add(k->sk, nl, NLM_F_CREATE);
		rtnl_link_put(nl);
		if (rv < 0 && rv != -NLE_EXIST) {
			problem(k,
			        "cannot create %s for IP-in-IP: %s (is the ipip kernel module "
			        "available?)",
			        NETCALC_IPIP_DEV, nl_geterror(rv));
			link_failed(k, rv);
			return;
		}
		if (link_lookup(k, 0, NETCALC_IPIP_DEV, &l) < 0) {
			return;
		}
		if (l == NULL) {
			problem(k, "%s did not appear after creating it", NETCALC_IPIP_DEV);
			link_failed(k, 0);
			return;
		}
		tunnel_rebuilt(k);
	}
	link_settings(k, l, ip->mtu, NULL, NETCALC_IPIP_DEV);
	sync_addrs(k, rtnl_link_get_ifindex(l), 4, &ip->addr, want->all_pools, want->n_all_pools,
	           NETCALC_IPIP_DEV);
	rtnl_link_put(l);
	k->ipip = *ip;
	/* Something refused is not known: the next apply, incremental too, does it again. */
	k->ipip_known = k->fatal == 0 && k->link_failures == failures;
}

/* ------------------------------------------------------------------------------------------ */
/* VXLAN                                                                                       */

static bool vx_same(const struct vx_mem *m, const struct netcalc_vxlan *vx)
{
	if (!m->known || m->vx.wanted != vx->wanted || m->vx.vni != vx->vni ||
	    m->vx.port != vx->port || m->vx.mtu != vx->mtu || !addr_eq(&m->vx.local, &vx->local) ||
	    !addr_eq(&m->vx.addr, &vx->addr) || memcmp(m->vx.mac, vx->mac, 6) != 0 ||
	    m->vx.n_peers != vx->n_peers) {
		return false;
	}
	return vx->n_peers == 0 ||
	       memcmp(m->peers, vx->peers, vx->n_peers * sizeof *vx->peers) == 0;
}

/* Whether an existing device named like ours is the device we want (else it is rebuilt). */
static bool vx_fits(struct rtnl_link *l, const struct netcalc_vxlan *vx)
{
	const char *type = rtnl_link_get_type(l);
	uint32_t id = 0, port = 0;
	struct nl_addr *local = NULL;
	struct ipam_addr la;
	if (type == NULL || strcmp(type, "vxlan") != 0 || rtnl_link_vxlan_get_id(l, &id) < 0 ||
	    id != vx->vni || rtnl_link_vxlan_get_port(l, &port) < 0 || port != vx->port ||
	    rtnl_link_vxlan_get_learning(l) != 0) {
		return false;
	}
	if (rtnl_link_vxlan_get_local(l, &local) < 0) {
		return false;
	}
	bool ok = from_nl(local, &la) && addr_eq(&la, &vx->local);
	nl_addr_put(local);
	return ok;
}

/* The RTM_NEWLINK is put together here with libnl's attribute calls rather than by
 * rtnl_link_vxlan_set_port() + rtnl_link_add(): libnl 3.7 (bookworm) writes IFLA_VXLAN_PORT as
 * a 32-bit attribute where the kernel's policy says 16 bits. The kernel then logs "netlink:
 * 'tabby': attribute type 15 has an invalid length" for every device, and takes the first two
 * bytes, which hold the port only on a little-endian host. */
static int vx_add(struct nl_sock *sk, const struct netcalc_vxlan *vx)
{
	struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_flags = IFF_UP, .ifi_change = IFF_UP};
	struct nl_msg *msg = nlmsg_alloc_simple(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
	struct nlattr *info, *data;
	int rv = -NLE_NOMEM;
	if (msg == NULL) {
		return -NLE_NOMEM;
	}
	if (nlmsg_append(msg, &ifi, sizeof ifi, NLMSG_ALIGNTO) < 0 ||
	    nla_put_string(msg, IFLA_IFNAME, vx->dev) < 0 ||
	    nla_put_u32(msg, IFLA_MTU, vx->mtu) < 0 || nla_put(msg, IFLA_ADDRESS, 6, vx->mac) < 0 ||
	    (info = nla_nest_start(msg, IFLA_LINKINFO)) == NULL ||
	    nla_put_string(msg, IFLA_INFO_KIND, "vxlan") < 0 ||
	    (data = nla_nest_start(msg, IFLA_INFO_DATA)) == NULL ||
	    nla_put_u32(msg, IFLA_VXLAN_ID, vx->vni) < 0 ||
	    nla_put_u16(msg, IFLA_VXLAN_PORT, htons(vx->port)) < 0 ||
	    (vx->local.family == 4 ? nla_put(msg, IFLA_VXLAN_LOCAL, 4, vx->local.b)
	                           : nla_put(msg, IFLA_VXLAN_LOCAL6, 16, vx->local.b)) < 0 ||
	    nla_put_u8(msg, IFLA_VXLAN_LEARNING, 0) < 0) {
		goto out;
	}
	nla_nest_end(msg, data);
	nla_nest_end(msg, info);
	rv = nl_send_sync(sk, msg); /* frees msg */
	msg = NULL;
out:
	nlmsg_free(msg);
	return rv;
}

static void vx_create(struct netsync_kernel *k, const struct netcalc_vxlan *vx)
{
	int rv = vx_add(k->sk, vx);
	if (rv < 0) {
		problem(k, "cannot create the VXLAN device %s: %s", vx->dev, nl_geterror(rv));
		link_failed(k, rv);
	} else {
		tunnel_rebuilt(k);
	}
}

/* The FDB entry (family AF_BRIDGE: mac -> node_ip) or the neighbour (vtep -> mac) of a peer. */
static struct rtnl_neigh *peer_neigh(int ifindex, const struct netcalc_vtep *p, bool fdb)
{
	struct rtnl_neigh *n = rtnl_neigh_alloc();
	struct nl_addr *mac = mac_nl(p->mac);
	struct nl_addr *dst = to_nl(fdb ? &p->node_ip : &p->vtep, -1);
	if (n == NULL || mac == NULL || dst == NULL) {
		rtnl_neigh_put(n);
		n = NULL;
		goto out;
	}
	rtnl_neigh_set_ifindex(n, ifindex);
	rtnl_neigh_set_lladdr(n, mac);
	/* The destination first: libnl refuses a destination whose family differs from a family
	 * set before it, and an FDB entry's (AF_BRIDGE) always does. */
	rtnl_neigh_set_dst(n, dst);
	rtnl_neigh_set_family(n, fdb ? AF_BRIDGE : nl_family(p->vtep.family));
	rtnl_neigh_set_state(n, NUD_PERMANENT);
	if (fdb) {
		rtnl_neigh_set_flags(n, NTF_SELF);
	}
out:
	nl_addr_put(mac);
	nl_addr_put(dst);
	return n;
}

/* Whether a neighbour/FDB entry of the device is one of want's peers. */
static bool peer_wanted(struct rtnl_neigh *n, const struct netcalc_vxlan *vx, bool fdb)
{
	struct nl_addr *ll = rtnl_neigh_get_lladdr(n);
	struct ipam_addr dst;
	if (ll == NULL || nl_addr_get_len(ll) != 6 || !from_nl(rtnl_neigh_get_dst(n), &dst)) {
		return false;
	}
	const uint8_t *mac = nl_addr_get_binary_addr(ll);
	for (unsigned i = 0; i < vx->n_peers; i++) {
		const struct netcalc_vtep *p = &vx->peers[i];
		if (memcmp(p->mac, mac, 6) == 0 && addr_eq(fdb ? &p->node_ip : &p->vtep, &dst)) {
			return true;
		}
	}
	return false;
}

static void vx_peers(struct netsync_kernel *k, int ifindex, const struct netcalc_vxlan *vx)
{
	struct nl_cache *cache = NULL;
	int rv = rtnl_neigh_alloc_cache(k->sk, &cache);
	if (rv < 0) {
		problem(k, "cannot list the neighbours of %s: %s", vx->dev, nl_geterror(rv));
		link_failed(k, rv);
		return;
	}
	/* Stale permanent entries go; the kernel's own (reachable, stale, ...) stay. */
	for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		struct rtnl_neigh *n = (struct rtnl_neigh *)o;
		int fam = rtnl_neigh_get_family(n);
		if (rtnl_neigh_get_ifindex(n) != ifindex ||
		    !(rtnl_neigh_get_state(n) & NUD_PERMANENT)) {
			continue;
		}
		bool fdb = fam == AF_BRIDGE;
		if (!fdb && fam != nl_family(vx->family)) {
			continue;
		}
		if (peer_wanted(n, vx, fdb)) {
			continue;
		}
		rv = rtnl_neigh_delete(k->sk, n, 0);
		if (rv < 0 && rv != -NLE_OBJ_NOTFOUND) {
			problem(k, "cannot delete a stale %s entry of %s: %s",
			        fdb ? "FDB" : "neighbour", vx->dev, nl_geterror(rv));
			link_failed(k, rv);
		} else if (k->rep) {
			k->rep->links_changed++;
		}
	}
	nl_cache_free(cache);
	/* Every wanted entry is written with replace: one round trip each whether or not it is
	 * there already, and an entry with the right key but a wrong value is fixed in place. */
	for (unsigned i = 0; i < vx->n_peers; i++) {
		for (int fdb = 1; fdb >= 0; fdb--) {
			struct rtnl_neigh *n = peer_neigh(ifindex, &vx->peers[i], fdb);
			char ip[IPAM_ADDR_STRLEN];
			if (n == NULL) {
				k->fatal = -ENOMEM;
				return;
			}
			rv = rtnl_neigh_add(k->sk, n, NLM_F_CREATE | NLM_F_REPLACE);
			rtnl_neigh_put(n);
			if (rv < 0) {
				problem(k, "cannot add the %s entry of VTEP %s to %s: %s",
				        fdb ? "FDB" : "neighbour",
				        ipam_addr_format(&vx->peers[i].vtep, ip), vx->dev,
				        nl_geterror(rv));
				link_failed(k, rv);
			}
		}
	}
}

static void sync_vxlan(struct netsync_kernel *k, const struct netcalc_vxlan *vx, bool full)
{
	struct vx_mem *m = &k->vx[vx->family == 4 ? 0 : 1];
	if (!full && vx_same(m, vx)) {
		return;
	}
	if (!full && !m->known && !vx->wanted) {
		return;
	}
	m->known = false;
	unsigned failures = k->link_failures;
	struct rtnl_link *l;
	if (link_lookup(k, 0, vx->dev, &l) < 0) {
		return;
	}
	if (l != NULL && (!vx->wanted || !vx_fits(l, vx))) {
		int rv = rtnl_link_delete(k->sk, l);
		rtnl_link_put(l);
		l = NULL;
		if (rv < 0 && rv != -NLE_OBJ_NOTFOUND && rv != -NLE_NODEV) {
			problem(k, "cannot delete %s: %s", vx->dev, nl_geterror(rv));
			link_failed(k, rv);
			return;
		}
		tunnel_rebuilt(k);
	}
	if (vx->wanted && l == NULL) {
		vx_create(k, vx);
		if (k->fatal != 0 || link_lookup(k, 0, vx->dev, &l) < 0) {
			return;
		}
		if (l == NULL) {
			return; /* creation failed: reported */
		}
	}
	if (l != NULL) {
		int ifindex = rtnl_link_get_ifindex(l);
		link_settings(k, l, vx->mtu, vx->mac, vx->dev);
		sync_addrs(k, ifindex, vx->family, &vx->addr, NULL, 0, vx->dev);
		vx_peers(k, ifindex, vx);
		rtnl_link_put(l);
	}
	if (k->fatal != 0 || k->link_failures != failures) {
		return; /* something refused: not known, so the next apply does it again */
	}
	struct netcalc_vtep *copy = NULL;
	if (vx->n_peers > 0) {
		copy = malloc(vx->n_peers * sizeof *copy);
		if (copy == NULL) {
			return; /* not remembered: the next apply does it again */
		}
		memcpy(copy, vx->peers, vx->n_peers * sizeof *copy);
	}
	free(m->peers);
	m->vx = *vx;
	m->vx.peers = NULL;
	m->peers = copy;
	m->known = true;
}

/* ------------------------------------------------------------------------------------------ */
/* Routes                                                                                      */

/* The shape of a local workload route: unicast, one address, straight onto a device. */
static bool workload_shaped(const struct netcalc_route *r)
{
	unsigned host = r->dst.addr.family == 4 ? 32 : 128;
	return r->type == NETCALC_UNICAST && r->dst.prefix == host && r->gw.family == 0 &&
	       r->dev[0] != 0;
}

/* A kernel route of ours in netcalc's terms; false when it cannot be one of ours (multipath,
 * an unknown type, a device that is gone). */
static bool from_kernel(struct netsync_kernel *k, struct rtnl_route *kr, struct netcalc_route *out)
{
	*out = (struct netcalc_route){0};
	struct ipam_addr d;
	if (!from_nl(rtnl_route_get_dst(kr), &d)) {
		return false;
	}
	out->dst.addr = d;
	out->dst.prefix = (uint8_t)nl_addr_get_prefixlen(rtnl_route_get_dst(kr));
	uint8_t type = rtnl_route_get_type(kr);
	out->scope = rtnl_route_get_scope(kr);
	if (type == RTN_BLACKHOLE) {
		out->type = NETCALC_BLACKHOLE;
		out->scope = NETCALC_SCOPE_UNIVERSE;
		return true;
	}
	if (type != RTN_UNICAST || rtnl_route_get_nnexthops(kr) != 1) {
		return false;
	}
	out->type = NETCALC_UNICAST;
	struct rtnl_nexthop *nh = rtnl_route_nexthop_n(kr, 0);
	int ifindex = rtnl_route_nh_get_ifindex(nh);
	if (ifindex > 0) {
		struct rtnl_link *l;
		const char *name;
		if (link_lookup(k, ifindex, NULL, &l) < 0 || l == NULL ||
		    (name = rtnl_link_get_name(l)) == NULL || strlen(name) >= sizeof out->dev) {
			rtnl_link_put(l);
			return false;
		}
		strcpy(out->dev, name);
		rtnl_link_put(l);
	}
	struct nl_addr *gw = rtnl_route_nh_get_gateway(nh);
	if (gw != NULL && !from_nl(gw, &out->gw)) {
		return false;
	}
	out->onlink = (rtnl_route_nh_get_flags(nh) & RTNH_F_ONLINK) != 0;
	return true;
}

/* Equal as far as the kernel of that family keeps it: IPv6 has no route scope, and a gateway
 * route's device is the kernel's choice when we named none. */
static bool kernel_equal(const struct netcalc_route *have, const struct netcalc_route *want)
{
	if (have->type != want->type || !ipam_cidr_equal(&have->dst, &want->dst)) {
		return false;
	}
	if (want->type == NETCALC_BLACKHOLE) {
		return true;
	}
	if (!addr_eq(&have->gw, &want->gw) || have->onlink != want->onlink) {
		return false;
	}
	if (want->dev[0] != 0 && strcmp(have->dev, want->dev) != 0) {
		return false;
	}
	return want->dst.addr.family == 6 || have->scope == want->scope;
}

static bool default_prio(struct rtnl_route *kr)
{
	uint32_t p = rtnl_route_get_priority(kr);
	return rtnl_route_get_family(kr) == AF_INET6 ? p == IPV6_PRIO_DEF || p == 0 : p == 0;
}

static struct rtnl_route *build_route(const struct netcalc_route *r, int ifindex, bool for_delete)
{
	struct rtnl_route *kr = rtnl_route_alloc();
	struct nl_addr *dst = to_nl(&r->dst.addr, r->dst.prefix);
	struct rtnl_nexthop *nh = NULL;
	struct nl_addr *gw = NULL;
	if (kr == NULL || dst == NULL) {
		goto err;
	}
	rtnl_route_set_family(kr, (uint8_t)nl_family(r->dst.addr.family));
	rtnl_route_set_dst(kr, dst);
	rtnl_route_set_table(kr, RT_TABLE_MAIN);
	rtnl_route_set_protocol(kr, TABBY_RTPROT);
	rtnl_route_set_type(kr, r->type == NETCALC_BLACKHOLE ? RTN_BLACKHOLE : RTN_UNICAST);
	/* Always explicit: libnl guesses a scope when given none, and the kernel matches a delete
	 * on it. */
	rtnl_route_set_scope(kr, r->scope);
	if (!for_delete && r->type == NETCALC_UNICAST) {
		if ((nh = rtnl_route_nh_alloc()) == NULL) {
			goto err;
		}
		if (ifindex > 0) {
			rtnl_route_nh_set_ifindex(nh, ifindex);
		}
		if (r->gw.family != 0) {
			if ((gw = to_nl(&r->gw, -1)) == NULL) {
				goto err;
			}
			rtnl_route_nh_set_gateway(nh, gw);
		}
		if (r->onlink) {
			rtnl_route_nh_set_flags(nh, RTNH_F_ONLINK);
		}
		rtnl_route_add_nexthop(kr, nh);
		nh = NULL;
	}
	nl_addr_put(dst);
	nl_addr_put(gw);
	return kr;
err:
	rtnl_route_nh_free(nh);
	nl_addr_put(gw);
	nl_addr_put(dst);
	rtnl_route_put(kr);
	return NULL;
}

/* Whether kr is the main table's default-priority route for r's destination, the one an add of r
 * collides with. */
static bool holds_dest(struct rtnl_route *kr, const struct netcalc_route *r)
{
	struct ipam_addr d;
	return rtnl_route_get_table(kr) == RT_TABLE_MAIN && default_prio(kr) &&
	       from_nl(rtnl_route_get_dst(kr), &d) && addr_eq(&d, &r->dst.addr) &&
	       nl_addr_get_prefixlen(rtnl_route_get_dst(kr)) == r->dst.prefix;
}

/* The kernel's route for r's destination in the main table (default priority), from a dump
 * made once per apply when needed. */
static struct rtnl_route *kernel_route_for(struct netsync_kernel *k, const struct netcalc_route *r)
{
	if (k->kroutes == NULL) {
		int rv = rtnl_route_alloc_cache(k->sk, AF_UNSPEC, 0, &k->kroutes);
		if (rv < 0) {
			k->kroutes = NULL;
			check_fatal(k, rv);
			return NULL;
		}
	}
	for (struct nl_object *o = nl_cache_get_first(k->kroutes); o; o = nl_cache_get_next(o)) {
		struct rtnl_route *kr = (struct rtnl_route *)o;
		if (holds_dest(kr, r)) {
			return kr;
		}
	}
	return NULL;
}

static int fib_match_valid(struct nl_msg *msg, void *arg)
{
	struct rtnl_route **out = arg;
	struct rtnl_route *kr = NULL;
	if (*out == NULL && rtnl_route_parse(nlmsg_hdr(msg), &kr) >= 0) {
		*out = kr;
	}
	return NL_OK;
}

/*
 * The kernel's route for exactly r's destination, when r is a host route (/32, /128, what
 * workloads get): one RTM_GETROUTE with RTM_F_FIB_MATCH answers with the FIB entry a lookup of
 * the address finds, and the most specific entry for an address is its host route when there is
 * one. The full listing (kernel_route_for) costs in proportion to the host's routes, and a host
 * with hundreds of containers met it once per new container, because the CNI wiring adds a
 * workload's route a moment before the recompute does. NULL: no answer, or an answer about some
 * other route (a policy rule sent the lookup to another table): the caller lists the table.
 */
static struct rtnl_route *kernel_host_route(struct netsync_kernel *k, const struct netcalc_route *r)
{
	struct rtnl_route *kr = NULL;
	struct rtmsg rtm = {.rtm_family = (unsigned char)nl_family(r->dst.addr.family),
	                    .rtm_dst_len = r->dst.prefix,
	                    .rtm_flags = RTM_F_FIB_MATCH};
	if (r->dst.prefix != (r->dst.addr.family == 4 ? 32 : 128)) {
		return NULL;
	}
	struct nl_msg *msg = nlmsg_alloc_simple(RTM_GETROUTE, NLM_F_REQUEST);
	struct nl_addr *dst = to_nl(&r->dst.addr, r->dst.prefix);
	struct nl_cb *cb = nl_cb_alloc(NL_CB_DEFAULT);
	int e = msg == NULL || dst == NULL || cb == NULL ? -NLE_NOMEM : 0;
	if (e == 0) {
		e = nlmsg_append(msg, &rtm, sizeof rtm, NLMSG_ALIGNTO);
	}
	if (e == 0) {
		e = nla_put_addr(msg, RTA_DST, dst);
	}
	if (e == 0) {
		nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, fib_match_valid, &kr);
		e = nl_send_auto(k->sk, msg);
	}
	/* The answer, then the ACK nl_send_auto asked for. No route at all is an error answer
	 * (ENETUNREACH), which ends the exchange without an ACK. */
	if (e >= 0) {
		e = nl_recvmsgs(k->sk, cb);
	}
	if (e >= 0) {
		e = nl_wait_for_ack(k->sk);
	}
	nlmsg_free(msg);
	nl_addr_put(dst);
	nl_cb_put(cb);
	if (e < 0 || kr == NULL || !holds_dest(kr, r)) {
		if (kr != NULL) {
			rtnl_route_put(kr);
		}
		return NULL;
	}
	return kr;
}

/* The protocol of the kernel's route for r's destination (main table, default priority), or -1
 * when there is none or no answer. */
static int kernel_proto(struct netsync_kernel *k, const struct netcalc_route *r)
{
	struct rtnl_route *own = kernel_host_route(k, r);
	struct rtnl_route *cur = own != NULL ? own : kernel_route_for(k, r);
	int proto = cur != NULL ? rtnl_route_get_protocol(cur) : -1;
	if (own != NULL) {
		rtnl_route_put(own); /* the listing's routes belong to its cache */
	}
	return proto;
}

enum install { INST_OK, INST_SKIPPED, INST_FAILED };

/* kr, the kernel's route for r's destination, is already r through the device ifindex: ours,
 * unicast, one next hop there, r's gateway, flags and scope (IPv6 keeps no scope). */
static bool kernel_holds(struct rtnl_route *kr, const struct netcalc_route *r, int ifindex)
{
	if (rtnl_route_get_protocol(kr) != TABBY_RTPROT || rtnl_route_get_type(kr) != RTN_UNICAST ||
	    r->type != NETCALC_UNICAST || rtnl_route_get_nnexthops(kr) != 1 ||
	    (r->dst.addr.family == 4 && rtnl_route_get_scope(kr) != r->scope)) {
		return false;
	}
	struct rtnl_nexthop *nh = rtnl_route_nexthop_n(kr, 0);
	struct nl_addr *gw = rtnl_route_nh_get_gateway(nh);
	struct ipam_addr g = {0};
	bool onlink = (rtnl_route_nh_get_flags(nh) & RTNH_F_ONLINK) != 0;
	return rtnl_route_nh_get_ifindex(nh) == ifindex && onlink == r->onlink &&
	       (gw == NULL ? r->gw.family == 0 : from_nl(gw, &g) && addr_eq(&g, &r->gw));
}

/*
 * Put r into the kernel. ours: the kernel's route for the destination is ours (replace it in
 * place). Otherwise add exclusively, so that a foreign route for the same destination is never
 * replaced; when one is there and it turns out to be ours after all (the CNI wiring added the
 * workload route a moment ago), replace it.
 */
/* A route for a destination that another program holds (protocol proto) is left alone. */
static enum install foreign_in_way(struct netsync_kernel *k, const char *what, int proto)
{
	problem(k,
	        "cannot add route %s: a route for the same destination with protocol %d (not "
	        "Tabby's) is in the way; leaving it",
	        what, proto);
	if (k->rep) {
		k->rep->routes_failed++;
	}
	return INST_FAILED;
}

/* Put r into the kernel. proto: the protocol of the kernel's route for r's destination when the
 * caller knows it (TABBY_RTPROT: ours, replaced in place; another: left alone), -1 when it does
 * not or there is none (added exclusively, and looked at only if that finds one). */
static enum install install(struct netsync_kernel *k, const struct netcalc_route *r, int proto)
{
	char what[160];
	int ifindex = 0;
	bool ours = proto == TABBY_RTPROT;
	netcalc_route_format(r, what, sizeof what);
	if (proto >= 0 && !ours) {
		return foreign_in_way(k, what, proto);
	}
	if (r->dev[0] != 0) {
		struct rtnl_link *l;
		if (link_lookup(k, 0, r->dev, &l) < 0) {
			return INST_FAILED;
		}
		if (l == NULL) {
			if (r->kind == NETCALC_R_WORKLOAD) {
				return INST_SKIPPED; /* the wiring has not made the veth yet */
			}
			problem(k, "cannot add route %s: device %s does not exist", what, r->dev);
			if (k->rep) {
				k->rep->routes_failed++;
			}
			return INST_FAILED;
		}
		ifindex = rtnl_link_get_ifindex(l);
		/* A workload veth that is not up yet is still being wired, and the wiring adds this
		 * route itself once it is; the kernel refuses routes through a down link. */
		bool up = (rtnl_link_get_flags(l) & IFF_UP) != 0;
		rtnl_link_put(l);
		if (r->kind == NETCALC_R_WORKLOAD && !up) {
			return INST_SKIPPED;
		}
	}
	if (!ours && r->kind == NETCALC_R_WORKLOAD) {
		/* The CNI wiring adds a workload's route itself, a moment before the recompute its
		 * entry asks for: one lookup finds it in place, where adding it exclusively,
		 * finding it ours and replacing it cost three round trips and a route notification
		 * on every local ADD. */
		struct rtnl_route *cur = kernel_host_route(k, r);
		bool held = cur != NULL && kernel_holds(cur, r, ifindex);
		if (cur != NULL) {
			rtnl_route_put(cur);
		}
		if (held) {
			return INST_OK;
		}
	}
	struct rtnl_route *kr = build_route(r, ifindex, false);
	if (kr == NULL) {
		k->fatal = -ENOMEM;
		return INST_FAILED;
	}
	int rv = rtnl_route_add(k->sk, kr, NLM_F_CREATE | (ours ? NLM_F_REPLACE : NLM_F_EXCL));
	if (rv == -NLE_EXIST && !ours) {
		proto = kernel_proto(k, r);
		if (proto == TABBY_RTPROT) {
			ours = true;
			rv = rtnl_route_add(k->sk, kr, NLM_F_CREATE | NLM_F_REPLACE);
		} else if (proto >= 0) {
			rtnl_route_put(kr);
			return foreign_in_way(k, what, proto);
		}
	}
	rtnl_route_put(kr);
	if (rv < 0) {
		problem(k, "cannot add route %s: %s", what, nl_geterror(rv));
		check_fatal(k, rv);
		if (k->rep) {
			k->rep->routes_failed++;
		}
		return INST_FAILED;
	}
	if (k->rep) {
		if (ours) {
			k->rep->routes_replaced++;
		} else {
			k->rep->routes_added++;
		}
	}
	return INST_OK;
}

/* Delete a route of ours (kr: the kernel's object, or NULL to build one from r). */
static bool remove_route(struct netsync_kernel *k, const struct netcalc_route *r,
                         struct rtnl_route *kr)
{
	char what[160];
	struct rtnl_route *own = NULL;
	if (kr == NULL) {
		if ((own = build_route(r, 0, true)) == NULL) {
			k->fatal = -ENOMEM;
			return false;
		}
		kr = own;
	}
	int rv = rtnl_route_delete(k->sk, kr, 0);
	rtnl_route_put(own);
	if (rv < 0 && rv != -NLE_OBJ_NOTFOUND) {
		problem(k, "cannot delete route %s: %s", netcalc_route_format(r, what, sizeof what),
		        nl_geterror(rv));
		check_fatal(k, rv);
		if (k->rep) {
			k->rep->routes_failed++;
		}
		return false;
	}
	if (k->rep && rv >= 0) {
		k->rep->routes_deleted++;
	}
	return true;
}

static void gone(struct netsync_kernel *k, const struct netcalc_route *old,
                 const struct netcalc_route *now)
{
	if (k->gone != NULL && workload_shaped(old) &&
	    (now == NULL || !netcalc_route_equal(old, now) || now->kind != NETCALC_R_WORKLOAD)) {
		k->gone(k->arg, &old->dst.addr);
	}
}

static const struct netcalc_route *find_route(const struct netcalc_route *v, unsigned n,
                                              const struct netcalc_route *key)
{
	unsigned lo = 0, hi = n;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		int c = netcalc_route_cmp(&v[mid], key);
		if (c == 0) {
			return &v[mid];
		}
		if (c < 0) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	return NULL;
}

/* Incremental: want against what the last apply left. */
static void routes_diff(struct netsync_kernel *k, const struct netcalc_state *want,
                        struct netcalc_route *held, unsigned *n_held)
{
	for (unsigned i = 0; i < want->n_routes; i++) {
		const struct netcalc_route *w = &want->routes[i];
		const struct netcalc_route *h = find_route(k->held, k->n_held, w);
		if (h != NULL && netcalc_route_equal(h, w)) {
			held[(*n_held)++] = *w;
			continue;
		}
		/* The last apply's list says only that the destination was ours then: a foreign
		 * route may have taken it since, and replacing without looking would overwrite it.
		 */
		enum install r = install(k, w, h != NULL ? kernel_proto(k, w) : -1);
		if (r == INST_OK) {
			held[(*n_held)++] = *w;
			if (h != NULL) {
				gone(k, h, w);
			}
		} else if (h != NULL) {
			held[(*n_held)++] = *h; /* tried again next time */
		}
	}
	for (unsigned i = 0; i < k->n_held; i++) {
		const struct netcalc_route *h = &k->held[i];
		if (find_route(want->routes, want->n_routes, h) != NULL) {
			continue;
		}
		if (remove_route(k, h, NULL)) {
			gone(k, h, NULL);
		} else {
			held[(*n_held)++] = *h; /* tried again next time */
		}
	}
}

struct kheld {
	struct netcalc_route r;
	struct rtnl_route *obj;
	bool usable; /* converted and at the default priority: an add with replace hits it */
	bool done;
};

static int cmp_kheld(const void *x, const void *y)
{
	const struct kheld *a = x, *b = y;
	return netcalc_route_cmp(&a->r, &b->r);
}

/* Full: want against what the kernel holds of ours. */
static void routes_full(struct netsync_kernel *k, const struct netcalc_state *want,
                        struct netcalc_route *held, unsigned *n_held)
{
	struct nl_cache *cache = NULL;
	struct kheld *kv = NULL;
	unsigned n = 0, cap = 0;
	int rv = rtnl_route_alloc_cache(k->sk, AF_UNSPEC, 0, &cache);
	if (rv < 0) {
		problem(k, "cannot list the routes: %s", nl_geterror(rv));
		k->fatal = rv == -NLE_NOMEM ? -ENOMEM : -EIO;
		return;
	}
	for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		struct rtnl_route *kr = (struct rtnl_route *)o;
		if (rtnl_route_get_table(kr) != RT_TABLE_MAIN ||
		    rtnl_route_get_protocol(kr) != TABBY_RTPROT) {
			continue;
		}
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			struct kheld *v = realloc(kv, cap * sizeof *v);
			if (v == NULL) {
				k->fatal = -ENOMEM;
				goto out;
			}
			kv = v;
		}
		struct kheld *e = &kv[n++];
		*e = (struct kheld){.obj = kr};
		e->usable = from_kernel(k, kr, &e->r) && default_prio(kr);
		if (!e->usable) {
			/* Still sorted by its destination, so that it is found and deleted. */
			struct ipam_addr d;
			if (from_nl(rtnl_route_get_dst(kr), &d)) {
				e->r.dst.addr = d;
				e->r.dst.prefix =
				    (uint8_t)nl_addr_get_prefixlen(rtnl_route_get_dst(kr));
			}
		}
	}
	if (n > 1) {
		qsort(kv, n, sizeof *kv, cmp_kheld);
	}
	unsigned j = 0;
	for (unsigned i = 0; i < want->n_routes; i++) {
		const struct netcalc_route *w = &want->routes[i];
		while (j < n && netcalc_route_cmp(&kv[j].r, w) < 0) {
			j++;
		}
		struct kheld *match = NULL, *same_dst = NULL;
		for (unsigned x = j; x < n && netcalc_route_cmp(&kv[x].r, w) == 0; x++) {
			if (kv[x].usable && kernel_equal(&kv[x].r, w)) {
				match = match ? match : &kv[x];
			} else if (kv[x].usable) {
				same_dst = same_dst ? same_dst : &kv[x];
			}
		}
		if (match != NULL) {
			match->done = true;
			held[(*n_held)++] = *w;
			continue;
		}
		enum install r = install(k, w, same_dst != NULL ? TABBY_RTPROT : -1);
		if (r == INST_OK) {
			held[(*n_held)++] = *w;
			if (same_dst != NULL) {
				same_dst->done = true; /* replaced in place */
				gone(k, &same_dst->r, w);
			}
		}
	}
	/* What is left is ours and not wanted (or a duplicate at another priority). */
	for (unsigned i = 0; i < n; i++) {
		if (kv[i].done) {
			continue;
		}
		const struct netcalc_route *w = find_route(want->routes, want->n_routes, &kv[i].r);
		if (w != NULL && !kv[i].usable) {
			/* A duplicate: deleting it leaves the wanted route. */
			remove_route(k, &kv[i].r, kv[i].obj);
			continue;
		}
		if (w != NULL) {
			continue; /* the wanted route could not be installed: keep the old one */
		}
		if (remove_route(k, &kv[i].r, kv[i].obj) && kv[i].usable) {
			gone(k, &kv[i].r, NULL);
		}
	}
out:
	free(kv);
	nl_cache_free(cache);
}

static void sync_routes(struct netsync_kernel *k, const struct netcalc_state *want, bool full)
{
	unsigned cap = want->n_routes + k->n_held + 1, n = 0;
	struct netcalc_route *held = malloc(cap * sizeof *held);
	if (held == NULL) {
		k->fatal = -ENOMEM;
		return;
	}
	if (full || !k->routes_known) {
		routes_full(k, want, held, &n);
	} else {
		routes_diff(k, want, held, &n);
	}
	/* held is built in destination order from two sorted walks, but the leftovers of the
	 * second walk (a route whose removal failed) come after: sort once if there are any.
	 * Sorting the usual, already sorted, list was a tenth of the whole apply at 500 local
	 * endpoints. */
	bool sorted = true;
	for (unsigned i = 1; i < n && sorted; i++) {
		sorted = netcalc_route_cmp(&held[i - 1], &held[i]) <= 0;
	}
	if (!sorted) {
		qsort(held, n, sizeof *held,
		      (int (*)(const void *, const void *))netcalc_route_cmp);
	}
	free(k->held);
	k->held = held;
	k->n_held = n;
	k->routes_known = k->fatal == 0;
}

/* ------------------------------------------------------------------------------------------ */
/* NAT outgoing                                                                                */

static json_t *prefix_elem(const struct ipam_cidr *c)
{
	char ip[IPAM_ADDR_STRLEN];
	return json_pack("{s:{s:s,s:i}}", "prefix", "addr", ipam_addr_format(&c->addr, ip), "len",
	                 (int)c->prefix);
}

static json_t *nat_set(const char *name, int family, const struct ipam_cidr *v, unsigned n)
{
	json_t *elems = json_array();
	for (unsigned i = 0; elems != NULL && i < n; i++) {
		if (v[i].addr.family == family &&
		    json_array_append_new(elems, prefix_elem(&v[i])) != 0) {
			json_decref(elems);
			elems = NULL;
		}
	}
	return agent_nft_add_set(json_pack("{s:s,s:s,s:s,s:s,s:[s]}", "family", "inet", "table",
	                                   NETSYNC_NAT_TABLE, "name", name, "type",
	                                   family == 4 ? "ipv4_addr" : "ipv6_addr", "flags",
	                                   "interval"),
	                         elems);
}

static json_t *nat_rule(json_t *expr)
{
	if (expr == NULL) {
		return NULL;
	}
	return json_pack("{s:{s:{s:s,s:s,s:s,s:o}}}", "add", "rule", "family", "inet", "table",
	                 NETSYNC_NAT_TABLE, "chain", "postrouting", "expr", expr);
}

/* Masquerade what leaves a NAT pool for a destination in no pool. */
static json_t *masq_rule(int family)
{
	const char *proto = family == 4 ? "ip" : "ip6";
	return nat_rule(json_pack(
	    "[{s:{s:s,s:{s:{s:s,s:s}},s:s}},{s:{s:s,s:{s:{s:s,s:s}},s:s}},{s:n}]", "match", "op",
	    "==", "left", "payload", "protocol", proto, "field", "saddr", "right",
	    family == 4 ? "@masq4" : "@masq6", "match", "op", "!=", "left", "payload", "protocol",
	    proto, "field", "daddr", "right", family == 4 ? "@pools4" : "@pools6", "masquerade"));
}

/* Host-originated traffic into a tunnel leaves with the tunnel address (Felix does the same):
 * the far end routes that address back through the tunnel, not a host address it may not
 * reach. */
static json_t *tunnel_rule(const char *dev)
{
	return nat_rule(json_pack(
	    "[{s:{s:s,s:{s:{s:s}},s:s}},{s:{s:s,s:{s:{s:[s],s:s}},s:s}},{s:n}]", "match", "op",
	    "==", "left", "meta", "key", "oifname", "right", dev, "match", "op", "==", "left",
	    "fib", "flags", "saddr", "result", "type", "right", "local", "masquerade"));
}

static json_t *sources_set(const char *name, int family, const struct ipam_addr *v, unsigned n)
{
	json_t *elems = json_array();
	for (unsigned i = 0; elems != NULL && i < n; i++) {
		char text[IPAM_ADDR_STRLEN];
		if (v[i].family == family &&
		    json_array_append_new(elems, json_string(ipam_addr_format(&v[i], text))) != 0) {
			json_decref(elems);
			elems = NULL;
		}
	}
	return agent_nft_add_set(json_pack("{s:s,s:s,s:s,s:s}", "family", "inet", "table",
	                                   NETSYNC_NAT_TABLE, "name", name, "type",
	                                   family == 4 ? "ipv4_addr" : "ipv6_addr"),
	                         elems);
}

/*
 * A tunnel packet (IP-in-IP, or VXLAN on its UDP port) that is not from a node's underlay
 * address: dropped before the tunnel sees it. match is the protocol test, family the outer
 * packet's. Counted: a node whose packets leave from an address other than its node address
 * shows here (the count restarts when the table is reloaded, at least every 90 s).
 */
static json_t *tunnel_source_rule(json_t *match, int family)
{
	if (match == NULL) {
		return NULL;
	}
	return json_pack("{s:{s:{s:s,s:s,s:s,s:[o,{s:{s:s,s:{s:{s:s,s:s}},s:s}},{s:n},{s:n}]}}}",
	                 "add", "rule", "family", "inet", "table", NETSYNC_NAT_TABLE, "chain",
	                 "input", "expr", match, "match", "op", "!=", "left", "payload", "protocol",
	                 family == 4 ? "ip" : "ip6", "field", "saddr", "right",
	                 family == 4 ? "@hosts4" : "@hosts6", "counter", "drop");
}

/* A filter chain of the table on hook, named after it, ahead of the filter priority. */
static json_t *filter_chain(const char *hook)
{
	return json_pack("{s:{s:{s:s,s:s,s:s,s:s,s:s,s:i,s:s}}}", "add", "chain", "family", "inet",
	                 "table", NETSYNC_NAT_TABLE, "name", hook, "type", "filter", "hook", hook,
	                 "prio", -10, "policy", "accept");
}

/* IP-in-IP (IP protocol 4). */
static json_t *ipip_match(void)
{
	return json_pack("{s:{s:s,s:{s:{s:s}},s:i}}", "match", "op", "==", "left", "meta", "key",
	                 "l4proto", "right", 4);
}

/* VXLAN: UDP to the port every VXLAN device of ours listens on. */
static json_t *vxlan_match(void)
{
	return json_pack("{s:{s:s,s:{s:{s:s,s:s}},s:i}}", "match", "op", "==", "left", "payload",
	                 "protocol", "udp", "field", "dport", "right", NETCALC_VXLAN_PORT);
}

/* iifname "cali*" <match> drop, in the prerouting chain. */
static json_t *workload_tunnel_rule(json_t *match)
{
	if (match == NULL) {
		return NULL;
	}
	return json_pack("{s:{s:{s:s,s:s,s:s,s:[{s:{s:s,s:{s:{s:s}},s:s}},o,{s:n}]}}}", "add",
	                 "rule", "family", "inet", "table", NETSYNC_NAT_TABLE, "chain",
	                 "prerouting", "expr", "match", "op", "==", "left", "meta", "key",
	                 "iifname", "right", AGENT_IFACE_PREFIX "*", match, "drop");
}

/* The whole table as one transaction that replaces it (NULL for out of memory); *none when no
 * table is wanted. */
static json_t *nat_commands(const struct netcalc_state *s, bool *none)
{
	const char *tunnels[3];
	unsigned n_tunnels = 0;
	if (s->ipip.wanted) {
		tunnels[n_tunnels++] = NETCALC_IPIP_DEV;
	}
	for (int fi = 0; fi < 2; fi++) {
		if (s->vxlan[fi].wanted) {
			tunnels[n_tunnels++] = s->vxlan[fi].dev;
		}
	}
	*none = s->n_nat_pools == 0 && n_tunnels == 0;
	if (*none) {
		return NULL;
	}
	json_t *table = json_pack("{s:s,s:s}", "family", "inet", "name", NETSYNC_NAT_TABLE);
	json_t *cmds = json_array();
	json_t *doc = json_pack("{s:o}", "nftables", cmds);
	if (table == NULL || doc == NULL) {
		json_decref(table);
		json_decref(doc);
		return NULL;
	}
	/* add, delete, add: the table is created if missing, then replaced, in one transaction,
	 * so a NAT decision is never made against a half-built table. */
	int bad = json_array_append_new(cmds, json_pack("{s:{s:O}}", "add", "table", table));
	bad |= json_array_append_new(cmds, json_pack("{s:{s:O}}", "delete", "table", table));
	bad |= json_array_append_new(cmds, json_pack("{s:{s:O}}", "add", "table", table));
	bad |= json_array_append_new(cmds, nat_set("masq4", 4, s->nat_pools, s->n_nat_pools));
	bad |= json_array_append_new(cmds, nat_set("masq6", 6, s->nat_pools, s->n_nat_pools));
	bad |= json_array_append_new(cmds, nat_set("pools4", 4, s->all_pools, s->n_all_pools));
	bad |= json_array_append_new(cmds, nat_set("pools6", 6, s->all_pools, s->n_all_pools));
	bad |= json_array_append_new(
	    cmds, json_pack("{s:{s:{s:s,s:s,s:s,s:s,s:s,s:i,s:s}}}", "add", "chain", "family",
	                    "inet", "table", NETSYNC_NAT_TABLE, "name", "postrouting", "type",
	                    "nat", "hook", "postrouting", "prio", 100, "policy", "accept"));
	for (unsigned i = 0; i < n_tunnels; i++) {
		bad |= json_array_append_new(cmds, tunnel_rule(tunnels[i]));
	}
	bad |= json_array_append_new(cmds, masq_rule(4));
	bad |= json_array_append_new(cmds, masq_rule(6));
	if (n_tunnels > 0) {
		/* input: before the tunnel decapsulates, the hook sees the outer packet.
		 * prerouting: a workload's own tunnel packets, dropped as they leave it (Felix
		 * drops them in every workload's egress chain): NAT outgoing would masquerade them
		 * to this host's node address, which the other hosts' source check lets through,
		 * and a frame or IP-in-IP packet of its making would reach their containers with
		 * any inner source. Both ahead of a host firewall's filter chains, which may
		 * accept first. */
		bad |= json_array_append_new(
		    cmds, sources_set("hosts4", 4, s->tunnel_sources, s->n_tunnel_sources));
		bad |= json_array_append_new(
		    cmds, sources_set("hosts6", 6, s->tunnel_sources, s->n_tunnel_sources));
		bad |= json_array_append_new(cmds, filter_chain("input"));
		bad |= json_array_append_new(cmds, filter_chain("prerouting"));
		if (s->ipip.wanted) {
			bad |= json_array_append_new(cmds, workload_tunnel_rule(ipip_match()));
			bad |= json_array_append_new(cmds, tunnel_source_rule(ipip_match(), 4));
		}
		if (s->vxlan[0].wanted || s->vxlan[1].wanted) {
			bad |= json_array_append_new(cmds, workload_tunnel_rule(vxlan_match()));
		}
		for (int fi = 0; fi < 2; fi++) {
			if (s->vxlan[fi].wanted) {
				bad |= json_array_append_new(
				    cmds, tunnel_source_rule(vxlan_match(), fi == 0 ? 4 : 6));
			}
		}
	}
	json_decref(table);
	if (bad) {
		json_decref(doc);
		return NULL;
	}
	return doc;
}

static void sync_nat(struct netsync_kernel *k, const struct netcalc_state *want, bool full)
{
	char err[512];
	bool none = false;
	json_t *cmds = nat_commands(want, &none);
	if (cmds == NULL && !none) {
		k->fatal = -ENOMEM;
		return;
	}
	char *text = cmds ? json_dumps(cmds, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	if (cmds != NULL && text == NULL) {
		json_decref(cmds);
		k->fatal = -ENOMEM;
		return;
	}
	bool same = k->nat_known && ((text == NULL && k->nat == NULL) ||
	                             (text != NULL && k->nat != NULL && strcmp(text, k->nat) == 0));
	if (same && !full) {
		free(text);
		json_decref(cmds);
		return;
	}
	int rv = cmds ? agent_nft_apply(k->nft, cmds, err, sizeof err)
	              : agent_nft_delete_table(k->nft, NETSYNC_NAT_TABLE, err, sizeof err);
	json_decref(cmds);
	if (rv != 0) {
		problem(k, "cannot %s the NAT outgoing table inet %s: %s", text ? "load" : "delete",
		        NETSYNC_NAT_TABLE, err);
		free(text);
		k->nat_known = false;
		if (k->rep) {
			k->rep->nat_failed = true;
		}
		return;
	}
	if (k->rep && !same && (text != NULL || k->nat != NULL)) {
		k->rep->nat_changed = true;
	}
	free(k->nat);
	k->nat = text;
	k->nat_known = true;
}

/* ------------------------------------------------------------------------------------------ */

int netsync_kernel_new(netsync_gone_fn gone_fn, netsync_problem_fn problem_fn, void *arg,
                       struct netsync_kernel **out, char *err, size_t errlen)
{
	struct netsync_kernel *k = calloc(1, sizeof *k);
	int rv;
	if (k == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	k->gone = gone_fn;
	k->problem = problem_fn;
	k->arg = arg;
	if ((k->sk = nl_socket_alloc()) == NULL) {
		snprintf(err, errlen, "out of memory");
		rv = -ENOMEM;
		goto err;
	}
	if ((rv = nl_connect(k->sk, NETLINK_ROUTE)) < 0) {
		snprintf(err, errlen, "cannot open a netlink socket: %s", nl_geterror(rv));
		rv = -EIO;
		goto err;
	}
	/* One recvmsg() per datagram instead of a peek and a read (as wire.c's sockets): dump
	 * datagrams never exceed 32 KiB, the most the kernel sizes them to. */
	nl_socket_disable_msg_peek(k->sk);
	if ((rv = nl_socket_set_msg_buf_size(k->sk, NETSYNC_NL_BUF)) < 0) {
		snprintf(err, errlen, "cannot size a netlink socket's buffer: %s", nl_geterror(rv));
		rv = -EIO;
		goto err;
	}
	if ((rv = agent_nft_new(&k->nft)) != 0) {
		snprintf(err, errlen, "cannot open a libnftables context");
		goto err;
	}
	*out = k;
	return 0;
err:
	netsync_kernel_free(k);
	return rv;
}

void netsync_kernel_free(struct netsync_kernel *k)
{
	if (k == NULL) {
		return;
	}
	if (k->sk != NULL) {
		nl_socket_free(k->sk);
	}
	agent_nft_free(k->nft);
	free(k->held);
	free(k->vx[0].peers);
	free(k->vx[1].peers);
	free(k->nat);
	free(k);
}

int netsync_kernel_apply(struct netsync_kernel *k, const struct netcalc_state *want, bool full,
                         struct netsync_report *rep)
{
	if (rep != NULL) {
		*rep = (struct netsync_report){0};
	}
	k->rep = rep;
	k->fatal = 0;
	/* Devices first: the routes through them need them. */
	sync_ipip(k, want, full);
	sync_vxlan(k, &want->vxlan[0], full);
	sync_vxlan(k, &want->vxlan[1], full);
	if (k->fatal == 0) {
		sync_routes(k, want, full);
	}
	if (k->fatal == 0) {
		sync_nat(k, want, full);
	}
	if (k->kroutes != NULL) {
		nl_cache_free(k->kroutes);
		k->kroutes = NULL;
	}
	k->rep = NULL;
	if (k->fatal != 0) {
		/* What the kernel holds is no longer known: the next apply reads it. */
		k->routes_known = k->ipip_known = k->nat_known = false;
		k->vx[0].known = k->vx[1].known = false;
	}
	return k->fatal;
}

unsigned netsync_retry_after(int rv, const struct netsync_report *rep, unsigned prev_ms)
{
	if (rv == 0 && rep->routes_failed == 0 && rep->links_failed == 0 && !rep->nat_failed) {
		return 0;
	}
	if (prev_ms < RETRY_MS) {
		return RETRY_MS;
	}
	return prev_ms >= RETRY_MAX_MS / 2 ? RETRY_MAX_MS : 2 * prev_ms;
}

static int write_sysctl(const char *path, bool optional, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		if (optional && errno == ENOENT) {
			return 0;
		}
		int e = errno;
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
		return -e;
	}
	ssize_t w = write(fd, "1\n", 2);
	int e = errno;
	close(fd);
	if (w != 2) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(w < 0 ? e : EIO));
		return w < 0 ? -e : -EIO;
	}
	return 0;
}

int netsync_kernel_forwarding(char *err, size_t errlen)
{
	int rv = write_sysctl("/proc/sys/net/ipv4/ip_forward", false, err, errlen);
	if (rv == 0) {
		rv = write_sysctl("/proc/sys/net/ipv6/conf/all/forwarding", true, err, errlen);
	}
	return rv;
}

/* ========================================================================================== */
/* The glue: the replicated state in, the applier driven                                       */

/* ------------------------------------------------------------------------------------------ */
/* This host's workload endpoints, kept decoded                                                */

/*
 * The endpoints of other hosts never matter here, and this host's change one at a time, so the
 * decoded endpoints are kept between recomputes and changed by the watch's events: one decode per
 * change instead of one per endpoint per change (which made starting n containers on a host cost
 * n^2 decodes). The watch covers only this host's keys, "res/workloadendpoints/<node>/..." (a
 * node name has no '/'), so containers starting elsewhere wake nothing here.
 *
 * The cache is loaded from the view of a recompute and then holds the state at that view's
 * revision (rev); an event at or below rev is already in it, which is what makes the events the
 * watch delivered between its start and the load harmless. Whenever the watch stops or an event
 * cannot be decoded, the cache is dropped and the next recompute loads it again.
 */
struct wl {
	char *key; /* after the watch prefix */
	char iface[IFNAMSIZ];
	struct ipam_cidr *addrs;
	unsigned n_addrs;
};

struct wl_cache {
	bool valid;
	int64_t rev;
	struct wl *v; /* by key */
	unsigned n, cap;
};

static void wl_clear(struct wl *w)
{
	free(w->key);
	free(w->addrs);
}

static void wl_cache_drop(struct wl_cache *c)
{
	for (unsigned i = 0; i < c->n; i++) {
		wl_clear(&c->v[i]);
	}
	free(c->v);
	*c = (struct wl_cache){0};
}

/* Decode an endpoint's stored form into *out (key not set). Returns 0, -ENOENT for an endpoint
 * that needs no route (no interface: wired by nothing this host runs), -EINVAL for a record that
 * is not JSON, -ENOMEM. */
static int wl_decode(const uint8_t *value, size_t len, struct wl *out)
{
	size_t k;
	json_t *net;
	*out = (struct wl){0};
	json_t *j = json_loadb((const char *)value, len, 0, NULL);
	if (j == NULL) {
		return -EINVAL;
	}
	json_t *spec = json_object_get(j, "spec");
	const char *iface = json_string_value(json_object_get(spec, "interfaceName"));
	json_t *nets = json_object_get(spec, "ipNetworks");
	int rv = -ENOENT;
	if (iface == NULL || strlen(iface) >= sizeof out->iface) {
		goto out;
	}
	strcpy(out->iface, iface);
	rv = -ENOMEM;
	out->addrs = calloc(json_array_size(nets) ? json_array_size(nets) : 1, sizeof *out->addrs);
	if (out->addrs == NULL) {
		goto out;
	}
	json_array_foreach (nets, k, net) {
		char why[128];
		if (json_string_value(net) != NULL &&
		    ipam_cidr_parse(json_string_value(net), &out->addrs[out->n_addrs], why,
		                    sizeof why)) {
			out->n_addrs++;
		}
	}
	rv = 0;
out:
	json_decref(j);
	if (rv != 0) {
		free(out->addrs);
		out->addrs = NULL;
	}
	return rv;
}

/* Where key is, or would be inserted. */
static unsigned wl_find(const struct wl_cache *c, const char *key, size_t len, bool *found)
{
	unsigned lo = 0, hi = c->n;
	*found = false;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		size_t ml = strlen(c->v[mid].key);
		int d = memcmp(c->v[mid].key, key, ml < len ? ml : len);
		if (d == 0) {
			d = ml < len ? -1 : ml > len ? 1 : 0;
		}
		if (d == 0) {
			*found = true;
			return mid;
		}
		if (d < 0) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	return lo;
}

/* Put (value != NULL) or delete key. Returns 0 or a negative errno (then the cache is unchanged).
 */
static int wl_set(struct wl_cache *c, const char *key, size_t key_len, const uint8_t *value,
                  size_t value_len)
{
	bool found;
	unsigned at = wl_find(c, key, key_len, &found);
	struct wl w;
	int rv = value != NULL ? wl_decode(value, value_len, &w) : -ENOENT;
	if (rv == -ENOENT) { /* deleted, or no longer routed */
		if (found) {
			wl_clear(&c->v[at]);
			memmove(&c->v[at], &c->v[at + 1], (c->n - at - 1) * sizeof *c->v);
			c->n--;
		}
		return 0;
	}
	if (rv != 0) {
		return rv;
	}
	if (found) {
		w.key = c->v[at].key;
		free(c->v[at].addrs);
		c->v[at] = w;
		return 0;
	}
	if (c->n == c->cap) {
		unsigned cap = c->cap ? 2 * c->cap : 32;
		struct wl *v = realloc(c->v, cap * sizeof *v);
		if (v == NULL) {
			free(w.addrs);
			return -ENOMEM;
		}
		c->v = v;
		c->cap = cap;
	}
	w.key = strndup(key, key_len);
	if (w.key == NULL) {
		free(w.addrs);
		return -ENOMEM;
	}
	memmove(&c->v[at + 1], &c->v[at], (c->n - at) * sizeof *c->v);
	c->v[at] = w;
	c->n++;
	return 0;
}

struct wl_load {
	struct wl_cache *c;
	size_t skip; /* the prefix's length */
	int err;
};

static int wl_load_one(void *arg, struct kv_bytes key, struct kv_bytes value)
{
	struct wl_load *l = arg;
	/* In key order: each one goes at the end. */
	int rv = wl_set(l->c, (const char *)key.data + l->skip, key.len - l->skip, value.data,
	                value.len);
	if (rv != 0) {
		l->err = rv == -ENOMEM ? -ENOMEM : -EIO;
		return 2;
	}
	return 0;
}

static int wl_cache_load(struct wl_cache *c, struct kv_tx *tx, const char *prefix)
{
	wl_cache_drop(c);
	struct wl_load l = {c, strlen(prefix), 0};
	int rv = kv_tx_scan(tx, KV_SPACE_DOMAIN,
	                    (struct kv_bytes){(const uint8_t *)prefix, strlen(prefix)},
	                    (struct kv_bytes){NULL, 0}, wl_load_one, &l);
	if (rv != KV_OK || l.err != 0) {
		wl_cache_drop(c);
		return l.err != 0 ? l.err : -EIO;
	}
	c->valid = true;
	c->rev = kv_tx_revision(tx);
	return 0;
}

/* One event of the watch on this host's endpoints. */
static void wl_cache_event(struct wl_cache *c, const struct kv_event *ev, size_t skip)
{
	if (!c->valid || ev->kv.mod_revision <= c->rev || ev->kv.key_len < skip) {
		return;
	}
	bool put = ev->type == KV_EV_PUT;
	if (wl_set(c, (const char *)ev->kv.key + skip, ev->kv.key_len - skip,
	           put ? ev->kv.value : NULL, put ? ev->kv.value_len : 0) != 0) {
		wl_cache_drop(c); /* loaded afresh by the recompute the event schedules */
	}
}

/* The calculation's input, read from one view (read_input()). */
struct input {
	struct netcalc_input in;
	json_t *nodes_json;
	struct netcalc_node *nodes;
	struct ipam_pool *pools;
	struct ipam_block_info *blocks;
	struct netcalc_alloc *allocs;
	unsigned cap_allocs;
	struct netcalc_workload *weps; /* pointing into the cache */
};

enum { W_IPAM, W_NODES, W_WEPS, N_WATCHES };

enum { REQ_IPIP, REQ_VXLAN4, REQ_VXLAN6, N_REQS };

struct netsync {
	struct agent *a;
	struct netsync_kernel *k;
	uv_timer_t timer;   /* zero delay: the recompute; also the retries */
	uv_timer_t refresh; /* every REFRESH_MS: a full apply */
	struct store_watch watch[N_WATCHES];
	bool watching[N_WATCHES];
	bool full;         /* the next apply is full */
	unsigned retry_ms; /* the wait before the pending retry (netsync_retry_after()), or 0 */
	bool stopping;
	/* Lines already logged (notes of the calculation, problems of the applier); a line is
	 * logged again only after it went away once. */
	char **logged;
	unsigned n_logged;
	char **cur; /* being collected by the running recompute */
	unsigned n_cur, cap_cur;
	bool req_inflight[N_REQS];
	uint64_t req_after[N_REQS];            /* uv_now() before which no new request is made */
	char weps_prefix[POLICY_KEY_MAX + 64]; /* "res/workloadendpoints/<this node>/" */
	struct wl_cache wl;
	/* What the last recompute read from the store, kept for the next one: the nodes (with
	 * their tunnel addresses) and the IPAM part (pools, blocks, borrowed addresses) are read
	 * again only after a change that can alter them (ipam_change_matters()). */
	struct input x;
	bool nodes_ok, ipam_ok;
};

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void recompute_cb(uv_timer_t *t);

/* The longest a change waits for local CNI wirings (see schedule_change()). */
#define WIRING_WAIT_MS 20

/* The recompute runs in ms at the latest. One timer serves every reason (a change, a retry, a
 * tunnel address request's wait), so a reason never pushes back one that is due sooner, and
 * brings forward one that is due later. */
static void arm(struct netsync *ns, uint64_t ms)
{
	if (ns->stopping) {
		return;
	}
	if (uv_is_active((uv_handle_t *)&ns->timer) && uv_timer_get_due_in(&ns->timer) <= ms) {
		return;
	}
	uv_timer_start(&ns->timer, recompute_cb, ms, 0);
}

static void schedule(struct netsync *ns)
{
	arm(ns, 0);
}

/*
 * A change in the replicated state. While this host's CNI ADDs are wiring their containers, the
 * recompute waits for them. The change is usually their own entry, whose veths are still being
 * made: a recompute now would skip their routes (the wiring adds each workload's route itself) and
 * run again when they are done, and on the loop thread it competes for the CPU with the wiring and
 * delays the ADD's answer (one recompute less per ADD, counted with a probe on recompute_cb). Each
 * wiring asks for the recompute when it is done (netsync_kick()); the timer makes sure that a
 * change waits no longer than WIRING_WAIT_MS, however many ADDs follow each other, and that one
 * whose wiring failed is not forgotten.
 */
static void schedule_change(struct netsync *ns)
{
	if (ns->stopping) {
		return;
	}
	if (ns->a->wiring == 0) {
		schedule(ns);
	} else {
		arm(ns, WIRING_WAIT_MS);
	}
}

/* Collect a line for the log-once set, logging it when it is new. */
static void collect_line(void *arg, const char *line)
{
	struct netsync *ns = arg;
	for (unsigned i = 0; i < ns->n_cur; i++) {
		if (strcmp(ns->cur[i], line) == 0) {
			return;
		}
	}
	bool seen = false;
	for (unsigned i = 0; i < ns->n_logged && !seen; i++) {
		seen = strcmp(ns->logged[i], line) == 0;
	}
	if (!seen) {
		agent_log("routes: %s", line);
	}
	if (ns->n_cur == ns->cap_cur) {
		unsigned cap = ns->cap_cur ? 2 * ns->cap_cur : 16;
		char **v = realloc(ns->cur, cap * sizeof *v);
		if (v == NULL) {
			return; /* logged again next time: harmless */
		}
		ns->cur = v;
		ns->cap_cur = cap;
	}
	char *copy = strdup(line);
	if (copy != NULL) {
		ns->cur[ns->n_cur++] = copy;
	}
}

static void free_lines(char **v, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		free(v[i]);
	}
	free(v);
}

/* The collected lines become the logged set. */
static void rotate_lines(struct netsync *ns)
{
	free_lines(ns->logged, ns->n_logged);
	ns->logged = ns->cur;
	ns->n_logged = ns->n_cur;
	ns->cur = NULL;
	ns->n_cur = ns->cap_cur = 0;
}

static void on_gone(void *arg, const struct ipam_addr *addr)
{
	struct netsync *ns = arg;
	agent_flush_conntrack(ns->a, addr); /* on a worker: it reads the whole table */
}

/* ------------------------------------------------------------------------------------------ */
/* The input, read from one view                                                               */

static void input_free_nodes(struct input *x)
{
	json_decref(x->nodes_json);
	free(x->nodes);
	x->nodes_json = NULL;
	x->nodes = NULL;
	x->in.n_nodes = 0;
}

static void input_free_ipam(struct input *x)
{
	free(x->pools);
	free(x->blocks);
	for (unsigned i = 0; i < x->in.n_allocs; i++) {
		free((char *)x->allocs[i].node);
	}
	free(x->allocs);
	x->pools = NULL;
	x->blocks = NULL;
	x->allocs = NULL;
	x->cap_allocs = 0;
	x->in.n_pools = x->in.n_blocks = x->in.n_allocs = 0;
}

static void input_free(struct input *x)
{
	input_free_nodes(x);
	input_free_ipam(x);
	free(x->weps);
	x->weps = NULL;
	x->in.n_workloads = 0;
}

static bool parse_hostaddr(json_t *v, struct netcalc_hostaddr *out)
{
	const char *s = json_string_value(v);
	char buf[IPAM_CIDR_STRLEN];
	*out = (struct netcalc_hostaddr){0};
	if (s == NULL || strlen(s) >= sizeof buf) {
		return false;
	}
	strcpy(buf, s);
	char *slash = strchr(buf, '/');
	if (slash == NULL) {
		return false;
	}
	*slash = 0;
	int prefix = atoi(slash + 1);
	if (!ipam_addr_parse(buf, &out->addr) || prefix < 0 ||
	    prefix > (out->addr.family == 4 ? 32 : 128)) {
		return false;
	}
	out->prefix = (uint8_t)prefix;
	out->set = true;
	return true;
}

static int tunnel_addr(struct kv_tx *tx, const char *prefix, const char *node, int family,
                       struct ipam_addr *out)
{
	char handle[IPAM_NAME_MAX + 32];
	struct ipam_assigned *v = NULL;
	unsigned n = 0;
	*out = (struct ipam_addr){0};
	snprintf(handle, sizeof handle, "%s%s", prefix, node);
	int rv = ipam_handle_addrs(tx, handle, &v, &n);
	if (rv != 0) {
		return rv;
	}
	for (unsigned i = 0; i < n; i++) {
		if (v[i].addr.family == family) {
			*out = v[i].addr;
			break;
		}
	}
	free(v);
	return 0;
}

static int read_nodes(struct kv_tx *tx, struct input *x)
{
	size_t i;
	json_t *item;
	int rv = resources_list(tx, POLICY_KIND_NODE, &x->nodes_json);
	if (rv != 0) {
		return rv;
	}
	size_t n = json_array_size(x->nodes_json);
	x->nodes = calloc(n ? n : 1, sizeof *x->nodes);
	if (x->nodes == NULL) {
		return -ENOMEM;
	}
	json_array_foreach (x->nodes_json, i, item) {
		const char *name =
		    json_string_value(json_object_get(json_object_get(item, "metadata"), "name"));
		json_t *bgp = json_object_get(json_object_get(item, "spec"), "bgp");
		if (name == NULL) {
			continue;
		}
		struct netcalc_node *nd = &x->nodes[x->in.n_nodes++];
		nd->name = name;
		parse_hostaddr(json_object_get(bgp, "ipv4Address"), &nd->ip4);
		parse_hostaddr(json_object_get(bgp, "ipv6Address"), &nd->ip6);
		if ((rv = tunnel_addr(tx, NETCALC_IPIP_HANDLE, name, 4, &nd->ipip)) != 0 ||
		    (rv = tunnel_addr(tx, NETCALC_VXLAN_HANDLE, name, 4, &nd->vxlan4)) != 0 ||
		    (rv = tunnel_addr(tx, NETCALC_VXLAN6_HANDLE, name, 6, &nd->vxlan6)) != 0) {
			return rv;
		}
	}
	return 0;
}

static int collect_alloc(void *arg, const struct ipam_alloc *al)
{
	struct input *x = arg;
	if (strcmp(al->node, al->affinity) == 0) {
		return 0; /* inside its own node's block: the block route covers it */
	}
	if (x->in.n_allocs == x->cap_allocs) {
		unsigned cap = x->cap_allocs ? 2 * x->cap_allocs : 32;
		struct netcalc_alloc *v = realloc(x->allocs, cap * sizeof *v);
		if (v == NULL) {
			return -ENOMEM;
		}
		x->allocs = v;
		x->cap_allocs = cap;
	}
	char *node = strdup(al->node);
	if (node == NULL) {
		return -ENOMEM;
	}
	x->allocs[x->in.n_allocs++] =
	    (struct netcalc_alloc){.addr = al->addr, .block = al->block, .node = node};
	return 0;
}

/* This host's endpoints, from the cache (loaded from tx when it has none). */
static int read_workloads(struct kv_tx *tx, struct netsync *ns, struct input *x)
{
	struct wl_cache *c = &ns->wl;
	if (!c->valid) {
		int rv = wl_cache_load(c, tx, ns->weps_prefix);
		if (rv != 0) {
			return rv;
		}
	}
	x->weps = calloc(c->n ? c->n : 1, sizeof *x->weps);
	if (x->weps == NULL) {
		return -ENOMEM;
	}
	for (unsigned i = 0; i < c->n; i++) {
		x->weps[i] =
		    (struct netcalc_workload){c->v[i].iface, c->v[i].addrs, c->v[i].n_addrs};
	}
	x->in.n_workloads = c->n;
	return 0;
}

/* Bring ns->x up to date: the parts a change made stale from the store, the workloads from
 * their cache. A part that fails stays stale, so the retry reads it again. */
static int read_input(struct netsync *ns)
{
	struct input *x = &ns->x;
	struct kv_tx *tx;
	free(x->weps);
	x->weps = NULL;
	x->in.n_workloads = 0;
	x->in.self = ns->a->name;
	if (store_view_begin(ns->a->store, &tx) != STORE_OK) {
		return -EIO;
	}
	int rv = 0;
	if (!ns->nodes_ok) {
		input_free_nodes(x);
		rv = read_nodes(tx, x);
		ns->nodes_ok = rv == 0;
	}
	if (rv == 0 && !ns->ipam_ok) {
		input_free_ipam(x);
		rv = ipam_list_pools(tx, &x->pools, &x->in.n_pools);
		if (rv == 0) {
			rv = ipam_list_blocks(tx, &x->blocks, &x->in.n_blocks);
		}
		if (rv == 0) {
			rv = ipam_foreach_alloc(tx, collect_alloc, x);
		}
		ns->ipam_ok = rv == 0;
	}
	if (rv == 0) {
		rv = read_workloads(tx, ns, x);
	}
	store_view_end(tx);
	x->in.nodes = x->nodes;
	x->in.pools = x->pools;
	x->in.blocks = x->blocks;
	x->in.allocs = x->allocs;
	x->in.workloads = x->weps;
	return rv;
}

/* ------------------------------------------------------------------------------------------ */
/* Tunnel addresses                                                                            */

struct req_ctx {
	struct store_write w;
	struct netsync *ns;
	int which;
	char handle[IPAM_NAME_MAX + 1];
};

static void req_done(struct store_write *w, int status, const struct kv_result *r)
{
	struct req_ctx *rc = w->data;
	struct netsync *ns = rc->ns;
	struct ipam_reply rep = {0};
	char ip[IPAM_ADDR_STRLEN];
	ns->req_inflight[rc->which] = false;
	if (status == STORE_ESHUTDOWN || ns->stopping) {
		goto out;
	}
	bool decoded = status == STORE_OK && (r->status == KV_R_OK || r->status == KV_R_REFUSED) &&
	               ipam_decode_reply(r->reply, r->reply_len, &rep) == 0;
	if (decoded && r->status == KV_R_OK && rep.error == IPAM_OK && rep.n_addrs > 0) {
		agent_log("routes: tunnel address %s assigned (handle %s)",
		          ipam_addr_format(&rep.addrs[0].addr, ip), rc->handle);
		schedule(ns); /* the ipam watch sees it too; this is for the impatient */
		goto out;
	}
	agent_log("routes: cannot get a tunnel address for handle %s: %s; trying again later",
	          rc->handle,
	          status != STORE_OK       ? store_strerror(status)
	          : decoded && rep.message ? rep.message
	          : r->message             ? r->message
	                                   : "the command was refused");
	ns->req_after[rc->which] = uv_now(ns->a->loop) + REQ_RETRY_MS;
	arm(ns, REQ_RETRY_MS);
out:
	ipam_reply_free(&rep);
	free(rc);
}

static void request_tunnel(struct netsync *ns, int which, const struct netcalc_tunnel_req *tr,
                           int family)
{
	struct agent *a = ns->a;
	uint64_t now = uv_now(a->loop);
	if (!tr->wanted || ns->req_inflight[which]) {
		return;
	}
	if (now < ns->req_after[which]) {
		/* Not yet: come back when the wait is over. req_done() armed the timer for it,
		 * but a recompute due sooner (this one) may have taken that timer. */
		arm(ns, ns->req_after[which] - now);
		return;
	}
	struct req_ctx *rc = calloc(1, sizeof *rc);
	uint8_t *buf = NULL;
	size_t len = 0;
	if (rc == NULL) {
		return;
	}
	snprintf(rc->handle, sizeof rc->handle, "%s", tr->handle);
	struct ipam_attr attrs[] = {
	    {"node", a->name},
	    {"type", which == REQ_IPIP ? "ipipTunnelAddress" : "vxlanTunnelAddress"},
	};
	struct ipam_request req = {
	    .type = IPAM_REQ_ASSIGN,
	    .cidrs = &tr->pool,
	    .n_cidrs = 1,
	    .node = a->name,
	    .handle = rc->handle,
	    .attrs = attrs,
	    .n_attrs = 2,
	    .num4 = family == 4 ? 1 : 0,
	    .num6 = family == 6 ? 1 : 0,
	};
	if (ipam_encode_request(&req, &buf, &len) != 0) {
		free(rc);
		return;
	}
	rc->ns = ns;
	rc->which = which;
	rc->w.data = rc;
	struct kv_op op = {.type = KV_OP_CALL, .call = IPAM_CALL, .value = {buf, len}};
	int rv = store_write(a->store, &rc->w, &op, req_done);
	free(buf);
	if (rv != STORE_OK) {
		agent_log("routes: cannot propose a tunnel address for handle %s: %s", rc->handle,
		          store_strerror(rv));
		ns->req_after[which] = now + REQ_RETRY_MS;
		arm(ns, REQ_RETRY_MS);
		free(rc);
		return;
	}
	ns->req_inflight[which] = true;
}

/* ------------------------------------------------------------------------------------------ */
/* The recompute                                                                               */

static void watch_cb(struct store_watch *w, const struct kv_event *ev, int status);

static void start_watches(struct netsync *ns)
{
	for (int i = 0; i < N_WATCHES; i++) {
		if (ns->watching[i]) {
			continue;
		}
		const char *prefix = i == W_IPAM    ? "ipam/"
		                     : i == W_NODES ? "res/nodes/"
		                                    : ns->weps_prefix;
		ns->watch[i].data = ns;
		struct kv_bytes key = {(const uint8_t *)prefix, strlen(prefix)};
		/* It may have missed changes: what it covers is read again below. */
		if (i == W_WEPS) {
			wl_cache_drop(&ns->wl);
		} else if (i == W_NODES) {
			ns->nodes_ok = false;
		} else {
			ns->ipam_ok = false;
		}
		/* Only future changes: the recompute reads what the watch covers from a view taken
		 * after the watch started, so nothing before it can be missed. */
		if (store_watch_start(ns->a->store, &ns->watch[i], KV_SPACE_DOMAIN, key, true, 0,
		                      watch_cb) == STORE_OK) {
			ns->watching[i] = true;
		}
	}
}

static void recompute_cb(uv_timer_t *t)
{
	struct netsync *ns = t->data;
	struct agent *a = ns->a;
	struct netcalc_state st;
	uint64_t t0 = now_us();
	if (ns->stopping) {
		return;
	}
	start_watches(ns);
	int rv = read_input(ns);
	if (rv == 0) {
		rv = netcalc_compute(&ns->x.in, &st);
		a->netsync_recomputes++;
	}
	if (rv != 0) {
		ns->retry_ms = netsync_retry_after(rv, NULL, ns->retry_ms);
		agent_log("routes: cannot read the state (%s); trying again in %u ms",
		          rv == -ENOMEM ? "out of memory" : "store error", ns->retry_ms);
		arm(ns, ns->retry_ms);
		return;
	}
	for (unsigned i = 0; i < st.n_notes; i++) {
		collect_line(ns, st.notes[i]);
	}
	request_tunnel(ns, REQ_IPIP, &st.req_ipip, 4);
	request_tunnel(ns, REQ_VXLAN4, &st.req_vxlan[0], 4);
	request_tunnel(ns, REQ_VXLAN6, &st.req_vxlan[1], 6);
	bool full = ns->full;
	struct netsync_report rep;
	rv = netsync_kernel_apply(ns->k, &st, full, &rep);
	netcalc_state_free(&st);
	rotate_lines(ns);
	/* What the kernel refused is not asked again by anything else before the refresh (a
	 * transient refusal at start would leave this host without NAT or a route for 90 s);
	 * the problems were logged, once each. */
	ns->retry_ms = netsync_retry_after(rv, &rep, ns->retry_ms);
	if (ns->retry_ms != 0) {
		arm(ns, ns->retry_ms);
	}
	if (rv != 0) {
		agent_log("routes: the kernel did not answer (%s); reading it again in %u ms",
		          strerror(-rv), ns->retry_ms);
		ns->full = true;
		return;
	}
	ns->full = false;
	if (full || rep.routes_added || rep.routes_replaced || rep.routes_deleted ||
	    rep.links_changed || rep.nat_changed) {
		if (full && (rep.routes_added || rep.routes_replaced || rep.routes_deleted ||
		             rep.links_changed || rep.nat_changed)) {
			agent_log(
			    "routes: full resync: %u added, %u replaced, %u deleted, %u device "
			    "changes%s",
			    rep.routes_added, rep.routes_replaced, rep.routes_deleted,
			    rep.links_changed, rep.nat_changed ? ", NAT table loaded" : "");
		}
		a->netsync_syncs++;
		a->netsync_last_sync_us = now_us() - t0;
	}
}

static void refresh_cb(uv_timer_t *t)
{
	struct netsync *ns = t->data;
	ns->full = true;
	ns->nodes_ok = ns->ipam_ok = false; /* the whole state, too, now and then */
	schedule(ns);
}

static const struct ipam_block_info *find_block(const struct input *x, const struct ipam_cidr *c)
{
	for (unsigned i = 0; i < x->in.n_blocks; i++) {
		if (ipam_cidr_equal(&x->blocks[i].cidr, c)) {
			return &x->blocks[i];
		}
	}
	return NULL;
}

static bool is_tunnel_handle(const char *h)
{
	static const char *const pfx[] = {NETCALC_IPIP_HANDLE, NETCALC_VXLAN_HANDLE,
	                                  NETCALC_VXLAN6_HANDLE};
	for (size_t i = 0; i < sizeof pfx / sizeof pfx[0]; i++) {
		if (strncmp(h, pfx[i], strlen(pfx[i])) == 0) {
			return true;
		}
	}
	return false;
}

/*
 * Whether a change under "ipam/" can alter what the calculation reads from IPAM, which then
 * becomes stale. Every assignment and release anywhere in the cluster writes three IPAM keys:
 * the address, its handle and its block's record (which ordinals are taken). Almost always none
 * of them matters for routes: the address lies in its own node's block, which has its route
 * already, and the handle is a container's. Each used to cost every host of the cluster a
 * recompute that read every allocation, about 1 ms per change with 1,000 containers, growing with
 * the cluster. What does matter: an address held outside its node's block (borrowed, or in a
 * block without affinity), before or after the change; a block that appears, goes or changes
 * affinity; the handle of a tunnel address (a node's, so the nodes go stale); and every other
 * IPAM key (pools, configuration, block claims). The local workload's own route comes with its
 * endpoint, whose change is watched separately.
 */
static bool ipam_change_matters(struct netsync *ns, const struct kv_event *ev)
{
	struct input *x = &ns->x;
	struct ipam_change c;
	size_t vlen = ev->type == KV_EV_DELETE ? 0 : ev->kv.value_len;
	if (ipam_change_decode(ev->kv.key, ev->kv.key_len, ev->kv.value, vlen, &c) != 0) {
		ns->ipam_ok = false;
		return true;
	}
	if (c.kind == IPAM_CHANGE_HANDLE) {
		if (!is_tunnel_handle(c.name)) {
			return false;
		}
		ns->nodes_ok = false;
		return true;
	}
	if (!ns->ipam_ok) {
		return true; /* read in full by the next recompute, which is due */
	}
	switch (c.kind) {
	case IPAM_CHANGE_IP:
		for (unsigned i = 0; i < x->in.n_allocs; i++) {
			if (addr_eq(&x->allocs[i].addr, &c.addr)) {
				ns->ipam_ok = false; /* it was borrowed */
				return true;
			}
		}
		if (!c.has_record) {
			return false;
		}
		break;
	case IPAM_CHANGE_BLOCK:
		if (!c.has_record) {
			ns->ipam_ok = false;
			return true;
		}
		break;
	default:
		ns->ipam_ok = false;
		return true;
	}
	/* An address or a block record: the same affinity as before, and an address held by the
	 * node its block is affine to. */
	const struct ipam_block_info *b = find_block(x, &c.block);
	if (b != NULL && strcmp(b->affinity, c.name) == 0) {
		return false;
	}
	ns->ipam_ok = false;
	return true;
}

static void watch_cb(struct store_watch *w, const struct kv_event *ev, int status)
{
	struct netsync *ns = w->data;
	if (ev == NULL) {
		for (int i = 0; i < N_WATCHES; i++) {
			if (&ns->watch[i] == w) {
				ns->watching[i] = false; /* restarted by the next recompute */
			}
		}
		if (status == STORE_ESHUTDOWN) {
			return;
		}
		ns->nodes_ok = ns->ipam_ok = false;
	} else if (w == &ns->watch[W_WEPS]) {
		wl_cache_event(&ns->wl, ev, strlen(ns->weps_prefix));
	} else if (w == &ns->watch[W_NODES]) {
		ns->nodes_ok = false;
	} else if (!ipam_change_matters(ns, ev)) {
		return;
	}
	schedule_change(ns);
}

int netsync_start(struct agent *a)
{
	char err[256];
	struct netsync *ns = calloc(1, sizeof *ns);
	if (ns == NULL) {
		return -ENOMEM;
	}
	ns->a = a;
	if (resources_store_key(POLICY_KIND_WORKLOADENDPOINT, "", ns->weps_prefix,
	                        sizeof ns->weps_prefix) != 0 ||
	    strlen(ns->weps_prefix) + strlen(a->name) + 2 > sizeof ns->weps_prefix) {
		free(ns);
		return -EINVAL;
	}
	strcat(ns->weps_prefix, a->name);
	strcat(ns->weps_prefix, "/");
	if (netsync_kernel_forwarding(err, sizeof err) != 0) {
		agent_log("routes: cannot turn on forwarding: %s", err);
	}
	int rv = netsync_kernel_new(on_gone, collect_line, ns, &ns->k, err, sizeof err);
	if (rv != 0) {
		agent_log("routes: %s", err);
		free(ns);
		return -ENOMEM;
	}
	uv_timer_init(a->loop, &ns->timer);
	uv_timer_init(a->loop, &ns->refresh);
	ns->timer.data = ns->refresh.data = ns;
	ns->full = true;
	uv_timer_start(&ns->refresh, refresh_cb, REFRESH_MS, REFRESH_MS);
	a->netsync = ns;
	schedule(ns);
	return 0;
}

void netsync_kick(struct agent *a)
{
	if (a->netsync != NULL) {
		schedule(a->netsync);
	}
}

void netsync_stop(struct agent *a)
{
	struct netsync *ns = a->netsync;
	if (ns == NULL) {
		return;
	}
	ns->stopping = true;
	for (int i = 0; i < N_WATCHES; i++) {
		if (ns->watching[i]) {
			store_watch_stop(a->store, &ns->watch[i]);
			ns->watching[i] = false;
		}
	}
	uv_close((uv_handle_t *)&ns->timer, NULL);
	uv_close((uv_handle_t *)&ns->refresh, NULL);
}

void netsync_free(struct agent *a)
{
	struct netsync *ns = a->netsync;
	if (ns == NULL) {
		return;
	}
	netsync_kernel_free(ns->k);
	wl_cache_drop(&ns->wl);
	input_free(&ns->x);
	free_lines(ns->logged, ns->n_logged);
	free_lines(ns->cur, ns->n_cur);
	free(ns);
	a->netsync = NULL;
}
