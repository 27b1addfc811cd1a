/* bench_cpu.h - choosing CPUs for a pair of benchmark threads and starting
 * threads pinned to them.
 *
 * Two busy-polling threads measure the ring only when each has a CPU of its
 * own; sharing one, every empty poll waits for a scheduler tick. With one
 * CPU the pair is marked `shared` and its idle loops yield instead.
 *
 *      atomq-bench ring --cpus 2,3
 */
#ifndef ATOMQ_BENCH_CPU_H
#define ATOMQ_BENCH_CPU_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct bench_cpus {
        int cpu[2];  /* -1: the thread is not pinned */
        bool shared; /* both threads may run on one CPU: poll loops yield */
};

/* Parses "A,B" (two CPU numbers). -EINVAL on anything else. */
int bench_cpus_parse(const char *s, int cpus[2]);

/* Picks the CPUs: want (from --cpus) when not NULL, else the first two this
 * process may run on. -EINVAL: CPU *bad is not in the affinity mask;
 * -errno when the mask cannot be read. */
int bench_cpus_pick(struct bench_cpus *c, const int *want, int *bad);

/* Starts fn(arg) on cpu (-1: anywhere). Returns 0 or -errno. */
int bench_thread_start(pthread_t *t, int cpu, void *(*fn)(void *), void *arg);

/* The share of its wall time a thread spent running, between _start and
 * _end on that thread. A pinned busy-polling thread normally gets 98-100%
 * (the rest is interrupts and the hypervisor); much less means another
 * runnable thread shared its CPU, and what it measured is low. */
struct bench_thread_share {
        uint64_t wall0_ns;
        uint64_t cpu0_ns;
};

void bench_thread_share_start(struct bench_thread_share *s);
double bench_thread_share_end(const struct bench_thread_share *s);

#endif /* ATOMQ_BENCH_CPU_H */
