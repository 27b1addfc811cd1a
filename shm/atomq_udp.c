/* atomq_udp.c - libatomq over UDP: the agent API (include/atomq/atomq.h)
 * as atomq datagrams (atomq/dgram.h; docs/protocol.md "atomq datagrams")
 * with atomqd's --udp port, so an agent's code runs on another host. The
 * calls here map each atomq_ call that the protocol carries onto frames:
 * entities, messages, subscriptions, fetch and ack, request and reply.
 * They are built on the session (atomq_udp_session.c: atomq_udp_ask sends
 * a frame until it is answered) and its datagrams (atomq_udp_wire.c);
 * shm/atomq_udp_pvt.h is what the three share. An argument a frame has no
 * field for is -ENOTSUP rather than a call carried otherwise than asked.
 */
#include "shm/atomq_udp_pvt.h"

#include <errno.h>
#include <string.h>

#include "shm/shm_clock.h"

/* How long after its timeout_ms a request without any answer is given
 * up on (a status-408 delivery): room for the server's own -ETIMEDOUT. */
#define ATOMQ_UDP_REQUEST_GRACE_NS (500 * ATOMQ_UDP_MS)

/* ---- entities and messages ------------------------------------------------------ */

/* The name of a call that names an entity by handle or name: 0 with *len
 * its length (0 when the handle is used), or -EINVAL. */
static int atomq_udp_target(uint64_t handle, const char *name, uint32_t *len)
{
        *len = 0;
        if (handle != 0)
                return 0;
        size_t n = name != NULL ? strlen(name) : 0;
        if (n == 0 || n > ATOMQ_FRAME_SUBJECT_MAX)
                return -EINVAL;
        *len = (uint32_t)n;
        return 0;
}

int atomq_udp_create(struct atomq_udp *u, enum atomq_mode mode, const char *name,
                     const struct atomq_create_opts *o, uint64_t *handle)
{
        struct atomq_dgram_create b = { .mode = (uint8_t)mode, .storage = -1 };
        struct atomq_dgram_status st;
        size_t len = name != NULL ? strlen(name) : 0;
        if ((unsigned)mode > ATOMQ_MODE_LOG || len > ATOMQ_FRAME_SUBJECT_MAX)
                return -EINVAL;
        if (o != NULL) {
                if (o->ttl_idle)
                        return -ENOTSUP; /* the CREATE body has no idle flag */
                b.ttl_ms = o->ttl_ms;
                b.max_msgs = o->max_msgs;
                b.max_bytes = o->max_bytes;
                if (o->storage_set)
                        b.storage = o->storage;
        }
        struct dp_msg_in m = { .subject = name, .subject_len = (uint32_t)len, .payload = &b,
                               .payload_len = sizeof(b), .storage = -1 };
        int rc = atomq_udp_ask(u, ATOMQ_OP_CREATE, 0, 0, &m, &st);
        if (rc == 0 && handle != NULL)
                *handle = st.handle;
        return rc;
}

int atomq_udp_destroy(struct atomq_udp *u, uint64_t handle, const char *name)
{
        uint32_t len;
        /* Handle 0 and no name would end the session: never sent. */
        int rc = atomq_udp_target(handle, name, &len);
        if (rc != 0)
                return rc;
        struct dp_msg_in m = { .subject = len != 0 ? name : NULL, .subject_len = len,
                               .storage = -1 };
        return atomq_udp_ask(u, ATOMQ_OP_DESTROY, 0, handle, &m, NULL);
}

/* The options of a message as a SEND or PUB frame carries them: ttl_ms,
 * the reply handle, headers. Per-message storage and channel ends have no
 * field: -ENOTSUP rather than a message stored otherwise than asked. */
static int atomq_udp_opts(struct dp_msg_in *m, const struct atomq_msg_opts *o, bool send)
{
        if (o == NULL)
                return 0;
        if (send && (o->storage != ATOMQ_STORAGE_DEFAULT || o->end != 0))
                return -ENOTSUP;
        m->ttl_ms = o->ttl_ms;
        m->reply = o->reply;
        if (o->headers != NULL && o->headers_len != 0) {
                m->headers = o->headers;
                m->headers_len = o->headers_len;
        }
        return 0;
}

int atomq_udp_send(struct atomq_udp *u, uint64_t handle, const char *name, const char *key,
                   const void *data, uint32_t len, const struct atomq_msg_opts *o,
                   uint64_t *seq)
{
        struct atomq_dgram_status st;
        struct dp_msg_in m = { .payload = data, .payload_len = len, .storage = -1 };
        uint32_t name_len;
        int rc = atomq_udp_target(handle, name, &name_len);
        if (rc != 0)
                return rc;
        size_t key_len = key != NULL ? strlen(key) : 0;
        if (key_len > ATOMQ_FRAME_SUBJECT_MAX)
                return -EINVAL;
        /* The subject section is the name when there is no handle, and
         * then also the message's key: another key cannot be carried. */
        if (name_len != 0 && key != NULL && strcmp(key, name) != 0)
                return -ENOTSUP;
        m.subject = name_len != 0 ? name : key;
        m.subject_len = name_len != 0 ? name_len : (uint32_t)key_len;
        rc = atomq_udp_opts(&m, o, true);
        if (rc == 0)
                rc = atomq_udp_ask(u, ATOMQ_OP_SEND, 0, handle, &m, &st);
        if (rc == 0 && seq != NULL)
                *seq = st.seq;
        return rc;
}

int atomq_udp_publish(struct atomq_udp *u, const char *subject, const void *data, uint32_t len,
                      const struct atomq_msg_opts *o)
{
        size_t slen = subject != NULL ? strlen(subject) : 0;
        struct dp_msg_in m = { .subject = subject, .subject_len = (uint32_t)slen,
                               .payload = data, .payload_len = len, .storage = -1 };
        uint32_t bytes;
        if (!atomq_subject_ok(subject, slen, false))
                return -EINVAL;
        if (atomq_udp_lapsed(u, shm_clock_ns()))
                return -ECONNRESET;
        (void)atomq_udp_opts(&m, o, false);
        /* seq 0 and no ACK_REQ: at most once, never answered. */
        int rc = atomq_udp_build(u->tx, u->session, ATOMQ_OP_PUB, 0, 0, 0, &m, &bytes);
        return rc != 0 ? rc : atomq_udp_tx(u, u->tx, bytes);
}

int atomq_udp_subscribe(struct atomq_udp *u, const char *pattern, const char *group,
                        uint32_t sid, uint64_t *sub)
{
        struct atomq_dgram_status st;
        size_t len = pattern != NULL ? strlen(pattern) : 0;
        size_t glen = group != NULL ? strlen(group) : 0;
        if (!atomq_subject_ok(pattern, len, true) || (group != NULL && glen == 0) ||
            glen > ATOMQ_FRAME_SUBJECT_MAX)
                return -EINVAL;
        /* The sid goes in handle; the queue group is the payload. */
        struct dp_msg_in m = { .subject = pattern, .subject_len = (uint32_t)len,
                               .payload = group, .payload_len = (uint32_t)glen, .storage = -1 };
        int rc = atomq_udp_ask(u, ATOMQ_OP_SUB, 0, sid, &m, &st);
        if (rc == 0 && sub != NULL)
                *sub = st.handle;
        return rc;
}

int atomq_udp_unsubscribe(struct atomq_udp *u, uint64_t sub)
{
        struct dp_msg_in m = { .storage = -1 };
        if (sub == 0)
                return -ENOENT;
        return atomq_udp_ask(u, ATOMQ_OP_UNSUB, 0, sub, &m, NULL);
}

/* ---- fetch, ack ---------------------------------------------------------------------- */

int atomq_udp_fetch(struct atomq_udp *u, uint64_t handle, const char *name, uint8_t end,
                    unsigned max, struct atomq_batch *b)
{
        struct atomq_dgram_status st;
        uint32_t len;
        *b = (struct atomq_batch){ .worker = -1 };
        if (end != 0)
                return -ENOTSUP; /* channel ends: no field in FETCH */
        if (max == 0 || max > DP_FETCH_MAX)
                return -EINVAL;
        int rc = atomq_udp_target(handle, name, &len);
        if (rc != 0)
                return rc;
        /* reply carries the most messages wanted. */
        struct dp_msg_in m = { .subject = len != 0 ? name : NULL, .subject_len = len,
                               .reply = max, .storage = -1 };
        rc = atomq_udp_ask(u, ATOMQ_OP_FETCH, 0, handle, &m, &st);
        if (rc != 0)
                return rc;
        /* What came of st.count: the rest was lost on the way and comes
         * again after the ack wait. */
        *b = (struct atomq_batch){ .count = u->batch_count, .bytes = u->batch_len,
                                   .rec = u->batch, .rec_len = u->batch_len, .worker = -1,
                                   .reserved = ATOMQ_UDP_BATCH_TAG };
        return (int)u->batch_count;
}

int atomq_udp_batch_next(struct atomq_batch *b, struct atomq_delivery *d)
{
        struct atomq_frame f;
        struct dp_msg_in m;
        if (b->rec == NULL || b->off >= b->rec_len)
                return 0;
        const uint8_t *p = (const uint8_t *)b->rec + b->off;
        uint32_t left = b->rec_len - b->off;
        if (left < ATOMQ_FRAME_HDR_BYTES)
                return -EPROTO;
        memcpy(&f, p, sizeof(f));
        uint64_t bytes = atomq_frame_bytes(f.subject_len, f.headers_len, f.payload_len);
        if (bytes > left || atomq_frame_check(p, (size_t)bytes, &f) != ATOMQ_FRAME_OK)
                return -EPROTO;
        dp_frame_read(&f, p, &m);
        *d = (struct atomq_delivery){
                .subject = m.subject, .subject_len = m.subject_len,
                .headers = p + ATOMQ_FRAME_HDR_BYTES + f.subject_len,
                .headers_len = m.headers_len, .data = m.payload, .len = m.payload_len,
                .entity = f.handle, .seq = f.seq, .reply = m.reply,
        };
        if (f.flags & ATOMQ_FRAME_F_REDELIVERY)
                d->flags = ATOMQ_DELIVERY_F_REDELIVERY;
        b->off += (uint32_t)bytes;
        return 1;
}

void atomq_udp_batch_release(struct atomq_udp *u, struct atomq_batch *b)
{
        (void)u; /* the batch buffer is reused by the next fetch only */
        if (b != NULL) {
                b->rec = NULL;
                b->worker = -1;
        }
}

int atomq_udp_ack(struct atomq_udp *u, uint64_t handle, uint64_t seq)
{
        /* reply carries the message's seq. */
        struct dp_msg_in m = { .reply = seq, .storage = -1 };
        if (handle == 0)
                return -EINVAL;
        return atomq_udp_ask(u, ATOMQ_OP_ACK, 0, handle, &m, NULL);
}

/* ---- request / reply -------------------------------------------------------------- */

int atomq_udp_request(struct atomq_udp *u, const char *subject, const void *data, uint32_t len,
                      uint32_t timeout_ms, uint32_t sid, uint64_t *inbox)
{
        size_t slen = subject != NULL ? strlen(subject) : 0;
        struct dp_msg_in m = { .subject = subject, .subject_len = (uint32_t)slen,
                               .payload = data, .payload_len = len, .ttl_ms = timeout_ms,
                               .storage = -1 };
        struct atomq_udp_req *r = NULL;
        uint64_t now = shm_clock_ns();
        if (!atomq_subject_ok(subject, slen, false) || timeout_ms == 0)
                return -EINVAL;
        if (atomq_udp_lapsed(u, now))
                return -ECONNRESET;
        for (uint32_t i = 0; i < ATOMQ_UDP_REQUESTS_MAX && r == NULL; i++)
                if (u->reqs[i].seq == 0)
                        r = &u->reqs[i];
        if (r == NULL)
                return -EBUSY;
        uint64_t seq = u->next_seq + 1;
        /* ttl_ms is the wait the server gives it (at most 600 s there). */
        int rc = atomq_udp_build(r->buf, u->session, ATOMQ_OP_REQUEST, 0, 0, seq, &m, &r->len);
        if (rc != 0)
                return rc;
        u->next_seq = seq;
        uint64_t wait_ns = (uint64_t)timeout_ms * ATOMQ_UDP_MS;
        *r = (struct atomq_udp_req){ .seq = seq, .sid = sid, .len = r->len, .buf = r->buf,
                                     .rto_ns = ATOMQ_UDP_RTO_MIN_NS, .next_tx_ns = now,
                                     .end_ns = now + wait_ns,
                                     .give_up_ns = now + wait_ns + ATOMQ_UDP_REQUEST_GRACE_NS };
        /* The first copy goes now; the timers send the others. */
        (void)atomq_udp_timers(u, now);
        if (inbox != NULL)
                *inbox = seq;
        /* How many responders it reached is not known here (the protocol
         * answers with the reply itself): 1 means sent. */
        return 1;
}

int atomq_udp_reply(struct atomq_udp *u, const struct atomq_delivery *d, const void *data,
                    uint32_t len)
{
        if (d->reply_subject != NULL && d->reply_subject_len != 0) {
                /* A publish on the reply subject, acknowledged (ACK_REQ and a
                 * seq) so it is retransmitted and executed once. */
                struct dp_msg_in m = { .subject = d->reply_subject,
                                       .subject_len = d->reply_subject_len, .payload = data,
                                       .payload_len = len, .storage = -1 };
                if (!atomq_subject_ok(d->reply_subject, d->reply_subject_len, false))
                        return -EINVAL;
                return atomq_udp_ask(u, ATOMQ_OP_PUB, ATOMQ_FRAME_F_ACK_REQ, 0, &m, NULL);
        }
        if (d->reply == 0)
                return -EINVAL;
        return atomq_udp_send(u, d->reply, NULL, NULL, data, len, NULL, NULL);
}

