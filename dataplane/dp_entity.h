/* dp_entity.h - the entity record: one 64-byte slot in a shard's table.
 *
 * An idle mailbox costs this record, its name in the name heap (16 bytes
 * for names under 16 bytes) and its index entry (8 bytes at a load of at
 * most 0.7): about 100 bytes, under the 128-byte budget. Fields read
 * together on the hot path share the first half-line.
 */
#ifndef ATOMQ_DP_ENTITY_H
#define ATOMQ_DP_ENTITY_H

#include <stdint.h>

#include "dataplane/dp_atoms.h"

enum dp_entity_flags {
        DP_ENT_F_LIVE = 1u << 0,
        DP_ENT_F_NAMED = 1u << 1,
        DP_ENT_F_LEAST_LOADED = 1u << 2, /* group routing picks the least loaded */
        DP_ENT_F_SYNC_SHIFT = 3,         /* bits 3-4: enum dp_sync (disk entities) */
        DP_ENT_F_SYNC_MASK = 3u << 3,
};

struct dp_entity {
        uint32_t gen;        /* generation of the current (or next) tenant */
        uint8_t mode;        /* enum dp_mode: the row it was created from */
        uint8_t storage;     /* enum dp_storage */
        uint8_t retention;   /* enum dp_retention */
        uint8_t routing;     /* enum dp_routing */
        uint8_t delivery;    /* enum dp_delivery */
        uint8_t overflow;    /* enum dp_overflow */
        uint8_t flags;       /* enum dp_entity_flags */
        uint8_t lifecycle;   /* enum dp_lifecycle_flags */
        uint32_t name_ref;   /* dp_names reference, DP_NAME_NONE if anonymous */
        uint32_t q_head;     /* first queued message; free-list link when free */
        uint32_t q_tail;     /* last queued message */
        uint32_t msgs;       /* messages held */
        uint32_t bytes;      /* payload bytes held */
        uint32_t max_msgs;   /* 0: unlimited up to the shard's pools */
        uint32_t max_bytes;  /* 0: unlimited up to the shard's pools */
        uint32_t ttl_ms;     /* 0: none; meaning set by lifecycle flags */
        uint32_t ext;        /* mode extension record (cursors, ends), or none */
        uint32_t parties;    /* subscribers / attached ends */
        uint32_t bind_head;  /* first binding (party) + 1, 0: none */
        uint64_t seq;        /* next sequence number or log offset */
};
_Static_assert(sizeof(struct dp_entity) == 64, "an entity is one cache line");

#endif /* ATOMQ_DP_ENTITY_H */
