/* bench_ring.c - scenario "ring": the SPSC shm_ring between two threads,
 * each pinned to a CPU of its own.
 *
 *      atomq-bench ring
 *      atomq-bench ring --cpus 0,1 --sizes 8,64 --bursts 1,16,32 --runs 5 --json
 *
 * Three kinds of case, each repeated --runs times and reported as medians:
 *   throughput  msgs/s through one ring for every --sizes x --bursts
 *               (bench_ring_tput.c);
 *   pingpong    round trips of an 8-byte message over two rings, one each
 *               way, each timed into a histogram (bench_ring_pingpong.c);
 *   cacheline   the same round trip over one bare cache line each way,
 *               reported as system "baseline": the floor the two CPUs set,
 *               which the ring's round trip can approach but not beat.
 *
 * Honesty: every message carries a sequence number that the receiver
 * checks; every mismatch is an error and any error makes atomq-bench exit
 * 1. Involuntary context switches of the benchmark threads are counted and
 * reported, because a thread that lost its CPU measured something else.
 *
 * This file checks the options, picks the CPUs and the clock, and runs the
 * cases in order.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench/bench_progress.h"
#include "bench/bench_ring_pvt.h"
#include "shm/shm_ring.h"

static const unsigned bench_ring_sizes_default[] = { 8, 32, 256 };
static const unsigned bench_ring_bursts_default[] = { 1, 32 };

/* Ring memory: page-aligned (so cache-line aligned, as shm_ring_init
 * requires) and populated up front so no page fault lands in a run. */
void *bench_ring_mem_map(size_t len)
{
        void *mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        return mem == MAP_FAILED ? NULL : mem;
}

/* A result for this scenario, or NULL after saying the report is full. */
struct bench_result *bench_ring_result_add(struct bench_report *rep, const char *system,
                                          const char *case_name)
{
        struct bench_result *r = bench_report_add(rep, system, "ring", case_name);
        if (r == NULL)
                fprintf(stderr, "atomq-bench: ring: more than %u results\n", BENCH_RESULTS_MAX);
        return r;
}

#ifndef SHM_RING_BURST_MAX
#define SHM_RING_BURST_MAX 64 /* normally set by meson (option ring_burst_max) */
#endif

/* Message sizes and bursts from the options, checked against what the ring
 * accepts. -EINVAL (after saying which option) when one does not fit. */
static int bench_ring_env_lists(struct bench_ring_env *env)
{
        const struct bench_opts *o = env->o;
        const unsigned sizes_n = sizeof(bench_ring_sizes_default) / sizeof(unsigned);
        const unsigned bursts_n = sizeof(bench_ring_bursts_default) / sizeof(unsigned);
        env->sizes_n = o->sizes_n ? o->sizes_n : sizes_n;
        env->bursts_n = o->bursts_n ? o->bursts_n : bursts_n;
        memcpy(env->sizes_bytes, o->sizes_n ? o->sizes_bytes : bench_ring_sizes_default,
               env->sizes_n * sizeof(unsigned));
        memcpy(env->bursts, o->bursts_n ? o->bursts : bench_ring_bursts_default,
               env->bursts_n * sizeof(unsigned));
        for (unsigned i = 0; i < env->sizes_n; i++) {
                unsigned v = env->sizes_bytes[i];
                if (v == 0 || v % 8 != 0 || v > SHM_RING_SLOT_BYTES_MAX) {
                        fprintf(stderr, "atomq-bench: --sizes: ring slots are multiples of 8 "
                                        "bytes up to %u, got %u\n", SHM_RING_SLOT_BYTES_MAX, v);
                        return -EINVAL;
                }
        }
        for (unsigned i = 0; i < env->bursts_n; i++) {
                unsigned v = env->bursts[i];
                if (v == 0 || v > SHM_RING_BURST_MAX) {
                        fprintf(stderr, "atomq-bench: --bursts: the ring moves 1 to %u slots "
                                        "per call (meson option ring_burst_max), got %u\n",
                                SHM_RING_BURST_MAX, v);
                        return -EINVAL;
                }
        }
        return 0;
}

static int bench_ring_env_setup(struct bench_ring_env *env)
{
        const struct bench_opts *o = env->o;
        int rc = bench_ring_env_lists(env);
        if (rc != 0)
                return rc;
        int bad_cpu = -1;
        rc = bench_cpus_pick(&env->cpus, o->cpus_set ? o->cpus : NULL, &bad_cpu);
        if (rc == -EINVAL) {
                fprintf(stderr, "atomq-bench: --cpus: CPU %d is not available to this process "
                                "(see taskset -p %d)\n", bad_cpu, (int)getpid());
                return rc;
        }
        if (rc != 0) {
                fprintf(stderr, "atomq-bench: ring: sched_getaffinity: %s\n", strerror(-rc));
                return rc;
        }
        bench_clock_init(&env->clock, true);
        if (o->quiet)
                return 0;
        if (env->cpus.cpu[0] < 0)
                fprintf(stderr, "ring: one CPU only: both threads share it and yield when "
                                "idle; figures are not representative\n");
        else
                fprintf(stderr, "ring: threads pinned to CPUs %d (producer, ping) and %d "
                                "(consumer, pong)%s\n", env->cpus.cpu[0], env->cpus.cpu[1],
                        env->cpus.shared ? ", the same CPU: idle polls yield" : "");
        if (env->clock.tsc)
                fprintf(stderr, "ring: latency clock: TSC at %.4f GHz, calibrated against "
                                "CLOCK_MONOTONIC\n", env->clock.ticks_per_ns);
        else
                fprintf(stderr, "ring: latency clock: CLOCK_MONOTONIC (no invariant TSC)\n");
        return 0;
}

int bench_ring_run(const struct bench_opts *o, struct bench_progress *pg,
                   struct bench_report *rep)
{
        struct bench_ring_env env = { .o = o, .pg = pg };
        int rc = bench_ring_env_setup(&env);
        if (rc != 0)
                return rc;
        unsigned cases = env.sizes_n * env.bursts_n + 2;
        bench_progress_start(pg, cases * o->runs * (o->warmup_s + o->duration_s));
        for (unsigned s = 0; s < env.sizes_n && rc == 0; s++)
                for (unsigned b = 0; b < env.bursts_n && rc == 0; b++)
                        rc = bench_ring_tput_case(&env, env.sizes_bytes[s], env.bursts[b], rep);
        if (rc == 0)
                rc = bench_ring_pp_case(&env, rep);
        if (rc == 0)
                rc = bench_ring_line_case(&env, rep);
        bench_progress_end(pg);
        return rc;
}
