/*
 * A member's data directory made from a backup (store.h, store_restore()).
 *
 * The state goes into raft as a snapshot, not into LMDB: raft's log is what a member starts from
 * and what it sends to members that join, so a state written only into LMDB would stay on this
 * member (a joining member gets the leader's snapshot, or its log from index 1). The snapshot sits
 * at index 2, term 1, with a configuration of this member as its only voter; the log after it is
 * empty. At its first start raft loads that snapshot and restores it into LMDB through the state
 * machine, as at any restart, elects this member at once (it is the only voter) and sends the
 * same file to every member that joins.
 *
 * The snapshot's index is 2, not 1: raft takes a follower that needs index 1 to need the
 * snapshot only when it has no term for index 1, and the last index of a snapshot has one, so
 * with a snapshot at 1 the leader would offer a joining member entry 1 (which no log holds)
 * forever instead of the snapshot. Index 1 is simply never used.
 *
 * The snapshot is written by the libuv backend itself, through its own raft_io: the files are
 * exactly those raft writes when it installs a snapshot from a leader, with no knowledge of their
 * layout here. They go into a directory beside raft/ that is renamed into place once complete,
 * so an interrupted restore leaves a data directory without raft state, which a restore may run
 * on again, never one that looks started but holds half a state.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <raft.h>
#include <raft/uv.h>

#include "store/kv.h"
#include "store/store.h"

#define RESTORE_DIR    "raft.restoring"
#define SNAPSHOT_INDEX 2 /* see above */

struct restore_run {
	struct raft_io io;
	struct raft_io_snapshot_put put;
	bool put_done;
	int put_status;
	bool io_closed;
};

static void put_done(struct raft_io_snapshot_put *req, int status)
{
	struct restore_run *run = req->data;
	run->put_done = true;
	run->put_status = status;
}

/* io->data stays NULL: the backend takes a non-NULL one for the struct raft it serves. */
static void io_closed(struct raft_io *io)
{
	struct restore_run *run =
	    (struct restore_run *)((char *)io - offsetof(struct restore_run, io));
	run->io_closed = true;
}

static void spin(uv_loop_t *loop, const bool *done)
{
	while (!*done) {
		uv_run(loop, UV_RUN_ONCE);
	}
}

static char *errdup(const char *what, const char *detail)
{
	size_t n = strlen(what) + strlen(detail) + 3;
	char *s = malloc(n);
	if (s != NULL) {
		snprintf(s, n, "%s: %s", what, detail);
	}
	return s;
}

static void set_err(char **errmsg, const char *what, const char *detail)
{
	if (errmsg != NULL) {
		*errmsg = errdup(what, detail);
	}
}

/* Empty a directory this file made (flat: raft keeps no subdirectories) and remove it. */
static int remove_flat_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL) {
		return errno == ENOENT ? 0 : -errno;
	}
	struct dirent *e;
	int rv = 0;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
			continue;
		}
		if (unlinkat(dirfd(d), e->d_name, 0) != 0 && rv == 0) {
			rv = -errno;
		}
	}
	closedir(d);
	if (rv == 0 && rmdir(dir) != 0) {
		rv = -errno;
	}
	return rv;
}

/* Whether dir is missing or empty. */
static int dir_empty(const char *dir, bool *empty)
{
	DIR *d = opendir(dir);
	if (d == NULL) {
		if (errno == ENOENT) {
			*empty = true;
			return 0;
		}
		return -errno;
	}
	*empty = true;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
			*empty = false;
			break;
		}
	}
	closedir(d);
	return 0;
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		return -errno;
	}
	int rv = fsync(fd) == 0 ? 0 : -errno;
	close(fd);
	return rv;
}

/* Write the snapshot into dir through raft's libuv backend, on a loop of its own. */
static int write_snapshot(const char *dir, uint64_t id, const char *peer_address, const void *state,
                          size_t len, char **errmsg)
{
	uv_loop_t loop;
	struct raft_uv_transport transport = {.version = 1};
	struct restore_run run = {.io = {.version = 2}};
	struct raft_io *io = &run.io;
	struct raft_configuration conf;
	bool transport_inited = false, io_inited = false;
	char what[PATH_MAX + 32];
	int rv;

	snprintf(what, sizeof what, "write the snapshot in %s", dir);
	raft_configuration_init(&conf);
	if (uv_loop_init(&loop) != 0) {
		set_err(errmsg, what, "cannot create an event loop");
		raft_configuration_close(&conf);
		return STORE_EIO;
	}
	if ((rv = raft_uv_tcp_init(&transport, &loop)) != 0) {
		set_err(errmsg, what, raft_strerror(rv));
		rv = STORE_EIO;
		goto out;
	}
	transport_inited = true;
	if ((rv = raft_uv_init(io, &loop, dir, &transport)) != 0) {
		set_err(errmsg, what, io->errmsg[0] ? io->errmsg : raft_strerror(rv));
		rv = STORE_EIO;
		goto out;
	}
	io_inited = true;
	if ((rv = io->init(io, id, peer_address)) != 0) {
		set_err(errmsg, what, io->errmsg[0] ? io->errmsg : raft_strerror(rv));
		rv = STORE_EIO;
		goto out;
	}
	/* The directory is new and empty: load finds nothing, and readies the backend to write. */
	raft_term term;
	raft_id vote;
	struct raft_snapshot *loaded = NULL;
	raft_index start;
	struct raft_entry *entries = NULL;
	size_t n_entries = 0;
	if ((rv = io->load(io, &term, &vote, &loaded, &start, &entries, &n_entries)) != 0) {
		set_err(errmsg, what, io->errmsg[0] ? io->errmsg : raft_strerror(rv));
		rv = STORE_EIO;
		goto out;
	}
	if ((rv = io->set_term(io, 1)) != 0) {
		set_err(errmsg, what, io->errmsg[0] ? io->errmsg : raft_strerror(rv));
		rv = STORE_EIO;
		goto out;
	}
	if ((rv = raft_configuration_add(&conf, id, peer_address, RAFT_VOTER)) != 0) {
		set_err(errmsg, what, raft_strerror(rv));
		rv = rv == RAFT_NOMEM ? STORE_ENOMEM : STORE_EINVAL;
		goto out;
	}
	struct raft_buffer buf = {.base = (void *)state, .len = len};
	struct raft_snapshot snap = {.index = SNAPSHOT_INDEX,
	                             .term = 1,
	                             .configuration = conf,
	                             .configuration_index = SNAPSHOT_INDEX,
	                             .bufs = &buf,
	                             .n_bufs = 1};
	run.put.data = &run;
	/* trailing 0: an install, which keeps no log before it */
	if ((rv = io->snapshot_put(io, 0, &run.put, &snap, put_done)) != 0) {
		set_err(errmsg, what, io->errmsg[0] ? io->errmsg : raft_strerror(rv));
		rv = STORE_EIO;
		goto out;
	}
	spin(&loop, &run.put_done);
	if (run.put_status != 0) {
		set_err(errmsg, what, io->errmsg[0] ? io->errmsg : raft_strerror(run.put_status));
		rv = STORE_EIO;
		goto out;
	}
	rv = STORE_OK;
out:
	if (io_inited) {
		io->close(io, io_closed); /* closes the transport too, once init opened it */
		spin(&loop, &run.io_closed);
		raft_uv_close(io);
	}
	if (transport_inited) {
		raft_uv_tcp_close(&transport);
	}
	uv_run(&loop, UV_RUN_DEFAULT); /* handles closed last need their close callbacks */
	uv_loop_close(&loop);
	raft_configuration_close(&conf);
	return rv;
}

int store_restore(const char *data_dir, uint64_t id, const char *peer_address, const void *state,
                  size_t len, char **errmsg)
{
	char raft_dir[PATH_MAX], tmp_dir[PATH_MAX];
	bool empty = false;
	int rv;

	if (id == 0 || peer_address == NULL || peer_address[0] == 0) {
		set_err(errmsg, "restore", "a member id and a peer address are needed");
		return STORE_EINVAL;
	}
	if (kv_snapshot_intact(state, len) != KV_OK) {
		set_err(errmsg, "restore", "the state fails its checksum");
		return STORE_EINVAL;
	}
	if (store_has_state(data_dir)) {
		set_err(errmsg, data_dir,
		        "it already holds raft state: a restore starts a member "
		        "from an empty data directory");
		return STORE_EINVAL;
	}
	if ((size_t)snprintf(raft_dir, sizeof raft_dir, "%s/raft", data_dir) >= sizeof raft_dir ||
	    (size_t)snprintf(tmp_dir, sizeof tmp_dir, "%s/" RESTORE_DIR, data_dir) >=
	        sizeof tmp_dir) {
		set_err(errmsg, data_dir, "path too long");
		return STORE_EINVAL;
	}
	/* raft/ without metadata: made by a start that failed before raft wrote anything, and
	 * then empty. Anything in it is not ours to delete. */
	if ((rv = dir_empty(raft_dir, &empty)) != 0) {
		set_err(errmsg, raft_dir, strerror(-rv));
		return STORE_EIO;
	}
	if (!empty) {
		set_err(errmsg, raft_dir,
		        "it holds files but no raft metadata; move it aside before restoring");
		return STORE_EINVAL;
	}
	if (rmdir(raft_dir) != 0 && errno != ENOENT) {
		set_err(errmsg, raft_dir, strerror(errno));
		return STORE_EIO;
	}
	/* What an interrupted restore left is ours. */
	if ((rv = remove_flat_dir(tmp_dir)) != 0) {
		set_err(errmsg, tmp_dir, strerror(-rv));
		return STORE_EIO;
	}
	if (mkdir(data_dir, 0700) != 0 && errno != EEXIST) {
		set_err(errmsg, data_dir, strerror(errno));
		return STORE_EIO;
	}
	if (mkdir(tmp_dir, 0700) != 0) {
		set_err(errmsg, tmp_dir, strerror(errno));
		return STORE_EIO;
	}
	rv = write_snapshot(tmp_dir, id, peer_address, state, len, errmsg);
	if (rv != STORE_OK) {
		remove_flat_dir(tmp_dir);
		return rv;
	}
	if ((rv = fsync_dir(tmp_dir)) == 0 && rename(tmp_dir, raft_dir) != 0) {
		rv = -errno;
	}
	if (rv == 0) {
		rv = fsync_dir(data_dir);
	}
	if (rv != 0) {
		set_err(errmsg, raft_dir, strerror(-rv));
		remove_flat_dir(tmp_dir);
		return STORE_EIO;
	}
	return STORE_OK;
}
