/* dp_nats_aq.c - atomq's modes for NATS clients: request-reply on `$AQ.>`.
 *
 * A publish to a subject under `$AQ.` with a reply subject is a request:
 * the worker that owns the entity it names (the pure function of the name,
 * dp_engine_shard_of_name) executes it on its shard and publishes the
 * answer, a JSON object, to the reply subject. A request that arrives on
 * another worker crosses the mesh to the owner as a record of its own
 * (DP_REC_MESH_AQ); the answer is an ordinary publish, so it finds the
 * requester's inbox subscription on whichever worker that lives.
 *
 * Answers are {"ok":true,...} or {"ok":false,"error":"CODE","message":"..."}
 * (docs/protocol.md lists every subject, body and code). Message payloads
 * go in raw as the request's payload (binary-safe) and come out base64 in
 * JSON ("data"). A fetch with "wait_ms" and nothing to hand out is parked
 * (at most DP_AQ_PARKED_MAX a worker) and answered when a message arrives
 * or the wait ends, looked at once a loop pass.
 *
 * This file routes requests and writes answers; what each verb does is
 * dp_nats_aq_verbs.c's.
 */
#include "dataplane/dp_nats_aq_pvt.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "dataplane/dp_cmd.h"
#include "dataplane/dp_disk.h"
#include "dataplane/dp_engine.h"
#include "dataplane/dp_mode.h"
#include "dataplane/dp_worker_pvt.h"
#include "shm/shm_clock.h"

#define DP_AQ_PREFIX "$AQ."
#define DP_AQ_PREFIX_LEN 4u
/* An answer is one message: the shards' largest buffers hold 1 MiB + 64 KiB. */
#define DP_AQ_ANSWER_MAX (1u << 20)

/* ---- answers -------------------------------------------------------------- */

static const char *dp_aq_code(int err)
{
        switch (err) {
        case -ENOENT:
        case -ESTALE:
                return "NOT_FOUND";
        case -EEXIST:
                return "EXISTS";
        case -ENOSPC:
        case -ENOBUFS:
        case -ENOMEM:
                return "FULL";
        case -EMSGSIZE:
                return "TOO_LARGE";
        case -EOPNOTSUPP:
                return "NOT_SUPPORTED";
        case -ERANGE:
                return "OUT_OF_RANGE";
        case -EBUSY:
                return "BUSY";
        case -EDQUOT:
                return "DISK_FULL";
        case -EIO:
        case -EFBIG:
        case -EROFS:
                return "DISK_ERROR";
        default:
                return "BAD_REQUEST";
        }
}

/* The length of the valid UTF-8 sequence at s (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), 0 if there is none. */
static size_t dp_aq_utf8_len(const unsigned char *s, size_t left)
{
        unsigned char c = s[0];
        size_t n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
                 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        if (n == 0 || n > left)
                return 0;
        for (size_t i = 1; i < n; i++)
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
        if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) ||
            (c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))
                return 0;
        return n;
}

/* Replaces each byte that does not start a valid UTF-8 sequence with '?':
 * JSON strings are UTF-8, and subjects and names may hold any byte (and
 * a name cut at 200 bytes may end inside a character). */
static void dp_aq_utf8_scrub(char *s)
{
        size_t len = strlen(s);
        for (size_t i = 0; i < len;) {
                size_t n = dp_aq_utf8_len((const unsigned char *)s + i, len - i);
                if (n == 0) {
                        s[i] = '?';
                        n = 1;
                }
                i += n;
        }
}

json_t *dp_aq_fail(const char *code, const char *fmt, const char *arg, size_t arg_len)
{
        char msg[320];
        snprintf(msg, sizeof(msg), fmt, (int)(arg_len > 200 ? 200 : arg_len), arg);
        dp_aq_utf8_scrub(msg);
        return json_pack("{s:b,s:s,s:s}", "ok", 0, "error", code, "message", msg);
}

json_t *dp_aq_msg(const char *code, const char *msg)
{
        return dp_aq_fail(code, "%.*s", msg, strlen(msg));
}

json_t *dp_aq_err(const struct dp_aq_req *r, int err)
{
        char what[96];
        snprintf(what, sizeof(what), "%%.*s: %s", strerror(-err));
        return dp_aq_fail(dp_aq_code(err), what, r->name, r->name_len);
}

/* The common answers are written as text, without building a JSON tree
 * (jansson's tree, dump and free were most of a create's cost): a handler
 * fills the worker's text buffer and returns DP_AQ_TEXT. */
static _Thread_local char dp_aq_text[ATOMQ_FRAME_SUBJECT_MAX * 2 + 96];
static _Thread_local size_t dp_aq_text_len;
static char dp_aq_text_marker;
#define DP_AQ_TEXT ((json_t *)(void *)&dp_aq_text_marker)

/* Appends len bytes as they are; false when the buffer is full. The
 * commonest answers are built with these, not snprintf, which costs more
 * than the rest of a create. */
static bool dp_aq_text_put(const char *s, size_t len)
{
        if (len >= sizeof(dp_aq_text) - dp_aq_text_len)
                return false;
        memcpy(dp_aq_text + dp_aq_text_len, s, len);
        dp_aq_text_len += len;
        return true;
}

#define DP_AQ_TEXT_PUT(lit) dp_aq_text_put(lit, sizeof(lit) - 1)

/* Appends s as a JSON string body (escaping quotes, backslashes and control
 * bytes); false when the buffer is full. */
static bool dp_aq_text_str(const char *s, size_t len)
{
        static const char hex[] = "0123456789abcdef";
        for (size_t i = 0; i < len; i++) {
                unsigned char ch = (unsigned char)s[i];
                if (dp_aq_text_len + 6 >= sizeof(dp_aq_text))
                        return false;
                char *o = dp_aq_text + dp_aq_text_len;
                if (ch == '"' || ch == '\\') {
                        o[0] = '\\', o[1] = (char)ch, dp_aq_text_len += 2;
                } else if (ch < 0x20) {
                        memcpy(o, "\\u00", 4);
                        o[4] = hex[ch >> 4], o[5] = hex[ch & 15], dp_aq_text_len += 6;
                } else {
                        o[0] = (char)ch, dp_aq_text_len++;
                }
        }
        return true;
}

bool dp_aq_is_text(const json_t *a)
{
        return a == DP_AQ_TEXT;
}

json_t *dp_aq_ok(void)
{
        dp_aq_text_len = 0;
        DP_AQ_TEXT_PUT("{\"ok\":true}");
        return DP_AQ_TEXT;
}

/* {"ok":true,"<key>":N}: every send's and append's answer. */
json_t *dp_aq_ok_num(const char *key, uint64_t v)
{
        char digits[20];
        size_t n = 0;
        do {
                digits[sizeof(digits) - 1 - n++] = (char)('0' + v % 10);
                v /= 10;
        } while (v != 0);
        dp_aq_text_len = 0;
        if (!DP_AQ_TEXT_PUT("{\"ok\":true,\"") || !dp_aq_text_put(key, strlen(key)) ||
            !DP_AQ_TEXT_PUT("\":") || !dp_aq_text_put(digits + sizeof(digits) - n, n) ||
            !DP_AQ_TEXT_PUT("}"))
                return json_pack("{s:b,s:I}", "ok", 1, key, (json_int_t)v); /* a key too long */
        return DP_AQ_TEXT;
}

/* {"ok":true,"name":"<name>","mode":"<mode>"}, or NULL when it does not fit. */
json_t *dp_aq_ok_named(const char *name, size_t len, const char *mode)
{
        dp_aq_text_len = 0;
        if (!DP_AQ_TEXT_PUT("{\"ok\":true,\"name\":\"") || !dp_aq_text_str(name, len) ||
            !DP_AQ_TEXT_PUT("\",\"mode\":\"") || !dp_aq_text_put(mode, strlen(mode)) ||
            !DP_AQ_TEXT_PUT("\"}"))
                return NULL;
        return DP_AQ_TEXT;
}

/* Publishes the answer to the request's reply subject. */
static void dp_aq_publish(struct dp_worker *w, const struct dp_msg_in *m, const char *text,
                          size_t len)
{
        struct dp_msg_in out = { .subject = m->reply_subject,
                                 .subject_len = m->reply_subject_len,
                                 .payload = text,
                                 .payload_len = (uint32_t)len,
                                 .storage = -1 };
        if (m->reply_subject_len != 0 && dp_worker_publish_msg(w, &out, 0, 0) == -ENOBUFS &&
            w->nats != NULL)
                dp_nats_count_aq_lost(w->nats);
}

/* Publishes the answer, or parks it until the records the request wrote
 * to the disk tier are as durable as their sync asks (wait: NULL, none). */
static void dp_aq_publish_after(struct dp_worker *w, const struct dp_msg_in *m, const char *text,
                                size_t len, const struct dp_disk_wait *wait)
{
        if (wait != NULL && m->reply_subject_len != 0 &&
            dp_disk_park(w->disk, wait, m->reply_subject, m->reply_subject_len, text,
                         (uint32_t)len) == 0)
                return;
        dp_aq_publish(w, m, text, len);
}

/* As dp_aq_answer, for a request whose records must be on disk first. */
static void dp_aq_answer_after(struct dp_worker *w, const struct dp_msg_in *m, json_t *a,
                               const struct dp_disk_wait *wait)
{
        if (a == DP_AQ_TEXT) {
                /* A copy: publishing may drain the mesh and so run other
                 * requests, which write the shared text buffer. */
                char text[sizeof(dp_aq_text)];
                size_t len = dp_aq_text_len;
                memcpy(text, dp_aq_text, len);
                dp_aq_publish_after(w, m, text, len, wait);
                return;
        }
        if (a == NULL)
                a = dp_aq_msg("FULL", "out of memory");
        char *text = json_dumps(a, JSON_COMPACT);
        json_decref(a);
        if (text != NULL && strlen(text) > DP_AQ_ANSWER_MAX) {
                free(text);
                text = json_dumps(dp_aq_msg("TOO_LARGE", "the answer"), JSON_COMPACT);
        }
        if (text != NULL)
                dp_aq_publish_after(w, m, text, strlen(text), wait);
        free(text);
}

void dp_aq_answer(struct dp_worker *w, const struct dp_msg_in *m, json_t *a)
{
        dp_aq_answer_after(w, m, a, NULL);
}

/* ---- routing -------------------------------------------------------------------- */

bool dp_nats_aq_is(const char *subject, uint32_t len)
{
        return len >= DP_AQ_PREFIX_LEN && memcmp(subject, DP_AQ_PREFIX, DP_AQ_PREFIX_LEN) == 0;
}

/* The verb of subject (after "$AQ."), and the name after it. */
static const struct dp_aq_verb *dp_aq_verb_of(const char *s, uint32_t len, const char **name,
                                               uint32_t *name_len)
{
        s += DP_AQ_PREFIX_LEN;
        len -= DP_AQ_PREFIX_LEN;
        for (size_t i = 0; i < dp_aq_verbs_count; i++) {
                const struct dp_aq_verb *v = &dp_aq_verbs[i];
                size_t vl = strlen(v->verb);
                bool named = v->verb[vl - 1] == '.';
                if (named ? len <= vl || memcmp(s, v->verb, vl) != 0
                          : len != vl || memcmp(s, v->verb, vl) != 0)
                        continue;
                *name = named ? s + vl : NULL;
                *name_len = named ? len - (uint32_t)vl : 0;
                return v;
        }
        return NULL;
}

/* A name for an entity created without one, owned by this worker so that
 * requests by that name come back here. */
static void dp_aq_name_make(struct dp_worker *w, const char *prefix, char *out, size_t len)
{
        for (;;) {
                uint64_t r;
                if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
                        r = shm_clock_ns() * 0x9e3779b97f4a7c15ull;
                int n = snprintf(out, len, "%s.%016llx", prefix, (unsigned long long)r);
                if (dp_engine_shard_of_name(w->engine, out, (uint32_t)n) == w->index)
                        return;
        }
}

/* Is the body exactly {"name":"<1..255 ASCII bytes, no escapes or
 * controls>"} (spaces allowed around the tokens)? Then *name points into
 * it. Anything else, UTF-8 included, is the JSON parser's to check. */
static bool dp_aq_name_only(const void *body, uint32_t len, const char **name,
                            uint32_t *name_len)
{
        static const char key[] = "\"name\"";
        const char *p = body, *end = p + len;
#define DP_AQ_WS() while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++
        DP_AQ_WS();
        if (p == end || *p++ != '{')
                return false;
        DP_AQ_WS();
        if ((size_t)(end - p) < sizeof(key) - 1 || memcmp(p, key, sizeof(key) - 1) != 0)
                return false;
        p += sizeof(key) - 1;
        DP_AQ_WS();
        if (p == end || *p++ != ':')
                return false;
        DP_AQ_WS();
        if (p == end || *p++ != '"')
                return false;
        const char *s = p;
        while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20 &&
               (unsigned char)*p < 0x80)
                p++;
        if (p == end || *p != '"' || p == s || p - s > DP_CMD_NAME_MAX)
                return false;
        const char *e = p++;
        DP_AQ_WS();
        if (p == end || *p++ != '}')
                return false;
        DP_AQ_WS();
#undef DP_AQ_WS
        if (p != end)
                return false;
        *name = s;
        *name_len = (uint32_t)(e - s);
        return true;
}

void dp_nats_aq_exec(struct dp_worker *w, const struct dp_msg_in *m)
{
        struct dp_aq_req r = { .w = w, .m = m };
        const struct dp_aq_verb *v = dp_aq_verb_of(m->subject, m->subject_len, &r.name,
                                                   &r.name_len);
        if (v == NULL) {
                dp_aq_answer(w, m, dp_aq_fail("UNKNOWN_SUBJECT", "no $AQ request is called %.*s",
                                              m->subject, m->subject_len));
                return;
        }
        /* The commonest body, a create's {"name":"..."} alone, is read here;
         * anything else goes through the JSON parser. */
        bool name_only = r.name == NULL && v->fn != dp_aq_info &&
                         dp_aq_name_only(m->payload, m->payload_len, &r.name, &r.name_len);
        if (v->json_body && m->payload_len != 0 && !name_only) {
                r.body = json_loadb(m->payload, m->payload_len, 0, NULL);
                if (!json_is_object(r.body)) {
                        json_decref(r.body);
                        dp_aq_answer(w, m, dp_aq_msg("BAD_REQUEST", "the body is not a JSON object"));
                        return;
                }
        }
        /* Creates name their entity in the body, or get a name made here. */
        char made[64];
        const char *named = NULL;
        if (r.name == NULL && v->fn != dp_aq_info) {
                if (dp_aq_str(r.body, "name", &named) != 0 ||
                    (named != NULL && (named[0] == '\0' || strlen(named) > DP_CMD_NAME_MAX))) {
                        json_decref(r.body);
                        dp_aq_answer(w, m, dp_aq_msg("BAD_REQUEST", "name: 1 to 255 bytes"));
                        return;
                }
                if (named == NULL)
                        dp_aq_name_make(w, v->fn == dp_aq_channel_open ? "ch"
                                           : v->fn == dp_aq_log_create ? "log" : "mbx",
                                        made, sizeof(made));
                r.name = named != NULL ? named : made;
                r.name_len = (uint32_t)strlen(r.name);
        }
        /* An answer that says a disk entity's records were taken waits for
         * them to be as durable as their sync asks. */
        dp_disk_request_begin(w->disk);
        json_t *a = v->fn(&r);
        struct dp_disk_wait wait;
        bool waits = dp_disk_request_end(w->disk, &wait);
        if (a != NULL)
                dp_aq_answer_after(w, m, a, waits ? &wait : NULL);
        json_decref(r.body);
}

/* The verb of a request and the name it carries when that is cheap to
 * read: the subject's, or a name-only body's (NULL otherwise: no name, or
 * a body for the JSON parser). A channel end's "<id>.<end>" gives the id. */
static const struct dp_aq_verb *dp_aq_target(const struct dp_msg_in *m, const char **name,
                                             uint32_t *name_len)
{
        const struct dp_aq_verb *v = dp_aq_verb_of(m->subject, m->subject_len, name, name_len);
        if (v == NULL || v->fn == dp_aq_info)
                return v;
        if (*name == NULL && !dp_aq_name_only(m->payload, m->payload_len, name, name_len))
                *name = NULL;
        else if (v->fn == dp_aq_channel_send || v->fn == dp_aq_channel_fetch)
                *name_len = *name_len >= 2 ? *name_len - 2 : *name_len;
        return v;
}

/* The worker that executes a request: the owner of the name it carries. */
static uint32_t dp_aq_owner(struct dp_worker *w, const struct dp_msg_in *m)
{
        const char *name;
        uint32_t name_len;
        if (w->workers == 1)
                return w->index;
        const struct dp_aq_verb *v = dp_aq_target(m, &name, &name_len);
        if (v == NULL)
                return w->index;
        if (name != NULL)
                return dp_engine_shard_of_name(w->engine, name, name_len);
        /* A create that names its entity in a body with more in it. */
        json_t *body = json_loadb(m->payload, m->payload_len, 0, NULL);
        const char *named = NULL;
        uint32_t owner = w->index;
        if (dp_aq_str(body, "name", &named) == 0 && named != NULL && named[0] != '\0')
                owner = dp_engine_shard_of_name(w->engine, named, (uint32_t)strlen(named));
        json_decref(body);
        return owner;
}

void dp_nats_aq_prefetch(struct dp_worker *w, const struct dp_msg_in *m)
{
        const char *name;
        uint32_t name_len;
        const struct dp_aq_verb *v = dp_aq_target(m, &name, &name_len);
        /* A channel end's entity is not named by the id alone. */
        if (v == NULL || name == NULL || v->fn == dp_aq_channel_send ||
            v->fn == dp_aq_channel_fetch)
                return;
        if (w->workers == 1 || dp_engine_shard_of_name(w->engine, name, name_len) == w->index)
                dp_table_prefetch(&w->shard.table, name, name_len);
}

void dp_nats_aq_request(struct dp_worker *w, const struct dp_msg_in *m)
{
        uint32_t owner = dp_aq_owner(w, m);
        if (owner == w->index) {
                dp_nats_aq_exec(w, m);
                return;
        }
        int rc = dp_worker_forward_msg(w, owner, m, DP_REC_MESH_AQ, DP_REC_MESH_AQ_REF);
        if (rc == -ENOBUFS)
                dp_aq_answer(w, m, dp_aq_msg("BUSY", "the owner of this name is busy: retry"));
        else if (rc != 0)
                dp_aq_answer(w, m, dp_aq_msg("TOO_LARGE", "the request is too large"));
}

bool dp_nats_aq_answer_parked(struct dp_worker *w, const struct dp_aq_parked *pk, bool expired)
{
        struct dp_fetched got[DP_FETCH_MAX];
        int n = dp_aq_fetch_now(w, pk->name, pk->name_len, pk->end, pk->batch, got);
        if (n == 0 && !expired)
                return false;
        struct dp_msg_in m = { .reply_subject = pk->reply, .reply_subject_len = pk->reply_len };
        struct dp_aq_req r = { .w = w, .m = &m, .name = pk->name, .name_len = pk->name_len };
        dp_aq_answer(w, &m, n < 0 ? dp_aq_err(&r, n) : dp_aq_msgs_json(w, got, n, false));
        return true;
}
