/*
 * Private to the agent: the control plane guard's pure half (guard.c).
 *
 * The peer port (raft) and the API port of every member take requests without authentication
 * (docs/operations.md), and the workloads Tabby wires have routable addresses: a container could
 * otherwise connect to its own host's API, or to any other member's, and rewrite the policy that
 * is meant to confine it. So every agent keeps a small nftables table, inet tabby-guard, that
 * refuses TCP from its workload interfaces to every member's peer and API address and port,
 * whatever the policy says. It answers with a TCP reset, so a refused container sees "connection
 * refused" at once rather than a connect that hangs. The rules sit in the input and forward
 * hooks, after destination NAT, so an address translated to a member's port is refused too.
 *
 * The agent glue (guard_sync.c, guard_start() in internal.h) reads the member records, runs these
 * functions and loads the result as one transaction; --workloads-reach-agents turns the guard off.
 */
#ifndef TABBY_AGENT_GUARD_H
#define TABBY_AGENT_GUARD_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "ipam/ipam.h"

#define GUARD_TABLE "tabby-guard"

/* One member's address and TCP port. */
struct guard_port {
	struct ipam_addr addr;
	uint16_t port;
};

/* Parse a member record's address, "IPv4:PORT" or "[IPv6]:PORT", into *out. False for anything
 * else (no port, port 0, a name instead of an address, trailing text). */
bool guard_port_parse(const char *s, struct guard_port *out);

/* Sort v (family, address, port) and drop repeats in place; returns how many are left. */
unsigned guard_ports_normalise(struct guard_port *v, unsigned n);

/*
 * The libnftables JSON document that replaces table inet GUARD_TABLE (created when missing) with
 * one that refuses TCP arriving on an interface named iface_prefix* (a workload's host end) for
 * each of v[0..n), with a reset, in the input and forward hooks. One transaction: there is never
 * a moment without the old table or the new one. NULL when out of memory.
 */
json_t *guard_commands(const struct guard_port *v, unsigned n, const char *iface_prefix);

#endif
