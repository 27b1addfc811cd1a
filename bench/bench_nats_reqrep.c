/* bench_nats_reqrep.c - the latency case of scenario "nats": reqrep. A
 * responder connection answers each request with a message of the same
 * size to the request's reply subject; one requester sends the next
 * request when the answer is in and, once the window is open, times each
 * round trip into a histogram: p50/p99/p999 and requests/s. bench_nats.c
 * runs the case and reports it.
 *
 *      atomq-bench nats reqrep --sizes 16,1024 --url nats://127.0.0.1:4222
 *
 * Every request has a reply subject of its own, the run's inbox prefix
 * and its sequence number, so an answer to another request is told apart
 * and counted as an error; a status message (HMSG 503) means nobody is
 * subscribed to the requests and fails the run.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench_clock.h"
#include "bench/bench_cpu.h"
#include "bench/bench_hist.h"
#include "bench/bench_nats_pvt.h"
#include "bench/bench_progress.h"
#include "bench/bench_report.h"
#include "shm/shm_clock.h"

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

int bench_nats_rr_once(struct bench_nats_env *env, const struct bench_nats_case *cs,
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
