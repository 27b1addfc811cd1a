/* test_shm_ring.c - unit tests of the SPSC fixed-slot ring (shm/shm_ring.h):
 * geometry and attach checks, empty, full, partial bursts, wrap-around,
 * corrupt shared indexes and the blocking dequeue.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shm/shm_clock.h"
#include "shm/shm_ring.h"

/* A producer and a consumer view on one ring in private memory. */
struct ring_pair {
        void *mem;
        size_t len;
        struct shm_ring prod;
        struct shm_ring cons;
};

static void *mem_alloc(size_t len)
{
        void *mem = aligned_alloc(SHM_CACHE_LINE, shm_align_up(len, SHM_CACHE_LINE));
        cr_assert_not_null(mem);
        memset(mem, 0, len);
        return mem;
}

static void pair_init(struct ring_pair *p, uint32_t capacity, uint32_t slot_bytes)
{
        p->len = shm_ring_bytes(capacity, slot_bytes);
        cr_assert_neq(p->len, 0);
        p->mem = mem_alloc(p->len);
        cr_assert_eq(shm_ring_init(&p->prod, p->mem, p->len, capacity, slot_bytes), 0);
        cr_assert_eq(shm_ring_attach(&p->cons, p->mem, p->len), 0);
}

static void pair_fini(struct ring_pair *p)
{
        free(p->mem);
}

/* Enqueues the values first..first+n-1 one burst at a time. */
static int enqueue_seq(struct shm_ring *r, uint64_t first, unsigned n)
{
        uint64_t items[64];
        cr_assert_leq(n, 64);
        for (unsigned i = 0; i < n; i++)
                items[i] = first + i;
        return shm_ring_enqueue_burst(r, items, n);
}

static void expect_seq(const uint64_t *items, unsigned n, uint64_t first)
{
        for (unsigned i = 0; i < n; i++)
                cr_assert_eq(items[i], first + i, "item %u: %llu, want %llu", i,
                             (unsigned long long)items[i], (unsigned long long)(first + i));
}

Test(shm_ring, rejects_non_power_of_two_capacity)
{
        struct shm_ring r;
        void *mem = mem_alloc(1 << 16);
        cr_expect_eq(shm_ring_init(&r, mem, 1 << 16, 1000, 8), -EINVAL);
        cr_expect_eq(shm_ring_init(&r, mem, 1 << 16, 0, 8), -EINVAL);
        cr_expect_eq(shm_ring_init(&r, mem, 1 << 16, SHM_RING_CAPACITY_MAX * 2u, 8), -EINVAL);
        cr_expect_eq(shm_ring_bytes(1000, 8), 0);
        cr_expect_eq(shm_ring_bytes(0, 8), 0);
        free(mem);
}

Test(shm_ring, rejects_bad_slot_size)
{
        struct shm_ring r;
        void *mem = mem_alloc(1 << 20);
        cr_expect_eq(shm_ring_init(&r, mem, 1 << 20, 16, 0), -EINVAL);
        cr_expect_eq(shm_ring_init(&r, mem, 1 << 20, 16, 12), -EINVAL);
        cr_expect_eq(shm_ring_init(&r, mem, 1 << 20, 16, SHM_RING_SLOT_BYTES_MAX + 8), -EINVAL);
        cr_expect_eq(shm_ring_bytes(16, 12), 0);
        cr_expect_eq(shm_ring_init(&r, mem, 1 << 20, 16, SHM_RING_SLOT_BYTES_MAX), 0);
        free(mem);
}

Test(shm_ring, rejects_unaligned_memory)
{
        struct shm_ring r;
        uint8_t *mem = mem_alloc(4096);
        cr_expect_eq(shm_ring_init(&r, mem + 8, 4000, 16, 8), -EINVAL);
        free(mem);
}

Test(shm_ring, init_needs_room_for_all_slots)
{
        struct shm_ring r;
        size_t len = shm_ring_bytes(16, 8);
        cr_assert_eq(len, sizeof(struct shm_ring_hdr) + 16 * 8);
        void *mem = mem_alloc(len);
        cr_expect_eq(shm_ring_init(&r, mem, len - 1, 16, 8), -ENOSPC);
        cr_expect_eq(shm_ring_init(&r, mem, len, 16, 8), 0);
        free(mem);
}

Test(shm_ring, starts_empty)
{
        struct ring_pair p;
        pair_init(&p, 16, 8);
        uint64_t out[4];
        cr_expect_eq(shm_ring_dequeue_burst(&p.cons, out, 4), 0);
        cr_expect_eq(shm_ring_count(&p.cons), 0);
        pair_fini(&p);
}

Test(shm_ring, fills_to_capacity_then_refuses)
{
        struct ring_pair p;
        pair_init(&p, 16, 8);
        for (uint64_t i = 0; i < 16; i++)
                cr_assert_eq(enqueue_seq(&p.prod, i, 1), 1);
        cr_expect_eq(enqueue_seq(&p.prod, 16, 1), 0);
        cr_expect_eq(shm_ring_count(&p.cons), 16);

        uint64_t out[16];
        cr_assert_eq(shm_ring_dequeue_burst(&p.cons, out, 16), 16);
        expect_seq(out, 16, 0);
        cr_expect_eq(shm_ring_dequeue_burst(&p.cons, out, 1), 0);
        pair_fini(&p);
}

Test(shm_ring, enqueues_partial_burst_when_nearly_full)
{
        struct ring_pair p;
        pair_init(&p, 16, 8);
        cr_assert_eq(enqueue_seq(&p.prod, 0, 12), 12);
        cr_expect_eq(enqueue_seq(&p.prod, 12, 8), 4, "only 4 slots are free");
        cr_expect_eq(enqueue_seq(&p.prod, 16, 8), 0);

        uint64_t out[32];
        cr_assert_eq(shm_ring_dequeue_burst(&p.cons, out, 32), 16, "partial dequeue too");
        expect_seq(out, 16, 0);
        pair_fini(&p);
}

Test(shm_ring, wraps_around_preserving_order)
{
        struct ring_pair p;
        pair_init(&p, 8, 8);
        uint64_t next_in = 0, next_out = 0, out[8];

        /* Bursts of 1..7 on a ring of 8 split across the end on most laps. */
        for (unsigned round = 0; round < 2000; round++) {
                unsigned n = 1 + round % 7;
                int put = enqueue_seq(&p.prod, next_in, n);
                cr_assert_geq(put, 0);
                next_in += (unsigned)put;
                int got = shm_ring_dequeue_burst(&p.cons, out, 1 + (round * 3) % 7);
                cr_assert_geq(got, 0);
                expect_seq(out, (unsigned)got, next_out);
                next_out += (unsigned)got;
        }
        cr_expect_gt(next_out, 8 * 100, "many laps");
        pair_fini(&p);
}

Test(shm_ring, carries_multi_word_slots_across_the_wrap)
{
        struct ring_pair p;
        pair_init(&p, 4, 24);
        uint64_t in[3][3], out[3][3];
        for (uint64_t lap = 0; lap < 10; lap++) {
                for (unsigned i = 0; i < 3; i++)
                        for (unsigned j = 0; j < 3; j++)
                                in[i][j] = lap * 100 + i * 10 + j;
                cr_assert_eq(shm_ring_enqueue_burst(&p.prod, in, 3), 3);
                cr_assert_eq(shm_ring_dequeue_burst(&p.cons, out, 3), 3);
                cr_assert_eq(memcmp(in, out, sizeof(in)), 0, "lap %llu", (unsigned long long)lap);
        }
        pair_fini(&p);
}

Test(shm_ring, attach_sees_items_enqueued_before)
{
        struct ring_pair p;
        pair_init(&p, 16, 8);
        cr_assert_eq(enqueue_seq(&p.prod, 100, 5), 5);
        struct shm_ring late;
        cr_assert_eq(shm_ring_attach(&late, p.mem, p.len), 0);
        uint64_t out[8];
        cr_assert_eq(shm_ring_dequeue_burst(&late, out, 8), 5);
        expect_seq(out, 5, 100);
        pair_fini(&p);
}

Test(shm_ring, attach_rejects_bad_magic_and_version)
{
        struct ring_pair p;
        pair_init(&p, 16, 8);
        struct shm_ring r;
        struct shm_ring_hdr *h = p.mem;

        h->magic ^= 1;
        cr_expect_eq(shm_ring_attach(&r, p.mem, p.len), -EPROTO);
        h->magic ^= 1;
        h->version = SHM_RING_VERSION + 1;
        cr_expect_eq(shm_ring_attach(&r, p.mem, p.len), -EPROTO);
        h->version = SHM_RING_VERSION;
        cr_expect_eq(shm_ring_attach(&r, p.mem, p.len), 0);
        pair_fini(&p);
}

Test(shm_ring, attach_rejects_bad_geometry)
{
        struct ring_pair p;
        pair_init(&p, 16, 8);
        struct shm_ring r;
        struct shm_ring_hdr *h = p.mem;

        h->capacity = 12;
        cr_expect_eq(shm_ring_attach(&r, p.mem, p.len), -EINVAL);
        h->capacity = 16;
        h->slot_bytes = 12;
        cr_expect_eq(shm_ring_attach(&r, p.mem, p.len), -EINVAL);
        h->slot_bytes = 8;
        cr_expect_eq(shm_ring_attach(&r, (uint8_t *)p.mem + 8, p.len - 8), -EINVAL);
        pair_fini(&p);
}

Test(shm_ring, attach_rejects_too_short_memory)
{
        struct ring_pair p;
        pair_init(&p, 16, 8);
        struct shm_ring r;

        /* The header claims 16 slots the mapping does not hold. */
        cr_expect_eq(shm_ring_attach(&r, p.mem, p.len - 8), -ENOSPC);
        /* Shorter than the header itself: cannot even read the geometry. */
        cr_expect_eq(shm_ring_attach(&r, p.mem, sizeof(struct shm_ring_hdr) - 1), -EINVAL);
        pair_fini(&p);
}

Test(shm_ring, attach_rejects_head_too_far_ahead)
{
        struct ring_pair p;
        pair_init(&p, 16, 8);
        struct shm_ring r;
        struct shm_ring_hdr *h = p.mem;

        atomic_store(&h->head, 17);
        cr_expect_eq(shm_ring_attach(&r, p.mem, p.len), -EPROTO);
        atomic_store(&h->head, 16);
        cr_expect_eq(shm_ring_attach(&r, p.mem, p.len), 0);
        pair_fini(&p);
}

Test(shm_ring, dequeue_reports_eproto_for_head_beyond_capacity)
{
        struct ring_pair p;
        pair_init(&p, 16, 8);
        struct shm_ring_hdr *h = p.mem;
        uint64_t out[4];

        atomic_store(&h->head, 1000);
        cr_expect_eq(shm_ring_dequeue_burst(&p.cons, out, 4), -EPROTO);
        /* Again: the bad head must not have been cached as good. */
        cr_expect_eq(shm_ring_dequeue_burst(&p.cons, out, 4), -EPROTO);
        cr_expect_eq(shm_ring_count(&p.cons), -EPROTO);
        /* A head behind tail is as impossible: the distance wraps. */
        atomic_store(&h->head, UINT64_MAX);
        cr_expect_eq(shm_ring_dequeue_burst(&p.cons, out, 4), -EPROTO);
        pair_fini(&p);
}

Test(shm_ring, enqueue_reports_eproto_for_tail_ahead_of_head)
{
        struct ring_pair p;
        pair_init(&p, 16, 8);
        struct shm_ring_hdr *h = p.mem;

        cr_assert_eq(enqueue_seq(&p.prod, 0, 16), 16);
        /* Full, so the producer must re-read tail and finds it corrupt. */
        atomic_store(&h->tail, 40);
        cr_expect_eq(enqueue_seq(&p.prod, 16, 1), -EPROTO);
        /* Again: the bad tail must not have been cached as good, or the
         * wrapped distance would let the producer overwrite unread slots. */
        cr_expect_eq(enqueue_seq(&p.prod, 16, 1), -EPROTO);
        atomic_store(&h->tail, 0);
        cr_expect_eq(enqueue_seq(&p.prod, 16, 1), 0, "still full once repaired");
        pair_fini(&p);
}

Test(shm_ring, dequeue_wait_times_out_when_empty)
{
        struct ring_pair p;
        pair_init(&p, 16, 8);
        uint64_t out[4];
        uint64_t t0_ns = shm_clock_ns();

        cr_expect_eq(shm_ring_dequeue_wait(&p.cons, out, 4, 20 * 1000 * 1000), -ETIMEDOUT);
        cr_expect_geq(shm_clock_ns() - t0_ns, 20 * 1000 * 1000);
        struct shm_ring_hdr *h = p.mem;
        cr_expect_eq(atomic_load(&h->wake.sleepers), 0, "the sleeper withdrew");
        pair_fini(&p);
}

Test(shm_ring, dequeue_wait_returns_ready_items_at_once)
{
        struct ring_pair p;
        pair_init(&p, 16, 8);
        uint64_t out[4];
        cr_assert_eq(enqueue_seq(&p.prod, 7, 2), 2);
        cr_expect_eq(shm_ring_dequeue_wait(&p.cons, out, 4, 0), 2);
        expect_seq(out, 2, 7);
        pair_fini(&p);
}

static void *late_producer(void *arg)
{
        struct shm_ring *prod = arg;
        struct timespec ts = {.tv_nsec = 30 * 1000 * 1000};
        nanosleep(&ts, NULL);
        uint64_t item = 42;
        if (shm_ring_enqueue_burst(prod, &item, 1) != 1)
                return (void *)1;
        shm_ring_notify(prod);
        return NULL;
}

Test(shm_ring, dequeue_wait_wakes_on_enqueue_from_other_thread, .timeout = 10)
{
        struct ring_pair p;
        pair_init(&p, 16, 8);
        pthread_t t;
        uint64_t out[4];
        uint64_t t0_ns = shm_clock_ns();

        cr_assert_eq(pthread_create(&t, NULL, late_producer, &p.prod), 0);
        cr_expect_eq(shm_ring_dequeue_wait(&p.cons, out, 4, 5000LL * 1000 * 1000), 1);
        cr_expect_eq(out[0], 42);
        cr_expect_lt(shm_clock_ns() - t0_ns, 4000ull * 1000 * 1000, "woken, not timed out");
        void *rc;
        pthread_join(t, &rc);
        cr_expect_null(rc);
        pair_fini(&p);
}
