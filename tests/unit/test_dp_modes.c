/* test_dp_modes.c - the six modes, each a row of atoms, tested by what a
 * user of that mode expects: broadcast, mailbox, latest, request, channel,
 * log. Every test ends by checking that no message buffer leaked. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/dp_shard.h"

#define MS 1000000ull

struct rec {
        struct dp_dispatch d[256];
        char payload[256][32];
        uint64_t reply[256];
        unsigned n;
};

static struct dp_shard shard;
static void *shard_mem;
static struct rec got;

static void on_deliver(void *arg, const struct dp_dispatch *d)
{
        struct rec *r = arg;
        if (r->n >= 256)
                return;
        r->d[r->n] = *d;
        r->payload[r->n][0] = '\0';
        r->reply[r->n] = 0;
        struct dp_msg_view v = { 0 };
        if (d->buf != SHM_BUF_NONE && dp_shard_msg_view(&shard, d->buf, &v) == 0) {
                r->reply[r->n] = v.reply;
                size_t len = v.payload_len < 31 ? v.payload_len : 31;
                memcpy(r->payload[r->n], v.payload, len);
                r->payload[r->n][len] = '\0';
        }
        r->n++;
}

static void shard_new(void)
{
        struct dp_shard_config cfg;
        dp_shard_config_default(&cfg, 0, 1024);
        cfg.max_msgs = 1024;
        cfg.max_subs = 1024;
        cfg.max_trie_nodes = 4096;
        cfg.bufs[0].block_count = 1024;
        cfg.bufs[1].block_count = 64;
        cfg.bufs[2].block_count = 4;
        cfg.bufs[3].block_count = 1;
        cfg.ack_wait_ns = 1000 * MS;
        cfg.max_deliver = 3;
        size_t len = dp_shard_bytes(&cfg);
        cr_assert_gt(len, 0);
        shard_mem = aligned_alloc(64, (len + 63) & ~(size_t)63);
        cr_assert_not_null(shard_mem);
        memset(&got, 0, sizeof(got));
        cr_assert_eq(dp_shard_init(&shard, shard_mem, len, &cfg, on_deliver, &got), 0);
        dp_shard_tick(&shard, 1000 * MS, 64);
}

/* Buffers held, not counting the one the shard keeps for its publishes
 * to reuse (dp_route.c), which nobody else holds. */
static uint64_t bufs_in_use(void)
{
        uint64_t n = 0;
        for (unsigned i = 0; i < shard.bufs.class_count; i++)
                n += shm_pool_in_use(&shard.bufs.pools[i]);
        return n - (shard.publish_buf != SHM_BUF_NONE);
}

static void shard_free(void)
{
        free(shard_mem);
}

TestSuite(dp_mode, .init = shard_new, .fini = shard_free);

static struct dp_msg_in msg(const char *subject, const char *payload)
{
        return (struct dp_msg_in){ .subject = subject,
                                   .subject_len = subject ? (uint32_t)strlen(subject) : 0,
                                   .payload = payload, .payload_len = (uint32_t)strlen(payload),
                                   .storage = -1 };
}

static uint64_t create(enum dp_mode mode, const char *name)
{
        struct dp_create_opts o = { .mode = mode, .overflow = -1 };
        uint64_t h;
        cr_assert_eq(dp_shard_create(&shard, &o, name, name ? (uint32_t)strlen(name) : 0, &h), 0);
        return h;
}

static int create_named_ok(const char *name, uint64_t *h)
{
        struct dp_create_opts o = { .mode = DP_MODE_MAILBOX, .overflow = -1 };
        return dp_shard_create(&shard, &o, name, (uint32_t)strlen(name), h);
}

static void fetched_is(const struct dp_fetched *f, const char *payload)
{
        struct dp_msg_view v;
        cr_assert_eq(dp_shard_msg_view(&shard, f->buf, &v), 0);
        cr_assert_eq(v.payload_len, strlen(payload));
        cr_assert_eq(memcmp(v.payload, payload, v.payload_len), 0, "payload %.*s, want %s",
                     (int)v.payload_len, v.payload, payload);
}

static void put_all(struct dp_fetched *f, int n)
{
        for (int i = 0; i < n; i++)
                cr_assert_geq(shm_slab_put(&shard.bufs, f[i].buf), 0);
}

Test(dp_mode, broadcast_reaches_live_subscribers_only)
{
        uint32_t a, b;
        struct dp_msg_in m = msg("orders.eu", "early");
        cr_assert_eq(dp_shard_publish(&shard, &m), 0, "nobody listens yet");
        cr_assert_eq(shard.stats->drops_no_party, 1);
        cr_assert_eq(dp_shard_subscribe(&shard, "orders.*", 8, 0, 1, 11, 0, &a), 0);
        cr_assert_eq(dp_shard_subscribe(&shard, "orders.>", 8, 0, 2, 22, 0, &b), 0);
        m = msg("orders.eu", "live");
        cr_assert_eq(dp_shard_publish(&shard, &m), 2);
        cr_assert_eq(got.n, 2, "the early message was kept by nobody");
        cr_assert_str_eq(got.payload[0], "live");
        m = msg("orders.eu.fr", "deep");
        cr_assert_eq(dp_shard_publish(&shard, &m), 1, "only > matches two tokens");
        cr_assert_eq(got.d[2].endpoint, 2);
        cr_assert_eq(got.d[2].sid, 22);
        cr_assert_eq(dp_shard_unsubscribe(&shard, b), 0);
        cr_assert_eq(dp_shard_publish(&shard, &m), 0);
        cr_assert_eq(bufs_in_use(), 0);
}

Test(dp_mode, broadcast_refuses_bad_subjects)
{
        const char *bad[] = { "orders.*", "orders.>", "a..b", "", " x" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct dp_msg_in m = msg(bad[i], "x");
                cr_assert_eq(dp_shard_publish(&shard, &m), -EINVAL, "subject '%s'", bad[i]);
        }
        cr_assert_eq(bufs_in_use(), 0);
}

Test(dp_mode, queue_group_delivers_each_message_to_one_member)
{
        uint32_t id;
        unsigned per[4] = { 0 };
        for (uint32_t ep = 1; ep <= 3; ep++)
                cr_assert_eq(dp_shard_subscribe(&shard, "work", 4, 7, ep, ep, 0, &id), 0);
        cr_assert_eq(dp_shard_subscribe(&shard, "work", 4, 0, 9, 9, 0, &id), 0);
        for (int i = 0; i < 60; i++) {
                struct dp_msg_in m = msg("work", "job");
                cr_assert_eq(dp_shard_publish(&shard, &m), 2, "one member and the plain sub");
                if (got.n >= 200) {
                        for (unsigned k = 0; k < got.n; k++)
                                if (got.d[k].endpoint <= 3)
                                        per[got.d[k].endpoint]++;
                        got.n = 0;
                }
        }
        for (unsigned k = 0; k < got.n; k++)
                if (got.d[k].endpoint <= 3)
                        per[got.d[k].endpoint]++;
        cr_assert_eq(per[1] + per[2] + per[3], 60);
        cr_assert_eq(per[1], 20, "round-robin: %u %u %u", per[1], per[2], per[3]);
        cr_assert_eq(per[2], 20);
        cr_assert_eq(per[3], 20);
}

Test(dp_mode, mailbox_stores_while_owner_is_away_and_ack_removes)
{
        uint64_t h = create(DP_MODE_MAILBOX, "inbox.alice");
        struct dp_fetched f[8];
        const char *texts[] = { "one", "two", "three" };
        for (int i = 0; i < 3; i++) {
                struct dp_msg_in m = msg(NULL, texts[i]);
                uint64_t seq;
                cr_assert_eq(dp_shard_send(&shard, h, &m, &seq), 0);
                cr_assert_eq(seq, (uint64_t)i);
        }
        cr_assert_eq(got.n, 0, "nothing pushed: the owner fetches");
        cr_assert_eq(dp_shard_fetch(&shard, h, 0, f, 2), 2);
        fetched_is(&f[0], "one");
        fetched_is(&f[1], "two");
        put_all(f, 2);
        cr_assert_eq(dp_shard_ack(&shard, h, 0), 0);
        cr_assert_eq(dp_shard_ack(&shard, h, 0), -ENOENT, "acked once");
        cr_assert_eq(dp_shard_fetch(&shard, h, 0, f, 8), 1, "two is in flight, three is new");
        fetched_is(&f[0], "three");
        put_all(f, 1);
        cr_assert_eq(dp_shard_ack(&shard, h, 2), 0);
        /* After ack-wait, the unacked "two" comes again, counted. */
        dp_shard_tick(&shard, shard.now_ns + 1001 * MS, 64);
        cr_assert_eq(dp_shard_fetch(&shard, h, 0, f, 8), 1);
        fetched_is(&f[0], "two");
        cr_assert_eq(f[0].deliveries, 2);
        put_all(f, 1);
        cr_assert_eq(dp_shard_ack(&shard, h, 1), 0);
        cr_assert_eq(dp_shard_fetch(&shard, h, 0, f, 8), 0);
        cr_assert_eq(dp_shard_destroy(&shard, h), 0);
        cr_assert_eq(bufs_in_use(), 0);
}

Test(dp_mode, mailbox_gives_up_after_max_deliver)
{
        uint64_t h = create(DP_MODE_MAILBOX, "inbox.bob");
        struct dp_fetched f[2];
        struct dp_msg_in m = msg(NULL, "poison");
        cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), 0);
        for (int i = 1; i <= 3; i++) {
                cr_assert_eq(dp_shard_fetch(&shard, h, 0, f, 2), 1, "delivery %d", i);
                cr_assert_eq(f[0].deliveries, i);
                put_all(f, 1);
                dp_shard_tick(&shard, shard.now_ns + 1001 * MS, 64);
        }
        cr_assert_eq(dp_shard_fetch(&shard, h, 0, f, 2), 0, "max_deliver is 3");
        cr_assert_eq(shard.stats->drops_max_deliver, 1);
        cr_assert_eq(bufs_in_use(), 0);
}

Test(dp_mode, mailbox_ttl_destroys_it_and_its_messages)
{
        struct dp_create_opts o = { .mode = DP_MODE_MAILBOX, .ttl_ms = 500, .overflow = -1 };
        uint64_t h, found;
        cr_assert_eq(dp_shard_create(&shard, &o, "inbox.tmp", 9, &h), 0);
        struct dp_msg_in m = msg(NULL, "held");
        cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), 0);
        cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), 0);
        cr_assert_eq(bufs_in_use(), 2);
        dp_shard_tick(&shard, shard.now_ns + 499 * MS, 64);
        cr_assert_eq(dp_table_find(&shard.table, "inbox.tmp", 9, &found), 0, "not yet");
        dp_shard_tick(&shard, shard.now_ns + 2 * MS, 64);
        cr_assert_eq(dp_table_find(&shard.table, "inbox.tmp", 9, &found), -ENOENT);
        cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), -ESTALE);
        cr_assert_eq(shard.stats->expired_entities, 1);
        cr_assert_eq(bufs_in_use(), 0, "its messages went with it");
        cr_assert_eq(shard.msgs.hdr->in_use, 0);
}

Test(dp_mode, latest_keeps_one_value_per_key_and_watchers_see_each_change)
{
        uint64_t h = create(DP_MODE_LATEST, "config");
        uint32_t w;
        struct dp_fetched f;
        cr_assert_eq(dp_shard_subscribe(&shard, "config.db", 9, 0, 5, 55, 0, &w), 0);
        struct dp_msg_in m1 = msg("config.db", "v1"), m2 = msg("config.db", "v2"),
                         m3 = msg("config.cache", "c1");
        cr_assert_eq(dp_shard_send(&shard, h, &m1, NULL), 0);
        cr_assert_eq(dp_shard_send(&shard, h, &m2, NULL), 0);
        cr_assert_eq(dp_shard_send(&shard, h, &m3, NULL), 0);
        cr_assert_eq(got.n, 2, "the watcher of config.db saw both of its changes");
        cr_assert_str_eq(got.payload[0], "v1");
        cr_assert_str_eq(got.payload[1], "v2");
        cr_assert_eq(dp_shard_get(&shard, h, "config.db", 9, &f), 0);
        fetched_is(&f, "v2");
        put_all(&f, 1);
        struct dp_entity *e;
        cr_assert_eq(dp_table_get(&shard.table, h, &e), 0);
        cr_assert_eq(e->msgs, 2, "one value per key");
        cr_assert_eq(dp_shard_get(&shard, h, "config.none", 11, &f), -ENOENT);
        struct dp_msg_in nokey = msg(NULL, "x");
        cr_assert_eq(dp_shard_send(&shard, h, &nokey, NULL), -EINVAL, "latest needs a key");
        cr_assert_eq(dp_shard_destroy(&shard, h), 0);
        cr_assert_eq(bufs_in_use(), 0);
}

Test(dp_mode, request_reply_reaches_the_requester_and_closes_the_inbox)
{
        uint32_t sub;
        uint64_t inbox;
        struct dp_entity *e;
        cr_assert_eq(dp_shard_subscribe(&shard, "svc.echo", 8, 0, 7, 70, 0, &sub), 0);
        struct dp_msg_in q = msg("svc.echo", "ping");
        cr_assert_eq(dp_shard_request(&shard, &q, 3, 30, 1000, &inbox), 1);
        cr_assert_eq(got.n, 1);
        cr_assert_eq(got.d[0].endpoint, 7, "the responder got the request");
        cr_assert_eq(got.d[0].sid, 70);
        cr_assert_eq(bufs_in_use(), 0, "nobody kept the request buffer: it was freed");
        /* The responder answers to the reply handle the request carried. */
        cr_assert_eq(got.reply[0], inbox);
        struct dp_msg_in a = msg(NULL, "pong");
        cr_assert_eq(dp_shard_send(&shard, got.reply[0], &a, NULL), 0);
        cr_assert_eq(got.n, 2);
        cr_assert_eq(got.d[1].endpoint, 3);
        cr_assert_eq(got.d[1].sid, 30);
        cr_assert_str_eq(got.payload[1], "pong");
        cr_assert_eq(dp_table_get(&shard.table, inbox, &e), -ESTALE, "one-shot inbox is gone");
        cr_assert_eq(dp_shard_send(&shard, inbox, &a, NULL), -ESTALE, "a second reply is refused");
        cr_assert_eq(bufs_in_use(), 0);
}

Test(dp_mode, request_without_responders_answers_503_at_once)
{
        uint64_t inbox = 0;
        struct dp_msg_in q = msg("svc.nobody", "ping");
        cr_assert_eq(dp_shard_request(&shard, &q, 3, 31, 1000, &inbox), 0);
        cr_assert_eq(got.n, 1);
        cr_assert_eq(got.d[0].status, DP_STATUS_NO_RESPONDERS);
        cr_assert_eq(got.d[0].sid, 31);
        cr_assert_eq(shard.table.hdr->live, 0, "no inbox left behind");
        cr_assert_eq(shard.stats->no_responders, 1);
}

Test(dp_mode, request_times_out_with_408)
{
        uint32_t sub;
        uint64_t inbox;
        cr_assert_eq(dp_shard_subscribe(&shard, "svc.slow", 8, 0, 7, 70, 0, &sub), 0);
        struct dp_msg_in q = msg("svc.slow", "ping");
        cr_assert_eq(dp_shard_request(&shard, &q, 3, 32, 200, &inbox), 1);
        dp_shard_tick(&shard, shard.now_ns + 199 * MS, 64);
        cr_assert_eq(got.n, 1, "still waiting");
        dp_shard_tick(&shard, shard.now_ns + 2 * MS, 64);
        cr_assert_eq(got.n, 2);
        cr_assert_eq(got.d[1].status, DP_STATUS_TIMEOUT);
        cr_assert_eq(got.d[1].endpoint, 3);
        struct dp_msg_in late = msg(NULL, "late");
        cr_assert_eq(dp_shard_send(&shard, inbox, &late, NULL), -ESTALE);
        cr_assert_eq(shard.stats->request_timeouts, 1);
}

Test(dp_mode, channel_carries_each_end_to_the_other_and_closes_when_both_leave)
{
        uint64_t h = create(DP_MODE_CHANNEL, NULL);
        struct dp_fetched f[4];
        struct dp_entity *e;
        struct dp_bind a = { .endpoint = 1, .sid = 1, .hold = true, .end = 0 };
        struct dp_bind b = { .endpoint = 2, .sid = 2, .hold = true, .end = 1 };
        struct dp_bind c = { .endpoint = 3, .sid = 3, .hold = true, .end = 1 };
        cr_assert_eq(dp_shard_bind(&shard, h, &a), 0);
        cr_assert_eq(dp_shard_bind(&shard, h, &b), 0);
        cr_assert_eq(dp_shard_bind(&shard, h, &c), -EBUSY, "two parties only");
        struct dp_msg_in from_a = msg(NULL, "hi b");
        from_a.end = 1;
        struct dp_msg_in from_b = msg(NULL, "hi a");
        from_b.end = 2;
        cr_assert_eq(dp_shard_send(&shard, h, &from_a, NULL), 0);
        cr_assert_eq(dp_shard_send(&shard, h, &from_b, NULL), 0);
        cr_assert_eq(got.n, 0, "holders pull");
        cr_assert_eq(dp_shard_fetch(&shard, h, 1, f, 4), 1, "end 0 gets what b sent");
        fetched_is(&f[0], "hi a");
        put_all(f, 1);
        cr_assert_eq(dp_shard_fetch(&shard, h, 2, f, 4), 1, "end 1 gets what a sent");
        fetched_is(&f[0], "hi b");
        put_all(f, 1);
        cr_assert_eq(dp_shard_unbind(&shard, h, 1, 1), 0);
        cr_assert_eq(dp_table_get(&shard.table, h, &e), 0, "one end still there");
        cr_assert_eq(dp_shard_unbind(&shard, h, 2, 2), 0);
        cr_assert_eq(dp_table_get(&shard.table, h, &e), -ESTALE, "both left: destroyed");
        cr_assert_eq(bufs_in_use(), 0);
}

Test(dp_mode, channel_ttl_destroys_it)
{
        struct dp_create_opts o = { .mode = DP_MODE_CHANNEL, .ttl_ms = 50, .overflow = -1 };
        uint64_t h;
        struct dp_entity *e;
        cr_assert_eq(dp_shard_create(&shard, &o, NULL, 0, &h), 0);
        struct dp_bind a = { .endpoint = 1, .sid = 1, .hold = true };
        cr_assert_eq(dp_shard_bind(&shard, h, &a), 0);
        dp_shard_tick(&shard, shard.now_ns + 51 * MS, 64);
        cr_assert_eq(dp_table_get(&shard.table, h, &e), -ESTALE);
}

Test(dp_mode, log_keeps_order_with_offsets_and_independent_group_cursors)
{
        uint64_t h = create(DP_MODE_LOG, "events");
        struct dp_fetched f[8];
        uint64_t off;
        char text[8];
        for (int i = 0; i < 5; i++) {
                snprintf(text, sizeof(text), "e%d", i);
                struct dp_msg_in m = msg(NULL, text);
                cr_assert_eq(dp_shard_send(&shard, h, &m, &off), 0);
                cr_assert_eq(off, (uint64_t)i);
        }
        cr_assert_eq(dp_shard_fetch(&shard, h, 0, f, 8), -EOPNOTSUPP, "logs are read");
        cr_assert_eq(dp_shard_read(&shard, h, 2, f, 8), 3);
        cr_assert_eq(f[0].seq, 2);
        fetched_is(&f[2], "e4");
        put_all(f, 3);
        cr_assert_eq(dp_shard_read_group(&shard, h, "billing", f, 8), 5, "new group at the start");
        put_all(f, 5);
        cr_assert_eq(dp_shard_commit(&shard, h, "billing", 3), 0);
        cr_assert_eq(dp_shard_read_group(&shard, h, "billing", f, 8), 2);
        cr_assert_eq(f[0].seq, 3);
        put_all(f, 2);
        cr_assert_eq(dp_shard_read_group(&shard, h, "audit", f, 1), 1, "independent cursor");
        cr_assert_eq(f[0].seq, 0);
        put_all(f, 1);
        cr_assert_eq(dp_shard_cursor(&shard, h, "billing", &off), 0);
        cr_assert_eq(off, 3);
        cr_assert_eq(dp_shard_cursor(&shard, h, "nobody", &off), -ENOENT);
        cr_assert_eq(dp_shard_commit(&shard, h, "billing", 6), -ERANGE);
        cr_assert_eq(dp_shard_read(&shard, h, 0, f, 8), 5, "reading removes nothing");
        put_all(f, 5);
        cr_assert_eq(dp_shard_destroy(&shard, h), 0);
        cr_assert_eq(bufs_in_use(), 0);
}

Test(dp_mode, log_with_a_limit_drops_its_oldest_and_keeps_offsets)
{
        struct dp_create_opts o = { .mode = DP_MODE_LOG, .max_msgs = 3, .overflow = -1 };
        uint64_t h;
        struct dp_fetched f[8];
        cr_assert_eq(dp_shard_create(&shard, &o, "events.capped", 13, &h), 0);
        for (int i = 0; i < 5; i++) {
                struct dp_msg_in m = msg(NULL, "x");
                cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), 0);
        }
        cr_assert_eq(dp_shard_read(&shard, h, 0, f, 8), 3);
        cr_assert_eq(f[0].seq, 2, "offsets 0 and 1 were dropped, 2..4 stay");
        cr_assert_eq(f[2].seq, 4);
        put_all(f, 3);
        cr_assert_eq(dp_shard_read_group(&shard, h, "late", f, 8), 3, "a new group starts at 2");
        cr_assert_eq(f[0].seq, 2);
        put_all(f, 3);
}

Test(dp_mode, every_mode_is_a_row_of_atoms)
{
        for (int i = 0; i < DP_MODE_COUNT_; i++) {
                uint64_t h = create((enum dp_mode)i, NULL);
                struct dp_entity *e;
                cr_assert_eq(dp_table_get(&shard.table, h, &e), 0);
                cr_assert_eq(e->storage, dp_modes[i].storage, "%s", dp_modes[i].name);
                cr_assert_eq(e->retention, dp_modes[i].retention);
                cr_assert_eq(e->routing, dp_modes[i].routing);
                cr_assert_eq(e->delivery, dp_modes[i].delivery);
                cr_assert_eq(e->overflow, dp_modes[i].overflow);
                cr_assert_eq(dp_mode_parse(dp_modes[i].name), i);
        }
        cr_assert_eq(dp_mode_parse("queue"), -EINVAL);
        struct dp_create_opts bad = { .mode = DP_MODE_COUNT_ };
        uint64_t h;
        cr_assert_eq(dp_shard_create(&shard, &bad, NULL, 0, &h), -EINVAL);
}

/* A dataplane that dies leaves its shard in the arena; the next one
 * attaches to the same memory and carries on with everything in it. */
Test(dp_mode, a_restarted_dataplane_attaches_and_finds_everything)
{
        uint64_t box = create(DP_MODE_MAILBOX, "inbox.dave"), log = create(DP_MODE_LOG, "audit");
        struct dp_create_opts o = { .mode = DP_MODE_MAILBOX, .ttl_ms = 100, .overflow = -1 };
        uint64_t mortal, found;
        uint32_t sub;
        cr_assert_eq(dp_shard_create(&shard, &o, "inbox.mortal", 12, &mortal), 0);
        struct dp_msg_in a = msg(NULL, "kept across"), b = msg(NULL, "the restart");
        cr_assert_eq(dp_shard_send(&shard, box, &a, NULL), 0);
        cr_assert_eq(dp_shard_send(&shard, box, &b, NULL), 0);
        cr_assert_eq(dp_shard_send(&shard, log, &a, NULL), 0);
        cr_assert_eq(dp_shard_send(&shard, log, &b, NULL), 0);
        cr_assert_eq(dp_shard_commit(&shard, log, "g", 1), 0);
        cr_assert_eq(dp_shard_subscribe(&shard, "news.*", 6, 0, 8, 80, 0, &sub), 0);
        uint64_t now_ns = shard.now_ns;

        /* The "new process": a fresh view over the same bytes. */
        struct dp_shard again;
        size_t len = dp_shard_bytes(&shard.hdr->cfg);
        cr_assert_eq(dp_shard_attach(&again, shard_mem, len, on_deliver, &got), 0);
        memset(&shard, 0, sizeof(shard));
        shard = again;
        dp_shard_tick(&shard, now_ns, 64);

        cr_assert_eq(dp_table_find(&shard.table, "inbox.dave", 10, &found), 0);
        cr_assert_eq(found, box, "the same handle still works");
        struct dp_fetched f[4];
        cr_assert_eq(dp_shard_fetch(&shard, box, 0, f, 4), 2);
        fetched_is(&f[0], "kept across");
        fetched_is(&f[1], "the restart");
        put_all(f, 2);
        uint64_t off;
        cr_assert_eq(dp_shard_cursor(&shard, log, "g", &off), 0);
        cr_assert_eq(off, 1);
        struct dp_msg_in n = msg("news.today", "x");
        cr_assert_eq(dp_shard_publish(&shard, &n), 1, "the subscription survived");
        dp_shard_tick(&shard, now_ns + 101 * MS, 64);
        cr_assert_eq(dp_table_find(&shard.table, "inbox.mortal", 12, &found), -ENOENT,
                     "its TTL timer survived too");
        uint64_t h;
        cr_assert_eq(create_named_ok("inbox.new", &h), 0, "and the shard takes new work");
}

Test(dp_mode, attach_refuses_memory_that_is_not_a_shard)
{
        struct dp_shard other;
        size_t len = dp_shard_bytes(&shard.hdr->cfg);
        shard.hdr->magic ^= 1;
        cr_assert_eq(dp_shard_attach(&other, shard_mem, len, NULL, NULL), -EPROTO);
        shard.hdr->magic ^= 1;
        cr_assert_eq(dp_shard_attach(&other, shard_mem, len - 4096, NULL, NULL), -ENOSPC);
        shard.hdr->bind_free = UINT32_MAX;
        cr_assert_eq(dp_shard_attach(&other, shard_mem, len, NULL, NULL), -EPROTO);
}
