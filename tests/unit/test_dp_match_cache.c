/* test_dp_match_cache.c - the shard's cache of subject match results
 * (dataplane/dp_route.c): a cached publish delivers exactly what a walk of
 * the trie would, and every subscription change since makes it walk again. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/dp_shard.h"

static struct dp_shard shard;
static void *shard_mem;
static struct dp_match_cache *cache;
static uint32_t got_sid[256];
static unsigned got_n;

static void on_deliver(void *arg, const struct dp_dispatch *d)
{
        (void)arg;
        if (got_n < 256)
                got_sid[got_n++] = d->sid;
}

static void shard_new(void)
{
        struct dp_shard_config cfg;
        dp_shard_config_default(&cfg, 0, 256);
        cfg.max_subs = 256;
        cfg.max_trie_nodes = 1024;
        size_t len = dp_shard_bytes(&cfg);
        shard_mem = aligned_alloc(64, (len + 63) & ~(size_t)63);
        cache = malloc(dp_match_cache_bytes());
        cr_assert_not_null(shard_mem);
        cr_assert_not_null(cache);
        cr_assert_eq(dp_shard_init(&shard, shard_mem, len, &cfg, on_deliver, NULL), 0);
        dp_shard_set_match_cache(&shard, cache);
}

static void shard_free(void)
{
        dp_shard_set_match_cache(&shard, NULL);
        free(cache);
        free(shard_mem);
}

TestSuite(dp_match_cache, .init = shard_new, .fini = shard_free);

/* Publishes to subject and returns the sum of the sids delivered (each
 * test gives its subscriptions distinct powers of two). */
static uint32_t publish(const char *subject)
{
        struct dp_msg_in m = { .subject = subject, .subject_len = (uint32_t)strlen(subject),
                               .payload = "x", .payload_len = 1, .storage = -1 };
        got_n = 0;
        int rc = dp_shard_publish(&shard, &m);
        cr_assert_geq(rc, 0);
        cr_assert_eq((unsigned)rc, got_n, "the count returned is what was delivered");
        uint32_t sum = 0;
        for (unsigned i = 0; i < got_n; i++)
                sum += got_sid[i];
        return sum;
}

static uint32_t sub(const char *pattern, uint32_t sid, uint32_t group)
{
        uint32_t id;
        cr_assert_eq(dp_shard_subscribe(&shard, pattern, (uint32_t)strlen(pattern), group, 7, sid,
                                        0, &id), 0);
        return id;
}

Test(dp_match_cache, a_repeated_publish_delivers_the_same)
{
        sub("a.b", 1, 0);
        sub("a.*", 2, 0);
        sub("a.>", 4, 0);
        sub("x.y", 8, 0);
        for (int i = 0; i < 5; i++)
                cr_expect_eq(publish("a.b"), 1 + 2 + 4, "publish %d", i);
        cr_expect_eq(publish("a.c"), 2 + 4);
        cr_expect_eq(publish("a.b"), 1 + 2 + 4, "after another subject");
}

Test(dp_match_cache, a_subscription_change_is_seen_at_once)
{
        uint32_t one = sub("s.t", 1, 0);
        cr_expect_eq(publish("s.t"), 1);
        cr_expect_eq(publish("s.t"), 1, "cached");
        sub("s.>", 2, 0);
        cr_expect_eq(publish("s.t"), 1 + 2, "a new wildcard subscription matches");
        cr_assert_eq(dp_shard_unsubscribe(&shard, one), 0);
        cr_expect_eq(publish("s.t"), 2, "the removed one no longer gets it");
        cr_expect_eq(publish("s.t"), 2, "cached again");
        cr_expect_eq(publish("nobody"), 0);
        sub("nobody", 4, 0);
        cr_expect_eq(publish("nobody"), 4, "a cached empty result is refreshed too");
}

Test(dp_match_cache, queue_groups_still_rotate)
{
        sub("q", 1, 5);
        sub("q", 2, 5);
        sub("q", 4, 0);
        uint32_t seen = 0;
        for (int i = 0; i < 8; i++) {
                uint32_t s = publish("q");
                cr_expect(s == 1 + 4 || s == 2 + 4, "one member and the plain subscriber: %u", s);
                seen |= s;
        }
        cr_expect_eq(seen, 1 | 2 | 4, "both members served over the publishes");
}

Test(dp_match_cache, many_matches_and_long_subjects_are_not_cached_but_correct)
{
        for (uint32_t i = 0; i < 12; i++)
                sub("m.*", 1u << i, 0);
        for (int i = 0; i < 3; i++)
                cr_expect_eq(publish("m.k"), (1u << 12) - 1);
        char longs[120];
        memset(longs, 'z', sizeof(longs) - 1);
        longs[sizeof(longs) - 1] = '\0';
        sub(longs, 1u << 20, 0);
        for (int i = 0; i < 3; i++)
                cr_expect_eq(publish(longs), 1u << 20);
}

Test(dp_match_cache, colliding_subjects_do_not_mix)
{
        /* Many subjects in 1024 slots: some share one; each must get only
         * its own subscribers. */
        char s[32];
        for (uint32_t i = 0; i < 64; i++) {
                snprintf(s, sizeof(s), "c.%u", i);
                sub(s, i + 1, 0);
        }
        for (int round = 0; round < 3; round++)
                for (uint32_t i = 0; i < 64; i++) {
                        snprintf(s, sizeof(s), "c.%u", i);
                        cr_expect_eq(publish(s), i + 1, "%s", s);
                }
}

/* Reply subjects: a new last token each time under a wildcard. The cache
 * keeps them under their head, which must serve exactly the subjects a
 * walk would: not one with more tokens, not the head itself as a subject,
 * and not a last token a literal subscription wants. */
Test(dp_match_cache, inbox_heads_serve_any_last_token_and_nothing_else)
{
        char s[48];
        sub("_INBOX.r.*", 1, 0);
        sub("_INBOX.>", 2, 0);
        for (int i = 0; i < 50; i++) {
                snprintf(s, sizeof(s), "_INBOX.r.%d", i);
                cr_expect_eq(publish(s), 1 + 2, "%s", s);
        }
        cr_expect_eq(publish("_INBOX.r.1.x"), 2, "one more token: only the '>'");
        cr_expect_eq(publish("_INBOX.r"), 2, "the head as a subject of its own");
        cr_expect_eq(publish("_INBOX.r.9"), 1 + 2);
        uint32_t seven = sub("_INBOX.r.7", 4, 0);
        cr_expect_eq(publish("_INBOX.r.7"), 1 + 2 + 4, "a literal for one last token");
        cr_expect_eq(publish("_INBOX.r.8"), 1 + 2);
        cr_expect_eq(publish("_INBOX.r.7"), 1 + 2 + 4, "cached as itself now");
        cr_assert_eq(dp_shard_unsubscribe(&shard, seven), 0);
        cr_expect_eq(publish("_INBOX.r.7"), 1 + 2);
        cr_expect_eq(publish("_INBOX.q.7"), 2, "another head");
}
