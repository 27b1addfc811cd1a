/* dp_table.c - a shard's entity table (see dp_table.h).
 *
 * Memory layout of one table, all in one arena region:
 *   header (64) | slots (capacity x 64) | index buckets | name heap
 */
#include "dataplane/dp_table.h"

#include <errno.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "dataplane/dp_subject.h"

/* Names are hashed with xxHash's XXH3: fast on short keys, well mixed. */
static inline uint64_t dp_table_hash(const char *s, uint32_t len)
{
        return XXH3_64bits(s, len);
}

static uint32_t dp_table_name_units(const struct dp_table_config *cfg)
{
        if (cfg->name_units != 0)
                return cfg->name_units;
        return cfg->capacity + cfg->capacity / 2;
}

struct dp_table_layout {
        size_t slots_off;
        size_t index_off;
        size_t names_off;
        size_t total;
};

static int dp_table_layout(const struct dp_table_config *cfg, struct dp_table_layout *l)
{
        if (cfg->capacity == 0 || cfg->capacity > DP_TABLE_CAPACITY_MAX ||
            cfg->shard >= DP_SHARDS_MAX)
                return -EINVAL;
        size_t index_bytes = dp_index_bytes(cfg->capacity);
        size_t names_bytes = dp_names_bytes(dp_table_name_units(cfg));
        if (index_bytes == 0 || names_bytes == 0)
                return -EINVAL;
        l->slots_off = sizeof(struct dp_table_hdr);
        l->index_off = l->slots_off + (size_t)cfg->capacity * sizeof(struct dp_entity);
        l->names_off = shm_align_up(l->index_off + index_bytes, SHM_CACHE_LINE);
        l->total = l->names_off + names_bytes;
        return 0;
}

size_t dp_table_bytes(const struct dp_table_config *cfg)
{
        struct dp_table_layout l;
        return dp_table_layout(cfg, &l) == 0 ? l.total : 0;
}

int dp_table_init(struct dp_table *t, void *mem, size_t len, const struct dp_table_config *cfg)
{
        struct dp_table_layout l;
        if (dp_table_layout(cfg, &l) != 0 || (uintptr_t)mem % SHM_CACHE_LINE != 0)
                return -EINVAL;
        if (len < l.total)
                return -ENOSPC;

        uint8_t *base = mem;
        struct dp_table_hdr *h = mem;
        memset(h, 0, sizeof(*h));
        h->version = DP_TABLE_VERSION;
        h->shard = cfg->shard;
        h->capacity = cfg->capacity;
        h->name_units = dp_table_name_units(cfg);
        t->hdr = h;
        t->slots = (struct dp_entity *)(base + l.slots_off);
        t->shard = cfg->shard;
        t->capacity = cfg->capacity;
        int rc = dp_index_init(&t->index, base + l.index_off, l.names_off - l.index_off,
                               cfg->capacity);
        if (rc == 0)
                rc = dp_names_init(&t->names, base + l.names_off, l.total - l.names_off,
                                   h->name_units);
        if (rc != 0)
                return rc;
        /* Free list in slot order, so a fresh table fills from the front. */
        for (uint32_t i = 0; i < cfg->capacity; i++) {
                struct dp_entity *e = &t->slots[i];
                memset(e, 0, sizeof(*e));
                e->gen = 1;
                e->name_ref = DP_NAME_NONE;
                e->q_head = i + 1 < cfg->capacity ? i + 2 : 0;
        }
        h->free_head = 1;
        h->magic = DP_TABLE_MAGIC;
        return 0;
}

int dp_table_attach(struct dp_table *t, void *mem, size_t len)
{
        struct dp_table_hdr *h = mem;
        struct dp_table_layout l;
        if (len < sizeof(*h) || h->magic != DP_TABLE_MAGIC || h->version != DP_TABLE_VERSION)
                return -EPROTO;
        struct dp_table_config cfg = { .shard = h->shard, .capacity = h->capacity,
                                       .name_units = h->name_units };
        if (dp_table_layout(&cfg, &l) != 0)
                return -EPROTO;
        if (len < l.total)
                return -ENOSPC;
        uint8_t *base = mem;
        t->hdr = h;
        t->slots = (struct dp_entity *)(base + l.slots_off);
        t->shard = h->shard;
        t->capacity = h->capacity;
        int rc = dp_index_attach(&t->index, base + l.index_off, l.names_off - l.index_off,
                                 h->capacity);
        if (rc == 0)
                rc = dp_names_attach(&t->names, base + l.names_off, l.total - l.names_off);
        if (rc != 0)
                return rc;
        /* Our own process wrote these, but a dataplane that died mid-way may
         * have left anything: check every link before trusting it. */
        if (h->free_head > h->capacity)
                return -EBADMSG;
        for (uint32_t i = 0; i < h->capacity; i++) {
                const struct dp_entity *e = &t->slots[i];
                if (!(e->flags & DP_ENT_F_LIVE) && e->q_head > h->capacity)
                        return -EBADMSG;
                if ((e->flags & DP_ENT_F_NAMED) && e->name_ref >= t->names.unit_count)
                        return -EBADMSG;
        }
        return 0;
}

struct dp_table_key {
        const struct dp_table *t;
        const char *s;
        uint32_t len;
};

static bool dp_table_key_eq(void *arg, uint32_t slot)
{
        const struct dp_table_key *k = arg;
        uint32_t len;
        const char *name = dp_names_get(&k->t->names, k->t->slots[slot].name_ref, &len);
        return name != NULL && len == k->len && memcmp(name, k->s, len) == 0;
}

static int64_t dp_table_lookup(const struct dp_table *t, const char *s, uint32_t len,
                               uint64_t hash)
{
        struct dp_table_key k = { .t = t, .s = s, .len = len };
        return dp_index_find(&t->index, hash, dp_table_key_eq, &k);
}

/* Takes a free slot and fills it from proto; the caller names it. */
static struct dp_entity *dp_table_slot_take(struct dp_table *t, const struct dp_entity *proto)
{
        struct dp_table_hdr *h = t->hdr;
        if (h->free_head == 0)
                return NULL;
        struct dp_entity *e = &t->slots[h->free_head - 1];
        DP_ASSERT(!(e->flags & DP_ENT_F_LIVE));
        h->free_head = e->q_head;
        uint32_t gen = e->gen;
        *e = *proto;
        e->gen = gen;
        e->flags = DP_ENT_F_LIVE;
        e->name_ref = DP_NAME_NONE;
        e->q_head = e->q_tail = 0;
        e->msgs = e->bytes = 0;
        e->seq = 0;
        e->parties = 0;
        e->bind_head = 0;
        e->ext = 0;
        h->live++;
        h->creates++;
        return e;
}

static void dp_table_slot_put(struct dp_table *t, struct dp_entity *e)
{
        struct dp_table_hdr *h = t->hdr;
        uint32_t slot = (uint32_t)(e - t->slots);
        e->flags = 0;
        e->gen = dp_handle_gen_next(e->gen);
        e->name_ref = DP_NAME_NONE;
        e->q_head = h->free_head;
        h->free_head = slot + 1;
        h->live--;
}

uint64_t dp_table_handle(const struct dp_table *t, const struct dp_entity *e)
{
        return dp_handle_make(t->shard, (uint32_t)(e - t->slots), e->gen);
}

/* Creation once the name is known valid and hashed. */
static int dp_table_create_hashed(struct dp_table *t, const struct dp_entity *proto,
                                  const char *name, uint32_t len, uint64_t hash,
                                  uint64_t *handle)
{
        if (name != NULL && dp_table_lookup(t, name, len, hash) >= 0)
                return -EEXIST;
        struct dp_entity *e = dp_table_slot_take(t, proto);
        if (e == NULL)
                return -ENOSPC;
        if (name != NULL) {
                uint32_t ref;
                if (dp_names_alloc(&t->names, name, len, &ref) != 0) {
                        t->hdr->creates--;
                        dp_table_slot_put(t, e);
                        return -ENOSPC;
                }
                e->name_ref = ref;
                e->flags |= DP_ENT_F_NAMED;
                /* Cannot fail: the index holds as many keys as the table. */
                DP_VERIFY(dp_index_insert(&t->index, hash, (uint32_t)(e - t->slots)) == 0);
        }
        *handle = dp_table_handle(t, e);
        return 0;
}

int dp_table_create(struct dp_table *t, const struct dp_entity *proto,
                    const char *name, uint32_t name_len, uint64_t *handle)
{
        uint64_t hash = 0;
        if (name != NULL) {
                if (dp_subject_check(name, name_len, false) != 0)
                        return -EINVAL;
                hash = dp_table_hash(name, name_len);
        }
        return dp_table_create_hashed(t, proto, name, name_len, hash, handle);
}

#define DP_TABLE_BURST 16

uint32_t dp_table_create_burst(struct dp_table *t, const struct dp_entity *proto,
                               const struct dp_name *names, uint32_t n,
                               uint64_t *handles, int *rcs)
{
        uint64_t hashes[DP_TABLE_BURST];
        uint32_t created = 0;

        for (uint32_t base = 0; base < n; base += DP_TABLE_BURST) {
                uint32_t m = n - base < DP_TABLE_BURST ? n - base : DP_TABLE_BURST;
                /* Pass 1: validate, hash and prefetch every home bucket, so
                 * the misses of the whole batch overlap. */
                for (uint32_t i = 0; i < m; i++) {
                        const struct dp_name *nm = &names[base + i];
                        rcs[base + i] = dp_subject_check(nm->s, nm->len, false) != 0 ? -EINVAL : 0;
                        hashes[i] = dp_table_hash(nm->s, nm->len);
                        dp_index_prefetch(&t->index, hashes[i]);
                }
                for (uint32_t i = 0; i < m; i++) {
                        const struct dp_name *nm = &names[base + i];
                        if (rcs[base + i] != 0)
                                continue;
                        rcs[base + i] = dp_table_create_hashed(t, proto, nm->s, nm->len,
                                                               hashes[i], &handles[base + i]);
                        created += rcs[base + i] == 0;
                }
        }
        return created;
}

int dp_table_get(const struct dp_table *t, uint64_t handle, struct dp_entity **out)
{
        if (dp_handle_shard(handle) != t->shard)
                return -EXDEV;
        uint32_t slot = dp_handle_slot(handle);
        if (slot >= t->capacity)
                return -EINVAL;
        struct dp_entity *e = &t->slots[slot];
        if (!(e->flags & DP_ENT_F_LIVE) || e->gen != dp_handle_gen(handle))
                return -ESTALE;
        *out = e;
        return 0;
}

int dp_table_find(const struct dp_table *t, const char *name, uint32_t len, uint64_t *handle)
{
        if (name == NULL || len == 0 || len > DP_NAME_MAX)
                return -ENOENT;
        int64_t slot = dp_table_lookup(t, name, len, dp_table_hash(name, len));
        if (slot < 0)
                return -ENOENT;
        *handle = dp_table_handle(t, &t->slots[slot]);
        return 0;
}

const char *dp_table_name(const struct dp_table *t, const struct dp_entity *e, uint32_t *len)
{
        if (!(e->flags & DP_ENT_F_NAMED))
                return NULL;
        return dp_names_get(&t->names, e->name_ref, len);
}

int dp_table_destroy(struct dp_table *t, uint64_t handle)
{
        struct dp_entity *e;
        int rc = dp_table_get(t, handle, &e);
        if (rc != 0)
                return rc;
        if (e->flags & DP_ENT_F_NAMED) {
                uint32_t len;
                const char *name = dp_names_get(&t->names, e->name_ref, &len);
                DP_VERIFY(name != NULL);
                DP_VERIFY(dp_index_remove(&t->index, dp_table_hash(name, len),
                                          dp_handle_slot(handle)) == 0);
                dp_names_free(&t->names, e->name_ref);
        }
        dp_table_slot_put(t, e);
        t->hdr->destroys++;
        return 0;
}
