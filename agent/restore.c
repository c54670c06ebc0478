/*
 * tabby agent --restore FILE: a member started from a backup (internal.h says what each call
 * does; docs/operations.md, "Restoring from a backup", how an operator uses it).
 *
 * A restore makes a new cluster, as etcd's snapshot restore does, never a member of the old one:
 * the old cluster may still run (a restore that undoes an operator's mistake), and its members,
 * with their longer logs and later terms, would overwrite the restored state if they could reach
 * it. So the restored member takes a new cluster id, which its raft connections and requests
 * carry and the old members refuse, and is the only voter of its configuration. Every other
 * member record of the backup stays, as after a recovery from a lost quorum: each such host
 * joins again under its name and keeps its block affinities and containers' addresses; hosts
 * gone for good are removed with tabby cluster remove, which releases their addresses.
 *
 * The one change made to the backup's state is this member's record, when the operator gives
 * addresses other than the recorded ones (a replacement host). Nobody else knows this cluster
 * yet, so this is the one moment an address may change. The change is applied to the state
 * like any write, so the restored state is at the backup's revision plus one.
 *
 * Order on disk: node.json first, then the raft state (store_restore(), which puts it in place
 * in one rename). A restore cut short before the rename leaves no raft state, and a start with
 * the same flag restores again; node.json alone means nothing without it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <raft.h>

#include "agent/internal.h"
#include "store/kv.h"

/* The backup file, whole. */
static int read_backup(const char *file, void **buf, size_t *len, char **why)
{
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		agent_set_why(why, "%s: %s", file, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		agent_set_why(why, "%s: %s", file, strerror(errno));
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		agent_set_why(why, "%s: not a regular file", file);
		close(fd);
		return -1;
	}
	size_t size = (size_t)st.st_size;
	uint8_t *p = malloc(size ? size : 1);
	if (p == NULL) {
		agent_set_why(why, "%s: out of memory for %zu bytes", file, size);
		close(fd);
		return -1;
	}
	size_t got = 0;
	while (got < size) {
		ssize_t n = read(fd, p + got, size - got);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			agent_set_why(why, "%s: %s", file,
			              n < 0 ? strerror(errno) : "shorter than its size");
			free(p);
			close(fd);
			return -1;
		}
		got += (size_t)n;
	}
	close(fd);
	*buf = p;
	*len = size;
	return 0;
}

static void cluster_hex(const uint8_t id[STORE_CLUSTER_ID_LEN],
                        char out[2 * STORE_CLUSTER_ID_LEN + 1])
{
	static const uint8_t zero[STORE_CLUSTER_ID_LEN];
	if (memcmp(id, zero, sizeof zero) == 0) {
		snprintf(out, 2 * STORE_CLUSTER_ID_LEN + 1, "none");
		return;
	}
	for (size_t i = 0; i < STORE_CLUSTER_ID_LEN; i++) {
		snprintf(out + 2 * i, 3, "%02x", id[i]);
	}
}

/* The backup read and checked: its description and the length of its state. */
static int open_backup(const char *file, void **buf, size_t *len, struct store_backup_info *info,
                       size_t *state_len, char **why)
{
	if (read_backup(file, buf, len, why) != 0) {
		return -1;
	}
	char reason[256];
	if (store_backup_open(*buf, *len, info, state_len, reason, sizeof reason) != STORE_OK) {
		agent_set_why(why, "%s: %s", file, reason);
		free(*buf);
		*buf = NULL;
		return -1;
	}
	return 0;
}

int agent_restore_again(struct agent *a, const char *file, char **why)
{
	void *buf = NULL;
	size_t len, state_len;
	struct store_backup_info info;
	if (open_backup(file, &buf, &len, &info, &state_len, why) != 0) {
		return -1;
	}
	free(buf);
	char hex[2 * STORE_CLUSTER_ID_LEN + 1];
	cluster_hex(info.cluster_id, hex);
	if (a->restored && strcmp(a->restored_cluster, hex) == 0 &&
	    a->restored_revision == info.revision) {
		agent_log("--restore %s: this member was restored from that backup (cluster %s, "
		          "revision %lld) at an earlier start and is in cluster %s; not restoring "
		          "again (start it without the flag)",
		          file, hex, (long long)info.revision,
		          a->cluster_hex[0] ? a->cluster_hex : "none");
		return 0;
	}
	agent_set_why(
	    why,
	    "--restore %s: %s already holds the state of member %s in cluster %s, and a "
	    "restore starts a member from an empty data directory. To restore on this host, "
	    "stop here, move %s aside (keep it until the restored cluster is healthy) and "
	    "start again",
	    file, a->data_dir, a->name, a->cluster_hex[0] ? a->cluster_hex : "none", a->data_dir);
	return -1;
}

/* The backup's member records, parsed. */
static int backup_members(struct kv *kv, struct member_rec **out, unsigned *n, char **why)
{
	struct kv_kv *kvs = NULL;
	unsigned nk = 0;
	bool more;
	int64_t rev;
	struct kv_bytes prefix = {(const uint8_t *)SYS_MEMBER_PREFIX, strlen(SYS_MEMBER_PREFIX)};
	if (kv_range(kv, KV_SPACE_SYS, prefix, true, 0, &kvs, &nk, &more, &rev) != KV_OK) {
		agent_set_why(why, "reading the backup's member records: %s", kv_errmsg(kv));
		return -1;
	}
	if (agent_members_parse(kvs, nk, out, n) != 0) {
		agent_set_why(why, "out of memory");
		return -1;
	}
	return 0;
}

/* Put this member's changed record into the restored state, as a write at the next revision. */
static int put_record(struct kv *kv, const struct member_rec *m, char **why)
{
	char key[256];
	snprintf(key, sizeof key, SYS_MEMBER_PREFIX "%s", m->name);
	char *js = member_json(m);
	if (js == NULL) {
		agent_set_why(why, "out of memory");
		return -1;
	}
	struct kv_cmd cmd = {.op = {.type = KV_OP_PUT,
	                            .space = KV_SPACE_SYS,
	                            .key = {(const uint8_t *)key, strlen(key)},
	                            .value = {(const uint8_t *)js, strlen(js)}}};
	struct timeval tv;
	gettimeofday(&tv, NULL);
	uint64_t now_ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
	void *batch = NULL;
	size_t blen = 0;
	struct kv_apply_out out = {0};
	int rv = kv_encode_batch(&cmd, 1, now_ms, &batch, &blen);
	free(js);
	if (rv != KV_OK) {
		agent_set_why(why, "encoding this member's record failed");
		return -1;
	}
	rv = kv_apply(kv, batch, blen, &out);
	raft_free(batch);
	bool ok = rv == KV_OK && out.n_results == 1 && out.results[0].status == KV_R_OK;
	kv_apply_out_free(&out);
	if (!ok) {
		agent_set_why(why, "writing this member's record into the restored state: %s",
		              kv_errmsg(kv));
		return -1;
	}
	return 0;
}

/* The state to start from: the backup's, with this member's record taking given addresses.
 * Sets a's identity from the record. The scratch LMDB lives where the store's will (kv_open()
 * discards whatever a directory held, and raft restores the snapshot into it at start). */
static int restored_state(struct agent *a, const void *state, size_t len, bool peer_given,
                          bool api_given, void **snap_buf, size_t *snap_len, int64_t *revision,
                          char **why)
{
	char dir[PATH_MAX];
	struct kv *kv = NULL;
	struct kv_config cfg = {0};
	struct member_rec *ms = NULL;
	unsigned n = 0;
	int rv = -1;

	snprintf(dir, sizeof dir, "%s/state", a->data_dir);
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		agent_set_why(why, "%s: %s", dir, strerror(errno));
		return -1;
	}
	int krv = kv_open(&kv, dir, &cfg);
	if (krv != KV_OK) {
		agent_set_why(why, "opening a state database in %s: %s", dir,
		              krv < 0 ? strerror(-krv) : "LMDB failed");
		return -1;
	}
	if (kv_restore(kv, state, len) != KV_OK) {
		agent_set_why(why, "the backup's state cannot be restored: %s", kv_errmsg(kv));
		goto out;
	}
	if (backup_members(kv, &ms, &n, why) != 0) {
		goto out;
	}
	struct member_rec *me = NULL;
	for (unsigned i = 0; i < n; i++) {
		if (strcmp(ms[i].name, a->name) == 0) {
			me = &ms[i];
		}
	}
	if (me == NULL) {
		char names[1024] = "";
		size_t at = 0;
		for (unsigned i = 0; i < n && at < sizeof names; i++) {
			at += (size_t)snprintf(names + at, sizeof names - at, "%s%s", i ? ", " : "",
			                       ms[i].name);
		}
		if (n == 0) {
			agent_set_why(
			    why, "the backup holds no member records: it cannot start a member");
		} else {
			agent_set_why(
			    why,
			    "the backup has no member named '%s'; its members are %s. Restore as "
			    "one of them (--name): the restored member takes that member's id and "
			    "records; new hosts join the restored cluster afterwards",
			    a->name, names);
		}
		goto out;
	}
	const struct {
		bool given;
		const char *flag;
		char **have;
		char *stored;
		size_t size;
	} addrs[] = {
	    {peer_given, "--peer-address", &a->peer_address, me->peer_address,
	     sizeof me->peer_address},
	    {api_given, "--api-address", &a->api_address, me->api_address, sizeof me->api_address},
	};
	bool changed = false;
	for (size_t k = 0; k < 2; k++) {
		if (!addrs[k].given || strcmp(*addrs[k].have, addrs[k].stored) == 0) {
			continue;
		}
		for (unsigned i = 0; i < n; i++) {
			if (&ms[i] != me && (strcmp(ms[i].peer_address, *addrs[k].have) == 0 ||
			                     strcmp(ms[i].api_address, *addrs[k].have) == 0)) {
				agent_set_why(
				    why,
				    "%s %s is an address of member %s in the backup: two members "
				    "cannot share one. Give this member an address of its own, or "
				    "restore as %s",
				    addrs[k].flag, *addrs[k].have, ms[i].name, ms[i].name);
				goto out;
			}
		}
		if (strlen(*addrs[k].have) >= addrs[k].size) {
			agent_set_why(why, "%s %s is too long", addrs[k].flag, *addrs[k].have);
			goto out;
		}
		agent_log("restore: member %s moves from %s %s to %s", me->name, addrs[k].flag + 2,
		          addrs[k].stored, *addrs[k].have);
		snprintf(addrs[k].stored, addrs[k].size, "%s", *addrs[k].have);
		changed = true;
	}
	if (changed && put_record(kv, me, why) != 0) {
		goto out;
	}
	char *peer = strdup(me->peer_address), *api = strdup(me->api_address);
	if (peer == NULL || api == NULL) {
		free(peer);
		free(api);
		agent_set_why(why, "out of memory");
		goto out;
	}
	free(a->peer_address);
	free(a->api_address);
	a->peer_address = peer;
	a->api_address = api;
	a->id = me->id;

	struct kv_snapshot *snap = NULL;
	if (kv_snapshot_begin(kv, &snap) != KV_OK) {
		agent_set_why(why, "reading the restored state: %s", kv_errmsg(kv));
		goto out;
	}
	krv = kv_snapshot_write(snap, snap_buf, snap_len);
	kv_snapshot_end(snap);
	if (krv != KV_OK) {
		agent_set_why(why, "serializing the restored state: %s", kv_errmsg(kv));
		goto out;
	}
	*revision = kv_revision(kv);
	rv = 0;
out:
	free(ms);
	kv_close(kv);
	return rv;
}

int agent_restore(struct agent *a, const char *file, bool peer_given, bool api_given, char **why)
{
	void *buf = NULL, *snap = NULL;
	size_t len, state_len, snap_len = 0;
	struct store_backup_info info;
	int64_t revision = 0;
	char *err = NULL;
	int rv = -1;

	if (open_backup(file, &buf, &len, &info, &state_len, why) != 0) {
		return -1;
	}
	if (restored_state(a, buf, state_len, peer_given, api_given, &snap, &snap_len, &revision,
	                   why) != 0) {
		goto out;
	}
	free(buf);
	buf = NULL;
	if ((rv = agent_new_cluster_id(a)) != 0) {
		agent_set_why(why, "getrandom: %s", strerror(-rv));
		rv = -1;
		goto out;
	}
	a->restored = true;
	cluster_hex(info.cluster_id, a->restored_cluster);
	a->restored_revision = info.revision;
	if ((rv = agent_save_identity(a)) != 0) {
		agent_set_why(why, "cannot write %s/node.json: %s", a->data_dir, strerror(-rv));
		rv = -1;
		goto out;
	}
	if (store_restore(a->data_dir, a->id, a->peer_address, snap, snap_len, &err) != STORE_OK) {
		agent_set_why(why, "%s", err ? err : "writing the raft state failed");
		free(err);
		rv = -1;
		goto out;
	}
	char when[64] = "an unknown time";
	time_t t = (time_t)(info.taken_at_ms / 1000);
	struct tm tm;
	if (gmtime_r(&t, &tm) != NULL) {
		strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	}
	agent_log("restored from %s: the state of cluster %s at revision %lld, taken on member %s "
	          "at %s by Tabby %s. This member, %s (id %llu), is the only voter of the new "
	          "cluster %s, at revision %lld. The backup's other members join it again "
	          "(docs/operations.md, \"Restoring from a backup\"); remove the ones gone for "
	          "good with tabby cluster remove NAME",
	          file, a->restored_cluster, (long long)info.revision, info.member, when,
	          info.version[0] ? info.version : "?", a->name, (unsigned long long)a->id,
	          a->cluster_hex, (long long)revision);
	rv = 0;
out:
	free(buf);
	free(snap);
	return rv;
}
