/*
 * libFuzzer target for the selector language: policy_selector_parse() on arbitrary bytes (cut
 * at the first NUL, as a C string would be).
 *
 * A refused input must say where (an offset within the text, a message "at column N: ...").
 * An accepted one must have a canonical form that parses again and means the same: the second
 * generation of canonical text is a fixed point, and so is the first unless it holds "!!" (Calico
 * prints the NOT of a parenthesised NOT as "!!x", which reads back as x); both generations must
 * match the same of a few fixed label sets, and the UID must have its fixed shape. Any violated
 * expectation aborts, which libFuzzer reports as a crash.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct policy_label set_a[] = {
    {"a", "b"}, {"has", ""}, {"in", "x"}, {"k8s-app", "kube-dns"}, {"x", "it\"s"},
};
static const struct policy_label set_b[] = {
    {"a", ""},
    {"b", "b"},
    {"c", "'"},
    {"role", "db"},
};

static struct policy_selector *must_parse(const char *text)
{
	struct policy_selector *s = NULL;
	char err[256];

	if (policy_selector_parse(text, &s, NULL, err, sizeof err) != 0) {
		fprintf(stderr, "canonical [%s] does not parse: %s\n", text, err);
		abort();
	}
	return s;
}

/* A conjunction's literals (policy_selector_literals()) are selectors in canonical form that
 * do not split again, and decide as s does: every positive one matches and no negated one. */
static void check_literals(const struct policy_selector *s, const struct policy_labels *sets,
                           size_t n_sets)
{
	const struct policy_selector_literal *lit, *sub;
	unsigned n = policy_selector_literals(s, &lit);
	bool all[8];

	for (size_t i = 0; i < n_sets && i < 8; i++)
		all[i] = true;
	for (unsigned k = 0; k < n; k++) {
		struct policy_selector *l = must_parse(lit[k].canonical);
		if (strcmp(policy_selector_canonical(l), lit[k].canonical) != 0 ||
		    strcmp(policy_selector_uid(l), lit[k].uid) != 0 ||
		    policy_selector_literals(l, &sub) != 0)
			abort();
		for (size_t i = 0; i < n_sets && i < 8; i++)
			all[i] =
			    all[i] && policy_selector_match_labels(l, &sets[i]) != lit[k].negated;
		policy_selector_free(l);
	}
	for (size_t i = 0; n > 0 && i < n_sets && i < 8; i++)
		if (all[i] != policy_selector_match_labels(s, &sets[i]))
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct policy_labels sets[] = {
	    {NULL, 0},
	    {(struct policy_label *)set_a, sizeof set_a / sizeof set_a[0]},
	    {(struct policy_label *)set_b, sizeof set_b / sizeof set_b[0]},
	};
	struct policy_selector *s = NULL, *s2, *s3;
	char *text = malloc(size + 1);
	char err[256];
	size_t off = SIZE_MAX;
	const char *c1, *c2;
	int rv;

	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	rv = policy_selector_parse(text, &s, &off, err, sizeof err);
	if (rv != 0) {
		char prefix[48];

		snprintf(prefix, sizeof prefix, "at column %zu: ", off + 1);
		if (rv != -EINVAL || s != NULL || off > strlen(text) ||
		    strncmp(err, prefix, strlen(prefix)) != 0)
			abort();
		free(text);
		return 0;
	}
	c1 = policy_selector_canonical(s);
	s2 = must_parse(c1);
	c2 = policy_selector_canonical(s2);
	s3 = must_parse(c2);
	if (strcmp(policy_selector_canonical(s3), c2) != 0)
		abort();
	if (strstr(c1, "!!") == NULL && strcmp(c1, c2) != 0)
		abort();
	for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
		if (policy_selector_match_labels(s, &sets[i]) !=
		    policy_selector_match_labels(s2, &sets[i]))
			abort();
	if (strlen(policy_selector_uid(s)) != POLICY_UID_LEN - 1 ||
	    strncmp(policy_selector_uid(s), "s:", 2) != 0)
		abort();
	if (policy_selector_is_all(s) && !policy_selector_match_labels(s, &sets[1]))
		abort();
	check_literals(s, sets, sizeof sets / sizeof sets[0]);
	policy_selector_free(s3);
	policy_selector_free(s2);
	policy_selector_free(s);
	free(text);
	return 0;
}
