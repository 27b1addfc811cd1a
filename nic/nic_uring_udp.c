/* nic_uring_udp.c - the io_uring backend's datagram socket: one UDP socket
 * per worker (SO_REUSEPORT: the kernel spreads peers over the workers by a
 * hash of their address, so a peer's datagrams always reach one worker), a
 * multishot recvmsg into its own provided buffer group, and sends batched
 * into one submission per flush.
 *
 * Sending: nic_uring_udp_send copies the datagram into the batch being
 * filled; nic_uring_flush hands the whole batch to the kernel as one
 * sendmsg per datagram in the same submit, and the other batch fills
 * meanwhile. A batch is reused once every send of it has completed. When
 * both are busy a send is refused and counted: UDP may lose a datagram,
 * and atomq's datagram protocol retransmits what must arrive
 * (docs/protocol.md), so a full batch drops rather than grows.
 */
#include "nic/nic_uring_pvt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shm/shm_base.h"


static void nic_udp_recv_arm(struct nic_uring *n)
{
        struct io_uring_sqe *sqe = nic_sqe(n);
        if (sqe == NULL)
                return;
        io_uring_prep_recvmsg_multishot(sqe, n->udp.fd, &n->udp.rx_hdr, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = NIC_UDP_BGID;
        io_uring_sqe_set_data64(sqe, nic_ud(NIC_UD_UDP_RECV, 0));
        n->udp.recv_armed = true;
}

void nic_udp_rearm(struct nic_uring *n)
{
        if (!n->udp.recv_armed)
                nic_udp_recv_arm(n);
}

/* One datagram in provided buffer bid, res bytes as the kernel laid them
 * out: struct io_uring_recvmsg_out, the peer's address, the payload. */
static void nic_udp_deliver(struct nic_uring *n, uint16_t bid, int32_t res)
{
        struct nic_udp *u = &n->udp;
        uint8_t *buf = u->rx.mem + (size_t)bid * u->rx.bytes;
        struct io_uring_recvmsg_out *out = io_uring_recvmsg_validate(buf, res, &u->rx_hdr);
        if (out == NULL || (out->flags & MSG_TRUNC) || out->namelen < sizeof(struct sockaddr_in)) {
                n->stats.udp_rx_dropped++;
                return;
        }
        const struct sockaddr_in *sa = io_uring_recvmsg_name(out);
        if (sa->sin_family != AF_INET) {
                n->stats.udp_rx_dropped++;
                return;
        }
        struct nic_dgram_addr from = { .ip = sa->sin_addr.s_addr, .port = sa->sin_port };
        const uint8_t *payload = io_uring_recvmsg_payload(out, &u->rx_hdr);
        uint32_t len = io_uring_recvmsg_payload_length(out, res, &u->rx_hdr);
        n->stats.udp_rx++;
        n->stats.udp_rx_bytes += len;
        n->ops.on_dgram(n->arg, &from, payload, len);
}

void nic_udp_on_recv(struct nic_uring *n, const struct nic_cqe *e)
{
        if (!(e->flags & IORING_CQE_F_MORE))
                n->udp.recv_armed = false;   /* the poll re-arms it */
        if (e->flags & IORING_CQE_F_BUFFER) {
                uint16_t bid = (uint16_t)(e->flags >> IORING_CQE_BUFFER_SHIFT);
                if (e->res > 0 && bid < n->udp.rx.count)
                        nic_udp_deliver(n, bid, e->res);
                nic_buf_return(&n->udp.rx, bid);
        }
        if (e->res == -ENOBUFS)
                n->stats.udp_rx_nobufs++;
}

void nic_udp_on_send(struct nic_uring *n, uint32_t batch, const struct nic_cqe *e)
{
        if (batch > 1)
                return;
        struct nic_udp_batch *b = &n->udp.batch[batch];
        if (e->res < 0)
                n->stats.udp_tx_errors++;
        else
                n->stats.udp_tx_bytes += (uint64_t)e->res;
        DP_ASSERT(b->inflight > 0);
        if (b->inflight > 0 && --b->inflight == 0)
                b->count = b->used = 0;
}

int nic_uring_udp_send(struct nic_uring *n, const struct nic_dgram_addr *to, const void *data,
                       size_t len)
{
        struct nic_udp *u = &n->udp;
        if (u->fd < 0)
                return -ENOTCONN;
        if (len > NIC_DGRAM_BYTES_MAX)
                return -EMSGSIZE;
        struct nic_udp_batch *b = &u->batch[u->fill];
        /* The batch being filled is never in flight: flush switches. */
        if (b->count == n->cfg.udp_tx_max || b->used + len > n->cfg.udp_tx_bytes) {
                n->stats.udp_tx_full++;
                return -ENOBUFS;
        }
        uint8_t *p = b->bytes + b->used;
        memcpy(p, data, len);
        struct nic_udp_msg *m = &b->msgs[b->count++];
        m->to = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = to->port,
                                      .sin_addr.s_addr = to->ip };
        m->iov = (struct iovec){ .iov_base = p, .iov_len = len };
        m->mh = (struct msghdr){ .msg_name = &m->to, .msg_namelen = sizeof(m->to),
                                 .msg_iov = &m->iov, .msg_iovlen = 1 };
        /* 8-byte steps keep every datagram's copy aligned. */
        b->used += (uint32_t)shm_align_up(len, 8);
        return 0;
}

int nic_udp_flush(struct nic_uring *n)
{
        struct nic_udp *u = &n->udp;
        struct nic_udp_batch *b = &u->batch[u->fill];
        if (b->count == 0 || u->batch[u->fill ^ 1].inflight != 0)
                return 0;
        uint32_t started = 0;
        for (uint32_t i = 0; i < b->count; i++) {
                struct io_uring_sqe *sqe = nic_sqe(n);
                if (sqe == NULL) {
                        /* The kernel takes no entry: the rest is dropped
                         * (counted), the batch still comes back. */
                        n->stats.udp_tx_errors += b->count - i;
                        break;
                }
                io_uring_prep_sendmsg(sqe, u->fd, &b->msgs[i].mh, 0);
                io_uring_sqe_set_data64(sqe, nic_ud(NIC_UD_UDP_SEND, u->fill));
                started++;
        }
        n->stats.udp_tx += started;
        b->inflight = started;
        if (started == 0)
                b->count = b->used = 0;
        else
                u->fill ^= 1;
        return (int)started;
}

static int nic_udp_bind(struct nic_uring *n)
{
        struct sockaddr_storage ss;
        int len = nic_sockaddr_parse(n->cfg.udp_host, n->cfg.udp_port, &ss);
        if (len < 0 || ss.ss_family != AF_INET)
                return -EINVAL;
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        n->udp.fd = fd;
        int one = 1;
        socklen_t slen = (socklen_t)len;
        if ((n->cfg.reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
            bind(fd, (struct sockaddr *)&ss, slen) < 0 ||
            getsockname(fd, (struct sockaddr *)&ss, &slen) < 0)
                return -errno;
        n->udp.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        return 0;
}

int nic_udp_open(struct nic_uring *n)
{
        struct nic_udp *u = &n->udp;
        int rc = nic_udp_bind(n);
        if (rc < 0)
                return rc;
        for (int i = 0; i < 2; i++) {
                u->batch[i].bytes = malloc(n->cfg.udp_tx_bytes);
                u->batch[i].msgs = calloc(n->cfg.udp_tx_max, sizeof(*u->batch[i].msgs));
                if (u->batch[i].bytes == NULL || u->batch[i].msgs == NULL)
                        return -ENOMEM;
        }
        rc = nic_bufs_setup(n, &u->rx, NIC_UDP_BGID, n->cfg.udp_buf_bytes, n->cfg.udp_buf_count);
        if (rc < 0)
                return rc;
        /* The recvmsg layout: the peer's address, no control data. */
        u->rx_hdr = (struct msghdr){ .msg_namelen = sizeof(struct sockaddr_in) };
        nic_udp_recv_arm(n);
        return 0;
}

void nic_udp_close(struct nic_uring *n)
{
        if (n->udp.fd < 0)
                return;
        /* Ends the multishot recvmsg; the ring's exit reaps the rest. */
        (void)shutdown(n->udp.fd, SHUT_RDWR);
        close(n->udp.fd);
        n->udp.fd = -1;
}

void nic_udp_release(struct nic_uring *n)
{
        nic_bufs_release(&n->udp.rx);
        for (int i = 0; i < 2; i++) {
                free(n->udp.batch[i].bytes);
                free(n->udp.batch[i].msgs);
                n->udp.batch[i] = (struct nic_udp_batch){ 0 };
        }
}
