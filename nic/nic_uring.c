/* nic_uring.c - the io_uring TCP backend (nic_uring.h): a listener with a
 * multishot accept, a multishot recv per connection into one provided
 * buffer ring, one send in flight per connection from a double-buffered
 * output, and the worker's idle sleep as an io_uring futex waitv.
 *
 * This file sets up and tears down the ring, the listener and the provided
 * buffers, and runs the poll: it takes completions from the CQ and
 * dispatches them by kind. The connections and their output are in
 * nic_uring_conn.c, the idle sleep in nic_uring_wait.c, what the three
 * share in nic_uring_pvt.h.
 *
 * Every request's user_data names what it was for (kind) and for whom (the
 * connection id, generation included), so the poll loop can tell a late
 * completion of an earlier incarnation of a slot from a current one.
 */
#include "nic/nic_uring_pvt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shm/shm_base.h"

#define NIC_BGID 0               /* the connections' provided buffer group */
#define NIC_LISTEN_BACKLOG 1024
#define NIC_POLL_ROUNDS_MAX 16u  /* batches per poll: bounds one call's work */

/* --- submission ---------------------------------------------------------- */

int nic_recv_arm(struct nic_uring *n, struct nic_conn *c)
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

/* A multishot poll for POLLIN on the watched fd: its completions are news
 * for nic_uring_wait and nothing more. */
static void nic_watch_arm(struct nic_uring *n)
{
        struct io_uring_sqe *sqe = nic_sqe(n);
        if (sqe == NULL)
                return;
        io_uring_prep_poll_multishot(sqe, n->watch_fd, POLLIN);
        io_uring_sqe_set_data64(sqe, nic_ud(NIC_UD_WATCH, (uint32_t)n->watch_fd));
        n->watch_armed = true;
}

int nic_uring_watch(struct nic_uring *n, int fd)
{
        if (fd < 0 || n->watch_fd >= 0)
                return -EINVAL;
        n->watch_fd = fd;
        nic_watch_arm(n);
        return n->watch_armed ? 0 : -EBUSY;
}

void nic_buf_return(struct nic_bufs *b, uint16_t bid)
{
        if (bid >= b->count)
                return;
        io_uring_buf_ring_add(b->br, b->mem + (size_t)bid * b->bytes, b->bytes, bid, b->mask,
                              b->returned++);
}

void nic_bufs_publish(struct nic_bufs *b)
{
        if (b->returned == 0)
                return;
        /* A release store of the tail: pairs with the kernel's acquire load
         * when it picks a buffer (io_ring_buffer_select). */
        io_uring_buf_ring_advance(b->br, b->returned);
        b->returned = 0;
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
                if (c != NULL && c->state == NIC_CONN_OPEN && bid < n->rx.count)
                        n->ops.on_data(n->arg, id, n->rx.mem + (size_t)bid * n->rx.bytes,
                                       (size_t)e->res);
                nic_buf_return(&n->rx, bid);
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
        case NIC_UD_UDP_RECV:
                nic_udp_on_recv(n, e);
                break;
        case NIC_UD_UDP_SEND:
                nic_udp_on_send(n, id, e);
                break;
        case NIC_UD_CANCEL:
                break;
        case NIC_UD_WATCH:
                /* The poll ended (an error, or the kernel dropped it): again. */
                if (!(e->flags & IORING_CQE_F_MORE))
                        n->watch_armed = false;
                break;
        default:
                /* Not ours; a buffer it carries is still ours to return. */
                if (e->flags & IORING_CQE_F_BUFFER)
                        nic_buf_return(&n->rx, (uint16_t)(e->flags >> IORING_CQE_BUFFER_SHIFT));
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
                nic_bufs_publish(&n->rx);
                if (n->udp.fd >= 0)
                        nic_bufs_publish(&n->udp.rx);
                handled += (int)got;
        }
        handled += nic_close_drain(n);
        if (n->listen_fd >= 0 && !n->accept_armed)
                nic_accept_arm(n);
        if (n->udp.fd >= 0)
                nic_udp_rearm(n);
        if (n->watch_fd >= 0 && !n->watch_armed)
                nic_watch_arm(n);
        return handled;
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
                .tcp = true,
                .udp_host = "127.0.0.1",
                .udp_buf_bytes = 16 * 1024,
                .udp_buf_count = 256,
                .udp_tx_bytes = 1024 * 1024,
                .udp_tx_max = 1024,
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

uint16_t nic_uring_udp_port(const struct nic_uring *n)
{
        return n->udp.port;
}

const struct nic_uring_stats *nic_uring_stats(const struct nic_uring *n)
{
        return &n->stats;
}

#ifdef NIC_FAULT_INJECT
void nic_uring_fault_set(struct nic_uring *n, uint32_t every, int err)
{
        n->fault = (struct nic_fault){ .every = every, .err = err };
}
#endif

static int nic_config_check(const struct nic_uring_config *cfg, const struct nic_uring_ops *ops)
{
        if (ops == NULL || ops->on_open == NULL || ops->on_data == NULL || ops->on_close == NULL)
                return -EINVAL;
        if (memchr(cfg->host, '\0', sizeof(cfg->host)) == NULL ||
            memchr(cfg->udp_host, '\0', sizeof(cfg->udp_host)) == NULL)
                return -EINVAL;
        if (cfg->udp && (ops->on_dgram == NULL || cfg->udp_buf_bytes < 512 ||
                         cfg->udp_buf_bytes > NIC_DGRAM_BYTES_MAX + 512 ||
                         !shm_is_pow2_u64(cfg->udp_buf_count) || cfg->udp_buf_count > 32768 ||
                         cfg->udp_tx_bytes < NIC_DGRAM_BYTES_MAX || cfg->udp_tx_bytes > (1u << 30) ||
                         cfg->udp_tx_max == 0 || cfg->udp_tx_max > cfg->ring_entries))
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

int nic_bufs_setup(struct nic_uring *n, struct nic_bufs *b, uint16_t bgid, uint32_t bytes,
                   uint32_t count)
{
        *b = (struct nic_bufs){ .bytes = bytes, .count = count, .bgid = bgid };
        b->br_bytes = shm_align_up((uint64_t)count * sizeof(struct io_uring_buf),
                                   (uint64_t)sysconf(_SC_PAGESIZE));
        b->mem_bytes = (size_t)count * bytes;
        void *br = mmap(NULL, b->br_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                        -1, 0);
        void *mem = mmap(NULL, b->mem_bytes, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        b->br = br == MAP_FAILED ? NULL : br;
        b->mem = mem == MAP_FAILED ? NULL : mem;
        if (b->br == NULL || b->mem == NULL)
                return -ENOMEM;
        /* liburing 2.3 has no io_uring_setup_buf_ring: map and register. */
        struct io_uring_buf_reg reg = { .ring_addr = (uintptr_t)b->br, .ring_entries = count,
                                        .bgid = bgid };
        int rc = io_uring_register_buf_ring(&n->ring, &reg, 0);
        if (rc < 0)
                return rc;
        b->registered = true;
        io_uring_buf_ring_init(b->br);
        b->mask = io_uring_buf_ring_mask(count);
        for (uint32_t i = 0; i < count; i++)
                nic_buf_return(b, (uint16_t)i);
        nic_bufs_publish(b);
        return 0;
}

void nic_bufs_unregister(struct nic_uring *n, struct nic_bufs *b)
{
        if (b->registered && n->ring_ready)
                (void)io_uring_unregister_buf_ring(&n->ring, b->bgid);
        b->registered = false;
}

void nic_bufs_release(struct nic_bufs *b)
{
        if (b->br != NULL)
                munmap(b->br, b->br_bytes);
        if (b->mem != NULL)
                munmap(b->mem, b->mem_bytes);
        b->br = NULL;
        b->mem = NULL;
}

int nic_sockaddr_parse(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
        struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        memset(ss, 0, sizeof(*ss));
        if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
                in4->sin_family = AF_INET;
                in4->sin_port = htons(port);
                return (int)sizeof(*in4);
        }
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons(port);
                return (int)sizeof(*in6);
        }
        return -EINVAL;
}

static int nic_listen(struct nic_uring *n)
{
        struct sockaddr_storage ss;
        struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        int parsed = nic_sockaddr_parse(n->cfg.host, n->cfg.port, &ss);
        if (parsed < 0)
                return parsed;
        socklen_t len = (socklen_t)parsed;
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
        nic_udp_close(n);
        /* The groups are unregistered while the ring lives and unmapped,
         * with the datagrams' send batches, after it is gone. */
        nic_bufs_unregister(n, &n->rx);
        nic_bufs_unregister(n, &n->udp.rx);
        if (n->ring_ready)
                io_uring_queue_exit(&n->ring);
        n->ring_ready = false;
        nic_bufs_release(&n->rx);
        nic_udp_release(n);
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
        n->watch_fd = -1;
        n->udp.fd = -1;
        int rc = nic_config_check(cfg, ops);
        if (rc < 0)
                return rc;
        n->cfg = *cfg;
        n->ops = *ops;
        n->arg = arg;
        rc = nic_ring_setup(n);
        if (rc == 0)
                rc = nic_bufs_setup(n, &n->rx, NIC_BGID, cfg->buf_bytes, cfg->buf_count);
        if (rc == 0)
                rc = nic_conns_setup(n);
        if (rc == 0 && cfg->tcp)
                rc = nic_listen(n);
        if (rc == 0 && cfg->udp)
                rc = nic_udp_open(n);
        if (rc < 0) {
                nic_release(n);
                return rc;
        }
        /* These sit in the SQ until the first flush, wait or poll submits. */
        if (cfg->tcp)
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
