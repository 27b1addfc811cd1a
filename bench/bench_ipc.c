/* bench_ipc.c - scenario "ipc": direct channels between two colocated
 * agents (include/atomq/atomq.h), against the bare SPSC ring; with
 * --control, agents through a running atomqd's dataplane too
 * (bench_ipc_agent.c: cases ipc-pubsub and ipc-pingpong, printed first).
 *
 *      atomq-bench ipc
 *      atomq-bench ipc --cpus 0,1 --runs 5 --json
 *      atomq-bench ipc --control /tmp/aq/control.sock --runs 3 --json
 *
 * Four cases without atomqd, each repeated --runs times and reported as
 * medians:
 *   ipc-channel           msgs/s of 32-byte messages through one direction
 *                         of a channel (64 KiB rings), atomq_channel_send
 *                         and recv/release, sender and receiver pinned;
 *                         field batch32_msgs_per_s: the same with zero-copy
 *                         reserve/commit and one wake-up per 32 messages;
 *   ipc-channel-pingpong  round trips of a 32-byte message over both
 *                         directions, each timed into a histogram (the
 *                         echo sends straight from the borrowed buffer);
 *   channel-open          create + attach + close of a channel, 10k times
 *                         per run on one thread: p50/p99/p999 ns;
 *   channel-open-atomqd   (with --control) the same through atomqd:
 *                         atomq_channel_open by one agent connection,
 *                         atomq_channel_join by another, both close; 500
 *                         times per run;
 *   ring-baseline         the bare shm_ring (32-byte slots, 64 KiB) between
 *                         the same two CPUs in the same run: what the
 *                         channel costs on top of the ring.
 *
 * The two ends are two threads of this process, each with its own mapping
 * of the memfd (the peer attaches the descriptor as another process
 * would); two processes would add nothing on the data path but the TLB
 * entries. Every message carries a sequence number the receiver checks; a
 * mismatch is an error and makes atomq-bench exit 1. With --control,
 * ipc-pubsub gets a field ring_ratio: its msgs_per_s over ring-baseline's.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "atomq/atomq.h"
#include "bench/bench_clock.h"
#include "bench/bench_cpu.h"
#include "bench/bench_ipc_pvt.h"
#include "bench/bench_progress.h"
#include "bench/bench_report.h"
#include "bench/bench_ring_pvt.h"
#include "bench/bench_scenario.h"
#include "shm/shm_ring.h"

#define BENCH_IPC_RING_BYTES ATOMQ_CHANNEL_RING_BYTES
#define BENCH_IPC_OPENS 10000u
/* Through atomqd: fewer per run, under its --max-channels (1024 by
 * default), since it lets closed channels go on a 20 ms tick. */
#define BENCH_IPC_OPENS_ATOMQD 500u
/* The receiver reads the clock once per this many messages. */
#define BENCH_IPC_CLOCK_EVERY 1024u
/* ipc-channel's batch32 sender wakes the receiver once per this many. */
#define BENCH_IPC_NOTIFY_EVERY 32u

/* What one thread of a run writes: its end of the channel (or its view of
 * the ring) and its outcome, lines apart from the other thread's (a view
 * next to the peer's would bounce with every message). */
struct bench_ipc_side {
        _Alignas(BENCH_RING_GUARD_BYTES) struct atomq_channel ch;
        struct shm_ring ring; /* ring-baseline only */
        int rc;
        double share;
};

/* One run of a throughput or ping-pong case. side[0] sends (or pings),
 * side[1] receives (or pongs). */
struct bench_ipc_run {
        struct bench_ipc_side side[2];
        /* Read-only while the threads run. */
        _Alignas(BENCH_RING_GUARD_BYTES) struct bench_clock clock;
        bool yield;
        uint64_t open_ticks, close_ticks, give_up_ticks;
        struct bench_hist *hist; /* ping-pong only: only ping writes it */
        void *ring_mem;
        size_t ring_mem_bytes;
        _Alignas(BENCH_RING_GUARD_BYTES) _Atomic bool stop;
        /* Written once, when a thread ends. */
        _Alignas(BENCH_RING_GUARD_BYTES) uint64_t msgs;
        uint64_t window_ns;
        uint64_t errors;
};

struct bench_ipc_msg {
        uint64_t seq;
        uint8_t pad[BENCH_IPC_MSG_BYTES - sizeof(uint64_t)];
};
_Static_assert(sizeof(struct bench_ipc_msg) == BENCH_IPC_MSG_BYTES, "message size");

static bool bench_ipc_stalled(const struct bench_ipc_run *r, uint32_t spins)
{
        return bench_ring_stalled(r->yield, &r->clock, r->give_up_ticks, spins);
}

/* Sender of ipc-channel: until stop, then closes its end. */
static void *bench_ipc_chan_tx(void *arg)
{
        struct bench_ipc_run *r = arg;
        struct bench_thread_share share;
        bench_thread_share_start(&share);
        struct bench_ipc_msg m = { .seq = 0 };
        int rc = 0;
        for (uint32_t spins = 1;; spins++) {
                rc = atomq_channel_send(&r->side[0].ch, &m, sizeof(m));
                if (shm_likely(rc == 0)) {
                        m.seq++;
                        continue;
                }
                if (rc != -EAGAIN || atomic_load_explicit(&r->stop, memory_order_relaxed))
                        break;
                if (bench_ipc_stalled(r, spins)) {
                        rc = -ETIMEDOUT;
                        break;
                }
        }
        /* -EAGAIN or -EPIPE after stop are how a run ends. */
        r->side[0].rc = rc == -EAGAIN || rc == -EPIPE ? 0 : rc;
        r->side[0].share = bench_thread_share_end(&share);
        return NULL;
}

/* Sender of ipc-channel's batch32 figure: zero-copy reserve/commit, and
 * one wake-up (a full fence) per BENCH_IPC_NOTIFY_EVERY messages instead of
 * one per message, as a sender that batches would do. */
static void *bench_ipc_chan_tx_batch(void *arg)
{
        struct bench_ipc_run *r = arg;
        struct atomq_channel *ch = &r->side[0].ch;
        struct bench_thread_share share;
        bench_thread_share_start(&share);
        struct bench_ipc_msg m = { .seq = 0 };
        int rc = 0;
        for (uint32_t spins = 1;; spins++) {
                void *p;
                rc = atomq_channel_reserve(ch, sizeof(m), &p);
                if (shm_likely(rc == 0)) {
                        memcpy(p, &m, sizeof(m));
                        atomq_channel_commit(ch);
                        if (++m.seq % BENCH_IPC_NOTIFY_EVERY == 0)
                                atomq_channel_notify(ch);
                        continue;
                }
                atomq_channel_notify(ch);
                if (rc != -EAGAIN || atomic_load_explicit(&r->stop, memory_order_relaxed))
                        break;
                if (bench_ipc_stalled(r, spins)) {
                        rc = -ETIMEDOUT;
                        break;
                }
        }
        r->side[0].rc = rc == -EAGAIN || rc == -EPIPE ? 0 : rc;
        r->side[0].share = bench_thread_share_end(&share);
        return NULL;
}

/* Sender of ring-baseline: the same loop on the bare ring. */
static void *bench_ipc_ring_tx(void *arg)
{
        struct bench_ipc_run *r = arg;
        struct bench_thread_share share;
        bench_thread_share_start(&share);
        struct bench_ipc_msg m = { .seq = 0 };
        int rc = 0;
        for (uint32_t spins = 1;; spins++) {
                int put = shm_ring_enqueue_burst(&r->side[0].ring, &m, 1);
                if (shm_likely(put == 1)) {
                        m.seq++;
                        continue;
                }
                if (put < 0 || atomic_load_explicit(&r->stop, memory_order_relaxed)) {
                        rc = put < 0 ? put : 0;
                        break;
                }
                if (bench_ipc_stalled(r, spins)) {
                        rc = -ETIMEDOUT;
                        break;
                }
        }
        r->side[0].rc = rc;
        r->side[0].share = bench_thread_share_end(&share);
        return NULL;
}

/* One receive of either kind: 1 with *seq, 0 when empty, < 0 on error. */
static inline __attribute__((always_inline)) int
bench_ipc_rx_one(struct bench_ipc_run *r, bool ring, uint64_t *seq)
{
        if (ring) {
                struct bench_ipc_msg m;
                int got = shm_ring_dequeue_burst(&r->side[1].ring, &m, 1);
                if (got == 1)
                        *seq = m.seq;
                return got;
        }
        struct atomq_msg m;
        int got = atomq_channel_recv(&r->side[1].ch, &m);
        if (shm_likely(got == 1)) {
                if (shm_unlikely(m.len != BENCH_IPC_MSG_BYTES))
                        *seq = UINT64_MAX;
                else
                        memcpy(seq, m.data, sizeof(*seq));
                atomq_channel_release(&r->side[1].ch);
        }
        return got;
}

/* The receiver owns the timed window: it counts the messages it got
 * between open_ticks and close_ticks, then tells the sender to stop. */
static inline __attribute__((always_inline)) void bench_ipc_rx(struct bench_ipc_run *r,
                                                                bool ring)
{
        struct bench_thread_share share;
        bench_thread_share_start(&share);
        uint64_t want = 0, errors = 0, n0 = 0, t0 = 0, t = 0;
        int rc = 0;
        for (uint32_t spins = 1;; spins++) {
                uint64_t seq;
                int got = bench_ipc_rx_one(r, ring, &seq);
                if (shm_likely(got == 1)) {
                        errors += seq != want;
                        want = seq + 1;
                        if (shm_likely(want % BENCH_IPC_CLOCK_EVERY != 0))
                                continue;
                } else if (got < 0) {
                        rc = got;
                        break;
                } else if (bench_ipc_stalled(r, spins)) {
                        rc = -ETIMEDOUT;
                        break;
                }
                if (bench_ipc_window(&r->clock, r->open_ticks, r->close_ticks, want, &t, &t0,
                                     &n0))
                        break;
        }
        atomic_store_explicit(&r->stop, true, memory_order_relaxed);
        if (!ring)
                atomq_channel_close(&r->side[1].ch); /* the sender sees -EPIPE */
        r->msgs = want - n0;
        r->window_ns = t0 == 0 ? 0 : bench_clock_to_ns(&r->clock, t - t0);
        r->errors = errors;
        r->side[1].rc = rc;
        r->side[1].share = bench_thread_share_end(&share);
}

static void *bench_ipc_chan_rx(void *arg)
{
        bench_ipc_rx(arg, false);
        return NULL;
}

static void *bench_ipc_ring_rx(void *arg)
{
        bench_ipc_rx(arg, true);
        return NULL;
}

/* Ping: times each round trip of a sequenced message into the histogram. */
static void *bench_ipc_ping(void *arg)
{
        struct bench_ipc_run *r = arg;
        struct atomq_channel *ch = &r->side[0].ch;
        struct bench_thread_share share;
        bench_thread_share_start(&share);
        struct bench_ipc_msg m = { .seq = 0 };
        uint64_t errors = 0, first = 0, t1 = 0;
        int rc = 0;
        for (;; m.seq++) {
                uint64_t t0 = bench_clock_ticks(&r->clock);
                rc = atomq_channel_send(ch, &m, sizeof(m));
                struct atomq_msg echo;
                for (uint32_t spins = 1; rc == 0; spins++) {
                        int got = atomq_channel_recv(ch, &echo);
                        if (shm_likely(got == 1))
                                break;
                        rc = got < 0 ? got : bench_ipc_stalled(r, spins) ? -ETIMEDOUT : 0;
                }
                t1 = bench_clock_ticks(&r->clock);
                if (shm_unlikely(rc != 0))
                        break;
                uint64_t seq = UINT64_MAX;
                if (echo.len == sizeof(m))
                        memcpy(&seq, echo.data, sizeof(seq));
                errors += seq != m.seq;
                atomq_channel_release(ch);
                if (t0 < r->open_ticks)
                        continue;
                if (first == 0)
                        first = t0;
                bench_hist_record(r->hist, bench_clock_to_ns(&r->clock, t1 - t0));
                if (t1 >= r->close_ticks)
                        break;
        }
        atomq_channel_close(ch); /* pong's recv gives -EPIPE: its exit */
        r->window_ns = first == 0 ? 0 : bench_clock_to_ns(&r->clock, t1 - first);
        r->errors = errors;
        r->side[0].rc = rc;
        r->side[0].share = bench_thread_share_end(&share);
        return NULL;
}

/* Pong: echoes every message from the borrowed buffer until ping closes. */
static void *bench_ipc_pong(void *arg)
{
        struct bench_ipc_run *r = arg;
        struct atomq_channel *ch = &r->side[1].ch;
        struct bench_thread_share share;
        bench_thread_share_start(&share);
        int rc;
        for (uint32_t spins = 1;; spins++) {
                struct atomq_msg m;
                rc = atomq_channel_recv(ch, &m);
                if (shm_likely(rc == 1)) {
                        rc = atomq_channel_send(ch, m.data, m.len);
                        atomq_channel_release(ch);
                        if (rc != 0)
                                break;
                        continue;
                }
                if (rc < 0)
                        break;
                if (bench_ipc_stalled(r, spins)) {
                        rc = -ETIMEDOUT;
                        break;
                }
        }
        atomq_channel_close(ch);
        r->side[1].rc = rc == -EPIPE ? 0 : rc;
        r->side[1].share = bench_thread_share_end(&share);
        return NULL;
}

enum bench_ipc_kind { BENCH_IPC_CHAN, BENCH_IPC_CHAN_BATCH, BENCH_IPC_RING, BENCH_IPC_PP };

static void bench_ipc_run_free(struct bench_ipc_run *r)
{
        atomq_channel_close(&r->side[0].ch);
        atomq_channel_close(&r->side[1].ch);
        if (r->ring_mem != NULL)
                munmap(r->ring_mem, r->ring_mem_bytes);
        free(r->hist);
        free(r);
}

/* A run's state with its channel (or ring) set up and its window timed. */
static struct bench_ipc_run *bench_ipc_run_new(const struct bench_ipc_env *env,
                                               enum bench_ipc_kind kind)
{
        struct bench_ipc_run *r = aligned_alloc(_Alignof(struct bench_ipc_run), sizeof(*r));
        if (r == NULL)
                return NULL;
        memset(r, 0, sizeof(*r));
        r->side[0].ch.fd = r->side[1].ch.fd = -1;
        r->clock = env->clock;
        r->yield = env->cpus.shared;
        int rc = 0;
        if (kind == BENCH_IPC_RING) {
                uint32_t slots = BENCH_IPC_RING_BYTES / BENCH_IPC_MSG_BYTES;
                r->ring_mem_bytes = (size_t)shm_align_up(
                        shm_ring_bytes(slots, BENCH_IPC_MSG_BYTES), 4096);
                r->ring_mem = bench_ring_mem_map(r->ring_mem_bytes);
                rc = r->ring_mem == NULL ? -ENOMEM
                     : shm_ring_init(&r->side[0].ring, r->ring_mem, r->ring_mem_bytes, slots,
                                     BENCH_IPC_MSG_BYTES);
                if (rc == 0)
                        rc = shm_ring_attach(&r->side[1].ring, r->ring_mem, r->ring_mem_bytes);
        } else {
                rc = atomq_channel_create(&r->side[0].ch, BENCH_IPC_RING_BYTES);
                if (rc == 0)
                        rc = atomq_channel_attach(&r->side[1].ch, atomq_channel_fd(&r->side[0].ch));
        }
        if (rc == 0 && kind == BENCH_IPC_PP) {
                r->hist = malloc(sizeof(*r->hist));
                rc = r->hist == NULL ? -ENOMEM : 0;
                if (rc == 0)
                        bench_hist_init(r->hist);
        }
        if (rc != 0) {
                bench_ipc_run_free(r);
                return NULL;
        }
        const struct bench_clock *c = &env->clock;
        r->open_ticks = bench_clock_ticks(c) +
                        bench_clock_from_ns(c, (uint64_t)(env->o->warmup_s * 1e9));
        r->close_ticks = r->open_ticks +
                         bench_clock_from_ns(c, (uint64_t)(env->o->duration_s * 1e9));
        r->give_up_ticks = r->close_ticks + bench_clock_from_ns(c, BENCH_RING_STALL_NS);
        return r;
}

/* Starts the receiving side on cpu[1], the sending side on cpu[0]. */
static int bench_ipc_threads(const struct bench_ipc_env *env, struct bench_ipc_run *r,
                             enum bench_ipc_kind kind)
{
        static void *(*const tx_fns[])(void *) = {
                [BENCH_IPC_CHAN] = bench_ipc_chan_tx,
                [BENCH_IPC_CHAN_BATCH] = bench_ipc_chan_tx_batch,
                [BENCH_IPC_RING] = bench_ipc_ring_tx,
                [BENCH_IPC_PP] = bench_ipc_ping,
        };
        static void *(*const rx_fns[])(void *) = {
                [BENCH_IPC_CHAN] = bench_ipc_chan_rx,
                [BENCH_IPC_CHAN_BATCH] = bench_ipc_chan_rx,
                [BENCH_IPC_RING] = bench_ipc_ring_rx,
                [BENCH_IPC_PP] = bench_ipc_pong,
        };
        void *(*tx)(void *) = tx_fns[kind];
        void *(*rx)(void *) = rx_fns[kind];
        pthread_t tx_thread, rx_thread;
        int rc = bench_thread_start(&rx_thread, env->cpus.cpu[1], rx, r);
        if (rc != 0)
                return rc;
        rc = bench_thread_start(&tx_thread, env->cpus.cpu[0], tx, r);
        if (rc != 0) {
                atomic_store(&r->stop, true);
                pthread_join(rx_thread, NULL); /* gives up after give_up_ticks */
                return rc;
        }
        rc = bench_progress_join(env->pg, tx_thread);
        int rx_rc = -pthread_join(rx_thread, NULL);
        if (rc == 0)
                rc = rx_rc != 0 ? rx_rc : r->side[0].rc != 0 ? r->side[0].rc : r->side[1].rc;
        return rc;
}

static const char *bench_ipc_case_name(enum bench_ipc_kind kind)
{
        static const char *const names[] = {
                [BENCH_IPC_CHAN] = "ipc-channel",
                [BENCH_IPC_CHAN_BATCH] = "ipc-channel batch32",
                [BENCH_IPC_RING] = "ring-baseline",
                [BENCH_IPC_PP] = "ipc-channel-pingpong",
        };
        return names[kind];
}

/* What --runs runs of a two-thread case add up to. */
struct bench_ipc_runs {
        double rates[BENCH_RUNS_MAX];
        struct bench_latency lats[BENCH_RUNS_MAX];
        struct bench_ring_tally tally;
};

static int bench_ipc_runs(const struct bench_ipc_env *env, enum bench_ipc_kind kind,
                          struct bench_ipc_runs *out)
{
        const char *name = bench_ipc_case_name(kind);
        const unsigned runs = env->o->runs;
        out->tally = (struct bench_ring_tally){ .errors = 0, .cpu_share = 1.0 };
        for (unsigned run = 0; run < runs; run++) {
                bench_progress_label(env->pg, "ipc: %s, run %u/%u", name, run + 1, runs);
                struct bench_ipc_run *r = bench_ipc_run_new(env, kind);
                int rc = r == NULL ? -ENOMEM : bench_ipc_threads(env, r, kind);
                if (rc != 0) {
                        if (r != NULL)
                                bench_ipc_run_free(r);
                        bench_progress_end(env->pg);
                        fprintf(stderr, "atomq-bench: ipc: %s run %u: %s\n", name, run + 1,
                                atomq_strerror(rc));
                        return rc;
                }
                uint64_t n = kind == BENCH_IPC_PP ? r->hist->count : r->msgs;
                out->rates[run] = r->window_ns == 0 ? 0
                                  : (double)n * 1e9 / (double)r->window_ns;
                if (kind == BENCH_IPC_PP)
                        bench_latency_from_hist(&out->lats[run], r->hist);
                out->tally.errors += r->errors;
                bench_ring_tally_share(&out->tally, r->side[0].share, r->side[1].share);
                bench_ipc_run_free(r);
        }
        return 0;
}

/* A two-thread case reduced to medians; ipc-channel also carries the
 * batch32 rate (reserve/commit, one wake-up per 32 messages). */
static int bench_ipc_case(const struct bench_ipc_env *env, enum bench_ipc_kind kind,
                          struct bench_report *rep)
{
        const unsigned runs = env->o->runs;
        static struct bench_ipc_runs main_runs, batch_runs;
        int rc = bench_ipc_runs(env, kind, &main_runs);
        if (rc == 0 && kind == BENCH_IPC_CHAN)
                rc = bench_ipc_runs(env, BENCH_IPC_CHAN_BATCH, &batch_runs);
        if (rc != 0)
                return rc;
        struct bench_result *res = bench_report_add(
                rep, kind == BENCH_IPC_RING ? "baseline" : "atomq", "ipc",
                bench_ipc_case_name(kind));
        if (res == NULL)
                return -ENOSPC;
        res->msg_bytes = BENCH_IPC_MSG_BYTES;
        res->msgs_per_s = bench_median_f64(main_runs.rates, runs);
        res->bytes_per_s = res->msgs_per_s * BENCH_IPC_MSG_BYTES;
        res->errors = main_runs.tally.errors;
        res->cpu_share = main_runs.tally.cpu_share;
        if (kind == BENCH_IPC_CHAN) {
                bench_result_rate(res, "batch32_msgs_per_s",
                                  bench_median_f64(batch_runs.rates, runs));
                res->errors += batch_runs.tally.errors;
                if (batch_runs.tally.cpu_share < res->cpu_share)
                        res->cpu_share = batch_runs.tally.cpu_share;
        }
        if (kind == BENCH_IPC_PP) {
                res->has_latency = true;
                snprintf(res->clock, sizeof(res->clock), "%s", bench_clock_name(&env->clock));
                bench_latency_median(&res->lat, main_runs.lats, runs);
        }
        return 0;
}

/* One open + close of a channel, both ends, the i-th of a run. */
typedef int bench_ipc_open_fn(void *arg, unsigned i);

/* channel-open: create + attach + close, the two agents setting it up. */
static int bench_ipc_open_local(void *arg, unsigned i)
{
        struct atomq_channel a, b;
        (void)arg;
        (void)i;
        int rc = atomq_channel_create(&a, BENCH_IPC_RING_BYTES);
        if (rc != 0)
                return rc;
        rc = atomq_channel_attach(&b, atomq_channel_fd(&a));
        if (rc == 0)
                atomq_channel_close(&b);
        atomq_channel_close(&a);
        return rc;
}

/* channel-open-atomqd: open (end 0) by one agent, join (end 1) by the
 * other, both through atomqd's control socket, then both close. Each name
 * is new: atomqd lets a name go only on its next tick after both ends
 * closed. */
static int bench_ipc_open_atomqd(void *arg, unsigned i)
{
        struct atomq **conn = arg;
        static unsigned serial;
        struct atomq_channel a, b;
        char name[48];
        (void)i;
        snprintf(name, sizeof(name), "bench.open.%d.%u", (int)getpid(), serial++);
        int rc = atomq_channel_open(conn[0], name, BENCH_IPC_RING_BYTES, 0, &a);
        if (rc != 0)
                return rc;
        rc = atomq_channel_join(conn[1], name, &b);
        if (rc == 0)
                atomq_channel_close(&b);
        atomq_channel_close(&a);
        return rc;
}

/* One run: opens times fn, each timed into h. */
static int bench_ipc_open_once(const struct bench_ipc_env *env, struct bench_hist *h,
                               bench_ipc_open_fn *fn, void *arg, unsigned opens)
{
        const struct bench_clock *c = &env->clock;
        for (unsigned i = 0; i < opens; i++) {
                uint64_t t0 = bench_clock_ticks(c);
                int rc = fn(arg, i);
                uint64_t t1 = bench_clock_ticks(c);
                if (rc != 0)
                        return rc;
                bench_hist_record(h, bench_clock_to_ns(c, t1 - t0));
        }
        return 0;
}

static int bench_ipc_open_case(const struct bench_ipc_env *env, struct bench_report *rep,
                               const char *name, bench_ipc_open_fn *fn, void *arg,
                               unsigned opens)
{
        const unsigned runs = env->o->runs;
        struct bench_latency lats[BENCH_RUNS_MAX];
        double rates[BENCH_RUNS_MAX];
        struct bench_hist *h = malloc(sizeof(*h));
        if (h == NULL)
                return -ENOMEM;
        int rc = 0;
        for (unsigned run = 0; run < runs && rc == 0; run++) {
                bench_progress_label(env->pg, "ipc: %s, run %u/%u", name, run + 1, runs);
                bench_hist_init(h);
                uint64_t t0 = shm_clock_ns();
                rc = bench_ipc_open_once(env, h, fn, arg, opens);
                rates[run] = (double)opens * 1e9 / (double)(shm_clock_ns() - t0);
                bench_latency_from_hist(&lats[run], h);
        }
        free(h);
        if (rc != 0) {
                fprintf(stderr, "atomq-bench: ipc: %s: %s\n", name, atomq_strerror(rc));
                return rc;
        }
        struct bench_result *res = bench_report_add(rep, "atomq", "ipc", name);
        if (res == NULL)
                return -ENOSPC;
        res->no_msgs = true;
        res->fixed_work = true;
        bench_result_u64(res, "opens", opens);
        bench_result_rate(res, "opens_per_s", bench_median_f64(rates, runs));
        bench_result_u64(res, "map_bytes", atomq_channel_map_bytes(BENCH_IPC_RING_BYTES));
        res->has_latency = true;
        snprintf(res->clock, sizeof(res->clock), "%s", bench_clock_name(&env->clock));
        bench_latency_median(&res->lat, lats, runs);
        return 0;
}

/* channel-open-atomqd with two fresh connections (--control). */
static int bench_ipc_open_atomqd_case(const struct bench_ipc_env *env, struct bench_report *rep)
{
        struct atomq *conn[2] = { NULL, NULL };
        int rc = 0;
        for (int i = 0; i < 2 && rc == 0; i++)
                rc = atomq_connect(env->o->control_path, &conn[i]);
        if (rc == 0)
                rc = bench_ipc_open_case(env, rep, "channel-open-atomqd", bench_ipc_open_atomqd,
                                         conn, BENCH_IPC_OPENS_ATOMQD);
        else
                fprintf(stderr, "atomq-bench: ipc: --control %s: %s\n", env->o->control_path,
                        atomq_strerror(rc));
        atomq_close(conn[0]);
        atomq_close(conn[1]);
        return rc;
}

static int bench_ipc_env_setup(struct bench_ipc_env *env)
{
        const struct bench_opts *o = env->o;
        int bad_cpu = -1;
        int rc = bench_cpus_pick(&env->cpus, o->cpus_set ? o->cpus : NULL, &bad_cpu);
        if (rc == -EINVAL) {
                fprintf(stderr, "atomq-bench: --cpus: CPU %d is not available to this process "
                                "(see taskset -p %d)\n", bad_cpu, (int)getpid());
                return rc;
        }
        if (rc != 0) {
                fprintf(stderr, "atomq-bench: ipc: sched_getaffinity: %s\n", strerror(-rc));
                return rc;
        }
        bench_clock_init(&env->clock, true);
        if (o->quiet)
                return 0;
        if (env->cpus.cpu[0] < 0)
                fprintf(stderr, "ipc: one CPU only: both threads share it and yield when "
                                "idle; figures are not representative\n");
        else
                fprintf(stderr, "ipc: threads pinned to CPUs %d (sender, ping) and %d "
                                "(receiver, pong); two mappings of one memfd; channel-open "
                                "runs unpinned on the main thread\n",
                        env->cpus.cpu[0], env->cpus.cpu[1]);
        if (o->control_path != NULL && !o->cpus_set)
                fprintf(stderr, "ipc: ipc-pubsub and ipc-pingpong run unpinned (the worker "
                                "is a busy thread too; with fewer than 3 CPUs ipc-pubsub "
                                "publishes and receives on one thread): pin them with "
                                "--cpus\n");
        else if (o->control_path != NULL && env->cpus.shared)
                fprintf(stderr, "ipc: ipc-pubsub runs as one thread on CPU %d (a burst of "
                                "publishes, then every delivery back), ipc-pingpong on it too\n",
                        env->cpus.cpu[0]);
        else if (o->control_path == NULL)
                fprintf(stderr, "ipc: ipc-pubsub and ipc-pingpong need a running atomqd: "
                                "--control PATH\n");
        return 0;
}

/* ipc-pubsub over ring-baseline, on the former: how much of the bare
 * ring's rate survives the trip through the dataplane. */
static void bench_ipc_ring_ratio(struct bench_report *rep, struct bench_result *pubsub)
{
        for (unsigned i = 0; pubsub != NULL && i < rep->n; i++) {
                const struct bench_result *ring = &rep->results[i];
                if (strcmp(ring->case_name, "ring-baseline") == 0 && ring->msgs_per_s > 0)
                        bench_result_f64(pubsub, "ring_ratio", pubsub->msgs_per_s / ring->msgs_per_s);
        }
}

int bench_ipc_run(const struct bench_opts *o, struct bench_progress *pg,
                  struct bench_report *rep)
{
        struct bench_ipc_env env = { .o = o, .pg = pg };
        struct bench_result *pubsub = NULL;
        int rc = bench_ipc_env_setup(&env);
        if (rc != 0)
                return rc;
        bool agents = o->control_path != NULL;
        bench_progress_start(pg, (agents ? 6.0 : 4.0) * o->runs * (o->warmup_s + o->duration_s));
        /* The cases through atomqd first: they print first, and the ratio
         * to ring-baseline is added to ipc-pubsub at the end. */
        if (agents)
                rc = bench_ipc_agent_cases(&env, rep, &pubsub);
        if (rc == 0)
                rc = bench_ipc_case(&env, BENCH_IPC_CHAN, rep);
        if (rc == 0)
                rc = bench_ipc_case(&env, BENCH_IPC_PP, rep);
        if (rc == 0)
                rc = bench_ipc_open_case(&env, rep, "channel-open", bench_ipc_open_local, NULL,
                                         BENCH_IPC_OPENS);
        if (rc == 0 && agents)
                rc = bench_ipc_open_atomqd_case(&env, rep);
        if (rc == 0)
                rc = bench_ipc_case(&env, BENCH_IPC_RING, rep);
        if (rc == 0)
                bench_ipc_ring_ratio(rep, pubsub);
        bench_progress_end(pg);
        return rc;
}
