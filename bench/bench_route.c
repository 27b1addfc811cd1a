/* bench_route.c - scenario "route": how many published messages a shard's
 * subject trie routes per second (match routing, docs/architecture.md) when
 * it holds N subscriptions.
 *
 *      atomq-bench route
 *      atomq-bench route --subs 1000000 --duration 2 --runs 5 --json
 *
 * The trie is formatted in an shm arena as a shard's is (hugepages when
 * reserved), its pools sized exactly for the patterns below, and filled with
 * N subscriptions: user.<i>.inbox for i < N - 6 and the 6 wildcard patterns
 * of bench_route_wild[]. One pinned thread then calls dp_trie_match, with a
 * callback that counts deliveries, over a pre-generated sequence of 2^20
 * subjects (so snprintf is not what is timed), round and round for --warmup
 * and then --duration.
 *
 * Subjects, drawn with a fixed seed so every run and every build sees the
 * same sequence:
 *   90%  user.<i>.inbox, i uniform below (N - 6) * 65 / 64, so 1 in 65 has no
 *        exact subscriber: 4 deliveries, or 3 without one (one more for i=7);
 *    5%  user.<i>.outbox: user.> and user.*.outbox, 2 deliveries (3 for i=7);
 *    5%  svc.<i>.inbox: *.*.inbox only, 1 delivery.
 * The '*' and '>' branches make a match walk several paths, as a subject
 * space with a few wildcard subscribers does; a random i makes the exact
 * path a cache miss once the trie outgrows the caches.
 *
 * Checks: every subject's delivery count is worked out when it is generated,
 * by a matcher of our own (bench_route_ref_match), and the deliveries of each
 * run must add up to what its subjects expect. A sample of subjects is also
 * matched one at a time and the exact set of subscriptions reached compared.
 * Every difference is an error, and errors make atomq-bench exit 1.
 *
 * Figures: msgs_per_s = matches_per_s, dp_trie_match calls per second (one
 * published message, one match); deliveries_per_s, callbacks per second;
 * inserts_per_s, the rate the exact subscriptions went in (one build, not a
 * median); trie_bytes_per_sub, dp_trie_bytes / N.
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
#include "dataplane/dp_trie.h"
#include "shm/shm_arena.h"
#include "shm/shm_clock.h"

/* The published subjects, cycled: 32 MB of subjects, far beyond the caches,
 * so the sequence itself is not what stays hot. */
#define BENCH_ROUTE_SUBJECTS (1u << 20)
#define BENCH_ROUTE_STRIDE 32u /* "user.<8 digits>.outbox" and a NUL */
#define BENCH_ROUTE_PATTERN_STRIDE 24u /* "user.<8 digits>.inbox" and a NUL */
/* Matches between clock reads: ~100 us, so the clock costs nothing. */
#define BENCH_ROUTE_CHECK_EVERY 1024u
/* Subjects whose deliveries are compared one subscription at a time. */
#define BENCH_ROUTE_SAMPLE 4096u
/* The most subscriptions one subject reaches here (exact and all 6 wild). */
#define BENCH_ROUTE_SEEN_MAX 8u
/* Values of the wildcard subscriptions: above any exact one's (its i). */
#define BENCH_ROUTE_WILD_VALUE (1ull << 40)
#define BENCH_ROUTE_SEED 0x61746f6d71726f75ull /* "atomqrou" */
#define BENCH_ROUTE_ARENA_SLACK_BYTES (64u * 1024)
#define BENCH_ROUTE_INSERT_GUESS_S 400e-9 /* only for the progress line */

_Static_assert((BENCH_ROUTE_SUBJECTS & (BENCH_ROUTE_SUBJECTS - 1)) == 0, "a mask");
_Static_assert(BENCH_COUNT_MAX < 99000000u, "ids of at most 8 digits fit the strides");

static const unsigned bench_route_subs_default[] = { 10000, 1000000 };

static const char *const bench_route_wild[] = {
        "user.*.inbox", "user.>", "*.*.inbox", "user.7.*", "user.*.outbox", "metrics.>",
};

#define BENCH_ROUTE_WILD_N (sizeof(bench_route_wild) / sizeof(bench_route_wild[0]))
/* Nodes a wildcard pattern may add: one per token, at most 3 here. */
#define BENCH_ROUTE_WILD_NODES 3u

enum bench_route_kind { BENCH_ROUTE_INBOX, BENCH_ROUTE_OUTBOX, BENCH_ROUTE_SVC };

static const char *const bench_route_formats[] = { "user.%u.inbox", "user.%u.outbox",
                                                   "svc.%u.inbox" };

struct bench_route_run {
        double matches_per_s;
        double deliveries_per_s;
};

/* One N. Only the case's thread writes it while it runs; the main thread
 * reads it after the join. */
struct bench_route_case {
        const struct bench_opts *o;
        uint32_t subs_n;          /* N */
        uint32_t exact_n;         /* N - the wildcard ones */
        uint32_t id_range;        /* subjects' i is below this */
        struct shm_arena arena;
        struct dp_trie trie;
        size_t trie_bytes;
        char *subjects;           /* BENCH_ROUTE_SUBJECTS x BENCH_ROUTE_STRIDE */
        uint8_t *subject_lens;
        uint8_t *expected;        /* deliveries each subject should get */
        uint64_t expected_total;  /* over the whole sequence */
        double inserts_per_s;
        struct bench_route_run runs[BENCH_RUNS_MAX];
        uint64_t errors;
        double cpu_share;
        int rc;                   /* the thread's: 0 or -ENOMEM */
};

/* splitmix64: a fixed-seed sequence, the same on every machine. */
static uint64_t bench_route_rand(uint64_t *state)
{
        uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

/* Our own reading of the subject rules, independent of dp_trie: '*' matches
 * one token, a final '>' one or more, any other token itself. */
static bool bench_route_ref_match(const char *pat, const char *subj, size_t subj_len)
{
        const char *s = subj, *end = subj + subj_len;
        for (;;) {
                size_t plen = strcspn(pat, ".");
                if (plen == 1 && pat[0] == '>')
                        return s < end;
                if (s >= end)
                        return false;
                const char *dot = memchr(s, '.', (size_t)(end - s));
                size_t slen = dot != NULL ? (size_t)(dot - s) : (size_t)(end - s);
                bool star = plen == 1 && pat[0] == '*';
                if (!star && (plen != slen || memcmp(pat, s, slen) != 0))
                        return false;
                s += slen;
                bool pat_last = pat[plen] == '\0', subj_last = s == end;
                if (pat_last || subj_last)
                        return pat_last && subj_last;
                pat += plen + 1;
                s++; /* past the dot */
        }
}

/* The values of the subscriptions subject should reach, in values[]; returns
 * how many. */
static unsigned bench_route_expect(const struct bench_route_case *c, enum bench_route_kind kind,
                                   uint32_t id, const char *subj, size_t len, uint64_t *values)
{
        unsigned n = 0;
        if (kind == BENCH_ROUTE_INBOX && id < c->exact_n)
                values[n++] = id;
        for (unsigned w = 0; w < BENCH_ROUTE_WILD_N; w++)
                if (bench_route_ref_match(bench_route_wild[w], subj, len))
                        values[n++] = BENCH_ROUTE_WILD_VALUE + w;
        return n;
}

/* The subject sequence and what each should reach. -ENOMEM. */
static int bench_route_subjects_make(struct bench_route_case *c)
{
        c->subjects = malloc((size_t)BENCH_ROUTE_SUBJECTS * BENCH_ROUTE_STRIDE);
        c->subject_lens = malloc(BENCH_ROUTE_SUBJECTS);
        c->expected = malloc(BENCH_ROUTE_SUBJECTS);
        if (c->subjects == NULL || c->subject_lens == NULL || c->expected == NULL)
                return -ENOMEM;
        uint64_t state = BENCH_ROUTE_SEED;
        c->expected_total = 0;
        for (uint32_t i = 0; i < BENCH_ROUTE_SUBJECTS; i++) {
                uint64_t r = bench_route_rand(&state);
                uint32_t pct = (uint32_t)r % 100;
                enum bench_route_kind kind = pct < 90 ? BENCH_ROUTE_INBOX
                                             : pct < 95 ? BENCH_ROUTE_OUTBOX : BENCH_ROUTE_SVC;
                uint32_t id = (uint32_t)(((r >> 32) * c->id_range) >> 32);
                char *s = c->subjects + (size_t)i * BENCH_ROUTE_STRIDE;
                int len = snprintf(s, BENCH_ROUTE_STRIDE, bench_route_formats[kind], id);
                uint64_t values[BENCH_ROUTE_SEEN_MAX];
                c->subject_lens[i] = (uint8_t)len;
                c->expected[i] = (uint8_t)bench_route_expect(c, kind, id, s, (size_t)len, values);
                c->expected_total += c->expected[i];
        }
        return 0;
}

static void bench_route_case_free(struct bench_route_case *c)
{
        shm_arena_close(&c->arena);
        free(c->subjects);
        free(c->subject_lens);
        free(c->expected);
        c->subjects = NULL;
        c->subject_lens = c->expected = NULL;
}

/* A trie sized exactly for the patterns, in an arena like a shard's. */
static int bench_route_trie_open(struct bench_route_case *c)
{
        /* user.<i>.inbox adds two nodes to the shared "user" node. */
        struct dp_trie_config tc = {
                .max_nodes = 2 * c->exact_n + 1 + BENCH_ROUTE_WILD_N * BENCH_ROUTE_WILD_NODES,
                .max_subs = c->subs_n,
                .token_bytes = 0, /* every token fits in a node */
        };
        c->trie_bytes = dp_trie_bytes(&tc);
        if (c->trie_bytes == 0)
                return -EINVAL;
        struct shm_arena_config ac = { .bytes = c->trie_bytes + BENCH_ROUTE_ARENA_SLACK_BYTES,
                                       .hugepages = SHM_HUGEPAGES_AUTO,
                                       .numa_node = -1,
                                       .name = "atomq-bench-route" };
        int rc = shm_arena_create(&c->arena, &ac);
        if (rc != 0)
                return rc;
        uint64_t off = 0;
        rc = shm_arena_region_add(&c->arena, SHM_REGION_USER, "bench.route.trie", c->trie_bytes,
                                  &off);
        void *mem = rc == 0 ? shm_arena_ptr(&c->arena, off, c->trie_bytes) : NULL;
        if (rc == 0 && mem == NULL)
                rc = -ENOSPC;
        if (rc == 0)
                rc = dp_trie_init(&c->trie, mem, c->trie_bytes, &tc);
        return rc;
}

/* Inserts the N subscriptions, timing the exact ones (their patterns are
 * formatted first). Failed inserts are errors. -ENOMEM. */
static int bench_route_fill(struct bench_route_case *c)
{
        char *patterns = malloc((size_t)c->exact_n * BENCH_ROUTE_PATTERN_STRIDE);
        uint8_t *lens = malloc(c->exact_n);
        if (patterns == NULL || lens == NULL) {
                free(patterns);
                free(lens);
                return -ENOMEM;
        }
        for (uint32_t i = 0; i < c->exact_n; i++)
                lens[i] = (uint8_t)snprintf(patterns + (size_t)i * BENCH_ROUTE_PATTERN_STRIDE,
                                            BENCH_ROUTE_PATTERN_STRIDE, "user.%u.inbox", i);
        uint64_t failed = 0;
        uint32_t sub_id;
        const char *p = patterns;
        uint64_t t0_ns = shm_clock_ns();
        for (uint32_t i = 0; i < c->exact_n; i++, p += BENCH_ROUTE_PATTERN_STRIDE)
                failed += dp_trie_insert(&c->trie, p, lens[i], 0, i, &sub_id) != 0;
        uint64_t elapsed_ns = shm_clock_ns() - t0_ns;
        c->inserts_per_s = elapsed_ns ? (double)c->exact_n * 1e9 / (double)elapsed_ns : 0;
        for (unsigned w = 0; w < BENCH_ROUTE_WILD_N; w++)
                failed += dp_trie_insert(&c->trie, bench_route_wild[w], strlen(bench_route_wild[w]),
                                         0, BENCH_ROUTE_WILD_VALUE + w, &sub_id) != 0;
        c->errors += failed + (dp_trie_count(&c->trie) != c->subs_n);
        free(patterns);
        free(lens);
        return 0;
}

/* The values one match delivered. */
struct bench_route_seen {
        unsigned n;
        uint64_t values[BENCH_ROUTE_SEEN_MAX];
};

static void bench_route_collect(void *arg, uint32_t sub_id, uint32_t group, uint64_t value)
{
        struct bench_route_seen *seen = arg;
        (void)sub_id;
        (void)group;
        if (seen->n < BENCH_ROUTE_SEEN_MAX)
                seen->values[seen->n] = value;
        seen->n++;
}

static int bench_route_cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return (x > y) - (x < y);
}

/* Matches a sample of the sequence one subject at a time and compares the
 * subscriptions reached with the reference's. Returns the errors. */
static uint64_t bench_route_check_sample(const struct bench_route_case *c)
{
        const uint32_t step = BENCH_ROUTE_SUBJECTS / BENCH_ROUTE_SAMPLE;
        uint64_t errors = 0;
        for (uint32_t i = 0; i < BENCH_ROUTE_SUBJECTS; i += step) {
                const char *s = c->subjects + (size_t)i * BENCH_ROUTE_STRIDE;
                size_t len = c->subject_lens[i];
                bool outbox = len > 7 && memcmp(s + len - 7, ".outbox", 7) == 0;
                enum bench_route_kind kind = s[0] == 's' ? BENCH_ROUTE_SVC
                                             : outbox ? BENCH_ROUTE_OUTBOX : BENCH_ROUTE_INBOX;
                uint32_t id = (uint32_t)strtoul(strchr(s, '.') + 1, NULL, 10);
                uint64_t want[BENCH_ROUTE_SEEN_MAX];
                unsigned want_n = bench_route_expect(c, kind, id, s, len, want);
                struct bench_route_seen seen = { 0 };
                int rc = dp_trie_match(&c->trie, s, len, bench_route_collect, &seen);
                if (rc < 0 || (unsigned)rc != seen.n || seen.n != want_n) {
                        errors++;
                        continue;
                }
                qsort(want, want_n, sizeof(want[0]), bench_route_cmp_u64);
                qsort(seen.values, seen.n, sizeof(seen.values[0]), bench_route_cmp_u64);
                errors += memcmp(want, seen.values, want_n * sizeof(want[0])) != 0;
        }
        return errors;
}

/* What the timed loop's callback adds up. */
struct bench_route_tally {
        uint64_t deliveries;
        uint64_t value_sum; /* read as a delivery reads its target */
};

static void bench_route_count(void *arg, uint32_t sub_id, uint32_t group, uint64_t value)
{
        struct bench_route_tally *t = arg;
        (void)sub_id;
        (void)group;
        t->deliveries++;
        t->value_sum += value;
}

/* Deliveries the first `matches` subjects of the cycled sequence expect. */
static uint64_t bench_route_expected(const struct bench_route_case *c, uint64_t matches)
{
        uint64_t total = (matches / BENCH_ROUTE_SUBJECTS) * c->expected_total;
        for (uint32_t i = 0; i < matches % BENCH_ROUTE_SUBJECTS; i++)
                total += c->expected[i];
        return total;
}

/* One run: --warmup, then --duration counted. Adds its errors to c. */
static void bench_route_timed(struct bench_route_case *c, struct bench_route_run *run)
{
        const uint64_t warmup_ns = (uint64_t)(c->o->warmup_s * 1e9);
        const uint64_t duration_ns = (uint64_t)(c->o->duration_s * 1e9);
        struct bench_route_tally tally = { 0 };
        uint64_t pos = 0, returned = 0, refused = 0;
        uint64_t open_pos = 0, open_deliveries = 0, open_ns = 0, now_ns;
        const uint64_t start_ns = shm_clock_ns();

        for (;;) {
                for (unsigned k = 0; k < BENCH_ROUTE_CHECK_EVERY; k++, pos++) {
                        uint32_t i = (uint32_t)pos & (BENCH_ROUTE_SUBJECTS - 1);
                        const char *s = c->subjects + (size_t)i * BENCH_ROUTE_STRIDE;
                        int rc = dp_trie_match(&c->trie, s, c->subject_lens[i], bench_route_count,
                                               &tally);
                        if (rc < 0)
                                refused++;
                        else
                                returned += (unsigned)rc;
                }
                now_ns = shm_clock_ns();
                if (open_ns == 0 && now_ns - start_ns >= warmup_ns) {
                        open_ns = now_ns;
                        open_pos = pos;
                        open_deliveries = tally.deliveries;
                } else if (open_ns != 0 && now_ns - open_ns >= duration_ns) {
                        break;
                }
        }
        double window_s = (double)(now_ns - open_ns) / 1e9;
        run->matches_per_s = (double)(pos - open_pos) / window_s;
        run->deliveries_per_s = (double)(tally.deliveries - open_deliveries) / window_s;
        uint64_t want = bench_route_expected(c, pos);
        c->errors += refused + (returned != tally.deliveries);
        c->errors += want > tally.deliveries ? want - tally.deliveries : tally.deliveries - want;
}

static void *bench_route_thread(void *arg)
{
        struct bench_route_case *c = arg;
        struct bench_thread_share share;

        bench_thread_share_start(&share);
        c->rc = bench_route_fill(c);
        if (c->rc != 0)
                return NULL; /* no memory for the patterns: nothing measured */
        c->errors += bench_route_check_sample(c);
        for (unsigned r = 0; r < c->o->runs; r++)
                bench_route_timed(c, &c->runs[r]);
        c->cpu_share = bench_thread_share_end(&share);
        return NULL;
}

static void bench_route_notes(const struct bench_route_case *c)
{
        fprintf(stderr, "route: %u subs: trie %.1f MB in the arena (%s pages), %.1f B a "
                        "subscription; %.2f M inserts/s; %.2f deliveries a message\n",
                c->subs_n, (double)c->trie_bytes / 1e6, c->arena.hugepages ? "huge" : "4 KiB",
                (double)c->trie_bytes / c->subs_n, c->inserts_per_s / 1e6,
                (double)c->expected_total / BENCH_ROUTE_SUBJECTS);
        for (unsigned r = 0; r < c->o->runs; r++)
                fprintf(stderr, "route: %u subs: run %u: %.3f M msgs/s, %.3f M deliveries/s\n",
                        c->subs_n, r + 1, c->runs[r].matches_per_s / 1e6,
                        c->runs[r].deliveries_per_s / 1e6);
}

static int bench_route_results(const struct bench_route_case *c, struct bench_report *rep)
{
        char case_name[BENCH_NAME_BYTES];
        bench_count_name(case_name, sizeof(case_name), c->subs_n);
        struct bench_result *r = bench_report_add(rep, "atomq", "route", case_name);
        if (r == NULL) {
                fprintf(stderr, "atomq-bench: route: more than %u results\n", BENCH_RESULTS_MAX);
                return -ENOSPC;
        }
        double matches[BENCH_RUNS_MAX], deliveries[BENCH_RUNS_MAX];
        for (unsigned i = 0; i < c->o->runs; i++) {
                matches[i] = c->runs[i].matches_per_s;
                deliveries[i] = c->runs[i].deliveries_per_s;
        }
        r->msgs_per_s = bench_median_f64(matches, c->o->runs);
        r->errors = c->errors;
        r->cpu_share = c->cpu_share;
        bench_result_u64(r, "subs", c->subs_n);
        bench_result_u64(r, "wildcard_subs", BENCH_ROUTE_WILD_N);
        bench_result_rate(r, "matches_per_s", r->msgs_per_s);
        bench_result_rate(r, "deliveries_per_s", bench_median_f64(deliveries, c->o->runs));
        bench_result_f64(r, "deliveries_per_msg",
                         (double)c->expected_total / BENCH_ROUTE_SUBJECTS);
        bench_result_rate(r, "inserts_per_s", c->inserts_per_s);
        bench_result_f64(r, "trie_bytes_per_sub", (double)c->trie_bytes / c->subs_n);
        bench_result_bool(r, "hugepages", c->arena.hugepages);
        return 0;
}

/* Subjects, trie, the runs on a pinned thread, results. */
static int bench_route_case_run(struct bench_route_case *c, struct bench_progress *pg, int cpu,
                                struct bench_report *rep)
{
        c->exact_n = c->subs_n - BENCH_ROUTE_WILD_N;
        c->id_range = c->exact_n + c->exact_n / 64;
        int rc = bench_route_subjects_make(c);
        if (rc == 0)
                rc = bench_route_trie_open(c);
        if (rc != 0) {
                fprintf(stderr, "atomq-bench: route: a trie of %u subscriptions: %s\n",
                        c->subs_n, strerror(-rc));
                bench_route_case_free(c);
                return rc;
        }
        bench_progress_label(pg, "route: %u subscriptions", c->subs_n);
        pthread_t t;
        rc = bench_thread_start(&t, cpu, bench_route_thread, c);
        if (rc == 0)
                rc = bench_progress_join(pg, t);
        bench_progress_end(pg); /* a clean line for the notes */
        if (rc != 0) {
                fprintf(stderr, "atomq-bench: route: thread: %s\n", strerror(-rc));
        } else if (c->rc != 0) {
                rc = c->rc;
                fprintf(stderr, "atomq-bench: route: %u patterns: %s\n", c->subs_n,
                        strerror(-rc));
        }
        if (rc == 0 && !c->o->quiet)
                bench_route_notes(c);
        if (rc == 0)
                rc = bench_route_results(c, rep);
        bench_route_case_free(c);
        return rc;
}

int bench_route_run(const struct bench_opts *o, struct bench_progress *pg,
                    struct bench_report *rep)
{
        const unsigned *subs = o->subs_n ? o->subs : bench_route_subs_default;
        unsigned subs_n = o->subs_n ? o->subs_n
                                    : sizeof(bench_route_subs_default) / sizeof(unsigned);
        for (unsigned i = 0; i < subs_n; i++) {
                if (subs[i] <= BENCH_ROUTE_WILD_N) {
                        fprintf(stderr, "atomq-bench: --subs: at least %u (the %u wildcard "
                                        "subscriptions and one exact), got %u\n",
                                (unsigned)BENCH_ROUTE_WILD_N + 1, (unsigned)BENCH_ROUTE_WILD_N,
                                subs[i]);
                        return -EINVAL;
                }
        }
        int cpu;
        int rc = bench_opts_cpu(o, "route", &cpu);
        for (unsigned i = 0; i < subs_n && rc == 0; i++) {
                struct bench_route_case *c = calloc(1, sizeof(*c));
                if (c == NULL)
                        return -ENOMEM;
                c->o = o;
                c->subs_n = subs[i];
                c->arena.fd = -1;
                bench_progress_start(pg, subs[i] * BENCH_ROUTE_INSERT_GUESS_S +
                                                 o->runs * (o->warmup_s + o->duration_s));
                rc = bench_route_case_run(c, pg, cpu, rep);
                free(c);
        }
        return rc;
}
