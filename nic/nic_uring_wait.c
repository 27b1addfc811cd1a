/* nic_uring_wait.c - the idle sleep of the io_uring backend
 * (nic_uring_wait in nic_uring.h): a worker with nothing to do sleeps on
 * its ring until a completion arrives, one of its shm_wake words moves, or
 * its timeout passes. The words are watched by an IORING_OP_FUTEX_WAITV
 * that stays armed across sleeps on the same words and values; where the
 * kernel has no such op, a sleep lasts at most 1 ms so that a notify is
 * still seen.
 */
#include "nic/nic_uring_pvt.h"

#include <errno.h>

#include "shm/shm_clock.h"
#include "shm/shm_log.h"

/* The kernel's IORING_OP_FUTEX_WAITV (Linux 6.7; include/uapi/linux/
 * io_uring.h). Debian 12's headers stop at IORING_OP_SENDMSG_ZC, so the
 * number is spelled out and anchored to one the headers do have. An older
 * kernel fails it with -EINVAL in its completion. */
#define NIC_OP_FUTEX_WAITV 53u
_Static_assert(IORING_OP_SENDMSG_ZC == 48, "io_uring opcode numbering");

/* 32-bit words, and no FUTEX2_PRIVATE: shm_wake words are process-shared
 * (shm_wake_notify_slow wakes without FUTEX_PRIVATE_FLAG). */
#define NIC_FUTEX2_SIZE_U32 0x02u
/* Without io_uring futex waits, a sleep is cut to this so a notify on a
 * word is seen within it. */
#define NIC_WAIT_FALLBACK_NS 1000000ll

void nic_on_futex(struct nic_uring *n, const struct nic_cqe *e)
{
        if (e->user_data != n->futex_ud)
                return;                         /* an arming since cancelled */
        n->futex_ud = 0;
        if (e->res != -EINVAL && e->res != -EOPNOTSUPP)
                return;
        /* Kernels before 6.7 do not know the opcode (-EINVAL); kernels
         * without CONFIG_FUTEX refuse it (-EOPNOTSUPP). */
        if (!n->futex_unsupported)
                shm_log(SHM_LOG_WARN, "nic_uring: io_uring futex waits unsupported; "
                                      "idle sleeps are bounded to 1 ms");
        n->futex_unsupported = true;
}

/* Cancels the armed futex waitv; its completion (-ECANCELED) is ignored. */
static void nic_futex_disarm(struct nic_uring *n)
{
        if (n->futex_ud == 0)
                return;
        struct io_uring_sqe *sqe = nic_sqe(n);
        if (sqe != NULL) {
                io_uring_prep_cancel64(sqe, n->futex_ud, 0);
                io_uring_sqe_set_data64(sqe, nic_ud(NIC_UD_CANCEL, 0));
        }
        /* Without an entry the arming stays until a wake; its completion is
         * still told apart by user_data. */
        n->futex_ud = 0;
}

/* Arms a futex waitv on words[i]->seq == seqs[i], unless the one armed
 * already waits on exactly those words and values. Keeping it is exact:
 * the kernel compared each word with its value when it armed, and any
 * later change of a word comes from shm_wake_notify_slow, which bumps seq
 * and then wakes every waiter on it, ours included; so either nothing has
 * moved since (the armed wait is the one we would arm now), or a completion
 * is on its way and ends the coming sleep. A word that moved before the
 * caller read seqs[i] gives a different value, and a fresh arming. */
static int nic_futex_arm(struct nic_uring *n, struct shm_wake *const *words,
                         const uint32_t *seqs, uint32_t nwords)
{
        bool same = n->futex_ud != 0 && n->futex_n == nwords;
        for (uint32_t i = 0; same && i < nwords; i++)
                same = n->waitv[i].uaddr == (uintptr_t)&words[i]->seq &&
                       n->waitv[i].val == seqs[i];
        if (same)
                return 0;
        nic_futex_disarm(n);
        for (uint32_t i = 0; i < nwords; i++)
                n->waitv[i] = (struct nic_futex_waitv){ .val = seqs[i],
                                                        .uaddr = (uintptr_t)&words[i]->seq,
                                                        .flags = NIC_FUTEX2_SIZE_U32 };
        struct io_uring_sqe *sqe = nic_sqe(n);
        if (sqe == NULL)
                return -EBUSY;
        /* fd 0, off 0, op flags 0 as io_futexv_prep requires; the kernel
         * copies the array when it takes the entry (at the submit below). */
        io_uring_prep_rw((int)NIC_OP_FUTEX_WAITV, sqe, 0, n->waitv, nwords, 0);
        n->futex_ud = nic_ud(NIC_UD_FUTEX, ++n->futex_seq);
        n->futex_n = nwords;
        io_uring_sqe_set_data64(sqe, n->futex_ud);
        return 0;
}

/* Takes the completions at the head of the CQ that mean nothing to the
 * caller (results of cancels, futex armings since replaced); true when one
 * that does is left. Without this, changing the watched words would end
 * the very sleep that changed them. */
static bool nic_cq_has_news(struct nic_uring *n)
{
        struct io_uring_cqe *cqe;
        unsigned head, skip = 0;
        bool news = false;
        io_uring_for_each_cqe(&n->ring, head, cqe) {
                uint64_t kind = cqe->user_data >> 32;
                if (kind != NIC_UD_CANCEL &&
                    (kind != NIC_UD_FUTEX || cqe->user_data == n->futex_ud)) {
                        news = true;
                        break;
                }
                skip++;
        }
        io_uring_cq_advance(&n->ring, skip);
        return news;
}

/* Sleeps on the ring until news or deadline_ns (UINT64_MAX: none). Each
 * round that does not time out took a completion, and the ones skipped
 * are at most the two of one re-arming: the bound is for spurious wakes. */
static int nic_ring_sleep(struct nic_uring *n, uint64_t deadline_ns)
{
        for (int round = 0; round < 8; round++) {
                if (nic_cq_has_news(n))
                        return 0;
                struct __kernel_timespec ts = { 0 };
                if (deadline_ns != UINT64_MAX) {
                        uint64_t now_ns = shm_clock_ns();
                        uint64_t left_ns = deadline_ns > now_ns ? deadline_ns - now_ns : 0;
                        ts.tv_sec = (long long)(left_ns / 1000000000u);
                        ts.tv_nsec = (long long)(left_ns % 1000000000u);
                }
                struct io_uring_cqe *cqe = NULL;
                if (io_uring_sq_ready(&n->ring) != 0)
                        n->stats.submits++;
                int rc = io_uring_submit_and_wait_timeout(
                        &n->ring, &cqe, 1, deadline_ns == UINT64_MAX ? NULL : &ts, NULL);
                if (rc == -ETIME)
                        return nic_cq_has_news(n) ? 0 : -ETIMEDOUT;
                if (rc < 0)
                        return rc;
        }
        return 0;
}

int nic_uring_wait(struct nic_uring *n, struct shm_wake *const *words, const uint32_t *seqs,
                   uint32_t nwords, int64_t timeout_ns)
{
        if (nwords > NIC_WAIT_WORDS_MAX || (nwords != 0 && (words == NULL || seqs == NULL)))
                return -EINVAL;
        int rc = nic_ring_enable(n);
        if (rc < 0)
                return rc;
        if (nic_cq_has_news(n))
                return 0;
        int64_t sleep_ns = timeout_ns;
        bool bounded = false;
        if (nwords == 0)
                nic_futex_disarm(n);    /* it would wake us for words no longer watched */
        else if (n->futex_unsupported || nic_futex_arm(n, words, seqs, nwords) < 0)
                bounded = true;
        if (bounded && (sleep_ns < 0 || sleep_ns > NIC_WAIT_FALLBACK_NS))
                sleep_ns = NIC_WAIT_FALLBACK_NS;
        rc = nic_ring_sleep(n, sleep_ns < 0 ? UINT64_MAX : shm_clock_ns() + (uint64_t)sleep_ns);
        /* A sleep cut short for want of futex waits is not the caller's
         * timeout: 0, and the caller re-checks its words. */
        if (rc == -ETIMEDOUT && sleep_ns != timeout_ns)
                return 0;
        return rc;
}
