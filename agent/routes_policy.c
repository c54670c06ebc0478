/*
 * The v1 resource part of the HTTP API and the policy trace:
 *
 *   GET    /v1/KIND                 {"revision", "items": [RESOURCE...]}, key order
 *   GET    /v1/KIND/KEY             {"revision", "resource"}; 404 when absent
 *   POST   /v1/resources            {"op", "resources", "expect"?} -> {"revision", "results"}
 *   POST   /v1/KIND                 create one resource (the body)
 *   PUT    /v1/KIND/KEY             apply one resource (the body; its key must be KEY)
 *   DELETE /v1/KIND/KEY             delete one
 *   POST   /v1/policy/trace         policy_trace_request() over the local replica
 *
 * KIND is a policy_kind_plural() word; KEY is policy_resource_key(). Each resource is normalized
 * here first, so a bad file is answered 400 naming the resource, field and value without a raft
 * round; the state machine checks the same again (resources.c) and decides what only the
 * replicated state can: existence, compare-and-swap, pool overlap.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>

#include "agent/internal.h"
#include "agent/resources.h"
#include "policy/policy.h"

/* Resources in one request: a large file of policies, bounded so one command stays small enough
 * for a raft entry. */
#define RESOURCES_MAX 10000

struct rwctx {
	struct store_write w;
	struct agent *a;
	struct http_request *req;
};

static void write_done(struct store_write *w, int status, const struct kv_result *r)
{
	struct rwctx *c = w->data;
	struct agent *a = c->a;
	json_t *rep = NULL;
	if (status != STORE_OK) {
		agent_reply_store_error(a, c->req, status, NULL);
		goto out;
	}
	if (r->status != KV_R_OK && r->status != KV_R_REFUSED) {
		agent_reply_error(a, c->req, 500, "internal",
		                  "the resource command was not applied: %s",
		                  r->message ? r->message : "invalid command");
		goto out;
	}
	rep = json_loadb((const char *)r->reply, r->reply_len, 0, NULL);
	if (rep == NULL) {
		agent_reply_error(a, c->req, 500, "internal", "cannot decode the resource reply");
		goto out;
	}
	const char *code = json_string_value(json_object_get(rep, "error"));
	if (code != NULL) {
		agent_reply_error(a, c->req, agent_status_of(code), code, "%s",
		                  json_string_value(json_object_get(rep, "message")));
		goto out;
	}
	json_object_set_new(rep, "revision", json_integer(r->revision));
	agent_reply_json(a, c->req, 200, rep);
	rep = NULL;
out:
	json_decref(rep);
	free(c);
}

/* Propose the batch cmd (borrowed) and answer req when it is applied. */
static void propose(struct agent *a, struct http_request *req, const json_t *cmd)
{
	struct rwctx *c = calloc(1, sizeof *c);
	char *text = json_dumps(cmd, JSON_COMPACT);
	if (c == NULL || text == NULL) {
		agent_reply_error(a, req, 500, "internal", "out of memory");
		goto err;
	}
	/* Normalized resources are bigger than the body they came in (defaults are filled in), and
	 * a follower forwards the command to the leader whole: past AGENT_MAX_BODY it could not
	 * take it, and would refuse it as malformed. The same limit on every member, named. */
	size_t len = strlen(text);
	if (len > AGENT_MAX_BODY) {
		agent_reply_error(
		    a, req, 413, "too_large",
		    "the resources come to %zu bytes once normalized, more than the %u "
		    "one command may carry: send them in smaller files",
		    len, AGENT_MAX_BODY);
		goto err;
	}
	c->a = a;
	c->req = req;
	c->w.data = c;
	struct kv_op op = {
	    .type = KV_OP_CALL, .call = RES_CALL, .value = {(const uint8_t *)text, len}};
	int rv = store_write(a->store, &c->w, &op, write_done);
	free(text);
	if (rv != STORE_OK) {
		agent_reply_store_error(a, req, rv, NULL);
		free(c);
	}
	return;
err:
	free(text);
	free(c);
}

/* Normalize every resource of arr into a new array (delete references {kind, key} pass as
 * they are). Answers 400 and returns NULL on the first bad one. */
static json_t *normalize_all(struct agent *a, struct http_request *req, const json_t *arr,
                             bool refs_ok)
{
	char err[768];
	if (!json_is_array(arr) || json_array_size(arr) == 0) {
		agent_reply_error(a, req, 400, "invalid", "resources: expected a non-empty list");
		return NULL;
	}
	if (json_array_size(arr) > RESOURCES_MAX) {
		agent_reply_error(a, req, 400, "invalid",
		                  "resources: %zu resources in one request, at most %d",
		                  json_array_size(arr), RESOURCES_MAX);
		return NULL;
	}
	json_t *out = json_array();
	size_t i;
	json_t *r;
	json_array_foreach (arr, i, r) {
		json_t *n = NULL;
		if (refs_ok && json_is_object(r) && json_object_size(r) == 2 &&
		    json_is_string(json_object_get(r, "kind")) &&
		    json_is_string(json_object_get(r, "key"))) {
			/* Checked here too, so that a mistyped kind costs no raft entry. */
			const char *kind = json_string_value(json_object_get(r, "kind"));
			const char *key = json_string_value(json_object_get(r, "key"));
			enum policy_kind k;
			char why[256];
			if (!resources_ref_ok(i, kind, key, &k, why, sizeof why)) {
				agent_reply_error(a, req, 400, "invalid", "%s", why);
				json_decref(out);
				return NULL;
			}
			json_array_append(out, r);
			continue;
		}
		int rv = policy_resource_normalize(r, (unsigned)i, &n, err, sizeof err);
		if (rv != 0) {
			if (rv == -ENOMEM) {
				agent_reply_error(a, req, 500, "internal", "out of memory");
			} else {
				agent_reply_error(a, req, 400, "invalid", "%s", err);
			}
			json_decref(out);
			return NULL;
		}
		json_array_append_new(out, n);
	}
	return out;
}

static void batch_post(struct agent *a, struct http_request *req)
{
	static const char *const ops[] = {"create", "apply", "replace", "delete", NULL};
	json_t *j = agent_parse_body(a, req, "invalid");
	json_t *norm = NULL, *cmd = NULL;
	if (j == NULL) {
		return;
	}
	const char *key;
	json_t *v;
	json_object_foreach (j, key, v) {
		if (strcmp(key, "op") != 0 && strcmp(key, "resources") != 0 &&
		    strcmp(key, "expect") != 0) {
			agent_reply_error(a, req, 400, "invalid", "%.64s: unknown field", key);
			goto out;
		}
	}
	const char *op = json_string_value(json_object_get(j, "op"));
	size_t o;
	for (o = 0; ops[o] != NULL && (op == NULL || strcmp(op, ops[o]) != 0); o++) {
	}
	if (ops[o] == NULL) {
		agent_reply_error(a, req, 400, "invalid",
		                  "op: expected create, apply, replace or delete");
		goto out;
	}
	norm = normalize_all(a, req, json_object_get(j, "resources"), strcmp(op, "delete") == 0);
	if (norm == NULL) {
		goto out;
	}
	cmd = json_pack("{s:s, s:O}", "op", op, "resources", norm);
	json_t *expect = json_object_get(j, "expect");
	if (expect != NULL) {
		if (!json_is_array(expect) || json_array_size(expect) != json_array_size(norm)) {
			agent_reply_error(a, req, 400, "invalid",
			                  "expect: expected a list as long as resources");
			goto out;
		}
		json_object_set(cmd, "expect", expect);
	}
	propose(a, req, cmd);
out:
	json_decref(cmd);
	json_decref(norm);
	json_decref(j);
}

/* POST /v1/KIND, PUT /v1/KIND/KEY: one resource; DELETE /v1/KIND/KEY. */
static void one_write(struct agent *a, struct http_request *req, enum policy_kind kind,
                      const char *key)
{
	json_t *cmd = NULL, *norm = NULL;
	const char *op = req->method == HTTP_POST ? "create" : "apply";
	if (req->method == HTTP_DELETE) {
		cmd = json_pack("{s:s, s:[{s:s, s:s}]}", "op", "delete", "resources", "kind",
		                policy_kind_name(kind), "key", key);
		propose(a, req, cmd);
		json_decref(cmd);
		return;
	}
	json_t *j = agent_parse_body(a, req, "invalid");
	if (j == NULL) {
		return;
	}
	json_t *one = json_pack("[O]", j);
	norm = normalize_all(a, req, one, false);
	json_decref(one);
	if (norm == NULL) {
		goto out;
	}
	char k[POLICY_KEY_MAX];
	enum policy_kind got = policy_resource_key(json_array_get(norm, 0), k, sizeof k);
	if (got != kind) {
		agent_reply_error(a, req, 400, "invalid", "kind: a %s sent to /v1/%s",
		                  policy_kind_name(got), policy_kind_plural(kind));
		goto out;
	}
	if (key != NULL && strcmp(k, key) != 0) {
		agent_reply_error(a, req, 400, "invalid",
		                  "%s %s: the resource names itself %s, not the path's %s",
		                  policy_kind_name(kind), k, k, key);
		goto out;
	}
	cmd = json_pack("{s:s, s:O}", "op", op, "resources", norm);
	propose(a, req, cmd);
out:
	json_decref(cmd);
	json_decref(norm);
	json_decref(j);
}

static void reply_read_error(struct agent *a, struct http_request *req, int rv)
{
	agent_reply_error(a, req, 500, "internal", "cannot read the resources: %s",
	                  rv == -ENOMEM ? "out of memory" : "store error or corrupt record");
}

static void read_get(struct agent *a, struct http_request *req, enum policy_kind kind,
                     const char *key)
{
	struct kv_tx *tx;
	json_t *v = NULL;
	int rv = store_view_begin(a->store, &tx);
	if (rv != STORE_OK) {
		agent_reply_store_error(a, req, rv, NULL);
		return;
	}
	int64_t revision = kv_tx_revision(tx);
	rv = key == NULL ? resources_list(tx, kind, &v) : resources_get(tx, kind, key, &v);
	store_view_end(tx);
	if (rv == -ENOENT) {
		agent_reply_error(a, req, 404, "not_found", "%s %s does not exist",
		                  policy_kind_name(kind), key);
		return;
	}
	if (rv != 0) {
		reply_read_error(a, req, rv);
		return;
	}
	agent_reply_json(a, req, 200,
	                 json_pack("{s:I, s:o}", "revision", (json_int_t)revision,
	                           key == NULL ? "items" : "resource", v));
}

static void trace_post(struct agent *a, struct http_request *req)
{
	struct kv_tx *tx;
	struct policy_model *m = NULL;
	json_t *answer = NULL;
	char err[512];
	json_t *j = agent_parse_body(a, req, "invalid");
	if (j == NULL) {
		return;
	}
	int rv = store_view_begin(a->store, &tx);
	if (rv != STORE_OK) {
		agent_reply_store_error(a, req, rv, NULL);
		goto out;
	}
	rv = resources_model(tx, &m);
	store_view_end(tx);
	if (rv != 0) {
		reply_read_error(a, req, rv);
		goto out;
	}
	rv = policy_trace_request(m, j, &answer, err, sizeof err);
	if (rv == -ENOMEM) {
		agent_reply_error(a, req, 500, "internal", "out of memory");
	} else if (rv != 0) {
		agent_reply_error(a, req, rv == -ENOENT ? 404 : 400,
		                  rv == -ENOENT ? "not_found" : "invalid", "%s", err);
	} else {
		agent_reply_json(a, req, 200, answer);
	}
out:
	policy_model_free(m);
	json_decref(j);
}

/* The kind named by the path word after /v1/ (len bytes), or NONE. */
static enum policy_kind path_kind(const char *word, size_t len)
{
	for (int k = POLICY_KIND_POLICY; k <= POLICY_KIND_NODE; k++) {
		const char *p = policy_kind_plural((enum policy_kind)k);
		if (strlen(p) == len && memcmp(p, word, len) == 0) {
			return (enum policy_kind)k;
		}
	}
	return POLICY_KIND_NONE;
}

bool agent_route_policy(struct agent *a, struct http_request *req)
{
	const char *p = req->path;
	int m = req->method;
	if (strcmp(p, "/v1/resources") == 0) {
		if (m == HTTP_POST) {
			batch_post(a, req);
		} else {
			agent_reply_error(a, req, 405, "method_not_allowed",
			                  "%s is not allowed on %s (POST)", http_method_str(m), p);
		}
		return true;
	}
	if (strcmp(p, "/v1/policy/trace") == 0) {
		if (m == HTTP_POST) {
			trace_post(a, req);
		} else {
			agent_reply_error(a, req, 405, "method_not_allowed",
			                  "%s is not allowed on %s (POST)", http_method_str(m), p);
		}
		return true;
	}
	if (strncmp(p, "/v1/", 4) != 0) {
		return false;
	}
	const char *word = p + 4, *slash = strchr(word, '/');
	size_t wlen = slash ? (size_t)(slash - word) : strlen(word);
	enum policy_kind kind = path_kind(word, wlen);
	if (kind == POLICY_KIND_NONE) {
		return false;
	}
	const char *key = slash && slash[1] != 0 ? slash + 1 : NULL;
	if (kind == POLICY_KIND_IPPOOL) {
		/* IPAM's own pool API shares the prefix: GET /v1/ippools (which answers both
		 * shapes), POST /v1/ippools and /v1/ippools/remove stay with routes_ipam.c. */
		if (key == NULL || (strcmp(key, "remove") == 0)) {
			return false;
		}
	}
	if (key == NULL) {
		if (m == HTTP_GET) {
			read_get(a, req, kind, NULL);
		} else if (m == HTTP_POST) {
			one_write(a, req, kind, NULL);
		} else {
			agent_reply_error(a, req, 405, "method_not_allowed",
			                  "%s is not allowed on %s (GET, POST)", http_method_str(m),
			                  p);
		}
		return true;
	}
	if (strlen(key) >= POLICY_KEY_MAX) {
		agent_reply_error(a, req, 400, "invalid", "the key in the path is too long");
		return true;
	}
	if (m == HTTP_GET) {
		read_get(a, req, kind, key);
	} else if (m == HTTP_PUT || m == HTTP_DELETE) {
		one_write(a, req, kind, key);
	} else {
		agent_reply_error(a, req, 405, "method_not_allowed",
		                  "%s is not allowed on %s (GET, PUT, DELETE)", http_method_str(m),
		                  p);
	}
	return true;
}
