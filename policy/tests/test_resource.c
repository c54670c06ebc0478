/*
 * Resources: policy_resource_normalize() over every kind and every field of calico-behaviour.md
 * sections 2.1 and 3 (the normalized form exactly, key order included, and the exact message of
 * every check), policy_resource_key(), the kind and protocol names, and ipPools to and from
 * IPAM's struct. Inputs are YAML, read with policy_doc_parse() (without the texts that
 * policy_doc_parse_texts() keeps: test_yaml_texts has those), or JSON.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "policy/policy.h"

/* The one resource of a YAML text. */
static json_t *read_one(const char *yaml)
{
	json_t *list = NULL, *v;
	char err[256];

	if (policy_doc_parse(yaml, strlen(yaml), &list, err, sizeof err) != 0)
		fail_msg("test input does not parse: %s\n%s", err, yaml);
	assert_int_equal(json_array_size(list), 1);
	v = json_incref(json_array_get(list, 0));
	json_decref(list);
	return v;
}

/* Normalize yaml; the result must be want (JSON text), with the same key order; normalizing the
 * result again must give it back unchanged. */
static void normalizes_to(const char *yaml, const char *want)
{
	json_error_t je;
	json_t *in = read_one(yaml), *out = NULL, *again = NULL;
	json_t *exp = json_loads(want, 0, &je);
	char err[512], *got_s, *exp_s, *again_s;

	if (exp == NULL)
		fail_msg("bad expected JSON: %s", je.text);
	if (policy_resource_normalize(in, 0, &out, err, sizeof err) != 0)
		fail_msg("normalize failed: %s\n%s", err, yaml);
	got_s = json_dumps(out, JSON_COMPACT);
	exp_s = json_dumps(exp, JSON_COMPACT);
	if (strcmp(got_s, exp_s) != 0)
		fail_msg("\n got %s\nwant %s", got_s, exp_s);
	if (policy_resource_normalize(out, 0, &again, err, sizeof err) != 0)
		fail_msg("normalizing the normalized form failed: %s", err);
	again_s = json_dumps(again, JSON_COMPACT);
	assert_string_equal(again_s, got_s);
	free(got_s);
	free(exp_s);
	free(again_s);
	json_decref(in);
	json_decref(out);
	json_decref(again);
	json_decref(exp);
}

static void fails_with(const char *yaml, unsigned index, const char *want)
{
	json_t *in = read_one(yaml), *out = (json_t *)1;
	char err[512];

	assert_int_equal(policy_resource_normalize(in, index, &out, err, sizeof err), -EINVAL);
	assert_null(out);
	assert_string_equal(err, want);
	json_decref(in);
}

/* A policy named p whose only ingress rule is the flow mapping rule. */
static void rule_fails(const char *rule, const char *want)
{
	char yaml[1024];

	snprintf(yaml, sizeof yaml,
	         "apiVersion: v1\nkind: policy\nmetadata: {name: p}\nspec:\n  ingress:\n  - %s\n",
	         rule);
	fails_with(yaml, 0, want);
}

/* The normalized form of that rule. */
static void rule_is(const char *rule, const char *want)
{
	char yaml[1024], json[1024];

	snprintf(yaml, sizeof yaml,
	         "apiVersion: v1\nkind: policy\nmetadata: {name: p}\nspec:\n  ingress:\n  - %s\n",
	         rule);
	snprintf(
	    json, sizeof json,
	    "{\"apiVersion\":\"v1\",\"kind\":\"policy\",\"metadata\":{\"name\":\"p\"},\"spec\":{"
	    "\"selector\":\"\",\"types\":[\"ingress\"],\"ingress\":[%s],\"egress\":[],"
	    "\"doNotTrack\":false,\"preDNAT\":false}}",
	    want);
	normalizes_to(yaml, json);
}

#define POLICY_HEAD "apiVersion: v1\nkind: policy\nmetadata: {name: p}\n"

/* ---- the issue's example ---- */

static const char issue_example[] = "apiVersion: v1\n"
                                    "kind: policy\n"
                                    "metadata:\n"
                                    "  name: frontend-policy\n"
                                    "spec:\n"
                                    "  order: 50\n"
                                    "  selector: app == 'frontend'\n"
                                    "  ingress:\n"
                                    "  - action: allow\n"
                                    "    protocol: tcp\n"
                                    "    destination:\n"
                                    "      ports:\n"
                                    "      - 80\n"
                                    "  egress:\n"
                                    "  - action: allow\n"
                                    "    protocol: tcp\n"
                                    "    destination:\n"
                                    "      selector: app == 'database'\n"
                                    "      ports:\n"
                                    "      - 6379\n";

static void test_issue_example(void **state)
{
	(void)state;
	/* Unchanged but for the defaults: types (both: there are rules of both directions),
	 * doNotTrack and preDNAT. */
	normalizes_to(
	    issue_example,
	    "{\"apiVersion\":\"v1\",\"kind\":\"policy\",\"metadata\":{\"name\":"
	    "\"frontend-policy\"},\"spec\":{\"order\":50,\"selector\":\"app == 'frontend'\","
	    "\"types\":[\"ingress\",\"egress\"],\"ingress\":[{\"action\":\"allow\","
	    "\"protocol\":\"tcp\",\"destination\":{\"ports\":[80]}}],\"egress\":[{"
	    "\"action\":\"allow\",\"protocol\":\"tcp\",\"destination\":{\"selector\":\"app "
	    "== 'database'\",\"ports\":[6379]}}],\"doNotTrack\":false,\"preDNAT\":false}}");
}

static void test_issue_port_error(void **state)
{
	const char *at = strstr(issue_example, "- 80\n");
	char yaml[1024];

	(void)state;
	/* The example with its ingress port 80 made 70000. */
	snprintf(yaml, sizeof yaml, "%.*s- 70000\n%s", (int)(at - issue_example), issue_example,
	         at + 5);
	fails_with(
	    yaml, 0,
	    "policy frontend-policy: spec.ingress[0].destination.ports[0]: 70000 is not a port");
}

/* ---- the envelope (3.1) ---- */

static void test_envelope(void **state)
{
	(void)state;
	fails_with("kind: policy\nmetadata: {name: p}\n", 0,
	           "policy p: apiVersion: required (\"v1\")");
	fails_with(
	    "apiVersion: projectcalico.org/v3\nkind: policy\nmetadata: {name: p}\n", 0,
	    "policy p: apiVersion: \"projectcalico.org/v3\" is not supported (this is the v1 "
	    "API: \"v1\")");
	fails_with("apiVersion: 1\nkind: policy\nmetadata: {name: p}\n", 0,
	           "policy p: apiVersion: 1 is not supported (this is the v1 API: \"v1\")");
	fails_with("apiVersion: v1\nmetadata: {name: p}\n", 2, "resource #3: kind: required");
	fails_with("apiVersion: v1\nkind: NetworkPolicy\nmetadata: {name: p}\n", 0,
	           "resource #1: kind: \"NetworkPolicy\" is not a known kind");
	fails_with("apiVersion: v1\nkind: policy\nmetadata: {name: p}\nstatus: {}\n", 0,
	           "policy p: status: unknown field");
	fails_with("apiVersion: v1\nkind: policy\nmetadata: {name: p}\nspec:\n  ingres: []\n", 0,
	           "policy p: spec.ingres: unknown field");
	fails_with("apiVersion: v1\nkind: policy\nmetadata: {name: p}\nspec: [1]\n", 0,
	           "policy p: spec: [1] is not a mapping");
	fails_with("apiVersion: v1\nkind: policy\nmetadata: {name: p, labels: {a: b}}\n", 0,
	           "policy p: metadata.labels: unknown field");
	/* Without a usable name a resource is told by kind and position (1-based). */
	fails_with("apiVersion: v1\nkind: policy\n", 1, "policy #2: metadata.name: required");
	fails_with(
	    "apiVersion: v1\nkind: policy\nmetadata: {name: \"a b\"}\n", 0,
	    "policy #1: metadata.name: \"a b\" is not a valid name (1 to 128 of a-z A-Z 0-9 _ "
	    ". - /)");
	fails_with("{\"apiVersion\": \"v1\", \"kind\": \"profile\", \"metadata\": {\"name\": 12}}",
	           0, "profile #1: metadata.name: 12 is not a string (quote it)");
	fails_with("- 1\n", 0, "resource #1: 1 is not a resource (a mapping)");
	/* bgpPeer is refused by name, whatever else it holds. */
	fails_with(
	    "apiVersion: v1\nkind: bgpPeer\nmetadata: {scope: node, node: agent-7, peerIP: "
	    "10.0.7.1}\nspec: {asNumber: 65010}\n",
	    0, "bgpPeer 10.0.7.1: Tabby routes without BGP; bgpPeer resources are not supported");
	fails_with("apiVersion: v1\nkind: BGPPeer\nmetadata: {scope: global}\n", 4,
	           "bgpPeer #5: Tabby routes without BGP; bgpPeer resources are not supported");
	/* Kinds are taken case-insensitively and by alias; the normalized kind is the v1 name. Null
	 * fields count as absent; a missing spec is an empty one. */
	normalizes_to("apiVersion: v1\nkind: Policies\nmetadata: {name: p, annotations: ~}\nspec:\n"
	              "  order:\n",
	              "{\"apiVersion\":\"v1\",\"kind\":\"policy\",\"metadata\":{\"name\":\"p\"},"
	              "\"spec\":{\"selector\":\"\",\"types\":[\"ingress\"],\"ingress\":[],"
	              "\"egress\":[],\"doNotTrack\":false,\"preDNAT\":false}}");
	normalizes_to("apiVersion: v1\nkind: PRO\nmetadata: {name: x}\n",
	              "{\"apiVersion\":\"v1\",\"kind\":\"profile\",\"metadata\":{\"name\":\"x\"},"
	              "\"spec\":{\"ingress\":[],\"egress\":[]}}");
}

static void test_kinds(void **state)
{
	static const struct {
		const char *alias;
		enum policy_kind k;
	} cases[] = {
	    {"policy", POLICY_KIND_POLICY},
	    {"Policies", POLICY_KIND_POLICY},
	    {"pol", POLICY_KIND_POLICY},
	    {"POLS", POLICY_KIND_POLICY},
	    {"profile", POLICY_KIND_PROFILE},
	    {"profiles", POLICY_KIND_PROFILE},
	    {"pro", POLICY_KIND_PROFILE},
	    {"pros", POLICY_KIND_PROFILE},
	    {"ipPool", POLICY_KIND_IPPOOL},
	    {"ippools", POLICY_KIND_IPPOOL},
	    {"ipp", POLICY_KIND_IPPOOL},
	    {"ipps", POLICY_KIND_IPPOOL},
	    {"pool", POLICY_KIND_IPPOOL},
	    {"Pools", POLICY_KIND_IPPOOL},
	    {"workloadEndpoint", POLICY_KIND_WORKLOADENDPOINT},
	    {"workloadendpoints", POLICY_KIND_WORKLOADENDPOINT},
	    {"wep", POLICY_KIND_WORKLOADENDPOINT},
	    {"weps", POLICY_KIND_WORKLOADENDPOINT},
	    {"hostEndpoint", POLICY_KIND_HOSTENDPOINT},
	    {"HostEndpoints", POLICY_KIND_HOSTENDPOINT},
	    {"hep", POLICY_KIND_HOSTENDPOINT},
	    {"heps", POLICY_KIND_HOSTENDPOINT},
	    {"node", POLICY_KIND_NODE},
	    {"nodes", POLICY_KIND_NODE},
	    {"no", POLICY_KIND_NODE},
	    {"nos", POLICY_KIND_NODE},
	    {"bgpPeer", POLICY_KIND_BGPPEER},
	    {"bgppeers", POLICY_KIND_BGPPEER},
	    {"bgpp", POLICY_KIND_BGPPEER},
	    {"bgpps", POLICY_KIND_BGPPEER},
	    {"bp", POLICY_KIND_BGPPEER},
	    {"bps", POLICY_KIND_BGPPEER},
	    {"", POLICY_KIND_NONE},
	    {"policyx", POLICY_KIND_NONE},
	    {"networkpolicy", POLICY_KIND_NONE},
	};
	static const char *const names[][2] = {
	    {NULL, NULL},
	    {"policy", "policies"},
	    {"profile", "profiles"},
	    {"ipPool", "ippools"},
	    {"hostEndpoint", "hostendpoints"},
	    {"workloadEndpoint", "workloadendpoints"},
	    {"node", "nodes"},
	    {"bgpPeer", "bgppeers"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		assert_int_equal(policy_kind_parse(cases[i].alias), cases[i].k);
	assert_int_equal(policy_kind_parse(NULL), POLICY_KIND_NONE);
	for (int k = 1; k < POLICY_KIND_COUNT; k++) {
		assert_string_equal(policy_kind_name((enum policy_kind)k), names[k][0]);
		assert_string_equal(policy_kind_plural((enum policy_kind)k), names[k][1]);
		assert_int_equal(policy_kind_parse(names[k][0]), k);
		assert_int_equal(policy_kind_parse(names[k][1]), k);
	}
}

static void test_protocols(void **state)
{
	(void)state;
	assert_int_equal(policy_protocol_parse("tcp"), 6);
	assert_int_equal(policy_protocol_parse("udp"), 17);
	assert_int_equal(policy_protocol_parse("icmp"), 1);
	assert_int_equal(policy_protocol_parse("icmpv6"), 58);
	assert_int_equal(policy_protocol_parse("sctp"), 132);
	assert_int_equal(policy_protocol_parse("udplite"), 136);
	assert_int_equal(policy_protocol_parse("TCP"), 6); /* the CLI takes upper case */
	assert_int_equal(policy_protocol_parse("1"), 1);
	assert_int_equal(policy_protocol_parse("255"), 255);
	assert_int_equal(policy_protocol_parse("0"), -1);
	assert_int_equal(policy_protocol_parse("256"), -1);
	assert_int_equal(policy_protocol_parse("99999999999999999999"), -1);
	assert_int_equal(policy_protocol_parse("-6"), -1);
	assert_int_equal(policy_protocol_parse(""), -1);
	assert_int_equal(policy_protocol_parse("gre"), -1);
	assert_int_equal(policy_protocol_parse(NULL), -1);
	assert_string_equal(policy_protocol_name(6), "tcp");
	assert_string_equal(policy_protocol_name(58), "icmpv6");
	assert_string_equal(policy_protocol_name(136), "udplite");
	assert_null(policy_protocol_name(47));
}

/* ---- names and labels (3.1) ---- */

static void test_names(void **state)
{
	char yaml[1400], want[1400], name[600];

	(void)state;
	/* Policy and profile names may hold '/', 128 characters at most. */
	memset(name, 'a', 128);
	name[128] = '\0';
	name[5] = '/';
	snprintf(yaml, sizeof yaml, "apiVersion: v1\nkind: policy\nmetadata: {name: %s}\n", name);
	snprintf(want, sizeof want,
	         "{\"apiVersion\":\"v1\",\"kind\":\"policy\",\"metadata\":{\"name\":\"%s\"},"
	         "\"spec\":{\"selector\":\"\",\"types\":[\"ingress\"],\"ingress\":[],"
	         "\"egress\":[],\"doNotTrack\":false,\"preDNAT\":false}}",
	         name);
	normalizes_to(yaml, want);
	name[128] = 'a';
	name[129] = '\0';
	snprintf(yaml, sizeof yaml, "apiVersion: v1\nkind: policy\nmetadata: {name: %s}\n", name);
	/* A long value is cut in the message. */
	snprintf(
	    want, sizeof want,
	    "policy #1: metadata.name: \"%.79s... is not a valid name (1 to 128 of a-z A-Z 0-9 _ "
	    ". - /)",
	    name);
	fails_with(yaml, 0, want);
	/* Other names may not. */
	fails_with(
	    "apiVersion: v1\nkind: node\nmetadata: {name: a/b}\n", 0,
	    "node #1: metadata.name: \"a/b\" is not a valid name (1 to 128 of a-z A-Z 0-9 _ . -)");
	fails_with(
	    "apiVersion: v1\nkind: node\nmetadata: {name: \"\"}\n", 0,
	    "node #1: metadata.name: \"\" is not a valid name (1 to 128 of a-z A-Z 0-9 _ . -)");
	fails_with(
	    "apiVersion: v1\nkind: node\nmetadata: {name: \"n\\u00e9\"}\n", 0,
	    "node #1: metadata.name: \"n\u00e9\" is not a valid name (1 to 128 of a-z A-Z 0-9 _ "
	    ". -)");
	/* Interface names: 15 at most, no dots. */
	fails_with(
	    "apiVersion: v1\nkind: hostEndpoint\nmetadata: {name: h, node: n}\nspec: "
	    "{interfaceName: abcdefghijklmnop}\n",
	    0,
	    "hostEndpoint h: spec.interfaceName: \"abcdefghijklmnop\" is not a valid interface "
	    "name (1 to 15 of a-z A-Z 0-9 _ -)");
	fails_with(
	    "apiVersion: v1\nkind: hostEndpoint\nmetadata: {name: h, node: n}\nspec: "
	    "{interfaceName: eth0.1}\n",
	    0,
	    "hostEndpoint h: spec.interfaceName: \"eth0.1\" is not a valid interface name (1 to "
	    "15 of a-z A-Z 0-9 _ -)");
	/* Label keys: '/' allowed, 512 at most. */
	normalizes_to(
	    "apiVersion: v1\nkind: node\nmetadata:\n  name: n\n  labels: {projectcalico.org/"
	    "zone: a, v: \"\", w: -a, x: A.b_c-9}\n",
	    "{\"apiVersion\":\"v1\",\"kind\":\"node\",\"metadata\":{\"name\":\"n\",\"labels\":"
	    "{\"projectcalico.org/zone\":\"a\",\"v\":\"\",\"w\":\"-a\",\"x\":\"A.b_c-9\"}},"
	    "\"spec\":{}}");
	memset(name, 'k', 513);
	name[513] = '\0';
	snprintf(yaml, sizeof yaml,
	         "apiVersion: v1\nkind: node\nmetadata:\n  name: n\n  labels: {%s: v}\n", name);
	snprintf(
	    want, sizeof want,
	    "node n: metadata.labels: \"%.79s... is not a valid label key (1 to 512 of a-z A-Z 0-9 "
	    "_ . / -)",
	    name);
	fails_with(yaml, 0, want);
	fails_with(
	    "apiVersion: v1\nkind: node\nmetadata:\n  name: n\n  labels: {\"a b\": v}\n", 0,
	    "node n: metadata.labels: \"a b\" is not a valid label key (1 to 512 of a-z A-Z 0-9 "
	    "_ . / -)");
	/* Label values: up to 63, ending with a letter or digit; 63 only when starting with one. */
	static const char *const bad_values[] = {"a-", "a b", "x:y", "-", NULL};
	for (const char *const *v = bad_values; *v != NULL; v++) {
		snprintf(
		    yaml, sizeof yaml,
		    "apiVersion: v1\nkind: node\nmetadata:\n  name: n\n  labels: {k: \"%s\"}\n",
		    *v);
		snprintf(
		    want, sizeof want,
		    "node n: metadata.labels.k: \"%s\" is not a valid label value (up to 63 of a-z "
		    "A-Z 0-9 _ . -, starting and ending with a letter or digit)",
		    *v);
		fails_with(yaml, 0, want);
	}
	memset(name, 'v', 63);
	name[63] = '\0';
	snprintf(yaml, sizeof yaml,
	         "apiVersion: v1\nkind: node\nmetadata:\n  name: n\n  labels: {k: %s}\n", name);
	json_t *in = read_one(yaml), *out = NULL;
	char err[512];
	assert_int_equal(policy_resource_normalize(in, 0, &out, err, sizeof err), 0);
	json_decref(in);
	json_decref(out);
	name[0] = '-';
	snprintf(yaml, sizeof yaml,
	         "apiVersion: v1\nkind: node\nmetadata:\n  name: n\n  labels: {k: %s}\n", name);
	in = read_one(yaml);
	assert_int_equal(policy_resource_normalize(in, 0, &out, err, sizeof err), -EINVAL);
	json_decref(in);
	fails_with("{\"apiVersion\": \"v1\", \"kind\": \"node\", \"metadata\": {\"name\": \"n\", "
	           "\"labels\": {\"k\": 2}}}",
	           0, "node n: metadata.labels.k: 2 is not a string (quote it)");
	fails_with("apiVersion: v1\nkind: node\nmetadata:\n  name: n\n  labels: [a]\n", 0,
	           "node n: metadata.labels: [\"a\"] is not a mapping");
}

/* ---- YAML numbers and booleans where a string is wanted ---- */

/* Normalize the one resource of yaml with its texts: want is the normalized form, want_quoted
 * the resource with the texts taken quoted (NULL: none taken). The quoted resource normalizes
 * without texts to the same form. */
static void texts_normalize_to(const char *yaml, const char *want, const char *want_quoted)
{
	json_t *list = NULL, *texts = NULL, *out = NULL, *quoted = (json_t *)1, *again = NULL;
	char err[512], *got_s, *again_s;

	if (policy_doc_parse_texts(yaml, strlen(yaml), &list, &texts, err, sizeof err) != 0)
		fail_msg("test input does not parse: %s\n%s", err, yaml);
	assert_int_equal(json_array_size(list), 1);
	assert_int_equal(json_array_size(texts), 1);
	if (policy_resource_normalize_texts(json_array_get(list, 0), json_array_get(texts, 0), 0,
	                                    &out, &quoted, err, sizeof err) != 0)
		fail_msg("normalize failed: %s\n%s", err, yaml);
	got_s = json_dumps(out, JSON_COMPACT);
	if (strcmp(got_s, want) != 0)
		fail_msg("\n got %s\nwant %s", got_s, want);
	if (want_quoted == NULL) {
		assert_null(quoted);
	} else {
		char *q = json_dumps(quoted, JSON_COMPACT);
		if (q == NULL || strcmp(q, want_quoted) != 0)
			fail_msg("\n quoted %s\n   want %s", q, want_quoted);
		free(q);
		if (policy_resource_normalize(quoted, 0, &again, err, sizeof err) != 0)
			fail_msg("the quoted resource does not normalize: %s", err);
		again_s = json_dumps(again, JSON_COMPACT);
		assert_string_equal(again_s, got_s);
		free(again_s);
	}
	free(got_s);
	json_decref(again);
	json_decref(quoted);
	json_decref(out);
	json_decref(texts);
	json_decref(list);
}

static void texts_fail_with(const char *yaml, const char *want)
{
	json_t *list = NULL, *texts = NULL, *out = (json_t *)1, *quoted = (json_t *)1;
	char err[512];

	assert_int_equal(policy_doc_parse_texts(yaml, strlen(yaml), &list, &texts, err, sizeof err),
	                 0);
	assert_int_equal(policy_resource_normalize_texts(json_array_get(list, 0),
	                                                 json_array_get(texts, 0), 0, &out, &quoted,
	                                                 err, sizeof err),
	                 -EINVAL);
	assert_null(out);
	assert_null(quoted);
	assert_string_equal(err, want);
	json_decref(texts);
	json_decref(list);
}

/* calicoctl's YAML decoder gave a field that wants a string the text of a plain scalar that YAML
 * reads as a number or a boolean: so does Tabby, for a file's YAML. Fields that want numbers keep
 * them; JSON numbers stay refused. */
static void test_yaml_texts(void **state)
{
	(void)state;
	texts_normalize_to(
	    "apiVersion: v1\nkind: profile\nmetadata:\n  name: 1000\n"
	    "  labels: {version: 2, canary: true, ratio: 1.50, hex: 0x1F, yes: yes, plain: web}\n"
	    "  tags: [2015, web]\n"
	    "spec:\n  ingress:\n  - action: allow\n    protocol: 6\n"
	    "    source: {tag: 42, selector: version == '2'}\n    destination: {ports: [80]}\n",
	    "{\"apiVersion\":\"v1\",\"kind\":\"profile\",\"metadata\":{\"name\":\"1000\","
	    "\"labels\":{"
	    "\"version\":\"2\",\"canary\":\"true\",\"ratio\":\"1.50\",\"hex\":\"0x1F\",\"yes\":"
	    "\"yes\","
	    "\"plain\":\"web\"},\"tags\":[\"2015\",\"web\"]},\"spec\":{\"ingress\":[{\"action\":"
	    "\"allow\",\"protocol\":\"tcp\",\"source\":{\"tag\":\"42\",\"selector\":\"version == "
	    "'2'\"},\"destination\":{\"ports\":[80]}}],\"egress\":[]}}",
	    "{\"apiVersion\":\"v1\",\"kind\":\"profile\",\"metadata\":{\"name\":\"1000\","
	    "\"labels\":{"
	    "\"version\":\"2\",\"canary\":\"true\",\"ratio\":\"1.50\",\"hex\":\"0x1F\",\"yes\":"
	    "\"yes\","
	    "\"plain\":\"web\"},\"tags\":[\"2015\",\"web\"]},\"spec\":{\"ingress\":[{\"action\":"
	    "\"allow\",\"protocol\":6,\"source\":{\"tag\":\"42\",\"selector\":\"version == '2'\"},"
	    "\"destination\":{\"ports\":[80]}}]}}");
	/* Annotations, endpoint names and a calicoctl List; an alias shares its texts. */
	texts_normalize_to(
	    "kind: policyList\nitems:\n- apiVersion: v1\n  kind: policy\n"
	    "  metadata: {name: p, annotations: {build: &b 17, stable: off}}\n"
	    "  spec: {order: 10, selector: all(), egress: [{action: allow, destination: {notTag: "
	    "*b}}]}\n",
	    "{\"apiVersion\":\"v1\",\"kind\":\"policy\",\"metadata\":{\"name\":\"p\","
	    "\"annotations\":"
	    "{\"build\":\"17\",\"stable\":\"off\"}},\"spec\":{\"order\":10,\"selector\":\"all()\","
	    "\"types\":[\"egress\"],\"ingress\":[],\"egress\":[{\"action\":\"allow\","
	    "\"destination\":"
	    "{\"notTag\":\"17\"}}],\"doNotTrack\":false,\"preDNAT\":false}}",
	    "{\"apiVersion\":\"v1\",\"kind\":\"policy\",\"metadata\":{\"name\":\"p\","
	    "\"annotations\":"
	    "{\"build\":\"17\",\"stable\":\"off\"}},\"spec\":{\"order\":10,\"selector\":\"all()\","
	    "\"egress\":[{\"action\":\"allow\",\"destination\":{\"notTag\":\"17\"}}]}}");
	texts_normalize_to(
	    "apiVersion: v1\nkind: workloadEndpoint\nmetadata:\n  name: eth0\n"
	    "  workload: 12345\n  orchestrator: mesos\n  node: 7\n"
	    "  activeInstanceID: 1.0\nspec:\n  interfaceName: cali1\n",
	    "{\"apiVersion\":\"v1\",\"kind\":\"workloadEndpoint\",\"metadata\":{"
	    "\"name\":\"eth0\",\"workload\":\"12345\",\"orchestrator\":\"mesos\","
	    "\"node\":\"7\",\"activeInstanceID\":\"1.0\"},\"spec\":{\"ipNetworks\":[],"
	    "\"interfaceName\":\"cali1\"}}",
	    "{\"apiVersion\":\"v1\",\"kind\":\"workloadEndpoint\",\"metadata\":{"
	    "\"name\":\"eth0\",\"workload\":\"12345\",\"orchestrator\":\"mesos\","
	    "\"node\":\"7\",\"activeInstanceID\":\"1.0\"},\"spec\":{\"interfaceName\":"
	    "\"cali1\"}}");
	/* Nothing taken: no quoted copy. */
	texts_normalize_to(
	    "apiVersion: v1\nkind: profile\nmetadata: {name: p, labels: {a: \"2\"}}\n"
	    "spec: {ingress: [{action: allow, protocol: 17}]}\n",
	    "{\"apiVersion\":\"v1\",\"kind\":\"profile\",\"metadata\":{\"name\":\"p\","
	    "\"labels\":{\"a\":\"2\"}},\"spec\":{\"ingress\":[{\"action\":\"allow\","
	    "\"protocol\":\"udp\"}],\"egress\":[]}}",
	    NULL);
	/* The text is then checked as any string is; the resource is named by its text. */
	texts_fail_with("apiVersion: v1\nkind: node\nmetadata: {name: 7, labels: {k: +1}}\n",
	                "node 7: metadata.labels.k: \"+1\" is not a valid label value (up to 63 of "
	                "a-z A-Z 0-9 _ . -, starting and ending with a letter or digit)");
	texts_fail_with(
	    POLICY_HEAD "spec: {selector: 5}\n",
	    "policy p: spec.selector: \"5\" is not a valid selector: at column 2: "
	    "expected an operator (==, !=, in, not in, contains, starts with, ends with) "
	    "after the label '5', found the end of the selector");
	/* A field that wants a number or a boolean still does. */
	texts_fail_with(POLICY_HEAD "spec: {order: \"5\"}\n",
	                "policy p: spec.order: \"5\" is not a number");
	/* JSON says nothing of how a number was written: refused, as calicoctl's JSON decoding
	 * refused it. */
	texts_fail_with(
	    "{\"apiVersion\": \"v1\", \"kind\": \"node\", \"metadata\": {\"name\": \"n\", "
	    "\"labels\": {\"k\": 2}}}",
	    "node n: metadata.labels.k: 2 is not a string (quote it)");
}

/* ---- policy (3.3) ---- */

static void test_policy_fields(void **state)
{
	(void)state;
	normalizes_to(
	    "apiVersion: v1\nkind: policy\nmetadata:\n  name: db-from-web\n"
	    "  annotations: {owner: team-a, note: \"\"}\n"
	    "spec:\n  order: 100.5\n  selector: tier == 'db'\n  types: [egress, ingress]\n"
	    "  ingress: [{action: deny}]\n  egress: [{action: pass}, {action: log}]\n"
	    "  doNotTrack: true\n  preDNAT: false\n",
	    "{\"apiVersion\":\"v1\",\"kind\":\"policy\",\"metadata\":{\"name\":\"db-from-web\","
	    "\"annotations\":{\"owner\":\"team-a\",\"note\":\"\"}},\"spec\":{\"order\":100.5,"
	    "\"selector\":\"tier == 'db'\",\"types\":[\"egress\",\"ingress\"],\"ingress\":[{"
	    "\"action\":\"deny\"}],\"egress\":[{\"action\":\"pass\"},{\"action\":\"log\"}],"
	    "\"doNotTrack\":true,\"preDNAT\":false}}");
	fails_with(POLICY_HEAD "spec: {order: abc}\n", 0,
	           "policy p: spec.order: \"abc\" is not a number");
	fails_with(POLICY_HEAD "spec: {order: true}\n", 0,
	           "policy p: spec.order: true is not a number");
	fails_with(
	    "{\"apiVersion\": \"v1\", \"kind\": \"policy\", \"metadata\": {\"name\": \"p\"}, "
	    "\"spec\": {\"selector\": 5}}",
	    0, "policy p: spec.selector: 5 is not a string (quote it)");
	fails_with(
	    POLICY_HEAD "spec: {selector: \"a == 'b' &&\"}\n", 0,
	    "policy p: spec.selector: \"a == 'b' &&\" is not a valid selector: at column 12: "
	    "expected a label, has(), all(), global(), '!' or '(', found the end of the selector");
	fails_with(POLICY_HEAD "spec: {doNotTrack: yes please}\n", 0,
	           "policy p: spec.doNotTrack: \"yes please\" is not a boolean (true or false)");
	fails_with("{\"apiVersion\": \"v1\", \"kind\": \"policy\", \"metadata\": {\"name\": \"p\", "
	           "\"annotations\": {\"a\": true}}}",
	           0, "policy p: metadata.annotations.a: true is not a string (quote it)");
	fails_with("apiVersion: v1\nkind: policy\nmetadata: {name: p, annotations: [a]}\n", 0,
	           "policy p: metadata.annotations: [\"a\"] is not a mapping");
	fails_with(POLICY_HEAD "spec: {ingress: {action: allow}}\n", 0,
	           "policy p: spec.ingress: {\"action\":\"allow\"} is not a list");
}

static void test_policy_types(void **state)
{
	static const struct {
		const char *spec, *types;
	} cases[] = {
	    /* defaults (3.3) */
	    {"{}", "[\"ingress\"]"},
	    {"{ingress: [{action: allow}]}", "[\"ingress\"]"},
	    {"{egress: [{action: allow}]}", "[\"egress\"]"},
	    {"{ingress: [{action: allow}], egress: [{action: allow}]}", "[\"ingress\",\"egress\"]"},
	    {"{types: []}", "[\"ingress\"]"},
	    /* given: kept, whatever the rules */
	    {"{types: [egress]}", "[\"egress\"]"},
	    {"{types: [ingress, egress]}", "[\"ingress\",\"egress\"]"},
	    {"{types: [ingress], egress: [{action: allow}]}", "[\"ingress\"]"},
	};
	char yaml[512];

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		json_t *in, *out = NULL;
		char err[512], *got;
		snprintf(yaml, sizeof yaml, POLICY_HEAD "spec: %s\n", cases[i].spec);
		in = read_one(yaml);
		assert_int_equal(policy_resource_normalize(in, 0, &out, err, sizeof err), 0);
		got = json_dumps(json_object_get(json_object_get(out, "spec"), "types"),
		                 JSON_COMPACT);
		if (strcmp(got, cases[i].types) != 0)
			fail_msg("%s: types %s, want %s", cases[i].spec, got, cases[i].types);
		free(got);
		json_decref(in);
		json_decref(out);
	}
	fails_with(POLICY_HEAD "spec: {types: [ingress, Egress]}\n", 0,
	           "policy p: spec.types[1]: \"Egress\" is not a policy type (ingress or egress)");
	fails_with(POLICY_HEAD "spec: {types: [ingress, ingress]}\n", 0,
	           "policy p: spec.types[1]: \"ingress\" is repeated");
	fails_with(POLICY_HEAD "spec: {types: ingress}\n", 0,
	           "policy p: spec.types: \"ingress\" is not a list");
}

static void test_policy_dnat_untracked(void **state)
{
	(void)state;
	fails_with(POLICY_HEAD "spec: {doNotTrack: true, preDNAT: true}\n", 0,
	           "policy p: spec.preDNAT: a policy cannot be both preDNAT and doNotTrack");
	fails_with(POLICY_HEAD "spec: {preDNAT: true, egress: [{action: deny}]}\n", 0,
	           "policy p: spec.egress: a preDNAT policy cannot have egress rules");
	fails_with(POLICY_HEAD "spec: {preDNAT: true, types: [ingress, egress]}\n", 0,
	           "policy p: spec.types[1]: \"egress\" is not allowed in a preDNAT policy");
	normalizes_to(
	    POLICY_HEAD "spec: {preDNAT: true, ingress: [{action: allow}]}\n",
	    "{\"apiVersion\":\"v1\",\"kind\":\"policy\",\"metadata\":{\"name\":\"p\"},"
	    "\"spec\":{\"selector\":\"\",\"types\":[\"ingress\"],\"ingress\":[{\"action\":"
	    "\"allow\"}],\"egress\":[],\"doNotTrack\":false,\"preDNAT\":true}}");
}

/* ---- rules (3.8) ---- */

static void test_rule_action(void **state)
{
	(void)state;
	rule_fails("{protocol: tcp}", "policy p: spec.ingress[0].action: required");
	rule_fails(
	    "{action: Allow}",
	    "policy p: spec.ingress[0].action: \"Allow\" is not an action (allow, deny, log or "
	    "pass)");
	rule_fails("{action: next-tier}",
	           "policy p: spec.ingress[0].action: \"next-tier\" is not an "
	           "action (allow, deny, log or pass)");
	rule_fails("{action: allow, protocl: tcp}",
	           "policy p: spec.ingress[0].protocl: unknown field");
	rule_fails("[allow]", "policy p: spec.ingress[0]: [\"allow\"] is not a mapping");
	rule_is("{action: log}", "{\"action\":\"log\"}");
	/* Profiles: no pass (3.2). */
	fails_with(
	    "apiVersion: v1\nkind: profile\nmetadata: {name: pr}\nspec:\n  egress:\n"
	    "  - action: allow\n  - action: pass\n",
	    0,
	    "profile pr: spec.egress[1].action: \"pass\" is not allowed in a profile (allow, "
	    "deny or log)");
}

static void test_rule_protocol(void **state)
{
	(void)state;
	rule_is("{action: allow, ipVersion: 6, protocol: icmpv6, notProtocol: 132}",
	        "{\"action\":\"allow\",\"ipVersion\":6,\"protocol\":\"icmpv6\",\"notProtocol\":"
	        "\"sctp\"}");
	rule_is("{action: allow, protocol: 255, notProtocol: udplite}",
	        "{\"action\":\"allow\",\"protocol\":255,\"notProtocol\":\"udplite\"}");
	/* A number that has a name in Calico's list is stored as the name, so that one rule has
	 * one stored form; other numbers stay numbers. */
	rule_is("{action: allow, protocol: 6, notProtocol: 17}",
	        "{\"action\":\"allow\",\"protocol\":\"tcp\",\"notProtocol\":\"udp\"}");
	rule_is("{action: allow, protocol: 1, notProtocol: 58}",
	        "{\"action\":\"allow\",\"protocol\":\"icmp\",\"notProtocol\":\"icmpv6\"}");
	rule_is("{action: allow, protocol: 136, notProtocol: 47}",
	        "{\"action\":\"allow\",\"protocol\":\"udplite\",\"notProtocol\":47}");
	rule_fails("{action: allow, ipVersion: 5}",
	           "policy p: spec.ingress[0].ipVersion: 5 is not an IP version (4 or 6)");
	rule_fails("{action: allow, ipVersion: \"4\"}",
	           "policy p: spec.ingress[0].ipVersion: \"4\" is not an IP version (4 or 6)");
	static const char *const bad[] = {"TCP", "0", "256", "\"6\"", "gre", "6.0", "-1", NULL};
	for (const char *const *b = bad; *b != NULL; b++) {
		char rule[128], want[256], shown[32];
		snprintf(rule, sizeof rule, "{action: allow, notProtocol: %s}", *b);
		if (strcmp(*b, "TCP") == 0 || strcmp(*b, "gre") == 0)
			snprintf(shown, sizeof shown, "\"%s\"", *b);
		else
			snprintf(shown, sizeof shown, "%s", *b);
		snprintf(
		    want, sizeof want,
		    "policy p: spec.ingress[0].notProtocol: %s is not a protocol (tcp, udp, icmp, "
		    "icmpv6, sctp, udplite or 1 to 255)",
		    shown);
		rule_fails(rule, want);
	}
}

static void test_rule_icmp(void **state)
{
	(void)state;
	rule_is("{action: allow, protocol: icmp, icmp: {type: 8, code: 0}, notICMP: {type: 0}}",
	        "{\"action\":\"allow\",\"protocol\":\"icmp\",\"icmp\":{\"type\":8,\"code\":0},"
	        "\"notICMP\":{\"type\":0}}");
	rule_is(
	    "{action: allow, protocol: 58, icmp: {type: 254, code: 255}}",
	    "{\"action\":\"allow\",\"protocol\":\"icmpv6\",\"icmp\":{\"type\":254,\"code\":255}}");
	rule_fails("{action: allow, protocol: icmp, icmp: {type: 255}}",
	           "policy p: spec.ingress[0].icmp.type: 255 is not an ICMP type (0 to 254)");
	rule_fails("{action: allow, protocol: icmp, icmp: {type: -1}}",
	           "policy p: spec.ingress[0].icmp.type: -1 is not an ICMP type (0 to 254)");
	rule_fails("{action: allow, protocol: icmp, icmp: {type: 3, code: 256}}",
	           "policy p: spec.ingress[0].icmp.code: 256 is not an ICMP code (0 to 255)");
	rule_fails("{action: allow, protocol: icmp, notICMP: {code: 3}}",
	           "policy p: spec.ingress[0].notICMP.code: 3 needs a type");
	rule_fails("{action: allow, protocol: icmp, icmp: {}}",
	           "policy p: spec.ingress[0].icmp: {} needs a type");
	rule_fails("{action: allow, protocol: icmp, icmp: {type: 3, cod: 1}}",
	           "policy p: spec.ingress[0].icmp.cod: unknown field");
	rule_fails("{action: allow, icmp: {type: 8}}",
	           "policy p: spec.ingress[0].icmp: ICMP fields need protocol icmp or icmpv6");
	rule_fails("{action: allow, protocol: tcp, notICMP: {type: 8}}",
	           "policy p: spec.ingress[0].notICMP: ICMP fields need protocol icmp or icmpv6");
}

static void test_rule_ports(void **state)
{
	(void)state;
	/* "80" and "80:80" are the port 80; a real range stays a string. */
	rule_is("{action: allow, protocol: tcp, source: {ports: [1, 65535, \"80\", \"80:80\", "
	        "\"6040:6050\", \"0010:020\"], notPorts: [22]}}",
	        "{\"action\":\"allow\",\"protocol\":\"tcp\",\"source\":{\"ports\":[1,65535,80,80,"
	        "\"6040:6050\",\"10:20\"],\"notPorts\":[22]}}");
	rule_is("{action: allow, protocol: 17, destination: {notPorts: [53]}}",
	        "{\"action\":\"allow\",\"protocol\":\"udp\",\"destination\":{\"notPorts\":[53]}}");
	rule_fails("{action: allow, protocol: tcp, destination: {ports: [0]}}",
	           "policy p: spec.ingress[0].destination.ports[0]: 0 is not a port");
	rule_fails("{action: allow, protocol: tcp, destination: {ports: [80.5]}}",
	           "policy p: spec.ingress[0].destination.ports[0]: 80.5 is not a port");
	rule_fails(
	    "{action: allow, protocol: tcp, destination: {ports: [\"90:80\"]}}",
	    "policy p: spec.ingress[0].destination.ports[0]: \"90:80\" is not a port range: the "
	    "first port is above the last");
	static const char *const bad[] = {"http", "1:70000", "0:5", "1:",    ":2",
	                                  "1-2",  " 80",     "+80", "1:2:3", NULL};
	for (const char *const *b = bad; *b != NULL; b++) {
		char rule[128], want[256];
		snprintf(rule, sizeof rule,
		         "{action: allow, protocol: udp, source: {notPorts: [\"%s\"]}}", *b);
		snprintf(want, sizeof want,
		         "policy p: spec.ingress[0].source.notPorts[0]: \"%s\" is not a port or "
		         "port range",
		         *b);
		rule_fails(rule, want);
	}
	/* Only with tcp or udp: not sctp in v1, not without a protocol. */
	rule_fails("{action: allow, protocol: sctp, destination: {ports: [80]}}",
	           "policy p: spec.ingress[0].destination.ports: ports need protocol tcp or udp");
	rule_fails(
	    "{action: allow, destination: {notPorts: [80]}}",
	    "policy p: spec.ingress[0].destination.notPorts: ports need protocol tcp or udp");
	rule_fails("{action: allow, notProtocol: tcp, source: {ports: [80]}}",
	           "policy p: spec.ingress[0].source.ports: ports need protocol tcp or udp");
	/* An empty list is no list. */
	rule_is("{action: allow, destination: {ports: []}}", "{\"action\":\"allow\"}");
}

static void test_rule_nets(void **state)
{
	(void)state;
	/* Canonical text; a bare address is a /32 or /128. */
	rule_is(
	    "{action: allow, source: {net: 10.0.0.0/8, notNet: 10.1.2.3}, destination: {notNet: "
	    "0.0.0.0/0}}",
	    "{\"action\":\"allow\",\"source\":{\"net\":\"10.0.0.0/8\",\"notNet\":\"10.1.2.3/32\"},"
	    "\"destination\":{\"notNet\":\"0.0.0.0/0\"}}");
	rule_is(
	    "{action: allow, ipVersion: 6, source: {nets: [\"FD00:0::/8\", \"::1\"], notNets: "
	    "[\"fe80::/10\"]}}",
	    "{\"action\":\"allow\",\"ipVersion\":6,\"source\":{\"nets\":[\"fd00::/8\",\"::1/128\"],"
	    "\"notNets\":[\"fe80::/10\"]}}");
	rule_fails(
	    "{action: allow, source: {nets: [10.0.0.1/8]}}",
	    "policy p: spec.ingress[0].source.nets[0]: 10.0.0.1/8 is not a canonical CIDR: host "
	    "bits are set (the network is 10.0.0.0/8)");
	rule_fails(
	    "{action: allow, source: {net: 10.0.0.0/33}}",
	    "policy p: spec.ingress[0].source.net: \"10.0.0.0/33\" is not a CIDR: the prefix "
	    "length must be 0 to 32");
	rule_fails("{action: allow, source: {net: somewhere}}",
	           "policy p: spec.ingress[0].source.net: \"somewhere\" is not a CIDR: expected "
	           "ADDRESS/PREFIX");
	/* One family per rule, agreeing with ipVersion. */
	rule_fails(
	    "{action: allow, ipVersion: 4, destination: {nets: [10.0.0.0/8, \"fd00::/8\"]}}",
	    "policy p: spec.ingress[0].destination.nets[1]: \"fd00::/8\" is IPv6 but the rule's "
	    "ipVersion is 4");
	rule_fails(
	    "{action: allow, source: {net: 10.0.0.0/8}, destination: {notNet: \"fd00::/8\"}}",
	    "policy p: spec.ingress[0].destination.notNet: \"fd00::/8\" is IPv6 but the rule's "
	    "other CIDRs are IPv4");
	/* net* and nets* forms are not mixed in one rule, even across source and destination. */
	rule_fails(
	    "{action: allow, source: {net: 10.0.0.0/8}, destination: {notNets: [10.1.0.0/16]}}",
	    "policy p: spec.ingress[0]: net/notNet and nets/notNets cannot be mixed in one rule");
	rule_fails("{action: allow, source: {nets: 10.0.0.0/8}}",
	           "policy p: spec.ingress[0].source.nets: \"10.0.0.0/8\" is not a list");
}

static void test_rule_selectors_tags(void **state)
{
	(void)state;
	rule_is("{action: allow, source: {tag: web, notTag: db, selector: \"role == 'x'\", "
	        "notSelector: \"has(y)\"}, destination: {selector: \"\", tag: \"\"}}",
	        "{\"action\":\"allow\",\"source\":{\"tag\":\"web\",\"notTag\":\"db\",\"selector\":"
	        "\"role == 'x'\",\"notSelector\":\"has(y)\"}}");
	rule_fails(
	    "{action: allow, destination: {notSelector: \"role = 'x'\"}}",
	    "policy p: spec.ingress[0].destination.notSelector: \"role = 'x'\" is not a valid "
	    "selector: at column 6: a single '=' is not an operator (did you mean '=='?)");
	rule_fails(
	    "{action: allow, source: {tag: \"a/b\"}}",
	    "policy p: spec.ingress[0].source.tag: \"a/b\" is not a valid tag (1 to 128 of a-z "
	    "A-Z 0-9 _ . -)");
	rule_fails("{action: allow, source: {tags: [a]}}",
	           "policy p: spec.ingress[0].source.tags: unknown field");
	rule_fails("{action: allow, source: [a]}",
	           "policy p: spec.ingress[0].source: [\"a\"] is not a mapping");
	/* Empty entity rules are left out. */
	rule_is("{action: deny, source: {}, destination: {nets: []}}", "{\"action\":\"deny\"}");
}

/* ---- profile (3.2) ---- */

static void test_profile(void **state)
{
	(void)state;
	normalizes_to(
	    "apiVersion: v1\nkind: profile\nmetadata:\n  name: calico/net\n"
	    "  labels: {profile: calico}\n  tags: [calico, other]\nspec:\n"
	    "  ingress: [{action: allow, source: {tag: calico}}]\n  egress: [{action: allow}]\n",
	    "{\"apiVersion\":\"v1\",\"kind\":\"profile\",\"metadata\":{\"name\":\"calico/net\","
	    "\"labels\":{\"profile\":\"calico\"},\"tags\":[\"calico\",\"other\"]},\"spec\":{"
	    "\"ingress\":[{\"action\":\"allow\",\"source\":{\"tag\":\"calico\"}}],\"egress\":"
	    "[{\"action\":\"allow\"}]}}");
	fails_with(
	    "apiVersion: v1\nkind: profile\nmetadata: {name: pr, tags: [ok, \"not ok\"]}\n", 0,
	    "profile pr: metadata.tags[1]: \"not ok\" is not a valid tag (1 to 128 of a-z A-Z "
	    "0-9 _ . -)");
	fails_with("apiVersion: v1\nkind: profile\nmetadata: {name: pr, tags: calico}\n", 0,
	           "profile pr: metadata.tags: \"calico\" is not a list");
	fails_with("apiVersion: v1\nkind: profile\nmetadata: {name: pr}\nspec: {order: 1}\n", 0,
	           "profile pr: spec.order: unknown field");
	fails_with("apiVersion: v1\nkind: profile\nmetadata: {name: pr, annotations: {}}\n", 0,
	           "profile pr: metadata.annotations: unknown field");
}

/* ---- ipPool (2.1) ---- */

static void test_ippool(void **state)
{
	(void)state;
	normalizes_to(
	    "apiVersion: v1\nkind: ipPool\nmetadata:\n  cidr: 10.200.0.0/16\nspec:\n"
	    "  ipip:\n    enabled: true\n    mode: cross-subnet\n  nat-outgoing: true\n"
	    "  disabled: false\n",
	    "{\"apiVersion\":\"v1\",\"kind\":\"ipPool\",\"metadata\":{\"cidr\":\"10.200.0.0/"
	    "16\"},\"spec\":{\"ipip\":{\"enabled\":true,\"mode\":\"cross-subnet\"},"
	    "\"nat-outgoing\":true,\"disabled\":false}}");
	/* Defaults; Tabby's additions. */
	normalizes_to(
	    "apiVersion: v1\nkind: pool\nmetadata: {cidr: \"FD00:1::/48\"}\nspec:\n"
	    "  vxlan: {enabled: true}\n  blockSize: 122\n  nodeSelector: zone == 'a'\n"
	    "  ipip: {}\n",
	    "{\"apiVersion\":\"v1\",\"kind\":\"ipPool\",\"metadata\":{\"cidr\":\"fd00:1::/48\"},"
	    "\"spec\":{\"ipip\":{\"enabled\":false,\"mode\":\"always\"},\"nat-outgoing\":false,"
	    "\"disabled\":false,\"blockSize\":122,\"vxlan\":{\"enabled\":true,\"mode\":"
	    "\"always\"},\"nodeSelector\":\"zone == 'a'\"}}");
	normalizes_to(
	    "apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 192.168.0.0/16}\n",
	    "{\"apiVersion\":\"v1\",\"kind\":\"ipPool\",\"metadata\":{\"cidr\":\"192.168.0.0/"
	    "16\"},\"spec\":{\"nat-outgoing\":false,\"disabled\":false}}");
	fails_with(
	    "apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.200.0.1/16}\n", 0,
	    "ipPool 10.200.0.1/16: metadata.cidr: 10.200.0.1/16 is not a canonical CIDR: host "
	    "bits are set (the network is 10.200.0.0/16)");
	fails_with("apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.200.0.1}\n", 0,
	           "ipPool 10.200.0.1: metadata.cidr: \"10.200.0.1\" is not a CIDR: expected "
	           "ADDRESS/PREFIX");
	fails_with("apiVersion: v1\nkind: ipPool\nmetadata: {name: x}\n", 3,
	           "ipPool #4: metadata.name: unknown field");
	fails_with("apiVersion: v1\nkind: ipPool\nmetadata: {}\n", 0,
	           "ipPool #1: metadata.cidr: required");
	fails_with(
	    "apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.0.0.0/8}\nspec: {ipip: {mode: "
	    "never}}\n",
	    0,
	    "ipPool 10.0.0.0/8: spec.ipip.mode: \"never\" is not an encapsulation mode (always or "
	    "cross-subnet)");
	fails_with(
	    "apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.0.0.0/8}\nspec: {ipip: true}\n", 0,
	    "ipPool 10.0.0.0/8: spec.ipip: true is not a mapping");
	fails_with(
	    "apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.0.0.0/8}\nspec: {natOutgoing: "
	    "true}\n",
	    0, "ipPool 10.0.0.0/8: spec.natOutgoing: unknown field");
	fails_with(
	    "apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.0.0.0/8}\nspec: {blockSize: 19}\n",
	    0, "ipPool 10.0.0.0/8: spec.blockSize: 19 is not a block size (IPv4: 20 to 32)");
	fails_with(
	    "apiVersion: v1\nkind: ipPool\nmetadata: {cidr: \"fd00::/48\"}\nspec: {blockSize: "
	    "64}\n",
	    0, "ipPool fd00::/48: spec.blockSize: 64 is not a block size (IPv6: 116 to 128)");
	fails_with(
	    "apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.0.0.0/8}\nspec: {nodeSelector: "
	    "\"zone ==\"}\n",
	    0,
	    "ipPool 10.0.0.0/8: spec.nodeSelector: \"zone ==\" is not a valid selector: at column "
	    "8: expected a quoted string after '==', found the end of the selector");
	/* IPAM's checks (ipam_pool_validate). */
	fails_with("apiVersion: v1\nkind: ipPool\nmetadata: {cidr: \"fd00::/48\"}\nspec: {ipip: "
	           "{enabled: true}}\n",
	           0, "ipPool fd00::/48: pool fd00::/48: IP in IP is not supported for IPv6 pools");
	fails_with("apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 169.254.0.0/16}\n", 0,
	           "ipPool 169.254.0.0/16: pool 169.254.0.0/16 overlaps the link-local range "
	           "169.254.0.0/16");
	fails_with(
	    "apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.0.0.0/28}\nspec: {blockSize: 26}\n",
	    0,
	    "ipPool 10.0.0.0/28: pool 10.0.0.0/28 is too small: it must hold at least one /26 "
	    "block (a prefix length of 26 or lower)");
	fails_with("apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.0.0.0/8}\nspec:\n  ipip: "
	           "{enabled: true}\n  vxlan: {enabled: true, mode: cross-subnet}\n",
	           0,
	           "ipPool 10.0.0.0/8: pool 10.0.0.0/8: IP in IP and VXLAN cannot both be enabled");
}

/* ---- hostEndpoint (3.5) ---- */

static void test_hostendpoint(void **state)
{
	(void)state;
	normalizes_to(
	    "apiVersion: v1\nkind: hostEndpoint\nmetadata: {name: agent-eth1, node: agent-7, "
	    "labels: {zone: rack-a}}\nspec:\n  interfaceName: eth1\n  expectedIPs: "
	    "[10.0.7.11, \"FD00::0011\"]\n  profiles: [host-default, a/b]\n",
	    "{\"apiVersion\":\"v1\",\"kind\":\"hostEndpoint\",\"metadata\":{\"name\":\"agent-"
	    "eth1\",\"node\":\"agent-7\",\"labels\":{\"zone\":\"rack-a\"}},\"spec\":{"
	    "\"interfaceName\":\"eth1\",\"expectedIPs\":[\"10.0.7.11\",\"fd00::11\"],"
	    "\"profiles\":[\"host-default\",\"a/b\"]}}");
	normalizes_to(
	    "apiVersion: v1\nkind: hep\nmetadata: {name: h, node: n}\nspec: {expectedIPs: "
	    "[10.0.0.1]}\n",
	    "{\"apiVersion\":\"v1\",\"kind\":\"hostEndpoint\",\"metadata\":{\"name\":\"h\","
	    "\"node\":\"n\"},\"spec\":{\"expectedIPs\":[\"10.0.0.1\"]}}");
	fails_with("apiVersion: v1\nkind: hostEndpoint\nmetadata: {name: h, node: n}\nspec: "
	           "{expectedIPs: []}\n",
	           0, "hostEndpoint h: spec: needs interfaceName or expectedIPs");
	fails_with("apiVersion: v1\nkind: hostEndpoint\nmetadata: {name: h, node: n}\n", 0,
	           "hostEndpoint h: spec: needs interfaceName or expectedIPs");
	fails_with("apiVersion: v1\nkind: hostEndpoint\nmetadata: {name: h}\nspec: {interfaceName: "
	           "eth0}\n",
	           0, "hostEndpoint h: metadata.node: required");
	fails_with("apiVersion: v1\nkind: hostEndpoint\nmetadata: {name: h, node: n}\nspec: "
	           "{expectedIPs: [10.0.0.0/24]}\n",
	           0, "hostEndpoint h: spec.expectedIPs[0]: \"10.0.0.0/24\" is not an IP address");
	fails_with(
	    "apiVersion: v1\nkind: hostEndpoint\nmetadata: {name: h, node: n}\nspec: "
	    "{interfaceName: eth0, profiles: [\"a b\"]}\n",
	    0,
	    "hostEndpoint h: spec.profiles[0]: \"a b\" is not a valid name (1 to 128 of a-z A-Z "
	    "0-9 _ . - /)");
}

/* ---- workloadEndpoint (1.9, 3.4) ---- */

static void test_workloadendpoint(void **state)
{
	(void)state;
	normalizes_to(
	    "apiVersion: v1\nkind: workloadEndpoint\nmetadata:\n  name: eth0\n"
	    "  workload: abc123\n  orchestrator: cni\n  node: agent-7\n"
	    "  activeInstanceID: i-1\n  labels: {app: web}\nspec:\n  interfaceName: "
	    "cali0123456789a\n  mac: 0A-1B-2C-3D-4E-5F\n  ipNetworks: [192.168.0.10/32, "
	    "\"fd00::a\"]\n  ipNATs: [{internalIP: 192.168.0.10, externalIP: 172.16.0.10}]\n"
	    "  ipv4Gateway: 169.254.1.1\n  ipv6Gateway: \"fe80::1\"\n  profiles: [calico]\n",
	    "{\"apiVersion\":\"v1\",\"kind\":\"workloadEndpoint\",\"metadata\":{\"name\":"
	    "\"eth0\",\"workload\":\"abc123\",\"orchestrator\":\"cni\",\"node\":\"agent-7\","
	    "\"activeInstanceID\":\"i-1\",\"labels\":{\"app\":\"web\"}},\"spec\":{"
	    "\"ipNetworks\":[\"192.168.0.10/32\",\"fd00::a/128\"],\"ipNATs\":[{\"internalIP\":"
	    "\"192.168.0.10\",\"externalIP\":\"172.16.0.10\"}],\"ipv4Gateway\":\"169.254.1.1\","
	    "\"ipv6Gateway\":\"fe80::1\",\"profiles\":[\"calico\"],\"interfaceName\":"
	    "\"cali0123456789a\",\"mac\":\"0a:1b:2c:3d:4e:5f\"}}");
	/* ipNetworks is always there; a workload may hold '/'. */
	normalizes_to("apiVersion: v1\nkind: wep\nmetadata: {name: eth0, workload: ns/pod, "
	              "orchestrator: k8s, node: n}\nspec: {interfaceName: cali1}\n",
	              "{\"apiVersion\":\"v1\",\"kind\":\"workloadEndpoint\",\"metadata\":{\"name\":"
	              "\"eth0\",\"workload\":\"ns/pod\",\"orchestrator\":\"k8s\",\"node\":\"n\"},"
	              "\"spec\":{\"ipNetworks\":[],\"interfaceName\":\"cali1\"}}");
#define WEP_HEAD                                                                                   \
	"apiVersion: v1\nkind: workloadEndpoint\nmetadata: {name: eth0, workload: w, "             \
	"orchestrator: "                                                                           \
	"cni, node: n}\n"
	fails_with(WEP_HEAD "spec: {ipNetworks: [10.0.0.1/32]}\n", 0,
	           "workloadEndpoint eth0: spec.interfaceName: required");
	fails_with(
	    WEP_HEAD "spec: {interfaceName: c, ipNetworks: [10.0.0.0/24]}\n", 0,
	    "workloadEndpoint eth0: spec.ipNetworks[0]: \"10.0.0.0/24\" is not a single address "
	    "(/32)");
	fails_with(
	    WEP_HEAD "spec: {interfaceName: c, ipNetworks: [\"fd00::/64\"]}\n", 0,
	    "workloadEndpoint eth0: spec.ipNetworks[0]: \"fd00::/64\" is not a single address "
	    "(/128)");
	fails_with(
	    WEP_HEAD "spec: {interfaceName: c, ipNetworks: [10.0.0.1/32], ipNATs: "
	             "[{internalIP: 10.0.0.2, externalIP: 1.2.3.4}]}\n",
	    0,
	    "workloadEndpoint eth0: spec.ipNATs[0].internalIP: \"10.0.0.2\" is not one of the "
	    "endpoint's ipNetworks");
	fails_with(WEP_HEAD "spec: {interfaceName: c, ipNetworks: [10.0.0.1/32], ipNATs: "
	                    "[{internalIP: 10.0.0.1, externalIP: \"fd00::1\"}]}\n",
	           0,
	           "workloadEndpoint eth0: spec.ipNATs[0].externalIP: \"fd00::1\" is not of the "
	           "internalIP's family (IPv4)");
	fails_with(WEP_HEAD "spec: {interfaceName: c, ipNetworks: [10.0.0.1/32], ipNATs: "
	                    "[{internalIP: 10.0.0.1}]}\n",
	           0, "workloadEndpoint eth0: spec.ipNATs[0].externalIP: required");
	fails_with(WEP_HEAD "spec: {interfaceName: c, ipv4Gateway: \"fe80::1\"}\n", 0,
	           "workloadEndpoint eth0: spec.ipv4Gateway: \"fe80::1\" is not an IPv4 address");
	fails_with(WEP_HEAD "spec: {interfaceName: c, ipv6Gateway: 10.0.0.1}\n", 0,
	           "workloadEndpoint eth0: spec.ipv6Gateway: \"10.0.0.1\" is not an IPv6 address");
	static const char *const bad_macs[] = {"0a:1b:2c:3d:4e",     "0a:1b:2c:3d:4e:5g",
	                                       "0a:1b-2c:3d:4e:5f",  "0a1b.2c3d.4e5f",
	                                       "0a:1b:2c:3d:4e:5f:", NULL};
	for (const char *const *m = bad_macs; *m != NULL; m++) {
		char yaml[512], want[256];
		snprintf(yaml, sizeof yaml, WEP_HEAD "spec: {interfaceName: c, mac: \"%s\"}\n", *m);
		snprintf(want, sizeof want,
		         "workloadEndpoint eth0: spec.mac: \"%s\" is not a MAC address", *m);
		fails_with(yaml, 0, want);
	}
	fails_with(
	    "apiVersion: v1\nkind: workloadEndpoint\nmetadata: {name: eth0, workload: w, node: "
	    "n}\nspec: {interfaceName: c}\n",
	    0, "workloadEndpoint eth0: metadata.orchestrator: required");
	fails_with(
	    "apiVersion: v1\nkind: workloadEndpoint\nmetadata: {name: eth0, workload: w, "
	    "orchestrator: a/b, node: n}\nspec: {interfaceName: c}\n",
	    0,
	    "workloadEndpoint eth0: metadata.orchestrator: \"a/b\" is not a valid name (1 to 128 "
	    "of a-z A-Z 0-9 _ . -)");
}

/* ---- node (3.6) ---- */

static void test_node(void **state)
{
	(void)state;
	normalizes_to(
	    "apiVersion: v1\nkind: node\nmetadata: {name: agent-7, labels: {rack: a}}\nspec:\n"
	    "  bgp:\n    asNumber: 65001\n    ipv4Address: 10.0.7.11/24\n"
	    "    ipv6Address: \"FD00:7::11/64\"\n"
	    "  orchRefs: [{nodeName: agent-7.example, orchestrator: k8s}]\n",
	    "{\"apiVersion\":\"v1\",\"kind\":\"node\",\"metadata\":{\"name\":\"agent-7\","
	    "\"labels\":{\"rack\":\"a\"}},\"spec\":{\"bgp\":{\"asNumber\":65001,"
	    "\"ipv4Address\":\"10.0.7.11/24\",\"ipv6Address\":\"fd00:7::11/64\"},\"orchRefs\":"
	    "[{\"nodeName\":\"agent-7.example\",\"orchestrator\":\"k8s\"}]}}");
	normalizes_to(
	    "apiVersion: v1\nkind: node\nmetadata: {name: n}\nspec: {bgp: {asNumber: \"1.10\", "
	    "ipv6Address: \"fd00::1/128\"}}\n",
	    "{\"apiVersion\":\"v1\",\"kind\":\"node\",\"metadata\":{\"name\":\"n\"},\"spec\":{"
	    "\"bgp\":{\"asNumber\":\"1.10\",\"ipv6Address\":\"fd00::1/128\"}}}");
#define NODE_HEAD "apiVersion: v1\nkind: node\nmetadata: {name: n}\n"
	fails_with(NODE_HEAD "spec: {bgp: {asNumber: 65001}}\n", 0,
	           "node n: spec.bgp: needs ipv4Address or ipv6Address");
	fails_with(
	    NODE_HEAD "spec: {bgp: {ipv4Address: 10.0.7.11}}\n", 0,
	    "node n: spec.bgp.ipv4Address: \"10.0.7.11\" is not an IPv4 address with a prefix "
	    "length (ADDRESS/PREFIX)");
	fails_with(
	    NODE_HEAD "spec: {bgp: {ipv4Address: \"fd00::1/64\"}}\n", 0,
	    "node n: spec.bgp.ipv4Address: \"fd00::1/64\" is not an IPv4 address with a prefix "
	    "length");
	fails_with(NODE_HEAD "spec: {bgp: {ipv4Address: 10.0.7.11/33}}\n", 0,
	           "node n: spec.bgp.ipv4Address: \"10.0.7.11/33\" is not an IPv4 address with a "
	           "prefix length");
	static const char *const bad_as[] = {"4294967296", "-1",   "\"1.65536\"", "\"1.\"",
	                                     "\".1\"",     "1.10", "\"a\"",       NULL};
	for (const char *const *a = bad_as; *a != NULL; a++) {
		char yaml[256], want[256];
		snprintf(yaml, sizeof yaml,
		         NODE_HEAD "spec: {bgp: {asNumber: %s, ipv4Address: 1.2.3.4/8}}\n", *a);
		snprintf(
		    want, sizeof want,
		    "node n: spec.bgp.asNumber: %s is not an AS number (0 to 4294967295, or dotted "
		    "\"1.10\" quoted)",
		    strcmp(*a, "1.10") == 0 ? "1.1" : *a);
		fails_with(yaml, 0, want);
	}
	normalizes_to(
	    NODE_HEAD "spec: {bgp: {asNumber: 4294967295, ipv4Address: 1.2.3.4/8}}\n",
	    "{\"apiVersion\":\"v1\",\"kind\":\"node\",\"metadata\":{\"name\":\"n\"},\"spec\":{"
	    "\"bgp\":{\"asNumber\":4294967295,\"ipv4Address\":\"1.2.3.4/8\"}}}");
	fails_with(NODE_HEAD "spec: {orchRefs: [{orchestrator: k8s}]}\n", 0,
	           "node n: spec.orchRefs[0].nodeName: required");
	fails_with(NODE_HEAD "spec: {orchRefs: [{nodeName: a, orchestrator: k8s, x: 1}]}\n", 0,
	           "node n: spec.orchRefs[0].x: unknown field");
	fails_with(NODE_HEAD "spec: {bgp: {asNumber: 1, ipv4Address: 1.2.3.4/8, peers: []}}\n", 0,
	           "node n: spec.bgp.peers: unknown field");
}

/* ---- keys ---- */

static void key_is(const char *yaml, enum policy_kind k, const char *want)
{
	json_t *in = read_one(yaml), *out = NULL;
	char err[512], key[POLICY_KEY_MAX];

	if (policy_resource_normalize(in, 0, &out, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_int_equal(policy_resource_key(out, key, sizeof key), k);
	assert_string_equal(key, want);
	/* Too small a buffer: no key at all. */
	assert_int_equal(policy_resource_key(out, key, strlen(want)), POLICY_KIND_NONE);
	assert_string_equal(key, "");
	json_decref(in);
	json_decref(out);
}

static void test_keys(void **state)
{
	json_t *v;
	char key[POLICY_KEY_MAX];

	(void)state;
	key_is(POLICY_HEAD, POLICY_KIND_POLICY, "p");
	key_is("apiVersion: v1\nkind: profile\nmetadata: {name: calico/net}\n", POLICY_KIND_PROFILE,
	       "calico/net");
	key_is(NODE_HEAD, POLICY_KIND_NODE, "n");
	key_is("apiVersion: v1\nkind: ipPool\nmetadata: {cidr: \"FD00::/48\"}\n",
	       POLICY_KIND_IPPOOL, "fd00::/48");
	key_is("apiVersion: v1\nkind: hostEndpoint\nmetadata: {name: eth1, node: agent-7}\nspec: "
	       "{interfaceName: eth1}\n",
	       POLICY_KIND_HOSTENDPOINT, "agent-7/eth1");
	key_is("apiVersion: v1\nkind: workloadEndpoint\nmetadata: {name: eth0, workload: ns/pod/x, "
	       "orchestrator: k8s, node: agent-7}\nspec: {interfaceName: c}\n",
	       POLICY_KIND_WORKLOADENDPOINT, "agent-7/k8s/ns/pod/x/eth0");
	/* Not normalized resources. */
	v = json_pack("{s:s, s:s, s:{s:s}}", "apiVersion", "v1", "kind", "bgpPeer", "metadata",
	              "name", "x");
	assert_int_equal(policy_resource_key(v, key, sizeof key), POLICY_KIND_NONE);
	assert_string_equal(key, "");
	json_decref(v);
	v = json_pack("{s:s, s:{s:s}}", "kind", "pol", "metadata", "name", "x");
	assert_int_equal(policy_resource_key(v, key, sizeof key), POLICY_KIND_NONE);
	json_decref(v);
	v = json_pack("{s:s, s:{s:s}}", "kind", "hostEndpoint", "metadata", "name", "x");
	assert_int_equal(policy_resource_key(v, key, sizeof key), POLICY_KIND_NONE);
	assert_string_equal(key, "");
	json_decref(v);
	v = json_pack("{s:s, s:{s:i}}", "kind", "policy", "metadata", "name", 1);
	assert_int_equal(policy_resource_key(v, key, sizeof key), POLICY_KIND_NONE);
	json_decref(v);
	assert_int_equal(policy_resource_key(NULL, key, sizeof key), POLICY_KIND_NONE);
}

/* ---- ipPools and IPAM ---- */

static void test_ippool_ipam(void **state)
{
	json_t *in, *n = NULL, *back;
	struct ipam_pool p;
	char err[512], *a, *b;

	(void)state;
	in = read_one(
	    "apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.200.0.0/16}\nspec:\n  ipip: "
	    "{enabled: true, mode: cross-subnet}\n  nat-outgoing: true\n  blockSize: 24\n"
	    "  nodeSelector: zone == 'a'\n");
	assert_int_equal(policy_resource_normalize(in, 0, &n, err, sizeof err), 0);
	assert_int_equal(policy_ippool_to_ipam(n, &p, err, sizeof err), 0);
	assert_int_equal(p.cidr.addr.family, 4);
	assert_int_equal(p.cidr.prefix, 16);
	assert_int_equal(p.cidr.addr.b[0], 10);
	assert_int_equal(p.cidr.addr.b[1], 200);
	assert_int_equal(p.block_size, 24);
	assert_int_equal(p.ipip, IPAM_ENCAP_CROSS_SUBNET);
	assert_int_equal(p.vxlan, IPAM_ENCAP_NEVER);
	assert_true(p.nat_outgoing);
	assert_false(p.disabled);
	assert_string_equal(p.node_selector, "zone == 'a'");
	/* And back: the same normalized form. */
	back = policy_ippool_from_ipam(&p);
	a = json_dumps(back, JSON_COMPACT);
	b = json_dumps(n, JSON_COMPACT);
	assert_string_equal(a, b);
	free(a);
	free(b);
	json_decref(back);
	json_decref(in);
	json_decref(n);

	/* A disabled ipip converts to never; blockSize absent is 0; vxlan always. */
	in = read_one(
	    "apiVersion: v1\nkind: ipPool\nmetadata: {cidr: \"fd00::/48\"}\nspec:\n  vxlan: "
	    "{enabled: true}\n  disabled: true\n");
	assert_int_equal(policy_resource_normalize(in, 0, &n, err, sizeof err), 0);
	assert_int_equal(policy_ippool_to_ipam(n, &p, err, sizeof err), 0);
	assert_int_equal(p.cidr.addr.family, 6);
	assert_int_equal(p.block_size, 0);
	assert_int_equal(p.ipip, IPAM_ENCAP_NEVER);
	assert_int_equal(p.vxlan, IPAM_ENCAP_ALWAYS);
	assert_true(p.disabled);
	assert_false(p.nat_outgoing);
	assert_string_equal(p.node_selector, "");
	json_decref(in);
	json_decref(n);

	/* From IPAM: a removing pool shows as disabled; IPAM's default pool. */
	ipam_default_pool(4, &p);
	p.removing = true;
	back = policy_ippool_from_ipam(&p);
	a = json_dumps(back, JSON_COMPACT);
	assert_string_equal(
	    a, "{\"apiVersion\":\"v1\",\"kind\":\"ipPool\",\"metadata\":{\"cidr\":"
	       "\"192.168.0.0/16\"},\"spec\":{\"nat-outgoing\":false,\"disabled\":true,"
	       "\"blockSize\":26}}");
	free(a);
	/* What from_ipam gives normalizes to itself. */
	assert_int_equal(policy_resource_normalize(back, 0, &n, err, sizeof err), 0);
	assert_true(json_equal(n, back));
	json_decref(n);
	json_decref(back);

	/* Anything else is refused. */
	in = read_one(POLICY_HEAD);
	assert_int_equal(policy_ippool_to_ipam(in, &p, err, sizeof err), -EINVAL);
	assert_string_equal(err, "not a normalized ipPool");
	json_decref(in);
	in = json_pack("{s:s, s:{s:s}, s:{s:s}}", "kind", "ipPool", "metadata", "cidr",
	               "10.0.0.0/8", "spec", "ipip", "yes");
	assert_int_equal(policy_ippool_to_ipam(in, &p, err, sizeof err), -EINVAL);
	assert_string_equal(err, "ipPool 10.0.0.0/8: not a normalized ipPool spec");
	json_decref(in);
	in = json_pack("{s:s, s:{s:s}, s:{}}", "kind", "ipPool", "metadata", "cidr", "10.0.0.1/8",
	               "spec");
	assert_int_equal(policy_ippool_to_ipam(in, &p, err, sizeof err), -EINVAL);
	assert_string_equal(err,
	                    "ipPool: metadata.cidr: 10.0.0.1/8 is not a canonical CIDR: host bits "
	                    "are set (the network is 10.0.0.0/8)");
	json_decref(in);
}

/* A whole file: several kinds, each normalized, each emitted and read back the same. */
static void test_file_round_trip(void **state)
{
	const char *file =
	    "- apiVersion: v1\n  kind: profile\n  metadata: {name: calico, tags: "
	    "[calico]}\n  spec:\n    ingress: [{action: allow, source: {tag: calico}}]\n"
	    "    egress: [{action: allow}]\n"
	    "- apiVersion: v1\n  kind: policy\n  metadata: {name: \"true\"}\n  spec:\n"
	    "    order: 1.5\n    ingress: [{action: allow, protocol: tcp, destination: "
	    "{ports: [\"80:81\", \"443\"]}}]\n";
	json_t *list = NULL, *norm = json_array(), *v, *n, *back = NULL;
	char err[512], *yaml = NULL;
	size_t i;

	(void)state;
	assert_int_equal(policy_doc_parse(file, strlen(file), &list, err, sizeof err), 0);
	assert_int_equal(json_array_size(list), 2);
	json_array_foreach (list, i, v) {
		assert_int_equal(policy_resource_normalize(v, (unsigned)i, &n, err, sizeof err), 0);
		json_array_append_new(norm, n);
	}
	assert_int_equal(policy_doc_emit_yaml(norm, &yaml), 0);
	assert_int_equal(policy_doc_parse(yaml, strlen(yaml), &back, err, sizeof err), 0);
	assert_true(json_equal(back, norm));
	assert_string_equal(json_string_value(json_object_get(
	                        json_object_get(json_array_get(back, 1), "metadata"), "name")),
	                    "true");
	free(yaml);
	json_decref(back);
	json_decref(norm);
	json_decref(list);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_issue_example), cmocka_unit_test(test_issue_port_error),
	    cmocka_unit_test(test_envelope),      cmocka_unit_test(test_kinds),
	    cmocka_unit_test(test_protocols),     cmocka_unit_test(test_names),
	    cmocka_unit_test(test_yaml_texts),    cmocka_unit_test(test_policy_fields),
	    cmocka_unit_test(test_policy_types),  cmocka_unit_test(test_policy_dnat_untracked),
	    cmocka_unit_test(test_rule_action),   cmocka_unit_test(test_rule_protocol),
	    cmocka_unit_test(test_rule_icmp),     cmocka_unit_test(test_rule_ports),
	    cmocka_unit_test(test_rule_nets),     cmocka_unit_test(test_rule_selectors_tags),
	    cmocka_unit_test(test_profile),       cmocka_unit_test(test_ippool),
	    cmocka_unit_test(test_hostendpoint),  cmocka_unit_test(test_workloadendpoint),
	    cmocka_unit_test(test_node),          cmocka_unit_test(test_keys),
	    cmocka_unit_test(test_ippool_ipam),   cmocka_unit_test(test_file_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
