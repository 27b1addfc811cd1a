/* nic_dgram.h - what a datagram backend hands its worker and takes from
 * it, whichever backend it is: the kernel's UDP through io_uring
 * (nic_uring_udp_*), or a NIC queue owned through DPDK (nic_dpdk.h).
 *
 * A backend calls nic_dgram_fn for every UDP payload addressed to us, on
 * the worker's thread, with the peer's address; the worker answers through
 * the backend's send call with the same address. The payload is valid for
 * the call only.
 *
 * IPv4 only: atomq datagrams are a LAN protocol (docs/protocol.md), and
 * a DPDK port's IPv4 + UDP path is the one it builds and parses itself.
 */
#ifndef ATOMQ_NIC_DGRAM_H
#define ATOMQ_NIC_DGRAM_H

#include <stddef.h>
#include <stdint.h>

/* A peer: where a datagram came from, where its answer goes. */
struct nic_dgram_addr {
        uint32_t ip;       /* IPv4, network byte order */
        uint16_t port;     /* network byte order */
        uint8_t mac[6];    /* DPDK: the frame's source MAC (answers go back to
                            * it: no ARP cache); kernel sockets: zero */
};
_Static_assert(sizeof(struct nic_dgram_addr) == 12, "a peer address is 12 bytes");

/* Is a the same peer as b (address and port; the MAC is not compared:
 * a peer behind a router changes it)? */
static inline int nic_dgram_addr_eq(const struct nic_dgram_addr *a,
                                    const struct nic_dgram_addr *b)
{
        return a->ip == b->ip && a->port == b->port;
}

/* A datagram for us: called on the worker's thread. */
typedef void nic_dgram_fn(void *arg, const struct nic_dgram_addr *from, const uint8_t *data,
                          size_t len);

/* The largest UDP payload over IPv4 (65535 - 20 - 8). */
#define NIC_DGRAM_BYTES_MAX 65507u

/* A polled backend's counters of one queue since it started: what it
 * took, answered and dropped (each reason its own). */
struct nic_dgram_stats {
        uint64_t rx_pkts;
        uint64_t rx_malformed;   /* truncated, bad headers, fragments */
        uint64_t rx_bad_csum;
        uint64_t rx_not_for_us;  /* another MAC, IP address or UDP port */
        uint64_t rx_other;       /* other protocols, ARP replies */
        uint64_t arp_replies;
        uint64_t icmp_replies;
        uint64_t tx_pkts;
        uint64_t tx_full;        /* sends refused: the queue's tx was full */
        uint64_t tx_dropped;     /* replies freed: no room */
        uint64_t no_mbufs;       /* sends refused: no buffer */
};

/* A polled datagram backend (a DPDK port: nic_dpdk.h), as a worker sees
 * it: one queue per worker, polled in its loop, flushed at the end of a
 * pass. The program that owns the backend fills these in, so the workers'
 * code needs none of the backend's headers or libraries. */
struct nic_dgram_ops {
        /* On the worker's thread, once, before its queue is used. */
        int (*thread_init)(void *ctx);
        /* Worker w's queue; NULL: the backend has none for it. */
        void *(*queue)(void *ctx, uint32_t w);
        /* One burst: datagrams for us to fn. Returns frames taken or -errno. */
        int (*poll)(void *q, nic_dgram_fn *fn, void *arg);
        /* 0, -EMSGSIZE, -ENOBUFS (dropped, counted by the backend). */
        int (*send)(void *q, const struct nic_dgram_addr *to, const void *data, size_t len);
        int (*flush)(void *q);
        /* The largest datagram a send takes. */
        uint32_t (*bytes_max)(void *q);
        /* The queue's counters, on the worker's thread. */
        void (*stats)(void *q, struct nic_dgram_stats *out);
};

struct nic_dgram_backend {
        const struct nic_dgram_ops *ops;   /* NULL: none */
        void *ctx;
};

#endif /* ATOMQ_NIC_DGRAM_H */
