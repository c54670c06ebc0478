/*
 * The state machine against real LMDB in a temporary directory: revisions, conditional writes,
 * deletes, transactions, history and compaction, de-duplication and its expiry, the state hash,
 * snapshots, malformed input, the codec, a large batch, map growth and a file system that fills up.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <raft.h>

#include "store/kv.h"
#include "store/kv_internal.h"

#define T0 1700000000000ULL /* a fixed leader time for every batch unless a test moves it */

/* ------------------------------------------------------------------------------------------ */
/* Fixture                                                                                     */

struct store {
	char dir[64];
	struct kv *kv;
};

struct fixture {
	struct store a, b;
};

static void store_open(struct store *s, int64_t history, size_t map_size)
{
	struct kv_config cfg = {.map_size = map_size, .history = history};
	strcpy(s->dir, "/tmp/test_kv.XXXXXX");
	assert_non_null(mkdtemp(s->dir));
	assert_int_equal(kv_open(&s->kv, s->dir, &cfg), KV_OK);
}

static void store_remove(struct store *s)
{
	char path[128];
	if (s->kv == NULL) {
		return;
	}
	kv_close(s->kv);
	s->kv = NULL;
	snprintf(path, sizeof path, "%s/data.mdb", s->dir);
	unlink(path);
	snprintf(path, sizeof path, "%s/lock.mdb", s->dir);
	unlink(path);
	rmdir(s->dir);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	assert_non_null(f);
	store_open(&f->a, 0, 0);
	store_open(&f->b, 0, 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	store_remove(&f->a);
	store_remove(&f->b);
	free(f);
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Building commands                                                                           */

static struct kv_bytes B(const char *s) {
	struct kv_bytes b = {(const uint8_t *)s, s != NULL ? strlen(s) : 0};
	return b;
}

static struct kv_op
op_put(const char *key, const char *value)
{
	struct kv_op op = {.type = KV_OP_PUT, .key = B(key), .value = B(value)};
	return op;
}

static struct kv_op op_put_if(const char *key, const char *value, int64_t prev)
{
	struct kv_op op = op_put(key, value);
	op.has_prev = true;
	op.prev_revision = prev;
	return op;
}

static struct kv_op op_del(const char *key, bool prefix)
{
	struct kv_op op = {.type = KV_OP_DEL, .key = B(key), .prefix = prefix};
	return op;
}

static struct kv_op op_get(const char *key, bool prefix, int64_t limit)
{
	struct kv_op op = {.type = KV_OP_GET, .key = B(key), .prefix = prefix, .limit = limit};
	return op;
}

static struct kv_op op_simple(uint8_t type)
{
	struct kv_op op = {.type = type};
	return op;
}

static void apply_batch(struct kv *kv, const struct kv_cmd *cmds, unsigned n, uint64_t time_ms,
                        struct kv_apply_out *out)
{
	void *buf;
	size_t len;
	assert_int_equal(kv_encode_batch(cmds, n, time_ms, &buf, &len), KV_OK);
	assert_int_equal(kv_apply(kv, buf, len, out), KV_OK);
	raft_free(buf);
}

/* Apply one command at T0 without a request id; returns its result in *out. */
static void apply_op(struct kv *kv, struct kv_op op, struct kv_apply_out *out)
{
	struct kv_cmd cmd = {.op = op};
	apply_batch(kv, &cmd, 1, T0, out);
	assert_int_equal(out->n_results, 1);
}

/* Apply one command and check it succeeded; returns the store revision after it. */
static int64_t apply_ok(struct kv *kv, struct kv_op op)
{
	struct kv_apply_out out;
	int64_t rev;
	apply_op(kv, op, &out);
	assert_int_equal(out.results[0].status, KV_R_OK);
	rev = out.revision;
	kv_apply_out_free(&out);
	return rev;
}

static void range(struct kv *kv, uint8_t space, const char *key, bool prefix, int64_t limit,
                  struct kv_kv **kvs, unsigned *n, bool *more)
{
	int64_t rev;
	assert_int_equal(kv_range(kv, space, B(key), prefix, limit, kvs, n, more, &rev), KV_OK);
	assert_int_equal(rev, kv_revision(kv));
}

static void assert_kv(const struct kv_kv *kv, const char *key, const char *value, int64_t create,
                      int64_t mod, int64_t version)
{
	assert_int_equal(kv->key_len, strlen(key));
	assert_memory_equal(kv->key, key, strlen(key));
	assert_int_equal(kv->value_len, strlen(value));
	assert_non_null(kv->value);
	if (strlen(value) > 0) {
		assert_memory_equal(kv->value, value, strlen(value));
	}
	assert_int_equal(kv->create_revision, create);
	assert_int_equal(kv->mod_revision, mod);
	assert_int_equal(kv->version, version);
}

static void assert_get(struct kv *kv, const char *key, const char *value, int64_t create,
                       int64_t mod, int64_t version)
{
	struct kv_kv *kvs;
	unsigned n;
	bool more;
	range(kv, KV_SPACE_USER, key, false, 0, &kvs, &n, &more);
	assert_int_equal(n, 1);
	assert_kv(&kvs[0], key, value, create, mod, version);
	kv_kvs_free(kvs, n);
}

static void assert_absent(struct kv *kv, uint8_t space, const char *key)
{
	struct kv_kv *kvs;
	unsigned n;
	bool more;
	range(kv, space, key, false, 0, &kvs, &n, &more);
	assert_int_equal(n, 0);
	kv_kvs_free(kvs, n);
}

static uint64_t hash_of(struct kv *kv)
{
	uint64_t h;
	assert_int_equal(kv_hash(kv, &h), KV_OK);
	return h;
}

static void snapshot(struct kv *kv, void **buf, size_t *len)
{
	struct kv_snapshot *snap;
	assert_int_equal(kv_snapshot_begin(kv, &snap), KV_OK);
	assert_int_equal(kv_snapshot_write(snap, buf, len), KV_OK);
	kv_snapshot_end(snap);
}

/* Records per database in a snapshot (meta, user, sys, history, dedup, dedup expiry), read from
 * the documented snapshot format: a test's window on what pruning left behind. */
/* The databases of a snapshot, in its order (kv.c). */
enum { SNAP_META, SNAP_USER, SNAP_SYS, SNAP_DOMAIN, SNAP_HIST, SNAP_DEDUP, SNAP_DEXP, SNAP_DBS };

static void snapshot_counts(struct kv *kv, uint64_t counts[SNAP_DBS])
{
	void *buf;
	size_t len;
	struct kv_reader r;
	snapshot(kv, &buf, &len);
	r.p = buf;
	r.left = len - 8;
	assert_true(r.left >= 8);
	r.p += 8;
	r.left -= 8;
	for (int db = 0; db < SNAP_DBS; db++) {
		assert_true(kvr_u64(&r, &counts[db]));
		for (uint64_t i = 0; i < counts[db]; i++) {
			struct kv_bytes k, v;
			assert_true(kvr_bytes(&r, &k));
			assert_true(kvr_bytes(&r, &v));
		}
	}
	assert_int_equal(r.left, 0);
	free(buf);
}

/* ------------------------------------------------------------------------------------------ */
/* Put, get, range                                                                             */

static void test_put_get_range(void **state)
{
	struct fixture *f = *state;
	struct kv *kv = f->a.kv;
	struct kv_apply_out out;
	struct kv_kv *kvs;
	unsigned n;
	bool more;

	assert_int_equal(kv_revision(kv), 0);
	assert_int_equal(kv_compact_revision(kv), 1);

	apply_op(kv, op_put("a", "1"), &out);
	assert_int_equal(out.results[0].status, KV_R_OK);
	assert_int_equal(out.results[0].revision, 1);
	assert_false(out.results[0].duplicate);
	assert_int_equal(out.results[0].n_ops, 1);
	assert_int_equal(out.results[0].ops[0].type, KV_OP_PUT);
	assert_int_equal(out.results[0].ops[0].revision, 1);
	assert_int_equal(out.revision, 1);
	assert_int_equal(out.n_events, 1);
	assert_int_equal(out.events[0].type, KV_EV_PUT);
	assert_int_equal(out.events[0].space, KV_SPACE_USER);
	assert_kv(&out.events[0].kv, "a", "1", 1, 1, 1);
	kv_apply_out_free(&out);

	assert_int_equal(apply_ok(kv, op_put("ab", "2")), 2);
	assert_int_equal(apply_ok(kv, op_put("abc", "3")), 3);
	assert_int_equal(apply_ok(kv, op_put("b", "")), 4);
	assert_int_equal(kv_revision(kv), 4);

	assert_get(kv, "a", "1", 1, 1, 1);
	assert_get(kv, "b", "", 4, 4, 1);
	assert_absent(kv, KV_SPACE_USER, "zz");
	assert_absent(kv, KV_SPACE_SYS, "a");

	range(kv, KV_SPACE_USER, "a", true, 0, &kvs, &n, &more);
	assert_int_equal(n, 3);
	assert_false(more);
	assert_kv(&kvs[0], "a", "1", 1, 1, 1);
	assert_kv(&kvs[1], "ab", "2", 2, 2, 1);
	assert_kv(&kvs[2], "abc", "3", 3, 3, 1);
	kv_kvs_free(kvs, n);

	range(kv, KV_SPACE_USER, "a", true, 2, &kvs, &n, &more);
	assert_int_equal(n, 2);
	assert_true(more);
	assert_kv(&kvs[1], "ab", "2", 2, 2, 1);
	kv_kvs_free(kvs, n);

	range(kv, KV_SPACE_USER, "a", true, 3, &kvs, &n, &more);
	assert_int_equal(n, 3);
	assert_false(more);
	kv_kvs_free(kvs, n);

	range(kv, KV_SPACE_USER, "", true, 0, &kvs, &n, &more);
	assert_int_equal(n, 4);
	assert_kv(&kvs[3], "b", "", 4, 4, 1);
	kv_kvs_free(kvs, n);

	/* The keyspaces are separate. */
	{
		struct kv_op op = op_put("a", "sys");
		op.space = KV_SPACE_SYS;
		assert_int_equal(apply_ok(kv, op), 5);
	}
	range(kv, KV_SPACE_SYS, "", true, 0, &kvs, &n, &more);
	assert_int_equal(n, 1);
	assert_kv(&kvs[0], "a", "sys", 5, 5, 1);
	kv_kvs_free(kvs, n);
	assert_get(kv, "a", "1", 1, 1, 1);

	/* Bad arguments. */
	{
		int64_t rev;
		assert_int_equal(kv_range(kv, 3, B("a"), false, 0, &kvs, &n, &more, &rev),
		                 KV_EMALFORMED);
		assert_int_equal(kv_range(kv, 0, B("a"), false, -1, &kvs, &n, &more, &rev),
		                 KV_EMALFORMED);
	}
}

static void test_conditional_put(void **state)
{
	struct fixture *f = *state;
	struct kv *kv = f->a.kv;
	struct kv_apply_out out;

	/* prev_revision 0 means "only if absent". */
	assert_int_equal(apply_ok(kv, op_put_if("k", "v1", 0)), 1);

	apply_op(kv, op_put_if("k", "v2", 0), &out);
	assert_int_equal(out.results[0].status, KV_R_COND_FAILED);
	assert_int_equal(out.results[0].revision, 1);
	assert_int_equal(out.results[0].ops[0].revision, 1); /* the key's current mod revision */
	assert_int_equal(out.n_events, 0);
	assert_int_equal(out.revision, 1);
	kv_apply_out_free(&out);
	assert_int_equal(kv_revision(kv), 1);
	assert_get(kv, "k", "v1", 1, 1, 1);

	assert_int_equal(apply_ok(kv, op_put_if("k", "v2", 1)), 2);
	assert_get(kv, "k", "v2", 1, 2, 2);

	apply_op(kv, op_put_if("absent", "x", 5), &out);
	assert_int_equal(out.results[0].status, KV_R_COND_FAILED);
	assert_int_equal(out.results[0].ops[0].revision, 0);
	kv_apply_out_free(&out);
	assert_absent(kv, KV_SPACE_USER, "absent");
	assert_int_equal(kv_revision(kv), 2);
}

static void test_delete(void **state)
{
	struct fixture *f = *state;
	struct kv *kv = f->a.kv;
	struct kv_apply_out out;
	struct kv_kv *kvs;
	unsigned n;
	bool more;

	apply_ok(kv, op_put("a", "1"));
	apply_ok(kv, op_put("b", "2"));
	apply_ok(kv, op_put("p/1", "x"));
	apply_ok(kv, op_put("p/2", "y"));
	assert_int_equal(apply_ok(kv, op_put("p/3", "z")), 5);

	apply_op(kv, op_del("a", false), &out);
	assert_int_equal(out.results[0].status, KV_R_OK);
	assert_int_equal(out.results[0].ops[0].type, KV_OP_DEL);
	assert_int_equal(out.results[0].ops[0].deleted, 1);
	assert_int_equal(out.results[0].ops[0].revision, 6);
	assert_int_equal(out.revision, 6);
	assert_int_equal(out.n_events, 1);
	assert_int_equal(out.events[0].type, KV_EV_DELETE);
	assert_kv(&out.events[0].kv, "a", "", 0, 6, 0);
	kv_apply_out_free(&out);

	/* Deleting nothing is no change. */
	apply_op(kv, op_del("a", false), &out);
	assert_int_equal(out.results[0].ops[0].deleted, 0);
	assert_int_equal(out.results[0].ops[0].revision, 6);
	assert_int_equal(out.results[0].revision, 6);
	assert_int_equal(out.n_events, 0);
	kv_apply_out_free(&out);
	assert_int_equal(kv_revision(kv), 6);

	apply_op(kv, op_del("p/", true), &out);
	assert_int_equal(out.results[0].ops[0].deleted, 3);
	assert_int_equal(out.revision, 7);
	assert_int_equal(out.n_events, 3);
	assert_kv(&out.events[0].kv, "p/1", "", 0, 7, 0);
	assert_kv(&out.events[1].kv, "p/2", "", 0, 7, 0);
	assert_kv(&out.events[2].kv, "p/3", "", 0, 7, 0);
	kv_apply_out_free(&out);

	range(kv, KV_SPACE_USER, "", true, 0, &kvs, &n, &more);
	assert_int_equal(n, 1);
	assert_kv(&kvs[0], "b", "2", 2, 2, 1);
	kv_kvs_free(kvs, n);

	/* A prefix delete touches only its keyspace. */
	{
		struct kv_op op = op_del("", true);
		op.space = KV_SPACE_SYS;
		apply_op(kv, op, &out);
		assert_int_equal(out.results[0].ops[0].deleted, 0);
		assert_int_equal(out.revision, 7);
		kv_apply_out_free(&out);
	}
	assert_int_equal(apply_ok(kv, op_del("", true)), 8);
	assert_absent(kv, KV_SPACE_USER, "b");
}

/* A prefix delete across many LMDB pages removes exactly the prefixed keys. */
static void test_delete_prefix_many(void **state)
{
	struct fixture *f = *state;
	struct kv *kv = f->a.kv;
	struct kv_cmd *cmds = calloc(3000, sizeof *cmds);
	char(*keys)[16] = calloc(3000, 16);
	struct kv_apply_out out;
	struct kv_kv *kvs;
	unsigned n;
	bool more;

	assert_non_null(cmds);
	assert_non_null(keys);
	for (int i = 0; i < 3000; i++) {
		snprintf(keys[i], 16, "%c/%05d", "abc"[i % 3], i);
		cmds[i].op = op_put(keys[i], "some value that takes space in the page");
	}
	apply_batch(kv, cmds, 3000, T0, &out);
	kv_apply_out_free(&out);
	apply_op(kv, op_del("b/", true), &out);
	assert_int_equal(out.results[0].ops[0].deleted, 1000);
	assert_int_equal(out.n_events, 1000);
	kv_apply_out_free(&out);
	range(kv, KV_SPACE_USER, "", true, 0, &kvs, &n, &more);
	assert_int_equal(n, 2000);
	for (unsigned i = 0; i < n; i++) {
		assert_true(kvs[i].key[0] == (i < 1000 ? 'a' : 'c'));
	}
	kv_kvs_free(kvs, n);
	free(cmds);
	free(keys);
}

/* ------------------------------------------------------------------------------------------ */
/* Transactions                                                                                */

static struct kv_cmp cmp_value(const char *key, uint8_t result, const char *value)
{
	struct kv_cmp c = {
	    .key = B(key), .target = KV_CMP_VALUE, .result = result, .value = B(value)};
	return c;
}

static struct kv_cmp cmp_num(const char *key, uint8_t target, uint8_t result, int64_t number)
{
	struct kv_cmp c = {.key = B(key), .target = target, .result = result, .number = number};
	return c;
}

/* Run a TXN whose success branch is a GET of the compared key; return whether it succeeded. */
static bool txn_holds(struct kv *kv, struct kv_cmp c)
{
	struct kv_op get = op_get("k1", false, 0);
	struct kv_op txn = {
	    .type = KV_OP_TXN, .cmps = &c, .n_cmps = 1, .success = &get, .n_success = 1};
	struct kv_apply_out out;
	int64_t rev = kv_revision(kv);
	bool ok;

	apply_op(kv, txn, &out);
	assert_int_equal(out.results[0].status, KV_R_OK);
	ok = out.results[0].succeeded;
	assert_int_equal(out.results[0].n_ops, ok ? 1 : 0);
	assert_int_equal(out.revision, rev);
	kv_apply_out_free(&out);
	return ok;
}

static void test_txn_compares(void **state)
{
	struct fixture *f = *state;
	struct kv *kv = f->a.kv;
	static const struct {
		uint8_t target, result;
		const char *value;
		int64_t number;
		bool expect;
	} cases[] = {
	    {KV_CMP_VALUE, KV_CMP_EQUAL, "v1b", 0, true},
	    {KV_CMP_VALUE, KV_CMP_EQUAL, "v1", 0, false},
	    {KV_CMP_VALUE, KV_CMP_NOT_EQUAL, "x", 0, true},
	    {KV_CMP_VALUE, KV_CMP_NOT_EQUAL, "v1b", 0, false},
	    {KV_CMP_VALUE, KV_CMP_LESS, "v2", 0, true},
	    {KV_CMP_VALUE, KV_CMP_LESS, "v1", 0, false},
	    {KV_CMP_VALUE, KV_CMP_LESS, "v1bb", 0, true}, /* a proper prefix sorts first */
	    {KV_CMP_VALUE, KV_CMP_GREATER, "v1", 0, true},
	    {KV_CMP_VALUE, KV_CMP_GREATER, "w", 0, false},
	    {KV_CMP_MOD_REVISION, KV_CMP_EQUAL, NULL, 3, true},
	    {KV_CMP_MOD_REVISION, KV_CMP_EQUAL, NULL, 1, false},
	    {KV_CMP_MOD_REVISION, KV_CMP_NOT_EQUAL, NULL, 1, true},
	    {KV_CMP_MOD_REVISION, KV_CMP_NOT_EQUAL, NULL, 3, false},
	    {KV_CMP_MOD_REVISION, KV_CMP_LESS, NULL, 4, true},
	    {KV_CMP_MOD_REVISION, KV_CMP_LESS, NULL, 3, false},
	    {KV_CMP_MOD_REVISION, KV_CMP_GREATER, NULL, 2, true},
	    {KV_CMP_MOD_REVISION, KV_CMP_GREATER, NULL, 3, false},
	    {KV_CMP_CREATE_REVISION, KV_CMP_EQUAL, NULL, 1, true},
	    {KV_CMP_CREATE_REVISION, KV_CMP_EQUAL, NULL, 3, false},
	    {KV_CMP_CREATE_REVISION, KV_CMP_NOT_EQUAL, NULL, 3, true},
	    {KV_CMP_CREATE_REVISION, KV_CMP_LESS, NULL, 2, true},
	    {KV_CMP_CREATE_REVISION, KV_CMP_GREATER, NULL, 1, false},
	    {KV_CMP_VERSION, KV_CMP_EQUAL, NULL, 2, true},
	    {KV_CMP_VERSION, KV_CMP_EQUAL, NULL, 1, false},
	    {KV_CMP_VERSION, KV_CMP_NOT_EQUAL, NULL, 2, false},
	    {KV_CMP_VERSION, KV_CMP_LESS, NULL, 3, true},
	    {KV_CMP_VERSION, KV_CMP_GREATER, NULL, 1, true},
	    {KV_CMP_VERSION, KV_CMP_GREATER, NULL, 2, false},
	};

	apply_ok(kv, op_put("k1", "v1"));
	apply_ok(kv, op_put("k2", "v2"));
	assert_int_equal(apply_ok(kv, op_put("k1", "v1b")), 3);

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct kv_cmp c =
		    cases[i].target == KV_CMP_VALUE
		        ? cmp_value("k1", cases[i].result, cases[i].value)
		        : cmp_num("k1", cases[i].target, cases[i].result, cases[i].number);
		if (txn_holds(kv, c) != cases[i].expect) {
			fail_msg("case %zu", i);
		}
	}

	/* A missing key: no value at all, revisions and version 0. */
	assert_false(txn_holds(kv, cmp_value("nope", KV_CMP_EQUAL, "")));
	assert_true(txn_holds(kv, cmp_value("nope", KV_CMP_NOT_EQUAL, "")));
	assert_false(txn_holds(kv, cmp_value("nope", KV_CMP_LESS, "a")));
	assert_false(txn_holds(kv, cmp_value("nope", KV_CMP_GREATER, "")));
	assert_true(txn_holds(kv, cmp_num("nope", KV_CMP_MOD_REVISION, KV_CMP_EQUAL, 0)));
	assert_true(txn_holds(kv, cmp_num("nope", KV_CMP_CREATE_REVISION, KV_CMP_EQUAL, 0)));
	assert_true(txn_holds(kv, cmp_num("nope", KV_CMP_VERSION, KV_CMP_LESS, 1)));

	/* Every compare must hold. */
	{
		struct kv_cmp two[2] = {cmp_num("k1", KV_CMP_VERSION, KV_CMP_EQUAL, 2),
		                        cmp_num("k2", KV_CMP_VERSION, KV_CMP_EQUAL, 2)};
		struct kv_op txn = {.type = KV_OP_TXN, .cmps = two, .n_cmps = 2};
		struct kv_apply_out out;
		apply_op(kv, txn, &out);
		assert_false(out.results[0].succeeded);
		kv_apply_out_free(&out);
		two[1].number = 1;
		apply_op(kv, txn, &out);
		assert_true(out.results[0].succeeded);
		kv_apply_out_free(&out);
	}
}

static void test_txn_branches(void **state)
{
	struct fixture *f = *state;
	struct kv *kv = f->a.kv;
	struct kv_apply_out out;
	const struct kv_op_result *o;

	apply_ok(kv, op_put("k1", "v1"));
	assert_int_equal(apply_ok(kv, op_put("k2", "v2")), 2);

	/* Success: several writes are one revision, and a GET sees the writes before it. */
	{
		struct kv_cmp c = cmp_value("k1", KV_CMP_EQUAL, "v1");
		struct kv_op succ[] = {op_put("k3", "v3"), op_put("k1", "v1c"),
		                       op_get("k", true, 0), op_del("k2", false),
		                       op_get("k", true, 1)};
		struct kv_op fail = op_put("never", "x");
		struct kv_op txn = {.type = KV_OP_TXN,
		                    .cmps = &c,
		                    .n_cmps = 1,
		                    .success = succ,
		                    .n_success = 5,
		                    .failure = &fail,
		                    .n_failure = 1};
		apply_op(kv, txn, &out);
	}
	assert_int_equal(out.results[0].status, KV_R_OK);
	assert_true(out.results[0].succeeded);
	assert_int_equal(out.results[0].revision, 3);
	assert_int_equal(out.results[0].n_ops, 5);
	o = out.results[0].ops;
	assert_int_equal(o[0].type, KV_OP_PUT);
	assert_int_equal(o[0].revision, 3);
	assert_int_equal(o[1].revision, 3);
	assert_int_equal(o[2].type, KV_OP_GET);
	assert_int_equal(o[2].revision, 3);
	assert_int_equal(o[2].n_kvs, 3);
	assert_false(o[2].more);
	assert_kv(&o[2].kvs[0], "k1", "v1c", 1, 3, 2);
	assert_kv(&o[2].kvs[1], "k2", "v2", 2, 2, 1);
	assert_kv(&o[2].kvs[2], "k3", "v3", 3, 3, 1);
	assert_int_equal(o[3].type, KV_OP_DEL);
	assert_int_equal(o[3].deleted, 1);
	assert_int_equal(o[3].revision, 3);
	assert_int_equal(o[4].n_kvs, 1); /* k1 and k3 are left: the limit cuts */
	assert_true(o[4].more);
	assert_int_equal(out.n_events, 3);
	assert_int_equal(out.events[0].type, KV_EV_PUT);
	assert_kv(&out.events[1].kv, "k1", "v1c", 1, 3, 2);
	assert_int_equal(out.events[2].type, KV_EV_DELETE);
	for (unsigned i = 0; i < out.n_events; i++) {
		assert_int_equal(out.events[i].kv.mod_revision, 3);
	}
	kv_apply_out_free(&out);
	assert_int_equal(kv_revision(kv), 3);
	assert_absent(kv, KV_SPACE_USER, "never");
	assert_absent(kv, KV_SPACE_USER, "k2");

	/* Failure: the other branch runs. */
	{
		struct kv_cmp c = cmp_value("k1", KV_CMP_EQUAL, "v1");
		struct kv_op succ = op_put("never", "x");
		struct kv_op fail[] = {op_put("k5", "v5"), op_get("k5", false, 0)};
		struct kv_op txn = {.type = KV_OP_TXN,
		                    .cmps = &c,
		                    .n_cmps = 1,
		                    .success = &succ,
		                    .n_success = 1,
		                    .failure = fail,
		                    .n_failure = 2};
		apply_op(kv, txn, &out);
	}
	assert_int_equal(out.results[0].status, KV_R_OK);
	assert_false(out.results[0].succeeded);
	assert_int_equal(out.results[0].n_ops, 2);
	assert_int_equal(out.results[0].ops[0].revision, 4);
	assert_int_equal(out.results[0].ops[1].n_kvs, 1);
	assert_kv(&out.results[0].ops[1].kvs[0], "k5", "v5", 4, 4, 1);
	assert_int_equal(out.revision, 4);
	kv_apply_out_free(&out);
	assert_absent(kv, KV_SPACE_USER, "never");

	/* Reads only, or deletes of nothing: no revision. */
	{
		struct kv_op ops[] = {op_get("k", true, 0), op_del("missing", false)};
		struct kv_op txn = {.type = KV_OP_TXN, .success = ops, .n_success = 2};
		apply_op(kv, txn, &out);
		assert_true(out.results[0].succeeded);
		assert_int_equal(out.results[0].ops[0].n_kvs, 3);
		assert_int_equal(out.results[0].ops[0].revision, 4);
		assert_int_equal(out.results[0].ops[1].deleted, 0);
		assert_int_equal(out.revision, 4);
		assert_int_equal(out.n_events, 0);
		kv_apply_out_free(&out);
	}

	/* The TXN's space selects the keyspace of its compares; branch ops carry their own. */
	{
		struct kv_op sys_put = op_put("member", "m1");
		sys_put.space = KV_SPACE_SYS;
		assert_int_equal(apply_ok(kv, sys_put), 5);
		struct kv_cmp c = cmp_num("member", KV_CMP_VERSION, KV_CMP_EQUAL, 1);
		struct kv_op succ = op_put("member", "m2");
		succ.space = KV_SPACE_SYS;
		struct kv_op txn = {.type = KV_OP_TXN,
		                    .space = KV_SPACE_SYS,
		                    .cmps = &c,
		                    .n_cmps = 1,
		                    .success = &succ,
		                    .n_success = 1};
		apply_op(kv, txn, &out);
		assert_true(out.results[0].succeeded);
		assert_int_equal(out.revision, 6);
		assert_int_equal(out.events[0].space, KV_SPACE_SYS);
		kv_apply_out_free(&out);
		txn.space = KV_SPACE_USER; /* no "member" in USER: version 0 */
		apply_op(kv, txn, &out);
		assert_false(out.results[0].succeeded);
		kv_apply_out_free(&out);
	}
}

static void test_version_across_recreate(void **state)
{
	struct fixture *f = *state;
	struct kv *kv = f->a.kv;

	apply_ok(kv, op_put("x", "1"));
	assert_get(kv, "x", "1", 1, 1, 1);
	apply_ok(kv, op_put("x", "2"));
	assert_get(kv, "x", "2", 1, 2, 2);
	apply_ok(kv, op_put("x", "3"));
	assert_get(kv, "x", "3", 1, 3, 3);
	assert_int_equal(apply_ok(kv, op_del("x", false)), 4);
	assert_absent(kv, KV_SPACE_USER, "x");
	assert_int_equal(apply_ok(kv, op_put("x", "new")), 5);
	assert_get(kv, "x", "new", 5, 5, 1);
	/* Delete and recreate in one transaction: one revision, the key is new. */
	{
		struct kv_op ops[] = {op_del("x", false), op_put("x", "again")};
		struct kv_op txn = {.type = KV_OP_TXN, .success = ops, .n_success = 2};
		assert_int_equal(apply_ok(kv, txn), 6);
	}
	assert_get(kv, "x", "again", 6, 6, 1);
}

/* ------------------------------------------------------------------------------------------ */
/* History                                                                                     */

static void test_history(void **state)
{
	struct fixture *f = *state;
	struct kv *kv;
	struct kv_event *ev;
	unsigned n;
	uint64_t counts[SNAP_DBS];

	store_remove(&f->a);
	store_open(&f->a, 5, 0);
	kv = f->a.kv;

	apply_ok(kv, op_put("a/1", "x"));
	apply_ok(kv, op_put("b/1", "y"));
	apply_ok(kv, op_put("a/2", "z"));
	assert_int_equal(apply_ok(kv, op_del("a/", true)), 4);

	assert_int_equal(kv_history(kv, 0, KV_SPACE_USER, B("a/"), true, 0, &ev, &n), KV_OK);
	assert_int_equal(n, 4);
	assert_int_equal(ev[0].type, KV_EV_PUT);
	assert_kv(&ev[0].kv, "a/1", "x", 1, 1, 1);
	assert_kv(&ev[1].kv, "a/2", "z", 3, 3, 1);
	assert_int_equal(ev[2].type, KV_EV_DELETE);
	assert_kv(&ev[2].kv, "a/1", "", 0, 4, 0);
	assert_kv(&ev[3].kv, "a/2", "", 0, 4, 0);
	kv_events_free(ev, n);

	assert_int_equal(kv_history(kv, 1, KV_SPACE_USER, B("a/"), true, 0, &ev, &n), KV_OK);
	assert_int_equal(n, 3);
	assert_int_equal(ev[0].kv.mod_revision, 3);
	kv_events_free(ev, n);

	assert_int_equal(kv_history(kv, 0, KV_SPACE_USER, B("a/"), true, 1, &ev, &n), KV_OK);
	assert_int_equal(n, 1);
	kv_events_free(ev, n);

	assert_int_equal(kv_history(kv, 0, KV_SPACE_USER, B("b/1"), false, 0, &ev, &n), KV_OK);
	assert_int_equal(n, 1);
	assert_kv(&ev[0].kv, "b/1", "y", 2, 2, 1);
	kv_events_free(ev, n);

	/* An exact key is not a prefix. */
	assert_int_equal(kv_history(kv, 0, KV_SPACE_USER, B("b/"), false, 0, &ev, &n), KV_OK);
	assert_int_equal(n, 0);
	kv_events_free(ev, n);
	assert_int_equal(kv_history(kv, 0, KV_SPACE_SYS, B(""), true, 0, &ev, &n), KV_OK);
	assert_int_equal(n, 0);
	kv_events_free(ev, n);

	assert_int_equal(kv_history(kv, 4, KV_SPACE_USER, B(""), true, 0, &ev, &n), KV_OK);
	assert_int_equal(n, 0);
	kv_events_free(ev, n);
	assert_int_equal(kv_history(kv, 5, KV_SPACE_USER, B(""), true, 0, &ev, &n), KV_EFUTURE);

	/* Five revisions are kept: after revision 12 the oldest is 8. */
	for (int i = 0; i < 8; i++) {
		apply_ok(kv, op_put("c", "v"));
	}
	assert_int_equal(kv_revision(kv), 12);
	assert_int_equal(kv_compact_revision(kv), 8);
	assert_int_equal(kv_history(kv, 6, KV_SPACE_USER, B(""), true, 0, &ev, &n), KV_ECOMPACTED);
	assert_int_equal(kv_history(kv, 0, KV_SPACE_USER, B(""), true, 0, &ev, &n), KV_ECOMPACTED);
	assert_int_equal(kv_history(kv, 7, KV_SPACE_USER, B(""), true, 0, &ev, &n), KV_OK);
	assert_int_equal(n, 5);
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(ev[i].kv.mod_revision, 8 + i);
		assert_int_equal(ev[i].kv.version, 4 + i);
	}
	kv_events_free(ev, n);
	/* Pruned from the database, not only hidden. */
	snapshot_counts(kv, counts);
	assert_int_equal(counts[SNAP_HIST], 5);
}

/* Pages end at revision boundaries, so paging by the last event's revision sees every event
 * exactly once, however the revisions fall against the page size. */
static void test_history_paging(void **state)
{
	struct fixture *f = *state;
	struct kv *kv = f->a.kv;
	struct kv_event *ev;
	unsigned n, total = 0;
	int64_t after = 0;
	char keys[5][3][32];

	for (int r = 0; r < 5; r++) {
		struct kv_op ops[3];
		for (int i = 0; i < 3; i++) {
			snprintf(keys[r][i], sizeof keys[r][i], "p/%d%d", r, i);
			ops[i] = op_put(keys[r][i], "v");
		}
		struct kv_op txn = {.type = KV_OP_TXN, .success = ops, .n_success = 3};
		assert_int_equal(apply_ok(kv, txn), r + 1);
	}
	/* Page size 4 against revisions of 3 events: pages of 6, 6, 3. */
	for (;;) {
		assert_int_equal(kv_history(kv, after, KV_SPACE_USER, B("p/"), true, 4, &ev, &n),
		                 KV_OK);
		for (unsigned i = 0; i < n; i++) {
			int r = (int)(total / 3), k = (int)(total % 3);
			assert_kv(&ev[i].kv, keys[r][k], "v", r + 1, r + 1, 1);
			total++;
		}
		if (n > 0) {
			after = ev[n - 1].kv.mod_revision;
		}
		kv_events_free(ev, n);
		if (n < 4) {
			break;
		}
	}
	assert_int_equal(total, 15);

	/* One revision bigger than the page comes whole. */
	assert_int_equal(apply_ok(kv, op_del("p/", true)), 6);
	assert_int_equal(kv_history(kv, 5, KV_SPACE_USER, B(""), true, 4, &ev, &n), KV_OK);
	assert_int_equal(n, 15);
	kv_events_free(ev, n);
}

/* A revision with more events than the per-batch pruning budget drains over later batches. */
static void test_history_bounded_pruning(void **state)
{
	struct fixture *f = *state;
	struct kv *kv;
	struct kv_cmd cmds[300];
	char keys[300][16];
	struct kv_apply_out out;
	uint64_t counts[SNAP_DBS];

	store_remove(&f->a);
	store_open(&f->a, 2, 0);
	kv = f->a.kv;
	for (int i = 0; i < 300; i++) {
		snprintf(keys[i], sizeof keys[i], "k%03d", i);
		memset(&cmds[i], 0, sizeof cmds[i]);
		cmds[i].op = op_put(keys[i], "v");
	}
	apply_batch(kv, cmds, 300, T0, &out); /* revisions 1..300 */
	kv_apply_out_free(&out);
	assert_int_equal(apply_ok(kv, op_del("k", true)), 301); /* 300 events at 301 */
	snapshot_counts(kv, counts);
	assert_int_equal(counts[SNAP_HIST], 301);

	/* Revision 302 moves the compact revision to 301, revision 303 to 302: then the 300 events
	 * of 301 are garbage, and a batch with one event may delete 2 + 64 of them. */
	apply_ok(kv, op_put("x", "1"));
	assert_int_equal(kv_compact_revision(kv), 301);
	snapshot_counts(kv, counts);
	assert_int_equal(counts[SNAP_HIST], 300 + 1);
	apply_ok(kv, op_put("x", "2"));
	assert_int_equal(kv_compact_revision(kv), 302);
	snapshot_counts(kv, counts);
	assert_int_equal(counts[SNAP_HIST], 300 - 66 + 1 + 1);
	for (int i = 0; i < 10; i++) {
		apply_ok(kv, op_put("x", "3"));
	}
	snapshot_counts(kv, counts);
	assert_int_equal(counts[SNAP_HIST], 2);
}

/* ------------------------------------------------------------------------------------------ */
/* De-duplication                                                                              */

static void assert_same_result(const struct kv_result *a, const struct kv_result *b)
{
	assert_int_equal(a->id.client, b->id.client);
	assert_int_equal(a->id.seq, b->id.seq);
	assert_int_equal(a->status, b->status);
	assert_int_equal(a->revision, b->revision);
	assert_int_equal(a->succeeded, b->succeeded);
	assert_int_equal(a->hash, b->hash);
	assert_int_equal(a->n_ops, b->n_ops);
	for (unsigned i = 0; i < a->n_ops; i++) {
		assert_int_equal(a->ops[i].type, b->ops[i].type);
		assert_int_equal(a->ops[i].revision, b->ops[i].revision);
		assert_int_equal(a->ops[i].deleted, b->ops[i].deleted);
		assert_int_equal(a->ops[i].more, b->ops[i].more);
		assert_int_equal(a->ops[i].n_kvs, b->ops[i].n_kvs);
		for (unsigned j = 0; j < a->ops[i].n_kvs; j++) {
			const struct kv_kv *x = &a->ops[i].kvs[j], *y = &b->ops[i].kvs[j];
			assert_int_equal(x->key_len, y->key_len);
			assert_memory_equal(x->key, y->key, x->key_len);
			assert_int_equal(x->value_len, y->value_len);
			assert_memory_equal(x->value, y->value, x->value_len);
			assert_int_equal(x->create_revision, y->create_revision);
			assert_int_equal(x->mod_revision, y->mod_revision);
			assert_int_equal(x->version, y->version);
		}
	}
}

static void test_dedup(void **state)
{
	struct fixture *f = *state;
	struct kv *kv = f->a.kv;
	struct kv_apply_out first, again;
	struct kv_cmd put = {.id = {7, 1}, .op = op_put("k", "v")};

	apply_batch(kv, &put, 1, T0, &first);
	assert_false(first.results[0].duplicate);
	assert_int_equal(first.results[0].id.client, 7);
	assert_int_equal(first.results[0].id.seq, 1);
	assert_int_equal(first.revision, 1);

	/* The retry, in a later batch among other commands. */
	{
		struct kv_cmd cmds[] = {{.op = op_put("other", "1")}, put};
		apply_batch(kv, cmds, 2, T0 + 1000, &again);
	}
	assert_int_equal(again.n_results, 2);
	assert_true(again.results[1].duplicate);
	assert_same_result(&first.results[0], &again.results[1]);
	assert_int_equal(again.n_events, 1); /* only "other" */
	assert_int_equal(again.revision, 2);
	kv_apply_out_free(&again);
	assert_get(kv, "k", "v", 1, 1, 1);

	/* Twice in one batch. */
	{
		struct kv_cmd twice[] = {{.id = {7, 2}, .op = op_put("t", "1")},
		                         {.id = {7, 2}, .op = op_put("t", "1")}};
		apply_batch(kv, twice, 2, T0 + 2000, &again);
		assert_false(again.results[0].duplicate);
		assert_true(again.results[1].duplicate);
		assert_same_result(&again.results[0], &again.results[1]);
		assert_int_equal(again.revision, 3);
		kv_apply_out_free(&again);
	}

	/* A failed condition is remembered too: the retry fails the same way even though the
	 * key now has the asked revision. */
	{
		struct kv_cmd cond = {.id = {8, 1}, .op = op_put_if("c", "x", 4)};
		struct kv_apply_out r1, r2;
		apply_batch(kv, &cond, 1, T0 + 3000, &r1);
		assert_int_equal(r1.results[0].status, KV_R_COND_FAILED);
		assert_int_equal(apply_ok(kv, op_put("c", "made")), 4);
		apply_batch(kv, &cond, 1, T0 + 4000, &r2);
		assert_true(r2.results[0].duplicate);
		assert_same_result(&r1.results[0], &r2.results[0]);
		kv_apply_out_free(&r1);
		kv_apply_out_free(&r2);
	}

	/* A transaction's reads are remembered as they were. */
	{
		struct kv_op get = op_get("", true, 2);
		struct kv_cmd txn = {.id = {9, 1},
		                     .op = {.type = KV_OP_TXN, .success = &get, .n_success = 1}};
		struct kv_apply_out r1, r2;
		apply_batch(kv, &txn, 1, T0 + 5000, &r1);
		assert_int_equal(r1.results[0].ops[0].n_kvs, 2);
		apply_ok(kv, op_del("", true));
		apply_batch(kv, &txn, 1, T0 + 6000, &r2);
		assert_true(r2.results[0].duplicate);
		assert_same_result(&r1.results[0], &r2.results[0]);
		kv_apply_out_free(&r1);
		kv_apply_out_free(&r2);
	}

	/* A view reads a remembered result as a retry would get it (the store finishes its writes
	 * from there when a snapshot brings them); an id never applied is not found. */
	{
		struct kv_tx *tx = NULL;
		struct kv_result r;
		bool found = true;
		assert_int_equal(kv_view_begin(kv, &tx), KV_OK);
		assert_int_equal(kv_view_result(tx, put.id, &r, &found), KV_OK);
		assert_true(found);
		assert_true(r.duplicate);
		assert_same_result(&first.results[0], &r);
		kv_result_free(&r);
		assert_int_equal(kv_view_result(tx, (struct kv_reqid){7, 99}, &r, &found), KV_OK);
		assert_false(found);
		kv_view_end(tx);
	}

	/* Expiry is by batch time only: still remembered at exactly KV_DEDUP_MS... */
	apply_batch(kv, &put, 1, T0 + KV_DEDUP_MS, &again);
	assert_true(again.results[0].duplicate);
	kv_apply_out_free(&again);
	/* ...forgotten after it, so the command applies again. */
	{
		int64_t rev = kv_revision(kv);
		apply_batch(kv, &put, 1, T0 + KV_DEDUP_MS + 1, &again);
		assert_false(again.results[0].duplicate);
		assert_int_equal(again.revision, rev + 1);
		kv_apply_out_free(&again);
	}
	kv_apply_out_free(&first);
}

/* Expired records leave the database, a bounded number per batch. */
static void test_dedup_pruning(void **state)
{
	struct fixture *f = *state;
	struct kv *kv = f->a.kv;
	struct kv_cmd cmds[100];
	struct kv_cmd noop = {.op = {.type = KV_OP_NOOP}};
	struct kv_apply_out out;
	uint64_t counts[SNAP_DBS];

	for (int i = 0; i < 100; i++) {
		memset(&cmds[i], 0, sizeof cmds[i]);
		cmds[i].id.client = 3;
		cmds[i].id.seq = (uint64_t)i + 1;
		cmds[i].op.type = KV_OP_NOOP;
	}
	apply_batch(kv, cmds, 100, T0, &out);
	kv_apply_out_free(&out);
	apply_batch(kv, cmds, 10, T0 + 10, &out); /* a later batch re-writes nothing */
	for (int i = 0; i < 10; i++) {
		assert_true(out.results[i].duplicate);
	}
	kv_apply_out_free(&out);
	snapshot_counts(kv, counts);
	assert_int_equal(counts[SNAP_DEDUP], 100);
	assert_int_equal(counts[SNAP_DEXP], 100);
	assert_int_equal(kv_revision(kv), 0);

	apply_batch(kv, &noop, 1, T0 + KV_DEDUP_MS, &out);
	kv_apply_out_free(&out);
	snapshot_counts(kv, counts);
	assert_int_equal(counts[SNAP_DEDUP], 100); /* not expired yet */

	apply_batch(kv, &noop, 1, T0 + KV_DEDUP_MS + 1, &out);
	kv_apply_out_free(&out);
	snapshot_counts(kv, counts);
	assert_int_equal(counts[SNAP_DEDUP], 100 - 66); /* budget: 2 x 1 command + 64 */
	assert_int_equal(counts[SNAP_DEXP], 100 - 66);

	apply_batch(kv, &noop, 1, T0 + KV_DEDUP_MS + 2, &out);
	kv_apply_out_free(&out);
	snapshot_counts(kv, counts);
	assert_int_equal(counts[SNAP_DEDUP], 0);
	assert_int_equal(counts[SNAP_DEXP], 0);

	/* A re-used id after expiry is a new command with a new record. */
	apply_batch(kv, &cmds[0], 1, T0 + KV_DEDUP_MS + 3, &out);
	assert_false(out.results[0].duplicate);
	kv_apply_out_free(&out);
	snapshot_counts(kv, counts);
	assert_int_equal(counts[SNAP_DEDUP], 1);
	assert_int_equal(counts[SNAP_DEXP], 1);
}

/* ------------------------------------------------------------------------------------------ */
/* Hash                                                                                        */

/* FNV-1a 64 written out independently of the store, over the documented serialization. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n-- > 0) {
		h = (h ^ *b++) * 1099511628211ULL;
	}
	return h;
}

static void test_hash(void **state)
{
	struct fixture *f = *state;
	struct kv_cmd batch1[] = {{.op = op_put("k", "v")}, {.op = op_simple(KV_OP_HASH)}};
	struct kv_apply_out out;
	uint64_t h;

	/* The documented serialization: space, key, value, revisions, version, then revision. */
	{
		uint8_t entry[] = {0, 1, 0, 0, 0, 'k', 1, 0, 0, 0, 'v', 1, 0, 0, 0, 0, 0, 0,
		                   0, 1, 0, 0, 0, 0,   0, 0, 0, 1, 0,   0, 0, 0, 0, 0, 0};
		uint8_t tail[] = {0xff, 1, 0, 0, 0, 0, 0, 0, 0};
		h = fnv(fnv(14695981039346656037ULL, entry, sizeof entry), tail, sizeof tail);
	}
	apply_batch(f->a.kv, batch1, 2, T0, &out);
	assert_int_equal(out.results[1].status, KV_R_OK);
	assert_int_equal(out.results[1].revision, 1);
	assert_int_equal(out.results[1].hash, h);
	assert_int_equal(hash_of(f->a.kv), h);
	kv_apply_out_free(&out);

	/* The hash inside a batch is the state at that point of the batch. */
	{
		struct kv_cmd cmds[] = {{.op = op_put("k", "v")},
		                        {.op = op_simple(KV_OP_HASH)},
		                        {.op = op_put("later", "x")},
		                        {.op = op_simple(KV_OP_HASH)}};
		struct kv_cmd first = cmds[0];
		apply_batch(f->b.kv, cmds, 4, T0, &out);
		assert_int_equal(out.results[1].hash, h);
		assert_int_equal(out.results[3].hash, hash_of(f->b.kv));
		assert_int_equal(out.revision, 2);
		kv_apply_out_free(&out);
		apply_batch(f->a.kv, &first, 0, T0, &out); /* empty batch: nothing changes */
		assert_int_equal(out.n_results, 0);
		kv_apply_out_free(&out);
	}
	assert_int_not_equal(hash_of(f->a.kv), hash_of(f->b.kv));
	apply_ok(f->a.kv, op_put("later", "x"));
	assert_int_equal(hash_of(f->a.kv), hash_of(f->b.kv));

	/* Same batches, same hash; the keyspace, the revision and the version all count. */
	{
		struct kv_op sys = op_put("s", "1");
		sys.space = KV_SPACE_SYS;
		apply_ok(f->a.kv, sys);
		assert_int_not_equal(hash_of(f->a.kv), hash_of(f->b.kv));
		apply_ok(f->b.kv, sys);
		assert_int_equal(hash_of(f->a.kv), hash_of(f->b.kv));
		apply_ok(f->a.kv, op_put("s", "1")); /* same key and value in USER */
		apply_ok(f->b.kv, sys);              /* SYS again: version 2 */
		assert_int_not_equal(hash_of(f->a.kv), hash_of(f->b.kv));
	}

	/* Commands that leave the revision alone leave the hash alone, even de-dup records. */
	h = hash_of(f->a.kv);
	{
		struct kv_cmd noop = {.id = {5, 5}, .op = op_simple(KV_OP_NOOP)};
		apply_batch(f->a.kv, &noop, 1, T0, &out);
		kv_apply_out_free(&out);
	}
	assert_int_equal(hash_of(f->a.kv), h);
}

static void test_hash_determinism(void **state)
{
	struct fixture *f = *state;
	struct kv_cmd cmds[50];
	char keys[50][16];
	struct kv_apply_out oa, ob;

	for (int round = 0; round < 5; round++) {
		for (int i = 0; i < 50; i++) {
			memset(&cmds[i], 0, sizeof cmds[i]);
			snprintf(keys[i], sizeof keys[i], "r/%d", (i * 7 + round * 3) % 40);
			cmds[i].id.client = 1;
			cmds[i].id.seq = (uint64_t)(round * 50 + i + 1);
			cmds[i].op = i % 9 == 8 ? op_del(keys[i], false) : op_put(keys[i], keys[i]);
		}
		apply_batch(f->a.kv, cmds, 50, T0 + (uint64_t)round, &oa);
		apply_batch(f->b.kv, cmds, 50, T0 + (uint64_t)round, &ob);
		assert_int_equal(oa.revision, ob.revision);
		assert_int_equal(oa.n_events, ob.n_events);
		for (unsigned i = 0; i < oa.n_results; i++) {
			assert_same_result(&oa.results[i], &ob.results[i]);
		}
		kv_apply_out_free(&oa);
		kv_apply_out_free(&ob);
		assert_int_equal(hash_of(f->a.kv), hash_of(f->b.kv));
	}
	apply_ok(f->b.kv, op_put("r/1", "different"));
	assert_int_not_equal(hash_of(f->a.kv), hash_of(f->b.kv));
}

/* ------------------------------------------------------------------------------------------ */
/* Snapshots                                                                                   */

static void fill_some_state(struct kv *kv)
{
	struct kv_op sys = op_put("members/1", "10.0.0.1:7000");
	struct kv_cmd dup = {.id = {42, 1}, .op = op_put("dup", "once")};
	struct kv_apply_out out;

	sys.space = KV_SPACE_SYS;
	apply_ok(kv, op_put("a", "1"));
	apply_ok(kv, op_put("b", "2"));
	apply_ok(kv, op_put("a", "3"));
	apply_ok(kv, op_del("b", false));
	apply_ok(kv, sys);
	apply_batch(kv, &dup, 1, T0, &out);
	kv_apply_out_free(&out);
}

static void assert_same_range(struct kv *x, struct kv *y, uint8_t space)
{
	struct kv_kv *a, *b;
	unsigned na, nb;
	bool more;
	range(x, space, "", true, 0, &a, &na, &more);
	range(y, space, "", true, 0, &b, &nb, &more);
	assert_int_equal(na, nb);
	for (unsigned i = 0; i < na; i++) {
		assert_int_equal(a[i].key_len, b[i].key_len);
		assert_memory_equal(a[i].key, b[i].key, a[i].key_len);
		assert_int_equal(a[i].value_len, b[i].value_len);
		assert_memory_equal(a[i].value, b[i].value, a[i].value_len);
		assert_int_equal(a[i].create_revision, b[i].create_revision);
		assert_int_equal(a[i].mod_revision, b[i].mod_revision);
		assert_int_equal(a[i].version, b[i].version);
	}
	kv_kvs_free(a, na);
	kv_kvs_free(b, nb);
}

static void assert_same_history(struct kv *x, struct kv *y)
{
	struct kv_event *a, *b;
	unsigned na, nb;
	int64_t from = kv_compact_revision(x) - 1;
	assert_int_equal(kv_history(x, from, KV_SPACE_USER, B(""), true, 0, &a, &na), KV_OK);
	assert_int_equal(kv_history(y, from, KV_SPACE_USER, B(""), true, 0, &b, &nb), KV_OK);
	assert_int_equal(na, nb);
	assert_true(na > 0);
	for (unsigned i = 0; i < na; i++) {
		assert_int_equal(a[i].type, b[i].type);
		assert_int_equal(a[i].kv.key_len, b[i].kv.key_len);
		assert_memory_equal(a[i].kv.key, b[i].kv.key, a[i].kv.key_len);
		assert_int_equal(a[i].kv.mod_revision, b[i].kv.mod_revision);
	}
	kv_events_free(a, na);
	kv_events_free(b, nb);
}

static void test_snapshot_round_trip(void **state)
{
	struct fixture *f = *state;
	struct kv_cmd dup = {.id = {42, 1}, .op = op_put("dup", "once")};
	struct kv_apply_out out;
	void *buf;
	size_t len;

	fill_some_state(f->a.kv);
	apply_ok(f->b.kv, op_put("only-in-b", "gone after restore"));
	snapshot(f->a.kv, &buf, &len);
	assert_int_equal(kv_restore(f->b.kv, buf, len), KV_OK);
	free(buf);

	assert_int_equal(kv_revision(f->b.kv), kv_revision(f->a.kv));
	assert_int_equal(kv_compact_revision(f->b.kv), kv_compact_revision(f->a.kv));
	assert_int_equal(hash_of(f->b.kv), hash_of(f->a.kv));
	assert_same_range(f->a.kv, f->b.kv, KV_SPACE_USER);
	assert_same_range(f->a.kv, f->b.kv, KV_SPACE_SYS);
	assert_same_history(f->a.kv, f->b.kv);
	assert_absent(f->b.kv, KV_SPACE_USER, "only-in-b");

	/* De-dup records travel with the snapshot. */
	apply_batch(f->b.kv, &dup, 1, T0 + 1, &out);
	assert_true(out.results[0].duplicate);
	kv_apply_out_free(&out);

	/* Both continue identically. */
	apply_ok(f->a.kv, op_put("after", "1"));
	apply_ok(f->b.kv, op_put("after", "1"));
	assert_int_equal(hash_of(f->b.kv), hash_of(f->a.kv));
}

struct writer_arg {
	struct kv_snapshot *snap;
	void *buf;
	size_t len;
	int rv;
	unsigned delay_ms;
};

static void *snapshot_thread(void *p)
{
	struct writer_arg *w = p;
	usleep(w->delay_ms * 1000);
	w->rv = kv_snapshot_write(w->snap, &w->buf, &w->len);
	return NULL;
}

/* The snapshot is the state at kv_snapshot_begin(), written on another thread while the store
 * keeps applying. */
static void test_snapshot_concurrent(void **state)
{
	struct fixture *f = *state;
	struct writer_arg w = {0};
	pthread_t th;
	uint64_t h;
	int64_t rev;

	fill_some_state(f->a.kv);
	h = hash_of(f->a.kv);
	rev = kv_revision(f->a.kv);
	assert_int_equal(kv_snapshot_begin(f->a.kv, &w.snap), KV_OK);
	assert_int_equal(pthread_create(&th, NULL, snapshot_thread, &w), 0);
	for (int i = 0; i < 20; i++) {
		apply_ok(f->a.kv, op_put("while", "snapshotting"));
	}
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(w.rv, KV_OK);
	kv_snapshot_end(w.snap);

	assert_int_equal(kv_restore(f->b.kv, w.buf, w.len), KV_OK);
	free(w.buf);
	assert_int_equal(kv_revision(f->b.kv), rev);
	assert_int_equal(hash_of(f->b.kv), h);
	assert_absent(f->b.kv, KV_SPACE_USER, "while");

	/* A snapshot begun and ended without being written. */
	assert_int_equal(kv_snapshot_begin(f->a.kv, &w.snap), KV_OK);
	kv_snapshot_end(w.snap);
}

static void test_snapshot_corrupt(void **state)
{
	struct fixture *f = *state;
	void *buf;
	size_t len;
	uint8_t *bad;
	uint64_t h;
	int64_t rev;

	fill_some_state(f->a.kv);
	apply_ok(f->b.kv, op_put("b-state", "kept"));
	h = hash_of(f->b.kv);
	rev = kv_revision(f->b.kv);
	snapshot(f->a.kv, &buf, &len);
	bad = malloc(len);
	assert_non_null(bad);

	/* Every single flipped byte is refused, and found by the check a leader runs before it
	 * sends a snapshot, which says so. */
	assert_int_equal(kv_snapshot_intact(buf, len), KV_OK);
	for (size_t i = 0; i < len; i++) {
		memcpy(bad, buf, len);
		bad[i] ^= 0x20;
		assert_int_equal(kv_snapshot_intact(bad, len), KV_EMALFORMED);
		assert_int_equal(kv_restore(f->b.kv, bad, len), KV_EMALFORMED);
		assert_string_equal(
		    kv_errmsg(f->b.kv),
		    "malformed snapshot: its checksum is wrong: the data is damaged");
	}
	/* Every truncation too. */
	for (size_t i = 0; i < len; i++) {
		assert_int_equal(kv_restore(f->b.kv, buf, i), KV_EMALFORMED);
	}
	assert_int_equal(kv_restore(f->b.kv, NULL, 0), KV_EMALFORMED);

	/* Structurally wrong but correctly checksummed: a count larger than the data, an
	 * unknown version, a trailing byte. */
	{
		uint8_t *p = malloc(len + 1);
		assert_non_null(p);
		memcpy(p, buf, len);
		kv_put_le64(p + 8, 3); /* meta count */
		kv_put_le64(p + len - 8, kv_fnv1a64(KV_FNV_OFFSET, p, len - 8));
		assert_int_equal(kv_snapshot_intact(p, len), KV_OK);
		assert_int_equal(kv_restore(f->b.kv, p, len), KV_EMALFORMED);
		assert_string_equal(kv_errmsg(f->b.kv), "malformed snapshot: its layout is wrong");
		memcpy(p, buf, len);
		p[4] = 1; /* format version 1 had no domain keyspace */
		kv_put_le64(p + len - 8, kv_fnv1a64(KV_FNV_OFFSET, p, len - 8));
		assert_int_equal(kv_snapshot_intact(p, len), KV_OK);
		assert_int_equal(kv_restore(f->b.kv, p, len), KV_EMALFORMED);
		assert_string_equal(kv_errmsg(f->b.kv),
		                    "malformed snapshot: it is in format 1 with "
		                    "flags 0, and this Tabby reads format 2 "
		                    "without flags");
		memcpy(p, buf, len - 8);
		p[len - 8] = 0;
		kv_put_le64(p + len - 7, kv_fnv1a64(KV_FNV_OFFSET, p, len - 7));
		assert_int_equal(kv_restore(f->b.kv, p, len + 1), KV_EMALFORMED);
		free(p);
	}

	assert_int_equal(hash_of(f->b.kv), h);
	assert_int_equal(kv_revision(f->b.kv), rev);
	assert_get(f->b.kv, "b-state", "kept", 1, 1, 1);

	/* The untouched buffer still restores. */
	assert_int_equal(kv_restore(f->b.kv, buf, len), KV_OK);
	assert_int_equal(hash_of(f->b.kv), hash_of(f->a.kv));
	free(bad);
	free(buf);
}

/* ------------------------------------------------------------------------------------------ */
/* Malformed input and the codec                                                               */

static void assert_malformed_batch(struct kv *kv, const void *buf, size_t len)
{
	struct kv_apply_out out;
	uint64_t h = hash_of(kv);
	int64_t rev = kv_revision(kv);

	assert_int_equal(kv_apply(kv, buf, len, &out), KV_OK);
	assert_int_equal(out.n_results, 1);
	assert_int_equal(out.results[0].status, KV_R_INVALID);
	assert_non_null(out.results[0].message);
	assert_int_equal(out.results[0].revision, rev);
	assert_int_equal(out.n_events, 0);
	assert_int_equal(out.revision, rev);
	kv_apply_out_free(&out);
	assert_int_equal(kv_revision(kv), rev);
	assert_int_equal(hash_of(kv), h);
}

/* A hand-encoded PUT (reqid 0) with the given key length. */
static size_t raw_put(uint8_t *p, size_t key_len, uint8_t flags)
{
	size_t n = 0;
	memset(p, 0, 16);
	n += 16;
	p[n++] = KV_OP_PUT;
	p[n++] = KV_SPACE_USER;
	p[n++] = flags;
	kv_put_le32(p + n, (uint32_t)key_len);
	n += 4;
	memset(p + n, 'k', key_len);
	n += key_len;
	kv_put_le32(p + n, 1);
	n += 4;
	p[n++] = 'v';
	return n;
}

static void test_malformed(void **state)
{
	struct fixture *f = *state;
	struct kv *kv = f->a.kv;
	struct kv_cmd good = {.op = op_put("g", "1")};
	struct kv_apply_out out;
	void *buf;
	size_t len;
	uint8_t *bad;

	apply_ok(kv, op_put("x", "1"));
	assert_malformed_batch(kv, "garbage", 7);
	assert_malformed_batch(kv, NULL, 0);

	assert_int_equal(kv_encode_batch(&good, 1, T0, &buf, &len), KV_OK);
	bad = malloc(len + 1);
	assert_non_null(bad);
	memcpy(bad, buf, len);
	bad[0] = 'X'; /* magic */
	assert_malformed_batch(kv, bad, len);
	memcpy(bad, buf, len);
	bad[4] = 2; /* version */
	assert_malformed_batch(kv, bad, len);
	memcpy(bad, buf, len);
	bad[6] = 1; /* flags */
	assert_malformed_batch(kv, bad, len);
	memcpy(bad, buf, len);
	kv_put_le32(bad + 16, 2); /* count */
	assert_malformed_batch(kv, bad, len);
	memcpy(bad, buf, len);
	kv_put_le32(bad + 16, 0xffffffff);
	assert_malformed_batch(kv, bad, len);
	memcpy(bad, buf, len);
	kv_put_le32(bad + 20, (uint32_t)(len - 24 + 1)); /* command length past the end */
	assert_malformed_batch(kv, bad, len);
	memcpy(bad, buf, len);
	bad[len] = 0; /* a trailing byte, even a zero, breaks the 8-byte padding */
	assert_malformed_batch(kv, bad, len + 1);
	assert_int_equal(len % 8, 0);
	{
		/* This batch (header 20 bytes, one framed command) ends in padding: a non-zero
		 * padding byte is malformed. */
		uint64_t t;
		struct kv_bytes *cmds;
		unsigned nc;
		assert_int_equal(kv_split_batch(buf, len, &t, &cmds, &nc), KV_OK);
		assert_int_equal(nc, 1);
		size_t content = KV_BATCH_HEADER_LEN + 4 + cmds[0].len;
		free(cmds);
		assert_true(content < len);
		memcpy(bad, buf, len);
		bad[len - 1] = 1;
		assert_malformed_batch(kv, bad, len);
	}
	for (size_t i = 0; i < len; i++) {
		assert_malformed_batch(kv, buf, i);
	}
	free(bad);
	raft_free(buf);

	/* Bad commands inside a good batch: each gets KV_R_INVALID, the others apply. */
	{
		uint8_t long_key[16 + 3 + 4 + 600 + 5], bad_flags[64], txn_in_txn[64];
		uint8_t trailing[64];
		struct kv_bytes parts[6];
		size_t n;
		void *enc;
		size_t enc_len;

		assert_int_equal(kv_encode_cmd(&good, &enc, &enc_len), KV_OK);
		parts[0].data = enc;
		parts[0].len = enc_len;
		parts[1].data = long_key;
		parts[1].len = raw_put(long_key, KV_KEY_MAX + 1, 0);
		parts[2].data = bad_flags;
		parts[2].len = raw_put(bad_flags, 3, 0x01); /* prefix flag on a PUT */
		n = raw_put(trailing, 3, 0);
		trailing[n] = 0;
		parts[3].data = trailing;
		parts[3].len = n + 1;
		/* A TXN whose success op is a TXN. */
		memset(txn_in_txn, 0, sizeof txn_in_txn);
		kv_put_le64(txn_in_txn, 77);
		n = 16;
		txn_in_txn[n++] = KV_OP_TXN;
		txn_in_txn[n++] = 0; /* space */
		kv_put_le32(txn_in_txn + n, 0);
		n += 4;
		kv_put_le32(txn_in_txn + n, 1);
		n += 4;
		txn_in_txn[n++] = KV_OP_TXN;
		txn_in_txn[n++] = 0;
		memset(txn_in_txn + n, 0, 12);
		n += 12;
		kv_put_le32(txn_in_txn + n, 0);
		n += 4;
		parts[4].data = txn_in_txn;
		parts[4].len = n;
		parts[5] = parts[0];

		assert_int_equal(kv_join_batch(parts, 6, T0, &buf, &len), KV_OK);
		assert_int_equal(kv_apply(kv, buf, len, &out), KV_OK);
		raft_free(buf);
		free(enc);
		assert_int_equal(out.n_results, 6);
		assert_int_equal(out.results[0].status, KV_R_OK);
		assert_int_equal(out.results[0].revision, 2);
		for (int i = 1; i <= 4; i++) {
			assert_int_equal(out.results[i].status, KV_R_INVALID);
			assert_non_null(out.results[i].message);
			assert_int_equal(out.results[i].revision, 2);
			assert_int_equal(out.results[i].n_ops, 0);
		}
		assert_int_equal(out.results[4].id.client, 77);
		assert_non_null(strstr(out.results[4].message, "nested"));
		assert_int_equal(out.results[5].status, KV_R_OK);
		assert_int_equal(out.results[5].revision, 3);
		assert_int_equal(out.revision, 3);
		kv_apply_out_free(&out);

		/* A 511-byte key is fine. */
		n = raw_put(long_key, KV_KEY_MAX, 0);
		parts[0].data = long_key;
		parts[0].len = n;
		assert_int_equal(kv_join_batch(parts, 1, T0, &buf, &len), KV_OK);
		assert_int_equal(kv_apply(kv, buf, len, &out), KV_OK);
		raft_free(buf);
		assert_int_equal(out.results[0].status, KV_R_OK);
		kv_apply_out_free(&out);
	}

	/* The encoder refuses what the decoder would refuse. */
	{
		char key[KV_KEY_MAX + 2];
		struct kv_op get = op_get("a", false, 0);
		struct kv_op inner = {.type = KV_OP_TXN};
		struct kv_op prev_in_txn = op_put_if("a", "b", 1);
		struct kv_op hash = op_simple(KV_OP_HASH);
		struct kv_cmp badcmp = {.key = B("a"), .target = 9, .result = KV_CMP_EQUAL};
		struct kv_cmd c;
		void *p;
		size_t l;

		memset(key, 'k', sizeof key - 1);
		key[sizeof key - 1] = '\0';
		struct kv_op bad_ops[] = {
		    get,
		    op_put(key, "v"),
		    op_put("", "v"),
		    op_del("", false),
		    op_simple(99),
		    {.type = KV_OP_TXN, .success = &inner, .n_success = 1},
		    {.type = KV_OP_TXN, .success = &prev_in_txn, .n_success = 1},
		    {.type = KV_OP_TXN, .failure = &hash, .n_failure = 1},
		    {.type = KV_OP_TXN, .cmps = &badcmp, .n_cmps = 1},
		    {.type = KV_OP_TXN, .n_success = 1},
		    {.type = KV_OP_PUT, .space = 2, .key = B("a")},
		    {.type = KV_OP_PUT, .key = B("a"), .prefix = true},
		    {.type = KV_OP_PUT, .key = B("a"), .has_prev = true, .prev_revision = -1},
		};
		for (size_t i = 0; i < sizeof bad_ops / sizeof bad_ops[0]; i++) {
			memset(&c, 0, sizeof c);
			c.op = bad_ops[i];
			if (kv_encode_cmd(&c, &p, &l) != KV_EMALFORMED ||
			    kv_encode_batch(&c, 1, T0, &p, &l) != KV_EMALFORMED) {
				fail_msg("bad op %zu was encoded", i);
			}
		}
	}
	assert_int_equal(kv_revision(kv), 4);
}

static void test_codec_round_trip(void **state)
{
	(void)state;
	struct kv_cmp cmps[] = {cmp_value("a", KV_CMP_EQUAL, "x"),
	                        cmp_num("b", KV_CMP_MOD_REVISION, KV_CMP_LESS, -5),
	                        cmp_num("c", KV_CMP_VERSION, KV_CMP_GREATER, INT64_MAX)};
	struct kv_op succ[] = {op_put("s", "t"), op_del("p/", true), op_get("g", true, 10)};
	struct kv_op fail[] = {op_get("x", false, 0)};
	struct kv_cmd cmds[] = {
	    {.id = {1, 2}, .op = op_put("key", "value")},
	    {.id = {3, 4}, .op = op_put_if("key", "", 0)},
	    {.id = {UINT64_MAX, UINT64_MAX}, .op = op_del("k", false)},
	    {.id = {0, 0}, .op = op_del("", true)},
	    {.id = {5, 6},
	     .op = {.type = KV_OP_TXN,
	            .space = KV_SPACE_SYS,
	            .cmps = cmps,
	            .n_cmps = 3,
	            .success = succ,
	            .n_success = 3,
	            .failure = fail,
	            .n_failure = 1}},
	    {.id = {7, 8}, .op = op_simple(KV_OP_HASH)},
	    {.id = {9, 10}, .op = op_simple(KV_OP_NOOP)},
	};
	const unsigned n = sizeof cmds / sizeof cmds[0];
	struct kv_bytes enc[sizeof cmds / sizeof cmds[0]];
	struct kv_bytes *parts;
	unsigned n_parts;
	uint64_t time;
	void *batch, *joined;
	size_t batch_len, joined_len;

	cmds[2].op.space = KV_SPACE_SYS;
	assert_int_equal(kv_encode_batch(cmds, n, 123456789, &batch, &batch_len), KV_OK);
	assert_int_equal(kv_split_batch(batch, batch_len, &time, &parts, &n_parts), KV_OK);
	assert_int_equal(time, 123456789);
	assert_int_equal(n_parts, n);
	for (unsigned i = 0; i < n; i++) {
		void *p, *mem, *re;
		size_t l, re_len;
		struct kv_reqid id;
		struct kv_cmd dec;
		const char *why;

		assert_int_equal(kv_encode_cmd(&cmds[i], &p, &l), KV_OK);
		assert_int_equal(parts[i].len, l);
		assert_memory_equal(parts[i].data, p, l);
		enc[i].data = p;
		enc[i].len = l;
		assert_int_equal(kv_cmd_reqid(parts[i], &id), KV_OK);
		assert_int_equal(id.client, cmds[i].id.client);
		assert_int_equal(id.seq, cmds[i].id.seq);

		/* decode(encode(c)) encodes to the same bytes */
		assert_int_equal(kv_decode_cmd(parts[i], &dec, &mem, &why), KV_OK);
		assert_int_equal(dec.op.type, cmds[i].op.type);
		assert_int_equal(dec.op.space, cmds[i].op.space);
		assert_int_equal(kv_encode_cmd(&dec, &re, &re_len), KV_OK);
		assert_int_equal(re_len, l);
		assert_memory_equal(re, p, l);
		free(re);
		free(mem);
	}
	{
		struct kv_cmd dec;
		void *mem;
		const char *why;
		assert_int_equal(kv_decode_cmd(parts[4], &dec, &mem, &why), KV_OK);
		assert_int_equal(dec.op.n_cmps, 3);
		assert_int_equal(dec.op.cmps[1].number, -5);
		assert_int_equal(dec.op.cmps[2].number, INT64_MAX);
		assert_int_equal(dec.op.n_success, 3);
		assert_int_equal(dec.op.success[2].limit, 10);
		assert_true(dec.op.success[1].prefix);
		assert_int_equal(dec.op.n_failure, 1);
		assert_int_equal(dec.op.failure[0].key.len, 1);
		free(mem);
	}
	assert_int_equal(kv_join_batch(enc, n, 123456789, &joined, &joined_len), KV_OK);
	assert_int_equal(joined_len, batch_len);
	assert_memory_equal(joined, batch, batch_len);
	for (unsigned i = 0; i < n; i++) {
		free((void *)enc[i].data);
	}
	free(parts);
	raft_free(joined);
	raft_free(batch);

	/* An empty batch. */
	assert_int_equal(kv_encode_batch(NULL, 0, 1, &batch, &batch_len), KV_OK);
	assert_int_equal(batch_len, (KV_BATCH_HEADER_LEN + 7) / 8 * 8); /* padded for raft */
	assert_int_equal(kv_split_batch(batch, batch_len, &time, &parts, &n_parts), KV_OK);
	assert_int_equal(n_parts, 0);
	free(parts);
	raft_free(batch);

	/* Request ids need 16 bytes. */
	{
		struct kv_reqid id;
		uint8_t shortbuf[15] = {0};
		struct kv_bytes b = {shortbuf, sizeof shortbuf};
		assert_int_equal(kv_cmd_reqid(b, &id), KV_EMALFORMED);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Size                                                                                        */

static void test_large_batch(void **state)
{
	struct fixture *f = *state;
	struct kv *kv = f->a.kv;
	enum { N = 10000 };
	struct kv_cmd *cmds = calloc(N, sizeof *cmds);
	char(*keys)[16] = calloc(N, 16);
	char value[257];
	struct kv_apply_out out;
	struct kv_kv *kvs;
	unsigned n;
	bool more;

	assert_non_null(cmds);
	assert_non_null(keys);
	memset(value, 'v', 256);
	value[256] = '\0';
	for (int i = 0; i < N; i++) {
		snprintf(keys[i], 16, "big/%06d", i);
		cmds[i].id.client = 2;
		cmds[i].id.seq = (uint64_t)i + 1;
		cmds[i].op = op_put(keys[i], value);
	}
	apply_batch(kv, cmds, N, T0, &out);
	assert_int_equal(out.n_results, N);
	assert_int_equal(out.n_events, N);
	assert_int_equal(out.revision, N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(out.results[i].revision, i + 1);
	}
	kv_apply_out_free(&out);

	range(kv, KV_SPACE_USER, "big/", true, 0, &kvs, &n, &more);
	assert_int_equal(n, N);
	kv_kvs_free(kvs, n);

	apply_op(kv, op_del("big/", true), &out);
	assert_int_equal(out.results[0].ops[0].deleted, N);
	assert_int_equal(out.n_events, N);
	assert_int_equal(out.revision, N + 1);
	kv_apply_out_free(&out);
	free(cmds);
	free(keys);
}

/* A tiny map grows as needed; results equal those of a store that never ran out. */
static void test_map_growth(void **state)
{
	struct fixture *f = *state;
	struct kv_cmd cmds[200];
	char keys[200][32];
	char *value = malloc(2000);
	struct kv_apply_out oa, ob;
	struct writer_arg w = {.delay_ms = 50};
	pthread_t th;
	uint64_t h;

	assert_non_null(value);
	memset(value, 'x', 1999);
	value[1999] = '\0';
	store_remove(&f->a);
	store_open(&f->a, 0, 64 * 1024);

	/* A snapshot in progress holds the growth back until it has been written. */
	apply_ok(f->a.kv, op_put("before", "1"));
	h = hash_of(f->a.kv);
	assert_int_equal(kv_snapshot_begin(f->a.kv, &w.snap), KV_OK);
	assert_int_equal(pthread_create(&th, NULL, snapshot_thread, &w), 0);
	apply_ok(f->b.kv, op_put("before", "1"));

	for (int round = 0; round < 5; round++) {
		for (int i = 0; i < 200; i++) {
			memset(&cmds[i], 0, sizeof cmds[i]);
			snprintf(keys[i], sizeof keys[i], "g/%d/%d", round, i);
			cmds[i].op = op_put(keys[i], value);
		}
		apply_batch(f->a.kv, cmds, 200, T0, &oa);
		apply_batch(f->b.kv, cmds, 200, T0, &ob);
		assert_int_equal(oa.revision, ob.revision);
		assert_int_equal(oa.n_events, 200);
		kv_apply_out_free(&oa);
		kv_apply_out_free(&ob);
	}
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(w.rv, KV_OK);
	kv_snapshot_end(w.snap);
	assert_int_equal(hash_of(f->a.kv), hash_of(f->b.kv));
	assert_int_equal(kv_revision(f->a.kv), 1001);

	/* The snapshot taken before the growth restores the state it saw. */
	assert_int_equal(kv_restore(f->b.kv, w.buf, w.len), KV_OK);
	assert_int_equal(hash_of(f->b.kv), h);
	free(w.buf);
	free(value);
}

/* Bytes of disk the file at path holds. */
static size_t allocated(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return (size_t)st.st_blocks * 512;
}

/* The disk reserve on a real file system that fills up: a 128 MiB tmpfs in a private mount
 * namespace (root only; skipped otherwise). After the disk is full, the reserve still carries
 * some batches; then kv_space_check() reports ENOSPC and kv_apply() refuses with KV_ENOSPC and a
 * message naming the directory, instead of LMDB dirtying a page with no block behind it (SIGBUS,
 * which would end this test). The state stays as it was, and freeing space makes it writable. */
static void test_disk_full(void **state)
{
	(void)state;
	char root[] = "/tmp/test_kv_full.XXXXXX", dir[64], filler[64];
	if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
		skip();
	}
	assert_non_null(mkdtemp(root));
	if (mount("tmpfs", root, "tmpfs", 0, "size=128m") != 0) {
		rmdir(root);
		skip();
	}
	snprintf(dir, sizeof dir, "%s/state", root);
	snprintf(filler, sizeof filler, "%s/filler", root);

	struct kv *kv;
	size_t left = 0;
	char map[80];
	snprintf(map, sizeof map, "%s/data.mdb", dir);
	assert_int_equal(kv_open(&kv, dir, NULL), KV_OK);
	assert_int_equal(kv_space_check(kv, &left), 0);
	size_t blocks = allocated(map);
	assert_true(blocks >= (size_t)64 << 20); /* the reserve is on disk, not just promised */

	/* Take every free block. */
	int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	static char chunk[1 << 20];
	memset(chunk, 'f', sizeof chunk);
	while (write(fd, chunk, sizeof chunk) > 0) {
	}
	assert_int_equal(errno, ENOSPC);

	/* 1 MiB batches: 16 values of 64 KiB. */
	static char value[64 << 10];
	memset(value, 'v', sizeof value - 1);
	char keys[16][32];
	struct kv_cmd cmds[16];
	int rv = KV_OK, applied = 0;
	int64_t rev = kv_revision(kv);
	for (int b = 0; b < 128 && rv == KV_OK; b++) {
		for (int i = 0; i < 16; i++) {
			memset(&cmds[i], 0, sizeof cmds[i]);
			snprintf(keys[i], sizeof keys[i], "full/%d/%d", b, i);
			cmds[i].op = op_put(keys[i], value);
		}
		void *buf;
		size_t len;
		struct kv_apply_out out;
		assert_int_equal(kv_encode_batch(cmds, 16, T0, &buf, &len), KV_OK);
		rv = kv_apply(kv, buf, len, &out);
		raft_free(buf);
		if (rv == KV_OK) {
			applied++;
			rev = out.revision;
			kv_apply_out_free(&out);
		}
	}
	assert_int_equal(rv, KV_ENOSPC);
	assert_true(applied >= 4); /* the reserve carried the first batches */
	assert_non_null(strstr(kv_errmsg(kv), dir));
	assert_non_null(strstr(kv_errmsg(kv), "No space left on device"));
	assert_int_equal(kv_space_check(kv, &left), ENOSPC);
	assert_true(left < KV_SPACE_WRITES_MIN);
	assert_int_equal(kv_revision(kv), rev);
	blocks = allocated(map);
	struct kv_kv *kvs;
	unsigned n;
	bool more;
	range(kv, KV_SPACE_USER, "full/", true, 0, &kvs, &n, &more);
	assert_int_equal(n, applied * 16);
	kv_kvs_free(kvs, n);

	/* Space freed: the reserve renews and writes go on. */
	close(fd);
	assert_int_equal(unlink(filler), 0);
	assert_int_equal(kv_space_check(kv, &left), 0);
	assert_true(allocated(map) >= blocks + ((size_t)48 << 20)); /* renewed */
	apply_ok(kv, op_put("after", "1"));

	kv_close(kv);
	assert_int_equal(umount2(root, MNT_DETACH), 0);
	assert_int_equal(rmdir(root), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_put_get_range, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_conditional_put, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_delete_prefix_many, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_txn_compares, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_txn_branches, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_version_across_recreate, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_history, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_history_paging, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_history_bounded_pruning, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dedup, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dedup_pruning, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hash, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hash_determinism, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_snapshot_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_snapshot_concurrent, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_snapshot_corrupt, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_codec_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_large_batch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_map_growth, setup, teardown),
	    cmocka_unit_test(test_disk_full),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
