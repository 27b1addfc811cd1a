/* shm_arena.h - the shared-memory arena every atomq process maps.
 *
 * One memfd (hugepage-backed when the host has hugepages reserved, plain
 * otherwise) holds everything processes share: entity tables, rings, buffer
 * pools. The arena starts with a self-describing header: magic, layout
 * version, sizes, creator pid and start time, and a table of regions, each
 * an offset and a size from the arena's base. Nothing inside the arena is a
 * pointer; every offset read from it is bounds-checked before use.
 *
 * The creator maps the arena, carves regions (shm_arena_region_add),
 * formats them, then publishes the header (shm_arena_publish): the magic is
 * written last with a release store, so an attacher that sees it sees a
 * complete header and formatted regions. Attachers (the dataplane, agents)
 * map the same fd and check magic, version and every region's bounds.
 *
 *      struct shm_arena a;
 *      struct shm_arena_config cfg = { .bytes = 64 << 20,
 *                                      .hugepages = SHM_HUGEPAGES_AUTO,
 *                                      .numa_node = -1 };
 *      shm_arena_create(&a, &cfg);
 *      shm_arena_region_add(&a, SHM_REGION_RING, "cmd.0", 1 << 20, &off);
 *      ... format the ring at shm_arena_ptr(&a, off, 1 << 20) ...
 *      shm_arena_publish(&a);
 *      // in another process, given the fd:
 *      shm_arena_attach(&b, fd);
 */
#ifndef ATOMQ_SHM_ARENA_H
#define ATOMQ_SHM_ARENA_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "shm/shm_base.h"

#ifndef SHM_ARENA_REGIONS_MAX
#define SHM_ARENA_REGIONS_MAX 32
#endif

#define SHM_ARENA_MAGIC 0x414e5241514d5441ull /* "ATMQARNA" little-endian */
#define SHM_ARENA_LAYOUT_VERSION 1
#define SHM_ARENA_NAME_MAX 40
/* Smallest arena: the header and a little room. Largest: 1 TiB, a bound on
 * what a typo in --arena-size can ask for. */
#define SHM_ARENA_BYTES_MIN (64u * 1024)
#define SHM_ARENA_BYTES_MAX (1ull << 40)

enum shm_hugepages {
        SHM_HUGEPAGES_AUTO, /* hugepages when reserved, else plain memfd */
        SHM_HUGEPAGES_ON,   /* hugepages or an error */
        SHM_HUGEPAGES_OFF,  /* plain memfd */
};

/* What a region holds; higher layers add their own kinds above 64. */
enum shm_region_kind {
        SHM_REGION_FREE = 0,
        SHM_REGION_RING = 1,
        SHM_REGION_VRING = 2,
        SHM_REGION_MPSC = 3,
        SHM_REGION_SLAB = 4,
        SHM_REGION_USER = 64,
};

/* One region: 64 bytes, one cache line. */
struct shm_arena_region {
        uint32_t kind;
        uint32_t flags;
        uint64_t offset; /* from the arena's base, cache-line aligned */
        uint64_t bytes;
        char name[SHM_ARENA_NAME_MAX]; /* NUL-terminated */
};
_Static_assert(sizeof(struct shm_arena_region) == 64, "region entry is one line");

#define SHM_ARENA_F_HUGEPAGES 0x1u

/* The header at offset 0 of every arena. */
struct shm_arena_hdr {
        _Atomic uint64_t magic;        /* written last (release) */
        uint32_t layout_version;
        uint32_t hdr_bytes;            /* sizeof(struct shm_arena_hdr) */
        uint64_t arena_bytes;          /* size of the whole mapping */
        uint64_t page_bytes;           /* 4 KiB or the hugepage size */
        uint64_t created_realtime_ns;  /* wall clock at creation */
        int32_t creator_pid;
        uint32_t flags;                /* SHM_ARENA_F_* */
        uint32_t region_count;
        uint32_t regions_max;          /* SHM_ARENA_REGIONS_MAX of the creator */
        uint64_t used_bytes;           /* end of the last region */
        struct shm_arena_region regions[SHM_ARENA_REGIONS_MAX];
};
_Static_assert(offsetof(struct shm_arena_hdr, magic) == 0, "magic first");
_Static_assert(offsetof(struct shm_arena_hdr, regions) == 64, "regions start on line 1");
_Static_assert(sizeof(struct shm_arena_hdr) == 64 + 64 * SHM_ARENA_REGIONS_MAX, "header size");

struct shm_arena_config {
        uint64_t bytes;               /* rounded up to the page size */
        enum shm_hugepages hugepages;
        int numa_node;                /* -1: the node of the calling CPU */
        const char *name;             /* memfd name, for /proc/PID/fd; may be NULL */
};

/* A process's view of an arena. */
struct shm_arena {
        struct shm_arena_hdr *hdr;
        uint8_t *base;
        uint64_t bytes;
        int fd;
        bool owner;      /* created here (may add regions until published) */
        bool published;
        bool hugepages;
};

/* Creates and maps a new arena.
 * -EINVAL: bytes below SHM_ARENA_BYTES_MIN or above SHM_ARENA_BYTES_MAX;
 * -ENOMEM: hugepages=on and the host has too few free hugepages (the log
 *          says how to reserve them), or the mapping failed;
 * other -errno from memfd_create, ftruncate or mmap. */
int shm_arena_create(struct shm_arena *a, const struct shm_arena_config *cfg);

/* Carves `bytes` (rounded up to a cache line) for a region of `kind` and
 * returns its offset in *offset. The memory is zeroed.
 * -EINVAL: bytes 0, kind SHM_REGION_FREE or name too long;
 * -EBUSY: not the creator, or already published;
 * -ENOSPC: the region table or the arena is full. */
int shm_arena_region_add(struct shm_arena *a, uint32_t kind, const char *name,
                         uint64_t bytes, uint64_t *offset);

/* Makes the arena visible to attachers (magic last, release store). */
int shm_arena_publish(struct shm_arena *a);

/* Maps the arena behind fd (which stays the caller's) and checks it.
 * -EBADF: fd is not a file; -EINVAL: smaller than the header;
 * -EPROTO: no magic (not an arena, or not published yet);
 * -EPROTONOSUPPORT: another layout version;
 * -EBADMSG: the header's sizes or a region's bounds do not fit the file. */
int shm_arena_attach(struct shm_arena *a, int fd);

/* The pointer for [offset, offset + bytes), or NULL when out of bounds. */
void *shm_arena_ptr(const struct shm_arena *a, uint64_t offset, uint64_t bytes);

/* The first region of `kind` named `name` (name NULL: any), or NULL. */
const struct shm_arena_region *shm_arena_region_find(const struct shm_arena *a,
                                                     uint32_t kind, const char *name);

/* Unmaps and closes. Safe on a zeroed or already closed view. */
void shm_arena_close(struct shm_arena *a);

#endif /* ATOMQ_SHM_ARENA_H */
