/* calicoctl 0.x's profile commands (`tabby profile ...`): the irregular command line, rule
 * specifications, the rule text and backend rule JSON both ways, the tables, and the mistakes
 * refused before anything is sent. What the agent answers is tested end to end by the cluster
 * tests. */
#include "ctl_test.h"
#include "fake_agent.h"

#include <strings.h>
#include <unistd.h>

/* No agent listens here: a command that gets past its own checks fails to connect (exit 1). */
#define NOSOCK "/nonexistent/profile-test.sock"

static void expect_sent(struct run r)
{
	if (r.status != 1 || strstr(r.err, "cannot connect to " NOSOCK) == NULL)
		fail_msg("expected an attempt to reach the agent, got status %d:\n%s", r.status,
		         r.err);
	assert_string_equal(r.out, "");
	run_free(&r);
}

static void test_names(void **state)
{
	char long_name[64];
	(void)state;

	assert_true(ctl_profile_name_ok("web"));
	assert_true(ctl_profile_name_ok("A-b_c.9"));
	memset(long_name, 'x', 39);
	long_name[39] = '\0';
	assert_true(ctl_profile_name_ok(long_name));
	long_name[39] = 'x';
	long_name[40] = '\0';
	assert_false(ctl_profile_name_ok(long_name));
	assert_false(ctl_profile_name_ok(""));
	assert_false(ctl_profile_name_ok("a/b"));
	assert_false(ctl_profile_name_ok("a b"));
	assert_false(ctl_profile_name_ok("caf\xc3\xa9"));
}

static void test_default_profile(void **state)
{
	json_t *p = ctl_profile_default("WEB");
	json_t *n = NULL;
	char err[512];
	(void)state;

	expect_json(p, "{\"apiVersion\": \"v1\", \"kind\": \"profile\", \"metadata\": {\"name\": "
	               "\"WEB\", \"tags\": [\"WEB\"]}, \"spec\": {\"ingress\": [{\"action\": "
	               "\"allow\", \"source\": {\"tag\": \"WEB\"}}], \"egress\": [{\"action\": "
	               "\"allow\"}]}}");
	/* Already in normalized form: what is written is what is stored. */
	assert_int_equal(policy_resource_normalize(p, 0, &n, err, sizeof(err)), 0);
	assert_true(json_equal(n, p));
	json_decref(n);
	json_decref(p);
}

static void expect_ports(const char *s, const char *want)
{
	json_t *ports = NULL;
	char err[256];

	if (ctl_ports_parse(s, &ports, err, sizeof(err)) != 0)
		fail_msg("ports '%s': %s", s, err);
	expect_json(ports, want);
	json_decref(ports);
}

static void expect_bad_ports(const char *s, const char *message)
{
	json_t *ports = NULL;
	char err[256];

	assert_int_equal(ctl_ports_parse(s, &ports, err, sizeof(err)), -1);
	assert_null(ports);
	assert_contains(err, message);
}

static void test_ports(void **state)
{
	(void)state;

	expect_ports("80", "[80]");
	expect_ports("1,2,3", "[1, 2, 3]");
	expect_ports("1:3", "[\"1:3\"]");
	expect_ports("1-3", "[\"1:3\"]");
	expect_ports("22,1000-2000,8080:8090", "[22, \"1000:2000\", \"8080:8090\"]");
	expect_ports("7-7", "[7]");
	expect_ports("65535", "[65535]");
	expect_bad_ports("3:1", "port range 3-1: the minimum is above the maximum");
	expect_bad_ports("65536", "invalid ports '65536'");
	expect_bad_ports("", "invalid ports ''");
	expect_bad_ports("80,", "invalid ports '80,'");
	expect_bad_ports(",80", "invalid ports ',80'");
	expect_bad_ports("http", "invalid ports 'http'");
	expect_bad_ports("1:2:3", "invalid ports");
	expect_bad_ports("-1", "invalid ports");
	expect_bad_ports("+1", "invalid ports");
	expect_bad_ports("123456", "invalid ports");
	/* Calico v1 takes ports 1-65535, as the normalizer does. */
	expect_bad_ports("0",
	                 "invalid ports '0': expected a comma-separated list of ports (1-65535)");
	expect_bad_ports("0:10", "invalid ports '0:10'");
	expect_bad_ports("80,0", "invalid ports '80,0'");
	expect_bad_ports("65536", "invalid ports '65536'");
}

/* Split text at spaces into words (at most 32) for ctl_rule_parse(). */
static int split(char *text, char **words)
{
	int n = 0;

	for (char *w = strtok(text, " "); w != NULL && n < 32; w = strtok(NULL, " "))
		words[n++] = w;
	return n;
}

static void expect_rule(const char *spec, const char *want)
{
	char buf[512];
	char *words[32];
	char err[256];
	json_t *rule = NULL;
	int n;

	snprintf(buf, sizeof(buf), "%s", spec);
	n = split(buf, words);
	if (ctl_rule_parse(words, n, &rule, err, sizeof(err)) != 0)
		fail_msg("rule '%s': %s", spec, err);
	expect_json(rule, want);
	json_decref(rule);
}

static void expect_bad_rule(const char *spec, const char *message)
{
	char buf[512];
	char *words[32];
	char err[256];
	json_t *rule = NULL;
	int n;

	snprintf(buf, sizeof(buf), "%s", spec);
	n = split(buf, words);
	if (ctl_rule_parse(words, n, &rule, err, sizeof(err)) == 0)
		fail_msg("rule '%s' was accepted", spec);
	assert_null(rule);
	assert_contains(err, message);
}

static void test_rule_parse(void **state)
{
	(void)state;

	expect_rule("allow", "{\"action\": \"allow\"}");
	expect_rule("deny", "{\"action\": \"deny\"}");
	/* The example of calico-behaviour.md 3.9. */
	expect_rule("allow tcp from tag DB to ports 3306",
	            "{\"action\": \"allow\", \"protocol\": \"tcp\", \"source\": {\"tag\": \"DB\"},"
	            " \"destination\": {\"ports\": [3306]}}");
	expect_rule("allow from tag WEB",
	            "{\"action\": \"allow\", \"source\": {\"tag\": \"WEB\"}}");
	expect_rule("deny udp from ports 53,1000-2000 tag a cidr 10.0.0.0/8 to ports 1:3 tag b "
	            "cidr fd00::/64",
	            "{\"action\": \"deny\", \"protocol\": \"udp\", \"source\": {\"tag\": \"a\","
	            " \"net\": \"10.0.0.0/8\", \"ports\": [53, \"1000:2000\"]}, \"destination\":"
	            " {\"tag\": \"b\", \"net\": \"fd00::/64\", \"ports\": [\"1:3\"]}}");
	/* Any order inside a part; 0.x's bare CIDR; a bare address is one address. */
	expect_rule("allow tcp from 192.168.0.0/16 ports 22",
	            "{\"action\": \"allow\", \"protocol\": \"tcp\", \"source\": {\"net\":"
	            " \"192.168.0.0/16\", \"ports\": [22]}}");
	expect_rule("allow to 10.1.2.3", "{\"action\": \"allow\", \"destination\": {\"net\":"
	                                 " \"10.1.2.3/32\"}}");
	expect_rule("allow to cidr fd00::1", "{\"action\": \"allow\", \"destination\": {\"net\":"
	                                     " \"fd00::1/128\"}}");
	expect_rule("allow from cidr 10.0.0.0/8,10.2.0.0/16",
	            "{\"action\": \"allow\", \"source\": {\"nets\": [\"10.0.0.0/8\","
	            " \"10.2.0.0/16\"]}}");
	expect_rule("allow icmp", "{\"action\": \"allow\", \"protocol\": \"icmp\"}");
	expect_rule("allow icmp type 8", "{\"action\": \"allow\", \"protocol\": \"icmp\","
	                                 " \"icmp\": {\"type\": 8}}");
	expect_rule("deny icmpv6 type 128 code 0 from tag x to cidr fd00::/8",
	            "{\"action\": \"deny\", \"protocol\": \"icmpv6\", \"icmp\": {\"type\": 128,"
	            " \"code\": 0}, \"source\": {\"tag\": \"x\"}, \"destination\": {\"net\":"
	            " \"fd00::/8\"}}");
	expect_rule("allow TCP to ports 80", "{\"action\": \"allow\", \"protocol\": \"tcp\","
	                                     " \"destination\": {\"ports\": [80]}}");
	expect_rule("allow sctp", "{\"action\": \"allow\", \"protocol\": \"sctp\"}");
	expect_rule("allow 6 to ports 80", "{\"action\": \"allow\", \"protocol\": \"tcp\","
	                                   " \"destination\": {\"ports\": [80]}}");
	expect_rule("allow 47", "{\"action\": \"allow\", \"protocol\": 47}");
	/* An empty part says nothing. */
	expect_rule("allow from to tag x", "{\"action\": \"allow\", \"destination\": {\"tag\":"
	                                   " \"x\"}}");

	expect_bad_rule("", "missing the rule's action (allow or deny)");
	expect_bad_rule("log", "expected allow or deny, found 'log'");
	expect_bad_rule("allow ftp", "expected a protocol (tcp, udp, icmp, icmpv6, ...), from or "
	                             "to, found 'ftp'");
	expect_bad_rule("allow from ports 80", "ports are only valid with protocol tcp or udp");
	expect_bad_rule("allow icmp to ports 80", "ports are only valid with protocol tcp or udp");
	expect_bad_rule("allow sctp to ports 80", "ports are only valid with protocol tcp or udp");
	expect_bad_rule("allow tcp type 8", "'type' is only valid right after the protocol icmp");
	expect_bad_rule("allow icmp from tag a type 8",
	                "'type' must come right after the protocol");
	expect_bad_rule("allow icmp code 0", "'code' is only valid right after the protocol");
	expect_bad_rule("allow icmp type", "'type' needs an ICMP type (0-254), found 'nothing'");
	expect_bad_rule("allow icmp type x", "'type' needs an ICMP type (0-254), found 'x'");
	expect_bad_rule("allow icmp type 256", "'type' needs an ICMP type");
	/* Calico's validator takes types 0-254 (and codes 0-255), as the normalizer does. */
	expect_bad_rule("allow icmp type 255", "'type' needs an ICMP type (0-254), found '255'");
	expect_rule("allow icmpv6 type 254 code 255",
	            "{\"action\": \"allow\", \"protocol\": \"icmpv6\", \"icmp\": {\"type\": 254, "
	            "\"code\": 255}}");
	expect_bad_rule("allow icmp type 8 code 300", "'code' needs an ICMP code (0-255)");
	expect_bad_rule("allow tcp from ports", "'ports' needs a value");
	expect_bad_rule("allow from tag", "'tag' needs a value");
	expect_bad_rule("allow from tag to", "'tag' needs a value");
	expect_bad_rule("allow from cidr", "'cidr' needs a value");
	expect_bad_rule("allow tcp to ports x", "invalid ports 'x'");
	expect_bad_rule("allow from tag a tag b", "'tag' given twice after 'from'");
	expect_bad_rule("allow from 10.0.0.0/8 cidr 10.1.0.0/16",
	                "'cidr' given twice after 'from'");
	expect_bad_rule("allow from tag a from tag b", "unexpected 'from': given twice");
	expect_bad_rule("allow to tag a from tag b", "unexpected 'from': from must come before to");
	expect_bad_rule("allow from selector x", "unexpected 'selector' after 'from'");
	expect_bad_rule("allow tcp ports 80", "'ports' must follow from or to");
	expect_bad_rule("allow tcp udp", "unexpected 'udp' in the rule");
}

static void expect_text(const char *rule_json, const char *want)
{
	json_t *rule = load(rule_json);
	char *text = ctl_rule_text(rule);

	assert_non_null(text);
	assert_string_equal(text, want);
	free(text);
	json_decref(rule);
}

static void test_rule_text(void **state)
{
	(void)state;

	/* 0.x's own forms. */
	expect_text("{\"action\": \"allow\"}", "allow");
	expect_text("{\"action\": \"allow\", \"source\": {\"tag\": \"WEB\"}}",
	            "allow from tag WEB");
	expect_text("{\"action\": \"allow\", \"protocol\": \"tcp\", \"destination\": {\"ports\":"
	            " [80]}}",
	            "allow tcp to ports 80");
	expect_text(
	    "{\"action\": \"deny\", \"protocol\": \"udp\", \"source\": {\"tag\": \"a\","
	    " \"net\": \"10.0.0.0/8\", \"ports\": [53, \"1000:2000\"]}, \"destination\":"
	    " {\"tag\": \"b\", \"net\": \"fd00::/64\", \"ports\": [\"1:3\"]}}",
	    "deny udp from ports 53,1000:2000 tag a cidr 10.0.0.0/8 to ports 1:3 tag b cidr "
	    "fd00::/64");
	expect_text("{\"action\": \"allow\", \"protocol\": \"icmp\", \"icmp\": {\"type\": 8,"
	            " \"code\": 0}}",
	            "allow icmp type 8 code 0");
	/* v1's additions, in the same style. */
	expect_text("{\"action\": \"pass\", \"ipVersion\": 6, \"protocol\": 58, \"notProtocol\":"
	            " \"udp\"}",
	            "pass ipv6 58 not protocol udp");
	expect_text("{\"action\": \"log\", \"protocol\": \"icmp\", \"notICMP\": {\"type\": 3,"
	            " \"code\": 1}}",
	            "log icmp not type 3 code 1");
	expect_text("{\"action\": \"allow\", \"source\": {\"nets\": [\"10.0.0.0/8\","
	            " \"10.2.0.0/16\"], \"selector\": \"role == 'db'\", \"notTag\": \"x\"},"
	            " \"destination\": {\"notNets\": [\"10.9.0.0/16\"], \"notNet\": \"1.2.3.0/24\","
	            " \"notSelector\": \"a == \\\"b\\\"\", \"notPorts\": [22, \"6000:6010\"]}}",
	            "allow from cidr 10.0.0.0/8,10.2.0.0/16 selector \"role == 'db'\" not tag x to "
	            "not ports 22,6000:6010 not cidr 1.2.3.0/24 not cidr 10.9.0.0/16 not selector "
	            "'a == \"b\"'");
}

/* What `rule add` writes, read back by `rule show`, parses to the same rule. */
static void test_rule_round_trip(void **state)
{
	static const char *const specs[] = {
	    "allow",
	    "deny tcp from ports 53,1000:2000 tag a cidr 10.0.0.0/8 to ports 1:3 tag b",
	    "allow icmp type 8 code 0 from cidr 10.0.0.0/8",
	    "allow udp to ports 53",
	    "deny from tag x to cidr 10.0.0.0/8,10.1.0.0/16",
	};
	(void)state;

	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		char buf[256];
		char *words[32];
		char err[256];
		json_t *rule = NULL;
		json_t *again = NULL;
		char *text;
		int n;

		snprintf(buf, sizeof(buf), "%s", specs[i]);
		n = split(buf, words);
		assert_int_equal(ctl_rule_parse(words, n, &rule, err, sizeof(err)), 0);
		text = ctl_rule_text(rule);
		assert_string_equal(text, specs[i]);
		snprintf(buf, sizeof(buf), "%s", text);
		n = split(buf, words);
		assert_int_equal(ctl_rule_parse(words, n, &again, err, sizeof(err)), 0);
		assert_true(json_equal(rule, again));
		free(text);
		json_decref(rule);
		json_decref(again);
	}
}

static void expect_backend(const char *v1, const char *backend)
{
	json_t *rule = load(v1);
	json_t *b = ctl_rule_to_backend(rule);
	json_t *back = NULL;
	char err[256];

	expect_json(b, backend);
	assert_int_equal(ctl_rule_from_backend(b, &back, err, sizeof(err)), 0);
	expect_json(back, v1);
	json_decref(back);
	json_decref(b);
	json_decref(rule);
}

static void expect_from_backend_error(const char *backend, const char *message)
{
	json_t *b = load(backend);
	json_t *rule = NULL;
	char err[256];

	assert_int_equal(ctl_rule_from_backend(b, &rule, err, sizeof(err)), -1);
	assert_null(rule);
	assert_contains(err, message);
	json_decref(b);
}

static void test_backend_json(void **state)
{
	json_t *b;
	json_t *rule = NULL;
	char err[256];
	(void)state;

	expect_backend(
	    "{\"action\": \"allow\", \"protocol\": \"tcp\", \"source\": {\"tag\": \"DB\"},"
	    " \"destination\": {\"ports\": [3306]}}",
	    "{\"action\": \"allow\", \"protocol\": \"tcp\", \"src_tag\": \"DB\","
	    " \"dst_ports\": [3306]}");
	expect_backend("{\"action\": \"pass\", \"ipVersion\": 4, \"protocol\": \"icmp\", \"icmp\":"
	               " {\"type\": 8, \"code\": 0}, \"notProtocol\": \"udp\", \"notICMP\":"
	               " {\"type\": 3}}",
	               "{\"action\": \"next-tier\", \"ip_version\": 4, \"protocol\": \"icmp\","
	               " \"icmp_type\": 8, \"icmp_code\": 0, \"!protocol\": \"udp\","
	               " \"!icmp_type\": 3}");
	expect_backend(
	    "{\"action\": \"deny\", \"source\": {\"tag\": \"a\", \"notTag\": \"b\","
	    " \"net\": \"10.0.0.0/8\", \"notNet\": \"10.1.0.0/16\", \"selector\":"
	    " \"x == 'y'\", \"notSelector\": \"has(z)\", \"ports\": [1], \"notPorts\":"
	    " [\"2:3\"]}, \"destination\": {\"nets\": [\"fd00::/8\"], \"notNets\":"
	    " [\"fd00:1::/32\"]}}",
	    "{\"action\": \"deny\", \"src_tag\": \"a\", \"!src_tag\": \"b\", \"src_net\":"
	    " \"10.0.0.0/8\", \"!src_net\": \"10.1.0.0/16\", \"src_selector\": \"x =="
	    " 'y'\", \"!src_selector\": \"has(z)\", \"src_ports\": [1], \"!src_ports\":"
	    " [\"2:3\"], \"dst_nets\": [\"fd00::/8\"], \"!dst_nets\": [\"fd00:1::/32\"]}");
	expect_backend("{\"action\": \"log\"}", "{\"action\": \"log\"}");

	/* 0.x: a rule without an action allows. */
	b = load("{\"protocol\": \"udp\", \"dst_ports\": [53]}");
	assert_int_equal(ctl_rule_from_backend(b, &rule, err, sizeof(err)), 0);
	expect_json(rule, "{\"action\": \"allow\", \"protocol\": \"udp\", \"destination\":"
	                  " {\"ports\": [53]}}");
	json_decref(rule);
	json_decref(b);

	expect_from_backend_error("{\"action\": \"allow\", \"src_colour\": \"red\"}",
	                          "unknown rule key 'src_colour'");
	expect_from_backend_error("{\"action\": \"allow\", \"!icmp\": 1}",
	                          "unknown rule key '!icmp'");
	expect_from_backend_error("{\"inbound\": []}", "unknown rule key 'inbound'");
	expect_from_backend_error("{\"log_prefix\": \"x\"}", "log_prefix is not supported");
	expect_from_backend_error("[]", "a rule must be a JSON object");
}

static const char profile_json[] =
    "{\"apiVersion\": \"v1\", \"kind\": \"profile\", \"metadata\": {\"name\": \"WEB\", \"tags\":"
    " [\"WEB\"]}, \"spec\": {\"ingress\": [{\"action\": \"allow\", \"source\": {\"tag\":"
    " \"WEB\"}}, {\"action\": \"allow\", \"protocol\": \"tcp\", \"destination\": {\"ports\":"
    " [80]}}], \"egress\": [{\"action\": \"allow\"}]}}";

static void test_rules_show(void **state)
{
	json_t *p = load(profile_json);
	json_t *j;
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	(void)state;

	assert_int_equal(ctl_profile_rules_text(f, p), 0);
	fclose(f);
	assert_string_equal(out, "Inbound rules:\n"
	                         "   1 allow from tag WEB\n"
	                         "   2 allow tcp to ports 80\n"
	                         "Outbound rules:\n"
	                         "   1 allow\n");
	free(out);

	j = ctl_profile_rules_json(p);
	expect_json(j, "{\"id\": \"WEB\", \"inbound_rules\": [{\"action\": \"allow\", \"src_tag\":"
	               " \"WEB\"}, {\"action\": \"allow\", \"protocol\": \"tcp\", \"dst_ports\":"
	               " [80]}], \"outbound_rules\": [{\"action\": \"allow\"}]}");
	json_decref(j);
	json_decref(p);

	/* Numbers stay right-aligned in four columns up to 999. */
	p = load("{\"metadata\": {\"name\": \"x\"}, \"spec\": {\"ingress\": [], \"egress\": []}}");
	for (int i = 0; i < 12; i++)
		json_array_append_new(json_object_get(json_object_get(p, "spec"), "egress"),
		                      json_pack("{s:s}", "action", "deny"));
	out = NULL;
	f = open_memstream(&out, &len);
	assert_int_equal(ctl_profile_rules_text(f, p), 0);
	fclose(f);
	assert_contains(out, "Inbound rules:\nOutbound rules:\n   1 deny\n");
	assert_contains(out, "\n   9 deny\n  10 deny\n");
	free(out);
	json_decref(p);
}

static void test_rules_update(void **state)
{
	json_t *p = load(profile_json);
	json_t *rules;
	json_t *updated = NULL;
	json_t *want;
	char err[512];
	(void)state;

	/* `rule json` output is valid `rule update` input and changes nothing. */
	rules = ctl_profile_rules_json(p);
	assert_int_equal(ctl_profile_rules_update(p, rules, &updated, err, sizeof(err)), 0);
	assert_true(json_equal(updated, p));
	json_decref(updated);
	json_decref(rules);

	rules = load("{\"inbound_rules\": [{\"protocol\": \"tcp\", \"src_net\": \"10.0.0.0/8\","
	             " \"dst_ports\": [\"1-3\"]}], \"outbound_rules\": []}");
	/* A port range written "1-3" is not backend JSON: normalize refuses it. */
	assert_int_equal(ctl_profile_rules_update(p, rules, &updated, err, sizeof(err)), -1);
	assert_contains(err, "profile WEB: spec.ingress[0].destination.ports[0]");
	json_decref(rules);

	rules =
	    load("{\"id\": \"WEB\", \"inbound_rules\": [{\"protocol\": \"tcp\", \"src_net\":"
	         " \"10.0.0.0/8\", \"dst_ports\": [\"1:3\"]}], \"outbound_rules\": [{\"action\":"
	         " \"deny\", \"dst_tag\": \"x\"}]}");
	assert_int_equal(ctl_profile_rules_update(p, rules, &updated, err, sizeof(err)), 0);
	want = load("{\"apiVersion\": \"v1\", \"kind\": \"profile\", \"metadata\": {\"name\":"
	            " \"WEB\", \"tags\": [\"WEB\"]}, \"spec\": {\"ingress\": [{\"action\":"
	            " \"allow\", \"protocol\": \"tcp\", \"source\": {\"net\": \"10.0.0.0/8\"},"
	            " \"destination\": {\"ports\": [\"1:3\"]}}], \"egress\": [{\"action\":"
	            " \"deny\", \"destination\": {\"tag\": \"x\"}}]}}");
	assert_true(json_equal(updated, want));
	json_decref(want);
	json_decref(updated);
	json_decref(rules);

	rules = load("{\"id\": \"DB\", \"inbound_rules\": [], \"outbound_rules\": []}");
	assert_int_equal(ctl_profile_rules_update(p, rules, &updated, err, sizeof(err)), -1);
	assert_string_equal(err, "the rules' \"id\" does not match the profile name WEB");
	json_decref(rules);

	rules = load("{\"inbound_rules\": []}");
	assert_int_equal(ctl_profile_rules_update(p, rules, &updated, err, sizeof(err)), -1);
	assert_string_equal(err, "outbound_rules must be a list of rules");
	json_decref(rules);

	rules = load("{\"inbound\": [], \"outbound\": []}");
	assert_int_equal(ctl_profile_rules_update(p, rules, &updated, err, sizeof(err)), -1);
	assert_contains(err, "unknown key 'inbound'");
	json_decref(rules);

	rules = load("{\"inbound_rules\": [{\"src_tag\": \"a\", \"frob\": 1}], \"outbound_rules\":"
	             " []}");
	assert_int_equal(ctl_profile_rules_update(p, rules, &updated, err, sizeof(err)), -1);
	assert_string_equal(err, "inbound_rules[0]: unknown rule key 'frob'");
	json_decref(rules);

	rules = load("[]");
	assert_int_equal(ctl_profile_rules_update(p, rules, &updated, err, sizeof(err)), -1);
	assert_null(updated);
	json_decref(rules);
	json_decref(p);
}

static char *table(const char *profiles, const char *endpoints)
{
	json_t *p = load(profiles);
	json_t *e = endpoints != NULL ? load(endpoints) : NULL;
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	assert_int_equal(ctl_profile_table(f, p, e), 0);
	fclose(f);
	json_decref(p);
	json_decref(e);
	return out;
}

static void test_tables(void **state)
{
	static const char profiles[] =
	    "[{\"metadata\": {\"name\": \"db\"}}, {\"metadata\": {\"name\": \"web\"}}]";
	char *out;
	(void)state;

	out = table(profiles, NULL);
	assert_string_equal(out, "+------+\n"
	                         "| Name |\n"
	                         "+------+\n"
	                         "| db   |\n"
	                         "| web  |\n"
	                         "+------+\n");
	free(out);

	out = table("[]", NULL);
	assert_string_equal(out, "+------+\n| Name |\n+------+\n+------+\n");
	free(out);

	/* Centred like prettytable: "Name" in a 5-wide column gets its extra space on the left. */
	out = table("[{\"metadata\": {\"name\": \"abcde\"}}]", NULL);
	assert_string_equal(out, "+-------+\n|  Name |\n+-------+\n| abcde |\n+-------+\n");
	free(out);

	out =
	    table(profiles,
	          "[{\"kind\": \"workloadEndpoint\", \"metadata\": {\"name\": \"eth0\","
	          " \"workload\": \"t1\", \"orchestrator\": \"mesos\", \"node\": \"n1\"},"
	          " \"spec\": {\"ipNetworks\": [\"10.0.0.5/32\", \"fd00::5/128\"], \"profiles\":"
	          " [\"web\"], \"mac\": \"ee:ee:ee:ee:ee:ee\"}},"
	          " {\"kind\": \"workloadEndpoint\", \"metadata\": {\"name\": \"eth0\","
	          " \"workload\": \"t2\", \"orchestrator\": \"mesos\", \"node\": \"n2\"},"
	          " \"spec\": {\"ipNetworks\": [\"10.0.0.6/32\"], \"profiles\": [\"x\", \"web\"]}},"
	          " {\"kind\": \"hostEndpoint\", \"metadata\": {\"name\": \"eth1\", \"node\":"
	          " \"n1\"}, \"spec\": {\"expectedIPs\": [\"10.1.0.1\"], \"profiles\": [\"x\"]}}]");
	assert_string_equal(out, "+------+------+-----------------+-------------+-------------+----"
	                         "---------------------+"
	                         "-------------------+\n"
	                         "| Name | Host | Orchestrator ID | Workload ID | Endpoint ID |    "
	                         "    Addresses        |"
	                         "        MAC        |\n"
	                         "+------+------+-----------------+-------------+-------------+----"
	                         "---------------------+"
	                         "-------------------+\n"
	                         "| db   | None | None            | None        | None        | "
	                         "None                    |"
	                         " None              |\n"
	                         "| web  | n1   | mesos           | t1          | eth0        | "
	                         "10.0.0.5/32,fd00::5/128 |"
	                         " ee:ee:ee:ee:ee:ee |\n"
	                         "| web  | n2   | mesos           | t2          | eth0        | "
	                         "10.0.0.6/32             |"
	                         "                   |\n"
	                         "+------+------+-----------------+-------------+-------------+----"
	                         "---------------------+"
	                         "-------------------+\n");
	free(out);
}

static const char web_answer[] =
    "{\"revision\": 7, \"resource\": {\"apiVersion\": \"v1\", \"kind\": \"profile\", "
    "\"metadata\": {\"name\": \"WEB\", \"tags\": [\"WEB\"]}, \"spec\": {\"ingress\": "
    "[{\"action\": \"allow\", \"source\": {\"tag\": \"WEB\"}}], \"egress\": [{\"action\": "
    "\"allow\"}]}}}";
/* The same profile after someone else added a rule. */
static const char web_changed_answer[] =
    "{\"revision\": 8, \"resource\": {\"apiVersion\": \"v1\", \"kind\": \"profile\", "
    "\"metadata\": {\"name\": \"WEB\", \"tags\": [\"WEB\"]}, \"spec\": {\"ingress\": "
    "[{\"action\": \"allow\", \"source\": {\"tag\": \"WEB\"}}, {\"action\": \"deny\"}], "
    "\"egress\": [{\"action\": \"allow\"}]}}}";
static const char ok_answer[] =
    "{\"revision\": 9, \"results\": [{\"kind\": \"profile\", \"key\": \"WEB\", \"outcome\": "
    "\"updated\"}]}";

/* `rule add`: read, change, write with the old value expected; a conflict starts again from the
 * new value, so the other writer's rule survives. */
static void test_agent_rule_add(void **state)
{
	static const struct answer answers[] = {
	    {200, web_answer},
	    {409, "{\"error\": {\"code\": \"conflict\", \"message\": \"profile WEB changed\"}}"},
	    {200, web_changed_answer},
	    {200, ok_answer},
	};
	struct fake *f = fake_start(answers, 4);
	struct run r = RUN("profile", "WEB", "rule", "add", "inbound", "--at=2", "allow", "tcp",
	                   "from", "tag", "DB", "to", "ports", "3306", "--socket", f->path);
	json_t *want;
	(void)state;

	assert_string_equal(r.err, "");
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, ""); /* 0.x said nothing either */
	run_free(&r);
	expect_request(f, 0, "GET", "/v1/profiles/WEB");
	expect_request(f, 1, "POST", "/v1/resources");
	expect_request(f, 2, "GET", "/v1/profiles/WEB");
	expect_request(f, 3, "POST", "/v1/resources");
	want = load("{\"op\": \"replace\", \"resources\": [{\"apiVersion\": \"v1\", \"kind\": "
	            "\"profile\", \"metadata\": {\"name\": \"WEB\", \"tags\": [\"WEB\"]}, "
	            "\"spec\": {\"ingress\": [{\"action\": \"allow\", \"source\": {\"tag\": "
	            "\"WEB\"}}, {\"action\": \"allow\", \"protocol\": \"tcp\", \"source\": "
	            "{\"tag\": \"DB\"}, \"destination\": {\"ports\": [3306]}}, {\"action\": "
	            "\"deny\"}], \"egress\": [{\"action\": \"allow\"}]}}], \"expect\": "
	            "[{\"apiVersion\": \"v1\", \"kind\": \"profile\", \"metadata\": {\"name\": "
	            "\"WEB\", \"tags\": [\"WEB\"]}, \"spec\": {\"ingress\": [{\"action\": "
	            "\"allow\", \"source\": {\"tag\": \"WEB\"}}, {\"action\": \"deny\"}], "
	            "\"egress\": [{\"action\": \"allow\"}]}}]}");
	if (!json_equal(f->body[3], want))
		fail_msg("unexpected write: %s", json_dumps(f->body[3], JSON_SORT_KEYS));
	json_decref(want);
	fake_stop(f, 4);
}

static void test_agent_rule_add_present(void **state)
{
	static const struct answer answers[] = {{200, web_answer}};
	struct fake *f = fake_start(answers, 1);
	struct run r = RUN("profile", "WEB", "rule", "add", "inbound", "allow", "from", "tag",
	                   "WEB", "--socket", f->path);
	(void)state;

	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "Rule already present, skipping.\n");
	run_free(&r);
	fake_stop(f, 1); /* nothing written */

	f = fake_start(answers, 1);
	r = RUN("profile", "WEB", "rule", "add", "outbound", "--at=3", "deny", "--socket", f->path);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.err, "tabby profile: Position 3 is out-of-range.\n");
	run_free(&r);
	fake_stop(f, 1);

	f = fake_start(answers, 1);
	r = RUN("profile", "WEB", "rule", "remove", "outbound", "deny", "--socket", f->path);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.err, "tabby profile: Rule not found.\n");
	run_free(&r);
	fake_stop(f, 1);

	f = fake_start(answers, 1);
	r = RUN("profile", "WEB", "rule", "remove", "outbound", "--at", "2", "--socket", f->path);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.err, "tabby profile: Rule position out-of-range.\n");
	run_free(&r);
	fake_stop(f, 1);
}

static void test_agent_rule_remove(void **state)
{
	static const struct answer answers[] = {{200, web_changed_answer}, {200, ok_answer}};
	struct fake *f = fake_start(answers, 2);
	struct run r = RUN("profile", "WEB", "rule", "remove", "inbound", "allow", "from", "tag",
	                   "WEB", "--socket", f->path);
	const json_t *ingress;
	(void)state;

	assert_string_equal(r.err, "");
	assert_int_equal(r.status, 0);
	run_free(&r);
	ingress = json_object_get(
	    json_object_get(json_array_get(json_object_get(f->body[1], "resources"), 0), "spec"),
	    "ingress");
	expect_json(ingress, "[{\"action\": \"deny\"}]");
	fake_stop(f, 2);

	f = fake_start(answers, 2);
	r = RUN("profile", "WEB", "rule", "remove", "inbound", "--at=2", "--socket", f->path);
	assert_int_equal(r.status, 0);
	run_free(&r);
	ingress = json_object_get(
	    json_object_get(json_array_get(json_object_get(f->body[1], "resources"), 0), "spec"),
	    "ingress");
	expect_json(ingress, "[{\"action\": \"allow\", \"source\": {\"tag\": \"WEB\"}}]");
	fake_stop(f, 2);
}

/* A rule written with a protocol number (as a v1 file may have it) is the 0.x command's rule
 * with the protocol's name: rule remove finds it, rule add does not add it twice. */
static void test_agent_rule_protocol_number(void **state)
{
	static const char numbered[] =
	    "{\"revision\": 7, \"resource\": {\"apiVersion\": \"v1\", \"kind\": \"profile\", "
	    "\"metadata\": {\"name\": \"WEB\"}, \"spec\": {\"ingress\": [{\"action\": \"allow\", "
	    "\"protocol\": 6, \"destination\": {\"ports\": [3306]}}], \"egress\": []}}}";
	static const struct answer answers[] = {{200, numbered}, {200, ok_answer}};
	struct fake *f = fake_start(answers, 2);
	struct run r = RUN("profile", "WEB", "rule", "remove", "inbound", "allow", "tcp", "to",
	                   "ports", "3306", "--socket", f->path);
	(void)state;

	assert_string_equal(r.err, "");
	assert_int_equal(r.status, 0);
	run_free(&r);
	expect_json(json_object_get(
	                json_object_get(json_array_get(json_object_get(f->body[1], "resources"), 0),
	                                "spec"),
	                "ingress"),
	            "[]");
	fake_stop(f, 2);

	f = fake_start(answers, 1);
	r = RUN("profile", "WEB", "rule", "add", "inbound", "allow", "tcp", "to", "ports", "3306",
	        "--socket", f->path);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "Rule already present, skipping.\n");
	run_free(&r);
	fake_stop(f, 1);
}

static void test_agent_show(void **state)
{
	static const struct answer answers[] = {{200, web_changed_answer}};
	static const struct answer missing[] = {
	    {404, "{\"error\": {\"code\": \"not_found\", \"message\": \"profile DB does not "
	          "exist\"}}"}};
	struct fake *f = fake_start(answers, 1);
	struct run r = RUN("profile", "WEB", "rule", "show", "--socket", f->path);
	(void)state;

	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "Inbound rules:\n   1 allow from tag WEB\n   2 deny\n"
	                           "Outbound rules:\n   1 allow\n");
	run_free(&r);
	fake_stop(f, 1);

	f = fake_start(answers, 1);
	r = RUN("profile", "WEB", "tag", "show", "--socket", f->path);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "WEB\n");
	run_free(&r);
	fake_stop(f, 1);

	f = fake_start(missing, 1);
	r = RUN("profile", "DB", "rule", "json", "--socket", f->path);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.err, "tabby profile: Profile DB not found.\n");
	assert_string_equal(r.out, "");
	run_free(&r);
	fake_stop(f, 1);
}

static void test_agent_add_remove(void **state)
{
	static const struct answer exists[] = {
	    {409, "{\"error\": {\"code\": \"exists\", \"message\": \"profile WEB exists\"}}"}};
	static const struct answer created[] = {{200, ok_answer}};
	static const struct answer in_use[] = {
	    {200, "{\"revision\": 3, \"items\": [{\"kind\": \"workloadEndpoint\", \"metadata\": "
	          "{\"name\": \"eth0\", \"workload\": \"t1\", \"orchestrator\": \"mesos\", "
	          "\"node\": \"n1\"}, \"spec\": {\"ipNetworks\": [], \"profiles\": [\"WEB\"], "
	          "\"interfaceName\": \"cali1\"}}]}"},
	    {200, "{\"revision\": 3, \"items\": []}"},
	};
	static const struct answer unused[] = {
	    {200, "{\"revision\": 3, \"items\": []}"},
	    {200, "{\"revision\": 3, \"items\": []}"},
	    {200, ok_answer},
	};
	struct fake *f = fake_start(exists, 1);
	struct run r = RUN("profile", "add", "WEB", "--socket", f->path);
	json_t *want;
	(void)state;

	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "Profile WEB already exists.\n");
	run_free(&r);
	fake_stop(f, 1);

	f = fake_start(created, 1);
	r = RUN("profile", "add", "WEB", "--socket", f->path);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "Created profile WEB\n");
	run_free(&r);
	expect_request(f, 0, "POST", "/v1/resources");
	want = json_pack("{s:s, s:[o]}", "op", "create", "resources", ctl_profile_default("WEB"));
	assert_true(json_equal(f->body[0], want));
	json_decref(want);
	fake_stop(f, 1);

	f = fake_start(in_use, 2);
	r = RUN("profile", "remove", "WEB", "--socket", f->path);
	assert_int_equal(r.status, 1);
	assert_contains(r.err, "Cannot remove profile WEB - profile contains endpoints (1, such "
	                       "as n1/mesos/t1/eth0). Use the '--no-check' flag");
	run_free(&r);
	expect_request(f, 0, "GET", "/v1/workloadendpoints");
	expect_request(f, 1, "GET", "/v1/hostendpoints");
	fake_stop(f, 2); /* no DELETE */

	f = fake_start(unused, 3);
	r = RUN("profile", "remove", "WEB", "--socket", f->path);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "Deleted profile WEB\n");
	run_free(&r);
	expect_request(f, 2, "DELETE", "/v1/profiles/WEB");
	fake_stop(f, 3);

	f = fake_start(created, 1);
	r = RUN("profile", "remove", "WEB", "--no-check", "--socket", f->path);
	assert_int_equal(r.status, 0);
	run_free(&r);
	expect_request(f, 0, "DELETE", "/v1/profiles/WEB");
	fake_stop(f, 1);
}

/* The v1 commands against the canned agent too. */
static void test_agent_resources(void **state)
{
	static const struct answer list[] = {
	    {200, "{\"revision\": 3, \"items\": [{\"kind\": \"hostEndpoint\", \"metadata\": "
	          "{\"name\": \"eth1\", \"node\": \"n1\"}, \"spec\": {\"interfaceName\": "
	          "\"eth1\"}}, {\"kind\": \"hostEndpoint\", \"metadata\": {\"name\": \"eth1\", "
	          "\"node\": \"n2\"}, \"spec\": {\"interfaceName\": \"eth1\"}}]}"},
	};
	static const struct answer missing[] = {
	    {404, "{\"error\": {\"code\": \"not_found\", \"message\": \"profile web does not "
	          "exist\"}}"}};
	static const struct answer applied[] = {
	    {200, "{\"revision\": 4, \"results\": [{\"kind\": \"profile\", \"key\": \"a\", "
	          "\"outcome\": \"created\"}, {\"kind\": \"profile\", \"key\": \"b\", "
	          "\"outcome\": \"unchanged\"}]}"}};
	char path[] = "/tmp/tabby-profile-test-file-XXXXXX";
	static const char file[] = "- apiVersion: v1\n  kind: profile\n  metadata: {name: a}\n"
	                           "- apiVersion: v1\n  kind: pro\n  metadata: {name: b}\n";
	struct fake *f = fake_start(list, 1);
	struct run r = RUN("get", "hep", "--node", "n2", "--socket", f->path);
	int fd;
	(void)state;

	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "NODE  NAME\nn2    eth1\n");
	run_free(&r);
	expect_request(f, 0, "GET", "/v1/hostendpoints");
	fake_stop(f, 1);

	f = fake_start(list, 1);
	r = RUN("get", "hep", "eth9", "--socket", f->path);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.err, "tabby get: hostEndpoint eth9 does not exist\n");
	run_free(&r);
	fake_stop(f, 1);

	f = fake_start(missing, 1);
	r = RUN("get", "profile", "web", "-o", "yaml", "--socket", f->path);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.err, "tabby get: profile web does not exist\n");
	run_free(&r);
	expect_request(f, 0, "GET", "/v1/profiles/web");
	fake_stop(f, 1);

	f = fake_start(missing, 1);
	r = RUN("get", "wep", "eth0", "--node", "n 1", "--orchestrator", "mesos", "--workload",
	        "app/x", "--socket", f->path);
	assert_int_equal(r.status, 1);
	run_free(&r);
	expect_request(f, 0, "GET", "/v1/workloadendpoints/n%201/mesos/app/x/eth0");
	fake_stop(f, 1);

	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, file, strlen(file)), (ssize_t)strlen(file));
	close(fd);
	f = fake_start(applied, 1);
	r = RUN("apply", "-f", path, "--socket", f->path);
	assert_string_equal(r.err, "");
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "Successfully applied 2 'profile' resource(s)\n");
	run_free(&r);
	expect_request(f, 0, "POST", "/v1/resources");
	/* The resources as written: the agent normalizes them itself. */
	expect_json(f->body[0],
	            "{\"op\": \"apply\", \"resources\": [{\"apiVersion\": \"v1\", \"kind\": "
	            "\"profile\", \"metadata\": {\"name\": \"a\"}}, {\"apiVersion\": \"v1\", "
	            "\"kind\": \"pro\", \"metadata\": {\"name\": \"b\"}}]}");
	fake_stop(f, 1);
	unlink(path);
}

static void test_help(void **state)
{
	static const char *const flags[] = {"--at POSITION",
	                                    "--detailed",
	                                    "--no-check",
	                                    "--socket PATH",
	                                    "profile PROFILE rule add",
	                                    NULL};
	(void)state;

	expect_help(RUN("profile", "--help"), "Usage: tabby profile COMMAND... [flags]", flags);
	expect_help(RUN("help", "profile"), "Usage: tabby profile COMMAND...", flags);
	expect_help(RUN("profile", "web", "rule", "add", "-h"), "Usage: tabby profile", flags);
}

static void test_command_line(void **state)
{
	(void)state;

	expect_usage_error(RUN("profile"), "tabby profile: missing COMMAND");
	expect_usage_error(RUN("profile", "add"), "tabby profile: missing PROFILE");
	expect_usage_error(RUN("profile", "add", "a", "b"),
	                   "tabby profile: unexpected argument 'b'");
	expect_usage_error(RUN("profile", "add", "a/b", "--socket", NOSOCK),
	                   "tabby profile: invalid profile name 'a/b': 1 to 39 letters, digits, "
	                   "dots, dashes and underscores");
	expect_usage_error(RUN("profile", "add", "0123456789012345678901234567890123456789"),
	                   "invalid profile name");
	expect_usage_error(RUN("profile", "remove"), "tabby profile: missing PROFILE");
	expect_usage_error(RUN("profile", "show", "x"), "tabby profile: unexpected argument 'x'");
	expect_usage_error(RUN("profile", "show", "--no-check"),
	                   "tabby profile: --no-check does not apply to 'show'");
	expect_usage_error(RUN("profile", "add", "x", "--detailed"),
	                   "--detailed does not apply to 'add'");
	expect_usage_error(RUN("profile", "remove", "x", "--at", "1"),
	                   "--at does not apply to 'remove'");
	expect_usage_error(RUN("profile", "frob"), "tabby profile: unknown profile command 'frob'");
	expect_usage_error(RUN("profile", "web", "frob"),
	                   "expected tag or rule after the profile name, found 'frob'");
	expect_usage_error(RUN("profile", "web", "tag"), "missing show, add or remove after 'tag'");
	expect_usage_error(RUN("profile", "web", "tag", "add"), "tabby profile: missing TAG");
	expect_usage_error(RUN("profile", "web", "tag", "show", "x"), "unexpected argument 'x'");
	expect_usage_error(RUN("profile", "web", "tag", "frob", "x"), "unknown tag command 'frob'");
	expect_usage_error(RUN("profile", "web", "tag", "add", "a b"), "invalid tag name 'a b'");
	expect_usage_error(RUN("profile", "web", "tag", "add", "x", "--at=1"),
	                   "--at does not apply to 'tag'");
	expect_usage_error(RUN("profile", "web", "rule"),
	                   "missing show, json, update, add or remove");
	expect_usage_error(RUN("profile", "web", "rule", "frob"), "unknown rule command 'frob'");
	expect_usage_error(RUN("profile", "web", "rule", "show", "x"), "unexpected argument 'x'");
	expect_usage_error(RUN("profile", "web", "rule", "json", "--at=1"),
	                   "--at does not apply to 'json'");
	expect_usage_error(RUN("profile", "web", "rule", "add"), "missing inbound or outbound");
	expect_usage_error(RUN("profile", "web", "rule", "add", "sideways", "allow"),
	                   "expected inbound or outbound, found 'sideways'");
	expect_usage_error(RUN("profile", "web", "rule", "add", "inbound"),
	                   "missing the rule's action (allow or deny)");
	expect_usage_error(RUN("profile", "web", "rule", "add", "inbound", "--at=0", "allow"),
	                   "invalid value '0' for --at (want an integer >= 1)");
	expect_usage_error(RUN("profile", "web", "rule", "add", "inbound", "--at", "x", "allow"),
	                   "invalid value 'x' for --at");
	expect_usage_error(RUN("profile", "web", "rule", "remove", "inbound", "--at=1", "allow"),
	                   "give --at or a rule, not both");
	expect_usage_error(RUN("profile", "web", "rule", "remove", "outbound"),
	                   "missing the rule's action");
	/* A bad rule is refused before anything is sent (no "cannot connect"). */
	expect_usage_error(RUN("profile", "web", "rule", "add", "inbound", "allow", "icmp", "from",
	                       "ports", "80", "--socket", NOSOCK),
	                   "tabby profile: ports are only valid with protocol tcp or udp");
	expect_usage_error(RUN("profile", "web", "rule", "add", "outbound", "deny", "tcp", "to",
	                       "ports", "99999", "--socket", NOSOCK),
	                   "invalid ports '99999'");
}

static void test_accepted(void **state)
{
	(void)state;

	expect_sent(RUN("profile", "add", "web", "--socket", NOSOCK));
	expect_sent(RUN("profile", "remove", "web", "--socket", NOSOCK));
	expect_sent(RUN("profile", "remove", "web", "--no-check", "--socket", NOSOCK));
	expect_sent(RUN("profile", "show", "--socket", NOSOCK));
	expect_sent(RUN("profile", "show", "--detailed", "--socket", NOSOCK));
	expect_sent(RUN("profile", "web", "tag", "show", "--socket", NOSOCK));
	expect_sent(RUN("profile", "web", "tag", "add", "db", "--socket", NOSOCK));
	expect_sent(RUN("profile", "web", "tag", "remove", "db", "--socket", NOSOCK));
	expect_sent(RUN("profile", "web", "rule", "show", "--socket", NOSOCK));
	expect_sent(RUN("profile", "web", "rule", "json", "--socket", NOSOCK));
	expect_sent(RUN("profile", "web", "rule", "add", "inbound", "allow", "tcp", "from", "tag",
	                "DB", "to", "ports", "3306", "--socket", NOSOCK));
	expect_sent(
	    RUN("profile", "web", "rule", "add", "outbound", "--at=2", "deny", "--socket", NOSOCK));
	expect_sent(
	    RUN("profile", "web", "rule", "remove", "outbound", "--at=2", "--socket", NOSOCK));
	expect_sent(RUN("profile", "web", "rule", "remove", "inbound", "allow", "from", "tag",
	                "web", "--socket", NOSOCK));
	/* Names made by v1 files need not follow the 0.x rule to be changed. */
	expect_sent(RUN("profile", "team/web", "rule", "show", "--socket", NOSOCK));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_default_profile),
	    cmocka_unit_test(test_ports),
	    cmocka_unit_test(test_rule_parse),
	    cmocka_unit_test(test_rule_text),
	    cmocka_unit_test(test_rule_round_trip),
	    cmocka_unit_test(test_backend_json),
	    cmocka_unit_test(test_rules_show),
	    cmocka_unit_test(test_rules_update),
	    cmocka_unit_test(test_tables),
	    cmocka_unit_test(test_help),
	    cmocka_unit_test(test_command_line),
	    cmocka_unit_test(test_accepted),
	    cmocka_unit_test(test_agent_rule_add),
	    cmocka_unit_test(test_agent_rule_add_present),
	    cmocka_unit_test(test_agent_rule_remove),
	    cmocka_unit_test(test_agent_rule_protocol_number),
	    cmocka_unit_test(test_agent_show),
	    cmocka_unit_test(test_agent_add_remove),
	    cmocka_unit_test(test_agent_resources),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
