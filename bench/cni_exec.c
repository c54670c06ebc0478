/*
 * cni_exec: a CNI runtime that calls plugins the way Mesos does, for bench/cni.sh.
 *
 * Mesos's CNI isolator (network/cni) runs the plugin named by the network's "type" from its
 * plugin directory as a plain child process: CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME
 * and CNI_PATH in the environment, the network configuration with args."org.apache.mesos"
 * (the task's NetworkInfo) on standard input, the result read from standard output. No result
 * cache, no second process around the plugin. cnitool, the other driver bench/cni.sh uses, is a
 * Go program that costs several milliseconds per call before any plugin runs; timing the plugin
 * the way a Mesos agent runs it shows what Tabby's plugin costs a Mesos task.
 *
 *   cni_exec PLUGIN_DIR CONF OUT CYCLES NETNS...
 *
 * For each NETNS (a path), CYCLES times ADD then DEL (CYCLES 0: ADD only), with the container id
 * the namespace's file name. Each call's wall time in microseconds, from before the fork to the
 * child's exit with its output read, is appended to OUT.add or OUT.del; a call that exits non-zero
 * or prints an error result is counted in OUT.errs (written at the end) and its output appended to
 * OUT.err. Exit status: 0, or 2 for bad arguments or a configuration it cannot read.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

struct run {
	const char *plugin_dir;
	char plugin[PATH_MAX];
	char *conf; /* with the Mesos args */
	size_t conf_len;
	FILE *add, *del, *err;
	unsigned errors;
};

static long long now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Read the configuration, add what Mesos adds, and find the plugin. */
static int load_conf(struct run *r, const char *path)
{
	json_error_t jerr;
	json_t *conf = json_load_file(path, 0, &jerr);
	if (conf == NULL) {
		fprintf(stderr, "cni_exec: %s: %s (line %d)\n", path, jerr.text, jerr.line);
		return -1;
	}
	const char *type = json_string_value(json_object_get(conf, "type"));
	const char *name = json_string_value(json_object_get(conf, "name"));
	if (type == NULL || name == NULL || strchr(type, '/') != NULL) {
		fprintf(stderr, "cni_exec: %s: no plain \"type\" or no \"name\"\n", path);
		json_decref(conf);
		return -1;
	}
	int n = snprintf(r->plugin, sizeof r->plugin, "%s/%s", r->plugin_dir, type);
	json_t *args = json_pack("{s:{s:{s:s}}}", "org.apache.mesos", "network_info", "name", name);
	if (n < 0 || (size_t)n >= sizeof r->plugin || args == NULL ||
	    json_object_set_new(conf, "args", args) != 0) {
		fprintf(stderr, "cni_exec: %s: cannot build the call\n", path);
		json_decref(conf);
		return -1;
	}
	r->conf = json_dumps(conf, JSON_COMPACT);
	json_decref(conf);
	if (r->conf == NULL) {
		return -1;
	}
	r->conf_len = strlen(r->conf);
	return 0;
}

/* One call; returns its wall time in microseconds, or -1 when it could not be started. */
static long long call(struct run *r, const char *cmd, const char *netns, const char *cid)
{
	char e_cmd[64], e_cid[PATH_MAX + 32], e_ns[PATH_MAX + 32], e_path[PATH_MAX + 32];
	char *envp[] = {
	    e_cmd, e_cid, e_ns, "CNI_IFNAME=eth0", e_path, "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
	    NULL};
	char *argv[] = {r->plugin, NULL};
	int in[2], out[2];
	snprintf(e_cmd, sizeof e_cmd, "CNI_COMMAND=%s", cmd);
	snprintf(e_cid, sizeof e_cid, "CNI_CONTAINERID=%s", cid);
	snprintf(e_ns, sizeof e_ns, "CNI_NETNS=%s", netns);
	snprintf(e_path, sizeof e_path, "CNI_PATH=%s", r->plugin_dir);

	long long t0 = now_us();
	if (pipe2(in, O_CLOEXEC) != 0) {
		r->errors++;
		return -1;
	}
	if (pipe2(out, O_CLOEXEC) != 0) {
		close(in[0]);
		close(in[1]);
		r->errors++;
		return -1;
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	pid_t pid;
	int rv = posix_spawn(&pid, r->plugin, &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(out[1]);
	if (rv != 0) {
		close(in[1]);
		close(out[0]);
		fprintf(r->err, "%s %s: cannot run %s: %s\n", cmd, cid, r->plugin, strerror(rv));
		r->errors++;
		return -1;
	}
	/* A configuration is far below the pipe's capacity: one write, then EOF. */
	(void)!write(in[1], r->conf, r->conf_len); /* a plugin that reads no config fails itself */
	close(in[1]);
	/* The whole output is read (what does not fit is dropped), so the child never blocks. */
	char buf[65536], rest[4096];
	size_t len = 0;
	ssize_t k;
	for (;;) {
		k = len < sizeof buf - 1 ? read(out[0], buf + len, sizeof buf - 1 - len)
		                         : read(out[0], rest, sizeof rest);
		if (k < 0 && errno == EINTR) {
			continue;
		}
		if (k <= 0) {
			break;
		}
		len += len < sizeof buf - 1 ? (size_t)k : 0;
	}
	close(out[0]);
	buf[len] = 0;
	int status = 0;
	pid_t got;
	while ((got = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
	}
	long long dt = now_us() - t0;
	bool failed = got != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0;
	if (!failed && strcmp(cmd, "ADD") == 0) {
		/* An ADD must answer with a result that holds an address. */
		json_t *res = json_loads(buf, 0, NULL);
		failed = json_array_size(json_object_get(res, "ips")) == 0;
		json_decref(res);
	}
	if (failed) {
		r->errors++;
		fprintf(r->err, "%s %s: status %d: %s\n", cmd, cid,
		        WIFEXITED(status) ? WEXITSTATUS(status) : -1, buf);
	}
	return dt;
}

static FILE *open_out(const char *out, const char *ext)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s.%s", out, ext);
	FILE *f = fopen(path, "a");
	if (f == NULL) {
		fprintf(stderr, "cni_exec: %s: %s\n", path, strerror(errno));
	}
	return f;
}

int main(int argc, char **argv)
{
	struct run r = {0};
	if (argc < 6) {
		fprintf(stderr, "usage: cni_exec PLUGIN_DIR CONF OUT CYCLES NETNS...\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN); /* a plugin that exits before reading its config */
	r.plugin_dir = argv[1];
	const char *out = argv[3];
	char *end;
	long cycles = strtol(argv[4], &end, 10);
	if (*end != 0 || cycles < 0) {
		fprintf(stderr, "cni_exec: CYCLES: not a count: %s\n", argv[4]);
		return 2;
	}
	if (load_conf(&r, argv[2]) != 0) {
		return 2;
	}
	r.add = open_out(out, "add");
	r.del = open_out(out, "del");
	r.err = open_out(out, "err");
	if (r.add == NULL || r.del == NULL || r.err == NULL) {
		return 2;
	}
	for (int i = 5; i < argc; i++) {
		const char *ns = argv[i];
		const char *cid = strrchr(ns, '/') ? strrchr(ns, '/') + 1 : ns;
		for (long c = 0; c < (cycles ? cycles : 1); c++) {
			long long t = call(&r, "ADD", ns, cid);
			if (t >= 0) {
				fprintf(r.add, "%lld\n", t);
			}
			if (cycles == 0) {
				continue;
			}
			t = call(&r, "DEL", ns, cid);
			if (t >= 0) {
				fprintf(r.del, "%lld\n", t);
			}
		}
	}
	FILE *e = open_out(out, "errs");
	if (e == NULL) {
		return 2;
	}
	fprintf(e, "%u\n", r.errors);
	fclose(e);
	fclose(r.add);
	fclose(r.del);
	fclose(r.err);
	free(r.conf);
	return 0;
}
