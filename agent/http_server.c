/*
 * HTTP/1.1 server on libuv streams; http-parser does all the parsing.
 *
 * A connection owns one parser and at most one dispatched request (`pending`). When the parser
 * completes a message, on_message_complete pauses it, so http_parser_execute() returns exactly at
 * the end of that message; the request goes to the handler and the bytes after it stay buffered
 * until the handler finishes the request. Pipelined requests are thereby answered in order.
 *
 * While a request is pending the connection keeps reading (bounded) so that a peer that goes away
 * is noticed and the handler's gone_cb runs; gone_cb only ever runs from the connection's close
 * callback, never from inside an http_* call the handler makes.
 *
 * A connection that must be closed after a response (an error, "Connection: close", HTTP/1.0)
 * "drains": it stops parsing, waits for its writes, shuts down its sending side and reads and
 * discards until the peer closes or a short linger expires. Closing right away would make the
 * kernel answer unread request bytes with a reset, which can destroy the response before the peer
 * reads it (a 413 sent while the peer is still uploading the body).
 */
#include "agent/http.h"

#include <errno.h>
#include <http_parser.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_HEAD_BYTES    (64 * 1024) /* request target + header names and values */
#define MAX_HEADERS       100
#define DEFAULT_MAX_BODY  (1024 * 1024)
#define DEFAULT_IDLE_MS   120000
#define READ_BUF_SIZE     (64 * 1024)
#define MAX_BUFFERED_IN   (64 * 1024) /* unparsed input kept while a request is pending */
#define MAX_WRITE_QUEUE   (8 * 1024 * 1024)
#define LINGER_MS         2000
#define SWEEP_MAX_MS      1000
#define LISTEN_BACKLOG    511
#define MAX_RESPONSE_BODY ((size_t)UINT_MAX - 4096) /* uv_buf_t lengths are unsigned int */

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

enum last_cb { LAST_NONE, LAST_URL, LAST_FIELD, LAST_VALUE };

struct hdr {
	size_t name; /* offsets into req->head */
	size_t value;
};

struct conn;

struct req {
	struct http_request pub;
	struct http_server *srv;
	struct conn *conn; /* NULL once the connection is gone */

	/* Request target, then NUL-terminated header names and values, in arrival order. */
	char *head;
	size_t head_len, head_cap;
	size_t url_len;
	struct hdr *hdrs;
	unsigned n_hdrs, hdrs_cap;
	enum last_cb last;
	bool headers_done;

	uint8_t *body;
	size_t body_len, body_cap;

	char *target; /* decoded path, NUL, raw query, NUL */

	bool keep_alive;
	bool head_method;
	bool http10;
	bool streaming;
	bool gone_called;
};

/* Request parsing state: a connection has one; http_parse_for_test() makes its own. */
struct parse {
	http_parser parser;
	size_t max_body;
	size_t head_bytes;
	struct req *cur;  /* message being received */
	struct req *done; /* complete message, taken by the caller after execute returns */
	int err_status;   /* set by a callback that fails the message; 0: use the parser's errno */
	const char *err_msg;
	void (*continue_cb)(struct parse *ps); /* answers "Expect: 100-continue" */
};

struct listener {
	union {
		uv_handle_t handle;
		uv_stream_t stream;
		uv_tcp_t tcp;
		uv_pipe_t pipe;
	} h;
	struct http_server *srv;
	struct listener *prev, *next;
	char *unix_path; /* socket file we created, removed on close */
	bool is_unix;
};

struct conn {
	union {
		uv_handle_t handle;
		uv_stream_t stream;
		uv_tcp_t tcp;
		uv_pipe_t pipe;
	} h;
	struct http_server *srv;
	struct conn *prev, *next;
	struct parse ps;
	struct req *pending;

	char *in; /* unparsed input [in_off, in_len) */
	size_t in_off, in_len, in_cap;

	uint64_t idle_since;
	uint64_t deadline; /* while draining */
	uv_shutdown_t shutdown_req;
	unsigned writes;
	size_t queued; /* on_sweep(): what conn_unsent() said last */

	bool from_unix;
	bool processing; /* inside conn_parse(): a synchronous answer must not re-enter it */
	bool reading;
	bool closed; /* uv_close() called */
	bool draining;
	bool shutdown_started;
	bool shutdown_done;
	bool eof;
};

struct wreq {
	uv_write_t req;
	struct conn *conn;
	size_t len;
	char data[];
};

struct http_server {
	uv_loop_t *loop;
	size_t max_body;
	uint64_t idle_ms;
	http_handler_cb handler;
	void *data;

	struct listener *listeners;
	struct conn *conns;
	uv_timer_t sweep;
	bool sweep_closed;
	uint64_t last_sweep; /* ms: when the sweep timer last fired, or was started */

	size_t requests;     /* dispatched to the handler and not finished yet */
	uint64_t slow_drops; /* http_server_slow_drops() */
	unsigned in_cb;      /* nesting depth of gone_cb calls made while the server must stay */
	bool closing;
	void (*close_cb)(void *data);
	void *close_data;

	/* Every read lands here first; only bytes a pending request leaves unparsed are copied into
	 * the connection. libuv calls the read callback right after the allocation, so one buffer
	 * serves all connections of the loop. */
	char rbuf[READ_BUF_SIZE];
};

/* ------------------------------------------------------------------------------------------ */
/* Requests and parsing                                                                        */

static int on_message_begin(http_parser *p);
static int on_url(http_parser *p, const char *at, size_t len);
static int on_header_field(http_parser *p, const char *at, size_t len);
static int on_header_value(http_parser *p, const char *at, size_t len);
static int on_headers_complete(http_parser *p);
static int on_body(http_parser *p, const char *at, size_t len);
static int on_message_complete(http_parser *p);

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void req_free(struct req *r)
{
	if (r == NULL) {
		return;
	}
	free(r->head);
	free(r->hdrs);
	free(r->body);
	free(r->target);
	free(r);
}

static void parse_init(struct parse *ps, size_t max_body)
{
	memset(ps, 0, sizeof(*ps));
	http_parser_init(&ps->parser, HTTP_REQUEST);
	ps->parser.data = ps;
	ps->max_body = max_body;
}

static void parse_fini(struct parse *ps)
{
	req_free(ps->cur);
	req_free(ps->done);
	ps->cur = NULL;
	ps->done = NULL;
}

static int parse_fail(struct parse *ps, int status, const char *msg)
{
	ps->err_status = status;
	ps->err_msg = msg;
	return -1;
}

/* The status and message the server answers a rejected message with. */
static void parse_error(const struct parse *ps, int *status, const char **msg)
{
	enum http_errno e = HTTP_PARSER_ERRNO(&ps->parser);

	if (ps->err_status != 0) {
		*status = ps->err_status;
		*msg = ps->err_msg;
		return;
	}
	*status = e == HPE_HEADER_OVERFLOW ? 431 : 400;
	*msg = http_errno_description(e);
}

static int head_append(struct req *r, const char *data, size_t len)
{
	if (r->head_cap - r->head_len < len + 1) {
		size_t cap = r->head_cap ? r->head_cap : 256;
		char *p;

		while (cap - r->head_len < len + 1) {
			cap *= 2;
		}
		p = realloc(r->head, cap);
		if (p == NULL) {
			return -1;
		}
		r->head = p;
		r->head_cap = cap;
	}
	memcpy(r->head + r->head_len, data, len);
	r->head_len += len;
	return 0;
}

/* Ends the string being received (target, name or value). */
static int head_terminate(struct req *r)
{
	return head_append(r, "", 1);
}

static int count_head(struct parse *ps, size_t len, bool url)
{
	if (len >= MAX_HEAD_BYTES - ps->head_bytes) {
		return url ? parse_fail(ps, 414, "request target exceeds 64 KiB")
		           : parse_fail(ps, 431, "request line and headers exceed 64 KiB");
	}
	ps->head_bytes += len;
	return 0;
}

static int on_message_begin(http_parser *p)
{
	struct parse *ps = p->data;

	req_free(ps->cur);
	ps->head_bytes = 0;
	ps->cur = calloc(1, sizeof(*ps->cur));
	if (ps->cur == NULL) {
		return parse_fail(ps, 500, "out of memory");
	}
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct parse *ps = p->data;
	struct req *r = ps->cur;

	if (count_head(ps, len, true) != 0) {
		return -1;
	}
	r->last = LAST_URL;
	if (head_append(r, at, len) != 0) {
		return parse_fail(ps, 500, "out of memory");
	}
	r->url_len += len;
	return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct parse *ps = p->data;
	struct req *r = ps->cur;

	if (count_head(ps, len, false) != 0) {
		return -1;
	}
	if (r->headers_done) {
		return 0; /* trailer of a chunked body: counted, not kept */
	}
	if (r->last != LAST_FIELD) {
		if (r->n_hdrs == MAX_HEADERS) {
			return parse_fail(ps, 431, "more than 100 header fields");
		}
		if (r->n_hdrs == r->hdrs_cap) {
			unsigned cap = r->hdrs_cap ? r->hdrs_cap * 2 : 16;
			struct hdr *h = realloc(r->hdrs, cap * sizeof(*h));

			if (h == NULL) {
				return parse_fail(ps, 500, "out of memory");
			}
			r->hdrs = h;
			r->hdrs_cap = cap;
		}
		if (head_terminate(r) != 0) {
			return parse_fail(ps, 500, "out of memory");
		}
		r->hdrs[r->n_hdrs].name = r->head_len;
		r->hdrs[r->n_hdrs].value = r->head_len; /* until a value arrives */
		r->n_hdrs++;
		r->last = LAST_FIELD;
	}
	if (head_append(r, at, len) != 0) {
		return parse_fail(ps, 500, "out of memory");
	}
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct parse *ps = p->data;
	struct req *r = ps->cur;

	if (count_head(ps, len, false) != 0) {
		return -1;
	}
	if (r->headers_done) {
		return 0;
	}
	if (r->last != LAST_VALUE) {
		if (r->last != LAST_FIELD) {
			return parse_fail(ps, 400, "header value without a name");
		}
		if (head_terminate(r) != 0) {
			return parse_fail(ps, 500, "out of memory");
		}
		r->hdrs[r->n_hdrs - 1].value = r->head_len;
		r->last = LAST_VALUE;
	}
	if (head_append(r, at, len) != 0) {
		return parse_fail(ps, 500, "out of memory");
	}
	return 0;
}

static const char *req_header(const struct req *r, const char *name)
{
	for (unsigned i = 0; i < r->n_hdrs; i++) {
		if (strcasecmp(r->head + r->hdrs[i].name, name) == 0) {
			return r->head + r->hdrs[i].value;
		}
	}
	return NULL;
}

static int on_headers_complete(http_parser *p)
{
	struct parse *ps = p->data;
	struct req *r = ps->cur;
	bool has_length = (p->flags & F_CONTENTLENGTH) != 0;
	bool chunked = (p->flags & F_CHUNKED) != 0;
	const char *expect;

	/* End the last string (target or value); a field without a value gets an empty one. */
	if (r->last == LAST_FIELD) {
		if (head_terminate(r) != 0) {
			return parse_fail(ps, 500, "out of memory");
		}
		r->hdrs[r->n_hdrs - 1].value = r->head_len;
	}
	if (head_terminate(r) != 0) {
		return parse_fail(ps, 500, "out of memory");
	}
	/* http-parser drops leading whitespace of a value but may keep trailing whitespace. */
	for (unsigned i = 0; i < r->n_hdrs; i++) {
		char *v = r->head + r->hdrs[i].value;
		size_t n = strlen(v);

		while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t')) {
			v[--n] = '\0';
		}
	}
	r->headers_done = true;
	if (p->http_major != 1) {
		/* HTTP/0.9 ("GET /" alone) could not even read our status line. */
		return parse_fail(ps, 400, "unsupported HTTP version");
	}
	r->pub.method = p->method;
	r->keep_alive = http_should_keep_alive(p) != 0;
	r->head_method = p->method == HTTP_HEAD;
	r->http10 = p->http_major == 1 && p->http_minor == 0;

	if (has_length && !chunked) {
		if (p->content_length > ps->max_body) {
			return parse_fail(ps, 413, "request body exceeds the limit");
		}
		r->body = malloc(p->content_length + 1);
		if (r->body == NULL) {
			return parse_fail(ps, 500, "out of memory");
		}
		r->body_cap = p->content_length + 1;
	}
	expect = req_header(r, "expect");
	if (expect != NULL && strcasecmp(expect, "100-continue") == 0 && !r->http10 &&
	    (chunked || (has_length && p->content_length > 0)) && ps->continue_cb != NULL) {
		ps->continue_cb(ps);
	}
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct parse *ps = p->data;
	struct req *r = ps->cur;

	if (len > ps->max_body - r->body_len) {
		return parse_fail(ps, 413, "request body exceeds the limit");
	}
	if (r->body_cap - r->body_len < len + 1) {
		size_t cap = r->body_cap ? r->body_cap : 4096;
		uint8_t *b;

		while (cap - r->body_len < len + 1) {
			cap *= 2;
		}
		if (cap > ps->max_body + 1) {
			cap = ps->max_body + 1;
		}
		b = realloc(r->body, cap);
		if (b == NULL) {
			return parse_fail(ps, 500, "out of memory");
		}
		r->body = b;
		r->body_cap = cap;
	}
	memcpy(r->body + r->body_len, at, len);
	r->body_len += len;
	return 0;
}

static int unhex(char c)
{
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	if (c >= 'a' && c <= 'f') {
		return c - 'a' + 10;
	}
	if (c >= 'A' && c <= 'F') {
		return c - 'A' + 10;
	}
	return -1;
}

/* Percent-decodes in[0..len) into out (room for len + 1) and NUL-terminates it. Returns the
 * decoded length, or -1 on a broken escape. With out NULL it only checks, without allocating:
 * -1 also for an escape that decodes to a NUL. */
static long pct_decode(const char *in, size_t len, char *out, bool plus_is_space)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		char c = in[i];
		if (c == '%') {
			int hi, lo;

			if (len - i < 3 || (hi = unhex(in[i + 1])) < 0 ||
			    (lo = unhex(in[i + 2])) < 0) {
				return -1;
			}
			c = (char)(hi << 4 | lo);
			i += 2;
			if (out == NULL && c == '\0') {
				return -1;
			}
		} else if (c == '+' && plus_is_space) {
			c = ' ';
		}
		if (out != NULL) {
			out[o] = c;
		}
		o++;
	}
	if (out != NULL) {
		out[o] = '\0';
	}
	return (long)o;
}

/* Splits and decodes the request target once the message is complete. */
static int req_target(struct parse *ps, struct req *r)
{
	struct http_parser_url u;
	const char *path, *query = "";
	size_t plen, qlen = 0;
	long n;

	http_parser_url_init(&u);
	if (r->url_len == 0 ||
	    http_parser_parse_url(r->head, r->url_len, r->pub.method == HTTP_CONNECT, &u) != 0) {
		return parse_fail(ps, 400, "invalid request target");
	}
	if ((u.field_set & (1 << UF_PATH)) == 0) {
		return parse_fail(ps, 400, "request target has no path");
	}
	path = r->head + u.field_data[UF_PATH].off;
	plen = u.field_data[UF_PATH].len;
	if ((u.field_set & (1 << UF_QUERY)) != 0) {
		query = r->head + u.field_data[UF_QUERY].off;
		qlen = u.field_data[UF_QUERY].len;
	}
	r->target = malloc(plen + qlen + 2);
	if (r->target == NULL) {
		return parse_fail(ps, 500, "out of memory");
	}
	n = pct_decode(path, plen, r->target, false);
	if (n < 0) {
		return parse_fail(ps, 400, "invalid percent-encoding in path");
	}
	if (memchr(r->target, '\0', (size_t)n) != NULL) {
		return parse_fail(ps, 400, "path contains an encoded NUL");
	}
	memcpy(r->target + n + 1, query, qlen);
	r->target[n + 1 + qlen] = '\0';
	r->pub.path = r->target;
	r->pub.path_len = (size_t)n;
	r->pub.query = r->target + n + 1;
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct parse *ps = p->data;
	struct req *r = ps->cur;

	if (req_target(ps, r) != 0) {
		return -1;
	}
	if (r->body == NULL) {
		r->pub.body = (const uint8_t *)"";
	} else {
		r->body[r->body_len] = '\0';
		r->pub.body = r->body;
	}
	r->pub.body_len = r->body_len;
	ps->done = r;
	ps->cur = NULL;
	http_parser_pause(p, 1);
	return 0;
}

int http_parse_for_test(const uint8_t *data, size_t len, size_t max_body, int *status)
{
	struct parse ps;
	const char *p = (const char *)data;
	size_t off = 0;
	int count = 0;

	parse_init(&ps, max_body ? max_body : DEFAULT_MAX_BODY);
	if (status != NULL) {
		*status = 0;
	}
	while (off < len) {
		size_t n = http_parser_execute(&ps.parser, &parser_settings, p + off, len - off);
		enum http_errno e = HTTP_PARSER_ERRNO(&ps.parser);

		off += n;
		if (e == HPE_PAUSED) {
			struct req *r = ps.done;
			bool keep = r->keep_alive;

			/* What a handler typically does with a request. */
			ps.done = NULL;
			(void)http_header_get(&r->pub, "content-type");
			free(http_query_get(&r->pub, "prefix"));
			req_free(r);
			http_parser_pause(&ps.parser, 0);
			count++;
			if (!keep) {
				break; /* the server reads nothing after a closing request */
			}
			continue;
		}
		if (e != HPE_OK || n == 0) {
			const char *msg;
			int st;

			parse_error(&ps, &st, &msg);
			if (status != NULL) {
				*status = st;
			}
			parse_fini(&ps);
			return -1;
		}
	}
	parse_fini(&ps);
	return count;
}

/* ------------------------------------------------------------------------------------------ */
/* Request accessors                                                                           */

char *http_query_get(const struct http_request *req, const char *name)
{
	const char *q = req->query;
	size_t nlen = strlen(name);

	while (*q != '\0') {
		const char *end = strchr(q, '&');
		const char *eq, *val;
		size_t klen, vlen;
		char *key, *out;
		long n;
		bool match;

		if (end == NULL) {
			end = q + strlen(q);
		}
		eq = memchr(q, '=', (size_t)(end - q));
		klen = (size_t)((eq ? eq : end) - q);
		key = malloc(klen + 1);
		if (key == NULL) {
			return NULL;
		}
		n = pct_decode(q, klen, key, true);
		match = n >= 0 && (size_t)n == nlen && memcmp(key, name, nlen) == 0;
		free(key);
		if (match) {
			val = eq ? eq + 1 : end;
			vlen = (size_t)(end - val);
			out = malloc(vlen + 1);
			if (out == NULL) {
				return NULL;
			}
			n = pct_decode(val, vlen, out, true);
			if (n < 0 || memchr(out, '\0', (size_t)n) != NULL) {
				free(out);
				return NULL;
			}
			return out;
		}
		q = *end ? end + 1 : end;
	}
	return NULL;
}

bool http_query_valid(const struct http_request *req, char *bad, size_t badlen)
{
	const char *q = req->query;
	while (*q != '\0') {
		const char *end = strchr(q, '&');
		if (end == NULL) {
			end = q + strlen(q);
		}
		size_t len = (size_t)(end - q);
		if (pct_decode(q, len, NULL, true) < 0) {
			snprintf(bad, badlen, "%.*s", (int)(len < 64 ? len : 64), q);
			return false;
		}
		q = *end ? end + 1 : end;
	}
	return true;
}

const char *http_header_get(const struct http_request *req, const char *name)
{
	return req_header(container_of(req, struct req, pub), name);
}

/* ------------------------------------------------------------------------------------------ */
/* Connections                                                                                 */

static void conn_process(struct conn *c);
static void server_maybe_free(struct http_server *srv);

static void sweep_start(struct http_server *srv);

static void on_conn_close(uv_handle_t *h)
{
	struct conn *c = h->data;
	struct http_server *srv = c->srv;
	struct req *r = c->pending;

	if (c->prev != NULL) {
		c->prev->next = c->next;
	} else {
		srv->conns = c->next;
	}
	if (c->next != NULL) {
		c->next->prev = c->prev;
	}
	parse_fini(&c->ps);
	free(c->in);
	free(c);
	if (srv->conns == NULL && !srv->sweep_closed) {
		uv_timer_stop(&srv->sweep);
	}
	if (r != NULL) {
		r->conn = NULL;
		if (r->pub.gone_cb != NULL && !r->gone_called) {
			r->gone_called = true;
			srv->in_cb++;
			r->pub.gone_cb(&r->pub);
			srv->in_cb--;
		}
	}
	server_maybe_free(srv);
}

static void conn_close(struct conn *c)
{
	if (c->closed) {
		return;
	}
	c->closed = true;
	c->reading = false;
	uv_close(&c->h.handle, on_conn_close);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;

	(void)suggested;
	*buf = uv_buf_init(c->srv->rbuf, sizeof(c->srv->rbuf));
}

/* Reads while the peer may still talk to us and little input is waiting; stops otherwise. */
static void conn_update_reading(struct conn *c)
{
	bool want;

	if (c->closed) {
		return;
	}
	want = c->draining ? !c->eof : c->in_len - c->in_off <= MAX_BUFFERED_IN;
	if (want && !c->reading) {
		if (uv_read_start(&c->h.stream, on_alloc, on_read) != 0) {
			conn_close(c);
			return;
		}
		c->reading = true;
	} else if (!want && c->reading) {
		uv_read_stop(&c->h.stream);
		c->reading = false;
	}
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct conn *c = req->data;

	if (status < 0 || c->eof) {
		conn_close(c);
		return;
	}
	c->shutdown_done = true;
	if (c->deadline > uv_now(c->srv->loop) + LINGER_MS) {
		c->deadline = uv_now(c->srv->loop) + LINGER_MS;
	}
}

static void conn_shutdown(struct conn *c)
{
	if (c->closed || c->shutdown_started) {
		return;
	}
	c->shutdown_started = true;
	c->shutdown_req.data = c;
	if (uv_shutdown(&c->shutdown_req, &c->h.stream, on_shutdown) != 0) {
		conn_close(c);
	}
}

/* Ends the connection after the responses written so far (see the top of the file). */
static void conn_drain(struct conn *c)
{
	if (c->closed || c->draining) {
		return;
	}
	c->draining = true;
	c->deadline = uv_now(c->srv->loop) + c->srv->idle_ms;
	c->in_off = c->in_len = 0;
	conn_update_reading(c);
	if (c->writes == 0) {
		conn_shutdown(c);
	}
}

/* A peer that reads what it is sent is not idle, however long the response takes: the sweep
 * cut a large one off mid-body once idle_ms had passed since it was queued. */
static void conn_progress(struct conn *c)
{
	c->idle_since = uv_now(c->srv->loop);
	if (c->draining) {
		c->deadline = c->idle_since + (c->shutdown_done ? LINGER_MS : c->srv->idle_ms);
	}
}

/* What is still to be sent: in the stream's queue, and in the kernel's send buffer (a response is
 * one write, done as soon as the kernel took all of it, which holds megabytes). */
static size_t conn_unsent(struct conn *c)
{
	size_t n = uv_stream_get_write_queue_size(&c->h.stream);
	uv_os_fd_t fd;
	int outq = 0;
	if (uv_fileno(&c->h.handle, &fd) == 0 && ioctl(fd, SIOCOUTQ, &outq) == 0 && outq > 0) {
		n += (size_t)outq;
	}
	return n;
}

static void on_write(uv_write_t *req, int status)
{
	struct wreq *w = container_of(req, struct wreq, req);
	struct conn *c = w->conn;

	free(w);
	c->writes--;
	if (status < 0) {
		conn_close(c);
		return;
	}
	conn_progress(c);
	if (c->draining && c->writes == 0) {
		conn_shutdown(c);
	}
}

static struct wreq *wreq_new(size_t len)
{
	struct wreq *w = malloc(sizeof(*w) + len);

	if (w != NULL) {
		w->len = len;
	}
	return w;
}

/* Queues w (taking it) unless the connection can no longer send. A peer that leaves more than
 * MAX_WRITE_QUEUE unread is dropped: it is gone for all the handler can tell. */
static void conn_send(struct conn *c, struct wreq *w)
{
	uv_buf_t b;

	if (c->closed || c->shutdown_started) {
		free(w);
		return;
	}
	if (uv_stream_get_write_queue_size(&c->h.stream) > MAX_WRITE_QUEUE) {
		free(w);
		c->srv->slow_drops++;
		conn_close(c);
		return;
	}
	w->conn = c;
	b = uv_buf_init(w->data, (unsigned)w->len);
	if (uv_write(&w->req, &c->h.stream, &b, 1, on_write) != 0) {
		free(w);
		conn_close(c);
		return;
	}
	c->writes++;
}

uint64_t http_server_slow_drops(const struct http_server *srv)
{
	return srv->slow_drops;
}

static const char *reason(int status)
{
	const char *s = http_status_str((enum http_status)status);

	return s[0] == '<' ? "Unknown" : s;
}

/* framing: "length" (Content-Length: body_len), "chunked", "none" (no length at all: 1xx, 204,
 * 304 or a close-delimited stream). Returns a wreq holding the head followed by room for extra
 * bytes, or NULL. */
static struct wreq *head_build(int status, const char *content_type, const char *framing,
                               size_t body_len, bool keep_alive, size_t extra)
{
	static const char fmt[] = "HTTP/1.1 %d %s\r\n%s%s%s%s%sConnection: %s\r\n\r\n";
	char lenbuf[48] = "";
	const char *ct_pre = "", *ct = "", *ct_post = "";
	const char *len_hdr = "", *te = "";
	struct wreq *w;
	int n;

	if (content_type != NULL && strpbrk(content_type, "\r\n") == NULL) {
		ct_pre = "Content-Type: ";
		ct = content_type;
		ct_post = "\r\n";
	}
	if (strcmp(framing, "length") == 0) {
		snprintf(lenbuf, sizeof(lenbuf), "Content-Length: %zu\r\n", body_len);
		len_hdr = lenbuf;
	} else if (strcmp(framing, "chunked") == 0) {
		te = "Transfer-Encoding: chunked\r\n";
	}
	n = snprintf(NULL, 0, fmt, status, reason(status), ct_pre, ct, ct_post, len_hdr, te,
	             keep_alive ? "keep-alive" : "close");
	if (n < 0 || extra > MAX_RESPONSE_BODY) {
		return NULL;
	}
	w = wreq_new((size_t)n + 1 + extra); /* snprintf() also writes a NUL */
	if (w == NULL) {
		return NULL;
	}
	snprintf(w->data, (size_t)n + 1, fmt, status, reason(status), ct_pre, ct, ct_post, len_hdr,
	         te, keep_alive ? "keep-alive" : "close");
	w->len = (size_t)n;
	return w;
}

static bool status_has_body(int status)
{
	return status >= 200 && status != 204 && status != 304;
}

static void conn_send_error(struct conn *c, int status, const char *msg)
{
	char body[512];
	int n = snprintf(body, sizeof(body),
	                 "{\"error\": {\"code\": \"bad_request\", \"message\": \"%s\"}}\n", msg);
	struct wreq *w;

	if (n < 0 || (size_t)n >= sizeof(body)) {
		n = 0;
	}
	w = head_build(status, "application/json", "length", (size_t)n, false, (size_t)n);
	if (w == NULL) {
		conn_close(c);
		return;
	}
	memcpy(w->data + w->len, body, (size_t)n);
	w->len += (size_t)n;
	conn_send(c, w);
}

static void conn_continue(struct parse *ps)
{
	static const char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
	struct conn *c = container_of(ps, struct conn, ps);
	struct wreq *w = wreq_new(sizeof(msg) - 1);

	if (w == NULL) {
		return; /* the peer sends the body after its own timeout anyway */
	}
	memcpy(w->data, msg, sizeof(msg) - 1);
	conn_send(c, w);
}

static void conn_dispatch(struct conn *c)
{
	struct http_server *srv = c->srv;
	struct req *r = c->ps.done;

	c->ps.done = NULL;
	r->srv = srv;
	r->conn = c;
	r->pub.from_unix = c->from_unix;
	c->pending = r;
	srv->requests++;
	srv->handler(srv, &r->pub);
}

/* Feeds p[0..len) to the parser, handing every complete request to the handler, until the input
 * is used up, a request is pending or the connection ends. Returns the bytes consumed. */
static size_t conn_parse(struct conn *c, const char *p, size_t len)
{
	size_t off = 0;

	c->processing = true;
	while (off < len && c->pending == NULL && !c->closed && !c->draining) {
		size_t n = http_parser_execute(&c->ps.parser, &parser_settings, p + off, len - off);
		enum http_errno e = HTTP_PARSER_ERRNO(&c->ps.parser);

		off += n;
		if (e == HPE_PAUSED) {
			http_parser_pause(&c->ps.parser, 0);
			conn_dispatch(c);
			continue;
		}
		if (e != HPE_OK || n == 0) {
			const char *msg;
			int status;

			parse_error(&c->ps, &status, &msg);
			parse_fini(&c->ps);
			conn_send_error(c, status, msg);
			conn_drain(c);
			off = len;
		}
	}
	c->processing = false;
	return off;
}

static int conn_buffer(struct conn *c, const char *p, size_t len)
{
	if (c->in_off > 0) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	if (c->in_cap - c->in_len < len) {
		size_t cap = c->in_cap * 2 > c->in_len + len ? c->in_cap * 2 : c->in_len + len;
		char *b = realloc(c->in, cap);

		if (b == NULL) {
			return -1;
		}
		c->in = b;
		c->in_cap = cap;
	}
	memcpy(c->in + c->in_len, p, len);
	c->in_len += len;
	return 0;
}

/* Continues with buffered input once no request is pending. */
static void conn_process(struct conn *c)
{
	if (c->processing) {
		return; /* a synchronous answer: the conn_parse() below us goes on */
	}
	if (c->pending == NULL && !c->closed && !c->draining && c->in_off < c->in_len) {
		c->in_off += conn_parse(c, c->in + c->in_off, c->in_len - c->in_off);
	}
	if (c->in_off >= c->in_len) {
		c->in_off = c->in_len = 0;
		if (c->in_cap > MAX_BUFFERED_IN) {
			free(c->in);
			c->in = NULL;
			c->in_cap = 0;
		}
	}
	conn_update_reading(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;
	size_t len = (size_t)nread;

	if (nread < 0) {
		c->eof = true;
		/* A peer that stopped sending after its last request still gets that request's
		 * response, written but maybe not yet sent (a half-close, as `nc -N` does). */
		if (nread == UV_EOF && !c->draining && c->pending == NULL && c->writes > 0 &&
		    c->in_off == c->in_len) {
			conn_drain(c);
			return;
		}
		/* A draining connection still delivers its last response; anything else with a
		 * peer that stopped sending has nothing left to do (a pending request is gone). */
		if (!c->draining || c->shutdown_done || nread != UV_EOF) {
			conn_close(c);
		} else {
			conn_update_reading(c);
		}
		return;
	}
	if (nread == 0 || c->closed || c->draining) {
		return;
	}
	if (c->pending == NULL && c->in_off == c->in_len) {
		size_t n = conn_parse(c, buf->base, len);

		if (n < len && !c->closed && !c->draining &&
		    conn_buffer(c, buf->base + n, len - n)) {
			conn_close(c);
			return;
		}
	} else if (conn_buffer(c, buf->base, len) != 0) {
		conn_close(c);
		return;
	}
	conn_process(c);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct listener *l = server->data;
	struct http_server *srv = l->srv;
	struct conn *c;
	int rv;

	if (status < 0 || srv->closing) {
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		return;
	}
	if (l->is_unix) {
		rv = uv_pipe_init(srv->loop, &c->h.pipe, 0);
	} else {
		rv = uv_tcp_init(srv->loop, &c->h.tcp);
	}
	if (rv != 0) {
		free(c);
		return;
	}
	c->h.handle.data = c;
	c->srv = srv;
	c->from_unix = l->is_unix;
	c->next = srv->conns;
	if (srv->conns != NULL) {
		srv->conns->prev = c;
	}
	srv->conns = c;
	parse_init(&c->ps, srv->max_body);
	c->ps.continue_cb = conn_continue;
	if (uv_accept(server, &c->h.stream) != 0) {
		conn_close(c);
		return;
	}
	if (!l->is_unix) {
		uv_tcp_nodelay(&c->h.tcp, 1);
		/* A watch from a host that lost power or its network would otherwise hold its
		 * connection and store watch for ever: the sweep spares a pending request. */
		uv_tcp_keepalive(&c->h.tcp, 1, 60);
	}
	c->idle_since = uv_now(srv->loop);
	conn_update_reading(c);
	sweep_start(srv);
}

/* ------------------------------------------------------------------------------------------ */
/* Answers                                                                                     */

static void req_done(struct req *r)
{
	struct http_server *srv = r->srv;
	struct conn *c = r->conn;
	bool keep = r->keep_alive;

	srv->requests--;
	req_free(r);
	if (c != NULL) {
		c->pending = NULL;
		if (!keep) {
			conn_drain(c);
		} else {
			c->idle_since = uv_now(srv->loop);
			conn_process(c);
		}
	}
	server_maybe_free(srv);
}

static bool req_can_send(const struct req *r)
{
	return r->conn != NULL && !r->conn->closed && !r->conn->shutdown_started;
}

void http_respond(struct http_request *req, int status, const char *content_type, const void *body,
                  size_t len)
{
	struct req *r = container_of(req, struct req, pub);
	struct wreq *w;
	bool with_body;

	if (r->streaming) {
		http_stream_end(req);
		return;
	}
	if (status < 100 || status > 999 || len > MAX_RESPONSE_BODY) {
		status = 500;
		content_type = NULL;
		len = 0;
	}
	if (status < 200) {
		r->keep_alive = false; /* an interim status cannot end the exchange */
	}
	if (req_can_send(r)) {
		with_body = status_has_body(status) && !r->head_method;
		w = head_build(status, content_type, status_has_body(status) ? "length" : "none",
		               len, r->keep_alive, with_body ? len : 0);
		if (w == NULL) {
			conn_close(r->conn);
		} else {
			if (with_body && len > 0) {
				memcpy(w->data + w->len, body, len);
				w->len += len;
			}
			conn_send(r->conn, w);
		}
	}
	req_done(r);
}

void http_stream_begin(struct http_request *req, int status, const char *content_type)
{
	struct req *r = container_of(req, struct req, pub);
	struct wreq *w;

	if (r->streaming) {
		return;
	}
	r->streaming = true;
	if (status < 200 || status > 999) {
		status = 500;
	}
	/* HTTP/1.0 knows no chunked coding: the stream ends with the connection. */
	if (r->http10) {
		r->keep_alive = false;
	}
	if (!req_can_send(r)) {
		return;
	}
	w = head_build(status, content_type, r->http10 ? "none" : "chunked", 0, r->keep_alive, 0);
	if (w == NULL) {
		conn_close(r->conn);
		return;
	}
	conn_send(r->conn, w);
}

void http_stream_write(struct http_request *req, const void *data, size_t len)
{
	struct req *r = container_of(req, struct req, pub);
	struct wreq *w;
	int n = 0;

	if (!r->streaming || len == 0 || r->head_method || !req_can_send(r)) {
		return;
	}
	if (len > MAX_RESPONSE_BODY) {
		conn_close(r->conn);
		return;
	}
	w = wreq_new(len + 32);
	if (w == NULL) {
		conn_close(r->conn);
		return;
	}
	if (!r->http10) {
		n = snprintf(w->data, 32, "%zx\r\n", len);
	}
	memcpy(w->data + n, data, len);
	w->len = (size_t)n + len;
	if (!r->http10) {
		memcpy(w->data + w->len, "\r\n", 2);
		w->len += 2;
	}
	conn_send(r->conn, w);
}

void http_stream_end(struct http_request *req)
{
	struct req *r = container_of(req, struct req, pub);
	static const char last[] = "0\r\n\r\n";

	if (r->streaming && !r->http10 && !r->head_method && req_can_send(r)) {
		struct wreq *w = wreq_new(sizeof(last) - 1);

		if (w == NULL) {
			conn_close(r->conn);
		} else {
			memcpy(w->data, last, sizeof(last) - 1);
			conn_send(r->conn, w);
		}
	}
	req_done(r);
}

/* ------------------------------------------------------------------------------------------ */
/* Server                                                                                      */

static void on_sweep(uv_timer_t *t)
{
	struct http_server *srv = t->data;
	uint64_t now = uv_now(srv->loop);

	/* A sweep that comes late means this loop was held up (a long synchronous call, a stopped
	 * or starved process): its peers could neither be served nor be seen reading meanwhile, so
	 * that time does not count against them; the sweep right after a stall closed connections
	 * that were never idle. */
	uint64_t stalled = 0;
	uint64_t period = uv_timer_get_repeat(&srv->sweep);
	if (now - srv->last_sweep > 2 * period) {
		stalled = now - srv->last_sweep - period;
	}
	srv->last_sweep = now;

	/* conn_close() only unlinks in the close callback, so the walk is safe. */
	for (struct conn *c = srv->conns; c != NULL; c = c->next) {
		if (c->closed) {
			continue;
		}
		if (stalled > 0) {
			c->idle_since =
			    c->idle_since + stalled < now ? c->idle_since + stalled : now;
			c->deadline += stalled;
		}
		/* A slow reader's progress shows in what is still to be sent going down. */
		size_t unsent = conn_unsent(c);
		if (unsent < c->queued) {
			conn_progress(c);
		}
		c->queued = unsent;
		if (c->draining ? now >= c->deadline
		                : c->pending == NULL && now - c->idle_since >= srv->idle_ms) {
			conn_close(c);
		}
	}
}

static void sweep_start(struct http_server *srv)
{
	uint64_t period = srv->idle_ms / 4;

	if (uv_is_active((uv_handle_t *)&srv->sweep)) {
		return;
	}
	if (period > SWEEP_MAX_MS) {
		period = SWEEP_MAX_MS;
	}
	if (period < 10) {
		period = 10;
	}
	srv->last_sweep = uv_now(srv->loop);
	uv_timer_start(&srv->sweep, on_sweep, period, period);
}

int http_server_new(uv_loop_t *loop, const struct http_server_config *cfg, http_handler_cb handler,
                    void *data, struct http_server **out)
{
	struct http_server *srv;
	int rv;

	if (handler == NULL) {
		return UV_EINVAL;
	}
	srv = calloc(1, sizeof(*srv));
	if (srv == NULL) {
		return UV_ENOMEM;
	}
	srv->loop = loop;
	srv->max_body = cfg != NULL && cfg->max_body ? cfg->max_body : DEFAULT_MAX_BODY;
	srv->idle_ms = cfg != NULL && cfg->idle_timeout_ms ? cfg->idle_timeout_ms : DEFAULT_IDLE_MS;
	srv->handler = handler;
	srv->data = data;
	rv = uv_timer_init(loop, &srv->sweep);
	if (rv != 0) {
		free(srv);
		return rv;
	}
	srv->sweep.data = srv;
	*out = srv;
	return 0;
}

void *http_server_data(struct http_server *srv)
{
	return srv->data;
}

static void on_listener_close(uv_handle_t *h)
{
	struct listener *l = h->data;
	struct http_server *srv = l->srv;

	if (l->prev != NULL) {
		l->prev->next = l->next;
	} else {
		srv->listeners = l->next;
	}
	if (l->next != NULL) {
		l->next->prev = l->prev;
	}
	if (l->unix_path != NULL) {
		unlink(l->unix_path);
		free(l->unix_path);
	}
	free(l);
	server_maybe_free(srv);
}

static struct listener *listener_new(struct http_server *srv, bool is_unix)
{
	struct listener *l = calloc(1, sizeof(*l));
	int rv;

	if (l == NULL) {
		return NULL;
	}
	rv = is_unix ? uv_pipe_init(srv->loop, &l->h.pipe, 0) : uv_tcp_init(srv->loop, &l->h.tcp);
	if (rv != 0) {
		free(l);
		return NULL;
	}
	l->h.handle.data = l;
	l->srv = srv;
	l->is_unix = is_unix;
	l->next = srv->listeners;
	if (srv->listeners != NULL) {
		srv->listeners->prev = l;
	}
	srv->listeners = l;
	return l;
}

int http_address_parse(const char *address, struct sockaddr_storage *out)
{
	char host[64];
	const char *port, *end;
	size_t hlen;
	char *stop;
	unsigned long p;
	bool v6 = false;
	int rv;

	if (address == NULL) {
		return UV_EINVAL;
	}
	if (address[0] == '[') {
		v6 = true;
		end = strchr(address, ']');
		if (end == NULL || end[1] != ':') {
			return UV_EINVAL;
		}
		hlen = (size_t)(end - address - 1);
		port = end + 2;
		address++;
	} else {
		end = strrchr(address, ':');
		if (end == NULL) {
			return UV_EINVAL;
		}
		hlen = (size_t)(end - address);
		port = end + 1;
	}
	if (hlen == 0 || hlen >= sizeof(host) || port[0] < '0' || port[0] > '9') {
		return UV_EINVAL;
	}
	errno = 0;
	p = strtoul(port, &stop, 10);
	if (errno != 0 || *stop != '\0' || p > 65535) {
		return UV_EINVAL;
	}
	memcpy(host, address, hlen);
	host[hlen] = '\0';
	memset(out, 0, sizeof(*out));
	if (v6) {
		rv = uv_ip6_addr(host, (int)p, (struct sockaddr_in6 *)out);
	} else {
		rv = uv_ip4_addr(host, (int)p, (struct sockaddr_in *)out);
	}
	return rv != 0 ? UV_EINVAL : 0;
}

int http_server_listen_tcp(struct http_server *srv, const char *address)
{
	struct sockaddr_storage addr;
	struct listener *l;
	int rv;

	if (srv->closing) {
		return UV_EINVAL;
	}
	rv = http_address_parse(address, &addr);
	if (rv != 0) {
		return rv;
	}
	l = listener_new(srv, false);
	if (l == NULL) {
		return UV_ENOMEM;
	}
	rv = uv_tcp_bind(&l->h.tcp, (const struct sockaddr *)&addr, 0);
	if (rv == 0) {
		rv = uv_listen(&l->h.stream, LISTEN_BACKLOG, on_connection);
	}
	if (rv != 0) {
		uv_close(&l->h.handle, on_listener_close);
	}
	return rv;
}

/* 0 when nothing accepts connections on the unix socket at path (a leftover of a process that
 * died), UV_EADDRINUSE when something does, or another error when that cannot be told. */
static int socket_answers(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		return -errno;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1); /* the caller checked that it fits */
	int rv = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 ? UV_EADDRINUSE
	         : errno == ECONNREFUSED                             ? 0
	         : errno == EAGAIN ? UV_EADDRINUSE /* backlog full */
	                           : -errno;
	close(fd);
	return rv;
}

int http_server_listen_unix(struct http_server *srv, const char *path, int mode)
{
	struct listener *l;
	struct stat st;
	int rv;

	if (srv->closing) {
		return UV_EINVAL;
	}
	/* libuv would silently truncate a path that does not fit. */
	if (strlen(path) >= sizeof(((struct sockaddr_un *)NULL)->sun_path)) {
		return UV_ENAMETOOLONG;
	}
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			return UV_EEXIST;
		}
		/* A socket someone still answers on is theirs (another agent given the same path):
		 * unlinking it would cut its clients off. Only a dead one is left over. */
		if ((rv = socket_answers(path)) != 0) {
			return rv;
		}
		if (unlink(path) != 0) {
			return -errno;
		}
	} else if (errno != ENOENT) {
		return -errno;
	}
	l = listener_new(srv, true);
	if (l == NULL) {
		return UV_ENOMEM;
	}
	rv = uv_pipe_bind(&l->h.pipe, path);
	if (rv != 0) {
		goto err;
	}
	l->unix_path = strdup(path);
	if (l->unix_path == NULL) {
		unlink(path);
		rv = UV_ENOMEM;
		goto err;
	}
	if (chmod(path, (mode_t)mode) != 0) {
		rv = -errno;
		goto err;
	}
	rv = uv_listen(&l->h.stream, LISTEN_BACKLOG, on_connection);
	if (rv != 0) {
		goto err;
	}
	return 0;
err:
	uv_close(&l->h.handle, on_listener_close);
	return rv;
}

int http_server_port(struct http_server *srv)
{
	for (struct listener *l = srv->listeners; l != NULL; l = l->next) {
		struct sockaddr_storage addr;
		int len = sizeof(addr);
		int rv;

		if (l->is_unix || uv_is_closing(&l->h.handle)) {
			continue;
		}
		rv = uv_tcp_getsockname(&l->h.tcp, (struct sockaddr *)&addr, &len);
		if (rv != 0) {
			return rv;
		}
		if (addr.ss_family == AF_INET6) {
			return ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
		}
		return ntohs(((struct sockaddr_in *)&addr)->sin_port);
	}
	return UV_ENOENT;
}

static void server_maybe_free(struct http_server *srv)
{
	void (*cb)(void *data);
	void *data;

	if (!srv->closing || srv->in_cb > 0 || srv->listeners != NULL || srv->conns != NULL ||
	    !srv->sweep_closed || srv->requests > 0) {
		return;
	}
	cb = srv->close_cb;
	data = srv->close_data;
	free(srv);
	if (cb != NULL) {
		cb(data);
	}
}

static void on_sweep_close(uv_handle_t *h)
{
	struct http_server *srv = h->data;

	srv->sweep_closed = true;
	server_maybe_free(srv);
}

void http_server_close(struct http_server *srv, void (*cb)(void *data), void *data)
{
	if (srv->closing) {
		return;
	}
	srv->closing = true;
	srv->close_cb = cb;
	srv->close_data = data;
	for (struct listener *l = srv->listeners; l != NULL; l = l->next) {
		if (!uv_is_closing(&l->h.handle)) {
			uv_close(&l->h.handle, on_listener_close);
		}
	}
	for (struct conn *c = srv->conns; c != NULL; c = c->next) {
		conn_close(c);
	}
	uv_close((uv_handle_t *)&srv->sweep, on_sweep_close);
}
