/* nic_uring.c - the io_uring TCP backend (nic_uring.h): a listener with a
 * multishot accept, a multishot recv per connection into one provided
 * buffer ring, one send in flight per connection from a double-buffered
 * output, and the worker's idle sleep as an io_uring futex waitv.
 *
 * Every request's user_data names what it was for (kind) and for whom (the
 * connection id, generation included), so the poll loop can tell a late
 * completion of an earlier incarnation of a slot from a current one.
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
#include "nic/nic_uring.h"

#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shm/shm_base.h"
#include "shm/shm_clock.h"
#include "shm/shm_log.h"

/* The kernel's IORING_OP_FUTEX_WAITV (Linux 6.7; include/uapi/linux/
 * io_uring.h). Debian 12's headers stop at IORING_OP_SENDMSG_ZC, so the
 * number is spelled out and anchored to one the headers do have. An older
 * kernel fails it with -EINVAL in its completion. */
#define NIC_OP_FUTEX_WAITV 53u
_Static_assert(IORING_OP_SENDMSG_ZC == 48, "io_uring opcode numbering");

/* struct futex_waitv (linux/futex.h, 5.16), spelled out for old headers. */
struct nic_futex_waitv {
        uint64_t val;
        uint64_t uaddr;
        uint32_t flags;
        uint32_t reserved;
};
_Static_assert(sizeof(struct nic_futex_waitv) == 24, "struct futex_waitv is 24 bytes");
/* 32-bit words, and no FUTEX2_PRIVATE: shm_wake words are process-shared
 * (shm_wake_notify_slow wakes without FUTEX_PRIVATE_FLAG). */
#define NIC_FUTEX2_SIZE_U32 0x02u
/* FUTEX_WAITV_MAX in the kernel. */
#define NIC_WAIT_WORDS_MAX 128u
/* Without io_uring futex waits, a sleep is cut to this so a notify on a
 * word is seen within it. */
#define NIC_WAIT_FALLBACK_NS 1000000ll

/* What a request was for: bits 32..39 of its user_data, the connection id
 * (or the futex arming's sequence) in the low 32 bits. */
enum nic_ud_kind {
        NIC_UD_ACCEPT = 1,
        NIC_UD_RECV = 2,
        NIC_UD_SEND = 3,
        NIC_UD_FUTEX = 4,
        NIC_UD_CANCEL = 5,
};

#define NIC_BGID 0               /* the one provided buffer group */
#define NIC_LISTEN_BACKLOG 1024
#define NIC_POLL_BATCH 256u      /* completions copied out of the CQ at once */
#define NIC_POLL_ROUNDS_MAX 16u  /* batches per poll: bounds one call's work */
#define NIC_NONE UINT32_MAX      /* end of an intrusive slot list */
/* The first allocation of an output buffer, and the most a drained one
 * keeps: a burst to one client does not pin its peak for as long as the
 * connection lives, while ordinary traffic never reallocates. */
#define NIC_OUT_MIN_BYTES 4096u
#define NIC_OUT_KEEP_BYTES (64u * 1024u)
/* One send request moves at most this (cqe->res is an int). */
#define NIC_SEND_MAX_BYTES (1u << 30)

enum nic_conn_state {
        NIC_CONN_FREE = 0,
        NIC_CONN_OPEN,
        NIC_CONN_CLOSING,        /* nic_uring_close: no more input or output taken */
        NIC_CONN_ZOMBIE,         /* on_close called; requests still in the kernel */
};

/* A byte buffer of output. */
struct nic_out {
        uint8_t *buf;
        size_t len;
        size_t cap;
};

struct nic_conn {
        /* out[fill] takes nic_uring_send; out[fill ^ 1] is the one being
         * sent (its first `sent` bytes are gone). The kernel reads the
         * latter until the send completes, so it is never moved or freed
         * while send_busy. */
        struct nic_out out[2];
        size_t sent;
        size_t reserved;         /* bytes handed out by nic_uring_send_reserve */
        int fd;
        uint16_t gen;            /* 1..NIC_CONN_GEN_MASK: id 0 is never valid */
        uint8_t state;
        uint8_t fill;
        bool recv_armed;         /* the multishot recv may still complete */
        bool send_busy;          /* a send is in the kernel */
        bool abort;              /* closed without flush: drop unsent output */
        bool in_flush;           /* on the flush list */
        bool in_close;           /* on the close list */
        uint32_t next;           /* free list (FREE) or flush list */
        uint32_t close_next;     /* close list */
};

/* A completion copied out of the CQ, so the CQ can be advanced before the
 * callbacks run (they may queue requests of their own). */
struct nic_cqe {
        uint64_t user_data;
        int32_t res;
        uint32_t flags;
};

struct nic_uring {
        struct io_uring ring;
        struct nic_uring_config cfg;
        struct nic_uring_ops ops;
        void *arg;
        struct nic_conn *conns;          /* cfg.max_conns slots */
        uint32_t free_head, free_tail;   /* FIFO: a closed slot is reused last */
        uint32_t flush_head;             /* connections with a send to start */
        uint32_t close_head;             /* connections nic_uring_close queued */
        int listen_fd;
        uint16_t port;
        bool ring_ready;                 /* io_uring_queue_init succeeded */
        bool ring_disabled;              /* IORING_SETUP_R_DISABLED, not enabled yet */
        bool accept_armed;
        bool bufs_registered;
        bool futex_unsupported;
        /* The provided buffer ring (bgid 0) and its buffers. */
        struct io_uring_buf_ring *br;
        size_t br_bytes;
        uint8_t *bufs;
        size_t bufs_bytes;
        int br_mask;
        int br_returned;                 /* added since the last advance */
        /* The armed futex waitv: its user_data (0: none), words and values. */
        uint64_t futex_ud;
        uint32_t futex_seq;
        uint32_t futex_n;
        struct nic_futex_waitv waitv[NIC_WAIT_WORDS_MAX];
        struct nic_cqe batch[NIC_POLL_BATCH];
        struct nic_uring_stats stats;
};

/* --- ids, slots and lists ----------------------------------------------- */

static uint64_t nic_ud(enum nic_ud_kind kind, uint32_t id)
{
        return (uint64_t)kind << 32 | id;
}

static uint32_t nic_conn_slot(const struct nic_uring *n, const struct nic_conn *c)
{
        return (uint32_t)(c - n->conns);
}

static uint32_t nic_conn_id(const struct nic_uring *n, const struct nic_conn *c)
{
        return nic_conn_slot(n, c) | (uint32_t)c->gen << NIC_CONN_SLOT_BITS;
}

/* The slot incarnation named by id (any state but FREE), or NULL. */
static struct nic_conn *nic_conn_lookup(const struct nic_uring *n, uint32_t id)
{
        uint32_t slot = id & (NIC_CONNS_MAX - 1);
        uint32_t gen = id >> NIC_CONN_SLOT_BITS;
        if (slot >= n->cfg.max_conns || gen == 0 || gen > NIC_CONN_GEN_MASK)
                return NULL;
        struct nic_conn *c = &n->conns[slot];
        if (c->gen != gen || c->state == NIC_CONN_FREE)
                return NULL;
        return c;
}

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

static void nic_out_free(struct nic_out *o)
{
        free(o->buf);
        *o = (struct nic_out){ 0 };
}

/* --- submission ---------------------------------------------------------- */

/* With IORING_SETUP_R_DISABLED the ring binds to its single issuer when it
 * is enabled, not when it is created: so nic_uring_init may run on another
 * thread than the worker's, and the first poll, flush or wait (the calls
 * that enter the kernel) makes the caller the issuer. */
static int nic_ring_enable(struct nic_uring *n)
{
        if (shm_likely(!n->ring_disabled))
                return 0;
        /* liburing 2.3 declares io_uring_enable_rings but does not export it. */
        int rc = io_uring_register(n->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
        if (rc < 0)
                return rc;
        n->ring_disabled = false;
        return 0;
}

static int nic_submit(struct nic_uring *n)
{
        if (io_uring_sq_ready(&n->ring) == 0)
                return 0;
        n->stats.submits++;
        return io_uring_submit(&n->ring);
}

/* A submission entry; a full SQ is handed to the kernel first. NULL only
 * when the kernel takes nothing (the caller retries later or gives up). */
static struct io_uring_sqe *nic_sqe(struct nic_uring *n)
{
        struct io_uring_sqe *sqe = io_uring_get_sqe(&n->ring);
        if (sqe != NULL)
                return sqe;
        (void)nic_submit(n);
        return io_uring_get_sqe(&n->ring);
}

static int nic_recv_arm(struct nic_uring *n, struct nic_conn *c)
{
        struct io_uring_sqe *sqe = nic_sqe(n);
        if (sqe == NULL)
                return -EBUSY;
        io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = NIC_BGID;
        io_uring_sqe_set_data64(sqe, nic_ud(NIC_UD_RECV, nic_conn_id(n, c)));
        c->recv_armed = true;
        return 0;
}

/* Arms the multishot accept; when the SQ is stuck, the next poll retries. */
static void nic_accept_arm(struct nic_uring *n)
{
        struct io_uring_sqe *sqe = nic_sqe(n);
        if (sqe == NULL)
                return;
        io_uring_prep_multishot_accept(sqe, n->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        io_uring_sqe_set_data64(sqe, nic_ud(NIC_UD_ACCEPT, 0));
        n->accept_armed = true;
}

/* Hands a provided buffer back; nic_bufs_publish makes the batch visible. */
static void nic_buf_return(struct nic_uring *n, uint16_t bid)
{
        if (bid >= n->cfg.buf_count)
                return;
        io_uring_buf_ring_add(n->br, n->bufs + (size_t)bid * n->cfg.buf_bytes, n->cfg.buf_bytes,
                              bid, n->br_mask, n->br_returned++);
}

static void nic_bufs_publish(struct nic_uring *n)
{
        if (n->br_returned == 0)
                return;
        /* A release store of the tail: pairs with the kernel's acquire load
         * when it picks a buffer (io_ring_buffer_select). */
        io_uring_buf_ring_advance(n->br, n->br_returned);
        n->br_returned = 0;
}

/* --- connections ----------------------------------------------------------- */

/* Recycles a ZOMBIE slot once nothing in the kernel or on a list names it. */
static void nic_conn_try_free(struct nic_uring *n, struct nic_conn *c)
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
static void nic_conn_finish(struct nic_uring *n, struct nic_conn *c, enum nic_close_reason reason)
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

static void nic_conn_open(struct nic_uring *n, int fd)
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
static int nic_close_drain(struct nic_uring *n)
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

static void nic_on_accept(struct nic_uring *n, const struct nic_cqe *e)
{
        if (!(e->flags & IORING_CQE_F_MORE))
                n->accept_armed = false;
        /* Errors (EMFILE, ENFILE, ECONNABORTED) end the multishot accept;
         * the re-arm below retries once per poll. */
        if (e->res >= 0)
                nic_conn_open(n, e->res);
        if (!n->accept_armed)
                nic_accept_arm(n);
}

static void nic_on_recv(struct nic_uring *n, uint32_t id, const struct nic_cqe *e)
{
        struct nic_conn *c = nic_conn_lookup(n, id);
        if (e->res > 0 && (e->flags & IORING_CQE_F_BUFFER)) {
                uint16_t bid = (uint16_t)(e->flags >> IORING_CQE_BUFFER_SHIFT);
                n->stats.rx_bytes += (uint64_t)e->res;
                /* Input after nic_uring_close is dropped: the caller is done. */
                if (c != NULL && c->state == NIC_CONN_OPEN && bid < n->cfg.buf_count)
                        n->ops.on_data(n->arg, id,
                                       n->bufs + (size_t)bid * n->cfg.buf_bytes, (size_t)e->res);
                nic_buf_return(n, bid);
        }
        if (e->res == -ENOBUFS)
                n->stats.recv_nobufs++;
        /* A callback never frees a slot (only poll's own paths do), so c
         * still names the same incarnation here. */
        if (c == NULL || (e->flags & IORING_CQE_F_MORE))
                return;
        /* The multishot recv ended. It is re-armed after -ENOBUFS (this
         * poll hands the buffers back before the next submit) and after data
         * (the kernel ends a multishot for reasons of its own, a full CQ);
         * an SQ that takes no re-arm ends the connection. */
        c->recv_armed = false;
        if (c->state == NIC_CONN_ZOMBIE)
                nic_conn_try_free(n, c);
        else if (e->res == 0)
                nic_conn_finish(n, c, NIC_CLOSE_PEER);
        else if ((e->res < 0 && e->res != -ENOBUFS) || nic_recv_arm(n, c) < 0)
                nic_conn_finish(n, c, NIC_CLOSE_ERROR);
}

static void nic_on_send(struct nic_uring *n, uint32_t id, const struct nic_cqe *e)
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

static void nic_on_futex(struct nic_uring *n, const struct nic_cqe *e)
{
        if (e->user_data != n->futex_ud)
                return;                         /* an arming since cancelled */
        n->futex_ud = 0;
        if (e->res != -EINVAL && e->res != -EOPNOTSUPP)
                return;
        /* Kernels before 6.7 do not know the opcode (-EINVAL); kernels
         * without CONFIG_FUTEX refuse it (-EOPNOTSUPP). */
        if (!n->futex_unsupported)
                shm_log(SHM_LOG_WARN, "nic_uring: io_uring futex waits unsupported; "
                                      "idle sleeps are bounded to 1 ms");
        n->futex_unsupported = true;
}

static void nic_cqe_dispatch(struct nic_uring *n, const struct nic_cqe *e)
{
        uint32_t id = (uint32_t)e->user_data;
        switch ((enum nic_ud_kind)(e->user_data >> 32)) {
        case NIC_UD_ACCEPT:
                nic_on_accept(n, e);
                break;
        case NIC_UD_RECV:
                nic_on_recv(n, id, e);
                break;
        case NIC_UD_SEND:
                nic_on_send(n, id, e);
                break;
        case NIC_UD_FUTEX:
                nic_on_futex(n, e);
                break;
        case NIC_UD_CANCEL:
                break;
        default:
                /* Not ours; a buffer it carries is still ours to return. */
                if (e->flags & IORING_CQE_F_BUFFER)
                        nic_buf_return(n, (uint16_t)(e->flags >> IORING_CQE_BUFFER_SHIFT));
                break;
        }
}

/* Copies up to a batch of completions out and advances the CQ: the kernel
 * may reuse those entries while the callbacks run. */
static unsigned nic_cqe_take(struct nic_uring *n)
{
        struct io_uring_cqe *cqe;
        unsigned head, got = 0;
        io_uring_for_each_cqe(&n->ring, head, cqe) {
                n->batch[got++] = (struct nic_cqe){ .user_data = cqe->user_data,
                                                    .res = cqe->res, .flags = cqe->flags };
                if (got == NIC_POLL_BATCH)
                        break;
        }
        io_uring_cq_advance(&n->ring, got);
        return got;
}

/* Whether the kernel holds completions the CQ does not show yet: deferred
 * task work (IORING_SQ_TASKRUN, with IORING_SETUP_TASKRUN_FLAG) or an
 * overflowed CQ. One plain load of the shared SQ flags. */
static bool nic_ring_has_deferred(const struct nic_uring *n)
{
        return IO_URING_READ_ONCE(*n->ring.sq.kflags) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW);
}

/* With IORING_SETUP_DEFER_TASKRUN, a socket's readiness becomes task work
 * that only runs when this thread enters the kernel: the CQ stays empty
 * until then. Entering on every poll would cost a syscall per idle pass
 * (io_uring_get_events: 161 ns here, against 1.3 ns for reading the CQ tail
 * and the SQ flags; a whole idle nic_uring_poll is 9 ns; kernel 6.18, this
 * VM). Entering only every so often would add that period to the latency
 * of every message. IORING_SETUP_TASKRUN_FLAG has the kernel raise
 * IORING_SQ_TASKRUN when it queues such work, and raise it again when a run
 * leaves some for later (it runs at most 20 items per entry), so poll
 * enters exactly when there is something to run. Work queued after the
 * check is not lost: the next wait enters the kernel, and so does a flush
 * (liburing's submit adds GETEVENTS while the flag is up). Measured on a
 * 1-byte loopback ping-pong with a busy-polling server: 18.1 us round trip
 * with DEFER_TASKRUN, 21.4 us with plain task work. */
int nic_uring_poll(struct nic_uring *n)
{
        int rc = nic_ring_enable(n);
        if (rc < 0)
                return rc;
        int handled = nic_close_drain(n);
        bool entered = false;
        for (unsigned round = 0; round < NIC_POLL_ROUNDS_MAX; round++) {
                unsigned got = nic_cqe_take(n);
                if (got == 0) {
                        if (entered || !nic_ring_has_deferred(n))
                                break;
                        entered = true;
                        rc = io_uring_get_events(&n->ring);
                        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
                                return rc;
                        continue;
                }
                for (unsigned i = 0; i < got; i++)
                        nic_cqe_dispatch(n, &n->batch[i]);
                nic_bufs_publish(n);
                handled += (int)got;
        }
        handled += nic_close_drain(n);
        if (!n->accept_armed)
                nic_accept_arm(n);
        return handled;
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

/* --- the idle sleep ---------------------------------------------------------- */

/* Cancels the armed futex waitv; its completion (-ECANCELED) is ignored. */
static void nic_futex_disarm(struct nic_uring *n)
{
        if (n->futex_ud == 0)
                return;
        struct io_uring_sqe *sqe = nic_sqe(n);
        if (sqe != NULL) {
                io_uring_prep_cancel64(sqe, n->futex_ud, 0);
                io_uring_sqe_set_data64(sqe, nic_ud(NIC_UD_CANCEL, 0));
        }
        /* Without an entry the arming stays until a wake; its completion is
         * still told apart by user_data. */
        n->futex_ud = 0;
}

/* Arms a futex waitv on words[i]->seq == seqs[i], unless the one armed
 * already waits on exactly those words and values. Keeping it is exact:
 * the kernel compared each word with its value when it armed, and any
 * later change of a word comes from shm_wake_notify_slow, which bumps seq
 * and then wakes every waiter on it, ours included; so either nothing has
 * moved since (the armed wait is the one we would arm now), or a completion
 * is on its way and ends the coming sleep. A word that moved before the
 * caller read seqs[i] gives a different value, and a fresh arming. */
static int nic_futex_arm(struct nic_uring *n, struct shm_wake *const *words,
                         const uint32_t *seqs, uint32_t nwords)
{
        bool same = n->futex_ud != 0 && n->futex_n == nwords;
        for (uint32_t i = 0; same && i < nwords; i++)
                same = n->waitv[i].uaddr == (uintptr_t)&words[i]->seq &&
                       n->waitv[i].val == seqs[i];
        if (same)
                return 0;
        nic_futex_disarm(n);
        for (uint32_t i = 0; i < nwords; i++)
                n->waitv[i] = (struct nic_futex_waitv){ .val = seqs[i],
                                                        .uaddr = (uintptr_t)&words[i]->seq,
                                                        .flags = NIC_FUTEX2_SIZE_U32 };
        struct io_uring_sqe *sqe = nic_sqe(n);
        if (sqe == NULL)
                return -EBUSY;
        /* fd 0, off 0, op flags 0 as io_futexv_prep requires; the kernel
         * copies the array when it takes the entry (at the submit below). */
        io_uring_prep_rw((int)NIC_OP_FUTEX_WAITV, sqe, 0, n->waitv, nwords, 0);
        n->futex_ud = nic_ud(NIC_UD_FUTEX, ++n->futex_seq);
        n->futex_n = nwords;
        io_uring_sqe_set_data64(sqe, n->futex_ud);
        return 0;
}

/* Takes the completions at the head of the CQ that mean nothing to the
 * caller (results of cancels, futex armings since replaced); true when one
 * that does is left. Without this, changing the watched words would end
 * the very sleep that changed them. */
static bool nic_cq_has_news(struct nic_uring *n)
{
        struct io_uring_cqe *cqe;
        unsigned head, skip = 0;
        bool news = false;
        io_uring_for_each_cqe(&n->ring, head, cqe) {
                uint64_t kind = cqe->user_data >> 32;
                if (kind != NIC_UD_CANCEL &&
                    (kind != NIC_UD_FUTEX || cqe->user_data == n->futex_ud)) {
                        news = true;
                        break;
                }
                skip++;
        }
        io_uring_cq_advance(&n->ring, skip);
        return news;
}

/* Sleeps on the ring until news or deadline_ns (UINT64_MAX: none). Each
 * round that does not time out took a completion, and the ones skipped
 * are at most the two of one re-arming: the bound is for spurious wakes. */
static int nic_ring_sleep(struct nic_uring *n, uint64_t deadline_ns)
{
        for (int round = 0; round < 8; round++) {
                if (nic_cq_has_news(n))
                        return 0;
                struct __kernel_timespec ts = { 0 };
                if (deadline_ns != UINT64_MAX) {
                        uint64_t now_ns = shm_clock_ns();
                        uint64_t left_ns = deadline_ns > now_ns ? deadline_ns - now_ns : 0;
                        ts.tv_sec = (long long)(left_ns / 1000000000u);
                        ts.tv_nsec = (long long)(left_ns % 1000000000u);
                }
                struct io_uring_cqe *cqe = NULL;
                if (io_uring_sq_ready(&n->ring) != 0)
                        n->stats.submits++;
                int rc = io_uring_submit_and_wait_timeout(
                        &n->ring, &cqe, 1, deadline_ns == UINT64_MAX ? NULL : &ts, NULL);
                if (rc == -ETIME)
                        return nic_cq_has_news(n) ? 0 : -ETIMEDOUT;
                if (rc < 0)
                        return rc;
        }
        return 0;
}

int nic_uring_wait(struct nic_uring *n, struct shm_wake *const *words, const uint32_t *seqs,
                   uint32_t nwords, int64_t timeout_ns)
{
        if (nwords > NIC_WAIT_WORDS_MAX || (nwords != 0 && (words == NULL || seqs == NULL)))
                return -EINVAL;
        int rc = nic_ring_enable(n);
        if (rc < 0)
                return rc;
        if (nic_cq_has_news(n))
                return 0;
        int64_t sleep_ns = timeout_ns;
        bool bounded = false;
        if (nwords == 0)
                nic_futex_disarm(n);    /* it would wake us for words no longer watched */
        else if (n->futex_unsupported || nic_futex_arm(n, words, seqs, nwords) < 0)
                bounded = true;
        if (bounded && (sleep_ns < 0 || sleep_ns > NIC_WAIT_FALLBACK_NS))
                sleep_ns = NIC_WAIT_FALLBACK_NS;
        rc = nic_ring_sleep(n, sleep_ns < 0 ? UINT64_MAX : shm_clock_ns() + (uint64_t)sleep_ns);
        /* A sleep cut short for want of futex waits is not the caller's
         * timeout: 0, and the caller re-checks its words. */
        if (rc == -ETIMEDOUT && sleep_ns != timeout_ns)
                return 0;
        return rc;
}

/* --- set-up ---------------------------------------------------------------- */

void nic_uring_config_default(struct nic_uring_config *cfg)
{
        *cfg = (struct nic_uring_config){
                .host = "127.0.0.1",
                .port = 4222,
                .reuseport = true,
                .max_conns = 65536,
                .ring_entries = 4096,
                .buf_bytes = 16 * 1024,
                .buf_count = 2048,
                .out_max_bytes = 64u * 1024 * 1024,
        };
}

size_t nic_uring_size(void)
{
        return sizeof(struct nic_uring);
}

uint16_t nic_uring_port(const struct nic_uring *n)
{
        return n->port;
}

const struct nic_uring_stats *nic_uring_stats(const struct nic_uring *n)
{
        return &n->stats;
}

static int nic_config_check(const struct nic_uring_config *cfg, const struct nic_uring_ops *ops)
{
        if (ops == NULL || ops->on_open == NULL || ops->on_data == NULL || ops->on_close == NULL)
                return -EINVAL;
        if (memchr(cfg->host, '\0', sizeof(cfg->host)) == NULL)
                return -EINVAL;
        if (cfg->max_conns == 0 || cfg->max_conns > NIC_CONNS_MAX)
                return -EINVAL;
        /* 32768: the kernel's most SQ entries and provided-ring entries. */
        if (!shm_is_pow2_u64(cfg->ring_entries) || cfg->ring_entries > 32768)
                return -EINVAL;
        if (!shm_is_pow2_u64(cfg->buf_count) || cfg->buf_count > 32768)
                return -EINVAL;
        if (cfg->buf_bytes == 0 || cfg->buf_bytes > (1u << 24))
                return -EINVAL;
        if (cfg->out_max_bytes == 0 || (uint64_t)cfg->out_max_bytes > (1ull << 40))
                return -EINVAL;
        return 0;
}

/* The CQ holds what can be outstanding at once: a completion per provided
 * buffer in use, plus a send and a recv end per connection. Beyond it the
 * kernel keeps completions on its overflow list (IORING_FEAT_NODROP), which
 * poll drains (IORING_SQ_CQ_OVERFLOW). */
static int nic_ring_setup(struct nic_uring *n)
{
        uint64_t cq = (uint64_t)n->cfg.buf_count + 2ull * n->cfg.max_conns;
        if (cq < 2ull * n->cfg.ring_entries)
                cq = 2ull * n->cfg.ring_entries;
        struct io_uring_params p = {
                .flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                         IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_R_DISABLED |
                         IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP,
                .cq_entries = cq > 65536 ? 65536 : (uint32_t)cq,
        };
        int rc = io_uring_queue_init_params(n->cfg.ring_entries, &n->ring, &p);
        if (rc == -EINVAL) {
                /* Before 6.1: completions run as ordinary task work. */
                p = (struct io_uring_params){ .flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP,
                                              .cq_entries = p.cq_entries };
                rc = io_uring_queue_init_params(n->cfg.ring_entries, &n->ring, &p);
        }
        if (rc < 0)
                return rc;
        n->ring_ready = true;
        n->ring_disabled = (p.flags & IORING_SETUP_R_DISABLED) != 0;
        return 0;
}

static int nic_bufs_setup(struct nic_uring *n)
{
        n->br_bytes = shm_align_up((uint64_t)n->cfg.buf_count * sizeof(struct io_uring_buf),
                                   (uint64_t)sysconf(_SC_PAGESIZE));
        n->bufs_bytes = (size_t)n->cfg.buf_count * n->cfg.buf_bytes;
        void *br = mmap(NULL, n->br_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                        -1, 0);
        void *bufs = mmap(NULL, n->bufs_bytes, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        n->br = br == MAP_FAILED ? NULL : br;
        n->bufs = bufs == MAP_FAILED ? NULL : bufs;
        if (n->br == NULL || n->bufs == NULL)
                return -ENOMEM;
        /* liburing 2.3 has no io_uring_setup_buf_ring: map and register. */
        struct io_uring_buf_reg reg = { .ring_addr = (uintptr_t)n->br,
                                        .ring_entries = n->cfg.buf_count, .bgid = NIC_BGID };
        int rc = io_uring_register_buf_ring(&n->ring, &reg, 0);
        if (rc < 0)
                return rc;
        n->bufs_registered = true;
        io_uring_buf_ring_init(n->br);
        n->br_mask = io_uring_buf_ring_mask(n->cfg.buf_count);
        for (uint32_t i = 0; i < n->cfg.buf_count; i++)
                nic_buf_return(n, (uint16_t)i);
        nic_bufs_publish(n);
        return 0;
}

static int nic_conns_setup(struct nic_uring *n)
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

static int nic_listen(struct nic_uring *n)
{
        struct sockaddr_storage ss = { 0 };
        struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        socklen_t len;
        if (inet_pton(AF_INET, n->cfg.host, &in4->sin_addr) == 1) {
                in4->sin_family = AF_INET;
                in4->sin_port = htons(n->cfg.port);
                len = sizeof(*in4);
        } else if (inet_pton(AF_INET6, n->cfg.host, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons(n->cfg.port);
                len = sizeof(*in6);
        } else {
                return -EINVAL;
        }
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        n->listen_fd = fd;
        int one = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            (n->cfg.reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
            bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, NIC_LISTEN_BACKLOG) < 0 ||
            getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
                return -errno;
        n->port = ntohs(ss.ss_family == AF_INET ? in4->sin_port : in6->sin6_port);
        return 0;
}

/* Releases what init set up, in an order that leaves the kernel nothing
 * to touch: the sockets are shut down already (a send fails before it
 * reads its buffer), the buffer ring is unregistered where this thread may
 * (it is the issuer, or the ring was never enabled: elsewhere -EEXIST, and
 * the ring's exit cancels the recvs), the ring is closed, and only then is
 * the memory freed. */
static void nic_release(struct nic_uring *n)
{
        if (n->listen_fd >= 0)
                close(n->listen_fd);
        n->listen_fd = -1;
        if (n->bufs_registered)
                (void)io_uring_unregister_buf_ring(&n->ring, NIC_BGID);
        if (n->ring_ready)
                io_uring_queue_exit(&n->ring);
        n->ring_ready = false;
        if (n->br != NULL)
                munmap(n->br, n->br_bytes);
        if (n->bufs != NULL)
                munmap(n->bufs, n->bufs_bytes);
        n->br = NULL;
        n->bufs = NULL;
        for (uint32_t i = 0; n->conns != NULL && i < n->cfg.max_conns; i++) {
                nic_out_free(&n->conns[i].out[0]);
                nic_out_free(&n->conns[i].out[1]);
        }
        free(n->conns);
        n->conns = NULL;
}

int nic_uring_init(struct nic_uring *n, const struct nic_uring_config *cfg,
                   const struct nic_uring_ops *ops, void *arg)
{
        memset(n, 0, sizeof(*n));
        n->listen_fd = -1;
        int rc = nic_config_check(cfg, ops);
        if (rc < 0)
                return rc;
        n->cfg = *cfg;
        n->ops = *ops;
        n->arg = arg;
        rc = nic_ring_setup(n);
        if (rc == 0)
                rc = nic_bufs_setup(n);
        if (rc == 0)
                rc = nic_conns_setup(n);
        if (rc == 0)
                rc = nic_listen(n);
        if (rc < 0) {
                nic_release(n);
                return rc;
        }
        /* Sits in the SQ until the first flush, wait or poll submits. */
        nic_accept_arm(n);
        return 0;
}

void nic_uring_fini(struct nic_uring *n)
{
        for (uint32_t i = 0; n->conns != NULL && i < n->cfg.max_conns; i++) {
                struct nic_conn *c = &n->conns[i];
                if (c->state == NIC_CONN_FREE)
                        continue;
                if (c->state != NIC_CONN_ZOMBIE) {
                        c->state = NIC_CONN_ZOMBIE;
                        n->stats.closed++;
                        n->ops.on_close(n->arg, nic_conn_id(n, c), NIC_CLOSE_SHUTDOWN);
                }
                (void)shutdown(c->fd, SHUT_RDWR);
                close(c->fd);
                c->fd = -1;
        }
        nic_release(n);
}
