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

struct ctl_ctx;

struct ctl_command {
	const char *name;
	const char *usage_args;          /* positional part of the usage line, e.g. "KEY VALUE" */
	const char *summary;             /* one line, for command lists */
	const char *description;         /* paragraph for --help; NULL to reuse summary */
	const struct ctl_flag *flags;    /* own flags, ending with {0}; NULL for none */
	const char *const *args;         /* required positional names, ending with NULL;
	                                    NULL for none */
	bool more_args;                  /* the last of args may be given more than once */
	const char *const *repeatable;   /* names of own flags that may be given more than once
	                                    (see ctl_flag_nth()), ending with NULL; NULL for none */
	bool client;                     /* takes --socket, --address, --timeout and -o */
	bool output;                     /* takes -o without being a client command */
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
	bool help;      /* -h/--help was given: usage has been printed, nothing else to do */
	bool json;      /* -o json */
	int timeout_ms; /* --timeout, for the API client */
	struct api_client *client;
};

extern const struct ctl_command ctl_cluster_command;
extern const struct ctl_command ctl_store_command;
extern const struct ctl_command ctl_pool_command;
extern const struct ctl_command ctl_ipam_command;

/* Parse argv[0..argc) (the words after the command's name) against cmd into ctx, which must have
 * out, err, prog and cmd set. Flags and positional arguments may be mixed; "--" ends flags;
 * "--flag=value", "--flag value", "-o json" and "-ojson" are accepted. A flag given twice keeps
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

/* Parse the named flag as an integer in [min, INT64_MAX] into *out (unchanged when the flag is
 * absent). Returns 0, or 2 after printing an error naming the flag and value. */
int ctl_flag_int(const struct ctl_ctx *ctx, const char *name, int64_t min, int64_t *out);

/* Print "PROG: message" and a pointer to --help to ctx->err. Returns 2, the exit status for a
 * wrong command line. */
int ctl_usage_error(const struct ctl_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Print "PROG: message" to ctx->err. Returns 1, the exit status for a failed operation. */
int ctl_fail(const struct ctl_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Open ctx->client for the agent chosen by --address, else --socket, else $TABBY_SOCKET, else
 * CTL_DEFAULT_SOCKET, unless it is already open. Returns 0, or 1 after printing why not. */
int ctl_client(struct ctl_ctx *ctx);

/* Print the message of a failed client call (rv, msg from an api_* function; msg is freed) or of
 * an agent error answer (status, response), with a hint when the agent could not be reached.
 * Returns 1. */
int ctl_fail_api(struct ctl_ctx *ctx, int rv, char *msg, int status, const json_t *response);

/* Send a request to the agent chosen by --address / --socket / TABBY_SOCKET (opening the client on
 * first use). On a 2xx answer sets *response (a new reference, NULL for an empty body) and
 * returns 0; otherwise prints the agent's or the client's error message and returns 1. */
int ctl_call(struct ctl_ctx *ctx, const char *method, const char *path, json_t *body,
             json_t **response);

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

#endif
