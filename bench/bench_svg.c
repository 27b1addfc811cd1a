/* bench_svg.c - hand-written SVG for bench_report: throughput bars and
 * latency percentile curves, one colour per system; for results with fields
 * of their own (churn, route), a bar per rate field, one colour per field.
 *
 *      atomq-bench ring --svg /tmp/ring.svg
 *
 * Written as text with fprintf: the picture is a few dozen elements and a
 * plotting library would be a large dependency for a benchmark tool. All
 * text goes through bench_svg_text, which escapes it, so the file is always
 * well-formed XML.
 */
#include "bench/bench_svg.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

#define BENCH_SVG_WIDTH 960
#define BENCH_SVG_HEADER_H 70
#define BENCH_SVG_PLOT_X0 100
#define BENCH_SVG_PLOT_X1 (BENCH_SVG_WIDTH - 30)
#define BENCH_SVG_PLOT_TOP 60   /* below a chart's title */
#define BENCH_SVG_PLOT_H 260
#define BENCH_SVG_CHART_H 400   /* title, plot, axis labels and gap */
#define BENCH_SVG_SYSTEMS_MAX 8
#define BENCH_SVG_NINES_MAX 5.0 /* p99.999: the rightmost percentile drawn */
#define BENCH_SVG_NINES_END 5.6 /* where "max" sits */

/* Colour-blind-safe (Okabe-Ito) colours, one per system in order of
 * appearance. */
static const char *const bench_svg_colors[] = {
        "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
};

/* The chart a result is drawn in. */
enum bench_svg_chart {
        BENCH_SVG_BARS,    /* msgs_per_s, a colour per system */
        BENCH_SVG_LATENCY, /* percentile curves */
        BENCH_SVG_RATES,   /* the result's rate fields, a colour per field */
};

static enum bench_svg_chart bench_svg_chart_of(const struct bench_result *r)
{
        if (r->has_latency)
                return BENCH_SVG_LATENCY;
        return r->fields_n != 0 ? BENCH_SVG_RATES : BENCH_SVG_BARS;
}

static bool bench_svg_in(const struct bench_result *r, const char *scenario,
                         enum bench_svg_chart chart)
{
        return strcmp(r->scenario, scenario) == 0 && bench_svg_chart_of(r) == chart;
}

struct bench_svg {
        FILE *f;
        const struct bench_report *rep;
        const char *systems[BENCH_SVG_SYSTEMS_MAX];
        unsigned systems_n;
};

static void bench_svg_escape(FILE *f, const char *s)
{
        for (; *s; s++) {
                switch (*s) {
                case '&': fputs("&amp;", f); break;
                case '<': fputs("&lt;", f); break;
                case '>': fputs("&gt;", f); break;
                case '"': fputs("&quot;", f); break;
                default: fputc(*s, f); break;
                }
        }
}

/* <text> at (x, y) with extra attributes `attrs` (ours, not escaped) and
 * printf-formatted content (escaped). */
__attribute__((format(printf, 5, 6)))
static void bench_svg_text(FILE *f, double x, double y, const char *attrs, const char *fmt, ...)
{
        char buf[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" %s>", x, y, attrs);
        bench_svg_escape(f, buf);
        fputs("</text>\n", f);
}

/* An axis title turned to read bottom to top, centred on (x, y). */
static void bench_svg_vtext(FILE *f, double x, double y, const char *text)
{
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" text-anchor=\"middle\" "
                   "transform=\"rotate(-90 %.1f %.1f)\">", x, y, x, y);
        bench_svg_escape(f, text);
        fputs("</text>\n", f);
}

/* A <title> child: browsers show it as a tooltip. */
__attribute__((format(printf, 2, 3)))
static void bench_svg_tooltip(FILE *f, const char *fmt, ...)
{
        char buf[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        fputs("<title>", f);
        bench_svg_escape(f, buf);
        fputs("</title>", f);
}

static const char *bench_svg_color(const struct bench_svg *s, const char *system)
{
        for (unsigned i = 0; i < s->systems_n; i++)
                if (strcmp(s->systems[i], system) == 0)
                        return bench_svg_colors[i];
        return bench_svg_colors[BENCH_SVG_SYSTEMS_MAX - 1];
}

/* 1.5 M, 250 k: axis and bar labels. */
static void bench_svg_rate_str(char *buf, size_t len, double per_s)
{
        if (per_s >= 1e9)
                snprintf(buf, len, "%.3g G", per_s / 1e9);
        else if (per_s >= 1e6)
                snprintf(buf, len, "%.3g M", per_s / 1e6);
        else if (per_s >= 1e3)
                snprintf(buf, len, "%.3g k", per_s / 1e3);
        else
                snprintf(buf, len, "%.3g", per_s);
}

/* 250 ns, 1.2 us, 31 ms: latency labels ("\xc2\xb5" is U+00B5, micro). */
static void bench_svg_ns_str(char *buf, size_t len, double ns)
{
        if (ns < 1e3)
                snprintf(buf, len, "%.0f ns", ns);
        else if (ns < 1e6)
                snprintf(buf, len, "%.3g \xc2\xb5s", ns / 1e3);
        else if (ns < 1e9)
                snprintf(buf, len, "%.3g ms", ns / 1e6);
        else
                snprintf(buf, len, "%.3g s", ns / 1e9);
}

/* An axis step of 1, 2 or 5 times a power of ten giving 4 to 10 ticks. */
static double bench_svg_step(double max)
{
        double step = pow(10.0, floor(log10(max)));
        if (max / step < 2)
                return step / 5;
        if (max / step < 5)
                return step / 2;
        return step;
}

/* The systems with results in one chart, in report order. */
struct bench_svg_systems {
        const char *name[BENCH_SVG_SYSTEMS_MAX];
        unsigned n;
};

static void bench_svg_chart_systems(const struct bench_report *rep, const char *scenario,
                                    enum bench_svg_chart chart, struct bench_svg_systems *out)
{
        out->n = 0;
        for (unsigned i = 0; i < rep->n; i++) {
                const struct bench_result *r = &rep->results[i];
                if (!bench_svg_in(r, scenario, chart))
                        continue;
                bool seen = false;
                for (unsigned k = 0; k < out->n && !seen; k++)
                        seen = strcmp(out->name[k], r->system) == 0;
                if (!seen && out->n < BENCH_SVG_SYSTEMS_MAX)
                        out->name[out->n++] = r->system;
        }
}

/* The position of a system in a chart's list (the last one if absent). */
static unsigned bench_svg_system_slot(const struct bench_svg_systems *sys, const char *name)
{
        unsigned k = 0;
        while (k + 1 < sys->n && strcmp(sys->name[k], name) != 0)
                k++;
        return k;
}

/* One swatch and name per system (or, by_slot, per entry in list order),
 * right-aligned on a chart's title line. */
static void bench_svg_legend_row(const struct bench_svg *s, const struct bench_svg_systems *sys,
                                 double y, bool by_slot)
{
        double x = BENCH_SVG_PLOT_X1;
        for (unsigned i = sys->n; i-- > 0;) {
                const char *color = by_slot ? bench_svg_colors[i % BENCH_SVG_SYSTEMS_MAX]
                                            : bench_svg_color(s, sys->name[i]);
                x -= 30 + 8.0 * (double)strlen(sys->name[i]); /* ~8 px a character */
                fprintf(s->f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"12\" "
                              "fill=\"%s\"/>\n", x, y - 11, color);
                bench_svg_text(s->f, x + 17, y, "font-size=\"13\"", "%s", sys->name[i]);
        }
}

static bool bench_svg_same_group(const struct bench_result *a, const struct bench_result *b)
{
        return strcmp(a->scenario, b->scenario) == 0 && strcmp(a->case_name, b->case_name) == 0 &&
               a->msg_bytes == b->msg_bytes && a->burst == b->burst &&
               a->has_latency == b->has_latency;
}

/* Indexes of the first result of each bar group (scenario, case, size,
 * burst) of `scenario`, in report order. */
static unsigned bench_svg_groups(const struct bench_report *rep, const char *scenario,
                                 enum bench_svg_chart chart, unsigned *first)
{
        unsigned n = 0;
        for (unsigned i = 0; i < rep->n; i++) {
                const struct bench_result *r = &rep->results[i];
                if (!bench_svg_in(r, scenario, chart))
                        continue;
                bool seen = false;
                for (unsigned g = 0; g < n && !seen; g++)
                        seen = bench_svg_same_group(&rep->results[first[g]], r);
                if (!seen)
                        first[n++] = i;
        }
        return n;
}

static void bench_svg_title(FILE *f, double y, const char *scenario, const char *what)
{
        bench_svg_text(f, BENCH_SVG_PLOT_X0, y + 30, "font-size=\"17\" font-weight=\"bold\"",
                       "%s: %s", scenario, what);
}

static void bench_svg_bars_axis(FILE *f, double top, double bottom, double y_max, double step,
                                const char *what)
{
        for (double t = 0; t <= y_max * 1.0001; t += step) {
                double y = bottom - t / y_max * (bottom - top);
                char label[32];
                bench_svg_rate_str(label, sizeof(label), t);
                fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n",
                        BENCH_SVG_PLOT_X0, y, BENCH_SVG_PLOT_X1, y);
                bench_svg_text(f, BENCH_SVG_PLOT_X0 - 8, y + 4,
                               "font-size=\"12\" text-anchor=\"end\"", "%s", label);
        }
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#333\"/>\n",
                BENCH_SVG_PLOT_X0, bottom, BENCH_SVG_PLOT_X1, bottom);
        bench_svg_vtext(f, 30, (top + bottom) / 2, what);
}

/* A bar's <rect> up to its tooltip, which the caller writes; returns the
 * bar's height for bench_svg_bar_close. */
static double bench_svg_bar_open(FILE *f, double x, double w, double bottom, double y_max,
                                 double per_s, const char *color)
{
        double h = per_s / y_max * BENCH_SVG_PLOT_H;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\">",
                x, bottom - h, w, h, color);
        return h;
}

/* Ends the <rect> and writes the bar's figure above it. */
static void bench_svg_bar_close(FILE *f, double x, double w, double bottom, double h,
                                double per_s)
{
        char rate[32];
        bench_svg_rate_str(rate, sizeof(rate), per_s);
        fputs("</rect>\n", f);
        double cx = x + w / 2, ly = bottom - h - 6;
        if (w >= 44) {
                bench_svg_text(f, cx, ly, "font-size=\"12\" text-anchor=\"middle\"", "%s", rate);
        } else {
                /* Narrow bars: the label runs upwards from the bar's top. */
                fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" "
                           "transform=\"rotate(-90 %.1f %.1f)\">%s</text>\n",
                        cx + 4, ly, cx + 4, ly, rate);
        }
}

static void bench_svg_bar(const struct bench_svg *s, const struct bench_result *r, double x,
                          double w, double bottom, double y_max)
{
        double h = bench_svg_bar_open(s->f, x, w, bottom, y_max, r->msgs_per_s,
                                      bench_svg_color(s, r->system));
        bench_svg_tooltip(s->f, "%s %s %s, %u B, burst %u: %.4g msgs/s, %.4g MB/s, %llu errors",
                          r->system, r->scenario, r->case_name, r->msg_bytes, r->burst,
                          r->msgs_per_s, r->bytes_per_s / 1e6, (unsigned long long)r->errors);
        bench_svg_bar_close(s->f, x, w, bottom, h, r->msgs_per_s);
}

static void bench_svg_group_label(FILE *f, const struct bench_result *r, double cx, double y)
{
        const char *small = "font-size=\"11\" text-anchor=\"middle\" fill=\"#555\"";
        bench_svg_text(f, cx, y, "font-size=\"12\" text-anchor=\"middle\"", "%u B", r->msg_bytes);
        if (r->burst != 0)
                bench_svg_text(f, cx, y + 15, small, "burst %u", r->burst);
        else
                bench_svg_text(f, cx, y + 15, small, "%s", r->case_name);
}

/* Throughput of one scenario: a group of bars per (case, size, burst), a
 * bar per system inside it. */
static void bench_svg_bars(const struct bench_svg *s, const char *scenario, double y0)
{
        const struct bench_report *rep = s->rep;
        unsigned first[BENCH_RESULTS_MAX];
        unsigned groups = bench_svg_groups(rep, scenario, BENCH_SVG_BARS, first);
        double top = y0 + BENCH_SVG_PLOT_TOP, bottom = top + BENCH_SVG_PLOT_H;
        double y_max = 0;

        for (unsigned i = 0; i < rep->n; i++) {
                const struct bench_result *r = &rep->results[i];
                if (bench_svg_in(r, scenario, BENCH_SVG_BARS) && r->msgs_per_s > y_max)
                        y_max = r->msgs_per_s;
        }
        if (!(y_max > 0))
                y_max = 1;
        double step = bench_svg_step(y_max);
        y_max = ceil(y_max / step) * step;

        struct bench_svg_systems sys;
        bench_svg_chart_systems(rep, scenario, BENCH_SVG_BARS, &sys);
        bench_svg_title(s->f, y0, scenario, "throughput, messages per second (higher is better)");
        bench_svg_legend_row(s, &sys, y0 + 30, false);
        bench_svg_bars_axis(s->f, top, bottom, y_max, step, "messages per second");
        double group_w = (double)(BENCH_SVG_PLOT_X1 - BENCH_SVG_PLOT_X0) / groups;
        double bar_w = group_w * 0.7 / sys.n;
        for (unsigned g = 0; g < groups; g++) {
                const struct bench_result *head = &rep->results[first[g]];
                double gx = BENCH_SVG_PLOT_X0 + g * group_w;
                bench_svg_group_label(s->f, head, gx + group_w / 2, bottom + 18);
                for (unsigned i = first[g]; i < rep->n; i++) {
                        const struct bench_result *r = &rep->results[i];
                        if (!bench_svg_same_group(head, r))
                                continue;
                        unsigned slot = bench_svg_system_slot(&sys, r->system);
                        double x = gx + group_w * 0.15 + slot * bar_w;
                        bench_svg_bar(s, r, x, bar_w, bottom, y_max);
                }
        }
}

/* Where the latency chart's axes put a point. */
struct bench_svg_lat_map {
        double top, bottom;
        double dec_lo, dec_hi; /* log10 of the time axis' ends */
};

static double bench_svg_nines_x(double nines)
{
        const double width = BENCH_SVG_PLOT_X1 - BENCH_SVG_PLOT_X0;
        return BENCH_SVG_PLOT_X0 + nines / BENCH_SVG_NINES_END * width;
}

static double bench_svg_ns_y(const struct bench_svg_lat_map *m, double ns)
{
        double d = log10(ns < 1 ? 1 : ns);
        return m->bottom - (d - m->dec_lo) / (m->dec_hi - m->dec_lo) * (m->bottom - m->top);
}

static void bench_svg_lat_axes(FILE *f, const struct bench_svg_lat_map *m)
{
        static const double nines[] = { 0, 0.30103, 1, 2, 3, 4, 5, BENCH_SVG_NINES_END };
        static const char *const names[] = { "min",   "50",    "90",     "99",
                                             "99.9", "99.99", "99.999", "max" };
        for (unsigned i = 0; i < sizeof(nines) / sizeof(nines[0]); i++) {
                double x = bench_svg_nines_x(nines[i]);
                fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                           "stroke=\"#ddd\"/>\n", x, m->top, x, m->bottom);
                bench_svg_text(f, x, m->bottom + 18, "font-size=\"12\" text-anchor=\"middle\"",
                               "%s", names[i]);
        }
        bool minor_labels = m->dec_hi - m->dec_lo <= 3;
        static const int mults[] = { 1, 2, 5 };
        for (double d = m->dec_lo; d <= m->dec_hi; d++) {
                for (unsigned k = 0; k < sizeof(mults) / sizeof(mults[0]); k++) {
                        int mult = mults[k];
                        double ns = mult * pow(10.0, d), y = bench_svg_ns_y(m, ns);
                        if (log10(ns) > m->dec_hi + 1e-9)
                                break;
                        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" "
                                   "stroke=\"%s\"/>\n", BENCH_SVG_PLOT_X0, y, BENCH_SVG_PLOT_X1, y,
                                mult == 1 ? "#ccc" : "#eee");
                        if (mult != 1 && !minor_labels)
                                continue;
                        char label[32];
                        bench_svg_ns_str(label, sizeof(label), ns);
                        bench_svg_text(f, BENCH_SVG_PLOT_X0 - 8, y + 4,
                                       "font-size=\"12\" text-anchor=\"end\"", "%s", label);
                }
        }
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#333\"/>\n",
                BENCH_SVG_PLOT_X0, m->bottom, BENCH_SVG_PLOT_X1, m->bottom);
        bench_svg_text(f, (BENCH_SVG_PLOT_X0 + BENCH_SVG_PLOT_X1) / 2.0, m->bottom + 40,
                       "font-size=\"13\" text-anchor=\"middle\"",
                       "percentile (log scale of nines)");
        bench_svg_vtext(f, 30, (m->top + m->bottom) / 2, "latency (log scale)");
}

/* One result's percentile curve: solid up to the deepest percentile its
 * sample count supports (at most p99.999), dotted from there to its max. */
static void bench_svg_curve(const struct bench_svg *s, const struct bench_svg_lat_map *m,
                            const struct bench_result *r, bool dashed)
{
        const char *color = bench_svg_color(s, r->system);
        double per_run = (double)r->lat.samples / (r->runs ? r->runs : 1);
        double cap = per_run >= 1 ? log10(per_run) : 0;
        double x = bench_svg_nines_x(0), y = bench_svg_ns_y(m, (double)r->lat.curve_ns[0]);

        if (cap > BENCH_SVG_NINES_MAX)
                cap = BENCH_SVG_NINES_MAX;
        fputs("<g>", s->f);
        bench_svg_tooltip(s->f, "%s %s %s %u B: p50 %llu ns, p90 %llu ns, p99 %llu ns, "
                          "p99.9 %llu ns, max %llu ns (%llu samples)",
                          r->system, r->scenario, r->case_name, r->msg_bytes,
                          (unsigned long long)r->lat.p50_ns, (unsigned long long)r->lat.p90_ns,
                          (unsigned long long)r->lat.p99_ns, (unsigned long long)r->lat.p999_ns,
                          (unsigned long long)r->lat.max_ns, (unsigned long long)r->lat.samples);
        fprintf(s->f, "\n<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2.5\"%s points=\"",
                color, dashed ? " stroke-dasharray=\"8 4\"" : "");
        for (unsigned i = 0; i < BENCH_CURVE_POINTS; i++) {
                double nines = i * BENCH_CURVE_NINES_STEP;
                if (nines > cap + 1e-9)
                        break;
                x = bench_svg_nines_x(nines);
                y = bench_svg_ns_y(m, (double)r->lat.curve_ns[i]);
                fprintf(s->f, "%.1f,%.1f ", x, y);
        }
        double max_x = bench_svg_nines_x(BENCH_SVG_NINES_END);
        double max_y = bench_svg_ns_y(m, (double)r->lat.max_ns);
        fprintf(s->f, "\"/>\n<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                      "stroke-width=\"1.5\" stroke-dasharray=\"2 4\"/>\n",
                x, y, max_x, max_y, color);
        fprintf(s->f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/></g>\n", max_x, max_y,
                color);
}

static void bench_svg_curve_legend(const struct bench_svg *s, const struct bench_result *r,
                                   double y)
{
        char p50[32], p99[32], p999[32], max[32];
        bench_svg_ns_str(p50, sizeof(p50), (double)r->lat.p50_ns);
        bench_svg_ns_str(p99, sizeof(p99), (double)r->lat.p99_ns);
        bench_svg_ns_str(p999, sizeof(p999), (double)r->lat.p999_ns);
        bench_svg_ns_str(max, sizeof(max), (double)r->lat.max_ns);
        double x = BENCH_SVG_PLOT_X0 + 12;
        /* A light backing keeps the text readable where a curve runs behind. */
        fprintf(s->f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"560\" height=\"18\" fill=\"white\" "
                      "fill-opacity=\"0.8\"/>\n", x - 4, y - 13);
        fprintf(s->f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"18\" height=\"4\" fill=\"%s\"/>\n", x,
                y - 6, bench_svg_color(s, r->system));
        bench_svg_text(s->f, x + 26, y, "font-size=\"13\"",
                       "%s %s %u B: p50 %s, p99 %s, p99.9 %s, max %s", r->system, r->case_name,
                       r->msg_bytes, p50, p99, p999, max);
}

/* The time axis spans whole decades from the fastest minimum to the
 * slowest maximum. */
static void bench_svg_lat_range(const struct bench_report *rep, const char *scenario,
                                struct bench_svg_lat_map *m)
{
        double lo = 1e300, hi = 1;
        for (unsigned i = 0; i < rep->n; i++) {
                const struct bench_result *r = &rep->results[i];
                if (strcmp(r->scenario, scenario) != 0 || !r->has_latency)
                        continue;
                double min_ns = r->lat.curve_ns[0] > 0 ? (double)r->lat.curve_ns[0] : 1;
                lo = min_ns < lo ? min_ns : lo;
                hi = (double)r->lat.max_ns > hi ? (double)r->lat.max_ns : hi;
        }
        if (lo > hi)
                lo = hi;
        m->dec_lo = floor(log10(lo));
        m->dec_hi = ceil(log10(hi));
        if (m->dec_hi <= m->dec_lo)
                m->dec_hi = m->dec_lo + 1;
}

/* Latency of one scenario: a curve per result, colour by system; a second
 * result of the same system is dashed. */
static void bench_svg_latency(const struct bench_svg *s, const char *scenario, double y0)
{
        const struct bench_report *rep = s->rep;
        struct bench_svg_lat_map m = { .top = y0 + BENCH_SVG_PLOT_TOP };
        m.bottom = m.top + BENCH_SVG_PLOT_H;
        bench_svg_lat_range(rep, scenario, &m);

        struct bench_svg_systems sys;
        bench_svg_chart_systems(rep, scenario, BENCH_SVG_LATENCY, &sys);
        bench_svg_title(s->f, y0, scenario, "latency by percentile (lower is better)");
        bench_svg_legend_row(s, &sys, y0 + 30, false);
        bench_svg_lat_axes(s->f, &m);
        unsigned drawn = 0, per_system[BENCH_SVG_SYSTEMS_MAX] = { 0 };
        for (unsigned i = 0; i < rep->n; i++) {
                const struct bench_result *r = &rep->results[i];
                if (strcmp(r->scenario, scenario) != 0 || !r->has_latency)
                        continue;
                bench_svg_curve(s, &m, r, per_system[bench_svg_system_slot(&sys, r->system)]++ > 0);
                bench_svg_curve_legend(s, r, m.top + 18 + 18.0 * drawn++);
        }
}

/* The rate fields of a scenario's results, in order of first appearance
 * (a colour each), and the largest rate. Returns the number of results. */
static unsigned bench_svg_rate_names(const struct bench_report *rep, const char *scenario,
                                     struct bench_svg_systems *names, double *y_max)
{
        unsigned results = 0;
        names->n = 0;
        *y_max = 0;
        for (unsigned i = 0; i < rep->n; i++) {
                const struct bench_result *r = &rep->results[i];
                if (!bench_svg_in(r, scenario, BENCH_SVG_RATES))
                        continue;
                results++;
                for (unsigned k = 0; k < r->fields_n; k++) {
                        const struct bench_field *fd = &r->fields[k];
                        if (fd->kind != BENCH_FIELD_RATE)
                                continue;
                        bool seen = false;
                        for (unsigned j = 0; j < names->n && !seen; j++)
                                seen = strcmp(names->name[j], fd->name) == 0;
                        if (!seen && names->n < BENCH_SVG_SYSTEMS_MAX)
                                names->name[names->n++] = fd->name;
                        *y_max = fd->f64 > *y_max ? fd->f64 : *y_max;
                }
        }
        return results;
}

/* Under a group: the case, then the result's first text field (a path). */
static void bench_svg_rates_label(FILE *f, const struct bench_result *r, double cx, double y)
{
        bench_svg_text(f, cx, y, "font-size=\"12\" text-anchor=\"middle\"", "%s", r->case_name);
        for (unsigned k = 0; k < r->fields_n; k++) {
                if (r->fields[k].kind == BENCH_FIELD_STR) {
                        bench_svg_text(f, cx, y + 15,
                                       "font-size=\"11\" text-anchor=\"middle\" fill=\"#555\"",
                                       "%s", r->fields[k].str);
                        break;
                }
        }
}

/* The rate fields of one scenario: a group of bars per result, a bar (and a
 * colour) per field. */
static void bench_svg_rates(const struct bench_svg *s, const char *scenario, double y0)
{
        const struct bench_report *rep = s->rep;
        struct bench_svg_systems names;
        double y_max;
        unsigned groups = bench_svg_rate_names(rep, scenario, &names, &y_max);
        double top = y0 + BENCH_SVG_PLOT_TOP, bottom = top + BENCH_SVG_PLOT_H;
        if (!(y_max > 0))
                y_max = 1;
        double step = bench_svg_step(y_max);
        y_max = ceil(y_max / step) * step;

        bench_svg_title(s->f, y0, scenario, "per second (higher is better)");
        bench_svg_legend_row(s, &names, y0 + 30, true);
        bench_svg_bars_axis(s->f, top, bottom, y_max, step, "per second");
        double group_w = (double)(BENCH_SVG_PLOT_X1 - BENCH_SVG_PLOT_X0) / groups;
        double bar_w = group_w * 0.7 / (names.n ? names.n : 1);
        unsigned g = 0;
        for (unsigned i = 0; i < rep->n; i++) {
                const struct bench_result *r = &rep->results[i];
                if (!bench_svg_in(r, scenario, BENCH_SVG_RATES))
                        continue;
                double gx = BENCH_SVG_PLOT_X0 + g++ * group_w;
                bench_svg_rates_label(s->f, r, gx + group_w / 2, bottom + 18);
                for (unsigned k = 0; k < r->fields_n; k++) {
                        const struct bench_field *fd = &r->fields[k];
                        if (fd->kind != BENCH_FIELD_RATE)
                                continue;
                        unsigned slot = bench_svg_system_slot(&names, fd->name);
                        double x = gx + group_w * 0.15 + slot * bar_w;
                        double h = bench_svg_bar_open(s->f, x, bar_w, bottom, y_max, fd->f64,
                                                      bench_svg_colors[slot]);
                        bench_svg_tooltip(s->f, "%s %s %s: %s %.4g (%llu errors)", r->system,
                                          r->scenario, r->case_name, fd->name, fd->f64,
                                          (unsigned long long)r->errors);
                        bench_svg_bar_close(s->f, x, bar_w, bottom, h, fd->f64);
                }
        }
}

static bool bench_svg_has(const struct bench_report *rep, const char *scenario,
                          enum bench_svg_chart chart)
{
        for (unsigned i = 0; i < rep->n; i++)
                if (bench_svg_in(&rep->results[i], scenario, chart))
                        return true;
        return false;
}

/* The distinct values of a string field, in order of first appearance. */
static unsigned bench_svg_distinct(const struct bench_report *rep, size_t field_off,
                                   const char **out, unsigned max)
{
        unsigned n = 0;
        for (unsigned i = 0; i < rep->n; i++) {
                const char *v = (const char *)&rep->results[i] + field_off;
                bool seen = false;
                for (unsigned k = 0; k < n && !seen; k++)
                        seen = strcmp(out[k], v) == 0;
                if (!seen && n < max)
                        out[n++] = v;
        }
        return n;
}

static void bench_svg_header(const struct bench_svg *s, unsigned height)
{
        const struct bench_report *rep = s->rep;
        char timed[96] = "";
        if (bench_report_timed(rep))
                snprintf(timed, sizeof(timed), ", each %.3g s after %.3g s of warm-up",
                         rep->duration_s, rep->warmup_s);
        fprintf(s->f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%u\" "
                      "viewBox=\"0 0 %d %u\" font-family=\"Helvetica, Arial, sans-serif\">\n"
                      "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
                BENCH_SVG_WIDTH, height, BENCH_SVG_WIDTH, height);
        bench_svg_text(s->f, 20, 32, "font-size=\"22\" font-weight=\"bold\"", "atomq-bench");
        bench_svg_text(s->f, 20, 56, "font-size=\"13\" fill=\"#555\"",
                       "median of %u run%s%s%s", rep->runs, rep->runs == 1 ? "" : "s", timed,
                       bench_report_errors(rep) ? "; ERRORS: these figures are not valid" : "");
}

int bench_svg_write(const struct bench_report *rep, const char *path)
{
        struct bench_svg s = { .rep = rep };
        const char *scenarios[BENCH_RESULTS_MAX];
        unsigned scenarios_n = bench_svg_distinct(rep, offsetof(struct bench_result, scenario),
                                                  scenarios, BENCH_RESULTS_MAX);
        s.systems_n = bench_svg_distinct(rep, offsetof(struct bench_result, system), s.systems,
                                         BENCH_SVG_SYSTEMS_MAX);
        unsigned charts = 0;
        for (unsigned i = 0; i < scenarios_n; i++)
                for (unsigned k = BENCH_SVG_BARS; k <= BENCH_SVG_RATES; k++)
                        charts += bench_svg_has(rep, scenarios[i], k);

        s.f = fopen(path, "w");
        if (s.f == NULL)
                return -errno;
        bench_svg_header(&s, BENCH_SVG_HEADER_H + charts * BENCH_SVG_CHART_H);
        double y = BENCH_SVG_HEADER_H;
        for (unsigned i = 0; i < scenarios_n; i++) {
                if (bench_svg_has(rep, scenarios[i], BENCH_SVG_BARS)) {
                        bench_svg_bars(&s, scenarios[i], y);
                        y += BENCH_SVG_CHART_H;
                }
                if (bench_svg_has(rep, scenarios[i], BENCH_SVG_LATENCY)) {
                        bench_svg_latency(&s, scenarios[i], y);
                        y += BENCH_SVG_CHART_H;
                }
                if (bench_svg_has(rep, scenarios[i], BENCH_SVG_RATES)) {
                        bench_svg_rates(&s, scenarios[i], y);
                        y += BENCH_SVG_CHART_H;
                }
        }
        fputs("</svg>\n", s.f);
        int rc = ferror(s.f) ? -EIO : 0;
        if (fclose(s.f) != 0 && rc == 0)
                rc = -errno;
        return rc;
}
