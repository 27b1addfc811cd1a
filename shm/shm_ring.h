/* shm_ring.h - single-producer single-consumer ring of fixed-size slots.
 *
 * The ring lives in shared memory (struct shm_ring_hdr followed by the
 * slots); each side works through its own process-local view (struct
 * shm_ring) that keeps the geometry and a cached copy of the other side's
 * index. Keeping the geometry local means a peer that scribbles over the
 * shared header cannot make us index outside the slots: every index is
 * masked with our own copy of the mask, and an impossible distance between
 * head and tail is reported as -EPROTO.
 *
 * Indexes are free-running 64-bit counters (never wrap in practice); the
 * slot of index i is i & mask. head is written only by the producer, tail
 * only by the consumer, each on its own cache line.
 *
 * The enqueue/dequeue paths are inline, as in DPDK's rte_ring: they are a
 * handful of instructions and a call per item would cost more than the work.
 *
 * Example (one thread each side):
 *      size_t len = shm_ring_bytes(1024, 8);
 *      shm_ring_init(&prod, mem, len, 1024, 8);
 *      shm_ring_attach(&cons, mem, len);
 *      shm_ring_enqueue_burst(&prod, items, 32);
 *      shm_ring_dequeue_burst(&cons, out, 32);
 */
#ifndef ATOMQ_SHM_RING_H
#define ATOMQ_SHM_RING_H

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "shm/shm_base.h"
#include "shm/shm_wake.h"

#define SHM_RING_MAGIC 0x52514d41u /* "AMQR" little-endian */
#define SHM_RING_VERSION 1
#define SHM_RING_SLOT_BYTES_MAX 4096u
#define SHM_RING_CAPACITY_MAX (1u << 30)

/* The shared part. Geometry is written once by shm_ring_init. */
struct shm_ring_hdr {
        uint32_t magic;
        uint16_t version;
        uint16_t reserved;
        uint32_t capacity;   /* slots, a power of two */
        uint32_t slot_bytes; /* a multiple of 8 */
        SHM_ALIGNED_LINE _Atomic uint64_t head; /* producer: next index to write */
        SHM_ALIGNED_LINE _Atomic uint64_t tail; /* consumer: next index to read */
        SHM_ALIGNED_LINE struct shm_wake wake;  /* a consumer sleeping on empty */
};
_Static_assert(sizeof(struct shm_ring_hdr) == 4 * SHM_CACHE_LINE, "ring header layout");
_Static_assert(offsetof(struct shm_ring_hdr, head) == 1 * SHM_CACHE_LINE, "head line");
_Static_assert(offsetof(struct shm_ring_hdr, tail) == 2 * SHM_CACHE_LINE, "tail line");
_Static_assert(offsetof(struct shm_ring_hdr, wake) == 3 * SHM_CACHE_LINE, "wake line");

/* One side's view. Each side (producer, consumer) keeps its own. */
struct shm_ring {
        struct shm_ring_hdr *hdr;
        uint8_t *slots;
        uint64_t mask;
        uint32_t capacity;
        uint32_t slot_bytes;
        uint64_t head;       /* producer: own head; consumer: cached head */
        uint64_t tail;       /* consumer: own tail; producer: cached tail */
};

/* Bytes of shared memory a ring of this geometry needs, or 0 when the
 * geometry is invalid (see shm_ring_init). */
size_t shm_ring_bytes(uint32_t capacity, uint32_t slot_bytes);

/* Formats a ring in mem[0..len) and attaches `r` to it.
 * -EINVAL: capacity not a power of two (or > SHM_RING_CAPACITY_MAX),
 *          slot_bytes 0, not a multiple of 8 or > SHM_RING_SLOT_BYTES_MAX,
 *          mem not cache-line aligned;
 * -ENOSPC: len smaller than shm_ring_bytes(capacity, slot_bytes). */
int shm_ring_init(struct shm_ring *r, void *mem, size_t len,
                  uint32_t capacity, uint32_t slot_bytes);

/* Attaches `r` to a ring another side formatted, checking its header.
 * -EPROTO: bad magic or version, or head and tail further apart than the
 * capacity; -EINVAL: bad geometry or alignment, or len below the header;
 * -ENOSPC: the header claims more memory than len. */
int shm_ring_attach(struct shm_ring *r, void *mem, size_t len);

/* Enqueues up to n slots from objs (n * slot_bytes contiguous bytes).
 * Returns the number enqueued (0 when full) or -EPROTO when the consumer's
 * tail is impossible (a corrupt or hostile peer). Does not wake a sleeping
 * consumer: call shm_ring_notify() after a batch on rings used blocking. */
static inline int shm_ring_enqueue_burst(struct shm_ring *r, const void *objs,
                                         unsigned n)
{
        uint64_t head = r->head;
        uint64_t used = head - r->tail;

        if (r->capacity - used < n) {
                /* Pairs with the release store of tail in dequeue: the slots
                 * the consumer freed are no longer being read. Checked before
                 * it is cached: a cached bad tail would pass the fast path. */
                uint64_t tail = atomic_load_explicit(&r->hdr->tail, memory_order_acquire);
                used = head - tail;
                if (shm_unlikely(used > r->capacity))
                        return -EPROTO;
                r->tail = tail;
                /* A separate free count (not n rewritten in place) lets the
                 * compiler keep a constant n and inline the copy below. */
                uint64_t room = r->capacity - used;
                if (room == 0)
                        return 0;
                if (room < n)
                        n = (unsigned)room;
        }
        uint64_t idx = head & r->mask;
        uint64_t first = r->capacity - idx;
        size_t sb = r->slot_bytes;
        if (first >= n) {
                memcpy(r->slots + idx * sb, objs, n * sb);
        } else {
                memcpy(r->slots + idx * sb, objs, first * sb);
                memcpy(r->slots, (const uint8_t *)objs + first * sb, (n - first) * sb);
        }
        r->head = head + n;
        /* Pairs with the acquire load of head in dequeue. */
        atomic_store_explicit(&r->hdr->head, r->head, memory_order_release);
        return (int)n;
}

/* Dequeues up to n slots into objs. Returns the number dequeued (0 when
 * empty) or -EPROTO when the producer's head is impossible. */
static inline int shm_ring_dequeue_burst(struct shm_ring *r, void *objs, unsigned n)
{
        uint64_t tail = r->tail;
        uint64_t avail = r->head - tail;

        if (avail < n) {
                /* Pairs with the release store of head in enqueue. Checked
                 * before it is cached, as tail in enqueue. */
                uint64_t head = atomic_load_explicit(&r->hdr->head, memory_order_acquire);
                avail = head - tail;
                if (shm_unlikely(avail > r->capacity))
                        return -EPROTO;
                r->head = head;
                if (avail < n)
                        n = (unsigned)avail;
                if (n == 0)
                        return 0;
        }
        uint64_t idx = tail & r->mask;
        uint64_t first = r->capacity - idx;
        size_t sb = r->slot_bytes;
        if (first >= n) {
                memcpy(objs, r->slots + idx * sb, n * sb);
        } else {
                memcpy(objs, r->slots + idx * sb, first * sb);
                memcpy((uint8_t *)objs + first * sb, r->slots, (n - first) * sb);
        }
        r->tail = tail + n;
        /* Pairs with the acquire load of tail in enqueue. */
        atomic_store_explicit(&r->hdr->tail, r->tail, memory_order_release);
        return (int)n;
}

/* Items waiting, as the consumer sees them now (-EPROTO when corrupt). */
int64_t shm_ring_count(const struct shm_ring *r);

/* Wakes a consumer sleeping in shm_ring_dequeue_wait, if any. */
static inline void shm_ring_notify(struct shm_ring *r)
{
        shm_wake_notify(&r->hdr->wake);
}

/* Like dequeue_burst, but sleeps on the ring's futex word while it is empty,
 * up to timeout_ns (< 0: forever). Returns the count, -ETIMEDOUT, -EINTR or
 * -EPROTO. The producer must call shm_ring_notify() after enqueueing. */
int shm_ring_dequeue_wait(struct shm_ring *r, void *objs, unsigned n,
                          int64_t timeout_ns);

#endif /* ATOMQ_SHM_RING_H */
