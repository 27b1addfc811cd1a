/* bench_report.h - results of a benchmark and how they are printed.
 *
 * A scenario adds one struct bench_result per case (message size, burst,
 * system), already reduced to the median over --runs. Printing is separate:
 * a table for people (the default), one JSON object per line for machines
 * (--json), and the SVG in bench_svg.h. `system` names what was measured
 * ("atomq", later "nats-server") so one report can compare two systems.
 *
 *      atomq-bench ring --json | jq 'select(.case == "pingpong") | .p99_ns'
 */
#ifndef ATOMQ_BENCH_REPORT_H
#define ATOMQ_BENCH_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "bench/bench_hist.h"

#define BENCH_RESULTS_MAX 128 /* above BENCH_LIST_MAX^2 + 1, the most ring gives */
#define BENCH_NAME_BYTES 24
/* Latency curve points at 0, 0.1, ... 5.0 "nines" (percentile
 * 100 * (1 - 10^-nines)): from the minimum to p99.999. */
#define BENCH_CURVE_POINTS 51
#define BENCH_CURVE_NINES_STEP 0.1

struct bench_latency {
        uint64_t samples; /* summed over runs */
        uint64_t clamped; /* summed over runs */
        uint64_t p50_ns;
        uint64_t p90_ns;
        uint64_t p99_ns;
        uint64_t p999_ns;
        uint64_t max_ns;
        uint64_t curve_ns[BENCH_CURVE_POINTS];
};

struct bench_result {
        char system[BENCH_NAME_BYTES];
        char scenario[BENCH_NAME_BYTES];
        char case_name[BENCH_NAME_BYTES]; /* "throughput", "pingpong", ... */
        unsigned msg_bytes;
        unsigned burst;      /* 0: does not apply */
        unsigned runs;
        double msgs_per_s;   /* median; round trips per second for latency cases */
        double bytes_per_s;  /* msgs_per_s * msg_bytes */
        uint64_t errors;     /* ordering or loss errors, summed over runs */
        double cpu_share;    /* the least share of its wall time any benchmark
                              * thread spent on a CPU, over the runs (see
                              * BENCH_CPU_SHARE_WARN) */
        bool has_latency;
        char clock[BENCH_NAME_BYTES]; /* the timer latencies were read with */
        struct bench_latency lat;     /* median over runs, per field */
};

struct bench_report {
        double duration_s;
        double warmup_s;
        unsigned runs;
        unsigned n;
        struct bench_result results[BENCH_RESULTS_MAX];
};

void bench_report_init(struct bench_report *rep, double duration_s, double warmup_s,
                       unsigned runs);

/* A zeroed result with its names filled in, or NULL when the report holds
 * BENCH_RESULTS_MAX results already. */
struct bench_result *bench_report_add(struct bench_report *rep, const char *system,
                                      const char *scenario, const char *case_name);

/* Errors over all results; nonzero makes atomq-bench exit 1. */
uint64_t bench_report_errors(const struct bench_report *rep);

/* Below this cpu_share something else ran on the benchmark's CPUs for a
 * noticeable part of the run: a pinned polling thread alone gets 98-100%,
 * two threads sharing one CPU about 50%. */
#define BENCH_CPU_SHARE_WARN 0.95

/* The lowest cpu_share over all results. */
double bench_report_cpu_share(const struct bench_report *rep);

void bench_report_print_table(const struct bench_report *rep, FILE *f);
void bench_report_print_json(const struct bench_report *rep, FILE *f);

/* The percentile of curve point i (0 .. BENCH_CURVE_POINTS-1). */
double bench_curve_pct(unsigned i);

/* Summarises one run's histogram. */
void bench_latency_from_hist(struct bench_latency *lat, const struct bench_hist *h);

/* The per-field median of n runs (samples and clamped are summed). */
void bench_latency_median(struct bench_latency *out, const struct bench_latency *runs,
                          unsigned n);

/* Medians; both sort v in place. n must be at least 1. */
double bench_median_f64(double *v, unsigned n);
uint64_t bench_median_u64(uint64_t *v, unsigned n);

#endif /* ATOMQ_BENCH_REPORT_H */
