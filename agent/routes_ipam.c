/*
 * The IPAM part of the HTTP API: /v1/ippools, /v1/ippools/remove and /v1/ipam/... (requests and
 * answers as JSON; the IPAM module itself knows no JSON).
 *
 * Every request body is checked completely before anything is proposed: an unknown field, a value
 * of the wrong type or a malformed address or CIDR gets a 400 "invalid" whose message names the
 * field by its path (pools[1].cidr) and the value. What only the replicated state can decide
 * (overlap, addresses in use, exhaustion) is decided by ipam_apply() on every replica; its refusal
 * comes back as the command's reply and is answered with the status of its error code.
 *
 * Writes are one KV_OP_CALL each, answered when this replica has applied them. Reads run over a
 * read-only view of the local replica (serializable), ended before the answer is sent.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>

#include "agent/cni.h"
#include "agent/internal.h"
#include "ipam/ipam.h"
#include "policy/policy.h"

/* Pools or CIDRs in one request: far more than a cluster has, few enough to bound the work. */
#define POOLS_MAX 1024

/* ------------------------------------------------------------------------------------------ */
/* Replies                                                                                     */

/* A validation failure, formatted where it is found and answered once by the handler. */
struct perr {
	char msg[1024];
};

static int bad(struct perr *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(struct perr *e, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
	return -1;
}

static void reply_invalid(struct agent *a, struct http_request *req, const struct perr *e)
{
	agent_reply_error(a, req, 400, "invalid", "%s", e->msg);
}

static void reply_internal(struct agent *a, struct http_request *req, int rv)
{
	agent_reply_error(a, req, 500, "internal", "reading the IPAM records failed: %s",
	                  rv == -ENOMEM ? "out of memory"
	                                : "the store failed or a record is corrupt");
}

static int ipam_http_status(uint8_t error)
{
	switch (error) {
	case IPAM_E_INVALID:
		return 400;
	case IPAM_E_NOTFOUND:
		return 404;
	case IPAM_E_INUSE:
	case IPAM_E_EXHAUSTED:
	case IPAM_E_CONFLICT:
		return 409;
	}
	return 500;
}

static json_t *addr_json(const struct ipam_addr *ad)
{
	char buf[IPAM_ADDR_STRLEN];
	return json_string(ipam_addr_format(ad, buf));
}

static json_t *cidr_json(const struct ipam_cidr *c)
{
	char buf[IPAM_CIDR_STRLEN];
	return json_string(ipam_cidr_format(c, buf));
}

/* "" (no affinity) is null in the API. */
static json_t *affinity_json(const char *host)
{
	return host != NULL && host[0] != 0 ? json_string(host) : json_null();
}

static json_t *assigned_json(const struct ipam_assigned *x)
{
	json_t *o = json_object();
	json_object_set_new(o, "ip", addr_json(&x->addr));
	json_object_set_new(o, "gen", json_integer(x->gen));
	json_object_set_new(o, "block", cidr_json(&x->block));
	return o;
}

static json_t *assigned_array(const struct ipam_assigned *xs, unsigned n)
{
	json_t *arr = json_array();
	for (unsigned i = 0; i < n; i++) {
		json_array_append_new(arr, assigned_json(&xs[i]));
	}
	return arr;
}

static json_t *pool_json(const struct ipam_pool *p)
{
	json_t *o = json_object();
	json_object_set_new(o, "cidr", cidr_json(&p->cidr));
	json_object_set_new(o, "block_size", json_integer(p->block_size));
	json_object_set_new(o, "ipip", json_string(ipam_encap_name(p->ipip)));
	json_object_set_new(o, "vxlan", json_string(ipam_encap_name(p->vxlan)));
	json_object_set_new(o, "nat_outgoing", json_boolean(p->nat_outgoing));
	json_object_set_new(o, "disabled", json_boolean(p->disabled));
	json_object_set_new(o, "removing", json_boolean(p->removing));
	json_object_set_new(o, "node_selector",
	                    json_string(p->node_selector[0] ? p->node_selector : "all()"));
	return o;
}

/* ------------------------------------------------------------------------------------------ */
/* Request bodies                                                                              */

/* Refuse members of obj not in the NULL-terminated list: a typo must not pass silently. */
static int only_fields(json_t *obj, const char *where, const char *const *allowed, struct perr *e)
{
	const char *k;
	json_t *v;
	json_object_foreach (obj, k, v) {
		bool ok = false;
		for (const char *const *p = allowed; *p != NULL; p++) {
			ok = ok || strcmp(*p, k) == 0;
		}
		if (!ok) {
			return bad(e, "%s: unknown field '%s'", where, k);
		}
	}
	return 0;
}

static int get_name(json_t *obj, const char *field, bool required, const char **out, struct perr *e)
{
	json_t *v = json_object_get(obj, field);
	*out = NULL;
	if (v == NULL) {
		return required ? bad(e, "body: \"%s\" is required", field) : 0;
	}
	if (!json_is_string(v) ||
	    !ipam_text_ok(json_string_value(v), json_string_length(v), 1, IPAM_NAME_MAX)) {
		return bad(e, "%s: must be a string of 1-%d bytes without control characters",
		           field, IPAM_NAME_MAX);
	}
	*out = json_string_value(v);
	return 0;
}

static int get_bool(json_t *obj, const char *field, const char *where, bool *out, struct perr *e)
{
	json_t *v = json_object_get(obj, field);
	if (v == NULL) {
		return 0;
	}
	if (!json_is_boolean(v)) {
		return bad(e, "%s%s%s: must be true or false", where, where[0] ? "." : "", field);
	}
	*out = json_is_true(v);
	return 0;
}

static int parse_addr(json_t *v, const char *where, struct ipam_addr *out, struct perr *e)
{
	if (!json_is_string(v)) {
		return bad(e, "%s: must be a string holding an IP address", where);
	}
	const char *s = json_string_value(v);
	if (!ipam_addr_parse(s, out)) {
		return bad(e, "%s: \"%.100s\" is not an IP address", where, s);
	}
	return 0;
}

static int parse_cidr(json_t *v, const char *where, struct ipam_cidr *out, struct perr *e)
{
	char why[512];
	if (!json_is_string(v)) {
		return bad(e, "%s: must be a string holding a CIDR", where);
	}
	if (!ipam_cidr_parse(json_string_value(v), out, why, sizeof why)) {
		return bad(e, "%s: %s", where, why);
	}
	return 0;
}

/* An array of 1..max members. */
static int get_array(json_t *obj, const char *field, size_t max, json_t **out, struct perr *e)
{
	json_t *v = json_object_get(obj, field);
	*out = v;
	if (v == NULL) {
		return 0;
	}
	if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > max) {
		return bad(e, "%s: must be an array of 1 to %zu items", field, max);
	}
	return 0;
}

static int parse_cidr_list(json_t *arr, const char *field, struct ipam_cidr **out, unsigned *n,
                           struct perr *e)
{
	size_t k = json_array_size(arr);
	*out = calloc(k ? k : 1, sizeof **out);
	if (*out == NULL) {
		return bad(e, "out of memory");
	}
	for (size_t i = 0; i < k; i++) {
		char where[64];
		snprintf(where, sizeof where, "%s[%zu]", field, i);
		if (parse_cidr(json_array_get(arr, i), where, &(*out)[i], e) != 0) {
			return -1;
		}
	}
	*n = (unsigned)k;
	return 0;
}

static int parse_encap(json_t *obj, const char *field, const char *where, uint8_t *out,
                       struct perr *e)
{
	json_t *v = json_object_get(obj, field);
	if (v == NULL) {
		return 0;
	}
	if (!json_is_string(v) || !ipam_encap_parse(json_string_value(v), out)) {
		char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
		int rv = bad(e, "%s.%s: %.100s is not never, always or cross-subnet", where, field,
		             text ? text : "the value");
		free(text);
		return rv;
	}
	return 0;
}

/* POOLIN: {"cidr", "block_size", "ipip", "vxlan", "nat_outgoing", "disabled", "node_selector"}. */
static int parse_pool(json_t *o, unsigned i, struct ipam_pool *p, struct perr *e)
{
	static const char *const fields[] = {"cidr",         "block_size", "ipip",          "vxlan",
	                                     "nat_outgoing", "disabled",   "node_selector", NULL};
	char where[32], sub[48];
	snprintf(where, sizeof where, "pools[%u]", i);
	memset(p, 0, sizeof *p);
	if (!json_is_object(o)) {
		return bad(e, "%s: expected an object with at least \"cidr\"", where);
	}
	if (only_fields(o, where, fields, e) != 0) {
		return -1;
	}
	json_t *cidr = json_object_get(o, "cidr");
	snprintf(sub, sizeof sub, "%s.cidr", where);
	if (cidr == NULL) {
		return bad(e, "%s: is required", sub);
	}
	if (parse_cidr(cidr, sub, &p->cidr, e) != 0) {
		return -1;
	}
	json_t *bs = json_object_get(o, "block_size");
	if (bs != NULL) {
		if (!json_is_integer(bs) || json_integer_value(bs) < 1 ||
		    json_integer_value(bs) > 128) {
			char *text = json_dumps(bs, JSON_ENCODE_ANY | JSON_COMPACT);
			int rv =
			    bad(e,
			        "%s.block_size: %.100s is not a prefix length (20-32 for IPv4, "
			        "116-128 for IPv6)",
			        where, text ? text : "the value");
			free(text);
			return rv;
		}
		p->block_size = (uint8_t)json_integer_value(bs);
	}
	if (parse_encap(o, "ipip", where, &p->ipip, e) != 0 ||
	    parse_encap(o, "vxlan", where, &p->vxlan, e) != 0 ||
	    get_bool(o, "nat_outgoing", where, &p->nat_outgoing, e) != 0 ||
	    get_bool(o, "disabled", where, &p->disabled, e) != 0) {
		return -1;
	}
	json_t *sel = json_object_get(o, "node_selector");
	if (sel != NULL) {
		if (!json_is_string(sel) ||
		    !ipam_text_ok(json_string_value(sel), json_string_length(sel), 0,
		                  IPAM_SELECTOR_MAX - 1)) {
			return bad(e,
			           "%s.node_selector: must be a string of at most %d bytes without "
			           "control characters",
			           where, IPAM_SELECTOR_MAX - 1);
		}
		struct policy_selector *ps = NULL;
		char serr[256];
		if (policy_selector_parse(json_string_value(sel), &ps, NULL, serr, sizeof serr) !=
		    0) {
			return bad(e, "%s.node_selector: %s", where, serr);
		}
		policy_selector_free(ps);
		/* all() is what "" means: store one spelling, so that posting back what GET
		 * shows changes nothing. */
		if (strcmp(json_string_value(sel), "all()") != 0) {
			memcpy(p->node_selector, json_string_value(sel), json_string_length(sel));
		}
	}
	char why[512];
	if (!ipam_pool_validate(p, why, sizeof why)) {
		return bad(e, "%s: %s", where, why);
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Writes                                                                                      */

struct iwctx {
	struct store_write w;
	struct agent *a;
	struct http_request *req;
	uint8_t type; /* enum ipam_request_type */
	/* POOLS_PUT, POOLS_REMOVE: the pools named, to report */
	struct ipam_cidr *cidrs;
	unsigned n_cidrs;
	bool strict_affinity; /* CONFIG */
};

static void iwctx_free(struct iwctx *c)
{
	free(c->cidrs);
	free(c);
}

/* The pools named in cidrs as they are stored now, IPv4 first, in address order: POOL objects;
 * or, with removing_only, the CIDRs of those still there and marked removing. *rv gets 0 or the
 * error of the read. */
static json_t *stored_pools(struct agent *a, const struct ipam_cidr *cidrs, unsigned n,
                            bool removing_only, int *rv)
{
	struct kv_tx *tx;
	struct ipam_pool *pools = NULL;
	unsigned np = 0;
	*rv = store_view_begin(a->store, &tx);
	if (*rv != STORE_OK) {
		*rv = -EIO;
		return NULL;
	}
	*rv = ipam_list_pools(tx, &pools, &np);
	store_view_end(tx);
	if (*rv != 0) {
		return NULL;
	}
	json_t *arr = json_array();
	for (unsigned i = 0; i < np; i++) {
		bool named = false;
		for (unsigned k = 0; k < n && !named; k++) {
			named = ipam_cidr_equal(&pools[i].cidr, &cidrs[k]);
		}
		if (named && (!removing_only || pools[i].removing)) {
			json_array_append_new(arr, removing_only ? cidr_json(&pools[i].cidr)
			                                         : pool_json(&pools[i]));
		}
	}
	free(pools);
	return arr;
}

static void reply_ok(struct iwctx *c, const struct kv_result *r, const struct ipam_reply *rep)
{
	struct agent *a = c->a;
	json_t *out = NULL;
	int rv = 0;
	switch (c->type) {
	case IPAM_REQ_POOLS_PUT: {
		json_t *pools = stored_pools(a, c->cidrs, c->n_cidrs, false, &rv);
		if (pools != NULL) {
			out = json_pack("{s:o, s:I}", "pools", pools, "revision",
			                (json_int_t)r->revision);
		}
		break;
	}
	case IPAM_REQ_POOLS_REMOVE: {
		/* A forced removal of a pool still in use leaves it disabled and marked removing
		 * until its last address goes: say which. */
		json_t *removed = json_array();
		for (unsigned i = 0; i < c->n_cidrs; i++) {
			json_array_append_new(removed, cidr_json(&c->cidrs[i]));
		}
		json_t *removing = stored_pools(a, c->cidrs, c->n_cidrs, true, &rv);
		if (removing != NULL) {
			out = json_pack("{s:o, s:o, s:I}", "removed", removed, "removing", removing,
			                "revision", (json_int_t)r->revision);
		} else {
			json_decref(removed);
		}
		break;
	}
	case IPAM_REQ_CONFIG:
		out = json_pack("{s:b, s:I}", "strict_affinity", c->strict_affinity, "revision",
		                (json_int_t)r->revision);
		break;
	case IPAM_REQ_ASSIGN:
		out = json_pack("{s:o, s:I}", "ips", assigned_array(rep->addrs, rep->n_addrs),
		                "revision", (json_int_t)r->revision);
		break;
	case IPAM_REQ_RELEASE:
	case IPAM_REQ_RELEASE_HANDLE:
		out = json_pack("{s:o, s:I}", "released", assigned_array(rep->addrs, rep->n_addrs),
		                "revision", (json_int_t)r->revision);
		break;
	}
	if (rv != 0) {
		reply_internal(a, c->req, rv);
		return;
	}
	agent_reply_json(a, c->req, 200, out);
}

static void ipam_write_done(struct store_write *w, int status, const struct kv_result *r)
{
	struct iwctx *c = w->data;
	struct agent *a = c->a;
	struct ipam_reply rep = {0};
	if (status != STORE_OK) {
		agent_reply_store_error(a, c->req, status, NULL);
		goto out;
	}
	if (r->status != KV_R_OK && r->status != KV_R_REFUSED) {
		/* The agent built this command: a member without the IPAM handler, or a bug. */
		agent_reply_error(a, c->req, 500, "internal",
		                  "the IPAM command was not applied: %s",
		                  r->message ? r->message : "invalid command");
		goto out;
	}
	int rv = ipam_decode_reply(r->reply, r->reply_len, &rep);
	if (rv != 0) {
		agent_reply_error(a, c->req, 500, "internal", "cannot decode the IPAM reply: %s",
		                  rv == -ENOMEM ? "out of memory" : "malformed");
		goto out;
	}
	if (rep.error != IPAM_OK || r->status == KV_R_REFUSED) {
		uint8_t err = rep.error != IPAM_OK ? rep.error : IPAM_E_INVALID;
		agent_reply_error(a, c->req, ipam_http_status(err), ipam_error_code(err), "%s",
		                  rep.message ? rep.message : "refused");
		goto out;
	}
	reply_ok(c, r, &rep);
out:
	ipam_reply_free(&rep);
	iwctx_free(c);
}

/* Propose req; c (calloc()ed, owned from here on) is answered by ipam_write_done. */
static void propose(struct agent *a, struct http_request *hreq, struct iwctx *c,
                    const struct ipam_request *req)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	c->a = a;
	c->req = hreq;
	c->type = req->type;
	c->w.data = c;
	int rv = ipam_encode_request(req, &buf, &len);
	if (rv != 0) {
		if (rv == -ENOMEM) {
			agent_reply_error(a, hreq, 500, "internal", "out of memory");
		} else {
			agent_reply_error(a, hreq, 400, "invalid",
			                  "the request exceeds what one IPAM command can carry");
		}
		iwctx_free(c);
		return;
	}
	struct kv_op op = {.type = KV_OP_CALL, .call = IPAM_CALL, .value = {buf, len}};
	rv = store_write(a->store, &c->w, &op, ipam_write_done);
	free(buf);
	if (rv != STORE_OK) {
		agent_reply_store_error(a, hreq, rv, NULL);
		iwctx_free(c);
	}
}

static struct iwctx *new_ctx(struct agent *a, struct http_request *req)
{
	struct iwctx *c = calloc(1, sizeof *c);
	if (c == NULL) {
		agent_reply_error(a, req, 500, "internal", "out of memory");
	}
	return c;
}

/* POST /v1/ippools {"pools": [POOLIN...]} */
static void pools_put(struct agent *a, struct http_request *req)
{
	static const char *const fields[] = {"pools", NULL};
	struct perr e;
	struct ipam_pool *pools = NULL;
	struct iwctx *c = NULL;
	json_t *arr;
	json_t *j = agent_parse_body(a, req, "invalid");
	if (j == NULL) {
		return;
	}
	if (only_fields(j, "body", fields, &e) != 0 ||
	    get_array(j, "pools", POOLS_MAX, &arr, &e) != 0 ||
	    (arr == NULL && bad(&e, "body: \"pools\" is required") != 0)) {
		reply_invalid(a, req, &e);
		goto out;
	}
	size_t n = json_array_size(arr);
	pools = calloc(n, sizeof *pools);
	if ((c = new_ctx(a, req)) == NULL) {
		goto out;
	}
	c->cidrs = calloc(n, sizeof *c->cidrs);
	if (pools == NULL || c->cidrs == NULL) {
		agent_reply_error(a, req, 500, "internal", "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (parse_pool(json_array_get(arr, i), (unsigned)i, &pools[i], &e) != 0) {
			reply_invalid(a, req, &e);
			goto out;
		}
		c->cidrs[i] = pools[i].cidr;
	}
	c->n_cidrs = (unsigned)n;
	struct ipam_request r = {
	    .type = IPAM_REQ_POOLS_PUT, .pools = pools, .n_pools = (unsigned)n};
	propose(a, req, c, &r);
	c = NULL;
out:
	if (c != NULL) {
		iwctx_free(c);
	}
	free(pools);
	json_decref(j);
}

/* POST /v1/ippools/remove {"cidrs": [...], "force": false} */
static void pools_remove(struct agent *a, struct http_request *req)
{
	static const char *const fields[] = {"cidrs", "force", NULL};
	struct perr e;
	struct iwctx *c = NULL;
	json_t *arr;
	bool force = false;
	json_t *j = agent_parse_body(a, req, "invalid");
	if (j == NULL) {
		return;
	}
	if (only_fields(j, "body", fields, &e) != 0 ||
	    get_array(j, "cidrs", POOLS_MAX, &arr, &e) != 0 ||
	    (arr == NULL && bad(&e, "body: \"cidrs\" is required") != 0) ||
	    get_bool(j, "force", "", &force, &e) != 0) {
		reply_invalid(a, req, &e);
		goto out;
	}
	if ((c = new_ctx(a, req)) == NULL) {
		goto out;
	}
	if (parse_cidr_list(arr, "cidrs", &c->cidrs, &c->n_cidrs, &e) != 0) {
		reply_invalid(a, req, &e);
		goto out;
	}
	struct ipam_request r = {.type = IPAM_REQ_POOLS_REMOVE,
	                         .cidrs = c->cidrs,
	                         .n_cidrs = c->n_cidrs,
	                         .force = force};
	propose(a, req, c, &r);
	c = NULL;
out:
	if (c != NULL) {
		iwctx_free(c);
	}
	json_decref(j);
}

/* PUT /v1/ipam/config {"strict_affinity": bool} */
static void config_put(struct agent *a, struct http_request *req)
{
	static const char *const fields[] = {"strict_affinity", NULL};
	struct perr e;
	json_t *j = agent_parse_body(a, req, "invalid");
	if (j == NULL) {
		return;
	}
	bool strict = false;
	if (only_fields(j, "body", fields, &e) != 0 ||
	    (json_object_get(j, "strict_affinity") == NULL &&
	     bad(&e, "body: \"strict_affinity\" is required") != 0) ||
	    get_bool(j, "strict_affinity", "", &strict, &e) != 0) {
		reply_invalid(a, req, &e);
		goto out;
	}
	struct iwctx *c = new_ctx(a, req);
	if (c != NULL) {
		c->strict_affinity = strict;
		struct ipam_request r = {.type = IPAM_REQ_CONFIG,
		                         .config = {.strict_affinity = strict}};
		propose(a, req, c, &r);
	}
out:
	json_decref(j);
}

static int parse_attrs(json_t *obj, struct ipam_attr **out, unsigned *n, struct perr *e)
{
	json_t *attrs = json_object_get(obj, "attrs");
	*out = NULL;
	*n = 0;
	if (attrs == NULL) {
		return 0;
	}
	if (!json_is_object(attrs) || json_object_size(attrs) > IPAM_ATTRS_MAX) {
		return bad(e, "attrs: must be an object of at most %d string attributes",
		           IPAM_ATTRS_MAX);
	}
	*out = calloc(json_object_size(attrs) + 1, sizeof **out);
	if (*out == NULL) {
		return bad(e, "out of memory");
	}
	const char *k;
	json_t *v;
	json_object_foreach (attrs, k, v) {
		if (!ipam_text_ok(k, strlen(k), 1, IPAM_NAME_MAX)) {
			return bad(e,
			           "attrs: key \"%.100s\" must be 1-%d bytes without control "
			           "characters",
			           k, IPAM_NAME_MAX);
		}
		if (!json_is_string(v) ||
		    !ipam_text_ok(json_string_value(v), json_string_length(v), 0, IPAM_VALUE_MAX)) {
			return bad(e,
			           "attrs.%.100s: must be a string of at most %d bytes without "
			           "control characters",
			           k, IPAM_VALUE_MAX);
		}
		(*out)[*n].key = k;
		(*out)[*n].value = json_string_value(v);
		(*n)++;
	}
	return 0;
}

static int get_count(json_t *obj, const char *field, uint32_t *out, struct perr *e)
{
	json_t *v = json_object_get(obj, field);
	if (v == NULL) {
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > IPAM_ASSIGN_MAX) {
		return bad(e, "%s: must be an integer from 0 to %d", field, IPAM_ASSIGN_MAX);
	}
	*out = (uint32_t)json_integer_value(v);
	return 0;
}

/* POST /v1/ipam/assign: {"node", "handle", "attrs", "ips": [...]} or {"node", "handle", "attrs",
 * "num4", "num6", "pools": [...]}. node defaults to this agent's member name. */
static void assign(struct agent *a, struct http_request *req)
{
	static const char *const fields[] = {"node", "handle", "attrs", "ips",
	                                     "num4", "num6",   "pools", NULL};
	struct perr e;
	struct ipam_request r = {.type = IPAM_REQ_ASSIGN};
	struct ipam_attr *attrs = NULL;
	struct ipam_addr *ips = NULL;
	struct ipam_cidr *cidrs = NULL;
	json_t *ips_j, *pools_j;
	json_t *j = agent_parse_body(a, req, "invalid");
	if (j == NULL) {
		return;
	}
	if (only_fields(j, "body", fields, &e) != 0 ||
	    get_name(j, "handle", true, &r.handle, &e) != 0 ||
	    get_name(j, "node", false, &r.node, &e) != 0 ||
	    parse_attrs(j, &attrs, &r.n_attrs, &e) != 0 ||
	    get_array(j, "ips", IPAM_ASSIGN_MAX, &ips_j, &e) != 0 ||
	    get_array(j, "pools", POOLS_MAX, &pools_j, &e) != 0 ||
	    get_count(j, "num4", &r.num4, &e) != 0 || get_count(j, "num6", &r.num6, &e) != 0) {
		goto invalid;
	}
	bool counts = json_object_get(j, "num4") != NULL || json_object_get(j, "num6") != NULL;
	if (ips_j != NULL && (counts || pools_j != NULL)) {
		bad(&e,
		    "body: give either \"ips\" or \"num4\"/\"num6\" (with \"pools\"), not both");
		goto invalid;
	}
	if (ips_j == NULL && r.num4 + r.num6 == 0) {
		bad(&e, "body: nothing to assign: give \"ips\", or \"num4\"/\"num6\" above 0");
		goto invalid;
	}
	if (r.num4 + r.num6 > IPAM_ASSIGN_MAX) {
		bad(&e, "body: at most %d addresses in one request", IPAM_ASSIGN_MAX);
		goto invalid;
	}
	if (ips_j != NULL) {
		size_t n = json_array_size(ips_j);
		ips = calloc(n, sizeof *ips);
		if (ips == NULL) {
			bad(&e, "out of memory");
			goto invalid;
		}
		for (size_t i = 0; i < n; i++) {
			char where[32];
			snprintf(where, sizeof where, "ips[%zu]", i);
			if (parse_addr(json_array_get(ips_j, i), where, &ips[i], &e) != 0) {
				goto invalid;
			}
		}
		r.ips = ips;
		r.n_ips = (unsigned)n;
	}
	if (pools_j != NULL && parse_cidr_list(pools_j, "pools", &cidrs, &r.n_cidrs, &e) != 0) {
		goto invalid;
	}
	r.cidrs = cidrs;
	r.attrs = attrs;
	if (r.node == NULL) {
		r.node = a->name;
	}
	struct iwctx *c = new_ctx(a, req);
	if (c != NULL) {
		propose(a, req, c, &r);
	}
	goto out;
invalid:
	reply_invalid(a, req, &e);
out:
	free(attrs);
	free(ips);
	free(cidrs);
	json_decref(j);
}

/* POST /v1/ipam/release: {"handle": H} or {"ips": ["1.2.3.4", {"ip": "1.2.3.5", "gen": 12}]}. */
static void release(struct agent *a, struct http_request *req)
{
	static const char *const fields[] = {"handle", "ips", NULL};
	static const char *const item_fields[] = {"ip", "gen", NULL};
	struct perr e;
	struct ipam_request r = {0};
	struct ipam_release_item *items = NULL;
	json_t *ips_j;
	json_t *j = agent_parse_body(a, req, "invalid");
	if (j == NULL) {
		return;
	}
	if (only_fields(j, "body", fields, &e) != 0 ||
	    get_name(j, "handle", false, &r.handle, &e) != 0 ||
	    get_array(j, "ips", IPAM_ASSIGN_MAX, &ips_j, &e) != 0) {
		goto invalid;
	}
	if ((r.handle != NULL) == (ips_j != NULL)) {
		bad(&e, "body: give either \"handle\" or \"ips\"");
		goto invalid;
	}
	if (r.handle != NULL) {
		r.type = IPAM_REQ_RELEASE_HANDLE;
	} else {
		size_t n = json_array_size(ips_j);
		items = calloc(n, sizeof *items);
		if (items == NULL) {
			bad(&e, "out of memory");
			goto invalid;
		}
		for (size_t i = 0; i < n; i++) {
			json_t *it = json_array_get(ips_j, i);
			char where[32], sub[40];
			snprintf(where, sizeof where, "ips[%zu]", i);
			if (json_is_object(it)) {
				json_t *gen = json_object_get(it, "gen");
				snprintf(sub, sizeof sub, "%s.ip", where);
				if (only_fields(it, where, item_fields, &e) != 0 ||
				    (json_object_get(it, "ip") == NULL &&
				     bad(&e, "%s: is required", sub) != 0) ||
				    parse_addr(json_object_get(it, "ip"), sub, &items[i].addr,
				               &e) != 0) {
					goto invalid;
				}
				if (gen != NULL &&
				    (!json_is_integer(gen) || json_integer_value(gen) < 0)) {
					bad(&e, "%s.gen: must be an integer >= 0", where);
					goto invalid;
				}
				items[i].gen = gen ? json_integer_value(gen) : 0;
			} else if (parse_addr(it, where, &items[i].addr, &e) != 0) {
				goto invalid;
			}
		}
		r.type = IPAM_REQ_RELEASE;
		r.items = items;
		r.n_items = (unsigned)n;
	}
	struct iwctx *c = new_ctx(a, req);
	if (c != NULL) {
		propose(a, req, c, &r);
	}
	goto out;
invalid:
	reply_invalid(a, req, &e);
out:
	free(items);
	json_decref(j);
}

/* ------------------------------------------------------------------------------------------ */
/* Node removal                                                                                */

struct node_probe {
	const char *node;
	bool found;
};

static int probe_alloc(void *arg, const struct ipam_alloc *al)
{
	struct node_probe *p = arg;
	if (strcmp(al->node, p->node) == 0) {
		p->found = true;
		return 1;
	}
	return 0;
}

/* Whether the replicated IPAM state holds addresses or block affinities for node. */
static int node_has_ipam(struct agent *a, const char *node, bool *found)
{
	struct kv_tx *tx;
	struct ipam_block_info *blocks = NULL;
	unsigned nb = 0;
	struct node_probe p = {.node = node};
	if (store_view_begin(a->store, &tx) != STORE_OK) {
		return -EIO;
	}
	int rv = ipam_foreach_alloc(tx, probe_alloc, &p);
	rv = rv == 1 ? 0 : rv;
	if (rv == 0 && !p.found) {
		rv = ipam_list_blocks(tx, &blocks, &nb);
		for (unsigned i = 0; rv == 0 && i < nb && !p.found; i++) {
			p.found = strcmp(blocks[i].affinity, node) == 0;
		}
		free(blocks);
	}
	store_view_end(tx);
	*found = p.found;
	return rv;
}

struct rnctx {
	struct store_write w;
	struct agent *a;
	struct http_request *req;
	char node[IPAM_NAME_MAX + 1];
	bool member_deleted; /* its member record went with this request */
};

static void remove_node_done(struct store_write *w, int status, const struct kv_result *r)
{
	struct rnctx *c = w->data;
	json_t *rep = NULL;
	if (status != STORE_OK) {
		char what[IPAM_NAME_MAX + 160];
		snprintf(what, sizeof what,
		         "member %s was removed, but releasing its addresses failed (repeat the "
		         "removal to release them)",
		         c->node);
		agent_reply_store_error(c->a, c->req, status, c->member_deleted ? what : NULL);
		goto out;
	}
	if ((r->status == KV_R_OK || r->status == KV_R_REFUSED) && r->reply != NULL) {
		rep = json_loadb((const char *)r->reply, r->reply_len, 0, NULL);
	}
	if (r->status != KV_R_OK || rep == NULL) {
		const char *code = json_string_value(json_object_get(rep, "error"));
		const char *msg = json_string_value(json_object_get(rep, "message"));
		code = code ? code : "internal";
		agent_reply_error(c->a, c->req, agent_status_of(code), code, "%s",
		                  msg ? msg : (r->message ? r->message : "refused"));
		goto out;
	}
	agent_reply_json(c->a, c->req, 200,
	                 json_pack("{s:s, s:O, s:O, s:I}", "removed", c->node, "released",
	                           json_object_get(rep, "released"), "endpoints",
	                           json_object_get(rep, "deleted"), "revision",
	                           (json_int_t)r->revision));
out:
	json_decref(rep);
	free(c);
}

void agent_ipam_remove_node(struct agent *a, struct http_request *req, const char *name,
                            bool member_deleted)
{
	/* No member record: normally a 404. But if a previous removal deleted the record and then
	 * failed to release the node's addresses, they are still held: release them now, so that
	 * repeating the removal finishes it. */
	if (!member_deleted) {
		bool found = false;
		int rv = node_has_ipam(a, name, &found);
		if (rv != 0) {
			reply_internal(a, req, rv);
			return;
		}
		if (!found) {
			agent_reply_error(a, req, 404, "not_found", "no member named '%s'", name);
			return;
		}
	}
	if (!ipam_text_ok(name, strlen(name), 1, IPAM_NAME_MAX)) {
		/* Not a name IPAM could hold anything for; the record deletion stands. */
		agent_reply_json(a, req, 200,
		                 json_pack("{s:s, s:i}", "removed", name, "released", 0));
		return;
	}
	/* Through the CNI command: the node's containers' records and endpoints go in the same
	 * entry as its addresses. */
	struct rnctx *c = calloc(1, sizeof *c);
	json_t *cmd = json_pack("{s:s, s:s}", "op", "remove_node", "node", name);
	char *text = cmd != NULL ? json_dumps(cmd, JSON_COMPACT) : NULL;
	json_decref(cmd);
	if (c == NULL || text == NULL) {
		free(c);
		free(text);
		agent_reply_error(a, req, 500, "internal", "out of memory");
		return;
	}
	c->a = a;
	c->req = req;
	c->member_deleted = member_deleted;
	c->w.data = c;
	snprintf(c->node, sizeof c->node, "%s", name);
	struct kv_op op = {
	    .type = KV_OP_CALL, .call = CNI_CALL, .value = {(const uint8_t *)text, strlen(text)}};
	int rv = store_write(a->store, &c->w, &op, remove_node_done);
	free(text);
	if (rv != STORE_OK) {
		agent_reply_store_error(a, req, rv, NULL);
		free(c);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Reads                                                                                       */

static int begin_view(struct agent *a, struct http_request *req, struct kv_tx **tx)
{
	int rv = store_view_begin(a->store, tx);
	if (rv != STORE_OK) {
		agent_reply_store_error(a, req, rv, NULL);
		return -1;
	}
	return 0;
}

/* GET /v1/ippools[?family=4|6] */
static void pools_get(struct agent *a, struct http_request *req)
{
	char *fam = http_query_get(req, "family");
	int family = 0;
	if (fam != NULL) {
		if (strcmp(fam, "4") == 0 || strcmp(fam, "6") == 0) {
			family = fam[0] - '0';
		} else {
			agent_reply_error(a, req, 400, "invalid",
			                  "query parameter family: '%.100s' is neither 4 nor 6",
			                  fam);
			free(fam);
			return;
		}
		free(fam);
	}
	struct kv_tx *tx;
	struct ipam_pool *pools = NULL;
	unsigned n = 0;
	if (begin_view(a, req, &tx) != 0) {
		return;
	}
	int rv = ipam_list_pools(tx, &pools, &n);
	store_view_end(tx);
	if (rv != 0) {
		reply_internal(a, req, rv);
		return;
	}
	/* "pools" for `tabby pool`, "items" (the v1 resources) for `tabby get ippools`. */
	json_t *arr = json_array(), *items = json_array();
	for (unsigned i = 0; i < n; i++) {
		if (family == 0 || pools[i].cidr.addr.family == family) {
			json_array_append_new(arr, pool_json(&pools[i]));
			json_array_append_new(items, policy_ippool_from_ipam(&pools[i]));
		}
	}
	free(pools);
	agent_reply_json(a, req, 200, json_pack("{s:o, s:o}", "pools", arr, "items", items));
}

static json_t *alloc_json(const struct ipam_alloc *al)
{
	json_t *attrs = json_object();
	for (unsigned i = 0; i < al->n_attrs; i++) {
		json_object_set_new(attrs, al->attrs[i].key, json_string(al->attrs[i].value));
	}
	json_t *o = json_object();
	json_object_set_new(o, "ip", addr_json(&al->addr));
	json_object_set_new(o, "assigned", json_true());
	json_object_set_new(o, "gen", json_integer(al->gen));
	json_object_set_new(o, "handle", json_string(al->handle));
	json_object_set_new(o, "node", json_string(al->node));
	json_object_set_new(o, "attrs", attrs);
	json_object_set_new(o, "block", cidr_json(&al->block));
	json_object_set_new(o, "affinity", affinity_json(al->affinity));
	json_object_set_new(o, "time_ms", json_integer((json_int_t)al->time_ms));
	return o;
}

/* GET /v1/ipam/ips/ADDR */
static void ip_get(struct agent *a, struct http_request *req, const char *text)
{
	struct ipam_addr ad;
	if (!ipam_addr_parse(text, &ad)) {
		agent_reply_error(a, req, 400, "invalid", "\"%.100s\" is not an IP address", text);
		return;
	}
	struct kv_tx *tx;
	struct ipam_alloc al = {0};
	bool found = false;
	if (begin_view(a, req, &tx) != 0) {
		return;
	}
	int rv = ipam_lookup_ip(tx, &ad, &found, &al);
	store_view_end(tx);
	if (rv != 0) {
		reply_internal(a, req, rv);
		return;
	}
	if (!found) {
		agent_reply_json(a, req, 200,
		                 json_pack("{s:o, s:b}", "ip", addr_json(&ad), "assigned", false));
		return;
	}
	json_t *o = alloc_json(&al);
	ipam_alloc_free(&al);
	agent_reply_json(a, req, 200, o);
}

/* GET /v1/ipam/handles/H */
static void handle_get(struct agent *a, struct http_request *req, const char *handle, size_t len)
{
	if (!ipam_text_ok(handle, len, 1, IPAM_NAME_MAX)) {
		agent_reply_error(a, req, 400, "invalid",
		                  "the handle must be 1-%d bytes of UTF-8 without control "
		                  "characters",
		                  IPAM_NAME_MAX);
		return;
	}
	struct kv_tx *tx;
	struct ipam_assigned *addrs = NULL;
	unsigned n = 0;
	if (begin_view(a, req, &tx) != 0) {
		return;
	}
	int rv = ipam_handle_addrs(tx, handle, &addrs, &n);
	store_view_end(tx);
	if (rv != 0) {
		reply_internal(a, req, rv);
		return;
	}
	if (n == 0) {
		free(addrs);
		agent_reply_error(a, req, 404, "not_found", "no address is assigned to handle '%s'",
		                  handle);
		return;
	}
	json_t *arr = assigned_array(addrs, n);
	free(addrs);
	agent_reply_json(a, req, 200, json_pack("{s:s, s:o}", "handle", handle, "ips", arr));
}

/* GET /v1/ipam/blocks */
static void blocks_get(struct agent *a, struct http_request *req)
{
	struct kv_tx *tx;
	struct ipam_block_info *blocks = NULL;
	unsigned n = 0;
	if (begin_view(a, req, &tx) != 0) {
		return;
	}
	int rv = ipam_list_blocks(tx, &blocks, &n);
	store_view_end(tx);
	if (rv != 0) {
		reply_internal(a, req, rv);
		return;
	}
	json_t *arr = json_array();
	for (unsigned i = 0; i < n; i++) {
		const struct ipam_block_info *b = &blocks[i];
		json_t *o = json_object();
		json_object_set_new(o, "cidr", cidr_json(&b->cidr));
		json_object_set_new(o, "pool",
		                    b->pool.addr.family != 0 ? cidr_json(&b->pool) : json_null());
		json_object_set_new(o, "affinity", affinity_json(b->affinity));
		json_object_set_new(o, "size", json_integer(b->size));
		json_object_set_new(o, "used", json_integer(b->used));
		json_array_append_new(arr, o);
	}
	free(blocks);
	agent_reply_json(a, req, 200, json_pack("{s:o}", "blocks", arr));
}

/* GET /v1/ipam/usage */
static void usage_get(struct agent *a, struct http_request *req)
{
	struct kv_tx *tx;
	struct ipam_pool_usage *u = NULL;
	unsigned n = 0;
	if (begin_view(a, req, &tx) != 0) {
		return;
	}
	int rv = ipam_pool_usage(tx, &u, &n);
	store_view_end(tx);
	if (rv != 0) {
		reply_internal(a, req, rv);
		return;
	}
	json_t *arr = json_array();
	for (unsigned i = 0; i < n; i++) {
		json_t *o = json_object();
		json_object_set_new(o, "cidr", cidr_json(&u[i].cidr));
		json_object_set_new(o, "total", json_string(u[i].total));
		json_object_set_new(o, "in_use", json_integer((json_int_t)u[i].in_use));
		json_object_set_new(o, "blocks", json_integer((json_int_t)u[i].blocks));
		json_array_append_new(arr, o);
	}
	free(u);
	agent_reply_json(a, req, 200, json_pack("{s:o}", "pools", arr));
}

/* GET /v1/ipam/config */
static void config_get(struct agent *a, struct http_request *req)
{
	struct kv_tx *tx;
	struct ipam_config cfg = {0};
	if (begin_view(a, req, &tx) != 0) {
		return;
	}
	int rv = ipam_get_config(tx, &cfg);
	store_view_end(tx);
	if (rv != 0) {
		reply_internal(a, req, rv);
		return;
	}
	agent_reply_json(a, req, 200, json_pack("{s:b}", "strict_affinity", cfg.strict_affinity));
}

struct check_ctx {
	json_t *problems;
	const struct member_rec *members;
	unsigned n_members; /* members == NULL: the member list could not be read */
};

static void add_problem(void *arg, const char *line)
{
	struct check_ctx *c = arg;
	json_array_append_new(c->problems, json_string(line));
}

static bool is_member(const struct check_ctx *c, const char *node)
{
	for (unsigned i = 0; i < c->n_members; i++) {
		if (strcmp(c->members[i].name, node) == 0) {
			return true;
		}
	}
	return false;
}

static int check_alloc_node(void *arg, const struct ipam_alloc *al)
{
	struct check_ctx *c = arg;
	if (!is_member(c, al->node)) {
		char ip[IPAM_ADDR_STRLEN], line[IPAM_ADDR_STRLEN + 2 * IPAM_NAME_MAX + 96];
		snprintf(line, sizeof line,
		         "%s (handle %s) is assigned to node %s, which is not a cluster member",
		         ipam_addr_format(&al->addr, ip), al->handle, al->node);
		add_problem(c, line);
	}
	return 0;
}

/* GET /v1/ipam/check: the invariants of the records (ipam_check), addresses and affinities held
 * for nodes that are not members, and this host's leak candidates. Always 200: the caller judges
 * the list. */
static void check_get(struct agent *a, struct http_request *req)
{
	struct member_rec *ms = NULL;
	struct check_ctx c = {.problems = json_array()};
	struct ipam_block_info *blocks = NULL;
	unsigned nb = 0, n_problems = 0;
	struct kv_tx *tx;
	/* Members come from the store's own read path; read them before the view. */
	if (agent_members(a, &ms, &c.n_members) == STORE_OK) {
		c.members = ms;
	}
	if (begin_view(a, req, &tx) != 0) {
		goto out;
	}
	int rv = ipam_check(tx, add_problem, &c, &n_problems);
	if (rv == 0 && c.members != NULL) {
		rv = ipam_foreach_alloc(tx, check_alloc_node, &c);
	}
	if (rv == 0 && c.members != NULL) {
		rv = ipam_list_blocks(tx, &blocks, &nb);
		for (unsigned i = 0; rv == 0 && i < nb; i++) {
			if (blocks[i].affinity[0] != 0 && !is_member(&c, blocks[i].affinity)) {
				char cidr[IPAM_CIDR_STRLEN],
				    line[IPAM_CIDR_STRLEN + IPAM_NAME_MAX + 80];
				snprintf(
				    line, sizeof line,
				    "block %s is affine to node %s, which is not a cluster member",
				    ipam_cidr_format(&blocks[i].cidr, cidr), blocks[i].affinity);
				add_problem(&c, line);
			}
		}
		free(blocks);
	}
	if (rv == 0) {
		rv = leaks_report(a, tx, add_problem, &c);
	}
	store_view_end(tx);
	if (rv != 0) {
		reply_internal(a, req, rv);
		goto out;
	}
	if (c.members == NULL) {
		add_problem(&c, "the cluster member list could not be read: addresses of removed "
		                "nodes were not checked");
	}
	agent_reply_json(a, req, 200, json_pack("{s:O}", "problems", c.problems));
out:
	json_decref(c.problems);
	free(ms);
}

/* ------------------------------------------------------------------------------------------ */
/* Dispatch                                                                                    */

typedef void (*route_fn)(struct agent *a, struct http_request *req);

static const struct {
	const char *path;
	int method;
	route_fn fn;
} routes[] = {
    {"/v1/ippools", HTTP_GET, pools_get},
    {"/v1/ippools", HTTP_POST, pools_put},
    {"/v1/ippools/remove", HTTP_POST, pools_remove},
    {"/v1/ipam/assign", HTTP_POST, assign},
    {"/v1/ipam/release", HTTP_POST, release},
    {"/v1/ipam/blocks", HTTP_GET, blocks_get},
    {"/v1/ipam/usage", HTTP_GET, usage_get},
    {"/v1/ipam/check", HTTP_GET, check_get},
    {"/v1/ipam/config", HTTP_GET, config_get},
    {"/v1/ipam/config", HTTP_PUT, config_put},
};

void agent_route_ipam(struct agent *a, struct http_request *req)
{
	static const char ips[] = "/v1/ipam/ips/", handles[] = "/v1/ipam/handles/";
	const size_t n_ips = sizeof ips - 1, n_handles = sizeof handles - 1;
	int m = req->method;
	const char *p = req->path;
	char allowed[64] = "";
	if (strncmp(p, ips, n_ips) == 0 && req->path_len > n_ips) {
		if (m == HTTP_GET) {
			ip_get(a, req, p + n_ips);
			return;
		}
		snprintf(allowed, sizeof allowed, "GET");
	} else if (strncmp(p, handles, n_handles) == 0 && req->path_len > n_handles) {
		if (m == HTTP_GET) {
			handle_get(a, req, p + n_handles, req->path_len - n_handles);
			return;
		}
		snprintf(allowed, sizeof allowed, "GET");
	}
	for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
		if (strcmp(p, routes[i].path) != 0) {
			continue;
		}
		if (routes[i].method == m) {
			routes[i].fn(a, req);
			return;
		}
		size_t at = strlen(allowed);
		snprintf(allowed + at, sizeof allowed - at, "%s%s", at ? ", " : "",
		         http_method_str(routes[i].method));
	}
	if (allowed[0] != 0) {
		agent_reply_error(a, req, 405, "method_not_allowed", "%s is not allowed on %s (%s)",
		                  http_method_str(m), p, allowed);
		return;
	}
	agent_reply_error(a, req, 404, "not_found", "no such path: %s %s", http_method_str(m), p);
}
