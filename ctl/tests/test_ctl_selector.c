/* tabby selector match | canonical | uid: output, exit statuses and messages. */
#include "ctl_test.h"

/* Expect status 0, out exactly, nothing on stderr. */
static void expect_out(struct run r, const char *out)
{
	if (r.status != 0)
		fail_msg("status %d, stderr: %s", r.status, r.err);
	assert_string_equal(r.out, out);
	assert_string_equal(r.err, "");
	run_free(&r);
}

/* Expect status 2, nothing on stdout, exactly err on stderr. */
static void expect_err(struct run r, const char *err)
{
	assert_int_equal(r.status, 2);
	assert_string_equal(r.out, "");
	assert_string_equal(r.err, err);
	run_free(&r);
}

static void test_match(void **state)
{
	(void)state;

	expect_out(RUN("selector", "match", "a == \"b\"", "--labels", "{\"a\": \"b\"}"), "true\n");
	expect_out(RUN("selector", "match", "a == \"b\"", "--labels", "{\"a\": \"c\"}"), "false\n");
	expect_out(RUN("selector", "match", "--labels={\"a\": \"c\"}", "a != \"b\""), "true\n");
	/* --labels defaults to no labels. */
	expect_out(RUN("selector", "match", "a != \"b\""), "true\n");
	expect_out(RUN("selector", "match", "has(a)"), "false\n");
	expect_out(RUN("selector", "match", ""), "true\n");
	expect_out(RUN("selector", "match", "a not in {}", "--labels", "{}"), "true\n");
	expect_out(RUN("selector", "match", "!has(a) || a in {'x', 'y'}", "--labels",
	               "{\"a\": \"y\", \"b\": \"\"}"),
	           "true\n");
	expect_out(RUN("selector", "match", "in == 'x' && has(b)", "--labels",
	               "{\"in\": \"x\", \"b\": \"\"}"),
	           "true\n");
	/* A selector may start with a label spelt with a leading '-' (or '--'), with or
	 * without "--" before it. */
	expect_out(RUN("selector", "match", "--labels", "{\"-a\": \"1\"}", "--", "-a == \"1\""),
	           "true\n");
	expect_out(RUN("selector", "match", "-a == \"1\"", "--labels", "{\"-a\": \"1\"}"),
	           "true\n");
	expect_out(RUN("selector", "match", "--a != \"1\"", "--labels", "{}"), "true\n");
	expect_out(RUN("selector", "canonical", "-x in {'b', 'a'}"), "-x in {\"a\", \"b\"}\n");
}

static void test_match_errors(void **state)
{
	(void)state;

	expect_err(RUN("selector", "match", "a == b"),
	           "tabby selector match: invalid selector: at column 6: expected a quoted string "
	           "after '==', found 'b'\n");
	expect_err(RUN("selector", "match", "a == \"x\"\n", "--labels", "{}"),
	           "tabby selector match: invalid selector: at column 9: unexpected newline\n");

	{
		struct run r = RUN("selector", "match", "has(a)", "--labels", "{\"a\": 1}");
		assert_int_equal(r.status, 2);
		assert_string_equal(r.out, "");
		assert_contains(r.err,
		                "tabby selector match: --labels: label 'a': the value must be "
		                "a string, not a number");
		run_free(&r);
	}
	expect_usage_error(RUN("selector", "match", "has(a)", "--labels", "[\"a\"]"),
	                   "labels must be an object of string values, not an array");
	expect_usage_error(RUN("selector", "match", "has(a)", "--labels", "null"),
	                   "labels must be an object of string values");
	expect_usage_error(RUN("selector", "match", "has(a)", "--labels", "\"a\""), "not a string");
	expect_usage_error(RUN("selector", "match", "has(a)", "--labels", "{\"a\": "),
	                   "tabby selector match: --labels is not JSON");
	expect_usage_error(
	    RUN("selector", "match", "has(a)", "--labels", "{\"a\": \"x\", \"a\": \"y\"}"),
	    "--labels is not JSON: duplicate object key");
	expect_usage_error(RUN("selector", "match"), "tabby selector match");
	expect_usage_error(RUN("selector", "match", "has(a)", "has(b)"),
	                   "unexpected argument 'has(b)'");
	expect_usage_error(RUN("selector", "match", "has(a)", "--bogus"),
	                   "unexpected argument '--bogus'");
}

static void test_canonical(void **state)
{
	(void)state;

	expect_out(RUN("selector", "canonical", ""), "all()\n");
	expect_out(RUN("selector", "canonical", " all( ) "), "all()\n");
	expect_out(RUN("selector", "canonical", "a=='b'&&c=='d'"), "(a == \"b\" && c == \"d\")\n");
	expect_out(RUN("selector", "canonical", "a in {'z', 'x', \"x\",}"),
	           "a in {\"x\", \"z\"}\n");
	expect_out(RUN("selector", "canonical", "a == 'it\"s'"), "a == 'it\"s'\n");
	expect_out(RUN("selector", "canonical", "a startswith 'x' || b notin {}"),
	           "(a starts with \"x\" || b not in {})\n");
	expect_out(RUN("selector", "canonical", "(a == '1' && b == '2') && c == '3'"),
	           "((a == \"1\" && b == \"2\") && c == \"3\")\n");
	expect_out(RUN("selector", "canonical", "! (has( b)||! has(a ))"),
	           "!(has(b) || !has(a))\n");
	expect_out(RUN("selector", "canonical", "!!a == 'x'"), "a == \"x\"\n");
	expect_err(RUN("selector", "canonical", "(a == \"x\""),
	           "tabby selector canonical: invalid selector: at column 10: expected ')' to "
	           "close the '(' at column 1, found the end of the selector\n");
	expect_err(RUN("selector", "canonical", "a \"x"),
	           "tabby selector canonical: invalid selector: at column 3: unterminated "
	           "string\n");
	expect_usage_error(RUN("selector", "canonical"), "tabby selector canonical");
}

static void test_uid(void **state)
{
	(void)state;

	expect_out(RUN("selector", "uid", ""), "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug\n");
	expect_out(RUN("selector", "uid", "all()"), "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug\n");
	expect_out(RUN("selector", "uid", "! (a == \"b\"&&! c != \"d\")"),
	           "s:lh3haoY1ikTRkd4UZu0nWSaIBknYLPJLX16d-w\n");
	expect_err(RUN("selector", "uid", "has()"),
	           "tabby selector uid: invalid selector: at column 5: expected a label name "
	           "inside has()\n");
}

static void test_help(void **state)
{
	static const char *const group[] = {"match", "canonical", "uid", NULL};
	static const char *const match[] = {"--labels JSON", "-h, --help", NULL};
	static const char *const top[] = {"selector", NULL};
	(void)state;

	expect_help(RUN("selector", "--help"), "Usage: tabby selector COMMAND", group);
	expect_help(RUN("selector", "match", "--help"), "Usage: tabby selector match EXPR", match);
	expect_help(RUN("help", "selector", "uid"), "Usage: tabby selector uid EXPR", NULL);
	expect_help(RUN("--help"), "Usage: tabby COMMAND", top);
	/* Offline commands: no agent flags. */
	expect_usage_error(RUN("selector", "uid", "all()", "--socket", "/x"),
	                   "unexpected argument '--socket'");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_match),     cmocka_unit_test(test_match_errors),
	    cmocka_unit_test(test_canonical), cmocka_unit_test(test_uid),
	    cmocka_unit_test(test_help),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
