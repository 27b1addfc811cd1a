/* test_shm_vring.c - unit tests of the SPSC variable-length record ring
 * (shm/shm_vring.h): geometry and attach checks, empty, full, the padding
 * record at the wrap, many laps of random lengths, half-written records,
 * stale headers from earlier laps, a producer resuming after another died,
 * corrupt indexes and headers, and the blocking read.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shm/shm_clock.h"
#include "shm/shm_vring.h"

/* A producer and a consumer view on one ring in private memory. */
struct vring_pair {
        void *mem;
        size_t len;
        struct shm_vring prod;
        struct shm_vring cons;
};

static void *mem_alloc(size_t len)
{
        void *mem = aligned_alloc(SHM_CACHE_LINE, shm_align_up(len, SHM_CACHE_LINE));
        cr_assert_not_null(mem);
        memset(mem, 0, len);
        return mem;
}

static void pair_init(struct vring_pair *p, uint32_t capacity)
{
        p->len = shm_vring_bytes(capacity);
        cr_assert_neq(p->len, 0);
        p->mem = mem_alloc(p->len);
        cr_assert_eq(shm_vring_init(&p->prod, p->mem, p->len, capacity), 0);
        cr_assert_eq(shm_vring_attach(&p->cons, p->mem, p->len), 0);
}

static struct shm_vring_hdr *pair_hdr(struct vring_pair *p)
{
        return p->mem;
}

static struct shm_vring_rec_hdr *rec_hdr_at(struct vring_pair *p, uint64_t off)
{
        return (struct shm_vring_rec_hdr *)((uint8_t *)p->mem + sizeof(struct shm_vring_hdr) + off);
}

/* Payload byte i of record seq: any mix-up of records or bytes shows. */
static uint8_t pattern(uint64_t seq, uint32_t i)
{
        return (uint8_t)(seq * 31 + i * 7 + 1);
}

static int write_seq(struct shm_vring *r, uint64_t seq, uint32_t len)
{
        uint8_t buf[4096];
        cr_assert_leq(len, sizeof(buf));
        for (uint32_t i = 0; i < len; i++)
                buf[i] = pattern(seq, i);
        return shm_vring_write(r, (uint32_t)seq, buf, len);
}

/* Peeks, checks the record is seq with len bytes, releases. */
static void read_seq(struct shm_vring *r, uint64_t seq, uint32_t len)
{
        struct shm_vring_rec rec;
        cr_assert_eq(shm_vring_peek(r, &rec), 1, "record %llu missing", (unsigned long long)seq);
        cr_assert_eq(rec.type, (uint32_t)seq);
        cr_assert_eq(rec.len, len, "record %llu: len %u, want %u", (unsigned long long)seq,
                     rec.len, len);
        cr_assert_eq((uintptr_t)rec.data % 8, 0);
        const uint8_t *d = rec.data;
        for (uint32_t i = 0; i < len; i++)
                cr_assert_eq(d[i], pattern(seq, i), "record %llu byte %u",
                             (unsigned long long)seq, i);
        shm_vring_release(r);
}

Test(shm_vring, rejects_non_power_of_two_capacity)
{
        struct shm_vring r;
        void *mem = mem_alloc(1 << 16);
        cr_expect_eq(shm_vring_init(&r, mem, 1 << 16, 1000), -EINVAL);
        cr_expect_eq(shm_vring_init(&r, mem, 1 << 16, 0), -EINVAL);
        cr_expect_eq(shm_vring_bytes(1000), 0);
        free(mem);
}

Test(shm_vring, rejects_capacity_out_of_range)
{
        struct shm_vring r;
        void *mem = mem_alloc(1 << 16);
        cr_expect_eq(shm_vring_init(&r, mem, 1 << 16, SHM_VRING_CAPACITY_MIN / 2), -EINVAL);
        cr_expect_eq(shm_vring_init(&r, mem, 1 << 16, SHM_VRING_CAPACITY_MAX * 2u), -EINVAL);
        cr_expect_eq(shm_vring_bytes(SHM_VRING_CAPACITY_MAX * 2u), 0);
        cr_expect_eq(shm_vring_init(&r, mem, 1 << 16, SHM_VRING_CAPACITY_MIN), 0);
        cr_expect_eq(shm_vring_rec_max(&r), SHM_VRING_CAPACITY_MIN / 2 - 8);
        free(mem);
}

Test(shm_vring, rejects_unaligned_memory)
{
        struct shm_vring r;
        uint8_t *mem = mem_alloc(4096);
        cr_expect_eq(shm_vring_init(&r, mem + 8, 4000, 256), -EINVAL);
        free(mem);
}

Test(shm_vring, init_needs_room_for_the_data_area)
{
        struct shm_vring r;
        size_t len = shm_vring_bytes(256);
        cr_assert_eq(len, sizeof(struct shm_vring_hdr) + 256);
        void *mem = mem_alloc(len);
        cr_expect_eq(shm_vring_init(&r, mem, len - 1, 256), -ENOSPC);
        cr_expect_eq(shm_vring_init(&r, mem, len, 256), 0);
        free(mem);
}

Test(shm_vring, starts_empty)
{
        struct vring_pair p;
        pair_init(&p, 256);
        struct shm_vring_rec rec;
        cr_expect_eq(shm_vring_peek(&p.cons, &rec), 0);
        free(p.mem);
}

Test(shm_vring, round_trips_type_length_and_payload)
{
        struct vring_pair p;
        pair_init(&p, 1024);
        uint32_t lens[] = {0, 1, 7, 8, 13, 100};
        for (unsigned i = 0; i < 6; i++)
                cr_assert_eq(write_seq(&p.prod, i, lens[i]), 0);
        for (unsigned i = 0; i < 6; i++)
                read_seq(&p.cons, i, lens[i]);
        struct shm_vring_rec rec;
        cr_expect_eq(shm_vring_peek(&p.cons, &rec), 0);
        free(p.mem);
}

Test(shm_vring, peek_again_returns_the_same_record)
{
        struct vring_pair p;
        pair_init(&p, 256);
        cr_assert_eq(write_seq(&p.prod, 1, 10), 0);
        cr_assert_eq(write_seq(&p.prod, 2, 10), 0);
        struct shm_vring_rec a, b;
        cr_assert_eq(shm_vring_peek(&p.cons, &a), 1);
        cr_assert_eq(shm_vring_peek(&p.cons, &b), 1);
        cr_expect_eq(a.data, b.data);
        cr_expect_eq(b.type, 1);
        shm_vring_release(&p.cons);
        read_seq(&p.cons, 2, 10);
        free(p.mem);
}

Test(shm_vring, rejects_records_above_rec_max)
{
        struct vring_pair p;
        pair_init(&p, 256);
        uint32_t max = shm_vring_rec_max(&p.prod);
        cr_assert_eq(max, 120);
        cr_expect_eq(write_seq(&p.prod, 1, max + 1), -EMSGSIZE);
        cr_expect_null(shm_vring_reserve(&p.prod, UINT32_MAX));
        cr_expect_eq(p.prod.reserve_err, -EMSGSIZE);
        cr_expect_eq(write_seq(&p.prod, 1, max), 0);
        read_seq(&p.cons, 1, max);
        free(p.mem);
}

Test(shm_vring, rejects_the_padding_type)
{
        struct vring_pair p;
        pair_init(&p, 256);
        cr_expect_eq(shm_vring_write(&p.prod, SHM_VRING_TYPE_PAD, "x", 1), -EINVAL);
        struct shm_vring_rec rec;
        cr_expect_eq(shm_vring_peek(&p.cons, &rec), 0);
        free(p.mem);
}

Test(shm_vring, fills_then_reports_nobufs_and_recovers)
{
        struct vring_pair p;
        pair_init(&p, 256);
        /* 24 payload bytes + 8 of header: 7 records, and the zeroed header
         * after the last one, leave 24 bytes: not enough for an eighth. */
        for (uint64_t i = 0; i < 7; i++)
                cr_assert_eq(write_seq(&p.prod, i, 24), 0);
        cr_expect_eq(write_seq(&p.prod, 7, 24), -ENOBUFS);
        cr_expect_eq(write_seq(&p.prod, 7, 16), 0, "the rest fits exactly");
        cr_expect_eq(write_seq(&p.prod, 8, 0), -ENOBUFS, "not even a bare header fits");
        cr_expect_null(shm_vring_reserve(&p.prod, 0));
        cr_expect_eq(p.prod.reserve_err, -ENOBUFS);

        /* Head stands 8 bytes short of the end: a 24-byte record needs 8 of
         * padding, its 32 and the next header's 8, 48 bytes in all. */
        read_seq(&p.cons, 0, 24);
        cr_expect_eq(write_seq(&p.prod, 8, 24), -ENOBUFS, "40 bytes free");
        read_seq(&p.cons, 1, 24);
        cr_expect_eq(write_seq(&p.prod, 8, 24), 0, "room again after a second release");
        cr_expect_eq(write_seq(&p.prod, 9, 24), -ENOBUFS);
        for (uint64_t i = 2; i < 7; i++)
                read_seq(&p.cons, i, 24);
        read_seq(&p.cons, 7, 16);
        read_seq(&p.cons, 8, 24);
        free(p.mem);
}

Test(shm_vring, pads_at_the_wrap_and_restarts_at_offset_zero)
{
        struct vring_pair p;
        pair_init(&p, 256);
        for (uint64_t i = 0; i < 5; i++) {
                cr_assert_eq(write_seq(&p.prod, i, 24), 0);
                read_seq(&p.cons, i, 24);
        }
        /* head = tail = 160; a 112-byte record does not fit in 96 bytes. */
        cr_assert_eq(write_seq(&p.prod, 5, 100), 0);
        struct shm_vring_rec_hdr *pad = rec_hdr_at(&p, 160);
        cr_expect_eq(atomic_load(&pad->type), SHM_VRING_TYPE_PAD);
        cr_expect_eq(atomic_load(&pad->len), SHM_VRING_COMMITTED | (96 - 8));
        cr_expect_eq(atomic_load(&pair_hdr(&p)->head), 160 + 96 + 112);

        struct shm_vring_rec rec;
        cr_assert_eq(shm_vring_peek(&p.cons, &rec), 1, "padding is skipped");
        cr_expect_eq(rec.type, 5);
        cr_expect_eq(rec.data, p.cons.data + 8, "the record starts at offset 0");
        cr_expect_eq(atomic_load(&pair_hdr(&p)->tail), 256, "padding freed at once");
        shm_vring_release(&p.cons);
        cr_expect_eq(atomic_load(&pair_hdr(&p)->tail), 160 + 96 + 112);
        free(p.mem);
}

Test(shm_vring, keeps_order_over_many_laps_of_random_lengths)
{
        struct vring_pair p;
        pair_init(&p, 1024);
        uint32_t max = shm_vring_rec_max(&p.prod);
        uint64_t rng = 0x9e3779b97f4a7c15ull, next_in = 0, next_out = 0;
        uint32_t lens[4096];

        while (next_out < 20000) {
                /* Write until full or a burst of up to 8, then read some. */
                for (unsigned n = 1 + (unsigned)(rng >> 61); n > 0; n--) {
                        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                        uint32_t len = (uint32_t)(rng % (max + 1));
                        int rc = write_seq(&p.prod, next_in, len);
                        if (rc == -ENOBUFS)
                                break;
                        cr_assert_eq(rc, 0);
                        lens[next_in++ % 4096] = len;
                }
                for (unsigned n = 1 + (unsigned)(rng >> 62); n > 0 && next_out < next_in; n--) {
                        read_seq(&p.cons, next_out, lens[next_out % 4096]);
                        next_out++;
                }
        }
        cr_expect_gt(atomic_load(&pair_hdr(&p)->tail), 100 * 1024, "many laps");
        free(p.mem);
}

Test(shm_vring, never_reads_a_stale_header_from_an_earlier_lap)
{
        /* The data area starts full of published-looking headers, as a
         * reused buffer or an earlier lap leaves it: none may be read. */
        size_t len = shm_vring_bytes(512);
        uint8_t *mem = mem_alloc(len);
        struct shm_vring_rec_hdr *fake = (struct shm_vring_rec_hdr *)(mem + sizeof(struct shm_vring_hdr));
        for (unsigned i = 0; i < 512 / sizeof(*fake); i++) {
                atomic_store(&fake[i].len, SHM_VRING_COMMITTED | 8);
                atomic_store(&fake[i].type, 0xdead);
        }
        struct shm_vring prod, cons;
        cr_assert_eq(shm_vring_init(&prod, mem, len, 512), 0);
        cr_assert_eq(shm_vring_attach(&cons, mem, len), 0);
        struct shm_vring_rec rec;
        cr_expect_eq(shm_vring_peek(&cons, &rec), 0, "a fresh ring is empty");
        /* Lengths that put record starts where earlier laps had payload. */
        uint32_t lens[] = {5, 40, 0, 17, 100, 3, 64, 9};
        for (uint64_t seq = 0; seq < 2000; seq++) {
                uint32_t n = lens[seq % 8];
                cr_assert_eq(write_seq(&prod, seq, n), 0);
                read_seq(&cons, seq, n);
                cr_assert_eq(shm_vring_peek(&cons, &rec), 0, "after record %llu",
                             (unsigned long long)seq);
        }
        free(mem);
}

Test(shm_vring, a_new_producer_resumes_after_the_last_published_record)
{
        struct vring_pair p;
        pair_init(&p, 256);
        cr_assert_eq(write_seq(&p.prod, 1, 8), 0);
        cr_assert_eq(write_seq(&p.prod, 2, 8), 0);
        /* The producer died between publishing record 2 and storing head. */
        atomic_store(&pair_hdr(&p)->head, 16);
        /* And it had reserved and half-written a third record. */
        uint8_t *d = shm_vring_reserve(&p.prod, 8);
        cr_assert_not_null(d);
        memset(d, 0xee, 8);

        struct shm_vring again;
        cr_assert_eq(shm_vring_attach(&again, p.mem, p.len), 0);
        cr_expect_eq(again.head, 32, "resumes after record 2");
        cr_assert_eq(write_seq(&again, 3, 24), 0);
        read_seq(&p.cons, 1, 8);
        read_seq(&p.cons, 2, 8);
        read_seq(&p.cons, 3, 24);
        struct shm_vring_rec rec;
        cr_expect_eq(shm_vring_peek(&p.cons, &rec), 0, "the half-written record never shows");
        free(p.mem);
}

Test(shm_vring, a_new_producer_resumes_after_a_published_wrap)
{
        struct vring_pair p;
        pair_init(&p, 256);
        for (uint64_t i = 0; i < 5; i++) {
                cr_assert_eq(write_seq(&p.prod, i, 24), 0);
                read_seq(&p.cons, i, 24);
        }
        /* Padding at 160 and the record at offset 0, head not yet stored. */
        cr_assert_eq(write_seq(&p.prod, 5, 100), 0);
        atomic_store(&pair_hdr(&p)->head, 160);
        struct shm_vring again;
        cr_assert_eq(shm_vring_attach(&again, p.mem, p.len), 0);
        cr_expect_eq(again.head, 160 + 96 + 112);
        cr_assert_eq(write_seq(&again, 6, 8), 0);
        read_seq(&p.cons, 5, 100);
        read_seq(&p.cons, 6, 8);
        free(p.mem);
}

Test(shm_vring, hides_a_reserved_record_until_commit)
{
        struct vring_pair p;
        pair_init(&p, 256);
        struct shm_vring_rec rec;
        uint8_t *d = shm_vring_reserve(&p.prod, 16);
        cr_assert_not_null(d);
        memset(d, 0xab, 16);
        cr_expect_eq(shm_vring_peek(&p.cons, &rec), 0, "reserved is not published");
        shm_vring_commit(&p.prod, 9);
        cr_assert_eq(shm_vring_peek(&p.cons, &rec), 1);
        cr_expect_eq(rec.type, 9);
        cr_expect_eq(rec.len, 16);
        cr_expect_eq(((const uint8_t *)rec.data)[15], 0xab);
        free(p.mem);
}

Test(shm_vring, hides_the_padding_of_a_reserved_record_until_commit)
{
        struct vring_pair p;
        pair_init(&p, 256);
        for (uint64_t i = 0; i < 5; i++) {
                cr_assert_eq(write_seq(&p.prod, i, 24), 0);
                read_seq(&p.cons, i, 24);
        }
        struct shm_vring_rec rec;
        cr_assert_not_null(shm_vring_reserve(&p.prod, 100));
        cr_expect_eq(shm_vring_peek(&p.cons, &rec), 0);
        cr_expect_eq(atomic_load(&pair_hdr(&p)->tail), 160, "padding not consumed early");
        shm_vring_commit(&p.prod, 5);
        cr_expect_eq(shm_vring_peek(&p.cons, &rec), 1);
        free(p.mem);
}

Test(shm_vring, a_second_reserve_abandons_the_first)
{
        struct vring_pair p;
        pair_init(&p, 256);
        cr_assert_not_null(shm_vring_reserve(&p.prod, 50));
        uint8_t *d = shm_vring_reserve(&p.prod, 3);
        cr_assert_not_null(d);
        memcpy(d, "abc", 3);
        shm_vring_commit(&p.prod, 1);
        struct shm_vring_rec rec;
        cr_assert_eq(shm_vring_peek(&p.cons, &rec), 1);
        cr_expect_eq(rec.len, 3);
        cr_expect_eq(memcmp(rec.data, "abc", 3), 0);
        shm_vring_release(&p.cons);
        cr_expect_eq(shm_vring_peek(&p.cons, &rec), 0);
        free(p.mem);
}

/* The indexes start where the shared header says, and the peer writes it:
 * a record may end exactly at 2^64, where the free-running index wraps to
 * 0. Reserve, commit, peek and release must not take that end for "none"
 * (fuzz_agent_ring found the worker's release panicking on it). */
Test(shm_vring, a_record_ending_where_the_index_wraps_to_zero)
{
        struct vring_pair p;
        pair_init(&p, 256);
        uint64_t start = UINT64_MAX - 31;   /* 8-aligned: 2^64 - 32 */
        atomic_store(&pair_hdr(&p)->head, start);
        atomic_store(&pair_hdr(&p)->tail, start);
        struct shm_vring prod, cons;
        cr_assert_eq(shm_vring_attach(&prod, p.mem, p.len), 0);
        cr_assert_eq(shm_vring_attach(&cons, p.mem, p.len), 0);
        /* 24 bytes of payload and the 8-byte header: 32, up to 2^64. */
        cr_assert_eq(write_seq(&prod, 1, 24), 0);
        cr_assert_eq(prod.head, 0, "the head wrapped to 0");
        read_seq(&cons, 1, 24);
        cr_assert_eq(cons.tail, 0);
        cr_assert_eq(write_seq(&prod, 2, 8), 0);
        read_seq(&cons, 2, 8);
        struct shm_vring_rec rec;
        cr_expect_eq(shm_vring_peek(&cons, &rec), 0);
        free(p.mem);
}

Test(shm_vring, attach_rejects_bad_magic_and_version)
{
        struct vring_pair p;
        pair_init(&p, 256);
        struct shm_vring r;
        pair_hdr(&p)->magic = SHM_VRING_MAGIC ^ 1;
        cr_expect_eq(shm_vring_attach(&r, p.mem, p.len), -EPROTO);
        pair_hdr(&p)->magic = SHM_VRING_MAGIC;
        pair_hdr(&p)->version = SHM_VRING_VERSION + 1;
        cr_expect_eq(shm_vring_attach(&r, p.mem, p.len), -EPROTO);
        pair_hdr(&p)->version = SHM_VRING_VERSION;
        cr_expect_eq(shm_vring_attach(&r, p.mem, p.len), 0);
        free(p.mem);
}

Test(shm_vring, attach_rejects_bad_geometry)
{
        struct vring_pair p;
        pair_init(&p, 256);
        struct shm_vring r;
        pair_hdr(&p)->capacity = 200;
        cr_expect_eq(shm_vring_attach(&r, p.mem, p.len), -EINVAL);
        pair_hdr(&p)->capacity = 32;
        cr_expect_eq(shm_vring_attach(&r, p.mem, p.len), -EINVAL);
        pair_hdr(&p)->capacity = 256;
        cr_expect_eq(shm_vring_attach(&r, (uint8_t *)p.mem + 8, p.len - 8), -EINVAL);
        free(p.mem);
}

Test(shm_vring, attach_rejects_too_short_memory)
{
        struct vring_pair p;
        pair_init(&p, 256);
        struct shm_vring r;
        cr_expect_eq(shm_vring_attach(&r, p.mem, p.len - 8), -ENOSPC);
        cr_expect_eq(shm_vring_attach(&r, p.mem, sizeof(struct shm_vring_hdr) - 1), -EINVAL);
        free(p.mem);
}

Test(shm_vring, attach_rejects_impossible_indexes)
{
        struct vring_pair p;
        pair_init(&p, 256);
        struct shm_vring r;
        atomic_store(&pair_hdr(&p)->head, 264);
        cr_expect_eq(shm_vring_attach(&r, p.mem, p.len), -EPROTO, "head - tail > capacity");
        atomic_store(&pair_hdr(&p)->head, 12);
        cr_expect_eq(shm_vring_attach(&r, p.mem, p.len), -EPROTO, "misaligned head");
        atomic_store(&pair_hdr(&p)->head, 16);
        atomic_store(&pair_hdr(&p)->tail, 4);
        cr_expect_eq(shm_vring_attach(&r, p.mem, p.len), -EPROTO, "misaligned tail");
        atomic_store(&pair_hdr(&p)->tail, 24);
        cr_expect_eq(shm_vring_attach(&r, p.mem, p.len), -EPROTO, "tail ahead of head");
        free(p.mem);
}

Test(shm_vring, the_consumer_never_reads_head)
{
        struct vring_pair p;
        pair_init(&p, 256);
        struct shm_vring_rec rec;
        atomic_store(&pair_hdr(&p)->head, 264);
        cr_expect_eq(shm_vring_peek(&p.cons, &rec), 0, "a scribbled head publishes nothing");
        cr_assert_eq(write_seq(&p.prod, 1, 8), 0);
        atomic_store(&pair_hdr(&p)->head, 4);
        read_seq(&p.cons, 1, 8);
        free(p.mem);
}

Test(shm_vring, peek_reports_eproto_for_a_header_without_the_commit_bit)
{
        struct vring_pair p;
        pair_init(&p, 256);
        struct shm_vring_rec rec;
        atomic_store(&rec_hdr_at(&p, 0)->len, 8);
        cr_expect_eq(shm_vring_peek(&p.cons, &rec), -EPROTO);
        atomic_store(&rec_hdr_at(&p, 0)->len, 0);
        cr_expect_eq(shm_vring_peek(&p.cons, &rec), 0);
        free(p.mem);
}

Test(shm_vring, peek_reports_eproto_for_length_past_the_buffer)
{
        struct vring_pair p;
        pair_init(&p, 256);
        struct shm_vring_rec rec;
        cr_assert_eq(write_seq(&p.prod, 1, 8), 0);
        atomic_store(&rec_hdr_at(&p, 0)->len, UINT32_MAX);
        cr_expect_eq(shm_vring_peek(&p.cons, &rec), -EPROTO);
        atomic_store(&rec_hdr_at(&p, 0)->len, SHM_VRING_COMMITTED | 256);
        cr_expect_eq(shm_vring_peek(&p.cons, &rec), -EPROTO);
        free(p.mem);
}

Test(shm_vring, peek_reports_eproto_for_length_above_rec_max)
{
        struct vring_pair p;
        pair_init(&p, 256);
        struct shm_vring_rec rec;
        cr_assert_eq(write_seq(&p.prod, 1, 8), 0);
        /* 128 bytes end inside the data area but exceed rec_max (120). */
        atomic_store(&rec_hdr_at(&p, 0)->len, SHM_VRING_COMMITTED | 128);
        cr_expect_eq(shm_vring_peek(&p.cons, &rec), -EPROTO);
        free(p.mem);
}

Test(shm_vring, peek_reports_eproto_for_padding_short_of_the_end)
{
        struct vring_pair p;
        pair_init(&p, 256);
        struct shm_vring_rec rec;
        cr_assert_eq(write_seq(&p.prod, 1, 8), 0);
        atomic_store(&rec_hdr_at(&p, 0)->type, SHM_VRING_TYPE_PAD);
        cr_expect_eq(shm_vring_peek(&p.cons, &rec), -EPROTO);
        free(p.mem);
}

Test(shm_vring, peek_reports_eproto_for_padding_twice_in_a_row)
{
        struct vring_pair p;
        pair_init(&p, 256);
        struct shm_vring_rec rec;
        for (uint64_t i = 0; i < 5; i++) {
                cr_assert_eq(write_seq(&p.prod, i, 24), 0);
                read_seq(&p.cons, i, 24);
        }
        cr_assert_eq(write_seq(&p.prod, 5, 100), 0);
        /* Turn the record at offset 0 into a whole-buffer padding record:
         * it cannot fit below head after the first padding. */
        atomic_store(&rec_hdr_at(&p, 0)->len, SHM_VRING_COMMITTED | (256 - 8));
        atomic_store(&rec_hdr_at(&p, 0)->type, SHM_VRING_TYPE_PAD);
        cr_expect_eq(shm_vring_peek(&p.cons, &rec), -EPROTO);
        free(p.mem);
}

Test(shm_vring, reserve_reports_eproto_for_tail_ahead_of_head)
{
        struct vring_pair p;
        pair_init(&p, 256);
        for (uint64_t i = 0; i < 7; i++)
                cr_assert_eq(write_seq(&p.prod, i, 24), 0);
        cr_assert_eq(write_seq(&p.prod, 7, 16), 0);
        /* Full, so the producer must re-read tail and finds it corrupt. */
        atomic_store(&pair_hdr(&p)->tail, 512);
        cr_expect_null(shm_vring_reserve(&p.prod, 8));
        cr_expect_eq(p.prod.reserve_err, -EPROTO);
        cr_expect_eq(write_seq(&p.prod, 8, 8), -EPROTO, "the bad tail was not cached");
        atomic_store(&pair_hdr(&p)->tail, 32);
        cr_expect_eq(write_seq(&p.prod, 8, 8), 0, "repaired");
        free(p.mem);
}

Test(shm_vring, release_without_peek_is_a_bug, .signal = SIGABRT)
{
        struct vring_pair p;
        pair_init(&p, 256);
        shm_vring_release(&p.cons);
}

Test(shm_vring, commit_without_reserve_is_a_bug, .signal = SIGABRT)
{
        struct vring_pair p;
        pair_init(&p, 256);
        shm_vring_commit(&p.prod, 1);
}

Test(shm_vring, read_wait_times_out_when_empty)
{
        struct vring_pair p;
        pair_init(&p, 256);
        struct shm_vring_rec rec;
        uint64_t t0_ns = shm_clock_ns();
        cr_expect_eq(shm_vring_read_wait(&p.cons, &rec, 20 * 1000 * 1000), -ETIMEDOUT);
        cr_expect_geq(shm_clock_ns() - t0_ns, 20 * 1000 * 1000);
        cr_expect_eq(atomic_load(&pair_hdr(&p)->wake.sleepers), 0, "the sleeper withdrew");
        free(p.mem);
}

Test(shm_vring, read_wait_returns_a_ready_record_at_once)
{
        struct vring_pair p;
        pair_init(&p, 256);
        struct shm_vring_rec rec;
        cr_assert_eq(write_seq(&p.prod, 3, 5), 0);
        cr_expect_eq(shm_vring_read_wait(&p.cons, &rec, 0), 1);
        cr_expect_eq(rec.type, 3);
        free(p.mem);
}

static void *late_writer(void *arg)
{
        struct shm_vring *prod = arg;
        struct timespec ts = {.tv_nsec = 30 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (shm_vring_write(prod, 77, "late", 4) != 0)
                return (void *)1;
        shm_vring_notify(prod);
        return NULL;
}

Test(shm_vring, read_wait_wakes_on_commit_from_other_thread, .timeout = 10)
{
        struct vring_pair p;
        pair_init(&p, 256);
        struct shm_vring_rec rec;
        pthread_t t;
        uint64_t t0_ns = shm_clock_ns();

        cr_assert_eq(pthread_create(&t, NULL, late_writer, &p.prod), 0);
        cr_expect_eq(shm_vring_read_wait(&p.cons, &rec, 5000LL * 1000 * 1000), 1);
        cr_expect_eq(rec.type, 77);
        cr_expect_eq(memcmp(rec.data, "late", 4), 0);
        cr_expect_lt(shm_clock_ns() - t0_ns, 4000ull * 1000 * 1000, "woken, not timed out");
        void *rc;
        pthread_join(t, &rc);
        cr_expect_null(rc);
        free(p.mem);
}
