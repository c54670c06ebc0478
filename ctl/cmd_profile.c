/*
 * tabby profile ...: calicoctl 0.x's profile, tag and rule commands (calico-behaviour.md 3.10)
 * over the v1 profile resources of the agent. Inbound rules are the profile's spec.ingress,
 * outbound its spec.egress; a rule's "from" part is its source, "to" its destination.
 *
 * Every change reads the profile, changes a copy and writes it back with the old copy as the
 * expected current value, so that two operators editing one profile at the same time cannot lose
 * each other's change: the loser gets a conflict and starts again from the new value.
 */
#include "ctl/ctl.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* How many times a change is retried when someone else changed the profile meanwhile. */
#define UPDATE_ATTEMPTS 5

/* 0.x's profile name rule: "names must be < 40 characters of [A-Za-z0-9._-]". */
#define NAME_MAX_LEN 39

bool ctl_profile_name_ok(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > NAME_MAX_LEN)
		return false;
	for (const char *p = name; *p != '\0'; p++)
		if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
			return false;
	return true;
}

json_t *ctl_profile_default(const char *name)
{
	return json_pack("{s:s, s:s, s:{s:s, s:[s]}, s:{s:[{s:s, s:{s:s}}], s:[{s:s}]}}",
	                 "apiVersion", "v1", "kind", "profile", "metadata", "name", name, "tags",
	                 name, "spec", "ingress", "action", "allow", "source", "tag", name,
	                 "egress", "action", "allow");
}

/* ---- rule specifications ---- */

/* A decimal number of at most 5 digits in [min, max] into *out. */
static bool small_number(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	if (s[0] < '0' || s[0] > '9' || strlen(s) > 5)
		return false;
	v = strtol(s, &end, 10);
	if (*end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

int ctl_ports_parse(const char *s, json_t **ports, char *err, size_t errlen)
{
	json_t *list = json_array();
	const char *p = s;

	*ports = NULL;
	if (list == NULL)
		goto nomem;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
		char item[32];
		char *sep;
		long lo;
		long hi;
		json_t *v;

		if (len == 0 || len >= sizeof(item))
			goto bad;
		memcpy(item, p, len);
		item[len] = '\0';
		sep = strpbrk(item, ":-");
		if (sep != NULL) {
			*sep = '\0';
			if (!small_number(item, 1, 65535, &lo) ||
			    !small_number(sep + 1, 1, 65535, &hi))
				goto bad;
			if (lo > hi) {
				snprintf(err, errlen,
				         "port range %ld-%ld: the minimum is above the "
				         "maximum",
				         lo, hi);
				goto err;
			}
		} else {
			if (!small_number(item, 1, 65535, &lo))
				goto bad;
			hi = lo;
		}
		/* The normalized form: a range of one port is the port. */
		if (lo == hi)
			v = json_integer(lo);
		else
			v = json_sprintf("%ld:%ld", lo, hi);
		if (json_array_append_new(list, v) != 0)
			goto nomem;
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	*ports = list;
	return 0;
bad:
	snprintf(err, errlen,
	         "invalid ports '%s': expected a comma-separated list of ports (1-65535) and "
	         "port ranges (1000:2000 or 1000-2000)",
	         s);
	goto err;
nomem:
	snprintf(err, errlen, "out of memory");
err:
	json_decref(list);
	return -1;
}

static bool is(const char *a, const char *b)
{
	return strcmp(a, b) == 0;
}

/* A CIDR of the command line as a rule has it: a bare address becomes a one-address CIDR. */
static json_t *cidr_value(const char *s)
{
	struct ipam_addr a;

	if (strchr(s, '/') == NULL && ipam_addr_parse(s, &a))
		return json_sprintf("%s/%d", s, a.family == 6 ? 128 : 32);
	return json_string(s);
}

/* "cidr a,b" is a list (nets), "cidr a" a single CIDR (net), as they print. */
static int set_cidr(json_t *entity, const char *s)
{
	json_t *nets;
	const char *p = s;

	if (strchr(s, ',') == NULL)
		return json_object_set_new(entity, "net", cidr_value(s));
	nets = json_array();
	if (nets == NULL)
		return -1;
	for (;;) {
		const char *comma = strchr(p, ',');
		char *one = strndup(p, comma != NULL ? (size_t)(comma - p) : strlen(p));

		if (one == NULL || json_array_append_new(nets, cidr_value(one)) != 0) {
			free(one);
			json_decref(nets);
			return -1;
		}
		free(one);
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	return json_object_set_new(entity, "nets", nets);
}

static bool is_keyword(const char *w)
{
	static const char *const words[] = {"from", "to",   "ports", "tag",
	                                    "cidr", "type", "code",  NULL};

	for (const char *const *k = words; *k != NULL; k++)
		if (is(w, *k))
			return true;
	return false;
}

/* A "from" or "to" part, words[*i] being "from" or "to": its ports, tag and CIDR, in any order,
 * each at most once, into a new *entity (NULL when the part names nothing). */
static int parse_entity(char *const *words, int n, int *i, bool ports_ok, json_t **entity,
                        char *err, size_t errlen)
{
	const char *part = words[*i];
	json_t *e = json_object();
	struct ipam_addr a;

	*entity = NULL;
	if (e == NULL)
		goto nomem;
	for ((*i)++; *i < n && !is(words[*i], "from") && !is(words[*i], "to"); (*i)++) {
		const char *w = words[*i];
		const char *key = is(w, "ports") ? "ports" : is(w, "tag") ? "tag" : "net";
		const char *value;

		if (is(w, "type") || is(w, "code")) {
			snprintf(err, errlen,
			         "'%s' must come right after the protocol icmp or icmpv6", w);
			goto err;
		}
		if (!is_keyword(w) && (strchr(w, '/') != NULL || ipam_addr_parse(w, &a))) {
			value = w; /* 0.x's bare CIDR */
		} else if (is(w, "ports") || is(w, "tag") || is(w, "cidr")) {
			if (*i + 1 >= n || is_keyword(words[*i + 1])) {
				snprintf(err, errlen, "'%s' needs a value", w);
				goto err;
			}
			value = words[++(*i)];
		} else {
			snprintf(err, errlen,
			         "unexpected '%s' after '%s' (want ports, tag, cidr, or to)", w,
			         part);
			goto err;
		}
		if (json_object_get(e, key) != NULL ||
		    (is(key, "net") && json_object_get(e, "nets"))) {
			snprintf(err, errlen, "'%s' given twice after '%s'",
			         is(key, "net") ? "cidr" : key, part);
			goto err;
		}
		if (is(key, "ports")) {
			json_t *ports;

			if (!ports_ok) {
				snprintf(err, errlen,
				         "ports are only valid with protocol tcp or udp");
				goto err;
			}
			if (ctl_ports_parse(value, &ports, err, errlen) != 0)
				goto err;
			if (json_object_set_new(e, "ports", ports) != 0)
				goto nomem;
		} else if (is(key, "tag")) {
			if (json_object_set_new(e, "tag", json_string(value)) != 0)
				goto nomem;
		} else if (set_cidr(e, value) != 0) {
			goto nomem;
		}
	}
	if (json_object_size(e) == 0) {
		json_decref(e);
		return 0;
	}
	/* The normalized order: tag, net/nets, ports. */
	*entity = json_object();
	if (*entity == NULL)
		goto nomem;
	for (const char *const *k = (const char *const[]){"tag", "net", "nets", "ports", NULL};
	     *k != NULL; k++)
		if (json_object_get(e, *k) != NULL &&
		    json_object_set(*entity, *k, json_object_get(e, *k)) != 0)
			goto nomem;
	json_decref(e);
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
err:
	json_decref(e);
	json_decref(*entity);
	*entity = NULL;
	return -1;
}

int ctl_rule_parse(char *const *words, int n, json_t **rule, char *err, size_t errlen)
{
	json_t *r = NULL;
	json_t *src = NULL;
	json_t *dst = NULL;
	bool ports_ok = false;
	int i = 0;

	*rule = NULL;
	if (n == 0) {
		snprintf(err, errlen, "missing the rule's action (allow or deny)");
		return -1;
	}
	if (!is(words[0], "allow") && !is(words[0], "deny")) {
		snprintf(err, errlen, "expected allow or deny, found '%s'", words[0]);
		return -1;
	}
	r = json_pack("{s:s}", "action", words[0]);
	if (r == NULL)
		goto nomem;
	i = 1;
	if (i < n && !is(words[i], "from") && !is(words[i], "to")) {
		char lower[32];
		size_t k;
		int proto;
		const char *pname;

		for (k = 0; words[i][k] != '\0' && k + 1 < sizeof(lower); k++)
			lower[k] = (char)tolower((unsigned char)words[i][k]);
		lower[k] = '\0';
		proto = words[i][k] == '\0' ? policy_protocol_parse(lower) : -1;
		if (proto < 0) {
			snprintf(err, errlen,
			         "expected a protocol (tcp, udp, icmp, icmpv6, ...), from or to, "
			         "found '%s'",
			         words[i]);
			goto err;
		}
		pname = policy_protocol_name(proto);
		if (json_object_set_new(r, "protocol",
		                        pname != NULL ? json_string(pname) : json_integer(proto)) !=
		    0)
			goto nomem;
		ports_ok = proto == 6 || proto == 17;
		i++;
		if ((proto == 1 || proto == 58) && i < n && is(words[i], "type")) {
			long type;
			long code;
			json_t *icmp;

			if (i + 1 >= n || !small_number(words[i + 1], 0, 254, &type)) {
				snprintf(err, errlen,
				         "'type' needs an ICMP type (0-254), found '%s'",
				         i + 1 < n ? words[i + 1] : "nothing");
				goto err;
			}
			icmp = json_pack("{s:I}", "type", (json_int_t)type);
			if (icmp == NULL || json_object_set_new(r, "icmp", icmp) != 0)
				goto nomem;
			i += 2;
			if (i < n && is(words[i], "code")) {
				if (i + 1 >= n || !small_number(words[i + 1], 0, 255, &code)) {
					snprintf(err, errlen,
					         "'code' needs an ICMP code (0-255), found '%s'",
					         i + 1 < n ? words[i + 1] : "nothing");
					goto err;
				}
				if (json_object_set_new(icmp, "code", json_integer(code)) != 0)
					goto nomem;
				i += 2;
			}
		}
	}
	while (i < n) {
		const char *w = words[i];
		json_t **e = is(w, "from") ? &src : is(w, "to") ? &dst : NULL;

		if (e == NULL) {
			if (is(w, "type") || is(w, "code"))
				snprintf(
				    err, errlen,
				    "'%s' is only valid right after the protocol icmp or icmpv6",
				    w);
			else if (is(w, "ports") || is(w, "tag") || is(w, "cidr"))
				snprintf(err, errlen, "'%s' must follow from or to", w);
			else
				snprintf(err, errlen, "unexpected '%s' in the rule", w);
			goto err;
		}
		/* 0.x's grammar: at most one of each, from before to. */
		if (*e != NULL || (e == &src && dst != NULL)) {
			snprintf(err, errlen, "unexpected '%s': %s", w,
			         *e != NULL ? "given twice" : "from must come before to");
			goto err;
		}
		if (parse_entity(words, n, &i, ports_ok, e, err, errlen) != 0)
			goto err;
		if (*e == NULL)
			*e = json_object(); /* an empty part: remembered so that a second one is an
			                       error, dropped below */
		if (*e == NULL)
			goto nomem;
	}
	if (src != NULL && json_object_size(src) > 0 && json_object_set(r, "source", src) != 0)
		goto nomem;
	if (dst != NULL && json_object_size(dst) > 0 && json_object_set(r, "destination", dst) != 0)
		goto nomem;
	json_decref(src);
	json_decref(dst);
	*rule = r;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
err:
	json_decref(src);
	json_decref(dst);
	json_decref(r);
	return -1;
}

/* ---- rule text ---- */

static void put_scalar(FILE *f, const json_t *v)
{
	if (json_is_string(v))
		fputs(json_string_value(v), f);
	else if (json_is_integer(v))
		fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else
		fputs("?", f);
}

/* " WORD a,b,c" (or " WORD x" for a scalar). */
static void put_list(FILE *f, const char *word, const json_t *v)
{
	fprintf(f, " %s ", word);
	if (!json_is_array(v)) {
		put_scalar(f, v);
		return;
	}
	for (size_t i = 0; i < json_array_size(v); i++) {
		if (i > 0)
			fputc(',', f);
		put_scalar(f, json_array_get(v, i));
	}
}

/* A selector in quotes that do not occur in it, so the line stays readable. */
static void put_selector(FILE *f, const char *word, const json_t *v)
{
	const char *s = json_string_value(v) != NULL ? json_string_value(v) : "?";

	fprintf(f, " %s %s%s%s", word, strchr(s, '"') == NULL ? "\"" : "'", s,
	        strchr(s, '"') == NULL ? "\"" : "'");
}

/* The "from ..." or "to ..." part, in 0.x's order (ports, tag, cidr), then the v1-only fields. */
static void put_entity(FILE *f, const char *part, const json_t *e)
{
	const json_t *v;

	if (json_object_size(e) == 0)
		return;
	fprintf(f, " %s", part);
	if ((v = json_object_get(e, "ports")) != NULL)
		put_list(f, "ports", v);
	if ((v = json_object_get(e, "tag")) != NULL)
		put_list(f, "tag", v);
	if ((v = json_object_get(e, "net")) != NULL)
		put_list(f, "cidr", v);
	if ((v = json_object_get(e, "nets")) != NULL)
		put_list(f, "cidr", v);
	if ((v = json_object_get(e, "selector")) != NULL)
		put_selector(f, "selector", v);
	if ((v = json_object_get(e, "notPorts")) != NULL)
		put_list(f, "not ports", v);
	if ((v = json_object_get(e, "notTag")) != NULL)
		put_list(f, "not tag", v);
	if ((v = json_object_get(e, "notNet")) != NULL)
		put_list(f, "not cidr", v);
	if ((v = json_object_get(e, "notNets")) != NULL)
		put_list(f, "not cidr", v);
	if ((v = json_object_get(e, "notSelector")) != NULL)
		put_selector(f, "not selector", v);
}

static void put_icmp(FILE *f, const char *prefix, const json_t *icmp)
{
	const json_t *type = json_object_get(icmp, "type");
	const json_t *code = json_object_get(icmp, "code");

	if (type != NULL)
		put_list(f, prefix[0] != '\0' ? "not type" : "type", type);
	if (code != NULL)
		put_list(f, "code", code);
}

char *ctl_rule_text(const json_t *rule)
{
	const json_t *v;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL)
		return NULL;
	put_scalar(f, json_object_get(rule, "action"));
	if ((v = json_object_get(rule, "ipVersion")) != NULL)
		fprintf(f, " ipv%" JSON_INTEGER_FORMAT, json_integer_value(v));
	if ((v = json_object_get(rule, "protocol")) != NULL) {
		fputc(' ', f);
		put_scalar(f, v);
	}
	put_icmp(f, "", json_object_get(rule, "icmp"));
	if ((v = json_object_get(rule, "notProtocol")) != NULL)
		put_list(f, "not protocol", v);
	put_icmp(f, "not", json_object_get(rule, "notICMP"));
	put_entity(f, "from", json_object_get(rule, "source"));
	put_entity(f, "to", json_object_get(rule, "destination"));
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

int ctl_profile_rules_text(FILE *f, const json_t *profile)
{
	static const char *const titles[2] = {"Inbound rules:", "Outbound rules:"};
	static const char *const dirs[2] = {"ingress", "egress"};
	const json_t *spec = json_object_get(profile, "spec");

	for (int d = 0; d < 2; d++) {
		const json_t *rules = json_object_get(spec, dirs[d]);

		fprintf(f, "%s\n", titles[d]);
		for (size_t i = 0; i < json_array_size(rules); i++) {
			char *text = ctl_rule_text(json_array_get(rules, i));

			if (text == NULL)
				return -1;
			fprintf(f, " %3zu %s\n", i + 1, text);
			free(text);
		}
	}
	return 0;
}

/* ---- backend rule JSON ---- */

/* The entity fields of a v1 rule and their backend names after "src_" or "dst_" (a "!" before
 * the prefix for the negated ones). */
static const struct {
	const char *v1;
	const char *backend;
	bool negated;
} entity_fields[] = {
    {"tag", "tag", false},           {"notTag", "tag", true},           {"net", "net", false},
    {"notNet", "net", true},         {"nets", "nets", false},           {"notNets", "nets", true},
    {"selector", "selector", false}, {"notSelector", "selector", true}, {"ports", "ports", false},
    {"notPorts", "ports", true},
};
#define N_ENTITY_FIELDS (sizeof(entity_fields) / sizeof(entity_fields[0]))

json_t *ctl_rule_to_backend(const json_t *rule)
{
	static const char *const sides[2][2] = {{"source", "src_"}, {"destination", "dst_"}};
	json_t *b = json_object();
	const char *action = json_string_value(json_object_get(rule, "action"));
	const json_t *v;
	char key[64];

	if (b == NULL)
		return NULL;
	/* Felix's name for pass: go on to the next tier (here: the profiles). */
	if (action != NULL &&
	    json_object_set_new(b, "action",
	                        json_string(is(action, "pass") ? "next-tier" : action)) != 0)
		goto nomem;
	if ((v = json_object_get(rule, "ipVersion")) != NULL &&
	    json_object_set(b, "ip_version", (json_t *)v) != 0)
		goto nomem;
	if ((v = json_object_get(rule, "protocol")) != NULL &&
	    json_object_set(b, "protocol", (json_t *)v) != 0)
		goto nomem;
	if ((v = json_object_get(rule, "notProtocol")) != NULL &&
	    json_object_set(b, "!protocol", (json_t *)v) != 0)
		goto nomem;
	for (int neg = 0; neg < 2; neg++) {
		const json_t *icmp = json_object_get(rule, neg ? "notICMP" : "icmp");

		if ((v = json_object_get(icmp, "type")) != NULL &&
		    json_object_set(b, neg ? "!icmp_type" : "icmp_type", (json_t *)v) != 0)
			goto nomem;
		if ((v = json_object_get(icmp, "code")) != NULL &&
		    json_object_set(b, neg ? "!icmp_code" : "icmp_code", (json_t *)v) != 0)
			goto nomem;
	}
	for (int s = 0; s < 2; s++) {
		const json_t *e = json_object_get(rule, sides[s][0]);

		for (size_t k = 0; k < N_ENTITY_FIELDS; k++) {
			if ((v = json_object_get(e, entity_fields[k].v1)) == NULL)
				continue;
			snprintf(key, sizeof(key), "%s%s%s", entity_fields[k].negated ? "!" : "",
			         sides[s][1], entity_fields[k].backend);
			if (json_object_set(b, key, (json_t *)v) != 0)
				goto nomem;
		}
	}
	return b;
nomem:
	json_decref(b);
	return NULL;
}

/* Set obj[a] (creating it) [b] = v. */
static int set_in(json_t *obj, const char *a, const char *b, json_t *v)
{
	json_t *inner = json_object_get(obj, a);

	if (inner == NULL) {
		inner = json_object();
		if (inner == NULL || json_object_set_new(obj, a, inner) != 0)
			return -1;
	}
	return json_object_set(inner, b, v);
}

int ctl_rule_from_backend(const json_t *backend, json_t **rule, char *err, size_t errlen)
{
	const char *key;
	json_t *v;
	json_t *r;

	*rule = NULL;
	if (!json_is_object(backend)) {
		snprintf(err, errlen, "a rule must be a JSON object");
		return -1;
	}
	/* Assembled in the normalized order so that the result reads like one. */
	r = json_object();
	if (r == NULL)
		goto nomem;
	v = json_object_get(backend, "action");
	if (v == NULL) {
		v = json_string("allow"); /* 0.x: a rule without an action allows */
		if (v == NULL || json_object_set_new(r, "action", v) != 0)
			goto nomem;
	} else if (json_is_string(v) && is(json_string_value(v), "next-tier")) {
		if (json_object_set_new(r, "action", json_string("pass")) != 0)
			goto nomem;
	} else if (json_object_set(r, "action", v) != 0) {
		goto nomem;
	}
	json_object_foreach ((json_t *)backend, key, v) {
		bool neg = key[0] == '!';
		const char *base = key + neg;
		int rv = 0;

		if (is(key, "action"))
			continue;
		if (is(key, "ip_version")) {
			rv = json_object_set(r, "ipVersion", v);
		} else if (is(base, "protocol")) {
			rv = json_object_set(r, neg ? "notProtocol" : "protocol", v);
		} else if (is(base, "icmp_type") || is(base, "icmp_code")) {
			rv = set_in(r, neg ? "notICMP" : "icmp",
			            is(base, "icmp_type") ? "type" : "code", v);
		} else if (strncmp(base, "src_", 4) == 0 || strncmp(base, "dst_", 4) == 0) {
			const char *side = base[0] == 's' ? "source" : "destination";
			size_t k;

			for (k = 0; k < N_ENTITY_FIELDS; k++)
				if (entity_fields[k].negated == neg &&
				    is(base + 4, entity_fields[k].backend))
					break;
			if (k == N_ENTITY_FIELDS)
				goto unknown;
			rv = set_in(r, side, entity_fields[k].v1, v);
		} else if (is(key, "log_prefix")) {
			snprintf(err, errlen,
			         "log_prefix is not supported (log rules use the prefix "
			         "calico-packet)");
			goto err;
		} else {
			goto unknown;
		}
		if (rv != 0)
			goto nomem;
		continue;
	unknown:
		snprintf(err, errlen, "unknown rule key '%s'", key);
		goto err;
	}
	*rule = r;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
err:
	json_decref(r);
	return -1;
}

json_t *ctl_profile_rules_json(const json_t *profile)
{
	static const char *const dirs[2][2] = {{"ingress", "inbound_rules"},
	                                       {"egress", "outbound_rules"}};
	const json_t *spec = json_object_get(profile, "spec");
	json_t *out =
	    json_pack("{s:O}", "id", json_object_get(json_object_get(profile, "metadata"), "name"));

	if (out == NULL)
		return NULL;
	for (int d = 0; d < 2; d++) {
		const json_t *rules = json_object_get(spec, dirs[d][0]);
		json_t *list = json_array();

		if (list == NULL || json_object_set_new(out, dirs[d][1], list) != 0)
			goto nomem;
		for (size_t i = 0; i < json_array_size(rules); i++)
			if (json_array_append_new(
			        list, ctl_rule_to_backend(json_array_get(rules, i))) != 0)
				goto nomem;
	}
	return out;
nomem:
	json_decref(out);
	return NULL;
}

int ctl_profile_rules_update(const json_t *profile, const json_t *rules, json_t **updated,
                             char *err, size_t errlen)
{
	static const char *const dirs[2][2] = {{"inbound_rules", "ingress"},
	                                       {"outbound_rules", "egress"}};
	const char *name =
	    json_string_value(json_object_get(json_object_get(profile, "metadata"), "name"));
	const json_t *id = json_object_get(rules, "id");
	json_t *copy = NULL;
	const char *key;
	json_t *v;
	char why[512];

	*updated = NULL;
	if (!json_is_object(rules) || name == NULL) {
		snprintf(err, errlen,
		         "the rules must be a JSON object with inbound_rules and "
		         "outbound_rules");
		return -1;
	}
	json_object_foreach ((json_t *)rules, key, v) {
		if (!is(key, "id") && !is(key, "inbound_rules") && !is(key, "outbound_rules")) {
			snprintf(err, errlen,
			         "unknown key '%s' (want id, inbound_rules and "
			         "outbound_rules)",
			         key);
			return -1;
		}
	}
	/* 0.x refused rules written for another profile: a likely copy-and-paste slip. */
	if (id != NULL && (!json_is_string(id) || !is(json_string_value(id), name))) {
		snprintf(err, errlen, "the rules' \"id\" does not match the profile name %s", name);
		return -1;
	}
	copy = json_deep_copy(profile);
	if (copy == NULL)
		goto nomem;
	for (int d = 0; d < 2; d++) {
		const json_t *list = json_object_get(rules, dirs[d][0]);
		json_t *out = json_array();

		if (out == NULL || set_in(copy, "spec", dirs[d][1], out) != 0) {
			json_decref(out);
			goto nomem;
		}
		json_decref(out); /* copy holds it */
		if (!json_is_array(list)) {
			snprintf(err, errlen, "%s must be a list of rules", dirs[d][0]);
			goto err;
		}
		for (size_t i = 0; i < json_array_size(list); i++) {
			json_t *r;

			if (ctl_rule_from_backend(json_array_get(list, i), &r, why, sizeof(why)) !=
			    0) {
				snprintf(err, errlen, "%s[%zu]: %s", dirs[d][0], i, why);
				goto err;
			}
			if (json_array_append_new(out, r) != 0)
				goto nomem;
		}
	}
	if (policy_resource_normalize(copy, 0, updated, err, errlen) != 0)
		goto err;
	json_decref(copy);
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
err:
	json_decref(copy);
	return -1;
}

/* ---- the 0.x table ---- */

/* Whether endpoint ep lists profile name. */
static bool uses_profile(const json_t *ep, const char *name)
{
	const json_t *profiles = json_object_get(json_object_get(ep, "spec"), "profiles");

	for (size_t i = 0; i < json_array_size(profiles); i++) {
		const char *p = json_string_value(json_array_get(profiles, i));

		if (p != NULL && is(p, name))
			return true;
	}
	return false;
}

#define DETAIL_COLUMNS 7

/* A comma-joined list of strings, malloc()ed. */
static char *joined(const json_t *arr)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL)
		return NULL;
	for (size_t i = 0; i < json_array_size(arr); i++)
		fprintf(f, "%s%s", i > 0 ? "," : "",
		        json_string_value(json_array_get(arr, i)) != NULL
		            ? json_string_value(json_array_get(arr, i))
		            : "?");
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

int ctl_profile_table(FILE *f, const json_t *profiles, const json_t *endpoints)
{
	static const char *const name_header[] = {"Name"};
	static const char *const detail_headers[DETAIL_COLUMNS] = {
	    "Name", "Host", "Orchestrator ID", "Workload ID", "Endpoint ID", "Addresses", "MAC"};
	size_t np = json_array_size(profiles);
	size_t ne = json_array_size(endpoints);
	size_t cap = endpoints == NULL ? np : np * (ne + 1);
	const char **cells = calloc((cap + 1) * DETAIL_COLUMNS, sizeof(*cells));
	char **owned = calloc(cap + 1, sizeof(*owned)); /* the Addresses cells */
	size_t nrows = 0;
	int rv = -1;

	if (cells == NULL || owned == NULL)
		goto out;
	for (size_t i = 0; i < np; i++) {
		const char *name = json_string_value(json_object_get(
		    json_object_get(json_array_get(profiles, i), "metadata"), "name"));
		size_t members = 0;

		if (name == NULL)
			name = "?";
		if (endpoints == NULL) {
			cells[nrows++] = name;
			continue;
		}
		for (size_t j = 0; j < ne; j++) {
			const json_t *ep = json_array_get(endpoints, j);
			const json_t *meta = json_object_get(ep, "metadata");
			const json_t *spec = json_object_get(ep, "spec");
			const char **row = cells + nrows * DETAIL_COLUMNS;
			const json_t *addrs = json_object_get(spec, "ipNetworks");
			const char *s;

			if (!uses_profile(ep, name))
				continue;
			if (addrs == NULL)
				addrs = json_object_get(spec, "expectedIPs");
			owned[nrows] = joined(addrs);
			if (owned[nrows] == NULL)
				goto out;
			row[0] = name;
			row[1] = (s = json_string_value(json_object_get(meta, "node"))) ? s : "";
			row[2] =
			    (s = json_string_value(json_object_get(meta, "orchestrator"))) ? s : "";
			row[3] =
			    (s = json_string_value(json_object_get(meta, "workload"))) ? s : "";
			row[4] = (s = json_string_value(json_object_get(meta, "name"))) ? s : "";
			row[5] = owned[nrows];
			row[6] = (s = json_string_value(json_object_get(spec, "mac"))) ? s : "";
			nrows++;
			members++;
		}
		/* As 0.x: a profile no endpoint uses still gets its row. */
		if (members == 0) {
			const char **row = cells + nrows * DETAIL_COLUMNS;

			row[0] = name;
			for (int c = 1; c < DETAIL_COLUMNS; c++)
				row[c] = "None";
			nrows++;
		}
	}
	if (endpoints == NULL)
		ctl_put_box(f, name_header, 1, cells, nrows);
	else
		ctl_put_box(f, detail_headers, DETAIL_COLUMNS, cells, nrows);
	rv = 0;
out:
	for (size_t r = 0; owned != NULL && r <= cap; r++)
		free(owned[r]);
	free(owned);
	free(cells);
	return rv;
}

/* ---- talking to the agent ---- */

/* The error code of an answer, "" when it has none. */
/* Read profile name into a new *profile. Returns 0, or 1 after printing why not. */
static int get_profile(struct ctl_ctx *ctx, const char *name, json_t **profile)
{
	char *path = ctl_key_path("/v1/profiles/", name, "");
	int rv;

	*profile = NULL;
	if (path == NULL)
		return ctl_fail(ctx, "out of memory");
	rv = ctl_get_resource(ctx, path, profile);
	free(path);
	if (rv == 0 && *profile == NULL)
		rv = ctl_fail(ctx, "Profile %s not found.", name);
	return rv;
}

/* A change to a profile: from old (normalized, as stored) set *updated to the profile to write,
 * or leave it NULL to write nothing; msg (may stay empty) is printed once that is done. Returns
 * 0, or an exit status after printing why not. */
typedef int (*change_fn)(struct ctl_ctx *ctx, const json_t *old, json_t **updated, char *msg,
                         size_t msglen, void *arg);

/* Read, change, write back with old as the expected value; again when someone else wrote the
 * profile in between. */
static int change_profile(struct ctl_ctx *ctx, const char *name, change_fn fn, void *arg)
{
	char msg[512];

	for (int attempt = 0; attempt < UPDATE_ATTEMPTS; attempt++) {
		json_t *old = NULL;
		json_t *updated = NULL;
		json_t *body;
		json_t *resp = NULL;
		int status;
		int rv;

		msg[0] = '\0';
		rv = get_profile(ctx, name, &old);
		if (rv == 0)
			rv = fn(ctx, old, &updated, msg, sizeof(msg), arg);
		if (rv != 0 || updated == NULL) {
			json_decref(old);
			if (rv == 0 && msg[0] != '\0')
				fprintf(ctx->out, "%s\n", msg);
			return rv;
		}
		body = json_pack("{s:s, s:[O], s:[O]}", "op", "replace", "resources", updated,
		                 "expect", old);
		json_decref(old);
		json_decref(updated);
		if (body == NULL)
			return ctl_fail(ctx, "out of memory");
		rv = ctl_request(ctx, "POST", "/v1/resources", body, &status, &resp);
		json_decref(body);
		if (rv == 0 && status == 409 && ctl_error_is(resp, "conflict")) {
			json_decref(resp);
			continue; /* changed meanwhile: start again from the new value */
		}
		if (rv == 0 && status / 100 != 2)
			rv = ctl_fail_api(ctx, API_OK, NULL, status, resp);
		else if (rv == 0 && ctx->json)
			rv = ctl_print_json(ctx, resp);
		else if (rv == 0 && msg[0] != '\0')
			fprintf(ctx->out, "%s\n", msg);
		json_decref(resp);
		return rv;
	}
	return ctl_fail(ctx,
	                "profile %s kept changing while this command tried to change it; "
	                "gave up after %d attempts",
	                name, UPDATE_ATTEMPTS);
}

/* The endpoints (workload then host, normalized) into a new *out. Returns 0 or 1. */
static int list_endpoints(struct ctl_ctx *ctx, json_t **out)
{
	static const char *const paths[] = {"/v1/workloadendpoints", "/v1/hostendpoints"};
	json_t *all = json_array();

	*out = NULL;
	if (all == NULL)
		return ctl_fail(ctx, "out of memory");
	for (int i = 0; i < 2; i++) {
		json_t *resp;
		const json_t *items;

		if (ctl_call(ctx, "GET", paths[i], NULL, &resp) != 0) {
			json_decref(all);
			return 1;
		}
		items = json_object_get(resp, "items");
		if (!json_is_array(items) || json_array_extend(all, (json_t *)items) != 0) {
			json_decref(resp);
			json_decref(all);
			return ctl_fail(ctx, "unexpected answer from the agent: no item list");
		}
		json_decref(resp);
	}
	*out = all;
	return 0;
}

/* Refuse the flags a subcommand does not take; allowed lists the ones it does (NULL-ended). */
static int only_flags(struct ctl_ctx *ctx, const char *what, const char *const *allowed)
{
	static const char *const own[] = {"at", "detailed", "no-check"};

	for (int i = 0; i < 3; i++) {
		bool ok = false;

		if (ctl_flag(ctx, own[i]) == NULL)
			continue;
		for (const char *const *a = allowed; a != NULL && *a != NULL; a++)
			ok = ok || is(*a, own[i]);
		if (!ok)
			return ctl_usage_error(ctx, "--%s does not apply to '%s'", own[i], what);
	}
	return 0;
}

/* Require exactly n positional arguments; what names the form for messages. */
static int want_args(struct ctl_ctx *ctx, int n, const char *missing)
{
	if (ctx->nargs < n)
		return ctl_usage_error(ctx, "missing %s", missing);
	if (ctx->nargs > n)
		return ctl_usage_error(ctx, "unexpected argument '%s'", ctx->args[n]);
	return 0;
}

static int bad_name(struct ctl_ctx *ctx, const char *what, const char *name)
{
	return ctl_usage_error(ctx,
	                       "invalid %s name '%s': 1 to 39 letters, digits, dots, dashes and "
	                       "underscores",
	                       what, name);
}

/* ---- profile add | remove | show ---- */

static int profile_add(struct ctl_ctx *ctx, const char *name)
{
	json_t *p;
	json_t *body;
	json_t *resp = NULL;
	int status;
	int rv;

	if (!ctl_profile_name_ok(name))
		return bad_name(ctx, "profile", name);
	p = ctl_profile_default(name);
	body = p != NULL ? json_pack("{s:s, s:[o]}", "op", "create", "resources", p) : NULL;
	if (body == NULL)
		return ctl_fail(ctx, "out of memory");
	rv = ctl_request(ctx, "POST", "/v1/resources", body, &status, &resp);
	json_decref(body);
	if (rv != 0)
		return rv;
	if (status == 409 && ctl_error_is(resp, "exists"))
		fprintf(ctx->out, "Profile %s already exists.\n", name); /* a no-op, as in 0.x */
	else if (status / 100 != 2)
		rv = ctl_fail_api(ctx, API_OK, NULL, status, resp);
	else if (ctx->json)
		rv = ctl_print_json(ctx, resp);
	else
		fprintf(ctx->out, "Created profile %s\n", name);
	json_decref(resp);
	return rv;
}

static int profile_remove(struct ctl_ctx *ctx, const char *name)
{
	json_t *endpoints = NULL;
	json_t *resp = NULL;
	char *path;
	int status;
	int rv;

	if (ctl_flag(ctx, "no-check") == NULL) {
		size_t users = 0;
		const char *first = NULL;
		char first_key[POLICY_KEY_MAX];

		if (list_endpoints(ctx, &endpoints) != 0)
			return 1;
		for (size_t i = 0; i < json_array_size(endpoints); i++) {
			const json_t *ep = json_array_get(endpoints, i);

			if (!uses_profile(ep, name))
				continue;
			if (users++ == 0 && policy_resource_key(ep, first_key, sizeof first_key) !=
			                        POLICY_KIND_NONE)
				first = first_key;
		}
		if (users > 0) {
			rv =
			    ctl_fail(ctx,
			             "Cannot remove profile %s - profile contains endpoints (%zu, "
			             "such as %s). Use the '--no-check' flag to remove the profile "
			             "anyway.",
			             name, users, first != NULL ? first : "?");
			json_decref(endpoints);
			return rv;
		}
		json_decref(endpoints);
	}
	path = ctl_key_path("/v1/profiles/", name, "");
	if (path == NULL)
		return ctl_fail(ctx, "out of memory");
	rv = ctl_request(ctx, "DELETE", path, NULL, &status, &resp);
	free(path);
	if (rv != 0)
		return rv;
	if (status == 404)
		rv = ctl_fail(ctx, "Profile %s not found.", name);
	else if (status / 100 != 2)
		rv = ctl_fail_api(ctx, API_OK, NULL, status, resp);
	else if (ctx->json)
		rv = ctl_print_json(ctx, resp);
	else
		fprintf(ctx->out, "Deleted profile %s\n", name);
	json_decref(resp);
	return rv;
}

static int profile_show(struct ctl_ctx *ctx)
{
	bool detailed = ctl_flag(ctx, "detailed") != NULL;
	json_t *resp = NULL;
	json_t *endpoints = NULL;
	const json_t *items;
	int rv;

	rv = ctl_call(ctx, "GET", "/v1/profiles", NULL, &resp);
	if (rv != 0)
		return rv;
	items = json_object_get(resp, "items");
	if (!json_is_array(items)) {
		rv = ctl_fail(ctx, "unexpected answer from the agent: no item list");
		goto out;
	}
	if (ctx->json) {
		rv = ctl_print_json(ctx, items);
		goto out;
	}
	if (detailed && list_endpoints(ctx, &endpoints) != 0) {
		rv = 1;
		goto out;
	}
	if (ctl_profile_table(ctx->out, items, endpoints) != 0)
		rv = ctl_fail(ctx, "out of memory");
out:
	json_decref(endpoints);
	json_decref(resp);
	return rv;
}

/* ---- profile NAME tag ... ---- */

static int tag_index(const json_t *profile, const char *tag)
{
	const json_t *tags = json_object_get(json_object_get(profile, "metadata"), "tags");

	for (size_t i = 0; i < json_array_size(tags); i++)
		if (json_is_string(json_array_get(tags, i)) &&
		    is(json_string_value(json_array_get(tags, i)), tag))
			return (int)i;
	return -1;
}

static int change_tag_add(struct ctl_ctx *ctx, const json_t *old, json_t **updated, char *msg,
                          size_t msglen, void *arg)
{
	const char *tag = arg;
	const char *name =
	    json_string_value(json_object_get(json_object_get(old, "metadata"), "name"));
	json_t *copy;
	json_t *meta;

	snprintf(msg, msglen, "Tag %s added to profile %s", tag, name);
	if (tag_index(old, tag) >= 0)
		return 0; /* already there: nothing to write, the same answer as 0.x's set */
	copy = json_deep_copy(old);
	meta = json_object_get(copy, "metadata");
	if (copy == NULL || meta == NULL)
		goto nomem;
	if (json_object_get(meta, "tags") == NULL &&
	    json_object_set_new(meta, "tags", json_array()) != 0)
		goto nomem;
	if (json_array_append_new(json_object_get(meta, "tags"), json_string(tag)) != 0)
		goto nomem;
	*updated = copy;
	return 0;
nomem:
	json_decref(copy);
	return ctl_fail(ctx, "out of memory");
}

static int change_tag_remove(struct ctl_ctx *ctx, const json_t *old, json_t **updated, char *msg,
                             size_t msglen, void *arg)
{
	const char *tag = arg;
	const char *name =
	    json_string_value(json_object_get(json_object_get(old, "metadata"), "name"));
	int i = tag_index(old, tag);
	json_t *copy;
	json_t *meta;

	if (i < 0)
		return ctl_fail(ctx, "Tag %s is not on profile %s", tag, name);
	copy = json_deep_copy(old);
	meta = json_object_get(copy, "metadata");
	if (copy == NULL || meta == NULL ||
	    json_array_remove(json_object_get(meta, "tags"), (size_t)i) != 0) {
		json_decref(copy);
		return ctl_fail(ctx, "out of memory");
	}
	/* Normalized profiles have no empty tag list. */
	if (json_array_size(json_object_get(meta, "tags")) == 0)
		json_object_del(meta, "tags");
	snprintf(msg, msglen, "Tag %s removed from profile %s", tag, name);
	*updated = copy;
	return 0;
}

static int profile_tag(struct ctl_ctx *ctx, const char *name)
{
	const char *op = ctx->nargs > 2 ? ctx->args[2] : NULL;
	json_t *profile;
	int rv;

	if (only_flags(ctx, "tag", NULL) != 0)
		return 2;
	if (op == NULL)
		return ctl_usage_error(ctx, "missing show, add or remove after 'tag'");
	if (is(op, "show")) {
		const json_t *tags;

		if (want_args(ctx, 3, "") != 0)
			return 2;
		rv = get_profile(ctx, name, &profile);
		if (rv != 0)
			return rv;
		tags = json_object_get(json_object_get(profile, "metadata"), "tags");
		if (ctx->json) {
			json_t *empty = json_array();

			rv = ctl_print_json(ctx, tags != NULL ? tags : empty);
			json_decref(empty);
		} else {
			for (size_t i = 0; i < json_array_size(tags); i++)
				fprintf(ctx->out, "%s\n",
				        json_string_value(json_array_get(tags, i)));
		}
		json_decref(profile);
		return rv;
	}
	if (!is(op, "add") && !is(op, "remove"))
		return ctl_usage_error(ctx, "unknown tag command '%s' (want show, add or remove)",
		                       op);
	if (want_args(ctx, 4, "TAG") != 0)
		return 2;
	if (is(op, "add") && !ctl_profile_name_ok(ctx->args[3]))
		return bad_name(ctx, "tag", ctx->args[3]);
	return change_profile(ctx, name, is(op, "add") ? change_tag_add : change_tag_remove,
	                      ctx->args[3]);
}

/* ---- profile NAME rule ... ---- */

struct rule_change {
	bool add;
	const char *dir;    /* "ingress" or "egress" */
	int64_t at;         /* 1-based, 0: not given */
	const json_t *rule; /* the parsed rule, NULL with --at for remove */
};

/* Normalize candidate (a changed copy of a profile) into *out. Returns 0 or 1. */
static int normalize(struct ctl_ctx *ctx, const json_t *candidate, json_t **out)
{
	char err[1024];

	if (policy_resource_normalize(candidate, 0, out, err, sizeof(err)) != 0)
		return ctl_fail(ctx, "%s", err);
	return 0;
}

static int change_rule(struct ctl_ctx *ctx, const json_t *old, json_t **updated, char *msg,
                       size_t msglen, void *arg)
{
	const struct rule_change *c = arg;
	json_t *copy = json_deep_copy(old);
	json_t *norm = NULL;
	json_t *rules;
	json_t *nrules;
	size_t n = json_array_size(json_object_get(json_object_get(old, "spec"), c->dir));
	size_t pos;
	int rv = 1;

	(void)msglen;
	msg[0] = '\0';
	rules = json_object_get(json_object_get(copy, "spec"), c->dir);
	if (copy == NULL || !json_is_array(rules)) {
		json_decref(copy);
		return ctl_fail(ctx, "unexpected answer from the agent: a profile without %s rules",
		                c->dir);
	}
	if (!c->add && c->rule == NULL) {
		if (c->at < 1 || (size_t)c->at > n) {
			rv = ctl_fail(ctx, "Rule position out-of-range.");
			goto out;
		}
		if (json_array_remove(rules, (size_t)c->at - 1) != 0)
			goto nomem;
		*updated = copy;
		return 0;
	}
	/* Put the new rule where it would go (for a removal: at the end, only to compare it)
	 * and normalize the whole profile: a message about the rule then names its real place,
	 * and the rule can be compared with the stored ones in the same form. */
	pos = c->add && c->at > 0 ? (size_t)c->at - 1 : n;
	if (c->add && pos > n) {
		rv = ctl_fail(ctx, "Position %" PRId64 " is out-of-range.", c->at);
		goto out;
	}
	if (json_array_insert(rules, pos, (json_t *)c->rule) != 0)
		goto nomem;
	rv = normalize(ctx, copy, &norm);
	if (rv != 0)
		goto out;
	nrules = json_object_get(json_object_get(norm, "spec"), c->dir);
	for (size_t j = 0; j < json_array_size(nrules); j++) {
		if (j == pos || !json_equal(json_array_get(nrules, j), json_array_get(nrules, pos)))
			continue;
		if (c->add) {
			snprintf(msg, msglen, "Rule already present, skipping.");
			rv = 0;
			goto out;
		}
		/* The first identical stored rule goes, and the comparison copy with it. */
		if (json_array_remove(nrules, pos) != 0 || json_array_remove(nrules, j) != 0)
			goto nomem;
		*updated = norm;
		json_decref(copy);
		return 0;
	}
	if (!c->add) {
		rv = ctl_fail(ctx, "Rule not found.");
		goto out;
	}
	*updated = norm;
	json_decref(copy);
	return 0;
nomem:
	rv = ctl_fail(ctx, "out of memory");
out:
	json_decref(norm);
	json_decref(copy);
	return rv;
}

static int change_rules_update(struct ctl_ctx *ctx, const json_t *old, json_t **updated, char *msg,
                               size_t msglen, void *arg)
{
	char err[1024];

	if (ctl_profile_rules_update(old, arg, updated, err, sizeof(err)) != 0)
		return ctl_fail(ctx, "%s", err);
	snprintf(msg, msglen, "Successfully updated rules on profile %s",
	         json_string_value(json_object_get(json_object_get(old, "metadata"), "name")));
	return 0;
}

static int rule_show(struct ctl_ctx *ctx, const char *name, bool as_json)
{
	json_t *profile;
	json_t *j;
	int rv = get_profile(ctx, name, &profile);

	if (rv != 0)
		return rv;
	if (as_json || ctx->json) {
		j = ctl_profile_rules_json(profile);
		if (j == NULL)
			rv = ctl_fail(ctx, "out of memory");
		else
			rv = ctl_print_json(ctx, j);
		json_decref(j);
	} else if (ctl_profile_rules_text(ctx->out, profile) != 0) {
		rv = ctl_fail(ctx, "out of memory");
	}
	json_decref(profile);
	return rv;
}

static int rule_update(struct ctl_ctx *ctx, const char *name)
{
	json_error_t jerr;
	json_t *rules;
	int rv;

	/* Parsed before anything is asked of the agent: a typo costs no round trip. */
	rules = json_loadf(stdin, 0, &jerr);
	if (rules == NULL)
		return ctl_fail(ctx, "stdin: line %d, column %d: %s", jerr.line, jerr.column,
		                jerr.text);
	rv = change_profile(ctx, name, change_rules_update, rules);
	json_decref(rules);
	return rv;
}

static int rule_add_remove(struct ctl_ctx *ctx, const char *name, bool add)
{
	struct rule_change c = {.add = add};
	json_t *rule = NULL;
	char err[512];
	int rv;

	if (ctx->nargs < 4)
		return ctl_usage_error(ctx, "missing inbound or outbound");
	if (is(ctx->args[3], "inbound"))
		c.dir = "ingress";
	else if (is(ctx->args[3], "outbound"))
		c.dir = "egress";
	else
		return ctl_usage_error(ctx, "expected inbound or outbound, found '%s'",
		                       ctx->args[3]);
	if (ctl_flag_int(ctx, "at", 1, &c.at) != 0)
		return 2;
	if (!add && c.at > 0) {
		if (ctx->nargs > 4)
			return ctl_usage_error(ctx, "give --at or a rule, not both");
	} else if (ctl_rule_parse(ctx->args + 4, ctx->nargs - 4, &rule, err, sizeof(err)) != 0) {
		return ctl_usage_error(ctx, "%s", err);
	}
	c.rule = rule;
	rv = change_profile(ctx, name, change_rule, &c);
	json_decref(rule);
	return rv;
}

static int profile_rule(struct ctl_ctx *ctx, const char *name)
{
	static const char *const at_only[] = {"at", NULL};
	const char *op = ctx->nargs > 2 ? ctx->args[2] : NULL;

	if (op == NULL)
		return ctl_usage_error(ctx,
		                       "missing show, json, update, add or remove after 'rule'");
	if (is(op, "add") || is(op, "remove")) {
		if (only_flags(ctx, op, at_only) != 0)
			return 2;
		return rule_add_remove(ctx, name, is(op, "add"));
	}
	if (only_flags(ctx, op, NULL) != 0)
		return 2;
	if (!is(op, "show") && !is(op, "json") && !is(op, "update"))
		return ctl_usage_error(
		    ctx, "unknown rule command '%s' (want show, json, update, add or remove)", op);
	if (want_args(ctx, 3, "") != 0)
		return 2;
	if (is(op, "update"))
		return rule_update(ctx, name);
	return rule_show(ctx, name, is(op, "json"));
}

/* The grammar is 0.x's, irregular: `profile add NAME` but `profile NAME tag add TAG`, so the
 * words are dispatched here rather than by the command table. */
static int run_profile(struct ctl_ctx *ctx)
{
	static const char *const no_check[] = {"no-check", NULL};
	static const char *const detailed[] = {"detailed", NULL};
	const char *first = ctx->args[0];

	if (is(first, "add")) {
		if (only_flags(ctx, "add", NULL) != 0 || want_args(ctx, 2, "PROFILE") != 0)
			return 2;
		return profile_add(ctx, ctx->args[1]);
	}
	if (is(first, "remove")) {
		if (only_flags(ctx, "remove", no_check) != 0 || want_args(ctx, 2, "PROFILE") != 0)
			return 2;
		return profile_remove(ctx, ctx->args[1]);
	}
	if (is(first, "show")) {
		if (only_flags(ctx, "show", detailed) != 0 || want_args(ctx, 1, "") != 0)
			return 2;
		return profile_show(ctx);
	}
	if (ctx->nargs < 2)
		return ctl_usage_error(ctx,
		                       "unknown profile command '%s' (want show, add, remove, or "
		                       "PROFILE tag ... / PROFILE rule ...)",
		                       first);
	if (is(ctx->args[1], "tag"))
		return profile_tag(ctx, first);
	if (is(ctx->args[1], "rule"))
		return profile_rule(ctx, first);
	return ctl_usage_error(ctx, "expected tag or rule after the profile name, found '%s'",
	                       ctx->args[1]);
}

static const struct ctl_flag profile_flags[] = {
    {"at", 0, "POSITION", "rule add/remove: the rule's position, from 1 (add: default last)"},
    {"detailed", 0, NULL, "show: also the endpoints using each profile"},
    {"no-check", 0, NULL, "remove: even when endpoints use the profile"},
    {0},
};

static const char *const profile_args[] = {"COMMAND", NULL};

const struct ctl_command ctl_profile_command = {
    .name = "profile",
    .usage_args = "COMMAND...",
    .summary = "calicoctl 0.x profile, tag and rule commands",
    .description =
        "Manage profiles the way calicoctl 0.x did:\n"
        "  profile show [--detailed]\n"
        "  profile add PROFILE\n"
        "  profile remove PROFILE [--no-check]\n"
        "  profile PROFILE tag show | tag (add|remove) TAG\n"
        "  profile PROFILE rule add (inbound|outbound) [--at=POSITION] RULE\n"
        "  profile PROFILE rule remove (inbound|outbound) (--at=POSITION | RULE)\n"
        "  profile PROFILE rule show | rule json | rule update   (update reads JSON from "
        "stdin)\n"
        "RULE: (allow|deny) [(tcp|udp) [from [ports P] [tag T] [cidr C]] [to [ports P] [tag T] "
        "[cidr C]]\n"
        "      | (icmp|icmpv6) [type N [code N]] [from [tag T] [cidr C]] [to [tag T] [cidr C]]\n"
        "      | [from [tag T] [cidr C]] [to [tag T] [cidr C]]]\n"
        "Ports (1-65535): 80, 80,443, 1000:2000 or 1000-2000. ICMP type 0-254, code 0-255.\n"
        "Inbound rules are the profile's ingress rules, outbound its egress rules.\n"
        "Profile and tag names: up to 39 letters, digits, dots, dashes and underscores.",
    .flags = profile_flags,
    .args = profile_args,
    .more_args = true,
    .client = true,
    .run = run_profile,
};
