/* bench_ipc_agent.c - scenario "ipc", the cases through a running atomqd:
 * agents attached with atomq_connect, every message going through a
 * dataplane worker (include/atomq/atomq.h, section "agents").
 *
 *      atomqd --control /tmp/aq/control.sock --metrics off --workers 1 &
 *      atomq-bench ipc --control /tmp/aq/control.sock --runs 3 --json
 *
 * Two cases, each repeated --runs times and reported as medians:
 *   ipc-pubsub    one agent connection publishes 32-byte messages carrying a
 *                 sequence number to a subject as fast as atomq_publish
 *                 takes them (it is asynchronous; one atomq_flush at the
 *                 end), another connection subscribed to the subject
 *                 receives them (atomq_recv without waiting, polling). Each
 *                 connection is used by a thread of its own (but see CPUs
 *                 below). The subject has two tokens, "bench.ps<pid>-<run>",
 *                 with one subscription on it. msgs_per_s is
 *                 what the subscriber received in the timed window;
 *                 sent_per_s what the publisher sent in about the same
 *                 window. A delivery ring that is full drops deliveries
 *                 (broadcast is at most once): `dropped` is sent - received
 *                 over every run, after the subscriber drained what was
 *                 still on the way, and must equal what the workers
 *                 counted (atomq_dropped): a difference is a loss nobody
 *                 accounted for, an error; so is a sequence number that
 *                 goes back (gaps are the drops).
 *   ipc-pingpong  one connection subscribed to its own subject publishes a
 *                 message and polls atomq_recv until it comes back: agent
 *                 -> command ring -> worker (match, delivery) -> delivery
 *                 ring -> agent, each round trip timed into a histogram.
 *
 * CPUs: the worker is a busy thread too. With --cpus A,B the publisher (or
 * ping) runs pinned on A and the subscriber on B. With A == B one thread
 * pinned to A does both sides of ipc-pubsub in turn: a burst of 64
 * publishes, then every delivery that came back (bench_agent_pubsub_one).
 * Without --cpus nothing is pinned, and ipc-pubsub takes two threads when
 * this process may use three CPUs or more, else one: three busy threads on
 * two CPUs run in time slices, and the subscriber's delivery ring overflows
 * while it waits for its slice (docs/benchmarks.md has the figures).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomq/atomq.h"
#include "bench/bench_ipc_pvt.h"
#include "bench/bench_ring_pvt.h"

/* Each thread reads the clock (and the publisher the stop flag) once per
 * this many messages. */
#define BENCH_AGENT_CLOCK_EVERY 1024u
/* After the publisher's flush every delivery is in the subscriber's ring
 * or was dropped (the worker writes deliveries before the completion the
 * flush waits for); this much silence after it ends the drain anyway. */
#define BENCH_AGENT_QUIET_NS 100000000ull
#define BENCH_AGENT_SUBJECT_BYTES 48u
/* One thread: messages published between two looks at the deliveries;
 * far below what a delivery ring holds (256 KiB: ~2,200 of them). */
#define BENCH_AGENT_BURST 64u

struct bench_agent_msg {
        uint64_t seq;
        uint8_t pad[BENCH_IPC_MSG_BYTES - sizeof(uint64_t)];
};
_Static_assert(sizeof(struct bench_agent_msg) == BENCH_IPC_MSG_BYTES, "message size");

/* One run. What each thread writes sits on lines of its own. */
struct bench_agent_run {
        /* Read-only while the threads run. */
        struct atomq *pub, *sub;        /* pingpong: pub only */
        char subject[BENCH_AGENT_SUBJECT_BYTES];
        uint32_t sid;
        uint64_t sub_id;
        uint64_t dropped0;              /* atomq_dropped of the subscriber at start */
        struct bench_clock clock;
        bool yield;
        uint64_t open_ticks, close_ticks, give_up_ticks;
        struct bench_hist *hist;        /* pingpong only */
        _Alignas(BENCH_RING_GUARD_BYTES) _Atomic bool stop;
        _Alignas(BENCH_RING_GUARD_BYTES) _Atomic bool pub_done;
        /* The publisher's (or ping's); published by the release of pub_done. */
        _Alignas(BENCH_RING_GUARD_BYTES) uint64_t sent;
        double sent_per_s;
        int pub_rc;
        double pub_share;
        /* The subscriber's. */
        _Alignas(BENCH_RING_GUARD_BYTES) uint64_t msgs; /* in the window */
        uint64_t window_ns;
        uint64_t received;                              /* in all */
        uint64_t dropped;   /* counted by the workers (atomq_dropped), after the join */
        uint64_t errors;
        int sub_rc;
        double sub_share;
};

/* What a thread does when there was nothing to do; true once the run is long
 * past its end (the peer or the worker stalled). */
static bool bench_agent_stalled(const struct bench_agent_run *r, uint32_t spins)
{
        return bench_ring_stalled(r->yield, &r->clock, r->give_up_ticks, spins);
}

/* Publisher of ipc-pubsub: as fast as publish takes them, until stop. */
static void *bench_agent_pub(void *arg)
{
        struct bench_agent_run *r = arg;
        struct bench_thread_share share;
        bench_thread_share_start(&share);
        struct bench_agent_msg m = { .seq = 0 };
        uint64_t n0 = 0, t0 = 0, t = 0;
        int rc;
        for (;;) {
                rc = atomq_publish(r->pub, r->subject, &m, sizeof(m), NULL);
                if (shm_unlikely(rc != 0))
                        break;
                if (shm_likely(++m.seq % BENCH_AGENT_CLOCK_EVERY != 0))
                        continue;
                /* The window's end is the subscriber's: it says stop. */
                (void)bench_ipc_window(&r->clock, r->open_ticks, UINT64_MAX, m.seq, &t, &t0, &n0);
                if (atomic_load_explicit(&r->stop, memory_order_relaxed))
                        break;
                if (t > r->give_up_ticks) {
                        rc = -ETIMEDOUT;
                        break;
                }
        }
        r->pub_share = bench_thread_share_end(&share);
        int flush_rc = atomq_flush(r->pub);
        r->sent = m.seq;
        r->sent_per_s = t0 == 0 || t <= t0 ? 0
                        : (double)(m.seq - n0) * 1e9 / (double)bench_clock_to_ns(&r->clock, t - t0);
        r->pub_rc = rc != 0 ? rc : flush_rc;
        /* Pairs with the acquire load in bench_agent_drain. */
        atomic_store_explicit(&r->pub_done, true, memory_order_release);
        return NULL;
}

/* Checks one delivery against the sequence so far: a gap is a drop
 * (counted at the end as sent - received), going back is an error. */
static inline void bench_agent_check(const struct bench_agent_run *r,
                                     const struct atomq_delivery *d, uint64_t *want,
                                     uint64_t *errors)
{
        uint64_t seq;
        if (shm_unlikely(d->len != BENCH_IPC_MSG_BYTES || d->sid != r->sid)) {
                (*errors)++;
                return;
        }
        memcpy(&seq, d->data, sizeof(seq));
        if (shm_unlikely(seq < *want))
                (*errors)++;
        else
                *want = seq + 1;
}

/* After the window: takes what is still on the way once the publisher has
 * flushed, so that sent - received counts drops only. Returns 0 or -errno. */
static int bench_agent_drain(struct bench_agent_run *r, uint64_t *want, uint64_t *got)
{
        uint64_t quiet_ticks = bench_clock_from_ns(&r->clock, BENCH_AGENT_QUIET_NS);
        uint64_t last = bench_clock_ticks(&r->clock);
        for (;;) {
                struct atomq_delivery d;
                int rc = atomq_recv(r->sub, &d, 0);
                uint64_t t = bench_clock_ticks(&r->clock);
                if (rc == 1) {
                        bench_agent_check(r, &d, want, &r->errors);
                        (*got)++;
                        last = t;
                        continue;
                }
                if (rc != -EAGAIN)
                        return rc;
                /* Pairs with the release store in bench_agent_pub. */
                if (atomic_load_explicit(&r->pub_done, memory_order_acquire)) {
                        if (*got >= r->sent || t - last > quiet_ticks)
                                return 0;
                } else if (t > r->give_up_ticks + quiet_ticks) {
                        return -ETIMEDOUT;
                } else {
                        last = t;
                }
                bench_ring_idle(r->yield);
        }
}

/* Subscriber of ipc-pubsub: owns the timed window, then tells the
 * publisher to stop and drains. */
static void *bench_agent_sub(void *arg)
{
        struct bench_agent_run *r = arg;
        struct bench_thread_share share;
        bench_thread_share_start(&share);
        uint64_t want = 0, got = 0, n0 = 0, t0 = 0, t = 0;
        int rc = 0;
        for (uint32_t spins = 1;; spins++) {
                struct atomq_delivery d;
                int n = atomq_recv(r->sub, &d, 0);
                if (shm_likely(n == 1)) {
                        bench_agent_check(r, &d, &want, &r->errors);
                        if (shm_likely(++got % BENCH_AGENT_CLOCK_EVERY != 0))
                                continue;
                } else if (n != -EAGAIN) {
                        rc = n;
                        break;
                } else if (bench_agent_stalled(r, spins)) {
                        rc = -ETIMEDOUT;
                        break;
                }
                if (bench_ipc_window(&r->clock, r->open_ticks, r->close_ticks, got, &t, &t0,
                                     &n0))
                        break;
        }
        atomic_store_explicit(&r->stop, true, memory_order_relaxed);
        r->sub_share = bench_thread_share_end(&share);
        r->msgs = got - n0;
        r->window_ns = t0 == 0 ? 0 : bench_clock_to_ns(&r->clock, t - t0);
        if (rc == 0)
                rc = bench_agent_drain(r, &want, &got);
        r->received = got;
        r->sub_rc = rc;
        return NULL;
}

/* ipc-pubsub with both connections on one thread (--cpus A,A, or fewer
 * than three CPUs): it publishes a burst, then takes every delivery that
 * came back. Two threads sharing a CPU would run in time slices, and the
 * delivery ring of the one not running would overflow. */
static void *bench_agent_pubsub_one(void *arg)
{
        struct bench_agent_run *r = arg;
        struct bench_thread_share share;
        bench_thread_share_start(&share);
        struct bench_agent_msg m = { .seq = 0 };
        uint64_t want = 0, got = 0, n0 = 0, s0 = 0, t0 = 0, t = 0;
        int rc = 0;
        while (rc == 0) {
                for (unsigned i = 0; i < BENCH_AGENT_BURST && rc == 0; i++) {
                        rc = atomq_publish(r->pub, r->subject, &m, sizeof(m), NULL);
                        m.seq += rc == 0;
                }
                for (;;) {
                        struct atomq_delivery d;
                        int n = atomq_recv(r->sub, &d, 0);
                        if (n != 1) {
                                rc = rc != 0 || n == -EAGAIN ? rc : n;
                                break;
                        }
                        bench_agent_check(r, &d, &want, &r->errors);
                        got++;
                }
                bool opened = t0 != 0;
                bool done = bench_ipc_window(&r->clock, r->open_ticks, r->close_ticks, got, &t,
                                             &t0, &n0);
                if (!opened && t0 != 0)
                        s0 = m.seq; /* what was sent when the window opened */
                if (done)
                        break;
        }
        r->pub_share = r->sub_share = bench_thread_share_end(&share);
        r->msgs = got - n0;
        r->window_ns = t0 == 0 ? 0 : bench_clock_to_ns(&r->clock, t - t0);
        r->sent_per_s = r->window_ns == 0 ? 0 : (double)(m.seq - s0) * 1e9 / (double)r->window_ns;
        int flush_rc = atomq_flush(r->pub);
        r->sent = m.seq;
        atomic_store_explicit(&r->pub_done, true, memory_order_release);
        if (rc == 0)
                rc = flush_rc;
        if (rc == 0)
                rc = bench_agent_drain(r, &want, &got);
        r->received = got;
        r->pub_rc = rc;
        return NULL;
}

/* Ping of ipc-pingpong: publish, poll until it is back, record. */
static void *bench_agent_ping(void *arg)
{
        struct bench_agent_run *r = arg;
        struct bench_thread_share share;
        bench_thread_share_start(&share);
        struct bench_agent_msg m = { .seq = 0 };
        uint64_t want = 0, first = 0, t1 = 0;
        int rc = 0;
        for (;; m.seq++) {
                struct atomq_delivery d;
                uint64_t t0 = bench_clock_ticks(&r->clock);
                rc = atomq_publish(r->pub, r->subject, &m, sizeof(m), NULL);
                for (uint32_t spins = 1; rc == 0; spins++) {
                        int n = atomq_recv(r->pub, &d, 0);
                        if (shm_likely(n == 1))
                                break;
                        rc = n != -EAGAIN ? n : bench_agent_stalled(r, spins) ? -ETIMEDOUT : 0;
                }
                t1 = bench_clock_ticks(&r->clock);
                if (shm_unlikely(rc != 0))
                        break;
                bench_agent_check(r, &d, &want, &r->errors);
                r->errors += want != m.seq + 1; /* not this round's message */
                if (t0 < r->open_ticks)
                        continue;
                if (first == 0)
                        first = t0;
                bench_hist_record(r->hist, bench_clock_to_ns(&r->clock, t1 - t0));
                if (t1 >= r->close_ticks)
                        break;
        }
        r->pub_share = r->sub_share = bench_thread_share_end(&share);
        int flush_rc = atomq_flush(r->pub);
        r->window_ns = first == 0 ? 0 : bench_clock_to_ns(&r->clock, t1 - first);
        r->pub_rc = rc != 0 ? rc : flush_rc;
        return NULL;
}

enum bench_agent_kind { BENCH_AGENT_PUBSUB, BENCH_AGENT_PP };

static const char *const bench_agent_case_names[] = {
        [BENCH_AGENT_PUBSUB] = "ipc-pubsub",
        [BENCH_AGENT_PP] = "ipc-pingpong",
};

/* The two connections of the scenario, opened once: conn[0] publishes (or
 * pings), conn[1] subscribes. */
struct bench_agent_conns {
        struct atomq *conn[2];
};

static void bench_agent_run_free(struct bench_agent_run *r)
{
        struct atomq *owner = r->sub != NULL ? r->sub : r->pub;
        if (r->sub_id != 0 && atomq_unsubscribe(owner, r->sub_id) != 0)
                fprintf(stderr, "atomq-bench: ipc: unsubscribe %s failed\n", r->subject);
        free(r->hist);
        free(r);
}

/* A run's state, its subject subscribed and its window timed. */
static int bench_agent_run_new(const struct bench_ipc_env *env, struct bench_agent_conns *c,
                               enum bench_agent_kind kind, unsigned run,
                               struct bench_agent_run **out)
{
        struct bench_agent_run *r = aligned_alloc(_Alignof(struct bench_agent_run), sizeof(*r));
        if (r == NULL)
                return -ENOMEM;
        memset(r, 0, sizeof(*r));
        r->pub = c->conn[0];
        r->sub = kind == BENCH_AGENT_PUBSUB ? c->conn[1] : NULL;
        r->clock = env->clock;
        r->yield = env->o->cpus_set && env->cpus.shared;
        r->sid = run + 1;
        /* Two tokens, as a typical subject ("orders.eu"); unique per process
         * and run so that nothing of an earlier run or another bench comes
         * in. */
        snprintf(r->subject, sizeof(r->subject), "bench.%s%d-%u",
                 kind == BENCH_AGENT_PUBSUB ? "ps" : "pp", (int)getpid(), run);
        int rc = 0;
        if (kind == BENCH_AGENT_PP) {
                r->hist = malloc(sizeof(*r->hist));
                rc = r->hist == NULL ? -ENOMEM : 0;
                if (rc == 0)
                        bench_hist_init(r->hist);
        }
        if (rc == 0)
                rc = atomq_subscribe(r->sub != NULL ? r->sub : r->pub, r->subject, NULL, r->sid,
                                     &r->sub_id);
        r->dropped0 = atomq_dropped(r->sub != NULL ? r->sub : r->pub);
        if (rc != 0) {
                bench_agent_run_free(r);
                return rc;
        }
        const struct bench_clock *clk = &env->clock;
        r->open_ticks = bench_clock_ticks(clk) +
                        bench_clock_from_ns(clk, (uint64_t)(env->o->warmup_s * 1e9));
        r->close_ticks = r->open_ticks +
                         bench_clock_from_ns(clk, (uint64_t)(env->o->duration_s * 1e9));
        r->give_up_ticks = r->close_ticks + bench_clock_from_ns(clk, BENCH_RING_STALL_NS);
        *out = r;
        return 0;
}

/* The CPU of thread i (0: publisher or ping, 1: subscriber): pinned only
 * with --cpus (see the top of the file). */
static int bench_agent_cpu(const struct bench_ipc_env *env, int i)
{
        return env->o->cpus_set ? env->cpus.cpu[i] : -1;
}

/* Whether one thread does both sides of ipc-pubsub (see the top of the
 * file). */
static bool bench_agent_one_thread(const struct bench_ipc_env *env)
{
        cpu_set_t allowed;
        if (env->o->cpus_set)
                return env->cpus.shared;
        return sched_getaffinity(0, sizeof(allowed), &allowed) != 0 || CPU_COUNT(&allowed) < 3;
}

/* Runs the threads of one run; 0 or the first error any of them met. */
static int bench_agent_threads(const struct bench_ipc_env *env, struct bench_agent_run *r,
                               enum bench_agent_kind kind)
{
        pthread_t pub, sub;
        bool one = kind == BENCH_AGENT_PUBSUB && bench_agent_one_thread(env);
        if (kind == BENCH_AGENT_PP || one) {
                int rc = bench_thread_start(&pub, bench_agent_cpu(env, 0),
                                            one ? bench_agent_pubsub_one : bench_agent_ping, r);
                if (rc == 0)
                        rc = bench_progress_join(env->pg, pub);
                return rc != 0 ? rc : r->pub_rc;
        }
        int rc = bench_thread_start(&sub, bench_agent_cpu(env, 1), bench_agent_sub, r);
        if (rc != 0)
                return rc;
        rc = bench_thread_start(&pub, bench_agent_cpu(env, 0), bench_agent_pub, r);
        if (rc != 0) {
                /* The subscriber gives up after give_up_ticks. */
                atomic_store(&r->pub_done, true);
                pthread_join(sub, NULL);
                return rc;
        }
        rc = bench_progress_join(env->pg, sub);
        int pub_rc = -pthread_join(pub, NULL);
        if (rc == 0)
                rc = pub_rc != 0 ? pub_rc : r->pub_rc != 0 ? r->pub_rc : r->sub_rc;
        return rc;
}

/* What --runs runs of a case add up to. */
struct bench_agent_runs {
        double rates[BENCH_RUNS_MAX];
        double sent_rates[BENCH_RUNS_MAX];
        struct bench_latency lats[BENCH_RUNS_MAX];
        uint64_t sent, received, dropped, errors;
        double cpu_share;
};

/* Takes one finished run into the tally. */
static void bench_agent_tally(struct bench_agent_runs *out, unsigned run,
                              const struct bench_agent_run *r, enum bench_agent_kind kind)
{
        uint64_t n = kind == BENCH_AGENT_PP ? r->hist->count : r->msgs;
        out->rates[run] = r->window_ns == 0 ? 0 : (double)n * 1e9 / (double)r->window_ns;
        out->sent_rates[run] = r->sent_per_s;
        if (kind == BENCH_AGENT_PP)
                bench_latency_from_hist(&out->lats[run], r->hist);
        out->errors += r->errors;
        out->sent += r->sent;
        out->received += r->received;
        out->dropped += r->dropped;
        /* Every message is received or counted as dropped, once. */
        uint64_t accounted = r->received + r->dropped;
        if (kind == BENCH_AGENT_PUBSUB)
                out->errors += accounted > r->sent ? accounted - r->sent : r->sent - accounted;
        double least = r->pub_share < r->sub_share ? r->pub_share : r->sub_share;
        if (least < out->cpu_share)
                out->cpu_share = least;
}

/* Every run's figures on stderr: the report keeps only medians. */
static void bench_agent_note(unsigned run, const struct bench_agent_run *r,
                             const struct bench_agent_runs *t, enum bench_agent_kind kind)
{
        if (kind == BENCH_AGENT_PP) {
                fprintf(stderr, "ipc: ipc-pingpong run %u: %.0f round trips/s, p50 %llu ns, "
                                "p99 %llu ns, p999 %llu ns\n", run + 1, t->rates[run],
                        (unsigned long long)t->lats[run].p50_ns,
                        (unsigned long long)t->lats[run].p99_ns,
                        (unsigned long long)t->lats[run].p999_ns);
                return;
        }
        fprintf(stderr, "ipc: ipc-pubsub run %u: received %.3f M/s, sent %.3f M/s, %llu of "
                        "%llu dropped (%llu counted), CPU share %.2f/%.2f\n", run + 1,
                t->rates[run] / 1e6, t->sent_rates[run] / 1e6,
                (unsigned long long)(r->sent > r->received ? r->sent - r->received : 0),
                (unsigned long long)r->sent, (unsigned long long)r->dropped, r->pub_share,
                r->sub_share);
}

static int bench_agent_runs(const struct bench_ipc_env *env, struct bench_agent_conns *c,
                            enum bench_agent_kind kind, struct bench_agent_runs *out)
{
        const char *name = bench_agent_case_names[kind];
        memset(out, 0, sizeof(*out));
        out->cpu_share = 1.0;
        for (unsigned run = 0; run < env->o->runs; run++) {
                bench_progress_label(env->pg, "ipc: %s, run %u/%u", name, run + 1,
                                     env->o->runs);
                struct bench_agent_run *r = NULL;
                int rc = bench_agent_run_new(env, c, kind, run, &r);
                if (rc == 0)
                        rc = bench_agent_threads(env, r, kind);
                if (rc == 0)
                        r->dropped = atomq_dropped(r->sub != NULL ? r->sub : r->pub) - r->dropped0;
                if (rc == 0)
                        bench_agent_tally(out, run, r, kind);
                if (rc == 0 && !env->o->quiet)
                        bench_agent_note(run, r, out, kind);
                if (r != NULL)
                        bench_agent_run_free(r);
                if (rc != 0) {
                        bench_progress_end(env->pg);
                        fprintf(stderr, "atomq-bench: ipc: %s run %u: %s\n", name, run + 1,
                                atomq_strerror(rc));
                        return rc;
                }
        }
        return 0;
}

static int bench_agent_case(const struct bench_ipc_env *env, struct bench_agent_conns *c,
                            enum bench_agent_kind kind, struct bench_report *rep,
                            struct bench_result **res_out)
{
        const unsigned runs = env->o->runs;
        static struct bench_agent_runs t;
        int rc = bench_agent_runs(env, c, kind, &t);
        if (rc != 0)
                return rc;
        struct bench_result *res = bench_report_add(rep, "atomq", "ipc",
                                                    bench_agent_case_names[kind]);
        if (res == NULL)
                return -ENOSPC;
        res->msg_bytes = BENCH_IPC_MSG_BYTES;
        res->msgs_per_s = bench_median_f64(t.rates, runs);
        res->bytes_per_s = res->msgs_per_s * BENCH_IPC_MSG_BYTES;
        res->errors = t.errors;
        res->cpu_share = t.cpu_share;
        if (kind == BENCH_AGENT_PP) {
                res->has_latency = true;
                snprintf(res->clock, sizeof(res->clock), "%s", bench_clock_name(&env->clock));
                bench_latency_median(&res->lat, t.lats, runs);
        } else {
                uint64_t dropped = t.sent > t.received ? t.sent - t.received : 0;
                bench_result_rate(res, "sent_per_s", bench_median_f64(t.sent_rates, runs));
                bench_result_u64(res, "sent", t.sent);
                bench_result_u64(res, "dropped", dropped);
                if (dropped != t.dropped && !env->o->quiet)
                        fprintf(stderr, "ipc: ipc-pubsub: %llu not received but %llu counted as "
                                        "dropped by the workers: errors\n",
                                (unsigned long long)dropped, (unsigned long long)t.dropped);
                bench_result_f64(res, "dropped_pct",
                                 t.sent == 0 ? 0 : 100.0 * (double)dropped / (double)t.sent);
                if (dropped != 0 && !env->o->quiet)
                        fprintf(stderr, "ipc: ipc-pubsub: %llu of %llu deliveries dropped "
                                        "(the subscriber's delivery ring was full)\n",
                                (unsigned long long)dropped, (unsigned long long)t.sent);
        }
        *res_out = res;
        return 0;
}

int bench_ipc_agent_cases(const struct bench_ipc_env *env, struct bench_report *rep,
                          struct bench_result **pubsub)
{
        struct bench_agent_conns c = { { NULL, NULL } };
        struct bench_result *pp = NULL;
        *pubsub = NULL;
        int rc = 0;
        for (int i = 0; i < 2 && rc == 0; i++)
                rc = atomq_connect(env->o->control_path, &c.conn[i]);
        if (rc != 0) {
                bench_progress_end(env->pg);
                fprintf(stderr, "atomq-bench: ipc: --control %s: %s\n", env->o->control_path,
                        strerror(-rc));
        }
        if (rc == 0)
                rc = bench_agent_case(env, &c, BENCH_AGENT_PUBSUB, rep, pubsub);
        if (rc == 0)
                rc = bench_agent_case(env, &c, BENCH_AGENT_PP, rep, &pp);
        atomq_close(c.conn[0]);
        atomq_close(c.conn[1]);
        return rc;
}
