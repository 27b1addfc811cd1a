/* bench_churn.c - scenario "churn": creating, holding and destroying named
 * mailboxes in one shard's entity table (the tenancy atom of
 * docs/architecture.md: creating or destroying an entity is O(1),
 * allocation-free and never a syscall).
 *
 *      atomq-bench churn
 *      atomq-bench churn --entities 1000000,10000000 --runs 5 --json
 *
 * Memory is laid out as a shard lays it out: one shm arena (hugepages when
 * the host has them reserved, plain memfd pages otherwise) with one region
 * holding the entity table for N and a timer wheel with one node per entity.
 * No entity here has a TTL, so the wheel costs memory, not time.
 *
 * The N names "churn.<i>" are formatted into one buffer before anything is
 * timed: the figures are the table's, not snprintf's. A cycle creates all N
 * with dp_table_create_burst in bursts of 32 (timed), checks the live count
 * and looks a sample up by name (untimed), destroys all N (timed), and checks
 * that the table is empty, the names gone and the old handles stale
 * (untimed). Path "table" destroys by handle, with dp_table_destroy_burst in
 * bursts of 32; path "table-byname" finds each handle by name first, as a
 * control command naming the entity would: dp_table_find_burst on 32 names,
 * then dp_table_destroy_burst on the handles found. Every failed call and
 * every wrong answer is an error, and errors make atomq-bench exit 1.
 *
 * The table is formatted once per N. A first cycle runs on the freshly
 * formatted table, where creates fault in the name heap's pages: its create
 * rate is reported apart, as cold_creates_per_s, and kept out of the
 * medians. Each of the --runs after it is one cycle of each path on the same
 * table, the way a shard churns one table for its whole life.
 *
 * Memory: bytes_per_entity is what the shard sets aside for each entity,
 * (dp_table_bytes + dp_timer_bytes) / N: its 64-byte slot and its shares of
 * the name heap, the name index and the timer nodes. rss_bytes_per_entity
 * is how much the process's resident memory (shared-memory and hugetlb pages
 * included) grew from just before the arena was created to the moment the
 * first N entities were live, divided by N: the memory actually touched.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_cpu.h"
#include "bench/bench_progress.h"
#include "bench/bench_report.h"
#include "bench/bench_scenario.h"
#include "dataplane/dp_mode.h"
#include "dataplane/dp_table.h"
#include "dataplane/dp_timer.h"
#include "shm/shm_arena.h"
#include "shm/shm_clock.h"

#define BENCH_CHURN_ENTITIES_DEFAULT 1000000u
/* Names or handles per burst call (create, find, destroy): a worker drains
 * its command ring in bursts of this order. */
#define BENCH_CHURN_BURST 32u
/* Names looked up after each fill, and handles tried after each drain. */
#define BENCH_CHURN_SAMPLE 4096u
/* "churn." and up to 8 digits, with room for snprintf's NUL. */
#define BENCH_CHURN_NAME_BYTES 16u
/* The wheel's tick: 1 ms, as a shard's. */
#define BENCH_CHURN_TICK_NS 1000000ull
/* Arena room beyond the region: its header and the region's alignment. */
#define BENCH_CHURN_ARENA_SLACK_BYTES (64u * 1024)
/* A guess of one create or destroy, only for the progress line. */
#define BENCH_CHURN_OP_GUESS_S 100e-9

_Static_assert(BENCH_COUNT_MAX <= 100000000u, "churn names are at most 8 digits");

enum bench_churn_path {
        BENCH_CHURN_BY_HANDLE,
        BENCH_CHURN_BY_NAME,
        BENCH_CHURN_PATHS,
};

static const char *const bench_churn_path_names[BENCH_CHURN_PATHS] = { "table",
                                                                       "table-byname" };

/* A shard's entity memory: the arena, and the table and wheel in it. */
struct bench_churn_shard {
        struct shm_arena arena;
        struct dp_table table;
        struct dp_timer_wheel timers;
        size_t table_bytes;
        size_t timer_bytes;
};

/* The N names and their handles, made before the arena exists. */
struct bench_churn_set {
        char *buf;              /* the names, back to back, no NULs */
        struct dp_name *names;
        uint64_t *handles;
};

/* One run: a cycle of each path. */
struct bench_churn_run {
        double create_per_s[BENCH_CHURN_PATHS];
        double destroy_per_s[BENCH_CHURN_PATHS];
};

/* One N. Only the case's thread writes it while it runs; the main thread
 * reads it after the join. */
struct bench_churn_case {
        const struct bench_opts *o;
        uint32_t n;
        struct bench_churn_set set;
        struct bench_churn_shard shard;
        struct dp_entity proto;
        uint64_t rss0_bytes;     /* before the arena */
        uint64_t rss_live_bytes; /* when the first N were live */
        double cold_create_per_s;
        double cold_destroy_per_s;
        struct bench_churn_run runs[BENCH_RUNS_MAX];
        uint64_t errors[BENCH_CHURN_PATHS];
        double cpu_share;
};

/* Resident bytes of this process: VmRSS (anonymous, file and shared-memory
 * pages) plus HugetlbPages, which VmRSS leaves out. 0 when unreadable. */
static uint64_t bench_churn_rss_bytes(void)
{
        FILE *f = fopen("/proc/self/status", "re");
        char line[128];
        unsigned long long kib, total_kib = 0;

        if (f == NULL)
                return 0;
        while (fgets(line, sizeof(line), f) != NULL)
                if (sscanf(line, "VmRSS: %llu kB", &kib) == 1 ||
                    sscanf(line, "HugetlbPages: %llu kB", &kib) == 1)
                        total_kib += kib;
        fclose(f);
        return (uint64_t)total_kib * 1024;
}

static void bench_churn_set_free(struct bench_churn_set *set)
{
        free(set->buf);
        free(set->names);
        free(set->handles);
        memset(set, 0, sizeof(*set));
}

/* Formats the n names and touches every page of the set, so none of it
 * counts in the RSS growth measured later. -ENOMEM. */
static int bench_churn_set_make(struct bench_churn_set *set, uint32_t n)
{
        set->buf = malloc((size_t)n * BENCH_CHURN_NAME_BYTES);
        set->names = malloc((size_t)n * sizeof(*set->names));
        set->handles = malloc((size_t)n * sizeof(*set->handles));
        if (set->buf == NULL || set->names == NULL || set->handles == NULL) {
                bench_churn_set_free(set);
                return -ENOMEM;
        }
        /* Not zero: the compiler may turn malloc + memset(0) into calloc,
         * which leaves the pages untouched. All ones is never a handle. */
        memset(set->handles, 0xff, (size_t)n * sizeof(*set->handles));
        char *p = set->buf;
        for (uint32_t i = 0; i < n; i++) {
                int len = snprintf(p, BENCH_CHURN_NAME_BYTES, "churn.%u", i);
                set->names[i] = (struct dp_name){ .s = p, .len = (uint32_t)len };
                p += len; /* the next name overwrites the NUL */
        }
        return 0;
}

/* An arena like a shard's, with the table and the wheel for n formatted in
 * one region. -errno from the arena or from formatting. */
static int bench_churn_shard_open(struct bench_churn_shard *sh, uint32_t n)
{
        struct dp_table_config tc = { .shard = 0, .capacity = n };
        sh->table_bytes = dp_table_bytes(&tc);
        sh->timer_bytes = dp_timer_bytes(n);
        if (sh->table_bytes == 0 || sh->timer_bytes == 0)
                return -EINVAL;
        size_t timer_off = shm_align_up(sh->table_bytes, SHM_CACHE_LINE);
        size_t region_bytes = timer_off + sh->timer_bytes;
        struct shm_arena_config ac = { .bytes = region_bytes + BENCH_CHURN_ARENA_SLACK_BYTES,
                                       .hugepages = SHM_HUGEPAGES_AUTO,
                                       .numa_node = -1,
                                       .name = "atomq-bench-churn" };
        int rc = shm_arena_create(&sh->arena, &ac);
        if (rc != 0)
                return rc;
        uint64_t off = 0;
        rc = shm_arena_region_add(&sh->arena, SHM_REGION_USER, "bench.churn.shard",
                                  region_bytes, &off);
        uint8_t *mem = rc == 0 ? shm_arena_ptr(&sh->arena, off, region_bytes) : NULL;
        if (rc == 0 && mem == NULL)
                rc = -ENOSPC;
        if (rc == 0)
                rc = dp_table_init(&sh->table, mem, sh->table_bytes, &tc);
        if (rc == 0)
                rc = dp_timer_init(&sh->timers, mem + timer_off, sh->timer_bytes, n,
                                   BENCH_CHURN_TICK_NS, shm_clock_ns());
        if (rc != 0)
                shm_arena_close(&sh->arena);
        return rc;
}

/* A mailbox as dp_modes[] defines it (storage mem, routing direct), with no
 * TTL so no timer is armed. */
static void bench_churn_proto(struct dp_entity *e)
{
        const struct dp_mode_row *m = &dp_modes[DP_MODE_MAILBOX];
        memset(e, 0, sizeof(*e));
        e->mode = DP_MODE_MAILBOX;
        e->storage = m->storage;
        e->retention = m->retention;
        e->routing = m->routing;
        e->delivery = m->delivery;
        e->overflow = m->overflow;
        e->lifecycle = m->lifecycle;
        e->ttl_ms = 0;
}

/* RSS growth per entity; 0 if RSS could not be read or did not grow. */
static double bench_churn_touched_per_entity(const struct bench_churn_case *c)
{
        if (c->rss_live_bytes <= c->rss0_bytes || c->rss0_bytes == 0)
                return 0.0;
        return (double)(c->rss_live_bytes - c->rss0_bytes) / c->n;
}

static double bench_churn_per_s(uint32_t n, uint64_t elapsed_ns)
{
        return elapsed_ns != 0 ? (double)n * 1e9 / (double)elapsed_ns : 0.0;
}

/* Creates all n entities in bursts; returns the time it took and counts
 * every entity not created in *errors. */
static uint64_t bench_churn_fill(struct bench_churn_case *c, uint64_t *errors)
{
        struct dp_table *t = &c->shard.table;
        const struct dp_name *names = c->set.names;
        uint64_t *handles = c->set.handles;
        int rcs[BENCH_CHURN_BURST];
        uint64_t created = 0;

        uint64_t t0_ns = shm_clock_ns();
        for (uint32_t i = 0; i < c->n; i += BENCH_CHURN_BURST) {
                uint32_t m = c->n - i < BENCH_CHURN_BURST ? c->n - i : BENCH_CHURN_BURST;
                created += dp_table_create_burst(t, &c->proto, &names[i], m, &handles[i], rcs);
        }
        uint64_t elapsed_ns = shm_clock_ns() - t0_ns;
        *errors += c->n - created;
        return elapsed_ns;
}

/* Destroys all n entities in bursts, by handle or by name; returns the time
 * it took and counts every name not found and every handle not destroyed in
 * *errors. By name, a wrong handle from dp_table_find_burst destroys another
 * entity, whose own name then is not found (or, in the same burst, whose
 * handle is then stale). */
static uint64_t bench_churn_drain(struct bench_churn_case *c, enum bench_churn_path path,
                                  uint64_t *errors)
{
        struct dp_table *t = &c->shard.table;
        const struct dp_name *names = c->set.names;
        const uint64_t *handles = c->set.handles;
        uint64_t failed = 0;
        int rcs[BENCH_CHURN_BURST];

        uint64_t t0_ns = shm_clock_ns();
        if (path == BENCH_CHURN_BY_HANDLE) {
                for (uint32_t i = 0; i < c->n; i += BENCH_CHURN_BURST) {
                        uint32_t m = c->n - i < BENCH_CHURN_BURST ? c->n - i : BENCH_CHURN_BURST;
                        failed += m - dp_table_destroy_burst(t, &handles[i], m, rcs);
                }
        } else {
                uint64_t found[BENCH_CHURN_BURST];
                for (uint32_t i = 0; i < c->n; i += BENCH_CHURN_BURST) {
                        uint32_t m = c->n - i < BENCH_CHURN_BURST ? c->n - i : BENCH_CHURN_BURST;
                        uint32_t k = 0;
                        dp_table_find_burst(t, &names[i], m, found, rcs);
                        for (uint32_t j = 0; j < m; j++) {
                                if (rcs[j] == 0)
                                        found[k++] = found[j];
                                else
                                        failed++;
                        }
                        failed += k - dp_table_destroy_burst(t, found, k, rcs);
                }
        }
        uint64_t elapsed_ns = shm_clock_ns() - t0_ns;
        *errors += failed;
        return elapsed_ns;
}

/* The spacing of the sampled indexes: about BENCH_CHURN_SAMPLE of them. */
static uint32_t bench_churn_step(uint32_t n)
{
        return n > BENCH_CHURN_SAMPLE ? n / BENCH_CHURN_SAMPLE : 1;
}

/* One sampled entity while all are live: found by name under its handle,
 * and that handle's entity carries the name. Returns the errors. */
static uint64_t bench_churn_check_one(const struct bench_churn_case *c, uint32_t i)
{
        const struct dp_table *t = &c->shard.table;
        const struct dp_name *nm = &c->set.names[i];
        uint64_t h = DP_HANDLE_NONE;
        struct dp_entity *e = NULL;
        uint32_t len = 0;

        if (dp_table_find(t, nm->s, nm->len, &h) != 0 || h != c->set.handles[i])
                return 1;
        if (dp_table_get(t, h, &e) != 0 || e->storage != DP_STORAGE_MEM ||
            e->routing != DP_ROUTING_DIRECT)
                return 1;
        const char *name = dp_table_name(t, e, &len);
        return name == NULL || len != nm->len || memcmp(name, nm->s, len) != 0;
}

/* All n live: the count, a sample by name, the last one, and a name never
 * created. Returns the errors. */
static uint64_t bench_churn_check_live(const struct bench_churn_case *c)
{
        const struct dp_table *t = &c->shard.table;
        uint64_t errors = t->hdr->live != c->n;

        for (uint32_t i = 0; i < c->n; i += bench_churn_step(c->n))
                errors += bench_churn_check_one(c, i);
        errors += bench_churn_check_one(c, c->n - 1);
        char absent[BENCH_CHURN_NAME_BYTES];
        int len = snprintf(absent, sizeof(absent), "churn.%u", c->n);
        uint64_t h;
        errors += dp_table_find(t, absent, (uint32_t)len, &h) != -ENOENT;
        return errors;
}

/* All destroyed: the count, and for a sample a name that is gone and a
 * handle that is stale. Returns the errors. */
static uint64_t bench_churn_check_empty(const struct bench_churn_case *c)
{
        const struct dp_table *t = &c->shard.table;
        uint64_t errors = t->hdr->live != 0;

        for (uint32_t i = 0; i < c->n; i += bench_churn_step(c->n)) {
                const struct dp_name *nm = &c->set.names[i];
                struct dp_entity *e;
                uint64_t h;
                errors += dp_table_find(t, nm->s, nm->len, &h) != -ENOENT;
                errors += dp_table_get(t, c->set.handles[i], &e) != -ESTALE;
        }
        return errors;
}

/* Create all, check, destroy all, check. */
static void bench_churn_cycle(struct bench_churn_case *c, enum bench_churn_path path,
                              double *create_per_s, double *destroy_per_s)
{
        uint64_t *errors = &c->errors[path];
        uint64_t create_ns = bench_churn_fill(c, errors);
        if (c->rss_live_bytes == 0)
                c->rss_live_bytes = bench_churn_rss_bytes();
        *errors += bench_churn_check_live(c);
        uint64_t destroy_ns = bench_churn_drain(c, path, errors);
        *errors += bench_churn_check_empty(c);
        *create_per_s = bench_churn_per_s(c->n, create_ns);
        *destroy_per_s = bench_churn_per_s(c->n, destroy_ns);
}

static void *bench_churn_thread(void *arg)
{
        struct bench_churn_case *c = arg;
        struct bench_thread_share share;

        bench_thread_share_start(&share);
        bench_churn_cycle(c, BENCH_CHURN_BY_HANDLE, &c->cold_create_per_s,
                          &c->cold_destroy_per_s);
        for (unsigned r = 0; r < c->o->runs; r++)
                for (unsigned p = 0; p < BENCH_CHURN_PATHS; p++)
                        bench_churn_cycle(c, p, &c->runs[r].create_per_s[p],
                                          &c->runs[r].destroy_per_s[p]);
        c->cpu_share = bench_thread_share_end(&share);
        return NULL;
}

/* Every run's figures on stderr: the report keeps only medians. */
static void bench_churn_notes(const struct bench_churn_case *c)
{
        const struct bench_churn_shard *sh = &c->shard;
        fprintf(stderr, "churn: %u entities: arena %.1f MB (%s pages), reserved %.1f B and "
                        "touched %.1f B per entity\n", c->n, (double)sh->arena.bytes / 1e6,
                sh->arena.hugepages ? "huge" : "4 KiB",
                (double)(sh->table_bytes + sh->timer_bytes) / c->n,
                bench_churn_touched_per_entity(c));
        fprintf(stderr, "churn: %u entities: cold cycle: create %.2f M/s, destroy %.2f M/s\n",
                c->n, c->cold_create_per_s / 1e6, c->cold_destroy_per_s / 1e6);
        for (unsigned r = 0; r < c->o->runs; r++) {
                const struct bench_churn_run *run = &c->runs[r];
                fprintf(stderr, "churn: %u entities: run %u: table create %.2f M/s destroy "
                                "%.2f M/s; table-byname create %.2f M/s destroy %.2f M/s\n",
                        c->n, r + 1, run->create_per_s[0] / 1e6, run->destroy_per_s[0] / 1e6,
                        run->create_per_s[1] / 1e6, run->destroy_per_s[1] / 1e6);
        }
}

/* One result per path, reduced to medians. -ENOSPC when the report is full. */
static int bench_churn_results(const struct bench_churn_case *c, struct bench_report *rep)
{
        const struct bench_churn_shard *sh = &c->shard;
        char case_name[BENCH_NAME_BYTES];
        bench_count_name(case_name, sizeof(case_name), c->n);
        for (unsigned p = 0; p < BENCH_CHURN_PATHS; p++) {
                struct bench_result *r = bench_report_add(rep, "atomq", "churn", case_name);
                if (r == NULL) {
                        fprintf(stderr, "atomq-bench: churn: more than %u results\n",
                                BENCH_RESULTS_MAX);
                        return -ENOSPC;
                }
                double creates[BENCH_RUNS_MAX], destroys[BENCH_RUNS_MAX];
                for (unsigned i = 0; i < c->o->runs; i++) {
                        creates[i] = c->runs[i].create_per_s[p];
                        destroys[i] = c->runs[i].destroy_per_s[p];
                }
                r->no_msgs = true;
                r->fixed_work = true;
                r->errors = c->errors[p];
                r->cpu_share = c->cpu_share;
                bench_result_str(r, "path", bench_churn_path_names[p]);
                bench_result_u64(r, "entities", c->n);
                bench_result_rate(r, "creates_per_s", bench_median_f64(creates, c->o->runs));
                bench_result_rate(r, "destroys_per_s", bench_median_f64(destroys, c->o->runs));
                bench_result_f64(r, "bytes_per_entity",
                                 (double)(sh->table_bytes + sh->timer_bytes) / c->n);
                bench_result_f64(r, "rss_bytes_per_entity", bench_churn_touched_per_entity(c));
                bench_result_bool(r, "hugepages", sh->arena.hugepages);
                if (p == BENCH_CHURN_BY_HANDLE)
                        bench_result_rate(r, "cold_creates_per_s", c->cold_create_per_s);
        }
        return 0;
}

/* Names, arena, the runs on a pinned thread, results. */
static int bench_churn_case_run(struct bench_churn_case *c, struct bench_progress *pg,
                                int cpu, struct bench_report *rep)
{
        int rc = bench_churn_set_make(&c->set, c->n);
        if (rc != 0) {
                fprintf(stderr, "atomq-bench: churn: %u names: %s\n", c->n, strerror(-rc));
                return rc;
        }
        c->rss0_bytes = bench_churn_rss_bytes();
        rc = bench_churn_shard_open(&c->shard, c->n);
        if (rc != 0) {
                fprintf(stderr, "atomq-bench: churn: a shard for %u entities: %s\n", c->n,
                        strerror(-rc));
                bench_churn_set_free(&c->set);
                return rc;
        }
        bench_progress_label(pg, "churn: %u entities", c->n);
        pthread_t t;
        rc = bench_thread_start(&t, cpu, bench_churn_thread, c);
        if (rc == 0)
                rc = bench_progress_join(pg, t);
        bench_progress_end(pg); /* a clean line for the notes */
        if (rc == 0 && !c->o->quiet)
                bench_churn_notes(c);
        if (rc == 0)
                rc = bench_churn_results(c, rep);
        else
                fprintf(stderr, "atomq-bench: churn: thread: %s\n", strerror(-rc));
        shm_arena_close(&c->shard.arena);
        bench_churn_set_free(&c->set);
        return rc;
}

int bench_churn_run(const struct bench_opts *o, struct bench_progress *pg,
                    struct bench_report *rep)
{
        static const unsigned entities_default[] = { BENCH_CHURN_ENTITIES_DEFAULT };
        bool nats = o->churn_path != NULL && strcmp(o->churn_path, "nats") == 0;
        if (o->url != NULL && !nats) {
                fprintf(stderr, "atomq-bench: churn: --url goes with --path nats\n");
                return -EINVAL;
        }
        if (nats)
                return bench_churn_nats(o, pg, rep);
        if (o->churn_path != NULL && strcmp(o->churn_path, "control") == 0)
                return bench_churn_control(o, pg, rep);
        if (o->churn_path != NULL && strcmp(o->churn_path, "agent") == 0)
                return bench_churn_agent(o, pg, rep);
        if (o->control_path != NULL) {
                fprintf(stderr, "atomq-bench: churn: --control goes with --path control "
                                "or --path agent\n");
                return -EINVAL;
        }
        const unsigned *entities = o->entities_n ? o->entities : entities_default;
        unsigned entities_n = o->entities_n ? o->entities_n : 1;
        int cpu;
        int rc = bench_opts_cpu(o, "churn", &cpu);
        if (rc != 0)
                return rc;

        for (unsigned i = 0; i < entities_n && rc == 0; i++) {
                /* ~1.5 KB with its run figures: on the heap, zeroed. */
                struct bench_churn_case *c = calloc(1, sizeof(*c));
                if (c == NULL)
                        return -ENOMEM;
                c->o = o;
                c->n = entities[i];
                bench_churn_proto(&c->proto);
                /* Two creates and two destroys per entity a run, plus the
                 * cold cycle. */
                bench_progress_start(pg, c->n * (2.0 + 4.0 * o->runs) * BENCH_CHURN_OP_GUESS_S);
                rc = bench_churn_case_run(c, pg, cpu, rep);
                free(c);
        }
        return rc;
}
