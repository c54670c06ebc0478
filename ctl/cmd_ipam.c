/* tabby ipam assign | release | show | check | config: addresses, as an operator sees them. */
#include "ctl/ctl.h"

#include <stdlib.h>
#include <string.h>

#include "ipam/ipam.h"

/* ---- formatting ---- */

/* A field that should be a string: the string, or dflt when absent or null. */
static const char *string_or(const json_t *o, const char *key, const char *dflt)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s != NULL ? s : dflt;
}

/* A number field (an integer, or a decimal string for counts beyond 64 bits) into buf. */
static void number_cell(char *buf, size_t size, const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);

	if (json_is_integer(v))
		snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else
		snprintf(buf, size, "%s", json_is_string(v) ? json_string_value(v) : "?");
}

bool ctl_decimal_sub(const char *a, uint64_t b, char *out, size_t size)
{
	char bd[24];
	size_t la = strlen(a);
	size_t lb;
	size_t start = 0;
	int borrow = 0;

	if (la == 0 || la + 1 > size)
		return false;
	for (size_t i = 0; i < la; i++)
		if (a[i] < '0' || a[i] > '9')
			return false;
	lb = (size_t)snprintf(bd, sizeof(bd), "%llu", (unsigned long long)b);
	if (lb > la)
		return false;
	/* Schoolbook subtraction from the last digit, into out aligned with a. */
	out[la] = '\0';
	for (size_t i = 0; i < la; i++) {
		int d = a[la - 1 - i] - '0' - borrow;
		if (i < lb)
			d -= bd[lb - 1 - i] - '0';
		borrow = d < 0;
		out[la - 1 - i] = (char)('0' + (d < 0 ? d + 10 : d));
	}
	if (borrow)
		return false; /* b > a */
	while (start + 1 < la && out[start] == '0')
		start++;
	memmove(out, out + start, la - start + 1);
	return true;
}

int ctl_ipam_usage_table(FILE *f, const json_t *answer)
{
	static const char *const headers[] = {"POOL", "TOTAL", "IN USE", "FREE"};
	const json_t *pools = json_object_get(answer, "pools");
	size_t n = json_array_size(pools);
	ctl_cell *cells;

	if (!json_is_array(pools))
		return -1;
	cells = calloc((n + 1) * 4, sizeof(*cells));
	if (cells == NULL)
		return -1;
	for (int c = 0; c < 4; c++)
		snprintf(cells[c], CTL_CELL_MAX, "%s", headers[c]);
	for (size_t i = 0; i < n; i++) {
		const json_t *p = json_array_get(pools, i);
		const json_t *in_use = json_object_get(p, "in_use");
		ctl_cell *row = cells + (i + 1) * 4;

		snprintf(row[0], CTL_CELL_MAX, "%s", string_or(p, "cidr", "?"));
		number_cell(row[1], CTL_CELL_MAX, p, "total");
		number_cell(row[2], CTL_CELL_MAX, p, "in_use");
		/* An IPv6 pool can hold more than 2^64 addresses: subtract in decimal. */
		if (!json_is_integer(in_use) || json_integer_value(in_use) < 0 ||
		    !ctl_decimal_sub(row[1], (uint64_t)json_integer_value(in_use), row[3],
		                     CTL_CELL_MAX))
			snprintf(row[3], CTL_CELL_MAX, "?");
	}
	ctl_put_columns(f, cells, 4, n + 1);
	free(cells);
	return 0;
}

int ctl_ipam_blocks_table(FILE *f, const json_t *answer)
{
	static const char *const headers[] = {"BLOCK", "POOL", "AFFINITY", "USED", "SIZE", "FULL%"};
	const json_t *blocks = json_object_get(answer, "blocks");
	size_t n = json_array_size(blocks);
	ctl_cell *cells;

	if (!json_is_array(blocks))
		return -1;
	cells = calloc((n + 1) * 6, sizeof(*cells));
	if (cells == NULL)
		return -1;
	for (int c = 0; c < 6; c++)
		snprintf(cells[c], CTL_CELL_MAX, "%s", headers[c]);
	for (size_t i = 0; i < n; i++) {
		const json_t *b = json_array_get(blocks, i);
		json_int_t used = json_integer_value(json_object_get(b, "used"));
		json_int_t size = json_integer_value(json_object_get(b, "size"));
		ctl_cell *row = cells + (i + 1) * 6;

		snprintf(row[0], CTL_CELL_MAX, "%s", string_or(b, "cidr", "?"));
		/* A block outlives its pool while a forced removal waits for its addresses. */
		snprintf(row[1], CTL_CELL_MAX, "%s", string_or(b, "pool", "-"));
		snprintf(row[2], CTL_CELL_MAX, "%s", string_or(b, "affinity", "none"));
		number_cell(row[3], CTL_CELL_MAX, b, "used");
		number_cell(row[4], CTL_CELL_MAX, b, "size");
		/* Rounded down, so that 100 means full. */
		if (size > 0 && used >= 0)
			snprintf(row[5], CTL_CELL_MAX, "%" JSON_INTEGER_FORMAT, used * 100 / size);
		else
			snprintf(row[5], CTL_CELL_MAX, "-");
	}
	ctl_put_columns(f, cells, 6, n + 1);
	free(cells);
	return 0;
}

int ctl_ipam_ip_text(FILE *f, const json_t *answer)
{
	const char *ip = json_string_value(json_object_get(answer, "ip"));
	const json_t *attrs = json_object_get(answer, "attrs");
	const char *key;
	const json_t *value;
	const char *sep = "";
	char gen[24];

	if (ip == NULL || !json_is_boolean(json_object_get(answer, "assigned")))
		return -1;
	if (!json_is_true(json_object_get(answer, "assigned"))) {
		fprintf(f, "%s is not assigned\n", ip);
		return 0;
	}
	number_cell(gen, sizeof(gen), answer, "gen");
	fprintf(f, "%s is assigned\n  handle: %s\n  node: %s\n  block: %s (affinity: %s)\n", ip,
	        string_or(answer, "handle", "?"), string_or(answer, "node", "?"),
	        string_or(answer, "block", "?"), string_or(answer, "affinity", "none"));
	fprintf(f, "  generation: %s\n  attributes: ", gen);
	json_object_foreach ((json_t *)attrs, key, value) {
		fprintf(f, "%s%s=%s", sep, key,
		        json_is_string(value) ? json_string_value(value) : "?");
		sep = ", ";
	}
	fprintf(f, "%s\n", json_object_size(attrs) == 0 ? "none" : "");
	return 0;
}

/* ---- commands ---- */

/* A value of the command line as a JSON string; NULL after a usage error when it is not UTF-8. */
static json_t *flag_string(struct ctl_ctx *ctx, const char *flag, const char *value)
{
	json_t *s = json_string(value);

	if (s == NULL)
		ctl_usage_error(ctx, "the value of --%s is not valid UTF-8", flag);
	return s;
}

/* Each address of list (objects with "ip") on its own line. */
static void put_ips(FILE *f, const json_t *list)
{
	for (size_t i = 0; i < json_array_size(list); i++)
		fprintf(f, "%s\n", string_or(json_array_get(list, i), "ip", "?"));
}

/* The --attr KEY=VALUE flags into the object attrs. Returns 0 or 2. */
static int read_attrs(struct ctl_ctx *ctx, json_t *attrs)
{
	const char *a;

	for (int i = 0; (a = ctl_flag_nth(ctx, "attr", i)) != NULL; i++) {
		const char *eq = strchr(a, '=');
		char *key;
		json_t *value;

		if (eq == NULL || eq == a)
			return ctl_usage_error(ctx,
			                       "invalid value '%s' for --attr (want KEY=VALUE)", a);
		key = strndup(a, (size_t)(eq - a));
		if (key == NULL)
			return ctl_fail(ctx, "out of memory");
		if (json_object_get(attrs, key) != NULL) {
			ctl_usage_error(ctx, "--attr %s is given twice", key);
			free(key);
			return 2;
		}
		value = json_string(eq + 1);
		if (value == NULL || json_object_set_new(attrs, key, value) != 0) {
			ctl_usage_error(ctx, "invalid value '%s' for --attr (not valid UTF-8)", a);
			free(key);
			return 2;
		}
		free(key);
	}
	return 0;
}

/* The addresses to ask for: the explicit --ip, or counts and the pools to draw from. */
static int read_wanted(struct ctl_ctx *ctx, json_t *body)
{
	const char *ip = ctl_flag(ctx, "ip");
	int64_t num4 = -1;
	int64_t num6 = -1;
	struct ipam_addr addr;
	struct ipam_cidr cidr;
	char text[IPAM_CIDR_STRLEN];
	char err[256];
	const char *p;
	json_t *pools;

	if (ctl_flag_int(ctx, "ipv4", 0, &num4) != 0 || ctl_flag_int(ctx, "ipv6", 0, &num6) != 0)
		return 2;
	if (ip != NULL) {
		if (num4 >= 0 || num6 >= 0)
			return ctl_usage_error(ctx, "use --ip or --ipv4/--ipv6, not both");
		if (ctl_flag_nth(ctx, "pool", 0) != NULL)
			return ctl_usage_error(ctx, "--pool chooses where automatic assignment "
			                            "draws from; it does not go with --ip");
		if (ctl_parse_addr(ctx, ip, &addr) != 0)
			return 2;
		if (json_object_set_new(body, "ips",
		                        json_pack("[s]", ipam_addr_format(&addr, text))) != 0)
			return ctl_fail(ctx, "out of memory");
		return 0;
	}
	if (num4 < 0 && num6 < 0)
		num4 = 1;
	num4 = num4 < 0 ? 0 : num4;
	num6 = num6 < 0 ? 0 : num6;
	if (num4 == 0 && num6 == 0)
		return ctl_usage_error(ctx, "nothing to assign: --ipv4 and --ipv6 are both 0");
	if (num4 > IPAM_ASSIGN_MAX || num6 > IPAM_ASSIGN_MAX || num4 + num6 > IPAM_ASSIGN_MAX)
		return ctl_usage_error(ctx, "at most %d addresses can be assigned at once",
		                       IPAM_ASSIGN_MAX);
	if (json_object_set_new(body, "num4", json_integer(num4)) != 0 ||
	    json_object_set_new(body, "num6", json_integer(num6)) != 0)
		return ctl_fail(ctx, "out of memory");
	if (ctl_flag_nth(ctx, "pool", 0) == NULL)
		return 0; /* every enabled pool */
	pools = json_array();
	if (json_object_set_new(body, "pools", pools) != 0)
		return ctl_fail(ctx, "out of memory");
	for (int i = 0; (p = ctl_flag_nth(ctx, "pool", i)) != NULL; i++) {
		if (!ipam_cidr_parse(p, &cidr, err, sizeof(err))) {
			ctl_fail(ctx, "--pool %s", err);
			return 2;
		}
		if (json_array_append_new(pools, json_string(ipam_cidr_format(&cidr, text))) != 0)
			return ctl_fail(ctx, "out of memory");
	}
	return 0;
}

static int run_assign(struct ctl_ctx *ctx)
{
	const char *node = ctl_flag(ctx, "node");
	const char *handle = ctl_flag(ctx, "handle");
	json_t *body;
	json_t *resp = NULL;
	json_t *value;
	json_t *ips;
	int rv;

	if (node == NULL)
		return ctl_usage_error(ctx, "missing --node");
	if (handle == NULL)
		return ctl_usage_error(ctx, "missing --handle");
	body = json_pack("{s:{}}", "attrs");
	if (body == NULL)
		return ctl_fail(ctx, "out of memory");
	rv = 2;
	if ((value = flag_string(ctx, "node", node)) == NULL ||
	    json_object_set_new(body, "node", value) != 0 ||
	    (value = flag_string(ctx, "handle", handle)) == NULL ||
	    json_object_set_new(body, "handle", value) != 0)
		goto out;
	rv = read_attrs(ctx, json_object_get(body, "attrs"));
	if (rv == 0)
		rv = read_wanted(ctx, body);
	if (rv == 0)
		rv = ctl_call(ctx, "POST", "/v1/ipam/assign", body, &resp);
	if (rv != 0)
		goto out;
	ips = json_object_get(resp, "ips");
	if (!json_is_array(ips))
		rv = ctl_fail(ctx, "unexpected answer from the agent: no address list");
	else if (ctx->json)
		rv = ctl_print_json(ctx, ips);
	else
		put_ips(ctx->out, ips);
out:
	json_decref(resp);
	json_decref(body);
	return rv;
}

static int run_release(struct ctl_ctx *ctx)
{
	const char *handle = ctl_flag(ctx, "handle");
	const char *ip = ctl_flag(ctx, "ip");
	struct ipam_addr addr;
	char text[IPAM_ADDR_STRLEN];
	int64_t gen = 0;
	json_t *body;
	json_t *resp = NULL;
	json_t *released;
	int rv;

	if (handle != NULL && ip != NULL)
		return ctl_usage_error(ctx, "use --handle or --ip, not both");
	if (handle == NULL && ip == NULL)
		return ctl_usage_error(ctx, "missing --handle or --ip");
	if (ctl_flag_int(ctx, "gen", 1, &gen) != 0)
		return 2;
	if (gen != 0 && ip == NULL)
		return ctl_usage_error(ctx, "--gen goes with --ip");
	if (handle != NULL) {
		body = json_object();
		json_t *h = flag_string(ctx, "handle", handle);
		if (h == NULL || body == NULL || json_object_set_new(body, "handle", h) != 0) {
			json_decref(body);
			return h == NULL ? 2 : ctl_fail(ctx, "out of memory");
		}
	} else {
		if (ctl_parse_addr(ctx, ip, &addr) != 0)
			return 2;
		ipam_addr_format(&addr, text);
		/* With a generation, only the allocation that holds it now is released. */
		body = gen != 0 ? json_pack("{s:[{s:s, s:I}]}", "ips", "ip", text, "gen",
		                            (json_int_t)gen)
		                : json_pack("{s:[s]}", "ips", text);
		if (body == NULL)
			return ctl_fail(ctx, "out of memory");
	}
	rv = ctl_call(ctx, "POST", "/v1/ipam/release", body, &resp);
	json_decref(body);
	if (rv != 0)
		return rv;
	released = json_object_get(resp, "released");
	if (!json_is_array(released))
		rv = ctl_fail(ctx, "unexpected answer from the agent: no address list");
	else if (ctx->json)
		rv = ctl_print_json(ctx, released);
	else
		put_ips(ctx->out, released);
	json_decref(resp);
	return rv;
}

static int run_show(struct ctl_ctx *ctx)
{
	const char *ip = ctl_flag(ctx, "ip");
	bool blocks = ctl_flag(ctx, "blocks") != NULL;
	int (*format)(FILE *, const json_t *) = ctl_ipam_usage_table;
	struct ipam_addr addr;
	char text[IPAM_ADDR_STRLEN];
	char *path = NULL;
	json_t *resp;
	int rv;

	if (ip != NULL && blocks)
		return ctl_usage_error(ctx, "use --ip or --blocks, not both");
	if (ip != NULL) {
		if (ctl_parse_addr(ctx, ip, &addr) != 0)
			return 2;
		path = ctl_key_path("/v1/ipam/ips/", ipam_addr_format(&addr, text), "");
		if (path == NULL)
			return ctl_fail(ctx, "out of memory");
		format = ctl_ipam_ip_text;
	} else if (blocks) {
		format = ctl_ipam_blocks_table;
	}
	rv = ctl_call(ctx, "GET",
	              path != NULL ? path
	              : blocks     ? "/v1/ipam/blocks"
	                           : "/v1/ipam/usage",
	              NULL, &resp);
	free(path);
	if (rv != 0)
		return rv;
	if (ctx->json)
		rv = ctl_print_json(ctx, resp);
	else if (format(ctx->out, resp) != 0)
		rv = ctl_fail(ctx, "unexpected answer from the agent");
	json_decref(resp);
	return rv;
}

static int run_check(struct ctl_ctx *ctx)
{
	json_t *resp;
	json_t *problems;
	size_t n;
	int rv;

	rv = ctl_call(ctx, "GET", "/v1/ipam/check", NULL, &resp);
	if (rv != 0)
		return rv;
	problems = json_object_get(resp, "problems");
	n = json_array_size(problems);
	if (!json_is_array(problems)) {
		rv = ctl_fail(ctx, "unexpected answer from the agent: no problem list");
		goto out;
	}
	if (ctx->json) {
		rv = ctl_print_json(ctx, resp);
	} else {
		for (size_t i = 0; i < n; i++)
			fprintf(ctx->out, "%s\n", json_string_value(json_array_get(problems, i)));
		if (n == 0)
			fprintf(ctx->out, "no problems found\n");
		else
			fprintf(ctx->out, "%zu problem%s found\n", n, n == 1 ? "" : "s");
	}
	if (rv == 0 && n > 0)
		rv = 1;
out:
	json_decref(resp);
	return rv;
}

static int run_config(struct ctl_ctx *ctx)
{
	const char *strict = ctl_flag(ctx, "strict-affinity");
	json_t *body = NULL;
	json_t *resp;
	json_t *value;
	int rv;

	if (strict != NULL) {
		if (strcmp(strict, "true") != 0 && strcmp(strict, "false") != 0)
			return ctl_usage_error(
			    ctx, "invalid value '%s' for --strict-affinity (want true or false)",
			    strict);
		body = json_pack("{s:b}", "strict_affinity", strcmp(strict, "true") == 0);
		if (body == NULL)
			return ctl_fail(ctx, "out of memory");
	}
	rv = ctl_call(ctx, body != NULL ? "PUT" : "GET", "/v1/ipam/config", body, &resp);
	json_decref(body);
	if (rv != 0)
		return rv;
	value = json_object_get(resp, "strict_affinity");
	if (!json_is_boolean(value))
		rv = ctl_fail(ctx, "unexpected answer from the agent: no strict_affinity");
	else if (ctx->json)
		rv = ctl_print_json(ctx, resp);
	else
		fprintf(ctx->out, "strict-affinity: %s\n", json_is_true(value) ? "true" : "false");
	json_decref(resp);
	return rv;
}

static const struct ctl_flag assign_flags[] = {
    {"node", 0, "NAME", "the node the addresses are for (required)"},
    {"handle", 0, "H", "the handle that owns them, to release them by (required)"},
    {"ip", 0, "ADDR", "assign this address"},
    {"ipv4", 0, "N", "assign N IPv4 addresses (default 1 when neither --ip nor --ipv6)"},
    {"ipv6", 0, "N", "assign N IPv6 addresses"},
    {"pool", 0, "CIDR", "draw only from this pool (repeatable; default: every enabled pool)"},
    {"attr", 0, "KEY=VALUE", "record an attribute with the addresses (repeatable)"},
    {0},
};

static const char *const assign_repeatable[] = {"pool", "attr", NULL};

static const struct ctl_command assign_command = {
    .name = "assign",
    .usage_args = "--node NAME --handle H",
    .summary = "assign addresses to a handle",
    .description = "Assign addresses for NAME to the handle H: the address --ip, or --ipv4 "
                   "and --ipv6 addresses\nchosen from the node's blocks (or the pools "
                   "--pool). All or nothing. Prints each address\nassigned on its own line.",
    .flags = assign_flags,
    .repeatable = assign_repeatable,
    .client = true,
    .run = run_assign,
};

static const struct ctl_flag release_flags[] = {
    {"handle", 0, "H", "release every address of the handle H"},
    {"ip", 0, "ADDR", "release the address ADDR"},
    {"gen", 0, "N", "with --ip: only if generation N still holds the address"},
    {0},
};

static const struct ctl_command release_command = {
    .name = "release",
    .usage_args = "(--handle H | --ip ADDR [--gen N])",
    .summary = "release addresses by handle or by address",
    .description = "Release every address of a handle, or one address. Prints each address "
                   "released on its\nown line.",
    .flags = release_flags,
    .client = true,
    .run = run_release,
};

static const struct ctl_flag show_flags[] = {
    {"ip", 0, "ADDR", "show whether ADDR is assigned, and to whom"},
    {"blocks", 0, NULL, "show every block: its pool, affinity and use"},
    {0},
};

static const struct ctl_command show_command = {
    .name = "show",
    .summary = "show how much of each pool is in use, the blocks, or one address",
    .description = "Without flags, show per pool how many addresses it holds, how many are in "
                   "use and how\nmany are free. --blocks shows the blocks, --ip one address.",
    .flags = show_flags,
    .client = true,
    .run = run_show,
};

static const struct ctl_command check_command = {
    .name = "check",
    .summary = "check the IPAM records for inconsistencies",
    .description = "Check every IPAM record for inconsistencies and for allocations of nodes "
                   "that are no\nlonger members. Prints each problem found; exits 1 if there "
                   "is one.",
    .client = true,
    .run = run_check,
};

static const struct ctl_flag config_flags[] = {
    {"strict-affinity", 0, "BOOL", "true: never assign an address from another node's block"},
    {0},
};

static const struct ctl_command config_command = {
    .name = "config",
    .summary = "show or change the IPAM configuration",
    .description = "Show the IPAM configuration, after changing what the flags say.",
    .flags = config_flags,
    .client = true,
    .run = run_config,
};

static const struct ctl_command *const ipam_subcommands[] = {
    &assign_command, &release_command, &show_command, &check_command, &config_command, NULL,
};

const struct ctl_command ctl_ipam_command = {
    .name = "ipam",
    .summary = "assign, release and inspect IP addresses",
    .description = "Assign and release IP addresses by hand, inspect the pools' use and "
                   "check the records.",
    .subcommands = ipam_subcommands,
};
