/* nic_dpdk.c - the DPDK backend (nic_dpdk.h): the EAL, the port and its
 * queues at start-up, and a worker's data path: rx burst and dispatch,
 * datagram tx through a bounded pending array, the bare echo forwarder.
 *
 * Frames are parsed and built by the pure helpers of nic_dpdk_pkt.c; this
 * file only moves mbufs. The data path never allocates but from the
 * queue's own mbuf pool, never logs (it counts), and never trusts a frame:
 * only the first segment's data_len is handed to the parser, and a frame in
 * several segments (which we never ask for: no scatter) is dropped.
 */
#include "nic/nic_dpdk.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_prefetch.h>

#include "nic/nic_dpdk_pvt.h"
#include "shm/shm_log.h"

#define NIC_DPDK_DESC_DEFAULT 1024u
#define NIC_DPDK_DESC_MAX 16384u
/* 2^k - 1 is the mempool's best size. 4095 covers the rx ring (1024), the
 * tx ring (1024), the pending array (512), two bursts, and what up to two
 * lcore caches may hold (1.5 x 256 each: the main thread's from filling
 * the rx ring at start, and the worker's). */
#define NIC_DPDK_MBUFS_DEFAULT 4095u
#define NIC_DPDK_MBUFS_MAX (1u << 20)
#define NIC_DPDK_POOL_CACHE 256u

#define NIC_DPDK_RX_CSUM (RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | RTE_ETH_RX_OFFLOAD_UDP_CKSUM)
#define NIC_DPDK_TX_CSUM (RTE_ETH_TX_OFFLOAD_IPV4_CKSUM | RTE_ETH_TX_OFFLOAD_UDP_CKSUM)

_Static_assert(NIC_DPDK_BURST <= UINT16_MAX, "a burst count is 16 bits in ethdev");
_Static_assert(NIC_DPDK_TX_PENDING_MAX >= 2 * NIC_DPDK_BURST,
               "room for a full burst behind one the NIC did not take");

void nic_dpdk_config_default(struct nic_dpdk_config *cfg)
{
        memset(cfg, 0, sizeof *cfg);
        cfg->eth_port = -1;
        cfg->queues = 1;
}

/* --- start-up -------------------------------------------------------------- */

static int nic_dpdk_config_check(const struct nic_dpdk_config *cfg)
{
        if (cfg->queues < 1 || cfg->queues > NIC_DPDK_QUEUES_MAX)
                return -EINVAL;
        if (cfg->ip == 0 || cfg->udp_port == 0 || cfg->eth_port > UINT16_MAX)
                return -EINVAL;
        if ((cfg->mac[0] & 1u) != 0)  /* a group address cannot be ours */
                return -EINVAL;
        if (cfg->rx_desc > NIC_DPDK_DESC_MAX || cfg->tx_desc > NIC_DPDK_DESC_MAX)
                return -EINVAL;
        if (cfg->mbufs > NIC_DPDK_MBUFS_MAX)
                return -EINVAL;
        if (memchr(cfg->eal_args, '\0', sizeof cfg->eal_args) == NULL)
                return -EINVAL;
        return 0;
}

/* Splits the EAL arguments into d->eal_argv (after a program name), in
 * d->eal_buf. Returns argc or -EINVAL (too many words). */
static int nic_dpdk_eal_split(struct nic_dpdk *d, const char *args)
{
        static char prog[] = "atomq";
        char *save = NULL;
        int argc = 0;
        snprintf(d->eal_buf, sizeof d->eal_buf, "%s", args);
        d->eal_argv[argc++] = prog;
        for (char *w = strtok_r(d->eal_buf, " \t\n", &save); w != NULL;
             w = strtok_r(NULL, " \t\n", &save)) {
                if (argc == (int)NIC_DPDK_EAL_ARGV_MAX)
                        return -EINVAL;
                d->eal_argv[argc++] = w;
        }
        d->eal_argv[argc] = NULL;
        return argc;
}

/* rte_eal_init, keeping the caller's CPU affinity: the EAL pins the thread
 * that calls it to the main lcore, and the dataplane's workers, created
 * later, would all inherit that one core. */
static int nic_dpdk_eal_start(struct nic_dpdk *d, const char *args)
{
        cpu_set_t cpus;
        bool have_cpus;
        int argc = nic_dpdk_eal_split(d, args);
        if (argc < 0) {
                shm_log(SHM_LOG_ERR, "nic_dpdk: more than %u EAL arguments",
                        NIC_DPDK_EAL_ARGV_MAX - 1);
                return argc;
        }
        have_cpus = pthread_getaffinity_np(pthread_self(), sizeof cpus, &cpus) == 0;
        int rc = rte_eal_init(argc, d->eal_argv);
        if (rc < 0) {
                int err = rte_errno != 0 ? rte_errno : EINVAL;
                shm_log(SHM_LOG_ERR, "nic_dpdk: rte_eal_init(\"%s\"): %s", args,
                        rte_strerror(err));
                /* EALREADY: once per process; anything else the EAL did not
                 * like in its arguments or its environment. */
                return -err;
        }
        if (have_cpus)
                (void)pthread_setaffinity_np(pthread_self(), sizeof cpus, &cpus);
        return 0;
}

/* Picks the port: cfg->eth_port, or the first available. */
static int nic_dpdk_port_pick(const struct nic_dpdk_config *cfg, uint16_t *port)
{
        uint16_t p;
        if (cfg->eth_port >= 0) {
                if (!rte_eth_dev_is_valid_port((uint16_t)cfg->eth_port)) {
                        shm_log(SHM_LOG_ERR, "nic_dpdk: no DPDK port %d (%u available)",
                                (int)cfg->eth_port, rte_eth_dev_count_avail());
                        return -ENODEV;
                }
                *port = (uint16_t)cfg->eth_port;
                return 0;
        }
        RTE_ETH_FOREACH_DEV(p) {
                *port = p;
                return 0;
        }
        shm_log(SHM_LOG_ERR, "nic_dpdk: no DPDK port (no NIC bound to a DPDK driver, "
                "and no --vdev in the EAL arguments)");
        return -ENODEV;
}

/* How many queues, and RSS for them: more than one needs the port to
 * spread IPv4/UDP by hash (else every datagram would land on queue 0). */
static int nic_dpdk_queues_pick(const struct rte_eth_dev_info *di,
                                const struct nic_dpdk_config *cfg, struct rte_eth_conf *conf,
                                uint16_t *nq)
{
        const char *why = NULL;
        *nq = cfg->queues;
        if (cfg->queues == 1)
                return 0;
        if ((di->flow_type_rss_offloads & RTE_ETH_RSS_NONFRAG_IPV4_UDP) == 0)
                why = "it has no RSS over IPv4/UDP";
        else if (di->max_rx_queues < cfg->queues || di->max_tx_queues < cfg->queues)
                why = "it has fewer queues";
        if (why == NULL) {
                conf->rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
                conf->rx_adv_conf.rss_conf.rss_key = NULL;  /* the driver's key */
                conf->rx_adv_conf.rss_conf.rss_hf =
                        di->flow_type_rss_offloads &
                        (RTE_ETH_RSS_IPV4 | RTE_ETH_RSS_NONFRAG_IPV4_UDP);
                return 0;
        }
        if (cfg->queues_exact) {
                shm_log(SHM_LOG_ERR, "nic_dpdk: port (%s) cannot spread IPv4/UDP over %u queues: %s",
                        di->driver_name, cfg->queues, why);
                return -ENOTSUP;
        }
        shm_log(SHM_LOG_WARN, "nic_dpdk: port (%s) cannot spread IPv4/UDP over %u queues: %s; "
                "using one queue", di->driver_name, cfg->queues, why);
        *nq = 1;
        return 0;
}

/* A queue's pool and its rx and tx rings, on the port's NUMA socket. */
static int nic_dpdk_queue_setup(struct nic_dpdk *d, const struct nic_dpdk_config *cfg,
                                uint16_t qid, uint16_t nb_rxd, uint16_t nb_txd, int socket)
{
        struct nic_dpdk_queue *q = &d->queues[qid];
        char name[RTE_MEMPOOL_NAMESIZE];
        uint32_t n = cfg->mbufs != 0 ? cfg->mbufs : NIC_DPDK_MBUFS_DEFAULT;
        int rc;
        snprintf(name, sizeof name, "aq_p%u_q%u", d->port_id, qid);
        q->pool = rte_pktmbuf_pool_create(name, n, NIC_DPDK_POOL_CACHE, 0,
                                          RTE_MBUF_DEFAULT_BUF_SIZE, socket);
        if (q->pool == NULL) {
                rc = rte_errno != 0 ? -rte_errno : -ENOMEM;
                shm_log(SHM_LOG_ERR, "nic_dpdk: mbuf pool %s (%u mbufs, socket %d): %s", name, n,
                        socket, rte_strerror(-rc));
                return rc;
        }
        rc = rte_eth_rx_queue_setup(d->port_id, qid, nb_rxd, (unsigned)socket, NULL, q->pool);
        if (rc == 0)
                rc = rte_eth_tx_queue_setup(d->port_id, qid, nb_txd, (unsigned)socket, NULL);
        if (rc != 0) {
                shm_log(SHM_LOG_ERR, "nic_dpdk: port %u queue %u setup: %s", d->port_id, qid,
                        rte_strerror(-rc));
                return rc;
        }
        q->port_id = d->port_id;
        q->queue_id = qid;
        return 0;
}

/* Our MAC: the override (the port goes promiscuous so frames to it
 * arrive), or the port's own. */
static int nic_dpdk_mac_pick(struct nic_dpdk *d, const struct nic_dpdk_config *cfg)
{
        static const uint8_t zero[6];
        struct rte_ether_addr a;
        int rc;
        if (memcmp(cfg->mac, zero, 6) == 0) {
                rc = rte_eth_macaddr_get(d->port_id, &a);
                if (rc != 0)
                        return rc;
                memcpy(d->mac, a.addr_bytes, 6);
                /* net_ring has no address: frames still flow, but no real
                 * peer would send to it. */
                if (memcmp(d->mac, zero, 6) == 0)
                        shm_log(SHM_LOG_WARN, "nic_dpdk: port %u has MAC 00:00:00:00:00:00; "
                                "configure one for a real link", d->port_id);
                return 0;
        }
        memcpy(d->mac, cfg->mac, 6);
        rc = rte_eth_promiscuous_enable(d->port_id);
        if (rc != 0)
                shm_log(SHM_LOG_WARN, "nic_dpdk: port %u: promiscuous mode: %s; frames to "
                        "the configured MAC arrive only if the port passes them",
                        d->port_id, rte_strerror(-rc));
        d->promiscuous = rc == 0;
        return 0;
}

/* Configures the port, its queues and offloads (port already picked). */
static int nic_dpdk_port_setup(struct nic_dpdk *d, const struct nic_dpdk_config *cfg,
                               struct rte_eth_dev_info *di)
{
        struct rte_eth_conf conf;
        uint16_t nq, nb_rxd = cfg->rx_desc ? cfg->rx_desc : NIC_DPDK_DESC_DEFAULT;
        uint16_t nb_txd = cfg->tx_desc ? cfg->tx_desc : NIC_DPDK_DESC_DEFAULT;
        int rc, socket = rte_eth_dev_socket_id(d->port_id);
        if (socket < 0)  /* a virtual device: no socket of its own */
                socket = (int)rte_socket_id();
        memset(&conf, 0, sizeof conf);
        rc = rte_eth_dev_info_get(d->port_id, di);
        if (rc == 0)
                rc = nic_dpdk_queues_pick(di, cfg, &conf, &nq);
        if (rc != 0)
                return rc;
        if ((di->rx_offload_capa & NIC_DPDK_RX_CSUM) == NIC_DPDK_RX_CSUM)
                conf.rxmode.offloads |= NIC_DPDK_RX_CSUM;
        if ((di->tx_offload_capa & NIC_DPDK_TX_CSUM) == NIC_DPDK_TX_CSUM)
                conf.txmode.offloads |= NIC_DPDK_TX_CSUM;
        rc = rte_eth_dev_configure(d->port_id, nq, nq, &conf);
        if (rc == 0)
                rc = rte_eth_dev_adjust_nb_rx_tx_desc(d->port_id, &nb_rxd, &nb_txd);
        if (rc != 0) {
                shm_log(SHM_LOG_ERR, "nic_dpdk: port %u (%s) configure %u queues: %s",
                        d->port_id, di->driver_name, nq, rte_strerror(-rc));
                return rc;
        }
        d->queue_count = nq;
        for (uint16_t i = 0; i < nq; i++) {
                rc = nic_dpdk_queue_setup(d, cfg, i, nb_rxd, nb_txd, socket);
                if (rc != 0)
                        return rc;
                d->queues[i].rx_csum_offload = (conf.rxmode.offloads & NIC_DPDK_RX_CSUM) != 0;
                d->queues[i].tx_csum_offload = (conf.txmode.offloads & NIC_DPDK_TX_CSUM) != 0;
        }
        return 0;
}

/* What each queue needs to know of us, and the largest payload: the MTU
 * less IPv4 and UDP headers, and no more than one mbuf holds. */
static void nic_dpdk_queues_finish(struct nic_dpdk *d, const struct nic_dpdk_config *cfg)
{
        uint16_t mtu = 1500;
        (void)rte_eth_dev_get_mtu(d->port_id, &mtu);
        for (uint16_t i = 0; i < d->queue_count; i++) {
                struct nic_dpdk_queue *q = &d->queues[i];
                uint32_t room = rte_pktmbuf_data_room_size(q->pool) - RTE_PKTMBUF_HEADROOM;
                uint32_t max = mtu > NIC_PKT_IP_LEN + NIC_PKT_UDP_LEN
                                       ? mtu - NIC_PKT_IP_LEN - NIC_PKT_UDP_LEN : 0;
                if (max > room - NIC_PKT_HDRS_LEN)
                        max = room - NIC_PKT_HDRS_LEN;
                q->payload_max = (uint16_t)(max < NIC_DGRAM_BYTES_MAX ? max : NIC_DGRAM_BYTES_MAX);
                memcpy(q->mac, d->mac, 6);
                q->ip = cfg->ip;
                q->udp_port = cfg->udp_port;
        }
}

/* Undoes what init did: frees held frames, stops and closes the port,
 * frees the pools, cleans up the EAL. */
static void nic_dpdk_teardown(struct nic_dpdk *d, bool port_open, bool port_started)
{
        for (uint16_t i = 0; i < NIC_DPDK_QUEUES_MAX; i++) {
                struct nic_dpdk_queue *q = &d->queues[i];
                if (q->tx_count != 0)
                        rte_pktmbuf_free_bulk(q->tx, q->tx_count);
                q->tx_count = 0;
        }
        if (port_started)
                (void)rte_eth_dev_stop(d->port_id);
        if (port_open)
                (void)rte_eth_dev_close(d->port_id);
        /* After close: the port's rings no longer hold mbufs of these pools. */
        for (uint16_t i = 0; i < NIC_DPDK_QUEUES_MAX; i++) {
                rte_mempool_free(d->queues[i].pool);
                d->queues[i].pool = NULL;
        }
        d->started = false;
        if (d->eal_external)
                return;
        /* rte_eal_cleanup leaves the runtime directory (/var/run/dpdk/<file
         * prefix>) behind, empty with --no-shconf or --in-memory: one per
         * process adds up in CI. rmdir removes it only when it is empty. */
        char run_dir[PATH_MAX];
        snprintf(run_dir, sizeof run_dir, "%s", rte_eal_get_runtime_dir());
        (void)rte_eal_cleanup();
        if (run_dir[0] != '\0')
                (void)rmdir(run_dir);
}

int nic_dpdk_init(struct nic_dpdk *d, const struct nic_dpdk_config *cfg)
{
        struct rte_eth_dev_info di;
        char ip[16];
        int rc = nic_dpdk_config_check(cfg);
        memset(d, 0, sizeof *d);
        if (rc != 0) {
                shm_log(SHM_LOG_ERR, "nic_dpdk: bad config (queues 1..%u, an IP address, a UDP "
                        "port, a unicast MAC, sizes in range)", NIC_DPDK_QUEUES_MAX);
                return rc;
        }
        d->eal_external = cfg->eal_external;
        rc = cfg->eal_external ? 0 : nic_dpdk_eal_start(d, cfg->eal_args);
        if (rc != 0)
                return rc;
        rc = nic_dpdk_port_pick(cfg, &d->port_id);
        bool port_open = rc == 0;
        if (rc == 0)
                rc = nic_dpdk_port_setup(d, cfg, &di);
        if (rc == 0)
                rc = nic_dpdk_mac_pick(d, cfg);
        if (rc == 0) {
                rc = rte_eth_dev_start(d->port_id);
                if (rc != 0)
                        shm_log(SHM_LOG_ERR, "nic_dpdk: port %u start: %s", d->port_id,
                                rte_strerror(-rc));
        }
        if (rc != 0) {
                nic_dpdk_teardown(d, port_open, false);
                return rc;
        }
        nic_dpdk_queues_finish(d, cfg);
        d->started = true;
        snprintf(ip, sizeof ip, "%u.%u.%u.%u", ((const uint8_t *)&cfg->ip)[0],
                 ((const uint8_t *)&cfg->ip)[1], ((const uint8_t *)&cfg->ip)[2],
                 ((const uint8_t *)&cfg->ip)[3]);
        shm_log(SHM_LOG_INFO, "nic_dpdk: port %u (%s) %u queue(s), %02x:%02x:%02x:%02x:%02x:%02x "
                "%s:%u, checksums rx %s tx %s, payload max %u",
                d->port_id, di.driver_name, d->queue_count, d->mac[0], d->mac[1], d->mac[2],
                d->mac[3], d->mac[4], d->mac[5], ip, rte_be_to_cpu_16(cfg->udp_port),
                d->queues[0].rx_csum_offload ? "nic" : "sw",
                d->queues[0].tx_csum_offload ? "nic" : "sw", d->queues[0].payload_max);
        return 0;
}

void nic_dpdk_fini(struct nic_dpdk *d)
{
        if (!d->started)
                return;
        nic_dpdk_teardown(d, true, true);
}

struct nic_dpdk_queue *nic_dpdk_queue(struct nic_dpdk *d, uint16_t i)
{
        return i < d->queue_count ? &d->queues[i] : NULL;
}

int nic_dpdk_thread_register(void)
{
        if (rte_lcore_id() != LCORE_ID_ANY)
                return 0;
        if (rte_thread_register() != 0)
                return rte_errno != 0 ? -rte_errno : -EINVAL;
        return 0;
}

void nic_dpdk_thread_unregister(void)
{
        rte_thread_unregister();
}

size_t nic_dpdk_payload_max(const struct nic_dpdk_queue *q)
{
        return q->payload_max;
}

const struct nic_dpdk_stats *nic_dpdk_stats(const struct nic_dpdk_queue *q)
{
        return &q->stats;
}

/* --- the data path --------------------------------------------------------- */

static inline void nic_dpdk_me(const struct nic_dpdk_queue *q, struct nic_pkt_me *me)
{
        me->ip = q->ip;
        me->port = q->udp_port;
        memcpy(me->mac, q->mac, 6);
}

/* What the NIC said of the checksums, in the parser's terms. "NONE" means
 * the data is intact though the field is not (virtio): as good as GOOD. */
static inline unsigned nic_dpdk_rx_csum(const struct nic_dpdk_queue *q, const struct rte_mbuf *m)
{
        unsigned c = 0;
        if (!q->rx_csum_offload)
                return 0;
        switch (m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK) {
        case RTE_MBUF_F_RX_IP_CKSUM_GOOD:
        case RTE_MBUF_F_RX_IP_CKSUM_NONE: c |= NIC_PKT_CSUM_IP_GOOD; break;
        case RTE_MBUF_F_RX_IP_CKSUM_BAD: c |= NIC_PKT_CSUM_IP_BAD; break;
        default: break;
        }
        switch (m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK) {
        case RTE_MBUF_F_RX_L4_CKSUM_GOOD:
        case RTE_MBUF_F_RX_L4_CKSUM_NONE: c |= NIC_PKT_CSUM_L4_GOOD; break;
        case RTE_MBUF_F_RX_L4_CKSUM_BAD: c |= NIC_PKT_CSUM_L4_BAD; break;
        default: break;
        }
        return c;
}

/* A frame we drop: its counter. */
static inline void nic_dpdk_count_drop(struct nic_dpdk_queue *q, enum nic_pkt_verdict v)
{
        switch (v) {
        case NIC_PKT_MALFORMED: q->stats.rx_malformed++; break;
        case NIC_PKT_BAD_CSUM: q->stats.rx_bad_csum++; break;
        case NIC_PKT_NOT_FOR_US: q->stats.rx_not_for_us++; break;
        default: q->stats.rx_other++; break;
        }
}

/* Queues m for the next flush, or frees it when the pending array is full. */
static inline bool nic_dpdk_tx_queue(struct nic_dpdk_queue *q, struct rte_mbuf *m)
{
        if (q->tx_count == NIC_DPDK_TX_PENDING_MAX) {
                q->stats.tx_dropped++;
                rte_pktmbuf_free(m);
                return false;
        }
        q->tx[q->tx_count] = m;
        q->tx_len[q->tx_count] = (uint16_t)m->pkt_len;
        q->tx_count++;
        return true;
}

/* Turns an ARP or ICMP echo request into its answer in the same mbuf. */
static void nic_dpdk_answer(struct nic_dpdk_queue *q, const struct nic_pkt_me *me,
                            struct rte_mbuf *m, enum nic_pkt_verdict v,
                            const struct nic_pkt_info *info)
{
        uint8_t *f = rte_pktmbuf_mtod(m, uint8_t *);
        size_t len = v == NIC_PKT_ARP_REQUEST ? nic_pkt_arp_reply(me, f, info)
                                              : nic_pkt_icmp_reply(me, f, info);
        DP_ASSERT(len <= m->data_len);  /* the parser saw these bytes */
        m->data_len = (uint16_t)len;
        m->pkt_len = (uint32_t)len;
        m->ol_flags = 0;  /* rx flags off; checksums are done in software */
        if (!nic_dpdk_tx_queue(q, m))
                return;
        if (v == NIC_PKT_ARP_REQUEST)
                q->stats.arp_replies++;
        else
                q->stats.icmp_replies++;
}

int nic_dpdk_poll(struct nic_dpdk_queue *q, nic_dgram_fn *fn, void *arg)
{
        struct rte_mbuf *pkts[NIC_DPDK_BURST];
        struct rte_mbuf *dead[NIC_DPDK_BURST];
        struct nic_pkt_me me;
        struct nic_pkt_info info;
        unsigned ndead = 0;
        uint16_t n = rte_eth_rx_burst(q->port_id, q->queue_id, pkts, NIC_DPDK_BURST);
        nic_dpdk_me(q, &me);
        for (uint16_t i = 0; i < n; i++) {
                struct rte_mbuf *m = pkts[i];
                const uint8_t *f = rte_pktmbuf_mtod(m, const uint8_t *);
                enum nic_pkt_verdict v = NIC_PKT_MALFORMED;
                if (i + 1u < n)
                        rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 1], void *));
                q->stats.rx_pkts++;
                q->stats.rx_bytes += m->pkt_len;
                if (m->nb_segs == 1)
                        v = nic_pkt_parse(&me, f, m->data_len, nic_dpdk_rx_csum(q, m), &info);
                if (v == NIC_PKT_UDP) {
                        q->stats.rx_dgrams++;
                        fn(arg, &info.from, f + info.off, info.len);
                } else if (v == NIC_PKT_ARP_REQUEST || v == NIC_PKT_ICMP_ECHO) {
                        nic_dpdk_answer(q, &me, m, v, &info);
                        continue;
                } else {
                        nic_dpdk_count_drop(q, v);
                }
                dead[ndead++] = m;
        }
        if (ndead != 0)
                rte_pktmbuf_free_bulk(dead, ndead);
        return n;
}

int nic_dpdk_flush(struct nic_dpdk_queue *q)
{
        uint32_t done = 0;
        uint64_t bytes = 0;
        /* Each round sends at least one frame or stops: at most tx_count
         * rounds, and usually one. */
        while (done < q->tx_count) {
                uint16_t sent = rte_eth_tx_burst(q->port_id, q->queue_id, q->tx + done,
                                                 (uint16_t)(q->tx_count - done));
                if (sent == 0)
                        break;
                for (uint32_t k = done; k < done + sent; k++)
                        bytes += q->tx_len[k];
                done += sent;
        }
        if (done == 0)
                return 0;
        q->stats.tx_pkts += done;
        q->stats.tx_bytes += bytes;
        q->tx_count -= done;
        /* Keep the rest in order for the next flush. */
        memmove(q->tx, q->tx + done, q->tx_count * sizeof q->tx[0]);
        memmove(q->tx_len, q->tx_len + done, q->tx_count * sizeof q->tx_len[0]);
        return (int)done;
}

int nic_dpdk_send(struct nic_dpdk_queue *q, const struct nic_dgram_addr *to, const void *data,
                  size_t len)
{
        struct nic_pkt_me me;
        struct rte_mbuf *m;
        uint8_t *f;
        if (len > q->payload_max)
                return -EMSGSIZE;
        if (q->tx_count == NIC_DPDK_TX_PENDING_MAX && nic_dpdk_flush(q) == 0) {
                q->stats.tx_full++;
                return -ENOBUFS;
        }
        m = rte_pktmbuf_alloc(q->pool);
        if (m == NULL) {
                q->stats.no_mbufs++;
                return -ENOBUFS;
        }
        /* payload_max leaves room for the headers in one mbuf. */
        f = (uint8_t *)rte_pktmbuf_append(m, (uint16_t)(NIC_PKT_HDRS_LEN + len));
        DP_VERIFY(f != NULL);
        memcpy(f + NIC_PKT_HDRS_LEN, data, len);
        nic_dpdk_me(q, &me);
        nic_pkt_udp_build(f, &me, to, len, q->tx_csum_offload);
        if (q->tx_csum_offload) {
                m->ol_flags = RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM | RTE_MBUF_F_TX_UDP_CKSUM;
                m->l2_len = NIC_PKT_ETH_LEN;
                m->l3_len = NIC_PKT_IP_LEN;
        }
        (void)nic_dpdk_tx_queue(q, m);  /* room was made above */
        if (q->tx_count >= NIC_DPDK_BURST)
                (void)nic_dpdk_flush(q);
        return 0;
}

int nic_dpdk_echo_burst(struct nic_dpdk_queue *q)
{
        struct rte_mbuf *pkts[NIC_DPDK_BURST];
        struct rte_mbuf *out[NIC_DPDK_BURST];
        struct rte_mbuf *dead[NIC_DPDK_BURST];
        uint16_t out_len[NIC_DPDK_BURST];
        struct nic_pkt_me me;
        struct nic_pkt_info info;
        unsigned nout = 0, ndead = 0;
        /* The parser still checks every length (it must), but not the
         * checksums: a forwarder does not. */
        const unsigned trust = NIC_PKT_CSUM_IP_GOOD | NIC_PKT_CSUM_L4_GOOD;
        uint16_t n = rte_eth_rx_burst(q->port_id, q->queue_id, pkts, NIC_DPDK_BURST);
        nic_dpdk_me(q, &me);
        for (uint16_t i = 0; i < n; i++) {
                struct rte_mbuf *m = pkts[i];
                uint8_t *f = rte_pktmbuf_mtod(m, uint8_t *);
                enum nic_pkt_verdict v = NIC_PKT_MALFORMED;
                q->stats.rx_pkts++;
                q->stats.rx_bytes += m->pkt_len;
                if (m->nb_segs == 1)
                        v = nic_pkt_parse(&me, f, m->data_len, trust, &info);
                if (v != NIC_PKT_UDP) {
                        nic_dpdk_count_drop(q, v);
                        dead[ndead++] = m;
                        continue;
                }
                q->stats.rx_dgrams++;
                nic_pkt_udp_swap(f, &info);
                m->ol_flags = 0;
                out_len[nout] = (uint16_t)m->pkt_len;
                out[nout++] = m;
        }
        uint16_t sent = nout != 0 ? rte_eth_tx_burst(q->port_id, q->queue_id, out, (uint16_t)nout) : 0;
        for (uint16_t k = 0; k < sent; k++)
                q->stats.tx_bytes += out_len[k];
        q->stats.tx_pkts += sent;
        if (sent < nout) {
                q->stats.tx_dropped += nout - sent;
                rte_pktmbuf_free_bulk(out + sent, nout - sent);
        }
        if (ndead != 0)
                rte_pktmbuf_free_bulk(dead, ndead);
        return n;
}
