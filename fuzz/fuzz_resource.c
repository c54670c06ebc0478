/*
 * libFuzzer target for resource files: policy_doc_parse_texts() of the input (YAML or JSON), then
 * for every resource found:
 *   1. a mapping resource is emitted as YAML and read back: it must come back equal;
 *   2. policy_resource_normalize_texts(); when it accepts, normalizing the normalized form must
 *      give it back unchanged (key order included), its YAML must read back equal, it must have
 *      a key, and an ipPool must survive the trip through IPAM's struct; and the resource as an
 *      agent gets it (with the texts taken quoted) must normalize without texts to the same.
 * The whole list is emitted and read back too; it must come back equal unless the extra level
 * of the list pushed it over the nesting or node limit. Any violated expectation aborts, which
 * libFuzzer reports as a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_resource: %s\n", what);
		abort();
	}
}

/* v as YAML, read back: the list of resources it holds. NULL when the text is refused; *err
 * says why. */
static json_t *yaml_trip(const json_t *v, char *err, size_t errlen)
{
	json_t *back = NULL;
	char *yaml = NULL;

	check(policy_doc_emit_yaml(v, &yaml) == 0, "emit failed");
	if (policy_doc_parse(yaml, strlen(yaml), &back, err, errlen) != 0) {
		fprintf(stderr, "emitted YAML:\n%s\n", yaml);
		back = NULL;
	}
	free(yaml);
	return back;
}

static void one_resource_trip(const json_t *r, const char *what)
{
	json_t *back, *want;
	char err[512];

	back = yaml_trip(r, err, sizeof err);
	if (back == NULL)
		fprintf(stderr, "%s\n", err);
	check(back != NULL, what);
	want = json_pack("[O]", r);
	check(want != NULL, "out of memory");
	check(json_equal(back, want), what);
	json_decref(want);
	json_decref(back);
}

static void normalized_checks(const json_t *n)
{
	json_t *again = NULL;
	char err[512], key[POLICY_KEY_MAX], *a, *b;
	enum policy_kind k;

	check(policy_resource_normalize(n, 0, &again, err, sizeof err) == 0,
	      "a normalized resource does not normalize");
	a = json_dumps(n, JSON_COMPACT);
	b = json_dumps(again, JSON_COMPACT);
	check(a != NULL && b != NULL && strcmp(a, b) == 0, "normalizing is not idempotent");
	free(a);
	free(b);
	json_decref(again);

	one_resource_trip(n, "a normalized resource does not read back from its YAML");

	k = policy_resource_key(n, key, sizeof key);
	check(k != POLICY_KIND_NONE && key[0] != '\0', "a normalized resource has no key");
	if (k == POLICY_KIND_IPPOOL) {
		struct ipam_pool p;
		json_t *from, *n2 = NULL;
		check(policy_ippool_to_ipam(n, &p, err, sizeof err) == 0, "ipPool to IPAM failed");
		check(ipam_pool_validate(&p, err, sizeof err),
		      "a normalized ipPool is no IPAM pool");
		from = policy_ippool_from_ipam(&p);
		check(from != NULL, "ipPool from IPAM failed");
		check(policy_resource_normalize(from, 0, &n2, err, sizeof err) == 0,
		      "ipPool from IPAM does not normalize");
		json_decref(n2);
		json_decref(from);
	}
}

/* r as an agent gets it (quoted, or r itself) normalizes without texts to n. */
static void sent_checks(const json_t *r, const json_t *quoted, const json_t *n)
{
	json_t *n2 = NULL;
	char err[512];

	check(policy_resource_normalize(quoted != NULL ? quoted : r, 0, &n2, err, sizeof err) == 0,
	      "the resource as sent to an agent does not normalize");
	check(json_equal(n, n2), "the resource as sent to an agent normalizes differently");
	json_decref(n2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *list = NULL, *texts = NULL, *r, *n, *quoted, *back;
	char err[512];
	size_t i;

	if (policy_doc_parse_texts((const char *)data, size, &list, &texts, err, sizeof err) != 0) {
		check(list == NULL && texts == NULL && err[0] != '\0',
		      "a refusal without a message");
		return 0;
	}
	check(json_array_size(texts) == json_array_size(list), "texts for each resource");
	json_array_foreach (list, i, r) {
		if (json_is_object(r) && !json_is_array(json_object_get(r, "items")))
			one_resource_trip(r, "a resource does not read back from its YAML");
		n = NULL;
		quoted = NULL;
		if (policy_resource_normalize_texts(r, json_array_get(texts, i), (unsigned)i, &n,
		                                    &quoted, err, sizeof err) != 0) {
			check(n == NULL && quoted == NULL && err[0] != '\0',
			      "a refusal without a message");
			continue;
		}
		normalized_checks(n);
		sent_checks(r, quoted, n);
		json_decref(quoted);
		json_decref(n);
	}
	back = yaml_trip(list, err, sizeof err);
	if (back == NULL)
		check(strstr(err, "nesting deeper than") != NULL ||
		          strstr(err, "nodes after alias expansion") != NULL,
		      "the list does not read back from its YAML");
	else
		check(json_equal(back, list), "the list reads back different");
	json_decref(back);
	json_decref(texts);
	json_decref(list);
	return 0;
}
