/* dp_index.c - linear-probing name index with backward-shift deletion. */
#include "dataplane/dp_index.h"

#include <errno.h>
#include <string.h>

uint64_t dp_index_buckets(uint32_t max_keys)
{
        uint64_t need = (uint64_t)max_keys * 10 / 7 + 1;
        uint64_t b = 8;
        while (b < need)
                b <<= 1;
        return b;
}

size_t dp_index_bytes(uint32_t max_keys)
{
        if (max_keys == 0)
                return 0;
        uint64_t b = dp_index_buckets(max_keys);
        if (b > (1ull << 32))
                return 0;
        return (size_t)b * sizeof(struct dp_index_entry);
}

int dp_index_init(struct dp_index *ix, void *mem, size_t len, uint32_t max_keys)
{
        size_t bytes = dp_index_bytes(max_keys);
        if (bytes == 0 || (uintptr_t)mem % sizeof(struct dp_index_entry) != 0)
                return -EINVAL;
        if (len < bytes)
                return -ENOSPC;
        memset(mem, 0, bytes);
        ix->e = mem;
        ix->mask = (uint32_t)(dp_index_buckets(max_keys) - 1);
        ix->count = 0;
        ix->max_keys = max_keys;
        return 0;
}

int dp_index_attach(struct dp_index *ix, void *mem, size_t len, uint32_t max_keys)
{
        size_t bytes = dp_index_bytes(max_keys);
        if (bytes == 0 || (uintptr_t)mem % sizeof(struct dp_index_entry) != 0)
                return -EINVAL;
        if (len < bytes)
                return -ENOSPC;
        ix->e = mem;
        ix->mask = (uint32_t)(dp_index_buckets(max_keys) - 1);
        ix->max_keys = max_keys;
        ix->count = 0;
        for (uint64_t i = 0; i <= ix->mask; i++)
                ix->count += ix->e[i].slot1 != 0;
        return 0;
}

int64_t dp_index_find(const struct dp_index *ix, uint64_t hash, dp_index_eq_fn *eq, void *arg)
{
        uint32_t tag = (uint32_t)(hash >> 32);
        /* The load factor stays under 0.7, so an empty bucket ends every
         * probe; the bound guards against our own bugs only. */
        for (uint32_t i = tag & ix->mask, n = 0; n <= ix->mask; i = (i + 1) & ix->mask, n++) {
                const struct dp_index_entry *e = &ix->e[i];
                if (e->slot1 == 0)
                        return -ENOENT;
                if (e->tag == tag && eq(arg, e->slot1 - 1))
                        return e->slot1 - 1;
        }
        return -ENOENT;
}

int dp_index_insert(struct dp_index *ix, uint64_t hash, uint32_t slot)
{
        if (ix->count >= ix->max_keys)
                return -ENOSPC;
        uint32_t tag = (uint32_t)(hash >> 32);
        uint32_t i = tag & ix->mask;
        while (ix->e[i].slot1 != 0)
                i = (i + 1) & ix->mask;
        ix->e[i] = (struct dp_index_entry){ .slot1 = slot + 1, .tag = tag };
        ix->count++;
        return 0;
}

/* Distance from an entry's home bucket to where it sits. */
static uint32_t dp_index_dist(const struct dp_index *ix, uint32_t at)
{
        return (at - (ix->e[at].tag & ix->mask)) & ix->mask;
}

int dp_index_remove(struct dp_index *ix, uint64_t hash, uint32_t slot)
{
        uint32_t tag = (uint32_t)(hash >> 32);
        uint32_t i = tag & ix->mask;

        for (;;) {
                if (ix->e[i].slot1 == 0)
                        return -ENOENT;
                if (ix->e[i].slot1 == slot + 1)
                        break;
                i = (i + 1) & ix->mask;
        }
        /* Backward shift: pull each following entry that may move closer to
         * its home into the hole, until an empty bucket or an entry that
         * already sits at home. */
        uint32_t hole = i;
        for (uint32_t j = (i + 1) & ix->mask; ix->e[j].slot1 != 0; j = (j + 1) & ix->mask) {
                /* e[j] can fill the hole if the hole lies on its probe
                 * path, between its home and j; one at home never moves. */
                if (((j - hole) & ix->mask) <= dp_index_dist(ix, j)) {
                        ix->e[hole] = ix->e[j];
                        hole = j;
                }
        }
        ix->e[hole] = (struct dp_index_entry){ 0, 0 };
        ix->count--;
        return 0;
}
