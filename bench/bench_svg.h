/* bench_svg.h - a report as an SVG picture a browser opens.
 *
 * For each scenario: a bar chart of throughput (msgs/s per message size and
 * burst) and a chart of latency by percentile on a "nines" axis (50, 90, 99,
 * 99.9, ... then max) with a logarithmic time axis. Results from different
 * systems ("atomq", "nats-server") are drawn side by side in one colour per
 * system. Results with fields of their own (churn, route) get a bar chart of
 * their rate fields instead, a group per result and a colour per field.
 * Hovering a bar or a curve shows its exact figures.
 *
 *      atomq-bench ring --svg /tmp/ring.svg && xdg-open /tmp/ring.svg
 *      atomq-bench churn --entities 1000000,10000000 --svg /tmp/churn.svg
 */
#ifndef ATOMQ_BENCH_SVG_H
#define ATOMQ_BENCH_SVG_H

#include "bench/bench_report.h"

/* Writes the picture to path. Returns 0 or -errno from creating or writing
 * the file. */
int bench_svg_write(const struct bench_report *rep, const char *path);

#endif /* ATOMQ_BENCH_SVG_H */
