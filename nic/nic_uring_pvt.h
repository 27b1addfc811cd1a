/* nic_uring_pvt.h - what the files of the io_uring backend share and
 * nobody else needs: struct nic_uring and a connection's slot, the
 * user_data of a request, and the helpers all three files use.
 *
 *      nic_uring.c       the ring, the listener and the provided buffers;
 *                        poll, and the dispatch of completions by kind
 *      nic_uring_conn.c  the connection table and the output: send,
 *                        reserve/commit, flush, close
 *      nic_uring_wait.c  the idle sleep: an io_uring futex waitv, or a
 *                        bounded sleep where the kernel has none
 */
#ifndef ATOMQ_NIC_URING_PVT_H
#define ATOMQ_NIC_URING_PVT_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "nic/nic_uring.h"
#include "shm/shm_base.h"

/* struct futex_waitv (linux/futex.h, 5.16), spelled out for old headers. */
struct nic_futex_waitv {
        uint64_t val;
        uint64_t uaddr;
        uint32_t flags;
        uint32_t reserved;
};
_Static_assert(sizeof(struct nic_futex_waitv) == 24, "struct futex_waitv is 24 bytes");
/* FUTEX_WAITV_MAX in the kernel. */
#define NIC_WAIT_WORDS_MAX 128u

/* What a request was for: bits 32..39 of its user_data, the connection id
 * (or the futex arming's sequence) in the low 32 bits. */
enum nic_ud_kind {
        NIC_UD_ACCEPT = 1,
        NIC_UD_RECV = 2,
        NIC_UD_SEND = 3,
        NIC_UD_FUTEX = 4,
        NIC_UD_CANCEL = 5,
        NIC_UD_WATCH = 6,        /* a watched fd became readable (low bits: the fd) */
        NIC_UD_UDP_RECV = 7,
        NIC_UD_UDP_SEND = 8,     /* low bits: the batch */
};

#define NIC_UDP_BGID 1           /* the datagram socket's provided buffer group */
#define NIC_POLL_BATCH 256u      /* completions copied out of the CQ at once */
#define NIC_NONE UINT32_MAX      /* end of an intrusive slot list */

enum nic_conn_state {
        NIC_CONN_FREE = 0,
        NIC_CONN_OPEN,
        NIC_CONN_CLOSING,        /* nic_uring_close: no more input or output taken */
        NIC_CONN_ZOMBIE,         /* on_close called; requests still in the kernel */
};

/* A provided buffer ring and its buffers: the kernel picks one per
 * receive, the poll hands it back once the callback is done with it. */
struct nic_bufs {
        struct io_uring_buf_ring *br;
        size_t br_bytes;
        uint8_t *mem;
        size_t mem_bytes;
        uint32_t bytes;                  /* one buffer */
        uint32_t count;                  /* a power of two */
        uint16_t bgid;
        bool registered;
        int mask;
        int returned;                    /* added since the last advance */
};

/* One datagram queued for sending: the kernel reads all three until its
 * send completes. */
struct nic_udp_msg {
        struct msghdr mh;
        struct iovec iov;
        struct sockaddr_in to;
};

/* A batch of datagrams: filled by nic_uring_udp_send, then sent as one
 * submission; the other batch fills meanwhile. */
struct nic_udp_batch {
        uint8_t *bytes;                  /* udp_tx_bytes */
        uint32_t used;
        struct nic_udp_msg *msgs;        /* udp_tx_max */
        uint32_t count;
        uint32_t inflight;               /* sends of it still in the kernel */
};

struct nic_udp {
        int fd;                          /* -1: no datagram socket */
        uint16_t port;
        bool recv_armed;
        struct msghdr rx_hdr;            /* what the multishot recvmsg fills per datagram */
        struct nic_bufs rx;              /* bgid 1 */
        struct nic_udp_batch batch[2];
        uint8_t fill;                    /* the batch nic_uring_udp_send fills */
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

#ifdef NIC_FAULT_INJECT
/* Fault injection, compiled into test builds only (-DNIC_FAULT_INJECT,
 * tests/meson.build): 1 in every `every` io_uring submissions fails with
 * err before it reaches the kernel, its entries left in the SQ, as the
 * kernel leaves them when it refuses a submit (EAGAIN, EBUSY, ENOMEM). */
struct nic_fault {
        uint32_t every;   /* 0: none */
        int err;
        uint64_t calls;
};
#endif

struct nic_uring {
        struct io_uring ring;
#ifdef NIC_FAULT_INJECT
        struct nic_fault fault;
#endif
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
        bool futex_unsupported;
        int watch_fd;                    /* nic_uring_watch's fd; -1: none */
        bool watch_armed;
        struct nic_bufs rx;              /* the connections' receive buffers (bgid 0) */
        struct nic_udp udp;              /* the datagram socket (nic_uring_udp.c) */
        /* The armed futex waitv: its user_data (0: none), words and values. */
        uint64_t futex_ud;
        uint32_t futex_seq;
        uint32_t futex_n;
        struct nic_futex_waitv waitv[NIC_WAIT_WORDS_MAX];
        struct nic_cqe batch[NIC_POLL_BATCH];
        struct nic_uring_stats stats;
};

/* --- ids and slots ------------------------------------------------------- */

static inline uint64_t nic_ud(enum nic_ud_kind kind, uint32_t id)
{
        return (uint64_t)kind << 32 | id;
}

static inline uint32_t nic_conn_slot(const struct nic_uring *n, const struct nic_conn *c)
{
        return (uint32_t)(c - n->conns);
}

static inline uint32_t nic_conn_id(const struct nic_uring *n, const struct nic_conn *c)
{
        return nic_conn_slot(n, c) | (uint32_t)c->gen << NIC_CONN_SLOT_BITS;
}

/* The slot incarnation named by id (any state but FREE), or NULL. */
static inline struct nic_conn *nic_conn_lookup(const struct nic_uring *n, uint32_t id)
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

static inline void nic_out_free(struct nic_out *o)
{
        free(o->buf);
        *o = (struct nic_out){ 0 };
}

/* --- submission ---------------------------------------------------------- */

/* With IORING_SETUP_R_DISABLED the ring binds to its single issuer when it
 * is enabled, not when it is created: so nic_uring_init may run on another
 * thread than the worker's, and the first poll, flush or wait (the calls
 * that enter the kernel) makes the caller the issuer. */
static inline int nic_ring_enable(struct nic_uring *n)
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

static inline int nic_submit(struct nic_uring *n)
{
        if (io_uring_sq_ready(&n->ring) == 0)
                return 0;
#ifdef NIC_FAULT_INJECT
        if (n->fault.every != 0 && ++n->fault.calls % n->fault.every == 0) {
                n->stats.faults_injected++;
                return n->fault.err;
        }
#endif
        n->stats.submits++;
        return io_uring_submit(&n->ring);
}

/* A submission entry; a full SQ is handed to the kernel first. NULL only
 * when the kernel takes nothing (the caller retries later or gives up). */
static inline struct io_uring_sqe *nic_sqe(struct nic_uring *n)
{
        struct io_uring_sqe *sqe = io_uring_get_sqe(&n->ring);
        if (sqe != NULL)
                return sqe;
        (void)nic_submit(n);
        return io_uring_get_sqe(&n->ring);
}

/* --- across the files ----------------------------------------------------- */

/* nic_uring.c. Arms c's multishot recv into the provided buffers: 0, or
 * -EBUSY when the SQ takes no entry. */
int nic_recv_arm(struct nic_uring *n, struct nic_conn *c);
/* Maps and registers a buffer group of count buffers of `bytes`, all
 * handed to the kernel: 0, -ENOMEM or -errno of the registration. */
int nic_bufs_setup(struct nic_uring *n, struct nic_bufs *b, uint16_t bgid, uint32_t bytes,
                   uint32_t count);
/* Unregisters the group (while the ring lives), then, once the ring is
 * gone and no request can write into it, unmaps it. */
void nic_bufs_unregister(struct nic_uring *n, struct nic_bufs *b);
void nic_bufs_release(struct nic_bufs *b);
/* Hands buffer bid back; nic_bufs_publish makes the batch visible. */
void nic_buf_return(struct nic_bufs *b, uint16_t bid);
void nic_bufs_publish(struct nic_bufs *b);
/* Parses a numeric IPv4 or IPv6 host and port into ss: its length, or
 * -EINVAL. */
int nic_sockaddr_parse(const char *host, uint16_t port, struct sockaddr_storage *ss);

/* nic_uring_udp.c. The datagram socket, its multishot recvmsg and its two
 * send batches: 0 or -errno (the socket is closed again on failure). */
int nic_udp_open(struct nic_uring *n);
/* Closes the socket (before the ring's exit) and frees the rest (after). */
void nic_udp_close(struct nic_uring *n);
void nic_udp_release(struct nic_uring *n);
/* Re-arms the recvmsg when it ended (once per poll). */
void nic_udp_rearm(struct nic_uring *n);
/* A recvmsg's or a send's completion (nic_cqe_dispatch). */
void nic_udp_on_recv(struct nic_uring *n, const struct nic_cqe *e);
void nic_udp_on_send(struct nic_uring *n, uint32_t batch, const struct nic_cqe *e);
/* Submits the filled batch when the other one is back: the datagrams
 * started. */
int nic_udp_flush(struct nic_uring *n);

/* nic_uring_conn.c. The table, every slot free: 0 or -ENOMEM. */
int nic_conns_setup(struct nic_uring *n);
/* An accepted socket gets a slot, a recv and on_open; without a slot or an
 * entry for the recv it is closed and counted as refused. */
void nic_conn_open(struct nic_uring *n, int fd);
void nic_conn_finish(struct nic_uring *n, struct nic_conn *c, enum nic_close_reason reason);
void nic_conn_try_free(struct nic_uring *n, struct nic_conn *c);
/* Returns the connections it finished. */
int nic_close_drain(struct nic_uring *n);
/* A send's completion (nic_cqe_dispatch). */
void nic_on_send(struct nic_uring *n, uint32_t id, const struct nic_cqe *e);

/* nic_uring_wait.c. A futex waitv's completion (nic_cqe_dispatch). */
void nic_on_futex(struct nic_uring *n, const struct nic_cqe *e);

#endif /* ATOMQ_NIC_URING_PVT_H */
