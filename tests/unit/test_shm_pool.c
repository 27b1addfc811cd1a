/* test_shm_pool.c - slab pools: exhaustion, reference counts, double-free
 * detection, size classes, a corrupt free list, and concurrent use. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "shm/shm_pool.h"

static void *mem_new(size_t len)
{
        void *p = aligned_alloc(64, (len + 63) & ~(size_t)63);
        cr_assert_not_null(p);
        return p;
}

static void pool_new(struct shm_pool *p, void **mem, uint32_t bytes, uint32_t count)
{
        size_t len = shm_pool_bytes(bytes, count);
        cr_assert_gt(len, 0);
        *mem = mem_new(len);
        cr_assert_eq(shm_pool_init(p, *mem, len, bytes, count), 0);
}

Test(shm_pool, refuses_bad_geometry)
{
        struct shm_pool p;
        void *mem = mem_new(1 << 16);
        cr_assert_eq(shm_pool_bytes(0, 8), 0);
        cr_assert_eq(shm_pool_bytes(64, 0), 0);
        cr_assert_eq(shm_pool_bytes(64, SHM_POOL_BLOCKS_MAX + 1), 0);
        cr_assert_eq(shm_pool_init(&p, mem, 1 << 16, 0, 8), -EINVAL);
        cr_assert_eq(shm_pool_init(&p, (uint8_t *)mem + 8, 1 << 15, 64, 8), -EINVAL);
        cr_assert_eq(shm_pool_init(&p, mem, 256, 64, 64), -ENOSPC);
        free(mem);
}

Test(shm_pool, exhaustion_returns_enomem_then_recovers)
{
        struct shm_pool p;
        void *mem;
        uint32_t idx[8], extra;
        pool_new(&p, &mem, 100, 8);
        for (int i = 0; i < 8; i++)
                cr_assert_eq(shm_pool_alloc(&p, &idx[i]), 0);
        cr_assert_eq(shm_pool_in_use(&p), 8);
        cr_assert_eq(shm_pool_alloc(&p, &extra), -ENOMEM);
        cr_assert_eq(shm_pool_put(&p, idx[3]), 1);
        cr_assert_eq(shm_pool_alloc(&p, &extra), 0);
        cr_assert_eq(extra, idx[3], "the freed block is reused");
        free(mem);
}

Test(shm_pool, blocks_are_distinct_and_do_not_overlap)
{
        struct shm_pool p;
        void *mem;
        uint32_t idx[16];
        pool_new(&p, &mem, 100, 16);
        for (int i = 0; i < 16; i++) {
                cr_assert_eq(shm_pool_alloc(&p, &idx[i]), 0);
                memset(shm_pool_block_data(shm_pool_block(&p, idx[i])), i, 100);
        }
        for (int i = 0; i < 16; i++) {
                uint8_t *d = shm_pool_block_data(shm_pool_block(&p, idx[i]));
                for (int j = 0; j < 100; j++)
                        cr_assert_eq(d[j], i);
                cr_assert_eq((uintptr_t)d % 16, 0);
        }
        free(mem);
}

Test(shm_pool, last_reference_frees_the_block)
{
        struct shm_pool p;
        void *mem;
        uint32_t i;
        pool_new(&p, &mem, 64, 4);
        cr_assert_eq(shm_pool_alloc(&p, &i), 0);
        cr_assert_eq(shm_pool_ref(&p, i, 2), 0);   /* three readers now */
        cr_assert_eq(shm_pool_put(&p, i), 0);
        cr_assert_eq(shm_pool_put(&p, i), 0);
        cr_assert_eq(shm_pool_in_use(&p), 1);
        cr_assert_eq(shm_pool_put(&p, i), 1, "the third put frees");
        cr_assert_eq(shm_pool_in_use(&p), 0);
        free(mem);
}

Test(shm_pool, double_free_is_detected_and_changes_nothing)
{
        struct shm_pool p;
        void *mem;
        uint32_t a, b, c;
        pool_new(&p, &mem, 64, 2);
        cr_assert_eq(shm_pool_alloc(&p, &a), 0);
        cr_assert_eq(shm_pool_put(&p, a), 1);
        cr_assert_eq(shm_pool_put(&p, a), -EALREADY);
        cr_assert_eq(shm_pool_ref(&p, a, 1), -EALREADY, "no resurrection of a free block");
        /* Had the double free gone through, the block would be on the list
         * twice and handed out twice. */
        cr_assert_eq(shm_pool_alloc(&p, &b), 0);
        cr_assert_eq(shm_pool_alloc(&p, &c), 0);
        cr_assert_neq(b, c);
        cr_assert_eq(shm_pool_alloc(&p, &c), -ENOMEM);
        free(mem);
}

Test(shm_pool, bad_indexes_are_refused)
{
        struct shm_pool p;
        void *mem;
        pool_new(&p, &mem, 64, 4);
        cr_assert_eq(shm_pool_put(&p, 4), -EINVAL);
        cr_assert_eq(shm_pool_ref(&p, UINT32_MAX, 1), -EINVAL);
        cr_assert_null(shm_pool_block(&p, 4));
        free(mem);
}

Test(shm_pool, corrupt_free_list_is_eproto)
{
        struct shm_pool p;
        void *mem;
        uint32_t i;
        pool_new(&p, &mem, 64, 4);
        atomic_store(&p.hdr->free_head, 1000);   /* index past the pool */
        cr_assert_eq(shm_pool_alloc(&p, &i), -EPROTO);
        free(mem);
}

Test(shm_pool, attach_checks_the_header)
{
        struct shm_pool p, q;
        void *mem;
        uint32_t i;
        pool_new(&p, &mem, 64, 4);
        size_t len = shm_pool_bytes(64, 4);
        cr_assert_eq(shm_pool_attach(&q, mem, len), 0);
        cr_assert_eq(shm_pool_alloc(&q, &i), 0);
        cr_assert_eq(shm_pool_in_use(&p), 1, "both views share one pool");
        cr_assert_eq(shm_pool_attach(&q, mem, len - 1), -ENOSPC);
        p.hdr->stride_bytes = 8;
        cr_assert_eq(shm_pool_attach(&q, mem, len), -EINVAL);
        p.hdr->magic = 0;
        cr_assert_eq(shm_pool_attach(&q, mem, len), -EPROTO);
        free(mem);
}

static const struct shm_slab_class classes[] = {
        { .block_bytes = 128, .block_count = 4 },
        { .block_bytes = 1024, .block_count = 2 },
        { .block_bytes = 8192, .block_count = 1 },
};

static void slab_new(struct shm_slab *s, void **mem)
{
        size_t len = shm_slab_bytes(classes, 3);
        cr_assert_gt(len, 0);
        *mem = mem_new(len);
        cr_assert_eq(shm_slab_init(s, *mem, len, classes, 3), 0);
}

Test(shm_slab, picks_the_smallest_class_that_fits)
{
        struct shm_slab s;
        void *mem;
        uint32_t id, len;
        slab_new(&s, &mem);
        cr_assert_eq(shm_slab_alloc(&s, 100, &id), 0);
        cr_assert_eq(id >> SHM_BUF_CLASS_SHIFT, 0);
        cr_assert_not_null(shm_slab_data(&s, id, &len));
        cr_assert_eq(len, 100);
        cr_assert_eq(shm_slab_alloc(&s, 129, &id), 0);
        cr_assert_eq(id >> SHM_BUF_CLASS_SHIFT, 1);
        cr_assert_eq(shm_slab_alloc(&s, 8192, &id), 0);
        cr_assert_eq(id >> SHM_BUF_CLASS_SHIFT, 2);
        cr_assert_eq(shm_slab_alloc(&s, 8193, &id), -EMSGSIZE);
        free(mem);
}

Test(shm_slab, a_full_class_spills_up_then_enomem)
{
        struct shm_slab s;
        void *mem;
        uint32_t id;
        slab_new(&s, &mem);
        for (int i = 0; i < 4 + 2 + 1; i++)
                cr_assert_eq(shm_slab_alloc(&s, 10, &id), 0, "allocation %d", i);
        cr_assert_eq(id >> SHM_BUF_CLASS_SHIFT, 2, "the last one spilled to 8 KiB");
        cr_assert_eq(shm_slab_alloc(&s, 10, &id), -ENOMEM);
        free(mem);
}

Test(shm_slab, refuses_bad_class_lists_and_ids)
{
        struct shm_slab s;
        void *mem;
        struct shm_slab_class shrinking[] = { { 1024, 1 }, { 128, 1 } };
        cr_assert_eq(shm_slab_bytes(shrinking, 2), 0);
        cr_assert_eq(shm_slab_bytes(classes, 0), 0);
        slab_new(&s, &mem);
        cr_assert_null(shm_slab_data(&s, 7u << SHM_BUF_CLASS_SHIFT, NULL));
        cr_assert_null(shm_slab_data(&s, 5, NULL), "class 0 has 4 blocks");
        cr_assert_eq(shm_slab_put(&s, SHM_BUF_NONE), -EINVAL);
        uint32_t id;
        cr_assert_eq(shm_slab_alloc(&s, 1, &id), 0);
        cr_assert_eq(shm_slab_ref(&s, id, 1), 0);
        cr_assert_eq(shm_slab_put(&s, id), 0);
        cr_assert_eq(shm_slab_put(&s, id), 1);
        cr_assert_eq(shm_slab_put(&s, id), -EALREADY);
        struct shm_slab t;
        cr_assert_eq(shm_slab_attach(&t, mem, shm_slab_bytes(classes, 3), 3), 0);
        cr_assert_eq(t.pools[2].block_bytes, 8192);
        free(mem);
}

#define CHURN_THREADS 4
#define CHURN_ROUNDS 200000

struct churn_arg {
        struct shm_pool *p;
        int errors;
};

/* Each thread allocates, stamps its id, checks it, frees: a block handed
 * out twice at once (an ABA bug) would show another thread's stamp. */
static void *churn(void *argp)
{
        struct churn_arg *arg = argp;
        uint32_t me = (uint32_t)(uintptr_t)pthread_self();
        for (int i = 0; i < CHURN_ROUNDS; i++) {
                uint32_t idx;
                if (shm_pool_alloc(arg->p, &idx) != 0)
                        continue;
                volatile uint32_t *d = shm_pool_block_data(shm_pool_block(arg->p, idx));
                *d = me;
                for (int spin = 0; spin < 8; spin++)
                        if (*d != me)
                                arg->errors++;
                if (shm_pool_put(arg->p, idx) != 1)
                        arg->errors++;
        }
        return NULL;
}

Test(shm_pool, concurrent_alloc_and_free_never_share_a_block)
{
        struct shm_pool p;
        void *mem;
        pthread_t t[CHURN_THREADS];
        struct churn_arg args[CHURN_THREADS];
        pool_new(&p, &mem, 64, 8);
        for (int i = 0; i < CHURN_THREADS; i++) {
                args[i] = (struct churn_arg){ .p = &p };
                cr_assert_eq(pthread_create(&t[i], NULL, churn, &args[i]), 0);
        }
        for (int i = 0; i < CHURN_THREADS; i++) {
                pthread_join(t[i], NULL);
                cr_assert_eq(args[i].errors, 0, "thread %d saw a shared block", i);
        }
        cr_assert_eq(shm_pool_in_use(&p), 0);
        uint32_t idx[8], extra;
        for (int i = 0; i < 8; i++)
                cr_assert_eq(shm_pool_alloc(&p, &idx[i]), 0, "no block was lost");
        cr_assert_eq(shm_pool_alloc(&p, &extra), -ENOMEM, "and none duplicated");
        free(mem);
}
