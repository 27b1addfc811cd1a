/* shm_vring.c - the SPSC variable-length record ring of shm_vring.h: set-up,
 * attach, two-phase write, peek/release and the blocking read.
 *
 * Unlike shm_ring, the hot path is out of line: a record costs a header
 * check and a memcpy of the frame, which dwarf a call.
 */
#include "shm/shm_vring.h"

#include <string.h>

#include "shm/shm_clock.h"

#define SHM_VRING_HDR_BYTES ((uint32_t)sizeof(struct shm_vring_rec_hdr))

static int shm_vring_capacity_check(uint32_t capacity)
{
        if (!shm_is_pow2_u64(capacity) || capacity < SHM_VRING_CAPACITY_MIN ||
            capacity > SHM_VRING_CAPACITY_MAX)
                return -EINVAL;
        return 0;
}

size_t shm_vring_bytes(uint32_t capacity)
{
        if (shm_vring_capacity_check(capacity) != 0)
                return 0;
        return sizeof(struct shm_vring_hdr) + (size_t)capacity;
}

/* Bytes a record of len payload bytes takes in the data area. */
static inline uint64_t shm_vring_rec_bytes(uint32_t len)
{
        return SHM_VRING_HDR_BYTES + shm_align_up(len, SHM_VRING_ALIGN);
}

static inline struct shm_vring_rec_hdr *shm_vring_rec_at(const struct shm_vring *r,
                                                         uint64_t off)
{
        DP_ASSERT(off % SHM_VRING_ALIGN == 0);
        DP_ASSERT(off + SHM_VRING_HDR_BYTES <= r->capacity);
        return (struct shm_vring_rec_hdr *)(r->data + off);
}

static void shm_vring_view_set(struct shm_vring *r, struct shm_vring_hdr *h,
                               uint32_t capacity)
{
        memset(r, 0, sizeof(*r));
        r->hdr = h;
        r->data = (uint8_t *)(h + 1);
        r->capacity = capacity;
        r->mask = (uint64_t)capacity - 1;
        r->rec_max = capacity / 2 - SHM_VRING_HDR_BYTES;
        r->head = atomic_load_explicit(&h->head, memory_order_acquire);
        r->tail = atomic_load_explicit(&h->tail, memory_order_acquire);
}

int shm_vring_init(struct shm_vring *r, void *mem, size_t len, uint32_t capacity)
{
        int rc = shm_vring_capacity_check(capacity);
        if (rc != 0)
                return rc;
        if ((uintptr_t)mem % SHM_CACHE_LINE != 0)
                return -EINVAL;
        if (len < shm_vring_bytes(capacity))
                return -ENOSPC;

        struct shm_vring_hdr *h = mem;
        memset(h, 0, sizeof(*h));
        h->version = SHM_VRING_VERSION;
        h->capacity = capacity;
        atomic_store_explicit(&h->head, 0, memory_order_relaxed);
        atomic_store_explicit(&h->tail, 0, memory_order_relaxed);
        shm_wake_init(&h->wake);
        /* The magic goes last: an attacher that sees it sees the geometry
         * (pairs with the acquire load in shm_vring_attach). */
        atomic_store_explicit((_Atomic uint32_t *)&h->magic, SHM_VRING_MAGIC,
                              memory_order_release);
        shm_vring_view_set(r, h, capacity);
        return 0;
}

int shm_vring_attach(struct shm_vring *r, void *mem, size_t len)
{
        struct shm_vring_hdr *h = mem;

        if ((uintptr_t)mem % SHM_CACHE_LINE != 0 || len < sizeof(*h))
                return -EINVAL;
        /* Pairs with the release store of magic in shm_vring_init. */
        if (atomic_load_explicit((_Atomic uint32_t *)&h->magic, memory_order_acquire) !=
                    SHM_VRING_MAGIC ||
            h->version != SHM_VRING_VERSION)
                return -EPROTO;
        uint32_t capacity = h->capacity;
        if (shm_vring_capacity_check(capacity) != 0)
                return -EINVAL;
        if (len < shm_vring_bytes(capacity))
                return -ENOSPC;
        struct shm_vring view;
        shm_vring_view_set(&view, h, capacity);
        if (view.head % SHM_VRING_ALIGN != 0 || view.tail % SHM_VRING_ALIGN != 0 ||
            view.head - view.tail > capacity)
                return -EPROTO;
        *r = view;
        return 0;
}

void *shm_vring_reserve(struct shm_vring *r, uint32_t len)
{
        if (len > r->rec_max) {
                r->reserve_err = -EMSGSIZE;
                return NULL;
        }
        uint64_t total = shm_vring_rec_bytes(len);
        uint64_t head = r->head;
        uint64_t off = head & r->mask;
        /* A record never wraps: the rest of the data area becomes padding. */
        uint64_t pad = off + total > r->capacity ? r->capacity - off : 0;
        uint64_t need = pad + total;

        if (r->capacity - (head - r->tail) < need) {
                /* Pairs with the release store of tail in shm_vring_release
                 * (and in shm_vring_peek for padding): the consumer is done
                 * reading the bytes below tail. */
                uint64_t tail = atomic_load_explicit(&r->hdr->tail, memory_order_acquire);
                if (shm_unlikely(head - tail > r->capacity)) {
                        r->reserve_err = -EPROTO;
                        return NULL;
                }
                r->tail = tail;
                if (r->capacity - (head - tail) < need) {
                        r->reserve_err = -ENOBUFS;
                        return NULL;
                }
        }
        if (pad != 0) {
                /* Published together with the record by the head store in
                 * shm_vring_commit. pad >= 8: offsets are 8-byte aligned. */
                struct shm_vring_rec_hdr *ph = shm_vring_rec_at(r, off);
                atomic_store_explicit(&ph->len, (uint32_t)(pad - SHM_VRING_HDR_BYTES),
                                      memory_order_relaxed);
                atomic_store_explicit(&ph->type, SHM_VRING_TYPE_PAD, memory_order_relaxed);
                off = 0;
        }
        r->resv_off = (uint32_t)off;
        r->resv_len = len;
        r->resv_end = head + need;
        r->reserve_err = 0;
        return r->data + off + SHM_VRING_HDR_BYTES;
}

void shm_vring_commit(struct shm_vring *r, uint32_t type)
{
        DP_VERIFY(r->resv_end != 0);
        DP_ASSERT(type != SHM_VRING_TYPE_PAD);
        struct shm_vring_rec_hdr *rh = shm_vring_rec_at(r, r->resv_off);
        atomic_store_explicit(&rh->len, r->resv_len, memory_order_relaxed);
        atomic_store_explicit(&rh->type, type, memory_order_relaxed);
        r->head = r->resv_end;
        r->resv_end = 0;
        /* Pairs with the acquire load of head in shm_vring_peek: the header,
         * the payload and any padding are visible before head moves. */
        atomic_store_explicit(&r->hdr->head, r->head, memory_order_release);
}

int shm_vring_write(struct shm_vring *r, uint32_t type, const void *buf, uint32_t len)
{
        if (type == SHM_VRING_TYPE_PAD)
                return -EINVAL;
        void *p = shm_vring_reserve(r, len);
        if (p == NULL)
                return r->reserve_err;
        memcpy(p, buf, len);
        shm_vring_commit(r, type);
        return 0;
}

/* Bytes the producer has published past tail, refreshing the cached head
 * when nothing is cached. Returns -EPROTO for an impossible head; a bad head
 * is never cached. */
static int64_t shm_vring_avail(struct shm_vring *r, uint64_t tail)
{
        uint64_t avail = r->head - tail;
        if (avail != 0)
                return (int64_t)avail;
        /* Pairs with the release store of head in shm_vring_commit. */
        uint64_t head = atomic_load_explicit(&r->hdr->head, memory_order_acquire);
        avail = head - tail;
        if (shm_unlikely(avail > r->capacity))
                return -EPROTO;
        r->head = head;
        return (int64_t)avail;
}

int shm_vring_peek(struct shm_vring *r, struct shm_vring_rec *out)
{
        /* At most one padding record precedes a record: after it we stand at
         * offset 0, where any record up to rec_max fits. */
        for (int pads = 0; pads < 2; pads++) {
                uint64_t tail = r->tail;
                int64_t avail = shm_vring_avail(r, tail);
                if (avail <= 0)
                        return (int)avail;
                if (shm_unlikely(avail < SHM_VRING_HDR_BYTES))
                        return -EPROTO;
                uint64_t off = tail & r->mask;
                struct shm_vring_rec_hdr *rh = shm_vring_rec_at(r, off);
                uint32_t len = atomic_load_explicit(&rh->len, memory_order_relaxed);
                uint32_t type = atomic_load_explicit(&rh->type, memory_order_relaxed);
                uint64_t total = shm_vring_rec_bytes(len);
                if (shm_unlikely(total > (uint64_t)avail || off + total > r->capacity))
                        return -EPROTO;
                if (type != SHM_VRING_TYPE_PAD) {
                        if (shm_unlikely(len > r->rec_max))
                                return -EPROTO;
                        out->data = r->data + off + SHM_VRING_HDR_BYTES;
                        out->len = len;
                        out->type = type;
                        r->peek_end = tail + total;
                        return 1;
                }
                if (shm_unlikely(off + total != r->capacity))
                        return -EPROTO;
                r->tail = tail + total;
                /* Pairs with the acquire load of tail in shm_vring_reserve:
                 * the padding is free room again. */
                atomic_store_explicit(&r->hdr->tail, r->tail, memory_order_release);
        }
        return -EPROTO;
}

void shm_vring_release(struct shm_vring *r)
{
        DP_VERIFY(r->peek_end != 0);
        r->tail = r->peek_end;
        r->peek_end = 0;
        /* Pairs with the acquire load of tail in shm_vring_reserve: we are
         * done reading the record. */
        atomic_store_explicit(&r->hdr->tail, r->tail, memory_order_release);
}

struct shm_vring_try {
        struct shm_vring *r;
        struct shm_vring_rec *out;
};

static int shm_vring_try_peek(void *arg)
{
        struct shm_vring_try *t = arg;
        return shm_vring_peek(t->r, t->out);
}

int shm_vring_read_wait(struct shm_vring *r, struct shm_vring_rec *out,
                        int64_t timeout_ns)
{
        struct shm_vring_try t = { r, out };
        return shm_wake_until(&r->hdr->wake, timeout_ns, shm_vring_try_peek, &t);
}
