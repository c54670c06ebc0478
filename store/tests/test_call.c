/*
 * Domain commands (KV_OP_CALL): the handler contract of kv.h on a real LMDB store.
 *
 * The handler here runs a tiny script carried in the payload, one statement per line:
 *   put SPACE KEY VALUE | del SPACE KEY | get SPACE KEY | scan SPACE PREFIX [FROM] | rev | time
 *   | refuse | fail
 * and answers with one line per read. SPACE is u, s or d. It lets each test state exactly what
 * a domain module would do and check what the store made of it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <raft.h>

#include "store/kv.h"

#define T0   1700000000000ULL
#define CALL 7

struct fixture {
	char dir[64];
	struct kv *kv;
	unsigned calls; /* handler invocations */
};

struct reply {
	char *buf;
	size_t len;
};

static void reply_add(struct reply *r, const char *fmt, ...)
{
	char line[600];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	assert_true(n >= 0 && (size_t)n < sizeof line);
	r->buf = realloc(r->buf, r->len + (size_t)n + 1);
	assert_non_null(r->buf);
	memcpy(r->buf + r->len, line, (size_t)n + 1);
	r->len += (size_t)n;
}

static uint8_t space_of(char c)
{
	return c == 's' ? KV_SPACE_SYS : c == 'd' ? KV_SPACE_DOMAIN : KV_SPACE_USER;
}

static struct kv_bytes B(const char *s) {
	struct kv_bytes b = {(const uint8_t *)s, s != NULL ? strlen(s) : 0};
	return b;
}

static int
scan_cb(void *arg, struct kv_bytes key, struct kv_bytes value)
{
	struct reply *r = arg;
	reply_add(r, "%.*s=%.*s ", (int)key.len, (const char *)key.data, (int)value.len,
	          (const char *)value.data);
	return 0;
}

static int script(void *data, struct kv_tx *tx, struct kv_bytes payload, struct kv_call_out *out)
{
	struct fixture *f = data;
	struct reply r = {NULL, 0};
	char *text = strndup((const char *)payload.data, payload.len), *save = NULL, *line;
	int rv = KV_OK;

	assert_non_null(text);
	f->calls++;
	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char verb[16] = "", sp[4] = "", a[256] = "", b[256] = "";
		struct kv_bytes v;

		sscanf(line, "%15s %3s %255s %255s", verb, sp, a, b);
		if (strcmp(verb, "put") == 0) {
			assert_int_equal(kv_tx_put(tx, space_of(sp[0]), B(a), B(b)), KV_OK);
		} else if (strcmp(verb, "del") == 0) {
			assert_int_equal(kv_tx_del(tx, space_of(sp[0]), B(a)), KV_OK);
		} else if (strcmp(verb, "get") == 0) {
			rv = kv_tx_get(tx, space_of(sp[0]), B(a), &v);
			if (rv == KV_ENOTFOUND) {
				reply_add(&r, "-\n");
				rv = KV_OK;
			} else {
				assert_int_equal(rv, KV_OK);
				reply_add(&r, "%.*s\n", (int)v.len, (const char *)v.data);
			}
		} else if (strcmp(verb, "scan") == 0) {
			assert_int_equal(kv_tx_scan(tx, space_of(sp[0]), B(a), B(b), scan_cb, &r),
			                 KV_OK);
			reply_add(&r, "\n");
		} else if (strcmp(verb, "rev") == 0) {
			reply_add(&r, "%lld\n", (long long)kv_tx_revision(tx));
		} else if (strcmp(verb, "time") == 0) {
			reply_add(&r, "%llu\n", (unsigned long long)kv_tx_time_ms(tx));
		} else if (strcmp(verb, "refuse") == 0) {
			out->refused = true;
		} else if (strcmp(verb, "fail") == 0) {
			rv = KV_EIO;
		}
	}
	free(text);
	out->reply = (uint8_t *)r.buf;
	out->reply_len = r.len;
	return rv;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	struct kv_handler h = {.call = CALL, .fn = script, .data = f};
	struct kv_config cfg = {.handlers = &h, .n_handlers = 1};

	assert_non_null(f);
	strcpy(f->dir, "/tmp/test_call.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	assert_int_equal(kv_open(&f->kv, f->dir, &cfg), KV_OK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char path[128];

	kv_close(f->kv);
	snprintf(path, sizeof path, "%s/data.mdb", f->dir);
	unlink(path);
	snprintf(path, sizeof path, "%s/lock.mdb", f->dir);
	unlink(path);
	rmdir(f->dir);
	free(f);
	return 0;
}

static struct kv_op op_call(uint16_t call, const char *script_text)
{
	struct kv_op op = {.type = KV_OP_CALL, .call = call, .value = B(script_text)};
	return op;
}

static void apply_cmds(struct kv *kv, const struct kv_cmd *cmds, unsigned n,
                       struct kv_apply_out *out)
{
	void *buf;
	size_t len;
	assert_int_equal(kv_encode_batch(cmds, n, T0, &buf, &len), KV_OK);
	assert_int_equal(kv_apply(kv, buf, len, out), KV_OK);
	raft_free(buf);
}

static void apply_one(struct kv *kv, struct kv_op op, struct kv_apply_out *out)
{
	struct kv_cmd cmd = {.op = op};
	apply_cmds(kv, &cmd, 1, out);
}

static void assert_reply(const struct kv_result *r, const char *want)
{
	assert_int_equal(r->reply_len, strlen(want));
	if (r->reply_len > 0) {
		assert_memory_equal(r->reply, want, r->reply_len);
	}
}

/* Run a script that only reads and return its reply (caller frees). */
static char *query(struct kv *kv, const char *text)
{
	struct kv_apply_out out;
	char *s;
	apply_one(kv, op_call(CALL, text), &out);
	assert_int_equal(out.results[0].status, KV_R_OK);
	s = strndup((const char *)out.results[0].reply, out.results[0].reply_len);
	kv_apply_out_free(&out);
	return s;
}

/* ------------------------------------------------------------------------------------------ */

/* Writes take effect after the handler, all at one revision, which kv_tx_revision() announced;
 * reads inside the handler see the state before the command. */
static void test_writes_share_one_revision(void **state)
{
	struct fixture *f = *state;
	struct kv_apply_out out;
	char *s;

	apply_one(f->kv, op_call(CALL, "rev\nput d a 1\nput d b 2\nput u c 3\nget d a\ntime"),
	          &out);
	assert_int_equal(out.results[0].status, KV_R_OK);
	assert_reply(&out.results[0], "1\n-\n1700000000000\n");
	assert_int_equal(out.revision, 1);
	assert_int_equal(out.n_events, 3);
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(out.events[i].kv.mod_revision, 1);
	}
	assert_int_equal(out.events[0].space, KV_SPACE_DOMAIN);
	assert_int_equal(out.events[2].space, KV_SPACE_USER);
	kv_apply_out_free(&out);

	/* A later command sees them; a delete of an absent key changes nothing. */
	apply_one(f->kv, op_call(CALL, "rev\nget d a\nget u c\ndel d nothing"), &out);
	assert_reply(&out.results[0], "2\n1\n3\n");
	assert_int_equal(out.revision, 1); /* no write happened: no revision claimed */
	kv_apply_out_free(&out);

	apply_one(f->kv, op_call(CALL, "del d a\nput d a2 x"), &out);
	assert_int_equal(out.revision, 2);
	assert_int_equal(out.n_events, 2);
	assert_int_equal(out.events[0].type, KV_EV_DELETE);
	kv_apply_out_free(&out);
	s = query(f->kv, "scan d a\nscan d b b\nscan d b c");
	assert_string_equal(s, "a2=x \nb=2 \n\n");
	free(s);
}

/* A refused command changes nothing but still answers; the batch goes on. */
static void test_refused_changes_nothing(void **state)
{
	struct fixture *f = *state;
	struct kv_cmd cmds[3] = {
	    {.op = op_call(CALL, "put d k 1\nget d k\nrefuse")},
	    {.op = op_call(CALL, "put d k 2")},
	    {.op = op_call(CALL, "get d k")},
	};
	struct kv_apply_out out;
	uint64_t h0, h1;

	assert_int_equal(kv_hash(f->kv, &h0), KV_OK);
	apply_cmds(f->kv, cmds, 3, &out);
	assert_int_equal(out.results[0].status, KV_R_REFUSED);
	assert_reply(&out.results[0], "-\n");
	assert_int_equal(out.results[1].status, KV_R_OK);
	assert_int_equal(out.results[2].status, KV_R_OK);
	assert_reply(&out.results[2], "2\n");
	assert_int_equal(out.revision, 1);
	assert_int_equal(out.n_events, 1);
	kv_apply_out_free(&out);
	assert_int_equal(kv_hash(f->kv, &h1), KV_OK);
	assert_true(h0 != h1); /* the domain keyspace is part of the hash */
}

/* A handler that reports a host failure aborts the whole batch: nothing is applied. */
static void test_host_failure_applies_nothing(void **state)
{
	struct fixture *f = *state;
	struct kv_cmd cmds[2] = {
	    {.op = op_call(CALL, "put d k 1")},
	    {.op = op_call(CALL, "put d j 1\nfail")},
	};
	struct kv_apply_out out;
	void *buf;
	size_t len;
	char *s;

	assert_int_equal(kv_encode_batch(cmds, 2, T0, &buf, &len), KV_OK);
	assert_int_equal(kv_apply(f->kv, buf, len, &out), KV_EIO);
	raft_free(buf);
	assert_int_equal(kv_revision(f->kv), 0);
	s = query(f->kv, "get d k\nget d j");
	assert_string_equal(s, "-\n-\n");
	free(s);
}

/* A request id makes a domain command run once: the retry gets the remembered reply. */
static void test_call_dedup(void **state)
{
	struct fixture *f = *state;
	struct kv_cmd cmd = {.id = {.client = 9, .seq = 1}, .op = op_call(CALL, "rev\nput d n x")};
	struct kv_apply_out out;

	apply_cmds(f->kv, &cmd, 1, &out);
	assert_reply(&out.results[0], "1\n");
	assert_false(out.results[0].duplicate);
	kv_apply_out_free(&out);
	assert_int_equal(f->calls, 1);
	apply_cmds(f->kv, &cmd, 1, &out);
	assert_true(out.results[0].duplicate);
	assert_int_equal(out.results[0].status, KV_R_OK);
	assert_reply(&out.results[0], "1\n");
	assert_int_equal(out.revision, 1);
	kv_apply_out_free(&out);
	assert_int_equal(f->calls, 1);

	/* Refusals are remembered too. */
	cmd.id.seq = 2;
	cmd.op = op_call(CALL, "refuse\nrev");
	apply_cmds(f->kv, &cmd, 1, &out);
	kv_apply_out_free(&out);
	apply_cmds(f->kv, &cmd, 1, &out);
	assert_true(out.results[0].duplicate);
	assert_int_equal(out.results[0].status, KV_R_REFUSED);
	assert_reply(&out.results[0], "2\n");
	kv_apply_out_free(&out);
}

/* The domain keyspace is closed to raw writes; an unknown handler is an invalid command. */
static void test_domain_closed_to_raw_writes(void **state)
{
	struct fixture *f = *state;
	struct kv_op put = {
	    .type = KV_OP_PUT, .space = KV_SPACE_DOMAIN, .key = B("k"), .value = B("v")};
	struct kv_op del = {.type = KV_OP_DEL, .space = KV_SPACE_DOMAIN, .key = B("k")};
	struct kv_op get = {.type = KV_OP_GET, .space = KV_SPACE_DOMAIN, .key = B("k")};
	struct kv_op txn = {.type = KV_OP_TXN, .success = &put, .n_success = 1};
	struct kv_op txn_get = {.type = KV_OP_TXN, .success = &get, .n_success = 1};
	struct kv_apply_out out;
	void *enc;
	size_t len;
	struct kv_cmd cmd = {.op = put};

	/* The encoder refuses them outright; a forged encoding is refused by the apply. */
	assert_int_equal(kv_encode_cmd(&cmd, &enc, &len), KV_EMALFORMED);
	apply_one(f->kv, op_call(CALL, "put d k v"), &out);
	kv_apply_out_free(&out);
	{
		struct kv_op user_put = put;
		uint8_t *p;
		user_put.space = KV_SPACE_USER;
		cmd.op = user_put;
		assert_int_equal(kv_encode_cmd(&cmd, &enc, &len), KV_OK);
		p = enc;
		assert_int_equal(p[17], KV_SPACE_USER); /* client, seq, type, then the space */
		p[17] = KV_SPACE_DOMAIN;
		{
			struct kv_bytes one = {enc, len};
			void *batch;
			size_t blen;
			assert_int_equal(kv_join_batch(&one, 1, T0, &batch, &blen), KV_OK);
			assert_int_equal(kv_apply(f->kv, batch, blen, &out), KV_OK);
			raft_free(batch);
		}
		free(enc);
		assert_int_equal(out.results[0].status, KV_R_INVALID);
		assert_non_null(strstr(out.results[0].message, "domain"));
		kv_apply_out_free(&out);
	}
	cmd.op = del;
	assert_int_equal(kv_encode_cmd(&cmd, &enc, &len), KV_EMALFORMED);
	cmd.op = txn;
	assert_int_equal(kv_encode_cmd(&cmd, &enc, &len), KV_EMALFORMED);
	/* Reading it inside a transaction is fine. */
	apply_one(f->kv, txn_get, &out);
	assert_int_equal(out.results[0].status, KV_R_OK);
	assert_int_equal(out.results[0].ops[0].n_kvs, 1);
	kv_apply_out_free(&out);

	apply_one(f->kv, op_call(CALL + 1, "put d z z"), &out);
	assert_int_equal(out.results[0].status, KV_R_INVALID);
	assert_non_null(strstr(out.results[0].message, "no handler"));
	kv_apply_out_free(&out);
	cmd.op = op_call(0, "x");
	assert_int_equal(kv_encode_cmd(&cmd, &enc, &len), KV_EMALFORMED);
}

/* A view reads the committed state with the same calls and refuses writes. */
static void test_view(void **state)
{
	struct fixture *f = *state;
	struct kv_apply_out out;
	struct kv_tx *tx;
	struct kv_bytes v;
	struct reply r = {NULL, 0};

	apply_one(f->kv, op_call(CALL, "put d p/1 a\nput d p/2 b\nput d q c"), &out);
	kv_apply_out_free(&out);
	assert_int_equal(kv_view_begin(f->kv, &tx), KV_OK);
	assert_int_equal(kv_tx_revision(tx), 1);
	assert_int_equal(kv_tx_time_ms(tx), 0);
	assert_int_equal(kv_tx_get(tx, KV_SPACE_DOMAIN, B("q"), &v), KV_OK);
	assert_int_equal(v.len, 1);
	assert_int_equal(kv_tx_get(tx, KV_SPACE_USER, B("q"), &v), KV_ENOTFOUND);
	assert_int_equal(kv_tx_scan(tx, KV_SPACE_DOMAIN, B("p/"), B(""), scan_cb, &r), KV_OK);
	assert_string_equal(r.buf, "p/1=a p/2=b ");
	assert_int_equal(kv_tx_put(tx, KV_SPACE_DOMAIN, B("x"), B("y")), KV_EREADONLY);
	assert_int_equal(kv_tx_del(tx, KV_SPACE_DOMAIN, B("x")), KV_EREADONLY);
	kv_view_end(tx);
	free(r.buf);
}

/* Domain records travel in snapshots and show in the history like any other change. */
static void test_snapshot_and_history(void **state)
{
	struct fixture *f = *state;
	struct kv_apply_out out;
	struct kv_snapshot *snap;
	struct kv_event *ev;
	unsigned n;
	void *buf;
	size_t len;
	uint64_t h;
	char *s;

	apply_one(f->kv, op_call(CALL, "put d k1 v1\nput d k2 v2"), &out);
	kv_apply_out_free(&out);
	assert_int_equal(kv_history(f->kv, 0, KV_SPACE_DOMAIN, B("k"), true, 0, &ev, &n), KV_OK);
	assert_int_equal(n, 2);
	assert_int_equal(ev[1].space, KV_SPACE_DOMAIN);
	kv_events_free(ev, n);
	assert_int_equal(kv_hash(f->kv, &h), KV_OK);
	assert_int_equal(kv_snapshot_begin(f->kv, &snap), KV_OK);
	assert_int_equal(kv_snapshot_write(snap, &buf, &len), KV_OK);
	kv_snapshot_end(snap);
	apply_one(f->kv, op_call(CALL, "del d k1"), &out);
	kv_apply_out_free(&out);
	assert_int_equal(kv_restore(f->kv, buf, len), KV_OK);
	free(buf);
	{
		uint64_t h2;
		assert_int_equal(kv_hash(f->kv, &h2), KV_OK);
		assert_true(h == h2);
	}
	s = query(f->kv, "get d k1\nget d k2");
	assert_string_equal(s, "v1\nv2\n");
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_writes_share_one_revision, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refused_changes_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_host_failure_applies_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_call_dedup, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_domain_closed_to_raw_writes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_view, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_snapshot_and_history, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
