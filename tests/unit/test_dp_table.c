/* test_dp_table.c - entity tables: handles and generations, names and the
 * index, full tables, stale handles, and churn that must leak nothing. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/dp_table.h"

static struct dp_table table;
static void *table_mem;
static const struct dp_entity proto = { .storage = DP_STORAGE_MEM, .routing = DP_ROUTING_DIRECT };

static void table_new(uint32_t capacity, uint32_t name_units, uint32_t shard)
{
        struct dp_table_config cfg = { .shard = shard, .capacity = capacity,
                                       .name_units = name_units };
        size_t len = dp_table_bytes(&cfg);
        cr_assert_gt(len, 0);
        table_mem = aligned_alloc(64, (len + 63) & ~(size_t)63);
        cr_assert_not_null(table_mem);
        cr_assert_eq(dp_table_init(&table, table_mem, len, &cfg), 0);
}

static void table_free(void)
{
        free(table_mem);
}

static int create_named(const char *name, uint64_t *h)
{
        return dp_table_create(&table, &proto, name, (uint32_t)strlen(name), h);
}

Test(dp_table, refuses_bad_configs)
{
        struct dp_table_config cfg = { .capacity = 0 };
        cr_assert_eq(dp_table_bytes(&cfg), 0);
        cfg.capacity = DP_TABLE_CAPACITY_MAX + 1;
        cr_assert_eq(dp_table_bytes(&cfg), 0);
        cfg.capacity = 8;
        cfg.shard = DP_SHARDS_MAX;
        cr_assert_eq(dp_table_bytes(&cfg), 0);
        cfg.shard = 0;
        uint8_t small[64] __attribute__((aligned(64)));
        cr_assert_eq(dp_table_init(&table, small, sizeof(small), &cfg), -ENOSPC);
}

Test(dp_table, create_find_get_destroy)
{
        uint64_t h, found;
        struct dp_entity *e;
        table_new(16, 0, 3);
        cr_assert_eq(create_named("orders.eu", &h), 0);
        cr_assert_eq(dp_handle_shard(h), 3);
        cr_assert_eq(dp_table_find(&table, "orders.eu", 9, &found), 0);
        cr_assert_eq(found, h);
        cr_assert_eq(dp_table_get(&table, h, &e), 0);
        cr_assert_eq(e->storage, DP_STORAGE_MEM);
        uint32_t len;
        const char *name = dp_table_name(&table, e, &len);
        cr_assert_eq(len, 9);
        cr_assert_eq(memcmp(name, "orders.eu", 9), 0);
        cr_assert_eq(table.hdr->live, 1);
        cr_assert_eq(dp_table_destroy(&table, h), 0);
        cr_assert_eq(table.hdr->live, 0);
        cr_assert_eq(dp_table_find(&table, "orders.eu", 9, &found), -ENOENT);
        cr_assert_eq(table.hdr->creates, 1);
        cr_assert_eq(table.hdr->destroys, 1);
        table_free();
}

Test(dp_table, stale_handle_is_estale_after_destroy_and_reuse)
{
        uint64_t old, fresh;
        struct dp_entity *e;
        table_new(1, 0, 0);
        cr_assert_eq(create_named("a", &old), 0);
        cr_assert_eq(dp_table_destroy(&table, old), 0);
        cr_assert_eq(dp_table_get(&table, old, &e), -ESTALE);
        cr_assert_eq(dp_table_destroy(&table, old), -ESTALE, "double destroy");
        cr_assert_eq(create_named("b", &fresh), 0);
        cr_assert_eq(dp_handle_slot(fresh), dp_handle_slot(old), "the one slot is reused");
        cr_assert_neq(fresh, old);
        cr_assert_eq(dp_table_get(&table, old, &e), -ESTALE, "old handle never reaches b");
        cr_assert_eq(dp_table_destroy(&table, old), -ESTALE);
        cr_assert_eq(dp_table_get(&table, fresh, &e), 0);
        table_free();
}

Test(dp_table, foreign_and_out_of_range_handles_are_refused)
{
        struct dp_entity *e;
        table_new(4, 0, 1);
        cr_assert_eq(dp_table_get(&table, dp_handle_make(2, 0, 1), &e), -EXDEV);
        cr_assert_eq(dp_table_get(&table, dp_handle_make(1, 4, 1), &e), -EINVAL);
        cr_assert_eq(dp_table_get(&table, DP_HANDLE_NONE, &e), -EXDEV);
        cr_assert_eq(dp_table_get(&table, dp_handle_make(1, 0, 1), &e), -ESTALE, "free slot");
        table_free();
}

Test(dp_table, duplicate_and_invalid_names_are_refused)
{
        uint64_t h;
        table_new(8, 0, 0);
        cr_assert_eq(create_named("x.y", &h), 0);
        cr_assert_eq(create_named("x.y", &h), -EEXIST);
        const char *bad[] = { "", "x..y", ".x", "x.", "x y", "x.*", "x.>", "a\tb" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                cr_assert_eq(create_named(bad[i], &h), -EINVAL, "name '%s'", bad[i]);
        cr_assert_eq(table.hdr->live, 1, "nothing created by a refusal");
        table_free();
}

Test(dp_table, full_table_is_enospc_and_recovers)
{
        uint64_t h[4], extra;
        char name[16];
        table_new(4, 0, 0);
        for (int i = 0; i < 4; i++) {
                snprintf(name, sizeof(name), "m.%d", i);
                cr_assert_eq(create_named(name, &h[i]), 0);
        }
        cr_assert_eq(create_named("m.4", &extra), -ENOSPC);
        cr_assert_eq(dp_table_create(&table, &proto, NULL, 0, &extra), -ENOSPC);
        cr_assert_eq(dp_table_destroy(&table, h[2]), 0);
        cr_assert_eq(create_named("m.4", &extra), 0);
        cr_assert_eq(dp_table_find(&table, "m.0", 3, &h[0]), 0, "others untouched");
        table_free();
}

Test(dp_table, full_name_heap_is_enospc_and_leaks_no_slot)
{
        uint64_t h;
        char long_name[200];
        memset(long_name, 'n', sizeof(long_name) - 1);
        long_name[sizeof(long_name) - 1] = '\0';
        table_new(8, 16, 0);       /* 16 units = 256 bytes of names */
        cr_assert_eq(create_named(long_name, &h), 0);   /* 13 units */
        cr_assert_eq(create_named(long_name + 100, &h), -ENOSPC, "7 units don't fit in 3");
        cr_assert_eq(table.hdr->live, 1);
        cr_assert_eq(table.hdr->creates, 1);
        cr_assert_eq(create_named("short", &h), 0, "a small one still fits");
        table_free();
}

Test(dp_table, anonymous_entities_have_only_a_handle)
{
        uint64_t h;
        struct dp_entity *e;
        uint32_t len;
        table_new(4, 0, 0);
        cr_assert_eq(dp_table_create(&table, &proto, NULL, 0, &h), 0);
        cr_assert_eq(dp_table_get(&table, h, &e), 0);
        cr_assert_null(dp_table_name(&table, e, &len));
        cr_assert_eq(dp_table_destroy(&table, h), 0);
        table_free();
}

Test(dp_table, burst_create_reports_each_name)
{
        struct dp_name names[40];
        char buf[40][16];
        uint64_t handles[40];
        int rcs[40];
        table_new(64, 0, 0);
        for (int i = 0; i < 40; i++) {
                snprintf(buf[i], sizeof(buf[i]), "burst.%d", i);
                names[i] = (struct dp_name){ buf[i], (uint32_t)strlen(buf[i]) };
        }
        names[7] = (struct dp_name){ "bad..name", 9 };
        names[20] = names[3];   /* duplicate of an earlier one in the burst */
        cr_assert_eq(dp_table_create_burst(&table, &proto, names, 40, handles, rcs), 38);
        cr_assert_eq(rcs[7], -EINVAL);
        cr_assert_eq(rcs[20], -EEXIST);
        uint64_t h;
        cr_assert_eq(dp_table_find(&table, "burst.39", 8, &h), 0);
        cr_assert_eq(h, handles[39]);
        table_free();
}

/* Random create/destroy against a shadow array: after every step the index
 * must find exactly the live names (backward-shift deletion is the part a
 * wrong condition would break). */
Test(dp_table, random_churn_keeps_index_and_names_exact)
{
        enum { CAP = 512, STEPS = 200000 };
        static uint64_t live[CAP];
        char name[32];
        uint64_t h;
        srand(7);
        table_new(CAP, 0, 0);
        memset(live, 0, sizeof(live));
        for (int s = 0; s < STEPS; s++) {
                int k = rand() % CAP;
                snprintf(name, sizeof(name), "churn.%d.%d", k, k * 7919);
                if (live[k] == 0) {
                        cr_assert_eq(create_named(name, &live[k]), 0);
                } else {
                        cr_assert_eq(dp_table_find(&table, name, (uint32_t)strlen(name), &h), 0);
                        cr_assert_eq(h, live[k]);
                        cr_assert_eq(dp_table_destroy(&table, live[k]), 0);
                        live[k] = 0;
                        cr_assert_eq(dp_table_find(&table, name, (uint32_t)strlen(name), &h),
                                     -ENOENT);
                }
        }
        uint32_t n = 0;
        for (int k = 0; k < CAP; k++) {
                snprintf(name, sizeof(name), "churn.%d.%d", k, k * 7919);
                int rc = dp_table_find(&table, name, (uint32_t)strlen(name), &h);
                cr_assert_eq(rc, live[k] ? 0 : -ENOENT, "name %s", name);
                n += live[k] != 0;
        }
        cr_assert_eq(table.hdr->live, n);
        cr_assert_eq(table.index.count, n);
        for (int k = 0; k < CAP; k++)
                if (live[k])
                        cr_assert_eq(dp_table_destroy(&table, live[k]), 0);
        cr_assert_eq(table.names.hdr->used, 0, "every name unit returned");
        cr_assert_eq(table.index.count, 0);
        table_free();
}

Test(dp_table, generation_wraps_without_issuing_zero)
{
        cr_assert_eq(dp_handle_gen_next(DP_HANDLE_GEN_MASK), 1);
        cr_assert_eq(dp_handle_gen_next(1), 2);
        uint64_t h = dp_handle_make(5, 123456, 77);
        cr_assert_eq(dp_handle_shard(h), 5);
        cr_assert_eq(dp_handle_slot(h), 123456);
        cr_assert_eq(dp_handle_gen(h), 77);
}
