#include "ctl/ctl.h"

#include <errno.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#ifndef TABBY_VERSION
#error "TABBY_VERSION must be defined by the build"
#endif

static const struct ctl_flag help_flag = {"help", 'h', NULL, "show this help"};
static const struct ctl_flag output_flag = {"output", 'o', "FORMAT",
                                            "output format: text (default) or json"};
static const struct ctl_flag socket_flag = {
    "socket", 0, "PATH",
    "the agent's unix socket (env TABBY_SOCKET, default " CTL_DEFAULT_SOCKET ")"};
static const struct ctl_flag address_flag = {
    "address", 0, "IP:PORT", "talk to an agent's TCP API address instead of the socket"};
static const struct ctl_flag timeout_flag = {
    "timeout", 0, "SECONDS", "give up on a request after this long (default 30, 0: never)"};

static int run_version(struct ctl_ctx *ctx)
{
	json_t *v;
	int rv;

	if (!ctx->json) {
		fprintf(ctx->out, "tabby %s\n", TABBY_VERSION);
		return 0;
	}
	v = json_pack("{s:s}", "version", TABBY_VERSION);
	if (v == NULL)
		return ctl_fail(ctx, "out of memory");
	rv = ctl_print_json(ctx, v);
	json_decref(v);
	return rv;
}

static const struct ctl_command version_command = {
    .name = "version",
    .summary = "print the version",
    .description = "Print the version of tabby.",
    .output = true,
    .run = run_version,
};

/* `tabby agent` is dispatched by main() before the CLI runs; this entry exists so that help lists
 * it and `tabby help agent` has something to say. */
static int run_agent(struct ctl_ctx *ctx)
{
	fprintf(ctx->err, "%s: the agent is started by the tabby binary's main()\n", ctx->prog);
	return 2;
}

static const struct ctl_command agent_command = {
    .name = "agent",
    .summary = "run the agent daemon",
    .description = "Run the agent daemon. 'tabby agent --help' lists its flags.",
    .run = run_agent,
};

static const struct ctl_command help_command = {
    .name = "help",
    .usage_args = "[COMMAND...]",
    .summary = "show help for a command",
};

static const struct ctl_command *const top_subcommands[] = {
    &agent_command,
    &ctl_cluster_command,
    &ctl_store_command,
    &ctl_pool_command,
    &ctl_ipam_command,
    &ctl_create_command,
    &ctl_apply_command,
    &ctl_replace_command,
    &ctl_delete_command,
    &ctl_get_command,
    &ctl_profile_command,
    &ctl_selector_command,
    &ctl_policy_command,
    &ctl_backup_command,
    &version_command,
    &help_command,
    NULL,
};

static const struct ctl_command top_command = {
    .name = "tabby",
    .summary = "Tabby: container networking with an embedded, raft-replicated store.",
    .subcommands = top_subcommands,
};

int ctl_fail(const struct ctl_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	fprintf(ctx->err, "%s: ", ctx->prog);
	va_start(ap, fmt);
	vfprintf(ctx->err, fmt, ap);
	va_end(ap);
	fputc('\n', ctx->err);
	return 1;
}

/* ---- usage ---- */

/* How cmd's flag f may be left out of its value; NULL when it may not. */
static const struct ctl_optional_value *optional_value(const struct ctl_command *cmd,
                                                       const struct ctl_flag *f)
{
	for (const struct ctl_optional_value *o = cmd->optional_values;
	     o != NULL && o->flag != NULL; o++)
		if (strcmp(o->flag, f->name) == 0)
			return o;
	return NULL;
}

static void flag_left(char *buf, size_t size, const struct ctl_command *cmd,
                      const struct ctl_flag *f)
{
	char value[64] = "";

	if (f->value_name != NULL)
		snprintf(value, sizeof(value), optional_value(cmd, f) != NULL ? "[=%s]" : " %s",
		         f->value_name);
	if (f->short_name != 0)
		snprintf(buf, size, "  -%c, --%s%s", f->short_name, f->name, value);
	else
		snprintf(buf, size, "      --%s%s", f->name, value);
}

/* Collect the flags cmd accepts: its own, then the common ones. Returns how many. */
static int command_flags(const struct ctl_command *cmd, const struct ctl_flag **out)
{
	int n = 0;

	for (const struct ctl_flag *f = cmd->flags; f != NULL && f->name != NULL; f++)
		if (n < CTL_MAX_FLAGS - 5)
			out[n++] = f;
	if (cmd->client || cmd->output)
		out[n++] = &output_flag;
	if (cmd->client) {
		out[n++] = &socket_flag;
		out[n++] = &address_flag;
		out[n++] = &timeout_flag;
	}
	out[n++] = &help_flag;
	return n;
}

void ctl_usage(FILE *f, const char *prog, const struct ctl_command *cmd)
{
	const struct ctl_flag *flags[CTL_MAX_FLAGS];
	char left[96];
	size_t width = 0;
	int n;

	if (cmd->subcommands != NULL) {
		fprintf(f, "Usage: %s COMMAND [flags]\n\n%s\n\nCommands:\n", prog,
		        cmd->description != NULL ? cmd->description : cmd->summary);
		for (const struct ctl_command *const *s = cmd->subcommands; *s != NULL; s++)
			if (strlen((*s)->name) > width)
				width = strlen((*s)->name);
		for (const struct ctl_command *const *s = cmd->subcommands; *s != NULL; s++)
			fprintf(f, "  %-*s  %s\n", (int)width, (*s)->name, (*s)->summary);
		fprintf(f, "\nRun '%s COMMAND --help' for a command's arguments and flags.\n",
		        prog);
		return;
	}

	fprintf(f, "Usage: %s%s%s [flags]\n\n%s\n", prog,
	        cmd->usage_args != NULL && cmd->usage_args[0] != '\0' ? " " : "",
	        cmd->usage_args != NULL ? cmd->usage_args : "",
	        cmd->description != NULL ? cmd->description : cmd->summary);
	n = command_flags(cmd, flags);
	for (int i = 0; i < n; i++) {
		flag_left(left, sizeof(left), cmd, flags[i]);
		if (strlen(left) > width)
			width = strlen(left);
	}
	fprintf(f, "\nFlags:\n");
	for (int i = 0; i < n; i++) {
		flag_left(left, sizeof(left), cmd, flags[i]);
		fprintf(f, "%-*s  ", (int)width, left);
		if (flags[i] == &output_flag && cmd->formats != NULL) {
			fprintf(f, "output format:");
			for (const char *const *o = cmd->formats; *o != NULL; o++)
				fprintf(f, "%s %s%s", o == cmd->formats ? "" : ",", *o,
				        o == cmd->formats ? " (default)" : "");
			fputc('\n', f);
		} else {
			fprintf(f, "%s\n", flags[i]->help);
		}
	}
}

/* ---- flag parsing ---- */

const char *ctl_flag(const struct ctl_ctx *ctx, const char *name)
{
	for (int i = 0; i < ctx->nflags; i++)
		if (strcmp(ctx->flags[i]->name, name) == 0)
			return ctx->values[i];
	return NULL;
}

const char *ctl_flag_nth(const struct ctl_ctx *ctx, const char *name, int n)
{
	for (int i = 0; i < ctx->nrepeats; i++)
		if (strcmp(ctx->flags[ctx->repeat_flag[i]]->name, name) == 0 && n-- == 0)
			return ctx->repeats[i];
	return NULL;
}

static bool is_repeatable(const struct ctl_command *cmd, const char *name)
{
	for (const char *const *r = cmd->repeatable; r != NULL && *r != NULL; r++)
		if (strcmp(*r, name) == 0)
			return true;
	return false;
}

int ctl_usage_error(const struct ctl_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	fprintf(ctx->err, "%s: ", ctx->prog);
	va_start(ap, fmt);
	vfprintf(ctx->err, fmt, ap);
	va_end(ap);
	fprintf(ctx->err, "\nRun '%s --help' for usage.\n", ctx->prog);
	return 2;
}

int ctl_flag_consistency(const struct ctl_ctx *ctx, bool *linearizable)
{
	const char *c = ctl_flag(ctx, "consistency");
	if (c == NULL) {
		return 0;
	}
	if (strcmp(c, "linearizable") != 0 && strcmp(c, "serializable") != 0) {
		return ctl_usage_error(
		    ctx, "invalid value '%s' for --consistency (want serializable or linearizable)",
		    c);
	}
	*linearizable = c[0] == 'l';
	return 0;
}

int ctl_read_file(struct ctl_ctx *ctx, const char *path, size_t max, char **text, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	size_t size = 0;
	size_t used = 0;
	char *buf = NULL;

	*text = NULL;
	if (f == NULL)
		return ctl_fail(ctx, "cannot open %s: %s", path, strerror(errno));
	for (;;) {
		size_t got;

		if (used + 1 >= size) {
			char *bigger;

			if (size >= max) {
				ctl_fail(ctx, "%s is larger than %zu MiB", path, max >> 20);
				goto err;
			}
			size = size == 0 ? 65536 : size * 2;
			bigger = realloc(buf, size + 1);
			if (bigger == NULL) {
				ctl_fail(ctx, "out of memory");
				goto err;
			}
			buf = bigger;
		}
		got = fread(buf + used, 1, size - used, f);
		used += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		ctl_fail(ctx, "cannot read %s: %s", path, strerror(errno));
		goto err;
	}
	buf[used] = '\0';
	if (f != stdin)
		fclose(f);
	*text = buf;
	*len = used;
	return 0;
err:
	if (f != stdin)
		fclose(f);
	free(buf);
	return 1;
}

int ctl_flag_int(const struct ctl_ctx *ctx, const char *name, int64_t min, int64_t *out)
{
	const char *v = ctl_flag(ctx, name);
	char *end;
	long long n;

	if (v == NULL)
		return 0;
	errno = 0;
	n = strtoll(v, &end, 10);
	/* strtoll alone would also take leading blanks and a '+'. */
	if ((v[0] != '-' && (v[0] < '0' || v[0] > '9')) || *end != '\0' || errno != 0 || n < min) {
		return ctl_usage_error(ctx, "invalid value '%s' for --%s (want an integer >= %lld)",
		                       v, name, (long long)min);
	}
	*out = n;
	return 0;
}

static int find_long(const struct ctl_ctx *ctx, const char *name, size_t len)
{
	for (int i = 0; i < ctx->nflags; i++)
		if (strlen(ctx->flags[i]->name) == len &&
		    strncmp(ctx->flags[i]->name, name, len) == 0)
			return i;
	return -1;
}

static int find_short(const struct ctl_ctx *ctx, char c)
{
	for (int i = 0; i < ctx->nflags; i++)
		if (ctx->flags[i]->short_name == c)
			return i;
	return -1;
}

/* Checks that need the whole command line: values of the common flags and the argument count.
 * nargs and nrepeats count every positional argument and repeated flag value seen, including
 * those that did not fit in ctx. */
static int check_parsed(struct ctl_ctx *ctx, int nargs, int nrepeats)
{
	const char *output = ctl_flag(ctx, "output");
	int64_t timeout = CTL_DEFAULT_TIMEOUT_S;
	int nrequired = 0;

	if (ctx->cmd->formats != NULL) {
		/* A command with its own list of formats: the first is the default. */
		bool known = false;
		char want[128] = "";

		for (const char *const *f = ctx->cmd->formats; *f != NULL; f++) {
			if (output != NULL && strcmp(output, *f) == 0)
				known = true;
			snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s%s",
			         want[0] != '\0' ? (f[1] != NULL ? ", " : " or ") : "", *f);
		}
		if (output != NULL && !known)
			return ctl_usage_error(ctx, "invalid value '%s' for -o (want %s)", output,
			                       want);
		ctx->format = output != NULL ? output : ctx->cmd->formats[0];
		ctx->json = strcmp(ctx->format, "json") == 0;
	} else if (output != NULL) {
		if (strcmp(output, "json") == 0)
			ctx->json = true;
		else if (strcmp(output, "text") != 0)
			return ctl_usage_error(ctx, "invalid value '%s' for -o (want text or json)",
			                       output);
	}
	if (ctx->format == NULL)
		ctx->format = ctx->json ? "json" : "text";
	if (ctx->cmd->client) {
		const char *socket = ctl_flag(ctx, "socket");
		const char *address = ctl_flag(ctx, "address");
		if (socket != NULL && address != NULL)
			return ctl_usage_error(ctx, "use --socket or --address, not both");
		if (socket != NULL && socket[0] == '\0')
			return ctl_usage_error(ctx, "empty value for --socket");
		if (address != NULL && address[0] == '\0')
			return ctl_usage_error(ctx, "empty value for --address");
		if (ctl_flag_int(ctx, "timeout", 0, &timeout) != 0)
			return 2;
		if (timeout > INT32_MAX / 1000)
			return ctl_usage_error(ctx, "--timeout %s is too long",
			                       ctl_flag(ctx, "timeout"));
		ctx->timeout_ms = (int)(timeout * 1000);
	}

	for (const char *const *a = ctx->cmd->args; a != NULL && *a != NULL; a++)
		nrequired++;
	if (ctx->nargs < nrequired)
		return ctl_usage_error(ctx, "missing %s", ctx->cmd->args[ctx->nargs]);
	if (ctx->cmd->more_args) {
		if (nargs > CTL_MAX_ARGS)
			return ctl_usage_error(ctx, "too many arguments (at most %d)",
			                       CTL_MAX_ARGS);
	} else if (ctx->nargs > nrequired) {
		return ctl_usage_error(ctx, "unexpected argument '%s'", ctx->args[nrequired]);
	}
	if (nrepeats > CTL_MAX_REPEATS)
		return ctl_usage_error(ctx, "too many repeated flags (at most %d values)",
		                       CTL_MAX_REPEATS);
	return 0;
}

int ctl_parse(struct ctl_ctx *ctx, int argc, char **argv)
{
	bool flags_done = false;
	int nargs = 0;
	int nrepeats = 0;

	ctx->nflags = command_flags(ctx->cmd, ctx->flags);
	for (int i = 0; i < ctx->nflags; i++)
		ctx->values[i] = NULL;
	ctx->nargs = 0;
	ctx->nrepeats = 0;

	for (int i = 0; i < argc; i++) {
		char *a = argv[i];
		const char *value = NULL;
		const struct ctl_flag *f;
		const struct ctl_optional_value *optional;
		int idx;

		if (flags_done || a[0] != '-' || a[1] == '\0') {
			/* Keep parsing after too many arguments so that a later --help still wins;
			 * check_parsed() reports the first extra one. */
			if (ctx->nargs < CTL_MAX_ARGS)
				ctx->args[ctx->nargs++] = a;
			nargs++;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			flags_done = true;
			continue;
		}
		if (a[1] == '-') {
			const char *name = a + 2;
			const char *eq = strchr(name, '=');
			size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);

			idx = find_long(ctx, name, len);
			if (idx < 0 && ctx->cmd->dash_args) {
				if (ctx->nargs < CTL_MAX_ARGS)
					ctx->args[ctx->nargs++] = a;
				nargs++;
				continue;
			}
			if (idx < 0)
				return ctl_usage_error(ctx, "unknown flag '--%.*s'", (int)len,
				                       name);
			f = ctx->flags[idx];
			if (eq != NULL) {
				if (f->value_name == NULL)
					return ctl_usage_error(ctx, "flag '--%s' takes no value",
					                       f->name);
				value = eq + 1;
			}
		} else {
			idx = find_short(ctx, a[1]);
			if (ctx->cmd->dash_args &&
			    (idx < 0 || (ctx->flags[idx]->value_name == NULL && a[2] != '\0'))) {
				if (ctx->nargs < CTL_MAX_ARGS)
					ctx->args[ctx->nargs++] = a;
				nargs++;
				continue;
			}
			if (idx < 0 || (ctx->flags[idx]->value_name == NULL && a[2] != '\0'))
				return ctl_usage_error(ctx, "unknown flag '%s'", a);
			f = ctx->flags[idx];
			if (a[2] != '\0')
				value = a + 2;
		}
		optional = f->value_name != NULL ? optional_value(ctx->cmd, f) : NULL;
		if (value == NULL && optional != NULL) {
			if (i + 1 < argc && optional->is_value(argv[i + 1]))
				value = argv[++i];
			else
				value = optional->implicit;
		} else if (f->value_name != NULL && value == NULL) {
			if (i + 1 >= argc)
				return ctl_usage_error(ctx, "flag '%s' needs a value (%s)", a,
				                       f->value_name);
			value = argv[++i];
		}
		ctx->values[idx] = f->value_name != NULL ? value : "";
		if (is_repeatable(ctx->cmd, f->name)) {
			if (ctx->nrepeats < CTL_MAX_REPEATS) {
				ctx->repeats[ctx->nrepeats] = ctx->values[idx];
				ctx->repeat_flag[ctx->nrepeats++] = idx;
			}
			nrepeats++;
		}
		if (f == &help_flag) {
			ctl_usage(ctx->out, ctx->prog, ctx->cmd);
			ctx->help = true;
			return 0;
		}
	}
	return check_parsed(ctx, nargs, nrepeats);
}

/* ---- talking to the agent ---- */

int ctl_client(struct ctl_ctx *ctx)
{
	const char *address = ctl_flag(ctx, "address");
	char *owned = NULL;
	char *msg = NULL;
	int rv;

	if (ctx->client != NULL)
		return 0;
	if (address == NULL) {
		address = ctl_flag(ctx, "socket");
		if (address == NULL)
			address = getenv("TABBY_SOCKET");
		if (address == NULL || address[0] == '\0')
			address = CTL_DEFAULT_SOCKET;
		/* The client takes a bare "host:port" as TCP; say explicitly that this is a path.
		 */
		if (strchr(address, '/') == NULL) {
			if (asprintf(&owned, "unix:%s", address) < 0)
				return ctl_fail(ctx, "out of memory");
			address = owned;
		}
	}
	rv = api_client_open(address, ctx->timeout_ms, &ctx->client, &msg);
	free(owned);
	if (rv != API_OK) {
		ctx->client = NULL;
		return ctl_fail_api(ctx, rv, msg, 0, NULL);
	}
	return 0;
}

int ctl_get_resource(struct ctl_ctx *ctx, const char *path, json_t **resource)
{
	json_t *resp = NULL;
	json_t *r;
	int status;
	int rv = ctl_request(ctx, "GET", path, NULL, &status, &resp);

	*resource = NULL;
	if (rv != 0)
		return rv;
	r = json_object_get(resp, "resource");
	if (status / 100 != 2 && status != 404)
		rv = ctl_fail_api(ctx, API_OK, NULL, status, resp);
	else if (status != 404 && !json_is_object(r))
		rv = ctl_fail(ctx, "unexpected answer from the agent: no resource");
	else if (status != 404)
		*resource = json_incref(r);
	json_decref(resp);
	return rv;
}

bool ctl_error_is(const json_t *resp, const char *code)
{
	const char *have = api_error_code(resp);

	return have != NULL && strcmp(have, code) == 0;
}

int ctl_fail_api(struct ctl_ctx *ctx, int rv, char *msg, int status, const json_t *response)
{
	const char *m;

	if (rv != API_OK) {
		ctl_fail(ctx, "%s%s", msg != NULL ? msg : api_strerror(rv),
		         rv == API_ECONNECT ? " (is the agent running? see --socket and --address)"
		                            : "");
		free(msg);
		return 1;
	}
	free(msg);
	m = api_error_message(response);
	if (m != NULL)
		return ctl_fail(ctx, "%s", m);
	return ctl_fail(ctx, "the agent answered with HTTP status %d", status);
}

int ctl_call(struct ctl_ctx *ctx, const char *method, const char *path, json_t *body,
             json_t **response)
{
	json_t *resp = NULL;
	char *msg = NULL;
	int status = 0;
	int rv;

	*response = NULL;
	if (ctl_client(ctx) != 0)
		return 1;
	rv = api_request(ctx->client, method, path, body, &status, &resp, &msg);
	if (rv != API_OK || status / 100 != 2) {
		ctl_fail_api(ctx, rv, msg, status, resp);
		json_decref(resp);
		return 1;
	}
	*response = resp;
	return 0;
}

int ctl_request(struct ctl_ctx *ctx, const char *method, const char *path, json_t *body,
                int *status, json_t **response)
{
	char *msg = NULL;
	int rv;

	*response = NULL;
	*status = 0;
	if (ctl_client(ctx) != 0)
		return 1;
	rv = api_request(ctx->client, method, path, body, status, response, &msg);
	if (rv != API_OK)
		return ctl_fail_api(ctx, rv, msg, 0, NULL);
	free(msg);
	return 0;
}

void ctl_put_columns(FILE *f, const ctl_cell *cells, int ncols, size_t nrows)
{
	size_t width[CTL_MAX_COLUMNS] = {0};

	for (size_t r = 0; r < nrows; r++)
		for (int c = 0; c < ncols && c < CTL_MAX_COLUMNS; c++)
			if (strlen(cells[r * ncols + c]) > width[c])
				width[c] = strlen(cells[r * ncols + c]);
	for (size_t r = 0; r < nrows; r++)
		for (int c = 0; c < ncols && c < CTL_MAX_COLUMNS; c++)
			if (c + 1 < ncols)
				fprintf(f, "%-*s  ", (int)width[c], cells[r * ncols + c]);
			else
				fprintf(f, "%s\n", cells[r * ncols + c]);
}

int ctl_print_json(struct ctl_ctx *ctx, const json_t *v)
{
	if (json_dumpf(v, ctx->out, JSON_INDENT(2) | JSON_ENCODE_ANY) != 0 ||
	    fputc('\n', ctx->out) == EOF)
		return ctl_fail(ctx, "cannot write output");
	return 0;
}

char *ctl_key_path(const char *base, const char *key, const char *query)
{
	char *escaped = api_path_escape(key);
	char *path = NULL;

	if (escaped == NULL)
		return NULL;
	if (asprintf(&path, "%s%s%s", base, escaped, query) < 0)
		path = NULL;
	free(escaped);
	return path;
}

/* ---- dispatch ---- */

static bool is_help(const char *word)
{
	return strcmp(word, "-h") == 0 || strcmp(word, "--help") == 0;
}

static const struct ctl_command *find_subcommand(const struct ctl_command *group, const char *name)
{
	for (const struct ctl_command *const *s = group->subcommands; *s != NULL; s++)
		if (strcmp((*s)->name, name) == 0)
			return *s;
	return NULL;
}

static void append_prog(char *prog, size_t size, const char *name)
{
	size_t len = strlen(prog);

	snprintf(prog + len, size - len, " %s", name);
}

/* `tabby help [COMMAND...]`: usage of the named command on out. */
static int run_help(struct ctl_ctx *ctx, int argc, char **argv)
{
	const struct ctl_command *cmd = &top_command;
	char prog[sizeof(ctx->prog)] = "tabby";

	for (int i = 0; i < argc; i++) {
		const struct ctl_command *sub =
		    cmd->subcommands != NULL ? find_subcommand(cmd, argv[i]) : NULL;
		if (sub == NULL || sub == &help_command) {
			fprintf(ctx->err, "%s: unknown command '%s'\n", prog, argv[i]);
			return 2;
		}
		cmd = sub;
		append_prog(prog, sizeof(prog), cmd->name);
	}
	ctl_usage(ctx->out, prog, cmd);
	return 0;
}

int ctl_run(int argc, char **argv, FILE *out, FILE *err)
{
	struct ctl_ctx ctx = {.out = out, .err = err, .prog = "tabby"};
	const struct ctl_command *cmd = &top_command;
	int i = 1;
	int rv;

	while (cmd->subcommands != NULL) {
		const struct ctl_command *sub;

		if (i >= argc) {
			fprintf(err, "%s: missing command\n\n", ctx.prog);
			ctl_usage(err, ctx.prog, cmd);
			return 2;
		}
		if (is_help(argv[i])) {
			ctl_usage(out, ctx.prog, cmd);
			return 0;
		}
		if (argv[i][0] == '-') {
			fprintf(err, "%s: unknown flag '%s'\nRun '%s --help' for usage.\n",
			        ctx.prog, argv[i], ctx.prog);
			return 2;
		}
		sub = find_subcommand(cmd, argv[i]);
		if (sub == NULL) {
			fprintf(err, "%s: unknown command '%s'\nRun '%s --help' for the list.\n",
			        ctx.prog, argv[i], ctx.prog);
			return 2;
		}
		if (sub == &help_command)
			return run_help(&ctx, argc - i - 1, argv + i + 1);
		cmd = sub;
		append_prog(ctx.prog, sizeof(ctx.prog), cmd->name);
		i++;
	}

	ctx.cmd = cmd;
	rv = ctl_parse(&ctx, argc - i, argv + i);
	if (rv != 0 || ctx.help)
		return rv;
	rv = cmd->run(&ctx);
	api_client_close(ctx.client);
	if (fflush(out) != 0 && rv == 0)
		rv = ctl_fail(&ctx, "cannot write output");
	return rv;
}

int ctl_main(int argc, char **argv)
{
	return ctl_run(argc, argv, stdout, stderr);
}

int ctl_parse_addr(const struct ctl_ctx *ctx, const char *s, struct ipam_addr *a)
{
	if (ipam_addr_parse(s, a))
		return 0;
	ctl_fail(ctx, "'%s' is not an IP address", s);
	return 2;
}
