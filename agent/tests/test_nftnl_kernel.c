/*
 * The applier's fast path (agent/nftnl.c) against libnftables, in a real kernel.
 *
 * One model, two compilers that differ only in their table ("fast" and "slow"), the same random
 * changes noted to both; each flush is applied with the fast path on for "fast" and off for
 * "slow". After every round both tables are listed through libnftables and must read the same,
 * handles and element order aside: whatever the fast path sends, nft reads back as what it would
 * have sent itself. The rounds must have taken the fast path many times and libnftables some
 * times (policies that change), or the test proves nothing and fails.
 *
 * A set made and filled in one batch (its elements named by the set's ID, over several messages)
 * reads back whole.
 *
 * Rules by position (policy.h) through both paths: handles learned by a dump, then from the
 * kernel's echoes of the fast path's own batches, after another writer's change by a dump again.
 *
 * Then the error path: a batch of plain commands the kernel refuses halfway (an element added,
 * then one deleted that is not there) fails as a whole, names the refused command, and leaves
 * the first element out. And a set replaced behind the fast path's back (another type, same
 * name) is not written with the type it remembered.
 *
 * Needs root; moves itself into a private network namespace. TABBY_NFTNL_SEED=N replays a run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <nftables/libnftables.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/nft.h"
#include "policy/policy.h"

#define NODE    "this-host"
#define ROUNDS  40
#define APPS    6
#define MAX_EPS 400

struct fx {
	uint64_t rng;
	struct policy_model *m;
	struct policy_compiler *c[2]; /* 0 fast, 1 slow */
	struct agent_nft *nft[2];
	struct nft_ctx *lister;
	unsigned next_ep;
	bool live[MAX_EPS];
	bool local[MAX_EPS];
	unsigned positional[2]; /* rules by position each table's batches had */
};

static unsigned rnd(struct fx *fx, unsigned n)
{
	fx->rng ^= fx->rng << 13;
	fx->rng ^= fx->rng >> 7;
	fx->rng ^= fx->rng << 17;
	return (unsigned)(fx->rng % n);
}

static void put(struct fx *fx, json_t *res)
{
	char err[512], key[POLICY_KEY_MAX];
	enum policy_kind kind = policy_resource_key(res, key, sizeof(key));

	if (policy_model_put(fx->m, res, err, sizeof(err)) != 0)
		fail_msg("policy_model_put: %s", err);
	for (int i = 0; i < 2; i++)
		policy_compiler_note(fx->c[i], kind, key);
	json_decref(res);
}

static void put_endpoint(struct fx *fx, unsigned n)
{
	char a4[32], a6[48], wl[32], ifc[32], app[16];

	snprintf(a4, sizeof(a4), "10.%u.%u.%u/32", 100 + n / 65536, (n / 256) % 256, n % 256);
	snprintf(a6, sizeof(a6), "fd00:99::%x/128", n + 1);
	snprintf(wl, sizeof(wl), "task-%u", n);
	snprintf(ifc, sizeof(ifc), "cali%07x", n);
	snprintf(app, sizeof(app), "app-%u", rnd(fx, APPS));
	fx->local[n] = n % 3 == 0;
	fx->live[n] = true;
	json_t *md = json_pack("{s:s,s:s,s:s,s:s,s:{s:s,s:s}}", "name", "eth0", "workload", wl,
	                       "orchestrator", "mesos", "node", fx->local[n] ? NODE : "other-host",
	                       "labels", "app", app, "tier", rnd(fx, 2) ? "web" : "db");
	json_t *spec = json_pack("{s:[s,s],s:[s],s:s}", "ipNetworks", a4, a6, "profiles", "net",
	                         "interfaceName", ifc);
	put(fx, json_pack("{s:s,s:s,s:o,s:o}", "apiVersion", "v1", "kind", "workloadEndpoint",
	                  "metadata", md, "spec", spec));
}

static void remove_endpoint(struct fx *fx, unsigned n)
{
	char key[POLICY_KEY_MAX];

	snprintf(key, sizeof(key), "%s/mesos/task-%u/eth0", fx->local[n] ? NODE : "other-host", n);
	assert_int_equal(policy_model_remove(fx->m, POLICY_KIND_WORKLOADENDPOINT, key), 0);
	for (int i = 0; i < 2; i++)
		policy_compiler_note(fx->c[i], POLICY_KIND_WORKLOADENDPOINT, key);
	fx->live[n] = false;
}

/* One ingress rule of a random shape: the shapes of the fast path's matches (ports, ranges,
 * nets and prefixes of every kind, negations, protocols) and some it leaves to libnftables (ICMP
 * types, log). */
static json_t *random_rule(struct fx *fx)
{
	char src[64];

	snprintf(src, sizeof(src), "tier == '%s'", rnd(fx, 2) ? "web" : "db");
	const char *action = rnd(fx, 3) ? "allow" : "deny";
	switch (rnd(fx, 14)) {
	case 0:
		return json_pack("{s:s,s:s,s:{s:s},s:{s:[i]}}", "action", action, "protocol", "tcp",
		                 "source", "selector", src, "destination", "ports",
		                 (int[]){80, 443, 6379}[rnd(fx, 3)]);
	case 1:
		return json_pack("{s:s,s:s,s:{s:s},s:{s:[i,i,s]}}", "action", action, "protocol",
		                 "tcp", "source", "selector", src, "destination", "ports", 443, 80,
		                 "8000:8100");
	case 2:
		return json_pack("{s:s,s:s,s:{s:[s]}}", "action", action, "protocol", "udp",
		                 "destination", "ports", rnd(fx, 2) ? "5000:5100" : "60000:65535");
	case 3:
		return json_pack("{s:s,s:{s:[s],s:s}}", "action", action, "source", "nets",
		                 "10.128.0.0/16", "selector", src);
	case 4:
		return json_pack("{s:s,s:{s:[s,s,s,s]}}", "action", action, "source", "nets",
		                 "10.0.0.0/9", "10.128.0.0/9", "192.168.1.0/24", "172.16.5.5/32");
	case 5: {
		bool v4 = rnd(fx, 2);
		return json_pack("{s:s,s:{s:[s,s]}}", "action", action, "destination", "notNets",
		                 v4 ? "10.16.0.0/12" : "fd00::/64",
		                 v4 ? "10.1.2.3/32" : "fd00:1::/48");
	}
	case 6:
		return json_pack("{s:s,s:{s:[s]}}", "action", action, "source", "nets",
		                 rnd(fx, 2) ? "0.0.0.0/0" : "10.16.0.0/12");
	case 7:
		return json_pack("{s:s,s:{s:[s,s,s]}}", "action", action, "source", "nets",
		                 "fd00::/63", "fd00:0:0:2::/64", "::1/128");
	case 8:
		return json_pack("{s:s,s:{s:[i,s]}}", "action", action, "destination", "notPorts",
		                 22, "1:10");
	case 9:
		return json_pack("{s:s,s:s,s:{s:[i]}}", "action", action, "notProtocol", "udp",
		                 "source", "ports", 53);
	case 10:
		return json_pack("{s:s,s:s,s:{s:s}}", "action", action, "protocol", "icmp",
		                 "source", "notSelector", src);
	case 11: /* libnftables: an ICMP type is a concatenation */
		return json_pack("{s:s,s:s,s:{s:i}}", "action", action, "protocol", "icmp", "icmp",
		                 "type", 8);
	case 12: /* libnftables: log */
		return json_pack("{s:s,s:s}", "action", "log", "protocol", "tcp");
	default:
		return json_pack("{s:s,s:i,s:{s:[s,i]}}", "action", action, "protocol", 132,
		                 "destination", "ports", "2000:2001", 2002);
	}
}

static void put_policy(struct fx *fx, unsigned i)
{
	char name[32], sel[64];

	snprintf(name, sizeof(name), "policy-%u", i);
	snprintf(sel, sizeof(sel), "app == 'app-%u'", i % APPS);
	json_t *ingress = json_array();
	for (unsigned k = 1 + rnd(fx, 3); k > 0; k--)
		json_array_append_new(ingress, random_rule(fx));
	json_t *spec = json_pack("{s:f,s:s,s:o,s:[{s:s}]}", "order", (double)(i * 10), "selector",
	                         sel, "ingress", ingress, "egress", "action", "allow");
	put(fx, json_pack("{s:s,s:s,s:{s:s},s:o}", "apiVersion", "v1", "kind", "policy", "metadata",
	                  "name", name, "spec", spec));
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Drop handles, name every table T, sort element lists: what must agree between the two. */
static void normalize(json_t *j)
{
	if (json_is_object(j)) {
		json_object_del(j, "handle");
		if (json_is_string(json_object_get(j, "table")))
			json_object_set_new(j, "table", json_string("T"));
		const char *k;
		json_t *v;
		json_object_foreach (j, k, v) {
			if (strcmp(k, "table") == 0 && json_is_object(v))
				json_object_set_new(v, "name", json_string("T"));
			normalize(v);
		}
		json_t *elem = json_object_get(j, "elem");
		if (json_is_array(elem)) {
			size_t n = json_array_size(elem);
			char **s = calloc(n ? n : 1, sizeof(*s));
			assert_non_null(s);
			for (size_t i = 0; i < n; i++)
				s[i] = json_dumps(json_array_get(elem, i),
				                  JSON_COMPACT | JSON_ENCODE_ANY);
			qsort(s, n, sizeof(*s), str_cmp);
			json_t *sorted = json_array();
			for (size_t i = 0; i < n; i++) {
				json_array_append_new(sorted, json_string(s[i]));
				free(s[i]);
			}
			free(s);
			json_object_set_new(j, "elem", sorted);
		}
	} else if (json_is_array(j)) {
		size_t i;
		json_t *v;
		json_array_foreach (j, i, v)
			normalize(v);
	}
}

static json_t *list_table(struct fx *fx, const char *table)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "list table inet %s", table);
	assert_int_equal(nft_run_cmd_from_buffer(fx->lister, cmd), 0);
	json_error_t jerr;
	json_t *j = json_loads(nft_ctx_get_output_buffer(fx->lister), 0, &jerr);
	assert_non_null(j);
	json_t *list = json_incref(json_object_get(j, "nftables"));
	json_decref(j);
	/* drop metainfo, normalize the rest */
	json_t *out = json_array();
	size_t i;
	json_t *v;
	json_array_foreach (list, i, v) {
		if (json_object_get(v, "metainfo") == NULL)
			json_array_append(out, v);
	}
	json_decref(list);
	normalize(out);
	return out;
}

/* Rules by position in a batch (policy.h): "delete rule" and "insert rule" with an index. */
static unsigned positional(const json_t *cmds)
{
	size_t i;
	json_t *cmd;
	unsigned n = 0;

	json_array_foreach (json_object_get(cmds, "nftables"), i, cmd) {
		n += json_object_get(json_object_get(json_object_get(cmd, "delete"), "rule"),
		                     "index") != NULL;
		n += json_object_get(json_object_get(json_object_get(cmd, "insert"), "rule"),
		                     "index") != NULL;
	}
	return n;
}

static void flush_both(struct fx *fx, const char *what)
{
	char err[2048];

	for (int i = 0; i < 2; i++) {
		json_t *cmds = NULL;
		assert_int_equal(policy_compiler_flush(fx->c[i], fx->m, &cmds), 0);
		if (cmds == NULL)
			continue;
		fx->positional[i] += positional(cmds);
		int rc = agent_nft_apply(fx->nft[i], cmds, err, sizeof(err));
		if (rc != 0)
			fail_msg("%s: %s path: %d %s", what, i ? "slow" : "fast", rc, err);
		json_decref(cmds);
	}
	json_t *a = list_table(fx, "fast"), *b = list_table(fx, "slow");
	if (!json_equal(a, b)) {
		char *sa = json_dumps(a, JSON_INDENT(1)), *sb = json_dumps(b, JSON_INDENT(1));
		fprintf(stderr, "fast:\n%s\nslow:\n%s\n", sa, sb);
		free(sa);
		free(sb);
		fail_msg("%s: the two tables differ", what);
	}
	json_decref(a);
	json_decref(b);
}

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	const char *s = getenv("TABBY_NFTNL_SEED");

	assert_non_null(fx);
	fx->rng =
	    s && *s ? strtoull(s, NULL, 0) : ((uint64_t)time(NULL) << 16) ^ (uint64_t)getpid();
	if (fx->rng == 0)
		fx->rng = 1;
	printf("TABBY_NFTNL_SEED=%" PRIu64 "\n", fx->rng);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;

	for (int i = 0; i < 2; i++) {
		agent_nft_free(fx->nft[i]);
		policy_compiler_free(fx->c[i]);
	}
	if (fx->lister)
		nft_ctx_free(fx->lister);
	policy_model_free(fx->m);
	free(fx);
	return 0;
}

/* One "add element inet t s { ADDR }" command, as the applier takes it. */
static json_t *add_elem_cmd(const char *addr)
{
	return json_pack("{s:[{s:{s:{s:s,s:s,s:s,s:[s]}}}]}", "nftables", "add", "element",
	                 "family", "inet", "table", "t", "name", "s", "elem", addr);
}

/* Table inet t with the plain set s of IPv4 addresses, through n. */
static void make_plain_set(struct agent_nft *n)
{
	char err[1024];
	json_t *cmds = json_pack("{s:[{s:{s:{s:s,s:s}}},{s:{s:{s:s,s:s,s:s,s:s}}}]}", "nftables",
	                         "add", "table", "family", "inet", "name", "t", "add", "set",
	                         "family", "inet", "table", "t", "name", "s", "type", "ipv4_addr");
	if (agent_nft_apply(n, cmds, err, sizeof(err)) != 0)
		fail_msg("making table t and set s: %s", err);
	json_decref(cmds);
}

/* n IPv4 addresses from 10.first.0.0 up, as JSON strings. */
static json_t *addresses(unsigned n, unsigned first)
{
	json_t *elems = json_array();
	char a[32];

	for (unsigned i = 0; i < n; i++) {
		snprintf(a, sizeof(a), "10.%u.%u.%u", first + (i >> 16), (i >> 8) & 255, i & 255);
		json_array_append_new(elems, json_string(a));
	}
	return elems;
}

/* Apply cmds (consumed) through n: its answer, and in *fast and *slow how many batches went
 * through the fast path and through libnftables for it. */
static int apply_counted(struct agent_nft *n, json_t *cmds, char *err, size_t errlen,
                         unsigned long *fast, unsigned long *slow)
{
	unsigned long f0, s0, f1, s1;

	agent_nft_counts(n, &f0, &s0);
	int rc = agent_nft_apply(n, cmds, err, errlen);
	agent_nft_counts(n, &f1, &s1);
	json_decref(cmds);
	*fast = f1 - f0;
	*slow = s1 - s0;
	return rc;
}

/* A libnftables context of its own whose output and errors are read back as text. */
static struct nft_ctx *text_ctx(void)
{
	struct nft_ctx *l = nft_ctx_new(NFT_CTX_DEFAULT);

	assert_non_null(l);
	assert_int_equal(nft_ctx_buffer_output(l), 0);
	assert_int_equal(nft_ctx_buffer_error(l), 0);
	return l;
}

static bool enter_private_netns(void)
{
	if (geteuid() != 0) {
		printf("test_nftnl_kernel needs root (a network namespace, nftables): skipped\n");
		return false;
	}
	if (unshare(CLONE_NEWNET) != 0)
		fail_msg("unshare(CLONE_NEWNET): %s", strerror(errno));
	return true;
}

static void test_same_tables(void **state)
{
	struct fx *fx = *state;
	static const char *const tables[2] = {"fast", "slow"};
	unsigned long fast, slow, f2, s2;

	if (!enter_private_netns())
		skip();
	fx->m = policy_model_new();
	assert_non_null(fx->m);
	for (int i = 0; i < 2; i++) {
		struct policy_compile_config cfg = {.node = NODE, .table = tables[i]};
		assert_int_equal(policy_compiler_new(&cfg, &fx->c[i]), 0);
		assert_int_equal(agent_nft_new(&fx->nft[i]), 0);
	}
	agent_nft_use_fast_path(fx->nft[1], false);
	fx->lister = nft_ctx_new(NFT_CTX_DEFAULT);
	assert_non_null(fx->lister);
	nft_ctx_output_set_flags(fx->lister, NFT_CTX_OUTPUT_JSON);
	assert_int_equal(nft_ctx_buffer_output(fx->lister), 0);
	assert_int_equal(nft_ctx_buffer_error(fx->lister), 0);

	put(fx, json_pack("{s:s,s:s,s:{s:s,s:{s:s}},s:{s:[{s:s,s:{s:s}}],s:[{s:s}]}}", "apiVersion",
	                  "v1", "kind", "profile", "metadata", "name", "net", "labels", "network",
	                  "net", "spec", "ingress", "action", "allow", "source", "tag", "net",
	                  "egress", "action", "allow"));
	for (unsigned i = 0; i < 60; i++)
		put_endpoint(fx, fx->next_ep++);
	for (unsigned i = 0; i < 8; i++)
		put_policy(fx, i);
	flush_both(fx, "full ruleset");

	for (unsigned r = 0; r < ROUNDS; r++) {
		char what[32];
		snprintf(what, sizeof(what), "round %u", r);
		unsigned k = rnd(fx, 10);
		if (k < 4 && fx->next_ep < MAX_EPS) {
			put_endpoint(fx, fx->next_ep++); /* local or remote */
		} else if (k < 7) {
			unsigned n = rnd(fx, fx->next_ep);
			if (fx->live[n])
				remove_endpoint(fx, n);
			else
				put_endpoint(fx, n);
		} else if (k < 9) {
			unsigned n = rnd(fx, fx->next_ep);
			if (fx->live[n])
				put_endpoint(fx, n); /* new labels, same addresses */
		} else {
			put_policy(fx, rnd(fx, 10)); /* changed or new */
		}
		flush_both(fx, what);
	}
	/* A policy whose rules name a selector no set exists for yet: its batch (a new set, a
	 * policy chain's rules) goes whole through libnftnl. With an ICMP type among its rules
	 * (libnftables' only), the batch is split: the set first through libnftnl. Then their
	 * removal, which deletes the set again. */
	unsigned long splits = agent_nft_splits(fx->nft[0]), fast0, slow0, fast1, slow1;
	agent_nft_counts(fx->nft[0], &fast0, &slow0);
	put(fx, json_pack("{s:s,s:s,s:{s:s},s:{s:f,s:s,s:[{s:s,s:s,s:{s:s},s:{s:[i]}}]}}",
	                  "apiVersion", "v1", "kind", "policy", "metadata", "name", "fresh", "spec",
	                  "order", 5.0, "selector", "all()", "ingress", "action", "allow",
	                  "protocol", "udp", "source", "selector", "app == 'app-0' && tier == 'db'",
	                  "destination", "ports", 53));
	flush_both(fx, "a policy with a new selector");
	agent_nft_counts(fx->nft[0], &fast1, &slow1);
	assert_int_equal(fast1, fast0 + 1);
	assert_int_equal(slow1, slow0);
	put(fx,
	    json_pack("{s:s,s:s,s:{s:s},s:{s:f,s:s,s:[{s:s,s:s,s:{s:s},s:{s:i}}]}}", "apiVersion",
	              "v1", "kind", "policy", "metadata", "name", "fresh-icmp", "spec", "order",
	              6.0, "selector", "all()", "ingress", "action", "allow", "protocol", "icmp",
	              "source", "selector", "app == 'app-1' && tier == 'db'", "icmp", "type", 8));
	flush_both(fx, "a policy with a new selector and an ICMP type");
	assert_int_equal(agent_nft_splits(fx->nft[0]), splits + 1);
	assert_int_equal(policy_model_remove(fx->m, POLICY_KIND_POLICY, "fresh-icmp"), 0);
	for (int i = 0; i < 2; i++)
		policy_compiler_note(fx->c[i], POLICY_KIND_POLICY, "fresh-icmp");
	flush_both(fx, "that policy removed");
	assert_int_equal(policy_model_remove(fx->m, POLICY_KIND_POLICY, "fresh"), 0);
	for (int i = 0; i < 2; i++)
		policy_compiler_note(fx->c[i], POLICY_KIND_POLICY, "fresh");
	flush_both(fx, "that policy removed");
	assert_int_equal(agent_nft_splits(fx->nft[1]), 0);

	agent_nft_counts(fx->nft[0], &fast, &slow);
	agent_nft_counts(fx->nft[1], &f2, &s2);
	printf("fast table: %lu batches through libnftnl, %lu through libnftables; slow table: "
	       "%lu and %lu\n",
	       fast, slow, f2, s2);
	assert_int_equal(f2, 0);
	assert_true(fast >= ROUNDS / 4);
	assert_true(slow >= 2);
	/* and rules by position went through both paths (libnftables by handle) */
	printf("rules by position: %u in the fast table's batches, %u in the slow one's\n",
	       fx->positional[0], fx->positional[1]);
	assert_true(fx->positional[0] > 0);
	assert_true(fx->positional[1] > 0);
}

static void test_refused_batch(void **state)
{
	struct agent_nft *n;

	(void)state;
	char err[1024];

	if (!enter_private_netns())
		skip();
	assert_int_equal(agent_nft_new(&n), 0);
	make_plain_set(n);

	json_t *bad = json_pack("{s:[{s:{s:{s:s,s:s,s:s,s:[s]}}},{s:{s:{s:s,s:s,s:s,s:[s]}}}]}",
	                        "nftables", "add", "element", "family", "inet", "table", "t",
	                        "name", "s", "elem", "10.1.1.1", "delete", "element", "family",
	                        "inet", "table", "t", "name", "s", "elem", "10.2.2.2");
	unsigned long fast, slow;
	int rc = apply_counted(n, bad, err, sizeof(err), &fast, &slow);
	printf("refused: %d %s\n", rc, err);
	assert_int_equal(rc, -EIO);
	assert_int_equal(fast, 1); /* it was the fast path that refused */
	assert_non_null(strstr(err, "command 2"));
	assert_non_null(strstr(err, "10.2.2.2"));

	/* nothing took effect: the element of the first command is not there */
	struct nft_ctx *l = text_ctx();
	assert_int_equal(nft_run_cmd_from_buffer(l, "list set inet t s"), 0);
	const char *text = nft_ctx_get_output_buffer(l);
	assert_null(strstr(text, "10.1.1.1"));

	/* and the same element alone goes in */
	json_t *good = add_elem_cmd("10.1.1.1");
	assert_int_equal(agent_nft_apply(n, good, err, sizeof(err)), 0);
	json_decref(good);
	assert_int_equal(nft_run_cmd_from_buffer(l, "list set inet t s"), 0);
	assert_non_null(strstr(nft_ctx_get_output_buffer(l), "10.1.1.1"));
	nft_ctx_free(l);
	agent_nft_free(n);
}

/* Someone else replaces a set the fast path has seen with an interval set of the same name: the
 * generation check makes it forget the old type, and the element goes through libnftables as
 * an interval (a plain key in an interval set would match every address above it). */
static void test_foreign_change(void **state)
{
	struct agent_nft *n;
	char err[1024];
	unsigned long f0, s0, f1, s1;

	(void)state;
	if (!enter_private_netns())
		skip();
	assert_int_equal(agent_nft_new(&n), 0);
	struct nft_ctx *other = text_ctx();
	assert_int_equal(nft_run_cmd_from_buffer(other, "add table inet t; add set inet t s "
	                                                "{ type ipv4_addr; }"),
	                 0);
	json_t *add1 = add_elem_cmd("10.1.1.1");
	json_t *add2 = add_elem_cmd("10.2.2.2");
	agent_nft_counts(n, &f0, &s0);
	assert_int_equal(agent_nft_apply(n, add1, err, sizeof(err)), 0);
	agent_nft_counts(n, &f1, &s1);
	assert_int_equal(f1, f0 + 1); /* the fast path, which now knows s as a plain set */

	assert_int_equal(nft_run_cmd_from_buffer(other, "delete set inet t s; add set inet t s "
	                                                "{ type ipv4_addr; flags interval; }"),
	                 0);
	assert_int_equal(agent_nft_apply(n, add2, err, sizeof(err)), 0);
	agent_nft_counts(n, &f0, &s0);
	assert_int_equal(f0, f1);     /* not the fast path ... */
	assert_int_equal(s0, s1 + 1); /* ... but libnftables */
	assert_int_equal(nft_run_cmd_from_buffer(other, "list set inet t s"), 0);
	const char *text = nft_ctx_get_output_buffer(other);
	printf("%s", text);
	assert_non_null(strstr(text, "10.2.2.2"));
	assert_null(strstr(text, "10.2.2.2-"));
	json_decref(add1);
	json_decref(add2);
	nft_ctx_free(other);
	agent_nft_free(n);
}

/* A batch bigger than the fast path sends in one datagram goes to libnftables instead, whole. */
static void test_big_batch(void **state)
{
	struct agent_nft *n;
	char err[1024];
	enum { N = 300000 }; /* about 6 MB of element messages, over the 4 MiB bound */

	(void)state;
	if (!enter_private_netns())
		skip();
	assert_int_equal(agent_nft_new(&n), 0);
	make_plain_set(n);
	json_t *elems = addresses(N, 0);
	json_t *big = json_pack("{s:[{s:{s:{s:s,s:s,s:s,s:o}}}]}", "nftables", "add", "element",
	                        "family", "inet", "table", "t", "name", "s", "elem", elems);
	unsigned long fast, slow;
	int rc = apply_counted(n, big, err, sizeof(err), &fast, &slow);
	if (rc != 0)
		fail_msg("the big batch: %d %s", rc, err);
	assert_int_equal(fast, 0); /* not through the fast path */
	assert_int_equal(slow, 1); /* but through libnftables */

	struct nft_ctx *l = text_ctx();
	assert_int_equal(nft_run_cmd_from_buffer(l, "get element inet t s { 10.2.73.239 }"), 0);
	assert_non_null(strstr(nft_ctx_get_output_buffer(l), "10.2.73.239"));
	nft_ctx_free(l);
	agent_nft_free(n);
}

/* A set made and filled in one batch: its element messages (three of them, at most 1,024
 * elements each) name it by the ID it was made with, and an element for an older set in the same
 * batch names that one by name. All of it through the fast path; nft reads every element back. */
static void test_new_set_batch(void **state)
{
	struct agent_nft *n;
	char err[1024];
	enum { N = 3000 };

	(void)state;
	if (!enter_private_netns())
		skip();
	assert_int_equal(agent_nft_new(&n), 0);
	make_plain_set(n);
	json_t *elems = addresses(N, 100);
	json_t *cmds = json_pack("{s:[{s:{s:{s:s,s:s,s:s,s:s,s:o}}},{s:{s:{s:s,s:s,s:s,s:[s]}}}]}",
	                         "nftables", "add", "set", "family", "inet", "table", "t", "name",
	                         "big", "type", "ipv4_addr", "elem", elems, "add", "element",
	                         "family", "inet", "table", "t", "name", "s", "elem", "10.9.9.9");
	unsigned long fast, slow;
	int rc = apply_counted(n, cmds, err, sizeof(err), &fast, &slow);
	if (rc != 0)
		fail_msg("the batch: %d %s", rc, err);
	assert_int_equal(fast, 1); /* through the fast path */
	assert_int_equal(slow, 0);

	struct nft_ctx *l = text_ctx();
	nft_ctx_output_set_flags(l, NFT_CTX_OUTPUT_JSON);
	assert_int_equal(nft_run_cmd_from_buffer(l, "list set inet t big"), 0);
	json_t *got = json_loads(nft_ctx_get_output_buffer(l), 0, NULL);
	assert_non_null(got);
	json_t *set = NULL, *it;
	size_t i;
	json_array_foreach (json_object_get(got, "nftables"), i, it)
		if (json_object_get(it, "set") != NULL)
			set = json_object_get(it, "set");
	assert_non_null(set);
	assert_int_equal(json_array_size(json_object_get(set, "elem")), N);
	json_decref(got);
	nft_ctx_output_set_flags(l, 0);
	assert_int_equal(nft_run_cmd_from_buffer(l, "get element inet t s { 10.9.9.9 }"), 0);
	assert_non_null(strstr(nft_ctx_get_output_buffer(l), "10.9.9.9"));
	nft_ctx_free(l);
	agent_nft_free(n);
}

/* A rule of chain c: meta mark == mark accept, as the compiler writes it. */
static json_t *mark_rule(const char *verb, int index, unsigned mark)
{
	json_t *o = json_pack("{s:s,s:s,s:s,s:[{s:{s:s,s:{s:{s:s}},s:i}},{s:n}]}", "family", "inet",
	                      "table", "t", "chain", "c", "expr", "match", "op", "==", "left",
	                      "meta", "key", "mark", "right", mark, "accept");
	if (index >= 0)
		json_object_set_new(o, "index", json_integer(index));
	return json_pack("{s:{s:o}}", verb, "rule", o);
}

static json_t *delete_at(int index)
{
	return json_pack("{s:{s:{s:s,s:s,s:s,s:i}}}", "delete", "rule", "family", "inet", "table",
	                 "t", "chain", "c", "index", index);
}

/* The marks of chain c's rules, in order, as "1 2 3". */
static void chain_marks(struct nft_ctx *l, char *out, size_t len)
{
	const char *p;
	size_t o = 0;

	assert_int_equal(nft_run_cmd_from_buffer(l, "list chain inet t c"), 0);
	p = nft_ctx_get_output_buffer(l);
	out[0] = '\0';
	while ((p = strstr(p, "meta mark 0x")) != NULL) {
		unsigned long v = strtoul(p + strlen("meta mark 0x"), NULL, 16);
		o += (size_t)snprintf(out + o, len - o, "%s%lu", o ? " " : "", v);
		p++;
	}
}

static json_t *batch_of(json_t *a, json_t *b, json_t *c)
{
	json_t *list = json_array();

	json_array_append_new(list, a);
	if (b != NULL)
		json_array_append_new(list, b);
	if (c != NULL)
		json_array_append_new(list, c);
	return json_pack("{s:o}", "nftables", list);
}

/*
 * Rules by position, through both paths. The fast path learns chain c by a dump the first time
 * it needs a position in it, then follows it through its own batches by the handles the kernel
 * echoes: the second batch deletes the rule the first one inserted, by position, which only
 * the echoed handle can name. A position that names a rule the same batch adds is refused,
 * with nothing applied. libnftables takes the same commands by handle.
 */
static void test_rules_by_position(void **state)
{
	struct agent_nft *n;
	struct nft_ctx *l;
	char err[1024], marks[256];
	unsigned long fast, slow;

	(void)state;
	if (!enter_private_netns())
		skip();
	assert_int_equal(agent_nft_new(&n), 0);
	l = text_ctx();
	assert_int_equal(nft_run_cmd_from_buffer(l, "add table inet t; add chain inet t c; "
	                                            "add rule inet t c meta mark 1 accept; "
	                                            "add rule inet t c meta mark 2 accept; "
	                                            "add rule inet t c meta mark 3 accept; "
	                                            "add rule inet t c meta mark 4 accept"),
	                 0);

	/* delete 2, then insert 10 before 4 (index 2 of 1 3 4) */
	assert_int_equal(apply_counted(n, batch_of(delete_at(1), mark_rule("insert", 2, 10), NULL),
	                               err, sizeof(err), &fast, &slow),
	                 0);
	assert_int_equal(fast, 1);
	chain_marks(l, marks, sizeof(marks));
	assert_string_equal(marks, "1 3 10 4");

	/* the fast path's own batch told it 10's handle: delete it, insert 11 first, append 12 */
	assert_int_equal(apply_counted(n,
	                               batch_of(delete_at(2), mark_rule("insert", 0, 11),
	                                        mark_rule("add", -1, 12)),
	                               err, sizeof(err), &fast, &slow),
	                 0);
	assert_int_equal(fast, 1);
	chain_marks(l, marks, sizeof(marks));
	assert_string_equal(marks, "11 1 3 4 12");
	/* and 12's too: insert before it */
	assert_int_equal(apply_counted(n, batch_of(mark_rule("insert", 4, 13), NULL, NULL), err,
	                               sizeof(err), &fast, &slow),
	                 0);
	chain_marks(l, marks, sizeof(marks));
	assert_string_equal(marks, "11 1 3 4 13 12");

	/* a position naming a rule of the same batch: refused, nothing applied */
	int rc =
	    apply_counted(n, batch_of(mark_rule("add", -1, 14), mark_rule("insert", 6, 15), NULL),
	                  err, sizeof(err), &fast, &slow);
	printf("refused: %d %s\n", rc, err);
	assert_int_equal(rc, -EINVAL);
	assert_non_null(strstr(err, "command 2"));
	assert_non_null(strstr(err, "same batch"));
	rc = apply_counted(n, batch_of(delete_at(9), NULL, NULL), err, sizeof(err), &fast, &slow);
	printf("refused: %d %s\n", rc, err);
	assert_int_equal(rc, -EINVAL);
	assert_non_null(strstr(err, "no rule at index 9"));
	chain_marks(l, marks, sizeof(marks));
	assert_string_equal(marks, "11 1 3 4 13 12");

	/* someone else inserts a rule: the generation check makes the fast path dump c again */
	assert_int_equal(nft_run_cmd_from_buffer(l, "insert rule inet t c meta mark 20 accept"), 0);
	assert_int_equal(
	    apply_counted(n, batch_of(delete_at(1), NULL, NULL), err, sizeof(err), &fast, &slow),
	    0);
	chain_marks(l, marks, sizeof(marks));
	assert_string_equal(marks, "20 1 3 4 13 12");

	/* libnftables, by handle */
	agent_nft_use_fast_path(n, false);
	assert_int_equal(apply_counted(n,
	                               batch_of(delete_at(0), mark_rule("insert", 2, 21),
	                                        mark_rule("add", -1, 22)),
	                               err, sizeof(err), &fast, &slow),
	                 0);
	assert_int_equal(slow, 1);
	chain_marks(l, marks, sizeof(marks));
	assert_string_equal(marks, "1 3 21 4 13 12 22");
	rc = apply_counted(n, batch_of(mark_rule("add", -1, 23), mark_rule("insert", 7, 24), NULL),
	                   err, sizeof(err), &fast, &slow);
	assert_int_equal(rc, -EINVAL);
	chain_marks(l, marks, sizeof(marks));
	assert_string_equal(marks, "1 3 21 4 13 12 22");
	nft_ctx_free(l);
	agent_nft_free(n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_same_tables, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refused_batch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_foreign_change, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_big_batch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_new_set_batch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rules_by_position, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
