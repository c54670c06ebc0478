/*
 * Shared by the policy unit tests: normalized resources written as JSON text with ` for ", and
 * putting them into a model. Include after <cmocka.h>.
 */
#ifndef TABBY_POLICY_TESTS_FIXTURE_H
#define TABBY_POLICY_TESTS_FIXTURE_H

#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

/* JSON text with ` for ". */
static inline json_t *J(const char *text)
{
	char *s = strdup(text);
	json_error_t e;
	json_t *v;

	assert_non_null(s);
	for (char *p = s; *p != '\0'; p++)
		if (*p == '`')
			*p = '"';
	v = json_loads(s, 0, &e);
	if (v == NULL)
		fail_msg("bad test JSON (%s) at %d: %s", e.text, e.position, s);
	free(s);
	return v;
}

/* Put the resource text into m; the test fails when the model refuses it. */
static inline void put_ok(struct policy_model *m, const char *text)
{
	json_t *v = J(text);
	char err[512];
	int rv = policy_model_put(m, v, err, sizeof(err));

	if (rv != 0)
		fail_msg("put failed (%d): %s\n%s", rv, err, text);
	json_decref(v);
}

#endif
