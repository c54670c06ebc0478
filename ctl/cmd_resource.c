/* tabby create | apply | replace | delete | get: v1 resources, as calicoctl 1.x. */
#include "ctl/ctl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Largest resource file read: far beyond any real policy set, small enough for one buffer. */
#define FILE_MAX (64u << 20)

/* ---- reading and checking a file ---- */

int ctl_resource_read(const char *name, const char *text, size_t len, json_t **raw,
                      json_t **normalized, char *err, size_t errlen)
{
	json_t *list = NULL;
	json_t *texts = NULL;
	json_t *norm = NULL;
	char why[512];
	size_t i;

	*raw = NULL;
	*normalized = NULL;
	if (policy_doc_parse_texts(text, len, &list, &texts, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "%s: %s", name, why);
		return -1;
	}
	if (json_array_size(list) == 0) {
		snprintf(err, errlen, "%s: no resources", name);
		goto err;
	}
	norm = json_array();
	if (norm == NULL)
		goto nomem;
	for (i = 0; i < json_array_size(list); i++) {
		json_t *n = NULL;
		json_t *quoted = NULL;

		/* Refuse the whole file on the first bad resource, with the module's message: it
		 * names the resource, the field and the value. */
		if (policy_resource_normalize_texts(json_array_get(list, i),
		                                    json_array_get(texts, i), (unsigned)i, &n,
		                                    &quoted, err, errlen) != 0)
			goto err;
		/* The agent reads the resource without the file's texts: where a YAML number or
		 * boolean was taken as its text, it gets the text, quoted. Both calls take their
		 * reference, also when they fail. */
		if (quoted != NULL && json_array_set_new(list, i, quoted) != 0) {
			json_decref(n);
			goto nomem;
		}
		if (json_array_append_new(norm, n) != 0)
			goto nomem;
	}
	json_decref(texts);
	*raw = list;
	*normalized = norm;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
err:
	json_decref(list);
	json_decref(texts);
	json_decref(norm);
	return -1;
}

void ctl_resource_success(FILE *f, const char *verb, const json_t *normalized)
{
	size_t n = json_array_size(normalized);
	const char *kind = NULL;

	for (size_t i = 0; i < n; i++) {
		const char *k =
		    json_string_value(json_object_get(json_array_get(normalized, i), "kind"));

		if (i == 0) {
			kind = k;
		} else if (kind != NULL && (k == NULL || strcmp(k, kind) != 0)) {
			kind = NULL;
			break;
		}
	}
	if (kind != NULL)
		fprintf(f, "Successfully %s %zu '%s' resource(s)\n", verb, n, kind);
	else
		fprintf(f, "Successfully %s %zu resource(s)\n", verb, n);
}

/* ---- create, apply, replace, delete -f ---- */

/* The resources of the file path (the -f value): as written (*raw) and normalized. Returns 0, or
 * an exit status after printing why not. */
static int read_resources(struct ctl_ctx *ctx, const char *path, json_t **raw, json_t **normalized)
{
	char *text = NULL;
	size_t len = 0;
	char err[1024];
	int rv = ctl_read_file(ctx, path, FILE_MAX, &text, &len);

	if (rv != 0)
		return rv;
	if (ctl_resource_read(strcmp(path, "-") == 0 ? "stdin" : path, text, len, raw, normalized,
	                      err, sizeof(err)) != 0)
		rv = ctl_fail(ctx, "%s", err);
	free(text);
	return rv;
}

/* "/v1/KIND/" + escaped key, malloc()ed. */
static char *resource_path(enum policy_kind kind, const char *key)
{
	char base[64];

	snprintf(base, sizeof(base), "/v1/%s/", policy_kind_plural(kind));
	return ctl_key_path(base, key, "");
}

/* The stored form of each resource of normalized, in order, into a new array *current: the
 * resource, or null where it does not exist. Returns 0, or 1 after printing why not. */
static int fetch_current(struct ctl_ctx *ctx, const json_t *normalized, json_t **current)
{
	json_t *out = json_array();
	char key[POLICY_KEY_MAX];
	int rv = out != NULL ? 0 : ctl_fail(ctx, "out of memory");

	for (size_t i = 0; rv == 0 && i < json_array_size(normalized); i++) {
		enum policy_kind kind =
		    policy_resource_key(json_array_get(normalized, i), key, sizeof(key));
		char *path = kind != POLICY_KIND_NONE ? resource_path(kind, key) : NULL;
		json_t *r = NULL;

		if (path == NULL) {
			rv = ctl_fail(ctx, "out of memory");
			break;
		}
		rv = ctl_get_resource(ctx, path, &r);
		free(path);
		if (rv == 0 && json_array_append_new(out, r != NULL ? r : json_null()) != 0)
			rv = ctl_fail(ctx, "out of memory");
	}
	if (rv != 0) {
		json_decref(out);
		return rv;
	}
	*current = out;
	return 0;
}

/* How many times create --skip-exists and delete --skip-not-exists look again when what they
 * looked at changed before their request. */
#define SKIP_ATTEMPTS 5

/* The agent's answer to a request of some of the resources of normalized (sent[i] says which),
 * with a result {"kind", "key", "outcome": "skipped"} in its list for each of the others, in the
 * file's order. Returns 0, -EINVAL when the answer has no result for one sent, or -ENOMEM. */
static int add_skipped(json_t *resp, const json_t *normalized, const bool *sent)
{
	const json_t *results = json_object_get(resp, "results");
	json_t *all = json_array();
	char key[POLICY_KEY_MAX];
	size_t k = 0;

	for (size_t i = 0; all != NULL && i < json_array_size(normalized); i++) {
		json_t *r;

		if (sent[i]) {
			r = json_incref(json_array_get(results, k++));
			if (r == NULL) {
				json_decref(all);
				return -EINVAL;
			}
		} else {
			enum policy_kind kind =
			    policy_resource_key(json_array_get(normalized, i), key, sizeof(key));
			r = json_pack("{s:s, s:s, s:s}", "kind", policy_kind_name(kind), "key", key,
			              "outcome", "skipped");
		}
		if (json_array_append_new(all, r) != 0) {
			json_decref(all);
			all = NULL;
		}
	}
	return all != NULL && json_object_set_new(resp, "results", all) == 0 ? 0 : -ENOMEM;
}

/*
 * create --skip-exists and delete --skip-not-exists, as calicoctl 1.x: a resource that exists
 * (create) or does not (delete) is skipped, and counted as done. The others go in one request,
 * all or nothing as always. Someone may create or delete one of them between the look and the
 * request: the agent then refuses the request (exists, not_found), and it is made again from a
 * new look. On success *resp is the agent's answer with the skipped resources added. Returns 0,
 * or an exit status after printing why not.
 */
static int run_skipping(struct ctl_ctx *ctx, const char *op, const json_t *raw,
                        const json_t *normalized, json_t **resp)
{
	bool create = strcmp(op, "create") == 0;
	size_t n = json_array_size(raw);
	bool *sent = calloc(n, sizeof(*sent));
	int rv = sent != NULL ? 0 : ctl_fail(ctx, "out of memory");

	*resp = NULL;
	for (int attempt = 0; rv == 0 && attempt < SKIP_ATTEMPTS; attempt++) {
		json_t *current = NULL;
		json_t *body = NULL;
		int status = 200;
		int added;

		rv = fetch_current(ctx, normalized, &current);
		if (rv == 0)
			body = json_pack("{s:s, s:[]}", "op", op, "resources");
		for (size_t i = 0; body != NULL && i < n; i++) {
			sent[i] = json_is_null(json_array_get(current, i)) == create;
			if (sent[i] && json_array_append(json_object_get(body, "resources"),
			                                 json_array_get(raw, i)) != 0) {
				json_decref(body);
				body = NULL;
			}
		}
		json_decref(current);
		if (rv == 0 && body == NULL)
			rv = ctl_fail(ctx, "out of memory");
		else if (rv == 0 && json_array_size(json_object_get(body, "resources")) == 0)
			*resp = json_object(); /* nothing left to do */
		else if (rv == 0)
			rv = ctl_request(ctx, "POST", "/v1/resources", body, &status, resp);
		json_decref(body);
		if (rv != 0)
			break;
		if (status == (create ? 409 : 404) &&
		    ctl_error_is(*resp, create ? "exists" : "not_found")) {
			json_decref(*resp);
			*resp = NULL;
			continue; /* changed since the look: look again */
		}
		if (status / 100 != 2)
			rv = ctl_fail_api(ctx, API_OK, NULL, status, *resp);
		else if (*resp == NULL)
			rv = ctl_fail(ctx, "unexpected answer from the agent: no results");
		else if ((added = add_skipped(*resp, normalized, sent)) != 0)
			rv = ctl_fail(ctx, "%s",
			              added == -EINVAL
			                  ? "unexpected answer from the agent: a result is missing"
			                  : "out of memory");
		break;
	}
	if (rv == 0 && *resp == NULL)
		rv = ctl_fail(ctx,
		              "the resources kept changing while this command looked at them; gave "
		              "up after %d attempts",
		              SKIP_ATTEMPTS);
	if (rv != 0) {
		json_decref(*resp);
		*resp = NULL;
	}
	free(sent);
	return rv;
}

/* op: the agent's operation; verb: the past tense for the success line; skip_flag: the flag
 * that makes it skip what is already done (NULL for none). */
static int run_file_op(struct ctl_ctx *ctx, const char *op, const char *verb, const char *skip_flag)
{
	const char *path = ctl_flag(ctx, "filename");
	json_t *raw = NULL;
	json_t *normalized = NULL;
	json_t *body = NULL;
	json_t *resp = NULL;
	int rv;

	if (path == NULL)
		return ctl_usage_error(ctx, "missing -f FILE (- for standard input)");
	if (ctx->nargs > 0)
		return ctl_usage_error(ctx, "unexpected argument '%s'", ctx->args[0]);
	rv = read_resources(ctx, path, &raw, &normalized);
	if (rv != 0)
		return rv;
	if (skip_flag != NULL && ctl_flag(ctx, skip_flag) != NULL) {
		rv = run_skipping(ctx, op, raw, normalized, &resp);
	} else {
		/* The raw resources, not the normalized ones: the agent normalizes with the same
		 * code, and what it stores should not depend on which CLI version sent it. */
		body = json_pack("{s:s, s:O}", "op", op, "resources", raw);
		if (body == NULL)
			rv = ctl_fail(ctx, "out of memory");
		else
			rv = ctl_call(ctx, "POST", "/v1/resources", body, &resp);
	}
	if (rv != 0)
		goto out;
	/* calicoctl counted the skipped resources as done too. */
	if (ctx->json)
		rv = ctl_print_json(ctx, resp);
	else
		ctl_resource_success(ctx->out, verb, normalized);
out:
	json_decref(resp);
	json_decref(body);
	json_decref(raw);
	json_decref(normalized);
	return rv;
}

static int run_create(struct ctl_ctx *ctx)
{
	return run_file_op(ctx, "create", "created", "skip-exists");
}

static int run_apply(struct ctl_ctx *ctx)
{
	return run_file_op(ctx, "apply", "applied", NULL);
}

static int run_replace(struct ctl_ctx *ctx)
{
	return run_file_op(ctx, "replace", "replaced", NULL);
}

/* ---- kinds and keys on the command line ---- */

/* The kind named by word. Returns 0, or 2 after a usage error (unknown, or bgpPeer). */
static int parse_kind(struct ctl_ctx *ctx, const char *word, enum policy_kind *kind)
{
	*kind = policy_kind_parse(word);
	if (*kind == POLICY_KIND_BGPPEER)
		return ctl_usage_error(ctx,
		                       "bgpPeer resources are not supported: Tabby does not "
		                       "use BGP (routes between hosts are programmed directly)");
	if (*kind == POLICY_KIND_NONE)
		return ctl_usage_error(ctx,
		                       "unknown resource kind '%s' (want policy, profile, ipPool, "
		                       "hostEndpoint, workloadEndpoint or node)",
		                       word);
	return 0;
}

static int count_char(const char *s, char c)
{
	int n = 0;

	for (; *s != '\0'; s++)
		n += *s == c;
	return n;
}

/* Check the endpoint flags (--node, --orchestrator, --workload) against kind. Returns 0 or 2. */
static int check_endpoint_flags(struct ctl_ctx *ctx, enum policy_kind kind)
{
	static const char *const names[] = {"node", "orchestrator", "workload"};

	for (int i = 0; i < 3; i++) {
		const char *v = ctl_flag(ctx, names[i]);

		if (v == NULL)
			continue;
		if (v[0] == '\0')
			return ctl_usage_error(ctx, "empty value for --%s", names[i]);
		if (kind == POLICY_KIND_WORKLOADENDPOINT ||
		    (kind == POLICY_KIND_HOSTENDPOINT && i == 0))
			continue;
		return ctl_usage_error(ctx, "--%s does not apply to %s resources", names[i],
		                       policy_kind_name(kind));
	}
	return 0;
}

/* The key of the resource of kind named name and the endpoint flags into key (POLICY_KEY_MAX).
 * Returns 1 when it is known, 0 when the flags do not say enough (an endpoint named by its name
 * alone: the caller lists and filters). */
static int make_key(const struct ctl_ctx *ctx, enum policy_kind kind, const char *name, char *key)
{
	const char *node = ctl_flag(ctx, "node");
	const char *orch = ctl_flag(ctx, "orchestrator");
	const char *workload = ctl_flag(ctx, "workload");
	int n;

	switch (kind) {
	case POLICY_KIND_HOSTENDPOINT:
		if (node != NULL)
			n = snprintf(key, POLICY_KEY_MAX, "%s/%s", node, name);
		else if (strchr(name, '/') != NULL)
			n = snprintf(key, POLICY_KEY_MAX, "%s", name); /* the key itself */
		else
			return 0;
		break;
	case POLICY_KIND_WORKLOADENDPOINT:
		if (node != NULL && orch != NULL && workload != NULL)
			n = snprintf(key, POLICY_KEY_MAX, "%s/%s/%s/%s", node, orch, workload,
			             name);
		else if (node == NULL && orch == NULL && workload == NULL &&
		         count_char(name, '/') >= 3)
			n = snprintf(key, POLICY_KEY_MAX, "%s", name);
		else
			return 0;
		break;
	default:
		n = snprintf(key, POLICY_KEY_MAX, "%s", name);
		break;
	}
	return n > 0 && n < POLICY_KEY_MAX;
}

/* ---- delete ---- */

static int run_delete(struct ctl_ctx *ctx)
{
	enum policy_kind kind;
	char key[POLICY_KEY_MAX];
	json_t *resp = NULL;
	char *path;
	int status;
	int rv;

	if (ctl_flag(ctx, "filename") != NULL) {
		if (ctl_flag(ctx, "node") != NULL || ctl_flag(ctx, "orchestrator") != NULL ||
		    ctl_flag(ctx, "workload") != NULL)
			return ctl_usage_error(ctx, "with -f the file names the resources: no "
			                            "--node, --orchestrator or --workload");
		return run_file_op(ctx, "delete", "deleted", "skip-not-exists");
	}
	if (ctx->nargs == 0)
		return ctl_usage_error(ctx, "missing -f FILE or KIND NAME");
	if (parse_kind(ctx, ctx->args[0], &kind) != 0)
		return 2;
	if (ctx->nargs < 2)
		return ctl_usage_error(ctx, "missing NAME");
	if (ctx->nargs > 2)
		return ctl_usage_error(ctx, "unexpected argument '%s'", ctx->args[2]);
	if (check_endpoint_flags(ctx, kind) != 0)
		return 2;
	if (!make_key(ctx, kind, ctx->args[1], key)) {
		if (kind == POLICY_KIND_HOSTENDPOINT)
			return ctl_usage_error(ctx,
			                       "a hostEndpoint is named by --node NODE NAME or "
			                       "NODE/NAME");
		return ctl_usage_error(ctx, "a workloadEndpoint is named by --node NODE "
		                            "--orchestrator O --workload W NAME, or "
		                            "NODE/ORCHESTRATOR/WORKLOAD/NAME");
	}
	path = resource_path(kind, key);
	if (path == NULL)
		return ctl_fail(ctx, "out of memory");
	rv = ctl_request(ctx, "DELETE", path, NULL, &status, &resp);
	free(path);
	if (rv != 0)
		return rv;
	if (status == 404 && ctl_error_is(resp, "not_found") &&
	    ctl_flag(ctx, "skip-not-exists") != NULL) {
		/* Counted as deleted, as calicoctl counted it. */
		json_decref(resp);
		resp = json_pack("{s:[{s:s, s:s, s:s}]}", "results", "kind", policy_kind_name(kind),
		                 "key", key, "outcome", "skipped");
		if (resp == NULL)
			return ctl_fail(ctx, "out of memory");
	} else if (status / 100 != 2) {
		rv = ctl_fail_api(ctx, API_OK, NULL, status, resp);
	}
	if (rv == 0 && ctx->json)
		rv = ctl_print_json(ctx, resp);
	else if (rv == 0)
		fprintf(ctx->out, "Successfully deleted 1 '%s' resource(s)\n",
		        policy_kind_name(kind));
	json_decref(resp);
	return rv;
}

/* ---- get: tables ---- */

/* o[a][b] (b NULL: o[a]). */
static const json_t *field2(const json_t *o, const char *a, const char *b)
{
	const json_t *v = json_object_get(o, a);

	return b != NULL ? json_object_get(v, b) : v;
}

/* A scalar as a cell: strings as they are, numbers in decimal (reals in their shortest form that
 * reads back), booleans as true/false, anything else empty. */
static void scalar(char *buf, size_t size, const json_t *v)
{
	if (json_is_string(v)) {
		snprintf(buf, size, "%s", json_string_value(v));
	} else if (json_is_integer(v)) {
		snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	} else if (json_is_real(v)) {
		double d = json_real_value(v);

		for (int prec = 1; prec <= 17; prec++) {
			snprintf(buf, size, "%.*g", prec, d);
			if (strtod(buf, NULL) == d)
				break;
		}
	} else if (json_is_boolean(v)) {
		snprintf(buf, size, "%s", json_is_true(v) ? "true" : "false");
	} else {
		buf[0] = '\0';
	}
}

/* The elements of an array comma-joined. */
static void join(char *buf, size_t size, const json_t *arr)
{
	size_t len = 0;
	char item[CTL_CELL_MAX];

	buf[0] = '\0';
	for (size_t i = 0; i < json_array_size(arr) && len + 1 < size; i++) {
		scalar(item, sizeof(item), json_array_get(arr, i));
		if (snprintf(buf + len, size - len, "%s%s", i > 0 ? "," : "", item) < 0)
			break;
		len = strlen(buf);
	}
}

/* Labels as "k=v,k=v". */
static void labels_cell(char *buf, size_t size, const json_t *labels)
{
	const char *k;
	const json_t *v;
	size_t len = 0;

	buf[0] = '\0';
	json_object_foreach ((json_t *)labels, k, v) {
		if (len + 1 >= size)
			break;
		snprintf(buf + len, size - len, "%s%s=%s", len > 0 ? "," : "", k,
		         json_string_value(v) != NULL ? json_string_value(v) : "");
		len = strlen(buf);
	}
}

/* ipNATs as "internal->external,...". */
static void nats_cell(char *buf, size_t size, const json_t *nats)
{
	size_t len = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < json_array_size(nats) && len + 1 < size; i++) {
		const json_t *n = json_array_get(nats, i);
		const char *in = json_string_value(json_object_get(n, "internalIP"));
		const char *ex = json_string_value(json_object_get(n, "externalIP"));

		snprintf(buf + len, size - len, "%s%s->%s", i > 0 ? "," : "", in ? in : "?",
		         ex ? ex : "?");
		len = strlen(buf);
	}
}

static const char *const policy_headers[] = {"NAME", "ORDER", "SELECTOR"};
static const char *const profile_headers[] = {"NAME", "TAGS", "LABELS"};
static const char *const ippool_headers[] = {"CIDR", "IPIP",     "IPIP-MODE",
                                             "NAT",  "DISABLED", "BLOCK-SIZE"};
static const char *const hep_headers[] = {"NODE", "NAME", "INTERFACE", "IPS", "PROFILES"};
static const char *const wep_headers[] = {"NODE",     "ORCHESTRATOR", "WORKLOAD",  "NAME",
                                          "NETWORKS", "NATS",         "INTERFACE", "PROFILES"};
static const char *const node_headers[] = {"NAME", "ASN", "IPV4", "IPV6"};

/* The headers of kind's table and how many columns: ps shows the first nps, wide all. */
static const char *const *table_headers(enum policy_kind kind, int *nps, int *nwide)
{
	switch (kind) {
	case POLICY_KIND_POLICY:
		*nps = 1, *nwide = 3;
		return policy_headers;
	case POLICY_KIND_PROFILE:
		*nps = 1, *nwide = 3;
		return profile_headers;
	case POLICY_KIND_IPPOOL:
		*nps = 1, *nwide = 6;
		return ippool_headers;
	case POLICY_KIND_HOSTENDPOINT:
		*nps = 2, *nwide = 5;
		return hep_headers;
	case POLICY_KIND_WORKLOADENDPOINT:
		*nps = 4, *nwide = 8;
		return wep_headers;
	case POLICY_KIND_NODE:
		*nps = 1, *nwide = 4;
		return node_headers;
	default:
		*nps = *nwide = 0;
		return NULL;
	}
}

/* The wide cells of one resource (the ps cells are their first columns). */
static void table_row(enum policy_kind kind, const json_t *r, ctl_cell *row)
{
	const json_t *meta = json_object_get(r, "metadata");
	const json_t *spec = json_object_get(r, "spec");
	const json_t *v;

	switch (kind) {
	case POLICY_KIND_POLICY:
		scalar(row[0], CTL_CELL_MAX, json_object_get(meta, "name"));
		scalar(row[1], CTL_CELL_MAX, json_object_get(spec, "order"));
		scalar(row[2], CTL_CELL_MAX, json_object_get(spec, "selector"));
		break;
	case POLICY_KIND_PROFILE:
		scalar(row[0], CTL_CELL_MAX, json_object_get(meta, "name"));
		join(row[1], CTL_CELL_MAX, json_object_get(meta, "tags"));
		labels_cell(row[2], CTL_CELL_MAX, json_object_get(meta, "labels"));
		break;
	case POLICY_KIND_IPPOOL: {
		const char *cidr = json_string_value(json_object_get(meta, "cidr"));
		bool ipip = json_is_true(field2(spec, "ipip", "enabled"));

		scalar(row[0], CTL_CELL_MAX, json_object_get(meta, "cidr"));
		snprintf(row[1], CTL_CELL_MAX, "%s", ipip ? "true" : "false");
		if (ipip)
			scalar(row[2], CTL_CELL_MAX, field2(spec, "ipip", "mode"));
		snprintf(row[3], CTL_CELL_MAX, "%s",
		         json_is_true(json_object_get(spec, "nat-outgoing")) ? "true" : "false");
		snprintf(row[4], CTL_CELL_MAX, "%s",
		         json_is_true(json_object_get(spec, "disabled")) ? "true" : "false");
		v = json_object_get(spec, "blockSize");
		if (v != NULL)
			scalar(row[5], CTL_CELL_MAX, v);
		else
			snprintf(row[5], CTL_CELL_MAX, "%d",
			         cidr != NULL && strchr(cidr, ':') != NULL ? IPAM_DEFAULT_BLOCK_V6
			                                                   : IPAM_DEFAULT_BLOCK_V4);
		break;
	}
	case POLICY_KIND_HOSTENDPOINT:
		scalar(row[0], CTL_CELL_MAX, json_object_get(meta, "node"));
		scalar(row[1], CTL_CELL_MAX, json_object_get(meta, "name"));
		scalar(row[2], CTL_CELL_MAX, json_object_get(spec, "interfaceName"));
		join(row[3], CTL_CELL_MAX, json_object_get(spec, "expectedIPs"));
		join(row[4], CTL_CELL_MAX, json_object_get(spec, "profiles"));
		break;
	case POLICY_KIND_WORKLOADENDPOINT:
		scalar(row[0], CTL_CELL_MAX, json_object_get(meta, "node"));
		scalar(row[1], CTL_CELL_MAX, json_object_get(meta, "orchestrator"));
		scalar(row[2], CTL_CELL_MAX, json_object_get(meta, "workload"));
		scalar(row[3], CTL_CELL_MAX, json_object_get(meta, "name"));
		join(row[4], CTL_CELL_MAX, json_object_get(spec, "ipNetworks"));
		nats_cell(row[5], CTL_CELL_MAX, json_object_get(spec, "ipNATs"));
		scalar(row[6], CTL_CELL_MAX, json_object_get(spec, "interfaceName"));
		join(row[7], CTL_CELL_MAX, json_object_get(spec, "profiles"));
		break;
	case POLICY_KIND_NODE:
		scalar(row[0], CTL_CELL_MAX, json_object_get(meta, "name"));
		/* calicoctl showed the AS number a node inherits from the global default in
		 * parentheses. */
		v = field2(spec, "bgp", "asNumber");
		if (v != NULL)
			scalar(row[1], CTL_CELL_MAX, v);
		else
			snprintf(row[1], CTL_CELL_MAX, "(64512)");
		scalar(row[2], CTL_CELL_MAX, field2(spec, "bgp", "ipv4Address"));
		scalar(row[3], CTL_CELL_MAX, field2(spec, "bgp", "ipv6Address"));
		break;
	default:
		break;
	}
}

static int print_table(FILE *f, enum policy_kind kind, const json_t *items, bool wide)
{
	int nps;
	int nwide;
	const char *const *headers = table_headers(kind, &nps, &nwide);
	size_t n = json_array_size(items);
	ctl_cell *cells;
	ctl_cell row[CTL_MAX_COLUMNS];
	int ncols = wide ? nwide : nps;

	if (headers == NULL)
		return -1;
	cells = calloc((n + 1) * (size_t)ncols, sizeof(*cells));
	if (cells == NULL)
		return -1;
	for (int c = 0; c < ncols; c++)
		snprintf(cells[c], CTL_CELL_MAX, "%s", headers[c]);
	for (size_t i = 0; i < n; i++) {
		memset(row, 0, sizeof(row));
		table_row(kind, json_array_get(items, i), row);
		for (int c = 0; c < ncols; c++)
			memcpy(cells[(i + 1) * ncols + c], row[c], CTL_CELL_MAX);
	}
	ctl_put_columns(f, cells, ncols, n + 1);
	free(cells);
	return 0;
}

int ctl_resource_print(FILE *f, enum policy_kind kind, const json_t *items, const char *format,
                       bool single)
{
	const json_t *v = single ? json_array_get(items, 0) : items;
	char *yaml = NULL;

	if (strcmp(format, "json") == 0) {
		if (json_dumpf(v, f, JSON_INDENT(2) | JSON_ENCODE_ANY) != 0 ||
		    fputc('\n', f) == EOF)
			return -1;
		return 0;
	}
	if (strcmp(format, "yaml") == 0) {
		if (policy_doc_emit_yaml(v, &yaml) != 0)
			return -1;
		fputs(yaml, f);
		free(yaml);
		return 0;
	}
	return print_table(f, kind, items, strcmp(format, "wide") == 0);
}

/* ---- get ---- */

/* Whether a listed resource fits the NAME (may be NULL) and endpoint flags of the command line. */
static bool fits(const struct ctl_ctx *ctx, enum policy_kind kind, const json_t *r,
                 const char *name)
{
	static const char *const flags[] = {"node", "orchestrator", "workload"};
	const json_t *meta = json_object_get(r, "metadata");

	for (int i = 0; i < 3; i++) {
		const char *want = ctl_flag(ctx, flags[i]);
		const char *have = json_string_value(json_object_get(meta, flags[i]));

		if (want != NULL && (have == NULL || strcmp(want, have) != 0))
			return false;
	}
	if (name != NULL) {
		const char *have = json_string_value(
		    json_object_get(meta, kind == POLICY_KIND_IPPOOL ? "cidr" : "name"));
		if (have == NULL || strcmp(have, name) != 0)
			return false;
	}
	return true;
}

/* Whether normalized[i] names the same resource as one before it. */
static bool named_before(const json_t *normalized, size_t i)
{
	char key[POLICY_KEY_MAX];
	char other[POLICY_KEY_MAX];
	enum policy_kind kind =
	    policy_resource_key(json_array_get(normalized, i), key, sizeof(key));

	for (size_t j = 0; j < i; j++)
		if (policy_resource_key(json_array_get(normalized, j), other, sizeof(other)) ==
		        kind &&
		    strcmp(key, other) == 0)
			return true;
	return false;
}

/* Print the found resources (in the file's order) of the kinds named (the file's resources, each
 * once): as YAML or JSON one list (the resource itself when the file names one), as tables one
 * per kind, in the order the file first names them, a blank line between two. */
static int print_found(struct ctl_ctx *ctx, const json_t *normalized, const json_t *found)
{
	bool done[POLICY_KIND_COUNT] = {false};
	char key[POLICY_KEY_MAX];
	int rv = 0;

	if (strcmp(ctx->format, "yaml") == 0 || strcmp(ctx->format, "json") == 0)
		return ctl_resource_print(ctx->out, POLICY_KIND_NONE, found, ctx->format,
		                          json_array_size(normalized) == 1 &&
		                              json_array_size(found) == 1);
	for (size_t i = 0; rv == 0 && i < json_array_size(normalized); i++) {
		enum policy_kind kind =
		    policy_resource_key(json_array_get(normalized, i), key, sizeof(key));
		json_t *items;

		if (kind == POLICY_KIND_NONE || done[kind])
			continue;
		items = json_array();
		for (size_t j = 0; items != NULL && j < json_array_size(found); j++) {
			json_t *r = json_array_get(found, j);

			if (policy_resource_key(r, key, sizeof(key)) == kind &&
			    json_array_append(items, r) != 0) {
				json_decref(items);
				items = NULL;
			}
		}
		if (items == NULL)
			return -1;
		if (i > 0)
			fputc('\n', ctx->out);
		rv = ctl_resource_print(ctx->out, kind, items, ctx->format, false);
		done[kind] = true;
		json_decref(items);
	}
	return rv;
}

/* get -f FILE: the resources the file names, as calicoctl 1.x: those that do not exist simply
 * give no result. */
static int run_get_file(struct ctl_ctx *ctx, const char *path)
{
	json_t *raw = NULL;
	json_t *normalized = NULL;
	json_t *unique = NULL;
	json_t *current = NULL;
	json_t *found = NULL;
	int rv;

	if (ctx->nargs > 0)
		return ctl_usage_error(
		    ctx, "with -f the file names the resources: no KIND or NAME ('%s')",
		    ctx->args[0]);
	if (ctl_flag(ctx, "node") != NULL || ctl_flag(ctx, "orchestrator") != NULL ||
	    ctl_flag(ctx, "workload") != NULL)
		return ctl_usage_error(ctx, "with -f the file names the resources: no --node, "
		                            "--orchestrator or --workload");
	rv = read_resources(ctx, path, &raw, &normalized);
	/* A resource the file names twice is asked for and shown once. */
	if (rv == 0 && ((unique = json_array()) == NULL || (found = json_array()) == NULL))
		rv = ctl_fail(ctx, "out of memory");
	for (size_t i = 0; rv == 0 && i < json_array_size(normalized); i++)
		if (!named_before(normalized, i) &&
		    json_array_append(unique, json_array_get(normalized, i)) != 0)
			rv = ctl_fail(ctx, "out of memory");
	if (rv == 0)
		rv = fetch_current(ctx, unique, &current);
	for (size_t i = 0; rv == 0 && i < json_array_size(current); i++) {
		json_t *r = json_array_get(current, i);

		if (!json_is_null(r) && json_array_append(found, r) != 0)
			rv = ctl_fail(ctx, "out of memory");
	}
	if (rv == 0 && print_found(ctx, unique, found) != 0)
		rv = ctl_fail(ctx, "cannot print the %s",
		              strcmp(ctx->format, "yaml") == 0 ? "resources as YAML" : "resources");
	json_decref(found);
	json_decref(current);
	json_decref(unique);
	json_decref(raw);
	json_decref(normalized);
	return rv;
}

static int run_get(struct ctl_ctx *ctx)
{
	const char *name = ctx->nargs > 1 ? ctx->args[1] : NULL;
	enum policy_kind kind;
	char key[POLICY_KEY_MAX];
	json_t *resp = NULL;
	json_t *items = NULL;
	const json_t *list;
	char path[64];
	char *rpath;
	bool single = false;
	int rv;

	if (ctl_flag(ctx, "filename") != NULL)
		return run_get_file(ctx, ctl_flag(ctx, "filename"));
	if (ctx->nargs == 0)
		return ctl_usage_error(ctx, "missing KIND");
	if (parse_kind(ctx, ctx->args[0], &kind) != 0)
		return 2;
	if (ctx->nargs > 2)
		return ctl_usage_error(ctx, "unexpected argument '%s'", ctx->args[2]);
	if (check_endpoint_flags(ctx, kind) != 0)
		return 2;

	if (name != NULL && make_key(ctx, kind, name, key)) {
		rpath = resource_path(kind, key);
		if (rpath == NULL)
			return ctl_fail(ctx, "out of memory");
		rv = ctl_call(ctx, "GET", rpath, NULL, &resp);
		free(rpath);
		if (rv != 0)
			return rv;
		if (!json_is_object(json_object_get(resp, "resource"))) {
			rv = ctl_fail(ctx, "unexpected answer from the agent: no resource");
			goto out;
		}
		items = json_pack("[O]", json_object_get(resp, "resource"));
		single = true;
	} else {
		snprintf(path, sizeof(path), "/v1/%s", policy_kind_plural(kind));
		rv = ctl_call(ctx, "GET", path, NULL, &resp);
		if (rv != 0)
			return rv;
		list = json_object_get(resp, "items");
		if (!json_is_array(list)) {
			rv = ctl_fail(ctx, "unexpected answer from the agent: no item list");
			goto out;
		}
		items = json_array();
		for (size_t i = 0; items != NULL && i < json_array_size(list); i++) {
			json_t *r = json_array_get(list, i);

			if (fits(ctx, kind, r, name) && json_array_append(items, r) != 0) {
				json_decref(items);
				items = NULL;
			}
		}
		if (items != NULL && name != NULL) {
			/* A name that fits no resource is an error, as a missing key is. */
			if (json_array_size(items) == 0) {
				rv = ctl_fail(ctx, "%s %s does not exist", policy_kind_name(kind),
				              name);
				goto out;
			}
			single = json_array_size(items) == 1;
		}
	}
	if (items == NULL) {
		rv = ctl_fail(ctx, "out of memory");
		goto out;
	}
	if (ctl_resource_print(ctx->out, kind, items, ctx->format, single) != 0)
		rv = ctl_fail(ctx, "cannot print the %s",
		              strcmp(ctx->format, "yaml") == 0 ? "resources as YAML" : "resources");
out:
	json_decref(items);
	json_decref(resp);
	return rv;
}

/* ---- the commands ---- */

static const struct ctl_flag file_flags[] = {
    {"filename", 'f', "FILE", "the resource file, YAML or JSON (- for standard input)"},
    {0},
};

static const struct ctl_flag create_flags[] = {
    {"filename", 'f', "FILE", "the resource file, YAML or JSON (- for standard input)"},
    {"skip-exists", 0, NULL,
     "a resource that exists already is skipped, not an error (and counted as created)"},
    {0},
};

const struct ctl_command ctl_create_command = {
    .name = "create",
    .usage_args = "-f FILE",
    .summary = "create v1 resources from a file",
    .description =
        "Create the resources of FILE (YAML or JSON: one resource, a list, or several YAML "
        "documents),\nas calicoctl create did. Every resource is checked before anything is "
        "sent; then all are\ncreated or, if one exists already, none. With --skip-exists "
        "those that exist are left as they\nare and the others created, all or none.",
    .flags = create_flags,
    .client = true,
    .run = run_create,
};

const struct ctl_command ctl_apply_command = {
    .name = "apply",
    .usage_args = "-f FILE",
    .summary = "create or update v1 resources from a file",
    .description = "Create the resources of FILE that do not exist and replace those that do, "
                   "all or nothing,\nas calicoctl apply did. Every resource is checked before "
                   "anything is sent.",
    .flags = file_flags,
    .client = true,
    .run = run_apply,
};

const struct ctl_command ctl_replace_command = {
    .name = "replace",
    .usage_args = "-f FILE",
    .summary = "replace existing v1 resources from a file",
    .description = "Replace the resources of FILE, which must all exist, all or nothing, as "
                   "calicoctl replace\ndid. Every resource is checked before anything is sent.",
    .flags = file_flags,
    .client = true,
    .run = run_replace,
};

static const struct ctl_flag delete_flags[] = {
    {"filename", 'f', "FILE", "delete the resources of this file (- for standard input)"},
    {"node", 0, "NODE", "the node of the hostEndpoint or workloadEndpoint"},
    {"orchestrator", 0, "O", "the orchestrator of the workloadEndpoint"},
    {"workload", 0, "W", "the workload of the workloadEndpoint"},
    {"skip-not-exists", 's', NULL,
     "a resource that does not exist is skipped, not an error (and counted as deleted)"},
    {0},
};

const struct ctl_command ctl_delete_command = {
    .name = "delete",
    .usage_args = "(-f FILE | KIND NAME)",
    .summary = "delete v1 resources",
    .description =
        "Delete the resources of FILE (all or nothing), or one resource by kind and name. "
        "KIND is any\ncalicoctl kind name or alias (policy, pol, profile, ipPool, ipp, "
        "hostEndpoint, hep,\nworkloadEndpoint, wep, node, ...); an ipPool's NAME is its CIDR. "
        "A hostEndpoint is named by\n--node NODE NAME (or NODE/NAME), a workloadEndpoint by "
        "--node, --orchestrator and --workload\nwith NAME (or NODE/ORCHESTRATOR/WORKLOAD/NAME). "
        "With --skip-not-exists a resource that\ndoes not exist is no error.",
    .flags = delete_flags,
    .more_args = true,
    .client = true,
    .run = run_delete,
};

static const struct ctl_flag get_flags[] = {
    {"filename", 'f', "FILE", "show the resources this file names (- for standard input)"},
    {"node", 0, "NODE", "only endpoints of this node"},
    {"orchestrator", 0, "O", "only workloadEndpoints of this orchestrator"},
    {"workload", 0, "W", "only workloadEndpoints of this workload"},
    {0},
};

static const char *const get_formats[] = {"ps", "wide", "yaml", "json", NULL};

const struct ctl_command ctl_get_command = {
    .name = "get",
    .usage_args = "(KIND [NAME] | -f FILE)",
    .summary = "show v1 resources",
    .description =
        "Show the resources of a kind, or the one named NAME, or those FILE names (those that "
        "do not\nexist give no result), as calicoctl get did. -o ps (the default) and -o wide "
        "print a table\n(one per kind); -o yaml and -o json the resources in normalized form: "
        "the resource itself when\nNAME or FILE names one, else a list. Endpoints can be "
        "narrowed with --node, --orchestrator\nand --workload.",
    .flags = get_flags,
    .more_args = true,
    .client = true,
    .formats = get_formats,
    .run = run_get,
};
