/*
 * tabby backup save | status: a backup of the whole replicated state, as `etcdctl snapshot save`
 * and `etcdctl snapshot status` are for a Calico operator's etcd.
 *
 * save asks the local agent (GET /v1/backup, unix socket only) and writes what it answers to a
 * file whole or not at all: a temporary file in the same directory, flushed, then renamed over the
 * name given, with mode 0600 because the state holds the join token.
 *
 * status needs no agent: it checks the file's checksums, restores its state into a scratch LMDB
 * store in a temporary directory (the same kv_restore() a member runs, so a file that passes
 * would restore on a member), and reports what it holds and the state's hash.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctl/ctl.h"
#include "store/store.h"

/* The largest backup a client reads from an agent (api/client.c's limit on an answer). */
#define BACKUP_MAX ((size_t)256 << 20)

static void hex_of(const uint8_t *id, size_t n, char *out)
{
	bool zero = true;
	for (size_t i = 0; i < n; i++) {
		sprintf(out + 2 * i, "%02x", id[i]);
		zero = zero && id[i] == 0;
	}
	if (zero) {
		strcpy(out, "none");
	}
}

static void time_of(uint64_t ms, char *out, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	if (gmtime_r(&t, &tm) == NULL || strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
		snprintf(out, len, "%" PRIu64 " ms", ms);
	}
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			return n < 0 ? -errno : -EIO;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Write buf to path whole or not at all (see the top of the file). Returns 0 or -errno, with what
 * set to the step that failed. */
static int save_file(const char *path, const void *buf, size_t len, const char **what)
{
	char *dup = strdup(path);
	char *tmp = NULL;
	int fd = -1, dfd = -1, rv;
	if (dup == NULL || asprintf(&tmp, "%s.tmp-%ld", path, (long)getpid()) < 0) {
		tmp = NULL;
		rv = -ENOMEM;
		*what = "preparing";
		goto out;
	}
	*what = "creating a temporary file beside it";
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rv = -errno;
		goto out;
	}
	*what = "writing";
	if ((rv = write_all(fd, buf, len)) != 0) {
		goto out;
	}
	*what = "flushing it to disk";
	if (fsync(fd) != 0) {
		rv = -errno;
		goto out;
	}
	*what = "closing it";
	rv = close(fd) != 0 ? -errno : 0;
	fd = -1;
	if (rv != 0) {
		goto out;
	}
	*what = "renaming the temporary file to it";
	if (rename(tmp, path) != 0) {
		rv = -errno;
		goto out;
	}
	free(tmp);
	tmp = NULL; /* renamed: nothing to remove */
	/* The rename is durable once the directory is. */
	*what = "flushing its directory";
	dfd = open(dirname(dup), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	rv = dfd < 0 || fsync(dfd) != 0 ? -errno : 0;
out:
	if (fd >= 0) {
		close(fd);
	}
	if (dfd >= 0) {
		close(dfd);
	}
	if (tmp != NULL) {
		unlink(tmp);
		free(tmp);
	}
	free(dup);
	return rv;
}

static int run_save(struct ctl_ctx *ctx)
{
	const char *path = ctx->args[0];
	char *body = NULL, *msg = NULL;
	size_t len = 0;
	int status = 0, rv;

	bool linearizable = true;
	if (ctl_flag_consistency(ctx, &linearizable) != 0) {
		return 2;
	}
	if ((rv = ctl_client(ctx)) != 0) {
		return rv;
	}
	rv = api_request_raw(ctx->client, "GET",
	                     linearizable ? "/v1/backup" : "/v1/backup?consistency=serializable",
	                     NULL, NULL, 0, &status, &body, &len, &msg);
	if (rv != API_OK) {
		return ctl_fail_api(ctx, rv, msg, 0, NULL);
	}
	if (status != 200) {
		json_t *err = json_loadb(body, len, 0, NULL);
		rv = ctl_fail_api(ctx, API_OK, NULL, status, err);
		json_decref(err);
		free(body);
		return rv;
	}
	/* What the agent sent must be a backup that a member could restore before it replaces
	 * anything: an older file of the same name is better than a bad one. */
	struct store_backup_info info;
	size_t state_len;
	char why[256];
	if (store_backup_open(body, len, &info, &state_len, why, sizeof why) != STORE_OK) {
		free(body);
		return ctl_fail(
		    ctx, "the agent's answer is not a usable backup (%s); nothing written", why);
	}
	const char *what = NULL;
	if (strcmp(path, "-") == 0) {
		rv = write_all(STDOUT_FILENO, body, len);
		what = "writing to standard output";
	} else {
		rv = save_file(path, body, len, &what);
	}
	free(body);
	if (rv != 0) {
		return ctl_fail(ctx, "%s: %s: %s%s", path, what, strerror(-rv),
		                strcmp(path, "-") == 0 ? "" : " (the file is unchanged)");
	}
	char cluster[2 * STORE_CLUSTER_ID_LEN + 1], when[64];
	hex_of(info.cluster_id, sizeof info.cluster_id, cluster);
	time_of(info.taken_at_ms, when, sizeof when);
	/* The backup itself went to standard output: the report goes to the diagnostics. */
	FILE *f = strcmp(path, "-") == 0 ? ctx->err : ctx->out;
	if (ctx->json) {
		json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "file", path, "cluster",
		                      cluster, "member", info.member, "taken_at", when, "revision",
		                      (json_int_t)info.revision, "size", (json_int_t)len);
		if (j == NULL || json_dumpf(j, f, JSON_INDENT(2)) != 0) {
			json_decref(j);
			return ctl_fail(ctx, "out of memory");
		}
		fputc('\n', f);
		json_decref(j);
	} else {
		fprintf(f,
		        "saved revision %" PRId64
		        " of cluster %s from member %s to %s (%zu bytes)\n",
		        info.revision, cluster, info.member, path, len);
	}
	return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* The group a domain record counts under in the report: its kind of record, which is the first
 * two parts of its key for IPAM and resources ("ipam/block", "res/policies") and the first part
 * otherwise ("cni"). */
static void group_of(const struct kv_kv *kv, char *out, size_t len)
{
	size_t parts = (kv->key_len >= 5 && memcmp(kv->key, "ipam/", 5) == 0) ||
	                       (kv->key_len >= 4 && memcmp(kv->key, "res/", 4) == 0)
	                   ? 2
	                   : 1;
	size_t i = 0;
	for (size_t seen = 0; i < kv->key_len; i++) {
		if (kv->key[i] == '/' && ++seen == parts) {
			break;
		}
	}
	snprintf(out, len, "%.*s", (int)i, (const char *)kv->key);
}

/* A member record of the state (the agent keeps them under "members/" in the system keyspace,
 * as {name, id, peer_address, api_address}) appended to members; other system records and a
 * record that does not parse are left out. 0, or -1 without memory. */
static int add_member(json_t *members, const struct kv_kv *kv)
{
	static const char prefix[] = "members/";
	if (kv->key_len <= sizeof prefix - 1 || memcmp(kv->key, prefix, sizeof prefix - 1) != 0) {
		return 0;
	}
	json_t *m = json_loadb((const char *)kv->value, kv->value_len, 0, NULL);
	const char *name, *peer, *api;
	json_int_t id;
	if (m == NULL || json_unpack(m, "{s:s, s:I, s:s, s:s}", "name", &name, "id", &id,
	                             "peer_address", &peer, "api_address", &api) != 0) {
		json_decref(m);
		return 0;
	}
	json_t *rec = json_pack("{s:s, s:I, s:s, s:s}", "name", name, "id", id, "peer_address",
	                        peer, "api_address", api);
	json_decref(m);
	return rec != NULL && json_array_append_new(members, rec) == 0 ? 0 : -1;
}

static int run_status(struct ctl_ctx *ctx)
{
	const char *path = ctx->args[0];
	char *buf = NULL;
	size_t len = 0;
	struct kv *kv = NULL;
	struct kv_kv *kvs = NULL;
	unsigned n = 0;
	json_t *groups = NULL, *members = NULL;
	char dir[4096] = "";
	int rv;

	if ((rv = ctl_read_file(ctx, path, BACKUP_MAX, &buf, &len)) != 0) {
		return rv;
	}
	struct store_backup_info info;
	size_t state_len;
	char why[256];
	if (store_backup_open(buf, len, &info, &state_len, why, sizeof why) != STORE_OK) {
		rv = ctl_fail(ctx, "%s: not a usable backup: %s", path, why);
		goto out;
	}
	const char *tmpdir = getenv("TMPDIR");
	snprintf(dir, sizeof dir, "%s/tabby-backup.XXXXXX",
	         tmpdir != NULL && tmpdir[0] != '\0' ? tmpdir : "/tmp");
	if (mkdtemp(dir) == NULL) {
		rv = ctl_fail(ctx, "cannot make a scratch directory %s: %s", dir, strerror(errno));
		dir[0] = '\0';
		goto out;
	}
	struct kv_config cfg = {0};
	if (kv_open(&kv, dir, &cfg) != KV_OK) {
		rv = ctl_fail(ctx, "cannot open a scratch store in %s", dir);
		goto out;
	}
	if (kv_restore(kv, buf, state_len) != KV_OK) {
		rv = ctl_fail(ctx, "%s: its state does not restore: %s", path, kv_errmsg(kv));
		goto out;
	}
	uint64_t hash = 0;
	unsigned counts[KV_SPACE_LAST + 1] = {0};
	groups = json_object();
	members = json_array();
	rv = kv_hash(kv, &hash) != KV_OK || groups == NULL || members == NULL ? -1 : 0;
	for (uint8_t sp = 0; rv == 0 && sp <= KV_SPACE_LAST; sp++) {
		struct kv_bytes all = {(const uint8_t *)"", 0};
		bool more;
		int64_t r;
		if (kv_range(kv, sp, all, true, 0, &kvs, &n, &more, &r) != KV_OK) {
			rv = -1;
			break;
		}
		counts[sp] = n;
		for (unsigned i = 0; sp == KV_SPACE_SYS && i < n && rv == 0; i++) {
			rv = add_member(members, &kvs[i]);
		}
		for (unsigned i = 0; sp == KV_SPACE_DOMAIN && i < n && rv == 0; i++) {
			char g[128];
			group_of(&kvs[i], g, sizeof g);
			json_t *c = json_object_get(groups, g);
			rv = json_object_set_new(
			    groups, g, json_integer(c != NULL ? json_integer_value(c) + 1 : 1));
		}
		kv_kvs_free(kvs, n);
		kvs = NULL;
	}
	if (rv != 0) {
		rv = ctl_fail(ctx, "%s: cannot read the restored state: %s", path, kv_errmsg(kv));
		goto out;
	}

	char cluster[2 * STORE_CLUSTER_ID_LEN + 1], when[64], hex[17];
	hex_of(info.cluster_id, sizeof info.cluster_id, cluster);
	time_of(info.taken_at_ms, when, sizeof when);
	snprintf(hex, sizeof hex, "%016" PRIx64, hash);
	if (ctx->json) {
		json_t *j = json_pack(
		    "{s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:I, s:I, s:I, s:O, s:O}", "file", path,
		    "cluster", cluster, "member", info.member, "taken_at", when, "version",
		    info.version, "revision", (json_int_t)info.revision, "hash", hex, "size",
		    (json_int_t)len, "user_keys", (json_int_t)counts[KV_SPACE_USER],
		    "system_records", (json_int_t)counts[KV_SPACE_SYS], "domain_records", groups,
		    "members", members);
		rv = j == NULL ? ctl_fail(ctx, "out of memory") : ctl_print_json(ctx, j);
		json_decref(j);
		goto out;
	}
	fprintf(ctx->out,
	        "%s: a Tabby backup, intact; its state restores\n"
	        "cluster:     %s\n"
	        "taken:       %s from member %s (tabby %s)\n"
	        "revision:    %" PRId64 "\n"
	        "state hash:  %s\n"
	        "size:        %zu bytes\n"
	        "records:     %u user keys, %u system, %u domain\n",
	        path, cluster, when, info.member, info.version[0] ? info.version : "?",
	        info.revision, hex, len, counts[KV_SPACE_USER], counts[KV_SPACE_SYS],
	        counts[KV_SPACE_DOMAIN]);
	const char *g;
	json_t *c;
	json_object_foreach (groups, g, c) {
		fprintf(ctx->out, "  %-24s %" JSON_INTEGER_FORMAT "\n", g, json_integer_value(c));
	}
	/* The names a restore may take (tabby agent --restore FILE --name NAME). */
	fprintf(ctx->out, "members:     %zu\n", json_array_size(members));
	size_t i;
	json_array_foreach (members, i, c) {
		fprintf(ctx->out, "  %-24s id %" JSON_INTEGER_FORMAT ", peer %s, api %s\n",
		        json_string_value(json_object_get(c, "name")),
		        json_integer_value(json_object_get(c, "id")),
		        json_string_value(json_object_get(c, "peer_address")),
		        json_string_value(json_object_get(c, "api_address")));
	}
	rv = 0;
out:
	json_decref(members);
	json_decref(groups);
	kv_close(kv);
	if (dir[0] != '\0') {
		nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
	}
	free(buf);
	return rv;
}

static const char *const file_args[] = {"FILE", NULL};

static const struct ctl_flag save_flags[] = {
    {"consistency", 0, "MODE",
     "linearizable (default) or serializable (this member's replica, without a quorum)"},
    {0},
};

static const struct ctl_command save_command = {
    .name = "save",
    .usage_args = "FILE",
    .summary = "save a backup of the whole replicated state to FILE",
    .description =
        "Ask the local agent for a consistent copy of the whole replicated state (pools, blocks,\n"
        "addresses, endpoints, profiles, policies, keys and the join token), taken after every\n"
        "write acknowledged before the request, and write it to FILE (- for standard output).\n"
        "FILE is replaced whole or not at all, with mode 0600: it is as secret as the join\n"
        "token. Only the agent's unix socket serves backups. Without a quorum, take it with\n"
        "--consistency serializable: the member's own replica, which may lack the last writes.",
    .flags = save_flags,
    .args = file_args,
    .client = true,
    .run = run_save,
};

static const struct ctl_command status_command = {
    .name = "status",
    .usage_args = "FILE",
    .summary = "check a backup and show what it holds",
    .description =
        "Check FILE (- for standard input) without an agent: its checksums, and that its state\n"
        "restores (into a scratch store under $TMPDIR, removed afterwards). Print the cluster,\n"
        "member, time and revision it was taken at, the state's hash (the hash `tabby cluster\n"
        "hash` gives at that revision), how many records of each kind it holds, and its members\n"
        "(the names tabby agent --restore FILE --name NAME may take). Exits 1 if the file is\n"
        "damaged or its state does not restore.",
    .args = file_args,
    .output = true,
    .run = run_status,
};

static const struct ctl_command *const backup_subcommands[] = {&save_command, &status_command,
                                                               NULL};

const struct ctl_command ctl_backup_command = {
    .name = "backup",
    .summary = "save and check backups of the replicated state",
    .description =
        "Save a backup of the cluster's whole replicated state, and check one. A backup\n"
        "restores as a new cluster: tabby agent --restore FILE --name MEMBER, on an\n"
        "empty data directory (docs/operations.md, \"Restoring from a backup\").",
    .subcommands = backup_subcommands,
};
