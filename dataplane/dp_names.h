/* dp_names.h - the per-shard heap of entity names.
 *
 * Names are short (most under 32 bytes) and numerous (millions), so they are
 * kept in a compact heap of 16-byte units rather than in fixed slots in the
 * entity record: a name of len bytes takes ceil((len + 1) / 16) units (the
 * first byte holds the length). Free blocks sit on one LIFO list per size
 * (1 to 16 units), linked by unit index; a new block comes from a free list
 * of its size, else from the top, else by splitting the smallest larger free
 * block (its rest goes on the list of its own size), so the room of
 * destroyed long names serves shorter ones. Free blocks are never merged:
 * a heap churned down to short blocks still refuses a long name while
 * shorter ones fit (FULL). One writer (the shard's worker); readers in
 * other processes bounds-check every reference.
 *
 * A free block starts with the link to the next free block of its size
 * (unit + 1, 0 ends the list), then the links 2, 3 and 4 places down that
 * list. Following a chain costs one cache miss after another, so each
 * allocation starts loading the block DP_NAMES_LINKS allocations ahead. The
 * list below a block never changes while the block is on it, so these hints
 * stay exact; they are only prefetched, never followed, so a wrong one (a
 * heap attached after a crash) costs a miss and nothing else.
 *
 * The table creates and destroys an entity in a few tens of nanoseconds, so
 * allocation, lookup and freeing are inline, here.
 */
#ifndef ATOMQ_DP_NAMES_H
#define ATOMQ_DP_NAMES_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "shm/shm_base.h"

#define DP_NAME_MAX 255u
#define DP_NAME_UNIT_BYTES 16u
#define DP_NAME_UNITS_MAX 16u /* (1 + DP_NAME_MAX) / DP_NAME_UNIT_BYTES */
#define DP_NAME_NONE UINT32_MAX
#define DP_NAMES_MAGIC 0x53454d414e51544full /* "OTQNAMES" */
#define DP_NAMES_LINKS 4      /* links in a free block: the next and 3 hints */
_Static_assert(DP_NAMES_LINKS * sizeof(uint32_t) <= DP_NAME_UNIT_BYTES, "links fit a unit");

struct dp_names_hdr {
        uint64_t magic;
        uint32_t units;           /* capacity in units */
        uint32_t top;             /* first never-used unit */
        uint32_t used;            /* units in live names */
        uint32_t free_head[DP_NAME_UNITS_MAX]; /* per size: unit + 1, 0 = empty */
        uint32_t splits;          /* blocks split to serve a shorter name */
        uint8_t reserved[8];
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

/* The slow path of dp_names_alloc: the front `size` units of the smallest
 * larger free block in *unit, the rest of it freed. -ENOSPC: none. */
int dp_names_split(struct dp_names *n, uint32_t size, uint32_t *unit);

/* Units a name of len bytes takes (its length byte included). */
static inline uint32_t dp_names_units_for(uint32_t len)
{
        return (len + 1 + DP_NAME_UNIT_BYTES - 1) / DP_NAME_UNIT_BYTES;
}

static inline uint8_t *dp_names_unit(const struct dp_names *n, uint32_t unit)
{
        return n->units + (size_t)unit * DP_NAME_UNIT_BYTES;
}

static inline uint32_t dp_names_load32(const uint8_t *p)
{
        uint32_t v;
        memcpy(&v, p, sizeof(v));
        return v;
}

static inline void dp_names_store32(uint8_t *p, uint32_t v)
{
        memcpy(p, &v, sizeof(v));
}

/* Copies len bytes (1..DP_NAME_MAX) 8 at a time, the last move overlapping
 * the one before it. A memcpy of a length known only at run time becomes a
 * call or a `rep movs`, whose start-up alone costs more than a whole short
 * name; these moves are a few instructions. */
static inline void dp_names_copy(uint8_t *dst, const char *src, uint32_t len)
{
        uint64_t w;
        if (len >= 8) {
                for (uint32_t i = 0; i + 8 < len; i += 8) {
                        memcpy(&w, src + i, 8);
                        memcpy(dst + i, &w, 8);
                }
                memcpy(&w, src + len - 8, 8);
                memcpy(dst + len - 8, &w, 8);
        } else if (len >= 4) {
                dp_names_store32(dst, dp_names_load32((const uint8_t *)src));
                dp_names_store32(dst + len - 4, dp_names_load32((const uint8_t *)src + len - 4));
        } else {
                dst[0] = (uint8_t)src[0];
                dst[len / 2] = (uint8_t)src[len / 2];
                dst[len - 1] = (uint8_t)src[len - 1];
        }
}

/* Stores a copy of s[0..len) and returns its reference in *ref.
 * -EINVAL: len 0 or > DP_NAME_MAX; -ENOSPC: the heap is full. */
static inline int dp_names_alloc(struct dp_names *n, const char *s, uint32_t len, uint32_t *ref)
{
        if (len == 0 || len > DP_NAME_MAX)
                return -EINVAL;
        struct dp_names_hdr *h = n->hdr;
        uint32_t size = dp_names_units_for(len);
        uint32_t unit;
        uint32_t head = h->free_head[size - 1];

        if (head != 0) {
                unit = head - 1;
                DP_ASSERT(unit + size <= n->unit_count);
                const uint8_t *fb = dp_names_unit(n, unit);
                h->free_head[size - 1] = dp_names_load32(fb);
                uint32_t ahead = dp_names_load32(fb + 4 * (DP_NAMES_LINKS - 1));
                if (ahead - 1 < n->unit_count)
                        __builtin_prefetch(dp_names_unit(n, ahead - 1), 1);
        } else if (n->unit_count - h->top >= size) {
                unit = h->top;
                h->top += size;
        } else {
                int rc = dp_names_split(n, size, &unit);
                if (rc < 0)
                        return rc;
        }
        uint8_t *b = dp_names_unit(n, unit);
        b[0] = (uint8_t)len;
        dp_names_copy(b + 1, s, len);
        h->used += size;
        *ref = unit;
        return 0;
}

/* The bytes of name ref and their count in *len; NULL for a bad ref. */
static inline const char *dp_names_get(const struct dp_names *n, uint32_t ref, uint32_t *len)
{
        if (ref >= n->unit_count)
                return NULL;
        const uint8_t *b = dp_names_unit(n, ref);
        uint32_t l = b[0];
        /* A reader in another process may see a block being rewritten: the
         * length it reads must still keep it inside the heap. */
        if (l == 0 || ref + dp_names_units_for(l) > n->unit_count)
                return NULL;
        *len = l;
        return (const char *)b + 1;
}

/* Puts the block of `size` units at `unit` on the free list of its size. */
static inline void dp_names_push(struct dp_names *n, uint32_t unit, uint32_t size)
{
        uint8_t *b = dp_names_unit(n, unit);
        struct dp_names_hdr *h = n->hdr;
        uint32_t head = h->free_head[size - 1];
        /* Our links past the head are the head's, one place on. Word by
         * word: links gathered in a local array and copied whole would
         * stall on store forwarding. */
        dp_names_store32(b, head);
        for (unsigned k = 1; k < DP_NAMES_LINKS; k++)
                dp_names_store32(b + 4 * k, head - 1 < n->unit_count ?
                                 dp_names_load32(dp_names_unit(n, head - 1) + 4 * (k - 1)) : 0);
        h->free_head[size - 1] = unit + 1;
}

/* Returns the name's units to the heap. -EINVAL for a bad ref. */
static inline int dp_names_free(struct dp_names *n, uint32_t ref)
{
        uint32_t len;
        if (dp_names_get(n, ref, &len) == NULL)
                return -EINVAL;
        uint32_t size = dp_names_units_for(len);
        dp_names_push(n, ref, size);
        n->hdr->used -= size;
        return 0;
}

/* Whether a[0..len) and b[0..len) hold the same bytes, len in 1..DP_NAME_MAX.
 * Names are short, and a memcmp call costs more than comparing them: this
 * compares 8 bytes a load, the last load overlapping the one before it. */
static inline bool dp_names_bytes_equal(const uint8_t *a, const char *b, uint32_t len)
{
        uint64_t x, y;
        if (len >= 8) {
                for (uint32_t i = 0; i + 8 < len; i += 8) {
                        memcpy(&x, a + i, 8);
                        memcpy(&y, b + i, 8);
                        if (x != y)
                                return false;
                }
                memcpy(&x, a + len - 8, 8);
                memcpy(&y, b + len - 8, 8);
                return x == y;
        }
        if (len >= 4) {
                const uint8_t *bb = (const uint8_t *)b;
                return dp_names_load32(a) == dp_names_load32(bb) &&
                       dp_names_load32(a + len - 4) == dp_names_load32(bb + len - 4);
        }
        /* 1 to 3 bytes: first, middle and last cover them all. */
        return a[0] == (uint8_t)b[0] && a[len / 2] == (uint8_t)b[len / 2] &&
               a[len - 1] == (uint8_t)b[len - 1];
}

/* Whether name ref is s[0..len) (len >= 1); false for a bad ref. The inline
 * form of dp_names_get and a compare, for the index's probes. */
static inline bool dp_names_equal(const struct dp_names *n, uint32_t ref, const char *s,
                                  uint32_t len)
{
        if (ref >= n->unit_count)
                return false;
        const uint8_t *b = dp_names_unit(n, ref);
        /* The same bound as dp_names_get. */
        if (b[0] != len || ref + dp_names_units_for(len) > n->unit_count)
                return false;
        return dp_names_bytes_equal(b + 1, s, len);
}

#endif /* ATOMQ_DP_NAMES_H */
