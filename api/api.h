/*
 * A small blocking client for the agent's HTTP/1.1 + JSON API (DESIGN.md section 4), used by the
 * CLI and the CNI plugin. One client holds at most one connection, kept alive across requests and
 * reopened transparently when the agent has closed it. Responses are parsed by http-parser
 * (Content-Length, chunked and close-delimited bodies) and bodies by jansson.
 *
 * Every function reports failure with a negative API_E* code and, when errmsg is not NULL, a
 * malloc()ed message for a human that the caller frees (NULL if even that allocation failed).
 * An HTTP error status is not a failure of the client: it is returned in *status together with the
 * agent's JSON error body, see api_error_message(). Nothing here exits or prints.
 *
 * A client is not thread-safe; use one per thread.
 */
#ifndef TABBY_API_H
#define TABBY_API_H

#include <stddef.h>
#include <jansson.h>

enum {
	API_OK = 0,
	API_STOPPED = 1,    /* api_stream(): the line callback asked to stop */
	API_ENOMEM = -1,    /* out of memory */
	API_EINVAL = -2,    /* bad argument: malformed address, unusable path */
	API_ECONNECT = -3,  /* the agent could not be reached (resolve or connect failed) */
	API_EIO = -4,       /* the connection failed or closed before the response was complete */
	API_ETIMEDOUT = -5, /* no complete response within the client's timeout */
	API_EPROTO = -6,    /* the answer was not valid HTTP, or not the JSON that was expected */
};

struct api_client;

/* Create a client for the agent at address, which is either "unix:PATH", a unix socket path
 * containing a '/', or "HOST:PORT" / "[IPv6]:PORT" for a TCP API address. HOST is resolved now;
 * the connection is opened by the first request. timeout_ms bounds each request from sending to
 * the complete response (for api_stream(): to the response head); 0 means no limit.
 * Returns API_OK and sets *out, or API_EINVAL / API_ECONNECT / API_ENOMEM. */
int api_client_open(const char *address, int timeout_ms, struct api_client **out, char **errmsg);

/* api_client_open() for the unix socket path, which needs no resolver: a program that calls only
 * this links none (the statically linked CNI plugin). */
int api_client_open_unix(const char *path, int timeout_ms, struct api_client **out, char **errmsg);

/* Close the connection, if any, and free the client. NULL is allowed. */
void api_client_close(struct api_client *c);

/* The address the client was opened with, for messages. */
const char *api_client_address(const struct api_client *c);

/* Send METHOD path with body (a JSON value sent as application/json, or NULL for no body) and wait
 * for the complete response. path is the request target as sent: it must start with '/' and be
 * already escaped (see api_path_escape()); a path with spaces or control characters is refused
 * with API_EINVAL. On API_OK, *status is the HTTP status and *response the parsed JSON body (a new
 * reference the caller releases), or NULL if the body was empty, or if the status is not 2xx and
 * the body is not JSON. A 2xx answer whose non-empty body is not JSON is API_EPROTO.
 * A GET or HEAD that fails because the agent closed the kept-alive connection before answering is
 * retried once on a new connection; other methods are never resent. */
int api_request(struct api_client *c, const char *method, const char *path, json_t *body,
                int *status, json_t **response, char **errmsg);

/* Like api_request() for bodies that are not JSON (GET /metrics, for example). body (body_len
 * bytes, may be NULL when body_len is 0) is sent with content_type (NULL: no Content-Type).
 * On API_OK, *status is set and *response_body is a malloc()ed, NUL-terminated copy of the body
 * (the caller frees it) with its length, without the NUL, in *response_len. */
int api_request_raw(struct api_client *c, const char *method, const char *path,
                    const char *content_type, const void *body, size_t body_len, int *status,
                    char **response_body, size_t *response_len, char **errmsg);

/* Called by api_stream() for each non-blank line of a streamed 2xx body, parsed as JSON. line is
 * borrowed and valid only during the call (json_incref() it to keep it). Return 0 to go on, or
 * non-zero to stop the stream. */
typedef int (*api_line_cb)(json_t *line, void *data);

/* Send METHOD path with body (JSON or NULL) and read a streamed answer of one JSON value per line,
 * such as GET /v1/watch/KEY. The timeout covers only the response head: a stream may stay quiet
 * indefinitely. When the status is 2xx, cb is called for every line as it arrives (a final line
 * without a newline included) and *response is set to NULL. Otherwise the body is read whole and
 * *response is set as api_request() does, and cb is never called. Returns API_OK when the
 * response ended, API_STOPPED when cb returned non-zero (the connection is then closed, because
 * the rest of the stream cannot be skipped), or a negative API_E* code; a line that is not JSON
 * is API_EPROTO. *status is set whenever the response head arrived. */
int api_stream(struct api_client *c, const char *method, const char *path, json_t *body,
               int *status, json_t **response, api_line_cb cb, void *data, char **errmsg);

/* error.message of an agent error body {"error": {"code": ..., "message": ...}}, or NULL if
 * response is NULL or has no such string. The string belongs to response. */
const char *api_error_message(const json_t *response);

/* error.code of an agent error body, or NULL as for api_error_message(). */
const char *api_error_code(const json_t *response);

/* Percent-encode s for use in a request path such as "/v1/kv/" KEY: every byte except the
 * unreserved characters (A-Z a-z 0-9 - . _ ~) and '/' becomes %XX. Also safe for query values,
 * since '&', '=', '+' and '#' are encoded. Returns a malloc()ed string or NULL when out of memory.
 */
char *api_path_escape(const char *s);

/* A short, static description of an API_* code. */
const char *api_strerror(int code);

#endif
