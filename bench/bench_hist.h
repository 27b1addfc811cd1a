/* bench_hist.h - fixed-memory latency histogram with log-linear buckets.
 *
 * The HdrHistogram layout, sized for nanoseconds: values below 128 have a
 * bucket each; above that every power of two [2^k, 2^(k+1)) is split into 64
 * equal sub-buckets, so no bucket is wider than 1/64 of its lower bound. A
 * percentile is reported as the midpoint of its bucket (clamped to the exact
 * min and max), hence within BENCH_HIST_REL_ERROR = 1/128 (0.78%) of the
 * recorded value of that rank. Values up to BENCH_HIST_VALUE_MAX_NS (60 s)
 * are kept; larger ones are recorded as that maximum and counted in
 * `clamped`, so a stall shows up instead of vanishing.
 *
 * The structure is 16 KB with no pointers: recording is a handful of inline
 * instructions and never allocates, and two histograms (one per thread) can
 * be merged after the run.
 *
 * Example:
 *      static struct bench_hist h;
 *      bench_hist_init(&h);
 *      bench_hist_record(&h, rtt_ns);
 *      uint64_t p99_ns = bench_hist_percentile(&h, 99.0);
 */
#ifndef ATOMQ_BENCH_HIST_H
#define ATOMQ_BENCH_HIST_H

#include <stdint.h>

#include "shm/shm_base.h"

#define BENCH_HIST_SUB_BITS 6
#define BENCH_HIST_SUB_COUNT (1u << BENCH_HIST_SUB_BITS)     /* per power of two */
#define BENCH_HIST_LINEAR_MAX (2u * BENCH_HIST_SUB_COUNT)    /* below: exact */
#define BENCH_HIST_VALUE_MAX_NS 60000000000ull                /* one minute */
#define BENCH_HIST_MSB_MAX 35                                 /* of VALUE_MAX */
#define BENCH_HIST_BUCKETS \
        (BENCH_HIST_LINEAR_MAX + (BENCH_HIST_MSB_MAX - BENCH_HIST_SUB_BITS) * BENCH_HIST_SUB_COUNT)
#define BENCH_HIST_REL_ERROR (1.0 / (2 * BENCH_HIST_SUB_COUNT))

_Static_assert((1ull << BENCH_HIST_MSB_MAX) <= BENCH_HIST_VALUE_MAX_NS &&
               BENCH_HIST_VALUE_MAX_NS < (1ull << (BENCH_HIST_MSB_MAX + 1)),
               "BENCH_HIST_MSB_MAX is the top bit of BENCH_HIST_VALUE_MAX_NS");

struct bench_hist {
        uint64_t count;   /* values recorded, clamped ones included */
        uint64_t clamped; /* values above BENCH_HIST_VALUE_MAX_NS */
        uint64_t min_ns;  /* UINT64_MAX while empty */
        uint64_t max_ns;
        uint64_t buckets[BENCH_HIST_BUCKETS];
};

/* The bucket of a value no larger than BENCH_HIST_VALUE_MAX_NS. */
static inline unsigned bench_hist_index(uint64_t v_ns)
{
        if (v_ns < BENCH_HIST_LINEAR_MAX)
                return (unsigned)v_ns;
        unsigned msb = 63u - (unsigned)__builtin_clzll(v_ns);
        unsigned shift = msb - BENCH_HIST_SUB_BITS;
        /* v >> shift lies in [SUB_COUNT, 2 * SUB_COUNT): the sub-bucket. */
        return BENCH_HIST_LINEAR_MAX + (shift - 1) * BENCH_HIST_SUB_COUNT +
               (unsigned)((v_ns >> shift) - BENCH_HIST_SUB_COUNT);
}

static inline void bench_hist_record(struct bench_hist *h, uint64_t v_ns)
{
        if (shm_unlikely(v_ns > BENCH_HIST_VALUE_MAX_NS)) {
                v_ns = BENCH_HIST_VALUE_MAX_NS;
                h->clamped++;
        }
        h->buckets[bench_hist_index(v_ns)]++;
        h->count++;
        if (v_ns < h->min_ns)
                h->min_ns = v_ns;
        if (v_ns > h->max_ns)
                h->max_ns = v_ns;
}

void bench_hist_init(struct bench_hist *h);

/* Adds every value recorded in src to dst. */
void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src);

/* The value at percentile pct (0..100): the smallest bucket holding the
 * ceil(pct% * count)-th smallest value, as its midpoint clamped to
 * [min, max]. pct >= 100 gives the exact max; an empty histogram gives 0. */
uint64_t bench_hist_percentile(const struct bench_hist *h, double pct);

/* The smallest recorded value, 0 when empty. */
uint64_t bench_hist_min(const struct bench_hist *h);

/* Lowest value and width of bucket idx (< BENCH_HIST_BUCKETS). */
uint64_t bench_hist_bucket_low_ns(unsigned idx);
uint64_t bench_hist_bucket_width_ns(unsigned idx);

#endif /* ATOMQ_BENCH_HIST_H */
