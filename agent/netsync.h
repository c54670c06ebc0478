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
	unsigned routes_added, routes_replaced, routes_deleted;
	/* Routes the kernel refused to add or delete, held by a foreign route, or through a device
	 * that is not there. */
	unsigned routes_failed;
	/* Devices created, changed or deleted, addresses, FDB and neighbour entries. */
	unsigned links_changed;
	unsigned links_failed; /* the same, refused by the kernel */
	bool nat_changed;
	bool nat_failed; /* the NAT table could not be loaded or deleted */
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

/*
 * When to apply again after an apply that returned rv and reported rep (NULL when rv is not 0),
 * in ms: 0 when it left nothing undone (nothing to do before the next change or refresh);
 * otherwise 1 s after a complete apply (prev_ms, what the previous call returned, is 0) and
 * twice prev_ms after another incomplete one, up to 30 s, so that a refusal that lasts costs a try
 * every 30 s rather than a busy loop. Every failure counts, socket or not: an incremental apply
 * retries what the kernel refused, and nothing else would until the 90 s refresh.
 */
unsigned netsync_retry_after(int rv, const struct netsync_report *rep, unsigned prev_ms);

/* net.ipv4.ip_forward=1 and net.ipv6.conf.all.forwarding=1 (this host routes between
 * containers). Returns 0 or a negative errno with one line in err; a host without IPv6 is not an
 * error. */
int netsync_kernel_forwarding(char *err, size_t errlen);

#endif
