/* shm_mpsc.c - the MPSC variable-length record ring of shm_mpsc.h: set-up,
 * attach, claiming room with a CAS, commit, the consumer's peek, release and
 * burst, and the blocking read.
 */
#include "shm/shm_mpsc.h"

#include <string.h>

#include "shm/shm_clock.h"

#define SHM_MPSC_HDR_BYTES ((uint32_t)sizeof(struct shm_mpsc_rec_hdr))

static int shm_mpsc_capacity_check(uint32_t capacity)
{
        if (!shm_is_pow2_u64(capacity) || capacity < SHM_MPSC_CAPACITY_MIN ||
            capacity > SHM_MPSC_CAPACITY_MAX)
                return -EINVAL;
        return 0;
}

size_t shm_mpsc_bytes(uint32_t capacity)
{
        if (shm_mpsc_capacity_check(capacity) != 0)
                return 0;
        return sizeof(struct shm_mpsc_hdr) + (size_t)capacity;
}

/* Bytes a record of len payload bytes takes in the data area. */
static inline uint64_t shm_mpsc_rec_bytes(uint32_t len)
{
        return SHM_MPSC_HDR_BYTES + shm_align_up(len, SHM_MPSC_ALIGN);
}

static inline struct shm_mpsc_rec_hdr *shm_mpsc_rec_at(const struct shm_mpsc *r,
                                                       uint64_t off)
{
        DP_ASSERT(off % SHM_MPSC_ALIGN == 0);
        DP_ASSERT(off + SHM_MPSC_HDR_BYTES <= r->capacity);
        return (struct shm_mpsc_rec_hdr *)(r->data + off);
}

static void shm_mpsc_view_set(struct shm_mpsc *r, struct shm_mpsc_hdr *h, uint32_t capacity)
{
        memset(r, 0, sizeof(*r));
        r->hdr = h;
        r->data = (uint8_t *)(h + 1);
        r->capacity = capacity;
        r->mask = (uint64_t)capacity - 1;
        r->rec_max = capacity / 2 - SHM_MPSC_HDR_BYTES;
        r->head = atomic_load_explicit(&h->head, memory_order_acquire);
        r->tail = atomic_load_explicit(&h->tail, memory_order_acquire);
}

int shm_mpsc_init(struct shm_mpsc *r, void *mem, size_t len, uint32_t capacity)
{
        int rc = shm_mpsc_capacity_check(capacity);
        if (rc != 0)
                return rc;
        if ((uintptr_t)mem % SHM_CACHE_LINE != 0)
                return -EINVAL;
        if (len < shm_mpsc_bytes(capacity))
                return -ENOSPC;

        struct shm_mpsc_hdr *h = mem;
        memset(h, 0, sizeof(*h));
        /* Zero length words everywhere: nothing is committed yet. */
        memset(h + 1, 0, capacity);
        h->version = SHM_MPSC_VERSION;
        h->capacity = capacity;
        atomic_store_explicit(&h->head, 0, memory_order_relaxed);
        atomic_store_explicit(&h->tail, 0, memory_order_relaxed);
        shm_wake_init(&h->wake);
        /* The magic goes last: an attacher that sees it sees the geometry
         * and the zeroed data area (pairs with the acquire load in
         * shm_mpsc_attach). */
        atomic_store_explicit((_Atomic uint32_t *)&h->magic, SHM_MPSC_MAGIC,
                              memory_order_release);
        shm_mpsc_view_set(r, h, capacity);
        return 0;
}

int shm_mpsc_attach(struct shm_mpsc *r, void *mem, size_t len)
{
        struct shm_mpsc_hdr *h = mem;

        if ((uintptr_t)mem % SHM_CACHE_LINE != 0 || len < sizeof(*h))
                return -EINVAL;
        /* Pairs with the release store of magic in shm_mpsc_init. */
        if (atomic_load_explicit((_Atomic uint32_t *)&h->magic, memory_order_acquire) !=
                    SHM_MPSC_MAGIC ||
            h->version != SHM_MPSC_VERSION)
                return -EPROTO;
        uint32_t capacity = h->capacity;
        if (shm_mpsc_capacity_check(capacity) != 0)
                return -EINVAL;
        if (len < shm_mpsc_bytes(capacity))
                return -ENOSPC;
        struct shm_mpsc view;
        shm_mpsc_view_set(&view, h, capacity);
        if (view.head % SHM_MPSC_ALIGN != 0 || view.tail % SHM_MPSC_ALIGN != 0 ||
            view.head - view.tail > capacity)
                return -EPROTO;
        *r = view;
        return 0;
}

/* Claims `total` record bytes, plus the padding in front of them when they
 * would not fit before the end of the data area, with one CAS on head.
 * Returns 0 with the claimed head in *head_out and the padding bytes in
 * *pad_out, or -ENOBUFS, -EBUSY, -EPROTO as shm_mpsc_reserve. */
static int shm_mpsc_claim(const struct shm_mpsc *r, uint64_t total,
                          uint64_t *head_out, uint64_t *pad_out)
{
        struct shm_mpsc_hdr *h = r->hdr;
        /* Pairs with the release half of the CAS below in other producers:
         * the tail a producer checked before its claim is visible to us, so
         * head - tail cannot look larger than the capacity unless corrupt. */
        uint64_t head = atomic_load_explicit(&h->head, memory_order_acquire);

        for (unsigned tries = 0; tries < SHM_MPSC_RESERVE_TRIES_MAX; tries++) {
                /* Pairs with the release store of tail in
                 * shm_mpsc_tail_publish: the consumer zeroed the bytes below
                 * tail and is done with them. */
                uint64_t tail = atomic_load_explicit(&h->tail, memory_order_acquire);
                uint64_t used = head - tail;
                if (shm_unlikely(used > r->capacity || head % SHM_MPSC_ALIGN != 0)) {
                        /* A head read before the consumer passed it looks
                         * behind tail; a head nobody moved is corrupt. */
                        uint64_t again = atomic_load_explicit(&h->head, memory_order_acquire);
                        if (again == head)
                                return -EPROTO;
                        head = again;
                        continue;
                }
                uint64_t off = head & r->mask;
                uint64_t pad = off + total > r->capacity ? r->capacity - off : 0;
                if (r->capacity - used < pad + total)
                        return -ENOBUFS;
                if (atomic_compare_exchange_weak_explicit(&h->head, &head, head + pad + total,
                                                          memory_order_acq_rel,
                                                          memory_order_acquire)) {
                        *head_out = head;
                        *pad_out = pad;
                        return 0;
                }
        }
        return -EBUSY;
}

int shm_mpsc_reserve(const struct shm_mpsc *r, uint32_t len, struct shm_mpsc_resv *resv)
{
        if (len > r->rec_max)
                return -EMSGSIZE;
        uint64_t head, pad;
        int rc = shm_mpsc_claim(r, shm_mpsc_rec_bytes(len), &head, &pad);
        if (rc != 0)
                return rc;
        uint64_t off = head & r->mask;
        if (pad != 0) {
                /* The padding has no content: publish it now so the consumer
                 * can move on to offset 0 (pad >= 8: offsets are aligned). */
                struct shm_mpsc_rec_hdr *ph = shm_mpsc_rec_at(r, off);
                atomic_store_explicit(&ph->type, SHM_MPSC_TYPE_PAD, memory_order_relaxed);
                /* Pairs with the acquire load of len_word in shm_mpsc_peek. */
                atomic_store_explicit(&ph->len_word,
                                      (uint32_t)(pad - SHM_MPSC_HDR_BYTES) | SHM_MPSC_COMMITTED,
                                      memory_order_release);
                off = 0;
        }
        resv->data = r->data + off + SHM_MPSC_HDR_BYTES;
        resv->len = len;
        resv->off = (uint32_t)off;
        return 0;
}

void shm_mpsc_commit(const struct shm_mpsc *r, const struct shm_mpsc_resv *resv,
                     uint32_t type)
{
        DP_ASSERT(type != SHM_MPSC_TYPE_PAD);
        DP_ASSERT(resv->len <= r->rec_max);
        DP_ASSERT(resv->data == r->data + resv->off + SHM_MPSC_HDR_BYTES);
        struct shm_mpsc_rec_hdr *rh = shm_mpsc_rec_at(r, resv->off);
        atomic_store_explicit(&rh->type, type, memory_order_relaxed);
        /* Pairs with the acquire load of len_word in shm_mpsc_peek: the type
         * and the payload are visible before the record is. */
        atomic_store_explicit(&rh->len_word, resv->len | SHM_MPSC_COMMITTED,
                              memory_order_release);
}

int shm_mpsc_write(const struct shm_mpsc *r, uint32_t type, const void *buf, uint32_t len)
{
        if (type == SHM_MPSC_TYPE_PAD)
                return -EINVAL;
        struct shm_mpsc_resv resv;
        int rc = shm_mpsc_reserve(r, len, &resv);
        if (rc != 0)
                return rc;
        memcpy(resv.data, buf, len);
        shm_mpsc_commit(r, &resv, type);
        return 0;
}

/* Checks that the record [tail, tail + total) lies below head. A committed
 * header we acquired was claimed before it was published, so head already
 * covers it for every honest producer: reading head relaxed is enough
 * (coherence, after the acquire of the length word). */
static int shm_mpsc_head_check(struct shm_mpsc *r, uint64_t tail, uint64_t total)
{
        if (r->head - tail >= total)
                return 0;
        uint64_t head = atomic_load_explicit(&r->hdr->head, memory_order_relaxed);
        if (shm_unlikely(head - tail > r->capacity || head - tail < total))
                return -EPROTO;
        r->head = head;
        return 0;
}

/* Zeroes the consumed record at tail, so that no word of it can pass for a
 * committed header on the next lap, and moves the local tail past it. The
 * shared tail moves in shm_mpsc_tail_publish. */
static void shm_mpsc_consume(struct shm_mpsc *r, uint64_t total)
{
        uint64_t off = r->tail & r->mask;
        DP_ASSERT(off + total <= r->capacity);
        /* Journal first (read back only by shm_mpsc_recover in a process
         * that took over after this one died, so no ordering with the
         * producers is needed; stores of a killed process are not lost). */
        atomic_store_explicit(&r->hdr->release_to, r->tail + total, memory_order_relaxed);
        memset(r->data + off, 0, total);
        r->tail += total;
}


static void shm_mpsc_tail_publish(struct shm_mpsc *r)
{
        /* Pairs with the acquire load of tail in shm_mpsc_claim: the zeroing
         * is visible before producers may claim the bytes again. */
        atomic_store_explicit(&r->hdr->tail, r->tail, memory_order_release);
}

int shm_mpsc_recover(struct shm_mpsc *r)
{
        uint64_t tail = atomic_load_explicit(&r->hdr->tail, memory_order_acquire);
        uint64_t to = atomic_load_explicit(&r->hdr->release_to, memory_order_relaxed);
        if (to <= tail)
                return 0;
        /* One record at most: it never wraps and is aligned. */
        uint64_t off = tail & r->mask;
        if (to % SHM_MPSC_ALIGN != 0 || to - tail > r->capacity - off)
                return -EPROTO;
        memset(r->data + off, 0, to - tail);
        r->tail = to;
        shm_mpsc_tail_publish(r);
        return 1;
}

/* Reads and checks the header at the local tail. Returns 1 with *len,
 * *type and *total set, 0 when not committed, -EPROTO when impossible. */
static int shm_mpsc_hdr_read(struct shm_mpsc *r, uint32_t *len, uint32_t *type,
                             uint64_t *total)
{
        uint64_t off = r->tail & r->mask;
        struct shm_mpsc_rec_hdr *rh = shm_mpsc_rec_at(r, off);
        /* Pairs with the release store of len_word in shm_mpsc_commit, or in
         * shm_mpsc_reserve for padding. */
        uint32_t word = atomic_load_explicit(&rh->len_word, memory_order_acquire);
        if (word == 0)
                return 0;
        if (shm_unlikely(!(word & SHM_MPSC_COMMITTED)))
                return -EPROTO;
        *len = word & ~SHM_MPSC_COMMITTED;
        *type = atomic_load_explicit(&rh->type, memory_order_relaxed);
        *total = shm_mpsc_rec_bytes(*len);
        if (shm_unlikely(off + *total > r->capacity))
                return -EPROTO;
        /* Padding always runs to the end of the data area. */
        if (*type == SHM_MPSC_TYPE_PAD ? off + *total != r->capacity : *len > r->rec_max)
                return -EPROTO;
        if (shm_mpsc_head_check(r, r->tail, *total) != 0)
                return -EPROTO;
        return 1;
}

int shm_mpsc_peek(struct shm_mpsc *r, struct shm_mpsc_rec *out)
{
        /* At most one padding record precedes a record: after it we stand at
         * offset 0, where any record up to rec_max fits. */
        for (int pads = 0; pads < 2; pads++) {
                uint32_t len = 0, type = 0;
                uint64_t total = 0;
                int rc = shm_mpsc_hdr_read(r, &len, &type, &total);
                if (rc <= 0)
                        return rc;
                if (type != SHM_MPSC_TYPE_PAD) {
                        out->data = r->data + (r->tail & r->mask) + SHM_MPSC_HDR_BYTES;
                        out->len = len;
                        out->type = type;
                        r->peek_end = r->tail + total;
                        r->peeked = true;
                        return 1;
                }
                shm_mpsc_consume(r, total);
                shm_mpsc_tail_publish(r);
        }
        return -EPROTO;
}

void shm_mpsc_release(struct shm_mpsc *r)
{
        DP_VERIFY(r->peeked);
        shm_mpsc_consume(r, r->peek_end - r->tail);
        r->peeked = false;
        shm_mpsc_tail_publish(r);
}

int shm_mpsc_read_burst(struct shm_mpsc *r,
                        void (*fn)(void *arg, const struct shm_mpsc_rec *rec),
                        void *arg, unsigned max)
{
        unsigned n = 0;
        int rc = 0;

        while (n < max) {
                struct shm_mpsc_rec rec;
                rc = shm_mpsc_peek(r, &rec);
                if (rc <= 0)
                        break;
                fn(arg, &rec);
                shm_mpsc_consume(r, r->peek_end - r->tail);
                r->peeked = false;
                n++;
        }
        if (n == 0)
                return rc;
        shm_mpsc_tail_publish(r);
        return (int)n;
}

struct shm_mpsc_try {
        struct shm_mpsc *r;
        struct shm_mpsc_rec *out;
};

static int shm_mpsc_try_peek(void *arg)
{
        struct shm_mpsc_try *t = arg;
        return shm_mpsc_peek(t->r, t->out);
}

int shm_mpsc_read_wait(struct shm_mpsc *r, struct shm_mpsc_rec *out, int64_t timeout_ns)
{
        struct shm_mpsc_try t = { r, out };
        return shm_wake_until(&r->hdr->wake, timeout_ns, shm_mpsc_try_peek, &t);
}
