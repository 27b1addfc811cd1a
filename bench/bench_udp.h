/* bench_udp.h - what the files of scenario udp share (bench_udp.c: the
 * scenario, the servers and the client; bench_udp_dpdk.c: DPDK's side, the
 * only file that includes DPDK headers).
 *
 * The client speaks atomq datagrams (docs/protocol.md) through a wire: a
 * kernel UDP socket on loopback (backend uring), or DPDK's software ring
 * pair where the client puts whole Ethernet frames on the server port's
 * receive ring and takes its answers off the transmit ring (backends dpdk
 * and dpdk-forwarder).
 */
#ifndef ATOMQ_BENCH_UDP_H
#define ATOMQ_BENCH_UDP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/dp_engine.h"

/* How the client reaches the server. */
struct bench_udp_wire {
        /* Queues one datagram (UDP payload) for the server. 0 or -ENOBUFS. */
        int (*send)(void *ctx, const void *data, size_t len);
        /* Hands what was queued to the server. */
        void (*flush)(void *ctx);
        /* One datagram from the server into buf: its length, 0 when none
         * is there now, < 0 on an error. */
        int (*recv)(void *ctx, uint8_t *buf, size_t cap);
        void *ctx;
};

/* The DPDK side (bench_udp_dpdk.c); -ENOTSUP when built without DPDK. */

/* Starts the EAL once for the process (software ring port, no hugepages,
 * no PCI), keeping the calling thread's CPU affinity. */
int bench_udp_dpdk_eal(void);
/* A ring-pair port served by a nic_dpdk queue, and the client's wire to
 * it. */
int bench_udp_dpdk_open(struct bench_udp_wire *w);
void bench_udp_dpdk_close(void);
/* The port as e's polled datagram backend (engine dgram_nic). */
void bench_udp_dpdk_serve(struct dp_engine *e);
/* The bare forwarder on the same port, on a thread of its own pinned to
 * cpu: started, and stopped. */
int bench_udp_dpdk_forwarder_start(int cpu);
void bench_udp_dpdk_forwarder_stop(void);
/* Registers the calling thread with DPDK (the client). */
int bench_udp_dpdk_thread(void);

#endif /* ATOMQ_BENCH_UDP_H */
