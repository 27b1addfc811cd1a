/* dp_groups.c - the queue-group gate of dp_groups.h. */
#include "dataplane/dp_groups.h"

/* The slot of group; with create, a free one is claimed for it. NULL when
 * absent (or the table is full). */
static struct dp_group_slot *dp_groups_slot(struct dp_groups *g, uint32_t group, bool create)
{
        uint32_t start = (group * 0x9e3779b1u) % DP_GROUPS_MAX;
        for (uint32_t n = 0; n < DP_GROUPS_MAX; n++) {
                struct dp_group_slot *s = &g->slot[(start + n) % DP_GROUPS_MAX];
                /* Pairs with the release CAS below: a slot's key is set once. */
                uint32_t key = atomic_load_explicit(&s->group, memory_order_acquire);
                if (key == group)
                        return s;
                if (key != 0)
                        continue;
                if (!create)
                        return NULL;
                uint32_t expect = 0;
                if (atomic_compare_exchange_strong_explicit(&s->group, &expect, group,
                                                            memory_order_acq_rel,
                                                            memory_order_acquire) ||
                    expect == group)
                        return s;
        }
        return NULL;
}

void dp_groups_member(struct dp_groups *g, uint32_t group, uint32_t shard, int delta)
{
        struct dp_group_slot *s = dp_groups_slot(g, group, delta > 0);
        if (s == NULL) {
                if (delta > 0)
                        atomic_fetch_add_explicit(&g->full, 1, memory_order_relaxed);
                return;
        }
        uint32_t c = s->count[shard];
        if (delta < 0 && c == 0)
                return;
        s->count[shard] = delta > 0 ? c + 1 : c - 1;
        if (delta > 0 && c == 0)
                atomic_fetch_or_explicit(&s->shards, 1ull << shard, memory_order_release);
        else if (delta < 0 && c == 1)
                atomic_fetch_and_explicit(&s->shards, ~(1ull << shard), memory_order_release);
}

bool dp_groups_serve(const struct dp_groups *g, uint32_t group, uint32_t shard, uint64_t pub_id)
{
        if (pub_id == 0)
                return true;
        const struct dp_group_slot *s = dp_groups_slot((struct dp_groups *)g, group, false);
        if (s == NULL)
                return true;
        /* Pairs with the release updates in dp_groups_member. */
        uint64_t mask = atomic_load_explicit(&s->shards, memory_order_acquire);
        if ((mask >> shard & 1) == 0)
                return true; /* members here unknown to the table: serve them */
        uint64_t h = (pub_id ^ group) * 0x9e3779b97f4a7c15ull;
        unsigned pick = (unsigned)((h >> 32) % (unsigned)__builtin_popcountll(mask));
        for (unsigned i = 0; i < pick; i++)
                mask &= mask - 1;
        return (unsigned)__builtin_ctzll(mask) == shard;
}
