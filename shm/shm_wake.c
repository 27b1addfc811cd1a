/* shm_wake.c - futex slow paths of the eventcount in shm_wake.h. */
#include "shm/shm_wake.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shm/shm_clock.h"

static long shm_futex(_Atomic uint32_t *word, int op, uint32_t val,
                      const struct timespec *ts)
{
        return syscall(SYS_futex, (uint32_t *)word, op, val, ts, NULL, 0);
}

void shm_wake_notify_slow(struct shm_wake *w)
{
        atomic_fetch_add_explicit(&w->seq, 1, memory_order_seq_cst);
        shm_futex(&w->seq, FUTEX_WAKE, INT_MAX, NULL);
}

int shm_wake_wait(struct shm_wake *w, uint32_t seq, int64_t timeout_ns)
{
        struct timespec ts, *tsp = NULL;
        int rc = 0;

        if (timeout_ns >= 0) {
                ts.tv_sec = timeout_ns / 1000000000;
                ts.tv_nsec = timeout_ns % 1000000000;
                tsp = &ts;
        }
        /* FUTEX_WAIT re-checks seq in the kernel, so a notify that slipped in
         * after prepare() makes it return at once with EAGAIN. */
        if (shm_futex(&w->seq, FUTEX_WAIT, seq, tsp) < 0) {
                if (errno == ETIMEDOUT)
                        rc = -ETIMEDOUT;
                else if (errno == EINTR)
                        rc = -EINTR;
        }
        atomic_fetch_sub_explicit(&w->sleepers, 1, memory_order_relaxed);
        return rc;
}

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif
/* The kernel's struct futex_waitv (linux/futex.h of 5.16), spelled out so
 * that older headers build. */
struct shm_futex_waitv {
        uint64_t val;
        uint64_t uaddr;
        uint32_t flags;
        uint32_t reserved;
};
#define SHM_FUTEX2_SIZE_U32 0x02u

int shm_wake_wait_many(struct shm_wake *const *w, const uint32_t *seq, uint32_t n,
                       int64_t timeout_ns)
{
        struct shm_futex_waitv v[SHM_WAKE_MANY_MAX];
        struct timespec abs, *tsp = NULL;
        int rc = 0;
        if (n == 0 || n > SHM_WAKE_MANY_MAX)
                return -EINVAL;
        if (n == 1)
                return shm_wake_wait(w[0], seq[0], timeout_ns);
        for (uint32_t i = 0; i < n; i++)
                v[i] = (struct shm_futex_waitv){ .val = seq[i], .uaddr = (uintptr_t)&w[i]->seq,
                                                 .flags = SHM_FUTEX2_SIZE_U32 };
        if (timeout_ns >= 0) {
                /* futex_waitv takes an absolute CLOCK_MONOTONIC deadline. */
                clock_gettime(CLOCK_MONOTONIC, &abs);
                int64_t ns = abs.tv_nsec + timeout_ns % 1000000000;
                abs.tv_sec += timeout_ns / 1000000000 + ns / 1000000000;
                abs.tv_nsec = ns % 1000000000;
                tsp = &abs;
        }
        if (syscall(SYS_futex_waitv, v, n, 0, tsp, CLOCK_MONOTONIC) < 0) {
                if (errno == ENOSYS) {
                        for (uint32_t i = 1; i < n; i++)
                                shm_wake_cancel(w[i]);
                        return shm_wake_wait(w[0], seq[0], timeout_ns);
                }
                if (errno == ETIMEDOUT)
                        rc = -ETIMEDOUT;
                else if (errno == EINTR)
                        rc = -EINTR;
        }
        for (uint32_t i = 0; i < n; i++)
                atomic_fetch_sub_explicit(&w[i]->sleepers, 1, memory_order_relaxed);
        return rc;
}

int shm_wake_until(struct shm_wake *w, int64_t timeout_ns, int (*try_fn)(void *arg), void *arg)
{
        uint64_t deadline_ns = timeout_ns < 0 ? UINT64_MAX : shm_clock_ns() + (uint64_t)timeout_ns;

        for (;;) {
                int got = try_fn(arg);
                if (got != 0)
                        return got;
                /* Announce, re-check, sleep (see the top of shm_wake.h). */
                uint32_t seq = shm_wake_prepare(w);
                got = try_fn(arg);
                if (got != 0) {
                        shm_wake_cancel(w);
                        return got;
                }
                int64_t left_ns = -1;
                if (deadline_ns != UINT64_MAX) {
                        uint64_t now_ns = shm_clock_ns();
                        if (now_ns >= deadline_ns) {
                                shm_wake_cancel(w);
                                return -ETIMEDOUT;
                        }
                        left_ns = (int64_t)(deadline_ns - now_ns);
                }
                int rc = shm_wake_wait(w, seq, left_ns);
                if (rc == -EINTR)
                        return rc;
        }
}
