/*
 * The CNI path's domain command, CNI_CALL: what Calico's plugin did in five datastore round trips
 * with compare-and-swap retries (IPAM claim, assign, endpoint write, profile check, profile
 * create), decided here in one raft entry that every replica applies alike. There is never a
 * moment in which an address is allocated but its endpoint is not written, or the reverse
 * (calico-behaviour.md 8, items 1 and 2).
 *
 * Every container interface the CNI path knows has a record, "cni/<node>/<container>/<ifname>":
 *   {"networks": [NAME...], "handle": H, "iface": HOSTIF, "mac": MAC, "netns": PATH,
 *    "ips": ["10.0.0.5/32"...], "wep": WEP-KEY}
 * (iface, mac and wep only when the container is wired by Tabby; an IPAM-only record, made for
 * tabby-ipam under another main plugin, has none.) The record ties the interface to its IPAM
 * handle, so DEL releases exactly what ADD allocated, and "cni-if/<node>/<hostif>" reserves the
 * host-side name so two interfaces on one host never get the same one.
 *
 * Payloads (JSON) and replies (JSON, {"error": CODE, "message": M} when refused):
 *
 *   {"op": "add", "node", "network", "container", "ifname", "orchestrator"?, "workload"?,
 *    "netns"?, "wire": bool, "ipv4": bool, "ipv6": bool, "pools"?: [CIDR], "ips"?: [ADDR],
 *    "labels"?: {K: V}, "profile": bool}
 *     -> {"ips", "handle", "iface"?, "mac"?, "existed": bool, "wrote_res": bool}
 *   An existing record is the answer to a repeated ADD: the same addresses, no allocation; a
 *   network it does not list yet is appended (and to the endpoint's profiles), as Calico does for
 *   one container joined to a second network under the same interface name.
 *
 *   {"op": "del", "node", "network", "container", "ifname"}
 *     -> {"released": N, "deleted": bool, "iface"?, "ips"}
 *   Removes the network from the record; with the last one the addresses are released, the
 *   endpoint, the record and the name reservation deleted. Without a record, the addresses of the
 *   handle "<network>.<container>" are released if there are any (an allocation made by hand
 *   under the CNI naming), and the reply says nothing was deleted.
 *
 *   {"op": "remove_node", "node"} -> {"released": N, "deleted": N}
 *   A host left the cluster: IPAM's node removal and every record of the node, with its
 *   endpoint, in one command.
 *
 *   {"op": "reap", "node", "handle", "items": [{"ip", "gen"}]}
 *     -> {"released": N, "deleted": N}
 *   The leak reconciler's release: the addresses only if each is still held by that generation
 *   (so nothing handed out again meanwhile is freed), and every record of node with that handle,
 *   with its endpoint.
 *
 * Host-side names: "cali" + the first 11 characters of the container id for eth0, as Calico
 * names them (operators' scripts and Felix-era habits rely on it). Any other interface of the
 * container, and an eth0 whose Calico name is taken already (two container ids with the same
 * first 11 characters), gets "cali" + 11 hex digits of SHA-1(container "/" ifname ["/" n]) with
 * the first n that is free. The container end's MAC is derived from SHA-1 of the same identity,
 * locally administered: the state machine decides it, so the endpoint record carries it from the
 * start and ADD needs no second write once the veth exists.
 */
#include <errno.h>
#include <nettle/sha1.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cni.h"
#include "agent/resources.h"
#include "agent/wire.h"
#include "ipam/ipam.h"
#include "policy/policy.h"

#define IFACE_INDEX_PREFIX "cni-if/"
#define IFNAMSIZ_MAX       15

struct cmd {
	const char *op;
	const char *node, *network, *container, *ifname, *orchestrator, *workload, *netns;
	const char *handle; /* reap */
	bool wire, ipv4, ipv6, profile;
	json_t *pools, *ips, *labels, *items;
	char code[32];
	char message[1024];
};

static int refuse(struct cmd *c, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(struct cmd *c, const char *code, const char *fmt, ...)
{
	va_list ap;
	snprintf(c->code, sizeof c->code, "%s", code);
	va_start(ap, fmt);
	vsnprintf(c->message, sizeof c->message, fmt, ap);
	va_end(ap);
	/* The reply is JSON, built inside the state machine: see resources.c's refuse(). */
	ipam_text_repair(c->message);
	return 1;
}

static int kv_err(int rv)
{
	return rv == KV_ENOMEM ? -ENOMEM : -EIO;
}

/* ------------------------------------------------------------------------------------------ */
/* Input checks                                                                                */

static bool network_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 253) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-')) {
			return false;
		}
	}
	return true;
}

/* CNI 1.0: a container id is alphanumeric plus '_', '.' and '-'. It becomes part of keys and of
 * the Calico host-side name, so nothing else is let in. */
static bool container_ok(const char *s)
{
	return network_ok(s);
}

/* Linux's dev_valid_name() (its isspace() counts 0xa0), and no control characters. */
static bool ifname_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > IFNAMSIZ_MAX || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '/' || ch == ':' || ch <= ' ' || ch == 0x7f || ch == 0xa0) {
			return false;
		}
	}
	return true;
}

static bool node_ok(const char *s)
{
	return ipam_text_ok(s, strlen(s), 1, IPAM_NAME_MAX) && strchr(s, '/') == NULL;
}

static const char *str_field(const json_t *j, const char *k)
{
	const json_t *v = json_object_get(j, k);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool bool_field(const json_t *j, const char *k, bool dflt)
{
	const json_t *v = json_object_get(j, k);
	return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static int read_cmd(struct cmd *c, json_t *j)
{
	c->op = str_field(j, "op");
	c->node = str_field(j, "node");
	if (c->op == NULL) {
		return refuse(c, "invalid", "the CNI command has no op");
	}
	if (c->node == NULL || !node_ok(c->node)) {
		return refuse(c, "invalid", "the CNI command has no valid node");
	}
	if (strcmp(c->op, "remove_node") == 0) {
		return 0;
	}
	if (strcmp(c->op, "reap") == 0) {
		c->handle = str_field(j, "handle");
		c->items = json_object_get(j, "items");
		if (c->handle == NULL || !json_is_array(c->items)) {
			return refuse(c, "invalid", "reap needs a handle and items");
		}
		return 0;
	}
	c->network = str_field(j, "network");
	c->container = str_field(j, "container");
	c->ifname = str_field(j, "ifname");
	c->orchestrator = str_field(j, "orchestrator");
	c->workload = str_field(j, "workload");
	c->netns = str_field(j, "netns");
	c->wire = bool_field(j, "wire", true);
	c->ipv4 = bool_field(j, "ipv4", true);
	c->ipv6 = bool_field(j, "ipv6", false);
	c->profile = bool_field(j, "profile", true);
	c->pools = json_object_get(j, "pools");
	c->ips = json_object_get(j, "ips");
	c->labels = json_object_get(j, "labels");
	if (c->network == NULL || !network_ok(c->network)) {
		return refuse(
		    c, "invalid",
		    "network name '%s' is not valid: 1-253 characters of a-z A-Z 0-9 _ . -",
		    c->network ? c->network : "");
	}
	if (c->container == NULL || !container_ok(c->container)) {
		return refuse(
		    c, "invalid",
		    "container id '%s' is not valid: 1-253 characters of a-z A-Z 0-9 _ . -",
		    c->container ? c->container : "");
	}
	if (c->ifname == NULL || !ifname_ok(c->ifname)) {
		return refuse(c, "invalid",
		              "interface name '%s' is not a valid Linux interface name",
		              c->ifname ? c->ifname : "");
	}
	if (c->orchestrator == NULL) {
		c->orchestrator = "cni";
	}
	if (c->workload == NULL) {
		c->workload = c->container;
	}
	if (!ipam_text_ok(c->orchestrator, strlen(c->orchestrator), 1, IPAM_NAME_MAX) ||
	    strchr(c->orchestrator, '/') != NULL ||
	    !ipam_text_ok(c->workload, strlen(c->workload), 1, IPAM_NAME_MAX)) {
		return refuse(c, "invalid", "orchestrator or workload is not valid");
	}
	if (c->netns != NULL && !ipam_text_ok(c->netns, strlen(c->netns), 1, IPAM_VALUE_MAX)) {
		return refuse(c, "invalid", "netns '%s' is not a valid path", c->netns);
	}
	if ((c->pools != NULL && !json_is_array(c->pools)) ||
	    (c->ips != NULL && !json_is_array(c->ips)) ||
	    (c->labels != NULL && !json_is_object(c->labels))) {
		return refuse(c, "invalid", "pools and ips must be arrays, labels an object");
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Records                                                                                     */

static int record_key(char *out, size_t len, const char *node, const char *container,
                      const char *ifname)
{
	int n = snprintf(out, len, CNI_RECORD_PREFIX "%s/%s/%s", node, container, ifname);
	return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}

static struct kv_bytes kb(const char *s)
{
	return (struct kv_bytes){(const uint8_t *)s, strlen(s)};
}

/* Reads key as JSON: 0 with *out (new reference) or NULL when absent. */
static int get_json(struct kv_tx *tx, const char *key, json_t **out)
{
	struct kv_bytes v;
	*out = NULL;
	int rv = kv_tx_get(tx, KV_SPACE_DOMAIN, kb(key), &v);
	if (rv == KV_ENOTFOUND) {
		return 0;
	}
	if (rv != KV_OK) {
		return kv_err(rv);
	}
	*out = json_loadb((const char *)v.data, v.len, 0, NULL);
	return *out == NULL ? -EBADMSG : 0;
}

static int put_json(struct kv_tx *tx, const char *key, const json_t *val)
{
	char *text = json_dumps(val, JSON_COMPACT | JSON_ENCODE_ANY);
	if (text == NULL) {
		return -ENOMEM;
	}
	int rv = kv_tx_put(tx, KV_SPACE_DOMAIN, kb(key), kb(text));
	free(text);
	return rv == KV_OK ? 0 : kv_err(rv);
}

static int del_key(struct kv_tx *tx, const char *key)
{
	int rv = kv_tx_del(tx, KV_SPACE_DOMAIN, kb(key));
	return rv == KV_OK ? 0 : kv_err(rv);
}

int cni_record_get(struct kv_tx *tx, const char *node, const char *container, const char *ifname,
                   json_t **rec)
{
	char key[KV_KEY_MAX + 1];
	*rec = NULL;
	if (record_key(key, sizeof key, node, container, ifname) != 0) {
		return 0;
	}
	return get_json(tx, key, rec);
}

struct foreach_ctx {
	size_t prefix_len;
	cni_record_fn fn;
	void *arg;
	int rv;
};

static int foreach_one(void *arg, struct kv_bytes key, struct kv_bytes value)
{
	struct foreach_ctx *c = arg;
	char rest[KV_KEY_MAX + 1];
	size_t n = key.len - c->prefix_len;
	if (n >= sizeof rest) {
		return 0;
	}
	memcpy(rest, key.data + c->prefix_len, n);
	rest[n] = 0;
	char *slash = strrchr(rest, '/');
	if (slash == NULL) {
		return 0;
	}
	*slash = 0;
	json_t *rec = json_loadb((const char *)value.data, value.len, 0, NULL);
	if (rec == NULL) {
		c->rv = -EBADMSG;
		return 1;
	}
	int rv = c->fn(c->arg, rest, slash + 1, rec);
	json_decref(rec);
	if (rv != 0) {
		c->rv = rv;
		return 1;
	}
	return 0;
}

int cni_foreach_record(struct kv_tx *tx, const char *node, cni_record_fn fn, void *arg)
{
	char prefix[KV_KEY_MAX + 1];
	int n = snprintf(prefix, sizeof prefix, CNI_RECORD_PREFIX "%s/", node);
	if (n < 0 || (size_t)n >= sizeof prefix) {
		return -EINVAL;
	}
	struct foreach_ctx c = {.prefix_len = (size_t)n, .fn = fn, .arg = arg};
	int rv = kv_tx_scan(tx, KV_SPACE_DOMAIN, kb(prefix), (struct kv_bytes){NULL, 0},
	                    foreach_one, &c);
	if (rv != KV_OK && rv != 1) {
		return kv_err(rv);
	}
	return c.rv;
}

/* ------------------------------------------------------------------------------------------ */
/* Names and MACs                                                                              */

static void digest(const char *a, const char *b, const char *c, unsigned n,
                   uint8_t out[SHA1_DIGEST_SIZE])
{
	struct sha1_ctx h;
	char num[16];
	sha1_init(&h);
	sha1_update(&h, strlen(a), (const uint8_t *)a);
	sha1_update(&h, 1, (const uint8_t *)"/");
	sha1_update(&h, strlen(b), (const uint8_t *)b);
	if (c != NULL) {
		sha1_update(&h, 1, (const uint8_t *)"/");
		sha1_update(&h, strlen(c), (const uint8_t *)c);
	}
	if (n > 0) {
		snprintf(num, sizeof num, "/%u", n);
		sha1_update(&h, strlen(num), (const uint8_t *)num);
	}
	sha1_digest(&h, SHA1_DIGEST_SIZE, out);
}

static int iface_taken(struct kv_tx *tx, const char *node, const char *name, bool *taken)
{
	char key[KV_KEY_MAX + 1];
	struct kv_bytes v;
	snprintf(key, sizeof key, IFACE_INDEX_PREFIX "%s/%s", node, name);
	int rv = kv_tx_get(tx, KV_SPACE_DOMAIN, kb(key), &v);
	if (rv != KV_OK && rv != KV_ENOTFOUND) {
		return kv_err(rv);
	}
	*taken = rv == KV_OK;
	return 0;
}

static int pick_iface(struct kv_tx *tx, const struct cmd *c, char out[IFNAMSIZ_MAX + 1])
{
	bool taken = true;
	int rv;
	/* Calico's name, when the id's first 11 characters are ones every consumer of interface
	 * names takes (a Marathon task id has dots, which the endpoint's interfaceName refuses). */
	bool plain = true;
	for (size_t i = 0; i < 11 && c->container[i] != 0; i++) {
		char ch = c->container[i];
		plain = plain && ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '-');
	}
	if (plain && strcmp(c->ifname, "eth0") == 0) {
		snprintf(out, IFNAMSIZ_MAX + 1, "cali%.11s", c->container);
		if ((rv = iface_taken(tx, c->node, out, &taken)) != 0) {
			return rv;
		}
	}
	/* SHA-1 spreads names evenly, so a free one turns up at once; the bound only guards
	 * against a broken index. */
	for (unsigned n = 0; taken && n < 1000; n++) {
		uint8_t d[SHA1_DIGEST_SIZE];
		digest(c->container, c->ifname, NULL, n, d);
		/* 11 hex digits: 5 bytes and the high nibble of the sixth */
		snprintf(out, IFNAMSIZ_MAX + 1, "cali%02x%02x%02x%02x%02x%x", d[0], d[1], d[2],
		         d[3], d[4], d[5] >> 4);
		if ((rv = iface_taken(tx, c->node, out, &taken)) != 0) {
			return rv;
		}
	}
	return taken ? -EBADMSG : 0;
}

static void make_mac(const struct cmd *c, char out[18])
{
	uint8_t d[SHA1_DIGEST_SIZE];
	digest(c->node, c->container, c->ifname, 0, d);
	/* locally administered, unicast */
	snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", (d[0] & 0xfc) | 0x02, d[1], d[2], d[3],
	         d[4], d[5]);
}

int cni_predict_iface(struct kv_tx *tx, const char *node, const char *container, const char *ifname,
                      bool *exists, char iface[16], char mac[18])
{
	char rkey[KV_KEY_MAX + 1];
	struct kv_bytes v;
	struct cmd c = {.node = node, .container = container, .ifname = ifname};
	if (record_key(rkey, sizeof rkey, node, container, ifname) != 0) {
		return -EINVAL;
	}
	int rv = kv_tx_get(tx, KV_SPACE_DOMAIN, kb(rkey), &v);
	if (rv != KV_OK && rv != KV_ENOTFOUND) {
		return kv_err(rv);
	}
	*exists = rv == KV_OK;
	if (*exists) {
		return 0;
	}
	if ((rv = pick_iface(tx, &c, iface)) != 0) {
		return rv;
	}
	make_mac(&c, mac);
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* IPAM, endpoint and profile                                                                  */

/* Runs an IPAM request inside this command. 0 with *rep filled, 1 refused (c says why). */
static int run_ipam(struct cmd *c, struct kv_tx *tx, const struct ipam_request *req,
                    struct ipam_reply *rep)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	struct kv_call_out sub = {0};
	int rv = ipam_encode_request(req, &buf, &len);
	if (rv == -EINVAL) {
		return refuse(c, "invalid", "the request exceeds what one IPAM command can carry");
	}
	if (rv != 0) {
		return rv;
	}
	rv = ipam_apply((void *)&resources_ipam_hooks, tx, (struct kv_bytes){buf, len}, &sub);
	free(buf);
	if (rv != KV_OK) {
		free(sub.reply);
		return kv_err(rv);
	}
	rv = ipam_decode_reply(sub.reply, sub.reply_len, rep);
	free(sub.reply);
	if (rv != 0) {
		return rv == -ENOMEM ? -ENOMEM : -EIO;
	}
	if (sub.refused || rep->error != IPAM_OK) {
		uint8_t e = rep->error != IPAM_OK ? rep->error : IPAM_E_INVALID;
		return refuse(c, ipam_error_code(e), "%s",
		              rep->message ? rep->message : "the address request was refused");
	}
	return 0;
}

static int assign(struct cmd *c, struct kv_tx *tx, const char *handle, struct ipam_reply *rep)
{
	struct ipam_cidr cidrs[32];
	struct ipam_addr ips[WIRE_ADDRS_MAX];
	struct ipam_attr attrs[4];
	unsigned n_cidrs = 0, n_ips = 0, n_attrs = 0;
	char err[256];
	size_t i;
	json_t *v;
	json_array_foreach (c->pools, i, v) {
		if (n_cidrs == sizeof cidrs / sizeof cidrs[0]) {
			return refuse(c, "invalid", "more than %zu pools requested",
			              sizeof cidrs / sizeof cidrs[0]);
		}
		if (!json_is_string(v) ||
		    !ipam_cidr_parse(json_string_value(v), &cidrs[n_cidrs], err, sizeof err)) {
			return refuse(c, "invalid", "pools[%zu]: %s", i,
			              json_is_string(v) ? err : "not a string");
		}
		n_cidrs++;
	}
	json_array_foreach (c->ips, i, v) {
		if (n_ips == WIRE_ADDRS_MAX) {
			return refuse(c, "invalid", "more than %d addresses requested",
			              WIRE_ADDRS_MAX);
		}
		if (!json_is_string(v) || !ipam_addr_parse(json_string_value(v), &ips[n_ips])) {
			return refuse(c, "invalid", "ips[%zu]: '%s' is not an IP address", i,
			              json_is_string(v) ? json_string_value(v) : "");
		}
		n_ips++;
	}
	attrs[n_attrs++] = (struct ipam_attr){"container", c->container};
	attrs[n_attrs++] = (struct ipam_attr){"ifname", c->ifname};
	attrs[n_attrs++] = (struct ipam_attr){"network", c->network};
	if (c->netns != NULL) {
		attrs[n_attrs++] = (struct ipam_attr){"netns", c->netns};
	}
	struct ipam_request req = {
	    .type = IPAM_REQ_ASSIGN,
	    .node = c->node,
	    .handle = handle,
	    .attrs = attrs,
	    .n_attrs = n_attrs,
	    .cidrs = cidrs,
	    .n_cidrs = n_cidrs,
	};
	if (n_ips > 0) {
		req.ips = ips;
		req.n_ips = n_ips;
	} else {
		req.num4 = c->ipv4 ? 1 : 0;
		req.num6 = c->ipv6 ? 1 : 0;
		if (req.num4 + req.num6 == 0) {
			return refuse(
			    c, "invalid",
			    "no address asked for: assign_ipv4 and assign_ipv6 are both off");
		}
	}
	return run_ipam(c, tx, &req, rep);
}

/* Normalizes in and writes it as a resource; 1 refused when the normalizer refuses it. */
static int put_resource(struct cmd *c, struct kv_tx *tx, const json_t *in)
{
	json_t *norm = NULL;
	char err[1024], key[POLICY_KEY_MAX], skey[POLICY_KEY_MAX + 64];
	int rv = policy_resource_normalize(in, 0, &norm, err, sizeof err);
	if (rv == -EINVAL) {
		return refuse(c, "invalid", "%s", err);
	}
	if (rv != 0) {
		return rv;
	}
	enum policy_kind kind = policy_resource_key(norm, key, sizeof key);
	if (kind == POLICY_KIND_NONE || resources_store_key(kind, key, skey, sizeof skey) != 0) {
		json_decref(norm);
		return refuse(c, "invalid", "the endpoint's key is too long");
	}
	rv = put_json(tx, skey, norm);
	json_decref(norm);
	return rv;
}

/* The per-network profile, created once if missing and never changed afterwards
 * (calico-behaviour.md 1.11, v1 tag model): members of the network may reach each other, all
 * egress is allowed. *wrote tells whether it was created. */
static int ensure_profile(struct cmd *c, struct kv_tx *tx, bool *wrote)
{
	char skey[POLICY_KEY_MAX + 64];
	json_t *cur = NULL;
	if (resources_store_key(POLICY_KIND_PROFILE, c->network, skey, sizeof skey) != 0) {
		return refuse(c, "invalid", "network name too long");
	}
	int rv = get_json(tx, skey, &cur);
	if (rv != 0 || cur != NULL) {
		json_decref(cur);
		return rv;
	}
	json_t *p = json_pack("{s:s, s:s, s:{s:s, s:[s]}, s:{s:[{s:s, s:{s:s}}], s:[{s:s}]}}",
	                      "apiVersion", "v1", "kind", "profile", "metadata", "name", c->network,
	                      "tags", c->network, "spec", "ingress", "action", "allow", "source",
	                      "tag", c->network, "egress", "action", "allow");
	if (p == NULL) {
		return -ENOMEM;
	}
	rv = put_resource(c, tx, p);
	json_decref(p);
	*wrote = rv == 0;
	return rv;
}

static json_t *addr_list(const struct ipam_reply *rep)
{
	json_t *arr = json_array();
	for (unsigned i = 0; arr != NULL && i < rep->n_addrs; i++) {
		char buf[IPAM_ADDR_STRLEN], cidr[IPAM_CIDR_STRLEN];
		const struct ipam_addr *a = &rep->addrs[i].addr;
		snprintf(cidr, sizeof cidr, "%s/%d", ipam_addr_format(a, buf),
		         a->family == 4 ? 32 : 128);
		json_array_append_new(arr, json_string(cidr));
	}
	return arr;
}

static bool list_has(const json_t *arr, const char *s)
{
	size_t i;
	json_t *v;
	json_array_foreach (arr, i, v) {
		if (json_is_string(v) && strcmp(json_string_value(v), s) == 0) {
			return true;
		}
	}
	return false;
}

/* ------------------------------------------------------------------------------------------ */
/* add                                                                                         */

struct handle_scan {
	const char *handle;
	bool found;
};

static int handle_scan_one(void *arg, struct kv_bytes key, struct kv_bytes value)
{
	struct handle_scan *h = arg;
	json_t *rec = json_loadb((const char *)value.data, value.len, 0, NULL);
	(void)key;
	const char *rh = str_field(rec, "handle");
	h->found = rh != NULL && strcmp(rh, h->handle) == 0;
	json_decref(rec);
	return h->found ? 1 : 0;
}

/* Whether a record of the container on this node holds handle. */
static int handle_in_use(struct kv_tx *tx, const struct cmd *c, const char *handle, bool *found)
{
	char prefix[KV_KEY_MAX + 1];
	struct handle_scan h = {.handle = handle};
	int n = snprintf(prefix, sizeof prefix, CNI_RECORD_PREFIX "%s/%s/", c->node, c->container);
	*found = false;
	if (n < 0 || (size_t)n >= sizeof prefix) {
		return 0;
	}
	int rv = kv_tx_scan(tx, KV_SPACE_DOMAIN, kb(prefix), (struct kv_bytes){NULL, 0},
	                    handle_scan_one, &h);
	if (rv != KV_OK && rv != 1) {
		return kv_err(rv);
	}
	*found = h.found;
	return 0;
}

/* The stored endpoint under wkey, if it is the one this record made (its interface is the
 * record's): an endpoint key is shared by every sandbox of a Kubernetes pod, and a late DEL of
 * an old one must not take the new one's endpoint. */
static int own_wep(struct kv_tx *tx, const json_t *rec, char *skey, size_t len, bool *own)
{
	const char *wkey = str_field(rec, "wep"), *iface = str_field(rec, "iface");
	json_t *wep = NULL;
	*own = false;
	if (wkey == NULL || iface == NULL ||
	    resources_store_key(POLICY_KIND_WORKLOADENDPOINT, wkey, skey, len) != 0) {
		return 0;
	}
	int rv = get_json(tx, skey, &wep);
	if (rv != 0) {
		return rv;
	}
	const char *has = str_field(json_object_get(wep, "spec"), "interfaceName");
	*own = has != NULL && strcmp(has, iface) == 0;
	json_decref(wep);
	return 0;
}

/* A repeated ADD, or the same interface joined to another network. */
static int add_existing(struct cmd *c, struct kv_tx *tx, const char *rkey, json_t *rec,
                        json_t **reply)
{
	json_t *networks = json_object_get(rec, "networks");
	bool wrote_res = false;
	int rv = 0;
	if (!json_is_array(networks) || !json_is_string(json_object_get(rec, "handle")) ||
	    !json_is_array(json_object_get(rec, "ips"))) {
		return -EBADMSG;
	}
	/* 5: the same interface in another namespace is another container's life: the allocation's
	 * netns attribute (the leak reconciler's liveness test) would name the old one. */
	const char *was = str_field(rec, "netns");
	if (c->netns != NULL && was != NULL && strcmp(was, c->netns) != 0) {
		return refuse(c, "conflict",
		              "container %s interface %s is wired into %s, not %s: DEL it first",
		              c->container, c->ifname, was, c->netns);
	}
	if (!list_has(networks, c->network)) {
		json_array_append_new(networks, json_string(c->network));
		if ((rv = put_json(tx, rkey, rec)) != 0) {
			return rv;
		}
		const char *wkey = str_field(rec, "wep");
		json_t *wep = NULL;
		char skey[POLICY_KEY_MAX + 64];
		bool own = false;
		if ((rv = own_wep(tx, rec, skey, sizeof skey, &own)) == 0 && own &&
		    (rv = get_json(tx, skey, &wep)) == 0 && wep != NULL) {
			json_t *spec = json_object_get(wep, "spec");
			json_t *profiles = json_object_get(spec, "profiles");
			if (profiles == NULL) {
				profiles = json_array();
				json_object_set_new(spec, "profiles", profiles);
			}
			if (!list_has(profiles, c->network)) {
				json_array_append_new(profiles, json_string(c->network));
			}
			rv = put_resource(c, tx, wep);
			json_decref(wep);
			if (rv != 0) {
				return rv;
			}
			wrote_res = true;
		} else if (rv != 0) {
			return rv;
		}
		if (c->profile && wkey != NULL) {
			bool created = false;
			if ((rv = ensure_profile(c, tx, &created)) != 0) {
				return rv;
			}
			wrote_res |= created;
		}
	}
	*reply = json_pack("{s:O, s:O, s:b, s:b}", "ips", json_object_get(rec, "ips"), "handle",
	                   json_object_get(rec, "handle"), "existed", 1, "wrote_res", wrote_res);
	if (*reply == NULL) {
		return -ENOMEM;
	}
	const char *iface = str_field(rec, "iface"), *mac = str_field(rec, "mac");
	if (iface != NULL) {
		json_object_set_new(*reply, "iface", json_string(iface));
	}
	if (mac != NULL) {
		json_object_set_new(*reply, "mac", json_string(mac));
	}
	return 0;
}

static int do_add(struct cmd *c, struct kv_tx *tx, json_t **reply)
{
	char rkey[KV_KEY_MAX + 1], handle[IPAM_NAME_MAX + 1], iface[IFNAMSIZ_MAX + 1] = "";
	char mac[18] = "", wkey[POLICY_KEY_MAX], ikey[KV_KEY_MAX + 1];
	json_t *rec = NULL, *ips = NULL, *wep = NULL;
	struct ipam_reply rep = {0};
	struct ipam_assigned *held = NULL;
	unsigned n_held = 0;
	bool wrote_res = false;
	int rv;

	if (record_key(rkey, sizeof rkey, c->node, c->container, c->ifname) != 0) {
		return refuse(c, "invalid", "node, container id and interface name are too long");
	}
	if ((rv = get_json(tx, rkey, &rec)) != 0) {
		return rv;
	}
	if (rec != NULL) {
		rv = add_existing(c, tx, rkey, rec, reply);
		json_decref(rec);
		return rv;
	}

	/* Calico's handle, unless another interface of the container on the same network holds
	 * it already. */
	int n = snprintf(handle, sizeof handle, "%s.%s", c->network, c->container);
	if (n < 0 || (size_t)n >= sizeof handle) {
		return refuse(c, "invalid", "network name and container id are too long together");
	}
	if ((rv = ipam_handle_addrs(tx, handle, &held, &n_held)) != 0) {
		return rv;
	}
	free(held);
	if (n_held > 0) {
		n = snprintf(handle, sizeof handle, "%s.%s.%s", c->network, c->container,
		             c->ifname);
		if (n < 0 || (size_t)n >= sizeof handle) {
			return refuse(c, "invalid", "network name and container id are too long");
		}
		if ((rv = ipam_handle_addrs(tx, handle, &held, &n_held)) != 0) {
			return rv;
		}
		free(held);
		if (n_held > 0) {
			return refuse(c, "conflict", "handle %s already holds addresses", handle);
		}
	}
	if ((rv = assign(c, tx, handle, &rep)) != 0) {
		goto out;
	}
	if ((ips = addr_list(&rep)) == NULL) {
		rv = -ENOMEM;
		goto out;
	}

	if (c->wire) {
		if ((rv = pick_iface(tx, c, iface)) != 0) {
			goto out;
		}
		make_mac(c, mac);
		wep = json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:s}, s:{s:s, s:s, s:O, s:[s]}}",
		                "apiVersion", "v1", "kind", "workloadEndpoint", "metadata", "name",
		                c->ifname, "workload", c->workload, "orchestrator", c->orchestrator,
		                "node", c->node, "spec", "interfaceName", iface, "mac", mac,
		                "ipNetworks", ips, "profiles", c->network);
		if (wep == NULL) {
			rv = -ENOMEM;
			goto out;
		}
		if (c->labels != NULL && json_object_size(c->labels) > 0) {
			json_object_set(json_object_get(wep, "metadata"), "labels", c->labels);
		}
		if ((rv = put_resource(c, tx, wep)) != 0) {
			goto out;
		}
		snprintf(wkey, sizeof wkey, "%s/%s/%s/%s", c->node, c->orchestrator, c->workload,
		         c->ifname);
		wrote_res = true;
		if (c->profile) {
			bool created = false;
			if ((rv = ensure_profile(c, tx, &created)) != 0) {
				goto out;
			}
		}
		snprintf(ikey, sizeof ikey, IFACE_INDEX_PREFIX "%s/%s", c->node, iface);
		json_t *owner = json_sprintf("%s/%s", c->container, c->ifname);
		rv = owner == NULL ? -ENOMEM : put_json(tx, ikey, owner);
		json_decref(owner);
		if (rv != 0) {
			goto out;
		}
	}

	rec = json_pack("{s:[s], s:s, s:O}", "networks", c->network, "handle", handle, "ips", ips);
	if (rec == NULL) {
		rv = -ENOMEM;
		goto out;
	}
	if (c->netns != NULL) {
		json_object_set_new(rec, "netns", json_string(c->netns));
	}
	if (c->wire) {
		json_object_set_new(rec, "iface", json_string(iface));
		json_object_set_new(rec, "mac", json_string(mac));
		json_object_set_new(rec, "wep", json_string(wkey));
	}
	if ((rv = put_json(tx, rkey, rec)) != 0) {
		goto out;
	}
	*reply = json_pack("{s:O, s:s, s:b, s:b}", "ips", ips, "handle", handle, "existed", 0,
	                   "wrote_res", wrote_res);
	if (*reply == NULL) {
		rv = -ENOMEM;
		goto out;
	}
	if (c->wire) {
		json_object_set_new(*reply, "iface", json_string(iface));
		json_object_set_new(*reply, "mac", json_string(mac));
	}
out:
	ipam_reply_free(&rep);
	json_decref(rec);
	json_decref(ips);
	json_decref(wep);
	return rv;
}

/* ------------------------------------------------------------------------------------------ */
/* del and reap                                                                                */

/* Deletes a record, its endpoint and its name reservation (not its addresses). */
static int drop_record(struct kv_tx *tx, const char *node, const char *rkey, const json_t *rec)
{
	char skey[POLICY_KEY_MAX + 64], ikey[KV_KEY_MAX + 1];
	const char *iface = str_field(rec, "iface");
	bool own = false;
	int rv = own_wep(tx, rec, skey, sizeof skey, &own);
	if (rv != 0 || (own && (rv = del_key(tx, skey)) != 0)) {
		return rv;
	}
	if (iface != NULL) {
		snprintf(ikey, sizeof ikey, IFACE_INDEX_PREFIX "%s/%s", node, iface);
		if ((rv = del_key(tx, ikey)) != 0) {
			return rv;
		}
	}
	return del_key(tx, rkey);
}

static int do_del(struct cmd *c, struct kv_tx *tx, json_t **reply)
{
	char rkey[KV_KEY_MAX + 1], handle[IPAM_NAME_MAX + 1];
	json_t *rec = NULL;
	struct ipam_reply rep = {0};
	struct ipam_assigned *held = NULL;
	unsigned n_held = 0;
	bool deleted = false;
	int rv;

	if (record_key(rkey, sizeof rkey, c->node, c->container, c->ifname) != 0) {
		return refuse(c, "invalid", "node, container id and interface name are too long");
	}
	if ((rv = get_json(tx, rkey, &rec)) != 0) {
		return rv;
	}
	if (rec == NULL) {
		/* No record: release what was assigned under the CNI naming by hand, unless one
		 * of the container's other interfaces holds that handle (eth0's, when this is a
		 * DEL for an eth1 whose ADD was refused). */
		bool owned = false;
		int n = snprintf(handle, sizeof handle, "%s.%s", c->network, c->container);
		if (n > 0 && (size_t)n < sizeof handle) {
			if ((rv = handle_in_use(tx, c, handle, &owned)) != 0) {
				return rv;
			}
			if (!owned && (rv = ipam_handle_addrs(tx, handle, &held, &n_held)) != 0) {
				return rv;
			}
			free(held);
		}
		if (!owned && n_held > 0) {
			struct ipam_request req = {.type = IPAM_REQ_RELEASE_HANDLE,
			                           .handle = handle};
			if ((rv = run_ipam(c, tx, &req, &rep)) != 0) {
				goto out;
			}
		}
		json_t *ips = addr_list(&rep);
		*reply = ips ? json_pack("{s:i, s:b, s:o}", "released", (int)rep.n_addrs, "deleted",
		                         0, "ips", ips)
		             : NULL;
		rv = *reply == NULL ? -ENOMEM : 0;
		goto out;
	}

	json_t *networks = json_object_get(rec, "networks");
	size_t i;
	json_t *v;
	json_array_foreach (networks, i, v) {
		if (json_is_string(v) && strcmp(json_string_value(v), c->network) == 0) {
			break;
		}
	}
	if (i == json_array_size(networks)) {
		/* Not on this network: nothing of it to undo. */
		*reply = json_pack("{s:i, s:b, s:[]}", "released", 0, "deleted", 0, "ips");
		rv = *reply == NULL ? -ENOMEM : 0;
		goto out;
	}
	if (json_array_size(networks) > 1) {
		/* The interface stays for its other networks; only this network's profile goes. */
		json_array_remove(networks, i);
		if ((rv = put_json(tx, rkey, rec)) != 0) {
			goto out;
		}
		char skey[POLICY_KEY_MAX + 64];
		json_t *wep = NULL;
		bool own = false;
		if ((rv = own_wep(tx, rec, skey, sizeof skey, &own)) == 0 && own &&
		    (rv = get_json(tx, skey, &wep)) == 0 && wep != NULL) {
			json_t *profiles =
			    json_object_get(json_object_get(wep, "spec"), "profiles");
			size_t k;
			json_array_foreach (profiles, k, v) {
				if (json_is_string(v) &&
				    strcmp(json_string_value(v), c->network) == 0) {
					json_array_remove(profiles, k);
					break;
				}
			}
			rv = put_resource(c, tx, wep);
			json_decref(wep);
		}
		if (rv != 0) {
			goto out;
		}
		*reply = json_pack("{s:i, s:b, s:[]}", "released", 0, "deleted", 0, "ips");
		rv = *reply == NULL ? -ENOMEM : 0;
		goto out;
	}

	const char *h = str_field(rec, "handle");
	if (h == NULL) {
		rv = -EBADMSG;
		goto out;
	}
	if ((rv = ipam_handle_addrs(tx, h, &held, &n_held)) != 0) {
		goto out;
	}
	free(held);
	if (n_held > 0) {
		struct ipam_request req = {.type = IPAM_REQ_RELEASE_HANDLE, .handle = h};
		if ((rv = run_ipam(c, tx, &req, &rep)) != 0) {
			goto out;
		}
	}
	if ((rv = drop_record(tx, c->node, rkey, rec)) != 0) {
		goto out;
	}
	deleted = true;
	*reply = json_pack("{s:i, s:b, s:O}", "released", (int)rep.n_addrs, "deleted", deleted,
	                   "ips", json_object_get(rec, "ips"));
	if (*reply == NULL) {
		rv = -ENOMEM;
		goto out;
	}
	if (str_field(rec, "iface") != NULL) {
		json_object_set_new(*reply, "iface", json_string(str_field(rec, "iface")));
	}
out:
	ipam_reply_free(&rep);
	json_decref(rec);
	return rv;
}

struct reap_ctx {
	struct kv_tx *tx;
	const char *node, *handle;
	unsigned deleted;
};

static int reap_one(void *arg, const char *container, const char *ifname, const json_t *rec)
{
	struct reap_ctx *r = arg;
	const char *h = str_field(rec, "handle");
	char rkey[KV_KEY_MAX + 1];
	if ((r->handle != NULL && (h == NULL || strcmp(h, r->handle) != 0)) ||
	    record_key(rkey, sizeof rkey, r->node, container, ifname) != 0) {
		return 0;
	}
	r->deleted++;
	return drop_record(r->tx, r->node, rkey, rec);
}

static int do_reap(struct cmd *c, struct kv_tx *tx, json_t **reply)
{
	size_t n = json_array_size(c->items), i;
	struct ipam_release_item *items = calloc(n ? n : 1, sizeof *items);
	struct ipam_reply rep = {0};
	json_t *v;
	int rv;
	if (items == NULL) {
		return -ENOMEM;
	}
	json_array_foreach (c->items, i, v) {
		const char *ip = str_field(v, "ip");
		json_t *gen = json_object_get(v, "gen");
		if (ip == NULL || !ipam_addr_parse(ip, &items[i].addr) || !json_is_integer(gen)) {
			rv = refuse(c, "invalid", "items[%zu] is not {ip, gen}", i);
			goto out;
		}
		items[i].gen = json_integer_value(gen);
	}
	if (n > 0) {
		struct ipam_request req = {
		    .type = IPAM_REQ_RELEASE, .items = items, .n_items = (unsigned)n};
		if ((rv = run_ipam(c, tx, &req, &rep)) != 0) {
			goto out;
		}
	}
	struct reap_ctx r = {.tx = tx, .node = c->node, .handle = c->handle};
	if ((rv = cni_foreach_record(tx, c->node, reap_one, &r)) != 0) {
		goto out;
	}
	*reply = json_pack("{s:i, s:i}", "released", (int)rep.n_addrs, "deleted", (int)r.deleted);
	rv = *reply == NULL ? -ENOMEM : 0;
out:
	ipam_reply_free(&rep);
	free(items);
	return rv;
}

/* A host left the cluster: its addresses and block affinities (IPAM) and its containers'
 * records and endpoints go in one command, so no endpoint outlives the address it names. */
static int do_remove_node(struct cmd *c, struct kv_tx *tx, json_t **reply)
{
	struct ipam_reply rep = {0};
	struct ipam_request req = {.type = IPAM_REQ_REMOVE_NODE, .node = c->node};
	int rv = run_ipam(c, tx, &req, &rep);
	if (rv != 0) {
		goto out;
	}
	struct reap_ctx r = {.tx = tx, .node = c->node, .handle = NULL};
	if ((rv = cni_foreach_record(tx, c->node, reap_one, &r)) != 0) {
		goto out;
	}
	*reply = json_pack("{s:i, s:i}", "released", (int)rep.n_addrs, "deleted", (int)r.deleted);
	rv = *reply == NULL ? -ENOMEM : 0;
out:
	ipam_reply_free(&rep);
	return rv;
}

/* ------------------------------------------------------------------------------------------ */

int cni_apply(void *data, struct kv_tx *tx, struct kv_bytes payload, struct kv_call_out *out)
{
	(void)data;
	struct cmd c = {0};
	json_t *reply = NULL;
	int rv;
	json_t *j = json_loadb((const char *)payload.data, payload.len, 0, NULL);
	if (!json_is_object(j)) {
		rv = refuse(&c, "invalid", "the CNI command is not a JSON object");
	} else if ((rv = read_cmd(&c, j)) == 0) {
		if (strcmp(c.op, "add") == 0) {
			rv = do_add(&c, tx, &reply);
		} else if (strcmp(c.op, "del") == 0) {
			rv = do_del(&c, tx, &reply);
		} else if (strcmp(c.op, "reap") == 0) {
			rv = do_reap(&c, tx, &reply);
		} else if (strcmp(c.op, "remove_node") == 0) {
			rv = do_remove_node(&c, tx, &reply);
		} else {
			rv = refuse(&c, "invalid", "unknown CNI op '%s'", c.op);
		}
	}
	if (rv == -EBADMSG) {
		/* A record this code did not write (a CNI record, an IPAM handle, a profile) or a
		 * name space that is full: refuse the command on every replica alike rather than
		 * stop them all on a log entry they would meet again at every replay. */
		json_decref(reply);
		reply = NULL;
		rv = refuse(
		    &c, "internal",
		    "a record this command needs (a CNI record of node %s, its address handle "
		    "or its network's profile) is corrupt or full; nothing was changed",
		    c.node ? c.node : "?");
	}
	if (rv < 0) {
		json_decref(j);
		json_decref(reply);
		return rv == -ENOMEM ? KV_ENOMEM : KV_EIO;
	}
	if (rv == 1) {
		json_decref(reply);
		out->refused = true;
		reply = json_pack("{s:s, s:s}", "error", c.code, "message", c.message);
	}
	json_decref(j); /* c's strings pointed into it */
	char *text = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
	json_decref(reply);
	if (text == NULL) {
		return KV_ENOMEM;
	}
	out->reply = (uint8_t *)text;
	out->reply_len = strlen(text);
	return KV_OK;
}
