/*
 * The raft transport the store uses: raft's own TCP transport with a cluster fence in front of
 * it. Private to store/; store.h is the module's face.
 *
 * raft's TCP handshake names the connecting server's id and address and nothing about which
 * cluster it belongs to, and raft's core trusts any message with a higher term. A member left
 * running from an old cluster (a host that was away while the cluster was built again on the
 * same addresses) would make the new cluster's members step down to it, win their votes with
 * its longer log and overwrite their logs with the old cluster's entries. etcd checks a cluster
 * id on every peer message for the same reason.
 *
 * So each connection carries, after raft's handshake, a 24-byte fence preamble: 8 bytes of
 * magic, then the 16-byte cluster id. The accepting side reads exactly that many bytes (raft
 * has read exactly its handshake, so nothing of raft's stream is consumed) and hands the
 * connection to raft only if the id is its own; otherwise it closes it and reports the
 * stranger. Members whose data predates cluster ids have the all-zero id: the fence is open for
 * them, with no preamble either way, so they talk raft's plain protocol with each other and with
 * binaries from before the fence (a rolling upgrade), and to no fenced member: a fenced member
 * refuses their connections, and they drop a fenced member's, whose preamble is no raft message.
 */
#ifndef TABBY_STORE_FENCE_H
#define TABBY_STORE_FENCE_H

#include <stdint.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#define FENCE_ID_LEN 16

/* Called for each refused connection (never for an open fence): the raft id and address the
 * stranger's handshake gave, and the cluster id its preamble carried (NULL when it sent no fence
 * preamble at all). */
typedef void (*fence_refused_fn)(void *data, raft_id id, const char *address,
                                 const uint8_t *their_id);

struct fence;

/* Create the fenced transport on loop for cluster id (FENCE_ID_LEN bytes). *out is what
 * raft_uv_init() takes; raft closes it through its close method, after which fence_free()
 * releases it. Returns 0 or a RAFT_ error. */
int fence_new(uv_loop_t *loop, const uint8_t *id, fence_refused_fn refused, void *data,
              struct raft_uv_transport **out);

/* Release a transport that raft has closed, or that raft_uv_init() never took. */
void fence_free(struct raft_uv_transport *t);

#endif
