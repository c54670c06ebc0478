/*
 * Private to the agent: wiring one container interface into this host, as Calico's CNI plugin
 * does (calico-behaviour.md 1.5, DESIGN.md section 5), through libnl.
 *
 * Every function here blocks (netlink round trips, namespace switches) and is meant to run on a
 * libuv worker thread, never on the loop thread. Each call opens its own netlink sockets and
 * closes them before it returns, so calls may run on several threads at once for different
 * containers. Work inside a container's namespace is done by a short-lived thread that entered
 * that namespace (setns) and opened its own netlink socket there; the calling thread never
 * changes namespace.
 *
 * Everything Tabby creates is recognisably its own: the host end of every veth carries the
 * interface alias WIRE_ALIAS_PREFIX "<container>/<ifname>", and every route carries the protocol
 * number TABBY_RTPROT. Nothing else is ever deleted.
 */
#ifndef TABBY_AGENT_WIRE_H
#define TABBY_AGENT_WIRE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ipam/ipam.h"

/* The protocol number of every route Tabby installs (rtm_protocol; unassigned in
 * /etc/iproute2/rt_protos). A restarted agent deletes routes with this protocol that it does not
 * want, and never touches any other route. */
#define TABBY_RTPROT 116

/* The alias (IFLA_IFALIAS) of the host end of every veth Tabby creates. */
#define WIRE_ALIAS_PREFIX "tabby:"
/* The kernel's longest alias (IFALIASZ - 1): room for the prefix, a container id of 128 bytes (an
 * endpoint's longest workload name), '/' and an interface name. */
#define WIRE_ALIAS_MAX 255

/* The container's default gateway: never configured anywhere, answered by proxy ARP. */
#define WIRE_GATEWAY4 "169.254.1.1"

/* The fixed MAC of every host end. */
#define WIRE_HOST_MAC "ee:ee:ee:ee:ee:ee"

#define WIRE_ADDRS_MAX 8

struct wire_spec {
	const char *netns;       /* path of the container's network namespace */
	const char *ifname;      /* container end name (CNI_IFNAME), 1..15 bytes */
	const char *host_ifname; /* host end name, 1..15 bytes */
	const char *alias;       /* host end alias, WIRE_ALIAS_PREFIX "<container>/<ifname>" */
	uint8_t mac[6];          /* the container end's MAC */
	unsigned mtu;            /* 0: 1500 */
	struct ipam_addr addrs[WIRE_ADDRS_MAX]; /* the container's addresses (/32, /128) */
	unsigned n_addrs;
	bool allow_ip_forwarding; /* net.ipv4.ip_forward / ipv6 forwarding inside the container */
};

/*
 * Wire the container, converging from whatever is there: a missing or half-built pair (host end
 * without its peer in the container, a container interface with the name but not our peer, a
 * stale host interface with the host end's name) is removed and built again; a complete pair is
 * kept and its settings (MACs, MTU, up, addresses, routes, sysctls) are made right without
 * recreating it, so a repeated ADD never interrupts a running container.
 *
 * Container side: veth end named ifname with mac, the addresses as /32 and /128, IPv4 route
 * 169.254.1.1/32 scope link and default via 169.254.1.1; IPv6 enabled, default via the host end's
 * link-local address; ip forwarding as allow_ip_forwarding says. Host side: host_ifname with MAC
 * ee:ee:ee:ee:ee:ee, the alias, proxy_arp=1, neigh proxy_delay=0, forwarding=1, route_localnet=1,
 * rp_filter=1 (IPv6: proxy_ndp=1, forwarding=1, accept_ra=0), up, and a route
 * "<addr>/32 dev host_ifname scope link proto TABBY_RTPROT" per address; a route for the same
 * destination through any other device is replaced (the state machine gave this container the
 * address, so the other route is stale).
 *
 * Returns 0, or a negative errno with one line in err naming the step and the object that failed
 * (for example "cannot open network namespace /var/run/netns/x: No such file or directory"). On
 * failure whatever this call created is left in place for wire_del() to remove.
 */
int wire_add(const struct wire_spec *s, char *err, size_t errlen);

struct nl_sock;

/* What wire_prepare() hands to wire_finish(). Owned by the caller: wire_finish() or
 * wire_prepared_release() frees what it holds. A zeroed one holds nothing. */
struct wire_prepared {
	struct nl_sock *csk, *hsk; /* route sockets in the container's namespace and the host's */
	int c_ifindex, h_ifindex;  /* the two ends */
	bool has4, has6;           /* the families the pair was prepared for */
	bool created;              /* wire_prepare() made the pair (even if it failed later) */
};

/*
 * The part of wire_add() that does not depend on the container's addresses, for an interface
 * that does not exist yet, so that it can run while the addresses are still being decided: the
 * pair, both ends' settings and sysctls, up, the container's gateway and default routes (v4,
 * v6: the families the addresses will have). s->n_addrs is ignored. Touches nothing and fails
 * with -EEXIST when the container already has an interface ifname or the host one named
 * host_ifname. On success out holds what wire_finish() needs; out->created says whether the pair
 * was made, also on failure (then it is left in place, for wire_add() to converge or wire_del()
 * to remove). Returns 0 or a negative errno with one line in err.
 */
int wire_prepare(const struct wire_spec *s, bool v4, bool v6, struct wire_prepared *out, char *err,
                 size_t errlen);

/*
 * wire_add(s) after wire_prepare() succeeded with the same spec but its addresses: only the
 * addresses, their source rules and their host routes are added, through p's sockets, with no
 * namespace switch and no looking at what exists. If p holds nothing, this is wire_add(s); if s's
 * addresses are not of the families the pair was prepared for, the pair is deleted first (an
 * IPv4-only pair never gets the IPv6 link-local address the container's route needs). p is
 * released in every case.
 * Returns what wire_add() does.
 */
int wire_finish(const struct wire_spec *s, struct wire_prepared *p, char *err, size_t errlen);

/* Frees what p holds (the interfaces stay) and zeroes it. */
void wire_prepared_release(struct wire_prepared *p);

/*
 * Verify the wiring without changing anything: both ends exist and are peers, up, with the MACs,
 * MTU, addresses, container routes and host routes wire_add() sets. Returns 0, or -ENOENT /
 * -EINVAL (or another negative errno for a failure to look) with one line in err naming the first
 * difference ("eth0 in /var/run/netns/x has no address 10.1.0.5/32").
 */
int wire_check(const struct wire_spec *s, char *err, size_t errlen);

/*
 * Remove the wiring: the host end host_ifname (which removes its peer and the host routes
 * through it; NULL when it is not known), and, when netns is not NULL and still exists, the
 * interface ifname inside it if it is a veth. Missing namespace, interfaces and routes are not
 * errors. host_ifname is deleted only if its alias is alias (the one wire_add() gave it, of this
 * container and interface), or it has no alias and is a veth whose peer is gone. A host end name
 * is free for another container once the record holding it is deleted, which happens before this
 * call: by then the name may be another container's new interface, and that one carries another
 * alias. Both ends are looked up before anything is deleted, and deleted by index: the kernel
 * frees the names (and announces the removal) about 20 ms before the delete returns, and an ADD of
 * the same container that comes meanwhile makes new interfaces with the same names and alias,
 * which this call never touches. identified (may be NULL) is set, from this thread, once both
 * ends are known, so that a caller acting on the announcement can tell its own removal from an
 * earlier one. Returns 0 or a negative errno with one line in err.
 */
int wire_del(const char *netns, const char *ifname, const char *host_ifname, const char *alias,
             atomic_bool *identified, char *err, size_t errlen);

/* One host end found by wire_list(). */
struct wire_link {
	char name[16];
	char alias[WIRE_ALIAS_MAX + 1]; /* after WIRE_ALIAS_PREFIX: "<container>/<ifname>" */
	int ifindex;
};

/* Every link of this host's namespace whose alias starts with WIRE_ALIAS_PREFIX (*out malloc()ed,
 * freed by the caller). Used at start to remove host ends no endpoint wants any more. */
int wire_list(struct wire_link **out, unsigned *n, char *err, size_t errlen);

/* Delete the conntrack entries (both families' tables, any zone) whose original source or
 * destination is one of the n addresses addrs, so a recycled address does not inherit the flows of
 * the container that had it (calico-behaviour.md 5.5). The kernel does the filtering where it can
 * (a flush with CTA_FILTER, two requests per address, about 0.5 ms each here); a kernel that
 * refuses a filtered flush gets one listing of the whole table for all n, about 10 ms of kernel
 * time even when the table is empty. listing forces the listing (for tests); *listed (may be
 * NULL) says whether the table was listed. Returns 0 or a negative errno with one line in err
 * (naming the address whose entries could not be deleted). */
int wire_flush_conntrack(const struct ipam_addr *addrs, unsigned n, bool listing, bool *listed,
                         char *err, size_t errlen);

#endif
