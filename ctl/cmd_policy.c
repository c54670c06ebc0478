/* tabby policy trace: why a packet is allowed or dropped, asked of the agent or, with --file,
 * worked out here from the resources of a file. */
#include "ctl/ctl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

/* Longest file --file reads: far more than any policy file, small enough to hold in memory. */
#define FILE_MAX (64u << 20)

/* ---- text output ---- */

static const char *str(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s != NULL ? s : "";
}

/* "192.168.0.5:80", "[fd00::1]:80", or with "*" for an unknown port. */
static void put_endpoint_port(FILE *f, const char *addr, const json_t *port, bool ports)
{
	bool v6 = strchr(addr, ':') != NULL;

	if (!ports) {
		fputs(addr, f);
		return;
	}
	fprintf(f, "%s%s%s:", v6 ? "[" : "", addr, v6 ? "]" : "");
	if (json_is_integer(port))
		fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(port));
	else
		fputc('*', f);
}

static bool has_ports(const json_t *proto)
{
	const char *p = json_string_value(proto);

	return p != NULL && (strcmp(p, "tcp") == 0 || strcmp(p, "udp") == 0 ||
	                     strcmp(p, "sctp") == 0 || strcmp(p, "udplite") == 0);
}

/* "tcp 192.168.0.5:* -> 192.168.0.9:80", "icmp 10.0.0.1 -> 10.0.0.2 type 8 code 0". */
static void put_flow(FILE *f, const json_t *flow, bool swap)
{
	const json_t *proto = json_object_get(flow, "protocol");
	const char *src = str(flow, swap ? "dst" : "src");
	const char *dst = str(flow, swap ? "src" : "dst");
	const json_t *sport = json_object_get(flow, swap ? "port" : "srcPort");
	const json_t *dport = json_object_get(flow, swap ? "srcPort" : "port");
	const json_t *type = json_object_get(flow, "icmpType");
	const json_t *code = json_object_get(flow, "icmpCode");
	const char *pname = json_is_string(proto) ? json_string_value(proto) : "";
	bool ports = has_ports(proto);

	if (pname[0] != '\0')
		fprintf(f, "%s ", pname);
	else
		fprintf(f, "protocol %" JSON_INTEGER_FORMAT " ", json_integer_value(proto));
	put_endpoint_port(f, src, sport, ports);
	fputs(" -> ", f);
	put_endpoint_port(f, dst, dport, ports);
	if (json_is_integer(type)) {
		json_int_t t = json_integer_value(type);
		/* The opening packet of an echo reply is the echo request (as the evaluator
		 * decides it). */
		if (swap && t == 0 && strcmp(pname, "icmp") == 0)
			t = 8;
		else if (swap && t == 129 && strcmp(pname, "icmpv6") == 0)
			t = 128;
		fprintf(f, " type %" JSON_INTEGER_FORMAT, t);
	}
	if (json_is_integer(code))
		fprintf(f, " code %" JSON_INTEGER_FORMAT, json_integer_value(code));
}

/* Who one side is: "cni/c1/eth0 (node host-1)" for a workload endpoint (its key without the
 * node), "host endpoint eth1 (node host-1)", "node host-1 (10.0.7.1)", or the address. */
static void put_who(FILE *f, const json_t *side, const char *addr)
{
	const char *key = json_string_value(json_object_get(side, "endpoint"));
	const char *node = json_string_value(json_object_get(side, "node"));
	const char *slash = key != NULL ? strchr(key, '/') : NULL;

	if (slash != NULL && strchr(slash + 1, '/') != NULL)
		fprintf(f, "%s (node %.*s, %s)", slash + 1, (int)(slash - key), key, addr);
	else if (slash != NULL)
		fprintf(f, "host endpoint %s (node %.*s, %s)", slash + 1, (int)(slash - key), key,
		        addr);
	else if (node != NULL)
		fprintf(f, "node %s (%s)", node, addr);
	else
		fputs(addr, f);
}

static void put_step(FILE *f, const json_t *step, const char *dir)
{
	const char *outcome = str(step, "outcome");
	const json_t *rule = json_object_get(step, "rule");
	const json_t *logged = json_object_get(step, "logged");

	fprintf(f, "  %s %s: ", str(step, "kind"), str(step, "name"));
	if (json_is_true(json_object_get(step, "missing")))
		fputs("not found (matches nothing)", f);
	else if (strcmp(outcome, "no-match") == 0)
		fputs("no match", f);
	else
		fprintf(f, "%s (%s rule %" JSON_INTEGER_FORMAT ")%s", outcome, dir,
		        json_integer_value(rule),
		        strcmp(outcome, "pass") == 0 ? ", skipping to the profiles" : "");
	for (size_t i = 0; i < json_array_size(logged); i++)
		fprintf(f, "%s%" JSON_INTEGER_FORMAT, i == 0 ? "; logged by rule " : ", ",
		        json_integer_value(json_array_get(logged, i)));
	fputc('\n', f);
}

static bool side_ok(const json_t *side)
{
	return json_is_object(side) && json_is_array(json_object_get(side, "steps")) &&
	       json_is_string(json_object_get(side, "reason"));
}

static void put_side(FILE *f, const json_t *side, const char *dir, const char *addr)
{
	const json_t *steps = json_object_get(side, "steps");

	fprintf(f, "\n%s of ", dir);
	put_who(f, side, addr);
	fprintf(f, ": %s\n", str(side, "reason"));
	for (size_t i = 0; i < json_array_size(steps); i++)
		put_step(f, json_array_get(steps, i), dir);
}

int ctl_policy_trace_text(FILE *f, const json_t *answer)
{
	const json_t *flow = json_object_get(answer, "flow");
	const json_t *egress = json_object_get(answer, "egress");
	const json_t *ingress = json_object_get(answer, "ingress");
	const char *verdict = json_string_value(json_object_get(answer, "verdict"));
	bool reply;

	/* Checked before anything is printed, so that a bad answer prints nothing. */
	if (!json_is_object(flow) || verdict == NULL || !side_ok(egress) || !side_ok(ingress))
		return -1;
	reply = json_is_true(json_object_get(flow, "reply"));
	fprintf(f, "verdict: %s\n", strcmp(verdict, "allow") == 0 ? "ALLOW" : "DENY");
	fputs("flow: ", f);
	put_flow(f, flow, false);
	fputs(reply ? " (a reply)\n" : "\n", f);
	/* A reply is decided by the packet that opened its connection: the sides below are that
	 * packet's, so name it. */
	if (reply) {
		fputs("opening packet: ", f);
		put_flow(f, flow, true);
		fputc('\n', f);
	}
	put_side(f, egress, "egress", str(flow, reply ? "dst" : "src"));
	put_side(f, ingress, "ingress", str(flow, reply ? "src" : "dst"));
	return 0;
}

/* ---- the command ---- */

/* The model of the resources in a file (ipPools and bgpPeers are not part of it). */
static int file_model(struct ctl_ctx *ctx, const char *path, struct policy_model **out)
{
	const char *name = strcmp(path, "-") == 0 ? "standard input" : path;
	struct policy_model *m = NULL;
	json_t *raw = NULL;
	json_t *norm = NULL;
	char err[1024];
	char *text;
	size_t len;
	size_t i;
	int rv;

	*out = NULL;
	rv = ctl_read_file(ctx, path, FILE_MAX, &text, &len);
	if (rv != 0)
		return rv;
	if (ctl_resource_read(name, text, len, &raw, &norm, err, sizeof(err)) != 0) {
		rv = ctl_fail(ctx, "%s", err);
		goto out;
	}
	m = policy_model_new();
	if (m == NULL) {
		rv = ctl_fail(ctx, "out of memory");
		goto out;
	}
	for (i = 0; i < json_array_size(norm); i++) {
		const json_t *r = json_array_get(norm, i);
		char key[POLICY_KEY_MAX];
		enum policy_kind kind = policy_resource_key(r, key, sizeof(key));

		if (kind == POLICY_KIND_IPPOOL || kind == POLICY_KIND_BGPPEER)
			continue;
		if (policy_model_put(m, r, err, sizeof(err)) != 0) {
			rv = ctl_fail(ctx, "%s: %s", name, err);
			goto out;
		}
	}
	*out = m;
	m = NULL;
out:
	policy_model_free(m);
	json_decref(raw);
	json_decref(norm);
	free(text);
	return rv;
}

/* An integer flag in lo..hi into the request as field. Returns 0 or 2. */
static int int_field(struct ctl_ctx *ctx, json_t *req, const char *flag, const char *field,
                     int64_t lo, int64_t hi)
{
	int64_t v = -1;

	if (ctl_flag(ctx, flag) == NULL)
		return 0;
	if (ctl_flag_int(ctx, flag, lo, &v) != 0)
		return 2;
	if (v > hi)
		return ctl_usage_error(ctx, "invalid value '%s' for --%s (want %lld-%lld)",
		                       ctl_flag(ctx, flag), flag, (long long)lo, (long long)hi);
	if (json_object_set_new(req, field, json_integer(v)) != 0)
		return ctl_fail(ctx, "out of memory");
	return 0;
}

/* The request of POST /v1/policy/trace from the command line. Returns 0, or 2 (bad command line)
 * or 1 (out of memory) after saying why. */
static int build_request(struct ctl_ctx *ctx, json_t **out)
{
	static const char *const required[] = {"from", "to", "protocol"};
	const char *proto_text = ctl_flag(ctx, "protocol");
	const char *name;
	json_t *req;
	int proto;
	int rv;

	*out = NULL;
	for (int i = 0; i < 3; i++) {
		const char *v = ctl_flag(ctx, required[i]);
		if (v == NULL)
			return ctl_usage_error(ctx, "missing --%s", required[i]);
		if (v[0] == '\0')
			return ctl_usage_error(ctx, "empty value for --%s", required[i]);
	}
	proto = policy_protocol_parse(proto_text);
	if (proto < 1)
		return ctl_usage_error(ctx,
		                       "invalid value '%s' for --protocol (want tcp, udp, icmp, "
		                       "icmpv6, sctp, udplite or a number 1-255)",
		                       proto_text);
	name = policy_protocol_name(proto);
	req = json_pack("{s:s, s:s, s:o}", "from", ctl_flag(ctx, "from"), "to", ctl_flag(ctx, "to"),
	                "protocol", name != NULL ? json_string(name) : json_integer(proto));
	if (req == NULL)
		return ctl_fail(ctx, "out of memory");
	if ((rv = int_field(ctx, req, "port", "port", 1, 65535)) != 0 ||
	    (rv = int_field(ctx, req, "src-port", "srcPort", 1, 65535)) != 0 ||
	    (rv = int_field(ctx, req, "icmp-type", "icmpType", 0, 255)) != 0 ||
	    (rv = int_field(ctx, req, "icmp-code", "icmpCode", 0, 255)) != 0)
		goto err;
	if (ctl_flag(ctx, "reply") != NULL && json_object_set_new(req, "reply", json_true()) != 0)
		goto nomem;
	if (ctl_flag(ctx, "ipv6") != NULL &&
	    json_object_set_new(req, "ipVersion", json_integer(6)) != 0)
		goto nomem;
	*out = req;
	return 0;
nomem:
	rv = ctl_fail(ctx, "out of memory");
err:
	json_decref(req);
	return rv;
}

static int run_trace(struct ctl_ctx *ctx)
{
	const char *file = ctl_flag(ctx, "file");
	struct policy_model *m = NULL;
	json_t *req;
	json_t *answer = NULL;
	char err[512];
	int rv;

	rv = build_request(ctx, &req);
	if (rv != 0)
		return rv;
	if (file != NULL) {
		if (file[0] == '\0') {
			rv = ctl_usage_error(ctx, "empty value for --file");
			goto out;
		}
		rv = file_model(ctx, file, &m);
		if (rv != 0)
			goto out;
		if (policy_trace_request(m, req, &answer, err, sizeof(err)) != 0) {
			rv = ctl_fail(ctx, "%s", err);
			goto out;
		}
	} else {
		rv = ctl_call(ctx, "POST", "/v1/policy/trace", req, &answer);
		if (rv != 0)
			goto out;
	}
	if (ctx->json)
		rv = ctl_print_json(ctx, answer);
	else if (ctl_policy_trace_text(ctx->out, answer) != 0)
		rv = ctl_fail(ctx, "unexpected answer: not a trace");
out:
	json_decref(answer);
	json_decref(req);
	policy_model_free(m);
	return rv;
}

static const struct ctl_flag trace_flags[] = {
    {"from", 0, "SRC", "the sender: an address, workload endpoint, workload or host:NODE"},
    {"to", 0, "DST", "the receiver, written as for --from"},
    {"protocol", 0, "P", "tcp, udp, icmp, icmpv6, sctp, udplite or a number 1-255"},
    {"port", 0, "N", "destination port (tcp, udp, sctp, udplite)"},
    {"src-port", 0, "N", "source port"},
    {"icmp-type", 0, "T", "ICMP type (icmp, icmpv6)"},
    {"icmp-code", 0, "C", "ICMP code (needs --icmp-type)"},
    {"reply", 0, NULL, "trace a reply packet: allowed exactly when its opening packet is"},
    {"ipv6", '6', NULL, "resolve SRC and DST to IPv6 addresses"},
    {"file", 'f', "FILE", "trace against the resources in FILE (- for stdin), not the agent"},
    {0},
};

static const struct ctl_command trace_command = {
    .name = "trace",
    .usage_args = "--from SRC --to DST --protocol P",
    .summary = "show why a packet is allowed or dropped",
    .description =
        "Show the verdict on a packet from SRC to DST and, for the sender's egress and the "
        "receiver's\ningress, every policy and profile consulted, what it did, and the rule "
        "that decided\n(counting from 0). SRC and DST are an address, a workload endpoint key "
        "NODE/ORCH/WORKLOAD/NAME,\na workload WORKLOAD or WORKLOAD/NAME when unique, a host "
        "endpoint NODE/NAME, or host:NODE;\nboth are resolved in one IP version (IPv4 when "
        "both have one, unless -6). With --file the\ntrace is worked out from the resources "
        "in the file, with no agent. Exits 0 whatever the\nverdict, 1 when the trace could "
        "not be made.",
    .flags = trace_flags,
    .client = true,
    .run = run_trace,
};

static const struct ctl_command *const policy_subcommands[] = {
    &trace_command,
    NULL,
};

const struct ctl_command ctl_policy_command = {
    .name = "policy",
    .summary = "trace network policy",
    .description = "Work with network policy.",
    .subcommands = policy_subcommands,
};
