/* test_bench_hist.c - the latency histogram atomq-bench reports from:
 * percentiles within the documented precision, empty and clamped cases,
 * merging.
 *
 *      meson test -C build bench_hist
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "bench/bench_hist.h"

/* The histogram is 16 KB; static so tests do not lean on stack size. */
static struct bench_hist h, h2, all;

static int cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return (x > y) - (x < y);
}

/* The exact value of rank ceil(pct% * n) (at least 1) in sorted v[0..n). */
static uint64_t exact_percentile(const uint64_t *sorted, size_t n, double pct)
{
        double want = pct / 100.0 * (double)n;
        size_t rank = (size_t)want;
        if ((double)rank < want)
                rank++;
        if (rank == 0)
                rank = 1;
        return sorted[rank - 1];
}

static void expect_close(uint64_t got, uint64_t want, double pct)
{
        double err = got > want ? (double)(got - want) : (double)(want - got);
        cr_expect(err <= (double)want * BENCH_HIST_REL_ERROR,
                  "p%g: got %llu, exact %llu (allowed %.2f%%)", pct, (unsigned long long)got,
                  (unsigned long long)want, 100 * BENCH_HIST_REL_ERROR);
}

/* Records v[0..n) and checks the usual percentiles against sorting. */
static void check_distribution(uint64_t *v, size_t n)
{
        static const double pcts[] = { 0, 1, 10, 50, 90, 99, 99.9, 99.99 };
        bench_hist_init(&h);
        for (size_t i = 0; i < n; i++)
                bench_hist_record(&h, v[i]);
        qsort(v, n, sizeof(*v), cmp_u64);
        cr_assert_eq(h.count, n);
        for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++)
                expect_close(bench_hist_percentile(&h, pcts[i]), exact_percentile(v, n, pcts[i]),
                             pcts[i]);
        cr_expect_eq(bench_hist_percentile(&h, 100), v[n - 1], "max is exact");
        cr_expect_eq(bench_hist_min(&h), v[0], "min is exact");
}

Test(bench_hist, percentiles_within_precision_uniform)
{
        enum { N = 100000 };
        static uint64_t v[N];
        for (size_t i = 0; i < N; i++)
                v[i] = i + 1; /* 1 .. 100000 ns */
        check_distribution(v, N);
        /* The plain reading too: p50 of 1..100000 is about 50000. */
        uint64_t p50 = bench_hist_percentile(&h, 50);
        cr_expect(p50 >= 49600 && p50 <= 50400, "p50 %llu", (unsigned long long)p50);
}

Test(bench_hist, percentiles_within_precision_long_tail)
{
        /* Mostly ~200 ns with a tail up to tens of milliseconds, like a
         * round trip on a busy machine; a fixed seed keeps it repeatable. */
        enum { N = 200000 };
        static uint64_t v[N];
        srand(42);
        for (size_t i = 0; i < N; i++) {
                uint64_t base = 150 + (uint64_t)(rand() % 100);
                int r = rand() % 1000;
                v[i] = r < 990 ? base : r < 999 ? base * 10 + (uint64_t)rand() % 5000
                                                : (uint64_t)rand() % 50000000;
        }
        check_distribution(v, N);
}

Test(bench_hist, small_values_are_exact)
{
        bench_hist_init(&h);
        for (uint64_t v = 0; v < BENCH_HIST_LINEAR_MAX; v++)
                bench_hist_record(&h, v);
        for (uint64_t v = 0; v < BENCH_HIST_LINEAR_MAX; v++) {
                double pct = 100.0 * (double)(v + 1) / BENCH_HIST_LINEAR_MAX;
                cr_expect_eq(bench_hist_percentile(&h, pct - 1e-9), v, "value %llu",
                             (unsigned long long)v);
        }
}

Test(bench_hist, buckets_tile_the_range_within_precision)
{
        uint64_t next = 0;
        for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
                uint64_t low = bench_hist_bucket_low_ns(i), width = bench_hist_bucket_width_ns(i);
                cr_assert_eq(low, next, "bucket %u starts where %u ended", i, i - 1);
                cr_assert_eq(bench_hist_index(low), i);
                cr_assert_eq(bench_hist_index(low + width - 1), i);
                if (low >= BENCH_HIST_LINEAR_MAX)
                        cr_assert(width * BENCH_HIST_SUB_COUNT <= low, "bucket %u too wide", i);
                next = low + width;
        }
        cr_assert_gt(next, BENCH_HIST_VALUE_MAX_NS, "the last bucket holds the max");
        cr_assert_lt(bench_hist_index(BENCH_HIST_VALUE_MAX_NS), BENCH_HIST_BUCKETS);
}

Test(bench_hist, empty_reports_zero)
{
        bench_hist_init(&h);
        cr_expect_eq(h.count, 0);
        cr_expect_eq(bench_hist_percentile(&h, 0), 0);
        cr_expect_eq(bench_hist_percentile(&h, 50), 0);
        cr_expect_eq(bench_hist_percentile(&h, 99.9), 0);
        cr_expect_eq(bench_hist_percentile(&h, 100), 0);
        cr_expect_eq(bench_hist_min(&h), 0);
}

Test(bench_hist, single_value_is_every_percentile)
{
        bench_hist_init(&h);
        bench_hist_record(&h, 123457);
        cr_expect_eq(bench_hist_percentile(&h, 0), 123457);
        cr_expect_eq(bench_hist_percentile(&h, 50), 123457);
        cr_expect_eq(bench_hist_percentile(&h, 100), 123457);
}

Test(bench_hist, values_above_max_are_clamped_and_counted)
{
        bench_hist_init(&h);
        bench_hist_record(&h, 500);
        bench_hist_record(&h, BENCH_HIST_VALUE_MAX_NS);     /* the max itself fits */
        bench_hist_record(&h, BENCH_HIST_VALUE_MAX_NS + 1);
        bench_hist_record(&h, UINT64_MAX);
        cr_expect_eq(h.count, 4);
        cr_expect_eq(h.clamped, 2);
        cr_expect_eq(bench_hist_percentile(&h, 100), BENCH_HIST_VALUE_MAX_NS);
        expect_close(bench_hist_percentile(&h, 25), 500, 25);
        expect_close(bench_hist_percentile(&h, 75), BENCH_HIST_VALUE_MAX_NS, 75);
}

Test(bench_hist, merge_equals_recording_everything_once)
{
        bench_hist_init(&h);
        bench_hist_init(&h2);
        bench_hist_init(&all);
        for (uint64_t v = 1; v <= 50000; v++) {
                uint64_t x = v * 37 % 1000003; /* spread over six decades */
                bench_hist_record(v % 3 ? &h : &h2, x);
                bench_hist_record(&all, x);
        }
        bench_hist_record(&h2, BENCH_HIST_VALUE_MAX_NS * 2);
        bench_hist_record(&all, BENCH_HIST_VALUE_MAX_NS * 2);
        bench_hist_merge(&h, &h2);
        cr_expect_eq(h.count, all.count);
        cr_expect_eq(h.clamped, 1);
        cr_expect_eq(h.min_ns, all.min_ns);
        cr_expect_eq(h.max_ns, all.max_ns);
        cr_expect_arr_eq(h.buckets, all.buckets, sizeof(h.buckets));
        cr_expect_eq(bench_hist_percentile(&h, 99), bench_hist_percentile(&all, 99));
}

Test(bench_hist, merge_into_empty_keeps_min)
{
        bench_hist_init(&h);
        bench_hist_init(&h2);
        bench_hist_record(&h2, 777);
        bench_hist_merge(&h, &h2);
        cr_expect_eq(bench_hist_min(&h), 777);
        cr_expect_eq(bench_hist_percentile(&h, 50), 777);
        bench_hist_init(&h2);
        bench_hist_merge(&h, &h2); /* merging an empty one changes nothing */
        cr_expect_eq(bench_hist_min(&h), 777);
        cr_expect_eq(h.count, 1);
}
