/*
 * HTTP server and client over real sockets: server, client and the raw peers of these tests all
 * run on one libuv loop in this thread.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "agent/http.h"

#include <fcntl.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_BODY    1024
#define WATCHDOG_MS 20000
#define BIG         (4u << 20) /* /big's body: more than the kernel buffers on both ends */

/* ------------------------------------------------------------------------------------------ */
/* Fixture                                                                                     */

struct fx {
	uv_loop_t loop;
	uv_timer_t watchdog;
	uint64_t started;
	struct http_server *srv;
	struct http_client *cli;
	int port;
	char addr[64];
	bool srv_closed;

	/* handler bookkeeping */
	int handled;
	int gone;
	int pending_now, pending_max;
	struct http_request *held[8];
	int n_held;
	bool defer_gone_answer; /* /hang: answer after gone_cb returns, from a timer */
	size_t flood_bytes;
};

struct later {
	uv_timer_t timer;
	struct fx *fx;
	struct http_request *req;
	int step;
};

static void on_watchdog(uv_timer_t *t)
{
	(void)t;
}

static void run_until(struct fx *fx, const bool *flag)
{
	while (!*flag) {
		assert_true(uv_now(&fx->loop) - fx->started < WATCHDOG_MS);
		uv_run(&fx->loop, UV_RUN_ONCE);
	}
}

static void run_until_int(struct fx *fx, const int *v, int want)
{
	while (*v < want) {
		assert_true(uv_now(&fx->loop) - fx->started < WATCHDOG_MS);
		uv_run(&fx->loop, UV_RUN_ONCE);
	}
}

static void run_for(struct fx *fx, unsigned ms)
{
	uint64_t end = uv_now(&fx->loop) + ms;

	while (uv_now(&fx->loop) < end) {
		uv_run(&fx->loop, UV_RUN_ONCE);
	}
}

static void handler(struct http_server *srv, struct http_request *req);

static void on_srv_closed(void *data)
{
	struct fx *fx = data;

	fx->srv_closed = true;
}

static struct fx *fx_new(unsigned idle_ms)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	struct http_server_config cfg = {.max_body = MAX_BODY, .idle_timeout_ms = idle_ms};

	assert_non_null(fx);
	assert_int_equal(uv_loop_init(&fx->loop), 0);
	/* Keeps UV_RUN_ONCE from blocking forever when a test waits for something that never
	 * happens; run_until() then fails on the clock. */
	uv_timer_init(&fx->loop, &fx->watchdog);
	uv_timer_start(&fx->watchdog, on_watchdog, 50, 50);
	uv_unref((uv_handle_t *)&fx->watchdog);
	fx->started = uv_now(&fx->loop);
	assert_int_equal(http_server_new(&fx->loop, &cfg, handler, fx, &fx->srv), 0);
	assert_ptr_equal(http_server_data(fx->srv), fx);
	assert_int_equal(http_server_listen_tcp(fx->srv, "127.0.0.1:0"), 0);
	fx->port = http_server_port(fx->srv);
	assert_true(fx->port > 0);
	snprintf(fx->addr, sizeof(fx->addr), "127.0.0.1:%d", fx->port);
	assert_int_equal(http_client_new(&fx->loop, &fx->cli), 0);
	return fx;
}

static void fx_close_server(struct fx *fx)
{
	if (fx->srv != NULL) {
		http_server_close(fx->srv, on_srv_closed, fx);
		fx->srv = NULL;
		run_until(fx, &fx->srv_closed);
	}
}

static void fx_free(struct fx *fx)
{
	if (fx->cli != NULL) {
		http_client_close(fx->cli);
	}
	fx_close_server(fx);
	uv_close((uv_handle_t *)&fx->watchdog, NULL);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&fx->loop), 0);
	free(fx);
}

/* ------------------------------------------------------------------------------------------ */
/* Handler                                                                                     */

static void on_later_closed(uv_handle_t *h)
{
	free(h->data);
}

static struct later *later_start(struct fx *fx, struct http_request *req, uv_timer_cb cb,
                                 unsigned ms, unsigned repeat)
{
	struct later *l = calloc(1, sizeof(*l));

	assert_non_null(l);
	l->fx = fx;
	l->req = req;
	l->timer.data = l;
	uv_timer_init(&fx->loop, &l->timer);
	uv_timer_start(&l->timer, cb, ms, repeat);
	return l;
}

static void later_done(struct later *l)
{
	uv_close((uv_handle_t *)&l->timer, on_later_closed);
}

static void on_later(uv_timer_t *t)
{
	struct later *l = t->data;
	char body[256];
	int n = snprintf(body, sizeof(body), "later:%s", l->req->path);

	l->fx->pending_now--;
	http_respond(l->req, 200, "text/plain", body, (size_t)n);
	later_done(l);
}

static void on_stream_tick(uv_timer_t *t)
{
	struct later *l = t->data;
	char chunk[32];
	int n;

	if (l->step == 5) {
		http_stream_end(l->req);
		later_done(l);
		return;
	}
	n = snprintf(chunk, sizeof(chunk), "chunk%d\n", l->step++);
	http_stream_write(l->req, chunk, (size_t)n);
}

static void on_flood_gone(struct http_request *req)
{
	struct later *l = req->data;

	l->fx->gone++;
	http_stream_end(req);
	later_done(l);
}

static void on_flood_tick(uv_timer_t *t)
{
	struct later *l = t->data;
	static const char block[256 * 1024];

	http_stream_write(l->req, block, sizeof(block));
	l->fx->flood_bytes += sizeof(block);
}

static void on_deferred_answer(uv_timer_t *t)
{
	struct later *l = t->data;

	http_respond(l->req, 200, NULL, NULL, 0);
	later_done(l);
}

static void on_hang_gone(struct http_request *req)
{
	struct fx *fx = req->data;

	fx->gone++;
	for (int i = 0; i < fx->n_held; i++) {
		if (fx->held[i] == req) {
			fx->held[i] = fx->held[--fx->n_held];
			break;
		}
	}
	if (fx->defer_gone_answer) {
		later_start(fx, req, on_deferred_answer, 30, 0);
	} else {
		/* Nobody reads this any more; it only releases the request. */
		http_respond(req, 200, "text/plain", "late", 4);
	}
}

static void append(char *buf, size_t cap, const char *fmt, const char *v)
{
	size_t n = strlen(buf);

	snprintf(buf + n, cap - n, fmt, v ? v : "(null)");
}

static void handler(struct http_server *srv, struct http_request *req)
{
	struct fx *fx = http_server_data(srv);
	char *out;
	size_t cap;
	int n;

	fx->handled++;
	assert_int_equal(strlen(req->path), req->path_len);
	assert_int_equal(req->body[req->body_len], '\0');
	if (strcmp(req->path, "/echo") == 0) {
		cap = 256 + req->body_len;
		out = malloc(cap);
		assert_non_null(out);
		n = snprintf(out, cap, "%s %s q=%s unix=%d len=%zu\n",
		             http_method_str((enum http_method)req->method), req->path, req->query,
		             req->from_unix, req->body_len);
		memcpy(out + n, req->body, req->body_len);
		http_respond(req, 200, "text/plain", out, (size_t)n + req->body_len);
		free(out);
	} else if (strcmp(req->path, "/later") == 0) {
		fx->pending_now++;
		if (fx->pending_now > fx->pending_max) {
			fx->pending_max = fx->pending_now;
		}
		later_start(fx, req, on_later, 20, 0);
	} else if (strcmp(req->path, "/stream") == 0) {
		http_stream_begin(req, 200, "text/plain");
		later_start(fx, req, on_stream_tick, 5, 5);
	} else if (strcmp(req->path, "/flood") == 0) {
		http_stream_begin(req, 200, "application/octet-stream");
		req->data = later_start(fx, req, on_flood_tick, 1, 1);
		req->gone_cb = on_flood_gone;
	} else if (strcmp(req->path, "/hang") == 0) {
		assert_true(fx->n_held < 8);
		fx->held[fx->n_held++] = req;
		req->data = fx;
		req->gone_cb = on_hang_gone;
	} else if (strcmp(req->path, "/query") == 0) {
		char buf[512] = "";
		char *a = http_query_get(req, "a"), *b = http_query_get(req, "b"),
		     *c = http_query_get(req, "c");

		append(buf, sizeof(buf), "a=%s", a);
		append(buf, sizeof(buf), " b=%s", b);
		append(buf, sizeof(buf), " c=%s", c);
		append(buf, sizeof(buf), " x-test=%s", http_header_get(req, "X-TEST"));
		append(buf, sizeof(buf), " none=%s", http_header_get(req, "x-none"));
		free(a);
		free(b);
		free(c);
		http_respond(req, 200, "text/plain", buf, strlen(buf));
	} else if (strcmp(req->path, "/big") == 0) {
		out = malloc(BIG);
		assert_non_null(out);
		memset(out, 'b', BIG);
		http_respond(req, 200, "application/octet-stream", out, BIG);
		free(out);
	} else if (strcmp(req->path, "/nocontent") == 0) {
		http_respond(req, 204, NULL, NULL, 0);
	} else {
		http_respond(req, 404, "application/json", "{}", 2);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Client results                                                                              */

struct result {
	bool done;
	int status;
	char *body;
	size_t len;
};

static void on_result(int status, const uint8_t *body, size_t len, void *data)
{
	struct result *r = data;

	assert_false(r->done); /* exactly once */
	r->done = true;
	r->status = status;
	r->len = len;
	r->body = malloc(len + 1);
	assert_non_null(r->body);
	memcpy(r->body, body, len);
	r->body[len] = '\0';
}

static void result_free(struct result *r)
{
	free(r->body);
	memset(r, 0, sizeof(*r));
}

static void request(struct fx *fx, const char *method, const char *path, const char *body,
                    size_t len, unsigned timeout_ms, struct result *res)
{
	memset(res, 0, sizeof(*res));
	assert_int_equal(http_client_request(fx->cli, fx->addr, method, path,
	                                     body ? "text/plain" : NULL, body, len, timeout_ms,
	                                     on_result, res),
	                 0);
}

static void request_sync(struct fx *fx, const char *method, const char *path, const char *body,
                         size_t len, struct result *res)
{
	request(fx, method, path, body, len, 5000, res);
	run_until(fx, &res->done);
}

/* ------------------------------------------------------------------------------------------ */
/* Raw peers                                                                                   */

struct raw {
	union {
		uv_handle_t handle;
		uv_stream_t stream;
		uv_tcp_t tcp;
		uv_pipe_t pipe;
	} h;
	uv_connect_t cr;
	bool connected, eof, closed;
	int connect_status;
	int writes;
	char *in;
	size_t in_len;
	void *data;
};

struct raw_write {
	uv_write_t req;
	struct raw *raw;
	char data[];
};

static void raw_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
	(void)h;
	buf->base = malloc(size);
	buf->len = buf->base ? size : 0;
}

static void raw_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct raw *raw = s->data;

	if (nread > 0) {
		raw->in = realloc(raw->in, raw->in_len + (size_t)nread + 1);
		assert_non_null(raw->in);
		memcpy(raw->in + raw->in_len, buf->base, (size_t)nread);
		raw->in_len += (size_t)nread;
		raw->in[raw->in_len] = '\0';
	} else if (nread < 0) {
		raw->eof = true;
		uv_read_stop(s);
	}
	free(buf->base);
}

static void raw_connected(uv_connect_t *req, int status)
{
	struct raw *raw = req->data;

	raw->connected = true;
	raw->connect_status = status;
}

static void raw_open(struct fx *fx, struct raw *raw, const char *unix_path, bool read)
{
	memset(raw, 0, sizeof(*raw));
	raw->cr.data = raw;
	if (unix_path != NULL) {
		uv_pipe_init(&fx->loop, &raw->h.pipe, 0);
		uv_pipe_connect(&raw->cr, &raw->h.pipe, unix_path, raw_connected);
	} else {
		struct sockaddr_storage addr;

		assert_int_equal(http_address_parse(fx->addr, &addr), 0);
		uv_tcp_init(&fx->loop, &raw->h.tcp);
		assert_int_equal(
		    uv_tcp_connect(&raw->cr, &raw->h.tcp, (struct sockaddr *)&addr, raw_connected),
		    0);
	}
	raw->h.handle.data = raw;
	run_until(fx, &raw->connected);
	assert_int_equal(raw->connect_status, 0);
	if (read) {
		assert_int_equal(uv_read_start(&raw->h.stream, raw_alloc, raw_read), 0);
	}
}

static void raw_written(uv_write_t *req, int status)
{
	struct raw_write *w = (struct raw_write *)req;

	(void)status; /* the server may close first (413, 431) */
	w->raw->writes--;
	free(w);
}

static void raw_send(struct raw *raw, const void *data, size_t len)
{
	struct raw_write *w = malloc(sizeof(*w) + len);
	uv_buf_t b;

	assert_non_null(w);
	memcpy(w->data, data, len);
	w->raw = raw;
	b = uv_buf_init(w->data, (unsigned)len);
	assert_int_equal(uv_write(&w->req, &raw->h.stream, &b, 1, raw_written), 0);
	raw->writes++;
}

static void raw_sends(struct raw *raw, const char *s)
{
	raw_send(raw, s, strlen(s));
}

static int count(const char *hay, const char *needle)
{
	int n = 0;

	while (hay != NULL && (hay = strstr(hay, needle)) != NULL) {
		n++;
		hay += strlen(needle);
	}
	return n;
}

static void raw_wait(struct fx *fx, struct raw *raw, const char *needle, int times)
{
	while (count(raw->in, needle) < times) {
		assert_false(raw->eof);
		assert_true(uv_now(&fx->loop) - fx->started < WATCHDOG_MS);
		uv_run(&fx->loop, UV_RUN_ONCE);
	}
}

static void raw_closed(uv_handle_t *h)
{
	struct raw *raw = h->data;

	raw->closed = true;
}

static void raw_close(struct fx *fx, struct raw *raw)
{
	uv_close(&raw->h.handle, raw_closed);
	run_until(fx, &raw->closed);
	free(raw->in);
	raw->in = NULL;
}

/* Sends one raw exchange and returns everything the server sent until it closed. */
static char *raw_exchange(struct fx *fx, const void *data, size_t len)
{
	struct raw raw;
	char *out;

	raw_open(fx, &raw, NULL, true);
	raw_send(&raw, data, len);
	run_until(fx, &raw.eof);
	out = raw.in ? raw.in : strdup("");
	raw.in = NULL;
	raw_close(fx, &raw);
	return out;
}

/* ------------------------------------------------------------------------------------------ */
/* Tests                                                                                       */

static void test_get_put(void **state)
{
	struct fx *fx = fx_new(0);
	struct result r;

	(void)state;
	request_sync(fx, "GET", "/echo?x=1&y=%20", NULL, 0, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "GET /echo q=x=1&y=%20 unix=0 len=0\n");
	result_free(&r);

	request_sync(fx, "PUT", "/echo", "hello", 5, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "PUT /echo q= unix=0 len=5\nhello");
	result_free(&r);

	request_sync(fx, "POST", "/ech%6f", NULL, 0, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "POST /echo q= unix=0 len=0\n");
	result_free(&r);

	request_sync(fx, "HEAD", "/echo", NULL, 0, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.len, 0);
	result_free(&r);

	request_sync(fx, "DELETE", "/missing", NULL, 0, &r);
	assert_int_equal(r.status, 404);
	assert_string_equal(r.body, "{}");
	result_free(&r);

	request_sync(fx, "GET", "/nocontent", NULL, 0, &r);
	assert_int_equal(r.status, 204);
	result_free(&r);

	/* still one connection, still usable after 204 and HEAD */
	request_sync(fx, "GET", "/echo", NULL, 0, &r);
	assert_int_equal(r.status, 200);
	result_free(&r);

	assert_int_equal(
	    http_client_request(fx->cli, "nonsense", "GET", "/", NULL, NULL, 0, 0, on_result, &r),
	    UV_EINVAL);
	assert_int_equal(
	    http_client_request(fx->cli, fx->addr, "GET", "/a b", NULL, NULL, 0, 0, on_result, &r),
	    UV_EINVAL);
	assert_int_equal(http_client_request(fx->cli, fx->addr, "GET", "/a\r\nX: y", NULL, NULL, 0,
	                                     0, on_result, &r),
	                 UV_EINVAL);

	/* a header set once goes with every later request; one that cannot be is refused */
	assert_int_equal(http_client_set_header(fx->cli, "X-Test", "v1\r\nX-None: y"), UV_EINVAL);
	assert_int_equal(http_client_set_header(fx->cli, "X:Test", "v1"), UV_EINVAL);
	assert_int_equal(http_client_set_header(fx->cli, "X-Test", "v1"), 0);
	for (int i = 0; i < 2; i++) {
		request_sync(fx, "GET", "/query", NULL, 0, &r);
		assert_int_equal(r.status, 200);
		assert_string_equal(r.body, "a=(null) b=(null) c=(null) x-test=v1 none=(null)");
		result_free(&r);
	}
	fx_free(fx);
}

/* TCP connections in state ESTABLISHED with an end on port (both ends are on this host). */
static int established_on_port(int port)
{
	FILE *f = fopen("/proc/net/tcp", "r");
	char line[512];
	int n = 0;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned lport, rport, st;

		if (sscanf(line, " %*d: %*x:%x %*x:%x %x", &lport, &rport, &st) == 3 && st == 1 &&
		    ((int)lport == port || (int)rport == port)) {
			n++;
		}
	}
	fclose(f);
	return n;
}

static void test_keepalive_reuse(void **state)
{
	struct fx *fx = fx_new(0);
	struct result r;
	struct raw raw;

	(void)state;
	for (int i = 0; i < 50; i++) {
		char path[32];

		snprintf(path, sizeof(path), "/echo?i=%d", i);
		request_sync(fx, "GET", path, NULL, 0, &r);
		assert_int_equal(r.status, 200);
		result_free(&r);
	}
	assert_int_equal(fx->handled, 50);
	assert_int_equal(established_on_port(fx->port), 2); /* one connection, two ends */

	/* the server side of keep-alive, request after request on one raw connection */
	raw_open(fx, &raw, NULL, true);
	for (int i = 1; i <= 5; i++) {
		raw_sends(&raw, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
		raw_wait(fx, &raw, "HTTP/1.1 200 OK\r\n", i);
	}
	assert_int_equal(count(raw.in, "Connection: keep-alive\r\n"), 5);
	raw_close(fx, &raw);
	fx_free(fx);
}

static void test_pipelining(void **state)
{
	struct fx *fx = fx_new(0);
	static const char reqs[] =
	    "GET /later HTTP/1.1\r\nHost: x\r\n\r\n"
	    "PUT /echo?2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
	    "\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
	    "GET /echo?3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	    "GET /echo?4 HTTP/1.1\r\nHost: x\r\n\r\n";
	char *out;
	char *a, *b, *c;

	(void)state;
	out = raw_exchange(fx, reqs, sizeof(reqs) - 1);
	/* answered in order although the first answer comes last; nothing after the close */
	assert_int_equal(count(out, "HTTP/1.1 200 OK\r\n"), 3);
	a = strstr(out, "later:/later");
	b = strstr(out, "PUT /echo q=2 unix=0 len=5\nabcde");
	c = strstr(out, "GET /echo q=3");
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(c);
	assert_true(a < b && b < c);
	assert_null(strstr(out, "q=4"));
	assert_int_equal(count(out, "Connection: close\r\n"), 1);
	assert_int_equal(fx->handled, 3);
	free(out);
	fx_free(fx);
}

static void test_async_and_pool_limit(void **state)
{
	struct fx *fx = fx_new(0);
	struct result r[10];
	int done = 0;

	(void)state;
	request_sync(fx, "GET", "/later", NULL, 0, &r[0]);
	assert_int_equal(r[0].status, 200);
	assert_string_equal(r[0].body, "later:/later");
	result_free(&r[0]);

	fx->pending_max = 0;
	for (int i = 0; i < 10; i++) {
		request(fx, "GET", "/later", NULL, 0, 5000, &r[i]);
	}
	while (done < 10) {
		done = 0;
		for (int i = 0; i < 10; i++) {
			done += r[i].done;
		}
		uv_run(&fx->loop, UV_RUN_ONCE);
	}
	for (int i = 0; i < 10; i++) {
		assert_int_equal(r[i].status, 200);
		result_free(&r[i]);
	}
	/* one request per connection at a time, at most four connections */
	assert_int_equal(fx->pending_max, 4);
	assert_int_equal(established_on_port(fx->port), 8);
	fx_free(fx);
}

static void test_stream(void **state)
{
	struct fx *fx = fx_new(0);
	struct result r;
	char *out;
	static const char req10[] = "GET /stream HTTP/1.0\r\n\r\n";
	static const char req11[] = "GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

	(void)state;
	request_sync(fx, "GET", "/stream", NULL, 0, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "chunk0\nchunk1\nchunk2\nchunk3\nchunk4\n");
	result_free(&r);

	out = raw_exchange(fx, req11, sizeof(req11) - 1);
	assert_non_null(strstr(out, "Transfer-Encoding: chunked\r\n"));
	assert_non_null(strstr(out, "7\r\nchunk0\n\r\n"));
	assert_non_null(strstr(out, "0\r\n\r\n"));
	free(out);

	/* HTTP/1.0 has no chunked coding: the body ends with the connection */
	out = raw_exchange(fx, req10, sizeof(req10) - 1);
	assert_null(strstr(out, "Transfer-Encoding"));
	assert_non_null(strstr(out, "Connection: close\r\n"));
	assert_non_null(strstr(out, "\r\n\r\nchunk0\nchunk1\nchunk2\nchunk3\nchunk4\n"));
	free(out);
	fx_free(fx);
}

static void expect_error_n(struct fx *fx, const char *req, size_t len, const char *status,
                           const char *message)
{
	char *out = raw_exchange(fx, req, len);

	assert_non_null(strstr(out, status));
	assert_non_null(strstr(out, "Connection: close\r\n"));
	assert_non_null(strstr(out, "Content-Type: application/json\r\n"));
	assert_non_null(strstr(out, "{\"error\": {\"code\": \"bad_request\", \"message\": \""));
	if (message != NULL && strstr(out, message) == NULL) {
		fail_msg("no \"%s\" in %s", message, out);
	}
	free(out);
}

static void expect_error(struct fx *fx, const char *req, const char *status, const char *message)
{
	expect_error_n(fx, req, strlen(req), status, message);
}

static void test_malformed(void **state)
{
	struct fx *fx = fx_new(0);
	struct result r;
	static const char nul[] = "GET /a\0b HTTP/1.1\r\n\r\n";

	(void)state;
	expect_error(fx, "GET / HTTP/1.1\r\nBad Header\r\n\r\n", "HTTP/1.1 400 Bad Request",
	             "invalid character in header");
	expect_error(fx, "\x01\x02\r\n\r\n", "HTTP/1.1 400 Bad Request", "invalid HTTP method");
	expect_error(fx, "GET /a%zz HTTP/1.1\r\n\r\n", "HTTP/1.1 400 ",
	             "invalid percent-encoding in path");
	expect_error(fx, "GET /a%0 HTTP/1.1\r\n\r\n", "HTTP/1.1 400 ",
	             "invalid percent-encoding in path");
	expect_error(fx, "GET /a%00b HTTP/1.1\r\n\r\n", "HTTP/1.1 400 ",
	             "path contains an encoded NUL");
	expect_error_n(fx, nul, sizeof(nul) - 1, "HTTP/1.1 400 ", "invalid");
	expect_error(fx, "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
	             "HTTP/1.1 400 ", "content-length");
	expect_error(fx, "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
	             "HTTP/1.1 400 ", "chunk size");
	expect_error(fx, "CONNECT host:443 HTTP/1.1\r\n\r\n", "HTTP/1.1 400 ",
	             "request target has no path");
	/* a good request, then a bad one on the same connection: the first is still answered */
	expect_error(fx, "GET /echo HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
	             "HTTP/1.1 200 OK", "invalid character in content-length header");
	assert_int_equal(fx->handled, 1);

	/* and the server goes on serving */
	request_sync(fx, "GET", "/echo", NULL, 0, &r);
	assert_int_equal(r.status, 200);
	result_free(&r);
	fx_free(fx);
}

static void test_body_limits(void **state)
{
	struct fx *fx = fx_new(0);
	struct result r;
	char *big = malloc(100 * 1024);
	char *req;
	int n;

	(void)state;
	assert_non_null(big);
	memset(big, 'b', 100 * 1024);

	request_sync(fx, "PUT", "/echo", big, MAX_BODY, &r);
	assert_int_equal(r.status, 200);
	result_free(&r);

	/* the client is still sending when the 413 comes */
	request_sync(fx, "PUT", "/echo", big, 100 * 1024, &r);
	assert_int_equal(r.status, 413);
	assert_non_null(strstr(r.body, "request body exceeds the limit"));
	result_free(&r);

	req = malloc(200 * 1024);
	assert_non_null(req);
	n = snprintf(req, 256, "PUT /echo HTTP/1.1\r\nContent-Length: 5000\r\n\r\n");
	memcpy(req + n, big, 5000);
	expect_error_n(fx, req, (size_t)n + 5000, "HTTP/1.1 413 Payload Too Large",
	               "request body exceeds the limit");

	/* chunked: the limit applies to the decoded body as it arrives */
	n = snprintf(req, 256, "PUT /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
	for (int i = 0; i < 5; i++) {
		n += snprintf(req + n, 16, "12c\r\n"); /* 300 bytes */
		memcpy(req + n, big, 300);
		n += 300;
		n += snprintf(req + n, 3, "\r\n");
	}
	n += snprintf(req + n, 6, "0\r\n\r\n");
	expect_error_n(fx, req, (size_t)n, "HTTP/1.1 413 Payload Too Large", NULL);
	assert_int_equal(fx->handled, 1);

	/* Expect: 100-continue is answered before the body is sent */
	{
		struct raw raw;

		raw_open(fx, &raw, NULL, true);
		raw_sends(&raw, "PUT /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
		                "Content-Length: 3\r\n\r\n");
		raw_wait(fx, &raw, "HTTP/1.1 100 Continue\r\n\r\n", 1);
		raw_sends(&raw, "xyz");
		raw_wait(fx, &raw, "len=3\nxyz", 1);
		raw_close(fx, &raw);
	}
	free(req);
	free(big);
	fx_free(fx);
}

static void test_header_limits(void **state)
{
	struct fx *fx = fx_new(0);
	size_t cap = 256 * 1024;
	char *req = malloc(cap);
	size_t n;

	(void)state;
	assert_non_null(req);
	n = (size_t)snprintf(req, cap, "GET /echo HTTP/1.1\r\nX-Big: ");
	memset(req + n, 'a', 70000);
	n += 70000;
	n += (size_t)snprintf(req + n, cap - n, "\r\n\r\n");
	expect_error_n(fx, req, n, "HTTP/1.1 431 Request Header Fields Too Large",
	               "request line and headers exceed 64 KiB");

	n = (size_t)snprintf(req, cap, "GET /echo HTTP/1.1\r\n");
	for (int i = 0; i < 101; i++) {
		n += (size_t)snprintf(req + n, cap - n, "X-H%d: v\r\n", i);
	}
	n += (size_t)snprintf(req + n, cap - n, "\r\n");
	expect_error_n(fx, req, n, "HTTP/1.1 431 ", "more than 100 header fields");

	/* 100 headers are fine */
	n = (size_t)snprintf(req, cap, "GET /echo HTTP/1.1\r\nConnection: close\r\n");
	for (int i = 0; i < 99; i++) {
		n += (size_t)snprintf(req + n, cap - n, "X-H%d: v\r\n", i);
	}
	n += (size_t)snprintf(req + n, cap - n, "\r\n");
	{
		char *out = raw_exchange(fx, req, n);

		assert_non_null(strstr(out, "HTTP/1.1 200 OK"));
		free(out);
	}

	n = (size_t)snprintf(req, cap, "GET /");
	memset(req + n, 'u', 70000);
	n += 70000;
	n += (size_t)snprintf(req + n, cap - n, " HTTP/1.1\r\n\r\n");
	expect_error_n(fx, req, n, "HTTP/1.1 414 URI Too Long", "request target exceeds 64 KiB");
	free(req);
	fx_free(fx);
}

static void test_unix_socket(void **state)
{
	struct fx *fx = fx_new(0);
	char dir[] = "/tmp/test_http.XXXXXX";
	char path[128], file[128];
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	struct raw raw;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/api.sock", dir);
	snprintf(file, sizeof(file), "%s/plain", dir);

	/* a stale socket file left by a previous run */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	strcpy(sa.sun_path, path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	assert_int_equal(stat(path, &st), 0);

	assert_int_equal(http_server_listen_unix(fx->srv, path, 0660), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0660);

	/* something that is not a socket is not replaced */
	fd = open(file, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(http_server_listen_unix(fx->srv, file, 0660), UV_EEXIST);
	assert_int_equal(http_server_listen_tcp(fx->srv, "not-an-address"), UV_EINVAL);

	raw_open(fx, &raw, path, true);
	raw_sends(&raw, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
	raw_wait(fx, &raw, "unix=1", 1);
	raw_close(fx, &raw);

	/* the TCP listener still reports unix=0 and its port */
	assert_int_equal(http_server_port(fx->srv), fx->port);

	fx_close_server(fx);
	assert_int_equal(stat(path, &st), -1); /* removed on close */
	unlink(file);
	rmdir(dir);
	fx_free(fx);
}

static void test_client_timeout_and_gone(void **state)
{
	struct fx *fx = fx_new(0);
	struct result r;

	(void)state;
	request(fx, "GET", "/hang", NULL, 0, 100, &r);
	run_until(fx, &r.done);
	assert_int_equal(r.status, UV_ETIMEDOUT);
	assert_int_equal(fx->n_held, 1);
	/* the client dropped the connection: the server's handler hears of it */
	run_until_int(fx, &fx->gone, 1);
	assert_int_equal(fx->n_held, 0);
	result_free(&r);

	/* the client recovers with a fresh connection */
	request_sync(fx, "GET", "/echo", NULL, 0, &r);
	assert_int_equal(r.status, 200);
	result_free(&r);
	fx_free(fx);
}

static void test_gone_raw(void **state)
{
	struct fx *fx = fx_new(0);
	struct raw raw;

	(void)state;
	raw_open(fx, &raw, NULL, true);
	raw_sends(&raw, "GET /hang HTTP/1.1\r\nHost: x\r\n\r\n");
	run_until_int(fx, &fx->handled, 1);
	assert_int_equal(fx->gone, 0);
	raw_close(fx, &raw);
	run_until_int(fx, &fx->gone, 1);
	run_for(fx, 50);
	assert_int_equal(fx->gone, 1);
	fx_free(fx);
}

static void test_connection_refused(void **state)
{
	struct fx *fx = fx_new(0);
	struct result r;
	uv_tcp_t tcp;
	struct sockaddr_storage addr;
	int len = sizeof(addr);
	char free_addr[64];

	(void)state;
	/* a port that nobody listens on */
	uv_tcp_init(&fx->loop, &tcp);
	assert_int_equal(http_address_parse("127.0.0.1:0", &addr), 0);
	assert_int_equal(uv_tcp_bind(&tcp, (struct sockaddr *)&addr, 0), 0);
	assert_int_equal(uv_tcp_getsockname(&tcp, (struct sockaddr *)&addr, &len), 0);
	snprintf(free_addr, sizeof(free_addr), "127.0.0.1:%d",
	         ntohs(((struct sockaddr_in *)&addr)->sin_port));
	uv_close((uv_handle_t *)&tcp, NULL);
	uv_run(&fx->loop, UV_RUN_NOWAIT);

	for (int i = 0; i < 6; i++) { /* more than one pool's worth of connections */
		memset(&r, 0, sizeof(r));
		assert_int_equal(http_client_request(fx->cli, free_addr, "GET", "/", NULL, NULL, 0,
		                                     1000, on_result, &r),
		                 0);
		run_until(fx, &r.done);
		assert_int_equal(r.status, UV_ECONNREFUSED);
		result_free(&r);
	}
	fx_free(fx);
}

static void test_query_get(void **state)
{
	struct http_request req = {
	    .query = "a=1&b=x%20y&prefix&c=a+b&d=%zz&e=%00&a=2&%61%62=k&empty=&f=%2B%26"};
	struct {
		const char *name, *want;
	} cases[] = {{"a", "1"},  {"b", "x y"},      {"prefix", ""}, {"c", "a b"},
	             {"d", NULL}, {"e", NULL},       {"ab", "k"},    {"empty", ""},
	             {"f", "+&"}, {"missing", NULL}, {"pre", NULL},  {"", NULL}};
	struct fx *fx;
	struct result r;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *v = http_query_get(&req, cases[i].name);

		if (cases[i].want == NULL) {
			assert_null(v);
		} else {
			assert_non_null(v);
			assert_string_equal(v, cases[i].want);
		}
		free(v);
	}
	req.query = "";
	assert_null(http_query_get(&req, "a"));

	/* http_query_valid names the first parameter that does not decode. */
	char bad[80];
	assert_true(http_query_valid(&req, bad, sizeof bad));
	req.query = "a=1&b=x%20y&c=a+b&%61%62=k&f=%2B%26";
	assert_true(http_query_valid(&req, bad, sizeof bad));
	static const struct {
		const char *query, *bad;
	} broken[] = {{"a=1&d=%zz&e=2", "d=%zz"},
	              {"a=1&e=%00", "e=%00"},
	              {"prefix=1%", "prefix=1%"},
	              {"%0=1&x", "%0=1"}};
	for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
		req.query = broken[i].query;
		assert_false(http_query_valid(&req, bad, sizeof bad));
		assert_string_equal(bad, broken[i].bad);
	}

	/* through the server, with a header */
	fx = fx_new(0);
	{
		struct raw raw;

		raw_open(fx, &raw, NULL, true);
		raw_sends(&raw, "GET /query?c=%2Fx&a=hello+world HTTP/1.1\r\nX-Test: v1  \r\n\r\n");
		raw_wait(fx, &raw, "none=(null)", 1);
		assert_non_null(
		    strstr(raw.in, "a=hello world b=(null) c=/x x-test=v1 none=(null)"));
		raw_close(fx, &raw);
	}
	request_sync(fx, "GET", "/query?b=2", NULL, 0, &r);
	assert_string_equal(r.body, "a=(null) b=2 c=(null) x-test=(null) none=(null)");
	result_free(&r);
	fx_free(fx);
}

static void test_close_with_pending(void **state)
{
	struct fx *fx = fx_new(0);
	struct raw raw[3];
	struct result r;

	(void)state;
	fx->defer_gone_answer = true;
	for (int i = 0; i < 2; i++) {
		raw_open(fx, &raw[i], NULL, true);
		raw_sends(&raw[i], "GET /hang HTTP/1.1\r\nHost: x\r\n\r\n");
	}
	/* a stream in progress, a half-received request and a client request in flight */
	raw_open(fx, &raw[2], NULL, true);
	raw_sends(&raw[2], "GET /stream HTTP/1.1\r\nHost: x\r\n\r\nGET /echo HTTP/1.1\r\nHo");
	run_until_int(fx, &fx->handled, 3);
	request(fx, "GET", "/hang", NULL, 0, 0, &r);
	run_until_int(fx, &fx->handled, 4);

	http_server_close(fx->srv, on_srv_closed, fx);
	fx->srv = NULL;
	run_until_int(fx, &fx->gone, 3);
	/* the deferred answers are still to come: the server waits for them */
	assert_false(fx->srv_closed);
	run_until(fx, &fx->srv_closed);
	run_until(fx, &r.done);
	assert_true(r.status < 0);
	result_free(&r);
	for (int i = 0; i < 3; i++) {
		run_until(fx, &raw[i].eof);
		raw_close(fx, &raw[i]);
	}
	fx_free(fx);
}

static void test_byte_by_byte(void **state)
{
	struct fx *fx = fx_new(0);
	static const char req[] =
	    "PUT /echo?q=1 HTTP/1.1\r\nHost: x\r\nX-Long-Header: some value\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n4\r\nwxyz\r\n0\r\nTrailer: t\r\n\r\n";
	struct raw raw;

	(void)state;
	raw_open(fx, &raw, NULL, true);
	for (size_t i = 0; i < sizeof(req) - 1; i++) {
		raw_send(&raw, req + i, 1);
		while (raw.writes > 0) {
			uv_run(&fx->loop, UV_RUN_ONCE);
		}
		uv_run(&fx->loop, UV_RUN_NOWAIT);
	}
	raw_wait(fx, &raw, "PUT /echo q=q=1 unix=0 len=4\nwxyz", 1);
	raw_close(fx, &raw);
	fx_free(fx);
}

static void test_idle_timeout(void **state)
{
	struct fx *fx = fx_new(100);
	struct raw raw;
	uint64_t t0;

	(void)state;
	raw_open(fx, &raw, NULL, true);
	t0 = uv_now(&fx->loop);
	raw_sends(&raw, "GET /echo HTTP/1.1\r\n\r\n");
	raw_wait(fx, &raw, "200 OK", 1);
	run_until(fx, &raw.eof);
	assert_true(uv_now(&fx->loop) - t0 >= 100);
	assert_true(uv_now(&fx->loop) - t0 < 2000);
	raw_close(fx, &raw);

	/* a request that never completes is cut off as well */
	raw_open(fx, &raw, NULL, true);
	raw_sends(&raw, "GET /echo HTTP/1.1\r\nHost");
	run_until(fx, &raw.eof);
	assert_null(raw.in);
	raw_close(fx, &raw);
	fx_free(fx);
}

/* The body of /big in what raw received, or 0 when it is not all there. */
static size_t big_body(const struct raw *raw)
{
	const char *end = raw->in != NULL ? strstr(raw->in, "\r\n\r\n") : NULL;
	size_t body = end != NULL ? raw->in_len - (size_t)(end + 4 - raw->in) : 0;
	return body;
}

/* A reader that takes a 30 ms break after each read: a large response takes it seconds. */
struct slow {
	struct raw *raw;
	uv_timer_t t;
};

static void slow_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void slow_resume(uv_timer_t *t)
{
	struct slow *sl = t->data;
	assert_int_equal(uv_read_start(&sl->raw->h.stream, raw_alloc, slow_read), 0);
}

static void slow_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct raw *raw = s->data;
	struct slow *sl = raw->data;
	raw_read(s, nread, buf);
	if (nread > 0) {
		uv_read_stop(s);
		uv_timer_start(&sl->t, slow_resume, 30, 0);
	}
}

/* The idle sweep spares a connection whose peer reads what it is sent, however slowly (it cut
 * a large response off once idle_ms had passed since it was queued); and a peer that half-closes
 * after its request still gets the whole response (it was dropped at the EOF). */
static void test_long_response(void **state)
{
	struct fx *fx = fx_new(100);
	struct raw raw;
	struct slow sl = {.raw = &raw};
	uv_shutdown_t sh;

	(void)state;
	raw_open(fx, &raw, NULL, false);
	raw.data = &sl;
	uv_timer_init(&fx->loop, &sl.t);
	sl.t.data = &sl;
	raw_sends(&raw, "GET /big HTTP/1.1\r\nConnection: close\r\n\r\n");
	assert_int_equal(uv_read_start(&raw.h.stream, raw_alloc, slow_read), 0);
	uint64_t t0 = uv_now(&fx->loop);
	run_until(fx, &raw.eof);
	assert_true(uv_now(&fx->loop) - t0 > 300); /* well past idle_ms */
	assert_int_equal(big_body(&raw), BIG);
	uv_close((uv_handle_t *)&sl.t, NULL);
	raw_close(fx, &raw);

	raw_open(fx, &raw, NULL, true);
	raw_sends(&raw, "GET /big HTTP/1.1\r\n\r\n");
	assert_int_equal(uv_shutdown(&sh, &raw.h.stream, NULL), 0);
	run_until(fx, &raw.eof);
	assert_int_equal(big_body(&raw), BIG);
	raw_close(fx, &raw);
	fx_free(fx);
}

/* Time the server's own loop was held up does not count as a peer's idleness: a kept-alive
 * connection 20 ms into its 100 ms of grace when the loop stalls for 300 ms is still open 50 ms
 * after (the first sweep after the stall closed it), and is closed once it has been idle for
 * 100 ms of time the loop ran. The test holds the loop up itself, between two runs of it. */
static void test_stall_not_idle(void **state)
{
	struct fx *fx = fx_new(100);
	struct raw raw;

	(void)state;
	raw_open(fx, &raw, NULL, true);
	raw_sends(&raw, "GET /echo HTTP/1.1\r\n\r\n");
	raw_wait(fx, &raw, "200 OK", 1);
	run_for(fx, 20);
	usleep(300 * 1000);
	uv_update_time(&fx->loop);
	run_for(fx, 50);
	assert_false(raw.eof);
	run_until(fx, &raw.eof);
	raw_close(fx, &raw);
	fx_free(fx);
}

static void test_backpressure(void **state)
{
	struct fx *fx = fx_new(0);
	struct raw raw;

	(void)state;
	raw_open(fx, &raw, NULL, false); /* never reads */
	raw_sends(&raw, "GET /flood HTTP/1.1\r\nHost: x\r\n\r\n");
	assert_int_equal(http_server_slow_drops(fx->srv), 0);
	run_until_int(fx, &fx->gone, 1);
	assert_int_equal(http_server_slow_drops(fx->srv), 1);
	/* 8 MiB queued plus what the kernel buffers on both ends */
	assert_true(fx->flood_bytes > 8 * 1024 * 1024);
	assert_true(fx->flood_bytes < 64 * 1024 * 1024);
	raw_close(fx, &raw);
	fx_free(fx);
}

static void test_parse_for_test(void **state)
{
	static const char two[] =
	    "GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi";
	static const char closing[] =
	    "GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
	static const char big[] = "POST /b HTTP/1.1\r\nContent-Length: 20\r\n\r\n";
	static const char bad[] = "GET /a HTTP/1.1\r\nX\r\n\r\n";
	static const char partial[] = "GET /a HTTP/1.1\r\nHost: x\r\n";
	int status = -7;

	(void)state;
	assert_int_equal(http_parse_for_test((const uint8_t *)two, sizeof(two) - 1, 0, &status), 2);
	assert_int_equal(status, 0);
	assert_int_equal(
	    http_parse_for_test((const uint8_t *)closing, sizeof(closing) - 1, 0, &status), 1);
	assert_int_equal(http_parse_for_test((const uint8_t *)big, sizeof(big) - 1, 10, &status),
	                 -1);
	assert_int_equal(status, 413);
	assert_int_equal(http_parse_for_test((const uint8_t *)big, sizeof(big) - 1, 20, &status),
	                 0);
	assert_int_equal(http_parse_for_test((const uint8_t *)bad, sizeof(bad) - 1, 0, &status),
	                 -1);
	assert_int_equal(status, 400);
	assert_int_equal(
	    http_parse_for_test((const uint8_t *)partial, sizeof(partial) - 1, 0, &status), 0);
	assert_int_equal(http_parse_for_test(NULL, 0, 0, NULL), 0);
}

/* A scripted server for the client's retry and close-delimited cases: connection k (from 1)
 * answers its requests with script[k-1], one string per request; NULL closes the connection
 * instead of answering. */
struct fake {
	uv_tcp_t listener;
	const char *const (*script)[3];
	int conns;
	int requests;
	int port;
};

struct fake_conn {
	uv_tcp_t tcp;
	struct fake *fake;
	int index;
	int answered;
	char buf[4096];
	size_t len;
};

static void fake_written(uv_write_t *w, int status)
{
	(void)status;
	free(w);
}

static void fake_closed(uv_handle_t *h)
{
	free(h->data);
}

static void fake_shut(uv_shutdown_t *req, int status)
{
	(void)status;
	uv_close((uv_handle_t *)req->handle, fake_closed);
	free(req);
}

static void fake_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct fake_conn *fc = s->data;
	char *end;

	(void)buf;
	if (nread < 0) {
		uv_close((uv_handle_t *)s, fake_closed);
		return;
	}
	fc->len += (size_t)nread;
	while ((end = memmem(fc->buf, fc->len, "\r\n\r\n", 4)) != NULL) {
		const char *answer = fc->fake->script[fc->index][fc->answered++];
		size_t used = (size_t)(end + 4 - fc->buf);

		fc->fake->requests++;
		memmove(fc->buf, end + 4, fc->len - used);
		fc->len -= used;
		if (answer == NULL) {
			uv_close((uv_handle_t *)s, fake_closed);
			return;
		}
		{
			uv_write_t *w = malloc(sizeof(*w));
			uv_buf_t b = uv_buf_init((char *)answer, (unsigned)strlen(answer));

			assert_non_null(w);
			uv_write(w, s, &b, 1, fake_written);
			if (strstr(answer, "Connection: close") != NULL) {
				uv_shutdown_t *sh = malloc(sizeof(*sh));

				assert_non_null(sh);
				uv_read_stop(s);
				uv_shutdown(sh, s, fake_shut);
				return;
			}
		}
	}
}

static void fake_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
	struct fake_conn *fc = h->data;

	(void)size;
	*buf = uv_buf_init(fc->buf + fc->len, (unsigned)(sizeof(fc->buf) - fc->len));
}

static void fake_accept(uv_stream_t *l, int status)
{
	struct fake *fake = l->data;
	struct fake_conn *fc = calloc(1, sizeof(*fc));

	assert_int_equal(status, 0);
	assert_non_null(fc);
	fc->fake = fake;
	fc->index = fake->conns++;
	uv_tcp_init(l->loop, &fc->tcp);
	fc->tcp.data = fc;
	assert_int_equal(uv_accept(l, (uv_stream_t *)&fc->tcp), 0);
	uv_read_start((uv_stream_t *)&fc->tcp, fake_alloc, fake_read);
}

static void fake_start(struct fx *fx, struct fake *fake)
{
	struct sockaddr_storage addr;
	int len = sizeof(addr);

	uv_tcp_init(&fx->loop, &fake->listener);
	fake->listener.data = fake;
	assert_int_equal(http_address_parse("127.0.0.1:0", &addr), 0);
	assert_int_equal(uv_tcp_bind(&fake->listener, (struct sockaddr *)&addr, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&fake->listener, 16, fake_accept), 0);
	uv_tcp_getsockname(&fake->listener, (struct sockaddr *)&addr, &len);
	fake->port = ntohs(((struct sockaddr_in *)&addr)->sin_port);
	snprintf(fx->addr, sizeof(fx->addr), "127.0.0.1:%d", fake->port);
}

static void test_client_retry_and_eof(void **state)
{
	static const char *const script[][3] = {
	    {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", NULL, NULL},
	    {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	     "3\r\nok2\r\n0\r\n\r\n",
	     NULL, NULL},
	    {"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", NULL, NULL},
	    {NULL, NULL, NULL},
	};
	struct fx *fx = fx_new(0);
	struct fake fake = {.script = script};
	struct result r;

	(void)state;
	fake_start(fx, &fake);

	request_sync(fx, "GET", "/1", NULL, 0, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "ok");
	result_free(&r);

	/* connection 1 is reused and drops the request: sent again on connection 2 */
	request_sync(fx, "GET", "/2", NULL, 0, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "ok2");
	assert_int_equal(fake.conns, 2);
	result_free(&r);

	/* connection 2, now reused, drops the next request as well: on to connection 3, whose
	 * answer has no length and ends with the connection */
	request_sync(fx, "GET", "/3", NULL, 0, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "until the end");
	assert_int_equal(fake.conns, 3);
	result_free(&r);

	/* a fresh connection that closes without an answer is not retried */
	request_sync(fx, "GET", "/4", NULL, 0, &r);
	assert_int_equal(r.status, UV_EOF);
	assert_int_equal(fake.conns, 4);
	assert_int_equal(fake.requests, 6);
	result_free(&r);

	uv_close((uv_handle_t *)&fake.listener, NULL);
	fx_free(fx);
}

static void on_result_close(int status, const uint8_t *body, size_t len, void *data)
{
	struct fx *fx = data;

	(void)body;
	(void)len;
	assert_int_equal(status, 200);
	fx->handled += 100;
	http_client_close(fx->cli);
	fx->cli = NULL;
}

static void test_client_close(void **state)
{
	struct fx *fx = fx_new(0);
	struct result r[6];

	(void)state;
	/* requests in flight and queued are cancelled, each exactly once */
	for (int i = 0; i < 6; i++) {
		request(fx, "GET", "/later", NULL, 0, 0, &r[i]);
	}
	run_until_int(fx, &fx->handled, 4);
	http_client_close(fx->cli);
	for (int i = 0; i < 6; i++) {
		assert_true(r[i].done);
		assert_int_equal(r[i].status, UV_ECANCELED);
		result_free(&r[i]);
	}
	assert_int_equal(http_client_new(&fx->loop, &fx->cli), 0);
	run_for(fx, 50);

	/* closing from inside a callback, with another request in flight */
	assert_int_equal(http_client_request(fx->cli, fx->addr, "GET", "/echo", NULL, NULL, 0, 0,
	                                     on_result_close, fx),
	                 0);
	request(fx, "GET", "/later", NULL, 0, 0, &r[0]);
	run_until(fx, &r[0].done);
	assert_true(fx->handled >= 100);
	assert_int_equal(r[0].status, UV_ECANCELED);
	result_free(&r[0]);
	assert_null(fx->cli);
	fx_free(fx);
}

int main(void)
{
	/* Peers in these tests hang up on purpose: a write to them must fail, not kill us. */
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_get_put),        cmocka_unit_test(test_keepalive_reuse),
	    cmocka_unit_test(test_pipelining),     cmocka_unit_test(test_async_and_pool_limit),
	    cmocka_unit_test(test_stream),         cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_body_limits),    cmocka_unit_test(test_header_limits),
	    cmocka_unit_test(test_unix_socket),    cmocka_unit_test(test_client_timeout_and_gone),
	    cmocka_unit_test(test_gone_raw),       cmocka_unit_test(test_connection_refused),
	    cmocka_unit_test(test_query_get),      cmocka_unit_test(test_close_with_pending),
	    cmocka_unit_test(test_byte_by_byte),   cmocka_unit_test(test_idle_timeout),
	    cmocka_unit_test(test_backpressure),   cmocka_unit_test(test_long_response),
	    cmocka_unit_test(test_parse_for_test), cmocka_unit_test(test_client_retry_and_eof),
	    cmocka_unit_test(test_client_close),   cmocka_unit_test(test_stall_not_idle),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
