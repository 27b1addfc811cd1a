/* bench_progress.c - the rewritten progress line on stderr. */
#include "bench/bench_progress.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "shm/shm_clock.h"

void bench_progress_init(struct bench_progress *p, bool allowed)
{
        p->allowed = allowed;
        p->active = false;
        p->drawn = false;
        p->start_ns = shm_clock_ns();
        p->total_s = 0;
        p->label[0] = '\0';
}

void bench_progress_start(struct bench_progress *p, double total_s)
{
        p->active = p->allowed && total_s > BENCH_PROGRESS_MIN_S;
        p->start_ns = shm_clock_ns();
        p->total_s = total_s;
}

void bench_progress_label(struct bench_progress *p, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->label, sizeof(p->label), fmt, ap);
        va_end(ap);
}

static void bench_progress_draw(struct bench_progress *p)
{
        double elapsed_s = (double)(shm_clock_ns() - p->start_ns) / 1e9;
        double left_s = p->total_s - elapsed_s;
        double pct = 100.0 * elapsed_s / p->total_s;

        if (left_s < 0)
                left_s = 0;
        if (pct > 99)
                pct = 99; /* the estimate is a floor: never claim done early */
        /* \033[K clears what a longer previous line left behind. */
        fprintf(stderr, "\r%s  %3.0f%%, ~%.0f s left\033[K", p->label, pct, left_s);
        fflush(stderr);
        p->drawn = true;
}

int bench_progress_join(struct bench_progress *p, pthread_t t)
{
        if (!p->active)
                return -pthread_join(t, NULL);
        for (;;) {
                bench_progress_draw(p);
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until); /* timedjoin's clock */
                until.tv_nsec += BENCH_PROGRESS_REDRAW_MS * 1000000L;
                if (until.tv_nsec >= 1000000000L) {
                        until.tv_sec++;
                        until.tv_nsec -= 1000000000L;
                }
                int rc = pthread_timedjoin_np(t, NULL, &until);
                if (rc != ETIMEDOUT)
                        return -rc;
        }
}

void bench_progress_end(struct bench_progress *p)
{
        if (p->drawn)
                fputs("\r\033[K", stderr);
        p->drawn = false;
        p->active = false;
}
