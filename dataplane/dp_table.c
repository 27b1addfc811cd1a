/* dp_table.c - a shard's entity table (see dp_table.h).
 *
 * Memory layout of one table, all in one arena region:
 *   header (64) | slots (capacity x 64) | index groups | name heap
 */
#include "dataplane/dp_table.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "dataplane/dp_subject.h"

/* How many names (or handles) ahead each stage of a batched call starts
 * loading what the next stage touches, and the ring that holds the hashes
 * of those in flight. Measured on the churn benchmark (docs/benchmarks.md):
 * 8 to 32 do the same with the table in cache or at 1 M entities, 32 is
 * best at 10 M, where a miss costs most (memory and a page walk). A burst
 * no longer than this runs as waves: every name's first stage, then every
 * name's second. */
#define DP_TABLE_AHEAD 32
#define DP_TABLE_RING 128
_Static_assert(3 * DP_TABLE_AHEAD < DP_TABLE_RING, "the ring holds every name in flight");
_Static_assert((DP_TABLE_RING & (DP_TABLE_RING - 1)) == 0, "a power of two");

/* Names are hashed with xxHash's XXH3: fast on short keys, well mixed. */
static inline uint64_t dp_table_hash(const char *s, uint32_t len)
{
        return XXH3_64bits(s, len);
}

/* The free list is a LIFO chain through the free slots, linked by q_head
 * (slot + 1, 0 ends it). Following a chain costs one miss after another, so
 * each free slot also carries, in the queue words after q_head that it does
 * not use while free, the links 2 to DP_TABLE_LINKS places down the list;
 * taking a slot starts loading the one DP_TABLE_LINKS takes ahead. The list
 * below a slot never changes while the slot is on it, so the hints stay
 * exact; they are only prefetched, never followed, so a wrong one (a table
 * attached after a crash) costs a miss, nothing more. 8 measured best of 4,
 * 6 and 8 on the churn benchmark. */
#define DP_TABLE_LINKS 8
#define DP_TABLE_LINKS_OFF offsetof(struct dp_entity, q_head)
_Static_assert(DP_TABLE_LINKS_OFF + DP_TABLE_LINKS * 4 <= offsetof(struct dp_entity, parties),
               "the links overlay q_head .. ext, all unused in a free slot");

static inline uint32_t dp_table_link(const struct dp_entity *e, unsigned k)
{
        uint32_t v;
        memcpy(&v, (const uint8_t *)e + DP_TABLE_LINKS_OFF + 4 * k, 4);
        return v;
}

static inline void dp_table_link_set(struct dp_entity *e, unsigned k, uint32_t v)
{
        memcpy((uint8_t *)e + DP_TABLE_LINKS_OFF + 4 * k, &v, 4);
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
        /* Free list in slot order, so a fresh table fills from the front;
         * each slot links the DP_TABLE_LINKS after it. */
        for (uint32_t i = 0; i < cfg->capacity; i++) {
                struct dp_entity *e = &t->slots[i];
                memset(e, 0, sizeof(*e));
                e->gen = 1;
                e->name_ref = DP_NAME_NONE;
                for (unsigned k = 0; k < DP_TABLE_LINKS; k++)
                        dp_table_link_set(e, k, i + 1 + k < cfg->capacity ? i + 2 + k : 0);
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
        uint32_t top = 0;
        for (uint32_t i = 0; i < h->capacity; i++) {
                const struct dp_entity *e = &t->slots[i];
                if (!(e->flags & DP_ENT_F_LIVE) && e->q_head > h->capacity)
                        return -EBADMSG;
                if ((e->flags & DP_ENT_F_NAMED) && e->name_ref >= t->names.unit_count)
                        return -EBADMSG;
                if (e->flags & DP_ENT_F_LIVE)
                        top = i + 1;
        }
        /* Raised to the highest live slot: a table written before `top`
         * existed (0), or one a crash left short, cannot hide a live slot
         * from a walk that stops there (dp_disk_restate). */
        if (h->top < top || h->top > h->capacity)
                h->top = top;
        return 0;
}

struct dp_table_key {
        const struct dp_table *t;
        const char *s;
        uint32_t len;
};

static inline bool dp_table_key_eq(void *arg, uint32_t slot)
{
        const struct dp_table_key *k = arg;
        return dp_names_equal(&k->t->names, k->t->slots[slot].name_ref, k->s, k->len);
}

static inline int64_t dp_table_lookup(const struct dp_table *t, const char *s, uint32_t len,
                                      uint64_t hash)
{
        struct dp_table_key k = { .t = t, .s = s, .len = len };
        return dp_index_find(&t->index, hash, dp_table_key_eq, &k);
}

/* Puts free slot e on the free list (see DP_TABLE_LINKS). */
static inline void dp_table_free_push(struct dp_table *t, struct dp_entity *e, uint32_t slot)
{
        struct dp_table_hdr *h = t->hdr;
        uint32_t head = h->free_head;
        dp_table_link_set(e, 0, head);
        /* Word by word: links gathered in a local array and copied whole
         * would stall on store forwarding. */
        if (head != 0) {
                const struct dp_entity *n = &t->slots[head - 1];
                for (unsigned k = 1; k < DP_TABLE_LINKS; k++)
                        dp_table_link_set(e, k, dp_table_link(n, k - 1));
        } else {
                for (unsigned k = 1; k < DP_TABLE_LINKS; k++)
                        dp_table_link_set(e, k, 0);
        }
        h->free_head = slot + 1;
}

/* Takes a free slot and fills it from proto; the caller names it. */
static inline struct dp_entity *dp_table_slot_take(struct dp_table *t,
                                                   const struct dp_entity *proto)
{
        struct dp_table_hdr *h = t->hdr;
        if (h->free_head == 0)
                return NULL;
        uint32_t slot = h->free_head - 1;
        struct dp_entity *e = &t->slots[slot];
        DP_ASSERT(!(e->flags & DP_ENT_F_LIVE));
        /* Only raised (attach recounts it from the slots after a crash). */
        if (slot >= h->top)
                h->top = slot + 1;
        h->free_head = e->q_head;
        uint32_t ahead = dp_table_link(e, DP_TABLE_LINKS - 1);
        if (ahead - 1 < t->capacity)
                __builtin_prefetch(&t->slots[ahead - 1], 1);
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

static inline void dp_table_slot_put(struct dp_table *t, struct dp_entity *e)
{
        struct dp_table_hdr *h = t->hdr;
        uint32_t slot = (uint32_t)(e - t->slots);
        e->flags = 0;
        e->gen = dp_handle_gen_next(e->gen);
        e->name_ref = DP_NAME_NONE;
        dp_table_free_push(t, e, slot);
        h->live--;
}

uint64_t dp_table_handle(const struct dp_table *t, const struct dp_entity *e)
{
        return dp_handle_make(t->shard, (uint32_t)(e - t->slots), e->gen);
}

/* Creation once the name is known valid and hashed: one index probe both
 * refuses a duplicate and finds the entry the new name goes in. Always
 * inline: gcc keeps it a call from the create burst's loop otherwise, and
 * the call (six registers saved and restored a name) measured 5 to 8% of a
 * create. */
__attribute__((always_inline))
static inline int dp_table_create_hashed(struct dp_table *t, const struct dp_entity *proto,
                                         const char *name, uint32_t len, uint64_t hash,
                                         uint64_t *handle)
{
        uint64_t at = 0;
        if (name != NULL) {
                struct dp_table_key k = { .t = t, .s = name, .len = len };
                if (dp_index_probe(&t->index, hash, dp_table_key_eq, &k, &at) >= 0)
                        return -EEXIST;
        }
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
                /* Cannot fail: the index holds as many keys as the table,
                 * and nothing touched it since the probe. */
                DP_VERIFY(dp_index_insert_at(&t->index, at, hash,
                                             (uint32_t)(e - t->slots)) == 0);
        }
        *handle = dp_table_handle(t, e);
        return 0;
}

int dp_table_create(struct dp_table *t, const struct dp_entity *proto,
                    const char *name, uint32_t name_len, uint64_t *handle)
{
        uint64_t hash = 0;
        if (name != NULL) {
                if (!dp_subject_literal_quick(name, name_len) &&
                    dp_subject_check(name, name_len, false) != 0)
                        return -EINVAL;
                hash = dp_table_hash(name, name_len);
        }
        return dp_table_create_hashed(t, proto, name, name_len, hash, handle);
}

/* First stage of a batched create: validate the name, hash it and start
 * loading its buckets. */
static inline void dp_table_create_prepare(const struct dp_table *t, const struct dp_name *nm,
                                           int *rc, uint64_t *hash)
{
        if (!dp_subject_literal_quick(nm->s, nm->len) &&
            dp_subject_check(nm->s, nm->len, false) != 0) {
                *rc = -EINVAL;
                return;
        }
        *rc = 0;
        *hash = dp_table_hash(nm->s, nm->len);
        dp_index_prefetch(&t->index, *hash);
}

uint32_t dp_table_create_burst(struct dp_table *t, const struct dp_entity *proto,
                               const struct dp_name *names, uint32_t n,
                               uint64_t *handles, int *rcs)
{
        uint64_t hashes[DP_TABLE_RING];
        uint32_t created = 0;

        /* A software pipeline: name i + DP_TABLE_AHEAD is prepared while
         * name i is created, so its home group has arrived when name i's
         * turn comes. */
        for (uint32_t i = 0; i < n && i < DP_TABLE_AHEAD; i++)
                dp_table_create_prepare(t, &names[i], &rcs[i], &hashes[i % DP_TABLE_RING]);
        for (uint32_t i = 0; i < n; i++) {
                uint32_t j = i + DP_TABLE_AHEAD;
                if (j < n)
                        dp_table_create_prepare(t, &names[j], &rcs[j], &hashes[j % DP_TABLE_RING]);
                if (rcs[i] != 0)
                        continue;
                rcs[i] = dp_table_create_hashed(t, proto, names[i].s, names[i].len,
                                                hashes[i % DP_TABLE_RING], &handles[i]);
                created += rcs[i] == 0;
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

void dp_table_prefetch(const struct dp_table *t, const char *name, uint32_t len)
{
        if (name != NULL && len != 0 && len <= DP_NAME_MAX)
                dp_index_prefetch(&t->index, dp_table_hash(name, len));
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

/* The stages of a batched find, one dependent load apart: the name gives
 * the home group, its tags the likely slot, the slot the stored name that
 * the compare reads. Each starts loading what the next needs. */
static inline void dp_table_find_stage_hash(const struct dp_table *t, const struct dp_name *nm,
                                            int *rc, uint64_t *hash)
{
        if (nm->s == NULL || nm->len == 0 || nm->len > DP_NAME_MAX) {
                *rc = -ENOENT;
                return;
        }
        *rc = 0;
        *hash = dp_table_hash(nm->s, nm->len);
        dp_index_prefetch(&t->index, *hash);
}

static inline void dp_table_find_stage_group(const struct dp_table *t, int rc, uint64_t hash,
                                             uint32_t *cand)
{
        *cand = rc == 0 ? dp_index_first_candidate(&t->index, hash) : UINT32_MAX;
        if (*cand < t->capacity)
                __builtin_prefetch(&t->slots[*cand]);
}

static inline void dp_table_find_stage_slot(const struct dp_table *t, uint32_t cand)
{
        if (cand >= t->capacity)
                return;
        uint32_t ref = t->slots[cand].name_ref;
        if (ref < t->names.unit_count)
                __builtin_prefetch(dp_names_unit(&t->names, ref));
}

uint32_t dp_table_find_burst(const struct dp_table *t, const struct dp_name *names, uint32_t n,
                             uint64_t *handles, int *rcs)
{
        const uint32_t a = DP_TABLE_AHEAD;
        uint64_t hashes[DP_TABLE_RING];
        uint32_t cands[DP_TABLE_RING];
        uint32_t found = 0;

        for (uint32_t i = 0; i < n && i < 3 * a; i++)
                dp_table_find_stage_hash(t, &names[i], &rcs[i], &hashes[i % DP_TABLE_RING]);
        for (uint32_t i = 0; i < n && i < 2 * a; i++)
                dp_table_find_stage_group(t, rcs[i], hashes[i % DP_TABLE_RING],
                                          &cands[i % DP_TABLE_RING]);
        for (uint32_t i = 0; i < n && i < a; i++)
                dp_table_find_stage_slot(t, cands[i % DP_TABLE_RING]);
        for (uint32_t i = 0; i < n; i++) {
                uint32_t j = i + 3 * a;
                if (j < n)
                        dp_table_find_stage_hash(t, &names[j], &rcs[j], &hashes[j % DP_TABLE_RING]);
                j = i + 2 * a;
                if (j < n)
                        dp_table_find_stage_group(t, rcs[j], hashes[j % DP_TABLE_RING],
                                                  &cands[j % DP_TABLE_RING]);
                j = i + a;
                if (j < n)
                        dp_table_find_stage_slot(t, cands[j % DP_TABLE_RING]);
                if (rcs[i] != 0)
                        continue;
                int64_t slot = dp_table_lookup(t, names[i].s, names[i].len,
                                               hashes[i % DP_TABLE_RING]);
                if (slot < 0) {
                        rcs[i] = -ENOENT;
                        continue;
                }
                handles[i] = dp_table_handle(t, &t->slots[slot]);
                found++;
        }
        return found;
}

const char *dp_table_name(const struct dp_table *t, const struct dp_entity *e, uint32_t *len)
{
        if (!(e->flags & DP_ENT_F_NAMED))
                return NULL;
        return dp_names_get(&t->names, e->name_ref, len);
}

/* The hash a named entity is filed under. */
static inline uint64_t dp_table_entity_hash(const struct dp_table *t, const struct dp_entity *e)
{
        uint32_t len;
        const char *name = dp_names_get(&t->names, e->name_ref, &len);
        DP_VERIFY(name != NULL);
        return dp_table_hash(name, len);
}

/* Destruction of live entity e, whose name (if any) hashes to hash.
 *
 * The order makes a destroy safe to replay after the dataplane was killed
 * in the middle of it (a restarted dataplane runs the command again):
 * index entry first, then the slot, then the name. Killed after the index
 * entry went, the replay finds the slot still live and its entry already
 * gone (so a missing entry is not an error here); killed after the slot
 * went, the replay gets -ESTALE and the name's units stay leaked (bounded,
 * one name per crash) rather than being freed twice. */
static inline void dp_table_destroy_hashed(struct dp_table *t, struct dp_entity *e,
                                           uint64_t hash)
{
        bool named = (e->flags & DP_ENT_F_NAMED) != 0;
        uint32_t ref = e->name_ref;
        if (named)
                (void)dp_index_remove(&t->index, hash, (uint32_t)(e - t->slots));
        dp_table_slot_put(t, e);
        if (named)
                dp_names_free(&t->names, ref);
        t->hdr->destroys++;
}

int dp_table_destroy(struct dp_table *t, uint64_t handle)
{
        struct dp_entity *e;
        int rc = dp_table_get(t, handle, &e);
        if (rc != 0)
                return rc;
        uint64_t hash = (e->flags & DP_ENT_F_NAMED) ? dp_table_entity_hash(t, e) : 0;
        dp_table_destroy_hashed(t, e, hash);
        return 0;
}

/* The stages of a batched destroy, one dependent load apart: a handle
 * gives the slot, the slot the name, the name the buckets. Each starts
 * loading what the next needs, DP_TABLE_AHEAD handles before it. */
static inline void dp_table_destroy_stage_slot(const struct dp_table *t, uint64_t handle)
{
        uint32_t slot = dp_handle_slot(handle);
        if (slot < t->capacity)
                __builtin_prefetch(&t->slots[slot], 1);
}

static inline void dp_table_destroy_stage_name(const struct dp_table *t, uint64_t handle)
{
        uint32_t slot = dp_handle_slot(handle);
        if (slot >= t->capacity)
                return;
        uint32_t ref = t->slots[slot].name_ref;
        if (ref < t->names.unit_count)
                __builtin_prefetch(dp_names_unit(&t->names, ref), 1);
}

/* The last stage before the destroy: resolve the handle, hash the name and
 * start loading its buckets. A handle may repeat in the burst, so this is a
 * first look only: the destroy checks the handle again. */
static inline void dp_table_destroy_stage_hash(const struct dp_table *t, uint64_t handle,
                                               int *rc, uint64_t *hash)
{
        struct dp_entity *e;
        *rc = dp_table_get(t, handle, &e);
        *hash = 0;
        if (*rc == 0 && (e->flags & DP_ENT_F_NAMED)) {
                *hash = dp_table_entity_hash(t, e);
                dp_index_prefetch(&t->index, *hash);
        }
}

uint32_t dp_table_destroy_burst(struct dp_table *t, const uint64_t *handles, uint32_t n,
                                int *rcs)
{
        const uint32_t a = DP_TABLE_AHEAD;
        uint64_t hashes[DP_TABLE_RING];
        uint32_t destroyed = 0;

        for (uint32_t i = 0; i < n && i < 3 * a; i++)
                dp_table_destroy_stage_slot(t, handles[i]);
        for (uint32_t i = 0; i < n && i < 2 * a; i++)
                dp_table_destroy_stage_name(t, handles[i]);
        for (uint32_t i = 0; i < n && i < a; i++)
                dp_table_destroy_stage_hash(t, handles[i], &rcs[i], &hashes[i % DP_TABLE_RING]);
        for (uint32_t i = 0; i < n; i++) {
                if (i + 3 * a < n)
                        dp_table_destroy_stage_slot(t, handles[i + 3 * a]);
                if (i + 2 * a < n)
                        dp_table_destroy_stage_name(t, handles[i + 2 * a]);
                if (i + a < n)
                        dp_table_destroy_stage_hash(t, handles[i + a], &rcs[i + a],
                                                    &hashes[(i + a) % DP_TABLE_RING]);
                struct dp_entity *e;
                if (rcs[i] != 0)
                        continue;
                /* Again: an earlier copy of this handle in the burst has
                 * destroyed the entity, and this one is stale. */
                rcs[i] = dp_table_get(t, handles[i], &e);
                if (rcs[i] != 0)
                        continue;
                dp_table_destroy_hashed(t, e, hashes[i % DP_TABLE_RING]);
                destroyed++;
        }
        return destroyed;
}
