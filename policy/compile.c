/*
 * The nftables compiler (calico-behaviour.md 3.8, 3.9, 5.1-5.5): from a model to the ruleset of
 * one host, as libnftables JSON, in full and then incrementally.
 *
 * The ruleset, in table inet <table> (default "tabby"):
 *
 *   prerouting (hook prerouting, priority filter, policy accept): the egress side
 *       iifname != "cali*" accept                           not from a workload: not ours
 *       icmpv6 type { 130-133, 135, 136 } accept            MLD and neighbour discovery with
 *                                                           the host, as Felix (link scope:
 *                                                           never forwarded)
 *       fib saddr . iif oif missing drop                   a source not routed back through
 *                                                           its interface: spoofed
 *       ct state established,related accept               replies of allowed flows (5.5)
 *       ct state invalid drop
 *       iifname != @wl-ifaces drop                          an interface we know no endpoint of:
 *                                                           fail closed (5.1)
 *       iifname vmap @from-wl                               jump fw-IFACE: workload egress
 *       accept
 *   forward (hook forward, priority filter, policy accept): the ingress side
 *       the same for oifname (without the ICMPv6 and fib rules), through @to-wl to
 *       tw-IFACE: workload ingress
 *   Host-originated traffic to a local workload passes OUTPUT, not FORWARD: it is not policed,
 *   and no rule is needed for that.
 *
 *   Why egress in prerouting: all a workload sends passes there once, whether it is forwarded
 *   or for the host (which Felix polices with the same egress chains from INPUT), after
 *   conntrack and destination NAT, as in forward and input. Policing it in forward and in input
 *   instead made the kernel check the egress chains twice at every commit that adds a rule (its
 *   loop and hook check walks what each hook reaches): a fifth of that check's time.
 *
 *   Why two base chains: an allow is an nft accept, which ends the base chain it happens in
 *   and nothing more, so the egress side may accept and the packet still meets the ingress side
 *   in the next base chain. Felix marks an accepted packet and returns instead (iptables has no
 *   other way); here that cost two rules per policy and endpoint chain, most of the ruleset,
 *   which the kernel walks whole at every commit that adds a rule.
 *
 *   fw-IFACE / tw-IFACE: one chain per local endpoint and direction (Felix 5.3):
 *       [a policy that applies can pass:]  meta mark set meta mark & ~PASS
 *       [policies apply:] for each, up to the first that can pass: jump pX-POLICY
 *                         for each after it: mark & PASS == 0 jump pX-POLICY
 *                         [one can pass:] mark & PASS == 0 drop; [none can:] drop
 *       [no policy applies, or one can pass:]
 *                         for each profile the model holds: jump prX-PROFILE
 *                         drop
 *   (render_endpoint() says why the mark is only touched where a policy can pass.)
 *   pi-/po-POLICY, pri-/pro-PROFILE: the rules of one direction. Actions: allow: accept; deny:
 *   drop; log: log and go on; pass: set PASS and return (in a profile chain that goes on to the
 *   next profile, as a rule that does not match).
 *   s4-ID / s6-ID: one plain set (no interval flag) per selector or tag used by an active rule
 *   and family; the addresses of every endpoint in the cluster whose effective labels match.
 *   A selector that is a conjunction of tests ("app == 'a' && tier != 'db'", see
 *   policy_selector_literals()) has no set of its own: each test has one, and the rule tests
 *   the address against each, "==" for a test and "!=" for a negated one (with all() first when
 *   every test is negated, so that the address is an endpoint's). Selectors that share a test
 *   share its set, so a new selector mostly finds its sets made and filled: a set of its own
 *   for thousands of endpoints took 5 ms to fill and 4 ms for the kernel to load. A negated
 *   selector (notSelector) keeps one set: the negation of a conjunction is none.
 *
 * Mark bits: PASS is 0x02000000 (inside Felix's default mark mask 0xff000000); only this bit is
 * ever changed.
 *
 * Names. A set's ID is the first 16 characters (96 bits) of its selector's UID, base64url of
 * SHA-224 of the canonical selector: always valid, and as unlikely to collide as two hashed
 * chain names. Not the whole UID: the kernel finds a set named in a message by walking the
 * table's sets and taking strlen() of each name, for every element message and every rule with
 * a lookup, and with ~1,000 sets that walk was a quarter of an incremental batch's time, its
 * strlen() alone 10 % with 41-byte names. Chain names are the
 * prefix, '-' and the resource name when that name is made only of nft identifier characters
 * (letters, digits, '_', '-', '.', '/') and the whole is shorter than 64 bytes. Otherwise the
 * name is the prefix, '.', the name with every other character replaced by '_' and cut to 32
 * bytes, '.', and 16 base64url characters of SHA-224(name). A plain name always has '-' after
 * the prefix and a hashed one '.', so the two forms never meet; two hashed names are equal only
 * if 96 bits of SHA-224 of two different names are.
 *
 * Rules (the evaluator in eval.c decides the same way). A rule confined to a family (its
 * ipVersion, or the family of its CIDRs) becomes one nft rule with "meta nfproto"; a rule with a
 * selector or tag and no family becomes one rule per family (the sets are per family); any other
 * rule becomes one rule. ICMP tests compare "nfproto . l4proto . type [. code]" with the ICMP of
 * each family, so they hold only for ICMP over IPv4 and ICMPv6 over IPv6, and their negation
 * holds for everything else. Ports are tested on tcp, udp, sctp and udplite; a rule with
 * notPorts and no protocol becomes two rules (not a port protocol | a port protocol and not
 * those ports), which never both match one packet. A rule (or one family's rule) that needs the
 * address to be in a set that is empty can never match and is left out; its set is not made
 * unless another rule needs it. In a cluster without IPv6 endpoints that leaves out every IPv6
 * twin of a selector rule and every IPv6 set: a third fewer rules for the kernel to check at each
 * commit, and half the sets for it to walk when it looks one up by name.
 *
 * The incremental algorithm. The compiler keeps, besides the notes of what changed:
 *   - per endpoint of the cluster (cep, in a hash table by kind and key): its addresses as the
 *     sets hold them, the selectors it is a member of (sorted, so that "was it a member" costs a
 *     binary search); when it is local, the interface it claims and the policies (per
 *     direction, in evaluation order) and profiles its chains jump to;
 *   - per selector in use (csel): its parsed copy, how many rendered rules refer to its v4 and
 *     v6 sets, its member endpoints and a count per address (two endpoints may share one);
 *   - per policy and profile (cpol, cprof): how many local endpoints jump to each direction, and
 *     the two chains; per local interface (cif): the endpoints claiming it and its two chains;
 *   - per chain: the rules wanted and the rules the kernel holds (JSON, compared as JSON).
 * A flush runs in phases over the notes, in sorted order:
 *   1. profiles: a change of labels or tags (or of existence) changes the effective labels of
 *      every endpoint listing the profile, so those endpoints become notes too; its chains are
 *      re-rendered if active;
 *   2. endpoints: each changed endpoint is checked against every selector already in use (its
 *      old and new addresses moved in and out of the sets), and when local its policy and
 *      profile lists are recomputed;
 *   3. policies: each changed policy is taken out of every local endpoint's lists and put back,
 *      at its place in evaluation order, where its selector now matches;
 *   4. rendering: policy and profile chains whose rules changed or that became (in)active, and
 *      endpoint chains whose lists changed, are rendered; the selectors their rules use are
 *      counted, and a selector not in use before is created "fresh";
 *   5. fresh selectors are evaluated against the endpoints with a label they require (the
 *      label index, label_index.h: "app == 'web' && ..." is evaluated only where app is web;
 *      "app in {'a', 'b'}" where app is a or b), or, when they require none, against every
 *      endpoint (one pass for all of those);
 *   6. a selector whose set of a family became empty or stopped being empty (phase 2 moved its
 *      members, or phase 5 filled it: new selectors are rendered as if their sets had members)
 *      has the policy and profile chains that name it rendered again;
 *   7. the difference between wanted and kernel state of everything touched is emitted as one
 *      batch, ordered so that nothing is referred to before it exists or deleted while referred
 *      to: new sets (with elements), element changes, new chains, changed chains (the rules
 *      between the common head and tail replaced by position, or flush and add rules when
 *      that is shorter: emit_chain_change; policy and profile chains before the endpoint chains
 *      that jump to them), map elements, then chains no longer wanted (all flushed, then
 *      deleted), then sets.
 * So one new endpoint costs one evaluation per selector in use (and, when local, one per
 * policy); one changed policy costs one evaluation per local endpoint, plus, for each selector
 * it uses that was not in use, one per endpoint carrying its rarest required label (or per
 * endpoint of the cluster). The first flush (and the next after
 * a reset, or after an error) clears the state, runs the same phases over the whole model and
 * emits the whole table after "add table; delete table", so the kernel swaps atomically from
 * whatever it had.
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/base64.h>
#include <nettle/sha2.h>

#include "policy/label_index.h"
#include "policy/ptrtab.h"
#include "policy/policy.h"

#define MARK_PASS 0x02000000u

#define MAP_FROM "from-wl"
#define MAP_TO   "to-wl"
#define SET_IFS  "wl-ifaces"

/* Direction index: 0 ingress (to the workload), 1 egress (from it). */
enum { DIR_IN = 0, DIR_OUT = 1 };

/* ------------------------------------------------------------------------------------------ */
/* State                                                                                       */

struct vec {
	void **v;
	unsigned n, cap;
};

/* A selector reference of a rendered chain: which set (family index 0 v4, 1 v6), and whether a
 * rule in the chain names it (live) or the rule was left out because the set was empty (see
 * render_rule): the chain then still depends on the selector's emptiness. */
struct sref {
	struct csel *s;
	unsigned fam;
	bool live;
};

struct cchain {
	char *name;
	json_t *want;   /* array of expression arrays; NULL: the chain should not exist */
	json_t *kernel; /* what the kernel holds; NULL: absent */
	struct sref *refs;
	unsigned n_refs;
	unsigned rank; /* 0 policy or profile chain, 1 endpoint chain (jumps to rank 0) */
	bool listed;
	/* "jump <name>", one object that every endpoint chain jumping here holds (chain_jump) */
	json_t *jump;
	json_t *cjump; /* "no pass yet: jump <name>" (chain_cjump) */
};

/* One address of a selector's set. */
struct caddr {
	struct ipam_addr a;
	unsigned count; /* member endpoints that have it */
	bool kernel;    /* in the kernel's set of its family */
	bool dirty;
};

struct csel {
	char *uid; /* tree key */
	struct policy_selector *sel;
	char name[2][64];
	unsigned refs[2]; /* live references: the kernel set of the family exists while > 0 */
	unsigned deps;    /* references of rules left out for an empty set */
	unsigned live[2]; /* addresses of each family that some member has */
	bool empty[2];    /* what the chains naming it were rendered with (false until filled) */
	bool flipped;     /* empty[] changed in this flush */
	bool kernel[2];
	bool fresh;            /* members not computed yet */
	struct ptrtab members; /* of struct cep * */
	struct ptrtab addrs;   /* of struct caddr *, by address */
	struct vec dirty;
	unsigned idx; /* in policy_compiler.selv */
	bool listed;
	/* No rule uses it, but its sets stay in the kernel, kept up to date (idle_update()). */
	bool idle;
	struct csel *idle_prev, *idle_next; /* policy_compiler.idle, oldest first */
};

struct cpol {
	char *name;  /* tree key */
	uint64_t id; /* unique in the compiler's life: a freed one's address may come back */
	bool exists, has_order, changed;
	bool pass[2]; /* a rule of the direction passes */
	double order;
	unsigned users[2];
	struct cchain chain[2];
	bool listed;
};

struct cprof {
	char *name;  /* tree key */
	uint64_t id; /* as cpol's */
	char *fp;    /* labels and tags; NULL when the model lacks it */
	bool synced; /* fp is known: endpoints were evaluated with those labels */
	bool changed;
	unsigned users;
	struct cchain chain[2];
	bool listed;
};

struct cif;

struct cep {
	char *key; /* with kind, the key of policy_compiler.ep_tab */
	enum policy_kind kind;
	uint64_t hash;
	struct ipam_addr *addrs;
	unsigned n_addrs;
	struct cif *cif; /* when local */
	struct cpol **pols[2];
	unsigned n_pols[2];
	struct cprof **profs;
	unsigned n_profs;
	unsigned lidx; /* in policy_compiler.locals */
	/* the selectors (not fresh) whose members include it, ascending by address: the question
	 * "was it a member" is asked of every selector at every change of the endpoint */
	struct csel **msel;
	unsigned n_msel, cap_msel;
	struct label_refs lrefs; /* where policy_compiler.labels files it */
};

struct cif {
	char *name;       /* tree key */
	struct vec claim; /* local endpoints naming this interface; the least key owns it */
	struct cchain chain[2];
	/* What each chain was last rendered from (render_if): its owner's policy and profile
	 * lists as ids, or [0] when it had no owner; v NULL until rendered. */
	struct {
		uint64_t *v;
		unsigned n;
	} drawn[2];
	bool kernel; /* map and set elements present */
	bool listed;
};

struct policy_compiler {
	char *node, *table, *prefix, *log_prefix;
	bool full;
	void *notes; /* "K:key" strings, K the kind number */
	void *sels, *pols, *profs, *ifs;
	/* every endpoint, by kind and key: open addressing, linear probing, at most half full */
	struct cep **ep_tab;
	unsigned ep_tab_n, ep_tab_cap;
	struct vec selv, locals;
	uint64_t next_id;                                    /* of the next cpol or cprof */
	struct vec t_sels, t_chains, t_pols, t_profs, t_ifs; /* touched in this flush */
	struct label_index *labels; /* every endpoint by effective label, for fresh selectors */
	/* The endpoint chains' other rules, shared as chain.jump is (render_endpoint). */
	json_t *r_clear, *r_passdrop, *r_drop;
	struct {
		struct csel *head, *tail;
		unsigned n;
	} idle;
};

static int vec_push(struct vec *v, void *p)
{
	if (v->n == v->cap) {
		unsigned cap = v->cap ? v->cap * 2 : 16;
		void **nv = realloc(v->v, cap * sizeof(*nv));
		if (nv == NULL)
			return -ENOMEM;
		v->v = nv;
		v->cap = cap;
	}
	v->v[v->n++] = p;
	return 0;
}

/* qsort, which must not be given the NULL array of an empty vector. */
static void vec_sort(struct vec *v, int (*cmp)(const void *, const void *))
{
	if (v->n > 1)
		qsort(v->v, v->n, sizeof(void *), cmp);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cep_cmp(const void *a, const void *b)
{
	const struct cep *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	return c != 0 ? c : (int)x->kind - (int)y->kind;
}

static int caddr_cmp(const void *a, const void *b)
{
	const struct caddr *x = a, *y = b;

	if (x->a.family != y->a.family)
		return x->a.family < y->a.family ? -1 : 1;
	return memcmp(x->a.b, y->a.b, 16);
}

/* The item stored under key in a tree whose items start with their char * key. */
static void *tree_get(void *const *root, const char *key)
{
	void **node = tfind(&key, root, name_cmp);

	return node != NULL ? *node : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Names                                                                                       */

static bool ident_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '_' || ch == '-' || ch == '.' || ch == '/';
}

/* The chain name for a resource name (see the head of the file). */
static char *chain_name(const char *prefix, const char *name)
{
	size_t len = strlen(name);
	bool plain = strlen(prefix) + 1 + len < 64;
	struct sha224_ctx sha;
	uint8_t digest[SHA224_DIGEST_SIZE];
	struct base64_encode_ctx enc;
	char b64[BASE64_ENCODE_LENGTH(SHA224_DIGEST_SIZE) + BASE64_ENCODE_FINAL_LENGTH + 1];
	size_t n;
	char clean[33];
	char *out;

	for (size_t i = 0; plain && i < len; i++)
		plain = ident_char(name[i]);
	if (plain)
		return asprintf(&out, "%s-%s", prefix, name) < 0 ? NULL : out;
	sha224_init(&sha);
	sha224_update(&sha, len, (const uint8_t *)name);
	sha224_digest(&sha, sizeof(digest), digest);
	base64url_encode_init(&enc);
	n = base64_encode_update(&enc, b64, sizeof(digest), digest);
	n += base64_encode_final(&enc, b64 + n);
	b64[n < 16 ? n : 16] = '\0';
	len = len < 32 ? len : 32;
	for (size_t i = 0; i < len; i++)
		clean[i] = ident_char(name[i]) ? name[i] : '_';
	clean[len] = '\0';
	return asprintf(&out, "%s.%s.%s", prefix, clean, b64) < 0 ? NULL : out;
}

/* ------------------------------------------------------------------------------------------ */
/* JSON building                                                                               */

static json_t *j_meta(const char *key)
{
	return json_pack("{s:{s:s}}", "meta", "key", key);
}

static json_t *j_match(const char *op, json_t *left, json_t *right)
{
	return json_pack("{s:{s:s,s:o,s:o}}", "match", "op", op, "left", left, "right", right);
}

static json_t *j_payload(const char *proto, const char *field)
{
	return json_pack("{s:{s:s,s:s}}", "payload", "protocol", proto, "field", field);
}

static json_t *j_raw_th(int offset, int len)
{
	return json_pack("{s:{s:s,s:i,s:i}}", "payload", "base", "th", "offset", offset, "len",
	                 len);
}

static json_t *j_verdict(const char *v)
{
	return json_pack("{s:n}", v);
}

static json_t *j_jump(const char *chain)
{
	return json_pack("{s:{s:s}}", "jump", "target", chain);
}

static json_t *j_setref(const char *name)
{
	char ref[80];

	snprintf(ref, sizeof(ref), "@%s", name);
	return json_string(ref);
}

/* meta mark & bit == value */
static json_t *j_mark_is(unsigned bit, unsigned value)
{
	return j_match("==", json_pack("{s:[o,I]}", "&", j_meta("mark"), (json_int_t)bit),
	               json_integer(value));
}

/* meta mark set meta mark | bit (or & ~bits when clear) */
static json_t *j_mark_set(unsigned bits, bool clear)
{
	json_int_t v = clear ? (json_int_t)(~bits & 0xffffffffu) : (json_int_t)bits;

	return json_pack("{s:{s:o,s:{s:[o,I]}}}", "mangle", "key", j_meta("mark"), "value",
	                 clear ? "&" : "|", j_meta("mark"), v);
}

/* A rule under construction: its expression list and whether an allocation failed. */
struct rb {
	json_t *expr;
	bool oom;
	bool dead; /* matches a member of an empty set: can never match */
};

static void rb_add(struct rb *b, json_t *stmt)
{
	if (stmt == NULL || json_array_append_new(b->expr, stmt) != 0)
		b->oom = true;
}

static json_t *j_addr(const struct ipam_addr *a)
{
	char buf[IPAM_ADDR_STRLEN];

	ipam_addr_format(a, buf);
	return json_stringn_nocheck(buf, strlen(buf)); /* digits, dots and colons */
}

static int cidr_order(const void *a, const void *b)
{
	const struct ipam_cidr *x = a, *y = b;
	int c = memcmp(x->addr.b, y->addr.b, 16);

	return c != 0 ? c : (int)x->prefix - (int)y->prefix;
}

/* An anonymous set of CIDRs, sorted, without the ones another contains (CIDRs nest or are
 * disjoint, so after sorting only the last one kept can contain the next). */
static json_t *j_cidr_set(const struct ipam_cidr *in, unsigned n)
{
	struct ipam_cidr *v = malloc((n ? n : 1) * sizeof(*v));
	json_t *set = json_array();
	int last = -1;

	if (v == NULL || set == NULL)
		goto err;
	memcpy(v, in, n * sizeof(*v));
	qsort(v, n, sizeof(*v), cidr_order);
	for (unsigned i = 0; i < n; i++) {
		unsigned bits = v[i].addr.family == 4 ? 32 : 128;
		json_t *e;
		if (last >= 0 && ipam_cidr_contains(&v[last], &v[i].addr))
			continue;
		last = (int)i;
		if (v[i].prefix == bits)
			e = j_addr(&v[i].addr);
		else
			e = json_pack("{s:{s:o,s:i}}", "prefix", "addr", j_addr(&v[i].addr), "len",
			              v[i].prefix);
		if (json_array_append_new(set, e) != 0)
			goto err;
	}
	free(v);
	return json_pack("{s:o}", "set", set);
err:
	free(v);
	json_decref(set);
	return NULL;
}

static int range_order(const void *a, const void *b)
{
	const struct policy_port_range *x = a, *y = b;

	return x->lo != y->lo ? (int)x->lo - (int)y->lo : (int)x->hi - (int)y->hi;
}

/* An anonymous set of ports and ranges, sorted, overlapping and adjacent ones merged. */
static json_t *j_port_set(const struct policy_port_range *in, unsigned n)
{
	struct policy_port_range *v = malloc((n ? n : 1) * sizeof(*v));
	json_t *set = json_array();
	unsigned k = 0;

	if (v == NULL || set == NULL)
		goto err;
	memcpy(v, in, n * sizeof(*v));
	qsort(v, n, sizeof(*v), range_order);
	for (unsigned i = 0; i < n; i++) {
		if (k > 0 && (unsigned)v[i].lo <= (unsigned)v[k - 1].hi + 1) {
			if (v[i].hi > v[k - 1].hi)
				v[k - 1].hi = v[i].hi;
			continue;
		}
		v[k++] = v[i];
	}
	for (unsigned i = 0; i < k; i++) {
		json_t *e = v[i].lo == v[i].hi
		                ? json_integer(v[i].lo)
		                : json_pack("{s:[i,i]}", "range", (int)v[i].lo, (int)v[i].hi);
		if (json_array_append_new(set, e) != 0)
			goto err;
	}
	free(v);
	return json_pack("{s:o}", "set", set);
err:
	free(v);
	json_decref(set);
	return NULL;
}

/* The protocols whose packets carry ports (as eval.c: tcp, udp, sctp, udplite). */
static const int port_protos[] = {6, 17, 132, 136};

static bool carries_ports(int proto)
{
	for (unsigned i = 0; i < 4; i++)
		if (port_protos[i] == proto)
			return true;
	return false;
}

static json_t *j_port_protos(void)
{
	return json_pack("{s:[i,i,i,i]}", "set", port_protos[0], port_protos[1], port_protos[2],
	                 port_protos[3]);
}

/* nfproto . l4proto . type [. code] ==/!= the ICMP of the families in fams (bit 0 v4, 1 v6). */
static json_t *j_icmp(const char *op, int type, int code, unsigned fams)
{
	json_t *left = json_pack("{s:[o,o,o]}", "concat", j_meta("nfproto"), j_meta("l4proto"),
	                         j_raw_th(0, 8));
	json_t *set = json_array();

	if (left == NULL || set == NULL)
		goto err;
	if (code >= 0 && json_array_append_new(json_object_get(left, "concat"), j_raw_th(8, 8)))
		goto err;
	for (unsigned f = 0; f < 2; f++) {
		json_t *e;
		if (!(fams & (1u << f)))
			continue;
		e = json_pack("{s:[s,i,i]}", "concat", f == 0 ? "ipv4" : "ipv6", f == 0 ? 1 : 58,
		              type);
		if (e != NULL && code >= 0 &&
		    json_array_append_new(json_object_get(e, "concat"), json_integer(code)) != 0) {
			json_decref(e);
			e = NULL;
		}
		if (json_array_append_new(set, e) != 0)
			goto err;
	}
	return j_match(op, left, json_pack("{s:o}", "set", set));
err:
	json_decref(left);
	json_decref(set);
	return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Rendering policy and profile rules                                                          */

/* The selectors a chain's rules use, collected while rendering it. */
struct refs {
	struct sref *v;
	unsigned n, cap;
	bool oom;
};

static struct csel *sel_get(struct policy_compiler *c, const char *uid, const char *canonical);

/* The name of the set of family index fam of the selector with this UID and canonical text,
 * recorded as used. NULL on allocation failure. */
static const char *ref_set(struct policy_compiler *c, struct refs *r, const char *uid,
                           const char *canonical, unsigned fam)
{
	struct csel *s = sel_get(c, uid, canonical);

	if (s == NULL)
		goto oom;
	if (r->n == r->cap) {
		unsigned cap = r->cap ? 2 * r->cap : 8;
		struct sref *v = realloc(r->v, cap * sizeof(*v));
		if (v == NULL)
			goto oom;
		r->v = v;
		r->cap = cap;
	}
	r->v[r->n].s = s;
	r->v[r->n].fam = fam;
	r->v[r->n].live = true;
	r->n++;
	return s->name[fam];
oom:
	r->oom = true;
	return NULL;
}

static void render_sel(struct policy_compiler *c, struct refs *r, struct rb *b, const char *op,
                       json_t *(*left)(const char *, const char *), const char *proto,
                       const char *field, const struct policy_selector *sel, unsigned fam)
{
	const struct policy_selector_literal *lit;
	unsigned n_lits;
	const char *name;

	if (sel == NULL)
		return;
	/* A conjunction of tests is tested as one set per test (policy_selector_literals()):
	 * "app == 'a' && tier == 'db'" and "app == 'b' && tier == 'db'" share the set of
	 * tier == "db", so a rule with a new selector of thousands of endpoints mostly finds its
	 * sets in the kernel already, where a set of its own would have to be filled first (the
	 * slowest policy changes: 2,500 addresses cost 5 ms of compile and 4 ms of kernel). A
	 * negated selector (notSelector) stays one set: its negation is no conjunction. */
	n_lits = strcmp(op, "==") == 0 ? policy_selector_literals(sel, &lit) : 0;
	for (unsigned i = 0; i < n_lits; i++) {
		if ((name = ref_set(c, r, lit[i].uid, lit[i].canonical, fam)) == NULL) {
			b->oom = true;
			return;
		}
		if (!lit[i].negated && r->v[r->n - 1].s->empty[fam])
			b->dead = true;
		rb_add(b,
		       j_match(lit[i].negated ? "!=" : "==", left(proto, field), j_setref(name)));
	}
	if (n_lits > 0)
		return;
	name = ref_set(c, r, policy_selector_uid(sel), policy_selector_canonical(sel), fam);
	if (name == NULL) {
		b->oom = true;
		return;
	}
	if (strcmp(op, "==") == 0 && r->v[r->n - 1].s->empty[fam])
		b->dead = true;
	rb_add(b, j_match(op, left(proto, field), j_setref(name)));
}

/* The address tests of one side, for family fam (4 or 6). */
static void render_entity_addrs(struct policy_compiler *c, struct refs *r, struct rb *b,
                                const struct policy_entity *e, int fam, bool src)
{
	const char *proto = fam == 4 ? "ip" : "ip6";
	const char *field = src ? "saddr" : "daddr";
	unsigned fi = fam == 4 ? 0 : 1;

	if (e->n_nets > 0)
		rb_add(b, j_match("==", j_payload(proto, field), j_cidr_set(e->nets, e->n_nets)));
	if (e->n_not_nets > 0)
		rb_add(b, j_match("!=", j_payload(proto, field),
		                  j_cidr_set(e->not_nets, e->n_not_nets)));
	render_sel(c, r, b, "==", j_payload, proto, field, e->selector, fi);
	render_sel(c, r, b, "!=", j_payload, proto, field, e->not_selector, fi);
	render_sel(c, r, b, "==", j_payload, proto, field, e->tag_sel, fi);
	render_sel(c, r, b, "!=", j_payload, proto, field, e->not_tag_sel, fi);
}

static void render_entity_ports(struct rb *b, const struct policy_entity *e, bool src)
{
	const char *field = src ? "sport" : "dport";

	if (e->n_ports > 0)
		rb_add(b, j_match("==", j_payload("th", field), j_port_set(e->ports, e->n_ports)));
	if (e->n_not_ports > 0)
		rb_add(b, j_match("!=", j_payload("th", field),
		                  j_port_set(e->not_ports, e->n_not_ports)));
}

static bool entity_has_sel(const struct policy_entity *e)
{
	return e->selector || e->not_selector || e->tag_sel || e->not_tag_sel;
}

/* How port tests are rendered for one variant of a rule. */
enum port_mode {
	PORTS_NONE,    /* no port tests (none given, or notPorts that hold anyway) */
	PORTS_DIRECT,  /* the rule's protocol carries ports: test them */
	PORTS_NEED,    /* no protocol: a port protocol, and the tests */
	PORTS_NOPORTS, /* no protocol, only notPorts: not a port protocol (the tests hold) */
};

/* Append the nft rules for one policy rule to rules. */
static int render_rule(struct policy_compiler *c, struct refs *r, const struct policy_rule *pr,
                       json_t *rules)
{
	int fams[2];
	unsigned n_fams = 0;
	enum port_mode modes[2];
	unsigned n_modes = 0;
	int fam = policy_rule_family(pr);
	bool pos_ports = pr->src.n_ports || pr->dst.n_ports;
	bool neg_ports = pr->src.n_not_ports || pr->dst.n_not_ports;

	if (fam != 0)
		fams[n_fams++] = fam;
	else if (entity_has_sel(&pr->src) || entity_has_sel(&pr->dst)) {
		fams[n_fams++] = 4;
		fams[n_fams++] = 6;
	} else
		fams[n_fams++] = 0;
	if (!pos_ports && !neg_ports)
		modes[n_modes++] = PORTS_NONE;
	else if (pr->protocol >= 0) {
		if (carries_ports(pr->protocol))
			modes[n_modes++] = PORTS_DIRECT;
		else if (!pos_ports)
			modes[n_modes++] = PORTS_NONE;
		/* else: ports of a protocol without ports never match */
	} else {
		if (!pos_ports)
			modes[n_modes++] = PORTS_NOPORTS;
		modes[n_modes++] = PORTS_NEED;
	}
	for (unsigned f = 0; f < n_fams; f++) {
		for (unsigned p = 0; p < n_modes; p++) {
			struct rb b = {json_array(), false, false};
			unsigned r0 = r->n;
			if (b.expr == NULL)
				return -ENOMEM;
			if (fams[f] != 0)
				rb_add(&b, j_match("==", j_meta("nfproto"),
				                   json_string(fams[f] == 4 ? "ipv4" : "ipv6")));
			if (pr->protocol >= 0)
				rb_add(&b, j_match("==", j_meta("l4proto"),
				                   json_integer(pr->protocol)));
			if (pr->not_protocol >= 0)
				rb_add(&b, j_match("!=", j_meta("l4proto"),
				                   json_integer(pr->not_protocol)));
			if (modes[p] == PORTS_NEED)
				rb_add(&b, j_match("==", j_meta("l4proto"), j_port_protos()));
			if (modes[p] == PORTS_NOPORTS)
				rb_add(&b, j_match("!=", j_meta("l4proto"), j_port_protos()));
			unsigned ifams = fams[f] == 4 ? 1 : fams[f] == 6 ? 2 : 3;
			if (pr->icmp_type >= 0)
				rb_add(&b, j_icmp("==", pr->icmp_type, pr->icmp_code, ifams));
			if (pr->not_icmp_type >= 0)
				rb_add(&b,
				       j_icmp("!=", pr->not_icmp_type, pr->not_icmp_code, ifams));
			if (fams[f] != 0) {
				render_entity_addrs(c, r, &b, &pr->src, fams[f], true);
				render_entity_addrs(c, r, &b, &pr->dst, fams[f], false);
			}
			if (modes[p] == PORTS_DIRECT || modes[p] == PORTS_NEED) {
				render_entity_ports(&b, &pr->src, true);
				render_entity_ports(&b, &pr->dst, false);
			}
			switch (pr->action) {
			case POLICY_ACTION_ALLOW:
				rb_add(&b, j_verdict("accept"));
				break;
			case POLICY_ACTION_DENY:
				rb_add(&b, j_verdict("drop"));
				break;
			case POLICY_ACTION_LOG:
				rb_add(&b, json_pack("{s:{s:s}}", "log", "prefix", c->log_prefix));
				break;
			case POLICY_ACTION_PASS:
				rb_add(&b, j_mark_set(MARK_PASS, false));
				rb_add(&b, j_verdict("return"));
				break;
			}
			if (b.oom) {
				json_decref(b.expr);
				return -ENOMEM;
			}
			/* A rule that needs an address of an empty set can never match: it is left
			 * out, which spares the kernel a rule to check at every commit and, in a
			 * cluster without IPv6 endpoints, every IPv6 set of a selector. Its set
			 * references stay, not live, so the chain is rendered again when the set
			 * stops being empty. */
			if (b.dead) {
				for (unsigned k = r0; k < r->n; k++)
					r->v[k].live = false;
				json_decref(b.expr);
				continue;
			}
			if (json_array_append_new(rules, b.expr) != 0)
				return -ENOMEM;
		}
	}
	return 0;
}

static json_t *render_rules(struct policy_compiler *c, struct refs *r,
                            const struct policy_rules *rules)
{
	json_t *out = json_array();

	if (out == NULL)
		return NULL;
	for (unsigned i = 0; i < rules->n; i++) {
		if (render_rule(c, r, &rules->v[i], out) != 0) {
			json_decref(out);
			return NULL;
		}
	}
	return out;
}

/* ------------------------------------------------------------------------------------------ */
/* Touching: what a flush must look at again                                                   */

#define TOUCH(c, list, x)                                                                          \
	do {                                                                                       \
		if (!(x)->listed) {                                                                \
			if (vec_push(&(c)->list, (x)) != 0)                                        \
				return -ENOMEM;                                                    \
			(x)->listed = true;                                                        \
		}                                                                                  \
	} while (0)

static int touch_sel(struct policy_compiler *c, struct csel *s)
{
	TOUCH(c, t_sels, s);
	return 0;
}

/* Whether the kernel should hold s's set of family f: a rule names it, or s is idle, the set
 * is there already and not empty. */
static bool sel_want(const struct csel *s, unsigned f)
{
	return s->refs[f] > 0 || (s->idle && s->kernel[f] && s->live[f] > 0);
}

static int touch_chain(struct policy_compiler *c, struct cchain *ch)
{
	TOUCH(c, t_chains, ch);
	return 0;
}

static int touch_pol(struct policy_compiler *c, struct cpol *p)
{
	TOUCH(c, t_pols, p);
	return 0;
}

static int touch_prof(struct policy_compiler *c, struct cprof *p)
{
	TOUCH(c, t_profs, p);
	return 0;
}

static int touch_if(struct policy_compiler *c, struct cif *f)
{
	TOUCH(c, t_ifs, f);
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Endpoints by key, and the selectors each belongs to                                        */

static uint64_t ep_hash(enum policy_kind kind, const char *key)
{
	uint64_t h = 14695981039346656037ULL ^ (uint64_t)kind;

	for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++)
		h = (h ^ *p) * 1099511628211ULL;
	return h ^ (h >> 29);
}

/* The slot holding the endpoint of kind and key, or the empty slot where it would go. */
static struct cep **ep_slot(const struct policy_compiler *c, uint64_t h, enum policy_kind kind,
                            const char *key)
{
	unsigned mask = c->ep_tab_cap - 1;

	for (unsigned i = (unsigned)h & mask;; i = (i + 1) & mask) {
		struct cep *e = c->ep_tab[i];
		if (e == NULL || (e->hash == h && e->kind == kind && strcmp(e->key, key) == 0))
			return &c->ep_tab[i];
	}
}

static struct cep *ep_find(struct policy_compiler *c, enum policy_kind kind, const char *key)
{
	return c->ep_tab_cap > 0 ? *ep_slot(c, ep_hash(kind, key), kind, key) : NULL;
}

/* Add ep (not there yet; ep->hash set). */
static int ep_tab_insert(struct policy_compiler *c, struct cep *ep)
{
	if (2 * (c->ep_tab_n + 1) > c->ep_tab_cap) {
		unsigned cap = c->ep_tab_cap > 0 ? 2 * c->ep_tab_cap : 64;
		struct cep **old = c->ep_tab, **nt = calloc(cap, sizeof(*nt));
		unsigned ocap = c->ep_tab_cap;
		if (nt == NULL)
			return -ENOMEM;
		c->ep_tab = nt;
		c->ep_tab_cap = cap;
		for (unsigned i = 0; i < ocap; i++)
			if (old[i] != NULL)
				*ep_slot(c, old[i]->hash, old[i]->kind, old[i]->key) = old[i];
		free(old);
	}
	*ep_slot(c, ep->hash, ep->kind, ep->key) = ep;
	c->ep_tab_n++;
	return 0;
}

/* Take ep out, moving back the entries after it that probed past its slot (no tombstones). */
static void ep_tab_remove(struct policy_compiler *c, struct cep *ep)
{
	unsigned mask = c->ep_tab_cap - 1;
	unsigned i = (unsigned)(ep_slot(c, ep->hash, ep->kind, ep->key) - c->ep_tab);

	if (c->ep_tab[i] != ep)
		return;
	for (unsigned j = (i + 1) & mask; c->ep_tab[j] != NULL; j = (j + 1) & mask) {
		unsigned home = (unsigned)c->ep_tab[j]->hash & mask;
		/* j's entry may move to i when its home is not cyclically within (i, j] */
		bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
		if (!stays) {
			c->ep_tab[i] = c->ep_tab[j];
			i = j;
		}
	}
	c->ep_tab[i] = NULL;
	c->ep_tab_n--;
}

/* The index of s in ep->msel, or where it would go. */
static unsigned msel_pos(const struct cep *ep, const struct csel *s, bool *found)
{
	unsigned lo = 0, hi = ep->n_msel;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (ep->msel[mid] == s) {
			*found = true;
			return mid;
		}
		if ((uintptr_t)ep->msel[mid] < (uintptr_t)s)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static bool msel_has(const struct cep *ep, const struct csel *s)
{
	bool found;

	msel_pos(ep, s, &found);
	return found;
}

static int msel_add(struct cep *ep, struct csel *s)
{
	bool found;
	unsigned at = msel_pos(ep, s, &found);

	if (found)
		return 0;
	if (ep->n_msel == ep->cap_msel) {
		unsigned cap = ep->cap_msel > 0 ? 2 * ep->cap_msel : 8;
		struct csel **v = realloc(ep->msel, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		ep->msel = v;
		ep->cap_msel = cap;
	}
	memmove(ep->msel + at + 1, ep->msel + at, (ep->n_msel - at) * sizeof(*ep->msel));
	ep->msel[at] = s;
	ep->n_msel++;
	return 0;
}

static void msel_del(struct cep *ep, const struct csel *s)
{
	bool found;
	unsigned at = msel_pos(ep, s, &found);

	if (!found)
		return;
	memmove(ep->msel + at, ep->msel + at + 1, (ep->n_msel - at - 1) * sizeof(*ep->msel));
	ep->n_msel--;
}

/* ------------------------------------------------------------------------------------------ */
/* Selectors and their sets                                                                    */

static struct csel *sel_get(struct policy_compiler *c, const char *uid, const char *canonical)
{
	struct csel *s = tree_get(&c->sels, uid);
	char err[128];

	if (s != NULL)
		return s;
	s = calloc(1, sizeof(*s));
	if (s == NULL || (s->uid = strdup(uid)) == NULL)
		goto err;
	ptrtab_init(&s->members, 0);
	ptrtab_init(&s->addrs, sizeof(struct ipam_addr)); /* caddr starts with its address */
	/* The model's selector dies with its policy; the set lives on, so it has its own copy. */
	if (policy_selector_parse(canonical, &s->sel, NULL, err, sizeof(err)) != 0)
		goto err;
	snprintf(s->name[0], sizeof(s->name[0]), "s4-%.16s", uid + 2);
	snprintf(s->name[1], sizeof(s->name[1]), "s6-%.16s", uid + 2);
	s->fresh = true;
	s->idx = c->selv.n;
	if (vec_push(&c->selv, s) != 0)
		goto err;
	if (tsearch(s, &c->sels, name_cmp) == NULL) {
		c->selv.n--;
		goto err;
	}
	if (touch_sel(c, s) != 0)
		return NULL; /* it is in the tree: freed with the state */
	return s;
err:
	if (s != NULL) {
		policy_selector_free(s->sel);
		free(s->uid);
	}
	free(s);
	return NULL;
}

/* Add delta to the count of each of an endpoint's addresses in s. */
static int sel_addrs(struct policy_compiler *c, struct csel *s, const struct ipam_addr *a,
                     unsigned n, int delta)
{
	for (unsigned i = 0; i < n; i++) {
		struct caddr *ca = ptrtab_get(&s->addrs, &a[i]);
		if (ca == NULL) {
			ca = calloc(1, sizeof(*ca));
			if (ca == NULL)
				return -ENOMEM;
			ca->a = a[i];
			if (ptrtab_add(&s->addrs, ca) != 0) {
				free(ca);
				return -ENOMEM;
			}
		}
		bool had = ca->count > 0;
		unsigned *live = &s->live[a[i].family == 4 ? 0 : 1];
		ca->count += (unsigned)delta;
		if (had && ca->count == 0)
			(*live)--;
		else if (!had && ca->count > 0)
			(*live)++;
		if (!ca->dirty) {
			if (vec_push(&s->dirty, ca) != 0)
				return -ENOMEM;
			ca->dirty = true;
		}
	}
	return n > 0 ? touch_sel(c, s) : 0;
}

static bool addrs_equal(const struct ipam_addr *a, unsigned na, const struct ipam_addr *b,
                        unsigned nb)
{
	return na == nb && (na == 0 || memcmp(a, b, na * sizeof(*a)) == 0);
}

/* Make ep a member of s: in s's members and in ep's list of selectors, both or neither. */
static int sel_join(struct csel *s, struct cep *ep)
{
	if (ptrtab_get(&s->members, ep) == NULL && ptrtab_add(&s->members, ep) != 0)
		return -ENOMEM;
	if (msel_add(ep, s) != 0) {
		ptrtab_del(&s->members, ep);
		return -ENOMEM;
	}
	return 0;
}

/* Bring s's membership of ep up to date: mep is the model's endpoint (NULL when gone) and l its
 * labels (not read when mep is NULL). */
static int sel_update_member(struct policy_compiler *c, struct csel *s, struct cep *ep,
                             const struct policy_endpoint *mep, struct policy_ep_labels *l)
{
	bool was = msel_has(ep, s);
	bool now = mep != NULL && policy_ep_labels_match(l, s->sel);
	int rv;

	if (was && now && addrs_equal(ep->addrs, ep->n_addrs, mep->addrs, mep->n_addrs))
		return 0;
	if (was && (rv = sel_addrs(c, s, ep->addrs, ep->n_addrs, -1)) != 0)
		return rv;
	if (now && (rv = sel_addrs(c, s, mep->addrs, mep->n_addrs, 1)) != 0)
		return rv;
	if (was && !now) {
		ptrtab_del(&s->members, ep);
		msel_del(ep, s);
	}
	return !was && now ? sel_join(s, ep) : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Chains                                                                                      */

/* Make rules (stolen; NULL: the chain should not exist) and refs (stolen) what ch wants. The
 * new references are counted before the old ones are released, so a set both use stays. */
static int chain_set(struct policy_compiler *c, struct cchain *ch, json_t *rules, struct refs *refs)
{
	struct sref *old = ch->refs;
	unsigned n_old = ch->n_refs;
	int rv = 0;

	ch->refs = refs != NULL ? refs->v : NULL;
	ch->n_refs = refs != NULL ? refs->n : 0;
	json_decref(ch->want);
	ch->want = rules;
	for (unsigned i = 0; i < ch->n_refs && rv == 0; i++) {
		if (ch->refs[i].live)
			ch->refs[i].s->refs[ch->refs[i].fam]++;
		else
			ch->refs[i].s->deps++;
		rv = touch_sel(c, ch->refs[i].s);
	}
	for (unsigned i = 0; i < n_old && rv == 0; i++) {
		if (old[i].live)
			old[i].s->refs[old[i].fam]--;
		else
			old[i].s->deps--;
		rv = touch_sel(c, old[i].s);
	}
	free(old);
	return rv != 0 ? rv : touch_chain(c, ch);
}

static void chain_release(struct cchain *ch)
{
	free(ch->name);
	free(ch->refs);
	json_decref(ch->want);
	json_decref(ch->kernel);
	json_decref(ch->jump);
	json_decref(ch->cjump);
}

/* The rule "jump ch", made once. Endpoint chains are lists of these: a policy that starts or
 * stops applying to tens of endpoints re-renders their chains, and with the rules shared that
 * allocates no rule, and comparing the chain with what the kernel holds (json_equal) finds the
 * unchanged rules identical by address. Nothing may change a rule once made. */
static json_t *chain_jump(struct cchain *ch)
{
	if (ch->jump == NULL)
		ch->jump = json_pack("[o]", j_jump(ch->name));
	return ch->jump;
}

/* The rule "PASS not set: jump ch", made once, shared as chain_jump()'s. */
static json_t *chain_cjump(struct cchain *ch)
{
	if (ch->cjump == NULL)
		ch->cjump = json_pack("[o,o]", j_mark_is(MARK_PASS, 0), j_jump(ch->name));
	return ch->cjump;
}

/* Render a policy's or profile's rules of one direction into ch. */
static int chain_render_rules(struct policy_compiler *c, struct cchain *ch,
                              const struct policy_rules *rules)
{
	struct refs refs = {0};
	json_t *out = render_rules(c, &refs, rules);

	if (out == NULL || refs.oom) {
		json_decref(out);
		free(refs.v);
		return -ENOMEM;
	}
	return chain_set(c, ch, out, &refs);
}

/* ------------------------------------------------------------------------------------------ */
/* Policies, profiles, interfaces, endpoints                                                   */

/* A policy's or profile's name and its pair of chain names ("pi"/"po" or "pri"/"pro"); the
 * three are freed together by chains_fini(). Returns 0 or -ENOMEM (nothing left allocated). */
static int chains_init(char **namep, struct cchain chain[2], const char *name, const char *in,
                       const char *out)
{
	if ((*namep = strdup(name)) == NULL ||
	    (chain[DIR_IN].name = chain_name(in, name)) == NULL ||
	    (chain[DIR_OUT].name = chain_name(out, name)) == NULL) {
		free(chain[DIR_IN].name);
		chain[DIR_IN].name = NULL;
		free(*namep);
		*namep = NULL;
		return -ENOMEM;
	}
	return 0;
}

/* Name obj (whose first member is the name, the tree key), give it its two chains and insert it
 * into tree. On failure nothing of it stays (the caller frees obj itself). */
static int named_insert(void **tree, void *obj, char **namep, struct cchain chain[2],
                        const char *name, const char *in, const char *out)
{
	if (chains_init(namep, chain, name, in, out) != 0)
		return -ENOMEM;
	if (tsearch(obj, tree, name_cmp) == NULL) {
		free(chain[0].name);
		free(chain[1].name);
		free(*namep);
		return -ENOMEM;
	}
	return 0;
}

static struct cpol *pol_get(struct policy_compiler *c, const char *name)
{
	struct cpol *p = tree_get(&c->pols, name);

	if (p != NULL)
		return p;
	p = calloc(1, sizeof(*p));
	if (p != NULL && named_insert(&c->pols, p, &p->name, p->chain, name, "pi", "po") != 0) {
		free(p);
		p = NULL;
	}
	if (p != NULL)
		p->id = ++c->next_id;
	return p;
}

/* Record the model's policy (its order key and existence) in p. */
static void pol_sync(struct cpol *p, const struct policy_policy *mp)
{
	p->exists = mp != NULL;
	p->has_order = mp != NULL && mp->has_order;
	p->order = mp != NULL ? mp->order : 0;
	for (unsigned d = 0; d < 2; d++) {
		const struct policy_rules *r = mp == NULL    ? NULL
		                               : d == DIR_IN ? &mp->ingress
		                                             : &mp->egress;
		p->pass[d] = false;
		for (unsigned i = 0; r != NULL && i < r->n; i++)
			p->pass[d] = p->pass[d] || r->v[i].action == POLICY_ACTION_PASS;
	}
}

/* Evaluation order, as the model's (ordered first, ascending, then by name). */
static bool pol_before(const struct cpol *a, const struct cpol *b)
{
	if (a->has_order != b->has_order)
		return a->has_order;
	if (a->has_order && a->order != b->order)
		return a->order < b->order;
	return strcmp(a->name, b->name) < 0;
}

static int pol_use(struct policy_compiler *c, struct cpol *p, unsigned dir, int delta)
{
	bool was = p->users[dir] > 0;

	p->users[dir] += (unsigned)delta;
	return was != (p->users[dir] > 0) ? touch_pol(c, p) : 0;
}

static struct cprof *prof_get(struct policy_compiler *c, const char *name)
{
	struct cprof *p = tree_get(&c->profs, name);

	if (p != NULL)
		return p;
	p = calloc(1, sizeof(*p));
	if (p != NULL && named_insert(&c->profs, p, &p->name, p->chain, name, "pri", "pro") != 0) {
		free(p);
		p = NULL;
	}
	if (p != NULL)
		p->id = ++c->next_id;
	return p;
}

static int prof_use(struct policy_compiler *c, struct cprof *p, int delta)
{
	bool was = p->users > 0;

	p->users += (unsigned)delta;
	return was != (p->users > 0) ? touch_prof(c, p) : 0;
}

/* What of a profile other endpoints inherit (labels, then tags), as one string; NULL when the
 * model lacks it. Unit separators keep different label sets apart. */
static int prof_fingerprint(const struct policy_profile *mp, char **out)
{
	size_t len = 2;
	char *s, *w;

	*out = NULL;
	if (mp == NULL)
		return 0;
	for (unsigned i = 0; i < mp->labels.n; i++)
		len += strlen(mp->labels.v[i].key) + strlen(mp->labels.v[i].value) + 2;
	for (unsigned i = 0; i < mp->n_tags; i++)
		len += strlen(mp->tags[i]) + 1;
	s = w = malloc(len);
	if (s == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < mp->labels.n; i++)
		w += sprintf(w, "%s\x1f%s\x1e", mp->labels.v[i].key, mp->labels.v[i].value);
	*w++ = '\x1d';
	for (unsigned i = 0; i < mp->n_tags; i++)
		w += sprintf(w, "%s\x1e", mp->tags[i]);
	*w = '\0';
	*out = s;
	return 0;
}

/* Record the model's labels and tags of p; *changed (when not NULL) tells whether they differ
 * from what was recorded (always, when nothing was). */
static int prof_sync(struct cprof *p, const struct policy_model *m, bool *changed)
{
	char *fp;

	if (prof_fingerprint(policy_model_profile(m, p->name), &fp) != 0)
		return -ENOMEM;
	if (changed != NULL)
		*changed = !p->synced || (fp == NULL) != (p->fp == NULL) ||
		           (fp != NULL && strcmp(fp, p->fp) != 0);
	free(p->fp);
	p->fp = fp;
	p->synced = true;
	return 0;
}

static struct cif *if_get(struct policy_compiler *c, const char *name)
{
	struct cif *f = tree_get(&c->ifs, name);

	if (f != NULL)
		return f;
	f = calloc(1, sizeof(*f));
	if (f == NULL || (f->name = strdup(name)) == NULL ||
	    (f->chain[DIR_IN].name = chain_name("tw", name)) == NULL ||
	    (f->chain[DIR_OUT].name = chain_name("fw", name)) == NULL ||
	    tsearch(f, &c->ifs, name_cmp) == NULL)
		goto err;
	f->chain[0].rank = f->chain[1].rank = 1;
	return f;
err:
	if (f != NULL) {
		free(f->chain[0].name);
		free(f->chain[1].name);
		free(f->name);
	}
	free(f);
	return NULL;
}

static bool policy_applies(const struct policy_policy *mp, struct policy_ep_labels *l, unsigned dir)
{
	if (mp == NULL || mp->do_not_track || mp->pre_dnat)
		return false;
	if (!(dir == DIR_IN ? mp->ingress_type : mp->egress_type))
		return false;
	return policy_ep_labels_match(l, mp->selector);
}

/* Stop ep being local: release its policies, profiles and interface claim. */
static int ep_unlocal(struct policy_compiler *c, struct cep *ep)
{
	struct cif *f = ep->cif;
	int rv;

	if (f == NULL)
		return 0;
	for (unsigned d = 0; d < 2; d++) {
		for (unsigned i = 0; i < ep->n_pols[d]; i++)
			if ((rv = pol_use(c, ep->pols[d][i], d, -1)) != 0)
				return rv;
		free(ep->pols[d]);
		ep->pols[d] = NULL;
		ep->n_pols[d] = 0;
	}
	for (unsigned i = 0; i < ep->n_profs; i++)
		if ((rv = prof_use(c, ep->profs[i], -1)) != 0)
			return rv;
	free(ep->profs);
	ep->profs = NULL;
	ep->n_profs = 0;
	for (unsigned i = 0; i < f->claim.n; i++) {
		if (f->claim.v[i] == ep) {
			f->claim.v[i] = f->claim.v[--f->claim.n];
			break;
		}
	}
	ep->cif = NULL;
	struct cep *last = c->locals.v[--c->locals.n];
	last->lidx = ep->lidx;
	c->locals.v[ep->lidx] = last;
	return touch_if(c, f);
}

/* Recompute a local endpoint's policy and profile lists from the model. */
static int ep_local_lists(struct policy_compiler *c, const struct policy_model *m, struct cep *ep,
                          const struct policy_endpoint *mep, struct policy_ep_labels *l)
{
	unsigned np;
	struct policy_policy *const *pv = policy_model_policies(m, &np);
	struct cpol **lists[2] = {NULL, NULL};
	unsigned n[2] = {0, 0};
	struct cprof **profs = NULL;
	int rv = -ENOMEM;

	for (unsigned d = 0; d < 2; d++) {
		for (unsigned i = 0; i < np; i++) {
			struct cpol *p;
			if (!policy_applies(pv[i], l, d))
				continue;
			if (n[d] % 16 == 0) {
				struct cpol **nl = realloc(lists[d], (n[d] + 16) * sizeof(*nl));
				if (nl == NULL)
					goto err;
				lists[d] = nl;
			}
			if ((p = pol_get(c, pv[i]->name)) == NULL)
				goto err;
			pol_sync(p, pv[i]);
			lists[d][n[d]++] = p;
		}
	}
	if (mep->n_profiles > 0 && (profs = calloc(mep->n_profiles, sizeof(*profs))) == NULL)
		goto err;
	for (unsigned i = 0; i < mep->n_profiles; i++) {
		if ((profs[i] = prof_get(c, mep->profiles[i])) == NULL ||
		    (!profs[i]->synced && prof_sync(profs[i], m, NULL) != 0))
			goto err;
	}
	/* Count the new uses before releasing the old, so a chain in both lists stays. */
	for (unsigned d = 0; d < 2; d++)
		for (unsigned i = 0; i < n[d]; i++)
			if ((rv = pol_use(c, lists[d][i], d, 1)) != 0)
				goto err;
	for (unsigned i = 0; i < mep->n_profiles; i++)
		if ((rv = prof_use(c, profs[i], 1)) != 0)
			goto err;
	for (unsigned d = 0; d < 2; d++) {
		for (unsigned i = 0; i < ep->n_pols[d]; i++)
			if ((rv = pol_use(c, ep->pols[d][i], d, -1)) != 0)
				goto err;
		free(ep->pols[d]);
		ep->pols[d] = lists[d];
		ep->n_pols[d] = n[d];
		lists[d] = NULL;
	}
	for (unsigned i = 0; i < ep->n_profs; i++)
		if ((rv = prof_use(c, ep->profs[i], -1)) != 0)
			goto err;
	free(ep->profs);
	ep->profs = profs;
	ep->n_profs = mep->n_profiles;
	return touch_if(c, ep->cif);
err:
	free(lists[0]);
	free(lists[1]);
	free(profs);
	return rv;
}

/* Free ep; with unlink, take it out of the members of the selectors it belongs to
 * (normally it left them all in ep_update already; when the whole state goes, nothing needs
 * to be taken out of anything). */
static void ep_free(struct cep *ep, bool unlink)
{
	for (unsigned i = 0; unlink && i < ep->n_msel; i++)
		ptrtab_del(&ep->msel[i]->members, ep);
	free(ep->msel);
	label_refs_free(&ep->lrefs);
	free(ep->key);
	free(ep->addrs);
	free(ep->pols[0]);
	free(ep->pols[1]);
	free(ep->profs);
	free(ep);
}

/* Phase 2 for one endpoint: its set memberships, and when local its lists. */
static int ep_update(struct policy_compiler *c, const struct policy_model *m, enum policy_kind kind,
                     const char *key)
{
	const struct policy_endpoint *mep = policy_model_endpoint(m, kind, key);
	struct cep *ep = ep_find(c, kind, key);
	const char *iface = NULL;
	struct policy_ep_labels labels;
	int rv;

	if (mep == NULL && ep == NULL)
		return 0;
	if (ep == NULL) {
		ep = calloc(1, sizeof(*ep));
		if (ep == NULL || (ep->key = strdup(key)) == NULL) {
			free(ep);
			return -ENOMEM;
		}
		ep->kind = kind;
		ep->hash = ep_hash(kind, key);
		if (ep_tab_insert(c, ep) != 0) {
			ep_free(ep, false);
			return -ENOMEM;
		}
	}
	if (mep != NULL)
		policy_ep_labels_init(&labels, m, mep);
	for (unsigned i = 0; i < c->selv.n; i++) {
		struct csel *s = c->selv.v[i];
		if (!s->fresh &&
		    (rv = sel_update_member(c, s, ep, mep, mep != NULL ? &labels : NULL)) != 0)
			return rv;
	}
	if (mep != NULL && !addrs_equal(ep->addrs, ep->n_addrs, mep->addrs, mep->n_addrs)) {
		struct ipam_addr *a = NULL;
		if (mep->n_addrs > 0 && (a = malloc(mep->n_addrs * sizeof(*a))) == NULL)
			return -ENOMEM;
		if (a != NULL)
			memcpy(a, mep->addrs, mep->n_addrs * sizeof(*a));
		free(ep->addrs);
		ep->addrs = a;
		ep->n_addrs = mep->n_addrs;
	}
	if (mep != NULL && mep->kind == POLICY_KIND_WORKLOADENDPOINT && mep->interface != NULL &&
	    mep->node != NULL && strcmp(mep->node, c->node) == 0)
		iface = mep->interface;
	if (ep->cif != NULL && (iface == NULL || strcmp(ep->cif->name, iface) != 0) &&
	    (rv = ep_unlocal(c, ep)) != 0)
		return rv;
	if (iface != NULL) {
		if (ep->cif == NULL) {
			struct cif *f = if_get(c, iface);
			if (f == NULL || vec_push(&f->claim, ep) != 0)
				return -ENOMEM;
			ep->lidx = c->locals.n;
			if (vec_push(&c->locals, ep) != 0) {
				f->claim.n--;
				return -ENOMEM;
			}
			ep->cif = f;
		}
		if ((rv = ep_local_lists(c, m, ep, mep, &labels)) != 0)
			return rv;
	}
	if ((rv = label_index_set(c->labels, ep, &ep->lrefs, m, mep)) != 0)
		return rv;
	if (mep == NULL) {
		ep_tab_remove(c, ep);
		ep_free(ep, true);
	}
	return 0;
}

/* Phase 3, first half: take the policy out of every local endpoint's lists. */
static int pol_withdraw(struct policy_compiler *c, struct cpol *p)
{
	int rv;

	for (unsigned l = 0; l < c->locals.n; l++) {
		struct cep *ep = c->locals.v[l];
		for (unsigned d = 0; d < 2; d++) {
			for (unsigned i = 0; i < ep->n_pols[d]; i++) {
				if (ep->pols[d][i] != p)
					continue;
				memmove(&ep->pols[d][i], &ep->pols[d][i + 1],
				        (ep->n_pols[d] - i - 1) * sizeof(*ep->pols[d]));
				ep->n_pols[d]--;
				if ((rv = pol_use(c, p, d, -1)) != 0 ||
				    (rv = touch_if(c, ep->cif)) != 0)
					return rv;
				break;
			}
		}
	}
	return 0;
}

/* Phase 3, second half: put it back where it applies now, at its place in evaluation order. */
static int pol_insert(struct policy_compiler *c, const struct policy_model *m, struct cpol *p,
                      const struct policy_policy *mp)
{
	int rv;

	for (unsigned l = 0; l < c->locals.n && mp != NULL; l++) {
		struct cep *ep = c->locals.v[l];
		const struct policy_endpoint *mep = policy_model_endpoint(m, ep->kind, ep->key);
		struct policy_ep_labels labels;
		if (mep == NULL)
			continue;
		policy_ep_labels_init(&labels, m, mep);
		for (unsigned d = 0; d < 2; d++) {
			unsigned i = 0;
			struct cpol **nl;
			if (!policy_applies(mp, &labels, d))
				continue;
			nl = realloc(ep->pols[d], (ep->n_pols[d] + 1) * sizeof(*nl));
			if (nl == NULL)
				return -ENOMEM;
			ep->pols[d] = nl;
			while (i < ep->n_pols[d] && !pol_before(p, nl[i]))
				i++;
			memmove(&nl[i + 1], &nl[i], (ep->n_pols[d] - i) * sizeof(*nl));
			nl[i] = p;
			ep->n_pols[d]++;
			if ((rv = pol_use(c, p, d, 1)) != 0 || (rv = touch_if(c, ep->cif)) != 0)
				return rv;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Phase 4: rendering                                                                          */

static int render_pol(struct policy_compiler *c, const struct policy_model *m, struct cpol *p)
{
	const struct policy_policy *mp = policy_model_policy(m, p->name);
	int rv;

	for (unsigned d = 0; d < 2; d++) {
		bool want = mp != NULL && p->users[d] > 0;
		if (want && (p->changed || p->chain[d].want == NULL))
			rv = chain_render_rules(c, &p->chain[d],
			                        d == DIR_IN ? &mp->ingress : &mp->egress);
		else if (!want && p->chain[d].want != NULL)
			rv = chain_set(c, &p->chain[d], NULL, NULL);
		else
			rv = 0;
		if (rv != 0)
			return rv;
	}
	return 0;
}

static int render_prof(struct policy_compiler *c, const struct policy_model *m, struct cprof *p)
{
	const struct policy_profile *mp = policy_model_profile(m, p->name);
	int rv;

	for (unsigned d = 0; d < 2; d++) {
		bool want = mp != NULL && p->users > 0;
		if (want && (p->changed || p->chain[d].want == NULL))
			rv = chain_render_rules(c, &p->chain[d],
			                        d == DIR_IN ? &mp->ingress : &mp->egress);
		else if (!want && p->chain[d].want != NULL)
			rv = chain_set(c, &p->chain[d], NULL, NULL);
		else
			rv = 0;
		if (rv != 0)
			return rv;
	}
	return 0;
}

/* One endpoint chain (section 5.3):
 *
 *   policies apply, none can pass:  jump pX ... drop
 *   policies apply, some can pass:  clear PASS; jump pX up to the first that can pass; then
 *                                   "PASS not set: jump pX" for the rest; PASS not set: drop;
 *                                   the profiles; drop
 *   no policy applies:              the profiles; drop
 *
 * Once a policy applies and none passes, the verdict is deny and the profiles are never
 * reached, so they are left out; and the mark is cleared and tested only where a policy can set
 * it. Every commit that adds a rule has the kernel walk each rule reachable from the hooks
 * (its loop check): the PASS tests that every policy chain opened with and the clear, pass test
 * and profile jumps of every endpoint chain were a fifth of the rules it walked, in a ruleset
 * whose policies never pass. */
static json_t *render_endpoint(struct policy_compiler *c, const struct policy_model *m,
                               const struct cep *ep, unsigned d)
{
	json_t *rules = json_array();
	bool oom = rules == NULL;
	unsigned first_pass = ep->n_pols[d];

	if (c->r_clear == NULL)
		c->r_clear = json_pack("[o]", j_mark_set(MARK_PASS, true));
	if (c->r_passdrop == NULL)
		c->r_passdrop = json_pack("[o,o]", j_mark_is(MARK_PASS, 0), j_verdict("drop"));
	if (c->r_drop == NULL)
		c->r_drop = json_pack("[o]", j_verdict("drop"));
	if (oom || c->r_clear == NULL || c->r_passdrop == NULL || c->r_drop == NULL) {
		json_decref(rules);
		return NULL;
	}
	for (unsigned i = 0; i < ep->n_pols[d] && first_pass == ep->n_pols[d]; i++)
		if (ep->pols[d][i]->pass[d])
			first_pass = i;
	bool can_pass = first_pass < ep->n_pols[d];
	bool profiles = ep->n_pols[d] == 0 || can_pass; /* reachable */
	/* json_array_append() takes a reference: the rules stay shared */
	if (can_pass)
		oom = json_array_append(rules, c->r_clear) != 0;
	for (unsigned i = 0; i < ep->n_pols[d] && !oom; i++) {
		struct cchain *ch = &ep->pols[d][i]->chain[d];
		json_t *r = i <= first_pass ? chain_jump(ch) : chain_cjump(ch);
		oom = r == NULL || json_array_append(rules, r) != 0;
	}
	if (can_pass && !oom)
		oom = json_array_append(rules, c->r_passdrop) != 0;
	for (unsigned i = 0; i < ep->n_profs && !oom && profiles; i++) {
		if (policy_model_profile(m, ep->profs[i]->name) == NULL)
			continue; /* matches nothing */
		json_t *r = chain_jump(&ep->profs[i]->chain[d]);
		oom = r == NULL || json_array_append(rules, r) != 0;
	}
	if (!oom)
		oom = json_array_append(rules, c->r_drop) != 0;
	if (oom) {
		json_decref(rules);
		return NULL;
	}
	return rules;
}

/* What an endpoint chain renders from (render_endpoint): the owner's policies of direction d and
 * its profiles, each profile with whether the model has it; [0] for no owner. Into *out
 * (malloc'd, *n entries), or -ENOMEM. */
static int drawn_from(const struct policy_model *m, const struct cep *owner, unsigned d,
                      uint64_t **out, unsigned *n)
{
	unsigned k = owner != NULL ? 1 + owner->n_pols[d] + owner->n_profs : 1;
	uint64_t *v = malloc(k * sizeof(*v));

	if (v == NULL)
		return -ENOMEM;
	v[0] = owner != NULL ? 1 + (uint64_t)owner->n_pols[d] : 0;
	for (unsigned i = 0; owner != NULL && i < owner->n_pols[d]; i++)
		v[1 + i] = owner->pols[d][i]->id * 2 + owner->pols[d][i]->pass[d];
	for (unsigned i = 0; owner != NULL && i < owner->n_profs; i++)
		v[1 + owner->n_pols[d] + i] =
		    owner->profs[i]->id * 2 +
		    (policy_model_profile(m, owner->profs[i]->name) != NULL);
	*out = v;
	*n = k;
	return 0;
}

/* An interface's two endpoint chains. A changed policy touches every local endpoint it applied
 * to or applies to now, and most of those keep the lists they had (its rules changed, not its
 * selector): a chain whose inputs are the ones it was last rendered from is left alone, which
 * spares building, comparing and freeing the JSON of a few hundred rules per change. */
static int render_if(struct policy_compiler *c, const struct policy_model *m, struct cif *f)
{
	struct cep *owner = NULL;
	int rv;

	for (unsigned i = 0; i < f->claim.n; i++)
		if (owner == NULL || cep_cmp(f->claim.v[i], owner) < 0)
			owner = f->claim.v[i];
	for (unsigned d = 0; d < 2; d++) {
		json_t *rules = NULL;
		struct refs none = {0};
		uint64_t *v;
		unsigned n;
		if ((rv = drawn_from(m, owner, d, &v, &n)) != 0)
			return rv;
		if (f->drawn[d].v != NULL && f->drawn[d].n == n &&
		    memcmp(f->drawn[d].v, v, n * sizeof(*v)) == 0) {
			free(v);
			continue;
		}
		if ((owner != NULL && (rules = render_endpoint(c, m, owner, d)) == NULL) ||
		    (rv = chain_set(c, &f->chain[d], rules, &none)) != 0) {
			free(v);
			return rv != 0 ? rv : -ENOMEM;
		}
		free(f->drawn[d].v);
		f->drawn[d].v = v;
		f->drawn[d].n = n;
	}
	return 0;
}

/* Phase 5: members of the selectors first used in this flush. A selector that requires a label
 * (policy_selector_requires) is evaluated against the endpoints filed under it, the fewest
 * among its required labels; the others in one pass over every endpoint. */
static int fresh_join(struct policy_compiler *c, struct csel *s, struct cep *ep)
{
	int rv = sel_join(s, ep);

	return rv != 0 ? rv : sel_addrs(c, s, ep->addrs, ep->n_addrs, 1);
}

/* Join s the candidates (of the label index) that match it. */
static int join_matching(struct policy_compiler *c, const struct policy_model *m, struct csel *s,
                         void *const *cand, unsigned n)
{
	/* joining does not file anything, so cand stays valid */
	for (unsigned i = 0; i < n; i++) {
		struct cep *ep = cand[i];
		const struct policy_endpoint *mep = policy_model_endpoint(m, ep->kind, ep->key);
		struct policy_ep_labels labels;
		int rv;
		if (mep == NULL)
			continue;
		policy_ep_labels_init(&labels, m, mep);
		if (policy_ep_labels_match(&labels, s->sel) && (rv = fresh_join(c, s, ep)) != 0)
			return rv;
	}
	return 0;
}

/* Evaluate s against the endpoints filed under its rarest required label: 1 when it has none
 * (or the index cannot say), 0 done, or an error. */
static int fill_indexed(struct policy_compiler *c, const struct policy_model *m, struct csel *s)
{
	const char *keys[8], *values[8];
	unsigned k = policy_selector_requires(s->sel, keys, values, 8), best = UINT_MAX;
	void *const *cand = NULL;
	const char *in_key;
	const char *const *in_values;
	unsigned n_in;

	/* "key in {...}", as conjunctions of tests bring it (from "app not in {...}"): the
	 * endpoints filed under each value; one endpoint has one value of key, so each is seen
	 * once. A failure after some have joined is an error, not a fall back to the scan, which
	 * would join them twice. */
	if (k == 0 && (n_in = policy_selector_in_values(s->sel, &in_key, &in_values)) > 0) {
		for (unsigned v = 0; v < n_in; v++) {
			unsigned n;
			int rv = label_index_get(c->labels, in_key, in_values[v], &cand, &n);
			if (rv == 0)
				rv = join_matching(c, m, s, cand, n);
			if (rv != 0)
				return rv < 0 ? rv : -ENOMEM;
		}
		return 0;
	}
	if (k == 0)
		return 1;
	for (unsigned i = 0; i < k; i++) {
		void *const *v;
		unsigned n;
		if (label_index_get(c->labels, keys[i], values[i], &v, &n) != 0)
			return 1;
		if (n < best) {
			best = n;
			cand = v;
		}
	}
	return join_matching(c, m, s, cand, best);
}

static int fill_fresh(struct policy_compiler *c, const struct policy_model *m)
{
	struct vec fresh = {0}, scan = {0};
	unsigned n;
	struct policy_endpoint *const *eps = policy_model_endpoints(m, &n);
	int rv = 0;

	for (unsigned i = 0; i < c->t_sels.n; i++) {
		struct csel *s = c->t_sels.v[i];
		if (!s->fresh || s->refs[0] + s->refs[1] + s->deps == 0)
			continue;
		if ((rv = vec_push(&fresh, s)) != 0 || (rv = fill_indexed(c, m, s)) < 0)
			goto out;
		if (rv == 1 && (rv = vec_push(&scan, s)) != 0) /* no required label: scanned */
			goto out;
	}
	for (unsigned e = 0; e < n && scan.n > 0; e++) {
		struct cep *ep = NULL;
		struct policy_ep_labels labels;
		policy_ep_labels_init(&labels, m, eps[e]);
		for (unsigned i = 0; i < scan.n; i++) {
			struct csel *s = scan.v[i];
			if (!policy_ep_labels_match(&labels, s->sel))
				continue;
			if (ep == NULL && (ep = ep_find(c, eps[e]->kind, eps[e]->key)) == NULL)
				break; /* not noted: it will be when it is */
			if ((rv = fresh_join(c, s, ep)) != 0)
				goto out;
		}
	}
	for (unsigned i = 0; i < fresh.n; i++)
		((struct csel *)fresh.v[i])->fresh = false;
out:
	free(fresh.v);
	free(scan.v);
	return rv;
}

/* Phase 6: rules left out for an empty set, or kept for one that has become empty. A selector
 * whose set of a family became empty or stopped being empty in this flush (its members changed,
 * or it was filled for the first time; a new selector's chains were rendered as if its sets had
 * members) has every policy and profile chain that names it rendered again. */
static bool chain_flipped(const struct cchain *ch)
{
	for (unsigned i = 0; ch->want != NULL && i < ch->n_refs; i++)
		if (ch->refs[i].s->flipped)
			return true;
	return false;
}

/* A walk of the policies' or the profiles' tree for those with a chain naming a flipped
 * selector; chains is where the pair of chains sits in the struct. */
struct flip_walk {
	size_t chains;
	struct vec v;
	bool oom;
};

static void flip_visit(const void *node, VISIT which, void *ctx)
{
	struct flip_walk *k = ctx;
	void *p = *(void *const *)node;
	const struct cchain *ch = (const struct cchain *)((const char *)p + k->chains);

	if ((which == postorder || which == leaf) &&
	    (chain_flipped(&ch[0]) || chain_flipped(&ch[1])) && vec_push(&k->v, p) != 0)
		k->oom = true;
}

/* Render the wanted ones of a policy's or profile's pair of chains again (in: ingress rules). */
static int rerender(struct policy_compiler *c, struct cchain ch[2], const struct policy_rules *in,
                    const struct policy_rules *out)
{
	int rv = 0;

	for (unsigned d = 0; d < 2 && rv == 0; d++)
		if (ch[d].want != NULL)
			rv = chain_render_rules(c, &ch[d], d == DIR_IN ? in : out);
	return rv;
}

static int settle_empty(struct policy_compiler *c, const struct policy_model *m)
{
	struct flip_walk pols = {offsetof(struct cpol, chain), {0}, false};
	struct flip_walk profs = {offsetof(struct cprof, chain), {0}, false};
	bool any = false;
	int rv = 0;

	for (unsigned i = 0; i < c->t_sels.n; i++) {
		struct csel *s = c->t_sels.v[i];
		for (unsigned f = 0; f < 2; f++) {
			bool empty = s->live[f] == 0;
			if (empty != s->empty[f]) {
				s->empty[f] = empty;
				s->flipped = any = true;
			}
		}
	}
	if (!any)
		return 0;
	twalk_r(c->pols, flip_visit, &pols);
	twalk_r(c->profs, flip_visit, &profs);
	if (pols.oom || profs.oom)
		rv = -ENOMEM;
	for (unsigned i = 0; i < pols.v.n && rv == 0; i++) {
		struct cpol *p = pols.v.v[i];
		const struct policy_policy *mp = policy_model_policy(m, p->name);
		if (mp != NULL)
			rv = rerender(c, p->chain, &mp->ingress, &mp->egress);
	}
	for (unsigned i = 0; i < profs.v.n && rv == 0; i++) {
		struct cprof *p = profs.v.v[i];
		const struct policy_profile *mp = policy_model_profile(m, p->name);
		if (mp != NULL)
			rv = rerender(c, p->chain, &mp->ingress, &mp->egress);
	}
	for (unsigned i = 0; i < c->t_sels.n; i++)
		((struct csel *)c->t_sels.v[i])->flipped = false;
	free(pols.v.v);
	free(profs.v.v);
	return rv;
}

/* ------------------------------------------------------------------------------------------ */
/* Emitting                                                                                    */

struct emit {
	struct policy_compiler *c;
	json_t *cmds;
	bool oom;
};

static void emit(struct emit *e, const char *verb, const char *what, json_t *obj)
{
	json_t *cmd;

	if (obj == NULL) {
		e->oom = true;
		return;
	}
	if (json_object_set_new(obj, "family", json_string("inet")) != 0 ||
	    json_object_set_new(obj, strcmp(what, "table") == 0 ? "name" : "table",
	                        json_string(e->c->table)) != 0) {
		json_decref(obj);
		e->oom = true;
		return;
	}
	cmd = json_pack("{s:{s:o}}", verb, what, obj);
	if (cmd == NULL || json_array_append_new(e->cmds, cmd) != 0)
		e->oom = true;
}

static json_t *named(const char *key, const char *name)
{
	return json_pack("{s:s}", key, name);
}

static void emit_rules(struct emit *e, const char *chain, json_t *rules)
{
	size_t i;
	json_t *expr;

	json_array_foreach (rules, i, expr) {
		emit(e, "add", "rule", json_pack("{s:s,s:O}", "chain", chain, "expr", expr));
	}
}

/*
 * A chain the kernel holds with other rules than wanted: its rules are edited in place when that
 * takes fewer rule messages than flushing it and adding every wanted rule again. The usual
 * change to an endpoint chain is one jump more or less among forty (a policy that starts or
 * stops applying to it): edited, that is one message per chain instead of a flush and forty
 * rules, for each of the tens of endpoint chains one policy change can touch.
 *
 * The edit keeps the longest common head and tail of the two rule lists and replaces what lies
 * between: "delete rule" at the head's length once per old rule there, then each new rule
 * "insert"ed before the first rule of the tail, or "add"ed (appended) when the tail is empty. An
 * index counts the rules the chain holds at that point of the batch, and the applier turns it
 * into the kernel's handle of that rule (agent/nftnl.c); an insert's index always names a rule
 * that was in the chain before the batch (one of the tail), never one the batch adds.
 */
static void emit_chain_change(struct emit *e, const struct cchain *ch)
{
	size_t nk = json_array_size(ch->kernel), nw = json_array_size(ch->want);
	size_t head = 0, tail = 0;

	while (head < nk && head < nw &&
	       json_equal(json_array_get(ch->kernel, head), json_array_get(ch->want, head)))
		head++;
	while (tail < nk - head && tail < nw - head &&
	       json_equal(json_array_get(ch->kernel, nk - 1 - tail),
	                  json_array_get(ch->want, nw - 1 - tail)))
		tail++;
	size_t dels = nk - head - tail, ins = nw - head - tail;
	if (dels + ins >= nw) {
		emit(e, "flush", "chain", named("name", ch->name));
		emit_rules(e, ch->name, ch->want);
		return;
	}
	for (size_t k = 0; k < dels; k++)
		emit(e, "delete", "rule",
		     json_pack("{s:s,s:I}", "chain", ch->name, "index", (json_int_t)head));
	for (size_t k = 0; k < ins; k++) {
		json_t *expr = json_array_get(ch->want, head + k);
		if (tail > 0)
			emit(e, "insert", "rule",
			     json_pack("{s:s,s:I,s:O}", "chain", ch->name, "index",
			               (json_int_t)(head + k), "expr", expr));
		else
			emit(e, "add", "rule",
			     json_pack("{s:s,s:O}", "chain", ch->name, "expr", expr));
	}
}

/* Sort v (struct caddr *, all of one family) by address: a byte at a time from the last, each
 * pass a stable counting sort. A new selector's set can hold thousands of addresses, and this
 * is a few passes over them where a comparison sort calls its comparator a dozen times each. */
static int caddr_radix_sort(struct vec *v, int family)
{
	unsigned nb = family == 4 ? 4 : 16;
	void **tmp;

	if (v->n < 2)
		return 0;
	if ((tmp = malloc(v->n * sizeof(*tmp))) == NULL)
		return -ENOMEM;
	for (unsigned byte = nb; byte-- > 0;) {
		unsigned count[257] = {0};
		for (unsigned i = 0; i < v->n; i++)
			count[((struct caddr *)v->v[i])->a.b[byte] + 1]++;
		for (unsigned k = 1; k < 257; k++)
			count[k] += count[k - 1];
		for (unsigned i = 0; i < v->n; i++)
			tmp[count[((struct caddr *)v->v[i])->a.b[byte]]++] = v->v[i];
		memcpy(v->v, tmp, v->n * sizeof(*tmp));
	}
	free(tmp);
	return 0;
}

/* The elements of one family of s (the addresses some member has), sorted. */
static int sel_elements(struct csel *s, int family, struct vec *out)
{
	out->n = 0;
	for (unsigned i = 0; i < s->addrs.cap; i++) {
		struct caddr *ca = s->addrs.slot[i];
		if (!ptrtab_live(ca) || ca->a.family != family || ca->count == 0)
			continue;
		if (vec_push(out, ca) != 0)
			return -ENOMEM;
	}
	return caddr_radix_sort(out, family);
}

static json_t *elem_array(struct vec *v)
{
	json_t *a = json_array();

	for (unsigned i = 0; a != NULL && i < v->n; i++) {
		if (json_array_append_new(a, j_addr(&((struct caddr *)v->v[i])->a)) != 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

/* "add set" for family fam of s, with the elements v (sorted, as sel_elements gives them). */
static void emit_set_elems(struct emit *e, struct csel *s, unsigned fam, struct vec *v)
{
	json_t *set = json_pack("{s:s,s:s}", "name", s->name[fam], "type",
	                        fam == 0 ? "ipv4_addr" : "ipv6_addr");

	if (set == NULL) {
		e->oom = true;
		return;
	}
	if (v->n > 0 && json_object_set_new(set, "elem", elem_array(v)) != 0)
		e->oom = true;
	emit(e, "add", "set", set);
}

static void emit_set_add(struct emit *e, struct csel *s, unsigned fam)
{
	struct vec v = {0};

	if (sel_elements(s, fam == 0 ? 4 : 6, &v) != 0)
		e->oom = true;
	else
		emit_set_elems(e, s, fam, &v);
	free(v.v);
}

/* A set of the full load, with its elements. */
struct full_set {
	struct csel *s;
	unsigned fam;
	struct vec v;
};

/* The order the full load makes the selectors' sets in: IPv4 first, then the larger first, then
 * by name. The kernel finds the set an element message names by walking the table's sets in the
 * order they were made, comparing names, and with a thousand sets that walk was a large part of
 * adding an endpoint (its address goes into some thirty sets). A new endpoint joins a set with a
 * chance that grows with the set's share of the cluster's endpoints, so the large sets go first;
 * and an IPv4-only cluster never updates an IPv6 set, so those go last. The verdict maps and the
 * interface set, touched at every local endpoint change, are made before all of them. */
static int full_set_order(const void *a, const void *b)
{
	const struct full_set *x = a, *y = b;

	if (x->fam != y->fam)
		return (int)x->fam - (int)y->fam;
	if (x->v.n != y->v.n)
		return x->v.n > y->v.n ? -1 : 1;
	return strcmp(x->s->uid, y->s->uid);
}

static int ptr_name_order(const void *a, const void *b)
{
	return strcmp(**(char **const *)a, **(char **const *)b);
}

static int caddr_ptr_order(const void *a, const void *b)
{
	return caddr_cmp(*(void *const *)a, *(void *const *)b);
}

static int chain_order(const void *a, const void *b)
{
	const struct cchain *x = *(struct cchain *const *)a, *y = *(struct cchain *const *)b;

	if (x->rank != y->rank)
		return (int)x->rank - (int)y->rank;
	return strcmp(x->name, y->name);
}

static void emit_if_elements(struct emit *e, const char *verb, struct cif *f)
{
	emit(e, verb, "element",
	     json_pack("{s:s,s:[[s,o]]}", "name", MAP_FROM, "elem", f->name,
	               j_jump(f->chain[DIR_OUT].name)));
	emit(e, verb, "element",
	     json_pack("{s:s,s:[[s,o]]}", "name", MAP_TO, "elem", f->name,
	               j_jump(f->chain[DIR_IN].name)));
	emit(e, verb, "element", json_pack("{s:s,s:[s]}", "name", SET_IFS, "elem", f->name));
}

static json_t *ct_rule(bool established)
{
	if (established)
		return json_pack("[o,o]",
		                 j_match("in", json_pack("{s:{s:s}}", "ct", "key", "state"),
		                         json_pack("[s,s]", "established", "related")),
		                 j_verdict("accept"));
	return json_pack(
	    "[o,o]",
	    j_match("in", json_pack("{s:{s:s}}", "ct", "key", "state"), json_string("invalid")),
	    j_verdict("drop"));
}

/* fe80::/10 and ff02::/16: link-local unicast and link-local multicast. */
static json_t *link_scope_set(void)
{
	struct ipam_cidr v[2];
	if (!ipam_cidr_parse("fe80::/10", &v[0], NULL, 0) ||
	    !ipam_cidr_parse("ff02::/16", &v[1], NULL, 0))
		return NULL;
	return j_cidr_set(v, 2);
}

/* The two base chains' rules (see the head of the file). */
static void emit_base_rules(struct emit *e)
{
	const char *P = e->c->prefix;
	char wild[64];
	json_t *r[9];
	unsigned n;

	snprintf(wild, sizeof(wild), "%s*", P);
	/* prerouting, then forward: the egress side of all a workload sends, the ingress side of
	 * what is forwarded to one; each in its own base chain, so that an allow in an egress
	 * policy can accept (which ends only that base chain) and the packet still meets the
	 * ingress side. */
	for (int side = 0; side < 2; side++) {
		const char *key = side == 0 ? "iifname" : "oifname";
		n = 0;
		r[n++] = json_pack("[o,o]", j_match("!=", j_meta(key), json_string(wild)),
		                   j_verdict("accept"));
		if (side == 0)
			/* MLD and neighbour discovery with the host, as Felix lets through (it
			 * exempts them only towards the host). Prerouting comes before routing, so
			 * the exemption names link-scope destinations, which the kernel never
			 * forwards: a global destination would carry these types off the host past
			 * an egress policy. Nothing else is exempt. */
			r[n++] = json_pack(
			    "[o,o,o,o]", j_match("==", j_meta("nfproto"), json_string("ipv6")),
			    j_match("==", j_payload("ip6", "daddr"), link_scope_set()),
			    j_match("==", j_payload("icmpv6", "type"),
			            json_pack("{s:[i,i,i,i,i,i]}", "set", 130, 131, 132, 133, 135,
			                      136)),
			    j_verdict("accept"));
		if (side == 0)
			/* A source the host does not route back through the interface it came in
			 * on: a workload spoofing another's address, which the selector sets of
			 * every host's ingress policies would take for that other endpoint (strict
			 * reverse path, as Felix's rpfilter rule; the kernel's rp_filter covers
			 * IPv4 only, and only after this hook). Before the conntrack accept, so a
			 * forged packet cannot ride on another endpoint's established flow. */
			r[n++] = json_pack("[o,o]",
			                   j_match("==",
			                           json_pack("{s:{s:s,s:[s,s]}}", "fib", "result",
			                                     "oif", "flags", "saddr", "iif"),
			                           json_false()),
			                   j_verdict("drop"));
		r[n++] = ct_rule(true);
		r[n++] = ct_rule(false);
		r[n++] = json_pack("[o,o]", j_match("!=", j_meta(key), j_setref(SET_IFS)),
		                   j_verdict("drop"));
		r[n++] = json_pack("[{s:{s:o,s:o}}]", "vmap", "key", j_meta(key), "data",
		                   j_setref(side == 0 ? MAP_FROM : MAP_TO));
		r[n++] = json_pack("[o]", j_verdict("accept"));
		for (unsigned i = 0; i < n; i++) {
			emit(e, "add", "rule",
			     json_pack("{s:s,s:o}", "chain", side == 0 ? "prerouting" : "forward",
			               "expr", r[i]));
		}
	}
}

struct collect_ifs {
	struct vec v;
	bool oom;
};

static void collect_if(const void *node, VISIT which, void *ctx)
{
	struct collect_ifs *k = ctx;
	struct cif *f = *(struct cif *const *)node;

	if ((which == postorder || which == leaf) && f->claim.n > 0 && vec_push(&k->v, f) != 0)
		k->oom = true;
}

/* The whole table, from the wanted state. */
static void emit_full(struct emit *e, struct vec *chains)
{
	struct policy_compiler *c = e->c;
	struct collect_ifs ifs = {{0}, false};
	json_t *from = json_array(), *to = json_array(), *names = json_array();

	emit(e, "add", "table", json_object());
	emit(e, "delete", "table", json_object());
	emit(e, "add", "table", json_object());
	/* The maps and the interface set first, empty: their elements jump to endpoint chains,
	 * added below once the chains exist. */
	emit(e, "add", "map",
	     json_pack("{s:s,s:s,s:s}", "name", MAP_FROM, "type", "ifname", "map", "verdict"));
	emit(e, "add", "map",
	     json_pack("{s:s,s:s,s:s}", "name", MAP_TO, "type", "ifname", "map", "verdict"));
	emit(e, "add", "set", json_pack("{s:s,s:s}", "name", SET_IFS, "type", "ifname"));
	{
		struct full_set *fs = calloc(2 * (size_t)c->selv.n + 1, sizeof(*fs));
		unsigned n = 0;
		if (fs == NULL)
			e->oom = true;
		for (unsigned i = 0; fs != NULL && i < c->selv.n; i++) {
			struct csel *s = c->selv.v[i];
			for (unsigned f = 0; f < 2; f++) {
				if (s->refs[f] == 0)
					continue;
				fs[n] = (struct full_set){s, f, {0}};
				if (sel_elements(s, f == 0 ? 4 : 6, &fs[n].v) != 0)
					e->oom = true;
				n++;
			}
		}
		if (fs != NULL)
			qsort(fs, n, sizeof(*fs), full_set_order);
		for (unsigned i = 0; i < n; i++) {
			emit_set_elems(e, fs[i].s, fs[i].fam, &fs[i].v);
			free(fs[i].v.v);
		}
		free(fs);
	}
	emit(e, "add", "chain",
	     json_pack("{s:s,s:s,s:s,s:i,s:s}", "name", "prerouting", "type", "filter", "hook",
	               "prerouting", "prio", 0, "policy", "accept"));
	emit(e, "add", "chain",
	     json_pack("{s:s,s:s,s:s,s:i,s:s}", "name", "forward", "type", "filter", "hook",
	               "forward", "prio", 0, "policy", "accept"));
	for (unsigned i = 0; i < chains->n; i++)
		emit(e, "add", "chain", named("name", ((struct cchain *)chains->v[i])->name));
	for (unsigned i = 0; i < chains->n; i++) {
		struct cchain *ch = chains->v[i];
		emit_rules(e, ch->name, ch->want);
	}
	twalk_r(c->ifs, collect_if, &ifs);
	if (ifs.oom || from == NULL || to == NULL || names == NULL)
		e->oom = true;
	for (unsigned i = 0; i < ifs.v.n && !e->oom; i++) {
		struct cif *f = ifs.v.v[i];
		if (json_array_append_new(
		        from, json_pack("[s,o]", f->name, j_jump(f->chain[DIR_OUT].name))) ||
		    json_array_append_new(
		        to, json_pack("[s,o]", f->name, j_jump(f->chain[DIR_IN].name))) ||
		    json_array_append_new(names, json_string(f->name)))
			e->oom = true;
	}
	free(ifs.v.v);
	if (json_array_size(names) > 0) {
		emit(e, "add", "element", json_pack("{s:s,s:O}", "name", MAP_FROM, "elem", from));
		emit(e, "add", "element", json_pack("{s:s,s:O}", "name", MAP_TO, "elem", to));
		emit(e, "add", "element", json_pack("{s:s,s:O}", "name", SET_IFS, "elem", names));
	}
	json_decref(from);
	json_decref(to);
	json_decref(names);
	emit_base_rules(e);
}

/* What changed since the last flush (see the head of the file for the order). */
static void emit_delta(struct emit *e, struct vec *chains)
{
	struct policy_compiler *c = e->c;
	struct vec sels = {0}, ifs = {0}, v = {0};

	for (unsigned i = 0; i < c->t_sels.n; i++)
		if (vec_push(&sels, c->t_sels.v[i]) != 0)
			e->oom = true;
	vec_sort(&sels, ptr_name_order);
	for (unsigned i = 0; i < c->t_ifs.n; i++)
		if (vec_push(&ifs, c->t_ifs.v[i]) != 0)
			e->oom = true;
	vec_sort(&ifs, ptr_name_order);

	/* New sets with their elements; element changes of the others. */
	for (unsigned i = 0; i < sels.n; i++) {
		struct csel *s = sels.v[i];
		for (unsigned f = 0; f < 2; f++) {
			if (sel_want(s, f) && !s->kernel[f])
				emit_set_add(e, s, f);
			if (!sel_want(s, f) || !s->kernel[f] || s->dirty.n == 0)
				continue;
			vec_sort(&s->dirty, caddr_ptr_order);
			for (int add = 1; add >= 0; add--) {
				v.n = 0;
				for (unsigned k = 0; k < s->dirty.n; k++) {
					struct caddr *ca = s->dirty.v[k];
					if (ca->a.family == (f == 0 ? 4 : 6) &&
					    ca->kernel != (ca->count > 0) &&
					    (ca->count > 0) == add && vec_push(&v, ca) != 0)
						e->oom = true;
				}
				if (v.n > 0)
					emit(e, add ? "add" : "delete", "element",
					     json_pack("{s:s,s:o}", "name", s->name[f], "elem",
					               elem_array(&v)));
			}
		}
	}
	/* New chains, then the rules of changed chains (policy and profile chains first). */
	for (unsigned i = 0; i < chains->n; i++) {
		struct cchain *ch = chains->v[i];
		if (ch->want != NULL && ch->kernel == NULL)
			emit(e, "add", "chain", named("name", ch->name));
	}
	for (unsigned i = 0; i < chains->n; i++) {
		struct cchain *ch = chains->v[i];
		if (ch->want == NULL || (ch->kernel != NULL && json_equal(ch->want, ch->kernel)))
			continue;
		if (ch->kernel != NULL)
			emit_chain_change(e, ch);
		else
			emit_rules(e, ch->name, ch->want);
	}
	/* Interfaces: dispatch elements. */
	for (int add = 0; add <= 1; add++) {
		for (unsigned i = 0; i < ifs.n; i++) {
			struct cif *f = ifs.v[i];
			bool want = f->claim.n > 0;
			if (want != f->kernel && want == add)
				emit_if_elements(e, add ? "add" : "delete", f);
		}
	}
	/* Chains no longer wanted: flushed first, so none still jumps to another, then deleted. */
	for (int del = 0; del <= 1; del++) {
		for (unsigned i = 0; i < chains->n; i++) {
			struct cchain *ch = chains->v[i];
			if (ch->want == NULL && ch->kernel != NULL)
				emit(e, del ? "delete" : "flush", "chain", named("name", ch->name));
		}
	}
	for (unsigned i = 0; i < sels.n; i++) {
		struct csel *s = sels.v[i];
		for (unsigned f = 0; f < 2; f++)
			if (!sel_want(s, f) && s->kernel[f])
				emit(e, "delete", "set", named("name", s->name[f]));
	}
	free(sels.v);
	free(ifs.v);
	free(v.v);
}

/* ------------------------------------------------------------------------------------------ */
/* Idle selectors                                                                              */

/*
 * A selector no rule uses any more keeps its sets in the kernel, and its members up to date, for
 * a while: a local endpoint that comes and goes (a task restarted on this host) makes the
 * policies that apply only to it active and inactive again, and a policy edited back and forth
 * names the same selectors again; without this each return would build the set afresh, the
 * slowest change there is (finding thousands of members, and the kernel taking about 2 us per
 * element of a new set). At most IDLE_MAX selectors, holding at most IDLE_ELEMS addresses in all,
 * are kept; the one idle longest goes first. The cost: each endpoint change is also checked against
 * them, and the kernel walks their sets when it looks one up by name.
 */
#define IDLE_MAX   POLICY_IDLE_SETS
#define IDLE_ELEMS POLICY_IDLE_ELEMS

static void idle_add(struct policy_compiler *c, struct csel *s)
{
	s->idle = true;
	s->idle_next = NULL;
	s->idle_prev = c->idle.tail;
	if (c->idle.tail != NULL)
		c->idle.tail->idle_next = s;
	else
		c->idle.head = s;
	c->idle.tail = s;
	c->idle.n++;
}

static void idle_del(struct policy_compiler *c, struct csel *s)
{
	if (s->idle_prev != NULL)
		s->idle_prev->idle_next = s->idle_next;
	else
		c->idle.head = s->idle_next;
	if (s->idle_next != NULL)
		s->idle_next->idle_prev = s->idle_prev;
	else
		c->idle.tail = s->idle_prev;
	s->idle_prev = s->idle_next = NULL;
	s->idle = false;
	c->idle.n--;
}

/* Before an incremental emit: selectors touched in this flush become idle when no rule uses
 * them and they have a set in the kernel, or stop being idle when a rule uses them again; then
 * the oldest idle ones go until the rest fit. A selector let go is touched, so that the emit
 * deletes its sets and the commit frees it. */
static int idle_update(struct policy_compiler *c)
{
	unsigned n = c->t_sels.n;
	unsigned long elems = 0;
	int rv;

	for (unsigned i = 0; i < n; i++) {
		struct csel *s = c->t_sels.v[i];
		bool unused = s->refs[0] + s->refs[1] + s->deps == 0;
		if (unused && !s->idle && !s->fresh &&
		    ((s->kernel[0] && s->live[0] > 0) || (s->kernel[1] && s->live[1] > 0)))
			idle_add(c, s);
		else if (!unused && s->idle)
			idle_del(c, s);
	}
	for (struct csel *s = c->idle.head; s != NULL; s = s->idle_next)
		elems += (unsigned long)s->live[0] + s->live[1];
	while (c->idle.head != NULL && (c->idle.n > IDLE_MAX || elems > IDLE_ELEMS)) {
		struct csel *s = c->idle.head;
		elems -= (unsigned long)s->live[0] + s->live[1];
		idle_del(c, s);
		if ((rv = touch_sel(c, s)) != 0)
			return rv;
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Committing: the kernel now holds what was wanted                                           */

static void pol_free(void *p)
{
	struct cpol *x = p;

	chain_release(&x->chain[0]);
	chain_release(&x->chain[1]);
	free(x->name);
	free(x);
}

static void prof_free(void *p)
{
	struct cprof *x = p;

	chain_release(&x->chain[0]);
	chain_release(&x->chain[1]);
	free(x->fp);
	free(x->name);
	free(x);
}

static void if_free(void *p)
{
	struct cif *x = p;

	chain_release(&x->chain[0]);
	chain_release(&x->chain[1]);
	free(x->drawn[0].v);
	free(x->drawn[1].v);
	free(x->claim.v);
	free(x->name);
	free(x);
}

/* Free s; with unlink, its member endpoints stop listing it. */
static void sel_destroy(struct csel *s, bool unlink)
{
	policy_selector_free(s->sel);
	for (unsigned i = 0; unlink && i < s->members.cap; i++)
		if (ptrtab_live(s->members.slot[i]))
			msel_del(s->members.slot[i], s);
	ptrtab_free(&s->members);
	for (unsigned i = 0; i < s->addrs.cap; i++)
		if (ptrtab_live(s->addrs.slot[i]))
			free(s->addrs.slot[i]);
	ptrtab_free(&s->addrs);
	free(s->dirty.v);
	free(s->uid);
	free(s);
}

static void sel_destroy_v(void *p)
{
	sel_destroy(p, false);
}

static void commit(struct policy_compiler *c)
{
	for (unsigned i = 0; i < c->t_chains.n; i++) {
		struct cchain *ch = c->t_chains.v[i];
		json_decref(ch->kernel);
		ch->kernel = json_incref(ch->want);
		ch->listed = false;
	}
	for (unsigned i = 0; i < c->t_sels.n; i++) {
		struct csel *s = c->t_sels.v[i];
		for (unsigned f = 0; f < 2; f++) {
			bool want = sel_want(s, f);
			if (want == s->kernel[f])
				continue;
			/* Created or deleted: every address of the family changes. */
			for (unsigned k = 0; k < s->addrs.cap; k++) {
				struct caddr *ca = s->addrs.slot[k];
				if (ptrtab_live(ca) && ca->a.family == (f == 0 ? 4 : 6))
					ca->kernel = want && ca->count > 0;
			}
			s->kernel[f] = want;
		}
		for (unsigned k = 0; k < s->dirty.n; k++) {
			struct caddr *ca = s->dirty.v[k];
			ca->dirty = false;
			ca->kernel = s->kernel[ca->a.family == 4 ? 0 : 1] && ca->count > 0;
			if (ca->count == 0) {
				ptrtab_del(&s->addrs, &ca->a);
				free(ca);
			}
		}
		s->dirty.n = 0;
		s->listed = false;
		if (s->refs[0] + s->refs[1] + s->deps == 0 && !s->idle) {
			struct csel *last = c->selv.v[--c->selv.n];
			last->idx = s->idx;
			c->selv.v[s->idx] = last;
			tdelete(s, &c->sels, name_cmp);
			sel_destroy(s, true);
		}
	}
	for (unsigned i = 0; i < c->t_ifs.n; i++) {
		struct cif *f = c->t_ifs.v[i];
		f->kernel = f->claim.n > 0;
		f->listed = false;
		if (!f->kernel && f->chain[0].kernel == NULL && f->chain[1].kernel == NULL) {
			tdelete(f, &c->ifs, name_cmp);
			if_free(f);
		}
	}
	for (unsigned i = 0; i < c->t_pols.n; i++) {
		struct cpol *p = c->t_pols.v[i];
		p->changed = false;
		p->listed = false;
		if (!p->exists && p->users[0] + p->users[1] == 0 && p->chain[0].kernel == NULL &&
		    p->chain[1].kernel == NULL) {
			tdelete(p, &c->pols, name_cmp);
			pol_free(p);
		}
	}
	for (unsigned i = 0; i < c->t_profs.n; i++) {
		struct cprof *p = c->t_profs.v[i];
		p->changed = false;
		p->listed = false;
		if (p->fp == NULL && p->users == 0 && p->chain[0].kernel == NULL &&
		    p->chain[1].kernel == NULL) {
			tdelete(p, &c->profs, name_cmp);
			prof_free(p);
		}
	}
	c->t_chains.n = c->t_sels.n = c->t_ifs.n = c->t_pols.n = c->t_profs.n = 0;
}

/* Forget everything but the configuration. */
static void state_clear(struct policy_compiler *c)
{
	tdestroy(c->notes, free);
	for (unsigned i = 0; i < c->ep_tab_cap; i++)
		if (c->ep_tab[i] != NULL)
			ep_free(c->ep_tab[i], false);
	free(c->ep_tab);
	c->ep_tab = NULL;
	c->ep_tab_n = c->ep_tab_cap = 0;
	label_index_clear(c->labels);
	tdestroy(c->sels, sel_destroy_v);
	tdestroy(c->pols, pol_free);
	tdestroy(c->profs, prof_free);
	tdestroy(c->ifs, if_free);
	c->notes = c->sels = c->pols = c->profs = c->ifs = NULL;
	free(c->selv.v);
	free(c->locals.v);
	free(c->t_sels.v);
	free(c->t_chains.v);
	free(c->t_pols.v);
	free(c->t_profs.v);
	free(c->t_ifs.v);
	memset(&c->selv, 0, sizeof(c->selv));
	memset(&c->locals, 0, sizeof(c->locals));
	memset(&c->t_sels, 0, sizeof(c->t_sels));
	memset(&c->t_chains, 0, sizeof(c->t_chains));
	memset(&c->t_pols, 0, sizeof(c->t_pols));
	memset(&c->t_profs, 0, sizeof(c->t_profs));
	memset(&c->t_ifs, 0, sizeof(c->t_ifs));
	memset(&c->idle, 0, sizeof(c->idle)); /* its selectors went with c->sels */
}

/* ------------------------------------------------------------------------------------------ */
/* The public functions                                                                        */

int policy_compiler_new(const struct policy_compile_config *cfg, struct policy_compiler **out)
{
	struct policy_compiler *c;

	*out = NULL;
	if (cfg == NULL || cfg->node == NULL)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	c->node = strdup(cfg->node);
	c->table = strdup(cfg->table != NULL ? cfg->table : "tabby");
	c->prefix = strdup(cfg->iface_prefix != NULL ? cfg->iface_prefix : "cali");
	c->log_prefix = strdup(cfg->log_prefix != NULL ? cfg->log_prefix : "calico-packet");
	c->full = true;
	c->labels = label_index_new();
	if (c->node == NULL || c->table == NULL || c->prefix == NULL || c->log_prefix == NULL ||
	    c->labels == NULL) {
		policy_compiler_free(c);
		return -ENOMEM;
	}
	*out = c;
	return 0;
}

void policy_compiler_free(struct policy_compiler *c)
{
	if (c == NULL)
		return;
	state_clear(c);
	label_index_free(c->labels);
	json_decref(c->r_clear);
	json_decref(c->r_passdrop);
	json_decref(c->r_drop);
	free(c->node);
	free(c->table);
	free(c->prefix);
	free(c->log_prefix);
	free(c);
}

void policy_compiler_note(struct policy_compiler *c, enum policy_kind kind, const char *key)
{
	char *s;
	void **node;

	if (c->full)
		return; /* everything is looked at anyway */
	if (kind != POLICY_KIND_POLICY && kind != POLICY_KIND_PROFILE &&
	    kind != POLICY_KIND_WORKLOADENDPOINT && kind != POLICY_KIND_HOSTENDPOINT)
		return; /* nodes and pools do not shape the ruleset */
	if (asprintf(&s, "%d:%s", (int)kind, key) < 0) {
		c->full = true; /* a note cannot be lost: start over */
		return;
	}
	node = tsearch(s, &c->notes, (int (*)(const void *, const void *))strcmp);
	if (node == NULL)
		c->full = true;
	if (node == NULL || *node != s)
		free(s);
}

void policy_compiler_reset(struct policy_compiler *c)
{
	c->full = true;
}

struct notes_ctx {
	struct vec v;
	bool oom;
};

static void collect_note(const void *node, VISIT which, void *ctx)
{
	struct notes_ctx *k = ctx;

	if ((which == postorder || which == leaf) && vec_push(&k->v, *(char *const *)node) != 0)
		k->oom = true;
}

/* Phases 1 to 5 (see the head of the file). */
static int update(struct policy_compiler *c, const struct policy_model *m, bool full)
{
	struct notes_ctx notes = {{0}, false};
	struct vec eps = {0}; /* endpoints phase 1 found: struct policy_endpoint * */
	unsigned n;
	int rv = -ENOMEM;

	if (!full) {
		twalk_r(c->notes, collect_note, &notes);
		if (notes.oom)
			goto out;
	}
	/* Phase 1: profiles. A change of what endpoints inherit makes them notes too. */
	for (unsigned i = 0; i < notes.v.n; i++) {
		const char *note = notes.v.v[i];
		const char *name = strchr(note, ':') + 1;
		struct cprof *p;
		bool changed;
		if (atoi(note) != POLICY_KIND_PROFILE)
			continue;
		if ((p = prof_get(c, name)) == NULL || prof_sync(p, m, &changed) != 0)
			goto out;
		p->changed = true;
		if ((rv = touch_prof(c, p)) != 0)
			goto out;
		rv = -ENOMEM;
		if (!changed)
			continue;
		struct policy_endpoint *const *ev = policy_model_endpoints(m, &n);
		for (unsigned e = 0; e < n; e++) {
			for (unsigned k = 0; k < ev[e]->n_profiles; k++) {
				if (strcmp(ev[e]->profiles[k], name) != 0)
					continue;
				if (vec_push(&eps, ev[e]) != 0)
					goto out;
				break;
			}
		}
	}
	/* Phase 2: endpoints. */
	if (full) {
		struct policy_endpoint *const *ev = policy_model_endpoints(m, &n);
		for (unsigned e = 0; e < n; e++) {
			if ((rv = ep_update(c, m, ev[e]->kind, ev[e]->key)) != 0)
				goto out;
			/* Profiles are recorded as endpoints name them. */
			for (unsigned k = 0; k < ev[e]->n_profiles; k++) {
				struct cprof *p = prof_get(c, ev[e]->profiles[k]);
				if (p == NULL || (!p->synced && prof_sync(p, m, NULL) != 0)) {
					rv = -ENOMEM;
					goto out;
				}
				p->changed = true;
				if ((rv = touch_prof(c, p)) != 0)
					goto out;
			}
		}
	} else {
		for (unsigned i = 0; i < eps.n; i++) {
			const struct policy_endpoint *mep = eps.v[i];
			if ((rv = ep_update(c, m, mep->kind, mep->key)) != 0)
				goto out;
		}
		for (unsigned i = 0; i < notes.v.n; i++) {
			const char *s = notes.v.v[i];
			int kind = atoi(s);
			if (kind != POLICY_KIND_WORKLOADENDPOINT &&
			    kind != POLICY_KIND_HOSTENDPOINT)
				continue;
			if ((rv = ep_update(c, m, (enum policy_kind)kind, strchr(s, ':') + 1)) != 0)
				goto out;
		}
	}
	/* Phase 3: policies. */
	if (full) {
		struct policy_policy *const *pv = policy_model_policies(m, &n);
		for (unsigned i = 0; i < n; i++) {
			struct cpol *p = tree_get(&c->pols, pv[i]->name);
			if (p == NULL)
				continue; /* applies to no local endpoint */
			pol_sync(p, pv[i]);
			p->changed = true;
			if ((rv = touch_pol(c, p)) != 0)
				goto out;
		}
	} else {
		for (int half = 0; half < 2; half++) {
			for (unsigned i = 0; i < notes.v.n; i++) {
				const char *s = notes.v.v[i];
				if (atoi(s) != POLICY_KIND_POLICY)
					continue;
				const char *name = strchr(s, ':') + 1;
				const struct policy_policy *mp = policy_model_policy(m, name);
				struct cpol *p = pol_get(c, name);
				rv = -ENOMEM;
				if (p == NULL)
					goto out;
				if (half == 0) {
					pol_sync(p, mp);
					p->changed = true;
					if ((rv = touch_pol(c, p)) != 0 ||
					    (rv = pol_withdraw(c, p)) != 0)
						goto out;
				} else if ((rv = pol_insert(c, m, p, mp)) != 0) {
					goto out;
				}
			}
		}
	}
	/* Phase 4: rendering. Profiles and policies first: endpoint chains name their chains. */
	for (unsigned i = 0; i < c->t_profs.n; i++)
		if ((rv = render_prof(c, m, c->t_profs.v[i])) != 0)
			goto out;
	for (unsigned i = 0; i < c->t_pols.n; i++)
		if ((rv = render_pol(c, m, c->t_pols.v[i])) != 0)
			goto out;
	for (unsigned i = 0; i < c->t_ifs.n; i++)
		if ((rv = render_if(c, m, c->t_ifs.v[i])) != 0)
			goto out;
	/* Phase 5: fresh selectors. */
	rv = fill_fresh(c, m);
	/* Phase 6: rules whose sets became empty or stopped being. */
	if (rv == 0)
		rv = settle_empty(c, m);
out:
	free(notes.v.v);
	free(eps.v);
	return rv;
}

/* The touched chains in emission order (in a full flush, every chain is touched). */
static int sorted_chains(struct policy_compiler *c, struct vec *out)
{
	for (unsigned i = 0; i < c->t_chains.n; i++)
		if (vec_push(out, c->t_chains.v[i]) != 0)
			return -ENOMEM;
	vec_sort(out, chain_order);
	return 0;
}

int policy_compiler_flush(struct policy_compiler *c, const struct policy_model *m, json_t **cmds)
{
	bool full = c->full;
	struct vec chains = {0};
	struct emit e = {c, NULL, false};
	int rv;

	*cmds = NULL;
	if (full)
		state_clear(c);
	if ((rv = update(c, m, full)) != 0)
		goto err;
	if ((rv = sorted_chains(c, &chains)) != 0)
		goto err;
	if (full) {
		/* A chain touched but not wanted (rendered, then released) is not emitted. */
		unsigned k = 0;
		for (unsigned i = 0; i < chains.n; i++)
			if (((struct cchain *)chains.v[i])->want != NULL)
				chains.v[k++] = chains.v[i];
		chains.n = k;
	}
	e.cmds = json_array();
	if (e.cmds == NULL) {
		rv = -ENOMEM;
		goto err;
	}
	if (!full && (rv = idle_update(c)) != 0)
		goto err;
	if (full)
		emit_full(&e, &chains);
	else
		emit_delta(&e, &chains);
	if (e.oom) {
		rv = -ENOMEM;
		goto err;
	}
	tdestroy(c->notes, free);
	c->notes = NULL;
	commit(c);
	c->full = false;
	free(chains.v);
	if (json_array_size(e.cmds) == 0) {
		json_decref(e.cmds);
		return 0;
	}
	*cmds = json_pack("{s:o}", "nftables", e.cmds);
	return *cmds != NULL ? 0 : -ENOMEM;
err:
	/* The state is partly updated: the next flush starts over from the model. */
	json_decref(e.cmds);
	free(chains.v);
	c->full = true;
	return rv;
}

int policy_compiler_ruleset(struct policy_compiler *c, const struct policy_model *m, json_t **cmds)
{
	struct policy_compile_config cfg = {c->node, c->table, c->prefix, c->log_prefix};
	struct policy_compiler *tmp;
	int rv;

	*cmds = NULL;
	if ((rv = policy_compiler_new(&cfg, &tmp)) != 0)
		return rv;
	rv = policy_compiler_flush(tmp, m, cmds);
	policy_compiler_free(tmp);
	return rv;
}
