/* bench_nats.c - scenario "nats": load on any NATS server (atomqd's
 * --nats listener, nats-server) through the client protocol on TCP, with
 * the tiny client of bench_nats_client.c. This file takes the case word
 * and the options, runs every case against every server and reports the
 * medians; the cases themselves are bench_nats_stream.c (pub, pubsub,
 * fanout, queue) and bench_nats_reqrep.c (reqrep).
 *
 *      atomq-bench nats pubsub --url nats://127.0.0.1:4222 --json --runs 3
 *      atomq-bench nats fanout --subs 1,4,16 --url nats://127.0.0.1:4222
 *      atomq-bench nats --url nats://127.0.0.1:4222,nats://127.0.0.1:4223
 *
 * Cases (the word after "nats"; none: all five), each repeated --runs
 * times on fresh connections and reported as medians:
 *   pub     one publisher, nobody subscribed: msgs/s the server took, from
 *           a PING/PONG sync at the start of the window to one at its end;
 *   pubsub  one publisher, one subscriber connection on the subject:
 *           msgs/s received in the subscriber's window;
 *   fanout  one publisher, --subs N subscriber connections (default 4):
 *           msgs/s delivered, summed over the subscribers;
 *   queue   the same with the N in one queue group: msgs/s delivered in
 *           all, and every message must arrive exactly once;
 *   reqrep  a responder connection answers each request with a message of
 *           the same size; one requester sends the next request when the
 *           answer is in: p50/p99/p999 ns and requests/s.
 * Several --url servers are alternated run by run (A, B, A, B, ...) so a
 * noisy machine hurts them alike; each gets its own result lines, named
 * by what its INFO says ("atomq", "nats-server").
 *
 * Loss, duplicates, -ERRs from the server and wrong answers to requests
 * are errors (atomq-bench exits 1).
 *
 * Every client thread blocks on a socket, so cpu_share is not time on a
 * CPU over wall time: it is the share of the time a thread was ready to
 * run that it ran (/proc/thread-self/schedstat), the least over threads.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bench/bench_clock.h"
#include "bench/bench_nats_pvt.h"
#include "bench/bench_progress.h"
#include "bench/bench_report.h"
#include "bench/bench_scenario.h"
#include "shm/shm_clock.h"

#define BENCH_NATS_SIZE_DEFAULT 16u
#define BENCH_NATS_SUBS_DEFAULT 4u

const char *const bench_nats_kind_names[BENCH_NATS_KINDS] = {
        [BENCH_NATS_PUB] = "pub",
        [BENCH_NATS_PUBSUB] = "pubsub",
        [BENCH_NATS_FANOUT] = "fanout",
        [BENCH_NATS_QUEUE] = "queue",
        [BENCH_NATS_REQREP] = "reqrep",
};

/* ---- what the cases share ------------------------------------------------ */

void bench_nats_schedstat(struct bench_nats_share *s)
{
        unsigned long long run = 0, wait = 0;
        FILE *f = fopen("/proc/thread-self/schedstat", "r");
        if (f != NULL) {
                if (fscanf(f, "%llu %llu", &run, &wait) != 2)
                        run = wait = 0;
                fclose(f);
        }
        s->run_ns = run;
        s->wait_ns = wait;
}

double bench_nats_share_end(const struct bench_nats_share *start)
{
        struct bench_nats_share end;
        bench_nats_schedstat(&end);
        double run = (double)(end.run_ns - start->run_ns);
        double wait = (double)(end.wait_ns - start->wait_ns);
        /* Without schedstat (or a thread that never ran) nothing is known. */
        return run + wait <= 0 ? 1.0 : run / (run + wait);
}

/* Says which connection of a run failed and why (the server's -ERR when
 * it sent one). */
void bench_nats_say(const struct bench_nats_env *env, const struct bench_nats_case *cs,
                    const struct bench_nats_server *s, const char *who, int rc,
                    const struct bench_nats_conn *c)
{
        bench_progress_end(env->pg);
        fprintf(stderr, "atomq-bench: nats %s %u B against %s (%s): %s: %s%s%s\n",
                bench_nats_kind_names[cs->kind], cs->msg_bytes, s->system, s->url, who,
                strerror(-rc), c != NULL && c->err[0] ? ": " : "", c != NULL ? c->err : "");
}

/* What INFO said, the first time a server answers: its system name. Two
 * servers of one kind are told apart as "name-2", ... */
void bench_nats_server_learn(struct bench_nats_env *env, struct bench_nats_server *s,
                             const struct bench_nats_info *in)
{
        if (s->known)
                return;
        const char *name = strcmp(in->server_name, "atomq") == 0 ||
                           strncmp(in->go, "atomq", 5) == 0 ? "atomq"
                           : strncmp(in->go, "go", 2) == 0 ? "nats-server"
                           : in->server_name[0] != '\0' ? in->server_name : "unknown";
        unsigned same = 0;
        for (unsigned i = 0; i < env->servers_n; i++)
                same += env->servers[i].known && strncmp(env->servers[i].system, name,
                                                         strlen(name)) == 0;
        if (same == 0)
                snprintf(s->system, sizeof(s->system), "%.20s", name);
        else
                snprintf(s->system, sizeof(s->system), "%.20s-%u", name, same + 1);
        s->max_payload = in->max_payload;
        s->known = true;
}

/* The publisher connected: learns the server, checks the size fits. */
int bench_nats_greeted(struct bench_nats_env *env, const struct bench_nats_case *cs,
                       struct bench_nats_server *s, const struct bench_nats_conn *c)
{
        bench_nats_server_learn(env, s, &c->info);
        if (s->max_payload != 0 && cs->msg_bytes > s->max_payload) {
                bench_progress_end(env->pg);
                fprintf(stderr, "atomq-bench: nats: %u-byte messages are above the max_payload "
                                "of %s (%s): %" PRIu64 "\n", cs->msg_bytes, s->system, s->url,
                        s->max_payload);
                return -EMSGSIZE;
        }
        return 0;
}

/* Window times from now on; every connection gives up past the end. */
void bench_nats_times(const struct bench_nats_env *env, uint64_t *open_ticks,
                      uint64_t *close_ticks, uint64_t *give_up_ns)
{
        const struct bench_opts *o = env->o;
        uint64_t warmup_ns = (uint64_t)(o->warmup_s * 1e9);
        uint64_t duration_ns = (uint64_t)(o->duration_s * 1e9);
        *open_ticks = bench_clock_ticks(&env->clock) + bench_clock_from_ns(&env->clock, warmup_ns);
        *close_ticks = *open_ticks + bench_clock_from_ns(&env->clock, duration_ns);
        *give_up_ns = shm_clock_ns() + warmup_ns + duration_ns + BENCH_NATS_STALL_NS;
}

/* ---- cases and the report ----------------------------------------------- */

static int bench_nats_report(const struct bench_nats_env *env, const struct bench_nats_case *cs,
                             const struct bench_nats_server *s, struct bench_nats_tally *t,
                             struct bench_report *rep)
{
        const unsigned runs = env->o->runs;
        struct bench_result *res = bench_report_add(rep, s->system, "nats",
                                                    bench_nats_kind_names[cs->kind]);
        if (res == NULL)
                return -ENOSPC;
        res->msg_bytes = cs->msg_bytes;
        res->msgs_per_s = bench_median_f64(t->rates, runs);
        res->bytes_per_s = res->msgs_per_s * cs->msg_bytes;
        res->errors = t->errors;
        res->cpu_share = t->share;
        if (cs->kind == BENCH_NATS_REQREP) {
                res->has_latency = true;
                snprintf(res->clock, sizeof(res->clock), "%s", bench_clock_name(&env->clock));
                bench_latency_median(&res->lat, t->lats, runs);
                return 0;
        }
        if (cs->kind == BENCH_NATS_PUB)
                return 0;
        if (cs->kind == BENCH_NATS_FANOUT || cs->kind == BENCH_NATS_QUEUE)
                bench_result_u64(res, "subs", cs->subs);
        bench_result_rate(res, "sent_per_s", bench_median_f64(t->sent_rates, runs));
        bench_result_u64(res, "sent", t->sent);
        bench_result_u64(res, "lost", t->lost);
        if (cs->kind == BENCH_NATS_QUEUE)
                bench_result_u64(res, "dups", t->dups);
        if (t->late != 0 && !env->o->quiet)
                fprintf(stderr, "nats: %s against %s: %" PRIu64 " messages arrived after the "
                                "PONG to a later PING on their connection\n",
                        bench_nats_kind_names[cs->kind], s->system, t->late);
        if ((t->lost != 0 || t->dups != 0) && !env->o->quiet)
                fprintf(stderr, "nats: %s against %s: %" PRIu64 " lost, %" PRIu64
                                " duplicated of %" PRIu64 " sent (errors)\n",
                        bench_nats_kind_names[cs->kind], s->system, t->lost, t->dups, t->sent);
        return 0;
}

/* --runs runs against every server, alternating; a server that failed a
 * run gets no more and no result. Returns the first failure. */
static int bench_nats_case_run(struct bench_nats_env *env, const struct bench_nats_case *cs,
                               struct bench_report *rep)
{
        static struct bench_nats_tally tallies[BENCH_NATS_URLS_MAX];
        const unsigned runs = env->o->runs;
        for (unsigned i = 0; i < env->servers_n; i++) {
                memset(&tallies[i], 0, sizeof(tallies[i]));
                tallies[i].share = 1.0;
        }
        for (unsigned run = 0; run < runs; run++) {
                for (unsigned i = 0; i < env->servers_n; i++) {
                        struct bench_nats_server *s = &env->servers[i];
                        if (tallies[i].rc != 0)
                                continue;
                        bench_progress_label(env->pg, "nats: %s %u B, %s, run %u/%u",
                                             bench_nats_kind_names[cs->kind], cs->msg_bytes,
                                             s->system, run + 1, runs);
                        tallies[i].rc = cs->kind == BENCH_NATS_REQREP
                                        ? bench_nats_rr_once(env, cs, s, &tallies[i], run)
                                        : bench_nats_tput_once(env, cs, s, &tallies[i], run);
                }
        }
        int rc = 0;
        for (unsigned i = 0; i < env->servers_n; i++) {
                int one = tallies[i].rc != 0 ? tallies[i].rc
                          : bench_nats_report(env, cs, &env->servers[i], &tallies[i], rep);
                rc = rc != 0 ? rc : one;
        }
        return rc;
}

/* --url: a comma-separated list of servers. */
int bench_nats_urls(struct bench_nats_env *env, const char *list, const char *scenario)
{
        const char *p = list != NULL ? list : "nats://127.0.0.1:" BENCH_NATS_PORT_DEFAULT;
        env->servers_n = 0;
        for (;;) {
                size_t len = strcspn(p, ",");
                char url[BENCH_NATS_URL_BYTES];
                if (env->servers_n == BENCH_NATS_URLS_MAX || len >= sizeof(url)) {
                        fprintf(stderr, "atomq-bench: %s: --url: at most %u servers of at "
                                        "most %u characters each\n", scenario,
                                BENCH_NATS_URLS_MAX, BENCH_NATS_URL_BYTES - 1);
                        return -EINVAL;
                }
                memcpy(url, p, len);
                url[len] = '\0';
                if (bench_nats_url_parse(&env->servers[env->servers_n++], url) != 0) {
                        fprintf(stderr, "atomq-bench: %s: --url: expected "
                                        "nats://HOST:PORT, got '%s'\n", scenario, url);
                        return -EINVAL;
                }
                if (p[len] == '\0')
                        return 0;
                p += len + 1;
        }
}

/* The case word (none: all five), --sizes and --subs. */
static int bench_nats_env_setup(struct bench_nats_env *env)
{
        const struct bench_opts *o = env->o;
        const char *word = o->case_word;
        bool any = false;
        for (unsigned k = 0; k < BENCH_NATS_KINDS; k++) {
                env->kinds[k] = word == NULL || strcmp(word, bench_nats_kind_names[k]) == 0;
                any |= env->kinds[k];
        }
        if (!any) {
                fprintf(stderr, "atomq-bench: nats: unknown case '%s': pub, pubsub, fanout, "
                                "queue or reqrep (see --help)\n", word);
                return -EINVAL;
        }
        if (o->subs_n != 0 && !env->kinds[BENCH_NATS_FANOUT] &&
            !env->kinds[BENCH_NATS_QUEUE]) {
                fprintf(stderr, "atomq-bench: nats %s: --subs applies to fanout and queue\n",
                        word);
                return -EINVAL;
        }
        env->subs_n = o->subs_n != 0 ? o->subs_n : 1;
        env->subs[0] = BENCH_NATS_SUBS_DEFAULT;
        for (unsigned i = 0; i < o->subs_n; i++) {
                env->subs[i] = o->subs[i];
                if (o->subs[i] > BENCH_NATS_SUBS_MAX) {
                        fprintf(stderr, "atomq-bench: nats: --subs: at most %u subscriber "
                                        "connections, got %u\n", BENCH_NATS_SUBS_MAX, o->subs[i]);
                        return -EINVAL;
                }
        }
        env->sizes_n = o->sizes_n != 0 ? o->sizes_n : 1;
        env->sizes_bytes[0] = BENCH_NATS_SIZE_DEFAULT;
        memcpy(env->sizes_bytes, o->sizes_bytes, o->sizes_n * sizeof(o->sizes_bytes[0]));
        return bench_nats_urls(env, o->url, "nats");
}

/* The cases of one kind and size: one per --subs for fanout and queue. */
static int bench_nats_kind_run(struct bench_nats_env *env, enum bench_nats_kind kind,
                               unsigned msg_bytes, struct bench_report *rep)
{
        bool many = kind == BENCH_NATS_FANOUT || kind == BENCH_NATS_QUEUE;
        int rc = 0;
        for (unsigned i = 0; i < (many ? env->subs_n : 1); i++) {
                struct bench_nats_case cs = {
                        .kind = kind,
                        .msg_bytes = msg_bytes,
                        .subs = many ? env->subs[i] : kind == BENCH_NATS_PUBSUB ? 1 : 0,
                };
                int one = bench_nats_case_run(env, &cs, rep);
                rc = rc != 0 ? rc : one;
        }
        return rc;
}

int bench_nats_run(const struct bench_opts *o, struct bench_progress *pg,
                   struct bench_report *rep)
{
        static struct bench_nats_env env;
        memset(&env, 0, sizeof(env));
        env.o = o;
        env.pg = pg;
        int rc = bench_nats_env_setup(&env);
        if (rc != 0)
                return rc;
        bench_clock_init(&env.clock, true);
        unsigned cases = 0;
        for (unsigned k = 0; k < BENCH_NATS_KINDS; k++)
                cases += env.kinds[k] * (k == BENCH_NATS_FANOUT || k == BENCH_NATS_QUEUE
                                         ? env.subs_n : 1);
        bench_progress_start(pg, cases * env.sizes_n * env.servers_n * o->runs *
                                 (o->warmup_s + o->duration_s + 0.05));
        /* Every case runs even after one failed: the others still say
         * something, and the failure is reported (exit 1). */
        for (unsigned k = 0; k < BENCH_NATS_KINDS; k++) {
                for (unsigned i = 0; env.kinds[k] && i < env.sizes_n; i++) {
                        int one = bench_nats_kind_run(&env, k, env.sizes_bytes[i], rep);
                        rc = rc != 0 ? rc : one;
                }
        }
        bench_progress_end(pg);
        /* -EINVAL means a usage error to bench_main: a run's is not one. */
        return rc == -EINVAL ? -EIO : rc;
}
