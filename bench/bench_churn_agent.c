/* bench_churn_agent.c - churn through libatomq (path agent).
 *
 *      atomqd --control /tmp/aq/control.sock --metrics off --workers 1 &
 *      atomq-bench churn --path agent --control /tmp/aq/control.sock \
 *              --entities 1000000 --json
 *
 * One agent connection to a running atomqd creates N named mailboxes
 * "ag<pid>.<i>" with atomq_create_many (pipelined: many commands in flight
 * on each worker's ring) and destroys them by handle with
 * atomq_destroy_many. Each call is timed from its start to its return, so
 * the figures include encoding, the agent's command rings, the workers'
 * tables and the completions coming back; the names are formatted before
 * anything is timed. atomqd needs --max-entities of at least N per shard
 * (N / workers and some slack, as names spread by hash).
 *
 * Checked, untimed: each call's count, every handle set, a sample of names
 * found by atomq_lookup under their handles while live and not found
 * (-ENOENT) once destroyed. Every shortfall is an error (exit 1); what a
 * failed run did create is destroyed, so atomqd is left as found.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomq/atomq.h"
#include "bench/bench_cpu.h"
#include "bench/bench_progress.h"
#include "bench/bench_report.h"
#include "bench/bench_scenario.h"
#include "shm/shm_clock.h"

#define BENCH_AGENT_CHURN_DEFAULT 1000000u
/* "ag", 5 digits of pid, '.' and up to 7 digits (i < BENCH_COUNT_MAX): 15
 * bytes at most, under 16, so one unit of the name heap as the other
 * paths' names. Each is formatted in
 * a slot of this size, which the compiler sees can hold any unsigned. */
#define BENCH_AGENT_NAME_BYTES 24u
/* Names looked up while live and after the destroy. */
#define BENCH_AGENT_SAMPLE 64u
/* A guess of one create or destroy, only for the progress line. */
#define BENCH_AGENT_OP_GUESS_S 300e-9

_Static_assert(BENCH_COUNT_MAX <= 10000000u, "agent churn names are at most 7 digits");

/* One N: its names and handles, and what the runs measured. */
struct bench_agent_churn {
        const struct bench_opts *o;
        struct atomq *a;
        uint32_t n;
        char *buf;
        const char **names;
        uint64_t *handles;
        double create_s[BENCH_RUNS_MAX];
        double destroy_s[BENCH_RUNS_MAX];
        uint64_t errors;
        int rc;
        double cpu_share;
};

static void bench_agent_churn_free(struct bench_agent_churn *c)
{
        free(c->buf);
        free(c->names);
        free(c->handles);
}

static int bench_agent_churn_names(struct bench_agent_churn *c)
{
        c->buf = malloc((size_t)c->n * BENCH_AGENT_NAME_BYTES);
        c->names = malloc((size_t)c->n * sizeof(*c->names));
        c->handles = calloc(c->n, sizeof(*c->handles));
        if (c->buf == NULL || c->names == NULL || c->handles == NULL)
                return -ENOMEM;
        unsigned pid = (unsigned)getpid() % 100000u;
        for (uint32_t i = 0; i < c->n; i++) {
                char *p = c->buf + (size_t)i * BENCH_AGENT_NAME_BYTES;
                snprintf(p, BENCH_AGENT_NAME_BYTES, "ag%u.%u", pid, i);
                c->names[i] = p;
        }
        return 0;
}

/* Sampled names: found under their handle (live), or not found (gone).
 * Returns the errors. */
static uint64_t bench_agent_churn_check(struct bench_agent_churn *c, bool live)
{
        uint64_t errors = 0;
        uint32_t step = c->n > BENCH_AGENT_SAMPLE ? c->n / BENCH_AGENT_SAMPLE : 1;
        for (uint32_t i = 0; i < c->n; i += step) {
                uint64_t h = 0;
                int rc = atomq_lookup(c->a, c->names[i], &h);
                errors += live ? rc != 0 || h != c->handles[i] : rc != -ENOENT;
        }
        return errors;
}

/* After a run that fell short: destroys whatever it created. */
static void bench_agent_churn_cleanup(struct bench_agent_churn *c)
{
        uint32_t k = 0;
        for (uint32_t i = 0; i < c->n; i++)
                if (c->handles[i] != 0)
                        c->handles[k++] = c->handles[i];
        if (k > 0)
                (void)atomq_destroy_many(c->a, c->handles, k);
}

/* Create all, check, destroy all, check. 0, or -errno when a call failed
 * as a whole. */
static int bench_agent_churn_cycle(struct bench_agent_churn *c, unsigned run)
{
        uint64_t t0 = shm_clock_ns();
        int created = atomq_create_many(c->a, ATOMQ_MODE_MAILBOX, c->names, c->n, NULL,
                                        c->handles);
        c->create_s[run] = (double)(shm_clock_ns() - t0) / 1e9;
        uint32_t set = 0;
        for (uint32_t i = 0; i < c->n; i++)
                set += c->handles[i] != 0;
        if (created != (int)c->n || set != c->n) {
                fprintf(stderr, "atomq-bench: churn agent: created %u of %u (%s)\n", set, c->n,
                        created < 0 ? atomq_strerror(created) : "count");
                bench_agent_churn_cleanup(c);
                c->errors += c->n - set;
                return created < 0 ? created : -EIO;
        }
        c->errors += bench_agent_churn_check(c, true);
        t0 = shm_clock_ns();
        int destroyed = atomq_destroy_many(c->a, c->handles, c->n);
        c->destroy_s[run] = (double)(shm_clock_ns() - t0) / 1e9;
        if (destroyed != (int)c->n) {
                fprintf(stderr, "atomq-bench: churn agent: destroyed %d of %u\n", destroyed, c->n);
                c->errors += destroyed < 0 ? c->n : c->n - (uint32_t)destroyed;
                return destroyed < 0 ? destroyed : -EIO;
        }
        c->errors += bench_agent_churn_check(c, false);
        if (!c->o->quiet)
                fprintf(stderr, "churn agent %u run %u: create %.3f s (%.2f M/s), destroy "
                                "%.3f s (%.2f M/s)\n", c->n, run + 1, c->create_s[run],
                        c->n / c->create_s[run] / 1e6, c->destroy_s[run],
                        c->n / c->destroy_s[run] / 1e6);
        return 0;
}

static void *bench_agent_churn_thread(void *arg)
{
        struct bench_agent_churn *c = arg;
        struct bench_thread_share share;
        bench_thread_share_start(&share);
        for (unsigned r = 0; r < c->o->runs && c->rc == 0; r++)
                c->rc = bench_agent_churn_cycle(c, r);
        c->cpu_share = bench_thread_share_end(&share);
        return NULL;
}

static int bench_agent_churn_result(const struct bench_agent_churn *c, struct bench_report *rep)
{
        double cs[BENCH_RUNS_MAX], ds[BENCH_RUNS_MAX];
        struct bench_result *res = bench_report_add(rep, "atomq", "churn", "agent");
        if (res == NULL)
                return -ENOSPC;
        memcpy(cs, c->create_s, sizeof(cs));
        memcpy(ds, c->destroy_s, sizeof(ds));
        double create_s = bench_median_f64(cs, c->o->runs);
        double destroy_s = bench_median_f64(ds, c->o->runs);
        res->no_msgs = true;
        res->fixed_work = true;
        res->errors = c->errors;
        res->cpu_share = c->cpu_share;
        bench_result_str(res, "path", "agent");
        bench_result_u64(res, "entities", c->n);
        bench_result_rate(res, "creates_per_s", c->n / create_s);
        bench_result_rate(res, "destroys_per_s", c->n / destroy_s);
        bench_result_f64(res, "create_s", create_s);
        bench_result_f64(res, "destroy_s", destroy_s);
        return 0;
}

/* One N on a thread of its own (pinned to the first of --cpus, if given). */
static int bench_agent_churn_case(struct bench_agent_churn *c, struct bench_progress *pg,
                                  int cpu, struct bench_report *rep)
{
        int rc = bench_agent_churn_names(c);
        if (rc != 0) {
                fprintf(stderr, "atomq-bench: churn agent: %u names: %s\n", c->n, strerror(-rc));
                return rc;
        }
        bench_progress_start(pg, 2.0 * c->n * c->o->runs * BENCH_AGENT_OP_GUESS_S);
        bench_progress_label(pg, "churn agent: %u entities", c->n);
        pthread_t t;
        rc = bench_thread_start(&t, cpu, bench_agent_churn_thread, c);
        if (rc == 0)
                rc = bench_progress_join(pg, t);
        bench_progress_end(pg);
        if (rc == 0)
                rc = c->rc;
        if (rc == 0)
                rc = bench_agent_churn_result(c, rep);
        else
                fprintf(stderr, "atomq-bench: churn agent: %u entities: %s\n", c->n,
                        atomq_strerror(rc));
        return rc;
}

int bench_churn_agent(const struct bench_opts *o, struct bench_progress *pg,
                      struct bench_report *rep)
{
        struct atomq *a = NULL;
        int cpu = -1;
        if (o->control_path == NULL) {
                fprintf(stderr, "atomq-bench: churn --path agent needs --control PATH "
                                "(the socket of a running atomqd)\n");
                return -EINVAL;
        }
        int rc = o->cpus_set ? bench_opts_cpu(o, "churn", &cpu) : 0;
        if (rc != 0)
                return rc;
        rc = atomq_connect(o->control_path, &a);
        if (rc != 0) {
                fprintf(stderr, "atomq-bench: --control %s: %s\n", o->control_path,
                        strerror(-rc));
                return rc;
        }
        unsigned cases = o->entities_n ? o->entities_n : 1;
        for (unsigned i = 0; i < cases && rc == 0; i++) {
                struct bench_agent_churn *c = calloc(1, sizeof(*c));
                if (c == NULL) {
                        rc = -ENOMEM;
                        break;
                }
                c->o = o;
                c->a = a;
                c->n = o->entities_n ? o->entities[i] : BENCH_AGENT_CHURN_DEFAULT;
                rc = bench_agent_churn_case(c, pg, cpu, rep);
                bench_agent_churn_free(c);
                free(c);
        }
        atomq_close(a);
        return rc;
}
