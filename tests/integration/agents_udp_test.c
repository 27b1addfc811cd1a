/* agents_udp_test.c - libatomq over UDP (shm/atomq_udp*.c) against the real
 * atomqd and its dataplane: atomq_connect("udp://127.0.0.1:PORT") opens a
 * datagram session with atomqd's --udp port, and the agent calls work over
 * it, beside shared-memory agents of the same process.
 *
 * Each test starts atomqd (one worker, --nats off, --udp on a free port,
 * a short ack wait) in a fresh temporary directory and stops it with
 * SIGTERM: it must exit 0. The loss test puts a small UDP proxy thread
 * between the client and atomqd that drops every 3rd datagram each way
 * and sends every 4th one it forwards twice.
 *
 *      meson test -C build agents_udp --print-errorlogs
 *      ATOMQ_ATOMQD=build/control/atomqd \
 *      ATOMQ_DATAPLANE=build/dataplane/atomq-dataplane \
 *              build/tests/test_agents_udp --jobs 1 --verbose
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "atomq/atomq.h"
#include "tests/integration/atomqd_child.h"

#define MS 1000000ll /* nanoseconds */
/* How long atomqd may take to come up or stop. */
#define WAIT_MS 10000
/* The connections' call timeout: far above a loopback round trip, and
 * above what the lossy path needs (a few RTOs). */
#define CALL_TIMEOUT_NS (5000 * MS)
/* The server's ack wait: fetched messages whose datagram was lost come
 * back after it. */
#define ACK_WAIT_MS "300"

static struct {
        pid_t pid;
        bool clean;
        char dir[128];
        char sock[160];
        char log[160];
        char url[64];
        uint16_t port;
} t;

static const char *rc_text(int rc)
{
        return rc < 0 ? atomq_strerror(rc) : "success or a count";
}

/* expr (an atomq call) must return want. */
#define RC(expr, want)                                                                     \
        do {                                                                               \
                int rc_ = (expr), want_ = (want);                                          \
                cr_assert_eq(rc_, want_, "%s returned %d (%s), want %d (%s)", #expr, rc_,  \
                             rc_text(rc_), want_, rc_text(want_));                         \
        } while (0)

/* ---- atomqd ------------------------------------------------------------ */

/* A UDP port nobody uses on 127.0.0.1 now (bound, read, closed). */
static uint16_t free_udp_port(void)
{
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sa);
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        cr_assert_geq(fd, 0);
        cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
        close(fd);
        return ntohs(sa.sin_port);
}

/* Starts atomqd with --udp on a free port, `lease_ms` as the session
 * lease, in a fresh temporary directory; waits for its control socket. */
static void daemon_start(const char *lease_ms)
{
        const char *atomqd = env_path("ATOMQ_ATOMQD"), *dp = env_path("ATOMQ_DATAPLANE");
        char udp[32];
        atomqd_tmpdir(t.dir, sizeof(t.dir), "atomq-udp");
        snprintf(t.sock, sizeof(t.sock), "%s/ctl.sock", t.dir);
        snprintf(t.log, sizeof(t.log), "%s/atomqd.log", t.dir);
        t.port = free_udp_port();
        snprintf(udp, sizeof(udp), "127.0.0.1:%u", t.port);
        snprintf(t.url, sizeof(t.url), "udp://127.0.0.1:%u", t.port);
        const char *argv[] = { atomqd, "--control", t.sock, "--metrics", "off", "--nats", "off",
                               "--workers", "1", "--hugepages", "off", "--max-entities", "10000",
                               "--data-dir", t.dir, "--dataplane", dp, "--udp", udp,
                               "--udp-lease-ms", lease_ms, "--ack-wait-ms", ACK_WAIT_MS, NULL };
        t.pid = atomqd_spawn(t.log, argv);
        atomqd_wait_ready(&t.pid, t.sock, NULL, WAIT_MS);
}

static void daemon_stop(void)
{
        atomqd_stop(&t.pid, WAIT_MS);
        t.clean = true;
}

/* The suite's fini: atomqd is killed if a test left it, its log shown
 * unless it stopped cleanly, the directory removed. */
static void teardown(void)
{
        if (t.pid > 0) {
                kill(t.pid, SIGKILL);
                waitpid(t.pid, NULL, 0);
                t.pid = 0;
        }
        if (!t.clean && t.dir[0] != 0)
                atomqd_log_dump(t.log);
        atomqd_rm_tree(t.dir);
}

TestSuite(agents_udp, .fini = teardown, .timeout = 60);

static struct atomq *udp_connect(const char *url)
{
        struct atomq *a = NULL;
        int rc = atomq_connect(url, &a);
        cr_assert_eq(rc, 0, "atomq_connect(%s): %d (%s)", url, rc, rc_text(rc));
        atomq_set_timeout(a, CALL_TIMEOUT_NS);
        return a;
}

static bool bytes_are(const void *p, uint32_t len, const char *want)
{
        return len == strlen(want) && memcmp(p, want, len) == 0;
}

/* ---- a lossy proxy ------------------------------------------------------ */

/* Forwards datagrams between one client and atomqd: drops every
 * drop_every-th one of each direction, sends every dup_every-th one it
 * forwards twice, and drops everything while blackhole is set. */
struct proxy {
        int front;              /* the client sends here */
        int back;               /* connected to atomqd */
        uint16_t port;
        unsigned drop_every;
        unsigned dup_every;
        struct sockaddr_in client;
        bool have_client;
        atomic_bool stop;
        atomic_bool blackhole;
        atomic_uint_fast64_t passed, dropped, copied;
        pthread_t thread;
};

static void proxy_pass(struct proxy *p, int fd, const void *buf, size_t len, uint64_t n,
                       const struct sockaddr_in *to)
{
        if (atomic_load(&p->blackhole) || (p->drop_every != 0 && n % p->drop_every == 0)) {
                atomic_fetch_add(&p->dropped, 1);
                return;
        }
        int copies = p->dup_every != 0 && n % p->dup_every == 0 ? 2 : 1;
        for (int i = 0; i < copies; i++)
                (void)sendto(fd, buf, len, 0, (const struct sockaddr *)to,
                             to != NULL ? sizeof(*to) : 0);
        atomic_fetch_add(&p->passed, 1);
        if (copies == 2)
                atomic_fetch_add(&p->copied, 1);
}

static void *proxy_run(void *arg)
{
        struct proxy *p = arg;
        static uint8_t buf[2][65536];
        uint64_t up = 0, down = 0;
        while (!atomic_load(&p->stop)) {
                struct pollfd fds[2] = { { .fd = p->front, .events = POLLIN },
                                         { .fd = p->back, .events = POLLIN } };
                if (poll(fds, 2, 20) <= 0)
                        continue;
                if (fds[0].revents & POLLIN) {
                        socklen_t alen = sizeof(p->client);
                        ssize_t n = recvfrom(p->front, buf[0], sizeof(buf[0]), 0,
                                             (struct sockaddr *)&p->client, &alen);
                        if (n > 0) {
                                p->have_client = true;
                                proxy_pass(p, p->back, buf[0], (size_t)n, ++up, NULL);
                        }
                }
                if (fds[1].revents & POLLIN) {
                        ssize_t n = recv(p->back, buf[1], sizeof(buf[1]), 0);
                        if (n > 0 && p->have_client)
                                proxy_pass(p, p->front, buf[1], (size_t)n, ++down, &p->client);
                }
        }
        return NULL;
}

static void proxy_start(struct proxy *p, unsigned drop_every, unsigned dup_every)
{
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        struct sockaddr_in srv = sa;
        socklen_t len = sizeof(sa);
        *p = (struct proxy){ .drop_every = drop_every, .dup_every = dup_every };
        p->front = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        p->back = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        cr_assert(p->front >= 0 && p->back >= 0);
        cr_assert_eq(bind(p->front, (struct sockaddr *)&sa, sizeof(sa)), 0);
        cr_assert_eq(getsockname(p->front, (struct sockaddr *)&sa, &len), 0);
        p->port = ntohs(sa.sin_port);
        srv.sin_port = htons(t.port);
        cr_assert_eq(connect(p->back, (struct sockaddr *)&srv, sizeof(srv)), 0);
        cr_assert_eq(pthread_create(&p->thread, NULL, proxy_run, p), 0);
}

static void proxy_stop(struct proxy *p)
{
        atomic_store(&p->stop, true);
        pthread_join(p->thread, NULL);
        close(p->front);
        close(p->back);
}

/* ---- connecting --------------------------------------------------------- */

Test(agents_udp, connect_and_close)
{
        daemon_start("5000");
        struct atomq *a = udp_connect(t.url);
        struct atomq *b = udp_connect(t.url);
        cr_assert_geq(atomq_fd(a), 0, "atomq_fd is the UDP socket");
        cr_assert_neq(atomq_fd(a), atomq_fd(b));
        RC(atomq_poll_arm(a), 0);
        RC(atomq_flush(a), 0);
        cr_assert_eq(atomq_dropped(a), 0);
        atomq_close(a);
        atomq_close(b);
        atomq_close(NULL);
        /* The sessions' slots came back: a new one opens. */
        a = udp_connect(t.url);
        atomq_close(a);
        daemon_stop();
}

Test(agents_udp, bad_address_and_no_server)
{
        static const char *const bad[] = {
                "udp://", "udp://127.0.0.1", "udp://127.0.0.1:", "udp://localhost:4223",
                "udp://127.0.0.1:0", "udp://127.0.0.1:65536", "udp://127.0.0.1:-5",
                "udp://127.0.0.1:4223x", "udp://[::1]:4223", "udp://1.2.3:4223",
                "udp://127.0.0.1:4223?timeout=5", "udp://127.0.0.1:4223?timeout_ms=",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct atomq *a = (struct atomq *)1;
                int rc = atomq_connect(bad[i], &a);
                cr_assert_eq(rc, -EINVAL, "atomq_connect(\"%s\"): %d (%s), want -EINVAL", bad[i],
                             rc, rc_text(rc));
                cr_assert_null(a, "a failed connect leaves *out NULL");
        }
        /* Nobody listens on the port: the handshake times out, and no
         * later than asked. */
        char url[80];
        struct atomq *a = NULL;
        snprintf(url, sizeof(url), "udp://127.0.0.1:%u?timeout_ms=300", free_udp_port());
        int64_t t0 = now_ms();
        RC(atomq_connect(url, &a), -ETIMEDOUT);
        int64_t took = now_ms() - t0;
        cr_assert(took >= 290 && took < 1500, "timed out after %lld ms, want about 300",
                  (long long)took);
}

/* A call on a live session whose server went silent times out within the
 * call timeout. */
Test(agents_udp, call_timeout)
{
        struct proxy p;
        char url[64];
        uint64_t h;
        daemon_start("5000");
        proxy_start(&p, 0, 0);
        snprintf(url, sizeof(url), "udp://127.0.0.1:%u", p.port);
        struct atomq *a = udp_connect(url);
        RC(atomq_create(a, ATOMQ_MODE_MAILBOX, "box.silent", NULL, &h), 0);
        atomic_store(&p.blackhole, true);
        atomq_set_timeout(a, 300 * MS);
        int64_t t0 = now_ms();
        RC(atomq_destroy(a, h, NULL), -ETIMEDOUT);
        int64_t took = now_ms() - t0;
        cr_assert(took >= 290 && took < 1000, "timed out after %lld ms", (long long)took);
        atomic_store(&p.blackhole, false);
        /* The same session carries on once the path is back. (The destroy
         * that timed out may still have been done: a copy the proxy thread
         * had read before the blackhole and forwarded after it, when the
         * machine is busy. A timed-out call is not undone.) */
        atomq_set_timeout(a, CALL_TIMEOUT_NS);
        uint64_t h2;
        RC(atomq_create(a, ATOMQ_MODE_MAILBOX, "box.silent.2", NULL, &h2), 0);
        RC(atomq_destroy(a, h2, NULL), 0);
        int rc = atomq_destroy(a, h, NULL);
        cr_assert(rc == 0 || rc == -ENOENT || rc == -ESTALE, "destroy after the timeout: %d (%s)",
                  rc, rc_text(rc));
        atomq_close(a);
        proxy_stop(&p);
        daemon_stop();
}

/* ---- mailboxes ---------------------------------------------------------- */

/* Fetches everything box holds and acks it; the payloads must be
 * "m<first>".."m<first+n-1>", in order, each once. */
static void fetch_all_in_order(struct atomq *a, uint64_t box, unsigned first, unsigned n)
{
        struct atomq_batch b;
        struct atomq_delivery d;
        unsigned next = first;
        while (next < first + n) {
                int got = atomq_fetch(a, box, NULL, 0, 7, &b);
                cr_assert_gt(got, 0, "fetch: %d (%s) with %u left", got, rc_text(got),
                             first + n - next);
                uint64_t seqs[64];
                int k = 0, rc;
                while ((rc = atomq_batch_next(&b, &d)) == 1) {
                        char want[16];
                        snprintf(want, sizeof(want), "m%u", next++);
                        cr_assert(bytes_are(d.data, d.len, want), "got %.*s, want %s",
                                  (int)d.len, (const char *)d.data, want);
                        cr_assert_eq(d.entity, box);
                        cr_assert_eq(d.flags, 0, "a redelivery on a loss-free path");
                        seqs[k++] = d.seq;
                }
                RC(rc, 0);
                cr_assert_eq(k, got);
                atomq_batch_release(a, &b);
                for (int i = 0; i < k; i++)
                        RC(atomq_ack(a, box, seqs[i]), 0);
        }
        RC(atomq_fetch(a, box, NULL, 0, 64, &b), 0);
}

Test(agents_udp, mailbox_send_fetch_ack)
{
        uint64_t box, other, seq, last = 0;
        struct atomq_batch b;
        daemon_start("5000");
        struct atomq *a = udp_connect(t.url);
        RC(atomq_create(a, ATOMQ_MODE_MAILBOX, "box.udp", NULL, &box), 0);
        cr_assert_neq(box, 0);
        RC(atomq_create(a, ATOMQ_MODE_MAILBOX, "box.udp", NULL, &other), -EEXIST);
        RC(atomq_create(a, (enum atomq_mode)99, "box.bad", NULL, &other), -EINVAL);
        /* By handle and by name, with a key, headers, a TTL: the sequence
         * numbers grow. */
        static const char hdr[] = "NATS/1.0\r\nX-K: v\r\n\r\n";
        struct atomq_msg_opts o = { .storage = ATOMQ_STORAGE_DEFAULT, .ttl_ms = 60000,
                                    .headers = hdr, .headers_len = sizeof(hdr) - 1 };
        for (unsigned i = 0; i < 20; i++) {
                char msg[16];
                snprintf(msg, sizeof(msg), "m%u", i);
                if (i % 2 == 0)
                        RC(atomq_send(a, box, NULL, "k.ey", msg, (uint32_t)strlen(msg), &o, &seq), 0);
                else
                        RC(atomq_send(a, 0, "box.udp", NULL, msg, (uint32_t)strlen(msg), NULL, &seq), 0);
                cr_assert(i == 0 || seq > last, "seq %llu after %llu", (unsigned long long)seq,
                          (unsigned long long)last);
                last = seq;
        }
        /* The first message carries what the frame carried. */
        struct atomq_delivery d;
        RC(atomq_fetch(a, 0, "box.udp", 0, 1, &b), 1);
        RC(atomq_batch_next(&b, &d), 1);
        cr_assert(bytes_are(d.data, d.len, "m0"));
        cr_assert(d.subject_len == 4 && memcmp(d.subject, "k.ey", 4) == 0, "key %.*s",
                  (int)d.subject_len, d.subject);
        cr_assert(d.headers_len == sizeof(hdr) - 1 && memcmp(d.headers, hdr, d.headers_len) == 0);
        uint64_t first_seq = d.seq;
        RC(atomq_batch_next(&b, &d), 0);
        atomq_batch_release(a, &b);
        RC(atomq_ack(a, box, first_seq), 0);
        fetch_all_in_order(a, box, 1, 19);
        /* A message's TTL is carried: it is gone when it runs out. */
        struct atomq_msg_opts short_ttl = { .storage = ATOMQ_STORAGE_DEFAULT, .ttl_ms = 50 };
        RC(atomq_send(a, box, NULL, NULL, "brief", 5, &short_ttl, NULL), 0);
        nap_ms(150);
        /* The message acked first is gone too: nothing is left, once. */
        RC(atomq_fetch(a, box, NULL, 0, 64, &b), 0);
        RC(atomq_ack(a, box, 999999), -ENOENT);
        RC(atomq_ack(a, 0, 1), -EINVAL);
        RC(atomq_fetch(a, box, NULL, 0, 0, &b), -EINVAL);
        RC(atomq_fetch(a, box, NULL, 0, 65, &b), -EINVAL);
        RC(atomq_destroy(a, 0, NULL), -EINVAL);
        RC(atomq_destroy(a, 0, ""), -EINVAL);
        RC(atomq_destroy(a, 0, "box.udp"), 0);
        RC(atomq_destroy(a, 0, "box.udp"), -ENOENT);
        RC(atomq_send(a, box, NULL, NULL, "x", 1, NULL, NULL), -ESTALE);
        RC(atomq_fetch(a, 0, "box.none", 0, 1, &b), -ENOENT);
        /* Too large for a datagram atomqd takes. */
        static char big[20000];
        RC(atomq_send(a, 0, "box.none", NULL, big, sizeof(big), NULL, NULL), -EMSGSIZE);
        atomq_close(a);
        daemon_stop();
}

/* ---- publish / subscribe ------------------------------------------------ */

/* The next delivery on a within the call timeout. */
static void recv_one(struct atomq *a, struct atomq_delivery *d)
{
        int rc = atomq_recv(a, d, CALL_TIMEOUT_NS);
        cr_assert_eq(rc, 1, "atomq_recv: %d (%s), want a delivery", rc, rc_text(rc));
}

Test(agents_udp, pubsub_between_udp_connections)
{
        struct atomq_delivery d;
        uint64_t sub;
        daemon_start("5000");
        struct atomq *pub = udp_connect(t.url);
        struct atomq *sb = udp_connect(t.url);
        RC(atomq_subscribe(sb, "t.>", NULL, 5, &sub), 0);
        RC(atomq_subscribe(sb, "t.*.x", "workers", 6, NULL), 0);
        RC(atomq_subscribe(sb, "bad..pattern", NULL, 7, NULL), -EINVAL);
        RC(atomq_subscribe(sb, "t.>", "", 7, NULL), -EINVAL);
        static const char hdr[] = "NATS/1.0\r\nA: b\r\n\r\n";
        struct atomq_msg_opts o = { .storage = ATOMQ_STORAGE_DEFAULT, .headers = hdr,
                                    .headers_len = sizeof(hdr) - 1 };
        for (unsigned i = 0; i < 10; i++) {
                char msg[16];
                snprintf(msg, sizeof(msg), "p%u", i);
                RC(atomq_publish(pub, "t.a", msg, (uint32_t)strlen(msg), i == 0 ? &o : NULL), 0);
        }
        RC(atomq_flush(pub), 0);
        for (unsigned i = 0; i < 10; i++) {
                char msg[16];
                snprintf(msg, sizeof(msg), "p%u", i);
                recv_one(sb, &d);
                cr_assert(bytes_are(d.data, d.len, msg), "got %.*s want %s", (int)d.len,
                          (const char *)d.data, msg);
                cr_assert(d.sid == 5 && d.entity == 0 && d.status == 0);
                cr_assert(d.subject_len == 3 && memcmp(d.subject, "t.a", 3) == 0);
                cr_assert_null(d.reply_subject);
                if (i == 0)
                        cr_assert(d.headers_len == sizeof(hdr) - 1 &&
                                  memcmp(d.headers, hdr, d.headers_len) == 0);
                else
                        cr_assert_eq(d.headers_len, 0);
        }
        /* A queue group member and the plain subscription both match. */
        RC(atomq_publish(pub, "t.q.x", "g", 1, NULL), 0);
        bool got5 = false, got6 = false;
        for (int i = 0; i < 2; i++) {
                recv_one(sb, &d);
                got5 |= d.sid == 5;
                got6 |= d.sid == 6;
        }
        cr_assert(got5 && got6);
        RC(atomq_recv(sb, &d, 0), -EAGAIN);
        RC(atomq_publish(pub, "t.*", "x", 1, NULL), -EINVAL);
        RC(atomq_unsubscribe(sb, sub), 0);
        RC(atomq_unsubscribe(sb, sub), -ENOENT);
        RC(atomq_unsubscribe(sb, 0), -ENOENT);
        RC(atomq_publish(pub, "t.a", "after", 5, NULL), 0);
        RC(atomq_recv(sb, &d, 300 * MS), -ETIMEDOUT);
        cr_assert_eq(atomq_dropped(sb), 0);
        atomq_close(pub);
        atomq_close(sb);
        daemon_stop();
}

/* A UDP connection and a shared-memory agent in one process share the
 * subject space both ways. */
Test(agents_udp, pubsub_between_udp_and_shm)
{
        struct atomq_delivery d;
        daemon_start("5000");
        struct atomq *u = udp_connect(t.url);
        struct atomq *s = NULL;
        RC(atomq_connect(t.sock, &s), 0);
        atomq_set_timeout(s, CALL_TIMEOUT_NS);
        RC(atomq_subscribe(s, "to.shm", NULL, 11, NULL), 0);
        RC(atomq_subscribe(u, "to.udp.>", NULL, 12, NULL), 0);
        RC(atomq_publish(u, "to.shm", "from-udp", 8, NULL), 0);
        recv_one(s, &d);
        cr_assert(bytes_are(d.data, d.len, "from-udp") && d.sid == 11);
        /* A reply handle rides in the publish's frame. */
        struct atomq_msg_opts ro = { .storage = ATOMQ_STORAGE_DEFAULT, .reply = 0x123456789ull };
        RC(atomq_publish(u, "to.shm", "with-reply", 10, &ro), 0);
        recv_one(s, &d);
        cr_assert(bytes_are(d.data, d.len, "with-reply") && d.reply == 0x123456789ull,
                  "reply handle %llx", (unsigned long long)d.reply);
        RC(atomq_publish(s, "to.udp.x", "from-shm", 8, NULL), 0);
        RC(atomq_flush(s), 0);
        recv_one(u, &d);
        cr_assert(bytes_are(d.data, d.len, "from-shm") && d.sid == 12);
        cr_assert(d.subject_len == 8 && memcmp(d.subject, "to.udp.x", 8) == 0);
        /* atomq_fd and atomq_poll_arm: poll wakes for a delivery. A
         * borrowed delivery counts as waiting until it is released. */
        RC(atomq_poll_arm(u), 1);
        atomq_release(u);
        RC(atomq_poll_arm(u), 0);
        RC(atomq_publish(s, "to.udp.y", "polled", 6, NULL), 0);
        RC(atomq_flush(s), 0);
        struct pollfd p = { .fd = atomq_fd(u), .events = POLLIN };
        cr_assert_eq(poll(&p, 1, 5000), 1, "the UDP socket did not become readable");
        recv_one(u, &d);
        cr_assert(bytes_are(d.data, d.len, "polled"));
        atomq_close(s);
        atomq_close(u);
        daemon_stop();
}

/* ---- request / reply ---------------------------------------------------- */

/* A responder on its own thread and connection: answers "svc.upper" in
 * upper case until told to stop; svc.silent is subscribed, never
 * answered. Failures are kept for the test's thread (criterion asserts
 * belong there). */
struct responder {
        const char *url;
        atomic_bool stop;
        atomic_int ready;
        int err;
        int answered;
        pthread_t thread;
};

static void *responder_run(void *arg)
{
        struct responder *r = arg;
        struct atomq *a = NULL;
        struct atomq_delivery d;
        r->err = atomq_connect(r->url, &a);
        if (r->err == 0)
                r->err = atomq_subscribe(a, "svc.upper", NULL, 1, NULL);
        if (r->err == 0)
                r->err = atomq_subscribe(a, "svc.silent", NULL, 2, NULL);
        atomic_store(&r->ready, r->err == 0 ? 1 : -1);
        while (r->err == 0 && !atomic_load(&r->stop)) {
                int rc = atomq_recv(a, &d, 50 * MS);
                if (rc == -ETIMEDOUT)
                        continue;
                if (rc != 1) {
                        r->err = rc;
                        break;
                }
                if (d.sid != 1)
                        continue;
                char up[64];
                uint32_t n = d.len < sizeof(up) ? d.len : sizeof(up);
                for (uint32_t i = 0; i < n; i++) {
                        char c = ((const char *)d.data)[i];
                        up[i] = c >= 'a' && c <= 'z' ? (char)(c - 32) : c;
                }
                r->err = atomq_reply(a, &d, up, n);
                r->answered++;
        }
        atomq_close(a);
        return NULL;
}

static void responder_start(struct responder *r, const char *url)
{
        *r = (struct responder){ .url = url };
        cr_assert_eq(pthread_create(&r->thread, NULL, responder_run, r), 0);
        int64_t deadline = now_ms() + WAIT_MS;
        while (atomic_load(&r->ready) == 0 && now_ms() < deadline)
                nap_ms(2);
        cr_assert_eq(atomic_load(&r->ready), 1, "the responder did not start: %d (%s)", r->err,
                     rc_text(r->err));
}

static void responder_stop(struct responder *r)
{
        atomic_store(&r->stop, true);
        pthread_join(r->thread, NULL);
        cr_assert_eq(r->err, 0, "the responder failed: %d (%s)", r->err, rc_text(r->err));
}

Test(agents_udp, request_reply)
{
        struct responder r;
        struct atomq_delivery d;
        uint64_t inbox, inbox2;
        daemon_start("5000");
        responder_start(&r, t.url);
        struct atomq *a = udp_connect(t.url);
        /* Two requests in flight at once; the replies come through recv. */
        cr_assert_gt(atomq_request(a, "svc.upper", "hello", 5, 2000, 7, &inbox), 0);
        cr_assert_gt(atomq_request(a, "svc.upper", "again", 5, 2000, 8, &inbox2), 0);
        cr_assert_neq(inbox, inbox2);
        for (int i = 0; i < 2; i++) {
                recv_one(a, &d);
                cr_assert_eq(d.status, 0, "status %u", d.status);
                if (d.sid == 7)
                        cr_assert(d.entity == inbox && bytes_are(d.data, d.len, "HELLO"),
                                  "reply %.*s", (int)d.len, (const char *)d.data);
                else
                        cr_assert(d.sid == 8 && d.entity == inbox2 &&
                                  bytes_are(d.data, d.len, "AGAIN"));
        }
        /* Nobody listens: a 503 at once (one worker knows). */
        int64_t t0 = now_ms();
        cr_assert_gt(atomq_request(a, "svc.nobody", "x", 1, 2000, 9, &inbox), 0);
        recv_one(a, &d);
        cr_assert(d.status == 503 && d.sid == 9 && d.entity == inbox, "status %u", d.status);
        cr_assert_lt(now_ms() - t0, 1000);
        /* A responder that never answers: 408 when the time runs out. */
        t0 = now_ms();
        cr_assert_gt(atomq_request(a, "svc.silent", "x", 1, 300, 10, &inbox), 0);
        recv_one(a, &d);
        int64_t took = now_ms() - t0;
        cr_assert(d.status == 408 && d.sid == 10, "status %u", d.status);
        cr_assert(took >= 250 && took < 2000, "408 after %lld ms", (long long)took);
        RC(atomq_request(a, "svc.*", "x", 1, 300, 10, &inbox), -EINVAL);
        RC(atomq_request(a, "svc.upper", "x", 1, 0, 10, &inbox), -EINVAL);
        atomq_close(a);
        responder_stop(&r);
        cr_assert_eq(r.answered, 2);
        daemon_stop();
}

/* A shared-memory requester answered by a UDP responder: the delivery
 * carries the requester's reply handle, and atomq_reply sends there. */
Test(agents_udp, shm_request_udp_reply)
{
        struct responder r;
        struct atomq_delivery d;
        uint64_t inbox;
        daemon_start("5000");
        responder_start(&r, t.url);
        struct atomq *s = NULL;
        RC(atomq_connect(t.sock, &s), 0);
        atomq_set_timeout(s, CALL_TIMEOUT_NS);
        RC(atomq_request(s, "svc.upper", "shm", 3, 2000, 3, &inbox), 1);
        recv_one(s, &d);
        cr_assert(d.status == 0 && d.sid == 3 && bytes_are(d.data, d.len, "SHM"),
                  "status %u, %.*s", d.status, (int)d.len, (const char *)d.data);
        atomq_close(s);
        responder_stop(&r);
        daemon_stop();
}

/* A UDP requester answered by a shared-memory responder: the request's
 * delivery names the requester by its reply subject (the session's inbox,
 * _AQD.<session>.<seq>) and carries no reply handle, and atomq_reply
 * publishes the answer there. First by hand, to see the delivery; then
 * through the threaded responder, whose every atomq_reply must succeed.
 * A delivery with neither a handle nor a subject is still -EINVAL. */
Test(agents_udp, udp_request_shm_reply)
{
        struct responder r;
        struct atomq_delivery d;
        uint64_t inbox, inbox2;
        daemon_start("5000");
        struct atomq *u = udp_connect(t.url);
        struct atomq *s = NULL;
        RC(atomq_connect(t.sock, &s), 0);
        atomq_set_timeout(s, CALL_TIMEOUT_NS);
        RC(atomq_subscribe(s, "svc.hand", NULL, 21, NULL), 0);
        cr_assert_gt(atomq_request(u, "svc.hand", "ping", 4, 2000, 5, &inbox), 0);
        recv_one(s, &d);
        cr_assert(d.sid == 21 && bytes_are(d.data, d.len, "ping"));
        cr_assert_eq(d.reply, 0, "reply handle %llx", (unsigned long long)d.reply);
        cr_assert(d.reply_subject != NULL && d.reply_subject_len > 5 &&
                          memcmp(d.reply_subject, "_AQD.", 5) == 0,
                  "reply subject %.*s", (int)d.reply_subject_len,
                  d.reply_subject != NULL ? d.reply_subject : "");
        RC(atomq_reply(s, &d, "pong", 4), 0);
        recv_one(u, &d);
        cr_assert(d.status == 0 && d.sid == 5 && d.entity == inbox &&
                          bytes_are(d.data, d.len, "pong"),
                  "status %u, sid %u, %.*s", d.status, d.sid, (int)d.len, (const char *)d.data);
        /* Neither a reply handle nor a reply subject: a plain publish. */
        RC(atomq_publish(u, "svc.hand", "plain", 5, NULL), 0);
        recv_one(s, &d);
        cr_assert(bytes_are(d.data, d.len, "plain") && d.reply == 0 && d.reply_subject == NULL);
        RC(atomq_reply(s, &d, "x", 1), -EINVAL);
        atomq_close(s);
        /* The same through a responder on its own thread, twice at once. */
        responder_start(&r, t.sock);
        cr_assert_gt(atomq_request(u, "svc.upper", "one", 3, 2000, 6, &inbox), 0);
        cr_assert_gt(atomq_request(u, "svc.upper", "two", 3, 2000, 7, &inbox2), 0);
        for (int i = 0; i < 2; i++) {
                recv_one(u, &d);
                cr_assert_eq(d.status, 0, "status %u", d.status);
                if (d.sid == 6)
                        cr_assert(d.entity == inbox && bytes_are(d.data, d.len, "ONE"));
                else
                        cr_assert(d.sid == 7 && d.entity == inbox2 &&
                                  bytes_are(d.data, d.len, "TWO"));
        }
        atomq_close(u);
        responder_stop(&r);
        cr_assert_eq(r.answered, 2);
        daemon_stop();
}

/* ---- what UDP does not carry -------------------------------------------- */

Test(agents_udp, unsupported_calls)
{
        struct atomq_batch b;
        struct atomq_channel ch;
        uint64_t h = 0, hs[1];
        const char *names[] = { "x.y" };
        daemon_start("5000");
        struct atomq *a = udp_connect(t.url);
        RC(atomq_create(a, ATOMQ_MODE_MAILBOX, "box.ns", NULL, &h), 0);
        RC(atomq_create_many(a, ATOMQ_MODE_MAILBOX, names, 1, NULL, hs), -ENOTSUP);
        RC(atomq_destroy_many(a, &h, 1), -ENOTSUP);
        RC(atomq_lookup(a, "box.ns", &h), -ENOTSUP);
        RC(atomq_get(a, h, "k", &b), -ENOTSUP);
        RC(atomq_watch(a, h, NULL, 1, 0, 0), -ENOTSUP);
        RC(atomq_unwatch(a, h, NULL, 1), -ENOTSUP);
        RC(atomq_read(a, h, NULL, 0, 1, &b), -ENOTSUP);
        RC(atomq_commit(a, h, "g", 0), -ENOTSUP);
        RC(atomq_channel_open(a, "chan", 0, 0, &ch), -ENOTSUP);
        RC(atomq_channel_join(a, "chan", &ch), -ENOTSUP);
        /* Arguments the frames have no field for. */
        struct atomq_create_opts co = { .ttl_ms = 1000, .ttl_idle = 1 };
        RC(atomq_create(a, ATOMQ_MODE_MAILBOX, "box.idle", &co, NULL), -ENOTSUP);
        struct atomq_msg_opts mem = { .storage = ATOMQ_STORAGE_MEM };
        RC(atomq_send(a, h, NULL, NULL, "x", 1, &mem, NULL), -ENOTSUP);
        struct atomq_msg_opts end = { .storage = ATOMQ_STORAGE_DEFAULT, .end = 1 };
        RC(atomq_send(a, h, NULL, NULL, "x", 1, &end, NULL), -ENOTSUP);
        RC(atomq_send(a, 0, "box.ns", "another.key", "x", 1, NULL, NULL), -ENOTSUP);
        RC(atomq_fetch(a, h, NULL, 1, 1, &b), -ENOTSUP);
        /* The session is still fine. */
        RC(atomq_send(a, 0, "box.ns", "box.ns", "x", 1, NULL, NULL), 0);
        atomq_close(a);
        daemon_stop();
}

/* ---- loss ------------------------------------------------------------- */

#define LOSS_MSGS 60u

/* Every 3rd datagram lost each way, every 4th forwarded one copied: each
 * acknowledged send is stored once, fetch and ack still empty the box,
 * nothing acked comes back, subscriptions and requests still work. */
Test(agents_udp, loss_every_third_datagram)
{
        struct proxy p;
        struct responder r;
        struct atomq_batch b;
        struct atomq_delivery d;
        char url[80];
        uint64_t box, sub, inbox;
        bool acked[LOSS_MSGS] = { false };
        daemon_start("5000");
        responder_start(&r, t.url);
        proxy_start(&p, 3, 4);
        snprintf(url, sizeof(url), "udp://127.0.0.1:%u?timeout_ms=5000", p.port);
        struct atomq *a = udp_connect(url);
        RC(atomq_create(a, ATOMQ_MODE_MAILBOX, "box.loss", NULL, &box), 0);
        for (unsigned i = 0; i < LOSS_MSGS; i++) {
                char msg[16];
                snprintf(msg, sizeof(msg), "L%u", i);
                RC(atomq_send(a, box, NULL, NULL, msg, (uint32_t)strlen(msg), NULL, NULL), 0);
        }
        unsigned left = LOSS_MSGS, fetches = 0, redeliveries = 0;
        int64_t deadline = now_ms() + 30000;
        while (left > 0) {
                cr_assert_lt(now_ms(), deadline, "%u messages never came", left);
                int n = atomq_fetch(a, box, NULL, 0, 16, &b);
                cr_assert_geq(n, 0, "fetch: %d (%s)", n, rc_text(n));
                fetches++;
                uint64_t seqs[16];
                int k = 0;
                while (atomq_batch_next(&b, &d) == 1) {
                        unsigned i;
                        cr_assert(d.len >= 2 && sscanf((const char *)d.data, "L%u", &i) == 1 &&
                                  i < LOSS_MSGS, "a message that was never sent");
                        cr_assert(!acked[i], "L%u came again after its ack", i);
                        redeliveries += (d.flags & ATOMQ_DELIVERY_F_REDELIVERY) != 0;
                        acked[i] = true;
                        seqs[k++] = d.seq;
                        left--;
                }
                for (int j = 0; j < k; j++)
                        RC(atomq_ack(a, box, seqs[j]), 0);
                /* Messages whose datagram was lost come back after the ack
                 * wait; fetching every few ms meanwhile would spend their
                 * deliveries (atomqd drops one after 5) on answers that a
                 * periodic loss pattern may hit every time. */
                if (n == 0)
                        nap_ms(atoi(ACK_WAIT_MS) + 100);
        }
        /* Nothing acked comes back after the ack wait, seen from a
         * loss-free connection too. */
        nap_ms(2 * atoi(ACK_WAIT_MS));
        RC(atomq_fetch(a, box, NULL, 0, 64, &b), 0);
        struct atomq *direct = udp_connect(t.url);
        RC(atomq_fetch(direct, 0, "box.loss", 0, 64, &b), 0);
        /* A subscription made once (its copies are answered from the
         * window), and requests that come through. */
        RC(atomq_subscribe(a, "loss.x", NULL, 1, &sub), 0);
        RC(atomq_unsubscribe(a, sub), 0);
        RC(atomq_unsubscribe(a, sub), -ENOENT);
        for (unsigned i = 0; i < 6; i++) {
                cr_assert_gt(atomq_request(a, "svc.upper", "lossy", 5, 3000, 20 + i, &inbox), 0);
                recv_one(a, &d);
                cr_assert(d.status == 0 && d.sid == 20 + i && d.entity == inbox &&
                                  bytes_are(d.data, d.len, "LOSSY"),
                          "request %u: status %u", i, d.status);
        }
        atomq_close(direct);
        atomq_close(a);
        proxy_stop(&p);
        responder_stop(&r);
        cr_assert_gt(atomic_load(&p.dropped), 0);
        cr_assert_gt(atomic_load(&p.copied), 0);
        cr_log_info("loss: %llu datagrams dropped, %llu copied, %u fetches, %u redeliveries",
                    (unsigned long long)atomic_load(&p.dropped),
                    (unsigned long long)atomic_load(&p.copied), fetches, redeliveries);
        daemon_stop();
}

/* ---- the lease ---------------------------------------------------------- */

/* A connection waiting in atomq_recv keeps its session with PINGs; one
 * not used for a lease has lost it and says so. */
Test(agents_udp, lease_kept_while_waiting)
{
        struct atomq_delivery d;
        uint64_t h;
        daemon_start("1500");
        struct atomq *idle = udp_connect(t.url);
        struct atomq *w = udp_connect(t.url);
        struct atomq *s = NULL;
        RC(atomq_connect(t.sock, &s), 0);
        RC(atomq_subscribe(w, "lease.x", NULL, 4, NULL), 0);
        RC(atomq_recv(w, &d, 2500 * MS), -ETIMEDOUT);
        RC(atomq_publish(s, "lease.x", "still here", 10, NULL), 0);
        RC(atomq_flush(s), 0);
        recv_one(w, &d);
        cr_assert(bytes_are(d.data, d.len, "still here") && d.sid == 4);
        RC(atomq_create(w, ATOMQ_MODE_MAILBOX, NULL, NULL, &h), 0);
        /* The idle one sent nothing for longer than the lease. */
        RC(atomq_create(idle, ATOMQ_MODE_MAILBOX, NULL, NULL, &h), -ECONNRESET);
        RC(atomq_publish(idle, "lease.x", "x", 1, NULL), -ECONNRESET);
        RC(atomq_recv(idle, &d, 0), -ECONNRESET);
        atomq_close(idle);
        atomq_close(w);
        atomq_close(s);
        daemon_stop();
}
