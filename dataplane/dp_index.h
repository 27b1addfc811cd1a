/* dp_index.h - the per-shard hash index from entity name to slot.
 *
 * Buckets are 64-byte groups, one cache line each, of ten entries: a 16-bit
 * tag per entry (part of the name's hash, never 0; 0 marks an empty entry),
 * the entity slots, and an overflow count. A key lives in its home group
 * (chosen by the upper half of the hash) or, when that group was full when
 * the key came, in the first group after it with room; every group it
 * passed counts it in its overflow. A probe reads the home group, and the
 * next only while the current one's overflow is not 0:
 *
 *   - a probe almost always reads one cache line: with random hashes, one
 *     in 500 reads a second group at 1 M keys, one in 100 at 10 M, one in
 *     32 at the most keys an index takes; linear probing over 8-byte
 *     buckets, before it, crossed into a second line on up to a third of
 *     the inserts;
 *   - removing a key empties its entry and takes it out of the overflow
 *     counts of the groups it passed: no tombstones and no shifting, so
 *     heavy create/destroy churn leaves the index as clean as new;
 *   - the ten tags of a group are compared at once (SSE2, or SWAR where
 *     there is none), with no branch per entry; a 16-bit tag matches a
 *     wrong key once in 65,536 compares, and only then is a name compared.
 *
 * The index takes as many bytes as 8-byte buckets at a load of at most 0.7
 * would (one group per 8 of them), so keys fill at most 56% of the entries.
 * Inserting beyond the maximum number of keys is -ENOSPC. One writer, the
 * shard's worker; nothing else reads it.
 */
#ifndef ATOMQ_DP_INDEX_H
#define ATOMQ_DP_INDEX_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "shm/shm_base.h"

#define DP_INDEX_GROUP_KEYS 10

struct dp_index_group {
        uint16_t tag[DP_INDEX_GROUP_KEYS];  /* 0: the entry is empty */
        uint32_t overflow;                  /* keys stored past this group that
                                               began their probe at or before it */
        uint32_t slot[DP_INDEX_GROUP_KEYS];
};
_Static_assert(sizeof(struct dp_index_group) == SHM_CACHE_LINE, "a group is one line");
_Static_assert(offsetof(struct dp_index_group, overflow) == 20, "tags, then the count");

struct dp_index {
        struct dp_index_group *g;
        uint32_t gmask;       /* groups - 1 */
        uint32_t count;       /* keys held */
        uint32_t max_keys;
};

/* Equality callback: does `slot` hold the key being looked up? */
typedef bool dp_index_eq_fn(void *arg, uint32_t slot);

/* Groups for max_keys keys: one per 8 buckets of an 8-byte-bucket table at
 * load 0.7, a power of two. */
uint64_t dp_index_groups(uint32_t max_keys);

/* Bytes for max_keys keys (0 when max_keys is 0 or the table would need
 * more than 2^29 groups). */
size_t dp_index_bytes(uint32_t max_keys);

/* Formats an empty index. -EINVAL: max_keys 0 or too large, mem not
 * line-aligned; -ENOSPC: len below dp_index_bytes(max_keys). */
int dp_index_init(struct dp_index *ix, void *mem, size_t len, uint32_t max_keys);

/* Attaches to an index formatted earlier for max_keys keys (whose slots are
 * below max_keys), counting its entries in one pass over the groups.
 * -EINVAL / -ENOSPC as init; -EBADMSG: an entry's slot is max_keys or more. */
int dp_index_attach(struct dp_index *ix, void *mem, size_t len, uint32_t max_keys);

/* The probe, inline so that the caller's eq is inlined into it: a create
 * or a find spends most of its time here. */

static inline uint32_t dp_index_home(const struct dp_index *ix, uint64_t hash)
{
        return (uint32_t)(hash >> 32) & ix->gmask;
}

static inline uint16_t dp_index_tag(uint64_t hash)
{
        uint16_t tag = (uint16_t)hash;
        return (uint16_t)(tag + (tag == 0)); /* 0 marks an empty entry */
}

static inline uint32_t dp_index_next(const struct dp_index *ix, uint32_t group)
{
        return (group + 1) & ix->gmask;
}

/* The scan of a group: which entries hold tag, which are empty, as masks
 * (bit k for entry k). Ten 16-bit compares at once, with no branch. */
struct dp_index_scan {
        uint32_t match;
        uint32_t empty;
};

#if defined(__SSE2__)
#include <emmintrin.h>

/* SSE2 (every x86-64): two loads cover the ten tags, tags 0-7 and 2-9; the
 * lanes both cover compare the same. A byte mask has two bits a lane. */
static inline uint32_t dp_index_mask_lanes(__m128i lo, __m128i hi, __m128i pat)
{
        return (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi16(lo, pat)) |
               (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi16(hi, pat)) << 4;
}

/* Bit 2k of each mask for entry k: the masks keep one of each lane's two
 * bits, and dp_index_lane halves the bit number. */
static inline struct dp_index_scan dp_index_group_scan(const struct dp_index_group *g,
                                                       uint16_t tag)
{
        __m128i lo = _mm_loadu_si128((const __m128i *)(const void *)&g->tag[0]);
        __m128i hi = _mm_loadu_si128((const __m128i *)(const void *)&g->tag[2]);
        struct dp_index_scan s = {
                .match = dp_index_mask_lanes(lo, hi, _mm_set1_epi16((short)tag)) & 0x55555u,
                .empty = dp_index_mask_lanes(lo, hi, _mm_setzero_si128()) & 0x55555u,
        };
        return s;
}

/* The entry of a scan mask's lowest set bit. */
static inline uint32_t dp_index_lane(uint32_t m)
{
        return (uint32_t)__builtin_ctz(m) / 2;
}
#else
#define DP_INDEX_LANES_HIGH 0x8000800080008000ull

/* The 16-bit lanes of x that are zero, as 4 bits (bit i: lane i). Exact: a
 * lane's low 15 bits plus 0x7fff carry into its top bit and no further. */
static inline uint32_t dp_index_lanes_zero(uint64_t x)
{
        uint64_t t = ((x & ~DP_INDEX_LANES_HIGH) + ~DP_INDEX_LANES_HIGH) | x;
        uint64_t m = (~t & DP_INDEX_LANES_HIGH) >> 15; /* bit 16i: lane i is zero */
        /* Moves bit 16i to bit 60 + i; the other products land on distinct
         * bits below 60 or above 63, so nothing carries into the four. */
        const uint64_t gather = 1ull << 60 | 1ull << 45 | 1ull << 30 | 1ull << 15;
        return (uint32_t)((m * gather) >> 60);
}

/* Four tags from p, tag i in lane i whatever the host's byte order. */
static inline uint64_t dp_index_load_tags(const uint16_t *p)
{
        uint64_t w;
        memcpy(&w, p, sizeof(w));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        w = w >> 48 | (w >> 16 & 0xffff0000ull) | (w << 16 & 0xffff00000000ull) | w << 48;
#endif
        return w;
}

/* The entries of g whose tag is v, bit k for entry k (SWAR). */
static inline uint32_t dp_index_group_match(const struct dp_index_group *g, uint16_t v)
{
        uint64_t pat = 0x0001000100010001ull * v;
        uint64_t last = (uint64_t)g->tag[8] | (uint64_t)g->tag[9] << 16;
        return dp_index_lanes_zero(dp_index_load_tags(&g->tag[0]) ^ pat) |
               dp_index_lanes_zero(dp_index_load_tags(&g->tag[4]) ^ pat) << 4 |
               (dp_index_lanes_zero(last ^ pat) & 3u) << 8;
}

static inline struct dp_index_scan dp_index_group_scan(const struct dp_index_group *g,
                                                       uint16_t tag)
{
        struct dp_index_scan s = { .match = dp_index_group_match(g, tag),
                                   .empty = dp_index_group_match(g, 0) };
        return s;
}

static inline uint32_t dp_index_lane(uint32_t m)
{
        return (uint32_t)__builtin_ctz(m);
}
#endif

/* Looks the key up: returns its slot, or -ENOENT with *at set to the entry
 * where dp_index_insert_at files the key (the first empty one from its home
 * group on). One probe serves both the duplicate check and the insert of a
 * create. */
static inline int64_t dp_index_probe(const struct dp_index *ix, uint64_t hash,
                                     dp_index_eq_fn *eq, void *arg, uint64_t *at)
{
        uint16_t tag = dp_index_tag(hash);
        uint32_t gi = dp_index_home(ix, hash);
        bool room = false;

        /* The groups bound the walk against our own bugs only: keys fill
         * at most 56% of the entries, so an overflow of 0 ends it soon. */
        for (uint32_t n = 0; n <= ix->gmask; n++, gi = dp_index_next(ix, gi)) {
                const struct dp_index_group *g = &ix->g[gi];
                struct dp_index_scan sc = dp_index_group_scan(g, tag);
                for (uint32_t m = sc.match; m != 0; m &= m - 1) {
                        uint32_t slot = g->slot[dp_index_lane(m)];
                        if (eq(arg, slot))
                                return slot;
                }
                if (!room && sc.empty != 0) {
                        *at = (uint64_t)gi * DP_INDEX_GROUP_KEYS + dp_index_lane(sc.empty);
                        room = true;
                }
                if (g->overflow == 0)
                        break;
        }
        /* Every group the probe read was full: the key goes in the first
         * one after them with room. */
        for (uint32_t n = 0; !room && n <= ix->gmask; n++) {
                gi = dp_index_next(ix, gi);
                struct dp_index_scan sc = dp_index_group_scan(&ix->g[gi], 0);
                if (sc.empty != 0) {
                        *at = (uint64_t)gi * DP_INDEX_GROUP_KEYS + dp_index_lane(sc.empty);
                        room = true;
                }
        }
        DP_VERIFY(room);
        return -ENOENT;
}

/* Finds the slot whose key hashes to `hash` and satisfies eq; returns the
 * slot or -ENOENT. */
static inline int64_t dp_index_find(const struct dp_index *ix, uint64_t hash,
                                    dp_index_eq_fn *eq, void *arg)
{
        uint64_t at;
        return dp_index_probe(ix, hash, eq, arg, &at);
}

/* Files slot under hash at entry `at`, which dp_index_probe returned for
 * this hash with no change to the index since. -ENOSPC: the index holds
 * max_keys keys already. */
static inline int dp_index_insert_at(struct dp_index *ix, uint64_t at, uint64_t hash,
                                     uint32_t slot)
{
        if (ix->count >= ix->max_keys)
                return -ENOSPC;
        uint32_t gi = (uint32_t)(at / DP_INDEX_GROUP_KEYS);
        uint32_t k = (uint32_t)(at % DP_INDEX_GROUP_KEYS);
        DP_ASSERT(gi <= ix->gmask);
        DP_ASSERT(ix->g[gi].tag[k] == 0);
        /* The groups before it on the key's probe were full: the key
         * passes them. */
        for (uint32_t h = dp_index_home(ix, hash); h != gi; h = dp_index_next(ix, h))
                ix->g[h].overflow++;
        ix->g[gi].tag[k] = dp_index_tag(hash);
        ix->g[gi].slot[k] = slot;
        ix->count++;
        return 0;
}

/* Removes slot, filed under hash. -ENOENT when it is not there. */
static inline int dp_index_remove(struct dp_index *ix, uint64_t hash, uint32_t slot)
{
        uint16_t tag = dp_index_tag(hash);
        uint32_t home = dp_index_home(ix, hash);
        uint32_t gi = home;

        for (uint32_t n = 0; n <= ix->gmask; n++, gi = dp_index_next(ix, gi)) {
                struct dp_index_group *g = &ix->g[gi];
                for (uint32_t m = dp_index_group_scan(g, tag).match; m != 0; m &= m - 1) {
                        uint32_t k = dp_index_lane(m);
                        if (g->slot[k] != slot)
                                continue;
                        g->tag[k] = 0;
                        g->slot[k] = 0;
                        for (uint32_t h = home; h != gi; h = dp_index_next(ix, h))
                                ix->g[h].overflow--;
                        ix->count--;
                        return 0;
                }
                if (g->overflow == 0)
                        break;
        }
        return -ENOENT;
}

/* The slot of the first entry of hash's home group that carries its tag,
 * or UINT32_MAX: the likely answer of a lookup, for a batch to start
 * loading what the compare will read. The home group should be in cache. */
static inline uint32_t dp_index_first_candidate(const struct dp_index *ix, uint64_t hash)
{
        const struct dp_index_group *g = &ix->g[dp_index_home(ix, hash)];
        uint32_t m = dp_index_group_scan(g, dp_index_tag(hash)).match;
        return m != 0 ? g->slot[dp_index_lane(m)] : UINT32_MAX;
}

/* Starts loading the home group of hash, so that batched creates, finds and
 * destroys overlap their misses. */
static inline void dp_index_prefetch(const struct dp_index *ix, uint64_t hash)
{
        __builtin_prefetch(&ix->g[dp_index_home(ix, hash)], 1);
}

#endif /* ATOMQ_DP_INDEX_H */
