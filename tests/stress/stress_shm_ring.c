/* stress_shm_ring.c - two-thread stress of the shared-memory rings (suite
 * stress): 100 M 8-byte items through the SPSC shm_ring in bursts of
 * varying size, 10 M records of random lengths through shm_vring, and 10 M
 * records from three producer threads through shm_mpsc. Each run checks
 * order and a checksum at the end; the consumers of vring and mpsc sleep on
 * the wake word when idle, so the eventcount is stressed too.
 *
 *      meson test -C build --suite stress
 *      build/tests/stress_shm_ring --jobs 1 --verbose   # one binary, timings
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "shm/shm_clock.h"
#include "shm/shm_mpsc.h"
#include "shm/shm_ring.h"
#include "shm/shm_vring.h"

/* Spins this many polls before yielding or sleeping: long enough to ride
 * out a short gap, short enough not to starve the peer on two cores. */
#define SPIN_POLLS 256

static void *mem_alloc(size_t len)
{
        void *mem = aligned_alloc(SHM_CACHE_LINE, shm_align_up(len, SHM_CACHE_LINE));
        cr_assert_not_null(mem);
        memset(mem, 0, len);
        return mem;
}

/* splitmix64: the item for sequence number i, and a cheap random source. */
static uint64_t mix64(uint64_t x)
{
        x += 0x9e3779b97f4a7c15ull;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
        return x ^ (x >> 31);
}

static void report(const char *what, uint64_t n, uint64_t t0_ns)
{
        double s = (double)(shm_clock_ns() - t0_ns) / 1e9;
        cr_log_info("%s: %llu in %.2f s (%.1f M/s)", what, (unsigned long long)n, s,
                    (double)n / s / 1e6);
}

/* --- SPSC fixed-slot ring -------------------------------------------- */

#define RING_ITEMS 100000000ull
#define RING_BURST_MAX 64u

struct ring_side {
        struct shm_ring ring;
        uint64_t sum;
        int err;
};

static void *ring_producer(void *arg)
{
        struct ring_side *s = arg;
        uint64_t items[RING_BURST_MAX], rng = 1, seq = 0;

        while (seq < RING_ITEMS) {
                rng = mix64(rng);
                unsigned n = 1 + (unsigned)(rng % RING_BURST_MAX);
                if (n > RING_ITEMS - seq)
                        n = (unsigned)(RING_ITEMS - seq);
                for (unsigned i = 0; i < n; i++)
                        items[i] = mix64(seq + i);
                unsigned done = 0;
                for (unsigned spins = 0; done < n; spins++) {
                        int put = shm_ring_enqueue_burst(&s->ring, items + done, n - done);
                        if (put < 0) {
                                s->err = put;
                                return NULL;
                        }
                        done += (unsigned)put;
                        if (put == 0 && spins % SPIN_POLLS == SPIN_POLLS - 1)
                                sched_yield();
                }
                for (unsigned i = 0; i < n; i++)
                        s->sum += items[i];
                seq += n;
        }
        return NULL;
}

Test(shm_ring, stress_100m_items_between_two_threads, .timeout = 240)
{
        size_t len = shm_ring_bytes(4096, 8);
        void *mem = mem_alloc(len);
        struct ring_side prod = {0}, cons = {0};
        cr_assert_eq(shm_ring_init(&prod.ring, mem, len, 4096, 8), 0);
        cr_assert_eq(shm_ring_attach(&cons.ring, mem, len), 0);
        pthread_t t;
        uint64_t t0_ns = shm_clock_ns();
        cr_assert_eq(pthread_create(&t, NULL, ring_producer, &prod), 0);

        uint64_t items[RING_BURST_MAX], rng = 2, seq = 0, bad = 0;
        for (unsigned spins = 0; seq < RING_ITEMS && bad == 0; spins++) {
                rng = mix64(rng);
                unsigned want = 1 + (unsigned)(rng % RING_BURST_MAX);
                int got = shm_ring_dequeue_burst(&cons.ring, items, want);
                cr_assert_geq(got, 0);
                if (got == 0 && spins % SPIN_POLLS == SPIN_POLLS - 1)
                        sched_yield();
                for (int i = 0; i < got; i++) {
                        bad += items[i] != mix64(seq + (uint64_t)i);
                        cons.sum += items[i];
                }
                seq += (uint64_t)got;
        }
        cr_assert_eq(bad, 0, "item out of order near %llu", (unsigned long long)seq);
        pthread_join(t, NULL);
        report("shm_ring items", seq, t0_ns);
        cr_expect_eq(prod.err, 0);
        cr_expect_eq(seq, RING_ITEMS);
        cr_expect_eq(cons.sum, prod.sum, "checksum");
        cr_expect_eq(shm_ring_count(&cons.ring), 0);
        free(mem);
}

/* --- Records of random lengths --------------------------------------- */

#define REC_COUNT 10000000u
#define REC_LEN_MAX 256u

/* Length and payload of record seq are functions of seq, so the consumer
 * checks both without being told. The first 8 bytes hold seq itself. */
static uint32_t rec_len(uint64_t seq)
{
        return 8 + (uint32_t)(mix64(seq) % (REC_LEN_MAX - 8 + 1));
}

static void rec_fill(uint8_t *d, uint64_t seq, uint32_t len)
{
        memcpy(d, &seq, 8);
        memset(d + 8, (int)(seq & 0xff), len - 8);
}

/* Returns a checksum word for a well-formed record of seq, else 0. */
static uint64_t rec_check(const uint8_t *d, uint32_t len, uint64_t seq)
{
        uint64_t got;
        if (len != rec_len(seq))
                return 0;
        memcpy(&got, d, 8);
        if (got != seq)
                return 0;
        for (uint32_t i = 8; i < len; i++)
                if (d[i] != (uint8_t)(seq & 0xff))
                        return 0;
        return mix64(seq) | 1;
}

struct vring_side {
        struct shm_vring ring;
        uint64_t sum;
        int err;
};

static void *vring_producer(void *arg)
{
        struct vring_side *s = arg;

        for (uint64_t seq = 0; seq < REC_COUNT; seq++) {
                uint32_t len = rec_len(seq);
                uint8_t *d;
                for (unsigned spins = 1; (d = shm_vring_reserve(&s->ring, len)) == NULL; spins++) {
                        if (s->ring.reserve_err != -ENOBUFS) {
                                s->err = s->ring.reserve_err;
                                return NULL;
                        }
                        if (spins % SPIN_POLLS == 0)
                                sched_yield();
                }
                rec_fill(d, seq, len);
                shm_vring_commit(&s->ring, (uint32_t)seq);
                shm_vring_notify(&s->ring);
                s->sum += mix64(seq) | 1;
        }
        return NULL;
}

/* Polls a while, then sleeps on the wake word: the idle strategy of
 * ../shared/STYLE.md, "The worker loop". */
static int vring_next(struct shm_vring *r, struct shm_vring_rec *rec)
{
        for (unsigned spins = 0; spins < SPIN_POLLS; spins++) {
                int rc = shm_vring_peek(r, rec);
                if (rc != 0)
                        return rc;
                shm_cpu_relax();
        }
        return shm_vring_read_wait(r, rec, 2000LL * 1000 * 1000);
}

Test(shm_vring, stress_10m_records_between_two_threads, .timeout = 240)
{
        size_t len = shm_vring_bytes(1 << 16);
        void *mem = mem_alloc(len);
        struct vring_side prod = {0}, cons = {0};
        cr_assert_eq(shm_vring_init(&prod.ring, mem, len, 1 << 16), 0);
        cr_assert_eq(shm_vring_attach(&cons.ring, mem, len), 0);
        pthread_t t;
        uint64_t t0_ns = shm_clock_ns(), seq;
        cr_assert_eq(pthread_create(&t, NULL, vring_producer, &prod), 0);

        for (seq = 0; seq < REC_COUNT; seq++) {
                struct shm_vring_rec rec;
                int rc = vring_next(&cons.ring, &rec);
                cr_assert_eq(rc, 1, "record %llu: %d", (unsigned long long)seq, rc);
                uint64_t word = rec_check(rec.data, rec.len, seq);
                cr_assert_neq(word, 0, "record %llu damaged or out of order",
                              (unsigned long long)seq);
                cr_assert_eq(rec.type, (uint32_t)seq);
                cons.sum += word;
                shm_vring_release(&cons.ring);
        }
        pthread_join(t, NULL);
        report("shm_vring records", seq, t0_ns);
        cr_expect_eq(prod.err, 0);
        cr_expect_eq(cons.sum, prod.sum, "checksum");
        struct shm_vring_rec rec;
        cr_expect_eq(shm_vring_peek(&cons.ring, &rec), 0);
        free(mem);
}

/* --- MPSC: three producer threads ------------------------------------ */

#define MPSC_PRODUCERS 3u

struct mpsc_producer {
        const struct shm_mpsc *ring;
        uint32_t id;
        uint64_t count;
        uint64_t sum;
        int err;
};

/* Producer id writes the sequence numbers id, id + P, id + 2P, ... so all
 * records together are 0..REC_COUNT-1 and each carries its own check. */
static void *mpsc_producer(void *arg)
{
        struct mpsc_producer *p = arg;

        for (uint64_t seq = p->id; seq < REC_COUNT; seq += MPSC_PRODUCERS) {
                uint32_t len = rec_len(seq);
                struct shm_mpsc_resv resv;
                int rc;
                for (unsigned spins = 1;
                     (rc = shm_mpsc_reserve(p->ring, len, &resv)) == -ENOBUFS || rc == -EBUSY;
                     spins++)
                        if (spins % 16 == 0)
                                sched_yield();
                if (rc != 0) {
                        p->err = rc;
                        return NULL;
                }
                rec_fill(resv.data, seq, len);
                shm_mpsc_commit(p->ring, &resv, p->id);
                shm_mpsc_notify(p->ring);
                p->count++;
                p->sum += mix64(seq) | 1;
        }
        return NULL;
}

struct mpsc_check {
        uint64_t next[MPSC_PRODUCERS];
        uint64_t count;
        uint64_t sum;
        uint64_t bad;
};

static void mpsc_check_rec(void *arg, const struct shm_mpsc_rec *rec)
{
        struct mpsc_check *c = arg;
        uint64_t seq = c->next[rec->type % MPSC_PRODUCERS];
        uint64_t word = rec->type < MPSC_PRODUCERS ? rec_check(rec->data, rec->len, seq) : 0;
        if (word == 0) {
                c->bad++;
                return;
        }
        c->next[rec->type] += MPSC_PRODUCERS;
        c->count++;
        c->sum += word;
}

Test(shm_mpsc, stress_10m_records_from_three_threads, .timeout = 240)
{
        size_t len = shm_mpsc_bytes(1 << 16);
        void *mem = mem_alloc(len);
        struct shm_mpsc cons, prod;
        cr_assert_eq(shm_mpsc_init(&cons, mem, len, 1 << 16), 0);
        cr_assert_eq(shm_mpsc_attach(&prod, mem, len), 0);
        struct mpsc_producer prods[MPSC_PRODUCERS];
        struct mpsc_check check = {0};
        pthread_t t[MPSC_PRODUCERS];
        uint64_t t0_ns = shm_clock_ns();

        for (uint32_t i = 0; i < MPSC_PRODUCERS; i++) {
                prods[i] = (struct mpsc_producer){.ring = &prod, .id = i};
                check.next[i] = i;
                cr_assert_eq(pthread_create(&t[i], NULL, mpsc_producer, &prods[i]), 0);
        }
        while (check.count < REC_COUNT && check.bad == 0) {
                int n = shm_mpsc_read_burst(&cons, mpsc_check_rec, &check, 64);
                cr_assert_geq(n, 0, "read_burst: %d", n);
                if (n == 0) {
                        struct shm_mpsc_rec rec;
                        int rc = shm_mpsc_read_wait(&cons, &rec, 2000LL * 1000 * 1000);
                        cr_assert_eq(rc, 1, "stalled after %llu: %d",
                                     (unsigned long long)check.count, rc);
                }
        }
        cr_assert_eq(check.bad, 0, "record damaged or out of order after %llu",
                     (unsigned long long)check.count);
        uint64_t sum = 0;
        for (unsigned i = 0; i < MPSC_PRODUCERS; i++) {
                pthread_join(t[i], NULL);
                cr_expect_eq(prods[i].err, 0, "producer %u: %d", i, prods[i].err);
                sum += prods[i].sum;
        }
        report("shm_mpsc records", check.count, t0_ns);
        cr_expect_eq(check.sum, sum, "checksum");
        cr_expect_eq(shm_mpsc_read_burst(&cons, mpsc_check_rec, &check, 64), 0);
        free(mem);
}
