/* bench_nats_stream.c - the throughput cases of scenario "nats": pub,
 * pubsub, fanout and queue. A run is a publisher thread and a thread per
 * subscriber connection on fresh connections, the flow control between
 * them, and the figures it adds to the case's tally; bench_nats.c runs
 * the cases and reports them.
 *
 *      atomq-bench nats fanout --subs 1,4,16 --url nats://127.0.0.1:4222
 *
 * The publisher sends blocks of up to 1024 PUBs in one send(), each block
 * ended by a PING, and waits while more than BENCH_NATS_PINGS_MAX of them
 * are unanswered: the server is never asked to hold much. It also stays at
 * most BENCH_NATS_AHEAD_BYTES of messages ahead of its slowest subscriber
 * (the sum, for a queue group), so no subscriber is cut off as a slow
 * consumer: what one is not sent is not counted, and a run measures what a
 * server delivers, not how deep its buffers are. After the window the
 * publisher syncs, then each subscriber does: what has not arrived by its
 * PONG is waited for BENCH_NATS_LINGER_NS more (and reported as late),
 * then counted as lost.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_clock.h"
#include "bench/bench_cpu.h"
#include "bench/bench_nats_pvt.h"
#include "bench/bench_progress.h"
#include "shm/shm_base.h"
#include "shm/shm_clock.h"

/* A publisher's block: at most this many PUBs, about this many bytes. */
#define BENCH_NATS_BLOCK_MSGS 1024u
#define BENCH_NATS_BLOCK_BYTES (64u * 1024u)
/* Blocks sent but not yet answered by their PONG: ~40 KiB each. */
#define BENCH_NATS_PINGS_MAX 16u
/* How far the publisher may run ahead of a subscriber, in bytes of
 * messages and in messages: far below the 64 MiB both servers let a
 * connection's output grow to before it is a slow consumer. */
#define BENCH_NATS_AHEAD_BYTES (4u << 20)
#define BENCH_NATS_AHEAD_MSGS 65536u
/* Missing after the final PONG: waited for until this long passes with
 * nothing arriving (a server that fans out through several threads may
 * deliver after answering a later PING on another connection). */
#define BENCH_NATS_LINGER_NS 200000000ull
#define BENCH_NATS_QUEUE_GROUP "q"

struct bench_nats_run;

/* A subscriber connection and its thread. */
struct bench_nats_sub {
        struct bench_nats_conn conn;
        struct bench_nats_run *run;
        /* Written by the subscriber after each read, read by the publisher. */
        _Alignas(BENCH_NATS_GUARD) _Atomic uint64_t received;
        /* Its results, read after the join. */
        _Alignas(BENCH_NATS_GUARD) uint64_t window_msgs;
        uint64_t window_ns;
        int rc;
        double share;
};

struct bench_nats_run {
        /* Read-only while the threads run. */
        struct bench_nats_case cs;
        const struct bench_clock *clock;
        char subject[BENCH_NATS_SUBJECT_BYTES];
        uint64_t open_ticks, close_ticks, give_up_ns;
        char *block;            /* block_msgs PUBs and a PING */
        size_t block_len;
        uint64_t block_msgs;
        uint64_t ahead_max;     /* messages */
        struct bench_nats_sub *subs;
        unsigned subs_n;
        pthread_mutex_t mu;     /* with cv: the publisher waits for credit */
        pthread_cond_t cv;
        /* The publisher's connection and figures, apart from what the
         * subscribers read. */
        _Alignas(BENCH_NATS_GUARD) struct bench_nats_conn pub;
        uint64_t sent;          /* published to the subscribers by pub_done */
        uint64_t pub_window_msgs, pub_window_ns;
        int pub_rc;
        double pub_share;
        /* Flags, each written by one side and polled by the other. */
        _Alignas(BENCH_NATS_GUARD) _Atomic bool pub_waiting;
        _Alignas(BENCH_NATS_GUARD) _Atomic unsigned closed; /* subscribers past their window */
        _Atomic bool pub_done;
        _Atomic bool failed;
};

/* Messages still on their way to the subscribers: to the slowest one, or
 * to the whole queue group. */
static uint64_t bench_nats_in_flight(struct bench_nats_run *r)
{
        uint64_t least = UINT64_MAX, sum = 0;
        for (unsigned i = 0; i < r->subs_n; i++) {
                /* seq_cst: pairs with the store in bench_nats_sub_progress
                 * (see there). */
                uint64_t got = atomic_load(&r->subs[i].received);
                sum += got;
                least = got < least ? got : least;
        }
        uint64_t done = r->cs.kind == BENCH_NATS_QUEUE ? sum : least;
        return r->sent > done ? r->sent - done : 0;
}

static void bench_nats_wake(struct bench_nats_run *r)
{
        pthread_mutex_lock(&r->mu);
        pthread_cond_signal(&r->cv);
        pthread_mutex_unlock(&r->mu);
}

/* The publisher, before a block: waits while it would run more than
 * ahead_max messages ahead. 0, or -ETIMEDOUT past give_up_ns. */
static int bench_nats_credit_wait(struct bench_nats_run *r)
{
        if (bench_nats_in_flight(r) + r->block_msgs <= r->ahead_max)
                return 0;
        int rc = 0;
        pthread_mutex_lock(&r->mu);
        atomic_store(&r->pub_waiting, true);
        while (bench_nats_in_flight(r) + r->block_msgs > r->ahead_max &&
               !atomic_load(&r->failed)) {
                if (shm_clock_ns() > r->give_up_ns) {
                        rc = -ETIMEDOUT;
                        break;
                }
                /* The timeout is a safety net: subscribers signal. */
                struct timespec until;
                clock_gettime(CLOCK_MONOTONIC, &until);
                until.tv_nsec += BENCH_NATS_IO_TIMEOUT_MS * 1000000L;
                if (until.tv_nsec >= 1000000000L) {
                        until.tv_sec++;
                        until.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&r->cv, &r->mu, &until);
        }
        atomic_store(&r->pub_waiting, false);
        pthread_mutex_unlock(&r->mu);
        return rc;
}

/* A subscriber after a read: tells the publisher how far it got. The
 * seq_cst store of received and load of pub_waiting, against the
 * publisher's store of pub_waiting and load of received, mean one side
 * sees the other's store: no wake-up is lost. */
static void bench_nats_sub_progress(struct bench_nats_run *r, struct bench_nats_sub *s)
{
        atomic_store(&s->received, s->conn.msgs);
        if (atomic_load(&r->pub_waiting))
                bench_nats_wake(r);
}

/* One block: block_msgs PUBs and a PING in one send(), then reads PONGs
 * while too many PINGs are unanswered. */
static int bench_nats_pub_block(struct bench_nats_run *r)
{
        struct bench_nats_conn *c = &r->pub;
        int rc = bench_nats_write(c, r->block, r->block_len);
        if (rc != 0)
                return rc;
        c->pings_out++; /* the block ends in one */
        r->sent += r->block_msgs;
        return bench_nats_pongs_wait(c, BENCH_NATS_PINGS_MAX);
}

/* pub: the publisher owns the window, from a sync at open to one at close,
 * so every message counted was handled by the server. */
static int bench_nats_pub_timed(struct bench_nats_run *r)
{
        uint64_t t0 = 0, n0 = 0;
        int rc = 0;
        for (;;) {
                uint64_t t = bench_clock_ticks(r->clock);
                if (t0 == 0 && t >= r->open_ticks) {
                        rc = bench_nats_sync(&r->pub);
                        t0 = bench_clock_ticks(r->clock);
                        n0 = r->sent;
                } else if (t0 != 0 && t >= r->close_ticks) {
                        break;
                }
                if (rc == 0)
                        rc = bench_nats_pub_block(r);
                if (rc != 0)
                        return rc;
        }
        rc = bench_nats_sync(&r->pub);
        r->pub_window_msgs = r->sent - n0;
        r->pub_window_ns = bench_clock_to_ns(r->clock, bench_clock_ticks(r->clock) - t0);
        return rc;
}

/* With subscribers: publishes until every subscriber's window closed. */
static int bench_nats_pub_paced(struct bench_nats_run *r)
{
        uint64_t t0 = 0, n0 = 0, t = 0;
        int rc = 0;
        while (rc == 0 && atomic_load_explicit(&r->closed, memory_order_acquire) < r->subs_n &&
               !atomic_load(&r->failed)) {
                rc = bench_nats_credit_wait(r);
                if (rc == 0)
                        rc = bench_nats_pub_block(r);
                t = bench_clock_ticks(r->clock);
                if (t0 == 0 && t >= r->open_ticks) {
                        t0 = t;
                        n0 = r->sent;
                }
                if (rc == 0 && shm_clock_ns() > r->give_up_ns)
                        rc = -ETIMEDOUT;
        }
        r->pub_window_msgs = t0 == 0 ? 0 : r->sent - n0;
        r->pub_window_ns = t0 == 0 ? 0 : bench_clock_to_ns(r->clock, t - t0);
        return rc == 0 ? bench_nats_sync(&r->pub) : rc;
}

static void *bench_nats_pub_main(void *arg)
{
        struct bench_nats_run *r = arg;
        struct bench_nats_share share;
        bench_nats_schedstat(&share);
        int rc = r->cs.kind == BENCH_NATS_PUB ? bench_nats_pub_timed(r) : bench_nats_pub_paced(r);
        r->pub_rc = rc;
        r->pub_share = bench_nats_share_end(&share);
        if (rc != 0)
                atomic_store(&r->failed, true);
        /* Pairs with the acquire loads in bench_nats_sub_main: sent is final. */
        atomic_store_explicit(&r->pub_done, true, memory_order_release);
        return NULL;
}

/* A subscriber's window ends: its figures, and one fewer for the
 * publisher to wait for. */
static void bench_nats_sub_close(struct bench_nats_run *r, struct bench_nats_sub *s,
                                 uint64_t t0, uint64_t n0, uint64_t t)
{
        s->window_msgs = t0 == 0 ? 0 : s->conn.msgs - n0;
        s->window_ns = t0 == 0 ? 0 : bench_clock_to_ns(r->clock, t - t0);
        /* Pairs with the acquire load in bench_nats_pub_paced. */
        atomic_fetch_add_explicit(&r->closed, 1, memory_order_release);
}

/* Reads and counts until its window closed and the publisher is done,
 * then syncs: what the server queued for it before its PONG is in. */
static void *bench_nats_sub_main(void *arg)
{
        struct bench_nats_sub *s = arg;
        struct bench_nats_run *r = s->run;
        struct bench_nats_share share;
        bench_nats_schedstat(&share);
        uint64_t t0 = 0, n0 = 0;
        bool open = true;
        int rc = 0;
        while (rc >= 0) {
                rc = bench_nats_poll(&s->conn);
                if (rc < 0)
                        break;
                bench_nats_sub_progress(r, s);
                uint64_t t = bench_clock_ticks(r->clock);
                if (open && t0 == 0 && t >= r->open_ticks) {
                        t0 = t;
                        n0 = s->conn.msgs;
                }
                if (open && t >= r->close_ticks) {
                        bench_nats_sub_close(r, s, t0, n0, t);
                        open = false;
                } else if (!open && atomic_load_explicit(&r->pub_done, memory_order_acquire)) {
                        break;
                }
                if (atomic_load(&r->failed))
                        rc = -ECANCELED;
                else if (rc == 0 && shm_clock_ns() > r->give_up_ns)
                        rc = -ETIMEDOUT;
        }
        if (open)
                bench_nats_sub_close(r, s, 0, 0, 0);
        if (rc >= 0 && !atomic_load(&r->failed))
                rc = bench_nats_sync(&s->conn);
        s->rc = rc < 0 ? rc : 0;
        if (rc < 0 && rc != -ECANCELED) {
                atomic_store(&r->failed, true);
                bench_nats_wake(r);
        }
        s->share = bench_nats_share_end(&share);
        return NULL;
}

/* Messages a subscriber (all, for a queue group) still lacks. */
static uint64_t bench_nats_missing(const struct bench_nats_run *r)
{
        uint64_t got = 0, missing = 0;
        for (unsigned i = 0; i < r->subs_n; i++) {
                uint64_t n = r->subs[i].conn.msgs;
                got += n;
                missing += n < r->sent ? r->sent - n : 0;
        }
        if (r->cs.kind == BENCH_NATS_QUEUE)
                missing = got < r->sent ? r->sent - got : 0;
        return missing;
}

/* After the joins: what is still missing is waited for until
 * BENCH_NATS_LINGER_NS of silence. *late gets what came in meanwhile. */
static int bench_nats_linger(struct bench_nats_run *r, uint64_t *late)
{
        uint64_t before = 0, after = 0;
        for (unsigned i = 0; i < r->subs_n; i++)
                before += r->subs[i].conn.msgs;
        uint64_t last_ns = shm_clock_ns();
        while (bench_nats_missing(r) != 0 && shm_clock_ns() - last_ns < BENCH_NATS_LINGER_NS) {
                for (unsigned i = 0; i < r->subs_n; i++) {
                        struct bench_nats_sub *s = &r->subs[i];
                        if (r->cs.kind != BENCH_NATS_QUEUE && s->conn.msgs >= r->sent)
                                continue;
                        s->conn.give_up_ns = shm_clock_ns() + BENCH_NATS_STALL_NS;
                        int rc = bench_nats_poll(&s->conn);
                        if (rc < 0)
                                return rc;
                        if (rc > 0)
                                last_ns = shm_clock_ns();
                }
        }
        for (unsigned i = 0; i < r->subs_n; i++)
                after += r->subs[i].conn.msgs;
        *late = after - before;
        return 0;
}

/* "PUB subject N\r\n<N bytes>\r\n" block_msgs times, then "PING\r\n". */
static int bench_nats_block_build(struct bench_nats_run *r)
{
        char line[BENCH_NATS_SUBJECT_BYTES + 32];
        int n = snprintf(line, sizeof(line), "PUB %s %u\r\n", r->subject, r->cs.msg_bytes);
        DP_VERIFY(n > 0 && (size_t)n < sizeof(line));
        size_t frame = (size_t)n + r->cs.msg_bytes + 2;
        size_t k = BENCH_NATS_BLOCK_BYTES / frame;
        k = k < 1 ? 1 : k > BENCH_NATS_BLOCK_MSGS ? BENCH_NATS_BLOCK_MSGS : k;
        r->block = malloc(k * frame + 6);
        if (r->block == NULL)
                return -ENOMEM;
        char *p = r->block;
        for (size_t i = 0; i < k; i++) {
                memcpy(p, line, (size_t)n);
                p += n;
                for (unsigned b = 0; b < r->cs.msg_bytes; b++)
                        *p++ = (char)('a' + b % 26);
                memcpy(p, "\r\n", 2);
                p += 2;
        }
        memcpy(p, "PING\r\n", 6);
        r->block_len = k * frame + 6;
        r->block_msgs = k;
        /* At least two blocks ahead, or the publisher would stop and go. */
        uint64_t ahead = BENCH_NATS_AHEAD_BYTES / frame;
        ahead = ahead > BENCH_NATS_AHEAD_MSGS ? BENCH_NATS_AHEAD_MSGS : ahead;
        r->ahead_max = ahead < 2 * k ? 2 * k : ahead;
        return 0;
}

/* Connects and subscribes the subscribers, each synced: its SUB is in. */
static int bench_nats_subs_open(struct bench_nats_env *env, struct bench_nats_server *s,
                                struct bench_nats_run *r)
{
        const char *queue = r->cs.kind == BENCH_NATS_QUEUE ? BENCH_NATS_QUEUE_GROUP : NULL;
        for (unsigned i = 0; i < r->subs_n; i++) {
                struct bench_nats_sub *sub = &r->subs[i];
                sub->run = r;
                int rc = bench_nats_conn_open(&sub->conn, s);
                if (rc == 0)
                        rc = bench_nats_sub(&sub->conn, r->subject, queue, 1);
                if (rc == 0)
                        rc = bench_nats_sync(&sub->conn);
                if (rc == 0 && sub->conn.errs != 0)
                        rc = -EPROTO;
                if (rc != 0) {
                        bench_nats_say(env, &r->cs, s, "subscriber: connect and SUB", rc,
                                       &sub->conn);
                        return rc;
                }
        }
        return 0;
}

static void bench_nats_run_free(struct bench_nats_run *r)
{
        bench_nats_conn_close(&r->pub);
        for (unsigned i = 0; r->subs != NULL && i < r->subs_n; i++)
                bench_nats_conn_close(&r->subs[i].conn);
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->cv);
        free(r->subs);
        free(r->block);
        free(r);
}

/* A run's memory, subject and block; NULL when out of memory. */
static struct bench_nats_run *bench_nats_run_alloc(struct bench_nats_env *env,
                                                   const struct bench_nats_case *cs)
{
        struct bench_nats_run *r = aligned_alloc(_Alignof(struct bench_nats_run), sizeof(*r));
        if (r == NULL)
                return NULL;
        memset(r, 0, sizeof(*r));
        r->cs = *cs;
        r->clock = &env->clock;
        r->pub.fd = -1;
        pthread_mutex_init(&r->mu, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&r->cv, &ca);
        pthread_condattr_destroy(&ca);
        snprintf(r->subject, sizeof(r->subject), "bench.%d.%u.%s", (int)getpid(),
                 env->serial++, bench_nats_kind_names[cs->kind]);
        size_t subs_bytes = (cs->subs == 0 ? 1 : cs->subs) * sizeof(*r->subs);
        r->subs = aligned_alloc(_Alignof(struct bench_nats_sub), subs_bytes);
        if (r->subs != NULL) {
                memset(r->subs, 0, subs_bytes);
                r->subs_n = cs->subs;
                for (unsigned i = 0; i < r->subs_n; i++)
                        r->subs[i].conn.fd = -1;
        }
        if (r->subs == NULL || bench_nats_block_build(r) != 0) {
                bench_nats_run_free(r);
                return NULL;
        }
        return r;
}

/* A run's connections and window. */
static int bench_nats_run_new(struct bench_nats_env *env, const struct bench_nats_case *cs,
                              struct bench_nats_server *s, struct bench_nats_run **out)
{
        struct bench_nats_run *r = bench_nats_run_alloc(env, cs);
        *out = r;
        if (r == NULL) {
                bench_nats_say(env, cs, s, "setting up", -ENOMEM, NULL);
                return -ENOMEM;
        }
        int rc = bench_nats_conn_open(&r->pub, s);
        if (rc != 0) {
                bench_nats_say(env, cs, s, "publisher: connect", rc, &r->pub);
                return rc;
        }
        rc = bench_nats_greeted(env, cs, s, &r->pub);
        if (rc == 0)
                rc = bench_nats_subs_open(env, s, r);
        if (rc != 0)
                return rc;
        bench_nats_times(env, &r->open_ticks, &r->close_ticks, &r->give_up_ns);
        r->pub.give_up_ns = r->give_up_ns;
        for (unsigned i = 0; i < r->subs_n; i++)
                r->subs[i].conn.give_up_ns = r->give_up_ns;
        return 0;
}

/* Starts the subscribers, then the publisher; waits for all. */
static int bench_nats_run_threads(struct bench_nats_env *env, struct bench_nats_run *r)
{
        pthread_t threads[BENCH_NATS_SUBS_MAX + 1];
        unsigned started = 0;
        int rc = 0;
        for (unsigned i = 0; i < r->subs_n && rc == 0; i++) {
                rc = bench_thread_start(&threads[i], -1, bench_nats_sub_main, &r->subs[i]);
                started += rc == 0;
        }
        pthread_t pub;
        if (rc == 0)
                rc = bench_thread_start(&pub, -1, bench_nats_pub_main, r);
        if (rc == 0) {
                rc = bench_progress_join(env->pg, pub);
        } else {
                /* The subscribers give up at once. */
                atomic_store(&r->failed, true);
                atomic_store(&r->pub_done, true);
        }
        for (unsigned i = 0; i < started; i++) {
                int join_rc = -pthread_join(threads[i], NULL);
                rc = rc != 0 ? rc : join_rc;
        }
        return rc;
}

/* Takes one finished run into the tally. */
static void bench_nats_run_tally(const struct bench_nats_run *r, uint64_t late,
                                 struct bench_nats_tally *t, unsigned run)
{
        double rate = 0;
        uint64_t got = 0, errs = r->pub.errs;
        for (unsigned i = 0; i < r->subs_n; i++) {
                const struct bench_nats_sub *s = &r->subs[i];
                got += s->conn.msgs;
                errs += s->conn.errs + s->conn.hmsgs; /* no status messages expected */
                if (s->window_ns != 0)
                        rate += (double)s->window_msgs * 1e9 / (double)s->window_ns;
                bench_nats_tally_share(t, s->share);
        }
        bench_nats_tally_share(t, r->pub_share);
        double sent_rate = r->pub_window_ns == 0 ? 0
                           : (double)r->pub_window_msgs * 1e9 / (double)r->pub_window_ns;
        uint64_t want = r->cs.kind == BENCH_NATS_FANOUT || r->cs.kind == BENCH_NATS_PUBSUB
                        ? r->sent * r->subs_n : r->cs.kind == BENCH_NATS_QUEUE ? r->sent : 0;
        uint64_t lost = got < want ? want - got : 0, dups = got > want ? got - want : 0;
        t->rates[run] = r->cs.kind == BENCH_NATS_PUB ? sent_rate : rate;
        t->sent_rates[run] = sent_rate;
        t->sent += r->sent;
        t->received += got;
        t->lost += lost;
        t->dups += dups;
        t->late += late;
        t->errors += lost + dups + errs;
}

/* Where a run that timed out stood: what was sent, what each subscriber
 * got, how many of the publisher's PINGs were unanswered. */
static void bench_nats_stall_note(const struct bench_nats_run *r)
{
        fprintf(stderr, "atomq-bench: nats %s: stalled with %" PRIu64 " sent, %" PRIu64
                        " PINGs of the publisher unanswered; received:",
                bench_nats_kind_names[r->cs.kind], r->sent, r->pub.pings_out - r->pub.pongs);
        for (unsigned i = 0; i < r->subs_n; i++)
                fprintf(stderr, " %" PRIu64, r->subs[i].conn.msgs);
        fprintf(stderr, "%s\n", r->subs_n == 0 ? " (no subscribers)" : "");
}

/* Every run's figures on stderr: the report keeps only medians. */
static void bench_nats_tput_note(const struct bench_nats_env *env, const struct bench_nats_run *r,
                                 const struct bench_nats_server *s,
                                 const struct bench_nats_tally *t, unsigned run, uint64_t late)
{
        uint64_t got = 0;
        for (unsigned i = 0; i < r->subs_n; i++)
                got += r->subs[i].conn.msgs;
        if (r->cs.kind == BENCH_NATS_PUB)
                fprintf(stderr, "nats: pub %u B, %s, run %u/%u: %.3f M/s\n", r->cs.msg_bytes,
                        s->system, run + 1, env->o->runs, t->rates[run] / 1e6);
        else
                fprintf(stderr, "nats: %s %u B, %s, run %u/%u: %.3f M/s delivered, %.3f M/s "
                                "sent; %" PRIu64 " sent, %" PRIu64 " received (%" PRIu64
                                " late)\n", bench_nats_kind_names[r->cs.kind], r->cs.msg_bytes,
                        s->system, run + 1, env->o->runs, t->rates[run] / 1e6,
                        t->sent_rates[run] / 1e6, r->sent, got, late);
}

/* After the threads: says which connection failed first, and why. */
static int bench_nats_run_check(const struct bench_nats_env *env, const struct bench_nats_server *s,
                                const struct bench_nats_run *r)
{
        const struct bench_nats_conn *bad = NULL;
        const char *who = "publisher";
        int rc = r->pub_rc;
        if (rc != 0)
                bad = &r->pub;
        for (unsigned i = 0; bad == NULL && i < r->subs_n; i++) {
                rc = r->subs[i].rc;
                if (rc != 0 && rc != -ECANCELED) {
                        bad = &r->subs[i].conn;
                        who = "subscriber";
                }
        }
        if (bad == NULL)
                return 0;
        bench_nats_say(env, &r->cs, s, who, rc, bad);
        if (rc == -ETIMEDOUT)
                bench_nats_stall_note(r);
        return rc;
}

int bench_nats_tput_once(struct bench_nats_env *env, const struct bench_nats_case *cs,
                         struct bench_nats_server *s, struct bench_nats_tally *t,
                         unsigned run)
{
        struct bench_nats_run *r = NULL;
        uint64_t late = 0;
        int rc = bench_nats_run_new(env, cs, s, &r);
        if (rc == 0) {
                rc = bench_nats_run_threads(env, r);
                if (rc != 0)
                        bench_nats_say(env, cs, s, "threads", rc, NULL);
        }
        if (rc == 0)
                rc = bench_nats_run_check(env, s, r);
        if (rc == 0) {
                rc = bench_nats_linger(r, &late);
                if (rc != 0)
                        bench_nats_say(env, cs, s, "subscriber, after the run", rc, NULL);
        }
        if (rc == 0)
                bench_nats_run_tally(r, late, t, run);
        if (rc == 0 && !env->o->quiet)
                bench_nats_tput_note(env, r, s, t, run, late);
        if (r != NULL)
                bench_nats_run_free(r);
        return rc;
}
