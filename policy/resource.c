/*
 * Resources: the calicoctl v1 kinds, checked the way the v1 validator checks them and rewritten
 * in the normalized form that policy.h describes (calico-behaviour.md sections 2.1 and 3).
 *
 * Normalizing walks the input once, building the output as it goes; every check that fails
 * stops the walk with one message "KIND NAME: PATH: VALUE why", where PATH is the field path
 * kept in struct ctx while walking. Decisions where the reference leaves room:
 *   - null counts as absent for every field (YAML "order:" with nothing after it);
 *   - a field that wants a string and gets a YAML scalar that YAML resolved to a number or a
 *     boolean takes the scalar's text, as calicoctl's YAML decoder did ("version: 2" is the
 *     label value "2", "version: 2.10" is "2.10"): the document keeps the texts
 *     (policy_doc_parse_texts()) and the walk follows them beside the value. A JSON number or
 *     boolean there stays an error (calicoctl's JSON decoding refused it too): nothing says
 *     how it was written, so the operator is told to quote it;
 *   - icmp / notICMP need protocol icmp or icmpv6 (1 or 58): a rule with ICMP fields and any
 *     other protocol could never match, and Felix renders them only as ICMP matches;
 *   - a CIDR in a rule, and an ipNetworks entry, may be a bare address (a /32 or /128); host bits
 *     set is an error naming the value;
 *   - empty strings for tag, notTag, selector, notSelector and empty lists in an entity rule
 *     mean "not given" (Go's omitempty), so they are left out;
 *   - a MAC address is 6 octets with ':' or '-' separators and is written back lower case with
 *     ':'; a node's BGP address keeps its prefix length and gets the canonical address text.
 */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy/policy.h"

/* ------------------------------------------------------------------------------------------ */
/* Kinds and protocols                                                                         */

static const struct {
	const char *name;
	const char *plural;
} kinds[POLICY_KIND_COUNT] = {
    [POLICY_KIND_POLICY] = {"policy", "policies"},
    [POLICY_KIND_PROFILE] = {"profile", "profiles"},
    [POLICY_KIND_IPPOOL] = {"ipPool", "ippools"},
    [POLICY_KIND_HOSTENDPOINT] = {"hostEndpoint", "hostendpoints"},
    [POLICY_KIND_WORKLOADENDPOINT] = {"workloadEndpoint", "workloadendpoints"},
    [POLICY_KIND_NODE] = {"node", "nodes"},
    [POLICY_KIND_BGPPEER] = {"bgpPeer", "bgppeers"},
};

enum policy_kind policy_kind_parse(const char *s)
{
	/* calicoctl 1.x's aliases (section 3.1). */
	static const struct {
		const char *alias;
		enum policy_kind k;
	} aliases[] = {
	    {"policy", POLICY_KIND_POLICY},
	    {"policies", POLICY_KIND_POLICY},
	    {"pol", POLICY_KIND_POLICY},
	    {"pols", POLICY_KIND_POLICY},
	    {"profile", POLICY_KIND_PROFILE},
	    {"profiles", POLICY_KIND_PROFILE},
	    {"pro", POLICY_KIND_PROFILE},
	    {"pros", POLICY_KIND_PROFILE},
	    {"ippool", POLICY_KIND_IPPOOL},
	    {"ippools", POLICY_KIND_IPPOOL},
	    {"ipp", POLICY_KIND_IPPOOL},
	    {"ipps", POLICY_KIND_IPPOOL},
	    {"pool", POLICY_KIND_IPPOOL},
	    {"pools", POLICY_KIND_IPPOOL},
	    {"workloadendpoint", POLICY_KIND_WORKLOADENDPOINT},
	    {"workloadendpoints", POLICY_KIND_WORKLOADENDPOINT},
	    {"wep", POLICY_KIND_WORKLOADENDPOINT},
	    {"weps", POLICY_KIND_WORKLOADENDPOINT},
	    {"hostendpoint", POLICY_KIND_HOSTENDPOINT},
	    {"hostendpoints", POLICY_KIND_HOSTENDPOINT},
	    {"hep", POLICY_KIND_HOSTENDPOINT},
	    {"heps", POLICY_KIND_HOSTENDPOINT},
	    {"node", POLICY_KIND_NODE},
	    {"nodes", POLICY_KIND_NODE},
	    {"no", POLICY_KIND_NODE},
	    {"nos", POLICY_KIND_NODE},
	    {"bgppeer", POLICY_KIND_BGPPEER},
	    {"bgppeers", POLICY_KIND_BGPPEER},
	    {"bgpp", POLICY_KIND_BGPPEER},
	    {"bgpps", POLICY_KIND_BGPPEER},
	    {"bp", POLICY_KIND_BGPPEER},
	    {"bps", POLICY_KIND_BGPPEER},
	};

	for (size_t i = 0; s != NULL && i < sizeof aliases / sizeof aliases[0]; i++)
		if (strcasecmp(s, aliases[i].alias) == 0)
			return aliases[i].k;
	return POLICY_KIND_NONE;
}

const char *policy_kind_name(enum policy_kind k)
{
	return k > POLICY_KIND_NONE && k < POLICY_KIND_COUNT ? kinds[k].name : NULL;
}

const char *policy_kind_plural(enum policy_kind k)
{
	return k > POLICY_KIND_NONE && k < POLICY_KIND_COUNT ? kinds[k].plural : NULL;
}

static const struct {
	const char *name;
	int num;
} protocols[] = {
    {"tcp", 6}, {"udp", 17}, {"icmp", 1}, {"icmpv6", 58}, {"sctp", 132}, {"udplite", 136},
};

int policy_protocol_parse(const char *s)
{
	int v = 0;

	if (s == NULL || *s == '\0')
		return -1;
	for (size_t i = 0; i < sizeof protocols / sizeof protocols[0]; i++)
		if (strcasecmp(s, protocols[i].name) == 0)
			return protocols[i].num;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9' || v > 255)
			return -1;
		v = v * 10 + (*s - '0');
	}
	return v >= 1 && v <= 255 ? v : -1;
}

const char *policy_protocol_name(int proto)
{
	for (size_t i = 0; i < sizeof protocols / sizeof protocols[0]; i++)
		if (protocols[i].num == proto)
			return protocols[i].name;
	return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* The walk: where we are, and how a failure is told                                           */

/* The walk nests as deep as the resources' schema, far less than this. */
#define MARKS_MAX 32

/* One step of the walk: what to go back to, and where it went (a field or an index). */
struct mark {
	size_t plen;
	const json_t *texts;
	const char *field; /* NULL: an index */
	size_t index;
};

struct ctx {
	char *err;
	size_t errlen;
	char who[192]; /* "policy frontend-policy" */
	char path[512];
	size_t plen;
	bool profile;        /* rules of a profile: no pass */
	const json_t *texts; /* the document's texts at the path (policy_doc_parse_texts()) */
	struct mark marks[MARKS_MAX];
	size_t nmarks;
	json_t *taken; /* [[STEP...], TEXT] for each value taken as its text; NULL for none */
};

static size_t push(struct ctx *c, const char *field, size_t index, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Append a step to the path; returns the mark to pop back to. */
static size_t push(struct ctx *c, const char *field, size_t index, const char *fmt, ...)
{
	size_t mark = c->nmarks;
	va_list ap;
	int n;

	assert(mark < MARKS_MAX); /* the schema nests far less deep */
	c->marks[mark] = (struct mark){c->plen, c->texts, field, index};
	c->nmarks++;
	if (c->plen < sizeof c->path - 1) {
		va_start(ap, fmt);
		n = vsnprintf(c->path + c->plen, sizeof c->path - c->plen, fmt, ap);
		va_end(ap);
		if (n > 0)
			c->plen += (size_t)n < sizeof c->path - c->plen
			               ? (size_t)n
			               : sizeof c->path - 1 - c->plen;
	}
	return mark;
}

static size_t push_field(struct ctx *c, const char *name)
{
	size_t mark = push(c, name, 0, c->plen == 0 ? "%.100s" : ".%.100s", name);

	c->texts = json_object_get(c->texts, name);
	return mark;
}

static size_t push_index(struct ctx *c, size_t i)
{
	size_t mark = push(c, NULL, i, "[%zu]", i);

	c->texts = json_array_get(c->texts, i);
	return mark;
}

static void pop(struct ctx *c, size_t mark)
{
	if (mark >= c->nmarks)
		return;
	c->plen = c->marks[mark].plen;
	c->texts = c->marks[mark].texts;
	c->nmarks = mark;
	c->path[c->plen] = '\0';
}

static int fail(struct ctx *c, const json_t *v, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "WHO: PATH: VALUE why" (VALUE as compact JSON, cut when long). */
static int fail(struct ctx *c, const json_t *v, const char *fmt, ...)
{
	char value[100] = "";
	char why[256];
	va_list ap;

	if (json_is_real(v)) {
		/* The shortest text that is this double: 1.1, not jansson's 1.1000000000000001. */
		for (int prec = 15; prec <= 17; prec++) {
			snprintf(value, sizeof value, "%.*g", prec, json_real_value(v));
			if (strtod(value, NULL) == json_real_value(v))
				break;
		}
		if (strpbrk(value, ".e") == NULL)
			strcat(value, ".0");
		strcat(value, " ");
	} else if (v != NULL) {
		char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
		if (s != NULL && strlen(s) >= sizeof value - 1)
			snprintf(value, sizeof value, "%.80s... ", s);
		else
			snprintf(value, sizeof value, "%s ", s != NULL ? s : "?");
		free(s);
	}
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	if (c->plen > 0)
		snprintf(c->err, c->errlen, "%s: %s: %s%s", c->who, c->path, value, why);
	else
		snprintf(c->err, c->errlen, "%s: %s%s", c->who, value, why);
	ipam_text_repair(c->err); /* the cuts above can split a character of the value */
	return -EINVAL;
}

/* A field's value, NULL when absent or null. */
static json_t *opt(const json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	return json_is_null(v) ? NULL : v;
}

static bool in_list(const char *s, const char *const *list)
{
	for (; *list != NULL; list++)
		if (strcmp(s, *list) == 0)
			return true;
	return false;
}

/* Every field of obj must be one of allowed; obj must be a mapping. */
static int want_fields(struct ctx *c, const json_t *obj, const char *const *allowed)
{
	const char *k;
	json_t *v;

	if (!json_is_object(obj))
		return fail(c, obj, "is not a mapping");
	json_object_foreach ((json_t *)obj, k, v) {
		if (!in_list(k, allowed)) {
			push_field(c, k);
			return fail(c, NULL, "unknown field");
		}
	}
	return 0;
}

/* *v, the value at the path, becomes texts, the text YAML read it from; the path is noted for
 * the quoted copy (with_texts()). */
static int take_text(struct ctx *c, const json_t **v, const json_t *texts)
{
	json_t *steps, *taken;

	if (c->taken == NULL && (c->taken = json_array()) == NULL)
		return -ENOMEM;
	steps = json_array();
	for (size_t i = 0; steps != NULL && i < c->nmarks; i++) {
		const struct mark *m = &c->marks[i];
		if (json_array_append_new(steps, m->field != NULL
		                                     ? json_string(m->field)
		                                     : json_integer((json_int_t)m->index)) != 0) {
			json_decref(steps);
			steps = NULL;
		}
	}
	/* "o" and json_array_append_new() take their reference, also when they fail. */
	taken = steps != NULL ? json_pack("[o, O]", steps, texts) : NULL;
	if (taken == NULL || json_array_append_new(c->taken, taken) != 0)
		return -ENOMEM;
	*v = texts;
	return 0;
}

/* A field that wants a string: *v is one, or YAML's text of a number or boolean (calicoctl's
 * YAML decoder gave a string field the scalar's text), which *v then becomes. */
static int want_string(struct ctx *c, const json_t **v)
{
	if (json_is_string(*v))
		return 0;
	if ((json_is_number(*v) || json_is_boolean(*v)) && json_is_string(c->texts))
		return take_text(c, v, c->texts);
	if (json_is_number(*v) || json_is_boolean(*v))
		return fail(c, *v, "is not a string (quote it)");
	return fail(c, *v, "is not a string");
}

static int want_bool(struct ctx *c, const json_t *v)
{
	return json_is_boolean(v) ? 0 : fail(c, v, "is not a boolean (true or false)");
}

static int want_array(struct ctx *c, const json_t *v)
{
	return json_is_array(v) ? 0 : fail(c, v, "is not a list");
}

/* out[key] = v (a new reference taken over); -ENOMEM on failure. */
static int put(json_t *out, const char *key, json_t *v)
{
	if (v == NULL)
		return -ENOMEM;
	return json_object_set_new(out, key, v) == 0 ? 0 : -ENOMEM;
}

/* ------------------------------------------------------------------------------------------ */
/* Names, labels, selectors, addresses, ports                                                  */

enum name_rule { RULE_NAME, RULE_NS_NAME, RULE_IFACE, RULE_LABEL_KEY, RULE_TAG };

static bool alnum(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
}

/* The v1 validator's patterns (section 3.1): ^[a-zA-Z0-9_.-]{1,128}$ for names and tags, '/'
 * also for profile, policy and workload names, ^[a-zA-Z0-9_-]{1,15}$ for interfaces,
 * ^[a-zA-Z0-9_./-]{1,512}$ for label keys. */
static bool name_ok(const char *s, size_t len, enum name_rule r)
{
	size_t max = r == RULE_IFACE ? 15 : r == RULE_LABEL_KEY ? 512 : 128;
	const char *extra = r == RULE_IFACE                            ? "_-"
	                    : r == RULE_NS_NAME || r == RULE_LABEL_KEY ? "_.-/"
	                                                               : "_.-";

	if (len < 1 || len > max)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!alnum(s[i]) && (s[i] == '\0' || strchr(extra, s[i]) == NULL))
			return false;
	return true;
}

static const char *name_rule_text(enum name_rule r)
{
	switch (r) {
	case RULE_IFACE:
		return "is not a valid interface name (1 to 15 of a-z A-Z 0-9 _ -)";
	case RULE_LABEL_KEY:
		return "is not a valid label key (1 to 512 of a-z A-Z 0-9 _ . / -)";
	case RULE_TAG:
		return "is not a valid tag (1 to 128 of a-z A-Z 0-9 _ . -)";
	case RULE_NS_NAME:
		return "is not a valid name (1 to 128 of a-z A-Z 0-9 _ . - /)";
	default:
		return "is not a valid name (1 to 128 of a-z A-Z 0-9 _ . -)";
	}
}

/* ^[a-zA-Z0-9]?([a-zA-Z0-9_.-]{0,61}[a-zA-Z0-9])?$: empty, or up to 63 characters ending with a
 * letter or digit, where only a value starting with one may use all 63. */
static bool label_value_ok(const char *s, size_t len)
{
	if (len == 0)
		return true;
	if (len > 63 || !alnum(s[len - 1]) || (len == 63 && !alnum(s[0])))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!alnum(s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
			return false;
	return true;
}

/* A string field checked against a name rule: a copy of it in *out. */
static int name_value(struct ctx *c, const json_t *v, enum name_rule r, json_t **out)
{
	int rc;

	if ((rc = want_string(c, &v)) != 0)
		return rc;
	if (!name_ok(json_string_value(v), json_string_length(v), r))
		return fail(c, v, "%s", name_rule_text(r));
	*out = json_string(json_string_value(v));
	return *out != NULL ? 0 : -ENOMEM;
}

/* obj[key] (required or not) checked against r, put into out under the same key. */
static int name_field(struct ctx *c, const json_t *obj, const char *key, bool required,
                      enum name_rule r, json_t *out)
{
	json_t *v = opt(obj, key), *copy = NULL;
	size_t m = push_field(c, key);
	int rc;

	if (v == NULL) {
		rc = required ? fail(c, NULL, "required") : 0;
	} else if ((rc = name_value(c, v, r, &copy)) == 0) {
		rc = put(out, key, copy);
	}
	pop(c, m);
	return rc;
}

static int labels_value(struct ctx *c, const json_t *v, json_t **out)
{
	const char *k;
	json_t *val, *labels;

	if (!json_is_object(v))
		return fail(c, v, "is not a mapping");
	if ((labels = json_object()) == NULL)
		return -ENOMEM;
	json_object_foreach ((json_t *)v, k, val) {
		const json_t *sv = val;
		json_t *key = json_string(k);
		int rc = 0;
		if (key == NULL) {
			json_decref(labels);
			return -ENOMEM;
		}
		if (!name_ok(k, strlen(k), RULE_LABEL_KEY))
			rc = fail(c, key, "%s", name_rule_text(RULE_LABEL_KEY));
		json_decref(key);
		size_t m = rc == 0 ? push_field(c, k) : 0;
		if (rc == 0 && (rc = want_string(c, &sv)) == 0 &&
		    !label_value_ok(json_string_value(sv), json_string_length(sv)))
			rc = fail(c, sv,
			          "is not a valid label value (up to 63 of a-z A-Z 0-9 _ . -, "
			          "starting and ending with a letter or digit)");
		if (rc == 0)
			rc = put(labels, k, json_string(json_string_value(sv)));
		if (rc != 0) {
			json_decref(labels);
			return rc;
		}
		pop(c, m);
	}
	*out = labels;
	return 0;
}

static int labels_field(struct ctx *c, const json_t *obj, json_t *out)
{
	json_t *v = opt(obj, "labels"), *copy = NULL;
	size_t m = push_field(c, "labels");
	int rc = v == NULL ? 0 : labels_value(c, v, &copy);

	if (rc == 0 && copy != NULL)
		rc = put(out, "labels", copy);
	pop(c, m);
	return rc;
}

/* A list of names (tags, profiles). */
static int names_field(struct ctx *c, const json_t *obj, const char *key, enum name_rule r,
                       json_t *out)
{
	json_t *v = opt(obj, key), *list, *item, *copy;
	size_t m = push_field(c, key), i;
	int rc;

	if (v == NULL) {
		pop(c, m);
		return 0;
	}
	if ((rc = want_array(c, v)) != 0)
		return rc;
	if ((list = json_array()) == NULL)
		return -ENOMEM;
	json_array_foreach (v, i, item) {
		size_t mi = push_index(c, i);
		if ((rc = name_value(c, item, r, &copy)) != 0 ||
		    (rc = json_array_append_new(list, copy) == 0 ? 0 : -ENOMEM) != 0) {
			json_decref(list);
			return rc;
		}
		pop(c, mi);
	}
	pop(c, m);
	return put(out, key, list);
}

/* *v a selector (it becomes YAML's text, as with want_string()). */
static int selector_value(struct ctx *c, const json_t **v)
{
	struct policy_selector *sel = NULL;
	char why[256];
	int rc;

	if ((rc = want_string(c, v)) != 0)
		return rc;
	if (json_string_length(*v) > POLICY_SELECTOR_MAX)
		return fail(c, NULL, "the selector is longer than %d bytes", POLICY_SELECTOR_MAX);
	rc = policy_selector_parse(json_string_value(*v), &sel, NULL, why, sizeof why);
	if (rc == -EINVAL)
		return fail(c, *v, "is not a valid selector: %s", why);
	if (rc != 0)
		return rc;
	policy_selector_free(sel);
	return 0;
}

/* A CIDR (canonical), or with bare a bare address (a /32 or /128). */
static int cidr_value(struct ctx *c, const json_t *v, bool bare, struct ipam_cidr *out)
{
	char why[160];
	int rc;

	if ((rc = want_string(c, &v)) != 0)
		return rc;
	if (bare && strchr(json_string_value(v), '/') == NULL &&
	    ipam_addr_parse(json_string_value(v), &out->addr)) {
		out->prefix = out->addr.family == 4 ? 32 : 128;
		return 0;
	}
	if (!ipam_cidr_parse(json_string_value(v), out, why, sizeof why))
		return fail(c, NULL, "%s", why);
	return 0;
}

static int addr_value(struct ctx *c, const json_t *v, int family, struct ipam_addr *out)
{
	int rc;

	if ((rc = want_string(c, &v)) != 0)
		return rc;
	if (!ipam_addr_parse(json_string_value(v), out))
		return fail(c, v, "is not an IP address");
	if (family != 0 && out->family != family)
		return fail(c, v, "is not an IPv%d address", family);
	return 0;
}

static json_t *addr_json(const struct ipam_addr *a)
{
	char buf[IPAM_ADDR_STRLEN];
	return json_string(ipam_addr_format(a, buf));
}

static json_t *cidr_json(const struct ipam_cidr *a)
{
	char buf[IPAM_CIDR_STRLEN];
	return json_string(ipam_cidr_format(a, buf));
}

/* A decimal 1-65535 from s[0..len): digits only. */
static bool port_number(const char *s, size_t len, long *out)
{
	long v = 0;

	if (len == 0 || len > 5)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return v >= 1 && v <= 65535;
}

/* A port: an integer 1-65535, or a string "N" or "LO:HI"; "N" and "N:N" become the integer N. */
static int port_value(struct ctx *c, const json_t *v, json_t **out)
{
	const char *s, *colon;
	long lo, hi;
	char buf[16];

	if (json_is_integer(v)) {
		if (json_integer_value(v) < 1 || json_integer_value(v) > 65535)
			return fail(c, v, "is not a port");
		*out = json_integer(json_integer_value(v));
		return *out != NULL ? 0 : -ENOMEM;
	}
	if (!json_is_string(v))
		return fail(c, v, "is not a port");
	s = json_string_value(v);
	colon = strchr(s, ':');
	if (colon == NULL) {
		if (!port_number(s, strlen(s), &lo))
			return fail(c, v, "is not a port or port range");
		hi = lo;
	} else if (!port_number(s, (size_t)(colon - s), &lo) ||
	           !port_number(colon + 1, strlen(colon + 1), &hi)) {
		return fail(c, v, "is not a port or port range");
	}
	if (lo > hi)
		return fail(c, v, "is not a port range: the first port is above the last");
	if (lo == hi) {
		*out = json_integer(lo);
	} else {
		snprintf(buf, sizeof buf, "%ld:%ld", lo, hi);
		*out = json_string(buf);
	}
	return *out != NULL ? 0 : -ENOMEM;
}

/* ------------------------------------------------------------------------------------------ */
/* Rules (section 3.8)                                                                         */

struct rule_state {
	int ip_version; /* 0, 4 or 6 */
	int family;     /* of the CIDRs seen so far, 0 before the first */
	int proto;      /* -1 when absent */
	bool has_net, has_nets;
};

static int rule_cidr(struct ctx *c, struct rule_state *st, const json_t *v, json_t **out)
{
	struct ipam_cidr cidr;
	int rc, fam;

	if ((rc = cidr_value(c, v, true, &cidr)) != 0)
		return rc;
	fam = cidr.addr.family;
	if (st->ip_version != 0 && fam != st->ip_version)
		return fail(c, v, "is IPv%d but the rule's ipVersion is %d", fam, st->ip_version);
	if (st->family != 0 && fam != st->family)
		return fail(c, v, "is IPv%d but the rule's other CIDRs are IPv%d", fam, st->family);
	st->family = fam;
	*out = cidr_json(&cidr);
	return *out != NULL ? 0 : -ENOMEM;
}

static int entity(struct ctx *c, const json_t *in, struct rule_state *st, json_t **out)
{
	static const char *const fields[] = {"tag",   "notTag",   "net",      "notNet",
	                                     "nets",  "notNets",  "selector", "notSelector",
	                                     "ports", "notPorts", NULL};
	json_t *o, *v, *item, *list, *x = NULL;
	size_t m, mi, i;
	int rc;

	*out = NULL;
	if ((rc = want_fields(c, in, fields)) != 0)
		return rc;
	if ((o = json_object()) == NULL)
		return -ENOMEM;
	for (const char *const *f = fields; *f != NULL; f++) {
		const char *k = *f;
		if ((v = opt(in, k)) == NULL)
			continue;
		m = push_field(c, k);
		if (strcmp(k, "tag") == 0 || strcmp(k, "notTag") == 0 ||
		    strcmp(k, "selector") == 0 || strcmp(k, "notSelector") == 0) {
			const json_t *sv = v;
			if ((rc = want_string(c, &sv)) != 0)
				goto err;
			if (json_string_length(sv) == 0) {
				pop(c, m);
				continue;
			}
			if (strcmp(k, "tag") == 0 || strcmp(k, "notTag") == 0) {
				if ((rc = name_value(c, sv, RULE_TAG, &x)) != 0)
					goto err;
			} else {
				if ((rc = selector_value(c, &sv)) != 0)
					goto err;
				x = json_string(json_string_value(sv));
			}
			if ((rc = put(o, k, x)) != 0)
				goto err;
		} else if (strcmp(k, "net") == 0 || strcmp(k, "notNet") == 0) {
			if ((rc = rule_cidr(c, st, v, &x)) != 0 || (rc = put(o, k, x)) != 0)
				goto err;
			st->has_net = true;
		} else {
			bool ports = strcmp(k, "ports") == 0 || strcmp(k, "notPorts") == 0;
			if ((rc = want_array(c, v)) != 0)
				goto err;
			if (json_array_size(v) == 0) {
				pop(c, m);
				continue;
			}
			if (ports && st->proto != 6 && st->proto != 17) {
				rc = fail(c, NULL, "ports need protocol tcp or udp");
				goto err;
			}
			if ((list = json_array()) == NULL || (rc = put(o, k, list)) != 0) {
				rc = -ENOMEM;
				goto err;
			}
			json_array_foreach (v, i, item) {
				mi = push_index(c, i);
				rc = ports ? port_value(c, item, &x) : rule_cidr(c, st, item, &x);
				if (rc != 0)
					goto err;
				if (json_array_append_new(list, x) != 0) {
					rc = -ENOMEM;
					goto err;
				}
				pop(c, mi);
			}
			if (!ports)
				st->has_nets = true;
		}
		pop(c, m);
	}
	*out = o;
	return 0;
err:
	json_decref(o);
	return rc;
}

static int protocol_value(struct ctx *c, const json_t *v, int *num, json_t **out)
{
	if (json_is_string(v)) {
		for (size_t i = 0; i < sizeof protocols / sizeof protocols[0]; i++) {
			if (strcmp(json_string_value(v), protocols[i].name) == 0) {
				*num = protocols[i].num;
				*out = json_string(protocols[i].name);
				return *out != NULL ? 0 : -ENOMEM;
			}
		}
	} else if (json_is_integer(v) && json_integer_value(v) >= 1 &&
	           json_integer_value(v) <= 255) {
		/* A number with a name is stored as the name: one rule has one stored form, so
		 * that "protocol: 6" and "protocol: tcp" compare equal (rule remove, apply's
		 * "unchanged"). */
		*num = (int)json_integer_value(v);
		*out = policy_protocol_name(*num) != NULL ? json_string(policy_protocol_name(*num))
		                                          : json_integer(*num);
		return *out != NULL ? 0 : -ENOMEM;
	}
	return fail(c, v, "is not a protocol (tcp, udp, icmp, icmpv6, sctp, udplite or 1 to 255)");
}

static int icmp_value(struct ctx *c, const json_t *v, json_t **out)
{
	static const char *const fields[] = {"type", "code", NULL};
	json_t *type, *code;
	size_t m;
	int rc;

	if ((rc = want_fields(c, v, fields)) != 0)
		return rc;
	type = opt(v, "type");
	code = opt(v, "code");
	if (type != NULL) {
		m = push_field(c, "type");
		if (!json_is_integer(type) || json_integer_value(type) < 0 ||
		    json_integer_value(type) > 254)
			return fail(c, type, "is not an ICMP type (0 to 254)");
		pop(c, m);
	}
	if (code != NULL) {
		m = push_field(c, "code");
		if (!json_is_integer(code) || json_integer_value(code) < 0 ||
		    json_integer_value(code) > 255)
			return fail(c, code, "is not an ICMP code (0 to 255)");
		if (type == NULL)
			return fail(c, code, "needs a type");
		pop(c, m);
	}
	if (type == NULL)
		return fail(c, v, "needs a type");
	if ((*out = json_object()) == NULL)
		return -ENOMEM;
	if ((rc = put(*out, "type", json_integer(json_integer_value(type)))) == 0 && code != NULL)
		rc = put(*out, "code", json_integer(json_integer_value(code)));
	if (rc != 0) {
		json_decref(*out);
		*out = NULL;
	}
	return rc;
}

static int rule(struct ctx *c, const json_t *in, json_t **out)
{
	static const char *const fields[] = {"action",      "ipVersion",   "protocol",
	                                     "notProtocol", "icmp",        "notICMP",
	                                     "source",      "destination", NULL};
	static const char *const actions[] = {"allow", "deny", "log", "pass", NULL};
	struct rule_state st = {.proto = -1};
	json_t *o, *v, *x = NULL;
	size_t m;
	int rc, num = 0;

	*out = NULL;
	if ((rc = want_fields(c, in, fields)) != 0)
		return rc;
	if ((o = json_object()) == NULL)
		return -ENOMEM;

	m = push_field(c, "action");
	if ((v = opt(in, "action")) == NULL) {
		rc = fail(c, NULL, "required");
		goto err;
	}
	if (!json_is_string(v) || !in_list(json_string_value(v), actions)) {
		rc = fail(c, v, "is not an action (allow, deny, log or pass)");
		goto err;
	}
	if (c->profile && strcmp(json_string_value(v), "pass") == 0) {
		rc = fail(c, v, "is not allowed in a profile (allow, deny or log)");
		goto err;
	}
	if ((rc = put(o, "action", json_string(json_string_value(v)))) != 0)
		goto err;
	pop(c, m);

	if ((v = opt(in, "ipVersion")) != NULL) {
		m = push_field(c, "ipVersion");
		if (!json_is_integer(v) ||
		    (json_integer_value(v) != 4 && json_integer_value(v) != 6)) {
			rc = fail(c, v, "is not an IP version (4 or 6)");
			goto err;
		}
		st.ip_version = (int)json_integer_value(v);
		if ((rc = put(o, "ipVersion", json_integer(st.ip_version))) != 0)
			goto err;
		pop(c, m);
	}
	for (int neg = 0; neg < 2; neg++) {
		const char *k = neg ? "notProtocol" : "protocol";
		if ((v = opt(in, k)) == NULL)
			continue;
		m = push_field(c, k);
		if ((rc = protocol_value(c, v, &num, &x)) != 0 || (rc = put(o, k, x)) != 0)
			goto err;
		if (!neg)
			st.proto = num;
		pop(c, m);
	}
	for (int neg = 0; neg < 2; neg++) {
		const char *k = neg ? "notICMP" : "icmp";
		if ((v = opt(in, k)) == NULL)
			continue;
		m = push_field(c, k);
		if ((rc = icmp_value(c, v, &x)) != 0 || (rc = put(o, k, x)) != 0)
			goto err;
		if (st.proto != 1 && st.proto != 58) {
			rc = fail(c, NULL, "ICMP fields need protocol icmp or icmpv6");
			goto err;
		}
		pop(c, m);
	}
	for (int dst = 0; dst < 2; dst++) {
		const char *k = dst ? "destination" : "source";
		if ((v = opt(in, k)) == NULL)
			continue;
		m = push_field(c, k);
		if ((rc = entity(c, v, &st, &x)) != 0)
			goto err;
		if (json_object_size(x) == 0)
			json_decref(x);
		else if ((rc = put(o, k, x)) != 0)
			goto err;
		pop(c, m);
	}
	if (st.has_net && st.has_nets) {
		rc = fail(c, NULL, "net/notNet and nets/notNets cannot be mixed in one rule");
		goto err;
	}
	*out = o;
	return 0;
err:
	json_decref(o);
	return rc;
}

/* spec[key]: a list of rules, always present in out (empty when absent). */
static int rules_field(struct ctx *c, const json_t *spec, const char *key, json_t *out)
{
	json_t *v = opt(spec, key), *list, *item, *x = NULL;
	size_t m = push_field(c, key), i;
	int rc;

	if ((list = json_array()) == NULL)
		return -ENOMEM;
	if (v != NULL && (rc = want_array(c, v)) != 0) {
		json_decref(list);
		return rc;
	}
	json_array_foreach (v, i, item) {
		size_t mi = push_index(c, i);
		if ((rc = rule(c, item, &x)) != 0) {
			json_decref(list);
			return rc;
		}
		if (json_array_append_new(list, x) != 0) {
			json_decref(list);
			return -ENOMEM;
		}
		pop(c, mi);
	}
	pop(c, m);
	return put(out, key, list);
}

static int bool_field(struct ctx *c, const json_t *obj, const char *key, json_t *out, bool *value)
{
	json_t *v = opt(obj, key);
	size_t m = push_field(c, key);
	int rc;

	*value = false;
	if (v != NULL) {
		if ((rc = want_bool(c, v)) != 0)
			return rc;
		*value = json_is_true(v);
	}
	pop(c, m);
	return put(out, key, json_boolean(*value));
}

/* ------------------------------------------------------------------------------------------ */
/* Kinds                                                                                       */

static int norm_policy(struct ctx *c, const json_t *md, const json_t *spec, json_t *omd,
                       json_t *ospec)
{
	static const char *const mfields[] = {"name", "annotations", NULL};
	static const char *const sfields[] = {"order",  "selector",   "types",   "ingress",
	                                      "egress", "doNotTrack", "preDNAT", NULL};
	json_t *v, *types, *item;
	const json_t *sel;
	size_t m, i;
	bool dnt, prednat, seen[2] = {false, false};
	int rc;

	m = push_field(c, "metadata");
	if ((rc = want_fields(c, md, mfields)) != 0 ||
	    (rc = name_field(c, md, "name", true, RULE_NS_NAME, omd)) != 0)
		return rc;
	if ((v = opt(md, "annotations")) != NULL) {
		const char *k;
		json_t *val, *annotations;
		size_t ma = push_field(c, "annotations");
		if (!json_is_object(v))
			return fail(c, v, "is not a mapping");
		if ((annotations = json_object()) == NULL ||
		    (rc = put(omd, "annotations", annotations)) != 0)
			return -ENOMEM;
		json_object_foreach (v, k, val) {
			const json_t *sv = val;
			size_t mk = push_field(c, k);
			if ((rc = want_string(c, &sv)) != 0 ||
			    (rc = put(annotations, k, json_string(json_string_value(sv)))) != 0)
				return rc;
			pop(c, mk);
		}
		pop(c, ma);
	}
	pop(c, m);

	m = push_field(c, "spec");
	if ((rc = want_fields(c, spec, sfields)) != 0)
		return rc;
	if ((v = opt(spec, "order")) != NULL) {
		size_t mo = push_field(c, "order");
		if (!json_is_number(v))
			return fail(c, v, "is not a number");
		if ((rc = put(ospec, "order", json_copy(v))) != 0)
			return rc;
		pop(c, mo);
	}
	if ((sel = opt(spec, "selector")) != NULL) {
		size_t ms = push_field(c, "selector");
		if ((rc = selector_value(c, &sel)) != 0)
			return rc;
		pop(c, ms);
	}
	if ((rc = put(ospec, "selector", json_string(sel != NULL ? json_string_value(sel) : ""))) !=
	    0)
		return rc;
	/* types: checked now, defaulted once the rules are known; a placeholder keeps the key
	 * order. */
	if ((types = json_array()) == NULL || (rc = put(ospec, "types", types)) != 0)
		return -ENOMEM;
	if ((v = opt(spec, "types")) != NULL) {
		size_t mt = push_field(c, "types");
		if ((rc = want_array(c, v)) != 0)
			return rc;
		json_array_foreach (v, i, item) {
			size_t mi = push_index(c, i);
			const char *s = json_string_value(item);
			int t = s == NULL                   ? -1
			        : strcmp(s, "ingress") == 0 ? 0
			        : strcmp(s, "egress") == 0  ? 1
			                                    : -1;
			if (t < 0)
				return fail(c, item, "is not a policy type (ingress or egress)");
			if (seen[t])
				return fail(c, item, "is repeated");
			seen[t] = true;
			if (json_array_append_new(types, json_string(json_string_value(item))) != 0)
				return -ENOMEM;
			pop(c, mi);
		}
		pop(c, mt);
	}
	if ((rc = rules_field(c, spec, "ingress", ospec)) != 0 ||
	    (rc = rules_field(c, spec, "egress", ospec)) != 0 ||
	    (rc = bool_field(c, spec, "doNotTrack", ospec, &dnt)) != 0 ||
	    (rc = bool_field(c, spec, "preDNAT", ospec, &prednat)) != 0)
		return rc;
	if (json_array_size(types) == 0) {
		/* Section 3.3: no egress rules: ingress (even with no ingress rules either); egress
		 * rules only: egress; both: both. */
		bool in = json_array_size(json_object_get(ospec, "ingress")) > 0;
		bool eg = json_array_size(json_object_get(ospec, "egress")) > 0;
		if ((!eg || in) && json_array_append_new(types, json_string("ingress")) != 0)
			return -ENOMEM;
		if (eg && json_array_append_new(types, json_string("egress")) != 0)
			return -ENOMEM;
	}
	if (dnt && prednat) {
		push_field(c, "preDNAT");
		return fail(c, NULL, "a policy cannot be both preDNAT and doNotTrack");
	}
	if (prednat && json_array_size(json_object_get(ospec, "egress")) > 0) {
		push_field(c, "egress");
		return fail(c, NULL, "a preDNAT policy cannot have egress rules");
	}
	if (prednat) {
		json_array_foreach (types, i, item) {
			if (strcmp(json_string_value(item), "egress") == 0) {
				push_field(c, "types");
				push_index(c, i);
				return fail(c, item, "is not allowed in a preDNAT policy");
			}
		}
	}
	pop(c, m);
	return 0;
}

static int norm_profile(struct ctx *c, const json_t *md, const json_t *spec, json_t *omd,
                        json_t *ospec)
{
	static const char *const mfields[] = {"name", "labels", "tags", NULL};
	static const char *const sfields[] = {"ingress", "egress", NULL};
	size_t m;
	int rc;

	m = push_field(c, "metadata");
	if ((rc = want_fields(c, md, mfields)) != 0 ||
	    (rc = name_field(c, md, "name", true, RULE_NS_NAME, omd)) != 0 ||
	    (rc = labels_field(c, md, omd)) != 0 ||
	    (rc = names_field(c, md, "tags", RULE_TAG, omd)) != 0)
		return rc;
	pop(c, m);
	m = push_field(c, "spec");
	c->profile = true;
	if ((rc = want_fields(c, spec, sfields)) != 0 ||
	    (rc = rules_field(c, spec, "ingress", ospec)) != 0 ||
	    (rc = rules_field(c, spec, "egress", ospec)) != 0)
		return rc;
	pop(c, m);
	return 0;
}

/* ipip / vxlan: {enabled, mode}, mode "always" (the default) or "cross-subnet". */
static int encap_field(struct ctx *c, const json_t *spec, const char *key, json_t *out)
{
	static const char *const fields[] = {"enabled", "mode", NULL};
	json_t *v = opt(spec, key), *o, *mode;
	size_t m = push_field(c, key), mm;
	bool enabled;
	int rc;

	if (v == NULL) {
		pop(c, m);
		return 0;
	}
	if ((rc = want_fields(c, v, fields)) != 0)
		return rc;
	if ((o = json_object()) == NULL || (rc = put(out, key, o)) != 0)
		return -ENOMEM;
	if ((rc = bool_field(c, v, "enabled", o, &enabled)) != 0)
		return rc;
	mm = push_field(c, "mode");
	mode = opt(v, "mode");
	if (mode != NULL &&
	    (!json_is_string(mode) || (strcmp(json_string_value(mode), "always") != 0 &&
	                               strcmp(json_string_value(mode), "cross-subnet") != 0 &&
	                               json_string_length(mode) != 0)))
		return fail(c, mode, "is not an encapsulation mode (always or cross-subnet)");
	if ((rc = put(o, "mode",
	              json_string(mode != NULL && json_string_length(mode) != 0
	                              ? json_string_value(mode)
	                              : "always"))) != 0)
		return rc;
	pop(c, mm);
	pop(c, m);
	return 0;
}

static int norm_ippool(struct ctx *c, const json_t *md, const json_t *spec, json_t *omd,
                       json_t *ospec, json_t *whole)
{
	static const char *const mfields[] = {"cidr", NULL};
	static const char *const sfields[] = {"ipip",  "nat-outgoing", "disabled", "blockSize",
	                                      "vxlan", "nodeSelector", NULL};
	struct ipam_cidr cidr;
	struct ipam_pool pool;
	json_t *v;
	const json_t *sel;
	size_t m, mf;
	bool b;
	char why[256];
	int rc;

	m = push_field(c, "metadata");
	if ((rc = want_fields(c, md, mfields)) != 0)
		return rc;
	mf = push_field(c, "cidr");
	if ((v = opt(md, "cidr")) == NULL)
		return fail(c, NULL, "required");
	if ((rc = cidr_value(c, v, false, &cidr)) != 0 || (rc = put(omd, "cidr", cidr_json(&cidr))))
		return rc;
	pop(c, mf);
	pop(c, m);

	m = push_field(c, "spec");
	if ((rc = want_fields(c, spec, sfields)) != 0 ||
	    (rc = encap_field(c, spec, "ipip", ospec)) != 0 ||
	    (rc = bool_field(c, spec, "nat-outgoing", ospec, &b)) != 0 ||
	    (rc = bool_field(c, spec, "disabled", ospec, &b)) != 0)
		return rc;
	if ((v = opt(spec, "blockSize")) != NULL) {
		int lo = cidr.addr.family == 4 ? 20 : 116, hi = cidr.addr.family == 4 ? 32 : 128;
		mf = push_field(c, "blockSize");
		if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
			return fail(c, v, "is not a block size (IPv%u: %d to %d)", cidr.addr.family,
			            lo, hi);
		if ((rc = put(ospec, "blockSize", json_integer(json_integer_value(v)))) != 0)
			return rc;
		pop(c, mf);
	}
	if ((rc = encap_field(c, spec, "vxlan", ospec)) != 0)
		return rc;
	if ((sel = opt(spec, "nodeSelector")) != NULL) {
		mf = push_field(c, "nodeSelector");
		if ((rc = selector_value(c, &sel)) != 0)
			return rc;
		if (json_string_length(sel) >= IPAM_SELECTOR_MAX)
			return fail(c, NULL, "the node selector is longer than %d bytes",
			            IPAM_SELECTOR_MAX - 1);
		if ((rc = put(ospec, "nodeSelector", json_string(json_string_value(sel)))) != 0)
			return rc;
		pop(c, mf);
	}
	pop(c, m);
	/* Section 2.1's checks are IPAM's: the pool must be one IPAM would take. */
	if ((rc = policy_ippool_to_ipam(whole, &pool, why, sizeof why)) != 0)
		return rc;
	if (!ipam_pool_validate(&pool, why, sizeof why)) {
		snprintf(c->err, c->errlen, "%s: %s", c->who, why);
		return -EINVAL;
	}
	return 0;
}

static int addr_list_field(struct ctx *c, const json_t *obj, const char *key, json_t *out,
                           bool single_cidr)
{
	json_t *v = opt(obj, key), *list, *item, *x = NULL;
	size_t m = push_field(c, key), i;
	int rc;

	if (v == NULL && !single_cidr) {
		pop(c, m);
		return 0;
	}
	if ((list = json_array()) == NULL || (rc = put(out, key, list)) != 0)
		return -ENOMEM;
	if (v != NULL && (rc = want_array(c, v)) != 0)
		return rc;
	json_array_foreach (v, i, item) {
		size_t mi = push_index(c, i);
		if (single_cidr) {
			struct ipam_cidr cidr;
			if ((rc = cidr_value(c, item, true, &cidr)) != 0)
				return rc;
			if (cidr.prefix != (cidr.addr.family == 4 ? 32 : 128))
				return fail(c, item, "is not a single address (/%d)",
				            cidr.addr.family == 4 ? 32 : 128);
			x = cidr_json(&cidr);
		} else {
			struct ipam_addr a;
			if ((rc = addr_value(c, item, 0, &a)) != 0)
				return rc;
			x = addr_json(&a);
		}
		if (x == NULL || json_array_append_new(list, x) != 0)
			return -ENOMEM;
		pop(c, mi);
	}
	pop(c, m);
	return 0;
}

static int norm_hostendpoint(struct ctx *c, const json_t *md, const json_t *spec, json_t *omd,
                             json_t *ospec)
{
	static const char *const mfields[] = {"name", "node", "labels", NULL};
	static const char *const sfields[] = {"interfaceName", "expectedIPs", "profiles", NULL};
	size_t m;
	int rc;

	m = push_field(c, "metadata");
	if ((rc = want_fields(c, md, mfields)) != 0 ||
	    (rc = name_field(c, md, "name", true, RULE_NAME, omd)) != 0 ||
	    (rc = name_field(c, md, "node", true, RULE_NAME, omd)) != 0 ||
	    (rc = labels_field(c, md, omd)) != 0)
		return rc;
	pop(c, m);
	m = push_field(c, "spec");
	if ((rc = want_fields(c, spec, sfields)) != 0 ||
	    (rc = name_field(c, spec, "interfaceName", false, RULE_IFACE, ospec)) != 0 ||
	    (rc = addr_list_field(c, spec, "expectedIPs", ospec, false)) != 0 ||
	    (rc = names_field(c, spec, "profiles", RULE_NS_NAME, ospec)) != 0)
		return rc;
	if (json_object_get(ospec, "interfaceName") == NULL &&
	    json_array_size(json_object_get(ospec, "expectedIPs")) == 0)
		return fail(c, NULL, "needs interfaceName or expectedIPs");
	pop(c, m);
	return 0;
}

/* 6 octets as hex pairs separated by ':' or '-' (one kind throughout), written lower case with
 * ':'. */
static int mac_value(struct ctx *c, const json_t *v, json_t **out)
{
	static const char hex[] = "0123456789abcdef";
	char buf[18];
	const char *s;
	int rc;

	if ((rc = want_string(c, &v)) != 0)
		return rc;
	s = json_string_value(v);
	if (json_string_length(v) != 17)
		return fail(c, v, "is not a MAC address");
	for (int i = 0; i < 17; i++) {
		char ch = s[i];
		if (i % 3 == 2) {
			if ((ch != ':' && ch != '-') || ch != s[2])
				return fail(c, v, "is not a MAC address");
			buf[i] = ':';
			continue;
		}
		if (ch >= 'A' && ch <= 'F')
			ch = (char)(ch - 'A' + 'a');
		if (strchr(hex, ch) == NULL || ch == '\0')
			return fail(c, v, "is not a MAC address");
		buf[i] = ch;
	}
	buf[17] = '\0';
	*out = json_string(buf);
	return *out != NULL ? 0 : -ENOMEM;
}

static int norm_workloadendpoint(struct ctx *c, const json_t *md, const json_t *spec, json_t *omd,
                                 json_t *ospec)
{
	static const char *const mfields[] = {
	    "name", "workload", "orchestrator", "node", "activeInstanceID", "labels", NULL};
	static const char *const sfields[] = {"ipNetworks",  "ipNATs",   "ipv4Gateway",
	                                      "ipv6Gateway", "profiles", "interfaceName",
	                                      "mac",         NULL};
	static const char *const natfields[] = {"internalIP", "externalIP", NULL};
	struct ipam_addr a, ext;
	json_t *v, *item, *list, *nat, *nets, *x = NULL;
	const json_t *id;
	size_t m, mf, i;
	int rc;

	m = push_field(c, "metadata");
	if ((rc = want_fields(c, md, mfields)) != 0 ||
	    (rc = name_field(c, md, "name", true, RULE_NAME, omd)) != 0 ||
	    (rc = name_field(c, md, "workload", true, RULE_NS_NAME, omd)) != 0 ||
	    (rc = name_field(c, md, "orchestrator", true, RULE_NAME, omd)) != 0 ||
	    (rc = name_field(c, md, "node", true, RULE_NAME, omd)) != 0)
		return rc;
	if ((id = opt(md, "activeInstanceID")) != NULL) {
		mf = push_field(c, "activeInstanceID");
		if ((rc = want_string(c, &id)) != 0)
			return rc;
		if (!ipam_text_ok(json_string_value(id), json_string_length(id), 0, IPAM_VALUE_MAX))
			return fail(c, id, "is not a valid instance ID");
		if ((rc = put(omd, "activeInstanceID", json_string(json_string_value(id)))) != 0)
			return rc;
		pop(c, mf);
	}
	if ((rc = labels_field(c, md, omd)) != 0)
		return rc;
	pop(c, m);

	m = push_field(c, "spec");
	if ((rc = want_fields(c, spec, sfields)) != 0 ||
	    (rc = addr_list_field(c, spec, "ipNetworks", ospec, true)) != 0)
		return rc;
	nets = json_object_get(ospec, "ipNetworks");
	if ((v = opt(spec, "ipNATs")) != NULL) {
		mf = push_field(c, "ipNATs");
		if ((rc = want_array(c, v)) != 0)
			return rc;
		if ((list = json_array()) == NULL || (rc = put(ospec, "ipNATs", list)) != 0)
			return -ENOMEM;
		json_array_foreach (v, i, item) {
			size_t mi = push_index(c, i), mk;
			json_t *in_ip, *ex_ip, *net;
			bool found = false;
			size_t j;
			if ((rc = want_fields(c, item, natfields)) != 0)
				return rc;
			in_ip = opt(item, "internalIP");
			ex_ip = opt(item, "externalIP");
			mk = push_field(c, "internalIP");
			if (in_ip == NULL)
				return fail(c, NULL, "required");
			if ((rc = addr_value(c, in_ip, 0, &a)) != 0)
				return rc;
			json_array_foreach (nets, j, net) {
				struct ipam_cidr nc;
				char why[128];
				if (ipam_cidr_parse(json_string_value(net), &nc, why, sizeof why) &&
				    ipam_cidr_contains(&nc, &a))
					found = true;
			}
			if (!found)
				return fail(c, in_ip, "is not one of the endpoint's ipNetworks");
			pop(c, mk);
			mk = push_field(c, "externalIP");
			if (ex_ip == NULL)
				return fail(c, NULL, "required");
			if ((rc = addr_value(c, ex_ip, 0, &ext)) != 0)
				return rc;
			if (ext.family != a.family)
				return fail(c, ex_ip, "is not of the internalIP's family (IPv%d)",
				            a.family);
			pop(c, mk);
			if ((nat = json_object()) == NULL ||
			    json_array_append_new(list, nat) != 0 ||
			    (rc = put(nat, "internalIP", addr_json(&a))) != 0 ||
			    (rc = put(nat, "externalIP", addr_json(&ext))) != 0)
				return -ENOMEM;
			pop(c, mi);
		}
		pop(c, mf);
	}
	for (int six = 0; six < 2; six++) {
		const char *k = six ? "ipv6Gateway" : "ipv4Gateway";
		if ((v = opt(spec, k)) == NULL)
			continue;
		mf = push_field(c, k);
		if ((rc = addr_value(c, v, six ? 6 : 4, &a)) != 0 ||
		    (rc = put(ospec, k, addr_json(&a))))
			return rc;
		pop(c, mf);
	}
	if ((rc = names_field(c, spec, "profiles", RULE_NS_NAME, ospec)) != 0 ||
	    (rc = name_field(c, spec, "interfaceName", true, RULE_IFACE, ospec)) != 0)
		return rc;
	if ((v = opt(spec, "mac")) != NULL) {
		mf = push_field(c, "mac");
		if ((rc = mac_value(c, v, &x)) != 0 || (rc = put(ospec, "mac", x)) != 0)
			return rc;
		pop(c, mf);
	}
	pop(c, m);
	return 0;
}

/* An AS number: an integer 0-4294967295, or a string of one, or dotted "HI.LO" (each 0-65535). */
static bool as_number_ok(const json_t *v)
{
	const char *s;
	unsigned long long parts[2] = {0, 0};
	int n = 0, digits = 0;

	if (json_is_integer(v))
		return json_integer_value(v) >= 0 && json_integer_value(v) <= 4294967295LL;
	if (!json_is_string(v))
		return false;
	for (s = json_string_value(v);; s++) {
		if (*s >= '0' && *s <= '9' && digits < 10) {
			parts[n] = parts[n] * 10 + (unsigned)(*s - '0');
			digits++;
		} else if (*s == '.' && n == 0 && digits > 0) {
			n = 1;
			digits = 0;
		} else if (*s == '\0' && digits > 0) {
			break;
		} else {
			return false;
		}
	}
	if (n == 0)
		return parts[0] <= 4294967295ULL;
	return parts[0] <= 65535 && parts[1] <= 65535;
}

/* "ADDRESS/PREFIX" of the given family, host bits allowed: the canonical address, the prefix. */
static int bgp_address(struct ctx *c, const json_t *v, int family, json_t **out)
{
	char addr[IPAM_ADDR_STRLEN + 1], buf[IPAM_CIDR_STRLEN];
	const char *s, *slash;
	struct ipam_addr a;
	int rc, prefix = 0;

	if ((rc = want_string(c, &v)) != 0)
		return rc;
	s = json_string_value(v);
	slash = strchr(s, '/');
	if (slash == NULL || (size_t)(slash - s) > IPAM_ADDR_STRLEN || slash[1] == '\0' ||
	    strlen(slash + 1) > 3)
		return fail(c, v, "is not an IPv%d address with a prefix length (ADDRESS/PREFIX)",
		            family);
	memcpy(addr, s, (size_t)(slash - s));
	addr[slash - s] = '\0';
	for (const char *p = slash + 1; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return fail(c, v, "is not an IPv%d address with a prefix length", family);
		prefix = prefix * 10 + (*p - '0');
	}
	if (!ipam_addr_parse(addr, &a) || a.family != family || prefix > (family == 4 ? 32 : 128))
		return fail(c, v, "is not an IPv%d address with a prefix length", family);
	snprintf(buf, sizeof buf, "%s/%d", ipam_addr_format(&a, addr), prefix);
	*out = json_string(buf);
	return *out != NULL ? 0 : -ENOMEM;
}

static int norm_node(struct ctx *c, const json_t *md, const json_t *spec, json_t *omd,
                     json_t *ospec)
{
	static const char *const mfields[] = {"name", "labels", NULL};
	static const char *const sfields[] = {"bgp", "orchRefs", NULL};
	static const char *const bfields[] = {"asNumber", "ipv4Address", "ipv6Address", NULL};
	static const char *const ofields[] = {"nodeName", "orchestrator", NULL};
	json_t *v, *bgp, *x, *list, *item, *ref;
	size_t m, mb, mf, i;
	int rc;

	m = push_field(c, "metadata");
	if ((rc = want_fields(c, md, mfields)) != 0 ||
	    (rc = name_field(c, md, "name", true, RULE_NAME, omd)) != 0 ||
	    (rc = labels_field(c, md, omd)) != 0)
		return rc;
	pop(c, m);
	m = push_field(c, "spec");
	if ((rc = want_fields(c, spec, sfields)) != 0)
		return rc;
	if ((v = opt(spec, "bgp")) != NULL) {
		mb = push_field(c, "bgp");
		if ((rc = want_fields(c, v, bfields)) != 0)
			return rc;
		if ((bgp = json_object()) == NULL || (rc = put(ospec, "bgp", bgp)) != 0)
			return -ENOMEM;
		if ((x = opt(v, "asNumber")) != NULL) {
			mf = push_field(c, "asNumber");
			if (!as_number_ok(x))
				return fail(
				    c, x,
				    "is not an AS number (0 to 4294967295, or dotted \"1.10\" "
				    "quoted)");
			if ((rc = put(bgp, "asNumber", json_copy(x))) != 0)
				return rc;
			pop(c, mf);
		}
		for (int six = 0; six < 2; six++) {
			const char *k = six ? "ipv6Address" : "ipv4Address";
			json_t *a = NULL;
			if ((x = opt(v, k)) == NULL)
				continue;
			mf = push_field(c, k);
			if ((rc = bgp_address(c, x, six ? 6 : 4, &a)) != 0 ||
			    (rc = put(bgp, k, a)) != 0)
				return rc;
			pop(c, mf);
		}
		if (json_object_get(bgp, "ipv4Address") == NULL &&
		    json_object_get(bgp, "ipv6Address") == NULL)
			return fail(c, NULL, "needs ipv4Address or ipv6Address");
		pop(c, mb);
	}
	if ((v = opt(spec, "orchRefs")) != NULL) {
		mf = push_field(c, "orchRefs");
		if ((rc = want_array(c, v)) != 0)
			return rc;
		if ((list = json_array()) == NULL || (rc = put(ospec, "orchRefs", list)) != 0)
			return -ENOMEM;
		json_array_foreach (v, i, item) {
			size_t mi = push_index(c, i);
			if ((rc = want_fields(c, item, ofields)) != 0)
				return rc;
			if ((ref = json_object()) == NULL || json_array_append_new(list, ref) != 0)
				return -ENOMEM;
			if ((rc = name_field(c, item, "nodeName", true, RULE_NAME, ref)) != 0 ||
			    (rc = name_field(c, item, "orchestrator", true, RULE_NAME, ref)) != 0)
				return rc;
			pop(c, mi);
		}
		pop(c, mf);
	}
	pop(c, m);
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The envelope                                                                                */

/* "KIND NAME" for messages: the name when it is usable (YAML's text of a number too), else "#N"
 * (1-based position). */
static void name_resource(struct ctx *c, const json_t *in, unsigned index, enum policy_kind k)
{
	const json_t *md = json_object_get(in, "metadata");
	const char *field = k == POLICY_KIND_IPPOOL    ? "cidr"
	                    : k == POLICY_KIND_BGPPEER ? "peerIP"
	                                               : "name";
	const json_t *name = json_object_get(md, field);

	if (!json_is_string(name))
		name = json_object_get(json_object_get(c->texts, "metadata"), field);
	const char *kind = k != POLICY_KIND_NONE ? policy_kind_name(k) : "resource";
	bool usable = false;

	if (json_is_string(name)) {
		const char *s = json_string_value(name);
		size_t len = json_string_length(name);
		if (k == POLICY_KIND_IPPOOL || k == POLICY_KIND_BGPPEER)
			usable = ipam_text_ok(s, len, 1, 64) && strchr(s, ' ') == NULL;
		else if (k == POLICY_KIND_POLICY || k == POLICY_KIND_PROFILE)
			usable = name_ok(s, len, RULE_NS_NAME);
		else if (k != POLICY_KIND_NONE)
			usable = name_ok(s, len, RULE_NAME);
	}
	if (usable)
		snprintf(c->who, sizeof c->who, "%s %s", kind, json_string_value(name));
	else
		snprintf(c->who, sizeof c->who, "%s #%u", kind, index + 1);
}

/* A copy of in with the values of taken ([[STEP...], TEXT]...) replaced by their texts. */
static json_t *with_texts(const json_t *in, const json_t *taken)
{
	json_t *copy = json_deep_copy(in), *t;
	size_t i;

	json_array_foreach (taken, i, t) {
		const json_t *steps = json_array_get(t, 0);
		json_t *node = copy;
		size_t n = json_array_size(steps), j;
		int rc;

		for (j = 0; node != NULL && j + 1 < n; j++) {
			const json_t *step = json_array_get(steps, j);
			node = json_is_string(step)
			           ? json_object_get(node, json_string_value(step))
			           : json_array_get(node, (size_t)json_integer_value(step));
		}
		if (node == NULL || n == 0) {
			json_decref(copy);
			return NULL;
		}
		if (json_is_string(json_array_get(steps, n - 1)))
			rc = json_object_set(node, json_string_value(json_array_get(steps, n - 1)),
			                     json_array_get(t, 1));
		else
			rc = json_array_set(
			    node, (size_t)json_integer_value(json_array_get(steps, n - 1)),
			    json_array_get(t, 1));
		if (rc != 0) {
			json_decref(copy);
			return NULL;
		}
	}
	return copy;
}

int policy_resource_normalize(const json_t *in, unsigned index, json_t **out, char *err,
                              size_t errlen)
{
	return policy_resource_normalize_texts(in, NULL, index, out, NULL, err, errlen);
}

int policy_resource_normalize_texts(const json_t *in, const json_t *texts, unsigned index,
                                    json_t **out, json_t **quoted, char *err, size_t errlen)
{
	static const char *const fields[] = {"apiVersion", "kind", "metadata", "spec", NULL};
	struct ctx c = {.err = err, .errlen = errlen, .texts = texts};
	enum policy_kind k = POLICY_KIND_NONE;
	json_t *o = NULL, *omd = NULL, *ospec = NULL, *v, *md, *spec, *empty = NULL;
	int rc;

	*out = NULL;
	if (quoted != NULL)
		*quoted = NULL;
	if (errlen > 0)
		err[0] = '\0';
	if (json_is_object(in) && json_is_string(json_object_get(in, "kind")))
		k = policy_kind_parse(json_string_value(json_object_get(in, "kind")));
	name_resource(&c, in, index, k);
	if (!json_is_object(in))
		return fail(&c, in, "is not a resource (a mapping)");
	if (k == POLICY_KIND_BGPPEER) {
		snprintf(err, errlen,
		         "%s: Tabby routes without BGP; bgpPeer resources are not supported",
		         c.who);
		return -EINVAL;
	}
	if ((rc = want_fields(&c, in, fields)) != 0)
		return rc;
	push_field(&c, "apiVersion");
	if ((v = opt(in, "apiVersion")) == NULL)
		return fail(&c, NULL, "required (\"v1\")");
	if (!json_is_string(v) || strcmp(json_string_value(v), "v1") != 0)
		return fail(&c, v, "is not supported (this is the v1 API: \"v1\")");
	pop(&c, 0);
	push_field(&c, "kind");
	if ((v = opt(in, "kind")) == NULL)
		return fail(&c, NULL, "required");
	if (k == POLICY_KIND_NONE)
		return fail(&c, v, "is not a known kind");
	pop(&c, 0);
	md = opt(in, "metadata");
	if (md == NULL && (md = empty = json_object()) == NULL)
		return -ENOMEM;
	spec = opt(in, "spec");
	if (spec == NULL && (spec = empty != NULL ? empty : (empty = json_object())) == NULL)
		return -ENOMEM;

	if ((o = json_object()) == NULL || (omd = json_object()) == NULL ||
	    (ospec = json_object()) == NULL) {
		rc = -ENOMEM;
		goto err;
	}
	if ((rc = put(o, "apiVersion", json_string("v1"))) != 0 ||
	    (rc = put(o, "kind", json_string(policy_kind_name(k)))) != 0 ||
	    (rc = put(o, "metadata", json_incref(omd))) != 0 ||
	    (rc = put(o, "spec", json_incref(ospec))) != 0)
		goto err;
	switch (k) {
	case POLICY_KIND_POLICY:
		rc = norm_policy(&c, md, spec, omd, ospec);
		break;
	case POLICY_KIND_PROFILE:
		rc = norm_profile(&c, md, spec, omd, ospec);
		break;
	case POLICY_KIND_IPPOOL:
		rc = norm_ippool(&c, md, spec, omd, ospec, o);
		break;
	case POLICY_KIND_HOSTENDPOINT:
		rc = norm_hostendpoint(&c, md, spec, omd, ospec);
		break;
	case POLICY_KIND_WORKLOADENDPOINT:
		rc = norm_workloadendpoint(&c, md, spec, omd, ospec);
		break;
	default:
		rc = norm_node(&c, md, spec, omd, ospec);
		break;
	}
	if (rc != 0)
		goto err;
	if (quoted != NULL && c.taken != NULL && (*quoted = with_texts(in, c.taken)) == NULL) {
		rc = -ENOMEM;
		goto err;
	}
	json_decref(c.taken);
	json_decref(omd);
	json_decref(ospec);
	json_decref(empty);
	*out = o;
	return 0;
err:
	if (rc == -ENOMEM)
		snprintf(err, errlen, "%s: out of memory", c.who);
	json_decref(c.taken);
	json_decref(o);
	json_decref(omd);
	json_decref(ospec);
	json_decref(empty);
	return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Keys and IPAM                                                                               */

static const char *str_at(const json_t *obj, const char *a, const char *b)
{
	const char *s = json_string_value(json_object_get(json_object_get(obj, a), b));
	return s != NULL && *s != '\0' ? s : NULL;
}

enum policy_kind policy_resource_key(const json_t *n, char *key, size_t keylen)
{
	const char *kind = json_string_value(json_object_get(n, "kind"));
	enum policy_kind k = POLICY_KIND_NONE;
	const char *name = str_at(n, "metadata", "name");
	const char *node = str_at(n, "metadata", "node");
	int len = -1;

	if (keylen > 0)
		key[0] = '\0';
	for (int i = POLICY_KIND_POLICY; kind != NULL && i < POLICY_KIND_BGPPEER; i++)
		if (strcmp(kind, kinds[i].name) == 0)
			k = (enum policy_kind)i;
	switch (k) {
	case POLICY_KIND_POLICY:
	case POLICY_KIND_PROFILE:
	case POLICY_KIND_NODE:
		if (name != NULL)
			len = snprintf(key, keylen, "%s", name);
		break;
	case POLICY_KIND_IPPOOL:
		if (str_at(n, "metadata", "cidr") != NULL)
			len = snprintf(key, keylen, "%s", str_at(n, "metadata", "cidr"));
		break;
	case POLICY_KIND_HOSTENDPOINT:
		if (name != NULL && node != NULL)
			len = snprintf(key, keylen, "%s/%s", node, name);
		break;
	case POLICY_KIND_WORKLOADENDPOINT: {
		const char *orch = str_at(n, "metadata", "orchestrator");
		const char *wl = str_at(n, "metadata", "workload");
		if (name != NULL && node != NULL && orch != NULL && wl != NULL)
			len = snprintf(key, keylen, "%s/%s/%s/%s", node, orch, wl, name);
		break;
	}
	default:
		break;
	}
	if (len < 0 || (size_t)len >= keylen) {
		if (keylen > 0)
			key[0] = '\0';
		return POLICY_KIND_NONE;
	}
	return k;
}

static int encap_to_ipam(const json_t *v, uint8_t *out)
{
	const json_t *enabled = json_object_get(v, "enabled");
	const char *mode = json_string_value(json_object_get(v, "mode"));

	*out = IPAM_ENCAP_NEVER;
	if (v == NULL)
		return 0;
	if (!json_is_boolean(enabled) || mode == NULL)
		return -EINVAL;
	if (strcmp(mode, "always") != 0 && strcmp(mode, "cross-subnet") != 0)
		return -EINVAL;
	if (json_is_true(enabled))
		*out = strcmp(mode, "always") == 0 ? IPAM_ENCAP_ALWAYS : IPAM_ENCAP_CROSS_SUBNET;
	return 0;
}

int policy_ippool_to_ipam(const json_t *n, struct ipam_pool *out, char *err, size_t errlen)
{
	const char *kind = json_string_value(json_object_get(n, "kind"));
	const char *cidr =
	    json_string_value(json_object_get(json_object_get(n, "metadata"), "cidr"));
	const json_t *spec = json_object_get(n, "spec");
	const json_t *nat = json_object_get(spec, "nat-outgoing");
	const json_t *disabled = json_object_get(spec, "disabled");
	const json_t *bs = json_object_get(spec, "blockSize");
	const json_t *sel = json_object_get(spec, "nodeSelector");
	char why[160];

	memset(out, 0, sizeof *out);
	if (kind == NULL || strcmp(kind, "ipPool") != 0 || !json_is_object(spec)) {
		snprintf(err, errlen, "not a normalized ipPool");
		return -EINVAL;
	}
	if (cidr == NULL || !ipam_cidr_parse(cidr, &out->cidr, why, sizeof why)) {
		snprintf(err, errlen, "ipPool: metadata.cidr: %s", cidr != NULL ? why : "required");
		return -EINVAL;
	}
	if (encap_to_ipam(json_object_get(spec, "ipip"), &out->ipip) != 0 ||
	    encap_to_ipam(json_object_get(spec, "vxlan"), &out->vxlan) != 0 ||
	    (nat != NULL && !json_is_boolean(nat)) ||
	    (disabled != NULL && !json_is_boolean(disabled)) ||
	    (bs != NULL && (!json_is_integer(bs) || json_integer_value(bs) < 1 ||
	                    json_integer_value(bs) > 128)) ||
	    (sel != NULL &&
	     (!json_is_string(sel) || json_string_length(sel) >= IPAM_SELECTOR_MAX))) {
		memset(out, 0, sizeof *out);
		snprintf(err, errlen, "ipPool %s: not a normalized ipPool spec", cidr);
		return -EINVAL;
	}
	out->nat_outgoing = json_is_true(nat);
	out->disabled = json_is_true(disabled);
	out->block_size = bs != NULL ? (uint8_t)json_integer_value(bs) : 0;
	if (sel != NULL)
		memcpy(out->node_selector, json_string_value(sel), json_string_length(sel) + 1);
	return 0;
}

static json_t *encap_from_ipam(uint8_t encap)
{
	json_t *o = json_object();

	if (o == NULL || put(o, "enabled", json_true()) != 0 ||
	    put(o, "mode",
	        json_string(encap == IPAM_ENCAP_CROSS_SUBNET ? "cross-subnet" : "always")) != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

json_t *policy_ippool_from_ipam(const struct ipam_pool *p)
{
	json_t *o = json_object(), *md = json_object(), *spec = json_object();
	int rc;

	rc = o == NULL || md == NULL || spec == NULL ? -ENOMEM : 0;
	if (rc == 0)
		rc = put(o, "apiVersion", json_string("v1"));
	if (rc == 0)
		rc = put(o, "kind", json_string("ipPool"));
	if (rc == 0)
		rc = put(o, "metadata", json_incref(md));
	if (rc == 0)
		rc = put(o, "spec", json_incref(spec));
	if (rc == 0)
		rc = put(md, "cidr", cidr_json(&p->cidr));
	if (rc == 0 && p->ipip != IPAM_ENCAP_NEVER)
		rc = put(spec, "ipip", encap_from_ipam(p->ipip));
	if (rc == 0)
		rc = put(spec, "nat-outgoing", json_boolean(p->nat_outgoing));
	if (rc == 0)
		rc = put(spec, "disabled", json_boolean(p->disabled || p->removing));
	if (rc == 0 && p->block_size != 0)
		rc = put(spec, "blockSize", json_integer(p->block_size));
	if (rc == 0 && p->vxlan != IPAM_ENCAP_NEVER)
		rc = put(spec, "vxlan", encap_from_ipam(p->vxlan));
	if (rc == 0 && memchr(p->node_selector, '\0', sizeof p->node_selector) != NULL &&
	    p->node_selector[0] != '\0')
		rc = put(spec, "nodeSelector", json_string(p->node_selector));
	json_decref(md);
	json_decref(spec);
	if (rc != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}
