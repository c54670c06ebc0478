/* The v1 resource commands of the CLI (`tabby create | apply | replace | delete | get`): help, the
 * command-line mistakes and bad files that are refused before anything is sent, and the output
 * of `get` from canned agent answers. What the agent answers is tested end to end by the cluster
 * tests. */
#include "ctl_test.h"

#include <errno.h>
#include <unistd.h>

/* No agent listens here: a command that gets past its own checks fails to connect (exit 1). */
#define NOSOCK "/nonexistent/resource-test.sock"

/* Expect the command line to be accepted: the only failure is the absent agent. */
static void expect_sent(struct run r)
{
	if (r.status != 1 || strstr(r.err, "cannot connect to " NOSOCK) == NULL)
		fail_msg("expected an attempt to reach the agent, got status %d:\n%s", r.status,
		         r.err);
	assert_string_equal(r.out, "");
	run_free(&r);
}

/* Expect a failure (status 1) with exactly the line want on stderr, nothing sent. */
static void expect_refused(struct run r, const char *want)
{
	if (r.status != 1 || strcmp(r.err, want) != 0)
		fail_msg("expected status 1 and:\n%s\ngot status %d:\n%s", want, r.status, r.err);
	assert_string_equal(r.out, "");
	run_free(&r);
}

/* A temporary file holding text; its path is written to path (PATH_MAX-ish). */
static void temp_file(char *path, size_t size, const char *text)
{
	int fd;

	snprintf(path, size, "/tmp/tabby-resource-test-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void test_help(void **state)
{
	static const char *const top[] = {"create", "apply",   "replace", "delete",
	                                  "get",    "profile", NULL};
	static const char *const file[] = {"-f, --filename FILE", "--socket PATH",
	                                   "-o, --output FORMAT", NULL};
	static const char *const del[] = {"-f, --filename FILE", "--node NODE", "--orchestrator O",
	                                  "--workload W", NULL};
	static const char *const get[] = {"--node NODE", "--orchestrator O", "--workload W",
	                                  "output format: ps (default), wide, yaml, json", NULL};
	(void)state;

	expect_help(RUN("--help"), "Usage: tabby COMMAND", top);
	expect_help(RUN("create", "--help"), "Usage: tabby create -f FILE [flags]", file);
	expect_help(RUN("apply", "-h"), "Usage: tabby apply -f FILE [flags]", file);
	expect_help(RUN("help", "replace"), "Usage: tabby replace -f FILE [flags]", file);
	expect_help(RUN("delete", "--help"), "Usage: tabby delete (-f FILE | KIND NAME) [flags]",
	            del);
	expect_help(RUN("get", "--help"), "Usage: tabby get KIND [NAME] [flags]", get);
	/* Other commands keep their text|json -o. */
	expect_help(RUN("store", "get", "--help"), "Usage: tabby store get KEY",
	            (const char *const[]){"output format: text (default) or json", NULL});
}

static void test_command_line(void **state)
{
	(void)state;

	expect_usage_error(RUN("apply"), "tabby apply: missing -f FILE (- for standard input)");
	expect_usage_error(RUN("create", "x.yaml"), "tabby create: unexpected argument 'x.yaml'");
	expect_usage_error(RUN("replace", "-f", "x.yaml", "extra"),
	                   "tabby replace: unexpected argument 'extra'");
	expect_usage_error(RUN("apply", "-f"), "tabby apply: flag '-f' needs a value (FILE)");
	expect_usage_error(RUN("apply", "-f", "x", "-o", "yaml"),
	                   "tabby apply: invalid value 'yaml' for -o (want text or json)");

	expect_usage_error(RUN("get"), "tabby get: missing KIND");
	expect_usage_error(RUN("get", "frob"), "tabby get: unknown resource kind 'frob'");
	expect_usage_error(RUN("get", "bgppeer"), "tabby get: bgpPeer resources are not supported");
	expect_usage_error(RUN("get", "bgpPeers", "x"), "bgpPeer resources are not supported");
	expect_usage_error(RUN("get", "policy", "a", "b"), "tabby get: unexpected argument 'b'");
	expect_usage_error(RUN("get", "policy", "-o", "text"),
	                   "tabby get: invalid value 'text' for -o (want ps, wide, yaml or json)");
	expect_usage_error(RUN("get", "profile", "--node", "n1"),
	                   "tabby get: --node does not apply to profile resources");
	expect_usage_error(RUN("get", "hep", "--workload", "w"),
	                   "--workload does not apply to hostEndpoint resources");
	expect_usage_error(RUN("get", "wep", "--node="), "tabby get: empty value for --node");
	/* The new -o values belong to get alone. */
	expect_usage_error(RUN("store", "get", "k", "-o", "wide"),
	                   "invalid value 'wide' for -o (want text or json)");

	expect_usage_error(RUN("delete"), "tabby delete: missing -f FILE or KIND NAME");
	expect_usage_error(RUN("delete", "policy"), "tabby delete: missing NAME");
	expect_usage_error(RUN("delete", "pols", "a", "b"),
	                   "tabby delete: unexpected argument 'b'");
	expect_usage_error(RUN("delete", "nope", "a"),
	                   "tabby delete: unknown resource kind 'nope'");
	expect_usage_error(RUN("delete", "bp", "10.0.0.1"), "bgpPeer resources are not supported");
	expect_usage_error(RUN("delete", "hep", "eth0"),
	                   "a hostEndpoint is named by --node NODE NAME or NODE/NAME");
	expect_usage_error(RUN("delete", "wep", "eth0", "--node", "n1"),
	                   "a workloadEndpoint is named by --node NODE --orchestrator O");
	expect_usage_error(RUN("delete", "wep", "n/o/w/e", "--node", "n1"),
	                   "a workloadEndpoint is named by");
	expect_usage_error(RUN("delete", "-f", "x", "--node", "n1"),
	                   "with -f the file names the resources");
	expect_usage_error(RUN("delete", "policy", "p", "--node", "n1"),
	                   "--node does not apply to policy resources");
}

/* Command lines that pass every check reach for the agent. */
static void test_accepted(void **state)
{
	char path[64];
	(void)state;

	temp_file(path, sizeof(path),
	          "apiVersion: v1\nkind: profile\nmetadata:\n  name: web\nspec:\n  ingress:\n"
	          "  - action: allow\n    source:\n      tag: web\n  egress:\n  - action: allow\n");
	expect_sent(RUN("apply", "-f", path, "--socket", NOSOCK));
	expect_sent(RUN("create", "--filename", path, "--socket", NOSOCK));
	expect_sent(RUN("replace", "-f", path, "--socket", NOSOCK));
	expect_sent(RUN("delete", "-f", path, "--socket", NOSOCK));
	unlink(path);

	/* calicoctl read every file as YAML: flow style, and JSON documents separated by "---". */
	temp_file(path, sizeof(path),
	          "[{apiVersion: v1, kind: profile, metadata: {name: a}},\n"
	          " {apiVersion: v1, kind: profile, metadata: {name: b}}]\n");
	expect_sent(RUN("apply", "-f", path, "--socket", NOSOCK));
	unlink(path);
	temp_file(
	    path, sizeof(path),
	    "{\"apiVersion\": \"v1\", \"kind\": \"profile\", \"metadata\": {\"name\": \"a\"}}\n"
	    "---\n"
	    "{\"apiVersion\": \"v1\", \"kind\": \"profile\", \"metadata\": {\"name\": \"b\"}}\n");
	expect_sent(RUN("create", "-f", path, "--socket", NOSOCK));
	unlink(path);

	expect_sent(RUN("get", "policy", "--socket", NOSOCK));
	expect_sent(RUN("get", "pol", "p1", "-o", "yaml", "--socket", NOSOCK));
	expect_sent(RUN("get", "profiles", "-o", "wide", "--socket", NOSOCK));
	expect_sent(RUN("get", "ipp", "10.0.0.0/16", "-ojson", "--socket", NOSOCK));
	expect_sent(RUN("get", "hep", "eth0", "--node", "n1", "--socket", NOSOCK));
	expect_sent(
	    RUN("get", "wep", "--node", "n1", "--orchestrator", "mesos", "--socket", NOSOCK));
	expect_sent(RUN("get", "nodes", "-o", "ps", "--socket", NOSOCK));
	expect_sent(RUN("delete", "policy", "p1", "--socket", NOSOCK));
	expect_sent(RUN("delete", "hep", "eth0", "--node", "n1", "--socket", NOSOCK));
	expect_sent(RUN("delete", "hep", "n1/eth0", "--socket", NOSOCK));
	expect_sent(RUN("delete", "wep", "eth0", "--node", "n1", "--orchestrator", "mesos",
	                "--workload", "task.1", "--socket", NOSOCK));
	expect_sent(RUN("delete", "wep", "n1/mesos/task.1/eth0", "--socket", NOSOCK));
}

/* A file that does not parse is refused with its line and column, before anything is sent. */
static void test_bad_files(void **state)
{
	char path[64];
	char want[512];
	(void)state;

	expect_refused(RUN("apply", "-f", "/nonexistent/x.yaml", "--socket", NOSOCK),
	               "tabby apply: cannot open /nonexistent/x.yaml: No such file or directory\n");

	temp_file(path, sizeof(path), "apiVersion: v1\nkind: [policy\n");
	{
		struct run r = RUN("apply", "-f", path, "--socket", NOSOCK);
		json_t *list = NULL;
		char why[256];
		const char *text = "apiVersion: v1\nkind: [policy\n";

		assert_int_equal(policy_doc_parse(text, strlen(text), &list, why, sizeof(why)),
		                 -EINVAL);
		assert_true(strncmp(why, "line ", 5) == 0);
		snprintf(want, sizeof(want), "tabby apply: %s: %s\n", path, why);
		expect_refused(r, want);
	}
	unlink(path);

	/* JSON too. */
	temp_file(path, sizeof(path), "{\"apiVersion\": \"v1\",\n \"kind\": \"policy\" \"x\"}\n");
	{
		struct run r = RUN("create", "-f", path, "--socket", NOSOCK);

		assert_int_equal(r.status, 1);
		snprintf(want, sizeof(want), "tabby create: %s: line 2, column ", path);
		assert_true(strncmp(r.err, want, strlen(want)) == 0);
		assert_null(strstr(r.err, "cannot connect"));
		run_free(&r);
	}
	unlink(path);

	temp_file(path, sizeof(path), "");
	snprintf(want, sizeof(want), "tabby apply: %s: no resources\n", path);
	expect_refused(RUN("apply", "-f", path, "--socket", NOSOCK), want);
	unlink(path);

	temp_file(path, sizeof(path), "---\n# nothing\n---\n");
	snprintf(want, sizeof(want), "tabby delete: %s: no resources\n", path);
	expect_refused(RUN("delete", "-f", path, "--socket", NOSOCK), want);
	unlink(path);
}

/* A resource that is not valid is refused with policy_resource_normalize()'s own message, before
 * anything is sent; the good resources before it do not matter (all or nothing). */
static void test_bad_resources(void **state)
{
	static const char *const files[] = {
	    "- apiVersion: v1\n  kind: profile\n  metadata: {name: ok}\n  spec: {}\n"
	    "- apiVersion: v1\n  kind: policy\n  metadata: {name: frontend-policy}\n"
	    "  spec:\n    ingress:\n    - action: allow\n      protocol: tcp\n"
	    "      destination: {ports: [70000]}\n",
	    "apiVersion: v1\nkind: policy\nmetadata: {name: p}\nspec: {selector: \"a ==\"}\n",
	    "apiVersion: v2\nkind: policy\nmetadata: {name: p}\n",
	    "apiVersion: v1\nkind: bgpPeer\nmetadata: {scope: global, peerIP: 10.0.0.1}\n"
	    "spec: {asNumber: 64512}\n",
	    "apiVersion: v1\nkind: profile\nmetadata: {name: p, colour: red}\nspec: {}\n",
	};
	char path[64];
	char want[1200];
	(void)state;

	for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
		json_t *list = NULL;
		json_t *n = NULL;
		char why[1024] = "";
		size_t i;
		int rv = 0;

		/* The message the module gives for the first bad resource. */
		assert_int_equal(
		    policy_doc_parse(files[f], strlen(files[f]), &list, why, sizeof(why)), 0);
		for (i = 0; i < json_array_size(list); i++) {
			rv = policy_resource_normalize(json_array_get(list, i), (unsigned)i, &n,
			                               why, sizeof(why));
			json_decref(n);
			n = NULL;
			if (rv != 0)
				break;
		}
		assert_int_equal(rv, -EINVAL);
		json_decref(list);

		temp_file(path, sizeof(path), files[f]);
		snprintf(want, sizeof(want), "tabby apply: %s\n", why);
		expect_refused(RUN("apply", "-f", path, "--socket", NOSOCK), want);
		snprintf(want, sizeof(want), "tabby delete: %s\n", why);
		expect_refused(RUN("delete", "-f", path, "--socket", NOSOCK), want);
		unlink(path);
	}
}

/* `-f -` reads standard input. */
static void test_stdin(void **state)
{
	static const char text[] = "kind: [\n";
	int fds[2];
	int saved = dup(0);
	struct run r;
	(void)state;

	assert_true(saved >= 0);
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(write(fds[1], text, strlen(text)), (ssize_t)strlen(text));
	close(fds[1]);
	assert_int_equal(dup2(fds[0], 0), 0);
	close(fds[0]);
	clearerr(stdin);
	r = RUN("apply", "-f", "-", "--socket", NOSOCK);
	dup2(saved, 0);
	close(saved);
	clearerr(stdin);
	assert_int_equal(r.status, 1);
	assert_true(strncmp(r.err, "tabby apply: stdin: line ", 25) == 0);
	assert_null(strstr(r.err, "cannot connect"));
	run_free(&r);
}

static void expect_success_line(const char *verb, const char *list, const char *want)
{
	json_t *v = json_loads(list, 0, NULL);
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	assert_non_null(v);
	assert_non_null(f);
	ctl_resource_success(f, verb, v);
	fclose(f);
	assert_string_equal(out, want);
	free(out);
	json_decref(v);
}

static void test_success_line(void **state)
{
	(void)state;

	expect_success_line("applied", "[{\"kind\": \"policy\"}]",
	                    "Successfully applied 1 'policy' resource(s)\n");
	expect_success_line("created", "[{\"kind\": \"ipPool\"}, {\"kind\": \"ipPool\"}]",
	                    "Successfully created 2 'ipPool' resource(s)\n");
	expect_success_line("deleted",
	                    "[{\"kind\": \"policy\"}, {\"kind\": \"profile\"}, {\"kind\": "
	                    "\"policy\"}]",
	                    "Successfully deleted 3 resource(s)\n");
	expect_success_line("replaced", "[{\"kind\": \"node\"}, {\"kind\": \"node\"}, {}]",
	                    "Successfully replaced 3 resource(s)\n");
}

/* ctl_resource_print() of canned items (JSON text) into a string. */
static char *print_items(enum policy_kind kind, const char *items, const char *format, bool single)
{
	json_t *v = json_loads(items, 0, NULL);
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	if (v == NULL)
		fail_msg("bad test JSON: %s", items);
	assert_non_null(f);
	assert_int_equal(ctl_resource_print(f, kind, v, format, single), 0);
	fclose(f);
	json_decref(v);
	return out;
}

static void expect_print(enum policy_kind kind, const char *items, const char *format,
                         const char *want)
{
	char *out = print_items(kind, items, format, false);

	if (strcmp(out, want) != 0)
		fail_msg("expected:\n%s\ngot:\n%s", want, out);
	free(out);
}

static const char policies[] =
    "[{\"apiVersion\": \"v1\", \"kind\": \"policy\", \"metadata\": {\"name\": \"allow-db\"},"
    " \"spec\": {\"order\": 100, \"selector\": \"role == 'db'\", \"types\": [\"ingress\"],"
    " \"ingress\": [{\"action\": \"allow\"}], \"egress\": [], \"doNotTrack\": false,"
    " \"preDNAT\": false}},"
    " {\"apiVersion\": \"v1\", \"kind\": \"policy\", \"metadata\": {\"name\": \"b\"},"
    " \"spec\": {\"order\": 2.5, \"selector\": \"\", \"types\": [\"ingress\"],"
    " \"ingress\": [], \"egress\": [], \"doNotTrack\": false, \"preDNAT\": false}},"
    " {\"apiVersion\": \"v1\", \"kind\": \"policy\", \"metadata\": {\"name\": \"last\"},"
    " \"spec\": {\"selector\": \"all()\", \"types\": [\"ingress\"],"
    " \"ingress\": [], \"egress\": [], \"doNotTrack\": false, \"preDNAT\": false}}]";

static void test_tables(void **state)
{
	(void)state;

	expect_print(POLICY_KIND_POLICY, policies, "ps", "NAME\nallow-db\nb\nlast\n");
	expect_print(POLICY_KIND_POLICY, policies, "wide",
	             "NAME      ORDER  SELECTOR\n"
	             "allow-db  100    role == 'db'\n"
	             "b         2.5    \n"
	             "last             all()\n");
	expect_print(POLICY_KIND_POLICY, "[]", "ps", "NAME\n");
	expect_print(POLICY_KIND_POLICY, "[]", "wide", "NAME  ORDER  SELECTOR\n");

	expect_print(POLICY_KIND_PROFILE,
	             "[{\"kind\": \"profile\", \"metadata\": {\"name\": \"db\", \"labels\": "
	             "{\"role\": \"db\", \"tier\": \"back\"}, \"tags\": [\"db\", \"x\"]},"
	             " \"spec\": {\"ingress\": [], \"egress\": []}},"
	             " {\"kind\": \"profile\", \"metadata\": {\"name\": \"web\"},"
	             " \"spec\": {\"ingress\": [], \"egress\": []}}]",
	             "wide",
	             "NAME  TAGS  LABELS\n"
	             "db    db,x  role=db,tier=back\n"
	             "web         \n");

	expect_print(POLICY_KIND_IPPOOL,
	             "[{\"kind\": \"ipPool\", \"metadata\": {\"cidr\": \"10.0.0.0/16\"}, \"spec\":"
	             " {\"ipip\": {\"enabled\": true, \"mode\": \"cross-subnet\"},"
	             " \"nat-outgoing\": true, \"disabled\": false}},"
	             " {\"kind\": \"ipPool\", \"metadata\": {\"cidr\": \"fd00::/64\"}, \"spec\":"
	             " {\"nat-outgoing\": false, \"disabled\": true, \"blockSize\": 120}},"
	             " {\"kind\": \"ipPool\", \"metadata\": {\"cidr\": \"10.1.0.0/16\"}, \"spec\":"
	             " {\"ipip\": {\"enabled\": false, \"mode\": \"always\"},"
	             " \"nat-outgoing\": false, \"disabled\": false}}]",
	             "wide",
	             "CIDR         IPIP   IPIP-MODE     NAT    DISABLED  BLOCK-SIZE\n"
	             "10.0.0.0/16  true   cross-subnet  true   false     26\n"
	             "fd00::/64    false                false  true      120\n"
	             "10.1.0.0/16  false                false  false     26\n");
	expect_print(POLICY_KIND_IPPOOL,
	             "[{\"kind\": \"ipPool\", \"metadata\": {\"cidr\": \"10.0.0.0/16\"}, \"spec\":"
	             " {\"nat-outgoing\": false, \"disabled\": false}}]",
	             "ps", "CIDR\n10.0.0.0/16\n");

	expect_print(POLICY_KIND_HOSTENDPOINT,
	             "[{\"kind\": \"hostEndpoint\", \"metadata\": {\"name\": \"eth1\", \"node\":"
	             " \"agent-7\"}, \"spec\": {\"interfaceName\": \"eth1\", \"expectedIPs\":"
	             " [\"10.0.7.11\", \"fd00::7\"], \"profiles\": [\"host\", \"ssh\"]}},"
	             " {\"kind\": \"hostEndpoint\", \"metadata\": {\"name\": \"lo\", \"node\":"
	             " \"a\"}, \"spec\": {\"expectedIPs\": [\"10.0.0.1\"]}}]",
	             "wide",
	             "NODE     NAME  INTERFACE  IPS                PROFILES\n"
	             "agent-7  eth1  eth1       10.0.7.11,fd00::7  host,ssh\n"
	             "a        lo               10.0.0.1           \n");
	expect_print(POLICY_KIND_HOSTENDPOINT,
	             "[{\"kind\": \"hostEndpoint\", \"metadata\": {\"name\": \"eth1\", \"node\":"
	             " \"agent-7\"}, \"spec\": {\"interfaceName\": \"eth1\"}}]",
	             "ps", "NODE     NAME\nagent-7  eth1\n");

	expect_print(POLICY_KIND_WORKLOADENDPOINT,
	             "[{\"kind\": \"workloadEndpoint\", \"metadata\": {\"name\": \"eth0\","
	             " \"workload\": \"task.1\", \"orchestrator\": \"mesos\", \"node\": \"n1\"},"
	             " \"spec\": {\"ipNetworks\": [\"10.0.0.5/32\"], \"ipNATs\": [{\"internalIP\":"
	             " \"10.0.0.5\", \"externalIP\": \"172.16.0.5\"}], \"profiles\": [\"web\"],"
	             " \"interfaceName\": \"cali123\"}}]",
	             "wide",
	             "NODE  ORCHESTRATOR  WORKLOAD  NAME  NETWORKS     NATS                  "
	             "INTERFACE  PROFILES\n"
	             "n1    mesos         task.1    eth0  10.0.0.5/32  10.0.0.5->172.16.0.5  "
	             "cali123    web\n");
	expect_print(POLICY_KIND_WORKLOADENDPOINT,
	             "[{\"kind\": \"workloadEndpoint\", \"metadata\": {\"name\": \"eth0\","
	             " \"workload\": \"task.1\", \"orchestrator\": \"mesos\", \"node\": \"n1\"},"
	             " \"spec\": {\"ipNetworks\": [], \"interfaceName\": \"cali1\"}}]",
	             "ps",
	             "NODE  ORCHESTRATOR  WORKLOAD  NAME\n"
	             "n1    mesos         task.1    eth0\n");

	expect_print(
	    POLICY_KIND_NODE,
	    "[{\"kind\": \"node\", \"metadata\": {\"name\": \"agent-7\"}, \"spec\": {\"bgp\":"
	    " {\"asNumber\": 65001, \"ipv4Address\": \"10.0.7.11/24\", \"ipv6Address\":"
	    " \"fd00:7::11/64\"}}},"
	    " {\"kind\": \"node\", \"metadata\": {\"name\": \"b\"}, \"spec\": {}}]",
	    "wide",
	    "NAME     ASN      IPV4          IPV6\n"
	    "agent-7  65001    10.0.7.11/24  fd00:7::11/64\n"
	    "b        (64512)                \n");
	expect_print(POLICY_KIND_NODE, "[{\"kind\": \"node\", \"metadata\": {\"name\": \"b\"}}]",
	             "ps", "NAME\nb\n");
}

static void test_yaml_json(void **state)
{
	json_t *items = json_loads(policies, 0, NULL);
	json_t *back;
	char *want;
	char *out;
	char why[256];
	(void)state;

	assert_non_null(items);

	/* JSON: the list, or the one resource, indented, reading back as what was printed. */
	out = print_items(POLICY_KIND_POLICY, policies, "json", false);
	back = json_loads(out, 0, NULL);
	assert_non_null(back);
	assert_true(json_equal(back, items));
	assert_non_null(strstr(out, "\n  {\n    \"apiVersion\": \"v1\""));
	json_decref(back);
	free(out);
	out = print_items(POLICY_KIND_POLICY, policies, "json", true);
	back = json_loads(out, 0, NULL);
	assert_true(json_equal(back, json_array_get(items, 0)));
	json_decref(back);
	free(out);

	/* YAML: policy_doc_emit_yaml() of the same, which policy_doc_parse() reads back. */
	assert_int_equal(policy_doc_emit_yaml(items, &want), 0);
	out = print_items(POLICY_KIND_POLICY, policies, "yaml", false);
	assert_string_equal(out, want);
	assert_int_equal(policy_doc_parse(out, strlen(out), &back, why, sizeof(why)), 0);
	assert_true(json_equal(back, items));
	json_decref(back);
	free(out);
	free(want);

	assert_int_equal(policy_doc_emit_yaml(json_array_get(items, 0), &want), 0);
	out = print_items(POLICY_KIND_POLICY, policies, "yaml", true);
	assert_string_equal(out, want);
	assert_non_null(strstr(out, "kind: policy"));
	assert_null(strstr(out, "name: b\n"));
	free(out);
	free(want);

	json_decref(items);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_help),          cmocka_unit_test(test_command_line),
	    cmocka_unit_test(test_accepted),      cmocka_unit_test(test_bad_files),
	    cmocka_unit_test(test_bad_resources), cmocka_unit_test(test_stdin),
	    cmocka_unit_test(test_success_line),  cmocka_unit_test(test_tables),
	    cmocka_unit_test(test_yaml_json),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
