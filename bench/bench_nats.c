/* bench_nats.c - scenario "nats": load on any NATS server (atomqd's
 * --nats listener, nats-server) through the client protocol on TCP, with
 * the tiny client of bench_nats_client.c.
 *
 *      atomq-bench nats pubsub --url nats://127.0.0.1:4222 --json --runs 3
 *      atomq-bench nats fanout --subs 1,4,16 --url nats://127.0.0.1:4222
 *      atomq-bench nats --url nats://127.0.0.1:4222,nats://127.0.0.1:4223
 *
 * Cases (the word after "nats"; none: all five), each repeated --runs
 * times on fresh connections and reported as medians:
 *   pub     one publisher, nobody subscribed: msgs/s the server took, from
 *           a PING/PONG sync at the start of the window to one at its end;
 *   pubsub  one publisher, one subscriber connection on the subject:
 *           msgs/s received in the subscriber's window;
 *   fanout  one publisher, --subs N subscriber connections (default 4):
 *           msgs/s delivered, summed over the subscribers;
 *   queue   the same with the N in one queue group: msgs/s delivered in
 *           all, and every message must arrive exactly once;
 *   reqrep  a responder connection answers each request with a message of
 *           the same size; one requester sends the next request when the
 *           answer is in: p50/p99/p999 ns and requests/s.
 * Several --url servers are alternated run by run (A, B, A, B, ...) so a
 * noisy machine hurts them alike; each gets its own result lines, named
 * by what its INFO says ("atomq", "nats-server").
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
 * then counted as lost. Loss, duplicates, -ERRs from the server and wrong
 * answers to requests are errors (atomq-bench exits 1).
 *
 * Every client thread blocks on a socket, so cpu_share is not time on a
 * CPU over wall time: it is the share of the time a thread was ready to
 * run that it ran (/proc/thread-self/schedstat), the least over threads.
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
#include "bench/bench_report.h"
#include "bench/bench_scenario.h"
#include "shm/shm_base.h"
#include "shm/shm_clock.h"

#define BENCH_NATS_SIZE_DEFAULT 16u
#define BENCH_NATS_SUBS_DEFAULT 4u
/* Subscriber connections of fanout and queue: a thread each. */
#define BENCH_NATS_SUBS_MAX 64u
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
/* A run not over this long after its window closed has failed. */
#define BENCH_NATS_STALL_NS 5000000000ull
/* Missing after the final PONG: waited for until this long passes with
 * nothing arriving (a server that fans out through several threads may
 * deliver after answering a later PING on another connection). */
#define BENCH_NATS_LINGER_NS 200000000ull
#define BENCH_NATS_SUBJECT_BYTES 96u
#define BENCH_NATS_QUEUE_GROUP "q"
#define BENCH_NATS_GUARD (2 * SHM_CACHE_LINE)

enum bench_nats_kind {
        BENCH_NATS_PUB,
        BENCH_NATS_PUBSUB,
        BENCH_NATS_FANOUT,
        BENCH_NATS_QUEUE,
        BENCH_NATS_REQREP,
        BENCH_NATS_KINDS,
};

static const char *const bench_nats_kind_names[BENCH_NATS_KINDS] = {
        [BENCH_NATS_PUB] = "pub",
        [BENCH_NATS_PUBSUB] = "pubsub",
        [BENCH_NATS_FANOUT] = "fanout",
        [BENCH_NATS_QUEUE] = "queue",
        [BENCH_NATS_REQREP] = "reqrep",
};

/* What the scenario keeps across its cases. */
struct bench_nats_env {
        const struct bench_opts *o;
        struct bench_progress *pg;
        struct bench_clock clock;
        struct bench_nats_server servers[BENCH_NATS_URLS_MAX];
        unsigned servers_n;
        bool kinds[BENCH_NATS_KINDS];
        unsigned sizes_n, sizes_bytes[BENCH_LIST_MAX];
        unsigned subs_n, subs[BENCH_LIST_MAX];
        unsigned serial; /* runs so far: every run has subjects of its own */
};

/* One case: what is measured, with which message size and subscribers. */
struct bench_nats_case {
        enum bench_nats_kind kind;
        unsigned msg_bytes;
        unsigned subs; /* subscriber connections; 0 for pub and reqrep */
};

/* The share of the time a thread was ready to run that it ran. */
struct bench_nats_share {
        uint64_t run_ns, wait_ns;
};

static void bench_nats_schedstat(struct bench_nats_share *s)
{
        unsigned long long run = 0, wait = 0;
        FILE *f = fopen("/proc/thread-self/schedstat", "r");
        if (f != NULL) {
                if (fscanf(f, "%llu %llu", &run, &wait) != 2)
                        run = wait = 0;
                fclose(f);
        }
        s->run_ns = run;
        s->wait_ns = wait;
}

static double bench_nats_share_end(const struct bench_nats_share *start)
{
        struct bench_nats_share end;
        bench_nats_schedstat(&end);
        double run = (double)(end.run_ns - start->run_ns);
        double wait = (double)(end.wait_ns - start->wait_ns);
        /* Without schedstat (or a thread that never ran) nothing is known. */
        return run + wait <= 0 ? 1.0 : run / (run + wait);
}

/* ---- pub, pubsub, fanout, queue ---------------------------------------- */

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

/* Says which connection of a run failed and why (the server's -ERR when
 * it sent one). */
static void bench_nats_say(const struct bench_nats_env *env, const struct bench_nats_case *cs,
                           const struct bench_nats_server *s, const char *who, int rc,
                           const struct bench_nats_conn *c)
{
        bench_progress_end(env->pg);
        fprintf(stderr, "atomq-bench: nats %s %u B against %s (%s): %s: %s%s%s\n",
                bench_nats_kind_names[cs->kind], cs->msg_bytes, s->system, s->url, who,
                strerror(-rc), c != NULL && c->err[0] ? ": " : "", c != NULL ? c->err : "");
}

/* What INFO said, the first time a server answers: its system name. Two
 * servers of one kind are told apart as "name-2", ... */
static void bench_nats_server_learn(struct bench_nats_env *env, struct bench_nats_server *s,
                                    const struct bench_nats_info *in)
{
        if (s->known)
                return;
        const char *name = strcmp(in->server_name, "atomq") == 0 ||
                           strncmp(in->go, "atomq", 5) == 0 ? "atomq"
                           : strncmp(in->go, "go", 2) == 0 ? "nats-server"
                           : in->server_name[0] != '\0' ? in->server_name : "unknown";
        unsigned same = 0;
        for (unsigned i = 0; i < env->servers_n; i++)
                same += env->servers[i].known && strncmp(env->servers[i].system, name,
                                                         strlen(name)) == 0;
        if (same == 0)
                snprintf(s->system, sizeof(s->system), "%.20s", name);
        else
                snprintf(s->system, sizeof(s->system), "%.20s-%u", name, same + 1);
        s->max_payload = in->max_payload;
        s->known = true;
}

/* The publisher connected: learns the server, checks the size fits. */
static int bench_nats_greeted(struct bench_nats_env *env, const struct bench_nats_case *cs,
                              struct bench_nats_server *s, const struct bench_nats_conn *c)
{
        bench_nats_server_learn(env, s, &c->info);
        if (s->max_payload != 0 && cs->msg_bytes > s->max_payload) {
                bench_progress_end(env->pg);
                fprintf(stderr, "atomq-bench: nats: %u-byte messages are above the max_payload "
                                "of %s (%s): %" PRIu64 "\n", cs->msg_bytes, s->system, s->url,
                        s->max_payload);
                return -EMSGSIZE;
        }
        return 0;
}

/* Window times from now on; every connection gives up past the end. */
static void bench_nats_times(const struct bench_nats_env *env, uint64_t *open_ticks,
                             uint64_t *close_ticks, uint64_t *give_up_ns)
{
        const struct bench_opts *o = env->o;
        uint64_t warmup_ns = (uint64_t)(o->warmup_s * 1e9);
        uint64_t duration_ns = (uint64_t)(o->duration_s * 1e9);
        *open_ticks = bench_clock_ticks(&env->clock) + bench_clock_from_ns(&env->clock, warmup_ns);
        *close_ticks = *open_ticks + bench_clock_from_ns(&env->clock, duration_ns);
        *give_up_ns = shm_clock_ns() + warmup_ns + duration_ns + BENCH_NATS_STALL_NS;
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

/* What --runs runs of a case against one server add up to. */
struct bench_nats_tally {
        double rates[BENCH_RUNS_MAX];
        double sent_rates[BENCH_RUNS_MAX];
        struct bench_latency lats[BENCH_RUNS_MAX];
        uint64_t sent, received, lost, dups, late, errors;
        double share;
        int rc;         /* the first failure: no more runs, no result */
};

static void bench_nats_tally_share(struct bench_nats_tally *t, double share)
{
        t->share = share < t->share ? share : t->share;
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

static int bench_nats_tput_once(struct bench_nats_env *env, const struct bench_nats_case *cs,
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

/* ---- reqrep -------------------------------------------------------------- */

struct bench_nats_rr {
        /* Read-only while the threads run. */
        struct bench_nats_case cs;
        const struct bench_clock *clock;
        char subject[BENCH_NATS_SUBJECT_BYTES];
        char inbox[BENCH_NATS_SUBJECT_BYTES];   /* "<prefix>.": + sequence */
        size_t inbox_len;
        char *payload;                          /* msg_bytes and CRLF */
        uint64_t open_ticks, close_ticks;
        /* The requester's. */
        struct bench_nats_conn req;
        struct bench_hist *hist;
        uint64_t want;          /* sequence number of the request in flight */
        bool answered, no_responders;
        uint64_t errors;        /* answers that were not to this request */
        uint64_t window_ns;
        int req_rc;
        double req_share;
        /* The responder's. */
        _Alignas(BENCH_NATS_GUARD) struct bench_nats_conn resp;
        uint64_t resp_errors;   /* requests without a reply subject, ... */
        int resp_put_rc;
        int resp_rc;
        double resp_share;
        _Alignas(BENCH_NATS_GUARD) _Atomic bool stop;
};

/* The responder's on_msg: the answer, a message of the request's size to
 * its reply subject, goes out after the read (bench_nats_rr_respond). */
static void bench_nats_rr_answer(void *arg, struct bench_nats_conn *c,
                                 const struct bench_nats_msg *m)
{
        struct bench_nats_rr *rr = arg;
        char line[BENCH_NATS_SUBJECT_BYTES + 32];
        if (m->reply == NULL || m->reply_len >= BENCH_NATS_SUBJECT_BYTES || m->hmsg ||
            m->payload_bytes != rr->cs.msg_bytes) {
                rr->resp_errors++;
                return;
        }
        int n = snprintf(line, sizeof(line), "PUB %.*s %u\r\n", (int)m->reply_len, m->reply,
                         rr->cs.msg_bytes);
        int rc = bench_nats_put(c, line, (size_t)n);
        if (rc == 0)
                rc = bench_nats_put(c, rr->payload, rr->cs.msg_bytes + 2u);
        if (rc != 0 && rr->resp_put_rc == 0)
                rr->resp_put_rc = rc;
}

/* The requester's on_msg: is it the answer to the request in flight? */
static void bench_nats_rr_reply(void *arg, struct bench_nats_conn *c,
                                const struct bench_nats_msg *m)
{
        struct bench_nats_rr *rr = arg;
        (void)c;
        if (m->hmsg) {
                /* The status message 503: nobody is subscribed. */
                rr->no_responders = true;
                rr->errors++;
                return;
        }
        uint64_t seq = 0;
        size_t i = rr->inbox_len;
        bool ok = m->subject_len > i && memcmp(m->subject, rr->inbox, i) == 0 &&
                  m->payload_bytes == rr->cs.msg_bytes;
        for (; ok && i < m->subject_len && i < rr->inbox_len + 19; i++) {
                ok = m->subject[i] >= '0' && m->subject[i] <= '9';
                seq = seq * 10 + (uint64_t)(m->subject[i] - '0');
        }
        if (ok && i == m->subject_len && seq == rr->want)
                rr->answered = true;
        else
                rr->errors++;
}

static void *bench_nats_rr_respond(void *arg)
{
        struct bench_nats_rr *rr = arg;
        struct bench_nats_share share;
        bench_nats_schedstat(&share);
        int rc = 0;
        while (rc == 0 && !atomic_load_explicit(&rr->stop, memory_order_relaxed)) {
                rc = bench_nats_poll(&rr->resp);
                rc = rc < 0 ? rc : rr->resp_put_rc != 0 ? rr->resp_put_rc
                                                        : bench_nats_flush(&rr->resp);
        }
        rr->resp_rc = rc;
        rr->resp_share = bench_nats_share_end(&share);
        return NULL;
}

/* One request and its answer. */
static int bench_nats_rr_one(struct bench_nats_rr *rr, uint64_t seq)
{
        char line[2 * BENCH_NATS_SUBJECT_BYTES + 48];
        int n = snprintf(line, sizeof(line), "PUB %s %s%" PRIu64 " %u\r\n", rr->subject,
                         rr->inbox, seq, rr->cs.msg_bytes);
        rr->want = seq;
        rr->answered = false;
        int rc = bench_nats_put(&rr->req, line, (size_t)n);
        if (rc == 0)
                rc = bench_nats_put(&rr->req, rr->payload, rr->cs.msg_bytes + 2u);
        if (rc == 0)
                rc = bench_nats_flush(&rr->req);
        while (rc == 0 && !rr->answered) {
                rc = bench_nats_poll(&rr->req);
                if (rc == 0 && shm_clock_ns() > rr->req.give_up_ns)
                        rc = -ETIMEDOUT;
                rc = rc < 0 ? rc : rr->no_responders ? -EHOSTUNREACH : 0;
        }
        return rc;
}

/* The requester: requests one at a time, each timed into the histogram
 * once the window is open. */
static void *bench_nats_rr_request(void *arg)
{
        struct bench_nats_rr *rr = arg;
        struct bench_nats_share share;
        bench_nats_schedstat(&share);
        uint64_t first = 0, t1 = 0;
        int rc = 0;
        for (uint64_t seq = 0;; seq++) {
                uint64_t t0 = bench_clock_ticks(rr->clock);
                rc = bench_nats_rr_one(rr, seq);
                t1 = bench_clock_ticks(rr->clock);
                if (rc != 0)
                        break;
                if (t0 < rr->open_ticks)
                        continue;
                first = first == 0 ? t0 : first;
                bench_hist_record(rr->hist, bench_clock_to_ns(rr->clock, t1 - t0));
                if (t1 >= rr->close_ticks)
                        break;
        }
        rr->window_ns = first == 0 ? 0 : bench_clock_to_ns(rr->clock, t1 - first);
        rr->req_rc = rc;
        rr->req_share = bench_nats_share_end(&share);
        return NULL;
}

static void bench_nats_rr_free(struct bench_nats_rr *rr)
{
        bench_nats_conn_close(&rr->req);
        bench_nats_conn_close(&rr->resp);
        free(rr->payload);
        free(rr->hist);
        free(rr);
}

/* One connection of reqrep, subscribed and synced. */
static int bench_nats_rr_conn(struct bench_nats_env *env, struct bench_nats_server *s,
                              struct bench_nats_rr *rr, struct bench_nats_conn *c,
                              const char *subject, const char *who)
{
        int rc = bench_nats_conn_open(c, s);
        if (rc == 0)
                rc = bench_nats_greeted(env, &rr->cs, s, c);
        if (rc == 0)
                rc = bench_nats_sub(c, subject, NULL, 1);
        if (rc == 0)
                rc = bench_nats_sync(c);
        if (rc == 0 && c->errs != 0)
                rc = -EPROTO;
        if (rc != 0 && rc != -EMSGSIZE)
                bench_nats_say(env, &rr->cs, s, who, rc, c);
        return rc;
}

static int bench_nats_rr_new(struct bench_nats_env *env, const struct bench_nats_case *cs,
                             struct bench_nats_server *s, struct bench_nats_rr **out)
{
        struct bench_nats_rr *rr = aligned_alloc(_Alignof(struct bench_nats_rr), sizeof(*rr));
        if (rr == NULL)
                return -ENOMEM;
        memset(rr, 0, sizeof(*rr));
        *out = rr;
        rr->cs = *cs;
        rr->clock = &env->clock;
        rr->req.fd = rr->resp.fd = -1;
        rr->payload = malloc(cs->msg_bytes + 2u);
        rr->hist = malloc(sizeof(*rr->hist));
        if (rr->payload == NULL || rr->hist == NULL)
                return -ENOMEM;
        for (unsigned b = 0; b < cs->msg_bytes; b++)
                rr->payload[b] = (char)('a' + b % 26);
        memcpy(rr->payload + cs->msg_bytes, "\r\n", 2);
        bench_hist_init(rr->hist);
        unsigned serial = env->serial++;
        snprintf(rr->subject, sizeof(rr->subject), "bench.%d.%u.reqrep", (int)getpid(), serial);
        char inbox_sub[BENCH_NATS_SUBJECT_BYTES];
        snprintf(inbox_sub, sizeof(inbox_sub), "_INBOX.bench%d.%u.*", (int)getpid(), serial);
        rr->inbox_len = strlen(inbox_sub) - 1;
        memcpy(rr->inbox, inbox_sub, rr->inbox_len);
        int rc = bench_nats_rr_conn(env, s, rr, &rr->resp, rr->subject,
                                    "responder: connect and SUB");
        if (rc == 0)
                rc = bench_nats_rr_conn(env, s, rr, &rr->req, inbox_sub,
                                        "requester: connect and SUB");
        if (rc != 0)
                return rc;
        /* Set after the handshake, which counts messages without looking. */
        rr->resp.on_msg = bench_nats_rr_answer;
        rr->resp.on_msg_arg = rr;
        rr->req.on_msg = bench_nats_rr_reply;
        rr->req.on_msg_arg = rr;
        uint64_t give_up_ns;
        bench_nats_times(env, &rr->open_ticks, &rr->close_ticks, &give_up_ns);
        rr->req.give_up_ns = rr->resp.give_up_ns = give_up_ns;
        return 0;
}

static int bench_nats_rr_threads(struct bench_nats_env *env, struct bench_nats_rr *rr)
{
        pthread_t resp, req;
        int rc = bench_thread_start(&resp, -1, bench_nats_rr_respond, rr);
        if (rc != 0)
                return rc;
        rc = bench_thread_start(&req, -1, bench_nats_rr_request, rr);
        if (rc == 0)
                rc = bench_progress_join(env->pg, req);
        atomic_store_explicit(&rr->stop, true, memory_order_relaxed);
        int join_rc = -pthread_join(resp, NULL);
        return rc != 0 ? rc : join_rc;
}

static int bench_nats_rr_once(struct bench_nats_env *env, const struct bench_nats_case *cs,
                              struct bench_nats_server *s, struct bench_nats_tally *t,
                              unsigned run)
{
        struct bench_nats_rr *rr = NULL;
        int rc = bench_nats_rr_new(env, cs, s, &rr);
        if (rc == 0)
                rc = bench_nats_rr_threads(env, rr);
        if (rc == 0 && rr->req_rc != 0) {
                rc = rr->req_rc;
                bench_nats_say(env, cs, s, rc == -EHOSTUNREACH ? "requester: no responders (503)"
                               : "requester", rc, &rr->req);
        } else if (rc == 0 && rr->resp_rc != 0) {
                rc = rr->resp_rc;
                bench_nats_say(env, cs, s, "responder", rc, &rr->resp);
        }
        if (rc == 0) {
                struct bench_latency *lat = &t->lats[run];
                bench_latency_from_hist(lat, rr->hist);
                t->rates[run] = rr->window_ns == 0 ? 0
                                : (double)rr->hist->count * 1e9 / (double)rr->window_ns;
                t->errors += rr->errors + rr->resp_errors + rr->req.errs + rr->resp.errs;
                bench_nats_tally_share(t, rr->req_share);
                bench_nats_tally_share(t, rr->resp_share);
                if (!env->o->quiet)
                        fprintf(stderr, "nats: reqrep %u B, %s, run %u/%u: %.1f k req/s, p50 "
                                        "%.1f us, p99 %.1f us, p999 %.1f us\n", cs->msg_bytes,
                                s->system, run + 1, env->o->runs, t->rates[run] / 1e3,
                                (double)lat->p50_ns / 1e3, (double)lat->p99_ns / 1e3,
                                (double)lat->p999_ns / 1e3);
        }
        if (rr != NULL)
                bench_nats_rr_free(rr);
        return rc;
}

/* ---- cases and the report ----------------------------------------------- */

static int bench_nats_report(const struct bench_nats_env *env, const struct bench_nats_case *cs,
                             const struct bench_nats_server *s, struct bench_nats_tally *t,
                             struct bench_report *rep)
{
        const unsigned runs = env->o->runs;
        struct bench_result *res = bench_report_add(rep, s->system, "nats",
                                                    bench_nats_kind_names[cs->kind]);
        if (res == NULL)
                return -ENOSPC;
        res->msg_bytes = cs->msg_bytes;
        res->msgs_per_s = bench_median_f64(t->rates, runs);
        res->bytes_per_s = res->msgs_per_s * cs->msg_bytes;
        res->errors = t->errors;
        res->cpu_share = t->share;
        if (cs->kind == BENCH_NATS_REQREP) {
                res->has_latency = true;
                snprintf(res->clock, sizeof(res->clock), "%s", bench_clock_name(&env->clock));
                bench_latency_median(&res->lat, t->lats, runs);
                return 0;
        }
        if (cs->kind == BENCH_NATS_PUB)
                return 0;
        if (cs->kind == BENCH_NATS_FANOUT || cs->kind == BENCH_NATS_QUEUE)
                bench_result_u64(res, "subs", cs->subs);
        bench_result_rate(res, "sent_per_s", bench_median_f64(t->sent_rates, runs));
        bench_result_u64(res, "sent", t->sent);
        bench_result_u64(res, "lost", t->lost);
        if (cs->kind == BENCH_NATS_QUEUE)
                bench_result_u64(res, "dups", t->dups);
        if (t->late != 0 && !env->o->quiet)
                fprintf(stderr, "nats: %s against %s: %" PRIu64 " messages arrived after the "
                                "PONG to a later PING on their connection\n",
                        bench_nats_kind_names[cs->kind], s->system, t->late);
        if ((t->lost != 0 || t->dups != 0) && !env->o->quiet)
                fprintf(stderr, "nats: %s against %s: %" PRIu64 " lost, %" PRIu64
                                " duplicated of %" PRIu64 " sent (errors)\n",
                        bench_nats_kind_names[cs->kind], s->system, t->lost, t->dups, t->sent);
        return 0;
}

/* --runs runs against every server, alternating; a server that failed a
 * run gets no more and no result. Returns the first failure. */
static int bench_nats_case_run(struct bench_nats_env *env, const struct bench_nats_case *cs,
                               struct bench_report *rep)
{
        static struct bench_nats_tally tallies[BENCH_NATS_URLS_MAX];
        const unsigned runs = env->o->runs;
        for (unsigned i = 0; i < env->servers_n; i++) {
                memset(&tallies[i], 0, sizeof(tallies[i]));
                tallies[i].share = 1.0;
        }
        for (unsigned run = 0; run < runs; run++) {
                for (unsigned i = 0; i < env->servers_n; i++) {
                        struct bench_nats_server *s = &env->servers[i];
                        if (tallies[i].rc != 0)
                                continue;
                        bench_progress_label(env->pg, "nats: %s %u B, %s, run %u/%u",
                                             bench_nats_kind_names[cs->kind], cs->msg_bytes,
                                             s->system, run + 1, runs);
                        tallies[i].rc = cs->kind == BENCH_NATS_REQREP
                                        ? bench_nats_rr_once(env, cs, s, &tallies[i], run)
                                        : bench_nats_tput_once(env, cs, s, &tallies[i], run);
                }
        }
        int rc = 0;
        for (unsigned i = 0; i < env->servers_n; i++) {
                int one = tallies[i].rc != 0 ? tallies[i].rc
                          : bench_nats_report(env, cs, &env->servers[i], &tallies[i], rep);
                rc = rc != 0 ? rc : one;
        }
        return rc;
}

/* --url: a comma-separated list of servers. */
static int bench_nats_urls(struct bench_nats_env *env, const char *list)
{
        const char *p = list != NULL ? list : "nats://127.0.0.1:" BENCH_NATS_PORT_DEFAULT;
        env->servers_n = 0;
        for (;;) {
                size_t len = strcspn(p, ",");
                char url[BENCH_NATS_URL_BYTES];
                if (env->servers_n == BENCH_NATS_URLS_MAX || len >= sizeof(url)) {
                        fprintf(stderr, "atomq-bench: nats: --url: at most %u servers of at "
                                        "most %u characters each\n", BENCH_NATS_URLS_MAX,
                                BENCH_NATS_URL_BYTES - 1);
                        return -EINVAL;
                }
                memcpy(url, p, len);
                url[len] = '\0';
                if (bench_nats_url_parse(&env->servers[env->servers_n++], url) != 0) {
                        fprintf(stderr, "atomq-bench: nats: --url: expected nats://HOST:PORT, "
                                        "got '%s'\n", url);
                        return -EINVAL;
                }
                if (p[len] == '\0')
                        return 0;
                p += len + 1;
        }
}

/* The case word (none: all five), --sizes and --subs. */
static int bench_nats_env_setup(struct bench_nats_env *env)
{
        const struct bench_opts *o = env->o;
        const char *word = o->case_word;
        bool any = false;
        for (unsigned k = 0; k < BENCH_NATS_KINDS; k++) {
                env->kinds[k] = word == NULL || strcmp(word, bench_nats_kind_names[k]) == 0;
                any |= env->kinds[k];
        }
        if (!any) {
                fprintf(stderr, "atomq-bench: nats: unknown case '%s': pub, pubsub, fanout, "
                                "queue or reqrep (see --help)\n", word);
                return -EINVAL;
        }
        if (o->subs_n != 0 && !env->kinds[BENCH_NATS_FANOUT] &&
            !env->kinds[BENCH_NATS_QUEUE]) {
                fprintf(stderr, "atomq-bench: nats %s: --subs applies to fanout and queue\n",
                        word);
                return -EINVAL;
        }
        env->subs_n = o->subs_n != 0 ? o->subs_n : 1;
        env->subs[0] = BENCH_NATS_SUBS_DEFAULT;
        for (unsigned i = 0; i < o->subs_n; i++) {
                env->subs[i] = o->subs[i];
                if (o->subs[i] > BENCH_NATS_SUBS_MAX) {
                        fprintf(stderr, "atomq-bench: nats: --subs: at most %u subscriber "
                                        "connections, got %u\n", BENCH_NATS_SUBS_MAX, o->subs[i]);
                        return -EINVAL;
                }
        }
        env->sizes_n = o->sizes_n != 0 ? o->sizes_n : 1;
        env->sizes_bytes[0] = BENCH_NATS_SIZE_DEFAULT;
        memcpy(env->sizes_bytes, o->sizes_bytes, o->sizes_n * sizeof(o->sizes_bytes[0]));
        return bench_nats_urls(env, o->url);
}

/* The cases of one kind and size: one per --subs for fanout and queue. */
static int bench_nats_kind_run(struct bench_nats_env *env, enum bench_nats_kind kind,
                               unsigned msg_bytes, struct bench_report *rep)
{
        bool many = kind == BENCH_NATS_FANOUT || kind == BENCH_NATS_QUEUE;
        int rc = 0;
        for (unsigned i = 0; i < (many ? env->subs_n : 1); i++) {
                struct bench_nats_case cs = {
                        .kind = kind,
                        .msg_bytes = msg_bytes,
                        .subs = many ? env->subs[i] : kind == BENCH_NATS_PUBSUB ? 1 : 0,
                };
                int one = bench_nats_case_run(env, &cs, rep);
                rc = rc != 0 ? rc : one;
        }
        return rc;
}

int bench_nats_run(const struct bench_opts *o, struct bench_progress *pg,
                   struct bench_report *rep)
{
        static struct bench_nats_env env;
        memset(&env, 0, sizeof(env));
        env.o = o;
        env.pg = pg;
        int rc = bench_nats_env_setup(&env);
        if (rc != 0)
                return rc;
        bench_clock_init(&env.clock, true);
        unsigned cases = 0;
        for (unsigned k = 0; k < BENCH_NATS_KINDS; k++)
                cases += env.kinds[k] * (k == BENCH_NATS_FANOUT || k == BENCH_NATS_QUEUE
                                         ? env.subs_n : 1);
        bench_progress_start(pg, cases * env.sizes_n * env.servers_n * o->runs *
                                 (o->warmup_s + o->duration_s + 0.05));
        /* Every case runs even after one failed: the others still say
         * something, and the failure is reported (exit 1). */
        for (unsigned k = 0; k < BENCH_NATS_KINDS; k++) {
                for (unsigned i = 0; env.kinds[k] && i < env.sizes_n; i++) {
                        int one = bench_nats_kind_run(&env, k, env.sizes_bytes[i], rep);
                        rc = rc != 0 ? rc : one;
                }
        }
        bench_progress_end(pg);
        /* -EINVAL means a usage error to bench_main: a run's is not one. */
        return rc == -EINVAL ? -EIO : rc;
}
