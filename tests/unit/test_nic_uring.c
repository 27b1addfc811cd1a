/* test_nic_uring.c - the io_uring TCP backend (nic/nic_uring.c) against
 * real clients on 127.0.0.1: echo of small and 4 MiB payloads (order,
 * partial sends, provided buffers running out), 200 connections at once,
 * the max_conns limit, on_close exactly once, close with and without
 * flush, stale ids, the output bound, shutdown, and the idle sleep: woken
 * by a futex notify or a client's bytes, or timing out.
 *
 * The echo server is initialised on the test's thread and run on a thread
 * of its own (poll, calls from the test, flush, wait), as a worker would
 * be; the test thread plays the clients and asks the server thread to run
 * functions (run_on_server) for what must happen on its thread.
 *
 *      meson test -C build nic_uring
 *      build/tests/test_nic_uring --verbose
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "nic/nic_uring.h"
#include "shm/shm_clock.h"
#include "shm/shm_log.h"

#define MS 1000000ll
#define EVENTS_MAX 4096u
#define MIB (1024u * 1024u)

/* --- the echo server ------------------------------------------------------ */

enum ev_kind { EV_OPEN = 1, EV_CLOSE = 2 };

struct ev {
        uint32_t kind;
        uint32_t id;
        uint32_t reason;
};

static struct {
        struct nic_uring *n;
        pthread_t thread;
        bool threaded;
        _Atomic bool stop;
        struct shm_wake wake;            /* the test thread wakes the server */
        void (*call_fn)(void *arg);      /* run on the server thread */
        void *call_arg;
        _Atomic uint32_t call_seq;       /* written by the test thread */
        _Atomic uint32_t done_seq;       /* written by the server thread */
        _Atomic bool echo;               /* on_data sends the bytes back */
        _Atomic bool room;               /* on_data: to everyone; "kill" ends the others */
        uint32_t live[8];                /* open ids, for room mode (server thread) */
        /* Written by the callbacks' thread; count published with release. */
        struct ev evs[EVENTS_MAX];
        _Atomic uint32_t nevs;
        _Atomic uint32_t echo_errors;
        _Atomic uint32_t loop_errors;
        _Atomic uint64_t rx_bytes;
} S;

static void ev_add(uint32_t kind, uint32_t id, uint32_t reason)
{
        uint32_t i = atomic_load_explicit(&S.nevs, memory_order_relaxed);
        if (i >= EVENTS_MAX)
                return;
        S.evs[i] = (struct ev){ kind, id, reason };
        /* Pairs with the acquire load in ev_count/ev_nth. */
        atomic_store_explicit(&S.nevs, i + 1, memory_order_release);
}

static void live_set(uint32_t from, uint32_t to)
{
        for (int i = 0; i < 8; i++)
                if (S.live[i] == from) {
                        S.live[i] = to;
                        return;
                }
}

static void on_open(void *arg, uint32_t id)
{
        (void)arg;
        live_set(0, id);
        ev_add(EV_OPEN, id, 0);
}

/* Room mode: the callback of one connection sends to, and closes, others. */
static void room_data(uint32_t id, const uint8_t *data, size_t len)
{
        bool kill = len == 4 && memcmp(data, "kill", 4) == 0;
        for (int i = 0; i < 8; i++) {
                uint32_t to = S.live[i];
                if (to == 0 || (kill && to == id))
                        continue;
                if (nic_uring_send(S.n, to, kill ? "bye\n" : (const char *)data,
                                   kill ? 4 : len) != 0)
                        atomic_fetch_add(&S.echo_errors, 1);
                if (kill)
                        nic_uring_close(S.n, to, true);
        }
}

static void on_data(void *arg, uint32_t id, const uint8_t *data, size_t len)
{
        (void)arg;
        atomic_fetch_add(&S.rx_bytes, len);
        if (atomic_load(&S.room))
                room_data(id, data, len);
        else if (atomic_load(&S.echo) && nic_uring_send(S.n, id, data, len) != 0)
                atomic_fetch_add(&S.echo_errors, 1);
}

static void on_close(void *arg, uint32_t id, enum nic_close_reason reason)
{
        (void)arg;
        live_set(id, 0);
        ev_add(EV_CLOSE, id, (uint32_t)reason);
}

/* Datagrams are echoed to their sender (with udp on). */
static void on_dgram(void *arg, const struct nic_dgram_addr *from, const uint8_t *data, size_t len)
{
        (void)arg;
        if (nic_uring_udp_send(S.n, from, data, len) != 0)
                atomic_fetch_add(&S.echo_errors, 1);
}

static const struct nic_uring_ops ops = { on_open, on_data, on_close, on_dgram };

/* Events of a kind (and id, unless id is 0). */
static uint32_t ev_count(uint32_t kind, uint32_t id)
{
        uint32_t n = atomic_load_explicit(&S.nevs, memory_order_acquire), count = 0;
        for (uint32_t i = 0; i < n; i++)
                count += S.evs[i].kind == kind && (id == 0 || S.evs[i].id == id);
        return count;
}

/* The nth (from 0) event of a kind, waited for (bounded). */
static struct ev ev_nth(uint32_t kind, uint32_t nth)
{
        uint64_t deadline_ns = shm_clock_ns() + 5000 * MS;
        for (;;) {
                uint32_t n = atomic_load_explicit(&S.nevs, memory_order_acquire), seen = 0;
                for (uint32_t i = 0; i < n; i++)
                        if (S.evs[i].kind == kind && seen++ == nth)
                                return S.evs[i];
                cr_assert_lt(shm_clock_ns(), deadline_ns, "no event %u #%u (%u events)", kind,
                             nth, n);
                usleep(200);
        }
}

static int server_calls(void)
{
        /* Pairs with the release store in run_on_server: fn and arg are set. */
        uint32_t seq = atomic_load_explicit(&S.call_seq, memory_order_acquire);
        if (seq == atomic_load_explicit(&S.done_seq, memory_order_relaxed))
                return 0;
        S.call_fn(S.call_arg);
        /* Pairs with the acquire load in run_on_server: the call's writes. */
        atomic_store_explicit(&S.done_seq, seq, memory_order_release);
        return 1;
}

/* The worker loop of nic_uring.h, with the test's calls as its other work. */
static void *server_main(void *arg)
{
        (void)arg;
        struct shm_wake *w = &S.wake;
        while (!atomic_load(&S.stop)) {
                int work = nic_uring_poll(S.n);
                if (work < 0)
                        atomic_fetch_add(&S.loop_errors, 1);
                work += server_calls();
                if (nic_uring_flush(S.n) < 0)
                        atomic_fetch_add(&S.loop_errors, 1);
                if (work != 0)
                        continue;
                uint32_t seq = shm_wake_prepare(w);
                if (atomic_load(&S.call_seq) == atomic_load(&S.done_seq) && !atomic_load(&S.stop)) {
                        int rc = nic_uring_wait(S.n, &w, &seq, 1, 1000 * MS);
                        if (rc != 0 && rc != -ETIMEDOUT && rc != -EINTR)
                                atomic_fetch_add(&S.loop_errors, 1);
                }
                shm_wake_cancel(w);
        }
        return NULL;
}

static void run_on_server(void (*fn)(void *), void *arg)
{
        S.call_fn = fn;
        S.call_arg = arg;
        uint32_t seq = atomic_load(&S.call_seq) + 1;
        atomic_store_explicit(&S.call_seq, seq, memory_order_release);
        shm_wake_notify(&S.wake);
        uint64_t deadline_ns = shm_clock_ns() + 5000 * MS;
        while (atomic_load_explicit(&S.done_seq, memory_order_acquire) != seq) {
                cr_assert_lt(shm_clock_ns(), deadline_ns, "the server thread does not run calls");
                usleep(100);
        }
}

static void cfg_test(struct nic_uring_config *c)
{
        nic_uring_config_default(c);
        c->port = 0;
        c->reuseport = false;
        c->max_conns = 256;
        c->ring_entries = 256;
        c->buf_count = 64;      /* 256 KiB: a 4 MiB echo runs the buffers out */
        c->buf_bytes = 4096;
        c->out_max_bytes = 16 * MIB;
}

static struct nic_uring *nic_new(const struct nic_uring_config *c)
{
        struct nic_uring *n = calloc(1, nic_uring_size());
        cr_assert_not_null(n);
        int rc = nic_uring_init(n, c, &ops, NULL);
        cr_assert_eq(rc, 0, "nic_uring_init: %d", rc);
        return n;
}

#ifdef NIC_FAULT_INJECT
/* Built with -DNIC_FAULT_INJECT: 1 in every fault.every submissions fails
 * with fault.err (server_start sets it on the new server). */
static struct {
        uint32_t every;
        int err;
} fault;
#endif

/* Initialised here, run on its own thread: the ring's single issuer is the
 * thread that first polls, not the one that initialised it. */
static uint16_t server_start(const struct nic_uring_config *c)
{
        shm_wake_init(&S.wake);
        atomic_store(&S.echo, true);
        S.n = nic_new(c);
#ifdef NIC_FAULT_INJECT
        nic_uring_fault_set(S.n, fault.every, fault.err);
#endif
        cr_assert_eq(pthread_create(&S.thread, NULL, server_main, NULL), 0);
        S.threaded = true;
        return nic_uring_port(S.n);
}

static void server_join(void)
{
        if (!S.threaded)
                return;
        atomic_store(&S.stop, true);
        shm_wake_notify(&S.wake);
        pthread_join(S.thread, NULL);
        S.threaded = false;
}

/* The suite's fini: fini runs on the test's thread, not the issuer's. */
static void server_stop(void)
{
        server_join();
        if (S.n != NULL) {
                nic_uring_fini(S.n);
                free(S.n);
                S.n = NULL;
        }
}

TestSuite(nic_uring, .fini = server_stop, .timeout = 30);

static struct nic_uring_stats stats_copy;

static void stats_get(void *arg)
{
        (void)arg;
        stats_copy = *nic_uring_stats(S.n);
}

static struct nic_uring_stats server_stats(void)
{
        run_on_server(stats_get, NULL);
        return stats_copy;
}

/* --- clients ---------------------------------------------------------------- */

static int client_connect_buf(uint16_t port, int rcvbuf)
{
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_geq(fd, 0);
        struct timeval tv = { .tv_sec = 5 };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (rcvbuf > 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
                /* Without DEFER_TASKRUN (kernels before 6.1) the ring's task
                 * work interrupts the issuing thread's blocking calls: the
                 * connect goes on, and its result is SO_ERROR. */
                cr_assert_eq(errno, EINTR, "connect: %s", strerror(errno));
                struct pollfd p = { .fd = fd, .events = POLLOUT };
                int err = -1;
                socklen_t len = sizeof(err);
                cr_assert_eq(poll(&p, 1, 5000), 1);
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
                cr_assert_eq(err, 0, "connect: %s", strerror(err));
        }
        return fd;
}

static int client_connect(uint16_t port)
{
        return client_connect_buf(port, 0);
}

static void write_all(int fd, const void *data, size_t len)
{
        const uint8_t *p = data;
        while (len > 0) {
                ssize_t k = write(fd, p, len);
                cr_assert_gt(k, 0, "write: %s", strerror(errno));
                p += k;
                len -= (size_t)k;
        }
}

static void read_all(int fd, void *data, size_t len)
{
        uint8_t *p = data;
        while (len > 0) {
                ssize_t k = read(fd, p, len);
                cr_assert_gt(k, 0, "read: %zd (%s), %zu bytes short", k, strerror(errno), len);
                p += k;
                len -= (size_t)k;
        }
}

/* Reads until the server closes (EOF or reset); returns the bytes read. */
static size_t read_to_end(int fd)
{
        static uint8_t sink[65536];
        size_t total = 0;
        for (;;) {
                ssize_t k = read(fd, sink, sizeof(sink));
                if (k == 0 || (k < 0 && errno == ECONNRESET))
                        return total;
                cr_assert_gt(k, 0, "read: %s (no close from the server)", strerror(errno));
                total += (size_t)k;
        }
}

static uint8_t pattern(size_t i)
{
        return (uint8_t)(i * 7 + (i >> 12));
}

/* --- echo ------------------------------------------------------------------- */

Test(nic_uring, echoes_small_messages)
{
        struct nic_uring_config c;
        cfg_test(&c);
        uint16_t port = server_start(&c);
        cr_assert_neq(port, 0, "port 0 picks a port");
        int fd = client_connect(port);
        struct ev open = ev_nth(EV_OPEN, 0);
        cr_assert_neq(open.id, 0);
        cr_assert_eq(open.id & (1u << 30), 0, "connection ids keep bit 30 clear");
        for (int i = 0; i < 100; i++) {
                char msg[32], back[32];
                int len = snprintf(msg, sizeof(msg), "message %d\n", i);
                write_all(fd, msg, (size_t)len);
                read_all(fd, back, (size_t)len);
                cr_assert_arr_eq(back, msg, (size_t)len);
        }
        close(fd);
        cr_assert_eq(ev_nth(EV_CLOSE, 0).id, open.id);
}

Test(nic_uring, echoes_4mib_in_order)
{
        struct nic_uring_config c;
        cfg_test(&c);
        uint16_t port = server_start(&c);
        /* A small receive window makes the server's sends partial. */
        int fd = client_connect_buf(port, 32 * 1024);
        const size_t total = 4 * MIB;
        size_t sent = 0, got = 0;
        static uint8_t out[65536], in[65536];
        uint64_t deadline_ns = shm_clock_ns() + 8000 * MS;
        while (got < total) {
                cr_assert_lt(shm_clock_ns(), deadline_ns, "%zu of %zu bytes back", got, total);
                struct pollfd p = { .fd = fd, .events = POLLIN | (sent < total ? POLLOUT : 0) };
                cr_assert_geq(poll(&p, 1, 1000), 0);
                if ((p.revents & POLLOUT) && sent < total) {
                        size_t len = total - sent < sizeof(out) ? total - sent : sizeof(out);
                        for (size_t i = 0; i < len; i++)
                                out[i] = pattern(sent + i);
                        ssize_t k = send(fd, out, len, MSG_DONTWAIT);
                        if (k > 0)
                                sent += (size_t)k;
                }
                if (p.revents & POLLIN) {
                        ssize_t k = recv(fd, in, sizeof(in), MSG_DONTWAIT);
                        cr_assert(k > 0 || errno == EAGAIN, "recv: %zd %s", k, strerror(errno));
                        for (ssize_t i = 0; i < k; i++)
                                cr_assert_eq(in[i], pattern(got + (size_t)i),
                                             "byte %zu out of order", got + (size_t)i);
                        got += k > 0 ? (size_t)k : 0;
                }
        }
        struct nic_uring_stats st = server_stats();
        cr_assert_eq(st.rx_bytes, total);
        cr_assert_eq(st.tx_bytes, total);
        cr_assert_eq(atomic_load(&S.echo_errors), 0);
        cr_log_info("4 MiB echo: %llu submits, %llu recv_nobufs",
                    (unsigned long long)st.submits, (unsigned long long)st.recv_nobufs);
        close(fd);
        cr_assert_eq(ev_nth(EV_CLOSE, 0).reason, NIC_CLOSE_PEER);
}

Test(nic_uring, serves_200_connections_at_once)
{
        enum { CONNS = 200 };
        struct nic_uring_config c;
        cfg_test(&c);
        uint16_t port = server_start(&c);
        int fds[CONNS];
        for (int i = 0; i < CONNS; i++)
                fds[i] = client_connect(port);
        for (int i = 0; i < CONNS; i++) {
                char msg[32];
                int len = snprintf(msg, sizeof(msg), "conn %d\n", i);
                write_all(fds[i], msg, (size_t)len);
        }
        for (int i = 0; i < CONNS; i++) {
                char msg[32], back[32];
                int len = snprintf(msg, sizeof(msg), "conn %d\n", i);
                read_all(fds[i], back, (size_t)len);
                cr_assert_arr_eq(back, msg, (size_t)len, "connection %d", i);
        }
        for (int i = 0; i < CONNS; i++)
                close(fds[i]);
        ev_nth(EV_CLOSE, CONNS - 1);
        struct nic_uring_stats st = server_stats();
        cr_assert_eq(st.accepted, CONNS);
        cr_assert_eq(st.closed, CONNS);
        cr_assert_eq(st.refused, 0);
        cr_assert_eq(ev_count(EV_OPEN, 0), CONNS);
}

Test(nic_uring, refuses_connections_beyond_max_conns)
{
        struct nic_uring_config c;
        cfg_test(&c);
        c.max_conns = 2;
        uint16_t port = server_start(&c);
        int a = client_connect(port), b = client_connect(port);
        ev_nth(EV_OPEN, 1);
        int extra = client_connect(port);
        cr_assert_eq(read_to_end(extra), 0, "the third connection is closed at once");
        close(extra);
        cr_assert_eq(server_stats().refused, 1);
        cr_assert_eq(ev_count(EV_OPEN, 0), 2);
        char back[4];
        write_all(b, "bee", 3);
        read_all(b, back, 3);
        cr_assert_arr_eq(back, "bee", 3);
        /* A closed connection frees its slot for the next one. */
        close(a);
        ev_nth(EV_CLOSE, 0);
        int d = client_connect(port);
        write_all(d, "dee", 3);
        read_all(d, back, 3);
        cr_assert_arr_eq(back, "dee", 3);
        cr_assert_eq(server_stats().accepted, 3);
        close(b);
        close(d);
}

/* --- close -------------------------------------------------------------------- */

Test(nic_uring, callbacks_send_to_and_close_other_connections)
{
        struct nic_uring_config c;
        cfg_test(&c);
        uint16_t port = server_start(&c);
        atomic_store(&S.room, true);
        int fds[3];
        for (int i = 0; i < 3; i++) {
                fds[i] = client_connect(port);
                ev_nth(EV_OPEN, (uint32_t)i);
        }
        char back[8];
        write_all(fds[1], "hey!", 4);
        for (int i = 0; i < 3; i++) {
                read_all(fds[i], back, 4);
                cr_assert_arr_eq(back, "hey!", 4, "client %d", i);
        }
        /* From the callback of client 0: "bye" to the others, then a
         * flushing close of each. */
        uint32_t killer = ev_nth(EV_OPEN, 0).id;
        write_all(fds[0], "kill", 4);
        for (int i = 1; i < 3; i++) {
                read_all(fds[i], back, 4);
                cr_assert_arr_eq(back, "bye\n", 4);
                cr_assert_eq(read_to_end(fds[i]), 0);
                close(fds[i]);
        }
        ev_nth(EV_CLOSE, 1);
        cr_assert_eq(ev_count(EV_CLOSE, 0), 2);
        cr_assert_eq(ev_count(EV_CLOSE, killer), 0);
        cr_assert_eq(ev_nth(EV_CLOSE, 0).reason, NIC_CLOSE_LOCAL);
        cr_assert_eq(ev_nth(EV_CLOSE, 1).reason, NIC_CLOSE_LOCAL);
        write_all(fds[0], "solo", 4);
        read_all(fds[0], back, 4);
        cr_assert_arr_eq(back, "solo", 4);
        cr_assert_eq(atomic_load(&S.echo_errors), 0);
        close(fds[0]);
}

struct probe {
        uint32_t id;
        int send_rc;
        int reserve_err;
        size_t pending;
        size_t bytes;
};

static void probe_stale(void *arg)
{
        struct probe *p = arg;
        p->send_rc = nic_uring_send(S.n, p->id, "x", 1);
        p->pending = nic_uring_pending(S.n, p->id);
        void *room = nic_uring_send_reserve(S.n, p->id, 8, &p->reserve_err);
        cr_assert_null(room);
        nic_uring_send_commit(S.n, p->id, 0);   /* ignored for a stale id */
        nic_uring_close(S.n, p->id, false);     /* no on_close for a stale id */
}

Test(nic_uring, peer_close_calls_on_close_once)
{
        struct nic_uring_config c;
        cfg_test(&c);
        uint16_t port = server_start(&c);
        int fd = client_connect(port);
        uint32_t id = ev_nth(EV_OPEN, 0).id;
        char back[2];
        write_all(fd, "hi", 2);
        read_all(fd, back, 2);
        close(fd);
        struct ev e = ev_nth(EV_CLOSE, 0);
        cr_assert_eq(e.id, id);
        cr_assert_eq(e.reason, NIC_CLOSE_PEER);
        struct probe p = { .id = id };
        run_on_server(probe_stale, &p);
        usleep(50 * 1000);
        run_on_server(probe_stale, &p);
        cr_assert_eq(ev_count(EV_CLOSE, id), 1, "on_close exactly once");
        cr_assert_eq(p.send_rc, -ESTALE);
        cr_assert_eq(server_stats().closed, 1);
}

Test(nic_uring, stale_id_is_refused_after_slot_reuse)
{
        struct nic_uring_config c;
        cfg_test(&c);
        c.max_conns = 1;
        uint16_t port = server_start(&c);
        int a = client_connect(port);
        uint32_t old = ev_nth(EV_OPEN, 0).id;
        close(a);
        ev_nth(EV_CLOSE, 0);
        struct probe p = { .id = old };
        run_on_server(probe_stale, &p);
        cr_assert_eq(p.send_rc, -ESTALE);
        cr_assert_eq(p.reserve_err, -ESTALE);
        cr_assert_eq(p.pending, 0);
        /* The one slot again, under a new generation. */
        int b = client_connect(port);
        uint32_t id = ev_nth(EV_OPEN, 1).id;
        cr_assert_eq(id & (NIC_CONNS_MAX - 1), old & (NIC_CONNS_MAX - 1));
        cr_assert_neq(id, old);
        run_on_server(probe_stale, &p);
        cr_assert_eq(p.send_rc, -ESTALE, "the old id never reaches the new client");
        struct probe never = { .id = 0 };
        run_on_server(probe_stale, &never);
        cr_assert_eq(never.send_rc, -ESTALE, "id 0 is never valid");
        cr_assert_eq(ev_count(EV_CLOSE, 0), 1);
        char back[3];
        write_all(b, "new", 3);
        read_all(b, back, 3);
        cr_assert_arr_eq(back, "new", 3);
        close(b);
}

static void send_then_close(void *arg)
{
        struct probe *p = arg;
        static uint8_t chunk[65536];
        for (size_t off = 0; off < p->bytes; off += sizeof(chunk)) {
                for (size_t i = 0; i < sizeof(chunk); i++)
                        chunk[i] = pattern(off + i);
                p->send_rc = nic_uring_send(S.n, p->id, chunk, sizeof(chunk));
                if (p->send_rc != 0)
                        return;
        }
        nic_uring_close(S.n, p->id, p->reserve_err == 0);       /* flush? */
        p->pending = nic_uring_pending(S.n, p->id);
        /* Closing: the id takes no more output. */
        p->reserve_err = nic_uring_send(S.n, p->id, "x", 1);
}

Test(nic_uring, close_with_flush_delivers_pending_output)
{
        struct nic_uring_config c;
        cfg_test(&c);
        uint16_t port = server_start(&c);
        atomic_store(&S.echo, false);
        int fd = client_connect(port);
        struct probe p = { .id = ev_nth(EV_OPEN, 0).id, .bytes = 2 * MIB, .reserve_err = 0 };
        run_on_server(send_then_close, &p);
        cr_assert_eq(p.send_rc, 0);
        cr_assert_eq(p.pending, 2 * MIB, "nothing sent before the flush");
        cr_assert_eq(p.reserve_err, -ESTALE);
        static uint8_t in[2 * MIB];
        read_all(fd, in, sizeof(in));
        for (size_t i = 0; i < sizeof(in); i++)
                cr_assert_eq(in[i], pattern(i), "byte %zu", i);
        cr_assert_eq(read_to_end(fd), 0, "end of stream after the output");
        struct ev e = ev_nth(EV_CLOSE, 0);
        cr_assert_eq(e.id, p.id);
        cr_assert_eq(e.reason, NIC_CLOSE_LOCAL);
        close(fd);
}

Test(nic_uring, close_without_flush_drops_output)
{
        struct nic_uring_config c;
        cfg_test(&c);
        uint16_t port = server_start(&c);
        atomic_store(&S.echo, false);
        int fd = client_connect(port);
        struct probe p = { .id = ev_nth(EV_OPEN, 0).id, .bytes = 2 * MIB, .reserve_err = 1 };
        run_on_server(send_then_close, &p);
        cr_assert_eq(p.send_rc, 0);
        cr_assert_eq(read_to_end(fd), 0, "nothing sent once closed without flush");
        struct ev e = ev_nth(EV_CLOSE, 0);
        cr_assert_eq(e.id, p.id);
        cr_assert_eq(e.reason, NIC_CLOSE_LOCAL);
        close(fd);
}

/* --- the output bound ----------------------------------------------------------- */

struct fill {
        uint32_t id;
        size_t appended;        /* this call */
        size_t pending;
        int last_rc;
        int reserve_err;
        bool unchanged;         /* -ENOBUFS appended nothing */
};

/* Appends 16 KiB chunks until refused. */
static void fill_output(void *arg)
{
        struct fill *f = arg;
        static uint8_t chunk[16384];
        f->appended = 0;
        f->unchanged = true;
        for (int i = 0; i < 1024; i++) {
                size_t before = nic_uring_pending(S.n, f->id);
                f->last_rc = nic_uring_send(S.n, f->id, chunk, sizeof(chunk));
                if (f->last_rc != 0) {
                        f->unchanged = nic_uring_pending(S.n, f->id) == before;
                        break;
                }
                f->appended += sizeof(chunk);
        }
        f->pending = nic_uring_pending(S.n, f->id);
        void *room = nic_uring_send_reserve(S.n, f->id, sizeof(chunk), &f->reserve_err);
        if (room != NULL)
                nic_uring_send_commit(S.n, f->id, 0);
}

static void close_now(void *arg)
{
        nic_uring_close(S.n, *(uint32_t *)arg, false);
}

Test(nic_uring, send_refuses_beyond_out_max_bytes)
{
        struct nic_uring_config c;
        cfg_test(&c);
        c.max_conns = 1;
        c.out_max_bytes = 256 * 1024;
        uint16_t port = server_start(&c);
        atomic_store(&S.echo, false);
        int fd = client_connect_buf(port, 4096);        /* and it never reads */
        struct fill f = { .id = ev_nth(EV_OPEN, 0).id };
        run_on_server(fill_output, &f);
        cr_assert_eq(f.last_rc, -ENOBUFS);
        cr_assert_eq(f.appended, c.out_max_bytes, "16 chunks fit, the 17th does not");
        cr_assert_eq(f.pending, c.out_max_bytes);
        cr_assert(f.unchanged, "a refused send appends nothing");
        cr_assert_eq(f.reserve_err, -ENOBUFS);
        /* The kernel takes what the socket holds, then nothing more. */
        uint64_t deadline_ns = shm_clock_ns() + 3000 * MS;
        int stuck = 0;
        while (stuck < 5) {
                cr_assert_lt(shm_clock_ns(), deadline_ns, "output to a non-reader keeps draining");
                usleep(10 * 1000);
                run_on_server(fill_output, &f);
                cr_assert_eq(f.last_rc, -ENOBUFS);
                cr_assert_leq(f.pending, c.out_max_bytes);
                stuck = f.appended == 0 ? stuck + 1 : 0;
        }
        /* Cut off: on_close at once, and the slot (the only one) comes back
         * although its send was still in the kernel. */
        run_on_server(close_now, &f.id);
        struct ev e = ev_nth(EV_CLOSE, 0);
        cr_assert_eq(e.id, f.id);
        cr_assert_eq(e.reason, NIC_CLOSE_LOCAL);
        close(fd);
        int again = client_connect(port);
        cr_assert_neq(ev_nth(EV_OPEN, 1).id, f.id);
        close(again);
}

/* --- shutdown and set-up --------------------------------------------------------- */

Test(nic_uring, fini_closes_every_connection)
{
        struct nic_uring_config c;
        cfg_test(&c);
        uint16_t port = server_start(&c);
        int a = client_connect(port), b = client_connect(port);
        ev_nth(EV_OPEN, 1);
        server_join();
        nic_uring_fini(S.n);
        free(S.n);
        S.n = NULL;
        cr_assert_eq(ev_count(EV_CLOSE, 0), 2);
        cr_assert_eq(ev_nth(EV_CLOSE, 0).reason, NIC_CLOSE_SHUTDOWN);
        cr_assert_eq(ev_nth(EV_CLOSE, 1).reason, NIC_CLOSE_SHUTDOWN);
        cr_assert_eq(read_to_end(a), 0);
        cr_assert_eq(read_to_end(b), 0);
        close(a);
        close(b);
}

Test(nic_uring, init_rejects_bad_config)
{
        struct nic_uring *n = calloc(1, nic_uring_size());
        struct nic_uring_config c;
        cfg_test(&c);
        strcpy(c.host, "localhost");
        cr_assert_eq(nic_uring_init(n, &c, &ops, NULL), -EINVAL, "not a numeric address");
        cfg_test(&c);
        c.max_conns = 0;
        cr_assert_eq(nic_uring_init(n, &c, &ops, NULL), -EINVAL);
        cfg_test(&c);
        c.max_conns = NIC_CONNS_MAX + 1;
        cr_assert_eq(nic_uring_init(n, &c, &ops, NULL), -EINVAL);
        cfg_test(&c);
        c.ring_entries = 100;
        cr_assert_eq(nic_uring_init(n, &c, &ops, NULL), -EINVAL);
        cfg_test(&c);
        c.buf_count = 65536;
        cr_assert_eq(nic_uring_init(n, &c, &ops, NULL), -EINVAL);
        cfg_test(&c);
        struct nic_uring_ops partial = { on_open, NULL, on_close, NULL };
        cr_assert_eq(nic_uring_init(n, &c, &partial, NULL), -EINVAL);
        free(n);
}

Test(nic_uring, binds_ipv6_and_reports_the_port_in_use)
{
        struct nic_uring_config c;
        cfg_test(&c);
        struct nic_uring *a = nic_new(&c);
        c.port = nic_uring_port(a);
        cr_assert_neq(c.port, 0);
        struct nic_uring *b = calloc(1, nic_uring_size());
        cr_assert_eq(nic_uring_init(b, &c, &ops, NULL), -EADDRINUSE);
        nic_uring_fini(a);
        free(a);
        /* SO_REUSEPORT: one listener per worker on one port. */
        c.reuseport = true;
        a = nic_new(&c);
        cr_assert_eq(nic_uring_init(b, &c, &ops, NULL), 0);
        nic_uring_fini(b);
        nic_uring_fini(a);
        free(a);
        strcpy(c.host, "::1");
        c.port = 0;
        a = nic_new(&c);
        cr_assert_neq(nic_uring_port(a), 0);
        nic_uring_fini(a);
        free(a);
        free(b);
}

/* --- the idle sleep (the test's thread is the ring's issuer) ------------------------ */

static _Atomic bool futex_unsupported;

static void log_capture(enum shm_log_level level, const char *line, void *arg)
{
        (void)level;
        (void)arg;
        if (strstr(line, "futex waits unsupported") != NULL)
                atomic_store(&futex_unsupported, true);
}

struct later {
        struct shm_wake *w;     /* notify this, */
        int fd;                 /* or write a byte to this */
        int64_t delay_ns;
        _Atomic uint64_t at_ns;
};

static void *later_main(void *arg)
{
        struct later *l = arg;
        struct timespec ts = { 0, l->delay_ns };
        nanosleep(&ts, NULL);
        atomic_store(&l->at_ns, shm_clock_ns());
        if (l->w != NULL)
                shm_wake_notify(l->w);
        else
                write_all(l->fd, "!", 1);
        return NULL;
}

/* One wait as a worker sleeps: announce on every word, then wait. */
static int wait_once(struct nic_uring *n, struct shm_wake *const *w, uint32_t nw,
                     int64_t timeout_ns, uint64_t *took_ns)
{
        uint32_t seq[8];
        for (uint32_t i = 0; i < nw; i++)
                seq[i] = shm_wake_prepare(w[i]);
        uint64_t t0 = shm_clock_ns();
        int rc = nic_uring_wait(n, w, seq, nw, timeout_ns);
        *took_ns = shm_clock_ns() - t0;
        for (uint32_t i = 0; i < nw; i++)
                shm_wake_cancel(w[i]);
        return rc;
}

/* Polls the completions away so the next wait really sleeps. */
static void settle(struct nic_uring *n)
{
        for (int i = 0; i < 100; i++) {
                nic_uring_flush(n);
                uint64_t took;
                if (nic_uring_poll(n) == 0 && wait_once(n, NULL, 0, 5 * MS, &took) == -ETIMEDOUT)
                        return;
        }
        cr_assert_fail("the ring does not settle");
}

static struct nic_uring *idle_nic(void)
{
        shm_log_set_sink(log_capture, NULL);
        struct nic_uring_config c;
        cfg_test(&c);
        S.n = nic_new(&c);
        settle(S.n);
        return S.n;
}

static void skip_without_futex_waits(struct nic_uring *n, struct shm_wake *w)
{
        uint64_t took;
        struct shm_wake *words[1] = { w };
        (void)wait_once(n, words, 1, 2 * MS, &took);
        (void)nic_uring_poll(n);
        if (atomic_load(&futex_unsupported))
                cr_skip_test("the kernel lacks io_uring futex waits (6.7+)");
}

Test(nic_uring, wait_wakes_on_a_futex_notify)
{
        struct nic_uring *n = idle_nic();
        struct shm_wake w[3];
        struct shm_wake *words[3] = { &w[0], &w[1], &w[2] };
        for (int i = 0; i < 3; i++)
                shm_wake_init(&w[i]);
        skip_without_futex_waits(n, &w[0]);
        /* The last of three words, and twice: the second sleep reuses the
         * arming the first one's timeout left in place. */
        for (int round = 0; round < 3; round++) {
                uint64_t took;
                if (round == 1)
                        cr_assert_eq(wait_once(n, words, 3, 20 * MS, &took), -ETIMEDOUT);
                struct later l = { .w = &w[2], .delay_ns = 30 * MS };
                pthread_t t;
                cr_assert_eq(pthread_create(&t, NULL, later_main, &l), 0);
                uint64_t t0 = shm_clock_ns();
                int rc = wait_once(n, words, 3, 5000 * MS, &took);
                uint64_t end = shm_clock_ns();
                pthread_join(t, NULL);
                cr_assert_eq(rc, 0);
                cr_assert_geq(end - t0, 25 * MS, "woke before the notify (%llu ns)",
                              (unsigned long long)(end - t0));
                cr_assert_lt(end - atomic_load(&l.at_ns), 50 * MS, "woke %llu ns after",
                             (unsigned long long)(end - atomic_load(&l.at_ns)));
                nic_uring_poll(n);
        }
}

Test(nic_uring, wait_sees_a_notify_before_it_sleeps)
{
        struct nic_uring *n = idle_nic();
        struct shm_wake w;
        shm_wake_init(&w);
        struct shm_wake *words[1] = { &w };
        uint32_t seq = shm_wake_prepare(&w);
        shm_wake_notify(&w);            /* between prepare and wait */
        uint64_t t0 = shm_clock_ns();
        int rc = nic_uring_wait(n, words, &seq, 1, 5000 * MS);
        shm_wake_cancel(&w);
        cr_assert_eq(rc, 0);
        cr_assert_lt(shm_clock_ns() - t0, 50 * MS, "the wake-up was lost");
}

Test(nic_uring, wait_wakes_on_client_data)
{
        struct nic_uring *n = idle_nic();
        struct shm_wake w;
        shm_wake_init(&w);
        struct shm_wake *words[1] = { &w };
        int fd = client_connect(nic_uring_port(n));
        uint64_t deadline_ns = shm_clock_ns() + 5000 * MS, took;
        while (ev_count(EV_OPEN, 0) == 0) {
                cr_assert_lt(shm_clock_ns(), deadline_ns, "no accept");
                (void)wait_once(n, words, 1, 100 * MS, &took);
                nic_uring_poll(n);
                nic_uring_flush(n);     /* submits the connection's recv */
        }
        settle(n);
        struct later l = { .fd = fd, .delay_ns = 30 * MS };
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, later_main, &l), 0);
        /* The worker's loop: sleep, poll, until the byte is in. */
        uint64_t t0 = shm_clock_ns(), end = t0;
        uint32_t waits = 0;
        while (atomic_load(&S.rx_bytes) == 0) {
                cr_assert_lt(shm_clock_ns(), deadline_ns, "the byte never arrived");
                cr_assert_eq(wait_once(n, words, 1, 5000 * MS, &took), 0);
                end = shm_clock_ns();
                waits++;
                nic_uring_poll(n);
        }
        pthread_join(t, NULL);
        cr_assert_lt(end - atomic_load(&l.at_ns), 50 * MS);
        /* Without io_uring futex waits a sleep on words is 1 ms at most. */
        if (!atomic_load(&futex_unsupported)) {
                cr_assert_eq(waits, 1, "%u wake-ups for one byte", waits);
                cr_assert_geq(end - t0, 25 * MS, "woke before the data");
        }
        close(fd);
}

Test(nic_uring, wait_times_out)
{
        struct nic_uring *n = idle_nic();
        struct shm_wake w;
        shm_wake_init(&w);
        struct shm_wake *words[1] = { &w };
        skip_without_futex_waits(n, &w);
        uint64_t took;
        cr_assert_eq(wait_once(n, words, 1, 100 * MS, &took), -ETIMEDOUT);
        cr_assert_geq(took, 100 * MS);
        cr_assert_lt(took, 150 * MS);
        cr_assert_eq(wait_once(n, NULL, 0, 20 * MS, &took), -ETIMEDOUT);
        cr_assert_geq(took, 20 * MS);
        cr_assert_eq(wait_once(n, words, 1, 0, &took), -ETIMEDOUT);
        uint32_t seq[129] = { 0 };
        struct shm_wake *many[129];
        for (int i = 0; i < 129; i++)
                many[i] = &w;
        cr_assert_eq(nic_uring_wait(n, many, seq, 129, 0), -EINVAL, "futex_waitv takes 128");
}

/* A watched fd (another ring's eventfd) ends the sleep when it becomes
 * readable, every time, and a quiet one does not. */
Test(nic_uring, wait_wakes_on_a_watched_fd)
{
        struct nic_uring *n = idle_nic();
        int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        cr_assert_geq(efd, 0);
        cr_assert_eq(nic_uring_watch(n, efd), 0);
        cr_assert_eq(nic_uring_watch(n, efd), -EINVAL, "one fd");
        settle(n);
        uint64_t took;
        cr_assert_eq(wait_once(n, NULL, 0, 30 * MS, &took), -ETIMEDOUT, "quiet: no wake-up");
        for (int round = 0; round < 3; round++) {
                uint64_t one = 1;
                cr_assert_eq(write(efd, &one, sizeof(one)), (ssize_t)sizeof(one));
                cr_assert_eq(wait_once(n, NULL, 0, 5000 * MS, &took), 0, "round %d", round);
                cr_assert_lt(took, 50 * MS, "woke %llu ns late", (unsigned long long)took);
                nic_uring_poll(n);
        }
        close(efd);
}

/* --- datagrams ------------------------------------------------------------- */

static int udp_client(uint16_t port)
{
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        cr_assert_geq(fd, 0);
        struct timeval tv = { .tv_sec = 5 };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        return fd;
}

static uint16_t udp_server_start(uint32_t buf_bytes)
{
        struct nic_uring_config c;
        cfg_test(&c);
        c.tcp = false;
        c.udp = true;
        c.udp_port = 0;
        c.udp_buf_bytes = buf_bytes;
        c.udp_buf_count = 16;
        c.udp_tx_max = 64;
        (void)server_start(&c);
        uint16_t port = nic_uring_udp_port(S.n);
        cr_assert_neq(port, 0);
        return port;
}

Test(nic_uring, udp_echoes_datagrams_in_order)
{
        int fd = udp_client(udp_server_start(4096));
        /* More datagrams than buffers (16) and than a batch (64) holds, in
         * rounds so loopback's socket buffer does not drop any. */
        for (uint32_t round = 0; round < 10; round++) {
                for (uint32_t i = 0; i < 32; i++) {
                        uint32_t v[64];
                        for (uint32_t k = 0; k < 64; k++)
                                v[k] = round * 1000 + i + k;
                        cr_assert_eq(send(fd, v, (i + 1) * 4, 0), (ssize_t)((i + 1) * 4));
                }
                for (uint32_t i = 0; i < 32; i++) {
                        uint32_t v[64];
                        ssize_t k = recv(fd, v, sizeof(v), 0);
                        cr_assert_eq(k, (ssize_t)((i + 1) * 4), "round %u datagram %u: %zd", round,
                                     i, k);
                        cr_assert_eq(v[0], round * 1000 + i);
                        cr_assert_eq(v[i], round * 1000 + 2 * i);
                }
        }
        struct nic_uring_stats st = server_stats();
        cr_assert_eq(st.udp_rx, 320);
        cr_assert_eq(st.udp_tx, 320);
        cr_assert_eq(st.udp_rx_dropped, 0);
        cr_assert_eq(atomic_load(&S.echo_errors), 0);
        close(fd);
}

Test(nic_uring, udp_drops_a_datagram_longer_than_a_buffer)
{
        int fd = udp_client(udp_server_start(1024));
        static uint8_t big[4096];
        memset(big, 'x', sizeof(big));
        cr_assert_eq(send(fd, big, sizeof(big), 0), (ssize_t)sizeof(big));
        cr_assert_eq(send(fd, "after", 5, 0), 5);
        char got[16];
        /* The long one is gone; the next one still comes back. */
        ssize_t k = recv(fd, got, sizeof(got), 0);
        cr_assert_eq(k, 5);
        cr_assert_eq(memcmp(got, "after", 5), 0);
        struct nic_uring_stats st = server_stats();
        cr_assert_eq(st.udp_rx_dropped, 1);
        cr_assert_eq(st.udp_rx, 1);
        close(fd);
}

static int udp_send_rc;

static void udp_send_huge(void *arg)
{
        static uint8_t huge[NIC_DGRAM_BYTES_MAX + 1];
        udp_send_rc = nic_uring_udp_send(S.n, arg, huge, sizeof(huge));
}

Test(nic_uring, udp_send_refuses_oversize_and_a_socketless_nic)
{
        (void)udp_server_start(1024);
        struct nic_dgram_addr to = { .ip = htonl(INADDR_LOOPBACK), .port = htons(9) };
        run_on_server(udp_send_huge, &to);
        cr_assert_eq(udp_send_rc, -EMSGSIZE);
        server_stop();
        struct nic_uring_config c;
        cfg_test(&c);
        S.n = nic_new(&c);
        cr_assert_eq(nic_uring_udp_send(S.n, &to, "x", 1), -ENOTCONN);
        cr_assert_eq(nic_uring_udp_port(S.n), 0);
}

#ifdef NIC_FAULT_INJECT
/* --- io_uring submissions that fail (NIC_FAULT_INJECT builds) -------------- */

/* A 1 MiB echo and a round of datagrams while 1 in every `every`
 * submissions fails with err: nothing is lost or reordered (the entries
 * wait in the SQ for the next submit), the failures were injected, and a
 * flush reports the ones it does not retry on its own. */
static void echo_under_faults(uint32_t every, int err)
{
        fault.every = every;
        fault.err = err;
        struct nic_uring_config c;
        cfg_test(&c);
        c.udp = true;
        c.udp_port = 0;
        c.udp_buf_count = 16;
        c.udp_tx_max = 64;
        uint16_t port = server_start(&c);
        int fd = client_connect(port);
        const size_t total = 1 * MIB;
        static uint8_t buf[4096], back[4096];
        for (size_t done = 0; done < total; done += sizeof(buf)) {
                for (size_t i = 0; i < sizeof(buf); i++)
                        buf[i] = pattern(done + i);
                write_all(fd, buf, sizeof(buf));
                read_all(fd, back, sizeof(back));
                cr_assert_arr_eq(back, buf, sizeof(buf), "echo differs at %zu", done);
        }
        int u = udp_client(nic_uring_udp_port(S.n));
        for (uint32_t i = 0; i < 64; i++) {
                uint32_t v = i, got = UINT32_MAX;
                cr_assert_eq(send(u, &v, sizeof(v), 0), (ssize_t)sizeof(v));
                cr_assert_eq(recv(u, &got, sizeof(got), 0), (ssize_t)sizeof(got),
                             "datagram %u not echoed", i);
                cr_assert_eq(got, i);
        }
        struct nic_uring_stats st = server_stats();
        cr_assert_gt(st.faults_injected, 10, "only %llu faults injected",
                     (unsigned long long)st.faults_injected);
        cr_assert_eq(st.rx_bytes, total);
        cr_assert_eq(st.tx_bytes, total);
        /* EAGAIN and EBUSY are retried quietly; anything else reaches the
         * flush's caller (the worker counts it: net_errors). */
        if (err == -EAGAIN || err == -EBUSY)
                cr_assert_eq(atomic_load(&S.loop_errors), 0);
        else
                cr_assert_gt(atomic_load(&S.loop_errors), 0);
        close(u);
        close(fd);
}

Test(nic_uring, faults_submit_eagain)
{
        echo_under_faults(3, -EAGAIN);
}

Test(nic_uring, faults_submit_enomem)
{
        echo_under_faults(4, -ENOMEM);
}
#endif
