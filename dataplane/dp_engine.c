/* dp_engine.c - building the workers' arena (regions, shards, rings),
 * wiring each worker's views, and starting and stopping their threads.
 * Routing, submission and completions are in dp_engine_submit.c; attaching
 * an arena another process built is in dp_engine_attach.c.
 */
#include "dataplane/dp_engine_pvt.h"
#include "dataplane/dp_worker_pvt.h"

#include "dataplane/dp_groups.h"
#include "shm/shm_log.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DP_PAGE_BYTES 4096u
/* Room for the arena header and the page rounding of five regions. */
#define DP_ARENA_SLACK_BYTES (64u * 1024)

uint32_t dp_engine_workers_default(void)
{
        cpu_set_t set;
        long n = -1;
        /* The CPUs this process may run on (a container or taskset may give
         * fewer than are online), else the online count. */
        if (sched_getaffinity(0, sizeof(set), &set) == 0)
                n = CPU_COUNT(&set);
        if (n <= 0)
                n = sysconf(_SC_NPROCESSORS_ONLN);
        if (n <= 1)
                return 1;
        return n - 1 > DP_WORKERS_MAX ? DP_WORKERS_MAX : (uint32_t)(n - 1);
}

void dp_engine_config_default(struct dp_engine_config *cfg, uint32_t max_entities)
{
        memset(cfg, 0, sizeof(*cfg));
        cfg->clients = 1;
        cfg->cmd_ring_bytes = 1u << 20;
        cfg->cpl_ring_bytes = 256u * 1024;
        cfg->mesh_ring_bytes = 1u << 20;
        dp_shard_config_default(&cfg->shard, 0, max_entities);
        dp_idle_config_default(&cfg->idle);
        cfg->hugepages = SHM_HUGEPAGES_AUTO;
}

static bool dp_ring_bytes_ok(uint32_t bytes, uint32_t min)
{
        return shm_is_pow2_u64(bytes) && bytes >= min && bytes <= DP_RING_BYTES_MAX;
}

uint32_t dp_engine_dlv_ring_bytes(const struct dp_engine_config *c)
{
        return c->agent_dlv_ring_bytes != 0 ? c->agent_dlv_ring_bytes
                                            : DP_AGENT_DLV_RING_BYTES_DEFAULT;
}

int dp_engine_layout(const struct dp_engine_config *c, uint32_t n, struct dp_engine_layout *l)
{
        if (n == 0 || n > DP_WORKERS_MAX || n > DP_SHARDS_MAX || c->clients == 0 ||
            c->clients > DP_CLIENTS_MAX)
                return -EINVAL;
        if (!dp_ring_bytes_ok(c->cmd_ring_bytes, DP_CMD_RING_BYTES_MIN) ||
            !dp_ring_bytes_ok(c->mesh_ring_bytes, DP_CMD_RING_BYTES_MIN) ||
            !dp_ring_bytes_ok(c->cpl_ring_bytes, DP_CPL_RING_BYTES_MIN))
                return -EINVAL;
        if (dp_idle_config_check(&c->idle) != 0)
                return -EINVAL;
        if (c->agents > DP_AGENTS_MAX || n > SHM_AGENT_WORKERS_MAX)
                return -EINVAL;
        if (c->agents > 0 && !dp_ring_bytes_ok(dp_engine_dlv_ring_bytes(c), DP_AGENT_DLV_RING_BYTES_MIN))
                return -EINVAL;
        struct dp_shard_config sc = c->shard;
        sc.shard = 0;
        size_t shard_bytes = dp_shard_bytes(&sc);
        if (shard_bytes == 0)
                return -EINVAL;
        l->engine_bytes = sizeof(struct dp_engine_hdr) + (uint64_t)c->clients * SHM_CACHE_LINE +
                          (uint64_t)n * DP_WORKER_STATS_BYTES +
                          (uint64_t)c->agents * sizeof(struct dp_agent_slot);
        /* Shards start on a page of their own (a later NUMA or read-only
         * mapping works on pages). */
        l->shard_stride = shm_align_up(shard_bytes, DP_PAGE_BYTES);
        l->cmd_stride = shm_align_up(shm_mpsc_bytes(c->cmd_ring_bytes), SHM_CACHE_LINE);
        l->cpl_stride = shm_align_up(shm_vring_bytes(c->cpl_ring_bytes), SHM_CACHE_LINE);
        l->mesh_stride = shm_align_up(shm_vring_bytes(c->mesh_ring_bytes), SHM_CACHE_LINE);
        uint64_t total = shm_align_up(l->engine_bytes, DP_PAGE_BYTES) +
                         n * l->shard_stride +
                         shm_align_up(n * l->cmd_stride, DP_PAGE_BYTES) +
                         shm_align_up((uint64_t)n * c->clients * l->cpl_stride, DP_PAGE_BYTES) +
                         shm_align_up((uint64_t)n * (n - 1) * l->mesh_stride, DP_PAGE_BYTES);
        l->arena_bytes = total + DP_ARENA_SLACK_BYTES;
        if (l->arena_bytes > SHM_ARENA_BYTES_MAX)
                return -EINVAL;
        return 0;
}

/* Carves the five regions and fills the header's offsets. */
static int dp_engine_regions(struct dp_engine *e, const struct dp_engine_config *c,
                             const struct dp_engine_layout *l)
{
        uint64_t n = e->workers, off;
        int rc = shm_arena_region_add(&e->arena, DP_REGION_ENGINE, "dp.engine", l->engine_bytes, &off);
        if (rc != 0)
                return rc;
        struct dp_engine_hdr *h = shm_arena_ptr(&e->arena, off, l->engine_bytes);
        e->hdr = h;
        *h = (struct dp_engine_hdr){
                .magic = DP_ENGINE_MAGIC, .version = DP_ENGINE_VERSION,
                .workers = e->workers, .clients = e->clients,
                .cmd_ring_bytes = c->cmd_ring_bytes, .cpl_ring_bytes = c->cpl_ring_bytes,
                .mesh_ring_bytes = c->mesh_ring_bytes,
                .shard_stride = l->shard_stride, .cmd_stride = l->cmd_stride,
                .cpl_stride = l->cpl_stride, .mesh_stride = l->mesh_stride,
                .wake_off = off + sizeof(*h),
                .stats_off = off + sizeof(*h) + (uint64_t)e->clients * SHM_CACHE_LINE,
                .shard = c->shard, .idle = c->idle,
                .agents = c->agents,
                .agent_dlv_ring_bytes = c->agents > 0 ? dp_engine_dlv_ring_bytes(c) : 0,
                .net_client_base = c->net_clients ? c->clients - (uint32_t)n : 0,
        };
        h->agents_off = h->stats_off + n * DP_WORKER_STATS_BYTES;
        /* What a dataplane process that attaches needs to rebuild the
         * layout and check it; each shard's own index is in its header. */
        h->shard.shard = 0;
        rc = shm_arena_region_add(&e->arena, DP_REGION_SHARDS, "dp.shards", n * l->shard_stride,
                                  &h->shards_off);
        if (rc == 0)
                rc = shm_arena_region_add(&e->arena, SHM_REGION_MPSC, "dp.cmd", n * l->cmd_stride,
                                          &h->cmd_off);
        if (rc == 0)
                rc = shm_arena_region_add(&e->arena, SHM_REGION_VRING, "dp.cpl",
                                          n * e->clients * l->cpl_stride, &h->cpl_off);
        /* One worker has no mesh. */
        if (rc == 0 && n > 1)
                rc = shm_arena_region_add(&e->arena, SHM_REGION_VRING, "dp.mesh",
                                          n * (n - 1) * l->mesh_stride, &h->mesh_off);
        return rc;
}

static void *dp_engine_at(const struct dp_engine *e, uint64_t off, uint64_t stride, uint64_t i)
{
        void *p = shm_arena_ptr(&e->arena, off + i * stride, stride);
        DP_VERIFY(p != NULL);
        return p;
}

static int dp_engine_views_alloc(struct dp_engine *e)
{
        uint32_t n = e->workers, c = e->clients;
        e->w = calloc(n, sizeof(*e->w));
        e->cmd_prod = calloc(n, sizeof(*e->cmd_prod));
        e->cpl_cons = calloc((size_t)n * c, sizeof(*e->cpl_cons));
        e->cpl_prod = calloc((size_t)n * c, sizeof(*e->cpl_prod));
        e->mesh_prod = calloc((size_t)n * n, sizeof(*e->mesh_prod));
        e->mesh_cons = calloc((size_t)n * n, sizeof(*e->mesh_cons));
        e->client_wake = calloc(c, sizeof(*e->client_wake));
        e->worker_wake = calloc(n, sizeof(*e->worker_wake));
        e->poll_next = calloc(c, sizeof(*e->poll_next));
        e->groups = calloc(1, sizeof(*e->groups));
        if (e->w == NULL || e->cmd_prod == NULL || e->cpl_cons == NULL || e->cpl_prod == NULL ||
            e->mesh_prod == NULL || e->mesh_cons == NULL || e->client_wake == NULL ||
            e->worker_wake == NULL || e->poll_next == NULL || e->groups == NULL)
                return -ENOMEM;
        return 0;
}

/* The first view of a ring: the creator formats the ring, an attacher
 * takes it as it is (its indexes carry on). The second view always
 * attaches. */
static int dp_engine_mpsc_open(struct shm_mpsc *r, void *mem, uint64_t len, uint32_t bytes,
                               bool format)
{
        return format ? shm_mpsc_init(r, mem, len, bytes) : shm_mpsc_attach(r, mem, len);
}

static int dp_engine_vring_open(struct shm_vring *r, void *mem, uint64_t len, uint32_t bytes,
                                bool format)
{
        return format ? shm_vring_init(r, mem, len, bytes) : shm_vring_attach(r, mem, len);
}

/* Opens worker i's command ring and completion rings, and the mesh rings
 * from i, with both sides' views. */
static int dp_engine_rings(struct dp_engine *e, const struct dp_engine_hdr *h, uint32_t i,
                           bool format)
{
        uint32_t n = e->workers;
        struct dp_worker *w = &e->w[i];
        void *mem = dp_engine_at(e, h->cmd_off, h->cmd_stride, i);
        int rc = dp_engine_mpsc_open(&w->cmd, mem, h->cmd_stride, h->cmd_ring_bytes, format);
        if (rc == 0)
                rc = shm_mpsc_attach(&e->cmd_prod[i], mem, h->cmd_stride);
        if (rc != 0)
                return rc;
        e->worker_wake[i] = w->wake = &w->cmd.hdr->wake;
        for (uint32_t c = 0; rc == 0 && c < e->clients; c++) {
                mem = dp_engine_at(e, h->cpl_off, h->cpl_stride, (uint64_t)i * e->clients + c);
                rc = dp_engine_vring_open(&e->cpl_prod[i * e->clients + c], mem, h->cpl_stride,
                                          h->cpl_ring_bytes, format);
                if (rc == 0)
                        rc = shm_vring_attach(&e->cpl_cons[c * n + i], mem, h->cpl_stride);
        }
        for (uint32_t j = 0; rc == 0 && j < n; j++) {
                if (j == i)
                        continue;
                mem = dp_engine_at(e, h->mesh_off, h->mesh_stride, dp_engine_mesh_index(n, i, j));
                rc = dp_engine_vring_open(&e->mesh_prod[i * n + j], mem, h->mesh_stride,
                                          h->mesh_ring_bytes, format);
                if (rc == 0)
                        rc = shm_vring_attach(&e->mesh_cons[j * n + i], mem, h->mesh_stride);
        }
        return rc;
}

/* Points worker i at its views, its counters and its shard, then lets it
 * initialise itself (formatting or re-attaching its shard). */
static int dp_engine_worker_wire(struct dp_engine *e, const struct dp_engine_hdr *h, uint32_t i,
                                 const struct dp_engine_config *c, bool format)
{
        struct dp_worker *w = &e->w[i];
        w->stats = dp_engine_at(e, h->stats_off, DP_WORKER_STATS_BYTES, i);
        w->cpl = &e->cpl_prod[i * e->clients];
        w->mesh_out = &e->mesh_prod[i * e->workers];
        w->mesh_in = &e->mesh_cons[i * e->workers];
        w->client_wake = e->client_wake;
        w->peer_wake = e->worker_wake;
        void *mem = dp_engine_at(e, h->shards_off, h->shard_stride, i);
        return dp_worker_init(w, e, i, mem, h->shard_stride, c, format);
}

int dp_engine_views_build(struct dp_engine *e, const struct dp_engine_hdr *h,
                          const struct dp_engine_config *c, bool format)
{
        int rc = dp_engine_views_alloc(e);
        if (rc != 0)
                return rc;
        e->agents = h->agents;
        if (h->agents > 0)
                e->agent_slots = dp_engine_at(e, h->agents_off, sizeof(struct dp_agent_slot) * h->agents, 0);
        for (uint32_t k = 0; k < e->clients; k++) {
                e->client_wake[k] = dp_engine_at(e, h->wake_off, SHM_CACHE_LINE, k);
                /* An attacher leaves the words alone: atomqd's threads may
                 * be asleep on them right now. */
                if (format)
                        shm_wake_init(e->client_wake[k]);
        }
        for (uint32_t i = 0; i < e->workers; i++) {
                rc = dp_engine_rings(e, h, i, format);
                if (rc != 0)
                        return rc;
        }
        /* The wake words of every worker exist before any is wired. */
        for (uint32_t i = 0; i < e->workers; i++) {
                rc = dp_engine_worker_wire(e, h, i, c, format);
                if (rc != 0)
                        return rc;
        }
        return 0;
}

int dp_engine_init(struct dp_engine *e, const struct dp_engine_config *cfg)
{
        struct dp_engine_layout l;
        memset(e, 0, sizeof(*e));
        e->arena.fd = -1;
        e->workers = cfg->workers != 0 ? cfg->workers : dp_engine_workers_default();
        /* From here on cfg's clients count the net columns too: they sit
         * after the caller's, before the agents'. */
        struct dp_engine_config c = *cfg;
        if (c.net_clients)
                c.clients += e->workers;
        cfg = &c;
        e->clients = cfg->clients;
        if (cfg->nats != NULL)
                e->nats = *cfg->nats;
        if (cfg->disk != NULL)
                e->disk = *cfg->disk;
        if (cfg->dgram != NULL)
                e->dgram = *cfg->dgram;
        int rc = dp_engine_layout(cfg, e->workers, &l);
        if (rc != 0)
                return rc;
        struct shm_arena_config ac = { .bytes = l.arena_bytes, .hugepages = cfg->hugepages,
                                       .numa_node = -1, .name = "atomq-dataplane" };
        rc = shm_arena_create(&e->arena, &ac);
        if (rc == 0)
                rc = dp_engine_regions(e, cfg, &l);
        if (rc == 0)
                rc = dp_engine_views_build(e, e->hdr, cfg, true);
        if (rc == 0 && e->agents > 0)
                rc = dp_agent_files_create(e);
        /* Magic last, with a release store: an attacher that sees it sees
         * every region formatted (shm_arena_publish). */
        if (rc == 0)
                rc = shm_arena_publish(&e->arena);
        if (rc != 0)
                dp_engine_fini(e);
        return rc;
}

/* Per-thread set-up: what must be made on the worker's own thread (the
 * network backend's ring is single-issuer). Reports through init_rc. */
static int dp_engine_thread_init(struct dp_worker *w)
{
        const struct dp_disk_config *dc = &w->engine->disk;
        int rc = 0;
        /* The disk tier first: its entities are back before a client can
         * ask for them. */
        if (dc->data_dir != NULL) {
                rc = dp_disk_open(&w->disk, w, dc);
                if (rc != 0) {
                        char why[512];
                        /* The worker serves on without a disk tier (storage
                         * disk is refused) rather than not at all. */
                        shm_log(SHM_LOG_ERR, "worker %u: cannot open its disk log, storage "
                                "disk refused: %s", w->index,
                                dp_disk_error(w->disk, why, sizeof(why)));
                        dp_disk_close(w->disk);
                        w->disk = NULL;
                        rc = 0;
                } else {
                        const struct dp_disk_stats *st = dp_disk_stats(w->disk);
                        if (st->replayed != 0)
                                shm_log(SHM_LOG_INFO, "worker %u: %llu disk entities rebuilt "
                                        "from %llu records (%llu skipped)", w->index,
                                        (unsigned long long)st->entities,
                                        (unsigned long long)st->replayed,
                                        (unsigned long long)st->replay_skipped);
                }
        }
        if (rc == 0)
                rc = dp_worker_net_open(w);
        /* Pairs with the acquire load in dp_engine_start_worker. */
        atomic_store_explicit(&w->init_rc, rc == 0 ? 1 : rc, memory_order_release);
        return rc;
}

static void *dp_engine_thread(void *arg)
{
        struct dp_worker *w = arg;
        char name[16];
        snprintf(name, sizeof(name), "aq-worker-%u", w->index);
        (void)pthread_setname_np(pthread_self(), name);
        if (dp_engine_thread_init(w) != 0)
                return NULL;
        dp_worker_run(w);
        dp_worker_net_close(w);
        dp_disk_close(w->disk);
        w->disk = NULL;
        return NULL;
}

/* Waits for the thread's set-up (bounded: binding a socket and making a
 * ring take microseconds; seconds mean something is wrong). */
static int dp_engine_thread_ready(struct dp_worker *w)
{
        const struct timespec tick = { 0, 1000000 };
        for (int i = 0; i < 10000; i++) {
                /* Pairs with the release store in dp_engine_thread_init. */
                int rc = atomic_load_explicit(&w->init_rc, memory_order_acquire);
                if (rc != 0)
                        return rc > 0 ? 0 : rc;
                nanosleep(&tick, NULL);
        }
        return -ETIMEDOUT;
}

int dp_engine_claim(struct dp_engine *e)
{
        _Atomic int32_t *owner = &e->hdr->owner_pid;
        int32_t me = (int32_t)getpid();
        int32_t cur = atomic_load_explicit(owner, memory_order_acquire);
        /* Our own pid: this process already runs them, or a dead owner's
         * pid was reused for us. */
        if (cur != me) {
                /* kill(pid, 0) fails with ESRCH only for a process that is
                 * gone; EPERM means it exists under another user. A
                 * negative word names no process (and must not reach
                 * kill, where it means a process group). */
                if (cur > 0 && (kill(cur, 0) == 0 || errno != ESRCH))
                        return -EBUSY;
                /* Two processes that both found the owner gone: one wins.
                 * Pairs with the acquire load above in the loser. */
                if (!atomic_compare_exchange_strong_explicit(owner, &cur, me,
                                                             memory_order_acq_rel,
                                                             memory_order_acquire))
                        return -EBUSY;
        }
        e->owner = true;
        return 0;
}

/* Gives up the ownership if this view took it. */
static void dp_engine_unclaim(struct dp_engine *e)
{
        int32_t me = (int32_t)getpid();
        if (e->owner)
                atomic_compare_exchange_strong_explicit(&e->hdr->owner_pid, &me, 0,
                                                        memory_order_acq_rel,
                                                        memory_order_relaxed);
        e->owner = false;
}

int dp_engine_start_worker(struct dp_engine *e, uint32_t i)
{
        if (i >= e->workers)
                return -EINVAL;
        struct dp_worker *w = &e->w[i];
        if (w->started)
                return -EALREADY;
        /* Two processes running one shard would corrupt it. */
        if (dp_engine_claim(e) != 0)
                return -EBUSY;
        /* pthread_create orders these stores before the thread's first load. */
        atomic_store_explicit(&w->running, true, memory_order_relaxed);
        atomic_store_explicit(&w->init_rc, 0, memory_order_relaxed);
        int rc = pthread_create(&w->thread, NULL, dp_engine_thread, w);
        if (rc != 0) {
                atomic_store_explicit(&w->running, false, memory_order_relaxed);
                return -rc;
        }
        rc = dp_engine_thread_ready(w);
        if (rc != 0) {
                /* A thread that failed its set-up has returned; one that is
                 * merely slow is told to stop first. */
                dp_worker_stop_signal(w);
                pthread_join(w->thread, NULL);
                return rc;
        }
        w->started = true;
        return 0;
}

int dp_engine_start(struct dp_engine *e)
{
        for (uint32_t i = 0; i < e->workers; i++) {
                int rc = dp_engine_start_worker(e, i);
                if (rc != 0 && rc != -EALREADY)
                        return rc;
        }
        return 0;
}

void dp_engine_stop(struct dp_engine *e)
{
        if (e->w == NULL)
                return;
        /* Signal all, then join all: the workers wind down in parallel. */
        for (uint32_t i = 0; i < e->workers; i++)
                if (e->w[i].started)
                        dp_worker_stop_signal(&e->w[i]);
        for (uint32_t i = 0; i < e->workers; i++) {
                if (!e->w[i].started)
                        continue;
                pthread_join(e->w[i].thread, NULL);
                e->w[i].started = false;
        }
}

void dp_engine_fini(struct dp_engine *e)
{
        dp_engine_stop(e);
        for (uint32_t i = 0; e->w != NULL && i < e->workers; i++)
                dp_worker_fini(&e->w[i]);
        free(e->w);
        free(e->cmd_prod);
        free(e->cpl_cons);
        free(e->cpl_prod);
        free(e->mesh_prod);
        free(e->mesh_cons);
        free(e->client_wake);
        free(e->worker_wake);
        free(e->poll_next);
        free(e->groups);
        dp_agent_files_close(e);
        dp_engine_unclaim(e);
        shm_arena_close(&e->arena);
        memset(e, 0, sizeof(*e));
        e->arena.fd = -1;
}
