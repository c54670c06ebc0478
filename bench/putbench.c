/*
 * putbench: durable writes through Tabby's public API, the way etcd's `benchmark put` measures
 * etcd: CLIENTS concurrent clients, each with its own keep-alive connection, each issuing
 * PUT /v1/kv/KEY {"value": ...} one after another until TOTAL writes are done; sequential keys,
 * VAL-byte values. Prints one RESULT line: writes/s, p50, p90, p99, max.
 *
 *   putbench --address IP:PORT|SOCKET [--address ...] [--clients N] [--total N] [--val-size N]
 *            [--key-size N]
 *
 * Clients are spread round-robin over the addresses.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"

struct shared {
	const char **addresses;
	int n_addresses;
	int total;
	int val_size;
	int key_size;
	atomic_int next; /* next write number to take */
	atomic_int errors;
	double *lat_ms; /* per write */
	char *value;
};

struct worker {
	struct shared *sh;
	int index;
	pthread_t thread;
	int failed;
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void *run(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	struct api_client *c = NULL;
	char *err = NULL;
	const char *addr = sh->addresses[w->index % sh->n_addresses];
	if (api_client_open(addr, 30000, &c, &err) != API_OK) {
		fprintf(stderr, "putbench: %s: %s\n", addr, err ? err : "cannot connect");
		free(err);
		w->failed = 1;
		return NULL;
	}
	json_t *body = json_pack("{s:s}", "value", sh->value);
	char path[128];
	for (;;) {
		int i = atomic_fetch_add(&sh->next, 1);
		if (i >= sh->total) {
			break;
		}
		snprintf(path, sizeof path, "/v1/kv/bench/%0*d", sh->key_size, i);
		int status = 0;
		json_t *resp = NULL;
		double t0 = now_ms();
		int rv = api_request(c, "PUT", path, body, &status, &resp, &err);
		double t1 = now_ms();
		if (rv != API_OK || status != 200) {
			if (atomic_fetch_add(&sh->errors, 1) < 5) {
				fprintf(stderr, "putbench: PUT %s: %s\n", path,
				        rv != API_OK
				            ? (err ? err : api_strerror(rv))
				            : (api_error_message(resp) ? api_error_message(resp)
				                                       : "error status"));
			}
			free(err);
			err = NULL;
		}
		json_decref(resp);
		sh->lat_ms[i] = t1 - t0;
	}
	json_decref(body);
	api_client_close(c);
	return NULL;
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
	    {"key-size", required_argument, NULL, 'k'}, {0, 0, 0, 0}};
	struct shared sh = {.total = 20000, .val_size = 256, .key_size = 8};
	const char *addrs[16];
	int clients = 1, c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			if (sh.n_addresses == 16) {
				fprintf(stderr, "putbench: at most 16 addresses\n");
				return 2;
			}
			addrs[sh.n_addresses++] = optarg;
			break;
		case 'c':
			clients = atoi(optarg);
			break;
		case 't':
			sh.total = atoi(optarg);
			break;
		case 'v':
			sh.val_size = atoi(optarg);
			break;
		case 'k':
			sh.key_size = atoi(optarg);
			break;
		default:
			fprintf(stderr,
			        "usage: putbench --address A [--address B...] [--clients N] "
			        "[--total N] [--val-size N] [--key-size N]\n");
			return 2;
		}
	}
	if (sh.n_addresses == 0 || clients < 1 || clients > 1024 || sh.total < 1 ||
	    sh.val_size < 0 || sh.val_size > 1 << 20 || sh.key_size < 1 || sh.key_size > 64) {
		fprintf(stderr, "putbench: need --address, 1-1024 clients, total >= 1\n");
		return 2;
	}
	sh.addresses = addrs;
	sh.lat_ms = calloc((size_t)sh.total, sizeof *sh.lat_ms);
	sh.value = malloc((size_t)sh.val_size + 1);
	struct worker *ws = calloc((size_t)clients, sizeof *ws);
	if (sh.lat_ms == NULL || sh.value == NULL || ws == NULL) {
		fprintf(stderr, "putbench: out of memory\n");
		return 1;
	}
	for (int i = 0; i < sh.val_size; i++) {
		sh.value[i] = (char)('a' + i % 26);
	}
	sh.value[sh.val_size] = 0;
	double t0 = now_ms();
	for (int i = 0; i < clients; i++) {
		ws[i].sh = &sh;
		ws[i].index = i;
		if (pthread_create(&ws[i].thread, NULL, run, &ws[i]) != 0) {
			fprintf(stderr, "putbench: pthread_create: %s\n", strerror(errno));
			return 1;
		}
	}
	int failed = 0;
	for (int i = 0; i < clients; i++) {
		pthread_join(ws[i].thread, NULL);
		failed |= ws[i].failed;
	}
	double wall = now_ms() - t0;
	qsort(sh.lat_ms, (size_t)sh.total, sizeof *sh.lat_ms, cmp_double);
#define PCT(p) sh.lat_ms[(size_t)((double)(sh.total - 1) * (p))]
	printf("RESULT tabby clients=%d puts=%d val=%dB puts/s=%.0f p50=%.2fms p90=%.2fms "
	       "p99=%.2fms max=%.2fms wall=%.0fms errors=%d\n",
	       clients, sh.total, sh.val_size, (double)sh.total / (wall / 1000.0), PCT(0.50),
	       PCT(0.90), PCT(0.99), sh.lat_ms[sh.total - 1], wall, atomic_load(&sh.errors));
	free(sh.lat_ms);
	free(sh.value);
	free(ws);
	return failed || atomic_load(&sh.errors) ? 1 : 0;
}
