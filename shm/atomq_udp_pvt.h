/* atomq_udp_pvt.h - libatomq's UDP transport (shm/atomq_udp.c): the agent
 * API of include/atomq/atomq.h spoken as atomq datagrams (atomq/dgram.h,
 * docs/protocol.md "atomq datagrams") to atomqd's --udp port, for agents on
 * another host. atomq_connect("udp://HOST:PORT") makes one; every public
 * call of shm/atomq_agent.c hands a UDP connection to the function of the
 * same name here, or returns -ENOTSUP where the protocol has no such
 * operation. Not part of the public API: the declarations are hidden, so
 * libatomq.so still exports the atomq_ API alone (shm/libatomq.map matches
 * atomq_*, which would take these too).
 */
#ifndef ATOMQ_UDP_PVT_H
#define ATOMQ_UDP_PVT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "atomq/atomq.h"

#pragma GCC visibility push(hidden)

/* Marks a batch filled by atomq_udp_fetch (in struct atomq_batch's
 * reserved word, 0 in a shared-memory batch): atomq_batch_next, which gets
 * no connection, walks it here. */
#define ATOMQ_UDP_BATCH_TAG 0x55445042u /* "BPDU" */

struct atomq_udp; /* one session: opaque outside atomq_udp.c */

/* Is path a UDP address ("udp://...")? */
bool atomq_udp_is_url(const char *path);

/* Opens a session with the atomqd datagram port named by url:
 * "udp://A.B.C.D:PORT", optionally followed by "?timeout_ms=N" (the call
 * timeout from the start, handshake included; 10 s otherwise).
 * -EINVAL: not such an address; -ETIMEDOUT: no PONG within the timeout;
 * -EUSERS: atomqd's sessions are all taken; -ENOMEM; -errno of socket. */
int atomq_udp_connect(const char *url, struct atomq_udp **out);

/* Ends the session (waits for its answer at most 1 s) and frees u. */
void atomq_udp_close(struct atomq_udp *u);

void atomq_udp_set_timeout(struct atomq_udp *u, int64_t timeout_ns);
int atomq_udp_fd(const struct atomq_udp *u);
int atomq_udp_poll_arm(struct atomq_udp *u);
uint64_t atomq_udp_dropped(const struct atomq_udp *u);

int atomq_udp_create(struct atomq_udp *u, enum atomq_mode mode, const char *name,
                     const struct atomq_create_opts *o, uint64_t *handle);
int atomq_udp_destroy(struct atomq_udp *u, uint64_t handle, const char *name);
int atomq_udp_send(struct atomq_udp *u, uint64_t handle, const char *name, const char *key,
                   const void *data, uint32_t len, const struct atomq_msg_opts *o,
                   uint64_t *seq);
int atomq_udp_publish(struct atomq_udp *u, const char *subject, const void *data, uint32_t len,
                      const struct atomq_msg_opts *o);
int atomq_udp_flush(struct atomq_udp *u);
int atomq_udp_subscribe(struct atomq_udp *u, const char *pattern, const char *group,
                        uint32_t sid, uint64_t *sub);
int atomq_udp_unsubscribe(struct atomq_udp *u, uint64_t sub);
int atomq_udp_recv(struct atomq_udp *u, struct atomq_delivery *d, int64_t timeout_ns);
void atomq_udp_release(struct atomq_udp *u);
int atomq_udp_fetch(struct atomq_udp *u, uint64_t handle, const char *name, uint8_t end,
                    unsigned max, struct atomq_batch *b);
int atomq_udp_batch_next(struct atomq_batch *b, struct atomq_delivery *d);
void atomq_udp_batch_release(struct atomq_udp *u, struct atomq_batch *b);
int atomq_udp_ack(struct atomq_udp *u, uint64_t handle, uint64_t seq);
int atomq_udp_request(struct atomq_udp *u, const char *subject, const void *data, uint32_t len,
                      uint32_t timeout_ms, uint32_t sid, uint64_t *inbox);
int atomq_udp_reply(struct atomq_udp *u, const struct atomq_delivery *d, const void *data,
                    uint32_t len);

/* shm/atomq_agent.c's subject rule, shared: tokens of [^ .*>] split by
 * '.', wildcards '*' and '>' only when allowed, at most 255 bytes. */
bool atomq_subject_ok(const char *s, size_t len, bool wildcards);

#pragma GCC visibility pop

#endif /* ATOMQ_UDP_PVT_H */
