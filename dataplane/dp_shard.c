/* dp_shard.c - a shard's memory, its entities' lifecycle and its clock.
 *
 * Layout of a shard in one arena region, each part cache-line aligned:
 *   header+stats | table | trie | timers | message records | bindings |
 *   cursors | message buffers (slab)
 */
#include "dataplane/dp_shard_pvt.h"

#include <errno.h>
#include <string.h>

#define DP_SHARD_PARTS 9

struct dp_shard_layout {
        size_t off[DP_SHARD_PARTS];
        size_t len[DP_SHARD_PARTS];
        size_t total;
};

enum { P_HDR, P_TABLE, P_TRIE, P_TIMERS, P_MSGS, P_BINDINGS, P_CURSORS, P_BUFS, P_OWNERS };

void dp_shard_config_default(struct dp_shard_config *cfg, uint32_t shard, uint32_t max_entities)
{
        memset(cfg, 0, sizeof(*cfg));
        cfg->shard = shard;
        cfg->max_entities = max_entities;
        cfg->max_msgs = max_entities < 65536 ? 65536 : max_entities;
        cfg->max_subs = 65536;
        cfg->max_trie_nodes = 4 * 65536;
        cfg->trie_token_bytes = 1u << 20;
        cfg->max_bindings = max_entities < 65536 ? 65536 : max_entities;
        cfg->max_cursors = 4096;
        cfg->ack_wait_ns = 30ull * 1000000000;
        cfg->max_deliver = 5;
        /* Buffers hold a whole frame (48-byte header + subject + headers +
         * payload): small messages dominate; 1 MiB + 64 KiB fits the NATS
         * default max_payload with its subject and headers. */
        cfg->bufs[0] = (struct shm_slab_class){ 256, 32768 };
        cfg->bufs[1] = (struct shm_slab_class){ 4096, 4096 };
        cfg->bufs[2] = (struct shm_slab_class){ 65536, 256 };
        cfg->bufs[3] = (struct shm_slab_class){ (1u << 20) + (64u << 10), 8 };
}

static int dp_shard_layout(const struct dp_shard_config *c, struct dp_shard_layout *l)
{
        struct dp_table_config tc = { .shard = c->shard, .capacity = c->max_entities };
        struct dp_trie_config rc = { .max_nodes = c->max_trie_nodes, .max_subs = c->max_subs,
                                     .token_bytes = c->trie_token_bytes };
        l->len[P_HDR] = sizeof(struct dp_shard_hdr);
        l->len[P_TABLE] = dp_table_bytes(&tc);
        l->len[P_TRIE] = dp_trie_bytes(&rc);
        l->len[P_TIMERS] = dp_timer_bytes(c->max_entities);
        l->len[P_MSGS] = dp_msgs_bytes(c->max_msgs);
        l->len[P_BINDINGS] = (size_t)c->max_bindings * sizeof(struct dp_binding);
        l->len[P_CURSORS] = (size_t)c->max_cursors * sizeof(struct dp_cursor);
        l->len[P_BUFS] = shm_slab_bytes(c->bufs, DP_SHARD_BUF_CLASSES);
        /* One byte per entity slot: the agent that created it (dp_shard.h,
         * "owners"). Zero on a fresh arena: nobody's. */
        l->len[P_OWNERS] = c->max_entities;
        if (c->max_bindings == 0 || c->max_cursors == 0 || c->max_deliver == 0)
                return -EINVAL;
        size_t at = 0;
        for (int i = 0; i < DP_SHARD_PARTS; i++) {
                if (l->len[i] == 0)
                        return -EINVAL;
                l->off[i] = at;
                at = shm_align_up(at + l->len[i], SHM_CACHE_LINE);
        }
        l->total = at;
        return 0;
}

size_t dp_shard_bytes(const struct dp_shard_config *cfg)
{
        struct dp_shard_layout l;
        return dp_shard_layout(cfg, &l) == 0 ? l.total : 0;
}

/* Chains n records of `size` bytes through their u32 link at link_off. */
static void dp_pool_chain(void *base, size_t size, size_t link_off, uint32_t n)
{
        for (uint32_t i = 0; i < n; i++) {
                uint32_t next = i + 1 < n ? i + 2 : 0;
                memcpy((uint8_t *)base + i * size + link_off, &next, sizeof(next));
        }
}

static int dp_shard_parts_init(struct dp_shard *s, uint8_t *b, const struct dp_shard_layout *l,
                               const struct dp_shard_config *c)
{
        struct dp_table_config tc = { .shard = c->shard, .capacity = c->max_entities };
        struct dp_trie_config rc = { .max_nodes = c->max_trie_nodes, .max_subs = c->max_subs,
                                     .token_bytes = c->trie_token_bytes };
        int rc1 = dp_table_init(&s->table, b + l->off[P_TABLE], l->len[P_TABLE], &tc);
        if (rc1 == 0)
                rc1 = dp_trie_init(&s->trie, b + l->off[P_TRIE], l->len[P_TRIE], &rc);
        if (rc1 == 0)
                rc1 = dp_timer_init(&s->timers, b + l->off[P_TIMERS], l->len[P_TIMERS],
                                    c->max_entities, 1000000, 0);
        if (rc1 == 0)
                rc1 = dp_msgs_init(&s->msgs, b + l->off[P_MSGS], l->len[P_MSGS], c->max_msgs);
        if (rc1 == 0)
                rc1 = shm_slab_init(&s->bufs, b + l->off[P_BUFS], l->len[P_BUFS], c->bufs,
                                    DP_SHARD_BUF_CLASSES);
        return rc1;
}

/* The process-local half of the view: pointers and copies of the
 * configuration. */
static void dp_shard_view_set(struct dp_shard *s, uint8_t *b, const struct dp_shard_layout *l,
                              const struct dp_shard_config *cfg, dp_deliver_fn *deliver,
                              void *arg)
{
        s->bindings = (struct dp_binding *)(b + l->off[P_BINDINGS]);
        s->cursors = (struct dp_cursor *)(b + l->off[P_CURSORS]);
        s->owners = b + l->off[P_OWNERS];
        s->max_bindings = cfg->max_bindings;
        s->max_cursors = cfg->max_cursors;
        s->ack_wait_ns = cfg->ack_wait_ns;
        s->max_deliver = cfg->max_deliver;
        s->deliver = deliver;
        s->deliver_arg = arg;
}

int dp_shard_init(struct dp_shard *s, void *mem, size_t len, const struct dp_shard_config *cfg,
                  dp_deliver_fn *deliver, void *arg)
{
        struct dp_shard_layout l;
        if (dp_shard_layout(cfg, &l) != 0 || (uintptr_t)mem % SHM_CACHE_LINE != 0)
                return -EINVAL;
        if (len < l.total)
                return -ENOSPC;
        memset(s, 0, sizeof(*s));
        s->publish_buf = SHM_BUF_NONE;
        uint8_t *b = mem;
        s->hdr = (struct dp_shard_hdr *)b;
        memset(s->hdr, 0, sizeof(*s->hdr));
        s->hdr->version = DP_SHARD_VERSION;
        s->hdr->shard = cfg->shard;
        s->hdr->cfg = *cfg;
        s->stats = &s->hdr->stats;
        int rc = dp_shard_parts_init(s, b, &l, cfg);
        if (rc != 0)
                return rc;
        dp_shard_view_set(s, b, &l, cfg, deliver, arg);
        dp_pool_chain(s->bindings, sizeof(struct dp_binding), offsetof(struct dp_binding, next),
                      cfg->max_bindings);
        dp_pool_chain(s->cursors, sizeof(struct dp_cursor), offsetof(struct dp_cursor, next),
                      cfg->max_cursors);
        s->hdr->bind_free = 1;
        s->hdr->cursor_free = 1;
        s->hdr->magic = DP_SHARD_MAGIC;
        return 0;
}

static int dp_shard_parts_attach(struct dp_shard *s, uint8_t *b, const struct dp_shard_layout *l)
{
        int rc = dp_table_attach(&s->table, b + l->off[P_TABLE], l->len[P_TABLE]);
        if (rc == 0)
                rc = dp_trie_attach(&s->trie, b + l->off[P_TRIE], l->len[P_TRIE]);
        if (rc == 0)
                rc = dp_timer_attach(&s->timers, b + l->off[P_TIMERS], l->len[P_TIMERS]);
        if (rc == 0)
                rc = dp_msgs_attach(&s->msgs, b + l->off[P_MSGS], l->len[P_MSGS]);
        if (rc == 0)
                rc = shm_slab_attach(&s->bufs, b + l->off[P_BUFS], l->len[P_BUFS],
                                     DP_SHARD_BUF_CLASSES);
        return rc;
}

int dp_shard_attach(struct dp_shard *s, void *mem, size_t len, dp_deliver_fn *deliver,
                    void *arg)
{
        struct dp_shard_hdr *h = mem;
        struct dp_shard_layout l;
        if ((uintptr_t)mem % SHM_CACHE_LINE != 0 || len < sizeof(*h))
                return -EINVAL;
        if (h->magic != DP_SHARD_MAGIC || h->version != DP_SHARD_VERSION)
                return -EPROTO;
        struct dp_shard_config cfg = h->cfg;
        if (dp_shard_layout(&cfg, &l) != 0)
                return -EINVAL;
        if (len < l.total)
                return -ENOSPC;
        if (h->bind_free > cfg.max_bindings || h->cursor_free > cfg.max_cursors)
                return -EPROTO;
        memset(s, 0, sizeof(*s));
        s->publish_buf = SHM_BUF_NONE;
        s->hdr = h;
        s->stats = &h->stats;
        int rc = dp_shard_parts_attach(s, mem, &l);
        if (rc != 0)
                return rc;
        dp_shard_view_set(s, mem, &l, &cfg, deliver, arg);
        return 0;
}

void dp_shard_set_load_fn(struct dp_shard *s, dp_load_fn *fn, void *arg)
{
        s->load = fn;
        s->load_arg = arg;
}

static uint32_t dp_entity_slot(const struct dp_shard *s, const struct dp_entity *e)
{
        return (uint32_t)(e - s->table.slots);
}

void dp_shard_set_disown_fn(struct dp_shard *s, dp_disown_fn *fn, void *arg)
{
        s->disown = fn;
        s->disown_arg = arg;
}

int dp_shard_set_owner(struct dp_shard *s, uint64_t handle, uint8_t owner)
{
        struct dp_entity *e;
        int rc = dp_table_get(&s->table, handle, &e);
        if (rc == 0)
                s->owners[dp_entity_slot(s, e)] = owner;
        return rc;
}

uint32_t dp_shard_disown_all(struct dp_shard *s, uint8_t owner)
{
        uint32_t n = 0;
        for (uint32_t i = 0; owner != 0 && i < s->table.capacity; i++) {
                if (s->owners[i] == owner) {
                        s->owners[i] = 0;
                        n++;
                }
        }
        return n;
}


static int dp_opts_apply(struct dp_entity *e, const struct dp_create_opts *o)
{
        if (o->mode >= DP_MODE_COUNT_)
                return -EINVAL;
        const struct dp_mode_row *row = &dp_modes[o->mode];
        memset(e, 0, sizeof(*e));
        e->mode = o->mode;
        e->storage = row->storage;
        e->retention = row->retention;
        e->routing = row->routing;
        e->delivery = row->delivery;
        e->overflow = row->overflow;
        e->lifecycle = row->lifecycle;
        if (o->storage_set) {
                if (o->storage < 0 || o->storage >= DP_STORAGE_COUNT_)
                        return -EINVAL;
                e->storage = (uint8_t)o->storage;
        }
        if (o->sync >= DP_SYNC_COUNT_)
                return -EINVAL;
        e->flags = (uint8_t)(o->sync << DP_ENT_F_SYNC_SHIFT);
        /* -1 keeps the mode's choice; 0 (reject) is a choice like any other. */
        if (o->overflow < -1 || o->overflow >= DP_OVERFLOW_COUNT_)
                return -EINVAL;
        if (o->overflow >= 0)
                e->overflow = (uint8_t)o->overflow;
        if (o->ttl_idle)
                e->lifecycle = (uint8_t)((e->lifecycle & ~DP_LIFE_TTL_ABSOLUTE) | DP_LIFE_TTL_IDLE);
        e->ttl_ms = o->ttl_ms;
        e->max_msgs = o->max_msgs;
        e->max_bytes = o->max_bytes;
        return 0;
}

/* An entity's timer is armed only while its ttl_ms is not 0: arming takes
 * a TTL, a TTL set to 0 cancels first (so a crash between the two leaves a
 * TTL without a timer, never the other way round), and destroy cancels.
 * So an entity with no TTL, and a slot just taken, need no look at the
 * wheel, whose node for the slot is one more cache miss. */
static void dp_entity_arm(struct dp_shard *s, struct dp_entity *e)
{
        if (e->ttl_ms != 0)
                dp_timer_arm(&s->timers, dp_entity_slot(s, e),
                             s->now_ns + (uint64_t)e->ttl_ms * 1000000);
}

static void dp_entity_disarm(struct dp_shard *s, struct dp_entity *e)
{
        uint32_t slot = dp_entity_slot(s, e);
        if (e->ttl_ms != 0 && dp_timer_armed(&s->timers, slot))
                dp_timer_cancel(&s->timers, slot);
}

int dp_shard_create(struct dp_shard *s, const struct dp_create_opts *o,
                    const char *name, uint32_t name_len, uint64_t *handle)
{
        struct dp_entity proto;
        int rc = dp_opts_apply(&proto, o);
        if (rc != 0)
                return rc;
        if (o->least_loaded)
                proto.flags |= DP_ENT_F_LEAST_LOADED;
        /* The disk tier finds an entity again by its name. */
        if (proto.storage == DP_STORAGE_DISK && (s->journal == NULL || name == NULL))
                return s->journal == NULL ? -EOPNOTSUPP : -EINVAL;
        rc = dp_table_create(&s->table, &proto, name, name_len, handle);
        if (rc != 0)
                return rc;
        struct dp_entity *e = &s->table.slots[dp_handle_slot(*handle)];
        /* dp_table_create keeps only LIVE/NAMED; put the option flags back. */
        e->flags |= proto.flags & (DP_ENT_F_LEAST_LOADED | DP_ENT_F_SYNC_MASK);
        struct dp_journal j = { .kind = DP_JOURNAL_CREATE };
        rc = dp_journal_tell(s, e, &j);
        if (rc != 0) {
                dp_table_destroy(&s->table, *handle);
                return rc;
        }
        dp_entity_arm(s, e);
        s->stats->creates++;
        return 0;
}

/* Releases everything an entity holds, then its slot. */
int dp_entity_destroy(struct dp_shard *s, struct dp_entity *e)
{
        uint32_t slot = dp_entity_slot(s, e);
        uint64_t handle = dp_table_handle(&s->table, e);
        uint8_t owner = s->owners[slot];
        if (owner != 0) {
                s->owners[slot] = 0;
                if (s->disown != NULL)
                        s->disown(s->disown_arg, owner);
        }
        dp_store_purge(s, e);
        dp_bindings_release(s, e);
        dp_cursors_release(s, e);
        dp_entity_disarm(s, e);
        struct dp_journal j = { .kind = DP_JOURNAL_DESTROY };
        (void)dp_journal_tell(s, e, &j); /* it counts its own failures */
        s->stats->destroys++;
        return dp_table_destroy(&s->table, handle);
}

int dp_shard_destroy(struct dp_shard *s, uint64_t handle)
{
        struct dp_entity *e;
        int rc = dp_table_get(&s->table, handle, &e);
        return rc != 0 ? rc : dp_entity_destroy(s, e);
}

int dp_shard_set_storage(struct dp_shard *s, uint64_t handle, uint8_t storage)
{
        struct dp_entity *e;
        int rc = dp_table_get(&s->table, handle, &e);
        if (rc != 0)
                return rc;
        if (storage >= DP_STORAGE_COUNT_)
                return -EINVAL;
        if (storage == e->storage)
                return 0;
        /* Nothing moves in memory: the queue keeps what it holds (fetch
         * drains it whatever the storage now says); only new messages
         * follow the new choice. So no message is lost by a switch in
         * either direction. To disk, the journal gets the entity and what
         * it holds now; from disk, it forgets the entity. */
        if (storage == DP_STORAGE_DISK) {
                if (s->journal == NULL)
                        return -EOPNOTSUPP;
                if (!(e->flags & DP_ENT_F_NAMED))
                        return -EINVAL;
                e->storage = storage;
                struct dp_journal j = { .kind = DP_JOURNAL_CREATE };
                rc = dp_journal_tell(s, e, &j);
                if (rc == 0)
                        rc = dp_store_journal_all(s, e);
                if (rc != 0) {
                        struct dp_journal f = { .kind = DP_JOURNAL_FORGET };
                        (void)dp_journal_tell(s, e, &f);
                        e->storage = DP_STORAGE_MEM;
                }
                return rc;
        }
        struct dp_journal f = { .kind = DP_JOURNAL_FORGET };
        (void)dp_journal_tell(s, e, &f);
        e->storage = storage;
        return 0;
}

int dp_shard_set_ttl(struct dp_shard *s, uint64_t handle, uint32_t ttl_ms)
{
        struct dp_entity *e;
        int rc = dp_table_get(&s->table, handle, &e);
        if (rc != 0)
                return rc;
        if (ttl_ms == 0)
                dp_entity_disarm(s, e);
        e->ttl_ms = ttl_ms;
        dp_entity_arm(s, e);
        struct dp_journal j = { .kind = DP_JOURNAL_TTL, .ttl_ms = ttl_ms };
        (void)dp_journal_tell(s, e, &j); /* it counts its own failures */
        return 0;
}

/* Idle TTL: every use pushes the deadline out. */
void dp_entity_touch(struct dp_shard *s, struct dp_entity *e)
{
        if ((e->lifecycle & DP_LIFE_TTL_IDLE) && e->ttl_ms != 0)
                dp_entity_arm(s, e);
}

static void dp_shard_on_timer(uint32_t id, uint64_t deadline_ns, void *arg)
{
        struct dp_shard *s = arg;
        struct dp_entity *e = &s->table.slots[id];
        (void)deadline_ns;
        if (!(e->flags & DP_ENT_F_LIVE))
                return;
        /* A request inbox that times out tells its owner before it goes. */
        if (e->lifecycle & DP_LIFE_ONE_SHOT) {
                dp_deliver_status(s, e, dp_table_handle(&s->table, e), DP_STATUS_TIMEOUT);
                s->stats->request_timeouts++;
        }
        s->stats->expired_entities++;
        dp_entity_destroy(s, e);
}

int dp_shard_tick(struct dp_shard *s, uint64_t now_ns, unsigned max)
{
        if (now_ns > s->now_ns)
                s->now_ns = now_ns;
        return dp_timer_expire(&s->timers, s->now_ns, dp_shard_on_timer, s, max);
}

/* ---- the disk tier's journal ---------------------------------------------- */

void dp_shard_set_journal(struct dp_shard *s, dp_journal_fn *fn, void *arg)
{
        s->journal = fn;
        s->journal_arg = arg;
}

uint8_t dp_journal_sync(const struct dp_entity *e, const struct dp_msg_in *m)
{
        if (m != NULL && m->sync != DP_SYNC_DEFAULT && m->sync < DP_SYNC_COUNT_)
                return m->sync;
        uint8_t v = (uint8_t)((e->flags & DP_ENT_F_SYNC_MASK) >> DP_ENT_F_SYNC_SHIFT);
        return v == DP_SYNC_DEFAULT ? DP_SYNC_BATCH : v;
}

int dp_journal_tell(struct dp_shard *s, struct dp_entity *e, struct dp_journal *j)
{
        if (s->journal == NULL || s->replaying || e->storage != DP_STORAGE_DISK)
                return 0;
        j->e = e;
        j->name = dp_table_name(&s->table, e, &j->name_len);
        if (j->sync == DP_SYNC_DEFAULT)
                j->sync = dp_journal_sync(e, NULL);
        return s->journal(s->journal_arg, j);
}
