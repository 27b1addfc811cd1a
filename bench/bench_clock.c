/* bench_clock.c - TSC detection and calibration against CLOCK_MONOTONIC. */
#include "bench/bench_clock.h"

#include <time.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

/* Plausible TSC rates; outside them the calibration went wrong (a VM
 * migrated, a trapping TSC) and the monotonic clock is the honest choice. */
#define BENCH_CLOCK_TSC_HZ_MIN 100e6
#define BENCH_CLOCK_TSC_HZ_MAX 10e9
#define BENCH_CLOCK_PAIR_TRIES 7

static bool bench_clock_tsc_invariant(void)
{
#if defined(__x86_64__)
        unsigned eax, ebx, ecx, edx;
        if (__get_cpuid(0x80000000u, &eax, &ebx, &ecx, &edx) == 0 || eax < 0x80000007u)
                return false;
        __get_cpuid(0x80000007u, &eax, &ebx, &ecx, &edx);
        return (edx & (1u << 8)) != 0; /* CPUID.80000007H:EDX[8], "invariant TSC" */
#else
        return false;
#endif
}

#if defined(__x86_64__)
/* Reads CLOCK_MONOTONIC and the TSC at (nearly) the same instant: the TSC
 * read is the midpoint of the two that bracket the clock read most tightly,
 * so a preemption between them cannot skew the calibration. */
static void bench_clock_pair(uint64_t *ns, uint64_t *ticks)
{
        uint64_t best_gap = UINT64_MAX;
        unsigned aux;

        for (int i = 0; i < BENCH_CLOCK_PAIR_TRIES; i++) {
                uint64_t a = __builtin_ia32_rdtscp(&aux);
                uint64_t now_ns = shm_clock_ns();
                uint64_t b = __builtin_ia32_rdtscp(&aux);
                if (b - a < best_gap) {
                        best_gap = b - a;
                        *ns = now_ns;
                        *ticks = a + (b - a) / 2;
                }
        }
}
#endif

void bench_clock_init(struct bench_clock *c, bool allow_tsc)
{
        c->tsc = false;
        c->ns_per_tick_q32 = 1ull << 32;
        c->ticks_per_ns = 1.0;
        if (!allow_tsc || !bench_clock_tsc_invariant())
                return;
#if defined(__x86_64__)
        uint64_t ns0 = 0, ticks0 = 0, ns1 = 0, ticks1 = 0;
        struct timespec nap = { 0, (long)BENCH_CLOCK_CALIBRATE_NS };

        bench_clock_pair(&ns0, &ticks0);
        nanosleep(&nap, NULL);
        bench_clock_pair(&ns1, &ticks1);
        if (ns1 <= ns0 || ticks1 <= ticks0)
                return;
        double hz = (double)(ticks1 - ticks0) * 1e9 / (double)(ns1 - ns0);
        if (hz < BENCH_CLOCK_TSC_HZ_MIN || hz > BENCH_CLOCK_TSC_HZ_MAX)
                return;
        c->tsc = true;
        c->ticks_per_ns = hz / 1e9;
        c->ns_per_tick_q32 = (uint64_t)(4294967296.0 / c->ticks_per_ns + 0.5);
#endif
}

const char *bench_clock_name(const struct bench_clock *c)
{
        return c->tsc ? "tsc" : "monotonic";
}
