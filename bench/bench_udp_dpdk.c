/* bench_udp_dpdk.c - scenario udp's DPDK side: the EAL, a port made from
 * two software rings (rte_eth_from_rings) served by a nic_dpdk queue, the
 * client's wire to it, and the bare forwarder (nic_dpdk_echo_burst) as the
 * ceiling.
 *
 * The rings are the wire: the client builds whole Ethernet/IPv4/UDP frames
 * (nic_pkt_udp_build, checksums in software as a NIC without offload would
 * need) into mbufs of its own pool and enqueues them on the port's receive
 * ring; the port's transmit ring carries the server's frames back, which
 * the client parses (nic_pkt_parse) and frees. No copy crosses the wire but
 * the frames themselves: what is measured is the datagram path of atomq
 * (or of the forwarder) and the client's frame building, not a NIC.
 */
#include "bench/bench_udp.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "shm/shm_log.h"

#ifdef ATOMQ_HAVE_DPDK
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <arpa/inet.h>

#include "dataplane/dp_dpdk.h"
#include "nic/nic_dpdk.h"
#include "nic/nic_dpdk_pvt.h"

#define BU_RING_SLOTS 4096u
#define BU_CLIENT_MBUFS 8191u
#define BU_BURST 32u

static struct {
        bool eal;
        struct rte_ring *c2s, *s2c;       /* client to server, and back */
        struct rte_mempool *pool;         /* the client's frames */
        struct nic_dpdk nic;
        bool nic_up;
        struct nic_pkt_me client;         /* us */
        struct nic_dgram_addr server;     /* the port's address */
        struct rte_mbuf *out[BU_BURST];   /* queued for the server */
        unsigned out_n;
        struct rte_mbuf *in[BU_BURST];    /* taken off the wire, not yet read */
        unsigned in_n, in_next;
        pthread_t fwd;
        _Atomic bool fwd_run;
        int fwd_cpu;
} bu;

int bench_udp_dpdk_eal(void)
{
        if (bu.eal)
                return 0;
        char prefix[64];
        snprintf(prefix, sizeof(prefix), "--file-prefix=aqbench%d", (int)getpid());
        char *argv[] = { "atomq-bench", "--no-huge", "-m", "512", "--no-pci", "--no-shconf",
                         "--no-telemetry", "-l", "0", prefix, "--log-level=*:error", NULL };
        cpu_set_t cpus;
        bool have = pthread_getaffinity_np(pthread_self(), sizeof(cpus), &cpus) == 0;
        if (rte_eal_init((int)(sizeof(argv) / sizeof(argv[0])) - 1, argv) < 0) {
                shm_log(SHM_LOG_ERR, "udp: rte_eal_init: %s", rte_strerror(rte_errno));
                return -rte_errno;
        }
        /* The EAL pinned this thread to lcore 0; the scenario pins its own. */
        if (have)
                (void)pthread_setaffinity_np(pthread_self(), sizeof(cpus), &cpus);
        bu.eal = true;
        return 0;
}

int bench_udp_dpdk_thread(void)
{
        return rte_lcore_id() != LCORE_ID_ANY || rte_thread_register() == 0 ? 0 : -rte_errno;
}

/* ---- the client's wire ---- */

static void bu_flush(void *ctx)
{
        (void)ctx;
        unsigned n = rte_ring_sp_enqueue_burst(bu.c2s, (void **)bu.out, bu.out_n, NULL);
        /* What the ring did not take is lost, as on a full NIC queue. */
        if (n < bu.out_n)
                rte_pktmbuf_free_bulk(bu.out + n, bu.out_n - n);
        bu.out_n = 0;
}

static int bu_send(void *ctx, const void *data, size_t len)
{
        struct rte_mbuf *m = rte_pktmbuf_alloc(bu.pool);
        if (m == NULL)
                return -ENOBUFS;
        uint8_t *f = (uint8_t *)rte_pktmbuf_append(m, (uint16_t)(NIC_PKT_HDRS_LEN + len));
        if (f == NULL) {
                rte_pktmbuf_free(m);
                return -EMSGSIZE;
        }
        memcpy(f + NIC_PKT_HDRS_LEN, data, len);
        nic_pkt_udp_build(f, &bu.client, &bu.server, len, false);
        bu.out[bu.out_n++] = m;
        if (bu.out_n == BU_BURST)
                bu_flush(ctx);
        return 0;
}

static int bu_recv(void *ctx, uint8_t *buf, size_t cap)
{
        (void)ctx;
        for (;;) {
                if (bu.in_next == bu.in_n) {
                        bu.in_n = rte_ring_sc_dequeue_burst(bu.s2c, (void **)bu.in, BU_BURST, NULL);
                        bu.in_next = 0;
                        if (bu.in_n == 0)
                                return 0;
                }
                struct rte_mbuf *m = bu.in[bu.in_next++];
                const uint8_t *f = rte_pktmbuf_mtod(m, const uint8_t *);
                struct nic_pkt_info info;
                int len = -1;
                if (nic_pkt_parse(&bu.client, f, rte_pktmbuf_data_len(m), 0, &info) == NIC_PKT_UDP &&
                    info.len <= cap) {
                        memcpy(buf, f + info.off, info.len);
                        len = info.len;
                }
                rte_pktmbuf_free(m);
                if (len >= 0)
                        return len;
        }
}

int bench_udp_dpdk_open(struct bench_udp_wire *w)
{
        int rc = bench_udp_dpdk_eal();
        if (rc != 0)
                return rc;
        bu.c2s = rte_ring_create("aqb_c2s", BU_RING_SLOTS, (int)rte_socket_id(),
                                 RING_F_SP_ENQ | RING_F_SC_DEQ);
        bu.s2c = rte_ring_create("aqb_s2c", BU_RING_SLOTS, (int)rte_socket_id(),
                                 RING_F_SP_ENQ | RING_F_SC_DEQ);
        bu.pool = rte_pktmbuf_pool_create("aqb_client", BU_CLIENT_MBUFS, 256, 0,
                                          RTE_MBUF_DEFAULT_BUF_SIZE, (int)rte_socket_id());
        if (bu.c2s == NULL || bu.s2c == NULL || bu.pool == NULL)
                return -ENOMEM;
        int port = rte_eth_from_rings("aqb_wire", &bu.c2s, 1, &bu.s2c, 1, rte_socket_id());
        if (port < 0)
                return -rte_errno;
        struct nic_dpdk_config cfg;
        nic_dpdk_config_default(&cfg);
        cfg.eal_external = true;
        cfg.eth_port = port;
        cfg.ip = htonl(0x0a000002);           /* 10.0.0.2: the server */
        cfg.udp_port = htons(4223);
        memcpy(cfg.mac, (uint8_t[6]){ 0x02, 0, 0, 0, 0, 0x01 }, 6);
        rc = nic_dpdk_init(&bu.nic, &cfg);
        if (rc != 0)
                return rc;
        bu.nic_up = true;
        bu.client = (struct nic_pkt_me){ .ip = htonl(0x0a000001), .port = htons(40000),
                                         .mac = { 0x02, 0, 0, 0, 0, 0x02 } };
        bu.server = (struct nic_dgram_addr){ .ip = cfg.ip, .port = cfg.udp_port,
                                             .mac = { 0x02, 0, 0, 0, 0, 0x01 } };
        *w = (struct bench_udp_wire){ .send = bu_send, .flush = bu_flush, .recv = bu_recv };
        return 0;
}

void bench_udp_dpdk_close(void)
{
        if (bu.nic_up)
                nic_dpdk_fini(&bu.nic);
        bu.nic_up = false;
        rte_pktmbuf_free_bulk(bu.out, bu.out_n);
        if (bu.in_next < bu.in_n)
                rte_pktmbuf_free_bulk(bu.in + bu.in_next, bu.in_n - bu.in_next);
        bu.out_n = bu.in_n = bu.in_next = 0;
        /* Frames left on the rings belong to pools about to go. */
        struct rte_mbuf *m;
        while (bu.c2s != NULL && rte_ring_dequeue(bu.c2s, (void **)&m) == 0)
                rte_pktmbuf_free(m);
        while (bu.s2c != NULL && rte_ring_dequeue(bu.s2c, (void **)&m) == 0)
                rte_pktmbuf_free(m);
        rte_ring_free(bu.c2s);
        rte_ring_free(bu.s2c);
        rte_mempool_free(bu.pool);
        bu.c2s = bu.s2c = NULL;
        bu.pool = NULL;
}

/* ---- servers ---- */

void bench_udp_dpdk_serve(struct dp_engine *e)
{
        dp_dpdk_serve(e, &bu.nic);
}

static void *bu_forwarder(void *arg)
{
        (void)arg;
        if (bu.fwd_cpu >= 0) {
                cpu_set_t set;
                CPU_ZERO(&set);
                CPU_SET(bu.fwd_cpu, &set);
                (void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
        }
        (void)bench_udp_dpdk_thread();
        struct nic_dpdk_queue *q = nic_dpdk_queue(&bu.nic, 0);
        while (atomic_load_explicit(&bu.fwd_run, memory_order_relaxed))
                (void)nic_dpdk_echo_burst(q);
        rte_thread_unregister();
        return NULL;
}

int bench_udp_dpdk_forwarder_start(int cpu)
{
        bu.fwd_cpu = cpu;
        atomic_store(&bu.fwd_run, true);
        return -pthread_create(&bu.fwd, NULL, bu_forwarder, NULL);
}

void bench_udp_dpdk_forwarder_stop(void)
{
        atomic_store(&bu.fwd_run, false);
        pthread_join(bu.fwd, NULL);
}

#else /* !ATOMQ_HAVE_DPDK */

int bench_udp_dpdk_eal(void)
{
        return -ENOTSUP;
}

int bench_udp_dpdk_thread(void)
{
        return -ENOTSUP;
}

int bench_udp_dpdk_open(struct bench_udp_wire *w)
{
        (void)w;
        return -ENOTSUP;
}

void bench_udp_dpdk_close(void)
{
}

void bench_udp_dpdk_serve(struct dp_engine *e)
{
        (void)e;
}

int bench_udp_dpdk_forwarder_start(int cpu)
{
        (void)cpu;
        return -ENOTSUP;
}

void bench_udp_dpdk_forwarder_stop(void)
{
}

#endif
