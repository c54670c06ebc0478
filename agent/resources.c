/*
 * v1 resources (policies, profiles, endpoints, nodes, ipPools) in the replicated state.
 *
 * A file applied with `tabby apply -f` must change everything or nothing, and it may mix kinds:
 * policies beside the ipPool they were written for. So a whole batch is one domain command,
 * RES_CALL, decided inside the state machine: every replica re-checks each resource (the
 * normalizer is pure, so they all agree), checks the operation's preconditions against the
 * state before the command (create: absent; replace, delete: present; an optional expected
 * current form per resource, a compare-and-swap for read-modify-write edits such as `tabby
 * profile NAME rule add`), and writes the lot at one revision or nothing at all.
 *
 * Policies, profiles, endpoints and nodes are kept as their normalized JSON under
 * "res/<kind plural>/<key>" in the DOMAIN keyspace. ipPools are not: IPAM owns pools, so the
 * batch hands them to ipam_apply() inside the same command, and `tabby pool show` and `tabby get
 * ippool` read the same records. ipam_apply() buffers its writes in the same kv_tx, so a refusal
 * of any other resource in the batch discards them too.
 *
 * The payload is JSON: {"op": "create"|"apply"|"replace"|"delete", "resources": [RESOURCE...],
 * "expect"?: [RESOURCE|null...]}; for delete a RESOURCE may be a reference {"kind", "key"}. The
 * reply is JSON: {"results": [{"kind", "key", "outcome"}]} or {"error": CODE, "message": ...}.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/resources.h"
#include "ipam/ipam.h"
#include "policy/policy.h"

#define RES_PREFIX "res/"

enum res_op { OP_CREATE, OP_APPLY, OP_REPLACE, OP_DELETE };

static const char *const op_names[] = {"create", "apply", "replace", "delete"};

/* An ipPool's nodeSelector against the labels of the node's resource in the replicated state (a
 * node without a resource has no labels). A selector that does not parse selects nothing; pools
 * are checked when they are written, so that is only a record from before the check. */
static bool node_selected(void *arg, struct kv_tx *tx, const char *selector, const char *node)
{
	struct policy_selector *sel = NULL;
	struct policy_labels labels = {0};
	json_t *res = NULL;
	char err[256];
	bool yes = false;
	(void)arg;
	if (policy_selector_parse(selector, &sel, NULL, err, sizeof err) != 0) {
		return false;
	}
	int rv = resources_get(tx, POLICY_KIND_NODE, node, &res);
	if ((rv == 0 || rv == -ENOENT) &&
	    policy_labels_from_json(json_object_get(json_object_get(res, "metadata"), "labels"),
	                            &labels, err, sizeof err) == 0) {
		yes = policy_selector_match_labels(sel, &labels);
	}
	policy_labels_free(&labels);
	json_decref(res);
	policy_selector_free(sel);
	return yes;
}

const struct ipam_hooks resources_ipam_hooks = {node_selected, NULL};

int resources_store_key(enum policy_kind kind, const char *key, char *out, size_t len)
{
	int n = snprintf(out, len, RES_PREFIX "%s/%s", policy_kind_plural(kind), key);
	return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}

/* One resource of a batch, as the handler works it out. */
struct item {
	enum policy_kind kind;
	char key[POLICY_KEY_MAX];
	json_t *res;     /* normalized (NULL for a delete by reference) */
	json_t *current; /* the stored form before the command, NULL when absent; a JSON string
	                  * when what is stored does not decode */
	const char *outcome;
};

struct batch {
	enum res_op op;
	struct item *items;
	size_t n;
	char *error; /* code of the refusal, static string */
	char message[1024];
};

static void batch_free(struct batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		json_decref(b->items[i].res);
		json_decref(b->items[i].current);
	}
	free(b->items);
}

static int refuse(struct batch *b, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(struct batch *b, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(b->message, sizeof b->message, fmt, ap);
	va_end(ap);
	/* The reply is JSON, built inside the state machine: a message cut inside a character of
	 * a quoted name would fail to pack, and that failure would stop every replica. */
	ipam_text_repair(b->message);
	b->error = (char *)code;
	return 1;
}

/* The stored form of an ipPool: the pool IPAM holds, in normalized form; *pool (when not NULL)
 * points at that pool among pools, or is NULL when there is none. */
static int current_pool(const struct ipam_pool *pools, unsigned np, const char *key, json_t **out,
                        const struct ipam_pool **pool)
{
	struct ipam_cidr c;
	char err[128];
	*out = NULL;
	if (pool != NULL) {
		*pool = NULL;
	}
	if (!ipam_cidr_parse(key, &c, err, sizeof err)) {
		return 0;
	}
	for (unsigned i = 0; i < np; i++) {
		if (ipam_cidr_equal(&pools[i].cidr, &c)) {
			if (pool != NULL) {
				*pool = &pools[i];
			}
			*out = policy_ippool_from_ipam(&pools[i]);
			return *out == NULL ? -ENOMEM : 0;
		}
	}
	return 0;
}

static int current_stored(struct kv_tx *tx, enum policy_kind kind, const char *key, json_t **out)
{
	char skey[POLICY_KEY_MAX + 64];
	struct kv_bytes v;
	*out = NULL;
	if (resources_store_key(kind, key, skey, sizeof skey) != 0) {
		return 0;
	}
	int rv = kv_tx_get(tx, KV_SPACE_DOMAIN,
	                   (struct kv_bytes){(const uint8_t *)skey, strlen(skey)}, &v);
	if (rv == KV_ENOTFOUND) {
		return 0;
	}
	if (rv != KV_OK) {
		return -EIO;
	}
	*out = json_loadb((const char *)v.data, v.len, 0, NULL);
	return *out == NULL ? -EBADMSG : 0;
}

bool resources_ref_ok(size_t i, const char *kind, const char *key, enum policy_kind *out, char *why,
                      size_t size)
{
	*out = kind != NULL ? policy_kind_parse(kind) : POLICY_KIND_NONE;
	const char *problem = NULL;
	if (*out == POLICY_KIND_NONE || *out == POLICY_KIND_BGPPEER) {
		problem = "unknown kind";
	} else if (key == NULL || key[0] == '\0' || strlen(key) >= POLICY_KEY_MAX) {
		problem = "invalid key";
	}
	if (problem != NULL) {
		snprintf(why, size, "resource #%zu: %s: kind '%.64s', key '%.64s'", i + 1, problem,
		         kind != NULL ? kind : "", key != NULL ? key : "");
	}
	return problem == NULL;
}

/* Read one entry of the batch into it. Returns 0, 1 (refused: b says why) or -errno. */
static int read_item(struct batch *b, size_t i, json_t *j, struct item *it)
{
	char err[768];
	json_t *kind = json_object_get(j, "kind");
	json_t *key = json_object_get(j, "key");
	if (b->op == OP_DELETE && json_is_string(key) && json_object_size(j) == 2) {
		/* a reference: DELETE /v1/KIND/KEY */
		char why[256];
		if (!resources_ref_ok(i, json_string_value(kind), json_string_value(key), &it->kind,
		                      why, sizeof why)) {
			return refuse(b, "invalid", "%s", why);
		}
		snprintf(it->key, sizeof it->key, "%s", json_string_value(key));
		return 0;
	}
	int rv = policy_resource_normalize(j, (unsigned)i, &it->res, err, sizeof err);
	if (rv == -ENOMEM) {
		return rv;
	}
	if (rv != 0) {
		return refuse(b, "invalid", "%s", err);
	}
	it->kind = policy_resource_key(it->res, it->key, sizeof it->key);
	if (it->kind == POLICY_KIND_NONE) {
		return refuse(b, "invalid", "resource #%zu has no identity", i + 1);
	}
	return 0;
}

/* Whether writing it would leave what is stored as it is; stored: the pool IPAM holds for an
 * ipPool. An ipPool is compared as IPAM holds it, not as JSON: a resource without a block size
 * keeps the pool's (so the stored form, which has one, differs from a file that never said it),
 * and IP-in-IP or VXLAN that is not enabled is none, whatever mode the file gave it. */
static bool same_as_stored(const struct item *it, const struct ipam_pool *stored)
{
	struct ipam_pool want;
	char err[256];
	if (it->res == NULL || it->current == NULL) {
		return false;
	}
	if (it->kind != POLICY_KIND_IPPOOL) {
		return json_equal(it->current, it->res);
	}
	const struct ipam_pool *p = stored;
	return p != NULL && policy_ippool_to_ipam(it->res, &want, err, sizeof err) == 0 &&
	       !p->removing && p->ipip == want.ipip && p->vxlan == want.vxlan &&
	       p->nat_outgoing == want.nat_outgoing && p->disabled == want.disabled &&
	       (want.block_size == 0 || want.block_size == p->block_size) &&
	       strcmp(p->node_selector, want.node_selector) == 0;
}

/* same: writing it would leave what is stored as it is (same_as_stored). */
static int check_item(struct batch *b, struct item *it, const json_t *expect, bool same)
{
	bool exists = it->current != NULL;
	const char *k = policy_kind_name(it->kind);
	if (expect != NULL) {
		if (json_is_null(expect) ? exists : !exists || !json_equal(expect, it->current)) {
			return refuse(
			    b, "conflict",
			    "%s %s changed since it was read (someone else edited it); read it "
			    "again and retry",
			    k, it->key);
		}
	}
	switch (b->op) {
	case OP_CREATE:
		if (exists) {
			return refuse(b, "exists", "%s %s already exists", k, it->key);
		}
		it->outcome = "created";
		break;
	case OP_REPLACE:
		if (!exists) {
			return refuse(b, "not_found", "%s %s does not exist", k, it->key);
		}
		it->outcome = same ? "unchanged" : "updated";
		break;
	case OP_APPLY:
		it->outcome = !exists ? "created" : same ? "unchanged" : "updated";
		break;
	case OP_DELETE:
		if (!exists) {
			return refuse(b, "not_found", "%s %s does not exist", k, it->key);
		}
		it->outcome = "deleted";
		break;
	}
	return 0;
}

/* Hand the batch's pools to IPAM in this command. Returns 0, 1 (refused) or -errno. */
static int apply_pools(struct batch *b, struct kv_tx *tx)
{
	struct ipam_pool *pools = calloc(b->n, sizeof *pools);
	struct ipam_cidr *cidrs = calloc(b->n, sizeof *cidrs);
	uint8_t *buf = NULL;
	size_t len = 0, np = 0;
	struct kv_call_out sub = {0};
	struct ipam_reply rep = {0};
	int rv = -ENOMEM;
	char err[512];
	if (pools == NULL || cidrs == NULL) {
		goto out;
	}
	for (size_t i = 0; i < b->n; i++) {
		struct item *it = &b->items[i];
		if (it->kind != POLICY_KIND_IPPOOL) {
			continue;
		}
		if (b->op == OP_DELETE) {
			if (!ipam_cidr_parse(it->key, &cidrs[np], err, sizeof err)) {
				rv = refuse(b, "invalid", "ipPool %s: %s", it->key, err);
				goto out;
			}
		} else if (policy_ippool_to_ipam(it->res, &pools[np], err, sizeof err) != 0) {
			rv = refuse(b, "invalid", "%s", err);
			goto out;
		}
		np++;
	}
	if (np == 0) {
		rv = 0;
		goto out;
	}
	struct ipam_request req = {0};
	if (b->op == OP_DELETE) {
		req.type = IPAM_REQ_POOLS_REMOVE;
		req.cidrs = cidrs;
		req.n_cidrs = (unsigned)np;
	} else {
		req.type = IPAM_REQ_POOLS_PUT;
		req.pools = pools;
		req.n_pools = (unsigned)np;
	}
	rv = ipam_encode_request(&req, &buf, &len);
	if (rv == -EINVAL) {
		rv = refuse(b, "invalid", "too many ipPools in one request");
		goto out;
	}
	if (rv != 0) {
		goto out;
	}
	rv = ipam_apply((void *)&resources_ipam_hooks, tx, (struct kv_bytes){buf, len}, &sub);
	if (rv != KV_OK) {
		rv = rv == KV_ENOMEM ? -ENOMEM : -EIO;
		goto out;
	}
	if (sub.refused) {
		rv = ipam_decode_reply(sub.reply, sub.reply_len, &rep);
		if (rv != 0) {
			goto out;
		}
		rv = refuse(b, ipam_error_code(rep.error), "%s",
		            rep.message ? rep.message : "ipPool refused");
	}
out:
	ipam_reply_free(&rep);
	free(sub.reply);
	free(buf);
	free(pools);
	free(cidrs);
	return rv;
}

static int write_items(struct batch *b, struct kv_tx *tx)
{
	char skey[POLICY_KEY_MAX + 64];
	for (size_t i = 0; i < b->n; i++) {
		struct item *it = &b->items[i];
		if (it->kind == POLICY_KIND_IPPOOL || strcmp(it->outcome, "unchanged") == 0) {
			continue;
		}
		if (resources_store_key(it->kind, it->key, skey, sizeof skey) != 0) {
			return refuse(b, "invalid", "%s %s: key too long",
			              policy_kind_name(it->kind), it->key);
		}
		struct kv_bytes k = {(const uint8_t *)skey, strlen(skey)};
		int rv;
		if (b->op == OP_DELETE) {
			rv = kv_tx_del(tx, KV_SPACE_DOMAIN, k);
		} else {
			char *text = json_dumps(it->res, JSON_COMPACT);
			if (text == NULL) {
				return -ENOMEM;
			}
			rv = kv_tx_put(tx, KV_SPACE_DOMAIN, k,
			               (struct kv_bytes){(const uint8_t *)text, strlen(text)});
			free(text);
		}
		if (rv != KV_OK) {
			return rv == KV_ENOMEM ? -ENOMEM : -EIO;
		}
	}
	return 0;
}

/* Work the batch out; 0 accepted, 1 refused, -errno when the host failed. */
static int run_batch(struct batch *b, struct kv_tx *tx, json_t *cmd)
{
	const char *op = json_string_value(json_object_get(cmd, "op"));
	json_t *res = json_object_get(cmd, "resources");
	json_t *expect = json_object_get(cmd, "expect");
	struct ipam_pool *pools = NULL;
	unsigned np = 0;
	int rv;
	size_t o;
	for (o = 0; o < 4 && (op == NULL || strcmp(op, op_names[o]) != 0); o++) {
	}
	if (o == 4) {
		return refuse(b, "invalid", "op: '%.32s' is not create, apply, replace or delete",
		              op ? op : "");
	}
	b->op = (enum res_op)o;
	if (!json_is_array(res) || json_array_size(res) == 0) {
		return refuse(b, "invalid", "resources: expected a non-empty list");
	}
	if (expect != NULL &&
	    (!json_is_array(expect) || json_array_size(expect) != json_array_size(res))) {
		return refuse(b, "invalid", "expect: expected a list as long as resources");
	}
	b->items = calloc(json_array_size(res), sizeof *b->items);
	if (b->items == NULL) {
		return -ENOMEM;
	}
	for (size_t i = 0; i < json_array_size(res); i++) {
		b->n = i + 1;
		rv = read_item(b, i, json_array_get(res, i), &b->items[i]);
		if (rv != 0) {
			return rv;
		}
		if (b->op != OP_DELETE && b->items[i].kind == POLICY_KIND_BGPPEER) {
			return refuse(b, "invalid", "bgpPeer: Tabby routes without BGP");
		}
		for (size_t k = 0; k < i; k++) {
			if (b->items[k].kind == b->items[i].kind &&
			    strcmp(b->items[k].key, b->items[i].key) == 0) {
				return refuse(b, "invalid", "%s %s appears twice in one request",
				              policy_kind_name(b->items[i].kind), b->items[i].key);
			}
		}
	}
	for (size_t i = 0; i < b->n; i++) {
		struct item *it = &b->items[i];
		const struct ipam_pool *stored = NULL;
		if (it->kind == POLICY_KIND_IPPOOL) {
			if (pools == NULL && (rv = ipam_list_pools(tx, &pools, &np)) != 0) {
				goto out;
			}
			rv = current_pool(pools, np, it->key, &it->current, &stored);
		} else {
			rv = current_stored(tx, it->kind, it->key, &it->current);
			if (rv == -EBADMSG) {
				/* A stored form that does not decode: present, equal to nothing. So
				 * apply, replace and delete overwrite or remove it, which is how an
				 * operator repairs it, and create or a compare-and-swap is refused.
				 */
				it->current = json_string("(corrupt)");
				rv = it->current == NULL ? -ENOMEM : 0;
			}
		}
		if (rv != 0) {
			goto out;
		}
		rv = check_item(b, it, expect ? json_array_get(expect, i) : NULL,
		                same_as_stored(it, stored));
		if (rv != 0) {
			goto out;
		}
	}
	rv = write_items(b, tx);
	if (rv == 0) {
		/* last: IPAM's own refusal (overlap, pool in use) is the final word */
		rv = apply_pools(b, tx);
	}
out:
	free(pools);
	return rv;
}

int resources_apply(void *data, struct kv_tx *tx, struct kv_bytes payload, struct kv_call_out *out)
{
	(void)data;
	struct batch b = {0};
	json_t *reply = NULL;
	int rv;
	json_t *cmd = json_loadb((const char *)payload.data, payload.len, 0, NULL);
	if (!json_is_object(cmd)) {
		rv = refuse(&b, "invalid", "the resource command is not a JSON object");
	} else {
		rv = run_batch(&b, tx, cmd);
	}
	json_decref(cmd);
	if (rv == -EBADMSG) {
		/* A stored record that does not decode is in every replica alike: refuse the batch
		 * on all of them rather than stop them all on an entry they would meet again at
		 * every replay. */
		rv = refuse(&b, "internal",
		            "a stored resource this request needs is corrupt; nothing was changed");
	}
	if (rv < 0) {
		batch_free(&b);
		return rv == -ENOMEM ? KV_ENOMEM : KV_EIO;
	}
	if (rv == 1) {
		out->refused = true;
		reply = json_pack("{s:s, s:s}", "error", b.error, "message", b.message);
	} else {
		json_t *results = json_array();
		for (size_t i = 0; i < b.n; i++) {
			json_array_append_new(results, json_pack("{s:s, s:s, s:s}", "kind",
			                                         policy_kind_name(b.items[i].kind),
			                                         "key", b.items[i].key, "outcome",
			                                         b.items[i].outcome));
		}
		reply = json_pack("{s:o}", "results", results);
	}
	batch_free(&b);
	char *text = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
	json_decref(reply);
	if (text == NULL) {
		return KV_ENOMEM;
	}
	out->reply = (uint8_t *)text;
	out->reply_len = strlen(text);
	return KV_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Reads                                                                                       */

struct list_ctx {
	json_t *items;
	struct policy_model *model;
	int error;
};

static int list_one(void *arg, struct kv_bytes key, struct kv_bytes value)
{
	(void)key;
	struct list_ctx *c = arg;
	json_t *j = json_loadb((const char *)value.data, value.len, 0, NULL);
	if (j == NULL) {
		c->error = -EBADMSG;
		return 2;
	}
	if (c->items != NULL) {
		json_array_append_new(c->items, j);
		return 0;
	}
	char err[512];
	int rv = policy_model_put(c->model, j, err, sizeof err);
	json_decref(j);
	if (rv != 0) {
		/* Only what the normalizer accepted is stored; a record the model refuses is a bug
		 * or a corrupt store. */
		c->error = rv == -ENOMEM ? -ENOMEM : -EBADMSG;
		return 2;
	}
	return 0;
}

static int scan_kind(struct kv_tx *tx, enum policy_kind kind, struct list_ctx *c)
{
	char prefix[64];
	snprintf(prefix, sizeof prefix, RES_PREFIX "%s/", policy_kind_plural(kind));
	int rv = kv_tx_scan(tx, KV_SPACE_DOMAIN,
	                    (struct kv_bytes){(const uint8_t *)prefix, strlen(prefix)},
	                    (struct kv_bytes){NULL, 0}, list_one, c);
	if (c->error != 0) {
		return c->error;
	}
	return rv == KV_OK ? 0 : -EIO;
}

int resources_list(struct kv_tx *tx, enum policy_kind kind, json_t **items)
{
	struct list_ctx c = {.items = json_array()};
	int rv = 0;
	if (c.items == NULL) {
		return -ENOMEM;
	}
	if (kind == POLICY_KIND_IPPOOL) {
		struct ipam_pool *pools = NULL;
		unsigned n = 0;
		rv = ipam_list_pools(tx, &pools, &n);
		for (unsigned i = 0; rv == 0 && i < n; i++) {
			json_t *p = policy_ippool_from_ipam(&pools[i]);
			rv = p == NULL ? -ENOMEM : json_array_append_new(c.items, p);
		}
		free(pools);
	} else if (kind != POLICY_KIND_BGPPEER) {
		rv = scan_kind(tx, kind, &c);
	}
	if (rv != 0) {
		json_decref(c.items);
		return rv;
	}
	*items = c.items;
	return 0;
}

int resources_get(struct kv_tx *tx, enum policy_kind kind, const char *key, json_t **res)
{
	if (kind == POLICY_KIND_IPPOOL) {
		struct ipam_pool *pools = NULL;
		unsigned n = 0;
		int rv = ipam_list_pools(tx, &pools, &n);
		if (rv == 0) {
			rv = current_pool(pools, n, key, res, NULL);
		}
		free(pools);
		return rv != 0 ? rv : *res == NULL ? -ENOENT : 0;
	}
	int rv = current_stored(tx, kind, key, res);
	return rv != 0 ? rv : *res == NULL ? -ENOENT : 0;
}

int resources_model(struct kv_tx *tx, struct policy_model **out)
{
	static const enum policy_kind kinds[] = {POLICY_KIND_NODE, POLICY_KIND_PROFILE,
	                                         POLICY_KIND_POLICY, POLICY_KIND_HOSTENDPOINT,
	                                         POLICY_KIND_WORKLOADENDPOINT};
	struct list_ctx c = {.model = policy_model_new()};
	if (c.model == NULL) {
		return -ENOMEM;
	}
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
		int rv = scan_kind(tx, kinds[i], &c);
		if (rv != 0) {
			policy_model_free(c.model);
			return rv;
		}
	}
	*out = c.model;
	return 0;
}
