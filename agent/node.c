/*
 * This host's `node` resource: the addresses other hosts route this host's blocks through.
 *
 * Calico's node resource carries spec.bgp.ipv4Address / ipv6Address as "address/prefix"; the
 * prefix tells the other hosts which subnet this one is on, which decides direct routing against
 * encapsulation for cross-subnet pools (calico-behaviour.md 5.9). Tabby fills them in itself:
 * --node-ip / --node-ip6 when given, otherwise the IPv4 address of --peer-address (the address
 * raft already reaches this host on) with its interface's prefix, and the first global IPv6
 * address of that same interface. The addresses are read through libnl.
 *
 * The resource is written with RES_CALL, merged into whatever is stored (an operator's labels on
 * the node stay), under a compare-and-swap on the stored form, so an operator's concurrent edit
 * is never overwritten; a refused or failed write is tried again a second later. Once written,
 * it is checked again every minute, so a changed host address reaches the cluster.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_addr.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/internal.h"
#include "agent/resources.h"
#include "ipam/ipam.h"
#include "policy/policy.h"

#define RETRY_MS   1000
#define RECHECK_MS 60000

struct node_pub {
	struct agent *a;
	uv_timer_t timer;
	struct store_write w;
	bool inflight;
	bool logged_none;
	char last[256]; /* the addresses last written, "v4 v6" */
};

/* "ADDR/PREFIX" of family in the canonical form the node resource's normalizer keeps (so a
 * published address compares equal to the stored one), or false. */
bool agent_node_ip_canonical(const char *s, int family, char *out, size_t len)
{
	char buf[INET6_ADDRSTRLEN + 8];
	struct ipam_addr a;
	const char *slash = strchr(s, '/');
	if (slash == NULL || (size_t)(slash - s) >= sizeof buf || slash[1] == '\0' ||
	    strlen(slash + 1) > 3 || strspn(slash + 1, "0123456789") != strlen(slash + 1) ||
	    (slash[1] == '0' && slash[2] != '\0')) {
		return false;
	}
	memcpy(buf, s, (size_t)(slash - s));
	buf[slash - s] = 0;
	long p = strtol(slash + 1, NULL, 10);
	if (!ipam_addr_parse(buf, &a) || a.family != (family == AF_INET ? 4 : 6) ||
	    p > (family == AF_INET ? 32 : 128)) {
		return false;
	}
	char text[IPAM_ADDR_STRLEN];
	int n = snprintf(out, len, "%s/%ld", ipam_addr_format(&a, text), p);
	return n > 0 && (size_t)n < len;
}

/* The host part of "IP:PORT" (IPv4 only: raft peers here are IPv4). */
static bool peer_ip(const char *peer, struct in_addr *out)
{
	char buf[64];
	const char *colon = strrchr(peer, ':');
	if (colon == NULL || (size_t)(colon - peer) >= sizeof buf) {
		return false;
	}
	memcpy(buf, peer, (size_t)(colon - peer));
	buf[colon - peer] = 0;
	return inet_pton(AF_INET, buf, out) == 1;
}

/* Finds the addresses to publish through the kernel's address list. */
static void detect(struct agent *a, char *v4, size_t l4, char *v6, size_t l6)
{
	struct nl_sock *sk = NULL;
	struct nl_cache *cache = NULL;
	struct in_addr want;
	int ifindex = 0;
	v4[0] = v6[0] = 0;
	if (a->node_ip4 != NULL) {
		snprintf(v4, l4, "%s", a->node_ip4);
	}
	if (a->node_ip6 != NULL) {
		snprintf(v6, l6, "%s", a->node_ip6);
	}
	if (v4[0] != 0 && v6[0] != 0) {
		return;
	}
	if (!peer_ip(a->peer_address, &want) || (ntohl(want.s_addr) >> 24) == 127 ||
	    want.s_addr == 0) {
		return; /* a one-host cluster on loopback: nothing to route to */
	}
	if ((sk = nl_socket_alloc()) == NULL || nl_connect(sk, NETLINK_ROUTE) < 0 ||
	    rtnl_addr_alloc_cache(sk, &cache) < 0) {
		goto out;
	}
	/* First the interface holding the peer address, then its IPv6. */
	for (struct nl_object *o = nl_cache_get_first(cache); o != NULL; o = nl_cache_get_next(o)) {
		struct rtnl_addr *ad = (struct rtnl_addr *)o;
		struct nl_addr *local = rtnl_addr_get_local(ad);
		if (rtnl_addr_get_family(ad) != AF_INET || local == NULL ||
		    nl_addr_get_len(local) != 4 ||
		    memcmp(nl_addr_get_binary_addr(local), &want, 4) != 0) {
			continue;
		}
		ifindex = rtnl_addr_get_ifindex(ad);
		if (v4[0] == 0) {
			char buf[INET_ADDRSTRLEN];
			inet_ntop(AF_INET, &want, buf, sizeof buf);
			snprintf(v4, l4, "%s/%d", buf, rtnl_addr_get_prefixlen(ad));
		}
		break;
	}
	for (struct nl_object *o = nl_cache_get_first(cache);
	     o != NULL && v6[0] == 0 && ifindex > 0; o = nl_cache_get_next(o)) {
		struct rtnl_addr *ad = (struct rtnl_addr *)o;
		struct nl_addr *local = rtnl_addr_get_local(ad);
		/* a stable address: not a privacy one that rotates, nor one DAD has not
		 * confirmed */
		unsigned bad =
		    IFA_F_TEMPORARY | IFA_F_DEPRECATED | IFA_F_TENTATIVE | IFA_F_DADFAILED;
		if (rtnl_addr_get_family(ad) != AF_INET6 || rtnl_addr_get_ifindex(ad) != ifindex ||
		    local == NULL || rtnl_addr_get_scope(ad) != RT_SCOPE_UNIVERSE ||
		    (rtnl_addr_get_flags(ad) & bad) != 0) {
			continue;
		}
		char buf[INET6_ADDRSTRLEN];
		inet_ntop(AF_INET6, nl_addr_get_binary_addr(local), buf, sizeof buf);
		snprintf(v6, l6, "%s/%d", buf, rtnl_addr_get_prefixlen(ad));
	}
out:
	if (cache != NULL) {
		nl_cache_free(cache);
	}
	nl_socket_free(sk);
}

static void node_tick(uv_timer_t *t);

static void schedule(struct node_pub *np, uint64_t ms)
{
	uv_timer_start(&np->timer, node_tick, ms, 0);
}

static void written(struct store_write *w, int status, const struct kv_result *r)
{
	struct node_pub *np = w->data;
	np->inflight = false;
	if (np->a->stopping) {
		return;
	}
	if (status != STORE_OK) {
		np->last[0] = 0;
		schedule(np, RETRY_MS);
		return;
	}
	if (r->status != KV_R_OK) {
		/* Refused: an operator's edit won the compare-and-swap (try again at once, from
		 * what is stored now), or the resource itself is refused (say why, and back off).
		 */
		json_t *rep =
		    r->reply ? json_loadb((const char *)r->reply, r->reply_len, 0, NULL) : NULL;
		const char *code = json_string_value(json_object_get(rep, "error"));
		bool cas = code != NULL && strcmp(code, "conflict") == 0;
		if (!cas) {
			agent_log("node %s: the node resource was refused: %s", np->a->name,
			          json_string_value(json_object_get(rep, "message"))
			              ? json_string_value(json_object_get(rep, "message"))
			              : "no reason given");
		}
		json_decref(rep);
		schedule(np, cas ? RETRY_MS : RECHECK_MS);
		return;
	}
	schedule(np, RECHECK_MS);
}

static void node_tick(uv_timer_t *t)
{
	struct node_pub *np = t->data;
	struct agent *a = np->a;
	char v4[128], v6[128], now[256];
	struct kv_tx *tx;
	json_t *cur = NULL, *next = NULL, *cmd = NULL;
	char *text = NULL;
	if (np->inflight || a->stopping) {
		return;
	}
	detect(a, v4, sizeof v4, v6, sizeof v6);
	if (v4[0] == 0 && v6[0] == 0) {
		if (!np->logged_none) {
			agent_log(
			    "node %s: no address to publish (peer address %s is loopback or on no "
			    "interface; --node-ip sets one): other hosts will not route to this "
			    "host's containers",
			    a->name, a->peer_address);
			np->logged_none = true;
		}
		schedule(np, RECHECK_MS);
		return;
	}
	snprintf(now, sizeof now, "%s %s", v4, v6);
	if (store_view_begin(a->store, &tx) != STORE_OK) {
		schedule(np, RETRY_MS);
		return;
	}
	int rv = resources_get(tx, POLICY_KIND_NODE, a->name, &cur);
	store_view_end(tx);
	if (rv != 0 && rv != -ENOENT) {
		schedule(np, RETRY_MS);
		return;
	}
	next = cur != NULL ? json_deep_copy(cur)
	                   : json_pack("{s:s, s:s, s:{s:s}, s:{}}", "apiVersion", "v1", "kind",
	                               "node", "metadata", "name", a->name, "spec");
	if (next == NULL) {
		goto retry;
	}
	json_t *spec = json_object_get(next, "spec");
	json_t *bgp = json_object_get(spec, "bgp");
	if (bgp == NULL) {
		bgp = json_object();
		json_object_set_new(spec, "bgp", bgp);
	}
	if (v4[0] != 0) {
		json_object_set_new(bgp, "ipv4Address", json_string(v4));
	} else {
		json_object_del(bgp, "ipv4Address");
	}
	if (v6[0] != 0) {
		json_object_set_new(bgp, "ipv6Address", json_string(v6));
	} else {
		json_object_del(bgp, "ipv6Address");
	}
	if (cur != NULL && json_equal(cur, next)) {
		snprintf(np->last, sizeof np->last, "%s", now);
		json_decref(cur);
		json_decref(next);
		schedule(np, RECHECK_MS);
		return;
	}
	cmd = json_pack("{s:s, s:[O], s:[O]}", "op", "apply", "resources", next, "expect",
	                cur != NULL ? cur : json_null());
	if (cmd == NULL || (text = json_dumps(cmd, JSON_COMPACT)) == NULL) {
		goto retry;
	}
	struct kv_op op = {
	    .type = KV_OP_CALL, .call = RES_CALL, .value = {(const uint8_t *)text, strlen(text)}};
	np->w.data = np;
	if (store_write(a->store, &np->w, &op, written) != STORE_OK) {
		goto retry;
	}
	np->inflight = true;
	if (strcmp(np->last, now) != 0) {
		agent_log("node %s: publishing addresses %s%s%s", a->name, v4,
		          v4[0] && v6[0] ? " " : "", v6);
		snprintf(np->last, sizeof np->last, "%s", now);
	}
	free(text);
	json_decref(cmd);
	json_decref(cur);
	json_decref(next);
	return;
retry:
	free(text);
	json_decref(cmd);
	json_decref(cur);
	json_decref(next);
	schedule(np, RETRY_MS);
}

int node_publish_start(struct agent *a)
{
	struct node_pub *np = calloc(1, sizeof *np);
	if (np == NULL) {
		return -ENOMEM;
	}
	np->a = a;
	uv_timer_init(a->loop, &np->timer);
	np->timer.data = np;
	a->nodepub = np;
	uv_timer_start(&np->timer, node_tick, 200, 0);
	return 0;
}

void node_publish_stop(struct agent *a)
{
	if (a->nodepub != NULL) {
		uv_close((uv_handle_t *)&a->nodepub->timer, NULL);
	}
}

void node_publish_free(struct agent *a)
{
	free(a->nodepub);
	a->nodepub = NULL;
}
