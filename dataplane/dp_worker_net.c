/* dp_worker_net.c - a worker's network: one io_uring backend (nic_uring.h)
 * for both its protocols, the NATS listener (TCP, dp_nats.h) and atomq
 * datagrams (UDP, dp_dgram.h), so one ring's completions and one idle
 * sleep serve both. The backend calls back here and this file hands each
 * event to the protocol it belongs to. A polled datagram backend (a DPDK
 * queue, the engine's dgram_nic) feeds the same sessions: polled every
 * pass, flushed at its end.
 *
 * Everything here runs on the worker's thread: the ring is single-issuer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/dp_dgram.h"
#include "dataplane/dp_disk.h"
#include "dataplane/dp_engine.h"
#include "dataplane/dp_nats.h"
#include "dataplane/dp_worker_pvt.h"
#include "nic/nic_uring.h"
#include "shm/shm_log.h"

static void dp_net_on_open(void *arg, uint32_t conn)
{
        struct dp_worker *w = arg;
        dp_nats_on_open(w->nats, conn);
}

static void dp_net_on_data(void *arg, uint32_t conn, const uint8_t *data, size_t len)
{
        struct dp_worker *w = arg;
        dp_nats_on_data(w->nats, conn, data, len);
}

static void dp_net_on_close(void *arg, uint32_t conn, enum nic_close_reason reason)
{
        struct dp_worker *w = arg;
        dp_nats_on_close(w->nats, conn, reason);
}

static void dp_net_on_dgram(void *arg, const struct nic_dgram_addr *from, const uint8_t *data,
                            size_t len)
{
        struct dp_worker *w = arg;
        dp_dgram_input(w->udp_port, from, data, len);
}

static int dp_net_udp_send(void *ctx, const struct nic_dgram_addr *to, const void *data,
                           size_t len)
{
        return nic_uring_udp_send(ctx, to, data, len);
}

static int dp_net_q_send(void *ctx, const struct nic_dgram_addr *to, const void *data,
                         size_t len)
{
        struct dp_worker *w = ctx;
        return w->engine->dgram_nic.ops->send(w->dgram_q, to, data, len);
}

/* The polled backend's queue of this worker, as a port of its sessions. */
static int dp_net_polled_open(struct dp_worker *w)
{
        const struct nic_dgram_backend *b = &w->engine->dgram_nic;
        if (b->ops == NULL || w->dgram == NULL)
                return 0;
        w->dgram_q = b->ops->queue(b->ctx, w->index);
        if (w->dgram_q == NULL)
                return 0;   /* fewer queues than workers: this one has none */
        int rc = b->ops->thread_init(b->ctx);
        if (rc != 0)
                return rc;
        struct dp_dgram_tx tx = { .send = dp_net_q_send, .ctx = w,
                                  .bytes_max = b->ops->bytes_max(w->dgram_q) };
        w->dgram_q_port = dp_dgram_port_add(w->dgram, &tx);
        return w->dgram_q_port != NULL ? 0 : -EINVAL;
}

static int dp_net_wait(void *arg, struct shm_wake *const *words, const uint32_t *seq,
                       uint32_t count, int64_t timeout_ns)
{
        struct dp_worker *w = arg;
        return nic_uring_wait(w->nic, words, seq, count, timeout_ns);
}

/* Adds what the polled backend counted since the last time to the
 * worker's arena counters. */
static void dp_net_polled_stats(struct dp_worker *w)
{
        struct nic_dgram_stats now;
        struct nic_dgram_stats *seen = &w->dgram_q_seen;
        struct dp_nic_counters *c = &w->stats->nic;
        w->engine->dgram_nic.ops->stats(w->dgram_q, &now);
        dp_counter_add(&c->rx_pkts, now.rx_pkts - seen->rx_pkts);
        dp_counter_add(&c->rx_malformed, now.rx_malformed - seen->rx_malformed);
        dp_counter_add(&c->rx_bad_csum, now.rx_bad_csum - seen->rx_bad_csum);
        dp_counter_add(&c->rx_not_for_us, now.rx_not_for_us - seen->rx_not_for_us);
        dp_counter_add(&c->rx_other, now.rx_other - seen->rx_other);
        dp_counter_add(&c->arp_replies, now.arp_replies - seen->arp_replies);
        dp_counter_add(&c->icmp_replies, now.icmp_replies - seen->icmp_replies);
        dp_counter_add(&c->tx_pkts, now.tx_pkts - seen->tx_pkts);
        dp_counter_add(&c->tx_full, now.tx_full - seen->tx_full);
        dp_counter_add(&c->tx_dropped, now.tx_dropped - seen->tx_dropped);
        dp_counter_add(&c->no_mbufs, now.no_mbufs - seen->no_mbufs);
        *seen = now;
}

/* The backend: TCP when NATS is on, UDP when datagrams are. */
static int dp_net_nic_open(struct dp_worker *w, const struct dp_nats_config *nc,
                           const struct dp_dgram_config *dc)
{
        static const struct nic_uring_ops ops = {
                .on_open = dp_net_on_open,
                .on_data = dp_net_on_data,
                .on_close = dp_net_on_close,
                .on_dgram = dp_net_on_dgram,
        };
        struct nic_uring_config cfg;
        nic_uring_config_default(&cfg);
        cfg.tcp = nc->enabled;
        if (nc->enabled) {
                memcpy(cfg.host, nc->host, sizeof(cfg.host));
                cfg.port = nc->port;
                cfg.max_conns = nc->max_conns;
                cfg.out_max_bytes = nc->max_pending;
        }
        cfg.udp = dc->enabled && dc->kernel;
        if (cfg.udp) {
                memcpy(cfg.udp_host, dc->host, sizeof(cfg.udp_host));
                cfg.udp_port = dc->port;
        }
        w->nic = calloc(1, nic_uring_size());
        if (w->nic == NULL)
                return -ENOMEM;
        int rc = nic_uring_init(w->nic, &cfg, &ops, w);
        if (rc != 0) {
                free(w->nic);
                w->nic = NULL;
        }
        return rc;
}

int dp_worker_net_open(struct dp_worker *w)
{
        const struct dp_nats_config *nc = &w->engine->nats;
        const struct dp_dgram_config *dc = &w->engine->dgram;
        if (!nc->enabled && !dc->enabled)
                return 0;
        int client = dc->enabled ? dp_engine_net_client(w->engine, w->index) : 0;
        if (client < 0) {
                shm_log(SHM_LOG_ERR, "worker %u: datagrams need an arena with net columns",
                        w->index);
                return -EINVAL;
        }
        int rc = dp_net_nic_open(w, nc, dc);
        if (rc == 0 && nc->enabled)
                rc = dp_nats_init(&w->nats, w, nc);
        if (rc == 0 && dc->enabled)
                rc = dp_dgram_init(&w->dgram, w, dc, (uint32_t)client);
        if (rc == 0 && dc->enabled && dc->kernel) {
                struct dp_dgram_tx tx = { .send = dp_net_udp_send, .ctx = w->nic,
                                          .bytes_max = NIC_DGRAM_BYTES_MAX };
                w->udp_port = dp_dgram_port_add(w->dgram, &tx);
                rc = w->udp_port != NULL ? 0 : -EINVAL;
        }
        if (rc == 0)
                rc = dp_net_polled_open(w);
        if (rc != 0) {
                dp_worker_net_close(w);
                return rc;
        }
        dp_idle_set_waiter(&w->idle, dp_net_wait, w);
        if (dp_disk_eventfd(w->disk) >= 0)
                w->disk_watched = nic_uring_watch(w->nic, dp_disk_eventfd(w->disk)) == 0;
        return 0;
}

void dp_worker_net_close(struct dp_worker *w)
{
        if (w->nic == NULL)
                return;
        dp_idle_set_waiter(&w->idle, NULL, NULL);
        /* The backend first: it ends the connections through on_close,
         * which the NATS layer must still be there to take. */
        nic_uring_fini(w->nic);
        dp_nats_fini(w->nats);
        w->nats = NULL;
        if (w->dgram_q != NULL)
                dp_net_polled_stats(w);
        dp_dgram_fini(w->dgram);
        w->dgram = NULL;
        w->udp_port = NULL;
        w->dgram_q = NULL;
        w->dgram_q_port = NULL;
        w->dgram_q_seen = (struct nic_dgram_stats){ 0 };
        free(w->nic);
        w->nic = NULL;
        w->disk_watched = false;
}

int dp_worker_net_poll(struct dp_worker *w, uint64_t now_ns)
{
        if (w->nic == NULL)
                return 0;
        int rc = nic_uring_poll(w->nic);
        int work = rc > 0 ? rc : 0;
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
                dp_counter_inc(&w->stats->net_errors);
        if (w->dgram_q != NULL) {
                rc = w->engine->dgram_nic.ops->poll(w->dgram_q, dp_dgram_input, w->dgram_q_port);
                work += rc > 0 ? rc : 0;
                if (rc < 0)
                        dp_counter_inc(&w->stats->net_errors);
                if (now_ns - w->dgram_q_stats_ns >= DP_NET_STATS_NS) {
                        w->dgram_q_stats_ns = now_ns;
                        dp_net_polled_stats(w);
                }
        }
        if (w->nats != NULL)
                work += dp_nats_poll(w->nats, now_ns);
        if (w->dgram != NULL)
                work += dp_dgram_poll(w->dgram, now_ns);
        return work;
}

void dp_worker_net_flush(struct dp_worker *w)
{
        if (w->dgram != NULL)
                dp_dgram_flush(w->dgram);
        if (w->dgram_q != NULL)
                (void)w->engine->dgram_nic.ops->flush(w->dgram_q);
        if (w->nic != NULL) {
                int rc = nic_uring_flush(w->nic);
                /* The busy ones are retried at the next flush. */
                if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
                        dp_counter_inc(&w->stats->net_errors);
        }
}
