/* dp_dgram.c - a datagram in: the session it names, each frame's bounds
 * and CRC, then what its op asks (docs/protocol.md, "atomq datagrams").
 *
 * Nothing in a datagram is trusted: lengths are checked against the bytes
 * received before anything past the header is read (atomq_frame_check), a
 * frame without a good CRC ends the datagram, and a session id is taken
 * only from the peer that opened it. Each problem is a counter; the peer
 * gets no answer for a frame that fails these checks (it may not be who
 * it says), and an answer with an error for a well-formed request that
 * fails.
 */
#include "dataplane/dp_dgram_pvt.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "dataplane/dp_cmd.h"
#include "dataplane/dp_crc32c.h"
#include "dataplane/dp_dgram_wire.h"
#include "dataplane/dp_groups.h"
#include "dataplane/dp_mode.h"
#include "dataplane/dp_shard_pvt.h"
#include "dataplane/dp_subject.h"
#include "dataplane/dp_worker_pvt.h"

void dp_dgram_crc_fill(uint64_t session, uint8_t *f, uint32_t len)
{
        /* Frames in a datagram are not aligned: the header is copied. */
        struct atomq_frame h;
        memcpy(&h, f, sizeof(h));
        h.flags |= ATOMQ_FRAME_F_CRC;
        memcpy(f, &h, sizeof(h));
        h.crc32c = dp_crc32c_dgram(session, f, len);
        memcpy(f + offsetof(struct atomq_frame, crc32c), &h.crc32c, sizeof(h.crc32c));
}

/* ---- requests ---- */

/* The request in window slot sl is answered: kept for copies, sent. */
static void dp_dgram_done(struct dp_dgram *d, struct dp_dgram_session *s, struct dp_dgram_slot *sl,
                          int32_t status, uint64_t handle, uint64_t msg_seq, uint32_t count)
{
        sl->state = DP_DGRAM_DONE;
        sl->status = status;
        sl->handle = handle;
        sl->msg_seq = msg_seq;
        sl->count = count;
        dp_dgram_answer(d, s, sl->seq, status, handle, msg_seq, count);
}

/* Runs command c (name, message m) as ours: its completion is the answer
 * (dp_dgram_cpls_poll). A command that could not be taken now (a ring is
 * full) leaves the slot free: the client's copy tries again. */
static void dp_dgram_cmd_run(struct dp_dgram *d, struct dp_dgram_session *s,
                             struct dp_dgram_slot *sl, struct dp_cmd *c, const char *name,
                             const struct dp_msg_in *m)
{
        c->client = (uint16_t)d->client;
        c->req_id = dp_dgram_req_id(d, s, sl->seq);
        uint32_t len = dp_cmd_bytes(c->name_len, m);
        if (len == 0) {
                dp_dgram_done(d, s, sl, -EMSGSIZE, 0, 0, 0);
                return;
        }
        dp_cmd_encode(d->cmd, len, c, name, m);
        if (dp_worker_cmd_run(d->w, d->cmd, len, false) != DP_TAKE_DONE) {
                sl->state = DP_DGRAM_FREE;
                dp_counter_inc(&d->stats->busy);
        }
}

static int dp_dgram_sub_group(const struct dp_msg_in *m, uint32_t *group)
{
        *group = 0;
        if (m->payload_len == 0)
                return 0;
        if (dp_subject_check(m->payload, m->payload_len, false) != 0)
                return -EINVAL;
        /* Queue groups share the agents' and NATS clients' group ids. */
        *group = dp_hash32(m->payload, m->payload_len) | 1u;
        return 0;
}

static void dp_dgram_sub(struct dp_dgram *d, struct dp_dgram_session *s, struct dp_dgram_slot *sl,
                         const struct atomq_frame *f, const struct dp_msg_in *m)
{
        uint32_t group, i, trie_id;
        if (m->reply_subject != NULL || dp_subject_check(m->subject, m->subject_len, true) != 0 ||
            dp_dgram_sub_group(m, &group) != 0 || f->handle > UINT32_MAX) {
                dp_dgram_done(d, s, sl, -EINVAL, 0, 0, 0);
                return;
        }
        for (i = 0; i < DP_DGRAM_SUBS_MAX && s->subs[i].live; i++)
                ;
        if (i == DP_DGRAM_SUBS_MAX) {
                dp_dgram_done(d, s, sl, -ENOSPC, 0, 0, 0);
                return;
        }
        int rc = dp_shard_subscribe(&d->w->shard, m->subject, m->subject_len, group,
                                    dp_dgram_endpoint(dp_dgram_session_slot(d, s)), i, 0,
                                    &trie_id);
        if (rc != 0) {
                dp_dgram_done(d, s, sl, rc, 0, 0, 0);
                return;
        }
        if (group != 0 && d->w->groups != NULL)
                dp_groups_member(d->w->groups, group, d->w->index, 1);
        struct dp_dgram_sub *sub = &s->subs[i];
        *sub = (struct dp_dgram_sub){ .trie_id = trie_id, .group = group,
                                      .sid = (uint32_t)f->handle, .gen = ++s->sub_gen,
                                      .live = true };
        dp_dgram_done(d, s, sl, 0, (uint64_t)sub->gen << 16 | i, 0, 0);
}

void dp_dgram_sub_drop(struct dp_dgram *d, struct dp_dgram_sub *sub)
{
        (void)dp_shard_unsubscribe(&d->w->shard, sub->trie_id);
        if (sub->group != 0 && d->w->groups != NULL)
                dp_groups_member(d->w->groups, sub->group, d->w->index, -1);
        sub->live = false;
}

static void dp_dgram_unsub(struct dp_dgram *d, struct dp_dgram_session *s,
                           struct dp_dgram_slot *sl, uint64_t handle)
{
        uint64_t i = handle & 0xffffu;
        if (i >= DP_DGRAM_SUBS_MAX || !s->subs[i].live || s->subs[i].gen != (handle >> 16)) {
                dp_dgram_done(d, s, sl, -ENOENT, 0, 0, 0);
                return;
        }
        dp_dgram_sub_drop(d, &s->subs[i]);
        dp_dgram_done(d, s, sl, 0, 0, 0, 0);
}

/* The session's inbox for its requests' replies: _AQD.<session>.* */
static int dp_dgram_inbox(struct dp_dgram *d, struct dp_dgram_session *s, char *subject,
                          uint64_t seq, uint32_t *len)
{
        int n = snprintf(subject, 64, "_AQD.%016llx.%llu", (unsigned long long)s->id,
                         (unsigned long long)seq);
        *len = (uint32_t)n;
        if (s->inbox)
                return 0;
        char pattern[32];
        int plen = snprintf(pattern, sizeof(pattern), "_AQD.%016llx.*", (unsigned long long)s->id);
        int rc = dp_shard_subscribe(&d->w->shard, pattern, (uint32_t)plen, 0,
                                    dp_dgram_endpoint(dp_dgram_session_slot(d, s)),
                                    DP_DGRAM_INBOX_SID, 0, &s->inbox_trie);
        s->inbox = rc == 0;
        return rc;
}

static void dp_dgram_request(struct dp_dgram *d, struct dp_dgram_session *s,
                             struct dp_dgram_slot *sl, const struct atomq_frame *f,
                             struct dp_msg_in *m)
{
        char reply[64];
        uint32_t reply_len;
        if (m->reply_subject != NULL || dp_subject_check(m->subject, m->subject_len, false) != 0) {
                dp_dgram_done(d, s, sl, -EINVAL, 0, 0, 0);
                return;
        }
        if (m->subject_len + sizeof(reply) > ATOMQ_FRAME_SUBJECT_MAX) {
                dp_dgram_done(d, s, sl, -ENAMETOOLONG, 0, 0, 0);
                return;
        }
        int rc = dp_dgram_inbox(d, s, reply, sl->seq, &reply_len);
        if (rc != 0) {
                dp_dgram_done(d, s, sl, rc, 0, 0, 0);
                return;
        }
        m->reply_subject = reply;
        m->reply_subject_len = reply_len;
        m->ttl_ms = 0;
        uint32_t wait_ms = f->ttl_ms != 0 ? f->ttl_ms : DP_DGRAM_REQUEST_MS_DEFAULT;
        if (wait_ms > DP_DGRAM_REQUEST_MS_MAX)
                wait_ms = DP_DGRAM_REQUEST_MS_MAX;
        sl->deadline_ns = d->now_ns + (uint64_t)wait_ms * 1000000;
        s->requests++;
        rc = dp_worker_publish_msg(d->w, m, dp_dgram_endpoint(dp_dgram_session_slot(d, s)), 0);
        /* The reply may have come already (a responder on this shard that
         * answered inside the publish): then the slot is DONE. */
        if (sl->state != DP_DGRAM_PENDING)
                return;
        if (rc < 0 || (rc == 0 && d->w->workers == 1)) {
                /* Nobody anywhere (one shard is everywhere), or no room. */
                s->requests--;
                dp_dgram_done(d, s, sl, rc < 0 ? rc : -EHOSTUNREACH, 0, 0, 0);
        }
}

static void dp_dgram_publish(struct dp_dgram *d, struct dp_dgram_session *s,
                             struct dp_dgram_slot *sl, const struct dp_msg_in *m)
{
        int rc = dp_subject_check(m->subject, m->subject_len, false) != 0 ? -EINVAL
                 : dp_worker_publish_msg(d->w, m, dp_dgram_endpoint(dp_dgram_session_slot(d, s)), 0);
        if (sl != NULL)
                dp_dgram_done(d, s, sl, rc < 0 ? rc : 0, 0, 0, rc < 0 ? 0 : (uint32_t)rc);
}

/* The entity of a frame: its handle, or with handle 0 its name (the
 * subject section). */
static void dp_dgram_target(struct dp_cmd *c, const struct atomq_frame *f,
                            const struct dp_msg_in *m, const char **name)
{
        c->handle = f->handle;
        *name = NULL;
        if (f->handle == 0) {
                c->name_len = (uint16_t)m->subject_len;
                *name = m->subject;
        }
}

static void dp_dgram_create(struct dp_dgram *d, struct dp_dgram_session *s,
                            struct dp_dgram_slot *sl, const struct dp_msg_in *m)
{
        struct atomq_dgram_create b;
        if (m->payload_len != sizeof(b) || m->reply_subject != NULL) {
                dp_dgram_done(d, s, sl, -EINVAL, 0, 0, 0);
                return;
        }
        memcpy(&b, m->payload, sizeof(b));
        struct dp_cmd c = { .op = ATOMQ_OP_CREATE, .name_len = (uint16_t)m->subject_len };
        c.args.create = (struct dp_cmd_create){ .mode = b.mode, .storage = b.storage,
                                                .overflow = -1, .ttl_ms = b.ttl_ms,
                                                .max_msgs = b.max_msgs, .max_bytes = b.max_bytes };
        if (b.storage >= 0)
                c.args.create.flags |= DP_CMD_CREATE_F_STORAGE;
        dp_dgram_cmd_run(d, s, sl, &c, m->subject_len != 0 ? m->subject : NULL, NULL);
}

/* An entity op: send, fetch, ack, destroy. */
static void dp_dgram_entity(struct dp_dgram *d, struct dp_dgram_session *s,
                            struct dp_dgram_slot *sl, const struct atomq_frame *f,
                            struct dp_msg_in *m)
{
        struct dp_cmd c = { .op = f->op };
        const char *name;
        dp_dgram_target(&c, f, m, &name);
        switch (f->op) {
        case ATOMQ_OP_SEND:
                /* The message's subject is the target's name, if any. */
                dp_dgram_cmd_run(d, s, sl, &c, name, m);
                return;
        case ATOMQ_OP_FETCH:
                if (f->reply == 0 || f->reply > DP_FETCH_MAX)
                        break;
                c.args.fetch.max = (uint32_t)f->reply;
                dp_dgram_cmd_run(d, s, sl, &c, name, NULL);
                return;
        case ATOMQ_OP_ACK:
                if (f->handle == 0)
                        break;
                c.seq = f->reply;
                c.name_len = 0;
                dp_dgram_cmd_run(d, s, sl, &c, NULL, NULL);
                return;
        case ATOMQ_OP_DESTROY:
                dp_dgram_cmd_run(d, s, sl, &c, name, NULL);
                return;
        default:
                break;
        }
        dp_dgram_done(d, s, sl, -EINVAL, 0, 0, 0);
}

/* A request op with seq: the window decides whether it runs. Returns the
 * slot to run it in, or NULL (a copy answered, or too old). */
static struct dp_dgram_slot *dp_dgram_take(struct dp_dgram *d, struct dp_dgram_session *s,
                                           const struct atomq_frame *f)
{
        struct dp_dgram_slot *sl = dp_dgram_slot_of(s, f->seq);
        if (f->seq + ATOMQ_DGRAM_WINDOW <= s->seq_max) {
                dp_counter_inc(&d->stats->stale);
                return NULL;
        }
        if (sl->seq == f->seq && sl->state != DP_DGRAM_FREE) {
                dp_counter_inc(&d->stats->retransmits);
                if (sl->state == DP_DGRAM_PENDING)
                        return NULL;   /* its answer is on the way */
                /* A fetch gets its kept answer; one too old to be kept, and
                 * a request, run again (docs/protocol.md). */
                if (sl->op == ATOMQ_OP_FETCH && dp_dgram_fetch_again(d, s, sl))
                        return NULL;
                if (sl->op != ATOMQ_OP_FETCH && sl->op != ATOMQ_OP_REQUEST) {
                        dp_dgram_answer_again(d, s, sl);
                        return NULL;
                }
        }
        if (sl->state == DP_DGRAM_PENDING && sl->op == ATOMQ_OP_REQUEST && s->requests > 0)
                s->requests--;  /* overtaken: its reply will find no slot */
        if (f->seq > s->seq_max)
                s->seq_max = f->seq;
        *sl = (struct dp_dgram_slot){ .seq = f->seq, .state = DP_DGRAM_PENDING, .op = f->op };
        return sl;
}

/* One frame that passed its checks, from session s. Returns false when
 * the session ended (the rest of the datagram is not read). */
static bool dp_dgram_frame(struct dp_dgram *d, struct dp_dgram_session *s,
                           const struct atomq_frame *f, const uint8_t *bytes)
{
        struct dp_msg_in m;
        dp_frame_read(f, bytes, &m);
        dp_counter_inc(&d->stats->frames_in);
        if (f->op == ATOMQ_OP_PING) {
                dp_dgram_pong(d, f->seq);
                return true;
        }
        if (f->op == ATOMQ_OP_PUB && f->seq == 0) {
                dp_dgram_publish(d, s, NULL, &m);
                return true;
        }
        if (f->op == ATOMQ_OP_DESTROY && f->handle == 0 && f->subject_len == 0) {
                /* The session's end: answered first, in the old session. */
                dp_dgram_answer(d, s, f->seq, 0, 0, 0, 0);
                dp_counter_inc(&d->stats->sessions_closed);
                dp_dgram_session_end(d, s);
                return false;
        }
        if (f->seq == 0) {
                dp_counter_inc(&d->stats->bad_frames);
                return true;
        }
        struct dp_dgram_slot *sl = dp_dgram_take(d, s, f);
        if (sl == NULL)
                return true;
        switch (f->op) {
        case ATOMQ_OP_PUB:
                dp_dgram_publish(d, s, sl, &m);
                break;
        case ATOMQ_OP_SUB:
                dp_dgram_sub(d, s, sl, f, &m);
                break;
        case ATOMQ_OP_UNSUB:
                dp_dgram_unsub(d, s, sl, f->handle);
                break;
        case ATOMQ_OP_REQUEST:
                dp_dgram_request(d, s, sl, f, &m);
                break;
        case ATOMQ_OP_CREATE:
                dp_dgram_create(d, s, sl, &m);
                break;
        default:
                dp_dgram_entity(d, s, sl, f, &m);
                break;
        }
        return true;
}

/* The next frame of a datagram at off: its header in *f and its length,
 * or 0 (counted) when what is there is not a whole, valid frame of this
 * session. */
static uint32_t dp_dgram_frame_at(struct dp_dgram *d, uint64_t session, const uint8_t *data,
                                  size_t len, size_t off, struct atomq_frame *f)
{
        uint32_t bytes = 0;
        switch (dp_dgram_frame_verify(session, data, len, off, f, &bytes)) {
        case DP_DGRAM_FRAME_OK:
                return bytes;
        case DP_DGRAM_FRAME_BAD_CRC:
                dp_counter_inc(&d->stats->bad_crc);
                return 0;
        default:
                dp_counter_inc(&d->stats->bad_frames);
                return 0;
        }
}

/* The live session a copy of this open's PING opened already, or NULL.
 * Only one that has taken no request yet: a client that restarts on the
 * same address and port with the same nonce must not inherit the answers
 * kept for another's sequence numbers. */
static struct dp_dgram_session *dp_dgram_open_again(struct dp_dgram *d, uint8_t port,
                                                    const struct nic_dgram_addr *from,
                                                    uint64_t nonce)
{
        for (uint32_t i = 0; i < DP_DGRAM_OPENS; i++) {
                const struct dp_dgram_open *o = &d->opens[i];
                if (o->id == 0 || o->nonce != nonce || o->port != port ||
                    !nic_dgram_addr_eq(&o->peer, from))
                        continue;
                struct dp_dgram_session *s = dp_dgram_session_find(d, o->id);
                if (s != NULL && s->seq_max == 0)
                        return s;
        }
        return NULL;
}

/* A datagram of session 0: a PING opens a session, nothing else is taken.
 * A copy of a PING whose PONG was lost gets the session it opened. */
static struct dp_dgram_session *dp_dgram_open(struct dp_dgram *d, uint8_t port,
                                              const struct nic_dgram_addr *from,
                                              const struct atomq_frame *f)
{
        if (f->op != ATOMQ_OP_PING) {
                dp_counter_inc(&d->stats->spoofed);
                return NULL;
        }
        struct dp_dgram_session *s = dp_dgram_open_again(d, port, from, f->seq);
        if (s != NULL) {
                dp_counter_inc(&d->stats->retransmits);
                return s;
        }
        s = dp_dgram_session_open(d, port, from, d->now_ns);
        if (s == NULL) {
                dp_counter_inc(&d->stats->sessions_refused);
                dp_dgram_out_begin(d, &d->ans, port, 0, from);
                dp_dgram_status_put(d, &d->ans, f->seq, -EUSERS, 0, 0, 0);
                dp_dgram_out_end(d, &d->ans);
                return NULL;
        }
        dp_counter_inc(&d->stats->sessions_opened);
        d->opens[d->opens_next++ % DP_DGRAM_OPENS] =
                (struct dp_dgram_open){ .peer = *from, .port = port, .nonce = f->seq, .id = s->id };
        return s;
}

void dp_dgram_input(void *arg, const struct nic_dgram_addr *from, const uint8_t *data, size_t len)
{
        struct dp_dgram_port *port = arg;
        struct dp_dgram *d = port->d;
        uint64_t session;
        if (len < ATOMQ_DGRAM_SESSION_BYTES + ATOMQ_FRAME_HDR_BYTES) {
                dp_counter_inc(&d->stats->bad_frames);
                return;
        }
        memcpy(&session, data, sizeof(session));
        struct dp_dgram_session *s = NULL;
        if (session != 0) {
                s = dp_dgram_session_find(d, session);
                if (s == NULL || s->port != port->index || !nic_dgram_addr_eq(&s->peer, from)) {
                        dp_counter_inc(&d->stats->spoofed);
                        return;
                }
                dp_dgram_out_begin(d, &d->ans, port->index, session, from);
        }
        for (size_t off = ATOMQ_DGRAM_SESSION_BYTES; off < len;) {
                struct atomq_frame f;
                uint32_t bytes = dp_dgram_frame_at(d, session, data, len, off, &f);
                if (bytes == 0)
                        break;
                if (s == NULL) {
                        s = dp_dgram_open(d, port->index, from, &f);
                        if (s == NULL)
                                return;
                        dp_dgram_out_begin(d, &d->ans, port->index, s->id, from);
                }
                s->last_ns = d->now_ns;
                if (!dp_dgram_frame(d, s, &f, data + off))
                        break;
                off += bytes;
        }
        if (s != NULL)
                dp_dgram_out_end(d, &d->ans);
}
