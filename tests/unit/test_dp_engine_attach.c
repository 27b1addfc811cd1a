/* test_dp_engine_attach.c - a dataplane that did not build the arena
 * attaches it (dp_engine_attach) and carries on after SIGKILL with the
 * same entities and queued messages; attach refuses what does not add up
 * and counts what a half-applied command leaves; atomq-dataplane's command
 * line and its parent checks; atomqd's supervision (ctl_super) restarting
 * the real binary, rate-limited.
 *
 * The test process is atomqd here: it creates the arena (dp_engine_init,
 * never started) and is client 0. Workers run in forked children (suite
 * dp_engine_attach) or in the real atomq-dataplane, whose path meson
 * passes in ATOMQ_DATAPLANE (suites dp_main, ctl_super).
 *
 *      meson test -C build dp_engine_attach
 *      ATOMQ_DATAPLANE=build/dataplane/atomq-dataplane \
 *              build/tests/test_dp_engine_attach --verbose     # with timings
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "control/ctl_super.h"
#include "dataplane/dp_engine.h"
#include "shm/shm_clock.h"
#include "shm/shm_log.h"

#define MS 1000000ll
#define REQS 4096u
#define FETCHED_MAX 1024u
#define KIDS_MAX 8

/* --- completions, by request id -------------------------------------- */

static struct dp_cpl cpls[REQS];
static uint32_t seen[REQS];
static uint32_t cpl_total;
static char fetched[FETCHED_MAX][16]; /* payloads of every fetch, in order */
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
        while (dp_cpl_msg_next(c, len, &off, &m) == 1) {
                cr_assert_lt(fetched_n, FETCHED_MAX);
                size_t n = m.frame.payload_len < 15 ? m.frame.payload_len : 15;
                memcpy(fetched[fetched_n], m.payload, n);
                fetched[fetched_n++][n] = '\0';
        }
}

/* --- the creator's engine and the children that run its workers ------- */

static struct dp_engine eng;
static pid_t kids[KIDS_MAX];

static void config_small(struct dp_engine_config *c, uint32_t workers)
{
        dp_engine_config_default(c, 1024);
        c->workers = workers;
        c->cmd_ring_bytes = DP_CMD_RING_BYTES_MIN;
        c->mesh_ring_bytes = DP_CMD_RING_BYTES_MIN;
        c->cpl_ring_bytes = DP_CPL_RING_BYTES_MIN;
        c->hugepages = SHM_HUGEPAGES_OFF;
        c->shard.max_msgs = 4096;
        c->shard.max_subs = 256;
        c->shard.max_trie_nodes = 1024;
        c->shard.trie_token_bytes = 16 * 1024;
        c->shard.max_bindings = 256;
        c->shard.max_cursors = 16;
        c->shard.bufs[0].block_count = 4096;
        c->shard.bufs[1].block_count = 16;
        c->shard.bufs[2].block_count = 2;
        c->shard.bufs[3].block_count = 1;
}

static void engine_up(uint32_t workers)
{
        struct dp_engine_config c;
        config_small(&c, workers);
        cr_assert_eq(dp_engine_init(&eng, &c), 0);
}

static void kids_reap(void)
{
        for (int i = 0; i < KIDS_MAX; i++) {
                if (kids[i] == 0)
                        continue;
                kill(kids[i], SIGKILL);
                waitpid(kids[i], NULL, 0);
                kids[i] = 0;
        }
}

static void engine_down(void)
{
        kids_reap();
        dp_engine_fini(&eng);
}

static void kid_track(pid_t pid, bool add)
{
        for (int i = 0; i < KIDS_MAX; i++) {
                if (add ? kids[i] == 0 : kids[i] == pid) {
                        kids[i] = add ? pid : 0;
                        return;
                }
        }
        cr_assert_fail("too many children");
}

/* Waits up to timeout_ms for fd to be readable. */
static bool readable(int fd, int timeout_ms)
{
        struct pollfd p = { .fd = fd, .events = POLLIN };
        return poll(&p, 1, timeout_ms) == 1;
}

/* Forks a dataplane stand-in: it attaches the arena and runs the workers
 * until killed. Returns its pid once it runs. */
static pid_t worker_proc_start(int fd)
{
        int p[2];
        cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                /* No orphan outlives a failed test. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                struct dp_engine ce;
                int rc = dp_engine_attach(&ce, fd, NULL);
                if (rc == 0)
                        rc = dp_engine_start(&ce);
                if (write(p[1], &rc, sizeof(rc)) != sizeof(rc) || rc != 0)
                        _exit(1);
                for (;;)
                        pause();
        }
        close(p[1]);
        kid_track(pid, true);
        int rc = -1;
        cr_assert(readable(p[0], 5000), "the child did not attach in time");
        cr_assert_eq(read(p[0], &rc, sizeof(rc)), (ssize_t)sizeof(rc));
        cr_assert_eq(rc, 0, "child attach/start: %d", rc);
        close(p[0]);
        return pid;
}

static void worker_proc_kill(pid_t pid)
{
        int st;
        cr_assert_eq(kill(pid, SIGKILL), 0);
        cr_assert_eq(waitpid(pid, &st, 0), pid);
        cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        kid_track(pid, false);
}

/* --- commands through the creator's engine (client 0) ------------------ */

static struct dp_cpl await(uint64_t req_id)
{
        uint64_t deadline_ns = shm_clock_ns() + 5000 * MS;
        while (seen[req_id] == 0) {
                cr_assert_lt(shm_clock_ns(), deadline_ns, "no completion for request %llu",
                             (unsigned long long)req_id);
                dp_engine_wait(&eng, 0, on_cpl, NULL, 64, 10 * MS);
        }
        return cpls[req_id];
}

static void submit_retry(const struct dp_cmd *c, const char *name, const struct dp_msg_in *m)
{
        uint64_t deadline_ns = shm_clock_ns() + 10000 * MS;
        for (;;) {
                int rc = dp_engine_submit(&eng, c, name, m);
                if (rc == 0)
                        return;
                cr_assert_eq(rc, -ENOBUFS, "submit: %d", rc);
                cr_assert_lt(shm_clock_ns(), deadline_ns, "command ring stays full");
                dp_engine_wait(&eng, 0, on_cpl, NULL, 256, 1 * MS);
        }
}

static int create_mailbox(const char *name, uint64_t req, uint64_t *handle)
{
        struct dp_cmd c = { .op = ATOMQ_OP_CREATE, .req_id = req,
                            .name_len = (uint16_t)strlen(name) };
        c.args.create.mode = DP_MODE_MAILBOX;
        submit_retry(&c, name, NULL);
        struct dp_cpl r = await(req);
        *handle = r.handle;
        return r.status;
}

static void send_async(const char *name, const char *payload, uint64_t req)
{
        struct dp_msg_in m = { .payload = payload, .payload_len = (uint32_t)strlen(payload),
                               .storage = -1 };
        struct dp_cmd c = { .op = ATOMQ_OP_SEND, .req_id = req,
                            .name_len = (uint16_t)strlen(name) };
        submit_retry(&c, name, &m);
}

/* Fetches everything handle holds; returns the count (payloads are
 * appended to fetched[]). */
static uint32_t fetch_all(uint64_t handle, uint64_t *req)
{
        uint32_t total = 0;
        for (int round = 0; round < 64; round++) {
                struct dp_cmd c = { .op = ATOMQ_OP_FETCH, .req_id = *req, .handle = handle };
                c.args.fetch.max = DP_FETCH_MAX;
                submit_retry(&c, NULL, NULL);
                struct dp_cpl r = await((*req)++);
                cr_assert_eq(r.status, 0, "fetch: %d", r.status);
                if (r.count == 0)
                        return total;
                total += r.count;
        }
        cr_assert_fail("fetch never ran dry");
        return total;
}

/* A name that lives on shard w. */
static void name_on(uint32_t w, const char *prefix, char *out, size_t len)
{
        for (int i = 0; i < 1000; i++) {
                snprintf(out, len, "%s.%d", prefix, i);
                if (dp_engine_shard_of_name(&eng, out, (uint32_t)strlen(out)) == w)
                        return;
        }
        cr_assert_fail("no name for shard %u", w);
}

/* Waits until every command and mesh ring is empty: the workers have
 * released all they executed, so a SIGKILL now replays nothing. */
static void await_rings_empty(void)
{
        uint64_t deadline_ns = shm_clock_ns() + 5000 * MS;
        for (;;) {
                bool empty = true;
                uint32_t n = eng.workers;
                for (uint32_t i = 0; i < n; i++) {
                        const struct shm_mpsc_hdr *h = eng.cmd_prod[i].hdr;
                        empty &= atomic_load(&h->head) == atomic_load(&h->tail);
                        for (uint32_t j = 0; j < n; j++) {
                                if (j == i)
                                        continue;
                                const struct shm_vring_hdr *v = eng.mesh_prod[i * n + j].hdr;
                                empty &= atomic_load(&v->head) == atomic_load(&v->tail);
                        }
                }
                if (empty)
                        return;
                cr_assert_lt(shm_clock_ns(), deadline_ns, "the rings do not drain");
                struct timespec ts = { 0, 1000000 };
                nanosleep(&ts, NULL);
        }
}

/* One mailbox on each of the two shards, named prefix.N. */
static void mailboxes_up(const char *prefix, char box[2][32], uint64_t h[2], uint64_t *req)
{
        for (uint32_t w = 0; w < 2; w++) {
                name_on(w, prefix, box[w], 32);
                cr_assert_eq(create_mailbox(box[w], (*req)++, &h[w]), 0);
                cr_assert_eq(dp_handle_shard(h[w]), w);
        }
}

TestSuite(dp_engine_attach, .fini = engine_down, .timeout = 60);

/* --- carrying on after SIGKILL -------------------------------------------- */

Test(dp_engine_attach, keeps_entities_and_queued_messages_across_sigkill)
{
        engine_up(2);
        char box[2][32];
        uint64_t h[2], req = 1;
        pid_t a = worker_proc_start(eng.arena.fd);
        mailboxes_up("box", box, h, &req);
        for (uint32_t i = 0; i < 10; i++) {
                char p[16];
                snprintf(p, sizeof(p), "m%u", i);
                send_async(box[i % 2], p, 100 + i);
        }
        for (uint32_t i = 0; i < 10; i++)
                cr_assert_eq(await(100 + i).status, 0);
        await_rings_empty();
        worker_proc_kill(a);

        worker_proc_start(eng.arena.fd);
        const struct dp_engine_audit *au = &eng.hdr->audit;
        cr_assert_eq(eng.hdr->attaches, 2);
        cr_assert_eq(au->leaked_slots + au->leaked_msgs + au->unindexed + au->count_skew +
                     au->cmd_rings_stuck, 0);
        /* Exactly what was queued, in order, on each shard. */
        for (uint32_t w = 0; w < 2; w++) {
                fetched_n = 0;
                cr_assert_eq(fetch_all(h[w], &req), 5);
                for (uint32_t k = 0; k < 5; k++) {
                        char p[16];
                        snprintf(p, sizeof(p), "m%u", 2 * k + w);
                        cr_assert_str_eq(fetched[k], p);
                }
        }
        /* The names are still taken, the handles still good. */
        uint64_t again;
        cr_assert_eq(create_mailbox(box[0], req++, &again), -EEXIST);
        send_async(box[1], "late", req);
        cr_assert_eq(await(req).status, 0);
        cr_assert_eq(await(req).handle, h[1]);
}

Test(dp_engine_attach, sigkill_mid_traffic_loses_no_completed_send)
{
        engine_up(2);
        const uint32_t n = 400, base = 1000;
        char box[2][32];
        uint64_t h[2], req = 1;
        pid_t a = worker_proc_start(eng.arena.fd);
        mailboxes_up("traffic", box, h, &req);
        await_rings_empty();
        for (uint32_t i = 0; i < n; i++) {
                char p[16];
                snprintf(p, sizeof(p), "t%u", i);
                send_async(box[i % 2], p, base + i);
                /* Killed while it works on the sends; the next one finds
                 * whatever that left. */
                if (i == n / 2) {
                        worker_proc_kill(a);
                        worker_proc_start(eng.arena.fd);
                        /* The known limit (dp_engine_attach.c): killed inside
                         * shm_mpsc_release, the worker leaves its command ring
                         * stuck; about one kill in a thousand under load.
                         * Nothing below can complete then. */
                        if (eng.hdr->audit.cmd_rings_stuck != 0)
                                cr_skip_test("the kill landed inside shm_mpsc_release: a "
                                             "command ring is stuck (known limit)");
                }
        }
        uint64_t deadline_ns = shm_clock_ns() + 10000 * MS;
        for (uint32_t i = 0; i < n; i++) {
                while (seen[base + i] == 0) {
                        cr_assert_lt(shm_clock_ns(), deadline_ns, "send %u never completed", i);
                        dp_engine_wait(&eng, 0, on_cpl, NULL, 256, 10 * MS);
                }
                /* At least once: a command the dead worker had executed but
                 * not released runs again. */
                cr_assert_leq(seen[base + i], 2);
                cr_assert_eq(cpls[base + i].status, 0);
        }
        fetched_n = 0;
        uint32_t got = fetch_all(h[0], &req) + fetch_all(h[1], &req);
        /* Every send is there; at most one per shard twice (the one in
         * flight on its command ring). */
        cr_assert_geq(got, n);
        cr_assert_leq(got, n + 2);
        static uint8_t count[400];
        for (uint32_t k = 0; k < fetched_n; k++) {
                unsigned i;
                cr_assert_eq(sscanf(fetched[k], "t%u", &i), 1);
                cr_assert_lt(i, n);
                count[i]++;
        }
        for (uint32_t i = 0; i < n; i++)
                cr_assert(count[i] == 1 || count[i] == 2, "message %u fetched %u times", i,
                          count[i]);
        const struct dp_engine_audit *au = &eng.hdr->audit;
        cr_assert_leq(au->leaked_msgs, 2);
        cr_assert_eq(au->leaked_slots + au->unindexed, 0);
}

Test(dp_engine_attach, refuses_a_second_live_owner)
{
        engine_up(2);
        pid_t a = worker_proc_start(eng.arena.fd);
        struct dp_engine other;
        cr_assert_eq(dp_engine_attach(&other, eng.arena.fd, NULL), -EBUSY);
        /* The creator may not run the workers behind the dataplane's back. */
        cr_assert_eq(dp_engine_start(&eng), -EBUSY);
        cr_assert_eq(atomic_load(&eng.hdr->owner_pid), a);
        worker_proc_kill(a);
        /* Dead and reaped: the ownership can be taken over. */
        cr_assert_eq(dp_engine_attach(&other, eng.arena.fd, NULL), 0);
        cr_assert_eq(atomic_load(&eng.hdr->owner_pid), getpid());
        dp_engine_fini(&other);
        cr_assert_eq(atomic_load(&eng.hdr->owner_pid), 0);
}

/* --- what attach refuses --------------------------------------------------- */

Test(dp_engine_attach, refuses_a_bad_fd)
{
        struct dp_engine e;
        int p[2];
        cr_assert_eq(dp_engine_attach(&e, -1, NULL), -EBADF);
        cr_assert_eq(pipe(p), 0);
        cr_assert_eq(dp_engine_attach(&e, p[0], NULL), -EBADF);
        close(p[0]);
        close(p[1]);
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        cr_assert_eq(dp_engine_attach(&e, devnull, NULL), -EBADF);
        close(devnull);
        /* A regular file too small to hold an arena header. */
        int small = memfd_create("small", MFD_CLOEXEC);
        cr_assert_eq(ftruncate(small, 1024), 0);
        cr_assert_eq(dp_engine_attach(&e, small, NULL), -EINVAL);
        /* Big enough, all zeros: not a published arena. */
        cr_assert_eq(ftruncate(small, 1 << 20), 0);
        cr_assert_eq(dp_engine_attach(&e, small, NULL), -EPROTO);
        close(small);
}

Test(dp_engine_attach, refuses_an_arena_without_an_engine)
{
        struct shm_arena a;
        struct shm_arena_config ac = { .bytes = 1 << 20, .hugepages = SHM_HUGEPAGES_OFF,
                                       .numa_node = -1, .name = "not-an-engine" };
        uint64_t off;
        cr_assert_eq(shm_arena_create(&a, &ac), 0);
        cr_assert_eq(shm_arena_region_add(&a, SHM_REGION_RING, "other", 4096, &off), 0);
        struct dp_engine e;
        /* Not published yet, then published without a dp.engine region. */
        cr_assert_eq(dp_engine_attach(&e, a.fd, NULL), -EPROTO);
        cr_assert_eq(shm_arena_publish(&a), 0);
        cr_assert_eq(dp_engine_attach(&e, a.fd, NULL), -EPROTO);
        shm_arena_close(&a);
}

/* Attaches in this process (the creator never started its workers), which
 * must fail with want; then the header is put back. */
#define EXPECT_ATTACH(want, field, value)                                                   \
        do {                                                                                \
                __typeof__(eng.hdr->field) saved_ = eng.hdr->field;                         \
                eng.hdr->field = (value);                                                   \
                struct dp_engine e_;                                                        \
                cr_expect_eq(dp_engine_attach(&e_, eng.arena.fd, NULL), (want),             \
                             "%s = %s", #field, #value);                                    \
                eng.hdr->field = saved_;                                                    \
        } while (0)

Test(dp_engine_attach, refuses_a_corrupted_engine_header)
{
        engine_up(2);
        EXPECT_ATTACH(-EPROTO, magic, 0);
        EXPECT_ATTACH(-EPROTO, version, DP_ENGINE_VERSION + 1);
        EXPECT_ATTACH(-EBADMSG, workers, 0);
        EXPECT_ATTACH(-EBADMSG, workers, 3);
        EXPECT_ATTACH(-EBADMSG, workers, DP_WORKERS_MAX + 1);
        EXPECT_ATTACH(-EBADMSG, clients, 0);
        EXPECT_ATTACH(-EBADMSG, clients, 2);
        EXPECT_ATTACH(-EBADMSG, cmd_ring_bytes, 3u << 16);
        EXPECT_ATTACH(-EBADMSG, cpl_ring_bytes, DP_CPL_RING_BYTES_MIN * 2);
        EXPECT_ATTACH(-EBADMSG, shard_stride, eng.hdr->shard_stride + 4096);
        EXPECT_ATTACH(-EBADMSG, shards_off, eng.hdr->shards_off + 4096);
        EXPECT_ATTACH(-EBADMSG, cmd_off, eng.hdr->cmd_off - 64);
        EXPECT_ATTACH(-EBADMSG, cpl_off, UINT64_MAX - 63);
        EXPECT_ATTACH(-EBADMSG, mesh_stride, 0);
        EXPECT_ATTACH(-EBADMSG, wake_off, eng.hdr->wake_off + 64);
        EXPECT_ATTACH(-EBADMSG, stats_off, eng.hdr->stats_off - 64);
        EXPECT_ATTACH(-EBADMSG, shard.max_entities, 2048);
        EXPECT_ATTACH(-EBADMSG, shard.max_deliver, 0);
        EXPECT_ATTACH(-EBADMSG, idle.kind, 7);
        /* The arena's own header: its checks come first. */
        struct shm_arena_hdr *ah = eng.arena.hdr;
        uint32_t count = ah->region_count;
        ah->region_count = SHM_ARENA_REGIONS_MAX + 1;
        struct dp_engine e;
        cr_expect_eq(dp_engine_attach(&e, eng.arena.fd, NULL), -EBADMSG);
        ah->region_count = count;
        /* A region that moved. */
        ah->regions[1].offset += 64;
        cr_expect_eq(dp_engine_attach(&e, eng.arena.fd, NULL), -EBADMSG);
        ah->regions[1].offset -= 64;
        /* A bad idle override. */
        struct dp_idle_config bad;
        dp_idle_config_default(&bad);
        bad.sleep_min_ns = 0;
        struct dp_engine_attach_opts o = { .idle = &bad };
        cr_expect_eq(dp_engine_attach(&e, eng.arena.fd, &o), -EINVAL);
        /* Everything put back: it attaches, and gives the ownership up. */
        cr_assert_eq(dp_engine_attach(&e, eng.arena.fd, NULL), 0);
        cr_assert_eq(e.workers, 2);
        dp_engine_fini(&e);
        cr_assert_eq(atomic_load(&eng.hdr->owner_pid), 0);
}

Test(dp_engine_attach, refuses_a_misplaced_or_unformatted_part)
{
        engine_up(2);
        struct dp_engine e;
        struct dp_shard_hdr *s0 = eng.w[0].shard.hdr, *s1 = eng.w[1].shard.hdr;
        s0->shard = 1;
        cr_expect_eq(dp_engine_attach(&e, eng.arena.fd, NULL), -EBADMSG);
        s0->shard = 0;
        s1->magic = 0;
        cr_expect_eq(dp_engine_attach(&e, eng.arena.fd, NULL), -EPROTO);
        s1->magic = DP_SHARD_MAGIC;
        /* The table inside a shard says another shard. */
        eng.w[1].shard.table.hdr->shard = 0;
        cr_expect_eq(dp_engine_attach(&e, eng.arena.fd, NULL), -EBADMSG);
        eng.w[1].shard.table.hdr->shard = 1;
        /* A ring that was never formatted. */
        struct shm_mpsc_hdr *cmd1 = eng.cmd_prod[1].hdr;
        uint32_t magic = cmd1->magic;
        cmd1->magic = 0;
        cr_expect_eq(dp_engine_attach(&e, eng.arena.fd, NULL), -EPROTO);
        cmd1->magic = magic;
        /* A ring whose indexes are impossible. */
        struct shm_vring_hdr *cpl = eng.cpl_cons[0].hdr;
        atomic_store(&cpl->head, 8 + (uint64_t)cpl->capacity * 2);
        cr_expect_eq(dp_engine_attach(&e, eng.arena.fd, NULL), -EPROTO);
        atomic_store(&cpl->head, 0);
        cr_assert_eq(dp_engine_attach(&e, eng.arena.fd, NULL), 0);
        dp_engine_fini(&e);
}

Test(dp_engine_attach, refuses_links_that_would_hand_a_record_out_twice)
{
        engine_up(1);
        struct dp_engine e;
        struct dp_table *t = &eng.w[0].shard.table;
        struct dp_msgs *m = &eng.w[0].shard.msgs;
        /* A free-list cycle: slot 2 links back to slot 1. */
        uint32_t link = t->slots[1].q_head;
        t->slots[1].q_head = 1;
        cr_expect_eq(dp_engine_attach(&e, eng.arena.fd, NULL), -EBADMSG);
        t->slots[1].q_head = link;
        /* A free slot that is live. */
        t->slots[3].flags |= DP_ENT_F_LIVE;
        cr_expect_eq(dp_engine_attach(&e, eng.arena.fd, NULL), -EBADMSG);
        t->slots[3].flags = 0;
        /* A message record both queued and free: the first free slot
         * becomes a live entity whose queue starts at the first free
         * record. */
        uint32_t fh = t->hdr->free_head;
        struct dp_entity saved = t->slots[fh - 1];
        t->hdr->free_head = saved.q_head;
        t->hdr->live++;
        t->slots[fh - 1].flags = DP_ENT_F_LIVE;
        t->slots[fh - 1].q_head = t->slots[fh - 1].q_tail = m->hdr->free_head;
        cr_expect_eq(dp_engine_attach(&e, eng.arena.fd, NULL), -EBADMSG);
        /* A queue tail past the pool: the next append would write there. */
        t->slots[fh - 1].q_head = 0;
        t->slots[fh - 1].q_tail = m->capacity + 1;
        cr_expect_eq(dp_engine_attach(&e, eng.arena.fd, NULL), -EBADMSG);
        t->slots[fh - 1] = saved;
        t->hdr->free_head = fh;
        t->hdr->live--;
        cr_assert_eq(dp_engine_attach(&e, eng.arena.fd, NULL), 0);
        cr_expect_eq(eng.hdr->audit.leaked_slots + eng.hdr->audit.count_skew, 0);
        dp_engine_fini(&e);
}

/* --- what attach accepts and counts --------------------------------------- */

Test(dp_engine_attach, counts_what_a_half_applied_command_leaves)
{
        engine_up(1);
        struct dp_table *t = &eng.w[0].shard.table;
        struct dp_msgs *m = &eng.w[0].shard.msgs;
        struct dp_engine e;
        uint64_t h, gone, req = 1;
        /* A first dataplane (here, in this process) creates two entities. */
        cr_assert_eq(dp_engine_attach(&e, eng.arena.fd, NULL), 0);
        cr_assert_eq(dp_engine_start(&e), 0);
        cr_assert_eq(create_mailbox("after.damage", req++, &h), 0);
        cr_assert_eq(create_mailbox("half.gone", req++, &gone), 0);
        dp_engine_fini(&e);
        /* A create killed after popping its slot; a send killed after
         * popping its message record; a destroy killed before the live
         * count moved; a destroy killed after it took the name out of the
         * index (here: the name no longer finds the entity). */
        t->hdr->free_head = t->slots[t->hdr->free_head - 1].q_head;
        m->hdr->free_head = m->recs[m->hdr->free_head - 1].next;
        m->hdr->in_use++;
        t->hdr->live++;
        uint32_t len;
        char *name = (char *)dp_table_name(t, &t->slots[dp_handle_slot(gone)], &len);
        cr_assert_not_null(name);
        name[0] = 'X';
        /* A worker killed in its sleep left its sleeper count up. */
        atomic_store(&eng.w[0].wake->sleepers, 1);
        cr_assert_eq(dp_engine_attach(&e, eng.arena.fd, NULL), 0);
        const struct dp_engine_audit *a = &eng.hdr->audit;
        cr_expect_eq(a->leaked_slots, 1);
        cr_expect_eq(a->leaked_msgs, 1);
        cr_expect_eq(a->unindexed, 1);
        cr_expect_eq(a->count_skew, 1);
        cr_expect_eq(a->cmd_rings_stuck, 0);
        cr_expect_eq(atomic_load(&eng.w[0].wake->sleepers), 0);
        cr_expect_eq(eng.hdr->attaches, 2);
        name[0] = 'h';
        /* The shard works on with one slot and one record fewer. */
        cr_assert_eq(dp_engine_start(&e), 0);
        send_async("after.damage", "ok", req);
        cr_assert_eq(await(req++).status, 0);
        fetched_n = 0;
        cr_assert_eq(fetch_all(h, &req), 1);
        cr_assert_str_eq(fetched[0], "ok");
        dp_engine_fini(&e);
}

Test(dp_engine_attach, counts_a_command_ring_stuck_on_an_uncommitted_record)
{
        engine_up(2);
        /* A producer that claimed room and died before committing (or a
         * consumer killed while zeroing a released record): the header at
         * tail never reads committed. */
        struct shm_mpsc_resv resv;
        cr_assert_eq(shm_mpsc_reserve(&eng.cmd_prod[1], 64, &resv), 0);
        struct dp_engine e;
        uint64_t t0 = shm_clock_ns();
        cr_assert_eq(dp_engine_attach(&e, eng.arena.fd, NULL), 0);
        cr_expect_eq(eng.hdr->audit.cmd_rings_stuck, 1);
        cr_expect_lt(shm_clock_ns() - t0, 1000 * MS, "attach waits only briefly");
        dp_engine_fini(&e);
}

/* --- atomq-dataplane, the binary ------------------------------------------ */

static const char *dataplane_path(void)
{
        const char *p = getenv("ATOMQ_DATAPLANE");
        if (p == NULL)
                cr_skip_test("ATOMQ_DATAPLANE is not set (meson test sets it to the binary)");
        return p;
}

/* Reads fd into buf (NUL-terminated, appending at *at) until `want` shows
 * up (NULL: until end of file) or 5 s pass. Returns whether it did. */
static bool read_until(int fd, char *buf, size_t len, size_t *at, const char *want)
{
        uint64_t deadline_ns = shm_clock_ns() + 5000 * MS;
        buf[*at] = '\0';
        while (want == NULL || strstr(buf, want) == NULL) {
                if (*at + 1 >= len || shm_clock_ns() >= deadline_ns)
                        return false;
                if (!readable(fd, 100))
                        continue;
                ssize_t n = read(fd, buf + *at, len - 1 - *at);
                if (n <= 0)
                        return want == NULL;
                *at += (size_t)n;
                buf[*at] = '\0';
        }
        return true;
}

static void read_all(int fd, char *buf, size_t len)
{
        size_t at = 0;
        read_until(fd, buf, len, &at, NULL);
}

/* Starts the binary with args (NULL-terminated, after the path); fd stays
 * open across exec when >= 0; stdout and stderr go to outfd when >= 0. */
static pid_t dataplane_spawn(const char *const *args, int fd, int outfd)
{
        const char *argv[8] = { dataplane_path() };
        for (int i = 0; args[i] != NULL && i < 6; i++)
                argv[i + 1] = args[i];
        pid_t pid = fork();
        if (pid == 0) {
                if (outfd >= 0) {
                        dup2(outfd, STDOUT_FILENO);
                        dup2(outfd, STDERR_FILENO);
                }
                if (fd >= 0)
                        fcntl(fd, F_SETFD, 0);
                execv(argv[0], (char *const *)argv);
                _exit(127);
        }
        return pid;
}

/* Runs the binary to its end with a bounded wait; its output in out. */
static int dataplane_run(const char *const *args, int fd, char *out, size_t len)
{
        int p[2];
        cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
        pid_t pid = dataplane_spawn(args, fd, p[1]);
        cr_assert_gt(pid, 0);
        close(p[1]);
        read_all(p[0], out, len);
        close(p[0]);
        int st;
        cr_assert_eq(waitpid(pid, &st, 0), pid);
        cr_assert(WIFEXITED(st), "the dataplane did not exit");
        return WEXITSTATUS(st);
}

TestSuite(dp_main, .fini = engine_down, .timeout = 60);

Test(dp_main, is_not_usable_by_accident_without_an_arena_fd)
{
        char err[2048];
        cr_assert_eq(dataplane_run((const char *[]){ NULL }, -1, err, sizeof(err)),
                     DP_EXIT_USAGE);
        cr_assert(strstr(err, "--arena-fd is required") != NULL, "%s", err);
        cr_assert_eq(dataplane_run((const char *[]){ "--arena-fd", "x", NULL }, -1, err,
                                   sizeof(err)), DP_EXIT_USAGE);
        cr_assert(strstr(err, "--arena-fd") != NULL, "%s", err);
        cr_assert_eq(dataplane_run((const char *[]){ "--arena-fd", "977", NULL }, -1, err,
                                   sizeof(err)), DP_EXIT_USAGE);
        cr_assert(strstr(err, "not an open file descriptor") != NULL, "%s", err);
        cr_assert_eq(dataplane_run((const char *[]){ "--busy-poll", "often", "--arena-fd", "0",
                                                     NULL }, -1, err, sizeof(err)),
                     DP_EXIT_USAGE);
        cr_assert(strstr(err, "--busy-poll") != NULL, "%s", err);
        /* stdin is open but no arena: refused, and a restart cannot help. */
        cr_assert_eq(dataplane_run((const char *[]){ "--arena-fd", "0", NULL }, -1, err,
                                   sizeof(err)), DP_EXIT_REFUSED);
        cr_assert(strstr(err, "cannot attach") != NULL, "%s", err);
}

Test(dp_main, help_shows_an_example)
{
        char out[4096];
        cr_assert_eq(dataplane_run((const char *[]){ "--help", NULL }, -1, out, sizeof(out)), 0);
        cr_assert(strstr(out, "example") != NULL && strstr(out, "--arena-fd 3") != NULL, "%s",
                  out);
}

Test(dp_main, exits_when_its_parent_is_not_the_arena_creator)
{
        dataplane_path(); /* skips here, not in a child, when it is not set */
        engine_up(1);
        char fd_arg[16], err[4096];
        snprintf(fd_arg, sizeof(fd_arg), "%d", eng.arena.fd);
        int p[2];
        cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
        /* A go-between forks the dataplane: its parent is not the creator,
         * as when atomqd died before the death signal was set. */
        pid_t mid = fork();
        if (mid == 0) {
                pid_t dp = dataplane_spawn((const char *[]){ "--arena-fd", fd_arg, NULL },
                                           eng.arena.fd, p[1]);
                int st;
                if (dp < 0 || waitpid(dp, &st, 0) != dp || !WIFEXITED(st))
                        _exit(100);
                _exit(WEXITSTATUS(st));
        }
        close(p[1]);
        read_all(p[0], err, sizeof(err));
        close(p[0]);
        int st;
        cr_assert_eq(waitpid(mid, &st, 0), mid);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %d: %s", st, err);
        cr_assert(strstr(err, "is not atomqd") != NULL, "%s", err);
        /* It let the ownership go on its way out. */
        cr_assert_eq(atomic_load(&eng.hdr->owner_pid), 0);
}

Test(dp_main, dies_with_its_parent)
{
        dataplane_path();
        /* Orphans come to us, so the dataplane's end can be waited for. */
        cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
        int p[2], logp[2];
        cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
        /* The dataplane's stderr: we keep the read end open throughout, so
         * its last lines never meet a closed pipe. */
        cr_assert_eq(pipe2(logp, O_CLOEXEC), 0);
        char log[8192] = "";
        size_t at = 0;
        pid_t mid = fork();
        if (mid == 0) {
                /* The go-between is atomqd: creator and parent. It leaves
                 * once the dataplane runs, past its start-up checks. */
                engine_up(1);
                char fd_arg[16];
                snprintf(fd_arg, sizeof(fd_arg), "%d", eng.arena.fd);
                pid_t dp = dataplane_spawn((const char *[]){ "--arena-fd", fd_arg, NULL },
                                           eng.arena.fd, logp[1]);
                bool up = read_until(logp[0], log, sizeof(log), &at, "running");
                if (write(p[1], &dp, sizeof(dp)) != sizeof(dp))
                        _exit(1);
                _exit(up ? 0 : 1);
        }
        close(p[1]);
        close(logp[1]);
        pid_t dp = 0;
        cr_assert(readable(p[0], 10000));
        cr_assert_eq(read(p[0], &dp, sizeof(dp)), (ssize_t)sizeof(dp));
        close(p[0]);
        int st;
        cr_assert_eq(waitpid(mid, &st, 0), mid);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the dataplane never ran");
        /* Its parent is gone: SIGTERM came, and it stopped cleanly. */
        uint64_t deadline_ns = shm_clock_ns() + 5000 * MS;
        pid_t r;
        while ((r = waitpid(dp, &st, WNOHANG)) == 0) {
                cr_assert_lt(shm_clock_ns(), deadline_ns, "the dataplane outlived its parent");
                usleep(1000);
        }
        cr_assert_eq(r, dp);
        read_until(logp[0], log, sizeof(log), &at, "stopped");
        close(logp[0]);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d: %s", st, log);
        cr_assert(strstr(log, "TERM") != NULL, "%s", log);
}

/* --- ctl_super: atomqd supervising the real binary ------------------------ */

static struct ctl_loop loop;
static struct ctl_ctx ctx;
static struct ctl_super super;
static char logbuf[32768];
static size_t log_len;

static void log_sink(enum shm_log_level level, const char *line, void *arg)
{
        (void)level;
        (void)arg;
        int n = snprintf(logbuf + log_len, sizeof(logbuf) - log_len, "%s\n", line);
        if (n > 0 && (size_t)n < sizeof(logbuf) - log_len)
                log_len += (size_t)n;
}

static bool log_has(const char *s)
{
        return strstr(logbuf, s) != NULL;
}

static void super_up(uint32_t workers)
{
        engine_up(workers);
        cr_assert_eq(ctl_loop_init(&loop), 0);
        ctx = (struct ctl_ctx){ .loop = &loop, .engine = &eng };
        log_len = 0;
        logbuf[0] = '\0';
        shm_log_set_sink(log_sink, NULL);
}

static void super_down(void)
{
        ctl_super_fini(&super);
        ctl_loop_fini(&loop);
        shm_log_set_sink(NULL, NULL);
        engine_down();
}

TestSuite(ctl_super, .fini = super_down, .timeout = 60);

/* Runs the loop until *pid is a running dataplane other than not_pid and
 * restarts reached want (or, with want UINT32_MAX, until supervision gave
 * up). */
static void loop_until(uint32_t want, pid_t not_pid)
{
        uint64_t deadline_ns = shm_clock_ns() + 10000 * MS;
        for (;;) {
                if (want == UINT32_MAX ? ctl_super_failed(&super)
                                       : ctx.dataplane_restarts == want && ctx.dataplane_pid != 0 &&
                                                 ctx.dataplane_pid != not_pid)
                        return;
                cr_assert_lt(shm_clock_ns(), deadline_ns, "restarts %u of %u, state %d:\n%s",
                             ctx.dataplane_restarts, want, super.state, logbuf);
                cr_assert_geq(ctl_loop_run_once(&loop, 10), 0);
        }
}

/* The dataplane answers: a command makes it through. */
static void dataplane_answers(uint64_t *req)
{
        struct dp_cmd c = { .op = ATOMQ_OP_CREATE, .req_id = *req };
        submit_retry(&c, NULL, NULL);
        cr_assert_eq(await((*req)++).status, 0);
}

static struct ctl_super_config fast_config(uint32_t restarts_max)
{
        return (struct ctl_super_config){ .restarts_max = restarts_max, .window_ms = 20000,
                                          .delay_min_ms = 20, .delay_max_ms = 60 };
}

Test(ctl_super, restarts_a_killed_dataplane_with_its_entities)
{
        super_up(2);
        struct ctl_super_config cfg = fast_config(5);
        cr_assert_eq(ctl_super_init(&super, &ctx, dataplane_path(), eng.arena.fd, &cfg), 0);
        cr_assert_eq(ctl_super_start(&super), 0);
        cr_assert_eq(ctl_super_start(&super), -EALREADY);
        pid_t first = ctx.dataplane_pid;
        cr_assert_gt(first, 0);
        uint64_t h, req = 1;
        cr_assert_eq(create_mailbox("kept.box", req++, &h), 0);
        for (uint32_t i = 0; i < 3; i++) {
                char p[8];
                snprintf(p, sizeof(p), "k%u", i);
                send_async("kept.box", p, req);
                cr_assert_eq(await(req++).status, 0);
        }
        await_rings_empty();
        cr_assert_eq(kill(first, SIGKILL), 0);
        loop_until(1, first);
        cr_assert(log_has("was killed by signal 9 (SIGKILL)"), "%s", logbuf);
        cr_assert(log_has("restarting the dataplane in 20 ms"), "%s", logbuf);
        fetched_n = 0;
        cr_assert_eq(fetch_all(h, &req), 3);
        cr_assert_str_eq(fetched[0], "k0");
        cr_assert_str_eq(fetched[2], "k2");
        cr_assert_eq(eng.hdr->attaches, 2);
        /* Asked to stop, it stops on SIGTERM, and nothing restarts it. */
        pid_t second = ctx.dataplane_pid;
        cr_assert_eq(ctl_super_stop(&super, 5000), 0);
        cr_assert_eq(ctx.dataplane_pid, 0);
        cr_assert(log_has("exited with status 0"), "%s", logbuf);
        cr_assert_eq(kill(second, 0), -1);
        for (int i = 0; i < 10; i++)
                ctl_loop_run_once(&loop, 10);
        cr_assert_eq(ctx.dataplane_restarts, 1);
        cr_assert_eq(atomic_load(&eng.hdr->owner_pid), 0);
}

Test(ctl_super, gives_up_after_too_many_restarts)
{
        super_up(1);
        struct ctl_super_config cfg = fast_config(2);
        cr_assert_eq(ctl_super_init(&super, &ctx, dataplane_path(), eng.arena.fd, &cfg), 0);
        cr_assert_eq(ctl_super_start(&super), 0);
        uint64_t req = 1;
        for (uint32_t round = 0; round < 2; round++) {
                dataplane_answers(&req);
                pid_t pid = ctx.dataplane_pid;
                uint64_t t0 = shm_clock_ns();
                cr_assert_eq(kill(pid, SIGKILL), 0);
                loop_until(round + 1, pid);
                /* 20 ms, then doubled. */
                cr_assert_geq(shm_clock_ns() - t0, (20ull << round) * MS);
        }
        cr_assert(log_has("restarting the dataplane in 40 ms"), "%s", logbuf);
        dataplane_answers(&req);
        cr_assert_eq(kill(ctx.dataplane_pid, SIGKILL), 0);
        loop_until(UINT32_MAX, 0);
        cr_assert_eq(ctx.dataplane_restarts, 2);
        cr_assert_eq(ctx.dataplane_pid, 0);
        cr_assert_eq(ctx.stopping, 1);
        cr_assert(log_has("gives up"), "%s", logbuf);
        cr_assert_eq(ctl_super_start(&super), -EPERM);
}

Test(ctl_super, gives_up_at_once_when_the_arena_is_refused)
{
        super_up(1);
        /* Everything is fine but the engine's magic. */
        eng.hdr->magic = 0;
        cr_assert_eq(ctl_super_init(&super, &ctx, dataplane_path(), eng.arena.fd, NULL), 0);
        cr_assert_eq(ctl_super_start(&super), 0);
        loop_until(UINT32_MAX, 0);
        cr_assert_eq(ctx.dataplane_restarts, 0);
        cr_assert(log_has("exited with status 3"), "%s", logbuf);
        cr_assert(log_has("a restart cannot change"), "%s", logbuf);
        eng.hdr->magic = DP_ENGINE_MAGIC;
}

/* An executable file with the given text. */
static void script(const char *path, const char *text)
{
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        fputs(text, f);
        fclose(f);
        cr_assert_eq(chmod(path, 0700), 0);
}

Test(ctl_super, stop_kills_a_child_that_ignores_sigterm)
{
        super_up(1);
        char dir[] = "/tmp/atomq-test-stubborn-XXXXXX", path[64], fifo[64], ready[64],
             text[256];
        cr_assert_not_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/dataplane", dir);
        snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
        snprintf(ready, sizeof(ready), "%s/ready", dir);
        cr_assert_eq(mkfifo(fifo, 0600), 0);
        /* Ignores SIGTERM, then blocks in open() of a FIFO nobody writes:
         * no child process of its own is left behind by SIGKILL. */
        snprintf(text, sizeof(text), "#!/bin/sh\ntrap '' TERM\n: > %s\nread x < %s\n", ready,
                 fifo);
        script(path, text);
        cr_assert_eq(ctl_super_init(&super, &ctx, path, eng.arena.fd, NULL), 0);
        cr_assert_eq(ctl_super_start(&super), 0);
        pid_t pid = ctx.dataplane_pid;
        uint64_t deadline_ns = shm_clock_ns() + 5000 * MS;
        while (access(ready, F_OK) != 0) {
                cr_assert_lt(shm_clock_ns(), deadline_ns, "the script did not start");
                usleep(1000);
        }
        uint64_t t0 = shm_clock_ns();
        cr_assert_eq(ctl_super_stop(&super, 200), 1);
        cr_assert_geq(shm_clock_ns() - t0, 200 * MS);
        cr_assert_eq(kill(pid, 0), -1);
        cr_assert(log_has("sending SIGKILL"), "%s", logbuf);
        cr_assert(log_has("was killed by signal 9 (SIGKILL)"), "%s", logbuf);
        cr_assert_eq(ctx.dataplane_restarts, 0);
        unlink(ready);
        unlink(fifo);
        unlink(path);
        rmdir(dir);
}

Test(ctl_super, reports_what_keeps_the_dataplane_from_starting)
{
        super_up(1);
        cr_assert_eq(ctl_super_init(&super, &ctx, "/nonexistent/atomq-dataplane", eng.arena.fd,
                                    NULL), -ENOENT);
        struct ctl_super_config cfg = fast_config(0);
        cr_assert_eq(ctl_super_init(&super, &ctx, dataplane_path(), eng.arena.fd, &cfg), -EINVAL);
        cfg = fast_config(2);
        cfg.delay_max_ms = 1;
        cr_assert_eq(ctl_super_init(&super, &ctx, dataplane_path(), eng.arena.fd, &cfg), -EINVAL);
        cr_assert_eq(ctl_super_init(&super, &ctx, dataplane_path(), STDERR_FILENO, NULL), -EINVAL);
        /* Executable, but not a program: exec's error comes back. */
        char path[] = "/tmp/atomq-test-empty-XXXXXX";
        int fd = mkstemp(path);
        cr_assert_geq(fd, 0);
        close(fd);
        script(path, "");
        cr_assert_eq(ctl_super_init(&super, &ctx, path, eng.arena.fd, NULL), 0);
        cr_assert_eq(ctl_super_start(&super), -ENOEXEC);
        cr_assert_eq(ctx.dataplane_pid, 0);
        unlink(path);
        /* fini twice is harmless; so is stop with nothing running. */
        cr_assert_eq(ctl_super_stop(&super, 0), 0);
        ctl_super_fini(&super);
        ctl_super_fini(&super);
}
