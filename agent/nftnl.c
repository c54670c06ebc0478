/*
 * The applier's fast path (agent/nft.h): the small batches of an incremental policy flush,
 * straight to the kernel through libnftnl, without libnftables.
 *
 * Why it exists. libnftables 1.0.6 lists every chain and every set of the host (and the
 * elements of every interval set) into its cache before it runs any "add element", "delete
 * element", "delete chain" or "add rule", and that listing cannot be turned off or kept between
 * runs: the kernel's generation changes with each of our own commits, which invalidates it. With
 * the ruleset of issue 4's benchmark (about 1,400 chains and 1,000 sets) that listing alone
 * takes about 5 ms, for a batch whose own work takes a tenth of a millisecond. The commands of an
 * incremental flush are mostly of a few plain shapes (set and map elements, endpoint chains made
 * of mark tests and jumps), and libnftnl builds exactly those messages without a cache.
 *
 * The contract is all or nothing, checked before anything is sent: a batch is translated whole
 * into netlink messages, and a single command outside the plain shapes below (an ICMP type
 * match, a log statement, a set with flags, a base chain...) makes agent_nftnl_apply() answer
 * -ENOTSUP without touching the kernel, so the caller hands the batch to libnftables, which
 * takes everything. The plain shapes, in libnftables JSON:
 *
 *   add|delete element  on a set or verdict map whose key is ipv4_addr, ipv6_addr or ifname
 *                       (keys as strings, map data as verdicts)
 *   add set             a plain set (no flags) of such keys, with or without its elements
 *   add chain           a regular chain: name only
 *   flush|delete chain  by name;  delete set  by name
 *   delete rule         by "index" (the compiler's rules by position, policy.h)
 *   add rule            statements among: match of "meta mark" (optionally "& constant")
 *                       against a constant, "==" or "!="; mangle of meta mark to "meta mark &
 *                       constant" or "meta mark | constant"; the matches of policy rules
 *                       ("Matches on packet fields" below: meta nfproto and l4proto, ip and ip6
 *                       addresses, th ports, against constants, ranges, prefixes, named and
 *                       anonymous sets); one closing verdict (accept, drop, return, continue,
 *                       jump, goto); "insert rule" the same with an "index"
 *
 * Rules by position. The compiler names a rule to delete, or to insert before, by its index in
 * the chain; the kernel names it by handle. The handles of a chain's rules, in order, are
 * remembered from a dump of the chain (one GETRULE, the first time a position in it is needed)
 * and kept up to date through the batches sent here: a batch asks the kernel to echo each rule
 * it adds to a remembered chain, and the echo (which carries the adding message's sequence
 * number) gives the new rule's handle. A batch works on copies of the lists it touches, which
 * replace the remembered ones only once the kernel has taken it. agent_nftnl_resolve() turns
 * the indexes of a batch for libnftables into handles the same way.
 *
 * The bytecode for these is what nft itself emits for the same text (nft --debug=netlink shows
 * it), so "nft list ruleset" reads the same whichever path loaded it; the kernel test
 * test_policy_kernel.c checks that, and checks packets against the evaluator after incremental
 * batches that took this path.
 *
 * Element keys are encoded from the set's key type, which the kernel is asked for (one GETSET)
 * the first time a set is named and which is then remembered by table and name. The memory is
 * dropped whenever anything might have changed a set behind it: after every batch libnftables
 * ran, after every failure, and for a set deleted here.
 *
 * The batch goes out in one sendmsg() and comes back synchronously (netlink runs the batch in the
 * sender's context), acknowledged on its last message; the kernel reports every failing message
 * by its sequence number, which names the command in the error text.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/gen.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/udata.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <net/if.h>
#include <poll.h>
#include <search.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/nft.h"

/* nftables datatypes (nft's src/datatype.h numbering, which the kernel stores as the key type
 * and nft reads back): only these keys are encoded here. */
#define TYPE_IPADDR       7
#define TYPE_IP6ADDR      8
#define TYPE_INET_PROTO   12
#define TYPE_INET_SERVICE 13
#define TYPE_IFNAME       41

/* nft's enum byteorder, kept in a set's user data for "nft list" to read its keys back */
#define BYTEORDER_HOST 1
#define BYTEORDER_BIG  2

/* Bounds that keep every message under MSG_ROOM, checked before anything is built: names
 * shorter than NFT_NAME_MAXLEN (256), at most ELEMS_PER_MSG elements of at most 48 + 256 bytes
 * (an ifname key and a jump verdict) per message of map elements and PLAIN_ELEMS_PER_MSG of at
 * most 32 bytes per message of plain set elements, at most STMTS_MAX statements of at most 5
 * expressions per rule. */
#define ELEMS_PER_MSG 128
/* Elements of a plain set (no map data) are at most 32 bytes (a 16-byte key in its nests):
 * 1,024 take 32 KiB. Fewer messages, fewer lookups of the set by the kernel. */
#define PLAIN_ELEMS_PER_MSG 1024
#define STMTS_MAX           16
#define MSG_ROOM            (64 * 1024)
#define BATCH_MAX           (4u << 20) /* a bigger batch goes to libnftables */
#define ANSWER_MS           5000

struct set_info {
	char *key; /* "family/table/name" */
	uint32_t key_type, key_len, flags, data_type;
	/* Made by the batch that began with sequence number made_in (when made_here), as set ID
	 * id: that batch's element messages name it by ID alone (see put_elems). */
	bool made_here;
	uint32_t made_in, id;
};

/* The handles of a chain's rules in the kernel, in order. In a batch's copy, an entry with
 * PENDING set stands for a rule the batch adds: the rest is its message's index in the batch. */
#define PENDING (UINT64_C(1) << 63)
struct chain_rules {
	char *key; /* "family/table/chain" */
	uint64_t *h;
	unsigned n, cap;
	bool gone; /* a batch's copy: the batch deletes the chain */
};

struct agent_nftnl {
	struct mnl_socket *nl;
	uint32_t portid, seq;
	size_t sndbuf; /* what one datagram may hold */
	void *sets;    /* tsearch tree of struct set_info, by key */
	void *chains;  /* tsearch tree of struct chain_rules, by key: the chains known by handle */
	/* The ruleset generation the remembered sets belong to: the kernel's after our last
	 * batch. Another one at the next batch means someone else changed the ruleset. */
	uint32_t gen;
	bool have_gen;
};

/* A batch under construction. */
struct batch {
	char *buf;
	size_t len, cap;
	unsigned n;         /* messages after the batch begin */
	uint32_t begin_seq; /* the batch begin's sequence number: every later one is larger */
	unsigned *cmd_of;   /* command index of each message */
	uint32_t *seq_of;   /* and its sequence number */
	unsigned cmd;       /* command being translated */
	size_t last;        /* offset of the last message */
	/* The batch's copies of the chains whose rules it adds or moves (see the head). */
	struct chain_rules **work;
	unsigned n_work, cap_work, last_work;
	uint64_t *echo; /* per message: the handle the kernel echoed for the rule it added, or 0 */
	char *err;      /* a refused position is named here */
	size_t errlen;
};

static int info_cmp(const void *a, const void *b)
{
	return strcmp(((const struct set_info *)a)->key, ((const struct set_info *)b)->key);
}

static void info_free(void *p)
{
	struct set_info *i = p;

	free(i->key);
	free(i);
}

static int rules_cmp(const void *a, const void *b)
{
	return strcmp(((const struct chain_rules *)a)->key, ((const struct chain_rules *)b)->key);
}

static void rules_free(void *p)
{
	struct chain_rules *r = p;

	if (r == NULL)
		return;
	free(r->key);
	free(r->h);
	free(r);
}

void agent_nftnl_forget(struct agent_nftnl *f)
{
	if (f == NULL)
		return;
	tdestroy(f->sets, info_free);
	f->sets = NULL;
	tdestroy(f->chains, rules_free);
	f->chains = NULL;
	f->have_gen = false;
}

/* Drop what is remembered of one set (nothing when nothing is). */
static void forget_set(struct agent_nftnl *f, int family, const char *table, const char *name)
{
	struct set_info probe = {0}, **found;

	if (asprintf(&probe.key, "%d/%s/%s", family, table, name) < 0) {
		agent_nftnl_forget(f); /* cannot name it: forget them all */
		return;
	}
	if ((found = tfind(&probe, &f->sets, info_cmp)) != NULL) {
		struct set_info *old = *found;
		tdelete(&probe, &f->sets, info_cmp);
		info_free(old);
	}
	free(probe.key);
}

int agent_nftnl_new(struct agent_nftnl **out)
{
	struct agent_nftnl *f = calloc(1, sizeof(*f));
	int one = 1, big = 8 << 20;

	*out = NULL;
	if (f == NULL)
		return -ENOMEM;
	f->nl = mnl_socket_open(NETLINK_NETFILTER);
	if (f->nl == NULL || mnl_socket_bind(f->nl, 0, MNL_SOCKET_AUTOPID) < 0)
		goto err;
	f->portid = mnl_socket_get_portid(f->nl);
	f->seq = (uint32_t)time(NULL);
	/* Acknowledgements without the request copied back: a failing batch of many elements
	 * would otherwise fill the receive buffer with copies of itself. Best effort. */
	(void)mnl_socket_setsockopt(f->nl, NETLINK_CAP_ACK, &one, sizeof(one));
	/* Room for a whole batch in one datagram, and for its answers. FORCE needs
	 * CAP_NET_ADMIN, which the agent has; without it the plain limit applies and a batch
	 * that does not fit goes to libnftables. */
	int fd = mnl_socket_get_fd(f->nl);
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big)) != 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big)) != 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	int got = 0;
	socklen_t gl = sizeof(got);
	/* netlink refuses a datagram longer than the send buffer less its own overhead */
	if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &got, &gl) != 0 || got < 64 * 1024)
		goto err;
	f->sndbuf = (size_t)got - 4096;
	*out = f;
	return 0;
err:
	agent_nftnl_free(f);
	return errno == ENOMEM ? -ENOMEM : -EIO;
}

void agent_nftnl_free(struct agent_nftnl *f)
{
	if (f == NULL)
		return;
	agent_nftnl_forget(f);
	if (f->nl != NULL)
		mnl_socket_close(f->nl);
	free(f);
}

/* ------------------------------------------------------------------------------------------ */
/* Reading the libnftables JSON                                                                */

/* A table, chain or set name from o[key]: a string of 1..NFT_NAME_MAXLEN-1 bytes, or NULL. */
static const char *name_of(const json_t *o, const char *key)
{
	const json_t *j = json_object_get(o, key);
	size_t n = json_string_length(j);

	if (!json_is_string(j) || n == 0 || n >= NFT_NAME_MAXLEN ||
	    strlen(json_string_value(j)) != n)
		return NULL;
	return json_string_value(j);
}

static int family_of(const char *s)
{
	if (s == NULL)
		return -1;
	if (strcmp(s, "inet") == 0)
		return NFPROTO_INET;
	if (strcmp(s, "ip") == 0)
		return NFPROTO_IPV4;
	if (strcmp(s, "ip6") == 0)
		return NFPROTO_IPV6;
	return -1;
}

/* The object's keys are all among allowed (a NULL-terminated list). */
static bool only_keys(const json_t *o, const char *const *allowed)
{
	const char *k;
	json_t *v;

	json_object_foreach ((json_t *)o, k, v) {
		const char *const *a = allowed;
		while (*a != NULL && strcmp(*a, k) != 0)
			a++;
		if (*a == NULL)
			return false;
	}
	return true;
}

/* A constant of 32 bits. */
static bool u32_of(const json_t *j, uint32_t *out)
{
	if (!json_is_integer(j))
		return false;
	json_int_t v = json_integer_value(j);
	if (v < 0 || v > 0xffffffffLL)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* {"meta": {"key": "mark"}} */
static bool is_meta_mark(const json_t *j)
{
	const json_t *m = json_object_get(j, "meta");

	return json_is_object(j) && json_object_size(j) == 1 && json_is_object(m) &&
	       json_object_size(m) == 1 && json_is_string(json_object_get(m, "key")) &&
	       strcmp(json_string_value(json_object_get(m, "key")), "mark") == 0;
}

/* {"OP": [{"meta": {"key": "mark"}}, CONSTANT]} for OP "&" or "|" */
static bool mark_binop(const json_t *j, const char *op, uint32_t *c)
{
	const json_t *a = json_object_get(j, op);

	return json_is_object(j) && json_object_size(j) == 1 && json_is_array(a) &&
	       json_array_size(a) == 2 && is_meta_mark(json_array_get(a, 0)) &&
	       u32_of(json_array_get(a, 1), c);
}

/* A verdict statement: {"accept": null}, ..., {"jump": {"target": "chain"}}. */
static bool verdict_of(const json_t *j, int *code, const char **chain)
{
	static const struct {
		const char *name;
		int code;
	} plain[] = {{"accept", NF_ACCEPT},
	             {"drop", NF_DROP},
	             {"return", NFT_RETURN},
	             {"continue", NFT_CONTINUE}};
	const char *k;
	json_t *v;

	if (!json_is_object(j) || json_object_size(j) != 1)
		return false;
	json_object_foreach ((json_t *)j, k, v) {
		for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
			if (strcmp(k, plain[i].name) == 0 && json_is_null(v)) {
				*code = plain[i].code;
				*chain = NULL;
				return true;
			}
		}
		if (strcmp(k, "jump") != 0 && strcmp(k, "goto") != 0)
			return false;
		if (!json_is_object(v) || json_object_size(v) != 1 ||
		    (*chain = name_of(v, "target")) == NULL)
			return false;
		*code = strcmp(k, "jump") == 0 ? NFT_JUMP : NFT_GOTO;
		return true;
	}
	return false;
}

/* ------------------------------------------------------------------------------------------ */
/* Building messages                                                                           */

/* Room for one more message of at most MSG_ROOM bytes; false when the batch is too big. */
static bool batch_room(struct batch *b)
{
	if (b->cap - b->len >= MSG_ROOM)
		return true;
	size_t cap = b->cap ? b->cap * 2 : 4 * MSG_ROOM;
	if (cap > BATCH_MAX + 2 * MSG_ROOM)
		return false;
	/* A message is at least a header long: that many messages at most. */
	size_t most = cap / NLMSG_ALIGN(sizeof(struct nlmsghdr));
	char *p = realloc(b->buf, cap);
	if (p != NULL)
		b->buf = p;
	unsigned *c = realloc(b->cmd_of, most * sizeof(*c));
	if (c != NULL)
		b->cmd_of = c;
	uint32_t *q = realloc(b->seq_of, most * sizeof(*q));
	if (q != NULL)
		b->seq_of = q;
	if (p == NULL || c == NULL || q == NULL)
		return false;
	b->cap = cap;
	return true;
}

/* The header of the next message; the caller fills its payload, then batch_done(). */
static struct nlmsghdr *batch_hdr(struct agent_nftnl *f, struct batch *b, uint16_t type, int family,
                                  uint16_t flags)
{
	if (!batch_room(b))
		return NULL;
	b->seq_of[b->n] = f->seq;
	b->cmd_of[b->n] = b->cmd;
	return nftnl_nlmsg_build_hdr(b->buf + b->len, type, (uint16_t)family, flags, f->seq++);
}

static void batch_done(struct batch *b, struct nlmsghdr *nlh)
{
	assert(nlh->nlmsg_len <= MSG_ROOM); /* the bounds at the top of the file */
	b->last = (size_t)((char *)nlh - b->buf);
	b->len += NLMSG_ALIGN(nlh->nlmsg_len);
	b->n++;
}

/* Read and drop whatever is queued on the socket (answers to requests given up on). */
static void drain(struct agent_nftnl *f)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	int fd = mnl_socket_get_fd(f->nl);

	while (poll(&(struct pollfd){.fd = fd, .events = POLLIN}, 1, 0) > 0 &&
	       recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

/* Send one request (nlh, asking for an acknowledgement, or a dump) and hand each message of its
 * answer to cb until the acknowledgement or, for a dump, NLMSG_DONE (which carries the dump's
 * error code as an acknowledgement does): 0, the kernel's error, or -EIO when it does not
 * answer. */
static int request(struct agent_nftnl *f, struct nlmsghdr *nlh,
                   int (*cb)(const struct nlmsghdr *h, void *arg), void *arg)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	int fd = mnl_socket_get_fd(f->nl);
	uint32_t seq = nlh->nlmsg_seq;

	if (mnl_socket_sendto(f->nl, nlh, nlh->nlmsg_len) < 0)
		return -EIO;
	for (;;) {
		if (poll(&(struct pollfd){.fd = fd, .events = POLLIN}, 1, ANSWER_MS) <= 0)
			return -EIO;
		ssize_t n = mnl_socket_recvfrom(f->nl, buf, sizeof(buf));
		if (n <= 0)
			return -EIO;
		const struct nlmsghdr *h = (const struct nlmsghdr *)buf;
		int left = (int)n;
		for (; mnl_nlmsg_ok(h, left); h = mnl_nlmsg_next(h, &left)) {
			if (h->nlmsg_seq != seq)
				continue; /* a stale answer to an earlier request */
			if (h->nlmsg_type == NLMSG_ERROR || h->nlmsg_type == NLMSG_DONE) {
				if (h->nlmsg_len < NLMSG_HDRLEN + sizeof(int))
					return -EIO;
				return *(const int *)mnl_nlmsg_get_payload(
				    h); /* nlmsgerr's first */
			}
			if (cb(h, arg) != 0)
				return -EIO;
		}
	}
}

static int gen_cb(const struct nlmsghdr *h, void *arg)
{
	struct nftnl_gen *g = nftnl_gen_alloc();
	int rv = -1;

	if (g != NULL && (h->nlmsg_type & 0xff) == NFT_MSG_NEWGEN &&
	    nftnl_gen_nlmsg_parse(h, g) == 0 && nftnl_gen_is_set(g, NFTNL_GEN_ID)) {
		*(uint32_t *)arg = nftnl_gen_get_u32(g, NFTNL_GEN_ID);
		rv = 0;
	}
	if (g != NULL)
		nftnl_gen_free(g);
	return rv;
}

/* The kernel's ruleset generation. */
static int gen_get(struct agent_nftnl *f, uint32_t *gen)
{
	char buf[256];
	struct nlmsghdr *nlh =
	    nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETGEN, AF_UNSPEC, NLM_F_ACK, f->seq++);
	uint32_t g = 0;
	int rv = request(f, nlh, gen_cb, &g);

	if (rv == 0 && g == 0)
		rv = -EIO;
	*gen = g;
	return rv;
}

static int set_cb(const struct nlmsghdr *h, void *arg)
{
	struct nftnl_set **out = arg;

	if ((h->nlmsg_type & 0xff) != NFT_MSG_NEWSET || *out != NULL)
		return 0;
	if ((*out = nftnl_set_alloc()) == NULL)
		return -1;
	return nftnl_set_nlmsg_parse(h, *out) < 0 ? -1 : 0;
}

/* What the kernel says about one set; remembered. NULL when it has no such set (or cannot
 * say): the batch then goes to libnftables, which reports it properly. */
static const struct set_info *set_lookup(struct agent_nftnl *f, int family, const char *table,
                                         const char *name)
{
	struct set_info probe = {0}, *info = NULL, **found;
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nftnl_set *s = NULL, *got = NULL;

	if (asprintf(&probe.key, "%d/%s/%s", family, table, name) < 0)
		return NULL;
	found = tfind(&probe, &f->sets, info_cmp);
	if (found != NULL) {
		free(probe.key);
		return *found;
	}
	if ((s = nftnl_set_alloc()) == NULL)
		goto out;
	nftnl_set_set_str(s, NFTNL_SET_TABLE, table);
	nftnl_set_set_str(s, NFTNL_SET_NAME, name);
	struct nlmsghdr *nlh =
	    nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETSET, (uint16_t)family, NLM_F_ACK, f->seq++);
	nftnl_set_nlmsg_build_payload(nlh, s);
	if (request(f, nlh, set_cb, &got) != 0 || got == NULL)
		goto out;
	if ((info = calloc(1, sizeof(*info))) == NULL)
		goto out;
	info->key_type = nftnl_set_get_u32(got, NFTNL_SET_KEY_TYPE);
	info->key_len = nftnl_set_get_u32(got, NFTNL_SET_KEY_LEN);
	info->flags =
	    nftnl_set_is_set(got, NFTNL_SET_FLAGS) ? nftnl_set_get_u32(got, NFTNL_SET_FLAGS) : 0;
	info->data_type = nftnl_set_is_set(got, NFTNL_SET_DATA_TYPE)
	                      ? nftnl_set_get_u32(got, NFTNL_SET_DATA_TYPE)
	                      : 0;
	info->key = probe.key;
	probe.key = NULL;
	if (tsearch(info, &f->sets, info_cmp) == NULL) {
		info_free(info);
		info = NULL;
	}
out:
	if (s != NULL)
		nftnl_set_free(s);
	if (got != NULL)
		nftnl_set_free(got);
	free(probe.key);
	return info;
}

/* A key of the set's type from its JSON string; false when it is not one. */
static bool key_of(const struct set_info *si, const json_t *j, uint8_t *key, uint32_t *len)
{
	const char *s = json_string_value(j);

	if (s == NULL)
		return false;
	switch (si->key_type) {
	case TYPE_IPADDR:
		*len = 4;
		return si->key_len == 4 && inet_pton(AF_INET, s, key) == 1;
	case TYPE_IP6ADDR:
		*len = 16;
		return si->key_len == 16 && inet_pton(AF_INET6, s, key) == 1;
	case TYPE_IFNAME: {
		size_t n = json_string_length(j);
		/* nft reads a trailing '*' as a wildcard and '\\' as an escape: not plain keys */
		if (si->key_len != IFNAMSIZ || n == 0 || n >= IFNAMSIZ || strlen(s) != n ||
		    s[n - 1] == '*' || strchr(s, '\\') != NULL)
			return false;
		memset(key, 0, IFNAMSIZ);
		memcpy(key, s, n);
		*len = IFNAMSIZ;
		return true;
	}
	default:
		return false;
	}
}

/* add|delete element: {"family", "table", "name", "elem": [KEY | [KEY, VERDICT]...]} */
/* The elements elems of set table/name, whose kernel description is si. */
static int put_elems(struct agent_nftnl *f, struct batch *b, bool add, int family,
                     const char *table, const char *name, const struct set_info *si,
                     const json_t *elems)
{
	if ((si->flags & (NFT_SET_INTERVAL | NFT_SET_CONCAT)) != 0)
		return -ENOTSUP;
	bool vmap = (si->flags & NFT_SET_MAP) != 0;
	if (vmap && si->data_type != NFT_DATA_VERDICT)
		return -ENOTSUP;

	size_t n = json_array_size(elems), per_msg = vmap ? ELEMS_PER_MSG : PLAIN_ELEMS_PER_MSG;
	for (size_t at = 0; at < n; at += per_msg) {
		struct nftnl_set *s = nftnl_set_alloc();
		if (s == NULL)
			return -ENOMEM;
		nftnl_set_set_str(s, NFTNL_SET_TABLE, table);
		/* The kernel finds a set named in an element message by walking the table's list of
		 * sets, comparing names, and a set made in this batch is at the end of that list:
		 * with a thousand sets that walk was most of what a message of new elements cost. A
		 * set of this batch is named by the ID it was made with instead, which the kernel
		 * looks up among this batch's own new sets (it tries a name first only when one is
		 * given). */
		if (add && si->made_here && si->made_in == b->begin_seq)
			nftnl_set_set_u32(s, NFTNL_SET_ID, si->id);
		else
			nftnl_set_set_str(s, NFTNL_SET_NAME, name);
		for (size_t i = at; i < n && i < at + per_msg; i++) {
			const json_t *it = json_array_get(elems, i), *kj = it, *vj = NULL;
			uint8_t key[16];
			uint32_t klen;
			int code;
			const char *chain;
			if (json_is_array(it)) {
				if (!vmap || json_array_size(it) != 2)
					goto unsupported;
				kj = json_array_get(it, 0);
				vj = json_array_get(it, 1);
			} else if (vmap && add) {
				goto unsupported; /* a map element needs its verdict */
			}
			if (!key_of(si, kj, key, &klen))
				goto unsupported;
			struct nftnl_set_elem *e = nftnl_set_elem_alloc();
			if (e == NULL) {
				nftnl_set_free(s);
				return -ENOMEM;
			}
			nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, key, klen);
			/* A deletion names the key only, as nft sends it. */
			if (vj != NULL && add) {
				if (!verdict_of(vj, &code, &chain)) {
					nftnl_set_elem_free(e);
					goto unsupported;
				}
				nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_VERDICT, (uint32_t)code);
				if (chain != NULL)
					nftnl_set_elem_set_str(e, NFTNL_SET_ELEM_CHAIN, chain);
			}
			nftnl_set_elem_add(s, e);
		}
		struct nlmsghdr *nlh =
		    batch_hdr(f, b, add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM, family,
		              add ? NLM_F_CREATE : 0);
		if (nlh == NULL) {
			nftnl_set_free(s);
			return -ENOTSUP;
		}
		nftnl_set_elems_nlmsg_build_payload(nlh, s);
		nftnl_set_free(s);
		batch_done(b, nlh);
		continue;
	unsupported:
		nftnl_set_free(s);
		return -ENOTSUP;
	}
	return 0;
}

static int put_elements(struct agent_nftnl *f, struct batch *b, bool add, const json_t *o)
{
	static const char *const keys[] = {"family", "table", "name", "elem", NULL};
	const char *table = name_of(o, "table");
	const char *name = name_of(o, "name");
	const json_t *elems = json_object_get(o, "elem");
	int family = family_of(json_string_value(json_object_get(o, "family")));

	if (!only_keys(o, keys) || family < 0 || table == NULL || name == NULL ||
	    !json_is_array(elems))
		return -ENOTSUP;
	const struct set_info *si = set_lookup(f, family, table, name);
	if (si == NULL)
		return -ENOTSUP;
	return put_elems(f, b, add, family, table, name, si, elems);
}

/* add set: {"family", "table", "name", "type", "elem"?}, a plain set of ipv4_addr, ipv6_addr or
 * ifname keys (no flags, no map), made as nft makes it: the key's byte order in the set's user
 * data, which "nft list" reads back. It is remembered at once, for the elements that follow. */
static int put_set_add(struct agent_nftnl *f, struct batch *b, const json_t *o)
{
	static const char *const keys[] = {"family", "table", "name", "type", "elem", NULL};
	static const struct {
		const char *name;
		uint32_t type, len, byteorder; /* nft's enum byteorder: 1 host, 2 big endian */
	} types[] = {{"ipv4_addr", TYPE_IPADDR, 4, 2},
	             {"ipv6_addr", TYPE_IP6ADDR, 16, 2},
	             {"ifname", TYPE_IFNAME, IFNAMSIZ, 1}};
	const char *table = name_of(o, "table");
	const char *name = name_of(o, "name");
	const char *type = json_string_value(json_object_get(o, "type"));
	const json_t *elems = json_object_get(o, "elem");
	int family = family_of(json_string_value(json_object_get(o, "family")));
	unsigned t = 0;

	if (!only_keys(o, keys) || family < 0 || table == NULL || name == NULL || type == NULL ||
	    (elems != NULL && !json_is_array(elems)))
		return -ENOTSUP;
	while (t < sizeof(types) / sizeof(types[0]) && strcmp(types[t].name, type) != 0)
		t++;
	if (t == sizeof(types) / sizeof(types[0]))
		return -ENOTSUP;

	struct nftnl_set *s = nftnl_set_alloc();
	struct nftnl_udata_buf *ud = nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN);
	struct set_info *info = calloc(1, sizeof(*info));
	struct nlmsghdr *nlh = NULL;
	int rv = -ENOMEM;
	if (s == NULL || ud == NULL || info == NULL ||
	    !nftnl_udata_put_u32(ud, NFTNL_UDATA_SET_KEYBYTEORDER, types[t].byteorder))
		goto out;
	if (asprintf(&info->key, "%d/%s/%s", family, table, name) < 0) {
		info->key = NULL;
		goto out;
	}
	nftnl_set_set_str(s, NFTNL_SET_TABLE, table);
	nftnl_set_set_str(s, NFTNL_SET_NAME, name);
	nftnl_set_set_u32(s, NFTNL_SET_FLAGS, 0);
	nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, types[t].type);
	nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, types[t].len);
	info->made_here = true;
	info->made_in = b->begin_seq;
	info->id = f->seq;
	nftnl_set_set_u32(s, NFTNL_SET_ID, info->id);
	nftnl_set_set_data(s, NFTNL_SET_USERDATA, nftnl_udata_buf_data(ud),
	                   nftnl_udata_buf_len(ud));
	if ((nlh = batch_hdr(f, b, NFT_MSG_NEWSET, family, NLM_F_CREATE)) == NULL) {
		rv = -ENOTSUP;
		goto out;
	}
	nftnl_set_nlmsg_build_payload(nlh, s);
	batch_done(b, nlh);
	/* remembered now: the elements below and later commands of the batch encode with it */
	info->key_type = types[t].type;
	info->key_len = types[t].len;
	forget_set(f, family, table, name);
	if (tsearch(info, &f->sets, info_cmp) == NULL)
		goto out;
	struct set_info *si = info;
	info = NULL;
	rv = elems != NULL && json_array_size(elems) > 0
	         ? put_elems(f, b, true, family, table, name, si, elems)
	         : 0;
out:
	if (info != NULL) {
		free(info->key);
		free(info);
	}
	if (ud != NULL)
		nftnl_udata_buf_free(ud);
	if (s != NULL)
		nftnl_set_free(s);
	return rv;
}

/* ------------------------------------------------------------------------------------------ */
/* Chains known by handle (see the head)                                                       */

static int rule_attr_cb(const struct nlattr *a, void *data)
{
	const struct nlattr **tb = data;
	int type = mnl_attr_get_type(a);

	if (type >= 0 && type <= NFTA_RULE_MAX)
		tb[type] = a;
	return MNL_CB_OK;
}

/* The handle of the rule a NEWRULE message describes (0 when it has none), and its chain. */
static uint64_t rule_handle(const struct nlmsghdr *h, const char **chain)
{
	const struct nlattr *tb[NFTA_RULE_MAX + 1] = {0};

	*chain = NULL;
	if (mnl_attr_parse(h, sizeof(struct nfgenmsg), rule_attr_cb, tb) < 0 ||
	    tb[NFTA_RULE_HANDLE] == NULL ||
	    mnl_attr_validate(tb[NFTA_RULE_HANDLE], MNL_TYPE_U64) < 0)
		return 0;
	if (tb[NFTA_RULE_CHAIN] != NULL &&
	    mnl_attr_validate(tb[NFTA_RULE_CHAIN], MNL_TYPE_NUL_STRING) == 0)
		*chain = mnl_attr_get_str(tb[NFTA_RULE_CHAIN]);
	return be64toh(mnl_attr_get_u64(tb[NFTA_RULE_HANDLE]));
}

static bool rules_push(struct chain_rules *r, unsigned at, uint64_t h)
{
	if (r->n == r->cap) {
		unsigned cap = r->cap ? r->cap * 2 : 16;
		uint64_t *v = realloc(r->h, cap * sizeof(*v));
		if (v == NULL)
			return false;
		r->h = v;
		r->cap = cap;
	}
	memmove(r->h + at + 1, r->h + at, (r->n - at) * sizeof(*r->h));
	r->h[at] = h;
	r->n++;
	return true;
}

struct dump_ctx {
	struct chain_rules *r;
	const char *chain;
	bool bad;
};

static int dump_cb(const struct nlmsghdr *h, void *arg)
{
	struct dump_ctx *d = arg;
	const char *chain;
	uint64_t handle;

	if ((h->nlmsg_type & 0xff) != NFT_MSG_NEWRULE)
		return 0;
	handle = rule_handle(h, &chain);
	if (handle == 0 || handle & PENDING || chain == NULL || strcmp(chain, d->chain) != 0 ||
	    !rules_push(d->r, d->r->n, handle))
		d->bad = true;
	return 0;
}

/* The handles of a chain's rules, in order, from a dump of the chain: a new chain_rules
 * (*out), or -ENOENT when the kernel has no such chain, -EIO, -ENOMEM. */
static int chain_dump(struct agent_nftnl *f, int family, const char *table, const char *chain,
                      struct chain_rules **out)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct chain_rules *r = calloc(1, sizeof(*r));
	struct nftnl_rule *q = nftnl_rule_alloc();
	struct dump_ctx d = {r, chain, false};
	int rv = -ENOMEM;

	*out = NULL;
	if (r == NULL || q == NULL)
		goto out;
	nftnl_rule_set_str(q, NFTNL_RULE_TABLE, table);
	nftnl_rule_set_str(q, NFTNL_RULE_CHAIN, chain);
	struct nlmsghdr *nlh =
	    nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETRULE, (uint16_t)family, NLM_F_DUMP, f->seq++);
	nftnl_rule_nlmsg_build_payload(nlh, q);
	if ((rv = request(f, nlh, dump_cb, &d)) != 0) {
		rv = rv == -ENOENT ? -ENOENT : -EIO;
		goto out;
	}
	rv = -EIO;
	if (d.bad)
		goto out;
	rv = -ENOMEM;
	if (asprintf(&r->key, "%d/%s/%s", family, table, chain) < 0) {
		r->key = NULL;
		goto out;
	}
	*out = r;
	r = NULL;
	rv = 0;
out:
	if (q != NULL)
		nftnl_rule_free(q);
	rules_free(r);
	return rv;
}

/* A new, empty copy named key among the batch's copies; NULL when out of memory. */
static struct chain_rules *work_add(struct batch *b, const char *key)
{
	struct chain_rules *w;

	if (b->n_work == b->cap_work) {
		unsigned cap = b->cap_work ? b->cap_work * 2 : 16;
		struct chain_rules **v = realloc(b->work, cap * sizeof(*v));
		if (v == NULL)
			return NULL;
		b->work = v;
		b->cap_work = cap;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL || (w->key = strdup(key)) == NULL) {
		free(w);
		return NULL;
	}
	b->last_work = b->n_work;
	b->work[b->n_work++] = w;
	return w;
}

/* The batch's copy of a chain's handles. When the chain is not known by handle: with need, it
 * is dumped first (and remembered as it is before the batch); without, NULL and 0 (its rules
 * are not followed). A chain the batch deletes has a copy with gone set. */
static struct chain_rules *work_get(struct agent_nftnl *f, struct batch *b, int family,
                                    const char *table, const char *chain, bool need, int *rv)
{
	char key[16 + 2 * NFT_NAME_MAXLEN];
	struct chain_rules probe = {.key = key}, *w, *base;
	void *found;

	snprintf(key, sizeof(key), "%d/%s/%s", family, table, chain);
	*rv = 0;
	/* a batch adds the rules of one chain one after the other */
	if (b->last_work < b->n_work && strcmp(b->work[b->last_work]->key, key) == 0)
		return b->work[b->last_work];
	for (unsigned i = 0; i < b->n_work; i++)
		if (strcmp(b->work[i]->key, key) == 0) {
			b->last_work = i;
			return b->work[i];
		}
	if ((found = tfind(&probe, &f->chains, rules_cmp)) != NULL) {
		base = *(struct chain_rules **)found;
	} else if (!need) {
		return NULL;
	} else {
		if ((*rv = chain_dump(f, family, table, chain, &base)) != 0)
			return NULL;
		if (tsearch(base, &f->chains, rules_cmp) == NULL) {
			rules_free(base);
			*rv = -ENOMEM;
			return NULL;
		}
	}
	*rv = -ENOMEM;
	if ((w = work_add(b, key)) == NULL)
		return NULL;
	if (base->n > 0 && (w->h = malloc(base->n * sizeof(*w->h))) == NULL)
		return NULL; /* freed with the batch's copies */
	if (base->n > 0)
		memcpy(w->h, base->h, base->n * sizeof(*w->h));
	w->n = w->cap = base->n;
	*rv = 0;
	return w;
}

/* The batch empties (flush) or deletes (gone) a chain: it is known by handle from here on (as
 * empty), or gone. */
static int work_reset(struct agent_nftnl *f, struct batch *b, int family, const char *table,
                      const char *chain, bool gone)
{
	int rv;
	struct chain_rules *w = work_get(f, b, family, table, chain, false, &rv);

	if (rv != 0)
		return rv;
	if (w == NULL) {
		char key[16 + 2 * NFT_NAME_MAXLEN];
		snprintf(key, sizeof(key), "%d/%s/%s", family, table, chain);
		if ((w = work_add(b, key)) == NULL)
			return -ENOMEM;
	}
	w->n = 0;
	w->gone = gone;
	return 0;
}

static void work_discard(struct batch *b)
{
	for (unsigned i = 0; i < b->n_work; i++)
		rules_free(b->work[i]);
	free(b->work);
	b->work = NULL;
	b->n_work = b->cap_work = 0;
}

/* The kernel took the batch: its copies, their added rules given the handles the kernel echoed,
 * replace what was remembered. A copy with a rule whose echo is missing is dropped (its chain
 * is dumped again when next needed). */
static void work_commit(struct agent_nftnl *f, struct batch *b)
{
	for (unsigned i = 0; i < b->n_work; i++) {
		struct chain_rules *w = b->work[i];
		void *found = tfind(w, &f->chains, rules_cmp);
		bool ok = !w->gone;

		if (found != NULL) {
			struct chain_rules *old = *(struct chain_rules **)found;
			tdelete(w, &f->chains, rules_cmp);
			rules_free(old);
		}
		for (unsigned k = 0; ok && k < w->n; k++) {
			if (!(w->h[k] & PENDING))
				continue;
			uint64_t m = w->h[k] & ~PENDING;
			w->h[k] = m < b->n && b->echo != NULL ? b->echo[m] : 0;
			ok = w->h[k] != 0;
		}
		if (!ok || tsearch(w, &f->chains, rules_cmp) == NULL)
			rules_free(w);
		b->work[i] = NULL;
	}
	b->n_work = 0;
}

/* The handle of the rule at position index of a batch's copy: a rule the chain held before
 * the batch. 0 with b->err set otherwise. */
static uint64_t work_handle(struct batch *b, const struct chain_rules *w, const char *chain,
                            json_int_t index)
{
	if (index < 0 || (uint64_t)index >= w->n) {
		snprintf(b->err, b->errlen,
		         "command %u: chain %s holds %u rules at that point, no rule at index %lld",
		         b->cmd + 1, chain, w->n, (long long)index);
		return 0;
	}
	if (w->h[index] & PENDING) {
		snprintf(b->err, b->errlen,
		         "command %u: index %lld of chain %s is a rule the same batch adds",
		         b->cmd + 1, (long long)index, chain);
		return 0;
	}
	return w->h[index];
}

/*
 * One rule command on the batch's copies, the same for both paths: verb "add" (index NULL: an
 * append), "insert" or "delete" (index: a position). A position becomes the handle of the rule
 * there (*handle; 0 for an append). The copy then follows the command, a rule the batch adds
 * standing as PENDING | m (m: the index of the message that adds it). *followed says whether
 * the chain is known by handle (an added rule must then be echoed). -ENOENT when a position
 * names a chain the kernel lacks or the batch deleted, -EINVAL with b->err set when it names
 * no rule the chain held before the batch, -EIO, -ENOMEM.
 */
static int rule_step(struct agent_nftnl *f, struct batch *b, const char *verb, const json_t *index,
                     int family, const char *table, const char *chain, uint64_t m, uint64_t *handle,
                     bool *followed)
{
	int rv;
	struct chain_rules *w = work_get(f, b, family, table, chain, index != NULL, &rv);

	*handle = 0;
	*followed = false;
	if (rv != 0)
		return rv;
	if (w == NULL || w->gone)
		return index != NULL ? -ENOENT : 0; /* an append the kernel judges */
	*followed = true;
	if (index == NULL)
		return rules_push(w, w->n, PENDING | m) ? 0 : -ENOMEM;
	if ((*handle = work_handle(b, w, chain, json_integer_value(index))) == 0)
		return -EINVAL;
	unsigned at = (unsigned)json_integer_value(index);
	if (strcmp(verb, "delete") != 0)
		return rules_push(w, at, PENDING | m) ? 0 : -ENOMEM;
	memmove(w->h + at, w->h + at + 1, (w->n - at - 1) * sizeof(*w->h));
	w->n--;
	return 0;
}

/* add|flush|delete chain, delete set: {"family", "table", "name"} */
static int put_named(struct agent_nftnl *f, struct batch *b, const char *verb, const char *what,
                     const json_t *o)
{
	static const char *const keys[] = {"family", "table", "name", NULL};
	const char *table = name_of(o, "table");
	const char *name = name_of(o, "name");
	int family = family_of(json_string_value(json_object_get(o, "family")));
	struct nlmsghdr *nlh;

	if (!only_keys(o, keys) || family < 0 || table == NULL || name == NULL)
		return -ENOTSUP;
	if (strcmp(what, "set") == 0) {
		if (strcmp(verb, "delete") != 0)
			return -ENOTSUP;
		struct nftnl_set *s = nftnl_set_alloc();
		if (s == NULL)
			return -ENOMEM;
		nftnl_set_set_str(s, NFTNL_SET_TABLE, table);
		nftnl_set_set_str(s, NFTNL_SET_NAME, name);
		if ((nlh = batch_hdr(f, b, NFT_MSG_DELSET, family, 0)) != NULL)
			nftnl_set_nlmsg_build_payload(nlh, s);
		nftnl_set_free(s);
		/* whatever happens to the batch, this set's type is no longer known */
		forget_set(f, family, table, name);
		if (nlh == NULL)
			return -ENOTSUP;
		batch_done(b, nlh);
		return 0;
	}
	if (strcmp(what, "chain") != 0)
		return -ENOTSUP;
	uint16_t type, flags = 0;
	if (strcmp(verb, "add") == 0) {
		type = NFT_MSG_NEWCHAIN;
		flags = NLM_F_CREATE;
	} else if (strcmp(verb, "delete") == 0) {
		type = NFT_MSG_DELCHAIN;
	} else if (strcmp(verb, "flush") == 0) {
		type = NFT_MSG_DELRULE; /* every rule of the chain, as nft flushes one */
	} else {
		return -ENOTSUP;
	}
	if (type != NFT_MSG_NEWCHAIN) {
		/* flushed: known by handle from here on, as empty; deleted: gone */
		int rv = work_reset(f, b, family, table, name, type == NFT_MSG_DELCHAIN);
		if (rv != 0)
			return rv;
	}
	if (type == NFT_MSG_DELRULE) {
		struct nftnl_rule *r = nftnl_rule_alloc();
		if (r == NULL)
			return -ENOMEM;
		nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table);
		nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, name);
		if ((nlh = batch_hdr(f, b, type, family, 0)) != NULL)
			nftnl_rule_nlmsg_build_payload(nlh, r);
		nftnl_rule_free(r);
	} else {
		struct nftnl_chain *c = nftnl_chain_alloc();
		if (c == NULL)
			return -ENOMEM;
		nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, table);
		nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name);
		if ((nlh = batch_hdr(f, b, type, family, flags)) != NULL)
			nftnl_chain_nlmsg_build_payload(nlh, c);
		nftnl_chain_free(c);
	}
	if (nlh == NULL)
		return -ENOTSUP;
	batch_done(b, nlh);
	return 0;
}

/* Expression helpers; each returns false when out of memory. */
static bool x_meta(struct nftnl_rule *r, uint32_t key)
{
	struct nftnl_expr *e = nftnl_expr_alloc("meta");
	if (e == NULL)
		return false;
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
	nftnl_rule_add_expr(r, e);
	return true;
}

static bool x_meta_load(struct nftnl_rule *r)
{
	return x_meta(r, NFT_META_MARK);
}

/* reg1 = (reg1 & mask) ^ xor, over len bytes */
static bool x_bitwise_bytes(struct nftnl_rule *r, const void *mask, const void * xor, uint32_t len)
{
	struct nftnl_expr *e = nftnl_expr_alloc("bitwise");
	if (e == NULL)
		return false;
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_OP, NFT_BITWISE_BOOL);
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, len);
	nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, mask, len);
	nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, xor, len);
	nftnl_rule_add_expr(r, e);
	return true;
}

/* reg1 = (reg1 & mask) ^ xor, on the 32 bits of a mark */
static bool x_bitwise(struct nftnl_rule *r, uint32_t mask, uint32_t xor)
{
	return x_bitwise_bytes(r, &mask, &xor, sizeof(uint32_t));
}

static bool x_cmp(struct nftnl_rule *r, uint32_t op, const void *data, uint32_t len)
{
	struct nftnl_expr *e = nftnl_expr_alloc("cmp");
	if (e == NULL)
		return false;
	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
	nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
	nftnl_rule_add_expr(r, e);
	return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Matches on packet fields                                                                    */

/*
 * The matches of policy rules: "meta nfproto", "meta l4proto", "ip|ip6 saddr|daddr" and
 * "th sport|dport", against a constant, a range, a prefix, a named set ("@name") or an anonymous
 * set of those. The bytecode is what nft 1.0.6 makes of the same JSON, shape by shape (nft
 * --debug=netlink shows it), because "nft list" must read the same whichever path loaded a rule:
 *
 *   - a named set: load, lookup (inverted for "!=");
 *   - one element, as a plain value or a set of one: load, cmp; a range: load, cmp gte and cmp
 *     lte, or for "!=" one "range neq"; a prefix on a byte boundary: a load of only its bytes,
 *     cmp; any other prefix: load, bitwise with its mask, cmp;
 *   - two elements or more: an anonymous constant set, made in the same batch ahead of the
 *     rule, and a lookup. Only values: a plain set. Any range or prefix: an interval set, whose
 *     elements are the merged ranges as nft encodes them, each a start and an "end" element one
 *     past its last key; a first range that does not start at zero is preceded by an "end"
 *     element at zero, and a last range that reaches the largest key has no end, its start
 *     carrying the "open interval" flag in its user data.
 */
struct field {
	bool meta;          /* a meta key, or else a payload */
	uint32_t key;       /* the meta key */
	uint32_t base, off; /* the payload's header and offset */
	uint32_t len;       /* bytes */
	uint32_t type;      /* nft datatype of a set keyed by it (0: none here) */
	uint32_t byteorder;
	int af; /* AF_INET, AF_INET6 for addresses, else 0 */
};

/* One element: the keys lo..hi, both of the field's length, big endian. */
struct span {
	uint8_t lo[16], hi[16];
	int prefix; /* the prefix length when the element was a prefix, else -1 */
	bool range; /* written as a range (nft keeps "80-80" a range) */
};

#define SPANS_MAX 4096 /* elements of one anonymous set on this path */

static const uint8_t zero_key[16]; /* the smallest key of every length */

static bool field_of(const json_t *j, struct field *fd)
{
	const json_t *m;
	const char *k, *proto, *fld;

	memset(fd, 0, sizeof(*fd));
	if (!json_is_object(j) || json_object_size(j) != 1)
		return false;
	if ((m = json_object_get(j, "meta")) != NULL) {
		if (!json_is_object(m) || json_object_size(m) != 1 ||
		    (k = json_string_value(json_object_get(m, "key"))) == NULL)
			return false;
		fd->meta = true;
		fd->len = 1;
		if (strcmp(k, "nfproto") == 0) {
			fd->key = NFT_META_NFPROTO;
			return true;
		}
		if (strcmp(k, "l4proto") == 0) {
			fd->key = NFT_META_L4PROTO;
			fd->type = TYPE_INET_PROTO;
			fd->byteorder = BYTEORDER_HOST;
			return true;
		}
		return false;
	}
	m = json_object_get(j, "payload");
	if (!json_is_object(m) || json_object_size(m) != 2 ||
	    (proto = json_string_value(json_object_get(m, "protocol"))) == NULL ||
	    (fld = json_string_value(json_object_get(m, "field"))) == NULL)
		return false;
	bool src = strcmp(fld, "saddr") == 0, sport = strcmp(fld, "sport") == 0;
	if (strcmp(proto, "ip") == 0 && (src || strcmp(fld, "daddr") == 0)) {
		*fd = (struct field){false,         0,      NFT_PAYLOAD_NETWORK_HEADER,
		                     src ? 12 : 16, 4,      TYPE_IPADDR,
		                     BYTEORDER_BIG, AF_INET};
		return true;
	}
	if (strcmp(proto, "ip6") == 0 && (src || strcmp(fld, "daddr") == 0)) {
		*fd = (struct field){false,         0,       NFT_PAYLOAD_NETWORK_HEADER,
		                     src ? 8 : 24,  16,      TYPE_IP6ADDR,
		                     BYTEORDER_BIG, AF_INET6};
		return true;
	}
	if (strcmp(proto, "th") == 0 && (sport || strcmp(fld, "dport") == 0)) {
		*fd = (struct field){false,         0, NFT_PAYLOAD_TRANSPORT_HEADER,
		                     sport ? 0 : 2, 2, TYPE_INET_SERVICE,
		                     BYTEORDER_BIG, 0};
		return true;
	}
	return false;
}

/* An integer constant of the field's length into out, big endian. */
static bool int_of(const struct field *fd, const json_t *j, uint8_t *out)
{
	if (!json_is_integer(j))
		return false;
	json_int_t v = json_integer_value(j);
	if (v < 0 || v >= (json_int_t)1 << (8 * fd->len))
		return false;
	for (uint32_t i = 0; i < fd->len; i++)
		out[fd->len - 1 - i] = (uint8_t)(v >> (8 * i));
	return true;
}

/* One element of the field's kind; false for anything else. */
static bool span_of(const struct field *fd, const json_t *j, struct span *sp)
{
	const json_t *m;

	sp->prefix = -1;
	sp->range = false;
	if (fd->meta && fd->key == NFT_META_NFPROTO) {
		const char *s = json_string_value(j);
		if (s == NULL || (strcmp(s, "ipv4") != 0 && strcmp(s, "ipv6") != 0))
			return false;
		sp->lo[0] = sp->hi[0] = strcmp(s, "ipv4") == 0 ? NFPROTO_IPV4 : NFPROTO_IPV6;
		return true;
	}
	if (fd->af == 0) { /* l4proto, ports: integers, and ranges of ports */
		if (int_of(fd, j, sp->lo)) {
			memcpy(sp->hi, sp->lo, fd->len);
			return true;
		}
		m = json_object_get(j, "range");
		sp->range = true;
		return !fd->meta && json_is_object(j) && json_object_size(j) == 1 &&
		       json_is_array(m) && json_array_size(m) == 2 &&
		       int_of(fd, json_array_get(m, 0), sp->lo) &&
		       int_of(fd, json_array_get(m, 1), sp->hi) &&
		       memcmp(sp->lo, sp->hi, fd->len) <= 0;
	}
	/* addresses: "a.b.c.d", or {"prefix": {"addr": "a.b.c.d", "len": N}} with no host bits */
	const char *a = json_string_value(j);
	json_int_t plen = 8 * fd->len;
	if (a == NULL) {
		m = json_object_get(j, "prefix");
		if (!json_is_object(j) || json_object_size(j) != 1 || !json_is_object(m) ||
		    json_object_size(m) != 2 || !json_is_integer(json_object_get(m, "len")) ||
		    (a = json_string_value(json_object_get(m, "addr"))) == NULL)
			return false;
		plen = json_integer_value(json_object_get(m, "len"));
		if (plen < 0 || plen > 8 * (json_int_t)fd->len)
			return false;
		sp->prefix = (int)plen;
	}
	if (inet_pton(fd->af, a, sp->lo) != 1)
		return false;
	memcpy(sp->hi, sp->lo, fd->len);
	for (uint32_t bit = (uint32_t)plen; bit < 8 * fd->len; bit++) {
		uint8_t mbit = (uint8_t)(0x80 >> (bit % 8));
		if (sp->lo[bit / 8] & mbit)
			return false; /* host bits set: nft masks them off; left to libnftables */
		sp->hi[bit / 8] |= mbit;
	}
	return true;
}

static int span_cmp(const void *a, const void *b)
{
	/* the keys of one set have one length: comparing all 16 bytes orders them (the rest is
	 * zero) */
	return memcmp(((const struct span *)a)->lo, ((const struct span *)b)->lo, 16);
}

/* k += 1 over len big-endian bytes; false when it wrapped to zero. */
static bool key_inc(uint8_t *k, uint32_t len)
{
	for (uint32_t i = len; i-- > 0;)
		if (++k[i] != 0)
			return true;
	return false;
}

/* Elements of an anonymous set, gathered ELEMS_PER_MSG to a message. */
struct elems {
	const char *table;
	uint32_t id;
	struct nftnl_set *s; /* the message being gathered, NULL between messages */
	unsigned n, total;
};

static int elems_flush(struct agent_nftnl *f, struct batch *b, int family, struct elems *el)
{
	if (el->s == NULL)
		return 0;
	struct nlmsghdr *nlh = batch_hdr(f, b, NFT_MSG_NEWSETELEM, family, NLM_F_CREATE);
	if (nlh != NULL) {
		nftnl_set_elems_nlmsg_build_payload(nlh, el->s);
		batch_done(b, nlh);
	}
	nftnl_set_free(el->s);
	el->s = NULL;
	el->n = 0;
	return nlh != NULL ? 0 : -ENOTSUP;
}

static int elems_put(struct agent_nftnl *f, struct batch *b, int family, struct elems *el,
                     const uint8_t *key, uint32_t len, bool end, bool open)
{
	if (el->s == NULL) {
		/* the set named by table, name and id only: the kernel knows the rest */
		if ((el->s = nftnl_set_alloc()) == NULL)
			return -ENOMEM;
		nftnl_set_set_str(el->s, NFTNL_SET_TABLE, el->table);
		nftnl_set_set_str(el->s, NFTNL_SET_NAME, "__set%d");
		nftnl_set_set_u32(el->s, NFTNL_SET_ID, el->id);
	}
	struct nftnl_set_elem *e = nftnl_set_elem_alloc();
	if (e == NULL)
		return -ENOMEM;
	nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, key, len);
	if (end)
		nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
	if (open) {
		struct nftnl_udata_buf *ud = nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN);
		if (ud == NULL || !nftnl_udata_put_u32(ud, NFTNL_UDATA_SET_ELEM_FLAGS,
		                                       NFTNL_SET_ELEM_F_INTERVAL_OPEN)) {
			if (ud != NULL)
				nftnl_udata_buf_free(ud);
			nftnl_set_elem_free(e);
			return -ENOMEM;
		}
		nftnl_set_elem_set(e, NFTNL_SET_ELEM_USERDATA, nftnl_udata_buf_data(ud),
		                   nftnl_udata_buf_len(ud));
		nftnl_udata_buf_free(ud);
	}
	nftnl_set_elem_add(el->s, e);
	el->total++;
	return ++el->n == ELEMS_PER_MSG ? elems_flush(f, b, family, el) : 0;
}

/* Merge sorted spans that overlap or touch (nft's automerge): the count left. */
static unsigned spans_merge(struct span *v, unsigned n, uint32_t len)
{
	unsigned k = 0;

	for (unsigned i = 0; i < n; i++) {
		if (k > 0) {
			uint8_t next[16];
			memcpy(next, v[k - 1].hi, len);
			bool room = key_inc(next, len);
			if (!room || memcmp(v[i].lo, next, len) <= 0) {
				if (memcmp(v[i].hi, v[k - 1].hi, len) > 0)
					memcpy(v[k - 1].hi, v[i].hi, len);
				continue;
			}
		}
		v[k++] = v[i];
	}
	return k;
}

/* The anonymous set of the spans v[0..n-1] and a lookup of reg1 in it. */
static int put_anon_set(struct agent_nftnl *f, struct batch *b, int family, const char *table,
                        struct nftnl_rule *r, const struct field *fd, struct span *v, unsigned n,
                        bool inv)
{
	bool interval = false;
	for (unsigned i = 0; i < n && !interval; i++)
		interval = v[i].range || v[i].prefix >= 0;
	if (fd->type == 0)
		return -ENOTSUP;

	uint32_t id = f->seq, size = 0;
	if (interval) {
		qsort(v, n, sizeof(*v), span_cmp);
		n = spans_merge(v, n, fd->len);
		/* nft counts an end for every range, also the one an open last range lacks */
		size = 2 * n + (memcmp(v[0].lo, zero_key, fd->len) != 0 ? 1 : 0);
	} else {
		size = n;
	}

	struct nftnl_set *s = nftnl_set_alloc();
	struct nftnl_udata_buf *ud = nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN);
	struct elems el = {.table = table, .id = id};
	int rv = -ENOMEM;
	if (s == NULL || ud == NULL ||
	    !nftnl_udata_put_u32(ud, NFTNL_UDATA_SET_KEYBYTEORDER, fd->byteorder) ||
	    (interval && !nftnl_udata_put_u32(ud, NFTNL_UDATA_SET_MERGE_ELEMENTS, 1)))
		goto out;
	nftnl_set_set_str(s, NFTNL_SET_TABLE, table);
	nftnl_set_set_str(s, NFTNL_SET_NAME, "__set%d");
	nftnl_set_set_u32(s, NFTNL_SET_FLAGS,
	                  NFT_SET_ANONYMOUS | NFT_SET_CONSTANT | (interval ? NFT_SET_INTERVAL : 0));
	nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, fd->type);
	nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, fd->len);
	nftnl_set_set_u32(s, NFTNL_SET_ID, id);
	nftnl_set_set_u32(s, NFTNL_SET_DESC_SIZE, size);
	nftnl_set_set_data(s, NFTNL_SET_USERDATA, nftnl_udata_buf_data(ud),
	                   nftnl_udata_buf_len(ud));
	struct nlmsghdr *nlh = batch_hdr(f, b, NFT_MSG_NEWSET, family, NLM_F_CREATE);
	if (nlh == NULL) {
		rv = -ENOTSUP;
		goto out;
	}
	nftnl_set_nlmsg_build_payload(nlh, s);
	batch_done(b, nlh);

	rv = 0;
	if (!interval) {
		for (unsigned i = 0; i < n && rv == 0; i++)
			rv = elems_put(f, b, family, &el, v[i].lo, fd->len, false, false);
	} else {
		if (memcmp(v[0].lo, zero_key, fd->len) != 0)
			rv = elems_put(f, b, family, &el, zero_key, fd->len, true, false);
		for (unsigned i = 0; i < n && rv == 0; i++) {
			uint8_t end[16];
			memcpy(end, v[i].hi, fd->len);
			bool closed = key_inc(end, fd->len);
			rv = elems_put(f, b, family, &el, v[i].lo, fd->len, false, !closed);
			if (rv == 0 && closed)
				rv = elems_put(f, b, family, &el, end, fd->len, true, false);
		}
	}
	if (rv == 0)
		rv = elems_flush(f, b, family, &el);
	if (rv != 0)
		goto out;
	assert(el.total == size || (interval && el.total + 1 == size));

	struct nftnl_expr *e = nftnl_expr_alloc("lookup");
	if (e == NULL) {
		rv = -ENOMEM;
		goto out;
	}
	nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
	nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, "__set%d");
	nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID, id);
	if (inv)
		nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
	nftnl_rule_add_expr(r, e);
out:
	if (ud != NULL)
		nftnl_udata_buf_free(ud);
	if (s != NULL)
		nftnl_set_free(s);
	if (el.s != NULL)
		nftnl_set_free(el.s);
	return rv;
}

/* Load the field (its first len bytes) into reg1. */
static bool x_load(struct nftnl_rule *r, const struct field *fd, uint32_t len)
{
	if (fd->meta)
		return x_meta(r, fd->key);
	struct nftnl_expr *e = nftnl_expr_alloc("payload");
	if (e == NULL)
		return false;
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, fd->base);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, fd->off);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
	nftnl_rule_add_expr(r, e);
	return true;
}

/* One element, == or !=. */
static int put_one(struct nftnl_rule *r, const struct field *fd, const struct span *sp, bool inv)
{
	uint32_t op = inv ? NFT_CMP_NEQ : NFT_CMP_EQ;

	if (sp->prefix >= 0 && (uint32_t)sp->prefix < 8 * fd->len) {
		if (sp->prefix > 0 && sp->prefix % 8 == 0)
			return x_load(r, fd, (uint32_t)sp->prefix / 8) &&
			               x_cmp(r, op, sp->lo, (uint32_t)sp->prefix / 8)
			           ? 0
			           : -ENOMEM;
		uint8_t mask[16];
		for (uint32_t i = 0; i < fd->len; i++)
			mask[i] = (uint8_t) ~(sp->lo[i] ^ sp->hi[i]);
		return x_load(r, fd, fd->len) && x_bitwise_bytes(r, mask, zero_key, fd->len) &&
		               x_cmp(r, op, sp->lo, fd->len)
		           ? 0
		           : -ENOMEM;
	}
	if (!x_load(r, fd, fd->len))
		return -ENOMEM;
	if (!sp->range)
		return x_cmp(r, op, sp->lo, fd->len) ? 0 : -ENOMEM;
	if (!inv)
		return x_cmp(r, NFT_CMP_GTE, sp->lo, fd->len) &&
		               x_cmp(r, NFT_CMP_LTE, sp->hi, fd->len)
		           ? 0
		           : -ENOMEM;
	struct nftnl_expr *e = nftnl_expr_alloc("range");
	if (e == NULL)
		return -ENOMEM;
	nftnl_expr_set_u32(e, NFTNL_EXPR_RANGE_SREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_RANGE_OP, NFT_RANGE_NEQ);
	nftnl_expr_set(e, NFTNL_EXPR_RANGE_FROM_DATA, sp->lo, fd->len);
	nftnl_expr_set(e, NFTNL_EXPR_RANGE_TO_DATA, sp->hi, fd->len);
	nftnl_rule_add_expr(r, e);
	return 0;
}

/* A match on a packet field: {"op": "=="|"!=", "left": FIELD, "right": ...}; -ENOTSUP when the
 * left side is not one of the fields above or the right side not of its kind. */
static int put_field_match(struct agent_nftnl *f, struct batch *b, int family, const char *table,
                           struct nftnl_rule *r, const json_t *m, bool inv, int *nfproto)
{
	struct field fd;
	const json_t *right = json_object_get(m, "right"), *set;
	const char *ref = json_string_value(right);

	/* inet tables only (ours): in an ip or ip6 table nft refuses "meta nfproto" and reads
	 * addresses without the family test */
	if (family != NFPROTO_INET || !field_of(json_object_get(m, "left"), &fd))
		return -ENOTSUP;
	/* An address match needs the rule to have tested the family first: nft would add that
	 * test itself (a dependency), and the rule would then read differently. */
	if (fd.af != 0 && *nfproto != (fd.af == AF_INET ? NFPROTO_IPV4 : NFPROTO_IPV6))
		return -ENOTSUP;
	if (ref != NULL && ref[0] == '@' && fd.type != 0 && !fd.meta) {
		size_t n = strlen(ref + 1);
		if (n == 0 || n >= NFT_NAME_MAXLEN || n + 1 != json_string_length(right))
			return -ENOTSUP;
		/* a set of the field's type, as nft checks ("datatype mismatch" otherwise) */
		const struct set_info *si = set_lookup(f, family, table, ref + 1);
		if (si == NULL || si->key_type != fd.type || si->key_len != fd.len ||
		    (si->flags & (NFT_SET_MAP | NFT_SET_OBJECT | NFT_SET_CONCAT)) != 0)
			return -ENOTSUP;
		if (!x_load(r, &fd, fd.len))
			return -ENOMEM;
		struct nftnl_expr *e = nftnl_expr_alloc("lookup");
		if (e == NULL)
			return -ENOMEM;
		nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
		nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, ref + 1);
		if (inv)
			nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
		nftnl_rule_add_expr(r, e);
		return 0;
	}
	if ((set = json_object_get(right, "set")) == NULL || json_object_size(right) != 1) {
		struct span sp;
		if (!span_of(&fd, right, &sp))
			return -ENOTSUP;
		if (fd.meta && fd.key == NFT_META_NFPROTO && !inv)
			*nfproto = sp.lo[0]; /* the family the rest of the rule may read */
		return put_one(r, &fd, &sp, inv);
	}
	size_t n = json_array_size(set);
	if (!json_is_array(set) || n == 0 || n > SPANS_MAX)
		return -ENOTSUP;
	struct span *v = malloc(n * sizeof(*v));
	if (v == NULL)
		return -ENOMEM;
	int rv = 0;
	memset(v, 0, n * sizeof(*v));
	for (size_t i = 0; i < n && rv == 0; i++)
		if (!span_of(&fd, json_array_get(set, i), &v[i]))
			rv = -ENOTSUP;
	if (rv == 0 && n == 1)
		rv = put_one(r, &fd, &v[0], inv);
	else if (rv == 0)
		rv = x_load(r, &fd, fd.len)
		         ? put_anon_set(f, b, family, table, r, &fd, v, (unsigned)n, inv)
		         : -ENOMEM;
	free(v);
	return rv;
}

/* One statement of an "add rule"; -ENOTSUP for anything but the plain shapes. A verdict must
 * come last (last says whether this one does). */
static int put_stmt(struct agent_nftnl *f, struct batch *b, int family, const char *table,
                    struct nftnl_rule *r, const json_t *st, bool last, int *nfproto)
{
	const json_t *m;
	uint32_t c, v;
	int code;
	const char *chain;

	if (!json_is_object(st) || json_object_size(st) != 1)
		return -ENOTSUP;
	if ((m = json_object_get(st, "match")) != NULL) {
		static const char *const keys[] = {"op", "left", "right", NULL};
		const char *op = json_string_value(json_object_get(m, "op"));
		const json_t *left = json_object_get(m, "left");
		if (!json_is_object(m) || json_object_size(m) != 3 || !only_keys(m, keys) ||
		    op == NULL || (strcmp(op, "==") != 0 && strcmp(op, "!=") != 0))
			return -ENOTSUP;
		bool inv = strcmp(op, "!=") == 0;
		bool masked = mark_binop(left, "&", &c);
		if (!masked && !is_meta_mark(left))
			return put_field_match(f, b, family, table, r, m, inv, nfproto);
		if (!u32_of(json_object_get(m, "right"), &v))
			return -ENOTSUP;
		if (!x_meta_load(r) || (masked && !x_bitwise(r, c, 0)))
			return -ENOMEM;
		return x_cmp(r, inv ? NFT_CMP_NEQ : NFT_CMP_EQ, &v, sizeof(v)) ? 0 : -ENOMEM;
	}
	if ((m = json_object_get(st, "mangle")) != NULL) {
		static const char *const keys[] = {"key", "value", NULL};
		const json_t *val = json_object_get(m, "value");
		uint32_t mask, xor;
		if (!json_is_object(m) || !only_keys(m, keys) ||
		    !is_meta_mark(json_object_get(m, "key")))
			return -ENOTSUP;
		if (mark_binop(val, "&", &c)) {
			mask = c;
			xor = 0;
		} else if (mark_binop(val, "|", &c)) {
			mask = ~c;
			xor = c;
		} else {
			return -ENOTSUP;
		}
		if (!x_meta_load(r) || !x_bitwise(r, mask, xor))
			return -ENOMEM;
		struct nftnl_expr *e = nftnl_expr_alloc("meta");
		if (e == NULL)
			return -ENOMEM;
		nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, NFT_META_MARK);
		nftnl_expr_set_u32(e, NFTNL_EXPR_META_SREG, NFT_REG_1);
		nftnl_rule_add_expr(r, e);
		return 0;
	}
	if (!last || !verdict_of(st, &code, &chain))
		return -ENOTSUP;
	struct nftnl_expr *e = nftnl_expr_alloc("immediate");
	if (e == NULL)
		return -ENOMEM;
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, (uint32_t)code);
	if (chain != NULL)
		nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, chain);
	nftnl_rule_add_expr(r, e);
	return 0;
}

/* add rule: {"family", "table", "chain", "expr": [...]}, appended; insert rule: the same with
 * "index", before the rule there. */
static int put_rule(struct agent_nftnl *f, struct batch *b, const json_t *o, bool insert)
{
	static const char *const keys[] = {"family", "table", "chain", "expr", NULL};
	static const char *const ins_keys[] = {"family", "table", "chain", "index", "expr", NULL};
	const char *table = name_of(o, "table");
	const char *chain = name_of(o, "chain");
	const json_t *expr = json_object_get(o, "expr");
	const json_t *index = json_object_get(o, "index");
	int family = family_of(json_string_value(json_object_get(o, "family")));
	int rv = 0, nfproto = 0; /* the family the rule has tested for, so far */
	uint64_t at;
	bool followed;

	if (!only_keys(o, insert ? ins_keys : keys) || family < 0 || table == NULL ||
	    chain == NULL || !json_is_array(expr) || json_array_size(expr) == 0 ||
	    json_array_size(expr) > STMTS_MAX || (insert && !json_is_integer(index)))
		return -ENOTSUP;
	struct nftnl_rule *r = nftnl_rule_alloc();
	if (r == NULL)
		return -ENOMEM;
	nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table);
	nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
	size_t n = json_array_size(expr);
	for (size_t i = 0; i < n && rv == 0; i++)
		rv =
		    put_stmt(f, b, family, table, r, json_array_get(expr, i), i + 1 == n, &nfproto);
	/* after the statements, which may add messages of their own (anonymous sets) */
	if (rv == 0)
		rv = rule_step(f, b, insert ? "insert" : "add", insert ? index : NULL, family,
		               table, chain, b->n, &at, &followed);
	if (rv == -ENOENT)
		rv = -ENOTSUP; /* no such chain: libnftables says so */
	if (rv == 0) {
		/* Before the rule at the position, or appended; echoed when the chain is known by
		 * handle, for the new rule's handle. */
		uint16_t flags = insert ? NLM_F_CREATE : NLM_F_CREATE | NLM_F_APPEND;
		if (insert)
			nftnl_rule_set_u64(r, NFTNL_RULE_POSITION, at);
		struct nlmsghdr *nlh =
		    batch_hdr(f, b, NFT_MSG_NEWRULE, family, flags | (followed ? NLM_F_ECHO : 0));
		if (nlh != NULL)
			nftnl_rule_nlmsg_build_payload(nlh, r);
		rv = -ENOTSUP;
		if (nlh != NULL) {
			batch_done(b, nlh);
			rv = 0;
		}
	}
	nftnl_rule_free(r);
	return rv;
}

/* delete rule: {"family", "table", "chain", "index"} */
static int put_rule_delete(struct agent_nftnl *f, struct batch *b, const json_t *o)
{
	static const char *const keys[] = {"family", "table", "chain", "index", NULL};
	const char *table = name_of(o, "table");
	const char *chain = name_of(o, "chain");
	const json_t *index = json_object_get(o, "index");
	int family = family_of(json_string_value(json_object_get(o, "family")));
	uint64_t h;
	bool followed;
	int rv;

	if (!only_keys(o, keys) || family < 0 || table == NULL || chain == NULL ||
	    !json_is_integer(index))
		return -ENOTSUP;
	if ((rv = rule_step(f, b, "delete", index, family, table, chain, 0, &h, &followed)) != 0)
		return rv == -ENOENT ? -ENOTSUP : rv;
	struct nftnl_rule *r = nftnl_rule_alloc();
	if (r == NULL)
		return -ENOMEM;
	nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table);
	nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
	nftnl_rule_set_u64(r, NFTNL_RULE_HANDLE, h);
	struct nlmsghdr *nlh = batch_hdr(f, b, NFT_MSG_DELRULE, family, 0);
	if (nlh != NULL)
		nftnl_rule_nlmsg_build_payload(nlh, r);
	nftnl_rule_free(r);
	if (nlh == NULL)
		return -ENOTSUP;
	batch_done(b, nlh);
	return 0;
}

/* One command: {"VERB": {"WHAT": {...}}}. */
static int put_cmd(struct agent_nftnl *f, struct batch *b, const json_t *cmd)
{
	const char *verb, *what;
	json_t *inner, *o;

	if (!json_is_object(cmd) || json_object_size(cmd) != 1)
		return -ENOTSUP;
	json_object_foreach ((json_t *)cmd, verb, inner) {
		if (!json_is_object(inner) || json_object_size(inner) != 1)
			return -ENOTSUP;
		json_object_foreach (inner, what, o) {
			if (!json_is_object(o))
				return -ENOTSUP;
			bool add = strcmp(verb, "add") == 0;
			if (strcmp(what, "element") == 0 && (add || strcmp(verb, "delete") == 0))
				return put_elements(f, b, add, o);
			if (strcmp(what, "rule") == 0 && (add || strcmp(verb, "insert") == 0))
				return put_rule(f, b, o, !add);
			if (strcmp(what, "rule") == 0 && strcmp(verb, "delete") == 0)
				return put_rule_delete(f, b, o);
			if (strcmp(what, "set") == 0 && add)
				return put_set_add(f, b, o);
			return put_named(f, b, verb, what, o);
		}
	}
	return -ENOTSUP;
}

/* ------------------------------------------------------------------------------------------ */
/* Sending                                                                                     */

/* The echo of a rule the batch added: its handle, by the adding message's sequence number. */
static void echoed(struct batch *b, const struct nlmsghdr *h)
{
	const char *chain;
	uint32_t rel = h->nlmsg_seq - b->begin_seq;
	unsigned lo = 0, hi = b->n;

	if (b->echo == NULL)
		return;
	/* seq_of[] grows with the message index (other requests may take numbers in between) */
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (b->seq_of[mid] - b->begin_seq < rel)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < b->n && b->seq_of[lo] == h->nlmsg_seq)
		b->echo[lo] = rule_handle(h, &chain);
}

/* Send the batch and read its answer: 0; -ENOTSUP when nothing reached the kernel (too big for
 * one datagram) or the ruleset changed under us (the generation check: nothing applied); or
 * -EIO, the kernel's refusal, with err naming the command. */
static int talk(struct agent_nftnl *f, struct batch *b, const json_t *list, char *err,
                size_t errlen)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *last = (struct nlmsghdr *)(b->buf + b->last);
	uint32_t last_seq = last->nlmsg_seq, end_seq = f->seq++;
	int first_err = 0, fd = mnl_socket_get_fd(f->nl);
	uint32_t err_seq = 0;
	bool acked = false;

	/* One acknowledgement for the batch, on its last message; errors come regardless. */
	last->nlmsg_flags |= NLM_F_ACK;
	nftnl_batch_end(b->buf + b->len, end_seq);
	b->len += NLMSG_ALIGN(sizeof(struct nlmsghdr) + sizeof(struct nfgenmsg));
	if (b->len > f->sndbuf)
		return -ENOTSUP;
	if (mnl_socket_sendto(f->nl, b->buf, b->len) < 0) {
		if (errno == EMSGSIZE || errno == ENOBUFS || errno == ENOMEM)
			return -ENOTSUP; /* refused whole, before the kernel looked at it */
		snprintf(err, errlen, "sending %u nftables messages: %s", b->n, strerror(errno));
		return -EIO;
	}
	/* Netlink ran the batch while sendmsg() ran, so the answer is queued already; the poll
	 * only guards against a kernel that would not. Only this batch's sequence numbers
	 * count. */
	while (!acked && first_err == 0) {
		if (poll(&(struct pollfd){.fd = fd, .events = POLLIN}, 1, ANSWER_MS) <= 0) {
			snprintf(err, errlen, "no answer from the kernel to %u nftables messages",
			         b->n);
			goto fail;
		}
		ssize_t n = mnl_socket_recvfrom(f->nl, buf, sizeof(buf));
		if (n < 0) {
			snprintf(err, errlen, "reading the kernel's answer: %s", strerror(errno));
			goto fail;
		}
		const struct nlmsghdr *h = (const struct nlmsghdr *)buf;
		int left = (int)n;
		for (; mnl_nlmsg_ok(h, left); h = mnl_nlmsg_next(h, &left)) {
			if (h->nlmsg_seq - b->begin_seq > end_seq - b->begin_seq)
				continue;
			if (h->nlmsg_type == ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE)) {
				echoed(b, h); /* an added rule, with its handle */
				continue;
			}
			if (h->nlmsg_type != NLMSG_ERROR ||
			    h->nlmsg_len < NLMSG_HDRLEN + sizeof(struct nlmsgerr))
				continue;
			const struct nlmsgerr *e = mnl_nlmsg_get_payload(h);
			if (e->error != 0 && first_err == 0) {
				first_err = e->error;
				err_seq = h->nlmsg_seq;
			}
			if (e->error == 0 && h->nlmsg_seq == last_seq)
				acked = true;
		}
	}
	if (first_err == 0)
		return 0;
	drain(f);
	if (err_seq == b->begin_seq && first_err == -ERESTART)
		return -ENOTSUP; /* another writer committed since gen_get(): nothing applied */
	unsigned m = 0;
	while (m < b->n && b->seq_of[m] != err_seq)
		m++;
	if (m < b->n) {
		unsigned ci = b->cmd_of[m];
		char *text = json_dumps(json_array_get(list, ci), JSON_COMPACT);
		snprintf(err, errlen, "the kernel refused command %u %s: %s", ci + 1,
		         text ? text : "", strerror(-first_err));
		free(text);
	} else {
		snprintf(err, errlen, "the kernel refused the nftables batch: %s",
		         strerror(-first_err));
	}
	return -EIO;
fail:
	drain(f);
	return -EIO;
}

int agent_nftnl_apply(struct agent_nftnl *f, const json_t *cmds, char *err, size_t errlen)
{
	const json_t *list = json_object_get(cmds, "nftables");
	struct batch b = {0};
	int rv;

	if (errlen)
		err[0] = '\0';
	b.err = err;
	b.errlen = errlen;
	if (!json_is_array(list) || json_array_size(list) == 0)
		return -ENOTSUP;
	if (!batch_room(&b)) {
		rv = -ENOMEM;
		goto out;
	}
	drain(f);
	/* Set types remembered from another generation than the one our last batch left may be
	 * stale (someone else changed the ruleset): forget them. The batch carries the
	 * generation it was made for, so a change between here and the commit refuses it. */
	uint32_t gen;
	if (gen_get(f, &gen) != 0) {
		rv = -ENOTSUP;
		goto out;
	}
	if (f->have_gen && gen != f->gen)
		agent_nftnl_forget(f);
	struct nlmsghdr *begin = mnl_nlmsg_put_header(b.buf);
	begin->nlmsg_type = NFNL_MSG_BATCH_BEGIN;
	begin->nlmsg_flags = NLM_F_REQUEST;
	begin->nlmsg_seq = b.begin_seq = f->seq++;
	struct nfgenmsg *nfg = mnl_nlmsg_put_extra_header(begin, sizeof(*nfg));
	nfg->nfgen_family = AF_UNSPEC;
	nfg->version = NFNETLINK_V0;
	nfg->res_id = htons(NFNL_SUBSYS_NFTABLES);
	mnl_attr_put_u32(begin, NFNL_BATCH_GENID, htonl(gen));
	b.len = NLMSG_ALIGN(begin->nlmsg_len);
	for (size_t i = 0; i < json_array_size(list); i++) {
		b.cmd = (unsigned)i;
		if ((rv = put_cmd(f, &b, json_array_get(list, i))) != 0)
			goto out;
	}
	if (b.n == 0 || !batch_room(&b)) {
		rv = -ENOTSUP;
		goto out;
	}
	if (b.n_work > 0 && (b.echo = calloc(b.n, sizeof(*b.echo))) == NULL) {
		rv = -ENOMEM;
		goto out;
	}
	rv = talk(f, &b, list, err, errlen);
	if (rv != 0) {
		work_discard(&b);
		agent_nftnl_forget(f);
	} else {
		work_commit(f, &b);
		/* one commit: the generation moved on by one (never to 0) */
		f->gen = gen + 1 == 0 ? 1 : gen + 1;
		f->have_gen = true;
	}
out:
	work_discard(&b);
	free(b.echo);
	free(b.buf);
	free(b.cmd_of);
	free(b.seq_of);
	return rv;
}

int agent_nftnl_resolve(struct agent_nftnl *f, const json_t *cmds, json_t **out, char *err,
                        size_t errlen)
{
	const json_t *list = json_object_get(cmds, "nftables");
	struct batch b = {.err = err, .errlen = errlen};
	json_t *copy = NULL, *cmd;
	uint32_t gen;
	size_t i;
	int rv = 0;

	*out = NULL;
	if (errlen)
		err[0] = '\0';
	json_array_foreach (list, i, cmd) {
		if (json_object_get(json_object_get(json_object_get(cmd, "delete"), "rule"),
		                    "index") != NULL ||
		    json_object_get(json_object_get(json_object_get(cmd, "insert"), "rule"),
		                    "index") != NULL)
			break;
	}
	if (i == json_array_size(list))
		return 0; /* nothing by position */
	if (f == NULL) {
		snprintf(err, errlen, "rules by position need the netlink socket of the fast path");
		return -EIO;
	}
	drain(f);
	if ((rv = gen_get(f, &gen)) != 0) {
		snprintf(err, errlen, "asking the kernel for the ruleset generation failed");
		return -EIO;
	}
	if (f->have_gen && gen != f->gen)
		agent_nftnl_forget(f);
	if ((copy = json_array()) == NULL)
		return -ENOMEM;
	json_array_foreach (list, i, cmd) {
		const char *verb = json_object_iter_key(json_object_iter((json_t *)cmd));
		json_t *inner = json_object_iter_value(json_object_iter((json_t *)cmd));
		const char *what = json_object_iter_key(json_object_iter(inner));
		json_t *o = json_object_iter_value(json_object_iter(inner));
		json_t *index = json_object_get(o, "index");
		const char *table = name_of(o, "table");
		const char *chain =
		    name_of(o, strcmp(what ? what : "", "chain") == 0 ? "name" : "chain");
		int family = family_of(json_string_value(json_object_get(o, "family")));
		json_t *c = NULL;

		b.cmd = (unsigned)i;
		if (verb == NULL || what == NULL || table == NULL || chain == NULL || family < 0 ||
		    (strcmp(what, "chain") != 0 && strcmp(what, "rule") != 0)) {
			/* not about a chain's rules (or not for us to judge): as it is */
		} else if (strcmp(what, "chain") == 0) {
			if (strcmp(verb, "flush") == 0 || strcmp(verb, "delete") == 0)
				rv = work_reset(f, &b, family, table, chain, verb[0] == 'd');
		} else if (index != NULL
		               ? strcmp(verb, "insert") == 0 || strcmp(verb, "delete") == 0
		               : strcmp(verb, "add") == 0) {
			uint64_t h;
			bool followed;
			rv = rule_step(f, &b, verb, index, family, table, chain, 0, &h, &followed);
			if (rv == -ENOENT) {
				snprintf(err, errlen, "command %zu: no chain %s in table %s", i + 1,
				         chain, table);
				rv = -EIO;
			}
			/* libnftables: "handle" names the rule to delete, or to insert before */
			json_t *r = NULL;
			if (rv == 0 && index != NULL &&
			    ((r = json_deep_copy(o)) == NULL || json_object_del(r, "index") != 0 ||
			     json_object_set_new(r, "handle", json_integer((json_int_t)h)) != 0 ||
			     (c = json_pack("{s:{s:o}}", verb, "rule", r)) == NULL))
				rv = -ENOMEM;
		}
		if (rv != 0) {
			json_decref(c);
			break;
		}
		if (c != NULL ? json_array_append_new(copy, c) != 0
		              : json_array_append(copy, cmd) != 0) {
			rv = -ENOMEM;
			break;
		}
	}
	work_discard(&b);
	if (rv == 0 && (*out = json_pack("{s:o}", "nftables", copy)) == NULL)
		rv = -ENOMEM;
	else if (rv != 0)
		json_decref(copy);
	return rv;
}
