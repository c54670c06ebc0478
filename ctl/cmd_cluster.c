/* tabby cluster status | hash | remove */
#include "ctl/ctl.h"

#include <stdlib.h>
#include <string.h>

/* One column of a text table: the header and the member field it shows. */
struct column {
	const char *header;
	const char *key;
};

/* Format a member's field for a table cell: strings as they are, numbers in decimal, booleans as
 * yes/no, anything absent as "-". A member whose hash failed shows its error in the hash column. */
static void format_cell(char *buf, size_t size, const json_t *member, const char *key)
{
	const json_t *v = json_object_get(member, key);
	const char *error = json_string_value(json_object_get(member, "error"));

	if (strcmp(key, "hash") == 0 && error != NULL)
		snprintf(buf, size, "error: %s", error);
	else if (json_is_string(v))
		snprintf(buf, size, "%s", json_string_value(v));
	else if (json_is_integer(v))
		snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else if (json_is_boolean(v))
		snprintf(buf, size, "%s", json_is_true(v) ? "yes" : "no");
	else
		snprintf(buf, size, "-");
}

static void print_table(FILE *f, const struct column *cols, int ncols, const json_t *members)
{
	size_t rows = json_array_size(members) + 1;
	ctl_cell *cells = calloc(rows * (size_t)ncols, sizeof *cells);

	if (cells == NULL) {
		fprintf(f, "(out of memory)\n");
		return;
	}
	for (int c = 0; c < ncols; c++)
		snprintf(cells[c], CTL_CELL_MAX, "%s", cols[c].header);
	for (size_t i = 1; i < rows; i++)
		for (int c = 0; c < ncols; c++)
			format_cell(cells[i * ncols + c], CTL_CELL_MAX,
			            json_array_get(members, i - 1), cols[c].key);
	ctl_put_columns(f, cells, ncols, rows);
	free(cells);
}

/* src's field key, or null when src lacks it, so that the JSON output always has the documented
 * shape. Borrowed: json_pack's "O" takes its own reference. */
static json_t *field(const json_t *src, const char *key)
{
	json_t *v = json_object_get(src, key);

	return v != NULL ? v : json_null();
}

static int run_status(struct ctl_ctx *ctx)
{
	static const struct column cols[] = {
	    {"NAME", "name"},
	    {"ROLE", "role"},
	    {"PEER", "peer_address"},
	    {"API", "api_address"},
	    {"APPLIED", "applied_revision"},
	    {"HEALTHY", "healthy"},
	};
	json_t *resp;
	json_t *members;
	json_t *out = NULL;
	json_t *list;
	json_t *m;
	char buf[512];
	size_t i;
	int rv;

	rv = ctl_call(ctx, "GET", "/v1/cluster", NULL, &resp);
	if (rv != 0)
		return rv;
	members = json_object_get(resp, "members");
	if (!json_is_array(members)) {
		rv = ctl_fail(ctx, "unexpected answer from the agent: no member list");
		goto out;
	}

	if (!ctx->json) {
		format_cell(buf, sizeof(buf), resp, "name");
		fprintf(ctx->out, "member:   %s\n", buf);
		format_cell(buf, sizeof(buf), resp, "cluster");
		fprintf(ctx->out, "cluster:  %s\n",
		        json_is_string(json_object_get(resp, "cluster")) ? buf
		                                                         : "none (data from before "
		                                                           "cluster ids)");
		format_cell(buf, sizeof(buf), resp, "leader");
		fprintf(ctx->out, "leader:   %s\n",
		        json_is_string(json_object_get(resp, "leader")) ? buf : "none");
		format_cell(buf, sizeof(buf), resp, "revision");
		fprintf(ctx->out, "revision: %s\n\n", buf);
		print_table(ctx->out, cols, (int)(sizeof(cols) / sizeof(cols[0])), members);
		/* Why a member is not healthy, one line each under the table. */
		bool first = true;
		for (i = 0; i < json_array_size(members); i++) {
			m = json_array_get(members, i);
			if (json_is_string(json_object_get(m, "error"))) {
				fprintf(ctx->out, "%s%s: %s\n", first ? "\n" : "",
				        json_string_value(json_object_get(m, "name")),
				        json_string_value(json_object_get(m, "error")));
				first = false;
			}
		}
		goto out;
	}

	out = json_pack("{s:O, s:O, s:O, s:[]}", "cluster", field(resp, "cluster"), "leader",
	                field(resp, "leader"), "revision", field(resp, "revision"), "members");
	if (out == NULL) {
		rv = ctl_fail(ctx, "out of memory");
		goto out;
	}
	list = json_object_get(out, "members");
	for (i = 0; i < json_array_size(members); i++) {
		m = json_array_get(members, i);
		json_t *o =
		    json_pack("{s:O, s:O, s:O, s:O, s:O, s:O}", "name", field(m, "name"), "role",
		              field(m, "role"), "peer_address", field(m, "peer_address"),
		              "api_address", field(m, "api_address"), "applied_revision",
		              field(m, "applied_revision"), "healthy", field(m, "healthy"));
		if (o != NULL && json_object_get(m, "error") != NULL) {
			json_object_set(o, "error", json_object_get(m, "error"));
		}
		if (o == NULL || json_array_append_new(list, o) != 0) {
			rv = ctl_fail(ctx, "out of memory");
			goto out;
		}
	}
	rv = ctl_print_json(ctx, out);
out:
	json_decref(out);
	json_decref(resp);
	return rv;
}

static int run_hash(struct ctl_ctx *ctx)
{
	static const struct column cols[] = {{"NAME", "name"}, {"HASH", "hash"}};
	const char *first = NULL;
	bool differ = false;
	int failed = 0;
	json_t *resp;
	json_t *members;
	json_t *out = NULL;
	json_t *list;
	json_t *m;
	char rev[32];
	size_t i;
	int rv;

	rv = ctl_call(ctx, "POST", "/v1/cluster/hash", NULL, &resp);
	if (rv != 0)
		return rv;
	members = json_object_get(resp, "members");
	if (!json_is_array(members)) {
		rv = ctl_fail(ctx, "unexpected answer from the agent: no member list");
		goto out;
	}
	format_cell(rev, sizeof(rev), resp, "revision");

	if (ctx->json) {
		out = json_pack("{s:O, s:[]}", "revision", field(resp, "revision"), "members");
		if (out == NULL) {
			rv = ctl_fail(ctx, "out of memory");
			goto out;
		}
		list = json_object_get(out, "members");
		for (i = 0; i < json_array_size(members); i++) {
			m = json_array_get(members, i);
			json_t *error = json_object_get(m, "error");
			json_t *o = json_pack("{s:O, s:O}", "name", field(m, "name"), "hash",
			                      field(m, "hash"));
			if (o == NULL || json_array_append_new(list, o) != 0 ||
			    (error != NULL && json_object_set(o, "error", error) != 0)) {
				rv = ctl_fail(ctx, "out of memory");
				goto out;
			}
		}
		rv = ctl_print_json(ctx, out);
		if (rv != 0)
			goto out;
	} else {
		fprintf(ctx->out, "revision: %s\n\n", rev);
		print_table(ctx->out, cols, 2, members);
	}

	/* The table first, then what is wrong with it. */
	fflush(ctx->out);
	for (i = 0; i < json_array_size(members); i++) {
		const json_t *e = json_array_get(members, i);
		const char *name = json_string_value(json_object_get(e, "name"));
		const char *hash = json_string_value(json_object_get(e, "hash"));
		const char *error = json_string_value(json_object_get(e, "error"));

		if (name == NULL)
			name = "?";
		if (error != NULL || hash == NULL) {
			ctl_fail(ctx, "member %s: %s", name, error != NULL ? error : "no hash");
			failed++;
		} else if (first == NULL) {
			first = hash;
		} else if (strcmp(first, hash) != 0) {
			differ = true;
		}
	}
	if (json_array_size(members) == 0)
		rv = ctl_fail(ctx, "no member reported a hash");
	else if (differ)
		rv = ctl_fail(ctx, "the members' hashes differ at revision %s", rev);
	else if (failed > 0)
		rv = ctl_fail(ctx, "%d member(s) could not be compared", failed);
out:
	json_decref(out);
	json_decref(resp);
	return rv;
}

/* ctl_call() on a path made for it, which it frees; NULL: out of memory. */
static int call_path(struct ctl_ctx *ctx, const char *method, char *path, json_t **resp)
{
	if (path == NULL)
		return ctl_fail(ctx, "out of memory");
	int rv = ctl_call(ctx, method, path, NULL, resp);
	free(path);
	return rv;
}

static int run_remove(struct ctl_ctx *ctx)
{
	const char *name = ctx->args[0];
	const char *removed;
	json_t *resp;
	int rv;

	rv = call_path(ctx, "DELETE", ctl_key_path("/v1/cluster/members/", name, ""), &resp);
	if (rv != 0)
		return rv;
	if (ctx->json) {
		rv = ctl_print_json(ctx, resp);
	} else {
		removed = json_string_value(json_object_get(resp, "removed"));
		json_t *released = json_object_get(resp, "released");
		json_t *endpoints = json_object_get(resp, "endpoints");
		fprintf(ctx->out, "removed %s", removed != NULL ? removed : name);
		if (json_is_integer(released)) {
			fprintf(ctx->out, ": released %" JSON_INTEGER_FORMAT " address%s",
			        json_integer_value(released),
			        json_integer_value(released) == 1 ? "" : "es");
		}
		if (json_is_integer(endpoints)) {
			fprintf(ctx->out, ", deleted %" JSON_INTEGER_FORMAT " workload endpoint%s",
			        json_integer_value(endpoints),
			        json_integer_value(endpoints) == 1 ? "" : "s");
		}
		fputc('\n', ctx->out);
	}
	json_decref(resp);
	return rv;
}

static int run_move_leader(struct ctl_ctx *ctx)
{
	json_t *resp;
	int rv;

	if (ctx->nargs > 1)
		return ctl_usage_error(ctx, "takes at most one member name");
	rv = call_path(ctx, "POST",
	               ctx->nargs == 1 ? ctl_key_path("/v1/cluster/leader/", ctx->args[0], "")
	                               : strdup("/v1/cluster/leader"),
	               &resp);
	if (rv != 0)
		return rv;
	if (ctx->json) {
		rv = ctl_print_json(ctx, resp);
	} else {
		const char *leader = json_string_value(json_object_get(resp, "leader"));
		const char *previous = json_string_value(json_object_get(resp, "previous"));
		if (leader == NULL)
			leader = "?";
		if (previous != NULL && strcmp(leader, previous) == 0)
			fprintf(ctx->out, "%s leads already\n", leader);
		else
			fprintf(ctx->out, "%s leads now (was %s)\n", leader,
			        previous != NULL ? previous : "?");
	}
	json_decref(resp);
	return rv;
}

static const struct ctl_command status_command = {
    .name = "status",
    .summary = "show the leader, the revision and every member",
    .description = "Show this member, the leader, the cluster revision and, per member, its "
                   "name, role\n(voter, standby or spare), peer and API addresses, applied "
                   "revision and health.",
    .client = true,
    .run = run_status,
};

static const struct ctl_command hash_command = {
    .name = "hash",
    .summary = "compare every member's hash of the replicated state",
    .description = "Ask every member for a hash of its whole replicated state at one common "
                   "revision and\nprint them. Exits 1 if the hashes differ or a member could "
                   "not answer.",
    .client = true,
    .run = run_hash,
};

static const char *const remove_args[] = {"NAME", NULL};

static const struct ctl_command remove_command = {
    .name = "remove",
    .usage_args = "NAME",
    .summary = "remove a member from the cluster",
    .description = "Remove the member NAME from the cluster configuration and release its "
                   "addresses.\nRefused when the voters left would not have a majority that "
                   "answers the leader\n(remove a silent voter first); a standby that answers "
                   "is promoted before a voter\ngoes.",
    .args = remove_args,
    .client = true,
    .run = run_remove,
};

static const struct ctl_command move_leader_command = {
    .name = "move-leader",
    .usage_args = "[NAME]",
    .summary = "hand the lead to another voter",
    .description = "Hand raft's lead to the voter NAME, or without NAME to the voter that "
                   "answers and\nholds the most of the log, as etcdctl move-leader does. "
                   "Writes pause for a few\nmilliseconds instead of an election timeout: use "
                   "it before maintenance on the\nleader's host. Refused for a standby, a "
                   "spare or a voter that does not answer.",
    .more_args = true,
    .client = true,
    .run = run_move_leader,
};

static const struct ctl_command *const cluster_subcommands[] = {
    &status_command, &hash_command, &remove_command, &move_leader_command, NULL,
};

const struct ctl_command ctl_cluster_command = {
    .name = "cluster",
    .summary = "inspect and change the cluster's membership",
    .description = "Inspect the cluster's members and change its membership.",
    .subcommands = cluster_subcommands,
};
