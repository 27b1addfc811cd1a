/* dp_names.h - the per-shard heap of entity names.
 *
 * Names are short (most under 32 bytes) and numerous (millions), so they are
 * kept in a compact heap of 16-byte units rather than in fixed slots in the
 * entity record: a name of len bytes takes ceil((len + 1) / 16) units (the
 * first byte holds the length). Free blocks sit on one LIFO list per size
 * (1 to 16 units), linked by unit index; a new block comes from a free list
 * of its size, else from the top. One writer (the shard's worker); readers
 * in other processes bounds-check every reference.
 */
#ifndef ATOMQ_DP_NAMES_H
#define ATOMQ_DP_NAMES_H

#include <stdint.h>

#include "shm/shm_base.h"

#define DP_NAME_MAX 255u
#define DP_NAME_UNIT_BYTES 16u
#define DP_NAME_UNITS_MAX 16u /* (1 + DP_NAME_MAX) / DP_NAME_UNIT_BYTES */
#define DP_NAME_NONE UINT32_MAX
#define DP_NAMES_MAGIC 0x53454d414e51544full /* "OTQNAMES" */

struct dp_names_hdr {
        uint64_t magic;
        uint32_t units;           /* capacity in units */
        uint32_t top;             /* first never-used unit */
        uint32_t used;            /* units in live names */
        uint32_t free_head[DP_NAME_UNITS_MAX]; /* per size: unit + 1, 0 = empty */
        uint8_t reserved[12];
};
_Static_assert(sizeof(struct dp_names_hdr) == 96, "names header");

struct dp_names {
        struct dp_names_hdr *hdr;
        uint8_t *units;
        uint32_t unit_count;
};

/* Bytes of a heap with `units` units (0 when units is 0). */
size_t dp_names_bytes(uint32_t units);

/* Formats a heap. -EINVAL: units 0 or mem unaligned; -ENOSPC: len short. */
int dp_names_init(struct dp_names *n, void *mem, size_t len, uint32_t units);

/* Attaches to a heap formatted earlier. -EPROTO: no magic; -ENOSPC: its
 * size does not fit len. */
int dp_names_attach(struct dp_names *n, void *mem, size_t len);

/* Stores a copy of s[0..len) and returns its reference in *ref.
 * -EINVAL: len 0 or > DP_NAME_MAX; -ENOSPC: the heap is full. */
int dp_names_alloc(struct dp_names *n, const char *s, uint32_t len, uint32_t *ref);

/* The bytes of name ref and their count in *len; NULL for a bad ref. */
const char *dp_names_get(const struct dp_names *n, uint32_t ref, uint32_t *len);

/* Returns the name's units to the heap. -EINVAL for a bad ref. */
int dp_names_free(struct dp_names *n, uint32_t ref);

#endif /* ATOMQ_DP_NAMES_H */
