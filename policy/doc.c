/*
 * Documents: the text of an operator's resource file, read into jansson values (JSON with
 * jansson, YAML with libyaml's event parser) and written back as YAML with libyaml's emitter.
 *
 * YAML scalars are resolved the way calicoctl 1.x's Go parser (go-yaml v2) resolves plain
 * scalars, so a file means here what it meant to calicoctl: see resolve_plain(). Decisions where
 * JSON cannot say what YAML can: an integer beyond the int64 range becomes a real (go-yaml makes
 * it a uint64 or a float); .inf and .nan have no JSON form and are errors; a NUL character in a
 * string is an error (every consumer is C). Merge keys ("<<") are not expanded: a "<<" key is an
 * ordinary key, which the resource validator then calls an unknown field.
 *
 * Where YAML resolved a scalar to a number or a boolean, go-yaml still knew its text, and gave
 * that text to a string field ("version: 2" is the label value "2"). The value here is a JSON
 * number or boolean, so a parallel tree of the same shape keeps the texts, for the normalizer
 * (policy_doc_parse_texts()): it is built only when asked for.
 *
 * Aliases are expanded by sharing: the value an anchor names is referenced (json_incref) from
 * every alias, so the result is a DAG that must be treated as read-only (copy before changing
 * it). Expansion is still counted node by node against the limit, which is what keeps a "billion
 * laughs" file from costing the consumers (normalizer, emitter) unbounded time.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "policy/policy.h"

#define DEPTH_MAX 64
#define NODES_MAX 1000000u

/* ------------------------------------------------------------------------------------------ */
/* Plain scalar resolution (YAML 1.1 as go-yaml v2 reads it)                                    */

static bool is_one_of(const char *s, size_t len, const char *const *words)
{
	for (; *words != NULL; words++)
		if (strlen(*words) == len && memcmp(s, *words, len) == 0)
			return true;
	return false;
}

/* Go's strconv.ParseInt(s, 0, 64) and ParseUint(s, 0, 64): an optional sign (ParseInt only),
 * then 0x / 0o / 0b prefixes, a leading 0 for octal, else decimal. *neg tells the sign; the
 * magnitude lands in *mag. False when s is not such a number or overflows 64 bits. */
static bool parse_go_int(const char *s, bool *neg, uint64_t *mag)
{
	unsigned base = 10;
	uint64_t v = 0;

	*neg = false;
	if (*s == '+' || *s == '-') {
		*neg = *s == '-';
		s++;
	}
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	} else if (s[0] == '0' && (s[1] == 'o' || s[1] == 'O')) {
		base = 8;
		s += 2;
	} else if (s[0] == '0' && (s[1] == 'b' || s[1] == 'B')) {
		base = 2;
		s += 2;
	} else if (s[0] == '0' && s[1] != '\0') {
		base = 8;
		s++;
	}
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		unsigned d;
		if (*s >= '0' && *s <= '9')
			d = (unsigned)(*s - '0');
		else if (*s >= 'a' && *s <= 'f')
			d = (unsigned)(*s - 'a' + 10);
		else if (*s >= 'A' && *s <= 'F')
			d = (unsigned)(*s - 'A' + 10);
		else
			return false;
		if (d >= base || v > (UINT64_MAX - d) / base)
			return false;
		v = v * base + d;
	}
	*mag = v;
	return true;
}

/* go-yaml's float pattern: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static bool is_yaml_float(const char *s)
{
	size_t digits = 0;

	if (*s == '+' || *s == '-')
		s++;
	if (*s == '.') {
		for (s++; *s >= '0' && *s <= '9'; s++)
			digits++;
		if (digits == 0)
			return false;
	} else {
		for (; *s >= '0' && *s <= '9'; s++)
			digits++;
		if (digits == 0)
			return false;
		if (*s == '.')
			for (s++; *s >= '0' && *s <= '9'; s++)
				;
	}
	if (*s == 'e' || *s == 'E') {
		digits = 0;
		s++;
		if (*s == '+' || *s == '-')
			s++;
		for (; *s >= '0' && *s <= '9'; s++)
			digits++;
		if (digits == 0)
			return false;
	}
	return *s == '\0';
}

enum resolved { R_STRING, R_NULL, R_TRUE, R_FALSE, R_INT, R_REAL, R_BAD };

/*
 * What a plain scalar means. The tables are go-yaml v2's (resolve.go) but for its one-letter
 * booleans y/Y/n/N: calicoctl only ever saw those as booleans in boolean fields (go-yaml keeps the
 * text for a string field), and here, where a value's type is decided before its field is known,
 * they would turn a node or label named "n" into false. They are strings. Numbers are only tried
 * for scalars that start like one, after removing every '_' (as go-yaml does): an integer as Go's
 * ParseInt base 0 reads it, else an unsigned one (out of int64 range: a real here), else a float
 * matching go-yaml's pattern. R_BAD: a value JSON cannot hold (infinities, NaN, a float that
 * overflows).
 */
static enum resolved resolve_plain(const char *s, size_t len, json_int_t *iv, double *dv)
{
	static const char *const nulls[] = {"~", "null", "Null", "NULL", NULL};
	static const char *const trues[] = {"yes",  "Yes", "YES", "true", "True",
	                                    "TRUE", "on",  "On",  "ON",   NULL};
	static const char *const falses[] = {"no",    "No",  "NO",  "false", "False",
	                                     "FALSE", "off", "Off", "OFF",   NULL};
	static const char *const specials[] = {".inf",  ".Inf",  ".INF",  "+.inf", "+.Inf",
	                                       "+.INF", "-.inf", "-.Inf", "-.INF", ".nan",
	                                       ".NaN",  ".NAN",  NULL};
	char buf[128];
	size_t n = 0;
	bool neg;
	uint64_t mag;

	if (len == 0 || is_one_of(s, len, nulls))
		return R_NULL;
	if (is_one_of(s, len, trues))
		return R_TRUE;
	if (is_one_of(s, len, falses))
		return R_FALSE;
	if (is_one_of(s, len, specials))
		return R_BAD;
	if (strchr("+-.0123456789", s[0]) == NULL || len >= sizeof buf)
		return R_STRING;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\0')
			return R_STRING;
		if (s[i] != '_')
			buf[n++] = s[i];
	}
	buf[n] = '\0';
	if (parse_go_int(buf, &neg, &mag)) {
		if (!neg && mag <= (uint64_t)INT64_MAX) {
			*iv = (json_int_t)mag;
			return R_INT;
		}
		if (neg && mag <= (uint64_t)INT64_MAX + 1) {
			*iv = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(json_int_t)mag;
			return R_INT;
		}
		if (!neg && buf[0] != '+') {
			*dv = (double)mag; /* go-yaml: uint64; JSON here: a real */
			return R_REAL;
		}
	}
	if (is_yaml_float(buf)) {
		*dv = strtod(buf, NULL);
		return isfinite(*dv) ? R_REAL : R_BAD;
	}
	return R_STRING;
}

/* ------------------------------------------------------------------------------------------ */
/* YAML to JSON                                                                                */

struct frame {
	json_t *v; /* the collection being built */
	json_t *t; /* its texts (see policy_doc_parse_texts()), NULL when not asked for */
	char *key; /* mapping: the key whose value comes next; NULL when a key comes */
	size_t key_len;
	char *anchor; /* registered when the collection ends */
	size_t nodes_at_start;
	unsigned height; /* of the tallest child so far */
};

struct anchor {
	char *name;
	json_t *v;
	json_t *t;       /* the texts of v, NULL when not asked for */
	size_t nodes;    /* nodes of the value, aliases inside it expanded */
	unsigned height; /* nesting of the value: 0 for a scalar */
};

struct builder {
	const char *text;
	size_t len;
	struct frame stack[DEPTH_MAX];
	unsigned depth;
	struct anchor *anchors;
	size_t n_anchors, cap_anchors;
	size_t nodes;
	json_t *root;  /* the current document's root, once complete */
	json_t *troot; /* its texts */
	bool texts;    /* whether texts are built */
	char *err;
	size_t errlen;
	size_t err_at; /* byte offset of the error, to compare it with JSON's */
};

static int fail_at(struct builder *b, yaml_mark_t m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_at(struct builder *b, yaml_mark_t m, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(b->err, b->errlen, "line %zu, column %zu: ", m.line + 1, m.column + 1);

	b->err_at = m.index;

	if (n >= 0 && (size_t)n < b->errlen) {
		va_start(ap, fmt);
		vsnprintf(b->err + n, b->errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static void anchors_clear(struct builder *b)
{
	for (size_t i = 0; i < b->n_anchors; i++) {
		free(b->anchors[i].name);
		json_decref(b->anchors[i].v);
		json_decref(b->anchors[i].t);
	}
	b->n_anchors = 0;
}

static int anchor_add(struct builder *b, const char *name, json_t *v, json_t *t, size_t nodes,
                      unsigned height)
{
	char *copy;

	if (b->n_anchors == b->cap_anchors) {
		size_t cap = b->cap_anchors != 0 ? b->cap_anchors * 2 : 8;
		struct anchor *a = realloc(b->anchors, cap * sizeof *a);
		if (a == NULL)
			return -ENOMEM;
		b->anchors = a;
		b->cap_anchors = cap;
	}
	if ((copy = strdup(name)) == NULL)
		return -ENOMEM;
	b->anchors[b->n_anchors++] = (struct anchor){.name = copy,
	                                             .v = json_incref(v),
	                                             .t = json_incref(t),
	                                             .nodes = nodes,
	                                             .height = height};
	return 0;
}

/* The latest definition of an anchor wins, as YAML says. */
static const struct anchor *anchor_find(const struct builder *b, const char *name)
{
	for (size_t i = b->n_anchors; i-- > 0;)
		if (strcmp(b->anchors[i].name, name) == 0)
			return &b->anchors[i];
	return NULL;
}

static bool expecting_key(const struct builder *b)
{
	return b->depth > 0 && json_is_object(b->stack[b->depth - 1].v) &&
	       b->stack[b->depth - 1].key == NULL;
}

/* Attach a complete value and its texts (references are taken over; t NULL when texts are not
 * built) to the collection being built, or make them the document's root. */
static int attach(struct builder *b, json_t *v, json_t *t, unsigned height)
{
	struct frame *f;
	int rc;

	if (b->depth == 0) {
		b->root = v;
		b->troot = t;
		return 0;
	}
	f = &b->stack[b->depth - 1];
	if (height + 1 > f->height)
		f->height = height + 1;
	if (json_is_array(f->v)) {
		rc = json_array_append_new(f->v, v);
		if (f->t != NULL && json_array_append_new(f->t, t) != 0)
			rc = -1;
		else if (f->t == NULL)
			json_decref(t);
		return rc == 0 ? 0 : -ENOMEM;
	}
	/* The key was checked for duplicates when it was read. */
	rc = json_object_setn_new(f->v, f->key, f->key_len, v);
	if (f->t != NULL && json_object_setn_new(f->t, f->key, f->key_len, t) != 0)
		rc = -1;
	else if (f->t == NULL)
		json_decref(t);
	free(f->key);
	f->key = NULL;
	return rc == 0 ? 0 : -ENOMEM;
}

static int take_key(struct builder *b, const char *s, size_t len, yaml_mark_t m)
{
	struct frame *f = &b->stack[b->depth - 1];

	if (memchr(s, '\0', len) != NULL)
		return fail_at(b, m, "a mapping key contains a NUL character");
	if (json_object_getn(f->v, s, len) != NULL)
		return fail_at(b, m, "duplicate key \"%.*s\"", (int)(len > 64 ? 64 : len), s);
	if ((f->key = malloc(len + 1)) == NULL)
		return -ENOMEM;
	memcpy(f->key, s, len);
	f->key[len] = '\0';
	f->key_len = len;
	return 0;
}

static int count_node(struct builder *b, size_t n, yaml_mark_t m)
{
	if (n > NODES_MAX - b->nodes)
		return fail_at(b, m, "more than %u nodes after alias expansion", NODES_MAX);
	b->nodes += n;
	return 0;
}

static int on_scalar(struct builder *b, const yaml_event_t *e)
{
	const char *s = (const char *)e->data.scalar.value;
	size_t len = e->data.scalar.length;
	const char *tag = (const char *)e->data.scalar.tag;
	yaml_mark_t m = e->start_mark;
	enum resolved r = R_STRING;
	json_int_t iv = 0;
	double dv = 0;
	json_t *v, *t = NULL;
	int rc;

	if ((rc = count_node(b, 1, m)) != 0)
		return rc;
	if (expecting_key(b)) {
		if ((rc = take_key(b, s, len, m)) != 0)
			return rc;
		if (e->data.scalar.anchor != NULL) {
			json_t *k = json_stringn(s, len);
			if (k == NULL)
				return fail_at(b, m, "a mapping key is not valid UTF-8");
			rc = anchor_add(b, (const char *)e->data.scalar.anchor, k,
			                b->texts ? json_null() : NULL, 1, 0);
			json_decref(k);
		}
		return rc;
	}
	if (memchr(s, '\0', len) != NULL)
		return fail_at(b, m, "a string contains a NUL character");
	if (tag == NULL || strcmp(tag, "!") == 0) {
		/* No tag: plain scalars are resolved, quoted and block ones are strings; the
		 * non-specific tag "!" forces a string too. */
		if (tag == NULL && e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
			r = resolve_plain(s, len, &iv, &dv);
	} else if (strcmp(tag, YAML_STR_TAG) == 0) {
		r = R_STRING;
	} else if (strcmp(tag, YAML_NULL_TAG) == 0 || strcmp(tag, YAML_BOOL_TAG) == 0 ||
	           strcmp(tag, YAML_INT_TAG) == 0 || strcmp(tag, YAML_FLOAT_TAG) == 0) {
		bool ok;
		r = resolve_plain(s, len, &iv, &dv);
		if (strcmp(tag, YAML_NULL_TAG) == 0)
			ok = r == R_NULL;
		else if (strcmp(tag, YAML_BOOL_TAG) == 0)
			ok = r == R_TRUE || r == R_FALSE;
		else if (strcmp(tag, YAML_INT_TAG) == 0)
			ok = r == R_INT;
		else
			ok = r == R_INT || r == R_REAL || r == R_BAD;
		if (!ok)
			return fail_at(b, m, "\"%.*s\" is not a valid %s",
			               (int)(len > 64 ? 64 : len), s, tag);
		if (r == R_INT && strcmp(tag, YAML_FLOAT_TAG) == 0) {
			r = R_REAL;
			dv = (double)iv;
		}
	} else {
		return fail_at(b, m, "unsupported tag %s", tag);
	}
	switch (r) {
	case R_NULL:
		v = json_null();
		break;
	case R_TRUE:
		v = json_true();
		break;
	case R_FALSE:
		v = json_false();
		break;
	case R_INT:
		v = json_integer(iv);
		break;
	case R_REAL:
		v = json_real(dv);
		break;
	case R_BAD:
		return fail_at(b, m, "%.*s: infinite and NaN numbers cannot be represented",
		               (int)(len > 64 ? 64 : len), s);
	default:
		if ((v = json_stringn(s, len)) == NULL)
			return fail_at(b, m, "a string is not valid UTF-8");
		break;
	}
	if (v == NULL)
		return -ENOMEM;
	if (b->texts) {
		t = json_is_number(v) || json_is_boolean(v) ? json_stringn(s, len) : json_null();
		if (t == NULL) {
			json_decref(v);
			return -ENOMEM;
		}
	}
	if (e->data.scalar.anchor != NULL &&
	    (rc = anchor_add(b, (const char *)e->data.scalar.anchor, v, t, 1, 0)) != 0) {
		json_decref(v);
		json_decref(t);
		return rc;
	}
	return attach(b, v, t, 0);
}

static int on_alias(struct builder *b, const yaml_event_t *e)
{
	const char *name = (const char *)e->data.alias.anchor;
	const struct anchor *a = anchor_find(b, name);
	yaml_mark_t m = e->start_mark;
	int rc;

	if (a == NULL)
		return fail_at(b, m, "unknown anchor \"%s\"", name);
	if (b->depth + a->height > DEPTH_MAX)
		return fail_at(b, m, "nesting deeper than %u", DEPTH_MAX);
	if ((rc = count_node(b, a->nodes, m)) != 0)
		return rc;
	if (expecting_key(b)) {
		if (!json_is_string(a->v))
			return fail_at(b, m, "a mapping key must be a string");
		return take_key(b, json_string_value(a->v), json_string_length(a->v), m);
	}
	return attach(b, json_incref(a->v), json_incref(a->t), a->height);
}

static int on_start(struct builder *b, const yaml_event_t *e, bool mapping)
{
	const yaml_char_t *anchor =
	    mapping ? e->data.mapping_start.anchor : e->data.sequence_start.anchor;
	const yaml_char_t *tag = mapping ? e->data.mapping_start.tag : e->data.sequence_start.tag;
	struct frame *f;
	int rc;

	if (expecting_key(b))
		return fail_at(b, e->start_mark, "a mapping key must be a scalar");
	if (b->depth == DEPTH_MAX)
		return fail_at(b, e->start_mark, "nesting deeper than %u", DEPTH_MAX);
	if (tag != NULL && strcmp((const char *)tag, "!") != 0 &&
	    strcmp((const char *)tag, mapping ? YAML_MAP_TAG : YAML_SEQ_TAG) != 0)
		return fail_at(b, e->start_mark, "unsupported tag %s", (const char *)tag);
	if ((rc = count_node(b, 1, e->start_mark)) != 0)
		return rc;
	f = &b->stack[b->depth];
	memset(f, 0, sizeof *f);
	f->nodes_at_start = b->nodes - 1;
	if ((f->v = mapping ? json_object() : json_array()) == NULL)
		return -ENOMEM;
	if (b->texts && (f->t = mapping ? json_object() : json_array()) == NULL) {
		json_decref(f->v);
		return -ENOMEM;
	}
	if (anchor != NULL && (f->anchor = strdup((const char *)anchor)) == NULL) {
		json_decref(f->v);
		json_decref(f->t);
		return -ENOMEM;
	}
	b->depth++;
	return 0;
}

static int on_end(struct builder *b)
{
	struct frame f = b->stack[--b->depth];
	int rc = 0;

	if (f.anchor != NULL)
		rc = anchor_add(b, f.anchor, f.v, f.t, b->nodes - f.nodes_at_start, f.height);
	free(f.anchor);
	free(f.key);
	if (rc != 0) {
		json_decref(f.v);
		json_decref(f.t);
		return rc;
	}
	return attach(b, f.v, f.t, f.height);
}

static void builder_unwind(struct builder *b)
{
	while (b->depth > 0) {
		struct frame *f = &b->stack[--b->depth];
		json_decref(f->v);
		json_decref(f->t);
		free(f->key);
		free(f->anchor);
	}
	json_decref(b->root);
	b->root = NULL;
	json_decref(b->troot);
	b->troot = NULL;
	anchors_clear(b);
	free(b->anchors);
	b->anchors = NULL;
}

/* libyaml's own error, as "line L, column C: problem context". A reader error (bad encoding)
 * carries a byte offset instead of a mark: the line and column are counted from the text. */
static int parser_error(struct builder *b, const yaml_parser_t *p)
{
	yaml_mark_t m = p->problem_mark;
	const char *problem = p->problem != NULL ? p->problem : "malformed YAML";

	if (p->error == YAML_MEMORY_ERROR)
		return -ENOMEM;
	if (p->error == YAML_READER_ERROR) {
		size_t off = p->problem_offset < b->len ? p->problem_offset : b->len;
		m.index = off;
		m.line = 0;
		m.column = 0;
		for (size_t i = 0; i < off; i++) {
			if (b->text[i] == '\n') {
				m.line++;
				m.column = 0;
			} else {
				m.column++;
			}
		}
	}
	if (p->context != NULL)
		return fail_at(b, m, "%s %s", problem, p->context);
	return fail_at(b, m, "%s", problem);
}

/* ------------------------------------------------------------------------------------------ */
/* Documents to resources                                                                      */

/* Add what one document holds to resources (see the contract), and to texts (when not NULL) the
 * texts of each: those of troot's same place, null when troot is NULL (JSON). */
static int add_document(json_t *resources, json_t *texts, json_t *root, json_t *troot, size_t line,
                        size_t column, char *err, size_t errlen)
{
	json_t *items;
	size_t i;
	json_t *v;

	if (json_is_null(root))
		return 0;
	if (json_is_object(root) && json_is_array(items = json_object_get(root, "items"))) {
		root = items;
		troot = json_object_get(troot, "items");
	}
	if (json_is_array(root)) {
		json_array_foreach (root, i, v) {
			if (json_array_append(resources, v) != 0)
				return -ENOMEM;
			if (texts != NULL &&
			    json_array_append(texts, troot != NULL ? json_array_get(troot, i)
			                                           : json_null()) != 0)
				return -ENOMEM;
		}
		return 0;
	}
	if (json_is_object(root)) {
		if (json_array_append(resources, root) != 0 ||
		    (texts != NULL &&
		     json_array_append(texts, troot != NULL ? troot : json_null()) != 0))
			return -ENOMEM;
		return 0;
	}
	snprintf(err, errlen,
	         "line %zu, column %zu: expected a resource (a mapping) or a list of resources",
	         line, column);
	return -EINVAL;
}

/* texts: NULL, or where the texts of each resource go. *err_at: on -EINVAL, the byte offset the
 * error is at. */
static int parse_yaml(const char *text, size_t len, json_t *resources, json_t *texts, char *err,
                      size_t errlen, size_t *err_at)
{
	struct builder b = {
	    .text = text, .len = len, .err = err, .errlen = errlen, .texts = texts != NULL};
	yaml_parser_t p;
	yaml_event_t e;
	yaml_mark_t doc_mark = {0, 0, 0};
	bool done = false;
	int rc = 0;

	if (!yaml_parser_initialize(&p))
		return -ENOMEM;
	yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
	while (!done && rc == 0) {
		if (!yaml_parser_parse(&p, &e)) {
			rc = parser_error(&b, &p);
			break;
		}
		switch (e.type) {
		case YAML_STREAM_END_EVENT:
			done = true;
			break;
		case YAML_DOCUMENT_START_EVENT:
			doc_mark = e.start_mark;
			break;
		case YAML_DOCUMENT_END_EVENT:
			/* An empty document has no node at all: it reads as null. */
			rc = add_document(resources, texts, b.root != NULL ? b.root : json_null(),
			                  b.troot, doc_mark.line + 1, doc_mark.column + 1, err,
			                  errlen);
			b.err_at = doc_mark.index;
			json_decref(b.root);
			b.root = NULL;
			json_decref(b.troot);
			b.troot = NULL;
			anchors_clear(&b);
			break;
		case YAML_SCALAR_EVENT:
			rc = on_scalar(&b, &e);
			break;
		case YAML_ALIAS_EVENT:
			rc = on_alias(&b, &e);
			break;
		case YAML_SEQUENCE_START_EVENT:
			rc = on_start(&b, &e, false);
			break;
		case YAML_MAPPING_START_EVENT:
			rc = on_start(&b, &e, true);
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			rc = on_end(&b);
			break;
		default:
			break;
		}
		yaml_event_delete(&e);
	}
	builder_unwind(&b);
	yaml_parser_delete(&p);
	*err_at = b.err_at;
	return rc;
}

/* Nesting of a parsed JSON value: jansson's own limit is far above ours. */
static bool json_depth_ok(const json_t *v, unsigned depth)
{
	const char *k;
	json_t *c;
	size_t i;

	if (!json_is_object(v) && !json_is_array(v))
		return true;
	if (depth >= DEPTH_MAX)
		return false;
	if (json_is_array(v)) {
		json_array_foreach (v, i, c) {
			if (!json_depth_ok(c, depth + 1))
				return false;
		}
		return true;
	}
	json_object_foreach ((json_t *)v, k, c) {
		if (!json_depth_ok(c, depth + 1))
			return false;
	}
	return true;
}

/* Returns -EILSEQ, with *err_at the byte offset of the error, for text that is not JSON; -EINVAL
 * for JSON that is not a resource file. */
static int parse_json(const char *text, size_t len, json_t *resources, json_t *texts, char *err,
                      size_t errlen, size_t *err_at)
{
	json_error_t je;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	int rc;

	if (root == NULL) {
		if (json_error_code(&je) == json_error_out_of_memory)
			return -ENOMEM;
		snprintf(err, errlen, "line %d, column %d: %s", je.line > 0 ? je.line : 1,
		         je.column > 0 ? je.column : 1, je.text);
		*err_at = (size_t)je.position;
		return -EILSEQ;
	}
	if (!json_depth_ok(root, 0)) {
		json_decref(root);
		snprintf(err, errlen, "line 1, column 1: nesting deeper than %u", DEPTH_MAX);
		return -EINVAL;
	}
	rc = add_document(resources, texts, root, NULL, 1, 1, err, errlen);
	json_decref(root);
	return rc;
}

/*
 * Text that starts like JSON and is JSON is read as JSON (jansson's numbers, no YAML resolution).
 * Text that starts like JSON and is not is read as YAML, as calicoctl read every file: YAML flow
 * style ({kind: profile, ...}) and JSON documents separated by "---" are YAML. When neither
 * reads it, the error further into the text is reported, JSON's on a tie: the parser that got
 * further understood more of what the author meant. So a JSON file with a syntax error gets
 * jansson's message (which names the token), and flow-style YAML, which jansson refuses at its
 * first unquoted key, gets libyaml's.
 */
static int parse_json_or_yaml(const char *text, size_t len, json_t *out, json_t *texts, char *err,
                              size_t errlen)
{
	char yerr[512];
	size_t json_at = 0, yaml_at = 0;
	/* Text that is not JSON added nothing to out and texts (parse_json). */
	int rc = parse_json(text, len, out, texts, err, errlen, &json_at);

	if (rc != -EILSEQ)
		return rc;
	rc = parse_yaml(text, len, out, texts, yerr, sizeof yerr, &yaml_at);
	if (rc == -EINVAL && yaml_at > json_at)
		snprintf(err, errlen, "%s", yerr);
	else if (rc == 0 && errlen > 0)
		err[0] = '\0';
	return rc;
}

int policy_doc_parse_texts(const char *text, size_t len, json_t **resources, json_t **texts,
                           char *err, size_t errlen)
{
	json_t *out, *tout = NULL;
	size_t i = 0, err_at;
	int rc;

	*resources = NULL;
	if (texts != NULL)
		*texts = NULL;
	if (errlen > 0)
		err[0] = '\0';
	if ((out = json_array()) == NULL)
		return -ENOMEM;
	if (texts != NULL && (tout = json_array()) == NULL) {
		json_decref(out);
		return -ENOMEM;
	}
	while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n'))
		i++;
	if (i < len && (text[i] == '{' || text[i] == '['))
		rc = parse_json_or_yaml(text, len, out, tout, err, errlen);
	else
		rc = parse_yaml(text, len, out, tout, err, errlen, &err_at);
	if (rc != 0) {
		json_decref(out);
		json_decref(tout);
		return rc;
	}
	*resources = out;
	if (texts != NULL)
		*texts = tout;
	return 0;
}

int policy_doc_parse(const char *text, size_t len, json_t **resources, char *err, size_t errlen)
{
	return policy_doc_parse_texts(text, len, resources, NULL, err, errlen);
}

/* ------------------------------------------------------------------------------------------ */
/* JSON to YAML                                                                                */

struct outbuf {
	char *p;
	size_t len, cap;
};

static int write_out(void *data, unsigned char *buf, size_t size)
{
	struct outbuf *o = data;

	if (o->len + size + 1 > o->cap) {
		size_t cap = o->cap != 0 ? o->cap : 256;
		char *p;
		while (cap < o->len + size + 1)
			cap *= 2;
		if ((p = realloc(o->p, cap)) == NULL)
			return 0;
		o->p = p;
		o->cap = cap;
	}
	memcpy(o->p + o->len, buf, size);
	o->len += size;
	o->p[o->len] = '\0';
	return 1;
}

static int emit_event(yaml_emitter_t *em, yaml_event_t *ev, int init_ok)
{
	if (!init_ok)
		return -ENOMEM;
	return yaml_emitter_emit(em, ev) ? 0 : (em->error == YAML_MEMORY_ERROR ? -ENOMEM : -EIO);
}

/* A string as a scalar: plain when it reads back as the same string, else double-quoted. libyaml
 * itself falls back from plain to quoted for what YAML's syntax forbids (indicators, leading
 * spaces, line breaks); what it cannot know is our resolution of "true", "1", "~", "". */
static int emit_string(yaml_emitter_t *em, const char *s, size_t len)
{
	yaml_event_t ev;
	json_int_t iv;
	double dv;
	bool plain = len > 0 && resolve_plain(s, len, &iv, &dv) == R_STRING;

	return emit_event(em, &ev,
	                  yaml_scalar_event_initialize(
	                      &ev, NULL, NULL, (yaml_char_t *)s, (int)len, plain, 1,
	                      plain ? YAML_PLAIN_SCALAR_STYLE : YAML_DOUBLE_QUOTED_SCALAR_STYLE));
}

static int emit_plain(yaml_emitter_t *em, const char *s)
{
	yaml_event_t ev;

	return emit_event(em, &ev,
	                  yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s,
	                                               (int)strlen(s), 1, 0,
	                                               YAML_PLAIN_SCALAR_STYLE));
}

/* The shortest text that reads back as the same double, and reads as a float, not an int. */
static void format_real(double d, char *buf, size_t len)
{
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(buf, len, "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	if (strpbrk(buf, ".eE") == NULL)
		strncat(buf, ".0", len - strlen(buf) - 1);
}

static int emit_value(yaml_emitter_t *em, const json_t *v)
{
	yaml_event_t ev;
	char buf[64];
	const char *k;
	json_t *c;
	size_t i;
	int rc;

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		rc = emit_event(em, &ev,
		                yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
		                                                    YAML_BLOCK_MAPPING_STYLE));
		json_object_foreach ((json_t *)v, k, c) {
			if (rc == 0)
				rc = emit_string(em, k, strlen(k));
			if (rc == 0)
				rc = emit_value(em, c);
		}
		if (rc == 0)
			rc = emit_event(em, &ev, yaml_mapping_end_event_initialize(&ev));
		return rc;
	case JSON_ARRAY:
		rc = emit_event(em, &ev,
		                yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
		                                                     YAML_BLOCK_SEQUENCE_STYLE));
		json_array_foreach (v, i, c) {
			if (rc == 0)
				rc = emit_value(em, c);
		}
		if (rc == 0)
			rc = emit_event(em, &ev, yaml_sequence_end_event_initialize(&ev));
		return rc;
	case JSON_STRING:
		return emit_string(em, json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return emit_plain(em, buf);
	case JSON_REAL:
		format_real(json_real_value(v), buf, sizeof buf);
		return emit_plain(em, buf);
	case JSON_TRUE:
		return emit_plain(em, "true");
	case JSON_FALSE:
		return emit_plain(em, "false");
	default:
		return emit_plain(em, "null");
	}
}

int policy_doc_emit_yaml(const json_t *v, char **out)
{
	struct outbuf o = {0};
	yaml_emitter_t em;
	yaml_event_t ev;
	int rc;

	*out = NULL;
	if (v == NULL)
		return -EINVAL;
	if (!yaml_emitter_initialize(&em))
		return -ENOMEM;
	yaml_emitter_set_output(&em, write_out, &o);
	yaml_emitter_set_unicode(&em, 1);
	yaml_emitter_set_width(&em, -1); /* never fold long strings */
	yaml_emitter_set_indent(&em, 2);
	rc = emit_event(&em, &ev, yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING));
	if (rc == 0)
		rc = emit_event(&em, &ev,
		                yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1));
	if (rc == 0)
		rc = emit_value(&em, v);
	if (rc == 0)
		rc = emit_event(&em, &ev, yaml_document_end_event_initialize(&ev, 1));
	if (rc == 0)
		rc = emit_event(&em, &ev, yaml_stream_end_event_initialize(&ev));
	if (rc == 0 && !yaml_emitter_flush(&em))
		rc = -ENOMEM;
	yaml_emitter_delete(&em);
	if (rc == 0 && o.p == NULL && (o.p = strdup("")) == NULL)
		rc = -ENOMEM;
	if (rc != 0) {
		free(o.p);
		return rc == -EIO ? -EINVAL : rc;
	}
	*out = o.p;
	return 0;
}
