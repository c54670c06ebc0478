/*
 * The operator CLI: every `tabby` subcommand except `tabby agent`.
 *
 * Exit statuses: 0 success; 1 the operation failed (the agent answered with an error, could not be
 * reached, or a check such as `cluster hash` found a difference); 2 the command line was wrong
 * (unknown command or flag, missing or extra argument, bad flag value).
 *
 * The second half of this header is internal to ctl/: the command tables and helpers shared by
 * ctl.c and the cmd_*.c files, exposed so the unit tests can drive the parser directly.
 */
#ifndef TABBY_CTL_H
#define TABBY_CTL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <jansson.h>

#include "api/api.h"
#include "policy/policy.h"

/* Run the CLI with argv[0] the program and argv[1..] the command; prints to stdout and stderr and
 * returns the exit status. */
int ctl_main(int argc, char **argv);

/* ctl_main() with explicit output streams (results to out, diagnostics to err). */
int ctl_run(int argc, char **argv, FILE *out, FILE *err);

/* ------------------------------------------------------------------------------------------ */
/* Internal to ctl/                                                                           */

#define CTL_DEFAULT_SOCKET    "/run/tabby/tabby.sock"
#define CTL_DEFAULT_TIMEOUT_S 30
/* Most flags a single command can have, its own and the common ones together. */
#define CTL_MAX_FLAGS 16
/* Positional arguments a command can take (a command whose last argument repeats, such as
 * `pool add CIDR...`, refuses more). */
#define CTL_MAX_ARGS 64
/* Values of repeatable flags (--pool, --attr) one command line can carry, all flags together. */
#define CTL_MAX_REPEATS 64

struct ctl_flag {
	const char *name;       /* long form, without "--" */
	char short_name;        /* 0 if none */
	const char *value_name; /* NULL for a boolean flag, else how help shows its value */
	const char *help;
};

/* A flag whose value may be left out: alone it has the value implicit, "--flag=VALUE" has VALUE,
 * and the next word is its value only when is_value says it is one (so that in "--ipip
 * --nat-outgoing" and "--ipip 10.0.0.0/16" the next word stays what it is, as with calicoctl
 * 0.x's bare --ipip, which meant "always").
 */
struct ctl_optional_value {
	const char *flag; /* an own flag of the command, with a value_name */
	bool (*is_value)(const char *word);
	const char *implicit;
};

struct ctl_ctx;

struct ctl_command {
	const char *name;
	const char *usage_args;        /* positional part of the usage line, e.g. "KEY VALUE" */
	const char *summary;           /* one line, for command lists */
	const char *description;       /* paragraph for --help; NULL to reuse summary */
	const struct ctl_flag *flags;  /* own flags, ending with {0}; NULL for none */
	const char *const *args;       /* required positional names, ending with NULL;
	                                  NULL for none */
	bool more_args;                /* the last of args may be given more than once; with
	                                  no args, any number of optional arguments that the
	                                  command checks itself */
	const char *const *repeatable; /* names of own flags that may be given more than once
	                                  (see ctl_flag_nth()), ending with NULL; NULL for none */
	const struct ctl_optional_value *optional_values; /* ending with {0}; NULL for none */
	bool client; /* takes --socket, --address, --timeout and -o */
	bool output; /* takes -o without being a client command */
	/* A word starting with '-' that is none of the command's flags is a positional argument:
	 * a selector may start with a label such as "-a". */
	bool dash_args;
	const char *const *formats;      /* the -o values it takes instead of text and json,
	                                    the first the default, ending with NULL; NULL for
	                                    text and json */
	int (*run)(struct ctl_ctx *ctx); /* NULL for a group of subcommands */
	const struct ctl_command *const *subcommands; /* ending with NULL; NULL for a leaf */
};

/* Everything a command's run() needs: the parsed command line, the output streams and, once
 * ctl_call() has opened it, the API client. */
struct ctl_ctx {
	FILE *out;
	FILE *err;
	char prog[64]; /* "tabby store get", the prefix of every message */
	const struct ctl_command *cmd;
	const struct ctl_flag *flags[CTL_MAX_FLAGS]; /* the flags this command accepts */
	const char *values[CTL_MAX_FLAGS];           /* value of each, NULL if not given, "" for a
	                                                set boolean */
	int nflags;
	char *args[CTL_MAX_ARGS]; /* positional arguments */
	int nargs;
	/* Every value of the repeatable flags in command-line order, and the index in flags of
	 * the flag each belongs to. */
	const char *repeats[CTL_MAX_REPEATS];
	int repeat_flag[CTL_MAX_REPEATS];
	int nrepeats;
	bool help;          /* -h/--help was given: usage has been printed, nothing else to do */
	bool json;          /* -o json */
	const char *format; /* the -o value, or the default: "text" or the command's first */
	int timeout_ms;     /* --timeout, for the API client */
	struct api_client *client;
};

extern const struct ctl_command ctl_cluster_command;
extern const struct ctl_command ctl_store_command;
extern const struct ctl_command ctl_pool_command;
extern const struct ctl_command ctl_ipam_command;
extern const struct ctl_command ctl_selector_command;
extern const struct ctl_command ctl_create_command;
extern const struct ctl_command ctl_apply_command;
extern const struct ctl_command ctl_replace_command;
extern const struct ctl_command ctl_delete_command;
extern const struct ctl_command ctl_get_command;
extern const struct ctl_command ctl_profile_command;
extern const struct ctl_command ctl_policy_command;
extern const struct ctl_command ctl_backup_command;

/* Parse argv[0..argc) (the words after the command's name) against cmd into ctx, which must have
 * out, err, prog and cmd set. Flags and positional arguments may be mixed; "--" ends flags;
 * "--flag=value", "--flag value", "-o json" and "-ojson" are accepted (a flag whose value is
 * optional: see struct ctl_optional_value). A flag given twice keeps
 * its last value, and every value too when cmd lists it as repeatable. Prints usage to ctx->out
 * and sets ctx->help for -h/--help. Returns 0, or 2 after printing an error that names the
 * offending word to ctx->err. */
int ctl_parse(struct ctl_ctx *ctx, int argc, char **argv);

/* Print cmd's usage text ("Usage: ..."), with prog its full name, to f. */
void ctl_usage(FILE *f, const char *prog, const struct ctl_command *cmd);

/* The value of the named flag (long name), NULL if it was not given, "" for a set boolean flag.
 * Of a flag given more than once, the last value. */
const char *ctl_flag(const struct ctl_ctx *ctx, const char *name);

/* The n-th value (from 0, in command-line order) of the named repeatable flag, NULL when it was
 * given fewer than n + 1 times. */
const char *ctl_flag_nth(const struct ctl_ctx *ctx, const char *name, int n);

/* --consistency (serializable or linearizable) into *linearizable, left as it is when the flag is
 * absent. Returns 0, or 2 after printing an error naming the value. */
int ctl_flag_consistency(const struct ctl_ctx *ctx, bool *linearizable);
/* The whole of path ("-": standard input), at most max bytes, into a malloc()ed buffer with a NUL
 * after it that *len does not count. Returns 0, or 1 after printing why not ("cannot open PATH:
 * why", "PATH is larger than N MiB", "cannot read PATH: why"). */
int ctl_read_file(struct ctl_ctx *ctx, const char *path, size_t max, char **text, size_t *len);
/* Parse the named flag as an integer in [min, INT64_MAX] into *out (unchanged when the flag is
 * absent). Returns 0, or 2 after printing an error naming the flag and value. */
int ctl_flag_int(const struct ctl_ctx *ctx, const char *name, int64_t min, int64_t *out);

/* Print "PROG: message" and a pointer to --help to ctx->err. Returns 2, the exit status for a
 * wrong command line. */
int ctl_usage_error(const struct ctl_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Parse the IP address s into *a; on failure print "'s' is not an IP address" and return 2 (a
 * usage error), else 0. */
int ctl_parse_addr(const struct ctl_ctx *ctx, const char *s, struct ipam_addr *a);

/* Print "PROG: message" to ctx->err. Returns 1, the exit status for a failed operation. */
int ctl_fail(const struct ctl_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Open ctx->client for the agent chosen by --address, else --socket, else $TABBY_SOCKET, else
 * CTL_DEFAULT_SOCKET, unless it is already open. Returns 0, or 1 after printing why not. */
int ctl_client(struct ctl_ctx *ctx);

/* GET path, an agent path of one v1 resource ("/v1/KIND/KEY"): *resource is set to the resource
 * (a new reference), or to NULL when it does not exist (404). Returns 0, or 1 after printing why
 * not. */
int ctl_get_resource(struct ctl_ctx *ctx, const char *path, json_t **resource);

/* Whether resp is an agent error body whose error.code is code. */
bool ctl_error_is(const json_t *resp, const char *code);

/* Print the message of a failed client call (rv, msg from an api_* function; msg is freed) or of
 * an agent error answer (status, response), with a hint when the agent could not be reached.
 * Returns 1. */
int ctl_fail_api(struct ctl_ctx *ctx, int rv, char *msg, int status, const json_t *response);

/* Send a request to the agent chosen by --address / --socket / TABBY_SOCKET (opening the client on
 * first use). On a 2xx answer sets *response (a new reference, NULL for an empty body) and
 * returns 0; otherwise prints the agent's or the client's error message and returns 1. */
int ctl_call(struct ctl_ctx *ctx, const char *method, const char *path, json_t *body,
             json_t **response);

/* Send a request like ctl_call() but let the caller judge the answer: returns 0 with *status the
 * HTTP status (any) and *response the body (a new reference, NULL when empty), or 1 after printing
 * why the agent could not be asked. */
int ctl_request(struct ctl_ctx *ctx, const char *method, const char *path, json_t *body,
                int *status, json_t **response);

/* Text tables: columns two spaces apart, each as wide as its widest cell, the last one unpadded;
 * cells holds nrows rows of ncols (at most CTL_MAX_COLUMNS) cells, row 0 the header. */
#define CTL_CELL_MAX    512
#define CTL_MAX_COLUMNS 8
typedef char ctl_cell[CTL_CELL_MAX];
void ctl_put_columns(FILE *f, const ctl_cell *cells, int ncols, size_t nrows);

/* Print v as indented JSON followed by a newline. Returns 0, or 1 if it could not be written. */
int ctl_print_json(struct ctl_ctx *ctx, const json_t *v);

/* Build "base" + escaped key + query ("" or "?..."), malloc()ed; NULL when out of memory. */
char *ctl_key_path(const char *base, const char *key, const char *query);

/* Text output of the IPAM commands, from the agent's JSON answers (so that it can be tested
 * without an agent). Each returns 0, or -1 when the answer lacks what it needs or memory ran out.
 */

/* `pool show`: the pools of answer ({"pools": [POOL...]}), one calicoctl 0.x (prettytable) table
 * per family asked for. */
int ctl_pool_table(FILE *f, const json_t *answer, bool ipv4, bool ipv6);
/* `ipam show`: POOL TOTAL IN USE FREE, from the answer of GET /v1/ipam/usage. */
int ctl_ipam_usage_table(FILE *f, const json_t *answer);
/* `ipam show --blocks`: BLOCK POOL AFFINITY USED SIZE FULL%, from GET /v1/ipam/blocks. */
int ctl_ipam_blocks_table(FILE *f, const json_t *answer);
/* `ipam show --ip`: whether the address is assigned and, if so, to what, from GET
 * /v1/ipam/ips/ADDR. */
int ctl_ipam_ip_text(FILE *f, const json_t *answer);

/* out = a - b, for a a decimal number of any length (an IPv6 pool's size). Returns false when a
 * is not a decimal number, b > a, or out (size bytes) is too small. */
bool ctl_decimal_sub(const char *a, uint64_t b, char *out, size_t size);

/* ---- v1 resources: tabby create | apply | replace | delete | get (cmd_resource.c) ---- */

/* The resources of a file's text (name is how messages call the file): policy_doc_parse_texts(),
 * then policy_resource_normalize_texts() of each, so that a bad file is refused before anything
 * is sent. Sets *raw (the resources as written, but with the YAML numbers and booleans that were
 * taken as their text quoted, so that an agent reads them alike) and *normalized (the same count,
 * normalized), new references. Returns 0, or -1 with err holding "NAME: line L, column C: why" for
 * text that does not parse, "NAME: no resources" for a file without any, or exactly
 * policy_resource_normalize()'s message for a bad resource. */
int ctl_resource_read(const char *name, const char *text, size_t len, json_t **raw,
                      json_t **normalized, char *err, size_t errlen);

/* The line calicoctl 1.x printed after a change: "Successfully applied 1 'policy' resource(s)",
 * with the kind when every resource of normalized (an array) has the same one, else
 * "Successfully applied 3 resource(s)". verb: "created", "applied", "replaced" or "deleted". */
void ctl_resource_success(FILE *f, const char *verb, const json_t *normalized);

/* `tabby get` output of items (an array of normalized resources of kind) in format "ps" (a table
 * of the identifying columns), "wide" (more columns), "yaml" or "json". single: print items[0]
 * alone rather than the list (a NAME that identified one resource). Returns 0, or -1 when memory
 * ran out or the YAML could not be produced. */
int ctl_resource_print(FILE *f, enum policy_kind kind, const json_t *items, const char *format,
                       bool single);

/* ---- calicoctl 0.x profiles: tabby profile ... (cmd_profile.c) ---- */

/* Whether name is a 0.x profile (or tag) name: 1 to 39 characters of [A-Za-z0-9._-]. */
bool ctl_profile_name_ok(const char *name);

/* A new profile as `profile add` creates it: tags [name], inbound "allow from tag name",
 * outbound "allow". NULL when out of memory. */
json_t *ctl_profile_default(const char *name);

/* A 0.x port list ("80", "80,443", "1000:2000", "1000-2000", mixed) as a v1 ports array: ports as
 * integers, ranges as "lo:hi" (a range of one port as the port). Returns 0, or -1 with a message
 * in err. */
int ctl_ports_parse(const char *s, json_t **ports, char *err, size_t errlen);

/* The rule of a 0.x rule specification, words[0..n) starting with the action:
 *   (allow|deny) [PROTOCOL [type N [code N]]] [from [ports P] [tag T] [cidr C | C]]
 *   [to [ports P] [tag T] [cidr C | C]]
 * as a v1 rule (not yet normalized: values are checked by policy_resource_normalize()). Ports
 * only with tcp or udp, type and code only with icmp or icmpv6. Returns 0, or -1 with a message
 * naming the offending word in err. */
int ctl_rule_parse(char *const *words, int n, json_t **rule, char *err, size_t errlen);

/* One line describing a normalized v1 rule the way calicoctl 0.x's `rule show` did ("allow tcp
 * from tag DB to ports 3306"), with v1-only fields in the same style ("not tag X", "selector
 * \"...\"", "ipv6", ...). A malloc()ed string, NULL when out of memory. */
char *ctl_rule_text(const json_t *rule);

/* A v1 rule in the backend (etcd) rule JSON of calico-behaviour.md 3.8 (src_tag, dst_ports,
 * !src_net, icmp_type, ...; action pass as "next-tier"). NULL when out of memory. */
json_t *ctl_rule_to_backend(const json_t *rule);
/* The reverse: a v1 rule from backend rule JSON (a missing action is allow). Returns 0, or -1
 * with err naming an unknown key or a value of the wrong type. The result is not normalized. */
int ctl_rule_from_backend(const json_t *backend, json_t **rule, char *err, size_t errlen);

/* `rule show` of a normalized profile: "Inbound rules:", each ingress rule numbered from 1 right
 * aligned in 4 columns, "Outbound rules:", the egress rules. Returns 0 or -1 (out of memory). */
int ctl_profile_rules_text(FILE *f, const json_t *profile);
/* `rule json` of a normalized profile: {"id": NAME, "inbound_rules": [...], "outbound_rules":
 * [...]} in backend rule JSON. NULL when out of memory. */
json_t *ctl_profile_rules_json(const json_t *profile);
/* `rule update`: profile (normalized) with its rules replaced by those of rules ({"id"?: NAME,
 * "inbound_rules": [...], "outbound_rules": [...]}, backend rule JSON), normalized. Returns 0 and
 * a new *updated, or -1 with err saying what is wrong with rules (an "id" other than the
 * profile's name, a missing list, an unknown key, or policy_resource_normalize()'s message). */
int ctl_profile_rules_update(const json_t *profile, const json_t *rules, json_t **updated,
                             char *err, size_t errlen);

/* A calicoctl 0.x (prettytable) box: centred headers, left-aligned cells, nrows rows of ncols
 * strings (ncols at most CTL_MAX_COLUMNS). */
void ctl_put_box(FILE *f, const char *const *headers, int ncols, const char *const *cells,
                 size_t nrows);
/* `profile show`: a box of the names of profiles (normalized profiles, in name order); with
 * endpoints (normalized workload and host endpoints) not NULL, the --detailed box of each
 * profile's endpoints. Returns 0 or -1 (out of memory). */
int ctl_profile_table(FILE *f, const json_t *profiles, const json_t *endpoints);

/* ---- tabby policy trace (cmd_policy.c) ---- */

/* The text of a trace: answer is policy_trace_request()'s (and POST /v1/policy/trace's) answer.
 * The verdict, the flow (and for a reply the opening packet that decides it), then for the
 * sender's egress and the receiver's ingress who it is, why, and each policy and profile
 * consulted. Returns 0, or -1 when answer is not a trace. */
int ctl_policy_trace_text(FILE *f, const json_t *answer);

#endif
