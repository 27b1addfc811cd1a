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
 */
#include "dataplane/dp_nats_aq.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "dataplane/dp_cmd.h"
#include "dataplane/dp_engine.h"
#include "dataplane/dp_mode.h"
#include "dataplane/dp_worker_pvt.h"
#include "shm/shm_clock.h"

#define DP_AQ_PREFIX "$AQ."
#define DP_AQ_PREFIX_LEN 4u
/* An answer is one message: the shards' largest buffers hold 1 MiB + 64 KiB. */
#define DP_AQ_ANSWER_MAX (1u << 20)

/* One request, as the owner executes it. */
struct dp_aq_req {
        struct dp_worker *w;
        const struct dp_msg_in *m;
        const char *name;   /* the entity: the subject after the verb */
        uint32_t name_len;
        json_t *body;       /* the JSON body of verbs that take one; else NULL */
};

typedef json_t *dp_aq_fn(struct dp_aq_req *r);

struct dp_aq_verb {
        const char *verb;   /* after "$AQ.": a whole token run, "." at the end: a name follows */
        bool json_body;     /* false: the payload is a message */
        dp_aq_fn *fn;
};

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
        default:
                return "BAD_REQUEST";
        }
}

static json_t *dp_aq_fail(const char *code, const char *fmt, const char *arg, size_t arg_len)
{
        char msg[320];
        snprintf(msg, sizeof(msg), fmt, (int)(arg_len > 200 ? 200 : arg_len), arg);
        return json_pack("{s:b,s:s,s:s}", "ok", 0, "error", code, "message", msg);
}

static json_t *dp_aq_msg(const char *code, const char *msg)
{
        return dp_aq_fail(code, "%.*s", msg, strlen(msg));
}

static json_t *dp_aq_err(const struct dp_aq_req *r, int err)
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

static json_t *dp_aq_ok(void)
{
        dp_aq_text_len = (size_t)snprintf(dp_aq_text, sizeof(dp_aq_text), "{\"ok\":true}");
        return DP_AQ_TEXT;
}

/* {"ok":true,"<key>":N} */
static json_t *dp_aq_ok_num(const char *key, uint64_t v)
{
        dp_aq_text_len = (size_t)snprintf(dp_aq_text, sizeof(dp_aq_text),
                                          "{\"ok\":true,\"%s\":%llu}", key, (unsigned long long)v);
        return DP_AQ_TEXT;
}

/* {"ok":true,"name":"<name>","mode":"<mode>"}, or NULL when it does not fit. */
static json_t *dp_aq_ok_named(const char *name, size_t len, const char *mode)
{
        dp_aq_text_len = (size_t)snprintf(dp_aq_text, sizeof(dp_aq_text), "{\"ok\":true,\"name\":\"");
        if (!dp_aq_text_str(name, len))
                return NULL;
        size_t rest = sizeof(dp_aq_text) - dp_aq_text_len;
        int n = snprintf(dp_aq_text + dp_aq_text_len, rest, "\",\"mode\":\"%s\"}", mode);
        if (n < 0 || (size_t)n >= rest)
                return NULL;
        dp_aq_text_len += (size_t)n;
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

static void dp_aq_answer(struct dp_worker *w, const struct dp_msg_in *m, json_t *a)
{
        if (a == DP_AQ_TEXT) {
                /* A copy: publishing may drain the mesh and so run other
                 * requests, which write the shared text buffer. */
                char text[sizeof(dp_aq_text)];
                size_t len = dp_aq_text_len;
                memcpy(text, dp_aq_text, len);
                dp_aq_publish(w, m, text, len);
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
                dp_aq_publish(w, m, text, strlen(text));
        free(text);
}

/* ---- base64 (RFC 4648, with padding) --------------------------------------- */

static json_t *dp_aq_base64(const uint8_t *p, uint32_t len)
{
        static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t out_len = 4 * (((size_t)len + 2) / 3);
        char *out = malloc(out_len + 1);
        if (out == NULL)
                return NULL;
        size_t o = 0;
        for (uint32_t i = 0; i < len; i += 3) {
                uint32_t v = (uint32_t)p[i] << 16;
                if (i + 1 < len)
                        v |= (uint32_t)p[i + 1] << 8;
                if (i + 2 < len)
                        v |= p[i + 2];
                out[o++] = t[v >> 18 & 63];
                out[o++] = t[v >> 12 & 63];
                out[o++] = i + 1 < len ? t[v >> 6 & 63] : '=';
                out[o++] = i + 2 < len ? t[v & 63] : '=';
        }
        json_t *s = json_stringn_nocheck(out, o);
        free(out);
        return s;
}

/* ---- bodies ----------------------------------------------------------------- */

/* A non-negative integer field (absent: def). -EINVAL when not one. */
static int dp_aq_uint(const json_t *body, const char *key, uint64_t max, uint64_t def,
                      uint64_t *out)
{
        const json_t *v = body != NULL ? json_object_get(body, key) : NULL;
        if (v == NULL) {
                *out = def;
                return 0;
        }
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            (uint64_t)json_integer_value(v) > max)
                return -EINVAL;
        *out = (uint64_t)json_integer_value(v);
        return 0;
}

/* A string field (absent: NULL). -EINVAL when not a string. */
static int dp_aq_str(const json_t *body, const char *key, const char **out)
{
        const json_t *v = body != NULL ? json_object_get(body, key) : NULL;
        *out = NULL;
        if (v == NULL)
                return 0;
        if (!json_is_string(v))
                return -EINVAL;
        *out = json_string_value(v);
        return 0;
}

/* ---- handlers ---------------------------------------------------------------- */

static json_t *dp_aq_info(struct dp_aq_req *r)
{
        return json_pack("{s:b,s:s,s:s,s:i,s:i}", "ok", 1, "server", "atomq", "version",
                         ATOMQ_VERSION, "workers", (int)r->w->workers, "worker",
                         (int)r->w->index);
}

static int dp_aq_find(struct dp_aq_req *r, uint64_t *h)
{
        return dp_table_find(&r->w->shard.table, r->name, r->name_len, h);
}

/* create: mode, and the body's name (or the one the router made), ttl_ms,
 * storage, max_msgs, max_bytes. */
static json_t *dp_aq_create(struct dp_aq_req *r, uint8_t mode)
{
        uint64_t ttl_ms, max_msgs, max_bytes;
        const char *storage;
        if (dp_aq_uint(r->body, "ttl_ms", UINT32_MAX, 0, &ttl_ms) != 0 ||
            dp_aq_uint(r->body, "max_msgs", UINT32_MAX, 0, &max_msgs) != 0 ||
            dp_aq_uint(r->body, "max_bytes", UINT32_MAX, 0, &max_bytes) != 0 ||
            dp_aq_str(r->body, "storage", &storage) != 0)
                return dp_aq_msg("BAD_REQUEST", "ttl_ms, max_msgs, max_bytes: "
                                  "non-negative integers; storage: a string");
        struct dp_create_opts o = { .mode = mode, .storage = -1, .overflow = -1,
                                    .ttl_ms = (uint32_t)ttl_ms,
                                    .max_msgs = (uint32_t)max_msgs,
                                    .max_bytes = (uint32_t)max_bytes };
        uint8_t st;
        if (storage != NULL) {
                if (dp_storage_parse(storage, &st) != 0)
                        return dp_aq_fail("BAD_REQUEST", "storage '%.*s': none, mem or disk",
                                          storage, strlen(storage));
                o.storage = (int8_t)st;
                o.storage_set = true;
        }
        uint64_t h;
        int rc = dp_shard_create(&r->w->shard, &o, r->name, r->name_len, &h);
        if (rc != 0)
                return dp_aq_err(r, rc);
        json_t *a = dp_aq_ok_named(r->name, r->name_len, dp_modes[mode].name);
        return a != NULL ? a
                         : json_pack("{s:b,s:s%,s:s}", "ok", 1, "name", r->name,
                                     (size_t)r->name_len, "mode", dp_modes[mode].name);
}

static json_t *dp_aq_mailbox_create(struct dp_aq_req *r)
{
        return dp_aq_create(r, DP_MODE_MAILBOX);
}

static json_t *dp_aq_log_create(struct dp_aq_req *r)
{
        return dp_aq_create(r, DP_MODE_LOG);
}

static json_t *dp_aq_channel_open(struct dp_aq_req *r)
{
        return dp_aq_create(r, DP_MODE_CHANNEL);
}

static json_t *dp_aq_destroy(struct dp_aq_req *r)
{
        uint64_t h;
        int rc = dp_aq_find(r, &h);
        if (rc == 0)
                rc = dp_shard_destroy(&r->w->shard, h);
        return rc == 0 ? dp_aq_ok() : dp_aq_err(r, rc);
}

/* The message of a send: the request's payload and headers; the headers
 * AQ-TTL-MS and AQ-Storage are not parsed here (per-message options
 * travel in the NATS header block and are read by dp_aq_msg_opts). */
static int dp_aq_msg_opts(const struct dp_msg_in *m, struct dp_msg_in *out);

/* key: the answer's field for the sequence ("seq", a log's "offset"), or
 * NULL for a bare ok. */
static json_t *dp_aq_send_to(struct dp_aq_req *r, uint8_t end, const char *key)
{
        uint64_t h, seq = 0;
        struct dp_msg_in msg;
        int rc = dp_aq_msg_opts(r->m, &msg);
        if (rc != 0)
                return dp_aq_msg("BAD_REQUEST", "AQ-TTL-MS: a number of ms; "
                                  "AQ-Storage: none, mem or disk");
        msg.subject = r->name;
        msg.subject_len = r->name_len;
        msg.end = end;
        rc = dp_aq_find(r, &h);
        if (rc != 0)
                return dp_aq_err(r, rc);
        rc = dp_shard_send(&r->w->shard, h, &msg, &seq);
        /* The entity is there: -ENOENT means storage none and nobody
         * attached to take the message (it is dropped, as broadcast). */
        if (rc == -ENOENT)
                return dp_aq_fail("NO_RECEIVER", "%.*s: storage none and nobody attached to "
                                  "take the message", r->name, r->name_len);
        if (rc != 0)
                return dp_aq_err(r, rc);
        return key != NULL ? dp_aq_ok_num(key, seq) : dp_aq_ok();
}

static json_t *dp_aq_mailbox_send(struct dp_aq_req *r)
{
        return dp_aq_send_to(r, 0, "seq");
}

static json_t *dp_aq_log_append(struct dp_aq_req *r)
{
        /* A log's sequence is its offset. */
        return dp_aq_send_to(r, 0, "offset");
}

/* One message handed out, as JSON; its buffer reference is put. */
static json_t *dp_aq_msg_json(struct dp_worker *w, const struct dp_fetched *f, bool offset)
{
        struct dp_msg_view v;
        json_t *o = NULL;
        if (dp_shard_msg_view(&w->shard, f->buf, &v) == 0) {
                json_t *data = dp_aq_base64(v.payload, v.payload_len);
                o = json_pack("{s:I,s:o,s:i}", offset ? "offset" : "seq", (json_int_t)f->seq,
                              "data", data, "deliveries", (int)f->deliveries);
        }
        shm_slab_put(&w->shard.bufs, f->buf);
        return o;
}

static json_t *dp_aq_msgs_json(struct dp_worker *w, const struct dp_fetched *got, int n,
                               bool offset)
{
        json_t *arr = json_array();
        for (int i = 0; i < n; i++) {
                json_t *o = dp_aq_msg_json(w, &got[i], offset);
                if (o != NULL)
                        json_array_append_new(arr, o);
        }
        return json_pack("{s:b,s:o}", "ok", 1, "messages", arr);
}

/* Fetch by name (mailbox, or a channel end: end is 1 + the end). Returns
 * the count, or -errno. */
static int dp_aq_fetch_now(struct dp_worker *w, const char *name, uint32_t name_len,
                           uint8_t end, uint32_t batch, struct dp_fetched *got)
{
        uint64_t h;
        int rc = dp_table_find(&w->shard.table, name, name_len, &h);
        return rc != 0 ? rc : dp_shard_fetch(&w->shard, h, end, got, batch);
}

static json_t *dp_aq_fetch_end(struct dp_aq_req *r, uint8_t end)
{
        uint64_t batch, wait_ms;
        if (dp_aq_uint(r->body, "batch", DP_FETCH_MAX, 1, &batch) != 0 || batch == 0 ||
            dp_aq_uint(r->body, "wait_ms", DP_AQ_WAIT_MS_MAX, 0, &wait_ms) != 0)
                return dp_aq_msg("BAD_REQUEST", "batch: 1..64; wait_ms: 0..60000");
        struct dp_fetched got[DP_FETCH_MAX];
        int n = dp_aq_fetch_now(r->w, r->name, r->name_len, end, (uint32_t)batch, got);
        if (n < 0)
                return dp_aq_err(r, n);
        if (n == 0 && wait_ms > 0 && r->m->reply_subject_len != 0 && r->w->nats != NULL &&
            dp_nats_aq_park(r->w->nats, r->name, r->name_len, end, (uint32_t)batch,
                            r->m->reply_subject, r->m->reply_subject_len,
                            shm_clock_ns() + wait_ms * 1000000) == 0)
                return NULL; /* answered later */
        return dp_aq_msgs_json(r->w, got, n, false);
}

static json_t *dp_aq_mailbox_fetch(struct dp_aq_req *r)
{
        return dp_aq_fetch_end(r, 0);
}

static json_t *dp_aq_mailbox_ack(struct dp_aq_req *r)
{
        uint64_t seq, h;
        if (dp_aq_uint(r->body, "seq", UINT64_MAX >> 1, UINT64_MAX, &seq) != 0 ||
            seq == UINT64_MAX)
                return dp_aq_msg("BAD_REQUEST", "seq: the message's, from fetch");
        int rc = dp_aq_find(r, &h);
        if (rc != 0)
                return dp_aq_err(r, rc);
        rc = dp_shard_ack(&r->w->shard, h, seq);
        if (rc == -ENOENT)
                return dp_aq_fail("NOT_FOUND", "%.*s: no such message in flight", r->name,
                                  r->name_len);
        return rc == 0 ? dp_aq_ok() : dp_aq_err(r, rc);
}

/* latest: every key is an entity of mode latest, made by its first put;
 * each put is also published on $AQ.LATEST.WATCH.<key> for watchers. */
static json_t *dp_aq_latest_put(struct dp_aq_req *r)
{
        uint64_t h;
        if (dp_aq_find(r, &h) == -ENOENT) {
                struct dp_create_opts o = { .mode = DP_MODE_LATEST, .storage = -1,
                                            .overflow = -1 };
                int rc = dp_shard_create(&r->w->shard, &o, r->name, r->name_len, &h);
                if (rc != 0 && rc != -EEXIST)
                        return dp_aq_err(r, rc);
        }
        json_t *a = dp_aq_send_to(r, 0, NULL);
        if (a != DP_AQ_TEXT)
                return a; /* an error */
        char subject[ATOMQ_FRAME_SUBJECT_MAX + 1];
        int len = snprintf(subject, sizeof(subject), "$AQ.LATEST.WATCH.%.*s", (int)r->name_len,
                           r->name);
        if (len > 0 && (size_t)len < sizeof(subject)) {
                struct dp_msg_in watch = *r->m;
                watch.subject = subject;
                watch.subject_len = (uint32_t)len;
                watch.reply_subject = NULL;
                watch.reply_subject_len = 0;
                (void)dp_worker_publish_msg(r->w, &watch, 0, 0);
        }
        /* Written again: the publish may have answered other requests in
         * between (a drained mesh ring), with the same text buffer. */
        return dp_aq_ok();
}

static json_t *dp_aq_latest_get(struct dp_aq_req *r)
{
        uint64_t h;
        struct dp_fetched f;
        int rc = dp_aq_find(r, &h);
        if (rc == 0)
                rc = dp_shard_get(&r->w->shard, h, r->name, r->name_len, &f);
        if (rc < 0)
                return dp_aq_err(r, rc);
        struct dp_msg_view v;
        json_t *data = NULL;
        if (dp_shard_msg_view(&r->w->shard, f.buf, &v) == 0)
                data = dp_aq_base64(v.payload, v.payload_len);
        shm_slab_put(&r->w->shard.bufs, f.buf);
        return json_pack("{s:b,s:o}", "ok", 1, "data", data != NULL ? data : json_null());
}

static json_t *dp_aq_log_read(struct dp_aq_req *r)
{
        uint64_t offset, max, h;
        const char *group;
        if (dp_aq_uint(r->body, "offset", UINT64_MAX >> 1, 0, &offset) != 0 ||
            dp_aq_uint(r->body, "max", DP_FETCH_MAX, 16, &max) != 0 || max == 0 ||
            dp_aq_str(r->body, "group", &group) != 0)
                return dp_aq_msg("BAD_REQUEST", "offset: >= 0; max: 1..64; group: "
                                  "a string");
        struct dp_fetched got[DP_FETCH_MAX];
        int n = dp_aq_find(r, &h);
        if (n == 0)
                n = group != NULL ? dp_shard_read_group(&r->w->shard, h, group, got, (unsigned)max)
                                  : dp_shard_read(&r->w->shard, h, offset, got, (unsigned)max);
        return n < 0 ? dp_aq_err(r, n) : dp_aq_msgs_json(r->w, got, n, true);
}

static json_t *dp_aq_log_commit(struct dp_aq_req *r)
{
        uint64_t offset, h;
        const char *group;
        if (dp_aq_uint(r->body, "offset", UINT64_MAX >> 1, 0, &offset) != 0 ||
            dp_aq_str(r->body, "group", &group) != 0 || group == NULL || group[0] == '\0')
                return dp_aq_msg("BAD_REQUEST", "group: a name; offset: the next "
                                  "offset it will read");
        int rc = dp_aq_find(r, &h);
        if (rc == 0)
                rc = dp_shard_commit(&r->w->shard, h, group, offset);
        return rc == 0 ? dp_aq_ok() : dp_aq_err(r, rc);
}

/* Channel ends: the name is "<id>.<end>", end 0 or 1. */
static int dp_aq_channel_end(struct dp_aq_req *r, uint8_t *end)
{
        if (r->name_len < 3 || r->name[r->name_len - 2] != '.' ||
            (r->name[r->name_len - 1] != '0' && r->name[r->name_len - 1] != '1'))
                return -EINVAL;
        *end = (uint8_t)(1 + (r->name[r->name_len - 1] - '0'));
        r->name_len -= 2;
        return 0;
}

static json_t *dp_aq_channel_send(struct dp_aq_req *r)
{
        uint8_t end;
        if (dp_aq_channel_end(r, &end) != 0)
                return dp_aq_msg("BAD_REQUEST", "subject: $AQ.CHANNEL.SEND.<id>.<0|1>");
        return dp_aq_send_to(r, end, "seq");
}

static json_t *dp_aq_channel_fetch(struct dp_aq_req *r)
{
        uint8_t end;
        if (dp_aq_channel_end(r, &end) != 0)
                return dp_aq_msg("BAD_REQUEST", "subject: $AQ.CHANNEL.FETCH.<id>.<0|1>");
        return dp_aq_fetch_end(r, end);
}

static const struct dp_aq_verb dp_aq_verbs[] = {
        { "INFO", true, dp_aq_info },
        { "MAILBOX.CREATE", true, dp_aq_mailbox_create },
        { "MAILBOX.DESTROY.", true, dp_aq_destroy },
        { "MAILBOX.SEND.", false, dp_aq_mailbox_send },
        { "MAILBOX.FETCH.", true, dp_aq_mailbox_fetch },
        { "MAILBOX.ACK.", true, dp_aq_mailbox_ack },
        { "LATEST.PUT.", false, dp_aq_latest_put },
        { "LATEST.GET.", true, dp_aq_latest_get },
        { "LOG.CREATE", true, dp_aq_log_create },
        { "LOG.APPEND.", false, dp_aq_log_append },
        { "LOG.READ.", true, dp_aq_log_read },
        { "LOG.COMMIT.", true, dp_aq_log_commit },
        { "LOG.DESTROY.", true, dp_aq_destroy },
        { "CHANNEL.OPEN", true, dp_aq_channel_open },
        { "CHANNEL.CLOSE.", true, dp_aq_destroy },
        { "CHANNEL.SEND.", false, dp_aq_channel_send },
        { "CHANNEL.FETCH.", true, dp_aq_channel_fetch },
};
#define DP_AQ_VERBS (sizeof(dp_aq_verbs) / sizeof(dp_aq_verbs[0]))

/* ---- per-message options ------------------------------------------------------ */

/* The value of header name in a NATS/1.0 block, or NULL. */
static const char *dp_aq_header(const struct dp_msg_in *m, const char *name, uint32_t *len)
{
        const char *p = m->headers, *end = p != NULL ? p + m->headers_len : NULL;
        size_t nl = strlen(name);
        while (p != NULL && p < end) {
                const char *eol = memchr(p, '\n', (size_t)(end - p));
                if (eol == NULL)
                        break;
                if ((size_t)(eol - p) > nl + 1 && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
                        const char *v = p + nl + 1;
                        while (v < eol && (*v == ' ' || *v == '\t'))
                                v++;
                        const char *ve = eol;
                        if (ve > v && ve[-1] == '\r')
                                ve--;
                        *len = (uint32_t)(ve - v);
                        return v;
                }
                p = eol + 1;
        }
        return NULL;
}

static int dp_aq_msg_opts(const struct dp_msg_in *m, struct dp_msg_in *out)
{
        *out = (struct dp_msg_in){ .payload = m->payload, .payload_len = m->payload_len,
                                   .storage = -1 };
        uint32_t len;
        const char *v = dp_aq_header(m, "AQ-TTL-MS", &len);
        if (v != NULL) {
                char num[16];
                char *e;
                if (len == 0 || len >= sizeof(num))
                        return -EINVAL;
                memcpy(num, v, len);
                num[len] = '\0';
                unsigned long ttl = strtoul(num, &e, 10);
                if (*e != '\0' || num[0] == '-' || ttl > UINT32_MAX)
                        return -EINVAL;
                out->ttl_ms = (uint32_t)ttl;
        }
        v = dp_aq_header(m, "AQ-Storage", &len);
        if (v != NULL) {
                char st[8];
                uint8_t s;
                if (len == 0 || len >= sizeof(st))
                        return -EINVAL;
                memcpy(st, v, len);
                st[len] = '\0';
                if (dp_storage_parse(st, &s) != 0)
                        return -EINVAL;
                out->storage = (int8_t)s;
        }
        return 0;
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
        for (size_t i = 0; i < DP_AQ_VERBS; i++) {
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

/* Is the body exactly {"name":"<1..255 bytes, no escapes or controls>"}
 * (spaces allowed around the tokens)? Then *name points into it. */
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
        while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
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
        json_t *a = v->fn(&r);
        if (a != NULL)
                dp_aq_answer(w, m, a);
        json_decref(r.body);
}

/* The worker that executes a request: the owner of the name it carries. */
static uint32_t dp_aq_owner(struct dp_worker *w, const struct dp_msg_in *m)
{
        const char *name;
        uint32_t name_len;
        const struct dp_aq_verb *v = dp_aq_verb_of(m->subject, m->subject_len, &name, &name_len);
        if (v == NULL || w->workers == 1)
                return w->index;
        if (name == NULL) {
                /* A create names its entity in the body, if at all. */
                if (dp_aq_name_only(m->payload, m->payload_len, &name, &name_len))
                        return dp_engine_shard_of_name(w->engine, name, name_len);
                json_t *body = json_loadb(m->payload, m->payload_len, 0, NULL);
                const char *named = NULL;
                uint32_t owner = w->index;
                if (dp_aq_str(body, "name", &named) == 0 && named != NULL && named[0] != '\0')
                        owner = dp_engine_shard_of_name(w->engine, named, (uint32_t)strlen(named));
                json_decref(body);
                return owner;
        }
        /* A channel end names "<id>.<end>": the id decides. */
        if (v->fn == dp_aq_channel_send || v->fn == dp_aq_channel_fetch)
                name_len = name_len >= 2 ? name_len - 2 : name_len;
        return dp_engine_shard_of_name(w->engine, name, name_len);
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
