/*
 * Container wiring through libnl (wire.h, calico-behaviour.md 1.5 and 5.8).
 *
 * wire_add() converges rather than builds. It first looks at both sides: the host end by name in
 * this thread's namespace, the container end by name from a thread inside the container's
 * namespace. The pair is "complete" when the host end is a veth whose peer (IFLA_LINK, in the
 * namespace IFLA_LINK_NETNSID names) is exactly the container end: the peer's namespace id is
 * compared with the id this namespace gives the container's namespace file (RTM_GETNSID), since
 * interface indexes alone repeat across namespaces. A complete pair is kept and only its settings
 * are corrected, so a repeated ADD never interrupts a running container; anything else is removed
 * and the pair is created again from the host side with the container end placed straight into
 * the container's namespace (IFLA_NET_NS_FD on the peer), so the container end never exists under
 * its name in the host namespace.
 *
 * The order of the remaining steps follows from the kernel: accept_dad=0 must be written before
 * an end comes up or its addresses stay tentative for a second; a veth end only gets its IPv6
 * link-local address once it has carrier, that is once both ends are up, so the container's IPv6
 * default route (via the host end's link-local address) is added in a second trip into the
 * container after the host end's address appeared; IPv4 host routes need the host end up.
 *
 * Sysctls: IPv4 per-interface settings go through netlink (IFLA_AF_SPEC/AF_INET devconf); the
 * neighbour proxy_delay and all IPv6 settings have no netlink setter and are written under
 * /proc/sys/net, which shows the network namespace of the thread that opens the file: the calling
 * thread for the host, the namespace thread for the container.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/ip.h>
#include <linux/net_namespace.h>
#include <linux/rtnetlink.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <netlink/netlink.h>
#include <netlink/msg.h>
#include <netlink/attr.h>
#include <netlink/cache.h>
#include <netlink/route/link.h>
#include <netlink/route/neighbour.h>
#include <netlink/route/neightbl.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/link/inet.h>
#include <netlink/route/link/inet6.h>
#include <netlink/route/addr.h>
#include <netlink/route/route.h>
#include <netlink/route/rule.h>
#include <netlink/route/netconf.h>
#include <linux/fib_rules.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <netlink/netfilter/nfnl.h>
#include <netlink/netfilter/ct.h>

#include "agent/wire.h"

#define MTU_DEFAULT 1500
/* The host end's IPv6 link-local address: up to 20 looks 50 ms apart (Calico: 10 x 50 ms). */
#define LL_TRIES    20
#define LL_PAUSE_NS (50L * 1000 * 1000)
/* A route socket's receive buffer: the kernel sizes dump datagrams to the largest buffer a reader
 * used, up to 32 KiB; one answer that is not a dump (a link with many attributes) has room too. */
#define NL_BUF (64u * 1024)

static const uint8_t host_mac[6] = {0xee, 0xee, 0xee, 0xee, 0xee, 0xee};
static const uint8_t gateway4[4] = {169, 254, 1, 1};
static const uint8_t zeros[16];

/* IPv4 devconf entries the host end needs at 1 (5.8: Felix sets the same). */
static const struct {
	unsigned id;
	const char *name;
} host_conf4[] = {
    {IPV4_DEVCONF_PROXY_ARP, "proxy_arp"},
    {IPV4_DEVCONF_FORWARDING, "forwarding"},
    {IPV4_DEVCONF_ROUTE_LOCALNET, "route_localnet"},
    {IPV4_DEVCONF_RP_FILTER, "rp_filter"},
};

/* ------------------------------------------------------------------------------------------ */
/* Errors                                                                                      */

/* libnl folds the kernel's errno into its own codes; map back what callers can act on. */
static int nl_errno(int nlerr)
{
	switch (nlerr < 0 ? -nlerr : nlerr) {
	case NLE_NOMEM:
		return -ENOMEM;
	case NLE_EXIST:
		return -EEXIST;
	case NLE_OBJ_NOTFOUND:
	case NLE_NODEV:
		return -ENOENT;
	case NLE_PERM:
		return -EPERM;
	case NLE_NOACCESS:
		return -EACCES;
	case NLE_BUSY:
		return -EBUSY;
	case NLE_INVAL:
		return -EINVAL;
	case NLE_RANGE:
		return -ERANGE;
	case NLE_NOADDR:
		return -EADDRNOTAVAIL;
	case NLE_OPNOTSUPP:
		return -EOPNOTSUPP;
	case NLE_AF_NOSUPPORT:
		return -EAFNOSUPPORT;
	case NLE_AGAIN:
		return -EAGAIN;
	case NLE_INTR:
		return -EINTR;
	case NLE_MSGSIZE:
		return -EMSGSIZE;
	default:
		return -EIO;
	}
}

static void vput(char *err, size_t errlen, const char *why, const char *fmt, va_list ap)
{
	if (errlen == 0) {
		return;
	}
	int n = vsnprintf(err, errlen, fmt, ap);
	if (why != NULL && n >= 0 && (size_t)n < errlen) {
		snprintf(err + n, errlen - (size_t)n, ": %s", why);
	}
}

/* One line in err; returns rc. */
static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vput(err, errlen, NULL, fmt, ap);
	va_end(ap);
	return rc;
}

/* "<what>: <strerror(errnum)>"; returns -errnum. */
static int sysfail(char *err, size_t errlen, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int sysfail(char *err, size_t errlen, int errnum, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vput(err, errlen, strerror(errnum), fmt, ap);
	va_end(ap);
	return -errnum;
}

/* "<what>: <libnl's text>"; returns the errno nl_errno() maps the code to. */
static int nlfail(char *err, size_t errlen, int nlerr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int nlfail(char *err, size_t errlen, int nlerr, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vput(err, errlen, nl_geterror(nlerr), fmt, ap);
	va_end(ap);
	return nl_errno(nlerr);
}

/* ------------------------------------------------------------------------------------------ */
/* Small helpers                                                                               */

static int route_socket(struct nl_sock **out, char *err, size_t errlen)
{
	struct nl_sock *sk = nl_socket_alloc();
	if (sk == NULL) {
		return fail(err, errlen, -ENOMEM, "cannot allocate a netlink socket");
	}
	int e = nl_connect(sk, NETLINK_ROUTE);
	if (e < 0) {
		nl_socket_free(sk);
		return nlfail(err, errlen, e, "cannot open a route netlink socket");
	}
	/* libnl peeks at every datagram to size its buffer, then reads it: two recvmsg() per
	 * answer, about 25 of them in a wiring. The kernel never sends a datagram larger than the
	 * largest buffer a reader used, capped at 32 KiB, so NL_BUF always fits one. */
	nl_socket_disable_msg_peek(sk);
	if ((e = nl_socket_set_msg_buf_size(sk, NL_BUF)) < 0) {
		nl_socket_free(sk);
		return nlfail(err, errlen, e, "cannot size a route netlink socket's buffer");
	}
	*out = sk;
	return 0;
}

static int af_of(const struct ipam_addr *a)
{
	return a->family == 4 ? AF_INET : AF_INET6;
}

static unsigned len_of(const struct ipam_addr *a)
{
	return a->family == 4 ? 4 : 16;
}

static void families(const struct wire_spec *s, bool *has4, bool *has6)
{
	*has4 = *has6 = false;
	for (unsigned i = 0; i < s->n_addrs; i++) {
		if (s->addrs[i].family == 4) {
			*has4 = true;
		} else {
			*has6 = true;
		}
	}
}

static bool mac_set(const uint8_t mac[6])
{
	return memcmp(mac, zeros, 6) != 0;
}

static bool name_ok(const char *n)
{
	return n != NULL && n[0] != '\0' && strlen(n) < IFNAMSIZ && strchr(n, '/') == NULL;
}

static int spec_check(const struct wire_spec *s, char *err, size_t errlen)
{
	if (s == NULL || s->netns == NULL || s->netns[0] == '\0') {
		return fail(err, errlen, -EINVAL, "no network namespace path");
	}
	if (!name_ok(s->ifname)) {
		return fail(err, errlen, -EINVAL,
		            "container interface name \"%s\" is not 1..15 bytes",
		            s->ifname ? s->ifname : "");
	}
	if (!name_ok(s->host_ifname)) {
		return fail(err, errlen, -EINVAL, "host interface name \"%s\" is not 1..15 bytes",
		            s->host_ifname ? s->host_ifname : "");
	}
	if (s->alias == NULL ||
	    strncmp(s->alias, WIRE_ALIAS_PREFIX, strlen(WIRE_ALIAS_PREFIX)) != 0 ||
	    strlen(s->alias) > WIRE_ALIAS_MAX) {
		return fail(err, errlen, -EINVAL,
		            "host end alias \"%s\" does not start with \"" WIRE_ALIAS_PREFIX
		            "\" or is too long",
		            s->alias ? s->alias : "");
	}
	if (s->n_addrs > WIRE_ADDRS_MAX) {
		return fail(err, errlen, -EINVAL, "%u addresses (at most %d)", s->n_addrs,
		            WIRE_ADDRS_MAX);
	}
	for (unsigned i = 0; i < s->n_addrs; i++) {
		if (s->addrs[i].family != 4 && s->addrs[i].family != 6) {
			return fail(err, errlen, -EINVAL, "address %u has family %u", i,
			            s->addrs[i].family);
		}
	}
	if (s->mtu != 0 && (s->mtu < 68 || s->mtu > 65535)) {
		return fail(err, errlen, -EINVAL, "MTU %u is out of range", s->mtu);
	}
	return 0;
}

/* The address as an nl_addr of host width (/32, /128) or with plen. */
static struct nl_addr *nl_of(int family, const uint8_t *b, unsigned plen)
{
	struct nl_addr *a = nl_addr_build(family, b, family == AF_INET ? 4 : 16);
	if (a != NULL) {
		nl_addr_set_prefixlen(a, plen);
	}
	return a;
}

static bool nl_is(struct nl_addr *a, int family, const uint8_t *b, unsigned plen)
{
	unsigned len = family == AF_INET ? 4 : 16;
	if (a == NULL || nl_addr_get_family(a) != family || nl_addr_get_prefixlen(a) != plen) {
		return false;
	}
	if (plen == 0) {
		return true; /* a default route's dst may come without bytes */
	}
	return nl_addr_get_len(a) == len && memcmp(nl_addr_get_binary_addr(a), b, len) == 0;
}

/* Whether a holds exactly the address b (any prefix length). */
static bool nl_same(struct nl_addr *a, int family, const uint8_t *b)
{
	unsigned len = family == AF_INET ? 4 : 16;
	return a != NULL && nl_addr_get_family(a) == family && nl_addr_get_len(a) == len &&
	       memcmp(nl_addr_get_binary_addr(a), b, len) == 0;
}

static const char *fmt_addr(int family, const void *b, char *buf, size_t len)
{
	if (inet_ntop(family, b, buf, (socklen_t)len) == NULL) {
		snprintf(buf, len, "?");
	}
	return buf;
}

static const char *fmt_mac(const uint8_t *m, char *buf, size_t len)
{
	snprintf(buf, len, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
	return buf;
}

static bool link_mac_is(struct rtnl_link *l, const uint8_t mac[6])
{
	struct nl_addr *a = rtnl_link_get_addr(l);
	return a != NULL && nl_addr_get_len(a) == 6 &&
	       memcmp(nl_addr_get_binary_addr(a), mac, 6) == 0;
}

static const char *link_mac(struct rtnl_link *l, char *buf, size_t len)
{
	struct nl_addr *a = rtnl_link_get_addr(l);
	if (a == NULL || nl_addr_get_len(a) != 6) {
		snprintf(buf, len, "none");
		return buf;
	}
	return fmt_mac(nl_addr_get_binary_addr(a), buf, len);
}

static bool alias_prefixed(const char *a)
{
	return strncmp(a, WIRE_ALIAS_PREFIX, strlen(WIRE_ALIAS_PREFIX)) == 0;
}

static bool alias_ours(struct rtnl_link *l)
{
	const char *a = rtnl_link_get_ifalias(l);
	return a != NULL && alias_prefixed(a);
}

static const char *link_kind(struct rtnl_link *l)
{
	const char *k = rtnl_link_get_type(l);
	return k != NULL ? k : "device";
}

/* The link named name: 0 with *out set, 0 with *out NULL when there is none, or a libnl error. */
static int link_get(struct nl_sock *sk, const char *name, struct rtnl_link **out)
{
	*out = NULL;
	int e = rtnl_link_get_kernel(sk, 0, name, out);
	if (e == -NLE_OBJ_NOTFOUND || e == -NLE_NODEV) {
		*out = NULL;
		return 0;
	}
	return e;
}

/* Write value to a /proc/sys file unless it already holds it: rewriting some settings (the
 * forwarding switches) walks every interface of the namespace. */
static int sysctl_ensure(const char *path, const char *value, char *err, size_t errlen)
{
	char cur[64];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, cur, sizeof cur - 1);
		close(fd);
		if (n > 0) {
			cur[n] = '\0';
			cur[strcspn(cur, "\n")] = '\0';
			if (strcmp(cur, value) == 0) {
				return 0;
			}
		}
	}
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		return sysfail(err, errlen, errno, "cannot open %s", path);
	}
	ssize_t n = write(fd, value, strlen(value));
	int e = errno;
	close(fd);
	if (n < 0) {
		return sysfail(err, errlen, e, "cannot write %s to %s", value, path);
	}
	return 0;
}

/* sysctl_ensure() on a path built from fmt. */
static int sysctl_setf(char *err, size_t errlen, const char *value, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int sysctl_setf(char *err, size_t errlen, const char *value, const char *fmt, ...)
{
	char path[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(path, sizeof path, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof path) {
		return fail(err, errlen, -ENAMETOOLONG, "sysctl path too long");
	}
	return sysctl_ensure(path, value, err, errlen);
}

/* ------------------------------------------------------------------------------------------ */
/* Namespaces                                                                                  */

typedef int (*ns_fn)(struct nl_sock *sk, void *arg, char *err, size_t errlen);

struct ns_call {
	int fd;
	const char *path;
	ns_fn fn; /* NULL: only make the socket, for the caller (sk) */
	void *arg;
	char *err;
	size_t errlen;
	int rc;
	bool entered;
	struct nl_sock *sk;
};

static void *ns_thread(void *p)
{
	struct ns_call *c = p;
	struct nl_sock *sk = NULL;

	if (setns(c->fd, CLONE_NEWNET) != 0) {
		c->rc =
		    sysfail(c->err, c->errlen, errno, "cannot enter network namespace %s", c->path);
		return NULL;
	}
	c->entered = true;
	c->rc = route_socket(&sk, c->err, c->errlen);
	if (c->rc == 0 && c->fn == NULL) {
		c->sk = sk;
	} else if (c->rc == 0) {
		c->rc = c->fn(sk, c->arg, c->err, c->errlen);
		nl_socket_free(sk);
	}
	return NULL; /* the thread, and its namespace, end here */
}

/* Run fn in a new thread inside the namespace fd (path for messages). *entered (may be NULL)
 * tells whether setns() succeeded. Returns fn's result or the failure to get there. */
static int in_netns(int fd, const char *path, ns_fn fn, void *arg, bool *entered, char *err,
                    size_t errlen)
{
	struct ns_call c = {
	    .fd = fd, .path = path, .fn = fn, .arg = arg, .err = err, .errlen = errlen};
	pthread_t t;
	int e = pthread_create(&t, NULL, ns_thread, &c);
	if (e != 0) {
		return sysfail(err, errlen, e, "cannot start a thread for network namespace %s",
		               path);
	}
	pthread_join(t, NULL);
	if (entered != NULL) {
		*entered = c.entered;
	}
	return c.rc;
}

/*
 * A route socket in the namespace fd, made by a thread that runs while the caller goes on:
 * ns_socket_start() starts it, ns_socket_join() waits for it, and ns_socket_end() (always, after
 * a start that succeeded) waits if need be and frees the socket unless the caller took it
 * (c.sk set to NULL). The socket stays in that namespace whichever thread uses it, so the caller
 * can work there through it without entering.
 */
struct ns_socket {
	struct ns_call c; /* c.sk: the socket, once joined */
	char err[256];
	pthread_t t;
	bool running;
};

static int ns_socket_start(struct ns_socket *n, int fd, const char *path, char *err, size_t errlen)
{
	n->c = (struct ns_call){.fd = fd, .path = path, .err = n->err, .errlen = sizeof n->err};
	int e = pthread_create(&n->t, NULL, ns_thread, &n->c);
	if (e != 0) {
		return sysfail(err, errlen, e, "cannot start a thread for network namespace %s",
		               path);
	}
	n->running = true;
	return 0;
}

static void ns_socket_wait(struct ns_socket *n)
{
	if (n->running) {
		pthread_join(n->t, NULL);
		n->running = false;
	}
}

/* Waits for the socket: 0 with n->c.sk made, or the failure to make it. */
static int ns_socket_join(struct ns_socket *n, char *err, size_t errlen)
{
	ns_socket_wait(n);
	if (n->c.rc < 0) {
		snprintf(err, errlen, "%s", n->err);
		return n->c.rc;
	}
	return 0;
}

static void ns_socket_end(struct ns_socket *n)
{
	ns_socket_wait(n);
	if (n->c.sk != NULL) {
		nl_socket_free(n->c.sk);
		n->c.sk = NULL;
	}
}

static int nsid_valid(struct nl_msg *msg, void *arg)
{
	int32_t *id = arg;
	struct nlattr *tb[NETNSA_MAX + 1];
	if (nlmsg_parse(nlmsg_hdr(msg), sizeof(struct rtgenmsg), tb, NETNSA_MAX, NULL) < 0) {
		return NL_SKIP;
	}
	if (tb[NETNSA_NSID] != NULL) {
		*id = (int32_t)nla_get_u32(tb[NETNSA_NSID]);
	}
	return NL_OK;
}

/* The id this namespace gives the namespace fd (RTM_GETNSID); -1 when it has none. libnl has no
 * object for namespace ids, so the message is built with its message API. */
static int netns_id(struct nl_sock *sk, int fd, int32_t *id)
{
	struct rtgenmsg g = {.rtgen_family = AF_UNSPEC};
	struct nl_msg *msg = nlmsg_alloc_simple(RTM_GETNSID, NLM_F_REQUEST);
	int e;

	*id = -1;
	if (msg == NULL) {
		return -NLE_NOMEM;
	}
	e = nlmsg_append(msg, &g, sizeof g, NLMSG_ALIGNTO);
	if (e == 0) {
		e = nla_put_u32(msg, NETNSA_FD, (uint32_t)fd);
	}
	if (e < 0) {
		nlmsg_free(msg);
		return e;
	}
	/* The reply, then the ACK: nl_send_sync() would read the reply only and leave the ACK
	 * queued for the next request on this socket. */
	struct nl_cb *cb = nl_cb_alloc(NL_CB_DEFAULT);
	if (cb == NULL) {
		nlmsg_free(msg);
		return -NLE_NOMEM;
	}
	nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, nsid_valid, id);
	e = nl_send_auto(sk, msg);
	nlmsg_free(msg);
	if (e >= 0) {
		e = nl_recvmsgs(sk, cb);
	}
	if (e >= 0) {
		e = nl_wait_for_ack(sk);
	}
	nl_cb_put(cb);
	return e < 0 ? e : 0;
}

/* Whether h (host namespace) is a veth whose peer is the interface c_ifindex of the namespace fd.
 */
static int is_peer(struct nl_sock *sk, struct rtnl_link *h, int fd, int c_ifindex, bool *out)
{
	int32_t peer_ns, id;
	*out = false;
	if (!rtnl_link_is_veth(h) || rtnl_link_get_link(h) != c_ifindex ||
	    rtnl_link_get_link_netnsid(h, &peer_ns) < 0) {
		return 0;
	}
	int e = netns_id(sk, fd, &id);
	if (e < 0) {
		return e;
	}
	*out = id >= 0 && id == peer_ns;
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Links, addresses, routes                                                                    */

/*
 * Make l have mac (NULL: any), mtu, alias (NULL: any), the host devconf (host), and be up.
 *
 * no_ll: l goes up for the first time on a network without IPv6, so the kernel is told to give
 * it no IPv6 link-local address (addr_gen_mode none). Nothing uses one there, and each costs
 * duplicate address detection, multicast listener reports, router solicitations and their
 * removal: 0.1-0.2 ms per ADD and 0.3-0.4 ms per DEL here, on two cores. The mode
 * goes in the same request as IFF_UP: the address would only come once the pair has carrier,
 * which the kernel's link watcher announces after the request releases the RTNL lock. A kernel
 * without IPv6 has no mode to set (no inet6 data on the link), and is left alone.
 */
static int link_converge(struct nl_sock *sk, struct rtnl_link *l, const uint8_t *mac, unsigned mtu,
                         const char *alias, bool host, bool no_ll, const char *where, char *err,
                         size_t errlen)
{
	struct rtnl_link *ch = rtnl_link_alloc();
	struct nl_addr *a = NULL;
	bool any = false;
	int e = 0;

	if (ch == NULL) {
		return fail(err, errlen, -ENOMEM, "out of memory");
	}
	if (mac != NULL && !link_mac_is(l, mac)) {
		a = nl_addr_build(AF_LLC, mac, 6);
		if (a == NULL) {
			e = -NLE_NOMEM;
			goto out;
		}
		rtnl_link_set_addr(ch, a);
		any = true;
	}
	if (rtnl_link_get_mtu(l) != mtu) {
		rtnl_link_set_mtu(ch, mtu);
		any = true;
	}
	if (alias != NULL) {
		const char *cur = rtnl_link_get_ifalias(l);
		if (cur == NULL || strcmp(cur, alias) != 0) {
			rtnl_link_set_ifalias(ch, alias);
			any = true;
		}
	}
	for (size_t i = 0; host && i < sizeof host_conf4 / sizeof host_conf4[0]; i++) {
		uint32_t v;
		if (rtnl_link_inet_get_conf(l, host_conf4[i].id, &v) < 0 || v != 1) {
			if ((e = rtnl_link_inet_set_conf(ch, host_conf4[i].id, 1)) < 0) {
				goto out;
			}
			any = true;
		}
	}
	if (!(rtnl_link_get_flags(l) & IFF_UP)) {
		uint8_t mode;
		rtnl_link_set_flags(ch, IFF_UP);
		any = true;
		if (no_ll && rtnl_link_inet6_get_addr_gen_mode(l, &mode) == 0 &&
		    mode != IN6_ADDR_GEN_MODE_NONE &&
		    (e = rtnl_link_inet6_set_addr_gen_mode(ch, IN6_ADDR_GEN_MODE_NONE)) < 0) {
			goto out;
		}
	}
	if (any) {
		e = rtnl_link_change(sk, l, ch, 0);
	}
out:
	nl_addr_put(a);
	rtnl_link_put(ch);
	if (e < 0) {
		return nlfail(err, errlen, e, "cannot set up %s%s", rtnl_link_get_name(l), where);
	}
	return 0;
}

/* Add or replace the route dst/plen [via gw] dev ifindex [scope] in the main table. */
static int route_put_in(struct nl_sock *sk, uint32_t table, int family, const uint8_t *dst,
                        unsigned plen, const uint8_t *gw, int ifindex, int scope)
{
	struct rtnl_route *r = rtnl_route_alloc();
	struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
	struct nl_addr *d = nl_of(family, dst, plen);
	struct nl_addr *g = gw != NULL ? nl_of(family, gw, family == AF_INET ? 32 : 128) : NULL;
	int e = -NLE_NOMEM;

	if (r == NULL || nh == NULL || d == NULL || (gw != NULL && g == NULL)) {
		goto out;
	}
	rtnl_route_set_family(r, (uint8_t)family);
	rtnl_route_set_table(r, table);
	rtnl_route_set_type(r, RTN_UNICAST);
	rtnl_route_set_protocol(r, TABBY_RTPROT);
	if (scope >= 0) {
		rtnl_route_set_scope(r, (uint8_t)scope);
	}
	if ((e = rtnl_route_set_dst(r, d)) < 0) {
		goto out;
	}
	rtnl_route_nh_set_ifindex(nh, ifindex);
	if (g != NULL) {
		rtnl_route_nh_set_gateway(nh, g);
	}
	rtnl_route_add_nexthop(r, nh);
	nh = NULL; /* owned by r */
	e = rtnl_route_add(sk, r, NLM_F_CREATE | NLM_F_REPLACE);
out:
	if (nh != NULL) {
		rtnl_route_nh_free(nh);
	}
	nl_addr_put(d);
	nl_addr_put(g);
	rtnl_route_put(r);
	return e;
}

static int route_put(struct nl_sock *sk, int family, const uint8_t *dst, unsigned plen,
                     const uint8_t *gw, int ifindex, int scope)
{
	return route_put_in(sk, RT_TABLE_MAIN, family, dst, plen, gw, ifindex, scope);
}

/*
 * A container on several networks has one interface per network, each with its own gateway
 * route and default route. The main table can hold only one of each, so every interface also
 * gets a table of its own, WIRE_TABLE_BASE + its ifindex, with its gateway and default routes,
 * and a rule sending traffic from each of its addresses there: replies leave through the
 * interface the request came in on, which is what the host end's strict reverse-path check
 * expects. The main table's routes belong to the container's first interface (the one whose
 * default route is there); a second interface never takes them over.
 */
#define WIRE_TABLE_BASE 1000u
#define WIRE_RULE_PRIO  1000u

static uint32_t own_table(int ifindex)
{
	return WIRE_TABLE_BASE + (uint32_t)ifindex;
}

static int rule_put(struct nl_sock *sk, const struct ipam_addr *ip, uint32_t table)
{
	struct rtnl_rule *r = rtnl_rule_alloc();
	struct nl_addr *src = nl_of(af_of(ip), ip->b, len_of(ip) * 8);
	int e = -NLE_NOMEM;
	if (r == NULL || src == NULL) {
		goto out;
	}
	rtnl_rule_set_family(r, af_of(ip));
	rtnl_rule_set_prio(r, WIRE_RULE_PRIO);
	rtnl_rule_set_action(r, FR_ACT_TO_TBL);
	rtnl_rule_set_table(r, table);
	if ((e = rtnl_rule_set_src(r, src)) < 0) {
		goto out;
	}
	e = rtnl_rule_add(sk, r, NLM_F_CREATE | NLM_F_EXCL);
	if (e == -NLE_EXIST) {
		e = 0;
	}
out:
	nl_addr_put(src);
	rtnl_rule_put(r);
	return e;
}

/* The source rule of each of s's addresses of family (4, 6; 0: both) into ifindex's table. */
static int rules_put(struct nl_sock *sk, const struct wire_spec *s, unsigned family, int ifindex,
                     char *err, size_t errlen)
{
	for (unsigned i = 0; i < s->n_addrs; i++) {
		int e;
		if ((family == 0 || s->addrs[i].family == family) &&
		    (e = rule_put(sk, &s->addrs[i], own_table(ifindex))) < 0) {
			return nlfail(err, errlen, e, "cannot add the source rule of %s in %s",
			              s->ifname, s->netns);
		}
	}
	return 0;
}

/* The host route of each of s's addresses, through the host end hidx. */
static int host_routes_put(struct nl_sock *sk, const struct wire_spec *s, int hidx, char *err,
                           size_t errlen)
{
	char buf[IPAM_ADDR_STRLEN];
	for (unsigned i = 0; i < s->n_addrs; i++) {
		const struct ipam_addr *ip = &s->addrs[i];
		int e = route_put(sk, af_of(ip), ip->b, len_of(ip) * 8, NULL, hidx,
		                  ip->family == 4 ? RT_SCOPE_LINK : -1);
		if (e < 0) {
			return nlfail(err, errlen, e, "cannot add route %s/%u dev %s",
			              ipam_addr_format(ip, buf), len_of(ip) * 8, s->host_ifname);
		}
	}
	return 0;
}

/* Best effort: delete every rule that points into table (both families). */
static void drop_rules(struct nl_sock *sk, uint32_t table)
{
	struct nl_cache *rules = NULL;
	if (rtnl_rule_alloc_cache(sk, AF_UNSPEC, &rules) < 0) {
		return;
	}
	for (struct nl_object *o = nl_cache_get_first(rules); o; o = nl_cache_get_next(o)) {
		struct rtnl_rule *r = (struct rtnl_rule *)o;
		if (rtnl_rule_get_table(r) == table) {
			(void)rtnl_rule_delete(sk, r, 0);
		}
	}
	nl_cache_free(rules);
}

/* Whether the main table's default route of family is missing or goes through ifindex: then this
 * interface owns the main table's routes of that family. */
static int owns_main(struct nl_sock *sk, int family, int ifindex, bool *owns)
{
	struct nl_cache *routes = NULL;
	int e = rtnl_route_alloc_cache(sk, family, 0, &routes);
	if (e < 0) {
		return e;
	}
	*owns = true;
	for (struct nl_object *o = nl_cache_get_first(routes); o; o = nl_cache_get_next(o)) {
		struct rtnl_route *r = (struct rtnl_route *)o;
		if (rtnl_route_get_table(r) == RT_TABLE_MAIN &&
		    rtnl_route_get_type(r) == RTN_UNICAST &&
		    nl_is(rtnl_route_get_dst(r), family, zeros, 0) &&
		    rtnl_route_get_nnexthops(r) == 1) {
			*owns = rtnl_route_nh_get_ifindex(rtnl_route_nexthop_n(r, 0)) == ifindex;
			break;
		}
	}
	nl_cache_free(routes);
	return 0;
}

/* The first main-table route of cache with dst b/plen, or NULL. */
static struct rtnl_route *route_find_in(struct nl_cache *cache, uint32_t table, int family,
                                        const uint8_t *b, unsigned plen)
{
	for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		struct rtnl_route *r = (struct rtnl_route *)o;
		if (rtnl_route_get_family(r) == family && rtnl_route_get_table(r) == table &&
		    rtnl_route_get_type(r) != RTN_LOCAL &&
		    nl_is(rtnl_route_get_dst(r), family, b, plen)) {
			return r;
		}
	}
	return NULL;
}

static struct rtnl_route *route_find(struct nl_cache *cache, int family, const uint8_t *b,
                                     unsigned plen)
{
	return route_find_in(cache, RT_TABLE_MAIN, family, b, plen);
}

/* Compare a route found by route_find() with what wire_add() installs: nothing (0) or one line
 * (-EINVAL). what names the route in messages. */
static int route_verify(struct rtnl_route *r, int family, const uint8_t *gw, int ifindex, int scope,
                        bool proto, const char *what, char *err, size_t errlen)
{
	char buf[IPAM_ADDR_STRLEN];
	if (rtnl_route_get_nnexthops(r) != 1) {
		return fail(err, errlen, -EINVAL, "%s has %d next hops", what,
		            rtnl_route_get_nnexthops(r));
	}
	struct rtnl_nexthop *nh = rtnl_route_nexthop_n(r, 0);
	if (rtnl_route_nh_get_ifindex(nh) != ifindex) {
		return fail(err, errlen, -EINVAL, "%s goes through interface index %d, not %d",
		            what, rtnl_route_nh_get_ifindex(nh), ifindex);
	}
	struct nl_addr *g = rtnl_route_nh_get_gateway(nh);
	if (gw != NULL && !nl_is(g, family, gw, family == AF_INET ? 32 : 128)) {
		return fail(err, errlen, -EINVAL, "%s is not via %s", what,
		            fmt_addr(family, gw, buf, sizeof buf));
	}
	if (gw == NULL && g != NULL && nl_addr_get_len(g) > 0) {
		return fail(err, errlen, -EINVAL, "%s has a gateway", what);
	}
	if (scope >= 0 && rtnl_route_get_scope(r) != scope) {
		return fail(err, errlen, -EINVAL, "%s has scope %u, not %d", what,
		            rtnl_route_get_scope(r), scope);
	}
	if (proto && rtnl_route_get_protocol(r) != TABBY_RTPROT) {
		return fail(err, errlen, -EINVAL, "%s has protocol %u, not %d", what,
		            rtnl_route_get_protocol(r), TABBY_RTPROT);
	}
	return 0;
}

/* The IPv6 link-local address of ifindex that is usable (not tentative): 0 with *out (a
 * reference), 0 with *out NULL when there is none yet, or a libnl error. */
static int link_local6(struct nl_sock *sk, int ifindex, struct nl_addr **out)
{
	struct nl_cache *cache;
	*out = NULL;
	int e = rtnl_addr_alloc_cache(sk, &cache);
	if (e < 0) {
		return e;
	}
	for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		struct rtnl_addr *a = (struct rtnl_addr *)o;
		if (rtnl_addr_get_family(a) == AF_INET6 && rtnl_addr_get_ifindex(a) == ifindex &&
		    rtnl_addr_get_scope(a) == RT_SCOPE_LINK &&
		    !(rtnl_addr_get_flags(a) & (IFA_F_TENTATIVE | IFA_F_DADFAILED))) {
			*out = nl_addr_clone(rtnl_addr_get_local(a));
			e = *out == NULL ? -NLE_NOMEM : 0;
			break;
		}
	}
	nl_cache_free(cache);
	return e;
}

/* ------------------------------------------------------------------------------------------ */
/* The container side (runs in the namespace thread)                                           */

struct cjob {
	const struct wire_spec *s;
	unsigned mtu;
	bool has4, has6;
	/* c_inspect() */
	bool exists, veth;
	int ifindex, link;
	char kind[32];
	/* c_route6(), c_check(): the host end's link-local address */
	struct nl_addr *host_ll;
	/* c_remove(): whether a non-veth interface is an error (wire_add) or left alone */
	bool strict;
	/* The pair was made by this wiring: the container end has no address to list
	 * (c_addrs()), and on a network without IPv6 neither end gets a link-local one
	 * (link_converge()) */
	bool fresh;
	/* c_remove() (wire_del): set once the interface is identified, before it is deleted */
	atomic_bool *identified;
	/* The steps run outside the container's namespace, through a socket made there: a write
	 * to its /proc/sys enters it (nsfd) */
	bool outside;
	int nsfd;
};

static int c_inspect(struct nl_sock *sk, void *arg, char *err, size_t errlen)
{
	struct cjob *j = arg;
	struct rtnl_link *l;
	int e = link_get(sk, j->s->ifname, &l);
	if (e < 0) {
		return nlfail(err, errlen, e, "cannot look up %s in %s", j->s->ifname, j->s->netns);
	}
	j->exists = l != NULL;
	if (l != NULL) {
		j->veth = rtnl_link_is_veth(l);
		j->ifindex = rtnl_link_get_ifindex(l);
		j->link = rtnl_link_get_link(l);
		snprintf(j->kind, sizeof j->kind, "%s", link_kind(l));
		rtnl_link_put(l);
	}
	return 0;
}

static int c_remove(struct nl_sock *sk, void *arg, char *err, size_t errlen)
{
	struct cjob *j = arg;
	struct rtnl_link *l;
	int e = link_get(sk, j->s->ifname, &l);
	if (e < 0) {
		return nlfail(err, errlen, e, "cannot look up %s in %s", j->s->ifname, j->s->netns);
	}
	if (j->identified != NULL) {
		atomic_store(j->identified, true); /* from here on, by index only */
	}
	if (l == NULL) {
		return 0;
	}
	if (!rtnl_link_is_veth(l)) {
		int rc = j->strict ? fail(err, errlen, -EEXIST,
		                          "%s in %s is a %s interface, not a veth: refusing to "
		                          "replace it",
		                          j->s->ifname, j->s->netns, link_kind(l))
		                   : 0;
		rtnl_link_put(l);
		return rc;
	}
	/* The source rules into the interface's own table outlive the interface (they match on
	 * addresses): remove them first, or a later interface with the same index would inherit
	 * them. */
	drop_rules(sk, own_table(rtnl_link_get_ifindex(l)));
	e = rtnl_link_delete(sk, l);
	rtnl_link_put(l);
	if (e < 0 && e != -NLE_OBJ_NOTFOUND && e != -NLE_NODEV) {
		return nlfail(err, errlen, e, "cannot delete %s in %s", j->s->ifname, j->s->netns);
	}
	return 0;
}

/* The container's addresses: exactly the spec's on the interface (IPv6 link-local kept). */
static int c_addrs(struct nl_sock *sk, struct cjob *j, int ifindex, char *err, size_t errlen)
{
	const struct wire_spec *s = j->s;
	bool have[WIRE_ADDRS_MAX] = {false};
	struct nl_cache *cache = NULL;
	char buf[IPAM_ADDR_STRLEN];
	int e;
	/* A device this wiring just made holds no address but the IPv6 link-local one the kernel
	 * gives it, which stays anyway: nothing to list. */
	if (!j->fresh && (e = rtnl_addr_alloc_cache(sk, &cache)) < 0) {
		return nlfail(err, errlen, e, "cannot list addresses in %s", s->netns);
	}
	for (struct nl_object *o = cache ? nl_cache_get_first(cache) : NULL; o;
	     o = nl_cache_get_next(o)) {
		struct rtnl_addr *a = (struct rtnl_addr *)o;
		int fam = rtnl_addr_get_family(a);
		bool wanted = false;
		if (rtnl_addr_get_ifindex(a) != ifindex ||
		    (fam == AF_INET6 && rtnl_addr_get_scope(a) == RT_SCOPE_LINK)) {
			continue;
		}
		for (unsigned i = 0; i < s->n_addrs; i++) {
			if (nl_is(rtnl_addr_get_local(a), af_of(&s->addrs[i]), s->addrs[i].b,
			          len_of(&s->addrs[i]) * 8)) {
				have[i] = wanted = true;
			}
		}
		if (!wanted && (e = rtnl_addr_delete(sk, a, 0)) < 0 && e != -NLE_NOADDR &&
		    e != -NLE_OBJ_NOTFOUND) {
			nl_cache_free(cache);
			return nlfail(err, errlen, e, "cannot remove a stale address from %s in %s",
			              s->ifname, s->netns);
		}
	}
	nl_cache_free(cache);
	for (unsigned i = 0; i < s->n_addrs; i++) {
		if (have[i]) {
			continue;
		}
		const struct ipam_addr *ip = &s->addrs[i];
		struct rtnl_addr *a = rtnl_addr_alloc();
		struct nl_addr *l = nl_of(af_of(ip), ip->b, len_of(ip) * 8);
		e = -NLE_NOMEM;
		if (a != NULL && l != NULL) {
			rtnl_addr_set_ifindex(a, ifindex);
			rtnl_addr_set_family(a, af_of(ip));
			if (ip->family == 6) {
				rtnl_addr_set_flags(a, IFA_F_NODAD);
			}
			if ((e = rtnl_addr_set_local(a, l)) == 0) {
				e = rtnl_addr_add(sk, a, 0);
			}
		}
		nl_addr_put(l);
		rtnl_addr_put(a);
		if (e < 0 && e != -NLE_EXIST) {
			return nlfail(err, errlen, e, "cannot add address %s/%u to %s in %s",
			              ipam_addr_format(ip, buf), len_of(ip) * 8, s->ifname,
			              s->netns);
		}
	}
	return 0;
}

/*
 * net.ipv4.ip_forward of the namespace sk lives in is want ("0" or "1"). It is read through
 * netlink (the "all" entry of RTM_GETNETCONF), because opening a /proc/sys/net path walks a dentry
 * chain that grows with the host's namespaces: with 300 containers on the host it was a third of
 * the time spent inside the container's namespace. Only a value to change is written there.
 */
static int fwd_write(struct nl_sock *sk, void *arg, char *err, size_t errlen)
{
	(void)sk;
	return sysctl_setf(err, errlen, arg, "/proc/sys/net/ipv4/ip_forward");
}

static int ip_forward_ensure(struct nl_sock *sk, const struct cjob *j, const char *want, char *err,
                             size_t errlen)
{
	struct nl_cache *cache = NULL;
	struct rtnl_netconf *all;
	int v = -1;

	if (rtnl_netconf_alloc_cache(sk, &cache) == 0 &&
	    (all = rtnl_netconf_get_all(cache, AF_INET)) != NULL) {
		if (rtnl_netconf_get_forwarding(all, &v) < 0) {
			v = -1;
		}
		rtnl_netconf_put(all);
	}
	nl_cache_free(cache);
	if (v == (want[0] == '1' ? 1 : 0)) {
		return 0;
	}
	if (j->outside) {
		return in_netns(j->nsfd, j->s->netns, fwd_write, (void *)want, NULL, err, errlen);
	}
	return sysctl_setf(err, errlen, want, "/proc/sys/net/ipv4/ip_forward");
}

/* First trip: sysctls, the interface, its addresses, the IPv4 routes. */
static int gateway_neigh(struct nl_sock *sk, int ifindex, char *err, size_t errlen,
                         const char *netns)
{
	struct rtnl_neigh *n = rtnl_neigh_alloc();
	struct nl_addr *dst = nl_of(AF_INET, gateway4, 32);
	struct nl_addr *ll = nl_addr_build(AF_LLC, host_mac, sizeof host_mac);
	int rc = 0;
	if (n == NULL || dst == NULL || ll == NULL) {
		rc = fail(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	rtnl_neigh_set_ifindex(n, ifindex);
	rtnl_neigh_set_dst(n, dst);
	rtnl_neigh_set_lladdr(n, ll);
	rtnl_neigh_set_state(n, NUD_PERMANENT);
	int e = rtnl_neigh_add(sk, n, NLM_F_CREATE | NLM_F_REPLACE);
	if (e < 0) {
		rc = nlfail(err, errlen, e, "cannot add neighbour %s lladdr %s in %s",
		            WIRE_GATEWAY4, WIRE_HOST_MAC, netns);
	}
out:
	rtnl_neigh_put(n);
	nl_addr_put(dst);
	nl_addr_put(ll);
	return rc;
}

static int c_setup(struct nl_sock *sk, void *arg, char *err, size_t errlen)
{
	struct cjob *j = arg;
	const struct wire_spec *s = j->s;
	const char *fwd = s->allow_ip_forwarding ? "1" : "0";
	char where[300];
	struct rtnl_link *l;
	int rc;

	int e = link_get(sk, s->ifname, &l);
	if (e < 0) {
		return nlfail(err, errlen, e, "cannot look up %s in %s", s->ifname, s->netns);
	}
	if (l == NULL) {
		return fail(err, errlen, -ENOENT, "%s in %s vanished", s->ifname, s->netns);
	}
	int ifindex = rtnl_link_get_ifindex(l);

	if (j->has6) {
		static const char *const which[] = {"all", "default", "lo"};
		for (size_t i = 0; i < 3; i++) {
			rc = sysctl_setf(err, errlen, "0",
			                 "/proc/sys/net/ipv6/conf/%s/disable_ipv6", which[i]);
			if (rc < 0) {
				goto out;
			}
		}
		if ((rc = sysctl_setf(err, errlen, "0", "/proc/sys/net/ipv6/conf/%s/disable_ipv6",
		                      s->ifname)) < 0 ||
		    (rc = sysctl_setf(err, errlen, "0", "/proc/sys/net/ipv6/conf/%s/accept_dad",
		                      s->ifname)) < 0 ||
		    (rc = sysctl_setf(err, errlen, fwd, "/proc/sys/net/ipv6/conf/all/forwarding")) <
		        0) {
			goto out;
		}
	}
	if (j->has4 && (rc = ip_forward_ensure(sk, j, fwd, err, errlen)) < 0) {
		goto out;
	}

	snprintf(where, sizeof where, " in %s", s->netns);
	rc = link_converge(sk, l, mac_set(s->mac) ? s->mac : NULL, j->mtu, NULL, false,
	                   j->fresh && !j->has6, where, err, errlen);
	if (rc < 0) {
		goto out;
	}
	j->ifindex = ifindex;
	if ((rc = c_addrs(sk, j, ifindex, err, errlen)) < 0) {
		goto out;
	}
	if (j->has4) {
		/* 169.254.1.1 is on no interface: the /32 makes it on-link so the default route
		 * can use it, and the host end's proxy ARP answers for it. */
		bool main4 = false;
		if ((e = owns_main(sk, AF_INET, ifindex, &main4)) < 0) {
			rc = nlfail(err, errlen, e, "cannot list routes in %s", s->netns);
			goto out;
		}
		for (int pass = main4 ? 0 : 1; pass < 2; pass++) {
			uint32_t t = pass == 0 ? RT_TABLE_MAIN : own_table(ifindex);
			e = route_put_in(sk, t, AF_INET, gateway4, 32, NULL, ifindex,
			                 RT_SCOPE_LINK);
			if (e < 0) {
				rc = nlfail(err, errlen, e,
				            "cannot add route %s/32 dev %s table %u in %s",
				            WIRE_GATEWAY4, s->ifname, t, s->netns);
				goto out;
			}
			e = route_put_in(sk, t, AF_INET, zeros, 0, gateway4, ifindex, -1);
			if (e < 0) {
				rc = nlfail(err, errlen, e,
				            "cannot add default route via %s table %u in %s",
				            WIRE_GATEWAY4, t, s->netns);
				goto out;
			}
		}
		if ((rc = rules_put(sk, s, 4, ifindex, err, errlen)) < 0) {
			goto out;
		}
		/* The gateway's MAC is always the host end's fixed one: a permanent neighbour
		 * spares the first packet an ARP round trip and keeps the container working on a
		 * host whose routing table has no route to 169.254.1.1, which proxy ARP needs. */
		if ((rc = gateway_neigh(sk, ifindex, err, errlen, s->netns)) < 0) {
			goto out;
		}
	}
	rc = 0;
out:
	rtnl_link_put(l);
	return rc;
}

/* Second trip: the IPv6 default route via the host end's link-local address. */
static int c_route6(struct nl_sock *sk, void *arg, char *err, size_t errlen)
{
	struct cjob *j = arg;
	char buf[IPAM_ADDR_STRLEN];
	struct rtnl_link *l;
	int e = link_get(sk, j->s->ifname, &l);
	if (e < 0 || l == NULL) {
		return e < 0 ? nlfail(err, errlen, e, "cannot look up %s in %s", j->s->ifname,
		                      j->s->netns)
		             : fail(err, errlen, -ENOENT, "%s in %s vanished", j->s->ifname,
		                    j->s->netns);
	}
	int ifindex = rtnl_link_get_ifindex(l);
	rtnl_link_put(l);
	const uint8_t *gw = nl_addr_get_binary_addr(j->host_ll);
	bool main6 = false;
	if ((e = owns_main(sk, AF_INET6, ifindex, &main6)) < 0) {
		return nlfail(err, errlen, e, "cannot list routes in %s", j->s->netns);
	}
	for (int pass = main6 ? 0 : 1; pass < 2; pass++) {
		uint32_t t = pass == 0 ? RT_TABLE_MAIN : own_table(ifindex);
		e = route_put_in(sk, t, AF_INET6, zeros, 0, gw, ifindex, -1);
		if (e < 0) {
			return nlfail(
			    err, errlen, e, "cannot add default route via %s dev %s in %s",
			    fmt_addr(AF_INET6, gw, buf, sizeof buf), j->s->ifname, j->s->netns);
		}
	}
	return rules_put(sk, j->s, 6, ifindex, err, errlen);
}

static int c_check(struct nl_sock *sk, void *arg, char *err, size_t errlen)
{
	struct cjob *j = arg;
	const struct wire_spec *s = j->s;
	struct nl_cache *addrs = NULL, *routes = NULL;
	struct rtnl_link *l;
	char buf[IPAM_ADDR_STRLEN], m1[24], m2[24], what[200];
	int rc;

	int e = link_get(sk, s->ifname, &l);
	if (e < 0 || l == NULL) {
		return e < 0
		           ? nlfail(err, errlen, e, "cannot look up %s in %s", s->ifname, s->netns)
		           : fail(err, errlen, -ENOENT, "%s in %s does not exist", s->ifname,
		                  s->netns);
	}
	int ifindex = rtnl_link_get_ifindex(l);
	if (!(rtnl_link_get_flags(l) & IFF_UP)) {
		rc = fail(err, errlen, -EINVAL, "%s in %s is down", s->ifname, s->netns);
		goto out;
	}
	if (mac_set(s->mac) && !link_mac_is(l, s->mac)) {
		rc = fail(err, errlen, -EINVAL, "%s in %s has MAC %s, not %s", s->ifname, s->netns,
		          link_mac(l, m1, sizeof m1), fmt_mac(s->mac, m2, sizeof m2));
		goto out;
	}
	if (rtnl_link_get_mtu(l) != j->mtu) {
		rc = fail(err, errlen, -EINVAL, "%s in %s has MTU %u, not %u", s->ifname, s->netns,
		          rtnl_link_get_mtu(l), j->mtu);
		goto out;
	}
	if ((e = rtnl_addr_alloc_cache(sk, &addrs)) < 0) {
		rc = nlfail(err, errlen, e, "cannot list addresses in %s", s->netns);
		goto out;
	}
	for (unsigned i = 0; i < s->n_addrs; i++) {
		const struct ipam_addr *ip = &s->addrs[i];
		bool found = false;
		for (struct nl_object *o = nl_cache_get_first(addrs); o && !found;
		     o = nl_cache_get_next(o)) {
			struct rtnl_addr *a = (struct rtnl_addr *)o;
			found = rtnl_addr_get_ifindex(a) == ifindex &&
			        nl_is(rtnl_addr_get_local(a), af_of(ip), ip->b, len_of(ip) * 8);
		}
		if (!found) {
			rc = fail(err, errlen, -ENOENT, "%s in %s has no address %s/%u", s->ifname,
			          s->netns, ipam_addr_format(ip, buf), len_of(ip) * 8);
			goto out;
		}
	}
	for (int fam = AF_INET; fam != 0; fam = fam == AF_INET ? AF_INET6 : 0) {
		if ((fam == AF_INET && !j->has4) || (fam == AF_INET6 && !j->has6)) {
			continue;
		}
		nl_cache_free(routes);
		routes = NULL;
		if ((e = rtnl_route_alloc_cache(sk, fam, 0, &routes)) < 0) {
			rc = nlfail(err, errlen, e, "cannot list routes in %s", s->netns);
			goto out;
		}
		struct rtnl_route *r;
		if (fam == AF_INET) {
			snprintf(what, sizeof what, "route %s/32 in %s", WIRE_GATEWAY4, s->netns);
			if ((r = route_find_in(routes, own_table(ifindex), fam, gateway4, 32)) ==
			    NULL) {
				rc = fail(err, errlen, -ENOENT, "%s has no route %s/32 for %s",
				          s->netns, WIRE_GATEWAY4, s->ifname);
				goto out;
			}
			if ((rc = route_verify(r, fam, NULL, ifindex, RT_SCOPE_LINK, false, what,
			                       err, errlen)) < 0) {
				goto out;
			}
		}
		const uint8_t *gw = fam == AF_INET ? gateway4 : nl_addr_get_binary_addr(j->host_ll);
		snprintf(what, sizeof what, "the %s default route in %s",
		         fam == AF_INET ? "IPv4" : "IPv6", s->netns);
		if ((r = route_find_in(routes, own_table(ifindex), fam, zeros, 0)) == NULL) {
			rc = fail(err, errlen, -ENOENT, "%s has no %s default route for %s",
			          s->netns, fam == AF_INET ? "IPv4" : "IPv6", s->ifname);
			goto out;
		}
		if ((rc = route_verify(r, fam, gw, ifindex, -1, false, what, err, errlen)) < 0) {
			goto out;
		}
		/* The main table's default belongs to one of the container's interfaces. */
		if (route_find(routes, fam, zeros, 0) == NULL) {
			rc = fail(err, errlen, -ENOENT, "%s has no %s default route", s->netns,
			          fam == AF_INET ? "IPv4" : "IPv6");
			goto out;
		}
	}
	rc = 0;
out:
	nl_cache_free(routes);
	nl_cache_free(addrs);
	rtnl_link_put(l);
	return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* The host side                                                                               */

/* Create the pair: host end here, container end straight into the namespace fd.
 *
 * Each end is given one TX and one RX queue in the request. Without them the kernel creates a
 * veth with a queue per possible CPU and then cuts the live count down to one, and that cut waits
 * for an expedited RCU grace period, twice per pair: about 1 ms of an ADD's 1.4 ms of veth
 * creation here. A veth's queues only matter for XDP, which Tabby does not attach. */
static int pair_create(struct nl_sock *sk, const struct wire_spec *s, unsigned mtu, int fd,
                       char *err, size_t errlen)
{
	struct rtnl_link *l = rtnl_link_veth_alloc();
	struct rtnl_link *peer = NULL;
	struct nl_addr *hm = nl_addr_build(AF_LLC, host_mac, 6);
	struct nl_addr *cm = mac_set(s->mac) ? nl_addr_build(AF_LLC, s->mac, 6) : NULL;
	int e = -NLE_NOMEM;

	if (l == NULL || hm == NULL || (mac_set(s->mac) && cm == NULL)) {
		goto out;
	}
	peer = rtnl_link_veth_get_peer(l);
	rtnl_link_set_name(l, s->host_ifname);
	rtnl_link_set_addr(l, hm);
	rtnl_link_set_mtu(l, mtu);
	rtnl_link_set_num_tx_queues(l, 1);
	rtnl_link_set_num_rx_queues(l, 1);
	rtnl_link_set_name(peer, s->ifname);
	if (cm != NULL) {
		rtnl_link_set_addr(peer, cm);
	}
	rtnl_link_set_mtu(peer, mtu);
	rtnl_link_set_num_tx_queues(peer, 1);
	rtnl_link_set_num_rx_queues(peer, 1);
	rtnl_link_set_ns_fd(peer, fd);
	e = rtnl_link_add(sk, l, NLM_F_CREATE | NLM_F_EXCL);
out:
	nl_addr_put(hm);
	nl_addr_put(cm);
	if (peer != NULL) {
		rtnl_link_put(peer);
	}
	if (l != NULL) {
		rtnl_link_put(l);
	}
	if (e < 0) {
		return nlfail(err, errlen, e, "cannot create veth %s with peer %s in %s",
		              s->host_ifname, s->ifname, s->netns);
	}
	return 0;
}

/*
 * proxy_delay 0 on the host end, so proxy ARP answers at once: the knob behind
 * /proc/sys/net/ipv4/neigh/IF/proxy_delay, set through the neighbour table's netlink interface
 * (RTM_SETNEIGHTBL, what `ip ntable change` sends). Opening the /proc/sys path costs in
 * proportion to the host's interfaces (one directory each), 14 % of the agents' CPU while
 * hundreds of containers started.
 */
static int proxy_delay_zero(struct nl_sock *sk, int ifindex, const char *name, char *err,
                            size_t errlen)
{
	struct rtnl_neightbl *t = rtnl_neightbl_alloc();
	int e = -NLE_NOMEM;
	if (t != NULL) {
		rtnl_neightbl_set_family(t, AF_INET);
		rtnl_neightbl_set_name(t, "arp_cache");
		rtnl_neightbl_set_dev(t, ifindex);
		rtnl_neightbl_set_proxy_delay(t, 0);
		e = rtnl_neightbl_change(sk, t, t); /* names the table and device, and the change */
		rtnl_neightbl_put(t);
	}
	return e < 0 ? nlfail(err, errlen, e, "cannot set proxy_delay 0 on %s", name) : 0;
}

/* Host end sysctls and settings, then up. The caller's thread is in the container's namespace
 * (ct_fd); the IPv6 knobs of the host end are /proc/sys files of the host's (host_fd), so the
 * thread steps over for them and back. */
static int host_configure(struct nl_sock *sk, const struct cjob *j, struct rtnl_link *h,
                          int host_fd, int ct_fd, char *err, size_t errlen)
{
	const struct wire_spec *s = j->s;
	const char *n = s->host_ifname;
	int rc;

	if ((rc = proxy_delay_zero(sk, rtnl_link_get_ifindex(h), n, err, errlen)) < 0) {
		return rc;
	}
	if (j->has6) {
		if (setns(host_fd, CLONE_NEWNET) != 0) {
			return sysfail(err, errlen, errno,
			               "cannot return to this host's network namespace");
		}
		static const struct {
			const char *key, *value;
		} v6[] = {{"accept_dad", "0"},
		          {"disable_ipv6", "0"},
		          {"proxy_ndp", "1"},
		          {"forwarding", "1"},
		          {"accept_ra", "0"}};
		for (size_t i = 0; i < sizeof v6 / sizeof v6[0] && rc == 0; i++) {
			rc = sysctl_setf(err, errlen, v6[i].value, "/proc/sys/net/ipv6/conf/%s/%s",
			                 n, v6[i].key);
		}
		if (setns(ct_fd, CLONE_NEWNET) != 0 && rc == 0) {
			rc = sysfail(err, errlen, errno, "cannot enter network namespace %s",
			             s->netns);
		}
		if (rc < 0) {
			return rc;
		}
	}
	return link_converge(sk, h, host_mac, j->mtu, s->alias, true, j->fresh && !j->has6, "", err,
	                     errlen);
}

/* Wait for the host end's usable link-local address (it appears once the pair has carrier). */
static int host_ll_wait(struct nl_sock *sk, const char *name, int ifindex, struct nl_addr **out,
                        char *err, size_t errlen)
{
	for (int i = 0; i < LL_TRIES; i++) {
		int e = link_local6(sk, ifindex, out);
		if (e < 0) {
			return nlfail(err, errlen, e, "cannot list the addresses of %s", name);
		}
		if (*out != NULL) {
			return 0;
		}
		struct timespec ts = {.tv_sec = 0, .tv_nsec = LL_PAUSE_NS};
		nanosleep(&ts, NULL);
	}
	return fail(err, errlen, -ETIMEDOUT,
	            "%s has no IPv6 link-local address after 1 s (IPv6 disabled on this host, or "
	            "addr_gen_mode none?)",
	            name);
}

/* ------------------------------------------------------------------------------------------ */
/* API                                                                                         */

/* What wire_add() and wire_check() start with: the spec checked, the job's families and MTU,
 * the container's namespace open (*fd), a route socket (*sk) and the host end if it exists (*h,
 * NULL when not; h NULL: not looked up). On failure the caller's cleanup releases whatever was
 * set. */
static int begin(const struct wire_spec *s, struct cjob *j, int *fd, struct nl_sock **sk,
                 struct rtnl_link **h, char *err, size_t errlen)
{
	int rc, e;
	if ((rc = spec_check(s, err, errlen)) < 0) {
		return rc;
	}
	families(s, &j->has4, &j->has6);
	j->mtu = s->mtu ? s->mtu : MTU_DEFAULT;
	*fd = open(s->netns, O_RDONLY | O_CLOEXEC);
	if (*fd < 0) {
		return sysfail(err, errlen, errno, "cannot open network namespace %s", s->netns);
	}
	if ((rc = route_socket(sk, err, errlen)) < 0) {
		return rc;
	}
	if (h != NULL && (e = link_get(*sk, s->host_ifname, h)) < 0) {
		return nlfail(err, errlen, e, "cannot look up %s", s->host_ifname);
	}
	return 0;
}

/* Releases what begin() set up (any of it may be missing). */
static void finish(struct cjob *j, int fd, struct nl_sock *sk, struct rtnl_link *h)
{
	nl_addr_put(j->host_ll);
	if (h != NULL) {
		rtnl_link_put(h);
	}
	if (sk != NULL) {
		nl_socket_free(sk);
	}
	if (fd >= 0) {
		close(fd);
	}
}

/* What wire_add()'s steps share: the host's route socket and host end (sk, h), the container's
 * namespace (fd) and, with IPv6, the host's (host_fd, for the host end's /proc/sys knobs). */
struct addjob {
	struct cjob j;
	struct nl_sock *sk;
	struct rtnl_link *h;
	int fd, host_fd;
	struct wire_prepared *prep; /* wire_prepare(): only a new pair, and what finish needs */
	struct ns_socket nsk;       /* j.outside: the container's socket */
};

/*
 * wire_add()'s steps, on one thread inside the container's namespace: csk is a route socket
 * there, a->sk one in the host's (a netlink socket stays in the namespace it was made in,
 * whichever thread uses it). Starting a thread per visit to the container's namespace cost about
 * 0.1 ms a visit; the /proc/sys writes for the host end are the only step that leaves it. With
 * j.outside (an IPv4 preparation, add_run()) they run on the caller's thread instead, csk NULL
 * until the socket a->nsk is making is needed.
 */
static int add_steps(struct nl_sock *csk, void *arg, char *err, size_t errlen)
{
	struct addjob *a = arg;
	struct cjob *j = &a->j;
	const struct wire_spec *s = j->s;
	bool complete = false;
	int rc, e;

	/* A preparation looks at nothing: the exclusive create fails if either name is taken. */
	if (a->prep == NULL && (rc = c_inspect(csk, j, err, errlen)) < 0) {
		return rc;
	}
	if (j->exists && !j->veth) {
		return fail(err, errlen, -EEXIST,
		            "%s in %s is a %s interface, not a veth: refusing to replace it",
		            s->ifname, s->netns, j->kind);
	}
	if (a->h != NULL && j->exists &&
	    (e = is_peer(a->sk, a->h, a->fd, j->ifindex, &complete)) < 0) {
		return nlfail(err, errlen, e, "cannot identify network namespace %s", s->netns);
	}

	if (!complete) {
		if (a->h != NULL) {
			/* A stale host end (its peer elsewhere or gone): ours by alias, or a veth.
			 * Anything else with the name is someone else's device. */
			if (!alias_ours(a->h) && !rtnl_link_is_veth(a->h)) {
				return fail(
				    err, errlen, -EEXIST,
				    "host interface %s exists and is a %s interface that is "
				    "not Tabby's: refusing to replace it",
				    s->host_ifname, link_kind(a->h));
			}
			e = rtnl_link_delete(a->sk, a->h);
			if (e < 0 && e != -NLE_OBJ_NOTFOUND && e != -NLE_NODEV) {
				return nlfail(err, errlen, e, "cannot delete stale %s",
				              s->host_ifname);
			}
			rtnl_link_put(a->h);
			a->h = NULL;
		}
		if (j->exists) {
			j->strict = true;
			if ((rc = c_remove(csk, j, err, errlen)) < 0) {
				return rc;
			}
		}
		if ((rc = pair_create(a->sk, s, j->mtu, a->fd, err, errlen)) < 0) {
			return rc;
		}
		j->fresh = true;
		if (a->prep != NULL) {
			a->prep->created = true;
		}
		if ((e = link_get(a->sk, s->host_ifname, &a->h)) < 0 || a->h == NULL) {
			return e < 0 ? nlfail(err, errlen, e, "cannot look up %s", s->host_ifname)
			             : fail(err, errlen, -ENOENT,
			                    "%s vanished after it was created", s->host_ifname);
		}
	}

	if ((rc = host_configure(a->sk, j, a->h, a->host_fd, a->fd, err, errlen)) < 0) {
		return rc;
	}
	if (j->outside) {
		if ((rc = ns_socket_join(&a->nsk, err, errlen)) < 0) {
			return rc;
		}
		csk = a->nsk.c.sk;
	}
	if ((rc = c_setup(csk, j, err, errlen)) < 0) {
		return rc;
	}
	int hidx = rtnl_link_get_ifindex(a->h);
	if (j->has6) {
		if ((rc = host_ll_wait(a->sk, s->host_ifname, hidx, &j->host_ll, err, errlen)) <
		        0 ||
		    (rc = c_route6(csk, j, err, errlen)) < 0) {
			return rc;
		}
	}
	if ((rc = host_routes_put(a->sk, s, hidx, err, errlen)) < 0) {
		return rc;
	}
	if (a->prep != NULL) {
		/* A socket made in the namespace stays there after its thread ends: the finish
		 * adds the addresses through it without entering again. */
		if (j->outside) {
			a->prep->csk = a->nsk.c.sk;
			a->nsk.c.sk = NULL;
		} else if ((rc = route_socket(&a->prep->csk, err, errlen)) < 0) {
			return rc;
		}
		a->prep->c_ifindex = j->ifindex;
		a->prep->h_ifindex = hidx;
	}
	return 0;
}

/* wire_add() and wire_prepare(): prep NULL or where wire_prepare() puts its result, with
 * the families the addresses will have in has4 and has6. */
static int add_run(const struct wire_spec *s, struct wire_prepared *prep, char *err, size_t errlen)
{
	struct addjob a = {.j = {.s = s}, .fd = -1, .host_fd = -1, .prep = prep};
	int rc;

	if ((rc = begin(s, &a.j, &a.fd, &a.sk, prep != NULL ? NULL : &a.h, err, errlen)) < 0) {
		goto out;
	}
	if (prep != NULL) {
		a.j.has4 = prep->has4;
		a.j.has6 = prep->has6;
	}
	if (a.j.has6 && (a.host_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) < 0) {
		rc = sysfail(err, errlen, errno, "cannot open this host's network namespace");
		goto out;
	}
	if (prep != NULL && !a.j.has6) {
		/*
		 * A preparation without IPv6 writes nothing to the container's /proc/sys (but for
		 * ip_forward, rarely, which enters for it): its steps run here, through a socket a
		 * thread makes in the namespace meanwhile. Its start and end then overlap the
		 * veth's creation instead of bracketing the steps, about 0.1 ms of an ADD's
		 * critical path.
		 */
		a.j.outside = true;
		a.j.nsfd = a.fd;
		if ((rc = ns_socket_start(&a.nsk, a.fd, s->netns, err, errlen)) == 0) {
			rc = add_steps(NULL, &a, err, errlen);
			ns_socket_end(&a.nsk);
		}
	} else {
		rc = in_netns(a.fd, s->netns, add_steps, &a, NULL, err, errlen);
	}
	if (rc == 0 && prep != NULL) {
		prep->hsk = a.sk; /* kept for the finish */
		a.sk = NULL;
	}
out:
	if (a.host_fd >= 0) {
		close(a.host_fd);
	}
	finish(&a.j, a.fd, a.sk, a.h);
	return rc;
}

int wire_prepare(const struct wire_spec *s, bool v4, bool v6, struct wire_prepared *out, char *err,
                 size_t errlen)
{
	struct wire_spec bare = *s;
	bare.n_addrs = 0;
	*out = (struct wire_prepared){.has4 = v4, .has6 = v6};
	int rc = add_run(&bare, out, err, errlen);
	if (rc < 0) {
		bool created = out->created;
		wire_prepared_release(out);
		out->created = created;
	}
	return rc;
}

void wire_prepared_release(struct wire_prepared *p)
{
	if (p->csk != NULL) {
		nl_socket_free(p->csk);
	}
	if (p->hsk != NULL) {
		nl_socket_free(p->hsk);
	}
	*p = (struct wire_prepared){0};
}

int wire_finish(const struct wire_spec *s, struct wire_prepared *p, char *err, size_t errlen)
{
	struct cjob j = {.s = s, .fresh = true};
	int rc;

	families(s, &j.has4, &j.has6);
	if (p->csk == NULL || p->hsk == NULL || j.has4 != p->has4 || j.has6 != p->has6) {
		/* A pair prepared for other families goes: an IPv4-only one has no IPv6
		 * link-local address, nor will it get one (addr_gen_mode none). */
		if (p->hsk != NULL && (j.has4 != p->has4 || j.has6 != p->has6)) {
			struct rtnl_link *l = rtnl_link_alloc();
			if (l != NULL) {
				rtnl_link_set_ifindex(l, p->h_ifindex);
				(void)rtnl_link_delete(p->hsk, l); /* wire_add() converges anyway */
				rtnl_link_put(l);
			}
		}
		wire_prepared_release(p);
		return wire_add(s, err, errlen);
	}
	if ((rc = spec_check(s, err, errlen)) == 0 &&
	    (rc = c_addrs(p->csk, &j, p->c_ifindex, err, errlen)) == 0 &&
	    (rc = rules_put(p->csk, s, 0, p->c_ifindex, err, errlen)) == 0) {
		rc = host_routes_put(p->hsk, s, p->h_ifindex, err, errlen);
	}
	wire_prepared_release(p);
	return rc;
}

int wire_add(const struct wire_spec *s, char *err, size_t errlen)
{
	return add_run(s, NULL, err, errlen);
}

int wire_check(const struct wire_spec *s, char *err, size_t errlen)
{
	struct nl_sock *sk = NULL;
	struct rtnl_link *h = NULL;
	struct nl_cache *routes = NULL;
	struct cjob j = {.s = s};
	char buf[IPAM_ADDR_STRLEN], m1[24], what[200];
	bool peer = false;
	int fd = -1, rc, e;

	if ((rc = begin(s, &j, &fd, &sk, &h, err, errlen)) < 0) {
		goto out;
	}
	if (h == NULL) {
		rc = fail(err, errlen, -ENOENT, "host end %s does not exist", s->host_ifname);
		goto out;
	}
	if (!rtnl_link_is_veth(h)) {
		rc = fail(err, errlen, -EINVAL, "host interface %s is a %s interface, not a veth",
		          s->host_ifname, link_kind(h));
		goto out;
	}
	if ((rc = in_netns(fd, s->netns, c_inspect, &j, NULL, err, errlen)) < 0) {
		goto out;
	}
	if (!j.exists) {
		rc = fail(err, errlen, -ENOENT, "%s in %s does not exist", s->ifname, s->netns);
		goto out;
	}
	if ((e = is_peer(sk, h, fd, j.ifindex, &peer)) < 0) {
		rc = nlfail(err, errlen, e, "cannot identify network namespace %s", s->netns);
		goto out;
	}
	if (!peer) {
		rc = fail(err, errlen, -EINVAL, "%s in %s is not the peer of %s", s->ifname,
		          s->netns, s->host_ifname);
		goto out;
	}
	const char *alias = rtnl_link_get_ifalias(h);
	if (alias == NULL || strcmp(alias, s->alias) != 0) {
		rc = fail(err, errlen, -EINVAL, "host end %s has alias \"%s\", not \"%s\"",
		          s->host_ifname, alias ? alias : "", s->alias);
		goto out;
	}
	if (!(rtnl_link_get_flags(h) & IFF_UP)) {
		rc = fail(err, errlen, -EINVAL, "host end %s is down", s->host_ifname);
		goto out;
	}
	if (!link_mac_is(h, host_mac)) {
		rc = fail(err, errlen, -EINVAL, "host end %s has MAC %s, not " WIRE_HOST_MAC,
		          s->host_ifname, link_mac(h, m1, sizeof m1));
		goto out;
	}
	if (rtnl_link_get_mtu(h) != j.mtu) {
		rc = fail(err, errlen, -EINVAL, "host end %s has MTU %u, not %u", s->host_ifname,
		          rtnl_link_get_mtu(h), j.mtu);
		goto out;
	}
	for (size_t i = 0; i < sizeof host_conf4 / sizeof host_conf4[0]; i++) {
		uint32_t v = 0;
		if (rtnl_link_inet_get_conf(h, host_conf4[i].id, &v) < 0 || v != 1) {
			rc = fail(err, errlen, -EINVAL, "host end %s has %s=%u, not 1",
			          s->host_ifname, host_conf4[i].name, v);
			goto out;
		}
	}
	int hidx = rtnl_link_get_ifindex(h);
	if (j.has6) {
		if ((e = link_local6(sk, hidx, &j.host_ll)) < 0) {
			rc = nlfail(err, errlen, e, "cannot list the addresses of %s",
			            s->host_ifname);
			goto out;
		}
		if (j.host_ll == NULL) {
			rc = fail(err, errlen, -ENOENT,
			          "host end %s has no IPv6 link-local address", s->host_ifname);
			goto out;
		}
	}
	if ((rc = in_netns(fd, s->netns, c_check, &j, NULL, err, errlen)) < 0) {
		goto out;
	}
	for (int fam = AF_INET; fam != 0; fam = fam == AF_INET ? AF_INET6 : 0) {
		if ((fam == AF_INET && !j.has4) || (fam == AF_INET6 && !j.has6)) {
			continue;
		}
		nl_cache_free(routes);
		routes = NULL;
		if ((e = rtnl_route_alloc_cache(sk, fam, 0, &routes)) < 0) {
			rc = nlfail(err, errlen, e, "cannot list routes");
			goto out;
		}
		for (unsigned i = 0; i < s->n_addrs; i++) {
			const struct ipam_addr *ip = &s->addrs[i];
			if (af_of(ip) != fam) {
				continue;
			}
			struct rtnl_route *r = route_find(routes, fam, ip->b, len_of(ip) * 8);
			snprintf(what, sizeof what, "host route %s/%u", ipam_addr_format(ip, buf),
			         len_of(ip) * 8);
			if (r == NULL) {
				rc = fail(err, errlen, -ENOENT, "no %s", what);
				goto out;
			}
			rc = route_verify(r, fam, NULL, hidx, fam == AF_INET ? RT_SCOPE_LINK : -1,
			                  true, what, err, errlen);
			if (rc < 0) {
				goto out;
			}
		}
	}
	rc = 0;
out:
	nl_cache_free(routes);
	finish(&j, fd, sk, h);
	return rc;
}

int wire_del(const char *netns, const char *ifname, const char *host_ifname, const char *alias,
             atomic_bool *identified, char *err, size_t errlen)
{
	struct nl_sock *sk = NULL;
	int hidx = 0, rc, e;

	if ((host_ifname != NULL && !name_ok(host_ifname)) || (netns != NULL && !name_ok(ifname))) {
		return fail(err, errlen, -EINVAL, "interface name is not 1..15 bytes");
	}
	if (host_ifname != NULL && (alias == NULL || !alias_prefixed(alias))) {
		return fail(err, errlen, -EINVAL,
		            "host end alias \"%s\" does not start with \"" WIRE_ALIAS_PREFIX "\"",
		            alias ? alias : "");
	}
	/* Both ends are named first and then deleted by index: once the kernel has announced the
	 * removal, the names are free and the same container's next ADD may make new interfaces
	 * with them while this call still waits for the kernel, and those must not be touched. */
	if (host_ifname != NULL) {
		if ((rc = route_socket(&sk, err, errlen)) < 0) {
			return rc;
		}
		struct rtnl_link *h;
		if ((e = link_get(sk, host_ifname, &h)) < 0) {
			rc = nlfail(err, errlen, e, "cannot look up %s", host_ifname);
			goto out;
		}
		/* Another alias: the name went to another container after this one's record was
		 * deleted (its ADD replaced the stale pair). No alias and no peer index: a veth
		 * whose peer is being torn down, or one an ADD made and could not finish. */
		const char *has = h != NULL ? rtnl_link_get_ifalias(h) : NULL;
		if (h != NULL &&
		    ((has != NULL && strcmp(has, alias) == 0) ||
		     (has == NULL && rtnl_link_is_veth(h) && rtnl_link_get_link(h) == 0))) {
			hidx = rtnl_link_get_ifindex(h);
		}
		if (h != NULL) {
			rtnl_link_put(h);
		}
	}
	if (netns != NULL && netns[0] != '\0') {
		struct wire_spec s = {.netns = netns, .ifname = ifname};
		struct cjob j = {.s = &s, .identified = identified};
		bool entered = false;
		int fd = open(netns, O_RDONLY | O_CLOEXEC);
		if (fd < 0 && errno != ENOENT && errno != ENOTDIR) {
			rc = sysfail(err, errlen, errno, "cannot open network namespace %s", netns);
			goto out;
		}
		if (fd >= 0) {
			rc = in_netns(fd, netns, c_remove, &j, &entered, err, errlen);
			close(fd);
			/* A path that is no namespace any more (the bind mount is gone, the
			 * file left behind) is a missing namespace. */
			if (rc < 0 && entered) {
				goto out;
			}
		}
	}
	/* Also when there was no container side to look up. */
	if (identified != NULL) {
		atomic_store(identified, true);
	}
	rc = 0;
	if (hidx > 0) {
		/* Usually gone already, with its peer in the container. */
		struct rtnl_link *byidx = rtnl_link_alloc();
		if (byidx == NULL) {
			rc = fail(err, errlen, -ENOMEM, "out of memory");
			goto out;
		}
		rtnl_link_set_ifindex(byidx, hidx);
		e = rtnl_link_delete(sk, byidx);
		rtnl_link_put(byidx);
		if (e < 0 && e != -NLE_OBJ_NOTFOUND && e != -NLE_NODEV) {
			rc = nlfail(err, errlen, e, "cannot delete %s", host_ifname);
		}
	}
out:
	nl_socket_free(sk);
	return rc;
}

int wire_list(struct wire_link **out, unsigned *n, char *err, size_t errlen)
{
	struct nl_sock *sk = NULL;
	struct nl_cache *cache = NULL;
	struct wire_link *v = NULL;
	unsigned cnt = 0, cap = 0;
	size_t plen = strlen(WIRE_ALIAS_PREFIX);
	int rc, e;

	*out = NULL;
	*n = 0;
	if ((rc = route_socket(&sk, err, errlen)) < 0) {
		return rc;
	}
	if ((e = rtnl_link_alloc_cache(sk, AF_UNSPEC, &cache)) < 0) {
		rc = nlfail(err, errlen, e, "cannot list links");
		goto out;
	}
	for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		struct rtnl_link *l = (struct rtnl_link *)o;
		const char *alias = rtnl_link_get_ifalias(l);
		if (alias == NULL || strncmp(alias, WIRE_ALIAS_PREFIX, plen) != 0) {
			continue;
		}
		if (cnt == cap) {
			unsigned ncap = cap ? 2 * cap : 16;
			struct wire_link *nv = realloc(v, ncap * sizeof *nv);
			if (nv == NULL) {
				rc = fail(err, errlen, -ENOMEM, "out of memory");
				goto out;
			}
			v = nv;
			cap = ncap;
		}
		struct wire_link *w = &v[cnt++];
		memset(w, 0, sizeof *w);
		snprintf(w->name, sizeof w->name, "%s", rtnl_link_get_name(l));
		snprintf(w->alias, sizeof w->alias, "%s", alias + plen);
		w->ifindex = rtnl_link_get_ifindex(l);
	}
	*out = v;
	*n = cnt;
	v = NULL;
	rc = 0;
out:
	free(v);
	nl_cache_free(cache);
	nl_socket_free(sk);
	return rc;
}

/* The index of a among the n addresses addrs, or -1. */
static int addr_among(struct nl_addr *a, const struct ipam_addr *addrs, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (nl_same(a, af_of(&addrs[i]), addrs[i].b)) {
			return (int)i;
		}
	}
	return -1;
}

/*
 * One flush the kernel filters: the entries whose original source (or, with dst, destination) is
 * a. The kernel walks its table under one bucket lock at a time and copies nothing out, where a
 * listing holds softirqs off for the whole walk and so holds up RCU grace periods (which taking a
 * veth down waits for). A request with a tuple and no CTA_FILTER is the deletion of one exact
 * entry, so a kernel that does not know filtered flushes refuses this one (the tuple has no
 * protocol) rather than flush everything.
 */
static int ct_flush_filtered(struct nl_sock *sk, const struct ipam_addr *a, bool dst)
{
	bool v4 = a->family == 4;
	struct nl_msg *m =
	    nfnlmsg_alloc_simple(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_DELETE,
	                         NLM_F_REQUEST | NLM_F_ACK, v4 ? AF_INET : AF_INET6, 0);
	struct nlattr *tuple, *ip, *filter;
	int e = -NLE_NOMEM;

	if (m == NULL) {
		return e;
	}
	int attr =
	    v4 ? (dst ? CTA_IP_V4_DST : CTA_IP_V4_SRC) : (dst ? CTA_IP_V6_DST : CTA_IP_V6_SRC);
	if ((tuple = nla_nest_start(m, CTA_TUPLE_ORIG)) == NULL ||
	    (ip = nla_nest_start(m, CTA_TUPLE_IP)) == NULL ||
	    nla_put(m, attr, v4 ? 4 : 16, a->b) < 0) {
		goto out;
	}
	nla_nest_end(m, ip);
	nla_nest_end(m, tuple);
	/* The flags say which tuple fields count: the kernel's CTA_FILTER_FLAG(CTA_IP_SRC) is bit
	 * 0, CTA_IP_DST bit 1 (not in the uapi header), in host order. */
	if ((filter = nla_nest_start(m, CTA_FILTER)) == NULL ||
	    nla_put_u32(m, CTA_FILTER_ORIG_FLAGS, dst ? 1u << 1 : 1u << 0) < 0 ||
	    nla_put_u32(m, CTA_FILTER_REPLY_FLAGS, 0) < 0) {
		goto out;
	}
	nla_nest_end(m, filter);
	e = nl_send_auto(sk, m);
	if (e >= 0) {
		e = nl_wait_for_ack(sk);
	}
out:
	nlmsg_free(m);
	return e < 0 ? e : 0;
}

/* The fallback: list the table once and delete what matches. */
static int ct_flush_listing(struct nl_sock *sk, const struct ipam_addr *addrs, unsigned n,
                            char *err, size_t errlen)
{
	struct nl_cache *cache = NULL;
	char buf[IPAM_ADDR_STRLEN];
	int rc, e;

	/* The dump asks for AF_UNSPEC: both families, every zone. Without conntrack in this
	 * namespace there is nothing to flush. */
	if ((e = nfnl_ct_alloc_cache(sk, &cache)) < 0) {
		if (e == -NLE_OPNOTSUPP || e == -NLE_OBJ_NOTFOUND) {
			return 0;
		}
		return nlfail(err, errlen, e, "cannot list conntrack entries");
	}
	for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		struct nfnl_ct *ct = (struct nfnl_ct *)o;
		int k = addr_among(nfnl_ct_get_src(ct, 0), addrs, n);
		if (k < 0 && (k = addr_among(nfnl_ct_get_dst(ct, 0), addrs, n)) < 0) {
			continue;
		}
		e = nfnl_ct_del(sk, ct, 0);
		if (e == -NLE_OBJ_NOTFOUND) {
			continue; /* expired meanwhile */
		}
		if (e < 0) {
			rc = nlfail(err, errlen, e, "cannot delete a conntrack entry of %s",
			            ipam_addr_format(&addrs[k], buf));
			goto out;
		}
	}
	rc = 0;
out:
	nl_cache_free(cache);
	return rc;
}

int wire_flush_conntrack(const struct ipam_addr *addrs, unsigned n, bool listing, bool *listed,
                         char *err, size_t errlen)
{
	struct nl_sock *sk = NULL;
	char buf[IPAM_ADDR_STRLEN];
	int rc, e;

	if (listed != NULL) {
		*listed = false;
	}
	if (n == 0) {
		return 0;
	}
	for (unsigned i = 0; i < n; i++) {
		if (addrs[i].family != 4 && addrs[i].family != 6) {
			return fail(err, errlen, -EINVAL,
			            "no address to flush conntrack entries for");
		}
	}
	if ((sk = nl_socket_alloc()) == NULL) {
		return fail(err, errlen, -ENOMEM, "cannot allocate a netlink socket");
	}
	if ((e = nfnl_connect(sk)) < 0) {
		rc = nlfail(err, errlen, e, "cannot open a netfilter netlink socket");
		goto out;
	}
	for (unsigned i = 0; !listing && i < n; i++) {
		for (int dst = 0; dst < 2; dst++) {
			e = ct_flush_filtered(sk, &addrs[i], dst);
			if (e == 0) {
				continue;
			}
			if (i == 0 && dst == 0 &&
			    (e == -NLE_INVAL || e == -NLE_OPNOTSUPP || e == -NLE_OBJ_NOTFOUND)) {
				listing = true; /* this kernel cannot filter a flush */
				break;
			}
			rc = nlfail(err, errlen, e, "cannot flush the conntrack entries of %s",
			            ipam_addr_format(&addrs[i], buf));
			goto out;
		}
	}
	rc = 0;
	if (listing) {
		if (listed != NULL) {
			*listed = true;
		}
		rc = ct_flush_listing(sk, addrs, n, err, errlen);
	}
out:
	nl_socket_free(sk);
	return rc;
}
