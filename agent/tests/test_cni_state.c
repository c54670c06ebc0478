/*
 * The CNI domain command (agent/cni_state.c) over a real LMDB store, with IPAM and the resource
 * command registered beside it as the agent registers them: one command allocates, writes the
 * endpoint and the network's profile; repeated ADDs allocate nothing; DEL releases exactly what
 * ADD took; refusals change nothing at all; host-side names never collide. And the resource
 * command's outcomes: a file that says what is stored already is "unchanged".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <raft.h>

#include "agent/cni.h"
#include "agent/resources.h"
#include "ipam/internal.h" /* the key of a handle record, to damage it */
#include "ipam/tests/harness.h"

/* A handler only these tests register: writes one raw record ("KEY\0VALUE") into the domain
 * keyspace, as a bug or a damaged store would leave it. */
#define RAW_CALL 99
static int raw_apply(void *data, struct kv_tx *tx, struct kv_bytes payload, struct kv_call_out *out)
{
	(void)data;
	(void)out;
	size_t k = strlen((const char *)payload.data);
	assert_true(k < payload.len);
	return kv_tx_put(tx, KV_SPACE_DOMAIN, (struct kv_bytes){payload.data, k},
	                 (struct kv_bytes){payload.data + k + 1, payload.len - k - 1});
}

static void open_store(struct h *h)
{
	const struct kv_handler extra[] = {{RES_CALL, resources_apply, NULL},
	                                   {CNI_CALL, cni_apply, NULL},
	                                   {RAW_CALL, raw_apply, NULL}};
	h_open(h, extra, 3);
	h->check_each = false;
	assert_int_equal(h_put_pool(h, "10.1.0.0/16", 26), IPAM_OK);
}

/* Applies one domain command in a batch of its own; the caller frees *out. */
static void apply_one(struct h *h, uint16_t call, const void *payload, size_t len,
                      struct kv_apply_out *out)
{
	struct kv_cmd cmd = {
	    .op = {.type = KV_OP_CALL, .call = call, .value = {(const uint8_t *)payload, len}}};
	void *batch;
	size_t blen;
	assert_int_equal(kv_encode_batch(&cmd, 1, h->time_ms, &batch, &blen), KV_OK);
	h->time_ms += 1000;
	assert_int_equal(kv_apply(h->kv, batch, blen, out), KV_OK);
	raft_free(batch);
	assert_int_equal(out->n_results, 1);
}

/* Applies one command (a JSON text); returns its reply and whether it was refused. A refusal
 * must leave the store exactly as it was. ipam_clean: IPAM's checker must find nothing after it
 * (false only where a test damaged an IPAM record on purpose). */
static json_t *call_checked(struct h *h, uint16_t call, bool *refused, const char *text,
                            bool ipam_clean)
{
	struct kv_apply_out out;
	uint64_t hash0 = h_hash(h);
	int64_t rev0 = kv_revision(h->kv);
	apply_one(h, call, text, strlen(text), &out);
	const struct kv_result *r = &out.results[0];
	assert_true(r->status == KV_R_OK || r->status == KV_R_REFUSED);
	json_t *rep = json_loadb((const char *)r->reply, r->reply_len, 0, NULL);
	assert_non_null(rep);
	*refused = r->status == KV_R_REFUSED;
	if (*refused) {
		assert_non_null(json_object_get(rep, "message"));
		assert_int_equal(kv_revision(h->kv), rev0);
		assert_true(h_hash(h) == hash0);
	}
	kv_apply_out_free(&out);
	if (ipam_clean) {
		h_check_clean(h);
	}
	return rep;
}

static json_t *call_text(struct h *h, uint16_t call, bool *refused, const char *text)
{
	return call_checked(h, call, refused, text, true);
}

/* Writes a raw record (the value must not hold a NUL). */
static void raw(struct h *h, const char *key, const void *value, size_t len)
{
	uint8_t buf[1024];
	size_t k = strlen(key);
	assert_true(k + 1 + len <= sizeof buf);
	memcpy(buf, key, k + 1);
	memcpy(buf + k + 1, value, len);
	struct kv_apply_out out;
	apply_one(h, RAW_CALL, buf, k + 1 + len, &out);
	assert_int_equal(out.results[0].status, KV_R_OK);
	kv_apply_out_free(&out);
}

static json_t *cni(struct h *h, bool *refused, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static json_t *cni(struct h *h, bool *refused, const char *fmt, ...)
{
	char text[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	return call_text(h, CNI_CALL, refused, text);
}

/* A resource batch (RES_CALL), which must be taken. */
static void res_ok(struct h *h, const char *text)
{
	bool refused;
	json_t *rep = call_text(h, RES_CALL, &refused, text);
	assert_false(refused);
	json_decref(rep);
}

static json_t *ok(struct h *h, const char *fmt, const char *a, const char *b)
{
	bool refused;
	json_t *rep = cni(h, &refused, fmt, a, b);
	if (refused) {
		fprintf(stderr, "refused: %s\n",
		        json_string_value(json_object_get(rep, "message")));
	}
	assert_false(refused);
	return rep;
}

static json_t *get_res(struct h *h, enum policy_kind kind, const char *key)
{
	struct kv_tx *tx;
	json_t *res = NULL;
	assert_int_equal(kv_view_begin(h->kv, &tx), KV_OK);
	int rv = resources_get(tx, kind, key, &res);
	kv_view_end(tx);
	return rv == 0 ? res : NULL;
}

static const char *s(const json_t *j, const char *k)
{
	return json_string_value(json_object_get(j, k));
}

#define ADD                                                                                        \
	"{\"op\":\"add\",\"node\":\"h1\",\"network\":\"%s\",\"container\":\"%s\",\"ifname\":"      \
	"\"eth0\",\"netns\":\"/var/run/netns/x\",\"wire\":true,\"ipv4\":true,\"profile\":true,"    \
	"\"labels\":{\"role\":\"web\"}}"
#define DEL                                                                                        \
	"{\"op\":\"del\",\"node\":\"h1\",\"network\":\"%s\",\"container\":\"%s\",\"ifname\":"      \
	"\"eth0\"}"

static void test_add_writes_everything(void **state)
{
	(void)state;
	struct h h;
	open_store(&h);
	json_t *rep = ok(&h, ADD, "calico-net-1", "0123456789abcdef");
	assert_false(json_is_true(json_object_get(rep, "existed")));
	assert_true(json_is_true(json_object_get(rep, "wrote_res")));
	assert_string_equal(s(rep, "iface"), "cali0123456789a");
	assert_string_equal(s(rep, "handle"), "calico-net-1.0123456789abcdef");
	const char *mac = s(rep, "mac");
	assert_int_equal(strlen(mac), 17);
	assert_int_equal(strtol(mac, NULL, 16) & 0x03, 0x02); /* local, unicast */
	json_t *ips = json_object_get(rep, "ips");
	assert_int_equal(json_array_size(ips), 1);
	const char *ip = json_string_value(json_array_get(ips, 0));
	assert_non_null(strstr(ip, "/32"));
	assert_int_equal(strncmp(ip, "10.1.", 5), 0);
	assert_int_equal(h_handle_count(&h, "calico-net-1.0123456789abcdef"), 1);

	/* the endpoint, in Calico's identity */
	json_t *wep = get_res(&h, POLICY_KIND_WORKLOADENDPOINT, "h1/cni/0123456789abcdef/eth0");
	assert_non_null(wep);
	json_t *spec = json_object_get(wep, "spec");
	assert_string_equal(s(spec, "interfaceName"), "cali0123456789a");
	assert_string_equal(s(spec, "mac"), mac);
	assert_string_equal(
	    json_string_value(json_array_get(json_object_get(spec, "ipNetworks"), 0)), ip);
	assert_string_equal(json_string_value(json_array_get(json_object_get(spec, "profiles"), 0)),
	                    "calico-net-1");
	assert_string_equal(s(json_object_get(json_object_get(wep, "metadata"), "labels"), "role"),
	                    "web");
	json_decref(wep);

	/* the network's profile: same-network ingress, all egress */
	json_t *prof = get_res(&h, POLICY_KIND_PROFILE, "calico-net-1");
	assert_non_null(prof);
	json_t *ing = json_array_get(json_object_get(json_object_get(prof, "spec"), "ingress"), 0);
	assert_string_equal(s(ing, "action"), "allow");
	assert_string_equal(s(json_object_get(ing, "source"), "tag"), "calico-net-1");
	json_decref(prof);

	/* the record CHECK reads */
	struct kv_tx *tx;
	json_t *rec = NULL;
	assert_int_equal(kv_view_begin(h.kv, &tx), KV_OK);
	assert_int_equal(cni_record_get(tx, "h1", "0123456789abcdef", "eth0", &rec), 0);
	kv_view_end(tx);
	assert_non_null(rec);
	assert_string_equal(s(rec, "iface"), "cali0123456789a");
	assert_true(json_equal(json_object_get(rec, "ips"), ips));
	json_decref(rec);
	json_decref(rep);
	h_close(&h);
}

static void test_repeated_add_allocates_nothing(void **state)
{
	(void)state;
	struct h h;
	open_store(&h);
	json_t *a = ok(&h, ADD, "calico-net-1", "c1");
	unsigned allocs = h_alloc_count(&h);
	json_t *b = ok(&h, ADD, "calico-net-1", "c1");
	assert_true(json_is_true(json_object_get(b, "existed")));
	assert_false(json_is_true(json_object_get(b, "wrote_res")));
	assert_true(json_equal(json_object_get(a, "ips"), json_object_get(b, "ips")));
	assert_string_equal(s(a, "iface"), s(b, "iface"));
	assert_string_equal(s(a, "mac"), s(b, "mac"));
	assert_int_equal(h_alloc_count(&h), allocs);

	/* a second network under the same interface: a second profile, the same address */
	json_t *c = ok(&h, ADD, "net-2", "c1");
	assert_true(json_equal(json_object_get(a, "ips"), json_object_get(c, "ips")));
	assert_int_equal(h_alloc_count(&h), allocs);
	json_t *wep = get_res(&h, POLICY_KIND_WORKLOADENDPOINT, "h1/cni/c1/eth0");
	json_t *profiles = json_object_get(json_object_get(wep, "spec"), "profiles");
	assert_int_equal(json_array_size(profiles), 2);
	assert_string_equal(json_string_value(json_array_get(profiles, 1)), "net-2");
	json_decref(wep);
	json_t *p2 = get_res(&h, POLICY_KIND_PROFILE, "net-2");
	assert_non_null(p2);
	json_decref(p2);

	/* DEL of one network keeps the interface and the address */
	json_t *d = ok(&h, DEL, "net-2", "c1");
	assert_false(json_is_true(json_object_get(d, "deleted")));
	assert_int_equal(h_alloc_count(&h), allocs);
	wep = get_res(&h, POLICY_KIND_WORKLOADENDPOINT, "h1/cni/c1/eth0");
	assert_int_equal(json_array_size(json_object_get(json_object_get(wep, "spec"), "profiles")),
	                 1);
	json_decref(wep);
	/* the last one releases everything */
	json_t *e = ok(&h, DEL, "calico-net-1", "c1");
	assert_true(json_is_true(json_object_get(e, "deleted")));
	assert_int_equal(json_integer_value(json_object_get(e, "released")), 1);
	assert_int_equal(h_alloc_count(&h), allocs - 1);
	assert_null(get_res(&h, POLICY_KIND_WORKLOADENDPOINT, "h1/cni/c1/eth0"));
	/* the profile stays, as Calico's does */
	p2 = get_res(&h, POLICY_KIND_PROFILE, "calico-net-1");
	assert_non_null(p2);
	json_decref(p2);
	/* DEL again, and DEL of a container never added: success, nothing released */
	json_t *f = ok(&h, DEL, "calico-net-1", "c1");
	assert_int_equal(json_integer_value(json_object_get(f, "released")), 0);
	json_t *g = ok(&h, DEL, "calico-net-1", "never-added");
	assert_false(json_is_true(json_object_get(g, "deleted")));
	json_decref(a);
	json_decref(b);
	json_decref(c);
	json_decref(d);
	json_decref(e);
	json_decref(f);
	json_decref(g);
	h_close(&h);
}

static void test_host_names_never_collide(void **state)
{
	(void)state;
	struct h h;
	open_store(&h);
	/* same first 11 characters */
	json_t *a = ok(&h, ADD, "n", "abcdefghijk-1");
	json_t *b = ok(&h, ADD, "n", "abcdefghijk-2");
	assert_string_equal(s(a, "iface"), "caliabcdefghijk");
	assert_string_not_equal(s(a, "iface"), s(b, "iface"));
	assert_int_equal(strncmp(s(b, "iface"), "cali", 4), 0);
	assert_int_equal(strlen(s(b, "iface")), 15);
	/* eth1 of the same container */
	bool refused;
	json_t *c =
	    cni(&h, &refused,
	        "{\"op\":\"add\",\"node\":\"h1\",\"network\":\"n\",\"container\":\"abcdefghijk-"
	        "1\",\"ifname\":\"eth1\",\"netns\":\"/x\"}");
	assert_false(refused);
	assert_string_not_equal(s(c, "iface"), s(a, "iface"));
	assert_string_not_equal(s(c, "iface"), s(b, "iface"));
	/* eth1 on the same network has its own handle and address */
	assert_string_equal(s(c, "handle"), "n.abcdefghijk-1.eth1");
	assert_false(json_equal(json_object_get(a, "ips"), json_object_get(c, "ips")));
	/* a Marathon task id: dots are not for interface names, so the hashed name */
	json_t *m = ok(&h, ADD, "n", "web.task.1");
	assert_int_equal(strncmp(s(m, "iface"), "cali", 4), 0);
	assert_null(strchr(s(m, "iface"), '.'));
	json_decref(m);
	/* after DEL the Calico name is free again and comes back */
	json_decref(ok(&h, DEL, "n", "abcdefghijk-1"));
	json_t *d = ok(&h, ADD, "n", "abcdefghijk-3");
	assert_string_equal(s(d, "iface"), "caliabcdefghijk");
	json_decref(a);
	json_decref(b);
	json_decref(c);
	json_decref(d);
	h_close(&h);
}

/* The forecast an agent makes before proposing an ADD (cni_predict_iface()) is what the command
 * then decides, for a free Calico name, a taken one and a hashed one; an existing record is
 * reported as such. */
static void test_prediction_matches(void **state)
{
	(void)state;
	struct h h;
	open_store(&h);
	const char *ids[] = {"abcdefghijk-1", "abcdefghijk-2", "web.task.1", "abcdefghijk-3"};
	for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
		struct kv_tx *tx;
		bool exists = true;
		char iface[16], mac[18];
		assert_int_equal(kv_view_begin(h.kv, &tx), KV_OK);
		assert_int_equal(cni_predict_iface(tx, "h1", ids[i], "eth0", &exists, iface, mac),
		                 0);
		kv_view_end(tx);
		assert_false(exists);
		json_t *a = ok(&h, ADD, "n", ids[i]);
		assert_string_equal(s(a, "iface"), iface);
		assert_string_equal(s(a, "mac"), mac);
		json_decref(a);
		assert_int_equal(kv_view_begin(h.kv, &tx), KV_OK);
		assert_int_equal(cni_predict_iface(tx, "h1", ids[i], "eth0", &exists, iface, mac),
		                 0);
		kv_view_end(tx);
		assert_true(exists);
		if (i == 1) {
			json_decref(
			    ok(&h, DEL, "n", "abcdefghijk-1")); /* the Calico name is free */
		}
	}
	h_close(&h);
}

static void test_refusals_change_nothing(void **state)
{
	(void)state;
	struct h h;
	bool refused;
	open_store(&h);
	const char *bad[] = {
	    /* bad network name */
	    "{\"op\":\"add\",\"node\":\"h1\",\"network\":\"a b\",\"container\":\"c\",\"ifname\":"
	    "\"eth0\"}",
	    /* bad container id */
	    "{\"op\":\"add\",\"node\":\"h1\",\"network\":\"n\",\"container\":\"a/b\",\"ifname\":"
	    "\"eth0\"}",
	    /* bad interface names */
	    "{\"op\":\"add\",\"node\":\"h1\",\"network\":\"n\",\"container\":\"c\",\"ifname\":"
	    "\"0123456789abcdef\"}",
	    "{\"op\":\"add\",\"node\":\"h1\",\"network\":\"n\",\"container\":\"c\",\"ifname\":"
	    "\"a:b\"}",
	    /* an address outside every pool */
	    "{\"op\":\"add\",\"node\":\"h1\",\"network\":\"n\",\"container\":\"c\",\"ifname\":"
	    "\"eth0\",\"ips\":[\"172.16.0.1\"]}",
	    /* not an address */
	    "{\"op\":\"add\",\"node\":\"h1\",\"network\":\"n\",\"container\":\"c\",\"ifname\":"
	    "\"eth0\",\"ips\":[\"10.1.0.300\"]}",
	    /* a pool that does not exist */
	    "{\"op\":\"add\",\"node\":\"h1\",\"network\":\"n\",\"container\":\"c\",\"ifname\":"
	    "\"eth0\",\"pools\":[\"10.9.0.0/16\"]}",
	    /* a label the endpoint normalizer refuses: the address must not stay allocated */
	    "{\"op\":\"add\",\"node\":\"h1\",\"network\":\"n\",\"container\":\"c\",\"ifname\":"
	    "\"eth0\",\"labels\":{\"bad key!\":\"v\"}}",
	    /* nothing asked for */
	    "{\"op\":\"add\",\"node\":\"h1\",\"network\":\"n\",\"container\":\"c\",\"ifname\":"
	    "\"eth0\",\"ipv4\":false,\"ipv6\":false}",
	    "{\"op\":\"frob\",\"node\":\"h1\"}",
	    "[1,2]",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		json_t *rep = cni(&h, &refused, "%s", bad[i]);
		if (!refused) {
			fprintf(stderr, "not refused: %s\n", bad[i]);
		}
		assert_true(refused);
		json_decref(rep);
	}
	assert_int_equal(h_alloc_count(&h), 0);
	/* an explicit address inside the pool is honoured */
	json_t *rep = cni(&h, &refused,
	                  "{\"op\":\"add\",\"node\":\"h1\",\"network\":\"n\",\"container\":\"c\","
	                  "\"ifname\":\"eth0\",\"ips\":[\"10.1.7.7\"]}");
	assert_false(refused);
	assert_string_equal(json_string_value(json_array_get(json_object_get(rep, "ips"), 0)),
	                    "10.1.7.7/32");
	json_decref(rep);
	/* and taking it twice is refused */
	rep = cni(&h, &refused,
	          "{\"op\":\"add\",\"node\":\"h1\",\"network\":\"n\",\"container\":\"d\","
	          "\"ifname\":\"eth0\",\"ips\":[\"10.1.7.7\"]}");
	assert_true(refused);
	json_decref(rep);
	h_close(&h);
}

/* Refusals quote names, cut at a byte limit; a cut inside a character made the reply unpackable
 * as JSON, and the apply then failed the same way on every replica, at every replay. Each of
 * these must be an ordinary refusal. */
static void test_messages_cut_inside_a_character(void **state)
{
	(void)state;
	struct h h;
	bool refused;
	char e_acute[2100] = "", text[3000];
	open_store(&h);
	for (int i = 0; i < 1000; i++) {
		strcat(e_acute, "\xc3\xa9");
	}

	/* an unknown kind, quoted as '%.64s' */
	snprintf(text, sizeof text,
	         "{\"op\":\"delete\",\"resources\":[{\"kind\":\"a%.80s\",\"key\":\"x\"}]}",
	         e_acute);
	json_t *rep = call_text(&h, RES_CALL, &refused, text);
	assert_true(refused);
	assert_non_null(strstr(s(rep, "message"), "unknown kind: kind 'a\xc3\xa9"));
	json_decref(rep);

	/* a missing policy whose name fills the message to its last byte */
	snprintf(text, sizeof text,
	         "{\"op\":\"delete\",\"resources\":[{\"kind\":\"policy\",\"key\":\"a%.1016s\"}]}",
	         e_acute);
	rep = call_text(&h, RES_CALL, &refused, text);
	assert_true(refused);
	json_decref(rep);

	/* a label value the endpoint normalizer quotes, cut at 80 bytes */
	snprintf(text, sizeof text,
	         "{\"op\":\"add\",\"node\":\"h1\",\"network\":\"n\",\"container\":\"c\",\"ifname\":"
	         "\"eth0\",\"wire\":true,\"labels\":{\"k\":\"a%.120s\"}}",
	         e_acute);
	rep = call_text(&h, CNI_CALL, &refused, text);
	assert_true(refused);
	json_decref(rep);
	assert_int_equal(h_alloc_count(&h), 0);
	h_close(&h);
}

static void test_ipam_only_and_reap(void **state)
{
	(void)state;
	struct h h;
	bool refused;
	open_store(&h);
	/* tabby-ipam under another plugin: an address, no endpoint, no profile */
	json_t *a = cni(&h, &refused,
	                "{\"op\":\"add\",\"node\":\"h1\",\"network\":\"br\",\"container\":\"k\","
	                "\"ifname\":\"eth0\",\"wire\":false,\"netns\":\"/n\"}");
	assert_false(refused);
	assert_null(json_object_get(a, "iface"));
	assert_null(get_res(&h, POLICY_KIND_PROFILE, "br"));
	/* repeated: the same address (calico-ipam alone would allocate another) */
	json_t *b = cni(&h, &refused,
	                "{\"op\":\"add\",\"node\":\"h1\",\"network\":\"br\",\"container\":\"k\","
	                "\"ifname\":\"eth0\",\"wire\":false,\"netns\":\"/n\"}");
	assert_true(json_equal(json_object_get(a, "ips"), json_object_get(b, "ips")));
	assert_int_equal(h_alloc_count(&h), 1);

	/* reap with a stale generation frees nothing */
	json_t *w = ok(&h, ADD, "net", "dead");
	char ip[64];
	snprintf(ip, sizeof ip, "%s",
	         json_string_value(json_array_get(json_object_get(w, "ips"), 0)));
	*strchr(ip, '/') = 0;
	struct ipam_alloc al;
	assert_true(h_lookup(&h, ip, &al));
	int64_t gen = al.gen;
	ipam_alloc_free(&al);
	json_t *r =
	    cni(&h, &refused,
	        "{\"op\":\"reap\",\"node\":\"h1\",\"handle\":\"net.dead\",\"items\":[{\"ip\":"
	        "\"%s\",\"gen\":%lld}]}",
	        ip, (long long)gen + 1);
	assert_true(refused);
	json_decref(r);
	r = cni(
	    &h, &refused,
	    "{\"op\":\"reap\",\"node\":\"h1\",\"handle\":\"net.dead\",\"items\":[{\"ip\":\"%s\","
	    "\"gen\":%lld}]}",
	    ip, (long long)gen);
	assert_false(refused);
	assert_int_equal(json_integer_value(json_object_get(r, "released")), 1);
	assert_int_equal(json_integer_value(json_object_get(r, "deleted")), 1);
	assert_null(get_res(&h, POLICY_KIND_WORKLOADENDPOINT, "h1/cni/dead/eth0"));
	assert_false(h_lookup(&h, ip, NULL));
	/* the name reservation went too: a new container with the same prefix gets it */
	json_t *n = ok(&h, ADD, "net", "dead");
	assert_string_equal(s(n, "iface"), s(w, "iface"));
	json_decref(a);
	json_decref(b);
	json_decref(w);
	json_decref(r);
	json_decref(n);
	h_close(&h);
}

static void test_pool_node_selector(void **state)
{
	(void)state;
	struct h h;
	bool refused;
	open_store(&h);
	struct ipam_pool p = h_pool("10.2.0.0/16", 26);
	strcpy(p.node_selector, "rack == 'a'");
	assert_int_equal(h_put_pools(&h, &p, 1), IPAM_OK);
	/* h1 has no labels yet: the pool is not for it */
	json_t *r = cni(&h, &refused,
	                "{\"op\":\"add\",\"node\":\"h1\",\"network\":\"n\",\"container\":\"c\","
	                "\"ifname\":\"eth0\",\"pools\":[\"10.2.0.0/16\"]}");
	assert_true(refused);
	assert_non_null(strstr(s(r, "message"), "node selector selects node h1"));
	json_decref(r);
	/* an explicit address ignores the selector, as Calico's AssignIP does, also with its pool
	 * named (the CNI path sends ipv4_pools with IP=) */
	r = cni(&h, &refused,
	        "{\"op\":\"add\",\"node\":\"h1\",\"network\":\"n\",\"container\":\"x\","
	        "\"ifname\":\"eth0\",\"pools\":[\"10.2.0.0/16\"],\"ips\":[\"10.2.3.4\"]}");
	if (refused) {
		fail_msg("explicit address refused: %s", s(r, "message"));
	}
	assert_string_equal(json_string_value(json_array_get(json_object_get(r, "ips"), 0)),
	                    "10.2.3.4/32");
	json_decref(r);
	/* without a pool named, the automatic choice skips it too */
	r = ok(&h, ADD, "n", "c");
	assert_int_equal(
	    strncmp(json_string_value(json_array_get(json_object_get(r, "ips"), 0)), "10.1.", 5),
	    0);
	json_decref(r);
	/* labelled rack=a, h1 may use it */
	res_ok(&h, "{\"op\":\"apply\",\"resources\":[{\"apiVersion\":\"v1\",\"kind\":\"node\","
	           "\"metadata\":{\"name\":\"h1\",\"labels\":{\"rack\":\"a\"}},\"spec\":{}}]}");
	r = cni(&h, &refused,
	        "{\"op\":\"add\",\"node\":\"h1\",\"network\":\"n\",\"container\":\"d\","
	        "\"ifname\":\"eth0\",\"pools\":[\"10.2.0.0/16\"]}");
	assert_false(refused);
	assert_int_equal(
	    strncmp(json_string_value(json_array_get(json_object_get(r, "ips"), 0)), "10.2.", 5),
	    0);
	json_decref(r);
	/* another node, unlabelled, still may not */
	r = cni(&h, &refused,
	        "{\"op\":\"add\",\"node\":\"h2\",\"network\":\"n\",\"container\":\"e\","
	        "\"ifname\":\"eth0\",\"pools\":[\"10.2.0.0/16\"]}");
	assert_true(refused);
	json_decref(r);
	h_close(&h);
}

static void test_review_cases(void **state)
{
	(void)state;
	struct h h;
	bool refused;
	open_store(&h);
	/* eth0 holds <net>.<ctr>; a DEL for an eth1 that was never added must not free it */
	json_t *a = ok(&h, ADD, "n", "c1");
	json_t *r = cni(&h, &refused,
	                "{\"op\":\"del\",\"node\":\"h1\",\"network\":\"n\",\"container\":\"c1\","
	                "\"ifname\":\"eth1\"}");
	assert_false(refused);
	assert_int_equal(json_integer_value(json_object_get(r, "released")), 0);
	assert_int_equal(h_handle_count(&h, "n.c1"), 1);
	json_decref(r);
	/* the same interface again from another namespace: refused, not silently re-pointed */
	r = cni(&h, &refused,
	        "{\"op\":\"add\",\"node\":\"h1\",\"network\":\"n\",\"container\":\"c1\","
	        "\"ifname\":\"eth0\",\"netns\":\"/var/run/netns/other\"}");
	assert_true(refused);
	assert_non_null(strstr(s(r, "message"), "DEL it first"));
	json_decref(r);
	/* a host removed: its addresses, records and endpoints go in one command */
	json_t *b = ok(&h, ADD, "n", "c2");
	r = cni(&h, &refused, "{\"op\":\"remove_node\",\"node\":\"h1\"}");
	assert_false(refused);
	assert_int_equal(json_integer_value(json_object_get(r, "released")), 2);
	assert_int_equal(json_integer_value(json_object_get(r, "deleted")), 2);
	assert_null(get_res(&h, POLICY_KIND_WORKLOADENDPOINT, "h1/cni/c1/eth0"));
	assert_null(get_res(&h, POLICY_KIND_WORKLOADENDPOINT, "h1/cni/c2/eth0"));
	assert_int_equal(h_alloc_count(&h), 0);
	/* and the Calico names are free for the next host of that name */
	json_t *c = ok(&h, ADD, "n", "c1");
	assert_string_equal(s(c, "iface"), s(a, "iface"));
	json_decref(r);
	json_decref(a);
	json_decref(b);
	json_decref(c);
	h_close(&h);
}

/* The outcome of the first resource of an accepted resource batch (text), into buf. */
static const char *res_outcome(struct h *h, const char *text, char *buf, size_t len)
{
	bool refused;
	json_t *rep = call_text(h, RES_CALL, &refused, text);
	if (refused) {
		fail_msg("refused: %s", s(rep, "message"));
	}
	snprintf(buf, len, "%s", s(json_array_get(json_object_get(rep, "results"), 0), "outcome"));
	json_decref(rep);
	return buf;
}

#define PROFILE_PROTO                                                                              \
	"{\"op\":\"apply\",\"resources\":[{\"apiVersion\":\"v1\",\"kind\":\"profile\","            \
	"\"metadata\":{\"name\":\"p\"},\"spec\":{\"ingress\":[{\"action\":\"allow\","              \
	"\"protocol\":%s,\"notProtocol\":%s}]}}]}"

#define POOL                                                                                       \
	"{\"op\":\"apply\",\"resources\":[{\"apiVersion\":\"v1\",\"kind\":\"ipPool\","             \
	"\"metadata\":{\"cidr\":\"10.5.0.0/16\"},\"spec\":%s}]}"

/* Applying what is stored already is "unchanged", however the file spells it. */
static void test_apply_unchanged(void **state)
{
	(void)state;
	struct h h;
	char text[1024], out[32];
	open_store(&h);
	/* A protocol by name or by its number in Calico's list is one rule. */
	snprintf(text, sizeof text, PROFILE_PROTO, "\"tcp\"", "\"udp\"");
	assert_string_equal(res_outcome(&h, text, out, sizeof out), "created");
	snprintf(text, sizeof text, PROFILE_PROTO, "6", "17");
	assert_string_equal(res_outcome(&h, text, out, sizeof out), "unchanged");
	snprintf(text, sizeof text, PROFILE_PROTO, "6", "47");
	assert_string_equal(res_outcome(&h, text, out, sizeof out), "updated");
	/* An ipPool: without a block size (the pool gets the default), and with IP-in-IP off. */
	snprintf(text, sizeof text, POOL, "{}");
	assert_string_equal(res_outcome(&h, text, out, sizeof out), "created");
	assert_string_equal(res_outcome(&h, text, out, sizeof out), "unchanged");
	snprintf(text, sizeof text, POOL, "{\"ipip\":{\"enabled\":false}}");
	assert_string_equal(res_outcome(&h, text, out, sizeof out), "unchanged");
	snprintf(text, sizeof text, POOL,
	         "{\"ipip\":{\"enabled\":false,\"mode\":\"cross-subnet\"},\"vxlan\":{\"enabled\":"
	         "false},\"blockSize\":26}");
	assert_string_equal(res_outcome(&h, text, out, sizeof out), "unchanged");
	snprintf(text, sizeof text, POOL, "{\"ipip\":{\"enabled\":true}}");
	assert_string_equal(res_outcome(&h, text, out, sizeof out), "updated");
	assert_string_equal(res_outcome(&h, text, out, sizeof out), "unchanged");
	h_close(&h);
}

/* A record that does not decode is in every replica alike: a command that needs it is refused
 * (and changes nothing), never a stopped replica, which every member would repeat at each replay
 * of the entry; and the operator can repair a resource by applying or deleting it. */
static void test_corrupt_records(void **state)
{
	(void)state;
	struct h h;
	bool refused;
	open_store(&h);
	json_t *a = ok(&h, ADD, "n", "c1");
	json_decref(a);

	/* the network's profile: an ADD that would check it is refused... */
	raw(&h, "res/profiles/n", "{", 1);
	json_t *r = cni(&h, &refused, ADD, "n", "c2");
	assert_true(refused);
	assert_string_equal(s(r, "error"), "internal");
	json_decref(r);
	/* ...create is refused, as is a compare-and-swap against any form... */
	const char *profile = "{\"apiVersion\":\"v1\",\"kind\":\"profile\",\"metadata\":{\"name\":"
	                      "\"n\"},\"spec\":{\"egress\":[{\"action\":\"allow\"}]}}";
	char text[1024];
	snprintf(text, sizeof text, "{\"op\":\"create\",\"resources\":[%s]}", profile);
	r = call_text(&h, RES_CALL, &refused, text);
	assert_true(refused);
	assert_string_equal(s(r, "error"), "exists");
	json_decref(r);
	snprintf(text, sizeof text, "{\"op\":\"apply\",\"resources\":[%s],\"expect\":[%s]}",
	         profile, profile);
	r = call_text(&h, RES_CALL, &refused, text);
	assert_true(refused);
	assert_string_equal(s(r, "error"), "conflict");
	json_decref(r);
	/* ...and apply overwrites it: the network works again */
	snprintf(text, sizeof text, "{\"op\":\"apply\",\"resources\":[%s]}", profile);
	res_ok(&h, text);
	json_t *p = get_res(&h, POLICY_KIND_PROFILE, "n");
	assert_non_null(p);
	json_decref(p);
	json_decref(ok(&h, ADD, "n", "c2"));
	/* delete removes one as well */
	raw(&h, "res/policies/broken", "[", 1);
	res_ok(&h, "{\"op\":\"delete\",\"resources\":[{\"kind\":\"policy\",\"key\":\"broken\"}]}");

	/* an IPAM handle record under a CNI DEL, through IPAM's own command */
	uint8_t key[IPAM_KEY_MAX];
	size_t kl = ipam_key_handle(key, "n.c1");
	char kz[IPAM_KEY_MAX + 1];
	memcpy(kz, key, kl);
	kz[kl] = '\0';
	assert_int_equal(strlen(kz), kl);
	raw(&h, kz, "\x01", 1);
	/* refused, with the state hash and revision unchanged (call_checked asserts both) */
	snprintf(text, sizeof text, DEL, "n", "c1");
	r = call_checked(&h, CNI_CALL, &refused, text, false);
	assert_true(refused);
	assert_string_equal(s(r, "error"), "internal");
	json_decref(r);
	h_close(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_add_writes_everything),
	    cmocka_unit_test(test_repeated_add_allocates_nothing),
	    cmocka_unit_test(test_host_names_never_collide),
	    cmocka_unit_test(test_prediction_matches),
	    cmocka_unit_test(test_refusals_change_nothing),
	    cmocka_unit_test(test_messages_cut_inside_a_character),
	    cmocka_unit_test(test_ipam_only_and_reap),
	    cmocka_unit_test(test_pool_node_selector),
	    cmocka_unit_test(test_review_cases),
	    cmocka_unit_test(test_corrupt_records),
	    cmocka_unit_test(test_apply_unchanged),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
