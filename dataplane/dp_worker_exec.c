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
#include "dataplane/dp_disk.h"
#include "dataplane/dp_subject.h"

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
static enum dp_take dp_cpl_unavailable(struct dp_worker *w, const struct shm_vring *r,
                                       uint32_t client)
{
        if (r == NULL) {
                /* An agent that left (or went bad) while its command was
                 * on the way: nobody to answer. */
                dp_counter_inc(&w->stats->cpl_lost);
                return DP_TAKE_DROP;
        }
        if (r->reserve_err == -ENOBUFS) {
                dp_counter_inc(&w->stats->cpl_full);
                return DP_TAKE_HOLD;
        }
        dp_counter_inc(&w->stats->ring_errors);
        dp_counter_inc(&w->stats->cpl_lost);
        dp_worker_cpl_corrupt(w, client);
        return DP_TAKE_DROP;
}

enum dp_take dp_worker_fail(struct dp_worker *w, const struct dp_cmd *h, int status)
{
        struct shm_vring *r = dp_worker_cpl_ring(w, h->client);
        struct dp_cpl *c = r != NULL ? shm_vring_reserve(r, sizeof(*c)) : NULL;
        if (c == NULL)
                return dp_cpl_unavailable(w, r, h->client);
        dp_cpl_begin(w, c, h);
        c->status = status;
        dp_cpl_commit(w, r, h->client);
        return DP_TAKE_DONE;
}

static int dp_exec_create(struct dp_worker *w, const struct dp_cmd_view *v, struct dp_cpl *c)
{
        const struct dp_cmd_create *a = &v->hdr->args.create;
        const uint8_t known = DP_CMD_CREATE_F_STORAGE | DP_CMD_CREATE_F_TTL_IDLE |
                              DP_CMD_CREATE_F_LEAST_LOADED | DP_CMD_CREATE_SYNC_MASK;
        if (a->flags & ~known)
                return -EINVAL;
        struct dp_create_opts o = {
                .mode = a->mode,
                .storage = a->storage,
                .storage_set = (a->flags & DP_CMD_CREATE_F_STORAGE) != 0,
                .sync = (uint8_t)((a->flags & DP_CMD_CREATE_SYNC_MASK) >> DP_CMD_CREATE_SYNC_SHIFT),
                .overflow = a->overflow,
                .ttl_idle = (a->flags & DP_CMD_CREATE_F_TTL_IDLE) != 0,
                .least_loaded = (a->flags & DP_CMD_CREATE_F_LEAST_LOADED) != 0,
                .ttl_ms = a->ttl_ms,
                .max_msgs = a->max_msgs,
                .max_bytes = a->max_bytes,
        };
        int rc = dp_worker_agent_entity_take(w, v->hdr->client);
        if (rc != 0)
                return rc;
        rc = dp_shard_create(&w->shard, &o, v->name, v->hdr->name_len, &c->handle);
        dp_worker_agent_entity_made(w, v->hdr->client, rc, c->handle);
        return rc;
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

/* An agent's subscriptions and watches count against its quota: room is
 * taken before the subscription is made and given back if it fails. */
static int dp_quota_take(struct dp_worker *w, uint16_t client)
{
        if (client < w->clients)
                return 0;
        struct dp_agent_slot *s = dp_agent_slot_at(w->engine, client - w->clients);
        uint32_t n = atomic_fetch_add_explicit(&s->subs, 1, memory_order_relaxed);
        if (s->max_subs != 0 && n >= s->max_subs) {
                atomic_fetch_sub_explicit(&s->subs, 1, memory_order_relaxed);
                return -EDQUOT;
        }
        return 0;
}

static void dp_quota_give(struct dp_worker *w, uint16_t client)
{
        if (client >= w->clients)
                atomic_fetch_sub_explicit(&dp_agent_slot_at(w->engine, client - w->clients)->subs,
                                          1, memory_order_relaxed);
}

static int dp_exec_subscribe(struct dp_worker *w, const struct dp_cmd_view *v,
                             struct dp_cpl *c)
{
        const struct dp_cmd_sub *a = &v->hdr->args.sub;
        uint32_t id;
        if (v->hdr->name_len == 0)
                return -EINVAL;
        int rc = dp_quota_take(w, v->hdr->client);
        if (rc != 0)
                return rc;
        rc = dp_shard_subscribe(&w->shard, v->name, v->hdr->name_len, a->group, a->endpoint,
                                a->sid, v->hdr->handle, &id);
        if (rc == 0)
                c->handle = dp_sub_id_make(w->index, id);
        else
                dp_quota_give(w, v->hdr->client);
        return rc;
}

/* An agent removes only its own subscriptions. */
static int dp_exec_unsubscribe(struct dp_worker *w, const struct dp_cmd *h)
{
        uint32_t id = dp_handle_slot(h->handle), endpoint;
        if (h->client >= w->clients) {
                int rc = dp_shard_sub_endpoint(&w->shard, id, &endpoint);
                if (rc != 0)
                        return rc;
                if (endpoint != w->agent[h->client - w->clients].endpoint)
                        return -EPERM;
        }
        int rc = dp_shard_unsubscribe(&w->shard, id);
        if (rc == 0)
                dp_quota_give(w, h->client);
        return rc;
}

static int dp_exec_bind(struct dp_worker *w, const struct dp_cmd_view *v, struct dp_cpl *c)
{
        const struct dp_cmd_bind *a = &v->hdr->args.bind;
        int rc = dp_exec_target(w, v, &c->handle);
        if (rc != 0)
                return rc;
        if (v->hdr->op == DP_OP_UNBIND) {
                rc = dp_shard_unbind(&w->shard, c->handle, a->endpoint, a->sid);
                if (rc == 0)
                        dp_quota_give(w, v->hdr->client);
                return rc;
        }
        if (a->hold > 1 || a->reserved[0] != 0)
                return -EINVAL;
        rc = dp_quota_take(w, v->hdr->client);
        if (rc != 0)
                return rc;
        struct dp_bind b = { .endpoint = a->endpoint, .sid = a->sid, .group = a->group,
                             .hold = a->hold != 0, .end = a->end };
        rc = dp_shard_bind(&w->shard, c->handle, &b);
        if (rc != 0)
                dp_quota_give(w, v->hdr->client);
        return rc;
}

/* A request: its reply inbox lives on this shard, and so must its
 * responders for now (docs/architecture.md, "Known gap"). */
static int dp_exec_request(struct dp_worker *w, const struct dp_cmd_view *v, struct dp_cpl *c)
{
        const struct dp_cmd_request *a = &v->hdr->args.request;
        if (a->timeout_ms == 0 || dp_subject_check(v->msg.subject, v->msg.subject_len, false) != 0)
                return -EINVAL;
        int n = dp_shard_request(&w->shard, &v->msg, a->endpoint, a->sid, a->timeout_ms,
                                 &c->handle);
        if (n < 0)
                return n;
        c->count = (uint32_t)n;
        return 0;
}

/* The group a read or commit names, as the C string the cursors hash.
 * -EINVAL: none, or a NUL inside. */
static int dp_exec_group(const struct dp_cmd_view *v, char *out)
{
        uint32_t len = v->hdr->name_len;
        if (len == 0 || memchr(v->name, 0, len) != NULL)
                return -EINVAL;
        memcpy(out, v->name, len);
        out[len] = 0;
        return 0;
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
                return dp_exec_unsubscribe(w, h);
        case DP_OP_BIND:
        case DP_OP_UNBIND:
                return dp_exec_bind(w, v, c);
        case ATOMQ_OP_REQUEST:
                return dp_exec_request(w, v, c);
        case DP_OP_COMMIT: {
                char group[DP_CMD_NAME_MAX + 1];
                if (dp_exec_group(v, group) != 0)
                        return -EINVAL;
                c->handle = h->handle;
                return dp_shard_commit(&w->shard, h->handle, group, h->seq);
        }
        case ATOMQ_OP_ACK:
                return dp_shard_ack(&w->shard, h->handle, h->seq);
        case DP_OP_SYNC:
                return 0;
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

/* The offset a group read starts from before its first round: it reads
 * from the group's cursor then (no log gets this far). */
#define DP_READ_AT_CURSOR UINT64_MAX

/* Takes up to want messages for a fetch, get or read into got: the
 * count, or -errno. A read moves *offset past what it took. */
static int dp_fetch_take(struct dp_worker *w, const struct dp_cmd_view *v, uint64_t handle,
                         uint64_t *offset, struct dp_fetched *got, uint32_t want)
{
        const struct dp_cmd *h = v->hdr;
        struct dp_shard *s = &w->shard;
        int n;
        switch (h->op) {
        case DP_OP_GET:
                if (h->name_len == 0)
                        return -EINVAL;
                n = dp_shard_get(s, handle, v->name, h->name_len, got);
                return n == 0 ? 1 : n;
        case DP_OP_READ: {
                char group[DP_CMD_NAME_MAX + 1];
                if (h->name_len != 0 && *offset == DP_READ_AT_CURSOR) {
                        if (dp_exec_group(v, group) != 0)
                                return -EINVAL;
                        n = dp_shard_read_group(s, handle, group, got, want);
                } else {
                        n = dp_shard_read(s, handle, *offset, got, want);
                }
                for (int i = 0; i < n; i++)
                        *offset = got[i].seq + 1;
                return n;
        }
        default:
                return dp_shard_fetch(s, handle, h->args.fetch.end, got, want);
        }
}

/* Fills the answer of a fetch, get or read in the scratch buffer; returns
 * its status. */
static int dp_fetch_fill(struct dp_worker *w, const struct dp_cmd_view *v, struct dp_cpl *c)
{
        const struct dp_cmd *h = v->hdr;
        const uint32_t room = DP_CPL_BYTES_MAX - (uint32_t)sizeof(*c);
        uint32_t max = h->op == DP_OP_GET ? 1 : h->op == DP_OP_READ ? h->args.read.max
                                                                    : h->args.fetch.max;
        /* A group read takes its first round from the group's cursor and
         * the next ones by offset, after the last entry taken: the cursor
         * moves only on commit, so reading it again would hand out the
         * same entries. */
        uint64_t offset = h->op == DP_OP_READ && h->name_len != 0 ? DP_READ_AT_CURSOR
                                                                 : h->args.read.offset;
        struct dp_fetched got[DP_FETCH_MAX];
        if (max == 0 || max > DP_FETCH_MAX)
                return -EINVAL;
        /* get and read name a key or group, not the entity. */
        int rc = h->op == ATOMQ_OP_FETCH ? dp_exec_target(w, v, &c->handle) : 0;
        if (h->op != ATOMQ_OP_FETCH)
                c->handle = h->handle;
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
                int n = dp_fetch_take(w, v, c->handle, &offset, got, want);
                if (n < 0)
                        return c->count == 0 ? n : 0;
                for (int i = 0; i < n; i++)
                        dp_fetch_append(w, c, room, &got[i], c->handle);
                /* A get takes one value. Fetches and reads (a group read
                 * by offset after its first round) go on while rounds come
                 * back full: a round takes only as many as surely fit at
                 * the largest frame size, which is two. */
                if ((uint32_t)n < want || h->op == DP_OP_GET)
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
        struct shm_vring *r = dp_worker_cpl_ring(w, h->client);
        uint32_t room = (uint32_t)sizeof(struct dp_cpl);
        if (dp_cmd_op_answers_msgs(h->op))
                room = DP_CPL_BYTES_MAX;
        else if (h->op == DP_OP_STAT)
                room += (uint32_t)sizeof(struct dp_cpl_stat);
        struct dp_cpl *c = r != NULL ? shm_vring_reserve(r, room) : NULL;
        if (c == NULL)
                return dp_cpl_unavailable(w, r, h->client);
        dp_counter_inc(&w->stats->executed);
        if (dp_cmd_op_answers_msgs(h->op))
                return dp_exec_fetch(w, v, r);
        dp_cpl_begin(w, c, h);
        if (h->op == DP_OP_STAT) {
                /* Always answered at full size (the record zeroed when the
                 * entity is not found): one reservation, nothing to shrink. */
                memset(c + 1, 0, sizeof(struct dp_cpl_stat));
                c->status = dp_exec_stat(w, v, c);
        } else {
                dp_disk_request_begin(w->disk);
                c->status = dp_exec_simple(w, v, c);
                struct dp_disk_wait wait;
                bool waits = dp_disk_request_end(w->disk, &wait);
                /* The reservation is simply not committed: the next
                 * reserve on this ring takes its place. */
                if (c->status == 0 && (h->flags & DP_CMD_F_QUIET))
                        return DP_TAKE_DONE;
                /* A completion is read the moment it is committed, and the
                 * ring holds one reservation at a time: no parking it, as
                 * NATS answers are, so the records it reports go where
                 * their sync asks first. */
                if (waits) {
                        int rc = dp_disk_wait(w->disk, &wait);
                        if (rc < 0 && c->status == 0)
                                c->status = rc;
                }
        }
        dp_cpl_commit(w, r, h->client);
        return DP_TAKE_DONE;
}
