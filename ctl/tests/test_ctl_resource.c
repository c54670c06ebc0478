/* The v1 resource commands of the CLI (`tabby create | apply | replace | delete | get`): help, the
 * command-line mistakes and bad files that are refused before anything is sent, and the output
 * of `get` from canned agent answers. What the agent answers is tested end to end by the cluster
 * tests. */
#include "ctl_test.h"
#include "fake_agent.h"

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
	static const char *const create[] = {"-f, --filename FILE", "--skip-exists", NULL};
	static const char *const del[] = {"-f, --filename FILE",   "--node NODE",
	                                  "--orchestrator O",      "--workload W",
	                                  "-s, --skip-not-exists", NULL};
	static const char *const get[] = {"-f, --filename FILE",
	                                  "--node NODE",
	                                  "--orchestrator O",
	                                  "--workload W",
	                                  "output format: ps (default), wide, yaml, json",
	                                  NULL};
	(void)state;

	expect_help(RUN("--help"), "Usage: tabby COMMAND", top);
	expect_help(RUN("create", "--help"), "Usage: tabby create -f FILE [flags]", file);
	expect_help(RUN("create", "--help"), "Usage: tabby create -f FILE [flags]", create);
	expect_help(RUN("apply", "-h"), "Usage: tabby apply -f FILE [flags]", file);
	expect_help(RUN("help", "replace"), "Usage: tabby replace -f FILE [flags]", file);
	expect_help(RUN("delete", "--help"), "Usage: tabby delete (-f FILE | KIND NAME) [flags]",
	            del);
	expect_help(RUN("get", "--help"), "Usage: tabby get (KIND [NAME] | -f FILE) [flags]", get);
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
	expect_usage_error(RUN("get", "-f", "x", "policy"),
	                   "tabby get: with -f the file names the resources: no KIND or NAME "
	                   "('policy')");
	expect_usage_error(RUN("get", "-f", "x", "--workload", "w"),
	                   "with -f the file names the resources: no --node, --orchestrator");
	expect_usage_error(RUN("apply", "-f", "x", "--skip-exists"),
	                   "tabby apply: unknown flag '--skip-exists'");
	expect_usage_error(RUN("create", "-f", "x", "--skip-not-exists"),
	                   "tabby create: unknown flag '--skip-not-exists'");
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

/* ---- with a canned agent: get -f, create --skip-exists, delete --skip-not-exists ---- */

static const char two_profiles_and_policy[] =
    "- apiVersion: v1\n  kind: profile\n  metadata: {name: a}\n"
    "- apiVersion: v1\n  kind: profile\n  metadata: {name: b, labels: {x: y}}\n"
    "- apiVersion: v1\n  kind: policy\n  metadata: {name: p}\n  spec: {selector: all()}\n";
static const char profile_a[] =
    "{\"revision\": 3, \"resource\": {\"apiVersion\": \"v1\", \"kind\": \"profile\", "
    "\"metadata\": {\"name\": \"a\"}, \"spec\": {\"ingress\": [], \"egress\": []}}}";
static const char profile_b[] =
    "{\"revision\": 3, \"resource\": {\"apiVersion\": \"v1\", \"kind\": \"profile\", "
    "\"metadata\": {\"name\": \"b\", \"labels\": {\"x\": \"y\"}}, \"spec\": {\"ingress\": [], "
    "\"egress\": []}}}";
static const char policy_p[] =
    "{\"revision\": 3, \"resource\": {\"apiVersion\": \"v1\", \"kind\": \"policy\", "
    "\"metadata\": {\"name\": \"p\"}, \"spec\": {\"order\": 10, \"selector\": \"all()\", "
    "\"types\": [\"ingress\"], \"ingress\": [], \"egress\": [], \"doNotTrack\": false, "
    "\"preDNAT\": false}}}";
static const char missing_b[] =
    "{\"error\": {\"code\": \"not_found\", \"message\": \"profile b does not exist\"}}";
static const char missing_p[] =
    "{\"error\": {\"code\": \"not_found\", \"message\": \"policy p does not exist\"}}";

/* Run the CLI with these arguments against the fake agent f. */
#define RUN_AT(f, ...) RUN(__VA_ARGS__, "--socket", (f)->path)

static void expect_out(struct run r, int status, const char *out)
{
	if (r.status != status || strcmp(r.out, out) != 0)
		fail_msg("expected status %d and:\n%s\ngot status %d:\n%s\nstderr:\n%s", status,
		         out, r.status, r.out, r.err);
	run_free(&r);
}

/* get -f: the resources the file names; those that do not exist give no result. */
static void test_get_file(void **state)
{
	static const struct answer answers[] = {
	    {200, profile_a},
	    {404, missing_b},
	    {200, policy_p},
	};
	static const struct answer one[] = {{200, policy_p}};
	char path[64];
	char one_path[64];
	struct fake *f;
	(void)state;

	temp_file(path, sizeof(path), two_profiles_and_policy);
	f = fake_start(answers, 3);
	expect_out(RUN_AT(f, "get", "-f", path), 0, "NAME\na\n\nNAME\np\n");
	expect_request(f, 0, "GET", "/v1/profiles/a");
	expect_request(f, 1, "GET", "/v1/profiles/b");
	expect_request(f, 2, "GET", "/v1/policies/p");
	fake_stop(f, 3);

	f = fake_start(answers, 3);
	expect_out(
	    RUN_AT(f, "get", "-f", path, "-o", "wide"), 0,
	    "NAME  TAGS  LABELS\na           \n\nNAME  ORDER  SELECTOR\np     10     all()\n");
	fake_stop(f, 3);

	/* YAML and JSON: a list of what was found. */
	f = fake_start(answers, 3);
	{
		struct run r = RUN_AT(f, "get", "-f", path, "-o", "json");
		json_t *got = load(r.out);

		assert_int_equal(r.status, 0);
		expect_json(got,
		            "[{\"apiVersion\": \"v1\", \"kind\": \"profile\", \"metadata\": "
		            "{\"name\": \"a\"}, \"spec\": {\"ingress\": [], \"egress\": []}}, "
		            "{\"apiVersion\": \"v1\", \"kind\": \"policy\", \"metadata\": "
		            "{\"name\": \"p\"}, \"spec\": {\"order\": 10, \"selector\": "
		            "\"all()\", \"types\": [\"ingress\"], \"ingress\": [], \"egress\": "
		            "[], \"doNotTrack\": false, \"preDNAT\": false}}]");
		json_decref(got);
		run_free(&r);
	}
	fake_stop(f, 3);
	unlink(path);

	/* A file that names one resource: the resource itself, as with a NAME. */
	temp_file(one_path, sizeof(one_path),
	          "apiVersion: v1\nkind: policy\nmetadata: {name: p}\n"
	          "---\napiVersion: v1\nkind: policy\nmetadata: {name: p}\n");
	f = fake_start(one, 1);
	{
		struct run r = RUN_AT(f, "get", "-f", one_path, "-o", "json");
		json_t *got = load(r.out);

		assert_int_equal(r.status, 0);
		assert_string_equal(json_string_value(json_object_get(got, "kind")), "policy");
		json_decref(got);
		run_free(&r);
	}
	/* Named twice, asked once (the file names one resource). */
	fake_stop(f, 1);
	unlink(one_path);
}

/* A YAML number or boolean where a string is wanted is taken as its text, as calicoctl took it:
 * the agent, which has no texts, gets it quoted; the numbers of number fields stay numbers. */
static void test_yaml_numbers_as_text(void **state)
{
	static const struct answer applied[] = {
	    {200, "{\"revision\": 3, \"results\": [{\"kind\": \"profile\", \"key\": \"web\", "
	          "\"outcome\": \"created\"}]}"},
	};
	char path[64];
	struct fake *f;
	(void)state;

	temp_file(path, sizeof(path),
	          "apiVersion: v1\nkind: profile\nmetadata:\n  name: web\n"
	          "  labels: {version: 2, canary: true, tier: 1.10}\n"
	          "spec:\n  ingress:\n  - action: allow\n    protocol: 6\n"
	          "    destination: {ports: [80]}\n");
	f = fake_start(applied, 1);
	expect_out(RUN_AT(f, "apply", "-f", path), 0,
	           "Successfully applied 1 'profile' resource(s)\n");
	expect_json(
	    f->body[0],
	    "{\"op\": \"apply\", \"resources\": [{\"apiVersion\": \"v1\", \"kind\": "
	    "\"profile\", \"metadata\": {\"name\": \"web\", \"labels\": {\"version\": \"2\", "
	    "\"canary\": \"true\", \"tier\": \"1.10\"}}, \"spec\": {\"ingress\": [{\"action\": "
	    "\"allow\", \"protocol\": 6, \"destination\": {\"ports\": [80]}}]}}]}");
	fake_stop(f, 1);
	unlink(path);

	/* JSON numbers stay refused, before anything is sent. */
	temp_file(
	    path, sizeof(path),
	    "{\"apiVersion\": \"v1\", \"kind\": \"profile\", \"metadata\": {\"name\": \"web\", "
	    "\"labels\": {\"version\": 2}}}");
	expect_refused(
	    RUN("apply", "-f", path, "--socket", NOSOCK),
	    "tabby apply: profile web: metadata.labels.version: 2 is not a string (quote "
	    "it)\n");
	unlink(path);
}

/* create --skip-exists: what exists is skipped and counted as created. */
static void test_create_skip_exists(void **state)
{
	static const struct answer answers[] = {
	    {200, profile_a},
	    {404, missing_b},
	    {404, missing_p},
	    {200, "{\"revision\": 4, \"results\": [{\"kind\": \"profile\", \"key\": \"b\", "
	          "\"outcome\": \"created\"}, {\"kind\": \"policy\", \"key\": \"p\", \"outcome\": "
	          "\"created\"}]}"},
	};
	/* Someone creates b between the look and the request: look again. */
	static const struct answer race[] = {
	    {404, missing_b},
	    {409, "{\"error\": {\"code\": \"exists\", \"message\": \"profile b already exists\"}}"},
	    {200, profile_b},
	};
	static const struct answer all_exist[] = {{200, profile_a}, {200, profile_b}};
	char path[64];
	char b_path[64];
	char ab_path[64];
	struct fake *f;
	(void)state;

	temp_file(path, sizeof(path), two_profiles_and_policy);
	f = fake_start(answers, 4);
	expect_out(RUN_AT(f, "create", "-f", path, "--skip-exists"), 0,
	           "Successfully created 3 resource(s)\n");
	expect_request(f, 3, "POST", "/v1/resources");
	expect_json(
	    f->body[3],
	    "{\"op\": \"create\", \"resources\": [{\"apiVersion\": \"v1\", \"kind\": "
	    "\"profile\", \"metadata\": {\"name\": \"b\", \"labels\": {\"x\": \"y\"}}}, "
	    "{\"apiVersion\": \"v1\", \"kind\": \"policy\", \"metadata\": {\"name\": \"p\"},"
	    " \"spec\": {\"selector\": \"all()\"}}]}");
	fake_stop(f, 4);

	f = fake_start(answers, 4);
	{
		struct run r = RUN_AT(f, "create", "-f", path, "--skip-exists", "-o", "json");
		json_t *got = load(r.out);

		assert_int_equal(r.status, 0);
		expect_json(got,
		            "{\"revision\": 4, \"results\": [{\"kind\": \"profile\", \"key\": "
		            "\"a\", \"outcome\": \"skipped\"}, {\"kind\": \"profile\", \"key\": "
		            "\"b\", \"outcome\": \"created\"}, {\"kind\": \"policy\", \"key\": "
		            "\"p\", \"outcome\": \"created\"}]}");
		json_decref(got);
		run_free(&r);
	}
	fake_stop(f, 4);
	unlink(path);

	temp_file(b_path, sizeof(b_path), "apiVersion: v1\nkind: profile\nmetadata: {name: b}\n");
	f = fake_start(race, 3);
	expect_out(RUN_AT(f, "create", "-f", b_path, "--skip-exists"), 0,
	           "Successfully created 1 'profile' resource(s)\n");
	expect_request(f, 1, "POST", "/v1/resources");
	expect_request(f, 2, "GET", "/v1/profiles/b");
	fake_stop(f, 3); /* then nothing was left to send */
	unlink(b_path);

	/* All exist: nothing is sent, and all count. */
	temp_file(ab_path, sizeof(ab_path),
	          "- {apiVersion: v1, kind: profile, metadata: {name: a}}\n"
	          "- {apiVersion: v1, kind: profile, metadata: {name: b}}\n");
	f = fake_start(all_exist, 2);
	expect_out(RUN_AT(f, "create", "-f", ab_path, "--skip-exists"), 0,
	           "Successfully created 2 'profile' resource(s)\n");
	fake_stop(f, 2);

	/* Without the flag an existing one refuses the whole file, as before. */
	f = fake_start(
	    (const struct answer[]){{409, "{\"error\": {\"code\": \"exists\", "
	                                  "\"message\": \"profile a already exists\"}}"}},
	    1);
	expect_refused(RUN_AT(f, "create", "-f", ab_path),
	               "tabby create: profile a already exists\n");
	expect_request(f, 0, "POST", "/v1/resources");
	fake_stop(f, 1);
	unlink(ab_path);
}

/* delete --skip-not-exists (-s): what does not exist is skipped and counted as deleted. */
static void test_delete_skip_not_exists(void **state)
{
	static const struct answer answers[] = {
	    {200, profile_a},
	    {404, missing_b},
	    {200, policy_p},
	    {200, "{\"revision\": 6, \"results\": [{\"kind\": \"profile\", \"key\": \"a\", "
	          "\"outcome\": \"deleted\"}, {\"kind\": \"policy\", \"key\": \"p\", \"outcome\": "
	          "\"deleted\"}]}"},
	};
	static const struct answer gone[] = {
	    {404,
	     "{\"error\": {\"code\": \"not_found\", \"message\": \"policy q does not exist\"}}"},
	};
	char path[64];
	struct fake *f;
	(void)state;

	temp_file(path, sizeof(path), two_profiles_and_policy);
	f = fake_start(answers, 4);
	expect_out(RUN_AT(f, "delete", "-s", "-f", path), 0,
	           "Successfully deleted 3 resource(s)\n");
	expect_json(f->body[3],
	            "{\"op\": \"delete\", \"resources\": [{\"apiVersion\": \"v1\", \"kind\": "
	            "\"profile\", \"metadata\": {\"name\": \"a\"}}, {\"apiVersion\": \"v1\", "
	            "\"kind\": \"policy\", \"metadata\": {\"name\": \"p\"}, \"spec\": "
	            "{\"selector\": \"all()\"}}]}");
	fake_stop(f, 4);
	unlink(path);

	f = fake_start(gone, 1);
	expect_out(RUN_AT(f, "delete", "policy", "q", "--skip-not-exists"), 0,
	           "Successfully deleted 1 'policy' resource(s)\n");
	expect_request(f, 0, "DELETE", "/v1/policies/q");
	fake_stop(f, 1);

	f = fake_start(gone, 1);
	expect_refused(RUN_AT(f, "delete", "policy", "q"),
	               "tabby delete: policy q does not exist\n");
	fake_stop(f, 1);
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
	    cmocka_unit_test(test_help),
	    cmocka_unit_test(test_command_line),
	    cmocka_unit_test(test_accepted),
	    cmocka_unit_test(test_bad_files),
	    cmocka_unit_test(test_bad_resources),
	    cmocka_unit_test(test_stdin),
	    cmocka_unit_test(test_success_line),
	    cmocka_unit_test(test_tables),
	    cmocka_unit_test(test_yaml_json),
	    cmocka_unit_test(test_get_file),
	    cmocka_unit_test(test_yaml_numbers_as_text),
	    cmocka_unit_test(test_create_skip_exists),
	    cmocka_unit_test(test_delete_skip_not_exists),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
