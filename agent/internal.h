/*
 * Private to the agent: the daemon's state shared by main.c, routes.c and metrics.c.
 */
#ifndef TABBY_AGENT_INTERNAL_H
#define TABBY_AGENT_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "agent/http.h"
#include "store/store.h"

#define AGENT_MAX_BODY (4u << 20)

/* SYS keyspace layout. */
#define SYS_MEMBER_PREFIX "members/"
#define SYS_ID_PREFIX     "ids/"
#define SYS_TOKEN_KEY     "join-token"

struct member_rec {
	char name[128];
	uint64_t id;
	char peer_address[64];
	char api_address[64];
};

struct agent {
	uv_loop_t *loop;
	char *name;
	char *data_dir;
	char *socket_path;
	char *peer_address;
	char *api_address;
	uint64_t id;
	bool bootstrap_pending; /* write the first member record and token once leader */
	char token[65];

	struct store *store;
	struct http_server *http;
	struct http_client *client;
	uv_signal_t sigint, sigterm;
	uv_timer_t reconcile;
	bool change_inflight;
	bool stopping;
	bool seen_own_record; /* this member's record has been in the local replica */
	uint64_t removing_id; /* member whose record is gone, waiting out the grace period */
	uint64_t removing_since;
	uint64_t record_gone_since; /* when this member saw its own record deleted */
	int exit_code;

	uint64_t requests_by_class[6]; /* 1xx..5xx responses, index status/100 */
	uint64_t started_ms;
};

/* Log a line to stderr with a timestamp. */
void agent_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Members from the SYS keyspace of the local replica. *out is malloc()ed. */
int agent_members(struct agent *a, struct member_rec **out, unsigned *n);
/* The member record with this raft id, or false. */
bool agent_member_by_id(struct agent *a, uint64_t id, struct member_rec *out);

/* The JSON form of a member record (malloc()ed). */
char *member_json(const struct member_rec *m);

/* HTTP entry point (routes.c). */
void agent_route(struct http_server *srv, struct http_request *req);

/* Respond with a JSON value (steals it) / a JSON error. */
void agent_reply_json(struct agent *a, struct http_request *req, int status, json_t *body);
void agent_reply_error(struct agent *a, struct http_request *req, int status, const char *code,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Prometheus text for /metrics (metrics.c); malloc()ed. */
char *agent_metrics_text(struct agent *a, size_t *len);

/* Forward / read-index hooks (main.c). */
void agent_kick_reconcile(struct agent *a);

#endif
