/*
 * Backup files (store.h says what is in one). The trailer is a fixed binary layout rather than
 * JSON so that the store, which reads and writes it, stays free of a JSON library, and so that a
 * reader can find it from the end of the file without scanning.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/kv_internal.h"
#include "store/store.h"

#define BACKUP_MAGIC     "TABBYBK1"
#define BACKUP_MAGIC_LEN 8
/* The fixed part of the trailer: cluster id, revision, time, and the two length bytes. */
#define TRAILER_FIXED (STORE_CLUSTER_ID_LEN + 8 + 8 + 1 + 1)
/* After the trailer: its length (u32), its checksum (u64) and the magic. */
#define TAIL_LEN (4 + 8 + BACKUP_MAGIC_LEN)

static bool text_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
			return false;
		}
	}
	return true;
}

int store_backup_seal(void **buf, size_t *len, const struct store_backup_info *info)
{
	size_t ml = strnlen(info->member, sizeof info->member);
	size_t vl = strnlen(info->version, sizeof info->version);
	if (ml == 0 || ml >= sizeof info->member || vl >= sizeof info->version ||
	    !text_ok(info->member, ml) || !text_ok(info->version, vl)) {
		return STORE_EINVAL;
	}
	size_t tl = TRAILER_FIXED + ml + vl;
	uint8_t *p = realloc(*buf, *len + tl + TAIL_LEN);
	if (p == NULL) {
		return STORE_ENOMEM;
	}
	*buf = p;
	uint8_t *t = p + *len;
	uint8_t *w = t;
	memcpy(w, info->cluster_id, STORE_CLUSTER_ID_LEN);
	w += STORE_CLUSTER_ID_LEN;
	kv_put_le64(w, (uint64_t)info->revision);
	w += 8;
	kv_put_le64(w, info->taken_at_ms);
	w += 8;
	*w++ = (uint8_t)ml;
	memcpy(w, info->member, ml);
	w += ml;
	*w++ = (uint8_t)vl;
	memcpy(w, info->version, vl);
	w += vl;
	kv_put_le32(w, (uint32_t)tl);
	kv_put_le64(w + 4, kv_fnv1a64(KV_FNV_OFFSET, t, tl));
	memcpy(w + 12, BACKUP_MAGIC, BACKUP_MAGIC_LEN);
	*len += tl + TAIL_LEN;
	return STORE_OK;
}

int store_backup_open(const void *buf, size_t len, struct store_backup_info *info,
                      size_t *state_len, char *why, size_t why_len)
{
	const uint8_t *p = buf;
	memset(info, 0, sizeof *info);
	*state_len = 0;
	if (len < TAIL_LEN ||
	    memcmp(p + len - BACKUP_MAGIC_LEN, BACKUP_MAGIC, BACKUP_MAGIC_LEN) != 0) {
		snprintf(
		    why, why_len,
		    "it is not a Tabby backup (it does not end with the backup file's marker; a "
		    "file cut short ends elsewhere)");
		return STORE_EINVAL;
	}
	const uint8_t *tail = p + len - TAIL_LEN;
	uint32_t tl = kv_get_le32(tail);
	if (tl < TRAILER_FIXED || tl > len - TAIL_LEN) {
		snprintf(why, why_len,
		         "its description of the backup has a wrong length (%u bytes)",
		         (unsigned)tl);
		return STORE_EINVAL;
	}
	const uint8_t *t = tail - tl;
	if (kv_get_le64(tail + 4) != kv_fnv1a64(KV_FNV_OFFSET, t, tl)) {
		snprintf(why, why_len,
		         "its description of the backup fails its checksum: the file "
		         "is damaged");
		return STORE_EINVAL;
	}
	const uint8_t *r = t;
	memcpy(info->cluster_id, r, STORE_CLUSTER_ID_LEN);
	r += STORE_CLUSTER_ID_LEN;
	info->revision = (int64_t)kv_get_le64(r);
	r += 8;
	info->taken_at_ms = kv_get_le64(r);
	r += 8;
	size_t ml = *r++;
	if (ml == 0 || ml >= sizeof info->member || (size_t)(r - t) + ml + 1 > tl) {
		goto layout;
	}
	memcpy(info->member, r, ml);
	r += ml;
	size_t vl = *r++;
	if (vl >= sizeof info->version || (size_t)(r - t) + vl != tl) {
		goto layout;
	}
	memcpy(info->version, r, vl);
	if (!text_ok(info->member, ml) || !text_ok(info->version, vl) || info->revision < 0) {
		goto layout;
	}
	size_t sl = len - TAIL_LEN - tl;
	if (kv_snapshot_intact(p, sl) != KV_OK) {
		snprintf(why, why_len, "its state fails its checksum: the file is damaged");
		return STORE_EINVAL;
	}
	*state_len = sl;
	return STORE_OK;

layout:
	memset(info, 0, sizeof *info);
	snprintf(why, why_len, "its description of the backup has a wrong layout");
	return STORE_EINVAL;
}
