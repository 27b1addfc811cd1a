/* shm_pool.h - slab pools of fixed-size, reference-counted blocks in shared
 * memory, grouped in size classes.
 *
 * A pool is a run of equal blocks and a lock-free free list (a Treiber stack
 * whose head carries a tag against ABA); any thread or process that maps
 * the arena may allocate and free. Every block has a reference count, so
 * one buffer can be handed to many subscribers without a copy (zero-copy
 * fan-out): the last shm_pool_put returns it to the free list. A put on a
 * block that is already free is detected and refused (-EALREADY), which
 * catches double frees in every build, not only debug ones.
 *
 * A slab is up to SHM_SLAB_CLASSES_MAX pools of growing block sizes. Buffers
 * are named by a 32-bit id: the class in the top 4 bits, the block index in
 * the low 28. Ids, not pointers, are what rings and entity tables carry.
 *
 *      size_t len = shm_slab_bytes(classes, 3);
 *      shm_slab_init(&slab, mem, len, classes, 3);
 *      uint32_t id;
 *      shm_slab_alloc(&slab, 100, &id);    // the 128-byte class
 *      shm_slab_ref(&slab, id, 2);         // two more readers
 *      shm_slab_put(&slab, id);            // ... each reader puts once
 */
#ifndef ATOMQ_SHM_POOL_H
#define ATOMQ_SHM_POOL_H

#include <stdatomic.h>
#include <stdint.h>

#include "shm/shm_base.h"

#define SHM_POOL_MAGIC 0x4c4f4f50514d5441ull /* "ATMQPOOL" */
#define SHM_POOL_VERSION 1
#define SHM_POOL_BLOCKS_MAX (1u << 28)
#define SHM_POOL_BLOCK_BYTES_MAX (64u << 20)
#define SHM_SLAB_CLASSES_MAX 16
#define SHM_BUF_CLASS_SHIFT 28
#define SHM_BUF_INDEX_MASK ((1u << SHM_BUF_CLASS_SHIFT) - 1)
#define SHM_BUF_NONE UINT32_MAX

/* Per-block header, in front of each block's payload. */
struct shm_pool_block {
        _Atomic uint32_t refs;  /* 0: on the free list */
        _Atomic uint32_t next;  /* free-list link: index + 1, 0 = end */
        uint32_t len;           /* payload bytes in use, set by the owner */
        uint32_t reserved;
};
_Static_assert(sizeof(struct shm_pool_block) == 16, "block header");

/* The shared part of a pool. */
struct shm_pool_hdr {
        uint64_t magic;
        uint32_t version;
        uint32_t block_count;
        uint32_t block_bytes;   /* payload bytes per block */
        uint32_t stride_bytes;  /* header + payload, cache-line multiple */
        SHM_ALIGNED_LINE _Atomic uint64_t free_head; /* tag << 32 | (index + 1) */
        SHM_ALIGNED_LINE _Atomic uint64_t in_use;    /* blocks handed out */
};
_Static_assert(offsetof(struct shm_pool_hdr, free_head) == SHM_CACHE_LINE, "free head line");
_Static_assert(sizeof(struct shm_pool_hdr) == 3 * SHM_CACHE_LINE, "pool header");

/* A process-local view; geometry is our own copy, never re-read. */
struct shm_pool {
        struct shm_pool_hdr *hdr;
        uint8_t *blocks;
        uint32_t block_count;
        uint32_t block_bytes;
        uint32_t stride_bytes;
};

/* Bytes a pool of this geometry needs, or 0 when it is invalid. */
size_t shm_pool_bytes(uint32_t block_bytes, uint32_t block_count);

/* Formats a pool with every block free.
 * -EINVAL: block_bytes 0 or > SHM_POOL_BLOCK_BYTES_MAX, block_count 0 or
 *          > SHM_POOL_BLOCKS_MAX, mem not cache-line aligned;
 * -ENOSPC: len below shm_pool_bytes(). */
int shm_pool_init(struct shm_pool *p, void *mem, size_t len,
                  uint32_t block_bytes, uint32_t block_count);

/* Attaches to a formatted pool. -EPROTO: bad magic/version; -EINVAL: bad
 * geometry; -ENOSPC: the header claims more than len. */
int shm_pool_attach(struct shm_pool *p, void *mem, size_t len);

/* Takes a free block with one reference; its index goes to *index.
 * -ENOMEM: the pool is exhausted; -EPROTO: the free list is corrupt. */
int shm_pool_alloc(struct shm_pool *p, uint32_t *index);

/* Adds n references (fan-out). -EINVAL: bad index; -EALREADY: block free. */
int shm_pool_ref(struct shm_pool *p, uint32_t index, uint32_t n);

/* Drops one reference. Returns 1 when that freed the block, 0 when others
 * remain, -EINVAL for a bad index, -EALREADY when the block is already free
 * (a double free: nothing is changed). */
int shm_pool_put(struct shm_pool *p, uint32_t index);

/* The block's header and payload, or NULL for a bad index. */
struct shm_pool_block *shm_pool_block(const struct shm_pool *p, uint32_t index);

static inline void *shm_pool_block_data(struct shm_pool_block *b)
{
        return b + 1;
}

/* Blocks handed out now. */
uint64_t shm_pool_in_use(const struct shm_pool *p);

/* One size class of a slab. */
struct shm_slab_class {
        uint32_t block_bytes;
        uint32_t block_count;
};

struct shm_slab {
        struct shm_pool pools[SHM_SLAB_CLASSES_MAX];
        uint32_t class_count;
};

/* Bytes a slab of these classes needs, or 0 when a class is invalid, the
 * classes are not in strictly growing block sizes, or there are too many. */
size_t shm_slab_bytes(const struct shm_slab_class *classes, uint32_t n);

/* Formats a slab: the pools back to back. Errors as shm_pool_init, and
 * -EINVAL for the class list problems shm_slab_bytes refuses. */
int shm_slab_init(struct shm_slab *s, void *mem, size_t len,
                  const struct shm_slab_class *classes, uint32_t n);

/* Attaches to a slab formatted with the same class list (n pools). */
int shm_slab_attach(struct shm_slab *s, void *mem, size_t len, uint32_t n);

/* A block of at least len bytes from the smallest class that has one free;
 * its id in *id and, with its header, len recorded.
 * -EMSGSIZE: len exceeds the largest class; -ENOMEM: every class that fits
 * is exhausted. */
int shm_slab_alloc(struct shm_slab *s, uint32_t len, uint32_t *id);

/* Payload of buffer id (its length in *len when len is not NULL), or NULL
 * when the id is not a valid buffer of this slab. */
void *shm_slab_data(const struct shm_slab *s, uint32_t id, uint32_t *len);

/* Reuses buffer id for len bytes when the caller holds its only
 * reference (nobody else can be reading it) and len fits its block: 0 with
 * len recorded; -EBUSY when another holder has it; -EMSGSIZE when len does
 * not fit; -EINVAL for a bad id. */
int shm_slab_reuse(struct shm_slab *s, uint32_t id, uint32_t len);

/* As shm_pool_ref / shm_pool_put, by buffer id. */
int shm_slab_ref(struct shm_slab *s, uint32_t id, uint32_t n);
int shm_slab_put(struct shm_slab *s, uint32_t id);

#endif /* ATOMQ_SHM_POOL_H */
