/*
 * Shell helpers for the kernel tests (shell.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "agent/tests/shell.h"

#define CMD_MAX 4096

static void format(char cmd[CMD_MAX], const char *fmt, va_list ap)
{
	int n = vsnprintf(cmd, CMD_MAX, fmt, ap);
	assert_true(n >= 0 && n < CMD_MAX);
}

int test_sh(const char *fmt, ...)
{
	char cmd[CMD_MAX];
	va_list ap;
	va_start(ap, fmt);
	format(cmd, fmt, ap);
	va_end(ap);
	int rv = system(cmd);
	rv = rv != -1 && WIFEXITED(rv) ? WEXITSTATUS(rv) : -1;
	if (rv != 0) {
		fprintf(stderr, "command failed (%d): %s\n", rv, cmd);
	}
	return rv;
}

static char *output(const char *cmd)
{
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t cap = 4096, n = 0, r;
	char *buf = malloc(cap);
	assert_non_null(buf);
	while ((r = fread(buf + n, 1, cap - n - 1, p)) > 0) {
		n += r;
		if (cap - n < 2) {
			cap *= 2;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
	}
	buf[n] = '\0';
	pclose(p);
	return buf;
}

char *test_out(const char *fmt, ...)
{
	char cmd[CMD_MAX];
	va_list ap;
	va_start(ap, fmt);
	format(cmd, fmt, ap);
	va_end(ap);
	return output(cmd);
}

char *test_out_all(const char *fmt, ...)
{
	char cmd[CMD_MAX + 8];
	va_list ap;
	va_start(ap, fmt);
	format(cmd, fmt, ap);
	va_end(ap);
	strcat(cmd, " 2>&1");
	return output(cmd);
}
