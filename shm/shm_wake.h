/* shm_wake.h - sleep and wake-up on a futex word in shared memory.
 *
 * A consumer that found its ring empty may sleep; the producer pays for a
 * wake-up (one syscall) only when a consumer said it is sleeping, so the fast
 * path of both sides stays syscall-free. The protocol is the classic
 * eventcount:
 *
 *   consumer                               producer
 *   seq = shm_wake_prepare(w)              publish the item (release store)
 *   if (ring not empty)                    shm_wake_notify(w)
 *           shm_wake_cancel(w)
 *   else
 *           shm_wake_wait(w, seq, timeout)
 *
 * prepare() raises `sleepers` with a sequentially consistent RMW before the
 * consumer re-reads the ring; notify() issues a full fence after the
 * producer's publish and before it reads `sleepers`. Of the two, at least one
 * sees the other (store-fence-load on both sides), so a wake-up is never lost.
 * Futex words are process-shared (no FUTEX_PRIVATE_FLAG) because producers
 * and consumers live in different processes.
 */
#ifndef ATOMQ_SHM_WAKE_H
#define ATOMQ_SHM_WAKE_H

#include <stdatomic.h>
#include <stdint.h>

struct shm_wake {
        _Atomic uint32_t seq;      /* bumped by each notify that saw a sleeper */
        _Atomic uint32_t sleepers; /* consumers between prepare and wait/cancel */
};

static inline void shm_wake_init(struct shm_wake *w)
{
        atomic_store_explicit(&w->seq, 0, memory_order_relaxed);
        atomic_store_explicit(&w->sleepers, 0, memory_order_relaxed);
}

/* Announces a sleeper; returns the sequence to hand to shm_wake_wait(). */
static inline uint32_t shm_wake_prepare(struct shm_wake *w)
{
        /* seq_cst RMW then a full fence: pairs with the fence in
         * shm_wake_notify, so the caller's re-check of the ring (an acquire
         * load) cannot be ordered before the announcement. The fence costs
         * nothing that matters: this is the path to sleep. */
        atomic_fetch_add_explicit(&w->sleepers, 1, memory_order_seq_cst);
        atomic_thread_fence(memory_order_seq_cst);
        return atomic_load_explicit(&w->seq, memory_order_seq_cst);
}

/* Withdraws the announcement when the re-check found work. */
static inline void shm_wake_cancel(struct shm_wake *w)
{
        atomic_fetch_sub_explicit(&w->sleepers, 1, memory_order_relaxed);
}

/* Slow path of shm_wake_notify: bumps seq and wakes every waiter. */
void shm_wake_notify_slow(struct shm_wake *w);

/* Called by a producer after it published; a syscall only with sleepers. */
static inline void shm_wake_notify(struct shm_wake *w)
{
        /* Pairs with the seq_cst RMW in shm_wake_prepare. */
        atomic_thread_fence(memory_order_seq_cst);
        if (atomic_load_explicit(&w->sleepers, memory_order_relaxed) != 0)
                shm_wake_notify_slow(w);
}

/* Sleeps until a notify bumps seq past `seq` or timeout_ns passes
 * (timeout_ns < 0: no timeout), then withdraws the announcement.
 * Returns 0 when woken or when seq had already moved on, -ETIMEDOUT, or
 * -EINTR when a signal arrived. */
int shm_wake_wait(struct shm_wake *w, uint32_t seq, int64_t timeout_ns);

/* Most words shm_wake_wait_many watches (futex_waitv's limit). */
#define SHM_WAKE_MANY_MAX 128u

/* As shm_wake_wait, on n words at once (each announced with
 * shm_wake_prepare, seq[i] its sequence): returns when a notify on any of
 * them arrives or timeout_ns passes (< 0: none), and withdraws all n
 * announcements. Uses futex_waitv (Linux 5.16); where it is missing, it
 * waits on w[0] alone, so a notify on another word is seen at the timeout.
 * Returns 0, -ETIMEDOUT, -EINTR, or -EINVAL for n 0 or above the max. */
int shm_wake_wait_many(struct shm_wake *const *w, const uint32_t *seq, uint32_t n,
                       int64_t timeout_ns);

/* A consumer's "try, else sleep" loop around the eventcount: calls
 * try_fn(arg) (which returns > 0 or < 0 to finish, 0 for nothing yet),
 * and between tries announces itself, re-checks and sleeps on w, until
 * try_fn finishes or timeout_ns passes (< 0: no timeout). Returns what
 * try_fn returned, -ETIMEDOUT or -EINTR. Every ring's blocking read is
 * this loop with its own try_fn. */
int shm_wake_until(struct shm_wake *w, int64_t timeout_ns, int (*try_fn)(void *arg), void *arg);

#endif /* ATOMQ_SHM_WAKE_H */
