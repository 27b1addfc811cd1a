/* bench_durable.c - scenario "durable": acknowledged durable publishes
 * through the NATS client protocol, atomq's mailboxes and logs against
 * nats-server's JetStream file streams, with the client of
 * bench_nats_client.c and the server list, alternation and INFO-naming of
 * scenario nats (bench_nats.c).
 *
 *      atomq-bench durable send --url nats://127.0.0.1:4222 --sync batch --json
 *      atomq-bench durable append --url nats://127.0.0.1:4222,nats://127.0.0.1:4223 \
 *              --sync always --sizes 16,1024 --runs 3
 *      atomq-bench durable send --url nats://127.0.0.1:4222 --storage mem
 *
 * Cases (the word after "durable"; none: both), each repeated --runs times
 * on a fresh connection and entity, reported as medians:
 *   send    atomq: PUB $AQ.MAILBOX.SEND.<name>, ack {"ok":true,"seq":N};
 *   append  atomq: PUB $AQ.LOG.APPEND.<name>, ack {"ok":true,"offset":N};
 *           nats-server (both cases): PUB to the stream's subject, ack the
 *           PubAck {"stream":"<name>", "seq":N}.
 * Every publish has a reply subject of its own, <inbox><seq>, under one
 * wildcard subscription; at most --window are unanswered, and those the
 * window lets out go in one write. A publish is stamped when the write that
 * carried it returned and its ack when the read that brought it was
 * parsed: p50/p99/p999 of that, over the acks read in the timed window,
 * and msgs_per_s, those acks over the window's length.
 *
 * The entity. A run creates its own, untimed: atomq `$AQ.MAILBOX.CREATE` or
 * `$AQ.LOG.CREATE` {"name":"durbench.<pid>.<n>","storage":...,"sync":...};
 * JetStream `$JS.API.STREAM.CREATE.durbench-<pid>-<n>` (file storage,
 * limits retention, discard old, no message limit) on subject
 * durbench.<pid>.<n>. It is destroyed (deleted) when the run ends. An error
 * answer to the create fails the case against that server and is printed:
 * atomq's NOT_SUPPORTED for a storage it lacks, a nats-server without
 * JetStream (no responders, 503).
 *
 * atomq's limits. A mailbox keeps every message until it is fetched and
 * acked, and nobody fetches here; it keeps them in its shard's message
 * buffers (storage disk too, as the disk tier is being built: the queue
 * stays in memory, the disk holds a journal of it), and a full mailbox
 * refuses sends with FULL. The shard's buffer pool holds some
 * 32k small messages and 4k of 1 KiB (dp_shard_config_default), less than a
 * second of sends, so send moves to a fresh mailbox every --rotate sends
 * (durbench.<pid>.<n>.<gen>): the next one's create goes out in the
 * pipeline ahead of the sends to it, and a drained one is destroyed
 * (two requests more per --rotate sends; at most BENCH_DURABLE_GENS live).
 * A log drops its oldest messages once full, so append's log is created
 * with max_msgs and max_bytes that keep it inside the pool.
 *
 * Errors: answers that are not acks (the first is printed with its text),
 * answers on unknown reply subjects or repeated, publishes never answered,
 * and entities left behind. Any makes atomq-bench exit 1.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
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
#include "bench/bench_scenario.h"
#include "shm/shm_base.h"
#include "shm/shm_clock.h"

#define BENCH_DURABLE_SIZE_DEFAULT 16u
#define BENCH_DURABLE_WINDOW_DEFAULT 256u
/* 1024 sends a mailbox: two mailboxes and a window of 1 KiB messages fit
 * the 4k buffers of the shard's 4 KiB class with room to spare. */
#define BENCH_DURABLE_ROTATE_DEFAULT 1024u
/* Mailboxes of a run alive at once: the one sent to and the one drained.
 * A rotation waits for the older one's destroy to be answered. */
#define BENCH_DURABLE_GENS 2u
/* Creates and destroys unanswered at once: one of each per generation. */
#define BENCH_DURABLE_CTLS (2u * BENCH_DURABLE_GENS)
/* The log of append keeps at most this much: 16k small messages or 2 MiB
 * (~1.9k of 1 KiB) both fit the shard's buffer classes, window included. */
#define BENCH_DURABLE_LOG_MAX_MSGS 16384u
#define BENCH_DURABLE_LOG_MAX_BYTES (2u << 20)
/* A create or destroy not answered by then fails the run. */
#define BENCH_DURABLE_CTL_NS 5000000000ull
#define BENCH_DURABLE_NAME_BYTES 64u
#define BENCH_DURABLE_SUBJECT_BYTES 128u
#define BENCH_DURABLE_BODY_BYTES 256u
#define BENCH_DURABLE_TEXT_BYTES 280u   /* an answer kept to be printed */

_Static_assert(BENCH_DURABLE_SUBJECT_BYTES + 2 * BENCH_DURABLE_NAME_BYTES + 64 <
                       BENCH_NATS_WBUF_BYTES, "a control request fits the write buffer");

enum bench_durable_kind {
        BENCH_DURABLE_SEND,
        BENCH_DURABLE_APPEND,
        BENCH_DURABLE_KINDS,
};

static const char *const bench_durable_kind_names[BENCH_DURABLE_KINDS] = {
        [BENCH_DURABLE_SEND] = "send",
        [BENCH_DURABLE_APPEND] = "append",
};

/* A generation's entity: FREE (none), CREATING (create unanswered; sends
 * may follow it), LIVE, DESTROYING (destroy unanswered). */
enum bench_durable_state {
        BENCH_DURABLE_FREE,
        BENCH_DURABLE_CREATING,
        BENCH_DURABLE_LIVE,
        BENCH_DURABLE_DESTROYING,
};

enum bench_durable_verb {
        BENCH_DURABLE_CREATE,
        BENCH_DURABLE_DESTROY,
};

struct bench_durable_gen {
        uint32_t gen;
        uint8_t state;
        uint64_t sent;
        uint64_t outstanding;   /* sent, not answered */
};

/* A create or destroy in flight, answered on <inbox>c<id>. */
struct bench_durable_ctl {
        unsigned id;
        uint8_t verb;
        uint32_t gen;
        bool pending;
};

/* A publish in flight: slots[seq % window]. */
struct bench_durable_slot {
        uint64_t seq;
        uint64_t written_ticks;
        uint32_t gen;
        bool pending;
};

struct bench_durable_case {
        enum bench_durable_kind kind;
        unsigned msg_bytes;
};

/* What the scenario keeps across its cases. */
struct bench_durable_env {
        struct bench_nats_env nats;     /* options, servers, clock, serial */
        bool kinds[BENCH_DURABLE_KINDS];
        unsigned sizes_n, sizes_bytes[BENCH_LIST_MAX];
        const char *sync, *storage;
        unsigned window, rotate;
        char versions[BENCH_NATS_URLS_MAX][BENCH_NAME_BYTES];
        struct bench_nats_tally tallies[BENCH_NATS_URLS_MAX];
};

/* One run against one server, on a thread of its own. */
struct bench_durable_run {
        struct bench_durable_env *env;
        struct bench_durable_case cs;
        struct bench_nats_server *s;
        unsigned si;                    /* s's index in env */
        unsigned serial;
        unsigned rotate;                /* 0: one entity for the run */
        bool jetstream;                 /* nats-server; else atomq */
        char inbox[BENCH_DURABLE_NAME_BYTES];   /* "_INBOX.durbench<pid>.<n>." */
        size_t inbox_len;
        char *payload;                  /* msg_bytes and CRLF */
        uint64_t open_ticks, close_ticks;
        struct bench_nats_conn c;
        char subject[BENCH_DURABLE_SUBJECT_BYTES];     /* the current generation's */
        uint32_t gen;
        struct bench_durable_gen gens[BENCH_DURABLE_GENS];
        struct bench_durable_ctl ctls[BENCH_DURABLE_CTLS];
        unsigned ctl_ids, ctl_pending;
        struct bench_durable_slot *slots;       /* window of them */
        unsigned window;
        uint64_t sent, written, answered, acked, window_acks;
        struct bench_hist *hist;
        uint64_t errors;
        char first_err[BENCH_DURABLE_TEXT_BYTES];       /* the first wrong answer */
        char ctl_err[2 * BENCH_DURABLE_TEXT_BYTES];     /* the first failed create/destroy */
        int rc;
        double share;
};

/* ---- names and requests -------------------------------------------------- */

/* Generation gen's entity (atomq) or stream (JetStream) name. */
static void bench_durable_name(const struct bench_durable_run *r, uint32_t gen, char *out,
                               size_t len)
{
        int pid = (int)getpid();
        if (r->jetstream)
                snprintf(out, len, "durbench-%d-%u", pid, r->serial);
        else if (r->rotate != 0)
                snprintf(out, len, "durbench.%d.%u.%u", pid, r->serial, gen);
        else
                snprintf(out, len, "durbench.%d.%u", pid, r->serial);
}

/* Where generation gen's publishes go. */
static void bench_durable_target(struct bench_durable_run *r, uint32_t gen)
{
        char name[BENCH_DURABLE_NAME_BYTES];
        bench_durable_name(r, gen, name, sizeof(name));
        if (r->jetstream)
                snprintf(r->subject, sizeof(r->subject), "durbench.%d.%u", (int)getpid(),
                         r->serial);
        else
                snprintf(r->subject, sizeof(r->subject), "$AQ.%s.%s",
                         r->cs.kind == BENCH_DURABLE_SEND ? "MAILBOX.SEND" : "LOG.APPEND", name);
}

/* A create's or destroy's subject and body (empty for a destroy). */
static void bench_durable_ctl_text(const struct bench_durable_run *r, uint8_t verb, uint32_t gen,
                                   char *subject, char *body)
{
        const struct bench_durable_env *env = r->env;
        const char *what = r->cs.kind == BENCH_DURABLE_SEND ? "MAILBOX" : "LOG";
        char name[BENCH_DURABLE_NAME_BYTES];
        bench_durable_name(r, gen, name, sizeof(name));
        body[0] = '\0';
        if (r->jetstream && verb == BENCH_DURABLE_CREATE) {
                snprintf(subject, BENCH_DURABLE_SUBJECT_BYTES, "$JS.API.STREAM.CREATE.%s", name);
                snprintf(body, BENCH_DURABLE_BODY_BYTES,
                         "{\"name\":\"%s\",\"subjects\":[\"durbench.%d.%u\"],\"storage\":\"file\","
                         "\"retention\":\"limits\",\"discard\":\"old\",\"max_msgs\":-1}", name,
                         (int)getpid(), r->serial);
        } else if (r->jetstream) {
                snprintf(subject, BENCH_DURABLE_SUBJECT_BYTES, "$JS.API.STREAM.DELETE.%s", name);
        } else if (verb == BENCH_DURABLE_CREATE) {
                snprintf(subject, BENCH_DURABLE_SUBJECT_BYTES, "$AQ.%s.CREATE", what);
                char limits[64] = "";
                if (r->cs.kind == BENCH_DURABLE_APPEND)
                        snprintf(limits, sizeof(limits), ",\"max_msgs\":%u,\"max_bytes\":%u",
                                 BENCH_DURABLE_LOG_MAX_MSGS, BENCH_DURABLE_LOG_MAX_BYTES);
                snprintf(body, BENCH_DURABLE_BODY_BYTES,
                         "{\"name\":\"%s\",\"storage\":\"%s\",\"sync\":\"%s\"%s}", name,
                         env->storage, env->sync, limits);
        } else {
                snprintf(subject, BENCH_DURABLE_SUBJECT_BYTES, "$AQ.%s.DESTROY.%s", what, name);
        }
}

/* Appends a create or destroy of generation gen (not sent). 0, or an error
 * of put. */
static int bench_durable_ctl_put(struct bench_durable_run *r, uint8_t verb, uint32_t gen)
{
        char subject[BENCH_DURABLE_SUBJECT_BYTES], body[BENCH_DURABLE_BODY_BYTES];
        char line[BENCH_DURABLE_SUBJECT_BYTES + BENCH_DURABLE_NAME_BYTES + 32];
        unsigned id = r->ctl_ids++;
        struct bench_durable_ctl *k = &r->ctls[id % BENCH_DURABLE_CTLS];
        /* At most one create and one destroy per generation are unanswered. */
        DP_VERIFY(!k->pending);
        bench_durable_ctl_text(r, verb, gen, subject, body);
        size_t body_len = strlen(body);
        int n = snprintf(line, sizeof(line), "PUB %s %sc%u %zu\r\n", subject, r->inbox, id,
                         body_len);
        int rc = bench_nats_put(&r->c, line, (size_t)n);
        if (rc == 0)
                rc = bench_nats_put(&r->c, body, body_len);
        if (rc == 0)
                rc = bench_nats_put(&r->c, "\r\n", 2);
        *k = (struct bench_durable_ctl){ .id = id, .verb = verb, .gen = gen, .pending = true };
        r->ctl_pending++;
        r->gens[gen % BENCH_DURABLE_GENS].state = verb == BENCH_DURABLE_CREATE
                                                  ? BENCH_DURABLE_CREATING
                                                  : BENCH_DURABLE_DESTROYING;
        return rc;
}

/* ---- answers --------------------------------------------------------------- */

/* Digits only, at most 19: the number. */
static bool bench_durable_number(const char *p, size_t len, uint64_t *out)
{
        uint64_t v = 0;
        if (len == 0 || len > 19)
                return false;
        for (size_t i = 0; i < len; i++) {
                if (p[i] < '0' || p[i] > '9')
                        return false;
                v = v * 10 + (uint64_t)(p[i] - '0');
        }
        *out = v;
        return true;
}

/* Does the JSON answer have key with a value starting with want? */
static bool bench_durable_has(const char *p, size_t len, const char *key, const char *want)
{
        size_t rest = 0;
        const char *v = bench_nats_json_find(p, len, key, &rest);
        if (v == NULL)
                return false;
        if (want == NULL)       /* any number */
                return rest > 0 && *v >= '0' && *v <= '9';
        return rest >= strlen(want) && memcmp(v, want, strlen(want)) == 0;
}

/* atomq answers {"ok":true,...}, compact, "ok" first (docs/protocol.md). */
static bool bench_durable_atomq_ok(const char *p, size_t len)
{
        static const char ok[] = "{\"ok\":true";
        return len >= sizeof(ok) - 1 && memcmp(p, ok, sizeof(ok) - 1) == 0;
}

static bool bench_durable_ack_ok(const struct bench_durable_run *r, const char *p, size_t len)
{
        if (bench_nats_json_find(p, len, "error", &(size_t){ 0 }) != NULL)
                return false;
        if (r->jetstream)
                return bench_durable_has(p, len, "stream", "\"") &&
                       bench_durable_has(p, len, "seq", NULL);
        return bench_durable_atomq_ok(p, len) &&
               bench_durable_has(p, len, r->cs.kind == BENCH_DURABLE_SEND ? "seq" : "offset",
                                 NULL);
}

static bool bench_durable_ctl_ok(const struct bench_durable_run *r, uint8_t verb, const char *p,
                                 size_t len)
{
        if (!r->jetstream)
                return bench_durable_atomq_ok(p, len);
        if (bench_nats_json_find(p, len, "error", &(size_t){ 0 }) != NULL)
                return false;
        return verb == BENCH_DURABLE_CREATE ? bench_durable_has(p, len, "config", "{")
                                            : bench_durable_has(p, len, "success", "true");
}

/* The printable text of an answer (a status message says what it means). */
static void bench_durable_text(const struct bench_nats_msg *m, char *out, size_t out_len)
{
        if (m->hmsg) {
                snprintf(out, out_len, "no responders (status 503)");
                return;
        }
        size_t n = 0, len = (size_t)m->payload_bytes;
        for (; n < len && n < out_len - 1; n++)
                out[n] = m->payload[n] >= 0x20 && m->payload[n] < 0x7f ? m->payload[n] : '?';
        out[n] = '\0';
}

static void bench_durable_wrong(struct bench_durable_run *r, const struct bench_nats_msg *m,
                                const char *what)
{
        r->errors++;
        if (r->first_err[0] != '\0')
                return;
        if (what != NULL) {
                snprintf(r->first_err, sizeof(r->first_err), "%s: %.*s", what,
                         (int)(m->subject_len < 64 ? m->subject_len : 64), m->subject);
                return;
        }
        bench_durable_text(m, r->first_err, sizeof(r->first_err));
}

/* An answer to publish seq, read at now_ticks. */
static void bench_durable_on_ack(struct bench_durable_run *r, const struct bench_nats_msg *m,
                                 uint64_t seq, uint64_t now_ticks)
{
        struct bench_durable_slot *slot = &r->slots[seq % r->window];
        if (seq >= r->sent || !slot->pending || slot->seq != seq) {
                bench_durable_wrong(r, m, "an answer to no publish in flight");
                return;
        }
        slot->pending = false;
        r->answered++;
        r->gens[slot->gen % BENCH_DURABLE_GENS].outstanding--;
        if (m->hmsg || !bench_durable_ack_ok(r, m->payload, (size_t)m->payload_bytes)) {
                bench_durable_wrong(r, m, NULL);
                return;
        }
        r->acked++;
        if (now_ticks < r->open_ticks || now_ticks >= r->close_ticks)
                return;
        r->window_acks++;
        bench_hist_record(r->hist, bench_clock_to_ns(&r->env->nats.clock,
                                                     now_ticks - slot->written_ticks));
}

/* An answer to create or destroy id. */
static void bench_durable_on_ctl(struct bench_durable_run *r, const struct bench_nats_msg *m,
                                 uint64_t id)
{
        struct bench_durable_ctl *k = &r->ctls[id % BENCH_DURABLE_CTLS];
        if (!k->pending || k->id != id) {
                bench_durable_wrong(r, m, "an answer to no request in flight");
                return;
        }
        k->pending = false;
        r->ctl_pending--;
        bool ok = !m->hmsg && bench_durable_ctl_ok(r, k->verb, m->payload,
                                                   (size_t)m->payload_bytes);
        struct bench_durable_gen *g = &r->gens[k->gen % BENCH_DURABLE_GENS];
        g->state = ok && k->verb == BENCH_DURABLE_CREATE ? BENCH_DURABLE_LIVE
                                                         : BENCH_DURABLE_FREE;
        if (ok)
                return;
        r->errors++;
        if (r->ctl_err[0] == '\0') {
                char subject[BENCH_DURABLE_SUBJECT_BYTES], body[BENCH_DURABLE_BODY_BYTES];
                char text[BENCH_DURABLE_TEXT_BYTES];
                bench_durable_ctl_text(r, k->verb, k->gen, subject, body);
                bench_durable_text(m, text, sizeof(text));
                snprintf(r->ctl_err, sizeof(r->ctl_err), "%.100s %.120s answered %.280s", subject,
                         body, text);
        }
}

/* The connection's on_msg: <inbox><seq> is a publish's answer,
 * <inbox>c<id> a create's or destroy's; anything else is an error. */
static void bench_durable_on_msg(void *arg, struct bench_nats_conn *c,
                                 const struct bench_nats_msg *m)
{
        struct bench_durable_run *r = arg;
        uint64_t now_ticks = bench_clock_ticks(&r->env->nats.clock);
        uint64_t v = 0;
        (void)c;
        if (m->subject_len <= r->inbox_len || memcmp(m->subject, r->inbox, r->inbox_len) != 0) {
                bench_durable_wrong(r, m, "a message on an unexpected subject");
                return;
        }
        const char *tail = m->subject + r->inbox_len;
        size_t tail_len = m->subject_len - r->inbox_len;
        bool ctl = tail[0] == 'c';
        if (!bench_durable_number(tail + ctl, tail_len - ctl, &v))
                bench_durable_wrong(r, m, "an answer on an unknown reply subject");
        else if (ctl)
                bench_durable_on_ctl(r, m, v);
        else
                bench_durable_on_ack(r, m, v, now_ticks);
}

/* ---- publishing -------------------------------------------------------------- */

/* Sends what is buffered; the publishes in it are written now. */
static int bench_durable_flush(struct bench_durable_run *r)
{
        int rc = bench_nats_flush(&r->c);
        uint64_t now_ticks = bench_clock_ticks(&r->env->nats.clock);
        for (; r->written < r->sent; r->written++)
                r->slots[r->written % r->window].written_ticks = now_ticks;
        return rc;
}

/* One publish appended: the buffer is sent first when it would not fit,
 * so every publish's stamp is the write that carried it. */
static int bench_durable_pub(struct bench_durable_run *r)
{
        struct bench_nats_conn *c = &r->c;
        /* "PUB <subject> <inbox><seq> <size>\r\n", by hand: snprintf was a
         * third of this client's CPU time, which the server shares. */
        char line[BENCH_DURABLE_SUBJECT_BYTES + BENCH_DURABLE_NAME_BYTES + 48];
        size_t sl = strlen(r->subject);
        memcpy(line, "PUB ", 4);
        memcpy(line + 4, r->subject, sl);
        size_t n = 4 + sl;
        line[n++] = ' ';
        memcpy(line + n, r->inbox, r->inbox_len);
        n += r->inbox_len;
        n += shm_u64_dec(line + n, r->sent);
        line[n++] = ' ';
        n += shm_u64_dec(line + n, r->cs.msg_bytes);
        line[n++] = '\r';
        line[n++] = '\n';
        int rc = 0;
        if (c->wlen != 0 && c->wlen + n + r->cs.msg_bytes + 2 > BENCH_NATS_WBUF_BYTES)
                rc = bench_durable_flush(r);
        struct bench_durable_gen *g = &r->gens[r->gen % BENCH_DURABLE_GENS];
        r->slots[r->sent % r->window] = (struct bench_durable_slot){
                .seq = r->sent, .gen = r->gen, .pending = true
        };
        if (rc == 0)
                rc = bench_nats_put(c, line, n);
        if (rc == 0)
                rc = bench_nats_put(c, r->payload, r->cs.msg_bytes + 2u);
        r->sent++;
        g->sent++;
        g->outstanding++;
        /* Larger than the buffer: put() sent it straight. */
        if (rc == 0 && c->wlen == 0)
                rc = bench_durable_flush(r);
        return rc;
}

/* Destroys the generations that are neither sent to nor waited for; all:
 * every one there (the end of a run: a destroy queues behind the
 * publishes still in flight). */
static int bench_durable_retire(struct bench_durable_run *r, bool all)
{
        int rc = 0;
        for (unsigned i = 0; i < BENCH_DURABLE_GENS && rc == 0; i++) {
                struct bench_durable_gen *g = &r->gens[i];
                if (g->state == BENCH_DURABLE_LIVE &&
                    (all || (g->outstanding == 0 && g->gen != r->gen)))
                        rc = bench_durable_ctl_put(r, BENCH_DURABLE_DESTROY, g->gen);
        }
        return rc;
}

/* send against atomq: a fresh mailbox once this one had its share, as
 * soon as the one before it is gone; its create goes out ahead of the
 * sends to it, in the same pipeline (one connection, one owner worker, in
 * order). */
static int bench_durable_rotate(struct bench_durable_run *r)
{
        struct bench_durable_gen *cur = &r->gens[r->gen % BENCH_DURABLE_GENS];
        struct bench_durable_gen *next = &r->gens[(r->gen + 1) % BENCH_DURABLE_GENS];
        if (r->rotate == 0 || cur->sent < r->rotate || next->state != BENCH_DURABLE_FREE)
                return 0;
        *next = (struct bench_durable_gen){ .gen = r->gen + 1 };
        int rc = bench_durable_ctl_put(r, BENCH_DURABLE_CREATE, next->gen);
        r->gen++;
        bench_durable_target(r, r->gen);
        return rc;
}

/* Publishes while the window has room, then sends them in one write. */
static int bench_durable_fill(struct bench_durable_run *r)
{
        int rc = bench_durable_retire(r, false);
        while (rc == 0 && r->sent - r->answered < r->window &&
               !r->slots[r->sent % r->window].pending) {
                rc = bench_durable_rotate(r);
                if (rc == 0)
                        rc = bench_durable_pub(r);
        }
        return rc != 0 ? rc : bench_durable_flush(r);
}

/* One read. 0 or <0: -ETIMEDOUT past give_up_ns, -EPROTO after an -ERR,
 * an error of bench_nats_poll. */
static int bench_durable_read(struct bench_durable_run *r, uint64_t stall_ns)
{
        struct bench_nats_conn *c = &r->c;
        int rc = bench_nats_poll(c);
        if (rc < 0)
                return rc;
        uint64_t now_ns = shm_clock_ns();
        if (rc > 0 && stall_ns != 0)
                c->give_up_ns = now_ns + stall_ns;
        else if (rc == 0 && now_ns > c->give_up_ns)
                return -ETIMEDOUT;
        return c->errs != 0 ? -EPROTO : 0;
}

/* Publishes until the window closes, then reads every answer. The run
 * gives up when nothing came for BENCH_NATS_STALL_NS. */
static int bench_durable_pump(struct bench_durable_run *r)
{
        const struct bench_clock *clock = &r->env->nats.clock;
        r->c.give_up_ns = shm_clock_ns() + BENCH_NATS_STALL_NS;
        for (;;) {
                bool open = bench_clock_ticks(clock) < r->close_ticks;
                int rc = open ? bench_durable_fill(r) : 0;
                if (rc != 0 || (!open && r->answered == r->sent))
                        return rc;
                rc = bench_durable_read(r, BENCH_NATS_STALL_NS);
                if (rc != 0)
                        return rc;
        }
}

/* Sends what is buffered and reads until every create and destroy is
 * answered, BENCH_DURABLE_CTL_NS at most. */
static int bench_durable_ctl_wait(struct bench_durable_run *r)
{
        int rc = bench_durable_flush(r);
        r->c.give_up_ns = shm_clock_ns() + BENCH_DURABLE_CTL_NS;
        while (rc == 0 && r->ctl_pending != 0)
                rc = bench_durable_read(r, 0);
        return rc;
}

/* ---- a run ----------------------------------------------------------------- */

static void bench_durable_say(const struct bench_durable_run *r, const char *what, int rc,
                              const char *text)
{
        bench_progress_end(r->env->nats.pg);
        fprintf(stderr, "atomq-bench: durable %s %u B against %s (%s): %s%s%s%s%s\n",
                bench_durable_kind_names[r->cs.kind], r->cs.msg_bytes, r->s->system, r->s->url,
                what, rc != 0 ? ": " : "", rc != 0 ? strerror(-rc) : "",
                text != NULL && text[0] ? ": " : "", text != NULL ? text : "");
}

/* Which server it is; -EPROTONOSUPPORT when neither atomq nor nats-server,
 * -EMSGSIZE when the messages are above its max_payload (said). */
static int bench_durable_greeted(struct bench_durable_run *r)
{
        struct bench_durable_env *env = r->env;
        const struct bench_nats_info *in = &r->c.info;
        bench_nats_server_learn(&env->nats, r->s, in);
        snprintf(env->versions[r->si], sizeof(env->versions[r->si]), "%.*s",
                 (int)sizeof(env->versions[r->si]) - 1, in->version);
        r->jetstream = strncmp(r->s->system, "nats-server", 11) == 0;
        if (r->jetstream)
                r->rotate = 0;  /* a stream is a log: nothing fills */
        if (!r->jetstream && strncmp(r->s->system, "atomq", 5) != 0) {
                char text[3 * BENCH_NATS_INFO_STR_BYTES];
                snprintf(text, sizeof(text), "INFO server_name '%s', go '%s'", in->server_name,
                         in->go);
                bench_durable_say(r, "neither atomq nor nats-server", 0, text);
                return -EPROTONOSUPPORT;
        }
        if (r->s->max_payload != 0 && r->cs.msg_bytes > r->s->max_payload) {
                bench_durable_say(r, "messages above the server's max_payload", -EMSGSIZE, NULL);
                return -EMSGSIZE;
        }
        return 0;
}

/* Connects, subscribes to the inbox and creates the first entity. 0, or
 * the failure, said. */
static int bench_durable_setup(struct bench_durable_run *r)
{
        struct bench_nats_conn *c = &r->c;
        char sub[BENCH_DURABLE_NAME_BYTES + 1];
        int rc = bench_nats_conn_open(c, r->s);
        if (rc != 0) {
                bench_durable_say(r, "connect", rc, c->err);
                return rc;
        }
        rc = bench_durable_greeted(r);
        if (rc != 0)
                return rc;
        snprintf(sub, sizeof(sub), "%s*", r->inbox);
        c->keep_payload = true;
        c->give_up_ns = shm_clock_ns() + BENCH_DURABLE_CTL_NS;
        rc = bench_nats_sub(c, sub, NULL, 1);
        if (rc == 0)
                rc = bench_nats_sync(c);
        if (rc == 0 && c->errs != 0)
                rc = -EPROTO;
        if (rc != 0) {
                bench_durable_say(r, "SUB", rc, c->err);
                return rc;
        }
        /* Set after the sync, which counts messages without looking. */
        c->on_msg = bench_durable_on_msg;
        c->on_msg_arg = r;
        r->gens[0] = (struct bench_durable_gen){ .gen = 0 };
        rc = bench_durable_ctl_put(r, BENCH_DURABLE_CREATE, 0);
        if (rc == 0)
                rc = bench_durable_ctl_wait(r);
        if (rc == 0 && r->gens[0].state != BENCH_DURABLE_LIVE)
                rc = r->jetstream && strstr(r->ctl_err, "no responders") != NULL
                     ? -EHOSTUNREACH : -EIO;
        if (rc == -EHOSTUNREACH)
                bench_durable_say(r, "create", 0, "JetStream is not enabled (no responders on "
                                  "$JS.API.STREAM.CREATE): start nats-server with -js -sd DIR");
        else if (rc != 0)
                bench_durable_say(r, "create", rc == -EIO ? 0 : rc,
                                  r->ctl_err[0] ? r->ctl_err : c->err);
        bench_durable_target(r, 0);
        return rc;
}

/* Destroys what is left and waits for the answers: 0, or -EIO when
 * something stays behind (said). */
static int bench_durable_teardown(struct bench_durable_run *r)
{
        int rc = bench_durable_ctl_wait(r);     /* creates still unanswered */
        if (rc == 0)
                rc = bench_durable_retire(r, true);
        if (rc == 0)
                rc = bench_durable_ctl_wait(r);
        if (rc != 0 || r->ctl_err[0] != '\0') {
                bench_durable_say(r, "a create or destroy failed: entities may be left behind", rc,
                                  r->ctl_err[0] ? r->ctl_err : r->c.err);
                r->errors++;
        }
        return rc != 0 ? -EIO : 0;
}

static void *bench_durable_main(void *arg)
{
        struct bench_durable_run *r = arg;
        struct bench_nats_share share;
        bench_nats_schedstat(&share);
        int rc = bench_durable_setup(r);
        if (rc == 0) {
                uint64_t give_up_ns;
                bench_nats_times(&r->env->nats, &r->open_ticks, &r->close_ticks, &give_up_ns);
                rc = bench_durable_pump(r);
                if (rc != 0)
                        bench_durable_say(r, "publish", rc, r->c.err);
                int down = r->c.fd >= 0 ? bench_durable_teardown(r) : 0;
                rc = rc != 0 ? rc : down;
        }
        r->rc = rc;
        r->share = bench_nats_share_end(&share);
        return NULL;
}

static void bench_durable_free(struct bench_durable_run *r)
{
        if (r->c.rbuf != NULL || r->c.fd >= 0)
                bench_nats_conn_close(&r->c);
        free(r->payload);
        free(r->slots);
        free(r->hist);
        free(r);
}

static int bench_durable_new(struct bench_durable_env *env, const struct bench_durable_case *cs,
                             unsigned si, struct bench_durable_run **out)
{
        struct bench_durable_run *r = calloc(1, sizeof(*r));
        if (r == NULL)
                return -ENOMEM;
        *out = r;
        r->env = env;
        r->cs = *cs;
        r->si = si;
        r->s = &env->nats.servers[si];
        r->serial = env->nats.serial++;
        r->window = env->window;
        r->c.fd = -1;
        r->payload = malloc(cs->msg_bytes + 2u);
        r->slots = calloc(env->window, sizeof(*r->slots));
        r->hist = malloc(sizeof(*r->hist));
        if (r->payload == NULL || r->slots == NULL || r->hist == NULL)
                return -ENOMEM;
        for (unsigned b = 0; b < cs->msg_bytes; b++)
                r->payload[b] = (char)('a' + b % 26);
        memcpy(r->payload + cs->msg_bytes, "\r\n", 2);
        bench_hist_init(r->hist);
        r->inbox_len = (size_t)snprintf(r->inbox, sizeof(r->inbox), "_INBOX.durbench%d.%u.",
                                        (int)getpid(), r->serial);
        return 0;
}

/* What a finished run adds to t as run number `run`. */
static void bench_durable_tally(const struct bench_durable_run *r, struct bench_nats_tally *t,
                                unsigned run)
{
        const struct bench_clock *clock = &r->env->nats.clock;
        struct bench_latency *lat = &t->lats[run];
        double window_s = (double)bench_clock_to_ns(clock, r->close_ticks - r->open_ticks) / 1e9;
        bench_latency_from_hist(lat, r->hist);
        t->rates[run] = window_s > 0 ? (double)r->window_acks / window_s : 0;
        t->errors += r->errors + (r->sent - r->answered) + r->c.errs;
        bench_nats_tally_share(t, r->share);
        if (r->first_err[0] != '\0') {
                char what[160];
                snprintf(what, sizeof(what), "%" PRIu64 " errors in %" PRIu64 " answers, the "
                         "first", r->errors, r->answered);
                bench_durable_say(r, what, 0, r->first_err);
        }
        if (strstr(r->first_err, "\"FULL\"") != NULL)
                fprintf(stderr, "atomq-bench: durable %s: FULL: what is kept and in flight "
                                "fills atomqd's shard buffers (per worker ~32k small, 4k up "
                                "to 4 KiB, 256 up to 64 KiB): lower --window%s\n",
                        bench_durable_kind_names[r->cs.kind],
                        r->cs.kind == BENCH_DURABLE_SEND ? " or --rotate (sends per mailbox: "
                                                           "nobody fetches from it)" : "");
        if (r->env->nats.o->quiet)
                return;
        fprintf(stderr, "durable: %s %u B, %s, run %u/%u: %.1f k acks/s, p50 %.1f us, p99 "
                        "%.1f us, p999 %.1f us%s\n", bench_durable_kind_names[r->cs.kind],
                r->cs.msg_bytes, r->s->system, run + 1, r->env->nats.o->runs,
                t->rates[run] / 1e3, (double)lat->p50_ns / 1e3, (double)lat->p99_ns / 1e3,
                (double)lat->p999_ns / 1e3, r->errors != 0 ? " (errors)" : "");
}

/* One run of cs against server si, added to its tally. 0 or the failure. */
static int bench_durable_once(struct bench_durable_env *env, const struct bench_durable_case *cs,
                              unsigned si, unsigned run)
{
        struct bench_durable_run *r = NULL;
        int rc = bench_durable_new(env, cs, si, &r);
        if (rc == 0) {
                /* The server's kind is known once connected: rotation is
                 * for atomq's mailboxes, decided on the thread. */
                r->rotate = cs->kind == BENCH_DURABLE_SEND ? env->rotate : 0;
                pthread_t t;
                rc = bench_thread_start(&t, -1, bench_durable_main, r);
                if (rc == 0)
                        rc = bench_progress_join(env->nats.pg, t);
                if (rc == 0)
                        rc = r->rc;
        }
        if (rc == -ENOMEM)
                fprintf(stderr, "atomq-bench: durable: %s\n", strerror(ENOMEM));
        if (rc == 0)
                bench_durable_tally(r, &env->tallies[si], run);
        if (r != NULL)
                bench_durable_free(r);
        return rc;
}

/* ---- cases and the report ---------------------------------------------------- */

static int bench_durable_report(const struct bench_durable_env *env,
                                const struct bench_durable_case *cs, unsigned si,
                                struct bench_report *rep)
{
        const struct bench_nats_server *s = &env->nats.servers[si];
        const struct bench_nats_tally *t = &env->tallies[si];
        const unsigned runs = env->nats.o->runs;
        bool jetstream = strncmp(s->system, "nats-server", 11) == 0;
        struct bench_result *res = bench_report_add(rep, s->system, "durable",
                                                    bench_durable_kind_names[cs->kind]);
        if (res == NULL)
                return -ENOSPC;
        double rates[BENCH_RUNS_MAX];
        memcpy(rates, t->rates, sizeof(rates));
        res->msg_bytes = cs->msg_bytes;
        res->msgs_per_s = bench_median_f64(rates, runs);
        res->bytes_per_s = res->msgs_per_s * cs->msg_bytes;
        res->errors = t->errors;
        res->cpu_share = t->share;
        res->has_latency = true;
        snprintf(res->clock, sizeof(res->clock), "%s", bench_clock_name(&env->nats.clock));
        bench_latency_median(&res->lat, t->lats, runs);
        /* sync is what --sync asked of atomq; on a nats-server line it names
         * the atomq runs it was alternated with (JetStream has no such
         * setting per stream: version tells what it does). */
        bench_result_str(res, "storage", jetstream ? "file" : env->storage);
        bench_result_str(res, "sync", env->sync);
        bench_result_u64(res, "window", env->window);
        bench_result_u64(res, "rotate", cs->kind == BENCH_DURABLE_SEND && !jetstream
                                        ? env->rotate : 0);
        bench_result_str(res, "version", env->versions[si]);
        return 0;
}

/* --runs runs against every server, alternating (as scenario nats does); a
 * server that failed a run gets no more and no result. The first failure. */
static int bench_durable_case_run(struct bench_durable_env *env,
                                  const struct bench_durable_case *cs, struct bench_report *rep)
{
        const unsigned runs = env->nats.o->runs, n = env->nats.servers_n;
        for (unsigned i = 0; i < n; i++) {
                memset(&env->tallies[i], 0, sizeof(env->tallies[i]));
                env->tallies[i].share = 1.0;
        }
        for (unsigned run = 0; run < runs; run++) {
                for (unsigned i = 0; i < n; i++) {
                        if (env->tallies[i].rc != 0)
                                continue;
                        bench_progress_label(env->nats.pg, "durable: %s %u B, %s, run %u/%u",
                                             bench_durable_kind_names[cs->kind], cs->msg_bytes,
                                             env->nats.servers[i].system, run + 1, runs);
                        env->tallies[i].rc = bench_durable_once(env, cs, i, run);
                }
        }
        int rc = 0;
        for (unsigned i = 0; i < n; i++) {
                int one = env->tallies[i].rc != 0 ? env->tallies[i].rc
                          : bench_durable_report(env, cs, i, rep);
                rc = rc != 0 ? rc : one;
        }
        return rc;
}

/* The case word (none: both), the sizes, the policies and --url. */
static int bench_durable_env_setup(struct bench_durable_env *env)
{
        const struct bench_opts *o = env->nats.o;
        const char *word = o->case_word;
        bool any = false;
        for (unsigned k = 0; k < BENCH_DURABLE_KINDS; k++) {
                env->kinds[k] = word == NULL || strcmp(word, bench_durable_kind_names[k]) == 0;
                any |= env->kinds[k];
        }
        if (!any) {
                fprintf(stderr, "atomq-bench: durable: unknown case '%s': send or append (see "
                                "--help)\n", word);
                return -EINVAL;
        }
        if (o->rotate_set && !env->kinds[BENCH_DURABLE_SEND]) {
                fprintf(stderr, "atomq-bench: durable %s: --rotate applies to send\n", word);
                return -EINVAL;
        }
        env->sync = o->sync != NULL ? o->sync : "batch";
        env->storage = o->storage != NULL ? o->storage : "disk";
        env->window = o->window != 0 ? o->window : BENCH_DURABLE_WINDOW_DEFAULT;
        env->rotate = o->rotate_set ? o->rotate : BENCH_DURABLE_ROTATE_DEFAULT;
        env->sizes_n = o->sizes_n != 0 ? o->sizes_n : 1;
        env->sizes_bytes[0] = BENCH_DURABLE_SIZE_DEFAULT;
        memcpy(env->sizes_bytes, o->sizes_bytes, o->sizes_n * sizeof(o->sizes_bytes[0]));
        return bench_nats_urls(&env->nats, o->url, "durable");
}

int bench_durable_run(const struct bench_opts *o, struct bench_progress *pg,
                      struct bench_report *rep)
{
        /* Tallies of every server: ~60 KB, static rather than on the stack. */
        static struct bench_durable_env env;
        memset(&env, 0, sizeof(env));
        env.nats.o = o;
        env.nats.pg = pg;
        int rc = bench_durable_env_setup(&env);
        if (rc != 0)
                return rc;
        bench_clock_init(&env.nats.clock, true);
        unsigned cases = env.kinds[BENCH_DURABLE_SEND] + env.kinds[BENCH_DURABLE_APPEND];
        bench_progress_start(pg, cases * env.sizes_n * env.nats.servers_n * o->runs *
                                 (o->warmup_s + o->duration_s + 0.05));
        /* Every case runs even after one failed: the others still say
         * something, and the failure is reported (exit 1). */
        for (unsigned k = 0; k < BENCH_DURABLE_KINDS; k++) {
                for (unsigned i = 0; env.kinds[k] && i < env.sizes_n; i++) {
                        struct bench_durable_case cs = { .kind = k,
                                                         .msg_bytes = env.sizes_bytes[i] };
                        int one = bench_durable_case_run(&env, &cs, rep);
                        rc = rc != 0 ? rc : one;
                }
        }
        bench_progress_end(pg);
        /* -EINVAL means a usage error to bench_main: a run's is not one. */
        return rc == -EINVAL ? -EIO : rc;
}
