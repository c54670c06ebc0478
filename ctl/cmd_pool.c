/* tabby pool add | range add | remove | show: IP pools, as calicoctl 0.x's `pool` commands. */
#include "ctl/ctl.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ipam/ipam.h"

/* Room for one line of a pool's options: the longest is a node selector. */
#define OPTIONS_MAX (IPAM_SELECTOR_MAX + 128)

/* ---- the calicoctl 0.x table ---- */

/* Display width of UTF-8 text: its code points (a node selector may hold any). */
static size_t text_width(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

static void put_spaces(FILE *f, size_t n)
{
	while (n-- > 0)
		fputc(' ', f);
}

static void put_rule(FILE *f, const size_t *width, int ncols)
{
	for (int c = 0; c < ncols; c++) {
		fputc('+', f);
		for (size_t i = 0; i < width[c] + 2; i++)
			fputc('-', f);
	}
	fputs("+\n", f);
}

/* Centre text in width the way prettytable (and Python's str.center) does: of an odd excess,
 * odd-length text gets the extra space on the right, even-length text on the left. */
static void put_centred(FILE *f, const char *text, size_t width)
{
	size_t len = text_width(text);
	size_t excess = width - len;
	size_t left = excess / 2;

	if (excess % 2 == 1 && len % 2 == 0)
		left++;
	put_spaces(f, left);
	fputs(text, f);
	put_spaces(f, excess - left);
}

void ctl_put_box(FILE *f, const char *const *headers, int ncols, const char *const *cells,
                 size_t nrows)
{
	size_t width[CTL_MAX_COLUMNS] = {0};

	for (int c = 0; c < ncols; c++) {
		width[c] = text_width(headers[c]);
		for (size_t r = 0; r < nrows; r++)
			if (text_width(cells[r * ncols + c]) > width[c])
				width[c] = text_width(cells[r * ncols + c]);
	}
	put_rule(f, width, ncols);
	for (int c = 0; c < ncols; c++) {
		fputs("| ", f);
		put_centred(f, headers[c], width[c]);
		fputc(' ', f);
	}
	fputs("|\n", f);
	put_rule(f, width, ncols);
	for (size_t r = 0; r < nrows; r++) {
		for (int c = 0; c < ncols; c++) {
			const char *cell = cells[r * ncols + c];
			fputs("| ", f);
			fputs(cell, f);
			put_spaces(f, width[c] - text_width(cell) + 1);
		}
		fputs("|\n", f);
	}
	/* An empty table too: prettytable closes it right under the header's rule. */
	put_rule(f, width, ncols);
}

/* Append ",item" (or "item" first) to the options in buf. */
static void __attribute__((format(printf, 3, 4)))
add_option(char *buf, size_t size, const char *fmt, ...)
{
	size_t len = strlen(buf);
	va_list ap;

	if (len > 0 && len + 1 < size)
		buf[len++] = ',';
	va_start(ap, fmt);
	vsnprintf(buf + len, size - len, fmt, ap);
	va_end(ap);
}

/* "ipip" for always, "ipip:cross-subnet" for another mode, nothing for never. */
static void encap_option(char *buf, size_t size, const char *name, const json_t *pool)
{
	const char *mode = json_string_value(json_object_get(pool, name));

	if (mode == NULL || strcmp(mode, "never") == 0)
		return;
	if (strcmp(mode, "always") == 0)
		add_option(buf, size, "%s", name);
	else
		add_option(buf, size, "%s:%s", name, mode);
}

/* The Options cell of a pool, in the documented order; the defaults are not shown. */
static void pool_options(const json_t *pool, int family, char *buf, size_t size)
{
	const json_t *block = json_object_get(pool, "block_size");
	const char *selector = json_string_value(json_object_get(pool, "node_selector"));
	int dflt = family == 4 ? IPAM_DEFAULT_BLOCK_V4 : IPAM_DEFAULT_BLOCK_V6;

	buf[0] = '\0';
	encap_option(buf, size, "ipip", pool);
	encap_option(buf, size, "vxlan", pool);
	if (json_is_true(json_object_get(pool, "nat_outgoing")))
		add_option(buf, size, "%s", "nat-outgoing");
	if (json_is_true(json_object_get(pool, "disabled")))
		add_option(buf, size, "%s", "disabled");
	if (json_is_true(json_object_get(pool, "removing")))
		add_option(buf, size, "%s", "removing");
	if (json_is_integer(block) && json_integer_value(block) != dflt)
		add_option(buf, size, "block-size:%" JSON_INTEGER_FORMAT,
		           json_integer_value(block));
	/* The agent shows an unset selector as all(), which is what "unset" means. */
	if (selector != NULL && selector[0] != '\0' && strcmp(selector, "all()") != 0)
		add_option(buf, size, "node-selector:%s", selector);
}

static int pool_family(const json_t *pool)
{
	const char *cidr = json_string_value(json_object_get(pool, "cidr"));

	return cidr != NULL && strchr(cidr, ':') != NULL ? 6 : 4;
}

/* One family's table of the pools (a JSON array), in the order given. */
static int put_family(FILE *f, const json_t *pools, int family)
{
	const char *headers[2] = {family == 4 ? "IPv4 CIDR" : "IPv6 CIDR", "Options"};
	const char **cells;
	char *options;
	size_t nrows = 0;
	size_t n = json_array_size(pools);
	size_t i;

	cells = calloc(2 * (n + 1), sizeof(*cells));
	options = malloc((n + 1) * OPTIONS_MAX);
	if (cells == NULL || options == NULL)
		goto nomem;
	for (i = 0; i < n; i++) {
		const json_t *pool = json_array_get(pools, i);
		const char *cidr = json_string_value(json_object_get(pool, "cidr"));
		char *opt = options + nrows * OPTIONS_MAX;

		if (pool_family(pool) != family)
			continue;
		pool_options(pool, family, opt, OPTIONS_MAX);
		cells[2 * nrows] = cidr != NULL ? cidr : "?";
		cells[2 * nrows + 1] = opt;
		nrows++;
	}
	ctl_put_box(f, headers, 2, cells, nrows);
	free(cells);
	free(options);
	return 0;
nomem:
	free(cells);
	free(options);
	return -1;
}

int ctl_pool_table(FILE *f, const json_t *answer, bool ipv4, bool ipv6)
{
	const json_t *pools = json_object_get(answer, "pools");

	if (!json_is_array(pools))
		return -1;
	if (ipv4 && put_family(f, pools, 4) != 0)
		return -1;
	if (ipv6 && put_family(f, pools, 6) != 0)
		return -1;
	return 0;
}

/* ---- commands ---- */

/* Parse CIDR, a command-line value, into c. Returns 0, or 2 after one line that names it. */
static int parse_cidr(struct ctl_ctx *ctx, const char *s, struct ipam_cidr *c)
{
	char err[256];

	if (ipam_cidr_parse(s, c, err, sizeof(err)))
		return 0;
	ctl_fail(ctx, "%s", err);
	return 2;
}

static bool is_encap_mode(const char *word)
{
	uint8_t mode;

	return ipam_encap_parse(word, &mode);
}

/* The value of --ipip or --vxlan into out (never when absent). Returns 0 or 2. */
static int encap_flag(struct ctl_ctx *ctx, const char *name, uint8_t *out)
{
	const char *v = ctl_flag(ctx, name);

	*out = IPAM_ENCAP_NEVER;
	if (v != NULL && !ipam_encap_parse(v, out))
		return ctl_usage_error(
		    ctx, "invalid value '%s' for --%s (want never, always or cross-subnet)", v,
		    name);
	return 0;
}

/* The options of the command line's flags into *p (its CIDR left alone), block_size 0 when
 * --block-size is not given. Returns 0, or 2 after a usage error. */
static int read_options(struct ctl_ctx *ctx, struct ipam_pool *p)
{
	int64_t block_size = 0;

	if (ctl_flag_int(ctx, "block-size", 1, &block_size) != 0 ||
	    encap_flag(ctx, "ipip", &p->ipip) != 0 || encap_flag(ctx, "vxlan", &p->vxlan) != 0)
		return 2;
	/* Anything longer than an IPv6 prefix is no block size; ipam_pool_validate() says which
	 * range applies to each family. */
	if (block_size > 128)
		return ctl_usage_error(ctx,
		                       "invalid value '%s' for --block-size (want 20-32 for "
		                       "IPv4, 116-128 for IPv6)",
		                       ctl_flag(ctx, "block-size"));
	p->block_size = (uint8_t)block_size;
	p->nat_outgoing = ctl_flag(ctx, "nat-outgoing") != NULL;
	p->disabled = ctl_flag(ctx, "disabled") != NULL;
	return 0;
}

/* The pools of the command line, every one checked here first so that a bad one stops the
 * command before anything is sent: all or nothing, as calicoctl did. Returns 0, or 2 after one
 * line naming the bad CIDR. */
static int read_pools(struct ctl_ctx *ctx, struct ipam_pool *pools)
{
	struct ipam_pool options = {0};
	char err[512];
	char a[IPAM_CIDR_STRLEN];
	char b[IPAM_CIDR_STRLEN];

	if (read_options(ctx, &options) != 0)
		return 2;
	for (int i = 0; i < ctx->nargs; i++) {
		struct ipam_pool *p = &pools[i];

		*p = options;
		if (parse_cidr(ctx, ctx->args[i], &p->cidr) != 0)
			return 2;
		/* Without --block-size an existing pool keeps its block size and a new one gets
		 * the family's default; which applies is for the agent to know. Here the pool
		 * need only be valid with some block size: the smallest, the most lenient. */
		if (p->block_size == 0)
			p->block_size = p->cidr.addr.family == 4 ? 32 : 128;
		if (!ipam_pool_validate(p, err, sizeof(err))) {
			ctl_fail(ctx, "%s", err);
			return 2;
		}
		/* The agent would refuse these too, but this way the line names both. */
		for (int j = 0; j < i; j++) {
			if (!ipam_cidr_overlap(&pools[j].cidr, &p->cidr))
				continue;
			ipam_cidr_format(&p->cidr, a);
			ipam_cidr_format(&pools[j].cidr, b);
			if (strcmp(a, b) == 0)
				ctl_fail(ctx, "%s is given twice", ctx->args[i]);
			else
				ctl_fail(ctx, "%s overlaps %s, also given", ctx->args[i], b);
			return 2;
		}
	}
	return 0;
}

/* POST body to path. Like calicoctl, a success prints nothing (but the answer with -o json).
 * Returns 0 or 1. */
static int post_quietly(struct ctl_ctx *ctx, const char *path, json_t *body)
{
	json_t *resp = NULL;
	int rv = ctl_call(ctx, "POST", path, body, &resp);

	if (rv == 0 && ctx->json)
		rv = ctl_print_json(ctx, resp);
	json_decref(resp);
	return rv;
}

static int run_add(struct ctl_ctx *ctx)
{
	struct ipam_pool *pools;
	json_t *body = NULL;
	json_t *list;
	char cidr[IPAM_CIDR_STRLEN];
	int rv;

	pools = calloc((size_t)ctx->nargs, sizeof(*pools));
	if (pools == NULL)
		return ctl_fail(ctx, "out of memory");
	rv = read_pools(ctx, pools);
	if (rv != 0)
		goto out;
	body = json_pack("{s:[]}", "pools");
	if (body == NULL)
		goto nomem;
	list = json_object_get(body, "pools");
	for (int i = 0; i < ctx->nargs; i++) {
		const struct ipam_pool *p = &pools[i];
		json_t *o =
		    json_pack("{s:s, s:s, s:s, s:b, s:b}", "cidr", ipam_cidr_format(&p->cidr, cidr),
		              "ipip", ipam_encap_name(p->ipip), "vxlan", ipam_encap_name(p->vxlan),
		              "nat_outgoing", p->nat_outgoing, "disabled", p->disabled);

		if (o == NULL || json_array_append_new(list, o) != 0)
			goto nomem;
		if (ctl_flag(ctx, "block-size") != NULL &&
		    json_object_set_new(o, "block_size", json_integer(p->block_size)) != 0)
			goto nomem;
	}
	rv = post_quietly(ctx, "/v1/ippools", body);
	goto out;
nomem:
	rv = ctl_fail(ctx, "out of memory");
out:
	json_decref(body);
	free(pools);
	return rv;
}

/* Whether a configured pool touches the range that pieces (n) cover exactly, as calicoctl 0.x
 * refused it: 0 when none does, else 1 after printing which. */
static int range_touches_pool(struct ctl_ctx *ctx, const struct ipam_cidr *pieces, unsigned n)
{
	json_t *resp = NULL;
	const json_t *pools;
	struct ipam_cidr c;
	char err[256];
	int rv = ctl_call(ctx, "GET", "/v1/ippools", NULL, &resp);

	if (rv != 0)
		return rv;
	pools = json_object_get(resp, "pools");
	if (!json_is_array(pools))
		rv = ctl_fail(ctx, "unexpected answer from the agent: no pool list");
	for (size_t i = 0; rv == 0 && i < json_array_size(pools); i++) {
		const char *cidr =
		    json_string_value(json_object_get(json_array_get(pools, i), "cidr"));

		if (cidr == NULL || !ipam_cidr_parse(cidr, &c, err, sizeof(err)))
			continue;
		for (unsigned j = 0; rv == 0 && j < n; j++)
			if (ipam_cidr_overlap(&c, &pieces[j]))
				rv = ctl_fail(
				    ctx, "Cannot add range - range conflicts with pool %s", cidr);
	}
	json_decref(resp);
	return rv;
}

/* calicoctl 0.x's `pool range add START END`: the fewest CIDRs that cover the range exactly, each
 * a new pool. As there, a range that touches an existing pool, or that would need a piece smaller
 * than a block, adds nothing. The pieces go to the agent as one create of ipPool resources, so
 * that they are added all or none, and a pool that appeared since the check stops them too. */
static int run_range_add(struct ctl_ctx *ctx)
{
	const char *start = ctx->args[0];
	const char *end = ctx->args[1];
	struct ipam_pool options = {0};
	struct ipam_pool p;
	struct ipam_addr first;
	struct ipam_addr last;
	struct ipam_cidr pieces[IPAM_RANGE_CIDRS_MAX];
	json_t *body;
	json_t *list;
	char err[512];
	unsigned n;
	int rv;

	if (read_options(ctx, &options) != 0 || ctl_parse_addr(ctx, start, &first) != 0 ||
	    ctl_parse_addr(ctx, end, &last) != 0)
		return 2;
	if (first.family != last.family)
		return ctl_usage_error(ctx, "%s and %s are not of one family", start, end);
	n = ipam_range_cidrs(&first, &last, pieces, IPAM_RANGE_CIDRS_MAX);
	if (n == 0)
		return ctl_usage_error(ctx, "the range is empty: %s is above %s", start, end);
	body = json_pack("{s:s, s:[]}", "op", "create", "resources");
	list = json_object_get(body, "resources");
	for (unsigned i = 0; i < n; i++) {
		p = options; /* block size 0 without --block-size: the agent's default */
		p.cidr = pieces[i];
		if (body != NULL && json_array_append_new(list, policy_ippool_from_ipam(&p)) != 0) {
			json_decref(body);
			body = NULL;
		}
		/* Each piece is a new pool, checked with the block size it will get. */
		if (p.block_size == 0)
			p.block_size =
			    first.family == 4 ? IPAM_DEFAULT_BLOCK_V4 : IPAM_DEFAULT_BLOCK_V6;
		if (!ipam_pool_validate(&p, err, sizeof(err))) {
			json_decref(body);
			ctl_fail(ctx, "range %s-%s: %s", start, end, err);
			return 2;
		}
	}
	if (body == NULL)
		return ctl_fail(ctx, "out of memory");
	rv = range_touches_pool(ctx, pieces, n);
	if (rv == 0)
		rv = post_quietly(ctx, "/v1/resources", body);
	json_decref(body);
	return rv;
}

static int run_remove(struct ctl_ctx *ctx)
{
	struct ipam_cidr c;
	json_t *body;
	json_t *resp = NULL;
	json_t *list;
	json_t *removing;
	char cidr[IPAM_CIDR_STRLEN];
	int rv;

	body = json_pack("{s:[], s:b}", "cidrs", "force", ctl_flag(ctx, "force") != NULL);
	if (body == NULL)
		return ctl_fail(ctx, "out of memory");
	list = json_object_get(body, "cidrs");
	for (int i = 0; i < ctx->nargs; i++) {
		if (parse_cidr(ctx, ctx->args[i], &c) != 0) {
			rv = 2;
			goto out;
		}
		if (json_array_append_new(list, json_string(ipam_cidr_format(&c, cidr))) != 0) {
			rv = ctl_fail(ctx, "out of memory");
			goto out;
		}
	}
	rv = ctl_call(ctx, "POST", "/v1/ippools/remove", body, &resp);
	if (rv != 0)
		goto out;
	if (ctx->json) {
		rv = ctl_print_json(ctx, resp);
		goto out;
	}
	/* A forced removal leaves the pools still in use behind for a while: say so, since a
	 * silent success would suggest they are gone. The agent lists their CIDRs. */
	removing = json_object_get(resp, "removing");
	for (size_t i = 0; i < json_array_size(removing); i++) {
		const char *r = json_string_value(json_array_get(removing, i));
		fprintf(ctx->out, "%s has addresses in use: disabled, it goes with the last one\n",
		        r != NULL ? r : "?");
	}
out:
	json_decref(resp);
	json_decref(body);
	return rv;
}

static int run_show(struct ctl_ctx *ctx)
{
	bool ipv4 = ctl_flag(ctx, "ipv4") != NULL;
	bool ipv6 = ctl_flag(ctx, "ipv6") != NULL;
	const char *path = "/v1/ippools";
	json_t *resp;
	int rv;

	if (ipv4 && ipv6)
		return ctl_usage_error(ctx, "use --ipv4 or --ipv6, not both");
	if (ipv4)
		path = "/v1/ippools?family=4";
	else if (ipv6)
		path = "/v1/ippools?family=6";
	else
		ipv4 = ipv6 = true;
	rv = ctl_call(ctx, "GET", path, NULL, &resp);
	if (rv != 0)
		return rv;
	if (!json_is_array(json_object_get(resp, "pools")))
		rv = ctl_fail(ctx, "unexpected answer from the agent: no pool list");
	else if (ctx->json)
		rv = ctl_print_json(ctx, json_object_get(resp, "pools"));
	else if (ctl_pool_table(ctx->out, resp, ipv4, ipv6) != 0)
		rv = ctl_fail(ctx, "out of memory");
	json_decref(resp);
	return rv;
}

static const char *const cidr_args[] = {"CIDR", NULL};

static const struct ctl_flag add_flags[] = {
    {"block-size", 0, "N",
     "prefix length of the pool's blocks (default 26 for IPv4, 122 for IPv6)"},
    {"ipip", 0, "MODE",
     "IP-in-IP encapsulation: never (default), always or cross-subnet; alone: always"},
    {"vxlan", 0, "MODE", "VXLAN encapsulation: never (default), always or cross-subnet"},
    {"nat-outgoing", 0, NULL, "masquerade traffic from the pool to outside every pool"},
    {"disabled", 0, NULL, "assign no new addresses from the pool"},
    {0},
};

/* calicoctl 0.x's --ipip took no value: "--ipip" alone is always, a mode after it is its value. */
static const struct ctl_optional_value ipip_optional[] = {
    {"ipip", is_encap_mode, "always"},
    {0},
};

static const struct ctl_command add_command = {
    .name = "add",
    .usage_args = "CIDR...",
    .summary = "add IP pools, or change the options of existing ones",
    .description =
        "Add an IP pool for each CIDR, with the options given. A CIDR identical to an existing "
        "pool's\nrewrites that pool's options. Every CIDR is checked before anything is "
        "changed: one that is\nnot canonical, smaller than a block, link-local or overlapping "
        "another pool stops the whole\ncommand. Prints nothing on success.",
    .flags = add_flags,
    .args = cidr_args,
    .more_args = true,
    .optional_values = ipip_optional,
    .client = true,
    .run = run_add,
};

static const char *const range_args[] = {"START", "END", NULL};

static const struct ctl_command range_add_command = {
    .name = "add",
    .usage_args = "START END",
    .summary = "add the range START-END as the fewest pools that cover it",
    .description =
        "Add the addresses START to END (both included) as IP pools, the fewest CIDRs that "
        "cover the\nrange exactly, each with the options given, as calicoctl 0.x did. A range "
        "that touches an\nexisting pool, or that needs a CIDR smaller than a block, adds "
        "nothing. Prints nothing on\nsuccess.",
    .flags = add_flags,
    .args = range_args,
    .optional_values = ipip_optional,
    .client = true,
    .run = run_range_add,
};

static const struct ctl_command *const range_subcommands[] = {
    &range_add_command,
    NULL,
};

static const struct ctl_command range_command = {
    .name = "range",
    .summary = "add a range of addresses as IP pools",
    .description = "Add a range of addresses as IP pools (calicoctl 0.x's pool range).",
    .subcommands = range_subcommands,
};

static const struct ctl_flag remove_flags[] = {
    {"force", 0, NULL, "also pools with addresses in use: disabled, they go with the last one"},
    {0},
};

static const struct ctl_command remove_command = {
    .name = "remove",
    .usage_args = "CIDR...",
    .summary = "remove IP pools",
    .description = "Remove the pools with these CIDRs: all of them or, if one cannot be removed, "
                   "none. A pool\nwith addresses still in use is refused unless --force, "
                   "which disables it until its\nlast address is released and says so.",
    .flags = remove_flags,
    .args = cidr_args,
    .more_args = true,
    .client = true,
    .run = run_remove,
};

static const struct ctl_flag show_flags[] = {
    {"ipv4", 0, NULL, "show only the IPv4 pools"},
    {"ipv6", 0, NULL, "show only the IPv6 pools"},
    {0},
};

static const struct ctl_command show_command = {
    .name = "show",
    .summary = "show the IP pools and their options",
    .description = "Show the IP pools, one table per family, with the options that are not "
                   "the defaults.\n-o json prints the list of pools with every field.",
    .flags = show_flags,
    .client = true,
    .run = run_show,
};

static const struct ctl_command *const pool_subcommands[] = {
    &add_command, &range_command, &remove_command, &show_command, NULL,
};

const struct ctl_command ctl_pool_command = {
    .name = "pool",
    .summary = "add, remove and show IP pools",
    .description = "Manage the IP pools containers get their addresses from.",
    .subcommands = pool_subcommands,
};
