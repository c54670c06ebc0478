/*
 * The verdict evaluator: what happens to a packet in a cluster, and why (section 3.9).
 *
 * This is the reference the nftables compiler is checked against, so every rule of section 3.8
 * is decided here in the way Felix's per-family chains decide it:
 *
 *   - a rule that names an IP version, or any CIDR in its source or destination, exists only in
 *     that family's chain: it never matches a packet of the other family; a rule with only
 *     selectors, tags and ports exists in both;
 *   - protocol and notProtocol compare the packet's IP protocol number;
 *   - icmp and notICMP look at the ICMP type and code of ICMP packets of the family (protocol 1
 *     over IPv4, 58 over IPv6); icmp matches only such a packet with that type (and code, when
 *     given); notICMP holds for every packet that is not such a packet with that type (and code);
 *   - ports and notPorts look at the ports of tcp, udp, sctp and udplite packets: ports matches
 *     only such a packet with the port in a range; notPorts holds unless it is such a packet with
 *     the port in a range;
 *   - selector (and tag, which is has(tag)) matches an address that belongs to an endpoint,
 *     workload or host, anywhere in the cluster, whose effective labels match; notSelector and
 *     notTag hold for every other address, including addresses of no endpoint at all.
 *
 * Which sides are policed: the source's egress when the source is a workload endpoint's address;
 * the destination's ingress when the destination is one, unless the source is the address of the
 * node that workload lives on (Felix lets host-to-local-workload traffic through, 5.2). A
 * workload's traffic to its own node passes its egress policy and is then accepted. Host
 * endpoints are matched by selectors but not policed. A reply is decided by the packet that
 * opened its connection (conntrack, 5.5).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

/* ------------------------------------------------------------------------------------------ */
/* Matching one rule                                                                           */

static bool carries_ports(uint8_t proto)
{
	return proto == 6 || proto == 17 || proto == 132 || proto == 136;
}

static bool is_icmp(const struct policy_flow *f)
{
	return (f->src.family == 4 && f->protocol == 1) ||
	       (f->src.family == 6 && f->protocol == 58);
}

static bool in_nets(const struct ipam_cidr *nets, unsigned n, const struct ipam_addr *a)
{
	for (unsigned i = 0; i < n; i++)
		if (ipam_cidr_contains(&nets[i], a))
			return true;
	return false;
}

static bool in_ports(const struct policy_port_range *r, unsigned n, uint16_t port)
{
	for (unsigned i = 0; i < n; i++)
		if (port >= r[i].lo && port <= r[i].hi)
			return true;
	return false;
}

/* Whether a is an endpoint's address whose effective labels match sel. */
static bool selected(const struct policy_model *m, const struct policy_selector *sel,
                     const struct ipam_addr *a)
{
	const struct policy_endpoint *ep = policy_model_endpoint_by_addr(m, a);

	return ep != NULL && policy_endpoint_matches(m, ep, sel);
}

static bool entity_matches(const struct policy_model *m, const struct policy_entity *e,
                           const struct ipam_addr *a, uint8_t proto, uint16_t port)
{
	bool ported = carries_ports(proto);

	if (e->n_nets > 0 && !in_nets(e->nets, e->n_nets, a))
		return false;
	if (e->n_not_nets > 0 && in_nets(e->not_nets, e->n_not_nets, a))
		return false;
	if (e->n_ports > 0 && !(ported && in_ports(e->ports, e->n_ports, port)))
		return false;
	if (e->n_not_ports > 0 && ported && in_ports(e->not_ports, e->n_not_ports, port))
		return false;
	if (e->selector != NULL && !selected(m, e->selector, a))
		return false;
	if (e->not_selector != NULL && selected(m, e->not_selector, a))
		return false;
	if (e->tag_sel != NULL && !selected(m, e->tag_sel, a))
		return false;
	if (e->not_tag_sel != NULL && selected(m, e->not_tag_sel, a))
		return false;
	return true;
}

/* Whether the flow is an ICMP packet of its family with this type and (when >= 0) code. */
static bool icmp_is(const struct policy_flow *f, int16_t type, int16_t code)
{
	return is_icmp(f) && f->icmp_type >= 0 && f->icmp_type == type &&
	       (code < 0 || f->icmp_code == code);
}

static bool rule_matches(const struct policy_model *m, const struct policy_rule *r,
                         const struct policy_flow *f)
{
	int fam = policy_rule_family(r);

	if (fam != 0 && fam != f->src.family)
		return false;
	if (r->protocol >= 0 && r->protocol != f->protocol)
		return false;
	if (r->not_protocol >= 0 && r->not_protocol == f->protocol)
		return false;
	if (r->icmp_type >= 0 && !icmp_is(f, r->icmp_type, r->icmp_code))
		return false;
	if (r->not_icmp_type >= 0 && icmp_is(f, r->not_icmp_type, r->not_icmp_code))
		return false;
	return entity_matches(m, &r->src, &f->src, f->protocol, f->src_port) &&
	       entity_matches(m, &r->dst, &f->dst, f->protocol, f->dst_port);
}

/* ------------------------------------------------------------------------------------------ */
/* One side: the policies and profiles of one endpoint in one direction                        */

static void __attribute__((format(printf, 2, 3)))
set_reason(struct policy_trace_side *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->reason, sizeof(s->reason), fmt, ap);
	va_end(ap);
}

static struct policy_trace_step *add_step(struct policy_trace_side *s, bool profile,
                                          const char *name)
{
	struct policy_trace_step *steps = realloc(s->steps, (s->n_steps + 1) * sizeof(*steps));

	if (steps == NULL)
		return NULL;
	s->steps = steps;
	steps += s->n_steps++;
	memset(steps, 0, sizeof(*steps));
	steps->profile = profile;
	steps->name = name;
	steps->rule = -1;
	return steps;
}

/* Run rules top-down into step: the first allow, deny or pass decides; log rules that match on
 * the way are recorded and passed over. */
static int run_rules(const struct policy_model *m, const struct policy_rules *rules,
                     const struct policy_flow *f, struct policy_trace_step *step)
{
	for (unsigned i = 0; i < rules->n; i++) {
		const struct policy_rule *r = &rules->v[i];
		if (!rule_matches(m, r, f))
			continue;
		if (r->action == POLICY_ACTION_LOG) {
			unsigned *l = realloc(step->logged, (step->n_logged + 1) * sizeof(*l));
			if (l == NULL)
				return -ENOMEM;
			step->logged = l;
			l[step->n_logged++] = i;
			continue;
		}
		step->rule = (int)i;
		step->outcome = r->action == POLICY_ACTION_ALLOW  ? POLICY_OUTCOME_ALLOW
		                : r->action == POLICY_ACTION_DENY ? POLICY_OUTCOME_DENY
		                                                  : POLICY_OUTCOME_PASS;
		return 0;
	}
	step->outcome = POLICY_OUTCOME_NO_MATCH;
	return 0;
}

static bool policy_applies(const struct policy_model *m, const struct policy_policy *p,
                           const struct policy_endpoint *ep, bool ingress)
{
	/* doNotTrack and preDNAT policies are rendered for host endpoints only. */
	if (p->do_not_track || p->pre_dnat)
		return false;
	if (ingress ? !p->ingress_type : !p->egress_type)
		return false;
	return policy_endpoint_matches(m, ep, p->selector);
}

static int police(const struct policy_model *m, const struct policy_endpoint *ep, bool ingress,
                  const struct policy_flow *f, struct policy_trace_side *s)
{
	const char *dir = ingress ? "ingress" : "egress";
	const struct policy_trace_step *passed = NULL;
	struct policy_policy *const *pols;
	unsigned npols;
	bool applied = false;
	int rv;

	s->policed = true;
	s->verdict = POLICY_VERDICT_DENY;
	pols = policy_model_policies(m, &npols);
	for (unsigned i = 0; i < npols && passed == NULL; i++) {
		const struct policy_policy *p = pols[i];
		struct policy_trace_step *st;

		if (!policy_applies(m, p, ep, ingress))
			continue;
		applied = true;
		st = add_step(s, false, p->name);
		if (st == NULL)
			return -ENOMEM;
		rv = run_rules(m, ingress ? &p->ingress : &p->egress, f, st);
		if (rv != 0)
			return rv;
		switch (st->outcome) {
		case POLICY_OUTCOME_ALLOW:
			s->verdict = POLICY_VERDICT_ALLOW;
			set_reason(s, "allowed by policy %s %s rule %d", p->name, dir, st->rule);
			return 0;
		case POLICY_OUTCOME_DENY:
			set_reason(s, "denied by policy %s %s rule %d", p->name, dir, st->rule);
			return 0;
		case POLICY_OUTCOME_PASS:
			passed = st;
			break;
		default:
			break;
		}
	}
	if (applied && passed == NULL) {
		set_reason(s, "denied: policies applied but none allowed or passed");
		return 0;
	}
	if (ep->n_profiles == 0) {
		if (passed != NULL)
			set_reason(s,
			           "denied: passed by policy %s %s rule %d to profiles, but the "
			           "endpoint has none",
			           passed->name, dir, passed->rule);
		else
			set_reason(s, "denied: no policy applies and the endpoint has no profiles");
		return 0;
	}
	for (unsigned i = 0; i < ep->n_profiles; i++) {
		const struct policy_profile *pr = policy_model_profile(m, ep->profiles[i]);
		struct policy_trace_step *st = add_step(s, true, ep->profiles[i]);

		if (st == NULL)
			return -ENOMEM;
		if (pr == NULL) {
			st->missing = true;
			continue;
		}
		st->name = pr->name;
		rv = run_rules(m, ingress ? &pr->ingress : &pr->egress, f, st);
		if (rv != 0)
			return rv;
		if (st->outcome == POLICY_OUTCOME_ALLOW) {
			s->verdict = POLICY_VERDICT_ALLOW;
			set_reason(s, "allowed by profile %s %s rule %d", pr->name, dir, st->rule);
			return 0;
		}
		if (st->outcome == POLICY_OUTCOME_DENY) {
			set_reason(s, "denied by profile %s %s rule %d", pr->name, dir, st->rule);
			return 0;
		}
		/* A pass cannot come from a profile (the model refuses it): fall through. */
		st->outcome = POLICY_OUTCOME_NO_MATCH;
		st->rule = -1;
	}
	set_reason(s, "denied: no profile allowed");
	return 0;
}

/* Why an address that is not a workload's is not policed. */
static void not_policed(struct policy_trace_side *s)
{
	s->policed = false;
	s->verdict = POLICY_VERDICT_ALLOW;
	if (s->endpoint != NULL)
		set_reason(s, "not a workload endpoint (host endpoint %s): not policed",
		           s->endpoint->key);
	else if (s->node != NULL)
		set_reason(s, "not a workload endpoint (node %s): not policed", s->node->name);
	else
		set_reason(s, "not a workload endpoint: not policed");
}

/* The first packet of a connection. */
static int evaluate_opening(const struct policy_model *m, const struct policy_flow *f,
                            struct policy_trace *t)
{
	const struct policy_endpoint *src = policy_model_endpoint_by_addr(m, &f->src);
	const struct policy_endpoint *dst = policy_model_endpoint_by_addr(m, &f->dst);
	bool src_wl = src != NULL && src->kind == POLICY_KIND_WORKLOADENDPOINT;
	bool dst_wl = dst != NULL && dst->kind == POLICY_KIND_WORKLOADENDPOINT;
	int rv;

	t->egress.endpoint = src;
	t->egress.node = policy_model_node_by_addr(m, &f->src);
	t->ingress.endpoint = dst;
	t->ingress.node = policy_model_node_by_addr(m, &f->dst);

	if (src_wl) {
		rv = police(m, src, false, f, &t->egress);
		if (rv != 0)
			return rv;
	} else {
		not_policed(&t->egress);
	}

	if (dst_wl && t->egress.node != NULL && strcmp(t->egress.node->name, dst->node) == 0) {
		t->ingress.policed = false;
		t->ingress.verdict = POLICY_VERDICT_ALLOW;
		set_reason(&t->ingress, "from its own host (node %s): not policed", dst->node);
	} else if (dst_wl) {
		rv = police(m, dst, true, f, &t->ingress);
		if (rv != 0)
			return rv;
	} else if (src_wl && t->ingress.node != NULL &&
	           strcmp(t->ingress.node->name, src->node) == 0) {
		t->ingress.policed = false;
		t->ingress.verdict = POLICY_VERDICT_ALLOW;
		set_reason(&t->ingress, "to its own host: allowed after egress policy");
	} else {
		not_policed(&t->ingress);
	}
	t->verdict =
	    t->egress.verdict == POLICY_VERDICT_ALLOW && t->ingress.verdict == POLICY_VERDICT_ALLOW
	        ? POLICY_VERDICT_ALLOW
	        : POLICY_VERDICT_DENY;
	return 0;
}

/* The packet that opened the connection a reply belongs to: addresses and ports swapped; an
 * echo reply's opening packet is the echo request (other ICMP types are kept as they are). */
static void opening_packet(const struct policy_flow *reply, struct policy_flow *open)
{
	*open = *reply;
	open->reply = false;
	open->src = reply->dst;
	open->dst = reply->src;
	open->src_port = reply->dst_port;
	open->dst_port = reply->src_port;
	if (is_icmp(reply)) {
		if (reply->src.family == 4 && reply->icmp_type == 0)
			open->icmp_type = 8;
		else if (reply->src.family == 6 && reply->icmp_type == 129)
			open->icmp_type = 128;
	}
}

static void reply_reason(struct policy_trace_side *s, bool allowed)
{
	char orig[sizeof(s->reason)];

	memcpy(orig, s->reason, sizeof(orig));
	if (allowed)
		set_reason(s, "reply of an allowed connection (conntrack); opening packet: %s",
		           orig);
	else
		set_reason(s, "reply of a connection that was never allowed; opening packet: %s",
		           orig);
}

int policy_evaluate(const struct policy_model *m, const struct policy_flow *flow,
                    struct policy_trace *out)
{
	struct policy_flow open;
	int rv;

	memset(out, 0, sizeof(*out));
	if ((flow->src.family != 4 && flow->src.family != 6) ||
	    flow->src.family != flow->dst.family)
		return -EINVAL;
	if (!flow->reply)
		open = *flow;
	else
		opening_packet(flow, &open);
	rv = evaluate_opening(m, &open, out);
	if (rv != 0) {
		policy_trace_free(out);
		return rv;
	}
	if (flow->reply) {
		reply_reason(&out->egress, out->verdict == POLICY_VERDICT_ALLOW);
		reply_reason(&out->ingress, out->verdict == POLICY_VERDICT_ALLOW);
	}
	return 0;
}

static void side_free(struct policy_trace_side *s)
{
	for (unsigned i = 0; i < s->n_steps; i++)
		free(s->steps[i].logged);
	free(s->steps);
	s->steps = NULL;
	s->n_steps = 0;
}

void policy_trace_free(struct policy_trace *t)
{
	if (t == NULL)
		return;
	side_free(&t->egress);
	side_free(&t->ingress);
}

/* ------------------------------------------------------------------------------------------ */
/* JSON                                                                                        */

static const char *verdict_name(uint8_t v)
{
	return v == POLICY_VERDICT_ALLOW ? "allow" : "deny";
}

static const char *outcome_name(uint8_t o)
{
	switch (o) {
	case POLICY_OUTCOME_ALLOW:
		return "allow";
	case POLICY_OUTCOME_DENY:
		return "deny";
	case POLICY_OUTCOME_PASS:
		return "pass";
	default:
		return "no-match";
	}
}

static json_t *step_json(const struct policy_trace_step *st)
{
	json_t *logged = json_array();
	json_t *o;

	if (logged == NULL)
		return NULL;
	for (unsigned i = 0; i < st->n_logged; i++) {
		if (json_array_append_new(logged, json_integer(st->logged[i])) != 0) {
			json_decref(logged);
			return NULL;
		}
	}
	o = json_pack("{s:s, s:s, s:s, s:o, s:o}", "kind", st->profile ? "profile" : "policy",
	              "name", st->name, "outcome", outcome_name(st->outcome), "rule",
	              st->rule >= 0 ? json_integer(st->rule) : json_null(), "logged", logged);
	if (o != NULL && st->missing && json_object_set_new(o, "missing", json_true()) != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *side_json(const struct policy_trace_side *s)
{
	json_t *steps = json_array();

	if (steps == NULL)
		return NULL;
	for (unsigned i = 0; i < s->n_steps; i++) {
		if (json_array_append_new(steps, step_json(&s->steps[i])) != 0) {
			json_decref(steps);
			return NULL;
		}
	}
	return json_pack("{s:o, s:o, s:b, s:s, s:s, s:o}", "endpoint",
	                 s->endpoint != NULL ? json_string(s->endpoint->key) : json_null(), "node",
	                 s->node != NULL ? json_string(s->node->name) : json_null(), "policed",
	                 s->policed, "verdict", verdict_name(s->verdict), "reason", s->reason,
	                 "steps", steps);
}

json_t *policy_trace_to_json(const struct policy_trace *t)
{
	return json_pack("{s:s, s:o, s:o}", "verdict", verdict_name(t->verdict), "egress",
	                 side_json(&t->egress), "ingress", side_json(&t->ingress));
}

/* ------------------------------------------------------------------------------------------ */
/* Trace requests                                                                              */

static int __attribute__((format(printf, 3, 4)))
req_bad(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* An optional integer field in lo..hi; *present says whether it was given. */
static int req_int(const json_t *req, const char *field, long lo, long hi, long *out, bool *present,
                   char *err, size_t errlen)
{
	const json_t *v = json_object_get(req, field);

	*present = v != NULL && !json_is_null(v);
	if (!*present)
		return 0;
	if (!json_is_integer(v))
		return req_bad(err, errlen, "%s: not an integer", field);
	if (json_integer_value(v) < lo || json_integer_value(v) > hi)
		return req_bad(err, errlen, "%s: %" JSON_INTEGER_FORMAT " is out of range %ld-%ld",
		               field, json_integer_value(v), lo, hi);
	*out = (long)json_integer_value(v);
	return 0;
}

/* Resolve from and to in one family: the one asked for, else the one a literal address has,
 * else IPv4 when both have an IPv4 address, else IPv6. */
static int resolve_pair(const struct policy_model *m, const char *from, const char *to, int family,
                        struct policy_flow *f, char *err, size_t errlen)
{
	struct ipam_addr a;
	char msg[256];
	int rv;

	if (family == 0 && ipam_addr_parse(from, &a))
		family = a.family;
	else if (family == 0 && ipam_addr_parse(to, &a))
		family = a.family;
	for (int fam = family != 0 ? family : 4;; fam = 6) {
		bool last = family != 0 || fam == 6;
		const char *which = "from";

		rv = policy_model_resolve(m, from, fam, &f->src, msg, sizeof(msg));
		if (rv == 0) {
			which = "to";
			rv = policy_model_resolve(m, to, fam, &f->dst, msg, sizeof(msg));
			if (rv == 0)
				return 0;
		}
		if (rv == -ENOENT || (last && family != 0)) {
			snprintf(err, errlen, "%s: %s", which, msg);
			return rv;
		}
		if (last) {
			snprintf(err, errlen, "from %s and to %s have no IP version in common",
			         from, to);
			return rv;
		}
	}
}

int policy_trace_request(const struct policy_model *m, const json_t *request, json_t **answer,
                         char *err, size_t errlen)
{
	static const char *const fields[] = {"from",      "to",       "protocol", "port",
	                                     "srcPort",   "icmpType", "icmpCode", "reply",
	                                     "ipVersion", NULL};
	struct policy_flow f;
	struct policy_trace t;
	const json_t *proto;
	const json_t *reply;
	const char *from;
	const char *to;
	const char *k;
	const char *pname;
	json_t *v;
	json_t *flow = NULL;
	char a[IPAM_ADDR_STRLEN];
	char b[IPAM_ADDR_STRLEN];
	long port = 0, sport = 0, itype = -1, icode = -1, ipv = 0;
	bool has_port, has_sport, has_type, has_code, has_ipv;
	int p = -1;
	int rv;

	*answer = NULL;
	if (errlen > 0)
		err[0] = '\0';
	memset(&f, 0, sizeof(f));
	if (!json_is_object(request))
		return req_bad(err, errlen, "the request is not a JSON object");
	json_object_foreach ((json_t *)request, k, v) {
		const char *const *fl;
		for (fl = fields; *fl != NULL && strcmp(*fl, k) != 0; fl++)
			;
		if (*fl == NULL)
			return req_bad(err, errlen, "%s: unknown field", k);
	}
	from = json_string_value(json_object_get(request, "from"));
	to = json_string_value(json_object_get(request, "to"));
	if (from == NULL)
		return req_bad(err, errlen, "from: missing or not a string");
	if (to == NULL)
		return req_bad(err, errlen, "to: missing or not a string");
	proto = json_object_get(request, "protocol");
	if (json_is_integer(proto) && json_integer_value(proto) >= 1 &&
	    json_integer_value(proto) <= 255)
		p = (int)json_integer_value(proto);
	else if (json_is_string(proto))
		p = policy_protocol_parse(json_string_value(proto));
	if (p < 1 || p > 255) {
		if (json_is_string(proto))
			return req_bad(err, errlen, "protocol: '%s' is not a protocol",
			               json_string_value(proto));
		return req_bad(err, errlen, "protocol: %s",
		               proto == NULL ? "missing" : "not a protocol name or number 1-255");
	}
	if ((rv = req_int(request, "port", 1, 65535, &port, &has_port, err, errlen)) != 0 ||
	    (rv = req_int(request, "srcPort", 1, 65535, &sport, &has_sport, err, errlen)) != 0 ||
	    (rv = req_int(request, "icmpType", 0, 255, &itype, &has_type, err, errlen)) != 0 ||
	    (rv = req_int(request, "icmpCode", 0, 255, &icode, &has_code, err, errlen)) != 0 ||
	    (rv = req_int(request, "ipVersion", 4, 6, &ipv, &has_ipv, err, errlen)) != 0)
		return rv;
	if (has_ipv && ipv == 5)
		return req_bad(err, errlen, "ipVersion: 5 is not an IP version");
	reply = json_object_get(request, "reply");
	if (reply != NULL && !json_is_boolean(reply))
		return req_bad(err, errlen, "reply: not a boolean");
	if ((has_port || has_sport) && !carries_ports((uint8_t)p))
		return req_bad(err, errlen, "%s: ports only go with tcp, udp, sctp or udplite",
		               has_port ? "port" : "srcPort");
	if ((has_type || has_code) && p != 1 && p != 58)
		return req_bad(err, errlen, "%s: only with icmp or icmpv6",
		               has_type ? "icmpType" : "icmpCode");
	if (has_code && !has_type)
		return req_bad(err, errlen, "icmpCode: needs icmpType");
	/* icmp and icmpv6 pick the family in which named endpoints are resolved; a literal
	 * address keeps its own, and a mismatch is refused below. */
	if (ipv == 0 && (p == 1 || p == 58) && !ipam_addr_parse(from, &f.src) &&
	    !ipam_addr_parse(to, &f.dst))
		ipv = p == 1 ? 4 : 6;
	rv = resolve_pair(m, from, to, (int)ipv, &f, err, errlen);
	if (rv != 0)
		return rv;
	if ((p == 1 && f.src.family == 6) || (p == 58 && f.src.family == 4))
		return req_bad(err, errlen, "protocol: %s does not go with IPv%d addresses",
		               p == 1 ? "icmp" : "icmpv6", f.src.family);
	f.protocol = (uint8_t)p;
	f.dst_port = (uint16_t)port;
	f.src_port = (uint16_t)sport;
	f.icmp_type = (int16_t)itype;
	f.icmp_code = (int16_t)icode;
	f.reply = json_is_true(reply);

	rv = policy_evaluate(m, &f, &t);
	if (rv != 0)
		return req_bad(err, errlen, "the flow cannot be evaluated");
	*answer = policy_trace_to_json(&t);
	policy_trace_free(&t);
	pname = policy_protocol_name(p);
	flow = json_pack("{s:s, s:s, s:o, s:b}", "src", ipam_addr_format(&f.src, a), "dst",
	                 ipam_addr_format(&f.dst, b), "protocol",
	                 pname != NULL ? json_string(pname) : json_integer(p), "reply", f.reply);
	if (*answer == NULL || flow == NULL)
		goto nomem;
	if ((has_port && json_object_set_new(flow, "port", json_integer(port)) != 0) ||
	    (has_sport && json_object_set_new(flow, "srcPort", json_integer(sport)) != 0) ||
	    (has_type && json_object_set_new(flow, "icmpType", json_integer(itype)) != 0) ||
	    (has_code && json_object_set_new(flow, "icmpCode", json_integer(icode)) != 0))
		goto nomem;
	if (json_object_set_new(*answer, "flow", flow) != 0) {
		flow = NULL;
		goto nomem;
	}
	return 0;
nomem:
	json_decref(flow);
	json_decref(*answer);
	*answer = NULL;
	snprintf(err, errlen, "out of memory");
	return -ENOMEM;
}
