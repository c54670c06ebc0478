/*
 * The verdict evaluator (policy_evaluate, policy_trace_to_json, policy_trace_request): one test
 * per rule of section 3.9 and the matching rules of 3.8, the frontend/database example of
 * docs/policy.md, and the trace request. Resources are normalized JSON with ` for ".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static void put_wep(struct policy_model *m, const char *node, const char *workload, const char *ips,
                    const char *labels, const char *profiles)
{
	char *t = fmt("{`apiVersion`:`v1`,`kind`:`workloadEndpoint`,`metadata`:{`name`:`eth0`,"
	              "`workload`:`%s`,`orchestrator`:`cni`,`node`:`%s`,`labels`:%s},`spec`:{"
	              "`ipNetworks`:%s,`profiles`:%s,`interfaceName`:`cali0`}}",
	              workload, node, labels, ips, profiles);

	put_ok(m, t);
	free(t);
}

static void put_node(struct policy_model *m, const char *name, const char *v4)
{
	char *t = fmt("{`apiVersion`:`v1`,`kind`:`node`,`metadata`:{`name`:`%s`},`spec`:{`bgp`:{"
	              "`ipv4Address`:`%s/24`}}}",
	              name, v4);

	put_ok(m, t);
	free(t);
}

/* A policy; ingress and egress are JSON rule lists, types as the normalizer writes them. */
static void put_policy(struct policy_model *m, const char *name, const char *order,
                       const char *selector, const char *types, const char *ingress,
                       const char *egress)
{
	char *t = fmt("{`apiVersion`:`v1`,`kind`:`policy`,`metadata`:{`name`:`%s`},`spec`:{"
	              "`order`:%s,`selector`:`%s`,`types`:%s,`ingress`:%s,`egress`:%s,"
	              "`doNotTrack`:false,`preDNAT`:false}}",
	              name, order, selector, types, ingress, egress);

	put_ok(m, t);
	free(t);
}

static void put_profile(struct policy_model *m, const char *name, const char *tags,
                        const char *ingress, const char *egress)
{
	char *t = fmt("{`apiVersion`:`v1`,`kind`:`profile`,`metadata`:{`name`:`%s`,`tags`:%s},"
	              "`spec`:{`ingress`:%s,`egress`:%s}}",
	              name, tags, ingress, egress);

	put_ok(m, t);
	free(t);
}

static struct ipam_addr A(const char *s) {
	struct ipam_addr a;

	assert_true(ipam_addr_parse(s, &a));
	return a;
}

static bool
carries(uint8_t proto)
{
	return proto == 6 || proto == 17;
}

static struct policy_flow flow(const char *src, const char *dst, uint8_t proto, uint16_t dport)
{
	struct policy_flow f = {.src = A(src),
	                        .dst = A(dst),
	                        .protocol = proto,
	                        .src_port = carries(proto) ? 40000 : 0,
	                        .dst_port = dport,
	                        .icmp_type = -1,
	                        .icmp_code = -1};
	return f;
}

static struct policy_flow icmp(const char *src, const char *dst, int type, int code)
{
	struct policy_flow f = {.src = A(src),
	                        .dst = A(dst),
	                        .protocol = strchr(src, ':') != NULL ? 58 : 1,
	                        .icmp_type = (int16_t)type,
	                        .icmp_code = (int16_t)code};
	return f;
}

static struct policy_trace eval(const struct policy_model *m, struct policy_flow f)
{
	struct policy_trace t;

	assert_int_equal(policy_evaluate(m, &f, &t), 0);
	return t;
}

static void expect_side(const struct policy_trace_side *s, bool policed, int verdict,
                        const char *reason)
{
	if (strcmp(s->reason, reason) != 0)
		fail_msg("reason \"%s\", expected \"%s\"", s->reason, reason);
	assert_int_equal(s->policed, policed);
	assert_int_equal(s->verdict, verdict);
}

static void expect_step(const struct policy_trace_side *s, unsigned i, bool profile,
                        const char *name, int outcome, int rule)
{
	assert_true(i < s->n_steps);
	assert_int_equal(s->steps[i].profile, profile);
	assert_string_equal(s->steps[i].name, name);
	assert_int_equal(s->steps[i].outcome, outcome);
	assert_int_equal(s->steps[i].rule, rule);
}

#define ALLOW    POLICY_VERDICT_ALLOW
#define DENY     POLICY_VERDICT_DENY
#define NO_MATCH POLICY_OUTCOME_NO_MATCH

/* ---- the worked example ---- */

/*
 * host-1 (10.0.7.1): web-1 192.168.0.5 app=frontend, other-1 192.168.0.20 app=other;
 * host-2 (10.0.7.2): db-1 192.168.0.9 app=database. Every workload has the profile calico
 * (tag calico; ingress: allow from tag calico; egress: allow).
 */
static struct policy_model *example(void)
{
	struct policy_model *m = policy_model_new();

	assert_non_null(m);
	put_node(m, "host-1", "10.0.7.1");
	put_node(m, "host-2", "10.0.7.2");
	put_profile(m, "calico", "[`calico`]", "[{`action`:`allow`,`source`:{`tag`:`calico`}}]",
	            "[{`action`:`allow`}]");
	put_wep(m, "host-1", "web-1", "[`192.168.0.5/32`]", "{`app`:`frontend`}", "[`calico`]");
	put_wep(m, "host-1", "other-1", "[`192.168.0.20/32`]", "{`app`:`other`}", "[`calico`]");
	put_wep(m, "host-2", "db-1", "[`192.168.0.9/32`]", "{`app`:`database`}", "[`calico`]");
	put_policy(m, "frontend-policy", "50", "app == 'frontend'", "[`ingress`,`egress`]",
	           "[{`action`:`allow`,`protocol`:`tcp`,`destination`:{`ports`:[80]}}]",
	           "[{`action`:`allow`,`protocol`:`tcp`,`destination`:{`selector`:"
	           "`app == 'database'`,`ports`:[6379]}}]");
	put_policy(m, "database-policy", "60", "app == 'database'", "[`ingress`]",
	           "[{`action`:`allow`,`protocol`:`tcp`,`source`:{`selector`:`app == 'frontend'`},"
	           "`destination`:{`ports`:[6379]}}]",
	           "[]");
	return m;
}

static void test_frontend_database(void **state)
{
	struct policy_model *m = example();
	struct policy_trace t;
	(void)state;

	/* frontend -> database on 6379: allowed on both sides by the policies. */
	t = eval(m, flow("192.168.0.5", "192.168.0.9", 6, 6379));
	assert_int_equal(t.verdict, ALLOW);
	assert_string_equal(t.egress.endpoint->key, "host-1/cni/web-1/eth0");
	assert_string_equal(t.ingress.endpoint->key, "host-2/cni/db-1/eth0");
	expect_side(&t.egress, true, ALLOW, "allowed by policy frontend-policy egress rule 0");
	expect_side(&t.ingress, true, ALLOW, "allowed by policy database-policy ingress rule 0");
	assert_int_equal(t.egress.n_steps, 1);
	expect_step(&t.egress, 0, false, "frontend-policy", POLICY_OUTCOME_ALLOW, 0);
	assert_int_equal(t.ingress.n_steps, 1);
	policy_trace_free(&t);

	/* frontend -> database on 22: both sides deny, by default deny. */
	t = eval(m, flow("192.168.0.5", "192.168.0.9", 6, 22));
	assert_int_equal(t.verdict, DENY);
	expect_side(&t.egress, true, DENY, "denied: policies applied but none allowed or passed");
	expect_side(&t.ingress, true, DENY, "denied: policies applied but none allowed or passed");
	expect_step(&t.egress, 0, false, "frontend-policy", NO_MATCH, -1);
	expect_step(&t.ingress, 0, false, "database-policy", NO_MATCH, -1);
	policy_trace_free(&t);

	/* udp to 6379 does not match the tcp rules. */
	t = eval(m, flow("192.168.0.5", "192.168.0.9", 17, 6379));
	assert_int_equal(t.verdict, DENY);
	policy_trace_free(&t);

	/* other -> frontend on 80: no policy for other's egress, so its profile allows; the
	 * frontend's ingress policy allows port 80. */
	t = eval(m, flow("192.168.0.20", "192.168.0.5", 6, 80));
	assert_int_equal(t.verdict, ALLOW);
	expect_side(&t.egress, true, ALLOW, "allowed by profile calico egress rule 0");
	expect_step(&t.egress, 0, true, "calico", POLICY_OUTCOME_ALLOW, 0);
	expect_side(&t.ingress, true, ALLOW, "allowed by policy frontend-policy ingress rule 0");
	policy_trace_free(&t);

	/* other -> database: egress allowed by the profile, ingress denied by default. */
	t = eval(m, flow("192.168.0.20", "192.168.0.9", 6, 6379));
	assert_int_equal(t.verdict, DENY);
	assert_int_equal(t.egress.verdict, ALLOW);
	expect_side(&t.ingress, true, DENY, "denied: policies applied but none allowed or passed");
	policy_trace_free(&t);

	/* The outside world -> frontend on 80: only the ingress side is policed. */
	t = eval(m, flow("8.8.8.8", "192.168.0.5", 6, 80));
	assert_int_equal(t.verdict, ALLOW);
	assert_null(t.egress.endpoint);
	expect_side(&t.egress, false, ALLOW, "not a workload endpoint: not policed");
	assert_int_equal(t.egress.n_steps, 0);
	policy_trace_free(&t);

	/* frontend -> the outside world: its egress policy allows only the database. */
	t = eval(m, flow("192.168.0.5", "8.8.8.8", 6, 443));
	assert_int_equal(t.verdict, DENY);
	expect_side(&t.ingress, false, ALLOW, "not a workload endpoint: not policed");
	policy_trace_free(&t);

	/* Neither side is a workload: allowed, nothing policed. */
	t = eval(m, flow("8.8.8.8", "8.8.4.4", 17, 53));
	assert_int_equal(t.verdict, ALLOW);
	assert_false(t.egress.policed);
	assert_false(t.ingress.policed);
	policy_trace_free(&t);
	policy_model_free(m);
}

/* ---- which policies apply ---- */

static void test_types(void **state)
{
	struct policy_model *m = example();
	struct policy_trace t;
	(void)state;

	/* database-policy has types [ingress]: db-1's egress is decided by its profile. */
	t = eval(m, flow("192.168.0.9", "8.8.8.8", 6, 443));
	expect_side(&t.egress, true, ALLOW, "allowed by profile calico egress rule 0");
	assert_int_equal(t.egress.n_steps, 1);
	policy_trace_free(&t);

	/* Types is what counts, not whether rules exist: an egress type with no egress rules
	 * is a default deny for egress. */
	put_policy(m, "database-policy", "60", "app == 'database'", "[`ingress`,`egress`]", "[]",
	           "[]");
	t = eval(m, flow("192.168.0.9", "8.8.8.8", 6, 443));
	expect_side(&t.egress, true, DENY, "denied: policies applied but none allowed or passed");
	policy_trace_free(&t);

	/* Without types the v1 default applies: no egress rules -> ingress only. */
	put_ok(m, "{`kind`:`policy`,`metadata`:{`name`:`database-policy`},`spec`:{`order`:60,"
	          "`selector`:`app == 'database'`,`ingress`:[]}}");
	t = eval(m, flow("192.168.0.9", "8.8.8.8", 6, 443));
	expect_side(&t.egress, true, ALLOW, "allowed by profile calico egress rule 0");
	policy_trace_free(&t);
	policy_model_free(m);
}

static void test_host_endpoint_only_policies(void **state)
{
	struct policy_model *m = example();
	struct policy_trace t;
	(void)state;

	/* doNotTrack and preDNAT policies selecting everything do not touch workloads. */
	put_ok(m,
	       "{`kind`:`policy`,`metadata`:{`name`:`untracked`},`spec`:{`order`:1,`selector`:``,"
	       "`types`:[`ingress`,`egress`],`ingress`:[{`action`:`deny`}],`egress`:[{`action`:"
	       "`deny`}],`doNotTrack`:true,`preDNAT`:false}}");
	put_ok(m,
	       "{`kind`:`policy`,`metadata`:{`name`:`prednat`},`spec`:{`order`:2,`selector`:``,"
	       "`types`:[`ingress`],`ingress`:[{`action`:`deny`}],`egress`:[],`doNotTrack`:false,"
	       "`preDNAT`:true}}");
	t = eval(m, flow("192.168.0.5", "192.168.0.9", 6, 6379));
	assert_int_equal(t.verdict, ALLOW);
	assert_int_equal(t.egress.n_steps, 1);
	assert_int_equal(t.ingress.n_steps, 1);
	policy_trace_free(&t);
	policy_model_free(m);
}

/* ---- order, log, pass, default deny, profiles ---- */

static void test_order_and_log(void **state)
{
	struct policy_model *m = example();
	struct policy_trace t;
	(void)state;

	/* Runs before frontend-policy; logs, then decides nothing for port 80 traffic... */
	put_policy(m, "audit", "10", "all()", "[`ingress`]",
	           "[{`action`:`log`},{`action`:`log`,`protocol`:`udp`},{`action`:`deny`,"
	           "`protocol`:`tcp`,`destination`:{`ports`:[23]}},{`action`:`log`,`protocol`:"
	           "`tcp`}]",
	           "[]");
	/* ...and an unordered policy after frontend-policy, never reached for port 80. */
	put_policy(m, "zz-last", "null", "all()", "[`ingress`]", "[{`action`:`deny`}]", "[]");
	t = eval(m, flow("192.168.0.20", "192.168.0.5", 6, 80));
	assert_int_equal(t.verdict, ALLOW);
	assert_int_equal(t.ingress.n_steps, 2);
	expect_step(&t.ingress, 0, false, "audit", NO_MATCH, -1);
	assert_int_equal(t.ingress.steps[0].n_logged, 2);
	assert_int_equal(t.ingress.steps[0].logged[0], 0);
	assert_int_equal(t.ingress.steps[0].logged[1], 3);
	expect_step(&t.ingress, 1, false, "frontend-policy", POLICY_OUTCOME_ALLOW, 0);
	assert_int_equal(t.ingress.steps[1].n_logged, 0);
	policy_trace_free(&t);

	/* Port 23: audit denies; logged rules before the decision only. */
	t = eval(m, flow("192.168.0.20", "192.168.0.5", 6, 23));
	assert_int_equal(t.verdict, DENY);
	expect_side(&t.ingress, true, DENY, "denied by policy audit ingress rule 2");
	assert_int_equal(t.ingress.n_steps, 1);
	assert_int_equal(t.ingress.steps[0].n_logged, 1);
	policy_trace_free(&t);

	/* Port 81: audit and frontend-policy match nothing; zz-last denies. */
	t = eval(m, flow("192.168.0.20", "192.168.0.5", 6, 81));
	expect_side(&t.ingress, true, DENY, "denied by policy zz-last ingress rule 0");
	assert_int_equal(t.ingress.n_steps, 3);
	expect_step(&t.ingress, 2, false, "zz-last", POLICY_OUTCOME_DENY, 0);
	policy_trace_free(&t);

	/* A lower order on zz-last puts it first. */
	put_policy(m, "zz-last", "1", "all()", "[`ingress`]", "[{`action`:`deny`}]", "[]");
	t = eval(m, flow("192.168.0.20", "192.168.0.5", 6, 80));
	expect_side(&t.ingress, true, DENY, "denied by policy zz-last ingress rule 0");
	assert_int_equal(t.ingress.n_steps, 1);
	policy_trace_free(&t);
	policy_model_free(m);
}

static void test_pass(void **state)
{
	struct policy_model *m = example();
	struct policy_trace t;
	(void)state;

	/* pass skips frontend-policy (which would deny port 8080) and goes to the profiles. */
	put_policy(m, "passer", "1", "app == 'frontend'", "[`ingress`]",
	           "[{`action`:`log`},{`action`:`pass`,`protocol`:`tcp`}]", "[]");
	t = eval(m, flow("192.168.0.20", "192.168.0.5", 6, 8080));
	assert_int_equal(t.verdict, ALLOW);
	expect_side(&t.ingress, true, ALLOW, "allowed by profile calico ingress rule 0");
	assert_int_equal(t.ingress.n_steps, 2);
	expect_step(&t.ingress, 0, false, "passer", POLICY_OUTCOME_PASS, 1);
	assert_int_equal(t.ingress.steps[0].n_logged, 1);
	expect_step(&t.ingress, 1, true, "calico", POLICY_OUTCOME_ALLOW, 0);
	policy_trace_free(&t);

	/* From outside (no calico tag) the profile does not match: denied, no profile allowed. */
	t = eval(m, flow("8.8.8.8", "192.168.0.5", 6, 8080));
	expect_side(&t.ingress, true, DENY, "denied: no profile allowed");
	expect_step(&t.ingress, 1, true, "calico", NO_MATCH, -1);
	policy_trace_free(&t);

	/* A pass to an endpoint without profiles is a deny. */
	put_wep(m, "host-1", "web-2", "[`192.168.0.6/32`]", "{`app`:`frontend`}", "[]");
	t = eval(m, flow("192.168.0.20", "192.168.0.6", 6, 8080));
	expect_side(&t.ingress, true, DENY,
	            "denied: passed by policy passer ingress rule 1 to profiles, but the endpoint "
	            "has none");
	policy_trace_free(&t);
	policy_model_free(m);
}

static void test_profiles(void **state)
{
	struct policy_model *m = policy_model_new();
	struct policy_trace t;
	(void)state;

	put_profile(m, "quiet", "[]", "[{`action`:`log`},{`action`:`allow`,`protocol`:`udp`}]",
	            "[]");
	put_profile(m, "strict", "[]",
	            "[{`action`:`deny`,`protocol`:`tcp`,`destination`:{"
	            "`ports`:[22]}},{`action`:`allow`,`protocol`:`tcp`}]",
	            "[{`action`:`allow`}]");
	put_wep(m, "h", "a", "[`10.0.0.1/32`]", "{}", "[`quiet`,`gone`,`strict`]");
	put_wep(m, "h", "bare", "[`10.0.0.2/32`]", "{}", "[]");

	/* A profile with no match falls through to the next; a missing one matches nothing. */
	t = eval(m, flow("10.9.9.9", "10.0.0.1", 6, 80));
	expect_side(&t.ingress, true, ALLOW, "allowed by profile strict ingress rule 1");
	assert_int_equal(t.ingress.n_steps, 3);
	expect_step(&t.ingress, 0, true, "quiet", NO_MATCH, -1);
	assert_int_equal(t.ingress.steps[0].n_logged, 1);
	assert_false(t.ingress.steps[0].missing);
	expect_step(&t.ingress, 1, true, "gone", NO_MATCH, -1);
	assert_true(t.ingress.steps[1].missing);
	expect_step(&t.ingress, 2, true, "strict", POLICY_OUTCOME_ALLOW, 1);
	policy_trace_free(&t);

	/* The first profile decides when it matches. */
	t = eval(m, flow("10.9.9.9", "10.0.0.1", 17, 53));
	expect_side(&t.ingress, true, ALLOW, "allowed by profile quiet ingress rule 1");
	assert_int_equal(t.ingress.n_steps, 1);
	policy_trace_free(&t);

	t = eval(m, flow("10.9.9.9", "10.0.0.1", 6, 22));
	expect_side(&t.ingress, true, DENY, "denied by profile strict ingress rule 0");
	policy_trace_free(&t);

	/* After the last profile: deny. */
	t = eval(m, icmp("10.9.9.9", "10.0.0.1", 8, 0));
	expect_side(&t.ingress, true, DENY, "denied: no profile allowed");
	assert_int_equal(t.ingress.n_steps, 3);
	policy_trace_free(&t);

	/* No policy and no profile: deny everything. */
	t = eval(m, flow("10.9.9.9", "10.0.0.2", 6, 80));
	expect_side(&t.ingress, true, DENY,
	            "denied: no policy applies and the endpoint has no profiles");
	assert_int_equal(t.ingress.n_steps, 0);
	policy_trace_free(&t);
	t = eval(m, flow("10.0.0.2", "10.9.9.9", 6, 80));
	expect_side(&t.egress, true, DENY,
	            "denied: no policy applies and the endpoint has no profiles");
	policy_trace_free(&t);

	/* Every profile missing. */
	put_wep(m, "h", "lost", "[`10.0.0.3/32`]", "{}", "[`nope`]");
	t = eval(m, flow("10.9.9.9", "10.0.0.3", 6, 80));
	expect_side(&t.ingress, true, DENY, "denied: no profile allowed");
	assert_true(t.ingress.steps[0].missing);
	policy_trace_free(&t);
	policy_model_free(m);
}

/* ---- which sides are policed ---- */

static void test_host_to_local_workload(void **state)
{
	struct policy_model *m = example();
	struct policy_trace t;
	(void)state;

	/* db-1's ingress would deny port 22, but host-2 is db-1's own host. */
	t = eval(m, flow("10.0.7.2", "192.168.0.9", 6, 22));
	assert_int_equal(t.verdict, ALLOW);
	assert_string_equal(t.egress.node->name, "host-2");
	expect_side(&t.egress, false, ALLOW, "not a workload endpoint (node host-2): not policed");
	expect_side(&t.ingress, false, ALLOW, "from its own host (node host-2): not policed");
	policy_trace_free(&t);

	/* From another host: policed. */
	t = eval(m, flow("10.0.7.1", "192.168.0.9", 6, 22));
	assert_int_equal(t.verdict, DENY);
	assert_true(t.ingress.policed);
	policy_trace_free(&t);
	policy_model_free(m);
}

static void test_workload_to_own_host(void **state)
{
	struct policy_model *m = example();
	struct policy_trace t;
	(void)state;

	/* other-1 on host-1: its profile allows egress, then the host is not policed. */
	t = eval(m, flow("192.168.0.20", "10.0.7.1", 6, 5051));
	assert_int_equal(t.verdict, ALLOW);
	expect_side(&t.egress, true, ALLOW, "allowed by profile calico egress rule 0");
	expect_side(&t.ingress, false, ALLOW, "to its own host: allowed after egress policy");
	assert_string_equal(t.ingress.node->name, "host-1");
	policy_trace_free(&t);

	/* web-1's egress policy allows only the database: its own host is denied too. */
	t = eval(m, flow("192.168.0.5", "10.0.7.1", 6, 5051));
	assert_int_equal(t.verdict, DENY);
	expect_side(&t.egress, true, DENY, "denied: policies applied but none allowed or passed");
	expect_side(&t.ingress, false, ALLOW, "to its own host: allowed after egress policy");
	policy_trace_free(&t);

	/* Another host's address is just not a workload. */
	t = eval(m, flow("192.168.0.20", "10.0.7.2", 6, 5051));
	expect_side(&t.ingress, false, ALLOW, "not a workload endpoint (node host-2): not policed");
	policy_trace_free(&t);
	policy_model_free(m);
}

static void test_host_endpoints_not_policed(void **state)
{
	struct policy_model *m = example();
	struct policy_trace t;
	(void)state;

	put_ok(m, "{`kind`:`hostEndpoint`,`metadata`:{`name`:`eth1`,`node`:`host-1`,`labels`:"
	          "{`app`:`database`}},`spec`:{`expectedIPs`:[`10.1.0.1`]}}");
	/* Not policed as a source, but frontend-policy's selector matches its address. */
	t = eval(m, flow("192.168.0.5", "10.1.0.1", 6, 6379));
	assert_int_equal(t.verdict, ALLOW);
	expect_side(&t.egress, true, ALLOW, "allowed by policy frontend-policy egress rule 0");
	expect_side(&t.ingress, false, ALLOW,
	            "not a workload endpoint (host endpoint host-1/eth1): not policed");
	assert_string_equal(t.ingress.endpoint->key, "host-1/eth1");
	policy_trace_free(&t);

	/* As a source it is not policed, and database-policy admits only the frontend. */
	t = eval(m, flow("10.1.0.1", "192.168.0.9", 6, 6379));
	assert_int_equal(t.verdict, DENY);
	assert_false(t.egress.policed);
	policy_trace_free(&t);
	policy_model_free(m);
}

/* ---- conntrack ---- */

static void test_reply(void **state)
{
	struct policy_model *m = example();
	struct policy_flow f;
	struct policy_trace t;
	(void)state;

	/* The database answers the frontend: decided by frontend -> database:6379. */
	f = flow("192.168.0.9", "192.168.0.5", 6, 40000);
	f.src_port = 6379;
	f.reply = true;
	t = eval(m, f);
	assert_int_equal(t.verdict, ALLOW);
	assert_string_equal(t.egress.endpoint->key, "host-1/cni/web-1/eth0");
	expect_side(&t.egress, true, ALLOW,
	            "reply of an allowed connection (conntrack); opening packet: allowed by policy "
	            "frontend-policy egress rule 0");
	expect_side(&t.ingress, true, ALLOW,
	            "reply of an allowed connection (conntrack); opening packet: allowed by policy "
	            "database-policy ingress rule 0");
	policy_trace_free(&t);

	/* The same packet as a new flow is denied: the frontend's ingress allows only 80. */
	f.reply = false;
	t = eval(m, f);
	assert_int_equal(t.verdict, DENY);
	policy_trace_free(&t);

	/* A reply whose opening packet was denied. */
	f = flow("192.168.0.9", "192.168.0.5", 6, 40000);
	f.src_port = 22;
	f.reply = true;
	t = eval(m, f);
	assert_int_equal(t.verdict, DENY);
	assert_string_equal(t.ingress.reason,
	                    "reply of a connection that was never allowed; opening packet: denied: "
	                    "policies applied but none allowed or passed");
	policy_trace_free(&t);

	/* Echo reply: the opening packet is the echo request. */
	put_policy(m, "ping", "1", "app == 'database'", "[`ingress`]",
	           "[{`action`:`allow`,`protocol`:`icmp`,`icmp`:{`type`:8,`code`:0}}]", "[]");
	put_policy(m, "ping-out", "1", "app == 'frontend'", "[`egress`]", "[]",
	           "[{`action`:`allow`,`protocol`:`icmp`}]");
	f = icmp("192.168.0.9", "192.168.0.5", 0, 0);
	f.reply = true;
	t = eval(m, f);
	assert_int_equal(t.verdict, ALLOW);
	expect_step(&t.ingress, 0, false, "ping", POLICY_OUTCOME_ALLOW, 0);
	policy_trace_free(&t);
	/* The echo request itself the other way round is not allowed. */
	f = icmp("192.168.0.9", "192.168.0.5", 8, 0);
	t = eval(m, f);
	assert_int_equal(t.verdict, DENY);
	policy_trace_free(&t);
	policy_model_free(m);
}

/* ---- rule matching ---- */

/* One workload 10.0.0.1 (and fd00::1) with a single ingress policy made of rules, a final
 * deny so that "no match" shows as the default deny. Returns the verdict of flow f into it. */
static int verdict_with(const char *rules, struct policy_flow f)
{
	struct policy_model *m = policy_model_new();
	struct policy_trace t;
	int v;

	put_wep(m, "h", "target", "[`10.0.0.1/32`,`fd00::1/128`]", "{`role`:`target`}", "[]");
	put_wep(m, "h", "db", "[`10.0.0.2/32`,`fd00::2/128`]", "{`role`:`db`}", "[`dbprof`]");
	put_profile(m, "dbprof", "[`dbtag`]", "[]", "[{`action`:`allow`}]");
	put_ok(m, "{`kind`:`hostEndpoint`,`metadata`:{`name`:`eth0`,`node`:`h`,`labels`:"
	          "{`role`:`hostish`}},`spec`:{`expectedIPs`:[`10.0.7.7`]}}");
	put_policy(m, "p", "1", "role == 'target'", "[`ingress`]", rules, "[]");
	t = eval(m, f);
	v = t.ingress.verdict;
	assert_true(t.ingress.policed);
	policy_trace_free(&t);
	policy_model_free(m);
	return v;
}

static void test_match_protocol_and_icmp(void **state)
{
	(void)state;

	assert_int_equal(verdict_with("[{`action`:`allow`,`protocol`:`tcp`}]",
	                              flow("10.9.0.1", "10.0.0.1", 6, 80)),
	                 ALLOW);
	assert_int_equal(verdict_with("[{`action`:`allow`,`protocol`:`tcp`}]",
	                              flow("10.9.0.1", "10.0.0.1", 17, 80)),
	                 DENY);
	assert_int_equal(
	    verdict_with("[{`action`:`allow`,`protocol`:47}]", flow("10.9.0.1", "10.0.0.1", 47, 0)),
	    ALLOW);
	assert_int_equal(verdict_with("[{`action`:`allow`,`notProtocol`:`udp`}]",
	                              flow("10.9.0.1", "10.0.0.1", 6, 80)),
	                 ALLOW);
	assert_int_equal(verdict_with("[{`action`:`allow`,`notProtocol`:`udp`}]",
	                              flow("10.9.0.1", "10.0.0.1", 17, 80)),
	                 DENY);
	/* icmp type and code. */
	const char *echo = "[{`action`:`allow`,`protocol`:`icmp`,`icmp`:{`type`:8}}]";
	assert_int_equal(verdict_with(echo, icmp("10.9.0.1", "10.0.0.1", 8, 0)), ALLOW);
	assert_int_equal(verdict_with(echo, icmp("10.9.0.1", "10.0.0.1", 8, 5)), ALLOW);
	assert_int_equal(verdict_with(echo, icmp("10.9.0.1", "10.0.0.1", 0, 0)), DENY);
	assert_int_equal(verdict_with(echo, icmp("10.9.0.1", "10.0.0.1", -1, -1)), DENY);
	const char *code = "[{`action`:`allow`,`icmp`:{`type`:3,`code`:4}}]";
	assert_int_equal(verdict_with(code, icmp("10.9.0.1", "10.0.0.1", 3, 4)), ALLOW);
	assert_int_equal(verdict_with(code, icmp("10.9.0.1", "10.0.0.1", 3, 3)), DENY);
	/* icmp fields look at icmpv6 on IPv6. */
	assert_int_equal(verdict_with("[{`action`:`allow`,`icmp`:{`type`:128}}]",
	                              icmp("fd00::9", "fd00::1", 128, 0)),
	                 ALLOW);
	/* Type 8 over protocol 1 in IPv6 is not ICMPv6. */
	struct policy_flow f = icmp("fd00::9", "fd00::1", 8, 0);
	f.protocol = 1;
	assert_int_equal(verdict_with("[{`action`:`allow`,`icmp`:{`type`:8}}]", f), DENY);
	/* notICMP holds for everything but that type/code. */
	const char *noecho = "[{`action`:`allow`,`notICMP`:{`type`:8}}]";
	assert_int_equal(verdict_with(noecho, icmp("10.9.0.1", "10.0.0.1", 8, 0)), DENY);
	assert_int_equal(verdict_with(noecho, icmp("10.9.0.1", "10.0.0.1", 0, 0)), ALLOW);
	assert_int_equal(verdict_with(noecho, flow("10.9.0.1", "10.0.0.1", 6, 80)), ALLOW);
	const char *nocode = "[{`action`:`allow`,`notICMP`:{`type`:3,`code`:1}}]";
	assert_int_equal(verdict_with(nocode, icmp("10.9.0.1", "10.0.0.1", 3, 1)), DENY);
	assert_int_equal(verdict_with(nocode, icmp("10.9.0.1", "10.0.0.1", 3, 2)), ALLOW);
}

static void test_match_nets_and_ports(void **state)
{
	(void)state;

	const char *nets = "[{`action`:`allow`,`source`:{`nets`:[`10.8.0.0/16`,`10.9.0.0/16`]}}]";
	assert_int_equal(verdict_with(nets, flow("10.9.0.1", "10.0.0.1", 6, 80)), ALLOW);
	assert_int_equal(verdict_with(nets, flow("10.7.0.1", "10.0.0.1", 6, 80)), DENY);
	const char *notnet = "[{`action`:`allow`,`source`:{`notNet`:`10.9.0.0/16`}}]";
	assert_int_equal(verdict_with(notnet, flow("10.9.0.1", "10.0.0.1", 6, 80)), DENY);
	assert_int_equal(verdict_with(notnet, flow("10.7.0.1", "10.0.0.1", 6, 80)), ALLOW);
	const char *dstnet = "[{`action`:`allow`,`destination`:{`net`:`10.0.0.1/32`}}]";
	assert_int_equal(verdict_with(dstnet, flow("10.7.0.1", "10.0.0.1", 6, 80)), ALLOW);

	const char *ports = "[{`action`:`allow`,`protocol`:`tcp`,`destination`:{`ports`:"
	                    "[22,`8000:8080`]}}]";
	assert_int_equal(verdict_with(ports, flow("10.9.0.1", "10.0.0.1", 6, 22)), ALLOW);
	assert_int_equal(verdict_with(ports, flow("10.9.0.1", "10.0.0.1", 6, 8000)), ALLOW);
	assert_int_equal(verdict_with(ports, flow("10.9.0.1", "10.0.0.1", 6, 8080)), ALLOW);
	assert_int_equal(verdict_with(ports, flow("10.9.0.1", "10.0.0.1", 6, 8081)), DENY);
	assert_int_equal(verdict_with(ports, flow("10.9.0.1", "10.0.0.1", 6, 23)), DENY);
	const char *notports = "[{`action`:`allow`,`protocol`:`udp`,`destination`:{`notPorts`:"
	                       "[53]}}]";
	assert_int_equal(verdict_with(notports, flow("10.9.0.1", "10.0.0.1", 17, 53)), DENY);
	assert_int_equal(verdict_with(notports, flow("10.9.0.1", "10.0.0.1", 17, 54)), ALLOW);
	const char *sports = "[{`action`:`allow`,`protocol`:`tcp`,`source`:{`ports`:[40000]}}]";
	assert_int_equal(verdict_with(sports, flow("10.9.0.1", "10.0.0.1", 6, 1)), ALLOW);
	const char *sports2 = "[{`action`:`allow`,`protocol`:`tcp`,`source`:{`ports`:[40001]}}]";
	assert_int_equal(verdict_with(sports2, flow("10.9.0.1", "10.0.0.1", 6, 1)), DENY);
	/* Every field present must hold. */
	const char *both = "[{`action`:`allow`,`protocol`:`tcp`,`source`:{`nets`:[`10.9.0.0/16`]},"
	                   "`destination`:{`ports`:[80]}}]";
	assert_int_equal(verdict_with(both, flow("10.9.0.1", "10.0.0.1", 6, 80)), ALLOW);
	assert_int_equal(verdict_with(both, flow("10.8.0.1", "10.0.0.1", 6, 80)), DENY);
	assert_int_equal(verdict_with(both, flow("10.9.0.1", "10.0.0.1", 6, 81)), DENY);
	/* An empty rule matches everything. */
	assert_int_equal(verdict_with("[{`action`:`allow`}]", icmp("10.9.0.1", "10.0.0.1", 8, 0)),
	                 ALLOW);
}

static void test_match_selectors_and_tags(void **state)
{
	(void)state;

	const char *sel = "[{`action`:`allow`,`source`:{`selector`:`role == 'db'`}}]";
	assert_int_equal(verdict_with(sel, flow("10.0.0.2", "10.0.0.1", 6, 80)), ALLOW);
	assert_int_equal(verdict_with(sel, flow("fd00::2", "fd00::1", 6, 80)), ALLOW);
	assert_int_equal(verdict_with(sel, flow("10.9.0.1", "10.0.0.1", 6, 80)), DENY);
	/* Host endpoints' addresses are selected too. */
	const char *hsel = "[{`action`:`allow`,`source`:{`selector`:`role == 'hostish'`}}]";
	assert_int_equal(verdict_with(hsel, flow("10.0.7.7", "10.0.0.1", 6, 80)), ALLOW);
	/* notSelector holds for addresses of no endpoint at all. */
	const char *notsel = "[{`action`:`allow`,`source`:{`notSelector`:`role == 'db'`}}]";
	assert_int_equal(verdict_with(notsel, flow("10.9.0.1", "10.0.0.1", 6, 80)), ALLOW);
	assert_int_equal(verdict_with(notsel, flow("10.0.0.2", "10.0.0.1", 6, 80)), DENY);
	assert_int_equal(verdict_with(notsel, flow("10.0.7.7", "10.0.0.1", 6, 80)), ALLOW);
	/* An absent label: != holds (section 4.3), through the address's endpoint. */
	const char *ne = "[{`action`:`allow`,`source`:{`selector`:`zone != 'a'`}}]";
	assert_int_equal(verdict_with(ne, flow("10.0.0.2", "10.0.0.1", 6, 80)), ALLOW);
	assert_int_equal(verdict_with(ne, flow("10.9.0.1", "10.0.0.1", 6, 80)), DENY);
	/* Tags through profiles. */
	const char *tag = "[{`action`:`allow`,`source`:{`tag`:`dbtag`}}]";
	assert_int_equal(verdict_with(tag, flow("10.0.0.2", "10.0.0.1", 6, 80)), ALLOW);
	assert_int_equal(verdict_with(tag, flow("10.0.7.7", "10.0.0.1", 6, 80)), DENY);
	const char *nottag = "[{`action`:`allow`,`source`:{`notTag`:`dbtag`}}]";
	assert_int_equal(verdict_with(nottag, flow("10.0.0.2", "10.0.0.1", 6, 80)), DENY);
	assert_int_equal(verdict_with(nottag, flow("10.9.0.1", "10.0.0.1", 6, 80)), ALLOW);
	/* A destination selector on the policed endpoint itself. */
	const char *dsel = "[{`action`:`allow`,`destination`:{`selector`:`role == 'target'`}}]";
	assert_int_equal(verdict_with(dsel, flow("10.9.0.1", "10.0.0.1", 6, 80)), ALLOW);
}

static void test_family_rule(void **state)
{
	(void)state;

	/* ipVersion confines a rule to its family. */
	const char *v4 = "[{`action`:`allow`,`ipVersion`:4}]";
	assert_int_equal(verdict_with(v4, flow("10.9.0.1", "10.0.0.1", 6, 80)), ALLOW);
	assert_int_equal(verdict_with(v4, flow("fd00::9", "fd00::1", 6, 80)), DENY);
	/* So does any CIDR, even a negated one that an IPv6 address is trivially "not in". */
	const char *notv4 = "[{`action`:`allow`,`source`:{`notNets`:[`10.9.0.0/16`]}}]";
	assert_int_equal(verdict_with(notv4, flow("10.8.0.1", "10.0.0.1", 6, 80)), ALLOW);
	assert_int_equal(verdict_with(notv4, flow("fd00::9", "fd00::1", 6, 80)), DENY);
	const char *dstv6 = "[{`action`:`allow`,`destination`:{`notNet`:`fd00:99::/64`}}]";
	assert_int_equal(verdict_with(dstv6, flow("fd00::9", "fd00::1", 6, 80)), ALLOW);
	assert_int_equal(verdict_with(dstv6, flow("10.9.0.1", "10.0.0.1", 6, 80)), DENY);
	/* A deny confined to IPv6 does not stop IPv4. */
	const char *deny6 = "[{`action`:`deny`,`ipVersion`:6},{`action`:`allow`}]";
	assert_int_equal(verdict_with(deny6, flow("10.9.0.1", "10.0.0.1", 6, 80)), ALLOW);
	assert_int_equal(verdict_with(deny6, flow("fd00::9", "fd00::1", 6, 80)), DENY);
	/* Selectors, tags and ports only: both families. */
	const char *both = "[{`action`:`allow`,`protocol`:`tcp`,`source`:{`notSelector`:"
	                   "`role == 'x'`},`destination`:{`ports`:[80]}}]";
	assert_int_equal(verdict_with(both, flow("10.9.0.1", "10.0.0.1", 6, 80)), ALLOW);
	assert_int_equal(verdict_with(both, flow("fd00::9", "fd00::1", 6, 80)), ALLOW);
}

static void test_bad_flow(void **state)
{
	struct policy_model *m = example();
	struct policy_flow f = flow("10.0.0.1", "fd00::1", 6, 80);
	struct policy_trace t;
	(void)state;

	assert_int_equal(policy_evaluate(m, &f, &t), -EINVAL);
	memset(&f, 0, sizeof(f));
	assert_int_equal(policy_evaluate(m, &f, &t), -EINVAL);
	policy_model_free(m);
}

/* ---- JSON ---- */

static void test_trace_json(void **state)
{
	struct policy_model *m = example();
	struct policy_trace t;
	json_t *j;
	json_t *want;
	(void)state;

	put_policy(m, "audit", "10", "all()", "[`ingress`]", "[{`action`:`log`}]", "[]");
	put_wep(m, "host-2", "db-2", "[`192.168.0.10/32`]", "{`app`:`database`}", "[`gone`]");
	t = eval(m, flow("8.8.8.8", "192.168.0.10", 6, 6379));
	j = policy_trace_to_json(&t);
	want = J("{`verdict`:`deny`,"
	         "`egress`:{`endpoint`:null,`node`:null,`policed`:false,`verdict`:`allow`,"
	         "`reason`:`not a workload endpoint: not policed`,`steps`:[]},"
	         "`ingress`:{`endpoint`:`host-2/cni/db-2/eth0`,`node`:null,`policed`:true,"
	         "`verdict`:`deny`,`reason`:`denied: policies applied but none allowed or passed`,"
	         "`steps`:[{`kind`:`policy`,`name`:`audit`,`outcome`:`no-match`,`rule`:null,"
	         "`logged`:[0]},{`kind`:`policy`,`name`:`database-policy`,`outcome`:`no-match`,"
	         "`rule`:null,`logged`:[]}]}}");
	if (!json_equal(j, want)) {
		char *s = json_dumps(j, JSON_INDENT(1));
		fail_msg("got %s", s);
	}
	json_decref(j);
	json_decref(want);
	policy_trace_free(&t);

	/* A missing profile is marked; a deciding rule has its index. */
	put_policy(m, "audit", "10", "all()", "[]", "[]", "[]");
	put_policy(m, "database-policy", "60", "app == 'nobody'", "[`ingress`]", "[]", "[]");
	put_wep(m, "host-2", "db-2", "[`192.168.0.10/32`]", "{}", "[`gone`,`calico`]");
	t = eval(m, flow("192.168.0.20", "192.168.0.10", 6, 6379));
	j = policy_trace_to_json(&t);
	want = J("[{`kind`:`profile`,`name`:`gone`,`outcome`:`no-match`,`rule`:null,`logged`:[],"
	         "`missing`:true},{`kind`:`profile`,`name`:`calico`,`outcome`:`allow`,`rule`:0,"
	         "`logged`:[]}]");
	assert_true(json_equal(json_object_get(json_object_get(j, "ingress"), "steps"), want));
	assert_string_equal(json_string_value(json_object_get(j, "verdict")), "allow");
	json_decref(j);
	json_decref(want);
	policy_trace_free(&t);
	policy_model_free(m);
}

/* ---- trace requests ---- */

static json_t *request_ok(const struct policy_model *m, const char *text)
{
	json_t *req = J(text);
	json_t *answer = NULL;
	char err[256];
	int rv = policy_trace_request(m, req, &answer, err, sizeof(err));

	if (rv != 0)
		fail_msg("request %s: %d %s", text, rv, err);
	json_decref(req);
	return answer;
}

static void request_bad(const struct policy_model *m, const char *text, int want_rv,
                        const char *want)
{
	json_t *req = J(text);
	json_t *answer = (json_t *)1;
	char err[256] = "";
	int rv = policy_trace_request(m, req, &answer, err, sizeof(err));

	if (rv != want_rv || strstr(err, want) == NULL)
		fail_msg("request %s: %d \"%s\", expected %d \"%s\"", text, rv, err, want_rv, want);
	assert_null(answer);
	json_decref(req);
}

static void test_trace_request(void **state)
{
	struct policy_model *m = example();
	json_t *a;
	json_t *want;
	(void)state;

	put_wep(m, "host-1", "dual", "[`192.168.0.30/32`,`fd00::30/128`]", "{}", "[`calico`]");
	put_wep(m, "host-1", "six", "[`fd00::31/128`]", "{}", "[`calico`]");

	a = request_ok(m, "{`from`:`web-1`,`to`:`host-2/cni/db-1/eth0`,`protocol`:`tcp`,"
	                  "`port`:6379}");
	assert_string_equal(json_string_value(json_object_get(a, "verdict")), "allow");
	want = J("{`src`:`192.168.0.5`,`dst`:`192.168.0.9`,`protocol`:`tcp`,`port`:6379,"
	         "`reply`:false}");
	assert_true(json_equal(json_object_get(a, "flow"), want));
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(a, "egress"), "reason")),
	    "allowed by policy frontend-policy egress rule 0");
	json_decref(want);
	json_decref(a);

	/* Numbers, source ports, reply, a protocol without a name. */
	a = request_ok(m, "{`from`:`db-1/eth0`,`to`:`192.168.0.5`,`protocol`:6,`port`:40000,"
	                  "`srcPort`:6379,`reply`:true}");
	assert_string_equal(json_string_value(json_object_get(a, "verdict")), "allow");
	want = J("{`src`:`192.168.0.9`,`dst`:`192.168.0.5`,`protocol`:`tcp`,`port`:40000,"
	         "`srcPort`:6379,`reply`:true}");
	assert_true(json_equal(json_object_get(a, "flow"), want));
	json_decref(want);
	json_decref(a);
	a = request_ok(m, "{`from`:`8.8.8.8`,`to`:`other-1`,`protocol`:47}");
	assert_int_equal(
	    json_integer_value(json_object_get(json_object_get(a, "flow"), "protocol")), 47);
	json_decref(a);
	a = request_ok(m, "{`from`:`other-1`,`to`:`web-1`,`protocol`:`icmp`,`icmpType`:8,"
	                  "`icmpCode`:0}");
	want = J("{`src`:`192.168.0.20`,`dst`:`192.168.0.5`,`protocol`:`icmp`,`icmpType`:8,"
	         "`icmpCode`:0,`reply`:false}");
	assert_true(json_equal(json_object_get(a, "flow"), want));
	json_decref(want);
	json_decref(a);

	/* One family for both ends: v4 when both have one, else v6, or as asked. */
	a = request_ok(m, "{`from`:`dual`,`to`:`six`,`protocol`:`tcp`}");
	assert_string_equal(json_string_value(json_object_get(json_object_get(a, "flow"), "src")),
	                    "fd00::30");
	json_decref(a);
	a = request_ok(m, "{`from`:`dual`,`to`:`web-1`,`protocol`:`udp`}");
	assert_string_equal(json_string_value(json_object_get(json_object_get(a, "flow"), "src")),
	                    "192.168.0.30");
	json_decref(a);
	a = request_ok(m, "{`from`:`dual`,`to`:`fd00::31`,`protocol`:`udp`}");
	assert_string_equal(json_string_value(json_object_get(json_object_get(a, "flow"), "src")),
	                    "fd00::30");
	json_decref(a);
	a = request_ok(m, "{`from`:`dual`,`to`:`dual`,`protocol`:`icmpv6`}");
	assert_string_equal(json_string_value(json_object_get(json_object_get(a, "flow"), "src")),
	                    "fd00::30");
	json_decref(a);
	a = request_ok(m, "{`from`:`dual`,`to`:`host:host-1`,`protocol`:`tcp`,`ipVersion`:4}");
	assert_string_equal(json_string_value(json_object_get(json_object_get(a, "flow"), "dst")),
	                    "10.0.7.1");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(a, "ingress"), "reason")),
	    "to its own host: allowed after egress policy");
	json_decref(a);

	request_bad(m, "[]", -EINVAL, "not a JSON object");
	request_bad(m, "{`to`:`web-1`,`protocol`:`tcp`}", -EINVAL, "from: missing");
	request_bad(m, "{`from`:`web-1`,`protocol`:`tcp`}", -EINVAL, "to: missing");
	request_bad(m, "{`from`:`web-1`,`to`:`db-1`}", -EINVAL, "protocol: missing");
	request_bad(m, "{`from`:`web-1`,`to`:`db-1`,`protocol`:`tcpp`}", -EINVAL,
	            "protocol: 'tcpp' is not a protocol");
	request_bad(m, "{`from`:`web-1`,`to`:`db-1`,`protocol`:0}", -EINVAL, "protocol");
	request_bad(m, "{`from`:`web-1`,`to`:`db-1`,`protocol`:`tcp`,`port`:70000}", -EINVAL,
	            "port: 70000 is out of range");
	request_bad(m, "{`from`:`web-1`,`to`:`db-1`,`protocol`:`tcp`,`port`:`80`}", -EINVAL,
	            "port: not an integer");
	request_bad(m, "{`from`:`web-1`,`to`:`db-1`,`protocol`:`icmp`,`port`:80}", -EINVAL,
	            "port: ports only go with");
	request_bad(m, "{`from`:`web-1`,`to`:`db-1`,`protocol`:`tcp`,`icmpType`:8}", -EINVAL,
	            "icmpType: only with icmp");
	request_bad(m, "{`from`:`web-1`,`to`:`db-1`,`protocol`:`icmp`,`icmpCode`:0}", -EINVAL,
	            "icmpCode: needs icmpType");
	request_bad(m, "{`from`:`web-1`,`to`:`db-1`,`protocol`:`tcp`,`reply`:1}", -EINVAL,
	            "reply: not a boolean");
	request_bad(m, "{`from`:`web-1`,`to`:`db-1`,`protocol`:`tcp`,`ipVersion`:5}", -EINVAL,
	            "ipVersion");
	request_bad(m, "{`from`:`web-1`,`to`:`db-1`,`protocol`:`tcp`,`colour`:`red`}", -EINVAL,
	            "colour: unknown field");
	request_bad(m, "{`from`:`nobody`,`to`:`db-1`,`protocol`:`tcp`}", -ENOENT, "from: nobody");
	request_bad(m, "{`from`:`web-1`,`to`:`nobody`,`protocol`:`tcp`}", -ENOENT, "to: nobody");
	request_bad(m, "{`from`:`web-1`,`to`:`six`,`protocol`:`tcp`}", -EINVAL,
	            "from web-1 and to six have no IP version in common");
	request_bad(m, "{`from`:`10.0.0.1`,`to`:`fd00::1`,`protocol`:`tcp`}", -EINVAL,
	            "to: fd00::1 is not an IPv4 address");
	request_bad(m, "{`from`:`web-1`,`to`:`db-1`,`protocol`:`tcp`,`ipVersion`:6}", -EINVAL,
	            "from: web-1 has no IPv6 address");
	request_bad(m, "{`from`:`fd00::30`,`to`:`six`,`protocol`:`icmp`}", -EINVAL,
	            "icmp does not go with IPv6");
	policy_model_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_frontend_database),
	    cmocka_unit_test(test_types),
	    cmocka_unit_test(test_host_endpoint_only_policies),
	    cmocka_unit_test(test_order_and_log),
	    cmocka_unit_test(test_pass),
	    cmocka_unit_test(test_profiles),
	    cmocka_unit_test(test_host_to_local_workload),
	    cmocka_unit_test(test_workload_to_own_host),
	    cmocka_unit_test(test_host_endpoints_not_policed),
	    cmocka_unit_test(test_reply),
	    cmocka_unit_test(test_match_protocol_and_icmp),
	    cmocka_unit_test(test_match_nets_and_ports),
	    cmocka_unit_test(test_match_selectors_and_tags),
	    cmocka_unit_test(test_family_rule),
	    cmocka_unit_test(test_bad_flow),
	    cmocka_unit_test(test_trace_json),
	    cmocka_unit_test(test_trace_request),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
