/* bench_progress.h - the progress line atomq-bench rewrites on stderr.
 *
 * Shown only when the whole scenario is expected to take more than
 * BENCH_PROGRESS_MIN_S, stderr is a terminal and --quiet was not given, so
 * logs and pipes never see carriage returns. The main thread redraws it while
 * it waits for the benchmark threads; it sleeps in between, so on a two-CPU
 * machine it steals a few microseconds from a worker every redraw.
 *
 *      atomq-bench ring            (progress shown)
 *      atomq-bench ring 2>log      (not shown)
 */
#ifndef ATOMQ_BENCH_PROGRESS_H
#define ATOMQ_BENCH_PROGRESS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define BENCH_PROGRESS_MIN_S 2.0
#define BENCH_PROGRESS_REDRAW_MS 250

struct bench_progress {
        bool allowed;  /* stderr is a tty and not --quiet */
        bool active;   /* allowed and the scenario runs long enough */
        bool drawn;    /* a line is on screen and must be cleared */
        uint64_t start_ns;
        double total_s;
        char label[96];
};

void bench_progress_init(struct bench_progress *p, bool allowed);

/* Starts the clock for a scenario expected to take total_s seconds. */
void bench_progress_start(struct bench_progress *p, double total_s);

/* Names the case now running (printf format). */
__attribute__((format(printf, 2, 3)))
void bench_progress_label(struct bench_progress *p, const char *fmt, ...);

/* Joins t, redrawing the line while it runs. Returns pthread_join's 0 or
 * -errno. */
int bench_progress_join(struct bench_progress *p, pthread_t t);

/* Clears the line so results print on a clean terminal. */
void bench_progress_end(struct bench_progress *p);

#endif /* ATOMQ_BENCH_PROGRESS_H */
