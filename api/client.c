#include "api/api.h"
#include "api/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* A response body (or one streamed line) larger than this is refused rather than buffered: the
 * agent pages large ranges with limit, so only a broken peer sends this much. */
#define API_MAX_BODY (256u * 1024 * 1024)

struct api_client {
	char *address;            /* as given, for messages */
	char *host;               /* Host header value */
	struct api_endpoint *eps; /* TCP candidates; NULL for a unix socket */
	size_t n_eps;
	struct sockaddr_un sun;
	int timeout_ms;
	int fd; /* -1 while not connected */
};

struct response {
	http_parser parser;
	bool head_request; /* a HEAD answer has headers only */
	bool want_lines;   /* api_stream(): deliver a 2xx body line by line */
	bool lines;        /* decided when the head arrived */
	bool headers_done;
	bool complete;
	bool keep_alive;
	int status;
	char *body; /* collected body, or the pending partial line in line mode */
	size_t len;
	size_t cap;
	size_t scanned; /* line mode: bytes of body known to contain no newline */
	api_line_cb cb;
	void *data;
	bool stopped;
	int err; /* failure inside a parser callback */
	char *errmsg;
};

int api_set_error(char **errmsg, int code, const char *fmt, ...)
{
	va_list ap;

	if (errmsg != NULL) {
		va_start(ap, fmt);
		if (vasprintf(errmsg, fmt, ap) < 0)
			*errmsg = NULL;
		va_end(ap);
	}
	return code;
}

const char *api_strerror(int code)
{
	switch (code) {
	case API_OK:
		return "ok";
	case API_STOPPED:
		return "stopped by the caller";
	case API_ENOMEM:
		return "out of memory";
	case API_EINVAL:
		return "invalid argument";
	case API_ECONNECT:
		return "cannot connect";
	case API_EIO:
		return "connection failed";
	case API_ETIMEDOUT:
		return "timed out";
	case API_EPROTO:
		return "protocol error";
	}
	return "unknown error";
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until fd is ready for events or deadline (a now_ms() value; -1: none) passes.
 * Returns 0, API_ETIMEDOUT, or -errno for a poll failure. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd p = {.fd = fd, .events = events};
	int timeout;
	int n;

	for (;;) {
		timeout = -1;
		if (deadline >= 0) {
			int64_t left = deadline - now_ms();
			if (left <= 0)
				return API_ETIMEDOUT;
			timeout = left > INT32_MAX ? INT32_MAX : (int)left;
		}
		n = poll(&p, 1, timeout);
		if (n > 0)
			return 0; /* POLLERR and POLLHUP too: the next send/recv reports them */
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

int api_client_new(const char *address, const char *host, const char *path,
                   const struct api_endpoint *eps, size_t n_eps, int timeout_ms,
                   struct api_client **out, char **errmsg)
{
	struct api_client *c = calloc(1, sizeof(*c));
	int rv;

	if (c == NULL)
		return api_set_error(errmsg, API_ENOMEM, "out of memory");
	c->fd = -1;
	c->timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
	c->address = strdup(address);
	c->host = strdup(host);
	if (c->address == NULL || c->host == NULL)
		goto oom;
	if (path != NULL) {
		if (path[0] == '\0') {
			rv = api_set_error(errmsg, API_EINVAL, "empty unix socket path in '%s'",
			                   address);
			goto err;
		}
		if (strlen(path) >= sizeof(c->sun.sun_path)) {
			rv = api_set_error(errmsg, API_EINVAL, "unix socket path too long: %s",
			                   path);
			goto err;
		}
		c->sun.sun_family = AF_UNIX;
		strcpy(c->sun.sun_path, path);
	} else {
		if (n_eps == 0) {
			rv = api_set_error(errmsg, API_ECONNECT, "%s resolves to no address",
			                   address);
			goto err;
		}
		c->eps = calloc(n_eps, sizeof(*c->eps));
		if (c->eps == NULL)
			goto oom;
		memcpy(c->eps, eps, n_eps * sizeof(*eps));
		c->n_eps = n_eps;
	}
	*out = c;
	return API_OK;

oom:
	rv = api_set_error(errmsg, API_ENOMEM, "out of memory");
err:
	api_client_close(c);
	return rv;
}

int api_client_open_unix(const char *path, int timeout_ms, struct api_client **out, char **errmsg)
{
	if (path == NULL)
		return api_set_error(errmsg, API_EINVAL, "empty agent socket path");
	return api_client_new(path, "localhost", path, NULL, 0, timeout_ms, out, errmsg);
}

static void disconnect(struct api_client *c)
{
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
}

void api_client_close(struct api_client *c)
{
	if (c == NULL)
		return;
	disconnect(c);
	free(c->eps);
	free(c->host);
	free(c->address);
	free(c);
}

const char *api_client_address(const struct api_client *c)
{
	return c->address;
}

/* Connect one non-blocking socket. Returns the fd or -errno (-ETIMEDOUT past the deadline). */
static int connect_addr(const struct sockaddr *sa, socklen_t len, int64_t deadline)
{
	socklen_t errlen = sizeof(int);
	int soerr = 0;
	int fd;
	int rv;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (sa->sa_family != AF_UNIX) {
		/* A watch over TCP may idle for hours; keepalive notices a peer that vanished. */
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
		/* Requests are written in one piece and answered before the next: Nagle only adds
		 * the peer's delayed-ACK wait. */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	for (;;) {
		if (connect(fd, sa, len) == 0)
			return fd;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN && sa->sa_family == AF_UNIX) {
			/* The listener's backlog is full; a unix connect does not complete later,
			 * so try again shortly. */
			if (deadline >= 0 && now_ms() >= deadline) {
				rv = -ETIMEDOUT;
				goto err;
			}
			poll(NULL, 0, 5);
			continue;
		}
		break;
	}
	if (errno != EINPROGRESS) {
		rv = -errno;
		goto err;
	}
	rv = wait_fd(fd, POLLOUT, deadline);
	if (rv == API_ETIMEDOUT) {
		rv = -ETIMEDOUT;
		goto err;
	}
	if (rv != 0)
		goto err;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &errlen) != 0) {
		rv = -errno;
		goto err;
	}
	if (soerr != 0) {
		rv = -soerr;
		goto err;
	}
	return fd;
err:
	close(fd);
	return rv;
}

static int do_connect(struct api_client *c, int64_t deadline, char **errmsg)
{
	int rv = -ENOENT;

	if (c->eps == NULL) {
		rv = connect_addr((struct sockaddr *)&c->sun, sizeof(c->sun), deadline);
	} else {
		for (size_t i = 0; i < c->n_eps; i++) {
			rv =
			    connect_addr((struct sockaddr *)&c->eps[i].sa, c->eps[i].len, deadline);
			if (rv >= 0 || rv == -ETIMEDOUT)
				break;
		}
	}
	if (rv == -ETIMEDOUT)
		return api_set_error(errmsg, API_ETIMEDOUT, "cannot connect to %s: timed out",
		                     c->address);
	if (rv < 0)
		return api_set_error(errmsg, API_ECONNECT, "cannot connect to %s: %s", c->address,
		                     strerror(-rv));
	c->fd = rv;
	return API_OK;
}

/* True if a kept-alive connection can still carry a request: the agent closes idle connections,
 * and a request written into a half-closed socket would fail for no good reason. */
static bool connection_usable(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char byte;
	ssize_t n;

	if (poll(&p, 1, 0) <= 0)
		return true;
	n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return true;
	return false; /* closed, failed, or unsolicited bytes: start afresh */
}

static int send_all(struct api_client *c, const char *buf, size_t len, int64_t deadline,
                    char **errmsg)
{
	size_t off = 0;
	ssize_t n;
	int rv;

	while (off < len) {
		n = send(c->fd, buf + off, len - off, MSG_NOSIGNAL);
		if (n >= 0) {
			off += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return api_set_error(errmsg, API_EIO, "cannot send to %s: %s", c->address,
			                     strerror(errno));
		rv = wait_fd(c->fd, POLLOUT, deadline);
		if (rv == API_ETIMEDOUT)
			return api_set_error(errmsg, rv, "timed out sending to %s", c->address);
		if (rv != 0)
			return api_set_error(errmsg, API_EIO, "poll: %s", strerror(-rv));
	}
	return API_OK;
}

/* ---- response parsing (http-parser callbacks) ---- */

static int response_fail(struct response *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int response_fail(struct response *r, int code, const char *fmt, ...)
{
	va_list ap;

	if (r->err == 0) {
		r->err = code;
		va_start(ap, fmt);
		if (vasprintf(&r->errmsg, fmt, ap) < 0)
			r->errmsg = NULL;
		va_end(ap);
	}
	http_parser_pause(&r->parser, 1);
	return 0;
}

static bool append(struct response *r, const char *at, size_t len)
{
	size_t cap;
	char *p;

	if (len > API_MAX_BODY - r->len) {
		response_fail(r, API_EPROTO, "response larger than %u bytes", API_MAX_BODY);
		return false;
	}
	if (r->len + len + 1 > r->cap) {
		cap = r->cap != 0 ? r->cap : 4096;
		while (cap < r->len + len + 1)
			cap *= 2;
		p = realloc(r->body, cap);
		if (p == NULL) {
			response_fail(r, API_ENOMEM, "out of memory");
			return false;
		}
		r->body = p;
		r->cap = cap;
	}
	memcpy(r->body + r->len, at, len);
	r->len += len;
	r->body[r->len] = '\0';
	return true;
}

static bool blank(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
			return false;
	return true;
}

/* Parse one line and hand it to the callback. Returns false when the stream must stop. */
static bool deliver_line(struct response *r, const char *s, size_t len)
{
	json_error_t jerr;
	json_t *v;
	int stop;

	if (blank(s, len))
		return true;
	v = json_loadb(s, len, 0, &jerr);
	if (v == NULL) {
		response_fail(r, API_EPROTO, "invalid JSON line in the stream: %s", jerr.text);
		return false;
	}
	stop = r->cb(v, r->data);
	json_decref(v);
	if (stop != 0) {
		r->stopped = true;
		http_parser_pause(&r->parser, 1);
		return false;
	}
	return true;
}

static int on_headers_complete(http_parser *p)
{
	struct response *r = p->data;

	r->status = (int)p->status_code;
	r->headers_done = true;
	r->lines = r->want_lines && r->status / 100 == 2;
	/* Tell http-parser that a HEAD answer has no body whatever its Content-Length says. */
	return r->head_request ? 1 : 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct response *r = p->data;
	size_t start = 0;
	char *nl;

	if (!append(r, at, len))
		return 0;
	if (!r->lines)
		return 0;
	while ((nl = memchr(r->body + r->scanned, '\n', r->len - r->scanned)) != NULL) {
		size_t end = (size_t)(nl - r->body);
		bool go_on = deliver_line(r, r->body + start, end - start);

		start = end + 1;
		r->scanned = start;
		if (!go_on)
			break;
	}
	if (r->stopped || r->err != 0)
		return 0;
	memmove(r->body, r->body + start, r->len - start);
	r->len -= start;
	r->scanned = r->len;
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct response *r = p->data;

	if (r->lines && r->len > 0 && !deliver_line(r, r->body, r->len))
		return 0;
	if (r->lines)
		r->len = 0;
	r->complete = true;
	r->keep_alive = http_should_keep_alive(p) != 0;
	/* We never pipeline, so anything after the response is not ours: stop parsing there. */
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings parser_settings = {
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void response_reset(struct response *r)
{
	free(r->body);
	free(r->errmsg);
	r->body = NULL;
	r->errmsg = NULL;
	r->len = r->cap = r->scanned = 0;
	r->headers_done = r->complete = r->keep_alive = r->lines = r->stopped = false;
	r->status = 0;
	r->err = 0;
	http_parser_init(&r->parser, HTTP_RESPONSE);
	r->parser.data = r;
}

static void response_free(struct response *r)
{
	free(r->body);
	free(r->errmsg);
}

/* Outcome of reading a response: done, a failure, or "the connection was dead before the agent
 * said anything" (retryable for idempotent requests on a reused connection). */
enum read_result { READ_DONE, READ_FAILED, READ_NOTHING };

static enum read_result read_response(struct api_client *c, struct response *r, int64_t deadline,
                                      int *rv, char **errmsg)
{
	char buf[16384];
	size_t received = 0;
	size_t parsed;
	ssize_t n;
	enum http_errno herr;
	int w;

	while (!r->complete) {
		/* A stream may idle indefinitely once its head has arrived. */
		w = wait_fd(c->fd, POLLIN, r->lines ? -1 : deadline);
		if (w == API_ETIMEDOUT) {
			*rv = api_set_error(errmsg, w, "no answer from %s within %d ms", c->address,
			                    c->timeout_ms);
			return READ_FAILED;
		}
		if (w != 0) {
			*rv = api_set_error(errmsg, API_EIO, "poll: %s", strerror(-w));
			return READ_FAILED;
		}
		n = recv(c->fd, buf, sizeof(buf), 0);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			if (received == 0 && (errno == ECONNRESET || errno == EPIPE))
				return READ_NOTHING;
			*rv = api_set_error(errmsg, API_EIO, "cannot read from %s: %s", c->address,
			                    strerror(errno));
			return READ_FAILED;
		}
		if (n == 0 && received == 0)
			return READ_NOTHING;
		received += (size_t)n;
		/* n == 0 tells http-parser about EOF, which ends a close-delimited body. */
		parsed = http_parser_execute(&r->parser, &parser_settings, buf, (size_t)n);
		if (r->err != 0) {
			*rv = api_set_error(errmsg, r->err, "%s: %s", c->address,
			                    r->errmsg != NULL ? r->errmsg : api_strerror(r->err));
			return READ_FAILED;
		}
		if (r->stopped)
			break;
		if (n == 0 && !r->complete) {
			*rv = api_set_error(errmsg, API_EIO,
			                    "%s closed the connection mid-response", c->address);
			return READ_FAILED;
		}
		herr = HTTP_PARSER_ERRNO(&r->parser);
		if (herr != HPE_OK && herr != HPE_PAUSED) {
			*rv = api_set_error(errmsg, API_EPROTO, "bad HTTP response from %s: %s",
			                    c->address, http_errno_description(herr));
			return READ_FAILED;
		}
		if (r->complete && parsed < (size_t)n)
			r->keep_alive = false; /* unsolicited bytes: the connection is not clean */
	}
	return READ_DONE;
}

static bool valid_token(const char *s)
{
	if (s[0] == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (*s < 'A' || *s > 'Z')
			return false;
	return true;
}

static bool valid_target(const char *s)
{
	if (s[0] != '/')
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f)
			return false;
	return true;
}

/* Send one request and read its response into r, reconnecting when needed. */
static int exchange(struct api_client *c, const char *method, const char *path,
                    const char *content_type, const void *body, size_t body_len, struct response *r,
                    char **errmsg)
{
	bool idempotent = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	bool sends_body = body_len > 0 || content_type != NULL || strcmp(method, "POST") == 0 ||
	                  strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0;
	int64_t deadline = c->timeout_ms > 0 ? now_ms() + c->timeout_ms : -1;
	char *req = NULL;
	char *msg = NULL; /* a send failure's message, dropped if the request is retried */
	int head_len;
	size_t req_len;
	int rv;

	if (!valid_token(method))
		return api_set_error(errmsg, API_EINVAL, "bad method '%s'", method);
	if (!valid_target(path))
		return api_set_error(errmsg, API_EINVAL,
		                     "bad request path (must start with '/', no spaces or control "
		                     "characters)");
	if (content_type != NULL && strpbrk(content_type, "\r\n") != NULL)
		return api_set_error(errmsg, API_EINVAL, "bad content type");

	head_len =
	    asprintf(&req,
	             "%s %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n"
	             "%s%s%s",
	             method, path, c->host, content_type != NULL ? "Content-Type: " : "",
	             content_type != NULL ? content_type : "", content_type != NULL ? "\r\n" : "");
	if (head_len < 0)
		return api_set_error(errmsg, API_ENOMEM, "out of memory");
	{
		char lenline[48];
		int ll = sends_body ? snprintf(lenline, sizeof(lenline),
		                               "Content-Length: %zu\r\n\r\n", body_len)
		                    : snprintf(lenline, sizeof(lenline), "\r\n");
		char *p = realloc(req, (size_t)head_len + (size_t)ll + body_len + 1);
		if (p == NULL) {
			free(req);
			return api_set_error(errmsg, API_ENOMEM, "out of memory");
		}
		req = p;
		memcpy(req + head_len, lenline, (size_t)ll);
		if (body_len > 0)
			memcpy(req + head_len + ll, body, body_len);
		req_len = (size_t)head_len + (size_t)ll + body_len;
	}

	for (int attempt = 0;; attempt++) {
		bool reused = false;
		enum read_result res;

		response_reset(r);
		r->head_request = strcmp(method, "HEAD") == 0;
		if (c->fd >= 0 && !connection_usable(c->fd))
			disconnect(c);
		if (c->fd >= 0) {
			reused = true;
		} else {
			rv = do_connect(c, deadline, errmsg);
			if (rv != API_OK)
				goto out;
		}
		rv = send_all(c, req, req_len, deadline, &msg);
		if (rv != API_OK) {
			disconnect(c);
			if (reused && idempotent && attempt == 0 && rv == API_EIO) {
				free(msg);
				msg = NULL;
				continue;
			}
			goto out;
		}
		rv = API_OK;
		res = read_response(c, r, deadline, &rv, errmsg);
		if (res == READ_NOTHING) {
			disconnect(c);
			if (reused && idempotent && attempt == 0)
				continue;
			rv =
			    api_set_error(errmsg, API_EIO,
			                  "%s closed the connection without answering", c->address);
			goto out;
		}
		if (res == READ_FAILED) {
			disconnect(c);
			goto out;
		}
		if (r->stopped) {
			disconnect(c);
			rv = API_STOPPED;
			goto out;
		}
		if (!r->keep_alive)
			disconnect(c);
		rv = API_OK;
		goto out;
	}
out:
	if (msg != NULL) {
		if (errmsg != NULL)
			*errmsg = msg;
		else
			free(msg);
	}
	free(req);
	return rv;
}

int api_request_raw(struct api_client *c, const char *method, const char *path,
                    const char *content_type, const void *body, size_t body_len, int *status,
                    char **response_body, size_t *response_len, char **errmsg)
{
	struct response r = {0};
	int rv;

	rv = exchange(c, method, path, content_type, body, body_len, &r, errmsg);
	if (rv != API_OK)
		goto out;
	if (r.body == NULL) {
		r.body = strdup("");
		if (r.body == NULL) {
			rv = api_set_error(errmsg, API_ENOMEM, "out of memory");
			goto out;
		}
	}
	*status = r.status;
	*response_body = r.body;
	*response_len = r.len;
	r.body = NULL;
out:
	response_free(&r);
	return rv;
}

/* Turn a collected body into *response per the api_request() contract. */
static int parse_body(struct api_client *c, struct response *r, json_t **response, char **errmsg)
{
	json_error_t jerr;

	*response = NULL;
	if (r->len == 0 || blank(r->body, r->len))
		return API_OK;
	*response = json_loadb(r->body, r->len, 0, &jerr);
	if (*response == NULL && r->status / 100 == 2)
		return api_set_error(errmsg, API_EPROTO, "invalid JSON from %s: %s", c->address,
		                     jerr.text);
	return API_OK;
}

static int encode_body(json_t *body, char **out, size_t *len, char **errmsg)
{
	*out = NULL;
	*len = 0;
	if (body == NULL)
		return API_OK;
	*out = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
	if (*out == NULL)
		return api_set_error(errmsg, API_EINVAL, "request body cannot be encoded as JSON");
	*len = strlen(*out);
	return API_OK;
}

int api_request(struct api_client *c, const char *method, const char *path, json_t *body,
                int *status, json_t **response, char **errmsg)
{
	struct response r = {0};
	char *encoded;
	size_t len;
	int rv;

	*response = NULL;
	rv = encode_body(body, &encoded, &len, errmsg);
	if (rv != API_OK)
		return rv;
	rv = exchange(c, method, path, body != NULL ? "application/json" : NULL, encoded, len, &r,
	              errmsg);
	free(encoded);
	if (rv != API_OK)
		goto out;
	rv = parse_body(c, &r, response, errmsg);
	if (rv == API_OK)
		*status = r.status;
out:
	response_free(&r);
	return rv;
}

int api_stream(struct api_client *c, const char *method, const char *path, json_t *body,
               int *status, json_t **response, api_line_cb cb, void *data, char **errmsg)
{
	struct response r = {0};
	char *encoded;
	size_t len;
	int rv;

	*response = NULL;
	rv = encode_body(body, &encoded, &len, errmsg);
	if (rv != API_OK)
		return rv;
	r.want_lines = true;
	r.cb = cb;
	r.data = data;
	rv = exchange(c, method, path, body != NULL ? "application/json" : NULL, encoded, len, &r,
	              errmsg);
	free(encoded);
	if (r.headers_done)
		*status = r.status;
	if (rv != API_OK)
		goto out;
	if (!r.lines)
		rv = parse_body(c, &r, response, errmsg);
out:
	response_free(&r);
	return rv;
}

static const json_t *error_object(const json_t *response)
{
	const json_t *e = json_object_get(response, "error");

	return json_is_object(e) ? e : NULL;
}

const char *api_error_message(const json_t *response)
{
	return json_string_value(json_object_get(error_object(response), "message"));
}

const char *api_error_code(const json_t *response)
{
	return json_string_value(json_object_get(error_object(response), "code"));
}

char *api_path_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = malloc(3 * n + 1);
	char *o = out;

	if (out == NULL)
		return NULL;
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' || ch == '~' ||
		    ch == '/') {
			*o++ = (char)ch;
		} else {
			*o++ = '%';
			*o++ = hex[ch >> 4];
			*o++ = hex[ch & 0xf];
		}
	}
	*o = '\0';
	return out;
}
