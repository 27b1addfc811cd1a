/* test_dp_trie.c - the subject trie: a table of patterns against subjects
 * ('*', '>', overlaps, shared patterns), refused patterns and subjects,
 * exhaustion of every pool, stale ids, insert/remove churn without leaks,
 * attach after a restart, and a million subscriptions under one node. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/dp_trie.h"

#define HITS_MAX 64

/* What one dp_trie_match reported. */
struct hits {
        int n;
        uint32_t id[HITS_MAX];
        uint32_t group[HITS_MAX];
        uint64_t value[HITS_MAX];
};

static void hits_add(void *arg, uint32_t sub_id, uint32_t group, uint64_t value)
{
        struct hits *h = arg;
        cr_assert_lt(h->n, HITS_MAX);
        h->id[h->n] = sub_id;
        h->group[h->n] = group;
        h->value[h->n] = value;
        h->n++;
}

static bool hits_has(const struct hits *h, uint32_t id)
{
        for (int i = 0; i < h->n; i++)
                if (h->id[i] == id)
                        return true;
        return false;
}

static void count_only(void *arg, uint32_t sub_id, uint32_t group, uint64_t value)
{
        (void)sub_id;
        (void)group;
        (void)value;
        (*(uint64_t *)arg)++;
}

struct fixture {
        struct dp_trie t;
        void *mem;
};

static void trie_new(struct fixture *f, uint32_t nodes, uint32_t subs, uint64_t token_bytes)
{
        struct dp_trie_config cfg = { .max_nodes = nodes, .max_subs = subs,
                                      .token_bytes = token_bytes, .hash_seed = 0 };
        size_t len = dp_trie_bytes(&cfg);
        cr_assert_gt(len, 0);
        f->mem = aligned_alloc(64, len);
        cr_assert_not_null(f->mem);
        cr_assert_eq(dp_trie_init(&f->t, f->mem, len, &cfg), 0);
}

static int ins(struct fixture *f, const char *pattern, uint64_t value, uint32_t *id)
{
        return dp_trie_insert(&f->t, pattern, strlen(pattern), 0, value, id);
}

static int match(struct fixture *f, const char *subject, struct hits *h)
{
        memset(h, 0, sizeof(*h));
        int n = dp_trie_match(&f->t, subject, strlen(subject), hits_add, h);
        if (n >= 0)
                cr_assert_eq(n, h->n, "the count is the number of calls");
        return n;
}

/* One row: patterns (one subscription each), a subject, and which of the
 * patterns must match, as a string of indexes ("013"). */
struct match_case {
        const char *patterns[8];
        const char *subject;
        const char *expect;
};

static const struct match_case match_cases[] = {
        { { "a.b.c" }, "a.b.c", "0" },
        { { "a.b.c" }, "a.b.d", "" },
        { { "a.b.c" }, "a.b", "" },
        { { "a.b.c" }, "a.b.c.d", "" },
        { { "a.*.c" }, "a.b.c", "0" },
        { { "a.*.c" }, "a.c", "" },
        { { "a.*.c" }, "a.b.x.c", "" },
        { { "a.*" }, "a.b", "0" },
        { { "a.*" }, "a", "" },
        { { "a.*" }, "a.b.c", "" },
        { { "*" }, "a", "0" },
        { { "*" }, "a.b", "" },
        { { "a.>" }, "a", "" },
        { { "a.>" }, "a.b", "0" },
        { { "a.>" }, "a.b.c.d", "0" },
        { { "a.>" }, "b.a", "" },
        { { ">" }, "a", "0" },
        { { ">" }, "a.b.c", "0" },
        { { "*.*.>" }, "a.b", "" },
        { { "*.*.>" }, "a.b.c", "0" },
        { { "a.*.c.>" }, "a.b.c.d.e", "0" },
        { { "a.*.c.>" }, "a.b.c", "" },
        /* Overlaps: every subscription whose pattern matches, each once. */
        { { "a.b", "a.*", "a.>", "*.b", ">", "*.*", "a.b.>", "b.*" }, "a.b", "012345" },
        { { "a.*.c", "a.b.c", "a.>", "*.b.*" }, "a.b.c", "0123" },
        { { "x.y", "x.y", "x.*", "x.*" }, "x.y", "0123" },
        /* The 8-byte inline bound and tokens in chunks. */
        { { "12345678", "123456789", "1234567" }, "12345678", "0" },
        { { "12345678", "123456789", "1234567" }, "123456789", "1" },
        { { "k.a_token_longer_than_one_chunk_of_28_bytes.z", "k.*.z" },
          "k.a_token_longer_than_one_chunk_of_28_bytes.z", "01" },
        { { "k.a_token_longer_than_one_chunk_of_28_bytes.z" },
          "k.a_token_longer_than_one_chunk_of_28_bytes_.z", "" },
        { { "k.a_token_longer_than_one_chunk_of_28_bytes.z" },
          "k.a_token_longer_than_one_chunk_of_28_byteZ.z", "" },
        { { "caf\xc3\xa9.*" }, "caf\xc3\xa9.au.lait", "" },
        { { "caf\xc3\xa9.>" }, "caf\xc3\xa9.au.lait", "0" },
};

Test(dp_trie, table_of_patterns_and_subjects)
{
        for (size_t c = 0; c < sizeof(match_cases) / sizeof(match_cases[0]); c++) {
                const struct match_case *mc = &match_cases[c];
                struct fixture f;
                uint32_t id[8];
                struct hits h;
                int np = 0;
                trie_new(&f, 64, 16, 1024);
                for (; np < 8 && mc->patterns[np] != NULL; np++)
                        cr_assert_eq(ins(&f, mc->patterns[np], (uint64_t)np, &id[np]), 0,
                                     "%s", mc->patterns[np]);
                cr_assert_eq(match(&f, mc->subject, &h), (int)strlen(mc->expect),
                             "case %zu: %s", c, mc->subject);
                for (int p = 0; p < np; p++) {
                        bool want = strchr(mc->expect, '0' + p) != NULL;
                        cr_expect_eq(hits_has(&h, id[p]), want, "case %zu: pattern %s on %s",
                                     c, mc->patterns[p], mc->subject);
                }
                cr_expect_eq(dp_trie_verify(&f.t), 0);
                free(f.mem);
        }
}

/* The match set of subject as a bit mask of the patterns' indexes. */
static uint32_t match_mask(struct fixture *f, const uint32_t *id, int np, const char *subject)
{
        struct hits h;
        uint32_t mask = 0;
        cr_assert_geq(match(f, subject, &h), 0, "%s", subject);
        for (int p = 0; p < np; p++)
                if (hits_has(&h, id[p]))
                        mask |= 1u << p;
        return mask;
}

/* tail_free is a promise a cache relies on: when it says any other last
 * token matches the same, it does, for every last token the patterns name
 * and one they do not; and it says so for the inbox shape it is for. */
Test(dp_trie, tail_free_holds_for_every_other_last_token)
{
        for (size_t c = 0; c < sizeof(match_cases) / sizeof(match_cases[0]); c++) {
                const struct match_case *mc = &match_cases[c];
                const char *dot = strrchr(mc->subject, '.');
                if (dot == NULL)
                        continue;
                struct fixture f;
                uint32_t id[8];
                int np = 0;
                trie_new(&f, 64, 16, 1024);
                for (; np < 8 && mc->patterns[np] != NULL; np++)
                        cr_assert_eq(ins(&f, mc->patterns[np], (uint64_t)np, &id[np]), 0);
                struct hits h = { 0 };
                bool tail_free = false;
                cr_assert_geq(dp_trie_match_tail(&f.t, mc->subject, strlen(mc->subject), hits_add,
                                                 &h, &tail_free), 0);
                uint32_t want = match_mask(&f, id, np, mc->subject);
                /* Every token any pattern names, and one none does. */
                for (int p = 0; p <= np && tail_free; p++) {
                        char alt[160], toks[128];
                        snprintf(toks, sizeof(toks), "%s", p < np ? mc->patterns[p] : "zz");
                        for (char *save = NULL, *t = strtok_r(toks, ".", &save); t != NULL;
                             t = strtok_r(NULL, ".", &save)) {
                                if (strcmp(t, "*") == 0 || strcmp(t, ">") == 0)
                                        continue;
                                snprintf(alt, sizeof(alt), "%.*s.%s",
                                         (int)(dot - mc->subject), mc->subject, t);
                                cr_expect_eq(match_mask(&f, id, np, alt), want,
                                             "case %zu: %s matches unlike %s", c, alt,
                                             mc->subject);
                        }
                }
                free(f.mem);
        }
        struct fixture f;
        uint32_t id;
        bool tail_free = false;
        struct hits h = { 0 };
        trie_new(&f, 64, 16, 1024);
        cr_assert_eq(ins(&f, "_INBOX.abc.*", 0, &id), 0);
        cr_assert_eq(ins(&f, "_INBOX.>", 1, &id), 0);
        cr_assert_eq(dp_trie_match_tail(&f.t, "_INBOX.abc.17", 13, hits_add, &h, &tail_free), 2);
        cr_expect(tail_free, "an inbox under a wildcard: any last token");
        cr_assert_eq(ins(&f, "_INBOX.abc.5", 2, &id), 0);
        h.n = 0;
        cr_assert_eq(dp_trie_match_tail(&f.t, "_INBOX.abc.17", 13, hits_add, &h, &tail_free), 2);
        cr_expect(!tail_free, "a literal could take the last token now");
        free(f.mem);
}

Test(dp_trie, star_matches_exactly_one_token)
{
        struct fixture f;
        struct hits h;
        uint32_t id;
        trie_new(&f, 16, 4, 0);
        cr_assert_eq(ins(&f, "a.*", 1, &id), 0);
        cr_expect_eq(match(&f, "a.b", &h), 1);
        cr_expect_eq(match(&f, "a", &h), 0, "'*' does not match nothing");
        cr_expect_eq(match(&f, "a.b.c", &h), 0, "'*' does not match two tokens");
        cr_expect_eq(match(&f, "a.", &h), -EINVAL, "nor an empty token, refused as such");
        free(f.mem);
}

Test(dp_trie, gt_needs_at_least_one_token)
{
        struct fixture f;
        struct hits h;
        uint32_t id;
        trie_new(&f, 16, 4, 0);
        cr_assert_eq(ins(&f, "a.>", 1, &id), 0);
        cr_expect_eq(match(&f, "a", &h), 0);
        cr_expect_eq(match(&f, "a.b", &h), 1);
        cr_expect_eq(match(&f, "a.b.c.d.e.f", &h), 1);
        free(f.mem);
}

Test(dp_trie, hands_back_group_and_value)
{
        struct fixture f;
        struct hits h;
        uint32_t id1, id2;
        trie_new(&f, 16, 4, 0);
        cr_assert_eq(dp_trie_insert(&f.t, "q.*", 3, 7, 0xdeadbeefcafe0001ull, &id1), 0);
        cr_assert_eq(dp_trie_insert(&f.t, "q.>", 3, 0, 42, &id2), 0);
        cr_assert_eq(match(&f, "q.x", &h), 2);
        for (int i = 0; i < 2; i++) {
                if (h.id[i] == id1) {
                        cr_expect_eq(h.group[i], 7);
                        cr_expect_eq(h.value[i], 0xdeadbeefcafe0001ull);
                } else {
                        cr_expect_eq(h.id[i], id2);
                        cr_expect_eq(h.group[i], 0);
                        cr_expect_eq(h.value[i], 42);
                }
        }
        cr_expect_eq(dp_trie_count(&f.t), 2);
        free(f.mem);
}

/* Refused by pattern and subject alike, with the error expected. */
static const struct {
        const char *s;
        size_t len;     /* 0: strlen */
        int err;
} bad_strings[] = {
        { "", 0, -EINVAL }, { ".", 0, -EINVAL }, { "a..b", 0, -EINVAL }, { "a.", 0, -EINVAL },
        { ".a", 0, -EINVAL }, { "a b", 0, -EINVAL }, { "a.>.b", 0, -EINVAL },
        { "a*", 0, -EINVAL }, { "*a", 0, -EINVAL }, { ">a", 0, -EINVAL },
        { "a\tb", 0, -EINVAL }, { "a\nb", 0, -EINVAL }, { "a\0b", 3, -EINVAL },
};

static void bad_strings_long(char *buf256, char *buf33)
{
        memset(buf256, 'x', 256);
        buf256[256] = '\0';
        size_t len = 0;
        for (int i = 0; i < 33; i++) {
                if (i > 0)
                        buf33[len++] = '.';
                buf33[len++] = 'a' + (char)(i % 26);
        }
        buf33[len] = '\0';
}

Test(dp_trie, refuses_bad_patterns_and_changes_nothing)
{
        struct fixture f;
        struct dp_trie_usage u;
        char long256[257], tok33[80];
        uint32_t id = 12345;
        trie_new(&f, 64, 8, 1024);
        for (size_t i = 0; i < sizeof(bad_strings) / sizeof(bad_strings[0]); i++) {
                size_t len = bad_strings[i].len ? bad_strings[i].len : strlen(bad_strings[i].s);
                cr_expect_eq(dp_trie_insert(&f.t, bad_strings[i].s, len, 0, 0, &id),
                             bad_strings[i].err, "\"%s\"", bad_strings[i].s);
        }
        bad_strings_long(long256, tok33);
        cr_expect_eq(ins(&f, long256, 0, &id), -ENAMETOOLONG);
        cr_expect_eq(ins(&f, tok33, 0, &id), -ENAMETOOLONG);
        cr_expect_eq(id, 12345, "sub_id untouched on error");
        dp_trie_usage(&f.t, &u);
        cr_expect_eq(u.nodes + u.subs + u.chunks, 0);
        cr_expect_eq(dp_trie_verify(&f.t), 0);
        free(f.mem);
}

Test(dp_trie, refuses_bad_subjects_without_calling_back)
{
        struct fixture f;
        struct hits h;
        char long256[257], tok33[80];
        uint32_t id;
        trie_new(&f, 64, 8, 1024);
        cr_assert_eq(ins(&f, ">", 0, &id), 0);
        for (size_t i = 0; i < sizeof(bad_strings) / sizeof(bad_strings[0]); i++) {
                size_t len = bad_strings[i].len ? bad_strings[i].len : strlen(bad_strings[i].s);
                memset(&h, 0, sizeof(h));
                cr_expect_eq(dp_trie_match(&f.t, bad_strings[i].s, len, hits_add, &h),
                             bad_strings[i].err, "\"%s\"", bad_strings[i].s);
                cr_expect_eq(h.n, 0);
        }
        bad_strings_long(long256, tok33);
        cr_expect_eq(match(&f, long256, &h), -ENAMETOOLONG);
        cr_expect_eq(match(&f, tok33, &h), -ENAMETOOLONG);
        /* Published subjects carry no wildcards. */
        cr_expect_eq(match(&f, "a.*", &h), -EINVAL);
        cr_expect_eq(match(&f, ">", &h), -EINVAL);
        cr_expect_eq(h.n, 0);
        free(f.mem);
}

Test(dp_trie, deepest_pattern_and_subject_match)
{
        struct fixture f;
        struct hits h;
        char lit[80], star[80];
        uint32_t a, b;
        size_t len = 0;
        for (int i = 0; i < 32; i++) {
                lit[len] = (char)('a' + i % 26);
                star[len] = '*';
                len++;
                lit[len] = star[len] = '.';
                len++;
        }
        lit[len - 1] = star[len - 1] = '\0';
        trie_new(&f, 128, 4, 0);
        cr_assert_eq(ins(&f, lit, 1, &a), 0);
        cr_assert_eq(ins(&f, star, 2, &b), 0);
        cr_expect_eq(match(&f, lit, &h), 2);
        cr_expect_eq(dp_trie_verify(&f.t), 0);
        free(f.mem);
}

Test(dp_trie, refuses_bad_geometry)
{
        struct dp_trie t;
        struct dp_trie_config cfg = { .max_nodes = 8, .max_subs = 8, .token_bytes = 0 };
        size_t len = dp_trie_bytes(&cfg);
        void *mem = aligned_alloc(64, len + 64);
        cr_assert_gt(len, 0);
        cr_expect_eq(dp_trie_init(&t, (uint8_t *)mem + 8, len, &cfg), -EINVAL);
        cr_expect_eq(dp_trie_init(&t, mem, len - 1, &cfg), -ENOSPC);
        cfg.max_nodes = 0;
        cr_expect_eq(dp_trie_bytes(&cfg), 0);
        cr_expect_eq(dp_trie_init(&t, mem, len, &cfg), -EINVAL);
        cfg.max_nodes = 8;
        cfg.max_subs = DP_TRIE_SUBS_MAX + 1;
        cr_expect_eq(dp_trie_bytes(&cfg), 0);
        cfg.max_subs = 8;
        cfg.token_bytes = UINT64_MAX;
        cr_expect_eq(dp_trie_bytes(&cfg), 0);
        free(mem);
}

/* After a refused insert: nothing changed and what was there still works. */
static void expect_unchanged(struct fixture *f, const struct dp_trie_usage *before,
                             const char *subject, uint32_t id)
{
        struct dp_trie_usage u;
        struct hits h;
        dp_trie_usage(&f->t, &u);
        cr_expect_eq(u.nodes, before->nodes);
        cr_expect_eq(u.subs, before->subs);
        cr_expect_eq(u.chunks, before->chunks);
        cr_expect_eq(dp_trie_verify(&f->t), 0);
        cr_expect_eq(match(f, subject, &h), 1);
        cr_expect(hits_has(&h, id));
}

Test(dp_trie, node_exhaustion_is_enospc_and_consistent)
{
        struct fixture f;
        struct dp_trie_usage u;
        uint32_t a, b;
        trie_new(&f, 4, 16, 0);
        cr_assert_eq(ins(&f, "a.b.c", 1, &a), 0);
        dp_trie_usage(&f.t, &u);
        cr_assert_eq(u.nodes, 3);
        cr_expect_eq(ins(&f, "a.x.y", 2, &b), -ENOSPC, "needs two nodes, one is free");
        expect_unchanged(&f, &u, "a.b.c", a);
        cr_expect_eq(ins(&f, "a.x", 2, &b), 0, "one node fits");
        cr_expect_eq(ins(&f, "a.b", 3, &b), 0, "an existing prefix needs no node");
        cr_expect_eq(ins(&f, "a.*", 3, &b), -ENOSPC);
        cr_expect_eq(dp_trie_remove(&f.t, a), 0);
        cr_expect_eq(ins(&f, "a.*", 3, &b), 0, "the freed node is reused");
        cr_expect_eq(dp_trie_verify(&f.t), 0);
        free(f.mem);
}

Test(dp_trie, sub_exhaustion_is_enospc_and_consistent)
{
        struct fixture f;
        struct dp_trie_usage u;
        uint32_t a, b, c;
        trie_new(&f, 64, 2, 0);
        cr_assert_eq(ins(&f, "s.one", 1, &a), 0);
        cr_assert_eq(ins(&f, "s.two", 2, &b), 0);
        dp_trie_usage(&f.t, &u);
        cr_expect_eq(ins(&f, "s.three", 3, &c), -ENOSPC);
        cr_expect_eq(ins(&f, "s.one", 3, &c), -ENOSPC, "even on an existing pattern");
        expect_unchanged(&f, &u, "s.one", a);
        cr_expect_eq(dp_trie_remove(&f.t, b), 0);
        cr_expect_eq(ins(&f, "s.three", 3, &c), 0);
        free(f.mem);
}

Test(dp_trie, token_bytes_exhaustion_is_enospc_and_consistent)
{
        struct fixture f;
        struct dp_trie_usage u;
        uint32_t a, b;
        /* One chunk: one token of 9..28 bytes. */
        trie_new(&f, 64, 16, DP_TRIE_CHUNK_DATA);
        cr_assert_eq(ins(&f, "t.twenty_byte_token_x", 1, &a), 0);
        dp_trie_usage(&f.t, &u);
        cr_assert_eq(u.chunks, 1);
        cr_expect_eq(ins(&f, "t.another_long_token", 2, &b), -ENOSPC);
        cr_expect_eq(ins(&f, "u.v.w.another_long_token", 2, &b), -ENOSPC,
                     "no node of the path is left behind");
        expect_unchanged(&f, &u, "t.twenty_byte_token_x", a);
        cr_expect_eq(ins(&f, "t.short", 2, &b), 0, "inline tokens need no chunk");
        cr_expect_eq(ins(&f, "t.twenty_byte_token_x.y", 3, &b), 0, "an existing long token");
        cr_expect_eq(dp_trie_remove(&f.t, a), 0);
        cr_expect_eq(ins(&f, "t.another_long_token", 2, &b), -ENOSPC, "still used by a.y");
        free(f.mem);
}

Test(dp_trie, remove_of_a_stale_id_is_enoent)
{
        struct fixture f;
        struct hits h;
        uint32_t a, b;
        trie_new(&f, 16, 1, 0);
        cr_expect_eq(dp_trie_remove(&f.t, 0), -ENOENT, "id 0 is never issued");
        cr_assert_eq(ins(&f, "r.s", 1, &a), 0);
        cr_expect_neq(a, 0);
        cr_expect_eq(dp_trie_remove(&f.t, a ^ 1u << 31), -ENOENT, "wrong generation");
        cr_expect_eq(dp_trie_remove(&f.t, a + 1), -ENOENT, "index beyond the pool");
        cr_assert_eq(dp_trie_remove(&f.t, a), 0);
        cr_expect_eq(dp_trie_remove(&f.t, a), -ENOENT, "removed twice");
        /* One slot: the next insert reuses it under a new generation. */
        cr_assert_eq(ins(&f, "r.s", 2, &b), 0);
        cr_expect_neq(a, b);
        cr_expect_eq(dp_trie_remove(&f.t, a), -ENOENT, "the old id does not reach the new sub");
        cr_expect_eq(match(&f, "r.s", &h), 1);
        cr_expect_eq(h.id[0], b);
        cr_expect_eq(dp_trie_count(&f.t), 1);
        free(f.mem);
}

Test(dp_trie, remove_frees_only_unshared_nodes)
{
        struct fixture f;
        struct dp_trie_usage u;
        struct hits h;
        uint32_t a, b, c;
        trie_new(&f, 16, 4, 256);
        cr_assert_eq(ins(&f, "a.b.c_is_a_long_token", 1, &a), 0);
        cr_assert_eq(ins(&f, "a.b.d", 2, &b), 0);
        cr_assert_eq(ins(&f, "a.b", 3, &c), 0);
        dp_trie_usage(&f.t, &u);
        cr_expect_eq(u.nodes, 4);
        cr_expect_eq(u.chunks, 1);
        cr_assert_eq(dp_trie_remove(&f.t, a), 0);
        dp_trie_usage(&f.t, &u);
        cr_expect_eq(u.nodes, 3);
        cr_expect_eq(u.chunks, 0);
        cr_assert_eq(dp_trie_remove(&f.t, c), 0);
        dp_trie_usage(&f.t, &u);
        cr_expect_eq(u.nodes, 3, "a.b still leads to a.b.d");
        cr_expect_eq(match(&f, "a.b.d", &h), 1);
        cr_expect_eq(match(&f, "a.b", &h), 0);
        cr_assert_eq(dp_trie_remove(&f.t, b), 0);
        dp_trie_usage(&f.t, &u);
        cr_expect_eq(u.nodes + u.subs + u.chunks, 0);
        cr_expect_eq(dp_trie_verify(&f.t), 0);
        free(f.mem);
}

Test(dp_trie, many_subs_on_one_pattern_remove_from_the_middle)
{
        enum { N = 1000 };
        struct fixture f;
        static uint32_t id[N];
        uint64_t calls = 0;
        trie_new(&f, 16, N, 0);
        for (int i = 0; i < N; i++)
                cr_assert_eq(ins(&f, "fan.out", (uint64_t)i, &id[i]), 0);
        cr_expect_eq(dp_trie_match(&f.t, "fan.out", 7, count_only, &calls), N);
        for (int i = 1; i < N; i += 2)
                cr_assert_eq(dp_trie_remove(&f.t, id[i]), 0);
        calls = 0;
        cr_expect_eq(dp_trie_match(&f.t, "fan.out", 7, count_only, &calls), N / 2);
        cr_expect_eq(calls, N / 2);
        cr_expect_eq(dp_trie_verify(&f.t), 0);
        free(f.mem);
}

Test(dp_trie, attach_sees_the_same_trie_and_refuses_a_corrupt_one)
{
        struct fixture f;
        struct dp_trie view;
        struct hits h;
        uint32_t a;
        struct dp_trie_config cfg = { .max_nodes = 32, .max_subs = 8, .token_bytes = 256 };
        size_t len = dp_trie_bytes(&cfg);
        trie_new(&f, 32, 8, 256);
        cr_assert_eq(ins(&f, "re.*.attach_with_a_long_token", 5, &a), 0);
        cr_assert_eq(dp_trie_attach(&view, f.mem, len), 0);
        memset(&h, 0, sizeof(h));
        cr_expect_eq(dp_trie_match(&view, "re.x.attach_with_a_long_token", 29, hits_add, &h), 1);
        cr_expect_eq(h.id[0], a);
        cr_expect_eq(dp_trie_attach(&view, f.mem, len - 64), -ENOSPC);
        /* nodes_used, a word of the header, no longer matches the nodes. */
        ((uint32_t *)f.mem)[12]++;
        cr_expect_eq(dp_trie_attach(&view, f.mem, len), -EPROTO);
        ((uint32_t *)f.mem)[12]--;
        ((uint8_t *)f.mem)[0] ^= 1;
        cr_expect_eq(dp_trie_attach(&view, f.mem, len), -EPROTO, "bad magic");
        free(f.mem);
}

/* A pattern for churn step i of round r: literals, long tokens and
 * wildcards, many sharing prefixes. */
static int churn_pattern(char *buf, size_t cap, uint32_t r, uint32_t i)
{
        switch (i % 4) {
        case 0:
                return snprintf(buf, cap, "churn.%u.%u", r % 7, i);
        case 1:
                return snprintf(buf, cap, "churn.*.%u.>", i % 97);
        case 2:
                return snprintf(buf, cap, "long_prefix_token_%u.x.%u", i % 13, i);
        default:
                return snprintf(buf, cap, "c.%u.a_token_well_past_one_chunk_%u", r, i);
        }
}

Test(dp_trie, churn_of_a_million_subs_does_not_leak)
{
        enum { SUBS = 10000, ROUNDS = 100 };
        struct fixture f;
        struct dp_trie_usage u;
        static uint32_t id[SUBS];
        char buf[128];
        /* Room for the worst round: up to 3 nodes and 2 chunks a sub. */
        trie_new(&f, 3 * SUBS, SUBS, 2 * SUBS * DP_TRIE_CHUNK_DATA);
        for (uint32_t r = 0; r < ROUNDS; r++) {
                for (uint32_t i = 0; i < SUBS; i++) {
                        int n = churn_pattern(buf, sizeof(buf), r, i);
                        cr_assert_eq(dp_trie_insert(&f.t, buf, (size_t)n, i % 3, i, &id[i]), 0,
                                     "round %u sub %u", r, i);
                }
                cr_assert_eq(dp_trie_count(&f.t), SUBS);
                /* Remove in a different order than inserted. */
                for (uint32_t k = 0; k < SUBS; k++) {
                        uint32_t i = (k * 7919u + r) % SUBS;
                        cr_assert_eq(dp_trie_remove(&f.t, id[i]), 0);
                }
                dp_trie_usage(&f.t, &u);
                cr_assert_eq(u.subs + u.nodes + u.chunks, 0, "round %u leaks", r);
                if (r % 25 == 0)
                        cr_assert_eq(dp_trie_verify(&f.t), 0);
        }
        /* Still fills to its limit, and no further. */
        for (uint32_t i = 0; i < SUBS; i++) {
                int n = snprintf(buf, sizeof(buf), "fill.%u", i);
                cr_assert_eq(dp_trie_insert(&f.t, buf, (size_t)n, 0, i, &id[i]), 0);
        }
        cr_expect_eq(ins(&f, "fill.0", 0, &id[0]), -ENOSPC);
        cr_expect_eq(dp_trie_verify(&f.t), 0);
        free(f.mem);
}

Test(dp_trie, million_inboxes_under_one_node_match_exactly)
{
        enum { USERS = 1000000, PROBES = 20000 };
        struct fixture f;
        struct hits h;
        uint32_t *id = malloc(USERS * sizeof(*id));
        uint32_t star, gt, any;
        char buf[64];
        cr_assert_not_null(id);
        trie_new(&f, 2 * USERS + 8, USERS + 8, 0);
        for (uint32_t i = 0; i < USERS; i++) {
                int n = snprintf(buf, sizeof(buf), "user.%u.inbox", i);
                cr_assert_eq(dp_trie_insert(&f.t, buf, (size_t)n, 0, i, &id[i]), 0);
        }
        cr_assert_eq(ins(&f, "user.*.inbox", UINT64_MAX, &star), 0);
        cr_assert_eq(ins(&f, "user.>", UINT64_MAX, &gt), 0);
        cr_assert_eq(ins(&f, "*.*.outbox", UINT64_MAX, &any), 0);
        srand(12345);
        for (int k = 0; k < PROBES; k++) {
                uint32_t i = (uint32_t)rand() % USERS;
                int n = snprintf(buf, sizeof(buf), "user.%u.inbox", i);
                memset(&h, 0, sizeof(h));
                cr_assert_eq(dp_trie_match(&f.t, buf, (size_t)n, hits_add, &h), 3);
                cr_assert(hits_has(&h, id[i]) && hits_has(&h, star) && hits_has(&h, gt));
                for (int j = 0; j < 3; j++)
                        cr_assert(h.id[j] != id[i] || h.value[j] == i);
        }
        cr_expect_eq(match(&f, "user.1000000.inbox", &h), 2, "only the wildcards");
        cr_expect_eq(match(&f, "user.7.outbox", &h), 2);
        cr_expect(hits_has(&h, gt) && hits_has(&h, any));
        /* Remove every eighth inbox; the rest still match, those not. */
        for (uint32_t i = 0; i < USERS; i += 8)
                cr_assert_eq(dp_trie_remove(&f.t, id[i]), 0);
        cr_expect_eq(match(&f, "user.4240.inbox", &h), 2);
        cr_expect_eq(match(&f, "user.4243.inbox", &h), 3);
        cr_expect_eq(dp_trie_count(&f.t), USERS - USERS / 8 + 3);
        cr_expect_eq(dp_trie_verify(&f.t), 0);
        free(id);
        free(f.mem);
}
