/*
 * The host dataplane's kernel applier (netsync.c) against a real kernel, in a private network
 * namespace (the test process unshares one at start, so nothing it does reaches the machine).
 *
 * The desired states come from netcalc_compute() over a made-up three-host cluster seen from
 * host "a" (ext0 10.99.0.11/24, fd00:99::11/64; b is on the same subnets, c on 10.98.0.0/24):
 * blackholes for a's blocks, direct routes to b, VXLAN to c (cross-subnet pool) with its device,
 * FDB and neighbour entries, a borrowed /32, local workload routes on a real veth, NAT outgoing.
 * Checked with `ip`, `bridge` and `nft -j` output:
 * - a full apply installs exactly the wanted state; foreign routes (another protocol) are left,
 *   including one that holds a destination we want (reported as a problem);
 * - the same state applied again, and by a new applier (a restarted agent), changes nothing:
 *   `ip monitor route` sees no event at all;
 * - an incremental change touches only the routes that changed (the monitor sees exactly them),
 *   and a removed workload route reports its addresses for the conntrack flush;
 * - a full apply repairs a route deleted by hand, deletes a stale route of ours, and puts back a
 *   route of ours changed by hand;
 * - IP-in-IP through tunl0 when the kernel has the ipip module (skipped, and said, otherwise);
 * - when no pool asks for a tunnel or NAT, the VXLAN device and the NAT table go.
 * Each further case has an applier in a namespace of its own (fix_setup()):
 * - vxlan.tabby rebuilt by an incremental apply gets its routes back in that apply;
 * - a foreign route that took a destination the last apply held is left by an incremental apply
 *   that changes the route there, and reported;
 * - with IP-in-IP wanted, an address on tunl0 outside every pool stays (a veth named tunl0 stands
 *   in for the device when the kernel has no ipip module);
 * - an apply that a refused route, device or NAT table left incomplete asks to be tried again
 *   (netsync_retry_after()) after 1 s, doubling up to 30 s while the refusal lasts, and a complete
 *   apply asks for nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nftables/libnftables.h>

#include "agent/netcalc.h"
#include "agent/netsync.h"
#include "agent/wire.h"
#include "agent/tests/shell.h"

/* ------------------------------------------------------------------------------------------ */
/* Shell helpers                                                                               */

/* Whether the output of cmd has a line containing every one of the words (NULL-ended). */
static bool has_line(const char *text, ...)
{
	const char *line = text;
	while (line != NULL && *line) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		char *l = strndup(line, len);
		bool all = true;
		va_list ap;
		va_start(ap, text);
		for (const char *w = va_arg(ap, const char *); w != NULL;
		     w = va_arg(ap, const char *)) {
			all = all && strstr(l, w) != NULL;
		}
		va_end(ap);
		free(l);
		if (all) {
			return true;
		}
		line = end ? end + 1 : NULL;
	}
	return false;
}

static unsigned count_lines(const char *text)
{
	unsigned n = 0;
	for (const char *p = text; *p; p++) {
		n += *p == '\n';
	}
	return n;
}

/* Lines that contain word. */
static unsigned count_with(const char *text, const char *word)
{
	unsigned n = 0;
	for (const char *p = strstr(text, word); p != NULL; p = strstr(p + 1, word)) {
		n++;
	}
	return n;
}

/* `ip monitor route` in the background: what changes while it runs. */
struct monitor {
	char file[64];
	pid_t pid;
};

static void monitor_start(struct monitor *m)
{
	snprintf(m->file, sizeof m->file, "/tmp/netsync-mon-%d", (int)getpid());
	m->pid = fork();
	assert_true(m->pid >= 0);
	if (m->pid == 0) {
		FILE *f = freopen(m->file, "w", stdout);
		(void)f;
		execlp("ip", "ip", "-o", "monitor", "route", (char *)NULL);
		_exit(127);
	}
	usleep(300 * 1000);
}

static char *monitor_stop(struct monitor *m)
{
	usleep(300 * 1000);
	kill(m->pid, SIGTERM);
	waitpid(m->pid, NULL, 0);
	char *text = test_out("cat %s", m->file);
	unlink(m->file);
	return text;
}

/* ------------------------------------------------------------------------------------------ */
/* The cluster                                                                                 */

struct cluster {
	struct netcalc_node nodes[3];
	struct ipam_pool pools[2];
	struct ipam_block_info blocks[8];
	unsigned n_blocks;
	struct netcalc_alloc allocs[4];
	unsigned n_allocs;
	struct netcalc_workload weps[3];
	struct ipam_cidr wep_addrs[5];
	unsigned n_weps;
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

static void
add_block(struct cluster *c, const char *cidr, const char *pool, const char *aff)
{
	struct ipam_block_info *b = &c->blocks[c->n_blocks++];
	*b = (struct ipam_block_info){.cidr = C(cidr), .pool = C(pool)};
	snprintf(b->affinity, sizeof b->affinity, "%s", aff);
}

static void del_block(struct cluster *c, const char *cidr)
{
	struct ipam_cidr x = C(cidr);
	for (unsigned i = 0; i < c->n_blocks; i++) {
		if (ipam_cidr_equal(&c->blocks[i].cidr, &x)) {
			c->blocks[i] = c->blocks[--c->n_blocks];
			return;
		}
	}
	fail();
}

static void cluster_init(struct cluster *c)
{
	*c = (struct cluster){0};
	c->nodes[0] = (struct netcalc_node){
	    .name = "a",
	    .ip4 = {true, A("10.99.0.11"), 24},
	    .ip6 = {true, A("fd00:99::11"), 64},
	    .vxlan4 = A("10.64.0.1"),
	};
	c->nodes[1] = (struct netcalc_node){
	    .name = "b",
	    .ip4 = {true, A("10.99.0.12"), 24},
	    .ip6 = {true, A("fd00:99::12"), 64},
	    .vxlan4 = A("10.64.0.65"),
	};
	c->nodes[2] = (struct netcalc_node){
	    .name = "c",
	    .ip4 = {true, A("10.98.0.13"), 24},
	    .vxlan4 = A("10.64.0.129"),
	};
	c->pools[0] = (struct ipam_pool){.cidr = C("10.64.0.0/16"),
	                                 .block_size = 26,
	                                 .vxlan = IPAM_ENCAP_CROSS_SUBNET,
	                                 .nat_outgoing = true};
	c->pools[1] = (struct ipam_pool){.cidr = C("fd80::/64"), .block_size = 122};
	add_block(c, "10.64.0.0/26", "10.64.0.0/16", "a");
	add_block(c, "10.64.0.64/26", "10.64.0.0/16", "b");
	add_block(c, "10.64.0.128/26", "10.64.0.0/16", "c");
	add_block(c, "fd80::/122", "fd80::/64", "a");
	add_block(c, "fd80::40/122", "fd80::/64", "b");
	c->allocs[c->n_allocs++] =
	    (struct netcalc_alloc){.addr = A("10.64.0.7"), .block = C("10.64.0.0/26"), .node = "b"};
	c->wep_addrs[0] = C("10.64.0.2/32");
	c->wep_addrs[1] = C("fd80::2/128");
	c->wep_addrs[2] = C("10.64.0.3/32");
	c->wep_addrs[3] = C("fd80::3/128");
	c->wep_addrs[4] = C("10.64.0.4/32");
	c->weps[0] = (struct netcalc_workload){"cali0001", &c->wep_addrs[0], 2};
	c->weps[1] = (struct netcalc_workload){"cali0002", &c->wep_addrs[2], 1}; /* no veth */
	c->n_weps = 2;
}

static void compute(struct cluster *c, struct netcalc_state *st)
{
	struct netcalc_input in = {
	    .self = "a",
	    .nodes = c->nodes,
	    .n_nodes = 3,
	    .pools = c->pools,
	    .n_pools = 2,
	    .blocks = c->blocks,
	    .n_blocks = c->n_blocks,
	    .allocs = c->allocs,
	    .n_allocs = c->n_allocs,
	    .workloads = c->weps,
	    .n_workloads = c->n_weps,
	};
	assert_int_equal(netcalc_compute(&in, st), 0);
}

/* ------------------------------------------------------------------------------------------ */
/* The applier's callbacks                                                                     */

struct seen {
	char gone[16][IPAM_ADDR_STRLEN];
	unsigned n_gone;
	char problems[16][512];
	unsigned n_problems;
};

static void on_gone(void *arg, const struct ipam_addr *addr)
{
	struct seen *s = arg;
	if (s->n_gone < 16) {
		ipam_addr_format(addr, s->gone[s->n_gone++]);
	}
}

static void on_problem(void *arg, const char *line)
{
	struct seen *s = arg;
	fprintf(stderr, "problem: %s\n", line);
	if (s->n_problems < 16) {
		snprintf(s->problems[s->n_problems++], sizeof s->problems[0], "%s", line);
	}
}

static bool gone_has(struct seen *s, const char *ip)
{
	for (unsigned i = 0; i < s->n_gone; i++) {
		if (strcmp(s->gone[i], ip) == 0) {
			return true;
		}
	}
	return false;
}

static bool problem_has(struct seen *s, const char *part)
{
	for (unsigned i = 0; i < s->n_problems; i++) {
		if (strstr(s->problems[i], part) != NULL) {
			return true;
		}
	}
	return false;
}

static void apply(struct netsync_kernel *k, struct cluster *c, bool full,
                  struct netsync_report *rep)
{
	struct netcalc_state st;
	compute(c, &st);
	assert_int_equal(netsync_kernel_apply(k, &st, full, rep), 0);
	netcalc_state_free(&st);
}

static char *mac_text(const char *node, char *buf)
{
	uint8_t m[6];
	netcalc_vtep_mac(node, 4, m);
	sprintf(buf, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
	return buf;
}

/* A network namespace of its own for the test that calls it (what an earlier test left does not
 * matter), holding host a of cluster_init(): ext0 on the underlay and one workload veth. */
static void host_setup(void)
{
	assert_int_equal(unshare(CLONE_NEWNET), 0);
	assert_int_equal(
	    test_sh("ip link set lo up && ip link add ext0 type veth peer name ext0p && "
	            "ip link set ext0 up && ip link set ext0p up && "
	            "ip addr add 10.99.0.11/24 dev ext0 && "
	            "ip addr add fd00:99::11/64 dev ext0 nodad && "
	            "ip link add cali0001 type veth peer name wl0001 && "
	            "ip link set cali0001 up && ip link set wl0001 up"),
	    0);
}

/* ------------------------------------------------------------------------------------------ */
/* The tests                                                                                   */

static void check_first_state(void)
{
	char mac[32];
	char *r4 = test_out("ip -4 -d route show proto %d", TABBY_RTPROT);
	char *r6 = test_out("ip -6 -d route show proto %d", TABBY_RTPROT);
	fprintf(stderr, "IPv4 routes of ours:\n%sIPv6:\n%s", r4, r6);
	assert_true(has_line(r4, "blackhole 10.64.0.0/26", NULL));
	assert_true(has_line(r4, "10.64.0.2 dev cali0001", "scope link", NULL));
	assert_true(has_line(r4, "10.64.0.7 via 10.99.0.12 dev ext0", NULL));
	assert_true(has_line(r4, "10.64.0.64/26 via 10.99.0.12 dev ext0", NULL));
	assert_true(has_line(r4, "10.64.0.128/26 via 10.64.0.129 dev vxlan.tabby", "onlink", NULL));
	assert_false(has_line(r4, "10.64.0.3", NULL)); /* its veth does not exist */
	assert_int_equal(count_lines(r4), 5);
	assert_true(has_line(r6, "blackhole fd80::/122", NULL));
	assert_true(has_line(r6, "fd80::2 dev cali0001", NULL));
	assert_true(has_line(r6, "fd80::40/122 via fd00:99::12 dev ext0", NULL));
	assert_int_equal(count_lines(r6), 3);
	free(r4);
	free(r6);

	char *l = test_out("ip -d link show vxlan.tabby");
	fprintf(stderr, "%s", l);
	assert_true(has_line(l, "mtu 1450", "UP", NULL));
	assert_true(has_line(l, "link/ether", mac_text("a", mac), NULL));
	assert_true(
	    has_line(l, "vxlan id 4096", "local 10.99.0.11", "dstport 4789", "nolearning", NULL));
	free(l);
	l = test_out("ip -4 addr show dev vxlan.tabby");
	assert_true(has_line(l, "inet 10.64.0.1/32", NULL));
	free(l);
	/* c is the only VXLAN peer (b is on the shared subnet, but it is a VTEP too). */
	l = test_out("bridge fdb show dev vxlan.tabby");
	fprintf(stderr, "%s", l);
	assert_true(has_line(l, mac_text("c", mac), "dst 10.98.0.13", "permanent", NULL));
	assert_true(has_line(l, mac_text("b", mac), "dst 10.99.0.12", "permanent", NULL));
	free(l);
	l = test_out("ip neigh show dev vxlan.tabby");
	fprintf(stderr, "%s", l);
	assert_true(has_line(l, "10.64.0.129 lladdr", mac_text("c", mac), "PERMANENT", NULL));
	assert_true(has_line(l, "10.64.0.65 lladdr", mac_text("b", mac), "PERMANENT", NULL));
	free(l);

	/* NAT: masquerade from the NAT pool to outside every pool, and the tunnel rule. */
	char *j = test_out("nft -j list table inet %s", NETSYNC_NAT_TABLE);
	json_error_t e;
	json_t *doc = json_loads(j, 0, &e);
	assert_non_null(doc);
	json_t *items = json_object_get(doc, "nftables"), *it;
	size_t i;
	bool masq4 = false, pools6 = false, chain = false, input = false, hosts4 = false;
	unsigned rules = 0;
	json_array_foreach (items, i, it) {
		json_t *set = json_object_get(it, "set"), *ch = json_object_get(it, "chain");
		if (set != NULL) {
			const char *name = json_string_value(json_object_get(set, "name"));
			char *elems = json_dumps(json_object_get(set, "elem"), JSON_COMPACT);
			if (strcmp(name, "masq4") == 0) {
				masq4 = elems != NULL && strstr(elems, "\"10.64.0.0\"") != NULL &&
				        strstr(elems, "16") != NULL;
			}
			if (strcmp(name, "pools6") == 0) {
				pools6 = elems != NULL && strstr(elems, "\"fd80::\"") != NULL;
			}
			if (strcmp(name, "hosts4") == 0) {
				hosts4 =
				    elems != NULL &&
				    strcmp(elems,
				           "[\"10.98.0.13\",\"10.99.0.11\",\"10.99.0.12\"]") == 0;
			}
			free(elems);
		}
		if (ch != NULL &&
		    strcmp(json_string_value(json_object_get(ch, "name")), "postrouting") == 0) {
			chain = strcmp(json_string_value(json_object_get(ch, "hook")),
			               "postrouting") == 0 &&
			        strcmp(json_string_value(json_object_get(ch, "type")), "nat") == 0;
		} else if (ch != NULL &&
		           strcmp(json_string_value(json_object_get(ch, "name")), "input") == 0) {
			input =
			    strcmp(json_string_value(json_object_get(ch, "hook")), "input") == 0 &&
			    strcmp(json_string_value(json_object_get(ch, "type")), "filter") == 0;
		}
		rules += json_object_get(it, "rule") != NULL;
	}
	assert_true(masq4);
	assert_true(pools6);
	assert_true(chain);
	assert_true(input);
	assert_true(hosts4); /* the nodes' underlay addresses, the only VXLAN sources */
	/* vxlan.tabby, IPv4, IPv6; VXLAN from no node; VXLAN from a workload */
	assert_int_equal(rules, 5);
	json_decref(doc);
	free(j);
	j = test_out("nft list table inet %s", NETSYNC_NAT_TABLE);
	fprintf(stderr, "%s", j);
	assert_true(has_line(j, "ip saddr @masq4 ip daddr != @pools4 masquerade", NULL));
	assert_true(
	    has_line(j, "oifname \"vxlan.tabby\"", "fib saddr type local", "masquerade", NULL));
	assert_true(has_line(j, "udp dport 4789 ip saddr != @hosts4 counter", "drop", NULL));
	assert_true(has_line(j, "iifname \"cali*\" udp dport 4789 drop", NULL));
	free(j);
}

static void test_applier(void **state)
{
	(void)state;
	char err[256];
	struct seen seen = {0};
	struct netsync_kernel *k = NULL;
	struct netsync_report rep;
	struct cluster c;
	cluster_init(&c);

	/* The host, and two foreign routes. */
	host_setup();
	assert_int_equal(test_sh("ip route add 10.77.0.0/24 via 10.99.0.1 proto static && "
	                         "ip route add 10.64.5.0/26 via 10.99.0.1 proto static"),
	                 0);

	assert_int_equal(netsync_kernel_forwarding(err, sizeof err), 0);
	char *v =
	    test_out("cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv6/conf/all/forwarding");
	assert_string_equal(v, "1\n1\n");
	free(v);

	assert_int_equal(netsync_kernel_new(on_gone, on_problem, &seen, &k, err, sizeof err), 0);
	apply(k, &c, true, &rep);
	assert_int_equal(rep.routes_added, 8);
	assert_int_equal(rep.routes_failed, 0);
	assert_true(rep.nat_changed);
	check_first_state();
	assert_int_equal(seen.n_gone, 0);

	/* The same state again, incrementally and fully: nothing happens in the kernel. */
	struct monitor m;
	monitor_start(&m);
	apply(k, &c, false, &rep);
	assert_int_equal(rep.routes_added + rep.routes_replaced + rep.routes_deleted, 0);
	assert_int_equal(rep.links_changed, 0);
	assert_false(rep.nat_changed);
	apply(k, &c, true, &rep);
	assert_int_equal(rep.routes_added + rep.routes_replaced + rep.routes_deleted, 0);
	assert_int_equal(rep.links_changed, 0);
	/* A restarted agent: a new applier with no memory. */
	netsync_kernel_free(k);
	assert_int_equal(netsync_kernel_new(on_gone, on_problem, &seen, &k, err, sizeof err), 0);
	apply(k, &c, true, &rep);
	assert_int_equal(rep.routes_added + rep.routes_replaced + rep.routes_deleted, 0);
	assert_int_equal(rep.links_changed, 0);
	char *events = monitor_stop(&m);
	fprintf(stderr, "route events on reapply: [%s]\n", events);
	assert_int_equal(count_with(events, "proto 116"), 0);
	free(events);
	assert_int_equal(seen.n_gone, 0);
	check_first_state();

	/* An incremental change: b's block moves, a new borrowed address on c, the workload
	 * cali0001 goes. Only those routes change. */
	del_block(&c, "10.64.0.64/26");
	add_block(&c, "10.64.1.0/26", "10.64.0.0/16", "b");
	c.allocs[c.n_allocs++] =
	    (struct netcalc_alloc){.addr = A("10.64.0.9"), .block = C("10.64.0.0/26"), .node = "c"};
	c.weps[0] = c.weps[1];
	c.n_weps = 1;
	monitor_start(&m);
	apply(k, &c, false, &rep);
	events = monitor_stop(&m);
	fprintf(stderr, "route events on change:\n%s", events);
	assert_int_equal(rep.routes_added, 2);
	assert_int_equal(rep.routes_deleted, 3);
	assert_true(has_line(events, "Deleted", "10.64.0.64/26", NULL));
	assert_true(has_line(events, "Deleted", "10.64.0.2 dev cali0001", NULL));
	assert_true(has_line(events, "Deleted", "fd80::2 dev cali0001", NULL));
	assert_true(has_line(events, "10.64.1.0/26 via 10.99.0.12", NULL));
	assert_true(has_line(events, "10.64.0.9 via 10.64.0.129 dev vxlan.tabby", NULL));
	/* (The kernel's own events, such as ext0's link-local address settling, do not count.) */
	assert_int_equal(count_with(events, "proto 116"), 5);
	free(events);
	assert_int_equal(seen.n_gone, 2);
	assert_true(gone_has(&seen, "10.64.0.2"));
	assert_true(gone_has(&seen, "fd80::2"));
	char *r4 = test_out("ip -4 route show");
	assert_true(has_line(r4, "blackhole 10.64.0.0/26", NULL));
	assert_true(has_line(r4, "10.77.0.0/24 via 10.99.0.1", "proto static", NULL));
	free(r4);

	/* Damage by hand: a route of ours deleted, one changed, a stale one of ours added. An
	 * incremental apply does not look; a full one repairs all three. A foreign route holds a
	 * destination we now want (a's new block): it stays, and that is reported. */
	assert_int_equal(test_sh("ip route del 10.64.1.0/26 && "
	                         "ip route replace 10.64.0.7 via 10.99.0.13 proto %d && "
	                         "ip route add 10.64.9.0/26 via 10.99.0.12 proto %d",
	                         TABBY_RTPROT, TABBY_RTPROT),
	                 0);
	add_block(&c, "10.64.5.0/26", "10.64.0.0/16", "a");
	seen.n_problems = 0;
	apply(k, &c, true, &rep);
	assert_int_equal(rep.routes_added, 1);
	assert_int_equal(rep.routes_replaced, 1);
	assert_int_equal(rep.routes_deleted, 1);
	assert_int_equal(rep.routes_failed, 1);
	assert_true(problem_has(&seen, "10.64.5.0/26"));
	assert_true(problem_has(&seen, "not Tabby's"));
	r4 = test_out("ip -4 route show");
	fprintf(stderr, "after repair:\n%s", r4);
	assert_true(has_line(r4, "10.64.1.0/26 via 10.99.0.12", "proto 116", NULL));
	assert_true(has_line(r4, "10.64.0.7 via 10.99.0.12", "proto 116", NULL));
	assert_false(has_line(r4, "10.64.9.0/26", NULL));
	assert_true(has_line(r4, "10.64.5.0/26 via 10.99.0.1", "proto static", NULL));
	assert_false(has_line(r4, "blackhole 10.64.5.0/26", NULL));
	assert_true(has_line(r4, "10.77.0.0/24 via 10.99.0.1", "proto static", NULL));
	free(r4);
	del_block(&c, "10.64.5.0/26");

	/* The workload's veth appears later (netsync_kick): its route is added then. */
	c.weps[1] = (struct netcalc_workload){"cali0001", &c.wep_addrs[0], 2};
	c.n_weps = 2;
	apply(k, &c, false, &rep);
	assert_int_equal(rep.routes_added, 2);
	r4 = test_out("ip -4 route show proto %d", TABBY_RTPROT);
	assert_true(has_line(r4, "10.64.0.2 dev cali0001", NULL));
	free(r4);
	/* The wiring added a workload route itself before we knew: adopted as it is, not an
	 * error, and not rewritten (no route event). */
	assert_int_equal(test_sh("ip link add cali0002 type veth peer name wl0002 && "
	                         "ip link set cali0002 up && "
	                         "ip route add 10.64.0.3/32 dev cali0002 scope link proto %d",
	                         TABBY_RTPROT),
	                 0);
	seen.n_problems = 0;
	monitor_start(&m);
	apply(k, &c, false, &rep);
	events = monitor_stop(&m);
	assert_int_equal(seen.n_problems, 0);
	assert_int_equal(rep.routes_added + rep.routes_replaced + rep.routes_failed, 0);
	assert_int_equal(count_with(events, "10.64.0.3"), 0);
	free(events);
	r4 = test_out("ip -4 route show proto %d", TABBY_RTPROT);
	assert_true(has_line(r4, "10.64.0.3 dev cali0002", "scope link", NULL));
	free(r4);
	/* A workload route of ours found on another device (the wiring of an earlier container
	 * that had the address) is replaced; and a foreign host route holding a workload's
	 * address is reported and left. (Host routes in the way are looked up one at a time; the
	 * check that they are ours must still hold.) */
	assert_int_equal(test_sh("ip link add cali0003 type veth peer name wl0003 && "
	                         "ip link set cali0003 up && "
	                         "ip -6 route add fd80::3/128 dev cali0002 proto %d && "
	                         "ip route add 10.64.0.4/32 dev cali0003 scope link proto static",
	                         TABBY_RTPROT),
	                 0);
	c.weps[2] = (struct netcalc_workload){"cali0003", &c.wep_addrs[3], 2};
	c.n_weps = 3;
	seen.n_problems = 0;
	apply(k, &c, false, &rep);
	assert_int_equal(rep.routes_replaced, 1);
	assert_int_equal(rep.routes_failed, 1);
	assert_true(problem_has(&seen, "10.64.0.4"));
	assert_true(problem_has(&seen, "not Tabby's"));
	r4 = test_out("ip route show 10.64.0.4/32; ip -6 route show fd80::3/128");
	assert_true(has_line(r4, "10.64.0.4 dev cali0003", "proto static", NULL));
	assert_true(has_line(r4, "fd80::3 dev cali0003", "proto 116", NULL));
	free(r4);
	c.n_weps = 2;
	assert_int_equal(test_sh("ip link del cali0003"), 0);
	apply(k, &c, false, &rep);

	/* IP-in-IP, when the kernel has it. */
	c.pools[0].vxlan = IPAM_ENCAP_NEVER;
	c.pools[0].ipip = IPAM_ENCAP_ALWAYS;
	c.nodes[0].ipip = A("10.64.0.5");
	seen.n_problems = 0;
	apply(k, &c, false, &rep);
	/* IP-in-IP from no node dropped (whether or not the kernel can make tunl0: another
	 * module's IP-in-IP device would take it); no VXLAN rule any more. */
	char *in = test_out("nft list chain inet %s input", NETSYNC_NAT_TABLE);
	assert_true(has_line(in, "meta l4proto ipencap ip saddr != @hosts4 counter", "drop", NULL));
	assert_false(has_line(in, "udp dport", NULL));
	free(in);
	in = test_out("nft list chain inet %s prerouting", NETSYNC_NAT_TABLE);
	assert_true(has_line(in, "iifname \"cali*\" meta l4proto ipencap drop", NULL));
	assert_false(has_line(in, "udp dport", NULL));
	free(in);
	char *links = test_out("ip -d link show");
	if (test_sh("ip link show tunl0 >/dev/null 2>&1") == 0) {
		r4 = test_out("ip -4 route show proto %d", TABBY_RTPROT);
		fprintf(stderr, "with IP-in-IP:\n%s", r4);
		assert_true(has_line(r4, "10.64.1.0/26 via 10.99.0.12 dev tunl0", "onlink", NULL));
		assert_true(
		    has_line(r4, "10.64.0.128/26 via 10.98.0.13 dev tunl0", "onlink", NULL));
		free(r4);
		char *t = test_out("ip addr show dev tunl0");
		assert_true(has_line(t, "mtu 1440", "UP", NULL) || has_line(t, "mtu 1440", NULL));
		assert_true(has_line(t, "inet 10.64.0.5/32", NULL));
		free(t);
	} else {
		fprintf(stderr, "IP-in-IP: this kernel has no ipip module; the tunl0 part is "
		                "skipped (the applier reported it)\n");
		assert_true(problem_has(&seen, "cannot create tunl0"));
	}
	free(links);
	/* VXLAN no longer wanted: its device is gone. */
	assert_int_not_equal(test_sh("ip link show vxlan.tabby >/dev/null 2>&1"), 0);

	/* No tunnel and no NAT: the NAT table goes too. */
	c.pools[0].ipip = IPAM_ENCAP_NEVER;
	c.pools[0].nat_outgoing = false;
	apply(k, &c, false, &rep);
	assert_int_not_equal(test_sh("nft list table inet %s >/dev/null 2>&1", NETSYNC_NAT_TABLE),
	                     0);
	r4 = test_out("ip -4 route show proto %d", TABBY_RTPROT);
	assert_true(has_line(r4, "10.64.0.128/26 via 10.98.0.13 dev ext0", NULL) ||
	            problem_has(&seen, "10.64.0.128/26"));
	free(r4);
	/* A full apply from a new applier with nothing wanted removes everything of ours and
	 * nothing else. */
	netsync_kernel_free(k);
	assert_int_equal(netsync_kernel_new(on_gone, on_problem, &seen, &k, err, sizeof err), 0);
	struct netcalc_state empty = {0};
	seen.n_gone = 0;
	assert_int_equal(netsync_kernel_apply(k, &empty, true, &rep), 0);
	r4 = test_out("ip route show proto %d; ip -6 route show proto %d", TABBY_RTPROT,
	              TABBY_RTPROT);
	assert_string_equal(r4, "");
	free(r4);
	assert_true(gone_has(&seen, "10.64.0.2") && gone_has(&seen, "10.64.0.3"));
	r4 = test_out("ip -4 route show");
	assert_true(has_line(r4, "10.77.0.0/24 via 10.99.0.1", "proto static", NULL));
	free(r4);
	netsync_kernel_free(k);
}

/* One of the cases below: an applier in a namespace of its own holding host a (host_setup()). */
struct fix {
	struct seen seen;
	struct netsync_kernel *k;
	struct netsync_report rep;
	struct cluster c;
};

static int fix_setup(void **state)
{
	char err[256];
	struct fix *f = calloc(1, sizeof *f);
	assert_non_null(f);
	cluster_init(&f->c);
	host_setup();
	assert_int_equal(netsync_kernel_new(on_gone, on_problem, &f->seen, &f->k, err, sizeof err),
	                 0);
	*state = f;
	return 0;
}

static int fix_teardown(void **state)
{
	struct fix *f = *state;
	netsync_kernel_free(f->k);
	free(f);
	return 0;
}

/* vxlan.tabby rebuilt by an incremental apply (this host's address moved, and with it the
 * device's local address): the kernel takes the routes through the old device with it, and the
 * same apply puts them back. */
static void test_vxlan_rebuilt(void **state)
{
	struct fix *f = *state;
	apply(f->k, &f->c, true, &f->rep);
	char *r4 = test_out("ip -4 route show proto %d", TABBY_RTPROT);
	assert_true(has_line(r4, "10.64.0.128/26 via 10.64.0.129 dev vxlan.tabby", "onlink", NULL));
	free(r4);

	f->c.nodes[0].ip4.addr = A("10.99.0.21");
	apply(f->k, &f->c, false, &f->rep);
	char *l = test_out("ip -d link show vxlan.tabby");
	assert_true(has_line(l, "local 10.99.0.21", NULL));
	free(l);
	r4 = test_out("ip -4 route show proto %d", TABBY_RTPROT);
	fprintf(stderr, "after vxlan.tabby was rebuilt:\n%s", r4);
	assert_true(has_line(r4, "10.64.0.128/26 via 10.64.0.129 dev vxlan.tabby", "onlink", NULL));
	free(r4);
	assert_int_equal(f->rep.routes_added, 1);
	assert_int_equal(f->rep.routes_failed, 0);
	assert_int_equal(f->seen.n_problems, 0);

	/* The next incremental apply finds everything in place. */
	apply(f->k, &f->c, false, &f->rep);
	assert_int_equal(f->rep.routes_added + f->rep.routes_replaced + f->rep.routes_deleted, 0);
	assert_int_equal(f->rep.links_changed, 0);
}

/* A foreign route took a destination the last apply held, and then the route we want there
 * changes: an incremental apply leaves the foreign route and reports it, as a full one does. */
static void test_foreign_route_kept(void **state)
{
	struct fix *f = *state;
	apply(f->k, &f->c, true, &f->rep);
	assert_int_equal(test_sh("ip route del 10.64.0.64/26 proto %d && "
	                         "ip route add 10.64.0.64/26 via 10.99.0.1 proto static",
	                         TABBY_RTPROT),
	                 0);

	/* b moves: its block and its borrowed address get another gateway. */
	f->c.nodes[1].ip4.addr = A("10.99.0.22");
	apply(f->k, &f->c, false, &f->rep);
	char *r4 = test_out("ip -4 route show");
	fprintf(stderr, "after b moved:\n%s", r4);
	assert_true(has_line(r4, "10.64.0.64/26 via 10.99.0.1", "proto static", NULL));
	assert_true(has_line(r4, "10.64.0.7 via 10.99.0.22", "proto 116", NULL));
	free(r4);
	assert_int_equal(f->rep.routes_replaced, 1);
	assert_int_equal(f->rep.routes_failed, 1);
	assert_true(problem_has(&f->seen, "10.64.0.64/26"));
	assert_true(problem_has(&f->seen, "not Tabby's"));

	/* Still left by the next apply; once the foreign route goes, the next apply adds ours. */
	apply(f->k, &f->c, false, &f->rep);
	assert_int_equal(f->rep.routes_failed, 1);
	r4 = test_out("ip -4 route show 10.64.0.64/26");
	assert_true(has_line(r4, "via 10.99.0.1", "proto static", NULL));
	free(r4);
	assert_int_equal(test_sh("ip route del 10.64.0.64/26 proto static"), 0);
	apply(f->k, &f->c, false, &f->rep);
	assert_int_equal(f->rep.routes_added, 1);
	assert_int_equal(f->rep.routes_failed, 0);
	r4 = test_out("ip -4 route show 10.64.0.64/26");
	assert_true(has_line(r4, "via 10.99.0.22", "proto 116", NULL));
	free(r4);
}

/* tunl0 is the kernel's device, and other software puts addresses on it too: with IP-in-IP
 * wanted, only the addresses in a pool are ours to take away. Without the ipip module (tunl0
 * cannot be made) a veth named tunl0 stands in for it: the applier takes the device it finds
 * under that name, whatever its kind, and only its addresses are checked here. */
static void test_tunl0_foreign_addresses(void **state)
{
	struct fix *f = *state;
	if (test_sh("ip link show tunl0 >/dev/null 2>&1") != 0) {
		fprintf(stderr, "IP-in-IP: no ipip module; a veth named tunl0 stands in\n");
		assert_int_equal(test_sh("ip link add tunl0 type veth peer name tunl0p"), 0);
	}
	/* A foreign address, and a stale one from the pool (an earlier tunnel address). */
	assert_int_equal(test_sh("ip addr add 192.168.77.1/32 dev tunl0 && "
	                         "ip addr add 10.64.0.99/32 dev tunl0"),
	                 0);
	f->c.pools[0].vxlan = IPAM_ENCAP_NEVER;
	f->c.pools[0].ipip = IPAM_ENCAP_ALWAYS;

	/* No tunnel address yet. */
	apply(f->k, &f->c, true, &f->rep);
	char *a = test_out("ip -4 addr show dev tunl0");
	fprintf(stderr, "tunl0 without a tunnel address:\n%s", a);
	assert_true(has_line(a, "inet 192.168.77.1/32", NULL));
	assert_false(has_line(a, "10.64.0.99", NULL));
	free(a);

	/* The tunnel address comes. */
	f->c.nodes[0].ipip = A("10.64.0.5");
	apply(f->k, &f->c, false, &f->rep);
	a = test_out("ip -4 addr show dev tunl0");
	fprintf(stderr, "tunl0 with its tunnel address:\n%s", a);
	assert_true(has_line(a, "inet 10.64.0.5/32", NULL));
	assert_true(has_line(a, "inet 192.168.77.1/32", NULL));
	free(a);
	/* A full apply agrees. */
	apply(f->k, &f->c, true, &f->rep);
	a = test_out("ip -4 addr show dev tunl0");
	assert_true(has_line(a, "inet 10.64.0.5/32", NULL));
	assert_true(has_line(a, "inet 192.168.77.1/32", NULL));
	free(a);
}

/*
 * Refusals that leave the socket working (a route in the way, a device the kernel will not make,
 * the NAT table held by another program) are tried again soon: after 1 s, then after a wait that
 * doubles up to 30 s while they last, and not at all once an apply is complete. Each case applies,
 * then takes the decision the agent's recompute takes after an apply (netsync_retry_after()),
 * given the decision after the apply before: the wait before the next try, or 0 for none before
 * the next change or refresh.
 */
static unsigned apply_then_decide(struct fix *f, bool full, unsigned prev_ms)
{
	apply(f->k, &f->c, full, &f->rep);
	return netsync_retry_after(0, &f->rep, prev_ms);
}

static void test_retry_route(void **state)
{
	struct fix *f = *state;
	/* A foreign route holds b's block. */
	assert_int_equal(test_sh("ip route add 10.64.0.64/26 via 10.99.0.1 proto static"), 0);
	unsigned retry_ms = apply_then_decide(f, true, 0);
	assert_int_equal(f->rep.routes_failed, 1);
	assert_int_equal(retry_ms, 1000);
	/* It lasts: each try waits twice as long, up to 30 s, never less than 1 s. */
	static const unsigned waits[] = {2000, 4000, 8000, 16000, 30000, 30000};
	for (unsigned i = 0; i < sizeof waits / sizeof waits[0]; i++) {
		retry_ms = apply_then_decide(f, false, retry_ms);
		assert_int_equal(f->rep.routes_failed, 1);
		assert_int_equal(retry_ms, waits[i]);
	}
	/* It goes: the retry puts our route there, and nothing more is due. */
	assert_int_equal(test_sh("ip route del 10.64.0.64/26 proto static"), 0);
	retry_ms = apply_then_decide(f, false, retry_ms);
	assert_int_equal(f->rep.routes_added, 1);
	assert_int_equal(f->rep.routes_failed, 0);
	assert_int_equal(retry_ms, 0);
	assert_int_equal(apply_then_decide(f, false, retry_ms), 0);
	/* The socket failed: the same waits. */
	assert_int_equal(netsync_retry_after(-EIO, NULL, 0), 1000);
	assert_int_equal(netsync_retry_after(-EIO, NULL, 1000), 2000);
	assert_int_equal(netsync_retry_after(-EIO, NULL, 30000), 30000);
}

static void test_retry_device(void **state)
{
	struct fix *f = *state;
	/* Another program's VXLAN device has the VNI and port: vxlan.tabby cannot be made. */
	assert_int_equal(
	    test_sh("ip link add vxother type vxlan id 4096 dstport 4789 local 10.99.0.11 "
	            "nolearning"),
	    0);
	unsigned retry_ms = apply_then_decide(f, true, 0);
	assert_true(f->rep.links_failed > 0);
	assert_true(problem_has(&f->seen, "cannot create the VXLAN device vxlan.tabby"));
	assert_int_equal(retry_ms, 1000);
	assert_int_equal(test_sh("ip link del vxother"), 0);
	retry_ms = apply_then_decide(f, false, retry_ms);
	assert_int_equal(f->rep.links_failed, 0);
	assert_int_equal(f->rep.routes_failed, 0);
	assert_int_equal(retry_ms, 0);
	char *r4 = test_out("ip -4 route show proto %d", TABBY_RTPROT);
	assert_true(has_line(r4, "10.64.0.128/26 via 10.64.0.129 dev vxlan.tabby", "onlink", NULL));
	free(r4);
}

/* A device setting the kernel refuses leaves the device unknown, so that an incremental retry
 * of the same state looks at it again (and not only a full apply). */
static void test_retry_settings(void **state)
{
	struct fix *f = *state;
	struct netcalc_state st;
	apply(f->k, &f->c, true, &f->rep);
	assert_int_equal(f->rep.links_failed, 0);
	for (int i = 0; i < 2; i++) {
		compute(&f->c, &st);
		st.vxlan[0].mtu = 10; /* below any device's minimum */
		assert_int_equal(netsync_kernel_apply(f->k, &st, false, &f->rep), 0);
		netcalc_state_free(&st);

		assert_true(f->rep.links_failed > 0); /* the second time too: it looked again */
	}
	apply(f->k, &f->c, false, &f->rep);
	assert_int_equal(f->rep.links_failed, 0);
	char *l = test_out("ip link show vxlan.tabby");
	assert_true(has_line(l, "mtu 1450", NULL));
	free(l);
}

static void test_retry_nat(void **state)
{
	struct fix *f = *state;
	/* A table with the owner flag can be changed only through the netlink socket that made
	 * it, this test's, until that socket closes. */
	struct nft_ctx *owner = nft_ctx_new(NFT_CTX_DEFAULT);
	assert_non_null(owner);
	assert_int_equal(nft_ctx_buffer_error(owner), 0);
	assert_int_equal(
	    nft_run_cmd_from_buffer(owner, "add table inet " NETSYNC_NAT_TABLE " { flags owner; }"),
	    0);
	unsigned retry_ms = apply_then_decide(f, true, 0);
	assert_true(f->rep.nat_failed);
	assert_false(f->rep.nat_changed);
	assert_int_equal(f->rep.routes_failed + f->rep.links_failed, 0);
	assert_int_equal(retry_ms, 1000);
	nft_ctx_free(owner);
	retry_ms = apply_then_decide(f, false, retry_ms);
	assert_false(f->rep.nat_failed);
	assert_true(f->rep.nat_changed);
	assert_int_equal(retry_ms, 0);
	char *t = test_out("nft list table inet %s", NETSYNC_NAT_TABLE);
	assert_true(has_line(t, "ip saddr @masq4 ip daddr != @pools4 masquerade", NULL));
	free(t);
}

int main(void)
{
	if (geteuid() != 0) {
		fprintf(stderr, "test_netsync_kernel needs root; skipped\n");
		return 77;
	}
	/* Everything below happens in a network namespace of this process alone; it goes away
	 * with the process, whatever the outcome. */
	if (unshare(CLONE_NEWNET) != 0) {
		fprintf(stderr, "cannot make a network namespace: %s; skipped\n", strerror(errno));
		return 77;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_applier),
	    cmocka_unit_test_setup_teardown(test_vxlan_rebuilt, fix_setup, fix_teardown),
	    cmocka_unit_test_setup_teardown(test_foreign_route_kept, fix_setup, fix_teardown),
	    cmocka_unit_test_setup_teardown(test_tunl0_foreign_addresses, fix_setup, fix_teardown),
	    cmocka_unit_test_setup_teardown(test_retry_route, fix_setup, fix_teardown),
	    cmocka_unit_test_setup_teardown(test_retry_device, fix_setup, fix_teardown),
	    cmocka_unit_test_setup_teardown(test_retry_settings, fix_setup, fix_teardown),
	    cmocka_unit_test_setup_teardown(test_retry_nat, fix_setup, fix_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
