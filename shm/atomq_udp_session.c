/* atomq_udp_session.c - the session of libatomq's UDP transport
 * (shm/atomq_udp_pvt.h): one connection is one session with atomqd's
 * --udp port, opened, kept, waited on and closed here.
 *
 *      struct atomq *a;
 *      int rc = atomq_connect("udp://10.0.0.5:4223", &a);
 *
 * Every call that needs an answer sends a frame with a fresh seq and sends
 * the same bytes again (same seq, so the server executes it once) every
 * RTO, 20 ms doubling to 500 ms, until the answer with that seq arrives or
 * the call timeout passes (-ETIMEDOUT). Requests (atomq_request) are
 * answered through atomq_recv, so they are kept in a small table and
 * retransmitted by whichever call waits next (atomq_udp_timers). While a
 * call waits, what arrives is taken by atomq_udp_wire.c; deliveries wait
 * in a bounded ring (shm_vring over heap memory: the same borrow/release
 * as the shared-memory agent) that atomq_recv reads here. The lease is
 * kept by a PING when nothing was sent for a third of it.
 *
 * Memory is allocated at connect and bounded (about 4.6 MiB of address
 * space, most of it the fetch batch, touched only as used); nothing is
 * allocated per message.
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

#include "shm/shm_clock.h"

#define ATOMQ_UDP_TIMEOUT_NS_DEFAULT (10000 * ATOMQ_UDP_MS)
/* A keep-alive PING not answered within this is sent again. */
#define ATOMQ_UDP_PING_RETRY_NS (200 * ATOMQ_UDP_MS)
/* How long atomq_close waits for the session's end to be answered. */
#define ATOMQ_UDP_CLOSE_NS (1000 * ATOMQ_UDP_MS)
/* The delivery queue's bytes (a power of two; a record may take half);
 * its records are bounded in atomq_udp_wire.c (ATOMQ_UDP_QUEUE_MAX). */
#define ATOMQ_UDP_QUEUE_BYTES (256u * 1024)

/* ---- timers and waiting ------------------------------------------------------ */

/* Retransmits and expires requests, keeps the lease; returns when the next
 * of these is due. */
uint64_t atomq_udp_timers(struct atomq_udp *u, uint64_t now)
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
int atomq_udp_ask(struct atomq_udp *u, uint8_t op, uint16_t flags, uint64_t handle,
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
