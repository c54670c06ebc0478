/*
 * Wire format of commands, batches and remembered results (format version 1).
 *
 * All integers are little-endian and fixed-width; a byte string ("bytes") is a u32 length and
 * that many bytes.
 *
 *   batch := magic "TBKV" | version u16 (1) | flags u16 (0) | time_ms u64 | count u32
 *            | count x (len u32 | cmd) | 0-7 zero bytes
 *
 * raft's libuv backend takes only entries whose length is a multiple of 8, hence the padding.
 *   cmd   := client u64 | seq u64 | op
 *   op    := type u8 | body
 *     PUT   space u8 | flags u8 (HAS_PREV) | key bytes | value bytes | [prev_revision i64]
 *     DEL   space u8 | flags u8 (PREFIX)   | key bytes
 *     GET   space u8 | flags u8 (PREFIX)   | key bytes | limit i64
 *     TXN   space u8 | n u32 | n x cmp | n u32 | n x op | n u32 | n x op
 *     HASH, NOOP: empty
 *     CALL  call u16 | payload bytes
 *   cmp   := key bytes | target u8 | result u8 | (value bytes if target is VALUE, else i64)
 *
 * Every command is framed by its own length so that a batch can be split, forwarded and joined
 * without decoding commands, and so that one undecodable command does not hide the others. The
 * encoding is canonical: fields an op does not use are not encoded, unknown flag bits are
 * rejected, so decode(encode(c)) == c and encode(decode(b)) == b.
 *
 * The decoder never trusts a count: a count is rejected when the remaining input cannot hold
 * that many elements of the element's minimum size, which bounds every allocation by a small
 * multiple of the input length.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raft.h>

#include "store/kv.h"
#include "store/kv_internal.h"

#define OPF_PREFIX   0x01
#define OPF_HAS_PREV 0x02

/* Smallest encodings, for bounding counts. */
#define MIN_CMP_LEN    (4 + 1 + 1 + 4) /* empty key, VALUE target, empty value */
#define MIN_TXN_OP_LEN (1 + 1 + 1 + 4) /* DEL with an empty key */
#define MIN_RES_OP_LEN (1 + 1 + 8 + 8 + 4)
#define MIN_RES_KV_LEN (4 + 4 + 8 + 8 + 8)

/* ------------------------------------------------------------------------------------------ */
/* Validation                                                                                  */

static bool bytes_ok(struct kv_bytes b)
{
	return b.len <= UINT32_MAX && (b.len == 0 || b.data != NULL);
}

static int validate_cmp(const struct kv_cmp *c, const char **why)
{
	if (c->key.len == 0 || c->key.len > KV_KEY_MAX || !bytes_ok(c->key)) {
		*why = "compare key must be 1 to 511 bytes";
		return KV_EMALFORMED;
	}
	if (c->target < KV_CMP_VALUE || c->target > KV_CMP_VERSION) {
		*why = "unknown compare target";
		return KV_EMALFORMED;
	}
	if (c->result < KV_CMP_EQUAL || c->result > KV_CMP_GREATER) {
		*why = "unknown compare result";
		return KV_EMALFORMED;
	}
	if (c->target == KV_CMP_VALUE && !bytes_ok(c->value)) {
		*why = "compare value too long";
		return KV_EMALFORMED;
	}
	return KV_OK;
}

static int validate_key_op(const struct kv_op *op, bool in_txn, const char **why)
{
	if (op->space > KV_SPACE_LAST) {
		*why = "unknown keyspace";
		return KV_EMALFORMED;
	}
	if (op->space == KV_SPACE_DOMAIN && op->type != KV_OP_GET) {
		*why = "the domain keyspace is written only by domain commands";
		return KV_EMALFORMED;
	}
	if (op->key.len > KV_KEY_MAX || !bytes_ok(op->key)) {
		*why = "key longer than 511 bytes";
		return KV_EMALFORMED;
	}
	switch (op->type) {
	case KV_OP_PUT:
		if (op->prefix) {
			*why = "PUT takes no prefix";
			return KV_EMALFORMED;
		}
		if (op->key.len == 0) {
			*why = "empty key";
			return KV_EMALFORMED;
		}
		if (!bytes_ok(op->value)) {
			*why = "value too long";
			return KV_EMALFORMED;
		}
		if (op->has_prev && in_txn) {
			*why = "a transaction op takes no prev_revision (use a compare)";
			return KV_EMALFORMED;
		}
		if (op->has_prev && op->prev_revision < 0) {
			*why = "negative prev_revision";
			return KV_EMALFORMED;
		}
		return KV_OK;
	case KV_OP_GET:
		if (op->limit < 0) {
			*why = "negative limit";
			return KV_EMALFORMED;
		}
		/* fall through */
	default: /* DEL */
		if (op->key.len == 0 && !op->prefix) {
			*why = "empty key";
			return KV_EMALFORMED;
		}
		return KV_OK;
	}
}

int kv_validate_op(const struct kv_op *op, bool in_txn, const char **why)
{
	int rv;

	switch (op->type) {
	case KV_OP_PUT:
	case KV_OP_DEL:
		return validate_key_op(op, in_txn, why);
	case KV_OP_GET:
		if (!in_txn) {
			*why = "GET is only valid inside a transaction";
			return KV_EMALFORMED;
		}
		return validate_key_op(op, in_txn, why);
	case KV_OP_TXN:
		if (in_txn) {
			*why = "nested transaction";
			return KV_EMALFORMED;
		}
		if (op->space > KV_SPACE_LAST) {
			*why = "unknown keyspace";
			return KV_EMALFORMED;
		}
		if ((op->n_cmps > 0 && op->cmps == NULL) ||
		    (op->n_success > 0 && op->success == NULL) ||
		    (op->n_failure > 0 && op->failure == NULL)) {
			*why = "transaction list without elements";
			return KV_EMALFORMED;
		}
		for (unsigned i = 0; i < op->n_cmps; i++) {
			if ((rv = validate_cmp(&op->cmps[i], why)) != KV_OK) {
				return rv;
			}
		}
		for (unsigned i = 0; i < op->n_success; i++) {
			if ((rv = kv_validate_op(&op->success[i], true, why)) != KV_OK) {
				return rv;
			}
		}
		for (unsigned i = 0; i < op->n_failure; i++) {
			if ((rv = kv_validate_op(&op->failure[i], true, why)) != KV_OK) {
				return rv;
			}
		}
		return KV_OK;
	case KV_OP_HASH:
	case KV_OP_NOOP:
		if (in_txn) {
			*why = "HASH and NOOP are not transaction ops";
			return KV_EMALFORMED;
		}
		return KV_OK;
	case KV_OP_CALL:
		if (in_txn) {
			*why = "CALL is not a transaction op";
			return KV_EMALFORMED;
		}
		if (op->call == 0) {
			*why = "CALL names no handler";
			return KV_EMALFORMED;
		}
		if (!bytes_ok(op->value)) {
			*why = "payload too long";
			return KV_EMALFORMED;
		}
		return KV_OK;
	default:
		*why = "unknown op type";
		return KV_EMALFORMED;
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Encoding                                                                                    */

static void write_op(struct kv_writer *w, const struct kv_op *op)
{
	kvw_u8(w, op->type);
	switch (op->type) {
	case KV_OP_PUT:
		kvw_u8(w, op->space);
		kvw_u8(w, op->has_prev ? OPF_HAS_PREV : 0);
		kvw_bytes(w, op->key.data, op->key.len);
		kvw_bytes(w, op->value.data, op->value.len);
		if (op->has_prev) {
			kvw_i64(w, op->prev_revision);
		}
		break;
	case KV_OP_DEL:
	case KV_OP_GET:
		kvw_u8(w, op->space);
		kvw_u8(w, op->prefix ? OPF_PREFIX : 0);
		kvw_bytes(w, op->key.data, op->key.len);
		if (op->type == KV_OP_GET) {
			kvw_i64(w, op->limit);
		}
		break;
	case KV_OP_TXN:
		kvw_u8(w, op->space);
		kvw_u32(w, op->n_cmps);
		for (unsigned i = 0; i < op->n_cmps; i++) {
			const struct kv_cmp *c = &op->cmps[i];
			kvw_bytes(w, c->key.data, c->key.len);
			kvw_u8(w, c->target);
			kvw_u8(w, c->result);
			if (c->target == KV_CMP_VALUE) {
				kvw_bytes(w, c->value.data, c->value.len);
			} else {
				kvw_i64(w, c->number);
			}
		}
		kvw_u32(w, op->n_success);
		for (unsigned i = 0; i < op->n_success; i++) {
			write_op(w, &op->success[i]);
		}
		kvw_u32(w, op->n_failure);
		for (unsigned i = 0; i < op->n_failure; i++) {
			write_op(w, &op->failure[i]);
		}
		break;
	case KV_OP_CALL:
		kvw_u16(w, op->call);
		kvw_bytes(w, op->value.data, op->value.len);
		break;
	default: /* HASH, NOOP */
		break;
	}
}

static void write_cmd(struct kv_writer *w, const struct kv_cmd *cmd)
{
	kvw_u64(w, cmd->id.client);
	kvw_u64(w, cmd->id.seq);
	write_op(w, &cmd->op);
}

static size_t cmd_size(const struct kv_cmd *cmd)
{
	struct kv_writer w = {0};
	write_cmd(&w, cmd);
	return w.len;
}

static void write_header(struct kv_writer *w, uint64_t time_ms, unsigned n)
{
	kvw_raw(w, KV_BATCH_MAGIC, 4);
	kvw_u16(w, KV_BATCH_VERSION);
	kvw_u16(w, 0);
	kvw_u64(w, time_ms);
	kvw_u32(w, n);
}

int kv_encode_cmd(const struct kv_cmd *cmd, void **buf, size_t *len)
{
	const char *why;
	struct kv_writer w = {0};

	if (kv_validate_op(&cmd->op, false, &why) != KV_OK) {
		return KV_EMALFORMED;
	}
	w.cap = cmd_size(cmd);
	if (w.cap > UINT32_MAX) {
		return KV_EMALFORMED; /* could not be framed in a batch */
	}
	w.data = malloc(w.cap);
	if (w.data == NULL) {
		return KV_ENOMEM;
	}
	write_cmd(&w, cmd);
	*buf = w.data;
	*len = w.len;
	return KV_OK;
}

static size_t pad8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

int kv_encode_batch(const struct kv_cmd *cmds, unsigned n, uint64_t time_ms, void **buf,
                    size_t *len)
{
	const char *why;
	struct kv_writer w = {0};
	size_t total = KV_BATCH_HEADER_LEN;

	if (n > 0 && cmds == NULL) {
		return KV_EMALFORMED;
	}
	for (unsigned i = 0; i < n; i++) {
		size_t size;
		if (kv_validate_op(&cmds[i].op, false, &why) != KV_OK) {
			return KV_EMALFORMED;
		}
		size = cmd_size(&cmds[i]);
		if (size > UINT32_MAX || total + 4 + size < total) {
			return KV_EMALFORMED;
		}
		total += 4 + size;
	}
	size_t padded = pad8(total);
	w.cap = padded;
	w.data = raft_malloc(padded);
	if (w.data == NULL) {
		return KV_ENOMEM;
	}
	write_header(&w, time_ms, n);
	for (unsigned i = 0; i < n; i++) {
		size_t mark = w.len;
		kvw_u32(&w, 0);
		write_cmd(&w, &cmds[i]);
		kv_put_le32(w.data + mark, (uint32_t)(w.len - mark - 4));
	}
	if (w.overflow || w.len != total) {
		raft_free(w.data);
		return KV_EMALFORMED; /* the sizing pass disagreed: unreachable */
	}
	memset(w.data + total, 0, padded - total);
	*buf = w.data;
	*len = padded;
	return KV_OK;
}

int kv_join_batch(const struct kv_bytes *encoded_cmds, unsigned n, uint64_t time_ms, void **buf,
                  size_t *len)
{
	struct kv_writer w = {0};
	size_t total = KV_BATCH_HEADER_LEN;

	if (n > 0 && encoded_cmds == NULL) {
		return KV_EMALFORMED;
	}
	for (unsigned i = 0; i < n; i++) {
		if (!bytes_ok(encoded_cmds[i]) || total + 4 + encoded_cmds[i].len < total) {
			return KV_EMALFORMED;
		}
		total += 4 + encoded_cmds[i].len;
	}
	size_t padded = pad8(total);
	w.cap = padded;
	w.data = raft_malloc(padded);
	if (w.data == NULL) {
		return KV_ENOMEM;
	}
	write_header(&w, time_ms, n);
	for (unsigned i = 0; i < n; i++) {
		kvw_bytes(&w, encoded_cmds[i].data, encoded_cmds[i].len);
	}
	memset(w.data + w.len, 0, padded - w.len);
	*buf = w.data;
	*len = padded;
	return KV_OK;
}

int kv_split_batch(const void *buf, size_t len, uint64_t *time_ms, struct kv_bytes **cmds,
                   unsigned *n)
{
	struct kv_reader r = {buf, len};
	const uint8_t *magic;
	uint16_t version, flags;
	uint64_t time;
	uint32_t count;
	struct kv_bytes *out = NULL;

	if (buf == NULL || !kvr_take(&r, 4, &magic) || memcmp(magic, KV_BATCH_MAGIC, 4) != 0 ||
	    !kvr_u16(&r, &version) || version != KV_BATCH_VERSION || !kvr_u16(&r, &flags) ||
	    flags != 0 || !kvr_u64(&r, &time) || !kvr_u32(&r, &count)) {
		return KV_EMALFORMED;
	}
	/* Each command takes at least its length prefix. */
	if (count > r.left / 4) {
		return KV_EMALFORMED;
	}
	if (count > 0) {
		out = malloc(count * sizeof *out);
		if (out == NULL) {
			return KV_ENOMEM;
		}
	}
	for (uint32_t i = 0; i < count; i++) {
		if (!kvr_bytes(&r, &out[i])) {
			free(out);
			return KV_EMALFORMED;
		}
	}
	/* Only the padding may follow the last command: the zero bytes that make the length a
	 * multiple of 8, no more, so that the encoding stays canonical. */
	bool padding_ok = r.left < 8 && len % 8 == 0;
	for (size_t i = 0; padding_ok && i < r.left; i++) {
		padding_ok = r.p[i] == 0;
	}
	if (!padding_ok) {
		free(out);
		return KV_EMALFORMED;
	}
	*time_ms = time;
	*cmds = out;
	*n = count;
	return KV_OK;
}

int kv_cmd_reqid(struct kv_bytes encoded_cmd, struct kv_reqid *id)
{
	struct kv_reader r = {encoded_cmd.data, encoded_cmd.len};
	uint64_t client, seq;

	if (encoded_cmd.data == NULL || !kvr_u64(&r, &client) || !kvr_u64(&r, &seq)) {
		return KV_EMALFORMED;
	}
	id->client = client;
	id->seq = seq;
	return KV_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Decoding                                                                                    */

#define BAD(msg)                                                                                   \
	do {                                                                                       \
		*why = (msg);                                                                      \
		return false;                                                                      \
	} while (0)

static bool read_key_op(struct kv_reader *r, struct kv_op *op, uint8_t allowed_flags,
                        const char **why)
{
	uint8_t flags;

	if (!kvr_u8(r, &op->space) || !kvr_u8(r, &flags) || !kvr_bytes(r, &op->key)) {
		BAD("truncated op");
	}
	if ((flags & ~allowed_flags) != 0) {
		BAD("unknown op flags");
	}
	op->prefix = (flags & OPF_PREFIX) != 0;
	op->has_prev = (flags & OPF_HAS_PREV) != 0;
	return true;
}

/* A PUT, DEL, GET, HASH or NOOP (a TXN is handled by read_txn). */
static bool read_simple_op(struct kv_reader *r, struct kv_op *op, const char **why)
{
	memset(op, 0, sizeof *op);
	if (!kvr_u8(r, &op->type)) {
		BAD("truncated op");
	}
	switch (op->type) {
	case KV_OP_PUT:
		if (!read_key_op(r, op, OPF_HAS_PREV, why)) {
			return false;
		}
		if (!kvr_bytes(r, &op->value) ||
		    (op->has_prev && !kvr_i64(r, &op->prev_revision))) {
			BAD("truncated op");
		}
		return true;
	case KV_OP_DEL:
		return read_key_op(r, op, OPF_PREFIX, why);
	case KV_OP_GET:
		if (!read_key_op(r, op, OPF_PREFIX, why)) {
			return false;
		}
		if (!kvr_i64(r, &op->limit)) {
			BAD("truncated op");
		}
		return true;
	case KV_OP_HASH:
	case KV_OP_NOOP:
		return true;
	case KV_OP_CALL:
		if (!kvr_u16(r, &op->call) || !kvr_bytes(r, &op->value)) {
			BAD("truncated op");
		}
		return true;
	case KV_OP_TXN:
		BAD("nested transaction");
	default:
		BAD("unknown op type");
	}
}

static bool read_cmp(struct kv_reader *r, struct kv_cmp *c, const char **why)
{
	memset(c, 0, sizeof *c);
	if (!kvr_bytes(r, &c->key) || !kvr_u8(r, &c->target) || !kvr_u8(r, &c->result)) {
		BAD("truncated compare");
	}
	if (c->target == KV_CMP_VALUE) {
		if (!kvr_bytes(r, &c->value)) {
			BAD("truncated compare");
		}
	} else if (!kvr_i64(r, &c->number)) {
		BAD("truncated compare");
	}
	return true;
}

/* Read the three lists of a TXN. With cmps/ops NULL (the sizing pass) elements are decoded into
 * a scratch variable and only counted; the caller then allocates and reads again. */
static bool read_txn_lists(struct kv_reader *r, struct kv_op *op, struct kv_cmp *cmps,
                           struct kv_op *ops, const char **why)
{
	uint32_t n;
	struct kv_cmp cmp_scratch;
	struct kv_op op_scratch;

	if (!kvr_u32(r, &n)) {
		BAD("truncated transaction");
	}
	if (n > r->left / MIN_CMP_LEN) {
		BAD("compare count exceeds the command");
	}
	op->n_cmps = n;
	for (uint32_t i = 0; i < n; i++) {
		if (!read_cmp(r, cmps != NULL ? &cmps[i] : &cmp_scratch, why)) {
			return false;
		}
	}
	for (int branch = 0; branch < 2; branch++) {
		struct kv_op *list = ops == NULL ? NULL : ops + (branch == 0 ? 0 : op->n_success);
		if (!kvr_u32(r, &n)) {
			BAD("truncated transaction");
		}
		if (n > r->left / MIN_TXN_OP_LEN) {
			BAD("op count exceeds the command");
		}
		if (branch == 0) {
			op->n_success = n;
		} else {
			op->n_failure = n;
		}
		for (uint32_t i = 0; i < n; i++) {
			if (!read_simple_op(r, list != NULL ? &list[i] : &op_scratch, why)) {
				return false;
			}
		}
	}
	return true;
}

int kv_decode_cmd(struct kv_bytes in, struct kv_cmd *cmd, void **mem, const char **why)
{
	struct kv_reader r = {in.data, in.len};
	struct kv_op *op = &cmd->op;
	uint8_t type;

	memset(cmd, 0, sizeof *cmd);
	*mem = NULL;
	if (in.data == NULL || !kvr_u64(&r, &cmd->id.client) || !kvr_u64(&r, &cmd->id.seq) ||
	    r.left == 0) {
		*why = "truncated command";
		return KV_EMALFORMED;
	}
	type = r.p[0];
	if (type != KV_OP_TXN) {
		if (!read_simple_op(&r, op, why)) {
			return KV_EMALFORMED;
		}
	} else {
		struct kv_reader lists;
		size_t n_cmps, n_ops;
		struct kv_cmp *cmps;
		struct kv_op *ops;

		r.p++;
		r.left--;
		op->type = KV_OP_TXN;
		if (!kvr_u8(&r, &op->space)) {
			*why = "truncated transaction";
			return KV_EMALFORMED;
		}
		lists = r;
		if (!read_txn_lists(&r, op, NULL, NULL, why)) {
			return KV_EMALFORMED;
		}
		n_cmps = op->n_cmps;
		n_ops = (size_t)op->n_success + op->n_failure;
		if (n_cmps + n_ops > 0) {
			/* The ops follow the compares in one block; kv_op is the stricter
			 * alignment. */
			size_t cmp_bytes = n_cmps * sizeof(struct kv_cmp);
			cmp_bytes = (cmp_bytes + _Alignof(struct kv_op) - 1) /
			            _Alignof(struct kv_op) * _Alignof(struct kv_op);
			*mem = malloc(cmp_bytes + n_ops * sizeof(struct kv_op));
			if (*mem == NULL) {
				return KV_ENOMEM;
			}
			cmps = *mem;
			ops = (struct kv_op *)((uint8_t *)*mem + cmp_bytes);
			r = lists;
			if (!read_txn_lists(&r, op, cmps, ops, why)) {
				goto err; /* unreachable: the first pass accepted the same bytes */
			}
			op->cmps = n_cmps > 0 ? cmps : NULL;
			op->success = op->n_success > 0 ? ops : NULL;
			op->failure = op->n_failure > 0 ? ops + op->n_success : NULL;
		}
	}
	if (r.left != 0) {
		*why = "trailing bytes after the command";
		goto err;
	}
	if (kv_validate_op(op, false, why) != KV_OK) {
		goto err;
	}
	return KV_OK;

err:
	free(*mem);
	*mem = NULL;
	return KV_EMALFORMED;
}

/* ------------------------------------------------------------------------------------------ */
/* Results                                                                                     */

void kv_encode_result(struct kv_writer *w, const struct kv_result *r)
{
	size_t msg_len = r->message != NULL ? strlen(r->message) : 0;

	kvw_u8(w, r->status);
	kvw_u8(w, r->succeeded ? 1 : 0);
	kvw_i64(w, r->revision);
	kvw_u64(w, r->hash);
	kvw_bytes(w, r->message, msg_len);
	kvw_bytes(w, r->reply, r->reply_len);
	kvw_u32(w, r->n_ops);
	for (unsigned i = 0; i < r->n_ops; i++) {
		const struct kv_op_result *o = &r->ops[i];
		kvw_u8(w, o->type);
		kvw_u8(w, o->more ? 1 : 0);
		kvw_i64(w, o->revision);
		kvw_i64(w, o->deleted);
		kvw_u32(w, o->n_kvs);
		for (unsigned j = 0; j < o->n_kvs; j++) {
			const struct kv_kv *kv = &o->kvs[j];
			kvw_bytes(w, kv->key, kv->key_len);
			kvw_bytes(w, kv->value, kv->value_len);
			kvw_i64(w, kv->create_revision);
			kvw_i64(w, kv->mod_revision);
			kvw_i64(w, kv->version);
		}
	}
}

/* A malloc()ed copy that is never NULL, so consumers may pass it to functions that reject NULL
 * even for zero lengths. */
static uint8_t *dup_bytes(struct kv_bytes b)
{
	uint8_t *p = malloc(b.len > 0 ? b.len : 1);
	if (p != NULL && b.len > 0) {
		memcpy(p, b.data, b.len);
	}
	return p;
}

int kv_decode_result(const uint8_t *p, size_t len, struct kv_result *out)
{
	struct kv_reader r = {p, len};
	struct kv_result res;
	uint8_t succeeded;
	struct kv_bytes msg, reply;
	uint32_t n_ops;
	int rv = KV_EMALFORMED;

	memset(&res, 0, sizeof res);
	if (p == NULL || !kvr_u8(&r, &res.status) || res.status > KV_R_REFUSED ||
	    !kvr_u8(&r, &succeeded) || succeeded > 1 || !kvr_i64(&r, &res.revision) ||
	    !kvr_u64(&r, &res.hash) || !kvr_bytes(&r, &msg) || !kvr_bytes(&r, &reply) ||
	    !kvr_u32(&r, &n_ops) || n_ops > r.left / MIN_RES_OP_LEN) {
		return KV_EMALFORMED;
	}
	res.succeeded = succeeded;
	if (out != NULL && reply.len > 0) {
		res.reply = dup_bytes(reply);
		if (res.reply == NULL) {
			return KV_ENOMEM;
		}
		res.reply_len = reply.len;
	}
	if (out != NULL) {
		if (msg.len > 0) {
			res.message = malloc(msg.len + 1);
			if (res.message == NULL) {
				rv = KV_ENOMEM;
				goto err;
			}
			memcpy(res.message, msg.data, msg.len);
			res.message[msg.len] = '\0';
		}
		if (n_ops > 0) {
			res.ops = calloc(n_ops, sizeof *res.ops);
			if (res.ops == NULL) {
				rv = KV_ENOMEM;
				goto err;
			}
		}
		res.n_ops = n_ops;
	}
	for (uint32_t i = 0; i < n_ops; i++) {
		struct kv_op_result o = {0};
		uint8_t more;
		uint32_t n_kvs;

		if (!kvr_u8(&r, &o.type) || !kvr_u8(&r, &more) || more > 1 ||
		    !kvr_i64(&r, &o.revision) || !kvr_i64(&r, &o.deleted) || !kvr_u32(&r, &n_kvs) ||
		    n_kvs > r.left / MIN_RES_KV_LEN) {
			goto err;
		}
		o.more = more;
		if (out != NULL && n_kvs > 0) {
			o.kvs = calloc(n_kvs, sizeof *o.kvs);
			if (o.kvs == NULL) {
				rv = KV_ENOMEM;
				goto err;
			}
		}
		if (out != NULL) {
			res.ops[i] = o; /* owned by res from here on, so err frees it */
		}
		for (uint32_t j = 0; j < n_kvs; j++) {
			struct kv_bytes key, value;
			int64_t create, mod, version;

			if (!kvr_bytes(&r, &key) || !kvr_bytes(&r, &value) ||
			    !kvr_i64(&r, &create) || !kvr_i64(&r, &mod) || !kvr_i64(&r, &version)) {
				goto err;
			}
			if (out != NULL) {
				struct kv_kv *kv = &res.ops[i].kvs[j];
				kv->key = dup_bytes(key);
				kv->value = dup_bytes(value);
				res.ops[i].n_kvs = j + 1;
				if (kv->key == NULL || kv->value == NULL) {
					rv = KV_ENOMEM;
					goto err;
				}
				kv->key_len = key.len;
				kv->value_len = value.len;
				kv->create_revision = create;
				kv->mod_revision = mod;
				kv->version = version;
			}
		}
	}
	if (r.left != 0) {
		goto err;
	}
	if (out != NULL) {
		*out = res;
	}
	return KV_OK;

err:
	kv_result_free(&res);
	return rv;
}
