/* dp_counter.h - single-writer counters in shared memory.
 *
 * A worker's counters have one writer (the worker's thread) and any number
 * of readers (the control plane, tools, tests) in any process that maps the
 * arena. The writer needs no read-modify-write: it loads its own last value
 * and stores the sum, both relaxed, which compiles to a plain add on x86-64
 * and arm64. Readers load relaxed: a counter is a statistic, nothing is
 * ordered after it, and each word is read whole (no torn 64-bit values).
 */
#ifndef ATOMQ_DP_COUNTER_H
#define ATOMQ_DP_COUNTER_H

#include <stdatomic.h>
#include <stdint.h>

typedef _Atomic uint64_t dp_counter;

/* Writer only: adds n. Not an RMW: a second writer would lose updates. */
static inline void dp_counter_add(dp_counter *c, uint64_t n)
{
        atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                              memory_order_relaxed);
}

static inline void dp_counter_inc(dp_counter *c)
{
        dp_counter_add(c, 1);
}

/* Any thread, any process. */
static inline uint64_t dp_counter_get(const dp_counter *c)
{
        return atomic_load_explicit(c, memory_order_relaxed);
}

#endif /* ATOMQ_DP_COUNTER_H */
