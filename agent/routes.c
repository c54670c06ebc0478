/*
 * The agent's HTTP API (DESIGN.md section 4): /v1/kv, /v1/txn, /v1/watch, /v1/cluster, the
 * internal paths other members use (/v1/internal/...), /healthz and /metrics. The IPAM paths
 * are in routes_ipam.c.
 *
 * Every handler validates all of its input before it touches the store, so a bad request never
 * changes anything, and answers with {"error": {"code", "message"}} naming what is wrong.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>
#include <raft.h>

#include "agent/internal.h"
#include "agent/roles.h"
#include "api/api.h"
#include "ipam/ipam.h"

#define FANOUT_TIMEOUT_MS 2000
/* A member removal passed on to the leader: it releases the member's addresses too. */
#define LEADER_PROXY_TIMEOUT_MS 20000 /* within the CLI's 30 s, with the barrier before it */

/* ------------------------------------------------------------------------------------------ */
/* Replies                                                                                     */

static void count_status(struct agent *a, int status)
{
	int k = status / 100;
	if (k >= 1 && k <= 5) {
		a->requests_by_class[k]++;
	}
}

void agent_reply_json(struct agent *a, struct http_request *req, int status, json_t *body)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	count_status(a, status);
	if (text == NULL) {
		static const char oom[] = "{\"error\":{\"code\":\"internal\",\"message\":\"out of "
		                          "memory\"}}";
		http_respond(req, 500, "application/json", oom, sizeof oom - 1);
		return;
	}
	size_t len = strlen(text);
	text[len] = '\n'; /* replaces the NUL; curl output ends with a newline */
	http_respond(req, status, "application/json", text, len + 1);
	free(text);
}

void agent_reply_raw(struct agent *a, struct http_request *req, int status,
                     const char *content_type, const void *body, size_t len)
{
	count_status(a, status);
	http_respond(req, status, content_type, body, len);
}

void agent_reply_error(struct agent *a, struct http_request *req, int status, const char *code,
                       const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	/* msg may quote the request's bytes, cut anywhere: JSON takes only whole characters. */
	ipam_text_repair(msg);
	agent_reply_json(a, req, status,
	                 json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", msg));
}

static int store_status_http(int st)
{
	switch (st) {
	case STORE_ENOLEADER:
	case STORE_ENOTLEADER:
	case STORE_ESHUTDOWN:
		return 503;
	case STORE_ETIMEDOUT:
		return 504;
	case STORE_EINVAL:
		return 400;
	case STORE_ECOMPACTED:
		return 410;
	case STORE_ENOSPC:
	case STORE_EDISK:
		return 507;
	default:
		return 500;
	}
}

static const char *store_status_code(int st)
{
	switch (st) {
	case STORE_ENOLEADER:
	case STORE_ENOTLEADER:
		return "unavailable";
	case STORE_ESHUTDOWN:
		return "shutting_down";
	case STORE_ETIMEDOUT:
		return "timeout";
	case STORE_EINVAL:
		return "bad_request";
	case STORE_ECOMPACTED:
		return "compacted";
	case STORE_ENOSPC:
		return "no_space";
	case STORE_EDISK:
		return "disk_failure";
	default:
		return "internal";
	}
}

static void reply_store_error(struct agent *a, struct http_request *req, int st)
{
	agent_reply_error(a, req, store_status_http(st), store_status_code(st), "%s",
	                  store_strerror(st));
}

int agent_status_of(const char *code)
{
	if (strcmp(code, "invalid") == 0) {
		return 400;
	}
	if (strcmp(code, "not_found") == 0) {
		return 404;
	}
	if (strcmp(code, "internal") == 0) {
		return 500;
	}
	return 409;
}

void agent_reply_store_error(struct agent *a, struct http_request *req, int st, const char *prefix)
{
	if (prefix == NULL) {
		reply_store_error(a, req, st);
		return;
	}
	agent_reply_error(a, req, store_status_http(st), store_status_code(st), "%s: %s", prefix,
	                  store_strerror(st));
}

/* ------------------------------------------------------------------------------------------ */
/* Parameters                                                                                  */

/* A boolean query flag: absent, "", "1", "true" (true) or "0", "false" (false). */
static int query_bool(struct agent *a, struct http_request *req, const char *name, bool *out)
{
	char *v = http_query_get(req, name);
	*out = false;
	if (v == NULL) {
		return 0;
	}
	int rv = 0;
	if (v[0] == 0 || strcmp(v, "1") == 0 || strcmp(v, "true") == 0) {
		*out = true;
	} else if (strcmp(v, "0") != 0 && strcmp(v, "false") != 0) {
		agent_reply_error(a, req, 400, "bad_request",
		                  "query parameter %s: '%s' is not a boolean (1, true, 0, false)",
		                  name, v);
		rv = -1;
	}
	free(v);
	return rv;
}

static int query_int(struct agent *a, struct http_request *req, const char *name, int64_t min,
                     int64_t *out)
{
	char *v = http_query_get(req, name);
	if (v == NULL) {
		return 0;
	}
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	int rv = 0;
	if (errno != 0 || end == v || *end != 0 || n < min) {
		agent_reply_error(a, req, 400, "bad_request",
		                  "query parameter %s: '%s' is not an integer >= %" PRId64, name, v,
		                  min);
		rv = -1;
	} else {
		*out = n;
	}
	free(v);
	return rv;
}

/* The key is the rest of the path after prefix; it must be valid UTF-8 without NUL. */
static int path_key(struct agent *a, struct http_request *req, size_t skip, bool allow_empty,
                    struct kv_bytes *key)
{
	if (req->path_len < skip) {
		agent_reply_error(a, req, 404, "not_found", "no such path");
		return -1;
	}
	key->data = (const uint8_t *)req->path + skip;
	key->len = req->path_len - skip;
	json_t *check = json_stringn((const char *)key->data, key->len);
	bool utf8 = check != NULL;
	json_decref(check);
	if (!utf8 || memchr(key->data, 0, key->len) != NULL) {
		agent_reply_error(a, req, 400, "bad_request", "the key is not valid UTF-8");
		return -1;
	}
	if (key->len == 0 && !allow_empty) {
		agent_reply_error(a, req, 400, "bad_request",
		                  "the key is empty (an empty key needs prefix=1)");
		return -1;
	}
	return 0;
}

json_t *agent_parse_body(struct agent *a, struct http_request *req, const char *code)
{
	json_error_t e;
	if (req->body_len == 0) {
		agent_reply_error(a, req, 400, code, "the request needs a JSON body");
		return NULL;
	}
	json_t *j = json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, &e);
	if (j == NULL) {
		agent_reply_error(a, req, 400, code, "body: %s at line %d column %d", e.text,
		                  e.line, e.column);
		return NULL;
	}
	if (!json_is_object(j)) {
		agent_reply_error(a, req, 400, code, "body: expected a JSON object");
		json_decref(j);
		return NULL;
	}
	return j;
}

/* Refuse members of obj not in the NULL-terminated list: a typo must not pass silently. */
static int only_fields(struct agent *a, struct http_request *req, json_t *obj, const char *where,
                       const char *const *allowed)
{
	const char *k;
	json_t *v;
	json_object_foreach (obj, k, v) {
		bool ok = false;
		for (const char *const *p = allowed; *p != NULL; p++) {
			ok = ok || strcmp(*p, k) == 0;
		}
		if (!ok) {
			agent_reply_error(a, req, 400, "bad_request", "%s: unknown field '%s'",
			                  where, k);
			return -1;
		}
	}
	return 0;
}

static json_t *kv_json(const struct kv_kv *kv, bool with_value)
{
	json_t *o = json_object();
	json_object_set_new(o, "key", json_stringn((const char *)kv->key, kv->key_len));
	if (with_value) {
		json_object_set_new(o, "value",
		                    json_stringn((const char *)kv->value, kv->value_len));
	}
	json_object_set_new(o, "create_revision", json_integer(kv->create_revision));
	json_object_set_new(o, "mod_revision", json_integer(kv->mod_revision));
	json_object_set_new(o, "version", json_integer(kv->version));
	return o;
}

static json_t *kvs_json(const struct kv_kv *kvs, unsigned n)
{
	json_t *arr = json_array();
	for (unsigned i = 0; i < n; i++) {
		json_array_append_new(arr, kv_json(&kvs[i], true));
	}
	return arr;
}

/* ------------------------------------------------------------------------------------------ */
/* Writes                                                                                      */

/* What a joiner is told: its member id, and the cluster id it must carry (absent in a cluster
 * whose data predates cluster ids). */
static json_t *join_answer(struct agent *a, uint64_t id, const char *name)
{
	json_t *j = json_pack("{s:I, s:s}", "id", (json_int_t)id, "name", name);
	if (j != NULL && a->cluster_hex[0] != 0) {
		json_object_set_new(j, "cluster", json_string(a->cluster_hex));
	}
	return j;
}

enum wkind { WK_PUT, WK_DEL, WK_TXN, WK_HASH, WK_JOIN_ID, WK_JOIN_REC, WK_REMOVE };

struct wctx {
	struct store_write w;
	struct agent *a;
	struct http_request *req;
	enum wkind kind;
	/* join */
	struct member_rec m;
	int attempts;
	/* remove */
	char name[128];
};

static void hash_fanout(struct agent *a, struct http_request *req, int64_t rev);
static void join_claim(struct wctx *c);

static json_t *op_result_json(const struct kv_op_result *r)
{
	switch (r->type) {
	case KV_OP_PUT:
		return json_pack("{s:{s:I}}", "put", "revision", (json_int_t)r->revision);
	case KV_OP_DEL:
		return json_pack("{s:{s:I, s:I}}", "delete", "revision", (json_int_t)r->revision,
		                 "deleted", (json_int_t)r->deleted);
	case KV_OP_GET:
		return json_pack("{s:{s:I, s:o, s:b}}", "get", "revision", (json_int_t)r->revision,
		                 "kvs", kvs_json(r->kvs, r->n_kvs), "more", r->more);
	}
	return json_null();
}

static void write_done(struct store_write *w, int status, const struct kv_result *r)
{
	struct wctx *c = w->data;
	struct agent *a = c->a;
	if (status != STORE_OK) {
		reply_store_error(a, c->req, status);
		free(c);
		return;
	}
	if (r->status == KV_R_INVALID) {
		agent_reply_error(a, c->req, 400, "bad_request", "%s",
		                  r->message ? r->message : "invalid command");
		free(c);
		return;
	}
	switch (c->kind) {
	case WK_PUT:
		if (r->status == KV_R_COND_FAILED) {
			agent_reply_error(
			    a, c->req, 409, "conflict",
			    "prev_revision does not match: the key's mod revision is %lld%s",
			    (long long)(r->n_ops > 0 ? r->ops[0].revision : 0),
			    r->n_ops > 0 && r->ops[0].revision == 0 ? " (the key does not exist)"
			                                            : "");
		} else {
			agent_reply_json(a, c->req, 200,
			                 json_pack("{s:I}", "revision", (json_int_t)r->revision));
		}
		break;
	case WK_DEL:
		agent_reply_json(a, c->req, 200,
		                 json_pack("{s:I, s:I}", "revision", (json_int_t)r->revision,
		                           "deleted",
		                           (json_int_t)(r->n_ops > 0 ? r->ops[0].deleted : 0)));
		break;
	case WK_TXN: {
		json_t *res = json_array();
		for (unsigned i = 0; i < r->n_ops; i++) {
			json_array_append_new(res, op_result_json(&r->ops[i]));
		}
		agent_reply_json(a, c->req, 200,
		                 json_pack("{s:I, s:b, s:o}", "revision", (json_int_t)r->revision,
		                           "succeeded", r->succeeded, "results", res));
		break;
	}
	case WK_HASH:
		hash_fanout(a, c->req, r->revision);
		break;
	case WK_JOIN_ID:
		if (r->status == KV_R_COND_FAILED) {
			/* Someone else claimed that id meanwhile: try the next one. */
			c->m.id++;
			if (++c->attempts < 64) {
				join_claim(c);
				return;
			}
			agent_reply_error(a, c->req, 503, "unavailable",
			                  "could not claim a member id");
			break;
		}
		{
			char key[256];
			char *js = member_json(&c->m);
			snprintf(key, sizeof key, SYS_MEMBER_PREFIX "%s", c->m.name);
			struct kv_op op = {.type = KV_OP_PUT,
			                   .space = KV_SPACE_SYS,
			                   .key = {(const uint8_t *)key, strlen(key)},
			                   .value = {(const uint8_t *)js, js ? strlen(js) : 0},
			                   .has_prev = true,
			                   .prev_revision = 0};
			c->kind = WK_JOIN_REC;
			int rv = js ? store_write(a->store, &c->w, &op, write_done) : STORE_ENOMEM;
			free(js);
			if (rv != STORE_OK) {
				reply_store_error(a, c->req, rv);
				break;
			}
			return;
		}
	case WK_JOIN_REC:
		if (r->status == KV_R_COND_FAILED) {
			agent_reply_error(a, c->req, 409, "conflict",
			                  "member name '%s' was taken while joining", c->m.name);
		} else {
			agent_log("member %s (id %llu) joined from %s", c->m.name,
			          (unsigned long long)c->m.id, c->m.peer_address);
			agent_kick_reconcile(a);
			agent_reply_json(a, c->req, 200, join_answer(a, c->m.id, c->m.name));
		}
		break;
	case WK_REMOVE:
		agent_kick_reconcile(a);
		/* Then its addresses and block affinities go (or a 404 if there was nothing). */
		agent_ipam_remove_node(a, c->req, c->name,
		                       !(r->n_ops > 0 && r->ops[0].deleted == 0));
		break;
	}
	free(c);
}

static int submit(struct agent *a, struct http_request *req, enum wkind kind,
                  const struct kv_op *op)
{
	struct wctx *c = calloc(1, sizeof *c);
	if (c == NULL) {
		agent_reply_error(a, req, 500, "internal", "out of memory");
		return -1;
	}
	c->a = a;
	c->req = req;
	c->kind = kind;
	c->w.data = c;
	int rv = store_write(a->store, &c->w, op, write_done);
	if (rv != STORE_OK) {
		free(c);
		reply_store_error(a, req, rv);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* /v1/kv                                                                                      */

struct rctx {
	struct agent *a;
	struct http_request *req;
	struct kv_bytes key;
	bool prefix;
	int64_t limit;
};

static void range_reply(struct agent *a, struct http_request *req, struct kv_bytes key, bool prefix,
                        int64_t limit)
{
	struct kv_kv *kvs = NULL;
	unsigned n = 0;
	bool more = false;
	int64_t rev = 0;
	int rv = store_range(a->store, KV_SPACE_USER, key, prefix, limit, &kvs, &n, &more, &rev);
	if (rv != STORE_OK) {
		reply_store_error(a, req, rv);
		return;
	}
	agent_reply_json(a, req, 200,
	                 json_pack("{s:I, s:o, s:b}", "revision", (json_int_t)rev, "kvs",
	                           kvs_json(kvs, n), "more", more));
	kv_kvs_free(kvs, n);
}

static void linearizable_done(void *data, int status)
{
	struct rctx *c = data;
	if (status != STORE_OK) {
		reply_store_error(c->a, c->req, status);
	} else {
		range_reply(c->a, c->req, c->key, c->prefix, c->limit);
	}
	free(c);
}

int agent_query_consistency(struct agent *a, struct http_request *req, bool *linearizable)
{
	char *cons = http_query_get(req, "consistency");
	if (cons == NULL) {
		return 0;
	}
	int rv = 0;
	if (strcmp(cons, "linearizable") == 0 || strcmp(cons, "serializable") == 0) {
		*linearizable = cons[0] == 'l';
	} else {
		agent_reply_error(a, req, 400, "bad_request",
		                  "query parameter consistency: '%s' is neither "
		                  "'serializable' nor 'linearizable'",
		                  cons);
		rv = -1;
	}
	free(cons);
	return rv;
}

static void kv_get(struct agent *a, struct http_request *req, struct kv_bytes key, bool prefix)
{
	int64_t limit = 0;
	if (query_int(a, req, "limit", 0, &limit) != 0) {
		return;
	}
	bool lin = false;
	if (agent_query_consistency(a, req, &lin) != 0) {
		return;
	}
	if (!lin) {
		range_reply(a, req, key, prefix, limit);
		return;
	}
	struct rctx *c = calloc(1, sizeof *c);
	if (c == NULL) {
		agent_reply_error(a, req, 500, "internal", "out of memory");
		return;
	}
	*c = (struct rctx){.a = a, .req = req, .key = key, .prefix = prefix, .limit = limit};
	int rv = store_sync(a->store, linearizable_done, c);
	if (rv != STORE_OK) {
		free(c);
		reply_store_error(a, req, rv);
	}
}

static void kv_put(struct agent *a, struct http_request *req, struct kv_bytes key)
{
	json_t *j = agent_parse_body(a, req, "bad_request");
	if (j == NULL) {
		return;
	}
	static const char *const fields[] = {"value", "prev_revision", NULL};
	json_t *v = json_object_get(j, "value");
	json_t *prev = json_object_get(j, "prev_revision");
	if (only_fields(a, req, j, "body", fields) != 0) {
		goto out;
	}
	if (!json_is_string(v)) {
		agent_reply_error(a, req, 400, "bad_request", "body: \"value\" must be a string");
		goto out;
	}
	if (prev != NULL && (!json_is_integer(prev) || json_integer_value(prev) < 0)) {
		agent_reply_error(a, req, 400, "bad_request",
		                  "body: \"prev_revision\" must be an integer >= 0");
		goto out;
	}
	struct kv_op op = {
	    .type = KV_OP_PUT,
	    .space = KV_SPACE_USER,
	    .key = key,
	    .value = {(const uint8_t *)json_string_value(v), json_string_length(v)},
	    .has_prev = prev != NULL,
	    .prev_revision = prev ? json_integer_value(prev) : 0,
	};
	submit(a, req, WK_PUT, &op);
out:
	json_decref(j);
}

static void handle_kv(struct agent *a, struct http_request *req)
{
	bool prefix;
	struct kv_bytes key;
	if (query_bool(a, req, "prefix", &prefix) != 0) {
		return;
	}
	if (path_key(a, req, strlen("/v1/kv/"), prefix, &key) != 0) {
		return;
	}
	switch (req->method) {
	case HTTP_GET:
		kv_get(a, req, key, prefix);
		return;
	case HTTP_PUT:
		if (prefix) {
			agent_reply_error(a, req, 400, "bad_request", "PUT takes no prefix");
			return;
		}
		kv_put(a, req, key);
		return;
	case HTTP_DELETE: {
		struct kv_op op = {
		    .type = KV_OP_DEL, .space = KV_SPACE_USER, .key = key, .prefix = prefix};
		submit(a, req, WK_DEL, &op);
		return;
	}
	default:
		agent_reply_error(a, req, 405, "method_not_allowed",
		                  "%s is not allowed on /v1/kv (GET, PUT, DELETE)",
		                  http_method_str(req->method));
	}
}

/* ------------------------------------------------------------------------------------------ */
/* /v1/txn                                                                                     */

struct txn_parse {
	struct kv_cmp *cmps;
	struct kv_op *ops; /* success then failure */
	unsigned n_cmps, n_success, n_failure;
};

static int parse_txn_op(struct agent *a, struct http_request *req, json_t *o, const char *where,
                        struct kv_op *op)
{
	if (!json_is_object(o) || json_object_size(o) != 1) {
		agent_reply_error(a, req, 400, "bad_request",
		                  "%s: expected one of {\"put\": {...}}, {\"delete\": {...}}, "
		                  "{\"get\": {...}}",
		                  where);
		return -1;
	}
	const char *kind = json_object_iter_key(json_object_iter(o));
	json_t *b = json_object_iter_value(json_object_iter(o));
	json_t *key = json_object_get(b, "key");
	char w[160];
	snprintf(w, sizeof w, "%s.%s", where, kind);
	memset(op, 0, sizeof *op);
	op->space = KV_SPACE_USER;
	if (!json_is_object(b) || !json_is_string(key)) {
		agent_reply_error(a, req, 400, "bad_request", "%s: needs a string \"key\"", w);
		return -1;
	}
	op->key.data = (const uint8_t *)json_string_value(key);
	op->key.len = json_string_length(key);
	json_t *prefix = json_object_get(b, "prefix");
	if (prefix != NULL && !json_is_boolean(prefix)) {
		agent_reply_error(a, req, 400, "bad_request", "%s.prefix: must be a boolean", w);
		return -1;
	}
	op->prefix = json_is_true(prefix);
	if (strcmp(kind, "put") == 0) {
		static const char *const f[] = {"key", "value", NULL};
		json_t *v = json_object_get(b, "value");
		if (only_fields(a, req, b, w, f) != 0) {
			return -1;
		}
		if (!json_is_string(v)) {
			agent_reply_error(a, req, 400, "bad_request", "%s.value: must be a string",
			                  w);
			return -1;
		}
		op->type = KV_OP_PUT;
		op->value.data = (const uint8_t *)json_string_value(v);
		op->value.len = json_string_length(v);
	} else if (strcmp(kind, "delete") == 0) {
		static const char *const f[] = {"key", "prefix", NULL};
		if (only_fields(a, req, b, w, f) != 0) {
			return -1;
		}
		op->type = KV_OP_DEL;
	} else if (strcmp(kind, "get") == 0) {
		static const char *const f[] = {"key", "prefix", "limit", NULL};
		json_t *limit = json_object_get(b, "limit");
		if (only_fields(a, req, b, w, f) != 0) {
			return -1;
		}
		if (limit != NULL && (!json_is_integer(limit) || json_integer_value(limit) < 0)) {
			agent_reply_error(a, req, 400, "bad_request",
			                  "%s.limit: must be an integer >= 0", w);
			return -1;
		}
		op->type = KV_OP_GET;
		op->limit = limit ? json_integer_value(limit) : 0;
	} else {
		agent_reply_error(a, req, 400, "bad_request",
		                  "%s: unknown operation '%s' (put, delete, get)", where, kind);
		return -1;
	}
	if (op->key.len == 0 && !(op->prefix && op->type != KV_OP_PUT)) {
		agent_reply_error(a, req, 400, "bad_request", "%s.key: must not be empty", w);
		return -1;
	}
	return 0;
}

static int parse_cmp(struct agent *a, struct http_request *req, json_t *o, unsigned i,
                     struct kv_cmp *c)
{
	static const char *const f[] = {"key", "target", "result", "value", NULL};
	char w[64];
	snprintf(w, sizeof w, "compare[%u]", i);
	if (!json_is_object(o)) {
		agent_reply_error(a, req, 400, "bad_request", "%s: expected an object", w);
		return -1;
	}
	if (only_fields(a, req, o, w, f) != 0) {
		return -1;
	}
	json_t *key = json_object_get(o, "key"), *target = json_object_get(o, "target"),
	       *result = json_object_get(o, "result"), *value = json_object_get(o, "value");
	if (!json_is_string(key) || json_string_length(key) == 0) {
		agent_reply_error(a, req, 400, "bad_request", "%s.key: must be a non-empty string",
		                  w);
		return -1;
	}
	memset(c, 0, sizeof *c);
	c->key.data = (const uint8_t *)json_string_value(key);
	c->key.len = json_string_length(key);
	const char *t = json_string_value(target), *r = json_string_value(result);
	if (t == NULL) {
		agent_reply_error(a, req, 400, "bad_request",
		                  "%s.target: must be value, mod_revision, create_revision or "
		                  "version",
		                  w);
		return -1;
	}
	if (strcmp(t, "value") == 0) {
		c->target = KV_CMP_VALUE;
	} else if (strcmp(t, "mod_revision") == 0) {
		c->target = KV_CMP_MOD_REVISION;
	} else if (strcmp(t, "create_revision") == 0) {
		c->target = KV_CMP_CREATE_REVISION;
	} else if (strcmp(t, "version") == 0) {
		c->target = KV_CMP_VERSION;
	} else {
		agent_reply_error(a, req, 400, "bad_request",
		                  "%s.target: '%s' is not value, mod_revision, create_revision or "
		                  "version",
		                  w, t);
		return -1;
	}
	if (r == NULL || !(strcmp(r, "=") == 0 || strcmp(r, "!=") == 0 || strcmp(r, "<") == 0 ||
	                   strcmp(r, ">") == 0)) {
		agent_reply_error(a, req, 400, "bad_request",
		                  "%s.result: must be one of =, !=, <, >", w);
		return -1;
	}
	c->result = r[0] == '='   ? KV_CMP_EQUAL
	            : r[0] == '!' ? KV_CMP_NOT_EQUAL
	            : r[0] == '<' ? KV_CMP_LESS
	                          : KV_CMP_GREATER;
	if (c->target == KV_CMP_VALUE) {
		if (!json_is_string(value)) {
			agent_reply_error(a, req, 400, "bad_request",
			                  "%s.value: must be a string for target value", w);
			return -1;
		}
		c->value.data = (const uint8_t *)json_string_value(value);
		c->value.len = json_string_length(value);
	} else {
		if (!json_is_integer(value)) {
			agent_reply_error(a, req, 400, "bad_request",
			                  "%s.value: must be an integer for target %s", w, t);
			return -1;
		}
		c->number = json_integer_value(value);
	}
	return 0;
}

static void handle_txn(struct agent *a, struct http_request *req)
{
	if (req->method != HTTP_POST) {
		agent_reply_error(a, req, 405, "method_not_allowed", "/v1/txn takes POST");
		return;
	}
	json_t *j = agent_parse_body(a, req, "bad_request");
	if (j == NULL) {
		return;
	}
	static const char *const fields[] = {"compare", "success", "failure", NULL};
	struct txn_parse t = {0};
	json_t *cmp = json_object_get(j, "compare"), *suc = json_object_get(j, "success"),
	       *fail = json_object_get(j, "failure");
	if (only_fields(a, req, j, "body", fields) != 0) {
		goto out;
	}
	if ((cmp && !json_is_array(cmp)) || (suc && !json_is_array(suc)) ||
	    (fail && !json_is_array(fail))) {
		agent_reply_error(a, req, 400, "bad_request",
		                  "body: compare, success and failure must be arrays");
		goto out;
	}
	t.n_cmps = cmp ? (unsigned)json_array_size(cmp) : 0;
	t.n_success = suc ? (unsigned)json_array_size(suc) : 0;
	t.n_failure = fail ? (unsigned)json_array_size(fail) : 0;
	if (t.n_cmps > 1024 || t.n_success + t.n_failure > 4096) {
		agent_reply_error(a, req, 400, "bad_request",
		                  "body: at most 1024 compares and 4096 operations");
		goto out;
	}
	t.cmps = calloc(t.n_cmps + 1, sizeof *t.cmps);
	t.ops = calloc(t.n_success + t.n_failure + 1, sizeof *t.ops);
	if (t.cmps == NULL || t.ops == NULL) {
		agent_reply_error(a, req, 500, "internal", "out of memory");
		goto out;
	}
	for (unsigned i = 0; i < t.n_cmps; i++) {
		if (parse_cmp(a, req, json_array_get(cmp, i), i, &t.cmps[i]) != 0) {
			goto out;
		}
	}
	for (unsigned i = 0; i < t.n_success + t.n_failure; i++) {
		bool s = i < t.n_success;
		char where[64];
		snprintf(where, sizeof where, "%s[%u]", s ? "success" : "failure",
		         s ? i : i - t.n_success);
		if (parse_txn_op(a, req, json_array_get(s ? suc : fail, s ? i : i - t.n_success),
		                 where, &t.ops[i]) != 0) {
			goto out;
		}
	}
	struct kv_op op = {
	    .type = KV_OP_TXN,
	    .cmps = t.cmps,
	    .n_cmps = t.n_cmps,
	    .success = t.ops,
	    .n_success = t.n_success,
	    .failure = t.ops + t.n_success,
	    .n_failure = t.n_failure,
	};
	submit(a, req, WK_TXN, &op);
out:
	free(t.cmps);
	free(t.ops);
	json_decref(j);
}

/* ------------------------------------------------------------------------------------------ */
/* /v1/watch                                                                                   */

struct wstream {
	struct store_watch w;
	struct agent *a;
	struct http_request *req;
	bool ended;
};

static void wstream_end(struct wstream *ws)
{
	if (!ws->ended) {
		ws->ended = true;
		store_watch_stop(ws->a->store, &ws->w);
		http_stream_end(ws->req);
		free(ws);
	}
}

static void watch_event(struct store_watch *w, const struct kv_event *ev, int status)
{
	struct wstream *ws = w->data;
	if (ev == NULL) {
		json_t *j = json_pack("{s:{s:s, s:s}}", "error", "code", store_status_code(status),
		                      "message", store_strerror(status));
		char *t = json_dumps(j, JSON_COMPACT);
		json_decref(j);
		if (t != NULL) {
			http_stream_write(ws->req, t, strlen(t));
			http_stream_write(ws->req, "\n", 1);
		}
		free(t);
		/* The store already dropped the watch. */
		w->key = NULL;
		wstream_end(ws);
		return;
	}
	json_t *o = kv_json(&ev->kv, ev->type == KV_EV_PUT);
	json_object_set_new(o, "type", json_string(ev->type == KV_EV_PUT ? "put" : "delete"));
	char *t = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (t != NULL) {
		size_t len = strlen(t);
		t[len] = '\n';
		http_stream_write(ws->req, t, len + 1);
		free(t);
	}
}

static void watch_gone(struct http_request *req)
{
	wstream_end(req->data);
}

static void handle_watch(struct agent *a, struct http_request *req)
{
	bool prefix;
	struct kv_bytes key;
	int64_t rev = 0;
	if (req->method != HTTP_GET) {
		agent_reply_error(a, req, 405, "method_not_allowed", "/v1/watch takes GET");
		return;
	}
	if (query_bool(a, req, "prefix", &prefix) != 0 || query_int(a, req, "rev", 1, &rev) != 0 ||
	    path_key(a, req, strlen("/v1/watch/"), prefix, &key) != 0) {
		return;
	}
	struct wstream *ws = calloc(1, sizeof *ws);
	if (ws == NULL) {
		agent_reply_error(a, req, 500, "internal", "out of memory");
		return;
	}
	ws->a = a;
	ws->req = req;
	ws->w.data = ws;
	req->data = ws;
	count_status(a, 200);
	http_stream_begin(req, 200, "application/x-ndjson");
	int rv = store_watch_start(a->store, &ws->w, KV_SPACE_USER, key, prefix, rev, watch_event);
	if (rv != STORE_OK) {
		struct store_status st;
		store_get_status(a->store, &st);
		json_t *j = json_pack("{s:{s:s, s:s, s:I}}", "error", "code", store_status_code(rv),
		                      "message", store_strerror(rv), "compact_revision",
		                      (json_int_t)st.compact_revision);
		char *t = json_dumps(j, JSON_COMPACT);
		json_decref(j);
		if (t != NULL) {
			http_stream_write(req, t, strlen(t));
			http_stream_write(req, "\n", 1);
		}
		free(t);
		ws->ended = true;
		http_stream_end(req);
		free(ws);
		return;
	}
	req->gone_cb = watch_gone;
}

/* ------------------------------------------------------------------------------------------ */
/* Fan-out to every member                                                                     */

struct fanout;
typedef void (*fanout_done)(struct fanout *f);

struct fanout_slot {
	struct fanout *f;
	struct member_rec m;
	int status;
	json_t *body;
};

struct fanout {
	struct agent *a;
	struct http_request *req;
	struct fanout_slot *slots;
	unsigned n, remaining;
	fanout_done done;
	int64_t rev;
};

static void fanout_reply(int status, const uint8_t *body, size_t len, void *data)
{
	struct fanout_slot *s = data;
	s->status = status;
	if (status > 0) {
		/* An error's body too: it carries the member's own reason. */
		s->body = json_loadb((const char *)body, len, 0, NULL);
	}
	if (--s->f->remaining == 0) {
		s->f->done(s->f);
	}
}

/* Why a member did not give the answer asked for: the transport's error, the reason in its
 * error body, or otherwise. */
static const char *fanout_reason(const struct fanout_slot *s, const char *otherwise)
{
	const char *msg = NULL;
	if (s->status < 0) {
		return uv_strerror(s->status);
	}
	if (s->body != NULL) {
		json_unpack(s->body, "{s:{s:s}}", "error", "message", &msg);
	}
	return msg != NULL ? msg : otherwise;
}

static void fanout_free(struct fanout *f)
{
	for (unsigned i = 0; i < f->n; i++) {
		json_decref(f->slots[i].body);
	}
	free(f->slots);
	free(f);
}

static void fanout_start(struct agent *a, struct http_request *req, const char *path,
                         fanout_done done, int64_t rev)
{
	struct fanout *f = calloc(1, sizeof *f);
	struct member_rec *ms = NULL;
	unsigned n = 0;
	if (f == NULL || agent_members(a, &ms, &n) != STORE_OK) {
		free(f);
		agent_reply_error(a, req, 500, "internal", "cannot read the member list");
		return;
	}
	f->a = a;
	f->req = req;
	f->done = done;
	f->rev = rev;
	f->n = n;
	f->remaining = n + 1; /* +1 until every request is out, so done cannot run early */
	f->slots = calloc(n ? n : 1, sizeof *f->slots);
	if (f->slots == NULL) {
		free(ms);
		free(f);
		agent_reply_error(a, req, 500, "internal", "out of memory");
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		struct fanout_slot *s = &f->slots[i];
		s->f = f;
		s->m = ms[i];
		int rv = http_client_request(a->client, ms[i].api_address, "GET", path, NULL, NULL,
		                             0, FANOUT_TIMEOUT_MS, fanout_reply, s);
		if (rv != 0) {
			s->status = rv;
			f->remaining--;
		}
	}
	free(ms);
	if (--f->remaining == 0) {
		f->done(f);
	}
}

static const char *role_name(int role)
{
	switch (role) {
	case RAFT_VOTER:
		return "voter";
	case RAFT_STANDBY:
		return "standby";
	case RAFT_SPARE:
		return "spare";
	}
	return "none";
}

/* A member that has lacked committed entries this long is not healthy: a healthy one has them
 * within a round trip, and replication's own retries and a snapshot install of a fresh member
 * take a second or two here. What holds one back longer (a full disk, a link that drops the
 * raft port only, a disk far slower than the others) is worth an operator's look. */
#define BEHIND_UNHEALTHY_MS 5000

/* The leader's records of the members it replicates to (its "replication" array) and its commit
 * index, from the answer of whichever member claims to lead in the highest term (two may claim
 * it for a moment, across a partition); NULL when no leader answered. */
static json_t *leader_view(struct fanout *f, json_int_t *commit)
{
	json_t *best = NULL;
	json_int_t best_term = -1;
	for (unsigned i = 0; i < f->n; i++) {
		json_t *b = f->slots[i].body;
		const char *state = NULL;
		json_int_t term = -1, ci = 0;
		json_t *rep = NULL;
		if (b != NULL &&
		    json_unpack(b, "{s:s, s:I, s:I, s:o}", "state", &state, "term", &term,
		                "commit_index", &ci, "replication", &rep) == 0 &&
		    strcmp(state, "leader") == 0 && json_is_array(rep) && term > best_term) {
			best = rep;
			best_term = term;
			*commit = ci;
		}
	}
	return best;
}

static void cluster_done(struct fanout *f)
{
	struct agent *a = f->a;
	struct store_status st;
	store_get_status(a->store, &st);
	struct store_member *cf = NULL;
	unsigned nc = 0;
	store_configuration(a->store, &cf, &nc);
	json_int_t commit = 0;
	json_t *replication = leader_view(f, &commit);
	json_t *members = json_array();
	const char *leader = NULL;
	for (unsigned i = 0; i < f->n; i++) {
		struct fanout_slot *s = &f->slots[i];
		int role = -1;
		for (unsigned k = 0; k < nc; k++) {
			if (cf[k].id == s->m.id) {
				role = cf[k].role;
			}
		}
		json_int_t applied = -1;
		json_t *lid = NULL;
		const char *space = NULL, *disk = NULL;
		if (s->body != NULL) {
			json_unpack(s->body, "{s:I}", "revision", &applied);
			json_unpack(s->body, "{s:s}", "space_error", &space);
			json_unpack(s->body, "{s:s}", "disk_error", &disk);
			lid = json_object_get(s->body, "leader_id");
		}
		json_int_t match = 0, behind = 0;
		for (size_t k = 0; k < json_array_size(replication); k++) {
			json_t *rec = json_array_get(replication, k);
			json_int_t id = 0;
			if (json_unpack(rec, "{s:I}", "id", &id) == 0 && (uint64_t)id == s->m.id) {
				json_unpack(rec, "{s:I, s:I}", "match_index", &match, "behind_ms",
				            &behind);
				break;
			}
		}
		char why[640] = "";
		if (s->status != 200 || s->body == NULL) {
			snprintf(why, sizeof why, "%s", fanout_reason(s, "unexpected answer"));
		} else if (!json_is_integer(lid) || json_integer_value(lid) == 0) {
			snprintf(why, sizeof why, "no leader known");
		} else {
			int w = 0;
			if (space != NULL) {
				w = snprintf(why, sizeof why, "data directory full (%s)", space);
			} else if (disk != NULL) {
				w = snprintf(why, sizeof why, "raft log cannot be written (%s)",
				             disk);
			}
			if (behind >= BEHIND_UNHEALTHY_MS && w >= 0 && (size_t)w < sizeof why) {
				snprintf(why + w, sizeof why - (size_t)w,
				         "%sbehind the leader for %" PRId64
				         " s: stored the log up to "
				         "index %" PRId64 ", the leader has committed %" PRId64,
				         w > 0 ? "; " : "", (int64_t)(behind / 1000),
				         (int64_t)match, (int64_t)commit);
			}
		}
		bool healthy = why[0] == '\0';
		if (s->m.id == st.leader_id) {
			leader = s->m.name;
		}
		json_t *m = json_pack("{s:s, s:I, s:s, s:s, s:s, s:b}", "name", s->m.name, "id",
		                      (json_int_t)s->m.id, "role", role_name(role), "peer_address",
		                      s->m.peer_address, "api_address", s->m.api_address, "healthy",
		                      healthy);
		json_object_set_new(m, "applied_revision",
		                    applied >= 0 ? json_integer(applied) : json_null());
		if (!healthy) {
			json_object_set_new(m, "error", json_string(why));
		}
		json_array_append_new(members, m);
	}
	free(cf);
	json_t *out = json_pack("{s:s, s:o, s:o, s:I, s:o}", "name", a->name, "cluster",
	                        a->cluster_hex[0] ? json_string(a->cluster_hex) : json_null(),
	                        "leader", leader ? json_string(leader) : json_null(), "revision",
	                        (json_int_t)st.revision, "members", members);
	agent_reply_json(a, f->req, 200, out);
	fanout_free(f);
}

static void hash_done(struct fanout *f)
{
	json_t *members = json_array();
	for (unsigned i = 0; i < f->n; i++) {
		struct fanout_slot *s = &f->slots[i];
		const char *h = NULL;
		json_t *m = json_pack("{s:s}", "name", s->m.name);
		if (s->body != NULL && json_unpack(s->body, "{s:s}", "hash", &h) == 0) {
			json_object_set_new(m, "hash", json_string(h));
		} else {
			/* The member's own reason when it gave one (not caught up in time, no
			 * leader, ...). */
			json_object_set_new(m, "hash", json_null());
			json_object_set_new(
			    m, "error", json_string(fanout_reason(s, "no hash at that revision")));
		}
		json_array_append_new(members, m);
	}
	agent_reply_json(
	    f->a, f->req, 200,
	    json_pack("{s:I, s:o}", "revision", (json_int_t)f->rev, "members", members));
	fanout_free(f);
}

static void hash_fanout(struct agent *a, struct http_request *req, int64_t rev)
{
	char path[64];
	snprintf(path, sizeof path, "/v1/internal/hash?rev=%" PRId64, rev);
	fanout_start(a, req, path, hash_done, rev);
}

/* ------------------------------------------------------------------------------------------ */
/* /v1/cluster                                                                                 */

static void join_claim(struct wctx *c)
{
	char key[64];
	snprintf(key, sizeof key, SYS_ID_PREFIX "%llu", (unsigned long long)c->m.id);
	struct kv_op op = {.type = KV_OP_PUT,
	                   .space = KV_SPACE_SYS,
	                   .key = {(const uint8_t *)key, strlen(key)},
	                   .value = {(const uint8_t *)c->m.name, strlen(c->m.name)},
	                   .has_prev = true,
	                   .prev_revision = 0};
	c->kind = WK_JOIN_ID;
	int rv = store_write(c->a->store, &c->w, &op, write_done);
	if (rv != STORE_OK) {
		reply_store_error(c->a, c->req, rv);
		free(c);
	}
}

int agent_token_matches(struct agent *a, const char *given)
{
	struct kv_kv *kvs = NULL;
	unsigned n = 0;
	bool more;
	int64_t rev;
	struct kv_bytes key = {(const uint8_t *)SYS_TOKEN_KEY, strlen(SYS_TOKEN_KEY)};
	int rv = store_range(a->store, KV_SPACE_SYS, key, false, 1, &kvs, &n, &more, &rev);
	if (rv != STORE_OK || n != 1) {
		kv_kvs_free(kvs, n);
		return -1;
	}
	size_t gl = strlen(given);
	/* Compare in time independent of where the first difference is. */
	unsigned char diff = (unsigned char)(gl != kvs[0].value_len);
	for (size_t i = 0; i < kvs[0].value_len; i++) {
		diff |= (unsigned char)(kvs[0].value[i] ^ (i < gl ? (unsigned char)given[i] : 0));
	}
	kv_kvs_free(kvs, n);
	return diff == 0 ? 1 : 0;
}

static void handle_join(struct agent *a, struct http_request *req)
{
	json_t *j = agent_parse_body(a, req, "bad_request");
	if (j == NULL) {
		return;
	}
	static const char *const fields[] = {"name", "peer_address", "api_address", "token", NULL};
	const char *name = NULL, *peer = NULL, *api = NULL, *token = NULL;
	if (only_fields(a, req, j, "body", fields) != 0) {
		goto out;
	}
	if (json_unpack(j, "{s:s, s:s, s:s, s:s}", "name", &name, "peer_address", &peer,
	                "api_address", &api, "token", &token) != 0) {
		agent_reply_error(a, req, 400, "bad_request",
		                  "body: needs strings name, peer_address, api_address, token");
		goto out;
	}
	int match = agent_token_matches(a, token);
	if (match < 0) {
		agent_reply_error(
		    a, req, 503, "unavailable",
		    "this member cannot check the token yet (the cluster is starting, or "
		    "this replica has not caught up); retry");
		goto out;
	}
	if (match == 0) {
		agent_reply_error(a, req, 403, "forbidden", "the join token is not this cluster's");
		goto out;
	}
	if (!agent_member_name_ok(name)) {
		agent_reply_error(
		    a, req, 400, "bad_request",
		    "name must be 1-100 bytes of UTF-8 without '/' or control characters");
		goto out;
	}
	if (strlen(peer) >= 64 || !agent_address_ok(peer, false)) {
		agent_reply_error(a, req, 400, "bad_request",
		                  "peer_address '%.64s' is not IPv4:PORT with a specified address",
		                  peer);
		goto out;
	}
	if (strlen(api) >= 64 || !agent_address_ok(api, true)) {
		agent_reply_error(a, req, 400, "bad_request",
		                  "api_address '%.64s' is not IP:PORT with a specified address",
		                  api);
		goto out;
	}
	struct member_rec *ms = NULL;
	unsigned n = 0;
	if (agent_members(a, &ms, &n) != STORE_OK) {
		agent_reply_error(a, req, 500, "internal", "cannot read the member list");
		goto out;
	}
	uint64_t max_id = 0;
	for (unsigned i = 0; i < n; i++) {
		max_id = ms[i].id > max_id ? ms[i].id : max_id;
		bool same_name = strcmp(ms[i].name, name) == 0;
		bool same_peer = strcmp(ms[i].peer_address, peer) == 0;
		if (same_name && same_peer && strcmp(ms[i].api_address, api) == 0) {
			/* A join that is retried after its answer got lost. */
			agent_reply_json(a, req, 200, join_answer(a, ms[i].id, name));
			free(ms);
			goto out;
		}
		if (same_name || same_peer) {
			agent_reply_error(a, req, 409, "conflict", "member '%s' already uses %s %s",
			                  ms[i].name, same_name ? "the name" : "the peer address",
			                  same_name ? name : peer);
			free(ms);
			goto out;
		}
	}
	free(ms);
	struct wctx *c = calloc(1, sizeof *c);
	if (c == NULL) {
		agent_reply_error(a, req, 500, "internal", "out of memory");
		goto out;
	}
	c->a = a;
	c->req = req;
	c->w.data = c;
	c->m.id = max_id + 1;
	snprintf(c->m.name, sizeof c->m.name, "%s", name);
	snprintf(c->m.peer_address, sizeof c->m.peer_address, "%s", peer);
	snprintf(c->m.api_address, sizeof c->m.api_address, "%s", api);
	join_claim(c);
out:
	json_decref(j);
}

/* Requests only the leader can carry out, because only it knows which members answer: a
 * follower passes them on to it, on the internal path with the member's name after it. */
typedef void (*leader_handler)(struct agent *a, struct http_request *req, const char *name,
                               bool from_member);

struct leader_route {
	leader_handler handler;
	const char *method;
	const char *path; /* the internal path; "/" and the escaped name follow, if there is one */
	const char *what; /* for messages: "remove the member" */
	bool name_optional;
};

struct leader_proxy {
	struct agent *a;
	struct http_request *req;
	const struct leader_route *route;
	char name[AGENT_MEMBER_NAME_MAX + 1];
};

/* The leader's answer goes back as it came. */
static void leader_proxied(int status, const uint8_t *body, size_t len, void *data)
{
	struct leader_proxy *p = data;
	struct agent *a = p->a;
	struct http_request *req = p->req;
	const char *what = p->route->what;
	free(p);
	json_t *j = status > 0 ? json_loadb((const char *)body, len, 0, NULL) : NULL;
	if (j != NULL) {
		agent_reply_json(a, req, status, j);
	} else if (status > 0) {
		agent_reply_error(a, req, 502, "bad_gateway",
		                  "the leader answered with status %d and no JSON body", status);
	} else {
		agent_reply_error(a, req, 503, "unavailable",
		                  "cannot reach the leader to %s (%s); try again", what,
		                  uv_strerror(status));
	}
}

/* The barrier passed, so this member knows a leader that has just proved it leads (the store
 * waited out an election, or a leader that died, as for a write). */
static void leader_synced(void *data, int status)
{
	struct leader_proxy *p = data;
	struct agent *a = p->a;
	struct store_status st;
	struct member_rec leader;
	store_get_status(a->store, &st);
	if (status != STORE_OK) {
		reply_store_error(a, p->req, status);
		free(p);
	} else if (st.state == RAFT_LEADER) {
		p->route->handler(a, p->req, p->name, true);
		free(p);
	} else if (st.leader_id == 0 || !agent_member_by_id(a, st.leader_id, &leader)) {
		agent_reply_error(a, p->req, 503, "unavailable", "no leader known to %s; try again",
		                  p->route->what);
		free(p);
	} else {
		char *escaped = api_path_escape(p->name);
		char *path = NULL;
		if (escaped == NULL ||
		    asprintf(&path, "%s%s%s", p->route->path, p->name[0] ? "/" : "", escaped) < 0) {
			path = NULL;
		}
		free(escaped);
		int rv = path == NULL
		             ? UV_ENOMEM
		             : http_client_request(a->client, leader.api_address, p->route->method,
		                                   path, NULL, NULL, 0, LEADER_PROXY_TIMEOUT_MS,
		                                   leader_proxied, p);
		free(path);
		/* A synchronous failure fires no callback. */
		if (rv != 0) {
			leader_proxied(rv, NULL, 0, p);
		}
	}
}

static void through_leader(struct agent *a, struct http_request *req,
                           const struct leader_route *route, const char *name)
{
	struct leader_proxy *p = calloc(1, sizeof *p);
	if (p == NULL) {
		agent_reply_error(a, req, 500, "internal", "out of memory");
		return;
	}
	*p = (struct leader_proxy){.a = a, .req = req, .route = route};
	snprintf(p->name, sizeof p->name, "%s", name);
	int rv = store_sync(a->store, leader_synced, p);
	if (rv != STORE_OK) {
		free(p);
		reply_store_error(a, req, rv);
	}
}

/* Checks the member name a request names (none, where the route takes none) and, on a member
 * that does not lead, passes the request on to the leader, or refuses it if it came from
 * another member. True when this leader carries it out. */
static bool on_leader(struct agent *a, struct http_request *req, const struct leader_route *route,
                      const char *name, bool from_member)
{
	/* The join's rule. A longer name was cut to fit c->name, and removing the node of the
	 * cut name released the IPAM of another node. */
	if ((name[0] != '\0' || !route->name_optional) && !agent_member_name_ok(name)) {
		agent_reply_error(
		    a, req, 400, "bad_request",
		    "'%.100s' is not a member name (1-100 bytes of UTF-8 without '/' or control "
		    "characters)",
		    name);
		return false;
	}
	struct store_status st;
	store_get_status(a->store, &st);
	if (st.state == RAFT_LEADER) {
		return true;
	}
	if (from_member) {
		agent_reply_error(a, req, 503, "unavailable",
		                  "this member no longer leads; try again");
	} else {
		through_leader(a, req, route, name);
	}
	return false;
}

static void handle_remove(struct agent *a, struct http_request *req, const char *name,
                          bool from_member);

static const struct leader_route remove_route = {handle_remove, "DELETE", "/v1/internal/members",
                                                 "remove the member", false};

/* On the leader: 409 and in why the reason when removing member m would leave too few voters
 * answering to write (the promotions the reconciler makes first counted), 503 when that cannot
 * be judged now, 0 when the removal may go ahead. */
static int removal_refused(struct agent *a, const struct member_rec *m, char *why, size_t size)
{
	struct roles_member *rm = NULL;
	struct roles_policy policy;
	unsigned n = 0, up = 0, voters = 0;
	int rv = agent_roles_view(a, &rm, &n, &policy);
	if (rv != STORE_OK) {
		snprintf(why, size,
		         "cannot judge whether the voters left would answer (%s); try again",
		         store_strerror(rv));
		return 503;
	}
	/* The voters that do not answer now, before the walk changes the view. */
	char silent[512] = "";
	size_t used = 0;
	unsigned n_silent = 0;
	for (unsigned i = 0; i < n && used < sizeof silent; i++) {
		struct member_rec s;
		if (rm[i].in_config && rm[i].role == RAFT_VOTER && rm[i].id != m->id &&
		    rm[i].id != policy.self && rm[i].silent_ms >= policy.online_ms &&
		    agent_member_by_id(a, rm[i].id, &s)) {
			int w = snprintf(silent + used, sizeof silent - used,
			                 "%s%s (silent for %llu s)", used ? ", " : "", s.name,
			                 (unsigned long long)(rm[i].silent_ms / 1000));
			used += w > 0 ? (size_t)w : 0;
			n_silent++;
		}
	}
	bool loses = !roles_removal_keeps_majority(rm, n, &policy, m->id, &up, &voters);
	free(rm);
	if (loses && voters == 0) {
		snprintf(why, size,
		         "%s is the cluster's last voter: removing it would leave no "
		         "cluster",
		         m->name);
	} else if (loses) {
		snprintf(why, size,
		         "removing %s would leave %u of %u voters answering the leader, not a "
		         "majority: the cluster could not write again until one came back. Bring "
		         "back %s, or remove %s first",
		         m->name, up, voters, n_silent > 0 ? silent : "the silent voters",
		         n_silent == 1 ? "it" : "them");
	}
	return loses ? 409 : 0;
}

static void handle_remove(struct agent *a, struct http_request *req, const char *name,
                          bool from_member)
{
	if (!on_leader(a, req, &remove_route, name, from_member)) {
		return;
	}
	struct member_rec *ms = NULL;
	unsigned nm = 0;
	if (agent_members(a, &ms, &nm) != STORE_OK) {
		agent_reply_error(a, req, 500, "internal", "cannot read the member list");
		return;
	}
	char why[1024];
	for (unsigned i = 0; i < nm; i++) {
		int status =
		    strcmp(ms[i].name, name) == 0 ? removal_refused(a, &ms[i], why, sizeof why) : 0;
		if (status != 0) {
			free(ms);
			agent_reply_error(a, req, status,
			                  status == 409 ? "conflict" : "unavailable", "%s", why);
			return;
		}
	}
	free(ms);
	char key[256];
	snprintf(key, sizeof key, SYS_MEMBER_PREFIX "%s", name);
	struct kv_op op = {
	    .type = KV_OP_DEL, .space = KV_SPACE_SYS, .key = {(const uint8_t *)key, strlen(key)}};
	struct wctx *c = calloc(1, sizeof *c);
	if (c == NULL) {
		agent_reply_error(a, req, 500, "internal", "out of memory");
		return;
	}
	c->a = a;
	c->req = req;
	c->kind = WK_REMOVE;
	c->w.data = c;
	snprintf(c->name, sizeof c->name, "%s", name);
	int rv = store_write(a->store, &c->w, &op, write_done);
	if (rv != STORE_OK) {
		free(c);
		reply_store_error(a, req, rv);
	}
}

/* A move of the lead, waiting for raft's transfer to end. */
struct lead_move {
	struct agent *a;
	struct http_request *req;
	uint64_t to;
	char to_name[sizeof(((struct member_rec *)0)->name)];
};

/* The transfer ended: once a new leader is known here, or after an election timeout without
 * one. Which member leads now is the answer. */
static void lead_moved(void *data, int status)
{
	struct lead_move *c = data;
	struct agent *a = c->a;
	struct store_status st;
	struct member_rec now;
	store_get_status(a->store, &st);
	if (st.leader_id == c->to) {
		agent_reply_json(
		    a, c->req, 200,
		    json_pack("{s:s, s:s}", "leader", c->to_name, "previous", a->name));
	} else if (st.leader_id != 0 && st.leader_id != a->id &&
	           agent_member_by_id(a, st.leader_id, &now)) {
		agent_reply_error(
		    a, c->req, 409, "conflict",
		    "%s leads now, not %s: another voter won the election the transfer "
		    "started",
		    now.name, c->to_name);
	} else {
		agent_reply_error(a, c->req, 503, "unavailable",
		                  "%s did not take the lead within an election timeout (%s); %s",
		                  c->to_name, store_strerror(status),
		                  st.leader_id == a->id ? "this member still leads"
		                                        : "no leader is known yet");
	}
	free(c);
}

/* On the leader: 0 when member m can take the lead now, else the status with why the reason. */
static int lead_refused(struct agent *a, const struct member_rec *m, char *why, size_t size)
{
	struct roles_member *rm = NULL;
	struct roles_policy policy;
	unsigned n = 0;
	int rv = agent_roles_view(a, &rm, &n, &policy);
	if (rv != STORE_OK) {
		snprintf(why, size, "cannot see the members' roles (%s); try again",
		         store_strerror(rv));
		return 503;
	}
	int status = 409;
	unsigned i = 0;
	while (i < n && rm[i].id != m->id) {
		i++;
	}
	if (i == n || !rm[i].in_config) {
		snprintf(why, size,
		         "%s is not in raft's configuration (it is still joining or leaving)",
		         m->name);
	} else if (rm[i].role != RAFT_VOTER) {
		snprintf(why, size, "%s is a %s: only a voter can lead", m->name,
		         role_name(rm[i].role));
	} else if (rm[i].silent_ms >= policy.online_ms) {
		snprintf(why, size, "%s has not answered the leader for %llu s", m->name,
		         (unsigned long long)(rm[i].silent_ms / 1000));
	} else {
		status = 0;
	}
	free(rm);
	return status;
}

/*
 * POST /v1/cluster/leader[/NAME]: hand the lead to voter NAME, or without a name to the voter
 * an agent that stops would pick (agent_pick_successor()); etcd's `move-leader`. For
 * maintenance on the leader's host that should not pause the cluster's writes for an election,
 * or to take the lead off a busy host. Answers once the move ended, with who leads.
 */
static void handle_move_leader(struct agent *a, struct http_request *req, const char *name,
                               bool from_member)
{
	static const struct leader_route lead_route = {
	    handle_move_leader, "POST", "/v1/internal/leader", "move the lead", true};
	if (!on_leader(a, req, &lead_route, name, from_member)) {
		return;
	}
	if (a->handing_over) {
		agent_reply_error(a, req, 503, "unavailable",
		                  "the leader is stopping and hands the lead over already");
		return;
	}
	struct member_rec m;
	bool named = name[0] != '\0';
	uint64_t to = named ? 0 : agent_pick_successor(a);
	int found = named || to != 0 ? agent_member_find(a, to, named ? name : NULL, &m) : 0;
	if (found < 0) {
		agent_reply_error(a, req, 500, "internal", "cannot read the member list");
		return;
	}
	if (found == 0 && !named) {
		agent_reply_error(a, req, 409, "conflict",
		                  "no other voter has answered the leader in the last %llu s: none "
		                  "can take the lead",
		                  (unsigned long long)(a->online_ms / 1000));
		return;
	}
	if (found == 0) {
		agent_reply_error(a, req, 404, "not_found", "no member is named '%s'", name);
		return;
	}
	if (m.id == a->id) {
		agent_reply_json(a, req, 200,
		                 json_pack("{s:s, s:s}", "leader", a->name, "previous", a->name));
		return;
	}
	char why[512];
	int refused = lead_refused(a, &m, why, sizeof why);
	if (refused != 0) {
		agent_reply_error(a, req, refused, refused == 409 ? "conflict" : "unavailable",
		                  "%s", why);
		return;
	}
	struct lead_move *c = calloc(1, sizeof *c);
	if (c == NULL) {
		agent_reply_error(a, req, 500, "internal", "out of memory");
		return;
	}
	*c = (struct lead_move){.a = a, .req = req, .to = m.id};
	snprintf(c->to_name, sizeof c->to_name, "%s", m.name);
	int rv = store_transfer_leadership(a->store, m.id, lead_moved, c);
	if (rv != STORE_OK) {
		free(c);
		struct store_status st;
		store_get_status(a->store, &st);
		if (rv == STORE_ENOTLEADER && st.state == RAFT_LEADER) {
			/* raft refuses a transfer while one is under way (a stopping, removed or
			 * full leader's own). */
			agent_reply_error(a, req, 409, "conflict",
			                  "a leadership transfer is already under way; try again");
		} else {
			reply_store_error(a, req, rv);
		}
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Internal paths                                                                              */

static const char *state_name(int state)
{
	switch (state) {
	case RAFT_LEADER:
		return "leader";
	case RAFT_FOLLOWER:
		return "follower";
	case RAFT_CANDIDATE:
		return "candidate";
	}
	return "unavailable";
}

/* A member's own view, for `tabby cluster status` (cluster_done()). A leader adds how far each
 * member it replicates to trails, which only it can see. */
static void internal_status(struct agent *a, struct http_request *req)
{
	struct store_status st;
	store_get_status(a->store, &st);
	json_t *out =
	    json_pack("{s:s, s:I, s:s, s:b, s:I, s:I, s:I, s:I, s:I}", "name", a->name, "id",
	              (json_int_t)st.id, "state", state_name(st.state), "ready", st.ready,
	              "leader_id", (json_int_t)st.leader_id, "term", (json_int_t)st.term,
	              "commit_index", (json_int_t)st.commit_index, "applied_index",
	              (json_int_t)st.applied_index, "revision", (json_int_t)st.revision);
	if (out == NULL) {
		agent_reply_error(a, req, 500, "internal", "out of memory");
		return;
	}
	if (st.space_err != 0) {
		json_object_set_new(out, "space_error", json_string(strerror(st.space_err)));
	}
	if (st.disk_error[0] != '\0') {
		/* raft's message names a system call and an errno text: ASCII. */
		json_object_set_new(out, "disk_error", json_string(st.disk_error));
	}
	struct store_progress *ps = NULL;
	unsigned n = 0;
	if (store_replication(a->store, &ps, &n) == STORE_OK) {
		json_t *list = json_array();
		for (unsigned i = 0; i < n; i++) {
			json_array_append_new(
			    list, json_pack("{s:I, s:I, s:I, s:I}", "id", (json_int_t)ps[i].id,
			                    "match_index", (json_int_t)ps[i].match_index,
			                    "behind_ms", (json_int_t)ps[i].behind_ms, "silent_ms",
			                    (json_int_t)ps[i].silent_ms));
		}
		json_object_set_new(out, "replication", list);
	}
	free(ps);
	agent_reply_json(a, req, 200, out);
}

struct hwait {
	struct agent *a;
	struct http_request *req;
	int64_t rev;
};

static void hash_wait_done(void *data, int status)
{
	struct hwait *h = data;
	uint64_t hash;
	if (status != STORE_OK) {
		reply_store_error(h->a, h->req, status);
	} else if (!store_hash_at(h->a->store, h->rev, &hash)) {
		agent_reply_error(h->a, h->req, 404, "not_found",
		                  "no state hash remembered at revision %" PRId64, h->rev);
	} else {
		char hex[17];
		snprintf(hex, sizeof hex, "%016" PRIx64, hash);
		agent_reply_json(
		    h->a, h->req, 200,
		    json_pack("{s:I, s:s}", "revision", (json_int_t)h->rev, "hash", hex));
	}
	free(h);
}

static void internal_hash(struct agent *a, struct http_request *req)
{
	int64_t rev = -1;
	if (query_int(a, req, "rev", 0, &rev) != 0) {
		return;
	}
	if (rev < 0) {
		agent_reply_error(a, req, 400, "bad_request", "query parameter rev is required");
		return;
	}
	struct hwait *h = calloc(1, sizeof *h);
	if (h == NULL) {
		agent_reply_error(a, req, 500, "internal", "out of memory");
		return;
	}
	*h = (struct hwait){.a = a, .req = req, .rev = rev};
	/* Not a wait for revision rev: a HASH changes nothing, so the revision is already rev
	 * when the write before it applies, and the hash comes only with the HASH entry. The
	 * member that asked had applied that entry, so it was committed: a linearizable barrier
	 * brings it here. */
	int rv = store_sync(a->store, hash_wait_done, h);
	if (rv != STORE_OK) {
		free(h);
		reply_store_error(a, req, rv);
	}
}

static void forwarded_done(void *data, int status)
{
	struct hwait *h = data;
	if (status == STORE_OK) {
		count_status(h->a, 200);
		http_respond(h->req, 200, "application/json", "{}\n", 3);
	} else {
		reply_store_error(h->a, h->req, status);
	}
	free(h);
}

static void internal_forward(struct agent *a, struct http_request *req)
{
	struct hwait *h = calloc(1, sizeof *h);
	if (h == NULL) {
		agent_reply_error(a, req, 500, "internal", "out of memory");
		return;
	}
	h->a = a;
	h->req = req;
	int rv = store_propose_forwarded(a->store, req->body, req->body_len, forwarded_done, h);
	if (rv != STORE_OK) {
		free(h);
		reply_store_error(a, req, rv);
	}
}

static void readindex_done(void *data, int status, uint64_t index)
{
	struct hwait *h = data;
	if (status == STORE_OK) {
		agent_reply_json(h->a, h->req, 200, json_pack("{s:I}", "index", (json_int_t)index));
	} else {
		reply_store_error(h->a, h->req, status);
	}
	free(h);
}

static void internal_readindex(struct agent *a, struct http_request *req)
{
	struct hwait *h = calloc(1, sizeof *h);
	if (h == NULL) {
		agent_reply_error(a, req, 500, "internal", "out of memory");
		return;
	}
	h->a = a;
	h->req = req;
	int rv = store_readindex(a->store, readindex_done, h);
	if (rv != STORE_OK) {
		free(h);
		reply_store_error(a, req, rv);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Dispatch                                                                                    */

static bool path_is(const struct http_request *req, const char *p)
{
	return strcmp(req->path, p) == 0;
}

static bool path_has_prefix(const struct http_request *req, const char *p)
{
	return strncmp(req->path, p, strlen(p)) == 0;
}

void agent_route(struct http_server *srv, struct http_request *req)
{
	struct agent *a = http_server_data(srv);
	int m = req->method;
	if (a->stopping) {
		agent_reply_error(a, req, 503, "shutting_down", "the agent is stopping");
		return;
	}
	char bad[80];
	if (!http_query_valid(req, bad, sizeof bad)) {
		agent_reply_error(a, req, 400, "bad_request",
		                  "query parameter '%s' has a broken %%-escape or an encoded NUL",
		                  bad);
		return;
	}
	/* The server takes bodies up to AGENT_MAX_FORWARD_BODY for the forward path alone. */
	if (req->body_len > AGENT_MAX_BODY && !path_is(req, "/v1/internal/forward")) {
		agent_reply_error(a, req, 413, "too_large",
		                  "request body exceeds the limit (%u bytes)", AGENT_MAX_BODY);
		return;
	}
	if (path_has_prefix(req, "/v1/kv/")) {
		handle_kv(a, req);
	} else if (path_is(req, "/v1/txn")) {
		handle_txn(a, req);
	} else if (path_has_prefix(req, "/v1/watch/")) {
		handle_watch(a, req);
	} else if (path_is(req, "/v1/cluster") && m == HTTP_GET) {
		fanout_start(a, req, "/v1/internal/status", cluster_done, 0);
	} else if (path_is(req, "/v1/cluster/join") && m == HTTP_POST) {
		handle_join(a, req);
	} else if (path_is(req, "/v1/cluster/hash") && m == HTTP_POST) {
		struct kv_op op = {.type = KV_OP_HASH};
		submit(a, req, WK_HASH, &op);
	} else if (path_has_prefix(req, "/v1/cluster/members/") && m == HTTP_DELETE) {
		handle_remove(a, req, req->path + strlen("/v1/cluster/members/"), false);
	} else if (path_is(req, "/v1/cluster/leader") && m == HTTP_POST) {
		handle_move_leader(a, req, "", false);
	} else if (path_has_prefix(req, "/v1/cluster/leader/") && m == HTTP_POST) {
		handle_move_leader(a, req, req->path + strlen("/v1/cluster/leader/"), false);
	} else if (agent_route_policy(a, req)) {
		/* answered */
	} else if (agent_route_backup(a, req)) {
		/* answered */
	} else if (path_has_prefix(req, "/v1/cni/") && !req->from_unix) {
		/* They create interfaces and routes on this host: only local callers, whom the
		 * socket's file mode vouches for. */
		agent_reply_error(a, req, 403, "forbidden",
		                  "the CNI paths are served only on the agent's unix socket");
	} else if (agent_route_cni(a, req)) {
		/* answered */
	} else if (path_is(req, "/v1/ippools") || path_has_prefix(req, "/v1/ippools/") ||
	           path_has_prefix(req, "/v1/ipam/")) {
		agent_route_ipam(a, req);
	} else if (path_has_prefix(req, "/v1/internal/") &&
	           !agent_cluster_is_ours(a, http_header_get(req, CLUSTER_HEADER))) {
		/* Another cluster's member on an address this cluster's members once had, or
		 * since have: its forwarded writes must not land here (main.c, store/fence.h). */
		const char *theirs = http_header_get(req, CLUSTER_HEADER);
		agent_reply_error(a, req, 403, "other_cluster",
		                  "this member is in cluster %s; the request came from %s%.32s",
		                  a->cluster_hex[0] ? a->cluster_hex
		                                    : "(none: data from before "
		                                      "cluster ids)",
		                  theirs && theirs[0] ? "cluster "
		                                      : "a member without a cluster id",
		                  theirs ? theirs : "");
	} else if (path_has_prefix(req, "/v1/internal/members/") && m == HTTP_DELETE) {
		handle_remove(a, req, req->path + strlen("/v1/internal/members/"), true);
	} else if (path_is(req, "/v1/internal/leader") && m == HTTP_POST) {
		handle_move_leader(a, req, "", true);
	} else if (path_has_prefix(req, "/v1/internal/leader/") && m == HTTP_POST) {
		handle_move_leader(a, req, req->path + strlen("/v1/internal/leader/"), true);
	} else if (path_is(req, "/v1/internal/status") && m == HTTP_GET) {
		internal_status(a, req);
	} else if (path_is(req, "/v1/internal/hash") && m == HTTP_GET) {
		internal_hash(a, req);
	} else if (path_is(req, "/v1/internal/forward") && m == HTTP_POST) {
		internal_forward(a, req);
	} else if (path_is(req, "/v1/internal/readindex") && m == HTTP_POST) {
		internal_readindex(a, req);
	} else if (path_is(req, "/healthz") && m == HTTP_GET) {
		struct store_status st;
		store_get_status(a->store, &st);
		agent_reply_json(a, req, 200,
		                 json_pack("{s:s, s:s, s:b}", "status", "ok", "raft",
		                           state_name(st.state), "leader_known",
		                           st.leader_id != 0));
	} else if (path_is(req, "/metrics") && m == HTTP_GET) {
		size_t len = 0;
		char *text = agent_metrics_text(a, &len);
		if (text == NULL) {
			agent_reply_error(a, req, 500, "internal", "out of memory");
			return;
		}
		count_status(a, 200);
		http_respond(req, 200, "text/plain; version=0.0.4", text, len);
		free(text);
	} else {
		agent_reply_error(a, req, 404, "not_found", "no such path: %s %s",
		                  http_method_str(m), req->path);
	}
}
