/* shm_ring.c - set-up, attach and the blocking path of the SPSC ring. */
#include "shm/shm_ring.h"

#include <time.h>

#include "shm/shm_clock.h"

static int shm_ring_geometry_check(uint32_t capacity, uint32_t slot_bytes)
{
        if (!shm_is_pow2_u64(capacity) || capacity > SHM_RING_CAPACITY_MAX)
                return -EINVAL;
        if (slot_bytes == 0 || slot_bytes % 8 != 0 || slot_bytes > SHM_RING_SLOT_BYTES_MAX)
                return -EINVAL;
        return 0;
}

size_t shm_ring_bytes(uint32_t capacity, uint32_t slot_bytes)
{
        if (shm_ring_geometry_check(capacity, slot_bytes) != 0)
                return 0;
        return sizeof(struct shm_ring_hdr) + (size_t)capacity * slot_bytes;
}

static void shm_ring_view_set(struct shm_ring *r, struct shm_ring_hdr *h,
                              uint32_t capacity, uint32_t slot_bytes)
{
        r->hdr = h;
        r->slots = (uint8_t *)(h + 1);
        r->capacity = capacity;
        r->slot_bytes = slot_bytes;
        r->mask = (uint64_t)capacity - 1;
        r->head = atomic_load_explicit(&h->head, memory_order_acquire);
        r->tail = atomic_load_explicit(&h->tail, memory_order_acquire);
}

int shm_ring_init(struct shm_ring *r, void *mem, size_t len,
                  uint32_t capacity, uint32_t slot_bytes)
{
        int rc = shm_ring_geometry_check(capacity, slot_bytes);
        if (rc != 0)
                return rc;
        if ((uintptr_t)mem % SHM_CACHE_LINE != 0)
                return -EINVAL;
        if (len < shm_ring_bytes(capacity, slot_bytes))
                return -ENOSPC;

        struct shm_ring_hdr *h = mem;
        memset(h, 0, sizeof(*h));
        h->version = SHM_RING_VERSION;
        h->capacity = capacity;
        h->slot_bytes = slot_bytes;
        atomic_store_explicit(&h->head, 0, memory_order_relaxed);
        atomic_store_explicit(&h->tail, 0, memory_order_relaxed);
        shm_wake_init(&h->wake);
        /* The magic goes last: an attacher that sees it sees the geometry
         * (pairs with the acquire load in shm_ring_attach). */
        atomic_store_explicit((_Atomic uint32_t *)&h->magic, SHM_RING_MAGIC,
                              memory_order_release);
        shm_ring_view_set(r, h, capacity, slot_bytes);
        return 0;
}

int shm_ring_attach(struct shm_ring *r, void *mem, size_t len)
{
        struct shm_ring_hdr *h = mem;

        if ((uintptr_t)mem % SHM_CACHE_LINE != 0 || len < sizeof(*h))
                return -EINVAL;
        /* Pairs with the release store of magic in shm_ring_init. */
        if (atomic_load_explicit((_Atomic uint32_t *)&h->magic, memory_order_acquire) !=
                    SHM_RING_MAGIC ||
            h->version != SHM_RING_VERSION)
                return -EPROTO;
        uint32_t capacity = h->capacity, slot_bytes = h->slot_bytes;
        if (shm_ring_geometry_check(capacity, slot_bytes) != 0)
                return -EINVAL;
        if (len < shm_ring_bytes(capacity, slot_bytes))
                return -ENOSPC;
        shm_ring_view_set(r, h, capacity, slot_bytes);
        if (r->head - r->tail > capacity)
                return -EPROTO;
        return 0;
}

int64_t shm_ring_count(const struct shm_ring *r)
{
        uint64_t tail = atomic_load_explicit(&r->hdr->tail, memory_order_acquire);
        uint64_t head = atomic_load_explicit(&r->hdr->head, memory_order_acquire);
        uint64_t n = head - tail;
        return n > r->capacity ? -EPROTO : (int64_t)n;
}

struct shm_ring_try {
        struct shm_ring *r;
        void *objs;
        unsigned n;
};

static int shm_ring_try_dequeue(void *arg)
{
        struct shm_ring_try *t = arg;
        return shm_ring_dequeue_burst(t->r, t->objs, t->n);
}

int shm_ring_dequeue_wait(struct shm_ring *r, void *objs, unsigned n,
                          int64_t timeout_ns)
{
        struct shm_ring_try t = { r, objs, n };
        return shm_wake_until(&r->hdr->wake, timeout_ns, shm_ring_try_dequeue, &t);
}
