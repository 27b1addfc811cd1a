/* bench_ring_pvt.h - what the files of scenario "ring" share: limits, the
 * scenario's state and the idle policy of its polling threads.
 *
 *      atomq-bench ring --cpus 0,1
 */
#ifndef ATOMQ_BENCH_RING_PVT_H
#define ATOMQ_BENCH_RING_PVT_H

#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench/bench_clock.h"
#include "bench/bench_cpu.h"
#include "bench/bench_report.h"
#include "bench/bench_scenario.h"
#include "shm/shm_base.h"

/* Intel's spatial prefetcher pulls cache lines in pairs, so data written by
 * different threads is kept two lines apart (DPDK's RTE_CACHE_GUARD). */
#define BENCH_RING_GUARD_BYTES (2 * SHM_CACHE_LINE)
/* A peer silent this long after the run should have ended is a failure,
 * reported as such, instead of a hang. */
#define BENCH_RING_STALL_NS 2000000000ull
#define BENCH_RING_STALL_CHECK_SPINS 65536u

/* What the scenario keeps across its cases. */
struct bench_ring_env {
        const struct bench_opts *o;
        struct bench_progress *pg;
        struct bench_cpus cpus;
        struct bench_clock clock;
        unsigned sizes_n, bursts_n;
        unsigned sizes_bytes[BENCH_LIST_MAX];
        unsigned bursts[BENCH_LIST_MAX];
};

/* What runs of a case add up, besides their rates. */
struct bench_ring_tally {
        uint64_t errors;
        double cpu_share; /* the least over threads and runs */
};

static inline void bench_ring_tally_share(struct bench_ring_tally *t, double a, double b)
{
        double least = a < b ? a : b;
        if (least < t->cpu_share)
                t->cpu_share = least;
}

/* What a thread does when its ring is full or empty. Pinned to a CPU of its
 * own it just polls again: pause would add ~40 ns of reaction time on recent
 * Intel cores, there is no hyperthread sibling to hand cycles to, and under
 * KVM a pause loop can make the vCPU exit to the host. Sharing a CPU, it
 * must let the other thread run. */
static inline void bench_ring_idle(bool yield)
{
        if (shm_unlikely(yield))
                sched_yield();
}

/* A poll loop's idle step and stall check: idles (bench_ring_idle), and
 * every BENCH_RING_STALL_CHECK_SPINS polls (so the clock stays out of the
 * fast path) says whether the run is past give_up_ticks (the peer or the
 * worker stalled). */
static inline bool bench_ring_stalled(bool yield, const struct bench_clock *c,
                                      uint64_t give_up_ticks, uint32_t spins)
{
        bench_ring_idle(yield);
        return shm_unlikely(spins % BENCH_RING_STALL_CHECK_SPINS == 0) &&
               bench_clock_ticks(c) > give_up_ticks;
}

/* Anonymous memory for a ring: page-aligned (so cache-line aligned, as
 * shm_ring_init requires) and populated up front so no page fault lands in
 * a run. NULL when mmap fails. */
void *bench_ring_mem_map(size_t len);

/* A result for this scenario, or NULL after saying the report is full. */
struct bench_result *bench_ring_result_add(struct bench_report *rep, const char *system,
                                          const char *case_name);

/* Throughput of one (message size, burst), median of --runs (bench_ring_tput.c). */
int bench_ring_tput_case(const struct bench_ring_env *env, unsigned slot_bytes,
                         unsigned burst, struct bench_report *rep);

/* Round-trip latency over two rings, and the same over one bare cache line
 * each way as the floor the hardware sets (bench_ring_pingpong.c). */
int bench_ring_pp_case(const struct bench_ring_env *env, struct bench_report *rep);
int bench_ring_line_case(const struct bench_ring_env *env, struct bench_report *rep);

#endif /* ATOMQ_BENCH_RING_PVT_H */
