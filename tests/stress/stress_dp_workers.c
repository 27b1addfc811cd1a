/* stress_dp_workers.c - the worker layer under churn (suite stress): two
 * workers, two submitter threads (clients 0 and 1), STRESS_SECONDS of
 * traffic, then exact accounting.
 *
 * Each submitter runs SLOTS mailbox lifecycles side by side: create (named,
 * unique), 1-16 sends (by handle or by name), fetch until every accepted
 * message came back, ack each, destroy, again. A third of the lifecycles
 * take the other worker's ring, so their commands cross the mesh. Beside
 * them each submitter publishes to its own subject, which four
 * subscriptions hear: one on each shard and a queue group of two.
 *
 * At the end: every command got exactly one completion; creates = destroys
 * + the mailboxes kept alive, and the shards hold exactly those; every
 * accepted message was fetched exactly once, never redelivered, and every
 * refused one is in a drop counter; each subscriber heard every publish, in
 * each publisher's order; no buffer leaked; no ring error, no bad record.
 *
 *      meson test -C build --suite stress dp_workers_stress
 *      build/tests/stress_dp_workers --jobs 1 --verbose   # with figures
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "dataplane/dp_engine.h"
#include "shm/shm_clock.h"

#define STRESS_SECONDS 25
#define SUBMITTERS 2
#define SLOTS 32
#define SENDS_MAX 16
#define FETCH_BATCH 8
#define PUB_WINDOW 32
#define KEEPERS 10
#define MS 1000000ull

/* Subscribers: 1 on shard 0, 2 on shard 1, 3 and 4 a queue group. */
#define EP_COUNT 5
#define GROUP 9

enum kind { K_CREATE, K_SEND, K_FETCH, K_ACK, K_DESTROY, K_PUB, K_KEEP, K_COUNT };
enum state { S_IDLE, S_CREATING, S_SENDING, S_FETCHING, S_DESTROYING, S_DONE };

struct slot {
        enum state state;
        uint32_t index;
        uint32_t gen;
        int via;                /* -1: the owner's ring; else that worker's */
        bool by_name;
        uint64_t handle;
        char name[48];
        uint32_t to_send, sends_issued, sends_done, sent_ok;
        uint32_t sent_mask, fetched_mask;
        uint64_t ack_queue[SENDS_MAX];
        uint32_t acks_queued, acks_pending;
        bool fetch_pending;
};

struct submitter {
        uint32_t id;            /* also its client index */
        struct slot slots[SLOTS];
        uint64_t serial;
        bool stopping;
        uint32_t pub_pending, pub_seq;
        uint32_t keep_issued, keep_done;
        /* accounting */
        uint64_t submitted, completed;
        uint64_t ok[K_COUNT], failed[K_COUNT];
        uint64_t sends_refused;      /* -ENOBUFS/-ENOMEM: counted by the shard */
        uint64_t fetched, duplicates, redelivered, foreign, bad_cpl;
        uint64_t full_retries;
        /* Criterion's asserts belong to the test's thread: a submitter
         * records what went wrong and stops; the test asserts on it. */
        const char *err;
        int err_rc;
};

static struct dp_engine eng;
static struct submitter subs[SUBMITTERS];

/* Deliveries, [worker][endpoint][publisher]: each worker writes its row. */
static dp_counter heard[2][EP_COUNT][SUBMITTERS];
static uint32_t last_seq[2][EP_COUNT][SUBMITTERS];
static dp_counter order_errors[2];

struct pub_body {
        uint32_t publisher;
        uint32_t seq;
};

struct send_body {
        uint32_t submitter, slot, gen, i;
};

static void on_deliver(void *arg, struct dp_worker *w, const struct dp_dispatch *d)
{
        (void)arg;
        struct dp_msg_view v;
        struct pub_body b;
        if (d->buf == SHM_BUF_NONE || dp_shard_msg_view(dp_worker_shard(w), d->buf, &v) != 0 ||
            v.payload_len != sizeof(b) || d->endpoint >= EP_COUNT) {
                dp_counter_inc(&order_errors[w->index]);
                return;
        }
        memcpy(&b, v.payload, sizeof(b));
        if (b.publisher >= SUBMITTERS) {
                dp_counter_inc(&order_errors[w->index]);
                return;
        }
        uint32_t *last = &last_seq[w->index][d->endpoint][b.publisher];
        uint64_t n = dp_counter_get(&heard[w->index][d->endpoint][b.publisher]);
        /* Each worker sees a publisher's messages in order; a group member
         * sees a subsequence, so "increasing", not "next". */
        if (n > 0 && b.seq <= *last)
                dp_counter_inc(&order_errors[w->index]);
        *last = b.seq;
        dp_counter_inc(&heard[w->index][d->endpoint][b.publisher]);
}

static uint64_t req_make(struct submitter *t, enum kind k, uint32_t slot)
{
        return (t->serial++ << 12) | (uint64_t)k << 8 | slot;
}

/* Submits; false when the ring is full (the caller polls and comes back). */
static bool submit(struct submitter *t, int via, const struct dp_cmd *c, const char *name,
                   const struct dp_msg_in *m)
{
        int rc = via < 0 ? dp_engine_submit(&eng, c, name, m)
                         : dp_engine_submit_to(&eng, (uint32_t)via, c, name, m);
        if (rc == -ENOBUFS) {
                t->full_retries++;
                return false;
        }
        if (rc != 0) {
                t->err = "submit failed";
                t->err_rc = rc;
                return false;
        }
        t->submitted++;
        return true;
}

static bool slot_create(struct submitter *t, struct slot *s)
{
        snprintf(s->name, sizeof(s->name), "t%u.mb.%u.%u", t->id, s->index, s->gen);
        s->via = s->gen % 3 == 0 ? (int)((dp_engine_shard_of_name(&eng, s->name,
                                                                  (uint32_t)strlen(s->name)) + 1) % 2)
                                 : -1;
        s->by_name = s->gen % 2 == 1;
        struct dp_cmd c = { .op = ATOMQ_OP_CREATE, .client = (uint16_t)t->id,
                            .req_id = req_make(t, K_CREATE, s->index),
                            .name_len = (uint16_t)strlen(s->name) };
        c.args.create.mode = DP_MODE_MAILBOX;
        if (!submit(t, s->via, &c, s->name, NULL))
                return false;
        s->state = S_CREATING;
        return true;
}

static bool slot_send(struct submitter *t, struct slot *s)
{
        while (s->sends_issued < s->to_send) {
                struct send_body b = { t->id, s->index, s->gen, s->sends_issued };
                struct dp_msg_in m = { .payload = &b, .payload_len = sizeof(b), .storage = -1 };
                struct dp_cmd c = { .op = ATOMQ_OP_SEND, .client = (uint16_t)t->id,
                                    .req_id = req_make(t, K_SEND, s->index) };
                if (s->by_name)
                        c.name_len = (uint16_t)strlen(s->name);
                else
                        c.handle = s->handle;
                if (!submit(t, s->via, &c, s->name, &m))
                        return false;
                s->sends_issued++;
        }
        return true;
}

static bool slot_fetch_ack(struct submitter *t, struct slot *s)
{
        while (s->acks_queued > 0) {
                struct dp_cmd c = { .op = ATOMQ_OP_ACK, .client = (uint16_t)t->id,
                                    .req_id = req_make(t, K_ACK, s->index),
                                    .handle = s->handle, .seq = s->ack_queue[s->acks_queued - 1] };
                if (!submit(t, s->via, &c, NULL, NULL))
                        return false;
                s->acks_queued--;
                s->acks_pending++;
        }
        if (!s->fetch_pending && (uint32_t)__builtin_popcount(s->fetched_mask) < s->sent_ok) {
                struct dp_cmd c = { .op = ATOMQ_OP_FETCH, .client = (uint16_t)t->id,
                                    .req_id = req_make(t, K_FETCH, s->index),
                                    .handle = s->handle };
                c.args.fetch.max = FETCH_BATCH;
                if (!submit(t, s->via, &c, NULL, NULL))
                        return false;
                s->fetch_pending = true;
        }
        return true;
}

static bool slot_destroy(struct submitter *t, struct slot *s)
{
        struct dp_cmd c = { .op = ATOMQ_OP_DESTROY, .client = (uint16_t)t->id,
                            .req_id = req_make(t, K_DESTROY, s->index), .handle = s->handle };
        if (!submit(t, s->via, &c, NULL, NULL))
                return false;
        s->state = S_DESTROYING;
        return true;
}

/* Issues what slot s can issue now; false when a ring was full. */
static bool slot_step(struct submitter *t, struct slot *s)
{
        switch (s->state) {
        case S_IDLE:
                if (t->stopping) {
                        s->state = S_DONE;
                        return true;
                }
                return slot_create(t, s);
        case S_SENDING:
                if (!slot_send(t, s))
                        return false;
                if (s->sends_done < s->to_send)
                        return true;
                s->state = S_FETCHING;
                /* fall through */
        case S_FETCHING:
                if (!slot_fetch_ack(t, s))
                        return false;
                if ((uint32_t)__builtin_popcount(s->fetched_mask) < s->sent_ok ||
                    s->acks_pending > 0 || s->fetch_pending)
                        return true;
                return slot_destroy(t, s);
        default:
                return true;
        }
}

static void on_fetch(struct submitter *t, struct slot *s, const struct dp_cpl *c, uint32_t len)
{
        struct dp_cpl_msg m;
        uint32_t off = 0;
        s->fetch_pending = false;
        while (dp_cpl_msg_next(c, len, &off, &m) == 1) {
                struct send_body b;
                t->fetched++;
                if (m.frame.flags & ATOMQ_FRAME_F_REDELIVERY)
                        t->redelivered++;
                if (m.frame.payload_len != sizeof(b) || m.frame.seq >= 32) {
                        t->foreign++;
                        continue;
                }
                memcpy(&b, m.payload, sizeof(b));
                if (b.submitter != t->id || b.slot != s->index || b.gen != s->gen)
                        t->foreign++;
                uint32_t bit = 1u << m.frame.seq;
                if ((s->fetched_mask & bit) || !(s->sent_mask & bit))
                        t->duplicates++;
                s->fetched_mask |= bit;
                if (s->acks_queued < SENDS_MAX)
                        s->ack_queue[s->acks_queued++] = m.frame.seq;
                else
                        t->duplicates++;
        }
}

static void on_slot_cpl(struct submitter *t, struct slot *s, enum kind k, const struct dp_cpl *c,
                        uint32_t len)
{
        switch (k) {
        case K_CREATE:
                s->handle = c->handle;
                s->to_send = 1 + (uint32_t)(t->serial * 2654435761u >> 7) % SENDS_MAX;
                s->sends_issued = s->sends_done = s->sent_ok = 0;
                s->sent_mask = s->fetched_mask = 0;
                s->acks_queued = s->acks_pending = 0;
                s->fetch_pending = false;
                s->state = c->status == 0 ? S_SENDING : S_IDLE;
                break;
        case K_SEND:
                s->sends_done++;
                if (c->status == 0) {
                        s->sent_ok++;
                        s->sent_mask |= 1u << (c->seq & 31);
                } else if (c->status == -ENOBUFS || c->status == -ENOMEM) {
                        t->sends_refused++;
                }
                break;
        case K_FETCH:
                on_fetch(t, s, c, len);
                break;
        case K_ACK:
                s->acks_pending--;
                break;
        case K_DESTROY:
                s->state = S_IDLE;
                s->gen++;
                break;
        default:
                t->bad_cpl++;
                break;
        }
}

static void on_cpl(void *arg, const struct dp_cpl *c, uint32_t len)
{
        struct submitter *t = arg;
        enum kind k = (enum kind)(c->req_id >> 8 & 0xf);
        uint32_t slot = (uint32_t)(c->req_id & 0xff);
        t->completed++;
        if (k >= K_COUNT || slot >= SLOTS) {
                t->bad_cpl++;
                return;
        }
        if (c->status == 0)
                t->ok[k]++;
        else
                t->failed[k]++;
        if (k == K_PUB) {
                t->pub_pending--;
                return;
        }
        if (k == K_KEEP) {
                t->keep_done++;
                return;
        }
        on_slot_cpl(t, &t->slots[slot], k, c, len);
}

static bool publish_some(struct submitter *t)
{
        char subject[16];
        snprintf(subject, sizeof(subject), "ev.p%u", t->id);
        while (!t->stopping && t->pub_pending < PUB_WINDOW) {
                struct pub_body b = { t->id, t->pub_seq };
                struct dp_msg_in m = { .subject = subject, .subject_len = (uint32_t)strlen(subject),
                                       .payload = &b, .payload_len = sizeof(b), .storage = -1 };
                struct dp_cmd c = { .op = ATOMQ_OP_PUB, .client = (uint16_t)t->id,
                                    .req_id = req_make(t, K_PUB, 0) };
                if (!submit(t, -1, &c, NULL, &m))
                        return false;
                t->pub_seq++;
                t->pub_pending++;
        }
        return true;
}

static bool keep_some(struct submitter *t)
{
        while (t->keep_issued < KEEPERS) {
                char name[32];
                snprintf(name, sizeof(name), "t%u.keep.%u", t->id, t->keep_issued);
                struct dp_cmd c = { .op = ATOMQ_OP_CREATE, .client = (uint16_t)t->id,
                                    .req_id = req_make(t, K_KEEP, 0),
                                    .name_len = (uint16_t)strlen(name) };
                c.args.create.mode = DP_MODE_MAILBOX;
                if (!submit(t, -1, &c, name, NULL))
                        return false;
                t->keep_issued++;
        }
        return true;
}

static bool all_done(const struct submitter *t)
{
        for (uint32_t i = 0; i < SLOTS; i++)
                if (t->slots[i].state != S_DONE)
                        return false;
        return t->pub_pending == 0;
}

static void *submitter_main(void *arg)
{
        struct submitter *t = arg;
        uint64_t end_ns = shm_clock_ns() + STRESS_SECONDS * 1000 * MS;
        uint64_t hard_ns = end_ns + 30000 * MS;
        for (uint32_t i = 0; i < SLOTS; i++)
                t->slots[i].index = i;
        while (t->err == NULL) {
                uint64_t now_ns = shm_clock_ns();
                if (now_ns > hard_ns) {
                        t->err = "did not wind down";
                        break;
                }
                t->stopping = now_ns >= end_ns;
                bool room = publish_some(t);
                for (uint32_t i = 0; room && i < SLOTS; i++)
                        room = slot_step(t, &t->slots[i]);
                if (t->stopping && all_done(t)) {
                        room = keep_some(t);
                        if (t->keep_done == KEEPERS)
                                break;
                }
                dp_engine_wait(&eng, t->id, on_cpl, t, 256, room ? 1 * MS : 100000);
        }
        return NULL;
}

/* --- set-up and the final accounting ------------------------------------ */

static void on_sub_cpl(void *arg, const struct dp_cpl *c, uint32_t len)
{
        (void)len;
        *(struct dp_cpl *)arg = *c;
}

static void subscribe(uint32_t to, const char *pattern, uint32_t group, uint32_t ep)
{
        struct dp_cmd c = { .op = ATOMQ_OP_SUB, .req_id = ep,
                            .name_len = (uint16_t)strlen(pattern) };
        c.args.sub = (struct dp_cmd_sub){ .group = group, .endpoint = ep, .sid = ep };
        cr_assert_eq(dp_engine_submit_to(&eng, to, &c, pattern, NULL), 0);
        struct dp_cpl got = { .req_id = UINT64_MAX };
        uint64_t deadline_ns = shm_clock_ns() + 5000 * MS;
        while (got.req_id == UINT64_MAX) {
                cr_assert_lt(shm_clock_ns(), deadline_ns);
                dp_engine_wait(&eng, 0, on_sub_cpl, &got, 1, 10 * MS);
        }
        cr_assert_eq(got.req_id, ep);
        cr_assert_eq(got.status, 0);
}

static void engine_up(void)
{
        struct dp_engine_config c;
        dp_engine_config_default(&c, 4096);
        c.workers = 2;
        c.clients = SUBMITTERS;
        c.cmd_ring_bytes = 256 * 1024;
        c.cpl_ring_bytes = 256 * 1024;
        c.mesh_ring_bytes = 256 * 1024;
        c.hugepages = SHM_HUGEPAGES_OFF;
        c.shard.max_msgs = 16384;
        c.shard.max_subs = 1024;
        c.shard.max_trie_nodes = 4096;
        c.shard.trie_token_bytes = 64 * 1024;
        c.shard.max_bindings = 1024;
        c.shard.max_cursors = 64;
        /* No redelivery during the run: every message is acked at once. */
        c.shard.ack_wait_ns = 600ull * 1000 * MS;
        c.shard.bufs[0].block_count = 16384;
        c.shard.bufs[1].block_count = 64;
        c.shard.bufs[2].block_count = 4;
        c.shard.bufs[3].block_count = 1;
        c.deliver = on_deliver;
        cr_assert_eq(dp_engine_init(&eng, &c), 0);
        cr_assert_eq(dp_engine_start(&eng), 0);
        /* The ungrouped ones stay where they are submitted: one per shard;
         * the group's members both go to the group's shard. */
        subscribe(0, "ev.>", 0, 1);
        subscribe(1, "ev.>", 0, 2);
        subscribe(0, "ev.*", GROUP, 3);
        subscribe(1, "ev.*", GROUP, 4);
}

static uint64_t heard_by(uint32_t ep, uint32_t publisher)
{
        return dp_counter_get(&heard[0][ep][publisher]) + dp_counter_get(&heard[1][ep][publisher]);
}

static uint64_t stat_sum(size_t off)
{
        uint64_t n = 0;
        for (uint32_t i = 0; i < eng.workers; i++)
                n += dp_counter_get((const dp_counter *)((const uint8_t *)dp_engine_stats(&eng, i) + off));
        return n;
}
#define STAT(field) stat_sum(offsetof(struct dp_worker_stats, field))

/* Publishes completed at the first shard; the fan-out may still be on its
 * way to the other: wait (bounded) until every subscriber heard them. */
static void await_deliveries(void)
{
        uint64_t deadline_ns = shm_clock_ns() + 10000 * MS;
        for (;;) {
                bool all = true;
                for (uint32_t p = 0; p < SUBMITTERS; p++) {
                        uint64_t want = subs[p].ok[K_PUB];
                        all = all && heard_by(1, p) >= want && heard_by(2, p) >= want &&
                              heard_by(3, p) + heard_by(4, p) >= want;
                }
                if (all || shm_clock_ns() > deadline_ns)
                        return;
                struct timespec ts = { 0, 1000000 };
                nanosleep(&ts, NULL);
        }
}

static void check_submitter(const struct submitter *t)
{
        cr_assert_null(t->err, "submitter %u: %s (%d)", t->id, t->err, t->err_rc);
        cr_log_info("submitter %u: %llu commands, %llu creates, %llu sends, %llu fetched, "
                    "%llu publishes, %llu full-ring retries", t->id,
                    (unsigned long long)t->submitted, (unsigned long long)t->ok[K_CREATE],
                    (unsigned long long)t->ok[K_SEND], (unsigned long long)t->fetched,
                    (unsigned long long)t->ok[K_PUB], (unsigned long long)t->full_retries);
        cr_assert_eq(t->completed, t->submitted, "every command, one completion");
        cr_assert_eq(t->bad_cpl, 0);
        cr_assert_eq(t->failed[K_CREATE], 0);
        cr_assert_eq(t->failed[K_KEEP], 0);
        cr_assert_eq(t->ok[K_KEEP], KEEPERS);
        cr_assert_eq(t->ok[K_CREATE], t->ok[K_DESTROY], "every lifecycle ended");
        cr_assert_eq(t->failed[K_DESTROY], 0);
        cr_assert_eq(t->failed[K_FETCH], 0);
        cr_assert_eq(t->failed[K_ACK], 0);
        cr_assert_eq(t->failed[K_PUB], 0);
        cr_assert_eq(t->failed[K_SEND], t->sends_refused, "only refusals a counter holds");
        cr_assert_eq(t->fetched, t->ok[K_SEND], "every accepted message fetched once");
        cr_assert_eq(t->ok[K_ACK], t->fetched);
        cr_assert_eq(t->duplicates, 0);
        cr_assert_eq(t->redelivered, 0);
        cr_assert_eq(t->foreign, 0);
        cr_assert_gt(t->ok[K_CREATE], 100, "too little traffic to mean anything");
        cr_assert_gt(t->ok[K_PUB], 100);
}

static void check_shards(uint64_t refused)
{
        uint64_t live = 0, drops = 0, bufs = 0, msgs = 0;
        for (uint32_t i = 0; i < eng.workers; i++) {
                const struct dp_shard *s = &eng.w[i].shard;
                live += s->table.hdr->live;
                drops += s->stats->drops_full + s->stats->pool_exhausted;
                msgs += s->msgs.hdr->in_use;
                for (uint32_t k = 0; k < s->bufs.class_count; k++)
                        bufs += shm_pool_in_use(&s->bufs.pools[k]);
                /* The buffer a shard keeps for its publishes to reuse is
                 * held by nobody else: not a leak. */
                bufs -= s->publish_buf != SHM_BUF_NONE;
        }
        cr_assert_eq(live, SUBMITTERS * KEEPERS, "live entities: %llu", (unsigned long long)live);
        cr_assert_eq(drops, refused, "refused sends are the shards' drops");
        cr_assert_eq(msgs, 0, "message records leaked: %llu", (unsigned long long)msgs);
        cr_assert_eq(bufs, 0, "buffers leaked: %llu", (unsigned long long)bufs);
}

Test(dp_workers_stress, churn_and_pubsub_account_exactly, .timeout = 240)
{
        pthread_t th[SUBMITTERS];
        engine_up();
        uint64_t t0_ns = shm_clock_ns();
        for (uint32_t i = 0; i < SUBMITTERS; i++) {
                subs[i].id = i;
                cr_assert_eq(pthread_create(&th[i], NULL, submitter_main, &subs[i]), 0);
        }
        for (uint32_t i = 0; i < SUBMITTERS; i++)
                pthread_join(th[i], NULL);
        await_deliveries();
        double secs = (double)(shm_clock_ns() - t0_ns) / 1e9;
        dp_engine_stop(&eng);

        uint64_t commands = 4, refused = 0;
        for (uint32_t i = 0; i < SUBMITTERS; i++) {
                check_submitter(&subs[i]);
                commands += subs[i].submitted;
                refused += subs[i].sends_refused;
                for (uint32_t ep = 1; ep <= 2; ep++)
                        cr_assert_eq(heard_by(ep, i), subs[i].ok[K_PUB], "endpoint %u, publisher %u",
                                     ep, i);
                cr_assert_eq(heard_by(3, i) + heard_by(4, i), subs[i].ok[K_PUB],
                             "group, publisher %u", i);
        }
        cr_assert_eq(dp_counter_get(&order_errors[0]) + dp_counter_get(&order_errors[1]), 0);
        cr_assert_eq(STAT(cpls), commands);
        cr_assert_eq(STAT(bad_records), 0);
        cr_assert_eq(STAT(ring_errors), 0);
        cr_assert_eq(STAT(cpl_lost), 0);
        cr_assert_eq(STAT(fetch_overflow), 0);
        cr_assert_gt(STAT(forwarded), 0, "the mesh carried commands");
        cr_assert_gt(STAT(fanouts), 0, "the mesh carried publishes");
        check_shards(refused);
        cr_log_info("%llu commands in %.1f s (%.0f/s); forwarded %llu, fan-outs %llu, "
                    "mesh full %llu, completions full %llu, idle sleeps %llu",
                    (unsigned long long)commands, secs, (double)commands / secs,
                    (unsigned long long)STAT(forwarded), (unsigned long long)STAT(fanouts),
                    (unsigned long long)STAT(mesh_full), (unsigned long long)STAT(cpl_full),
                    (unsigned long long)STAT(idle.sleeps));
        dp_engine_fini(&eng);
}
