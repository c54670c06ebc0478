/*
 * The control plane guard's pure half (guard.h says what and why): members' addresses parsed
 * and normalised, and the table built. No store, no kernel: guard_sync.c runs it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/guard.h"
#include "agent/nft.h"

static bool parse_port(const char *s, uint16_t *out)
{
	unsigned v = 0;
	if (*s == 0 || strlen(s) > 5) {
		return false;
	}
	for (; *s; s++) {
		if (*s < '0' || *s > '9') {
			return false;
		}
		v = v * 10 + (unsigned)(*s - '0');
	}
	if (v == 0 || v > 65535) {
		return false;
	}
	*out = (uint16_t)v;
	return true;
}

bool guard_port_parse(const char *s, struct guard_port *out)
{
	char host[IPAM_ADDR_STRLEN + 2];
	const char *colon;
	size_t hl;
	struct guard_port g;

	if (s == NULL) {
		return false;
	}
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL || close[1] != ':') {
			return false;
		}
		hl = (size_t)(close - s - 1);
		if (hl == 0 || hl >= sizeof host) {
			return false;
		}
		memcpy(host, s + 1, hl);
		host[hl] = 0;
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL) {
			return false;
		}
		hl = (size_t)(colon - s);
		if (hl == 0 || hl >= sizeof host) {
			return false;
		}
		memcpy(host, s, hl);
		host[hl] = 0;
	}
	if (!ipam_addr_parse(host, &g.addr) || !parse_port(colon + 1, &g.port)) {
		return false;
	}
	/* "a:b::1:80" parses as an IPv6 address before its last ':'; a bare IPv6 address is not
	 * how a member's address is written (agent_address_ok() wants brackets), so refuse it
	 * rather than guess where the address ends. */
	if (s[0] != '[' && g.addr.family != 4) {
		return false;
	}
	/* An IPv4-mapped IPv6 address ("[::ffff:10.0.0.1]:7791") listens for IPv4: the packets a
	 * container sends it are IPv4 ones. */
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (g.addr.family == 6 && memcmp(g.addr.b, mapped, 12) == 0) {
		memmove(g.addr.b, g.addr.b + 12, 4);
		memset(g.addr.b + 4, 0, 12);
		g.addr.family = 4;
	}
	*out = g;
	return true;
}

static int port_cmp(const void *pa, const void *pb)
{
	const struct guard_port *a = pa, *b = pb;
	if (a->addr.family != b->addr.family) {
		return a->addr.family < b->addr.family ? -1 : 1;
	}
	int d = memcmp(a->addr.b, b->addr.b, a->addr.family == 4 ? 4 : 16);
	if (d != 0) {
		return d;
	}
	return a->port < b->port ? -1 : a->port > b->port;
}

unsigned guard_ports_normalise(struct guard_port *v, unsigned n)
{
	if (n == 0) {
		return 0;
	}
	qsort(v, n, sizeof *v, port_cmp);
	unsigned k = 1;
	for (unsigned i = 1; i < n; i++) {
		if (port_cmp(&v[k - 1], &v[i]) != 0) {
			v[k++] = v[i];
		}
	}
	return k;
}

static json_t *ports_set(const char *name, int family, const struct guard_port *v, unsigned n)
{
	json_t *elems = json_array();
	for (unsigned i = 0; elems != NULL && i < n; i++) {
		char text[IPAM_ADDR_STRLEN];
		if (v[i].addr.family == family &&
		    json_array_append_new(elems, json_pack("{s:[s,i]}", "concat",
		                                           ipam_addr_format(&v[i].addr, text),
		                                           (int)v[i].port)) != 0) {
			json_decref(elems);
			elems = NULL;
		}
	}
	return agent_nft_add_set(json_pack("{s:s,s:s,s:s,s:[s,s]}", "family", "inet", "table",
	                                   GUARD_TABLE, "name", name, "type",
	                                   family == 4 ? "ipv4_addr" : "ipv6_addr", "inet_service"),
	                         elems);
}

/* iifname "PREFIX*" ip[6] daddr . tcp dport @set reject with tcp reset */
static json_t *refuse_rule(const char *chain, const char *wild, int family, const char *set)
{
	return json_pack("{s:{s:{s:s,s:s,s:s,s:[{s:{s:s,s:{s:{s:s}},s:s}},"
	                 "{s:{s:s,s:{s:[{s:{s:s,s:s}},{s:{s:s,s:s}}]},s:s}},{s:{s:s}}]}}}",
	                 "add", "rule", "family", "inet", "table", GUARD_TABLE, "chain", chain,
	                 "expr", "match", "op", "==", "left", "meta", "key", "iifname", "right",
	                 wild, "match", "op", "==", "left", "concat", "payload", "protocol",
	                 family == 4 ? "ip" : "ip6", "field", "daddr", "payload", "protocol", "tcp",
	                 "field", "dport", "right", set, "reject", "type", "tcp reset");
}

json_t *guard_commands(const struct guard_port *v, unsigned n, const char *iface_prefix)
{
	char wild[64];
	snprintf(wild, sizeof wild, "%s*", iface_prefix);
	json_t *table = json_pack("{s:s,s:s}", "family", "inet", "name", GUARD_TABLE);
	json_t *cmds = json_array();
	json_t *doc = json_pack("{s:o}", "nftables", cmds);
	if (table == NULL || doc == NULL) {
		json_decref(table);
		json_decref(doc);
		return NULL;
	}
	/* add, delete, add: created when missing, then replaced, in one transaction. */
	int bad = json_array_append_new(cmds, json_pack("{s:{s:O}}", "add", "table", table));
	bad |= json_array_append_new(cmds, json_pack("{s:{s:O}}", "delete", "table", table));
	bad |= json_array_append_new(cmds, json_pack("{s:{s:O}}", "add", "table", table));
	bad |= json_array_append_new(cmds, ports_set("agents4", 4, v, n));
	bad |= json_array_append_new(cmds, ports_set("agents6", 6, v, n));
	/* input: to this host's own addresses; forward: to every other host's. Both at
	 * priority -10, ahead of a host firewall's filter chains, which may accept first. */
	static const char *const chains[2] = {"input", "forward"};
	for (int c = 0; c < 2; c++) {
		bad |= json_array_append_new(
		    cmds,
		    json_pack("{s:{s:{s:s,s:s,s:s,s:s,s:s,s:i,s:s}}}", "add", "chain", "family",
		              "inet", "table", GUARD_TABLE, "name", chains[c], "type", "filter",
		              "hook", chains[c], "prio", -10, "policy", "accept"));
		bad |= json_array_append_new(cmds, refuse_rule(chains[c], wild, 4, "@agents4"));
		bad |= json_array_append_new(cmds, refuse_rule(chains[c], wild, 6, "@agents6"));
	}
	json_decref(table);
	if (bad) {
		json_decref(doc);
		return NULL;
	}
	return doc;
}
