/* shm_log.h - the log of the control plane and tools.
 *
 * Not for the hot path: workers bump counters instead (../shared/STYLE.md).
 * Lines go to stderr as "<time> atomq[<pid>] <level>: <text>" unless a sink
 * is installed (tests capture them that way).
 */
#ifndef ATOMQ_SHM_LOG_H
#define ATOMQ_SHM_LOG_H

enum shm_log_level { SHM_LOG_ERR, SHM_LOG_WARN, SHM_LOG_INFO, SHM_LOG_DEBUG };

typedef void shm_log_sink_fn(enum shm_log_level level, const char *line, void *arg);

/* Installs a sink (NULL restores stderr). */
void shm_log_set_sink(shm_log_sink_fn *fn, void *arg);

/* Lines above this level are dropped (default SHM_LOG_INFO). */
void shm_log_set_level(enum shm_log_level level);

__attribute__((format(printf, 2, 3)))
void shm_log(enum shm_log_level level, const char *fmt, ...);

#endif /* ATOMQ_SHM_LOG_H */
