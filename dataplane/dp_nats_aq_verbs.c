/* dp_nats_aq_verbs.c - the $AQ verbs: what each request does on the owner's
 * shard (mailbox, latest, log, channel, info), the bodies they read, the
 * per-message option headers, and base64 for the payloads they hand out.
 * Routing and answers are dp_nats_aq.c's; docs/protocol.md lists the
 * subjects, bodies and errors.
 */
#include "dataplane/dp_nats_aq_pvt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dataplane/dp_cmd.h"
#include "dataplane/dp_mode.h"
#include "shm/shm_clock.h"

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
int dp_aq_str(const json_t *body, const char *key, const char **out)
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

json_t *dp_aq_info(struct dp_aq_req *r)
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
 * storage, sync, max_msgs, max_bytes. */
static json_t *dp_aq_create(struct dp_aq_req *r, uint8_t mode)
{
        uint64_t ttl_ms, max_msgs, max_bytes;
        const char *storage, *sync;
        if (dp_aq_uint(r->body, "ttl_ms", UINT32_MAX, 0, &ttl_ms) != 0 ||
            dp_aq_uint(r->body, "max_msgs", UINT32_MAX, 0, &max_msgs) != 0 ||
            dp_aq_uint(r->body, "max_bytes", UINT32_MAX, 0, &max_bytes) != 0 ||
            dp_aq_str(r->body, "storage", &storage) != 0 || dp_aq_str(r->body, "sync", &sync) != 0)
                return dp_aq_msg("BAD_REQUEST", "ttl_ms, max_msgs, max_bytes: "
                                  "non-negative integers; storage, sync: strings");
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
        if (sync != NULL && dp_sync_parse(sync, &o.sync) != 0)
                return dp_aq_fail("BAD_REQUEST", "sync '%.*s': always, batch or none", sync,
                                  strlen(sync));
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

json_t *dp_aq_log_create(struct dp_aq_req *r)
{
        return dp_aq_create(r, DP_MODE_LOG);
}

json_t *dp_aq_channel_open(struct dp_aq_req *r)
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
                                  "AQ-Storage: none, mem or disk; AQ-Sync: always, batch "
                                  "or none");
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

json_t *dp_aq_msgs_json(struct dp_worker *w, const struct dp_fetched *got, int n,
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
int dp_aq_fetch_now(struct dp_worker *w, const char *name, uint32_t name_len,
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
                /* The first put makes the key; AQ-Storage: disk makes it on
                 * the disk tier (with its AQ-Sync), so the value survives. */
                struct dp_msg_in opts;
                struct dp_create_opts o = { .mode = DP_MODE_LATEST, .storage = -1,
                                            .overflow = -1 };
                if (dp_aq_msg_opts(r->m, &opts) == 0 && opts.storage == DP_STORAGE_DISK) {
                        o.storage = DP_STORAGE_DISK;
                        o.storage_set = true;
                        o.sync = opts.sync;
                }
                int rc = dp_shard_create(&r->w->shard, &o, r->name, r->name_len, &h);
                if (rc != 0 && rc != -EEXIST)
                        return dp_aq_err(r, rc);
        }
        json_t *a = dp_aq_send_to(r, 0, NULL);
        if (!dp_aq_is_text(a))
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

json_t *dp_aq_channel_send(struct dp_aq_req *r)
{
        uint8_t end;
        if (dp_aq_channel_end(r, &end) != 0)
                return dp_aq_msg("BAD_REQUEST", "subject: $AQ.CHANNEL.SEND.<id>.<0|1>");
        return dp_aq_send_to(r, end, "seq");
}

json_t *dp_aq_channel_fetch(struct dp_aq_req *r)
{
        uint8_t end;
        if (dp_aq_channel_end(r, &end) != 0)
                return dp_aq_msg("BAD_REQUEST", "subject: $AQ.CHANNEL.FETCH.<id>.<0|1>");
        return dp_aq_fetch_end(r, end);
}

const struct dp_aq_verb dp_aq_verbs[] = {
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
const size_t dp_aq_verbs_count = sizeof(dp_aq_verbs) / sizeof(dp_aq_verbs[0]);

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
        v = dp_aq_header(m, "AQ-Sync", &len);
        if (v != NULL) {
                char sy[8];
                if (len == 0 || len >= sizeof(sy))
                        return -EINVAL;
                memcpy(sy, v, len);
                sy[len] = '\0';
                if (dp_sync_parse(sy, &out->sync) != 0)
                        return -EINVAL;
        }
        return 0;
}

