/* nic_dpdk_ring_test.c - the DPDK backend (nic/nic_dpdk.c) running for
 * real on a net_ring virtual device, whose tx comes back on its rx: a
 * datagram to ourselves round-trips through poll, send and flush; ARP and
 * ICMP requests put on the wire are answered with the right frames; bad
 * frames are counted, not delivered; the echo forwarder swaps a peer's
 * datagram; the payload limit, a full tx path, the queue fallback without
 * RSS, config errors before the EAL, no port, and a registered worker
 * thread.
 *
 * Criterion runs each test in a process of its own, so each one has its own
 * EAL (rte_eal_init runs once per process). No hugepages, no PCI.
 *
 *      meson test -C build-dpdk nic_dpdk_ring
 *      build-dpdk/tests/test_nic_dpdk_ring --verbose
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#include "nic/nic_dpdk.h"
#include "nic/nic_dpdk_pvt.h"

#define EAL_BASE "--no-huge -m 256 --no-pci --no-shconf --no-telemetry -l 0 " \
                 "--log-level=lib.eal:error"

static struct nic_dpdk d;

static void config(struct nic_dpdk_config *cfg, const char *vdevs)
{
        nic_dpdk_config_default(cfg);
        snprintf(cfg->eal_args, sizeof cfg->eal_args, "%s --file-prefix=aqt%d %s", EAL_BASE,
                 (int)getpid(), vdevs);
        cfg->ip = inet_addr("10.0.0.2");
        cfg->udp_port = htons(9000);
}

static struct nic_dpdk_queue *start(void)
{
        struct nic_dpdk_config cfg;
        config(&cfg, "--vdev=net_ring0");
        int rc = nic_dpdk_init(&d, &cfg);
        cr_assert_eq(rc, 0, "init: %s", strerror(-rc));
        return nic_dpdk_queue(&d, 0);
}

static void us_as_peer(const struct nic_dpdk_queue *q, struct nic_dgram_addr *a)
{
        a->ip = q->ip;
        a->port = q->udp_port;
        memcpy(a->mac, q->mac, 6);
}

struct got {
        unsigned n;
        struct nic_dgram_addr from;
        uint8_t data[2048];
        size_t len;
};

static void on_dgram(void *arg, const struct nic_dgram_addr *from, const uint8_t *data, size_t len)
{
        struct got *g = arg;
        g->n++;
        g->from = *from;
        g->len = len;
        memcpy(g->data, data, len < sizeof g->data ? len : sizeof g->data);
}

/* Puts a raw frame on the port's wire (it comes back on rx). */
static void inject(struct nic_dpdk_queue *q, const uint8_t *frame, size_t len)
{
        struct rte_mbuf *m = rte_pktmbuf_alloc(q->pool);
        cr_assert_not_null(m);
        uint8_t *p = (uint8_t *)rte_pktmbuf_append(m, (uint16_t)len);
        cr_assert_not_null(p);
        memcpy(p, frame, len);
        cr_assert_eq(rte_eth_tx_burst(q->port_id, q->queue_id, &m, 1), 1);
}

/* Takes one raw frame off the wire (what the backend sent). */
static size_t take(struct nic_dpdk_queue *q, uint8_t *out)
{
        struct rte_mbuf *m;
        cr_assert_eq(rte_eth_rx_burst(q->port_id, q->queue_id, &m, 1), 1, "a frame on the wire");
        size_t len = m->data_len;
        memcpy(out, rte_pktmbuf_mtod(m, void *), len);
        rte_pktmbuf_free(m);
        return len;
}

static const struct nic_pkt_me peer = {
        .mac = {0x02, 0xbb, 0, 0, 0, 1},
};

static size_t peer_udp(const struct nic_dpdk_queue *q, uint8_t *f, const char *text)
{
        struct nic_pkt_me p = peer;
        struct nic_dgram_addr to;
        size_t len = strlen(text);
        p.ip = inet_addr("10.0.0.1");
        p.port = htons(40000);
        us_as_peer(q, &to);
        memcpy(f + NIC_PKT_HDRS_LEN, text, len);
        nic_pkt_udp_build(f, &p, &to, len, false);
        return NIC_PKT_HDRS_LEN + len;
}

Test(nic_dpdk_ring, datagram_to_ourselves_round_trips)
{
        struct nic_dpdk_queue *q = start();
        struct nic_dgram_addr self;
        struct got g = {0};
        us_as_peer(q, &self);
        cr_assert_eq(nic_dpdk_send(q, &self, "round trip", 10), 0);
        cr_assert_eq(nic_dpdk_flush(q), 1);
        cr_assert_eq(nic_dpdk_poll(q, on_dgram, &g), 1);
        cr_assert_eq(g.n, 1);
        cr_assert_eq(g.len, 10);
        cr_assert_eq(memcmp(g.data, "round trip", 10), 0);
        cr_assert(nic_dgram_addr_eq(&g.from, &self));
        cr_assert_eq(memcmp(g.from.mac, q->mac, 6), 0);
        const struct nic_dpdk_stats *s = nic_dpdk_stats(q);
        cr_assert_eq(s->tx_pkts, 1);
        cr_assert_eq(s->tx_bytes, 52);
        cr_assert_eq(s->rx_dgrams, 1);
        cr_assert_eq(nic_dpdk_poll(q, on_dgram, &g), 0, "idle");
        nic_dpdk_fini(&d);
}

Test(nic_dpdk_ring, arp_and_ping_are_answered)
{
        struct nic_dpdk_queue *q = start();
        uint8_t f[128], r[2048];
        uint32_t pip = inet_addr("10.0.0.1");
        /* ARP request, broadcast, for our IP, padded to 60 bytes. */
        memset(f, 0, 60);
        memset(f, 0xff, 6);
        memcpy(f + 6, peer.mac, 6);
        memcpy(f + 12, "\x08\x06\x00\x01\x08\x00\x06\x04\x00\x01", 10);
        memcpy(f + 22, peer.mac, 6);
        memcpy(f + 28, &pip, 4);
        memcpy(f + 38, &q->ip, 4);
        inject(q, f, 60);
        cr_assert_eq(nic_dpdk_poll(q, on_dgram, NULL), 1);
        cr_assert_eq(nic_dpdk_stats(q)->arp_replies, 1);
        cr_assert_eq(nic_dpdk_flush(q), 1);
        cr_assert_eq(take(q, r), 42);
        cr_assert_eq(memcmp(r, peer.mac, 6), 0, "to the asker");
        cr_assert_eq(r[21], 2, "an ARP reply");
        cr_assert_eq(memcmp(r + 22, q->mac, 6), 0, "our MAC as sender");
        cr_assert_eq(memcmp(r + 28, &q->ip, 4), 0);

        /* ICMP echo request: an IPv4 frame from the builder, made ICMP. */
        size_t len = peer_udp(q, f, "");
        f[14 + 9] = 1;
        f[17] = 20 + 8 + 4;
        f[24] = f[25] = 0;
        uint16_t c = (uint16_t)~nic_pkt_csum_fold(nic_pkt_csum_add(0, f + 14, 20));
        memcpy(f + 24, &c, 2);
        memcpy(f + 34, "\x08\x00\x00\x00\x00\x2a\x00\x01ping", 12);
        c = (uint16_t)~nic_pkt_csum_fold(nic_pkt_csum_add(0, f + 34, 12));
        memcpy(f + 36, &c, 2);
        len = len - 8 + 12;
        inject(q, f, len);
        cr_assert_eq(nic_dpdk_poll(q, on_dgram, NULL), 1);
        cr_assert_eq(nic_dpdk_stats(q)->icmp_replies, 1);
        cr_assert_eq(nic_dpdk_flush(q), 1);
        cr_assert_eq(take(q, r), len);
        cr_assert_eq(r[34], 0, "echo reply");
        cr_assert_eq(memcmp(r + 42, "ping", 4), 0);
        cr_assert_eq(nic_pkt_csum_fold(nic_pkt_csum_add(0, r + 34, 12)), 0xffff);
        cr_assert_eq(nic_pkt_csum_fold(nic_pkt_csum_add(0, r + 14, 20)), 0xffff);
        nic_dpdk_fini(&d);
}

Test(nic_dpdk_ring, bad_frames_are_counted_not_delivered)
{
        struct nic_dpdk_queue *q = start();
        uint8_t f[256], g[256];
        struct got got = {0};
        size_t len = peer_udp(q, f, "bad frames");
        inject(q, f, 10);                      /* truncated Ethernet */
        memcpy(g, f, len);
        g[12] = 0x86;                          /* IPv6 */
        g[13] = 0xdd;
        inject(q, g, len);
        memcpy(g, f, len);
        g[len - 1] ^= 1;                       /* UDP checksum */
        inject(q, g, len);
        memcpy(g, f, len);
        g[20] = 0x20;                          /* a fragment (MF) */
        inject(q, g, len);
        memcpy(g, f, len);
        g[37] ^= 1;                            /* another port */
        inject(q, g, len);
        inject(q, f, len);                     /* and one good */
        cr_assert_eq(nic_dpdk_poll(q, on_dgram, &got), 6);
        const struct nic_dpdk_stats *s = nic_dpdk_stats(q);
        cr_assert_eq(got.n, 1);
        cr_assert_eq(memcmp(got.data, "bad frames", 10), 0);
        cr_assert_eq(s->rx_pkts, 6);
        cr_assert_eq(s->rx_malformed, 2);
        cr_assert_eq(s->rx_other, 1);
        cr_assert_eq(s->rx_bad_csum, 1);
        cr_assert_eq(s->rx_not_for_us, 1);
        cr_assert_eq(s->rx_dgrams, 1);
        nic_dpdk_fini(&d);
}

Test(nic_dpdk_ring, echo_burst_swaps_a_peers_datagram)
{
        struct nic_dpdk_queue *q = start();
        uint8_t f[256], r[2048];
        size_t len = peer_udp(q, f, "bare echo");
        inject(q, f, len);
        cr_assert_eq(nic_dpdk_echo_burst(q), 1);
        cr_assert_eq(nic_dpdk_stats(q)->tx_pkts, 1);
        cr_assert_eq(take(q, r), len);
        cr_assert_eq(memcmp(r, peer.mac, 6), 0);
        cr_assert_eq(memcmp(r + 6, q->mac, 6), 0);
        cr_assert_eq(memcmp(r + 26, &q->ip, 4), 0, "from us");
        cr_assert_eq(memcmp(r + 30, f + 26, 4), 0, "to the peer");
        cr_assert_eq(memcmp(r + 34, f + 36, 2), 0, "our port is the source");
        cr_assert_eq(memcmp(r + 42, "bare echo", 9), 0);
        nic_dpdk_fini(&d);
}

Test(nic_dpdk_ring, payload_limit_is_the_mtu)
{
        struct nic_dpdk_queue *q = start();
        static uint8_t big[2000];
        struct nic_dgram_addr self;
        struct got g = {0};
        us_as_peer(q, &self);
        cr_assert_eq(nic_dpdk_payload_max(q), 1500 - 28);
        for (size_t i = 0; i < sizeof big; i++)
                big[i] = (uint8_t)(i * 7);
        cr_assert_eq(nic_dpdk_send(q, &self, big, 1473), -EMSGSIZE);
        cr_assert_eq(nic_dpdk_send(q, &self, big, 1472), 0);
        nic_dpdk_flush(q);
        cr_assert_eq(nic_dpdk_poll(q, on_dgram, &g), 1);
        cr_assert_eq(g.len, 1472);
        cr_assert_eq(memcmp(g.data, big, 1472), 0);
        nic_dpdk_fini(&d);
}

Test(nic_dpdk_ring, full_tx_gives_enobufs_and_keeps_order)
{
        struct nic_dpdk_queue *q = start();
        struct nic_dgram_addr self;
        int rc = 0;
        unsigned sent = 0;
        us_as_peer(q, &self);
        /* Nobody reads the ring: it fills, then the pending array does. */
        while (sent < 8192 && (rc = nic_dpdk_send(q, &self, &sent, sizeof sent)) == 0)
                sent++;
        cr_assert_eq(rc, -ENOBUFS);
        cr_assert_geq(nic_dpdk_stats(q)->tx_full, 1);
        cr_assert_eq(q->tx_count, NIC_DPDK_TX_PENDING_MAX);
        /* Drain the ring; the held frames go out next, in order. */
        struct got g;
        unsigned seen = 0;
        for (int round = 0; round < 1000 && seen < sent; round++) {
                g.n = 0;
                nic_dpdk_poll(q, on_dgram, &g);
                seen += g.n;
                nic_dpdk_flush(q);
        }
        cr_assert_eq(seen, sent);
        cr_assert_eq(memcmp(g.data, &(unsigned){sent - 1}, sizeof sent), 0, "the last one last");
        nic_dpdk_fini(&d);
}

Test(nic_dpdk_ring, no_rss_falls_back_to_one_queue)
{
        struct nic_dpdk_config cfg;
        config(&cfg, "--vdev=net_ring0");
        cfg.queues = 2;
        cfg.queues_exact = true;
        cr_assert_eq(nic_dpdk_init(&d, &cfg), -ENOTSUP);
}

Test(nic_dpdk_ring, no_rss_fallback_warns_and_runs)
{
        struct nic_dpdk_config cfg;
        config(&cfg, "--vdev=net_ring0");
        cfg.queues = 2;
        cr_assert_eq(nic_dpdk_init(&d, &cfg), 0);
        cr_assert_eq(d.queue_count, 1);
        cr_assert_null(nic_dpdk_queue(&d, 1));
        nic_dpdk_fini(&d);
}

Test(nic_dpdk_ring, bad_config_is_refused_before_the_eal)
{
        struct nic_dpdk_config cfg;
        config(&cfg, "--vdev=net_ring0");
        cfg.queues = 0;
        cr_assert_eq(nic_dpdk_init(&d, &cfg), -EINVAL);
        cfg.queues = NIC_DPDK_QUEUES_MAX + 1;
        cr_assert_eq(nic_dpdk_init(&d, &cfg), -EINVAL);
        config(&cfg, "--vdev=net_ring0");
        cfg.ip = 0;
        cr_assert_eq(nic_dpdk_init(&d, &cfg), -EINVAL);
        config(&cfg, "--vdev=net_ring0");
        cfg.mac[0] = 0x01;  /* multicast */
        cr_assert_eq(nic_dpdk_init(&d, &cfg), -EINVAL);
        config(&cfg, "--vdev=net_ring0");
        for (size_t i = strlen(cfg.eal_args); i + 3 < sizeof cfg.eal_args; i += 2)
                memcpy(cfg.eal_args + i, " x", 3);  /* too many words */
        cr_assert_eq(nic_dpdk_init(&d, &cfg), -EINVAL);
        /* None of that touched the EAL: a good config still starts. */
        config(&cfg, "--vdev=net_ring0");
        cr_assert_eq(nic_dpdk_init(&d, &cfg), 0);
        nic_dpdk_fini(&d);
}

Test(nic_dpdk_ring, no_port_is_enodev_and_the_eal_runs_once)
{
        struct nic_dpdk_config cfg;
        config(&cfg, "");
        cr_assert_eq(nic_dpdk_init(&d, &cfg), -ENODEV);
        config(&cfg, "--vdev=net_ring0");
        cr_assert_eq(nic_dpdk_init(&d, &cfg), -EALREADY);
        nic_dpdk_fini(&d);  /* harmless after a failed init */
}

Test(nic_dpdk_ring, missing_port_id_is_enodev)
{
        struct nic_dpdk_config cfg;
        config(&cfg, "--vdev=net_ring0");
        cfg.eth_port = 3;
        cr_assert_eq(nic_dpdk_init(&d, &cfg), -ENODEV);
}

static void *worker(void *arg)
{
        struct nic_dpdk_queue *q = arg;
        struct nic_dgram_addr self;
        struct got g = {0};
        intptr_t ok = nic_dpdk_thread_register() == 0 && rte_lcore_id() != LCORE_ID_ANY;
        us_as_peer(q, &self);
        ok = ok && nic_dpdk_send(q, &self, "worker", 6) == 0 && nic_dpdk_flush(q) == 1;
        ok = ok && nic_dpdk_poll(q, on_dgram, &g) == 1 && g.n == 1;
        nic_dpdk_thread_unregister();
        return (void *)ok;
}

Test(nic_dpdk_ring, a_registered_worker_thread_owns_the_queue)
{
        struct nic_dpdk_queue *q = start();
        pthread_t t;
        void *ok;
        cr_assert_eq(pthread_create(&t, NULL, worker, q), 0);
        cr_assert_eq(pthread_join(t, &ok), 0);
        cr_assert(ok != NULL, "register, send, flush, poll on the worker");
        nic_dpdk_fini(&d);
}
