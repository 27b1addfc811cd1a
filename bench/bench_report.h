/* bench_report.h - results of a benchmark and how they are printed.
 *
 * A scenario adds one struct bench_result per case (message size, burst,
 * system), already reduced to the median over --runs. Printing is separate:
 * a table for people (the default), one JSON object per line for machines
 * (--json), and the SVG in bench_svg.h. `system` names what was measured
 * ("atomq", later "nats-server") so one report can compare two systems.
 * Scenarios whose figures are not message rates (churn, route) add named
 * fields to their results (bench_result_u64 and friends).
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

/* A figure a scenario reports beyond the common ones ("entities",
 * "creates_per_s", "hugepages"): printed under its name in the table and
 * the JSON, in the order added. Rates are drawn as bars in the SVG. */
#define BENCH_FIELDS_MAX 12

enum bench_field_kind {
        BENCH_FIELD_U64,  /* a count */
        BENCH_FIELD_F64,  /* a measure with a fraction (bytes per entity) */
        BENCH_FIELD_RATE, /* a median per second; a bar in the SVG */
        BENCH_FIELD_BOOL,
        BENCH_FIELD_STR,
};

struct bench_field {
        char name[BENCH_NAME_BYTES];
        enum bench_field_kind kind;
        uint64_t u64;                /* U64, BOOL */
        double f64;                  /* F64, RATE */
        char str[BENCH_NAME_BYTES];  /* STR */
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
        bool no_msgs;        /* moves no messages: msgs_per_s does not apply */
        bool fixed_work;     /* runs do a fixed amount of work, not --duration */
        unsigned fields_n;
        struct bench_field fields[BENCH_FIELDS_MAX];
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

/* Scenario-specific fields, appended in order. Names are at most
 * BENCH_NAME_BYTES - 1 characters and a result holds at most
 * BENCH_FIELDS_MAX of them: both are the scenario's own invariants,
 * checked with DP_VERIFY. */
void bench_result_u64(struct bench_result *r, const char *name, uint64_t v);
void bench_result_f64(struct bench_result *r, const char *name, double v);
void bench_result_rate(struct bench_result *r, const char *name, double per_s);
void bench_result_bool(struct bench_result *r, const char *name, bool v);
void bench_result_str(struct bench_result *r, const char *name, const char *v);

/* Errors over all results; nonzero makes atomq-bench exit 1. */
uint64_t bench_report_errors(const struct bench_report *rep);

/* Below this cpu_share something else ran on the benchmark's CPUs for a
 * noticeable part of the run: a pinned polling thread alone gets 98-100%,
 * two threads sharing one CPU about 50%. */
#define BENCH_CPU_SHARE_WARN 0.95

/* Whether any result was timed by --duration (the others did fixed work). */
bool bench_report_timed(const struct bench_report *rep);

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

/* "1M", "250k" or "1234": short names of counts for cases and charts. */
void bench_count_name(char *buf, size_t len, uint32_t n);
uint64_t bench_median_u64(uint64_t *v, unsigned n);

#endif /* ATOMQ_BENCH_REPORT_H */
