/*
 * The control plane guard (guard.c): the members' addresses parsed and normalised, and the table
 * it builds loaded into a real kernel, in a private network namespace (the process unshares one;
 * the kernel cases need root and are skipped otherwise).
 *
 * The topology: this process is a host with ext0 (10.99.0.11/24, fd00:99::11/64) towards a
 * "remote" namespace (10.99.0.12, fd00:99::12), and a workload namespace behind cali-tg0 (the
 * host end, named as the CNI plugin names them), 10.65.0.2 and fd00:65::2, routed as the agent
 * routes workloads. Listeners stand on the host and on the remote on a guarded port and on one
 * that is not, and connections are made for real:
 * - from the workload, the guarded ports of the host (input) and of the remote (forward) are
 *   refused at once with a reset, over IPv4 and IPv6; the other ports connect;
 * - the remote, which is not a workload, connects to the host's guarded port;
 * - a new table (a member left, another joined) replaces the old one in one load: the port no
 *   longer listed connects, the new one is refused, and there is one table;
 * - loading the same table twice is harmless.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/guard.h"
#include "agent/internal.h"
#include "agent/nft.h"
#include "agent/tests/shell.h"

/* ------------------------------------------------------------------------------------------ */
/* The pure half                                                                               */

static void test_parse(void **state)
{
	(void)state;
	struct guard_port g;
	char text[IPAM_ADDR_STRLEN];

	assert_true(guard_port_parse("10.99.0.11:7790", &g));
	assert_int_equal(g.addr.family, 4);
	assert_string_equal(ipam_addr_format(&g.addr, text), "10.99.0.11");
	assert_int_equal(g.port, 7790);
	assert_true(guard_port_parse("[fd00:99::11]:65535", &g));
	assert_int_equal(g.addr.family, 6);
	assert_string_equal(ipam_addr_format(&g.addr, text), "fd00:99::11");
	assert_int_equal(g.port, 65535);
	/* IPv4-mapped: the listener takes IPv4, so the guard must refuse IPv4. */
	assert_true(guard_port_parse("[::ffff:10.99.0.11]:7791", &g));
	assert_int_equal(g.addr.family, 4);
	assert_string_equal(ipam_addr_format(&g.addr, text), "10.99.0.11");
	assert_int_equal(g.port, 7791);

	static const char *const bad[] = {
	    "",
	    "10.99.0.11",
	    "10.99.0.11:",
	    "10.99.0.11:0",
	    "10.99.0.11:65536",
	    ":7790",
	    "host1:7790",
	    "10.99.0.11:77a",
	    "10.99.0.11:-1",
	    "10.99.0.11: 80",
	    "fd00::1:80",
	    "[fd00::1]80",
	    "[fd00::1]:",
	    "[]:80",
	    "[fd00::1:80",
	    "10.99.0.256:80",
	    "10.99.0.11:7790:1",
	    "10.99.0.11:0000080",
	    "10.99.0.11:+80",
	    "::ffff:10.99.0.11:80",
	    "[fe80::1%eth0]:80",
	    "[fd00::1]:07791x",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		if (guard_port_parse(bad[i], &g)) {
			fail_msg("'%s' parsed", bad[i]);
		}
	}
	assert_false(guard_port_parse(NULL, &g));
}

/* The agent takes only addresses the guard can express, written one way. */
static void test_address_ok(void **state)
{
	(void)state;
	assert_true(agent_address_ok("10.99.0.11:7791", false));
	assert_true(agent_address_ok("[fd00:99::11]:7791", true));
	assert_false(agent_address_ok("[fd00:99::11]:7791", false)); /* raft: IPv4 only */
	static const char *const bad[] = {
	    "0.0.0.0:7791",        "[::]:7791",         "[::ffff:10.99.0.11]:7791",
	    "[10.99.0.11]:7791",   "10.99.0.11:007791", "10.99.0.11:+7791",
	    "[fe80::1%eth0]:7791", "fd00:99::11:7791",  "10.99.0.11",
	    "localhost:7791",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		if (agent_address_ok(bad[i], true)) {
			fail_msg("'%s' accepted", bad[i]);
		}
	}
}

static struct guard_port gp(const char *s)
{
	struct guard_port g;
	if (!guard_port_parse(s, &g)) {
		fail_msg("'%s' does not parse", s);
	}
	return g;
}

static void test_normalise(void **state)
{
	(void)state;
	struct guard_port v[] = {
	    gp("[fd00::2]:7791"), gp("10.0.0.2:7790"),  gp("10.0.0.1:7791"),  gp("10.0.0.2:7790"),
	    gp("10.0.0.1:7790"),  gp("[fd00::1]:7791"), gp("[fd00::2]:7791"),
	};
	unsigned n = guard_ports_normalise(v, sizeof v / sizeof *v);
	assert_int_equal(n, 5);
	static const char *const want[] = {"10.0.0.1", "10.0.0.1", "10.0.0.2", "fd00::1",
	                                   "fd00::2"};
	static const unsigned ports[] = {7790, 7791, 7790, 7791, 7791};
	for (unsigned i = 0; i < n; i++) {
		char text[IPAM_ADDR_STRLEN];
		assert_string_equal(ipam_addr_format(&v[i].addr, text), want[i]);
		assert_int_equal(v[i].port, ports[i]);
	}
	assert_int_equal(guard_ports_normalise(v, 0), 0);
}

/* The document: one table replaced whole, both sets, and four rules that refuse with a reset. */
static void test_commands(void **state)
{
	(void)state;
	struct guard_port v[] = {gp("10.0.0.1:7790"), gp("10.0.0.1:7791"), gp("[fd00::1]:7791")};
	json_t *doc = guard_commands(v, 3, "cali");
	assert_non_null(doc);
	json_t *cmds = json_object_get(doc, "nftables");
	size_t i;
	json_t *c;
	unsigned tables = 0, sets = 0, chains = 0, rules = 0, elems4 = 0, elems6 = 0;
	json_array_foreach (cmds, i, c) {
		json_t *add = json_object_get(c, "add");
		if (json_object_get(c, "delete") != NULL) {
			assert_string_equal(
			    json_string_value(json_object_get(
			        json_object_get(json_object_get(c, "delete"), "table"), "name")),
			    GUARD_TABLE);
			continue;
		}
		assert_non_null(add);
		if (json_object_get(add, "table") != NULL) {
			tables++;
		} else if (json_object_get(add, "set") != NULL) {
			json_t *s = json_object_get(add, "set");
			const char *name = json_string_value(json_object_get(s, "name"));
			unsigned ne = (unsigned)json_array_size(json_object_get(s, "elem"));
			sets++;
			if (strcmp(name, "agents4") == 0) {
				elems4 = ne;
			} else {
				assert_string_equal(name, "agents6");
				elems6 = ne;
			}
		} else if (json_object_get(add, "chain") != NULL) {
			chains++;
		} else {
			json_t *r = json_object_get(add, "rule");
			assert_non_null(r);
			char *text = json_dumps(r, JSON_COMPACT);
			assert_non_null(strstr(text, "\"cali*\""));
			assert_non_null(strstr(text, "\"tcp reset\""));
			free(text);
			rules++;
		}
	}
	assert_int_equal(tables, 2); /* add, delete, add */
	assert_int_equal(sets, 2);
	assert_int_equal(elems4, 2);
	assert_int_equal(elems6, 1);
	assert_int_equal(chains, 2);
	assert_int_equal(rules, 4);
	json_decref(doc);
}

/* ------------------------------------------------------------------------------------------ */
/* The kernel                                                                                  */

#define WL_NS     "tabby-tguard-wl"
#define REMOTE_NS "tabby-tguard-remote"

static bool have_kernel;

struct ns_sock {
	const char *ns; /* NULL: this thread's namespace */
	int domain;
	int fd;
};

static void *ns_sock_thread(void *arg)
{
	struct ns_sock *s = arg;
	if (s->ns != NULL) {
		char path[128];
		snprintf(path, sizeof path, "/run/netns/%s", s->ns);
		int nfd = open(path, O_RDONLY | O_CLOEXEC);
		if (nfd < 0 || setns(nfd, CLONE_NEWNET) != 0) {
			s->fd = -1;
			if (nfd >= 0) {
				close(nfd);
			}
			return NULL;
		}
		close(nfd);
	}
	s->fd = socket(s->domain, SOCK_STREAM | SOCK_CLOEXEC, 0);
	return NULL;
}

/* A TCP socket in namespace ns; it stays there whichever thread uses it. */
static int ns_socket(const char *ns, int domain)
{
	struct ns_sock s = {ns, domain, -1};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, ns_sock_thread, &s), 0);
	pthread_join(t, NULL);
	assert_true(s.fd >= 0);
	return s.fd;
}

static void fill_sa(const char *addr, unsigned port, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof *ss);
	if (strchr(addr, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		assert_int_equal(inet_pton(AF_INET6, addr, &s6->sin6_addr), 1);
		*len = sizeof *s6;
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		assert_int_equal(inet_pton(AF_INET, addr, &s4->sin_addr), 1);
		*len = sizeof *s4;
	}
}

/* A listener on addr:port in ns (the handshake completes without accept()). */
static int listen_on(const char *ns, const char *addr, unsigned port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	fill_sa(addr, port, &ss, &len);
	int fd = ns_socket(ns, ss.ss_family);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
		fail_msg("bind %s:%u: %s", addr, port, strerror(errno));
	}
	assert_int_equal(listen(fd, 16), 0);
	return fd;
}

/* Connect from ns to addr:port: 0, or the errno the attempt ended with (ETIMEDOUT after 3 s). */
static int connect_from(const char *ns, const char *addr, unsigned port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	fill_sa(addr, port, &ss, &len);
	int fd = ns_socket(ns, ss.ss_family);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	int rv = connect(fd, (struct sockaddr *)&ss, len);
	int err = rv == 0 ? 0 : errno;
	if (err == EINPROGRESS) {
		struct pollfd p = {fd, POLLOUT, 0};
		if (poll(&p, 1, 3000) != 1) {
			err = ETIMEDOUT;
		} else {
			socklen_t el = sizeof err;
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
		}
	}
	close(fd);
	return err;
}

static void load(struct agent_nft *n, const struct guard_port *v, unsigned nv)
{
	char err[512];
	json_t *doc = guard_commands(v, nv, "cali");
	assert_non_null(doc);
	if (agent_nft_apply(n, doc, err, sizeof err) != 0) {
		fail_msg("load: %s", err);
	}
	json_decref(doc);
}

static int kernel_setup(void **state)
{
	(void)state;
	if (!have_kernel) {
		return 0;
	}
	test_sh("ip netns del " WL_NS " 2>/dev/null; ip netns del " REMOTE_NS " 2>/dev/null");
	int rv = test_sh(
	    "set -e; ip link set lo up; "
	    "ip netns add " WL_NS "; ip netns add " REMOTE_NS "; "
	    "ip link add ext0 type veth peer name ext0p; ip link set ext0p netns " REMOTE_NS "; "
	    "ip addr add 10.99.0.11/24 dev ext0; ip addr add fd00:99::11/64 dev ext0 nodad; "
	    "ip link set ext0 up; ip route add default via 10.99.0.12; "
	    "ip -n " REMOTE_NS " link set lo up; "
	    "ip -n " REMOTE_NS " addr add 10.99.0.12/24 dev ext0p; "
	    "ip -n " REMOTE_NS " addr add fd00:99::12/64 dev ext0p nodad; "
	    "ip -n " REMOTE_NS " link set ext0p up; "
	    "ip -n " REMOTE_NS " route add 10.65.0.0/16 via 10.99.0.11; "
	    "ip -n " REMOTE_NS " route add fd00:65::/64 via fd00:99::11; "
	    "ip link add cali-tg0 type veth peer name eth0; ip link set eth0 netns " WL_NS "; "
	    "ip link set cali-tg0 address ee:ee:ee:ee:ee:ee up; "
	    "sysctl -qw net.ipv4.conf.cali-tg0.proxy_arp=1 net.ipv4.ip_forward=1 "
	    "net.ipv6.conf.all.forwarding=1; "
	    "ip route add 10.65.0.2/32 dev cali-tg0 scope link; "
	    "ip -n " WL_NS " link set lo up; "
	    "ip -n " WL_NS " addr add 10.65.0.2/32 dev eth0; "
	    "ip -n " WL_NS " addr add fd00:65::2/128 dev eth0 nodad; "
	    "ip -n " WL_NS " link set eth0 up; "
	    "ip -n " WL_NS " route add 169.254.1.1 dev eth0 scope link; "
	    "ip -n " WL_NS " route add default via 169.254.1.1 dev eth0; "
	    "ip route add fd00:65::2/128 dev cali-tg0; "
	    "for i in $(seq 50); do "
	    "  ll=$(ip -6 addr show dev cali-tg0 scope link | sed -n 's/.*inet6 "
	    "\\([^/]*\\).*/\\1/p'); "
	    "  [ -n \"$ll\" ] && break; sleep 0.1; done; "
	    "ip -n " WL_NS " -6 route add default via $ll dev eth0");
	assert_int_equal(rv, 0);
	return 0;
}

static int kernel_teardown(void **state)
{
	(void)state;
	if (have_kernel) {
		test_sh("ip netns del " WL_NS " 2>/dev/null; ip netns del " REMOTE_NS
		        " 2>/dev/null; "
		        "ip link del ext0 2>/dev/null; ip link del cali-tg0 2>/dev/null; "
		        "nft delete table inet " GUARD_TABLE " 2>/dev/null; true");
	}
	return 0;
}

static void test_kernel(void **state)
{
	(void)state;
	if (!have_kernel) {
		skip();
	}
	int fds[] = {
	    listen_on(NULL, "10.99.0.11", 7790),      listen_on(NULL, "10.99.0.11", 7000),
	    listen_on(NULL, "fd00:99::11", 7791),     listen_on(NULL, "fd00:99::11", 7000),
	    listen_on(REMOTE_NS, "10.99.0.12", 7791), listen_on(REMOTE_NS, "10.99.0.12", 7000),
	    listen_on(REMOTE_NS, "10.99.0.12", 7792),
	};
	/* Before the guard, everything connects: the topology is right. */
	assert_int_equal(connect_from(WL_NS, "10.99.0.11", 7790), 0);
	assert_int_equal(connect_from(WL_NS, "10.99.0.12", 7791), 0);
	assert_int_equal(connect_from(WL_NS, "fd00:99::11", 7791), 0);

	struct agent_nft *n;
	assert_int_equal(agent_nft_new(&n), 0);
	struct guard_port v[] = {gp("10.99.0.11:7790"), gp("[fd00:99::11]:7791"),
	                         gp("10.99.0.12:7791")};
	load(n, v, 3);

	/* A reset at once: ECONNREFUSED, not a timeout. */
	assert_int_equal(connect_from(WL_NS, "10.99.0.11", 7790), ECONNREFUSED);  /* input */
	assert_int_equal(connect_from(WL_NS, "fd00:99::11", 7791), ECONNREFUSED); /* input */
	assert_int_equal(connect_from(WL_NS, "10.99.0.12", 7791), ECONNREFUSED);  /* forward */
	/* Other ports of the same hosts, and the host itself from outside, are not touched. */
	assert_int_equal(connect_from(WL_NS, "10.99.0.11", 7000), 0);
	assert_int_equal(connect_from(WL_NS, "fd00:99::11", 7000), 0);
	assert_int_equal(connect_from(WL_NS, "10.99.0.12", 7000), 0);
	assert_int_equal(connect_from(WL_NS, "10.99.0.12", 7792), 0);
	assert_int_equal(connect_from(REMOTE_NS, "10.99.0.11", 7790), 0);

	/* A member moved its API port: one load replaces the table. */
	load(n, v, 3); /* the same again: harmless */
	struct guard_port w[] = {gp("10.99.0.11:7790"), gp("10.99.0.12:7792")};
	load(n, w, 2);
	assert_int_equal(connect_from(WL_NS, "10.99.0.12", 7791), 0);
	assert_int_equal(connect_from(WL_NS, "10.99.0.12", 7792), ECONNREFUSED);
	assert_int_equal(connect_from(WL_NS, "fd00:99::11", 7791), 0);
	assert_int_equal(connect_from(WL_NS, "10.99.0.11", 7790), ECONNREFUSED);
	char *list = test_out("nft list tables");
	const char *p = strstr(list, "table inet " GUARD_TABLE);
	assert_non_null(p);
	assert_null(strstr(p + 1, "table inet " GUARD_TABLE));
	free(list);

	agent_nft_free(n);
	for (size_t i = 0; i < sizeof fds / sizeof *fds; i++) {
		close(fds[i]);
	}
}

int main(void)
{
	if (geteuid() == 0 && unshare(CLONE_NEWNET) == 0) {
		have_kernel = true;
	} else {
		fprintf(stderr,
		        "test_guard: not root or no network namespace; kernel case skipped\n");
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_address_ok),
	    cmocka_unit_test(test_normalise),
	    cmocka_unit_test(test_commands),
	    cmocka_unit_test_setup_teardown(test_kernel, kernel_setup, kernel_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
