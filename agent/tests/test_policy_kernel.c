/*
 * The differential policy test: the compiled ruleset, loaded into a real kernel, against the
 * evaluator. Random profiles, policies and endpoint labels; hundreds of real flows; the fate of
 * every real packet must be the evaluator's verdict.
 *
 * Topology (all network namespaces, named after the pid so parallel runs do not clash):
 *
 *   W0..W7 (workloads)            H ("host", runs the ruleset)           O ("outside")
 *   eth0 10.64.0.1x/32     <-veth->  caliN (proxy ARP, /32 routes)
 *        fd00:64::1x/128             ext0 192.168.77.1/24  <-veth->  eth0 192.168.77.2/24 (no
 *   default via 169.254.1.1 onlink        fd00:77::1/64                endpoint), .3 (a remote host
 *   (IPv6: via fe80::1, the host end)                                  endpoint), 10.65.0.1 (a
 *                                                                      remote workload endpoint)
 *
 * The model holds this host's node (its ext0 addresses), its host endpoint (ext0: matched by
 * selectors, not policed), the eight local workload endpoints, a remote workload and a remote host
 * endpoint living in O, and more remote workloads that carry no traffic but fill the sets.
 *
 * Fate of a flow. The opening packet is really sent: TCP connect (a listener waits in the
 * destination), a UDP datagram, an ICMP echo from a ping socket; all flows of a batch run at once
 * under one poll() with a short deadline, since a denied packet simply vanishes. A flow that got
 * through must also carry its reply (data back over TCP, a UDP answer, the echo reply): the
 * conntrack path. This host only enforces its own endpoints, so the expected fate is the
 * evaluator's verdict restricted to the sides whose endpoint lives on this host (a remote
 * workload's egress or ingress is its own host's business). A flow seen denied but expected
 * allowed is retried alone with a long deadline, so a busy machine cannot fake a denial; a flow
 * seen allowed cannot be faked.
 *
 * Source ports are unique across the run so that no flow inherits a conntrack entry from an
 * earlier one (a policy change does not cut existing flows, by design).
 *
 * Then incremental changes (a policy replaced, one added, some removed, endpoint labels and
 * profiles changed, a remote endpoint removed) go through policy_compiler_note() and
 * policy_compiler_flush() and the small batches are applied; more flows are compared.
 *
 * TABBY_POLICY_SEED=N replays a run; the seed is printed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/nft.h"
#include "agent/tests/shell.h"
#include "policy/policy.h"

#define N_WL         8
#define N_REMOTE     12 /* remote workloads without traffic */
#define N_POLICIES   12
#define N_PROFILES   3
#define BATCH        48
#define HOST_NODE    "kern-host"
#define PEER_NODE    "kern-peer"
#define IFACE_PREFIX "cali"
#define TABLE        "tabby"
#define MAX_DETAILS  4 /* mismatches printed in full per phase */

/* ------------------------------------------------------------------------------------------ */
/* Random numbers: xorshift64*, seeded, so a run replays from its seed                          */

struct rng {
	uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 2685821657736338717ULL;
}

static unsigned rnd(struct rng *r, unsigned n)
{
	return (unsigned)(rng_next(r) % n);
}

static bool chance(struct rng *r, unsigned percent)
{
	return rnd(r, 100) < percent;
}

/* ------------------------------------------------------------------------------------------ */
/* Places: where packets come from and go to                                                   */

enum ns_id { NS_HOST = N_WL, NS_OUT = N_WL + 1, N_NS = N_WL + 2 };

enum place_id { P_HOST = N_WL, P_OUT, P_RHEP, P_RWL, N_PLACES };

struct place {
	char name[16];
	int ns;
	char a4[IPAM_ADDR_STRLEN], a6[IPAM_ADDR_STRLEN];
	bool local_wl; /* a workload endpoint on this host */
};

struct fx {
	struct rng rng;
	uint64_t seed;
	bool v6;
	unsigned timeout_ms;
	char ns_name[N_NS][32];
	bool ns_made[N_NS];
	int ns_fd[N_NS];
	int orig_fd;
	struct place places[N_PLACES];

	struct policy_model *m;
	struct policy_compiler *c;
	struct agent_nft *nft;
	unsigned next_sport;
	unsigned next_policy; /* names of added policies */

	/* totals over the run */
	unsigned flows, allowed, denied, mismatches, reply_failures, retries, asym;
};

static const char *const label_keys[] = {"app", "tier", "env", "team"};
static const char *const label_vals[][3] = {
    {"web", "db", "cache"}, {"front", "back", NULL}, {"prod", "dev", NULL}, {"a", "b", NULL}};
/* Selector keys: the label keys, the profile tags (a tag reads as ""), a key nobody has. */
static const char *const sel_keys[] = {"app", "tier", "env", "team", "t0", "t1", "zone"};
static const uint16_t flow_ports[] = {80, 443, 8080, 1500, 5353};

static unsigned n_vals(unsigned key)
{
	return label_vals[key][2] ? 3 : 2;
}

/* ------------------------------------------------------------------------------------------ */
/* Shell and namespaces                                                                        */

static void enter(const struct fx *fx, int ns)
{
	int fd = ns < 0 ? fx->orig_fd : fx->ns_fd[ns];

	if (setns(fd, CLONE_NEWNET) != 0)
		fail_msg("setns: %s", strerror(errno));
}

static void topology_down(struct fx *fx)
{
	for (int i = 0; i < N_NS; i++) {
		if (fx->ns_fd[i] >= 0)
			close(fx->ns_fd[i]);
		fx->ns_fd[i] = -1;
		if (fx->ns_made[i])
			test_sh("ip netns del %s 2>/dev/null", fx->ns_name[i]);
		fx->ns_made[i] = false;
	}
}

#define SH(...) assert_int_equal(test_sh(__VA_ARGS__), 0)

static void topology_up(struct fx *fx)
{
	const char *H = fx->ns_name[NS_HOST], *O = fx->ns_name[NS_OUT];

	for (int i = 0; i < N_NS; i++) {
		SH("ip netns add %s", fx->ns_name[i]);
		fx->ns_made[i] = true;
		/* No duplicate address detection: addresses are usable at once. Ping sockets for
		 * root. */
		SH("ip netns exec %s sysctl -qw net.ipv6.conf.all.accept_dad=0 "
		   "net.ipv6.conf.default.accept_dad=0 net.ipv4.ping_group_range='0 2147483647'",
		   fx->ns_name[i]);
		SH("ip -n %s link set lo up", fx->ns_name[i]);
	}
	SH("ip netns exec %s sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1", H);

	/* host <-> outside */
	SH("ip -n %s link add ext0 type veth peer name eth0 netns %s", H, O);
	SH("ip -n %s addr add 192.168.77.1/24 dev ext0", H);
	SH("ip -n %s addr add fd00:77::1/64 dev ext0 nodad", H);
	SH("ip -n %s link set ext0 up", H);
	SH("ip -n %s addr add 192.168.77.2/24 dev eth0", O);
	SH("ip -n %s addr add 192.168.77.3/32 dev eth0", O);
	SH("ip -n %s addr add 10.65.0.1/32 dev eth0", O);
	SH("ip -n %s addr add fd00:77::2/64 dev eth0 nodad", O);
	SH("ip -n %s addr add fd00:77::3/128 dev eth0 nodad", O);
	SH("ip -n %s addr add fd00:65::1/128 dev eth0 nodad", O);
	SH("ip -n %s link set eth0 up", O);
	SH("ip -n %s route add 10.64.0.0/24 via 192.168.77.1", O);
	SH("ip -n %s -6 route add fd00:64::/64 via fd00:77::1", O);
	SH("ip -n %s route add 10.65.0.0/24 via 192.168.77.2", H);
	SH("ip -n %s -6 route add fd00:65::/64 via fd00:77::2", H);
	/* A default route elsewhere, as on a real host: proxy ARP answers for 169.254.1.1 on a
	 * workload interface only when the route to it leaves by another interface. */
	SH("ip -n %s route add default via 192.168.77.2", H);

	/* workloads, wired as Calico wires them */
	for (int i = 0; i < N_WL; i++) {
		const char *W = fx->ns_name[i];
		char ifc[32];

		snprintf(ifc, sizeof(ifc), IFACE_PREFIX "k%d", i);
		SH("ip -n %s link add %s type veth peer name eth0 netns %s", H, ifc, W);
		SH("ip netns exec %s sysctl -qw net.ipv4.conf.%s.proxy_arp=1 "
		   "net.ipv4.neigh.%s.proxy_delay=0",
		   H, ifc, ifc);
		SH("ip -n %s -6 addr add fe80::1/64 dev %s nodad", H, ifc);
		SH("ip -n %s link set %s up", H, ifc);
		SH("ip -n %s route add %s/32 dev %s scope link", H, fx->places[i].a4, ifc);
		SH("ip -n %s -6 route add %s/128 dev %s", H, fx->places[i].a6, ifc);
		SH("ip -n %s addr add %s/32 dev eth0", W, fx->places[i].a4);
		SH("ip -n %s -6 addr add %s/128 dev eth0 nodad", W, fx->places[i].a6);
		SH("ip -n %s link set eth0 up", W);
		SH("ip -n %s route add 169.254.1.1 dev eth0 scope link", W);
		SH("ip -n %s route add default via 169.254.1.1 dev eth0 onlink", W);
		SH("ip -n %s -6 route add default via fe80::1 dev eth0", W);
	}
	for (int i = 0; i < N_NS; i++) {
		char path[64];

		snprintf(path, sizeof(path), "/run/netns/%s", fx->ns_name[i]);
		fx->ns_fd[i] = open(path, O_RDONLY | O_CLOEXEC);
		assert_true(fx->ns_fd[i] >= 0);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Random model                                                                                */

static void gen_atom(struct rng *r, char *out, size_t len)
{
	unsigned k = rnd(r, sizeof(sel_keys) / sizeof(sel_keys[0]));
	const char *key = sel_keys[k];
	/* values drawn from the key's own vocabulary when it has one, so comparisons hit */
	const char *v1 = k < 4 ? label_vals[k][rnd(r, n_vals(k))] : (k < 6 ? "" : "z1");
	const char *v2 = k < 4 ? label_vals[k][rnd(r, n_vals(k))] : "x";

	switch (rnd(r, 12)) {
	case 0:
	case 1:
	case 2:
		snprintf(out, len, "%s == '%s'", key, v1);
		break;
	case 3:
	case 4:
		snprintf(out, len, "%s != \"%s\"", key, v1);
		break;
	case 5:
	case 6:
		snprintf(out, len, "%s in {\"%s\", \"%s\"}", key, v1, v2);
		break;
	case 7:
		snprintf(out, len, "%s not in {'%s'}", key, v1);
		break;
	case 8:
	case 9:
	case 10:
		snprintf(out, len, "has(%s)", key);
		break;
	default:
		snprintf(out, len, "all()");
	}
}

static void gen_selector(struct rng *r, int depth, char *out, size_t len)
{
	char a[512], b[512];
	const char *neg = chance(r, 15) ? "!" : "";

	if (depth == 0 || chance(r, 50)) {
		gen_atom(r, a, sizeof(a));
		/* The generator's atoms are short: a selector never fills its buffer. */
		assert_true((size_t)snprintf(out, len, "%s%s", neg, a) < len);
		return;
	}
	gen_selector(r, depth - 1, a, sizeof(a));
	gen_selector(r, depth - 1, b, sizeof(b));
	assert_true((size_t)snprintf(out, len, "%s(%s %s %s)", neg, a, chance(r, 50) ? "&&" : "||",
	                             b) < len);
}

static json_t *gen_labels(struct rng *r, unsigned percent)
{
	json_t *o = json_object();

	for (unsigned k = 0; k < 4; k++)
		if (chance(r, percent))
			json_object_set_new(o, label_keys[k],
			                    json_string(label_vals[k][rnd(r, n_vals(k))]));
	return o;
}

/* CIDRs that rules name: each workload's own, covering ones, the outside's. */
static json_t *gen_cidrs(struct fx *fx, int family)
{
	static const char *const v4[] = {"10.64.0.8/29",    "10.64.0.16/30",   "10.64.0.0/24",
	                                 "192.168.77.0/24", "192.168.77.2/32", "10.65.0.0/16",
	                                 "192.168.77.1/32"};
	static const char *const v6[] = {"fd00:64::8/125", "fd00:64::10/126", "fd00:64::/64",
	                                 "fd00:77::/64",   "fd00:77::2/128",  "fd00:65::/64"};
	struct rng *r = &fx->rng;
	json_t *a = json_array();
	unsigned n = 1 + rnd(r, 2);

	for (unsigned i = 0; i < n; i++) {
		char buf[64];

		if (chance(r, 40)) {
			unsigned w = rnd(r, N_WL);
			snprintf(buf, sizeof(buf), "%s/%d",
			         family == 4 ? fx->places[w].a4 : fx->places[w].a6,
			         family == 4 ? 32 : 128);
		} else if (family == 4) {
			snprintf(buf, sizeof(buf), "%s", v4[rnd(r, sizeof(v4) / sizeof(v4[0]))]);
		} else {
			snprintf(buf, sizeof(buf), "%s", v6[rnd(r, sizeof(v6) / sizeof(v6[0]))]);
		}
		json_array_append_new(a, json_string(buf));
	}
	return a;
}

static json_t *gen_ports(struct rng *r, bool source)
{
	json_t *a = json_array();
	unsigned n = 1 + rnd(r, 2);

	for (unsigned i = 0; i < n; i++) {
		if (source) {
			/* source ports of the flows count up from 20000 */
			static const char *const ranges[] = {"20000:20299", "20300:29999",
			                                     "20100:20700"};
			if (chance(r, 20))
				json_array_append_new(a, json_integer(20000 + rnd(r, 1200)));
			else
				json_array_append_new(a, json_string(ranges[rnd(r, 3)]));
		} else if (chance(r, 65)) {
			json_array_append_new(a, json_integer(flow_ports[rnd(r, 5)]));
		} else {
			static const char *const ranges[] = {"1000:2000", "400:500", "5000:9000"};
			json_array_append_new(a, json_string(ranges[rnd(r, 3)]));
		}
	}
	return a;
}

/* An entity rule; family 0 means the rule names no CIDR. NULL when empty. */
static json_t *gen_entity(struct fx *fx, int family, bool ports_ok, bool source)
{
	struct rng *r = &fx->rng;
	json_t *e = json_object();
	char sel[2048];

	if (chance(r, 25)) {
		gen_selector(r, 2, sel, sizeof(sel));
		json_object_set_new(e, "selector", json_string(sel));
	}
	if (chance(r, 10)) {
		gen_selector(r, 1, sel, sizeof(sel));
		json_object_set_new(e, "notSelector", json_string(sel));
	}
	if (chance(r, 8))
		json_object_set_new(e, "tag", json_string(chance(r, 50) ? "t0" : "t1"));
	if (chance(r, 5))
		json_object_set_new(e, "notTag", json_string(chance(r, 50) ? "t0" : "t1"));
	if (family && chance(r, 35))
		json_object_set_new(e, "nets", gen_cidrs(fx, family));
	if (family && chance(r, 15))
		json_object_set_new(e, "notNets", gen_cidrs(fx, family));
	if (ports_ok && chance(r, source ? 10 : 40))
		json_object_set_new(e, "ports", gen_ports(r, source));
	if (ports_ok && chance(r, 8))
		json_object_set_new(e, "notPorts", gen_ports(r, source));
	if (json_object_size(e) == 0) {
		json_decref(e);
		return NULL;
	}
	return e;
}

static json_t *gen_rule(struct fx *fx, bool profile)
{
	struct rng *r = &fx->rng;
	json_t *rule = json_object();
	unsigned a = rnd(r, 100);
	int family = 0;
	const char *proto = NULL;

	if (profile)
		json_object_set_new(rule, "action",
		                    json_string(a < 55   ? "allow"
		                                : a < 85 ? "deny"
		                                         : "log"));
	else
		json_object_set_new(rule, "action",
		                    json_string(a < 55   ? "allow"
		                                : a < 72 ? "deny"
		                                : a < 84 ? "log"
		                                         : "pass"));
	unsigned f = rnd(r, 100);
	if (f >= 55)
		family = f < 80 || !fx->v6 ? 4 : 6;
	if (family && chance(r, 50))
		json_object_set_new(rule, "ipVersion", json_integer(family));

	unsigned p = rnd(r, 100);
	if (p < 30)
		proto = "tcp";
	else if (p < 50)
		proto = "udp";
	else if (p < 60)
		proto = family == 6 ? "icmpv6" : "icmp";
	if (proto)
		json_object_set_new(rule, "protocol", json_string(proto));
	else if (chance(r, 10))
		json_object_set_new(rule, "notProtocol",
		                    json_string(chance(r, 50) ? "tcp" : "udp"));
	if (proto && !strncmp(proto, "icmp", 4) && chance(r, 35)) {
		bool v6 = proto[4] == 'v';
		json_t *icmp = json_object();
		json_object_set_new(icmp, "type",
		                    json_integer(chance(r, 70) ? (v6 ? 128 : 8) : (v6 ? 129 : 0)));
		if (chance(r, 40))
			json_object_set_new(icmp, "code", json_integer(chance(r, 80) ? 0 : 1));
		json_object_set_new(rule, chance(r, 80) ? "icmp" : "notICMP", icmp);
	}
	bool ports_ok = proto && (!strcmp(proto, "tcp") || !strcmp(proto, "udp"));
	json_t *src = gen_entity(fx, family, ports_ok, true);
	json_t *dst = gen_entity(fx, family, ports_ok, false);
	if (src)
		json_object_set_new(rule, "source", src);
	if (dst)
		json_object_set_new(rule, "destination", dst);
	return rule;
}

static json_t *gen_rules(struct fx *fx, bool profile, unsigned max)
{
	json_t *a = json_array();
	unsigned n = rnd(&fx->rng, max + 1);

	for (unsigned i = 0; i < n; i++)
		json_array_append_new(a, gen_rule(fx, profile));
	return a;
}

static void put(struct fx *fx, json_t *res)
{
	char err[512], key[POLICY_KEY_MAX];
	enum policy_kind kind = policy_resource_key(res, key, sizeof(key));
	int rc = policy_model_put(fx->m, res, err, sizeof(err));

	if (rc != 0) {
		char *text = json_dumps(res, JSON_COMPACT);
		fail_msg("policy_model_put(%s): %d %s", text, rc, err);
	}
	assert_int_not_equal(kind, POLICY_KIND_NONE);
	policy_compiler_note(fx->c, kind, key);
	json_decref(res);
}

/* Optional fields of the normalized form are absent rather than empty. */
static void set_nonempty(json_t *obj, const char *key, json_t *v)
{
	if ((json_is_object(v) && json_object_size(v) == 0) ||
	    (json_is_array(v) && json_array_size(v) == 0))
		json_decref(v);
	else
		json_object_set_new(obj, key, v);
}

static json_t *resource(const char *kind, json_t *metadata, json_t *spec)
{
	return json_pack("{s:s,s:s,s:o,s:o}", "apiVersion", "v1", "kind", kind, "metadata",
	                 metadata, "spec", spec);
}

static void put_policy(struct fx *fx, const char *name)
{
	struct rng *r = &fx->rng;
	static const double orders[] = {10, 20, 30, 5.5};
	json_t *spec = json_object();
	char sel[2048] = "";

	if (chance(r, 75))
		json_object_set_new(spec, "order", json_real(orders[rnd(r, 4)]));
	if (chance(r, 85))
		gen_selector(r, 2, sel, sizeof(sel));
	json_object_set_new(spec, "selector", json_string(sel));
	unsigned t = rnd(r, 3);
	json_t *types = json_array();
	if (t != 1)
		json_array_append_new(types, json_string("ingress"));
	if (t != 0)
		json_array_append_new(types, json_string("egress"));
	json_object_set_new(spec, "types", types);
	json_object_set_new(spec, "ingress", gen_rules(fx, false, 3));
	json_object_set_new(spec, "egress", gen_rules(fx, false, 3));
	json_object_set_new(spec, "doNotTrack", json_false());
	json_object_set_new(spec, "preDNAT", json_false());
	put(fx, resource("policy", json_pack("{s:s}", "name", name), spec));
}

static void put_profile(struct fx *fx, unsigned i)
{
	struct rng *r = &fx->rng;
	char name[32];
	json_t *md, *tags = json_array();

	snprintf(name, sizeof(name), "prof-%u", i);
	md = json_pack("{s:s}", "name", name);
	set_nonempty(md, "labels", gen_labels(r, 30));
	if (chance(r, 60))
		json_array_append_new(tags, json_string(chance(r, 50) ? "t0" : "t1"));
	set_nonempty(md, "tags", tags);
	put(fx, resource("profile", md,
	                 json_pack("{s:o,s:o}", "ingress", gen_rules(fx, true, 3), "egress",
	                           gen_rules(fx, true, 3))));
}

static json_t *gen_profile_list(struct rng *r)
{
	json_t *a = json_array();
	unsigned n = rnd(r, 3);

	for (unsigned i = 0; i < n; i++) {
		char name[32];
		/* now and then a profile the model does not hold: it matches nothing */
		if (chance(r, 8))
			snprintf(name, sizeof(name), "prof-missing");
		else
			snprintf(name, sizeof(name), "prof-%u", rnd(r, N_PROFILES));
		json_array_append_new(a, json_string(name));
	}
	return a;
}

/* A workload endpoint with the given labels and profile list (references taken), or random ones
 * where they are NULL. */
static void put_workload_as(struct fx *fx, const char *node, const char *workload,
                            const char *iface, const char *a4, const char *a6, json_t *labels,
                            json_t *profiles)
{
	struct rng *r = &fx->rng;
	char n4[64], n6[64];
	json_t *nets = json_array();

	snprintf(n4, sizeof(n4), "%s/32", a4);
	json_array_append_new(nets, json_string(n4));
	if (a6) {
		snprintf(n6, sizeof(n6), "%s/128", a6);
		json_array_append_new(nets, json_string(n6));
	}
	json_t *md = json_pack("{s:s,s:s,s:s,s:s}", "name", "eth0", "workload", workload,
	                       "orchestrator", "mesos", "node", node);
	set_nonempty(md, "labels", labels ? labels : gen_labels(r, 60));
	json_t *spec = json_pack("{s:o}", "ipNetworks", nets);
	set_nonempty(spec, "profiles", profiles ? profiles : gen_profile_list(r));
	json_object_set_new(spec, "interfaceName", json_string(iface));
	put(fx, resource("workloadEndpoint", md, spec));
}

static void put_workload(struct fx *fx, const char *node, const char *workload, const char *iface,
                         const char *a4, const char *a6)
{
	put_workload_as(fx, node, workload, iface, a4, a6, NULL, NULL);
}

static void put_host_endpoint(struct fx *fx, const char *node, const char *name, const char *iface,
                              const char *a4, const char *a6)
{
	json_t *md = json_pack("{s:s,s:s}", "name", name, "node", node);
	set_nonempty(md, "labels", gen_labels(&fx->rng, 60));
	json_t *spec = json_pack("{s:[s,s]}", "expectedIPs", a4, a6);

	if (iface)
		json_object_set_new(spec, "interfaceName", json_string(iface));
	put(fx, resource("hostEndpoint", md, spec));
}

static void build_model(struct fx *fx)
{
	char name[32], wl[32], ifc[32], a4[32];

	put(fx, resource("node", json_pack("{s:s}", "name", HOST_NODE),
	                 json_pack("{s:{s:s,s:s}}", "bgp", "ipv4Address", "192.168.77.1/24",
	                           "ipv6Address", "fd00:77::1/64")));
	put(fx, resource("node", json_pack("{s:s}", "name", PEER_NODE),
	                 json_pack("{s:{s:s}}", "bgp", "ipv4Address", "192.168.77.2/24")));
	for (unsigned i = 0; i < N_PROFILES; i++)
		put_profile(fx, i);
	for (int i = 0; i < N_WL; i++) {
		snprintf(wl, sizeof(wl), "wl%d", i);
		snprintf(ifc, sizeof(ifc), IFACE_PREFIX "k%d", i);
		put_workload(fx, HOST_NODE, wl, ifc, fx->places[i].a4, fx->places[i].a6);
	}
	put_host_endpoint(fx, HOST_NODE, "ext0", "ext0", "192.168.77.1", "fd00:77::1");
	put_host_endpoint(fx, PEER_NODE, "eth1", NULL, "192.168.77.3", "fd00:77::3");
	put_workload(fx, PEER_NODE, "remote", "calir0", "10.65.0.1", "fd00:65::1");
	for (int i = 0; i < N_REMOTE; i++) {
		snprintf(wl, sizeof(wl), "filler%d", i);
		snprintf(a4, sizeof(a4), "10.66.0.%d", i + 1);
		put_workload(fx, "kern-peer2", wl, "calif0", a4, NULL);
	}
	for (unsigned i = 0; i < N_POLICIES; i++) {
		snprintf(name, sizeof(name), "pol-%02u", i);
		put_policy(fx, name);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Loading into the host namespace                                                             */

static void list_table(struct fx *fx)
{
	fflush(stdout);
	test_sh("ip netns exec %s nft list table inet " TABLE " >&2", fx->ns_name[NS_HOST]);
}

/* Compiles what changed and applies it; answers how many of the commands were something other
 * than set or map elements (-1: there was nothing to apply). */
static int flush_and_apply(struct fx *fx, const char *what)
{
	json_t *cmds = NULL;
	char err[4096];
	struct timespec t0, t1;
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = policy_compiler_flush(fx->c, fx->m, &cmds);
	assert_int_equal(rc, 0);
	if (!cmds) {
		printf("  %s: nothing to apply\n", what);
		return -1;
	}
	int others = 0;
	size_t i;
	json_t *cmd;
	json_array_foreach (json_object_get(cmds, "nftables"), i, cmd) {
		json_t *verb = json_object_get(cmd, "add") ? json_object_get(cmd, "add")
		                                           : json_object_get(cmd, "delete");
		if (!json_object_get(verb, "element"))
			others++;
	}
	enter(fx, NS_HOST);
	if (!fx->nft)
		assert_int_equal(agent_nft_new(&fx->nft), 0);
	rc = agent_nft_apply(fx->nft, cmds, err, sizeof(err));
	enter(fx, -1);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (rc != 0) {
		char *text = json_dumps(cmds, JSON_COMPACT);
		fprintf(stderr, "commands: %.20000s\n", text ? text : "?");
		free(text);
		json_decref(cmds);
		fail_msg("%s: agent_nft_apply: %d %s", what, rc, err);
	}
	printf("  %s: %zu commands compiled and applied in %.2f ms\n", what,
	       json_array_size(json_object_get(cmds, "nftables")),
	       (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	json_decref(cmds);
	return others;
}

/* ------------------------------------------------------------------------------------------ */
/* Flows                                                                                       */

struct flow {
	int src, dst; /* places */
	int family;   /* 4 or 6 */
	int proto;    /* 6, 17, 1 or 58 */
	uint16_t sport, dport;
	/* what happened */
	int lfd, afd, cfd;
	bool connected, arrived, replied, done;
	/* what the evaluator says */
	bool expect;
};

static const char *paddr(const struct fx *fx, int place, int family)
{
	return family == 4 ? fx->places[place].a4 : fx->places[place].a6;
}

static void sockaddr_of(const struct fx *fx, int place, int family, uint16_t port,
                        struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (family == 4) {
		struct sockaddr_in *s = (struct sockaddr_in *)ss;
		s->sin_family = AF_INET;
		s->sin_port = htons(port);
		assert_int_equal(inet_pton(AF_INET, paddr(fx, place, 4), &s->sin_addr), 1);
		*len = sizeof(*s);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
		s->sin6_family = AF_INET6;
		s->sin6_port = htons(port);
		assert_int_equal(inet_pton(AF_INET6, paddr(fx, place, 6), &s->sin6_addr), 1);
		*len = sizeof(*s);
	}
}

static const char *proto_name(int p)
{
	return p == 6 ? "tcp" : p == 17 ? "udp" : p == 1 ? "icmp" : "icmpv6";
}

static void describe(const struct fx *fx, const struct flow *f, char *buf, size_t len)
{
	snprintf(buf, len, "%s %s:%u (%s) -> %s:%u (%s)", proto_name(f->proto),
	         paddr(fx, f->src, f->family), f->sport, fx->places[f->src].name,
	         paddr(fx, f->dst, f->family), f->dport, fx->places[f->dst].name);
}

static void to_policy_flow(const struct fx *fx, const struct flow *f, bool reverse, bool reply,
                           struct policy_flow *pf)
{
	memset(pf, 0, sizeof(*pf));
	assert_true(ipam_addr_parse(paddr(fx, reverse ? f->dst : f->src, f->family), &pf->src));
	assert_true(ipam_addr_parse(paddr(fx, reverse ? f->src : f->dst, f->family), &pf->dst));
	pf->protocol = (uint8_t)f->proto;
	pf->icmp_type = pf->icmp_code = -1;
	if (f->proto == 6 || f->proto == 17) {
		pf->src_port = reverse ? f->dport : f->sport;
		pf->dst_port = reverse ? f->sport : f->dport;
	} else {
		/* an echo request, also when asking about its reply (the reply's fate is the
		 * request's) */
		pf->icmp_type = f->proto == 1 ? 8 : 128;
		pf->icmp_code = 0;
	}
	pf->reply = reply;
}

/* The part of a side this host enforces: its local workload endpoints. */
static bool side_denies_here(const struct policy_trace_side *s)
{
	return s->policed && s->endpoint && s->endpoint->node &&
	       !strcmp(s->endpoint->node, HOST_NODE) && s->verdict == POLICY_VERDICT_DENY;
}

static bool expected_here(const struct policy_trace *t)
{
	return !side_denies_here(&t->egress) && !side_denies_here(&t->ingress);
}

static void evaluate(struct fx *fx, struct flow *f)
{
	struct policy_flow pf;
	struct policy_trace t, tr;

	to_policy_flow(fx, f, false, false, &pf);
	assert_int_equal(policy_evaluate(fx->m, &pf, &t), 0);
	f->expect = expected_here(&t);
	/* The reply of the same flow, as the evaluator sees it, has the opening packet's fate. */
	to_policy_flow(fx, f, true, true, &pf);
	assert_int_equal(policy_evaluate(fx->m, &pf, &tr), 0);
	assert_int_equal(tr.verdict, t.verdict);
	policy_trace_free(&tr);
	policy_trace_free(&t);
}

/* Print the flow, the evaluator's trace and the host's ruleset. */
static void explain(struct fx *fx, const struct flow *f, bool table)
{
	struct policy_flow pf;
	struct policy_trace t;
	char d[256];

	describe(fx, f, d, sizeof(d));
	to_policy_flow(fx, f, false, false, &pf);
	assert_int_equal(policy_evaluate(fx->m, &pf, &t), 0);
	json_t *j = policy_trace_to_json(&t);
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	fprintf(stderr, "MISMATCH %s: kernel %s, evaluator (this host's part) %s\ntrace: %s\n", d,
	        f->arrived ? "allowed" : "denied", f->expect ? "allow" : "deny", text ? text : "?");
	free(text);
	json_decref(j);
	policy_trace_free(&t);
	if (table)
		list_table(fx);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Open the flow's sockets, each in its namespace, and send the opening packet. */
static void flow_start(struct fx *fx, struct flow *f)
{
	struct sockaddr_storage la, ca;
	socklen_t llen, clen;
	int dom = f->family == 4 ? AF_INET : AF_INET6, one = 1;

	f->lfd = f->afd = f->cfd = -1;
	f->connected = f->arrived = f->replied = f->done = false;
	sockaddr_of(fx, f->dst, f->family, f->dport, &la, &llen);
	if (f->proto == 6 || f->proto == 17) {
		enter(fx, fx->places[f->dst].ns);
		f->lfd = socket(
		    dom, (f->proto == 6 ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
		assert_true(f->lfd >= 0);
		setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(f->lfd, (struct sockaddr *)&la, llen) != 0)
			fail_msg("bind listener %s:%u: %s", paddr(fx, f->dst, f->family), f->dport,
			         strerror(errno));
		if (f->proto == 6)
			assert_int_equal(listen(f->lfd, 8), 0);
	}
	enter(fx, fx->places[f->src].ns);
	if (f->proto == 6 || f->proto == 17) {
		f->cfd = socket(
		    dom, (f->proto == 6 ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	} else {
		f->cfd = socket(dom, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		                f->family == 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6);
	}
	assert_true(f->cfd >= 0);
	setsockopt(f->cfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* a ping socket's port is its echo identifier: unique too */
	sockaddr_of(fx, f->src, f->family, f->sport, &ca, &clen);
	if (bind(f->cfd, (struct sockaddr *)&ca, clen) != 0)
		fail_msg("bind %s:%u: %s", paddr(fx, f->src, f->family), f->sport, strerror(errno));
	if (f->proto == 6) {
		if (connect(f->cfd, (struct sockaddr *)&la, llen) == 0)
			f->connected = true;
		else
			assert_int_equal(errno, EINPROGRESS);
	} else if (f->proto == 17) {
		assert_int_equal(sendto(f->cfd, "q", 1, 0, (struct sockaddr *)&la, llen), 1);
	} else {
		unsigned char pkt[16] = {0};
		pkt[0] = f->family == 4 ? ICMP_ECHO : ICMP6_ECHO_REQUEST;
		pkt[7] = 1; /* sequence; the kernel fills in the identifier and checksum */
		assert_int_equal(sendto(f->cfd, pkt, sizeof(pkt), 0, (struct sockaddr *)&la, llen),
		                 (ssize_t)sizeof(pkt));
	}
	enter(fx, -1);
	if (f->connected) {
		f->arrived = true;
		assert_int_equal(send(f->cfd, "q", 1, MSG_NOSIGNAL), 1);
	}
}

static void flow_close(struct flow *f)
{
	close_fd(&f->lfd);
	close_fd(&f->afd);
	close_fd(&f->cfd);
}

/* One readiness event on fd of flow f: move its exchange along. */
static void flow_event(struct flow *f, int fd, short re)
{
	char buf[64];

	if (fd == f->cfd && f->proto == 6 && !f->connected) {
		int e = 0;
		socklen_t l = sizeof(e);
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l);
		if (e != 0) { /* refused or unreachable: not through */
			f->done = true;
			return;
		}
		if (!(re & POLLOUT))
			return;
		f->connected = f->arrived = true;
		if (send(fd, "q", 1, MSG_NOSIGNAL) != 1)
			f->done = true;
		return;
	}
	if (fd == f->cfd) { /* the reply */
		unsigned char r[64];
		ssize_t n = recv(fd, r, sizeof(r), 0);
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			f->done = true;
			return;
		}
		if (f->proto == 1 || f->proto == 58) {
			if (r[0] != (f->proto == 1 ? ICMP_ECHOREPLY : ICMP6_ECHO_REPLY))
				return;
			f->arrived = true;
		}
		f->replied = f->done = true;
		return;
	}
	if (fd == f->lfd && f->proto == 6) {
		int a = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (a >= 0 && f->afd < 0)
			f->afd = a;
		else if (a >= 0)
			close(a);
		return;
	}
	if (fd == f->lfd) { /* UDP: the datagram arrived; answer it */
		struct sockaddr_storage peer;
		socklen_t pl = sizeof(peer);
		ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&peer, &pl);
		if (n == 1) {
			f->arrived = true;
			sendto(fd, "r", 1, 0, (struct sockaddr *)&peer, pl);
		}
		return;
	}
	if (fd == f->afd) { /* TCP: the data arrived; answer it */
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n == 1)
			(void)send(fd, "r", 1, MSG_NOSIGNAL);
	}
}

static uint64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* Run flows at once until each has carried its reply or the deadline passes. */
static void run_batch(struct fx *fx, struct flow **fl, unsigned n, unsigned timeout_ms)
{
	struct pollfd pfd[BATCH * 3];
	struct flow *owner[BATCH * 3];
	uint64_t deadline;

	for (unsigned i = 0; i < n; i++)
		flow_start(fx, fl[i]);
	deadline = now_ms() + timeout_ms;
	for (;;) {
		unsigned np = 0;
		for (unsigned i = 0; i < n; i++) {
			struct flow *f = fl[i];
			if (f->done)
				continue;
			int fds[3] = {f->cfd, f->lfd, f->afd};
			for (int k = 0; k < 3; k++) {
				if (fds[k] < 0)
					continue;
				pfd[np].fd = fds[k];
				pfd[np].events =
				    (short)(k == 0 && f->proto == 6 && !f->connected ? POLLOUT
				                                                     : POLLIN);
				pfd[np].revents = 0;
				owner[np++] = f;
			}
		}
		uint64_t t = now_ms();
		if (np == 0 || t >= deadline)
			break;
		int rc = poll(pfd, np, (int)(deadline - t));
		if (rc < 0 && errno == EINTR)
			continue;
		assert_true(rc >= 0);
		for (unsigned i = 0; i < np; i++)
			if (pfd[i].revents)
				flow_event(owner[i], pfd[i].fd, pfd[i].revents);
	}
	for (unsigned i = 0; i < n; i++)
		flow_close(fl[i]);
}

static int pick_place(struct rng *r)
{
	/* mostly workloads; the host, the outside and the remote endpoints now and then */
	unsigned x = rnd(r, 100);
	if (x < 70)
		return (int)rnd(r, N_WL);
	return P_HOST + (int)rnd(r, N_PLACES - P_HOST);
}

static void gen_flow(struct fx *fx, struct flow *f)
{
	struct rng *r = &fx->rng;

	memset(f, 0, sizeof(*f));
	for (;;) {
		f->src = pick_place(r);
		f->dst = pick_place(r);
		if (fx->places[f->src].ns == fx->places[f->dst].ns)
			continue; /* never leaves its namespace */
		/* flows that touch no workload are not policed: a few keep the host path honest */
		if (!fx->places[f->src].local_wl && !fx->places[f->dst].local_wl && !chance(r, 10))
			continue;
		break;
	}
	f->family = fx->v6 && chance(r, 30) ? 6 : 4;
	unsigned p = rnd(r, 100);
	f->proto = p < 45 ? 6 : p < 80 ? 17 : (f->family == 4 ? 1 : 58);
	f->dport = f->proto == 6 || f->proto == 17 ? flow_ports[rnd(r, 5)] : 0;
	f->sport = (uint16_t)(20000 + fx->next_sport++);
}

/* Before any ruleset: one echo between every two namespaces in each family must come back. This
 * proves the topology, and fills the neighbour caches so that no flow of the test waits on
 * address resolution. */
static void warm_up(struct fx *fx)
{
	struct flow *flows = calloc(N_PLACES * N_PLACES * 2, sizeof(*flows));
	struct flow *batch[BATCH];
	unsigned n = 0, nb = 0;

	assert_non_null(flows);
	for (int fam = 4; fam <= (fx->v6 ? 6 : 4); fam += 2)
		for (int s = 0; s < N_PLACES; s++)
			for (int d = 0; d < N_PLACES; d++) {
				if (fx->places[s].ns == fx->places[d].ns)
					continue;
				struct flow *f = &flows[n++];
				f->src = s;
				f->dst = d;
				f->family = fam;
				f->proto = fam == 4 ? 1 : 58;
				f->sport = (uint16_t)(20000 + fx->next_sport++);
			}
	for (unsigned i = 0; i < n; i++) {
		batch[nb++] = &flows[i];
		if (nb == BATCH || i + 1 == n) {
			run_batch(fx, batch, nb, 2000);
			nb = 0;
		}
	}
	for (unsigned i = 0; i < n; i++) {
		char d[256];
		describe(fx, &flows[i], d, sizeof(d));
		if (!flows[i].replied)
			fail_msg("topology: no echo reply for %s without any ruleset", d);
	}
	free(flows);
}

/* Of n flows generated now, how many the evaluator denies (none is sent). */
static unsigned expected_denials(struct fx *fx, unsigned n)
{
	unsigned denied = 0;
	for (unsigned i = 0; i < n; i++) {
		struct flow f;
		gen_flow(fx, &f);
		evaluate(fx, &f);
		denied += !f.expect;
	}
	return denied;
}

/* Generate, run and compare n flows; returns the mismatches. */
static unsigned run_flows(struct fx *fx, unsigned n, const char *phase, bool control)
{
	struct flow *flows = calloc(n, sizeof(*flows));
	struct flow *batch[BATCH];
	bool *ran = calloc(n, sizeof(bool));
	unsigned mism = 0, replyfail = 0, allowed = 0, asym = 0, left = n, details = 0;
	uint64_t t0 = now_ms();

	assert_non_null(flows);
	assert_non_null(ran);
	for (unsigned i = 0; i < n; i++) {
		gen_flow(fx, &flows[i]);
		evaluate(fx, &flows[i]);
	}
	/* Batches of flows with distinct listening addresses. */
	while (left > 0) {
		unsigned nb = 0;
		for (unsigned i = 0; i < n && nb < BATCH; i++) {
			bool clash = false;
			if (ran[i])
				continue;
			for (unsigned k = 0; k < nb && !clash; k++)
				clash = batch[k]->dst == flows[i].dst &&
				        batch[k]->family == flows[i].family &&
				        batch[k]->proto == flows[i].proto &&
				        batch[k]->dport == flows[i].dport;
			if (clash)
				continue;
			ran[i] = true;
			batch[nb++] = &flows[i];
		}
		run_batch(fx, batch, nb, fx->timeout_ms);
		left -= nb;
	}
	for (unsigned i = 0; i < n; i++) {
		struct flow *f = &flows[i];
		if (f->expect && !f->arrived && !control) {
			/* Seen denied, expected allowed: once more alone with a long deadline, from
			 * a fresh source port (which rules may name: re-evaluated). */
			fx->retries++;
			f->sport = (uint16_t)(20000 + fx->next_sport++);
			evaluate(fx, f);
			run_batch(fx, &f, 1, 1500);
		}
		if (f->arrived)
			allowed++;
		if (f->arrived != f->expect) {
			mism++;
			if (!control && details++ < MAX_DETAILS)
				explain(fx, f, details == 1);
		} else if (f->arrived && !f->replied) {
			char d[256];
			describe(fx, f, d, sizeof(d));
			fprintf(stderr,
			        "NO REPLY %s: the opening packet got through, its reply did not\n",
			        d);
			replyfail++;
			if (details++ < MAX_DETAILS)
				list_table(fx);
		}
		if (f->arrived && f->replied) {
			/* allowed one way: is the other way denied? Then the reply proved conntrack
			 */
			struct policy_flow pf;
			struct policy_trace t;
			to_policy_flow(fx, f, true, false, &pf);
			assert_int_equal(policy_evaluate(fx->m, &pf, &t), 0);
			if (!expected_here(&t))
				asym++;
			policy_trace_free(&t);
		}
	}
	printf(
	    "  %s: %u flows in %.1f s: %u allowed, %u denied, %u allowed with the reverse denied "
	    "(replies came back), %u mismatches, %u missing replies\n",
	    phase, n, (double)(now_ms() - t0) / 1e3, allowed, n - allowed, asym, mism, replyfail);
	fflush(stdout);
	if (control) {
		free(ran);
		free(flows);
		return mism;
	}
	fx->flows += n;
	fx->allowed += allowed;
	fx->denied += n - allowed;
	fx->mismatches += mism;
	fx->reply_failures += replyfail;
	fx->asym += asym;
	free(ran);
	free(flows);
	return mism + replyfail;
}

/* ------------------------------------------------------------------------------------------ */
/* Fixture and test                                                                            */

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	const char *s;

	if (!fx)
		return -1;
	for (int i = 0; i < N_NS; i++)
		fx->ns_fd[i] = -1;
	fx->orig_fd = -1;
	*state = fx;
	if (geteuid() != 0)
		return 0;
	s = getenv("TABBY_POLICY_SEED");
	fx->seed =
	    s && *s ? strtoull(s, NULL, 0) : ((uint64_t)time(NULL) << 16) ^ (uint64_t)getpid();
	fx->rng.s = fx->seed ? fx->seed : 1;
	s = getenv("TABBY_POLICY_V6");
	fx->v6 = !(s && !strcmp(s, "0"));
	s = getenv("TABBY_POLICY_TIMEOUT_MS");
	fx->timeout_ms = s && *s ? (unsigned)atoi(s) : 250;
	printf("TABBY_POLICY_SEED=%" PRIu64 " (IPv6 %s)\n", fx->seed, fx->v6 ? "on" : "off");
	fflush(stdout);

	for (int i = 0; i < N_WL; i++) {
		snprintf(fx->ns_name[i], sizeof(fx->ns_name[i]), "tpk%d-w%d", (int)getpid(), i);
		snprintf(fx->places[i].name, sizeof(fx->places[i].name), "wl%d", i);
		fx->places[i].ns = i;
		fx->places[i].local_wl = true;
		snprintf(fx->places[i].a4, IPAM_ADDR_STRLEN, "10.64.0.%d", 10 + i);
		snprintf(fx->places[i].a6, IPAM_ADDR_STRLEN, "fd00:64::%x", 10 + i);
	}
	snprintf(fx->ns_name[NS_HOST], sizeof(fx->ns_name[0]), "tpk%d-h", (int)getpid());
	snprintf(fx->ns_name[NS_OUT], sizeof(fx->ns_name[0]), "tpk%d-o", (int)getpid());
	static const struct {
		const char *name, *a4, *a6;
		int ns;
	} others[] = {
	    {"host", "192.168.77.1", "fd00:77::1", NS_HOST},
	    {"outside", "192.168.77.2", "fd00:77::2", NS_OUT},
	    {"remote-hep", "192.168.77.3", "fd00:77::3", NS_OUT},
	    {"remote-wl", "10.65.0.1", "fd00:65::1", NS_OUT},
	};
	for (int i = P_HOST; i < N_PLACES; i++) {
		snprintf(fx->places[i].name, sizeof(fx->places[i].name), "%s",
		         others[i - P_HOST].name);
		snprintf(fx->places[i].a4, IPAM_ADDR_STRLEN, "%s", others[i - P_HOST].a4);
		snprintf(fx->places[i].a6, IPAM_ADDR_STRLEN, "%s", others[i - P_HOST].a6);
		fx->places[i].ns = others[i - P_HOST].ns;
	}
	fx->orig_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	return fx->orig_fd >= 0 ? 0 : -1;
}

static int teardown(void **state)
{
	struct fx *fx = *state;

	if (fx->orig_fd >= 0)
		setns(fx->orig_fd, CLONE_NEWNET);
	/* the applier's socket lives in the host namespace: close it before the namespace goes */
	agent_nft_free(fx->nft);
	topology_down(fx);
	if (fx->orig_fd >= 0)
		close(fx->orig_fd);
	policy_compiler_free(fx->c);
	policy_model_free(fx->m);
	free(fx);
	return 0;
}

static void remove_res(struct fx *fx, enum policy_kind kind, const char *key)
{
	assert_int_equal(policy_model_remove(fx->m, kind, key), 0);
	policy_compiler_note(fx->c, kind, key);
}

static void relabel_workload(struct fx *fx, int i)
{
	char wl[32], ifc[32];

	snprintf(wl, sizeof(wl), "wl%d", i);
	snprintf(ifc, sizeof(ifc), IFACE_PREFIX "k%d", i);
	put_workload(fx, HOST_NODE, wl, ifc, fx->places[i].a4, fx->places[i].a6);
}

static void test_differential(void **state)
{
	struct fx *fx = *state;
	struct policy_compile_config cfg = {
	    .node = HOST_NODE, .table = TABLE, .iface_prefix = IFACE_PREFIX};
	char name[32];
	unsigned bad = 0;

	if (geteuid() != 0) {
		printf("test_policy_kernel needs root (network namespaces, nftables): skipped\n");
		skip();
	}
	topology_up(fx);
	fx->m = policy_model_new();
	assert_non_null(fx->m);
	assert_int_equal(policy_compiler_new(&cfg, &fx->c), 0);
	warm_up(fx);
	build_model(fx);
	flush_and_apply(fx, "full ruleset");
	bad += run_flows(fx, 600, "initial", false);

	/* Incremental, round 1: a policy replaced, one added, one removed, labels and a profile
	 * changed. */
	put_policy(fx, "pol-03");
	snprintf(name, sizeof(name), "pol-new%u", fx->next_policy++);
	put_policy(fx, name);
	remove_res(fx, POLICY_KIND_POLICY, "pol-05");
	relabel_workload(fx, (int)rnd(&fx->rng, N_WL));
	relabel_workload(fx, (int)rnd(&fx->rng, N_WL));
	put_profile(fx, 1);
	flush_and_apply(fx, "incremental 1");
	bad += run_flows(fx, 300, "after incremental 1", false);

	/* Round 2: more labels, two policies gone, one replaced, the remote workload gone (its
	 * address becomes no endpoint's), a node's host endpoint relabelled. */
	relabel_workload(fx, (int)rnd(&fx->rng, N_WL));
	remove_res(fx, POLICY_KIND_POLICY, "pol-07");
	remove_res(fx, POLICY_KIND_POLICY, "pol-01");
	put_policy(fx, "pol-09");
	remove_res(fx, POLICY_KIND_WORKLOADENDPOINT, PEER_NODE "/mesos/remote/eth0");
	put_host_endpoint(fx, HOST_NODE, "ext0", "ext0", "192.168.77.1", "fd00:77::1");
	flush_and_apply(fx, "incremental 2");
	bad += run_flows(fx, 250, "after incremental 2", false);

	/* Round 3: the remote workload back. Its addresses go into the sets its labels select, and
	 * a set that was empty may now hold one, which renders again the rules that name it. */
	json_t *labels = gen_labels(&fx->rng, 60), *profiles = gen_profile_list(&fx->rng);
	json_incref(labels); /* a second reference each, for round 4's twin */
	json_incref(profiles);
	put_workload_as(fx, PEER_NODE, "remote", "calir0", "10.65.0.1", "fd00:65::1", labels,
	                profiles);
	flush_and_apply(fx, "incremental 3");
	bad += run_flows(fx, 200, "after incremental 3", false);

	/* Round 4: a remote twin, with the same labels and profiles. Every set it joins already
	 * holds the first one, so no rule changes: the batch is plain element commands, which the
	 * applier sends through its fast path (nftnl.c), and the packets afterwards must still
	 * agree with the evaluator. */
	unsigned long fast0, fast1, slow0, slow1;
	agent_nft_counts(fx->nft, &fast0, &slow0);
	put_workload_as(fx, PEER_NODE, "remote-twin", "calir1", "10.65.0.2", "fd00:65::2", labels,
	                profiles);
	int others = flush_and_apply(fx, "incremental 4");
	agent_nft_counts(fx->nft, &fast1, &slow1);
	printf("  round 4: %lu batch(es) through the fast path, %lu through libnftables\n",
	       fast1 - fast0, slow1 - slow0);
	assert_true(others <= 0);
	/* -1: its labels are in no set at all, so there was nothing to send */
	assert_int_equal(fast1, fast0 + (others == 0));
	assert_int_equal(slow1, slow0);
	bad += run_flows(fx, 200, "after incremental 4", false);

	/* Control: without the table the same harness must see the evaluator's denials go through
	 * (it can tell), then a reset compiler reloads everything and agrees again. A random model
	 * can allow every flow (seed 117662026520924 did): then there is no denial to see, and a
	 * policy denying every workload's ingress goes into the model first. */
	if (expected_denials(fx, 120) == 0) {
		printf("  the model denies no flow: a policy denying all ingress is added\n");
		put(fx, resource("policy", json_pack("{s:s}", "name", "pol-control-deny"),
		                 json_pack("{s:f,s:s,s:[s],s:[{s:s}],s:[],s:b,s:b}", "order", 1.0,
		                           "selector", "", "types", "ingress", "ingress", "action",
		                           "deny", "egress", "doNotTrack", 0, "preDNAT", 0)));
		assert_true(expected_denials(fx, 120) > 0);
	}
	char err[1024];
	enter(fx, NS_HOST);
	int rc = agent_nft_delete_table(fx->nft, TABLE, err, sizeof(err));
	enter(fx, -1);
	assert_int_equal(rc, 0);
	unsigned seen = run_flows(fx, 120, "control, table deleted (disagreement expected)", true);
	assert_true(seen > 0);
	policy_compiler_reset(fx->c);
	flush_and_apply(fx, "full reload after reset");
	bad += run_flows(fx, 150, "after reload", false);

	printf("seed %" PRIu64 ": %u flows, %u allowed, %u denied, %u allowed with the reverse "
	       "denied, %u mismatches, %u missing replies, %u retried\n",
	       fx->seed, fx->flows, fx->allowed, fx->denied, fx->asym, fx->mismatches,
	       fx->reply_failures, fx->retries);
	if (bad)
		fail_msg("%u flows disagree with the evaluator (TABBY_POLICY_SEED=%" PRIu64 ")",
		         bad, fx->seed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_differential, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
