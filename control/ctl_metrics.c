/* ctl_metrics.c - Prometheus text, JSON and the status page, rendered from
 * the arena's counters (see ctl_metrics.h). */
#include "control/ctl_metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "control/ctl_config.h"
#include "dataplane/dp_engine.h"
#include "dataplane/dp_mode.h"

/* --- a bounded output buffer --- */

struct ctl_mbuf {
        char *p;
        size_t len;
        size_t cap;
        bool full;      /* something did not fit: the text is cut */
};

__attribute__((format(printf, 2, 3)))
static void mb_printf(struct ctl_mbuf *b, const char *fmt, ...)
{
        if (b->full)
                return;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= b->cap - b->len) {
                b->full = true;
                return;
        }
        b->len += (size_t)n;
}

static void mb_put(struct ctl_mbuf *b, const char *s, size_t n)
{
        if (b->full || n >= b->cap - b->len) {
                b->full = true;
                return;
        }
        memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = '\0';
}

static void mb_puts(struct ctl_mbuf *b, const char *s)
{
        mb_put(b, s, strlen(s));
}

static int mb_result(const struct ctl_mbuf *b)
{
        return b->full ? -ENOSPC : (int)b->len;
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if it is not one
 * (overlong forms, surrogates and values past U+10FFFF are not). */
static size_t utf8_seq(const uint8_t *s, size_t n)
{
        uint32_t c = s[0];
        size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
        if (c >= 0xf8 || len == 0 || len > n)
                return 0;
        uint32_t cp = c & (0x7fu >> len);
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (s[i] & 0x3f);
        }
        static const uint32_t min[5] = { 0, 0, 0x80, 0x800, 0x10000 };
        if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return len;
}

/* A JSON string (RFC 8259 section 7). Bytes that are not UTF-8 become
 * U+FFFD: a name read from shared memory is not trusted to be text. */
static void mb_json_str(struct ctl_mbuf *b, const char *s, size_t n)
{
        const uint8_t *u = (const uint8_t *)s;
        mb_put(b, "\"", 1);
        for (size_t i = 0; i < n && !b->full;) {
                uint8_t c = u[i];
                if (c == '"' || c == '\\') {
                        mb_printf(b, "\\%c", c);
                        i++;
                } else if (c < 0x20 || c == 0x7f) {
                        mb_printf(b, "\\u%04x", c);
                        i++;
                } else if (c < 0x80) {
                        mb_put(b, (const char *)&u[i], 1);
                        i++;
                } else {
                        size_t k = utf8_seq(u + i, n - i);
                        if (k == 0) {
                                mb_puts(b, "\\ufffd");
                                i++;
                        } else {
                                mb_put(b, (const char *)&u[i], k);
                                i += k;
                        }
                }
        }
        mb_put(b, "\"", 1);
}

/* --- reading the arena --- */

/* Shard counters are plain words with one writer (the worker); a relaxed
 * atomic load reads each whole, as dp_counter_get does for worker ones. */
static uint64_t ld64(const uint64_t *p)
{
        return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static uint32_t ld32(const uint32_t *p)
{
        return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static uint64_t now_ns(clockid_t clk)
{
        struct timespec ts;
        clock_gettime(clk, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint32_t eng_workers(const struct ctl_metrics *m)
{
        const struct dp_engine *e = m->ctx->engine;
        if (e == NULL || e->w == NULL)
                return 0;
        return e->workers < DP_WORKERS_MAX ? e->workers : DP_WORKERS_MAX;
}

/* Every loop pass that found no work, spinning, yielding or sleeping. */
static uint64_t idle_passes(const struct dp_worker_stats *ws)
{
        return dp_counter_get(&ws->idle.passes);
}

/* Bytes waiting in worker i's command ring, from the shared head and tail
 * (relaxed: a gauge). A corrupt header cannot make it exceed capacity. */
static uint64_t cmd_ring_used(const struct dp_engine *e, uint32_t i)
{
        const struct shm_mpsc *r = &e->cmd_prod[i];
        uint64_t head = atomic_load_explicit(&r->hdr->head, memory_order_relaxed);
        uint64_t tail = atomic_load_explicit(&r->hdr->tail, memory_order_relaxed);
        uint64_t used = head - tail;
        return used > r->capacity ? r->capacity : used;
}

void ctl_metrics_init(struct ctl_metrics *m, const struct ctl_ctx *ctx,
                      const struct ctl_metrics_http_stats *http)
{
        memset(m, 0, sizeof(*m));
        m->ctx = ctx;
        m->http = http;
        for (uint32_t i = 0; i < DP_WORKERS_MAX; i++)
                m->idle_ppm[i] = -1;
        ctl_metrics_sample(m, now_ns(CLOCK_MONOTONIC));
}

void ctl_metrics_sample(struct ctl_metrics *m, uint64_t now)
{
        bool first = m->window_start_ns == 0;
        if (!first && now - m->window_start_ns < CTL_METRICS_WINDOW_NS)
                return;
        uint32_t n = eng_workers(m);
        for (uint32_t i = 0; i < n; i++) {
                const struct dp_worker_stats *ws = dp_engine_stats(m->ctx->engine, i);
                uint64_t loops = dp_counter_get(&ws->loops), idle = idle_passes(ws);
                uint64_t dl = loops - m->loops0[i], di = idle - m->idle0[i];
                /* No pass in a whole window: the worker is stopped (or not
                 * started yet); there is no ratio to speak of. */
                if (!first)
                        m->idle_ppm[i] = dl == 0 ? -1 :
                                         (int32_t)((di > dl ? dl : di) * 1000000 / dl);
                m->loops0[i] = loops;
                m->idle0[i] = idle;
        }
        m->window_start_ns = now != 0 ? now : 1;
}

/* --- the counters, as tables: one row per counter, shared by /metrics
 * and /workers so that both show the same set --- */

struct ctl_ctr {
        const char *prom;   /* metric name, "atomq_" prefix and "_total" implied */
        const char *json;   /* key in /workers */
        const char *help;
        uint16_t off;
};

#define WCTR(f) .off = offsetof(struct dp_worker_stats, f)
static const struct ctl_ctr worker_ctrs[] = {
        { "worker_loops", "loops", "Passes of the worker loop.", WCTR(loops) },
        { "worker_work", "work", "Sum of the work the passes did.", WCTR(work) },
        { "worker_commands", "commands", "Commands taken from the worker's command ring.", WCTR(cmds) },
        { "worker_executed", "executed", "Commands executed on the worker's shard.", WCTR(executed) },
        { "worker_forwarded", "forwarded", "Commands forwarded to their owner.", WCTR(forwarded) },
        { "worker_completions", "completions", "Completions written.", WCTR(cpls) },
        { "worker_mesh_in", "mesh_in", "Records taken from inbound mesh rings.", WCTR(mesh_in) },
        { "worker_mesh_out", "mesh_out", "Records written to outbound mesh rings.", WCTR(mesh_out) },
        { "worker_fanouts", "fanouts", "Publishes received from other workers.", WCTR(fanouts) },
        { "worker_mesh_full", "mesh_full", "Times an input was held back by a full mesh ring.", WCTR(mesh_full) },
        { "worker_cpl_full", "cpl_full", "Times an input was held back by a full completion ring.", WCTR(cpl_full) },
        { "worker_bad_records", "bad_records", "Malformed records skipped or answered.", WCTR(bad_records) },
        { "worker_ring_errors", "ring_errors", "Corrupt ring headers met (-EPROTO).", WCTR(ring_errors) },
        { "worker_cpl_lost", "cpl_lost", "Completions that could not be written.", WCTR(cpl_lost) },
        { "worker_fetch_overflow", "fetch_overflow", "Fetched messages too large for a completion.", WCTR(fetch_overflow) },
        { "worker_dispatches", "dispatches", "Dispatches handed to the delivery callback.", WCTR(deliveries) },
        { "worker_timers", "timers", "Timers fired.", WCTR(timers) },
        { "worker_idle_passes", "idle_passes", "Loop passes that found no work.", WCTR(idle.passes) },
        { "worker_idle_yields", "idle_yields", "Idle passes given away with sched_yield.", WCTR(idle.yields) },
        { "worker_idle_sleeps", "idle_sleeps", "Idle passes that slept on the wake word.", WCTR(idle.sleeps) },
        { "worker_idle_wakeups", "idle_wakeups", "Sleeps ended by a notify.", WCTR(idle.wakeups) },
        { "worker_pin_errors", "pin_errors", "Failures to pin the worker to a CPU.", WCTR(idle.pin_errors) },
        { "nats_connections_opened", "nats_conns_opened", "NATS connections accepted.", WCTR(nats.conns_opened) },
        { "nats_connections_closed", "nats_conns_closed", "NATS connections ended.", WCTR(nats.conns_closed) },
        { "nats_messages_in", "nats_msgs_in", "PUB and HPUB taken from NATS clients.", WCTR(nats.msgs_in) },
        { "nats_messages_out", "nats_msgs_out", "MSG and HMSG written to NATS clients.", WCTR(nats.msgs_out) },
        { "nats_protocol_errors", "nats_protocol_errors", "NATS clients closed for bad input.", WCTR(nats.protocol_errors) },
        { "nats_slow_consumers", "nats_slow_consumers", "NATS clients cut off: output above --max-pending.", WCTR(nats.slow_consumers) },
        { "nats_stale_connections", "nats_stale_conns", "NATS clients that left server PINGs unanswered.", WCTR(nats.stale_conns) },
        { "nats_auth_failures", "nats_auth_failures", "NATS clients refused: missing or wrong credentials.", WCTR(nats.auth_failures) },
        { "nats_no_responders", "nats_no_responders", "503 no-responders status messages sent.", WCTR(nats.no_responders) },
        { "nats_publish_dropped", "nats_publish_dropped", "NATS publishes dropped: a mesh ring stayed full.", WCTR(nats.publish_dropped) },
        { "nats_aq_requests", "nats_aq_requests", "$AQ requests from NATS clients.", WCTR(nats.aq_requests) },
        { "nats_aq_lost", "nats_aq_lost", "$AQ answers that could not be sent.", WCTR(nats.aq_lost) },
        { "nats_aq_parked", "nats_aq_parked", "$AQ fetches that waited for a message.", WCTR(nats.aq_parked) },
        { "disk_records", "disk_records", "Records appended to the worker's disk log.", WCTR(disk.records) },
        { "disk_writes", "disk_writes", "Writes of the disk log's buffers.", WCTR(disk.writes) },
        { "disk_write_bytes", "disk_write_bytes", "Bytes written to the disk log.", WCTR(disk.write_bytes) },
        { "disk_syncs", "disk_syncs", "fdatasyncs of the disk log completed.", WCTR(disk.syncs) },
        { "disk_io_errors", "disk_io_errors", "Disk log write or fdatasync errors (each stops the log).", WCTR(disk.io_errors) },
        { "disk_refused", "disk_refused", "Disk log appends refused: too large, --disk-max, buffers busy.", WCTR(disk.refused) },
        { "disk_journal_errors", "disk_journal_errors", "Changes to disk entities the log refused (kept in memory only).", WCTR(disk.journal_errors) },
        { "disk_answers_parked", "disk_answers_parked", "NATS answers that waited for the disk log.", WCTR(disk.parked) },
        { "disk_parked_full", "disk_parked_full", "Requests that waited because 65,536 answers were already parked.", WCTR(disk.parked_full) },
        { "disk_completions_waited", "disk_completions_waited", "Agent and control-socket completions that waited for the disk log.", WCTR(disk.waited) },
        { "disk_compactions", "disk_compactions", "Disk logs rewritten with only their live records.", WCTR(disk.compactions) },
        { "disk_compact_errors", "disk_compact_errors", "Disk log compactions that failed.", WCTR(disk.compact_errors) },
        { "udp_sessions_opened", "udp_sessions_opened", "Datagram sessions opened.", WCTR(dgram.sessions_opened) },
        { "udp_sessions_closed", "udp_sessions_closed", "Datagram sessions their peer ended.", WCTR(dgram.sessions_closed) },
        { "udp_sessions_expired", "udp_sessions_expired", "Datagram sessions ended by their lease.", WCTR(dgram.sessions_expired) },
        { "udp_sessions_refused", "udp_sessions_refused", "Datagram sessions refused: --udp-sessions were open.", WCTR(dgram.sessions_refused) },
        { "udp_frames_in", "udp_frames_in", "Datagram frames taken from peers.", WCTR(dgram.frames_in) },
        { "udp_frames_out", "udp_frames_out", "Datagram frames sent: answers and messages.", WCTR(dgram.frames_out) },
        { "udp_bad_frames", "udp_bad_frames", "Datagram frames dropped: truncated, bad header or lengths.", WCTR(dgram.bad_frames) },
        { "udp_bad_crc", "udp_bad_crc", "Datagram frames dropped: missing or wrong CRC32C.", WCTR(dgram.bad_crc) },
        { "udp_spoofed", "udp_spoofed", "Datagrams dropped: unknown session, or another peer's.", WCTR(dgram.spoofed) },
        { "udp_retransmits", "udp_retransmits", "Retransmitted requests answered from the window.", WCTR(dgram.retransmits) },
        { "udp_stale", "udp_stale", "Requests dropped: older than the window.", WCTR(dgram.stale) },
        { "udp_busy", "udp_busy", "Requests dropped for a full ring (the peer resends).", WCTR(dgram.busy) },
        { "udp_tx_dropped", "udp_tx_dropped", "Datagrams the backend refused or too large to send.", WCTR(dgram.tx_dropped) },
        { "udp_request_timeouts", "udp_request_timeouts", "Datagram requests answered ETIMEDOUT.", WCTR(dgram.request_timeouts) },
        { "dpdk_rx_packets", "dpdk_rx_packets", "Frames taken from the worker's DPDK queue.", WCTR(nic.rx_pkts) },
        { "dpdk_rx_malformed", "dpdk_rx_malformed", "DPDK frames dropped: truncated, bad headers, IP fragments.", WCTR(nic.rx_malformed) },
        { "dpdk_rx_bad_checksum", "dpdk_rx_bad_csum", "DPDK frames dropped: a wrong IPv4, UDP or ICMP checksum.", WCTR(nic.rx_bad_csum) },
        { "dpdk_rx_not_for_us", "dpdk_rx_not_for_us", "DPDK frames dropped: another MAC, IP address or UDP port.", WCTR(nic.rx_not_for_us) },
        { "dpdk_rx_other", "dpdk_rx_other", "DPDK frames dropped: other protocols, ARP replies.", WCTR(nic.rx_other) },
        { "dpdk_arp_replies", "dpdk_arp_replies", "ARP requests answered on the DPDK port.", WCTR(nic.arp_replies) },
        { "dpdk_icmp_replies", "dpdk_icmp_replies", "ICMP echo requests answered on the DPDK port.", WCTR(nic.icmp_replies) },
        { "dpdk_tx_packets", "dpdk_tx_packets", "Frames the DPDK port took for sending.", WCTR(nic.tx_pkts) },
        { "dpdk_tx_full", "dpdk_tx_full", "DPDK sends refused: the queue's tx was full.", WCTR(nic.tx_full) },
        { "dpdk_tx_dropped", "dpdk_tx_dropped", "DPDK replies freed: no room to send them.", WCTR(nic.tx_dropped) },
        { "dpdk_no_mbufs", "dpdk_no_mbufs", "DPDK sends refused: the pool had no buffer.", WCTR(nic.no_mbufs) },
        { "net_errors", "net_errors", "Network backend polls or flushes that failed (io_uring_enter).", WCTR(net_errors) },
};

#define SCTR(f) .off = offsetof(struct dp_shard_stats, f)
static const struct ctl_ctr shard_ctrs[] = {
        { "messages", "messages", "Messages accepted (stored or routed).", SCTR(msgs_in) },
        { "bytes", "bytes", "Bytes of the messages accepted.", SCTR(bytes_in) },
        { "deliveries", "deliveries", "Messages handed to a party or fetched.", SCTR(deliveries) },
        { "entity_creates", "creates", "Entities created.", SCTR(creates) },
        { "entity_destroys", "destroys", "Entities destroyed (expiries included).", SCTR(destroys) },
        { "entity_expired", "expired_entities", "Entities destroyed by their TTL.", SCTR(expired_entities) },
        { "request_no_responders", "no_responders", "Requests answered 503, no responders.", SCTR(no_responders) },
        { "request_timeouts", "request_timeouts", "Requests answered 408, timeout.", SCTR(request_timeouts) },
        { "pool_exhausted", "pool_exhausted", "Times message records or buffers ran out.", SCTR(pool_exhausted) },
};

/* Each drop counter of dp_shard_stats is a value of the reason label. */
static const struct ctl_ctr drop_ctrs[] = {
        { "full", "full", "refused or dropped by a limit", SCTR(drops_full) },
        { "expired", "expired", "per-message TTL passed", SCTR(drops_expired) },
        { "no_party", "no_party", "storage none and nobody to take it", SCTR(drops_no_party) },
        { "max_deliver", "max_deliver", "redelivered max_deliver times", SCTR(drops_max_deliver) },
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t worker_ctr(const struct dp_engine *e, uint32_t i, const struct ctl_ctr *c)
{
        const uint8_t *base = (const uint8_t *)dp_engine_stats(e, i);
        return dp_counter_get((const dp_counter *)(const void *)(base + c->off));
}

static uint64_t shard_ctr(const struct dp_engine *e, uint32_t i, const struct ctl_ctr *c)
{
        const uint8_t *base = (const uint8_t *)e->w[i].shard.stats;
        return ld64((const uint64_t *)(const void *)(base + c->off));
}

/* --- /metrics --- */

static void prom_family(struct ctl_mbuf *b, const char *name, const char *type,
                        const char *help)
{
        mb_printf(b, "# HELP atomq_%s %s\n# TYPE atomq_%s %s\n", name, help, name, type);
}

static void prom_gauge1(struct ctl_mbuf *b, const char *name, const char *help, uint64_t v)
{
        prom_family(b, name, "gauge", help);
        mb_printf(b, "atomq_%s %" PRIu64 "\n", name, v);
}

static void prom_process(const struct ctl_metrics *m, struct ctl_mbuf *b)
{
        const struct ctl_ctx *ctx = m->ctx;
        const struct dp_engine *e = ctx->engine;
        uint64_t now = now_ns(CLOCK_REALTIME);
        uint64_t start = ctx->started_realtime_ns;

        prom_family(b, "info", "gauge", "Build and process information.");
        mb_printf(b, "atomq_info{version=\"%s\"} 1\n", ATOMQ_VERSION);
        prom_family(b, "start_time_seconds", "gauge", "Start of atomqd, seconds since the epoch.");
        mb_printf(b, "atomq_start_time_seconds %.3f\n", (double)start / 1e9);
        prom_family(b, "uptime_seconds", "gauge", "Seconds since atomqd started.");
        mb_printf(b, "atomq_uptime_seconds %.3f\n",
                  start != 0 && now > start ? (double)(now - start) / 1e9 : 0.0);
        prom_gauge1(b, "workers", "Dataplane workers (one shard each).", eng_workers(m));
        prom_gauge1(b, "arena_bytes", "Size of the shared-memory arena.",
                    e != NULL ? e->arena.bytes : 0);
        prom_gauge1(b, "arena_hugepages", "1 when the arena is backed by hugepages.",
                    e != NULL && e->arena.hugepages);
        prom_family(b, "dataplane_restarts_total", "counter",
                    "Times the dataplane process was restarted.");
        mb_printf(b, "atomq_dataplane_restarts_total %" PRIu32 "\n", ctx->dataplane_restarts);
        prom_family(b, "control_refused_uid_total", "counter",
                    "Control-socket clients refused: uid not root, atomqd's, on --agent-uids "
                    "or in --control-group.");
        mb_printf(b, "atomq_control_refused_uid_total %" PRIu64 "\n", ctx->control_refused_uid);
        prom_family(b, "agents_refused_uid_total", "counter",
                    "Agent attaches refused: uid not on --agent-uids.");
        mb_printf(b, "atomq_agents_refused_uid_total %" PRIu64 "\n", ctx->agents_refused_uid);
        if (m->http != NULL) {
                static const struct { const char *name, *help; uint16_t off; } h[] = {
                        { "http_requests_total", "HTTP requests answered.",
                          offsetof(struct ctl_metrics_http_stats, requests) },
                        { "http_errors_total", "HTTP requests answered 4xx or 5xx.",
                          offsetof(struct ctl_metrics_http_stats, errors) },
                        { "http_rejected_total", "HTTP connections turned away: all slots busy.",
                          offsetof(struct ctl_metrics_http_stats, rejected) },
                        { "http_timeouts_total", "HTTP clients closed for idling.",
                          offsetof(struct ctl_metrics_http_stats, timeouts) },
                };
                for (size_t i = 0; i < COUNT(h); i++) {
                        prom_family(b, h[i].name, "counter", h[i].help);
                        mb_printf(b, "atomq_%s %" PRIu64 "\n", h[i].name,
                                  *(const uint64_t *)(const void *)((const uint8_t *)m->http + h[i].off));
                }
        }
}

static void prom_per_worker(const struct ctl_metrics *m, struct ctl_mbuf *b)
{
        const struct dp_engine *e = m->ctx->engine;
        uint32_t n = eng_workers(m);
        char name[64];

        for (size_t c = 0; c < COUNT(shard_ctrs); c++) {
                snprintf(name, sizeof(name), "%s_total", shard_ctrs[c].prom);
                prom_family(b, name, "counter", shard_ctrs[c].help);
                for (uint32_t i = 0; i < n; i++)
                        mb_printf(b, "atomq_%s{worker=\"%" PRIu32 "\"} %" PRIu64 "\n", name, i,
                                  shard_ctr(e, i, &shard_ctrs[c]));
        }
        prom_family(b, "drops_total", "counter",
                    "Messages dropped, by reason: full (a limit), expired (message TTL), "
                    "no_party (storage none, nobody there), max_deliver.");
        for (uint32_t i = 0; i < n; i++)
                for (size_t c = 0; c < COUNT(drop_ctrs); c++)
                        mb_printf(b, "atomq_drops_total{worker=\"%" PRIu32 "\",reason=\"%s\"} %" PRIu64 "\n",
                                  i, drop_ctrs[c].prom, shard_ctr(e, i, &drop_ctrs[c]));
        prom_family(b, "entities", "gauge", "Live entities on the worker's shard.");
        for (uint32_t i = 0; i < n; i++)
                mb_printf(b, "atomq_entities{worker=\"%" PRIu32 "\"} %" PRIu32 "\n", i,
                          ld32(&e->w[i].shard.table.hdr->live));
        prom_family(b, "entities_capacity", "gauge", "Entity slots of the worker's shard.");
        for (uint32_t i = 0; i < n; i++)
                mb_printf(b, "atomq_entities_capacity{worker=\"%" PRIu32 "\"} %" PRIu32 "\n", i,
                          e->w[i].shard.table.capacity);
        prom_family(b, "cmd_ring_used_bytes", "gauge", "Bytes waiting in the worker's command ring.");
        for (uint32_t i = 0; i < n; i++)
                mb_printf(b, "atomq_cmd_ring_used_bytes{worker=\"%" PRIu32 "\"} %" PRIu64 "\n", i,
                          cmd_ring_used(e, i));
        prom_family(b, "cmd_ring_capacity_bytes", "gauge", "Size of the worker's command ring.");
        for (uint32_t i = 0; i < n; i++)
                mb_printf(b, "atomq_cmd_ring_capacity_bytes{worker=\"%" PRIu32 "\"} %" PRIu32 "\n", i,
                          e->cmd_prod[i].capacity);
        prom_family(b, "worker_idle_ratio", "gauge",
                    "Share of the worker's loop passes that found no work, over the last "
                    "window of a second or more.");
        for (uint32_t i = 0; i < n; i++)
                if (m->idle_ppm[i] >= 0)
                        mb_printf(b, "atomq_worker_idle_ratio{worker=\"%" PRIu32 "\"} %.6f\n", i,
                                  m->idle_ppm[i] / 1e6);
        for (size_t c = 0; c < COUNT(worker_ctrs); c++) {
                snprintf(name, sizeof(name), "%s_total", worker_ctrs[c].prom);
                prom_family(b, name, "counter", worker_ctrs[c].help);
                for (uint32_t i = 0; i < n; i++)
                        mb_printf(b, "atomq_%s{worker=\"%" PRIu32 "\"} %" PRIu64 "\n", name, i,
                                  worker_ctr(e, i, &worker_ctrs[c]));
        }
}

int ctl_metrics_prometheus(const struct ctl_metrics *m, char *buf, size_t len)
{
        struct ctl_mbuf b = { .p = buf, .cap = len };
        if (len == 0)
                return -ENOSPC;
        buf[0] = '\0';
        prom_process(m, &b);
        prom_per_worker(m, &b);
        return mb_result(&b);
}

/* --- /info --- */

static void json_time(struct ctl_mbuf *b, const char *key, uint64_t realtime_ns)
{
        char t[32];
        struct tm tm;
        time_t s = (time_t)(realtime_ns / 1000000000ull);
        gmtime_r(&s, &tm);
        strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%SZ", &tm);
        mb_printf(b, "\"%s\":\"%s\",", key, t);
}

/* "3d4h5m6s", as nats-server's /varz writes uptime. */
static void json_uptime(struct ctl_mbuf *b, uint64_t s)
{
        mb_puts(b, "\"uptime\":\"");
        if (s >= 86400)
                mb_printf(b, "%" PRIu64 "d", s / 86400);
        if (s >= 3600)
                mb_printf(b, "%" PRIu64 "h", s / 3600 % 24);
        if (s >= 60)
                mb_printf(b, "%" PRIu64 "m", s / 60 % 60);
        mb_printf(b, "%" PRIu64 "s\",", s % 60);
}

static void json_config(const struct ctl_config *cfg, struct ctl_mbuf *b)
{
        size_t count;
        const struct ctl_config_key *k = ctl_config_keys(&count);
        char v[512];
        bool first = true;

        mb_puts(b, "\"config\":{");
        for (size_t i = 0; cfg != NULL && i < count; i++) {
                if (k[i].kind == CTL_KEY_ACTION)
                        continue;
                int n = ctl_config_format(cfg, &k[i], v, sizeof(v));
                if (n < 0)
                        continue;
                /* /info has no authentication: a credential shows only
                 * whether it is set. */
                if ((k[i].flags & CTL_KEY_F_SECRET) && n > 0)
                        n = snprintf(v, sizeof(v), "(set)");
                mb_printf(b, "%s\"%s\":", first ? "" : ",", k[i].name);
                mb_json_str(b, v, (size_t)n);
                first = false;
        }
        mb_puts(b, "}");
}

int ctl_metrics_info_json(const struct ctl_metrics *m, char *buf, size_t len)
{
        const struct ctl_ctx *ctx = m->ctx;
        const struct dp_engine *e = ctx->engine;
        struct ctl_mbuf b = { .p = buf, .cap = len };
        uint64_t now = now_ns(CLOCK_REALTIME), start = ctx->started_realtime_ns;
        uint64_t up_s = start != 0 && now > start ? (now - start) / 1000000000ull : 0;
        uint32_t n = eng_workers(m);
        uint64_t live = 0, capacity = 0;

        if (len == 0)
                return -ENOSPC;
        for (uint32_t i = 0; i < n; i++) {
                live += ld32(&e->w[i].shard.table.hdr->live);
                capacity += e->w[i].shard.table.capacity;
        }
        mb_printf(&b, "{\"server_name\":\"atomqd\",\"version\":\"%s\",\"pid\":%ld,",
                  ATOMQ_VERSION, (long)getpid());
        json_time(&b, "start", start);
        json_time(&b, "now", now);
        json_uptime(&b, up_s);
        mb_printf(&b, "\"uptime_seconds\":%" PRIu64 ",\"workers\":%" PRIu32 ",", up_s, n);
        mb_printf(&b, "\"arena_bytes\":%" PRIu64 ",\"arena_page_bytes\":%" PRIu64
                  ",\"hugepages\":%s,", e != NULL ? e->arena.bytes : 0,
                  e != NULL && e->arena.hdr != NULL ? e->arena.hdr->page_bytes : 0,
                  e != NULL && e->arena.hugepages ? "true" : "false");
        mb_printf(&b, "\"entities\":%" PRIu64 ",\"entities_capacity\":%" PRIu64 ",", live,
                  capacity);
        mb_printf(&b, "\"dataplane_pid\":%ld,\"dataplane_restarts\":%" PRIu32
                  ",\"stopping\":%s,", (long)ctx->dataplane_pid, ctx->dataplane_restarts,
                  ctx->stopping ? "true" : "false");
        if (m->http != NULL)
                mb_printf(&b, "\"http\":{\"requests\":%" PRIu64 ",\"errors\":%" PRIu64
                          ",\"rejected\":%" PRIu64 ",\"timeouts\":%" PRIu64 "},",
                          m->http->requests, m->http->errors, m->http->rejected,
                          m->http->timeouts);
        json_config(ctx->cfg, &b);
        mb_puts(&b, "}\n");
        return mb_result(&b);
}

/* --- /workers --- */

static void json_worker(const struct ctl_metrics *m, uint32_t i, struct ctl_mbuf *b)
{
        const struct dp_engine *e = m->ctx->engine;

        mb_printf(b, "{\"worker\":%" PRIu32, i);
        for (size_t c = 0; c < COUNT(worker_ctrs); c++)
                mb_printf(b, ",\"%s\":%" PRIu64, worker_ctrs[c].json, worker_ctr(e, i, &worker_ctrs[c]));
        if (m->idle_ppm[i] >= 0)
                mb_printf(b, ",\"idle_ratio\":%.6f", m->idle_ppm[i] / 1e6);
        else
                mb_puts(b, ",\"idle_ratio\":null");
        mb_printf(b, ",\"cmd_ring\":{\"used_bytes\":%" PRIu64 ",\"capacity_bytes\":%" PRIu32 "}",
                  cmd_ring_used(e, i), e->cmd_prod[i].capacity);
        mb_printf(b, ",\"shard\":{\"entities\":%" PRIu32 ",\"capacity\":%" PRIu32,
                  ld32(&e->w[i].shard.table.hdr->live), e->w[i].shard.table.capacity);
        for (size_t c = 0; c < COUNT(shard_ctrs); c++)
                mb_printf(b, ",\"%s\":%" PRIu64, shard_ctrs[c].json, shard_ctr(e, i, &shard_ctrs[c]));
        mb_puts(b, ",\"drops\":{");
        for (size_t c = 0; c < COUNT(drop_ctrs); c++)
                mb_printf(b, "%s\"%s\":%" PRIu64, c == 0 ? "" : ",", drop_ctrs[c].json,
                          shard_ctr(e, i, &drop_ctrs[c]));
        mb_puts(b, "}}}");
}

int ctl_metrics_workers_json(const struct ctl_metrics *m, char *buf, size_t len)
{
        struct ctl_mbuf b = { .p = buf, .cap = len };
        uint32_t n = eng_workers(m);

        if (len == 0)
                return -ENOSPC;
        mb_puts(&b, "[");
        for (uint32_t i = 0; i < n; i++) {
                if (i > 0)
                        mb_puts(&b, ",\n");
                json_worker(m, i, &b);
        }
        mb_puts(&b, "]\n");
        return mb_result(&b);
}

/* --- /entities --- */

/* A row is copied a word at a time with relaxed loads: the worker may be
 * writing it (see the file header of ctl_metrics.h). may_alias: the words
 * overlay a struct of narrower fields. */
typedef uint64_t __attribute__((may_alias)) ctl_word;

static void entity_copy(const struct dp_entity *src, struct dp_entity *dst)
{
        const ctl_word *s = (const ctl_word *)(const void *)src;
        ctl_word *d = (ctl_word *)(void *)dst;
        for (size_t i = 0; i < sizeof(*src) / sizeof(ctl_word); i++)
                d[i] = __atomic_load_n(&s[i], __ATOMIC_RELAXED);
}

/* The row's name copied into name[DP_NAME_MAX]; its length, or -1 when
 * the row has none (anonymous) or a reference out of bounds. */
static int entity_name(const struct dp_table *t, const struct dp_entity *row, char *name)
{
        uint32_t len;
        const char *p = dp_table_name(t, row, &len);
        if (p == NULL || len > DP_NAME_MAX)
                return -1;
        for (uint32_t i = 0; i < len; i++)
                name[i] = (char)__atomic_load_n((const uint8_t *)p + i, __ATOMIC_RELAXED);
        return (int)len;
}

static void json_entity(struct ctl_mbuf *b, uint32_t shard, uint32_t slot,
                        const struct dp_entity *r, const char *name, int name_len)
{
        mb_puts(b, "{\"name\":");
        if (name_len >= 0)
                mb_json_str(b, name, (size_t)name_len);
        else
                mb_puts(b, "null");
        mb_printf(b, ",\"handle\":\"0x%016" PRIx64 "\",\"shard\":%" PRIu32 ",\"mode\":\"%s\","
                  "\"storage\":\"%s\",\"retention\":\"%s\",\"routing\":\"%s\","
                  "\"delivery\":\"%s\",\"msgs\":%" PRIu32 ",\"bytes\":%" PRIu32
                  ",\"parties\":%" PRIu32 ",\"ttl_ms\":%" PRIu32 ",\"seq\":%" PRIu64 "}",
                  dp_handle_make(shard, slot, r->gen), shard,
                  r->mode < DP_MODE_COUNT_ ? dp_modes[r->mode].name : "?",
                  dp_storage_name(r->storage), dp_retention_name(r->retention),
                  dp_routing_name(r->routing), dp_delivery_name(r->delivery), r->msgs, r->bytes,
                  r->parties, r->ttl_ms, r->seq);
}

struct ent_walk {
        const char *prefix;
        size_t prefix_len;
        uint32_t limit;
        uint32_t count;
        uint64_t scanned;
        bool truncated;
};

/* Walks one shard's table; false when the walk must end (limit, scan
 * bound or buffer). */
static bool ent_shard(struct ent_walk *w, const struct dp_table *t, uint32_t shard,
                      struct ctl_mbuf *b)
{
        uint32_t live = ld32(&t->hdr->live), seen = 0;
        char name[DP_NAME_MAX];
        struct dp_entity r;

        /* Rows fill from the front (the free list starts in slot order), so
         * stopping after `live` live rows usually skips the empty tail. */
        for (uint32_t slot = 0; slot < t->capacity && seen < live; slot++) {
                if (w->scanned++ >= CTL_ENTITIES_SCAN_MAX) {
                        w->truncated = true;
                        return false;
                }
                entity_copy(&t->slots[slot], &r);
                if (!(r.flags & DP_ENT_F_LIVE))
                        continue;
                seen++;
                int nl = entity_name(t, &r, name);
                if (w->prefix_len > 0 &&
                    (nl < 0 || (size_t)nl < w->prefix_len || memcmp(name, w->prefix, w->prefix_len) != 0))
                        continue;
                /* Re-check: the row did not change tenant while we copied it. */
                if (ld32(&t->slots[slot].gen) != r.gen ||
                    !(__atomic_load_n(&t->slots[slot].flags, __ATOMIC_RELAXED) & DP_ENT_F_LIVE))
                        continue;
                if (w->count == w->limit) {
                        w->truncated = true;  /* one more match than asked for */
                        return false;
                }
                size_t mark = b->len;
                if (w->count > 0)
                        mb_puts(b, ",\n");
                json_entity(b, shard, slot, &r, name, nl);
                if (b->full) {
                        b->full = false;
                        b->len = mark;
                        b->p[mark] = '\0';
                        w->truncated = true;
                        return false;
                }
                w->count++;
        }
        return true;
}

/* Room kept for the closing part of the answer while rows are written. */
#define CTL_ENTITIES_TAIL_BYTES 160

int ctl_metrics_entities_json(const struct ctl_metrics *m, const char *prefix,
                              size_t prefix_len, uint32_t limit, char *buf, size_t len)
{
        struct ctl_mbuf b = { .p = buf, .cap = len };
        struct ent_walk w = { .prefix = prefix, .prefix_len = prefix_len, .limit = limit };
        const struct dp_engine *e = m->ctx->engine;
        uint32_t n = eng_workers(m);

        if (limit == 0 || limit > CTL_ENTITIES_LIMIT_MAX || prefix_len > DP_NAME_MAX)
                return -EINVAL;
        if (len <= CTL_ENTITIES_TAIL_BYTES)
                return -ENOSPC;
        buf[0] = '\0';
        mb_puts(&b, "{\"prefix\":");
        mb_json_str(&b, prefix, prefix_len);
        mb_printf(&b, ",\"limit\":%" PRIu32 ",\"entities\":[\n", limit);
        if (b.full)
                return -ENOSPC;
        b.cap -= CTL_ENTITIES_TAIL_BYTES;
        for (uint32_t i = 0; i < n; i++)
                if (!ent_shard(&w, &e->w[i].shard.table, i, &b))
                        break;
        b.cap += CTL_ENTITIES_TAIL_BYTES;
        mb_printf(&b, "],\n\"count\":%" PRIu32 ",\"scanned\":%" PRIu64 ",\"truncated\":%s}\n",
                  w.count, w.scanned, w.truncated ? "true" : "false");
        return mb_result(&b);
}

/* --- / --- */

static const char ctl_page[] =
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>atomq</title>\n"
        "<meta name=\"viewport\" content=\"width=device-width\">\n"
        "<noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript>\n"
        "<style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}"
        "table{border-collapse:collapse}td,th{padding:3px 12px;text-align:right;"
        "border-bottom:1px solid #ddd}th{background:#f3f3f3}#e{color:#b00}</style>\n"
        "</head><body><h1>atomq</h1><p id=\"i\">loading&hellip;</p><p id=\"e\"></p>\n"
        "<table><thead><tr><th>worker</th><th>entities</th><th>msgs/s</th><th>bytes/s</th>"
        "<th>deliveries/s</th><th>drops</th><th>cmd ring</th><th>idle</th></tr></thead>"
        "<tbody id=\"w\"></tbody></table>\n"
        "<p><a href=\"/metrics\">/metrics</a> &middot; <a href=\"/info\">/info</a> &middot; "
        "<a href=\"/workers\">/workers</a> &middot; <a href=\"/entities\">/entities</a></p>\n"
        "<script>\n"
        "let last = null;\n"
        "const $ = id => document.getElementById(id);\n"
        "async function tick() {\n"
        "  try {\n"
        "    const [i, w] = await Promise.all([fetch('/info').then(r => r.json()),\n"
        "                                      fetch('/workers').then(r => r.json())]);\n"
        "    const t = Date.now(), dt = last ? (t - last.t) / 1000 : 0;\n"
        "    $('i').textContent = `atomqd ${i.version}, pid ${i.pid}, up ${i.uptime}: `\n"
        "      + `${i.workers} workers, ${i.entities} entities, arena `\n"
        "      + `${Math.round(i.arena_bytes / 1048576)} MiB${i.hugepages ? ' (hugepages)' : ''}, `\n"
        "      + `dataplane restarts ${i.dataplane_restarts}`;\n"
        "    $('e').textContent = '';\n"
        "    const rate = (x, k, f) => last && last.w[k] && dt > 0 ?\n"
        "      Math.round((f(x) - f(last.w[k])) / dt) : '-';\n"
        "    $('w').innerHTML = w.map((x, k) => '<tr>' + [x.worker, x.shard.entities,\n"
        "      rate(x, k, y => y.shard.messages), rate(x, k, y => y.shard.bytes),\n"
        "      rate(x, k, y => y.shard.deliveries),\n"
        "      Object.values(x.shard.drops).reduce((a, v) => a + v, 0),\n"
        "      (100 * x.cmd_ring.used_bytes / x.cmd_ring.capacity_bytes).toFixed(1) + '%',\n"
        "      x.idle_ratio === null ? '-' : Math.round(100 * x.idle_ratio) + '%']\n"
        "      .map(v => '<td>' + v + '</td>').join('') + '</tr>').join('');\n"
        "    last = { t, w };\n"
        "  } catch (err) {\n"
        "    $('e').textContent = 'atomqd did not answer: ' + err;\n"
        "  }\n"
        "}\n"
        "tick();\n"
        "setInterval(tick, 2000);\n"
        "</script></body></html>\n";

int ctl_metrics_html(char *buf, size_t len)
{
        if (sizeof(ctl_page) > len)
                return -ENOSPC;
        memcpy(buf, ctl_page, sizeof(ctl_page));
        return (int)sizeof(ctl_page) - 1;
}
