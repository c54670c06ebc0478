/*
 * The policy model (policy_model_*): put, replace and remove of every kind, evaluation order,
 * effective labels through profiles and tags, the address indexes, resolving command-line
 * endpoint names, refusal of malformed resources, and scale (10,000 endpoints, 1,000 policies).
 *
 * Resources are written here in normalized form (policy_resource_normalize()'s output) as JSON
 * with ` for ", so that selectors can use ' freely.
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

#include "policy/label_index.h"
#include "policy/policy.h"
#include "policy/tests/fixture.h"

/* Put that must fail with -EINVAL and a message containing want. */
static void put_bad(struct policy_model *m, const char *text, const char *want)
{
	json_t *v = J(text);
	char err[512] = "untouched";
	int rv = policy_model_put(m, v, err, sizeof(err));

	if (rv != -EINVAL)
		fail_msg("expected -EINVAL, got %d for %s", rv, text);
	if (strstr(err, want) == NULL)
		fail_msg("expected \"%s\" in \"%s\"", want, err);
	assert_null(strchr(err, '\n'));
	json_decref(v);
}

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

/* A normalized policy. */
static char *policy_text(const char *name, const char *order, const char *selector,
                         const char *ingress)
{
	return fmt("{`apiVersion`:`v1`,`kind`:`policy`,`metadata`:{`name`:`%s`},`spec`:{%s%s"
	           "`selector`:`%s`,`types`:[`ingress`],`ingress`:%s,`egress`:[],"
	           "`doNotTrack`:false,`preDNAT`:false}}",
	           name, order != NULL ? "`order`:" : "", order != NULL ? order : "", selector,
	           ingress);
}

static void put_policy(struct policy_model *m, const char *name, const char *order)
{
	char *o = order != NULL ? fmt("%s,", order) : NULL;
	char *t = policy_text(name, o, "", "[]");

	put_ok(m, t);
	free(t);
	free(o);
}

static char *wep_text(const char *node, const char *workload, const char *name, const char *ips,
                      const char *labels, const char *profiles)
{
	return fmt("{`apiVersion`:`v1`,`kind`:`workloadEndpoint`,`metadata`:{`name`:`%s`,"
	           "`workload`:`%s`,`orchestrator`:`cni`,`node`:`%s`,`labels`:%s},`spec`:{"
	           "`ipNetworks`:%s,`profiles`:%s,`interfaceName`:`cali0123456789a`}}",
	           name, workload, node, labels, ips, profiles);
}

static void put_wep(struct policy_model *m, const char *node, const char *workload,
                    const char *name, const char *ips, const char *labels, const char *profiles)
{
	char *t = wep_text(node, workload, name, ips, labels, profiles);

	put_ok(m, t);
	free(t);
}

static void put_profile(struct policy_model *m, const char *name, const char *labels,
                        const char *tags)
{
	char *t = fmt("{`apiVersion`:`v1`,`kind`:`profile`,`metadata`:{`name`:`%s`,`labels`:%s,"
	              "`tags`:%s},`spec`:{`ingress`:[{`action`:`allow`}],`egress`:[]}}",
	              name, labels, tags);

	put_ok(m, t);
	free(t);
}

static void put_node(struct policy_model *m, const char *name, const char *bgp)
{
	char *t =
	    fmt("{`apiVersion`:`v1`,`kind`:`node`,`metadata`:{`name`:`%s`},`spec`:{`bgp`:%s}}",
	        name, bgp);

	put_ok(m, t);
	free(t);
}

static struct ipam_addr A(const char *s) {
	struct ipam_addr a;

	assert_true(ipam_addr_parse(s, &a));
	return a;
}

/* ---- put, replace, remove ---- */

static void
test_policy_put_replace_remove(void **state)
{
	struct policy_model *m = policy_model_new();
	const struct policy_policy *p;
	unsigned n;
	(void)state;

	assert_non_null(m);
	put_ok(m, "{`apiVersion`:`v1`,`kind`:`policy`,`metadata`:{`name`:`web`,`annotations`:"
	          "{`a`:`b`}},`spec`:{`order`:100,`selector`:`tier == 'web'`,`types`:[`ingress`,"
	          "`egress`],`ingress`:[{`action`:`allow`,`protocol`:`tcp`,`destination`:{"
	          "`ports`:[80,`8000:8080`]}}],`egress`:[{`action`:`log`},{`action`:`pass`}],"
	          "`doNotTrack`:false,`preDNAT`:false}}");
	p = policy_model_policy(m, "web");
	assert_non_null(p);
	assert_string_equal(p->name, "web");
	assert_true(p->has_order);
	assert_true(p->order == 100.0);
	assert_string_equal(p->selector_text, "tier == 'web'");
	assert_string_equal(policy_selector_canonical(p->selector), "tier == \"web\"");
	assert_true(p->ingress_type);
	assert_true(p->egress_type);
	assert_false(p->do_not_track);
	assert_int_equal(p->ingress.n, 1);
	assert_int_equal(p->ingress.v[0].action, POLICY_ACTION_ALLOW);
	assert_int_equal(p->ingress.v[0].protocol, 6);
	assert_int_equal(p->ingress.v[0].dst.n_ports, 2);
	assert_int_equal(p->ingress.v[0].dst.ports[0].lo, 80);
	assert_int_equal(p->ingress.v[0].dst.ports[0].hi, 80);
	assert_int_equal(p->ingress.v[0].dst.ports[1].lo, 8000);
	assert_int_equal(p->ingress.v[0].dst.ports[1].hi, 8080);
	assert_int_equal(p->egress.n, 2);
	assert_int_equal(p->egress.v[0].action, POLICY_ACTION_LOG);
	assert_int_equal(p->egress.v[1].action, POLICY_ACTION_PASS);
	policy_model_policies(m, &n);
	assert_int_equal(n, 1);

	/* Replace: new selector, no order, only egress. */
	put_ok(m, "{`apiVersion`:`v1`,`kind`:`policy`,`metadata`:{`name`:`web`},`spec`:{"
	          "`selector`:``,`types`:[`egress`],`ingress`:[],`egress`:[{`action`:`deny`}],"
	          "`doNotTrack`:true,`preDNAT`:false}}");
	p = policy_model_policy(m, "web");
	assert_non_null(p);
	assert_false(p->has_order);
	assert_true(policy_selector_is_all(p->selector));
	assert_false(p->ingress_type);
	assert_true(p->egress_type);
	assert_true(p->do_not_track);
	assert_int_equal(p->ingress.n, 0);
	assert_int_equal(p->egress.v[0].action, POLICY_ACTION_DENY);
	policy_model_policies(m, &n);
	assert_int_equal(n, 1);

	assert_int_equal(policy_model_remove(m, POLICY_KIND_POLICY, "web"), 0);
	assert_null(policy_model_policy(m, "web"));
	policy_model_policies(m, &n);
	assert_int_equal(n, 0);
	assert_int_equal(policy_model_remove(m, POLICY_KIND_POLICY, "web"), -ENOENT);
	policy_model_free(m);
}

static void test_profile_endpoint_node_put_replace_remove(void **state)
{
	struct policy_model *m = policy_model_new();
	const struct policy_profile *pr;
	const struct policy_endpoint *ep;
	const struct policy_node *nd;
	struct policy_endpoint *const *eps;
	unsigned n;
	(void)state;

	put_profile(m, "web", "{`role`:`web`}", "[`t1`,`t2`]");
	pr = policy_model_profile(m, "web");
	assert_non_null(pr);
	assert_string_equal(policy_labels_get(&pr->labels, "role"), "web");
	assert_int_equal(pr->n_tags, 2);
	assert_string_equal(pr->tags[1], "t2");
	assert_int_equal(pr->ingress.n, 1);
	put_profile(m, "web", "{}", "[]");
	pr = policy_model_profile(m, "web");
	assert_int_equal(pr->n_tags, 0);
	assert_null(policy_labels_get(&pr->labels, "role"));

	put_wep(m, "host-1", "c1", "eth0", "[`10.0.0.1/32`,`fd00::1/128`]", "{`app`:`x`}",
	        "[`web`]");
	ep = policy_model_endpoint(m, POLICY_KIND_WORKLOADENDPOINT, "host-1/cni/c1/eth0");
	assert_non_null(ep);
	assert_int_equal(ep->kind, POLICY_KIND_WORKLOADENDPOINT);
	assert_string_equal(ep->node, "host-1");
	assert_string_equal(ep->orchestrator, "cni");
	assert_string_equal(ep->workload, "c1");
	assert_string_equal(ep->name, "eth0");
	assert_string_equal(ep->interface, "cali0123456789a");
	assert_int_equal(ep->n_addrs, 2);
	assert_int_equal(ep->addrs[1].family, 6);
	assert_int_equal(ep->n_profiles, 1);
	assert_string_equal(ep->profiles[0], "web");
	assert_null(policy_model_endpoint(m, POLICY_KIND_HOSTENDPOINT, "host-1/cni/c1/eth0"));

	put_ok(m, "{`apiVersion`:`v1`,`kind`:`hostEndpoint`,`metadata`:{`name`:`eth1`,`node`:"
	          "`host-1`,`labels`:{`zone`:`a`}},`spec`:{`expectedIPs`:[`10.0.7.11`],"
	          "`profiles`:[`web`]}}");
	ep = policy_model_endpoint(m, POLICY_KIND_HOSTENDPOINT, "host-1/eth1");
	assert_non_null(ep);
	assert_null(ep->workload);
	assert_null(ep->orchestrator);
	assert_null(ep->interface);
	assert_int_equal(ep->n_addrs, 1);

	/* Endpoints come in key order whatever their kind. */
	put_wep(m, "host-0", "c9", "eth0", "[]", "{}", "[]");
	eps = policy_model_endpoints(m, &n);
	assert_int_equal(n, 3);
	assert_string_equal(eps[0]->key, "host-0/cni/c9/eth0");
	assert_string_equal(eps[1]->key, "host-1/cni/c1/eth0");
	assert_string_equal(eps[2]->key, "host-1/eth1");

	/* Replace a workload endpoint: labels and addresses follow. */
	put_wep(m, "host-1", "c1", "eth0", "[`10.0.0.2/32`]", "{`app`:`y`}", "[]");
	ep = policy_model_endpoint(m, POLICY_KIND_WORKLOADENDPOINT, "host-1/cni/c1/eth0");
	assert_string_equal(policy_labels_get(&ep->labels, "app"), "y");
	assert_int_equal(ep->n_addrs, 1);
	policy_model_endpoints(m, &n);
	assert_int_equal(n, 3);

	put_node(m, "host-1",
	         "{`asNumber`:65001,`ipv4Address`:`10.0.7.11/24`,"
	         "`ipv6Address`:`fd00:7::11/64`}");
	nd = policy_model_node(m, "host-1");
	assert_non_null(nd);
	assert_int_equal(nd->addrs[0].family, 4);
	assert_int_equal(nd->addrs[1].family, 6);
	struct ipam_addr a = A("10.0.7.11");
	assert_memory_equal(nd->addrs[0].b, a.b, 16);
	put_node(m, "host-1", "{`ipv4Address`:`10.0.7.12/24`}");
	nd = policy_model_node(m, "host-1");
	assert_int_equal(nd->addrs[1].family, 0);
	policy_model_nodes(m, &n);
	assert_int_equal(n, 1);

	assert_int_equal(policy_model_remove(m, POLICY_KIND_PROFILE, "web"), 0);
	assert_int_equal(policy_model_remove(m, POLICY_KIND_PROFILE, "web"), -ENOENT);
	assert_int_equal(policy_model_remove(m, POLICY_KIND_HOSTENDPOINT, "host-1/cni/c1/eth0"),
	                 -ENOENT);
	assert_int_equal(policy_model_remove(m, POLICY_KIND_WORKLOADENDPOINT, "host-1/cni/c1/eth0"),
	                 0);
	assert_int_equal(policy_model_remove(m, POLICY_KIND_HOSTENDPOINT, "host-1/eth1"), 0);
	assert_int_equal(policy_model_remove(m, POLICY_KIND_NODE, "host-1"), 0);
	assert_int_equal(policy_model_remove(m, POLICY_KIND_NODE, "host-1"), -ENOENT);
	assert_int_equal(policy_model_remove(m, POLICY_KIND_IPPOOL, "10.0.0.0/16"), -ENOENT);
	assert_null(policy_model_profile(m, "web"));
	assert_null(policy_model_node(m, "host-1"));
	policy_model_endpoints(m, &n);
	assert_int_equal(n, 1);
	policy_model_free(m);
}

/* ---- evaluation order ---- */

static void test_policy_order(void **state)
{
	struct policy_model *m = policy_model_new();
	struct policy_policy *const *v;
	unsigned n;
	(void)state;

	put_policy(m, "z-unordered", NULL);
	put_policy(m, "b", "10");
	put_policy(m, "a-unordered", NULL);
	put_policy(m, "c", "1.5");
	put_policy(m, "a", "10");
	put_policy(m, "B", "10");
	put_policy(m, "neg", "-3");
	put_policy(m, "big", "1e9");
	v = policy_model_policies(m, &n);
	assert_int_equal(n, 8);
	static const char *const want[] = {"neg", "c",   "B",           "a",
	                                   "b",   "big", "a-unordered", "z-unordered"};
	for (unsigned i = 0; i < n; i++)
		assert_string_equal(v[i]->name, want[i]);

	/* A replaced policy moves to its new place. */
	put_policy(m, "neg", NULL);
	put_policy(m, "z-unordered", "0");
	v = policy_model_policies(m, &n);
	assert_int_equal(n, 8);
	static const char *const want2[] = {"z-unordered", "c",   "B",           "a",
	                                    "b",           "big", "a-unordered", "neg"};
	for (unsigned i = 0; i < n; i++)
		assert_string_equal(v[i]->name, want2[i]);
	assert_int_equal(policy_model_remove(m, POLICY_KIND_POLICY, "a"), 0);
	v = policy_model_policies(m, &n);
	assert_int_equal(n, 7);
	assert_string_equal(v[2]->name, "B");
	assert_string_equal(v[3]->name, "b");
	policy_model_free(m);
}

/* ---- effective labels ---- */

static void test_effective_labels(void **state)
{
	struct policy_model *m = policy_model_new();
	const struct policy_endpoint *ep;
	struct policy_selector *sel;
	char err[256];
	(void)state;

	put_wep(m, "h", "w", "e", "[`10.0.0.1/32`]", "{`app`:`own`}",
	        "[`first`,`missing`,`second`]");
	ep = policy_model_endpoint(m, POLICY_KIND_WORKLOADENDPOINT, "h/cni/w/e");
	assert_non_null(ep);
	/* Profiles not yet in the model contribute nothing. */
	assert_string_equal(policy_endpoint_label(m, ep, "app"), "own");
	assert_null(policy_endpoint_label(m, ep, "role"));
	assert_null(policy_endpoint_label(m, ep, "calico"));

	put_profile(m, "second", "{`role`:`second`,`zone`:`b`,`app`:`second`}", "[`calico`,`t2`]");
	put_profile(m, "first", "{`role`:`first`,`t2`:`label-beats-later-tag`}", "[`role`,`t1`]");
	/* Own labels first; then per profile in order its labels, then its tags. */
	assert_string_equal(policy_endpoint_label(m, ep, "app"), "own");
	assert_string_equal(policy_endpoint_label(m, ep, "role"), "first");
	assert_string_equal(policy_endpoint_label(m, ep, "zone"), "b");
	assert_string_equal(policy_endpoint_label(m, ep, "t1"), "");
	assert_string_equal(policy_endpoint_label(m, ep, "calico"), "");
	assert_string_equal(policy_endpoint_label(m, ep, "t2"), "label-beats-later-tag");
	assert_null(policy_endpoint_label(m, ep, "nothing"));

	assert_int_equal(policy_selector_parse("has(calico) && role == 'first' && app == 'own'",
	                                       &sel, NULL, err, sizeof(err)),
	                 0);
	assert_true(policy_endpoint_matches(m, ep, sel));
	policy_selector_free(sel);
	assert_int_equal(policy_selector_parse("zone != 'b'", &sel, NULL, err, sizeof(err)), 0);
	assert_false(policy_endpoint_matches(m, ep, sel));
	/* Removing the profile removes what it gave. */
	assert_int_equal(policy_model_remove(m, POLICY_KIND_PROFILE, "second"), 0);
	assert_true(policy_endpoint_matches(m, ep, sel));
	assert_null(policy_endpoint_label(m, ep, "calico"));
	policy_selector_free(sel);

	/* A tag is has(tag) in rules. */
	put_ok(m, "{`apiVersion`:`v1`,`kind`:`profile`,`metadata`:{`name`:`p`},`spec`:{"
	          "`ingress`:[{`action`:`allow`,`source`:{`tag`:`t1`,`notTag`:`db`}}],"
	          "`egress`:[]}}");
	const struct policy_profile *pr = policy_model_profile(m, "p");
	assert_string_equal(pr->ingress.v[0].src.tag, "t1");
	assert_string_equal(policy_selector_canonical(pr->ingress.v[0].src.tag_sel), "has(t1)");
	assert_string_equal(policy_selector_canonical(pr->ingress.v[0].src.not_tag_sel), "has(db)");
	assert_true(policy_endpoint_matches(m, ep, pr->ingress.v[0].src.tag_sel));
	assert_false(policy_endpoint_matches(m, ep, pr->ingress.v[0].src.not_tag_sel));

	/* Beyond the profiles a policy_ep_labels keeps looked up (POLICY_EP_LABELS_PROFILES), one
	 * the model lacks among them: the same order, read through a view and without one. */
	put_wep(m, "h", "many", "e", "[`10.0.0.2/32`]", "{}",
	        "[`g1`,`g2`,`g3`,`g4`,`g5`,`g6`,`g7`,`g8`,`g9`,`tenth`,`eleventh`]");
	put_profile(m, "g2", "{`early`:`g2`}", "[]");
	put_profile(m, "tenth", "{`late`:`tenth`}", "[`tag10`]");
	put_profile(m, "eleventh", "{`late`:`eleventh`,`tag10`:`label`}", "[]");
	ep = policy_model_endpoint(m, POLICY_KIND_WORKLOADENDPOINT, "h/cni/many/e");
	assert_non_null(ep);
	struct policy_ep_labels l;
	policy_ep_labels_init(&l, m, ep);
	assert_string_equal(policy_ep_labels_get(&l, "early"), "g2");
	assert_string_equal(policy_ep_labels_get(&l, "late"), "tenth");
	assert_string_equal(policy_ep_labels_get(&l, "tag10"), "");
	assert_null(policy_ep_labels_get(&l, "nothing"));
	assert_string_equal(policy_endpoint_label(m, ep, "late"), "tenth");
	assert_string_equal(policy_endpoint_label(m, ep, "tag10"), "");
	assert_int_equal(
	    policy_selector_parse("late == 'tenth' && has(early)", &sel, NULL, err, sizeof(err)),
	    0);
	assert_true(policy_ep_labels_match(&l, sel));
	assert_true(policy_endpoint_matches(m, ep, sel));
	policy_selector_free(sel);
	policy_model_free(m);
}

/* ---- rules ---- */

static void test_rule_fields(void **state)
{
	struct policy_model *m = policy_model_new();
	const struct policy_policy *p;
	const struct policy_rule *r;
	(void)state;

	put_ok(m, "{`apiVersion`:`v1`,`kind`:`policy`,`metadata`:{`name`:`r`},`spec`:{"
	          "`selector`:`all()`,`types`:[`ingress`],`egress`:[],`ingress`:["
	          "{`action`:`deny`,`ipVersion`:4,`protocol`:`udp`,`notProtocol`:132,"
	          "`source`:{`net`:`10.0.0.0/8`,`nets`:[`192.168.0.0/16`],`notNet`:`10.1.0.0/16`,"
	          "`selector`:`a == 'b'`,`notSelector`:`c == 'd'`,`notPorts`:[`1:1023`]},"
	          "`destination`:{`notNets`:[`10.2.0.0/16`,`10.3.0.0/16`],`ports`:[53]}},"
	          "{`action`:`allow`,`protocol`:`icmpv6`,`icmp`:{`type`:128,`code`:0},"
	          "`notICMP`:{`type`:1}},"
	          "{`action`:`allow`,`protocol`:200}],"
	          "`doNotTrack`:false,`preDNAT`:false}}");
	p = policy_model_policy(m, "r");
	assert_non_null(p);
	assert_int_equal(p->ingress.n, 3);
	r = &p->ingress.v[0];
	assert_int_equal(r->action, POLICY_ACTION_DENY);
	assert_int_equal(r->ip_version, 4);
	assert_int_equal(r->protocol, 17);
	assert_int_equal(r->not_protocol, 132);
	assert_int_equal(r->icmp_type, -1);
	assert_int_equal(r->not_icmp_type, -1);
	assert_int_equal(r->src.n_nets, 2);
	assert_int_equal(r->src.nets[0].prefix, 8);
	assert_int_equal(r->src.nets[1].prefix, 16);
	assert_int_equal(r->src.n_not_nets, 1);
	assert_non_null(r->src.selector);
	assert_non_null(r->src.not_selector);
	assert_null(r->src.tag_sel);
	assert_int_equal(r->src.n_not_ports, 1);
	assert_int_equal(r->src.not_ports[0].lo, 1);
	assert_int_equal(r->src.not_ports[0].hi, 1023);
	assert_int_equal(r->dst.n_not_nets, 2);
	assert_int_equal(r->dst.n_ports, 1);
	assert_int_equal(r->dst.n_nets, 0);
	assert_null(r->dst.selector);
	r = &p->ingress.v[1];
	assert_int_equal(r->ip_version, 0);
	assert_int_equal(r->protocol, 58);
	assert_int_equal(r->not_protocol, -1);
	assert_int_equal(r->icmp_type, 128);
	assert_int_equal(r->icmp_code, 0);
	assert_int_equal(r->not_icmp_type, 1);
	assert_int_equal(r->not_icmp_code, -1);
	assert_int_equal(p->ingress.v[2].protocol, 200);
	policy_model_free(m);
}

/* Types absent (a form from before types existed in the normalized shape): v1 defaulting. */
static void test_types_default(void **state)
{
	struct policy_model *m = policy_model_new();
	const struct policy_policy *p;
	(void)state;

	put_ok(m, "{`kind`:`policy`,`metadata`:{`name`:`i`},`spec`:{}}");
	p = policy_model_policy(m, "i");
	assert_true(p->ingress_type);
	assert_false(p->egress_type);
	put_ok(m,
	       "{`kind`:`policy`,`metadata`:{`name`:`e`},`spec`:{`egress`:[{`action`:`allow`}]}}");
	p = policy_model_policy(m, "e");
	assert_false(p->ingress_type);
	assert_true(p->egress_type);
	put_ok(m, "{`kind`:`policy`,`metadata`:{`name`:`b`},`spec`:{`ingress`:[{`action`:`allow`}],"
	          "`egress`:[{`action`:`allow`}]}}");
	p = policy_model_policy(m, "b");
	assert_true(p->ingress_type);
	assert_true(p->egress_type);
	policy_model_free(m);
}

/* ---- address indexes ---- */

static void test_address_index(void **state)
{
	struct policy_model *m = policy_model_new();
	struct ipam_addr a;
	const struct policy_endpoint *ep;
	(void)state;

	put_wep(m, "h", "w1", "e", "[`10.0.0.1/32`,`fd00::1/128`]", "{}", "[]");
	put_ok(m, "{`kind`:`hostEndpoint`,`metadata`:{`name`:`eth0`,`node`:`h`},"
	          "`spec`:{`interfaceName`:`eth0`,`expectedIPs`:[`10.0.7.11`,`fd00:7::11`]}}");
	put_node(m, "h", "{`ipv4Address`:`10.0.7.11/24`}");

	a = A("10.0.0.1");
	ep = policy_model_endpoint_by_addr(m, &a);
	assert_non_null(ep);
	assert_string_equal(ep->key, "h/cni/w1/e");
	a = A("fd00::1");
	assert_ptr_equal(policy_model_endpoint_by_addr(m, &a), ep);
	a = A("fd00:7::11");
	assert_string_equal(policy_model_endpoint_by_addr(m, &a)->key, "h/eth0");
	a = A("10.0.7.11");
	assert_string_equal(policy_model_endpoint_by_addr(m, &a)->key, "h/eth0");
	assert_string_equal(policy_model_node_by_addr(m, &a)->name, "h");
	a = A("10.0.0.2");
	assert_null(policy_model_endpoint_by_addr(m, &a));
	assert_null(policy_model_node_by_addr(m, &a));
	/* ::ffff:10.0.0.1 is not 10.0.0.1 */
	a = A("::ffff:10.0.0.1");
	assert_null(policy_model_endpoint_by_addr(m, &a));

	/* Replacing moves the addresses. */
	put_wep(m, "h", "w1", "e", "[`10.0.0.2/32`]", "{}", "[]");
	a = A("10.0.0.1");
	assert_null(policy_model_endpoint_by_addr(m, &a));
	a = A("fd00::1");
	assert_null(policy_model_endpoint_by_addr(m, &a));
	a = A("10.0.0.2");
	assert_string_equal(policy_model_endpoint_by_addr(m, &a)->key, "h/cni/w1/e");

	/* Two claims of one address: the first key answers, whatever the arrival order, and the
	 * other takes over when it goes. */
	put_wep(m, "h", "w3", "e", "[`10.0.0.2/32`]", "{}", "[]");
	put_wep(m, "h", "w0", "e", "[`10.0.0.2/32`]", "{}", "[]");
	assert_string_equal(policy_model_endpoint_by_addr(m, &a)->key, "h/cni/w0/e");
	assert_int_equal(policy_model_remove(m, POLICY_KIND_WORKLOADENDPOINT, "h/cni/w0/e"), 0);
	assert_string_equal(policy_model_endpoint_by_addr(m, &a)->key, "h/cni/w1/e");
	assert_int_equal(policy_model_remove(m, POLICY_KIND_WORKLOADENDPOINT, "h/cni/w1/e"), 0);
	assert_string_equal(policy_model_endpoint_by_addr(m, &a)->key, "h/cni/w3/e");
	assert_int_equal(policy_model_remove(m, POLICY_KIND_WORKLOADENDPOINT, "h/cni/w3/e"), 0);
	assert_null(policy_model_endpoint_by_addr(m, &a));

	/* Node addresses follow the node. */
	put_node(m, "h", "{`ipv6Address`:`fd00:7::12/64`}");
	a = A("10.0.7.11");
	assert_null(policy_model_node_by_addr(m, &a));
	a = A("fd00:7::12");
	assert_string_equal(policy_model_node_by_addr(m, &a)->name, "h");
	assert_int_equal(policy_model_remove(m, POLICY_KIND_NODE, "h"), 0);
	assert_null(policy_model_node_by_addr(m, &a));
	policy_model_free(m);
}

/* ---- resolve ---- */

static void expect_resolved(const struct policy_model *m, const char *spec, int family,
                            const char *want)
{
	struct ipam_addr a;
	char err[256];
	char buf[IPAM_ADDR_STRLEN];
	int rv = policy_model_resolve(m, spec, family, &a, err, sizeof(err));

	if (rv != 0)
		fail_msg("resolve %s (%d): %d %s", spec, family, rv, err);
	assert_string_equal(ipam_addr_format(&a, buf), want);
}

static void expect_unresolved(const struct policy_model *m, const char *spec, int family, int rv,
                              const char *want)
{
	struct ipam_addr a;
	char err[256];

	assert_int_equal(policy_model_resolve(m, spec, family, &a, err, sizeof(err)), rv);
	if (strstr(err, want) == NULL)
		fail_msg("expected \"%s\" in \"%s\"", want, err);
}

static void test_resolve(void **state)
{
	struct policy_model *m = policy_model_new();
	(void)state;

	put_wep(m, "h1", "web", "eth0", "[`fd00::5/128`,`10.0.0.5/32`]", "{}", "[]");
	put_wep(m, "h1", "db", "eth0", "[`10.0.0.6/32`]", "{}", "[]");
	put_wep(m, "h2", "db", "eth1", "[`10.0.0.7/32`]", "{}", "[]");
	put_wep(m, "h2", "a/b", "eth0", "[`10.0.0.8/32`]", "{}", "[]");
	put_ok(m, "{`kind`:`hostEndpoint`,`metadata`:{`name`:`eth0`,`node`:`h1`},"
	          "`spec`:{`expectedIPs`:[`10.0.7.1`]}}");
	put_node(m, "h1", "{`ipv4Address`:`10.0.7.1/24`,`ipv6Address`:`fd00:7::1/64`}");
	put_node(m, "h2", "{`ipv6Address`:`fd00:7::2/64`}");

	expect_resolved(m, "192.168.1.1", 0, "192.168.1.1");
	expect_resolved(m, "192.168.1.1", 4, "192.168.1.1");
	expect_resolved(m, "fd00::9", 6, "fd00::9");
	expect_unresolved(m, "192.168.1.1", 6, -EINVAL, "192.168.1.1 is not an IPv6 address");
	/* Full key; IPv4 preferred; a family asked for. */
	expect_resolved(m, "h1/cni/web/eth0", 0, "10.0.0.5");
	expect_resolved(m, "h1/cni/web/eth0", 6, "fd00::5");
	expect_unresolved(m, "h1/cni/db/eth0", 6, -EINVAL, "h1/cni/db/eth0 has no IPv6 address");
	expect_resolved(m, "h2/cni/a/b/eth0", 0, "10.0.0.8");
	/* WORKLOAD/NAME and WORKLOAD. */
	expect_resolved(m, "web", 0, "10.0.0.5");
	expect_resolved(m, "web/eth0", 6, "fd00::5");
	expect_resolved(m, "db/eth1", 0, "10.0.0.7");
	expect_resolved(m, "a/b", 0, "10.0.0.8");
	expect_resolved(m, "a/b/eth0", 0, "10.0.0.8");
	expect_unresolved(m, "db", 0, -EINVAL, "db is ambiguous: 2 endpoints fit");
	expect_unresolved(m, "db", 0, -EINVAL, "h1/cni/db/eth0");
	expect_unresolved(m, "db", 0, -EINVAL, "h2/cni/db/eth1");
	/* Host endpoint and host. */
	expect_resolved(m, "h1/eth0", 0, "10.0.7.1");
	expect_resolved(m, "host:h1", 0, "10.0.7.1");
	expect_resolved(m, "host:h1", 6, "fd00:7::1");
	expect_resolved(m, "host:h2", 0, "fd00:7::2");
	expect_unresolved(m, "host:h2", 4, -EINVAL, "host:h2 has no IPv4 address");
	expect_unresolved(m, "host:h3", 0, -ENOENT, "no node named 'h3'");
	expect_unresolved(m, "nothing", 0, -ENOENT, "nothing: no such");
	expect_unresolved(m, "web/eth9", 0, -ENOENT, "web/eth9");
	expect_unresolved(m, "", 0, -EINVAL, "empty");
	expect_unresolved(m, "web", 5, -EINVAL, "not an IP version");
	policy_model_free(m);
}

/* ---- malformed input ---- */

static void test_bad_input(void **state)
{
	struct policy_model *m = policy_model_new();
	json_t *v;
	char err[256];
	unsigned n;
	(void)state;

	put_bad(m, "[]", "not a mapping");
	put_bad(m, "{}", "kind");
	put_bad(m, "{`kind`:3}", "kind");
	put_bad(m, "{`kind`:`gadget`,`metadata`:{`name`:`x`}}", "unknown kind 'gadget'");
	put_bad(m, "{`kind`:`ipPool`,`metadata`:{`cidr`:`10.0.0.0/16`},`spec`:{}}",
	        "not part of the policy model");
	put_bad(m, "{`kind`:`bgpPeer`,`metadata`:{`scope`:`global`,`peerIP`:`10.0.0.1`},`spec`:{}}",
	        "not part of the policy model");
	put_bad(m, "{`kind`:`policy`}", "metadata");
	put_bad(m, "{`kind`:`policy`,`metadata`:[]}", "metadata");
	put_bad(m, "{`kind`:`policy`,`metadata`:{}}", "metadata.name: missing");
	put_bad(m, "{`kind`:`policy`,`metadata`:{`name`:7}}", "metadata.name: not a string");
	put_bad(m, "{`kind`:`policy`,`metadata`:{`name`:`p`},`spec`:[]}", "spec");
	put_bad(m, "{`kind`:`policy`,`metadata`:{`name`:`p`},`spec`:{`selector`:`a ==`}}",
	        "policy p: spec.selector:");
	put_bad(m, "{`kind`:`policy`,`metadata`:{`name`:`p`},`spec`:{`order`:`1`}}",
	        "spec.order: not a number");
	put_bad(m, "{`kind`:`policy`,`metadata`:{`name`:`p`},`spec`:{`types`:[`sideways`]}}",
	        "spec.types[0]");
	put_bad(m, "{`kind`:`policy`,`metadata`:{`name`:`p`},`spec`:{`ingress`:{}}}",
	        "ingress: not a list");
	put_bad(m, "{`kind`:`policy`,`metadata`:{`name`:`p`},`spec`:{`ingress`:[7]}}",
	        "spec.ingress[0]: not a mapping");
	put_bad(m, "{`kind`:`policy`,`metadata`:{`name`:`p`},`spec`:{`ingress`:[{}]}}",
	        "spec.ingress[0].action: missing");
	put_bad(m,
	        "{`kind`:`policy`,`metadata`:{`name`:`p`},`spec`:{`ingress`:[{`action`:`Allow`}]}}",
	        "'Allow' is not an action");
	put_bad(m,
	        "{`kind`:`policy`,`metadata`:{`name`:`p`},`spec`:{`egress`:[{`action`:`allow`,"
	        "`protocl`:`tcp`}]}}",
	        "spec.egress[0]: unknown field 'protocl'");
	put_bad(m,
	        "{`kind`:`policy`,`metadata`:{`name`:`p`},`spec`:{`ingress`:[{`action`:`allow`,"
	        "`protocol`:`tcpx`}]}}",
	        "spec.ingress[0].protocol: 'tcpx' is not a protocol");
	put_bad(m,
	        "{`kind`:`policy`,`metadata`:{`name`:`p`},`spec`:{`ingress`:[{`action`:`allow`,"
	        "`protocol`:0}]}}",
	        "spec.ingress[0].protocol");
	put_bad(m,
	        "{`kind`:`policy`,`metadata`:{`name`:`p`},`spec`:{`ingress`:[{`action`:`allow`,"
	        "`ipVersion`:5}]}}",
	        "ipVersion");
	put_bad(m,
	        "{`kind`:`policy`,`metadata`:{`name`:`p`},`spec`:{`ingress`:[{`action`:`allow`,"
	        "`icmp`:{`code`:1}}]}}",
	        "icmp.type: missing");
	put_bad(m,
	        "{`kind`:`policy`,`metadata`:{`name`:`p`},`spec`:{`ingress`:[{`action`:`allow`,"
	        "`source`:{`nets`:[`10.0.0.1/8`]}}]}}",
	        "spec.ingress[0].source.nets[0]");
	put_bad(m,
	        "{`kind`:`policy`,`metadata`:{`name`:`p`},`spec`:{`ingress`:[{`action`:`allow`,"
	        "`source`:{`nets`:[`10.0.0.0/8`]},`destination`:{`notNet`:`fd00::/8`}}]}}",
	        "fd00::/8 is not IPv4");
	put_bad(m,
	        "{`kind`:`policy`,`metadata`:{`name`:`p`},`spec`:{`ingress`:[{`action`:`allow`,"
	        "`ipVersion`:6,`source`:{`nets`:[`10.0.0.0/8`]}}]}}",
	        "10.0.0.0/8 is not IPv6");
	put_bad(m,
	        "{`kind`:`policy`,`metadata`:{`name`:`p`},`spec`:{`ingress`:[{`action`:`allow`,"
	        "`destination`:{`ports`:[70000]}}]}}",
	        "spec.ingress[0].destination.ports[0]");
	put_bad(m,
	        "{`kind`:`policy`,`metadata`:{`name`:`p`},`spec`:{`ingress`:[{`action`:`allow`,"
	        "`destination`:{`ports`:[`90:80`]}}]}}",
	        "90:80 is not a port range");
	put_bad(m,
	        "{`kind`:`policy`,`metadata`:{`name`:`p`},`spec`:{`ingress`:[{`action`:`allow`,"
	        "`destination`:{`ports`:[`http`]}}]}}",
	        "'http' is not a port");
	put_bad(m,
	        "{`kind`:`policy`,`metadata`:{`name`:`p`},`spec`:{`ingress`:[{`action`:`allow`,"
	        "`destination`:{`selector`:`a == 'b`}}]}}",
	        "spec.ingress[0].destination.selector");
	put_bad(m,
	        "{`kind`:`policy`,`metadata`:{`name`:`p`},`spec`:{`ingress`:[{`action`:`allow`,"
	        "`destination`:{`weird`:1}}]}}",
	        "unknown field 'weird'");
	put_bad(m,
	        "{`kind`:`policy`,`metadata`:{`name`:`p`},`spec`:{`ingress`:[{`action`:`allow`,"
	        "`source`:{`tag`:`a) || all(`}}]}}",
	        "spec.ingress[0].source.tag: 'a) || all(' is not a tag");
	put_bad(m, "{`kind`:`policy`,`metadata`:{`name`:`p`},`spec`:{`doNotTrack`:`yes`}}",
	        "doNotTrack");
	put_bad(m,
	        "{`kind`:`profile`,`metadata`:{`name`:`p`},`spec`:{`egress`:[{`action`:`pass`}]}}",
	        "profile p: spec.egress[0].action: 'pass' is not an action of a profile");
	put_bad(m, "{`kind`:`profile`,`metadata`:{`name`:`p`,`labels`:{`a`:1}},`spec`:{}}",
	        "metadata.labels");
	put_bad(m, "{`kind`:`profile`,`metadata`:{`name`:`p`,`tags`:[1]},`spec`:{}}",
	        "metadata.tags[0]");
	put_bad(m,
	        "{`kind`:`workloadEndpoint`,`metadata`:{`name`:`e`,`node`:`h`,`orchestrator`:"
	        "`cni`},`spec`:{}}",
	        "metadata.workload: missing");
	put_bad(m,
	        "{`kind`:`workloadEndpoint`,`metadata`:{`name`:`e`,`node`:`h`,`orchestrator`:"
	        "`cni`,`workload`:`w`},`spec`:{`ipNetworks`:[`10.0.0.0/24`]}}",
	        "workloadEndpoint h/cni/w/e: spec.ipNetworks[0]: 10.0.0.0/24 is not a single");
	put_bad(m,
	        "{`kind`:`workloadEndpoint`,`metadata`:{`name`:`e`,`node`:`h`,`orchestrator`:"
	        "`cni`,`workload`:`w`},`spec`:{`ipNetworks`:[`10.0.0.1`]}}",
	        "spec.ipNetworks[0]");
	put_bad(m,
	        "{`kind`:`workloadEndpoint`,`metadata`:{`name`:`e`,`node`:`h`,`orchestrator`:"
	        "`cni`,`workload`:`w`},`spec`:{`profiles`:`p`}}",
	        "spec.profiles: not a list");
	put_bad(m,
	        "{`kind`:`hostEndpoint`,`metadata`:{`name`:`e`,`node`:`h`},"
	        "`spec`:{`expectedIPs`:[`10.0.0.1/32`]}}",
	        "hostEndpoint h/e: spec.expectedIPs[0]: '10.0.0.1/32' is not an IP address");
	put_bad(
	    m,
	    "{`kind`:`node`,`metadata`:{`name`:`n`},`spec`:{`bgp`:{`ipv4Address`:`fd00::1/64`}}}",
	    "node n: spec.bgp.ipv4Address");
	put_bad(m, "{`kind`:`node`,`metadata`:{`name`:`n`},`spec`:{`bgp`:7}}", "spec.bgp");

	/* A refused replacement leaves the old resource in place. */
	put_policy(m, "keep", "5");
	put_bad(m, "{`kind`:`policy`,`metadata`:{`name`:`keep`},`spec`:{`selector`:`!`}}",
	        "policy keep");
	assert_non_null(policy_model_policy(m, "keep"));
	assert_true(policy_model_policy(m, "keep")->order == 5.0);
	policy_model_policies(m, &n);
	assert_int_equal(n, 1);
	policy_model_endpoints(m, &n);
	assert_int_equal(n, 0);
	assert_null(policy_model_profile(m, "p"));

	/* NULL is refused too. */
	assert_int_equal(policy_model_put(m, NULL, err, sizeof(err)), -EINVAL);
	v = json_string("policy");
	assert_int_equal(policy_model_put(m, v, err, sizeof(err)), -EINVAL);
	json_decref(v);
	policy_model_free(m);
}

/* ---- scale ---- */

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_scale(void **state)
{
	struct policy_model *m = policy_model_new();
	json_t *wep = J("{`apiVersion`:`v1`,`kind`:`workloadEndpoint`,`metadata`:{`name`:`eth0`,"
	                "`workload`:`w`,`orchestrator`:`cni`,`node`:`h`,`labels`:{`app`:`x`}},"
	                "`spec`:{`ipNetworks`:[`10.0.0.1/32`],`profiles`:[`p`],"
	                "`interfaceName`:`cali0`}}");
	json_t *pol = J("{`apiVersion`:`v1`,`kind`:`policy`,`metadata`:{`name`:`p`},`spec`:{"
	                "`order`:1,`selector`:`app == 'x'`,`types`:[`ingress`],`ingress`:"
	                "[{`action`:`allow`}],`egress`:[],`doNotTrack`:false,`preDNAT`:false}}");
	json_t *meta = json_object_get(wep, "metadata");
	json_t *nets = json_object_get(json_object_get(wep, "spec"), "ipNetworks");
	struct policy_endpoint *const *eps;
	struct policy_policy *const *pols;
	struct ipam_addr a;
	char err[256];
	char buf[64];
	double t0 = now();
	unsigned n;
	(void)state;

	/* Inserted in an order that is not the key order, so that inserts land everywhere. */
	for (unsigned i = 0; i < 10000; i++) {
		unsigned k = (i * 7919) % 10000;
		snprintf(buf, sizeof(buf), "w%05u", k);
		json_object_set_new(meta, "workload", json_string(buf));
		snprintf(buf, sizeof(buf), "10.%u.%u.1/32", k / 256, k % 256);
		json_array_set_new(nets, 0, json_string(buf));
		assert_int_equal(policy_model_put(m, wep, err, sizeof(err)), 0);
	}
	json_t *pmeta = json_object_get(pol, "metadata");
	json_t *pspec = json_object_get(pol, "spec");
	for (unsigned i = 0; i < 1000; i++) {
		unsigned k = (i * 613) % 1000;
		snprintf(buf, sizeof(buf), "pol-%04u", k);
		json_object_set_new(pmeta, "name", json_string(buf));
		json_object_set_new(pspec, "order", json_integer(k % 10));
		assert_int_equal(policy_model_put(m, pol, err, sizeof(err)), 0);
	}
	eps = policy_model_endpoints(m, &n);
	assert_int_equal(n, 10000);
	for (unsigned i = 1; i < n; i++)
		assert_true(strcmp(eps[i - 1]->key, eps[i]->key) < 0);
	pols = policy_model_policies(m, &n);
	assert_int_equal(n, 1000);
	for (unsigned i = 1; i < n; i++)
		assert_true(pols[i - 1]->order < pols[i]->order ||
		            (pols[i - 1]->order == pols[i]->order &&
		             strcmp(pols[i - 1]->name, pols[i]->name) < 0));
	for (unsigned k = 0; k < 10000; k++) {
		snprintf(buf, sizeof(buf), "10.%u.%u.1", k / 256, k % 256);
		a = A(buf);
		const struct policy_endpoint *ep = policy_model_endpoint_by_addr(m, &a);
		assert_non_null(ep);
		snprintf(buf, sizeof(buf), "h/cni/w%05u/eth0", k);
		assert_string_equal(ep->key, buf);
	}
	/* Remove every other endpoint, then the rest; the index follows. */
	for (unsigned pass = 0; pass < 2; pass++) {
		for (unsigned k = pass; k < 10000; k += 2) {
			snprintf(buf, sizeof(buf), "h/cni/w%05u/eth0", k);
			assert_int_equal(policy_model_remove(m, POLICY_KIND_WORKLOADENDPOINT, buf),
			                 0);
		}
		policy_model_endpoints(m, &n);
		assert_int_equal(n, pass == 0 ? 5000 : 0);
	}
	a = A("10.0.1.1");
	assert_null(policy_model_endpoint_by_addr(m, &a));
	for (unsigned k = 0; k < 1000; k++) {
		snprintf(buf, sizeof(buf), "pol-%04u", k);
		assert_int_equal(policy_model_remove(m, POLICY_KIND_POLICY, buf), 0);
	}
	policy_model_policies(m, &n);
	assert_int_equal(n, 0);
	/* Generous even under sanitizers: a resort per put would take far longer. */
	if (now() - t0 > 20.0)
		fail_msg("10,000 endpoints and 1,000 policies took %.1f s", now() - t0);
	json_decref(wep);
	json_decref(pol);
	policy_model_free(m);
}

/* Endpoints by key through many puts, replacements and removals: every lookup answers the
 * endpoint the sorted array holds, or none. */
static void test_endpoint_lookup_churn(void **state)
{
	struct policy_model *m = policy_model_new();
	bool live[600] = {false};
	unsigned seed = 41;
	(void)state;

	assert_non_null(m);
	for (int step = 0; step < 4000; step++) {
		unsigned r = (unsigned)rand_r(&seed), i = r % 600;
		char name[16], key[64], ip[32];
		snprintf(name, sizeof(name), "w%u", i);
		snprintf(key, sizeof(key), "h/cni/%s/eth0", name);
		if (live[i] && (r / 600) % 3 == 0) {
			assert_int_equal(policy_model_remove(m, POLICY_KIND_WORKLOADENDPOINT, key),
			                 0);
			live[i] = false;
		} else {
			snprintf(ip, sizeof(ip), "[`10.9.%u.%u/32`]", i / 256, i % 256);
			put_wep(m, "h", name, "eth0", ip, (r / 7) % 2 ? "{`a`:`b`}" : "{}", "[]");
			live[i] = true;
		}
		if (step % 250 != 0)
			continue;
		unsigned n;
		struct policy_endpoint *const *eps = policy_model_endpoints(m, &n);
		unsigned nlive = 0;
		for (unsigned k = 0; k < 600; k++) {
			snprintf(key, sizeof(key), "h/cni/w%u/eth0", k);
			const struct policy_endpoint *e =
			    policy_model_endpoint(m, POLICY_KIND_WORKLOADENDPOINT, key);
			assert_true((e != NULL) == live[k]);
			assert_null(policy_model_endpoint(m, POLICY_KIND_HOSTENDPOINT, key));
			if (e != NULL)
				assert_string_equal(e->key, key);
			nlive += live[k];
		}
		assert_int_equal(n, nlive);
		for (unsigned k = 0; k < n; k++)
			assert_ptr_equal(policy_model_endpoint(m, eps[k]->kind, eps[k]->key),
			                 eps[k]);
	}
	policy_model_free(m);
}

/* The compiler's label index keeps an entry only while some endpoint is filed under it: with
 * task ids as labels (Mesos), an entry per value ever seen grew for the life of the agent. */
static void test_label_index_forgets(void **state)
{
	enum { N = 1000 };
	struct policy_model *m = policy_model_new();
	struct label_index *x = label_index_new();
	struct label_refs *refs = calloc(N, sizeof(*refs));
	struct policy_endpoint *const *eps;
	unsigned n;
	(void)state;

	assert_non_null(m);
	assert_non_null(x);
	assert_non_null(refs);
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < N; i++) {
			char name[32], labels[64], ips[32];
			snprintf(name, sizeof(name), "w%04d", i);
			snprintf(labels, sizeof(labels), "{`app`:`web`,`task`:`r%d-%d`}", round, i);
			snprintf(ips, sizeof(ips), "[`10.0.%d.%d/32`]", i / 256, i % 256);
			put_wep(m, "h", name, "eth0", ips, labels, "[]");
		}
		eps = policy_model_endpoints(m, &n);
		assert_int_equal(n, N);
		for (unsigned i = 0; i < n; i++)
			assert_int_equal(label_index_set(x, &refs[i], &refs[i], m, eps[i]), 0);
		/* app, app=web, task, and one task=... per endpoint: the first round's are gone */
		assert_int_equal(label_index_size(x), 3 + N);
	}
	for (unsigned i = 0; i < N; i++) {
		assert_int_equal(label_index_set(x, &refs[i], &refs[i], m, NULL), 0);
		label_refs_free(&refs[i]);
	}
	assert_int_equal(label_index_size(x), 0);
	free(refs);
	label_index_free(x);
	policy_model_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_policy_put_replace_remove),
	    cmocka_unit_test(test_profile_endpoint_node_put_replace_remove),
	    cmocka_unit_test(test_endpoint_lookup_churn),
	    cmocka_unit_test(test_policy_order),
	    cmocka_unit_test(test_effective_labels),
	    cmocka_unit_test(test_rule_fields),
	    cmocka_unit_test(test_types_default),
	    cmocka_unit_test(test_address_index),
	    cmocka_unit_test(test_resolve),
	    cmocka_unit_test(test_bad_input),
	    cmocka_unit_test(test_scale),
	    cmocka_unit_test(test_label_index_forgets),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
