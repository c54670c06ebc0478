/*
 * The nftables compiler (policy_compiler_*): the structure of the full ruleset (base chains with
 * conntrack first, dispatch maps, endpoint chains, policy and profile chains, selector sets and
 * their members), the rendering of every rule field per family, incremental batches (a new
 * endpoint, a changed policy, a selector going out of use, a label change, nothing changed),
 * determinism, and that incremental batches applied in order give exactly the full ruleset.
 *
 * Batches are checked by applying them to a small simulator of the nft commands the compiler
 * uses, strict where the kernel is: a rule may only name sets and chains that exist, a chain or
 * set still referred to cannot be deleted, an element cannot be added twice or deleted when
 * absent. When run as root with nft installed, the batches are also loaded into the kernel in a
 * private network namespace.
 *
 * Resources are normalized JSON with ` for ".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "policy/policy.h"

#include "policy/tests/fixture.h"

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
	va_list ap;
	char *s;

	va_start(ap, f);
	assert_true(vasprintf(&s, f, ap) >= 0);
	va_end(ap);
	return s;
}

/* Put a resource and tell the compiler (c may be NULL). */
static void put(struct policy_model *m, struct policy_compiler *c, char *text)
{
	json_t *v = J(text);
	char err[512];
	char key[POLICY_KEY_MAX];
	int rv = policy_model_put(m, v, err, sizeof(err));
	enum policy_kind k;

	if (rv != 0)
		fail_msg("put failed (%d): %s\n%s", rv, err, text);
	k = policy_resource_key(v, key, sizeof(key));
	assert_int_not_equal(k, POLICY_KIND_NONE);
	if (c != NULL)
		policy_compiler_note(c, k, key);
	json_decref(v);
	free(text);
}

static void del(struct policy_model *m, struct policy_compiler *c, enum policy_kind k,
                const char *key)
{
	assert_int_equal(policy_model_remove(m, k, key), 0);
	if (c != NULL)
		policy_compiler_note(c, k, key);
}

static char *policy(const char *name, const char *order, const char *selector, const char *types,
                    const char *ingress, const char *egress)
{
	return fmt("{`apiVersion`:`v1`,`kind`:`policy`,`metadata`:{`name`:`%s`},`spec`:{%s%s%s"
	           "`selector`:`%s`,`types`:%s,`ingress`:%s,`egress`:%s,"
	           "`doNotTrack`:false,`preDNAT`:false}}",
	           name, order ? "`order`:" : "", order ? order : "", order ? "," : "", selector,
	           types, ingress, egress);
}

static char *wep(const char *node, const char *wl, const char *iface, const char *ips,
                 const char *labels, const char *profiles)
{
	return fmt("{`apiVersion`:`v1`,`kind`:`workloadEndpoint`,`metadata`:{`name`:`eth0`,"
	           "`workload`:`%s`,`orchestrator`:`mesos`,`node`:`%s`,`labels`:%s},`spec`:{"
	           "`ipNetworks`:%s,`profiles`:%s,`interfaceName`:`%s`}}",
	           wl, node, labels, ips, profiles, iface);
}

static char *hep(const char *node, const char *name, const char *ips, const char *labels)
{
	return fmt("{`apiVersion`:`v1`,`kind`:`hostEndpoint`,`metadata`:{`name`:`%s`,`node`:`%s`,"
	           "`labels`:%s},`spec`:{`expectedIPs`:%s}}",
	           name, node, labels, ips);
}

static char *profile(const char *name, const char *labels, const char *tags, const char *ingress,
                     const char *egress)
{
	return fmt("{`apiVersion`:`v1`,`kind`:`profile`,`metadata`:{`name`:`%s`,`labels`:%s,"
	           "`tags`:%s},`spec`:{`ingress`:%s,`egress`:%s}}",
	           name, labels, tags, ingress, egress);
}

/* ------------------------------------------------------------------------------------------ */
/* Reading a batch                                                                             */

static json_t *cmds_of(json_t *batch)
{
	json_t *a = json_object_get(batch, "nftables");

	assert_true(json_is_array(a));
	return a;
}

/* The object of a command "verb what" named name (NULL: any), or NULL; *index its position. */
static json_t *find(json_t *batch, const char *verb, const char *what, const char *name, int *index)
{
	size_t i;
	json_t *cmd;

	json_array_foreach (cmds_of(batch), i, cmd) {
		json_t *o = json_object_get(json_object_get(cmd, verb), what);
		const char *n;
		if (o == NULL)
			continue;
		n = json_string_value(json_object_get(o, "name"));
		if (name == NULL || (n != NULL && strcmp(n, name) == 0)) {
			if (index != NULL)
				*index = (int)i;
			return o;
		}
	}
	return NULL;
}

/* The first rule command "verb rule" on chain, or NULL; *index its position. */
static json_t *find_rule(json_t *batch, const char *verb, const char *chain, int *index)
{
	size_t i;
	json_t *cmd;

	json_array_foreach (cmds_of(batch), i, cmd) {
		json_t *o = json_object_get(json_object_get(cmd, verb), "rule");
		if (o != NULL &&
		    strcmp(json_string_value(json_object_get(o, "chain")), chain) == 0) {
			if (index != NULL)
				*index = (int)i;
			return o;
		}
	}
	return NULL;
}

static unsigned count(json_t *batch, const char *verb, const char *what)
{
	size_t i;
	json_t *cmd;
	unsigned n = 0;

	json_array_foreach (cmds_of(batch), i, cmd) {
		if (json_object_get(json_object_get(cmd, verb), what) != NULL)
			n++;
	}
	return n;
}

/* The rules added to chain in batch, each as compact JSON text of its expressions. */
struct rules {
	char *v[64];
	unsigned n;
};

static void rules_of(json_t *batch, const char *chain, struct rules *r)
{
	size_t i;
	json_t *cmd;

	r->n = 0;
	json_array_foreach (cmds_of(batch), i, cmd) {
		json_t *o = json_object_get(json_object_get(cmd, "add"), "rule");
		if (o == NULL || strcmp(json_string_value(json_object_get(o, "chain")), chain) != 0)
			continue;
		assert_true(r->n < 64);
		r->v[r->n++] = json_dumps(json_object_get(o, "expr"), JSON_COMPACT);
	}
}

static void rules_free(struct rules *r)
{
	for (unsigned i = 0; i < r->n; i++)
		free(r->v[i]);
	r->n = 0;
}

static void has(const char *text, const char *want)
{
	if (text == NULL)
		fail_msg("expected %s, found nothing", want);
	if (strstr(text, want) == NULL)
		fail_msg("expected %s in %s", want, text);
}

static void hasnt(const char *text, const char *want)
{
	assert_non_null(text);
	if (strstr(text, want) != NULL)
		fail_msg("did not expect %s in %s", want, text);
}

/* The elements of an "add set" or "add element" object as one text, sorted as emitted. */
static char *elems(json_t *o)
{
	json_t *e = json_object_get(o, "elem");

	return e != NULL ? json_dumps(e, JSON_COMPACT) : strdup("[]");
}

/* The set name of a selector's family. */
static void set_name(const char *selector, int family, char *out)
{
	struct policy_selector *s;
	char err[128];

	assert_int_equal(policy_selector_parse(selector, &s, NULL, err, sizeof(err)), 0);
	sprintf(out, "s%d-%.16s", family, policy_selector_uid(s) + 2);
	policy_selector_free(s);
}

/* ------------------------------------------------------------------------------------------ */
/* A simulator of the kernel's table, strict about references                                  */

struct sim {
	json_t *chains; /* name -> array of expr texts */
	json_t *sets;   /* name -> object of element texts */
};

static void sim_init(struct sim *s)
{
	s->chains = json_object();
	s->sets = json_object();
}

static void sim_free(struct sim *s)
{
	json_decref(s->chains);
	json_decref(s->sets);
}

/* Whether v mentions "@name" or a jump to name. */
static bool mentions(json_t *v, const char *name, bool chain)
{
	size_t i;
	const char *k;
	json_t *x;

	if (json_is_string(v))
		return !chain && json_string_value(v)[0] == '@' &&
		       strcmp(json_string_value(v) + 1, name) == 0;
	if (json_is_object(v)) {
		json_t *j = json_object_get(v, "jump");
		if (chain && j != NULL &&
		    strcmp(json_string_value(json_object_get(j, "target")), name) == 0)
			return true;
		json_object_foreach (v, k, x) {
			if (mentions(x, name, chain))
				return true;
		}
	}
	if (json_is_array(v))
		json_array_foreach (v, i, x) {
			if (mentions(x, name, chain))
				return true;
		}
	return false;
}

/* Every "@set" and jump target of v must exist. */
static void check_refs(struct sim *s, json_t *v)
{
	size_t i;
	const char *k;
	json_t *x;

	if (json_is_string(v) && json_string_value(v)[0] == '@' &&
	    json_object_get(s->sets, json_string_value(v) + 1) == NULL)
		fail_msg("reference to missing set %s", json_string_value(v));
	if (json_is_object(v)) {
		json_t *j = json_object_get(v, "jump");
		if (j != NULL &&
		    json_object_get(s->chains, json_string_value(json_object_get(j, "target"))) ==
		        NULL)
			fail_msg("jump to missing chain %s",
			         json_string_value(json_object_get(j, "target")));
		json_object_foreach (v, k, x) {
			check_refs(s, x);
		}
	}
	if (json_is_array(v))
		json_array_foreach (v, i, x) {
			check_refs(s, x);
		}
}

static bool referenced(struct sim *s, const char *name, bool chain)
{
	const char *k;
	json_t *x;

	json_object_foreach (s->chains, k, x) {
		size_t i;
		json_t *r;
		json_array_foreach (x, i, r) {
			json_t *e = json_loads(json_string_value(r), 0, NULL);
			bool m = mentions(e, name, chain);
			json_decref(e);
			if (m)
				return true;
		}
	}
	json_object_foreach (s->sets, k, x) {
		const char *ek;
		json_t *ev;
		json_object_foreach (x, ek, ev) {
			json_t *e = json_loads(ek, JSON_DECODE_ANY, NULL);
			bool m = mentions(e, name, chain);
			json_decref(e);
			if (m)
				return true;
		}
	}
	return false;
}

static void sim_elems(struct sim *s, const char *set, json_t *elem, bool add)
{
	json_t *st = json_object_get(s->sets, set);
	size_t i;
	json_t *e;

	if (st == NULL)
		fail_msg("element of missing set %s", set);
	json_array_foreach (elem, i, e) {
		char *t = json_dumps(e, JSON_COMPACT | JSON_ENCODE_ANY);
		check_refs(s, e);
		if (add && json_object_get(st, t) != NULL)
			fail_msg("element %s added twice to %s", t, set);
		if (!add && json_object_get(st, t) == NULL)
			fail_msg("element %s deleted from %s but absent", t, set);
		if (add)
			json_object_set_new(st, t, json_true());
		else
			json_object_del(st, t);
		free(t);
	}
}

/* A JSON string of p, which it frees. */
static json_t *own_string(char *p)
{
	json_t *v = json_string(p);

	free(p);
	return v;
}

/* Apply batch to s. When loadable is not NULL, append to it the commands that nft -j -f takes
 * for the same steps: nft knows rules only by handle, so a rule deleted or inserted by position
 * becomes a flush of its chain and the chain's rules as they are after that step. */
/* Which rules of chain (its rules ch) the batch so far has added, as an array of booleans
 * parallel to ch, made on first use. */
static json_t *added_of(json_t *added, const char *chain, json_t *ch)
{
	json_t *a = json_object_get(added, chain);

	if (a == NULL) {
		a = json_array();
		for (size_t k = 0; k < json_array_size(ch); k++)
			json_array_append_new(a, json_false());
		json_object_set_new(added, chain, a);
	}
	return a;
}

static void sim_step(struct sim *s, json_t *batch, json_t *loadable)
{
	size_t i;
	json_t *cmd;
	/* the applier turns a position into the handle of a rule the chain held before the batch
	 * (policy.h): a position naming a rule the batch added is a compiler bug */
	json_t *added = json_object();

	if (batch == NULL) {
		json_decref(added);
		return;
	}
	json_array_foreach (cmds_of(batch), i, cmd) {
		const char *verb = json_object_iter_key(json_object_iter(cmd));
		json_t *body = json_object_iter_value(json_object_iter(cmd));
		const char *what = json_object_iter_key(json_object_iter(body));
		json_t *o = json_object_iter_value(json_object_iter(body));
		const char *name = json_string_value(json_object_get(o, "name"));

		assert_string_equal(json_string_value(json_object_get(o, "family")), "inet");
		if (strcmp(what, "table") == 0) {
			if (strcmp(verb, "delete") == 0) {
				json_object_clear(s->chains);
				json_object_clear(s->sets);
			}
		} else if (strcmp(what, "chain") == 0) {
			json_t *ch = json_object_get(s->chains, name);
			if (strcmp(verb, "add") == 0) {
				if (ch == NULL)
					json_object_set_new(s->chains, name, json_array());
			} else if (ch == NULL) {
				fail_msg("%s of missing chain %s", verb, name);
			} else if (strcmp(verb, "flush") == 0) {
				json_array_clear(ch);
				json_array_clear(added_of(added, name, ch));
			} else {
				assert_string_equal(verb, "delete");
				if (referenced(s, name, true))
					fail_msg("chain %s deleted while referenced", name);
				json_object_del(s->chains, name);
				json_object_del(added, name);
			}
		} else if (strcmp(what, "set") == 0 || strcmp(what, "map") == 0) {
			if (strcmp(verb, "add") == 0) {
				assert_null(json_object_get(o, "flags"));
				if (json_object_get(s->sets, name) == NULL)
					json_object_set_new(s->sets, name, json_object());
				if (json_object_get(o, "elem") != NULL)
					sim_elems(s, name, json_object_get(o, "elem"), true);
			} else {
				assert_string_equal(verb, "delete");
				if (json_object_get(s->sets, name) == NULL)
					fail_msg("delete of missing set %s", name);
				if (referenced(s, name, false))
					fail_msg("set %s deleted while referenced", name);
				json_object_del(s->sets, name);
			}
		} else if (strcmp(what, "element") == 0) {
			sim_elems(s, name, json_object_get(o, "elem"), strcmp(verb, "add") == 0);
		} else if (strcmp(what, "rule") == 0) {
			const char *chain = json_string_value(json_object_get(o, "chain"));
			json_t *ch = json_object_get(s->chains, chain);
			json_t *index = json_object_get(o, "index");
			if (ch == NULL)
				fail_msg("rule in missing chain %s", chain);
			if (strcmp(verb, "add") == 0) {
				assert_null(index);
			} else {
				/* by position: a rule the chain holds now */
				assert_true(strcmp(verb, "insert") == 0 ||
				            strcmp(verb, "delete") == 0);
				assert_true(json_is_integer(index));
				assert_in_range(json_integer_value(index), 0,
				                (long)json_array_size(ch) - 1);
			}
			json_t *fresh = added_of(added, chain, ch);
			if (index != NULL &&
			    json_is_true(json_array_get(fresh, (size_t)json_integer_value(index))))
				fail_msg("%s rule at index %lld of %s: a rule the same batch added",
				         verb, (long long)json_integer_value(index), chain);
			if (strcmp(verb, "delete") == 0) {
				assert_null(json_object_get(o, "expr"));
				json_array_remove(ch, (size_t)json_integer_value(index));
				json_array_remove(fresh, (size_t)json_integer_value(index));
			} else {
				check_refs(s, json_object_get(o, "expr"));
				json_t *text = own_string(
				    json_dumps(json_object_get(o, "expr"), JSON_COMPACT));
				if (index != NULL) {
					json_array_insert_new(ch, (size_t)json_integer_value(index),
					                      text);
					json_array_insert_new(
					    fresh, (size_t)json_integer_value(index), json_true());
				} else {
					json_array_append_new(ch, text);
					json_array_append_new(fresh, json_true());
				}
			}
			if (loadable != NULL && index != NULL) {
				size_t r;
				json_t *text;
				json_array_append_new(loadable,
				                      json_pack("{s:{s:{s:s,s:O,s:s}}}", "flush",
				                                "chain", "family", "inet", "table",
				                                json_object_get(o, "table"), "name",
				                                chain));
				json_array_foreach (ch, r, text) {
					json_t *expr = json_loads(json_string_value(text), 0, NULL);
					assert_non_null(expr);
					json_array_append_new(
					    loadable, json_pack("{s:{s:{s:s,s:O,s:s,s:o}}}", "add",
					                        "rule", "family", "inet", "table",
					                        json_object_get(o, "table"),
					                        "chain", chain, "expr", expr));
				}
				continue;
			}
		} else {
			fail_msg("unexpected command %s %s", verb, what);
		}
		if (loadable != NULL)
			json_array_append(loadable, cmd);
	}
	json_decref(added);
}

static void sim_apply(struct sim *s, json_t *batch)
{
	sim_step(s, batch, NULL);
}

/* ------------------------------------------------------------------------------------------ */
/* Loading into the kernel, in a private network namespace                                    */

static bool nft_usable(void)
{
	return geteuid() == 0 && system("command -v nft >/dev/null 2>&1 && "
	                                "command -v unshare >/dev/null 2>&1") == 0;
}

/* Load the batches in order into a fresh network namespace; returns nft's exit status. */
static int nft_load(json_t **batches, unsigned n)
{
	char dir[] = "/tmp/tabby-nft-XXXXXX";
	char *script;
	int rv;

	struct sim s;

	assert_non_null(mkdtemp(dir));
	sim_init(&s);
	script = fmt("set -e");
	for (unsigned i = 0; i < n; i++) {
		char *path = fmt("%s/b%u.json", dir, i);
		char *next;
		if (batches[i] == NULL) {
			free(path);
			continue;
		}
		json_t *cmds = json_array();
		sim_step(&s, batches[i], cmds);
		json_t *load = json_pack("{s:o}", "nftables", cmds);
		assert_int_equal(json_dump_file(load, path, 0), 0);
		json_decref(load);
		next = fmt("%s; nft -j -f %s", script, path);
		free(script);
		script = next;
		free(path);
	}
	char *cmd = fmt("unshare -n sh -c '%s' 2>%s/err; rc=$?; cat %s/err >&2; rm -rf %s; "
	                "exit $rc",
	                script, dir, dir, dir);
	rv = system(cmd);
	free(cmd);
	free(script);
	sim_free(&s);
	return rv;
}

/* ------------------------------------------------------------------------------------------ */
/* The small model                                                                             */

static const struct policy_compile_config cfg = {.node = "n1"};

static struct policy_model *small_model(void)
{
	struct policy_model *m = policy_model_new();

	assert_non_null(m);
	put(m, NULL,
	    profile("calico", "{`profile`:`calico`}", "[`calico`]",
	            "[{`action`:`allow`,`source`:{`tag`:`calico`}}]", "[{`action`:`allow`}]"));
	put(m, NULL,
	    wep("n1", "web", "caliweb", "[`10.0.0.1/32`,`fd00::1/128`]", "{`app`:`web`}",
	        "[`calico`]"));
	put(m, NULL, wep("n1", "db", "calidb", "[`10.0.0.2/32`]", "{`app`:`db`}", "[`calico`]"));
	put(m, NULL, wep("n2", "api", "caliapi", "[`10.0.1.1/32`]", "{`app`:`web`}", "[]"));
	put(m, NULL, hep("n2", "eth1", "[`10.0.7.2`]", "{`app`:`db`}"));
	put(m, NULL,
	    policy("db-allow", "10", "app == 'db'", "[`ingress`]",
	           "[{`action`:`allow`,`protocol`:`tcp`,`source`:{`selector`:`app == 'web'`},"
	           "`destination`:{`ports`:[5432]}},{`action`:`log`},"
	           "{`action`:`deny`,`source`:{`nets`:[`192.168.0.0/16`]}}]",
	           "[]"));
	put(m, NULL,
	    policy("pass-all", "20", "", "[`ingress`,`egress`]",
	           "[{`action`:`pass`,`notProtocol`:`udp`}]",
	           "[{`action`:`deny`,`destination`:{`notSelector`:`app == 'db'`,"
	           "`notNets`:[`10.9.0.0/16`]}}]"));
	put(m, NULL,
	    policy("remote-only", "5", "app == 'nothing-here'", "[`ingress`]",
	           "[{`action`:`allow`,`source`:{`selector`:`never == 'x'`}}]", "[]"));
	return m;
}

static void test_full_structure(void **state)
{
	struct policy_model *m = small_model();
	struct policy_compiler *c;
	json_t *b;
	json_t *o;
	struct rules r;
	char web4[64], web6[64], tag4[64], db4[64], never4[64];
	char *t;
	int i1, i2;
	(void)state;

	assert_int_equal(policy_compiler_new(&cfg, &c), 0);
	assert_int_equal(policy_compiler_flush(c, m, &b), 0);
	assert_non_null(b);

	/* The atomic swap first. */
	t = json_dumps(json_array_get(cmds_of(b), 0), JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(t, "{\"add\":{\"table\":{\"family\":\"inet\",\"name\":\"tabby\"}}}");
	free(t);
	assert_non_null(json_object_get(json_array_get(cmds_of(b), 1), "delete"));
	assert_non_null(json_object_get(json_array_get(cmds_of(b), 2), "add"));
	assert_int_equal(count(b, "delete", "table"), 1);

	/* Base chains: not ours, spoofing and conntrack first, then fail-closed, then dispatch. */
	o = find(b, "add", "chain", "prerouting", NULL);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "hook")), "prerouting");
	assert_int_equal(json_integer_value(json_object_get(o, "prio")), 0);
	rules_of(b, "prerouting", &r); /* the egress side: all a workload sends */
	assert_int_equal(r.n, 8);
	has(r.v[0], "\"op\":\"!=\",\"left\":{\"meta\":{\"key\":\"iifname\"}},\"right\":\"cali*\"");
	has(r.v[1], "\"set\":[130,131,132,133,135,136]");
	/* only to link-scope destinations: prerouting is before routing */
	has(r.v[1],
	    "{\"payload\":{\"protocol\":\"ip6\",\"field\":\"daddr\"}},\"right\":{\"set\":"
	    "[{\"prefix\":{\"addr\":\"fe80::\",\"len\":10}},{\"prefix\":{\"addr\":\"ff02::\","
	    "\"len\":16}}]}");
	has(r.v[1], "{\"accept\":null}");
	/* a spoofed source, before conntrack: strict reverse path */
	has(r.v[2], "{\"fib\":{\"result\":\"oif\",\"flags\":[\"saddr\",\"iif\"]}},\"right\":false");
	has(r.v[2], "{\"drop\":null}");
	has(r.v[3], "[\"established\",\"related\"]");
	has(r.v[3], "{\"accept\":null}");
	has(r.v[4], "\"invalid\"");
	has(r.v[4], "{\"drop\":null}");
	has(r.v[5], "\"right\":\"@wl-ifaces\"");
	has(r.v[6], "{\"vmap\":{\"key\":{\"meta\":{\"key\":\"iifname\"}},\"data\":\"@from-wl\"}}");
	assert_string_equal(r.v[7], "[{\"accept\":null}]");
	rules_free(&r);
	/* The ingress side in a later base chain: an accept on the egress side ends only the
	 * first. */
	o = find(b, "add", "chain", "forward", NULL);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "hook")), "forward");
	assert_int_equal(json_integer_value(json_object_get(o, "prio")), 0);
	rules_of(b, "forward", &r);
	assert_int_equal(r.n, 6);
	has(r.v[0], "\"op\":\"!=\",\"left\":{\"meta\":{\"key\":\"oifname\"}},\"right\":\"cali*\"");
	has(r.v[1], "[\"established\",\"related\"]");
	has(r.v[2], "\"invalid\"");
	has(r.v[3], "\"right\":\"@wl-ifaces\"");
	has(r.v[4], "{\"vmap\":{\"key\":{\"meta\":{\"key\":\"oifname\"}},\"data\":\"@to-wl\"}}");
	assert_string_equal(r.v[5], "[{\"accept\":null}]");
	rules_free(&r);
	/* nothing hooks input: what goes to the host met its egress side in prerouting */
	assert_null(find(b, "add", "chain", "input", NULL));
	assert_null(find(b, "add", "chain", "forward-in", NULL));

	/* Dispatch maps: the local endpoints only, added once the chains they jump to exist. */
	int at_map = -1, at_elems = -1, at_chain = -1;
	assert_non_null(find(b, "add", "map", "from-wl", &at_map));
	assert_non_null(find(b, "add", "chain", "fw-calidb", &at_chain));
	t = elems(find(b, "add", "element", "from-wl", &at_elems));
	assert_true(at_map < at_chain && at_chain < at_elems);
	assert_string_equal(t, "[[\"calidb\",{\"jump\":{\"target\":\"fw-calidb\"}}],"
	                       "[\"caliweb\",{\"jump\":{\"target\":\"fw-caliweb\"}}]]");
	free(t);
	t = elems(find(b, "add", "element", "to-wl", NULL));
	assert_string_equal(t, "[[\"calidb\",{\"jump\":{\"target\":\"tw-calidb\"}}],"
	                       "[\"caliweb\",{\"jump\":{\"target\":\"tw-caliweb\"}}]]");
	free(t);
	t = elems(find(b, "add", "element", "wl-ifaces", NULL));
	assert_string_equal(t, "[\"calidb\",\"caliweb\"]");
	free(t);

	/* Chains: active policies and profiles only. */
	assert_non_null(find(b, "add", "chain", "pi-db-allow", NULL));
	assert_null(find(b, "add", "chain", "po-db-allow", NULL)); /* ingress only */
	assert_non_null(find(b, "add", "chain", "pi-pass-all", NULL));
	assert_non_null(find(b, "add", "chain", "po-pass-all", NULL));
	assert_null(find(b, "add", "chain", "pi-remote-only", NULL));
	assert_non_null(find(b, "add", "chain", "pri-calico", NULL));
	assert_non_null(find(b, "add", "chain", "pro-calico", NULL));
	assert_null(find(b, "add", "chain", "tw-caliapi", NULL));

	/* Sets: members cluster-wide, per family, plain. */
	set_name("app == 'web'", 4, web4);
	set_name("app == 'web'", 6, web6);
	set_name("has(calico)", 4, tag4);
	set_name("app == 'db'", 4, db4);
	set_name("never == 'x'", 4, never4);
	o = find(b, "add", "set", web4, NULL);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "type")), "ipv4_addr");
	assert_null(json_object_get(o, "flags"));
	t = elems(o);
	assert_string_equal(t, "[\"10.0.0.1\",\"10.0.1.1\"]");
	free(t);
	t = elems(find(b, "add", "set", web6, NULL));
	assert_string_equal(t, "[\"fd00::1\"]");
	free(t);
	t = elems(find(b, "add", "set", tag4, NULL));
	assert_string_equal(t, "[\"10.0.0.1\",\"10.0.0.2\"]");
	free(t);
	t = elems(find(b, "add", "set", db4, NULL)); /* the host endpoint's expectedIPs too */
	assert_string_equal(t, "[\"10.0.0.2\",\"10.0.7.2\"]");
	free(t);
	assert_null(find(b, "add", "set", never4, NULL)); /* remote-only is not active */
	/* The order the kernel walks them in to find a set by name: the interface set (with the
	 * maps) first, every IPv4 set before any IPv6 one, the larger first. */
	{
		int at_ifs = -1, at_web4 = -1, at_web6 = -1, at_tag4 = -1, at_db4 = -1;
		assert_non_null(find(b, "add", "set", "wl-ifaces", &at_ifs));
		assert_non_null(find(b, "add", "set", web4, &at_web4));
		assert_non_null(find(b, "add", "set", web6, &at_web6));
		assert_non_null(find(b, "add", "set", tag4, &at_tag4));
		assert_non_null(find(b, "add", "set", db4, &at_db4));
		assert_true(at_ifs < at_web4 && at_ifs < at_tag4 && at_ifs < at_db4);
		assert_true(at_web4 < at_web6 && at_tag4 < at_web6 && at_db4 < at_web6);
	}

	/* Endpoint chain: PASS cleared, a jump to each policy in order (an allow accepts, a deny
	 * drops), those after the first that can pass only while none has, drop unless passed,
	 * then the profiles, then drop (5.3). */
	rules_of(b, "tw-calidb", &r);
	assert_int_equal(r.n, 6);
	assert_string_equal(
	    r.v[0], "[{\"mangle\":{\"key\":{\"meta\":{\"key\":\"mark\"}},\"value\":{\"&\":[{"
	            "\"meta\":{\"key\":\"mark\"}},4261412863]}}}]");
	assert_string_equal(r.v[1], "[{\"jump\":{\"target\":\"pi-db-allow\"}}]");
	assert_string_equal(r.v[2], "[{\"jump\":{\"target\":\"pi-pass-all\"}}]");
	has(r.v[3], "33554432]},\"right\":0}},{\"drop\":null}");
	assert_string_equal(r.v[4], "[{\"jump\":{\"target\":\"pri-calico\"}}]");
	assert_string_equal(r.v[5], "[{\"drop\":null}]");
	rules_free(&r);
	/* Egress: only pass-all applies, and its egress rule does not pass: the profiles can
	 * never be reached, and PASS is neither cleared nor tested. */
	rules_of(b, "fw-caliweb", &r);
	assert_int_equal(r.n, 2);
	assert_string_equal(r.v[0], "[{\"jump\":{\"target\":\"po-pass-all\"}}]");
	assert_string_equal(r.v[1], "[{\"drop\":null}]");
	rules_free(&r);

	/* Policy chain: allow with a selector -> one rule per family; log; deny with nets. No
	 * test of the mark: the endpoint chain skips the policies after a pass. */
	rules_of(b, "pi-db-allow", &r);
	assert_int_equal(r.n, 4);
	has(r.v[0], "\"right\":\"ipv4\"");
	has(r.v[0], "{\"meta\":{\"key\":\"l4proto\"}},\"right\":6}");
	has(r.v[0], "{\"payload\":{\"protocol\":\"ip\",\"field\":\"saddr\"}},\"right\":\"@");
	has(r.v[0], web4);
	has(r.v[0], "{\"payload\":{\"protocol\":\"th\",\"field\":\"dport\"}},\"right\":{\"set\":"
	            "[5432]}}");
	has(r.v[0], "[5432]}}},{\"accept\":null}]");
	has(r.v[1], "\"right\":\"ipv6\"");
	has(r.v[1], "{\"protocol\":\"ip6\",\"field\":\"saddr\"}");
	has(r.v[1], web6);
	assert_string_equal(r.v[2], "[{\"log\":{\"prefix\":\"calico-packet\"}}]");
	has(r.v[3], "\"right\":\"ipv4\"");
	has(r.v[3], "{\"prefix\":{\"addr\":\"192.168.0.0\",\"len\":16}}");
	has(r.v[3], "{\"drop\":null}");
	rules_free(&r);

	/* pass and the negations. */
	rules_of(b, "pi-pass-all", &r);
	assert_int_equal(r.n, 1);
	has(r.v[0], "{\"op\":\"!=\",\"left\":{\"meta\":{\"key\":\"l4proto\"}},\"right\":17}");
	has(r.v[0], "{\"|\":[{\"meta\":{\"key\":\"mark\"}},33554432]}}},{\"return\":null}]");
	rules_free(&r);
	rules_of(b, "po-pass-all", &r);
	assert_int_equal(r.n, 1); /* notNets confine it to IPv4 */
	has(r.v[0],
	    "{\"op\":\"!=\",\"left\":{\"payload\":{\"protocol\":\"ip\",\"field\":"
	    "\"daddr\"}},\"right\":{\"set\":[{\"prefix\":{\"addr\":\"10.9.0.0\",\"len\":16}}]}}");
	has(r.v[0], "{\"op\":\"!=\",\"left\":{\"payload\":{\"protocol\":\"ip\",\"field\":"
	            "\"daddr\"}},\"right\":\"@");
	has(r.v[0], db4);
	rules_free(&r);

	/* The same again: nothing changed. */
	json_decref(b);
	assert_int_equal(policy_compiler_flush(c, m, &b), 0);
	assert_null(b);

	/* Sets come before the rules that use them, chains before the map elements that jump to
	 * them. */
	assert_int_equal(policy_compiler_ruleset(c, m, &b), 0);
	find(b, "add", "set", web4, &i1);
	find(b, "add", "chain", "pi-db-allow", &i2);
	assert_true(i1 < i2);
	find(b, "add", "element", "from-wl", &i1);
	find(b, "add", "chain", "fw-caliweb", &i2);
	assert_true(i2 < i1);
	json_decref(b);

	policy_compiler_free(c);
	policy_model_free(m);
}

/* One policy with the given ingress rules applied to a local endpoint; its pi- chain's rules. */
static void render_one(const char *ingress, struct rules *r)
{
	struct policy_model *m = policy_model_new();
	struct policy_compiler *c;
	json_t *b;

	put(m, NULL, wep("n1", "w", "caliw", "[`10.0.0.1/32`]", "{`app`:`w`}", "[]"));
	/* members of both families for the selectors and the tag below (a rule naming an empty
	 * set is left out: test_empty_sets) */
	put(m, NULL, profile("pa", "{}", "[`a`]", "[]", "[]"));
	put(m, NULL,
	    wep("n9", "v", "caliv", "[`10.9.0.1/32`,`fd00:9::1/128`]", "{`x`:`y`}", "[`pa`]"));
	put(m, NULL, policy("p", NULL, "", "[`ingress`]", ingress, "[]"));
	assert_int_equal(policy_compiler_new(&cfg, &c), 0);
	assert_int_equal(policy_compiler_ruleset(c, m, &b), 0);
	rules_of(b, "pi-p", r);
	json_decref(b);
	policy_compiler_free(c);
	policy_model_free(m);
}

static void test_rule_rendering(void **state)
{
	struct rules r;
	(void)state;

	/* Empty rule: once, no family. */
	render_one("[{`action`:`deny`}]", &r);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.v[0], "[{\"drop\":null}]");
	rules_free(&r);

	/* ipVersion alone: once, that family. */
	render_one("[{`action`:`deny`,`ipVersion`:6}]", &r);
	assert_int_equal(r.n, 1);
	has(r.v[0], "{\"meta\":{\"key\":\"nfproto\"}},\"right\":\"ipv6\"");
	rules_free(&r);

	/* ICMP type and code: family's ICMP only, both families in one rule. */
	render_one("[{`action`:`allow`,`icmp`:{`type`:8,`code`:0}}]", &r);
	assert_int_equal(r.n, 1);
	has(r.v[0],
	    "{\"concat\":[{\"meta\":{\"key\":\"nfproto\"}},{\"meta\":{\"key\":\"l4proto\"}},"
	    "{\"payload\":{\"base\":\"th\",\"offset\":0,\"len\":8}},{\"payload\":{\"base\":"
	    "\"th\",\"offset\":8,\"len\":8}}]}");
	has(r.v[0], "{\"set\":[{\"concat\":[\"ipv4\",1,8,0]},{\"concat\":[\"ipv6\",58,8,0]}]}");
	rules_free(&r);
	render_one("[{`action`:`allow`,`ipVersion`:4,`protocol`:`icmp`,`notICMP`:{`type`:3}}]", &r);
	assert_int_equal(r.n, 1);
	has(r.v[0], "\"op\":\"!=\",\"left\":{\"concat\"");
	has(r.v[0], "{\"set\":[{\"concat\":[\"ipv4\",1,3]}]}");
	hasnt(r.v[0], "ipv6");
	rules_free(&r);

	/* Ports merged and sorted; source and destination. */
	render_one("[{`action`:`allow`,`protocol`:`udp`,`source`:{`ports`:[53]},`destination`:"
	           "{`ports`:[`6040:6050`,80,`6045:6060`,81],`notPorts`:[443]}}]",
	           &r);
	assert_int_equal(r.n, 1);
	has(r.v[0], "\"field\":\"sport\"}},\"right\":{\"set\":[53]}");
	has(r.v[0], "\"field\":\"dport\"}},\"right\":{\"set\":[{\"range\":[80,81]},{\"range\":"
	            "[6040,6060]}]}");
	has(r.v[0],
	    "\"op\":\"!=\",\"left\":{\"payload\":{\"protocol\":\"th\",\"field\":\"dport\"}},"
	    "\"right\":{\"set\":[443]}");
	rules_free(&r);

	/* notPorts without a protocol: not a port protocol | a port protocol, not those ports. */
	render_one("[{`action`:`deny`,`destination`:{`notPorts`:[22]}}]", &r);
	assert_int_equal(r.n, 2);
	has(r.v[0], "{\"match\":{\"op\":\"!=\",\"left\":{\"meta\":{\"key\":\"l4proto\"}},\"right\":"
	            "{\"set\":[6,17,132,136]}}},{\"drop\":null}");
	hasnt(r.v[0], "dport");
	has(r.v[1], "{\"op\":\"==\",\"left\":{\"meta\":{\"key\":\"l4proto\"}},\"right\":{\"set\":"
	            "[6,17,132,136]}}");
	has(r.v[1],
	    "\"op\":\"!=\",\"left\":{\"payload\":{\"protocol\":\"th\",\"field\":\"dport\"}}");
	rules_free(&r);

	/* Selector and notSelector and tags: once per family. Nets of one family: that one. */
	render_one("[{`action`:`allow`,`source`:{`tag`:`a`,`notSelector`:`b == 'c'`}},"
	           "{`action`:`allow`,`source`:{`selector`:`x == 'y'`,`nets`:[`fd00::/64`,"
	           "`fd00::/48`]}}]",
	           &r);
	assert_int_equal(r.n, 3);
	has(r.v[0], "\"ipv4\"");
	has(r.v[0],
	    "\"op\":\"!=\",\"left\":{\"payload\":{\"protocol\":\"ip\",\"field\":\"saddr\"}},"
	    "\"right\":\"@s4-");
	has(r.v[1], "\"ipv6\"");
	has(r.v[1], "\"right\":\"@s6-");
	has(r.v[2], "\"ipv6\"");
	has(r.v[2], "{\"set\":[{\"prefix\":{\"addr\":\"fd00::\",\"len\":48}}]}"); /* /64 inside */
	rules_free(&r);

	/* A conjunction of tests: one set per test, "!=" for a negated one; all of them with
	 * only negated tests. The first rule not in IPv6: no IPv6 endpoint has app w. */
	render_one("[{`action`:`allow`,`source`:{`selector`:`app == 'w' && x != 'y'`}},"
	           "{`action`:`deny`,`source`:{`selector`:`!has(x)`}}]",
	           &r);
	{
		char app[32], xy[32], all[32], hasx[32], want[256];
		static const char *const test = "\"op\":\"%s\",\"left\":{\"payload\":{\"protocol\":"
		                                "\"ip\",\"field\":\"saddr\"}},\"right\":\"@%s\"";
		set_name("app == 'w'", 4, app);
		set_name("x == 'y'", 4, xy);
		set_name("all()", 4, all);
		set_name("has(x)", 4, hasx);
		assert_int_equal(r.n, 3);
		snprintf(want, sizeof(want), test, "==", app);
		has(r.v[0], want);
		snprintf(want, sizeof(want), test, "!=", xy);
		has(r.v[0], want);
		snprintf(want, sizeof(want), test, "==", all);
		has(r.v[1], want);
		snprintf(want, sizeof(want), test, "!=", hasx);
		has(r.v[1], want);
		hasnt(r.v[0], "ipv6");
		has(r.v[2], "ipv6");
	}
	rules_free(&r);

	/* Ports on a protocol without ports never match: no rule. */
	render_one("[{`action`:`allow`,`protocol`:1,`destination`:{`ports`:[80]}},"
	           "{`action`:`deny`,`protocol`:1,`destination`:{`notPorts`:[80]}}]",
	           &r);
	assert_int_equal(r.n, 1);
	has(r.v[0], "\"right\":1}},{\"drop\":null}]");
	rules_free(&r);
}

/* Chain names: plain when they can be, hashed and distinct otherwise. */
static void test_names(void **state)
{
	struct policy_model *m = policy_model_new();
	struct policy_compiler *c;
	json_t *b;
	char longname[129];
	size_t i;
	json_t *cmd;
	unsigned hashed = 0;
	(void)state;

	memset(longname, 'a', 128);
	longname[128] = '\0';
	put(m, NULL, wep("n1", "w", "caliw", "[`10.0.0.1/32`]", "{}", "[]"));
	put(m, NULL, policy("team/web.v1", NULL, "", "[`ingress`]", "[]", "[]"));
	put(m, NULL, policy(longname, NULL, "", "[`ingress`]", "[]", "[]"));
	longname[127] = 'b';
	put(m, NULL, policy(longname, NULL, "", "[`ingress`]", "[]", "[]"));
	assert_int_equal(policy_compiler_new(&cfg, &c), 0);
	assert_int_equal(policy_compiler_ruleset(c, m, &b), 0);
	assert_non_null(find(b, "add", "chain", "pi-team/web.v1", NULL));
	json_array_foreach (cmds_of(b), i, cmd) {
		json_t *o = json_object_get(json_object_get(cmd, "add"), "chain");
		const char *n = json_string_value(json_object_get(o, "name"));
		if (n == NULL || strncmp(n, "pi.", 3) != 0)
			continue;
		hashed++;
		assert_true(strlen(n) < 64);
		assert_int_equal(strncmp(n, "pi.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.", 36), 0);
	}
	assert_int_equal(hashed, 2); /* two distinct names */
	json_decref(b);
	policy_compiler_free(c);
	policy_model_free(m);
}

/* Whether got holds the sets of want, equal. It may hold more: the sets of idle selectors, which
 * the compiler keeps for a while; no rule names them, since the chains are compared equal too, and
 * their contents are checked once a rule names them again (the full ruleset then has them). Those
 * are never empty (an idle set that empties goes), and at most one per family of each of
 * POLICY_IDLE_SETS selectors, so a set the compiler forgot to delete still shows. */
static bool sets_match(const struct sim *want, const struct sim *got)
{
	const char *name;
	json_t *v;
	size_t extra = 0;

	json_object_foreach (want->sets, name, v)
		if (!json_equal(v, json_object_get(got->sets, name)))
			return false;
	json_object_foreach (got->sets, name, v) {
		if (json_object_get(want->sets, name) != NULL)
			continue;
		if (json_object_size(v) == 0)
			return false;
		extra++;
	}
	return extra <= 2 * (size_t)POLICY_IDLE_SETS;
}

/* Apply a flush's batch to the simulator and check it equals the full ruleset's. */
static json_t *flush_and_check(struct policy_compiler *c, struct policy_model *m, struct sim *k)
{
	json_t *b, *full;
	struct sim want;

	assert_int_equal(policy_compiler_flush(c, m, &b), 0);
	sim_apply(k, b);
	assert_int_equal(policy_compiler_ruleset(c, m, &full), 0);
	sim_init(&want);
	sim_apply(&want, full);
	if (!json_equal(want.chains, k->chains) || !sets_match(&want, k)) {
		char *w = json_dumps(want.sets, JSON_SORT_KEYS | JSON_INDENT(1));
		char *g = json_dumps(k->sets, JSON_SORT_KEYS | JSON_INDENT(1));
		char *wc = json_dumps(want.chains, JSON_SORT_KEYS | JSON_INDENT(1));
		char *gc = json_dumps(k->chains, JSON_SORT_KEYS | JSON_INDENT(1));
		char *bt = b ? json_dumps(b, JSON_INDENT(1)) : strdup("null");
		fail_msg("incremental state differs from full\nbatch %s\nwant sets %s\ngot sets "
		         "%s\nwant chains %s\ngot chains %s",
		         bt, w, g, wc, gc);
	}
	sim_free(&want);
	json_decref(full);
	return b;
}

static void test_incremental(void **state)
{
	struct policy_model *m = small_model();
	struct policy_compiler *c;
	struct sim k;
	json_t *b, *o;
	char web4[64], db4[64], tag4[64], other4[64];
	char *t;
	int i1, i2;
	json_t *all[16];
	unsigned n_all = 0;
	(void)state;

	set_name("app == 'web'", 4, web4);
	set_name("app == 'db'", 4, db4);
	set_name("has(calico)", 4, tag4);
	set_name("app == 'other'", 4, other4);
	sim_init(&k);
	assert_int_equal(policy_compiler_new(&cfg, &c), 0);
	all[n_all++] = flush_and_check(c, m, &k);

	/* A new remote endpoint: set elements only. */
	put(m, c, wep("n3", "web2", "caliweb2", "[`10.0.3.1/32`]", "{`app`:`web`}", "[]"));
	b = flush_and_check(c, m, &k);
	assert_non_null(b);
	assert_int_equal(json_array_size(cmds_of(b)), 1);
	o = find(b, "add", "element", web4, NULL);
	assert_non_null(o);
	t = elems(o);
	assert_string_equal(t, "[\"10.0.3.1\"]");
	free(t);
	all[n_all++] = b;

	/* A new local endpoint: its chains, its map elements, its set elements; no policy
	 * chain is touched. */
	put(m, c, wep("n1", "web3", "caliweb3", "[`10.0.0.3/32`]", "{`app`:`web`}", "[`calico`]"));
	b = flush_and_check(c, m, &k);
	assert_non_null(find(b, "add", "chain", "fw-caliweb3", NULL));
	assert_non_null(find(b, "add", "chain", "tw-caliweb3", NULL));
	assert_non_null(find(b, "add", "element", "from-wl", NULL));
	assert_non_null(find(b, "add", "element", "to-wl", NULL));
	assert_non_null(find(b, "add", "element", "wl-ifaces", NULL));
	assert_non_null(find(b, "add", "element", web4, NULL));
	assert_non_null(find(b, "add", "element", tag4, NULL));
	assert_int_equal(count(b, "flush", "chain"), 0);
	assert_int_equal(count(b, "delete", "chain"), 0);
	all[n_all++] = b;

	/* A changed policy (same selectors): its chain replaced, nothing else. */
	put(m, c,
	    policy("db-allow", "10", "app == 'db'", "[`ingress`]",
	           "[{`action`:`allow`,`protocol`:`tcp`,`source`:{`selector`:`app == 'web'`},"
	           "`destination`:{`ports`:[5433]}}]",
	           "[]"));
	b = flush_and_check(c, m, &k);
	assert_int_equal(count(b, "flush", "chain"), 1);
	assert_non_null(find(b, "flush", "chain", "pi-db-allow", NULL));
	assert_int_equal(count(b, "add", "rule"), 2); /* one per family */
	assert_int_equal(json_array_size(cmds_of(b)), 3);
	all[n_all++] = b;

	/* The last user of a selector goes: its set stays, idle (test_idle_sets). */
	put(m, c,
	    policy("db-allow", "10", "app == 'db'", "[`ingress`]",
	           "[{`action`:`allow`,`source`:{`selector`:`app == 'other'`}}]", "[]"));
	b = flush_and_check(c, m, &k);
	assert_null(find(b, "delete", "set", web4, NULL));
	assert_non_null(json_object_get(k.sets, web4));
	/* nobody has app == 'other': the rule could never match, so it is left out, and its set
	 * is not made */
	assert_null(find(b, "add", "set", other4, NULL));
	assert_int_equal(count(b, "add", "rule"), 0); /* the chain is left empty */
	assert_int_equal(json_array_size(json_object_get(k.chains, "pi-db-allow")), 0);
	assert_non_null(json_object_get(k.chains, "pi-db-allow"));
	all[n_all++] = b;

	/* A label change moves an address between sets: the first member of app == 'other' brings
	 * its set and the rule back. */
	put(m, c, wep("n2", "api", "caliapi", "[`10.0.1.1/32`]", "{`app`:`other`}", "[]"));
	b = flush_and_check(c, m, &k);
	o = find(b, "add", "set", other4, &i1);
	assert_non_null(o);
	t = elems(o);
	assert_string_equal(t, "[\"10.0.1.1\"]");
	free(t);
	/* the empty chain gets the IPv4 rule, after the set */
	assert_non_null(find_rule(b, "add", "pi-db-allow", &i2));
	assert_true(i1 < i2);
	assert_int_equal(count(b, "add", "rule"), 1);
	all[n_all++] = b;
	/* and the last member leaving takes them away again */
	put(m, c, wep("n2", "api", "caliapi", "[`10.0.1.1/32`]", "{`app`:`db`}", "[]"));
	b = flush_and_check(c, m, &k);
	assert_non_null(find(b, "delete", "set", other4, &i2));
	find(b, "flush", "chain", "pi-db-allow", &i1);
	assert_true(i1 < i2);
	assert_non_null(find(b, "add", "element", db4, NULL));
	all[n_all++] = b;

	/* Noted but unchanged: nothing. */
	put(m, c, wep("n2", "api", "caliapi", "[`10.0.1.1/32`]", "{`app`:`db`}", "[]"));
	assert_int_equal(policy_compiler_flush(c, m, &b), 0);
	assert_null(b);

	/* Profile labels change: inherited by its endpoints. */
	put(m, c,
	    profile("calico", "{`profile`:`calico`,`app`:`other`}", "[]",
	            "[{`action`:`allow`,`source`:{`tag`:`calico`}}]", "[]"));
	all[n_all++] = flush_and_check(c, m, &k);

	/* A local endpoint goes; a policy goes; a profile goes. */
	del(m, c, POLICY_KIND_WORKLOADENDPOINT, "n1/mesos/web3/eth0");
	b = flush_and_check(c, m, &k);
	assert_non_null(find(b, "delete", "chain", "fw-caliweb3", NULL));
	assert_non_null(find(b, "delete", "element", "from-wl", NULL));
	all[n_all++] = b;
	del(m, c, POLICY_KIND_POLICY, "pass-all");
	all[n_all++] = flush_and_check(c, m, &k);
	del(m, c, POLICY_KIND_PROFILE, "calico");
	all[n_all++] = flush_and_check(c, m, &k);

	/* Reset: the whole table again. */
	policy_compiler_reset(c);
	b = flush_and_check(c, m, &k);
	assert_int_equal(count(b, "delete", "table"), 1);
	all[n_all++] = b;

	if (nft_usable())
		assert_int_equal(nft_load(all, n_all), 0);
	else
		fprintf(stderr,
		        "test_incremental: not root or no nft/unshare: kernel load skipped\n");
	for (unsigned i = 0; i < n_all; i++)
		json_decref(all[i]);
	sim_free(&k);
	policy_compiler_free(c);
	policy_model_free(m);
}

/* The policy of test_idle_sets: on app l, allowing from app == SEL. */
static void idle_policy(struct policy_model *m, struct policy_compiler *c, const char *sel)
{
	char rules[160];

	snprintf(rules, sizeof(rules), "[{`action`:`allow`,`source`:{`selector`:`app == '%s'`}}]",
	         sel);
	put(m, c, policy("p", "10", "app == 'l'", "[`ingress`]", rules, "[]"));
}

/* A selector no rule uses any more keeps its set, its members kept up to date, until
 * POLICY_IDLE_SETS others became idle after it. */
static void test_idle_sets(void **state)
{
	struct policy_model *m = policy_model_new();
	struct policy_compiler *c;
	struct sim k, want;
	json_t *b, *full;
	char x4[64], y4[64];
	bool y_gone = false, x_gone = false;
	(void)state;

	sim_init(&k);
	assert_int_equal(policy_compiler_new(&cfg, &c), 0);
	put(m, c, wep("n1", "l", "calil", "[`10.0.0.1/32`]", "{`app`:`l`}", "[]"));
	put(m, c, wep("n2", "x1", "calix1", "[`10.0.1.1/32`]", "{`app`:`x`}", "[]"));
	put(m, c, wep("n2", "y1", "caliy1", "[`10.0.2.1/32`]", "{`app`:`y`}", "[]"));
	idle_policy(m, c, "x");
	json_decref(flush_and_check(c, m, &k));
	set_name("app == 'x'", 4, x4);
	set_name("app == 'y'", 4, y4);
	assert_non_null(json_object_get(k.sets, x4));

	/* x's last rule goes: its set stays */
	idle_policy(m, c, "y");
	b = flush_and_check(c, m, &k);
	assert_non_null(find(b, "add", "set", y4, NULL));
	assert_null(find(b, "delete", "set", x4, NULL));
	assert_non_null(json_object_get(k.sets, x4));
	json_decref(b);

	/* idle, it follows its members */
	put(m, c, wep("n2", "x2", "calix2", "[`10.0.1.2/32`]", "{`app`:`x`}", "[]"));
	b = flush_and_check(c, m, &k);
	assert_non_null(find(b, "add", "element", x4, NULL));
	json_decref(b);
	del(m, c, POLICY_KIND_WORKLOADENDPOINT, "n2/mesos/x1/eth0");
	b = flush_and_check(c, m, &k);
	assert_non_null(find(b, "delete", "element", x4, NULL));
	json_decref(b);

	/* used again: no new set and no element to add, and the set holds what the whole
	 * ruleset's would (flush_and_check) */
	idle_policy(m, c, "x");
	b = flush_and_check(c, m, &k);
	assert_null(find(b, "add", "set", x4, NULL));
	assert_null(find(b, "add", "element", x4, NULL));
	assert_null(find(b, "delete", "set", y4, NULL));
	json_decref(b);

	/* POLICY_IDLE_SETS selectors idle after y and x: both go, the one idle longer first */
	for (int i = 0; i <= POLICY_IDLE_SETS; i++) {
		char wl[16], ip[32], lbl[32], sel[16];
		snprintf(wl, sizeof(wl), "z%d", i);
		snprintf(ip, sizeof(ip), "[`10.0.%d.%d/32`]", 3 + i / 250, 1 + i % 250);
		snprintf(lbl, sizeof(lbl), "{`app`:`z%d`}", i);
		snprintf(sel, sizeof(sel), "z%d", i);
		put(m, c, wep("n2", wl, "caliz", ip, lbl, "[]"));
		json_decref(flush_and_check(c, m, &k));
		idle_policy(m, c, sel);
		b = flush_and_check(c, m, &k);
		if (find(b, "delete", "set", y4, NULL) != NULL) {
			assert_false(x_gone);
			y_gone = true;
		}
		if (find(b, "delete", "set", x4, NULL) != NULL) {
			assert_true(y_gone);
			x_gone = true;
		}
		json_decref(b);
	}
	assert_true(y_gone && x_gone);
	assert_int_equal(policy_compiler_ruleset(c, m, &full), 0);
	sim_init(&want);
	sim_apply(&want, full);
	assert_int_equal(json_object_size(k.sets) - json_object_size(want.sets), POLICY_IDLE_SETS);
	sim_free(&want);
	json_decref(full);
	sim_free(&k);
	policy_compiler_free(c);
	policy_model_free(m);
}

/* Random changes, each flush checked against the full ruleset. */
static void test_random_changes(void **state)
{
	struct policy_model *m = policy_model_new();
	struct policy_compiler *c;
	struct sim k;
	static const char *apps[] = {"a", "b", "c", "d"};
	static const char *nodes[] = {"n1", "n2"};
	unsigned seed = 12345;
	json_t *batches[64];
	unsigned n_b = 0;
	(void)state;

	sim_init(&k);
	assert_int_equal(policy_compiler_new(&cfg, &c), 0);
	for (int step = 0; step < 300; step++) {
		unsigned r = (unsigned)rand_r(&seed);
		unsigned what = r % 7;
		unsigned i = (r / 7) % 6;
		const char *app = apps[(r / 97) % 4];
		const char *app2 = apps[(r / 391) % 4];
		char name[32], iface[16], ip[64], labels[64], sel[64], rules[512];
		json_t *b;

		if (what <= 2) {
			snprintf(name, sizeof(name), "w%u", i);
			snprintf(iface, sizeof(iface), "cali%u", i % 4); /* shared names too */
			snprintf(ip, sizeof(ip), "[`10.1.0.%u/32`,`fd00::%u/128`]", i % 5, i);
			snprintf(labels, sizeof(labels), "{`app`:`%s`}", app);
			if (what == 2 && policy_model_endpoint(m, POLICY_KIND_WORKLOADENDPOINT,
			                                       "n1/mesos/x/eth0") != NULL) {
				del(m, c, POLICY_KIND_WORKLOADENDPOINT, "n1/mesos/x/eth0");
			} else {
				char wl[40];
				snprintf(wl, sizeof(wl), "%s", what == 2 ? "x" : name);
				put(m, c,
				    wep(nodes[(r / 13) % 2], wl, iface, ip, labels,
				        (r / 29) % 2 ? "[`pa`,`pb`]" : "[`pb`]"));
			}
		} else if (what <= 4) {
			snprintf(name, sizeof(name), "p%u", i);
			snprintf(sel, sizeof(sel), "app == '%s'", app);
			snprintf(rules, sizeof(rules),
			         "[{`action`:`%s`,`source`:{`selector`:`app == '%s'`}},"
			         "{`action`:`log`,`ipVersion`:%d},{`action`:`allow`,`destination`:"
			         "{`notTag`:`%s`}}]",
			         (r / 5) % 3 == 0   ? "pass"
			         : (r / 5) % 3 == 1 ? "deny"
			                            : "allow",
			         app2, 4 + 2 * ((r / 3) % 2), app);
			if ((r / 11) % 5 == 0 && policy_model_policy(m, name) != NULL) {
				del(m, c, POLICY_KIND_POLICY, name);
			} else {
				char order[16];
				snprintf(order, sizeof(order), "%u", (r / 17) % 4);
				put(m, c,
				    policy(name, (r / 19) % 3 ? order : NULL, sel,
				           (r / 23) % 2 ? "[`ingress`,`egress`]" : "[`egress`]",
				           rules, rules));
			}
		} else if (what == 5) {
			const char *pn = (r / 5) % 2 ? "pa" : "pb";
			snprintf(labels, sizeof(labels), "{`app`:`%s`}", app);
			if ((r / 11) % 4 == 0 && policy_model_profile(m, pn) != NULL)
				del(m, c, POLICY_KIND_PROFILE, pn);
			else
				put(m, c,
				    profile(pn, (r / 7) % 2 ? labels : "{}",
				            (r / 3) % 2 ? "[`a`]" : "[]",
				            "[{`action`:`allow`,`source`:{`tag`:`b`}}]",
				            "[{`action`:`deny`,`destination`:{`selector`:`app == "
				            "'c'`}}]"));
		} else {
			snprintf(name, sizeof(name), "h%u", i % 3);
			snprintf(ip, sizeof(ip), "[`10.2.0.%u`]", i % 2);
			snprintf(labels, sizeof(labels), "{`app`:`%s`}", app);
			put(m, c, hep("n2", name, ip, labels));
		}
		if ((r / 41) % 3 == 0)
			continue; /* batch several changes */
		b = flush_and_check(c, m, &k);
		if (b != NULL && n_b < 64 && step < 200)
			batches[n_b++] = b;
		else
			json_decref(b);
	}
	if (nft_usable())
		assert_int_equal(nft_load(batches, n_b), 0);
	for (unsigned i = 0; i < n_b; i++)
		json_decref(batches[i]);
	sim_free(&k);
	policy_compiler_free(c);
	policy_model_free(m);
}

/* Every set of sel that the simulated kernel holds has exactly the addresses of the endpoints
 * the evaluator says sel matches (the compiler finds a new selector's members through its label
 * index, the evaluator by reading each endpoint's labels); how many sets were checked. */
static unsigned check_members(struct sim *k, const struct policy_model *m, const char *sel)
{
	struct policy_selector *ps;
	unsigned n, checked = 0;
	struct policy_endpoint *const *eps = policy_model_endpoints(m, &n);

	assert_int_equal(policy_selector_parse(sel, &ps, NULL, NULL, 0), 0);
	/* A conjunction has no set of its own: its tests have theirs (render_sel). */
	const struct policy_selector_literal *lit;
	unsigned n_lits = policy_selector_literals(ps, &lit);
	for (unsigned i = 0; i < n_lits; i++)
		checked += check_members(k, m, lit[i].canonical);
	for (int fam = 4; fam <= 6; fam += 2) {
		char name[64];
		snprintf(name, sizeof(name), "s%d-%.16s", fam, policy_selector_uid(ps) + 2);
		json_t *set = json_object_get(k->sets, name), *want = json_object();
		if (n_lits > 0 && set != NULL)
			fail_msg("%s: a conjunction with a set of its own", sel);
		if (set == NULL) {
			json_decref(want);
			continue;
		}
		for (unsigned e = 0; e < n; e++) {
			if (!policy_endpoint_matches(m, eps[e], ps))
				continue;
			for (unsigned a = 0; a < eps[e]->n_addrs; a++) {
				char text[64], *t;
				if (eps[e]->addrs[a].family != fam)
					continue;
				ipam_addr_format(&eps[e]->addrs[a], text);
				json_t *j = json_string(text);
				t = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
				json_decref(j);
				json_object_set_new(want, t, json_true());
				free(t);
			}
		}
		if (!json_equal(want, set)) {
			char *w = json_dumps(want, JSON_SORT_KEYS),
			     *g = json_dumps(set, JSON_SORT_KEYS);
			fail_msg("set %s of %s: want %s, got %s", name, sel, w, g);
		}
		json_decref(want);
		checked++;
	}
	policy_selector_free(ps);
	return checked;
}

/* Hundreds of endpoints come and go in random order, most of them remote, while selectors are
 * in use: the compiler's endpoint table grows and takes entries out from the middle of probe
 * runs, and each endpoint's list of the selectors it belongs to must follow its labels, its
 * profile's labels and the selectors that come and go. After every flush the incremental state
 * must equal the full ruleset. */
static void test_endpoint_churn(void **state)
{
	struct policy_model *m = policy_model_new();
	struct policy_compiler *c;
	struct sim k;
	unsigned seed = 777, checked = 0;
	bool live[400] = {false};
	(void)state;

	sim_init(&k);
	assert_int_equal(policy_compiler_new(&cfg, &c), 0);
	put(m, c, profile("pr", "{`team`:`x`}", "[`t`]", "[]", "[]"));
	put(m, c,
	    policy("p0", "1", "app == 'a0'", "[`ingress`,`egress`]",
	           "[{`action`:`allow`,`source`:{`selector`:`app == 'a1' && team == 'x'`}}]",
	           "[{`action`:`deny`,`destination`:{`tag`:`t`}}]"));
	json_decref(flush_and_check(c, m, &k));
	for (int step = 0; step < 1500; step++) {
		unsigned r = (unsigned)rand_r(&seed);
		unsigned i = r % 400;
		char key[64];
		snprintf(key, sizeof(key), "%s/mesos/w%u/eth0", i < 20 ? "n1" : "n2", i);
		if (live[i] && (r / 400) % 3 == 0) {
			del(m, c, POLICY_KIND_WORKLOADENDPOINT, key);
			live[i] = false;
		} else {
			char wl[16], iface[16], ip[64], labels[64];
			snprintf(wl, sizeof(wl), "w%u", i);
			snprintf(iface, sizeof(iface), "cali%u", i);
			snprintf(ip, sizeof(ip), "[`10.3.%u.%u/32`]", i / 256, i % 256);
			snprintf(labels, sizeof(labels), "{`app`:`a%u`}", (r / 1200) % 3);
			/* No profile, the one profile, one the model lacks first, or the profile
			 * tenth (past the ones policy_ep_labels keeps looked up). */
			static const char *const profs[] = {
			    "[]", "[`pr`]", "[`gone`,`pr`]",
			    "[`g1`,`g2`,`g3`,`g4`,`g5`,`g6`,`g7`,`g8`,`g9`,`pr`]"};
			put(m, c,
			    wep(i < 20 ? "n1" : "n2", wl, iface, ip, labels,
			        profs[(r / 3600) % 4]));
			live[i] = true;
		}
		/* Selectors come and go with a second policy; the third one's test app in {...}
		 * is filled through the label index value by value. */
		if (step % 97 == 0)
			put(m, c,
			    policy("p1", "2", (r / 7) % 2 ? "app == 'a1'" : "app == 'a0'",
			           "[`ingress`]",
			           (r / 11) % 3 == 0
			               ? "[{`action`:`allow`,`source`:{`selector`:`app == 'a2'`}}]"
			           : (r / 11) % 3 == 1
			               ? "[{`action`:`allow`,`source`:{`selector`:`has(team)`}}]"
			               : "[{`action`:`allow`,`source`:{`selector`:"
			                 "`app not in {'a2', 'a1'} && has(team)`}}]",
			           "[]"));
		if (step % 50 == 0)
			put(m, c,
			    profile("pr", (r / 13) % 2 ? "{`team`:`x`}" : "{}", "[`t`]", "[]",
			            "[]"));
		if ((r / 17) % 8 != 0)
			continue; /* batch several changes */
		json_decref(flush_and_check(c, m, &k));
		checked += check_members(&k, m, "app == 'a1' && team == 'x'") +
		           check_members(&k, m, "has(t)") + check_members(&k, m, "app == 'a2'") +
		           check_members(&k, m, "has(team)") +
		           check_members(&k, m, "app not in {'a2', 'a1'} && has(team)");
	}
	assert_true(checked > 100);
	for (unsigned i = 0; i < 400; i++) {
		char key[64];
		if (!live[i])
			continue;
		snprintf(key, sizeof(key), "%s/mesos/w%u/eth0", i < 20 ? "n1" : "n2", i);
		del(m, c, POLICY_KIND_WORKLOADENDPOINT, key);
	}
	json_decref(flush_and_check(c, m, &k));
	sim_free(&k);
	policy_compiler_free(c);
	policy_model_free(m);
}

/* Flush (checked against the simulated kernel), then the rules of chain in the full ruleset. */
static void chain_after_flush(struct policy_compiler *c, struct policy_model *m, struct sim *k,
                              const char *chain, struct rules *r)
{
	json_t *b;

	json_decref(flush_and_check(c, m, k));
	assert_int_equal(policy_compiler_ruleset(c, m, &b), 0);
	rules_of(b, chain, r);
	json_decref(b);
}

/* Endpoint chains test and clear the PASS mark only where a policy can pass: the policies
 * after the first that can are jumped to only while none has passed, and the profiles are
 * reached only through a pass or when no policy applies. A policy that starts or stops passing
 * has the chains of its endpoints rendered again. */
static void test_pass_chains(void **state)
{
	struct policy_model *m = policy_model_new();
	struct policy_compiler *c;
	struct sim k;
	struct rules r;
	static const char *const allow = "[{`action`:`allow`,`protocol`:`tcp`}]";
	static const char *const pass = "[{`action`:`pass`,`protocol`:`udp`}]";
	static const char *const clear =
	    "[{\"mangle\":{\"key\":{\"meta\":{\"key\":\"mark\"}},\"value\":{\"&\":[{"
	    "\"meta\":{\"key\":\"mark\"}},4261412863]}}}]";
	static const char *const cjump =
	    "[{\"match\":{\"op\":\"==\",\"left\":{\"&\":[{\"meta\":{\"key\":\"mark\"}},"
	    "33554432]},\"right\":0}},{\"jump\":{\"target\":\"pi-c\"}}]";
	(void)state;

	sim_init(&k);
	assert_int_equal(policy_compiler_new(&cfg, &c), 0);
	put(m, c, profile("pr", "{}", "[]", "[{`action`:`allow`}]", "[{`action`:`allow`}]"));
	put(m, c, wep("n1", "w", "caliw", "[`10.0.0.1/32`]", "{`app`:`w`}", "[`pr`]"));
	put(m, c, wep("n1", "v", "caliv", "[`10.0.0.2/32`]", "{`app`:`v`}", "[`pr`]"));
	put(m, c, policy("a", "1", "app == 'w'", "[`ingress`]", allow, "[]"));
	put(m, c, policy("b", "2", "app == 'w'", "[`ingress`]", pass, "[]"));
	put(m, c, policy("c", "3", "app == 'w'", "[`ingress`]", allow, "[]"));
	chain_after_flush(c, m, &k, "tw-caliw", &r);
	assert_int_equal(r.n, 7);
	assert_string_equal(r.v[0], clear);
	assert_string_equal(r.v[1], "[{\"jump\":{\"target\":\"pi-a\"}}]");
	assert_string_equal(r.v[2], "[{\"jump\":{\"target\":\"pi-b\"}}]");
	assert_string_equal(r.v[3], cjump);
	has(r.v[4], "33554432]},\"right\":0}},{\"drop\":null}");
	assert_string_equal(r.v[5], "[{\"jump\":{\"target\":\"pri-pr\"}}]");
	assert_string_equal(r.v[6], "[{\"drop\":null}]");
	rules_free(&r);
	/* no policy: the profiles */
	chain_after_flush(c, m, &k, "tw-caliv", &r);
	assert_int_equal(r.n, 2);
	assert_string_equal(r.v[0], "[{\"jump\":{\"target\":\"pri-pr\"}}]");
	assert_string_equal(r.v[1], "[{\"drop\":null}]");
	rules_free(&r);

	/* b stops passing: plain jumps, then drop; no mark, no profiles */
	put(m, c, policy("b", "2", "app == 'w'", "[`ingress`]", allow, "[]"));
	chain_after_flush(c, m, &k, "tw-caliw", &r);
	assert_int_equal(r.n, 4);
	assert_string_equal(r.v[1], "[{\"jump\":{\"target\":\"pi-b\"}}]");
	assert_string_equal(r.v[3], "[{\"drop\":null}]");
	rules_free(&r);

	/* a starts passing: every later policy only while none has passed */
	put(m, c, policy("a", "1", "app == 'w'", "[`ingress`]", pass, "[]"));
	chain_after_flush(c, m, &k, "tw-caliw", &r);
	assert_int_equal(r.n, 7);
	assert_string_equal(r.v[1], "[{\"jump\":{\"target\":\"pi-a\"}}]");
	has(r.v[2], "\"right\":0}},{\"jump\":{\"target\":\"pi-b\"}}]");
	assert_string_equal(r.v[3], cjump);
	rules_free(&r);

	sim_free(&k);
	policy_compiler_free(c);
	policy_model_free(m);
}

/* The same model gives the same JSON, whatever the order it was built in. */
static void test_determinism(void **state)
{
	struct policy_model *m1 = small_model();
	struct policy_model *m2 = policy_model_new();
	struct policy_compiler *c1, *c2;
	json_t *b1, *b2;
	(void)state;

	put(m2, NULL,
	    policy("remote-only", "5", "app == 'nothing-here'", "[`ingress`]",
	           "[{`action`:`allow`,`source`:{`selector`:`never == 'x'`}}]", "[]"));
	put(m2, NULL,
	    policy("pass-all", "20", "", "[`ingress`,`egress`]",
	           "[{`action`:`pass`,`notProtocol`:`udp`}]",
	           "[{`action`:`deny`,`destination`:{`notSelector`:`app == 'db'`,"
	           "`notNets`:[`10.9.0.0/16`]}}]"));
	put(m2, NULL, hep("n2", "eth1", "[`10.0.7.2`]", "{`app`:`db`}"));
	put(m2, NULL, wep("n2", "api", "caliapi", "[`10.0.1.1/32`]", "{`app`:`web`}", "[]"));
	put(m2, NULL, wep("n1", "db", "calidb", "[`10.0.0.2/32`]", "{`app`:`db`}", "[`calico`]"));
	put(m2, NULL,
	    policy("db-allow", "10", "app == 'db'", "[`ingress`]",
	           "[{`action`:`allow`,`protocol`:`tcp`,`source`:{`selector`:`app == 'web'`},"
	           "`destination`:{`ports`:[5432]}},{`action`:`log`},"
	           "{`action`:`deny`,`source`:{`nets`:[`192.168.0.0/16`]}}]",
	           "[]"));
	put(m2, NULL,
	    wep("n1", "web", "caliweb", "[`10.0.0.1/32`,`fd00::1/128`]", "{`app`:`web`}",
	        "[`calico`]"));
	put(m2, NULL,
	    profile("calico", "{`profile`:`calico`}", "[`calico`]",
	            "[{`action`:`allow`,`source`:{`tag`:`calico`}}]", "[{`action`:`allow`}]"));
	assert_int_equal(policy_compiler_new(&cfg, &c1), 0);
	assert_int_equal(policy_compiler_new(&cfg, &c2), 0);
	assert_int_equal(policy_compiler_flush(c1, m1, &b1), 0);
	assert_int_equal(policy_compiler_ruleset(c2, m2, &b2), 0);
	assert_true(json_equal(b1, b2));
	json_decref(b2);
	assert_int_equal(policy_compiler_ruleset(c1, m1, &b2), 0);
	assert_true(json_equal(b1, b2));
	json_decref(b1);
	json_decref(b2);

	/* Configuration: table, prefix and log prefix. */
	struct policy_compile_config cfg2 = {"n1", "other", "tap", "pkt"};
	policy_compiler_free(c2);
	assert_int_equal(policy_compiler_new(&cfg2, &c2), 0);
	assert_int_equal(policy_compiler_ruleset(c2, m1, &b2), 0);
	char *t = json_dumps(b2, JSON_COMPACT);
	has(t, "\"table\":\"other\"");
	has(t, "\"right\":\"tap*\"");
	has(t, "{\"log\":{\"prefix\":\"pkt\"}}");
	hasnt(t, "tabby");
	free(t);
	json_decref(b2);
	policy_compiler_free(c1);
	policy_compiler_free(c2);
	policy_model_free(m1);
	policy_model_free(m2);
}

/* No endpoints at all: base chains, empty maps and sets; fail closed for every "cali*". */
static void test_empty(void **state)
{
	struct policy_model *m = policy_model_new();
	struct policy_compiler *c;
	json_t *b;
	struct rules r;
	(void)state;

	assert_int_equal(policy_compiler_new(&cfg, &c), 0);
	assert_int_equal(policy_compiler_flush(c, m, &b), 0);
	assert_non_null(b);
	assert_null(json_object_get(find(b, "add", "map", "from-wl", NULL), "elem"));
	assert_null(json_object_get(find(b, "add", "set", "wl-ifaces", NULL), "elem"));
	assert_int_equal(count(b, "add", "chain"), 2);
	rules_of(b, "prerouting", &r);
	assert_int_equal(r.n, 8);
	rules_free(&r);
	rules_of(b, "forward", &r);
	assert_int_equal(r.n, 6);
	rules_free(&r);
	if (nft_usable())
		assert_int_equal(nft_load(&b, 1), 0);
	json_decref(b);
	policy_compiler_free(c);
	policy_model_free(m);
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* 1,000 policies, 10,000 endpoints of which 200 local: right at scale (times are printed, not
 * asserted). */
static void test_scale(void **state)
{
	struct policy_model *m = policy_model_new();
	struct policy_compiler *c;
	json_t *b;
	double t0, t1;
	char tier3[64];
	json_t *o;
	(void)state;

	for (unsigned i = 0; i < 10000; i++) {
		char wl[32], iface[16], ip[64], labels[96];
		snprintf(wl, sizeof(wl), "wl%05u", i);
		snprintf(iface, sizeof(iface), "cali%05u", i);
		snprintf(ip, sizeof(ip), "[`10.%u.%u.%u/32`]", i / 65536, (i / 256) % 256, i % 256);
		snprintf(labels, sizeof(labels), "{`app`:`app%u`,`tier`:`t%u`}", i % 500, i % 10);
		put(m, NULL, wep(i < 200 ? "n1" : "n2", wl, iface, ip, labels, "[`base`]"));
	}
	put(m, NULL,
	    profile("base", "{`env`:`prod`}", "[]", "[{`action`:`allow`,`source`:{`tag`:`base`}}]",
	            "[{`action`:`allow`}]"));
	for (unsigned i = 0; i < 1000; i++) {
		char name[32], order[16], sel[64], rules[256];
		snprintf(name, sizeof(name), "pol%04u", i);
		snprintf(order, sizeof(order), "%u", i);
		snprintf(sel, sizeof(sel), "app == 'app%u'", i % 500);
		snprintf(
		    rules, sizeof(rules),
		    "[{`action`:`allow`,`protocol`:`tcp`,`source`:{`selector`:`tier == 't%u'`},"
		    "`destination`:{`ports`:[%u]}}]",
		    i % 10, 1000 + i);
		put(m, NULL, policy(name, order, sel, "[`ingress`]", rules, "[]"));
	}
	assert_int_equal(policy_compiler_new(&cfg, &c), 0);
	t0 = now_ms();
	assert_int_equal(policy_compiler_flush(c, m, &b), 0);
	t1 = now_ms();
	fprintf(stderr, "scale: full compile %.1f ms, %zu commands\n", t1 - t0,
	        json_array_size(cmds_of(b)));
	assert_int_equal(count(b, "add", "rule") > 400, 1);
	assert_non_null(find(b, "add", "chain", "tw-cali00199", NULL));
	assert_null(find(b, "add", "chain", "tw-cali00200", NULL));
	/* Local endpoints have app0..app199: policies 0..199 and 500..699 apply. */
	assert_non_null(find(b, "add", "chain", "pi-pol0199", NULL));
	assert_non_null(find(b, "add", "chain", "pi-pol0699", NULL));
	assert_null(find(b, "add", "chain", "pi-pol0200", NULL));
	set_name("tier == 't3'", 4, tier3);
	o = find(b, "add", "set", tier3, NULL);
	assert_non_null(o);
	assert_int_equal(json_array_size(json_object_get(o, "elem")), 1000);
	json_decref(b);

	/* One changed policy (a new selector): its chain and one new set. */
	put(m, c,
	    policy("pol0001", "1", "app == 'app1'", "[`ingress`]",
	           "[{`action`:`allow`,`source`:{`selector`:`app == 'app7'`}}]", "[]"));
	t0 = now_ms();
	assert_int_equal(policy_compiler_flush(c, m, &b), 0);
	t1 = now_ms();
	fprintf(stderr, "scale: one changed policy %.2f ms, %zu commands\n", t1 - t0,
	        json_array_size(cmds_of(b)));
	assert_non_null(find(b, "flush", "chain", "pi-pol0001", NULL));
	assert_int_equal(count(b, "add", "set"), 1); /* IPv4: no endpoint here has IPv6 */
	json_decref(b);

	/* One new local endpoint. */
	put(m, c,
	    wep("n1", "new", "calinew", "[`10.200.0.1/32`]", "{`app`:`app3`,`tier`:`t3`}",
	        "[`base`]"));
	t0 = now_ms();
	assert_int_equal(policy_compiler_flush(c, m, &b), 0);
	t1 = now_ms();
	fprintf(stderr, "scale: one new local endpoint %.2f ms, %zu commands\n", t1 - t0,
	        json_array_size(cmds_of(b)));
	assert_non_null(find(b, "add", "chain", "tw-calinew", NULL));
	o = find(b, "add", "element", tier3, NULL);
	assert_non_null(o);
	json_decref(b);

	/* One new remote endpoint. */
	put(m, c, wep("n2", "new2", "calinew2", "[`10.200.0.2/32`]", "{`tier`:`t3`}", "[]"));
	t0 = now_ms();
	assert_int_equal(policy_compiler_flush(c, m, &b), 0);
	t1 = now_ms();
	fprintf(stderr, "scale: one new remote endpoint %.2f ms, %zu commands\n", t1 - t0,
	        json_array_size(cmds_of(b)));
	assert_int_equal(json_array_size(cmds_of(b)), 1);
	json_decref(b);

	policy_compiler_free(c);
	policy_model_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_full_structure), cmocka_unit_test(test_rule_rendering),
	    cmocka_unit_test(test_names),          cmocka_unit_test(test_incremental),
	    cmocka_unit_test(test_idle_sets),      cmocka_unit_test(test_random_changes),
	    cmocka_unit_test(test_endpoint_churn), cmocka_unit_test(test_pass_chains),
	    cmocka_unit_test(test_determinism),    cmocka_unit_test(test_empty),
	    cmocka_unit_test(test_scale),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
