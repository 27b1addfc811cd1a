/* atomq_udp_wire.c - the datagram layer of libatomq's UDP transport
 * (shm/atomq_udp_pvt.h): what goes out and what comes in, as atomq
 * datagrams (atomq/dgram.h; docs/protocol.md "atomq datagrams").
 *
 * Out: a frame is built into a datagram behind the session id, with its
 * CRC32C over the session id and the frame, and sent; loss is not an error
 * here (the session retransmits). In: every datagram is checked before
 * anything in it is believed -- lengths against the bytes received, the
 * CRC, the session id against ours -- and what does not check is dropped
 * and counted. A checked frame is then taken: a STATUS or PONG answers the
 * call in progress (atomq_udp_session.c) or ends a request; a REPLY goes
 * to its request; a MSG is a subscription's delivery (queued for
 * atomq_recv in a bounded ring, once, whatever copies arrive; what does
 * not fit is dropped and counted, atomq_dropped) or a message of the fetch
 * in progress (into its batch). Nothing here allocates or waits.
 */
#include "shm/atomq_udp_pvt.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "dataplane/dp_crc32c.h"
#include "dataplane/dp_dgram_wire.h"
#include "shm/shm_clock.h"

/* After a fetch's STATUS, how long its MSG frames (which may come in
 * further datagrams) are waited for; ones that do not come are lost to
 * this fetch and handed out again after the mailbox's ack wait. */
#define ATOMQ_UDP_FETCH_GRACE_NS (100 * ATOMQ_UDP_MS)
/* Deliveries the queue holds at most (its bytes: atomq_udp_session.c). */
#define ATOMQ_UDP_QUEUE_MAX 1024u
/* The most datagrams one pump reads before it looks at its timers. */
#define ATOMQ_UDP_DRAIN_MAX 64u

/* ---- frames ---------------------------------------------------------------- */

/* Builds a datagram of one frame at out (ATOMQ_UDP_TX_BYTES): session,
 * then m as a frame of op with handle, seq and flags, CRC filled. *len
 * gets its bytes. -EMSGSIZE: it does not fit a datagram atomqd takes. */
int atomq_udp_build(uint8_t *out, uint64_t session, uint8_t op, uint16_t flags,
                    uint64_t handle, uint64_t seq, const struct dp_msg_in *m, uint32_t *len)
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
        f.crc32c = dp_crc32c_dgram(session, p, (uint32_t)bytes);
        memcpy(p + offsetof(struct atomq_frame, crc32c), &f.crc32c, sizeof(f.crc32c));
        *len = (uint32_t)(bytes + ATOMQ_DGRAM_SESSION_BYTES);
        return 0;
}

/* Sends a datagram. Loss is the protocol's business (retransmission), so
 * a full socket buffer is not an error; an ICMP refusal of an earlier
 * datagram is kept for atomq_flush. */
int atomq_udp_tx(struct atomq_udp *u, const uint8_t *buf, uint32_t len)
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
int atomq_udp_tx_bare(struct atomq_udp *u, uint64_t session, uint8_t op, uint64_t seq)
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
void atomq_udp_req_end(struct atomq_udp *u, struct atomq_udp_req *r, uint16_t status)
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
        uint32_t bytes = 0;
        switch (dp_dgram_frame_verify(session, data, len, off, f, &bytes)) {
        case DP_DGRAM_FRAME_OK:
                return bytes;
        case DP_DGRAM_FRAME_BAD_CRC:
                u->bad_crc++;
                return 0;
        default:
                u->bad_frames++;
                return 0;
        }
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
void atomq_udp_drain(struct atomq_udp *u)
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
