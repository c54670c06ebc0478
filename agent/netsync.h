/*
 * Private to netsync.c and its kernel test: the kernel applier of the host dataplane outside
 * policy. It makes the kernel of the calling thread's network namespace hold a desired state from
 * netcalc_compute(): routes with protocol TABBY_RTPROT in the main table, the IP-in-IP and VXLAN
 * devices with their addresses, FDB and neighbour entries, and the nftables table
 * NETSYNC_NAT_TABLE. Everything goes through libnl-route (one netlink socket, opened by
 * netsync_kernel_new()) and libnftables JSON (agent/nft.h).
 *
 * It never deletes or changes a route whose protocol is not TABBY_RTPROT: where such a route
 * holds a destination it wants, it leaves it and reports the problem. Not thread-safe: one thread
 * at a time (the agent uses it on its loop thread).
 */
#ifndef TABBY_AGENT_NETSYNC_H
#define TABBY_AGENT_NETSYNC_H

#include <stdbool.h>
#include <stddef.h>

#include "agent/netcalc.h"

#define NETSYNC_NAT_TABLE "tabby-nat"

struct netsync_kernel;

/* Called for each local workload address whose route the applier removed or turned into
 * another kind of route (the endpoint is gone): the caller flushes its conntrack entries. */
typedef void (*netsync_gone_fn)(void *arg, const struct ipam_addr *addr);
/* Called with one line per thing the applier could not do (a route the kernel refused, a
 * device it cannot create, a foreign route in the way). */
typedef void (*netsync_problem_fn)(void *arg, const char *line);

/* A new applier: a libnl-route socket and a libnftables context in the calling thread's network
 * namespace. Returns 0, -ENOMEM, or a negative errno with one line in err. */
int netsync_kernel_new(netsync_gone_fn gone, netsync_problem_fn problem, void *arg,
                       struct netsync_kernel **out, char *err, size_t errlen);
/* Closes the socket and frees the applier (NULL: no-op). The kernel keeps what was applied. */
void netsync_kernel_free(struct netsync_kernel *k);

/* What one apply did. */
struct netsync_report {
	unsigned routes_added, routes_replaced, routes_deleted, routes_failed;
	unsigned
	    links_changed; /* devices created, changed or deleted, addresses, FDB, neighbours */
	bool nat_changed;
};

/*
 * Make the kernel hold want. full: read what the kernel holds (our routes, our devices, their
 * entries, the NAT table) and fix every difference; otherwise compare want with what the last
 * apply left and change only that (but the routes are read in full when this apply created or
 * deleted a tunnel device, which takes its routes with it). Routes equal to the wanted ones are
 * never touched, and a wrong route is replaced in place (never deleted first), so traffic that uses
 * it sees no gap. Local workload routes whose interface does not exist (yet) are skipped, silently.
 * Returns 0 when the kernel answered (individual refusals are problems, and are tried again by the
 * next apply), or a negative errno when the netlink socket itself failed (then the next apply
 * should be full); rep (may be NULL) counts what changed.
 */
int netsync_kernel_apply(struct netsync_kernel *k, const struct netcalc_state *want, bool full,
                         struct netsync_report *rep);

/* net.ipv4.ip_forward=1 and net.ipv6.conf.all.forwarding=1 (this host routes between
 * containers). Returns 0 or a negative errno with one line in err; a host without IPv6 is not an
 * error. */
int netsync_kernel_forwarding(char *err, size_t errlen);

#endif
