/* test_dp_worker.c - the worker layer: engine start and stop, routing by
 * name and handle, exactly one completion per command, stale handles, full
 * rings (command, mesh, completion) as errors or back-pressure and never a
 * hang, publish across shards and its order, idle back-off, busy-poll
 * pinning, malformed records.
 *
 *      meson test -C build dp_worker
 *      build/tests/test_dp_worker --verbose    # with timings
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dataplane/dp_engine.h"
#include "shm/shm_clock.h"

#define MS 1000000ll
#define REQS 8192u
#define DLOG_MAX 8192u

/* --- completions, by request id -------------------------------------- */

static struct dp_cpl cpls[REQS];
static uint32_t seen[REQS];
static uint32_t cpl_total;
static char fetched[DP_FETCH_MAX][32];
static uint64_t fetched_seq[DP_FETCH_MAX];
static uint32_t fetched_n;

static void on_cpl(void *arg, const struct dp_cpl *c, uint32_t len)
{
        (void)arg;
        cr_assert_eq(c->magic, DP_CPL_MAGIC);
        cr_assert_lt(c->req_id, REQS);
        cpls[c->req_id] = *c;
        seen[c->req_id]++;
        cpl_total++;
        if (c->op != ATOMQ_OP_FETCH)
                return;
        struct dp_cpl_msg m;
        uint32_t off = 0;
        fetched_n = 0;
        while (dp_cpl_msg_next(c, len, &off, &m) == 1) {
                size_t n = m.frame.payload_len < 31 ? m.frame.payload_len : 31;
                memcpy(fetched[fetched_n], m.payload, n);
                fetched[fetched_n][n] = '\0';
                fetched_seq[fetched_n++] = m.frame.seq;
        }
        cr_assert_eq(fetched_n, c->count);
}

/* Waits (bounded) for the completion of req_id and returns it. */
static struct dp_cpl await(struct dp_engine *e, uint32_t client, uint64_t req_id)
{
        uint64_t deadline_ns = shm_clock_ns() + 5000 * MS;
        while (seen[req_id] == 0) {
                cr_assert_lt(shm_clock_ns(), deadline_ns, "no completion for request %llu",
                             (unsigned long long)req_id);
                dp_engine_wait(e, client, on_cpl, NULL, 64, 10 * MS);
        }
        return cpls[req_id];
}

/* Waits (bounded) until `total` completions arrived. */
static void await_total(struct dp_engine *e, uint32_t client, uint32_t total)
{
        uint64_t deadline_ns = shm_clock_ns() + 10000 * MS;
        while (cpl_total < total) {
                cr_assert_lt(shm_clock_ns(), deadline_ns, "%u of %u completions", cpl_total,
                             total);
                dp_engine_wait(e, client, on_cpl, NULL, 256, 10 * MS);
        }
}

/* --- deliveries, per worker (each written by its worker alone) ------- */

struct dlog {
        _Atomic uint32_t n;
        uint32_t endpoint[DLOG_MAX];
        uint32_t shard[DLOG_MAX];
        char subject[DLOG_MAX][16];
        uint32_t seq[DLOG_MAX];
};
static struct dlog dlogs[2];

static void on_deliver(void *arg, struct dp_worker *w, const struct dp_dispatch *d)
{
        (void)arg;
        struct dlog *l = &dlogs[w->index];
        uint32_t n = atomic_load_explicit(&l->n, memory_order_relaxed);
        struct dp_msg_view v;
        if (n >= DLOG_MAX || d->buf == SHM_BUF_NONE ||
            dp_shard_msg_view(dp_worker_shard(w), d->buf, &v) != 0)
                return;
        l->endpoint[n] = d->endpoint;
        l->shard[n] = w->index;
        size_t sl = v.subject_len < 15 ? v.subject_len : 15;
        memcpy(l->subject[n], v.subject, sl);
        l->subject[n][sl] = '\0';
        l->seq[n] = 0;
        if (v.payload_len == sizeof(uint32_t))
                memcpy(&l->seq[n], v.payload, sizeof(uint32_t));
        /* Pairs with the acquire load in dlog_count: the entry is written. */
        atomic_store_explicit(&l->n, n + 1, memory_order_release);
}

static uint32_t dlog_count(int w)
{
        /* Pairs with the release store in on_deliver. */
        return atomic_load_explicit(&dlogs[w].n, memory_order_acquire);
}

static void await_deliveries(int w, uint32_t n)
{
        uint64_t deadline_ns = shm_clock_ns() + 10000 * MS;
        while (dlog_count(w) < n) {
                cr_assert_lt(shm_clock_ns(), deadline_ns, "worker %d: %u of %u deliveries", w,
                             dlog_count(w), n);
                struct timespec ts = { 0, 1000000 };
                nanosleep(&ts, NULL);
        }
}

/* --- engine set-up ----------------------------------------------------- */

static struct dp_engine eng;

static void config_small(struct dp_engine_config *c, uint32_t workers)
{
        dp_engine_config_default(c, 1024);
        c->workers = workers;
        c->clients = 2;
        c->cmd_ring_bytes = DP_CMD_RING_BYTES_MIN;
        c->mesh_ring_bytes = DP_CMD_RING_BYTES_MIN;
        c->cpl_ring_bytes = DP_CPL_RING_BYTES_MIN;
        c->hugepages = SHM_HUGEPAGES_OFF;
        c->shard.max_msgs = 8192;
        c->shard.max_subs = 1024;
        c->shard.max_trie_nodes = 4096;
        c->shard.trie_token_bytes = 64 * 1024;
        c->shard.max_bindings = 1024;
        c->shard.max_cursors = 64;
        c->shard.bufs[0].block_count = 8192;
        c->shard.bufs[1].block_count = 64;
        c->shard.bufs[2].block_count = 4;
        c->shard.bufs[3].block_count = 1;
        c->deliver = on_deliver;
}

static void engine_up(uint32_t workers, bool start)
{
        struct dp_engine_config c;
        config_small(&c, workers);
        cr_assert_eq(dp_engine_init(&eng, &c), 0);
        if (start)
                cr_assert_eq(dp_engine_start(&eng), 0);
}

static void engine_down(void)
{
        dp_engine_fini(&eng);
}

TestSuite(dp_worker, .fini = engine_down, .timeout = 60);

static struct dp_cmd cmd(uint8_t op, uint64_t req_id)
{
        return (struct dp_cmd){ .op = op, .req_id = req_id };
}

static struct dp_msg_in msg_of(const char *subject, const void *payload, uint32_t len)
{
        return (struct dp_msg_in){ .subject = subject,
                                   .subject_len = subject ? (uint32_t)strlen(subject) : 0,
                                   .payload = payload, .payload_len = len, .storage = -1 };
}

/* Submits, polling completions of client 0 while the ring is full. */
static void submit_retry(struct dp_engine *e, int to, const struct dp_cmd *c, const char *name,
                         const struct dp_msg_in *m)
{
        uint64_t deadline_ns = shm_clock_ns() + 10000 * MS;
        for (;;) {
                int rc = to < 0 ? dp_engine_submit(e, c, name, m)
                                : dp_engine_submit_to(e, (uint32_t)to, c, name, m);
                if (rc == 0)
                        return;
                cr_assert_eq(rc, -ENOBUFS, "submit: %d", rc);
                cr_assert_lt(shm_clock_ns(), deadline_ns, "command ring stays full");
                dp_engine_wait(e, c->client, on_cpl, NULL, 256, 1 * MS);
        }
}

static uint64_t create_named(const char *name, uint64_t req_id, int to)
{
        struct dp_cmd c = cmd(ATOMQ_OP_CREATE, req_id);
        c.name_len = (uint16_t)strlen(name);
        c.args.create.mode = DP_MODE_MAILBOX;
        submit_retry(&eng, to, &c, name, NULL);
        struct dp_cpl r = await(&eng, 0, req_id);
        cr_assert_eq(r.status, 0, "create %s: %d", name, r.status);
        return r.handle;
}

static uint64_t stat_sum(size_t off)
{
        uint64_t n = 0;
        for (uint32_t i = 0; i < eng.workers; i++)
                n += dp_counter_get((const dp_counter *)((const uint8_t *)dp_engine_stats(&eng, i) + off));
        return n;
}
#define STAT(field) stat_sum(offsetof(struct dp_worker_stats, field))

/* A subject whose publishes enter at worker w. */
static void subject_on(uint32_t w, const char *prefix, char *out, size_t len)
{
        for (int i = 0; i < 1000; i++) {
                snprintf(out, len, "%s.%d", prefix, i);
                if (dp_engine_shard_of_name(&eng, out, (uint32_t)strlen(out)) == w)
                        return;
        }
        cr_assert_fail("no subject for worker %u", w);
}

/* --- tests --------------------------------------------------------------- */

Test(dp_worker, rejects_bad_configs)
{
        struct dp_engine_config c;
        config_small(&c, DP_WORKERS_MAX + 1);
        cr_assert_eq(dp_engine_init(&eng, &c), -EINVAL);
        config_small(&c, 1);
        c.clients = 0;
        cr_assert_eq(dp_engine_init(&eng, &c), -EINVAL);
        config_small(&c, 1);
        c.cmd_ring_bytes = 3u << 16;
        cr_assert_eq(dp_engine_init(&eng, &c), -EINVAL);
        config_small(&c, 1);
        c.cpl_ring_bytes = DP_CMD_RING_BYTES_MIN; /* below a completion's need */
        cr_assert_eq(dp_engine_init(&eng, &c), -EINVAL);
        config_small(&c, 1);
        c.idle.sleep_min_ns = 0;
        cr_assert_eq(dp_engine_init(&eng, &c), -EINVAL);
        cr_assert_geq(dp_engine_workers_default(), 1);
        cr_assert_eq(dp_idle_kind_parse("always"), DP_IDLE_ALWAYS);
        cr_assert_eq(dp_idle_kind_parse("auto"), DP_IDLE_ADAPTIVE);
        cr_assert_eq(dp_idle_kind_parse("sometimes"), -EINVAL);
}

Test(dp_worker, starts_and_stops_with_one_and_two_workers)
{
        uint64_t req = 1;
        for (uint32_t n = 1; n <= 2; n++) {
                engine_up(n, false);
                /* Published: another view of the fd finds the regions. */
                struct shm_arena other;
                cr_assert_eq(shm_arena_attach(&other, eng.arena.fd), 0);
                cr_assert_not_null(shm_arena_region_find(&other, DP_REGION_ENGINE, "dp.engine"));
                cr_assert_not_null(shm_arena_region_find(&other, DP_REGION_SHARDS, "dp.shards"));
                cr_assert_eq(shm_arena_region_find(&other, SHM_REGION_VRING, "dp.mesh") != NULL,
                             n > 1);
                shm_arena_close(&other);
                for (int round = 0; round < 3; round++) {
                        cr_assert_eq(dp_engine_start(&eng), 0);
                        cr_assert_eq(dp_engine_start_worker(&eng, 0), -EALREADY);
                        for (uint32_t w = 0; w < n; w++) {
                                struct dp_cmd c = cmd(ATOMQ_OP_CREATE, req);
                                cr_assert_eq(dp_engine_submit_to(&eng, w, &c, NULL, NULL), 0);
                                struct dp_cpl r = await(&eng, 0, req++);
                                cr_assert_eq(r.status, 0);
                                cr_assert_eq(r.worker, w);
                                cr_assert_eq(dp_handle_shard(r.handle), w);
                        }
                        dp_engine_stop(&eng);
                }
                engine_down();
        }
}

Test(dp_worker, creates_a_named_entity_on_the_shard_of_its_name)
{
        engine_up(2, true);
        char name[32];
        uint32_t on[2] = { 0, 0 };
        for (uint64_t i = 1; i <= 64; i++) {
                snprintf(name, sizeof(name), "inbox.user%llu", (unsigned long long)i);
                uint32_t owner = dp_engine_shard_of_name(&eng, name, (uint32_t)strlen(name));
                cr_assert_eq(owner, dp_engine_shard_of_name(&eng, name, (uint32_t)strlen(name)));
                /* Half straight to the owner, half through worker 0. */
                uint64_t h = create_named(name, i, i % 2 ? -1 : 0);
                cr_assert_eq(dp_handle_shard(h), owner, "%s", name);
                cr_assert_eq(cpls[i].worker, owner);
                on[owner]++;
        }
        cr_assert_gt(on[0], 0);
        cr_assert_gt(on[1], 0);
        /* Through worker 0, the names of shard 1 crossed the mesh. */
        cr_assert_gt(dp_counter_get(&dp_engine_stats(&eng, 0)->forwarded), 0);
        /* Taken: the same name again is -EEXIST, from whichever ring. */
        struct dp_cmd c = cmd(ATOMQ_OP_CREATE, 100);
        c.name_len = (uint16_t)strlen("inbox.user1");
        cr_assert_eq(dp_engine_submit_to(&eng, 1, &c, "inbox.user1", NULL), 0);
        cr_assert_eq(await(&eng, 0, 100).status, -EEXIST);
}

Test(dp_worker, every_command_gets_exactly_one_completion)
{
        engine_up(2, true);
        const uint32_t n = 600, boxes = n / 6, base = 1000;
        char name[32];
        /* The mailboxes the sends below go to exist first: a send taking
         * another path than its create could overtake it. */
        for (uint32_t b = 0; b < boxes; b++) {
                struct dp_cmd c = cmd(ATOMQ_OP_CREATE, base + b);
                snprintf(name, sizeof(name), "q.%u", b);
                c.name_len = (uint16_t)strlen(name);
                c.args.create.mode = DP_MODE_MAILBOX;
                submit_retry(&eng, -1, &c, name, NULL);
        }
        await_total(&eng, 0, boxes);
        for (uint32_t i = 0; i < n; i++) {
                struct dp_cmd c = cmd(ATOMQ_OP_CREATE, i);
                struct dp_msg_in m = msg_of(NULL, "x", 1);
                switch (i % 6) {
                case 0: /* named create */
                        snprintf(name, sizeof(name), "r.%u", i / 6);
                        c.name_len = (uint16_t)strlen(name);
                        c.args.create.mode = DP_MODE_MAILBOX;
                        submit_retry(&eng, -1, &c, name, NULL);
                        break;
                case 1: /* send by name, through either worker */
                        snprintf(name, sizeof(name), "q.%u", i / 6);
                        c.op = ATOMQ_OP_SEND;
                        c.name_len = (uint16_t)strlen(name);
                        submit_retry(&eng, (int)(i / 6 % 2), &c, name, &m);
                        break;
                case 2: /* anonymous create */
                        submit_retry(&eng, -1, &c, NULL, NULL);
                        break;
                case 3: /* fetch with a bad max: -EINVAL from the worker */
                        c.op = ATOMQ_OP_FETCH;
                        c.handle = dp_handle_make(1, 3, 1);
                        submit_retry(&eng, 0, &c, NULL, NULL);
                        break;
                case 4: /* ack of a slot out of range */
                        c.op = ATOMQ_OP_ACK;
                        c.handle = dp_handle_make(0, 1u << 30, 1);
                        submit_retry(&eng, 1, &c, NULL, NULL);
                        break;
                default: /* publish nobody hears */
                        c.op = ATOMQ_OP_PUB;
                        m.subject = "nobody.listens";
                        m.subject_len = (uint32_t)strlen(m.subject);
                        submit_retry(&eng, -1, &c, NULL, &m);
                        break;
                }
        }
        await_total(&eng, 0, boxes + n);
        /* Nothing more comes. */
        cr_assert_eq(dp_engine_wait(&eng, 0, on_cpl, NULL, 256, 100 * MS), 0);
        for (uint32_t i = 0; i < n; i++)
                cr_assert_eq(seen[i], 1, "request %u: %u completions", i, seen[i]);
        for (uint32_t b = 0; b < boxes; b++)
                cr_assert_eq(seen[base + b], 1);
        for (uint32_t i = 0; i < n; i += 6) {
                cr_assert_eq(cpls[i].status, 0);
                cr_assert_eq(cpls[i + 1].status, 0, "send %u: %d", i + 1, cpls[i + 1].status);
                cr_assert_eq(cpls[i + 2].status, 0);
                cr_assert_eq(cpls[i + 3].status, -EINVAL);
                cr_assert_eq(cpls[i + 4].status, -EINVAL);
                cr_assert_eq(cpls[i + 5].status, 0);
        }
        cr_assert_eq(STAT(cpls), boxes + n);
        cr_assert_eq(STAT(bad_records), 0);
}

Test(dp_worker, stale_handle_is_estale_through_the_command_path)
{
        engine_up(2, true);
        uint64_t h = create_named("orders.eu", 1, -1);
        struct dp_cmd c = cmd(ATOMQ_OP_DESTROY, 2);
        c.handle = h;
        cr_assert_eq(dp_engine_submit(&eng, &c, NULL, NULL), 0);
        cr_assert_eq(await(&eng, 0, 2).status, 0);

        struct dp_msg_in m = msg_of(NULL, "late", 4);
        c = cmd(ATOMQ_OP_SEND, 3);
        c.handle = h;
        cr_assert_eq(dp_engine_submit(&eng, &c, NULL, &m), 0);
        cr_assert_eq(await(&eng, 0, 3).status, -ESTALE);
        c = cmd(ATOMQ_OP_DESTROY, 4);
        c.handle = h;
        cr_assert_eq(dp_engine_submit(&eng, &c, NULL, NULL), 0);
        cr_assert_eq(await(&eng, 0, 4).status, -ESTALE);

        /* The name comes back with a new generation; the old handle stays
         * stale, even through the other worker's ring. */
        uint64_t h2 = create_named("orders.eu", 5, -1);
        cr_assert_neq(h2, h);
        c = cmd(ATOMQ_OP_FETCH, 6);
        c.handle = h;
        c.args.fetch.max = 4;
        cr_assert_eq(dp_engine_submit_to(&eng, 1 - dp_handle_shard(h), &c, NULL, NULL), 0);
        cr_assert_eq(await(&eng, 0, 6).status, -ESTALE);
        /* A handle of no shard of this engine is refused by the submitter. */
        c.handle = dp_handle_make(7, 1, 1);
        cr_assert_eq(dp_engine_submit(&eng, &c, NULL, NULL), -EINVAL);
}

Test(dp_worker, full_command_ring_is_an_error_not_a_hang)
{
        engine_up(1, false);
        uint32_t k = 0;
        int rc = 0;
        uint64_t t0_ns = shm_clock_ns();
        for (; k < 100000; k++) {
                struct dp_cmd c = cmd(ATOMQ_OP_CREATE, k);
                rc = dp_engine_submit(&eng, &c, NULL, NULL);
                if (rc != 0)
                        break;
        }
        cr_assert_eq(rc, -ENOBUFS);
        cr_assert_gt(k, 100);
        cr_assert_lt(shm_clock_ns() - t0_ns, 1000 * MS);
        cr_log_info("command ring full after %u commands", k);
        cr_assert_eq(dp_engine_start(&eng), 0);
        await_total(&eng, 0, k);
        for (uint32_t i = 0; i < k; i++)
                cr_assert_eq(seen[i], 1);
}

Test(dp_worker, full_completion_ring_holds_commands_back)
{
        engine_up(1, true);
        /* Nobody reads completions: the worker fills the completion ring,
         * then leaves commands in the command ring, which fills too. */
        struct dp_cmd c = cmd(ATOMQ_OP_ACK, 0);
        c.handle = dp_handle_make(0, 1u << 30, 1);
        uint32_t k = 0;
        uint64_t full_since_ns = 0;
        while (k < REQS) {
                c.req_id = k;
                int rc = dp_engine_submit(&eng, &c, NULL, NULL);
                if (rc == 0) {
                        k++;
                        full_since_ns = 0;
                        continue;
                }
                cr_assert_eq(rc, -ENOBUFS);
                if (full_since_ns == 0)
                        full_since_ns = shm_clock_ns();
                else if (shm_clock_ns() - full_since_ns > 200 * MS)
                        break;
                sched_yield();
        }
        cr_assert_lt(k, REQS, "the rings never filled");
        cr_assert_gt(dp_counter_get(&dp_engine_stats(&eng, 0)->cpl_full), 0);
        cr_log_info("held back after %u commands", k);
        await_total(&eng, 0, k);
        for (uint32_t i = 0; i < k; i++) {
                cr_assert_eq(seen[i], 1);
                cr_assert_eq(cpls[i].status, -EINVAL);
        }
        cr_assert_eq(STAT(cpl_lost), 0);
}

Test(dp_worker, full_mesh_ring_holds_commands_back)
{
        engine_up(2, false);
        cr_assert_eq(dp_engine_start_worker(&eng, 1), 0);
        /* Worker 1 forwards sends for names of shard 0 to worker 0, which is
         * not running: the mesh ring fills, then worker 1 holds its own
         * ring back, which fills too; nothing is lost. */
        char name[32];
        subject_on(0, "nowhere", name, sizeof(name));
        struct dp_msg_in m = msg_of(NULL, "x", 1);
        struct dp_cmd c = cmd(ATOMQ_OP_SEND, 0);
        c.name_len = (uint16_t)strlen(name);
        uint32_t k = 0;
        uint64_t full_since_ns = 0;
        while (k < REQS) {
                c.req_id = k;
                int rc = dp_engine_submit_to(&eng, 1, &c, name, &m);
                if (rc == 0) {
                        k++;
                        full_since_ns = 0;
                        continue;
                }
                cr_assert_eq(rc, -ENOBUFS);
                if (full_since_ns == 0)
                        full_since_ns = shm_clock_ns();
                else if (shm_clock_ns() - full_since_ns > 200 * MS)
                        break;
                sched_yield();
        }
        cr_assert_lt(k, REQS, "the rings never filled");
        cr_assert_gt(dp_counter_get(&dp_engine_stats(&eng, 1)->mesh_full), 0);
        cr_assert_eq(cpl_total, 0);
        cr_log_info("held back after %u commands", k);
        cr_assert_eq(dp_engine_start_worker(&eng, 0), 0);
        await_total(&eng, 0, k);
        for (uint32_t i = 0; i < k; i++) {
                cr_assert_eq(seen[i], 1);
                cr_assert_eq(cpls[i].status, -ENOENT);
                cr_assert_eq(cpls[i].worker, 0);
        }
}

static uint64_t subscribe(int to, uint64_t req, const char *pattern, uint32_t group,
                          uint32_t endpoint)
{
        struct dp_cmd c = cmd(ATOMQ_OP_SUB, req);
        c.name_len = (uint16_t)strlen(pattern);
        c.args.sub = (struct dp_cmd_sub){ .group = group, .endpoint = endpoint, .sid = endpoint };
        submit_retry(&eng, to, &c, pattern, NULL);
        struct dp_cpl r = await(&eng, 0, req);
        cr_assert_eq(r.status, 0);
        return r.handle;
}

static void publish(uint64_t req, const char *subject, uint32_t seq)
{
        struct dp_cmd c = cmd(ATOMQ_OP_PUB, req);
        struct dp_msg_in m = msg_of(subject, &seq, sizeof(seq));
        submit_retry(&eng, -1, &c, NULL, &m);
}

Test(dp_worker, publish_reaches_subscribers_on_every_shard)
{
        engine_up(2, true);
        uint64_t s0 = subscribe(0, 1, "news.>", 0, 10);
        uint64_t s1 = subscribe(1, 2, "news.>", 0, 11);
        cr_assert_eq(dp_handle_shard(s0), 0);
        cr_assert_eq(dp_handle_shard(s1), 1);
        /* A queue group's members live on the group's shard, whichever
         * worker they subscribed through. */
        uint64_t g0 = subscribe(0, 3, "news.*", 5, 20);
        uint64_t g1 = subscribe(1, 4, "news.*", 5, 21);
        cr_assert_eq(dp_handle_shard(g0), dp_engine_shard_of_group(&eng, 5));
        cr_assert_eq(dp_handle_shard(g1), dp_engine_shard_of_group(&eng, 5));

        char subj[2][32];
        subject_on(0, "news", subj[0], sizeof(subj[0]));
        subject_on(1, "news", subj[1], sizeof(subj[1]));
        for (uint32_t i = 0; i < 10; i++)
                publish(100 + i, subj[i % 2], i);
        await_total(&eng, 0, 14);
        /* Each shard: its own subscriber, plus the group's shard one member
         * per publish. */
        uint32_t gs = dp_engine_shard_of_group(&eng, 5);
        await_deliveries(0, gs == 0 ? 20 : 10);
        await_deliveries(1, gs == 1 ? 20 : 10);
        uint32_t per_ep[32] = { 0 };
        for (int w = 0; w < 2; w++)
                for (uint32_t i = 0; i < dlog_count(w); i++)
                        per_ep[dlogs[w].endpoint[i]]++;
        cr_assert_eq(per_ep[10], 10);
        cr_assert_eq(per_ep[11], 10);
        cr_assert_eq(per_ep[20] + per_ep[21], 10);
        cr_assert_gt(STAT(fanouts), 0);

        /* Unsubscribing routes by the id's shard; then only 11 hears. */
        struct dp_cmd c = cmd(ATOMQ_OP_UNSUB, 200);
        c.handle = s0;
        cr_assert_eq(dp_engine_submit(&eng, &c, NULL, NULL), 0);
        cr_assert_eq(await(&eng, 0, 200).status, 0);
        c.req_id = 201;
        c.handle = g0;
        cr_assert_eq(dp_engine_submit(&eng, &c, NULL, NULL), 0);
        cr_assert_eq(await(&eng, 0, 201).status, 0);
        c.req_id = 202;
        c.handle = g1;
        cr_assert_eq(dp_engine_submit(&eng, &c, NULL, NULL), 0);
        cr_assert_eq(await(&eng, 0, 202).status, 0);
        publish(203, subj[0], 99);
        await_deliveries(1, (gs == 1 ? 20 : 10) + 1);
        cr_assert_eq(dlog_count(0), gs == 0 ? 20 : 10);
}

Test(dp_worker, one_publishers_order_survives_the_mesh)
{
        engine_up(2, true);
        subscribe(0, 1, "orders.>", 0, 1);
        subscribe(1, 2, "orders.>", 0, 2);
        char subj[2][32];
        subject_on(0, "orders", subj[0], sizeof(subj[0]));
        subject_on(1, "orders", subj[1], sizeof(subj[1]));
        const uint32_t n = 2000;
        uint64_t t0_ns = shm_clock_ns();
        /* Interleaved: one subject enters at worker 0, the other at 1. */
        for (uint32_t i = 0; i < n; i++) {
                publish(10 + 2 * i, subj[0], i);
                publish(11 + 2 * i, subj[1], i);
        }
        await_total(&eng, 0, 2 + 2 * n);
        await_deliveries(0, 2 * n);
        await_deliveries(1, 2 * n);
        cr_log_info("%u publishes to two shards in %.1f ms", 2 * n,
                    (double)(shm_clock_ns() - t0_ns) / 1e6);
        for (int w = 0; w < 2; w++) {
                uint32_t next[2] = { 0, 0 };
                for (uint32_t i = 0; i < dlog_count(w); i++) {
                        int s = strcmp(dlogs[w].subject[i], subj[0]) == 0 ? 0 : 1;
                        cr_assert_eq(dlogs[w].seq[i], next[s], "worker %d, subject %s: %u, wanted %u",
                                     w, subj[s], dlogs[w].seq[i], next[s]);
                        next[s]++;
                }
                cr_assert_eq(next[0], n);
                cr_assert_eq(next[1], n);
        }
}

Test(dp_worker, fetch_hands_out_messages_inline_and_ack_removes_them)
{
        engine_up(2, true);
        uint64_t h = create_named("box.1", 1, -1);
        for (uint32_t i = 0; i < 5; i++) {
                char p[8];
                snprintf(p, sizeof(p), "m%u", i);
                struct dp_msg_in m = msg_of(NULL, p, (uint32_t)strlen(p));
                struct dp_cmd c = cmd(ATOMQ_OP_SEND, 10 + i);
                c.name_len = 5;
                cr_assert_eq(dp_engine_submit(&eng, &c, "box.1", &m), 0);
                struct dp_cpl r = await(&eng, 0, 10 + i);
                cr_assert_eq(r.status, 0);
                cr_assert_eq(r.seq, i);
                cr_assert_eq(r.handle, h);
        }
        struct dp_cmd c = cmd(ATOMQ_OP_FETCH, 20);
        c.handle = h;
        c.args.fetch.max = 3;
        cr_assert_eq(dp_engine_submit(&eng, &c, NULL, NULL), 0);
        cr_assert_eq(await(&eng, 0, 20).count, 3);
        for (uint32_t i = 0; i < 3; i++) {
                char p[8];
                snprintf(p, sizeof(p), "m%u", i);
                cr_assert_str_eq(fetched[i], p);
                cr_assert_eq(fetched_seq[i], i);
                struct dp_cmd a = cmd(ATOMQ_OP_ACK, 30 + i);
                a.handle = h;
                a.seq = i;
                cr_assert_eq(dp_engine_submit(&eng, &a, NULL, NULL), 0);
                cr_assert_eq(await(&eng, 0, 30 + i).status, 0);
        }
        c.req_id = 21;
        c.args.fetch.max = DP_FETCH_MAX;
        cr_assert_eq(dp_engine_submit(&eng, &c, NULL, NULL), 0);
        cr_assert_eq(await(&eng, 0, 21).count, 2);
        cr_assert_str_eq(fetched[0], "m3");
        cr_assert_str_eq(fetched[1], "m4");
        c.req_id = 22;
        c.args.fetch.max = DP_FETCH_MAX + 1;
        cr_assert_eq(dp_engine_submit(&eng, &c, NULL, NULL), 0);
        cr_assert_eq(await(&eng, 0, 22).status, -EINVAL);
}

/* CPU time of worker i's thread so far. */
static uint64_t worker_cpu_ns(uint32_t i)
{
        clockid_t cid;
        struct timespec ts;
        cr_assert_eq(pthread_getcpuclockid(eng.w[i].thread, &cid), 0);
        cr_assert_eq(clock_gettime(cid, &ts), 0);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

Test(dp_worker, idle_workers_back_off)
{
        engine_up(2, true);
        create_named("warm.up", 1, -1);
        struct timespec settle = { 0, 100 * MS };
        nanosleep(&settle, NULL);
        uint64_t cpu0[2] = { worker_cpu_ns(0), worker_cpu_ns(1) };
        uint64_t t0_ns = shm_clock_ns();
        struct timespec second = { 1, 0 };
        nanosleep(&second, NULL);
        double wall_ns = (double)(shm_clock_ns() - t0_ns);
        for (uint32_t i = 0; i < 2; i++) {
                double share = (double)(worker_cpu_ns(i) - cpu0[i]) / wall_ns;
                cr_log_info("idle worker %u: %.2f%% of a core, %llu sleeps", i, 100 * share,
                            (unsigned long long)dp_counter_get(&dp_engine_stats(&eng, i)->idle.sleeps));
                cr_assert_lt(share, 0.10, "idle worker %u used %.1f%% of a core", i, 100 * share);
                cr_assert_gt(dp_counter_get(&dp_engine_stats(&eng, i)->idle.sleeps), 0);
        }
        /* Asleep, a worker still answers at once: the submit notifies. */
        uint64_t s_ns = shm_clock_ns();
        create_named("after.sleep", 2, -1);
        cr_log_info("first command after idle: %.1f us", (double)(shm_clock_ns() - s_ns) / 1e3);
}

Test(dp_worker, busy_poll_always_pins_each_worker)
{
        struct dp_engine_config c;
        config_small(&c, 2);
        c.idle.kind = DP_IDLE_ALWAYS;
        cr_assert_eq(dp_engine_init(&eng, &c), 0);
        cr_assert_eq(dp_engine_start(&eng), 0);
        /* An answer from each worker: each runner has pinned itself. */
        for (uint32_t i = 0; i < 2; i++) {
                struct dp_cmd k = cmd(ATOMQ_OP_CREATE, 1 + i);
                cr_assert_eq(dp_engine_submit_to(&eng, i, &k, NULL, NULL), 0);
                cr_assert_eq(await(&eng, 0, 1 + i).worker, i);
        }
        cpu_set_t allowed;
        cr_assert_eq(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
        for (uint32_t i = 0; i < 2; i++) {
                cpu_set_t got;
                cr_assert_eq(pthread_getaffinity_np(eng.w[i].thread, sizeof(got), &got), 0);
                cr_assert_eq(CPU_COUNT(&got), 1, "worker %u not pinned", i);
                int want = (int)(i % (uint32_t)CPU_COUNT(&allowed));
                for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
                        if (!CPU_ISSET(cpu, &allowed))
                                continue;
                        if (want-- == 0) {
                                cr_assert(CPU_ISSET(cpu, &got), "worker %u not on cpu %d", i, cpu);
                                break;
                        }
                }
                cr_assert_eq(dp_counter_get(&dp_engine_stats(&eng, i)->idle.sleeps), 0);
                cr_assert_eq(dp_counter_get(&dp_engine_stats(&eng, i)->idle.pin_errors), 0);
        }
}

/* Writes a raw record into worker 0's command ring. */
static void raw(uint32_t type, const void *buf, uint32_t len)
{
        cr_assert_eq(shm_mpsc_write(&eng.cmd_prod[0], type, buf, len), 0);
        shm_mpsc_notify(&eng.cmd_prod[0]);
}

Test(dp_worker, malformed_records_are_counted_and_skipped)
{
        engine_up(1, true);
        static uint8_t buf[20000] __attribute__((aligned(8)));
        struct dp_cmd h = { .magic = DP_CMD_MAGIC, .version = DP_CMD_VERSION,
                            .op = ATOMQ_OP_CREATE, .req_id = 1 };
        /* Unusable: counted and skipped, nobody to answer. */
        memcpy(buf, &h, sizeof(h));
        raw(DP_REC_CMD + 1, buf, sizeof(h));                 /* not a command */
        raw(DP_REC_CMD, buf, 8);                              /* shorter than a header */
        struct dp_cmd bad = h;
        bad.magic = 0xdead;
        raw(DP_REC_CMD, &bad, sizeof(bad));                   /* magic */
        bad = h;
        bad.client = 7;
        raw(DP_REC_CMD, &bad, sizeof(bad));                   /* no such client */
        bad = h;
        bad.op = ATOMQ_OP_PING;
        raw(DP_REC_CMD, &bad, sizeof(bad));                   /* not a command op */
        /* Usable header, bad body: answered. */
        bad = h;
        bad.req_id = 2;
        bad.name_len = 10;
        raw(DP_REC_CMD, &bad, sizeof(bad));                   /* name past the end */
        bad = h;
        bad.req_id = 3;
        bad.op = ATOMQ_OP_SEND;
        bad.handle = dp_handle_make(0, 1, 1);
        bad.frame_len = 48;
        memcpy(buf, &bad, sizeof(bad));
        memset(buf + sizeof(bad), 0x5a, 48);
        raw(DP_REC_CMD, buf, sizeof(bad) + 48);               /* frame without magic */
        bad = h;
        bad.req_id = 4;
        bad.frame_len = 20000 - sizeof(bad);
        memcpy(buf, &bad, sizeof(bad));
        raw(DP_REC_CMD, buf, 20000);                          /* above DP_CMD_BYTES_MAX */
        bad = h;
        bad.req_id = 5;
        bad.frame_len = 8;
        memcpy(buf, &bad, sizeof(bad));
        raw(DP_REC_CMD, buf, sizeof(bad) + 8);                /* a frame on a create */
        /* And the worker carries on. */
        struct dp_cmd c = cmd(ATOMQ_OP_CREATE, 6);
        cr_assert_eq(dp_engine_submit(&eng, &c, NULL, NULL), 0);
        cr_assert_eq(await(&eng, 0, 6).status, 0);
        await_total(&eng, 0, 5);
        cr_assert_eq(seen[1], 0);
        cr_assert_eq(cpls[2].status, -EINVAL);
        cr_assert_eq(cpls[3].status, -EINVAL);
        cr_assert_eq(cpls[4].status, -EMSGSIZE);
        cr_assert_eq(cpls[5].status, -EINVAL);
        cr_assert_eq(dp_counter_get(&dp_engine_stats(&eng, 0)->bad_records), 9);
        cr_assert_eq(dp_counter_get(&dp_engine_stats(&eng, 0)->ring_errors), 0);
}
