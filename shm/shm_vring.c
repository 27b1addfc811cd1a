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

/* Bytes of the record whose header at data offset off is published, or 0
 * when it is not (or cannot be a record: it would end past the data area). */
static uint64_t shm_vring_published_bytes(const struct shm_vring *r, uint64_t off)
{
        uint32_t word = atomic_load_explicit(&shm_vring_rec_at(r, off)->len,
                                             memory_order_acquire);
        if ((word & SHM_VRING_COMMITTED) == 0)
                return 0;
        uint64_t total = shm_vring_rec_bytes(word & ~SHM_VRING_COMMITTED);
        return off + total <= r->capacity ? total : 0;
}

/* Where a producer resumes: after the records a dead producer published
 * beyond the head it had stored (at most the one it committed last), never
 * further than the room it would have had. */
static uint64_t shm_vring_resume_head(const struct shm_vring *r)
{
        uint64_t head = r->head;
        for (;;) {
                uint64_t total = shm_vring_published_bytes(r, head & r->mask);
                if (total == 0 || head + total - r->tail > r->capacity - SHM_VRING_HDR_BYTES)
                        return head;
                head += total;
        }
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
        /* The header at head is always unpublished; every later one is
         * zeroed by the commit before it (shm_vring_commit). */
        struct shm_vring_rec_hdr *first = (struct shm_vring_rec_hdr *)(h + 1);
        atomic_store_explicit(&first->len, 0, memory_order_relaxed);
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
        view.head = shm_vring_resume_head(&view);
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
        /* The record, its padding, and the header after it, which the commit
         * zeroes. rec_max keeps this within an empty ring wherever head is. */
        uint64_t need = pad + total + SHM_VRING_HDR_BYTES;

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
        r->resv_off = (uint32_t)(pad != 0 ? 0 : off);
        r->resv_pad = (uint32_t)pad;
        r->resv_len = len;
        r->resv_end = head + pad + total;
        r->reserved = true;
        r->reserve_err = 0;
        return r->data + r->resv_off + SHM_VRING_HDR_BYTES;
}

void shm_vring_commit(struct shm_vring *r, uint32_t type)
{
        DP_VERIFY(r->reserved);
        DP_ASSERT(type != SHM_VRING_TYPE_PAD);
        struct shm_vring_rec_hdr *next = shm_vring_rec_at(r, r->resv_end & r->mask);
        atomic_store_explicit(&next->len, 0, memory_order_relaxed);
        struct shm_vring_rec_hdr *rh = shm_vring_rec_at(r, r->resv_off);
        atomic_store_explicit(&rh->type, type, memory_order_relaxed);
        /* Pairs with the acquire load in shm_vring_peek: the payload, the
         * type and the zeroed header after the record are visible first. */
        atomic_store_explicit(&rh->len, SHM_VRING_COMMITTED | r->resv_len,
                              memory_order_release);
        if (r->resv_pad != 0) {
                /* After the record at offset 0: a consumer that passes the
                 * padding finds it published. pad >= 8: offsets are 8-aligned. */
                struct shm_vring_rec_hdr *ph = shm_vring_rec_at(r, r->head & r->mask);
                atomic_store_explicit(&ph->type, SHM_VRING_TYPE_PAD, memory_order_relaxed);
                atomic_store_explicit(&ph->len,
                                      SHM_VRING_COMMITTED | (r->resv_pad - SHM_VRING_HDR_BYTES),
                                      memory_order_release);
        }
        r->head = r->resv_end;
        r->reserved = false;
        /* For a producer that attaches after us; the consumer never reads it. */
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

int shm_vring_peek(struct shm_vring *r, struct shm_vring_rec *out)
{
        /* At most one padding record precedes a record: after it we stand at
         * offset 0, where any record up to rec_max fits. */
        for (int pads = 0; pads < 2; pads++) {
                uint64_t tail = r->tail;
                uint64_t off = tail & r->mask;
                struct shm_vring_rec_hdr *rh = shm_vring_rec_at(r, off);
                /* Pairs with the release store of the length in commit. */
                uint32_t word = atomic_load_explicit(&rh->len, memory_order_acquire);
                if (word == 0)
                        return 0;
                if (shm_unlikely((word & SHM_VRING_COMMITTED) == 0))
                        return -EPROTO;
                uint32_t len = word & ~SHM_VRING_COMMITTED;
                uint32_t type = atomic_load_explicit(&rh->type, memory_order_relaxed);
                uint64_t total = shm_vring_rec_bytes(len);
                if (shm_unlikely(off + total > r->capacity))
                        return -EPROTO;
                if (type != SHM_VRING_TYPE_PAD) {
                        if (shm_unlikely(len > r->rec_max))
                                return -EPROTO;
                        out->data = r->data + off + SHM_VRING_HDR_BYTES;
                        out->len = len;
                        out->type = type;
                        r->peek_end = tail + total;
                        r->peeked = true;
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
        DP_VERIFY(r->peeked);
        r->tail = r->peek_end;
        r->peeked = false;
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
