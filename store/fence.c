/*
 * The cluster fence around raft's TCP transport (fence.h says why). It is a raft_uv_transport
 * of its own that delegates to raft_uv_tcp: connect() lets raft's transport connect and send
 * its handshake, then queues the fence preamble before raft's first message (libuv keeps the
 * order of writes on a stream); listen() gets each connection after raft's handshake and reads
 * the preamble before raft sees the stream.
 */
#include <stdlib.h>
#include <string.h>

#include "store/fence.h"

#define FENCE_MAGIC_LEN    8
#define FENCE_PREAMBLE_LEN (FENCE_MAGIC_LEN + FENCE_ID_LEN)

/* "TABBY", a fence marker and the preamble's version. */
static const uint8_t fence_magic[FENCE_MAGIC_LEN] = {'T', 'A', 'B', 'B', 'Y', 'C', 'L', 1};

/* A connection whose preamble is still being read. */
struct incoming {
	struct fence *f;
	uv_stream_t *stream;
	raft_id id;
	char *address;
	uint8_t buf[FENCE_PREAMBLE_LEN];
	size_t nread;
	struct incoming *next, **pprev;
};

/* A connect() in raft's transport, on behalf of raft's request. */
struct outgoing {
	struct raft_uv_connect req; /* the inner transport's */
	struct raft_uv_connect *outer_req;
	raft_uv_connect_cb cb;
	struct fence *f;
};

struct preamble_write {
	uv_write_t req;
	uint8_t buf[FENCE_PREAMBLE_LEN];
};

struct fence {
	struct raft_uv_transport outer; /* raft's; outer.impl is this */
	struct raft_uv_transport inner; /* raft_uv_tcp; inner.data is this */
	uint8_t preamble[FENCE_PREAMBLE_LEN];
	bool open; /* all-zero id: no preamble either way, as raft's own transport */
	raft_uv_accept_cb accept_cb;
	fence_refused_fn refused;
	void *refused_data;
	struct incoming *incoming;
	unsigned closing_streams; /* aborted incoming streams not closed yet */
	bool inner_open;          /* the inner transport's close callback has not fired */
	raft_uv_transport_close_cb close_cb;
};

static void incoming_unlink(struct incoming *in)
{
	*in->pprev = in->next;
	if (in->next != NULL) {
		in->next->pprev = in->pprev;
	}
}

static void maybe_closed(struct fence *f)
{
	if (f->close_cb != NULL && !f->inner_open && f->closing_streams == 0) {
		raft_uv_transport_close_cb cb = f->close_cb;
		f->close_cb = NULL;
		cb(&f->outer);
	}
}

static void stream_closed(uv_handle_t *h)
{
	struct fence *f = h->data;
	raft_free(h); /* raft's transport allocated the handle */
	if (f != NULL && --f->closing_streams == 0) {
		maybe_closed(f);
	}
}

/* Close an incoming connection before raft has it. */
static void incoming_drop(struct incoming *in)
{
	struct fence *f = in->f;
	incoming_unlink(in);
	f->closing_streams++;
	in->stream->data = f;
	uv_close((uv_handle_t *)in->stream, stream_closed);
	raft_free(in->address);
	free(in);
}

static void preamble_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct incoming *in = h->data;
	(void)suggested;
	/* Exactly what is missing, so that not one byte of raft's stream is read here. */
	buf->base = (char *)in->buf + in->nread;
	buf->len = sizeof in->buf - in->nread;
}

static void preamble_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
	struct incoming *in = stream->data;
	struct fence *f = in->f;
	(void)buf;
	if (n == 0) {
		return;
	}
	if (n < 0) {
		/* Closed before its preamble was complete: a raft without the fence sends its
		 * first message here, longer than a preamble, so this is a prober or a peer that
		 * gave up, nothing to report. */
		incoming_drop(in);
		return;
	}
	in->nread += (size_t)n;
	if (in->nread < sizeof in->buf) {
		return;
	}
	uv_read_stop(stream);
	if (memcmp(in->buf, f->preamble, sizeof in->buf) == 0) {
		incoming_unlink(in);
		stream->data = NULL;
		f->accept_cb(&f->outer, in->id, in->address, stream);
		raft_free(in->address);
		free(in);
		return;
	}
	bool fenced = memcmp(in->buf, fence_magic, FENCE_MAGIC_LEN) == 0;
	if (f->refused != NULL) {
		f->refused(f->refused_data, in->id, in->address,
		           fenced ? in->buf + FENCE_MAGIC_LEN : NULL);
	}
	incoming_drop(in);
}

static void accepted(struct raft_uv_transport *inner, raft_id id, const char *address,
                     uv_stream_t *stream)
{
	struct fence *f = inner->data;
	if (f->open) {
		f->accept_cb(&f->outer, id, address, stream);
		return;
	}
	struct incoming *in = calloc(1, sizeof *in);
	char *addr = raft_malloc(strlen(address) + 1);
	if (in == NULL || addr == NULL) {
		goto err;
	}
	strcpy(addr, address);
	in->f = f;
	in->stream = stream;
	in->id = id;
	in->address = addr;
	in->next = f->incoming;
	in->pprev = &f->incoming;
	if (f->incoming != NULL) {
		f->incoming->pprev = &in->next;
	}
	f->incoming = in;
	stream->data = in;
	if (uv_read_start(stream, preamble_alloc, preamble_read) != 0) {
		incoming_drop(in);
	}
	return;

err:
	/* The peer connects again after raft's retry delay. */
	free(in);
	raft_free(addr);
	f->closing_streams++;
	stream->data = f;
	uv_close((uv_handle_t *)stream, stream_closed);
}

static int fence_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
	struct fence *f = t->impl;
	f->accept_cb = cb;
	int rv = f->inner.listen(&f->inner, accepted);
	if (rv != 0) {
		memcpy(t->errmsg, f->inner.errmsg, sizeof t->errmsg);
	}
	return rv;
}

static void preamble_written(uv_write_t *req, int status)
{
	/* A failed write shows as a failed write of raft's own next message, which raft handles
	 * by connecting again. */
	(void)status;
	free(req->data);
}

static void connected(struct raft_uv_connect *req, uv_stream_t *stream, int status)
{
	struct outgoing *o = req->data;
	struct fence *f = o->f;
	struct raft_uv_connect *outer_req = o->outer_req;
	raft_uv_connect_cb cb = o->cb;
	free(o);
	if (status == 0 && !f->open) {
		struct preamble_write *w = malloc(sizeof *w);
		if (w == NULL) {
			status = RAFT_NOMEM;
		} else {
			memcpy(w->buf, f->preamble, sizeof w->buf);
			w->req.data = w;
			uv_buf_t b = uv_buf_init((char *)w->buf, sizeof w->buf);
			if (uv_write(&w->req, stream, &b, 1, preamble_written) != 0) {
				free(w);
				status = RAFT_NOCONNECTION;
			}
		}
		if (status != 0) {
			stream->data = NULL;
			uv_close((uv_handle_t *)stream, stream_closed);
			stream = NULL;
		}
	}
	cb(outer_req, stream, status);
}

static int fence_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                         const char *address, raft_uv_connect_cb cb)
{
	struct fence *f = t->impl;
	struct outgoing *o = calloc(1, sizeof *o);
	if (o == NULL) {
		return RAFT_NOMEM;
	}
	o->f = f;
	o->outer_req = req;
	o->cb = cb;
	o->req.data = o;
	int rv = f->inner.connect(&f->inner, &o->req, id, address, connected);
	if (rv != 0) {
		memcpy(t->errmsg, f->inner.errmsg, sizeof t->errmsg);
		free(o);
	}
	return rv;
}

static int fence_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
	struct fence *f = t->impl;
	int rv = f->inner.init(&f->inner, id, address);
	if (rv != 0) {
		memcpy(t->errmsg, f->inner.errmsg, sizeof t->errmsg);
	}
	return rv;
}

static void inner_closed(struct raft_uv_transport *inner)
{
	struct fence *f = inner->data;
	f->inner_open = false;
	maybe_closed(f);
}

static void fence_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
	struct fence *f = t->impl;
	f->close_cb = cb;
	while (f->incoming != NULL) {
		incoming_drop(f->incoming);
	}
	/* Pending connects end with RAFT_CANCELED through connected(), before inner_closed(). */
	f->inner.close(&f->inner, inner_closed);
}

int fence_new(uv_loop_t *loop, const uint8_t *id, fence_refused_fn refused, void *data,
              struct raft_uv_transport **out)
{
	struct fence *f = calloc(1, sizeof *f);
	if (f == NULL) {
		return RAFT_NOMEM;
	}
	f->inner.version = 1;
	f->inner.data = f;
	int rv = raft_uv_tcp_init(&f->inner, loop);
	if (rv != 0) {
		free(f);
		return rv;
	}
	f->inner_open = true;
	memcpy(f->preamble, fence_magic, FENCE_MAGIC_LEN);
	memcpy(f->preamble + FENCE_MAGIC_LEN, id, FENCE_ID_LEN);
	static const uint8_t zero[FENCE_ID_LEN];
	f->open = memcmp(id, zero, sizeof zero) == 0;
	f->refused = refused;
	f->refused_data = data;
	f->outer.version = 1;
	f->outer.impl = f;
	f->outer.init = fence_init;
	f->outer.listen = fence_listen;
	f->outer.connect = fence_connect;
	f->outer.close = fence_close;
	*out = &f->outer;
	return 0;
}

void fence_free(struct raft_uv_transport *t)
{
	struct fence *f = t->impl;
	raft_uv_tcp_close(&f->inner);
	free(f);
}
