/* bench_ring_pingpong.c - the latency cases of scenario "ring": an 8-byte
 * message bounced between two pinned threads, each round trip timed into a
 * histogram.
 *
 *      atomq-bench ring --duration 2 --json | grep p50_ns
 *
 * "pingpong" sends over one shm_ring and answers over another, busy-polling
 * both. "cacheline" does the same exchange over one bare cache line each
 * way: it is the floor the two CPUs impose (a line written on one core and
 * read on the other, twice), so a reader sees what part of the ring's
 * round trip is the ring and what part is the machine. A ring message
 * moves two lines each way (the head index and the slot), so it cannot
 * beat that floor.
 *
 * The ping thread reads the clock (rdtscp) before sending and after the
 * echo arrives; the figures include the cost of one read (~27 ns on the KVM
 * guest we develop on, see bench_clock.h) and are not corrected for it. The
 * pong thread echoes each sequence number and the ping thread checks it.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench/bench_hist.h"
#include "bench/bench_progress.h"
#include "bench/bench_ring_pvt.h"
#include "shm/shm_ring.h"

/* Lockstep needs one slot; a few more cost nothing. */
#define BENCH_RING_PP_SLOTS 64u
#define BENCH_RING_PP_MSG_BYTES 8u
/* Values the cache lines carry besides sequence numbers. */
#define BENCH_RING_PP_STOP UINT64_MAX
#define BENCH_RING_PP_EMPTY (UINT64_MAX - 1)

/* One thread's side: the ring it sends on and the one it polls. */
struct bench_ring_pp_side {
        _Alignas(BENCH_RING_GUARD_BYTES) struct shm_ring tx;
        struct shm_ring rx;
        uint64_t errors;
        double cpu_share;
        int rc;
};

/* A cache line of its own (two, for the spatial prefetcher). */
struct bench_ring_pp_line {
        _Alignas(BENCH_RING_GUARD_BYTES) _Atomic uint64_t v;
};

struct bench_ring_pp {
        struct bench_ring_pp_side ping;
        struct bench_ring_pp_side pong;
        struct bench_ring_pp_line lines[2]; /* [0]: ping to pong, [1]: back */
        /* Read-only while the threads run, except hist and the window,
         * which only the ping thread writes. */
        _Alignas(BENCH_RING_GUARD_BYTES) struct bench_clock clock;
        bool yield;
        uint64_t open_ticks;    /* warm-up ends */
        uint64_t close_ticks;   /* the timed window ends */
        uint64_t give_up_ticks; /* a silent peer is a failure after this */
        uint64_t window_ns;
        struct bench_hist *hist;
        void *mem[2];           /* ring [0]: ping to pong, [1]: back */
        size_t mem_bytes;
};

/* The idle step of a poll loop: -ETIMEDOUT past give_up (bench_ring_stalled). */
static inline int bench_ring_pp_idle(const struct bench_ring_pp *pp, uint32_t spins)
{
        return bench_ring_stalled(pp->yield, &pp->clock, pp->give_up_ticks, spins) ? -ETIMEDOUT
                                                                                   : 0;
}

/* Sends v on the ring tx, or on line `dir` in cacheline mode. */
static inline __attribute__((always_inline)) int
bench_ring_pp_send(struct bench_ring_pp *pp, struct shm_ring *tx, unsigned dir, uint64_t v,
                   bool line)
{
        if (line) {
                /* Pairs with the acquire load in bench_ring_pp_recv. */
                atomic_store_explicit(&pp->lines[dir].v, v, memory_order_release);
                return 0;
        }
        int put = shm_ring_enqueue_burst(tx, &v, 1);
        return put == 1 ? 0 : put < 0 ? put : -EPROTO; /* lockstep: never full */
}

/* Busy-polls for the next message into *v. In cacheline mode *v holds the
 * last value seen on entry, and a new message is a different value. */
static inline __attribute__((always_inline)) int
bench_ring_pp_recv(struct bench_ring_pp *pp, struct shm_ring *rx, unsigned dir, uint64_t *v,
                   bool line)
{
        for (uint32_t spins = 1;; spins++) {
                if (line) {
                        /* Pairs with the release store in bench_ring_pp_send. */
                        uint64_t x = atomic_load_explicit(&pp->lines[dir].v, memory_order_acquire);
                        if (x != *v) {
                                *v = x;
                                return 0;
                        }
                } else {
                        int got = shm_ring_dequeue_burst(rx, v, 1);
                        if (shm_likely(got == 1))
                                return 0;
                        if (got < 0)
                                return got;
                }
                int rc = bench_ring_pp_idle(pp, spins);
                if (rc != 0)
                        return rc;
        }
}

static inline __attribute__((always_inline)) void
bench_ring_ping(struct bench_ring_pp *pp, bool line)
{
        struct shm_ring tx = pp->ping.tx, rx = pp->ping.rx; /* this thread's views */
        const struct bench_clock clock = pp->clock;
        struct bench_hist *h = pp->hist;
        const uint64_t open_ticks = pp->open_ticks, close_ticks = pp->close_ticks;
        struct bench_thread_share share;
        bench_thread_share_start(&share);
        uint64_t errors = 0, first_ticks = 0, t1 = 0, echo = BENCH_RING_PP_EMPTY;
        int rc = 0;

        for (uint64_t seq = 0;; seq++) {
                uint64_t t0 = bench_clock_ticks(&clock);
                rc = bench_ring_pp_send(pp, &tx, 0, seq, line);
                if (shm_likely(rc == 0))
                        rc = bench_ring_pp_recv(pp, &rx, 1, &echo, line);
                t1 = bench_clock_ticks(&clock);
                if (shm_unlikely(rc != 0))
                        break;
                errors += echo != seq;
                if (t0 < open_ticks)
                        continue;
                if (first_ticks == 0)
                        first_ticks = t0;
                bench_hist_record(h, bench_clock_to_ns(&clock, t1 - t0));
                if (t1 >= close_ticks)
                        break;
        }
        int stop_rc = bench_ring_pp_send(pp, &tx, 0, BENCH_RING_PP_STOP, line);
        pp->window_ns = first_ticks == 0 ? 0 : bench_clock_to_ns(&clock, t1 - first_ticks);
        pp->ping.errors = errors;
        pp->ping.rc = rc != 0 ? rc : stop_rc;
        pp->ping.cpu_share = bench_thread_share_end(&share);
}

static inline __attribute__((always_inline)) void
bench_ring_pong(struct bench_ring_pp *pp, bool line)
{
        struct shm_ring tx = pp->pong.tx, rx = pp->pong.rx;
        struct bench_thread_share share;
        bench_thread_share_start(&share);
        uint64_t v = BENCH_RING_PP_EMPTY;
        int rc;

        for (;;) {
                rc = bench_ring_pp_recv(pp, &rx, 0, &v, line);
                if (rc != 0 || v == BENCH_RING_PP_STOP)
                        break;
                rc = bench_ring_pp_send(pp, &tx, 1, v, line);
                if (shm_unlikely(rc != 0))
                        break;
        }
        pp->pong.rc = rc;
        pp->pong.cpu_share = bench_thread_share_end(&share);
}

static void *bench_ring_ping_ring(void *arg)
{
        bench_ring_ping(arg, false);
        return NULL;
}

static void *bench_ring_pong_ring(void *arg)
{
        bench_ring_pong(arg, false);
        return NULL;
}

static void *bench_ring_ping_line(void *arg)
{
        bench_ring_ping(arg, true);
        return NULL;
}

static void *bench_ring_pong_line(void *arg)
{
        bench_ring_pong(arg, true);
        return NULL;
}

static void bench_ring_pp_free(struct bench_ring_pp *pp)
{
        for (int i = 0; i < 2; i++)
                if (pp->mem[i] != NULL)
                        munmap(pp->mem[i], pp->mem_bytes);
        free(pp->hist);
        free(pp);
}

static struct bench_ring_pp *bench_ring_pp_new(const struct bench_ring_env *env)
{
        struct bench_ring_pp *pp = aligned_alloc(_Alignof(struct bench_ring_pp), sizeof(*pp));
        if (pp == NULL)
                return NULL;
        memset(pp, 0, sizeof(*pp));
        pp->clock = env->clock;
        pp->yield = env->cpus.shared;
        for (int i = 0; i < 2; i++)
                atomic_init(&pp->lines[i].v, BENCH_RING_PP_EMPTY);
        pp->mem_bytes = (size_t)shm_align_up(
                shm_ring_bytes(BENCH_RING_PP_SLOTS, BENCH_RING_PP_MSG_BYTES), 4096);
        pp->mem[0] = bench_ring_mem_map(pp->mem_bytes);
        pp->mem[1] = bench_ring_mem_map(pp->mem_bytes);
        pp->hist = malloc(sizeof(*pp->hist));
        if (pp->mem[0] == NULL || pp->mem[1] == NULL || pp->hist == NULL ||
            shm_ring_init(&pp->ping.tx, pp->mem[0], pp->mem_bytes, BENCH_RING_PP_SLOTS,
                          BENCH_RING_PP_MSG_BYTES) != 0 ||
            shm_ring_attach(&pp->pong.rx, pp->mem[0], pp->mem_bytes) != 0 ||
            shm_ring_init(&pp->pong.tx, pp->mem[1], pp->mem_bytes, BENCH_RING_PP_SLOTS,
                          BENCH_RING_PP_MSG_BYTES) != 0 ||
            shm_ring_attach(&pp->ping.rx, pp->mem[1], pp->mem_bytes) != 0) {
                bench_ring_pp_free(pp);
                return NULL;
        }
        bench_hist_init(pp->hist);
        return pp;
}

/* Starts pong then ping for one run and waits for both. */
static int bench_ring_pp_threads(const struct bench_ring_env *env, struct bench_ring_pp *pp,
                                 bool line)
{
        pthread_t ping_thread, pong_thread;
        int rc = bench_thread_start(&pong_thread, env->cpus.cpu[1],
                                    line ? bench_ring_pong_line : bench_ring_pong_ring, pp);
        if (rc != 0)
                return rc;
        rc = bench_thread_start(&ping_thread, env->cpus.cpu[0],
                                line ? bench_ring_ping_line : bench_ring_ping_ring, pp);
        if (rc != 0) {
                /* The pong thread gives up on its own after give_up_ticks. */
                pthread_join(pong_thread, NULL);
                return rc;
        }
        rc = bench_progress_join(env->pg, ping_thread);
        int pong_rc = -pthread_join(pong_thread, NULL);
        if (rc == 0)
                rc = pong_rc != 0 ? pong_rc : pp->ping.rc != 0 ? pp->ping.rc : pp->pong.rc;
        return rc;
}

/* One timed run: its latency summary and round trips per second (errors
 * and CPU share added to tally), or -errno when it could not run or a
 * ring failed. */
static int bench_ring_pp_once(const struct bench_ring_env *env, bool line,
                              struct bench_latency *lat, double *trips_per_s,
                              struct bench_ring_tally *tally)
{
        struct bench_ring_pp *pp = bench_ring_pp_new(env);
        if (pp == NULL)
                return -ENOMEM;
        const struct bench_clock *c = &env->clock;
        pp->open_ticks = bench_clock_ticks(c) +
                         bench_clock_from_ns(c, (uint64_t)(env->o->warmup_s * 1e9));
        pp->close_ticks = pp->open_ticks +
                          bench_clock_from_ns(c, (uint64_t)(env->o->duration_s * 1e9));
        pp->give_up_ticks = pp->close_ticks + bench_clock_from_ns(c, BENCH_RING_STALL_NS);

        int rc = bench_ring_pp_threads(env, pp, line);
        if (rc == 0) {
                bench_latency_from_hist(lat, pp->hist);
                *trips_per_s = pp->window_ns == 0
                                       ? 0
                                       : (double)pp->hist->count * 1e9 / (double)pp->window_ns;
                tally->errors += pp->ping.errors;
                bench_ring_tally_share(tally, pp->ping.cpu_share, pp->pong.cpu_share);
        }
        bench_ring_pp_free(pp);
        return rc;
}

static int bench_ring_latency_case(const struct bench_ring_env *env, bool line,
                                   struct bench_report *rep)
{
        const char *name = line ? "cacheline" : "pingpong";
        const unsigned runs = env->o->runs;
        struct bench_latency lats[BENCH_RUNS_MAX];
        double rates[BENCH_RUNS_MAX];
        struct bench_ring_tally tally = { .errors = 0, .cpu_share = 1.0 };

        for (unsigned run = 0; run < runs; run++) {
                bench_progress_label(env->pg, "ring: %s %u B, run %u/%u", name,
                                     BENCH_RING_PP_MSG_BYTES, run + 1, runs);
                int rc = bench_ring_pp_once(env, line, &lats[run], &rates[run], &tally);
                if (rc != 0) {
                        bench_progress_end(env->pg);
                        fprintf(stderr, "atomq-bench: ring: %s run %u: %s\n", name, run + 1,
                                strerror(-rc));
                        return rc;
                }
        }
        struct bench_result *r = bench_ring_result_add(rep, line ? "baseline" : "atomq", name);
        if (r == NULL)
                return -ENOSPC;
        r->msg_bytes = BENCH_RING_PP_MSG_BYTES;
        r->msgs_per_s = bench_median_f64(rates, runs);
        r->bytes_per_s = r->msgs_per_s * BENCH_RING_PP_MSG_BYTES;
        r->errors = tally.errors;
        r->cpu_share = tally.cpu_share;
        r->has_latency = true;
        snprintf(r->clock, sizeof(r->clock), "%s", bench_clock_name(&env->clock));
        bench_latency_median(&r->lat, lats, runs);
        return 0;
}

int bench_ring_pp_case(const struct bench_ring_env *env, struct bench_report *rep)
{
        return bench_ring_latency_case(env, false, rep);
}

int bench_ring_line_case(const struct bench_ring_env *env, struct bench_report *rep)
{
        return bench_ring_latency_case(env, true, rep);
}
