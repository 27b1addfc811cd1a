/* fuzz_aq_json.c - libFuzzer target for the $AQ request layer
 * (dataplane/dp_nats_aq.c, dp_nats_aq_verbs.c): subjects, JSON bodies and
 * header blocks as NATS clients send them, run on real workers.
 *
 *      sh tests/fuzz/run.sh build-fuzz/tests/fuzz/fuzz_aq_json \
 *              tests/fuzz/corpus/aq_json build-fuzz/tests/fuzz/aq_json
 *
 * Input: up to FZ_REQS_MAX requests separated by a line "--":
 *
 *      $AQ.MAILBOX.CREATE                     subject; reply _INBOX.fuzz.1
 *      {"name":"inbox.a"}                     payload (the rest)
 *      --
 *      $AQ.MAILBOX.SEND.inbox.a _INBOX.fuzz.2 subject and reply ("-": none)
 *      NATS/1.0\r\nAQ-TTL-MS: 5\r\n\r\nhi     a header block up to its empty line
 *      --
 *      +tick 1500                             the shards' clock moves on (ms)
 *
 * The engine is made once, with two workers and no threads: the requests
 * arrive on worker 0 as dp_nats_pub hands them over (prefetch, then
 * request), a request for a name owned by worker 1 crosses the mesh, and
 * both loops are driven here, on this thread, until idle. An inbox
 * subscription on worker 0's shard receives the answers. There is no NATS
 * listener (a fetch with wait_ms is answered at once, never parked) and no
 * disk tier (storage disk is NOT_SUPPORTED).
 *
 * Each input starts from empty shards: what it created is destroyed when
 * it ends, so inputs do not depend on each other and memory stays bounded
 * (the shards are small: max_entities, cursors and pools are reachable).
 *
 * Checked:
 *   - a request with an _INBOX reply gets exactly one answer (none only if
 *     a pool or the mesh was counted full), one without a reply none; an
 *     answer is a JSON object with a boolean "ok"; a failure carries a
 *     documented "error" code and a "message"; a success the fields
 *     docs/protocol.md lists for its verb (messages with base64 data,
 *     deliveries >= 1, at most 64 of them); an unknown subject
 *     UNKNOWN_SUBJECT;
 *   - a LATEST.PUT that succeeded is watched on $AQ.LATEST.WATCH.<key>
 *     with the value put;
 *   - the workers never count a bad mesh record or a ring error, and go
 *     idle within a bounded number of passes;
 *   - once everything is destroyed: no entity, message record, timer,
 *     cursor, binding or message buffer is left (a leak in the shard's own
 *     pools, which ASan cannot see).
 *
 * Answers are checked the same for requests with bytes above 0x7f: they
 * must be UTF-8 JSON, arrive, and not say FULL "out of memory" (nothing
 * fails to allocate here). This target found all three broken for such
 * requests (dp_aq_fail's text, the name-only fast path): fixed in
 * dc93902, tested in nats_wire's aq-not-utf8.
 */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/dp_engine.h"
#include "dataplane/dp_nats_aq.h"
#include "dataplane/dp_shard_pvt.h"
#include "dataplane/dp_subject.h"
#include "dataplane/dp_worker_pvt.h"
#include "shm/shm_clock.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_WORKERS 2u
#define FZ_REQS_MAX 64u
/* The answers' party: any id without the agent bit (dp_agent.h). */
#define FZ_ENDPOINT 7u
#define FZ_SID_INBOX 1u
#define FZ_SID_WATCH 2u
#define FZ_REPLY "_INBOX.fuzz.1"
#define FZ_INBOX "_INBOX."
#define FZ_WATCH "$AQ.LATEST.WATCH."
#define FZ_PUT "$AQ.LATEST.PUT."
#define FZ_OK "{\"ok\":true}"
#define FZ_LIT_LEN(lit) (sizeof(lit) - 1)
#define FZ_SEP "\n--\n"
/* Passes of both loops after a request; a few are enough (request, mesh,
 * answer fanout), so many more mean work that does not end. */
#define FZ_PASSES_MAX 1000
/* One +tick moves the clock at most this far: past ack-wait and TTLs. */
#define FZ_TICK_MS_MAX 120000ull

#define FZ_NAME "fuzz_aq_json"
#include "tests/fuzz/fuzz_check.h"

/* What an ok answer of a verb must carry (docs/protocol.md's table). */
enum fz_kind {
        FZ_A_BARE = 0,  /* {"ok":true} */
        FZ_A_INFO,
        FZ_A_CREATED,   /* name, mode */
        FZ_A_SEQ,
        FZ_A_OFFSET,
        FZ_A_MSGS_SEQ,
        FZ_A_MSGS_OFFSET,
        FZ_A_DATA,
};

struct fz_verb {
        const char *verb;   /* after "$AQ."; "." at the end: a name follows */
        enum fz_kind kind;
        const char *mode;   /* creates: the mode named in the answer */
};

static const struct fz_verb fz_verbs[] = {
        { "INFO", FZ_A_INFO, NULL },
        { "MAILBOX.CREATE", FZ_A_CREATED, "mailbox" },
        { "MAILBOX.DESTROY.", FZ_A_BARE, NULL },
        { "MAILBOX.SEND.", FZ_A_SEQ, NULL },
        { "MAILBOX.FETCH.", FZ_A_MSGS_SEQ, NULL },
        { "MAILBOX.ACK.", FZ_A_BARE, NULL },
        { "LATEST.PUT.", FZ_A_BARE, NULL },
        { "LATEST.GET.", FZ_A_DATA, NULL },
        { "LOG.CREATE", FZ_A_CREATED, "log" },
        { "LOG.APPEND.", FZ_A_OFFSET, NULL },
        { "LOG.READ.", FZ_A_MSGS_OFFSET, NULL },
        { "LOG.COMMIT.", FZ_A_BARE, NULL },
        { "LOG.DESTROY.", FZ_A_BARE, NULL },
        { "CHANNEL.OPEN", FZ_A_CREATED, "channel" },
        { "CHANNEL.CLOSE.", FZ_A_BARE, NULL },
        { "CHANNEL.SEND.", FZ_A_SEQ, NULL },
        { "CHANNEL.FETCH.", FZ_A_MSGS_SEQ, NULL },
};
#define FZ_VERBS_N (sizeof(fz_verbs) / sizeof(fz_verbs[0]))

static const char *const fz_codes[] = {
        "BAD_REQUEST", "NOT_FOUND", "EXISTS", "FULL", "TOO_LARGE", "OUT_OF_RANGE",
        "NOT_SUPPORTED", "DISK_FULL", "DISK_ERROR", "NO_RECEIVER", "BUSY", "UNKNOWN_SUBJECT",
};
#define FZ_CODES_N (sizeof(fz_codes) / sizeof(fz_codes[0]))

/* One request as the NATS layer hands it over, each part in its own
 * allocation of exactly its size (ASan sees reads past any of them). */
struct fz_req {
        char *subject;
        uint32_t subject_len;
        char *reply;        /* NULL: published without a reply */
        uint32_t reply_len;
        char *headers;
        uint32_t headers_len;
        char *payload;
        uint32_t payload_len;
};

/* What the request being run expects and what came back for it. */
struct fz_expect {
        const struct fz_req *req;
        const struct fz_verb *verb; /* NULL: no such verb */
        uint32_t answers;
        uint32_t watched;
        uint32_t keyed;             /* a put's value routed to its key's subscribers */
        bool put_ok;
};

static struct dp_engine fz_engine;
static bool fz_ready;
static struct fz_expect fz_cur;
static uint64_t fz_skew_ns;
/* FUZZ_AQ_PRINT=1 in the environment: every request and answer on stderr,
 * to see what an input does (a crash being turned into a unit test). */
static bool fz_print;

/* ---- answers ------------------------------------------------------------ */

static bool fz_base64_ok(const char *s, size_t n)
{
        static const char set[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                  "0123456789+/";

        if (n % 4 != 0)
                return false;
        for (size_t i = 0; i < n; i++) {
                /* Padding only in the last two places, and only at the end. */
                if (s[i] == '=' && i + 2 >= n && (i + 1 == n || s[i + 1] == '='))
                        continue;
                if (s[i] == '\0' || strchr(set, s[i]) == NULL)
                        return false;
        }
        return true;
}

static bool fz_uint_field(const json_t *o, const char *key)
{
        const json_t *v = json_object_get(o, key);

        return json_is_integer(v) && json_integer_value(v) >= 0;
}

static void fz_check_msgs(const json_t *a, const char *seq_key)
{
        const json_t *msgs = json_object_get(a, "messages");
        size_t i;
        const json_t *m;

        FZ_CHECK(json_is_array(msgs));
        FZ_CHECK(json_array_size(msgs) <= DP_FETCH_MAX);
        json_array_foreach(msgs, i, m) {
                const json_t *d = json_object_get(m, "data");

                FZ_CHECK(json_is_object(m));
                FZ_CHECK(fz_uint_field(m, seq_key));
                FZ_CHECK(json_is_integer(json_object_get(m, "deliveries")) &&
                         json_integer_value(json_object_get(m, "deliveries")) >= 1);
                FZ_CHECK(json_is_string(d) &&
                         fz_base64_ok(json_string_value(d), json_string_length(d)));
        }
}

static void fz_check_ok(const json_t *a, const struct fz_verb *v)
{
        const json_t *d;

        FZ_CHECK(v != NULL);
        switch (v->kind) {
        case FZ_A_INFO:
                FZ_CHECK(json_is_string(json_object_get(a, "server")));
                FZ_CHECK(json_integer_value(json_object_get(a, "workers")) == FZ_WORKERS);
                break;
        case FZ_A_CREATED:
                FZ_CHECK(json_is_string(json_object_get(a, "name")));
                FZ_CHECK(json_is_string(json_object_get(a, "mode")) &&
                         strcmp(json_string_value(json_object_get(a, "mode")), v->mode) == 0);
                break;
        case FZ_A_SEQ:
                FZ_CHECK(fz_uint_field(a, "seq"));
                break;
        case FZ_A_OFFSET:
                FZ_CHECK(fz_uint_field(a, "offset"));
                break;
        case FZ_A_MSGS_SEQ:
                fz_check_msgs(a, "seq");
                break;
        case FZ_A_MSGS_OFFSET:
                fz_check_msgs(a, "offset");
                break;
        case FZ_A_DATA:
                d = json_object_get(a, "data");
                FZ_CHECK(json_is_null(d) || (json_is_string(d) && fz_base64_ok(
                                json_string_value(d), json_string_length(d))));
                break;
        default:
                break;
        }
}

static void fz_check_fail(const json_t *a, const struct fz_verb *v)
{
        const json_t *code = json_object_get(a, "error");
        size_t i;

        FZ_CHECK(json_is_string(code));
        FZ_CHECK(json_is_string(json_object_get(a, "message")));
        for (i = 0; i < FZ_CODES_N; i++)
                if (strcmp(json_string_value(code), fz_codes[i]) == 0)
                        break;
        FZ_CHECK(i < FZ_CODES_N);
        if (v == NULL)
                FZ_CHECK(strcmp(json_string_value(code), "UNKNOWN_SUBJECT") == 0);
}

/* A broken answer (see the file header): what and for which request. */
__attribute__((noreturn)) static void fz_broken(const char *what, const void *p, uint32_t n)
{
        fprintf(stderr, "fuzz_aq_json: %s for subject %.*s: %.*s\n", what,
                (int)fz_cur.req->subject_len, fz_cur.req->subject, (int)n, (const char *)p);
        __builtin_trap();
}

static bool fz_is_full_oom(const json_t *a)
{
        const char *code = json_string_value(json_object_get(a, "error"));
        const char *msg = json_string_value(json_object_get(a, "message"));

        return code != NULL && msg != NULL && strcmp(code, "FULL") == 0 &&
               strcmp(msg, "out of memory") == 0;
}

static void fz_check_answer(const void *p, uint32_t n)
{
        json_error_t err;
        json_t *a = json_loadb(p, n, 0, &err);

        if (a == NULL && json_error_code(&err) == json_error_invalid_utf8)
                fz_broken("an answer that is not UTF-8", p, n);
        if (a == NULL)
                fprintf(stderr, "fuzz_aq_json: answer is not JSON (%s): %.*s\n", err.text,
                        (int)n, (const char *)p);
        FZ_CHECK(json_is_object(a));
        FZ_CHECK(json_is_boolean(json_object_get(a, "ok")));
        if (json_is_true(json_object_get(a, "ok")))
                fz_check_ok(a, fz_cur.verb);
        else if (fz_is_full_oom(a))
                fz_broken("FULL \"out of memory\"", p, n);
        else
                fz_check_fail(a, fz_cur.verb);
        json_decref(a);
}

/* A put's value published for watchers: the key's subject, the value. */
static void fz_check_watch(const struct dp_msg_view *v)
{
        const struct fz_req *r = fz_cur.req;
        size_t pre = FZ_LIT_LEN(FZ_PUT);

        FZ_CHECK(r->subject_len > pre && memcmp(r->subject, FZ_PUT, pre) == 0);
        FZ_CHECK(v->subject_len == FZ_LIT_LEN(FZ_WATCH) + r->subject_len - pre);
        FZ_CHECK(memcmp(v->subject + FZ_LIT_LEN(FZ_WATCH), r->subject + pre,
                        r->subject_len - pre) == 0);
        FZ_CHECK(v->payload_len == r->payload_len);
        FZ_CHECK(r->payload_len == 0 || memcmp(v->payload, r->payload, r->payload_len) == 0);
        fz_cur.watched++;
}

static bool fz_is_put(void)
{
        return fz_cur.verb != NULL && strcmp(fz_cur.verb->verb, "LATEST.PUT.") == 0;
}

/* A latest entity routes by subject match (its mode's routing atom,
 * docs/architecture.md): a put also reaches the subscribers of its key,
 * which may be our inbox or the watch prefix. That comes before the
 * answer (dp_aq_latest_put sends, then answers), and only once, so a key
 * equal to the reply subject is told apart by order. */
static bool fz_is_put_value(const struct dp_msg_view *v)
{
        const struct fz_req *r = fz_cur.req;
        size_t pre = FZ_LIT_LEN(FZ_PUT);

        return fz_is_put() && fz_cur.keyed == 0 && fz_cur.answers == 0 &&
               v->subject_len == r->subject_len - pre &&
               memcmp(v->subject, r->subject + pre, v->subject_len) == 0 &&
               v->payload_len == r->payload_len &&
               (r->payload_len == 0 || memcmp(v->payload, r->payload, r->payload_len) == 0);
}

static void fz_on_deliver(void *arg, struct dp_worker *w, const struct dp_dispatch *d)
{
        struct dp_msg_view v;

        (void)arg;
        FZ_CHECK(d->endpoint == FZ_ENDPOINT && d->status == 0);
        FZ_CHECK(dp_shard_msg_view(dp_worker_shard(w), d->buf, &v) == 0);
        /* Nothing but a request publishes: not a timer, not a reset. */
        FZ_CHECK(fz_cur.req != NULL);
        if (fz_is_put_value(&v)) {
                fz_cur.keyed++;
                return;
        }
        if (d->sid == FZ_SID_WATCH) {
                fz_check_watch(&v);
                return;
        }
        FZ_CHECK(d->sid == FZ_SID_INBOX && fz_cur.req->reply != NULL);
        FZ_CHECK(v.subject_len == fz_cur.req->reply_len &&
                 memcmp(v.subject, fz_cur.req->reply, v.subject_len) == 0);
        fz_cur.answers++;
        if (fz_print)
                fprintf(stderr, "  -> %.*s\n", (int)v.payload_len, (const char *)v.payload);
        fz_check_answer(v.payload, v.payload_len);
        /* An answer that says ok to a put promises the watch publish. */
        if (fz_is_put() && v.payload_len == FZ_LIT_LEN(FZ_OK) &&
            memcmp(v.payload, FZ_OK, FZ_LIT_LEN(FZ_OK)) == 0)
                fz_cur.put_ok = true;
}

/* ---- the engine ---------------------------------------------------------- */

/* Small shards, so that the limits (entities, cursors, buffers) are within
 * reach of a few requests, and resetting them costs little. */
static void fz_config(struct dp_engine_config *cfg)
{
        dp_engine_config_default(cfg, 32);
        cfg->workers = FZ_WORKERS;
        cfg->cmd_ring_bytes = DP_CMD_RING_BYTES_MIN;
        cfg->cpl_ring_bytes = DP_CPL_RING_BYTES_MIN;
        cfg->mesh_ring_bytes = DP_CMD_RING_BYTES_MIN;
        cfg->hugepages = SHM_HUGEPAGES_OFF;
        cfg->deliver = fz_on_deliver;
        cfg->shard.max_msgs = 1024;
        cfg->shard.max_subs = 64;
        cfg->shard.max_trie_nodes = 256;
        cfg->shard.trie_token_bytes = 4096;
        cfg->shard.max_bindings = 64;
        cfg->shard.max_cursors = 16;
        /* Redelivery within reach of +tick. */
        cfg->shard.ack_wait_ns = 1000ull * 1000000;
        cfg->shard.max_deliver = 3;
        cfg->shard.bufs[0].block_count = 2048;
        cfg->shard.bufs[1].block_count = 256;
        cfg->shard.bufs[2].block_count = 32;
        cfg->shard.bufs[3].block_count = 4;
}

static void fz_engine_make(void)
{
        struct dp_engine_config cfg;
        struct dp_shard *s;
        uint32_t id;

        fz_print = getenv("FUZZ_AQ_PRINT") != NULL;
        fz_config(&cfg);
        FZ_CHECK(dp_engine_init(&fz_engine, &cfg) == 0);
        /* The client's inbox and a watcher, on the worker it is connected to. */
        s = dp_worker_shard(&fz_engine.w[0]);
        FZ_CHECK(dp_shard_subscribe(s, FZ_INBOX ">", FZ_LIT_LEN(FZ_INBOX ">"), 0, FZ_ENDPOINT,
                                    FZ_SID_INBOX, 0, &id) == 0);
        FZ_CHECK(dp_shard_subscribe(s, FZ_WATCH ">", FZ_LIT_LEN(FZ_WATCH ">"), 0, FZ_ENDPOINT,
                                    FZ_SID_WATCH, 0, &id) == 0);
        fz_ready = true;
}

/* Both loops until neither has anything left to do. */
static void fz_drain(void)
{
        for (int pass = 0;; pass++) {
                int work = 0;

                FZ_CHECK(pass < FZ_PASSES_MAX);
                for (uint32_t i = 0; i < FZ_WORKERS; i++) {
                        int rc = dp_worker_do_work(&fz_engine.w[i]);

                        FZ_CHECK(rc >= 0);
                        work += rc;
                }
                if (work == 0)
                        return;
        }
}

/* Things that only a bug of ours makes: malformed mesh records, rings
 * found corrupt, completions lost. */
static void fz_check_workers(void)
{
        for (uint32_t i = 0; i < FZ_WORKERS; i++) {
                const struct dp_worker_stats *st = fz_engine.w[i].stats;

                FZ_CHECK(dp_counter_get(&st->bad_records) == 0);
                FZ_CHECK(dp_counter_get(&st->ring_errors) == 0);
                FZ_CHECK(dp_counter_get(&st->cpl_lost) == 0);
        }
}

/* What may make an answer go missing without a bug: a full pool or mesh. */
static uint64_t fz_loss_count(void)
{
        uint64_t n = 0;

        for (uint32_t i = 0; i < FZ_WORKERS; i++) {
                n += fz_engine.w[i].shard.stats->pool_exhausted;
                n += dp_counter_get(&fz_engine.w[i].stats->mesh_full);
        }
        return n;
}

/* ---- reset and leak checks ------------------------------------------------ */

static uint32_t fz_free_list_len(uint32_t head, const void *recs, size_t stride, size_t next_off,
                                 uint32_t max)
{
        uint32_t n = 0;

        while (head != 0) {
                uint32_t next;

                FZ_CHECK(head <= max && n < max);
                memcpy(&next, (const char *)recs + (head - 1) * stride + next_off, sizeof(next));
                head = next;
                n++;
        }
        return n;
}

static void fz_shard_check_empty(const struct dp_shard *s)
{
        uint64_t bufs = 0;

        FZ_CHECK(s->table.hdr->live == 0);
        FZ_CHECK(s->msgs.hdr->in_use == 0);
        FZ_CHECK(dp_timer_armed_count(&s->timers) == 0);
        FZ_CHECK(fz_free_list_len(s->hdr->cursor_free, s->cursors, sizeof(struct dp_cursor),
                                  offsetof(struct dp_cursor, next), s->max_cursors) ==
                 s->max_cursors);
        FZ_CHECK(fz_free_list_len(s->hdr->bind_free, s->bindings, sizeof(struct dp_binding),
                                  offsetof(struct dp_binding, next), s->max_bindings) ==
                 s->max_bindings);
        for (uint32_t i = 0; i < s->bufs.class_count; i++)
                bufs += shm_pool_in_use(&s->bufs.pools[i]);
        /* The one buffer a shard keeps for its publishes to reuse. */
        FZ_CHECK(bufs == (s->publish_buf != SHM_BUF_NONE ? 1u : 0u));
}

/* Destroys every entity the input made, on every shard, and checks that
 * nothing they held is left behind. */
static void fz_reset(void)
{
        for (uint32_t i = 0; i < FZ_WORKERS; i++) {
                struct dp_shard *s = dp_worker_shard(&fz_engine.w[i]);

                for (uint32_t k = 0; k < s->table.capacity; k++) {
                        struct dp_entity *e = &s->table.slots[k];

                        if (e->flags & DP_ENT_F_LIVE)
                                FZ_CHECK(dp_shard_destroy(s, dp_table_handle(&s->table, e)) ==
                                         0);
                }
        }
        fz_drain();
        for (uint32_t i = 0; i < FZ_WORKERS; i++)
                fz_shard_check_empty(dp_worker_shard(&fz_engine.w[i]));
        fz_check_workers();
}

/* ---- requests ---------------------------------------------------------------- */

static const struct fz_verb *fz_verb_of(const char *s, uint32_t len)
{
        s += 4;  /* "$AQ." */
        len -= 4;
        for (size_t i = 0; i < FZ_VERBS_N; i++) {
                size_t vl = strlen(fz_verbs[i].verb);
                bool named = fz_verbs[i].verb[vl - 1] == '.';

                if ((named ? len > vl : len == vl) && memcmp(s, fz_verbs[i].verb, vl) == 0)
                        return &fz_verbs[i];
        }
        return NULL;
}

static char *fz_dup(const void *p, size_t n)
{
        char *c = malloc(n > 0 ? n : 1);

        FZ_CHECK(c != NULL);
        if (n > 0)
                memcpy(c, p, n);
        return c;
}

static void fz_req_free(struct fz_req *r)
{
        free(r->subject);
        free(r->reply);
        free(r->headers);
        free(r->payload);
}

/* The subject line: "SUBJECT", "SUBJECT REPLY" or "SUBJECT -". Returns
 * false for what dp_nats_pub would refuse (an invalid subject) or not
 * route here (not $AQ., a reply outside the inbox this client watches). */
static bool fz_req_line(struct fz_req *r, const char *s, size_t n)
{
        const char *sp = memchr(s, ' ', n);
        size_t sl = sp != NULL ? (size_t)(sp - s) : n;
        const char *reply = sp != NULL ? sp + 1 : FZ_REPLY;
        size_t rl = sp != NULL ? n - sl - 1 : sizeof(FZ_REPLY) - 1;

        if (dp_subject_check(s, sl, false) != 0 || !dp_nats_aq_is(s, (uint32_t)sl))
                return false;
        r->subject = fz_dup(s, sl);
        r->subject_len = (uint32_t)sl;
        if (rl == 1 && reply[0] == '-')
                return true;
        /* At least one token after the prefix, as "_INBOX.>" matches. */
        if (dp_subject_check(reply, rl, false) != 0 || rl <= FZ_LIT_LEN(FZ_INBOX) ||
            memcmp(reply, FZ_INBOX, FZ_LIT_LEN(FZ_INBOX)) != 0)
                return false;
        r->reply = fz_dup(reply, rl);
        r->reply_len = (uint32_t)rl;
        return true;
}

/* After the subject line: a header block when it starts like one (up to
 * and with its empty line, or all of it), then the payload. */
static void fz_req_body(struct fz_req *r, const char *s, size_t n)
{
        static const char magic[] = "NATS/1.0";
        size_t hl = 0;

        if (n >= sizeof(magic) - 1 && memcmp(s, magic, sizeof(magic) - 1) == 0) {
                const char *end = memmem(s, n, "\r\n\r\n", 4);

                hl = end != NULL ? (size_t)(end - s) + 4 : n;
                r->headers = fz_dup(s, hl);
                r->headers_len = (uint32_t)hl;
        }
        r->payload = fz_dup(s + hl, n - hl);
        r->payload_len = (uint32_t)(n - hl);
}

/* "+tick MS": the shards' clock jumps ahead (it never goes back, so the
 * real clock of later passes does not undo it). */
static void fz_tick(const char *s, size_t n)
{
        uint64_t ms = 0;

        for (size_t i = 0; i < n && s[i] >= '0' && s[i] <= '9' && ms <= FZ_TICK_MS_MAX; i++)
                ms = ms * 10 + (uint64_t)(s[i] - '0');
        fz_skew_ns += (ms < FZ_TICK_MS_MAX ? ms : FZ_TICK_MS_MAX) * 1000000;
        for (uint32_t i = 0; i < FZ_WORKERS; i++)
                dp_shard_tick(dp_worker_shard(&fz_engine.w[i]), shm_clock_ns() + fz_skew_ns,
                              DP_TICK_MAX);
        fz_drain();
}

static void fz_check_answered(const struct fz_req *r, uint64_t loss)
{
        if (r->reply == NULL) {
                FZ_CHECK(fz_cur.answers == 0);
                return;
        }
        FZ_CHECK(fz_cur.answers <= 1);
        if (fz_cur.answers == 0 && fz_loss_count() == loss)
                fz_broken("no answer", r->payload, r->payload_len);
        /* The watch subject is the key's under a longer prefix: a key too
         * long for it is not watched (dp_aq_latest_put's snprintf). */
        if (fz_cur.put_ok &&
            r->subject_len - FZ_LIT_LEN(FZ_PUT) + FZ_LIT_LEN(FZ_WATCH) <= DP_SUBJECT_MAX)
                FZ_CHECK(fz_cur.watched == 1 || fz_loss_count() != loss);
}

static void fz_request_run(const struct fz_req *r)
{
        struct dp_worker *w = &fz_engine.w[0];
        struct dp_msg_in m = { .subject = r->subject, .subject_len = r->subject_len,
                               .headers = r->headers, .headers_len = r->headers_len,
                               .payload = r->payload, .payload_len = r->payload_len,
                               .storage = -1, .reply_subject = r->reply,
                               .reply_subject_len = r->reply_len };
        uint64_t loss = fz_loss_count();

        fz_cur = (struct fz_expect){ .req = r, .verb = fz_verb_of(r->subject, r->subject_len) };
        if (fz_print)
                fprintf(stderr, "%.*s (%u header bytes, %u payload bytes)\n",
                        (int)r->subject_len, r->subject, r->headers_len, r->payload_len);
        /* As dp_nats_on_data and dp_nats_pub call them. */
        dp_nats_aq_prefetch(w, &m);
        dp_nats_aq_request(w, &m);
        fz_drain();
        fz_check_answered(r, loss);
        fz_check_workers();
        fz_cur = (struct fz_expect){ 0 };
}

static void fz_one(const char *s, size_t n)
{
        const char *nl = memchr(s, '\n', n);
        size_t ll = nl != NULL ? (size_t)(nl - s) : n;
        size_t rest = nl != NULL ? n - ll - 1 : 0;
        struct fz_req r = { 0 };

        if (ll >= 6 && memcmp(s, "+tick ", 6) == 0) {
                fz_tick(s + 6, ll - 6);
                return;
        }
        if (fz_req_line(&r, s, ll)) {
                fz_req_body(&r, nl != NULL ? nl + 1 : s + n, rest);
                fz_request_run(&r);
        }
        fz_req_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *s = (const char *)data, *end = s + size;

        if (!fz_ready)
                fz_engine_make();
        for (uint32_t i = 0; i < FZ_REQS_MAX && s <= end; i++) {
                const char *sep = memmem(s, (size_t)(end - s), FZ_SEP, sizeof(FZ_SEP) - 1);
                size_t n = sep != NULL ? (size_t)(sep - s) : (size_t)(end - s);

                fz_one(s, n);
                if (sep == NULL)
                        break;
                s = sep + sizeof(FZ_SEP) - 1;
        }
        fz_reset();
        return 0;
}
