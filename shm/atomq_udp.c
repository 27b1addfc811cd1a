/* atomq_udp.c - libatomq over UDP: the agent API (include/atomq/atomq.h)
 * as atomq datagrams (atomq/dgram.h; docs/protocol.md "atomq datagrams")
 * with atomqd's --udp port, so an agent's code runs on another host:
 *
 *      struct atomq *a;
 *      int rc = atomq_connect("udp://10.0.0.5:4223", &a);
 *
 * One connection is one session. Every call that needs an answer sends a
 * frame with a fresh seq and sends the same bytes again (same seq, so the
 * server executes it once) every RTO, 20 ms doubling to 500 ms, until the
 * answer with that seq arrives or the call timeout passes (-ETIMEDOUT).
 * Requests (atomq_request) are answered through atomq_recv, so they are
 * kept in a small table and retransmitted by whichever call waits next.
 * While a call waits, deliveries (MSG frames) that arrive are checked and
 * queued for atomq_recv in a bounded ring (shm_vring over heap memory: the
 * same borrow/release as the shared-memory agent); what does not fit is
 * dropped and counted (atomq_dropped). The lease is kept by a PING when
 * nothing was sent for a third of it.
 *
 * Every datagram is checked before anything in it is believed (dgram.h):
 * lengths against the bytes received, the CRC32C over the session id and
 * the frame, the session id against ours. What does not check is dropped
 * and counted. Memory is allocated at connect and bounded (about 4.6 MiB
 * of address space, most of it the fetch batch, touched only as used);
 * nothing is allocated per message.
 */
#include "shm/atomq_udp_pvt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "atomq/dgram.h"
#include "dataplane/dp_cmd.h"
#include "dataplane/dp_crc32c.h"
#include "shm/shm_clock.h"
#include "shm/shm_vring.h"

#define ATOMQ_UDP_MS 1000000ull /* nanoseconds */
#define ATOMQ_UDP_TIMEOUT_NS_DEFAULT (10000 * ATOMQ_UDP_MS)
/* Retransmission: the first wait is about two loopback-to-LAN round trips
 * plus a worker's pass; doubling to half a second keeps a lossy path busy
 * without flooding a server that is merely slow. */
#define ATOMQ_UDP_RTO_MIN_NS (20 * ATOMQ_UDP_MS)
#define ATOMQ_UDP_RTO_MAX_NS (500 * ATOMQ_UDP_MS)
/* A keep-alive PING not answered within this is sent again. */
#define ATOMQ_UDP_PING_RETRY_NS (200 * ATOMQ_UDP_MS)
/* After a fetch's STATUS, how long its MSG frames (which may come in
 * further datagrams) are waited for; ones that do not come are lost to
 * this fetch and handed out again after the mailbox's ack wait. */
#define ATOMQ_UDP_FETCH_GRACE_NS (100 * ATOMQ_UDP_MS)
/* How long after its timeout_ms a request without any answer is given
 * up on (a status-408 delivery): room for the server's own -ETIMEDOUT. */
#define ATOMQ_UDP_REQUEST_GRACE_NS (500 * ATOMQ_UDP_MS)
/* How long atomq_close waits for the session's end to be answered. */
#define ATOMQ_UDP_CLOSE_NS (1000 * ATOMQ_UDP_MS)
/* atomqd's receive buffers are 16 KiB: a longer datagram never arrives. */
#define ATOMQ_UDP_TX_BYTES (16u * 1024)
/* The largest UDP payload over IPv4, rounded up. */
#define ATOMQ_UDP_RX_BYTES (64u * 1024)
/* Requests waiting for their reply at once (the protocol's window is 64
 * sequence numbers; keep well inside it). */
#define ATOMQ_UDP_REQUESTS_MAX 16u
/* The delivery queue: bytes (a power of two; a record may take half) and
 * records. */
#define ATOMQ_UDP_QUEUE_BYTES (256u * 1024)
#define ATOMQ_UDP_QUEUE_MAX 1024u
/* The most datagrams one pump reads before it looks at its timers. */
#define ATOMQ_UDP_DRAIN_MAX 64u
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

/* ---- frames ---------------------------------------------------------------- */

/* The CRC of a frame of len bytes at f in session (dgram.h): the session
 * id's 8 bytes, then the frame with its crc32c field taken as zero. */
static uint32_t atomq_udp_crc(uint64_t session, const uint8_t *f, uint32_t len)
{
        static const uint8_t zero[4];
        const uint32_t at = (uint32_t)offsetof(struct atomq_frame, crc32c);
        uint32_t c = dp_crc32c(0, &session, sizeof(session));
        c = dp_crc32c(c, f, at);
        c = dp_crc32c(c, zero, sizeof(zero));
        return dp_crc32c(c, f + at + 4, len - at - 4);
}

/* Builds a datagram of one frame at out (ATOMQ_UDP_TX_BYTES): session,
 * then m as a frame of op with handle, seq and flags, CRC filled. *len
 * gets its bytes. -EMSGSIZE: it does not fit a datagram atomqd takes. */
static int atomq_udp_build(uint8_t *out, uint64_t session, uint8_t op, uint16_t flags,
                           uint64_t handle, uint64_t seq, const struct dp_msg_in *m,
                           uint32_t *len)
{
        uint64_t bytes = dp_frame_bytes(m);
        if (bytes == 0 || bytes + ATOMQ_DGRAM_SESSION_BYTES > ATOMQ_UDP_TX_BYTES)
                return -EMSGSIZE;
        memcpy(out, &session, sizeof(session));
        uint8_t *p = out + ATOMQ_DGRAM_SESSION_BYTES;
        dp_frame_write(p, (enum atomq_frame_op)op, m);
        struct atomq_frame f;
        memcpy(&f, p, sizeof(f));
        f.handle = handle;
        f.seq = seq;
        f.flags |= (uint16_t)(flags | ATOMQ_FRAME_F_CRC);
        f.crc32c = 0;
        memcpy(p, &f, sizeof(f));
        f.crc32c = atomq_udp_crc(session, p, (uint32_t)bytes);
        memcpy(p + offsetof(struct atomq_frame, crc32c), &f.crc32c, sizeof(f.crc32c));
        *len = (uint32_t)(bytes + ATOMQ_DGRAM_SESSION_BYTES);
        return 0;
}

/* Sends a datagram. Loss is the protocol's business (retransmission), so
 * a full socket buffer is not an error; an ICMP refusal of an earlier
 * datagram is kept for atomq_flush. */
static int atomq_udp_tx(struct atomq_udp *u, const uint8_t *buf, uint32_t len)
{
        for (;;) {
                if (send(u->fd, buf, len, MSG_NOSIGNAL) == (ssize_t)len) {
                        u->last_tx_ns = shm_clock_ns();
                        return 0;
                }
                if (errno == EINTR)
                        continue;
                if (errno == ECONNREFUSED) {
                        if (u->async_err == 0)
                                u->async_err = -ECONNREFUSED;
                        continue; /* the error was the earlier datagram's */
                }
                if (errno == EAGAIN || errno == ENOBUFS)
                        return 0;
                return -errno;
        }
}

/* A datagram of ours with one frame and no sections. */
static int atomq_udp_tx_bare(struct atomq_udp *u, uint64_t session, uint8_t op, uint64_t seq)
{
        uint8_t buf[ATOMQ_DGRAM_SESSION_BYTES + ATOMQ_FRAME_HDR_BYTES] __attribute__((aligned(8)));
        struct dp_msg_in m = { .storage = -1 };
        uint32_t len;
        int rc = atomq_udp_build(buf, session, op, 0, 0, seq, &m, &len);
        return rc != 0 ? rc : atomq_udp_tx(u, buf, len);
}

/* ---- what arrives ---------------------------------------------------------- */

/* Queues a delivery for atomq_recv: h, then the frame (len bytes at f). */
static void atomq_udp_enqueue(struct atomq_udp *u, const struct atomq_udp_dlv *h,
                              const uint8_t *f, uint32_t len)
{
        uint8_t *p = NULL;
        if (u->dlv_count < ATOMQ_UDP_QUEUE_MAX)
                p = shm_vring_reserve(&u->q_prod, (uint32_t)sizeof(*h) + len);
        if (p == NULL) {
                u->dropped++;
                return;
        }
        memcpy(p, h, sizeof(*h));
        memcpy(p + sizeof(*h), f, len);
        shm_vring_commit(&u->q_prod, ATOMQ_UDP_REC_DLV);
        u->dlv_count++;
}

/* A request's end that carries no message (503: nobody listens, or
 * another error; 408: its time ran out): a delivery with an empty frame. */
static void atomq_udp_req_end(struct atomq_udp *u, struct atomq_udp_req *r, uint16_t status)
{
        struct atomq_frame f;
        atomq_frame_init(&f, ATOMQ_OP_REPLY, 0, 0, 0);
        f.seq = r->seq;
        struct atomq_udp_dlv h = { .entity = r->seq, .sid = r->sid, .status = status };
        atomq_udp_enqueue(u, &h, (const uint8_t *)&f, sizeof(f));
        r->seq = 0;
}

static struct atomq_udp_req *atomq_udp_req_find(struct atomq_udp *u, uint64_t seq)
{
        for (uint32_t i = 0; i < ATOMQ_UDP_REQUESTS_MAX; i++)
                if (u->reqs[i].seq == seq && seq != 0)
                        return &u->reqs[i];
        return NULL;
}

static void atomq_udp_on_status(struct atomq_udp *u, const struct atomq_frame *f,
                                const uint8_t *p)
{
        struct atomq_dgram_status st;
        if (f->payload_len != sizeof(st) || f->subject_len != 0 || f->headers_len != 0) {
                u->bad_frames++;
                return;
        }
        memcpy(&st, p + ATOMQ_FRAME_HDR_BYTES, sizeof(st));
        struct atomq_udp_req *r = atomq_udp_req_find(u, f->seq);
        if (u->call.seq != 0 && f->seq == u->call.seq && !u->call.answered) {
                u->call.st = st;
                u->call.answered = true;
                if (u->call.op == ATOMQ_OP_FETCH && st.status == 0 && st.count > 0) {
                        u->call.collecting = true;
                        u->call.want = st.count < DP_FETCH_MAX ? st.count : DP_FETCH_MAX;
                        u->call.entity = st.handle;
                        u->call.collect_end_ns = shm_clock_ns() + ATOMQ_UDP_FETCH_GRACE_NS;
                }
        } else if (r != NULL) {
                atomq_udp_req_end(u, r, st.status == -ETIMEDOUT ? 408 : 503);
        } else {
                u->late++;
        }
}

/* A message of the fetch in progress: into the batch once. */
static void atomq_udp_on_fetched(struct atomq_udp *u, const struct atomq_frame *f,
                                 const uint8_t *p, uint32_t len)
{
        struct atomq_udp_call *c = &u->call;
        if (!c->collecting || f->handle != c->entity || u->batch_count >= c->want ||
            u->batch_len + len > ATOMQ_UDP_BATCH_BYTES) {
                u->late++;
                return;
        }
        for (uint32_t i = 0; i < u->batch_count; i++) {
                if (u->batch_seq[i] == f->seq) {
                        u->dups++;
                        return;
                }
        }
        memcpy(u->batch + u->batch_len, p, len);
        u->batch_len += len;
        u->batch_seq[u->batch_count++] = f->seq;
}

/* Has this subscription delivery (its session-wide seq) been seen? A
 * 64-wide window, as IPsec's replay check: a copied datagram must not
 * deliver twice (MSG is at most once); one older than the window is
 * dropped too, which at most once allows. */
static bool atomq_udp_dlv_fresh(struct atomq_udp *u, uint64_t seq)
{
        if (seq > u->dlv_top) {
                uint64_t shift = seq - u->dlv_top;
                u->dlv_bits = shift >= 64 ? 0 : u->dlv_bits << shift;
                u->dlv_bits |= 1;
                u->dlv_top = seq;
                return true;
        }
        uint64_t back = u->dlv_top - seq;
        if (back >= 64 || (u->dlv_bits & (1ull << back)) != 0)
                return false;
        u->dlv_bits |= 1ull << back;
        return true;
}

static void atomq_udp_on_msg(struct atomq_udp *u, const struct atomq_frame *f, const uint8_t *p,
                             uint32_t len)
{
        /* Entity handles have a generation from bit 40 (dataplane/dp_handle.h)
         * and subscription sids are 32-bit: a fetched message, or a
         * subscription's. */
        if (f->handle > UINT32_MAX) {
                atomq_udp_on_fetched(u, f, p, len);
                return;
        }
        if (!atomq_udp_dlv_fresh(u, f->seq)) {
                u->dups++;
                return;
        }
        struct atomq_udp_dlv h = { .sid = (uint32_t)f->handle };
        atomq_udp_enqueue(u, &h, p, len);
}

static void atomq_udp_on_reply(struct atomq_udp *u, const struct atomq_frame *f,
                               const uint8_t *p, uint32_t len)
{
        struct atomq_udp_req *r = atomq_udp_req_find(u, f->seq);
        if (r == NULL) {
                u->late++; /* a second reply, or one after we gave up */
                return;
        }
        struct atomq_udp_dlv h = { .entity = r->seq, .sid = r->sid };
        atomq_udp_enqueue(u, &h, p, len);
        r->seq = 0;
}

/* One checked frame of our session. */
static void atomq_udp_frame(struct atomq_udp *u, const struct atomq_frame *f, const uint8_t *p,
                            uint32_t len)
{
        switch (f->op) {
        case ATOMQ_OP_PONG:
                u->ping_wait = false;
                if (f->ttl_ms != 0)
                        u->lease_ns = (uint64_t)f->ttl_ms * ATOMQ_UDP_MS;
                if (u->call.op == ATOMQ_OP_PING && f->seq == u->call.seq && u->call.seq != 0)
                        u->call.answered = true;
                break;
        case ATOMQ_OP_STATUS:
                atomq_udp_on_status(u, f, p);
                break;
        case ATOMQ_OP_MSG:
                atomq_udp_on_msg(u, f, p, len);
                break;
        case ATOMQ_OP_REPLY:
                atomq_udp_on_reply(u, f, p, len);
                break;
        default:
                u->bad_frames++; /* no server sends it */
                break;
        }
}

/* A checked frame of another session than ours. While we open, it may be
 * the PONG that names ours or the refusal (session 0); a PONG of another
 * session is a copy of our PING that opened a second one: it is ended at
 * once instead of holding a server slot until its lease runs out. */
static bool atomq_udp_foreign(struct atomq_udp *u, uint64_t session, const struct atomq_frame *f,
                              const uint8_t *p)
{
        bool ours = u->call.op == ATOMQ_OP_PING && f->seq == u->call.seq && u->call.seq != 0;
        if (u->session == 0 && ours && session != 0 && f->op == ATOMQ_OP_PONG) {
                u->session = session;
                return true;
        }
        if (u->session == 0 && ours && session == 0 && f->op == ATOMQ_OP_STATUS) {
                atomq_udp_on_status(u, f, p);
                return false;
        }
        if (session != 0 && f->op == ATOMQ_OP_PONG)
                (void)atomq_udp_tx_bare(u, session, ATOMQ_OP_DESTROY, 1);
        u->bad_session++;
        return false;
}

/* Bytes of the whole, valid frame at off (0: it is not; counted). */
static uint32_t atomq_udp_frame_at(struct atomq_udp *u, uint64_t session, const uint8_t *data,
                                   size_t len, size_t off, struct atomq_frame *f)
{
        size_t left = len - off;
        if (left < ATOMQ_FRAME_HDR_BYTES) {
                u->bad_frames++;
                return 0;
        }
        memcpy(f, data + off, sizeof(*f));
        /* Each length is bounded before the sum, so it cannot overflow. */
        if (f->subject_len > ATOMQ_FRAME_SUBJECT_MAX || f->headers_len > ATOMQ_FRAME_HEADERS_MAX ||
            f->payload_len > ATOMQ_FRAME_PAYLOAD_MAX) {
                u->bad_frames++;
                return 0;
        }
        uint64_t bytes = atomq_frame_bytes(f->subject_len, f->headers_len, f->payload_len);
        if (bytes > left || atomq_frame_check(data + off, (size_t)bytes, f) != ATOMQ_FRAME_OK) {
                u->bad_frames++;
                return 0;
        }
        if (!(f->flags & ATOMQ_FRAME_F_CRC) ||
            atomq_udp_crc(session, data + off, (uint32_t)bytes) != f->crc32c) {
                u->bad_crc++;
                return 0;
        }
        return (uint32_t)bytes;
}

/* One datagram: each frame checked, then taken. A frame that does not
 * check ends the datagram (its lengths cannot be trusted to find the
 * next one), as on the server. */
static void atomq_udp_dgram(struct atomq_udp *u, const uint8_t *data, size_t len)
{
        uint64_t session;
        if (len < ATOMQ_DGRAM_SESSION_BYTES + ATOMQ_FRAME_HDR_BYTES) {
                u->bad_frames++;
                return;
        }
        memcpy(&session, data, sizeof(session));
        for (size_t off = ATOMQ_DGRAM_SESSION_BYTES; off < len;) {
                struct atomq_frame f;
                uint32_t bytes = atomq_udp_frame_at(u, session, data, len, off, &f);
                if (bytes == 0)
                        return;
                if (session != u->session && !atomq_udp_foreign(u, session, &f, data + off))
                        return;
                atomq_udp_frame(u, &f, data + off, bytes);
                off += bytes;
        }
}

/* Reads every datagram waiting (at most ATOMQ_UDP_DRAIN_MAX). */
static void atomq_udp_drain(struct atomq_udp *u)
{
        for (uint32_t i = 0; i < ATOMQ_UDP_DRAIN_MAX; i++) {
                ssize_t n = recv(u->fd, u->rx, ATOMQ_UDP_RX_BYTES, MSG_DONTWAIT | MSG_TRUNC);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == ECONNREFUSED) {
                                if (u->async_err == 0)
                                        u->async_err = -ECONNREFUSED;
                                continue;
                        }
                        return; /* EAGAIN: nothing more */
                }
                if ((size_t)n > ATOMQ_UDP_RX_BYTES) {
                        u->bad_frames++; /* truncated: MSG_TRUNC gave the real length */
                        continue;
                }
                atomq_udp_dgram(u, u->rx, (size_t)n);
        }
}

/* ---- timers and waiting ------------------------------------------------------ */

/* Retransmits and expires requests, keeps the lease; returns when the next
 * of these is due. */
static uint64_t atomq_udp_timers(struct atomq_udp *u, uint64_t now)
{
        uint64_t next = UINT64_MAX;
        for (uint32_t i = 0; i < ATOMQ_UDP_REQUESTS_MAX; i++) {
                struct atomq_udp_req *r = &u->reqs[i];
                if (r->seq == 0)
                        continue;
                if (now >= r->give_up_ns) {
                        atomq_udp_req_end(u, r, 408);
                        continue;
                }
                if (now < r->end_ns && now >= r->next_tx_ns) {
                        (void)atomq_udp_tx(u, r->buf, r->len);
                        r->next_tx_ns = now + r->rto_ns;
                        r->rto_ns = r->rto_ns * 2 < ATOMQ_UDP_RTO_MAX_NS ? r->rto_ns * 2
                                                                         : ATOMQ_UDP_RTO_MAX_NS;
                }
                uint64_t due = now < r->end_ns && r->next_tx_ns < r->end_ns ? r->next_tx_ns
                                                                             : r->give_up_ns;
                next = due < next ? due : next;
        }
        if (u->session == 0)
                return next;
        uint64_t due = u->ping_wait ? u->ping_tx_ns + ATOMQ_UDP_PING_RETRY_NS
                                    : u->last_tx_ns + u->lease_ns / 3;
        if (now >= due) {
                /* seq 0: a PING takes no sequence number (no window slot). */
                (void)atomq_udp_tx_bare(u, u->session, ATOMQ_OP_PING, 0);
                u->ping_wait = true;
                u->ping_tx_ns = now;
                due = now + ATOMQ_UDP_PING_RETRY_NS;
        }
        return due < next ? due : next;
}

/* Runs the timers, waits for a datagram until until_ns at most (or the
 * next timer), and takes what arrived. 0, or -EINTR. */
static int atomq_udp_pump(struct atomq_udp *u, uint64_t until_ns)
{
        uint64_t now = shm_clock_ns();
        uint64_t next = atomq_udp_timers(u, now);
        if (next < until_ns)
                until_ns = next;
        uint64_t wait_ns = until_ns > now ? until_ns - now : 0;
        if (wait_ns > 1000 * ATOMQ_UDP_MS)
                wait_ns = 1000 * ATOMQ_UDP_MS;
        struct timespec ts = { .tv_sec = (time_t)(wait_ns / 1000000000u),
                               .tv_nsec = (long)(wait_ns % 1000000000u) };
        struct pollfd p = { .fd = u->fd, .events = POLLIN };
        int n = ppoll(&p, 1, &ts, NULL);
        if (n < 0)
                return errno == EINTR ? -EINTR : -errno;
        if (n > 0)
                atomq_udp_drain(u);
        return 0;
}

/* Has the server surely ended the session? It ends one that sent nothing
 * for a lease; we kept it alive only while a call was running. */
static bool atomq_udp_lapsed(const struct atomq_udp *u, uint64_t now)
{
        return u->session != 0 && now - u->last_tx_ns >= u->lease_ns;
}

/* Is the call in progress done: answered, and a fetch's messages all
 * here or waited for long enough? */
static bool atomq_udp_call_done(struct atomq_udp *u, uint64_t now)
{
        struct atomq_udp_call *c = &u->call;
        if (!c->answered)
                return false;
        if (c->collecting && u->batch_count < c->want && now < c->collect_end_ns)
                return false;
        c->collecting = false;
        return true;
}

/* Sends the datagram of len bytes in u->tx (one frame of op with seq)
 * until it is answered; the answer is in u->call.st. -ETIMEDOUT. */
static int atomq_udp_call(struct atomq_udp *u, uint8_t op, uint64_t seq, uint32_t len,
                          uint64_t timeout_ns)
{
        uint64_t now = shm_clock_ns();
        uint64_t deadline = timeout_ns == UINT64_MAX ? UINT64_MAX : now + timeout_ns;
        uint64_t rto = ATOMQ_UDP_RTO_MIN_NS, next_tx = now;
        int rc = 0;
        u->call = (struct atomq_udp_call){ .seq = seq, .op = op };
        u->batch_len = u->batch_count = 0;
        while (!atomq_udp_call_done(u, now)) {
                if (!u->call.answered && now >= next_tx) {
                        rc = atomq_udp_tx(u, u->tx, len);
                        if (rc != 0)
                                break;
                        next_tx = now + rto;
                        rto = rto * 2 < ATOMQ_UDP_RTO_MAX_NS ? rto * 2 : ATOMQ_UDP_RTO_MAX_NS;
                }
                if (now >= deadline) {
                        rc = u->call.answered ? 0 : -ETIMEDOUT;
                        break;
                }
                uint64_t until = u->call.answered ? u->call.collect_end_ns : next_tx;
                (void)atomq_udp_pump(u, until < deadline ? until : deadline);
                now = shm_clock_ns();
        }
        u->call.seq = 0; /* later copies of the answer are late */
        u->call.collecting = false;
        return rc;
}

/* A request of op: builds it from m in u->tx with a fresh seq, sends it
 * until answered. Returns the answer's status (0 or -errno) with its body
 * in *st, or -ETIMEDOUT, -ECONNRESET (the lease ran out), -EMSGSIZE. */
static int atomq_udp_ask(struct atomq_udp *u, uint8_t op, uint16_t flags, uint64_t handle,
                         const struct dp_msg_in *m, struct atomq_dgram_status *st)
{
        uint32_t len;
        uint64_t now = shm_clock_ns();
        if (atomq_udp_lapsed(u, now))
                return -ECONNRESET;
        uint64_t seq = ++u->next_seq;
        int rc = atomq_udp_build(u->tx, u->session, op, flags, handle, seq, m, &len);
        if (rc == 0) {
                uint64_t t = u->timeout_ns < 0 ? UINT64_MAX : (uint64_t)u->timeout_ns;
                rc = atomq_udp_call(u, op, seq, len, t);
        }
        if (rc != 0)
                return rc;
        if (st != NULL)
                *st = u->call.st;
        return u->call.st.status;
}

/* ---- connecting ------------------------------------------------------------- */

bool atomq_udp_is_url(const char *path)
{
        return path != NULL && strncmp(path, "udp://", 6) == 0;
}

/* "udp://A.B.C.D:PORT[?timeout_ms=N]" into sa and *timeout_ns. */
static int atomq_udp_parse(const char *url, struct sockaddr_in *sa, int64_t *timeout_ns)
{
        char host[INET_ADDRSTRLEN];
        const char *p = url + 6, *colon = strchr(p, ':');
        if (!atomq_udp_is_url(url) || colon == NULL || colon == p ||
            (size_t)(colon - p) >= sizeof(host))
                return -EINVAL;
        memcpy(host, p, (size_t)(colon - p));
        host[colon - p] = 0;
        *sa = (struct sockaddr_in){ .sin_family = AF_INET };
        if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
                return -EINVAL;
        char *end;
        errno = 0;
        /* Digits only: strtoul would take spaces, signs and "0x" too. */
        if (colon[1] < '0' || colon[1] > '9')
                return -EINVAL;
        unsigned long port = strtoul(colon + 1, &end, 10);
        if (errno != 0 || port == 0 || port > 65535)
                return -EINVAL;
        sa->sin_port = htons((uint16_t)port);
        if (*end == 0)
                return 0;
        if (strncmp(end, "?timeout_ms=", 12) != 0 || end[12] < '0' || end[12] > '9')
                return -EINVAL;
        const char *num = end + 12;
        unsigned long ms = strtoul(num, &end, 10);
        if (*end != 0 || errno != 0 || ms > 86400000ul)
                return -EINVAL;
        *timeout_ns = (int64_t)ms * (int64_t)ATOMQ_UDP_MS;
        return 0;
}

static void atomq_udp_free(struct atomq_udp *u)
{
        if (u->fd >= 0)
                close(u->fd);
        free(u->q_mem);
        free(u->rx);
        free(u->tx);
        free(u->batch);
        free(u->req_mem);
        free(u);
}

/* Everything a session needs, allocated once. */
static int atomq_udp_alloc(struct atomq_udp **out)
{
        struct atomq_udp *u = calloc(1, sizeof(*u));
        if (u == NULL)
                return -ENOMEM;
        u->fd = -1;
        *out = u;
        size_t qbytes = shm_vring_bytes(ATOMQ_UDP_QUEUE_BYTES);
        u->q_mem = aligned_alloc(SHM_CACHE_LINE, shm_align_up(qbytes, SHM_CACHE_LINE));
        u->rx = aligned_alloc(8, ATOMQ_UDP_RX_BYTES);
        u->tx = aligned_alloc(8, ATOMQ_UDP_TX_BYTES);
        u->batch = malloc(ATOMQ_UDP_BATCH_BYTES);
        u->req_mem = aligned_alloc(8, (size_t)ATOMQ_UDP_REQUESTS_MAX * ATOMQ_UDP_TX_BYTES);
        if (u->q_mem == NULL || u->rx == NULL || u->tx == NULL || u->batch == NULL ||
            u->req_mem == NULL)
                return -ENOMEM;
        if (shm_vring_init(&u->q_prod, u->q_mem, qbytes, ATOMQ_UDP_QUEUE_BYTES) != 0 ||
            shm_vring_attach(&u->q_cons, u->q_mem, qbytes) != 0)
                return -ENOMEM;
        for (uint32_t i = 0; i < ATOMQ_UDP_REQUESTS_MAX; i++)
                u->reqs[i].buf = u->req_mem + (size_t)i * ATOMQ_UDP_TX_BYTES;
        return 0;
}

/* The socket, connected to the server: the kernel then hands us only its
 * datagrams, and reports its port closed (ICMP) as ECONNREFUSED. */
static int atomq_udp_socket(struct atomq_udp *u, const struct sockaddr_in *sa)
{
        u->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (u->fd < 0)
                return -errno;
        /* Room for bursts of deliveries between two calls (the kernel caps
         * it at net.core.rmem_max: best effort). */
        int rcv = 1 << 20;
        (void)setsockopt(u->fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
        if (connect(u->fd, (const struct sockaddr *)sa, sizeof(*sa)) != 0)
                return -errno;
        return 0;
}

int atomq_udp_connect(const char *url, struct atomq_udp **out)
{
        struct sockaddr_in sa;
        struct atomq_udp *u = NULL;
        int64_t timeout_ns = (int64_t)ATOMQ_UDP_TIMEOUT_NS_DEFAULT;
        *out = NULL;
        int rc = atomq_udp_parse(url, &sa, &timeout_ns);
        if (rc == 0)
                rc = atomq_udp_alloc(&u);
        if (rc == 0)
                rc = atomq_udp_socket(u, &sa);
        if (rc == 0) {
                /* The open: a PING in session 0, answered by a PONG in the
                 * datagram that names the session (atomq_udp_foreign). */
                struct dp_msg_in m = { .storage = -1 };
                uint32_t len;
                u->timeout_ns = timeout_ns;
                u->next_seq = 1;
                rc = atomq_udp_build(u->tx, 0, ATOMQ_OP_PING, 0, 0, 1, &m, &len);
                if (rc == 0)
                        rc = atomq_udp_call(u, ATOMQ_OP_PING, 1, len, (uint64_t)timeout_ns);
                if (rc == 0 && u->session == 0)
                        rc = u->call.st.status < 0 ? u->call.st.status : -EPROTO;
                if (rc == 0 && u->lease_ns == 0)
                        rc = -EPROTO;
        }
        if (rc != 0) {
                if (u != NULL)
                        atomq_udp_free(u);
                return rc;
        }
        /* A refusal while the server was still starting is not news. */
        u->async_err = 0;
        *out = u;
        return 0;
}

void atomq_udp_close(struct atomq_udp *u)
{
        if (u == NULL)
                return;
        /* DESTROY of handle 0 and no name ends the session (its
         * subscriptions go with it); without an answer the lease does. */
        uint64_t now = shm_clock_ns();
        if (u->session != 0 && !atomq_udp_lapsed(u, now)) {
                struct dp_msg_in m = { .storage = -1 };
                uint32_t len;
                uint64_t seq = ++u->next_seq;
                uint64_t t = u->timeout_ns >= 0 && (uint64_t)u->timeout_ns < ATOMQ_UDP_CLOSE_NS
                                     ? (uint64_t)u->timeout_ns
                                     : ATOMQ_UDP_CLOSE_NS;
                if (atomq_udp_build(u->tx, u->session, ATOMQ_OP_DESTROY, 0, 0, seq, &m, &len) == 0)
                        (void)atomq_udp_call(u, ATOMQ_OP_DESTROY, seq, len, t);
        }
        atomq_udp_free(u);
}

/* ---- small calls ------------------------------------------------------------- */

void atomq_udp_set_timeout(struct atomq_udp *u, int64_t timeout_ns)
{
        u->timeout_ns = timeout_ns;
}

int atomq_udp_fd(const struct atomq_udp *u)
{
        return u->fd;
}

uint64_t atomq_udp_dropped(const struct atomq_udp *u)
{
        return u->dropped;
}

int atomq_udp_poll_arm(struct atomq_udp *u)
{
        struct shm_vring_rec rec;
        /* Takes what the socket holds and runs the timers, without waiting:
         * a delivery queued while a call waited leaves the socket quiet. */
        uint64_t now = shm_clock_ns();
        (void)atomq_udp_pump(u, now);
        if (u->dlv_held)
                return 1;
        int rc = shm_vring_peek(&u->q_cons, &rec);
        return rc < 0 ? -EPROTO : rc;
}

int atomq_udp_flush(struct atomq_udp *u)
{
        /* Publishes are at most once and never answered: nothing to wait
         * for. What flush can report is a refusal (ICMP) met since. */
        (void)atomq_udp_pump(u, shm_clock_ns());
        int rc = u->async_err;
        u->async_err = 0;
        return rc;
}

/* ---- entities and messages ------------------------------------------------------ */

/* The name of a call that names an entity by handle or name: 0 with *len
 * its length (0 when the handle is used), or -EINVAL. */
static int atomq_udp_target(uint64_t handle, const char *name, uint32_t *len)
{
        *len = 0;
        if (handle != 0)
                return 0;
        size_t n = name != NULL ? strlen(name) : 0;
        if (n == 0 || n > ATOMQ_FRAME_SUBJECT_MAX)
                return -EINVAL;
        *len = (uint32_t)n;
        return 0;
}

int atomq_udp_create(struct atomq_udp *u, enum atomq_mode mode, const char *name,
                     const struct atomq_create_opts *o, uint64_t *handle)
{
        struct atomq_dgram_create b = { .mode = (uint8_t)mode, .storage = -1 };
        struct atomq_dgram_status st;
        size_t len = name != NULL ? strlen(name) : 0;
        if ((unsigned)mode > ATOMQ_MODE_LOG || len > ATOMQ_FRAME_SUBJECT_MAX)
                return -EINVAL;
        if (o != NULL) {
                if (o->ttl_idle)
                        return -ENOTSUP; /* the CREATE body has no idle flag */
                b.ttl_ms = o->ttl_ms;
                b.max_msgs = o->max_msgs;
                b.max_bytes = o->max_bytes;
                if (o->storage_set)
                        b.storage = o->storage;
        }
        struct dp_msg_in m = { .subject = name, .subject_len = (uint32_t)len, .payload = &b,
                               .payload_len = sizeof(b), .storage = -1 };
        int rc = atomq_udp_ask(u, ATOMQ_OP_CREATE, 0, 0, &m, &st);
        if (rc == 0 && handle != NULL)
                *handle = st.handle;
        return rc;
}

int atomq_udp_destroy(struct atomq_udp *u, uint64_t handle, const char *name)
{
        uint32_t len;
        /* Handle 0 and no name would end the session: never sent. */
        int rc = atomq_udp_target(handle, name, &len);
        if (rc != 0)
                return rc;
        struct dp_msg_in m = { .subject = len != 0 ? name : NULL, .subject_len = len,
                               .storage = -1 };
        return atomq_udp_ask(u, ATOMQ_OP_DESTROY, 0, handle, &m, NULL);
}

/* The options of a message as a SEND or PUB frame carries them: ttl_ms,
 * the reply handle, headers. Per-message storage and channel ends have no
 * field: -ENOTSUP rather than a message stored otherwise than asked. */
static int atomq_udp_opts(struct dp_msg_in *m, const struct atomq_msg_opts *o, bool send)
{
        if (o == NULL)
                return 0;
        if (send && (o->storage != ATOMQ_STORAGE_DEFAULT || o->end != 0))
                return -ENOTSUP;
        m->ttl_ms = o->ttl_ms;
        m->reply = o->reply;
        if (o->headers != NULL && o->headers_len != 0) {
                m->headers = o->headers;
                m->headers_len = o->headers_len;
        }
        return 0;
}

int atomq_udp_send(struct atomq_udp *u, uint64_t handle, const char *name, const char *key,
                   const void *data, uint32_t len, const struct atomq_msg_opts *o,
                   uint64_t *seq)
{
        struct atomq_dgram_status st;
        struct dp_msg_in m = { .payload = data, .payload_len = len, .storage = -1 };
        uint32_t name_len;
        int rc = atomq_udp_target(handle, name, &name_len);
        if (rc != 0)
                return rc;
        size_t key_len = key != NULL ? strlen(key) : 0;
        if (key_len > ATOMQ_FRAME_SUBJECT_MAX)
                return -EINVAL;
        /* The subject section is the name when there is no handle, and
         * then also the message's key: another key cannot be carried. */
        if (name_len != 0 && key != NULL && strcmp(key, name) != 0)
                return -ENOTSUP;
        m.subject = name_len != 0 ? name : key;
        m.subject_len = name_len != 0 ? name_len : (uint32_t)key_len;
        rc = atomq_udp_opts(&m, o, true);
        if (rc == 0)
                rc = atomq_udp_ask(u, ATOMQ_OP_SEND, 0, handle, &m, &st);
        if (rc == 0 && seq != NULL)
                *seq = st.seq;
        return rc;
}

int atomq_udp_publish(struct atomq_udp *u, const char *subject, const void *data, uint32_t len,
                      const struct atomq_msg_opts *o)
{
        size_t slen = subject != NULL ? strlen(subject) : 0;
        struct dp_msg_in m = { .subject = subject, .subject_len = (uint32_t)slen,
                               .payload = data, .payload_len = len, .storage = -1 };
        uint32_t bytes;
        if (!atomq_subject_ok(subject, slen, false))
                return -EINVAL;
        if (atomq_udp_lapsed(u, shm_clock_ns()))
                return -ECONNRESET;
        (void)atomq_udp_opts(&m, o, false);
        /* seq 0 and no ACK_REQ: at most once, never answered. */
        int rc = atomq_udp_build(u->tx, u->session, ATOMQ_OP_PUB, 0, 0, 0, &m, &bytes);
        return rc != 0 ? rc : atomq_udp_tx(u, u->tx, bytes);
}

int atomq_udp_subscribe(struct atomq_udp *u, const char *pattern, const char *group,
                        uint32_t sid, uint64_t *sub)
{
        struct atomq_dgram_status st;
        size_t len = pattern != NULL ? strlen(pattern) : 0;
        size_t glen = group != NULL ? strlen(group) : 0;
        if (!atomq_subject_ok(pattern, len, true) || (group != NULL && glen == 0) ||
            glen > ATOMQ_FRAME_SUBJECT_MAX)
                return -EINVAL;
        /* The sid goes in handle; the queue group is the payload. */
        struct dp_msg_in m = { .subject = pattern, .subject_len = (uint32_t)len,
                               .payload = group, .payload_len = (uint32_t)glen, .storage = -1 };
        int rc = atomq_udp_ask(u, ATOMQ_OP_SUB, 0, sid, &m, &st);
        if (rc == 0 && sub != NULL)
                *sub = st.handle;
        return rc;
}

int atomq_udp_unsubscribe(struct atomq_udp *u, uint64_t sub)
{
        struct dp_msg_in m = { .storage = -1 };
        if (sub == 0)
                return -ENOENT;
        return atomq_udp_ask(u, ATOMQ_OP_UNSUB, 0, sub, &m, NULL);
}

/* ---- deliveries -------------------------------------------------------------------- */

/* Fills d from a queued record (the header, then a frame checked when it
 * arrived: checked again, it is cheap and the ring is ours). */
static int atomq_udp_fill(struct atomq_delivery *d, const uint8_t *p, uint32_t len)
{
        struct atomq_udp_dlv h;
        struct atomq_frame f;
        struct dp_msg_in m;
        if (len < sizeof(h) || atomq_frame_check(p + sizeof(h), len - sizeof(h), &f) != 0)
                return -EPROTO;
        memcpy(&h, p, sizeof(h));
        p += sizeof(h);
        dp_frame_read(&f, p, &m);
        *d = (struct atomq_delivery){
                .subject = m.subject, .subject_len = m.subject_len,
                .headers = p + ATOMQ_FRAME_HDR_BYTES + f.subject_len,
                .headers_len = m.headers_len, .data = m.payload, .len = m.payload_len,
                .sid = h.sid, .entity = h.entity, .seq = f.seq, .reply = m.reply,
                .status = h.status, .reply_subject = m.reply_subject,
                .reply_subject_len = m.reply_subject_len,
        };
        if (f.flags & ATOMQ_FRAME_F_REDELIVERY)
                d->flags = ATOMQ_DELIVERY_F_REDELIVERY;
        return 0;
}

/* Borrows the oldest queued delivery: 1, or 0 when there is none. */
static int atomq_udp_take(struct atomq_udp *u, struct atomq_delivery *d)
{
        struct shm_vring_rec rec;
        for (;;) {
                int rc = shm_vring_peek(&u->q_cons, &rec);
                if (rc <= 0)
                        return rc < 0 ? -EPROTO : 0;
                if (rec.type == ATOMQ_UDP_REC_DLV && atomq_udp_fill(d, rec.data, rec.len) == 0) {
                        u->dlv_held = true;
                        return 1;
                }
                shm_vring_release(&u->q_cons); /* cannot happen: we wrote it */
                u->dlv_count--;
        }
}

void atomq_udp_release(struct atomq_udp *u)
{
        if (!u->dlv_held)
                return;
        shm_vring_release(&u->q_cons);
        u->dlv_count--;
        u->dlv_held = false;
}

int atomq_udp_recv(struct atomq_udp *u, struct atomq_delivery *d, int64_t timeout_ns)
{
        atomq_udp_release(u);
        uint64_t now = shm_clock_ns();
        uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : now + (uint64_t)timeout_ns;
        for (;;) {
                int rc = atomq_udp_take(u, d);
                if (rc != 0)
                        return rc;
                /* What was queued before the lease ran out is still handed
                 * out; after that, the session is gone. */
                if (atomq_udp_lapsed(u, now))
                        return -ECONNRESET;
                rc = atomq_udp_pump(u, deadline);
                if (rc < 0)
                        return rc;
                rc = atomq_udp_take(u, d);
                if (rc != 0)
                        return rc;
                now = shm_clock_ns();
                if (now >= deadline)
                        return timeout_ns == 0 ? -EAGAIN : -ETIMEDOUT;
        }
}

/* ---- fetch, ack ---------------------------------------------------------------------- */

int atomq_udp_fetch(struct atomq_udp *u, uint64_t handle, const char *name, uint8_t end,
                    unsigned max, struct atomq_batch *b)
{
        struct atomq_dgram_status st;
        uint32_t len;
        *b = (struct atomq_batch){ .worker = -1 };
        if (end != 0)
                return -ENOTSUP; /* channel ends: no field in FETCH */
        if (max == 0 || max > DP_FETCH_MAX)
                return -EINVAL;
        int rc = atomq_udp_target(handle, name, &len);
        if (rc != 0)
                return rc;
        /* reply carries the most messages wanted. */
        struct dp_msg_in m = { .subject = len != 0 ? name : NULL, .subject_len = len,
                               .reply = max, .storage = -1 };
        rc = atomq_udp_ask(u, ATOMQ_OP_FETCH, 0, handle, &m, &st);
        if (rc != 0)
                return rc;
        /* What came of st.count: the rest was lost on the way and comes
         * again after the ack wait. */
        *b = (struct atomq_batch){ .count = u->batch_count, .bytes = u->batch_len,
                                   .rec = u->batch, .rec_len = u->batch_len, .worker = -1,
                                   .reserved = ATOMQ_UDP_BATCH_TAG };
        return (int)u->batch_count;
}

int atomq_udp_batch_next(struct atomq_batch *b, struct atomq_delivery *d)
{
        struct atomq_frame f;
        struct dp_msg_in m;
        if (b->rec == NULL || b->off >= b->rec_len)
                return 0;
        const uint8_t *p = (const uint8_t *)b->rec + b->off;
        uint32_t left = b->rec_len - b->off;
        if (left < ATOMQ_FRAME_HDR_BYTES)
                return -EPROTO;
        memcpy(&f, p, sizeof(f));
        uint64_t bytes = atomq_frame_bytes(f.subject_len, f.headers_len, f.payload_len);
        if (bytes > left || atomq_frame_check(p, (size_t)bytes, &f) != ATOMQ_FRAME_OK)
                return -EPROTO;
        dp_frame_read(&f, p, &m);
        *d = (struct atomq_delivery){
                .subject = m.subject, .subject_len = m.subject_len,
                .headers = p + ATOMQ_FRAME_HDR_BYTES + f.subject_len,
                .headers_len = m.headers_len, .data = m.payload, .len = m.payload_len,
                .entity = f.handle, .seq = f.seq, .reply = m.reply,
        };
        if (f.flags & ATOMQ_FRAME_F_REDELIVERY)
                d->flags = ATOMQ_DELIVERY_F_REDELIVERY;
        b->off += (uint32_t)bytes;
        return 1;
}

void atomq_udp_batch_release(struct atomq_udp *u, struct atomq_batch *b)
{
        (void)u; /* the batch buffer is reused by the next fetch only */
        if (b != NULL) {
                b->rec = NULL;
                b->worker = -1;
        }
}

int atomq_udp_ack(struct atomq_udp *u, uint64_t handle, uint64_t seq)
{
        /* reply carries the message's seq. */
        struct dp_msg_in m = { .reply = seq, .storage = -1 };
        if (handle == 0)
                return -EINVAL;
        return atomq_udp_ask(u, ATOMQ_OP_ACK, 0, handle, &m, NULL);
}

/* ---- request / reply -------------------------------------------------------------- */

int atomq_udp_request(struct atomq_udp *u, const char *subject, const void *data, uint32_t len,
                      uint32_t timeout_ms, uint32_t sid, uint64_t *inbox)
{
        size_t slen = subject != NULL ? strlen(subject) : 0;
        struct dp_msg_in m = { .subject = subject, .subject_len = (uint32_t)slen,
                               .payload = data, .payload_len = len, .ttl_ms = timeout_ms,
                               .storage = -1 };
        struct atomq_udp_req *r = NULL;
        uint64_t now = shm_clock_ns();
        if (!atomq_subject_ok(subject, slen, false) || timeout_ms == 0)
                return -EINVAL;
        if (atomq_udp_lapsed(u, now))
                return -ECONNRESET;
        for (uint32_t i = 0; i < ATOMQ_UDP_REQUESTS_MAX && r == NULL; i++)
                if (u->reqs[i].seq == 0)
                        r = &u->reqs[i];
        if (r == NULL)
                return -EBUSY;
        uint64_t seq = u->next_seq + 1;
        /* ttl_ms is the wait the server gives it (at most 600 s there). */
        int rc = atomq_udp_build(r->buf, u->session, ATOMQ_OP_REQUEST, 0, 0, seq, &m, &r->len);
        if (rc != 0)
                return rc;
        u->next_seq = seq;
        uint64_t wait_ns = (uint64_t)timeout_ms * ATOMQ_UDP_MS;
        *r = (struct atomq_udp_req){ .seq = seq, .sid = sid, .len = r->len, .buf = r->buf,
                                     .rto_ns = ATOMQ_UDP_RTO_MIN_NS, .next_tx_ns = now,
                                     .end_ns = now + wait_ns,
                                     .give_up_ns = now + wait_ns + ATOMQ_UDP_REQUEST_GRACE_NS };
        /* The first copy goes now; the timers send the others. */
        (void)atomq_udp_timers(u, now);
        if (inbox != NULL)
                *inbox = seq;
        /* How many responders it reached is not known here (the protocol
         * answers with the reply itself): 1 means sent. */
        return 1;
}

int atomq_udp_reply(struct atomq_udp *u, const struct atomq_delivery *d, const void *data,
                    uint32_t len)
{
        if (d->reply_subject != NULL && d->reply_subject_len != 0) {
                /* A publish on the reply subject, acknowledged (ACK_REQ and a
                 * seq) so it is retransmitted and executed once. */
                struct dp_msg_in m = { .subject = d->reply_subject,
                                       .subject_len = d->reply_subject_len, .payload = data,
                                       .payload_len = len, .storage = -1 };
                if (!atomq_subject_ok(d->reply_subject, d->reply_subject_len, false))
                        return -EINVAL;
                return atomq_udp_ask(u, ATOMQ_OP_PUB, ATOMQ_FRAME_F_ACK_REQ, 0, &m, NULL);
        }
        if (d->reply == 0)
                return -EINVAL;
        return atomq_udp_send(u, d->reply, NULL, NULL, data, len, NULL, NULL);
}
