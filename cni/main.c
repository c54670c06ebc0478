/*
 * tabby-cni: the CNI plugin binary (cni.h). What it is comes from the name it was run by: tabby,
 * calico and tabby-cni are the network plugin, tabby-ipam and calico-ipam the IPAM plugin.
 *
 * One call: read the environment and the configuration on stdin, parse and validate them, send
 * one request to the agent over its unix socket, print the result (ADD), nothing (DEL, CHECK) or
 * a CNI error on stdout, and exit non-zero on every error. Logs go to stderr, which runtimes keep
 * (Mesos writes it to the agent's log).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "cni/cni.h"

/* Bigger than any sane configuration; Mesos adds its NetworkInfo, a few kB at most. */
#define INPUT_MAX (16u << 20)

/* The rollback DEL after an unusable ADD answer should not make the runtime wait long. */
#define ROLLBACK_TIMEOUT_MS 10000

static const char *const level_names[] = {"warning", "info", "debug"};

struct plugin {
	const char *name; /* basename of argv[0], for log lines */
	struct cni_env env;
	struct cni_call call;
	struct cni_error err;
};

static void logf_(const struct plugin *p, enum cni_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Write all of buf to fd, one write(2) when the kernel takes it whole (it does for a pipe up to
 * PIPE_BUF, and for a file opened O_APPEND): a log line or a result in one piece. */
static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) /* 0 for a non-empty write would loop forever */
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * One log line, in one write(2). A runtime written in Go (cnitool, containerd) reads the plugin's
 * stderr through a pipe and wakes once per write; Mesos appends the stderr of many plugins to one
 * file, where a line in pieces can interleave with another plugin's. stderr is unbuffered, so
 * three stdio calls were three writes.
 */
static void logf_(const struct plugin *p, enum cni_log_level level, const char *fmt, ...)
{
	char stamp[32] = "", small[1024], *line = small;
	struct timespec ts;
	struct tm tm;
	va_list ap;

	if (level > p->call.log_level)
		return;
	if (clock_gettime(CLOCK_REALTIME, &ts) == 0 && gmtime_r(&ts.tv_sec, &tm) != NULL)
		strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
	int head = snprintf(small, sizeof small, "%s %s[%d] %s: ", stamp, p->name, (int)getpid(),
	                    level_names[level]);
	if (head < 0)
		return;
	if ((size_t)head > sizeof small / 2) /* an absurd argv[0]: the head is cut */
		head = sizeof small / 2;
	/* Formatted once into the stack buffer, which holds any usual line; only a longer one is
	 * formatted again, into a buffer of its size. The newline takes the NUL's place. */
	va_start(ap, fmt);
	int body = vsnprintf(small + head, sizeof small - (size_t)head - 1, fmt, ap);
	va_end(ap);
	if (body < 0)
		return;
	size_t need = (size_t)head + (size_t)body + 2; /* the newline and vsnprintf's NUL */
	if (need > sizeof small) {
		char *big = malloc(need);
		if (big == NULL) { /* out of memory: the line is cut to what fitted */
			body = (int)(sizeof small - (size_t)head - 2);
		} else {
			memcpy(big, small, (size_t)head);
			va_start(ap, fmt);
			vsnprintf(big + head, (size_t)body + 1, fmt, ap);
			va_end(ap);
			line = big;
		}
	}
	line[head + body] = '\n';
	(void)write_all(STDERR_FILENO, line, (size_t)head + (size_t)body + 1);
	if (line != small)
		free(line);
}

/* Read all of stdin into a malloc()ed buffer. */
static int read_input(char **out, size_t *len)
{
	size_t cap = 4096, n = 0, got;
	char *buf = malloc(cap), *bigger;

	if (buf == NULL)
		return -ENOMEM;
	for (;;) {
		if (n == cap) {
			if (cap >= INPUT_MAX) {
				free(buf);
				return -EFBIG;
			}
			bigger = realloc(buf, cap * 2);
			if (bigger == NULL) {
				free(buf);
				return -ENOMEM;
			}
			buf = bigger;
			cap *= 2;
		}
		got = fread(buf + n, 1, cap - n, stdin);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(stdin)) {
		free(buf);
		return -EIO;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* Print v on stdout, indented as the reference plugins do, in one write(2): the runtime reading
 * the pipe wakes once (through stdio, the first line went alone while libc found out that stdout
 * is not a terminal). */
static int print_json(const json_t *v)
{
	char *text = v != NULL ? json_dumps(v, JSON_INDENT(4)) : NULL;
	if (text == NULL)
		return -1;
	size_t n = strlen(text);
	text[n] = '\n'; /* over the NUL: the text goes out by its length */
	int rc = fflush(stdout) == 0 ? write_all(STDOUT_FILENO, text, n + 1) : -1;
	free(text);
	return rc;
}

/* Print the error in p->err and return the exit status. */
static int fail(struct plugin *p)
{
	json_t *e = cni_format_error(p->call.version, &p->err);
	const char *id = p->env.containerid != NULL ? p->env.containerid : "-";

	bool details = p->err.details[0] != '\0';

	logf_(p, CNI_LOG_WARNING, "%s %s: error %d: %s%s%s%s",
	      p->env.command != NULL ? p->env.command : "-", id, p->err.code, p->err.msg,
	      details ? " (" : "", details ? p->err.details : "", details ? ")" : "");
	if (print_json(e) != 0)
		fprintf(stdout, "{\"code\": %d, \"msg\": \"error\"}\n", p->err.code);
	json_decref(e);
	return 1;
}

/* An ADD the agent did but whose answer cannot be printed: undo it, so that the failed call
 * leaves nothing allocated and nothing wired. A container that existed before this ADD is left
 * alone (the answer says so): tearing down a running container over a bad answer is worse. */
static void rollback(struct plugin *p, const json_t *answer)
{
	struct api_client *c = NULL;
	json_t *resp = NULL;
	char *errmsg = NULL;
	int status = 0;

	if (json_is_true(json_object_get(answer, "existed")))
		return;
	if (api_client_open_unix(p->call.socket, ROLLBACK_TIMEOUT_MS, &c, &errmsg) != API_OK ||
	    api_request(c, "POST", cni_request_path(CNI_CMD_DEL), p->call.request, &status, &resp,
	                &errmsg) != API_OK ||
	    status / 100 != 2)
		logf_(p, CNI_LOG_WARNING, "rollback of ADD %s failed: %s",
		      p->env.containerid != NULL ? p->env.containerid : "-",
		      errmsg != NULL ? errmsg : "the agent refused the DEL");
	else
		logf_(p, CNI_LOG_INFO, "rolled back ADD %s", p->env.containerid);
	free(errmsg);
	json_decref(resp);
	api_client_close(c);
}

static int run(struct plugin *p, const char *input, size_t len)
{
	struct api_client *client = NULL;
	json_t *answer = NULL, *result = NULL;
	char *errmsg = NULL, *text;
	int status = 0, rc, exit_status = 1;

	if (cni_parse(cni_mode_from_argv0(p->name), &p->env, input, len, &p->call, &p->err) != 0)
		return fail(p);
	if (p->call.cmd == CNI_CMD_VERSION) {
		result = cni_version_answer(p->call.version);
		rc = print_json(result);
		json_decref(result);
		exit_status = rc == 0 ? 0 : 1;
		goto warn;
	}
	if (p->call.nothing_to_do[0] != '\0') {
		logf_(p, CNI_LOG_INFO, "DEL: %s", p->call.nothing_to_do);
		return 0;
	}

	if (p->call.log_level >= CNI_LOG_DEBUG) {
		text = json_dumps(p->call.request, JSON_COMPACT);
		logf_(p, CNI_LOG_DEBUG, "POST %s %s to %s", cni_request_path(p->call.cmd),
		      text != NULL ? text : "?", p->call.socket);
		free(text);
	}
	rc = api_client_open_unix(p->call.socket, CNI_TIMEOUT_MS, &client, &errmsg);
	if (rc == API_OK)
		rc = api_request(client, "POST", cni_request_path(p->call.cmd), p->call.request,
		                 &status, &answer, &errmsg);
	if (rc != API_OK) {
		cni_client_error(p->call.socket, rc, errmsg, &p->err);
		exit_status = fail(p);
		goto out;
	}
	if (p->call.log_level >= CNI_LOG_DEBUG) {
		text = answer != NULL ? json_dumps(answer, JSON_COMPACT) : NULL;
		logf_(p, CNI_LOG_DEBUG, "HTTP %d %s", status, text != NULL ? text : "");
		free(text);
	}
	if (status / 100 != 2) {
		cni_agent_error(p->call.cmd, status, answer, &p->err);
		exit_status = fail(p);
		goto out;
	}
	if (p->call.cmd != CNI_CMD_ADD) {
		/* DEL and CHECK print nothing on success (CNI spec). */
		logf_(p, CNI_LOG_INFO, "%s %s: done", p->env.command, p->env.containerid);
		exit_status = 0;
		goto out;
	}
	if (cni_format_result(&p->call, answer, &result, &p->err) != 0) {
		rollback(p, answer);
		exit_status = fail(p);
		goto out;
	}
	if (print_json(result) != 0) {
		/* The runtime cannot read the result: it sees a failed ADD, so undo it. */
		rollback(p, answer);
		logf_(p, CNI_LOG_WARNING, "cannot write the result to stdout: %s", strerror(errno));
		goto out;
	}
	if (p->call.log_level >= CNI_LOG_INFO) {
		text = json_dumps(json_object_get(answer, "ips"), JSON_COMPACT);
		logf_(p, CNI_LOG_INFO, "ADD %s %s: %s", p->env.containerid, p->env.ifname,
		      text != NULL ? text : "?");
		free(text);
	}
	exit_status = 0;
out:
	json_decref(result);
	json_decref(answer);
	free(errmsg);
	api_client_close(client);
warn:
	/* Last, once the answer is out: a runtime written in Go (cnitool, containerd) reads the
	 * plugin's stderr through a pipe, and a line written while the plugin still works had its
	 * reader woken in the middle of the ADD, competing for the CPU with the agent: 2.6 ms of a
	 * 17 ms cnitool ADD on a 2-core machine. */
	if (p->call.ignored[0] != '\0')
		logf_(p, CNI_LOG_WARNING,
		      "ignoring %s: tabby keeps its state in the agents' replicated store",
		      p->call.ignored);
	return exit_status;
}

int main(int argc, char **argv)
{
	struct plugin p = {0};
	const char *slash;
	char *input = NULL;
	size_t len = 0;
	int rc;

	slash = argc > 0 ? strrchr(argv[0], '/') : NULL;
	p.name = argc > 0 ? (slash != NULL ? slash + 1 : argv[0]) : "tabby-cni";
	if (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
		printf("%s %s\n", p.name, TABBY_VERSION);
		return 0;
	}
	p.env = (struct cni_env){
	    .command = getenv("CNI_COMMAND"),
	    .containerid = getenv("CNI_CONTAINERID"),
	    .netns = getenv("CNI_NETNS"),
	    .ifname = getenv("CNI_IFNAME"),
	    .args = getenv("CNI_ARGS"),
	    .path = getenv("CNI_PATH"),
	    .socket = getenv("TABBY_SOCKET"),
	};
	snprintf(p.call.version, sizeof p.call.version, "0.2.0");
	/* Seeded here, jansson does not open, read and close /dev/urandom for its hash seed on its
	 * first object: one system call instead of three, in every plugin run. If getrandom() has
	 * nothing to give, jansson seeds itself as before. */
	size_t seed = 0;
	if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) == (ssize_t)sizeof seed && seed != 0)
		json_object_seed(seed);

	/* A person running VERSION at a terminal should not have to type the configuration. */
	if (!(p.env.command != NULL && strcmp(p.env.command, "VERSION") == 0 && isatty(0))) {
		rc = read_input(&input, &len);
		if (rc != 0) {
			cni_error_set(&p.err, rc == -EFBIG ? CNI_ERR_DECODE : CNI_ERR_INTERNAL,
			              NULL, "cannot read the network configuration from stdin: %s",
			              rc == -EFBIG ? "larger than 16 MiB" : strerror(-rc));
			return fail(&p);
		}
	}
	rc = run(&p, input, len);
	cni_call_free(&p.call);
	free(input);
	return rc;
}
