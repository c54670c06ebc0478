/*
 * Asynchronous HTTP/1.1 keep-alive client on libuv; http-parser parses the responses.
 *
 * Each address has a pool of at most MAX_CONNS connections, each carrying one request at a time,
 * and a FIFO queue of requests waiting for one. Invariant after every pool_dispatch(): no idle
 * connection while requests wait, and waiting requests imply at least one open connection, so
 * nothing waits without something in flight that will call pool_dispatch() again.
 *
 * Re-entrancy: user callbacks may issue requests or close the client. Every state change is made
 * before a callback runs; after it, only the client (freed asynchronously, in its timer's close
 * callback) is looked at to see whether it is closing.
 *
 * Retry rule: a request written on a connection that already carried a response (an idle, reused
 * keep-alive connection) which then fails before any byte of the response arrived is queued
 * again, once, at the head of the queue: the server most likely closed the idle connection while
 * the request was on its way. Anything else fails the request.
 */
#include "agent/http.h"

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CONNS     4
#define MAX_BODY      (64 * 1024 * 1024) /* request or response */
#define READ_BUF_SIZE (64 * 1024)

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

struct pool;
struct cconn;

struct creq {
	struct creq *prev, *next; /* in the pool's queue */
	bool queued;
	struct cconn *conn; /* carrying it */
	http_client_cb cb;
	void *data;
	uint64_t deadline; /* loop time, 0 = none */
	unsigned writes;   /* uv_write()s still reading `bytes` */
	bool finished;     /* cb called: freed once writes is 0 */
	bool retried;
	bool is_head;
	size_t len;
	char bytes[]; /* the serialized request */
};

enum cstate { CC_CONNECTING, CC_IDLE, CC_BUSY };

struct cconn {
	uv_tcp_t tcp;
	uv_connect_t connect_req;
	uv_write_t write_req;
	struct http_client *client;
	struct pool *pool; /* NULL once closed */
	struct cconn *prev, *next;
	enum cstate state;
	http_parser parser;
	struct creq *req;
	uint8_t *body;
	size_t body_len, body_cap;
	int cb_err;     /* why a parser callback failed */
	bool closed;    /* uv_close() called */
	bool writing;   /* write_req in use */
	bool reused;    /* has completed a response before */
	bool got_bytes; /* some of the current response arrived */
	bool complete;  /* the current response is complete */
};

struct pool {
	struct http_client *client;
	struct pool *next;
	char *address;
	struct sockaddr_storage addr;
	struct cconn *conns;
	unsigned n_conns, n_connecting;
	struct creq *qhead, *qtail;
	unsigned qlen;
};

struct http_client {
	uv_loop_t *loop;
	struct pool *pools;
	uv_timer_t timer;
	uint64_t timer_due;
	bool closing;
	char header[160];         /* "Name: value\r\n" sent with every request, or "" */
	char rbuf[READ_BUF_SIZE]; /* see the server: reads are consumed right away */
};

static int on_message_begin(http_parser *p);
static int on_headers_complete(http_parser *p);
static int on_body(http_parser *p, const char *at, size_t len);
static int on_message_complete(http_parser *p);

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static int pool_dispatch(struct pool *pool, struct creq *sync_req);

/* ------------------------------------------------------------------------------------------ */
/* Requests                                                                                    */

static void q_push_back(struct pool *pool, struct creq *r)
{
	r->next = NULL;
	r->prev = pool->qtail;
	if (pool->qtail != NULL) {
		pool->qtail->next = r;
	} else {
		pool->qhead = r;
	}
	pool->qtail = r;
	pool->qlen++;
	r->queued = true;
}

static void q_push_front(struct pool *pool, struct creq *r)
{
	r->prev = NULL;
	r->next = pool->qhead;
	if (pool->qhead != NULL) {
		pool->qhead->prev = r;
	} else {
		pool->qtail = r;
	}
	pool->qhead = r;
	pool->qlen++;
	r->queued = true;
}

static void q_remove(struct pool *pool, struct creq *r)
{
	if (r->prev != NULL) {
		r->prev->next = r->next;
	} else {
		pool->qhead = r->next;
	}
	if (r->next != NULL) {
		r->next->prev = r->prev;
	} else {
		pool->qtail = r->prev;
	}
	r->prev = r->next = NULL;
	pool->qlen--;
	r->queued = false;
}

/* Requests taken out of everything, waiting for their callbacks, in order. */
struct creq_list {
	struct creq *head, **tail;
};

static void list_add(struct creq_list *l, struct creq *r)
{
	r->next = NULL;
	*l->tail = r;
	l->tail = &r->next;
}

/* Calls the callback of a request that is in no queue and on no connection any more. */
static void creq_finish(struct creq *r, int status, const uint8_t *body, size_t len)
{
	r->next = NULL;
	r->cb(status, body != NULL ? body : (const uint8_t *)"", len, r->data);
	r->finished = true;
	if (r->writes == 0) {
		free(r);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Connections                                                                                 */

static void on_cconn_close(uv_handle_t *h)
{
	struct cconn *conn = h->data;

	free(conn->body);
	free(conn);
}

/* Takes the connection out of its pool and closes it; its request must be detached already. */
static void cconn_close(struct cconn *conn)
{
	struct pool *pool = conn->pool;

	if (conn->closed) {
		return;
	}
	conn->closed = true;
	if (pool != NULL) {
		if (conn->prev != NULL) {
			conn->prev->next = conn->next;
		} else {
			pool->conns = conn->next;
		}
		if (conn->next != NULL) {
			conn->next->prev = conn->prev;
		}
		pool->n_conns--;
		if (conn->state == CC_CONNECTING) {
			pool->n_connecting--;
		}
		conn->pool = NULL;
	}
	uv_close((uv_handle_t *)&conn->tcp, on_cconn_close);
}

/* The connection broke while carrying a request: retry it (see the top) or fail it. */
static void cconn_fail(struct cconn *conn, int err)
{
	struct pool *pool = conn->pool;
	struct http_client *c = conn->client;
	struct creq *r = conn->req;
	bool retry = r != NULL && conn->reused && !conn->got_bytes && !r->retried;

	conn->req = NULL;
	cconn_close(conn);
	if (r != NULL) {
		r->conn = NULL;
		if (retry) {
			r->retried = true;
			q_push_front(pool, r);
		} else {
			creq_finish(r, err, NULL, 0);
			if (c->closing) {
				return;
			}
		}
	}
	pool_dispatch(pool, NULL);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct cconn *conn = h->data;

	(void)suggested;
	*buf = uv_buf_init(conn->client->rbuf, sizeof(conn->client->rbuf));
}

/* The current response is complete: hand it over and make the connection idle or close it. */
static void response_done(struct cconn *conn, bool reusable)
{
	struct pool *pool = conn->pool;
	struct http_client *c = conn->client;
	struct creq *r = conn->req;
	int status = (int)conn->parser.status_code;
	uint8_t *body = conn->body;
	size_t len = conn->body_len;

	/* The body moves out: the callback may put a new request on this connection. */
	conn->body = NULL;
	conn->body_len = conn->body_cap = 0;
	conn->req = NULL;
	r->conn = NULL;
	if (reusable && !conn->writing && http_should_keep_alive(&conn->parser)) {
		conn->state = CC_IDLE;
		conn->reused = true;
	} else {
		cconn_close(conn);
	}
	creq_finish(r, status, body, len);
	free(body);
	if (!c->closing) {
		pool_dispatch(pool, NULL);
	}
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct cconn *conn = s->data;
	enum http_errno e;
	size_t n;

	if (nread == 0 || conn->closed) {
		return;
	}
	if (conn->state != CC_BUSY) {
		/* The server closed an idle connection, or sent what nobody asked for. */
		struct pool *pool = conn->pool;

		cconn_close(conn);
		pool_dispatch(pool, NULL);
		return;
	}
	if (nread < 0) {
		if (nread == UV_EOF) {
			/* A response without length ends with the connection. */
			http_parser_execute(&conn->parser, &parser_settings, NULL, 0);
			if (conn->complete) {
				response_done(conn, false);
				return;
			}
		}
		cconn_fail(conn, (int)nread);
		return;
	}
	conn->got_bytes = true;
	n = http_parser_execute(&conn->parser, &parser_settings, buf->base, (size_t)nread);
	e = HTTP_PARSER_ERRNO(&conn->parser);
	if (e == HPE_PAUSED && conn->complete) {
		response_done(conn, n == (size_t)nread);
	} else if (e != HPE_OK) {
		cconn_fail(conn, conn->cb_err != 0 ? conn->cb_err : UV_EPROTO);
	}
}

static void on_write(uv_write_t *w, int status)
{
	struct cconn *conn = container_of(w, struct cconn, write_req);
	struct creq *r = w->data;
	bool fail = status < 0 && !conn->closed && conn->req == r;

	conn->writing = false;
	r->writes--;
	if (r->finished && r->writes == 0) {
		free(r);
	}
	if (fail) {
		cconn_fail(conn, status);
	}
}

/* Puts r on the idle connection conn. On failure conn is closed and r is left to the caller. */
static int cconn_assign(struct cconn *conn, struct creq *r)
{
	uv_buf_t buf = uv_buf_init(r->bytes, (unsigned)r->len);
	int rv;

	conn->state = CC_BUSY;
	conn->req = r;
	conn->got_bytes = false;
	conn->complete = false;
	conn->cb_err = 0;
	conn->body_len = 0;
	http_parser_init(&conn->parser, HTTP_RESPONSE);
	conn->parser.data = conn;
	conn->write_req.data = r;
	rv = uv_write(&conn->write_req, (uv_stream_t *)&conn->tcp, &buf, 1, on_write);
	if (rv != 0) {
		conn->req = NULL;
		cconn_close(conn);
		return rv;
	}
	r->conn = conn;
	r->writes++;
	conn->writing = true;
	return 0;
}

static void on_connect(uv_connect_t *req, int status)
{
	struct cconn *conn = req->data;
	struct http_client *c = conn->client;
	struct pool *pool;

	if (conn->closed) {
		return; /* closed meanwhile (UV_ECANCELED); the client may be gone */
	}
	pool = conn->pool;
	if (status == 0) {
		status = uv_read_start((uv_stream_t *)&conn->tcp, on_alloc, on_read);
	}
	if (status != 0) {
		/* Each failed attempt answers the request waiting longest; the others get their
		 * own attempt from pool_dispatch(). */
		cconn_close(conn);
		if (pool->qhead != NULL) {
			struct creq *r = pool->qhead;

			q_remove(pool, r);
			creq_finish(r, status, NULL, 0);
			if (c->closing) {
				return;
			}
		}
		pool_dispatch(pool, NULL);
		return;
	}
	conn->state = CC_IDLE;
	pool->n_connecting--;
	pool_dispatch(pool, NULL);
}

static int cconn_start(struct pool *pool)
{
	struct http_client *c = pool->client;
	struct cconn *conn = calloc(1, sizeof(*conn));
	int rv;

	if (conn == NULL) {
		return UV_ENOMEM;
	}
	rv = uv_tcp_init(c->loop, &conn->tcp);
	if (rv != 0) {
		free(conn);
		return rv;
	}
	conn->tcp.data = conn;
	conn->connect_req.data = conn;
	conn->client = c;
	rv = uv_tcp_connect(&conn->connect_req, &conn->tcp, (const struct sockaddr *)&pool->addr,
	                    on_connect);
	if (rv != 0) {
		conn->closed = true;
		uv_close((uv_handle_t *)&conn->tcp, on_cconn_close);
		return rv;
	}
	uv_tcp_nodelay(&conn->tcp, 1);
	conn->pool = pool;
	conn->state = CC_CONNECTING;
	conn->next = pool->conns;
	if (pool->conns != NULL) {
		pool->conns->prev = conn;
	}
	pool->conns = conn;
	pool->n_conns++;
	pool->n_connecting++;
	return 0;
}

static struct cconn *pool_idle(struct pool *pool)
{
	for (struct cconn *conn = pool->conns; conn != NULL; conn = conn->next) {
		if (conn->state == CC_IDLE) {
			return conn;
		}
	}
	return NULL;
}

/* Moves waiting requests onto idle connections and opens connections for the rest. sync_req is
 * the request http_client_request() is submitting: if no connection can be opened for it, it is
 * taken out again and the error returned, and no callback runs. */
static int pool_dispatch(struct pool *pool, struct creq *sync_req)
{
	struct http_client *c = pool->client;
	struct cconn *conn;
	struct creq *r;
	int rv;

	for (;;) {
		while (pool->qhead != NULL && (conn = pool_idle(pool)) != NULL) {
			r = pool->qhead;
			q_remove(pool, r);
			if (cconn_assign(conn, r) != 0) {
				q_push_front(pool, r);
			}
		}
		if (pool->qhead == NULL || pool->qlen <= pool->n_connecting ||
		    pool->n_conns >= MAX_CONNS) {
			return 0;
		}
		rv = cconn_start(pool);
		if (rv == 0) {
			continue;
		}
		if (sync_req != NULL) {
			if (sync_req->queued) {
				q_remove(pool, sync_req);
				return rv;
			}
			return 0; /* it is on its way; the others wait for its connection */
		}
		r = pool->qhead;
		q_remove(pool, r);
		creq_finish(r, rv, NULL, 0);
		if (c->closing) {
			return 0;
		}
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Response parsing                                                                            */

static int on_message_begin(http_parser *p)
{
	struct cconn *conn = p->data;

	conn->body_len = 0;
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct cconn *conn = p->data;

	if (conn->req->is_head) {
		return 1; /* no body follows, whatever the headers say */
	}
	if ((p->flags & F_CONTENTLENGTH) != 0 && p->content_length > MAX_BODY) {
		conn->cb_err = UV_E2BIG;
		return -1;
	}
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct cconn *conn = p->data;

	if (len > MAX_BODY - conn->body_len) {
		conn->cb_err = UV_E2BIG;
		return -1;
	}
	if (conn->body_cap - conn->body_len < len) {
		size_t cap = conn->body_cap ? conn->body_cap : 4096;
		uint8_t *b;

		while (cap - conn->body_len < len) {
			cap *= 2;
		}
		b = realloc(conn->body, cap);
		if (b == NULL) {
			conn->cb_err = UV_ENOMEM;
			return -1;
		}
		conn->body = b;
		conn->body_cap = cap;
	}
	memcpy(conn->body + conn->body_len, at, len);
	conn->body_len += len;
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct cconn *conn = p->data;

	/* Interim responses (100 Continue) precede the real one. */
	if (p->status_code >= 100 && p->status_code < 200 && p->status_code != 101) {
		return 0;
	}
	conn->complete = true;
	http_parser_pause(p, 1);
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Timeouts                                                                                    */

static void on_timer(uv_timer_t *t);

static void timer_arm(struct http_client *c, uint64_t deadline)
{
	uint64_t now = uv_now(c->loop);

	if (uv_is_active((uv_handle_t *)&c->timer) && c->timer_due <= deadline) {
		return;
	}
	c->timer_due = deadline;
	uv_timer_start(&c->timer, on_timer, deadline > now ? deadline - now : 0, 0);
}

static bool expired(const struct creq *r, uint64_t now)
{
	return r->deadline != 0 && r->deadline <= now;
}

static void on_timer(uv_timer_t *t)
{
	struct http_client *c = t->data;
	uint64_t now = uv_now(c->loop);
	uint64_t next = 0;
	struct creq_list gone = {NULL, &gone.head};
	struct creq *r;

	/* Detach every expired request first: the callbacks may do anything to the client. */
	for (struct pool *pool = c->pools; pool != NULL; pool = pool->next) {
		struct creq *nr;
		struct cconn *conn, *nc;

		for (r = pool->qhead; r != NULL; r = nr) {
			nr = r->next;
			if (expired(r, now)) {
				q_remove(pool, r);
				list_add(&gone, r);
			}
		}
		for (conn = pool->conns; conn != NULL; conn = nc) {
			nc = conn->next;
			if (conn->state == CC_BUSY && expired(conn->req, now)) {
				r = conn->req;
				conn->req = NULL;
				r->conn = NULL;
				cconn_close(conn);
				list_add(&gone, r);
			}
		}
		/* Connection attempts nobody waits for any more may hang for minutes (an
		 * unreachable host); drop them so that later requests get fresh attempts. */
		for (conn = pool->conns; conn != NULL && pool->n_connecting > pool->qlen;
		     conn = nc) {
			nc = conn->next;
			if (conn->state == CC_CONNECTING) {
				cconn_close(conn);
			}
		}
	}
	while ((r = gone.head) != NULL) {
		gone.head = r->next;
		creq_finish(r, UV_ETIMEDOUT, NULL, 0);
	}
	if (c->closing) {
		return;
	}
	for (struct pool *pool = c->pools; pool != NULL; pool = pool->next) {
		pool_dispatch(pool, NULL);
		if (c->closing) {
			return;
		}
	}
	for (struct pool *pool = c->pools; pool != NULL; pool = pool->next) {
		for (r = pool->qhead; r != NULL; r = r->next) {
			if (r->deadline != 0 && (next == 0 || r->deadline < next)) {
				next = r->deadline;
			}
		}
		for (struct cconn *conn = pool->conns; conn != NULL; conn = conn->next) {
			r = conn->req;
			if (r != NULL && r->deadline != 0 && (next == 0 || r->deadline < next)) {
				next = r->deadline;
			}
		}
	}
	if (next != 0) {
		timer_arm(c, next);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Client                                                                                      */

int http_client_new(uv_loop_t *loop, struct http_client **out)
{
	struct http_client *c = calloc(1, sizeof(*c));
	int rv;

	if (c == NULL) {
		return UV_ENOMEM;
	}
	rv = uv_timer_init(loop, &c->timer);
	if (rv != 0) {
		free(c);
		return rv;
	}
	c->loop = loop;
	c->timer.data = c;
	*out = c;
	return 0;
}

static struct pool *pool_get(struct http_client *c, const char *address, int *err)
{
	struct pool *pool;

	for (pool = c->pools; pool != NULL; pool = pool->next) {
		if (strcmp(pool->address, address) == 0) {
			return pool;
		}
	}
	pool = calloc(1, sizeof(*pool));
	if (pool == NULL) {
		*err = UV_ENOMEM;
		return NULL;
	}
	*err = http_address_parse(address, &pool->addr);
	if (*err != 0) {
		free(pool);
		return NULL;
	}
	pool->address = strdup(address);
	if (pool->address == NULL) {
		free(pool);
		*err = UV_ENOMEM;
		return NULL;
	}
	pool->client = c;
	pool->next = c->pools;
	c->pools = pool;
	return pool;
}

/* Nothing that would let a caller's string end the request line or a header early. */
static bool valid_token(const char *s, bool allow_space)
{
	if (s == NULL || *s == '\0') {
		return false;
	}
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch < 0x20 || ch == 0x7f || (ch == ' ' && !allow_space)) {
			return false;
		}
	}
	return true;
}

int http_client_set_header(struct http_client *c, const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value);
	if (!valid_token(name, false) || strchr(name, ':') != NULL || !valid_token(value, true) ||
	    nl + vl + 5 > sizeof c->header) {
		return UV_EINVAL;
	}
	memcpy(c->header, name, nl);
	memcpy(c->header + nl, ": ", 2);
	memcpy(c->header + nl + 2, value, vl);
	memcpy(c->header + nl + 2 + vl, "\r\n", 3); /* with the terminating NUL */
	return 0;
}

int http_client_request(struct http_client *c, const char *address, const char *method,
                        const char *path, const char *content_type, const void *body, size_t len,
                        unsigned timeout_ms, http_client_cb cb, void *data)
{
	static const char fmt[] = "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s%s%s%s\r\n";
	char lenbuf[48] = "";
	const char *ct_pre = "", *ct = "", *ct_post = "";
	struct pool *pool;
	struct creq *r;
	int n, rv;

	if (c->closing) {
		return UV_ECANCELED;
	}
	if (cb == NULL || !valid_token(method, false) || !valid_token(path, false) ||
	    path[0] != '/' || !valid_token(address, false) ||
	    (content_type != NULL && !valid_token(content_type, true)) ||
	    (body == NULL && len > 0) || len > MAX_BODY) {
		return UV_EINVAL;
	}
	pool = pool_get(c, address, &rv);
	if (pool == NULL) {
		return rv;
	}
	if (content_type != NULL) {
		ct_pre = "Content-Type: ";
		ct = content_type;
		ct_post = "\r\n";
	}
	if (len > 0 || (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)) {
		snprintf(lenbuf, sizeof(lenbuf), "Content-Length: %zu\r\n", len);
	}
	n = snprintf(NULL, 0, fmt, method, path, address, c->header, ct_pre, ct, ct_post, lenbuf);
	if (n < 0) {
		return UV_EINVAL;
	}
	r = calloc(1, sizeof(*r) + (size_t)n + 1 + len);
	if (r == NULL) {
		return UV_ENOMEM;
	}
	snprintf(r->bytes, (size_t)n + 1, fmt, method, path, address, c->header, ct_pre, ct,
	         ct_post, lenbuf);
	if (len > 0) {
		memcpy(r->bytes + n, body, len);
	}
	r->len = (size_t)n + len;
	r->cb = cb;
	r->data = data;
	r->is_head = strcmp(method, "HEAD") == 0;
	if (timeout_ms > 0) {
		r->deadline = uv_now(c->loop) + timeout_ms;
	}
	q_push_back(pool, r);
	rv = pool_dispatch(pool, r);
	if (rv != 0) {
		free(r);
		return rv;
	}
	if (r->deadline != 0) {
		timer_arm(c, r->deadline);
	}
	return 0;
}

static void on_timer_close(uv_handle_t *h)
{
	free(h->data);
}

void http_client_close(struct http_client *c)
{
	struct creq_list gone = {NULL, &gone.head};
	struct creq *r;
	struct pool *pool, *np;

	if (c->closing) {
		return;
	}
	c->closing = true;
	for (pool = c->pools; pool != NULL; pool = np) {
		np = pool->next;
		while (pool->conns != NULL) {
			struct cconn *conn = pool->conns;

			r = conn->req;
			if (r != NULL) {
				conn->req = NULL;
				r->conn = NULL;
				list_add(&gone, r);
			}
			cconn_close(conn);
		}
		while (pool->qhead != NULL) {
			r = pool->qhead;
			q_remove(pool, r);
			list_add(&gone, r);
		}
		free(pool->address);
		free(pool);
	}
	c->pools = NULL;
	uv_close((uv_handle_t *)&c->timer, on_timer_close);
	while ((r = gone.head) != NULL) {
		gone.head = r->next;
		creq_finish(r, UV_ECANCELED, NULL, 0);
	}
}
