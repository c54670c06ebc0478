/*
 * HTTP/1.1 for the agent: a server on libuv streams (TCP and unix sockets) and an asynchronous
 * keep-alive client used to reach other agents. Parsing is http-parser's; this file never parses
 * HTTP by hand.
 *
 * Server model: one request at a time per connection. When a request is complete the handler is
 * called; the handler answers now or later (after a raft commit) with http_respond(), or opens a
 * chunked stream with http_stream_begin(). Until then the connection reads no further request
 * (pipelined requests wait in the socket), so responses are always in order.
 */
#ifndef TABBY_AGENT_HTTP_H
#define TABBY_AGENT_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct http_server;
struct http_request;

typedef void (*http_handler_cb)(struct http_server *srv, struct http_request *req);

/* Called at most once, when the connection of a request that has not been answered yet (or whose
 * stream is open) goes away (closed, reset, or a peer that stopped sending: EOF counts as gone).
 * Never called from inside an http_* call. The request stays valid: the handler must still finish
 * it with http_respond() or http_stream_end(), which then only free it. */
typedef void (*http_gone_cb)(struct http_request *req);

struct http_request {
	int method;        /* enum http_method of http_parser.h */
	const char *path;  /* percent-decoded path without the query, NUL-terminated */
	size_t path_len;   /* may be shorter than strlen if the path decoded to a NUL: handlers must
	                      refuse such paths (http_server does: 400) */
	const char *query; /* raw query string without '?', NUL-terminated, "" if none */
	const uint8_t *body; /* followed by a NUL that body_len does not count; never NULL */
	size_t body_len;
	bool from_unix;       /* arrived on the unix socket (local, trusted by file mode) */
	void *data;           /* for the handler */
	http_gone_cb gone_cb; /* set by the handler if it wants to know */
};

struct http_server_config {
	size_t max_body; /* larger bodies get 413 and the connection is closed; 0 = 1 MiB */
	unsigned idle_timeout_ms; /* idle keep-alive connections are closed; 0 = 120000 */
};

/* Create a server on loop. handler is called for every complete, well-formed request; malformed
 * requests get a 400 (request line and headers over 64 KiB or over 100 headers 431, a request
 * target alone over 64 KiB 414, oversized body 413) with a JSON error body
 * {"error": {"code": "bad_request", "message": "..."}} naming what is wrong, and the connection is
 * closed. Returns 0 or a negative errno. */
int http_server_new(uv_loop_t *loop, const struct http_server_config *cfg, http_handler_cb handler,
                    void *data, struct http_server **out);
void *http_server_data(struct http_server *srv);

/* Listen on "IP:PORT" (IPv4, or [IPv6]:PORT). Returns 0 or a negative errno (a uv error). */
int http_server_listen_tcp(struct http_server *srv, const char *address);
/* Listen on a unix socket path with the given file mode (the stale socket file is replaced; any
 * other kind of file there is an error, UV_EEXIST). The socket file is removed on close. */
int http_server_listen_unix(struct http_server *srv, const char *path, int mode);
/* Port of the most recently added TCP listener (useful after listening on port 0), or a negative
 * uv error if there is none. */
int http_server_port(struct http_server *srv);

/* Connections closed because their peer left more than 8 MiB of answers unread (a watch whose
 * client stopped reading): for the handler they are gone like any other (gone_cb). */
uint64_t http_server_slow_drops(const struct http_server *srv);

/* Stop listening, close every connection (calling gone_cb of pending requests) and free the
 * server once every request has been finished by its handler; cb (may be NULL) runs then. */
void http_server_close(struct http_server *srv, void (*cb)(void *data), void *data);

/* Query parameter value (percent-decoded, '+' decoded as a space, malloc()ed, caller frees) or NULL
 * if absent. "?prefix" without "=" yields "". The first occurrence wins; a value with a broken
 * %-escape or an encoded NUL counts as absent. */
char *http_query_get(const struct http_request *req, const char *name);
/* Whether every name and value of the query decodes (no broken %-escape, no encoded NUL); if not,
 * the first bad parameter's raw text, cut to fit, in bad. A router checks this first, so that a
 * malformed parameter is refused rather than read as absent (a "prefix=1%" delete of one key). */
bool http_query_valid(const struct http_request *req, char *bad, size_t badlen);
/* Request header value (case-insensitive name) or NULL; valid until the request is finished. */
const char *http_header_get(const struct http_request *req, const char *name);

/* Answer with a complete response (Content-Length framed) and finish the request. Copies body.
 * content_type may be NULL. A status outside 100-999 is sent as 500. */
void http_respond(struct http_request *req, int status, const char *content_type, const void *body,
                  size_t len);

/* Chunked streaming response: begin, write any number of chunks (each copied), end. Writes after
 * the connection is gone are dropped silently. http_stream_end() finishes the request. */
void http_stream_begin(struct http_request *req, int status, const char *content_type);
void http_stream_write(struct http_request *req, const void *data, size_t len);
void http_stream_end(struct http_request *req);

/* Feed raw bytes to a standalone request parser with the server's rules and limits and report the
 * requests it finds; used by the fuzz target and tests. Returns the number of complete requests
 * parsed, or -1 if the input was rejected (the 4xx the server would send is written to status). */
int http_parse_for_test(const uint8_t *data, size_t len, size_t max_body, int *status);

/* ------------------------------------------------------------------------------------------ */
/* Client                                                                                      */

struct http_client;

/* status is the HTTP status (>= 100), or a negative uv error code if no response arrived
 * (connection refused, reset, timeout: UV_ETIMEDOUT). body is valid only during the call. */
typedef void (*http_client_cb)(int status, const uint8_t *body, size_t len, void *data);

int http_client_new(uv_loop_t *loop, struct http_client **out);

/* Send a request to "IP:PORT". Connections are kept alive and reused per address (at most 4 open
 * to one address; more requests queue). If it returns non-zero (a negative errno), cb is never
 * called. Otherwise cb is called exactly once, also when the client is closed first
 * (status UV_ECANCELED). timeout_ms 0 means no timeout. A request sent on a reused keep-alive
 * connection that fails before any byte of the response arrived (the server closed the idle
 * connection meanwhile) is sent once more on a fresh connection, so a request may reach the
 * server twice; callers whose requests are not idempotent carry their own request ids. */
int http_client_request(struct http_client *c, const char *address, const char *method,
                        const char *path, const char *content_type, const void *body, size_t len,
                        unsigned timeout_ms, http_client_cb cb, void *data);

/* Send "name: value" with every later request of this client (one header; a second call
 * replaces it). Returns 0, or UV_EINVAL for a name or value that cannot go in a header. */
int http_client_set_header(struct http_client *c, const char *name, const char *value);

/* Cancel everything (callbacks fire with UV_ECANCELED), close connections, free the client. */
void http_client_close(struct http_client *c);

/* Parse "IP:PORT" or "[IPv6]:PORT" (port 0-65535). Returns 0 or UV_EINVAL. */
int http_address_parse(const char *address, struct sockaddr_storage *out);

#endif
