/* dp_engine_attach.c - a process that did not build the arena (a restarted
 * atomq-dataplane) maps it by its fd, checks it, and rebuilds the views
 * dp_engine_init builds, without formatting anything.
 *
 * What is checked before anything is used. The engine header is shared
 * memory another process wrote, so attach works from a private copy:
 * magic and version (-EPROTO), then the geometry. The layout is computed
 * again from the copy's configuration (workers, clients, ring sizes, shard
 * and idle config) exactly as the creator computed it, and every stride,
 * offset and region size must agree with it and with the arena's region
 * table, which shm_arena_attach has already checked against the file size
 * (-EBADMSG). Each shard must carry its own index; the rings and shards
 * then check their own headers as they attach.
 *
 * What a dataplane killed in the middle of a command can leave. A worker
 * mutates its shard with plain stores, in no guaranteed order (the compiler
 * may reorder stores within an operation), then writes the completion, then
 * releases the command from its ring. SIGKILL can land anywhere in that:
 *
 *  - Between the completion and the release: the command is executed
 *    again by the next dataplane (commands run at least once across a
 *    crash). The client can see two completions with one req_id; a send is
 *    stored twice; a named create answers -EEXIST the second time; an
 *    anonymous create leaves an entity nobody has the handle of. The same
 *    holds for an unreleased mesh record (a forwarded command, a fan-out).
 *    One command per input ring per crash.
 *  - Inside a shard operation: a record popped from a free list and not yet
 *    linked (an entity slot, a message record, a slab buffer), a counter
 *    not yet moved, a queue tail not yet moved on. Each is one record per
 *    crash per shard: bounded. The audit below walks the entity table and
 *    the message records (O(capacity), once per attach), refuses a state
 *    that would hand one record to two owners (a free-list cycle, a free
 *    slot that is live, a message on two lists: -EBADMSG), and counts the
 *    rest in hdr->audit, which atomq-dataplane logs. Leaked slab buffers,
 *    timer lists, bindings, the name heap and the trie are not audited:
 *    their parts' attach functions check only their headers.
 *  - Inside the destroy of a named entity, after its name left the index
 *    and before its slot was freed (or inside a create, after the slot and
 *    the name and before the index): the entity is live and its name does
 *    not find it (audit: unindexed). A replayed create is harmless (the
 *    half-made entity leaks); a replayed destroy trips the DP_VERIFY on
 *    dp_index_remove in dp_table_destroy and the dataplane aborts, again on
 *    every restart, until the supervisor's rate limit gives up. Measured
 *    with a kill loop under create/destroy churn: one kill in 20 to 400.
 *    The index is derived data; rebuilding it from the slots at attach (in
 *    dp_table, follow-up) would end this. Attach counts it, and
 *    atomq-dataplane logs it as an error.
 *  - Inside shm_mpsc_release, which zeroes the record and then moves
 *    tail: the header at tail reads "not committed" for good and the
 *    command ring stops, exactly like the ring's documented dead producer.
 *    Measured with a kill loop under a steady stream of sends: about one
 *    kill in a thousand. It cannot be told apart from a producer that is
 *    still writing, so attach waits a little and counts the ring as stuck
 *    (cmd_rings_stuck); repairing it needs the ring to journal its release
 *    (shm/, follow-up). In the same loop about one kill in twenty leaked a
 *    message record (bounded, counted in leaked_msgs).
 *  - A worker asleep on its command ring's wake word leaves the word's
 *    sleeper count raised, and every submit would then pay a futex
 *    syscall: attach resets it, since only that ring's worker sleeps there.
 */
#include "dataplane/dp_engine_pvt.h"
#include "dataplane/dp_worker_pvt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A command ring whose oldest record is not committed is looked at again
 * this many times, this far apart, before it counts as stuck: a producer
 * writes a record in well under a microsecond. */
#define DP_ATTACH_COMMIT_TRIES 20
#define DP_ATTACH_COMMIT_WAIT_NS 500000L

/* For the caller of attach, a part that does not attach means the arena is
 * not what its header says: -EBADMSG, unless the part was never formatted
 * (-EPROTO) or memory ran out. */
static int dp_attach_err(int rc)
{
        return rc == 0 || rc == -EPROTO || rc == -ENOMEM ? rc : -EBADMSG;
}

/* The configuration the creator used, from the header copy h. */
static void dp_attach_config(const struct dp_engine_hdr *h, struct dp_engine_config *c)
{
        memset(c, 0, sizeof(*c));
        c->workers = h->workers;
        c->clients = h->clients;
        c->cmd_ring_bytes = h->cmd_ring_bytes;
        c->cpl_ring_bytes = h->cpl_ring_bytes;
        c->mesh_ring_bytes = h->mesh_ring_bytes;
        c->shard = h->shard;
        c->idle = h->idle;
        c->agents = h->agents;
        c->agent_dlv_ring_bytes = h->agent_dlv_ring_bytes;
}

/* Region `name` of `kind` must start at off and hold count records of
 * stride bytes (its bounds in the file were checked by shm_arena_attach). */
static int dp_attach_region(const struct shm_arena *a, uint32_t kind, const char *name,
                            uint64_t off, uint64_t count, uint64_t stride)
{
        const struct shm_arena_region *r = shm_arena_region_find(a, kind, name);
        if (r == NULL || r->offset != off || stride == 0 || r->bytes / stride < count)
                return -EBADMSG;
        return 0;
}

/* Checks the geometry of header copy h (engine region r) against the
 * layout its configuration gives and against the region table. */
static int dp_attach_geometry(const struct shm_arena *a, const struct shm_arena_region *r,
                              const struct dp_engine_hdr *h, const struct dp_engine_config *c)
{
        struct dp_engine_layout l;
        uint64_t n = h->workers, nc = h->clients;
        if (dp_engine_layout(c, h->workers, &l) != 0)
                return -EBADMSG;
        if (h->shard_stride != l.shard_stride || h->cmd_stride != l.cmd_stride ||
            h->cpl_stride != l.cpl_stride || h->mesh_stride != l.mesh_stride)
                return -EBADMSG;
        if (r->bytes < l.engine_bytes || h->wake_off != r->offset + sizeof(*h) ||
            h->stats_off != h->wake_off + nc * SHM_CACHE_LINE ||
            h->agents_off != h->stats_off + n * DP_WORKER_STATS_BYTES)
                return -EBADMSG;
        /* The net columns, when there are any, are the last n of them. */
        if (h->net_client_base != 0 && h->net_client_base + n != nc)
                return -EBADMSG;
        int rc = dp_attach_region(a, DP_REGION_SHARDS, "dp.shards", h->shards_off, n,
                                  h->shard_stride);
        if (rc == 0)
                rc = dp_attach_region(a, SHM_REGION_MPSC, "dp.cmd", h->cmd_off, n, h->cmd_stride);
        if (rc == 0)
                rc = dp_attach_region(a, SHM_REGION_VRING, "dp.cpl", h->cpl_off, n * nc,
                                      h->cpl_stride);
        if (rc == 0 && n > 1)
                rc = dp_attach_region(a, SHM_REGION_VRING, "dp.mesh", h->mesh_off, n * (n - 1),
                                      h->mesh_stride);
        return rc;
}

/* Finds the engine header, checks it and leaves a checked copy in *h and
 * the creator's configuration in *c. */
static int dp_attach_hdr(struct dp_engine *e, struct dp_engine_hdr *h, struct dp_engine_config *c)
{
        const struct shm_arena_region *r =
                shm_arena_region_find(&e->arena, DP_REGION_ENGINE, "dp.engine");
        if (r == NULL || r->bytes < sizeof(*h))
                return -EPROTO;
        e->hdr = shm_arena_ptr(&e->arena, r->offset, sizeof(*h));
        if (e->hdr == NULL)
                return -EBADMSG;
        /* One copy, checked and then used: the shared header cannot change
         * under the checks. */
        memcpy(h, e->hdr, sizeof(*h));
        if (h->magic != DP_ENGINE_MAGIC || h->version != DP_ENGINE_VERSION)
                return -EPROTO;
        dp_attach_config(h, c);
        int rc = dp_attach_geometry(&e->arena, r, h, c);
        if (rc != 0)
                return rc;
        e->workers = h->workers;
        e->clients = h->clients;
        return 0;
}

/* Every shard must be formatted as the shard of its position. */
static int dp_attach_shards_check(const struct dp_engine *e, const struct dp_engine_hdr *h)
{
        for (uint32_t i = 0; i < h->workers; i++) {
                const struct dp_shard_hdr *sh =
                        shm_arena_ptr(&e->arena, h->shards_off + i * h->shard_stride, sizeof(*sh));
                if (sh == NULL)
                        return -EBADMSG;
                if (sh->magic != DP_SHARD_MAGIC || sh->version != DP_SHARD_VERSION)
                        return -EPROTO;
                if (sh->shard != i || sh->cfg.shard != i)
                        return -EBADMSG;
        }
        return 0;
}

/* A live named entity must be what its name finds. One a destroy had
 * taken out of the index, or a create had not put in yet, is not. */
static bool dp_audit_unindexed(const struct dp_table *t, const struct dp_entity *e)
{
        uint32_t len;
        uint64_t h;
        if (!(e->flags & DP_ENT_F_NAMED))
                return false;
        const char *name = dp_table_name(t, e, &len);
        return name == NULL || dp_table_find(t, name, len, &h) != 0 ||
               h != dp_table_handle(t, e);
}

/* Entities: every slot is live or on the free list (linked through q_head,
 * dp_entity.h). A free list longer than the free slots has a cycle; one
 * that reaches a live slot would hand it out twice. */
static int dp_audit_table(const struct dp_table *t, struct dp_engine_audit *a)
{
        uint32_t live = 0, free_n = 0;
        for (uint32_t i = 0; i < t->capacity; i++) {
                if (!(t->slots[i].flags & DP_ENT_F_LIVE))
                        continue;
                live++;
                a->unindexed += dp_audit_unindexed(t, &t->slots[i]);
        }
        for (uint32_t at = t->hdr->free_head; at != 0; at = t->slots[at - 1].q_head) {
                if (at > t->capacity || (t->slots[at - 1].flags & DP_ENT_F_LIVE) ||
                    free_n == t->capacity - live)
                        return -EBADMSG;
                free_n++;
        }
        a->leaked_slots += t->capacity - live - free_n;
        a->count_skew += t->hdr->live != live;
        return 0;
}

/* Follows one list of message records (links are index + 1) from `at`,
 * marking each in seen. Returns the records walked, or -EBADMSG for a link
 * out of range or a record already on a list. *last gets the last link. */
static int64_t dp_audit_chain(const struct dp_msgs *m, uint64_t *seen, uint32_t at,
                              uint32_t *last)
{
        int64_t n = 0;
        *last = 0;
        for (; at != 0; at = m->recs[at - 1].next) {
                uint32_t i = at - 1;
                if (at > m->capacity || (seen[i / 64] & (1ull << (i % 64))))
                        return -EBADMSG;
                seen[i / 64] |= 1ull << (i % 64);
                *last = at;
                n++;
        }
        return n;
}

/* Message records: each is on one entity's queue or on the free list,
 * once. The seen bitmap bounds every walk by the pool's capacity. */
static int dp_audit_msgs(const struct dp_shard *s, uint64_t *seen, struct dp_engine_audit *a)
{
        const struct dp_msgs *m = &s->msgs;
        const struct dp_table *t = &s->table;
        uint64_t queued = 0;
        uint32_t last;
        for (uint32_t i = 0; i < t->capacity; i++) {
                const struct dp_entity *e = &t->slots[i];
                if (!(e->flags & DP_ENT_F_LIVE))
                        continue;
                /* The next append writes through q_tail. */
                if (e->q_tail > m->capacity)
                        return -EBADMSG;
                int64_t n = dp_audit_chain(m, seen, e->q_head, &last);
                if (n < 0)
                        return (int)n;
                queued += (uint64_t)n;
                a->count_skew += (uint64_t)n != e->msgs || last != e->q_tail;
        }
        int64_t free_n = dp_audit_chain(m, seen, m->hdr->free_head, &last);
        if (free_n < 0)
                return (int)free_n;
        a->leaked_msgs += (uint32_t)(m->capacity - queued - (uint64_t)free_n);
        a->count_skew += m->hdr->in_use != m->capacity - (uint64_t)free_n;
        return 0;
}

static int dp_audit_shard(const struct dp_shard *s, struct dp_engine_audit *a)
{
        int rc = dp_audit_table(&s->table, a);
        if (rc != 0)
                return rc;
        uint64_t *seen = calloc((s->msgs.capacity + 63) / 64, sizeof(*seen));
        if (seen == NULL)
                return -ENOMEM;
        rc = dp_audit_msgs(s, seen, a);
        free(seen);
        return rc;
}

/* Is the oldest record of worker w's command ring stuck uncommitted (or the
 * ring corrupt)? Waits DP_ATTACH_COMMIT_TRIES times for a live producer. */
static bool dp_attach_cmd_stuck(struct dp_worker *w)
{
        const struct timespec pause = { 0, DP_ATTACH_COMMIT_WAIT_NS };
        for (int i = 0; i < DP_ATTACH_COMMIT_TRIES; i++) {
                struct shm_mpsc_rec rec;
                /* A peeked record stays put: the worker peeks it again. */
                int rc = shm_mpsc_peek(&w->cmd, &rec);
                if (rc != 0)
                        return rc < 0;
                /* Empty, or claimed and not committed yet? Relaxed loads
                 * suffice: the peek above already acquired the header. */
                uint64_t head = atomic_load_explicit(&w->cmd.hdr->head, memory_order_relaxed);
                uint64_t tail = atomic_load_explicit(&w->cmd.hdr->tail, memory_order_relaxed);
                if (head == tail)
                        return false;
                nanosleep(&pause, NULL);
        }
        return true;
}

/* Audits every shard and ring, records the result in the header, and
 * clears what a killed worker left on its wake word. */
static int dp_attach_audit(struct dp_engine *e)
{
        struct dp_engine_audit a = { 0 };
        for (uint32_t i = 0; i < e->workers; i++) {
                struct dp_worker *w = &e->w[i];
                int rc = dp_audit_shard(&w->shard, &a);
                if (rc != 0)
                        return rc;
                /* A worker killed inside a release left it half done:
                 * finish it, or the ring would wait on zeroed bytes. */
                if (shm_mpsc_recover(&w->cmd) < 0)
                        a.cmd_rings_stuck++;
                else
                        a.cmd_rings_stuck += dp_attach_cmd_stuck(w);
                /* Only worker i sleeps on this word, and it is not running:
                 * a count left by a worker killed in its sleep goes. */
                atomic_store_explicit(&w->wake->sleepers, 0, memory_order_relaxed);
        }
        e->hdr->audit = a;
        e->hdr->attaches++;
        return 0;
}

int dp_engine_attach(struct dp_engine *e, int arena_fd, const struct dp_engine_attach_opts *o)
{
        struct dp_engine_hdr h;
        struct dp_engine_config c;
        memset(e, 0, sizeof(*e));
        e->arena.fd = -1;
        int rc = shm_arena_attach(&e->arena, arena_fd);
        if (rc != 0)
                return rc;
        rc = dp_attach_hdr(e, &h, &c);
        if (rc == 0 && o != NULL) {
                c.deliver = o->deliver;
                c.deliver_arg = o->deliver_arg;
                if (o->nats != NULL)
                        e->nats = *o->nats;
                if (o->dgram != NULL)
                        e->dgram = *o->dgram;
                if (o->disk != NULL)
                        e->disk = *o->disk;
                if (o->idle != NULL)
                        c.idle = *o->idle;
                if (dp_idle_config_check(&c.idle) != 0)
                        rc = -EINVAL;
        }
        if (rc == 0)
                rc = dp_attach_shards_check(e, &h);
        /* Claimed before anything is read for real: no other process may
         * run these shards while we audit and wire them. */
        if (rc == 0)
                rc = dp_engine_claim(e);
        if (rc == 0)
                rc = dp_attach_err(dp_engine_views_build(e, &h, &c, false));
        for (uint32_t i = 0; rc == 0 && i < e->workers; i++)
                if (e->w[i].shard.table.shard != i)
                        rc = -EBADMSG;
        if (rc == 0)
                rc = dp_attach_audit(e);
        if (rc == 0 && e->agents > 0)
                rc = dp_agent_files_adopt(e, o != NULL ? o->agent_fd_base : -1);
        if (rc != 0) {
                dp_engine_fini(e);
                return rc;
        }
        return 0;
}
