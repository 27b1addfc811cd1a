/* test_atomq_agent.c - libatomq's agent connection (shm/atomq_agent.c),
 * client side: the attach handshake against a fake atomqd that answers
 * what we tell it (every way the answer can be wrong), and the calls
 * against atomqd's real control server and an engine in this process
 * (control/ctl_server.c, ctl_agent.c; dataplane/dp_agent.c,
 * dp_worker_agent.c).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "atomq/atomq.h"
#include "control/ctl_server.h"

#define SECOND_NS 1000000000LL
#define ENTITY_QUOTA 4000

static char dir[64];
static char path[96];

static void dir_make(void)
{
        snprintf(dir, sizeof(dir), "/tmp/atomq-agent-XXXXXX");
        cr_assert_not_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/c.sock", dir);
}

static void dir_remove(void)
{
        unlink(path);
        rmdir(dir);
}

/* --- a fake atomqd: one connection, a scripted answer ----------------- */

struct fake {
        int lfd;
        const char *greeting;
        const char *answer;     /* after the attach line */
        int fds[2];
        int nfds;
        pthread_t t;
};

static void *fake_run(void *arg)
{
        struct fake *f = arg;
        char line[64];
        int c = accept(f->lfd, NULL, NULL);
        if (c < 0)
                return NULL;
        (void)!write(c, f->greeting, strlen(f->greeting));
        (void)!read(c, line, sizeof(line));
        union {
                struct cmsghdr h;
                char b[CMSG_SPACE(2 * sizeof(int))];
        } ctl;
        struct iovec iov = { .iov_base = (void *)f->answer, .iov_len = strlen(f->answer) };
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
        if (f->nfds > 0) {
                memset(ctl.b, 0, sizeof(ctl.b));
                m.msg_control = ctl.b;
                m.msg_controllen = CMSG_SPACE((size_t)f->nfds * sizeof(int));
                struct cmsghdr *h = CMSG_FIRSTHDR(&m);
                h->cmsg_level = SOL_SOCKET;
                h->cmsg_type = SCM_RIGHTS;
                h->cmsg_len = CMSG_LEN((size_t)f->nfds * sizeof(int));
                memcpy(CMSG_DATA(h), f->fds, (size_t)f->nfds * sizeof(int));
        }
        (void)!sendmsg(c, &m, MSG_NOSIGNAL);
        /* Hold the connection until the client gives up on it. */
        (void)!read(c, line, sizeof(line));
        close(c);
        return NULL;
}

static void fake_start(struct fake *f, const char *greeting, const char *answer)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        f->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
        cr_assert_geq(f->lfd, 0);
        cr_assert_eq(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        cr_assert_eq(listen(f->lfd, 4), 0);
        f->greeting = greeting;
        f->answer = answer;
        cr_assert_eq(pthread_create(&f->t, NULL, fake_run, f), 0);
}

static void fake_stop(struct fake *f)
{
        pthread_join(f->t, NULL);
        close(f->lfd);
}

static int fake_connect(const char *greeting, const char *answer, int nfds, int file_bytes)
{
        struct fake f = { .nfds = nfds };
        for (int i = 0; i < nfds; i++) {
                f.fds[i] = memfd_create("fake-agent", MFD_CLOEXEC);
                cr_assert_geq(f.fds[i], 0);
                cr_assert_eq(ftruncate(f.fds[i], file_bytes), 0);
        }
        fake_start(&f, greeting, answer);
        struct atomq *a = NULL;
        int rc = atomq_connect(path, &a);
        cr_assert_null(a, "no connection on error");
        fake_stop(&f);
        for (int i = 0; i < nfds; i++)
                close(f.fds[i]);
        return rc;
}

#define GREETING "atomqd 0.1.0 pid 1 protocol 1\n\n"

Test(atomq_agent_attach, nobody_listening, .init = dir_make, .fini = dir_remove)
{
        struct atomq *a = NULL;
        cr_assert_eq(atomq_connect(path, &a), -ENOENT);
        /* A socket file nobody accepts on. */
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        close(fd);
        cr_assert_eq(atomq_connect(path, &a), -ECONNREFUSED);
        cr_assert_null(a);
}

Test(atomq_agent_attach, refusals_map_to_errno, .init = dir_make, .fini = dir_remove)
{
        cr_assert_eq(fake_connect(GREETING, "error: attach: every agent slot is taken (EUSERS)\n\n",
                                  0, 0), -EUSERS);
        unlink(path);
        cr_assert_eq(fake_connect(GREETING, "error: attach: agents must run as root (EPERM)\n\n",
                                  0, 0), -EPERM);
        unlink(path);
        cr_assert_eq(fake_connect(GREETING, "error: attach: no slots (ENODEV)\n\n", 0, 0),
                     -ENODEV);
}

Test(atomq_agent_attach, not_an_atomqd, .init = dir_make, .fini = dir_remove)
{
        cr_assert_eq(fake_connect("SSH-2.0-OpenSSH\n\n", "x\n\n", 0, 0), -EPROTO);
}

Test(atomq_agent_attach, answer_without_descriptors, .init = dir_make, .fini = dir_remove)
{
        cr_assert_eq(fake_connect(GREETING, "agent slot=0 gen=1 workers=1 ring=262144 "
                                            "file=1052672 max-subs=10\n\n", 0, 0), -EPROTO);
}

Test(atomq_agent_attach, answer_that_does_not_add_up, .init = dir_make, .fini = dir_remove)
{
        /* A file of another size than announced. */
        cr_assert_eq(fake_connect(GREETING, "agent slot=0 gen=1 workers=1 ring=262144 "
                                            "file=1052672 max-subs=10\n\n", 2, 4096), -EPROTO);
        unlink(path);
        /* A geometry that gives another file size than announced. */
        cr_assert_eq(fake_connect(GREETING, "agent slot=0 gen=1 workers=1 ring=262144 "
                                            "file=4096 max-subs=10\n\n", 2, 4096), -EPROTO);
        unlink(path);
        /* No workers, or too many. */
        cr_assert_eq(fake_connect(GREETING, "agent slot=0 gen=1 workers=0 ring=262144 "
                                            "file=4096 max-subs=10\n\n", 2, 4096), -EPROTO);
        unlink(path);
        cr_assert_eq(fake_connect(GREETING, "agent slot=0 gen=1 workers=65 ring=262144 "
                                            "file=4096 max-subs=10\n\n", 2, 4096), -EPROTO);
        unlink(path);
        /* A missing field. */
        cr_assert_eq(fake_connect(GREETING, "agent slot=0 gen=1 workers=1\n\n", 2, 4096),
                     -EPROTO);
}

/* --- the real control server and an engine in this process ----------- */

static struct dp_engine eng;
static struct ctl_config cfg;
static struct ctl_ctx ctx;
static struct ctl_loop loop;
static struct ctl_server srv;
static pthread_t loop_thread;
static volatile int loop_stop;

static void *loop_run(void *arg)
{
        (void)arg;
        while (!loop_stop)
                ctl_loop_run_once(&loop, 5);
        return NULL;
}

static void server_up(uint32_t workers, uint32_t agents, uint32_t max_subs)
{
        struct dp_engine_config ec;
        dir_make();
        dp_engine_config_default(&ec, 4096);
        ec.workers = workers;
        ec.agents = agents;
        ec.hugepages = SHM_HUGEPAGES_OFF;
        cr_assert_eq(dp_engine_init(&eng, &ec), 0);
        cr_assert_eq(dp_engine_start(&eng), 0);
        memset(&cfg, 0, sizeof(cfg));
        snprintf(cfg.control_path, sizeof(cfg.control_path), "%s", path);
        cfg.control_clients_max = 8;
        cfg.agent_max_subs = max_subs;
        cfg.max_channels = 8;
        cfg.agent_max_entities = ENTITY_QUOTA;
        cr_assert_eq(ctl_loop_init(&loop), 0);
        ctx = (struct ctl_ctx){ .cfg = &cfg, .engine = &eng, .loop = &loop,
                                .started_realtime_ns = 1 };
        cr_assert_eq(ctl_server_open(&srv, &ctx), 0);
        loop_stop = 0;
        cr_assert_eq(pthread_create(&loop_thread, NULL, loop_run, NULL), 0);
}

static void setup(void)
{
        server_up(2, 2, 4);
}

static void teardown(void)
{
        loop_stop = 1;
        pthread_join(loop_thread, NULL);
        ctl_server_close(&srv);
        ctl_loop_fini(&loop);
        dp_engine_fini(&eng);
        rmdir(dir);
}

static struct atomq *connect_ok(void)
{
        struct atomq *a = NULL;
        int rc = atomq_connect(path, &a);
        cr_assert_eq(rc, 0, "connect: %s", atomq_strerror(rc));
        cr_assert_not_null(a);
        atomq_set_timeout(a, 2 * SECOND_NS);
        return a;
}

TestSuite(atomq_agent, .init = setup, .fini = teardown, .timeout = 30);

Test(atomq_agent, slots_run_out_and_come_back)
{
        struct atomq *a = connect_ok(), *b = connect_ok(), *c = NULL;
        cr_assert_eq(atomq_connect(path, &c), -EUSERS);
        atomq_close(b);
        /* The slot is free once atomqd and both workers let go of it. */
        int rc = -EUSERS;
        for (int i = 0; i < 200 && rc == -EUSERS; i++) {
                usleep(10000);
                rc = atomq_connect(path, &c);
        }
        cr_assert_eq(rc, 0, "slot reused: %s", atomq_strerror(rc));
        atomq_close(c);
        atomq_close(a);
}

Test(atomq_agent, entities_by_handle_and_name_on_both_workers)
{
        struct atomq *a = connect_ok();
        const char *names[] = { "m.a", "m.b", "m.c", "m.d", "m.e", "m.f", "m.g", "m.h" };
        uint64_t h[8], found;
        cr_assert_eq(atomq_create_many(a, ATOMQ_MODE_MAILBOX, names, 8, NULL, h), 8);
        bool shard_seen[2] = { false, false };
        for (int i = 0; i < 8; i++) {
                cr_assert_eq(atomq_lookup(a, names[i], &found), 0);
                cr_assert_eq(found, h[i]);
                shard_seen[(h[i] >> 32) & 0xff] = true;
        }
        cr_assert(shard_seen[0] && shard_seen[1], "names spread over both workers");
        cr_assert_eq(atomq_create(a, ATOMQ_MODE_MAILBOX, "m.a", NULL, &found), -EEXIST);
        cr_assert_eq(atomq_create_many(a, ATOMQ_MODE_MAILBOX, names, 2, NULL, h), -EEXIST);
        cr_assert_eq(h[0], 0, "a failed create leaves 0");
        cr_assert_eq(atomq_destroy(a, 0, "m.a"), 0);
        cr_assert_eq(atomq_destroy(a, 0, "m.a"), -ENOENT);
        cr_assert_eq(atomq_lookup(a, "m.a", &found), -ENOENT);
        cr_assert_eq(atomq_create(a, 99, "m.x", NULL, &found), -EINVAL);
        cr_assert_eq(atomq_destroy(a, 0, NULL), -EINVAL);
        atomq_close(a);
}

Test(atomq_agent, batches_are_borrowed_until_the_next_call)
{
        struct atomq *a = connect_ok();
        struct atomq_batch b;
        struct atomq_delivery d;
        uint64_t h, seq;
        cr_assert_eq(atomq_create(a, ATOMQ_MODE_MAILBOX, "box", NULL, &h), 0);
        for (int i = 0; i < 5; i++)
                cr_assert_eq(atomq_send(a, h, NULL, NULL, "abc", 3, NULL, &seq), 0);
        cr_assert_eq(atomq_fetch(a, h, NULL, 0, 3, &b), 3);
        int n = 0;
        while (atomq_batch_next(&b, &d) == 1) {
                cr_assert_eq(d.len, 3);
                cr_assert_eq(memcmp(d.data, "abc", 3), 0);
                cr_assert_eq(d.entity, h);
                n++;
        }
        cr_assert_eq(n, 3);
        cr_assert_eq(atomq_fetch(a, h, NULL, 0, 0, &b), -EINVAL);
        cr_assert_eq(atomq_fetch(a, h, NULL, 0, 65, &b), -EINVAL);
        /* A new call released the batch; walking it again finds nothing. */
        cr_assert_eq(atomq_batch_next(&b, &d), 0);
        cr_assert_eq(atomq_fetch(a, h, NULL, 0, 64, &b), 2);
        atomq_batch_release(a, &b);
        cr_assert_eq(atomq_batch_next(&b, &d), 0);
        cr_assert_eq(atomq_ack(a, h, 12345), -ENOENT);
        cr_assert_eq(atomq_ack(a, 0, 1), -EINVAL);
        atomq_close(a);
}

Test(atomq_agent, recv_timeouts_and_the_pollable_fd)
{
        struct atomq *a = connect_ok();
        struct atomq_delivery d;
        cr_assert_eq(atomq_recv(a, &d, 0), -EAGAIN);
        cr_assert_eq(atomq_recv(a, &d, 20000000), -ETIMEDOUT);
        cr_assert_eq(atomq_subscribe(a, "ev.*", NULL, 3, NULL), 0);
        struct pollfd p = { .fd = atomq_fd(a), .events = POLLIN };
        cr_assert_eq(atomq_poll_arm(a), 0, "nothing waits yet");
        cr_assert_eq(poll(&p, 1, 0), 0, "not readable before a delivery");
        cr_assert_eq(atomq_publish(a, "ev.one", "1", 1, NULL), 0);
        cr_assert_eq(poll(&p, 1, 2000), 1, "readable after a delivery");
        cr_assert_eq(atomq_recv(a, &d, 0), 1);
        cr_assert_eq(d.sid, 3);
        cr_assert_eq(d.subject_len, 6);
        cr_assert_eq(memcmp(d.subject, "ev.one", 6), 0);
        atomq_release(a);
        /* Armed while a delivery already waits: do not sleep. */
        cr_assert_eq(atomq_publish(a, "ev.two", "2", 1, NULL), 0);
        cr_assert_eq(atomq_flush(a), 0);
        int armed = 0;
        for (int i = 0; i < 100 && armed == 0; i++) {
                armed = atomq_poll_arm(a);
                if (armed == 0)
                        usleep(1000);
        }
        cr_assert_eq(armed, 1);
        cr_assert_eq(atomq_recv(a, &d, 0), 1);
        cr_assert_eq(memcmp(d.data, "2", 1), 0);
        atomq_close(a);
}

Test(atomq_agent, bad_input_is_refused_here)
{
        struct atomq *a = connect_ok();
        static char big[20000];
        cr_assert_eq(atomq_publish(a, "a..b", "x", 1, NULL), -EINVAL);
        cr_assert_eq(atomq_publish(a, "a.*", "x", 1, NULL), -EINVAL);
        cr_assert_eq(atomq_publish(a, "", "x", 1, NULL), -EINVAL);
        cr_assert_eq(atomq_publish(a, "a.b", big, sizeof(big), NULL), -EMSGSIZE);
        cr_assert_eq(atomq_subscribe(a, "a. b", NULL, 1, NULL), -EINVAL);
        cr_assert_eq(atomq_subscribe(a, "a.b", "", 1, NULL), -EINVAL);
        cr_assert_eq(atomq_request(a, "svc", "x", 1, 0, 1, NULL), -EINVAL);
        cr_assert_eq(atomq_unsubscribe(a, 0), -ENOENT);
        cr_assert_eq(atomq_flush(a), 0, "refused calls left nothing in flight");
        atomq_close(a);
}

Test(atomq_agent, subscription_quota)
{
        struct atomq *a = connect_ok();
        uint64_t sub[4];
        for (int i = 0; i < 4; i++)
                cr_assert_eq(atomq_subscribe(a, "q.x", NULL, (uint32_t)i, &sub[i]), 0);
        cr_assert_eq(atomq_subscribe(a, "q.y", NULL, 9, NULL), -EDQUOT);
        uint64_t h;
        cr_assert_eq(atomq_create(a, ATOMQ_MODE_LATEST, "cfg", NULL, &h), 0);
        cr_assert_eq(atomq_watch(a, h, NULL, 9, 0, 0), -EDQUOT, "watches count too");
        cr_assert_eq(atomq_unsubscribe(a, sub[0]), 0);
        cr_assert_eq(atomq_watch(a, h, NULL, 9, 0, 0), 0);
        atomq_close(a);
}

Test(atomq_agent, only_its_own_subscriptions)
{
        struct atomq *a = connect_ok(), *b = connect_ok();
        uint64_t sub;
        cr_assert_eq(atomq_subscribe(a, "own.x", NULL, 1, &sub), 0);
        cr_assert_eq(atomq_unsubscribe(b, sub), -EPERM);
        cr_assert_eq(atomq_unsubscribe(a, sub), 0);
        cr_assert_eq(atomq_unsubscribe(a, sub), -ENOENT);
        atomq_close(b);
        atomq_close(a);
}

Test(atomq_agent, a_detached_agent_is_told)
{
        struct atomq *a = connect_ok();
        uint64_t h;
        cr_assert_eq(atomq_create(a, ATOMQ_MODE_MAILBOX, "r.x", NULL, &h), 0);
        /* What atomqd does when it takes the slot back (corrupt rings,
         * its own shutdown): every call from then on says so. */
        for (uint32_t i = 0; i < eng.agents; i++)
                if (atomic_load(&dp_agent_slot_at(&eng, i)->state) == DP_AGENT_LIVE)
                        dp_agent_close(&eng, i);
        struct atomq_delivery d;
        cr_assert_eq(atomq_recv(a, &d, SECOND_NS), -ECONNRESET);
        atomq_close(a);
}

/* --- direct channels through atomqd ------------------------------------ */

static void chan_send_recv(struct atomq_channel *from, struct atomq_channel *to, const char *text)
{
        struct atomq_msg m;
        cr_assert_eq(atomq_channel_send(from, text, (uint32_t)strlen(text)), 0);
        cr_assert_eq(atomq_channel_recv_wait(to, &m, SECOND_NS), 1);
        cr_assert_eq(m.len, strlen(text));
        cr_assert_eq(memcmp(m.data, text, m.len), 0);
        cr_assert_eq(atomq_channel_release(to), 0);
}

/* Waits up to 2 s for the end to see its peer gone. */
static int chan_wait_epipe(struct atomq_channel *ch)
{
        struct atomq_msg m;
        int rc = 0;
        for (int i = 0; i < 200 && rc != -EPIPE; i++) {
                rc = atomq_channel_recv_wait(ch, &m, 10000000);
                if (rc == 1)
                        atomq_channel_release(ch);
        }
        return rc;
}

Test(atomq_agent, channel_open_join_and_close)
{
        struct atomq *a = connect_ok(), *b = connect_ok();
        struct atomq_channel ca, cb, cx;
        cr_assert_eq(atomq_channel_open(a, "pair.1", 4096, 0, &ca), 0);
        cr_assert_eq(atomq_channel_open(b, "pair.1", 0, 0, &cx), -EEXIST);
        cr_assert_eq(atomq_channel_join(b, "pair.2", &cx), -ENOENT);
        cr_assert_eq(atomq_channel_open(a, "bad name", 0, 0, &cx), -EINVAL);
        cr_assert_eq(atomq_channel_open(a, "pair.3", 1000, 0, &cx), -EINVAL, "power of two");
        cr_assert_eq(atomq_channel_join(b, "pair.1", &cb), 0);
        cr_assert_eq(atomq_channel_join(a, "pair.1", &cx), -EBUSY);
        chan_send_recv(&ca, &cb, "to end 1");
        chan_send_recv(&cb, &ca, "to end 0");
        /* What was sent before the close is still read, then -EPIPE. */
        cr_assert_eq(atomq_channel_send(&ca, "last", 4), 0);
        atomq_channel_close(&ca);
        struct atomq_msg m;
        cr_assert_eq(atomq_channel_recv_wait(&cb, &m, SECOND_NS), 1);
        atomq_channel_release(&cb);
        cr_assert_eq(atomq_channel_recv(&cb, &m), -EPIPE);
        atomq_channel_close(&cb);
        /* Both ends closed: atomqd lets the name go. */
        int rc = -EEXIST;
        for (int i = 0; i < 100 && rc == -EEXIST; i++) {
                usleep(10000);
                rc = atomq_channel_open(a, "pair.1", 0, 0, &ca);
        }
        cr_assert_eq(rc, 0, "the name is free again: %s", atomq_strerror(rc));
        atomq_channel_close(&ca);
        atomq_close(b);
        atomq_close(a);
}

Test(atomq_agent, channel_ends_when_an_agent_goes)
{
        struct atomq *a = connect_ok(), *b = connect_ok();
        struct atomq_channel ca, cb;
        cr_assert_eq(atomq_channel_open(a, "dies", 0, 0, &ca), 0);
        cr_assert_eq(atomq_channel_join(b, "dies", &cb), 0);
        chan_send_recv(&ca, &cb, "hi");
        /* a's agent detaches without closing its end (as a crash would). */
        atomq_close(a);
        cr_assert_eq(chan_wait_epipe(&cb), -EPIPE);
        cr_assert_eq(atomq_channel_send(&cb, "x", 1), -EPIPE);
        atomq_channel_close(&cb);
        /* The abandoned mapping of a's end is still this process's. */
        munmap(ca.map, ca.map_bytes);
        atomq_close(b);
}

Test(atomq_agent, channel_ttl)
{
        struct atomq *a = connect_ok(), *b = connect_ok();
        struct atomq_channel ca, cb;
        cr_assert_eq(atomq_channel_open(a, "short", 0, 100, &ca), 0);
        cr_assert_eq(atomq_channel_join(b, "short", &cb), 0);
        chan_send_recv(&ca, &cb, "in time");
        cr_assert_eq(chan_wait_epipe(&cb), -EPIPE);
        cr_assert_eq(chan_wait_epipe(&ca), -EPIPE);
        atomq_channel_close(&ca);
        atomq_channel_close(&cb);
        atomq_close(b);
        atomq_close(a);
}

Test(atomq_agent, a_full_delivery_ring_drops_and_counts)
{
        struct atomq *a = connect_ok();
        struct atomq_delivery d;
        const int n = 5000;
        char msg[32] = "0123456789abcdef0123456789abcde";
        cr_assert_eq(atomq_subscribe(a, "flood", NULL, 1, NULL), 0);
        cr_assert_eq(atomq_dropped(a), 0);
        /* Nobody reads while these go out: the ring (256 KiB) fills. */
        for (int i = 0; i < n; i++)
                cr_assert_eq(atomq_publish(a, "flood", msg, sizeof(msg), NULL), 0);
        cr_assert_eq(atomq_flush(a), 0);
        int got = 0;
        while (atomq_recv(a, &d, 0) == 1)
                got++;
        uint64_t dropped = atomq_dropped(a);
        cr_assert_gt(dropped, 0, "the ring cannot hold %d deliveries", n);
        cr_assert_eq((uint64_t)got + dropped, (uint64_t)n, "got %d, dropped %llu", got,
                     (unsigned long long)dropped);
        atomq_close(a);
}

Test(atomq_agent, pipelines_longer_than_the_rings)
{
        /* 3000 creates fill the 64 KiB command rings many times over: the
         * answers read while waiting for room must still reach the
         * pipeline (every handle set), not be taken as asynchronous. */
        enum { N = 3000 };
        static char names[N][16];
        static const char *np[N];
        static uint64_t h[N];
        struct atomq *a = connect_ok();
        for (int i = 0; i < N; i++) {
                snprintf(names[i], sizeof(names[i]), "p.%d", i);
                np[i] = names[i];
        }
        cr_assert_eq(atomq_create_many(a, ATOMQ_MODE_MAILBOX, np, N, NULL, h), N);
        for (int i = 0; i < N; i++)
                cr_assert_neq(h[i], 0, "handle %d", i);
        uint64_t found;
        cr_assert_eq(atomq_lookup(a, "p.2999", &found), 0);
        cr_assert_eq(found, h[N - 1]);
        cr_assert_eq(atomq_destroy_many(a, h, N), N);
        cr_assert_eq(atomq_lookup(a, "p.0", &found), -ENOENT);
        atomq_close(a);
}

Test(atomq_agent, entity_quota)
{
        enum { N = ENTITY_QUOTA + 100 };
        static char names[N][16];
        static const char *np[N];
        static uint64_t h[N];
        struct atomq *a = connect_ok();
        for (int i = 0; i < N; i++) {
                snprintf(names[i], sizeof(names[i]), "e.%d", i);
                np[i] = names[i];
        }
        /* Exactly the quota is created; the rest are refused, not queued. */
        cr_assert_eq(atomq_create_many(a, ATOMQ_MODE_MAILBOX, np, N, NULL, h), ENTITY_QUOTA);
        uint64_t x;
        cr_assert_eq(atomq_create(a, ATOMQ_MODE_MAILBOX, "e.more", NULL, &x), -EDQUOT);
        /* A destroy gives room back, and so does a TTL. */
        uint64_t live = 0;
        for (int i = 0; i < N && live == 0; i++)
                live = h[i];
        cr_assert_eq(atomq_destroy(a, live, NULL), 0);
        struct atomq_create_opts o = { .ttl_ms = 50 };
        cr_assert_eq(atomq_create(a, ATOMQ_MODE_MAILBOX, "e.short", &o, &x), 0);
        cr_assert_eq(atomq_create(a, ATOMQ_MODE_MAILBOX, "e.more", NULL, &x), -EDQUOT);
        int rc = -EDQUOT;
        for (int i = 0; i < 100 && rc == -EDQUOT; i++) {
                usleep(10000);
                rc = atomq_create(a, ATOMQ_MODE_MAILBOX, "e.more", NULL, &x);
        }
        cr_assert_eq(rc, 0, "room again after the TTL: %s", atomq_strerror(rc));
        /* Another agent has its own quota. */
        struct atomq *b = connect_ok();
        cr_assert_eq(atomq_create(b, ATOMQ_MODE_MAILBOX, "e.b", NULL, &x), 0);
        atomq_close(b);
        atomq_close(a);
}

Test(atomq_agent, a_failed_publish_is_reported_by_flush)
{
        struct atomq *a = connect_ok();
        struct atomq_delivery d;
        cr_assert_eq(atomq_subscribe(a, "ok.*", NULL, 1, NULL), 0);
        /* A control byte passes libatomq's quick check and is refused by
         * the dataplane's: the publish is queued, its failure comes back. */
        cr_assert_eq(atomq_publish(a, "ok.1", "a", 1, NULL), 0);
        cr_assert_eq(atomq_publish(a, "bad.\001", "b", 1, NULL), 0);
        cr_assert_eq(atomq_publish(a, "ok.2", "c", 1, NULL), 0);
        cr_assert_eq(atomq_flush(a), -EINVAL);
        cr_assert_eq(atomq_flush(a), 0, "reported once");
        /* The good ones around it were delivered. */
        cr_assert_eq(atomq_recv(a, &d, SECOND_NS), 1);
        cr_assert_eq(memcmp(d.data, "a", 1), 0);
        cr_assert_eq(atomq_recv(a, &d, SECOND_NS), 1);
        cr_assert_eq(memcmp(d.data, "c", 1), 0);
        atomq_close(a);
}
