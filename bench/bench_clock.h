/* bench_clock.h - the timer latency measurements read: the TSC, calibrated
 * against CLOCK_MONOTONIC, or CLOCK_MONOTONIC itself.
 *
 * A round trip on the ring costs a few hundred nanoseconds, and the timer
 * read is part of what is measured: on the 2-vCPU KVM guest we develop on,
 * clock_gettime through the vDSO costs ~43 ns a read and rdtscp ~27 ns.
 * The TSC is used only when the CPU says it is invariant (constant rate,
 * not stopped in idle states) and the calibration gives a plausible rate;
 * otherwise every "tick" is a CLOCK_MONOTONIC nanosecond.
 *
 *      struct bench_clock c;
 *      bench_clock_init(&c, true);
 *      uint64_t t0 = bench_clock_ticks(&c);
 *      ...
 *      uint64_t elapsed_ns = bench_clock_to_ns(&c, bench_clock_ticks(&c) - t0);
 */
#ifndef ATOMQ_BENCH_CLOCK_H
#define ATOMQ_BENCH_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "shm/shm_base.h"
#include "shm/shm_clock.h"

/* How long the TSC is compared against CLOCK_MONOTONIC. Each end of the
 * interval is bracketed to within ~50 ns, so 50 ms gives the rate to about
 * one part in a million: far below the histogram's 0.8% buckets. */
#define BENCH_CLOCK_CALIBRATE_NS 50000000ull

struct bench_clock {
        bool tsc;               /* false: ticks are CLOCK_MONOTONIC ns */
        uint64_t ns_per_tick_q32; /* nanoseconds per tick, 32.32 fixed point */
        double ticks_per_ns;
};

/* Checks for an invariant TSC and calibrates it (sleeps
 * BENCH_CLOCK_CALIBRATE_NS) when allow_tsc; falls back to CLOCK_MONOTONIC
 * otherwise. Always succeeds; bench_clock_name() tells which was chosen. */
void bench_clock_init(struct bench_clock *c, bool allow_tsc);

/* "tsc" or "monotonic", for the report. */
const char *bench_clock_name(const struct bench_clock *c);

static inline uint64_t bench_clock_ticks(const struct bench_clock *c)
{
#if defined(__x86_64__)
        if (shm_likely(c->tsc)) {
                /* rdtscp waits for the instructions before it to execute,
                 * so the end of a round trip is not read early. */
                unsigned aux;
                return __builtin_ia32_rdtscp(&aux);
        }
#endif
        (void)c;
        return shm_clock_ns();
}

__extension__ typedef unsigned __int128 bench_u128;

static inline uint64_t bench_clock_to_ns(const struct bench_clock *c, uint64_t ticks)
{
        if (!c->tsc)
                return ticks;
        /* One 64x64->128 multiply: exact for any interval, no division. */
        return (uint64_t)(((bench_u128)ticks * c->ns_per_tick_q32) >> 32);
}

static inline uint64_t bench_clock_from_ns(const struct bench_clock *c, uint64_t ns)
{
        return c->tsc ? (uint64_t)((double)ns * c->ticks_per_ns) : ns;
}

#endif /* ATOMQ_BENCH_CLOCK_H */
