/* bench_udp.c - scenario udp: atomq datagrams through the DPDK backend and
 * through the io_uring UDP backend, side by side with a bare DPDK
 * forwarder on the same virtual port as the ceiling.
 *
 *      atomq-bench udp --json
 *      atomq-bench udp --duration 3 --runs 5 --cpus 0,1
 *
 * It sets up what it needs itself, in this process: an engine with one
 * worker (busy-polling, pinned to the first CPU) serving datagrams from a
 * DPDK port made of two software rings (backend dpdk), the same port
 * echoed by nic_dpdk_echo_burst alone (backend dpdk-forwarder), and an
 * engine serving a kernel UDP socket on 127.0.0.1 (backend uring). The
 * client runs on the second CPU (bench_udp.h says how it reaches each).
 *
 * Per backend, --runs runs of --duration each (medians reported):
 *   msgs_per_s  64-byte messages the client got back per second, with at
 *               most BU_WINDOW in flight: for atomq, publishes to a subject
 *               the client's own session subscribes to, each delivered back
 *               as a MSG; for the forwarder, each datagram echoed;
 *   p50/p99_ns  one request at a time: an acknowledged publish (PUB with
 *               ACK_REQ, answered by STATUS) for atomq, one echo for the
 *               forwarder.
 * Lost answers (none came within 100 ms) are counted as errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "atomq/dgram.h"
#include "bench/bench_clock.h"
#include "bench/bench_hist.h"
#include "bench/bench_report.h"
#include "bench/bench_scenario.h"
#include "bench/bench_udp.h"
#include "dataplane/dp_dgram.h"
#include "dataplane/dp_engine.h"
#include "shm/shm_clock.h"

#define BU_MSG_BYTES 64u
#define BU_WINDOW 256u
#define BU_LOST_NS (100ull * 1000 * 1000)
static const char bu_subject[] = "bench.udp";

enum bu_backend { BU_DPDK, BU_FORWARDER, BU_URING, BU_BACKENDS };
static const char *const bu_names[BU_BACKENDS] = { "dpdk", "dpdk-forwarder", "uring" };

struct bu_client {
        struct bench_udp_wire w;
        bool raw;                 /* the forwarder: bare payloads, no protocol */
        uint64_t session;
        uint64_t seq;
        uint64_t lost;
        struct bench_clock clock;
        uint8_t out[256];
        uint8_t in[NIC_DGRAM_BYTES_MAX];
};

struct bu_runs {
        double rates[BENCH_RUNS_MAX];
        struct bench_latency lats[BENCH_RUNS_MAX];
        uint64_t lost;
};

/* ---- the protocol, client side ---- */

/* A datagram of one frame: op with seq and handle, the subject and
 * payload; the CRC over the session and the frame. Returns its bytes. */
static size_t bu_dgram(struct bu_client *c, uint8_t op, uint16_t flags, uint64_t seq,
                       uint64_t handle, const char *subject, const void *payload, uint32_t len)
{
        uint32_t slen = subject != NULL ? (uint32_t)strlen(subject) : 0;
        struct atomq_frame f;
        atomq_frame_init(&f, op, (uint16_t)slen, 0, len);
        f.flags = flags;
        f.seq = seq;
        f.handle = handle;
        memcpy(c->out, &c->session, ATOMQ_DGRAM_SESSION_BYTES);
        uint8_t *p = c->out + ATOMQ_DGRAM_SESSION_BYTES;
        memcpy(p, &f, sizeof(f));
        memcpy(p + sizeof(f), subject, slen);
        memcpy(p + sizeof(f) + slen, payload, len);
        uint32_t bytes = ATOMQ_FRAME_HDR_BYTES + slen + len;
        dp_dgram_crc_fill(c->session, p, bytes);
        return ATOMQ_DGRAM_SESSION_BYTES + bytes;
}

/* Frames of op in a datagram of n bytes; *seq_out gets the seq of the
 * last one, *session the datagram's session. */
static unsigned bu_count(const uint8_t *d, int n, uint8_t op, uint64_t *seq_out, uint64_t *session)
{
        unsigned got = 0;
        if (n < (int)(ATOMQ_DGRAM_SESSION_BYTES + ATOMQ_FRAME_HDR_BYTES))
                return 0;
        memcpy(session, d, sizeof(*session));
        for (size_t off = ATOMQ_DGRAM_SESSION_BYTES; off + ATOMQ_FRAME_HDR_BYTES <= (size_t)n;) {
                struct atomq_frame f;
                memcpy(&f, d + off, sizeof(f));
                if (f.op == op) {
                        got++;
                        *seq_out = f.seq;
                }
                off += atomq_frame_bytes(f.subject_len, f.headers_len, f.payload_len);
        }
        return got;
}

/* Waits for a frame of op with seq (any seq for op PONG): 0 or -ETIMEDOUT. */
static int bu_wait(struct bu_client *c, uint8_t op, uint64_t seq, uint64_t timeout_ns)
{
        uint64_t end_ns = shm_clock_ns() + timeout_ns;
        while (shm_clock_ns() < end_ns) {
                int n = c->w.recv(c->w.ctx, c->in, sizeof(c->in));
                uint64_t got_seq = 0, session = 0;
                if (n > 0 && bu_count(c->in, n, op, &got_seq, &session) > 0 &&
                    (op == ATOMQ_OP_PONG || got_seq == seq)) {
                        if (op == ATOMQ_OP_PONG)
                                c->session = session;
                        return 0;
                }
        }
        return -ETIMEDOUT;
}

/* Opens a session and subscribes it to bu_subject. */
static int bu_session(struct bu_client *c)
{
        c->session = 0;
        c->seq = 0;
        for (int i = 0; i < 20; i++) {
                c->w.send(c->w.ctx, c->out, bu_dgram(c, ATOMQ_OP_PING, 0, 1, 0, NULL, NULL, 0));
                c->w.flush(c->w.ctx);
                if (bu_wait(c, ATOMQ_OP_PONG, 0, 100 * 1000 * 1000) == 0)
                        break;
        }
        if (c->session == 0)
                return -ETIMEDOUT;
        uint64_t seq = ++c->seq;
        c->w.send(c->w.ctx, c->out, bu_dgram(c, ATOMQ_OP_SUB, 0, seq, 1, bu_subject, NULL, 0));
        c->w.flush(c->w.ctx);
        return bu_wait(c, ATOMQ_OP_STATUS, seq, 1000 * 1000 * 1000);
}

/* One message for the throughput case. */
static void bu_send_msg(struct bu_client *c)
{
        static const uint8_t payload[BU_MSG_BYTES];
        if (c->raw)
                (void)c->w.send(c->w.ctx, payload, sizeof(payload));
        else
                (void)c->w.send(c->w.ctx, c->out,
                                bu_dgram(c, ATOMQ_OP_PUB, 0, 0, 0, bu_subject, payload,
                                         sizeof(payload)));
}

/* Messages back in what is there now. */
static unsigned bu_drain(struct bu_client *c)
{
        unsigned got = 0;
        for (int i = 0; i < 256; i++) {
                int n = c->w.recv(c->w.ctx, c->in, sizeof(c->in));
                if (n <= 0)
                        break;
                uint64_t seq, session;
                got += c->raw ? 1 : bu_count(c->in, n, ATOMQ_OP_MSG, &seq, &session);
        }
        return got;
}

/* Messages per second over duration_s, at most BU_WINDOW in flight. */
static double bu_throughput(struct bu_client *c, double duration_s)
{
        uint64_t start_ns = shm_clock_ns(), end_ns = start_ns + (uint64_t)(duration_s * 1e9);
        uint64_t got = 0, inflight = 0, progress_ns = start_ns, now_ns = start_ns;
        while (now_ns < end_ns) {
                for (; inflight < BU_WINDOW; inflight++)
                        bu_send_msg(c);
                c->w.flush(c->w.ctx);
                unsigned n = bu_drain(c);
                now_ns = shm_clock_ns();
                got += n;
                inflight = n > inflight ? 0 : inflight - n;
                if (n != 0) {
                        progress_ns = now_ns;
                } else if (now_ns - progress_ns > BU_LOST_NS) {
                        c->lost += inflight;   /* gone: the window starts over */
                        inflight = 0;
                        progress_ns = now_ns;
                }
        }
        return (double)got / ((double)(now_ns - start_ns) / 1e9);
}

/* One request at a time for duration_s: round trips into h. */
static void bu_latency(struct bu_client *c, double duration_s, struct bench_hist *h)
{
        uint64_t end_ns = shm_clock_ns() + (uint64_t)(duration_s * 1e9);
        while (shm_clock_ns() < end_ns) {
                uint64_t seq = ++c->seq;
                uint64_t t0 = bench_clock_ticks(&c->clock);
                int rc;
                if (c->raw) {
                        (void)c->w.send(c->w.ctx, &seq, sizeof(seq));
                        c->w.flush(c->w.ctx);
                        rc = -ETIMEDOUT;
                        uint64_t limit_ns = shm_clock_ns() + BU_LOST_NS;
                        while (rc != 0 && shm_clock_ns() < limit_ns) {
                                uint64_t back;
                                int n = c->w.recv(c->w.ctx, c->in, sizeof(c->in));
                                if (n == (int)sizeof(back) && memcpy(&back, c->in, sizeof(back)) &&
                                    back == seq)
                                        rc = 0;
                        }
                } else {
                        static const uint8_t payload[BU_MSG_BYTES];
                        (void)c->w.send(c->w.ctx, c->out,
                                        bu_dgram(c, ATOMQ_OP_PUB, ATOMQ_FRAME_F_ACK_REQ, seq, 0,
                                                 "bench.rtt", payload, sizeof(payload)));
                        c->w.flush(c->w.ctx);
                        rc = bu_wait(c, ATOMQ_OP_STATUS, seq, BU_LOST_NS);
                }
                if (rc != 0)
                        c->lost++;
                else
                        bench_hist_record(h, bench_clock_to_ns(&c->clock,
                                                               bench_clock_ticks(&c->clock) - t0));
        }
}

/* ---- the servers ---- */

static struct dp_dgram_config bu_dgram_cfg;

static int bu_engine_start(struct dp_engine *e, bool dpdk, uint16_t port)
{
        struct dp_engine_config ec;
        dp_engine_config_default(&ec, 4096);
        ec.workers = 1;
        ec.idle.kind = DP_IDLE_ALWAYS;   /* pinned to CPU 0 (dp_idle_pin) */
        ec.net_clients = true;
        dp_dgram_config_default(&bu_dgram_cfg);
        bu_dgram_cfg.enabled = true;
        bu_dgram_cfg.kernel = !dpdk;
        bu_dgram_cfg.port = port;
        ec.dgram = &bu_dgram_cfg;
        int rc = dp_engine_init(e, &ec);
        if (rc != 0)
                return rc;
        if (dpdk)
                bench_udp_dpdk_serve(e);
        rc = dp_engine_start(e);
        if (rc != 0)
                dp_engine_fini(e);
        return rc;
}

/* A free UDP port on loopback (bound and let go: nobody else takes it in
 * the moment before the engine binds it). */
static int bu_free_port(void)
{
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sa);
        int rc = fd < 0 || bind(fd, (struct sockaddr *)&sa, len) != 0 ||
                                 getsockname(fd, (struct sockaddr *)&sa, &len) != 0
                         ? -errno
                         : ntohs(sa.sin_port);
        if (fd >= 0)
                close(fd);
        return rc;
}

/* ---- the kernel socket wire ---- */

static int bu_sock_send(void *ctx, const void *data, size_t len)
{
        return send(*(int *)ctx, data, len, MSG_DONTWAIT) < 0 ? -ENOBUFS : 0;
}

static void bu_sock_flush(void *ctx)
{
        (void)ctx;
}

static int bu_sock_recv(void *ctx, uint8_t *buf, size_t cap)
{
        ssize_t n = recv(*(int *)ctx, buf, cap, MSG_DONTWAIT);
        if (n < 0)
                return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
        return (int)n;
}

static int bu_sock_open(int *fd, uint16_t port)
{
        *fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        int buf = 4 << 20;
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        if (*fd < 0)
                return -errno;
        (void)setsockopt(*fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
        (void)setsockopt(*fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
        return connect(*fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : -errno;
}

/* ---- the runs ---- */

static void bu_measure(struct bu_client *c, const struct bench_opts *o, struct bu_runs *r)
{
        static struct bench_hist h;
        (void)bu_throughput(c, o->warmup_s);
        for (unsigned i = 0; i < o->runs; i++) {
                r->rates[i] = bu_throughput(c, o->duration_s);
                bench_hist_init(&h);
                bu_latency(c, o->duration_s / 2, &h);
                bench_latency_from_hist(&r->lats[i], &h);
        }
        r->lost = c->lost;
}

static cpu_set_t bu_all_cpus;  /* the process's, before the client pinned itself */

/* Pins the calling thread to cpu (< 0: back to every CPU it had). */
static void bu_pin(int cpu)
{
        cpu_set_t set = bu_all_cpus;
        if (cpu >= 0) {
                CPU_ZERO(&set);
                CPU_SET(cpu, &set);
        }
        (void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* One backend's runs. The DPDK wire (c->w for dpdk and dpdk-forwarder) is
 * the caller's: one port serves both, atomq's worker and the forwarder in
 * turn. */
static int bu_backend_run(enum bu_backend b, const struct bench_opts *o, struct bu_client *c,
                          const struct bench_udp_wire *dpdk_wire, struct bu_runs *r)
{
        struct dp_engine e = { 0 };
        int fd = -1, rc, port = 0;
        c->raw = b == BU_FORWARDER;
        c->lost = 0;
        /* The server's threads inherit this thread's CPUs: all of them, so
         * the worker pins itself to the first (dp_idle_pin). */
        bu_pin(-1);
        if (b == BU_URING) {
                port = bu_free_port();
                rc = port < 0 ? port : bu_engine_start(&e, false, (uint16_t)port);
                if (rc == 0)
                        rc = bu_sock_open(&fd, (uint16_t)port);
                c->w = (struct bench_udp_wire){ .send = bu_sock_send, .flush = bu_sock_flush,
                                                .recv = bu_sock_recv, .ctx = &fd };
        } else {
                c->w = *dpdk_wire;
                rc = b == BU_DPDK ? bu_engine_start(&e, true, 0)
                                  : bench_udp_dpdk_forwarder_start(o->cpus_set ? o->cpus[0] : 0);
        }
        bu_pin(o->cpus_set ? o->cpus[1] : 1);
        if (rc == 0 && !c->raw)
                rc = bu_session(c);
        if (rc == 0)
                bu_measure(c, o, r);
        if (b == BU_FORWARDER)
                bench_udp_dpdk_forwarder_stop();
        else if (e.hdr != NULL)
                dp_engine_fini(&e);
        if (fd >= 0)
                close(fd);
        return rc;
}

static void bu_result(struct bench_report *rep, enum bu_backend b, const struct bench_opts *o,
                      struct bu_runs *r)
{
        struct bench_result *res = bench_report_add(rep, b == BU_FORWARDER ? "baseline" : "atomq",
                                                    "udp", bu_names[b]);
        if (res == NULL)
                return;
        res->msg_bytes = BU_MSG_BYTES;
        res->msgs_per_s = bench_median_f64(r->rates, o->runs);
        res->bytes_per_s = res->msgs_per_s * BU_MSG_BYTES;
        res->errors = r->lost;
        res->cpu_share = 1.0;
        res->has_latency = true;
        snprintf(res->clock, sizeof(res->clock), "tsc or clock_gettime");
        bench_latency_median(&res->lat, r->lats, o->runs);
        bench_result_str(res, "backend", bu_names[b]);
}

int bench_udp_run(const struct bench_opts *o, struct bench_progress *pg, struct bench_report *rep)
{
        (void)pg;
        static struct bu_client c;
        static struct bu_runs runs[BU_BACKENDS];
        bench_clock_init(&c.clock, true);
        (void)pthread_getaffinity_np(pthread_self(), sizeof(bu_all_cpus), &bu_all_cpus);
        if (CPU_COUNT(&bu_all_cpus) < 2 && !o->quiet)
                fprintf(stderr, "udp: fewer than 2 CPUs: server and client share one\n");
        bool have_dpdk = bench_udp_dpdk_eal() == 0;
        struct bench_udp_wire dpdk_wire;
        if (have_dpdk && (bench_udp_dpdk_thread() != 0 || bench_udp_dpdk_open(&dpdk_wire) != 0))
                have_dpdk = false;
        if (!have_dpdk && !o->quiet)
                fprintf(stderr, "udp: no DPDK in this build or no EAL: backend uring only\n");
        for (int b = 0; b < BU_BACKENDS; b++) {
                if (b != BU_URING && !have_dpdk)
                        continue;
                int rc = bu_backend_run((enum bu_backend)b, o, &c, &dpdk_wire, &runs[b]);
                if (rc != 0) {
                        fprintf(stderr, "udp: backend %s: %s\n", bu_names[b], strerror(-rc));
                        if (have_dpdk)
                                bench_udp_dpdk_close();
                        return rc;
                }
                bu_result(rep, (enum bu_backend)b, o, &runs[b]);
        }
        if (have_dpdk)
                bench_udp_dpdk_close();
        /* The targets as ratios on the dpdk line (docs/benchmarks.md). */
        if (have_dpdk && rep->n >= 3) {
                struct bench_result *d = &rep->results[rep->n - 3];
                bench_result_f64(d, "vs_forwarder", d->msgs_per_s / rep->results[rep->n - 2].msgs_per_s);
                bench_result_f64(d, "vs_uring", d->msgs_per_s / rep->results[rep->n - 1].msgs_per_s);
        }
        return 0;
}
