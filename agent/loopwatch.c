/*
 * A watchdog for the agent's event loop, so that a member that stops answering says why.
 *
 * Why. Everything an agent does for the cluster runs on one loop thread: raft, the API, the
 * replica's applies. When that thread blocks in the kernel, the member is gone for everyone:
 * it sends no heartbeats (a leader loses its role after an election timeout), answers no request
 * on its socket, and cannot log a word about it. The usual cause is the disk under the data
 * directory: a hung or frozen file system, a storage path that stalls for seconds. The raft log's
 * appends are submitted from the loop thread and a write to a frozen file system waits there, as
 * does a store through LMDB's map. The cluster copes (the other members elect a leader and carry
 * on), but the operator of the silent member, and of the containers on its host whose CNI calls
 * hang, needs to learn which part stopped.
 *
 * How. A timer on the loop stamps the time every LOOPWATCH_BEAT_MS. A thread of its own wakes as
 * often and reads the stamp: once the loop has missed it for LOOPWATCH_STALL_MS it logs, once per
 * stall, what the loop thread is doing as the kernel reports it (/proc/self/task/TID: its state,
 * and the kernel function it waits in). When the loop runs again its timer sees the gap and logs
 * how long it lasted; /metrics counts such stalls and keeps the longest. The thread only reads an
 * atomic and /proc and writes a log line, so it cannot itself be held up by what holds the loop
 * (the log goes to stderr, which is not under the data directory).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/internal.h"

/* A loop that has not run for a second has already cost a leader its role with the default
 * election timeout (1 s), and is long past anything the agent does in one callback. */
#define LOOPWATCH_STALL_MS 1000
#define LOOPWATCH_BEAT_MS  200

struct loopwatch {
	uv_timer_t beat;
	_Atomic uint64_t last_ms; /* the loop's last beat, CLOCK_MONOTONIC ms */
	pid_t loop_tid;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop; /* under mu */
	struct agent *a;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void on_beat(uv_timer_t *t)
{
	struct loopwatch *w = t->data;
	struct agent *a = w->a;
	uint64_t now = mono_ms();
	uint64_t gap = now - atomic_load(&w->last_ms);
	if (gap >= LOOPWATCH_STALL_MS + LOOPWATCH_BEAT_MS) {
		uint64_t stalled = gap - LOOPWATCH_BEAT_MS;
		a->loop_stalls++;
		if (stalled > a->loop_longest_stall_ms) {
			a->loop_longest_stall_ms = stalled;
		}
		agent_log("the event loop runs again after %.1f s", (double)stalled / 1000);
	}
	atomic_store(&w->last_ms, now);
}

/* Reads /proc/self/task/TID/NAME into buf (one line, no newline); "" when it cannot. */
static void task_read(pid_t tid, const char *name, char *buf, size_t len)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/self/task/%d/%s", (int)tid, name);
	buf[0] = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		return;
	}
	ssize_t n = read(fd, buf, len - 1);
	close(fd);
	buf[n > 0 ? n : 0] = 0;
	buf[strcspn(buf, "\n")] = 0;
}

/* What the kernel says the loop thread is doing, as a phrase for the log; *io tells whether it
 * waits for I/O. */
static void describe(pid_t tid, char *out, size_t len, bool *io)
{
	char stat[512], wchan[128];
	task_read(tid, "stat", stat, sizeof stat);
	task_read(tid, "wchan", wchan, sizeof wchan);
	/* The state follows the command name, which is in parentheses and may hold anything. */
	const char *paren = strrchr(stat, ')');
	char state = paren != NULL && paren[1] == ' ' ? paren[2] : '?';
	const char *what;
	*io = state == 'D';
	switch (state) {
	case 'D':
		what = "waiting in the kernel, uninterruptibly (disk or file system I/O)";
		break;
	case 'R':
		what = "running";
		break;
	case 'S':
		what = "sleeping in the kernel";
		break;
	case 'T':
	case 't':
		what = "stopped (by a signal or a debugger)";
		break;
	default:
		what = "in an unknown state";
		break;
	}
	if (wchan[0] != 0 && strcmp(wchan, "0") != 0) {
		snprintf(out, len, "%s, in %s", what, wchan);
	} else {
		snprintf(out, len, "%s", what);
	}
}

static void *watch(void *p)
{
	struct loopwatch *w = p;
	uint64_t reported = 0; /* the beat of the stall already logged */
	uint64_t woke = mono_ms();
	pthread_mutex_lock(&w->mu);
	while (!w->stop) {
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += LOOPWATCH_BEAT_MS * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&w->cv, &w->mu, &until);
		if (w->stop) {
			break;
		}
		uint64_t last = atomic_load(&w->last_ms);
		uint64_t now = mono_ms();
		/* When this thread itself did not run for a while, the whole process (or machine)
		 * was paused, not the loop alone; the loop gets a beat's time to catch up first. */
		bool self_late = now - woke > 4 * LOOPWATCH_BEAT_MS;
		woke = now;
		if (!self_late && now - last >= LOOPWATCH_STALL_MS && last != reported) {
			char doing[256];
			bool io;
			reported = last;
			describe(w->loop_tid, doing, sizeof doing, &io);
			agent_log(
			    "the event loop has not run for %.1f s; its thread is %s. This member "
			    "answers nothing and sends raft nothing until it runs again%s%s",
			    (double)(now - last) / 1000, doing,
			    io ? ": check the disk and file system of " : "",
			    io ? w->a->data_dir : "");
		}
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

int loopwatch_start(struct agent *a)
{
	struct loopwatch *w = calloc(1, sizeof *w);
	if (w == NULL) {
		return -ENOMEM;
	}
	w->a = a;
	w->loop_tid = gettid();
	atomic_store(&w->last_ms, mono_ms());
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&w->mu, NULL);
	int e = pthread_create(&w->thread, NULL, watch, w);
	if (e != 0) {
		pthread_cond_destroy(&w->cv);
		pthread_mutex_destroy(&w->mu);
		free(w);
		return -e;
	}
	uv_timer_init(a->loop, &w->beat);
	w->beat.data = w;
	uv_timer_start(&w->beat, on_beat, LOOPWATCH_BEAT_MS, LOOPWATCH_BEAT_MS);
	a->loopwatch = w;
	return 0;
}

static void beat_closed(uv_handle_t *h)
{
	struct loopwatch *w = h->data;
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
}

void loopwatch_stop(struct agent *a)
{
	struct loopwatch *w = a->loopwatch;
	if (w == NULL) {
		return;
	}
	a->loopwatch = NULL;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	uv_close((uv_handle_t *)&w->beat, beat_closed);
}
