/* dp_worker_mesh.c - the mesh: one SPSC record ring (shm_vring) for every
 * ordered pair of workers, and what travels on it.
 *
 * Two kinds of record, both a command record as the client wrote it:
 *  - DP_REC_MESH_EXEC: a command for an entity of the receiving worker's
 *    shard, taken from another worker's command ring. The receiver executes
 *    it and writes the completion to the client, as if it had come from its
 *    own ring.
 *  - DP_REC_MESH_FANOUT: a publish, already matched on the sender's shard.
 *    The receiver matches it on its own shard and answers nothing (the
 *    sender answered). One sender's publishes to one subject cross one
 *    FIFO ring, so they reach every shard in the order they were sent.
 *
 * Full rings: a worker never blocks on a ring and never drops a record. A
 * command whose output ring (mesh or completion) is full stays in its input
 * ring, and that input is not drained further this pass; the next pass
 * tries again. Dropping would break "every command gets one completion" and
 * a publisher's order; retrying forever inside the pass would stall the
 * worker's other inputs. Holding back cannot deadlock because handling a
 * mesh record never writes to the mesh (it writes only to completion
 * rings, which clients drain): so mesh rings always drain while clients
 * read their completions, whoever else is held back. The price is head-of-
 * line blocking: a client that never reads its completions stops, in the
 * end, the command rings that carry work for it.
 *
 * Mesh records are parsed in place: only workers of this dataplane write
 * mesh rings, and each record was parsed (a private copy) by its sender.
 */
#include "dataplane/dp_worker_pvt.h"

#include <errno.h>
#include <string.h>

#include "shm/shm_clock.h"

#include "dataplane/dp_nats_aq.h"
#include "dataplane/dp_shard_pvt.h"
#include "dataplane/dp_subject.h"

static enum dp_take dp_mesh_unavailable(struct dp_worker *w, const struct shm_vring *r)
{
        /* -ENOBUFS: full, the peer drains it soon. -EPROTO: the peer's tail
         * is impossible, a bug of ours or memory corruption; holding keeps
         * the command for when the dataplane is restarted. Lengths never
         * exceed the ring's record bound (checked at init). */
        if (r->reserve_err == -ENOBUFS)
                dp_counter_inc(&w->stats->mesh_full);
        else
                dp_counter_inc(&w->stats->ring_errors);
        return DP_TAKE_HOLD;
}

enum dp_take dp_worker_forward(struct dp_worker *w, uint32_t owner, const void *rec,
                               uint32_t len)
{
        DP_ASSERT(owner != w->index);
        DP_ASSERT(owner < w->workers);
        struct shm_vring *r = &w->mesh_out[owner];
        void *p = shm_vring_reserve(r, len);
        if (p == NULL)
                return dp_mesh_unavailable(w, r);
        memcpy(p, rec, len);
        shm_vring_commit(r, DP_REC_MESH_EXEC);
        dp_bit_set(w->mesh_dirty, owner);
        dp_counter_inc(&w->stats->forwarded);
        dp_counter_inc(&w->stats->mesh_out);
        return DP_TAKE_DONE;
}

/* A publish too large for a mesh record crosses by reference: the sender's
 * shard buffer, with one reference taken for each receiver, which reads the
 * frame from the sender's slab (buffers are immutable once published and
 * their pools serve any thread) and puts its reference back. */
struct dp_mesh_ref {
        uint32_t sender;  /* the worker whose shard holds buf */
        uint32_t buf;
        uint64_t pub_id;
        uint32_t flags;   /* DP_CMD_F_COUNT */
        uint32_t reserved;
};
_Static_assert(sizeof(struct dp_mesh_ref) == 24, "mesh reference record");

/* What a shard delivered of a publish whose origin asked (DP_PUB_F_COUNT). */
struct dp_mesh_count {
        uint64_t pub_id;
        uint32_t delivered;
        uint32_t reserved;
};

/* Tells the publish's origin how many this shard delivered. A full ring
 * loses the answer: the origin then sends no 503 (the request times out
 * as it would have), which is the safe side. */
static void dp_mesh_count_reply(struct dp_worker *w, uint64_t pub_id, int delivered)
{
        uint32_t origin = (uint32_t)(pub_id >> 48) - 1;
        if (origin >= w->workers || origin == w->index)
                return;
        struct dp_mesh_count c = { .pub_id = pub_id, .delivered = delivered > 0 ? (uint32_t)delivered : 0 };
        void *p = shm_vring_reserve(&w->mesh_out[origin], sizeof(c));
        if (p == NULL) {
                dp_counter_inc(&w->stats->mesh_full);
                return;
        }
        memcpy(p, &c, sizeof(c));
        shm_vring_commit(&w->mesh_out[origin], DP_REC_MESH_COUNT);
        dp_bit_set(w->mesh_dirty, origin);
        dp_counter_inc(&w->stats->mesh_out);
}

/* Publishes the fanout records reserved in every outbound ring. */
static void dp_mesh_fanout_commit_as(struct dp_worker *w, uint32_t type)
{
        for (uint32_t j = 0; j < w->workers; j++) {
                if (j == w->index)
                        continue;
                shm_vring_commit(&w->mesh_out[j], type);
                dp_bit_set(w->mesh_dirty, j);
                dp_counter_inc(&w->stats->mesh_out);
        }
}

static void dp_mesh_fanout_commit(struct dp_worker *w)
{
        dp_mesh_fanout_commit_as(w, DP_REC_MESH_FANOUT);
}

enum dp_take dp_worker_publish(struct dp_worker *w, const struct dp_cmd_view *v,
                               const void *rec, uint32_t len)
{
        const struct dp_msg_in *m = &v->msg;
        /* A bad subject is refused once, here, not once per shard. */
        if (dp_subject_check(m->subject, m->subject_len, false) != 0)
                return dp_worker_fail(w, v->hdr, -EINVAL);
        /* All or nothing: room in every outbound ring first (reservations
         * that are not committed are simply abandoned), so a publish is
         * never half fanned out and then retried. */
        for (uint32_t j = 0; j < w->workers; j++) {
                if (j == w->index)
                        continue;
                void *p = shm_vring_reserve(&w->mesh_out[j], len);
                if (p == NULL)
                        return dp_mesh_unavailable(w, &w->mesh_out[j]);
                memcpy(p, rec, len);
        }
        enum dp_take t = dp_worker_exec(w, v);
        if (t != DP_TAKE_DONE)
                return t;
        dp_mesh_fanout_commit(w);
        return DP_TAKE_DONE;
}

/* Waits until every outbound ring has room for len bytes: wakes the peers
 * that must drain them and drains our own inbound rings meanwhile (a peer
 * may be waiting on us the same way). Nothing is reserved when it returns:
 * the drains may publish and so reserve in these rings themselves. 0, or
 * -ENOBUFS after DP_MESH_WAIT_NS, or a ring's -EPROTO. */
static int dp_mesh_room_wait(struct dp_worker *w, uint32_t len)
{
        uint64_t deadline_ns = 0;
        for (uint32_t j = 0; j < w->workers;) {
                if (j == w->index || shm_vring_reserve(&w->mesh_out[j], len) != NULL) {
                        j++;
                        continue;
                }
                if (w->mesh_out[j].reserve_err != -ENOBUFS)
                        return w->mesh_out[j].reserve_err;
                uint64_t now_ns = shm_clock_ns();
                if (deadline_ns == 0)
                        deadline_ns = now_ns + DP_MESH_WAIT_NS;
                /* A publish made by a record this wait drains does not wait
                 * in turn: one level of draining, no recursion. */
                if (now_ns >= deadline_ns || w->mesh_waiting)
                        return -ENOBUFS;
                dp_counter_inc(&w->stats->mesh_full);
                shm_wake_notify(w->peer_wake[j]);
                /* Inside a drain (a mesh record being handled publishes) the
                 * inbound rings are not drained again: their current record
                 * is not released yet and would be handled twice. */
                int drained = 0;
                if (!w->mesh_draining) {
                        w->mesh_waiting = true;
                        drained = dp_worker_mesh_drain(w);
                        w->mesh_waiting = false;
                }
                if (drained <= 0)
                        shm_cpu_relax();
                j = 0; /* the drain may have used room anywhere */
        }
        return 0;
}

int dp_worker_forward_msg(struct dp_worker *w, uint32_t owner, const struct dp_msg_in *m,
                          uint32_t type, uint32_t ref_type)
{
        struct shm_vring *r = &w->mesh_out[owner];
        uint32_t len = dp_cmd_bytes(0, m);
        if (len != 0) {
                struct dp_cmd h = { .op = ATOMQ_OP_PUB, .flags = DP_CMD_F_QUIET };
                void *p = shm_vring_reserve(r, len);
                if (p == NULL)
                        return -ENOBUFS;
                dp_cmd_encode(p, len, &h, NULL, m);
        } else {
                uint32_t buf;
                struct dp_mesh_ref *ref = shm_vring_reserve(r, sizeof(*ref));
                if (ref == NULL)
                        return -ENOBUFS;
                int rc = dp_buf_make(&w->shard, m, &buf);
                if (rc != 0)
                        return rc;
                *ref = (struct dp_mesh_ref){ .sender = w->index, .buf = buf };
                type = ref_type;
        }
        shm_vring_commit(r, type);
        dp_bit_set(w->mesh_dirty, owner);
        dp_counter_inc(&w->stats->mesh_out);
        return 0;
}

/* The message a reference record names, in the sender's shard: the frame
 * read into *m (valid until its reference is put). NULL when bad. */
static struct shm_slab *dp_mesh_ref_open(struct dp_worker *w, const struct shm_vring_rec *rec,
                                         struct dp_mesh_ref *ref, struct dp_msg_in *m)
{
        if (rec->len != sizeof(*ref))
                return NULL;
        memcpy(ref, rec->data, sizeof(*ref));
        if (ref->sender >= w->workers || ref->sender == w->index)
                return NULL;
        struct shm_slab *bufs = &w->engine->w[ref->sender].shard.bufs;
        uint32_t len;
        const uint8_t *p = shm_slab_data(bufs, ref->buf, &len);
        struct atomq_frame f;
        if (p == NULL || atomq_frame_check(p, len, &f) != ATOMQ_FRAME_OK) {
                if (p != NULL)
                        shm_slab_put(bufs, ref->buf);
                return NULL;
        }
        dp_frame_read(&f, p, m);
        return bufs;
}

/* The by-reference fanout of dp_worker_publish_msg (see dp_mesh_ref). */
static int dp_publish_msg_by_ref(struct dp_worker *w, const struct dp_msg_in *m,
                                 uint32_t origin, uint32_t flags)
{
        uint32_t buf;
        int rc = dp_mesh_room_wait(w, sizeof(struct dp_mesh_ref));
        if (rc == 0)
                rc = dp_buf_make(&w->shard, m, &buf);
        if (rc != 0)
                return rc;
        DP_VERIFY(shm_slab_ref(&w->shard.bufs, buf, w->workers - 1) == 0);
        const struct dp_mesh_ref ref = { .sender = w->index, .buf = buf, .pub_id = m->pub_id,
                                         .flags = flags & DP_PUB_F_COUNT ? DP_CMD_F_COUNT : 0 };
        for (uint32_t j = 0; j < w->workers; j++) {
                if (j == w->index)
                        continue;
                void *p = shm_vring_reserve(&w->mesh_out[j], sizeof(ref));
                DP_VERIFY(p != NULL);
                memcpy(p, &ref, sizeof(ref));
        }
        w->publish_origin = origin;
        rc = dp_shard_publish_valid(&w->shard, m);
        w->publish_origin = 0;
        shm_slab_put(&w->shard.bufs, buf);
        dp_mesh_fanout_commit_as(w, DP_REC_MESH_FANOUT_REF);
        return rc;
}

int dp_worker_publish_msg(struct dp_worker *w, const struct dp_msg_in *in, uint32_t origin,
                          uint32_t flags)
{
        /* One id on every shard, so queue groups spread over shards pick the
         * same serving shard (dp_groups.h). */
        struct dp_msg_in stamped = *in;
        stamped.pub_id = (uint64_t)(w->index + 1) << 48 | (++w->pub_seq & ((1ull << 48) - 1));
        const struct dp_msg_in *m = &stamped;
        w->last_pub_id = stamped.pub_id;
        if (w->workers > 1) {
                uint32_t len = dp_cmd_bytes(0, m);
                if (len == 0)
                        return dp_frame_bytes(m) != 0 ? dp_publish_msg_by_ref(w, m, origin, flags)
                                                      : -EMSGSIZE;
                /* Quiet, and from the control column: no completion is ever
                 * written for a fanout (dp_mesh_fanout answers nothing). */
                struct dp_cmd h = { .op = ATOMQ_OP_PUB, .flags = DP_CMD_F_QUIET | DP_CMD_F_PUB_ID,
                                    .seq = m->pub_id };
                if (flags & DP_PUB_F_COUNT)
                        h.flags |= DP_CMD_F_COUNT;
                int rc = dp_mesh_room_wait(w, len);
                if (rc != 0)
                        return rc;
                /* No drain from here to the commit: the room is ours. */
                for (uint32_t j = 0; j < w->workers; j++) {
                        if (j == w->index)
                                continue;
                        void *p = shm_vring_reserve(&w->mesh_out[j], len);
                        DP_VERIFY(p != NULL);
                        dp_cmd_encode(p, len, &h, NULL, m);
                }
        }
        w->publish_origin = origin;
        int rc = dp_shard_publish_valid(&w->shard, m);
        w->publish_origin = 0;
        if (w->workers > 1)
                dp_mesh_fanout_commit(w);
        return rc;
}

static enum dp_take dp_mesh_fanout(struct dp_worker *w, const struct shm_vring_rec *rec)
{
        struct dp_cmd_view v;
        if (dp_cmd_parse(rec->data, rec->len, w->clients_all, &v) != 0 ||
            v.hdr->op != ATOMQ_OP_PUB) {
                dp_counter_inc(&w->stats->bad_records);
                return DP_TAKE_DONE;
        }
        if (v.hdr->flags & DP_CMD_F_PUB_ID)
                v.msg.pub_id = v.hdr->seq;
        /* Failures (no buffer, nobody subscribed) are the shard's counters. */
        int delivered = dp_shard_publish(&w->shard, &v.msg);
        if ((v.hdr->flags & (DP_CMD_F_COUNT | DP_CMD_F_PUB_ID)) == (DP_CMD_F_COUNT | DP_CMD_F_PUB_ID))
                dp_mesh_count_reply(w, v.msg.pub_id, delivered);
        dp_counter_inc(&w->stats->fanouts);
        return DP_TAKE_DONE;
}

/* A reference record: the message it names handled as a publish (fanout)
 * or as an $AQ request for this owner (dp_nats_aq.c), then its reference
 * given back. */
static enum dp_take dp_mesh_ref_handle(struct dp_worker *w, const struct shm_vring_rec *rec,
                                       bool aq)
{
        struct dp_mesh_ref ref;
        struct dp_msg_in m;
        struct shm_slab *bufs = dp_mesh_ref_open(w, rec, &ref, &m);
        if (bufs == NULL) {
                dp_counter_inc(&w->stats->bad_records);
                return DP_TAKE_DONE;
        }
        if (aq) {
                dp_nats_aq_exec(w, &m);
        } else {
                m.pub_id = ref.pub_id;
                int delivered = dp_shard_publish(&w->shard, &m);
                if (ref.flags & DP_CMD_F_COUNT)
                        dp_mesh_count_reply(w, ref.pub_id, delivered);
                dp_counter_inc(&w->stats->fanouts);
        }
        shm_slab_put(bufs, ref.buf);
        return DP_TAKE_DONE;
}

static enum dp_take dp_mesh_exec(struct dp_worker *w, const struct shm_vring_rec *rec)
{
        struct dp_cmd_view v;
        uint32_t owner;
        int rc = dp_cmd_parse(rec->data, rec->len, w->clients_all, &v);
        if (rc == -EPROTO) {
                dp_counter_inc(&w->stats->bad_records);
                return DP_TAKE_DONE;
        }
        if (rc != 0)
                return dp_worker_fail(w, v.hdr, rc);
        /* The sender computed the owner with the same pure function; a
         * mismatch is answered, never forwarded again (no ping-pong). */
        rc = dp_engine_owner(w->engine, v.hdr, v.name, &owner);
        if (rc < 0 || (rc == 0 && owner != w->index) || v.hdr->op == ATOMQ_OP_PUB)
                return dp_worker_fail(w, v.hdr, rc < 0 ? rc : -EXDEV);
        return dp_worker_exec(w, &v);
}

/* An $AQ request a NATS client made on another worker: this worker owns
 * its entity (dp_nats_aq.c). Answered by a publish, not a completion. */
static enum dp_take dp_mesh_aq(struct dp_worker *w, const struct shm_vring_rec *rec)
{
        struct dp_cmd_view v;
        if (dp_cmd_parse(rec->data, rec->len, w->clients_all, &v) != 0 ||
            v.hdr->op != ATOMQ_OP_PUB) {
                dp_counter_inc(&w->stats->bad_records);
                return DP_TAKE_DONE;
        }
        dp_nats_aq_exec(w, &v.msg);
        return DP_TAKE_DONE;
}

static enum dp_take dp_mesh_one(struct dp_worker *w, const struct shm_vring_rec *rec)
{
        if (rec->type == DP_REC_MESH_AQ)
                return dp_mesh_aq(w, rec);
        if (rec->type == DP_REC_MESH_FANOUT_REF || rec->type == DP_REC_MESH_AQ_REF)
                return dp_mesh_ref_handle(w, rec, rec->type == DP_REC_MESH_AQ_REF);
        if (rec->type == DP_REC_MESH_COUNT) {
                struct dp_mesh_count c;
                if (rec->len != sizeof(c)) {
                        dp_counter_inc(&w->stats->bad_records);
                        return DP_TAKE_DONE;
                }
                memcpy(&c, rec->data, sizeof(c));
                if (w->nats != NULL)
                        dp_nats_count_reply(w->nats, c.pub_id, c.delivered);
                return DP_TAKE_DONE;
        }
        if (rec->type == DP_REC_MESH_FANOUT)
                return dp_mesh_fanout(w, rec);
        if (rec->type == DP_REC_MESH_EXEC)
                return dp_mesh_exec(w, rec);
        dp_counter_inc(&w->stats->bad_records);
        return DP_TAKE_DONE;
}

int dp_worker_mesh_drain(struct dp_worker *w)
{
        int work = 0, err = 0;
        w->mesh_draining = true;
        for (uint32_t j = 0; j < w->workers; j++) {
                if (j == w->index)
                        continue;
                struct shm_vring *r = &w->mesh_in[j];
                for (unsigned n = 0; n < DP_MESH_BURST; n++) {
                        struct shm_vring_rec rec;
                        int rc = shm_vring_peek(r, &rec);
                        if (rc == 0)
                                break;
                        if (rc < 0) {
                                dp_counter_inc(&w->stats->ring_errors);
                                err = rc;
                                break;
                        }
                        if (dp_mesh_one(w, &rec) == DP_TAKE_HOLD) {
                                w->blocked = true;
                                break;
                        }
                        shm_vring_release(r);
                        dp_counter_inc(&w->stats->mesh_in);
                        work++;
                }
        }
        w->mesh_draining = false;
        return work > 0 ? work : err;
}
