/* dp_idle.h - what a worker does with a pass that found no work.
 *
 * The runner of every worker is
 *
 *      while (running)
 *              dp_idle_run(&idle, dp_worker_do_work(w));
 *
 * and the idle strategy decides how an idle pass is spent:
 *
 *  - adaptive (the default, --busy-poll=auto): spin `spins` passes with a
 *    pause hint, then sched_yield() `yields` passes, then sleep on the
 *    worker's wake word for sleep_min_ns, doubling each idle pass up to
 *    sleep_max_ns. A producer that enqueues work for the worker notifies the
 *    word (shm_wake_notify), so a sleeping worker wakes at once; the timeout
 *    only bounds how late a timer can fire. Idle workers so cost almost no
 *    CPU, and the appliance stays usable on a small machine or in CI.
 *  - always (--busy-poll=always): never sleeps nor yields; the runner pins
 *    the thread to one CPU (dp_idle_pin) and spins with the pause hint. For
 *    hosts where each worker has a core of its own.
 *
 * Sleeping follows the eventcount of shm_wake.h: announce (prepare), ask
 * the `ready` callback whether work arrived meanwhile, and only then wait.
 * Everything here runs on the worker's thread; the counters it bumps are
 * the worker's own (one writer).
 */
#ifndef ATOMQ_DP_IDLE_H
#define ATOMQ_DP_IDLE_H

#include <stdbool.h>
#include <stdint.h>

#include "dataplane/dp_counter.h"
#include "shm/shm_wake.h"

enum dp_idle_kind {
        DP_IDLE_ADAPTIVE = 0, /* spin, yield, then bounded sleeps (default) */
        DP_IDLE_ALWAYS = 1,   /* busy-poll, pinned, never sleeps */
        DP_IDLE_KIND_COUNT_,
};

/* A few hundred pauses ride out the gap between two bursts (~10-40 us)
 * without a syscall; a handful of yields give a sibling thread the core;
 * then sleeps start at 50 us and double to 1 ms, the timer wheel's tick, so
 * sleeping never delays a timer by more than one tick. */
#define DP_IDLE_SPINS_DEFAULT 256u
#define DP_IDLE_YIELDS_DEFAULT 8u
#define DP_IDLE_SLEEP_MIN_NS_DEFAULT 50000ull
#define DP_IDLE_SLEEP_MAX_NS_DEFAULT 1000000ull
/* Bounds on what a configuration may ask for: a sleep over 100 ms would make
 * timers visibly late, a spin phase over 1 M passes is a busy-poll by
 * another name. */
#define DP_IDLE_SPINS_MAX (1u << 20)
#define DP_IDLE_YIELDS_MAX 1024u
#define DP_IDLE_SLEEP_MAX_NS_MAX 100000000ull

struct dp_idle_config {
        uint32_t kind;          /* enum dp_idle_kind */
        uint32_t spins;         /* adaptive: idle passes spent spinning */
        uint32_t yields;        /* adaptive: then passes spent yielding */
        uint32_t reserved;
        uint64_t sleep_min_ns;  /* adaptive: first sleep */
        uint64_t sleep_max_ns;  /* adaptive: longest sleep */
};

/* The strategy's counters, part of the worker's counters in the arena. */
struct dp_idle_counters {
        dp_counter passes;     /* loop passes that found no work (any strategy) */
        dp_counter yields;     /* idle passes given away with sched_yield */
        dp_counter sleeps;     /* idle passes that slept on the wake word */
        dp_counter wakeups;    /* sleeps ended by a notify, not the timeout */
        dp_counter pin_errors; /* always: pinning the thread failed */
};

/* Asked after announcing a sleep: true when work arrived (or the worker must
 * stop), so the sleep is called off. */
typedef bool dp_idle_ready_fn(void *arg);

/* Sleeps until one of n prepared words moves from seq[i], other input of
 * the waiter's own arrives (a socket), or timeout_ns passes; does not
 * withdraw the announcements (dp_idle does). 0: woken, -ETIMEDOUT. */
typedef int dp_idle_wait_fn(void *arg, struct shm_wake *const *w, const uint32_t *seq,
                            uint32_t n, int64_t timeout_ns);

struct dp_idle {
        struct dp_idle_config cfg;
        struct shm_wake *wake;        /* the word producers notify */
        struct shm_wake *const *extra;/* more words to sleep on (agents' doorbells) */
        uint32_t extra_count;         /* < SHM_WAKE_MANY_MAX */
        dp_idle_ready_fn *ready;
        void *ready_arg;
        dp_idle_wait_fn *waiter;      /* NULL: futex waits (shm_wake_wait_many) */
        void *waiter_arg;
        struct dp_idle_counters *ctr;
        uint32_t idle_passes;         /* idle passes since the last work */
        uint64_t sleep_ns;            /* the next sleep */
        uint64_t sleep_cap_ns;        /* 0, or the longest the next sleep may be: the
                                       * owner expects news nothing will wake it for */
};

/* Fills cfg with the adaptive defaults above. */
void dp_idle_config_default(struct dp_idle_config *cfg);

/* "auto" or "adaptive" -> DP_IDLE_ADAPTIVE, "always" -> DP_IDLE_ALWAYS
 * (the values of --busy-poll); -EINVAL for anything else. */
int dp_idle_kind_parse(const char *name);

/* Checks cfg. -EINVAL: unknown kind, spins or yields above their maximum,
 * sleep_min_ns 0 or above sleep_max_ns, sleep_max_ns above
 * DP_IDLE_SLEEP_MAX_NS_MAX. */
int dp_idle_config_check(const struct dp_idle_config *cfg);

/* Prepares a strategy. wake, ready and ctr must outlive it. Errors as
 * dp_idle_config_check. */
int dp_idle_init(struct dp_idle *s, const struct dp_idle_config *cfg, struct shm_wake *wake,
                 dp_idle_ready_fn *ready, void *ready_arg, struct dp_idle_counters *ctr);

/* Sleeps through fn (a network backend that must wake on its sockets as
 * well as on the words) instead of futex waits. */
void dp_idle_set_waiter(struct dp_idle *s, dp_idle_wait_fn *fn, void *arg);

/* Spends one pass that returned `work` (>0: work done, 0: idle, <0: an
 * error, which is spent as an idle pass so a persistent error cannot spin
 * a core). */
void dp_idle_run(struct dp_idle *s, int work);

/* Pins the calling thread to CPU `worker % online CPUs`. Returns the CPU,
 * or -errno from sysconf or pthread_setaffinity_np. */
int dp_idle_pin(uint32_t worker);

#endif /* ATOMQ_DP_IDLE_H */
