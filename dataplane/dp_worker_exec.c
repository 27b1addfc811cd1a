/* dp_worker_exec.c - executing commands on the worker's own shard and
 * writing their completions.
 *
 * The completion is reserved before the command runs: if the client's ring
 * has no room, nothing is done and the command waits in its ring (held
 * back, see dp_worker.c). So every command that runs gets its completion,
 * and none runs twice. Completions of fixed size are written straight into
 * the ring (a stat answer is a completion and a struct dp_cpl_stat); a
 * fetch answer, whose size is known only at the end, is built in the
 * worker's scratch buffer. A command that names its entity by name rather
 * than handle is resolved here, on the owner (dp_exec_target).
 */
#include "dataplane/dp_worker_pvt.h"

#include <errno.h>
#include <string.h>

static void dp_cpl_begin(const struct dp_worker *w, struct dp_cpl *c, const struct dp_cmd *h)
{
        *c = (struct dp_cpl){ .magic = DP_CPL_MAGIC, .version = DP_CMD_VERSION, .op = h->op,
                              .req_id = h->req_id, .worker = (uint16_t)w->index };
}

static void dp_cpl_commit(struct dp_worker *w, struct shm_vring *r, uint16_t client)
{
        shm_vring_commit(r, DP_REC_CPL);
        dp_counter_inc(&w->stats->cpls);
        dp_bit_set(w->cpl_dirty, client);
}

/* The client's ring could not take a completion. A full ring holds the
 * input back until the client reads. A corrupt ring (the client wrote over
 * its header) never takes one again: holding would stall every other
 * client behind it forever, so the command is dropped and counted. */
static enum dp_take dp_cpl_unavailable(struct dp_worker *w, const struct shm_vring *r)
{
        if (r->reserve_err == -ENOBUFS) {
                dp_counter_inc(&w->stats->cpl_full);
                return DP_TAKE_HOLD;
        }
        dp_counter_inc(&w->stats->ring_errors);
        dp_counter_inc(&w->stats->cpl_lost);
        return DP_TAKE_DROP;
}

enum dp_take dp_worker_fail(struct dp_worker *w, const struct dp_cmd *h, int status)
{
        struct shm_vring *r = &w->cpl[h->client];
        struct dp_cpl *c = shm_vring_reserve(r, sizeof(*c));
        if (c == NULL)
                return dp_cpl_unavailable(w, r);
        dp_cpl_begin(w, c, h);
        c->status = status;
        dp_cpl_commit(w, r, h->client);
        return DP_TAKE_DONE;
}

static int dp_exec_create(struct dp_worker *w, const struct dp_cmd_view *v, struct dp_cpl *c)
{
        const struct dp_cmd_create *a = &v->hdr->args.create;
        const uint8_t known = DP_CMD_CREATE_F_STORAGE | DP_CMD_CREATE_F_TTL_IDLE |
                              DP_CMD_CREATE_F_LEAST_LOADED;
        if (a->flags & ~known)
                return -EINVAL;
        struct dp_create_opts o = {
                .mode = a->mode,
                .storage = a->storage,
                .storage_set = (a->flags & DP_CMD_CREATE_F_STORAGE) != 0,
                .overflow = a->overflow,
                .ttl_idle = (a->flags & DP_CMD_CREATE_F_TTL_IDLE) != 0,
                .least_loaded = (a->flags & DP_CMD_CREATE_F_LEAST_LOADED) != 0,
                .ttl_ms = a->ttl_ms,
                .max_msgs = a->max_msgs,
                .max_bytes = a->max_bytes,
        };
        return dp_shard_create(&w->shard, &o, v->name, v->hdr->name_len, &c->handle);
}

/* The entity a command names: its handle, or with handle 0 its name,
 * looked up here on the owner's shard (dp_engine_owner sent it here). */
static int dp_exec_target(struct dp_worker *w, const struct dp_cmd_view *v, uint64_t *h)
{
        *h = v->hdr->handle;
        if (*h != DP_HANDLE_NONE)
                return 0;
        if (v->hdr->name_len == 0)
                return -EINVAL;
        return dp_table_find(&w->shard.table, v->name, v->hdr->name_len, h);
}

static int dp_exec_send(struct dp_worker *w, const struct dp_cmd_view *v, struct dp_cpl *c)
{
        int rc = dp_exec_target(w, v, &c->handle);
        if (rc != 0)
                return rc;
        return dp_shard_send(&w->shard, c->handle, &v->msg, &c->seq);
}

static int dp_exec_destroy(struct dp_worker *w, const struct dp_cmd_view *v, struct dp_cpl *c)
{
        int rc = dp_exec_target(w, v, &c->handle);
        if (rc != 0)
                return rc;
        return dp_shard_destroy(&w->shard, c->handle);
}

/* Storage is checked before anything changes, so a set with a bad storage
 * leaves the TTL alone too. */
static int dp_exec_set(struct dp_worker *w, const struct dp_cmd_view *v, struct dp_cpl *c)
{
        const struct dp_cmd_set *a = &v->hdr->args.set;
        const uint8_t known = DP_CMD_SET_F_STORAGE | DP_CMD_SET_F_TTL;
        if (a->flags == 0 || (a->flags & ~known))
                return -EINVAL;
        int rc = dp_exec_target(w, v, &c->handle);
        if (rc != 0)
                return rc;
        if (a->flags & DP_CMD_SET_F_STORAGE) {
                rc = dp_shard_set_storage(&w->shard, c->handle, a->storage);
                if (rc != 0)
                        return rc;
        }
        if (a->flags & DP_CMD_SET_F_TTL)
                rc = dp_shard_set_ttl(&w->shard, c->handle, a->ttl_ms);
        return rc;
}

/* Copies the entity's record into the answer after the completion. */
static int dp_exec_stat(struct dp_worker *w, const struct dp_cmd_view *v, struct dp_cpl *c)
{
        struct dp_entity *e;
        int rc = dp_exec_target(w, v, &c->handle);
        if (rc == 0)
                rc = dp_table_get(&w->shard.table, c->handle, &e);
        if (rc != 0)
                return rc;
        struct dp_cpl_stat *st = (struct dp_cpl_stat *)(c + 1);
        *st = (struct dp_cpl_stat){
                .mode = e->mode, .storage = e->storage, .retention = e->retention,
                .routing = e->routing, .delivery = e->delivery, .overflow = e->overflow,
                .lifecycle = e->lifecycle, .flags = e->flags, .msgs = e->msgs,
                .bytes = e->bytes, .max_msgs = e->max_msgs, .max_bytes = e->max_bytes,
                .ttl_ms = e->ttl_ms, .parties = e->parties, .seq = e->seq,
        };
        c->msgs_bytes = (uint32_t)sizeof(*st);
        return 0;
}

static int dp_exec_subscribe(struct dp_worker *w, const struct dp_cmd_view *v,
                             struct dp_cpl *c)
{
        const struct dp_cmd_sub *a = &v->hdr->args.sub;
        uint32_t id;
        if (v->hdr->name_len == 0)
                return -EINVAL;
        int rc = dp_shard_subscribe(&w->shard, v->name, v->hdr->name_len, a->group,
                                    a->endpoint, a->sid, v->hdr->handle, &id);
        if (rc == 0)
                c->handle = dp_sub_id_make(w->index, id);
        return rc;
}

/* Runs a command whose completion is one struct dp_cpl; returns its status. */
static int dp_exec_simple(struct dp_worker *w, const struct dp_cmd_view *v, struct dp_cpl *c)
{
        const struct dp_cmd *h = v->hdr;
        switch (h->op) {
        case ATOMQ_OP_CREATE:
                return dp_exec_create(w, v, c);
        case ATOMQ_OP_DESTROY:
                return dp_exec_destroy(w, v, c);
        case ATOMQ_OP_SEND:
                return dp_exec_send(w, v, c);
        case DP_OP_SET:
                return dp_exec_set(w, v, c);
        case ATOMQ_OP_SUB:
                return dp_exec_subscribe(w, v, c);
        case ATOMQ_OP_UNSUB:
                return dp_shard_unsubscribe(&w->shard, dp_handle_slot(h->handle));
        case ATOMQ_OP_ACK:
                return dp_shard_ack(&w->shard, h->handle, h->seq);
        case ATOMQ_OP_PUB: {
                /* This shard's part; dp_worker_publish fans it out. */
                int n = dp_shard_publish(&w->shard, &v->msg);
                c->count = n > 0 ? (uint32_t)n : 0;
                return n < 0 ? n : 0;
        }
        default:
                /* Fetch has its own path; dp_cmd_parse lets no other op
                 * through. */
                return -EINVAL;
        }
}

/* Appends message f (one reference, which is put) to a fetch answer. */
static void dp_fetch_append(struct dp_worker *w, struct dp_cpl *c, uint32_t room,
                            const struct dp_fetched *f, uint64_t handle)
{
        uint32_t len = 0;
        const uint8_t *data = shm_slab_data(&w->shard.bufs, f->buf, &len);
        struct atomq_frame fr;
        uint8_t *out = (uint8_t *)(c + 1) + c->msgs_bytes;
        uint64_t padded = shm_align_up(len, 8);
        if (data == NULL || len < sizeof(fr) || padded > room - c->msgs_bytes) {
                /* Only a message that came by another path than a command
                 * can be larger than DP_CMD_FRAME_MAX. At-least-once: it
                 * stays in flight and comes again after ack-wait;
                 * at-most-once: it is gone, and counted here. */
                dp_counter_inc(&w->stats->fetch_overflow);
                shm_slab_put(&w->shard.bufs, f->buf);
                return;
        }
        memcpy(&fr, data, sizeof(fr));
        fr.op = ATOMQ_OP_MSG;
        fr.handle = handle;
        fr.seq = f->seq;
        if (f->deliveries > 1)
                fr.flags |= ATOMQ_FRAME_F_REDELIVERY;
        memcpy(out, &fr, sizeof(fr));
        memcpy(out + sizeof(fr), data + sizeof(fr), len - sizeof(fr));
        memset(out + len, 0, padded - len);
        c->msgs_bytes += (uint32_t)padded;
        c->count++;
        shm_slab_put(&w->shard.bufs, f->buf);
}

/* Fills the fetch answer in the scratch buffer; returns its status. */
static int dp_fetch_fill(struct dp_worker *w, const struct dp_cmd_view *v, struct dp_cpl *c)
{
        const struct dp_cmd *h = v->hdr;
        const uint32_t room = DP_CPL_BYTES_MAX - (uint32_t)sizeof(*c);
        uint32_t max = h->args.fetch.max;
        struct dp_fetched got[DP_FETCH_MAX];
        if (max == 0 || max > DP_FETCH_MAX)
                return -EINVAL;
        int rc = dp_exec_target(w, v, &c->handle);
        if (rc != 0)
                return rc;
        while (c->count < max) {
                /* Take only as many as surely fit, each up to the largest
                 * frame a command carries; small messages make this loop
                 * come round until the answer is about half full. */
                uint32_t fit = (room - c->msgs_bytes) / DP_CMD_FRAME_MAX;
                uint32_t want = max - c->count < fit ? max - c->count : fit;
                if (want == 0)
                        break;
                int n = dp_shard_fetch(&w->shard, c->handle, h->args.fetch.end, got, want);
                if (n < 0)
                        return c->count == 0 ? n : 0;
                for (int i = 0; i < n; i++)
                        dp_fetch_append(w, c, room, &got[i], c->handle);
                if ((uint32_t)n < want)
                        break;
        }
        return 0;
}

/* A fetch: room for the largest answer was checked by reserving it (r holds
 * that reservation); the answer is built aside, then written at its real
 * size. The second reserve abandons the first and cannot fail for want of
 * room: it asks for less, and the client only ever frees room. */
static enum dp_take dp_exec_fetch(struct dp_worker *w, const struct dp_cmd_view *v,
                                  struct shm_vring *r)
{
        const struct dp_cmd *h = v->hdr;
        struct dp_cpl *c = (struct dp_cpl *)w->cpl_scratch;
        dp_cpl_begin(w, c, h);
        c->status = dp_fetch_fill(w, v, c);
        uint32_t len = (uint32_t)sizeof(*c) + c->msgs_bytes;
        void *p = shm_vring_reserve(r, len);
        if (p == NULL) {
                /* Only a client that moved its tail backwards gets here;
                 * the fetch ran, so the input is not held. */
                dp_counter_inc(&w->stats->ring_errors);
                dp_counter_inc(&w->stats->cpl_lost);
                return DP_TAKE_DONE;
        }
        memcpy(p, c, len);
        dp_cpl_commit(w, r, h->client);
        return DP_TAKE_DONE;
}

enum dp_take dp_worker_exec(struct dp_worker *w, const struct dp_cmd_view *v)
{
        const struct dp_cmd *h = v->hdr;
        struct shm_vring *r = &w->cpl[h->client];
        uint32_t room = (uint32_t)sizeof(struct dp_cpl);
        if (h->op == ATOMQ_OP_FETCH)
                room = DP_CPL_BYTES_MAX;
        else if (h->op == DP_OP_STAT)
                room += (uint32_t)sizeof(struct dp_cpl_stat);
        struct dp_cpl *c = shm_vring_reserve(r, room);
        if (c == NULL)
                return dp_cpl_unavailable(w, r);
        dp_counter_inc(&w->stats->executed);
        if (h->op == ATOMQ_OP_FETCH)
                return dp_exec_fetch(w, v, r);
        dp_cpl_begin(w, c, h);
        if (h->op == DP_OP_STAT) {
                /* Always answered at full size (the record zeroed when the
                 * entity is not found): one reservation, nothing to shrink. */
                memset(c + 1, 0, sizeof(struct dp_cpl_stat));
                c->status = dp_exec_stat(w, v, c);
        } else {
                c->status = dp_exec_simple(w, v, c);
        }
        dp_cpl_commit(w, r, h->client);
        return DP_TAKE_DONE;
}
