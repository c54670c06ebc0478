/*
 * Private helpers shared by kv.c and codec.c (and the fuzz target): fixed-width integer access,
 * a bounds-checked reader, a sizing/writing writer, the command and result codecs, and the hash.
 * Nothing here is part of the store's face; kv.h is.
 */
#ifndef TABBY_STORE_KV_INTERNAL_H
#define TABBY_STORE_KV_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "store/kv.h"

/* ------------------------------------------------------------------------------------------ */
/* Byte order. Everything the state machine serializes is little-endian, except LMDB keys that
 * must sort numerically (history and expiry keys), which are big-endian.                     */

static inline void kv_put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++) {
		p[i] = (uint8_t)(v >> (8 * i));
	}
}

static inline void kv_put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++) {
		p[i] = (uint8_t)(v >> (8 * i));
	}
}

static inline uint32_t kv_get_le32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--) {
		v = (v << 8) | p[i];
	}
	return v;
}

static inline uint64_t kv_get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--) {
		v = (v << 8) | p[i];
	}
	return v;
}

static inline void kv_put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++) {
		p[i] = (uint8_t)(v >> (8 * (3 - i)));
	}
}

static inline void kv_put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++) {
		p[i] = (uint8_t)(v >> (8 * (7 - i)));
	}
}

static inline uint64_t kv_get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++) {
		v = (v << 8) | p[i];
	}
	return v;
}

/* ------------------------------------------------------------------------------------------ */
/* Reader: every access checks the remaining length first, so no input can make it read out of
 * bounds. A failed read leaves the reader unchanged.                                          */

struct kv_reader {
	const uint8_t *p;
	size_t left;
};

static inline bool kvr_take(struct kv_reader *r, size_t n, const uint8_t **out)
{
	if (r->left < n) {
		return false;
	}
	*out = r->p;
	r->p += n;
	r->left -= n;
	return true;
}

static inline bool kvr_u8(struct kv_reader *r, uint8_t *v)
{
	const uint8_t *p;
	if (!kvr_take(r, 1, &p)) {
		return false;
	}
	*v = p[0];
	return true;
}

static inline bool kvr_u16(struct kv_reader *r, uint16_t *v)
{
	const uint8_t *p;
	if (!kvr_take(r, 2, &p)) {
		return false;
	}
	*v = (uint16_t)(p[0] | (p[1] << 8));
	return true;
}

static inline bool kvr_u32(struct kv_reader *r, uint32_t *v)
{
	const uint8_t *p;
	if (!kvr_take(r, 4, &p)) {
		return false;
	}
	*v = kv_get_le32(p);
	return true;
}

static inline bool kvr_u64(struct kv_reader *r, uint64_t *v)
{
	const uint8_t *p;
	if (!kvr_take(r, 8, &p)) {
		return false;
	}
	*v = kv_get_le64(p);
	return true;
}

static inline bool kvr_i64(struct kv_reader *r, int64_t *v)
{
	uint64_t u;
	if (!kvr_u64(r, &u)) {
		return false;
	}
	*v = (int64_t)u;
	return true;
}

/* A u32 length followed by that many bytes. */
static inline bool kvr_bytes(struct kv_reader *r, struct kv_bytes *b)
{
	struct kv_reader save = *r;
	uint32_t n;
	const uint8_t *p;
	if (!kvr_u32(r, &n) || !kvr_take(r, n, &p)) {
		*r = save;
		return false;
	}
	b->data = p;
	b->len = n;
	return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Writer. With data == NULL it only counts, so every encoder runs twice: once to size the
 * buffer exactly, once to fill it. Writing past cap is a bug in the sizing pass; the writer
 * then refuses and sets overflow instead of corrupting memory.                               */

struct kv_writer {
	uint8_t *data;
	size_t len;
	size_t cap;
	bool overflow;
};

static inline void kvw_raw(struct kv_writer *w, const void *p, size_t n)
{
	if (w->data != NULL) {
		if (w->overflow || w->cap - w->len < n) {
			w->overflow = true;
			return;
		}
		if (n > 0) {
			memcpy(w->data + w->len, p, n);
		}
	}
	w->len += n;
}

static inline void kvw_u8(struct kv_writer *w, uint8_t v)
{
	kvw_raw(w, &v, 1);
}

static inline void kvw_u16(struct kv_writer *w, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
	kvw_raw(w, b, 2);
}

static inline void kvw_u32(struct kv_writer *w, uint32_t v)
{
	uint8_t b[4];
	kv_put_le32(b, v);
	kvw_raw(w, b, 4);
}

static inline void kvw_u64(struct kv_writer *w, uint64_t v)
{
	uint8_t b[8];
	kv_put_le64(b, v);
	kvw_raw(w, b, 8);
}

static inline void kvw_i64(struct kv_writer *w, int64_t v)
{
	kvw_u64(w, (uint64_t)v);
}

/* Callers check that n fits in 32 bits before encoding. */
static inline void kvw_bytes(struct kv_writer *w, const void *p, size_t n)
{
	kvw_u32(w, (uint32_t)n);
	kvw_raw(w, p, n);
}

/* ------------------------------------------------------------------------------------------ */
/* Hash: FNV-1a 64 (Fowler/Noll/Vo, offset basis 14695981039346656037, prime 1099511628211),
 * byte by byte over a canonical serialization. Chosen because it is fully specified, trivial
 * to reimplement in a checker, and identical on every host; it is not a cryptographic hash. */

#define KV_FNV_OFFSET 0xcbf29ce484222325ULL
#define KV_FNV_PRIME  0x100000001b3ULL

static inline uint64_t kv_fnv1a64(uint64_t h, const void *data, size_t n)
{
	const uint8_t *p = data;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= KV_FNV_PRIME;
	}
	return h;
}

/* ------------------------------------------------------------------------------------------ */
/* Codec (codec.c).                                                                            */

/* Check that an op is well-formed: the types allowed at its level, a valid keyspace, keys of
 * 1..KV_KEY_MAX bytes (an empty key only as a prefix), lengths that fit the wire format, no
 * negative limit or revision condition. in_txn: op is a transaction branch op. On failure
 * returns KV_EMALFORMED and sets *why to a static string. */
int kv_validate_op(const struct kv_op *op, bool in_txn, const char **why);

/* Decode one encoded command (the layout is described in codec.c). On KV_OK cmd points into
 * in, and *mem (NULL unless the command is a TXN) holds the compare and op arrays; the caller
 * frees it. KV_EMALFORMED sets *why (static string); KV_ENOMEM. Allocation is bounded by a
 * small multiple of in.len. */
int kv_decode_cmd(struct kv_bytes in, struct kv_cmd *cmd, void **mem, const char **why);

/* Encode a result (status, succeeded, revision, hash, message, ops with their kvs; not id and
 * duplicate) for the de-duplication records. Sizes only when w->data is NULL. */
void kv_encode_result(struct kv_writer *w, const struct kv_result *r);

/* Decode an encoded result into *r (malloc()ed parts; free with kv_result_free), or only
 * validate it when r is NULL. Returns KV_OK, KV_EMALFORMED or KV_ENOMEM. */
int kv_decode_result(const uint8_t *p, size_t len, struct kv_result *r);

/* Batch header layout, shared with the fuzz target's seeds. */
#define KV_BATCH_MAGIC      "TBKV"
#define KV_BATCH_VERSION    1
#define KV_BATCH_HEADER_LEN 20

#endif
