/* dp_table.h - a shard's entity table: preallocated slots, handles with
 * generations, and the name index.
 *
 * One table per shard, in the arena, written only by the shard's worker.
 * Creating an entity pops a slot from a LIFO free list, copies its name into
 * the name heap and files it in the index; destroying one reverses that and
 * bumps the slot's generation so old handles go stale. Nothing allocates
 * and nothing makes a syscall: an entity costs a few cache lines touched.
 *
 *      struct dp_table_config cfg = { .shard = 0, .capacity = 1 << 20 };
 *      dp_table_init(&t, mem, dp_table_bytes(&cfg), &cfg);
 *      dp_table_create(&t, &proto, "orders.eu", 9, &h);
 *      dp_table_destroy(&t, h);
 */
#ifndef ATOMQ_DP_TABLE_H
#define ATOMQ_DP_TABLE_H

#include <stdint.h>

#include "dataplane/dp_entity.h"
#include "dataplane/dp_handle.h"
#include "dataplane/dp_index.h"
#include "dataplane/dp_names.h"

#define DP_TABLE_MAGIC 0x4c42415451544f41ull /* "AOTQTABL" */
#define DP_TABLE_VERSION 2 /* 2: grouped name index, free-list hints */
#define DP_TABLE_CAPACITY_MAX (1u << 30)

struct dp_table_hdr {
        uint64_t magic;
        uint32_t version;
        uint32_t shard;
        uint32_t capacity;
        uint32_t name_units;
        uint32_t live;        /* entities alive now */
        uint32_t free_head;   /* first free slot + 1, 0 = table full */
        uint64_t creates;     /* counters: one writer, the shard's worker */
        uint64_t destroys;
        uint32_t top;         /* slots below it were ever taken: every live one is */
        uint8_t reserved[12];
};
_Static_assert(sizeof(struct dp_table_hdr) == 64, "table header is one line");

struct dp_table_config {
        uint32_t shard;
        uint32_t capacity;    /* most live entities */
        uint32_t name_units;  /* 16-byte units for names; 0: 1.5 per entity */
};

struct dp_table {
        struct dp_table_hdr *hdr;
        struct dp_entity *slots;
        struct dp_index index;
        struct dp_names names;
        uint32_t shard;
        uint32_t capacity;
};

/* One name for the burst calls. */
struct dp_name {
        const char *s;
        uint32_t len;
};

/* Bytes of shared memory for this configuration (0 when it is invalid:
 * capacity 0 or above DP_TABLE_CAPACITY_MAX, shard >= DP_SHARDS_MAX). */
size_t dp_table_bytes(const struct dp_table_config *cfg);

/* Formats an empty table. -EINVAL: bad config or mem not line-aligned;
 * -ENOSPC: len below dp_table_bytes(cfg). */
int dp_table_init(struct dp_table *t, void *mem, size_t len, const struct dp_table_config *cfg);

/* Attaches to a table formatted earlier (its configuration comes from its
 * header). -EPROTO: not a table or another version; -ENOSPC: len short;
 * -EBADMSG: a slot's link, a name reference or an index entry points
 * outside the table. */
int dp_table_attach(struct dp_table *t, void *mem, size_t len);

/* Creates an entity with the atom choices of proto (its name, queue and
 * counters are ignored) and, when name is not NULL, that name.
 * -EINVAL: the name breaks the subject rules (no wildcards allowed);
 * -EEXIST: the name is taken; -ENOSPC: no free slot or no name space. */
int dp_table_create(struct dp_table *t, const struct dp_entity *proto,
                    const char *name, uint32_t name_len, uint64_t *handle);

/* Creates n named entities, hiding index cache misses behind prefetches.
 * rcs[i] gets what dp_table_create would return for names[i], handles[i]
 * the handle on success. Returns the number created. */
uint32_t dp_table_create_burst(struct dp_table *t, const struct dp_entity *proto,
                               const struct dp_name *names, uint32_t n,
                               uint64_t *handles, int *rcs);

/* The live entity behind handle in *out.
 * -EXDEV: the handle belongs to another shard; -EINVAL: slot out of range;
 * -ESTALE: the entity was destroyed (the slot is free or reused). */
int dp_table_get(const struct dp_table *t, uint64_t handle, struct dp_entity **out);

/* Starts loading the index group that finding or creating name will read
 * first: a hint for a caller that knows the name a while before it asks
 * (a pipelined request still being parsed). No effect on the table. */
void dp_table_prefetch(const struct dp_table *t, const char *name, uint32_t len);

/* The handle of the live entity named name. -ENOENT when there is none. */
int dp_table_find(const struct dp_table *t, const char *name, uint32_t len, uint64_t *handle);

/* Finds n names, hiding the misses of each (index, slot, stored name)
 * behind prefetches. rcs[i] gets what dp_table_find would return for
 * names[i], handles[i] the handle when it is 0. Returns the number found. */
uint32_t dp_table_find_burst(const struct dp_table *t, const struct dp_name *names, uint32_t n,
                             uint64_t *handles, int *rcs);

/* The entity's name (NULL for anonymous ones), length in *len. */
const char *dp_table_name(const struct dp_table *t, const struct dp_entity *e, uint32_t *len);

/* The handle of the entity at slot (which must be live). */
uint64_t dp_table_handle(const struct dp_table *t, const struct dp_entity *e);

/* Destroys the entity: its name leaves the index, its slot is freed and its
 * generation moves on. The caller has released its messages and timers.
 * Errors as dp_table_get. */
int dp_table_destroy(struct dp_table *t, uint64_t handle);

/* Destroys the entities of n handles, in order, hiding the misses of each
 * handle (slot, name, index group) behind prefetches. rcs[i] gets what
 * dp_table_destroy(handles[i]) would return called in that order: a handle
 * repeated in the burst is -ESTALE the second time. Returns the number
 * destroyed. */
uint32_t dp_table_destroy_burst(struct dp_table *t, const uint64_t *handles, uint32_t n,
                                int *rcs);

#endif /* ATOMQ_DP_TABLE_H */
