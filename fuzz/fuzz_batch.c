/*
 * libFuzzer target for everything the state machine decodes: raft entries (batches), single
 * commands and snapshots.
 *
 * Each input is used four ways:
 *   1. kv_split_batch(); when it accepts, joining the parts again must give the input back
 *      byte for byte, and every part that decodes must re-encode to the same bytes (the codec
 *      is canonical).
 *   2. kv_apply() of the input as a batch on a store that lives for the whole run, so inputs
 *      build on each other's state; it must succeed and report one result per command, or a
 *      single KV_R_INVALID for a malformed batch, and the revision may only grow.
 *   3. The input as one command wrapped in a valid batch, to reach the command decoder and the
 *      apply paths without first having to guess a batch header.
 *   4. kv_restore() on a second store, as is and with the trailing checksum recomputed so the
 *      structural checks are reached; an accepted snapshot must serialize back identically, and
 *      a refused one must leave the store's hash unchanged.
 *   5. store_backup_open() of the input as a backup file, as is and with the trailer's checksum
 *      recomputed; an accepted file must hold an intact state and seal back identically from
 *      what was read out of it.
 * Any violated expectation aborts, which libFuzzer reports as a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <raft.h>

#include "store/kv.h"
#include "store/kv_internal.h"
#include "store/store.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* libFuzzer's entry points take no user pointer, so the stores that persist across inputs can
 * only live here. */
static struct fuzz_state {
	char apply_dir[32];
	char restore_dir[32];
	struct kv *apply;
	struct kv *restore;
} st;

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_batch: %s\n", what);
		abort();
	}
}

static void remove_store(struct kv *kv, const char *dir)
{
	char path[64];
	kv_close(kv);
	snprintf(path, sizeof path, "%s/data.mdb", dir);
	unlink(path);
	snprintf(path, sizeof path, "%s/lock.mdb", dir);
	unlink(path);
	rmdir(dir);
}

static void cleanup(void)
{
	remove_store(st.apply, st.apply_dir);
	remove_store(st.restore, st.restore_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct kv_config cfg = {.history = 1000};
	(void)argc;
	(void)argv;
	strcpy(st.apply_dir, "/tmp/fuzz_batch.XXXXXX");
	strcpy(st.restore_dir, "/tmp/fuzz_batch.XXXXXX");
	check(mkdtemp(st.apply_dir) != NULL && mkdtemp(st.restore_dir) != NULL, "mkdtemp");
	check(kv_open(&st.apply, st.apply_dir, &cfg) == KV_OK, "kv_open");
	check(kv_open(&st.restore, st.restore_dir, &cfg) == KV_OK, "kv_open");
	atexit(cleanup);
	return 0;
}

static void fuzz_split(const uint8_t *data, size_t size)
{
	struct kv_bytes *parts;
	unsigned n;
	uint64_t time_ms;
	void *joined;
	size_t joined_len;

	if (kv_split_batch(data, size, &time_ms, &parts, &n) != KV_OK) {
		return;
	}
	check(kv_join_batch(parts, n, time_ms, &joined, &joined_len) == KV_OK, "join");
	check(joined_len == size && memcmp(joined, data, size) == 0, "join(split(b)) != b");
	raft_free(joined);
	for (unsigned i = 0; i < n; i++) {
		struct kv_cmd cmd;
		struct kv_reqid id;
		const char *why;
		void *mem, *enc;
		size_t enc_len;

		if (kv_decode_cmd(parts[i], &cmd, &mem, &why) != KV_OK) {
			continue;
		}
		check(kv_cmd_reqid(parts[i], &id) == KV_OK && id.client == cmd.id.client &&
		          id.seq == cmd.id.seq,
		      "reqid");
		check(kv_encode_cmd(&cmd, &enc, &enc_len) == KV_OK, "encode(decode(c)) failed");
		check(enc_len == parts[i].len && memcmp(enc, parts[i].data, enc_len) == 0,
		      "encode(decode(c)) != c");
		free(enc);
		free(mem);
	}
	free(parts);
}

/* expect_results < 0: the batch is malformed. */
static void fuzz_apply(const void *buf, size_t len, long expect_results)
{
	struct kv_apply_out out;
	int64_t before = kv_revision(st.apply);

	check(kv_apply(st.apply, buf, len, &out) == KV_OK, "kv_apply failed");
	check(out.revision >= before && out.revision == kv_revision(st.apply), "revision");
	if (expect_results >= 0) {
		check(out.n_results == (unsigned long)expect_results, "result count");
	} else {
		check(out.n_results == 1 && out.results[0].status == KV_R_INVALID &&
		          out.revision == before,
		      "malformed batch result");
	}
	for (unsigned i = 0; i < out.n_results; i++) {
		check(out.results[i].revision <= out.revision, "result revision");
	}
	for (unsigned i = 1; i < out.n_events; i++) {
		check(out.events[i].kv.mod_revision >= out.events[i - 1].kv.mod_revision,
		      "event order");
	}
	kv_apply_out_free(&out);
}

static void fuzz_restore(const uint8_t *data, size_t size)
{
	uint64_t before, after;
	struct kv_snapshot *snap;
	void *buf;
	size_t len;

	check(kv_hash(st.restore, &before) == KV_OK, "hash");
	if (kv_restore(st.restore, data, size) != KV_OK) {
		check(kv_hash(st.restore, &after) == KV_OK && after == before,
		      "refused restore changed the state");
		return;
	}
	check(kv_snapshot_begin(st.restore, &snap) == KV_OK, "snapshot begin");
	check(kv_snapshot_write(snap, &buf, &len) == KV_OK, "snapshot write");
	kv_snapshot_end(snap);
	check(len == size && memcmp(buf, data, size) == 0, "snapshot(restore(s)) != s");
	free(buf);
}

static void fuzz_backup_file(const uint8_t *data, size_t size)
{
	struct store_backup_info info;
	size_t state_len;
	char why[256];

	if (store_backup_open(data, size, &info, &state_len, why, sizeof why) != STORE_OK) {
		check(why[0] != '\0', "a refused backup file without a reason");
		return;
	}
	check(state_len < size && kv_snapshot_intact(data, state_len) == KV_OK,
	      "an accepted backup file without an intact state");
	void *again = malloc(state_len ? state_len : 1);
	size_t len = state_len;
	check(again != NULL, "malloc");
	memcpy(again, data, state_len);
	check(store_backup_seal(&again, &len, &info) == STORE_OK, "an accepted file does not seal");
	check(len == size && memcmp(again, data, size) == 0, "seal(open(f)) != f");
	free(again);
}

/* The trailer's checksum recomputed, when the input ends like a backup file, so that the checks
 * behind it are reached. */
static void fuzz_backup_fixed(const uint8_t *data, size_t size)
{
	if (size < 20) {
		return;
	}
	uint32_t tl = kv_get_le32(data + size - 20);
	if (tl > size - 20) {
		return;
	}
	uint8_t *fixed = malloc(size);
	check(fixed != NULL, "malloc");
	memcpy(fixed, data, size);
	kv_put_le64(fixed + size - 16, kv_fnv1a64(KV_FNV_OFFSET, fixed + size - 20 - tl, tl));
	fuzz_backup_file(fixed, size);
	free(fixed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kv_bytes cmd = {data, size};
	struct kv_bytes *parts;
	unsigned n;
	uint64_t time_ms;
	void *batch;
	size_t batch_len;

	fuzz_split(data, size);

	if (kv_split_batch(data, size, &time_ms, &parts, &n) == KV_OK) {
		free(parts);
		fuzz_apply(data, size, n);
	} else {
		fuzz_apply(data, size, -1);
	}

	if (size <= UINT32_MAX && kv_join_batch(&cmd, 1, 0, &batch, &batch_len) == KV_OK) {
		fuzz_apply(batch, batch_len, 1);
		raft_free(batch);
	}

	fuzz_restore(data, size);
	if (size >= 16) {
		uint8_t *fixed = malloc(size);
		check(fixed != NULL, "malloc");
		memcpy(fixed, data, size);
		kv_put_le64(fixed + size - 8, kv_fnv1a64(KV_FNV_OFFSET, fixed, size - 8));
		fuzz_restore(fixed, size);
		free(fixed);
	}

	fuzz_backup_file(data, size);
	fuzz_backup_fixed(data, size);
	return 0;
}
