/*
 * The API client against a peer on real sockets. The peer parses each request with http-parser
 * and answers with bytes chosen by the test, so that framings the agent produces only by chance
 * (a line split across chunks, a body cut short, a connection closed while idle) happen every
 * time.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"

/* ---- the peer ---- */

struct request {
	char method[16];
	char url[512];
	char body[4096];
	size_t body_len;
	int64_t content_length; /* -1 when the request had none */
};

enum action { KEEP, CLOSE };

struct peer;
typedef enum action (*respond_fn)(struct peer *p, int fd, const struct request *req);

struct peer {
	int listen_fd;
	char address[128]; /* for api_client_open */
	char dir[64];
	pthread_t thread;
	respond_fn respond;
	pthread_mutex_t lock;
	int accepts;
	int nrequests;
	struct request requests[16];
};

struct conn_parse {
	http_parser parser;
	struct request req;
	bool done;
};

static int on_url(http_parser *hp, const char *at, size_t len)
{
	struct conn_parse *cp = hp->data;
	size_t have = strlen(cp->req.url);

	if (have + len < sizeof(cp->req.url))
		memcpy(cp->req.url + have, at, len);
	return 0;
}

static int on_body(http_parser *hp, const char *at, size_t len)
{
	struct conn_parse *cp = hp->data;

	if (cp->req.body_len + len < sizeof(cp->req.body)) {
		memcpy(cp->req.body + cp->req.body_len, at, len);
		cp->req.body_len += len;
	}
	return 0;
}

static int on_headers_complete(http_parser *hp)
{
	struct conn_parse *cp = hp->data;

	snprintf(cp->req.method, sizeof(cp->req.method), "%s",
	         http_method_str((enum http_method)hp->method));
	/* http-parser reports ULLONG_MAX when there was no Content-Length header. */
	cp->req.content_length =
	    hp->content_length == (uint64_t)-1 ? -1 : (int64_t)hp->content_length;
	return 0;
}

static int on_message_complete(http_parser *hp)
{
	struct conn_parse *cp = hp->data;

	cp->done = true;
	http_parser_pause(hp, 1);
	return 0;
}

static const http_parser_settings request_settings = {
    .on_url = on_url,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void write_all(int fd, const char *s, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
		if (n <= 0)
			return; /* the client went away; the test's assertions say whether it should
			         */
		s += n;
		len -= (size_t)n;
	}
}

static void write_str(int fd, const char *s)
{
	write_all(fd, s, strlen(s));
}

static void pause_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static void serve_connection(struct peer *p, int fd)
{
	struct conn_parse cp;
	char buf[4096];

	memset(&cp, 0, sizeof(cp));
	http_parser_init(&cp.parser, HTTP_REQUEST);
	cp.parser.data = &cp;
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		size_t off = 0;

		if (n <= 0)
			return;
		while (off < (size_t)n) {
			off += http_parser_execute(&cp.parser, &request_settings, buf + off,
			                           (size_t)n - off);
			if (HTTP_PARSER_ERRNO(&cp.parser) != HPE_OK &&
			    HTTP_PARSER_ERRNO(&cp.parser) != HPE_PAUSED)
				return;
			if (!cp.done)
				continue;
			pthread_mutex_lock(&p->lock);
			if (p->nrequests < 16)
				p->requests[p->nrequests++] = cp.req;
			pthread_mutex_unlock(&p->lock);
			if (p->respond(p, fd, &cp.req) == CLOSE)
				return;
			memset(&cp.req, 0, sizeof(cp.req));
			cp.done = false;
			http_parser_pause(&cp.parser, 0);
		}
	}
}

static void *peer_main(void *arg)
{
	struct peer *p = arg;

	for (;;) {
		int fd = accept(p->listen_fd, NULL, NULL);
		if (fd < 0)
			return NULL; /* shut down by peer_stop() */
		pthread_mutex_lock(&p->lock);
		p->accepts++;
		pthread_mutex_unlock(&p->lock);
		serve_connection(p, fd);
		close(fd);
	}
}

static struct peer *peer_start(respond_fn respond, bool tcp)
{
	struct peer *p = calloc(1, sizeof(*p));

	assert_non_null(p);
	p->respond = respond;
	pthread_mutex_init(&p->lock, NULL);
	if (tcp) {
		struct sockaddr_in sin = {.sin_family = AF_INET,
		                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		socklen_t len = sizeof(sin);
		p->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(p->listen_fd >= 0);
		assert_int_equal(bind(p->listen_fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
		assert_int_equal(getsockname(p->listen_fd, (struct sockaddr *)&sin, &len), 0);
		snprintf(p->address, sizeof(p->address), "127.0.0.1:%u", ntohs(sin.sin_port));
	} else {
		struct sockaddr_un sun = {.sun_family = AF_UNIX};
		strcpy(p->dir, "/tmp/tabby-api-test-XXXXXX");
		assert_non_null(mkdtemp(p->dir));
		snprintf(p->address, sizeof(p->address), "%s/api.sock", p->dir);
		strcpy(sun.sun_path, p->address);
		p->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(p->listen_fd >= 0);
		assert_int_equal(bind(p->listen_fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	}
	assert_int_equal(listen(p->listen_fd, 8), 0);
	assert_int_equal(pthread_create(&p->thread, NULL, peer_main, p), 0);
	return p;
}

static void peer_stop(struct peer *p)
{
	shutdown(p->listen_fd, SHUT_RDWR);
	pthread_join(p->thread, NULL);
	close(p->listen_fd);
	if (p->dir[0] != '\0') {
		unlink(p->address);
		rmdir(p->dir);
	}
	pthread_mutex_destroy(&p->lock);
	free(p);
}

static int peer_accepts(struct peer *p)
{
	int n;

	pthread_mutex_lock(&p->lock);
	n = p->accepts;
	pthread_mutex_unlock(&p->lock);
	return n;
}

static struct request peer_request(struct peer *p, int i)
{
	struct request r;

	pthread_mutex_lock(&p->lock);
	assert_true(i < p->nrequests);
	r = p->requests[i];
	pthread_mutex_unlock(&p->lock);
	return r;
}

static struct api_client *open_client(struct peer *p, int timeout_ms)
{
	struct api_client *c = NULL;
	char *msg = NULL;

	assert_int_equal(api_client_open(p->address, timeout_ms, &c, &msg), API_OK);
	assert_null(msg);
	return c;
}

/* ---- responders ---- */

static void respond_json(int fd, int status, const char *reason, const char *body, bool close)
{
	char head[256];

	snprintf(
	    head, sizeof(head),
	    "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n",
	    status, reason, strlen(body), close ? "Connection: close\r\n" : "");
	write_str(fd, head);
	write_str(fd, body);
}

/* Echo the request back as JSON, on a kept-alive connection. */
static enum action respond_echo(struct peer *p, int fd, const struct request *req)
{
	char body[8192];

	(void)p;
	snprintf(body, sizeof(body),
	         "{\"method\": \"%s\", \"url\": \"%s\", \"content_length\": %lld, \"body\": %s}",
	         req->method, req->url, (long long)req->content_length,
	         req->body_len > 0 ? req->body : "null");
	respond_json(fd, 200, "OK", body, false);
	return KEEP;
}

static enum action respond_close_after(struct peer *p, int fd, const struct request *req)
{
	(void)p;
	(void)req;
	respond_json(fd, 200, "OK", "{\"ok\": true}", true);
	return CLOSE;
}

/* Answer, but then drop the connection without saying so, as an agent's idle timeout does. */
static enum action respond_then_drop(struct peer *p, int fd, const struct request *req)
{
	(void)p;
	(void)req;
	respond_json(fd, 200, "OK", "{\"ok\": true}", false);
	return CLOSE;
}

static enum action respond_error(struct peer *p, int fd, const struct request *req)
{
	(void)p;
	(void)req;
	respond_json(fd, 409, "Conflict",
	             "{\"error\": {\"code\": \"conflict\", \"message\": \"revision mismatch\"}}",
	             false);
	return KEEP;
}

static enum action respond_plain_error(struct peer *p, int fd, const struct request *req)
{
	(void)p;
	(void)req;
	write_str(fd, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 4\r\n\r\noops");
	return KEEP;
}

static enum action respond_not_json(struct peer *p, int fd, const struct request *req)
{
	(void)p;
	(void)req;
	write_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot json!");
	return KEEP;
}

static enum action respond_text(struct peer *p, int fd, const struct request *req)
{
	(void)p;
	(void)req;
	write_str(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 22\r\n\r\n"
	              "tabby_raft_term 3\n# x\n");
	return KEEP;
}

/* A body delimited by the end of the connection: neither Content-Length nor chunked. */
static enum action respond_until_close(struct peer *p, int fd, const struct request *req)
{
	(void)p;
	(void)req;
	write_str(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"until\":");
	pause_ms(20);
	write_str(fd, " \"close\"}");
	return CLOSE;
}

static enum action respond_cut_short(struct peer *p, int fd, const struct request *req)
{
	(void)p;
	(void)req;
	write_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"partial\":");
	return CLOSE;
}

static enum action respond_garbage(struct peer *p, int fd, const struct request *req)
{
	(void)p;
	(void)req;
	write_str(fd, "SPDY/9 what\r\n\r\n");
	return CLOSE;
}

static enum action respond_silence(struct peer *p, int fd, const struct request *req)
{
	(void)p;
	(void)fd;
	(void)req;
	return KEEP; /* never answers; the client's timeout must fire */
}

/* A chunked body whose lines are split across chunks and reads in awkward places: a line in two
 * chunks, two lines in one chunk, a blank line, and a last line without its newline. */
static enum action respond_stream(struct peer *p, int fd, const struct request *req)
{
	static const char *const pieces[] = {
	    "{\"n\": 1, \"ke", "y\": \"a\"}\n{\"n\": 2}\n", "\n", "{\"n\"", ": 3}\n{\"n\": 4}",
	};
	char head[32];

	(void)p;
	(void)req;
	write_str(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
	for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
		snprintf(head, sizeof(head), "%zx\r\n", strlen(pieces[i]));
		write_str(fd, head);
		write_str(fd, pieces[i]);
		write_str(fd, "\r\n");
		pause_ms(10);
	}
	write_str(fd, "0\r\n\r\n");
	return KEEP;
}

static enum action respond_stream_bad_line(struct peer *p, int fd, const struct request *req)
{
	(void)p;
	(void)req;
	write_str(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	              "9\r\n{\"n\": 1}\n\r\n6\r\nnope!\n\r\n0\r\n\r\n");
	return KEEP;
}

/* A stream that stays open: the client must stop it from its callback. */
static enum action respond_endless_stream(struct peer *p, int fd, const struct request *req)
{
	(void)p;
	(void)req;
	write_str(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	              "9\r\n{\"n\": 1}\n\r\n");
	pause_ms(300);
	write_str(fd, "9\r\n{\"n\": 2}\n\r\n");
	pause_ms(300);
	return CLOSE;
}

/* ---- tests ---- */

static void test_path_escape(void **state)
{
	static const struct {
		const char *in;
		const char *out;
	} cases[] = {
	    {"", ""},
	    {"plain/key-1._~", "plain/key-1._~"},
	    {"a b", "a%20b"},
	    {"%", "%25"},
	    {"?#&=+", "%3F%23%26%3D%2B"},
	    {"/calico/v1/host/h1", "/calico/v1/host/h1"},
	    {"\xc3\xbc", "%C3%BC"},
	    {"\r\n\x7f", "%0D%0A%7F"},
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *e = api_path_escape(cases[i].in);
		assert_non_null(e);
		assert_string_equal(e, cases[i].out);
		free(e);
	}
}

static void test_open_addresses(void **state)
{
	static const char *const good[] = {"unix:tabby.sock", "/run/tabby/tabby.sock",
	                                   "./x.sock",        "127.0.0.1:7000",
	                                   "[::1]:7000",      "localhost:7000"};
	static const char *const bad[] = {"",        "tabby.sock", "1.2.3.4",    "::1:80",
	                                  "[::1]80", ":80",        "127.0.0.1:", "unix:"};
	struct api_client *c;
	char longpath[200];
	char *msg;
	(void)state;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		c = NULL;
		msg = NULL;
		assert_int_equal(api_client_open(good[i], 1000, &c, &msg), API_OK);
		assert_string_equal(api_client_address(c), good[i]);
		api_client_close(c);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		c = NULL;
		msg = NULL;
		assert_int_equal(api_client_open(bad[i], 1000, &c, &msg), API_EINVAL);
		assert_null(c);
		assert_non_null(msg);
		free(msg);
	}
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	msg = NULL;
	assert_int_equal(api_client_open(longpath, 0, &c, &msg), API_EINVAL);
	assert_non_null(strstr(msg, "too long"));
	free(msg);
}

/* api_client_open_unix(): the socket path as it is, the same checks, the same requests. */
static void test_open_unix(void **state)
{
	struct peer *p = peer_start(respond_echo, false);
	struct api_client *c = NULL;
	json_t *resp = NULL;
	char longpath[200], *msg = NULL;
	int status = 0;
	(void)state;

	assert_int_equal(api_client_open_unix(NULL, 0, &c, &msg), API_EINVAL);
	assert_null(c);
	free(msg);
	msg = NULL;
	assert_int_equal(api_client_open_unix("", 0, &c, &msg), API_EINVAL);
	assert_non_null(strstr(msg, "empty"));
	free(msg);
	msg = NULL;
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	assert_int_equal(api_client_open_unix(longpath, 0, &c, &msg), API_EINVAL);
	assert_non_null(strstr(msg, "too long"));
	free(msg);
	msg = NULL;

	assert_int_equal(api_client_open_unix(p->address, 5000, &c, &msg), API_OK);
	assert_string_equal(api_client_address(c), p->address);
	assert_int_equal(api_request(c, "GET", "/v1/kv/x", NULL, &status, &resp, &msg), API_OK);
	assert_int_equal(status, 200);
	assert_string_equal(json_string_value(json_object_get(resp, "url")), "/v1/kv/x");
	json_decref(resp);
	api_client_close(c);
	peer_stop(p);
}

static void test_connect_failure(void **state)
{
	struct api_client *c = NULL;
	json_t *resp = NULL;
	char *msg = NULL;
	int status = 0;
	(void)state;

	assert_int_equal(api_client_open("/nonexistent/tabby-test.sock", 1000, &c, &msg), API_OK);
	assert_int_equal(api_request(c, "GET", "/healthz", NULL, &status, &resp, &msg),
	                 API_ECONNECT);
	assert_non_null(strstr(msg, "/nonexistent/tabby-test.sock"));
	assert_null(resp);
	free(msg);
	api_client_close(c);
}

static void request_roundtrip(bool tcp)
{
	struct peer *p = peer_start(respond_echo, tcp);
	struct api_client *c = open_client(p, 5000);
	json_t *body = json_pack("{s:s, s:i}", "value", "v \"quoted\"", "prev_revision", 7);
	json_t *resp = NULL;
	char *msg = NULL;
	int status = 0;

	assert_int_equal(api_request(c, "PUT", "/v1/kv/a%20b", body, &status, &resp, &msg), API_OK);
	assert_int_equal(status, 200);
	assert_string_equal(json_string_value(json_object_get(resp, "method")), "PUT");
	assert_string_equal(json_string_value(json_object_get(resp, "url")), "/v1/kv/a%20b");
	assert_true(json_equal(json_object_get(resp, "body"), body));
	json_decref(resp);

	/* The second and third requests reuse the connection. */
	assert_int_equal(api_request(c, "GET", "/v1/kv/x?prefix=1", NULL, &status, &resp, &msg),
	                 API_OK);
	assert_string_equal(json_string_value(json_object_get(resp, "method")), "GET");
	assert_int_equal(json_integer_value(json_object_get(resp, "content_length")), -1);
	json_decref(resp);
	assert_int_equal(api_request(c, "POST", "/v1/cluster/hash", NULL, &status, &resp, &msg),
	                 API_OK);
	/* A POST without a body still says so, so the server need not wait for one. */
	assert_int_equal(json_integer_value(json_object_get(resp, "content_length")), 0);
	json_decref(resp);
	assert_int_equal(peer_accepts(p), 1);
	assert_null(msg);

	json_decref(body);
	api_client_close(c);
	peer_stop(p);
}

static void test_request_unix(void **state)
{
	(void)state;
	request_roundtrip(false);
}

static void test_request_tcp(void **state)
{
	(void)state;
	request_roundtrip(true);
}

static void test_connection_close_reconnects(void **state)
{
	struct peer *p = peer_start(respond_close_after, false);
	struct api_client *c = open_client(p, 5000);
	json_t *resp = NULL;
	int status = 0;
	(void)state;

	for (int i = 0; i < 3; i++) {
		assert_int_equal(api_request(c, "DELETE", "/v1/kv/k", NULL, &status, &resp, NULL),
		                 API_OK);
		assert_true(json_is_true(json_object_get(resp, "ok")));
		json_decref(resp);
	}
	assert_int_equal(peer_accepts(p), 3);
	for (int i = 0; i < 3; i++) {
		struct request req = peer_request(p, i);
		assert_string_equal(req.method, "DELETE");
		assert_string_equal(req.url, "/v1/kv/k");
	}
	api_client_close(c);
	peer_stop(p);
}

static void test_idle_drop_reconnects(void **state)
{
	struct peer *p = peer_start(respond_then_drop, false);
	struct api_client *c = open_client(p, 5000);
	json_t *resp = NULL;
	int status = 0;
	(void)state;

	for (int i = 0; i < 3; i++) {
		/* Let the peer's close arrive, as it does after an agent's idle timeout. */
		pause_ms(30);
		assert_int_equal(api_request(c, "PUT", "/v1/kv/k", NULL, &status, &resp, NULL),
		                 API_OK);
		assert_int_equal(status, 200);
		json_decref(resp);
	}
	assert_int_equal(peer_accepts(p), 3);
	api_client_close(c);
	peer_stop(p);
}

static void test_error_bodies(void **state)
{
	struct peer *p = peer_start(respond_error, false);
	struct api_client *c = open_client(p, 5000);
	json_t *resp = NULL;
	int status = 0;
	(void)state;

	assert_int_equal(api_request(c, "PUT", "/v1/kv/k", NULL, &status, &resp, NULL), API_OK);
	assert_int_equal(status, 409);
	assert_string_equal(api_error_message(resp), "revision mismatch");
	assert_string_equal(api_error_code(resp), "conflict");
	json_decref(resp);
	api_client_close(c);
	peer_stop(p);

	p = peer_start(respond_plain_error, false);
	c = open_client(p, 5000);
	assert_int_equal(api_request(c, "GET", "/x", NULL, &status, &resp, NULL), API_OK);
	assert_int_equal(status, 502);
	assert_null(resp);
	assert_null(api_error_message(resp));
	api_client_close(c);
	peer_stop(p);
}

static void test_not_json(void **state)
{
	struct peer *p = peer_start(respond_not_json, false);
	struct api_client *c = open_client(p, 5000);
	json_t *resp = NULL;
	char *msg = NULL;
	int status = 0;
	(void)state;

	assert_int_equal(api_request(c, "GET", "/x", NULL, &status, &resp, &msg), API_EPROTO);
	assert_null(resp);
	assert_non_null(strstr(msg, "invalid JSON"));
	free(msg);
	api_client_close(c);
	peer_stop(p);
}

static void test_raw(void **state)
{
	struct peer *p = peer_start(respond_text, false);
	struct api_client *c = open_client(p, 5000);
	char *body = NULL;
	size_t len = 0;
	int status = 0;
	(void)state;

	assert_int_equal(
	    api_request_raw(c, "GET", "/metrics", NULL, NULL, 0, &status, &body, &len, NULL),
	    API_OK);
	assert_int_equal(status, 200);
	assert_int_equal(len, 22);
	assert_string_equal(body, "tabby_raft_term 3\n# x\n");
	free(body);
	api_client_close(c);
	peer_stop(p);
}

static void test_close_delimited_body(void **state)
{
	struct peer *p = peer_start(respond_until_close, false);
	struct api_client *c = open_client(p, 5000);
	json_t *resp = NULL;
	int status = 0;
	(void)state;

	assert_int_equal(api_request(c, "GET", "/x", NULL, &status, &resp, NULL), API_OK);
	assert_string_equal(json_string_value(json_object_get(resp, "until")), "close");
	json_decref(resp);
	api_client_close(c);
	peer_stop(p);
}

static void test_broken_responses(void **state)
{
	struct peer *p = peer_start(respond_cut_short, false);
	struct api_client *c = open_client(p, 5000);
	json_t *resp = NULL;
	char *msg = NULL;
	int status = 0;
	(void)state;

	assert_int_equal(api_request(c, "GET", "/x", NULL, &status, &resp, &msg), API_EIO);
	assert_non_null(strstr(msg, "mid-response"));
	free(msg);
	api_client_close(c);
	peer_stop(p);

	p = peer_start(respond_garbage, false);
	c = open_client(p, 5000);
	msg = NULL;
	assert_int_equal(api_request(c, "GET", "/x", NULL, &status, &resp, &msg), API_EPROTO);
	free(msg);
	api_client_close(c);
	peer_stop(p);
}

static void test_bad_request_arguments(void **state)
{
	struct peer *p = peer_start(respond_echo, false);
	struct api_client *c = open_client(p, 5000);
	json_t *resp = NULL;
	int status = 0;
	(void)state;

	assert_int_equal(api_request(c, "GET", "/a b", NULL, &status, &resp, NULL), API_EINVAL);
	assert_int_equal(api_request(c, "GET", "/a\r\nX-Injected: 1", NULL, &status, &resp, NULL),
	                 API_EINVAL);
	assert_int_equal(api_request(c, "GET", "relative", NULL, &status, &resp, NULL), API_EINVAL);
	assert_int_equal(api_request(c, "get it", "/", NULL, &status, &resp, NULL), API_EINVAL);
	assert_int_equal(peer_accepts(p), 0);
	api_client_close(c);
	peer_stop(p);
}

static void test_timeout(void **state)
{
	struct peer *p = peer_start(respond_silence, false);
	struct api_client *c = open_client(p, 200);
	struct timespec t0;
	struct timespec t1;
	json_t *resp = NULL;
	char *msg = NULL;
	int status = 0;
	double elapsed;
	(void)state;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(api_request(c, "GET", "/x", NULL, &status, &resp, &msg), API_ETIMEDOUT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	elapsed = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	assert_true(elapsed >= 0.19 && elapsed < 2.0);
	assert_non_null(msg);
	free(msg);
	api_client_close(c);
	peer_stop(p);
}

struct lines {
	json_int_t seen[8];
	int n;
	int stop_after; /* 0: never */
};

static int collect(json_t *line, void *data)
{
	struct lines *l = data;

	if (l->n < 8)
		l->seen[l->n++] = json_integer_value(json_object_get(line, "n"));
	return l->stop_after != 0 && l->n >= l->stop_after;
}

static void test_stream_lines(void **state)
{
	struct peer *p = peer_start(respond_stream, false);
	struct api_client *c = open_client(p, 5000);
	struct lines l = {0};
	json_t *resp = (json_t *)1;
	int status = 0;
	(void)state;

	assert_int_equal(
	    api_stream(c, "GET", "/v1/watch/k", NULL, &status, &resp, collect, &l, NULL), API_OK);
	assert_int_equal(status, 200);
	assert_null(resp);
	assert_int_equal(l.n, 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(l.seen[i], i + 1);

	/* The stream ended cleanly, so the connection carries the next request. */
	memset(&l, 0, sizeof(l));
	l.stop_after = 2;
	assert_int_equal(
	    api_stream(c, "GET", "/v1/watch/k", NULL, &status, &resp, collect, &l, NULL),
	    API_STOPPED);
	assert_int_equal(l.n, 2);
	assert_int_equal(peer_accepts(p), 1);
	api_client_close(c);
	peer_stop(p);
}

static void test_stream_stop_endless(void **state)
{
	struct peer *p = peer_start(respond_endless_stream, false);
	struct api_client *c = open_client(p, 100);
	struct lines l = {.stop_after = 2};
	json_t *resp = NULL;
	int status = 0;
	(void)state;

	/* The head arrives at once, the second line 300 ms later: the client's 100 ms timeout
	 * bounds the wait for the head only. */
	assert_int_equal(
	    api_stream(c, "GET", "/v1/watch/k", NULL, &status, &resp, collect, &l, NULL),
	    API_STOPPED);
	assert_int_equal(l.n, 2);
	api_client_close(c);
	peer_stop(p);
}

static void test_stream_bad_line(void **state)
{
	struct peer *p = peer_start(respond_stream_bad_line, false);
	struct api_client *c = open_client(p, 5000);
	struct lines l = {0};
	json_t *resp = NULL;
	char *msg = NULL;
	int status = 0;
	(void)state;

	assert_int_equal(
	    api_stream(c, "GET", "/v1/watch/k", NULL, &status, &resp, collect, &l, &msg),
	    API_EPROTO);
	assert_int_equal(l.n, 1);
	assert_non_null(strstr(msg, "invalid JSON line"));
	free(msg);
	api_client_close(c);
	peer_stop(p);
}

static void test_stream_error_status(void **state)
{
	struct peer *p = peer_start(respond_error, false);
	struct api_client *c = open_client(p, 5000);
	struct lines l = {0};
	json_t *resp = NULL;
	int status = 0;
	(void)state;

	assert_int_equal(
	    api_stream(c, "GET", "/v1/watch/k", NULL, &status, &resp, collect, &l, NULL), API_OK);
	assert_int_equal(status, 409);
	assert_int_equal(l.n, 0);
	assert_string_equal(api_error_message(resp), "revision mismatch");
	json_decref(resp);
	api_client_close(c);
	peer_stop(p);
}

int main(void)
{
	/* Peers in these tests hang up on purpose: a write to them must fail, not kill us. */
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_path_escape),
	    cmocka_unit_test(test_open_addresses),
	    cmocka_unit_test(test_open_unix),
	    cmocka_unit_test(test_connect_failure),
	    cmocka_unit_test(test_request_unix),
	    cmocka_unit_test(test_request_tcp),
	    cmocka_unit_test(test_connection_close_reconnects),
	    cmocka_unit_test(test_idle_drop_reconnects),
	    cmocka_unit_test(test_error_bodies),
	    cmocka_unit_test(test_not_json),
	    cmocka_unit_test(test_raw),
	    cmocka_unit_test(test_close_delimited_body),
	    cmocka_unit_test(test_broken_responses),
	    cmocka_unit_test(test_bad_request_arguments),
	    cmocka_unit_test(test_timeout),
	    cmocka_unit_test(test_stream_lines),
	    cmocka_unit_test(test_stream_stop_endless),
	    cmocka_unit_test(test_stream_bad_line),
	    cmocka_unit_test(test_stream_error_status),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
