/*
 * libFuzzer target for the domain commands every replica applies: IPAM (ipam_apply, a binary
 * payload), v1 resource batches (resources_apply, JSON) and the CNI path (cni_apply, JSON),
 * registered as the agent registers them, over a real LMDB store.
 *
 * Why these deserve their own target: a log entry is applied by every member, and again at every
 * replay of the log. A handler that crashes or stops the replica on some payload takes the whole
 * cluster down with it, and keeps it down, because each member meets the entry again when it
 * restarts. The payloads come from the agents' HTTP handlers, which build them from what clients
 * send, but a handler must not rely on that: kv.h says a payload it cannot decode is a refusal.
 *
 * Each input starts from the same state (a snapshot restored before every run: pools, a node with
 * labels, a profile, a policy and a wired container), so a crash found here replays from its
 * file alone. The input is a list of commands:
 *
 *   [selector] [length, 2 bytes little-endian] [payload: length bytes, cut at the input's end]
 *
 * selector bits 0-1: 0 IPAM, 1 resources, 2 CNI, 3 a call id nobody registered, or with bit 3
 * set a raw record ("KEY\0VALUE"), written by an injecting handler that only this target
 * registers: the handlers must also survive records they did not write, as an older version's bug
 * would leave them. Bit 2: the command goes into the batch before it instead of a batch of its
 * own (the first always opens one), so commands of one raft entry see each other's writes.
 *
 * What must hold after every batch (any violation aborts, which libFuzzer reports as a crash):
 *   - kv_apply() succeeds: a handler never fails for its input, only for the host;
 *   - each command is taken (KV_R_OK) or refused (KV_R_REFUSED), except an unknown call id, which
 *     is KV_R_INVALID; a refusal alone in its batch changes neither the state hash nor the
 *     revision;
 *   - a refusal of the JSON handlers answers {"error": CODE, "message": TEXT}, any other answer is
 *     a JSON object; an IPAM answer decodes, and it is OK exactly when the command was taken;
 *   - unless the input wrote raw records: ipam_check() finds nothing wrong with the IPAM
 *     records, and every CNI record that holds a host-side name has that name's reservation,
 *     which names it, and there is no other reservation;
 *   - a second store fed the same batches reaches the same state hash with the same answers (a
 *     handler that read uninitialized memory or a pointer's value would split the replicas);
 *   - every event of an "ipam/" key decodes with ipam_change_decode(), as the agent's route sync
 *     decodes it, unless the input wrote raw records, which it only must survive.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <raft.h>

#include "agent/cni.h"
#include "agent/resources.h"
#include "ipam/ipam.h"
#include "store/kv.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define UNKNOWN_CALL 200
#define RAW_CALL     201 /* the injector: writes one raw record into KV_SPACE_DOMAIN */
#define MAX_CMDS     32
#define T0           1700000000000ULL

/* libFuzzer's entry points take no user pointer, so the stores and the starting state that
 * persist across inputs can only live here. */
static struct fuzz_state {
	char dir[2][32];
	struct kv *kv[2];
	void *base; /* the starting state, a kv snapshot */
	size_t base_len;
	bool verbose; /* FUZZ_DOMAIN_VERBOSE=1: print each command's answer (for writing seeds) */
} st;

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_domain: %s\n", what);
		abort();
	}
}

/* The injector (RAW_CALL): the domain keyspace is written only by domain commands, so a record no
 * handler would write can only come in through one. Payload "KEY\0VALUE". */
static int raw_apply(void *data, struct kv_tx *tx, struct kv_bytes payload, struct kv_call_out *out)
{
	(void)data;
	const uint8_t *nul = memchr(payload.data, 0, payload.len);
	size_t klen = nul ? (size_t)(nul - payload.data) : payload.len;
	struct kv_bytes key = {payload.data, klen};
	struct kv_bytes value = {payload.data + klen + (nul != NULL),
	                         payload.len - klen - (nul != NULL)};
	int rv = kv_tx_put(tx, KV_SPACE_DOMAIN, key, value);
	if (rv == KV_EMALFORMED) {
		out->refused = true;
		return KV_OK;
	}
	return rv;
}

static const char *const base_cmds[][2] = {
    /* pools of both families, one only for nodes labelled rack=a */
    {"r", "{\"op\":\"create\",\"resources\":["
          "{\"apiVersion\":\"v1\",\"kind\":\"ipPool\",\"metadata\":{\"cidr\":\"10.1.0.0/16\"},"
          "\"spec\":{\"ipip\":{\"enabled\":true,\"mode\":\"cross-subnet\"},\"nat-outgoing\":true}},"
          "{\"apiVersion\":\"v1\",\"kind\":\"ipPool\",\"metadata\":{\"cidr\":\"10.2.0.0/24\"},"
          "\"spec\":{\"nodeSelector\":\"rack == 'a'\"}},"
          "{\"apiVersion\":\"v1\",\"kind\":\"ipPool\",\"metadata\":{\"cidr\":\"fd00:1::/112\"},"
          "\"spec\":{}}]}"},
    {"r", "{\"op\":\"apply\",\"resources\":["
          "{\"apiVersion\":\"v1\",\"kind\":\"node\",\"metadata\":{\"name\":\"h1\","
          "\"labels\":{\"rack\":\"a\"}},\"spec\":{}},"
          "{\"apiVersion\":\"v1\",\"kind\":\"profile\",\"metadata\":{\"name\":\"db\","
          "\"labels\":{\"role\":\"db\"}},\"spec\":{\"ingress\":[{\"action\":\"allow\","
          "\"source\":{\"tag\":\"db\"}}],\"egress\":[{\"action\":\"allow\"}]}},"
          "{\"apiVersion\":\"v1\",\"kind\":\"policy\",\"metadata\":{\"name\":\"fe\"},"
          "\"spec\":{\"order\":10,\"selector\":\"role == 'frontend'\",\"ingress\":[{\"action\":"
          "\"allow\",\"protocol\":\"tcp\",\"destination\":{\"ports\":[80]}}],"
          "\"egress\":[{\"action\":\"allow\"}]}}]}"},
    {"c", "{\"op\":\"add\",\"node\":\"h1\",\"network\":\"net1\",\"container\":\"c0\","
          "\"ifname\":\"eth0\",\"netns\":\"/var/run/netns/c0\",\"ipv6\":true,"
          "\"labels\":{\"role\":\"frontend\"}}"},
};

static void open_stores(void)
{
	const struct kv_handler handlers[] = {
	    {IPAM_CALL, ipam_apply, (void *)&resources_ipam_hooks},
	    {RES_CALL, resources_apply, NULL},
	    {CNI_CALL, cni_apply, NULL},
	    {RAW_CALL, raw_apply, NULL}};
	struct kv_config cfg = {.map_size = 256u << 20,
	                        .history = 1000,
	                        .handlers = handlers,
	                        .n_handlers = sizeof handlers / sizeof handlers[0]};
	/* /dev/shm when there is one: every run rewrites the store twice, and the disk's page
	 * cache writeback is not what is under test. */
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	for (int i = 0; i < 2; i++) {
		snprintf(st.dir[i], sizeof st.dir[i], "%s/fuzz_domain.XXXXXX", base);
		check(mkdtemp(st.dir[i]) != NULL, "mkdtemp");
		check(kv_open(&st.kv[i], st.dir[i], &cfg) == KV_OK, "kv_open");
	}
}

static void cleanup(void)
{
	char path[64];
	for (int i = 0; i < 2; i++) {
		kv_close(st.kv[i]);
		snprintf(path, sizeof path, "%s/data.mdb", st.dir[i]);
		unlink(path);
		snprintf(path, sizeof path, "%s/lock.mdb", st.dir[i]);
		unlink(path);
		rmdir(st.dir[i]);
	}
	free(st.base);
}

/* Applies one batch of encoded commands to store i; the caller frees *out. */
static void apply(int i, struct kv_bytes *cmds, unsigned n, uint64_t time_ms,
                  struct kv_apply_out *out)
{
	void *batch;
	size_t len;
	check(kv_join_batch(cmds, n, time_ms, &batch, &len) == KV_OK, "kv_join_batch");
	check(kv_apply(st.kv[i], batch, len, out) == KV_OK, "kv_apply failed: a handler stopped");
	raft_free(batch);
}

/* The agent's route sync reads each change of an "ipam/" key with ipam_change_decode(): what
 * IPAM writes must decode, and anything else (raw records) must be refused, not crash it. */
static void check_ipam_events(const struct kv_apply_out *out, bool raw)
{
	for (unsigned i = 0; i < out->n_events; i++) {
		const struct kv_event *ev = &out->events[i];
		struct ipam_change c;
		if (ev->space != KV_SPACE_DOMAIN || ev->kv.key_len < 5 ||
		    memcmp(ev->kv.key, "ipam/", 5) != 0) {
			continue;
		}
		size_t vlen = ev->type == KV_EV_DELETE ? 0 : ev->kv.value_len;
		int rv = ipam_change_decode(ev->kv.key, ev->kv.key_len, ev->kv.value, vlen, &c);
		check(rv == 0 || rv == -EBADMSG || rv == -ENOMEM, "ipam_change_decode: odd result");
		check(raw || rv == 0, "ipam_change_decode refused a record IPAM wrote");
		check(rv != 0 || c.kind <= IPAM_CHANGE_HANDLE, "ipam_change_decode: odd kind");
	}
}

static void *encode_call(uint16_t call, const uint8_t *payload, size_t len, size_t *enc_len)
{
	struct kv_cmd cmd = {.op = {.type = KV_OP_CALL, .call = call, .value = {payload, len}}};
	void *enc;
	check(kv_encode_cmd(&cmd, &enc, enc_len) == KV_OK, "kv_encode_cmd");
	return enc;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct kv_snapshot *snap;
	(void)argc;
	(void)argv;
	const char *v = getenv("FUZZ_DOMAIN_VERBOSE");
	st.verbose = v != NULL && strcmp(v, "1") == 0;
	open_stores();
	atexit(cleanup);
	for (size_t k = 0; k < sizeof base_cmds / sizeof base_cmds[0]; k++) {
		const char *text = base_cmds[k][1];
		uint16_t call = base_cmds[k][0][0] == 'r' ? RES_CALL : CNI_CALL;
		struct kv_bytes enc;
		struct kv_apply_out out;
		size_t len;
		void *buf = encode_call(call, (const uint8_t *)text, strlen(text), &len);
		enc = (struct kv_bytes){buf, len};
		apply(0, &enc, 1, T0 + k, &out);
		if (out.results[0].status != KV_R_OK) {
			fprintf(stderr, "fuzz_domain: starting state command %zu refused: %.*s\n",
			        k, (int)out.results[0].reply_len,
			        (const char *)out.results[0].reply);
			abort();
		}
		kv_apply_out_free(&out);
		free(buf);
	}
	check(kv_snapshot_begin(st.kv[0], &snap) == KV_OK, "snapshot begin");
	check(kv_snapshot_write(snap, &st.base, &st.base_len) == KV_OK, "snapshot write");
	kv_snapshot_end(snap);
	return 0;
}

static void problem(void *arg, const char *line)
{
	(void)arg;
	fprintf(stderr, "fuzz_domain: ipam_check: %s\n", line);
}

/* The CNI name reservations, "cni-if/<node>/<iface>" -> "<container>/<ifname>", against the
 * records "cni/<node>/<container>/<ifname>" that hold an "iface". */
struct names {
	struct kv_tx *tx;
	unsigned records_with_iface, reservations;
	bool bad;
};

static int record_one(void *arg, struct kv_bytes key, struct kv_bytes value)
{
	struct names *n = arg;
	/* cni/<node>/<container>/<ifname>: node and container hold no '/' */
	char k[KV_KEY_MAX + 1], ikey[KV_KEY_MAX + 64];
	memcpy(k, key.data, key.len);
	k[key.len] = '\0';
	char *node = k + 4, *ctr = strchr(node, '/'), *ifn = ctr ? strchr(ctr + 1, '/') : NULL;
	json_t *rec = json_loadb((const char *)value.data, value.len, 0, NULL);
	const char *iface = json_string_value(json_object_get(rec, "iface"));
	if (ifn == NULL || !json_is_object(rec)) {
		fprintf(stderr, "fuzz_domain: malformed CNI record %s\n", k);
		n->bad = true;
	} else if (iface != NULL) {
		*ctr++ = '\0';
		*ifn++ = '\0';
		struct kv_bytes v;
		snprintf(ikey, sizeof ikey, "cni-if/%s/%s", node, iface);
		json_t *owner = NULL;
		if (kv_tx_get(n->tx, KV_SPACE_DOMAIN,
		              (struct kv_bytes){(const uint8_t *)ikey, strlen(ikey)},
		              &v) == KV_OK) {
			owner = json_loadb((const char *)v.data, v.len, JSON_DECODE_ANY, NULL);
		}
		char want[KV_KEY_MAX + 1];
		snprintf(want, sizeof want, "%s/%s", ctr, ifn);
		if (!json_is_string(owner) || strcmp(json_string_value(owner), want) != 0) {
			fprintf(stderr, "fuzz_domain: record %s/%s/%s holds %s, reserved for %s\n",
			        node, ctr, ifn, iface,
			        json_is_string(owner) ? json_string_value(owner) : "nobody");
			n->bad = true;
		}
		json_decref(owner);
		n->records_with_iface++;
	}
	json_decref(rec);
	return 0;
}

static int reservation_one(void *arg, struct kv_bytes key, struct kv_bytes value)
{
	(void)key;
	(void)value;
	struct names *n = arg;
	n->reservations++;
	return 0;
}

static void check_state(void)
{
	struct kv_tx *tx;
	unsigned problems = 0;
	check(kv_view_begin(st.kv[0], &tx) == KV_OK, "kv_view_begin");
	check(ipam_check(tx, problem, NULL, &problems) == 0, "ipam_check failed");
	check(problems == 0, "ipam_check found problems");
	struct names n = {.tx = tx};
	static const struct kv_bytes none = {NULL, 0};
	check(kv_tx_scan(tx, KV_SPACE_DOMAIN, (struct kv_bytes){(const uint8_t *)"cni/", 4}, none,
	                 record_one, &n) == KV_OK,
	      "scan of CNI records");
	check(kv_tx_scan(tx, KV_SPACE_DOMAIN, (struct kv_bytes){(const uint8_t *)"cni-if/", 7},
	                 none, reservation_one, &n) == KV_OK,
	      "scan of CNI name reservations");
	/* Each record with a name has its own reservation (checked above); as many reservations
	 * as such records means no reservation is left without its record. */
	check(!n.bad, "CNI records and name reservations disagree");
	check(n.reservations == n.records_with_iface, "a CNI name reservation without its record");
	kv_view_end(tx);
}

/* The answer of one command of store 0, against its status and its handler's contract. */
static void check_result(uint16_t call, const struct kv_result *r)
{
	if (call == RAW_CALL) {
		return;
	}
	if (call == UNKNOWN_CALL) {
		check(r->status == KV_R_INVALID && r->message != NULL,
		      "an unknown call id was not refused as invalid");
		return;
	}
	check(r->status == KV_R_OK || r->status == KV_R_REFUSED, "a command was neither taken nor "
	                                                         "refused");
	if (call == IPAM_CALL) {
		struct ipam_reply rep;
		check(ipam_decode_reply(r->reply, r->reply_len, &rep) == 0,
		      "an IPAM answer does not decode");
		check((rep.error == IPAM_OK) == (r->status == KV_R_OK),
		      "IPAM's answer and the command's status disagree");
		check(rep.error == IPAM_OK || (rep.message != NULL && rep.message[0] != '\0'),
		      "an IPAM refusal without a message");
		ipam_reply_free(&rep);
		return;
	}
	json_t *j = json_loadb((const char *)r->reply, r->reply_len, 0, NULL);
	check(json_is_object(j), "a JSON handler's answer is not a JSON object");
	if (r->status == KV_R_REFUSED) {
		const char *msg = json_string_value(json_object_get(j, "message"));
		check(json_is_string(json_object_get(j, "error")) && msg != NULL && msg[0] != '\0',
		      "a refusal without an error code and a message");
	}
	json_decref(j);
}

struct cmdlist {
	struct kv_bytes enc[MAX_CMDS];
	uint16_t call[MAX_CMDS];
	unsigned batch_start[MAX_CMDS + 1]; /* index of each batch's first command */
	unsigned n, n_batches;
	bool raw; /* a raw record was written: the state invariants need not hold */
};

static void parse_input(const uint8_t *data, size_t size, struct cmdlist *l)
{
	static const uint16_t calls[4] = {IPAM_CALL, RES_CALL, CNI_CALL, UNKNOWN_CALL};
	size_t off = 0;
	memset(l, 0, sizeof *l);
	while (off < size && l->n < MAX_CMDS) {
		uint8_t sel = data[off++];
		size_t len = 0;
		if (off < size) {
			len = data[off++];
		}
		if (off < size) {
			len |= (size_t)data[off++] << 8;
		}
		if (len > size - off) {
			len = size - off;
		}
		if (l->n == 0 || !(sel & 4)) {
			l->batch_start[l->n_batches++] = l->n;
		}
		size_t enc_len;
		uint16_t call = (sel & 3) == 3 && (sel & 8) ? RAW_CALL : calls[sel & 3];
		void *enc = encode_call(call, data + off, len, &enc_len);
		l->enc[l->n] = (struct kv_bytes){enc, enc_len};
		l->call[l->n] = call;
		l->raw |= call == RAW_CALL;
		l->n++;
		off += len;
	}
	l->batch_start[l->n_batches] = l->n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cmdlist l;
	parse_input(data, size, &l);
	for (int i = 0; i < 2; i++) {
		check(kv_restore(st.kv[i], st.base, st.base_len) == KV_OK, "restore of the start");
	}
	for (unsigned b = 0; b < l.n_batches; b++) {
		unsigned first = l.batch_start[b], n = l.batch_start[b + 1] - first;
		uint64_t time_ms = T0 + 1000 * (b + 1);
		uint64_t hash0, hash1;
		int64_t rev0 = kv_revision(st.kv[0]);
		struct kv_apply_out out[2];
		check(kv_hash(st.kv[0], &hash0) == KV_OK, "hash");
		apply(0, l.enc + first, n, time_ms, &out[0]);
		apply(1, l.enc + first, n, time_ms, &out[1]);
		check(out[0].n_results == n && out[1].n_results == n, "one result per command");
		for (unsigned k = 0; k < n; k++) {
			const struct kv_result *r = &out[0].results[k], *r1 = &out[1].results[k];
			check_result(l.call[first + k], r);
			if (st.verbose) {
				fprintf(stderr, "batch %u command %u: call %u status %u: %.*s\n", b,
				        k, l.call[first + k], r->status,
				        l.call[first + k] == IPAM_CALL ? 0 : (int)r->reply_len,
				        (const char *)r->reply);
			}
			check(r->status == r1->status && r->revision == r1->revision &&
			          r->reply_len == r1->reply_len &&
			          (r->reply_len == 0 ||
			           memcmp(r->reply, r1->reply, r->reply_len) == 0),
			      "the two replicas answered differently");
		}
		check(kv_hash(st.kv[0], &hash1) == KV_OK, "hash");
		if (n == 1 && out[0].results[0].status != KV_R_OK) {
			check(hash1 == hash0 && kv_revision(st.kv[0]) == rev0,
			      "a refused command changed the state");
		}
		uint64_t other;
		check(kv_hash(st.kv[1], &other) == KV_OK && other == hash1,
		      "the two replicas' states differ");
		check_ipam_events(&out[0], l.raw);
		kv_apply_out_free(&out[0]);
		kv_apply_out_free(&out[1]);
		if (!l.raw) {
			check_state();
		}
	}
	for (unsigned i = 0; i < l.n; i++) {
		free((void *)l.enc[i].data);
	}
	return 0;
}
