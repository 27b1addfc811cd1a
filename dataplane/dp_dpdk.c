/* dp_dpdk.c - atomq-dataplane's DPDK port as the workers' polled datagram
 * backend (dp_dpdk.h). The worker side sees only struct nic_dgram_ops.
 */
#include "dataplane/dp_dpdk.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shm/shm_log.h"

#ifdef ATOMQ_HAVE_DPDK
#include "nic/nic_dpdk.h"

static struct nic_dpdk dp_dpdk_port;

static int dp_dpdk_thread_init(void *ctx)
{
        (void)ctx;
        return nic_dpdk_thread_register();
}

static void *dp_dpdk_queue(void *ctx, uint32_t w)
{
        return w > UINT16_MAX ? NULL : nic_dpdk_queue(ctx, (uint16_t)w);
}

static int dp_dpdk_poll(void *q, nic_dgram_fn *fn, void *arg)
{
        return nic_dpdk_poll(q, fn, arg);
}

static int dp_dpdk_send(void *q, const struct nic_dgram_addr *to, const void *data, size_t len)
{
        return nic_dpdk_send(q, to, data, len);
}

static int dp_dpdk_flush(void *q)
{
        return nic_dpdk_flush(q);
}

static uint32_t dp_dpdk_bytes_max(void *q)
{
        return (uint32_t)nic_dpdk_payload_max(q);
}

static void dp_dpdk_stats(void *q, struct nic_dgram_stats *out)
{
        const struct nic_dpdk_stats *s = nic_dpdk_stats(q);
        *out = (struct nic_dgram_stats){
                .rx_pkts = s->rx_pkts, .rx_malformed = s->rx_malformed,
                .rx_bad_csum = s->rx_bad_csum, .rx_not_for_us = s->rx_not_for_us,
                .rx_other = s->rx_other, .arp_replies = s->arp_replies,
                .icmp_replies = s->icmp_replies, .tx_pkts = s->tx_pkts,
                .tx_full = s->tx_full, .tx_dropped = s->tx_dropped, .no_mbufs = s->no_mbufs,
        };
}

static const struct nic_dgram_ops dp_dpdk_ops = {
        .thread_init = dp_dpdk_thread_init,
        .queue = dp_dpdk_queue,
        .poll = dp_dpdk_poll,
        .send = dp_dpdk_send,
        .flush = dp_dpdk_flush,
        .bytes_max = dp_dpdk_bytes_max,
        .stats = dp_dpdk_stats,
};

/* "IPv4:PORT" into network-order ip and port. */
static int dp_dpdk_addr(const char *addr, uint32_t *ip, uint16_t *port)
{
        char host[32];
        const char *colon = strrchr(addr, ':');
        if (colon == NULL || (size_t)(colon - addr) >= sizeof(host))
                return -EINVAL;
        memcpy(host, addr, (size_t)(colon - addr));
        host[colon - addr] = '\0';
        char *end;
        unsigned long p = strtoul(colon + 1, &end, 10);
        struct in_addr in;
        if (*end != '\0' || end == colon + 1 || p == 0 || p > 65535 ||
            inet_pton(AF_INET, host, &in) != 1)
                return -EINVAL;
        *ip = in.s_addr;
        *port = htons((uint16_t)p);
        return 0;
}

int dp_dpdk_open(struct dp_engine *e, const char *eal_args, const char *addr)
{
        struct nic_dpdk_config cfg;
        nic_dpdk_config_default(&cfg);
        if (!e->dgram.enabled) {
                shm_log(SHM_LOG_ERR, "--dpdk-args: datagrams are off (give --udp)");
                return -EINVAL;
        }
        if (addr == NULL || dp_dpdk_addr(addr, &cfg.ip, &cfg.udp_port) != 0) {
                shm_log(SHM_LOG_ERR, "--dpdk-addr %s: not IPv4:PORT", addr ? addr : "(none)");
                return -EINVAL;
        }
        if (strlen(eal_args) >= sizeof(cfg.eal_args)) {
                shm_log(SHM_LOG_ERR, "--dpdk-args: longer than %zu bytes", sizeof(cfg.eal_args) - 1);
                return -EINVAL;
        }
        strcpy(cfg.eal_args, eal_args);
        cfg.queues = (uint16_t)(e->workers < NIC_DPDK_QUEUES_MAX ? e->workers : NIC_DPDK_QUEUES_MAX);
        int rc = nic_dpdk_init(&dp_dpdk_port, &cfg);
        if (rc != 0)
                return rc;
        dp_dpdk_serve(e, &dp_dpdk_port);
        return 0;
}

void dp_dpdk_serve(struct dp_engine *e, struct nic_dpdk *nic)
{
        e->dgram_nic = (struct nic_dgram_backend){ .ops = &dp_dpdk_ops, .ctx = nic };
}

void dp_dpdk_close(struct dp_engine *e)
{
        if (e->dgram_nic.ops == NULL)
                return;
        e->dgram_nic = (struct nic_dgram_backend){ 0 };
        nic_dpdk_fini(&dp_dpdk_port);
}

#else /* !ATOMQ_HAVE_DPDK */

int dp_dpdk_open(struct dp_engine *e, const char *eal_args, const char *addr)
{
        (void)e;
        (void)eal_args;
        (void)addr;
        shm_log(SHM_LOG_ERR, "--dpdk-args: this atomq-dataplane was built without DPDK "
                "(apt-get install dpdk-dev, then rebuild)");
        return -ENOTSUP;
}

void dp_dpdk_close(struct dp_engine *e)
{
        (void)e;
}

#endif
