/*
 * The agent's answer -> what the runtime reads on stdout (cni.h): the result in the shape of the
 * cniVersion it asked for, or a CNI error.
 *
 * The answer is checked as carefully as any other input: a result that names a malformed address
 * would be worse than an error, because the runtime would configure or report it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "cni/cni.h"
#include "ipam/ipam.h"

/* Every host end has this MAC (calico-behaviour.md 1.5), so the result can name it without the
 * agent saying so. */
#define HOST_MAC "ee:ee:ee:ee:ee:ee"

static int internal(struct cni_error *err, const char *msg, const char *value)
{
	if (value != NULL)
		cni_error_set(err, CNI_ERR_INTERNAL, NULL, "%s: \"%s\"", msg, value);
	else
		cni_error_set(err, CNI_ERR_INTERNAL, NULL, "%s", msg);
	return -1;
}

/* "xx:xx:xx:xx:xx:xx", hex digits of either case. */
static bool mac_ok(const char *s)
{
	static const char hex[] = "0123456789abcdefABCDEF";

	if (strlen(s) != 17)
		return false;
	for (int i = 0; i < 17; i++) {
		if (i % 3 == 2 ? s[i] != ':' : strchr(hex, s[i]) == NULL)
			return false;
	}
	return true;
}

/* Append {"k": v...} built by json_pack to array a; false when out of memory. */
static bool append(json_t *a, json_t *v)
{
	return v != NULL && json_array_append_new(a, v) == 0;
}

/* The configured routes whose destination is of family (0: all). New array, NULL on OOM. */
static json_t *routes_of(const json_t *routes, int family)
{
	json_t *out = json_array(), *r;
	size_t i;

	if (out == NULL)
		return NULL;
	json_array_foreach (routes, i, r) {
		const char *dst = json_string_value(json_object_get(r, "dst"));
		int f = strchr(dst, ':') != NULL ? 6 : 4;
		if ((family == 0 || f == family) && json_array_append(out, r) != 0) {
			json_decref(out);
			return NULL;
		}
	}
	return out;
}

/* 0.1.0 / 0.2.0: {"ip4": {"ip", "routes"?}, "ip6": {...}}, the first address of each family. */
static bool shape_020(const struct cni_call *call, const json_t *addrs, const int *families,
                      json_t *res)
{
	static const char *const keys[] = {"ip4", "ip6"};
	json_t *a, *o, *routes;
	size_t i;

	for (int k = 0; k < 2; k++) {
		int family = k == 0 ? 4 : 6;
		for (i = 0; i < json_array_size(addrs) && families[i] != family; i++)
			;
		if (i == json_array_size(addrs))
			continue;
		a = json_array_get(addrs, i);
		o = json_pack("{s:O}", "ip", a);
		if (o == NULL || json_object_set_new(res, keys[k], o) != 0)
			return false;
		if (call->mode != CNI_MODE_IPAM || call->routes == NULL)
			continue;
		routes = routes_of(call->routes, family);
		if (routes == NULL)
			return false;
		if (json_array_size(routes) == 0) {
			json_decref(routes);
			continue;
		}
		if (json_object_set_new(o, "routes", routes) != 0)
			return false;
	}
	return true;
}

/* 0.3.x, 0.4.0, 1.0.0: interfaces (network plugin), ips, routes (IPAM plugin). */
static bool shape_03x(const struct cni_call *call, const json_t *answer, const json_t *addrs,
                      const int *families, json_t *res)
{
	const char *host_if = json_string_value(json_object_get(answer, "interface"));
	const char *mac = json_string_value(json_object_get(answer, "mac"));
	const char *sandbox = json_string_value(json_object_get(answer, "sandbox"));
	const char *ifname = json_string_value(json_object_get(call->request, "ifname"));
	bool wire = call->mode == CNI_MODE_NET;
	json_t *ifaces, *ips, *inner, *ip, *a, *routes;
	size_t i;

	if (sandbox == NULL)
		sandbox = json_string_value(json_object_get(call->request, "netns"));
	if (wire) {
		ifaces = json_array();
		if (ifaces == NULL || json_object_set_new(res, "interfaces", ifaces) != 0)
			return false;
		inner = json_pack("{s:s}", "name", ifname);
		if (!append(ifaces, json_pack("{s:s, s:s}", "name", host_if, "mac", HOST_MAC)) ||
		    !append(ifaces, inner))
			return false;
		if ((mac != NULL && json_object_set_new(inner, "mac", json_string(mac)) != 0) ||
		    (sandbox != NULL &&
		     json_object_set_new(inner, "sandbox", json_string(sandbox)) != 0))
			return false;
	}
	ips = json_array();
	if (ips == NULL || json_object_set_new(res, "ips", ips) != 0)
		return false;
	json_array_foreach (addrs, i, a) {
		ip = json_object();
		if (!append(ips, ip))
			return false;
		if ((call->shape == CNI_SHAPE_03X &&
		     json_object_set_new(ip, "version",
		                         json_string(families[i] == 4 ? "4" : "6")) != 0) ||
		    json_object_set(ip, "address", a) != 0 ||
		    (wire && json_object_set_new(ip, "interface", json_integer(1)) != 0))
			return false;
	}
	if (!wire && call->routes != NULL && json_array_size(call->routes) > 0) {
		routes = routes_of(call->routes, 0);
		if (routes == NULL || json_object_set_new(res, "routes", routes) != 0)
			return false;
	}
	return true;
}

int cni_format_result(const struct cni_call *call, const json_t *answer, json_t **out,
                      struct cni_error *err)
{
	char buf[IPAM_CIDR_STRLEN];
	json_t *list = json_object_get(answer, "ips"), *addrs = NULL, *res = NULL, *v;
	const char *host_if, *mac;
	int *families = NULL;
	size_t i;
	bool ok;

	*out = NULL;
	if (!json_is_array(list) || json_array_size(list) == 0)
		return internal(err, "the tabby agent answered no addresses", NULL);
	if (call->mode == CNI_MODE_NET) {
		host_if = json_string_value(json_object_get(answer, "interface"));
		mac = json_string_value(json_object_get(answer, "mac"));
		if (host_if == NULL || !cni_ifname_ok(host_if))
			return internal(
			    err, "the tabby agent answered no valid host interface name", host_if);
		if (mac != NULL && !mac_ok(mac))
			return internal(err, "the tabby agent answered a malformed MAC address",
			                mac);
	}
	if (json_object_get(answer, "sandbox") != NULL &&
	    !json_is_string(json_object_get(answer, "sandbox")))
		return internal(err, "the tabby agent answered a sandbox that is not a string",
		                NULL);

	/* Canonical copies of the addresses, with their families. */
	addrs = json_array();
	families = calloc(json_array_size(list), sizeof *families);
	if (addrs == NULL || families == NULL)
		goto nomem;
	json_array_foreach (list, i, v) {
		if (!json_is_string(v) ||
		    !cni_prefix_parse(json_string_value(v), buf, sizeof buf, &families[i])) {
			internal(err, "the tabby agent answered a malformed address",
			         json_is_string(v) ? json_string_value(v) : NULL);
			goto err;
		}
		if (json_array_append_new(addrs, json_string(buf)) != 0)
			goto nomem;
	}

	res = json_pack("{s:s}", "cniVersion", call->version);
	if (res == NULL)
		goto nomem;
	ok = call->shape == CNI_SHAPE_020 ? shape_020(call, addrs, families, res)
	                                  : shape_03x(call, answer, addrs, families, res);
	if (!ok || json_object_set_new(res, "dns", json_object()) != 0)
		goto nomem;
	*out = res;
	json_decref(addrs);
	free(families);
	return 0;
nomem:
	cni_error_set(err, CNI_ERR_INTERNAL, NULL, "out of memory");
err:
	json_decref(res);
	json_decref(addrs);
	free(families);
	return -1;
}

/* s as a JSON string; in text that is not valid UTF-8 (a cut message, a byte from the
 * environment) each byte of a broken character becomes '?' rather than losing the whole error. */
static json_t *safe_string(const char *s)
{
	json_t *v = json_string(s);
	char *copy;

	if (v != NULL)
		return v;
	copy = strdup(s);
	if (copy == NULL)
		return NULL;
	ipam_text_repair(copy);
	v = json_string(copy);
	free(copy);
	return v;
}

json_t *cni_format_error(const char *version, const struct cni_error *e)
{
	return json_pack("{s:s, s:i, s:o, s:o}", "cniVersion", version, "code", e->code, "msg",
	                 safe_string(e->msg), "details", safe_string(e->details));
}

static bool is(const char *a, const char *b)
{
	return a != NULL && strcmp(a, b) == 0;
}

void cni_agent_error(enum cni_cmd cmd, int status, const json_t *response, struct cni_error *err)
{
	const char *code = api_error_code(response), *message = api_error_message(response);
	char details[64];
	int cni;

	if (status == 503 || is(code, "unavailable"))
		cni = CNI_ERR_TRY_AGAIN;
	else if (is(code, "wiring_failed"))
		cni = CNI_ERR_WIRE;
	else if (is(code, "check_failed"))
		cni = CNI_ERR_CHECK;
	else if (status == 400 || is(code, "invalid"))
		cni = CNI_ERR_CONFIG;
	else if (cmd == CNI_CMD_CHECK)
		cni = CNI_ERR_CHECK;
	else if (is(code, "conflict") || is(code, "in_use") || is(code, "exhausted") ||
	         (code == NULL && status == 409))
		cni = CNI_ERR_ALLOC;
	else if (status == 404 || is(code, "not_found"))
		cni = CNI_ERR_CONFIG;
	else if (is(code, "internal"))
		cni = CNI_ERR_INTERNAL;
	else if (cmd == CNI_CMD_ADD && status >= 500)
		cni = CNI_ERR_WIRE;
	else
		cni = CNI_ERR_INTERNAL;

	if (code == NULL)
		snprintf(details, sizeof details, "HTTP %d", status);
	/* An empty message is no message: the CNI error must still say what went wrong. */
	if (message != NULL && message[0] != '\0')
		cni_error_set(err, cni, code != NULL ? code : details, "%s", message);
	else
		cni_error_set(err, cni, code != NULL ? code : details,
		              "the tabby agent answered HTTP %d without an error message", status);
}

void cni_client_error(const char *socket, int rc, const char *errmsg, struct cni_error *err)
{
	const char *why = errmsg != NULL ? errmsg : api_strerror(rc);
	const char *colon;

	/* The client says "cannot connect to unix:PATH: reason"; the path is named once below. */
	if (strncmp(why, "cannot connect to ", 18) == 0 && (colon = strstr(why, ": ")) != NULL &&
	    strstr(why + 18, socket) != NULL)
		why = colon + 2;
	switch (rc) {
	case API_ECONNECT:
	case API_ETIMEDOUT:
	case API_EIO:
		cni_error_set(err, CNI_ERR_TRY_AGAIN,
		              "is the tabby agent running? The socket is the configuration's "
		              "agent_socket, else TABBY_SOCKET, else " CNI_DEFAULT_SOCKET,
		              "cannot reach the tabby agent at %s: %s", socket, why);
		break;
	default:
		cni_error_set(err, CNI_ERR_INTERNAL, NULL, "talking to the tabby agent at %s: %s",
		              socket, why);
	}
}
