/* test_dp_timer.c - the timer wheel: deadline order across every level, the
 * per-call bound and a cut-short cascade, cancel and re-arm (also from inside
 * a callback), overdue and far deadlines, bad ids and geometry, attach, idle
 * jumps, and a million timers. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/dp_timer.h"
#include "shm/shm_clock.h"

#define MS 1000000ull
#define SEC (1000 * MS)
#define HOUR (3600 * SEC)
#define DAY (24 * HOUR)

/* Every fire, with the clock of the expire call that fired it and of the
 * call before, so lateness can be judged against the step actually taken. */
struct fire_log {
        uint32_t *ids;
        uint64_t *deadline_ns;
        uint64_t *at_ns;
        uint64_t *prev_ns;
        size_t n;
        size_t cap;
        uint64_t now_ns;        /* the clock of the expire call running */
        uint64_t prev_now_ns;   /* the clock of the call before it */
};

static void *mem_new(size_t len)
{
        void *p = aligned_alloc(64, (len + 63) & ~(size_t)63);
        cr_assert_not_null(p);
        return p;
}

static void *wheel_new(struct dp_timer_wheel *w, uint32_t count, uint64_t tick_ns,
                       uint64_t now_ns)
{
        size_t len = dp_timer_bytes(count);
        cr_assert_gt(len, 0);
        void *mem = mem_new(len);
        cr_assert_eq(dp_timer_init(w, mem, len, count, tick_ns, now_ns), 0);
        return mem;
}

static void log_init(struct fire_log *l, size_t cap, uint64_t now_ns)
{
        memset(l, 0, sizeof(*l));
        l->cap = cap;
        l->ids = calloc(cap, sizeof(*l->ids));
        l->deadline_ns = calloc(cap, sizeof(uint64_t));
        l->at_ns = calloc(cap, sizeof(uint64_t));
        l->prev_ns = calloc(cap, sizeof(uint64_t));
        cr_assert(l->ids && l->deadline_ns && l->at_ns && l->prev_ns);
        l->now_ns = now_ns;
        l->prev_now_ns = now_ns;
}

static void log_free(struct fire_log *l)
{
        free(l->ids);
        free(l->deadline_ns);
        free(l->at_ns);
        free(l->prev_ns);
}

static void on_fire_log(uint32_t id, uint64_t deadline_ns, void *arg)
{
        struct fire_log *l = arg;
        cr_assert_lt(l->n, l->cap, "more fires than timers");
        l->ids[l->n] = id;
        l->deadline_ns[l->n] = deadline_ns;
        l->at_ns[l->n] = l->now_ns;
        l->prev_ns[l->n] = l->prev_now_ns;
        l->n++;
}

static int expire_at(struct dp_timer_wheel *w, struct fire_log *l, uint64_t now_ns, unsigned max)
{
        l->prev_now_ns = l->now_ns;
        l->now_ns = now_ns;
        return dp_timer_expire(w, now_ns, on_fire_log, l, max);
}

static uint64_t ceil_to(uint64_t ns, uint64_t tick_ns)
{
        return (ns / tick_ns + (ns % tick_ns != 0)) * tick_ns;
}

/* Each fire is not early, and fires come in non-decreasing tick order. */
static void log_check_order(const struct fire_log *l, uint64_t tick_ns)
{
        for (size_t i = 0; i < l->n; i++) {
                cr_assert_geq(l->at_ns[i], l->deadline_ns[i], "fire %zu early", i);
                if (i > 0)
                        cr_assert_geq(ceil_to(l->deadline_ns[i], tick_ns),
                                      ceil_to(l->deadline_ns[i - 1], tick_ns),
                                      "fire %zu out of order", i);
        }
}

/* As log_check_order, and no fire is late: at most a tick plus the clock
 * step after its deadline, and the call before had not yet reached the
 * tick-rounded deadline. Only for runs that never hit the max bound. */
static void log_check_timely(const struct fire_log *l, uint64_t tick_ns)
{
        log_check_order(l, tick_ns);
        for (size_t i = 0; i < l->n; i++) {
                uint64_t step_ns = l->at_ns[i] - l->prev_ns[i];
                cr_assert_leq(l->at_ns[i], l->deadline_ns[i] + tick_ns + step_ns,
                              "fire %zu late", i);
                cr_assert_lt(l->prev_ns[i], ceil_to(l->deadline_ns[i], tick_ns),
                             "fire %zu missed a call", i);
        }
}

static uint64_t rng_next(uint64_t *s)
{
        /* xorshift64*: deterministic, so a failure replays. */
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        return *s * 0x2545f4914f6cdd1dull;
}

Test(dp_timer, refuses_bad_geometry)
{
        struct dp_timer_wheel w;
        size_t len = dp_timer_bytes(64);
        uint8_t *mem = mem_new(len + 64);

        cr_assert_eq(dp_timer_bytes(0), 0);
        cr_assert_eq(dp_timer_bytes(DP_TIMER_NODES_MAX + 1), 0);
        cr_assert_eq(dp_timer_init(&w, mem, len, 0, MS, 0), -EINVAL);
        cr_assert_eq(dp_timer_init(&w, mem, len, 64, 0, 0), -EINVAL);
        cr_assert_eq(dp_timer_init(&w, mem + 8, len, 64, MS, 0), -EINVAL);
        cr_assert_eq(dp_timer_init(&w, mem, len - 1, 64, MS, 0), -ENOSPC);
        cr_assert_eq(dp_timer_init(&w, mem, len, 64, MS, 0), 0);
        free(mem);
}

Test(dp_timer, rejects_bad_ids)
{
        struct dp_timer_wheel w;
        void *mem = wheel_new(&w, 16, MS, 0);

        cr_assert_eq(dp_timer_arm(&w, 16, SEC), -EINVAL);
        cr_assert_eq(dp_timer_arm(&w, UINT32_MAX, SEC), -EINVAL);
        cr_assert_eq(dp_timer_cancel(&w, 16), -EINVAL);
        cr_assert_eq(dp_timer_cancel(&w, UINT32_MAX), -EINVAL);
        cr_assert_not(dp_timer_armed(&w, 16));
        cr_assert_eq(dp_timer_deadline(&w, 16), UINT64_MAX);
        cr_assert_eq(dp_timer_cancel(&w, 3), -ENOENT, "never armed");
        cr_assert_eq(dp_timer_armed_count(&w), 0);
        cr_assert_eq(dp_timer_next_ns(&w), UINT64_MAX);
        free(mem);
}

Test(dp_timer, attach_keeps_armed_timers)
{
        struct dp_timer_wheel w, w2;
        size_t len = dp_timer_bytes(8);
        void *mem = wheel_new(&w, 8, MS, 0);
        struct fire_log l;

        cr_assert_eq(dp_timer_arm(&w, 2, 5 * MS), 0);
        cr_assert_eq(dp_timer_arm(&w, 7, 9 * DAY), 0);
        cr_assert_eq(dp_timer_attach(&w2, mem, len - 64), -ENOSPC);
        cr_assert_eq(dp_timer_attach(&w2, mem, len), 0);
        cr_assert(dp_timer_armed(&w2, 2));
        cr_assert_eq(dp_timer_deadline(&w2, 7), 9 * DAY);
        cr_assert_eq(dp_timer_armed_count(&w2), 2);
        log_init(&l, 8, 0);
        cr_assert_eq(expire_at(&w2, &l, 5 * MS, UINT_MAX), 1);
        cr_assert_eq(l.ids[0], 2);
        ((struct dp_timer_hdr *)mem)->version = DP_TIMER_VERSION + 1;
        cr_assert_eq(dp_timer_attach(&w2, mem, len), -EPROTO);
        log_free(&l);
        free(mem);
}

/* Deadlines spread log-uniformly from sub-tick to years (every level and the
 * far list), the clock driven as a worker would: small random steps while a
 * timer is near, a jump to dp_timer_next_ns when none is. */
Test(dp_timer, fires_in_deadline_order)
{
        enum { N = 20000 };
        const uint64_t tick_ns = MS, start_ns = 12345 * SEC + 678;
        struct dp_timer_wheel w;
        struct fire_log l;
        uint64_t seed = 0x9e3779b97f4a7c15ull, now_ns = start_ns;
        void *mem = wheel_new(&w, N, tick_ns, start_ns);

        log_init(&l, N, start_ns);
        for (uint32_t i = 0; i < N; i++) {
                unsigned bits = 10 + (unsigned)(rng_next(&seed) % 49); /* 1 us .. 9 years */
                uint64_t off_ns = rng_next(&seed) & ((1ull << bits) - 1);
                cr_assert_eq(dp_timer_arm(&w, i, start_ns + 1 + off_ns), 0);
        }
        cr_assert_eq(dp_timer_armed_count(&w), N);
        while (dp_timer_armed_count(&w) > 0) {
                uint64_t next_ns = dp_timer_next_ns(&w);
                cr_assert_neq(next_ns, UINT64_MAX);
                if (next_ns > now_ns + 3 * tick_ns)
                        now_ns = next_ns;
                else
                        now_ns += 1 + rng_next(&seed) % (3 * tick_ns);
                expire_at(&w, &l, now_ns, UINT_MAX);
        }
        cr_assert_eq(l.n, N);
        log_check_timely(&l, tick_ns);
        cr_assert_eq(dp_timer_next_ns(&w), UINT64_MAX);
        log_free(&l);
        free(mem);
}

/* A reference model driven by random arms, re-arms, cancels and clock steps,
 * some from inside callbacks: every fire must match the model, and after a
 * call without a max bound nothing due may be left armed. */
enum { MODEL_IDS = 2000 };

struct model {
        struct dp_timer_wheel *w;
        uint64_t seed;
        uint64_t tick_ns;
        uint64_t now_ns;
        uint64_t deadline_ns[MODEL_IDS];
        bool armed[MODEL_IDS];
        bool armed_in_call[MODEL_IDS]; /* may wait for the next call */
        bool overdue[MODEL_IDS];       /* armed at or before the last clock */
        uint64_t last_tick;            /* of the previous fire in this call */
        uint64_t fires;
};

static uint64_t model_deadline(struct model *m)
{
        uint64_t r = rng_next(&m->seed);
        uint64_t off_ns = rng_next(&m->seed) & ((1ull << (10 + r % 50)) - 1);
        if (r % 16 == 0)        /* in the past, sometimes before the wheel's time */
                return m->now_ns > off_ns ? m->now_ns - off_ns : 0;
        return m->now_ns + off_ns;
}

static void model_op(struct model *m, bool in_call)
{
        uint32_t id = (uint32_t)(rng_next(&m->seed) % MODEL_IDS);
        if (rng_next(&m->seed) % 4 == 0) {
                cr_assert_eq(dp_timer_cancel(m->w, id), m->armed[id] ? 0 : -ENOENT);
                m->armed[id] = false;
                return;
        }
        m->deadline_ns[id] = model_deadline(m);
        m->armed[id] = true;
        m->armed_in_call[id] = in_call;
        /* Overdue timers fire first, in any order among themselves. */
        m->overdue[id] = ceil_to(m->deadline_ns[id], m->tick_ns) <= m->now_ns;
        cr_assert_eq(dp_timer_arm(m->w, id, m->deadline_ns[id]), 0);
}

static void on_fire_model(uint32_t id, uint64_t deadline_ns, void *arg)
{
        struct model *m = arg;
        uint64_t tick = ceil_to(deadline_ns, m->tick_ns) / m->tick_ns;
        cr_assert(m->armed[id], "id %u fired unarmed", id);
        cr_assert_eq(deadline_ns, m->deadline_ns[id]);
        cr_assert_geq(m->now_ns, deadline_ns, "early");
        if (!m->armed_in_call[id] && !m->overdue[id]) {
                cr_assert_geq(tick, m->last_tick, "out of order");
                m->last_tick = tick;
        }
        m->armed[id] = false;
        m->fires++;
        if (rng_next(&m->seed) % 3 == 0)
                model_op(m, true);
}

/* Nothing due is left armed, and next_ns neither overshoots the earliest
 * deadline nor, with nothing due, asks for a wake-up before now. */
static void model_check(struct model *m)
{
        uint64_t min_ns = UINT64_MAX;
        for (uint32_t id = 0; id < MODEL_IDS; id++) {
                cr_assert_eq(dp_timer_armed(m->w, id), m->armed[id]);
                if (!m->armed[id] || m->armed_in_call[id])
                        continue;
                uint64_t due_ns = ceil_to(m->deadline_ns[id], m->tick_ns);
                cr_assert_gt(due_ns, m->now_ns, "id %u due but not fired", id);
                if (due_ns < min_ns)
                        min_ns = due_ns;
        }
        uint64_t next_ns = dp_timer_next_ns(m->w);
        cr_assert_leq(next_ns, min_ns);
        if (next_ns <= m->now_ns)
                for (uint32_t id = 0; id < MODEL_IDS; id++)
                        if (m->armed[id] && m->armed_in_call[id])
                                return;
        cr_assert_gt(next_ns, m->now_ns, "wake-up asked with nothing due");
}

static void model_run(uint64_t tick_ns, uint64_t seed)
{
        struct dp_timer_wheel w;
        struct model *m = calloc(1, sizeof(*m));
        cr_assert_not_null(m);
        m->w = &w;
        m->seed = seed;
        m->tick_ns = tick_ns;
        m->now_ns = 5 * DAY + 3;
        void *mem = wheel_new(&w, MODEL_IDS, tick_ns, m->now_ns);

        for (int round = 0; round < 10000; round++) {
                for (int i = (int)(rng_next(&m->seed) % 8); i > 0; i--)
                        model_op(m, false);
                uint64_t r = rng_next(&m->seed), next_ns = dp_timer_next_ns(&w);
                if (r % 8 == 0 && next_ns != UINT64_MAX && next_ns > m->now_ns)
                        m->now_ns = next_ns;
                else if (r % 64 == 1)
                        m->now_ns += rng_next(&m->seed) % (1000 * DAY);
                else
                        m->now_ns += rng_next(&m->seed) % (r % 2 ? 5 * MS : 10 * SEC);
                bool bounded = r % 5 == 0;
                m->last_tick = 0;
                int n = dp_timer_expire(&w, m->now_ns, on_fire_model, m, bounded ? 3 : UINT_MAX);
                cr_assert_leq(n, bounded ? 3 : INT_MAX);
                if (!bounded)
                        model_check(m);
                memset(m->armed_in_call, 0, sizeof(m->armed_in_call));
        }
        cr_assert_gt(m->fires, 5000, "the model exercised the wheel (%lu fires)",
                     (unsigned long)m->fires);
        free(m);
        free(mem);
}

Test(dp_timer, random_ops_match_a_reference_model)
{
        model_run(MS, 0xdecafbad);
}

/* A 1 us tick spans only 19 hours: the far list and epoch turns are busy. */
Test(dp_timer, random_ops_match_a_reference_model_fine_tick)
{
        model_run(1000, 0x5eed);
}

Test(dp_timer, cancel_disarms)
{
        struct dp_timer_wheel w;
        struct fire_log l;
        void *mem = wheel_new(&w, 8, MS, 0);

        log_init(&l, 8, 0);
        cr_assert_eq(dp_timer_arm(&w, 1, 10 * MS), 0);
        cr_assert_eq(dp_timer_arm(&w, 2, 20 * MS), 0);
        cr_assert_eq(dp_timer_arm(&w, 3, 30 * MS), 0);
        cr_assert_eq(dp_timer_arm(&w, 4, 40 * DAY), 0);
        cr_assert_eq(dp_timer_arm(&w, 5, 4000 * DAY), 0); /* far list */
        cr_assert_eq(dp_timer_cancel(&w, 2), 0);
        cr_assert_eq(dp_timer_cancel(&w, 2), -ENOENT);
        cr_assert_not(dp_timer_armed(&w, 2));
        cr_assert_eq(dp_timer_deadline(&w, 2), UINT64_MAX);
        cr_assert_eq(dp_timer_cancel(&w, 4), 0);
        cr_assert_eq(dp_timer_cancel(&w, 5), 0);
        cr_assert_eq(dp_timer_armed_count(&w), 2);
        cr_assert_eq(expire_at(&w, &l, 100 * MS, UINT_MAX), 2);
        cr_assert_eq(l.ids[0], 1);
        cr_assert_eq(l.ids[1], 3);
        cr_assert_eq(dp_timer_cancel(&w, 1), -ENOENT, "already fired");
        cr_assert_eq(dp_timer_next_ns(&w), UINT64_MAX, "cancelled coarse and far slots are gone");
        cr_assert_eq(expire_at(&w, &l, 5000 * DAY, UINT_MAX), 0);
        log_free(&l);
        free(mem);
}

Test(dp_timer, rearm_moves_earlier_and_later)
{
        struct dp_timer_wheel w;
        struct fire_log l;
        void *mem = wheel_new(&w, 8, MS, 0);

        log_init(&l, 8, 0);
        cr_assert_eq(dp_timer_arm(&w, 0, 10 * SEC), 0);  /* level 2 */
        cr_assert_eq(dp_timer_arm(&w, 0, 5 * MS), 0);    /* to level 0 */
        cr_assert_eq(dp_timer_arm(&w, 1, 5 * MS), 0);
        cr_assert_eq(dp_timer_arm(&w, 1, 2 * HOUR), 0);  /* to level 3 */
        cr_assert_eq(dp_timer_armed_count(&w), 2, "a re-arm is not a second timer");
        cr_assert_eq(dp_timer_deadline(&w, 1), 2 * HOUR);
        cr_assert_eq(expire_at(&w, &l, 5 * MS, UINT_MAX), 1);
        cr_assert_eq(l.ids[0], 0);
        cr_assert_eq(l.deadline_ns[0], 5 * MS);
        cr_assert_eq(expire_at(&w, &l, 10 * SEC, UINT_MAX), 0, "old deadline is gone");
        cr_assert_eq(expire_at(&w, &l, 2 * HOUR - 1, UINT_MAX), 0);
        cr_assert_eq(expire_at(&w, &l, 2 * HOUR, UINT_MAX), 1);
        cr_assert_eq(l.ids[1], 1);
        log_free(&l);
        free(mem);
}

/* A periodic timer that re-arms itself, two timers of the same tick that
 * cancel each other, and one arming a fresh timer. */
struct cb_state {
        struct dp_timer_wheel *w;
        unsigned periodic;
        unsigned pair;
        unsigned fresh;
};

static void on_fire_rearm(uint32_t id, uint64_t deadline_ns, void *arg)
{
        struct cb_state *s = arg;
        cr_assert_not(dp_timer_armed(s->w, id), "disarmed before the callback");
        switch (id) {
        case 0:
                if (++s->periodic < 100)
                        cr_assert_eq(dp_timer_arm(s->w, 0, deadline_ns + 10 * MS), 0);
                break;
        case 1:
        case 2:
                s->pair++;
                cr_assert_eq(dp_timer_cancel(s->w, 3 - id), 0, "sibling still pending");
                cr_assert_eq(dp_timer_arm(s->w, 3, deadline_ns + MS), 0);
                break;
        case 3:
                s->fresh++;
                break;
        default:
                cr_assert_fail("unexpected id %u", id);
        }
}

Test(dp_timer, rearm_from_callback)
{
        struct dp_timer_wheel w;
        struct cb_state s = { .w = &w };
        void *mem = wheel_new(&w, 8, MS, 0);

        cr_assert_eq(dp_timer_arm(&w, 0, 10 * MS), 0);
        cr_assert_eq(dp_timer_arm(&w, 1, 50 * MS), 0);
        cr_assert_eq(dp_timer_arm(&w, 2, 50 * MS), 0);
        for (uint64_t now_ns = 0; now_ns <= 2 * SEC; now_ns += MS)
                dp_timer_expire(&w, now_ns, on_fire_rearm, &s, UINT_MAX);
        cr_assert_eq(s.periodic, 100);
        cr_assert_eq(s.pair, 1, "the first of the pair cancels the other");
        cr_assert_eq(s.fresh, 1);
        cr_assert_eq(dp_timer_armed_count(&w), 0);
        free(mem);
}

/* Re-arms itself for rearm_ns every time, which is in the past or exactly
 * the wheel's time: it must fire once per call, not max times. */
struct overdue_state {
        struct dp_timer_wheel *w;
        uint64_t rearm_ns;
        unsigned fires;
};

static void on_fire_overdue(uint32_t id, uint64_t deadline_ns, void *arg)
{
        struct overdue_state *s = arg;
        (void)deadline_ns;
        s->fires++;
        cr_assert_eq(dp_timer_arm(s->w, id, s->rearm_ns), 0);
}

Test(dp_timer, arm_in_the_past_fires_on_next_expire)
{
        struct dp_timer_wheel w;
        struct fire_log l;
        void *mem = wheel_new(&w, 8, MS, 0);

        log_init(&l, 8, 0);
        cr_assert_eq(expire_at(&w, &l, SEC, UINT_MAX), 0);
        cr_assert_eq(dp_timer_arm(&w, 0, 500 * MS), 0);
        cr_assert_eq(dp_timer_arm(&w, 1, 0), 0);
        cr_assert_eq(dp_timer_arm(&w, 2, SEC), 0, "exactly the wheel's time");
        cr_assert_leq(dp_timer_next_ns(&w), SEC, "due now");
        cr_assert_eq(expire_at(&w, &l, SEC, UINT_MAX), 3, "same clock, next call");
        cr_assert_eq(expire_at(&w, &l, SEC / 2, UINT_MAX), 0, "a clock going back fires nothing");

        struct overdue_state s = { .w = &w, .rearm_ns = 100 * MS };
        cr_assert_eq(dp_timer_arm(&w, 3, 100 * MS), 0);
        cr_assert_eq(dp_timer_expire(&w, 2 * SEC, on_fire_overdue, &s, 1000), 1);
        cr_assert_eq(dp_timer_expire(&w, 2 * SEC, on_fire_overdue, &s, 1000), 1);
        cr_assert_eq(s.fires, 2);
        cr_assert(dp_timer_armed(&w, 3));

        s.rearm_ns = 3 * SEC;
        cr_assert_eq(dp_timer_arm(&w, 3, 3 * SEC), 0);
        cr_assert_eq(dp_timer_expire(&w, 3 * SEC, on_fire_overdue, &s, 1000), 1);
        cr_assert_eq(dp_timer_expire(&w, 3 * SEC, on_fire_overdue, &s, 1000), 1);
        cr_assert_eq(s.fires, 4);
        log_free(&l);
        free(mem);
}

/* Days, the edge of the 2^36-tick range and years beyond it: each fires at
 * its deadline, not a tick before, and reaching them takes a handful of
 * wake-ups, not one per tick. */
Test(dp_timer, far_deadlines_fire_on_time)
{
        static const uint64_t deadline_ns[] = {
                3 * DAY, 100 * DAY, 700 * DAY, 795 * DAY, 796 * DAY,
                900 * DAY, 5 * 365 * DAY, 30 * 365 * DAY + 7 * MS,
        };
        enum { N = sizeof(deadline_ns) / sizeof(deadline_ns[0]) };
        struct dp_timer_wheel w;
        struct fire_log l;
        unsigned wakeups = 0;
        void *mem = wheel_new(&w, N + 1, MS, 0);

        log_init(&l, N + 1, 0);
        for (uint32_t i = 0; i < N; i++)
                cr_assert_eq(dp_timer_arm(&w, i, deadline_ns[i]), 0);
        cr_assert_eq(dp_timer_arm(&w, N, UINT64_MAX - 1), 0, "never reached");
        while (l.n < N) {
                uint64_t next_ns = dp_timer_next_ns(&w);
                cr_assert_lt(next_ns, UINT64_MAX);
                cr_assert_leq(next_ns, deadline_ns[l.n], "next_ns overshoots");
                /* A nanosecond early must fire nothing. */
                size_t before = l.n;
                expire_at(&w, &l, next_ns - 1, UINT_MAX);
                cr_assert_eq(l.n, before);
                expire_at(&w, &l, next_ns, UINT_MAX);
                cr_assert_leq(++wakeups, N * DP_TIMER_LEVELS, "walks instead of jumping");
        }
        for (uint32_t i = 0; i < N; i++) {
                cr_assert_eq(l.ids[i], i);
                cr_assert_eq(l.at_ns[i], deadline_ns[i], "fired at the deadline itself");
        }
        cr_assert(dp_timer_armed(&w, N));
        log_free(&l);
        free(mem);
}

Test(dp_timer, max_bounds_each_call_and_loses_nothing)
{
        enum { N = 1000 };
        struct dp_timer_wheel w;
        struct fire_log l;
        uint64_t seed = 42;
        unsigned calls = 0;
        void *mem = wheel_new(&w, N, MS, 0);

        log_init(&l, N, 0);
        for (uint32_t i = 0; i < N; i++)
                cr_assert_eq(dp_timer_arm(&w, i, 1 + rng_next(&seed) % (5 * SEC)), 0);
        cr_assert_eq(expire_at(&w, &l, 10 * SEC, 0), 0, "max 0 fires nothing");
        while (l.n < N) {
                int n = expire_at(&w, &l, 10 * SEC, 7);
                cr_assert(n > 0 && n <= 7, "call %u fired %d", calls, n);
                calls++;
        }
        cr_assert_eq(calls, (N + 6) / 7);
        cr_assert_eq(expire_at(&w, &l, 10 * SEC, 7), 0);
        log_check_order(&l, MS);        /* order holds across calls */
        bool seen[N] = { false };
        for (size_t i = 0; i < l.n; i++) {
                cr_assert_not(seen[l.ids[i]], "id %u fired twice", l.ids[i]);
                seen[l.ids[i]] = true;
        }
        log_free(&l);
        free(mem);
}

/* 200 k timers in one coarse slot: the cascade takes many calls of bounded
 * work, and nothing fires ahead of a staged timer that is due earlier. */
Test(dp_timer, long_cascade_resumes_in_order)
{
        enum { N = 200000 };
        struct dp_timer_wheel w;
        struct fire_log l;
        struct dp_timer_stats st;
        void *mem = wheel_new(&w, N, MS, 0);

        log_init(&l, N, 0);
        /* Level 2 slot 5 is ticks [20480, 24576); the earliest goes last. */
        for (uint32_t i = 0; i < N; i++)
                cr_assert_eq(dp_timer_arm(&w, i, (24575 - i % 4096) * MS), 0);
        cr_assert_eq(expire_at(&w, &l, 30 * SEC, 1), 0, "first call only cascades");
        dp_timer_stats(&w, &st);
        cr_assert_leq(st.moved, DP_TIMER_MOVES_MIN);
        cr_assert_leq(dp_timer_next_ns(&w), 30 * SEC, "the rest is due now");
        while (l.n < N)
                cr_assert_leq(expire_at(&w, &l, 30 * SEC, 64), 64);
        log_check_order(&l, MS);
        cr_assert_eq(l.deadline_ns[0], 20480 * MS);
        log_free(&l);
        free(mem);
}

Test(dp_timer, next_ns_tracks_earliest)
{
        struct dp_timer_wheel w;
        struct fire_log l;
        uint64_t now_ns = 0;
        void *mem = wheel_new(&w, 4, MS, 0);

        log_init(&l, 4, 0);
        cr_assert_eq(dp_timer_next_ns(&w), UINT64_MAX);
        cr_assert_eq(dp_timer_arm(&w, 0, 5 * SEC + 300), 0);
        cr_assert_eq(dp_timer_arm(&w, 1, 9 * SEC), 0);
        /* Sleeping until next_ns and expiring reaches the earliest timer
         * through at most one wake-up per level, never past it. */
        for (int i = 0; i < DP_TIMER_LEVELS + 1 && l.n == 0; i++) {
                uint64_t next_ns = dp_timer_next_ns(&w);
                cr_assert_gt(next_ns, now_ns);
                cr_assert_leq(next_ns, 5 * SEC + MS);
                now_ns = next_ns;
                expire_at(&w, &l, now_ns, UINT_MAX);
        }
        cr_assert_eq(l.n, 1);
        cr_assert_eq(l.at_ns[0], 5 * SEC + MS, "deadline rounded up to the tick");
        cr_assert_eq(dp_timer_cancel(&w, 1), 0);
        cr_assert_eq(dp_timer_next_ns(&w), UINT64_MAX);
        log_free(&l);
        free(mem);
}

/* One timer 30 days out, the clock moved an hour per call: each call is a
 * few bitmap looks, not 3.6 M ticks (counted in steps, not only timed). */
Test(dp_timer, idle_hour_jumps_are_cheap)
{
        enum { CALLS = 1000 };
        struct dp_timer_wheel w;
        struct fire_log l;
        struct dp_timer_stats st;
        void *mem = wheel_new(&w, 4, MS, 0);

        log_init(&l, 4, 0);
        cr_assert_eq(dp_timer_arm(&w, 0, 30 * DAY), 0);
        for (uint64_t i = 1; i <= CALLS; i++)
                expire_at(&w, &l, i * HOUR, UINT_MAX);
        dp_timer_stats(&w, &st);
        cr_assert_eq(l.n, 1);
        cr_assert_eq(l.at_ns[0], 30 * DAY);
        cr_assert_leq(st.steps, 2 * CALLS + DP_TIMER_LEVELS, "steps %lu",
                      (unsigned long)st.steps);
        cr_assert_leq(st.moved, DP_TIMER_LEVELS);
        /* The step count is the check: walking ticks one by one would take
         * 3.6 M steps per hour. Speed itself is a benchmark figure. */
        log_free(&l);
        free(mem);
}

static void on_fire_count(uint32_t id, uint64_t deadline_ns, void *arg)
{
        uint64_t *c = arg;
        (void)id;
        cr_assert_geq(c[1], deadline_ns, "early");
        uint64_t tick = ceil_to(deadline_ns, MS) / MS;
        cr_assert_geq(tick, c[2], "out of order");
        c[2] = tick;
        c[0]++;
}

/* 2^20 timers over an hour (levels 0 to 3), all fired, in order. */
Test(dp_timer, million_timers_all_fire)
{
        enum { N = 1 << 20 };
        struct dp_timer_wheel w;
        uint64_t seed = 7, now_ns = 0;
        uint64_t c[3] = { 0, 0, 0 };    /* fired, clock, last tick fired */
        void *mem = wheel_new(&w, N, MS, 0);

        uint64_t t0_ns = shm_clock_ns();
        for (uint32_t i = 0; i < N; i++)
                dp_timer_arm(&w, i, 1 + rng_next(&seed) % HOUR);
        uint64_t t1_ns = shm_clock_ns();
        cr_assert_eq(dp_timer_armed_count(&w), N);
        while (now_ns <= HOUR) {
                now_ns += 1 + rng_next(&seed) % (20 * MS);
                c[1] = now_ns;
                dp_timer_expire(&w, now_ns, on_fire_count, c, UINT_MAX);
        }
        uint64_t t2_ns = shm_clock_ns();
        cr_assert_eq(c[0], N);
        cr_assert_eq(dp_timer_armed_count(&w), 0);
        cr_log_info("1M timers: arm %lu ns/timer, expire %lu ns/timer",
                    (unsigned long)((t1_ns - t0_ns) / N), (unsigned long)((t2_ns - t1_ns) / N));
        free(mem);
}
