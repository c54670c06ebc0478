/*
 * Documents: policy_doc_parse() over YAML and JSON files (the forms a file may take, YAML 1.1
 * scalars as calicoctl's Go parser reads them, errors with line and column, the limits that keep
 * alias bombs and deep nesting out) and policy_doc_emit_yaml() (exact text, and every value
 * reading back as itself).
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

/* Parse text and compare the resources with the JSON text want. */
static void parses_as(const char *text, const char *want)
{
	json_error_t je;
	json_t *got = NULL, *exp = json_loads(want, JSON_DECODE_ANY, &je);
	char err[256];
	int rc;

	assert_non_null(exp);
	rc = policy_doc_parse(text, strlen(text), &got, err, sizeof err);
	if (rc != 0)
		fail_msg("parse of <<%s>> failed: %s", text, err);
	if (!json_equal(got, exp)) {
		char *s = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY);
		fail_msg("<<%s>>\n got %s\nwant %s", text, s, want);
	}
	json_decref(got);
	json_decref(exp);
}

static void fails_with(const char *text, const char *want)
{
	json_t *got = (json_t *)1;
	char err[256];

	assert_int_equal(policy_doc_parse(text, strlen(text), &got, err, sizeof err), -EINVAL);
	assert_null(got);
	assert_string_equal(err, want);
}

/* ---- the forms of a file ---- */

static void test_single_yaml(void **state)
{
	(void)state;
	parses_as("apiVersion: v1\nkind: policy\nmetadata:\n  name: p\n",
	          "[{\"apiVersion\":\"v1\",\"kind\":\"policy\",\"metadata\":{\"name\":\"p\"}}]");
}

static void test_multi_document(void **state)
{
	(void)state;
	/* Empty documents are skipped, a sequence lists resources, "items" lists its items. */
	parses_as("---\n---\nkind: a\n---\n- kind: b\n- kind: c\n...\n---\n# only a comment\n"
	          "---\nkind: policyList\nitems:\n- kind: d\n",
	          "[{\"kind\":\"a\"},{\"kind\":\"b\"},{\"kind\":\"c\"},{\"kind\":\"d\"}]");
	parses_as("", "[]");
	parses_as("# nothing\n", "[]");
	parses_as("items: []\n", "[]");
	parses_as("- kind: a\n---\nkind: b\n", "[{\"kind\":\"a\"},{\"kind\":\"b\"}]");
}

static void test_json_forms(void **state)
{
	(void)state;
	parses_as("  {\"kind\": \"a\", \"spec\": {\"order\": 5}}",
	          "[{\"kind\":\"a\",\"spec\":{\"order\":5}}]");
	parses_as("\n[{\"kind\":\"a\"},{\"kind\":\"b\"}]\n", "[{\"kind\":\"a\"},{\"kind\":\"b\"}]");
	parses_as("{\"kind\":\"policyList\",\"items\":[{\"kind\":\"a\"}]}", "[{\"kind\":\"a\"}]");
	parses_as("[]", "[]");
	/* Valid JSON keeps JSON's meaning: jansson reads it, not YAML's resolution. */
	parses_as("{\"a\": 1e3, \"b\": -0}", "[{\"a\":1000.0,\"b\":0}]");
}

/* Text that starts like JSON but is not JSON is YAML, as calicoctl read every file: flow style,
 * and JSON documents separated by "---". */
static void test_json_like_yaml(void **state)
{
	(void)state;
	parses_as("{apiVersion: v1, kind: profile, metadata: {name: p}}",
	          "[{\"apiVersion\":\"v1\",\"kind\":\"profile\",\"metadata\":{\"name\":\"p\"}}]");
	parses_as(" [{kind: a}, {kind: b, spec: {order: 0x10}}]\n",
	          "[{\"kind\":\"a\"},{\"kind\":\"b\",\"spec\":{\"order\":16}}]");
	parses_as("{\"kind\": \"a\"}\n---\n{\"kind\": \"b\"}\n",
	          "[{\"kind\":\"a\"},{\"kind\":\"b\"}]");
	parses_as("[{\"kind\": \"a\"}]\n---\n- {kind: b}\n", "[{\"kind\":\"a\"},{\"kind\":\"b\"}]");
	parses_as("# c\n{a: yes}", "[{\"a\":true}]");
	parses_as("{a: yes}", "[{\"a\":true}]");
	/* What YAML allows and JSON does not: a trailing comma, a missing value. */
	parses_as("{\"a\": 1,}", "[{\"a\":1}]");
	parses_as("{\"a\": 1,\n  \"b\": }", "[{\"a\":1,\"b\":null}]");
}

/* ---- scalars ---- */

static void test_scalars(void **state)
{
	static const struct {
		const char *yaml, *json;
	} cases[] = {
	    /* booleans, every spelling go-yaml v2 takes */
	    {"true", "true"},
	    {"True", "true"},
	    {"TRUE", "true"},
	    {"yes", "true"},
	    {"Yes", "true"},
	    {"YES", "true"},
	    {"on", "true"},
	    {"On", "true"},
	    {"ON", "true"},
	    {"false", "false"},
	    {"False", "false"},
	    {"FALSE", "false"},
	    {"no", "false"},
	    {"No", "false"},
	    {"NO", "false"},
	    {"off", "false"},
	    {"Off", "false"},
	    {"OFF", "false"},
	    /* one-letter booleans are strings here (see resolve_plain) */
	    {"y", "\"y\""},
	    {"N", "\"N\""},
	    {"tRUE", "\"tRUE\""},
	    /* null */
	    {"null", "null"},
	    {"Null", "null"},
	    {"NULL", "null"},
	    {"~", "null"},
	    {"", "null"},
	    /* integers: Go's ParseInt base 0, underscores removed */
	    {"0", "0"},
	    {"50", "50"},
	    {"-5", "-5"},
	    {"+7", "7"},
	    {"0x1F", "31"},
	    {"-0x10", "-16"},
	    {"0o17", "15"},
	    {"0b101", "5"},
	    {"017", "15"},
	    {"1_000", "1000"},
	    {"9223372036854775807", "9223372036854775807"},
	    {"-9223372036854775808", "-9223372036854775808"},
	    /* beyond int64: a real */
	    {"9223372036854775808", "9223372036854775808.0"},
	    {"99999999999999999999", "1e20"},
	    /* floats */
	    {"1.5", "1.5"},
	    {"-2.5e3", "-2500.0"},
	    {".5", "0.5"},
	    {"1e3", "1000.0"},
	    {"50.0", "50.0"},
	    {"08", "8.0"},
	    /* strings */
	    {"abc", "\"abc\""},
	    {"1.2.3", "\"1.2.3\""},
	    {"0x", "\"0x\""},
	    {"+", "\"+\""},
	    {"10.0.0.0/8", "\"10.0.0.0/8\""},
	    {"app == 'x'", "\"app == 'x'\""},
	    {"\"true\"", "\"true\""},
	    {"'123'", "\"123\""},
	    {"\"\"", "\"\""},
	    {"!!str 123", "\"123\""},
	    {"! yes", "\"yes\""},
	    {"!!int 12", "12"},
	    {"!!float 3", "3.0"},
	    {"\"a\\tb\"", "\"a\\tb\""},
	    {"|\n  lit\n  eral", "\"lit\\neral\\n\""},
	    {">-\n  fol\n  ded", "\"fol ded\""},
	};
	char text[128], want[128];

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(text, sizeof text, "v: %s\n", cases[i].yaml);
		snprintf(want, sizeof want, "[{\"v\": %s}]", cases[i].json);
		parses_as(text, want);
	}
	/* Keys are never resolved: "true" and "1" are keys as written. */
	parses_as("true: 1\n1: 2\n", "[{\"true\":1,\"1\":2}]");
}

static void test_scalar_errors(void **state)
{
	(void)state;
	fails_with("v: .inf\n",
	           "line 1, column 4: .inf: infinite and NaN numbers cannot be represented");
	fails_with("v: -.Inf\n",
	           "line 1, column 4: -.Inf: infinite and NaN numbers cannot be represented");
	fails_with("v: .nan\n",
	           "line 1, column 4: .nan: infinite and NaN numbers cannot be represented");
	fails_with("v: 1e999\n",
	           "line 1, column 4: 1e999: infinite and NaN numbers cannot be represented");
	fails_with("v: \"a\\0b\"\n", "line 1, column 4: a string contains a NUL character");
	fails_with("v: !!int abc\n",
	           "line 1, column 4: \"abc\" is not a valid tag:yaml.org,2002:int");
	fails_with("v: !!binary aGk=\n",
	           "line 1, column 4: unsupported tag tag:yaml.org,2002:binary");
	fails_with("v: !local x\n", "line 1, column 4: unsupported tag !local");
}

/* ---- malformed text: line and column, 1-based ---- */

static void test_yaml_errors(void **state)
{
	(void)state;
	/* bad indentation */
	fails_with("a:\n  b: 1\n c: 2\n",
	           "line 3, column 2: did not find expected key while parsing a block mapping");
	/* an unclosed quote */
	fails_with(
	    "a: \"unclosed\n",
	    "line 2, column 1: found unexpected end of stream while scanning a quoted scalar");
	/* a tab as indentation */
	fails_with("a:\n\tb: 1\n", "line 2, column 1: found character that cannot start any token "
	                           "while scanning for the next token");
	/* duplicate keys, at the second one */
	fails_with("kind: a\nmetadata:\n  name: x\n  name: y\n",
	           "line 4, column 3: duplicate key \"name\"");
	/* a document that is neither a resource nor a list */
	fails_with("---\nkind: a\n---\nhello\n",
	           "line 3, column 1: expected a resource (a mapping) or a list of resources");
	fails_with("a: *nope\n", "line 1, column 4: unknown anchor \"nope\"");
	fails_with("? [a]\n: b\n", "line 1, column 3: a mapping key must be a scalar");
	/* invalid UTF-8: libyaml reports a byte offset, told as line and column */
	fails_with("a: 1\nb: \xff\n", "line 2, column 4: invalid leading UTF-8 octet");
}

/* Text that starts like JSON and is neither JSON nor YAML: the error further into the text. */
static void test_json_errors(void **state)
{
	(void)state;
	/* JSON's: it got as far as YAML, and names the token. */
	fails_with("{\"a\": \"x\",\n \"b\": \"x\" \"c\"}",
	           "line 2, column 13: '}' expected near '\"c\"'");
	fails_with("{\"a\":1,\"a\":2}", "line 1, column 10: duplicate object key near '\"a\"'");
	fails_with("[1, 2", "line 1, column 5: ']' expected near end of file");
	/* YAML's: jansson stopped at the first unquoted key, or at the "---". */
	fails_with("{apiVersion: v1, kind: [profile}",
	           "line 1, column 32: did not find expected ',' or ']' while parsing a flow "
	           "sequence");
	fails_with("{\"a\": 1}\n---\n{\"b\": [}",
	           "line 3, column 8: did not find expected node content while parsing a flow "
	           "node");
}

/* ---- the texts of numbers and booleans ---- */

/* Parse text with its texts; compare the texts with the JSON text want. */
static void texts_are(const char *text, const char *want)
{
	json_error_t je;
	json_t *got = NULL, *texts = NULL, *exp = json_loads(want, JSON_DECODE_ANY, &je);
	char err[256];

	assert_non_null(exp);
	if (policy_doc_parse_texts(text, strlen(text), &got, &texts, err, sizeof err) != 0)
		fail_msg("parse of <<%s>> failed: %s", text, err);
	if (!json_equal(texts, exp)) {
		char *s = json_dumps(texts, JSON_COMPACT | JSON_ENCODE_ANY);
		fail_msg("<<%s>>\n got %s\nwant %s", text, s, want);
	}
	assert_int_equal(json_array_size(texts), json_array_size(got));
	json_decref(got);
	json_decref(texts);
	json_decref(exp);
}

static void test_texts(void **state)
{
	json_t *got = (json_t *)1, *texts = (json_t *)1;
	char err[256];

	(void)state;
	/* Each scalar that became a number or a boolean keeps its text, as written. */
	texts_are("a: 0x1F\nb: [yes, \"no\", 1.50, x, ~]\nc: !!int 7\nd: {e: +1_0}\n",
	          "[{\"a\":\"0x1F\",\"b\":[\"yes\",null,\"1.50\",null,null],\"c\":\"7\","
	          "\"d\":{\"e\":\"+1_0\"}}]");
	/* Resources of lists, List items and several documents; an alias shares its texts. */
	texts_are("- {a: &n 1}\n- {b: *n}\n---\nitems: [{c: off}]\n---\nd: 2\n",
	          "[{\"a\":\"1\"},{\"b\":\"1\"},{\"c\":\"off\"},{\"d\":\"2\"}]");
	/* JSON has no texts; flow-style YAML does. */
	texts_are("[{\"a\": 1}, {\"b\": true}]", "[null, null]");
	texts_are("{a: 1}", "[{\"a\":\"1\"}]");
	texts_are("", "[]");
	/* A refusal gives neither. */
	assert_int_equal(policy_doc_parse_texts("a: [", 4, &got, &texts, err, sizeof err), -EINVAL);
	assert_null(got);
	assert_null(texts);
}

/* ---- anchors, aliases and limits ---- */

static void test_aliases(void **state)
{
	(void)state;
	parses_as(
	    "- kind: a\n  metadata: &md {name: x, labels: {a: b}}\n- kind: b\n  metadata: *md\n",
	    "[{\"kind\":\"a\",\"metadata\":{\"name\":\"x\",\"labels\":{\"a\":\"b\"}}},"
	    "{\"kind\":\"b\",\"metadata\":{\"name\":\"x\",\"labels\":{\"a\":\"b\"}}}]");
	/* A scalar anchor, used as a value and as a key. */
	parses_as("a: &k port\nb: *k\n*k : 80\n", "[{\"a\":\"port\",\"b\":\"port\",\"port\":80}]");
	/* The latest definition of an anchor wins. */
	parses_as("a: &x 1\nb: &x 2\nc: *x\n", "[{\"a\":1,\"b\":2,\"c\":2}]");
	/* Anchors belong to their document. */
	fails_with("a: &x 1\n---\nb: *x\n", "line 3, column 4: unknown anchor \"x\"");
}

static void test_alias_bomb(void **state)
{
	/* Nine levels of ten aliases: 10^9 nodes once expanded, from a few hundred bytes. */
	char text[4096];
	size_t n = 0;

	(void)state;
	n +=
	    (size_t)snprintf(text + n, sizeof text - n, "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
	for (int i = 1; i <= 9; i++) {
		n += (size_t)snprintf(text + n, sizeof text - n, "a%d: &a%d [", i, i);
		for (int j = 0; j < 10; j++)
			n += (size_t)snprintf(text + n, sizeof text - n, "%s*a%d", j ? ", " : "",
			                      i - 1);
		n += (size_t)snprintf(text + n, sizeof text - n, "]\n");
	}
	json_t *got = NULL;
	char err[256];
	assert_int_equal(policy_doc_parse(text, n, &got, err, sizeof err), -EINVAL);
	assert_null(got);
	assert_non_null(strstr(err, "more than 1000000 nodes after alias expansion"));
	/* a5 is the first anchor past the limit (about 1.1 million nodes) */
	assert_int_equal(strncmp(err, "line 6, column ", 15), 0);
}

static void test_depth(void **state)
{
	char text[1024];
	size_t n;
	assert_true(sizeof text > 65 * 5 + 2);
	json_t *got = NULL;
	char err[256];

	(void)state;
	/* 64 nested collections are fine, 65 are not: YAML flow, JSON, and through an alias. */
	for (int depth = 64; depth <= 65; depth++) {
		n = 0;
		for (int i = 0; i < depth; i++)
			n += (size_t)snprintf(text + n, sizeof text - n, "{a: ");
		text[n++] = '1';
		for (int i = 0; i < depth; i++)
			text[n++] = '}';
		text[n] = '\0';
		/* Behind a comment line: YAML from the start, not JSON's failure first. */
		char yaml[1200];
		snprintf(yaml, sizeof yaml, "# deep\n%s\n", text);
		int rc = policy_doc_parse(yaml, strlen(yaml), &got, err, sizeof err);
		if (depth == 64) {
			assert_int_equal(rc, 0);
			json_decref(got);
		} else {
			assert_int_equal(rc, -EINVAL);
			/* at the 65th "{", 4 columns each */
			assert_string_equal(err, "line 2, column 257: nesting deeper than 64");
		}
	}
	n = 0;
	for (int i = 0; i < 65; i++)
		text[n++] = '[';
	for (int i = 0; i < 65; i++)
		text[n++] = ']';
	text[n] = '\0';
	assert_int_equal(policy_doc_parse(text, n, &got, err, sizeof err), -EINVAL);
	assert_string_equal(err, "line 1, column 1: nesting deeper than 64");
	assert_int_equal(policy_doc_parse(text + 1, n - 2, &got, err, sizeof err), 0);
	json_decref(got);

	/* An alias of a 2-deep value inside 63 collections is 65 deep. */
	n = (size_t)snprintf(text, sizeof text, "x: &d [[1]]\ny: ");
	for (int i = 0; i < 62; i++)
		n += (size_t)snprintf(text + n, sizeof text - n, "[");
	n += (size_t)snprintf(text + n, sizeof text - n, "*d");
	for (int i = 0; i < 62; i++)
		n += (size_t)snprintf(text + n, sizeof text - n, "]");
	assert_int_equal(policy_doc_parse(text, n, &got, err, sizeof err), -EINVAL);
	assert_string_equal(err, "line 2, column 66: nesting deeper than 64");
}

/* ---- emitting ---- */

static void round_trips(const char *json)
{
	json_error_t je;
	json_t *v = json_loads(json, JSON_DECODE_ANY, &je), *back = NULL, *want;
	char *yaml = NULL, err[256];

	assert_non_null(v);
	assert_int_equal(policy_doc_emit_yaml(v, &yaml), 0);
	if (policy_doc_parse(yaml, strlen(yaml), &back, err, sizeof err) != 0)
		fail_msg("re-reading <<%s>>: %s", yaml, err);
	/* A parsed file is always a list of resources: an object comes back as one. */
	if (json_is_array(v)) {
		want = json_incref(v);
	} else {
		want = json_array();
		json_array_append(want, v);
	}
	if (!json_equal(back, want)) {
		char *s = json_dumps(back, JSON_COMPACT);
		fail_msg("%s\nemitted <<%s>>\nread back %s", json, yaml, s);
	}
	free(yaml);
	json_decref(v);
	json_decref(back);
	json_decref(want);
}

static void test_emit_text(void **state)
{
	json_error_t je;
	json_t *v = json_loads(
	    "{\"apiVersion\":\"v1\",\"kind\":\"policy\",\"metadata\":{\"name\":\"frontend-policy\"}"
	    ","
	    "\"spec\":{\"order\":50,\"selector\":\"app == 'frontend'\",\"types\":[\"ingress\"],"
	    "\"ingress\":[{\"action\":\"allow\",\"protocol\":\"tcp\",\"destination\":{\"ports\":["
	    "80,"
	    "\"8000:8080\"]}}],\"egress\":[],\"doNotTrack\":false,\"preDNAT\":false}}",
	    0, &je);
	char *yaml = NULL;

	(void)state;
	assert_non_null(v);
	assert_int_equal(policy_doc_emit_yaml(v, &yaml), 0);
	assert_string_equal(yaml, "apiVersion: v1\n"
	                          "kind: policy\n"
	                          "metadata:\n"
	                          "  name: frontend-policy\n"
	                          "spec:\n"
	                          "  order: 50\n"
	                          "  selector: app == 'frontend'\n"
	                          "  types:\n"
	                          "  - ingress\n"
	                          "  ingress:\n"
	                          "  - action: allow\n"
	                          "    protocol: tcp\n"
	                          "    destination:\n"
	                          "      ports:\n"
	                          "      - 80\n"
	                          "      - 8000:8080\n"
	                          "  egress: []\n"
	                          "  doNotTrack: false\n"
	                          "  preDNAT: false\n");
	free(yaml);
	json_decref(v);

	/* Strings that would read back as something else are quoted. */
	v = json_pack("{s:s, s:s, s:s, s:s, s:s, s:f, s:s}", "a", "true", "b", "", "c", "123", "d",
	              "~", "e", "no", "f", 50.0, "g", "1_0");
	assert_int_equal(policy_doc_emit_yaml(v, &yaml), 0);
	assert_string_equal(yaml, "a: \"true\"\nb: \"\"\nc: \"123\"\nd: \"~\"\ne: \"no\"\nf: 50.0\n"
	                          "g: \"1_0\"\n");
	free(yaml);
	json_decref(v);

	/* A list of resources is one sequence. */
	v = json_pack("[{s:s},{s:s}]", "kind", "a", "kind", "b");
	assert_int_equal(policy_doc_emit_yaml(v, &yaml), 0);
	assert_string_equal(yaml, "- kind: a\n- kind: b\n");
	free(yaml);
	json_decref(v);
}

static void test_emit_round_trip(void **state)
{
	(void)state;
	round_trips(
	    "{\"s\":[\"\",\"true\",\"True\",\"yes\",\"Y\",\"n\",\"off\",\"null\",\"~\",\"123\","
	    "\"-5\",\"0x10\",\"0o7\",\"0b1\",\"017\",\"1_0\",\"1.5\",\"1e3\",\".5\",\".inf\","
	    "\"-.Inf\",\".nan\",\"- x\",\"a: b\",\"#c\",\"a #c\",\" lead\",\"trail \","
	    "\"multi\\nline\",\"@at\",\"`b\",\"!bang\",\"&amp\",\"*star\",\"%pct\",\"{\",\"[\","
	    "\"]\",\",\",\"?\",\"? "
	    "q\",\"|\",\">\",\"'\",\"\\\"\",\"\\u00e9t\\u00e9\",\"tab\\there\","
	    "\"\\u0001ctl\",\"---\",\"...\",\"<<\",\"=\",\"10.0.0.0/8\",\"app == 'x'\"]}");
	round_trips("{\"n\":[0,-1,9223372036854775807,-9223372036854775808,50.0,0.1,1e20,-2.5,"
	            "1.7976931348623157e308,5e-324,-0.0],\"b\":[true,false,null]}");
	round_trips("[{\"e\":{},\"l\":[],\"nested\":[[1,[2]],{\"a\":{\"b\":[{}]}}]}]");
	round_trips(
	    "{\"true\":1,\"\":2,\"- k\":3,\"123\":4,\"long key "
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\":5}");
	round_trips("[]");
	round_trips("{}");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_single_yaml),   cmocka_unit_test(test_multi_document),
	    cmocka_unit_test(test_json_forms),    cmocka_unit_test(test_json_like_yaml),
	    cmocka_unit_test(test_texts),         cmocka_unit_test(test_scalars),
	    cmocka_unit_test(test_scalar_errors), cmocka_unit_test(test_yaml_errors),
	    cmocka_unit_test(test_json_errors),   cmocka_unit_test(test_aliases),
	    cmocka_unit_test(test_alias_bomb),    cmocka_unit_test(test_depth),
	    cmocka_unit_test(test_emit_text),     cmocka_unit_test(test_emit_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
