/* dp_dgram_out.c - datagrams out: the answers to requests (STATUS, PONG,
 * REPLY), the completions of our commands turned into answers, and the
 * messages of subscriptions (MSG).
 *
 * A datagram is built in place (struct dp_dgram_out: session id, frames)
 * and handed to the backend whole. Answers to one input datagram share one
 * datagram as far as they fit; a delivery is a datagram of its own, built
 * in a second buffer because it may happen while an input is being
 * answered (a publish from one session reaching another on this worker).
 * A backend that refuses a datagram (its batch is full) loses it and the
 * loss is counted: the peer's retransmission recovers an answer, a
 * broadcast message is at most once by definition.
 */
#include "dataplane/dp_dgram_pvt.h"

#include <errno.h>
#include <string.h>

#include "dataplane/dp_cmd.h"
#include "dataplane/dp_engine.h"
#include "shm/shm_clock.h"

void dp_dgram_out_begin(struct dp_dgram *d, struct dp_dgram_out *o, uint8_t port,
                        uint64_t session, const struct nic_dgram_addr *peer)
{
        o->tx = &d->ports[port].tx;
        o->session = session;
        o->peer = *peer;
        memcpy(o->buf, &session, sizeof(session));
        o->len = ATOMQ_DGRAM_SESSION_BYTES;
        o->sent = 0;
        o->open = true;
}

static void dp_dgram_out_send(struct dp_dgram *d, struct dp_dgram_out *o)
{
        if (o->len > ATOMQ_DGRAM_SESSION_BYTES) {
                if (o->tx->send(o->tx->ctx, &o->peer, o->buf, o->len) != 0)
                        dp_counter_inc(&d->stats->tx_dropped);
                o->sent++;
        }
        o->len = ATOMQ_DGRAM_SESSION_BYTES;
}

uint8_t *dp_dgram_out_reserve(struct dp_dgram *d, struct dp_dgram_out *o, uint32_t bytes)
{
        if ((uint64_t)bytes + ATOMQ_DGRAM_SESSION_BYTES > o->tx->bytes_max) {
                dp_counter_inc(&d->stats->tx_dropped);
                return NULL;
        }
        if (o->len + bytes > o->tx->bytes_max)
                dp_dgram_out_send(d, o);
        return o->buf + o->len;
}

void dp_dgram_out_commit(struct dp_dgram_out *o, uint32_t bytes, struct dp_dgram_stats *st)
{
        dp_dgram_crc_fill(o->session, o->buf + o->len, bytes);
        o->len += bytes;
        dp_counter_inc(&st->frames_out);
}

void dp_dgram_out_end(struct dp_dgram *d, struct dp_dgram_out *o)
{
        dp_dgram_out_send(d, o);
        o->open = false;
}

/* A frame of op with no subject and the given body. */
static void dp_dgram_frame_put(struct dp_dgram *d, struct dp_dgram_out *o, uint8_t op,
                               uint64_t seq, uint32_t ttl_ms, const void *body, uint32_t len)
{
        uint32_t bytes = ATOMQ_FRAME_HDR_BYTES + len;
        uint8_t *p = dp_dgram_out_reserve(d, o, bytes);
        if (p == NULL)
                return;
        struct atomq_frame f;
        atomq_frame_init(&f, op, 0, 0, len);
        f.seq = seq;
        f.ttl_ms = ttl_ms;
        memcpy(p, &f, sizeof(f));
        if (len != 0)
                memcpy(p + sizeof(f), body, len);
        dp_dgram_out_commit(o, bytes, d->stats);
}

void dp_dgram_status_put(struct dp_dgram *d, struct dp_dgram_out *o, uint64_t seq, int32_t status,
                         uint64_t handle, uint64_t msg_seq, uint32_t count)
{
        struct atomq_dgram_status b = { .status = status, .count = count, .handle = handle,
                                        .seq = msg_seq };
        dp_dgram_frame_put(d, o, ATOMQ_OP_STATUS, seq, 0, &b, sizeof(b));
}

void dp_dgram_answer(struct dp_dgram *d, struct dp_dgram_session *s, uint64_t seq, int32_t status,
                     uint64_t handle, uint64_t msg_seq, uint32_t count)
{
        bool own = !d->ans.open;
        if (own)
                dp_dgram_out_begin(d, &d->ans, s->port, s->id, &s->peer);
        dp_dgram_status_put(d, &d->ans, seq, status, handle, msg_seq, count);
        if (own)
                dp_dgram_out_end(d, &d->ans);
}

void dp_dgram_pong(struct dp_dgram *d, uint64_t seq)
{
        dp_dgram_frame_put(d, &d->ans, ATOMQ_OP_PONG, seq, d->cfg.lease_ms, NULL, 0);
}

void dp_dgram_answer_again(struct dp_dgram *d, struct dp_dgram_session *s,
                           const struct dp_dgram_slot *sl)
{
        dp_dgram_answer(d, s, sl->seq, sl->status, sl->handle, sl->msg_seq, sl->count);
}

/* ---- the fetch answer cache ---- */

/* Keeps the answer being built in d->ans (one datagram) for copies of the
 * fetch in window slot sl. */
static void dp_dgram_cache_put(struct dp_dgram *d, struct dp_dgram_slot *sl)
{
        const struct dp_dgram_out *o = &d->ans;
        uint32_t at = (uint32_t)(d->cache_written % DP_DGRAM_CACHE_BYTES);
        if (o->sent != 0 || o->len > DP_DGRAM_CACHE_BYTES)
                return;   /* split over datagrams: a copy fetches again */
        if (at + o->len > DP_DGRAM_CACHE_BYTES) {
                d->cache_written += DP_DGRAM_CACHE_BYTES - at;   /* the tail is skipped */
                at = 0;
        }
        memcpy(d->cache + at, o->buf, o->len);
        sl->cache_pos = d->cache_written;
        sl->cache_len = o->len;
        d->cache_written += o->len;
}

bool dp_dgram_fetch_again(struct dp_dgram *d, struct dp_dgram_session *s,
                          const struct dp_dgram_slot *sl)
{
        /* Written over once the ring has moved a whole size past it. */
        if (sl->cache_len == 0 || d->cache_written > sl->cache_pos + DP_DGRAM_CACHE_BYTES)
                return false;
        const struct dp_dgram_tx *tx = &d->ports[s->port].tx;
        if (tx->send(tx->ctx, &s->peer, d->cache + sl->cache_pos % DP_DGRAM_CACHE_BYTES,
                     sl->cache_len) != 0)
                dp_counter_inc(&d->stats->tx_dropped);
        return true;
}

/* ---- completions ---- */

/* The messages of a fetch's completion, after its STATUS: each frame as
 * the owner wrote it (op MSG, handle the entity, seq the message's). */
static void dp_dgram_fetched_put(struct dp_dgram *d, const struct dp_cpl *c, uint32_t len)
{
        struct dp_cpl_msg m;
        uint32_t off = 0;
        while (dp_cpl_msg_next(c, len, &off, &m) == 1) {
                uint32_t bytes = (uint32_t)atomq_frame_bytes(m.frame.subject_len,
                                                             m.frame.headers_len,
                                                             m.frame.payload_len);
                uint8_t *p = dp_dgram_out_reserve(d, &d->ans, bytes);
                if (p == NULL)
                        continue;
                /* The frame's sections follow its header in the completion;
                 * dp_dgram_out_commit sets the flag and the CRC. */
                memcpy(p, m.subject - ATOMQ_FRAME_HDR_BYTES, bytes);
                dp_dgram_out_commit(&d->ans, bytes, d->stats);
        }
}

static void dp_dgram_on_cpl(void *arg, const struct dp_cpl *c, uint32_t len)
{
        struct dp_dgram *d = arg;
        struct dp_dgram_session *s = dp_dgram_req_session(d, c->req_id);
        if (s == NULL)
                return;   /* the session ended meanwhile */
        uint32_t seq_lo = (uint32_t)c->req_id;
        struct dp_dgram_slot *sl = dp_dgram_slot_of(s, seq_lo);
        if (sl->state != DP_DGRAM_PENDING || (uint32_t)sl->seq != seq_lo || sl->op != c->op)
                return;   /* overtaken by a later request in the window */
        bool msgs = dp_cmd_op_answers_msgs(c->op) && c->status == 0;
        *sl = (struct dp_dgram_slot){ .seq = sl->seq, .op = sl->op, .state = DP_DGRAM_DONE,
                                      .status = c->status, .handle = c->handle,
                                      .msg_seq = c->seq, .count = msgs ? c->count : 0 };
        dp_dgram_out_begin(d, &d->ans, s->port, s->id, &s->peer);
        dp_dgram_status_put(d, &d->ans, sl->seq, sl->status, sl->handle, sl->msg_seq, sl->count);
        if (msgs)
                dp_dgram_fetched_put(d, c, len);
        if (msgs && c->op == ATOMQ_OP_FETCH && c->count != 0)
                dp_dgram_cache_put(d, sl);
        dp_dgram_out_end(d, &d->ans);
}

int dp_dgram_cpls_poll(struct dp_dgram *d)
{
        int n = dp_engine_poll(d->w->engine, d->client, dp_dgram_on_cpl, d, 64);
        return n > 0 ? n : 0;
}

bool dp_dgram_ready(struct dp_dgram *d)
{
        struct dp_engine *e = d->w->engine;
        struct shm_vring_rec rec;
        for (uint32_t j = 0; j < e->workers; j++)
                if (shm_vring_peek(&e->cpl_cons[d->client * e->workers + j], &rec) != 0)
                        return true;
        return false;
}

/* ---- deliveries ---- */

/* A reply on the session's inbox (_AQD.<session>.<seq>): the REPLY of
 * the request with that seq, if it still waits. */
static bool dp_dgram_reply_slot(struct dp_dgram_session *s, const struct dp_msg_view *v,
                                struct dp_dgram_slot **out)
{
        /* The subject's last token is the request's seq in decimal. */
        uint64_t seq = 0;
        uint32_t i = v->subject_len;
        while (i > 0 && v->subject[i - 1] != '.')
                i--;
        if (i == v->subject_len || v->subject_len - i > 19)
                return false;
        for (uint32_t k = i; k < v->subject_len; k++) {
                if (v->subject[k] < '0' || v->subject[k] > '9')
                        return false;
                seq = seq * 10 + (uint64_t)(v->subject[k] - '0');
        }
        struct dp_dgram_slot *sl = dp_dgram_slot_of(s, seq);
        if (sl->seq != seq || sl->state != DP_DGRAM_PENDING || sl->op != ATOMQ_OP_REQUEST)
                return false;
        *out = sl;
        return true;
}

/* Writes message v as a frame of op to s: handle, seq as given. */
static void dp_dgram_msg_put(struct dp_dgram *d, struct dp_dgram_session *s, uint8_t op,
                             const struct dp_msg_view *v, uint64_t handle, uint64_t seq,
                             bool with_reply)
{
        struct dp_msg_in m = { .subject = v->subject, .subject_len = v->subject_len,
                               .headers = v->headers, .headers_len = v->headers_len,
                               .payload = v->payload, .payload_len = v->payload_len,
                               .reply = v->reply, .storage = -1 };
        if (with_reply && v->reply_subject_len != 0) {
                m.reply_subject = v->reply_subject;
                m.reply_subject_len = v->reply_subject_len;
        }
        uint64_t bytes = dp_frame_bytes(&m);
        struct dp_dgram_out *o = &d->dlv;
        /* Messages to one session in one pass share datagrams (a burst of
         * publishes fans out to few packets); another session's message
         * sends what is there first. */
        if (o->open && o->session != s->id)
                dp_dgram_out_end(d, o);
        if (!o->open)
                dp_dgram_out_begin(d, o, s->port, s->id, &s->peer);
        uint8_t *p = bytes != 0 && bytes <= UINT32_MAX ? dp_dgram_out_reserve(d, o, (uint32_t)bytes)
                                                       : NULL;
        if (p == NULL)
                return;
        /* Frames after the first are not aligned: the header is built
         * aside and copied. */
        dp_frame_write(p, (enum atomq_frame_op)op, &m);
        struct atomq_frame f;
        memcpy(&f, p, sizeof(f));
        f.handle = handle;
        f.seq = seq;
        memcpy(p, &f, sizeof(f));
        dp_dgram_out_commit(o, (uint32_t)bytes, d->stats);
}

void dp_dgram_flush(struct dp_dgram *d)
{
        if (d->dlv.open)
                dp_dgram_out_end(d, &d->dlv);
}

void dp_dgram_deliver(struct dp_dgram *d, const struct dp_dispatch *dsp)
{
        uint32_t slot = dsp->endpoint & ~DP_DGRAM_ENDPOINT_BITS;
        struct dp_dgram_session *s = slot < d->cfg.max_sessions ? &d->sessions[slot] : NULL;
        struct dp_msg_view v;
        if (s == NULL || s->id == 0 || dsp->buf == SHM_BUF_NONE ||
            dp_shard_msg_view(&d->w->shard, dsp->buf, &v) != 0)
                return;
        if (dsp->sid == DP_DGRAM_INBOX_SID) {
                struct dp_dgram_slot *sl;
                if (!dp_dgram_reply_slot(s, &v, &sl))
                        return;   /* late: the request timed out or was overtaken */
                sl->state = DP_DGRAM_DONE;
                sl->status = 0;
                if (s->requests > 0)
                        s->requests--;
                dp_dgram_msg_put(d, s, ATOMQ_OP_REPLY, &v, 0, sl->seq, false);
                return;
        }
        if (dsp->sid >= DP_DGRAM_SUBS_MAX || !s->subs[dsp->sid].live)
                return;
        dp_dgram_msg_put(d, s, ATOMQ_OP_MSG, &v, s->subs[dsp->sid].sid, ++s->dlv_seq, true);
}
