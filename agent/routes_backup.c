/*
 * GET /v1/backup: a backup file of the whole replicated state (store.h, "A backup file"), for
 * `tabby backup save`. Served only on the unix socket: the state holds the join token, so the
 * file is as secret as the token, and the socket's file mode decides who may read it.
 *
 * The copy is consistent (one read transaction) and, unless the query says
 * consistency=serializable, linearizable (it holds every write acknowledged before the request;
 * serializable takes this replica's state as it is, which works without a quorum). It is
 * serialized on a worker thread, so the member goes on applying and serving while it is taken. One
 * backup at a time per member: each holds the whole state in memory, and a read transaction that
 * keeps LMDB from reusing pages.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <http_parser.h>

#include "agent/internal.h"

struct backup_req {
	struct store_backup b; /* first: the store's callback gets &b */
	struct agent *a;
	struct http_request *req;
};

static void backup_done(struct store_backup *b, int status)
{
	struct backup_req *r = (struct backup_req *)b;
	struct agent *a = r->a;
	a->backup_running = false;
	if (status == STORE_ETIMEDOUT || status == STORE_ENOLEADER) {
		/* The barrier, not a write, timed out: say what it needs and the way around it. */
		agent_reply_error(
		    a, r->req, 503, "unavailable",
		    "cannot take a linearizable backup: no leader confirmed this "
		    "member's state (that needs a quorum); --consistency serializable "
		    "takes this member's replica as it is");
		free(r);
		return;
	}
	if (status != STORE_OK) {
		agent_reply_store_error(a, r->req, status, "cannot take a backup");
		free(r);
		return;
	}
	struct store_backup_info info = {.revision = b->revision};
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	info.taken_at_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	memcpy(info.cluster_id, a->cluster_id, sizeof info.cluster_id);
	snprintf(info.member, sizeof info.member, "%s", a->name);
	snprintf(info.version, sizeof info.version, "%s", TABBY_VERSION);
	int rv = store_backup_seal(&b->data, &b->len, &info);
	if (rv != STORE_OK) {
		agent_reply_store_error(a, r->req, rv, "cannot take a backup");
	} else {
		agent_log("backup of revision %lld taken for a local client (%zu bytes)",
		          (long long)b->revision, b->len);
		agent_reply_raw(a, r->req, 200, "application/octet-stream", b->data, b->len);
	}
	free(b->data);
	free(r);
}

bool agent_route_backup(struct agent *a, struct http_request *req)
{
	if (strcmp(req->path, "/v1/backup") != 0) {
		return false;
	}
	if (!req->from_unix) {
		agent_reply_error(
		    a, req, 403, "forbidden",
		    "backups are served only on the agent's unix socket: they hold the "
		    "join token");
		return true;
	}
	if (req->method != HTTP_GET) {
		agent_reply_error(a, req, 405, "method_not_allowed", "/v1/backup takes GET");
		return true;
	}
	if (a->backup_running) {
		agent_reply_error(
		    a, req, 409, "busy",
		    "this member is taking another backup; try again when it is done");
		return true;
	}
	bool linearizable = true;
	if (agent_query_consistency(a, req, &linearizable) != 0) {
		return true;
	}
	struct backup_req *r = calloc(1, sizeof *r);
	if (r == NULL) {
		agent_reply_error(a, req, 500, "internal", "out of memory");
		return true;
	}
	r->a = a;
	r->req = req;
	int rv = store_backup(a->store, &r->b, linearizable, backup_done);
	if (rv != STORE_OK) {
		free(r);
		agent_reply_store_error(a, req, rv, "cannot take a backup");
		return true;
	}
	a->backup_running = true;
	return true;
}
