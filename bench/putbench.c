/*
 * putbench: durable writes through Tabby's public API, the way etcd's `benchmark put` measures
 * etcd: CLIENTS concurrent clients, each with its own keep-alive connection, each issuing
 * PUT /v1/kv/KEY {"value": ...} one after another until TOTAL writes are done; sequential keys,
 * VAL-byte values. Prints one RESULT line: writes/s, p50, p90, p99, max.
 *
 *   putbench --address IP:PORT [--address ...] [--clients N] [--total N] [--val-size N]
 *            [--key-size N] [--mode put|assign] [--node NAME ...] [--until-full]
 *            [--trace FILE]
 *
 * --mode assign measures IPAM instead: each request is POST /v1/ipam/assign for one IPv4
 * address with its own handle, for the node named by the --node given at the same position as
 * the client's --address (a host's CNI plugin asks its own agent for its own node). With
 * --until-full the clients keep assigning until the agent answers 409 (the pools are exhausted);
 * --total is then only an upper bound, and the line reports how many addresses were assigned.
 *
 * --trace FILE writes each request's latency in ms, one line per request in the order they were
 * issued, to see when in a run the slow ones came (a fresh cluster, a snapshot, a noisy stretch).
 *
 * One thread and one libuv loop drive every client, as etcd's tool drives its clients from a few
 * goroutines: on a two-core machine a thread per client would spend the cores that the cluster
 * under test needs on context switches. Responses are parsed with http-parser; a response that is
 * not 200 counts as an error. Clients are spread round-robin over the addresses.
 */
#include <getopt.h>
#include <http_parser.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "agent/http.h"

struct bench;

struct client {
	struct bench *b;
	uv_tcp_t tcp;
	uv_connect_t connect;
	uv_write_t write;
	http_parser parser;
	char *req; /* the request being sent */
	size_t req_len;
	int index;      /* the write in flight */
	int addr;       /* index of its --address */
	uint64_t start; /* uv_hrtime() when it was sent */
	bool done;
};

struct bench {
	uv_loop_t *loop;
	struct client *clients;
	int n_clients;
	int total, val_size, key_size;
	int next;
	int completed;
	int errors;
	int open;
	double *lat_ms;
	bool assign;     /* --mode assign */
	bool until_full; /* --until-full */
	int full;        /* clients that were told the pools are exhausted */
	const char *nodes[16];
	char *body; /* {"value": "..."} */
	size_t body_len;
	http_parser_settings settings;
};

static void on_close(uv_handle_t *h)
{
	struct client *c = h->data;
	c->b->open--;
}

static void finish(struct client *c)
{
	if (!c->done) {
		c->done = true;
		uv_close((uv_handle_t *)&c->tcp, on_close);
	}
}

/* A client that failed stops; the run reports the errors. */
static void client_fail(struct client *c, const char *what, const char *why)
{
	fprintf(stderr, "putbench: %s: %s\n", what, why);
	c->b->errors++;
	finish(c);
}

static void send_next(struct client *c);

static void on_written(uv_write_t *w, int status)
{
	struct client *c = w->data;
	if (status != 0) {
		client_fail(c, "write", uv_strerror(status));
	}
}

static void send_next(struct client *c)
{
	struct bench *b = c->b;
	if (b->next >= b->total) {
		finish(c);
		return;
	}
	c->index = b->next++;
	free(c->req);
	size_t cap = b->body_len + 512;
	c->req = malloc(cap);
	if (c->req == NULL) {
		client_fail(c, "request", "out of memory");
		return;
	}
	if (b->assign) {
		char body[320];
		int bl = snprintf(body, sizeof body,
		                  "{\"node\": \"%s\", \"handle\": \"bench-%d\", \"num4\": 1}",
		                  b->nodes[c->addr], c->index);
		int n = snprintf(c->req, cap,
		                 "POST /v1/ipam/assign HTTP/1.1\r\nHost: tabby\r\nContent-Type: "
		                 "application/json\r\nContent-Length: %d\r\n\r\n%s",
		                 bl, body);
		c->req_len = (size_t)n;
	} else {
		int n = snprintf(c->req, cap,
		                 "PUT /v1/kv/bench/%0*d HTTP/1.1\r\nHost: tabby\r\nContent-Type: "
		                 "application/json\r\nContent-Length: %zu\r\n\r\n",
		                 b->key_size, c->index, b->body_len);
		memcpy(c->req + n, b->body, b->body_len);
		c->req_len = (size_t)n + b->body_len;
	}
	uv_buf_t buf = uv_buf_init(c->req, (unsigned)c->req_len);
	c->write.data = c;
	c->start = uv_hrtime();
	int rv = uv_write(&c->write, (uv_stream_t *)&c->tcp, &buf, 1, on_written);
	if (rv != 0) {
		client_fail(c, "write", uv_strerror(rv));
	}
}

static int on_message_complete(http_parser *p)
{
	struct client *c = p->data;
	struct bench *b = c->b;
	if (b->until_full && p->status_code == 409) {
		b->full++;
		finish(c); /* exhausted: this client is done */
		return 0;
	}
	b->lat_ms[c->index] = (double)(uv_hrtime() - c->start) / 1e6;
	if (p->status_code != 200 && b->errors++ < 5) {
		fprintf(stderr, "putbench: request %d: HTTP %u\n", c->index, p->status_code);
	}
	b->completed++;
	send_next(c);
	return 0;
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
	(void)h;
	buf->base = malloc(size);
	buf->len = buf->base ? size : 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct client *c = s->data;
	if (nread < 0) {
		if (!c->done) {
			client_fail(c, "read", uv_strerror((int)nread));
		}
	} else if (nread > 0) {
		size_t used =
		    http_parser_execute(&c->parser, &c->b->settings, buf->base, (size_t)nread);
		if (used != (size_t)nread && !c->done) {
			client_fail(c, "bad response",
			            http_errno_description(HTTP_PARSER_ERRNO(&c->parser)));
		}
	}
	free(buf->base);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct client *c = req->data;
	if (status != 0) {
		client_fail(c, "connect", uv_strerror(status));
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	send_next(c);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"address", required_argument, NULL, 'a'},  {"clients", required_argument, NULL, 'c'},
	    {"total", required_argument, NULL, 't'},    {"val-size", required_argument, NULL, 'v'},
	    {"key-size", required_argument, NULL, 'k'}, {"mode", required_argument, NULL, 'm'},
	    {"node", required_argument, NULL, 'n'},     {"until-full", no_argument, NULL, 'u'},
	    {"trace", required_argument, NULL, 'T'},    {0, 0, 0, 0}};
	int n_nodes = 0;
	const char *trace = NULL;
	struct bench b = {.total = 20000, .val_size = 256, .key_size = 8, .n_clients = 1};
	struct sockaddr_storage addrs[16];
	int n_addrs = 0, c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			if (n_addrs == 16 || http_address_parse(optarg, &addrs[n_addrs]) != 0) {
				fprintf(stderr,
				        "putbench: --address: '%s' is not IP:PORT or [IPv6]:PORT "
				        "(at most 16)\n",
				        optarg);
				return 2;
			}
			n_addrs++;
			break;
		case 'c':
			b.n_clients = atoi(optarg);
			break;
		case 't':
			b.total = atoi(optarg);
			break;
		case 'v':
			b.val_size = atoi(optarg);
			break;
		case 'k':
			b.key_size = atoi(optarg);
			break;
		case 'm':
			if (strcmp(optarg, "put") != 0 && strcmp(optarg, "assign") != 0) {
				fprintf(stderr, "putbench: --mode: '%s' is not put or assign\n",
				        optarg);
				return 2;
			}
			b.assign = strcmp(optarg, "assign") == 0;
			break;
		case 'n':
			if (n_nodes == 16 || strlen(optarg) > 200 ||
			    strpbrk(optarg, "\"\\") != NULL) {
				fprintf(stderr,
				        "putbench: --node: '%s' is not usable (at most 16)\n",
				        optarg);
				return 2;
			}
			b.nodes[n_nodes++] = optarg;
			break;
		case 'u':
			b.until_full = true;
			break;
		case 'T':
			trace = optarg;
			break;
		default:
			fprintf(stderr,
			        "usage: putbench --address IP:PORT [--address ...] [--clients "
			        "N] [--total N] [--val-size N] [--key-size N] [--mode put|assign] "
			        "[--node NAME ...] [--until-full] [--trace FILE]\n");
			return 2;
		}
	}
	if (n_addrs == 0 || b.n_clients < 1 || b.n_clients > 4096 || b.total < 1 ||
	    b.val_size < 0 || b.val_size > 1 << 20 || b.key_size < 1 || b.key_size > 64) {
		fprintf(stderr, "putbench: need --address, 1-4096 clients, total >= 1\n");
		return 2;
	}
	if (b.assign && n_nodes != n_addrs) {
		fprintf(stderr, "putbench: --mode assign needs one --node per --address\n");
		return 2;
	}
	b.loop = uv_default_loop();
	b.lat_ms = calloc((size_t)b.total, sizeof *b.lat_ms);
	b.body = malloc((size_t)b.val_size + 32);
	b.clients = calloc((size_t)b.n_clients, sizeof *b.clients);
	if (b.lat_ms == NULL || b.body == NULL || b.clients == NULL) {
		fprintf(stderr, "putbench: out of memory\n");
		return 1;
	}
	/* The value is plain letters: nothing in it needs JSON escaping. */
	b.body_len = (size_t)sprintf(b.body, "{\"value\": \"");
	for (int i = 0; i < b.val_size; i++) {
		b.body[b.body_len++] = (char)('a' + i % 26);
	}
	b.body_len += (size_t)sprintf(b.body + b.body_len, "\"}");
	http_parser_settings_init(&b.settings);
	b.settings.on_message_complete = on_message_complete;

	uint64_t t0 = uv_hrtime();
	for (int i = 0; i < b.n_clients; i++) {
		struct client *cl = &b.clients[i];
		cl->b = &b;
		cl->addr = i % n_addrs;
		uv_tcp_init(b.loop, &cl->tcp);
		cl->tcp.data = cl;
		cl->connect.data = cl;
		http_parser_init(&cl->parser, HTTP_RESPONSE);
		cl->parser.data = cl;
		b.open++;
		int rv = uv_tcp_connect(&cl->connect, &cl->tcp,
		                        (const struct sockaddr *)&addrs[i % n_addrs], on_connect);
		if (rv != 0) {
			client_fail(cl, "connect", uv_strerror(rv));
		}
	}
	uv_run(b.loop, UV_RUN_DEFAULT);
	double wall = (double)(uv_hrtime() - t0) / 1e6;
	int n = b.completed;
	if (n == 0) {
		fprintf(stderr, "putbench: no write completed\n");
		return 1;
	}
	bool trace_failed = false;
	if (trace != NULL) {
		FILE *f = fopen(trace, "w");
		for (int i = 0; f != NULL && i < b.total; i++) {
			fprintf(f, "%.3f\n", b.lat_ms[i]);
		}
		if (f == NULL || ferror(f) | fclose(f)) {
			perror(trace);
			trace_failed = true;
		}
	}
	/* Unsent slots stay 0 only if the run failed; sort what completed. */
	qsort(b.lat_ms, (size_t)b.total, sizeof *b.lat_ms, cmp_double);
	double *lat = b.lat_ms + (b.total - n);
#define PCT(p) lat[(size_t)((double)(n - 1) * (p))]
	if (b.assign) {
		printf("RESULT tabby clients=%d assigns=%d assigns/s=%.0f p50=%.2fms p90=%.2fms "
		       "p99=%.2fms max=%.2fms wall=%.0fms errors=%d exhausted=%d\n",
		       b.n_clients, n, (double)n / (wall / 1000.0), PCT(0.50), PCT(0.90), PCT(0.99),
		       lat[n - 1], wall, b.errors, b.full);
	} else {
		printf("RESULT tabby clients=%d puts=%d val=%dB puts/s=%.0f p50=%.2fms p90=%.2fms "
		       "p99=%.2fms max=%.2fms wall=%.0fms errors=%d\n",
		       b.n_clients, n, b.val_size, (double)n / (wall / 1000.0), PCT(0.50),
		       PCT(0.90), PCT(0.99), lat[n - 1], wall, b.errors);
	}
	for (int i = 0; i < b.n_clients; i++) {
		free(b.clients[i].req);
	}
	free(b.clients);
	free(b.lat_ms);
	free(b.body);
	uv_loop_close(b.loop);
	if (b.until_full) {
		return b.errors || b.full == 0 || trace_failed ? 1 : 0;
	}
	return b.errors || n != b.total || trace_failed ? 1 : 0;
}
