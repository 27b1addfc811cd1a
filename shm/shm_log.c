/* shm_log.c - formatting and sinks for shm_log. */
#include "shm/shm_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static shm_log_sink_fn *log_sink;
static void *log_sink_arg;
static enum shm_log_level log_level = SHM_LOG_INFO;

void shm_log_set_sink(shm_log_sink_fn *fn, void *arg)
{
        log_sink = fn;
        log_sink_arg = arg;
}

void shm_log_set_level(enum shm_log_level level)
{
        log_level = level;
}

void shm_log(enum shm_log_level level, const char *fmt, ...)
{
        static const char *const names[] = { "error", "warning", "info", "debug" };
        char text[1024];
        va_list ap;

        if (level > log_level)
                return;
        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        if (log_sink != NULL) {
                log_sink(level, text, log_sink_arg);
                return;
        }
        char stamp[32];
        time_t now = time(NULL);
        struct tm tm;
        strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", gmtime_r(&now, &tm));
        fprintf(stderr, "%sZ atomq[%d] %s: %s\n", stamp, (int)getpid(), names[level], text);
}
