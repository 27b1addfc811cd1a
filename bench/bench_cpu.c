/* bench_cpu.c - CPU choice and pinned thread start for thread pairs. */
#include "bench/bench_cpu.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>

static int bench_cpus_parse_one(const char *s, char **end)
{
        errno = 0;
        long v = strtol(s, end, 10);
        if (*end == s || errno != 0 || v < 0 || v >= CPU_SETSIZE)
                return -EINVAL;
        return (int)v;
}

int bench_cpus_parse(const char *s, int cpus[2])
{
        char *end;
        int a = bench_cpus_parse_one(s, &end);
        if (a < 0 || *end != ',')
                return -EINVAL;
        int b = bench_cpus_parse_one(end + 1, &end);
        if (b < 0 || *end != '\0')
                return -EINVAL;
        cpus[0] = a;
        cpus[1] = b;
        return 0;
}

int bench_cpus_pick(struct bench_cpus *c, const int *want, int *bad)
{
        cpu_set_t allowed;

        c->cpu[0] = c->cpu[1] = -1;
        c->shared = true;
        if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
                return -errno;
        if (want != NULL) {
                for (int i = 0; i < 2; i++) {
                        if (!CPU_ISSET(want[i], &allowed)) {
                                *bad = want[i];
                                return -EINVAL;
                        }
                }
                c->cpu[0] = want[0];
                c->cpu[1] = want[1];
                c->shared = want[0] == want[1];
                return 0;
        }
        if (CPU_COUNT(&allowed) < 2)
                return 0; /* one CPU: leave the scheduler to it */
        int found = 0;
        for (int cpu = 0; cpu < CPU_SETSIZE && found < 2; cpu++)
                if (CPU_ISSET(cpu, &allowed))
                        c->cpu[found++] = cpu;
        c->shared = false;
        return 0;
}

int bench_thread_start(pthread_t *t, int cpu, void *(*fn)(void *), void *arg)
{
        pthread_attr_t attr;
        int rc = pthread_attr_init(&attr);
        if (rc != 0)
                return -rc;
        if (cpu >= 0) {
                /* Set before the thread exists so it never runs (and touches
                 * its stack) on another CPU. */
                cpu_set_t set;
                CPU_ZERO(&set);
                CPU_SET(cpu, &set);
                rc = pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
        }
        if (rc == 0)
                rc = pthread_create(t, &attr, fn, arg);
        pthread_attr_destroy(&attr);
        return -rc;
}

static uint64_t bench_clock_id_ns(clockid_t id)
{
        struct timespec ts;
        if (clock_gettime(id, &ts) != 0)
                return 0;
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bench_thread_share_start(struct bench_thread_share *s)
{
        s->wall0_ns = bench_clock_id_ns(CLOCK_MONOTONIC);
        s->cpu0_ns = bench_clock_id_ns(CLOCK_THREAD_CPUTIME_ID);
}

double bench_thread_share_end(const struct bench_thread_share *s)
{
        uint64_t wall_ns = bench_clock_id_ns(CLOCK_MONOTONIC) - s->wall0_ns;
        uint64_t cpu_ns = bench_clock_id_ns(CLOCK_THREAD_CPUTIME_ID) - s->cpu0_ns;
        if (wall_ns == 0)
                return 1.0;
        double share = (double)cpu_ns / (double)wall_ns;
        return share > 1.0 ? 1.0 : share; /* the two clocks tick apart */
}
