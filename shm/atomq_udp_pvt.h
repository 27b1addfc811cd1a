/* atomq_udp_pvt.h - libatomq's UDP transport: the agent API of
 * include/atomq/atomq.h spoken as atomq datagrams (atomq/dgram.h,
 * docs/protocol.md "atomq datagrams") to atomqd's --udp port, for agents on
 * another host. atomq_connect("udp://HOST:PORT") makes one; every public
 * call of shm/atomq_agent.c hands a UDP connection to the function of the
 * same name here, or returns -ENOTSUP where the protocol has no such
 * operation. Not part of the public API: the declarations are hidden, so
 * libatomq.so still exports the atomq_ API alone (shm/libatomq.map matches
 * atomq_*, which would take these too).
 *
 * The transport is three files, layered:
 *   shm/atomq_udp_wire.c     datagrams: built, checksummed and sent;
 *                            received, checked and taken apart (answers to
 *                            the call in progress, deliveries into the
 *                            queue, a fetch's messages into its batch)
 *   shm/atomq_udp_session.c  the session: open and close, its timers
 *                            (retransmission, keep-alive), waiting for an
 *                            answer, the delivery queue's reading side
 *   shm/atomq_udp.c          the API calls built on the session: entities,
 *                            messages, subscriptions, fetch, request, reply
 * The first part of this header is what shm/atomq_agent.c calls; the
 * second is what those three files share with one another, and nobody
 * else uses.
 */
#ifndef ATOMQ_UDP_PVT_H
#define ATOMQ_UDP_PVT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "atomq/atomq.h"
#include "atomq/dgram.h"
#include "dataplane/dp_cmd.h"
#include "shm/shm_vring.h"

#pragma GCC visibility push(hidden)

/* ---- what shm/atomq_agent.c calls ------------------------------------------ */

/* Marks a batch filled by atomq_udp_fetch (in struct atomq_batch's
 * reserved word, 0 in a shared-memory batch): atomq_batch_next, which gets
 * no connection, walks it here. */
#define ATOMQ_UDP_BATCH_TAG 0x55445042u /* "BPDU" */

/* One session (defined below for the transport's own files; the agent
 * uses it only through these calls). */
struct atomq_udp;

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

/* ---- between atomq_udp_wire.c, atomq_udp_session.c and atomq_udp.c -------- */

#define ATOMQ_UDP_MS 1000000ull /* nanoseconds */
/* Retransmission: the first wait is about two loopback-to-LAN round trips
 * plus a worker's pass; doubling to half a second keeps a lossy path busy
 * without flooding a server that is merely slow. */
#define ATOMQ_UDP_RTO_MIN_NS (20 * ATOMQ_UDP_MS)
#define ATOMQ_UDP_RTO_MAX_NS (500 * ATOMQ_UDP_MS)
/* atomqd's receive buffers are 16 KiB: a longer datagram never arrives. */
#define ATOMQ_UDP_TX_BYTES (16u * 1024)
/* The largest UDP payload over IPv4, rounded up. */
#define ATOMQ_UDP_RX_BYTES (64u * 1024)
/* Requests waiting for their reply at once (the protocol's window is 64
 * sequence numbers; keep well inside it). */
#define ATOMQ_UDP_REQUESTS_MAX 16u
/* The delivery queue's record type (a struct atomq_udp_dlv, then the
 * frame): its only one. */
#define ATOMQ_UDP_REC_DLV 1u
/* A fetch takes up to DP_FETCH_MAX frames, each at most a datagram. */
#define ATOMQ_UDP_BATCH_BYTES (DP_FETCH_MAX * ATOMQ_UDP_RX_BYTES)

/* A request (atomq_request) waiting for its REPLY or STATUS. */
struct atomq_udp_req {
        uint64_t seq;           /* 0: the entry is free */
        uint64_t next_tx_ns;
        uint64_t rto_ns;
        uint64_t end_ns;        /* its timeout_ms: no retransmission after it */
        uint64_t give_up_ns;    /* no answer at all by then: a 408 delivery */
        uint32_t sid;
        uint32_t len;           /* datagram bytes in buf */
        uint8_t *buf;           /* ATOMQ_UDP_TX_BYTES, a slice of req_mem */
};

/* The synchronous call in progress: its seq and what answered it. */
struct atomq_udp_call {
        uint64_t seq;           /* 0: none */
        uint8_t op;
        bool answered;
        bool collecting;        /* a fetch's MSG frames are still due */
        uint32_t want;          /* the fetch's count */
        uint64_t entity;        /* the fetch's entity */
        uint64_t collect_end_ns;
        struct atomq_dgram_status st;
};

/* What the queue keeps in front of each delivery's frame. */
struct atomq_udp_dlv {
        uint64_t entity;        /* a request's inbox (its seq); 0: a subscription */
        uint32_t sid;
        uint16_t status;        /* 0, 503 or 408 */
        uint16_t reserved;
};

/* One session: allocated whole at connect (atomq_udp_session.c); the
 * wire side fills the call, the queue, the batch and the counters. */
struct atomq_udp {
        int fd;                 /* connected to the server's address */
        uint64_t session;       /* 0 until the PONG */
        uint64_t next_seq;
        int64_t timeout_ns;
        uint64_t lease_ns;
        uint64_t last_tx_ns;    /* the server's lease runs from our last frame */
        uint64_t ping_tx_ns;
        bool ping_wait;         /* a keep-alive PING is not answered yet */
        bool dlv_held;          /* a delivery is borrowed (atomq_recv) */
        int async_err;          /* for atomq_flush: an ICMP refusal met on the way */
        uint32_t dlv_count;     /* deliveries queued, the borrowed one included */
        uint64_t dlv_top;       /* duplicate filter: highest MSG seq seen */
        uint64_t dlv_bits;      /* bit k: dlv_top - k seen */
        struct shm_vring q_prod;
        struct shm_vring q_cons;
        void *q_mem;
        uint8_t *rx;            /* ATOMQ_UDP_RX_BYTES */
        uint8_t *tx;            /* ATOMQ_UDP_TX_BYTES: the call in progress */
        uint8_t *batch;         /* ATOMQ_UDP_BATCH_BYTES: a fetch's frames */
        uint32_t batch_len;
        uint32_t batch_count;
        uint64_t batch_seq[DP_FETCH_MAX];
        uint8_t *req_mem;
        struct atomq_udp_call call;
        struct atomq_udp_req reqs[ATOMQ_UDP_REQUESTS_MAX];
        /* What did not check or came too late: dropped and counted. */
        uint64_t dropped;       /* deliveries the queue had no room for */
        uint64_t bad_frames;    /* lengths, version, op, truncation */
        uint64_t bad_crc;
        uint64_t bad_session;   /* another session's id */
        uint64_t late;          /* answers and messages nobody waits for now */
        uint64_t dups;          /* MSG frames seen before (a copied datagram) */
};

/* atomq_udp_wire.c: datagrams out. */

/* Builds a datagram of one frame at out (ATOMQ_UDP_TX_BYTES): session,
 * then m as a frame of op with handle, seq and flags, CRC filled. *len
 * gets its bytes. -EMSGSIZE: it does not fit a datagram atomqd takes. */
int atomq_udp_build(uint8_t *out, uint64_t session, uint8_t op, uint16_t flags, uint64_t handle,
                    uint64_t seq, const struct dp_msg_in *m, uint32_t *len);

/* Sends a datagram: 0 also when the socket buffer is full (loss is the
 * protocol's business), -errno of send otherwise. */
int atomq_udp_tx(struct atomq_udp *u, const uint8_t *buf, uint32_t len);

/* Sends a datagram of one frame of op with seq and no sections. */
int atomq_udp_tx_bare(struct atomq_udp *u, uint64_t session, uint8_t op, uint64_t seq);

/* atomq_udp_wire.c: datagrams in. */

/* Reads every datagram waiting (at most ATOMQ_UDP_DRAIN_MAX) and takes
 * each checked frame. */
void atomq_udp_drain(struct atomq_udp *u);

/* Ends request r with a delivery of status (503, 408) and no message. */
void atomq_udp_req_end(struct atomq_udp *u, struct atomq_udp_req *r, uint16_t status);

/* atomq_udp_session.c: waiting. */

/* Retransmits and expires requests, keeps the lease; returns when the
 * next of these is due (shm_clock_ns time). */
uint64_t atomq_udp_timers(struct atomq_udp *u, uint64_t now);

/* A request of op: builds it from m in u->tx with a fresh seq, sends it
 * until answered. Returns the answer's status (0 or -errno) with its body
 * in *st (may be NULL), or -ETIMEDOUT, -ECONNRESET (the lease ran out),
 * -EMSGSIZE. */
int atomq_udp_ask(struct atomq_udp *u, uint8_t op, uint16_t flags, uint64_t handle,
                  const struct dp_msg_in *m, struct atomq_dgram_status *st);

/* Has the server surely ended the session? It ends one that sent nothing
 * for a lease; we kept it alive only while a call was running. */
static inline bool atomq_udp_lapsed(const struct atomq_udp *u, uint64_t now)
{
        return u->session != 0 && now - u->last_tx_ns >= u->lease_ns;
}

#pragma GCC visibility pop

#endif /* ATOMQ_UDP_PVT_H */
