/* shm_clock.h - the monotonic clock every module reads. */
#ifndef ATOMQ_SHM_CLOCK_H
#define ATOMQ_SHM_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in nanoseconds; served by the vDSO, no syscall. */
static inline uint64_t shm_clock_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CLOCK_REALTIME in nanoseconds, for timestamps people read. */
static inline uint64_t shm_clock_realtime_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif /* ATOMQ_SHM_CLOCK_H */
