/* bench_churn_nats.c - churn through atomq's NATS request-reply API (path
 * nats).
 *
 *      atomqd --nats 127.0.0.1:4222 --max-entities 2000000 --metrics off &
 *      atomq-bench churn --path nats --url nats://127.0.0.1:4222 \
 *              --entities 200000 --runs 3 --json
 *
 * One NATS connection creates N mailboxes "nc<pid>.<run>.<i>" with
 * `$AQ.MAILBOX.CREATE {"name":...}` and destroys them with
 * `$AQ.MAILBOX.DESTROY.<name>` (docs/protocol.md, "atomq's modes through
 * $AQ.>"). Requests are pipelined: they go out back to back, each with a
 * reply subject of its own, _INBOX.<token>.<phase>_<j>, under one wildcard
 * subscription _INBOX.<token>.*, and at most BENCH_NATS_CHURN_WINDOW are
 * unanswered at any time; answers are read as they come. Every request of
 * a phase is formatted before the phase is timed, so the figures are the
 * client protocol's and atomqd's, not snprintf's: a phase is timed from
 * its first request sent to its last answer in.
 *
 * Checked: every answer comes once, on a reply subject of the phase, and
 * says {"ok":true,...}. A stray or repeated answer is an error; one that
 * says anything but ok is an error and stops the phase (nothing more is
 * sent, what is in flight is drained, its text is printed), and the run
 * fails after destroying what it had created (BUSY refusals are tried
 * again), so atomqd is left as found. Untimed, a sample of the names answers
 * `$AQ.MAILBOX.SEND` with ok while live (a one-byte message the destroy
 * drops) and with NOT_FOUND once destroyed.
 *
 * The default N of 200,000 takes a few seconds a run on a two-CPU VM;
 * atomqd needs --max-entities of at least N per worker (names spread by
 * hash over the workers). Each phase's requests take up to
 * BENCH_NATS_CHURN_REQ_BYTES each of memory (about 80 are used).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "bench/bench_cpu.h"
#include "bench/bench_nats_pvt.h"
#include "bench/bench_progress.h"
#include "bench/bench_report.h"
#include "bench/bench_scenario.h"
#include "shm/shm_base.h"
#include "shm/shm_clock.h"

#define BENCH_NATS_CHURN_DEFAULT 200000u
/* Requests in flight: enough to keep atomqd's worker busy across many
 * reads (measured no slower than 4096 against one worker), few enough that no socket
 * buffer fills. Not more: with several workers, the half of the requests
 * owned by another worker crosses the 1 MiB mesh ring, and a request that
 * finds it full is answered BUSY at once; 4096 in flight did that against
 * --workers 2 on a two-CPU VM, 1024 did not. */
#define BENCH_NATS_CHURN_WINDOW 1024u
/* Room for one PUB: the longest, a create, is "PUB $AQ.MAILBOX.CREATE
 * _INBOX.<16>.<10>_<8> <2>\r\n{"name":"<18>"}\r\n", ~105 bytes. */
#define BENCH_NATS_CHURN_REQ_BYTES 128u
/* "nc", 5 digits of pid, '.', the run (2 digits), '.', up to 7 digits. */
#define BENCH_NATS_CHURN_NAME_BYTES 24u
/* Names sent to while live and after the destroy. */
#define BENCH_NATS_CHURN_SAMPLE 64u
/* Tries at destroying what a failed run left. */
#define BENCH_NATS_CHURN_CLEANUP_PASSES 16u
/* No answer for this long and the run gives up. */
#define BENCH_NATS_CHURN_STALL_NS 5000000000ull
/* A guess of one create or destroy, only for the progress line. */
#define BENCH_NATS_CHURN_OP_GUESS_S 5e-6

_Static_assert(BENCH_COUNT_MAX <= 10000000u, "nats churn names are at most 7 digits");
_Static_assert(BENCH_RUNS_MAX < 100, "nats churn names have a 2-digit run");

/* What a request's answer was; status[j] of a phase. */
enum bench_nats_churn_status {
        BENCH_NATS_CHURN_PENDING,
        BENCH_NATS_CHURN_OK,
        BENCH_NATS_CHURN_FAILED,
};

enum bench_nats_churn_verb {
        BENCH_NATS_CHURN_CREATE,
        BENCH_NATS_CHURN_DESTROY,
        BENCH_NATS_CHURN_SEND,
};

/* One phase's PUBs, back to back: request j is buf[off[j], off[j + 1]). */
struct bench_nats_churn_reqs {
        char *buf;
        size_t *off;
        uint32_t cap;           /* requests buf and off have room for */
        uint32_t n;
};

struct bench_nats_churn;

/* Requests of one kind and their answers. */
struct bench_nats_churn_phase {
        const struct bench_nats_churn *cn;
        unsigned id;            /* in the reply subjects */
        uint32_t n;
        const uint8_t *only;    /* NULL: all n; else only j with only[j] OK */
        bool want_ok;           /* false: NOT_FOUND is the right answer */
        bool go_on;             /* a wrong answer does not stop it (cleanup) */
        uint8_t *status;        /* n, one per request */
        uint32_t sent, answered, right;
        uint64_t errors;        /* wrong, unexpected or repeated answers */
        bool stop;              /* an answer said error: send no more */
        char first_err[BENCH_NATS_ERR_BYTES];
};

struct bench_nats_churn {
        const struct bench_opts *o;
        struct bench_nats_server server;
        struct bench_nats_conn conn;
        char inbox[48];         /* "_INBOX.<token>.": the reply subjects' stem */
        size_t inbox_len;
        unsigned phases;        /* ids handed out */
        unsigned pid;
        uint32_t n;
        struct bench_nats_churn_reqs reqs;
        uint8_t *created;       /* the create phase's status */
        uint8_t *destroyed;
        double create_s[BENCH_RUNS_MAX];
        double destroy_s[BENCH_RUNS_MAX];
        uint64_t errors;
        int rc;
        double cpu_share;
};

/* ---- requests ---------------------------------------------------------- */

static void bench_nats_churn_free(struct bench_nats_churn *cn)
{
        free(cn->reqs.buf);
        free(cn->reqs.off);
        free(cn->created);
        free(cn->destroyed);
        cn->reqs.buf = NULL;
        cn->reqs.off = NULL;
        cn->created = cn->destroyed = NULL;
}

/* Room for n requests and the statuses. -ENOMEM. */
static int bench_nats_churn_alloc(struct bench_nats_churn *cn)
{
        struct bench_nats_churn_reqs *q = &cn->reqs;
        q->cap = cn->n;
        q->buf = malloc((size_t)q->cap * BENCH_NATS_CHURN_REQ_BYTES);
        q->off = malloc(((size_t)q->cap + 1) * sizeof(*q->off));
        cn->created = malloc(cn->n);
        cn->destroyed = malloc(cn->n);
        if (q->buf == NULL || q->off == NULL || cn->created == NULL || cn->destroyed == NULL) {
                bench_nats_churn_free(cn);
                return -ENOMEM;
        }
        return 0;
}

/* Formats request j, on entity i, of phase id at p. Returns its length, or
 * 0 when it would not fit BENCH_NATS_CHURN_REQ_BYTES. */
static size_t bench_nats_churn_req(const struct bench_nats_churn *cn, char *p,
                                   enum bench_nats_churn_verb verb, unsigned run, uint32_t i,
                                   unsigned id, uint32_t j)
{
        char name[BENCH_NATS_CHURN_NAME_BYTES];
        char body[BENCH_NATS_CHURN_NAME_BYTES + 16];
        int name_len = snprintf(name, sizeof(name), "nc%u.%u.%u", cn->pid, run, i);
        int body_len = 0;
        const char *subject = "$AQ.MAILBOX.CREATE";
        const char *sep = "";
        if (verb == BENCH_NATS_CHURN_CREATE)
                body_len = snprintf(body, sizeof(body), "{\"name\":\"%s\"}", name);
        else if (verb == BENCH_NATS_CHURN_SEND)
                body_len = snprintf(body, sizeof(body), "x");
        if (verb != BENCH_NATS_CHURN_CREATE) {
                subject = verb == BENCH_NATS_CHURN_DESTROY ? "$AQ.MAILBOX.DESTROY."
                                                           : "$AQ.MAILBOX.SEND.";
                sep = name;
        }
        if (name_len < 0 || body_len < 0)
                return 0;
        int len = snprintf(p, BENCH_NATS_CHURN_REQ_BYTES, "PUB %s%s %.*s%u_%u %d\r\n%.*s\r\n",
                           subject, sep, (int)cn->inbox_len, cn->inbox, id, j, body_len,
                           body_len, body);
        return len > 0 && len < (int)BENCH_NATS_CHURN_REQ_BYTES ? (size_t)len : 0;
}

/* The requests of a new phase: n of them, request j on entity j * step.
 * Returns the phase id, or 0 when a request did not fit (never with our
 * names; checked all the same). */
static unsigned bench_nats_churn_format(struct bench_nats_churn *cn,
                                        enum bench_nats_churn_verb verb, unsigned run,
                                        uint32_t n, uint32_t step)
{
        struct bench_nats_churn_reqs *q = &cn->reqs;
        unsigned id = ++cn->phases;
        size_t at = 0;
        DP_VERIFY(n <= q->cap);
        for (uint32_t j = 0; j < n; j++) {
                q->off[j] = at;
                size_t len = bench_nats_churn_req(cn, q->buf + at, verb, run, j * step, id, j);
                if (len == 0)
                        return 0;
                at += len;
        }
        q->off[n] = at;
        q->n = n;
        return id;
}

/* ---- answers ----------------------------------------------------------- */

/* "<id>_<j>" after the inbox stem: the digits into *id and *j. */
static bool bench_nats_churn_reply(const struct bench_nats_churn *cn, const char *s,
                                   size_t len, unsigned *id, uint32_t *j)
{
        uint64_t v[2] = { 0, 0 };
        unsigned k = 0, digits = 0;
        if (len <= cn->inbox_len || memcmp(s, cn->inbox, cn->inbox_len) != 0)
                return false;
        for (size_t i = cn->inbox_len; i < len; i++) {
                if (s[i] == '_' && k == 0 && digits != 0) {
                        k = 1;
                        digits = 0;
                } else if (s[i] >= '0' && s[i] <= '9' && digits < 10) {
                        v[k] = v[k] * 10 + (uint64_t)(s[i] - '0');
                        digits++;
                } else {
                        return false;
                }
        }
        if (k != 1 || digits == 0 || v[0] > UINT32_MAX || v[1] > UINT32_MAX)
                return false;
        *id = (unsigned)v[0];
        *j = (uint32_t)v[1];
        return true;
}

/* Is this answer the one wanted: {"ok":true...}, or {"ok":false...} with
 * NOT_FOUND? atomqd writes its answers compact, "ok" first. */
static bool bench_nats_churn_right(const struct bench_nats_churn_phase *ph, const char *p,
                                   size_t len)
{
        static const char ok[] = "{\"ok\":true";
        static const char not_ok[] = "{\"ok\":false";
        static const char not_found[] = "\"error\":\"NOT_FOUND\"";
        if (ph->want_ok)
                return len >= sizeof(ok) - 1 && memcmp(p, ok, sizeof(ok) - 1) == 0;
        return len >= sizeof(not_ok) - 1 && memcmp(p, not_ok, sizeof(not_ok) - 1) == 0 &&
               memmem(p, len, not_found, sizeof(not_found) - 1) != NULL;
}

/* The connection's on_msg: an answer to a request of the phase. */
static void bench_nats_churn_answer(void *arg, struct bench_nats_conn *c,
                                    const struct bench_nats_msg *m)
{
        struct bench_nats_churn_phase *ph = arg;
        unsigned id = 0;
        uint32_t j = 0;
        (void)c;
        if (m->hmsg || m->payload == NULL ||
            !bench_nats_churn_reply(ph->cn, m->subject, m->subject_len, &id, &j) ||
            id != ph->id || j >= ph->n || ph->status[j] != BENCH_NATS_CHURN_PENDING ||
            (ph->only != NULL && ph->only[j] != BENCH_NATS_CHURN_OK)) {
                /* Not ours, a 503 (no responder) or a second answer: an
                 * error, but the answers awaited may still all come. */
                ph->errors++;
                return;
        }
        ph->answered++;
        const char *p = m->payload;
        size_t len = (size_t)m->payload_bytes;
        if (bench_nats_churn_right(ph, p, len)) {
                ph->status[j] = BENCH_NATS_CHURN_OK;
                ph->right++;
                return;
        }
        ph->status[j] = BENCH_NATS_CHURN_FAILED;
        ph->errors++;
        ph->stop = !ph->go_on;
        if (ph->first_err[0] == '\0') {
                size_t k = 0;
                for (; k < len && k < sizeof(ph->first_err) - 1; k++)
                        ph->first_err[k] = p[k] >= 0x20 && p[k] < 0x7f ? p[k] : '?';
                ph->first_err[k] = '\0';
        }
}

/* ---- phases ------------------------------------------------------------ */

/* Sends requests from *next on while fewer than the window are unanswered
 * (put() gathers them into sends of up to 64 KiB). 0 or an error of put
 * and flush. */
static int bench_nats_churn_send(struct bench_nats_churn *cn, struct bench_nats_churn_phase *ph,
                                 uint32_t *next)
{
        const struct bench_nats_churn_reqs *q = &cn->reqs;
        while (!ph->stop && *next < ph->n && ph->sent - ph->answered < BENCH_NATS_CHURN_WINDOW) {
                uint32_t j = (*next)++;
                if (ph->only != NULL && ph->only[j] != BENCH_NATS_CHURN_OK)
                        continue;
                int rc = bench_nats_put(&cn->conn, q->buf + q->off[j], q->off[j + 1] - q->off[j]);
                if (rc != 0)
                        return rc;
                ph->sent++;
        }
        return bench_nats_flush(&cn->conn);
}

/* Runs a phase on the requests formatted for it: all sent and answered,
 * or, once an answer said error, those in flight answered. 0 and the time
 * from the first send to the last answer in *elapsed_ns; -ETIMEDOUT when
 * nothing came for BENCH_NATS_CHURN_STALL_NS; -EPROTO when the server sent
 * -ERR or something that is not NATS (conn.err says what); an error of the
 * socket. */
static int bench_nats_churn_run_phase(struct bench_nats_churn *cn,
                                      struct bench_nats_churn_phase *ph, uint64_t *elapsed_ns)
{
        struct bench_nats_conn *c = &cn->conn;
        uint32_t next = 0;
        int rc;
        memset(ph->status, BENCH_NATS_CHURN_PENDING, ph->n);
        c->on_msg = bench_nats_churn_answer;
        c->on_msg_arg = ph;
        uint64_t t0_ns = shm_clock_ns();
        c->give_up_ns = t0_ns + BENCH_NATS_CHURN_STALL_NS;
        for (;;) {
                rc = bench_nats_churn_send(cn, ph, &next);
                if (rc != 0 || (ph->answered == ph->sent && (next == ph->n || ph->stop)))
                        break;
                rc = bench_nats_poll(c);
                if (rc < 0)
                        break;
                uint64_t now_ns = shm_clock_ns();
                if (rc > 0)
                        c->give_up_ns = now_ns + BENCH_NATS_CHURN_STALL_NS;
                else if (now_ns > c->give_up_ns)
                        rc = -ETIMEDOUT;
                else if (c->errs != 0)
                        rc = -EPROTO;
                if (rc < 0)
                        break;
        }
        *elapsed_ns = shm_clock_ns() - t0_ns;
        c->on_msg = NULL;
        return rc < 0 ? rc : 0;
}

/* Formats the phase's requests (ph->n of them, request j on entity j *
 * step of the run) and runs it. Errors as bench_nats_churn_run_phase;
 * -EOVERFLOW when a request does not fit BENCH_NATS_CHURN_REQ_BYTES. */
static int bench_nats_churn_phase(struct bench_nats_churn *cn, struct bench_nats_churn_phase *ph,
                                  enum bench_nats_churn_verb verb, unsigned run, uint32_t step,
                                  uint64_t *elapsed_ns)
{
        ph->cn = cn;
        ph->id = bench_nats_churn_format(cn, verb, run, ph->n, step);
        if (ph->id == 0)
                return -EOVERFLOW;
        return bench_nats_churn_run_phase(cn, ph, elapsed_ns);
}

/* A phase's errors: wrong and stray answers, and requests sent but never
 * answered. Requests not sent after a wrong answer stopped it are not. */
static uint64_t bench_nats_churn_errors(const struct bench_nats_churn_phase *ph)
{
        return ph->errors + (ph->sent - ph->answered);
}

/* Why a phase fell short, on stderr. */
static void bench_nats_churn_fail(const struct bench_nats_churn *cn, const char *what,
                                  const struct bench_nats_churn_phase *ph, int rc)
{
        fprintf(stderr, "atomq-bench: churn nats: %s: %u of %u answered right", what,
                ph->right, ph->sent);
        if (ph->first_err[0] != '\0')
                fprintf(stderr, "; first wrong answer: %s", ph->first_err);
        if (rc != 0)
                fprintf(stderr, "; %s%s%s", strerror(-rc), cn->conn.err[0] ? ": " : "",
                        cn->conn.err);
        fputc('\n', stderr);
}

/* A sample of the run's names sent a one-byte message: taken while live,
 * NOT_FOUND once destroyed. Adds the wrong answers to cn->errors; 0 or an
 * error of the phase. */
static int bench_nats_churn_check(struct bench_nats_churn *cn, unsigned run, bool live)
{
        uint8_t status[BENCH_NATS_CHURN_SAMPLE];
        uint32_t step = (cn->n + BENCH_NATS_CHURN_SAMPLE - 1) / BENCH_NATS_CHURN_SAMPLE;
        struct bench_nats_churn_phase ph = {
                .n = (cn->n + step - 1) / step, .want_ok = live, .status = status
        };
        uint64_t ns;
        int rc = bench_nats_churn_phase(cn, &ph, BENCH_NATS_CHURN_SEND, run, step, &ns);
        cn->errors += bench_nats_churn_errors(&ph);
        if (rc != 0 || ph.errors != 0 || ph.answered != ph.n)
                bench_nats_churn_fail(cn, live ? "send to live mailboxes"
                                               : "send to destroyed mailboxes", &ph, rc);
        return rc;
}

/* Destroys, untimed, the run's names whose left[] is OK: what a failed
 * run leaves behind. A name whose destroy is refused (BUSY: the owner
 * worker's ring was full) is tried again in the next pass, for up to
 * BENCH_NATS_CHURN_CLEANUP_PASSES passes while they make progress. Best
 * effort: what is left is said, not counted; left[] ends up marking it. */
static void bench_nats_churn_cleanup(struct bench_nats_churn *cn, unsigned run, uint8_t *left)
{
        struct bench_nats_churn_phase ph;
        int rc = 0;
        for (unsigned pass = 0; pass < BENCH_NATS_CHURN_CLEANUP_PASSES; pass++) {
                ph = (struct bench_nats_churn_phase){
                        .n = cn->n, .only = left, .want_ok = true, .go_on = true,
                        .status = cn->destroyed
                };
                uint64_t ns;
                rc = bench_nats_churn_phase(cn, &ph, BENCH_NATS_CHURN_DESTROY, run, 1, &ns);
                for (uint32_t i = 0; i < cn->n; i++)
                        if (cn->destroyed[i] == BENCH_NATS_CHURN_OK)
                                left[i] = BENCH_NATS_CHURN_PENDING;
                if (ph.right == ph.sent)
                        return;
                if (rc != 0 || ph.right == 0)
                        break;
        }
        bench_nats_churn_fail(cn, "cleanup", &ph, rc);
}

/* ---- runs -------------------------------------------------------------- */

/* Create all (timed), check a sample, destroy all (timed), check a sample.
 * 0; -EIO when answers were wrong or missing; an error of a phase. */
static int bench_nats_churn_cycle(struct bench_nats_churn *cn, unsigned run)
{
        uint64_t create_ns = 0, destroy_ns = 0;
        struct bench_nats_churn_phase ph = { .n = cn->n, .want_ok = true, .status = cn->created };
        int rc = bench_nats_churn_phase(cn, &ph, BENCH_NATS_CHURN_CREATE, run, 1, &create_ns);
        cn->errors += bench_nats_churn_errors(&ph);
        if (rc != 0 || ph.right != cn->n) {
                bench_nats_churn_fail(cn, "create", &ph, rc);
                bench_nats_churn_cleanup(cn, run, cn->created);
                return rc != 0 ? rc : -EIO;
        }
        rc = bench_nats_churn_check(cn, run, true);
        if (rc != 0) {
                bench_nats_churn_cleanup(cn, run, cn->created);
                return rc;
        }
        ph = (struct bench_nats_churn_phase){ .n = cn->n, .want_ok = true,
                                              .status = cn->destroyed };
        rc = bench_nats_churn_phase(cn, &ph, BENCH_NATS_CHURN_DESTROY, run, 1, &destroy_ns);
        cn->errors += bench_nats_churn_errors(&ph);
        if (rc != 0 || ph.right != cn->n) {
                bench_nats_churn_fail(cn, "destroy", &ph, rc);
                for (uint32_t i = 0; i < cn->n; i++)
                        cn->created[i] = cn->destroyed[i] == BENCH_NATS_CHURN_OK
                                                 ? BENCH_NATS_CHURN_PENDING
                                                 : BENCH_NATS_CHURN_OK;
                bench_nats_churn_cleanup(cn, run, cn->created);
                return rc != 0 ? rc : -EIO;
        }
        rc = bench_nats_churn_check(cn, run, false);
        cn->create_s[run] = (double)create_ns / 1e9;
        cn->destroy_s[run] = (double)destroy_ns / 1e9;
        if (!cn->o->quiet)
                fprintf(stderr, "churn nats %u run %u: create %.3f s (%.0f/s), destroy %.3f s "
                                "(%.0f/s)\n", cn->n, run + 1, cn->create_s[run],
                        cn->n / cn->create_s[run], cn->destroy_s[run],
                        cn->n / cn->destroy_s[run]);
        return rc;
}

static void *bench_nats_churn_thread(void *arg)
{
        struct bench_nats_churn *cn = arg;
        /* cpu_share as scenario nats measures it (run over ready time): the
         * client blocks on its socket, so CPU over wall time says little. */
        struct bench_nats_share share;
        bench_nats_schedstat(&share);
        for (unsigned r = 0; r < cn->o->runs && cn->rc == 0; r++)
                cn->rc = bench_nats_churn_cycle(cn, r);
        cn->cpu_share = bench_nats_share_end(&share);
        return NULL;
}

/* What INFO says the server is: "atomq" for atomqd. */
static const char *bench_nats_churn_system(const struct bench_nats_info *in)
{
        if (strcmp(in->server_name, "atomq") == 0 || strncmp(in->go, "atomq", 5) == 0)
                return "atomq";
        return in->server_name[0] != '\0' ? in->server_name : "unknown";
}

static int bench_nats_churn_result(const struct bench_nats_churn *cn, struct bench_report *rep)
{
        double cs[BENCH_RUNS_MAX], ds[BENCH_RUNS_MAX];
        struct bench_result *res = bench_report_add(rep, bench_nats_churn_system(&cn->conn.info),
                                                    "churn", "nats");
        if (res == NULL)
                return -ENOSPC;
        memcpy(cs, cn->create_s, sizeof(cs));
        memcpy(ds, cn->destroy_s, sizeof(ds));
        double create_s = bench_median_f64(cs, cn->o->runs);
        double destroy_s = bench_median_f64(ds, cn->o->runs);
        res->no_msgs = true;
        res->fixed_work = true;
        res->errors = cn->errors;
        res->cpu_share = cn->cpu_share;
        bench_result_str(res, "path", "nats");
        bench_result_u64(res, "entities", cn->n);
        bench_result_rate(res, "creates_per_s", cn->n / create_s);
        bench_result_rate(res, "destroys_per_s", cn->n / destroy_s);
        bench_result_f64(res, "create_s", create_s);
        bench_result_f64(res, "destroy_s", destroy_s);
        bench_result_u64(res, "window", BENCH_NATS_CHURN_WINDOW);
        return 0;
}

/* One N on a thread of its own (pinned to the first of --cpus, if given). */
static int bench_nats_churn_case(struct bench_nats_churn *cn, struct bench_progress *pg, int cpu,
                                 struct bench_report *rep)
{
        int rc = bench_nats_churn_alloc(cn);
        if (rc != 0) {
                fprintf(stderr, "atomq-bench: churn nats: %u requests: %s\n", cn->n,
                        strerror(-rc));
                return rc;
        }
        cn->errors = 0;
        bench_progress_start(pg, 2.0 * cn->n * cn->o->runs * BENCH_NATS_CHURN_OP_GUESS_S);
        bench_progress_label(pg, "churn nats: %u entities", cn->n);
        pthread_t t;
        rc = bench_thread_start(&t, cpu, bench_nats_churn_thread, cn);
        if (rc == 0)
                rc = bench_progress_join(pg, t);
        bench_progress_end(pg);
        if (rc == 0)
                rc = cn->rc;
        if (rc == 0)
                rc = bench_nats_churn_result(cn, rep);
        else
                fprintf(stderr, "atomq-bench: churn nats: %u entities: %s\n", cn->n,
                        strerror(-rc));
        bench_nats_churn_free(cn);
        return rc;
}

/* The inbox stem "_INBOX.<16 hex digits>.", random so that two benches on
 * one server never share it. */
static void bench_nats_churn_inbox(struct bench_nats_churn *cn)
{
        uint64_t token = 0;
        if (getrandom(&token, sizeof(token), GRND_NONBLOCK) != (ssize_t)sizeof(token))
                token = shm_clock_ns() ^ ((uint64_t)getpid() << 32);
        int len = snprintf(cn->inbox, sizeof(cn->inbox), "_INBOX.%016llx.",
                           (unsigned long long)token);
        cn->inbox_len = (size_t)len;
}

/* --url (one server), the connection and the inbox subscription. -EINVAL
 * after saying why; errors of bench_nats_conn_open and bench_nats_sync. */
static int bench_nats_churn_connect(struct bench_nats_churn *cn)
{
        const struct bench_opts *o = cn->o;
        const char *url = o->url != NULL ? o->url : "nats://127.0.0.1:" BENCH_NATS_PORT_DEFAULT;
        if (o->control_path != NULL) {
                fprintf(stderr, "atomq-bench: churn --path nats takes --url, not --control\n");
                return -EINVAL;
        }
        if (strchr(url, ',') != NULL || bench_nats_url_parse(&cn->server, url) != 0) {
                fprintf(stderr, "atomq-bench: churn nats: --url: expected one nats://HOST:PORT, "
                                "got '%s'\n", url);
                return -EINVAL;
        }
        int rc = bench_nats_conn_open(&cn->conn, &cn->server);
        if (rc != 0) {
                fprintf(stderr, "atomq-bench: churn nats: %s: %s%s%s\n", url, strerror(-rc),
                        cn->conn.err[0] ? ": " : "", cn->conn.err);
                return rc;
        }
        cn->conn.keep_payload = true;
        bench_nats_churn_inbox(cn);
        char sub[sizeof(cn->inbox) + 1];
        snprintf(sub, sizeof(sub), "%s*", cn->inbox);
        cn->conn.give_up_ns = shm_clock_ns() + BENCH_NATS_CHURN_STALL_NS;
        rc = bench_nats_sub(&cn->conn, sub, NULL, 1);
        if (rc == 0)
                rc = bench_nats_sync(&cn->conn);
        if (rc == 0 && cn->conn.errs != 0)
                rc = -EPROTO;
        if (rc != 0) {
                fprintf(stderr, "atomq-bench: churn nats: SUB %s: %s%s%s\n", sub, strerror(-rc),
                        cn->conn.err[0] ? ": " : "", cn->conn.err);
                bench_nats_conn_close(&cn->conn);
        }
        return rc;
}

int bench_churn_nats(const struct bench_opts *o, struct bench_progress *pg,
                     struct bench_report *rep)
{
        int cpu = -1;
        int rc = o->cpus_set ? bench_opts_cpu(o, "churn", &cpu) : 0;
        if (rc != 0)
                return rc;
        /* ~400 bytes of figures and the connection: on the heap. */
        struct bench_nats_churn *cn = calloc(1, sizeof(*cn));
        if (cn == NULL)
                return -ENOMEM;
        cn->o = o;
        cn->pid = (unsigned)getpid() % 100000u;
        rc = bench_nats_churn_connect(cn);
        unsigned cases = o->entities_n ? o->entities_n : 1;
        for (unsigned i = 0; i < cases && rc == 0; i++) {
                cn->n = o->entities_n ? o->entities[i] : BENCH_NATS_CHURN_DEFAULT;
                cn->rc = 0;
                rc = bench_nats_churn_case(cn, pg, cpu, rep);
                /* -EINVAL means a usage error to bench_main: a run's is not. */
                rc = rc == -EINVAL ? -EIO : rc;
        }
        if (cn->conn.rbuf != NULL)
                bench_nats_conn_close(&cn->conn);
        free(cn);
        return rc;
}
