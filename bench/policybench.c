/*
 * policybench: the policy compiler and the nftables applier on a cluster-sized model, the
 * figures of issue 4:
 *
 *   - build the model: POLICIES policies, ENDPOINTS workload endpoints cluster-wide of which
 *     LOCAL on this host, a profile per network; labels app/tier/env/team from vocabularies,
 *     policies with 1-4 rules whose selectors name the same labels;
 *   - compile the whole ruleset of this host (the first policy_compiler_flush()) and load it into
 *     the kernel (agent_nft_apply(), one transaction);
 *   - incremental: CHANGES times, one policy's rules changed, one new local endpoint, one new
 *     remote endpoint, each from policy_model_put() to the kernel having it (note, flush, apply):
 *     p50, p90, p95, p99 and max. Each new endpoint is removed again once measured (not timed), so
 *     every one meets the host at the size asked for (200 local endpoints, not 200 plus those
 *     added before it: each local one makes the table the kernel checks at every commit larger).
 *     The goal: within 10 ms of reaching the agent (Felix, healthy, takes about 1.7 s at
 *     p90: a quoted figure, not measured here). The default of 200 changes each puts 20 changes
 *     above the p90: with 50, five decided it, and the few changes that bring a selector of
 *     thousands of endpoints into use (about 8 % of policy changes) made it swing by 10 ms from
 *     run to run;
 *   - selector evaluations per second: every policy selector against endpoint label sets;
 *   - peak RSS.
 *
 *   policybench [--policies N] [--endpoints N] [--local N] [--changes N] [--evals N] [--seed N]
 *               [--no-kernel] [--no-fast-path] [--trace] [--keep-table]
 *
 * Loads into the current network namespace's table inet "tabby": run it in a private namespace
 * (bench/policy.sh does). --no-kernel measures everything but the loads (no root needed).
 * --trace prints one line per incremental change on stderr: what its batch held, its time and
 * which way the applier took (fast, split, slow). --keep-table leaves the table in the kernel at
 * the end, to be looked at with nft in the same namespace.
 * Prints one RESULT line and a table.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/nft.h"
#include "policy/policy.h"

#define NODE "bench-host"

static const char *const tiers[] = {"web", "api", "db", "cache"};
static const char *const envs[] = {"prod", "staging", "dev"};
#define N_APPS     100
#define N_TEAMS    20
#define N_NETWORKS 10
#define N_NODES    50
#define SEL_MAX    256

struct bench {
	uint64_t rng;
	unsigned policies, endpoints, local, changes;
	uint64_t evals;
	bool kernel;
	FILE *trace;  /* --trace: one line per change */
	bool tracing; /* in the incremental changes, where --trace prints */
	struct policy_model *m;
	struct policy_compiler *c;
	struct agent_nft *nft;
	unsigned next_ep;              /* address counter */
	char (*sel)[SEL_MAX];          /* each policy's selector, "" until made */
	char last_key[POLICY_KEY_MAX]; /* of the last resource put */
	enum policy_kind last_kind;
	double *order;
	unsigned long fast[3];  /* incremental batches through the applier's fast path, by kind */
	unsigned long split[3]; /* and those split (new sets first through the fast path) */
};

static uint64_t next(struct bench *b)
{
	b->rng ^= b->rng >> 12;
	b->rng ^= b->rng << 25;
	b->rng ^= b->rng >> 27;
	return b->rng * 2685821657736338717ULL;
}

static unsigned rnd(struct bench *b, unsigned n)
{
	return (unsigned)(next(b) % n);
}

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int die(const char *what, int rc, const char *err)
{
	fprintf(stderr, "policybench: %s: %s (%d)\n", what, err && *err ? err : strerror(-rc), rc);
	exit(1);
}

static void put(struct bench *b, json_t *res)
{
	char err[512];
	char key[POLICY_KEY_MAX];
	enum policy_kind kind = policy_resource_key(res, key, sizeof(key));
	int rc = policy_model_put(b->m, res, err, sizeof(err));

	if (rc != 0)
		die("policy_model_put", rc, err);
	policy_compiler_note(b->c, kind, key);
	snprintf(b->last_key, sizeof(b->last_key), "%s", key);
	b->last_kind = kind;
	json_decref(res);
}

static json_t *resource(const char *kind, json_t *md, json_t *spec)
{
	return json_pack("{s:s,s:s,s:o,s:o}", "apiVersion", "v1", "kind", kind, "metadata", md,
	                 "spec", spec);
}

/* An endpoint address from a counter: 10.(128 + n / 65536).(n / 256).(n % 256), one /32. */
static void ep_addr(unsigned n, char *buf, size_t len)
{
	snprintf(buf, len, "10.%u.%u.%u/32", 128 + n / 65536, (n / 256) % 256, n % 256);
}

static void put_endpoint(struct bench *b, bool local)
{
	unsigned n = b->next_ep++;
	char addr[32], wl[32], node[32], ifc[32], app[16], team[16], net[16];

	ep_addr(n, addr, sizeof(addr));
	snprintf(wl, sizeof(wl), "task-%u", n);
	if (local)
		snprintf(node, sizeof(node), "%s", NODE);
	else
		snprintf(node, sizeof(node), "node-%u", 1 + rnd(b, N_NODES - 1));
	snprintf(ifc, sizeof(ifc), "cali%07x", n);
	snprintf(app, sizeof(app), "app-%u", rnd(b, N_APPS));
	snprintf(team, sizeof(team), "team-%u", rnd(b, N_TEAMS));
	snprintf(net, sizeof(net), "net-%u", rnd(b, N_NETWORKS));
	json_t *md = json_pack("{s:s,s:s,s:s,s:s,s:{s:s,s:s,s:s,s:s}}", "name", "eth0", "workload",
	                       wl, "orchestrator", "mesos", "node", node, "labels", "app", app,
	                       "tier", tiers[rnd(b, 4)], "env", envs[rnd(b, 3)], "team", team);
	json_t *spec = json_pack("{s:[s],s:[s],s:s}", "ipNetworks", addr, "profiles", net,
	                         "interfaceName", ifc);
	put(b, resource("workloadEndpoint", md, spec));
}

/* A selector over the label vocabularies, as operators write them: mostly one application
 * (about 100 endpoints cluster-wide), some a team's (about 330), a few broad ones (thousands). */
static void selector(struct bench *b, char *out, size_t len)
{
	unsigned x = rnd(b, 20);

	switch (x < 8 ? 0 : x < 13 ? 1 : x < 17 ? 3 : x < 19 ? 2 : 4) {
	case 0:
		snprintf(out, len, "app == 'app-%u'", rnd(b, N_APPS));
		break;
	case 1:
		snprintf(out, len, "app == 'app-%u' && tier == '%s'", rnd(b, N_APPS),
		         tiers[rnd(b, 4)]);
		break;
	case 2:
		snprintf(out, len, "tier in {'%s', '%s'} && env == '%s'", tiers[rnd(b, 4)],
		         tiers[rnd(b, 4)], envs[rnd(b, 3)]);
		break;
	case 3:
		snprintf(out, len, "team == 'team-%u' && env != 'dev'", rnd(b, N_TEAMS));
		break;
	default:
		snprintf(out, len, "has(app) && app not in {'app-%u'} && tier == '%s'",
		         rnd(b, N_APPS), tiers[rnd(b, 4)]);
	}
}

static json_t *rule(struct bench *b)
{
	char sel[256];
	static const int ports[] = {80, 443, 8080, 5432, 6379, 9090};

	selector(b, sel, sizeof(sel));
	switch (rnd(b, 4)) {
	case 0:
		return json_pack("{s:s,s:s,s:{s:s},s:{s:[i,i]}}", "action", "allow", "protocol",
		                 "tcp", "source", "selector", sel, "destination", "ports",
		                 ports[rnd(b, 6)], ports[rnd(b, 6)]);
	case 1:
		return json_pack("{s:s,s:s,s:{s:s},s:{s:[s]}}", "action", "allow", "protocol",
		                 "udp", "source", "selector", sel, "destination", "ports",
		                 "5000:5100");
	case 2:
		return json_pack("{s:s,s:{s:[s],s:s}}", "action", "deny", "source", "nets",
		                 "10.128.0.0/16", "selector", sel);
	default:
		return json_pack("{s:s,s:s,s:{s:s}}", "action", "allow", "protocol", "icmp",
		                 "source", "selector", sel);
	}
}

/* Policy i; a rewrite keeps its selector and order and changes its rules, the usual edit. */
static void put_policy(struct bench *b, unsigned i)
{
	char name[32], *sel = b->sel[i];
	json_t *ingress = json_array(), *egress = json_array();
	unsigned n = 1 + rnd(b, 4);

	snprintf(name, sizeof(name), "policy-%04u", i);
	if (!sel[0]) {
		selector(b, sel, SEL_MAX);
		b->order[i] = (double)rnd(b, 1000);
	}
	for (unsigned k = 0; k < n; k++)
		json_array_append_new(k == 3 ? egress : ingress, rule(b));
	json_t *spec = json_pack(
	    "{s:f,s:s,s:o,s:o,s:o,s:b,s:b}", "order", b->order[i], "selector", sel, "types",
	    json_array_size(egress) ? json_pack("[s,s]", "ingress", "egress")
	                            : json_pack("[s]", "ingress"),
	    "ingress", ingress, "egress", egress, "doNotTrack", 0, "preDNAT", 0);
	put(b, resource("policy", json_pack("{s:s}", "name", name), spec));
}

static void build(struct bench *b)
{
	char name[32], tag[32];

	put(b, resource("node", json_pack("{s:s}", "name", NODE),
	                json_pack("{s:{s:s}}", "bgp", "ipv4Address", "192.168.0.1/24")));
	for (unsigned i = 0; i < N_NETWORKS; i++) {
		/* Calico's profile for a network: members reach each other, everything goes out */
		snprintf(name, sizeof(name), "net-%u", i);
		snprintf(tag, sizeof(tag), "net-%u", i);
		put(b, resource("profile",
		                json_pack("{s:s,s:{s:s},s:[s]}", "name", name, "labels", "network",
		                          name, "tags", tag),
		                json_pack("{s:[{s:s,s:{s:s}}],s:[{s:s}]}", "ingress", "action",
		                          "allow", "source", "tag", tag, "egress", "action",
		                          "allow")));
	}
	for (unsigned i = 0; i < b->endpoints; i++)
		put_endpoint(b, i < b->local);
	for (unsigned i = 0; i < b->policies; i++)
		put_policy(b, i);
}

/* Flush the compiler and load the result; adds the two durations. */
static void trace_mix(FILE *out, const json_t *cmds);

static void flush_load(struct bench *b, double *compile_ms, double *load_ms, size_t *ncmds)
{
	json_t *cmds = NULL;
	char err[2048];
	double t0 = now_ms(), t1;
	int rc = policy_compiler_flush(b->c, b->m, &cmds);

	if (rc != 0)
		die("policy_compiler_flush", rc, NULL);
	t1 = now_ms();
	*compile_ms += t1 - t0;
	if (ncmds)
		*ncmds = cmds ? json_array_size(json_object_get(cmds, "nftables")) : 0;
	if (b->tracing && cmds)
		trace_mix(b->trace, cmds);
	if (cmds && b->kernel) {
		rc = agent_nft_apply(b->nft, cmds, err, sizeof(err));
		if (rc != 0)
			die("agent_nft_apply", rc, err);
	}
	*load_ms += now_ms() - t1;
	json_decref(cmds);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

struct dist {
	double p50, p90, p95, p99, max;
};

static struct dist dist_of(double *v, unsigned n)
{
	struct dist d = {0, 0, 0, 0, 0};

	if (!n)
		return d;
	qsort(v, n, sizeof(*v), cmp_double);
	d.p50 = v[n / 2];
	d.p90 = v[(n * 9) / 10 < n ? (n * 9) / 10 : n - 1];
	d.p95 = v[(n * 19) / 20 < n ? (n * 19) / 20 : n - 1];
	d.p99 = v[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1];
	d.max = v[n - 1];
	return d;
}

enum change { CHANGE_POLICY, CHANGE_LOCAL_EP, CHANGE_REMOTE_EP };

/* --trace: what a batch holds, as "verb what" counts (elements counted one by one). */
static void trace_mix(FILE *out, const json_t *cmds)
{
	static const char *const kinds[] = {
	    "add set",      "add element", "delete element", "add chain",   "flush chain",
	    "delete chain", "add rule",    "insert rule",    "delete rule", "delete set"};
	enum { KINDS = sizeof(kinds) / sizeof(kinds[0]) };
	unsigned n[KINDS] = {0}, other = 0;
	size_t i;
	const json_t *cmd;

	json_array_foreach (json_object_get(cmds, "nftables"), i, cmd) {
		const char *verb = json_object_iter_key(json_object_iter((json_t *)cmd));
		const json_t *in = json_object_get(cmd, verb);
		const char *what = json_object_iter_key(json_object_iter((json_t *)in));
		char k[64];
		unsigned j;
		snprintf(k, sizeof(k), "%s %s", verb, what ? what : "?");
		for (j = 0; j < KINDS && strcmp(k, kinds[j]) != 0; j++)
			;
		if (j == KINDS) {
			other++;
			continue;
		}
		const json_t *elem = json_object_get(json_object_get(in, what), "elem");
		n[j] += json_is_array(elem) ? (unsigned)json_array_size(elem) : 1;
	}
	for (unsigned j = 0; j < KINDS; j++)
		if (n[j])
			fprintf(out, " %s=%u", kinds[j], n[j]);
	if (other)
		fprintf(out, " other=%u", other);
}

/* CHANGES changes of one kind, each timed from the model put to the kernel having it. */
static struct dist incremental(struct bench *b, enum change kind, size_t *cmds_out,
                               struct dist *compile)
{
	double *total = calloc(b->changes, sizeof(double));
	double *comp = calloc(b->changes, sizeof(double));
	size_t ncmds = 0;

	if (!total || !comp)
		die("calloc", -ENOMEM, NULL);
	b->fast[kind] = b->split[kind] = 0;
	for (unsigned i = 0; i < b->changes; i++) {
		static const char *const names[] = {"policy", "local-ep", "remote-ep"};
		unsigned long f0 = 0, f1 = 0, s0 = 0, s1 = 0, sp0 = 0;
		double c = 0, l = 0, t0 = now_ms();
		if (b->kernel) {
			agent_nft_counts(b->nft, &f0, &s0);
			sp0 = agent_nft_splits(b->nft);
		}
		if (b->trace)
			fprintf(b->trace, "%s %u:", names[kind], i);
		b->tracing = b->trace != NULL;
		if (kind == CHANGE_POLICY)
			put_policy(b, rnd(b, b->policies));
		else
			put_endpoint(b, kind == CHANGE_LOCAL_EP);
		flush_load(b, &c, &l, &ncmds);
		total[i] = now_ms() - t0;
		b->tracing = false;
		if (b->kernel) {
			/* the timed change only, not the removal below */
			agent_nft_counts(b->nft, &f1, &s1);
			b->fast[kind] += f1 - f0;
			b->split[kind] += agent_nft_splits(b->nft) - sp0;
		}
		if (b->trace) {
			const char *path = "none";
			if (b->kernel)
				path = agent_nft_splits(b->nft) != sp0 ? "split"
				       : f1 != f0                      ? "fast"
				       : s1 != s0                      ? "slow"
				                                       : "none";
			fprintf(b->trace, " | %.2f ms (compile %.2f, apply %.2f) %s\n", total[i], c,
			        l, path);
		}
		comp[i] = c;
		*cmds_out += ncmds;
		if (kind != CHANGE_POLICY) {
			/* back to the size asked for, untimed */
			double u = 0;
			int rc = policy_model_remove(b->m, b->last_kind, b->last_key);
			if (rc != 0)
				die("policy_model_remove", rc, b->last_key);
			policy_compiler_note(b->c, b->last_kind, b->last_key);
			flush_load(b, &u, &u, NULL);
		}
	}
	struct dist d = dist_of(total, b->changes);
	*compile = dist_of(comp, b->changes);
	free(total);
	free(comp);
	*cmds_out /= b->changes ? b->changes : 1;
	return d;
}

/* Every policy's selector against endpoints' own label sets until evals evaluations are done. */
static double selector_rate(struct bench *b, uint64_t *matched)
{
	unsigned np, ne;
	struct policy_policy *const *pol = policy_model_policies(b->m, &np);
	struct policy_endpoint *const *eps = policy_model_endpoints(b->m, &ne);
	uint64_t done = 0, hit = 0;
	double t0 = now_ms();

	if (!np || !ne)
		return 0;
	while (done < b->evals) {
		for (unsigned e = 0; e < ne && done < b->evals; e++) {
			const struct policy_labels *l = &eps[e]->labels;
			for (unsigned p = 0; p < np; p++)
				hit += policy_selector_match_labels(pol[p]->selector, l);
			done += np;
		}
	}
	*matched = hit;
	return (double)done / ((now_ms() - t0) / 1e3);
}

static long peak_rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kib = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmHWM:", 6))
			kib = strtol(line + 6, NULL, 10);
	fclose(f);
	return kib;
}

static void usage(void)
{
	fprintf(stderr, "usage: policybench [--policies N] [--endpoints N] [--local N] "
	                "[--changes N] [--evals N] [--seed N] [--no-kernel] [--no-fast-path] "
	                "[--trace] [--keep-table]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"policies", required_argument, NULL, 'p'},
	                                     {"endpoints", required_argument, NULL, 'e'},
	                                     {"local", required_argument, NULL, 'l'},
	                                     {"changes", required_argument, NULL, 'c'},
	                                     {"evals", required_argument, NULL, 'v'},
	                                     {"seed", required_argument, NULL, 's'},
	                                     {"no-kernel", no_argument, NULL, 'n'},
	                                     {"no-fast-path", no_argument, NULL, 'f'},
	                                     {"trace", no_argument, NULL, 't'},
	                                     {"keep-table", no_argument, NULL, 'k'},
	                                     {NULL, 0, NULL, 0}};
	struct bench b = {.rng = 0x5eed,
	                  .policies = 1000,
	                  .endpoints = 10000,
	                  .local = 200,
	                  .changes = 200,
	                  .evals = 5000000,
	                  .kernel = true};
	struct policy_compile_config cfg = {.node = NODE};
	char err[512];
	int opt, rc;
	bool fast_path = true, keep_table = false;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'p':
			b.policies = (unsigned)atoi(optarg);
			break;
		case 'e':
			b.endpoints = (unsigned)atoi(optarg);
			break;
		case 'l':
			b.local = (unsigned)atoi(optarg);
			break;
		case 'c':
			b.changes = (unsigned)atoi(optarg);
			break;
		case 'v':
			b.evals = strtoull(optarg, NULL, 10);
			break;
		case 's':
			b.rng = strtoull(optarg, NULL, 0) | 1;
			break;
		case 'n':
			b.kernel = false;
			break;
		case 'f':
			fast_path = false;
			break;
		case 't':
			b.trace = stderr;
			break;
		case 'k':
			keep_table = true;
			break;
		default:
			usage();
		}
	}
	if (!b.policies || b.local > b.endpoints)
		usage();
	b.sel = calloc(b.policies, sizeof(*b.sel));
	b.order = calloc(b.policies, sizeof(*b.order));
	if (!b.sel || !b.order)
		die("calloc", -ENOMEM, NULL);
	b.m = policy_model_new();
	if (!b.m)
		die("policy_model_new", -ENOMEM, NULL);
	if ((rc = policy_compiler_new(&cfg, &b.c)) != 0)
		die("policy_compiler_new", rc, NULL);
	if (b.kernel) {
		if ((rc = agent_nft_new(&b.nft)) != 0)
			die("agent_nft_new", rc, NULL);
		if ((rc = agent_nft_delete_table(b.nft, "tabby", err, sizeof(err))) != 0)
			die("agent_nft_delete_table", rc, err);
		agent_nft_use_fast_path(b.nft, fast_path);
	}

	double t0 = now_ms();
	build(&b);
	double build_ms = now_ms() - t0;

	double full_compile = 0, full_load = 0;
	size_t full_cmds = 0;
	flush_load(&b, &full_compile, &full_load, &full_cmds);

	size_t c_pol = 0, c_local = 0, c_remote = 0;
	struct dist k_pol, k_local, k_remote;
	struct dist d_pol = incremental(&b, CHANGE_POLICY, &c_pol, &k_pol);
	struct dist d_local = incremental(&b, CHANGE_LOCAL_EP, &c_local, &k_local);
	struct dist d_remote = incremental(&b, CHANGE_REMOTE_EP, &c_remote, &k_remote);

	uint64_t matched = 0;
	double rate = selector_rate(&b, &matched);
	long rss = peak_rss_kib();

	printf("RESULT policies=%u endpoints=%u local=%u build_ms=%.1f compile_ms=%.1f "
	       "load_ms=%.1f commands=%zu policy_p50=%.2fms policy_p90=%.2fms policy_p95=%.2fms "
	       "policy_p99=%.2fms local_ep_p50=%.2fms local_ep_p90=%.2fms local_ep_p95=%.2fms "
	       "local_ep_p99=%.2fms remote_ep_p50=%.2fms remote_ep_p90=%.2fms remote_ep_p95=%.2fms "
	       "remote_ep_p99=%.2fms evals/s=%.0f rss=%.1fMiB kernel=%s\n",
	       b.policies, b.endpoints, b.local, build_ms, full_compile, full_load, full_cmds,
	       d_pol.p50, d_pol.p90, d_pol.p95, d_pol.p99, d_local.p50, d_local.p90, d_local.p95,
	       d_local.p99, d_remote.p50, d_remote.p90, d_remote.p95, d_remote.p99, rate,
	       (double)rss / 1024, b.kernel ? "yes" : "no");

	const char *goal = "goal 10 ms; Felix p90 1.7 s (quoted)";
	printf("\n%-46s | %-37s | %s\n", "figure", "tabby", "anchor");
	printf("%-46s | %34.1f ms | %s\n", "model build (put every resource)", build_ms, "-");
	printf("%-46s | %34.1f ms | %s\n", "full compile of this host's ruleset", full_compile,
	       "-");
	printf("%-46s | %34.1f ms | %s\n",
	       b.kernel ? "full load into the kernel (one transaction)"
	                : "full load into the kernel: not run",
	       full_load, "-");
	printf("%-46s | %34zu    | %s\n", "  nftables commands in the full ruleset", full_cmds,
	       "-");
	printf("%-46s | %5.2f / %5.2f / %5.2f / %5.2f / %5.2f | %s\n",
	       "changed policy, p50/p90/p95/p99/max ms", d_pol.p50, d_pol.p90, d_pol.p95, d_pol.p99,
	       d_pol.max, goal);
	printf("%-46s | %5.2f / %5.2f / %5.2f / %5.2f / %5.2f | %s\n",
	       "new local endpoint, p50/p90/p95/p99/max ms", d_local.p50, d_local.p90, d_local.p95,
	       d_local.p99, d_local.max, goal);
	printf("%-46s | %5.2f / %5.2f / %5.2f / %5.2f / %5.2f | %s\n",
	       "new remote endpoint, p50/p90/p95/p99/max ms", d_remote.p50, d_remote.p90,
	       d_remote.p95, d_remote.p99, d_remote.max, goal);
	printf("%-46s | %34.2e /s | %s\n", "selector evaluations", rate, "-");
	printf("%-46s | %34.1f MiB| %s\n", "peak RSS", (double)rss / 1024, "-");
	printf(
	    "(incremental: from policy_model_put() to the kernel having the change: note, flush, "
	    "%s; about %zu / %zu / %zu commands per change, of which the compile (flush) p50 "
	    "%.2f / %.2f / %.2f ms; %u changes each, of which %lu / %lu / %lu went through the "
	    "applier's fast path (libnftnl), %lu / %lu / %lu were split (new sets through "
	    "libnftnl, "
	    "the rest through libnftables), the rest went through libnftables%s; %llu of the "
	    "evaluations matched)\n",
	    b.kernel ? "apply" : "no apply", c_pol, c_local, c_remote, k_pol.p50, k_local.p50,
	    k_remote.p50, b.changes, b.fast[CHANGE_POLICY], b.fast[CHANGE_LOCAL_EP],
	    b.fast[CHANGE_REMOTE_EP], b.split[CHANGE_POLICY], b.split[CHANGE_LOCAL_EP],
	    b.split[CHANGE_REMOTE_EP], fast_path ? "" : " (--no-fast-path)",
	    (unsigned long long)matched);

	if (b.kernel && !keep_table)
		agent_nft_delete_table(b.nft, "tabby", err, sizeof(err));
	agent_nft_free(b.nft);
	policy_compiler_free(b.c);
	policy_model_free(b.m);
	free(b.sel);
	free(b.order);
	return 0;
}
