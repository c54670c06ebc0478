/*
 * Network policy: the calicoctl v1 resource model, the selector language, the verdict evaluator
 * and the nftables compiler (calico-behaviour.md sections 3, 4 and 5).
 *
 * How the parts fit. An operator's file is read by policy_doc_parse() (YAML or JSON) into a list
 * of resource objects; policy_resource_normalize() checks each one and returns its normalized
 * form, which is what the store keeps and what `tabby get` prints. A struct policy_model holds the
 * parsed resources of a cluster (built from normalized forms with policy_model_put()); the
 * evaluator answers "what happens to this packet, and why" over a model, and the compiler turns
 * a model into the nftables ruleset of one host, first in full and then as small incremental
 * batches. Nothing here does I/O: the compiler produces libnftables JSON commands (jansson) and
 * the agent runs them.
 *
 * Addresses and CIDRs are ipam's (struct ipam_addr, struct ipam_cidr: pure functions, no store).
 * Functions return 0 or a negative errno (-EINVAL bad input with a message in err, -ENOMEM,
 * -ENOENT not found) unless they say otherwise. err/errlen buffers always get one line without a
 * trailing newline.
 */
#ifndef TABBY_POLICY_H
#define TABBY_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "ipam/ipam.h"

/* ------------------------------------------------------------------------------------------ */
/* Labels                                                                                      */

struct policy_label {
	char *key;
	char *value;
};

/* A label set, sorted by key (byte order), keys unique. */
struct policy_labels {
	struct policy_label *v;
	unsigned n;
};

/* The value of key, NULL when absent. O(log n). */
const char *policy_labels_get(const struct policy_labels *l, const char *key);
/* From a JSON object of string values (NULL or absent: empty set). A non-string value is -EINVAL
 * with a message naming the key. */
int policy_labels_from_json(const json_t *obj, struct policy_labels *out, char *err, size_t errlen);
void policy_labels_free(struct policy_labels *l);

/* Label lookup used by selector evaluation: the value of key, or NULL when the label is absent.
 * Lets callers supply inherited label sets (an endpoint's own labels, then its profiles'). */
typedef const char *(*policy_label_fn)(void *ctx, const char *key);

/* ------------------------------------------------------------------------------------------ */
/* Selectors (calico-behaviour.md section 4)                                                   */

struct policy_selector;

/* Longest selector text accepted (bytes). */
#define POLICY_SELECTOR_MAX 65536
/* "s:" + base64url without padding of a SHA-224 digest. */
#define POLICY_UID_LEN 41 /* 40 characters + NUL */

/* Parse text (NUL-terminated). On -EINVAL, *err_offset (if not NULL) is the 0-based byte offset
 * where parsing failed and err says where and why, e.g. "at column 7: expected a quoted string
 * after '==', found 'b'" (columns 1-based). A blank selector parses as all(). */
int policy_selector_parse(const char *text, struct policy_selector **out, size_t *err_offset,
                          char *err, size_t errlen);
void policy_selector_free(struct policy_selector *s);

/* Whether the labels seen through get(ctx, key) match. Never fails. */
bool policy_selector_match(const struct policy_selector *s, policy_label_fn get, void *ctx);
/* The same over a plain label set. */
bool policy_selector_match_labels(const struct policy_selector *s, const struct policy_labels *l);

/* Label tests that every set of labels s matches passes: the root, or the operands of a root
 * "&&", that are "key == value" or has(key) (value NULL), at most max of them into keys[] and
 * values[] (strings of s); how many. 0 says nothing (all(), "||", "!", ...). */
unsigned policy_selector_requires(const struct policy_selector *s, const char **keys,
                                  const char **values, unsigned max);

/* When s is "key in {...}" alone: its key (*key) and values (*values, sorted), and how many
 * values; 0 otherwise. Strings of s. The endpoints it matches are those labelled key with one of
 * the values: the compiler's label index finds them without evaluating every endpoint. */
unsigned policy_selector_in_values(const struct policy_selector *s, const char **key,
                                   const char *const **values);

/* The canonical form (section 4.4); the string belongs to s and lives as long as s. */
const char *policy_selector_canonical(const struct policy_selector *s);
/* The UID of the canonical form, "s:" + base64url(SHA-224("s:" + canonical)). */
const char *policy_selector_uid(const struct policy_selector *s);
/* True when the selector is all() (or global()) alone. */
bool policy_selector_is_all(const struct policy_selector *s);

/* One test of a conjunction (policy_selector_literals()): a selector of its own, always in the
 * positive form ("tier == \"db\"" for the operand tier != 'db', "has(app)" for !has(app)), and
 * whether the operand is its negation. Both strings belong to the selector it came from. */
struct policy_selector_literal {
	const char *canonical; /* policy_selector_canonical() of the positive form */
	const char *uid;       /* policy_selector_uid() of it */
	bool negated;
};

/* When s is an "&&" whose operands (nested "&&" included) are each a comparison, has() or the
 * negation of one, or when s is one such negated test: the tests, *out pointing into s, and how
 * many; 0 otherwise (a single positive test, "||", a negated group, global(), ...). all()
 * operands are dropped; when every remaining test is negated, the first literal is all(), so
 * that there is always one that is not. An endpoint matches s exactly when it matches every
 * positive literal and no negated one: that lets the compiler test an address against one
 * shared set per test instead of a set per selector. */
unsigned policy_selector_literals(const struct policy_selector *s,
                                  const struct policy_selector_literal **out);

/* ------------------------------------------------------------------------------------------ */
/* Documents: the text of a resource file                                                      */

/* Parse the text of a file: JSON when it is JSON, else YAML (one or several documents separated
 * by "---"; YAML flow style, and JSON documents separated by "---", are YAML, as calicoctl read
 * them). Returns in *resources a new JSON array of the resource objects found: a mapping is one
 * resource, a sequence lists resources, a mapping with an "items" sequence (calicoctl's "...List"
 * kinds) lists its items; empty YAML documents are skipped. YAML scalars follow YAML 1.1 as
 * calicoctl's Go parser reads them (plain true/false/yes/no/on/off are booleans, plain numbers
 * are numbers, ~ and null are null, quoted scalars are strings); anchors and aliases work; a
 * duplicate mapping key is an error. Malformed text is -EINVAL with err "line L, column C: why"
 * (1-based); for text that starts with '{' or '[' and is neither JSON nor YAML, the error of the
 * parser that got further (JSON's on a tie). Nesting deeper than 64 or more than 1,000,000 nodes
 * after alias expansion is an error, so no input can exhaust the stack or memory.
 */
int policy_doc_parse(const char *text, size_t len, json_t **resources, char *err, size_t errlen);

/* policy_doc_parse(), and in *texts (when texts is not NULL) a new array as long as *resources:
 * for a resource read from YAML a tree of its shape in which each scalar that YAML resolved to a
 * number or a boolean is a string, its text as written ("2", "0x1F", "yes"), and every other
 * scalar is null; for a resource read from JSON, null. calicoctl's YAML decoder gave such a
 * scalar's text to a field that wants a string: see policy_resource_normalize_texts(). */
int policy_doc_parse_texts(const char *text, size_t len, json_t **resources, json_t **texts,
                           char *err, size_t errlen);

/* Write v as YAML (block style, mapping keys in the order of the object, strings quoted when a
 * plain scalar would read back as something else) to a malloc()ed NUL-terminated *out. A JSON
 * array of resources becomes one YAML sequence, like calicoctl get -o yaml of several. */
int policy_doc_emit_yaml(const json_t *v, char **out);

/* ------------------------------------------------------------------------------------------ */
/* Resources (calico-behaviour.md section 3)                                                   */

enum policy_kind {
	POLICY_KIND_NONE = 0,
	POLICY_KIND_POLICY = 1,
	POLICY_KIND_PROFILE = 2,
	POLICY_KIND_IPPOOL = 3,
	POLICY_KIND_HOSTENDPOINT = 4,
	POLICY_KIND_WORKLOADENDPOINT = 5,
	POLICY_KIND_NODE = 6,
	POLICY_KIND_BGPPEER =
	    7, /* recognised so that it can be refused by name: Tabby has no BGP */
};
#define POLICY_KIND_COUNT 8

/* A kind from a kind name or any calicoctl alias, case-insensitive ("policy", "Policies", "pol",
 * "ipp", "wep", "hostEndpoint", ...). POLICY_KIND_NONE when unknown. */
enum policy_kind policy_kind_parse(const char *s);
/* The v1 kind name: "policy", "profile", "ipPool", "hostEndpoint", "workloadEndpoint", "node",
 * "bgpPeer". */
const char *policy_kind_name(enum policy_kind k);
/* The API path word: "policies", "profiles", "ippools", "hostendpoints", "workloadendpoints",
 * "nodes", "bgppeers". */
const char *policy_kind_plural(enum policy_kind k);

/*
 * The normalized form of a resource. Checks one resource object (apiVersion "v1", a known kind,
 * metadata and spec with every field of calico-behaviour.md sections 2.1 and 3 and nothing
 * unknown) and returns a new object in normalized form:
 *
 *   - "apiVersion": "v1"; "kind": the v1 kind name; "metadata" and "spec" with only the fields
 *     below, in this order; optional fields absent when not given, never null;
 *   - policy: metadata {name, annotations?}; spec {order?, selector (as written, "" when
 *     absent), types (defaulted as section 3.3 describes), ingress [rules], egress [rules],
 *     doNotTrack, preDNAT};
 *   - profile: metadata {name, labels?, tags?}; spec {ingress [rules], egress [rules]};
 *   - ipPool: metadata {cidr (canonical)}; spec {ipip? {enabled, mode ("always" |
 *     "cross-subnet")}, nat-outgoing, disabled, and Tabby's additions blockSize?, vxlan?
 *     {enabled, mode}, nodeSelector?};
 *   - hostEndpoint: metadata {name, node, labels?}; spec {interfaceName?, expectedIPs?
 *     [canonical addresses], profiles?};
 *   - workloadEndpoint: metadata {name, workload, orchestrator, node, activeInstanceID?,
 *     labels?}; spec {ipNetworks [canonical single-address CIDRs, "10.0.0.1/32"], ipNATs?
 *     [{internalIP, externalIP}], ipv4Gateway?, ipv6Gateway?, profiles?, interfaceName, mac?};
 *   - node: metadata {name, labels?}; spec {bgp? {asNumber?, ipv4Address?, ipv6Address?},
 *     orchRefs? [{nodeName, orchestrator}]};
 *   - rule: {action ("allow" | "deny" | "log" | "pass"), ipVersion? (4 | 6), protocol? and
 *     notProtocol? (a lower-case name "tcp", "udp", "icmp", "icmpv6", "sctp", "udplite", also
 *     for its number: 6 is "tcp"; other protocols an integer 1-255), icmp? and notICMP? {type,
 *     code?}, source? and destination? (entity rules, omitted when empty)};
 *   - entity rule: {tag?, notTag?, net?, notNet?, nets?, notNets? (canonical CIDRs), selector?,
 *     notSelector?, ports?, notPorts? (each port an integer, each range a string "lo:hi" with
 *     lo < hi)}.
 *
 * Values are checked as the v1 validator does (section 3.1 name rules, 3.3, 3.8, 2.1 through
 * ipam_pool_validate()); selectors must parse. On -EINVAL err names the resource, the field path
 * and the value, e.g. "policy frontend-policy: spec.ingress[0].destination.ports[0]: 70000 is not
 * a port"; a resource without a usable name is named by its kind and position ("policy #2").
 * index is the resource's 0-based position in its file, used only for that.
 */
int policy_resource_normalize(const json_t *in, unsigned index, json_t **out, char *err,
                              size_t errlen);

/* policy_resource_normalize() of a resource read by policy_doc_parse_texts(), texts its texts
 * (NULL or null: none). Where a field wants a string and in has a number or a boolean whose text
 * texts keeps, the text is taken, as calicoctl's YAML decoder took it ("version: 2" is the label
 * value "2"); a number or boolean without a text is refused as policy_resource_normalize() refuses
 * it. When that happened and quoted is not NULL, *quoted is a new copy of in with those values
 * replaced by their texts: what policy_resource_normalize() takes as it is, to send to an agent
 * (which has no texts); else *quoted is NULL. */
int policy_resource_normalize_texts(const json_t *in, const json_t *texts, unsigned index,
                                    json_t **out, json_t **quoted, char *err, size_t errlen);

/* The kind and identity of a normalized resource. The key is: policy, profile, node: the name;
 * ipPool: the canonical CIDR; hostEndpoint: "NODE/NAME"; workloadEndpoint:
 * "NODE/ORCHESTRATOR/WORKLOAD/NAME" (a workload name may contain '/': the first two and the last
 * '/' separate). The key is what API paths and store keys use. Returns POLICY_KIND_NONE and an
 * empty key for anything that is not a normalized resource. */
#define POLICY_KEY_MAX 1024
enum policy_kind policy_resource_key(const json_t *normalized, char *key, size_t keylen);

/* An ipPool between its normalized form and IPAM's struct (the store keeps pools only as IPAM
 * records, so `tabby pool show` and `tabby get ippool` show the same pools). to_ipam: block_size
 * 0 when blockSize is absent; -EINVAL for anything that is not a normalized ipPool. from_ipam:
 * the normalized form; a pool marked removing shows as disabled. */
int policy_ippool_to_ipam(const json_t *normalized, struct ipam_pool *out, char *err,
                          size_t errlen);
json_t *policy_ippool_from_ipam(const struct ipam_pool *p);

/* An IP protocol from a rule's or a command line's value: "tcp", "udp", "icmp", "icmpv6", "sctp",
 * "udplite" (lower case; the CLI also takes upper case) or a decimal 1-255. Returns the number,
 * or -1. */
int policy_protocol_parse(const char *s);
/* The name of a protocol number that has one ("tcp" for 6), else NULL. */
const char *policy_protocol_name(int proto);

/* ------------------------------------------------------------------------------------------ */
/* The model: the parsed resources of a cluster                                                */

enum policy_action {
	POLICY_ACTION_ALLOW = 1,
	POLICY_ACTION_DENY = 2,
	POLICY_ACTION_LOG = 3,
	POLICY_ACTION_PASS = 4,
};

struct policy_port_range {
	uint16_t lo, hi; /* inclusive; a single port has lo == hi */
};

/* Every test present must hold for the entity to match (section 3.8); absent ones are NULL / 0.
 * net and nets both land in nets, notNet and notNets in not_nets. A tag T is the selector
 * has(T) and is parsed into tag_sel / not_tag_sel. */
struct policy_entity {
	char *tag, *not_tag;
	struct policy_selector *tag_sel, *not_tag_sel;
	struct policy_selector *selector, *not_selector;
	struct ipam_cidr *nets, *not_nets;
	unsigned n_nets, n_not_nets;
	struct policy_port_range *ports, *not_ports;
	unsigned n_ports, n_not_ports;
};

struct policy_rule {
	uint8_t action;                 /* enum policy_action */
	uint8_t ip_version;             /* 0 (either), 4 or 6 */
	int16_t protocol, not_protocol; /* IP protocol number, -1 when absent */
	int16_t icmp_type, icmp_code;   /* -1 when absent */
	int16_t not_icmp_type, not_icmp_code;
	struct policy_entity src, dst;
};

struct policy_rules {
	struct policy_rule *v;
	unsigned n;
};

struct policy_policy {
	char *name;
	bool has_order;
	double order;
	char *selector_text;
	struct policy_selector *selector; /* never NULL ("" is all()) */
	bool ingress_type, egress_type;   /* from types */
	bool do_not_track, pre_dnat;
	struct policy_rules ingress, egress;
};

struct policy_profile {
	char *name;
	struct policy_labels labels;
	char **tags;
	unsigned n_tags;
	struct policy_rules ingress, egress;
};

/* A workload or host endpoint. */
struct policy_endpoint {
	enum policy_kind kind; /* WORKLOADENDPOINT or HOSTENDPOINT */
	char *key;             /* policy_resource_key() */
	char *node, *name;
	char *orchestrator, *workload; /* NULL for a host endpoint */
	char *interface;               /* NULL when a host endpoint names none */
	struct ipam_addr *addrs;       /* ipNetworks or expectedIPs */
	unsigned n_addrs;
	struct policy_labels labels; /* its own */
	char **profiles;
	unsigned n_profiles;
};

struct policy_node {
	char *name;
	struct policy_labels labels;
	struct ipam_addr addrs[2]; /* from spec.bgp ipv4Address / ipv6Address; family 0 if none */
};

struct policy_model;

struct policy_model *policy_model_new(void);
void policy_model_free(struct policy_model *m);

/* Insert or replace the resource identified by policy_resource_key(normalized), from its
 * normalized form (ipPools and bgpPeers are not part of the model: -EINVAL). The model owns its
 * own copies. */
int policy_model_put(struct policy_model *m, const json_t *normalized, char *err, size_t errlen);
/* Remove a resource by kind and key; -ENOENT when absent. */
int policy_model_remove(struct policy_model *m, enum policy_kind kind, const char *key);

/* Policies in evaluation order: ascending order, unordered last, ties by name (byte order).
 * The array is valid until the next put/remove. */
struct policy_policy *const *policy_model_policies(const struct policy_model *m, unsigned *n);
const struct policy_policy *policy_model_policy(const struct policy_model *m, const char *name);
const struct policy_profile *policy_model_profile(const struct policy_model *m, const char *name);
/* Endpoints (workload and host) in key order; valid until the next put/remove. */
struct policy_endpoint *const *policy_model_endpoints(const struct policy_model *m, unsigned *n);
const struct policy_endpoint *policy_model_endpoint(const struct policy_model *m,
                                                    enum policy_kind kind, const char *key);
/* The endpoint that owns addr (a workload's ipNetworks or a host endpoint's expectedIPs), NULL
 * when none. O(1) expected. */
const struct policy_endpoint *policy_model_endpoint_by_addr(const struct policy_model *m,
                                                            const struct ipam_addr *addr);
struct policy_node *const *policy_model_nodes(const struct policy_model *m, unsigned *n);
const struct policy_node *policy_model_node(const struct policy_model *m, const char *name);
/* The node one of whose addresses is addr, NULL when none. */
const struct policy_node *policy_model_node_by_addr(const struct policy_model *m,
                                                    const struct ipam_addr *addr);

/* The family a rule is confined to: its ipVersion, else the family of its CIDRs (a rule's CIDRs
 * are one family), 0 when it matches packets of both families. The evaluator and the compiler
 * both decide by it, so the kernel and the trace agree (Felix renders per-family chains). */
int policy_rule_family(const struct policy_rule *r);

/* Resolve an endpoint named on a command line (`policy trace --from/--to`) to one address of
 * the given family (0: any, IPv4 preferred): an IP address (as is); a workload endpoint key
 * "NODE/ORCHESTRATOR/WORKLOAD/NAME"; "WORKLOAD/NAME" or "WORKLOAD" when exactly one endpoint
 * fits; a host endpoint "NODE/NAME"; "host:NODE" (the node's address). -ENOENT / -EINVAL with
 * err naming the spec and why (unknown, ambiguous with the candidates, no address of family). */
int policy_model_resolve(const struct policy_model *m, const char *spec, int family,
                         struct ipam_addr *out, char *err, size_t errlen);

/* The effective value of label key for ep (section 3.9 step 1): its own labels, else for each
 * of its profiles in order that profile's labels, then its tags (a tag reads as ""). NULL when
 * absent. A profile the model does not hold contributes nothing. */
const char *policy_endpoint_label(const struct policy_model *m, const struct policy_endpoint *ep,
                                  const char *key);
/* Whether sel matches ep's effective labels. */
bool policy_endpoint_matches(const struct policy_model *m, const struct policy_endpoint *ep,
                             const struct policy_selector *sel);

/* ep's effective labels with its profiles looked up once, at the first read that needs them, for
 * matching many selectors against one endpoint (policy_endpoint_matches() looks them up again at
 * every call, and the compiler matches each changed endpoint against every selector in use).
 * Plain data on the caller's stack: nothing to release.
 * Valid while the model changes neither ep nor any profile; the same answers as
 * policy_endpoint_label() and policy_endpoint_matches(). */
#define POLICY_EP_LABELS_PROFILES 8
struct policy_ep_labels {
	const struct policy_model *m;
	const struct policy_endpoint *ep;
	bool resolved; /* prof[] filled */
	/* ep->profiles[i] for i < POLICY_EP_LABELS_PROFILES, NULL where the model lacks it; any
	 * further profile is looked up at each read */
	const struct policy_profile *prof[POLICY_EP_LABELS_PROFILES];
};
void policy_ep_labels_init(struct policy_ep_labels *l, const struct policy_model *m,
                           const struct policy_endpoint *ep);
const char *policy_ep_labels_get(struct policy_ep_labels *l, const char *key);
bool policy_ep_labels_match(struct policy_ep_labels *l, const struct policy_selector *sel);

/* ------------------------------------------------------------------------------------------ */
/* The evaluator                                                                               */

/* A packet, as the first packet of a flow (reply = false) or as a reply within a flow that the
 * opposite packet opened (reply = true: allowed exactly when that opening packet was). */
struct policy_flow {
	struct ipam_addr src, dst;
	uint8_t protocol;  /* IP protocol number */
	uint16_t src_port; /* tcp, udp, sctp, udplite; 0 when unknown */
	uint16_t dst_port;
	int16_t icmp_type; /* icmp, icmpv6; -1 when unknown */
	int16_t icmp_code;
	bool reply;
};

enum policy_verdict { POLICY_VERDICT_ALLOW = 1, POLICY_VERDICT_DENY = 2 };

/* What one policy or profile did with the packet. */
enum policy_outcome {
	POLICY_OUTCOME_NO_MATCH = 0, /* no terminal rule matched: on to the next */
	POLICY_OUTCOME_ALLOW = 1,
	POLICY_OUTCOME_DENY = 2,
	POLICY_OUTCOME_PASS = 3,
};

struct policy_trace_step {
	bool profile;     /* a profile, else a policy */
	const char *name; /* points into the model */
	uint8_t outcome;  /* enum policy_outcome */
	int rule;         /* 0-based index of the deciding rule, -1 for NO_MATCH */
	unsigned *logged; /* indexes of log rules that matched before the decision */
	unsigned n_logged;
	bool missing; /* a profile the endpoint names but the model lacks (matches nothing) */
};

/* One direction at one endpoint: the source's egress or the destination's ingress. */
struct policy_trace_side {
	const struct policy_endpoint *endpoint; /* NULL when the address is no endpoint's */
	const struct policy_node *node;         /* the address is this node's (a host), or NULL */
	bool policed;
	uint8_t verdict; /* enum policy_verdict; ALLOW when not policed */
	/* One line: why not policed, or what decided ("allowed by policy db-from-web rule 0",
	 * "denied: policies applied but none allowed", "denied: no profile matched", ...). */
	char reason[256];
	struct policy_trace_step *steps;
	unsigned n_steps;
};

struct policy_trace {
	uint8_t verdict; /* enum policy_verdict: both sides allowed */
	struct policy_trace_side egress;
	struct policy_trace_side ingress;
};

/*
 * The fate of flow given the model (section 3.9): the source's egress is policed when the source
 * address is a workload endpoint's; the destination's ingress when the destination is a
 * workload's, except for traffic from the workload's own node (host to local workload is not
 * policed). Traffic from a workload to its own node is policed by the workload's egress and then
 * allowed. Host endpoints are matched by selectors and tags but not policed here. A reply is
 * answered by evaluating the opening packet (src and dst, ports swapped).
 */
int policy_evaluate(const struct policy_model *m, const struct policy_flow *flow,
                    struct policy_trace *out);
void policy_trace_free(struct policy_trace *t);
/* The trace as JSON (for the API and -o json):
 * {"verdict": "allow"|"deny", "egress": SIDE, "ingress": SIDE}, SIDE = {"endpoint": KEY|null,
 * "node": NAME|null, "policed": bool, "verdict", "reason", "steps": [{"kind": "policy"|"profile",
 * "name", "outcome": "no-match"|"allow"|"deny"|"pass", "rule": N|null, "logged": [N...],
 * "missing"?: true}]}. */
json_t *policy_trace_to_json(const struct policy_trace *t);

/* A trace request, as `POST /v1/policy/trace` and `tabby policy trace --file` take it:
 * {"from": SPEC, "to": SPEC, "protocol": NAME|NUMBER, "port"?: N (destination port), "srcPort"?:
 * N, "icmpType"?: N, "icmpCode"?: N, "reply"?: bool, "ipVersion"?: 4|6}; SPECs as for
 * policy_model_resolve() (both resolved in one family). Answers policy_trace_to_json() plus
 * "flow": {"src", "dst", "protocol", "port"?, "srcPort"?, "icmpType"?, "icmpCode"?, "reply"}.
 * -EINVAL / -ENOENT with err naming the field and the value. */
int policy_trace_request(const struct policy_model *m, const json_t *request, json_t **answer,
                         char *err, size_t errlen);

/* ------------------------------------------------------------------------------------------ */
/* The nftables compiler                                                                       */

struct policy_compile_config {
	const char *node;         /* this host: its endpoints are the local ones */
	const char *table;        /* nftables table name in family inet; NULL: "tabby" */
	const char *iface_prefix; /* workload interface prefix; NULL: "cali" */
	const char *log_prefix;   /* NULL: "calico-packet" */
};

struct policy_compiler;

int policy_compiler_new(const struct policy_compile_config *cfg, struct policy_compiler **out);
void policy_compiler_free(struct policy_compiler *c);

/* Tell the compiler that a resource was put into or removed from m (after the change was made to
 * m). Cheap: the work happens in policy_compiler_flush(). */
void policy_compiler_note(struct policy_compiler *c, enum policy_kind kind, const char *key);

/*
 * Bring the compiler's desired ruleset up to date with m and return, in *cmds, the libnftables
 * JSON ({"nftables": [...]}) that moves the kernel from the last flushed ruleset to it, as one
 * transaction: on the first flush (or after policy_compiler_reset()) the whole table (deleted
 * and re-created in the same transaction, so there is never a moment without policy); after
 * that only what changed (set elements, verdict map elements, replaced chains, rules deleted
 * and inserted by position). *cmds is NULL when nothing changed.
 *
 * An incremental flush may leave sets no rule names in the kernel: those of the last
 * POLICY_IDLE_SETS selectors that stopped being used (together at most POLICY_IDLE_ELEMS
 * addresses), kept with their members up to date so that using one again costs no new set. The
 * whole table has none.
 *
 * Rules by position: {"delete": {"rule": {"family", "table", "chain", "index": N}}} deletes the
 * rule at 0-based position N of the chain, and {"insert": {"rule": {..., "index": N, "expr"}}}
 * inserts before it, N counting the rules the chain holds at that point of the batch. libnftables
 * knows rules by handle, so the applier turns each index into the handle of the rule there
 * (agent/nft.h); an insert's index names a rule that the chain held before the batch.
 */
int policy_compiler_flush(struct policy_compiler *c, const struct policy_model *m, json_t **cmds);
#define POLICY_IDLE_SETS  64
#define POLICY_IDLE_ELEMS 100000
/* Forget what the kernel holds: the next flush emits the whole table. */
void policy_compiler_reset(struct policy_compiler *c);
/* The whole desired ruleset as libnftables JSON commands, regardless of what was flushed (for
 * tests and `tabby policy ruleset`). */
int policy_compiler_ruleset(struct policy_compiler *c, const struct policy_model *m, json_t **cmds);

#endif
