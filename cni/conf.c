/*
 * One CNI call (environment + network configuration) -> the agent's request (cni.h).
 *
 * The order of the checks decides which error a caller sees when several things are wrong: the
 * command first (nothing else means anything without it), then whether the configuration is
 * JSON at all and which cniVersion it asks for (so every later error is printed in the right
 * version), then the environment, then the configuration keys.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cni/cni.h"
#include "ipam/ipam.h"

/* In order: the index decides the result shape and whether CHECK exists. */
static const char *const versions[] = {"0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"};
#define N_VERSIONS    (sizeof versions / sizeof versions[0])
#define VERSION_040   4 /* the first version with CHECK */
#define VERSIONS_TEXT "0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0"

/* The keys of Calico's etcd datastore: meaningless to Tabby, accepted so that existing
 * configurations work unchanged, and named in one log line. */
static const char *const ignored_keys[] = {
    "etcd_endpoints", "etcd_authority",    "etcd_scheme",        "etcd_key_file",
    "etcd_cert_file", "etcd_ca_cert_file", "etcd_discovery_srv", "datastore_type",
};

/* The agent's limits (agent/cni_state.c), so that nothing it would refuse is sent. */
#define CONTAINER_MAX 253
#define WORKLOAD_MAX  128
#define NETWORK_MAX   253
#define PROFILE_MAX   128
#define NODE_MAX      253
#define NETNS_MAX     1024
#define MTU_MIN       68 /* the kernel's ETH_MIN_MTU: a veth refuses less */
#define MTU_MAX       65535

void cni_error_set(struct cni_error *err, int code, const char *details, const char *fmt, ...)
{
	va_list ap;

	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof err->msg, fmt, ap);
	va_end(ap);
	snprintf(err->details, sizeof err->details, "%s", details != NULL ? details : "");
}

static int oom(struct cni_error *err)
{
	cni_error_set(err, CNI_ERR_INTERNAL, NULL, "out of memory");
	return -1;
}

enum cni_mode cni_mode_from_argv0(const char *argv0)
{
	const char *base;
	size_t n;

	if (argv0 == NULL)
		return CNI_MODE_NET;
	base = strrchr(argv0, '/');
	base = base != NULL ? base + 1 : argv0;
	n = strlen(base);
	if (n >= 5 && strcmp(base + n - 5, "-ipam") == 0)
		return CNI_MODE_IPAM;
	return CNI_MODE_NET;
}

const char *cni_request_path(enum cni_cmd cmd)
{
	switch (cmd) {
	case CNI_CMD_ADD:
		return "/v1/cni/add";
	case CNI_CMD_DEL:
		return "/v1/cni/del";
	case CNI_CMD_CHECK:
		return "/v1/cni/check";
	default:
		return NULL;
	}
}

json_t *cni_version_answer(const char *version)
{
	json_t *list = json_array();
	json_t *answer;

	for (size_t i = 0; list != NULL && i < N_VERSIONS; i++) {
		if (json_array_append_new(list, json_string(versions[i])) != 0) {
			json_decref(list);
			return NULL;
		}
	}
	answer = json_pack("{s:s, s:o}", "cniVersion", version, "supportedVersions", list);
	if (answer == NULL)
		json_decref(list);
	return answer;
}

/* -1 when v is not a supported version. */
static int version_index(const char *v)
{
	for (size_t i = 0; i < N_VERSIONS; i++) {
		if (strcmp(v, versions[i]) == 0)
			return (int)i;
	}
	return -1;
}

bool cni_ifname_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 15 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		/* Linux's dev_valid_name() refuses '/', ':' and white space (its isspace() also
		 * counts 0xa0: its ctype table is Latin-1); the agent refuses control characters
		 * as well. */
		if (*p == '/' || *p == ':' || *p <= ' ' || *p == 0x7f || *p == 0xa0)
			return false;
	}
	return true;
}

static bool label_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.';
}

char *cni_label_sanitize(const char *s)
{
	size_t n = strlen(s), j = 0, k = 0, start, end;
	char *t = malloc(n + 1);
	bool in_bad = false;

	if (t == NULL)
		return NULL;
	/* Steps 1 and 2: '/' becomes '.', and each run of other invalid characters one '-'
	 * (byte-wise, so a multi-byte UTF-8 character is one run). */
	for (size_t i = 0; i < n; i++) {
		char c = s[i] == '/' ? '.' : s[i];
		if (label_char_ok(c)) {
			t[j++] = c;
			in_bad = false;
		} else if (!in_bad) {
			t[j++] = '-';
			in_bad = true;
		}
	}
	/* Step 3, in place (the text only shrinks): a run of '.' and '-' holding a '.' -> '.'. */
	for (size_t i = 0; i < j;) {
		bool dot = false;
		if (t[i] != '.' && t[i] != '-') {
			t[k++] = t[i++];
			continue;
		}
		start = i;
		while (i < j && (t[i] == '.' || t[i] == '-'))
			dot |= t[i++] == '.';
		if (dot) {
			t[k++] = '.';
		} else {
			memmove(t + k, t + start, i - start);
			k += i - start;
		}
	}
	/* Step 4: trim '.' and '-' at both ends. */
	start = 0;
	end = k;
	while (start < end && (t[start] == '.' || t[start] == '-'))
		start++;
	while (end > start && (t[end - 1] == '.' || t[end - 1] == '-'))
		end--;
	memmove(t, t + start, end - start);
	t[end - start] = '\0';
	return t;
}

bool cni_prefix_parse(const char *s, char *out, size_t outlen, int *family)
{
	char text[IPAM_ADDR_STRLEN], buf[IPAM_ADDR_STRLEN];
	const char *slash = strchr(s, '/');
	struct ipam_addr a;
	unsigned prefix = 0;
	size_t n;
	int w;

	if (slash == NULL || slash == s || (size_t)(slash - s) >= sizeof text)
		return false;
	memcpy(text, s, (size_t)(slash - s));
	text[slash - s] = '\0';
	if (!ipam_addr_parse(text, &a))
		return false;
	n = strlen(slash + 1);
	if (n == 0 || n > 3)
		return false;
	for (const char *p = slash + 1; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return false;
		prefix = prefix * 10 + (unsigned)(*p - '0');
	}
	if (prefix > (a.family == 4 ? 32u : 128u))
		return false;
	w = snprintf(out, outlen, "%s/%u", ipam_addr_format(&a, buf), prefix);
	if (w < 0 || (size_t)w >= outlen)
		return false;
	*family = a.family;
	return true;
}

/* Append s to the array of strings a unless it is there already. */
static int append_unique(json_t *a, const char *s)
{
	size_t i;
	json_t *v;

	json_array_foreach (a, i, v) {
		if (strcmp(json_string_value(v), s) == 0)
			return 0;
	}
	return json_array_append_new(a, json_string(s));
}

/* Add a requested address: "ADDR", or "ADDR/PREFIX" where prefix_ok (the "ips" capability
 * carries interface addresses; only the address is requested). */
static bool add_ip(json_t *ips, const char *s, bool prefix_ok, bool *oom_out)
{
	char buf[IPAM_CIDR_STRLEN];
	struct ipam_addr a;
	int family;

	if (prefix_ok && strchr(s, '/') != NULL) {
		if (!cni_prefix_parse(s, buf, sizeof buf, &family))
			return false;
		*strchr(buf, '/') = '\0';
	} else {
		if (!ipam_addr_parse(s, &a))
			return false;
		ipam_addr_format(&a, buf);
	}
	if (append_unique(ips, buf) != 0)
		*oom_out = true;
	return true;
}

/* ------------------------------------------------------------------------------------------ */
/* The environment                                                                             */

static int parse_command(const char *s, enum cni_cmd *out, struct cni_error *err)
{
	static const struct {
		const char *name;
		enum cni_cmd cmd;
	} cmds[] = {{"ADD", CNI_CMD_ADD},
	            {"DEL", CNI_CMD_DEL},
	            {"CHECK", CNI_CMD_CHECK},
	            {"VERSION", CNI_CMD_VERSION}};

	if (s == NULL || s[0] == '\0') {
		cni_error_set(err, CNI_ERR_ENV, NULL, "CNI_COMMAND is not set");
		return -1;
	}
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
		if (strcmp(s, cmds[i].name) == 0) {
			*out = cmds[i].cmd;
			return 0;
		}
	}
	cni_error_set(err, CNI_ERR_ENV, NULL,
	              "CNI_COMMAND \"%s\" is not one of ADD, DEL, CHECK, VERSION", s);
	return -1;
}

static bool text_ok(const char *s, size_t max)
{
	return ipam_text_ok(s, strlen(s), 1, max);
}

/* Whether s is made of a-z A-Z 0-9 _ . - and not empty: a container id (CNI 1.0) or a network
 * name, as the agent takes them (the callers check the length first). */
static bool name_ok(const char *s)
{
	if (s[0] == '\0')
		return false;
	for (const char *p = s; *p != '\0'; p++) {
		if (!label_char_ok(*p))
			return false;
	}
	return true;
}

/* A DEL of something no ADD can have made (the agent refuses such names on every command):
 * nothing to delete, so it succeeds without asking the agent, as CNI asks of a DEL of
 * something unknown. Other commands fail with an error saying why. */
static int never_added(struct cni_call *c, struct cni_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int never_added(struct cni_call *c, struct cni_error *err, int code, const char *fmt, ...)
{
	char why[160];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	if (c->cmd == CNI_CMD_DEL) {
		snprintf(c->nothing_to_do, sizeof c->nothing_to_do, "%s: nothing was added", why);
		return 0;
	}
	cni_error_set(err, code, NULL, "%s", why);
	return -1;
}

/* CNI_CONTAINERID, CNI_IFNAME, CNI_NETNS and TABBY_SOCKET into the request. */
static int parse_env(const struct cni_env *env, struct cni_call *c, struct cni_error *err)
{
	const char *id = env->containerid, *ifname = env->ifname, *netns = env->netns;

	if (id == NULL || id[0] == '\0') {
		cni_error_set(err, CNI_ERR_ENV, NULL, "CNI_CONTAINERID is not set");
		return -1;
	}
	if (strlen(id) > CONTAINER_MAX)
		return never_added(c, err, CNI_ERR_ENV, "CNI_CONTAINERID is longer than %d bytes",
		                   CONTAINER_MAX);
	if (!name_ok(id))
		return never_added(c, err, CNI_ERR_ENV,
		                   "CNI_CONTAINERID \"%.64s\" is not valid: only letters, digits, "
		                   "'_', '.' and '-' are allowed (CNI 1.0)",
		                   id);
	/* The endpoint takes the id as its workload name, at most 128 bytes as in Calico. */
	if (c->cmd == CNI_CMD_ADD && c->mode == CNI_MODE_NET && strlen(id) > WORKLOAD_MAX) {
		cni_error_set(
		    err, CNI_ERR_ENV, NULL,
		    "CNI_CONTAINERID is longer than %d bytes, the longest workload name of "
		    "an endpoint",
		    WORKLOAD_MAX);
		return -1;
	}
	if (ifname == NULL || ifname[0] == '\0') {
		cni_error_set(err, CNI_ERR_ENV, NULL, "CNI_IFNAME is not set");
		return -1;
	}
	if (!cni_ifname_ok(ifname))
		return never_added(
		    c, err, CNI_ERR_ENV,
		    "CNI_IFNAME \"%.16s\" is not a valid interface name: 1 to 15 "
		    "bytes, not \".\" or \"..\", no '/', ':', white space or control "
		    "characters",
		    ifname);
	if (netns != NULL && netns[0] == '\0')
		netns = NULL;
	/* The network plugin wires a namespace on ADD and looks at it on CHECK; DEL works without
	 * (Mesos leaves CNI_NETNS out when the namespace is gone), and so does IPAM. */
	if (netns == NULL && c->mode == CNI_MODE_NET && c->cmd != CNI_CMD_DEL) {
		cni_error_set(err, CNI_ERR_ENV, NULL, "CNI_NETNS is not set");
		return -1;
	}
	if (netns != NULL && (netns[0] != '/' || !text_ok(netns, NETNS_MAX))) {
		if (c->cmd == CNI_CMD_DEL) {
			netns = NULL; /* no ADD wired it; the DEL goes on without */
		} else {
			cni_error_set(err, CNI_ERR_ENV, NULL,
			              "CNI_NETNS \"%.64s%s\" is not an absolute path of at most %d "
			              "bytes (the agent opens it)",
			              netns, strlen(netns) > 64 ? "..." : "", NETNS_MAX);
			return -1;
		}
	}
	if (env->socket != NULL && env->socket[0] != '\0') {
		if (strlen(env->socket) >= sizeof c->socket) {
			cni_error_set(err, CNI_ERR_ENV, NULL,
			              "TABBY_SOCKET is longer than %zu bytes (a unix socket path)",
			              sizeof c->socket - 1);
			return -1;
		}
		snprintf(c->socket, sizeof c->socket, "%s", env->socket);
	}
	if (json_object_set_new(c->request, "container", json_string(id)) != 0 ||
	    json_object_set_new(c->request, "ifname", json_string(ifname)) != 0 ||
	    (netns != NULL && json_object_set_new(c->request, "netns", json_string(netns)) != 0))
		return oom(err);
	return 0;
}

/*
 * CNI_ARGS "K=V;K=V": IP=a[,b] adds requested addresses to ips; K8S_POD_NAMESPACE and
 * K8S_POD_NAME together make the workload "<namespace>.<pod>" (calico-behaviour.md 1.3). Every
 * other key is ignored, as IgnoreUnknown=1 asks (Calico sets it for its IPAM plugin anyway).
 */
static int parse_cni_args(const char *args, json_t *req, json_t *ips, struct cni_error *err)
{
	char *copy, *save = NULL, *pair, *ns = NULL, *pod = NULL, *workload = NULL;
	bool nomem = false;
	int rv = -1;

	if (args == NULL || args[0] == '\0')
		return 0;
	copy = strdup(args);
	if (copy == NULL)
		return oom(err);
	for (pair = strtok_r(copy, ";", &save); pair != NULL; pair = strtok_r(NULL, ";", &save)) {
		char *eq = strchr(pair, '='), *v, *vsave = NULL;
		if (eq == NULL || eq == pair) {
			cni_error_set(err, CNI_ERR_ENV, NULL, "CNI_ARGS: \"%s\" is not KEY=VALUE",
			              pair);
			goto out;
		}
		*eq = '\0';
		if (strcmp(pair, "K8S_POD_NAMESPACE") == 0) {
			ns = eq + 1;
		} else if (strcmp(pair, "K8S_POD_NAME") == 0) {
			pod = eq + 1;
		} else if (strcmp(pair, "IP") == 0) {
			if (eq[1] == '\0') {
				cni_error_set(err, CNI_ERR_ENV, NULL,
				              "CNI_ARGS: IP= names no address");
				goto out;
			}
			/* strtok_r would skip empty elements ("a,,b"); they are mistakes. */
			for (v = eq + 1; v != NULL; v = vsave) {
				vsave = strchr(v, ',');
				if (vsave != NULL)
					*vsave++ = '\0';
				if (!add_ip(ips, v, false, &nomem)) {
					cni_error_set(err, CNI_ERR_ENV, NULL,
					              "CNI_ARGS: IP: \"%s\" is not an IP address",
					              v);
					goto out;
				}
			}
		}
	}
	if (ns != NULL && pod != NULL && ns[0] != '\0' && pod[0] != '\0') {
		if (asprintf(&workload, "%s.%s", ns, pod) < 0) {
			workload = NULL;
			nomem = true;
		} else if (!text_ok(workload, CONTAINER_MAX)) {
			cni_error_set(err, CNI_ERR_ENV, NULL,
			              "CNI_ARGS: K8S_POD_NAMESPACE.K8S_POD_NAME \"%s\" is empty, "
			              "longer than %d bytes or has a control character",
			              workload, CONTAINER_MAX);
			goto out;
		} else if (json_object_set_new(req, "orchestrator", json_string("k8s")) != 0 ||
		           json_object_set_new(req, "workload", json_string(workload)) != 0) {
			nomem = true;
		}
	}
	rv = nomem ? oom(err) : 0;
out:
	free(workload);
	free(copy);
	return rv;
}

/* ------------------------------------------------------------------------------------------ */
/* The configuration                                                                           */

static int config_error(struct cni_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int config_error(struct cni_error *err, const char *fmt, ...)
{
	va_list ap;

	err->code = CNI_ERR_CONFIG;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof err->msg, fmt, ap);
	va_end(ap);
	err->details[0] = '\0';
	return -1;
}

/* obj[key] as a string: *out = NULL when absent or null, error when another type. */
static int get_string(const json_t *obj, const char *key, const char *what, const char **out,
                      struct cni_error *err)
{
	json_t *v = json_object_get(obj, key);

	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return config_error(err, "%s must be a string", what);
	*out = json_string_value(v);
	return 0;
}

/* obj[key] as an object: *out = NULL when absent or null, error when another type. */
static int get_object(const json_t *obj, const char *key, const char *what, json_t **out,
                      struct cni_error *err)
{
	json_t *v = json_object_get(obj, key);

	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_object(v))
		return config_error(err, "%s must be an object", what);
	*out = v;
	return 0;
}

/* obj[key] as an array: *out = NULL when absent or null, error when another type. */
static int get_array(const json_t *obj, const char *key, const char *what, json_t **out,
                     struct cni_error *err)
{
	json_t *v = json_object_get(obj, key);

	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_array(v))
		return config_error(err, "%s must be a list", what);
	*out = v;
	return 0;
}

/* ipam.assign_ipv4 / assign_ipv6: Calico's strings "true" / "false", or JSON booleans. */
static int get_flag(const json_t *ipam, const char *key, bool dflt, bool *out,
                    struct cni_error *err)
{
	json_t *v = json_object_get(ipam, key);

	*out = dflt;
	if (v == NULL || json_is_null(v))
		return 0;
	if (json_is_boolean(v)) {
		*out = json_is_true(v);
		return 0;
	}
	if (json_is_string(v) && strcmp(json_string_value(v), "true") == 0) {
		*out = true;
		return 0;
	}
	if (json_is_string(v) && strcmp(json_string_value(v), "false") == 0) {
		*out = false;
		return 0;
	}
	return config_error(err, "ipam.%s must be \"true\" or \"false\"", key);
}

/* ipam.ipv4_pools / ipv6_pools: canonical CIDRs of the family, appended to pools. */
static int get_pools(const json_t *ipam, const char *key, int family, json_t *pools,
                     struct cni_error *err)
{
	char what[32], why[160], buf[IPAM_CIDR_STRLEN];
	struct ipam_cidr cidr;
	json_t *list, *v;
	size_t i;

	snprintf(what, sizeof what, "ipam.%s", key);
	if (get_array(ipam, key, what, &list, err) != 0)
		return -1;
	json_array_foreach (list, i, v) {
		if (!json_is_string(v))
			return config_error(err, "%s: element %zu is not a string", what, i);
		if (!ipam_cidr_parse(json_string_value(v), &cidr, why, sizeof why))
			return config_error(err, "%s: %s", what, why);
		if (cidr.addr.family != family)
			return config_error(err, "%s: %s is not an IPv%d CIDR", what,
			                    json_string_value(v), family);
		if (append_unique(pools, ipam_cidr_format(&cidr, buf)) != 0)
			return oom(err);
	}
	return 0;
}

/* ipam.routes [{"dst": CIDR, "gw": address?}], for the IPAM result, canonical. */
static int get_routes(const json_t *ipam, json_t **out, struct cni_error *err)
{
	char why[160], buf[IPAM_CIDR_STRLEN], gwbuf[IPAM_ADDR_STRLEN];
	json_t *list, *v, *routes, *route;
	struct ipam_cidr dst;
	struct ipam_addr gw;
	const char *gwtext;
	size_t i;

	*out = NULL;
	if (get_array(ipam, "routes", "ipam.routes", &list, err) != 0)
		return -1;
	if (list == NULL)
		return 0;
	routes = json_array();
	if (routes == NULL)
		return oom(err);
	json_array_foreach (list, i, v) {
		if (!json_is_object(v) || !json_is_string(json_object_get(v, "dst"))) {
			config_error(err, "ipam.routes: element %zu has no \"dst\"", i);
			goto err;
		}
		if (!ipam_cidr_parse(json_string_value(json_object_get(v, "dst")), &dst, why,
		                     sizeof why)) {
			config_error(err, "ipam.routes: %s", why);
			goto err;
		}
		route = json_pack("{s:s}", "dst", ipam_cidr_format(&dst, buf));
		if (route == NULL || json_array_append_new(routes, route) != 0) {
			oom(err);
			goto err;
		}
		if (get_string(v, "gw", "ipam.routes[].gw", &gwtext, err) != 0)
			goto err;
		if (gwtext == NULL)
			continue;
		if (!ipam_addr_parse(gwtext, &gw) || gw.family != dst.addr.family) {
			config_error(err,
			             "ipam.routes: gateway \"%s\" of %s is not an IPv%d address",
			             gwtext, buf, dst.addr.family);
			goto err;
		}
		if (json_object_set_new(route, "gw", json_string(ipam_addr_format(&gw, gwbuf))) !=
		    0) {
			oom(err);
			goto err;
		}
	}
	*out = routes;
	return 0;
err:
	json_decref(routes);
	return -1;
}

/* Addresses requested by the configuration: the "ips" capability (runtimeConfig.ips) and the
 * args convention (args.cni.ips), both lists of "ADDR" or "ADDR/PREFIX". */
static int get_ips(const json_t *obj, const char *what, json_t *ips, struct cni_error *err)
{
	bool nomem = false;
	json_t *list, *v;
	size_t i;

	if (get_array(obj, "ips", what, &list, err) != 0)
		return -1;
	json_array_foreach (list, i, v) {
		if (!json_is_string(v))
			return config_error(err, "%s: element %zu is not a string", what, i);
		if (!add_ip(ips, json_string_value(v), true, &nomem))
			return config_error(err, "%s: \"%s\" is not an IP address", what,
			                    json_string_value(v));
		if (nomem)
			return oom(err);
	}
	return 0;
}

/*
 * Mesos NetworkInfo labels (args["org.apache.mesos"].network_info.labels.labels[], each
 * {"key", "value"}) -> the endpoint's labels, key and value sanitized as Calico does. Where
 * Calico silently lets the last of two colliding labels win and keeps an empty key, Tabby
 * refuses the configuration (issue 5): a policy selecting on a label that quietly changed would
 * be wrong without a trace.
 */
static int get_labels(const json_t *args, json_t *req, struct cni_error *err)
{
	json_t *mesos = NULL, *info = NULL, *wrap = NULL, *list = NULL, *v;
	json_t *labels = NULL, *seen = NULL;
	char *key = NULL, *value = NULL;
	const char *k, *val, *prev;
	size_t i;
	int rv = -1;

	if (get_object(args, "org.apache.mesos", "args[\"org.apache.mesos\"]", &mesos, err) != 0 ||
	    (mesos != NULL &&
	     get_object(mesos, "network_info", "args[\"org.apache.mesos\"].network_info", &info,
	                err) != 0))
		return -1;
	if (mesos == NULL || info == NULL)
		return 0;
	if (get_object(info, "labels", "args[\"org.apache.mesos\"].network_info.labels", &wrap,
	               err) != 0 ||
	    (wrap != NULL &&
	     get_array(wrap, "labels", "args[\"org.apache.mesos\"].network_info.labels.labels",
	               &list, err) != 0))
		return -1;
	if (wrap == NULL || list == NULL)
		return 0;
	labels = json_object();
	seen = json_object(); /* sanitized key -> the key as Mesos gave it */
	if (labels == NULL || seen == NULL)
		goto nomem;
	json_array_foreach (list, i, v) {
		if (!json_is_object(v) || !json_is_string(json_object_get(v, "key"))) {
			config_error(err, "mesos label %zu has no \"key\" string", i);
			goto out;
		}
		k = json_string_value(json_object_get(v, "key"));
		if (get_string(v, "value", "a mesos label's value", &val, err) != 0)
			goto out;
		key = cni_label_sanitize(k);
		value = cni_label_sanitize(val != NULL ? val : "");
		if (key == NULL || value == NULL)
			goto nomem;
		if (key[0] == '\0') {
			config_error(
			    err,
			    "mesos label \"%s\" has an empty key after sanitization (a key "
			    "needs a letter, digit or '_')",
			    k);
			goto out;
		}
		prev = json_string_value(json_object_get(seen, key));
		if (prev != NULL && strcmp(prev, k) == 0) {
			config_error(err, "mesos label \"%s\" is given twice", k);
			goto out;
		}
		if (prev != NULL) {
			config_error(err,
			             "mesos labels \"%s\" and \"%s\" both become \"%s\" after "
			             "sanitization",
			             prev, k, key);
			goto out;
		}
		if (json_object_set_new(seen, key, json_string(k)) != 0 ||
		    json_object_set_new(labels, key, json_string(value)) != 0)
			goto nomem;
		free(key);
		free(value);
		key = value = NULL;
	}
	if (json_object_size(labels) > 0 && json_object_set(req, "labels", labels) != 0)
		goto nomem;
	rv = 0;
	goto out;
nomem:
	oom(err);
out:
	free(key);
	free(value);
	json_decref(labels);
	json_decref(seen);
	return rv;
}

/* CHECK: the addresses of prevResult, in any result shape (ips[].address; ip4.ip, ip6.ip). */
static int get_prev_ips(const json_t *conf, json_t *req, struct cni_error *err)
{
	static const char *const legacy[] = {"ip4", "ip6"};
	char buf[IPAM_CIDR_STRLEN];
	json_t *prev, *list, *v, *out, *o;
	const char *s;
	size_t i;
	int family;

	if (get_object(conf, "prevResult", "prevResult", &prev, err) != 0)
		return -1;
	if (prev == NULL)
		return 0;
	out = json_array();
	if (out == NULL || json_object_set_new(req, "prev_ips", out) != 0)
		return oom(err);
	if (get_array(prev, "ips", "prevResult.ips", &list, err) != 0)
		return -1;
	json_array_foreach (list, i, v) {
		if (!json_is_object(v) ||
		    get_string(v, "address", "prevResult.ips[].address", &s, err) != 0 || s == NULL)
			return config_error(err, "prevResult.ips: element %zu has no \"address\"",
			                    i);
		if (!cni_prefix_parse(s, buf, sizeof buf, &family))
			return config_error(
			    err, "prevResult.ips: \"%s\" is not an address with a prefix", s);
		if (append_unique(out, buf) != 0)
			return oom(err);
	}
	for (i = 0; i < 2; i++) {
		if (get_object(prev, legacy[i], legacy[i], &o, err) != 0)
			return -1;
		if (o == NULL)
			continue;
		if (get_string(o, "ip", "prevResult ip", &s, err) != 0)
			return -1;
		if (s == NULL || !cni_prefix_parse(s, buf, sizeof buf, &family) ||
		    family != (i == 0 ? 4 : 6))
			return config_error(
			    err, "prevResult.%s.ip is not an IPv%d address with a prefix",
			    legacy[i], i == 0 ? 4 : 6);
		if (append_unique(out, buf) != 0)
			return oom(err);
	}
	return 0;
}

static int parse_config(const json_t *conf, struct cni_call *c, struct cni_error *err)
{
	json_t *req = c->request, *ipam = NULL, *args = NULL, *cni_args = NULL, *rt = NULL;
	json_t *policy = NULL, *settings = NULL, *v, *pools = NULL, *ips;
	size_t n_ips;
	const char *name = NULL, *s = NULL, *node = NULL;
	bool ipv4, ipv6;
	int rv = -1;

	/* name: also the profile, and part of the IPAM handle. */
	if (get_string(conf, "name", "name", &name, err) != 0)
		return -1;
	if (name == NULL)
		return config_error(err, "the network configuration has no \"name\"");
	/* Calico's rule, ^[a-zA-Z0-9_.\-]+$ (it is the profile name), within the agent's length. */
	if (strlen(name) > NETWORK_MAX)
		return never_added(c, err, CNI_ERR_CONFIG,
		                   "the network name is longer than %d bytes", NETWORK_MAX);
	if (!name_ok(name))
		return never_added(c, err, CNI_ERR_CONFIG,
		                   "invalid characters in network name \"%.64s\": only letters, "
		                   "digits, '_', '.' and '-' are allowed",
		                   name);
	/* A wired endpoint names its network's profile, and a profile name has at most 128 bytes
	 * (calicoctl v1): the agent would refuse the ADD, but only after a raft round. */
	if (c->cmd == CNI_CMD_ADD && c->mode == CNI_MODE_NET && strlen(name) > PROFILE_MAX) {
		cni_error_set(err, CNI_ERR_CONFIG, NULL,
		              "the network name is longer than %d bytes, the longest profile name "
		              "(an endpoint names its network's profile)",
		              PROFILE_MAX);
		return -1;
	}
	if (get_string(conf, "type", "type", &s, err) != 0)
		return -1;

	/* ipam */
	if (get_object(conf, "ipam", "ipam", &ipam, err) != 0 ||
	    (ipam != NULL && get_string(ipam, "type", "ipam.type", &s, err) != 0))
		return -1;
	/* The network plugin takes its addresses from the agent: an IPAM plugin it would have to
	 * run (host-local, say) would be ignored, so it is refused rather than surprising. */
	if (ipam != NULL && s != NULL && c->mode == CNI_MODE_NET && strcmp(s, "tabby-ipam") != 0 &&
	    strcmp(s, "calico-ipam") != 0)
		return config_error(
		    err,
		    "ipam type \"%s\" is not supported by the tabby network plugin: "
		    "addresses come from the tabby agent (use \"tabby-ipam\" or "
		    "\"calico-ipam\")",
		    s);
	if (get_flag(ipam, "assign_ipv4", true, &ipv4, err) != 0 ||
	    get_flag(ipam, "assign_ipv6", false, &ipv6, err) != 0)
		return -1;
	pools = json_array();
	if (pools == NULL)
		return oom(err);
	if (get_pools(ipam, "ipv4_pools", 4, pools, err) != 0 ||
	    get_pools(ipam, "ipv6_pools", 6, pools, err) != 0)
		goto out;
	if (get_routes(ipam, &c->routes, err) != 0)
		goto out;

	/* mtu */
	v = json_object_get(conf, "mtu");
	if (v != NULL && !json_is_null(v)) {
		if (!json_is_integer(v)) {
			config_error(err, "mtu must be an integer");
			goto out;
		}
		if (json_integer_value(v) != 0 &&
		    (json_integer_value(v) < MTU_MIN || json_integer_value(v) > MTU_MAX)) {
			config_error(err,
			             "mtu %" JSON_INTEGER_FORMAT
			             " is out of range: %d to %d, or 0 for the default 1500",
			             json_integer_value(v), MTU_MIN, MTU_MAX);
			goto out;
		}
		if (json_integer_value(v) != 0 &&
		    json_object_set_new(req, "mtu", json_integer(json_integer_value(v))) != 0)
			goto nomem;
	}

	/* nodename, or the deprecated hostname; nodename wins. */
	if (get_string(conf, "nodename", "nodename", &node, err) != 0 ||
	    get_string(conf, "hostname", "hostname", &s, err) != 0)
		goto out;
	if (node == NULL || node[0] == '\0')
		node = s != NULL && s[0] != '\0' ? s : NULL;
	if (node != NULL && !text_ok(node, NODE_MAX)) {
		config_error(err,
		             "node name \"%s\" is longer than %d bytes or has a control character",
		             node, NODE_MAX);
		goto out;
	}
	if (node != NULL && json_object_set_new(req, "node", json_string(node)) != 0)
		goto nomem;

	/* agent_socket wins over TABBY_SOCKET (parse_env() put that in c->socket already). Under
	 * another main plugin the ipam section is tabby's own, so it may carry the key too; the
	 * top level wins. */
	if (get_string(conf, "agent_socket", "agent_socket", &s, err) != 0)
		goto out;
	if (s == NULL && ipam != NULL &&
	    get_string(ipam, "agent_socket", "ipam.agent_socket", &s, err) != 0)
		goto out;
	if (s != NULL) {
		if (s[0] == '\0' || strlen(s) >= sizeof c->socket) {
			config_error(err,
			             "agent_socket must be a unix socket path of 1 to %zu bytes",
			             sizeof c->socket - 1);
			goto out;
		}
		snprintf(c->socket, sizeof c->socket, "%s", s);
	}
	if (get_string(conf, "log_level", "log_level", &s, err) != 0)
		goto out;

	/* policy.type: set (Calico: "k8s") means someone else owns policy, so no profile. */
	if (get_object(conf, "policy", "policy", &policy, err) != 0 ||
	    (policy != NULL && get_string(policy, "type", "policy.type", &s, err) != 0))
		goto out;
	if (json_object_set_new(req, "profile",
	                        json_boolean(policy == NULL || s == NULL || s[0] == '\0')) != 0)
		goto nomem;

	if (get_object(conf, "container_settings", "container_settings", &settings, err) != 0)
		goto out;
	v = settings != NULL ? json_object_get(settings, "allow_ip_forwarding") : NULL;
	if (v != NULL && !json_is_null(v) && !json_is_boolean(v)) {
		config_error(err, "container_settings.allow_ip_forwarding must be true or false");
		goto out;
	}
	if (json_object_set_new(req, "allow_ip_forwarding", json_boolean(json_is_true(v))) != 0)
		goto nomem;

	/* Requested addresses: CNI_ARGS IP= (already in req.ips), then the capability and the
	 * args convention. */
	ips = json_object_get(req, "ips");
	if (get_object(conf, "runtimeConfig", "runtimeConfig", &rt, err) != 0 ||
	    (rt != NULL && get_ips(rt, "runtimeConfig.ips", ips, err) != 0) ||
	    get_object(conf, "args", "args", &args, err) != 0 ||
	    (args != NULL && get_object(args, "cni", "args.cni", &cni_args, err) != 0) ||
	    (args != NULL && cni_args != NULL && get_ips(cni_args, "args.cni.ips", ips, err) != 0))
		goto out;
	/* Counted before the delete: ips is req's reference, and the delete frees the array. */
	n_ips = json_array_size(ips);
	if (n_ips == 0 && json_object_del(req, "ips") != 0)
		goto nomem;
	/* Only ADD assigns: a DEL or CHECK with such a configuration still cleans up and looks. */
	if (c->cmd == CNI_CMD_ADD && !ipv4 && !ipv6 && n_ips == 0) {
		config_error(err, "ipam.assign_ipv4 is \"false\" and ipam.assign_ipv6 is not "
		                  "\"true\": no address would be assigned");
		goto out;
	}
	if (args != NULL && get_labels(args, req, err) != 0)
		goto out;

	if (c->cmd == CNI_CMD_CHECK && get_prev_ips(conf, req, err) != 0)
		goto out;

	if (json_object_set_new(req, "network", json_string(name)) != 0 ||
	    json_object_set_new(req, "wire", json_boolean(c->mode == CNI_MODE_NET)) != 0 ||
	    json_object_set_new(req, "ipv4", json_boolean(ipv4)) != 0 ||
	    json_object_set_new(req, "ipv6", json_boolean(ipv6)) != 0 ||
	    (json_array_size(pools) > 0 && json_object_set(req, "pools", pools) != 0))
		goto nomem;

	/* The etcd keys: accepted, ignored, named once. */
	for (size_t i = 0; i < sizeof ignored_keys / sizeof ignored_keys[0]; i++) {
		size_t n = strlen(c->ignored);
		if (json_object_get(conf, ignored_keys[i]) == NULL)
			continue;
		snprintf(c->ignored + n, sizeof c->ignored - n, "%s%s", n > 0 ? ", " : "",
		         ignored_keys[i]);
	}
	rv = 0;
	goto out;
nomem:
	oom(err);
out:
	json_decref(pools);
	return rv;
}

/* ------------------------------------------------------------------------------------------ */
/* The whole call                                                                              */

static void set_version(struct cni_call *c, const char *v)
{
	snprintf(c->version, sizeof c->version, "%s", v);
}

/* VERSION: the configuration is optional and only its cniVersion matters. */
static void parse_version_call(const char *config, size_t len, struct cni_call *c)
{
	json_t *conf = config != NULL && len > 0 ? json_loadb(config, len, 0, NULL) : NULL;
	const char *v = json_string_value(json_object_get(conf, "cniVersion"));

	set_version(c, v != NULL && version_index(v) >= 0 ? v : "1.0.0");
	json_decref(conf);
}

int cni_parse(enum cni_mode mode, const struct cni_env *env, const char *config, size_t len,
              struct cni_call *out, struct cni_error *err)
{
	json_t *conf = NULL, *v;
	json_error_t jerr;
	const char *level;
	int idx;

	memset(out, 0, sizeof *out);
	memset(err, 0, sizeof *err);
	out->mode = mode;
	out->shape = CNI_SHAPE_020;
	set_version(out, "0.2.0");
	snprintf(out->socket, sizeof out->socket, "%s", CNI_DEFAULT_SOCKET);

	if (parse_command(env->command, &out->cmd, err) != 0)
		return -1;
	if (out->cmd == CNI_CMD_VERSION) {
		parse_version_call(config, len, out);
		return 0;
	}

	conf = json_loadb(config != NULL ? config : "", config != NULL ? len : 0, 0, &jerr);
	if (conf == NULL) {
		cni_error_set(err, CNI_ERR_DECODE, NULL,
		              "cannot decode the network configuration: %s (line %d, column %d)",
		              jerr.text, jerr.line, jerr.column);
		return -1;
	}
	if (!json_is_object(conf)) {
		cni_error_set(err, CNI_ERR_DECODE, NULL,
		              "the network configuration is not a JSON object");
		goto err;
	}
	/* log_level first, so that main() can log the rest of the call at that level. */
	level = json_string_value(json_object_get(conf, "log_level"));
	if (level != NULL && strcasecmp(level, "debug") == 0)
		out->log_level = CNI_LOG_DEBUG;
	else if (level != NULL && strcasecmp(level, "info") == 0)
		out->log_level = CNI_LOG_INFO;

	/* No cniVersion: a pre-0.2.0 runtime such as Mesos; it gets the 0.2.0 shape. libcni writes
	 * "cniVersion": "" into a config that has none and means 0.1.0 by it: the same. */
	v = json_object_get(conf, "cniVersion");
	idx = -1;
	if (json_is_string(v) && json_string_length(v) == 0) {
		v = NULL;
	}
	if (v != NULL) {
		if (!json_is_string(v)) {
			cni_error_set(err, CNI_ERR_VERSION, NULL, "cniVersion must be a string");
			goto err;
		}
		idx = version_index(json_string_value(v));
		if (idx < 0) {
			cni_error_set(
			    err, CNI_ERR_VERSION, NULL,
			    "CNI version \"%s\" is not supported (tabby supports " VERSIONS_TEXT
			    ")",
			    json_string_value(v));
			goto err;
		}
		set_version(out, json_string_value(v));
		out->shape = idx < 2 ? CNI_SHAPE_020 : idx < 5 ? CNI_SHAPE_03X : CNI_SHAPE_100;
	}
	if (out->cmd == CNI_CMD_CHECK && idx < VERSION_040) {
		cni_error_set(err, CNI_ERR_VERSION, NULL,
		              "CHECK needs cniVersion 0.4.0 or later; the configuration has %s",
		              idx < 0 ? "none" : versions[idx]);
		goto err;
	}

	out->request = json_object();
	if (out->request == NULL || json_object_set_new(out->request, "ips", json_array()) != 0) {
		oom(err);
		goto err;
	}
	if (parse_env(env, out, err) != 0)
		goto err;
	if (out->nothing_to_do[0] != '\0') {
		json_decref(conf);
		return 0;
	}
	if (parse_cni_args(env->args, out->request, json_object_get(out->request, "ips"), err) !=
	        0 ||
	    parse_config(conf, out, err) != 0)
		goto err;
	json_decref(conf);
	return 0;
err:
	json_decref(conf);
	json_decref(out->request);
	json_decref(out->routes);
	out->request = NULL;
	out->routes = NULL;
	out->ignored[0] = '\0';
	return -1;
}

void cni_call_free(struct cni_call *c)
{
	json_decref(c->request);
	json_decref(c->routes);
	c->request = NULL;
	c->routes = NULL;
}
