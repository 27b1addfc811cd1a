/* ctl_metrics.h - what atomqd's HTTP listener answers, rendered from the
 * arena's counters: Prometheus text (/metrics), JSON (/info, /workers,
 * /entities) and one small status page (/).
 *
 * Everything is read, never stopped: worker and shard counters have one
 * writer each (the worker) and are read here with relaxed loads, the
 * command rings' head and tail the same way, and /entities walks the shard
 * tables read-only. A table row can change under the walk; each row is
 * copied, its name bounds-checked, and the row is re-checked after the copy
 * (same generation, still live), so a row torn by a concurrent destroy is
 * skipped rather than shown half-old. The answer is a snapshot per row, not
 * of the whole table.
 *
 * Entities by kind: /metrics carries totals per worker (live entities from
 * each table's header, creates, destroys and expiries from the shard's
 * counters), not a count per mode: that would mean walking every slot of
 * every table (64 MiB per million entities) on every scrape. /entities
 * shows each entity's mode.
 *
 * Renderers write into the caller's buffer and return the length, or
 * -ENOSPC when it is too small; nothing allocates.
 *
 *      struct ctl_metrics m;
 *      ctl_metrics_init(&m, ctx, &http_stats);
 *      ctl_metrics_sample(&m, now_ns);          // about once a second
 *      int n = ctl_metrics_prometheus(&m, buf, sizeof(buf));
 */
#ifndef ATOMQ_CTL_METRICS_H
#define ATOMQ_CTL_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "control/ctl.h"

/* The idle ratio is measured over windows of at least this long. */
#define CTL_METRICS_WINDOW_NS 1000000000ull
#define CTL_ENTITIES_LIMIT_DEFAULT 100u
#define CTL_ENTITIES_LIMIT_MAX 10000u
/* Most table slots one /entities request visits (256 MiB of rows): bounds
 * how long the single-threaded loop is busy with one request. */
#define CTL_ENTITIES_SCAN_MAX (1u << 22)

/* The HTTP listener's own counters, shown in /metrics and /info. */
struct ctl_metrics_http_stats {
        uint64_t requests;   /* requests answered */
        uint64_t errors;     /* answered 4xx or 5xx */
        uint64_t rejected;   /* connections turned away: every client slot busy */
        uint64_t timeouts;   /* clients closed for idling */
};

struct ctl_metrics {
        const struct ctl_ctx *ctx;
        const struct ctl_metrics_http_stats *http; /* may be NULL */
        uint64_t window_start_ns;
        uint64_t loops0[DP_WORKERS_MAX];   /* counters at the window's start */
        uint64_t idle0[DP_WORKERS_MAX];
        int32_t idle_ppm[DP_WORKERS_MAX];  /* last window's ratio; -1: none yet */
};

void ctl_metrics_init(struct ctl_metrics *m, const struct ctl_ctx *ctx,
                      const struct ctl_metrics_http_stats *http);

/* Closes the idle-ratio window when it is CTL_METRICS_WINDOW_NS old: each
 * worker's ratio becomes (idle passes) / (passes) over it, where an idle
 * pass is any loop pass that found no work (spinning, yielding or
 * sleeping, under either idle strategy). now_ns: CLOCK_MONOTONIC. */
void ctl_metrics_sample(struct ctl_metrics *m, uint64_t now_ns);

/* Prometheus text format 0.0.4. Returns the length or -ENOSPC. */
int ctl_metrics_prometheus(const struct ctl_metrics *m, char *buf, size_t len);

/* /info: version, pid, uptime, arena, workers, dataplane, every config key. */
int ctl_metrics_info_json(const struct ctl_metrics *m, char *buf, size_t len);

/* /workers: an array, one object of counters per worker. */
int ctl_metrics_workers_json(const struct ctl_metrics *m, char *buf, size_t len);

/* /entities: up to limit (1 .. CTL_ENTITIES_LIMIT_MAX) live entities whose
 * name starts with prefix (prefix_len 0: every entity, anonymous ones too),
 * shard by shard in slot order. When the limit, CTL_ENTITIES_SCAN_MAX or
 * the buffer stops the walk early, the answer says "truncated": true and
 * stays valid JSON. -ENOSPC only when not even an empty answer fits;
 * -EINVAL for a limit out of range. */
int ctl_metrics_entities_json(const struct ctl_metrics *m, const char *prefix,
                              size_t prefix_len, uint32_t limit, char *buf, size_t len);

/* / : a self-refreshing page that reads /info and /workers. */
int ctl_metrics_html(char *buf, size_t len);

#endif /* ATOMQ_CTL_METRICS_H */
