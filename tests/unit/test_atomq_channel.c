/* test_atomq_channel.c - direct channels (shm/atomq_channel.c) and
 * atomq_strerror (shm/atomq_strerror.c): two processes over one memfd,
 * full and oversized sends, the peer leaving, blocking receive, attach
 * refusing what is not a channel, and zero-copy borrow/release.
 *
 *      build/tests/test_atomq_channel --verbose
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "atomq/atomq.h"

#define PAIR_MSGS 100000u
#define SMALL_RING 1024u

static void pair(struct atomq_channel *a, struct atomq_channel *b, uint32_t ring_bytes)
{
        cr_assert_eq(atomq_channel_create(a, ring_bytes), 0);
        int fd = atomq_channel_fd(a);
        cr_assert_geq(fd, 0);
        cr_assert_eq(atomq_channel_attach(b, fd), 0);
}

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Message i: its sequence number then i % 57 bytes of a pattern, so lengths
 * vary and records wrap at different offsets. */
static uint32_t msg_fill(uint8_t *buf, uint64_t i)
{
        memcpy(buf, &i, sizeof(i));
        uint32_t extra = (uint32_t)(i % 57);
        for (uint32_t k = 0; k < extra; k++)
                buf[8 + k] = (uint8_t)(i + k);
        return 8 + extra;
}

static int msg_check(const struct atomq_msg *m, uint64_t want)
{
        uint8_t buf[64];
        uint32_t len = msg_fill(buf, want);
        return m->len == len && memcmp(m->data, buf, len) == 0 ? 0 : -1;
}

/* Sends PAIR_MSGS and receives PAIR_MSGS in one non-blocking loop; returns
 * the number of bad messages, or -1 on an unexpected error or a stall. */
static int exchange(struct atomq_channel *ch)
{
        uint64_t sent = 0, got = 0;
        int bad = 0;
        uint64_t give_up_ns = now_ns() + 10000000000ull;
        uint8_t buf[64];
        while (sent < PAIR_MSGS || got < PAIR_MSGS) {
                if (sent < PAIR_MSGS) {
                        int rc = atomq_channel_send(ch, buf, msg_fill(buf, sent));
                        if (rc == 0)
                                sent++;
                        else if (rc != -EAGAIN)
                                return -1;
                }
                struct atomq_msg m;
                int rc = atomq_channel_recv(ch, &m);
                if (rc == 1) {
                        bad += msg_check(&m, got) != 0;
                        got++;
                        if (atomq_channel_release(ch) != 0)
                                return -1;
                } else if (rc != 0) {
                        return -1;
                }
                if ((sent + got) % 4096 == 0 && now_ns() > give_up_ns)
                        return -1;
        }
        return bad;
}

Test(atomq_channel, two_processes_exchange_100k_in_order_both_ways)
{
        struct atomq_channel a;
        cr_assert_eq(atomq_channel_create(&a, SMALL_RING * 4), 0);
        int fd = atomq_channel_fd(&a);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                /* The child is end 1, attached through the inherited fd. */
                struct atomq_channel b;
                if (atomq_channel_attach(&b, fd) != 0)
                        _exit(3);
                int bad = exchange(&b);
                atomq_channel_close(&b);
                _exit(bad == 0 ? 0 : bad < 0 ? 2 : 1);
        }
        int bad = exchange(&a);
        int status = 0;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_expect(WIFEXITED(status));
        cr_expect_eq(WEXITSTATUS(status), 0, "child: %d", WEXITSTATUS(status));
        cr_expect_eq(bad, 0);
        /* The child closed its end and we drained everything. */
        struct atomq_msg m;
        cr_expect_eq(atomq_channel_recv(&a, &m), -EPIPE);
        atomq_channel_close(&a);
}

Test(atomq_channel, full_ring_is_eagain_then_room_after_release)
{
        struct atomq_channel a, b;
        pair(&a, &b, SMALL_RING);
        uint8_t buf[32] = { 0 };
        unsigned n = 0;
        int rc;
        while ((rc = atomq_channel_send(&a, buf, sizeof(buf))) == 0)
                n++;
        cr_assert_eq(rc, -EAGAIN);
        /* 8 header + 32 payload each, and the zeroed header after the last. */
        cr_expect_eq(n, (SMALL_RING - 8) / 40);
        /* Room for one more once the wrap's padding fits too: two releases. */
        struct atomq_msg m;
        for (int i = 0; i < 2; i++) {
                cr_assert_eq(atomq_channel_recv(&b, &m), 1);
                cr_assert_eq(atomq_channel_release(&b), 0);
        }
        cr_expect_eq(atomq_channel_send(&a, buf, sizeof(buf)), 0);
        cr_expect_eq(atomq_channel_send_wait(&a, buf, sizeof(buf), 1000000), -ETIMEDOUT);
        atomq_channel_close(&b);
        atomq_channel_close(&a);
}

Test(atomq_channel, too_big_is_emsgsize)
{
        struct atomq_channel a, b;
        pair(&a, &b, SMALL_RING);
        static uint8_t buf[SMALL_RING];
        cr_expect_eq(atomq_channel_send(&a, buf, SMALL_RING / 2 - 8), 0);
        cr_expect_eq(atomq_channel_send(&b, buf, SMALL_RING / 2 - 7), -EMSGSIZE);
        cr_expect_eq(atomq_channel_send(&a, buf, UINT32_MAX), -EMSGSIZE);
        void *p;
        cr_expect_eq(atomq_channel_reserve(&a, SMALL_RING, &p), -EMSGSIZE);
        atomq_channel_close(&b);
        atomq_channel_close(&a);
}

Test(atomq_channel, peer_close_is_epipe_after_draining)
{
        struct atomq_channel a, b;
        pair(&a, &b, SMALL_RING);
        uint64_t v = 7;
        cr_assert_eq(atomq_channel_send(&a, &v, sizeof(v)), 0);
        cr_assert_eq(atomq_channel_send(&a, &v, sizeof(v)), 0);
        atomq_channel_close(&a);
        struct atomq_msg m;
        for (int i = 0; i < 2; i++) {
                cr_assert_eq(atomq_channel_recv(&b, &m), 1);
                cr_expect_eq(*(const uint64_t *)m.data, 7);
                cr_assert_eq(atomq_channel_release(&b), 0);
        }
        cr_expect_eq(atomq_channel_recv(&b, &m), -EPIPE);
        cr_expect_eq(atomq_channel_recv_wait(&b, &m, -1), -EPIPE);
        cr_expect_eq(atomq_channel_send(&b, &v, sizeof(v)), -EPIPE);
        atomq_channel_close(&b);
        /* A closed end refuses everything and closes again harmlessly. */
        cr_expect_eq(atomq_channel_send(&b, &v, sizeof(v)), -EBADF);
        cr_expect_eq(atomq_channel_recv(&b, &m), -EBADF);
        cr_expect_eq(atomq_channel_release(&b), -EBADF);
        cr_expect_eq(atomq_channel_fd(&b), -EBADF);
        atomq_channel_close(&b);
}

Test(atomq_channel, recv_wait_times_out)
{
        struct atomq_channel a, b;
        pair(&a, &b, SMALL_RING);
        struct atomq_msg m;
        uint64_t t0 = now_ns();
        cr_expect_eq(atomq_channel_recv_wait(&b, &m, 20000000), -ETIMEDOUT);
        cr_expect_geq(now_ns() - t0, 20000000u);
        atomq_channel_close(&b);
        atomq_channel_close(&a);
}

struct late_send {
        struct atomq_channel *ch;
        bool close;
};

static void *late_send_fn(void *arg)
{
        struct late_send *ls = arg;
        struct timespec ts = { 0, 30000000 };
        nanosleep(&ts, NULL);
        if (ls->close) {
                atomq_channel_close(ls->ch);
        } else {
                uint64_t v = 42;
                atomq_channel_send(ls->ch, &v, sizeof(v));
        }
        return NULL;
}

Test(atomq_channel, recv_wait_woken_by_send_from_another_thread)
{
        struct atomq_channel a, b;
        pair(&a, &b, SMALL_RING);
        struct late_send ls = { &a, false };
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, late_send_fn, &ls), 0);
        struct atomq_msg m;
        cr_expect_eq(atomq_channel_recv_wait(&b, &m, 5000000000), 1);
        cr_expect_eq(*(const uint64_t *)m.data, 42);
        pthread_join(t, NULL);
        atomq_channel_close(&b);
        atomq_channel_close(&a);
}

Test(atomq_channel, recv_wait_woken_by_close_in_another_process)
{
        struct atomq_channel a, b;
        pair(&a, &b, SMALL_RING);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                struct late_send ls = { &a, true };
                late_send_fn(&ls);
                _exit(0);
        }
        /* Our own copy of end 0 stays open; the child's close marks it. */
        struct atomq_msg m;
        uint64_t t0 = now_ns();
        cr_expect_eq(atomq_channel_recv_wait(&b, &m, 5000000000), -EPIPE);
        cr_expect_lt(now_ns() - t0, 2000000000u);
        waitpid(pid, NULL, 0);
        atomq_channel_close(&b);
        atomq_channel_close(&a);
}

Test(atomq_channel, attach_refuses_what_is_not_a_channel)
{
        struct atomq_channel c;
        cr_expect_eq(atomq_channel_attach(&c, -1), -EBADF);
        cr_expect_eq(atomq_channel_attach(&c, 1000000), -EBADF);
        int null_fd = open("/dev/null", O_RDWR);
        cr_assert_geq(null_fd, 0);
        cr_expect_eq(atomq_channel_attach(&c, null_fd), -ENODEV);
        close(null_fd);

        /* A memfd without seals could be truncated under us. */
        int fd = memfd_create("t", MFD_ALLOW_SEALING);
        cr_assert_geq(fd, 0);
        cr_assert_eq(ftruncate(fd, 16), 0);
        cr_expect_eq(atomq_channel_attach(&c, fd), -EPERM);
        /* Sealed but too small for a header. */
        cr_assert_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
        cr_expect_eq(atomq_channel_attach(&c, fd), -EPROTO);
        close(fd);

        /* Sealed, big enough, all zeros. */
        fd = memfd_create("t", MFD_ALLOW_SEALING);
        cr_assert_eq(ftruncate(fd, (off_t)atomq_channel_map_bytes(0)), 0);
        cr_assert_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
        cr_expect_eq(atomq_channel_attach(&c, fd), -EPROTO);
        close(fd);
        cr_expect_null(c.map);
}

/* Corrupts one 32-bit word at off in a fresh channel's memfd and attaches. */
static int attach_corrupted(size_t off, uint32_t v)
{
        struct atomq_channel a, b;
        cr_assert_eq(atomq_channel_create(&a, SMALL_RING), 0);
        memcpy((uint8_t *)a.map + off, &v, sizeof(v));
        int rc = atomq_channel_attach(&b, atomq_channel_fd(&a));
        if (rc == 0)
                atomq_channel_close(&b);
        atomq_channel_close(&a);
        return rc;
}

Test(atomq_channel, attach_refuses_a_corrupted_header)
{
        cr_expect_eq(attach_corrupted(0, 0xdeadbeef), -EPROTO);   /* magic */
        cr_expect_eq(attach_corrupted(4, 99), -EPROTO);           /* version */
        cr_expect_eq(attach_corrupted(8, 1000), -EPROTO);         /* not pow2 */
        cr_expect_eq(attach_corrupted(8, SMALL_RING * 2), -EPROTO); /* vs size */
        cr_expect_eq(attach_corrupted(24, 64), -EPROTO);          /* ring_off */
        /* Ring 0's header starts at 192: magic, then capacity at +8, then
         * its head at +64: impossible values are refused too. */
        cr_expect_eq(attach_corrupted(192, 1), -EPROTO);
        cr_expect_eq(attach_corrupted(192 + 8, 2 * SMALL_RING), -EPROTO);
        cr_expect_eq(attach_corrupted(192 + 64, 4 * SMALL_RING), -EPROTO);
        cr_expect_eq(attach_corrupted(192, 0x56514d41u), 0); /* unchanged magic */
}

Test(atomq_channel, second_attach_is_ebusy)
{
        struct atomq_channel a, b, c;
        pair(&a, &b, SMALL_RING);
        cr_expect_eq(atomq_channel_attach(&c, atomq_channel_fd(&a)), -EBUSY);
        cr_expect_eq(atomq_channel_fd(&b), -EBADF); /* end 1 has no fd */
        atomq_channel_close(&b);
        cr_expect_eq(atomq_channel_attach(&c, atomq_channel_fd(&a)), -EBUSY);
        atomq_channel_close(&a);
}

Test(atomq_channel, create_rejects_bad_ring_bytes)
{
        struct atomq_channel a;
        cr_expect_eq(atomq_channel_create(&a, 1000), -EINVAL);
        cr_expect_eq(atomq_channel_create(&a, 32), -EINVAL);
        cr_expect_eq(atomq_channel_create(&a, 1u << 31), -EINVAL);
        cr_expect_eq(atomq_channel_map_bytes(1000), 0);
        cr_expect_eq(atomq_channel_map_bytes(0), 2u * 65536u + 4096u);
        atomq_channel_close(&a); /* a failed create leaves a closed channel */
}

Test(atomq_channel, zero_copy_borrow_and_release)
{
        struct atomq_channel a, b;
        pair(&a, &b, SMALL_RING);
        void *p;
        cr_assert_eq(atomq_channel_reserve(&a, 16, &p), 0);
        cr_expect_eq((uintptr_t)p % 8, 0);
        memcpy(p, "zero-copy-hello", 16);
        struct atomq_msg m;
        cr_expect_eq(atomq_channel_recv(&b, &m), 0); /* not committed yet */
        cr_assert_eq(atomq_channel_commit(&a), 0);
        cr_expect_eq(atomq_channel_commit(&a), -ENOENT);
        atomq_channel_notify(&a);
        cr_expect_eq(atomq_channel_send(&a, "second", 7), 0);

        cr_assert_eq(atomq_channel_recv(&b, &m), 1);
        /* The receiver reads the sender's bytes in place: the same offset
         * in its own mapping of the memfd. */
        cr_expect_eq((const uint8_t *)m.data - (const uint8_t *)b.map,
                     (const uint8_t *)p - (const uint8_t *)a.map);
        cr_expect_eq(m.len, 16);
        cr_expect_str_eq(m.data, "zero-copy-hello");
        /* Receiving again before release borrows the same message. */
        struct atomq_msg again;
        cr_assert_eq(atomq_channel_recv(&b, &again), 1);
        cr_expect_eq(again.data, m.data);
        cr_assert_eq(atomq_channel_release(&b), 0);
        cr_expect_eq(atomq_channel_release(&b), -ENOENT);
        cr_assert_eq(atomq_channel_recv(&b, &m), 1);
        cr_expect_str_eq(m.data, "second");
        cr_assert_eq(atomq_channel_release(&b), 0);
        cr_expect_eq(atomq_channel_recv(&b, &m), 0);
        atomq_channel_close(&b);
        atomq_channel_close(&a);
}

Test(atomq_strerror, every_code_has_text)
{
        static const int codes[] = { EAGAIN, EMSGSIZE, EPIPE, ETIMEDOUT, EINTR, EPROTO,
                                     EBADF, ENODEV, EPERM, EBUSY, ENOENT, EINVAL,
                                     ENOMEM, EMFILE, ENFILE, EUSERS, EDQUOT, ECONNRESET,
                                     ECONNREFUSED, EXDEV, ENOBUFS, ESTALE, EEXIST,
                                     EOPNOTSUPP, ERANGE };
        for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
                const char *s = atomq_strerror(-codes[i]);
                cr_assert_not_null(s);
                cr_expect_gt(strlen(s), 3, "code %d", codes[i]);
                cr_expect_str_eq(s, atomq_strerror(codes[i]));
        }
        cr_expect_str_eq(atomq_strerror(-EPIPE), "the peer closed its end of the channel");
        cr_expect_not_null(strstr(atomq_strerror(-EDQUOT), "--agent-max-subs"));
        cr_expect_not_null(strstr(atomq_strerror(-EUSERS), "--max-agents"));
        cr_expect_str_eq(atomq_strerror(0), "success");
        cr_expect_str_eq(atomq_strerror(-123456), "unknown error");
        cr_expect_str_eq(atomq_strerror(INT32_MIN), "unknown error");
}
