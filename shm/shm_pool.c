/* shm_pool.c - lock-free slab pools with reference counts (see shm_pool.h). */
#include "shm/shm_pool.h"

#include <errno.h>
#include <string.h>

#define SHM_POOL_IDX_MASK 0xffffffffull

static uint32_t shm_pool_stride(uint32_t block_bytes)
{
        return (uint32_t)shm_align_up(sizeof(struct shm_pool_block) + (uint64_t)block_bytes,
                                      SHM_CACHE_LINE);
}

size_t shm_pool_bytes(uint32_t block_bytes, uint32_t block_count)
{
        if (block_bytes == 0 || block_bytes > SHM_POOL_BLOCK_BYTES_MAX ||
            block_count == 0 || block_count > SHM_POOL_BLOCKS_MAX)
                return 0;
        return sizeof(struct shm_pool_hdr) + (size_t)shm_pool_stride(block_bytes) * block_count;
}

static void shm_pool_view_set(struct shm_pool *p, struct shm_pool_hdr *h)
{
        p->hdr = h;
        p->blocks = (uint8_t *)(h + 1);
        p->block_count = h->block_count;
        p->block_bytes = h->block_bytes;
        p->stride_bytes = h->stride_bytes;
}

int shm_pool_init(struct shm_pool *p, void *mem, size_t len,
                  uint32_t block_bytes, uint32_t block_count)
{
        size_t need = shm_pool_bytes(block_bytes, block_count);
        if (need == 0 || (uintptr_t)mem % SHM_CACHE_LINE != 0)
                return -EINVAL;
        if (len < need)
                return -ENOSPC;

        struct shm_pool_hdr *h = mem;
        memset(h, 0, sizeof(*h));
        h->version = SHM_POOL_VERSION;
        h->block_count = block_count;
        h->block_bytes = block_bytes;
        h->stride_bytes = shm_pool_stride(block_bytes);
        shm_pool_view_set(p, h);
        /* Chain every block in index order, so the first allocations are
         * the lowest addresses (friendlier to the TLB). */
        for (uint32_t i = 0; i < block_count; i++) {
                struct shm_pool_block *b = shm_pool_block(p, i);
                atomic_store_explicit(&b->refs, 0, memory_order_relaxed);
                atomic_store_explicit(&b->next, i + 1 < block_count ? i + 2 : 0,
                                      memory_order_relaxed);
                b->len = 0;
        }
        atomic_store_explicit(&h->free_head, 1, memory_order_relaxed);
        atomic_store_explicit(&h->in_use, 0, memory_order_relaxed);
        h->magic = SHM_POOL_MAGIC;
        return 0;
}

int shm_pool_attach(struct shm_pool *p, void *mem, size_t len)
{
        struct shm_pool_hdr *h = mem;

        if ((uintptr_t)mem % SHM_CACHE_LINE != 0 || len < sizeof(*h))
                return -EINVAL;
        if (h->magic != SHM_POOL_MAGIC || h->version != SHM_POOL_VERSION)
                return -EPROTO;
        size_t need = shm_pool_bytes(h->block_bytes, h->block_count);
        if (need == 0 || h->stride_bytes != shm_pool_stride(h->block_bytes))
                return -EINVAL;
        if (len < need)
                return -ENOSPC;
        shm_pool_view_set(p, h);
        return 0;
}

struct shm_pool_block *shm_pool_block(const struct shm_pool *p, uint32_t index)
{
        if (index >= p->block_count)
                return NULL;
        return (struct shm_pool_block *)(p->blocks + (size_t)index * p->stride_bytes);
}

int shm_pool_alloc(struct shm_pool *p, uint32_t *index)
{
        _Atomic uint64_t *head_word = &p->hdr->free_head;
        /* Pairs with the release CAS in shm_pool_push: the block's next link
         * and contents are visible once we see it at the head. */
        uint64_t head = atomic_load_explicit(head_word, memory_order_acquire);

        for (;;) {
                uint32_t first = (uint32_t)(head & SHM_POOL_IDX_MASK);
                if (first == 0)
                        return -ENOMEM;
                struct shm_pool_block *b = shm_pool_block(p, first - 1);
                if (b == NULL)
                        return -EPROTO;
                /* May be stale if another thread pops `first` meanwhile; the
                 * tag makes our CAS fail in that case (no ABA). */
                uint32_t next = atomic_load_explicit(&b->next, memory_order_relaxed);
                uint64_t tag = (head >> 32) + 1;
                if (atomic_compare_exchange_weak_explicit(head_word, &head, tag << 32 | next,
                                                          memory_order_acquire,
                                                          memory_order_acquire)) {
                        atomic_store_explicit(&b->refs, 1, memory_order_relaxed);
                        b->len = 0;
                        atomic_fetch_add_explicit(&p->hdr->in_use, 1, memory_order_relaxed);
                        *index = first - 1;
                        return 0;
                }
        }
}

static void shm_pool_push(struct shm_pool *p, uint32_t index, struct shm_pool_block *b)
{
        _Atomic uint64_t *head_word = &p->hdr->free_head;
        uint64_t head = atomic_load_explicit(head_word, memory_order_relaxed);

        atomic_fetch_sub_explicit(&p->hdr->in_use, 1, memory_order_relaxed);
        do {
                atomic_store_explicit(&b->next, (uint32_t)(head & SHM_POOL_IDX_MASK),
                                      memory_order_relaxed);
                /* Release pairs with the acquire load in shm_pool_alloc. */
        } while (!atomic_compare_exchange_weak_explicit(
                head_word, &head, ((head >> 32) + 1) << 32 | (uint64_t)(index + 1),
                memory_order_release, memory_order_relaxed));
}

int shm_pool_ref(struct shm_pool *p, uint32_t index, uint32_t n)
{
        struct shm_pool_block *b = shm_pool_block(p, index);
        if (b == NULL)
                return -EINVAL;
        uint32_t refs = atomic_load_explicit(&b->refs, memory_order_relaxed);
        do {
                if (refs == 0)
                        return -EALREADY;
                if (refs + n < refs)
                        return -EOVERFLOW;
        } while (!atomic_compare_exchange_weak_explicit(&b->refs, &refs, refs + n,
                                                        memory_order_relaxed,
                                                        memory_order_relaxed));
        return 0;
}

int shm_pool_put(struct shm_pool *p, uint32_t index)
{
        struct shm_pool_block *b = shm_pool_block(p, index);
        if (b == NULL)
                return -EINVAL;
        uint32_t refs = atomic_load_explicit(&b->refs, memory_order_relaxed);
        do {
                if (refs == 0)
                        return -EALREADY;
                /* acq_rel: every reader's accesses to the payload happen
                 * before the last put frees the block. */
        } while (!atomic_compare_exchange_weak_explicit(&b->refs, &refs, refs - 1,
                                                        memory_order_acq_rel,
                                                        memory_order_relaxed));
        if (refs != 1)
                return 0;
        shm_pool_push(p, index, b);
        return 1;
}

uint64_t shm_pool_in_use(const struct shm_pool *p)
{
        return atomic_load_explicit(&p->hdr->in_use, memory_order_relaxed);
}

static int shm_slab_classes_check(const struct shm_slab_class *c, uint32_t n)
{
        if (n == 0 || n > SHM_SLAB_CLASSES_MAX)
                return -EINVAL;
        for (uint32_t i = 0; i < n; i++) {
                if (shm_pool_bytes(c[i].block_bytes, c[i].block_count) == 0)
                        return -EINVAL;
                if (i > 0 && c[i].block_bytes <= c[i - 1].block_bytes)
                        return -EINVAL;
        }
        return 0;
}

size_t shm_slab_bytes(const struct shm_slab_class *classes, uint32_t n)
{
        size_t total = 0;
        if (shm_slab_classes_check(classes, n) != 0)
                return 0;
        for (uint32_t i = 0; i < n; i++)
                total += shm_pool_bytes(classes[i].block_bytes, classes[i].block_count);
        return total;
}

int shm_slab_init(struct shm_slab *s, void *mem, size_t len,
                  const struct shm_slab_class *classes, uint32_t n)
{
        size_t need = shm_slab_bytes(classes, n);
        if (need == 0)
                return -EINVAL;
        if (len < need)
                return -ENOSPC;
        memset(s, 0, sizeof(*s));
        uint8_t *at = mem;
        for (uint32_t i = 0; i < n; i++) {
                size_t bytes = shm_pool_bytes(classes[i].block_bytes, classes[i].block_count);
                int rc = shm_pool_init(&s->pools[i], at, bytes, classes[i].block_bytes,
                                       classes[i].block_count);
                if (rc != 0)
                        return rc;
                at += bytes;
        }
        s->class_count = n;
        return 0;
}

int shm_slab_attach(struct shm_slab *s, void *mem, size_t len, uint32_t n)
{
        uint8_t *at = mem;
        size_t left = len;

        if (n == 0 || n > SHM_SLAB_CLASSES_MAX)
                return -EINVAL;
        memset(s, 0, sizeof(*s));
        for (uint32_t i = 0; i < n; i++) {
                int rc = shm_pool_attach(&s->pools[i], at, left);
                if (rc != 0)
                        return rc;
                size_t bytes = shm_pool_bytes(s->pools[i].block_bytes, s->pools[i].block_count);
                at += bytes;
                left -= bytes;
        }
        s->class_count = n;
        return 0;
}

int shm_slab_alloc(struct shm_slab *s, uint32_t len, uint32_t *id)
{
        uint32_t c = 0;
        while (c < s->class_count && s->pools[c].block_bytes < len)
                c++;
        if (c == s->class_count)
                return -EMSGSIZE;
        /* A full class spills into the next larger one before we give up. */
        for (; c < s->class_count; c++) {
                uint32_t index;
                if (shm_pool_alloc(&s->pools[c], &index) != 0)
                        continue;
                shm_pool_block(&s->pools[c], index)->len = len;
                *id = c << SHM_BUF_CLASS_SHIFT | index;
                return 0;
        }
        return -ENOMEM;
}

static struct shm_pool *shm_slab_pool_of(const struct shm_slab *s, uint32_t id)
{
        uint32_t c = id >> SHM_BUF_CLASS_SHIFT;
        return c < s->class_count ? (struct shm_pool *)&s->pools[c] : NULL;
}

void *shm_slab_data(const struct shm_slab *s, uint32_t id, uint32_t *len)
{
        struct shm_pool *p = shm_slab_pool_of(s, id);
        struct shm_pool_block *b = p ? shm_pool_block(p, id & SHM_BUF_INDEX_MASK) : NULL;
        if (b == NULL)
                return NULL;
        if (len != NULL)
                *len = b->len <= p->block_bytes ? b->len : p->block_bytes;
        return shm_pool_block_data(b);
}

int shm_slab_reuse(struct shm_slab *s, uint32_t id, uint32_t len)
{
        struct shm_pool *p = shm_slab_pool_of(s, id);
        struct shm_pool_block *b = p ? shm_pool_block(p, id & SHM_BUF_INDEX_MASK) : NULL;
        if (b == NULL)
                return -EINVAL;
        if (len > p->block_bytes)
                return -EMSGSIZE;
        /* Pairs with the acq_rel decrement in shm_pool_put: the other
         * holders' reads of the payload are done before we see one ref. */
        if (atomic_load_explicit(&b->refs, memory_order_acquire) != 1)
                return -EBUSY;
        b->len = len;
        return 0;
}

int shm_slab_ref(struct shm_slab *s, uint32_t id, uint32_t n)
{
        struct shm_pool *p = shm_slab_pool_of(s, id);
        return p ? shm_pool_ref(p, id & SHM_BUF_INDEX_MASK, n) : -EINVAL;
}

int shm_slab_put(struct shm_slab *s, uint32_t id)
{
        struct shm_pool *p = shm_slab_pool_of(s, id);
        return p ? shm_pool_put(p, id & SHM_BUF_INDEX_MASK) : -EINVAL;
}
