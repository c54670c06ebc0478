/* `tabby policy trace`: help, command-line mistakes (exit 2), offline traces with --file in text
 * and JSON (exit 0 whatever the verdict), traces that cannot be made (exit 1), and the text
 * printer on canned answers. The agent's side (POST /v1/policy/trace) is the same
 * policy_trace_request() and is exercised by the cluster tests. */
#include "ctl_test.h"

#include <unistd.h>

/* No agent listens here: a command that gets past its own checks fails to connect (exit 1). */
#define NOSOCK "/nonexistent/policy-test.sock"

/* The worked example of docs/policy.md, with the endpoints, a profile, nodes and an ipPool. */
static const char example_yaml[] =
    "apiVersion: v1\n"
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
    "      ports: [80]\n"
    "  egress:\n"
    "  - action: allow\n"
    "    protocol: tcp\n"
    "    destination:\n"
    "      selector: app == 'database'\n"
    "      ports: [6379]\n"
    "---\n"
    "apiVersion: v1\n"
    "kind: policy\n"
    "metadata:\n"
    "  name: database-policy\n"
    "spec:\n"
    "  order: 60\n"
    "  selector: app == 'database'\n"
    "  ingress:\n"
    "  - action: log\n"
    "  - action: allow\n"
    "    protocol: tcp\n"
    "    source:\n"
    "      selector: app == 'frontend'\n"
    "    destination:\n"
    "      ports: [6379]\n"
    "---\n"
    "apiVersion: v1\n"
    "kind: profile\n"
    "metadata:\n"
    "  name: calico\n"
    "  tags: [calico]\n"
    "spec:\n"
    "  ingress:\n"
    "  - action: allow\n"
    "    source:\n"
    "      tag: calico\n"
    "  egress:\n"
    "  - action: allow\n"
    "---\n"
    "- apiVersion: v1\n"
    "  kind: workloadEndpoint\n"
    "  metadata: {name: eth0, workload: web-1, orchestrator: cni, node: host-1,\n"
    "             labels: {app: frontend}}\n"
    "  spec: {ipNetworks: [192.168.0.5/32, 'fd00::5/128'], profiles: [calico],\n"
    "         interfaceName: cali1}\n"
    "- apiVersion: v1\n"
    "  kind: workloadEndpoint\n"
    "  metadata: {name: eth0, workload: db-1, orchestrator: cni, node: host-2,\n"
    "             labels: {app: database}}\n"
    "  spec: {ipNetworks: [192.168.0.9/32], profiles: [gone, calico], interfaceName: cali2}\n"
    "- apiVersion: v1\n"
    "  kind: node\n"
    "  metadata: {name: host-1}\n"
    "  spec: {bgp: {ipv4Address: 10.0.7.1/24}}\n"
    "- apiVersion: v1\n"
    "  kind: node\n"
    "  metadata: {name: host-2}\n"
    "  spec: {bgp: {ipv4Address: 10.0.7.2/24}}\n"
    "- apiVersion: v1\n"
    "  kind: ipPool\n"
    "  metadata: {cidr: 192.168.0.0/16}\n"
    "  spec: {nat-outgoing: true}\n";

static char example_path[64];

static void temp_file(char *path, size_t size, const char *text)
{
	int fd;

	snprintf(path, size, "/tmp/tabby-policy-test-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static int setup(void **state)
{
	(void)state;
	temp_file(example_path, sizeof(example_path), example_yaml);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(example_path);
	return 0;
}

/* Expect exit 0, nothing on stderr, and out to be exactly want. */
static void expect_out(struct run r, const char *want)
{
	if (r.status != 0 || strcmp(r.out, want) != 0 || r.err[0] != '\0')
		fail_msg("expected status 0 and:\n%s\ngot status %d:\n%s\nstderr:\n%s", want,
		         r.status, r.out, r.err);
	run_free(&r);
}

/* Expect a failure (status 1) with exactly one line on stderr containing want. */
static void expect_failed(struct run r, const char *want)
{
	if (r.status != 1 || strstr(r.err, want) == NULL)
		fail_msg("expected status 1 and \"%s\", got status %d:\n%s", want, r.status, r.err);
	assert_string_equal(r.out, "");
	if (strchr(r.err, '\n') != r.err + strlen(r.err) - 1)
		fail_msg("expected one line, got:\n%s", r.err);
	run_free(&r);
}

static void test_help(void **state)
{
	static const char *const group[] = {"trace", NULL};
	static const char *const trace[] = {"--from SRC",      "--to DST",      "--protocol P",
	                                    "--port N",        "--src-port N",  "--icmp-type T",
	                                    "--icmp-code C",   "--reply",       "-6, --ipv6",
	                                    "-f, --file FILE", "--socket PATH", NULL};
	static const char *const top[] = {"policy", NULL};
	(void)state;

	expect_help(RUN("--help"), "Usage: tabby COMMAND", top);
	expect_help(RUN("policy", "--help"), "Usage: tabby policy COMMAND", group);
	expect_help(RUN("policy", "trace", "--help"),
	            "Usage: tabby policy trace --from SRC --to DST --protocol P [flags]", trace);
	expect_help(RUN("help", "policy", "trace"), "Usage: tabby policy trace", trace);
}

static void test_command_line(void **state)
{
	(void)state;

	expect_usage_error(RUN("policy"), "tabby policy: missing command");
	expect_usage_error(RUN("policy", "trace", "--to", "a", "--protocol", "tcp"),
	                   "tabby policy trace: missing --from");
	expect_usage_error(RUN("policy", "trace", "--from", "a", "--protocol", "tcp"),
	                   "missing --to");
	expect_usage_error(RUN("policy", "trace", "--from", "a", "--to", "b"),
	                   "missing --protocol");
	expect_usage_error(RUN("policy", "trace", "--from", "", "--to", "b", "--protocol", "tcp"),
	                   "empty value for --from");
	expect_usage_error(RUN("policy", "trace", "--from", "a", "--to", "b", "--protocol", "tcpx"),
	                   "invalid value 'tcpx' for --protocol");
	expect_usage_error(RUN("policy", "trace", "--from", "a", "--to", "b", "--protocol", "256"),
	                   "invalid value '256' for --protocol");
	expect_usage_error(RUN("policy", "trace", "--from", "a", "--to", "b", "--protocol", "tcp",
	                       "--port", "70000"),
	                   "invalid value '70000' for --port");
	expect_usage_error(RUN("policy", "trace", "--from", "a", "--to", "b", "--protocol", "tcp",
	                       "--port", "http"),
	                   "invalid value 'http' for --port");
	expect_usage_error(RUN("policy", "trace", "--from", "a", "--to", "b", "--protocol", "tcp",
	                       "--src-port", "0"),
	                   "invalid value '0' for --src-port");
	expect_usage_error(RUN("policy", "trace", "--from", "a", "--to", "b", "--protocol", "icmp",
	                       "--icmp-type", "256"),
	                   "invalid value '256' for --icmp-type");
	expect_usage_error(
	    RUN("policy", "trace", "--from", "a", "--to", "b", "--protocol", "tcp", "extra"),
	    "unexpected argument 'extra'");
	expect_usage_error(
	    RUN("policy", "trace", "--from", "a", "--to", "b", "--protocol", "tcp", "-o", "yaml"),
	    "invalid value 'yaml' for -o");
	expect_usage_error(
	    RUN("policy", "trace", "--from", "a", "--to", "b", "--protocol", "tcp", "--file", ""),
	    "empty value for --file");
	expect_usage_error(RUN("policy", "trace", "--bogus"), "unknown flag '--bogus'");
}

/* Without --file the request goes to the agent. */
static void test_sends_to_agent(void **state)
{
	struct run r;
	(void)state;

	r = RUN("policy", "trace", "--from", "web-1", "--to", "db-1", "--protocol", "TCP", "--port",
	        "6379", "--socket", NOSOCK);
	if (r.status != 1 || strstr(r.err, "cannot connect to " NOSOCK) == NULL)
		fail_msg("expected an attempt to reach the agent, got status %d:\n%s", r.status,
		         r.err);
	run_free(&r);
}

static void test_trace_file_text(void **state)
{
	(void)state;

	expect_out(RUN("policy", "trace", "--file", example_path, "--from", "web-1", "--to", "db-1",
	               "--protocol", "tcp", "--port", "6379"),
	           "verdict: ALLOW\n"
	           "flow: tcp 192.168.0.5:* -> 192.168.0.9:6379\n"
	           "\n"
	           "egress of cni/web-1/eth0 (node host-1, 192.168.0.5): allowed by policy "
	           "frontend-policy egress rule 0\n"
	           "  policy frontend-policy: allow (egress rule 0)\n"
	           "\n"
	           "ingress of cni/db-1/eth0 (node host-2, 192.168.0.9): allowed by policy "
	           "database-policy ingress rule 1\n"
	           "  policy database-policy: allow (ingress rule 1); logged by rule 0\n");

	expect_out(RUN("policy", "trace", "-f", example_path, "--from", "web-1/eth0", "--to",
	               "host-2/cni/db-1/eth0", "--protocol", "tcp", "--port", "22", "--src-port",
	               "5000"),
	           "verdict: DENY\n"
	           "flow: tcp 192.168.0.5:5000 -> 192.168.0.9:22\n"
	           "\n"
	           "egress of cni/web-1/eth0 (node host-1, 192.168.0.5): denied: policies "
	           "applied but none allowed or passed\n"
	           "  policy frontend-policy: no match\n"
	           "\n"
	           "ingress of cni/db-1/eth0 (node host-2, 192.168.0.9): denied: policies "
	           "applied but none allowed or passed\n"
	           "  policy database-policy: no match; logged by rule 0\n");

	/* Profiles, a missing one among them; a host; IPv6. */
	expect_out(RUN("policy", "trace", "-f", example_path, "--from", "host:host-1", "--to",
	               "db-1", "--protocol", "udp", "--port", "53"),
	           "verdict: DENY\n"
	           "flow: udp 10.0.7.1:* -> 192.168.0.9:53\n"
	           "\n"
	           "egress of node host-1 (10.0.7.1): not a workload endpoint (node host-1): not "
	           "policed\n"
	           "\n"
	           "ingress of cni/db-1/eth0 (node host-2, 192.168.0.9): denied: policies "
	           "applied but none allowed or passed\n"
	           "  policy database-policy: no match; logged by rule 0\n");
	expect_out(RUN("policy", "trace", "-f", example_path, "--from", "host:host-2", "--to",
	               "db-1", "--protocol", "icmp", "--icmp-type", "8", "--icmp-code", "0"),
	           "verdict: ALLOW\n"
	           "flow: icmp 10.0.7.2 -> 192.168.0.9 type 8 code 0\n"
	           "\n"
	           "egress of node host-2 (10.0.7.2): not a workload endpoint (node host-2): not "
	           "policed\n"
	           "\n"
	           "ingress of cni/db-1/eth0 (node host-2, 192.168.0.9): from its own host (node "
	           "host-2): not policed\n");
	expect_out(RUN("policy", "trace", "-f", example_path, "--from", "web-1", "--to", "fd00::99",
	               "--protocol", "58", "--icmp-type", "128"),
	           "verdict: DENY\n"
	           "flow: icmpv6 fd00::5 -> fd00::99 type 128\n"
	           "\n"
	           "egress of cni/web-1/eth0 (node host-1, fd00::5): denied: policies applied but "
	           "none allowed or passed\n"
	           "  policy frontend-policy: no match\n"
	           "\n"
	           "ingress of fd00::99: not a workload endpoint: not policed\n");
	expect_out(RUN("policy", "trace", "-f", example_path, "--from", "db-1", "--to", "8.8.8.8",
	               "--protocol", "47"),
	           "verdict: ALLOW\n"
	           "flow: protocol 47 192.168.0.9 -> 8.8.8.8\n"
	           "\n"
	           "egress of cni/db-1/eth0 (node host-2, 192.168.0.9): allowed by profile calico "
	           "egress rule 0\n"
	           "  profile gone: not found (matches nothing)\n"
	           "  profile calico: allow (egress rule 0)\n"
	           "\n"
	           "ingress of 8.8.8.8: not a workload endpoint: not policed\n");
}

/* --file - reads standard input. */
static void test_trace_stdin(void **state)
{
	struct run r;
	(void)state;

	assert_non_null(freopen(example_path, "r", stdin));
	r = RUN("policy", "trace", "-f", "-", "--from", "192.168.0.5", "--to", "192.168.0.9",
	        "--protocol", "tcp", "--port", "6379");
	assert_int_equal(r.status, 0);
	assert_string_equal(r.err, "");
	assert_contains(r.out, "verdict: ALLOW\n");
	run_free(&r);
	/* At its end now: a file without resources. */
	r = RUN("policy", "trace", "-f", "-", "--from", "192.168.0.5", "--to", "192.168.0.9",
	        "--protocol", "tcp");
	assert_int_equal(r.status, 1);
	assert_contains(r.err, "standard input");
	run_free(&r);
}

static void test_trace_file_reply(void **state)
{
	(void)state;

	expect_out(RUN("policy", "trace", "-f", example_path, "--from", "db-1", "--to", "web-1",
	               "--protocol", "tcp", "--src-port", "6379", "--port", "40000", "--reply"),
	           "verdict: ALLOW\n"
	           "flow: tcp 192.168.0.9:6379 -> 192.168.0.5:40000 (a reply)\n"
	           "opening packet: tcp 192.168.0.5:40000 -> 192.168.0.9:6379\n"
	           "\n"
	           "egress of cni/web-1/eth0 (node host-1, 192.168.0.5): reply of an allowed "
	           "connection (conntrack); opening packet: allowed by policy frontend-policy "
	           "egress rule 0\n"
	           "  policy frontend-policy: allow (egress rule 0)\n"
	           "\n"
	           "ingress of cni/db-1/eth0 (node host-2, 192.168.0.9): reply of an allowed "
	           "connection (conntrack); opening packet: allowed by policy database-policy "
	           "ingress rule 1\n"
	           "  policy database-policy: allow (ingress rule 1); logged by rule 0\n");
}

static void test_trace_file_json(void **state)
{
	struct run r;
	json_t *v;
	json_t *want;
	json_error_t e;
	(void)state;

	r = RUN("policy", "trace", "-f", example_path, "--from", "web-1", "--to", "db-1",
	        "--protocol", "tcp", "--port", "6379", "-o", "json");
	assert_int_equal(r.status, 0);
	assert_string_equal(r.err, "");
	v = json_loads(r.out, 0, &e);
	assert_non_null(v);
	want = json_loads(
	    "{\"verdict\": \"allow\", \"flow\": {\"src\": \"192.168.0.5\", \"dst\": "
	    "\"192.168.0.9\", \"protocol\": \"tcp\", \"port\": 6379, \"reply\": false},"
	    "\"egress\": {\"endpoint\": \"host-1/cni/web-1/eth0\", \"node\": null, \"policed\": "
	    "true, \"verdict\": \"allow\", \"reason\": \"allowed by policy frontend-policy egress "
	    "rule 0\", \"steps\": [{\"kind\": \"policy\", \"name\": \"frontend-policy\", "
	    "\"outcome\": \"allow\", \"rule\": 0, \"logged\": []}]},"
	    "\"ingress\": {\"endpoint\": \"host-2/cni/db-1/eth0\", \"node\": null, \"policed\": "
	    "true, \"verdict\": \"allow\", \"reason\": \"allowed by policy database-policy "
	    "ingress rule 1\", \"steps\": [{\"kind\": \"policy\", \"name\": \"database-policy\", "
	    "\"outcome\": \"allow\", \"rule\": 1, \"logged\": [0]}]}}",
	    0, &e);
	assert_non_null(want);
	if (!json_equal(v, want))
		fail_msg("got:\n%s", r.out);
	json_decref(v);
	json_decref(want);
	run_free(&r);

	/* -6 resolves in IPv6. */
	r = RUN("policy", "trace", "-f", example_path, "--from", "web-1", "--to", "fd00::1",
	        "--protocol", "tcp", "-6", "-ojson");
	assert_int_equal(r.status, 0);
	v = json_loads(r.out, 0, &e);
	assert_non_null(v);
	assert_string_equal(json_string_value(json_object_get(json_object_get(v, "flow"), "src")),
	                    "fd00::5");
	assert_string_equal(json_string_value(json_object_get(v, "verdict")), "deny");
	json_decref(v);
	run_free(&r);
}

static void test_trace_file_errors(void **state)
{
	char bad[64];
	(void)state;

	/* Endpoints that cannot be resolved: the trace fails (1), the command line was fine. */
	expect_failed(RUN("policy", "trace", "-f", example_path, "--from", "nobody", "--to", "db-1",
	                  "--protocol", "tcp"),
	              "tabby policy trace: from: nobody: no such");
	expect_failed(RUN("policy", "trace", "-f", example_path, "--from", "db-1", "--to", "web-1",
	                  "--protocol", "tcp", "-6"),
	              "from: db-1 has no IPv6 address");
	expect_failed(RUN("policy", "trace", "-f", example_path, "--from", "db-1", "--to", "web-1",
	                  "--protocol", "icmp", "--port", "80"),
	              "port: ports only go with tcp, udp, sctp or udplite");
	expect_failed(RUN("policy", "trace", "-f", "/nonexistent/policy.yaml", "--from", "a",
	                  "--to", "b", "--protocol", "tcp"),
	              "/nonexistent/policy.yaml: No such file or directory");

	/* A bad file is refused with where and why. */
	temp_file(bad, sizeof(bad), "kind: policy\nmetadata: [\n");
	expect_failed(
	    RUN("policy", "trace", "-f", bad, "--from", "a", "--to", "b", "--protocol", "tcp"),
	    bad);
	unlink(bad);
	temp_file(bad, sizeof(bad),
	          "apiVersion: v1\nkind: policy\nmetadata: {name: p}\nspec:\n  ingress:\n"
	          "  - action: allow\n    protocol: tcp\n    destination: {ports: [70000]}\n");
	expect_failed(
	    RUN("policy", "trace", "-f", bad, "--from", "a", "--to", "b", "--protocol", "tcp"),
	    "policy p: spec.ingress[0].destination.ports[0]");
	unlink(bad);
}

/* The text printer on answers it must refuse, and on one from an agent with no flow ports. */
static void test_text_printer(void **state)
{
	char *buf;
	size_t len;
	FILE *f;
	json_t *a;
	(void)state;

	f = open_memstream(&buf, &len);
	a = json_pack("{s:s}", "verdict", "allow");
	assert_int_equal(ctl_policy_trace_text(f, a), -1);
	json_decref(a);
	a = json_pack("{s:s, s:{s:s, s:s, s:s, s:b}, s:{}}", "verdict", "deny", "flow", "src",
	              "10.0.0.1", "dst", "10.0.0.2", "protocol", "tcp", "reply", 0, "egress");
	assert_int_equal(ctl_policy_trace_text(f, a), -1);
	json_decref(a);
	a = json_pack("{s:s, s:{s:s, s:s, s:s, s:b},"
	              " s:{s:n, s:s, s:b, s:s, s:s, s:[]},"
	              " s:{s:s, s:s, s:b, s:s, s:s, s:[{s:s, s:s, s:s, s:i, s:[]}]}}",
	              "verdict", "deny", "flow", "src", "10.0.0.1", "dst", "10.0.0.2", "protocol",
	              "tcp", "reply", 0, "egress", "endpoint", "node", "h", "policed", 0, "verdict",
	              "allow", "reason", "not a workload endpoint (node h): not policed", "steps",
	              "ingress", "endpoint", "h/eth0", "node", "h", "policed", 1, "verdict", "deny",
	              "reason", "denied by policy p ingress rule 3", "steps", "kind", "policy",
	              "name", "p", "outcome", "deny", "rule", 3, "logged");
	assert_non_null(a);
	assert_int_equal(ctl_policy_trace_text(f, a), 0);
	json_decref(a);
	fclose(f);
	assert_string_equal(buf, "verdict: DENY\n"
	                         "flow: tcp 10.0.0.1:* -> 10.0.0.2:*\n"
	                         "\n"
	                         "egress of node h (10.0.0.1): not a workload endpoint (node h): "
	                         "not policed\n"
	                         "\n"
	                         "ingress of host endpoint eth0 (node h, 10.0.0.2): denied by "
	                         "policy p ingress rule 3\n"
	                         "  policy p: deny (ingress rule 3)\n");
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_help),
	    cmocka_unit_test(test_command_line),
	    cmocka_unit_test(test_sends_to_agent),
	    cmocka_unit_test(test_trace_file_text),
	    cmocka_unit_test(test_trace_stdin),
	    cmocka_unit_test(test_trace_file_reply),
	    cmocka_unit_test(test_trace_file_json),
	    cmocka_unit_test(test_trace_file_errors),
	    cmocka_unit_test(test_text_printer),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
