/* tabby store get | put | del | watch: raw key-value access for operators and benchmarks. */
#include "ctl/ctl.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* Append "name=value" to a query string being built in q (size bytes), starting it with '?'. */
static void query_add(char *q, size_t size, const char *name, const char *value)
{
	size_t len = strlen(q);

	snprintf(q + len, size - len, "%c%s=%s", len == 0 ? '?' : '&', name, value);
}

static int run_get(struct ctl_ctx *ctx)
{
	int64_t limit = 0;
	char query[96] = "";
	char number[24];
	json_t *resp;
	json_t *kvs;
	json_t *out = NULL;
	json_t *kv;
	char *path;
	size_t i;
	int rv;

	if (ctl_flag_int(ctx, "limit", 1, &limit) != 0)
		return 2;
	bool linearizable = false;
	if (ctl_flag_consistency(ctx, &linearizable) != 0)
		return 2;
	if (ctl_flag(ctx, "prefix") != NULL)
		query_add(query, sizeof(query), "prefix", "1");
	if (limit > 0) {
		snprintf(number, sizeof(number), "%lld", (long long)limit);
		query_add(query, sizeof(query), "limit", number);
	}
	/* serializable is the agent's default: reads are served by the local replica. */
	if (linearizable)
		query_add(query, sizeof(query), "consistency", "linearizable");

	path = ctl_key_path("/v1/kv/", ctx->args[0], query);
	if (path == NULL)
		return ctl_fail(ctx, "out of memory");
	rv = ctl_call(ctx, "GET", path, NULL, &resp);
	free(path);
	if (rv != 0)
		return rv;
	kvs = json_object_get(resp, "kvs");
	if (!json_is_array(kvs)) {
		rv = ctl_fail(ctx, "unexpected answer from the agent: no kvs list");
		goto out;
	}

	if (ctx->json) {
		out = json_array();
		if (out == NULL) {
			rv = ctl_fail(ctx, "out of memory");
			goto out;
		}
		for (i = 0; i < json_array_size(kvs); i++) {
			kv = json_array_get(kvs, i);
			json_t *o =
			    json_pack("{s:O*, s:O*, s:O*, s:O*}", "key", json_object_get(kv, "key"),
			              "value", json_object_get(kv, "value"), "create_revision",
			              json_object_get(kv, "create_revision"), "mod_revision",
			              json_object_get(kv, "mod_revision"));
			if (o == NULL || json_array_append_new(out, o) != 0) {
				rv = ctl_fail(ctx, "out of memory");
				goto out;
			}
		}
		rv = ctl_print_json(ctx, out);
	} else {
		for (i = 0; i < json_array_size(kvs); i++) {
			kv = json_array_get(kvs, i);
			const char *key = json_string_value(json_object_get(kv, "key"));
			const char *value = json_string_value(json_object_get(kv, "value"));
			fprintf(ctx->out, "%s\n%s\n", key != NULL ? key : "",
			        value != NULL ? value : "");
		}
	}
	if (rv == 0 && json_is_true(json_object_get(resp, "more")))
		fprintf(ctx->err, "%s: more keys match; only the first %zu are shown\n", ctx->prog,
		        json_array_size(kvs));
out:
	json_decref(out);
	json_decref(resp);
	return rv;
}

/* Print the integer field name of resp (text mode) or resp itself (json mode). */
static int print_count(struct ctl_ctx *ctx, const json_t *resp, const char *name)
{
	const json_t *v = json_object_get(resp, name);

	if (ctx->json)
		return ctl_print_json(ctx, resp);
	if (!json_is_integer(v))
		return ctl_fail(ctx, "unexpected answer from the agent: no %s", name);
	fprintf(ctx->out, "%" JSON_INTEGER_FORMAT "\n", json_integer_value(v));
	return 0;
}

static int run_put(struct ctl_ctx *ctx)
{
	int64_t prev = -1;
	json_t *body;
	json_t *resp;
	char *path;
	int rv;

	if (ctl_flag_int(ctx, "prev-revision", 0, &prev) != 0)
		return 2;
	body = json_pack("{s:s}", "value", ctx->args[1]);
	if (body == NULL)
		return ctl_usage_error(ctx, "VALUE is not valid UTF-8");
	if (prev >= 0 && json_object_set_new(body, "prev_revision", json_integer(prev)) != 0) {
		json_decref(body);
		return ctl_fail(ctx, "out of memory");
	}
	path = ctl_key_path("/v1/kv/", ctx->args[0], "");
	if (path == NULL) {
		json_decref(body);
		return ctl_fail(ctx, "out of memory");
	}
	rv = ctl_call(ctx, "PUT", path, body, &resp);
	free(path);
	json_decref(body);
	if (rv != 0)
		return rv;
	rv = print_count(ctx, resp, "revision");
	json_decref(resp);
	return rv;
}

static int run_del(struct ctl_ctx *ctx)
{
	json_t *resp;
	char *path;
	int rv;

	path = ctl_key_path("/v1/kv/", ctx->args[0],
	                    ctl_flag(ctx, "prefix") != NULL ? "?prefix=1" : "");
	if (path == NULL)
		return ctl_fail(ctx, "out of memory");
	rv = ctl_call(ctx, "DELETE", path, NULL, &resp);
	free(path);
	if (rv != 0)
		return rv;
	rv = print_count(ctx, resp, "deleted");
	json_decref(resp);
	return rv;
}

struct watch {
	struct ctl_ctx *ctx;
	int result; /* exit status when the stream was stopped */
};

/* An error line ends the watch: the agent sends nothing after it. */
static int watch_error(struct watch *w, const json_t *error)
{
	const char *code = json_string_value(json_object_get(error, "code"));
	const char *message = json_string_value(json_object_get(error, "message"));
	const json_t *compact = json_object_get(error, "compact_revision");

	if (message == NULL)
		message = code != NULL ? code : "the agent ended the watch with an error";
	if (code != NULL && strcmp(code, "compacted") == 0) {
		char at[48] = "";
		if (json_is_integer(compact))
			snprintf(at, sizeof(at),
			         " (compacted at revision %" JSON_INTEGER_FORMAT ")",
			         json_integer_value(compact));
		w->result = ctl_fail(w->ctx,
		                     "the history needed for this watch was compacted: %s%s\n"
		                     "Read the keys again with 'tabby store get' and watch from "
		                     "a newer revision.",
		                     message, at);
	} else {
		w->result = ctl_fail(w->ctx, "%s", message);
	}
	return 1;
}

static int on_event(json_t *line, void *data)
{
	struct watch *w = data;
	struct ctl_ctx *ctx = w->ctx;
	const json_t *error = json_object_get(line, "error");
	const char *type;
	const char *key;
	const char *value;

	if (error != NULL)
		return watch_error(w, error);
	if (ctx->json) {
		if (json_dumpf(line, ctx->out, JSON_COMPACT) != 0)
			goto write_failed;
		fputc('\n', ctx->out);
	} else {
		type = json_string_value(json_object_get(line, "type"));
		key = json_string_value(json_object_get(line, "key"));
		value = json_string_value(json_object_get(line, "value"));
		for (const char *t = type != NULL ? type : "?"; *t != '\0'; t++)
			fputc(toupper((unsigned char)*t), ctx->out);
		fprintf(ctx->out, "\n%s\n", key != NULL ? key : "");
		if (type == NULL || strcmp(type, "delete") != 0)
			fprintf(ctx->out, "%s\n", value != NULL ? value : "");
	}
	/* Whoever reads a watch wants each event now, not when a buffer fills. */
	if (fflush(ctx->out) != 0 || ferror(ctx->out))
		goto write_failed;
	return 0;
write_failed:
	w->result = ctl_fail(ctx, "cannot write output");
	return 1;
}

static int run_watch(struct ctl_ctx *ctx)
{
	struct watch w = {.ctx = ctx, .result = 0};
	int64_t rev = -1;
	char query[64] = "";
	char number[24];
	json_t *resp = NULL;
	char *msg = NULL;
	char *path;
	int status = 0;
	int rv;

	if (ctl_flag_int(ctx, "rev", 1, &rev) != 0)
		return 2;
	if (ctl_flag(ctx, "prefix") != NULL)
		query_add(query, sizeof(query), "prefix", "1");
	if (rev >= 1) {
		snprintf(number, sizeof(number), "%lld", (long long)rev);
		query_add(query, sizeof(query), "rev", number);
	}
	path = ctl_key_path("/v1/watch/", ctx->args[0], query);
	if (path == NULL)
		return ctl_fail(ctx, "out of memory");
	if (ctl_client(ctx) != 0) {
		free(path);
		return 1;
	}
	rv = api_stream(ctx->client, "GET", path, NULL, &status, &resp, on_event, &w, &msg);
	free(path);
	if (rv == API_STOPPED) {
		free(msg);
		return w.result;
	}
	if (rv != API_OK || status / 100 != 2)
		rv = ctl_fail_api(ctx, rv, msg, status, resp);
	else
		rv = ctl_fail(ctx, "the agent ended the watch");
	json_decref(resp);
	return rv;
}

static const char *const key_arg[] = {"KEY", NULL};
static const char *const key_value_args[] = {"KEY", "VALUE", NULL};

static const struct ctl_flag get_flags[] = {
    {"prefix", 0, NULL, "get every key that starts with KEY"},
    {"limit", 0, "N", "return at most N keys"},
    {"consistency", 0, "LEVEL",
     "serializable (local replica, default) or linearizable (via the leader)"},
    {0},
};

static const struct ctl_command get_command = {
    .name = "get",
    .usage_args = "KEY",
    .summary = "read a key, or every key under a prefix",
    .description = "Print KEY and its value, one line each, or with --prefix every key that "
                   "starts with KEY.\nWith -o json: [{\"key\", \"value\", \"create_revision\", "
                   "\"mod_revision\"}].\nPut -- before a KEY that starts with '-'.",
    .flags = get_flags,
    .args = key_arg,
    .client = true,
    .run = run_get,
};

static const struct ctl_flag put_flags[] = {
    {"prev-revision", 0, "N", "write only if KEY's mod revision is N (fails, exit 1, otherwise)"},
    {0},
};

static const struct ctl_command put_command = {
    .name = "put",
    .usage_args = "KEY VALUE",
    .summary = "write a key",
    .description = "Set KEY to VALUE and print the revision of the write.\nPut -- before a "
                   "KEY or VALUE that starts with '-'.",
    .flags = put_flags,
    .args = key_value_args,
    .client = true,
    .run = run_put,
};

static const struct ctl_flag del_flags[] = {
    {"prefix", 0, NULL, "delete every key that starts with KEY"},
    {0},
};

static const struct ctl_command del_command = {
    .name = "del",
    .usage_args = "KEY",
    .summary = "delete a key, or every key under a prefix",
    .description = "Delete KEY, or with --prefix every key that starts with KEY, and print how "
                   "many keys were deleted.",
    .flags = del_flags,
    .args = key_arg,
    .client = true,
    .run = run_del,
};

static const struct ctl_flag watch_flags[] = {
    {"prefix", 0, NULL, "watch every key that starts with KEY"},
    {"rev", 0, "N", "start with the events of revision N onwards (default: future events)"},
    {0},
};

static const struct ctl_command watch_command = {
    .name = "watch",
    .usage_args = "KEY",
    .summary = "print changes to a key or prefix as they happen",
    .description = "Print each change to KEY (or with --prefix to any key under it) as it "
                   "happens: the event type\n(PUT or DELETE), the key and, for PUT, the value, "
                   "one line each; with -o json one\nevent object per line. Exits 1 if the "
                   "history for --rev has been compacted or the\nagent ends the watch.",
    .flags = watch_flags,
    .args = key_arg,
    .client = true,
    .run = run_watch,
};

static const struct ctl_command *const store_subcommands[] = {
    &get_command, &put_command, &del_command, &watch_command, NULL,
};

const struct ctl_command ctl_store_command = {
    .name = "store",
    .summary = "read, write and watch the replicated key-value store",
    .description = "Raw access to the replicated key-value store, for operators and benchmarks.",
    .subcommands = store_subcommands,
};
