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

/* Publishes the fanout records reserved in every outbound ring. */
static void dp_mesh_fanout_commit(struct dp_worker *w)
{
        for (uint32_t j = 0; j < w->workers; j++) {
                if (j == w->index)
                        continue;
                shm_vring_commit(&w->mesh_out[j], DP_REC_MESH_FANOUT);
                dp_bit_set(w->mesh_dirty, j);
                dp_counter_inc(&w->stats->mesh_out);
        }
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
                w->mesh_waiting = true;
                int drained = dp_worker_mesh_drain(w);
                w->mesh_waiting = false;
                if (drained <= 0)
                        shm_cpu_relax();
                j = 0; /* the drain may have used room anywhere */
        }
        return 0;
}

int dp_worker_publish_msg(struct dp_worker *w, const struct dp_msg_in *m, uint32_t origin)
{
        if (w->workers > 1) {
                /* Quiet, and from the control column: no completion is ever
                 * written for a fanout (dp_mesh_fanout answers nothing). */
                struct dp_cmd h = { .op = ATOMQ_OP_PUB, .flags = DP_CMD_F_QUIET };
                uint32_t len = dp_cmd_bytes(0, m);
                if (len == 0)
                        return -EMSGSIZE;
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
        int rc = dp_shard_publish(&w->shard, m);
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
        /* Failures (no buffer, nobody subscribed) are the shard's counters. */
        (void)dp_shard_publish(&w->shard, &v.msg);
        dp_counter_inc(&w->stats->fanouts);
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
        return work > 0 ? work : err;
}
