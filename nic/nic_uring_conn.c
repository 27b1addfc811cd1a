/* nic_uring_conn.c - the connections of the io_uring backend
 * (nic_uring.h): the table of slots with its free list, a connection's
 * opening and end, and its output: a double buffer that nic_uring_send and
 * the reserve/commit pair fill and nic_uring_flush sends from (one send in
 * flight per connection), until nic_uring_close drains or drops it.
 *
 * A connection's lifetime:
 *
 *      FREE -> OPEN -(nic_uring_close)-> CLOSING -> ZOMBIE -> FREE
 *                 \__________(peer closed, socket error)___/
 *
 * on_close is called exactly once, on the way into ZOMBIE; from then on the
 * id is stale for the caller. The slot stays ZOMBIE until the kernel has
 * returned every request that may still touch it (the recv, the send and
 * its buffer), and only then is its fd closed, its generation bumped and
 * the slot reused. shutdown(SHUT_RDWR) is what ends those requests: the
 * multishot recv then reads 0 and a blocked send fails with EPIPE, both
 * without a cancel request to track.
 */
#include "nic/nic_uring_pvt.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shm/shm_base.h"

/* The first allocation of an output buffer, and the most a drained one
 * keeps: a burst to one client does not pin its peak for as long as the
 * connection lives, while ordinary traffic never reallocates. */
#define NIC_OUT_MIN_BYTES 4096u
#define NIC_OUT_KEEP_BYTES (64u * 1024u)
/* One send request moves at most this (cqe->res is an int). */
#define NIC_SEND_MAX_BYTES (1u << 30)

/* --- slots and lists ---------------------------------------------------------- */

/* The connection id names for the caller: open, or closing when `closing`. */
static struct nic_conn *nic_conn_find(const struct nic_uring *n, uint32_t id, bool closing)
{
        struct nic_conn *c = nic_conn_lookup(n, id);
        if (c == NULL || c->state == NIC_CONN_ZOMBIE)
                return NULL;
        if (c->state == NIC_CONN_CLOSING && !closing)
                return NULL;
        return c;
}

static size_t nic_conn_pending(const struct nic_conn *c)
{
        return c->out[c->fill].len + (c->out[c->fill ^ 1].len - c->sent);
}

static void nic_flush_queue(struct nic_uring *n, struct nic_conn *c)
{
        if (c->in_flush)
                return;
        c->in_flush = true;
        c->next = n->flush_head;
        n->flush_head = nic_conn_slot(n, c);
}

static void nic_close_queue(struct nic_uring *n, struct nic_conn *c)
{
        if (c->in_close)
                return;
        c->in_close = true;
        c->close_next = n->close_head;
        n->close_head = nic_conn_slot(n, c);
}

static void nic_free_push(struct nic_uring *n, uint32_t slot)
{
        n->conns[slot].next = NIC_NONE;
        if (n->free_tail == NIC_NONE)
                n->free_head = slot;
        else
                n->conns[n->free_tail].next = slot;
        n->free_tail = slot;
}

static uint32_t nic_free_pop(struct nic_uring *n)
{
        uint32_t slot = n->free_head;
        if (slot == NIC_NONE)
                return NIC_NONE;
        n->free_head = n->conns[slot].next;
        if (n->free_head == NIC_NONE)
                n->free_tail = NIC_NONE;
        return slot;
}

/* --- connections ----------------------------------------------------------- */

int nic_conns_setup(struct nic_uring *n)
{
        n->conns = calloc(n->cfg.max_conns, sizeof(*n->conns));
        if (n->conns == NULL)
                return -ENOMEM;
        n->free_head = n->free_tail = NIC_NONE;
        n->flush_head = n->close_head = NIC_NONE;
        for (uint32_t i = 0; i < n->cfg.max_conns; i++) {
                n->conns[i] = (struct nic_conn){ .fd = -1, .gen = 1, .close_next = NIC_NONE };
                nic_free_push(n, i);
        }
        return 0;
}

/* Recycles a ZOMBIE slot once nothing in the kernel or on a list names it. */
void nic_conn_try_free(struct nic_uring *n, struct nic_conn *c)
{
        if (c->state != NIC_CONN_ZOMBIE || c->recv_armed || c->send_busy || c->in_flush ||
            c->in_close)
                return;
        close(c->fd);
        nic_out_free(&c->out[0]);
        nic_out_free(&c->out[1]);
        uint16_t gen = (uint16_t)(c->gen % NIC_CONN_GEN_MASK + 1);
        *c = (struct nic_conn){ .fd = -1, .gen = gen, .state = NIC_CONN_FREE,
                                .close_next = NIC_NONE };
        nic_free_push(n, nic_conn_slot(n, c));
}

/* The connection is gone for the caller: on_close, then end its requests. */
void nic_conn_finish(struct nic_uring *n, struct nic_conn *c, enum nic_close_reason reason)
{
        if (c->state != NIC_CONN_OPEN && c->state != NIC_CONN_CLOSING)
                return;
        bool unsent = c->send_busy || nic_conn_pending(c) != 0;
        c->state = NIC_CONN_ZOMBIE;
        n->stats.closed++;
        n->ops.on_close(n->arg, nic_conn_id(n, c), reason);
        if (c->abort && unsent) {
                /* A cut-off slow consumer: reset, rather than leave its
                 * unsent megabytes to drain in an orphaned socket. */
                struct linger lg = { .l_onoff = 1, .l_linger = 0 };
                (void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        /* Ends the multishot recv (it reads 0) and any send (EPIPE). It fails
         * only on a socket already reset, whose requests have ended. */
        (void)shutdown(c->fd, SHUT_RDWR);
        nic_out_free(&c->out[c->fill]);
        nic_conn_try_free(n, c);
}

void nic_conn_open(struct nic_uring *n, int fd)
{
        uint32_t slot = nic_free_pop(n);
        if (slot == NIC_NONE) {
                n->stats.refused++;
                close(fd);
                return;
        }
        struct nic_conn *c = &n->conns[slot];
        c->fd = fd;
        c->state = NIC_CONN_OPEN;
        c->next = NIC_NONE;
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (nic_recv_arm(n, c) < 0) {
                /* Never announced: back to the free list without on_open. */
                c->state = NIC_CONN_ZOMBIE;
                nic_conn_try_free(n, c);
                n->stats.refused++;
                return;
        }
        n->stats.accepted++;
        n->ops.on_open(n->arg, nic_conn_id(n, c));
}

/* Finishes the connections nic_uring_close queued (callbacks may queue
 * more; each connection finishes once, so this ends). */
int nic_close_drain(struct nic_uring *n)
{
        int done = 0;
        while (n->close_head != NIC_NONE) {
                struct nic_conn *c = &n->conns[n->close_head];
                n->close_head = c->close_next;
                c->close_next = NIC_NONE;
                c->in_close = false;
                if (c->state == NIC_CONN_CLOSING) {
                        nic_conn_finish(n, c, NIC_CLOSE_LOCAL);
                        done++;
                } else {
                        nic_conn_try_free(n, c);
                }
        }
        return done;
}

/* --- completions ------------------------------------------------------------ */

void nic_on_send(struct nic_uring *n, uint32_t id, const struct nic_cqe *e)
{
        struct nic_conn *c = nic_conn_lookup(n, id);
        if (c == NULL)
                return;
        c->send_busy = false;
        if (c->state == NIC_CONN_ZOMBIE) {
                nic_conn_try_free(n, c);
                return;
        }
        /* 0 for a non-empty send cannot happen on TCP; it is an error here so
         * that it cannot turn into a loop of empty sends. */
        if (e->res <= 0) {
                n->stats.send_errors++;
                nic_conn_finish(n, c, NIC_CLOSE_ERROR);
                return;
        }
        struct nic_out *o = &c->out[c->fill ^ 1];
        n->stats.tx_bytes += (uint64_t)e->res;
        c->sent += (size_t)e->res;
        DP_ASSERT(c->sent <= o->len);
        if (c->sent < o->len) {
                nic_flush_queue(n, c);          /* partial: the rest goes next flush */
                return;
        }
        o->len = 0;
        c->sent = 0;
        if (o->cap > NIC_OUT_KEEP_BYTES)
                nic_out_free(o);
        if (c->out[c->fill].len != 0)
                nic_flush_queue(n, c);
        else if (c->state == NIC_CONN_CLOSING)
                nic_conn_finish(n, c, NIC_CLOSE_LOCAL);
}

/* --- output ---------------------------------------------------------------- */

/* Room for len more bytes in conn's fill buffer, within out_max_bytes. */
static int nic_out_room(struct nic_uring *n, struct nic_conn *c, size_t len)
{
        size_t pending = nic_conn_pending(c);
        DP_ASSERT(pending <= n->cfg.out_max_bytes);
        if (len > n->cfg.out_max_bytes - pending)
                return -ENOBUFS;
        struct nic_out *o = &c->out[c->fill];
        if (o->buf != NULL && o->cap - o->len >= len)
                return 0;
        size_t want = o->len + len;
        size_t cap = o->cap != 0 ? o->cap : NIC_OUT_MIN_BYTES;
        while (cap < want)
                cap *= 2;               /* want <= out_max_bytes <= 2^40 */
        if (cap > n->cfg.out_max_bytes)
                cap = n->cfg.out_max_bytes;     /* >= want: checked above */
        /* The fill buffer is never the one in the kernel: it may move. */
        uint8_t *buf = realloc(o->buf, cap);
        if (buf == NULL)
                return -ENOMEM;
        o->buf = buf;
        o->cap = cap;
        return 0;
}

int nic_uring_send(struct nic_uring *n, uint32_t conn, const void *data, size_t len)
{
        struct nic_conn *c = nic_conn_find(n, conn, false);
        if (c == NULL)
                return -ESTALE;
        if (len == 0)
                return 0;
        int rc = nic_out_room(n, c, len);
        if (rc < 0)
                return rc;
        struct nic_out *o = &c->out[c->fill];
        memcpy(o->buf + o->len, data, len);
        o->len += len;
        if (!c->send_busy)
                nic_flush_queue(n, c);
        return 0;
}

void *nic_uring_send_reserve(struct nic_uring *n, uint32_t conn, size_t len, int *err)
{
        struct nic_conn *c = nic_conn_find(n, conn, false);
        int rc = c == NULL ? -ESTALE : nic_out_room(n, c, len);
        if (err != NULL)
                *err = rc;
        if (rc < 0)
                return NULL;
        c->reserved = len;
        return c->out[c->fill].buf + c->out[c->fill].len;
}

void nic_uring_send_commit(struct nic_uring *n, uint32_t conn, size_t used)
{
        struct nic_conn *c = nic_conn_find(n, conn, false);
        if (c == NULL)
                return;
        /* More than was reserved is a caller's bug: it may have written past
         * the buffer already, so stop here rather than send garbage. */
        DP_VERIFY(used <= c->reserved);
        c->reserved = 0;
        c->out[c->fill].len += used;
        if (used != 0 && !c->send_busy)
                nic_flush_queue(n, c);
}

size_t nic_uring_pending(const struct nic_uring *n, uint32_t conn)
{
        const struct nic_conn *c = nic_conn_find(n, conn, true);
        return c == NULL ? 0 : nic_conn_pending(c);
}

/* Starts conn's next send: the rest of the buffer in the kernel's hands,
 * else the fill buffer (swapped in). 1 started, 0 nothing to send, -EBUSY
 * no submission entry. */
static int nic_send_start(struct nic_uring *n, struct nic_conn *c)
{
        struct nic_out *o = &c->out[c->fill ^ 1];
        if (c->sent == o->len) {
                if (c->out[c->fill].len == 0)
                        return 0;
                o->len = 0;
                c->sent = 0;
                c->fill ^= 1;
                o = &c->out[c->fill ^ 1];
        }
        struct io_uring_sqe *sqe = nic_sqe(n);
        if (sqe == NULL)
                return -EBUSY;
        size_t len = o->len - c->sent;
        if (len > NIC_SEND_MAX_BYTES)
                len = NIC_SEND_MAX_BYTES;
        io_uring_prep_send(sqe, c->fd, o->buf + c->sent, len, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, nic_ud(NIC_UD_SEND, nic_conn_id(n, c)));
        c->send_busy = true;
        return 1;
}

int nic_uring_flush(struct nic_uring *n)
{
        int rc = nic_ring_enable(n);
        if (rc < 0)
                return rc;
        int started = 0;
        while (n->flush_head != NIC_NONE) {
                struct nic_conn *c = &n->conns[n->flush_head];
                n->flush_head = c->next;
                c->next = NIC_NONE;
                c->in_flush = false;
                if (c->state == NIC_CONN_ZOMBIE) {
                        nic_conn_try_free(n, c);
                        continue;
                }
                /* A connection closed without flush sends nothing more: the
                 * next poll finishes it. */
                if (c->state == NIC_CONN_FREE || c->send_busy || c->abort)
                        continue;
                rc = nic_send_start(n, c);
                if (rc < 0) {
                        nic_flush_queue(n, c);  /* the SQ is stuck: next flush */
                        break;
                }
                started += rc;
        }
        if (n->udp.fd >= 0)
                started += nic_udp_flush(n);
        /* One submit for all of them (and for the re-arms poll queued). */
        rc = nic_submit(n);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
                return rc;
        return started;
}

void nic_uring_close(struct nic_uring *n, uint32_t conn, bool flush)
{
        struct nic_conn *c = nic_conn_find(n, conn, true);
        if (c == NULL)
                return;
        c->state = NIC_CONN_CLOSING;
        if (!flush)
                c->abort = true;
        /* With output left, the send completion that drains it finishes the
         * connection (nic_on_send); otherwise the next poll does. */
        if (c->abort || (!c->send_busy && nic_conn_pending(c) == 0))
                nic_close_queue(n, c);
}
