/* A canned agent for the CLI's unit tests: it answers requests in order from a script and records
 * what it was asked, so that a command's conversation with the agent can be checked without
 * one. */
#ifndef TABBY_CTL_FAKE_AGENT_H
#define TABBY_CTL_FAKE_AGENT_H

#include <pthread.h>
#include <jansson.h>

struct answer {
	int status;
	const char *body;
};

#define FAKE_MAX 16

struct fake {
	char dir[64];
	char path[128]; /* the socket: pass it to --socket */
	int listen_fd;
	pthread_t thread;
	pthread_mutex_t lock;
	const struct answer *answers;
	int nanswers;
	int n; /* requests seen */
	char method[FAKE_MAX][8];
	char url[FAKE_MAX][256];
	json_t *body[FAKE_MAX];
};

/* Start an agent that gives the n answers in order (a 500 "unscripted request" after them). */
struct fake *fake_start(const struct answer *answers, int n);

/* Stop f and check that it was asked exactly n requests. */
void fake_stop(struct fake *f, int n);

/* Check that request i was METHOD URL. */
void expect_request(struct fake *f, int i, const char *method, const char *url);

/* The JSON of text, failing the test when it is not JSON. */
json_t *load(const char *text);

/* Fail the test unless got equals the JSON of want_text. */
void expect_json(const json_t *got, const char *want_text);

#endif
