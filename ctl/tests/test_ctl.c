/* The CLI's command line: dispatch, help, flag parsing and the messages and exit statuses of
 * mistakes. */
#include "ctl_test.h"

static void test_help_everywhere(void **state)
{
	static const char *const top[] = {"agent", "cluster", "store", "pool",
	                                  "ipam",  "version", "help",  NULL};
	static const char *const cluster[] = {"status", "hash", "remove", NULL};
	static const char *const store[] = {"get", "put", "del", "watch", NULL};
	static const char *const client[] = {"-o, --output FORMAT", "--socket PATH",
	                                     "--address IP:PORT",   "--timeout SECONDS",
	                                     "-h, --help",          NULL};
	static const char *const get[] = {"--prefix", "--limit N", "--consistency LEVEL", NULL};
	static const char *const put[] = {"--prev-revision N", NULL};
	static const char *const del[] = {"--prefix", NULL};
	static const char *const watch[] = {"--prefix", "--rev N", NULL};
	static const char *const version[] = {"-o, --output FORMAT", NULL};
	(void)state;

	expect_help(RUN("--help"), "Usage: tabby COMMAND", top);
	expect_help(RUN("-h"), "Usage: tabby COMMAND", top);
	expect_help(RUN("help"), "Usage: tabby COMMAND", top);
	expect_help(RUN("cluster", "--help"), "Usage: tabby cluster COMMAND", cluster);
	expect_help(RUN("store", "-h"), "Usage: tabby store COMMAND", store);
	expect_help(RUN("help", "store"), "Usage: tabby store COMMAND", store);
	expect_help(RUN("version", "--help"), "Usage: tabby version [flags]", version);
	expect_help(RUN("cluster", "status", "--help"), "Usage: tabby cluster status [flags]",
	            client);
	expect_help(RUN("cluster", "hash", "-h"), "Usage: tabby cluster hash [flags]", client);
	expect_help(RUN("cluster", "remove", "--help"), "Usage: tabby cluster remove NAME [flags]",
	            client);
	expect_help(RUN("store", "get", "--help"), "Usage: tabby store get KEY [flags]", client);
	expect_help(RUN("store", "get", "--help"), "Usage: tabby store get KEY [flags]", get);
	expect_help(RUN("store", "put", "--help"), "Usage: tabby store put KEY VALUE [flags]", put);
	expect_help(RUN("store", "del", "--help"), "Usage: tabby store del KEY [flags]", del);
	expect_help(RUN("store", "watch", "--help"), "Usage: tabby store watch KEY [flags]", watch);
	expect_help(RUN("help", "store", "watch"), "Usage: tabby store watch KEY [flags]", watch);
	expect_help(RUN("help", "cluster", "remove"), "Usage: tabby cluster remove NAME", client);
	expect_help(RUN("help", "agent"), "Usage: tabby agent", NULL);
	/* --help wins over what would otherwise be errors after it, and needs no arguments. */
	expect_help(RUN("store", "put", "--help", "--bogus"), "Usage: tabby store put", put);
	expect_help(RUN("store", "put", "k", "v", "extra", "-h"), "Usage: tabby store put", put);
}

static void test_version(void **state)
{
	struct run r = RUN("version");
	json_t *v;
	(void)state;

	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "tabby " TABBY_VERSION "\n");
	run_free(&r);

	r = RUN("version", "-o", "json");
	assert_int_equal(r.status, 0);
	v = json_loads(r.out, 0, NULL);
	assert_non_null(v);
	assert_string_equal(json_string_value(json_object_get(v, "version")), TABBY_VERSION);
	assert_int_equal(json_object_size(v), 1);
	json_decref(v);
	run_free(&r);

	expect_usage_error(RUN("version", "extra"), "tabby version: unexpected argument 'extra'");
	expect_usage_error(RUN("version", "--socket", "/x"),
	                   "tabby version: unknown flag '--socket'");
}

static void test_unknown_commands_and_flags(void **state)
{
	(void)state;

	expect_usage_error(RUN("foo"), "tabby: unknown command 'foo'");
	expect_usage_error(RUN("--bogus"), "tabby: unknown flag '--bogus'");
	expect_usage_error(RUN("store", "frob"), "tabby store: unknown command 'frob'");
	expect_usage_error(RUN("cluster", "--bogus"), "tabby cluster: unknown flag '--bogus'");
	expect_usage_error(RUN("help", "store", "frob"), "tabby store: unknown command 'frob'");
	expect_usage_error(RUN("store", "get", "k", "--bogus"),
	                   "tabby store get: unknown flag '--bogus'");
	expect_usage_error(RUN("store", "get", "k", "--bogus=1"),
	                   "tabby store get: unknown flag '--bogus'\n");
	expect_usage_error(RUN("store", "get", "-x", "k"), "tabby store get: unknown flag '-x'");
	expect_usage_error(RUN("store", "get", "k", "-hx"), "tabby store get: unknown flag '-hx'");
	/* A flag of one command is unknown to another. */
	expect_usage_error(RUN("store", "put", "k", "v", "--prefix"),
	                   "tabby store put: unknown flag '--prefix'");
	expect_usage_error(RUN("cluster", "status", "--rev", "1"),
	                   "tabby cluster status: unknown flag '--rev'");
}

static void test_missing_and_extra(void **state)
{
	(void)state;

	expect_usage_error(RUN("store", "get", "--prefix"), "tabby store get: missing KEY");
	expect_usage_error(RUN("store", "put", "k"), "tabby store put: missing VALUE");
	expect_usage_error(RUN("store", "put"), "tabby store put: missing KEY");
	expect_usage_error(RUN("store", "watch"), "tabby store watch: missing KEY");
	expect_usage_error(RUN("cluster", "remove"), "tabby cluster remove: missing NAME");
	expect_usage_error(RUN("cluster"), "tabby cluster: missing command");
	expect_usage_error(RUN("store", "del", "a", "b"),
	                   "tabby store del: unexpected argument 'b'");
	expect_usage_error(RUN("cluster", "status", "x"),
	                   "tabby cluster status: unexpected argument 'x'");
	expect_usage_error(RUN("store", "get", "k", "--limit"),
	                   "tabby store get: flag '--limit' needs a value (N)");
	expect_usage_error(RUN("store", "get", "k", "-o"),
	                   "tabby store get: flag '-o' needs a value (FORMAT)");

	struct run r = run_args(NULL);
	assert_int_equal(r.status, 2);
	assert_contains(r.err, "tabby: missing command");
	assert_contains(r.err, "Usage: tabby COMMAND");
	run_free(&r);
}

static void test_bad_values(void **state)
{
	(void)state;

	expect_usage_error(RUN("store", "get", "k", "-o", "yaml"),
	                   "tabby store get: invalid value 'yaml' for -o (want text or json)");
	expect_usage_error(RUN("store", "get", "k", "--limit", "0"),
	                   "invalid value '0' for --limit");
	expect_usage_error(RUN("store", "get", "k", "--limit", "ten"),
	                   "invalid value 'ten' for --limit");
	expect_usage_error(RUN("store", "get", "k", "--limit", " 5"),
	                   "invalid value ' 5' for --limit");
	expect_usage_error(RUN("store", "get", "k", "--limit", "5x"),
	                   "invalid value '5x' for --limit");
	expect_usage_error(RUN("store", "get", "k", "--limit", "99999999999999999999"),
	                   "invalid value '99999999999999999999' for --limit");
	expect_usage_error(RUN("store", "get", "k", "--consistency", "strong"),
	                   "invalid value 'strong' for --consistency");
	expect_usage_error(RUN("store", "put", "k", "v", "--prev-revision", "-1"),
	                   "invalid value '-1' for --prev-revision");
	expect_usage_error(RUN("store", "watch", "k", "--rev", "0"), "invalid value '0' for --rev");
	expect_usage_error(RUN("store", "get", "k", "--prefix=yes"),
	                   "tabby store get: flag '--prefix' takes no value");
	expect_usage_error(RUN("cluster", "status", "--timeout", "99999999999"),
	                   "--timeout 99999999999 is too long");
	expect_usage_error(RUN("cluster", "status", "--socket", "/a", "--address", "1.2.3.4:5"),
	                   "use --socket or --address, not both");
	expect_usage_error(RUN("cluster", "status", "--socket="), "empty value for --socket");
}

static void test_parse_forms(void **state)
{
	const struct ctl_command *get = find(&ctl_store_command, "get");
	const struct ctl_command *put = find(&ctl_store_command, "put");
	char *a1[] = {"--limit=5", "k", "-ojson", "--prefix", "--socket", "/s", "--timeout", "3"};
	char *a2[] = {"--", "-k", "--v"};
	char *a3[] = {"-", "--prev-revision", "0", "-o", "text", "--output=json", "v"};
	char *a4[] = {"k", "--consistency", "linearizable", "--address=127.0.0.1:80"};
	struct ctl_ctx ctx;
	int64_t n = -7;
	(void)state;

	parse(&ctx, get, 8, a1, 0);
	assert_false(ctx.help);
	assert_int_equal(ctx.nargs, 1);
	assert_string_equal(ctx.args[0], "k");
	assert_string_equal(ctl_flag(&ctx, "limit"), "5");
	assert_string_equal(ctl_flag(&ctx, "prefix"), "");
	assert_string_equal(ctl_flag(&ctx, "socket"), "/s");
	assert_null(ctl_flag(&ctx, "consistency"));
	assert_null(ctl_flag(&ctx, "address"));
	assert_null(ctl_flag(&ctx, "no-such-flag"));
	assert_true(ctx.json);
	assert_int_equal(ctx.timeout_ms, 3000);
	assert_int_equal(ctl_flag_int(&ctx, "limit", 1, &n), 0);
	assert_int_equal(n, 5);
	assert_int_equal(ctl_flag_int(&ctx, "rev", 1, &n), 0); /* absent: unchanged */
	assert_int_equal(n, 5);

	/* "--" ends the flags, so a key or value may start with '-'. */
	parse(&ctx, put, 3, a2, 0);
	assert_int_equal(ctx.nargs, 2);
	assert_string_equal(ctx.args[0], "-k");
	assert_string_equal(ctx.args[1], "--v");

	/* A lone "-" is an argument; the last of repeated flags wins. */
	parse(&ctx, put, 7, a3, 0);
	assert_int_equal(ctx.nargs, 2);
	assert_string_equal(ctx.args[0], "-");
	assert_string_equal(ctx.args[1], "v");
	assert_string_equal(ctl_flag(&ctx, "prev-revision"), "0");
	assert_true(ctx.json);

	parse(&ctx, get, 4, a4, 0);
	assert_string_equal(ctl_flag(&ctx, "consistency"), "linearizable");
	assert_string_equal(ctl_flag(&ctx, "address"), "127.0.0.1:80");
	assert_false(ctx.json);
	assert_int_equal(ctx.timeout_ms, CTL_DEFAULT_TIMEOUT_S * 1000);
}

static void test_unreachable_agent(void **state)
{
	struct run r;
	(void)state;

	r = RUN("store", "get", "k", "--socket", "/nonexistent/flag.sock");
	assert_int_equal(r.status, 1);
	assert_string_equal(r.out, "");
	assert_contains(r.err, "tabby store get: cannot connect to /nonexistent/flag.sock: ");
	run_free(&r);

	/* TABBY_SOCKET is used unless --socket says otherwise. */
	setenv("TABBY_SOCKET", "/nonexistent/env.sock", 1);
	r = RUN("cluster", "status");
	assert_int_equal(r.status, 1);
	assert_contains(r.err, "tabby cluster status: cannot connect to /nonexistent/env.sock");
	run_free(&r);
	r = RUN("cluster", "hash", "--socket", "/nonexistent/flag.sock");
	assert_contains(r.err, "cannot connect to /nonexistent/flag.sock");
	run_free(&r);
	unsetenv("TABBY_SOCKET");

	r = RUN("store", "watch", "k", "--address", "no-port-here");
	assert_int_equal(r.status, 1);
	assert_contains(r.err, "tabby store watch: bad address 'no-port-here'");
	run_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_help_everywhere),
	    cmocka_unit_test(test_version),
	    cmocka_unit_test(test_unknown_commands_and_flags),
	    cmocka_unit_test(test_missing_and_extra),
	    cmocka_unit_test(test_bad_values),
	    cmocka_unit_test(test_parse_forms),
	    cmocka_unit_test(test_unreachable_agent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
