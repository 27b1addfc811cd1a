/* dp_index.h - the per-shard hash index from entity name to slot.
 *
 * Open addressing with linear probing and backward-shift deletion, so heavy
 * create/destroy churn leaves no tombstones and probe chains stay short.
 * An entry is 8 bytes: the slot (+1, 0 = empty) and a 32-bit tag, the upper
 * half of the name's 64-bit hash. The tag both filters probes (a name is
 * compared only when its tag matches) and gives the entry's home bucket
 * (tag & mask), which is what backward-shift deletion needs.
 *
 * The table is sized once for a maximum number of keys at a load factor of
 * at most 0.7; inserting beyond that maximum is -ENOSPC.
 */
#ifndef ATOMQ_DP_INDEX_H
#define ATOMQ_DP_INDEX_H

#include <stdbool.h>
#include <stdint.h>

#include "shm/shm_base.h"

struct dp_index_entry {
        uint32_t slot1; /* slot + 1; 0 marks an empty bucket */
        uint32_t tag;   /* hash >> 32 */
};
_Static_assert(sizeof(struct dp_index_entry) == 8, "index entry");

struct dp_index {
        struct dp_index_entry *e;
        uint32_t mask;
        uint32_t count;
        uint32_t max_keys;
};

/* Equality callback: does `slot` hold the key being looked up? */
typedef bool dp_index_eq_fn(void *arg, uint32_t slot);

/* Buckets for max_keys keys: the power of two at or above max_keys / 0.7. */
uint64_t dp_index_buckets(uint32_t max_keys);

/* Bytes for max_keys keys (0 when max_keys is 0 or the table would need
 * more than 2^32 buckets). */
size_t dp_index_bytes(uint32_t max_keys);

/* Formats an empty index. -EINVAL: max_keys 0 or too large, mem unaligned;
 * -ENOSPC: len below dp_index_bytes(max_keys). */
int dp_index_init(struct dp_index *ix, void *mem, size_t len, uint32_t max_keys);

/* Attaches to an index formatted earlier for max_keys keys, counting its
 * entries (one pass over the buckets). -EINVAL / -ENOSPC as init. */
int dp_index_attach(struct dp_index *ix, void *mem, size_t len, uint32_t max_keys);

/* Finds the slot whose key hashes to `hash` and satisfies eq; returns the
 * slot or -ENOENT. */
int64_t dp_index_find(const struct dp_index *ix, uint64_t hash, dp_index_eq_fn *eq, void *arg);

/* Adds slot under hash (the caller has checked the key is absent).
 * -ENOSPC: the index holds max_keys keys already. */
int dp_index_insert(struct dp_index *ix, uint64_t hash, uint32_t slot);

/* Removes slot, filed under hash. -ENOENT when it is not there. */
int dp_index_remove(struct dp_index *ix, uint64_t hash, uint32_t slot);

/* Starts loading the home bucket of hash (batched creates hide the miss). */
static inline void dp_index_prefetch(const struct dp_index *ix, uint64_t hash)
{
        __builtin_prefetch(&ix->e[(uint32_t)(hash >> 32) & ix->mask], 1);
}

#endif /* ATOMQ_DP_INDEX_H */
