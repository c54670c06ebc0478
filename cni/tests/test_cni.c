/*
 * The CNI plugin's parsing and formatting (cni.h), and the built binary end to end as far as it
 * goes without an agent (VERSION, every failure before the agent, and the agent-unreachable
 * error). What the agent does with a request is tested with real agents in cluster-tests/.
 *
 * The binary's path is the first argument (cni/tests/meson.build passes it).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "api/api.h"
#include "cni/cni.h"

static const char *plugin_path; /* set once by main() */

#define NETNS "/var/run/netns/c1"

/* ADD of the network plugin, as Mesos calls it (no CNI_ARGS). */
static struct cni_env env_add(void)
{
	return (struct cni_env){
	    .command = "ADD",
	    .containerid = "c1",
	    .netns = NETNS,
	    .ifname = "eth0",
	    .path = "/usr/lib/cni",
	};
}

static struct cni_env env_cmd(const char *command)
{
	struct cni_env env = env_add();
	env.command = command;
	return env;
}

static json_t *load(const char *text)
{
	json_error_t jerr;
	json_t *v = json_loads(text, 0, &jerr);
	if (v == NULL)
		fail_msg("bad JSON in the test: %s: %s", jerr.text, text);
	return v;
}

/* Fail unless got equals the JSON text want, printing both. */
static void assert_json(const json_t *got, const char *want)
{
	json_t *w = load(want);
	char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
	char *ws = json_dumps(w, JSON_COMPACT | JSON_SORT_KEYS);

	if (!json_equal(got, w))
		fail_msg("JSON differs\n got: %s\nwant: %s", g, ws);
	free(g);
	free(ws);
	json_decref(w);
}

static void parse_ok(enum cni_mode mode, const struct cni_env *env, const char *conf,
                     struct cni_call *call)
{
	struct cni_error err;

	if (cni_parse(mode, env, conf, strlen(conf), call, &err) != 0)
		fail_msg("refused (%d): %s\nconfig: %s", err.code, err.msg, conf);
}

/* Parse, expect refusal with code and a message containing msg; the call is left with nothing
 * to free. */
static void expect_error_env(enum cni_mode mode, const struct cni_env *env, const char *conf,
                             int code, const char *msg)
{
	struct cni_call call;
	struct cni_error err;

	if (cni_parse(mode, env, conf, strlen(conf), &call, &err) == 0)
		fail_msg("accepted, expected error %d \"%s\"\nconfig: %s", code, msg, conf);
	if (err.code != code || strstr(err.msg, msg) == NULL)
		fail_msg("got error %d \"%s\", expected %d containing \"%s\"\nconfig: %s", err.code,
		         err.msg, code, msg, conf);
	assert_null(call.request);
	assert_null(call.routes);
	cni_call_free(&call);
}

static void expect_error(const char *conf, int code, const char *msg)
{
	struct cni_env env = env_add();
	expect_error_env(CNI_MODE_NET, &env, conf, code, msg);
}

/* The request for conf with env, compared with want. */
static void expect_request_env(enum cni_mode mode, const struct cni_env *env, const char *conf,
                               const char *want)
{
	struct cni_call call;

	parse_ok(mode, env, conf, &call);
	assert_json(call.request, want);
	cni_call_free(&call);
}

static void expect_request(const char *conf, const char *want)
{
	struct cni_env env = env_add();
	expect_request_env(CNI_MODE_NET, &env, conf, want);
}

/* ------------------------------------------------------------------------------------------ */
/* Configurations                                                                              */

static void test_mode_from_argv0(void **state)
{
	(void)state;
	assert_int_equal(cni_mode_from_argv0("tabby"), CNI_MODE_NET);
	assert_int_equal(cni_mode_from_argv0("calico"), CNI_MODE_NET);
	assert_int_equal(cni_mode_from_argv0("tabby-cni"), CNI_MODE_NET);
	assert_int_equal(cni_mode_from_argv0("/usr/lib/cni/tabby"), CNI_MODE_NET);
	assert_int_equal(cni_mode_from_argv0("tabby-ipam"), CNI_MODE_IPAM);
	assert_int_equal(cni_mode_from_argv0("/usr/lib/cni/calico-ipam"), CNI_MODE_IPAM);
	assert_int_equal(cni_mode_from_argv0("/opt/cni/bin/tabby-ipam"), CNI_MODE_IPAM);
	assert_int_equal(cni_mode_from_argv0("/opt/tabby-ipam/calico"), CNI_MODE_NET);
	assert_int_equal(cni_mode_from_argv0(NULL), CNI_MODE_NET);
}

/* Calico's minimal Mesos configuration (its docs and the DC/OS installer). */
static void test_calico_minimal_mesos(void **state)
{
	struct cni_env env = env_add();
	struct cni_call call;
	(void)state;

	parse_ok(CNI_MODE_NET, &env,
	         "{\"name\":\"calico\",\"cniVersion\":\"0.1.0\",\"type\":\"calico\",\"ipam\":{"
	         "\"type\":\"calico-ipam\"},\"etcd_endpoints\":\"http://master.mesos:2379\"}",
	         &call);
	assert_json(call.request, "{\"network\": \"calico\", \"container\": \"c1\", \"ifname\": "
	                          "\"eth0\", \"netns\": \"" NETNS "\", \"wire\": true, \"ipv4\": "
	                          "true, \"ipv6\": false, \"profile\": true, "
	                          "\"allow_ip_forwarding\": false}");
	assert_string_equal(call.version, "0.1.0");
	assert_int_equal(call.shape, CNI_SHAPE_020);
	assert_int_equal(call.cmd, CNI_CMD_ADD);
	assert_int_equal(call.mode, CNI_MODE_NET);
	assert_string_equal(call.ignored, "etcd_endpoints");
	assert_string_equal(call.socket, CNI_DEFAULT_SOCKET);
	assert_int_equal(call.log_level, CNI_LOG_WARNING);
	assert_null(call.routes);
	cni_call_free(&call);
	cni_call_free(&call); /* idempotent */
}

/* The seeds' own configuration: no cniVersion, so the 0.2.0 shape Mesos reads. */
static void test_seed_config(void **state)
{
	struct cni_env env = env_add();
	struct cni_call call;
	(void)state;

	parse_ok(CNI_MODE_NET, &env,
	         "{\"name\": \"calico-net-1\", \"type\": \"calico\", \"ipam\": {\"type\": "
	         "\"calico-ipam\"}, \"etcd_endpoints\": \"http://<etcd-ip:port>:2379\"}",
	         &call);
	assert_string_equal(call.version, "0.2.0");
	assert_int_equal(call.shape, CNI_SHAPE_020);
	assert_string_equal(call.ignored, "etcd_endpoints");
	assert_string_equal(json_string_value(json_object_get(call.request, "network")),
	                    "calico-net-1");
	cni_call_free(&call);
}

/* Every key that means something, at once. */
static void test_every_key(void **state)
{
	struct cni_env env = env_add();
	struct cni_call call;
	(void)state;

	parse_ok(
	    CNI_MODE_NET, &env,
	    "{\"cniVersion\": \"0.3.1\", \"name\": \"net_1.a-b\", \"type\": \"tabby\","
	    " \"ipam\": {\"type\": \"tabby-ipam\", \"assign_ipv4\": \"true\","
	    "  \"assign_ipv6\": \"true\", \"ipv4_pools\": [\"10.1.0.0/16\", \"10.2.0.0/16\"],"
	    "  \"ipv6_pools\": [\"fd80:0::/64\"], \"routes\": [{\"dst\": \"0.0.0.0/0\"}]},"
	    " \"mtu\": 1450, \"nodename\": \"host-1\", \"hostname\": \"other\","
	    " \"agent_socket\": \"/tmp/t.sock\", \"log_level\": \"DEBUG\","
	    " \"policy\": {\"type\": \"k8s\"},"
	    " \"container_settings\": {\"allow_ip_forwarding\": true},"
	    " \"runtimeConfig\": {\"ips\": [\"10.1.0.9/24\", \"fd80::9\"]},"
	    " \"args\": {\"cni\": {\"ips\": [\"10.1.0.10\"]}, \"org.apache.mesos\": "
	    "  {\"network_info\": {\"name\": \"calico\", \"labels\": {\"labels\": "
	    "  [{\"key\": \"role\", \"value\": \"web\"}]}}}},"
	    " \"etcd_endpoints\": \"http://a:2379\", \"etcd_authority\": \"a:2379\","
	    " \"etcd_scheme\": \"http\", \"etcd_key_file\": \"/k\", \"etcd_cert_file\": \"/c\","
	    " \"etcd_ca_cert_file\": \"/ca\", \"datastore_type\": \"etcdv2\","
	    " \"unknown_key\": {\"anything\": [1, 2]}}",
	    &call);
	assert_json(call.request,
	            "{\"network\": \"net_1.a-b\", \"container\": \"c1\", \"ifname\": \"eth0\","
	            " \"netns\": \"" NETNS
	            "\", \"node\": \"host-1\", \"wire\": true, \"mtu\": 1450,"
	            " \"ipv4\": true, \"ipv6\": true,"
	            " \"pools\": [\"10.1.0.0/16\", \"10.2.0.0/16\", \"fd80::/64\"],"
	            " \"ips\": [\"10.1.0.9\", \"fd80::9\", \"10.1.0.10\"],"
	            " \"labels\": {\"role\": \"web\"}, \"profile\": false,"
	            " \"allow_ip_forwarding\": true}");
	assert_string_equal(call.version, "0.3.1");
	assert_int_equal(call.shape, CNI_SHAPE_03X);
	assert_string_equal(call.socket, "/tmp/t.sock");
	assert_int_equal(call.log_level, CNI_LOG_DEBUG);
	assert_string_equal(call.ignored, "etcd_endpoints, etcd_authority, etcd_scheme, "
	                                  "etcd_key_file, etcd_cert_file, etcd_ca_cert_file, "
	                                  "datastore_type");
	/* Routes are kept for the IPAM result even when the network plugin parses them. */
	assert_json(call.routes, "[{\"dst\": \"0.0.0.0/0\"}]");
	cni_call_free(&call);
}

static void test_node_and_small_keys(void **state)
{
	struct cni_env env = env_add();
	struct cni_call call;
	(void)state;

	/* hostname alone; an empty nodename does not win over it. */
	parse_ok(CNI_MODE_NET, &env, "{\"name\": \"n\", \"nodename\": \"\", \"hostname\": \"h2\"}",
	         &call);
	assert_string_equal(json_string_value(json_object_get(call.request, "node")), "h2");
	cni_call_free(&call);
	/* mtu 0 is the default: left out. */
	parse_ok(CNI_MODE_NET, &env, "{\"name\": \"n\", \"mtu\": 0}", &call);
	assert_null(json_object_get(call.request, "mtu"));
	assert_null(json_object_get(call.request, "node"));
	cni_call_free(&call);
	parse_ok(CNI_MODE_NET, &env, "{\"name\": \"n\", \"mtu\": 9000, \"log_level\": \"info\"}",
	         &call);
	assert_int_equal(json_integer_value(json_object_get(call.request, "mtu")), 9000);
	assert_int_equal(call.log_level, CNI_LOG_INFO);
	cni_call_free(&call);
	/* Any other level is warning. */
	parse_ok(CNI_MODE_NET, &env, "{\"name\": \"n\", \"log_level\": \"verbose\"}", &call);
	assert_int_equal(call.log_level, CNI_LOG_WARNING);
	cni_call_free(&call);
	/* An empty policy.type keeps the profile; no ipam section at all is tabby's IPAM. */
	expect_request("{\"name\": \"n\", \"policy\": {\"type\": \"\"}}",
	               "{\"network\": \"n\", \"container\": \"c1\", \"ifname\": \"eth0\", "
	               "\"netns\": \"" NETNS "\", \"wire\": true, \"ipv4\": true, \"ipv6\": false, "
	               "\"profile\": true, \"allow_ip_forwarding\": false}");
	/* TABBY_SOCKET, and agent_socket over it. */
	env.socket = "/run/other.sock";
	parse_ok(CNI_MODE_NET, &env, "{\"name\": \"n\"}", &call);
	assert_string_equal(call.socket, "/run/other.sock");
	cni_call_free(&call);
	parse_ok(CNI_MODE_NET, &env, "{\"name\": \"n\", \"agent_socket\": \"/a.sock\"}", &call);
	assert_string_equal(call.socket, "/a.sock");
	cni_call_free(&call);
}

static void test_assign_flags(void **state)
{
	static const struct {
		const char *conf;
		bool v4, v6;
	} cases[] = {
	    {"{}", true, false},
	    {"{\"assign_ipv4\": \"false\", \"assign_ipv6\": \"true\"}", false, true},
	    {"{\"assign_ipv4\": false, \"assign_ipv6\": true}", false, true},
	    {"{\"assign_ipv4\": true, \"assign_ipv6\": \"false\"}", true, false},
	    {"{\"assign_ipv4\": \"true\", \"assign_ipv6\": true}", true, true},
	    {"{\"assign_ipv4\": null}", true, false},
	};
	struct cni_env env = env_add();
	struct cni_call call;
	char conf[256];
	(void)state;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(conf, sizeof conf, "{\"name\": \"n\", \"ipam\": %s}", cases[i].conf);
		parse_ok(CNI_MODE_NET, &env, conf, &call);
		assert_int_equal(json_is_true(json_object_get(call.request, "ipv4")), cases[i].v4);
		assert_int_equal(json_is_true(json_object_get(call.request, "ipv6")), cases[i].v6);
		cni_call_free(&call);
	}
	expect_error("{\"name\": \"n\", \"ipam\": {\"assign_ipv4\": \"False\"}}", CNI_ERR_CONFIG,
	             "ipam.assign_ipv4 must be \"true\" or \"false\"");
	expect_error("{\"name\": \"n\", \"ipam\": {\"assign_ipv6\": 1}}", CNI_ERR_CONFIG,
	             "ipam.assign_ipv6 must be \"true\" or \"false\"");
	expect_error("{\"name\": \"n\", \"ipam\": {\"assign_ipv4\": \"false\"}}", CNI_ERR_CONFIG,
	             "no address would be assigned");
	/* DEL still goes ahead, to release what there is. */
	env.command = "DEL";
	parse_ok(CNI_MODE_NET, &env, "{\"name\": \"n\", \"ipam\": {\"assign_ipv4\": \"false\"}}",
	         &call);
	cni_call_free(&call);
	env.command = "ADD";
	/* ... and ADD when an address is asked for. */
	env.args = "IP=fd80::1";
	parse_ok(CNI_MODE_NET, &env, "{\"name\": \"n\", \"ipam\": {\"assign_ipv4\": \"false\"}}",
	         &call);
	cni_call_free(&call);
}

/* Every refused configuration key, with its message. */
static void test_config_errors(void **state)
{
	static const struct {
		const char *conf;
		const char *msg;
	} cases[] = {
	    {"{}", "the network configuration has no \"name\""},
	    {"{\"name\": 5}", "name must be a string"},
	    {"{\"name\": \"\"}", "invalid characters in network name \"\""},
	    {"{\"name\": \"calico net\"}", "invalid characters in network name \"calico net\""},
	    {"{\"name\": \"a/b\"}", "invalid characters in network name \"a/b\""},
	    {"{\"name\": \"n\\u00e9\"}", "invalid characters in network name"},
	    {"{\"name\": \"n\", \"type\": 1}", "type must be a string"},
	    {"{\"name\": \"n\", \"ipam\": []}", "ipam must be an object"},
	    {"{\"name\": \"n\", \"ipam\": {\"type\": 1}}", "ipam.type must be a string"},
	    {"{\"name\": \"n\", \"ipam\": {\"type\": \"host-local\"}}",
	     "ipam type \"host-local\" is not supported by the tabby network plugin"},
	    {"{\"name\": \"n\", \"ipam\": {\"ipv4_pools\": \"10.1.0.0/16\"}}",
	     "ipam.ipv4_pools must be a list"},
	    {"{\"name\": \"n\", \"ipam\": {\"ipv4_pools\": [7]}}",
	     "ipam.ipv4_pools: element 0 is not a string"},
	    {"{\"name\": \"n\", \"ipam\": {\"ipv4_pools\": [\"10.1.0.1/16\"]}}",
	     "ipam.ipv4_pools: 10.1.0.1/16 is not a canonical CIDR"},
	    {"{\"name\": \"n\", \"ipam\": {\"ipv4_pools\": [\"pool1\"]}}",
	     "ipam.ipv4_pools: \"pool1\" is not a CIDR"},
	    {"{\"name\": \"n\", \"ipam\": {\"ipv4_pools\": [\"fd80::/64\"]}}",
	     "ipam.ipv4_pools: fd80::/64 is not an IPv4 CIDR"},
	    {"{\"name\": \"n\", \"ipam\": {\"ipv6_pools\": [\"10.1.0.0/16\"]}}",
	     "ipam.ipv6_pools: 10.1.0.0/16 is not an IPv6 CIDR"},
	    {"{\"name\": \"n\", \"ipam\": {\"routes\": {}}}", "ipam.routes must be a list"},
	    {"{\"name\": \"n\", \"ipam\": {\"routes\": [{\"gw\": \"10.0.0.1\"}]}}",
	     "ipam.routes: element 0 has no \"dst\""},
	    {"{\"name\": \"n\", \"ipam\": {\"routes\": [{\"dst\": \"default\"}]}}",
	     "ipam.routes: \"default\" is not a CIDR"},
	    {"{\"name\": \"n\", \"ipam\": {\"routes\": [{\"dst\": \"0.0.0.0/0\", \"gw\": "
	     "\"fd80::1\"}]}}",
	     "ipam.routes: gateway \"fd80::1\" of 0.0.0.0/0 is not an IPv4 address"},
	    {"{\"name\": \"n\", \"ipam\": {\"routes\": [{\"dst\": \"0.0.0.0/0\", \"gw\": 1}]}}",
	     "ipam.routes[].gw must be a string"},
	    {"{\"name\": \"n\", \"mtu\": \"1500\"}", "mtu must be an integer"},
	    {"{\"name\": \"n\", \"mtu\": 1500.5}", "mtu must be an integer"},
	    {"{\"name\": \"n\", \"mtu\": 67}", "mtu 67 is out of range: 68 to 65535"},
	    {"{\"name\": \"n\", \"mtu\": 65536}", "mtu 65536 is out of range"},
	    {"{\"name\": \"n\", \"mtu\": -1}", "mtu -1 is out of range"},
	    {"{\"name\": \"n\", \"nodename\": 1}", "nodename must be a string"},
	    {"{\"name\": \"n\", \"hostname\": []}", "hostname must be a string"},
	    {"{\"name\": \"n\", \"nodename\": \"a\\u0001b\"}", "has a control character"},
	    {"{\"name\": \"n\", \"agent_socket\": \"\"}",
	     "agent_socket must be a unix socket path of 1 to 107 bytes"},
	    {"{\"name\": \"n\", \"agent_socket\": 3}", "agent_socket must be a string"},
	    {"{\"name\": \"n\", \"log_level\": 3}", "log_level must be a string"},
	    {"{\"name\": \"n\", \"policy\": \"k8s\"}", "policy must be an object"},
	    {"{\"name\": \"n\", \"policy\": {\"type\": true}}", "policy.type must be a string"},
	    {"{\"name\": \"n\", \"container_settings\": 1}",
	     "container_settings must be an object"},
	    {"{\"name\": \"n\", \"container_settings\": {\"allow_ip_forwarding\": \"true\"}}",
	     "container_settings.allow_ip_forwarding must be true or false"},
	    {"{\"name\": \"n\", \"runtimeConfig\": []}", "runtimeConfig must be an object"},
	    {"{\"name\": \"n\", \"runtimeConfig\": {\"ips\": \"10.0.0.1\"}}",
	     "runtimeConfig.ips must be a list"},
	    {"{\"name\": \"n\", \"runtimeConfig\": {\"ips\": [\"10.0.0.300\"]}}",
	     "runtimeConfig.ips: \"10.0.0.300\" is not an IP address"},
	    {"{\"name\": \"n\", \"runtimeConfig\": {\"ips\": [\"10.0.0.1/33\"]}}",
	     "runtimeConfig.ips: \"10.0.0.1/33\" is not an IP address"},
	    {"{\"name\": \"n\", \"runtimeConfig\": {\"ips\": [1]}}",
	     "runtimeConfig.ips: element 0 is not a string"},
	    {"{\"name\": \"n\", \"args\": 1}", "args must be an object"},
	    {"{\"name\": \"n\", \"args\": {\"cni\": {\"ips\": [\"x\"]}}}",
	     "args.cni.ips: \"x\" is not an IP address"},
	};
	char long_socket[160];
	(void)state;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		expect_error(cases[i].conf, CNI_ERR_CONFIG, cases[i].msg);

	snprintf(long_socket, sizeof long_socket,
	         "{\"name\": \"n\", \"agent_socket\": \"/%0108d\"}", 0);
	expect_error(long_socket, CNI_ERR_CONFIG, "agent_socket must be a unix socket path");
}

static void test_ipam_mode(void **state)
{
	struct cni_env env = env_add();
	struct cni_call call;
	(void)state;

	/* Any ipam.type (the one the main plugin ran us by) and no netns needed. */
	env.netns = NULL;
	parse_ok(CNI_MODE_IPAM, &env,
	         "{\"cniVersion\": \"1.0.0\", \"name\": \"br\", \"type\": \"bridge\", \"ipam\": "
	         "{\"type\": \"whatever\", \"routes\": [{\"dst\": \"0.0.0.0/0\"}, {\"dst\": "
	         "\"10.9.0.0/16\", \"gw\": \"10.1.0.1\"}, {\"dst\": \"::/0\", \"gw\": "
	         "\"fd80:0::1\"}]}}",
	         &call);
	assert_json(call.request,
	            "{\"network\": \"br\", \"container\": \"c1\", \"ifname\": \"eth0\", "
	            "\"wire\": false, \"ipv4\": true, \"ipv6\": false, \"profile\": true, "
	            "\"allow_ip_forwarding\": false}");
	assert_json(call.routes, "[{\"dst\": \"0.0.0.0/0\"}, {\"dst\": \"10.9.0.0/16\", \"gw\": "
	                         "\"10.1.0.1\"}, {\"dst\": \"::/0\", \"gw\": \"fd80::1\"}]");
	cni_call_free(&call);
}

/* ------------------------------------------------------------------------------------------ */
/* The environment                                                                             */

static void test_env_errors(void **state)
{
	static const char *const bad_ifnames[] = {
	    "0123456789abcdef",
	    ".",
	    "..",
	    "a/b",
	    "a:b",
	    "a b",
	    "a\tb",
	    "a\nb",
	    "a\xa0"
	    "b",
	    "a\x01"
	    "b",
	    "a\x7f",
	};
	const char *conf = "{\"name\": \"n\"}";
	char long_id[300], long_socket[200];
	struct cni_env env;
	struct cni_call call;
	(void)state;

	env = env_cmd(NULL);
	expect_error_env(CNI_MODE_NET, &env, conf, CNI_ERR_ENV, "CNI_COMMAND is not set");
	env = env_cmd("");
	expect_error_env(CNI_MODE_NET, &env, conf, CNI_ERR_ENV, "CNI_COMMAND is not set");
	env = env_cmd("GC");
	expect_error_env(CNI_MODE_NET, &env, conf, CNI_ERR_ENV,
	                 "CNI_COMMAND \"GC\" is not one of ADD, DEL, CHECK, VERSION");

	env = env_add();
	env.containerid = NULL;
	expect_error_env(CNI_MODE_NET, &env, conf, CNI_ERR_ENV, "CNI_CONTAINERID is not set");
	env.containerid = "";
	expect_error_env(CNI_MODE_NET, &env, conf, CNI_ERR_ENV, "CNI_CONTAINERID is not set");
	/* The agent's rule: CNI 1.0's characters, 1 to 253 bytes. The endpoint's workload name, the
	 * id of a wired container, takes 128 at most. */
	env.containerid = "a/b";
	expect_error_env(CNI_MODE_NET, &env, conf, CNI_ERR_ENV,
	                 "CNI_CONTAINERID \"a/b\" is not valid: only letters, digits");
	env.containerid = "a\x01z";
	expect_error_env(CNI_MODE_NET, &env, conf, CNI_ERR_ENV, "is not valid");
	env.containerid = "task:1";
	expect_error_env(CNI_MODE_NET, &env, conf, CNI_ERR_ENV, "\"task:1\" is not valid");
	memset(long_id, 'x', 254);
	long_id[254] = '\0';
	env.containerid = long_id;
	expect_error_env(CNI_MODE_IPAM, &env, conf, CNI_ERR_ENV,
	                 "CNI_CONTAINERID is longer than 253 bytes");
	long_id[253] = '\0';
	parse_ok(CNI_MODE_IPAM, &env, conf, &call);
	cni_call_free(&call);
	expect_error_env(CNI_MODE_NET, &env, conf, CNI_ERR_ENV,
	                 "CNI_CONTAINERID is longer than 128 bytes");
	long_id[128] = '\0';
	parse_ok(CNI_MODE_NET, &env, conf, &call);
	cni_call_free(&call);

	/* A network's name is its profile's when wired: 128 bytes at most; 253 as an IPAM plugin.
	 */
	{
		char long_net[sizeof long_id + 16];
		memset(long_id, 'n', 253);
		long_id[253] = '\0';
		snprintf(long_net, sizeof long_net, "{\"name\": \"%s\"}", long_id);
		env = env_add();
		parse_ok(CNI_MODE_IPAM, &env, long_net, &call);
		cni_call_free(&call);
		expect_error_env(
		    CNI_MODE_NET, &env, long_net, CNI_ERR_CONFIG,
		    "the network name is longer than 128 bytes, the longest profile name");
		env = env_cmd("DEL");
		parse_ok(CNI_MODE_NET, &env, long_net, &call);
		assert_string_equal(call.nothing_to_do, "");
		cni_call_free(&call);
		long_id[128] = '\0';
		snprintf(long_net, sizeof long_net, "{\"name\": \"%s\"}", long_id);
		env = env_add();
		parse_ok(CNI_MODE_NET, &env, long_net, &call);
		cni_call_free(&call);
	}

	/* A DEL of a name the agent refuses on every command has nothing to delete: it succeeds
	 * without asking the agent (a runtime retries a failed DEL for ever). A DEL of a container
	 * too long to wire, or with a netns the agent would not open, still goes to the agent. */
	{
		static const struct {
			const char *id, *ifname, *conf;
		} never[] = {
		    {"task:1", "eth0", "{\"name\": \"n\"}"},
		    {"c1", "et\x01h", "{\"name\": \"n\"}"},
		    {"c1", "eth0", "{\"name\": \"a net\"}"},
		};
		for (size_t i = 0; i < sizeof never / sizeof never[0]; i++) {
			env = env_cmd("DEL");
			env.containerid = never[i].id;
			env.ifname = never[i].ifname;
			parse_ok(CNI_MODE_NET, &env, never[i].conf, &call);
			assert_non_null(strstr(call.nothing_to_do, ": nothing was added"));
			cni_call_free(&call);
		}
		env = env_cmd("DEL");
		memset(long_id, 'x', 200);
		long_id[200] = '\0';
		env.containerid = long_id;
		char long_ns[1100];
		long_ns[0] = '/';
		memset(long_ns + 1, 'n', 1050);
		long_ns[1051] = '\0';
		env.netns = long_ns;
		parse_ok(CNI_MODE_NET, &env, conf, &call);
		assert_string_equal(call.nothing_to_do, "");
		assert_string_equal(json_string_value(json_object_get(call.request, "container")),
		                    long_id);
		assert_null(json_object_get(call.request, "netns"));
		cni_call_free(&call);
		env = env_add();
		env.netns = long_ns;
		expect_error_env(CNI_MODE_NET, &env, conf, CNI_ERR_ENV,
		                 "is not an absolute path of at most 1024 bytes");
	}

	env = env_add();
	env.ifname = NULL;
	expect_error_env(CNI_MODE_NET, &env, conf, CNI_ERR_ENV, "CNI_IFNAME is not set");
	for (size_t i = 0; i < sizeof bad_ifnames / sizeof bad_ifnames[0]; i++) {
		env.ifname = bad_ifnames[i];
		expect_error_env(CNI_MODE_NET, &env, conf, CNI_ERR_ENV, "CNI_IFNAME");
		assert_false(cni_ifname_ok(bad_ifnames[i]));
	}
	assert_false(cni_ifname_ok(""));
	assert_true(cni_ifname_ok("0123456789abcde"));
	assert_true(cni_ifname_ok("..."));
	assert_true(cni_ifname_ok("eth1"));
	env.ifname = "net1.100";
	parse_ok(CNI_MODE_NET, &env, conf, &call);
	cni_call_free(&call);

	/* CNI_NETNS: needed by the network plugin for ADD and CHECK only. */
	env = env_add();
	env.netns = NULL;
	expect_error_env(CNI_MODE_NET, &env, conf, CNI_ERR_ENV, "CNI_NETNS is not set");
	env.netns = "";
	expect_error_env(CNI_MODE_NET, &env, conf, CNI_ERR_ENV, "CNI_NETNS is not set");
	env.command = "CHECK";
	expect_error_env(CNI_MODE_NET, &env, "{\"name\": \"n\", \"cniVersion\": \"0.4.0\"}",
	                 CNI_ERR_ENV, "CNI_NETNS is not set");
	env.command = "DEL";
	expect_request_env(CNI_MODE_NET, &env, conf,
	                   "{\"network\": \"n\", \"container\": \"c1\", \"ifname\": \"eth0\", "
	                   "\"wire\": true, \"ipv4\": true, \"ipv6\": false, \"profile\": true, "
	                   "\"allow_ip_forwarding\": false}");
	env.command = "ADD";
	parse_ok(CNI_MODE_IPAM, &env, conf, &call);
	cni_call_free(&call);
	env.netns = "netns/c1";
	expect_error_env(CNI_MODE_NET, &env, conf, CNI_ERR_ENV,
	                 "CNI_NETNS \"netns/c1\" is not an absolute path");

	env = env_add();
	snprintf(long_socket, sizeof long_socket, "/%0120d", 0);
	env.socket = long_socket;
	expect_error_env(CNI_MODE_NET, &env, conf, CNI_ERR_ENV, "TABBY_SOCKET is longer than 107");
}

static void test_cni_args(void **state)
{
	const char *conf = "{\"name\": \"n\"}";
	struct cni_env env = env_add();
	struct cni_call call;
	(void)state;

	env.args = "IgnoreUnknown=1;IP=10.1.0.7;FOO=bar";
	parse_ok(CNI_MODE_NET, &env, conf, &call);
	assert_json(json_object_get(call.request, "ips"), "[\"10.1.0.7\"]");
	assert_null(json_object_get(call.request, "orchestrator"));
	assert_null(json_object_get(call.request, "workload"));
	cni_call_free(&call);

	/* Several addresses, canonical, repeated ones once, merged with runtimeConfig. */
	env.args = "IP=10.1.0.7,FD80:0:0::5;IP=10.1.0.7";
	parse_ok(CNI_MODE_NET, &env,
	         "{\"name\": \"n\", \"runtimeConfig\": {\"ips\": [\"fd80::5/64\", \"10.1.0.8\"]}}",
	         &call);
	assert_json(json_object_get(call.request, "ips"),
	            "[\"10.1.0.7\", \"fd80::5\", \"10.1.0.8\"]");
	cni_call_free(&call);

	env.args = "K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web-1;K8S_POD_INFRA_CONTAINER_ID=x";
	parse_ok(CNI_MODE_NET, &env, conf, &call);
	assert_string_equal(json_string_value(json_object_get(call.request, "orchestrator")),
	                    "k8s");
	assert_string_equal(json_string_value(json_object_get(call.request, "workload")),
	                    "prod.web-1");
	assert_null(json_object_get(call.request, "ips"));
	cni_call_free(&call);

	/* Only one of the two: plain CNI. Empty pairs are skipped. */
	env.args = "K8S_POD_NAME=web-1;;";
	parse_ok(CNI_MODE_NET, &env, conf, &call);
	assert_null(json_object_get(call.request, "orchestrator"));
	assert_null(json_object_get(call.request, "workload"));
	cni_call_free(&call);
	env.args = "K8S_POD_NAMESPACE=;K8S_POD_NAME=web-1";
	parse_ok(CNI_MODE_NET, &env, conf, &call);
	assert_null(json_object_get(call.request, "workload"));
	cni_call_free(&call);

	env.args = "IgnoreUnknown";
	expect_error_env(CNI_MODE_NET, &env, conf, CNI_ERR_ENV,
	                 "CNI_ARGS: \"IgnoreUnknown\" is not KEY=VALUE");
	env.args = "=x";
	expect_error_env(CNI_MODE_NET, &env, conf, CNI_ERR_ENV,
	                 "CNI_ARGS: \"=x\" is not KEY=VALUE");
	env.args = "IP=10.1.0.300";
	expect_error_env(CNI_MODE_NET, &env, conf, CNI_ERR_ENV,
	                 "CNI_ARGS: IP: \"10.1.0.300\" is not an IP address");
	env.args = "IP=10.1.0.7/32";
	expect_error_env(CNI_MODE_NET, &env, conf, CNI_ERR_ENV,
	                 "CNI_ARGS: IP: \"10.1.0.7/32\" is not an IP address");
	env.args = "IP=10.1.0.7,,10.1.0.8";
	expect_error_env(CNI_MODE_NET, &env, conf, CNI_ERR_ENV,
	                 "CNI_ARGS: IP: \"\" is not an IP address");
	env.args = "IP=";
	expect_error_env(CNI_MODE_NET, &env, conf, CNI_ERR_ENV, "CNI_ARGS: IP= names no address");
	env.args = "K8S_POD_NAMESPACE=a\x01;K8S_POD_NAME=b";
	expect_error_env(CNI_MODE_NET, &env, conf, CNI_ERR_ENV, "has a control character");
}

static void test_decode_and_versions(void **state)
{
	static const struct {
		const char *version;
		enum cni_shape shape;
	} ok[] = {
	    {"0.1.0", CNI_SHAPE_020}, {"0.2.0", CNI_SHAPE_020}, {"0.3.0", CNI_SHAPE_03X},
	    {"0.3.1", CNI_SHAPE_03X}, {"0.4.0", CNI_SHAPE_03X}, {"1.0.0", CNI_SHAPE_100},
	};
	struct cni_env env = env_add();
	struct cni_call call;
	struct cni_error err;
	char conf[128];
	(void)state;

	expect_error("", CNI_ERR_DECODE, "cannot decode the network configuration");
	expect_error("{\"name\": ", CNI_ERR_DECODE, "cannot decode the network configuration");
	expect_error("[1]", CNI_ERR_DECODE, "the network configuration is not a JSON object");
	/* A refusal still knows the version to answer in. */
	assert_int_equal(
	    cni_parse(CNI_MODE_NET, &env, "{\"cniVersion\": \"0.3.1\"}", 23, &call, &err), -1);
	assert_int_equal(err.code, CNI_ERR_CONFIG);
	assert_string_equal(call.version, "0.3.1");
	cni_call_free(&call);
	/* Not NUL-terminated: only len bytes count. */
	parse_ok(CNI_MODE_NET, &env, "{\"name\": \"n\"}", &call);
	cni_call_free(&call);
	assert_int_equal(cni_parse(CNI_MODE_NET, &env, "{\"name\": \"n\"}garbage", 13, &call, &err),
	                 0);
	cni_call_free(&call);

	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		snprintf(conf, sizeof conf, "{\"name\": \"n\", \"cniVersion\": \"%s\"}",
		         ok[i].version);
		parse_ok(CNI_MODE_NET, &env, conf, &call);
		assert_string_equal(call.version, ok[i].version);
		assert_int_equal(call.shape, ok[i].shape);
		cni_call_free(&call);
	}
	expect_error("{\"name\": \"n\", \"cniVersion\": \"1.1.0\"}", CNI_ERR_VERSION,
	             "CNI version \"1.1.0\" is not supported (tabby supports 0.1.0, 0.2.0, 0.3.0, "
	             "0.3.1, 0.4.0, 1.0.0)");
	expect_error("{\"name\": \"n\", \"cniVersion\": 1}", CNI_ERR_VERSION,
	             "cniVersion must be a string");
	assert_int_equal(
	    cni_parse(CNI_MODE_NET, &env, "{\"cniVersion\": \"9.9\"}", 21, &call, &err), -1);
	assert_string_equal(call.version, "0.2.0"); /* never echo a version we do not speak */

	/* CHECK exists from 0.4.0 on. */
	env.command = "CHECK";
	expect_error_env(CNI_MODE_NET, &env, "{\"name\": \"n\", \"cniVersion\": \"0.3.1\"}",
	                 CNI_ERR_VERSION,
	                 "CHECK needs cniVersion 0.4.0 or later; the configuration has 0.3.1");
	expect_error_env(CNI_MODE_NET, &env, "{\"name\": \"n\"}", CNI_ERR_VERSION,
	                 "the configuration has none");
	parse_ok(CNI_MODE_NET, &env, "{\"name\": \"n\", \"cniVersion\": \"0.4.0\"}", &call);
	assert_int_equal(call.cmd, CNI_CMD_CHECK);
	cni_call_free(&call);
}

static void test_version_command(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"{\"cniVersion\": \"0.3.1\"}", "0.3.1"},
	    {"{\"cniVersion\": \"0.1.0\"}", "0.1.0"},
	    {"", "1.0.0"},
	    {"not json", "1.0.0"},
	    {"{\"cniVersion\": \"2.0.0\"}", "1.0.0"},
	    {"{\"cniVersion\": 4}", "1.0.0"},
	};
	struct cni_env env = {.command = "VERSION"}; /* nothing else is needed */
	struct cni_call call;
	struct cni_error err;
	json_t *answer;
	(void)state;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		assert_int_equal(
		    cni_parse(CNI_MODE_IPAM, &env, cases[i].in, strlen(cases[i].in), &call, &err),
		    0);
		assert_int_equal(call.cmd, CNI_CMD_VERSION);
		assert_string_equal(call.version, cases[i].out);
		assert_null(call.request);
		cni_call_free(&call);
	}
	answer = cni_version_answer("0.4.0");
	assert_json(answer, "{\"cniVersion\": \"0.4.0\", \"supportedVersions\": [\"0.1.0\", "
	                    "\"0.2.0\", \"0.3.0\", \"0.3.1\", \"0.4.0\", \"1.0.0\"]}");
	json_decref(answer);
	assert_string_equal(cni_request_path(CNI_CMD_ADD), "/v1/cni/add");
	assert_string_equal(cni_request_path(CNI_CMD_DEL), "/v1/cni/del");
	assert_string_equal(cni_request_path(CNI_CMD_CHECK), "/v1/cni/check");
	assert_null(cni_request_path(CNI_CMD_VERSION));
}

static void test_prev_result(void **state)
{
	struct cni_env env = env_cmd("CHECK");
	struct cni_call call;
	(void)state;

	/* 1.0.0 shape (no version), 0.4.0 shape, and the legacy one, each with host bits set. */
	parse_ok(CNI_MODE_NET, &env,
	         "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"prevResult\": {\"cniVersion\": "
	         "\"1.0.0\", \"interfaces\": [{\"name\": \"eth0\"}], \"ips\": [{\"address\": "
	         "\"10.1.0.7/32\", \"interface\": 0}, {\"address\": \"fd80::0:7/128\"}]}}",
	         &call);
	assert_json(json_object_get(call.request, "prev_ips"),
	            "[\"10.1.0.7/32\", \"fd80::7/128\"]");
	cni_call_free(&call);
	parse_ok(
	    CNI_MODE_IPAM, &env,
	    "{\"cniVersion\": \"0.4.0\", \"name\": \"n\", \"prevResult\": {\"ips\": "
	    "[{\"version\": \"4\", \"address\": \"10.1.0.7/24\", \"gateway\": \"10.1.0.1\"}]}}",
	    &call);
	assert_json(json_object_get(call.request, "prev_ips"), "[\"10.1.0.7/24\"]");
	cni_call_free(&call);
	parse_ok(CNI_MODE_NET, &env,
	         "{\"cniVersion\": \"0.4.0\", \"name\": \"n\", \"prevResult\": {\"ip4\": {\"ip\": "
	         "\"10.1.0.7/32\"}, \"ip6\": {\"ip\": \"fd80::7/128\"}, \"dns\": {}}}",
	         &call);
	assert_json(json_object_get(call.request, "prev_ips"),
	            "[\"10.1.0.7/32\", \"fd80::7/128\"]");
	cni_call_free(&call);
	/* No prevResult: no prev_ips. */
	parse_ok(CNI_MODE_NET, &env, "{\"cniVersion\": \"0.4.0\", \"name\": \"n\"}", &call);
	assert_null(json_object_get(call.request, "prev_ips"));
	cni_call_free(&call);

	expect_error_env(CNI_MODE_NET, &env,
	                 "{\"cniVersion\": \"0.4.0\", \"name\": \"n\", \"prevResult\": {\"ips\": "
	                 "[{\"address\": \"10.1.0.7\"}]}}",
	                 CNI_ERR_CONFIG,
	                 "prevResult.ips: \"10.1.0.7\" is not an address with a prefix");
	expect_error_env(CNI_MODE_NET, &env,
	                 "{\"cniVersion\": \"0.4.0\", \"name\": \"n\", \"prevResult\": {\"ips\": "
	                 "[{\"version\": \"4\"}]}}",
	                 CNI_ERR_CONFIG, "prevResult.ips: element 0 has no \"address\"");
	expect_error_env(CNI_MODE_NET, &env,
	                 "{\"cniVersion\": \"0.4.0\", \"name\": \"n\", \"prevResult\": {\"ip4\": "
	                 "{\"ip\": \"fd80::7/128\"}}}",
	                 CNI_ERR_CONFIG, "prevResult.ip4.ip is not an IPv4 address with a prefix");
	expect_error_env(CNI_MODE_NET, &env,
	                 "{\"cniVersion\": \"0.4.0\", \"name\": \"n\", \"prevResult\": []}",
	                 CNI_ERR_CONFIG, "prevResult must be an object");

	/* Only CHECK reads it. */
	env.command = "ADD";
	parse_ok(CNI_MODE_NET, &env,
	         "{\"cniVersion\": \"0.4.0\", \"name\": \"n\", \"prevResult\": {\"ips\": [1]}}",
	         &call);
	assert_null(json_object_get(call.request, "prev_ips"));
	cni_call_free(&call);
}

/* ------------------------------------------------------------------------------------------ */
/* Mesos labels                                                                                */

static void expect_sanitized(const char *in, const char *out)
{
	char *s = cni_label_sanitize(in);
	assert_non_null(s);
	if (strcmp(s, out) != 0)
		fail_msg("sanitize(\"%s\") = \"%s\", want \"%s\"", in, s, out);
	free(s);
}

static void test_label_sanitize(void **state)
{
	(void)state;
	/* calico-behaviour.md 1.10's examples. */
	expect_sanitized("/a/b/c", "a.b.c");
	expect_sanitized("foo bar", "foo-bar");
	expect_sanitized("a.-b", "a.b");
	expect_sanitized("a--b", "a--b");
	expect_sanitized("///", "");
	/* And the steps one by one. */
	expect_sanitized("DCOS_SPACE", "DCOS_SPACE");
	expect_sanitized("a  \t b", "a-b");
	expect_sanitized("caf\xc3\xa9", "caf");
	expect_sanitized("\xc3\xa9t\xc3\xa9", "t");
	expect_sanitized("a\xc3\xa9-b", "a--b");
	expect_sanitized("a-.-.-b", "a.b");
	expect_sanitized("a..b", "a.b");
	expect_sanitized("-.a.-", "a");
	expect_sanitized("x/ y", "x.y");
	expect_sanitized("com.example/role", "com.example.role");
	expect_sanitized("", "");
	expect_sanitized("_", "_");
}

static const char *mesos_conf(char *buf, size_t len, const char *labels)
{
	snprintf(buf, len,
	         "{\"name\": \"calico\", \"args\": {\"org.apache.mesos\": {\"network_info\": "
	         "{\"name\": \"calico\", \"labels\": {\"labels\": %s}}}}}",
	         labels);
	return buf;
}

static void test_labels(void **state)
{
	struct cni_env env = env_add();
	struct cni_call call;
	char buf[1024];
	(void)state;

	parse_ok(
	    CNI_MODE_NET, &env,
	    mesos_conf(buf, sizeof buf,
	               "[{\"key\": \"DCOS_SPACE\", \"value\": \"/a/b/c\"}, {\"key\": \"role\", "
	               "\"value\": \"web\"}, {\"key\": \"foo bar\", \"value\": \"a.-b\"}, "
	               "{\"key\": \"a--b\"}, {\"key\": \"x\", \"value\": null}]"),
	    &call);
	assert_json(json_object_get(call.request, "labels"),
	            "{\"DCOS_SPACE\": \"a.b.c\", \"role\": \"web\", \"foo-bar\": \"a.b\", "
	            "\"a--b\": \"\", \"x\": \"\"}");
	cni_call_free(&call);

	/* No labels, an empty list, or no network_info: no "labels". */
	parse_ok(CNI_MODE_NET, &env, mesos_conf(buf, sizeof buf, "[]"), &call);
	assert_null(json_object_get(call.request, "labels"));
	cni_call_free(&call);
	parse_ok(CNI_MODE_NET, &env,
	         "{\"name\": \"n\", \"args\": {\"org.apache.mesos\": {\"network_info\": "
	         "{\"name\": \"calico\"}}}}",
	         &call);
	assert_null(json_object_get(call.request, "labels"));
	cni_call_free(&call);
	parse_ok(CNI_MODE_NET, &env, "{\"name\": \"n\", \"args\": {\"org.apache.mesos\": {}}}",
	         &call);
	assert_null(json_object_get(call.request, "labels"));
	cni_call_free(&call);

	/* An empty key after sanitization, and collisions, are refused naming the labels. */
	expect_error(mesos_conf(buf, sizeof buf, "[{\"key\": \"///\", \"value\": \"v\"}]"),
	             CNI_ERR_CONFIG, "mesos label \"///\" has an empty key after sanitization");
	expect_error(mesos_conf(buf, sizeof buf, "[{\"key\": \"\", \"value\": \"v\"}]"),
	             CNI_ERR_CONFIG, "mesos label \"\" has an empty key after sanitization");
	expect_error(mesos_conf(buf, sizeof buf,
	                        "[{\"key\": \"a/b\", \"value\": \"1\"}, {\"key\": \"a.b\", "
	                        "\"value\": \"2\"}]"),
	             CNI_ERR_CONFIG,
	             "mesos labels \"a/b\" and \"a.b\" both become \"a.b\" after sanitization");
	expect_error(
	    mesos_conf(buf, sizeof buf,
	               "[{\"key\": \"foo bar\", \"value\": \"1\"}, {\"key\": \"foo\\tbar\","
	               " \"value\": \"2\"}]"),
	    CNI_ERR_CONFIG, "both become \"foo-bar\"");
	expect_error(mesos_conf(buf, sizeof buf,
	                        "[{\"key\": \"role\", \"value\": \"a\"}, {\"key\": \"role\", "
	                        "\"value\": \"b\"}]"),
	             CNI_ERR_CONFIG, "mesos label \"role\" is given twice");
	expect_error(mesos_conf(buf, sizeof buf, "[{\"value\": \"v\"}]"), CNI_ERR_CONFIG,
	             "mesos label 0 has no \"key\" string");
	expect_error(mesos_conf(buf, sizeof buf, "[{\"key\": \"k\", \"value\": 1}]"),
	             CNI_ERR_CONFIG, "a mesos label's value must be a string");
	expect_error(mesos_conf(buf, sizeof buf, "{}"), CNI_ERR_CONFIG,
	             "args[\"org.apache.mesos\"].network_info.labels.labels must be a list");
	expect_error("{\"name\": \"n\", \"args\": {\"org.apache.mesos\": 1}}", CNI_ERR_CONFIG,
	             "args[\"org.apache.mesos\"] must be an object");
	expect_error("{\"name\": \"n\", \"args\": {\"org.apache.mesos\": {\"network_info\": "
	             "{\"labels\": []}}}}",
	             CNI_ERR_CONFIG,
	             "args[\"org.apache.mesos\"].network_info.labels must be an object");
}

/* ------------------------------------------------------------------------------------------ */
/* Results                                                                                     */

#define ANSWER_V4                                                                                  \
	"{\"ips\": [\"10.1.0.7/32\"], \"interface\": \"cali0123456789a\", \"mac\": "               \
	"\"0a:58:0a:01:00:07\", \"sandbox\": \"" NETNS "\", \"existed\": false, \"revision\": 5}"
#define ANSWER_V6                                                                                  \
	"{\"ips\": [\"fd80::7/128\"], \"interface\": \"cali0123456789a\", \"mac\": "               \
	"\"0a:58:0a:01:00:07\", \"sandbox\": \"" NETNS "\"}"
#define ANSWER_DUAL                                                                                \
	"{\"ips\": [\"10.1.0.7/32\", \"fd80::7/128\"], \"interface\": \"cali0123456789a\", "       \
	"\"mac\": \"0a:58:0a:01:00:07\"}"
#define IFACES                                                                                     \
	"\"interfaces\": [{\"name\": \"cali0123456789a\", \"mac\": \"ee:ee:ee:ee:ee:ee\"}, "       \
	"{\"name\": \"eth0\", \"mac\": \"0a:58:0a:01:00:07\", \"sandbox\": \"" NETNS "\"}]"

/* The result of answer for a call parsed from conf in mode. */
static void expect_result(enum cni_mode mode, const char *conf, const char *answer,
                          const char *want)
{
	struct cni_env env = env_add();
	struct cni_call call;
	struct cni_error err;
	json_t *a = load(answer), *res;

	parse_ok(mode, &env, conf, &call);
	if (cni_format_result(&call, a, &res, &err) != 0)
		fail_msg("format refused: %s\nanswer: %s", err.msg, answer);
	assert_json(res, want);
	json_decref(res);
	json_decref(a);
	cni_call_free(&call);
}

static void test_result_shapes(void **state)
{
	static const struct {
		const char *version; /* NULL: no cniVersion */
		const char *answer;
		const char *want;
	} cases[] = {
	    {NULL, ANSWER_V4,
	     "{\"cniVersion\": \"0.2.0\", \"ip4\": {\"ip\": \"10.1.0.7/32\"}, "
	     "\"dns\": {}}"},
	    {"0.1.0", ANSWER_V6,
	     "{\"cniVersion\": \"0.1.0\", \"ip6\": {\"ip\": \"fd80::7/128\"}, "
	     "\"dns\": {}}"},
	    {"0.2.0", ANSWER_DUAL,
	     "{\"cniVersion\": \"0.2.0\", \"ip4\": {\"ip\": \"10.1.0.7/32\"}, "
	     "\"ip6\": {\"ip\": \"fd80::7/128\"}, \"dns\": {}}"},
	    {"0.3.0", ANSWER_V4,
	     "{\"cniVersion\": \"0.3.0\", " IFACES ", \"ips\": [{\"version\": \"4\", \"address\": "
	     "\"10.1.0.7/32\", \"interface\": 1}], \"dns\": {}}"},
	    {"0.3.1", ANSWER_V6,
	     "{\"cniVersion\": \"0.3.1\", " IFACES ", \"ips\": [{\"version\": \"6\", \"address\": "
	     "\"fd80::7/128\", \"interface\": 1}], \"dns\": {}}"},
	    /* No sandbox in the answer: CNI_NETNS. */
	    {"0.4.0", ANSWER_DUAL,
	     "{\"cniVersion\": \"0.4.0\", " IFACES ", \"ips\": [{\"version\": \"4\", \"address\": "
	     "\"10.1.0.7/32\", \"interface\": 1}, {\"version\": \"6\", \"address\": "
	     "\"fd80::7/128\", \"interface\": 1}], \"dns\": {}}"},
	    {"1.0.0", ANSWER_V4,
	     "{\"cniVersion\": \"1.0.0\", " IFACES ", \"ips\": [{\"address\": \"10.1.0.7/32\", "
	     "\"interface\": 1}], \"dns\": {}}"},
	    {"1.0.0", ANSWER_V6,
	     "{\"cniVersion\": \"1.0.0\", " IFACES ", \"ips\": [{\"address\": \"fd80::7/128\", "
	     "\"interface\": 1}], \"dns\": {}}"},
	    {"1.0.0", ANSWER_DUAL,
	     "{\"cniVersion\": \"1.0.0\", " IFACES ", \"ips\": [{\"address\": \"10.1.0.7/32\", "
	     "\"interface\": 1}, {\"address\": \"fd80::7/128\", \"interface\": 1}], \"dns\": {}}"},
	    /* 0.2.0 has room for one address per family: the first. No mac: none printed. */
	    {"0.2.0",
	     "{\"ips\": [\"fd80::7/128\", \"10.1.0.7/32\", \"10.1.0.8/32\"], \"interface\": "
	     "\"cali1\"}",
	     "{\"cniVersion\": \"0.2.0\", \"ip4\": {\"ip\": \"10.1.0.7/32\"}, \"ip6\": {\"ip\": "
	     "\"fd80::7/128\"}, \"dns\": {}}"},
	    {"0.3.1", "{\"ips\": [\"10.1.0.7/32\"], \"interface\": \"cali1\"}",
	     "{\"cniVersion\": \"0.3.1\", \"interfaces\": [{\"name\": \"cali1\", \"mac\": "
	     "\"ee:ee:ee:ee:ee:ee\"}, {\"name\": \"eth0\", \"sandbox\": \"" NETNS "\"}], \"ips\": "
	     "[{\"version\": \"4\", \"address\": \"10.1.0.7/32\", \"interface\": 1}], \"dns\": "
	     "{}}"},
	};
	char conf[128];
	(void)state;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (cases[i].version != NULL)
			snprintf(conf, sizeof conf, "{\"name\": \"n\", \"cniVersion\": \"%s\"}",
			         cases[i].version);
		else
			snprintf(conf, sizeof conf, "{\"name\": \"n\"}");
		expect_result(CNI_MODE_NET, conf, cases[i].answer, cases[i].want);
	}
}

static void test_ipam_results(void **state)
{
#define ROUTES                                                                                     \
	"\"routes\": [{\"dst\": \"0.0.0.0/0\"}, {\"dst\": \"192.168.0.0/16\", \"gw\": "            \
	"\"10.1.0.1\"}, {\"dst\": \"::/0\"}]"
#define IPAM_CONF(v) "{\"name\": \"n\", \"cniVersion\": \"" v "\", \"ipam\": {" ROUTES "}}"
#define IPAM_ANSWER  "{\"ips\": [\"10.1.0.7/32\", \"fd80::7/128\"], \"existed\": false}"
	(void)state;

	expect_result(CNI_MODE_IPAM, IPAM_CONF("0.2.0"), IPAM_ANSWER,
	              "{\"cniVersion\": \"0.2.0\", \"ip4\": {\"ip\": \"10.1.0.7/32\", \"routes\": "
	              "[{\"dst\": \"0.0.0.0/0\"}, {\"dst\": \"192.168.0.0/16\", \"gw\": "
	              "\"10.1.0.1\"}]}, \"ip6\": {\"ip\": \"fd80::7/128\", \"routes\": [{\"dst\": "
	              "\"::/0\"}]}, \"dns\": {}}");
	expect_result(
	    CNI_MODE_IPAM, IPAM_CONF("0.3.1"), IPAM_ANSWER,
	    "{\"cniVersion\": \"0.3.1\", \"ips\": [{\"version\": \"4\", \"address\": "
	    "\"10.1.0.7/32\"}, {\"version\": \"6\", \"address\": \"fd80::7/128\"}], " ROUTES
	    ", \"dns\": {}}");
	expect_result(CNI_MODE_IPAM, IPAM_CONF("1.0.0"), IPAM_ANSWER,
	              "{\"cniVersion\": \"1.0.0\", \"ips\": [{\"address\": \"10.1.0.7/32\"}, "
	              "{\"address\": \"fd80::7/128\"}], " ROUTES ", \"dns\": {}}");
	/* Without routes, and with the agent's prefix passed through as it is. */
	expect_result(CNI_MODE_IPAM, "{\"name\": \"n\", \"cniVersion\": \"1.0.0\"}",
	              "{\"ips\": [\"10.1.0.7/26\"]}",
	              "{\"cniVersion\": \"1.0.0\", \"ips\": [{\"address\": \"10.1.0.7/26\"}], "
	              "\"dns\": {}}");
	/* v4 routes have nowhere to go in 0.2.0 without a v4 address. */
	expect_result(CNI_MODE_IPAM, IPAM_CONF("0.1.0"), "{\"ips\": [\"fd80::7/128\"]}",
	              "{\"cniVersion\": \"0.1.0\", \"ip6\": {\"ip\": \"fd80::7/128\", \"routes\": "
	              "[{\"dst\": \"::/0\"}]}, \"dns\": {}}");
}

static void test_result_errors(void **state)
{
	static const struct {
		enum cni_mode mode;
		const char *answer, *msg;
	} cases[] = {
	    {CNI_MODE_NET, "{}", "the tabby agent answered no addresses"},
	    {CNI_MODE_NET, "null", "the tabby agent answered no addresses"},
	    {CNI_MODE_IPAM, "{\"ips\": []}", "the tabby agent answered no addresses"},
	    {CNI_MODE_IPAM, "{\"ips\": \"10.1.0.7/32\"}", "the tabby agent answered no addresses"},
	    {CNI_MODE_IPAM, "{\"ips\": [\"10.1.0.7\"]}",
	     "the tabby agent answered a malformed address: \"10.1.0.7\""},
	    {CNI_MODE_IPAM, "{\"ips\": [7]}", "the tabby agent answered a malformed address"},
	    {CNI_MODE_NET, "{\"ips\": [\"10.1.0.7/32\"]}",
	     "the tabby agent answered no valid host interface name"},
	    {CNI_MODE_NET, "{\"ips\": [\"10.1.0.7/32\"], \"interface\": \"cali0123456789abc\"}",
	     "the tabby agent answered no valid host interface name: \"cali0123456789abc\""},
	    {CNI_MODE_NET, "{\"ips\": [\"10.1.0.7/32\"], \"interface\": \"c\", \"mac\": \"0a:58\"}",
	     "the tabby agent answered a malformed MAC address: \"0a:58\""},
	    {CNI_MODE_NET, "{\"ips\": [\"10.1.0.7/32\"], \"interface\": \"c\", \"sandbox\": 1}",
	     "the tabby agent answered a sandbox that is not a string"},
	};
	struct cni_env env = env_add();
	struct cni_call call;
	struct cni_error err;
	json_t *a, *res;
	(void)state;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		parse_ok(cases[i].mode, &env, "{\"name\": \"n\", \"cniVersion\": \"1.0.0\"}",
		         &call);
		a = json_loads(cases[i].answer, JSON_DECODE_ANY, NULL);
		res = (json_t *)&err; /* must be reset */
		assert_int_equal(cni_format_result(&call, a, &res, &err), -1);
		assert_null(res);
		assert_int_equal(err.code, CNI_ERR_INTERNAL);
		if (strstr(err.msg, cases[i].msg) == NULL)
			fail_msg("answer %s: got \"%s\", want \"%s\"", cases[i].answer, err.msg,
			         cases[i].msg);
		json_decref(a);
		cni_call_free(&call);
	}
}

static void test_error_json(void **state)
{
	struct cni_error err;
	json_t *e;
	(void)state;

	cni_error_set(&err, CNI_ERR_CONFIG, NULL, "invalid characters in network name \"%s\"",
	              "a b");
	e = cni_format_error("0.2.0", &err);
	assert_json(e, "{\"cniVersion\": \"0.2.0\", \"code\": 7, \"msg\": \"invalid characters in "
	               "network name \\\"a b\\\"\", \"details\": \"\"}");
	json_decref(e);
	cni_error_set(&err, CNI_ERR_ALLOC, "exhausted", "no free address in 10.1.0.0/16");
	e = cni_format_error("1.0.0", &err);
	assert_json(e, "{\"cniVersion\": \"1.0.0\", \"code\": 100, \"msg\": \"no free address in "
	               "10.1.0.0/16\", \"details\": \"exhausted\"}");
	json_decref(e);
	/* Bytes from the environment that are not UTF-8 do not lose the error. */
	cni_error_set(&err, CNI_ERR_ENV, NULL, "CNI_IFNAME \"%s\" is bad", "a\xff");
	e = cni_format_error("0.2.0", &err);
	assert_non_null(e);
	assert_string_equal(json_string_value(json_object_get(e, "msg")),
	                    "CNI_IFNAME \"a?\" is bad");
	json_decref(e);
	/* Whole characters beside a broken one are kept. */
	cni_error_set(&err, CNI_ERR_ENV, NULL, "CNI_IFNAME \"%s\" is bad", "\xc3\xa9\xff");
	e = cni_format_error("0.2.0", &err);
	assert_string_equal(json_string_value(json_object_get(e, "msg")),
	                    "CNI_IFNAME \"\xc3\xa9?\" is bad");
	json_decref(e);
	/* A message is cut, never overflows. */
	char big[3000];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	cni_error_set(&err, CNI_ERR_INTERNAL, big, "%s", big);
	assert_int_equal(strlen(err.msg), CNI_MSG_MAX - 1);
	assert_int_equal(strlen(err.details), CNI_MSG_MAX - 1);
}

static void test_agent_errors(void **state)
{
	static const struct {
		enum cni_cmd cmd;
		int status;
		const char *body; /* NULL: none */
		int code;
		const char *msg, *details;
	} cases[] = {
	    {CNI_CMD_ADD, 409,
	     "{\"error\": {\"code\": \"exhausted\", \"message\": \"no free "
	     "address\"}}",
	     CNI_ERR_ALLOC, "no free address", "exhausted"},
	    {CNI_CMD_ADD, 409,
	     "{\"error\": {\"code\": \"in_use\", \"message\": \"10.1.0.7 is in "
	     "use\"}}",
	     CNI_ERR_ALLOC, "10.1.0.7 is in use", "in_use"},
	    {CNI_CMD_ADD, 409, "{\"error\": {\"code\": \"conflict\", \"message\": \"m\"}}",
	     CNI_ERR_ALLOC, "m", "conflict"},
	    {CNI_CMD_ADD, 409, NULL, CNI_ERR_ALLOC,
	     "the tabby agent answered HTTP 409 without an error message", "HTTP 409"},
	    /* found by fuzz_cni: an empty message is no message */
	    {CNI_CMD_ADD, 409, "{\"error\": {\"code\": \"exhausted\", \"message\": \"\"}}",
	     CNI_ERR_ALLOC, "the tabby agent answered HTTP 409 without an error message",
	     "exhausted"},
	    {CNI_CMD_ADD, 400,
	     "{\"error\": {\"code\": \"invalid\", \"message\": \"node host-2 is "
	     "not this agent's node host-1\"}}",
	     CNI_ERR_CONFIG, "node host-2 is not this agent's node host-1", "invalid"},
	    {CNI_CMD_ADD, 404,
	     "{\"error\": {\"code\": \"not_found\", \"message\": \"no pool "
	     "10.9.0.0/16\"}}",
	     CNI_ERR_CONFIG, "no pool 10.9.0.0/16", "not_found"},
	    {CNI_CMD_ADD, 503,
	     "{\"error\": {\"code\": \"unavailable\", \"message\": \"no "
	     "leader\"}}",
	     CNI_ERR_TRY_AGAIN, "no leader", "unavailable"},
	    {CNI_CMD_DEL, 503, NULL, CNI_ERR_TRY_AGAIN, "HTTP 503", "HTTP 503"},
	    {CNI_CMD_ADD, 500, "{\"error\": {\"code\": \"internal\", \"message\": \"lmdb\"}}",
	     CNI_ERR_INTERNAL, "lmdb", "internal"},
	    {CNI_CMD_ADD, 500,
	     "{\"error\": {\"code\": \"wiring_failed\", \"message\": \"cannot create veth\"}}",
	     CNI_ERR_WIRE, "cannot create veth", "wiring_failed"},
	    {CNI_CMD_ADD, 500, "{\"error\": {\"code\": \"other\", \"message\": \"m\"}}",
	     CNI_ERR_WIRE, "m", "other"},
	    {CNI_CMD_ADD, 502, NULL, CNI_ERR_WIRE, "HTTP 502", "HTTP 502"},
	    {CNI_CMD_DEL, 500, "{\"error\": {\"code\": \"wiring_failed\", \"message\": \"x\"}}",
	     CNI_ERR_WIRE, "x", "wiring_failed"},
	    {CNI_CMD_DEL, 500, "{\"error\": {\"code\": \"other\", \"message\": \"x\"}}",
	     CNI_ERR_INTERNAL, "x", "other"},
	    {CNI_CMD_CHECK, 409,
	     "{\"error\": {\"code\": \"check_failed\", \"message\": \"the runtime's previous "
	     "result lists\"}}",
	     CNI_ERR_CHECK, "the runtime's previous result lists", "check_failed"},
	    {CNI_CMD_CHECK, 404,
	     "{\"error\": {\"code\": \"not_found\", \"message\": \"eth0 in "
	     "/var/run/netns/x has no address 10.1.0.5/32\"}}",
	     CNI_ERR_CHECK, "eth0 in /var/run/netns/x has no address 10.1.0.5/32", "not_found"},
	    {CNI_CMD_CHECK, 409, "{\"error\": {\"code\": \"conflict\", \"message\": \"m\"}}",
	     CNI_ERR_CHECK, "m", "conflict"},
	    {CNI_CMD_CHECK, 500, "{\"error\": {\"code\": \"internal\", \"message\": \"m\"}}",
	     CNI_ERR_CHECK, "m", "internal"},
	    {CNI_CMD_CHECK, 400, "{\"error\": {\"code\": \"invalid\", \"message\": \"m\"}}",
	     CNI_ERR_CONFIG, "m", "invalid"},
	    {CNI_CMD_CHECK, 503, NULL, CNI_ERR_TRY_AGAIN, "HTTP 503", "HTTP 503"},
	};
	struct cni_error err;
	json_t *body;
	(void)state;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		body = cases[i].body != NULL ? load(cases[i].body) : NULL;
		cni_agent_error(cases[i].cmd, cases[i].status, body, &err);
		if (err.code != cases[i].code || strstr(err.msg, cases[i].msg) == NULL ||
		    strcmp(err.details, cases[i].details) != 0)
			fail_msg("case %zu: got %d \"%s\" \"%s\"", i, err.code, err.msg,
			         err.details);
		json_decref(body);
	}
}

static void test_client_errors(void **state)
{
	struct cni_error err;
	(void)state;

	cni_client_error("/run/tabby/tabby.sock", API_ECONNECT,
	                 "cannot connect to unix:/run/tabby/tabby.sock: Connection refused", &err);
	assert_int_equal(err.code, CNI_ERR_TRY_AGAIN);
	assert_string_equal(
	    err.msg, "cannot reach the tabby agent at /run/tabby/tabby.sock: Connection refused");
	assert_non_null(strstr(err.details, "is the tabby agent running?"));
	cni_client_error("/x.sock", API_ETIMEDOUT, "no answer from unix:/x.sock within 60000 ms",
	                 &err);
	assert_int_equal(err.code, CNI_ERR_TRY_AGAIN);
	assert_string_equal(err.msg, "cannot reach the tabby agent at /x.sock: no answer from "
	                             "unix:/x.sock within 60000 ms");
	cni_client_error("/x.sock", API_EIO, NULL, &err);
	assert_int_equal(err.code, CNI_ERR_TRY_AGAIN);
	assert_non_null(strstr(err.msg, "/x.sock"));
	cni_client_error("/x.sock", API_EPROTO, "invalid JSON from unix:/x.sock: x", &err);
	assert_int_equal(err.code, CNI_ERR_INTERNAL);
	assert_string_equal(
	    err.msg, "talking to the tabby agent at /x.sock: invalid JSON from unix:/x.sock: x");
}

static void test_prefix_parse(void **state)
{
	char buf[64];
	int family = 0;
	(void)state;

	assert_true(cni_prefix_parse("10.1.0.7/24", buf, sizeof buf, &family));
	assert_string_equal(buf, "10.1.0.7/24");
	assert_int_equal(family, 4);
	assert_true(cni_prefix_parse("FD80:0::7/128", buf, sizeof buf, &family));
	assert_string_equal(buf, "fd80::7/128");
	assert_int_equal(family, 6);
	assert_true(cni_prefix_parse("::/0", buf, sizeof buf, &family));
	assert_false(cni_prefix_parse("10.1.0.7", buf, sizeof buf, &family));
	assert_false(cni_prefix_parse("10.1.0.7/", buf, sizeof buf, &family));
	assert_false(cni_prefix_parse("10.1.0.7/33", buf, sizeof buf, &family));
	assert_false(cni_prefix_parse("10.1.0.7/+1", buf, sizeof buf, &family));
	assert_false(cni_prefix_parse("10.1.0.7/0032", buf, sizeof buf, &family));
	assert_false(cni_prefix_parse("fd80::7/129", buf, sizeof buf, &family));
	assert_false(cni_prefix_parse("/24", buf, sizeof buf, &family));
	assert_false(cni_prefix_parse("x/24", buf, sizeof buf, &family));
	assert_false(cni_prefix_parse("10.1.0.7/24", buf, 8, &family)); /* does not fit */
}

/* ------------------------------------------------------------------------------------------ */
/* The binary                                                                                  */

struct run {
	int status; /* exit status, or -1 if it did not exit normally */
	char out[8192];
	char err[8192];
};

static void read_fd(int fd, char *buf, size_t len)
{
	size_t n = 0;
	ssize_t got;

	while (n + 1 < len && (got = read(fd, buf + n, len - 1 - n)) > 0)
		n += (size_t)got;
	buf[n] = '\0';
	close(fd);
}

/* Run the plugin as argv0 (a path) with exactly the environment envp and input on stdin. */
static void run_plugin(const char *argv0, char *const envp[], const char *input, struct run *r)
{
	int in[2], out[2], err[2], status;
	pid_t pid;

	assert_int_equal(pipe(in), 0);
	assert_int_equal(pipe(out), 0);
	assert_int_equal(pipe(err), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char *argv[] = {(char *)argv0, NULL};
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(err[1], 2);
		close(in[1]);
		close(out[0]);
		close(err[0]);
		execve(argv0, argv, envp);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	close(err[1]);
	/* Inputs are small: they fit in the pipe, so writing first cannot deadlock. */
	assert_int_equal(write(in[1], input, strlen(input)), (ssize_t)strlen(input));
	close(in[1]);
	read_fd(out[0], r->out, sizeof r->out);
	read_fd(err[0], r->err, sizeof r->err);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	r->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* stdout of r as JSON, which it must be. */
static json_t *run_json(const struct run *r)
{
	json_error_t jerr;
	json_t *v = json_loads(r->out, 0, &jerr);
	if (v == NULL)
		fail_msg("stdout is not JSON (%s):\n%s\nstderr:\n%s", jerr.text, r->out, r->err);
	return v;
}

static void expect_run_error(const struct run *r, int code, const char *msg)
{
	json_t *e = run_json(r);
	const char *m = json_string_value(json_object_get(e, "msg"));

	if (r->status != 1 || json_integer_value(json_object_get(e, "code")) != code || m == NULL ||
	    strstr(m, msg) == NULL)
		fail_msg("status %d, stdout:\n%s\nexpected error %d with \"%s\"\nstderr:\n%s",
		         r->status, r->out, code, msg, r->err);
	assert_non_null(json_object_get(e, "cniVersion"));
	assert_non_null(json_object_get(e, "details"));
	json_decref(e);
}

#define NOSOCK "/nonexistent/tabby-cni-test.sock"

static void test_binary_version(void **state)
{
	char *env[] = {"CNI_COMMAND=VERSION", NULL};
	struct run r;
	json_t *v;
	(void)state;

	run_plugin(plugin_path, env, "{\"cniVersion\": \"0.3.1\"}", &r);
	assert_int_equal(r.status, 0);
	v = run_json(&r);
	assert_json(v, "{\"cniVersion\": \"0.3.1\", \"supportedVersions\": [\"0.1.0\", \"0.2.0\", "
	               "\"0.3.0\", \"0.3.1\", \"0.4.0\", \"1.0.0\"]}");
	json_decref(v);
	run_plugin(plugin_path, env, "", &r);
	assert_int_equal(r.status, 0);
	v = run_json(&r);
	assert_string_equal(json_string_value(json_object_get(v, "cniVersion")), "1.0.0");
	json_decref(v);
}

/* No agent: error 11 naming the socket, for ADD, DEL and CHECK; the etcd keys are named on
 * stderr, once. */
static void test_binary_no_agent(void **state)
{
	char *add[] = {"CNI_COMMAND=ADD",
	               "CNI_CONTAINERID=c1",
	               "CNI_NETNS=" NETNS,
	               "CNI_IFNAME=eth0",
	               "CNI_PATH=/usr/lib/cni",
	               "TABBY_SOCKET=" NOSOCK,
	               NULL};
	char *del[] = {"CNI_COMMAND=DEL", "CNI_CONTAINERID=c1", "CNI_IFNAME=eth0", NULL};
	char *check[] = {"CNI_COMMAND=CHECK", "CNI_CONTAINERID=c1", "CNI_NETNS=" NETNS,
	                 "CNI_IFNAME=eth0", NULL};
	const char *seed =
	    "{\"name\": \"calico-net-1\", \"type\": \"calico\", \"ipam\": {\"type\": "
	    "\"calico-ipam\"}, \"etcd_endpoints\": \"http://<etcd-ip:port>:2379\"}";
	struct run r;
	json_t *e;
	const char *first;
	(void)state;

	run_plugin(plugin_path, add, seed, &r);
	expect_run_error(&r, CNI_ERR_TRY_AGAIN, "cannot reach the tabby agent at " NOSOCK ": ");
	e = run_json(&r);
	assert_string_equal(json_string_value(json_object_get(e, "cniVersion")), "0.2.0");
	json_decref(e);
	first = strstr(r.err, "ignoring etcd_endpoints");
	assert_non_null(first);
	assert_null(strstr(first + 1, "ignoring"));

	/* agent_socket from the configuration; DEL without CNI_NETNS gets as far as the agent. */
	run_plugin(plugin_path, del,
	           "{\"name\": \"n\", \"cniVersion\": \"1.0.0\", \"agent_socket\": \"" NOSOCK "\"}",
	           &r);
	expect_run_error(&r, CNI_ERR_TRY_AGAIN, "cannot reach the tabby agent at " NOSOCK);
	e = run_json(&r);
	assert_string_equal(json_string_value(json_object_get(e, "cniVersion")), "1.0.0");
	json_decref(e);

	run_plugin(plugin_path, check,
	           "{\"name\": \"n\", \"cniVersion\": \"0.4.0\", \"agent_socket\": \"" NOSOCK "\"}",
	           &r);
	expect_run_error(&r, CNI_ERR_TRY_AGAIN, NOSOCK);
}

static void test_binary_refusals(void **state)
{
	char *add[] = {"CNI_COMMAND=ADD", "CNI_CONTAINERID=c1",   "CNI_NETNS=" NETNS,
	               "CNI_IFNAME=eth0", "TABBY_SOCKET=" NOSOCK, NULL};
	char *no_cmd[] = {"CNI_CONTAINERID=c1", NULL};
	struct run r;
	(void)state;

	run_plugin(plugin_path, add, "{\"name\": \"calico net\"}", &r);
	expect_run_error(&r, CNI_ERR_CONFIG, "invalid characters in network name \"calico net\"");
	run_plugin(plugin_path, add, "{not json", &r);
	expect_run_error(&r, CNI_ERR_DECODE, "cannot decode the network configuration");
	run_plugin(plugin_path, add, "{\"name\": \"n\", \"cniVersion\": \"0.9.0\"}", &r);
	expect_run_error(&r, CNI_ERR_VERSION, "CNI version \"0.9.0\" is not supported");
	run_plugin(plugin_path, no_cmd, "{\"name\": \"n\"}", &r);
	expect_run_error(&r, CNI_ERR_ENV, "CNI_COMMAND is not set");
}

/* A log line longer than the plugin's line buffer comes out whole: one line, with its head, the
 * whole message and the newline. The refused container ID is in it, 1,500 bytes. */
static void test_binary_long_log_line(void **state)
{
	char id[1600] = "CNI_CONTAINERID=";
	char *env[] = {"CNI_COMMAND=ADD",      id,  "CNI_NETNS=" NETNS, "CNI_IFNAME=eth0",
	               "TABBY_SOCKET=" NOSOCK, NULL};
	char want[1700];
	struct run r;
	(void)state;

	size_t at = strlen(id);
	memset(id + at, 'a', 1500);
	id[at + 1500] = '\0';
	snprintf(want, sizeof want, "] warning: ADD %s: error %d: %s\n", id + at, CNI_ERR_ENV,
	         "CNI_CONTAINERID is longer than 253 bytes");
	run_plugin(plugin_path, env, "{\"name\": \"n\", \"cniVersion\": \"1.0.0\"}", &r);
	expect_run_error(&r, CNI_ERR_ENV, "CNI_CONTAINERID is longer than 253 bytes");
	const char *msg = strstr(r.err, want);
	if (msg == NULL)
		fail_msg("stderr lacks the whole line:\n%s", r.err);
	const char *start = msg;
	while (start > r.err && start[-1] != '\n')
		start--;
	assert_true(strncmp(start, "20", 2) == 0); /* the timestamp */
	assert_non_null(strstr(start, " tabby-cni["));
	assert_true(strstr(start, " tabby-cni[") < msg);
}

/* The names: tabby-ipam and calico-ipam need no CNI_NETNS (they get as far as the socket),
 * tabby and calico do. */
static void test_binary_names(void **state)
{
	static const char *const names[] = {"tabby", "calico", "tabby-ipam", "calico-ipam"};
	char *env[] = {"CNI_COMMAND=ADD", "CNI_CONTAINERID=c1", "CNI_IFNAME=eth0",
	               "TABBY_SOCKET=" NOSOCK, NULL};
	char dir[] = "/tmp/tabby-cni-test-XXXXXX", link[128], abs[4096];
	struct run r;
	(void)state;

	assert_non_null(mkdtemp(dir));
	assert_non_null(realpath(plugin_path, abs));
	for (size_t i = 0; i < 4; i++) {
		snprintf(link, sizeof link, "%s/%s", dir, names[i]);
		assert_int_equal(symlink(abs, link), 0);
		run_plugin(link, env, "{\"name\": \"n\", \"cniVersion\": \"0.3.1\"}", &r);
		unlink(link);
		if (strstr(names[i], "-ipam") != NULL)
			expect_run_error(&r, CNI_ERR_TRY_AGAIN, NOSOCK);
		else
			expect_run_error(&r, CNI_ERR_ENV, "CNI_NETNS is not set");
		/* stderr names the plugin by the name it was run as */
		if (strstr(r.err, names[i]) == NULL)
			fail_msg("stderr does not name %s:\n%s", names[i], r.err);
	}
	assert_int_equal(rmdir(dir), 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mode_from_argv0),
	    cmocka_unit_test(test_calico_minimal_mesos),
	    cmocka_unit_test(test_seed_config),
	    cmocka_unit_test(test_every_key),
	    cmocka_unit_test(test_node_and_small_keys),
	    cmocka_unit_test(test_assign_flags),
	    cmocka_unit_test(test_config_errors),
	    cmocka_unit_test(test_ipam_mode),
	    cmocka_unit_test(test_env_errors),
	    cmocka_unit_test(test_cni_args),
	    cmocka_unit_test(test_decode_and_versions),
	    cmocka_unit_test(test_version_command),
	    cmocka_unit_test(test_prev_result),
	    cmocka_unit_test(test_label_sanitize),
	    cmocka_unit_test(test_labels),
	    cmocka_unit_test(test_result_shapes),
	    cmocka_unit_test(test_ipam_results),
	    cmocka_unit_test(test_result_errors),
	    cmocka_unit_test(test_error_json),
	    cmocka_unit_test(test_agent_errors),
	    cmocka_unit_test(test_client_errors),
	    cmocka_unit_test(test_prefix_parse),
	    cmocka_unit_test(test_binary_version),
	    cmocka_unit_test(test_binary_no_agent),
	    cmocka_unit_test(test_binary_refusals),
	    cmocka_unit_test(test_binary_long_log_line),
	    cmocka_unit_test(test_binary_names),
	};

	if (argc < 2) {
		fprintf(stderr, "usage: %s PATH-OF-tabby-cni\n", argv[0]);
		return 2;
	}
	plugin_path = argv[1];
	return cmocka_run_group_tests(tests, NULL, NULL);
}
