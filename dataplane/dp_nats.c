/* dp_nats.c - NATS sessions on a worker: the greeting, the client's
 * operations, deliveries as MSG/HMSG, server PINGs, and the limits that
 * end a connection. Wire behaviour follows nats-server (v2.9), which was
 * asked whenever the protocol text left a doubt:
 *
 *  - INFO first, then the client's CONNECT. Options it leaves out, and
 *    operations before it, take nats-server's defaults: verbose and
 *    pedantic on, echo on, headers and no_responders off (clients send
 *    verbose false explicitly);
 *  - protocol violations (the parser's errors) get -ERR '<text>' and the
 *    connection is closed after the error is sent; a malformed argument
 *    (a size that is not a number, a wrong count) closes it silently, as
 *    nats-server does;
 *  - a subscription with a bad subject gets -ERR 'Invalid Subject' and the
 *    connection stays; a publish to a subject with wildcards or empty
 *    tokens gets -ERR 'Invalid Publish Subject' and stays;
 *  - verbose clients get +OK after each CONNECT, PUB, HPUB, SUB and UNSUB;
 *  - a client with headers and no_responders that publishes with a reply
 *    subject nobody listens on gets a status message 503 on that subject.
 *
 * Output goes through the nic's per-connection buffer; a connection whose
 * unsent output would pass max_pending is a slow consumer: cut off (its
 * buffer is not sent) and counted, as nats-server does.
 */
#include "dataplane/dp_nats_pvt.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "dataplane/dp_groups.h"
#include "dataplane/dp_shard_pvt.h"
#include "dataplane/dp_subject.h"
#include "dataplane/dp_worker_pvt.h"
#include "shm/shm_clock.h"
#include "shm/shm_log.h"

/* Connection ids have bit 30 clear (agents' endpoints set it). */
#define DP_NATS_ENDPOINT_AGENT_BIT (1u << 30)
/* The status message of no responders, as nats-server sends it. */
static const char dp_nats_503[] = "NATS/1.0 503\r\n\r\n";
/* Headroom for a MSG/HMSG control line beyond subject, sid and reply:
 * "HMSG " + 3 spaces + two 10-digit sizes + CRLF, with room to spare. */
#define DP_NATS_MSG_LINE_EXTRA 48u

bool dp_nats_endpoint_is(uint32_t endpoint)
{
        return (endpoint & DP_NATS_ENDPOINT_AGENT_BIT) == 0 && endpoint != 0;
}

static struct dp_nats_conn *dp_nats_conn_of(struct dp_nats *n, uint32_t id)
{
        uint32_t slot = id & (NIC_CONNS_MAX - 1);
        if (slot >= n->cfg.max_conns || n->conns[slot].id != id)
                return NULL;
        return &n->conns[slot];
}

static void dp_nats_send(struct dp_nats *n, struct dp_nats_conn *c, const char *s, size_t len)
{
        if (c->closing)
                return;
        if (nic_uring_send(n->nic, c->id, s, len) == -ENOBUFS) {
                dp_counter_inc(&n->stats->slow_consumers);
                c->closing = true;
                nic_uring_close(n->nic, c->id, false);
        }
}

/* -ERR 'text', and the connection goes after it (close) or stays. */
static void dp_nats_err(struct dp_nats *n, struct dp_nats_conn *c, const char *text, bool close)
{
        char line[128];
        int len = snprintf(line, sizeof(line), "-ERR '%s'\r\n", text);
        dp_nats_send(n, c, line, (size_t)len);
        if (close && !c->closing) {
                dp_counter_inc(&n->stats->protocol_errors);
                c->closing = true;
                nic_uring_close(n->nic, c->id, true);
        }
}

static void dp_nats_ok(struct dp_nats *n, struct dp_nats_conn *c)
{
        if (c->verbose)
                dp_nats_send(n, c, "+OK\r\n", 5);
}

static char *dp_nats_put(char *p, const void *s, size_t len)
{
        memcpy(p, s, len);
        return p + len;
}

/* MSG <subject> <sid> [reply] <size>, or HMSG with the header size first:
 * what nats-server writes, headers only for clients that asked for them. */
static void dp_nats_write_msg(struct dp_nats *n, struct dp_nats_conn *c,
                              const struct dp_nats_sub *s, const struct dp_msg_view *v)
{
        uint32_t hlen = c->headers ? v->headers_len : 0;
        size_t need = DP_NATS_MSG_LINE_EXTRA + v->subject_len + s->sid_len +
                      v->reply_subject_len + hlen + v->payload_len;
        int err = 0;
        char *start = nic_uring_send_reserve(n->nic, c->id, need, &err);
        if (start == NULL) {
                if (err == -ENOBUFS) {
                        dp_counter_inc(&n->stats->slow_consumers);
                        c->closing = true;
                        nic_uring_close(n->nic, c->id, false);
                }
                return;
        }
        char *p = hlen != 0 ? dp_nats_put(start, "HMSG ", 5) : dp_nats_put(start, "MSG ", 4);
        p = dp_nats_put(p, v->subject, v->subject_len);
        *p++ = ' ';
        p = dp_nats_put(p, s->sid, s->sid_len);
        *p++ = ' ';
        if (v->reply_subject_len != 0) {
                p = dp_nats_put(p, v->reply_subject, v->reply_subject_len);
                *p++ = ' ';
        }
        if (hlen != 0) {
                p += shm_u64_dec(p, hlen);
                *p++ = ' ';
        }
        p += shm_u64_dec(p, (uint64_t)hlen + v->payload_len);
        p = dp_nats_put(p, "\r\n", 2);
        p = dp_nats_put(p, v->headers, hlen);
        p = dp_nats_put(p, v->payload, v->payload_len);
        p = dp_nats_put(p, "\r\n", 2);
        nic_uring_send_commit(n->nic, c->id, (size_t)(p - start));
        dp_counter_inc(&n->stats->msgs_out);
}

static void dp_nats_doom(struct dp_nats *n, struct dp_nats_conn *c, struct dp_nats_sub *s)
{
        s->doomed = true;
        if (!c->on_doomed_list) {
                c->on_doomed_list = true;
                c->next_doomed = n->doomed_head;
                n->doomed_head = (uint32_t)(c - n->conns) + 1;
        }
}

void dp_nats_deliver(struct dp_nats *n, const struct dp_dispatch *d)
{
        struct dp_nats_conn *c = dp_nats_conn_of(n, d->endpoint);
        if (c == NULL || c->closing || d->sid >= c->subs_cap || d->buf == SHM_BUF_NONE)
                return;
        struct dp_nats_sub *s = &c->subs[d->sid];
        if (!s->live || s->doomed)
                return;
        if (!c->echo && d->endpoint == n->w->publish_origin)
                return;
        struct dp_msg_view v;
        if (dp_shard_msg_view(&n->w->shard, d->buf, &v) != 0)
                return;
        dp_nats_write_msg(n, c, s, &v);
        if (s->max != 0 && ++s->delivered >= s->max)
                dp_nats_doom(n, c, s);
}

/* Unsubscribes sub i of c from the shard and frees it. */
static void dp_nats_unsub_one(struct dp_nats *n, struct dp_nats_conn *c, uint32_t i)
{
        (void)dp_shard_unsubscribe(&n->w->shard, c->subs[i].trie_id);
        if (c->subs[i].group != 0 && n->w->groups != NULL)
                dp_groups_member(n->w->groups, c->subs[i].group, n->w->index, -1);
        dp_nats_sub_drop(c, i);
}

/* Subscriptions that reached their max inside a publish go now, outside
 * the shard's match walk. */
static void dp_nats_reap_doomed(struct dp_nats *n)
{
        while (n->doomed_head != 0) {
                struct dp_nats_conn *c = &n->conns[n->doomed_head - 1];
                n->doomed_head = c->next_doomed;
                c->on_doomed_list = false;
                if (c->id == 0)
                        continue;
                for (uint32_t i = 0; i < c->subs_cap; i++)
                        if (c->subs[i].live && c->subs[i].doomed)
                                dp_nats_unsub_one(n, c, i);
        }
}

static bool dp_json_flag(const json_t *o, const char *key, bool def)
{
        const json_t *v = json_object_get(o, key);
        return json_is_boolean(v) ? json_is_true(v) : def;
}

/* Compares a secret in time that depends on the expected one's length
 * only, not on where the given one first differs. */
static bool dp_nats_secret_eq(const char *given, const char *want)
{
        size_t glen = given != NULL ? strlen(given) : 0, wlen = strlen(want);
        unsigned diff = glen != wlen;
        for (size_t i = 0; i < wlen; i++)
                diff |= (unsigned char)want[i] ^ (unsigned char)(i < glen ? given[i] : 0);
        return diff == 0;
}

static const char *dp_json_str(const json_t *o, const char *key)
{
        const json_t *v = json_object_get(o, key);
        return json_is_string(v) ? json_string_value(v) : NULL;
}

/* The credentials of a CONNECT against the configured ones. */
static bool dp_nats_auth_ok(const struct dp_nats_config *cfg, const json_t *o)
{
        if (cfg->auth_token[0] != '\0')
                return dp_nats_secret_eq(dp_json_str(o, "auth_token"), cfg->auth_token);
        /* Both compared, whatever the first says: no early exit to time. */
        bool user = dp_nats_secret_eq(dp_json_str(o, "user"), cfg->auth_user);
        bool pass = dp_nats_secret_eq(dp_json_str(o, "pass"), cfg->auth_pass);
        return user & pass;
}

static void dp_nats_connect(struct dp_nats *n, struct dp_nats_conn *c, const struct dp_nats_op *op)
{
        json_t *o = json_loadb(op->json, op->json_len, 0, NULL);
        if (!json_is_object(o)) {
                json_decref(o);
                dp_nats_err(n, c, "Parser Error", true);
                return;
        }
        if (!c->authed && !dp_nats_auth_ok(&n->cfg, o)) {
                json_decref(o);
                dp_counter_inc(&n->stats->auth_failures);
                dp_nats_err(n, c, "Authorization Violation", true);
                return;
        }
        c->authed = true;
        c->verbose = dp_json_flag(o, "verbose", true);
        c->echo = dp_json_flag(o, "echo", true);
        c->headers = dp_json_flag(o, "headers", false);
        c->no_responders = dp_json_flag(o, "no_responders", false);
        json_decref(o);
        /* nats-server refuses no_responders without headers the same way. */
        if (c->no_responders && !c->headers) {
                dp_nats_err(n, c, "No Responders Requires Headers Support", true);
                return;
        }
        dp_nats_ok(n, c);
}

/* The status message nats-server sends a requester nobody answers: to
 * its reply subject, whose subscription is on this shard (the requester is
 * our client). */
static void dp_nats_no_responders(struct dp_nats *n, const char *reply, uint32_t reply_len)
{
        struct dp_msg_in st = { .subject = reply, .subject_len = reply_len,
                                .headers = dp_nats_503, .headers_len = sizeof(dp_nats_503) - 1,
                                .storage = -1 };
        dp_counter_inc(&n->stats->no_responders);
        (void)dp_shard_publish(&n->w->shard, &st);
}

static struct dp_nats_nr dp_nats_nr_make(struct dp_nats *n, const char *reply, uint32_t len)
{
        struct dp_nats_nr r = { .pub_id = n->w->last_pub_id,
                                .deadline_ns = shm_clock_ns() + DP_NATS_NR_WAIT_NS,
                                .remaining = n->w->workers - 1, .reply_len = len };
        memcpy(r.reply, reply, len);
        return r;
}

void dp_nats_count_reply(struct dp_nats *n, uint64_t pub_id, uint32_t delivered)
{
        for (uint32_t i = 0; i < n->nr_count; i++) {
                struct dp_nats_nr *r = &n->nr[i];
                if (r->pub_id != pub_id)
                        continue;
                if (delivered == 0 && --r->remaining > 0)
                        return;
                if (delivered == 0)
                        dp_nats_no_responders(n, r->reply, r->reply_len);
                *r = n->nr[--n->nr_count];
                return;
        }
}

/* Requests whose counts did not all come back in time get no 503. */
static void dp_nats_nr_expire(struct dp_nats *n, uint64_t now_ns)
{
        for (uint32_t i = 0; i < n->nr_count;) {
                if (now_ns < n->nr[i].deadline_ns) {
                        i++;
                        continue;
                }
                n->nr[i] = n->nr[--n->nr_count];
        }
}

/* The message a PUB or HPUB publishes. */
static struct dp_msg_in dp_nats_pub_msg(const struct dp_nats_op *op)
{
        return (struct dp_msg_in){
                .subject = op->subject,
                .subject_len = op->subject_len,
                .headers = op->headers,
                .headers_len = op->headers_len,
                .payload = op->payload,
                .payload_len = op->payload_len,
                .storage = -1,
                .reply_subject = op->reply_len != 0 ? op->reply : NULL,
                .reply_subject_len = op->reply_len,
        };
}

static void dp_nats_pub(struct dp_nats *n, struct dp_nats_conn *c, const struct dp_nats_op *op)
{
        if (dp_subject_check(op->subject, op->subject_len, false) != 0 ||
            (op->reply_len != 0 && dp_subject_check(op->reply, op->reply_len, false) != 0)) {
                dp_nats_err(n, c, "Invalid Publish Subject", false);
                return;
        }
        struct dp_msg_in m = dp_nats_pub_msg(op);
        /* +OK before the deliveries it causes, as nats-server orders them. */
        dp_nats_ok(n, c);
        dp_counter_inc(&n->stats->msgs_in);
        if (dp_nats_aq_is(m.subject, m.subject_len)) {
                dp_counter_inc(&n->stats->aq_requests);
                dp_nats_aq_request(n->w, &m);
                return;
        }
        bool request = m.reply_subject_len != 0 && c->no_responders;
        bool gather = request && n->w->workers > 1;
        int rc = dp_worker_publish_msg(n->w, &m, c->id, gather ? DP_PUB_F_COUNT : 0);
        if (rc == -ENOBUFS)
                dp_counter_inc(&n->stats->publish_dropped);
        else if (rc == -EMSGSIZE)
                dp_nats_err(n, c, "Maximum Payload Violation", true);
        if (rc != 0 || !request)
                return;
        /* Nobody here took it: with one shard that is everybody; with more,
         * the others' counts decide (dp_nats_count_reply). */
        if (!gather)
                dp_nats_no_responders(n, m.reply_subject, m.reply_subject_len);
        else if (n->nr_count < DP_NATS_NR_MAX)
                n->nr[n->nr_count++] = dp_nats_nr_make(n, m.reply_subject, m.reply_subject_len);
}

static void dp_nats_sub(struct dp_nats *n, struct dp_nats_conn *c, const struct dp_nats_op *op)
{
        if (dp_subject_check(op->subject, op->subject_len, true) != 0 ||
            (op->queue_len != 0 && dp_subject_check(op->queue, op->queue_len, false) != 0)) {
                dp_nats_err(n, c, "Invalid Subject", false);
                return;
        }
        /* A sid already in use: nats-server keeps the first; so do we. */
        if (dp_nats_sub_find(c, op->sid, op->sid_len) >= 0) {
                dp_nats_ok(n, c);
                return;
        }
        int i = dp_nats_sub_add(c, op->sid, op->sid_len, n->cfg.max_subs);
        if (i == -EINVAL) {
                dp_nats_err(n, c, "Invalid Subscription ID", false);
                return;
        }
        if (i < 0) {
                dp_nats_err(n, c, "Maximum Subscriptions Exceeded", false);
                return;
        }
        /* Queue groups share the agents' group ids (atomq_subscribe). */
        uint32_t group = op->queue_len != 0 ? dp_hash32(op->queue, op->queue_len) | 1u : 0;
        uint32_t trie_id;
        int rc = dp_shard_subscribe(&n->w->shard, op->subject, op->subject_len, group, c->id,
                                    (uint32_t)i, 0, &trie_id);
        if (rc != 0) {
                dp_nats_sub_drop(c, (uint32_t)i);
                dp_nats_err(n, c, "Maximum Subscriptions Exceeded", false);
                return;
        }
        c->subs[i].trie_id = trie_id;
        c->subs[i].group = group;
        if (group != 0 && n->w->groups != NULL)
                dp_groups_member(n->w->groups, group, n->w->index, 1);
        dp_nats_ok(n, c);
}

static void dp_nats_unsub(struct dp_nats *n, struct dp_nats_conn *c, const struct dp_nats_op *op)
{
        int i = dp_nats_sub_find(c, op->sid, op->sid_len);
        /* Unknown sids are ignored, as nats-server does. */
        if (i >= 0) {
                struct dp_nats_sub *s = &c->subs[i];
                if (op->max_msgs != 0 && s->delivered < op->max_msgs)
                        s->max = op->max_msgs;
                else
                        dp_nats_unsub_one(n, c, (uint32_t)i);
        }
        dp_nats_ok(n, c);
}

/* A PONG promises the client that what was published before its PING has
 * been handled, as one nats-server does. Publishes from other workers that
 * reached our inbound mesh rings before the PING must be delivered first:
 * drain them (bounded: the rings hold a bounded number of records). */
static void dp_nats_ping_barrier(struct dp_nats *n)
{
        for (int i = 0; i < 1024 && n->w->workers > 1 && !n->w->mesh_draining; i++)
                if (dp_worker_mesh_drain(n->w) <= 0)
                        break;
}

static void dp_nats_op(struct dp_nats *n, struct dp_nats_conn *c, const struct dp_nats_op *op)
{
        /* With credentials configured, nothing but CONNECT comes first. */
        if (!c->authed && op->kind != DP_NATS_CONNECT) {
                dp_counter_inc(&n->stats->auth_failures);
                dp_nats_err(n, c, "Authorization Violation", true);
                return;
        }
        switch (op->kind) {
        case DP_NATS_CONNECT:
                dp_nats_connect(n, c, op);
                break;
        case DP_NATS_PUB:
        case DP_NATS_HPUB:
                dp_nats_pub(n, c, op);
                break;
        case DP_NATS_SUB:
                dp_nats_sub(n, c, op);
                break;
        case DP_NATS_UNSUB:
                dp_nats_unsub(n, c, op);
                break;
        case DP_NATS_PING:
                dp_nats_ping_barrier(n);
                dp_nats_send(n, c, "PONG\r\n", 6);
                break;
        case DP_NATS_PONG:
                c->pings_out = 0;
                break;
        case DP_NATS_OK:
        case DP_NATS_ERR:
                break;
        }
}

/* Pipelined publishes are parsed up to DP_NATS_AHEAD ahead of their
 * handling, so that what each will touch (the table entry an $AQ request
 * names) is on its way from memory when its turn comes: a create or
 * destroy through $AQ otherwise waits on that miss. Handling stays in
 * arrival order, and only publishes whose bytes lie in the read itself are
 * held back: one the parser gathered into its own buffer is handled before
 * the next parse reuses that buffer. */
struct dp_nats_ahead {
        struct dp_nats_op op[DP_NATS_AHEAD];
        uint32_t count;
};

static bool dp_nats_op_within(const struct dp_nats_op *op, const uint8_t *base, size_t len)
{
        const uint8_t *s = (const uint8_t *)op->subject, *end = base + len;
        return s >= base && s < end && op->payload >= base &&
               op->payload + op->payload_len <= end;
}

static void dp_nats_ahead_run(struct dp_nats *n, struct dp_nats_conn *c,
                              struct dp_nats_ahead *a)
{
        for (uint32_t i = 0; i < a->count && !c->closing; i++)
                dp_nats_op(n, c, &a->op[i]);
        a->count = 0;
}

static void dp_nats_ahead_hint(struct dp_nats *n, const struct dp_nats_op *op)
{
        if (dp_nats_aq_is(op->subject, op->subject_len)) {
                struct dp_msg_in m = dp_nats_pub_msg(op);
                dp_nats_aq_prefetch(n->w, &m);
        }
}

void dp_nats_on_data(void *arg, uint32_t id, const uint8_t *data, size_t len)
{
        struct dp_nats *n = arg;
        struct dp_nats_conn *c = dp_nats_conn_of(n, id);
        const uint8_t *base = data;
        size_t base_len = len;
        struct dp_nats_ahead ahead;
        ahead.count = 0;
        /* Until the parser says it needs more: that last call (len may be
         * 0 by then) is also what frees a buffer a big payload needed. */
        while (c != NULL && !c->closing) {
                size_t used = 0;
                struct dp_nats_op op;
                int rc = dp_nats_parse(&c->parser, data, len, &used, &op);
                data += used;
                len -= used;
                if (rc > 0 && (op.kind == DP_NATS_PUB || op.kind == DP_NATS_HPUB) &&
                    dp_nats_op_within(&op, base, base_len)) {
                        dp_nats_ahead_hint(n, &op);
                        ahead.op[ahead.count++] = op;
                        if (ahead.count == DP_NATS_AHEAD)
                                dp_nats_ahead_run(n, c, &ahead);
                        continue;
                }
                /* What was held back comes first. */
                dp_nats_ahead_run(n, c, &ahead);
                if (c->closing)
                        break;
                if (rc == DP_NATS_E_ARGS || rc == DP_NATS_E_HEADERS) {
                        dp_counter_inc(&n->stats->protocol_errors);
                        c->closing = true;
                        nic_uring_close(n->nic, c->id, true);
                        break;
                }
                if (rc < 0) {
                        dp_nats_err(n, c, dp_nats_err_text(rc), true);
                        break;
                }
                if (rc == 0)
                        break;
                dp_nats_op(n, c, &op);
        }
        if (c == NULL)
                return;
        dp_nats_ahead_run(n, c, &ahead);
        dp_disk_settle(n->w->disk);
        /* A read of many pipelined requests: its answers go out now rather
         * than after the rest of this pass, so the client reads them (and
         * sends more) while we go on; otherwise the two take turns. */
        if (!c->closing && nic_uring_pending(n->nic, c->id) >= DP_NATS_FLUSH_EARLY)
                nic_uring_flush(n->nic);
}

void dp_nats_on_open(void *arg, uint32_t id)
{
        struct dp_nats *n = arg;
        uint32_t slot = id & (NIC_CONNS_MAX - 1);
        if (slot >= n->cfg.max_conns) {
                nic_uring_close(n->nic, id, false);
                return;
        }
        struct dp_nats_conn *c = &n->conns[slot];
        *c = (struct dp_nats_conn){ .id = id, .echo = true, .verbose = true,
                                    .authed = !dp_nats_auth_required(&n->cfg),
                                    .last_ping_ns = shm_clock_ns() };
        dp_nats_parser_init(&c->parser, n->cfg.max_payload);
        dp_counter_inc(&n->stats->conns_opened);
        dp_nats_send(n, c, n->info, n->info_len);
}

void dp_nats_on_close(void *arg, uint32_t id, enum nic_close_reason reason)
{
        struct dp_nats *n = arg;
        (void)reason;
        struct dp_nats_conn *c = dp_nats_conn_of(n, id);
        if (c == NULL)
                return;
        for (uint32_t i = 0; i < c->subs_cap; i++)
                if (c->subs[i].live)
                        dp_nats_unsub_one(n, c, i);
        dp_nats_subs_free(c);
        dp_nats_parser_fini(&c->parser);
        c->id = 0;
        dp_counter_inc(&n->stats->conns_closed);
}

/* Every ping interval: PING each connection, or end one that left
 * max_pings_out PINGs unanswered. */
static void dp_nats_ping_sweep(struct dp_nats *n, uint64_t now_ns)
{
        uint64_t interval_ns = (uint64_t)n->cfg.ping_interval_ms * 1000000;
        if (now_ns - n->ping_sweep_ns < interval_ns / 4)
                return;
        n->ping_sweep_ns = now_ns;
        for (uint32_t i = 0; i < n->cfg.max_conns; i++) {
                struct dp_nats_conn *c = &n->conns[i];
                if (c->id == 0 || c->closing || now_ns - c->last_ping_ns < interval_ns)
                        continue;
                c->last_ping_ns = now_ns;
                if (c->pings_out >= n->cfg.max_pings_out) {
                        /* A silent client sent no bad input: it counts as
                         * stale only, not also as a protocol error
                         * (dp_nats_err's close would count it there). */
                        static const char stale[] = "-ERR 'Stale Connection'\r\n";
                        dp_counter_inc(&n->stats->stale_conns);
                        dp_nats_send(n, c, stale, sizeof(stale) - 1);
                        if (!c->closing) {
                                c->closing = true;
                                nic_uring_close(n->nic, c->id, true);
                        }
                        continue;
                }
                c->pings_out++;
                dp_nats_send(n, c, "PING\r\n", 6);
        }
}

int dp_nats_aq_park(struct dp_nats *n, const char *name, uint32_t name_len, uint8_t end,
                    uint32_t batch, const char *reply, uint32_t reply_len, uint64_t deadline_ns)
{
        if (n->parked_count == DP_AQ_PARKED_MAX)
                return -ENOSPC;
        struct dp_aq_parked *pk = &n->parked[n->parked_count];
        if (name_len > sizeof(pk->name) || reply_len > sizeof(pk->reply))
                return -EINVAL;
        *pk = (struct dp_aq_parked){ .deadline_ns = deadline_ns, .batch = batch, .end = end,
                                     .name_len = (uint8_t)name_len,
                                     .reply_len = (uint8_t)reply_len };
        memcpy(pk->name, name, name_len);
        memcpy(pk->reply, reply, reply_len);
        n->parked_count++;
        dp_counter_inc(&n->stats->aq_parked);
        return 0;
}

void dp_nats_count_aq_lost(struct dp_nats *n)
{
        dp_counter_inc(&n->stats->aq_lost);
}

/* Parked fetches: answered once a message is there or their wait ends. */
static int dp_nats_parked_poll(struct dp_nats *n, uint64_t now_ns)
{
        int work = 0;
        for (uint32_t i = 0; i < n->parked_count;) {
                struct dp_aq_parked *pk = &n->parked[i];
                if (!dp_nats_aq_answer_parked(n->w, pk, now_ns >= pk->deadline_ns)) {
                        i++;
                        continue;
                }
                *pk = n->parked[--n->parked_count];
                work++;
        }
        return work;
}

int dp_nats_poll(struct dp_nats *n, uint64_t now_ns)
{
        dp_nats_reap_doomed(n);
        dp_nats_ping_sweep(n, now_ns);
        int parked = n->parked_count != 0 ? dp_nats_parked_poll(n, now_ns) : 0;
        if (n->nr_count != 0)
                dp_nats_nr_expire(n, now_ns);
        return parked;
}

/* One server id for the process, whichever worker a client reaches (a
 * client that reconnects to another worker must see the same server). */
static char dp_nats_server_id[23];
static pthread_once_t dp_nats_server_id_once = PTHREAD_ONCE_INIT;

static void dp_nats_server_id_make(void)
{
        /* As nats-server makes them: 22 of A-Z and 0-9. */
        static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        uint8_t rnd[sizeof(dp_nats_server_id) - 1];
        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
                memset(rnd, 0, sizeof(rnd));
        for (size_t i = 0; i < sizeof(rnd); i++)
                dp_nats_server_id[i] = alphabet[rnd[i] % (sizeof(alphabet) - 1)];
}

static void dp_nats_info_build(struct dp_nats *n, uint16_t port)
{
        pthread_once(&dp_nats_server_id_once, dp_nats_server_id_make);
        const char *id = dp_nats_server_id;
        int len = snprintf(n->info, sizeof(n->info),
                           "INFO {\"server_id\":\"%s\",\"server_name\":\"atomq\","
                           "\"version\":\"%s\",\"proto\":1,\"go\":\"atomq (C)\","
                           "\"host\":\"%s\",\"port\":%u,\"headers\":true,%s"
                           "\"max_payload\":%u}\r\n",
                           id, ATOMQ_VERSION, n->cfg.host, port,
                           dp_nats_auth_required(&n->cfg) ? "\"auth_required\":true," : "",
                           n->cfg.max_payload);
        DP_VERIFY(len > 0 && (size_t)len < sizeof(n->info));
        n->info_len = (uint32_t)len;
}

static void dp_nats_free(struct dp_nats *n)
{
        free(n->conns);
        free(n->parked);
        free(n->nr);
        free(n);
}

int dp_nats_init(struct dp_nats **out, struct dp_worker *w, const struct dp_nats_config *cfg)
{
        if (w->nic == NULL || cfg->max_conns == 0 || cfg->max_conns > NIC_CONNS_MAX || cfg->max_payload == 0 ||
            cfg->max_subs == 0 || cfg->ping_interval_ms == 0)
                return -EINVAL;
        struct dp_nats *n = calloc(1, sizeof(*n));
        if (n == NULL)
                return -ENOMEM;
        n->w = w;
        n->stats = &w->stats->nats;
        n->cfg = *cfg;
        n->nic = w->nic;
        n->conns = calloc(cfg->max_conns, sizeof(*n->conns));
        n->parked = calloc(DP_AQ_PARKED_MAX, sizeof(*n->parked));
        n->nr = calloc(DP_NATS_NR_MAX, sizeof(*n->nr));
        if (n->conns == NULL || n->parked == NULL || n->nr == NULL) {
                dp_nats_free(n);
                return -ENOMEM;
        }
        dp_nats_info_build(n, nic_uring_port(n->nic));
        n->ping_sweep_ns = shm_clock_ns();
        *out = n;
        return 0;
}

void dp_nats_fini(struct dp_nats *n)
{
        if (n == NULL)
                return;
        for (uint32_t i = 0; i < n->cfg.max_conns; i++) {
                if (n->conns[i].id != 0) {
                        dp_nats_subs_free(&n->conns[i]);
                        dp_nats_parser_fini(&n->conns[i].parser);
                }
        }
        dp_nats_free(n);
}

