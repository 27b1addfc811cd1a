/* bench_hist.c - the out-of-line half of the latency histogram: set-up,
 * merge and percentile queries, which run after the measurement. */
#include "bench/bench_hist.h"

#include <string.h>

void bench_hist_init(struct bench_hist *h)
{
        memset(h, 0, sizeof(*h));
        h->min_ns = UINT64_MAX;
}

void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src)
{
        for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++)
                dst->buckets[i] += src->buckets[i];
        dst->count += src->count;
        dst->clamped += src->clamped;
        if (src->min_ns < dst->min_ns)
                dst->min_ns = src->min_ns;
        if (src->max_ns > dst->max_ns)
                dst->max_ns = src->max_ns;
}

uint64_t bench_hist_min(const struct bench_hist *h)
{
        return h->count == 0 ? 0 : h->min_ns;
}

uint64_t bench_hist_bucket_low_ns(unsigned idx)
{
        DP_ASSERT(idx < BENCH_HIST_BUCKETS);
        if (idx < BENCH_HIST_LINEAR_MAX)
                return idx;
        unsigned above = idx - BENCH_HIST_LINEAR_MAX;
        unsigned shift = above / BENCH_HIST_SUB_COUNT + 1;
        uint64_t sub = BENCH_HIST_SUB_COUNT + above % BENCH_HIST_SUB_COUNT;
        return sub << shift;
}

uint64_t bench_hist_bucket_width_ns(unsigned idx)
{
        DP_ASSERT(idx < BENCH_HIST_BUCKETS);
        if (idx < BENCH_HIST_LINEAR_MAX)
                return 1;
        return 1ull << ((idx - BENCH_HIST_LINEAR_MAX) / BENCH_HIST_SUB_COUNT + 1);
}

/* The rank (1-based) of the value at percentile pct: ceil(pct% of count),
 * at least 1. Computed without libm; a double holds counts up to 2^53
 * exactly, far more than a run records. */
static uint64_t bench_hist_rank(uint64_t count, double pct)
{
        double want = pct / 100.0 * (double)count;
        if (!(want > 0.0))
                return 1;
        uint64_t rank = (uint64_t)want;
        if ((double)rank < want)
                rank++;
        return rank > count ? count : rank;
}

uint64_t bench_hist_percentile(const struct bench_hist *h, double pct)
{
        if (h->count == 0)
                return 0;
        if (pct >= 100.0)
                return h->max_ns;
        uint64_t rank = bench_hist_rank(h->count, pct);
        uint64_t seen = 0;
        for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
                seen += h->buckets[i];
                if (seen < rank)
                        continue;
                uint64_t mid_ns = bench_hist_bucket_low_ns(i) + bench_hist_bucket_width_ns(i) / 2;
                if (mid_ns < h->min_ns)
                        return h->min_ns;
                return mid_ns > h->max_ns ? h->max_ns : mid_ns;
        }
        /* The buckets add up to count, so the loop returns; a histogram
         * whose counts disagree was corrupted by its owner. */
        DP_VERIFY(seen == h->count);
        return h->max_ns;
}
