/* dp_dgram_pvt.h - what the datagram layer's files share:
 *
 *      dp_dgram.c          a datagram in: checks, then each frame's op
 *      dp_dgram_session.c  the session table, the answer window, leases,
 *                          the configuration, set-up
 *      dp_dgram_out.c      datagrams out: answers, completions, messages
 */
#ifndef ATOMQ_DP_DGRAM_PVT_H
#define ATOMQ_DP_DGRAM_PVT_H

#include "atomq/dgram.h"
#include "dataplane/dp_dgram.h"
#include "dataplane/dp_worker.h"

/* A request's state in the window. */
enum dp_dgram_slot_state {
        DP_DGRAM_FREE = 0,
        DP_DGRAM_PENDING = 1,   /* executing: its completion or reply is due */
        DP_DGRAM_DONE = 2,      /* answered: a copy gets the same answer */
};

/* One sequence number's answer: the window keeps the last
 * ATOMQ_DGRAM_WINDOW of a session, at seq % ATOMQ_DGRAM_WINDOW. */
struct dp_dgram_slot {
        uint64_t seq;
        uint64_t handle;        /* the answer's */
        uint64_t msg_seq;       /* the answer's */
        uint64_t deadline_ns;   /* a pending request's */
        int32_t status;
        uint32_t count;
        uint64_t cache_pos;     /* a fetch's answer in the answer cache ... */
        uint32_t cache_len;     /* ... of these bytes; 0: not kept */
        uint8_t state;          /* enum dp_dgram_slot_state */
        uint8_t op;             /* the request's */
        uint8_t reserved[2];
};

/* Bytes of fetch answers a worker keeps for copies of their requests. */
#define DP_DGRAM_CACHE_BYTES (1u << 20)

/* A subscription of a session; its index is the shard's sid. */
struct dp_dgram_sub {
        uint32_t trie_id;
        uint32_t group;         /* queue group id; 0: none */
        uint32_t sid;           /* the client's, in its MSG frames' handle */
        uint16_t gen;           /* in the subscription handle: a stale one is refused */
        bool live;
};

/* The sid of a session's request inbox (_AQD.<session>.*). */
#define DP_DGRAM_INBOX_SID UINT32_MAX

struct dp_dgram_session {
        uint64_t id;            /* 0: the slot is free */
        struct nic_dgram_addr peer;
        uint16_t incarnation;   /* in req_ids: a late completion of a slot's earlier session */
        uint8_t port;           /* the backend it came through, and is answered through */
        uint16_t sub_gen;
        bool inbox;             /* the request inbox is subscribed */
        uint32_t inbox_trie;
        uint32_t next_free;     /* free list: slot + 1 */
        uint32_t requests;      /* requests pending (the timeout sweep looks) */
        uint64_t last_ns;       /* the lease runs from here */
        uint64_t seq_max;       /* the highest sequence number taken */
        uint64_t dlv_seq;       /* MSG frames sent: their seq */
        struct dp_dgram_sub subs[DP_DGRAM_SUBS_MAX];
        struct dp_dgram_slot win[ATOMQ_DGRAM_WINDOW];
};

/* A backend of the sessions (dp_dgram_port_add). */
struct dp_dgram_port {
        struct dp_dgram *d;
        uint8_t index;
        struct dp_dgram_tx tx;
};

/* A datagram being built: the session id, then frames. */
struct dp_dgram_out {
        uint8_t *buf;           /* NIC_DGRAM_BYTES_MAX */
        const struct dp_dgram_tx *tx; /* the backend it leaves through */
        uint32_t len;
        uint32_t sent;          /* datagrams sent since begin (a long answer is split) */
        bool open;              /* begun and not ended */
        uint64_t session;
        struct nic_dgram_addr peer;
};

/* A session opened lately: a copy of its PING (same peer, same seq: the
 * client's nonce) gets the same session, not another one. */
struct dp_dgram_open {
        struct nic_dgram_addr peer;
        uint8_t port;
        uint64_t nonce;
        uint64_t id;
};
#define DP_DGRAM_OPENS 256u

struct dp_dgram {
        struct dp_worker *w;
        struct dp_dgram_stats *stats;
        struct dp_dgram_config cfg;
        struct dp_dgram_port ports[DP_DGRAM_PORTS_MAX];
        uint32_t port_count;
        uint32_t client;        /* the completion column of our commands */
        struct dp_dgram_session *sessions;  /* cfg.max_sessions */
        uint32_t free_head;     /* slot + 1; 0: none free */
        uint32_t live;
        uint64_t sweep_ns;      /* the last lease and timeout sweep */
        uint64_t now_ns;        /* the worker's clock as of its last pass: leases and
                                 * waits need no finer time than that, and a read
                                 * of the clock per frame cost 14% of the worker */
        uint64_t id_state;      /* session ids: a keyed sequence (dp_dgram_id_next) */
        uint64_t id_key;
        /* Fetch answers, kept so that a copy of a fetch whose answer was
         * lost gets the same messages again instead of a new fetch (which
         * would count another delivery of each and, after max_deliver,
         * drop them). A ring of DP_DGRAM_CACHE_BYTES: an answer lives
         * there until later ones write over it (cache_written passes its
         * position by the ring's size); one too old is fetched again. */
        uint8_t *cache;
        uint64_t cache_written;  /* bytes ever written, tails skipped at a wrap included */
        struct dp_dgram_out ans; /* answers to a datagram, or to a completion */
        struct dp_dgram_out dlv; /* a delivery: it may come while ans is open */
        uint8_t *cmd;           /* DP_CMD_BYTES_MAX: a command being built */
        struct dp_dgram_open opens[DP_DGRAM_OPENS]; /* the last opens, a ring */
        uint32_t opens_next;
};

/* ---- dp_dgram_session.c ---- */

/* A new session for peer: its slot, or NULL when max_sessions are open. */
struct dp_dgram_session *dp_dgram_session_open(struct dp_dgram *d, uint8_t port,
                                               const struct nic_dgram_addr *peer, uint64_t now_ns);
/* Ends s: its subscriptions and inbox go, the slot is freed. */
void dp_dgram_session_end(struct dp_dgram *d, struct dp_dgram_session *s);
/* The session of id, or NULL. */
struct dp_dgram_session *dp_dgram_session_find(struct dp_dgram *d, uint64_t id);
static inline uint32_t dp_dgram_session_slot(const struct dp_dgram *d,
                                             const struct dp_dgram_session *s)
{
        return (uint32_t)(s - d->sessions);
}
static inline uint32_t dp_dgram_endpoint(uint32_t slot)
{
        return DP_DGRAM_ENDPOINT_BITS | slot;
}
/* A command's req_id: the session's slot and incarnation, the seq's low
 * 32 bits; dp_dgram_req_session undoes it (NULL: the session is gone). */
uint64_t dp_dgram_req_id(const struct dp_dgram *d, const struct dp_dgram_session *s,
                         uint64_t seq);
struct dp_dgram_session *dp_dgram_req_session(struct dp_dgram *d, uint64_t req_id);
/* The window slot of seq in s. */
static inline struct dp_dgram_slot *dp_dgram_slot_of(struct dp_dgram_session *s, uint64_t seq)
{
        return &s->win[seq % ATOMQ_DGRAM_WINDOW];
}

/* ---- dp_dgram_out.c ---- */

/* Starts a datagram to peer in session (0: an open's refusal); frames are
 * appended; dp_dgram_out_end sends it. A frame that does not fit what is
 * left sends what is there first. */
void dp_dgram_out_begin(struct dp_dgram *d, struct dp_dgram_out *o, uint8_t port,
                        uint64_t session, const struct nic_dgram_addr *peer);
/* Room for a frame of `bytes` (header included): a pointer to fill, then
 * dp_dgram_out_commit; NULL when it can never fit a datagram (counted). */
uint8_t *dp_dgram_out_reserve(struct dp_dgram *d, struct dp_dgram_out *o, uint32_t bytes);
void dp_dgram_out_commit(struct dp_dgram_out *o, uint32_t bytes, struct dp_dgram_stats *st);
void dp_dgram_out_end(struct dp_dgram *d, struct dp_dgram_out *o);
/* A STATUS frame with seq and the body, appended to o. */
void dp_dgram_status_put(struct dp_dgram *d, struct dp_dgram_out *o, uint64_t seq, int32_t status,
                         uint64_t handle, uint64_t msg_seq, uint32_t count);
/* The same as a whole answer to s: into d->ans when it is open (an input
 * being answered), else as a datagram of its own. */
void dp_dgram_answer(struct dp_dgram *d, struct dp_dgram_session *s, uint64_t seq, int32_t status,
                     uint64_t handle, uint64_t msg_seq, uint32_t count);
/* A PONG with seq and the lease, into the open answer datagram. */
void dp_dgram_pong(struct dp_dgram *d, uint64_t seq);
/* The answer window slot sl holds, again (a retransmitted request). */
void dp_dgram_answer_again(struct dp_dgram *d, struct dp_dgram_session *s,
                           const struct dp_dgram_slot *sl);
/* A fetch's answer again from the cache: true when it was still there
 * and went out. */
bool dp_dgram_fetch_again(struct dp_dgram *d, struct dp_dgram_session *s,
                          const struct dp_dgram_slot *sl);
/* Completions of our column: answers. Returns the count. */
int dp_dgram_cpls_poll(struct dp_dgram *d);

/* ---- dp_dgram.c ---- */

/* Unsubscribes a session's subscription. */
void dp_dgram_sub_drop(struct dp_dgram *d, struct dp_dgram_sub *sub);

#endif /* ATOMQ_DP_DGRAM_PVT_H */
