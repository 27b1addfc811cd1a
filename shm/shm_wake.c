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
