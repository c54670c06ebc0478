/* Helpers of the CLI's unit tests: run `tabby ...` with captured output, check what it said. */
#ifndef TABBY_CTL_TEST_H
#define TABBY_CTL_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"

struct run {
	int status;
	char *out;
	char *err;
};

/* Run `tabby ARGS...` (NULL-terminated) with captured output. */
static inline struct run run_args(const char *first, ...)
{
	char *argv[32];
	int argc = 0;
	size_t out_len;
	size_t err_len;
	FILE *out;
	FILE *err;
	struct run r;
	va_list ap;

	argv[argc++] = strdup("tabby");
	va_start(ap, first);
	for (const char *a = first; a != NULL; a = va_arg(ap, const char *)) {
		assert_true(argc < 31);
		argv[argc++] = strdup(a);
	}
	va_end(ap);
	argv[argc] = NULL;

	out = open_memstream(&r.out, &out_len);
	err = open_memstream(&r.err, &err_len);
	assert_non_null(out);
	assert_non_null(err);
	r.status = ctl_run(argc, argv, out, err);
	fclose(out);
	fclose(err);
	for (int i = 0; i < argc; i++)
		free(argv[i]);
	return r;
}

#define RUN(...) run_args(__VA_ARGS__, NULL)

static inline void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

static inline void assert_contains(const char *haystack, const char *needle)
{
	if (strstr(haystack, needle) == NULL)
		fail_msg("expected \"%s\" in:\n%s", needle, haystack);
}

/* Expect a command-line error: status 2, nothing on stdout, message on stderr. */
static inline void expect_usage_error(struct run r, const char *message)
{
	assert_int_equal(r.status, 2);
	assert_string_equal(r.out, "");
	assert_contains(r.err, message);
	run_free(&r);
}

static inline void expect_help(struct run r, const char *usage_line, const char *const *flags)
{
	assert_int_equal(r.status, 0);
	assert_string_equal(r.err, "");
	if (strncmp(r.out, usage_line, strlen(usage_line)) != 0)
		fail_msg("expected usage \"%s\", got:\n%s", usage_line, r.out);
	for (const char *const *f = flags; f != NULL && *f != NULL; f++)
		assert_contains(r.out, *f);
	run_free(&r);
}

static inline const struct ctl_command *find(const struct ctl_command *group, const char *name)
{
	for (const struct ctl_command *const *s = group->subcommands; *s != NULL; s++)
		if (strcmp((*s)->name, name) == 0)
			return *s;
	fail_msg("no command %s", name);
	return NULL;
}

static inline void parse(struct ctl_ctx *ctx, const struct ctl_command *cmd, int argc, char **argv,
                         int expect)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->out = stdout;
	ctx->err = stderr;
	ctx->cmd = cmd;
	snprintf(ctx->prog, sizeof(ctx->prog), "tabby test %s", cmd->name);
	assert_int_equal(ctl_parse(ctx, argc, argv), expect);
}

#endif
