/* tabby selector match | canonical | uid: the selector language, offline (no agent). */
#include "ctl/ctl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

/* Parse the EXPR argument. Returns 0, or 2 after printing why it is not a selector: a selector
 * that does not parse is a wrong command line. */
static int parse_arg(struct ctl_ctx *ctx, struct policy_selector **out)
{
	char err[512];
	int rv = policy_selector_parse(ctx->args[0], out, NULL, err, sizeof err);

	if (rv == -ENOMEM)
		return ctl_fail(ctx, "out of memory");
	if (rv != 0) {
		fprintf(ctx->err, "%s: invalid selector: %s\n", ctx->prog, err);
		return 2;
	}
	return 0;
}

static int run_match(struct ctl_ctx *ctx)
{
	const char *text = ctl_flag(ctx, "labels");
	struct policy_selector *sel = NULL;
	struct policy_labels labels = {0};
	json_error_t jerr;
	json_t *obj = NULL;
	char err[512];
	int rv = parse_arg(ctx, &sel);

	if (rv != 0)
		return rv;
	obj =
	    json_loads(text != NULL ? text : "{}", JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
	if (obj == NULL) {
		rv = ctl_usage_error(ctx, "--labels is not JSON: %s", jerr.text);
		goto done;
	}
	rv = policy_labels_from_json(obj, &labels, err, sizeof err);
	if (rv == -ENOMEM) {
		rv = ctl_fail(ctx, "out of memory");
		goto done;
	}
	if (rv != 0 || json_is_null(obj)) {
		rv = ctl_usage_error(ctx, "--labels: %s",
		                     rv != 0 ? err
		                             : "labels must be an object of string values, "
		                               "not null");
		goto done;
	}
	fprintf(ctx->out, "%s\n", policy_selector_match_labels(sel, &labels) ? "true" : "false");
done:
	json_decref(obj);
	policy_labels_free(&labels);
	policy_selector_free(sel);
	return rv;
}

static int run_canonical(struct ctl_ctx *ctx)
{
	struct policy_selector *sel = NULL;
	int rv = parse_arg(ctx, &sel);

	if (rv == 0)
		fprintf(ctx->out, "%s\n", policy_selector_canonical(sel));
	policy_selector_free(sel);
	return rv;
}

static int run_uid(struct ctl_ctx *ctx)
{
	struct policy_selector *sel = NULL;
	int rv = parse_arg(ctx, &sel);

	if (rv == 0)
		fprintf(ctx->out, "%s\n", policy_selector_uid(sel));
	policy_selector_free(sel);
	return rv;
}

static const char *const expr_args[] = {"EXPR", NULL};

static const struct ctl_flag match_flags[] = {
    {"labels", 0, "JSON", "the labels, a JSON object of string values (default {})"},
    {0},
};

static const struct ctl_command match_command = {
    .name = "match",
    .usage_args = "EXPR",
    .summary = "whether a selector matches a set of labels",
    .description = "Print true if the selector EXPR matches the labels given with --labels, "
                   "else false.\nA selector that does not parse, or labels that are not a "
                   "JSON object of string\nvalues, exit with status 2. An EXPR may start "
                   "with '-' (a label such as -a).",
    .flags = match_flags,
    .args = expr_args,
    .dash_args = true,
    .run = run_match,
};

static const struct ctl_command canonical_command = {
    .name = "canonical",
    .usage_args = "EXPR",
    .summary = "print a selector's canonical form",
    .description = "Print the canonical form of the selector EXPR, as Calico writes it: "
                   "single spaces, sets\nsorted and de-duplicated, every && and || group "
                   "in parentheses.",
    .args = expr_args,
    .dash_args = true,
    .run = run_canonical,
};

static const struct ctl_command uid_command = {
    .name = "uid",
    .usage_args = "EXPR",
    .summary = "print a selector's UID",
    .description = "Print the UID of the selector EXPR: \"s:\" and the unpadded base64url "
                   "SHA-224 of \"s:\" and\nits canonical form. Selectors with the same "
                   "canonical form share a UID (and an IP set).",
    .args = expr_args,
    .dash_args = true,
    .run = run_uid,
};

static const struct ctl_command *const selector_subcommands[] = {
    &match_command,
    &canonical_command,
    &uid_command,
    NULL,
};

const struct ctl_command ctl_selector_command = {
    .name = "selector",
    .summary = "check, normalise and evaluate label selectors",
    .description = "Work with label selectors offline: evaluate one against labels, print its "
                   "canonical form or\nits UID.",
    .subcommands = selector_subcommands,
};
