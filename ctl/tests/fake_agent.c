/* The canned agent of fake_agent.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fake_agent.h"

json_t *load(const char *text)
{
	json_error_t e;
	json_t *v = json_loads(text, 0, &e);

	if (v == NULL)
		fail_msg("bad test JSON (%s): %s", e.text, text);
	return v;
}

void expect_json(const json_t *got, const char *want_text)
{
	json_t *want = load(want_text);

	if (!json_equal(got, want)) {
		char *g = json_dumps(got, JSON_SORT_KEYS);
		fail_msg("expected %s\ngot      %s", want_text, g != NULL ? g : "(null)");
	}
	json_decref(want);
}

/* Read one request from fd into f's next record and answer it. Returns false when the
 * connection ended. */
static bool fake_serve_one(struct fake *f, int fd)
{
	char buf[65536] = "";
	size_t used = 0;
	char *end = NULL;
	const char *cl;
	size_t want;
	const struct answer *a;
	char head[256];
	int i;

	while ((end = strstr(buf, "\r\n\r\n")) == NULL) {
		ssize_t got;

		if (used + 1 >= sizeof(buf))
			return false;
		got = recv(fd, buf + used, sizeof(buf) - used - 1, 0);
		if (got <= 0)
			return false;
		used += (size_t)got;
		buf[used] = '\0';
	}
	*end = '\0';
	cl = strcasestr(buf, "content-length:");
	want = cl != NULL ? strtoul(cl + 15, NULL, 10) : 0;
	while (used - (size_t)(end + 4 - buf) < want) {
		ssize_t got = recv(fd, buf + used, sizeof(buf) - used - 1, 0);

		if (got <= 0)
			return false;
		used += (size_t)got;
	}
	buf[(size_t)(end + 4 - buf) + want] = '\0';
	pthread_mutex_lock(&f->lock);
	i = f->n++;
	if (i < FAKE_MAX) {
		sscanf(buf, "%7s %255s", f->method[i], f->url[i]);
		f->body[i] = want > 0 ? json_loads(end + 4, 0, NULL) : NULL;
	}
	pthread_mutex_unlock(&f->lock);
	a = i < f->nanswers ? &f->answers[i]
	                    : &(const struct answer){500, "{\"error\": {\"code\": "
	                                                  "\"internal\", \"message\": "
	                                                  "\"unscripted request\"}}"};
	snprintf(head, sizeof(head),
	         "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
	         a->status, strlen(a->body));
	send(fd, head, strlen(head), MSG_NOSIGNAL);
	send(fd, a->body, strlen(a->body), MSG_NOSIGNAL);
	return true;
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;

	for (;;) {
		int fd = accept(f->listen_fd, NULL, NULL);

		if (fd < 0)
			return NULL;
		while (fake_serve_one(f, fd))
			;
		close(fd);
	}
}

struct fake *fake_start(const struct answer *answers, int n)
{
	struct fake *f = calloc(1, sizeof(*f));
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	assert_non_null(f);
	f->answers = answers;
	f->nanswers = n;
	pthread_mutex_init(&f->lock, NULL);
	strcpy(f->dir, "/tmp/tabby-profile-test-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/agent.sock", f->dir);
	strcpy(sun.sun_path, f->path);
	f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(f->listen_fd >= 0);
	assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(f->listen_fd, 4), 0);
	assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
	return f;
}

void fake_stop(struct fake *f, int n)
{
	shutdown(f->listen_fd, SHUT_RDWR);
	pthread_join(f->thread, NULL);
	close(f->listen_fd);
	unlink(f->path);
	rmdir(f->dir);
	assert_int_equal(f->n, n);
	for (int i = 0; i < f->n && i < FAKE_MAX; i++)
		json_decref(f->body[i]);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

void expect_request(struct fake *f, int i, const char *method, const char *url)
{
	assert_true(i < f->n);
	assert_string_equal(f->method[i], method);
	assert_string_equal(f->url[i], url);
}
