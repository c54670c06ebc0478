/*
 * Private to the agent: v1 resources in the replicated state (resources.c) and their HTTP paths
 * (routes_policy.c).
 */
#ifndef TABBY_AGENT_RESOURCES_H
#define TABBY_AGENT_RESOURCES_H

#include <jansson.h>

#include "ipam/ipam.h"
#include "policy/policy.h"
#include "store/kv.h"

/* The domain command id of resource batches (struct kv_handler.call). */
#define RES_CALL 2

/* The domain command handler (kv_call_fn): one batch of resources, all or nothing (see the
 * comment at the top of resources.c for the payload and reply). data is unused (NULL). */
int resources_apply(void *data, struct kv_tx *tx, struct kv_bytes payload, struct kv_call_out *out);

/* What IPAM needs from the resource model: ipPool nodeSelectors evaluated against node labels.
 * Every caller of ipam_apply() in the agent, and the IPAM_CALL registration, passes it. */
extern const struct ipam_hooks resources_ipam_hooks;

/* Whether the delete reference {"kind": kind, "key": key}, resource #i+1 of a request, names
 * something a resource could be: true with *out set, or false with the refusal, as the state
 * machine words it, in why. */
bool resources_ref_ok(size_t i, const char *kind, const char *key, enum policy_kind *out, char *why,
                      size_t size);

/* The DOMAIN key of a stored resource, "res/<plural>/<key>", into out. -EINVAL when too long. */
int resources_store_key(enum policy_kind kind, const char *key, char *out, size_t len);

/* Every resource of kind, normalized, in key order (ipPools from IPAM). */
int resources_list(struct kv_tx *tx, enum policy_kind kind, json_t **items);
/* One resource by key; -ENOENT when absent. */
int resources_get(struct kv_tx *tx, enum policy_kind kind, const char *key, json_t **res);
/* A model of every stored resource (ipPools excepted). -EBADMSG for a record that does not decode
 * or that the model refuses, -EIO when the store fails. */
int resources_model(struct kv_tx *tx, struct policy_model **out);

#endif
