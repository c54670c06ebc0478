/*
 * Private to the agent: the CNI path. cni_state.c is the domain command that every replica
 * applies (pure, deterministic); routes_cni.c is the HTTP side that proposes it and then wires
 * the container on this host.
 */
#ifndef TABBY_AGENT_CNI_H
#define TABBY_AGENT_CNI_H

#include <jansson.h>
#include <stdbool.h>

#include "store/kv.h"

/* The domain command id of the CNI path (struct kv_handler.call). */
#define CNI_CALL 3

/* DOMAIN key prefix of the CNI records: "cni/<node>/<container>/<ifname>". */
#define CNI_RECORD_PREFIX "cni/"

/*
 * The domain command handler (kv_call_fn); see the comment at the top of cni_state.c for the
 * payloads and replies. data is unused (NULL).
 */
int cni_apply(void *data, struct kv_tx *tx, struct kv_bytes payload, struct kv_call_out *out);

/*
 * The CNI record of (node, container, ifname) read through tx (a view): *rec is a new reference
 * to {"networks", "handle", "iface"?, "mac"?, "netns"?, "ips", "wep"?} or NULL when there is none.
 * Returns 0, -ENOMEM or -EIO.
 */
int cni_record_get(struct kv_tx *tx, const char *node, const char *container, const char *ifname,
                   json_t **rec);

/*
 * What an ADD of a new interface (node, container, ifname) would be given, read through tx (a
 * view of this replica): the host-side name (iface, IFNAMSIZ bytes) and the container end's MAC
 * ("xx:xx:..", 18 bytes), as cni_apply() decides them. Only a forecast: a command applied before
 * that ADD may take the name. *exists is set, and nothing else, when the interface has a record
 * already. Returns 0, -ENOMEM, -EIO or -EBADMSG (no free name).
 */
int cni_predict_iface(struct kv_tx *tx, const char *node, const char *container, const char *ifname,
                      bool *exists, char iface[16], char mac[18]);

/* Calls fn for every CNI record of node, with its container and ifname. A non-zero return of fn
 * stops and is returned. Returns 0, -ENOMEM, -EIO or what fn returned. */
typedef int (*cni_record_fn)(void *arg, const char *container, const char *ifname,
                             const json_t *rec);
int cni_foreach_record(struct kv_tx *tx, const char *node, cni_record_fn fn, void *arg);

#endif
