/* test_dp_atoms.c - each atom on its own: storage (and switching it live),
 * retention limits and overflow, routing (direct, fanout, group, headers,
 * a subscription feeding an entity), lifecycle (entity TTL absolute and
 * idle, per-message TTL, expiry order), and the pools running out. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/dp_shard.h"

#define MS 1000000ull

static struct dp_shard shard;
static void *shard_mem;
static struct dp_dispatch got[512];
static unsigned got_n;

static void on_deliver(void *arg, const struct dp_dispatch *d)
{
        (void)arg;
        if (got_n < 512)
                got[got_n++] = *d;
}

static void shard_new(void)
{
        struct dp_shard_config cfg;
        dp_shard_config_default(&cfg, 0, 256);
        cfg.max_msgs = 64;
        cfg.max_subs = 256;
        cfg.max_trie_nodes = 1024;
        cfg.bufs[0].block_count = 64;
        cfg.bufs[1].block_count = 4;
        cfg.bufs[2].block_count = 1;
        cfg.bufs[3].block_count = 1;
        size_t len = dp_shard_bytes(&cfg);
        shard_mem = aligned_alloc(64, (len + 63) & ~(size_t)63);
        cr_assert_not_null(shard_mem);
        got_n = 0;
        cr_assert_eq(dp_shard_init(&shard, shard_mem, len, &cfg, on_deliver, NULL), 0);
        dp_shard_tick(&shard, 1000 * MS, 64);
}

static void shard_free(void)
{
        free(shard_mem);
}

TestSuite(dp_atom, .init = shard_new, .fini = shard_free);

/* Buffers held, not counting the one the shard keeps for its publishes
 * to reuse (dp_route.c), which nobody else holds. */
static uint64_t bufs_in_use(void)
{
        uint64_t n = 0;
        for (unsigned i = 0; i < shard.bufs.class_count; i++)
                n += shm_pool_in_use(&shard.bufs.pools[i]);
        return n - (shard.publish_buf != SHM_BUF_NONE);
}

static struct dp_msg_in text(const char *payload)
{
        return (struct dp_msg_in){ .payload = payload, .payload_len = (uint32_t)strlen(payload),
                                   .storage = -1 };
}

static uint64_t entity(struct dp_create_opts o, const char *name)
{
        uint64_t h;
        if (o.overflow == 0)
                o.overflow = -1;
        cr_assert_eq(dp_shard_create(&shard, &o, name, name ? (uint32_t)strlen(name) : 0, &h), 0);
        return h;
}

static int drain(uint64_t h, uint8_t end)
{
        struct dp_fetched f[64];
        int n = dp_shard_fetch(&shard, h, end, f, 64);
        for (int i = 0; i < n; i++)
                shm_slab_put(&shard.bufs, f[i].buf);
        return n;
}

static const char *payload_of(uint32_t buf)
{
        static char out[64];
        struct dp_msg_view v;
        if (dp_shard_msg_view(&shard, buf, &v) != 0)
                return "?";
        snprintf(out, sizeof(out), "%.*s", (int)v.payload_len, (const char *)v.payload);
        return out;
}

/* --- storage --- */

Test(dp_atom, storage_none_delivers_to_live_parties_and_keeps_nothing)
{
        uint64_t h = entity((struct dp_create_opts){ .mode = DP_MODE_MAILBOX, .storage_set = true,
                                                     .storage = DP_STORAGE_NONE }, "pass");
        struct dp_msg_in m = text("x");
        cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), -ENOENT, "nobody to take it");
        cr_assert_eq(shard.stats->drops_no_party, 1);
        struct dp_bind w = { .endpoint = 4, .sid = 1 };
        cr_assert_eq(dp_shard_bind(&shard, h, &w), 0);
        cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), 0);
        cr_assert_eq(got_n, 1);
        cr_assert_eq(drain(h, 0), 0, "nothing was stored");
        cr_assert_eq(bufs_in_use(), 0);
}

Test(dp_atom, switching_storage_live_loses_no_queued_message)
{
        uint64_t h = entity((struct dp_create_opts){ .mode = DP_MODE_MAILBOX }, "switch");
        struct dp_msg_in m = text("kept");
        for (int i = 0; i < 3; i++)
                cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), 0);
        cr_assert_eq(dp_shard_set_storage(&shard, h, DP_STORAGE_NONE), 0);
        cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), -ENOENT, "new ones are not kept");
        cr_assert_eq(dp_shard_set_storage(&shard, h, DP_STORAGE_MEM), 0);
        cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), 0, "kept again");
        struct dp_fetched f[8];
        cr_assert_eq(dp_shard_fetch(&shard, h, 0, f, 8), 4, "3 from before the switch + 1 after");
        cr_assert_eq(f[0].seq, 0);
        cr_assert_eq(f[3].seq, 4);
        for (int i = 0; i < 4; i++)
                shm_slab_put(&shard.bufs, f[i].buf);
        cr_assert_eq(dp_shard_set_storage(&shard, h, DP_STORAGE_DISK), -EOPNOTSUPP);
        cr_assert_eq(dp_shard_set_storage(&shard, h, 9), -EINVAL);
}

Test(dp_atom, per_message_storage_overrides_the_entity)
{
        uint64_t h = entity((struct dp_create_opts){ .mode = DP_MODE_MAILBOX }, "override");
        struct dp_bind w = { .endpoint = 4, .sid = 1 };
        cr_assert_eq(dp_shard_bind(&shard, h, &w), 0);
        struct dp_msg_in m = text("transient");
        m.storage = DP_STORAGE_NONE;
        cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), 0);
        cr_assert_eq(got_n, 1, "the watcher saw it");
        cr_assert_eq(drain(h, 0), 0, "but it was not kept");
        m.storage = 7;
        cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), -EINVAL);
}

/* --- retention limits and overflow --- */

Test(dp_atom, max_msgs_with_reject_refuses_and_keeps_the_old)
{
        uint64_t h = entity((struct dp_create_opts){ .mode = DP_MODE_MAILBOX, .max_msgs = 2 },
                            "cap");
        struct dp_msg_in m = text("m");
        cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), 0);
        cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), 0);
        cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), -ENOBUFS);
        cr_assert_eq(shard.stats->drops_full, 1);
        struct dp_fetched f[4];
        cr_assert_eq(dp_shard_fetch(&shard, h, 0, f, 4), 2);
        cr_assert_eq(f[0].seq, 0, "the old ones stayed");
        cr_assert_eq(f[1].seq, 1);
        shm_slab_put(&shard.bufs, f[0].buf);
        shm_slab_put(&shard.bufs, f[1].buf);
        cr_assert_eq(bufs_in_use(), 2, "only the two queued");
}

Test(dp_atom, max_bytes_with_drop_oldest_keeps_the_newest)
{
        /* Each frame is 48 + 10 bytes. */
        uint64_t h = entity((struct dp_create_opts){ .mode = DP_MODE_MAILBOX, .max_bytes = 200,
                                                     .overflow = DP_OVERFLOW_DROP_OLDEST },
                            "bytes");
        char p[16];
        for (int i = 0; i < 6; i++) {
                snprintf(p, sizeof(p), "message-%02d", i);
                struct dp_msg_in m = text(p);
                cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), 0);
        }
        struct dp_entity *e;
        cr_assert_eq(dp_table_get(&shard.table, h, &e), 0);
        cr_assert_eq(e->msgs, 3, "3 x 58 bytes fit in 200");
        cr_assert_leq(e->bytes, 200);
        struct dp_fetched f[8];
        cr_assert_eq(dp_shard_fetch(&shard, h, 0, f, 8), 3);
        cr_assert_str_eq(payload_of(f[0].buf), "message-03");
        for (int i = 0; i < 3; i++)
                shm_slab_put(&shard.bufs, f[i].buf);
        struct dp_msg_in big = text("this payload alone is larger than two hundred bytes: "
                                    "................................................."
                                    "................................................."
                                    "................................................."
                                    ".......");
        cr_assert_eq(dp_shard_send(&shard, h, &big, NULL), -ENOBUFS, "can never fit");
}

Test(dp_atom, shard_pools_running_out_is_an_error_not_a_crash)
{
        uint64_t h = entity((struct dp_create_opts){ .mode = DP_MODE_MAILBOX }, "flood");
        struct dp_msg_in m = text("fill");
        int rc = 0, sent = 0;
        while ((rc = dp_shard_send(&shard, h, &m, NULL)) == 0)
                sent++;
        cr_assert_eq(rc, -ENOMEM);
        cr_assert_eq(sent, 64, "the message record pool holds 64");
        cr_assert_geq(shard.stats->pool_exhausted, 1);
        cr_assert_eq(drain(h, 0), 64, "what was accepted is all there");
        cr_assert_eq(dp_shard_ack(&shard, h, 0), 0);
        cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), 0, "room again after an ack");
}

Test(dp_atom, message_larger_than_any_buffer_is_emsgsize)
{
        uint64_t h = entity((struct dp_create_opts){ .mode = DP_MODE_MAILBOX }, "huge");
        static char big[(1u << 20) + (64u << 10)];
        memset(big, 'x', sizeof(big));
        struct dp_msg_in m = { .payload = big, .payload_len = sizeof(big), .storage = -1 };
        cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), -EMSGSIZE);
        m.payload_len = 1u << 20;
        cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), 0, "1 MiB fits the largest class");
        cr_assert_eq(drain(h, 0), 1);
}

/* --- routing --- */

static uint64_t routed(uint8_t routing, const char *name)
{
        uint64_t h = entity((struct dp_create_opts){ .mode = DP_MODE_REQUEST }, name);
        struct dp_entity *e;
        cr_assert_eq(dp_table_get(&shard.table, h, &e), 0);
        /* A request entity routes; give it another routing atom and no
         * lifecycle, to test routing alone. */
        e->routing = routing;
        e->lifecycle = 0;
        e->ttl_ms = 0;
        return h;
}

Test(dp_atom, direct_reaches_the_first_watcher_fanout_reaches_all)
{
        uint64_t d = routed(DP_ROUTING_DIRECT, "direct"), f = routed(DP_ROUTING_FANOUT, "fan");
        for (uint32_t ep = 1; ep <= 3; ep++) {
                struct dp_bind w = { .endpoint = ep, .sid = ep };
                cr_assert_eq(dp_shard_bind(&shard, d, &w), 0);
                cr_assert_eq(dp_shard_bind(&shard, f, &w), 0);
        }
        struct dp_msg_in m = text("x");
        cr_assert_eq(dp_shard_send(&shard, d, &m, NULL), 0);
        cr_assert_eq(got_n, 1);
        cr_assert_eq(got[0].endpoint, 1);
        cr_assert_eq(dp_shard_send(&shard, f, &m, NULL), 0);
        cr_assert_eq(got_n, 4);
        cr_assert_eq(got[3].endpoint, 3);
        cr_assert_eq(got[3].entity, f);
}

Test(dp_atom, group_round_robin_gives_each_member_its_turn)
{
        uint64_t h = routed(DP_ROUTING_GROUP, "workers");
        for (uint32_t ep = 1; ep <= 3; ep++) {
                struct dp_bind w = { .endpoint = ep, .sid = ep, .group = 1 };
                cr_assert_eq(dp_shard_bind(&shard, h, &w), 0);
        }
        struct dp_bind other = { .endpoint = 9, .sid = 9, .group = 2 };
        cr_assert_eq(dp_shard_bind(&shard, h, &other), 0);
        unsigned per[10] = { 0 };
        struct dp_msg_in m = text("job");
        for (int i = 0; i < 30; i++) {
                got_n = 0;
                cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), 0);
                cr_assert_eq(got_n, 2, "one member of each of the two groups");
                per[got[0].endpoint]++;
                per[got[1].endpoint]++;
        }
        cr_assert_eq(per[1], 10);
        cr_assert_eq(per[2], 10);
        cr_assert_eq(per[3], 10);
        cr_assert_eq(per[9], 30, "a group of one gets every message");
}

static uint32_t load_of(void *arg, uint32_t endpoint)
{
        (void)arg;
        return endpoint == 2 ? 0 : 100;   /* endpoint 2 is idle */
}

Test(dp_atom, group_least_loaded_picks_the_idle_member)
{
        uint64_t h = entity((struct dp_create_opts){ .mode = DP_MODE_REQUEST, .least_loaded = true },
                            "ll");
        struct dp_entity *e;
        cr_assert_eq(dp_table_get(&shard.table, h, &e), 0);
        e->routing = DP_ROUTING_GROUP;
        e->lifecycle = 0;
        e->ttl_ms = 0;
        dp_shard_set_load_fn(&shard, load_of, NULL);
        for (uint32_t ep = 1; ep <= 3; ep++) {
                struct dp_bind w = { .endpoint = ep, .sid = ep, .group = 1 };
                cr_assert_eq(dp_shard_bind(&shard, h, &w), 0);
        }
        struct dp_msg_in m = text("job");
        for (int i = 0; i < 5; i++)
                cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), 0);
        for (unsigned i = 0; i < got_n; i++)
                cr_assert_eq(got[i].endpoint, 2);
        cr_assert_eq(got_n, 5);
}

Test(dp_atom, headers_routing_matches_header_values)
{
        uint64_t h = routed(DP_ROUTING_HEADERS, "exchange");
        struct dp_bind eu = { .endpoint = 1, .sid = 1, .hdr_name = "Region", .hdr_value = "eu" };
        struct dp_bind us = { .endpoint = 2, .sid = 2, .hdr_name = "Region", .hdr_value = "us" };
        struct dp_bind all = { .endpoint = 3, .sid = 3 };
        cr_assert_eq(dp_shard_bind(&shard, h, &eu), 0);
        cr_assert_eq(dp_shard_bind(&shard, h, &us), 0);
        cr_assert_eq(dp_shard_bind(&shard, h, &all), 0);
        struct dp_bind bad = { .endpoint = 4, .sid = 4, .hdr_name = "Region" };
        cr_assert_eq(dp_shard_bind(&shard, h, &bad), -EINVAL, "a name needs a value");
        const char hdrs[] = "NATS/1.0\r\nTrace: 7\r\nRegion:  eu \r\n\r\n";
        struct dp_msg_in m = text("order");
        m.headers = hdrs;
        m.headers_len = sizeof(hdrs) - 1;
        cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), 0);
        cr_assert_eq(got_n, 2, "the eu binding and the unfiltered one");
        cr_assert_eq(got[0].endpoint, 1);
        cr_assert_eq(got[1].endpoint, 3);
        struct dp_msg_in plain = text("no headers");
        got_n = 0;
        cr_assert_eq(dp_shard_send(&shard, h, &plain, NULL), 0);
        cr_assert_eq(got_n, 1);
        cr_assert_eq(got[0].endpoint, 3);
}

Test(dp_atom, a_subscription_can_feed_a_mailbox_while_its_owner_is_away)
{
        uint64_t box = entity((struct dp_create_opts){ .mode = DP_MODE_MAILBOX }, "inbox.carol");
        uint32_t sub;
        cr_assert_eq(dp_shard_subscribe(&shard, "alerts.>", 8, 0, 0, 0, box, &sub), 0);
        struct dp_msg_in m = { .subject = "alerts.disk", .subject_len = 11, .payload = "full",
                               .payload_len = 4, .storage = -1 };
        cr_assert_eq(dp_shard_publish(&shard, &m), 1);
        cr_assert_eq(got_n, 0, "nobody was online");
        struct dp_fetched f[2];
        cr_assert_eq(dp_shard_fetch(&shard, box, 0, f, 2), 1, "but the mailbox kept it");
        cr_assert_str_eq(payload_of(f[0].buf), "full");
        shm_slab_put(&shard.bufs, f[0].buf);
        cr_assert_eq(dp_shard_subscribe(&shard, "x", 1, 0, 0, 0, box + (1ull << 40), &sub),
                     -ESTALE, "a stale target is refused");
}

/* --- lifecycle --- */

Test(dp_atom, idle_ttl_is_pushed_out_by_use)
{
        uint64_t h = entity((struct dp_create_opts){ .mode = DP_MODE_MAILBOX, .ttl_ms = 100,
                                                     .ttl_idle = true }, "idle");
        struct dp_entity *e;
        struct dp_msg_in m = text("keepalive");
        for (int i = 0; i < 5; i++) {
                dp_shard_tick(&shard, shard.now_ns + 80 * MS, 64);
                cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), 0, "alive at step %d", i);
        }
        cr_assert_eq(drain(h, 0), 5);
        dp_shard_tick(&shard, shard.now_ns + 101 * MS, 64);
        cr_assert_eq(dp_table_get(&shard.table, h, &e), -ESTALE, "idle 100 ms: gone");
}

Test(dp_atom, absolute_ttl_is_not_pushed_out_by_use)
{
        uint64_t h = entity((struct dp_create_opts){ .mode = DP_MODE_MAILBOX, .ttl_ms = 100 },
                            "abs");
        struct dp_msg_in m = text("busy");
        dp_shard_tick(&shard, shard.now_ns + 60 * MS, 64);
        cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), 0);
        dp_shard_tick(&shard, shard.now_ns + 41 * MS, 64);
        cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), -ESTALE);
        cr_assert_eq(bufs_in_use(), 0);
}

Test(dp_atom, set_ttl_changes_and_clears_the_deadline)
{
        uint64_t h = entity((struct dp_create_opts){ .mode = DP_MODE_MAILBOX, .ttl_ms = 50 }, "t");
        struct dp_entity *e;
        cr_assert_eq(dp_shard_set_ttl(&shard, h, 0), 0);
        dp_shard_tick(&shard, shard.now_ns + 1000 * MS, 64);
        cr_assert_eq(dp_table_get(&shard.table, h, &e), 0, "TTL cleared");
        cr_assert_eq(dp_shard_set_ttl(&shard, h, 10), 0);
        dp_shard_tick(&shard, shard.now_ns + 11 * MS, 64);
        cr_assert_eq(dp_table_get(&shard.table, h, &e), -ESTALE);
}

/* Destroy cancels the TTL's timer: the slot's next entity (the free list
 * hands the same slot out again), with no TTL of its own, outlives the old
 * deadline; so does one whose TTL was set to 0 before it was destroyed. */
Test(dp_atom, destroy_cancels_the_ttl_for_the_slots_next_entity)
{
        struct dp_entity *e;
        uint64_t h = entity((struct dp_create_opts){ .mode = DP_MODE_MAILBOX, .ttl_ms = 20 }, "t1");
        cr_assert_eq(dp_shard_destroy(&shard, h), 0);
        uint64_t h2 = entity((struct dp_create_opts){ .mode = DP_MODE_MAILBOX }, "t2");
        cr_assert_eq(dp_handle_slot(h2), dp_handle_slot(h), "the slot is reused");
        dp_shard_tick(&shard, shard.now_ns + 100 * MS, 64);
        cr_assert_eq(dp_table_get(&shard.table, h2, &e), 0, "no stale timer fired");
        cr_assert_eq(dp_shard_set_ttl(&shard, h2, 30), 0);
        cr_assert_eq(dp_shard_set_ttl(&shard, h2, 0), 0);
        cr_assert_eq(dp_shard_destroy(&shard, h2), 0);
        uint64_t h3 = entity((struct dp_create_opts){ .mode = DP_MODE_MAILBOX }, "t3");
        cr_assert_eq(dp_handle_slot(h3), dp_handle_slot(h));
        dp_shard_tick(&shard, shard.now_ns + 100 * MS, 64);
        cr_assert_eq(dp_table_get(&shard.table, h3, &e), 0);
}

Test(dp_atom, entity_ttls_expire_in_deadline_order)
{
        uint32_t ttls[] = { 70, 10, 50, 30, 90 };
        uint64_t h[5];
        char name[16];
        for (int i = 0; i < 5; i++) {
                snprintf(name, sizeof(name), "ttl.%d", i);
                h[i] = entity((struct dp_create_opts){ .mode = DP_MODE_MAILBOX,
                                                       .ttl_ms = ttls[i] }, name);
        }
        int order[5], n = 0;
        for (int step = 1; step <= 100 && n < 5; step++) {
                dp_shard_tick(&shard, shard.now_ns + 1 * MS, 64);
                for (int i = 0; i < 5; i++) {
                        struct dp_entity *e;
                        if (h[i] != 0 && dp_table_get(&shard.table, h[i], &e) == -ESTALE) {
                                order[n++] = i;
                                h[i] = 0;
                        }
                }
        }
        cr_assert_eq(n, 5);
        int want[] = { 1, 3, 2, 0, 4 };
        for (int i = 0; i < 5; i++)
                cr_assert_eq(order[i], want[i], "position %d", i);
}

Test(dp_atom, expired_messages_are_never_delivered)
{
        uint64_t h = entity((struct dp_create_opts){ .mode = DP_MODE_MAILBOX }, "perishable");
        struct dp_msg_in soon = text("soon"), later = text("later"), never = text("forever");
        soon.ttl_ms = 10;
        later.ttl_ms = 1000;
        cr_assert_eq(dp_shard_send(&shard, h, &soon, NULL), 0);
        cr_assert_eq(dp_shard_send(&shard, h, &later, NULL), 0);
        cr_assert_eq(dp_shard_send(&shard, h, &never, NULL), 0);
        dp_shard_tick(&shard, shard.now_ns + 11 * MS, 64);
        struct dp_fetched f[4];
        cr_assert_eq(dp_shard_fetch(&shard, h, 0, f, 4), 2);
        cr_assert_str_eq(payload_of(f[0].buf), "later");
        cr_assert_str_eq(payload_of(f[1].buf), "forever");
        shm_slab_put(&shard.bufs, f[0].buf);
        shm_slab_put(&shard.bufs, f[1].buf);
        cr_assert_eq(shard.stats->drops_expired, 1);
        cr_assert_eq(bufs_in_use(), 2, "the expired one's buffer was released");
}

Test(dp_atom, an_expired_latest_value_is_not_returned)
{
        uint64_t h = entity((struct dp_create_opts){ .mode = DP_MODE_LATEST }, "kv");
        struct dp_msg_in m = { .subject = "kv.temp", .subject_len = 7, .payload = "21",
                               .payload_len = 2, .storage = -1, .ttl_ms = 5 };
        struct dp_fetched f;
        cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), 0);
        dp_shard_tick(&shard, shard.now_ns + 6 * MS, 64);
        cr_assert_eq(dp_shard_get(&shard, h, "kv.temp", 7, &f), -ENOENT);
        cr_assert_eq(bufs_in_use(), 0);
}

Test(dp_atom, auto_destroy_goes_with_the_last_party)
{
        uint64_t h = entity((struct dp_create_opts){ .mode = DP_MODE_CHANNEL }, NULL);
        struct dp_entity *e;
        struct dp_bind a = { .endpoint = 1, .sid = 1, .hold = true };
        cr_assert_eq(dp_shard_bind(&shard, h, &a), 0);
        cr_assert_eq(dp_shard_unbind(&shard, h, 9, 9), -ENOENT);
        cr_assert_eq(dp_shard_unbind(&shard, h, 1, 1), 0);
        cr_assert_eq(dp_table_get(&shard.table, h, &e), -ESTALE);
        cr_assert_eq(shard.table.hdr->live, 0);
}

Test(dp_atom, stale_handles_are_refused_everywhere)
{
        uint64_t h = entity((struct dp_create_opts){ .mode = DP_MODE_LOG }, "gone");
        cr_assert_eq(dp_shard_destroy(&shard, h), 0);
        struct dp_msg_in m = text("x");
        struct dp_fetched f[1];
        struct dp_bind w = { .endpoint = 1 };
        uint64_t off;
        cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), -ESTALE);
        cr_assert_eq(dp_shard_fetch(&shard, h, 0, f, 1), -ESTALE);
        cr_assert_eq(dp_shard_ack(&shard, h, 0), -ESTALE);
        cr_assert_eq(dp_shard_read(&shard, h, 0, f, 1), -ESTALE);
        cr_assert_eq(dp_shard_commit(&shard, h, "g", 0), -ESTALE);
        cr_assert_eq(dp_shard_cursor(&shard, h, "g", &off), -ESTALE);
        cr_assert_eq(dp_shard_bind(&shard, h, &w), -ESTALE);
        cr_assert_eq(dp_shard_set_ttl(&shard, h, 1), -ESTALE);
        cr_assert_eq(dp_shard_set_storage(&shard, h, DP_STORAGE_NONE), -ESTALE);
        cr_assert_eq(dp_shard_destroy(&shard, h), -ESTALE);
}

/* Found in review: the key's current value must survive a refused send. */
Test(dp_atom, a_refused_latest_value_keeps_the_current_one)
{
        uint64_t h = entity((struct dp_create_opts){ .mode = DP_MODE_LATEST, .max_bytes = 200 },
                            "kv.capped");
        struct dp_msg_in v1 = { .subject = "kv.k", .subject_len = 4, .payload = "v1",
                                .payload_len = 2, .storage = -1 };
        static char big[300];
        memset(big, 'x', sizeof(big));
        struct dp_msg_in v2 = v1;
        v2.payload = big;
        v2.payload_len = sizeof(big);
        struct dp_fetched f;
        cr_assert_eq(dp_shard_send(&shard, h, &v1, NULL), 0);
        cr_assert_eq(dp_shard_send(&shard, h, &v2, NULL), -ENOBUFS);
        cr_assert_eq(dp_shard_get(&shard, h, "kv.k", 4, &f), 0, "v1 is still the value");
        cr_assert_str_eq(payload_of(f.buf), "v1");
        shm_slab_put(&shard.bufs, f.buf);
        struct dp_msg_in v3 = v1;
        v3.payload = "v3";
        cr_assert_eq(dp_shard_send(&shard, h, &v3, NULL), 0, "a fitting value replaces it");
        cr_assert_eq(dp_shard_get(&shard, h, "kv.k", 4, &f), 0);
        cr_assert_str_eq(payload_of(f.buf), "v3");
        shm_slab_put(&shard.bufs, f.buf);
        struct dp_entity *e;
        cr_assert_eq(dp_table_get(&shard.table, h, &e), 0);
        cr_assert_eq(e->msgs, 1);
}

Test(dp_atom, reject_can_be_chosen_over_a_modes_drop_oldest)
{
        uint64_t h;
        struct dp_create_opts o = { .mode = DP_MODE_LOG, .max_msgs = 1,
                                    .overflow = DP_OVERFLOW_REJECT };
        cr_assert_eq(dp_shard_create(&shard, &o, "log.strict", 10, &h), 0);
        struct dp_msg_in m = text("x");
        cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), 0);
        cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), -ENOBUFS, "reject, not drop-oldest");
        o.overflow = -2;
        cr_assert_eq(dp_shard_create(&shard, &o, "log.bad", 7, &h), -EINVAL);
}

Test(dp_atom, ack_is_refused_on_a_log)
{
        uint64_t h = entity((struct dp_create_opts){ .mode = DP_MODE_LOG }, "log.acked");
        struct dp_msg_in m = text("entry");
        struct dp_fetched f[2];
        cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), 0);
        cr_assert_eq(dp_shard_ack(&shard, h, 0), -EOPNOTSUPP, "cursors, not acks");
        cr_assert_eq(dp_shard_read(&shard, h, 0, f, 2), 1, "the entry is still there");
        shm_slab_put(&shard.bufs, f[0].buf);
}

static uint32_t load_saturated(void *arg, uint32_t endpoint)
{
        (void)arg;
        (void)endpoint;
        return UINT32_MAX;
}

Test(dp_atom, least_loaded_picks_a_member_even_when_all_are_saturated)
{
        uint64_t h = entity((struct dp_create_opts){ .mode = DP_MODE_REQUEST, .least_loaded = true },
                            "ll.sat");
        struct dp_entity *e;
        cr_assert_eq(dp_table_get(&shard.table, h, &e), 0);
        e->routing = DP_ROUTING_GROUP;
        e->lifecycle = 0;
        e->ttl_ms = 0;
        dp_shard_set_load_fn(&shard, load_saturated, NULL);
        struct dp_bind w = { .endpoint = 5, .sid = 5, .group = 1 };
        cr_assert_eq(dp_shard_bind(&shard, h, &w), 0);
        struct dp_msg_in m = text("job");
        cr_assert_eq(dp_shard_send(&shard, h, &m, NULL), 0);
        cr_assert_eq(got_n, 1);
        cr_assert_eq(got[0].endpoint, 5);
}

Test(dp_atom, a_publish_reuses_one_buffer_until_a_party_keeps_it)
{
        uint32_t sub;
        cr_assert_eq(dp_shard_subscribe(&shard, "reuse.a", 7, 0, 7, 1, 0, &sub), 0);
        struct dp_msg_in m = text("hello");
        m.subject = "reuse.a";
        m.subject_len = 7;
        uint64_t pooled = 0;
        for (int i = 0; i < 100; i++) {
                cr_assert_eq(dp_shard_publish(&shard, &m), 1);
                pooled = 0;
                for (unsigned c = 0; c < shard.bufs.class_count; c++)
                        pooled += shm_pool_in_use(&shard.bufs.pools[c]);
                cr_assert_eq(pooled, 1, "publish %d: one buffer, reused", i);
        }
        /* A mailbox fed by the subject keeps each message: every publish
         * then needs a buffer of its own, and none is overwritten. */
        uint64_t box = entity((struct dp_create_opts){ .mode = DP_MODE_MAILBOX }, "reuse.box");
        cr_assert_eq(dp_shard_subscribe(&shard, "reuse.a", 7, 0, 0, 0, box, &sub), 0);
        const char *words[] = { "one", "two", "three" };
        for (int i = 0; i < 3; i++) {
                struct dp_msg_in w = text(words[i]);
                w.subject = "reuse.a";
                w.subject_len = 7;
                cr_assert_eq(dp_shard_publish(&shard, &w), 2);
        }
        cr_assert_eq(bufs_in_use(), 3, "the mailbox holds three");
        struct dp_fetched f[4];
        cr_assert_eq(dp_shard_fetch(&shard, box, 0, f, 4), 3);
        for (int i = 0; i < 3; i++) {
                struct dp_msg_view v;
                cr_assert_eq(dp_shard_msg_view(&shard, f[i].buf, &v), 0);
                cr_expect_eq(v.payload_len, strlen(words[i]));
                cr_expect_eq(memcmp(v.payload, words[i], v.payload_len), 0, "message %d intact", i);
                shm_slab_put(&shard.bufs, f[i].buf);
        }
        dp_shard_publish_buf_release(&shard);
        cr_expect_eq(shard.publish_buf, SHM_BUF_NONE);
}
