/* ctl_http.h - atomqd's HTTP listener: metrics and status, in the loop.
 *
 * A small HTTP/1.1 server on --metrics ADDR:PORT, run by atomqd's epoll
 * loop like every other fd. It answers GET only, one request per
 * connection (`Connection: close`), from the arena's counters:
 *
 *   /metrics    Prometheus text format
 *   /info       JSON: version, pid, uptime, arena, workers, config
 *   /workers    JSON: an array of per-worker counters
 *   /entities   JSON: ?prefix=P&limit=N (default 100, at most 10000)
 *   /           a status page that refreshes itself from /info and /workers
 *
 * Everything has a bound: CTL_HTTP_CLIENTS_MAX connections (one more is
 * answered 503 and closed), CTL_HTTP_REQUEST_BYTES_MAX of request head
 * (431 beyond, 400 when not even the request line ends within it), an
 * output buffer of CTL_HTTP_OUT_BYTES per client allocated at open, and
 * CTL_HTTP_IDLE_NS for a client to finish (a once-a-second timerfd in the
 * same loop closes slow ones). Writes are non-blocking: what the socket
 * does not take waits for EPOLLOUT.
 *
 *      struct ctl_http http;
 *      int rc = ctl_http_open(&http, &ctx);   // after ctx.loop, ctx.engine, ctx.cfg
 *      ... while (!stop) ctl_loop_run_once(&loop, 100); ...
 *      ctl_http_close(&http);
 */
#ifndef ATOMQ_CTL_HTTP_H
#define ATOMQ_CTL_HTTP_H

#include <stdbool.h>
#include <stdint.h>

#include "control/ctl.h"
#include "control/ctl_metrics.h"

/* Scrapers and a browser or two: a handful of clients is plenty. */
#define CTL_HTTP_CLIENTS_MAX 8u
/* A request head (line and headers) larger than this is refused: 431. */
#define CTL_HTTP_REQUEST_BYTES_MAX 8192u
/* One answer at most: /entities at its limit of 10000 rows with typical
 * names is about 1.5 MiB. Allocated once per client slot at open; pages
 * are touched only as answers need them. */
#define CTL_HTTP_OUT_BYTES (2u << 20)
/* A client that has not finished within this is closed. */
#define CTL_HTTP_IDLE_NS (10ull * 1000000000ull)
/* After answering, what the client still sends is read and dropped (so
 * our close does not reset the connection before it reads the answer),
 * up to this much. */
#define CTL_HTTP_DRAIN_BYTES_MAX (64u * 1024)

enum ctl_http_state {
        CTL_HTTP_FREE = 0,
        CTL_HTTP_READING,   /* collecting the request head */
        CTL_HTTP_WRITING,   /* sending the answer */
        CTL_HTTP_DRAINING,  /* answer sent, write side shut, waiting for EOF */
};

struct ctl_http;

struct ctl_http_client {
        struct ctl_http *http;
        int fd;
        uint8_t state;           /* enum ctl_http_state */
        uint32_t in_len;
        uint32_t out_off;        /* next byte to send */
        uint32_t out_end;
        uint32_t drained;
        uint64_t last_ns;        /* CLOCK_MONOTONIC of the last progress */
        char *out;               /* CTL_HTTP_OUT_BYTES */
        char in[CTL_HTTP_REQUEST_BYTES_MAX];
};

struct ctl_http {
        struct ctl_ctx *ctx;     /* NULL: never opened */
        int fd;                  /* the listener; -1 with --metrics off */
        int timer_fd;
        uint16_t port;           /* bound port, host order */
        struct ctl_metrics metrics;
        struct ctl_metrics_http_stats stats;
        char *out_mem;
        struct ctl_http_client clients[CTL_HTTP_CLIENTS_MAX];
};

/* Binds ctx->cfg->metrics_addr (SO_REUSEADDR), listens, and registers the
 * listener and its timer in ctx->loop. With metrics_addr "off" or "" it
 * opens nothing and returns 0 (ctl_http_enabled() is then false).
 * -EINVAL: metrics_addr is not ADDR:PORT; -ENOMEM: no memory for the
 * output buffers; -errno of socket, bind (-EADDRINUSE: the port is taken),
 * listen or timerfd_create; errors of ctl_loop_add. Nothing stays open or
 * registered after an error. */
int ctl_http_open(struct ctl_http *h, struct ctl_ctx *ctx);

/* Closes every client, the listener and the timer, and frees the buffers.
 * Safe after a failed open, twice, and on a zeroed struct. */
void ctl_http_close(struct ctl_http *h);

static inline bool ctl_http_enabled(const struct ctl_http *h)
{
        return h->ctx != NULL && h->fd >= 0;
}

#endif /* ATOMQ_CTL_HTTP_H */
