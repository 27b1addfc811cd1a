/* test_shm_mpsc.c - unit tests of the MPSC variable-length record ring
 * (shm/shm_mpsc.h): geometry and attach checks, empty, full, padding claimed
 * with the record at the wrap, uncommitted records holding back later ones,
 * zeroing of consumed bytes, corrupt indexes and headers, bursts, the
 * blocking read, and several producer threads and processes.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shm/shm_clock.h"
#include "shm/shm_mpsc.h"

/* A consumer view and one producer view on one ring. */
struct mpsc_pair {
        void *mem;
        size_t len;
        struct shm_mpsc cons;
        struct shm_mpsc prod;
};

static void *mem_alloc(size_t len)
{
        void *mem = aligned_alloc(SHM_CACHE_LINE, shm_align_up(len, SHM_CACHE_LINE));
        cr_assert_not_null(mem);
        memset(mem, 0, len);
        return mem;
}

static void pair_init(struct mpsc_pair *p, uint32_t capacity)
{
        p->len = shm_mpsc_bytes(capacity);
        cr_assert_neq(p->len, 0);
        p->mem = mem_alloc(p->len);
        cr_assert_eq(shm_mpsc_init(&p->cons, p->mem, p->len, capacity), 0);
        cr_assert_eq(shm_mpsc_attach(&p->prod, p->mem, p->len), 0);
}

static struct shm_mpsc_hdr *pair_hdr(struct mpsc_pair *p)
{
        return p->mem;
}

static struct shm_mpsc_rec_hdr *rec_hdr_at(struct mpsc_pair *p, uint64_t off)
{
        return (struct shm_mpsc_rec_hdr *)((uint8_t *)p->mem + sizeof(struct shm_mpsc_hdr) + off);
}

static uint8_t pattern(uint64_t seq, uint32_t i)
{
        return (uint8_t)(seq * 31 + i * 7 + 1);
}

static int write_seq(const struct shm_mpsc *r, uint64_t seq, uint32_t len)
{
        uint8_t buf[4096];
        cr_assert_leq(len, sizeof(buf));
        for (uint32_t i = 0; i < len; i++)
                buf[i] = pattern(seq, i);
        return shm_mpsc_write(r, (uint32_t)seq, buf, len);
}

static void read_seq(struct shm_mpsc *r, uint64_t seq, uint32_t len)
{
        struct shm_mpsc_rec rec;
        cr_assert_eq(shm_mpsc_peek(r, &rec), 1, "record %llu missing", (unsigned long long)seq);
        cr_assert_eq(rec.type, (uint32_t)seq);
        cr_assert_eq(rec.len, len);
        cr_assert_eq((uintptr_t)rec.data % 8, 0);
        const uint8_t *d = rec.data;
        for (uint32_t i = 0; i < len; i++)
                cr_assert_eq(d[i], pattern(seq, i), "record %llu byte %u",
                             (unsigned long long)seq, i);
        shm_mpsc_release(r);
}

/* Writes and reads five 32-byte records: head = tail = 160 afterwards. */
static void advance_to_160(struct mpsc_pair *p)
{
        for (uint64_t i = 0; i < 5; i++) {
                cr_assert_eq(write_seq(&p->prod, i, 24), 0);
                read_seq(&p->cons, i, 24);
        }
}

Test(shm_mpsc, rejects_non_power_of_two_capacity)
{
        struct shm_mpsc r;
        void *mem = mem_alloc(1 << 16);
        cr_expect_eq(shm_mpsc_init(&r, mem, 1 << 16, 1000), -EINVAL);
        cr_expect_eq(shm_mpsc_init(&r, mem, 1 << 16, 0), -EINVAL);
        cr_expect_eq(shm_mpsc_bytes(1000), 0);
        free(mem);
}

Test(shm_mpsc, rejects_capacity_out_of_range)
{
        struct shm_mpsc r;
        void *mem = mem_alloc(1 << 16);
        cr_expect_eq(shm_mpsc_init(&r, mem, 1 << 16, SHM_MPSC_CAPACITY_MIN / 2), -EINVAL);
        cr_expect_eq(shm_mpsc_init(&r, mem, 1 << 16, SHM_MPSC_CAPACITY_MAX * 2u), -EINVAL);
        cr_expect_eq(shm_mpsc_init(&r, mem, 1 << 16, SHM_MPSC_CAPACITY_MIN), 0);
        cr_expect_eq(shm_mpsc_rec_max(&r), SHM_MPSC_CAPACITY_MIN / 2 - 8);
        free(mem);
}

Test(shm_mpsc, rejects_unaligned_or_short_memory)
{
        struct shm_mpsc r;
        uint8_t *mem = mem_alloc(4096);
        size_t len = shm_mpsc_bytes(256);
        cr_expect_eq(shm_mpsc_init(&r, mem + 8, 4000, 256), -EINVAL);
        cr_expect_eq(shm_mpsc_init(&r, mem, len - 1, 256), -ENOSPC);
        free(mem);
}

Test(shm_mpsc, init_zeroes_the_data_area)
{
        size_t len = shm_mpsc_bytes(256);
        uint8_t *mem = mem_alloc(len);
        memset(mem, 0xff, len);
        struct shm_mpsc r;
        cr_assert_eq(shm_mpsc_init(&r, mem, len, 256), 0);
        for (size_t i = sizeof(struct shm_mpsc_hdr); i < len; i++)
                cr_assert_eq(mem[i], 0, "byte %zu", i);
        struct shm_mpsc_rec rec;
        cr_expect_eq(shm_mpsc_peek(&r, &rec), 0);
        free(mem);
}

Test(shm_mpsc, round_trips_type_length_and_payload)
{
        struct mpsc_pair p;
        pair_init(&p, 1024);
        uint32_t lens[] = {0, 1, 7, 8, 13, 100};
        for (unsigned i = 0; i < 6; i++)
                cr_assert_eq(write_seq(&p.prod, i, lens[i]), 0);
        for (unsigned i = 0; i < 6; i++)
                read_seq(&p.cons, i, lens[i]);
        struct shm_mpsc_rec rec;
        cr_expect_eq(shm_mpsc_peek(&p.cons, &rec), 0);
        free(p.mem);
}

Test(shm_mpsc, rejects_records_above_rec_max_and_the_padding_type)
{
        struct mpsc_pair p;
        pair_init(&p, 256);
        struct shm_mpsc_resv resv;
        cr_assert_eq(shm_mpsc_rec_max(&p.prod), 120);
        cr_expect_eq(write_seq(&p.prod, 1, 121), -EMSGSIZE);
        cr_expect_eq(shm_mpsc_reserve(&p.prod, UINT32_MAX, &resv), -EMSGSIZE);
        cr_expect_eq(shm_mpsc_write(&p.prod, SHM_MPSC_TYPE_PAD, "x", 1), -EINVAL);
        cr_expect_eq(write_seq(&p.prod, 1, 120), 0);
        read_seq(&p.cons, 1, 120);
        free(p.mem);
}

Test(shm_mpsc, fills_then_reports_nobufs_and_recovers)
{
        struct mpsc_pair p;
        pair_init(&p, 256);
        for (uint64_t i = 0; i < 8; i++)
                cr_assert_eq(write_seq(&p.prod, i, 24), 0);
        cr_expect_eq(write_seq(&p.prod, 8, 0), -ENOBUFS);
        read_seq(&p.cons, 0, 24);
        cr_expect_eq(write_seq(&p.prod, 8, 24), 0, "room again after one release");
        cr_expect_eq(write_seq(&p.prod, 9, 0), -ENOBUFS);
        for (uint64_t i = 1; i < 9; i++)
                read_seq(&p.cons, i, 24);
        free(p.mem);
}

Test(shm_mpsc, claims_the_padding_with_the_record_at_the_wrap)
{
        struct mpsc_pair p;
        pair_init(&p, 256);
        advance_to_160(&p);
        struct shm_mpsc_resv resv;
        cr_assert_eq(shm_mpsc_reserve(&p.prod, 100, &resv), 0);
        cr_expect_eq(atomic_load(&pair_hdr(&p)->head), 160 + 96 + 112, "one claim for both");
        cr_expect_eq(resv.off, 0);
        cr_expect_eq(resv.data, p.prod.data + 8);
        struct shm_mpsc_rec_hdr *pad = rec_hdr_at(&p, 160);
        cr_expect_eq(atomic_load(&pad->type), SHM_MPSC_TYPE_PAD);
        cr_expect_eq(atomic_load(&pad->len_word), (96 - 8) | SHM_MPSC_COMMITTED,
                     "padding is committed at once");

        struct shm_mpsc_rec rec;
        cr_expect_eq(shm_mpsc_peek(&p.cons, &rec), 0, "the record is not committed yet");
        cr_expect_eq(atomic_load(&pair_hdr(&p)->tail), 256, "but the padding is consumed");
        cr_expect_eq(atomic_load(&pad->len_word), 0, "and zeroed");
        memset(resv.data, 0x5a, 100);
        shm_mpsc_commit(&p.prod, &resv, 5);
        cr_assert_eq(shm_mpsc_peek(&p.cons, &rec), 1);
        cr_expect_eq(rec.type, 5);
        cr_expect_eq(rec.len, 100);
        cr_expect_eq(rec.data, p.cons.data + 8);
        shm_mpsc_release(&p.cons);
        cr_expect_eq(atomic_load(&pair_hdr(&p)->tail), 160 + 96 + 112);
        free(p.mem);
}

Test(shm_mpsc, an_uncommitted_record_holds_back_later_ones)
{
        struct mpsc_pair p;
        pair_init(&p, 256);
        struct shm_mpsc_resv first;
        struct shm_mpsc_rec rec;
        cr_assert_eq(shm_mpsc_reserve(&p.prod, 4, &first), 0);
        cr_assert_eq(write_seq(&p.prod, 2, 8), 0);
        cr_expect_eq(shm_mpsc_peek(&p.cons, &rec), 0, "half-written record is invisible");
        cr_expect_eq(shm_mpsc_peek(&p.cons, &rec), 0);
        memcpy(first.data, "\x01\x02\x03\x04", 4);
        shm_mpsc_commit(&p.prod, &first, 1);
        cr_assert_eq(shm_mpsc_peek(&p.cons, &rec), 1);
        cr_expect_eq(rec.type, 1, "claim order, not commit order");
        shm_mpsc_release(&p.cons);
        read_seq(&p.cons, 2, 8);
        free(p.mem);
}

Test(shm_mpsc, zeroes_consumed_records)
{
        struct mpsc_pair p;
        pair_init(&p, 256);
        cr_assert_eq(write_seq(&p.prod, 1, 21), 0);
        read_seq(&p.cons, 1, 21);
        for (unsigned i = 0; i < 32; i++)
                cr_assert_eq(p.cons.data[i], 0, "byte %u", i);
        free(p.mem);
}

Test(shm_mpsc, never_takes_an_old_payload_for_a_header)
{
        struct mpsc_pair p;
        pair_init(&p, 256);
        /* Lap 1: a payload made of words that look like committed headers. */
        uint32_t evil[30];
        for (unsigned i = 0; i < 30; i++)
                evil[i] = i % 2 == 0 ? (8 | SHM_MPSC_COMMITTED) : 3;
        cr_assert_eq(shm_mpsc_write(&p.prod, 1, evil, sizeof(evil)), 0);
        struct shm_mpsc_rec rec;
        cr_assert_eq(shm_mpsc_peek(&p.cons, &rec), 1);
        shm_mpsc_release(&p.cons);
        cr_assert_eq(write_seq(&p.prod, 2, 120), 0);
        read_seq(&p.cons, 2, 120);
        /* Lap 2: a 16-byte record, then a header inside the old payload. */
        cr_assert_eq(write_seq(&p.prod, 3, 8), 0);
        read_seq(&p.cons, 3, 8);
        struct shm_mpsc_resv resv;
        cr_assert_eq(shm_mpsc_reserve(&p.prod, 8, &resv), 0);
        cr_assert_eq(resv.off, 16);
        cr_expect_eq(shm_mpsc_peek(&p.cons, &rec), 0, "old payload is not a header");
        shm_mpsc_commit(&p.prod, &resv, 4);
        cr_expect_eq(shm_mpsc_peek(&p.cons, &rec), 1);
        cr_expect_eq(rec.type, 4);
        free(p.mem);
}

Test(shm_mpsc, attach_rejects_bad_magic_version_and_geometry)
{
        struct mpsc_pair p;
        pair_init(&p, 256);
        struct shm_mpsc r;
        pair_hdr(&p)->magic = SHM_MPSC_MAGIC ^ 1;
        cr_expect_eq(shm_mpsc_attach(&r, p.mem, p.len), -EPROTO);
        pair_hdr(&p)->magic = SHM_MPSC_MAGIC;
        pair_hdr(&p)->version = SHM_MPSC_VERSION + 1;
        cr_expect_eq(shm_mpsc_attach(&r, p.mem, p.len), -EPROTO);
        pair_hdr(&p)->version = SHM_MPSC_VERSION;
        pair_hdr(&p)->capacity = 200;
        cr_expect_eq(shm_mpsc_attach(&r, p.mem, p.len), -EINVAL);
        pair_hdr(&p)->capacity = 256;
        cr_expect_eq(shm_mpsc_attach(&r, (uint8_t *)p.mem + 8, p.len - 8), -EINVAL);
        cr_expect_eq(shm_mpsc_attach(&r, p.mem, p.len), 0);
        free(p.mem);
}

Test(shm_mpsc, attach_rejects_too_short_memory)
{
        struct mpsc_pair p;
        pair_init(&p, 256);
        struct shm_mpsc r;
        cr_expect_eq(shm_mpsc_attach(&r, p.mem, p.len - 8), -ENOSPC);
        cr_expect_eq(shm_mpsc_attach(&r, p.mem, sizeof(struct shm_mpsc_hdr) - 1), -EINVAL);
        free(p.mem);
}

Test(shm_mpsc, attach_rejects_impossible_indexes)
{
        struct mpsc_pair p;
        pair_init(&p, 256);
        struct shm_mpsc r;
        atomic_store(&pair_hdr(&p)->head, 264);
        cr_expect_eq(shm_mpsc_attach(&r, p.mem, p.len), -EPROTO, "head - tail > capacity");
        atomic_store(&pair_hdr(&p)->head, 12);
        cr_expect_eq(shm_mpsc_attach(&r, p.mem, p.len), -EPROTO, "misaligned head");
        atomic_store(&pair_hdr(&p)->head, 16);
        atomic_store(&pair_hdr(&p)->tail, 24);
        cr_expect_eq(shm_mpsc_attach(&r, p.mem, p.len), -EPROTO, "tail ahead of head");
        free(p.mem);
}

Test(shm_mpsc, peek_reports_eproto_for_a_length_word_without_commit_bit)
{
        struct mpsc_pair p;
        pair_init(&p, 256);
        struct shm_mpsc_rec rec;
        atomic_store(&pair_hdr(&p)->head, 16);
        atomic_store(&rec_hdr_at(&p, 0)->len_word, 8);
        cr_expect_eq(shm_mpsc_peek(&p.cons, &rec), -EPROTO);
        free(p.mem);
}

Test(shm_mpsc, peek_reports_eproto_for_length_past_the_buffer)
{
        struct mpsc_pair p;
        pair_init(&p, 256);
        struct shm_mpsc_rec rec;
        cr_assert_eq(write_seq(&p.prod, 1, 8), 0);
        atomic_store(&rec_hdr_at(&p, 0)->len_word, 256 | SHM_MPSC_COMMITTED);
        cr_expect_eq(shm_mpsc_peek(&p.cons, &rec), -EPROTO);
        atomic_store(&rec_hdr_at(&p, 0)->len_word, UINT32_MAX);
        cr_expect_eq(shm_mpsc_peek(&p.cons, &rec), -EPROTO);
        free(p.mem);
}

Test(shm_mpsc, peek_reports_eproto_for_a_record_past_head)
{
        struct mpsc_pair p;
        pair_init(&p, 256);
        struct shm_mpsc_rec rec;
        /* A committed-looking header nobody claimed: head is still 0. */
        atomic_store(&rec_hdr_at(&p, 0)->type, 1);
        atomic_store(&rec_hdr_at(&p, 0)->len_word, 8 | SHM_MPSC_COMMITTED);
        cr_expect_eq(shm_mpsc_peek(&p.cons, &rec), -EPROTO);
        /* A head too far ahead is as bad. */
        atomic_store(&pair_hdr(&p)->head, 1024);
        cr_expect_eq(shm_mpsc_peek(&p.cons, &rec), -EPROTO);
        atomic_store(&pair_hdr(&p)->head, 16);
        cr_expect_eq(shm_mpsc_peek(&p.cons, &rec), 1, "fine once claimed");
        free(p.mem);
}

Test(shm_mpsc, peek_reports_eproto_for_padding_short_of_the_end)
{
        struct mpsc_pair p;
        pair_init(&p, 256);
        struct shm_mpsc_rec rec;
        cr_assert_eq(write_seq(&p.prod, 1, 8), 0);
        atomic_store(&rec_hdr_at(&p, 0)->type, SHM_MPSC_TYPE_PAD);
        cr_expect_eq(shm_mpsc_peek(&p.cons, &rec), -EPROTO);
        free(p.mem);
}

Test(shm_mpsc, reserve_reports_eproto_for_impossible_indexes)
{
        struct mpsc_pair p;
        pair_init(&p, 256);
        struct shm_mpsc_resv resv;
        atomic_store(&pair_hdr(&p)->head, 264);
        cr_expect_eq(shm_mpsc_reserve(&p.prod, 8, &resv), -EPROTO, "head past tail + capacity");
        atomic_store(&pair_hdr(&p)->head, 12);
        cr_expect_eq(shm_mpsc_reserve(&p.prod, 8, &resv), -EPROTO, "misaligned head");
        atomic_store(&pair_hdr(&p)->head, 16);
        atomic_store(&pair_hdr(&p)->tail, 64);
        cr_expect_eq(shm_mpsc_reserve(&p.prod, 8, &resv), -EPROTO, "tail ahead of head");
        cr_expect_eq(atomic_load(&pair_hdr(&p)->head), 16, "nothing claimed");
        free(p.mem);
}

Test(shm_mpsc, release_without_peek_is_a_bug, .signal = SIGABRT)
{
        struct mpsc_pair p;
        pair_init(&p, 256);
        shm_mpsc_release(&p.cons);
}

struct burst_log {
        uint32_t types[16];
        unsigned n;
};

static void log_rec(void *arg, const struct shm_mpsc_rec *rec)
{
        struct burst_log *log = arg;
        if (log->n < 16)
                log->types[log->n] = rec->type;
        log->n++;
}

Test(shm_mpsc, read_burst_hands_out_at_most_max_in_order)
{
        struct mpsc_pair p;
        pair_init(&p, 1024);
        struct burst_log log = {0};
        for (uint64_t i = 0; i < 10; i++)
                cr_assert_eq(write_seq(&p.prod, i, (uint32_t)i), 0);
        cr_expect_eq(shm_mpsc_read_burst(&p.cons, log_rec, &log, 4), 4);
        cr_expect_eq(atomic_load(&pair_hdr(&p)->tail), p.cons.tail, "tail published");
        cr_expect_eq(shm_mpsc_read_burst(&p.cons, log_rec, &log, 16), 6);
        cr_expect_eq(shm_mpsc_read_burst(&p.cons, log_rec, &log, 16), 0);
        cr_assert_eq(log.n, 10);
        for (unsigned i = 0; i < 10; i++)
                cr_expect_eq(log.types[i], i);
        free(p.mem);
}

Test(shm_mpsc, read_burst_stops_before_a_corrupt_record)
{
        struct mpsc_pair p;
        pair_init(&p, 256);
        struct burst_log log = {0};
        cr_assert_eq(write_seq(&p.prod, 0, 8), 0);
        cr_assert_eq(write_seq(&p.prod, 1, 8), 0);
        atomic_store(&rec_hdr_at(&p, 16)->len_word, 5);
        cr_expect_eq(shm_mpsc_read_burst(&p.cons, log_rec, &log, 16), 1);
        cr_expect_eq(shm_mpsc_read_burst(&p.cons, log_rec, &log, 16), -EPROTO);
        cr_expect_eq(log.n, 1);
        free(p.mem);
}

Test(shm_mpsc, read_wait_times_out_when_nothing_is_committed)
{
        struct mpsc_pair p;
        pair_init(&p, 256);
        struct shm_mpsc_rec rec;
        struct shm_mpsc_resv resv;
        cr_assert_eq(shm_mpsc_reserve(&p.prod, 8, &resv), 0);
        uint64_t t0_ns = shm_clock_ns();
        cr_expect_eq(shm_mpsc_read_wait(&p.cons, &rec, 20 * 1000 * 1000), -ETIMEDOUT);
        cr_expect_geq(shm_clock_ns() - t0_ns, 20 * 1000 * 1000);
        cr_expect_eq(atomic_load(&pair_hdr(&p)->wake.sleepers), 0, "the sleeper withdrew");
        free(p.mem);
}

static void *late_writer(void *arg)
{
        const struct shm_mpsc *prod = arg;
        struct timespec ts = {.tv_nsec = 30 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (shm_mpsc_write(prod, 77, "late", 4) != 0)
                return (void *)1;
        shm_mpsc_notify(prod);
        return NULL;
}

Test(shm_mpsc, read_wait_wakes_on_commit_from_other_thread, .timeout = 10)
{
        struct mpsc_pair p;
        pair_init(&p, 256);
        struct shm_mpsc_rec rec;
        pthread_t t;
        uint64_t t0_ns = shm_clock_ns();

        cr_assert_eq(pthread_create(&t, NULL, late_writer, &p.prod), 0);
        cr_expect_eq(shm_mpsc_read_wait(&p.cons, &rec, 5000LL * 1000 * 1000), 1);
        cr_expect_eq(rec.type, 77);
        cr_expect_eq(memcmp(rec.data, "late", 4), 0);
        cr_expect_lt(shm_clock_ns() - t0_ns, 4000ull * 1000 * 1000, "woken, not timed out");
        void *rc;
        pthread_join(t, &rc);
        cr_expect_null(rc);
        free(p.mem);
}

/* Several producers, each writing records {producer, seq, filler...} of
 * varying length; the consumer checks per-producer order and totals. */
#define MP_RECORDS 40000u
#define MP_PRODUCERS_MAX 4u

struct mp_msg {
        uint32_t producer;
        uint32_t seq;
};

struct mp_producer {
        const struct shm_mpsc *ring;
        uint32_t id;
        int err;
};

static uint32_t mp_len(uint32_t seq)
{
        return (uint32_t)sizeof(struct mp_msg) + (seq * 2654435761u) % 57;
}

static int mp_produce(const struct shm_mpsc *ring, uint32_t id)
{
        uint8_t buf[128];
        for (uint32_t seq = 0; seq < MP_RECORDS; seq++) {
                struct mp_msg m = {.producer = id, .seq = seq};
                uint32_t len = mp_len(seq);
                memset(buf, (int)(seq & 0xff), len);
                memcpy(buf, &m, sizeof(m));
                int rc;
                while ((rc = shm_mpsc_write(ring, id, buf, len)) == -ENOBUFS || rc == -EBUSY)
                        sched_yield();
                if (rc != 0)
                        return rc;
                shm_mpsc_notify(ring);
        }
        return 0;
}

static void *mp_thread(void *arg)
{
        struct mp_producer *p = arg;
        p->err = mp_produce(p->ring, p->id);
        return NULL;
}

struct mp_check {
        uint32_t next[MP_PRODUCERS_MAX];
        uint64_t total;
        unsigned bad;
};

static void mp_check_rec(void *arg, const struct shm_mpsc_rec *rec)
{
        struct mp_check *c = arg;
        struct mp_msg m;
        memcpy(&m, rec->data, sizeof(m));
        const uint8_t *d = rec->data;
        bool ok = m.producer < MP_PRODUCERS_MAX && m.producer == rec->type &&
                  m.seq == c->next[m.producer] && rec->len == mp_len(m.seq);
        for (uint32_t i = sizeof(m); ok && i < rec->len; i++)
                ok = d[i] == (uint8_t)(m.seq & 0xff);
        if (!ok) {
                c->bad++;
                return;
        }
        c->next[m.producer]++;
        c->total++;
}

/* Consumes until every producer's MP_RECORDS arrived, or an error. */
static void mp_consume(struct shm_mpsc *cons, unsigned producers, struct mp_check *c)
{
        while (c->total < (uint64_t)producers * MP_RECORDS && c->bad == 0) {
                int n = shm_mpsc_read_burst(cons, mp_check_rec, c, 64);
                cr_assert_geq(n, 0);
                if (n == 0) {
                        struct shm_mpsc_rec rec;
                        int rc = shm_mpsc_read_wait(cons, &rec, 2000LL * 1000 * 1000);
                        cr_assert_eq(rc, 1, "stalled: %d", rc);
                }
        }
        cr_assert_eq(c->bad, 0, "records out of order or damaged");
        for (unsigned i = 0; i < producers; i++)
                cr_expect_eq(c->next[i], MP_RECORDS, "producer %u", i);
}

Test(shm_mpsc, keeps_per_producer_order_with_four_threads, .timeout = 30)
{
        struct mpsc_pair p;
        pair_init(&p, 4096);
        struct mp_producer prods[4];
        pthread_t t[4];
        struct mp_check check = {0};

        for (uint32_t i = 0; i < 4; i++) {
                /* One shared producer view: producer calls only read it. */
                prods[i] = (struct mp_producer){.ring = &p.prod, .id = i};
                cr_assert_eq(pthread_create(&t[i], NULL, mp_thread, &prods[i]), 0);
        }
        mp_consume(&p.cons, 4, &check);
        for (unsigned i = 0; i < 4; i++) {
                pthread_join(t[i], NULL);
                cr_expect_eq(prods[i].err, 0, "producer %u: %d", i, prods[i].err);
        }
        cr_expect_eq(shm_mpsc_read_burst(&p.cons, mp_check_rec, &check, 64), 0);
        free(p.mem);
}

Test(shm_mpsc, keeps_per_producer_order_with_two_processes, .timeout = 30)
{
        size_t len = shm_mpsc_bytes(4096);
        void *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        cr_assert_neq(mem, MAP_FAILED);
        struct shm_mpsc cons;
        cr_assert_eq(shm_mpsc_init(&cons, mem, len, 4096), 0);
        pid_t pids[2];
        for (uint32_t i = 0; i < 2; i++) {
                pids[i] = fork();
                cr_assert_geq(pids[i], 0);
                if (pids[i] == 0) {
                        struct shm_mpsc prod;
                        if (shm_mpsc_attach(&prod, mem, len) != 0)
                                _exit(2);
                        _exit(mp_produce(&prod, i) == 0 ? 0 : 1);
                }
        }
        struct mp_check check = {0};
        mp_consume(&cons, 2, &check);
        for (unsigned i = 0; i < 2; i++) {
                int status;
                cr_assert_eq(waitpid(pids[i], &status, 0), pids[i]);
                cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "producer %u", i);
        }
        munmap(mem, len);
}

/* A consumer killed inside a release (after zeroing, before moving tail)
 * must not leave the ring waiting for good on the zeroed bytes: the next
 * consumer finishes the release from its journal. */
Test(shm_mpsc, recover_finishes_a_release_cut_short_by_a_crash)
{
        size_t len = shm_mpsc_bytes(4096);
        void *mem = aligned_alloc(64, len);
        struct shm_mpsc prod, dead, next;
        struct shm_mpsc_rec rec;
        cr_assert_eq(shm_mpsc_init(&prod, mem, len, 4096), 0);
        cr_assert_eq(shm_mpsc_attach(&dead, mem, len), 0);
        cr_assert_eq(shm_mpsc_write(&prod, 7, "first", 5), 0);
        cr_assert_eq(shm_mpsc_peek(&dead, &rec), 1);
        /* What the dead consumer did of its release: the journal and the
         * zeroing, not the tail. */
        uint64_t tail = atomic_load(&dead.hdr->tail);
        uint64_t end = tail + 8 + 8;
        atomic_store(&dead.hdr->release_to, end);
        memset(dead.data, 0, end - tail);
        cr_assert_eq(shm_mpsc_write(&prod, 8, "second", 6), 0);

        cr_assert_eq(shm_mpsc_attach(&next, mem, len), 0);
        cr_assert_eq(shm_mpsc_peek(&next, &rec), 0, "without recovery it waits for good");
        cr_assert_eq(shm_mpsc_recover(&next), 1);
        cr_assert_eq(shm_mpsc_peek(&next, &rec), 1, "the ring moves again");
        cr_assert_eq(rec.type, 8);
        cr_assert_eq(rec.len, 6);
        shm_mpsc_release(&next);
        cr_assert_eq(shm_mpsc_recover(&next), 0, "nothing left to finish");
        atomic_store(&next.hdr->release_to, atomic_load(&next.hdr->tail) + 4096 * 2);
        cr_assert_eq(shm_mpsc_recover(&next), -EPROTO, "an impossible journal is refused");
        free(mem);
}
