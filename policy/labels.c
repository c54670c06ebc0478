/*
 * Label sets: a sorted array of key/value pairs, so that a selector's lookups are a binary
 * search and a set can be built once from the JSON a resource carries.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

const char *policy_labels_get(const struct policy_labels *l, const char *key)
{
	unsigned lo = 0;
	unsigned hi;

	if (l == NULL)
		return NULL;
	hi = l->n;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		int c = strcmp(key, l->v[mid].key);

		if (c == 0)
			return l->v[mid].value;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

static int label_cmp(const void *a, const void *b)
{
	const struct policy_label *x = a;
	const struct policy_label *y = b;

	return strcmp(x->key, y->key);
}

static const char *json_kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "a JSON value";
}

int policy_labels_from_json(const json_t *obj, struct policy_labels *out, char *err, size_t errlen)
{
	const char *key;
	json_t *value;
	unsigned n = 0;

	out->v = NULL;
	out->n = 0;
	if (obj == NULL || json_is_null(obj))
		return 0;
	if (!json_is_object(obj)) {
		snprintf(err, errlen, "labels must be an object of string values, not %s",
		         json_kind(obj));
		return -EINVAL;
	}
	/* Check every value before allocating anything, so that the error path frees nothing. */
	json_object_foreach ((json_t *)obj, key, value) {
		if (!json_is_string(value)) {
			snprintf(err, errlen, "label '%s': the value must be a string, not %s", key,
			         json_kind(value));
			return -EINVAL;
		}
	}
	if (json_object_size(obj) == 0)
		return 0;
	out->v = calloc(json_object_size(obj), sizeof *out->v);
	if (out->v == NULL)
		goto nomem;
	json_object_foreach ((json_t *)obj, key, value) {
		out->v[n].key = strdup(key);
		out->v[n].value = strdup(json_string_value(value));
		n++;
		out->n = n;
		if (out->v[n - 1].key == NULL || out->v[n - 1].value == NULL)
			goto nomem;
	}
	/* A JSON object's keys are unique, so sorting is all it takes. */
	qsort(out->v, out->n, sizeof *out->v, label_cmp);
	return 0;

nomem:
	policy_labels_free(out);
	snprintf(err, errlen, "out of memory");
	return -ENOMEM;
}

void policy_labels_free(struct policy_labels *l)
{
	if (l == NULL)
		return;
	for (unsigned i = 0; i < l->n; i++) {
		free(l->v[i].key);
		free(l->v[i].value);
	}
	free(l->v);
	l->v = NULL;
	l->n = 0;
}
