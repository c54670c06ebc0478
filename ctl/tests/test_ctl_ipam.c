/* The IPAM commands of the CLI (`tabby pool ...`, `tabby ipam ...`): help, the command-line
 * mistakes that are refused before anything is sent, repeated flags, and the text output from
 * canned agent answers. What the agent answers is tested against real agents in
 * cluster-tests/test_ipam_cli.sh. */
#include "ctl_test.h"
#include "fake_agent.h"

/* No agent listens here: a command that gets past its own checks fails to connect (exit 1). */
#define NOSOCK "/nonexistent/ipam-test.sock"

/* Expect a value refused before anything was sent: status 2, exactly one line on stderr,
 * containing message, and no attempt to reach the agent. */
static void expect_bad_value(struct run r, const char *message)
{
	assert_int_equal(r.status, 2);
	assert_string_equal(r.out, "");
	assert_contains(r.err, message);
	assert_true(strncmp(r.err, "tabby ", 6) == 0);
	if (strchr(r.err, '\n') != r.err + strlen(r.err) - 1)
		fail_msg("expected one line, got:\n%s", r.err);
	run_free(&r);
}

/* Expect the command line to be accepted: the only failure is the absent agent. */
static void expect_sent(struct run r)
{
	if (r.status != 1 || strstr(r.err, "cannot connect to " NOSOCK) == NULL)
		fail_msg("expected an attempt to reach the agent, got status %d:\n%s", r.status,
		         r.err);
	assert_string_equal(r.out, "");
	run_free(&r);
}

static void test_help(void **state)
{
	static const char *const pool[] = {"add", "range", "remove", "show", NULL};
	static const char *const ipam[] = {"assign", "release", "show", "check", "config", NULL};
	static const char *const add[] = {
	    "--block-size N", "--ipip[=MODE]", "--vxlan MODE",        "--nat-outgoing",
	    "--disabled",     "--socket PATH", "-o, --output FORMAT", NULL};
	static const char *const remove[] = {"--force", "--socket PATH", NULL};
	static const char *const pshow[] = {"--ipv4", "--ipv6", "-o, --output FORMAT", NULL};
	static const char *const assign[] = {"--node NAME",      "--handle H", "--ip ADDR",
	                                     "--ipv4 N",         "--ipv6 N",   "--pool CIDR",
	                                     "--attr KEY=VALUE", "repeatable", NULL};
	static const char *const release[] = {"--handle H", "--ip ADDR", "--gen N", NULL};
	static const char *const ishow[] = {"--ip ADDR", "--blocks", "-o, --output FORMAT", NULL};
	static const char *const check[] = {"--socket PATH", "exits 1", NULL};
	static const char *const config[] = {"--strict-affinity BOOL", NULL};
	(void)state;

	expect_help(RUN("pool", "--help"), "Usage: tabby pool COMMAND", pool);
	expect_help(RUN("help", "pool"), "Usage: tabby pool COMMAND", pool);
	expect_help(RUN("ipam", "-h"), "Usage: tabby ipam COMMAND", ipam);
	expect_help(RUN("pool", "add", "--help"), "Usage: tabby pool add CIDR... [flags]", add);
	expect_help(RUN("pool", "remove", "-h"), "Usage: tabby pool remove CIDR... [flags]",
	            remove);
	expect_help(RUN("help", "pool", "show"), "Usage: tabby pool show [flags]", pshow);
	expect_help(RUN("pool", "range", "--help"), "Usage: tabby pool range COMMAND",
	            (const char *const[]){"add", NULL});
	expect_help(RUN("pool", "range", "add", "--help"), "Usage: tabby pool range add START END",
	            add);
	expect_help(RUN("ipam", "assign", "--help"),
	            "Usage: tabby ipam assign --node NAME --handle H [flags]", assign);
	expect_help(RUN("ipam", "release", "--help"),
	            "Usage: tabby ipam release (--handle H | --ip ADDR [--gen N]) [flags]",
	            release);
	expect_help(RUN("ipam", "show", "--help"), "Usage: tabby ipam show [flags]", ishow);
	expect_help(RUN("ipam", "check", "--help"), "Usage: tabby ipam check [flags]", check);
	expect_help(RUN("help", "ipam", "config"), "Usage: tabby ipam config [flags]", config);
	/* --help needs none of the required arguments and wins over a bad value before it. */
	expect_help(RUN("pool", "add", "--ipip", "bogus", "--help"), "Usage: tabby pool add", add);
	expect_help(RUN("ipam", "assign", "-h"), "Usage: tabby ipam assign", assign);
}

static void test_pool_command_line(void **state)
{
	(void)state;

	expect_usage_error(RUN("pool"), "tabby pool: missing command");
	expect_usage_error(RUN("pool", "list"), "tabby pool: unknown command 'list'");
	expect_usage_error(RUN("pool", "add"), "tabby pool add: missing CIDR");
	expect_usage_error(RUN("pool", "remove", "--force"), "tabby pool remove: missing CIDR");
	expect_usage_error(RUN("pool", "add", "10.0.0.0/16", "--bogus"),
	                   "tabby pool add: unknown flag '--bogus'");
	expect_usage_error(RUN("pool", "add", "10.0.0.0/16", "--ipip=sometimes"),
	                   "tabby pool add: invalid value 'sometimes' for --ipip (want never, "
	                   "always or cross-subnet)");
	/* Only a flag with no value at all is always: "--ipip=" names an empty mode. */
	expect_usage_error(RUN("pool", "add", "10.0.0.0/16", "--ipip="),
	                   "tabby pool add: invalid value '' for --ipip");
	/* A word after --ipip that is no mode is not its value (calicoctl 0.x's --ipip took
	 * none). */
	expect_usage_error(RUN("pool", "add", "10.0.0.0/16", "--ipip", "sometimes"),
	                   "tabby pool add: \"sometimes\" is not a CIDR");
	expect_usage_error(RUN("pool", "add", "10.0.0.0/16", "--vxlan=yes"),
	                   "invalid value 'yes' for --vxlan");
	expect_usage_error(RUN("pool", "add", "10.0.0.0/16", "--block-size", "0"),
	                   "invalid value '0' for --block-size");
	expect_usage_error(RUN("pool", "add", "10.0.0.0/16", "--block-size", "300"),
	                   "invalid value '300' for --block-size");
	expect_usage_error(RUN("pool", "add", "10.0.0.0/16", "--nat-outgoing=true"),
	                   "flag '--nat-outgoing' takes no value");
	expect_usage_error(RUN("pool", "show", "--ipv4", "--ipv6"),
	                   "tabby pool show: use --ipv4 or --ipv6, not both");
	expect_usage_error(RUN("pool", "show", "10.0.0.0/16"),
	                   "tabby pool show: unexpected argument '10.0.0.0/16'");
	expect_usage_error(RUN("pool", "remove", "10.0.0.0/16", "--ipip", "always"),
	                   "tabby pool remove: unknown flag '--ipip'");
}

/* Every CIDR is checked before anything is sent: one bad CIDR among good ones stops the
 * command with one line that names it. */
static void test_pool_bad_cidrs(void **state)
{
	(void)state;

	expect_bad_value(RUN("pool", "add", "10.0.0.0/16", "10.1.0.1/16", "--socket", NOSOCK),
	                 "tabby pool add: 10.1.0.1/16");
	expect_bad_value(RUN("pool", "add", "10.0.0.0/16", "10.0.0.0/33", "--socket", NOSOCK),
	                 "10.0.0.0/33");
	expect_bad_value(RUN("pool", "add", "pool-a", "--socket", NOSOCK), "pool-a");
	expect_bad_value(RUN("pool", "add", "10.0.0.0", "--socket", NOSOCK), "10.0.0.0");
	/* Smaller than one block. Without --block-size, only the agent knows whether the pool
	 * exists and keeps its block size or is new and gets the default. */
	expect_bad_value(RUN("pool", "add", "10.0.0.0/16", "10.9.0.0/27", "--block-size", "26",
	                     "--socket", NOSOCK),
	                 "10.9.0.0/27");
	expect_sent(RUN("pool", "add", "10.9.0.0/27", "--disabled", "--socket", NOSOCK));
	expect_bad_value(
	    RUN("pool", "add", "10.0.0.0/24", "--block-size", "20", "--socket", NOSOCK),
	    "10.0.0.0/24");
	expect_bad_value(RUN("pool", "add", "fd00::/64", "--block-size", "26", "--socket", NOSOCK),
	                 "fd00::/64");
	expect_bad_value(RUN("pool", "add", "169.254.0.0/16", "--socket", NOSOCK),
	                 "169.254.0.0/16");
	expect_bad_value(RUN("pool", "add", "fe80::/64", "--socket", NOSOCK), "fe80::/64");
	expect_bad_value(
	    RUN("pool", "add", "10.0.0.0/16", "fd00::/64", "--ipip", "always", "--socket", NOSOCK),
	    "fd00::/64");
	/* Overlapping each other. */
	expect_bad_value(RUN("pool", "add", "10.0.0.0/16", "10.0.128.0/17", "--socket", NOSOCK),
	                 "tabby pool add: 10.0.128.0/17 overlaps 10.0.0.0/16, also given");
	expect_bad_value(RUN("pool", "add", "fd00::/64", "fd00::/64", "--socket", NOSOCK),
	                 "tabby pool add: fd00::/64 is given twice");
	expect_bad_value(RUN("pool", "remove", "10.0.0.0/16", "10.0.0.1/16", "--socket", NOSOCK),
	                 "tabby pool remove: 10.0.0.1/16");

	/* Good ones get as far as the agent. */
	expect_sent(
	    RUN("pool", "add", "10.0.0.0/16", "fd00::/64", "10.1.0.0/26", "--socket", NOSOCK));
	expect_sent(RUN("pool", "add", "10.0.0.0/16", "--ipip", "CrossSubnet", "--vxlan", "never",
	                "--nat-outgoing", "--disabled", "--block-size", "24", "--socket", NOSOCK));
	expect_sent(
	    RUN("pool", "remove", "10.0.0.0/16", "fd00::/64", "--force", "--socket", NOSOCK));
	expect_sent(RUN("pool", "show", "--ipv6", "-o", "json", "--socket", NOSOCK));
}

/* The one request of a command run against f: accepted, printing nothing, and the body is
 * want (JSON text). Stops f. */
static void expect_body(struct fake *f, struct run r, const char *method, const char *url,
                        const char *want)
{
	if (r.status != 0)
		fail_msg("expected success, got status %d:\n%s", r.status, r.err);
	assert_string_equal(r.out, "");
	run_free(&r);
	expect_request(f, 0, method, url);
	expect_json(f->body[0], want);
	fake_stop(f, 1);
}

/* calicoctl 0.x's --ipip took no value and meant always; a mode after it is its value. */
static void test_pool_ipip(void **state)
{
	static const struct answer added[] = {{200, "{\"pools\": []}"}};
	struct fake *f;
	(void)state;

	f = fake_start(added, 1);
	expect_body(
	    f, RUN("pool", "add", "10.0.0.0/16", "--ipip", "--nat-outgoing", "--socket", f->path),
	    "POST", "/v1/ippools",
	    "{\"pools\": [{\"cidr\": \"10.0.0.0/16\", \"ipip\": \"always\", \"vxlan\": "
	    "\"never\", \"nat_outgoing\": true, \"disabled\": false}]}");
	f = fake_start(added, 1);
	expect_body(f, RUN("pool", "add", "--ipip", "10.0.0.0/16", "--socket", f->path), "POST",
	            "/v1/ippools",
	            "{\"pools\": [{\"cidr\": \"10.0.0.0/16\", \"ipip\": \"always\", \"vxlan\": "
	            "\"never\", \"nat_outgoing\": false, \"disabled\": false}]}");
	f = fake_start(added, 1);
	expect_body(
	    f,
	    RUN("pool", "add", "--ipip", "cross-subnet", "10.0.0.0/16", "10.1.0.0/16", "--socket",
	        f->path),
	    "POST", "/v1/ippools",
	    "{\"pools\": [{\"cidr\": \"10.0.0.0/16\", \"ipip\": \"cross-subnet\", \"vxlan\": "
	    "\"never\", \"nat_outgoing\": false, \"disabled\": false}, {\"cidr\": "
	    "\"10.1.0.0/16\", \"ipip\": \"cross-subnet\", \"vxlan\": \"never\", "
	    "\"nat_outgoing\": false, \"disabled\": false}]}");
	f = fake_start(added, 1);
	expect_body(f, RUN("pool", "add", "10.0.0.0/16", "--ipip=never", "--socket", f->path),
	            "POST", "/v1/ippools",
	            "{\"pools\": [{\"cidr\": \"10.0.0.0/16\", \"ipip\": \"never\", \"vxlan\": "
	            "\"never\", \"nat_outgoing\": false, \"disabled\": false}]}");
	/* Last: bare --ipip at the end of the line. */
	f = fake_start(added, 1);
	expect_body(f, RUN("pool", "add", "10.0.0.0/16", "--socket", f->path, "--ipip"), "POST",
	            "/v1/ippools",
	            "{\"pools\": [{\"cidr\": \"10.0.0.0/16\", \"ipip\": \"always\", \"vxlan\": "
	            "\"never\", \"nat_outgoing\": false, \"disabled\": false}]}");
}

static const char v4_pools[] =
    "{\"pools\": [{\"cidr\": \"192.168.0.0/16\", \"block_size\": 26, \"ipip\": \"never\", "
    "\"vxlan\": \"never\", \"nat_outgoing\": false, \"disabled\": false, \"removing\": false, "
    "\"node_selector\": \"all()\"}], \"items\": []}";

/* calicoctl 0.x's `pool range add`: the fewest CIDRs, each a new pool, created all or none. */
static void test_pool_range(void **state)
{
	static const struct answer ok[] = {
	    {200, v4_pools},
	    {200, "{\"results\": []}"},
	};
	static const struct answer touching[] = {{200, v4_pools}};
	struct fake *f;
	struct run r;
	(void)state;

	f = fake_start(ok, 2);
	r = RUN("pool", "range", "add", "10.0.0.0", "10.0.1.127", "--ipip", "--nat-outgoing",
	        "--socket", f->path);
	if (r.status != 0)
		fail_msg("expected success, got status %d:\n%s", r.status, r.err);
	assert_string_equal(r.out, "");
	run_free(&r);
	expect_request(f, 0, "GET", "/v1/ippools");
	expect_request(f, 1, "POST", "/v1/resources");
	expect_json(f->body[1],
	            "{\"op\": \"create\", \"resources\": ["
	            "{\"apiVersion\": \"v1\", \"kind\": \"ipPool\", \"metadata\": {\"cidr\": "
	            "\"10.0.0.0/24\"}, \"spec\": {\"ipip\": {\"enabled\": true, \"mode\": "
	            "\"always\"}, \"nat-outgoing\": true, \"disabled\": false}},"
	            "{\"apiVersion\": \"v1\", \"kind\": \"ipPool\", \"metadata\": {\"cidr\": "
	            "\"10.0.1.0/25\"}, \"spec\": {\"ipip\": {\"enabled\": true, \"mode\": "
	            "\"always\"}, \"nat-outgoing\": true, \"disabled\": false}}]}");
	fake_stop(f, 2);

	/* IPv6, with a block size. */
	f = fake_start(ok, 2);
	r = RUN("pool", "range", "add", "fd00::", "fd00::1:ff", "--block-size", "120", "--socket",
	        f->path);
	assert_int_equal(r.status, 0);
	run_free(&r);
	expect_json(f->body[1],
	            "{\"op\": \"create\", \"resources\": ["
	            "{\"apiVersion\": \"v1\", \"kind\": \"ipPool\", \"metadata\": {\"cidr\": "
	            "\"fd00::/112\"}, \"spec\": {\"nat-outgoing\": false, \"disabled\": false, "
	            "\"blockSize\": 120}},"
	            "{\"apiVersion\": \"v1\", \"kind\": \"ipPool\", \"metadata\": {\"cidr\": "
	            "\"fd00::1:0/120\"}, \"spec\": {\"nat-outgoing\": false, \"disabled\": false, "
	            "\"blockSize\": 120}}]}");
	fake_stop(f, 2);

	/* A range that touches an existing pool adds nothing. */
	f = fake_start(touching, 1);
	r = RUN("pool", "range", "add", "192.167.255.0", "192.168.0.255", "--socket", f->path);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.err, "tabby pool range add: Cannot add range - range conflicts with "
	                           "pool 192.168.0.0/16\n");
	run_free(&r);
	fake_stop(f, 1);

	/* Refused before anything is sent. */
	expect_bad_value(RUN("pool", "range", "add", "10.0.0.0", "10.0.0.100", "--socket", NOSOCK),
	                 "tabby pool range add: range 10.0.0.0-10.0.0.100: pool 10.0.0.64/27 is "
	                 "too small");
	expect_bad_value(RUN("pool", "range", "add", "10.0.0.0", "10.0.0.255", "--block-size", "16",
	                     "--socket", NOSOCK),
	                 "block size 16 is out of range");
	expect_bad_value(
	    RUN("pool", "range", "add", "fd00::", "fd00::ffff", "--ipip", "--socket", NOSOCK),
	    "IP in IP is not supported for IPv6 pools");
	expect_bad_value(RUN("pool", "range", "add", "10.0.0.0", "10.0.0.300", "--socket", NOSOCK),
	                 "tabby pool range add: '10.0.0.300' is not an IP address");
	expect_usage_error(RUN("pool", "range", "add", "10.0.1.0", "10.0.0.0"),
	                   "tabby pool range add: the range is empty: 10.0.1.0 is above 10.0.0.0");
	expect_usage_error(RUN("pool", "range", "add", "10.0.0.0", "fd00::"),
	                   "10.0.0.0 and fd00:: are not of one family");
	expect_usage_error(RUN("pool", "range", "add", "10.0.0.0"), "missing END");
	expect_usage_error(RUN("pool", "range", "add", "10.0.0.0", "10.0.0.255", "10.0.1.0"),
	                   "unexpected argument '10.0.1.0'");
}

static void test_ipam_command_line(void **state)
{
	(void)state;

	expect_usage_error(RUN("ipam"), "tabby ipam: missing command");
	expect_usage_error(RUN("ipam", "assign", "--handle", "h"),
	                   "tabby ipam assign: missing --node");
	expect_usage_error(RUN("ipam", "assign", "--node", "n"),
	                   "tabby ipam assign: missing --handle");
	expect_usage_error(RUN("ipam", "assign", "--node", "n", "--handle", "h", "--bogus"),
	                   "tabby ipam assign: unknown flag '--bogus'");
	expect_usage_error(RUN("ipam", "assign", "--node", "n", "--handle", "h", "extra"),
	                   "tabby ipam assign: unexpected argument 'extra'");
	expect_usage_error(RUN("ipam", "assign", "--node", "n", "--handle", "h", "--ip", "10.0.0.1",
	                       "--ipv4", "1"),
	                   "tabby ipam assign: use --ip or --ipv4/--ipv6, not both");
	expect_usage_error(
	    RUN("ipam", "assign", "--node", "n", "--handle", "h", "--ip", "fd00::1", "--ipv6", "0"),
	    "use --ip or --ipv4/--ipv6, not both");
	expect_usage_error(RUN("ipam", "assign", "--node", "n", "--handle", "h", "--ip", "10.0.0.1",
	                       "--pool", "10.0.0.0/16"),
	                   "it does not go with --ip");
	expect_usage_error(
	    RUN("ipam", "assign", "--node", "n", "--handle", "h", "--ipv4", "0", "--ipv6", "0"),
	    "nothing to assign");
	expect_usage_error(RUN("ipam", "assign", "--node", "n", "--handle", "h", "--ipv4", "-1"),
	                   "invalid value '-1' for --ipv4");
	expect_usage_error(RUN("ipam", "assign", "--node", "n", "--handle", "h", "--ipv6", "300"),
	                   "at most 256 addresses");
	expect_usage_error(RUN("ipam", "assign", "--node", "n", "--handle", "h", "--attr", "k"),
	                   "invalid value 'k' for --attr (want KEY=VALUE)");
	expect_usage_error(RUN("ipam", "assign", "--node", "n", "--handle", "h", "--attr", "=v"),
	                   "invalid value '=v' for --attr");
	expect_usage_error(
	    RUN("ipam", "assign", "--node", "n", "--handle", "h", "--attr", "k=1", "--attr", "k=2"),
	    "--attr k is given twice");
	expect_bad_value(RUN("ipam", "assign", "--node", "n", "--handle", "h", "--ip", "10.0.0.300",
	                     "--socket", NOSOCK),
	                 "tabby ipam assign: '10.0.0.300' is not an IP address");
	expect_bad_value(RUN("ipam", "assign", "--node", "n", "--handle", "h", "--pool",
	                     "10.0.0.0/16", "--pool", "10.1.0.1/16", "--socket", NOSOCK),
	                 "tabby ipam assign: --pool 10.1.0.1/16");

	expect_usage_error(RUN("ipam", "release"), "tabby ipam release: missing --handle or --ip");
	expect_usage_error(RUN("ipam", "release", "--handle", "h", "--ip", "10.0.0.1"),
	                   "use --handle or --ip, not both");
	expect_usage_error(RUN("ipam", "release", "--handle", "h", "--gen", "5"),
	                   "--gen goes with --ip");
	expect_usage_error(RUN("ipam", "release", "--ip", "10.0.0.1", "--gen", "0"),
	                   "invalid value '0' for --gen");
	expect_bad_value(RUN("ipam", "release", "--ip", "nowhere", "--socket", NOSOCK),
	                 "'nowhere' is not an IP address");

	expect_usage_error(RUN("ipam", "show", "--ip", "10.0.0.1", "--blocks"),
	                   "tabby ipam show: use --ip or --blocks, not both");
	expect_bad_value(RUN("ipam", "show", "--ip", "10.0.0.0/24", "--socket", NOSOCK),
	                 "'10.0.0.0/24' is not an IP address");
	expect_usage_error(RUN("ipam", "check", "now"), "tabby ipam check: unexpected argument");
	expect_usage_error(RUN("ipam", "config", "--strict-affinity", "yes"),
	                   "invalid value 'yes' for --strict-affinity (want true or false)");
	expect_usage_error(RUN("ipam", "config", "--strict-affinity"),
	                   "flag '--strict-affinity' needs a value (BOOL)");

	expect_sent(RUN("ipam", "assign", "--node", "n", "--handle", "h", "--socket", NOSOCK));
	expect_sent(RUN("ipam", "assign", "--node", "n", "--handle", "h", "--ipv6", "2", "--pool",
	                "fd00::/64", "--pool", "10.0.0.0/16", "--attr", "a=", "--attr", "b=c=d",
	                "--socket", NOSOCK));
	expect_sent(RUN("ipam", "assign", "--node", "n", "--handle", "h", "--ip", "fd00::0:1",
	                "--socket", NOSOCK));
	expect_sent(RUN("ipam", "release", "--ip", "10.0.0.1", "--gen", "12", "--socket", NOSOCK));
	expect_sent(RUN("ipam", "release", "--handle", "h", "--socket", NOSOCK));
	expect_sent(RUN("ipam", "show", "--blocks", "--socket", NOSOCK));
	expect_sent(RUN("ipam", "check", "-o", "json", "--socket", NOSOCK));
	expect_sent(RUN("ipam", "config", "--strict-affinity", "false", "--socket", NOSOCK));
}

static void test_repeated_flags(void **state)
{
	const struct ctl_command *assign = find(&ctl_ipam_command, "assign");
	const struct ctl_command *add = find(&ctl_pool_command, "add");
	char *a1[] = {
	    "--pool", "10.0.0.0/16", "--attr=a=1", "--node", "n1",       "--pool=fd00::/64",
	    "--node", "n2",          "--attr",     "b=2",    "--handle", "h"};
	char *a2[] = {"10.0.0.0/16", "--nat-outgoing", "10.1.0.0/16", "--", "10.2.0.0/16"};
	char *many[CTL_MAX_REPEATS + 2];
	char *cidrs[CTL_MAX_ARGS + 1];
	struct ctl_ctx ctx;
	(void)state;

	parse(&ctx, assign, 12, a1, 0);
	assert_int_equal(ctx.nargs, 0);
	assert_string_equal(ctl_flag_nth(&ctx, "pool", 0), "10.0.0.0/16");
	assert_string_equal(ctl_flag_nth(&ctx, "pool", 1), "fd00::/64");
	assert_null(ctl_flag_nth(&ctx, "pool", 2));
	assert_string_equal(ctl_flag_nth(&ctx, "attr", 0), "a=1");
	assert_string_equal(ctl_flag_nth(&ctx, "attr", 1), "b=2");
	assert_null(ctl_flag_nth(&ctx, "attr", 2));
	/* ctl_flag() still gives the last value, of repeatable flags too. */
	assert_string_equal(ctl_flag(&ctx, "pool"), "fd00::/64");
	/* A flag that does not repeat keeps only its last value. */
	assert_string_equal(ctl_flag(&ctx, "node"), "n2");
	assert_null(ctl_flag_nth(&ctx, "node", 0));
	assert_null(ctl_flag_nth(&ctx, "ip", 0));

	/* A second parse starts from nothing. */
	parse(&ctx, assign, 2, (char *[]){"--node", "n"}, 0);
	assert_null(ctl_flag_nth(&ctx, "pool", 0));
	assert_int_equal(ctx.nrepeats, 0);

	/* Arguments that repeat: all of them, flags mixed in. */
	parse(&ctx, add, 5, a2, 0);
	assert_int_equal(ctx.nargs, 3);
	assert_string_equal(ctx.args[0], "10.0.0.0/16");
	assert_string_equal(ctx.args[1], "10.1.0.0/16");
	assert_string_equal(ctx.args[2], "10.2.0.0/16");
	assert_string_equal(ctl_flag(&ctx, "nat-outgoing"), "");

	/* Limits: refused with a message, not cut silently. */
	for (int i = 0; i < CTL_MAX_REPEATS + 1; i++)
		many[i] = "--attr=k=v";
	parse(&ctx, assign, CTL_MAX_REPEATS + 1, many, 2);
	parse(&ctx, assign, CTL_MAX_REPEATS, many, 0);
	assert_int_equal(ctx.nrepeats, CTL_MAX_REPEATS);
	for (int i = 0; i < CTL_MAX_ARGS + 1; i++)
		cidrs[i] = "10.0.0.0/8";
	parse(&ctx, add, CTL_MAX_ARGS + 1, cidrs, 2);
	parse(&ctx, add, CTL_MAX_ARGS, cidrs, 0);
	assert_int_equal(ctx.nargs, CTL_MAX_ARGS);
	/* --help after too many still shows the help. */
	cidrs[CTL_MAX_ARGS] = "--help";
	parse(&ctx, add, CTL_MAX_ARGS + 1, cidrs, 0);
	assert_true(ctx.help);
}

/* The text fn prints for the answer text, or NULL when fn refused it. */
static char *format(int (*fn)(FILE *, const json_t *), const char *text)
{
	json_t *answer = load(text);
	char *buf = NULL;
	size_t len;
	FILE *f = open_memstream(&buf, &len);
	int rv;

	assert_non_null(f);
	rv = fn(f, answer);
	fclose(f);
	json_decref(answer);
	if (rv != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static void expect_format(int (*fn)(FILE *, const json_t *), const char *answer, const char *want)
{
	char *got = format(fn, answer);

	assert_non_null(got);
	if (strcmp(got, want) != 0)
		fail_msg("expected:\n%s\ngot:\n%s", want, got);
	free(got);
}

static const char pools_answer[] =
    "{\"pools\": ["
    "{\"cidr\": \"10.1.0.0/16\", \"block_size\": 26, \"ipip\": \"always\", \"vxlan\": \"never\","
    " \"nat_outgoing\": true, \"disabled\": false, \"removing\": false,"
    " \"node_selector\": \"all()\"},"
    "{\"cidr\": \"192.168.0.0/16\", \"block_size\": 26, \"ipip\": \"never\", \"vxlan\": "
    "\"never\", \"nat_outgoing\": false, \"disabled\": false, \"removing\": false,"
    " \"node_selector\": \"all()\"},"
    "{\"cidr\": \"fd80:24e2:f998:72d6::/64\", \"block_size\": 122, \"ipip\": \"never\","
    " \"vxlan\": \"never\", \"nat_outgoing\": false, \"disabled\": false, \"removing\": false,"
    " \"node_selector\": \"all()\"},"
    "{\"cidr\": \"fd00:1::/48\", \"block_size\": 122, \"ipip\": \"never\","
    " \"vxlan\": \"cross-subnet\", \"nat_outgoing\": false, \"disabled\": false,"
    " \"removing\": false, \"node_selector\": \"\"}"
    "]}";

static const char table4[] = "+----------------+-------------------+\n"
                             "|   IPv4 CIDR    |      Options      |\n"
                             "+----------------+-------------------+\n"
                             "| 10.1.0.0/16    | ipip,nat-outgoing |\n"
                             "| 192.168.0.0/16 |                   |\n"
                             "+----------------+-------------------+\n";
static const char table6[] = "+--------------------------+--------------------+\n"
                             "|        IPv6 CIDR         |      Options       |\n"
                             "+--------------------------+--------------------+\n"
                             "| fd80:24e2:f998:72d6::/64 |                    |\n"
                             "| fd00:1::/48              | vxlan:cross-subnet |\n"
                             "+--------------------------+--------------------+\n";

static int pools_both(FILE *f, const json_t *a)
{
	return ctl_pool_table(f, a, true, true);
}

static int pools_v4(FILE *f, const json_t *a)
{
	return ctl_pool_table(f, a, true, false);
}

static int pools_v6(FILE *f, const json_t *a)
{
	return ctl_pool_table(f, a, false, true);
}

static void test_pool_table(void **state)
{
	char both[sizeof(table4) + sizeof(table6)];
	(void)state;

	snprintf(both, sizeof(both), "%s%s", table4, table6);
	expect_format(pools_both, pools_answer, both);
	expect_format(pools_v4, pools_answer, table4);
	expect_format(pools_v6, pools_answer, table6);
	/* A family without pools still gets its (empty) table, as prettytable printed it. */
	expect_format(pools_v6, "{\"pools\": []}",
	              "+-----------+---------+\n"
	              "| IPv6 CIDR | Options |\n"
	              "+-----------+---------+\n"
	              "+-----------+---------+\n");
	/* Every option, in the documented order; defaults left out. */
	expect_format(pools_v4,
	              "{\"pools\": [{\"cidr\": \"10.2.0.0/24\", \"block_size\": 28, \"ipip\": "
	              "\"cross-subnet\", \"vxlan\": \"always\", \"nat_outgoing\": true, "
	              "\"disabled\": true, \"removing\": true, \"node_selector\": \"rack == "
	              "'a'\"}]}",
	              "+-------------+-------------------------------------------------------"
	              "-----------------------------------------+\n"
	              "|  IPv4 CIDR  |                                            Options    "
	              "                                         |\n"
	              "+-------------+-------------------------------------------------------"
	              "-----------------------------------------+\n"
	              "| 10.2.0.0/24 | ipip:cross-subnet,vxlan,nat-outgoing,disabled,removing"
	              ",block-size:28,node-selector:rack == 'a' |\n"
	              "+-------------+-------------------------------------------------------"
	              "-----------------------------------------+\n");
	expect_format(pools_v6,
	              "{\"pools\": [{\"cidr\": \"fd00::/120\", \"block_size\": 124, \"ipip\": "
	              "\"never\", \"vxlan\": \"always\", \"nat_outgoing\": false, \"disabled\": "
	              "false, \"removing\": false, \"node_selector\": \"all()\"}]}",
	              "+------------+----------------------+\n"
	              "| IPv6 CIDR  |       Options        |\n"
	              "+------------+----------------------+\n"
	              "| fd00::/120 | vxlan,block-size:124 |\n"
	              "+------------+----------------------+\n");
	assert_null(format(pools_both, "{\"pool\": []}"));
	assert_null(format(pools_both, "[]"));
}

static void test_usage_table(void **state)
{
	(void)state;

	expect_format(ctl_ipam_usage_table,
	              "{\"pools\": [{\"cidr\": \"192.168.0.0/16\", \"total\": \"65536\", "
	              "\"in_use\": 3, \"blocks\": 1}, {\"cidr\": \"fd80:24e2:f998:72d6::/64\", "
	              "\"total\": \"18446744073709551616\", \"in_use\": 2, \"blocks\": 1}]}",
	              "POOL                      TOTAL                 IN USE  FREE\n"
	              "192.168.0.0/16            65536                 3       65533\n"
	              "fd80:24e2:f998:72d6::/64  18446744073709551616  2       "
	              "18446744073709551614\n");
	expect_format(ctl_ipam_usage_table, "{\"pools\": []}", "POOL  TOTAL  IN USE  FREE\n");
	/* A total that is no number leaves FREE unknown rather than wrong. */
	expect_format(
	    ctl_ipam_usage_table,
	    "{\"pools\": [{\"cidr\": \"10.0.0.0/8\", \"total\": \"lots\", \"in_use\": 1}]}",
	    "POOL        TOTAL  IN USE  FREE\n"
	    "10.0.0.0/8  lots   1       ?\n");
	assert_null(format(ctl_ipam_usage_table, "{}"));
}

static void test_blocks_table(void **state)
{
	(void)state;

	expect_format(ctl_ipam_blocks_table,
	              "{\"blocks\": [{\"cidr\": \"192.168.3.0/26\", \"pool\": \"192.168.0.0/16\", "
	              "\"affinity\": \"agent1\", \"size\": 64, \"used\": 3}, {\"cidr\": "
	              "\"10.9.0.0/26\", \"pool\": null, \"affinity\": null, \"size\": 64, "
	              "\"used\": 64}]}",
	              "BLOCK           POOL            AFFINITY  USED  SIZE  FULL%\n"
	              "192.168.3.0/26  192.168.0.0/16  agent1    3     64    4\n"
	              "10.9.0.0/26     -               none      64    64    100\n");
	expect_format(ctl_ipam_blocks_table, "{\"blocks\": []}",
	              "BLOCK  POOL  AFFINITY  USED  SIZE  FULL%\n");
	assert_null(format(ctl_ipam_blocks_table, "{\"blocks\": {}}"));
}

static void test_ip_text(void **state)
{
	(void)state;

	expect_format(ctl_ipam_ip_text, "{\"ip\": \"10.0.0.9\", \"assigned\": false}",
	              "10.0.0.9 is not assigned\n");
	expect_format(ctl_ipam_ip_text,
	              "{\"ip\": \"192.168.3.4\", \"assigned\": true, \"gen\": 123, \"handle\": "
	              "\"net.c1\", \"node\": \"agent1\", \"attrs\": {\"container\": \"c1\", "
	              "\"netns\": \"/run/netns/c1\"}, \"block\": \"192.168.3.0/26\", \"affinity\": "
	              "\"agent1\", \"time_ms\": 1700000000000}",
	              "192.168.3.4 is assigned\n"
	              "  handle: net.c1\n"
	              "  node: agent1\n"
	              "  block: 192.168.3.0/26 (affinity: agent1)\n"
	              "  generation: 123\n"
	              "  attributes: container=c1, netns=/run/netns/c1\n");
	expect_format(ctl_ipam_ip_text,
	              "{\"ip\": \"fd00::5\", \"assigned\": true, \"gen\": 7, \"handle\": \"h\", "
	              "\"node\": \"n3\", \"attrs\": {}, \"block\": \"fd00::/122\", \"affinity\": "
	              "null, \"time_ms\": 1}",
	              "fd00::5 is assigned\n"
	              "  handle: h\n"
	              "  node: n3\n"
	              "  block: fd00::/122 (affinity: none)\n"
	              "  generation: 7\n"
	              "  attributes: none\n");
	assert_null(format(ctl_ipam_ip_text, "{\"assigned\": false}"));
	assert_null(format(ctl_ipam_ip_text, "{\"ip\": \"10.0.0.1\"}"));
}

static void expect_sub(const char *a, uint64_t b, const char *want)
{
	char out[48];

	assert_true(ctl_decimal_sub(a, b, out, sizeof(out)));
	assert_string_equal(out, want);
}

static void test_decimal_sub(void **state)
{
	char small[4];
	char out[48];
	(void)state;

	expect_sub("65536", 3, "65533");
	expect_sub("100", 1, "99");
	expect_sub("5", 5, "0");
	expect_sub("0", 0, "0");
	expect_sub("18446744073709551615", UINT64_MAX, "0");
	expect_sub("18446744073709551616", 2, "18446744073709551614");
	/* 2^128, the size of ::/0. */
	expect_sub("340282366920938463463374607431768211456", 1,
	           "340282366920938463463374607431768211455");
	expect_sub("340282366920938463463374607431768211456", UINT64_MAX,
	           "340282366920938463444927863358058659841");
	assert_false(ctl_decimal_sub("5", 6, out, sizeof(out)));
	assert_false(ctl_decimal_sub("99", 100, out, sizeof(out)));
	assert_false(ctl_decimal_sub("12a", 1, out, sizeof(out)));
	assert_false(ctl_decimal_sub("-1", 0, out, sizeof(out)));
	assert_false(ctl_decimal_sub("", 0, out, sizeof(out)));
	assert_false(ctl_decimal_sub("12345", 1, small, sizeof(small)));
	assert_true(ctl_decimal_sub("123", 1, small, sizeof(small)));
	assert_string_equal(small, "122");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_help),           cmocka_unit_test(test_pool_command_line),
	    cmocka_unit_test(test_pool_bad_cidrs), cmocka_unit_test(test_ipam_command_line),
	    cmocka_unit_test(test_repeated_flags), cmocka_unit_test(test_pool_table),
	    cmocka_unit_test(test_usage_table),    cmocka_unit_test(test_blocks_table),
	    cmocka_unit_test(test_ip_text),        cmocka_unit_test(test_decimal_sub),
	    cmocka_unit_test(test_pool_ipip),      cmocka_unit_test(test_pool_range),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
