/* dp_handle.h - 64-bit entity handles: generation, shard, slot.
 *
 *   63 62          40 39      32 31                    0
 *   +--+-------------+----------+-----------------------+
 *   |0 | generation  | shard 8  | slot 32               |
 *   +--+-------------+----------+-----------------------+
 *
 * The shard says which worker owns the entity, so any thread routes a
 * handle without a lookup. The generation changes every time a slot is
 * destroyed, so a handle kept past its entity's life is recognised as stale
 * (-ESTALE) instead of reaching whatever reused the slot. Generation 0 is
 * never issued, so the handle 0 is never valid and can mean "none". Bit 63
 * is always 0, so a handle and an endpoint reference can share one tagged
 * 64-bit word (a subscription's target in the trie).
 */
#ifndef ATOMQ_DP_HANDLE_H
#define ATOMQ_DP_HANDLE_H

#include <stdint.h>

#define DP_HANDLE_NONE 0ull
#define DP_HANDLE_SLOT_BITS 32
#define DP_HANDLE_SHARD_BITS 8
#define DP_HANDLE_GEN_BITS 23
#define DP_HANDLE_GEN_MASK ((1u << DP_HANDLE_GEN_BITS) - 1)
#define DP_SHARDS_MAX (1u << DP_HANDLE_SHARD_BITS)

static inline uint64_t dp_handle_make(uint32_t shard, uint32_t slot, uint32_t gen)
{
        return (uint64_t)(gen & DP_HANDLE_GEN_MASK) << 40 | (uint64_t)(shard & 0xff) << 32 | slot;
}

static inline uint32_t dp_handle_slot(uint64_t h)
{
        return (uint32_t)h;
}

static inline uint32_t dp_handle_shard(uint64_t h)
{
        return (uint32_t)(h >> 32) & 0xff;
}

static inline uint32_t dp_handle_gen(uint64_t h)
{
        return (uint32_t)(h >> 40);
}

/* The generation after `gen`, skipping 0 when the 23 bits wrap. */
static inline uint32_t dp_handle_gen_next(uint32_t gen)
{
        uint32_t next = (gen + 1) & DP_HANDLE_GEN_MASK;
        return next == 0 ? 1 : next;
}

#endif /* ATOMQ_DP_HANDLE_H */
