/* bench_report.c - reducing runs to medians and printing results as a
 * table or as JSON lines. */
#include "bench/bench_report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_scenario.h"

void bench_report_init(struct bench_report *rep, double duration_s, double warmup_s,
                       unsigned runs)
{
        memset(rep, 0, sizeof(*rep));
        rep->duration_s = duration_s;
        rep->warmup_s = warmup_s;
        rep->runs = runs;
}

static void bench_name_set(char dst[BENCH_NAME_BYTES], const char *src)
{
        snprintf(dst, BENCH_NAME_BYTES, "%s", src);
}

struct bench_result *bench_report_add(struct bench_report *rep, const char *system,
                                      const char *scenario, const char *case_name)
{
        if (rep->n == BENCH_RESULTS_MAX)
                return NULL;
        struct bench_result *r = &rep->results[rep->n++];
        memset(r, 0, sizeof(*r));
        bench_name_set(r->system, system);
        bench_name_set(r->scenario, scenario);
        bench_name_set(r->case_name, case_name);
        r->runs = rep->runs;
        r->cpu_share = 1.0;
        return r;
}

static struct bench_field *bench_field_add(struct bench_result *r, const char *name,
                                           enum bench_field_kind kind)
{
        DP_VERIFY(r->fields_n < BENCH_FIELDS_MAX);
        DP_VERIFY(strlen(name) < BENCH_NAME_BYTES);
        struct bench_field *f = &r->fields[r->fields_n++];
        memset(f, 0, sizeof(*f));
        bench_name_set(f->name, name);
        f->kind = kind;
        return f;
}

void bench_result_u64(struct bench_result *r, const char *name, uint64_t v)
{
        bench_field_add(r, name, BENCH_FIELD_U64)->u64 = v;
}

void bench_result_f64(struct bench_result *r, const char *name, double v)
{
        bench_field_add(r, name, BENCH_FIELD_F64)->f64 = v;
}

void bench_result_rate(struct bench_result *r, const char *name, double per_s)
{
        bench_field_add(r, name, BENCH_FIELD_RATE)->f64 = per_s;
}

void bench_result_bool(struct bench_result *r, const char *name, bool v)
{
        bench_field_add(r, name, BENCH_FIELD_BOOL)->u64 = v;
}

void bench_result_str(struct bench_result *r, const char *name, const char *v)
{
        DP_VERIFY(strlen(v) < BENCH_NAME_BYTES);
        bench_name_set(bench_field_add(r, name, BENCH_FIELD_STR)->str, v);
}

uint64_t bench_report_errors(const struct bench_report *rep)
{
        uint64_t errors = 0;
        for (unsigned i = 0; i < rep->n; i++)
                errors += rep->results[i].errors;
        return errors;
}

double bench_report_cpu_share(const struct bench_report *rep)
{
        double least = 1.0;
        for (unsigned i = 0; i < rep->n; i++)
                if (rep->results[i].cpu_share < least)
                        least = rep->results[i].cpu_share;
        return least;
}

double bench_curve_pct(unsigned i)
{
        return 100.0 * (1.0 - pow(10.0, -(double)i * BENCH_CURVE_NINES_STEP));
}

void bench_latency_from_hist(struct bench_latency *lat, const struct bench_hist *h)
{
        lat->samples = h->count;
        lat->clamped = h->clamped;
        lat->p50_ns = bench_hist_percentile(h, 50.0);
        lat->p90_ns = bench_hist_percentile(h, 90.0);
        lat->p99_ns = bench_hist_percentile(h, 99.0);
        lat->p999_ns = bench_hist_percentile(h, 99.9);
        lat->max_ns = bench_hist_percentile(h, 100.0);
        for (unsigned i = 0; i < BENCH_CURVE_POINTS; i++)
                lat->curve_ns[i] = bench_hist_percentile(h, bench_curve_pct(i));
}

static int bench_cmp_f64(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return (x > y) - (x < y);
}

static int bench_cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return (x > y) - (x < y);
}

void bench_count_name(char *buf, size_t len, uint32_t n)
{
        if (n % 1000000 == 0)
                snprintf(buf, len, "%uM", n / 1000000);
        else if (n % 1000 == 0)
                snprintf(buf, len, "%uk", n / 1000);
        else
                snprintf(buf, len, "%u", n);
}

double bench_median_f64(double *v, unsigned n)
{
        DP_VERIFY(n >= 1);
        qsort(v, n, sizeof(*v), bench_cmp_f64);
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

uint64_t bench_median_u64(uint64_t *v, unsigned n)
{
        DP_VERIFY(n >= 1);
        qsort(v, n, sizeof(*v), bench_cmp_u64);
        return n % 2 ? v[n / 2] : v[n / 2 - 1] + (v[n / 2] - v[n / 2 - 1]) / 2;
}

/* The median over runs of the field at byte offset `off`. */
static uint64_t bench_latency_field_median(const struct bench_latency *runs, unsigned n,
                                           size_t off)
{
        uint64_t v[BENCH_RUNS_MAX];
        for (unsigned i = 0; i < n; i++)
                memcpy(&v[i], (const char *)&runs[i] + off, sizeof(v[i]));
        return bench_median_u64(v, n);
}

void bench_latency_median(struct bench_latency *out, const struct bench_latency *runs,
                          unsigned n)
{
        DP_VERIFY(n >= 1);
        DP_VERIFY(n <= BENCH_RUNS_MAX);
        memset(out, 0, sizeof(*out));
        for (unsigned i = 0; i < n; i++) {
                out->samples += runs[i].samples;
                out->clamped += runs[i].clamped;
        }
#define BENCH_MEDIAN_OF(field) \
        bench_latency_field_median(runs, n, offsetof(struct bench_latency, field))
        out->p50_ns = BENCH_MEDIAN_OF(p50_ns);
        out->p90_ns = BENCH_MEDIAN_OF(p90_ns);
        out->p99_ns = BENCH_MEDIAN_OF(p99_ns);
        out->p999_ns = BENCH_MEDIAN_OF(p999_ns);
        out->max_ns = BENCH_MEDIAN_OF(max_ns);
#undef BENCH_MEDIAN_OF
        for (unsigned p = 0; p < BENCH_CURVE_POINTS; p++)
                out->curve_ns[p] = bench_latency_field_median(
                        runs, n, offsetof(struct bench_latency, curve_ns) + p * sizeof(uint64_t));
}

/* "123.45 M"-style rates keep the table narrow and still show 4-5 digits. */
static void bench_rate_format(char *buf, size_t len, double per_s)
{
        if (per_s >= 1e9)
                snprintf(buf, len, "%.3f G", per_s / 1e9);
        else if (per_s >= 1e6)
                snprintf(buf, len, "%.2f M", per_s / 1e6);
        else if (per_s >= 1e3)
                snprintf(buf, len, "%.2f k", per_s / 1e3);
        else
                snprintf(buf, len, "%.1f  ", per_s);
}

static void bench_table_throughput(const struct bench_report *rep, FILE *f)
{
        bool header = false;
        for (unsigned i = 0; i < rep->n; i++) {
                const struct bench_result *r = &rep->results[i];
                if (r->has_latency || r->fields_n != 0)
                        continue;
                if (!header)
                        fprintf(f, "%-12s %-9s %-11s %6s %6s %14s %12s %6s %7s\n", "system",
                                "scenario", "case", "bytes", "burst", "msgs/s", "MB/s",
                                "cpu%", "errors");
                header = true;
                char rate[32];
                bench_rate_format(rate, sizeof(rate), r->msgs_per_s);
                fprintf(f, "%-12s %-9s %-11s %6u %6u %14s %12.1f %6.1f %7llu\n", r->system,
                        r->scenario, r->case_name, r->msg_bytes, r->burst, rate,
                        r->bytes_per_s / 1e6, 100 * r->cpu_share,
                        (unsigned long long)r->errors);
        }
        if (header)
                fputc('\n', f);
}

static void bench_table_latency(const struct bench_report *rep, FILE *f)
{
        bool header = false;
        for (unsigned i = 0; i < rep->n; i++) {
                const struct bench_result *r = &rep->results[i];
                if (!r->has_latency)
                        continue;
                if (!header)
                        fprintf(f, "%-12s %-9s %-11s %6s %12s %8s %8s %8s %8s %10s %7s\n",
                                "system", "scenario", "case", "bytes", "round-trips/s",
                                "p50 ns", "p90 ns", "p99 ns", "p99.9 ns", "max ns", "errors");
                header = true;
                char rate[32];
                bench_rate_format(rate, sizeof(rate), r->msgs_per_s);
                fprintf(f, "%-12s %-9s %-11s %6u %13s %8llu %8llu %8llu %8llu %10llu %7llu\n",
                        r->system, r->scenario, r->case_name, r->msg_bytes, rate,
                        (unsigned long long)r->lat.p50_ns, (unsigned long long)r->lat.p90_ns,
                        (unsigned long long)r->lat.p99_ns, (unsigned long long)r->lat.p999_ns,
                        (unsigned long long)r->lat.max_ns, (unsigned long long)r->errors);
                fprintf(f, "%-12s   %llu samples over %u runs, clock %s, cpu %.1f%%%s\n", "",
                        (unsigned long long)r->lat.samples, r->runs, r->clock,
                        100 * r->cpu_share,
                        r->lat.clamped ? ", some above 60 s (clamped)" : "");
        }
        if (header)
                fputc('\n', f);
}

/* Whether two results print under one header: same scenario, same fields. */
static bool bench_table_same_columns(const struct bench_result *a, const struct bench_result *b)
{
        if (strcmp(a->scenario, b->scenario) != 0 || a->fields_n != b->fields_n ||
            a->no_msgs != b->no_msgs)
                return false;
        for (unsigned k = 0; k < a->fields_n; k++)
                if (strcmp(a->fields[k].name, b->fields[k].name) != 0)
                        return false;
        return true;
}

/* A column is as wide as its name, and at least 10 characters. */
static int bench_field_width(const struct bench_field *fd)
{
        int w = (int)strlen(fd->name);
        return w < 10 ? 10 : w;
}

static void bench_table_fields_header(const struct bench_result *r, FILE *f)
{
        fprintf(f, "%-12s %-9s %-11s", "system", "scenario", "case");
        for (unsigned k = 0; k < r->fields_n; k++)
                fprintf(f, " %*s", bench_field_width(&r->fields[k]), r->fields[k].name);
        if (!r->no_msgs)
                fprintf(f, " %12s", "msgs/s");
        fprintf(f, " %6s %7s\n", "cpu%", "errors");
}

static void bench_table_fields_row(const struct bench_result *r, FILE *f)
{
        char buf[32];
        fprintf(f, "%-12s %-9s %-11s", r->system, r->scenario, r->case_name);
        for (unsigned k = 0; k < r->fields_n; k++) {
                const struct bench_field *fd = &r->fields[k];
                int w = bench_field_width(fd);
                switch (fd->kind) {
                case BENCH_FIELD_U64:
                        fprintf(f, " %*llu", w, (unsigned long long)fd->u64);
                        break;
                case BENCH_FIELD_F64:
                        fprintf(f, " %*.2f", w, fd->f64);
                        break;
                case BENCH_FIELD_RATE:
                        bench_rate_format(buf, sizeof(buf), fd->f64);
                        fprintf(f, " %*s", w, buf);
                        break;
                case BENCH_FIELD_BOOL:
                        fprintf(f, " %*s", w, fd->u64 ? "yes" : "no");
                        break;
                case BENCH_FIELD_STR:
                        fprintf(f, " %*s", w, fd->str);
                        break;
                }
        }
        if (!r->no_msgs) {
                bench_rate_format(buf, sizeof(buf), r->msgs_per_s);
                fprintf(f, " %12s", buf);
        }
        fprintf(f, " %6.1f %7llu\n", 100 * r->cpu_share, (unsigned long long)r->errors);
}

/* Results with scenario fields: a header whenever the columns change. */
static void bench_table_fields(const struct bench_report *rep, FILE *f)
{
        const struct bench_result *prev = NULL;
        for (unsigned i = 0; i < rep->n; i++) {
                const struct bench_result *r = &rep->results[i];
                if (r->fields_n == 0)
                        continue;
                if (prev == NULL || !bench_table_same_columns(prev, r)) {
                        if (prev != NULL)
                                fputc('\n', f);
                        bench_table_fields_header(r, f);
                }
                bench_table_fields_row(r, f);
                prev = r;
        }
        if (prev != NULL)
                fputc('\n', f);
}

bool bench_report_timed(const struct bench_report *rep)
{
        for (unsigned i = 0; i < rep->n; i++)
                if (!rep->results[i].fixed_work)
                        return true;
        return rep->n == 0;
}

void bench_report_print_table(const struct bench_report *rep, FILE *f)
{
        fprintf(f, "median of %u run%s", rep->runs, rep->runs == 1 ? "" : "s");
        if (bench_report_timed(rep))
                fprintf(f, ", each %.3g s after %.3g s of warm-up", rep->duration_s,
                        rep->warmup_s);
        fputs("\n\n", f);
        bench_table_throughput(rep, f);
        bench_table_latency(rep, f);
        bench_table_fields(rep, f);
        uint64_t errors = bench_report_errors(rep);
        if (errors != 0)
                fprintf(f, "%llu errors counted: these figures are not valid\n",
                        (unsigned long long)errors);
        if (bench_report_cpu_share(rep) < BENCH_CPU_SHARE_WARN)
                fprintf(f, "cpu%% below %.0f: something else ran on the benchmark's CPUs, so "
                           "those figures are low\n", 100 * BENCH_CPU_SHARE_WARN);
}

/* Our names are plain ASCII, but a string in JSON is escaped regardless. */
static void bench_json_str(FILE *f, const char *key, const char *s)
{
        fprintf(f, "\"%s\":\"", key);
        for (; *s; s++) {
                unsigned char c = (unsigned char)*s;
                if (c == '"' || c == '\\')
                        fprintf(f, "\\%c", c);
                else if (c < 0x20)
                        fprintf(f, "\\u%04x", c);
                else
                        fputc(c, f);
        }
        fputc('"', f);
}

static void bench_json_u64(FILE *f, const char *key, uint64_t v)
{
        fprintf(f, ",\"%s\":%llu", key, (unsigned long long)v);
}

/* JSON has no NaN or infinity; a rate that is not finite is reported 0. */
static void bench_json_f64(FILE *f, const char *key, double v)
{
        fprintf(f, ",\"%s\":%.0f", key, isfinite(v) ? v : 0.0);
}

static void bench_json_field(FILE *f, const struct bench_field *fd)
{
        switch (fd->kind) {
        case BENCH_FIELD_U64:
                bench_json_u64(f, fd->name, fd->u64);
                break;
        case BENCH_FIELD_F64:
                fprintf(f, ",\"%s\":%.2f", fd->name, isfinite(fd->f64) ? fd->f64 : 0.0);
                break;
        case BENCH_FIELD_RATE:
                bench_json_f64(f, fd->name, fd->f64);
                break;
        case BENCH_FIELD_BOOL:
                fprintf(f, ",\"%s\":%s", fd->name, fd->u64 ? "true" : "false");
                break;
        case BENCH_FIELD_STR:
                fputc(',', f);
                bench_json_str(f, fd->name, fd->str);
                break;
        }
}

static void bench_json_result(const struct bench_result *r, double duration_s, FILE *f)
{
        /* Scenarios with fields of their own move no bytes of a size. */
        bool sized = r->msg_bytes != 0 || r->fields_n == 0;
        fputc('{', f);
        bench_json_str(f, "system", r->system);
        fputc(',', f);
        bench_json_str(f, "scenario", r->scenario);
        fputc(',', f);
        bench_json_str(f, "case", r->case_name);
        for (unsigned k = 0; k < r->fields_n; k++)
                bench_json_field(f, &r->fields[k]);
        if (sized)
                bench_json_u64(f, "msg_bytes", r->msg_bytes);
        if (r->burst != 0)
                bench_json_u64(f, "burst", r->burst);
        bench_json_u64(f, "runs", r->runs);
        if (!r->fixed_work)
                fprintf(f, ",\"duration_s\":%.3f", duration_s);
        if (!r->no_msgs)
                bench_json_f64(f, "msgs_per_s", r->msgs_per_s);
        if (sized)
                bench_json_f64(f, "bytes_per_s", r->bytes_per_s);
        if (r->has_latency) {
                bench_json_u64(f, "p50_ns", r->lat.p50_ns);
                bench_json_u64(f, "p90_ns", r->lat.p90_ns);
                bench_json_u64(f, "p99_ns", r->lat.p99_ns);
                bench_json_u64(f, "p999_ns", r->lat.p999_ns);
                bench_json_u64(f, "max_ns", r->lat.max_ns);
                bench_json_u64(f, "samples", r->lat.samples);
                bench_json_u64(f, "clamped", r->lat.clamped);
                fputc(',', f);
                bench_json_str(f, "clock", r->clock);
        }
        fprintf(f, ",\"cpu_share\":%.3f", r->cpu_share);
        bench_json_u64(f, "errors", r->errors);
        fputs("}\n", f);
}

void bench_report_print_json(const struct bench_report *rep, FILE *f)
{
        for (unsigned i = 0; i < rep->n; i++)
                bench_json_result(&rep->results[i], rep->duration_s, f);
}
