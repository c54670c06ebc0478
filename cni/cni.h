/*
 * The CNI plugin (`tabby-cni`, installed as tabby, tabby-ipam, calico and calico-ipam): the pure
 * half that turns one CNI call (environment + network configuration on stdin) into the request
 * the agent gets on POST /v1/cni/{add,del,check}, and turns the agent's answer into the CNI result
 * in the shape of the cniVersion that was asked for (calico-behaviour.md section 1, DESIGN.md
 * section 5, docs/cni.md for the operator's view).
 *
 * The plugin is a thin forwarder: it validates everything it can before anything is sent, so a
 * mistake in a configuration is reported by the plugin with the key that is wrong, and the agent
 * gets one normalized request. Nothing here reads the environment, prints, or talks to the agent:
 * main.c does that, and tests and the fuzzer call these functions directly.
 *
 * Errors are CNI errors (struct cni_error): a code from the CNI spec or Tabby's own (100+), a
 * message for a human and details. Every function that can fail fills one and returns -1.
 */
#ifndef TABBY_CNI_H
#define TABBY_CNI_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

/* The default agent socket (DESIGN.md section 2); config key agent_socket, then env TABBY_SOCKET
 * override it. */
#define CNI_DEFAULT_SOCKET "/run/tabby/tabby.sock"

/* How long the plugin waits for the agent's answer. An ADD that has to wait for raft and wire a
 * container finishes far sooner; the limit only keeps a stuck call from hanging the runtime. */
#define CNI_TIMEOUT_MS 60000

/* CNI error codes: the spec's (1..11) and Tabby's own (100+). */
enum {
	CNI_ERR_VERSION = 1,    /* incompatible CNI version */
	CNI_ERR_ENV = 4,        /* invalid environment variables */
	CNI_ERR_DECODE = 6,     /* failed to decode content */
	CNI_ERR_CONFIG = 7,     /* invalid network config */
	CNI_ERR_TRY_AGAIN = 11, /* try again later: agent unreachable or not ready */
	CNI_ERR_ALLOC = 100,    /* the agent refused the allocation (exhausted, in use, conflict) */
	CNI_ERR_WIRE = 101,     /* wiring the container failed */
	CNI_ERR_CHECK = 102,    /* CHECK found the container not as it should be */
	CNI_ERR_INTERNAL = 999, /* anything else */
};

#define CNI_MSG_MAX 1024

struct cni_error {
	int code;
	char msg[CNI_MSG_MAX];
	char details[CNI_MSG_MAX];
};

/* What the binary is, from the name it was run by (cni_mode_from_argv0()). */
enum cni_mode {
	CNI_MODE_NET,  /* tabby, calico, tabby-cni: allocate and wire ("wire": true) */
	CNI_MODE_IPAM, /* tabby-ipam, calico-ipam: allocate only, IPAM result ("wire": false) */
};

enum cni_cmd { CNI_CMD_ADD, CNI_CMD_DEL, CNI_CMD_CHECK, CNI_CMD_VERSION };

/* The result shapes, by cniVersion. */
enum cni_shape {
	CNI_SHAPE_020, /* 0.1.0, 0.2.0 and no cniVersion: ip4/ip6 (what Mesos reads) */
	CNI_SHAPE_03X, /* 0.3.0, 0.3.1, 0.4.0: interfaces, ips with "version" */
	CNI_SHAPE_100, /* 1.0.0: ips without "version" */
};

enum cni_log_level { CNI_LOG_WARNING, CNI_LOG_INFO, CNI_LOG_DEBUG };

/* The environment of one call, as the runtime set it. Every field may be NULL (unset). */
struct cni_env {
	const char *command;     /* CNI_COMMAND */
	const char *containerid; /* CNI_CONTAINERID */
	const char *netns;       /* CNI_NETNS */
	const char *ifname;      /* CNI_IFNAME */
	const char *args;        /* CNI_ARGS */
	const char *path;        /* CNI_PATH (read for completeness; Tabby executes no plugin) */
	const char *socket;      /* TABBY_SOCKET */
};

/* One parsed call. Filled by cni_parse(), released by cni_call_free(). */
struct cni_call {
	enum cni_cmd cmd;
	enum cni_mode mode;
	/* The cniVersion printed in the result or error: the one asked for, or "0.2.0" when the
	 * configuration had none (or, for an error, an unsupported one); for VERSION the one asked
	 * for, else "1.0.0". Set even when cni_parse() fails. */
	char version[16];
	enum cni_shape shape;
	enum cni_log_level log_level; /* config log_level: "debug", "info", else warning */
	char socket[108];             /* agent socket path (fits sun_path) */
	/* The body for the agent (NULL for VERSION); owned. */
	json_t *request;
	/* IPAM mode: ipam.routes, validated and canonical ([{"dst", "gw"?}]), or NULL; owned. */
	json_t *routes;
	/* The etcd and datastore keys the configuration had, comma-separated, for the one log line
	 * that says they are ignored; "" when there were none. */
	char ignored[256];
	/* DEL only: why there is nothing to delete, when the call names a container, interface or
	 * network that the agent refuses on every command (so no ADD made anything); the plugin
	 * then succeeds without asking the agent. "" otherwise. */
	char nothing_to_do[192];
};

/* Which plugin the binary is, from argv[0]: a basename ending in "-ipam" (tabby-ipam,
 * calico-ipam) is the IPAM plugin; anything else (tabby, calico, tabby-cni) the network plugin. */
enum cni_mode cni_mode_from_argv0(const char *argv0);

/*
 * Parse and validate one call: env and the network configuration (len bytes, not necessarily
 * NUL-terminated). On success fills *out and returns 0; the caller frees it with cni_call_free().
 * On failure fills *err, leaves *out with nothing to free but its version (and log_level and
 * socket when they were read), and returns -1.
 *
 * VERSION never fails for a bad configuration: it reads only cniVersion, leniently.
 * Checks, with the error code:
 *   CNI_COMMAND missing or not ADD/DEL/CHECK/VERSION (4); configuration not a JSON object (6);
 *   cniVersion not supported, or CHECK below 0.4.0 (1); CNI_CONTAINERID, CNI_IFNAME (Linux's
 *   dev_valid_name), CNI_NETNS (absolute path; required for ADD and CHECK of the network plugin),
 *   CNI_ARGS (K=V pairs; IP= addresses), TABBY_SOCKET (4); every configuration key docs/cni.md
 *   lists (7), including Mesos labels that are empty or collide after sanitization.
 */
int cni_parse(enum cni_mode mode, const struct cni_env *env, const char *config, size_t len,
              struct cni_call *out, struct cni_error *err);

/* Release what cni_parse() allocated. Safe on a zeroed or failed call; idempotent. */
void cni_call_free(struct cni_call *c);

/* The agent path for the command: "/v1/cni/add", "/v1/cni/del" or "/v1/cni/check" (NULL for
 * VERSION). */
const char *cni_request_path(enum cni_cmd cmd);

/* The answer to VERSION: {"cniVersion": version, "supportedVersions": [...]}. New reference, or
 * NULL when out of memory. */
json_t *cni_version_answer(const char *version);

/*
 * The CNI result of an ADD from the agent's 200 answer ({"ips": ["a/32", ...], "interface",
 * "mac", "sandbox"}), in call->shape: for the network plugin the host end (MAC
 * ee:ee:ee:ee:ee:ee) and the container interface, ips pointing at the latter, no gateways, no
 * routes; for the IPAM plugin only ips and the configured routes. 0.1.0/0.2.0 carries one address
 * per family (the first). An answer without usable ips (or, for the network plugin, without a
 * valid interface name) is error 999. Returns 0 and a new reference in *out, or -1.
 */
int cni_format_result(const struct cni_call *call, const json_t *answer, json_t **out,
                      struct cni_error *err);

/* The CNI error object {"cniVersion", "code", "msg", "details"}. New reference, or NULL when out
 * of memory. */
json_t *cni_format_error(const char *version, const struct cni_error *e);

/*
 * Map an agent's error answer (HTTP status, and the body {"error": {"code", "message"}} or NULL)
 * to a CNI error: msg is the agent's message, details its code. 503/unavailable is 11;
 * wiring_failed is 101 and check_failed 102 on any command; on CHECK everything else but invalid
 * (7) is 102; conflict, in_use, exhausted (409) are 100; invalid (400) and not_found (404) are 7;
 * internal is 999; any other 5xx on ADD is 101 (wiring).
 */
void cni_agent_error(enum cni_cmd cmd, int status, const json_t *response, struct cni_error *err);

/* Map a failure of the API client (a negative API_E* code and its message, which may be NULL) to
 * a CNI error naming the socket path: connect failures, broken connections and timeouts are 11
 * ("cannot reach the tabby agent at PATH: reason"), anything else 999. */
void cni_client_error(const char *socket, int rc, const char *errmsg, struct cni_error *err);

/* Fill err (code, printf-style msg, details or NULL for ""). Messages longer than CNI_MSG_MAX are
 * cut. */
void cni_error_set(struct cni_error *err, int code, const char *details, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Whether s is a valid Linux interface name (the kernel's dev_valid_name): 1..15 bytes, not "."
 * or "..", no '/', ':' or whitespace. */
bool cni_ifname_ok(const char *s);

/* A Mesos label key or value sanitized as Calico does (calico-behaviour.md 1.10): '/' -> '.';
 * each run of characters outside [-_.a-zA-Z0-9] -> '-'; each run of '.' and '-' holding a '.' ->
 * '.'; leading and trailing '.' and '-' stripped. malloc()ed, or NULL when out of memory. */
char *cni_label_sanitize(const char *s);

/* Parse "ADDR/PREFIX" where ADDR may have host bits set (an interface address such as
 * 10.1.0.7/24). On success writes the canonical text to out (at least 50 bytes), the family (4 or
 * 6) to *family, and returns true. */
bool cni_prefix_parse(const char *s, char *out, size_t outlen, int *family);

#endif
