/* bench_ring_tput.c - the throughput cases of scenario "ring": a producer
 * and a consumer thread moving bursts through one shm_ring as fast as it
 * goes.
 *
 *      atomq-bench ring --sizes 8 --bursts 32 --duration 2
 *
 * The consumer measures: it counts messages between two clock reads after
 * the warm-up and reads the clock only every BENCH_RING_CHECK_EVERY polls,
 * so the clock is not what is measured. Every message carries a sequence
 * number in its first 8 bytes which the consumer checks, and after the run
 * sent = received + still in the ring is checked too.
 *
 * Each thread polls a private copy of its ring view on its own stack: the
 * two views (and their cached indexes) never share a cache line, and the
 * compiler keeps them in registers because nothing else can see the copy.
 * The shared header's head and tail lines are the only ones that bounce.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench/bench_progress.h"
#include "bench/bench_ring_pvt.h"
#include "shm/shm_clock.h"
#include "shm/shm_ring.h"

/* 4096 slots keep producer and consumer far apart (they rarely touch the
 * same slot lines) while the 256-byte ring (1 MiB) still fits in L2. */
#define BENCH_RING_SLOTS 4096u
/* Polls between clock reads (consumer) or stop-flag reads (producer):
 * ~20 us at 32-slot bursts, and the clock read costs <0.1% even at burst 1. */
#define BENCH_RING_CHECK_EVERY 1024u

/* One thread's part of a throughput pair. Only that thread writes it while
 * the pair runs; the main thread reads it after the join. */
struct bench_ring_side {
        _Alignas(BENCH_RING_GUARD_BYTES) struct shm_ring ring;
        uint8_t *buf;         /* one burst of slots, staged */
        uint64_t msgs;        /* producer: enqueued; consumer: dequeued */
        uint64_t errors;
        double cpu_share;     /* of this thread's wall time (bench_cpu.h) */
        uint64_t window_msgs; /* consumer: dequeued inside the timed window */
        uint64_t window_ns;
        int rc;               /* 0 or the ring's -EPROTO */
};

struct bench_ring_pair {
        struct bench_ring_side prod;
        struct bench_ring_side cons;
        /* Written once by the consumer when its window closes; the producer
         * reads it every BENCH_RING_CHECK_EVERY polls. */
        _Alignas(BENCH_RING_GUARD_BYTES) _Atomic uint32_t done;
        /* Read-only while the threads run. */
        _Alignas(BENCH_RING_GUARD_BYTES) unsigned burst;
        unsigned slot_bytes;
        bool yield;
        uint64_t open_ns;     /* warm-up ends */
        uint64_t duration_ns;
        void *mem;
        size_t mem_bytes;
};

static void *bench_ring_buf_alloc(size_t len)
{
        /* Whole guard units, so the two staging buffers share no line. */
        size_t rounded = (size_t)shm_align_up(len, BENCH_RING_GUARD_BYTES);
        void *buf = aligned_alloc(BENCH_RING_GUARD_BYTES, rounded);
        if (buf != NULL)
                memset(buf, 0, rounded);
        return buf;
}

/* Writes seq, seq+1, ... into the first 8 bytes of n slots. */
static inline void bench_ring_stamp(uint8_t *buf, unsigned n, size_t slot_bytes, uint64_t seq)
{
        for (unsigned i = 0; i < n; i++) {
                uint64_t s = seq + i;
                memcpy(buf + i * slot_bytes, &s, sizeof(s));
        }
}

/* Checks n slots against the expected sequence; returns the mismatches and
 * resynchronises on each so one lost message counts once. */
static inline uint64_t bench_ring_verify(const uint8_t *buf, unsigned n, size_t slot_bytes,
                                         uint64_t *expect)
{
        uint64_t errors = 0, want = *expect;
        for (unsigned i = 0; i < n; i++) {
                uint64_t s;
                memcpy(&s, buf + i * slot_bytes, sizeof(s));
                errors += s != want;
                want = s + 1;
        }
        *expect = want;
        return errors;
}

/* The producer's loop. slot_bytes_k and burst_k are compile-time constants
 * in the instances below (0: take the run's value); see BENCH_RING_KERNEL. */
static inline __attribute__((always_inline)) void
bench_ring_produce(struct bench_ring_pair *p, unsigned slot_bytes_k, unsigned burst_k)
{
        struct shm_ring r = p->prod.ring; /* private copy: see the file header */
        uint8_t *buf = p->prod.buf;
        const unsigned burst = burst_k ? burst_k : p->burst;
        const size_t slot_bytes = slot_bytes_k ? slot_bytes_k : p->slot_bytes;
        const bool yield = p->yield;

        DP_ASSERT(r.slot_bytes == slot_bytes && burst == p->burst);
        r.slot_bytes = (uint32_t)slot_bytes; /* the same value, as a constant */
        struct bench_thread_share share;
        bench_thread_share_start(&share);
        uint64_t seq = 0;
        int put = 1;

        for (uint64_t polls = 1;; polls++) {
                if (put != 0) /* after a full ring the staged burst is still right */
                        bench_ring_stamp(buf, burst, slot_bytes, seq);
                put = shm_ring_enqueue_burst(&r, buf, burst);
                if (shm_unlikely(put < 0)) {
                        p->prod.rc = put;
                        break;
                }
                seq += (unsigned)put;
                if (put == 0)
                        bench_ring_idle(yield);
                /* Relaxed: the flag only says when to stop; the results are
                 * read after pthread_join, which orders everything. */
                if (polls % BENCH_RING_CHECK_EVERY == 0 &&
                    atomic_load_explicit(&p->done, memory_order_relaxed) != 0)
                        break;
        }
        p->prod.msgs = seq;
        p->prod.cpu_share = bench_thread_share_end(&share);
}

/* The consumer's loop, instantiated like bench_ring_produce. */
static inline __attribute__((always_inline)) void
bench_ring_consume(struct bench_ring_pair *p, unsigned slot_bytes_k, unsigned burst_k)
{
        struct shm_ring r = p->cons.ring;
        uint8_t *buf = p->cons.buf;
        const unsigned burst = burst_k ? burst_k : p->burst;
        const size_t slot_bytes = slot_bytes_k ? slot_bytes_k : p->slot_bytes;
        const bool yield = p->yield;

        DP_ASSERT(r.slot_bytes == slot_bytes && burst == p->burst);
        r.slot_bytes = (uint32_t)slot_bytes;
        struct bench_thread_share share;
        bench_thread_share_start(&share);
        uint64_t expect = 0, msgs = 0, errors = 0, msgs_open = 0;
        uint64_t now_ns = 0, open_ns = p->open_ns, close_ns = UINT64_MAX;

        for (uint64_t polls = 1;; polls++) {
                int got = shm_ring_dequeue_burst(&r, buf, burst);
                if (shm_likely(got > 0)) {
                        errors += bench_ring_verify(buf, (unsigned)got, slot_bytes, &expect);
                        msgs += (unsigned)got;
                } else if (got == 0) {
                        bench_ring_idle(yield);
                } else {
                        p->cons.rc = got;
                        break;
                }
                if (polls % BENCH_RING_CHECK_EVERY != 0)
                        continue;
                now_ns = shm_clock_ns();
                if (close_ns == UINT64_MAX && now_ns >= open_ns) {
                        /* The window starts at this clock read, with the
                         * count as of this read: both ends are exact. */
                        msgs_open = msgs;
                        open_ns = now_ns;
                        close_ns = now_ns + p->duration_ns;
                } else if (now_ns >= close_ns) {
                        break;
                }
        }
        p->cons.msgs = msgs;
        p->cons.errors = errors;
        p->cons.window_msgs = msgs - msgs_open;
        p->cons.window_ns = close_ns == UINT64_MAX ? 0 : now_ns - open_ns;
        p->cons.cpu_share = bench_thread_share_end(&share);
        atomic_store_explicit(&p->done, 1, memory_order_relaxed);
}

/* Thread entry points for one (slot size, burst), 0 meaning "any".
 *
 * shm_ring copies slots with memcpy(n * slot_bytes); with both factors
 * known at compile time the copy of a burst becomes a few vector moves
 * instead of a libc call per enqueue, which at burst 1 is a call per
 * message. Applications that know their slot size get the same code;
 * DPDK's rte_ring_elem relies on the same effect. Sizes and bursts not
 * listed run the generic instance, correct but slower. */
#define BENCH_RING_KERNEL(sb, b)                                                        \
        static void *bench_ring_producer_##sb##_##b(void *arg)                          \
        {                                                                               \
                bench_ring_produce(arg, sb, b);                                         \
                return NULL;                                                            \
        }                                                                               \
        static void *bench_ring_consumer_##sb##_##b(void *arg)                          \
        {                                                                               \
                bench_ring_consume(arg, sb, b);                                         \
                return NULL;                                                            \
        }

BENCH_RING_KERNEL(8, 1)
BENCH_RING_KERNEL(8, 32)
BENCH_RING_KERNEL(32, 1)
BENCH_RING_KERNEL(32, 32)
BENCH_RING_KERNEL(256, 1)
BENCH_RING_KERNEL(256, 32)
BENCH_RING_KERNEL(0, 1)
BENCH_RING_KERNEL(0, 0)

struct bench_ring_kernel {
        unsigned slot_bytes; /* 0: any */
        unsigned burst;      /* 0: any */
        void *(*producer)(void *);
        void *(*consumer)(void *);
};

#define BENCH_RING_KERNEL_ENTRY(sb, b) \
        { sb, b, bench_ring_producer_##sb##_##b, bench_ring_consumer_##sb##_##b }

/* Most specific first: the first match is used. */
static const struct bench_ring_kernel bench_ring_kernels[] = {
        BENCH_RING_KERNEL_ENTRY(8, 1),   BENCH_RING_KERNEL_ENTRY(8, 32),
        BENCH_RING_KERNEL_ENTRY(32, 1),  BENCH_RING_KERNEL_ENTRY(32, 32),
        BENCH_RING_KERNEL_ENTRY(256, 1), BENCH_RING_KERNEL_ENTRY(256, 32),
        BENCH_RING_KERNEL_ENTRY(0, 1),   BENCH_RING_KERNEL_ENTRY(0, 0),
};

static const struct bench_ring_kernel *bench_ring_kernel_find(unsigned slot_bytes, unsigned burst)
{
        const size_t n = sizeof(bench_ring_kernels) / sizeof(bench_ring_kernels[0]);
        for (size_t i = 0; i < n; i++) {
                const struct bench_ring_kernel *k = &bench_ring_kernels[i];
                if ((k->slot_bytes == 0 || k->slot_bytes == slot_bytes) &&
                    (k->burst == 0 || k->burst == burst))
                        return k;
        }
        return &bench_ring_kernels[n - 1]; /* unreachable: the last matches all */
}

static void bench_ring_pair_free(struct bench_ring_pair *p)
{
        if (p->mem != NULL)
                munmap(p->mem, p->mem_bytes);
        free(p->prod.buf);
        free(p->cons.buf);
        free(p);
}

static struct bench_ring_pair *bench_ring_pair_new(const struct bench_ring_env *env,
                                                   unsigned slot_bytes, unsigned burst)
{
        struct bench_ring_pair *p = aligned_alloc(_Alignof(struct bench_ring_pair), sizeof(*p));
        if (p == NULL)
                return NULL;
        memset(p, 0, sizeof(*p));
        p->burst = burst;
        p->slot_bytes = slot_bytes;
        p->yield = env->cpus.shared;
        p->duration_ns = (uint64_t)(env->o->duration_s * 1e9);
        p->mem_bytes = (size_t)shm_align_up(shm_ring_bytes(BENCH_RING_SLOTS, slot_bytes), 4096);
        p->mem = bench_ring_mem_map(p->mem_bytes);
        p->prod.buf = bench_ring_buf_alloc((size_t)burst * slot_bytes);
        p->cons.buf = bench_ring_buf_alloc((size_t)burst * slot_bytes);
        if (p->mem == NULL || p->prod.buf == NULL || p->cons.buf == NULL ||
            shm_ring_init(&p->prod.ring, p->mem, p->mem_bytes, BENCH_RING_SLOTS, slot_bytes) != 0 ||
            shm_ring_attach(&p->cons.ring, p->mem, p->mem_bytes) != 0) {
                bench_ring_pair_free(p);
                return NULL;
        }
        return p;
}

/* Sent = received + left in the ring, and every message in order. */
static uint64_t bench_ring_pair_errors(const struct bench_ring_pair *p)
{
        uint64_t errors = p->cons.errors;
        int64_t left = shm_ring_count(&p->cons.ring);
        if (left < 0 || p->prod.msgs != p->cons.msgs + (uint64_t)left)
                errors++;
        return errors;
}

/* One timed throughput run. Returns 0 with the rate (errors and
 * CPU share added to tally), or -errno when it could not run or the ring
 * reported corruption. */
static int bench_ring_tput_once(const struct bench_ring_env *env, unsigned slot_bytes,
                                unsigned burst, double *msgs_per_s,
                                struct bench_ring_tally *tally)
{
        struct bench_ring_pair *p = bench_ring_pair_new(env, slot_bytes, burst);
        if (p == NULL)
                return -ENOMEM;
        p->open_ns = shm_clock_ns() + (uint64_t)(env->o->warmup_s * 1e9);

        const struct bench_ring_kernel *k = bench_ring_kernel_find(slot_bytes, burst);
        pthread_t cons_thread, prod_thread;
        int rc = bench_thread_start(&cons_thread, env->cpus.cpu[1], k->consumer, p);
        if (rc != 0) {
                bench_ring_pair_free(p);
                return rc;
        }
        rc = bench_thread_start(&prod_thread, env->cpus.cpu[0], k->producer, p);
        /* The consumer stops on its own clock, so it is joined either way. */
        int join_rc = bench_progress_join(env->pg, cons_thread);
        if (rc == 0)
                join_rc = join_rc != 0 ? join_rc : -pthread_join(prod_thread, NULL);
        if (rc == 0 && join_rc == 0)
                join_rc = p->prod.rc != 0 ? p->prod.rc : p->cons.rc;
        if (rc == 0 && join_rc == 0) {
                tally->errors += bench_ring_pair_errors(p);
                bench_ring_tally_share(tally, p->prod.cpu_share, p->cons.cpu_share);
                double window_s = (double)p->cons.window_ns / 1e9;
                *msgs_per_s = window_s > 0 ? (double)p->cons.window_msgs / window_s : 0;
        }
        bench_ring_pair_free(p);
        return rc != 0 ? rc : join_rc;
}

int bench_ring_tput_case(const struct bench_ring_env *env, unsigned slot_bytes,
                         unsigned burst, struct bench_report *rep)
{
        const unsigned runs = env->o->runs;
        double rates[BENCH_RUNS_MAX];
        struct bench_ring_tally tally = { .errors = 0, .cpu_share = 1.0 };

        for (unsigned run = 0; run < runs; run++) {
                bench_progress_label(env->pg, "ring: throughput %u B x %u, run %u/%u",
                                     slot_bytes, burst, run + 1, runs);
                int rc = bench_ring_tput_once(env, slot_bytes, burst, &rates[run], &tally);
                if (rc != 0) {
                        bench_progress_end(env->pg);
                        fprintf(stderr, "atomq-bench: ring: throughput %u B x %u, run %u: %s\n",
                                slot_bytes, burst, run + 1, strerror(-rc));
                        return rc;
                }
        }
        struct bench_result *r = bench_ring_result_add(rep, "atomq", "throughput");
        if (r == NULL)
                return -ENOSPC;
        r->msg_bytes = slot_bytes;
        r->burst = burst;
        r->msgs_per_s = bench_median_f64(rates, runs);
        r->bytes_per_s = r->msgs_per_s * slot_bytes;
        r->errors = tally.errors;
        r->cpu_share = tally.cpu_share;
        return 0;
}
