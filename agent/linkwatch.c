/*
 * Link removals announced in this host's network namespace, so that a CNI DEL can answer as soon
 * as the container's interface is gone instead of when the kernel has finished freeing it.
 *
 * Why. Deleting a veth pair takes about 20 ms here, and almost none of it is the removal: the
 * kernel takes both ends out of its tables, flushes their routes, addresses and neighbours and
 * announces RTM_DELLINK within about 0.5 ms, and only then, after it has let go of the RTNL lock,
 * waits for an RCU barrier and the devices' last references before the delete request returns.
 * From that announcement on the names are free, the host route is gone and nothing can send
 * through either end, which is all a runtime's DEL needs to hold. The deleting worker still waits
 * out the rest, and the conntrack flush still comes after it (routes_cni.c, CT_DEFER_MAX_MS).
 *
 * How. One libnl socket, read on the loop thread through a uv_poll, that is a member of
 * RTNLGRP_LINK only while a wait is registered: the first wait joins the group and the end of the
 * last one leaves it. A host's links change all the time (every container's pair is made, set up
 * and given its carrier, and other runtimes' interfaces come and go), and a member is woken for
 * each change: always a member, the loop woke about twice for every CNI ADD, in the middle of its
 * replication, to read announcements nobody waited for. Only RTM_DELLINK is looked at: its name
 * and alias against the waits registered, a short list (the DELs in flight on this host). On
 * leaving, what the kernel had queued is read and dropped, so an announcement of the last window
 * cannot end a wait of the next one. If the socket overflows (ENOBUFS, a burst of thousands of
 * link changes) announcements are lost; the waits they would have ended are ended by the
 * delete's own return, so nothing waits longer than it did without this file.
 */
#include <errno.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <stdlib.h>
#include <string.h>

#include "agent/internal.h"

/* Big enough that a burst of container starts and stops does not overflow it (each link change
 * is a message of about 1.5 KiB). */
#define LINKWATCH_RCVBUF (1 << 20)
/* A multicast link message is one skb; 32 KiB holds any of them, so no MSG_PEEK is needed to
 * size the buffer first. */
#define LINKWATCH_MSGBUF 32768

struct linkwatch {
	struct nl_sock *sk;
	struct nl_cb *cb; /* the socket's, referenced once for nl_recvmsgs_report() */
	uv_poll_t poll;
	struct link_gone *waits;
	bool joined;  /* a member of RTNLGRP_LINK (while waits is not empty) */
	bool reading; /* in read_all(): a wait's callback must not start another read */
	bool overflow_logged;
};

static bool attr_is(struct nlattr *attr, const char *want)
{
	if (attr == NULL || want == NULL) {
		return attr == NULL && want == NULL;
	}
	size_t n = strnlen(nla_data(attr), (size_t)nla_len(attr));
	return n == strlen(want) && memcmp(nla_data(attr), want, n) == 0;
}

static int on_msg(struct nl_msg *msg, void *arg)
{
	struct linkwatch *lw = arg;
	struct nlmsghdr *h = nlmsg_hdr(msg);
	struct nlattr *tb[IFLA_MAX + 1];

	if (h->nlmsg_type != RTM_DELLINK ||
	    nlmsg_parse(h, sizeof(struct ifinfomsg), tb, IFLA_MAX, NULL) < 0 ||
	    tb[IFLA_IFNAME] == NULL) {
		return NL_OK;
	}
	/* A callback may register or cancel waits (it answers a request), so the match is taken
	 * off the list before it runs and the walk starts over. */
	for (;;) {
		struct link_gone **pp = &lw->waits, *g = NULL;
		for (; *pp != NULL; pp = &(*pp)->next) {
			if (attr_is(tb[IFLA_IFNAME], (*pp)->name) &&
			    attr_is(tb[IFLA_IFALIAS], (*pp)->alias)) {
				g = *pp;
				*pp = g->next;
				break;
			}
		}
		if (g == NULL) {
			return NL_OK;
		}
		g->next = NULL;
		g->cb(g);
	}
}

/*
 * Reads what is queued. nl_recvmsgs_report(): the number of messages read; once the non-blocking
 * socket is empty, -NLE_AGAIN (0 only if the socket was closed). Any other error ends this read
 * too: the loop calls again while something is queued. Bounded, so a host changing links faster
 * than this reads cannot hold the loop. An overflow (ENOBUFS, -NLE_NOMEM) is reported once per
 * socket and the read goes on: what is queued after the loss is still good. Returns whether it
 * stopped at the bound, with more perhaps queued.
 */
static bool read_all(struct linkwatch *lw)
{
	bool more = true;
	lw->reading = true;
	for (int i = 0; i < 256; i++) {
		int rv = nl_recvmsgs_report(lw->sk, lw->cb);
		if (rv == -NLE_NOMEM) {
			if (!lw->overflow_logged) {
				lw->overflow_logged = true;
				agent_log(
				    "link announcements were lost (socket overflow); CNI DELs they "
				    "concerned answer when their removal returns");
			}
			continue;
		}
		if (rv <= 0) {
			more = false;
			break;
		}
	}
	lw->reading = false;
	return more;
}

/* With no wait left, leaves the group and drops what it had queued (read with no wait to
 * match). Not from inside a read: the read's end calls it again. */
static void leave_if_idle(struct linkwatch *lw)
{
	if (lw->waits != NULL || !lw->joined || lw->reading) {
		return;
	}
	/* Failing to leave only keeps the wake-ups: what comes is read and matches nothing, and
	 * the next wait's end tries again. */
	if (nl_socket_drop_membership(lw->sk, RTNLGRP_LINK) < 0) {
		return;
	}
	lw->joined = false;
	/* All of it, past the bound: nothing new comes once the group is left, so the socket's
	 * buffer bounds this read. */
	while (read_all(lw)) {
	}
}

static void on_readable(uv_poll_t *p, int status, int events)
{
	struct linkwatch *lw = p->data;
	(void)events;
	if (status < 0) {
		return;
	}
	(void)read_all(lw); /* what is left past the bound wakes the poll again */
	leave_if_idle(lw);
}

int linkwatch_start(struct agent *a)
{
	struct linkwatch *lw = calloc(1, sizeof *lw);
	int rv = -ENOMEM;
	if (lw == NULL) {
		return -ENOMEM;
	}
	if ((lw->sk = nl_socket_alloc()) == NULL) {
		goto err;
	}
	nl_socket_disable_seq_check(lw->sk);
	nl_socket_modify_cb(lw->sk, NL_CB_VALID, NL_CB_CUSTOM, on_msg, lw);
	if (nl_connect(lw->sk, NETLINK_ROUTE) < 0 || nl_socket_set_nonblocking(lw->sk) < 0) {
		rv = -EIO;
		goto err;
	}
	/* Failing to grow the buffer only makes an overflow likelier, which is handled. */
	(void)nl_socket_set_buffer_size(lw->sk, LINKWATCH_RCVBUF, 0);
	nl_socket_disable_msg_peek(lw->sk);
	if (nl_socket_set_msg_buf_size(lw->sk, LINKWATCH_MSGBUF) < 0) {
		goto err;
	}
	lw->cb = nl_socket_get_cb(lw->sk);
	if (uv_poll_init(a->loop, &lw->poll, nl_socket_get_fd(lw->sk)) != 0) {
		rv = -EIO;
		goto err;
	}
	lw->poll.data = lw;
	uv_poll_start(&lw->poll, UV_READABLE, on_readable);
	a->linkwatch = lw;
	return 0;
err:
	nl_cb_put(lw->cb);
	nl_socket_free(lw->sk);
	free(lw);
	return rv;
}

static void closed(uv_handle_t *h)
{
	struct linkwatch *lw = h->data;
	nl_cb_put(lw->cb);
	nl_socket_free(lw->sk);
	free(lw);
}

void linkwatch_stop(struct agent *a)
{
	struct linkwatch *lw = a->linkwatch;
	if (lw == NULL) {
		return;
	}
	a->linkwatch = NULL;
	/* The waits left are ended by their deletes' returns, as without a watch. */
	lw->waits = NULL;
	uv_close((uv_handle_t *)&lw->poll, closed);
}

bool linkwatch_wait(struct agent *a, struct link_gone *g)
{
	struct linkwatch *lw = a->linkwatch;
	if (lw == NULL || g->name[0] == '\0') {
		return false;
	}
	/* Joined before the caller starts the removal, so its announcement is queued to us. */
	if (!lw->joined) {
		if (nl_socket_add_membership(lw->sk, RTNLGRP_LINK) < 0) {
			return false;
		}
		lw->joined = true;
	}
	g->next = lw->waits;
	lw->waits = g;
	return true;
}

void linkwatch_cancel(struct agent *a, struct link_gone *g)
{
	struct linkwatch *lw = a->linkwatch;
	if (lw == NULL) {
		return;
	}
	for (struct link_gone **pp = &lw->waits; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == g) {
			*pp = g->next;
			g->next = NULL;
			break;
		}
	}
	leave_if_idle(lw);
}
