/* test_dp_table.c - entity tables: handles and generations, names and the
 * index, full tables, stale handles, and churn that must leak nothing. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/dp_subject.h"
#include "dataplane/dp_table.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

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

/* The room of destroyed long names serves short ones: a free block larger
 * than asked for is split when its own list and the top are empty. Blocks
 * are never merged, so short free blocks cannot make a long name fit. */
Test(dp_table, freed_long_names_are_split_for_short_ones)
{
        uint64_t big, h[8];
        char long_name[200];
        memset(long_name, 'n', sizeof(long_name) - 1);
        long_name[sizeof(long_name) - 1] = '\0';
        table_new(32, 16, 0);      /* 16 units of names, slots to spare */
        cr_assert_eq(create_named(long_name, &big), 0);   /* 13 units */
        char name[16];
        for (int i = 0; i < 3; i++) {                     /* 3 x 1 unit: full */
                snprintf(name, sizeof(name), "s%d", i);
                cr_assert_eq(create_named(name, &h[i]), 0);
        }
        cr_assert_eq(create_named("one.more", &h[3]), -ENOSPC);
        cr_assert_eq(dp_table_destroy(&table, big), 0);
        cr_assert_eq(table.names.hdr->used, 3);
        /* 13 free units: a 2-unit name, then eleven 1-unit names, each cut
         * from what the split before left. */
        cr_assert_eq(create_named("a.name.of.twenty.bytes", &h[3]), 0);
        int made = 0;
        for (int i = 0; i < 20; i++) {
                snprintf(name, sizeof(name), "t%d", i);
                uint64_t t;
                if (create_named(name, &t) != 0)
                        break;
                made++;
        }
        cr_assert_eq(made, 11, "every freed unit reused: %d", made);
        cr_assert_eq(table.names.hdr->used, 16);
        /* 13 -> 2 + 11, then each 1-unit name splits what is left, down to
         * a 2-unit block cut into two: 1 + 10 splits, the last name pops. */
        cr_assert_eq(table.names.hdr->splits, 11);
        cr_assert_eq(create_named("t99", &h[4]), -ENOSPC);
        /* Free one-unit blocks do not merge into room for a long name. */
        for (int i = 0; i < 3; i++)
                cr_assert_eq(dp_table_destroy(&table, h[i]), 0);
        cr_assert_eq(create_named(long_name + 150, &h[5]), -ENOSPC, "4 units from 1-unit blocks");
        cr_assert_eq(create_named("s9", &h[5]), 0);
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

/* dp_table_destroy_burst answers each handle as dp_table_destroy would,
 * called in order: a repeat is stale the second time, a foreign or out of
 * range handle is refused, an anonymous entity goes too. */
Test(dp_table, burst_destroy_reports_each_handle)
{
        uint64_t h[4], anon, handles[9];
        int rcs[9];
        char name[16];
        table_new(8, 0, 2);
        for (int i = 0; i < 4; i++) {
                snprintf(name, sizeof(name), "d.%d", i);
                cr_assert_eq(create_named(name, &h[i]), 0);
        }
        cr_assert_eq(dp_table_create(&table, &proto, NULL, 0, &anon), 0);
        cr_assert_eq(dp_table_destroy(&table, h[3]), 0);        /* h[3] is stale now */
        handles[0] = h[0];
        handles[1] = h[1];
        handles[2] = h[0];                           /* repeat: stale by then */
        handles[3] = dp_handle_make(5, 2, 1);        /* another shard's */
        handles[4] = dp_handle_make(2, 8, 1);        /* slot out of range */
        handles[5] = h[3];                           /* destroyed before */
        handles[6] = anon;
        handles[7] = DP_HANDLE_NONE;
        handles[8] = h[2];
        cr_assert_eq(dp_table_destroy_burst(&table, handles, 9, rcs), 4);
        int want[9] = { 0, 0, -ESTALE, -EXDEV, -EINVAL, -ESTALE, 0, -EXDEV, 0 };
        for (int i = 0; i < 9; i++)
                cr_assert_eq(rcs[i], want[i], "handle %d: %d, not %d", i, rcs[i], want[i]);
        cr_assert_eq(table.hdr->live, 0);
        cr_assert_eq(table.hdr->destroys, 5);
        cr_assert_eq(table.index.count, 0);
        cr_assert_eq(table.names.hdr->used, 0, "every name unit returned");
        uint64_t found;
        cr_assert_eq(dp_table_find(&table, "d.1", 3, &found), -ENOENT);
        cr_assert_eq(dp_table_destroy_burst(&table, handles, 0, rcs), 0, "an empty burst");
        table_free();
}

/* Bursts longer than the pipeline inside them, with bad entries spread
 * through, leave the table exactly as one call at a time would. */
Test(dp_table, long_bursts_match_single_calls)
{
        enum { N = 300 };
        static char buf[N][24];
        static struct dp_name names[N];
        static uint64_t handles[N], order[N];
        static int rcs[N];
        table_new(N, 0, 0);
        uint32_t valid = 0;
        for (int i = 0; i < N; i++) {
                snprintf(buf[i], sizeof(buf[i]), i % 37 == 5 ? "bad..%d" : "long.%d.x", i);
                names[i] = (struct dp_name){ buf[i], (uint32_t)strlen(buf[i]) };
                valid += i % 37 != 5;
        }
        names[200] = names[100];        /* a duplicate far from its first */
        valid--;
        cr_assert_eq(dp_table_create_burst(&table, &proto, names, N, handles, rcs), valid);
        for (int i = 0; i < N; i++) {
                int want = i % 37 == 5 ? -EINVAL : i == 200 ? -EEXIST : 0;
                cr_assert_eq(rcs[i], want, "name %d", i);
                uint64_t h;
                if (want == 0) {
                        cr_assert_eq(dp_table_find(&table, names[i].s, names[i].len, &h), 0);
                        cr_assert_eq(h, handles[i]);
                }
        }
        /* Destroy the live ones in a scrambled order (7 is prime to N),
         * followed by the first of them again: those must be stale. */
        uint32_t m = 0;
        for (int i = 0; i < N; i++)
                if (rcs[(i * 7) % N] == 0)
                        order[m++] = handles[(i * 7) % N];
        cr_assert_eq(m, valid);
        uint32_t k = m;
        while (k < N)
                order[k] = order[k - m], k++;
        cr_assert_eq(dp_table_destroy_burst(&table, order, N, rcs), valid);
        for (uint32_t i = 0; i < N; i++)
                cr_assert_eq(rcs[i], i < m ? 0 : -ESTALE, "handle %u", i);
        cr_assert_eq(table.hdr->live, 0);
        cr_assert_eq(table.index.count, 0);
        table_free();
}

/* Every name length, and names that differ in one byte only: the copy into
 * the name heap and the compares of the index's probes are exact. */
Test(dp_table, names_of_every_length_round_trip)
{
        static char names[DP_NAME_MAX + 1][DP_NAME_MAX + 1];
        uint64_t h[DP_NAME_MAX + 1], found;
        table_new(2 * DP_NAME_MAX + 8, 4096, 0);     /* every length: ~2,100 units */
        for (uint32_t len = 1; len <= DP_NAME_MAX; len++) {
                for (uint32_t i = 0; i < len; i++)
                        names[len][i] = (char)('a' + (i * 7 + len) % 26);
                cr_assert_eq(dp_table_create(&table, &proto, names[len], len, &h[len]), 0,
                             "length %u", len);
        }
        for (uint32_t len = 1; len <= DP_NAME_MAX; len++) {
                cr_assert_eq(dp_table_find(&table, names[len], len, &found), 0);
                cr_assert_eq(found, h[len]);
                struct dp_entity *e;
                uint32_t got;
                cr_assert_eq(dp_table_get(&table, found, &e), 0);
                const char *stored = dp_table_name(&table, e, &got);
                cr_assert_eq(got, len);
                cr_assert_eq(memcmp(stored, names[len], len), 0, "length %u", len);
                /* The same length, one byte off: first, middle or last. */
                char other[DP_NAME_MAX + 1];
                uint32_t at[3] = { 0, len / 2, len - 1 };
                for (int k = 0; k < 3; k++) {
                        memcpy(other, names[len], len);
                        other[at[k]] = 'Z';
                        cr_assert_eq(dp_table_find(&table, other, len, &found), -ENOENT,
                                     "length %u, byte %u", len, at[k]);
                }
        }
        uint32_t used = table.names.hdr->used;
        for (uint32_t len = 1; len <= DP_NAME_MAX; len++)
                cr_assert_eq(dp_table_destroy(&table, h[len]), 0);
        cr_assert_eq(table.names.hdr->used, 0, "%u units before", used);
        table_free();
}

/* The table takes exactly the names dp_subject_check takes, including the
 * ones its quick path sends to the full check. */
Test(dp_table, names_follow_the_subject_rules)
{
        const char *names[] = {
                "a", "a.b", "x#y", "x(y", "what?", "til~de", "caf\xc3\xa9.eu", "a.b.c.d",
                "a*", ">a", "a.>", "*", "a\x7f", "a\x01", "a b", ".a", "a.", "a..b",
                "0123456789012345678901234567890123456789012345678901234567890123",
                "0123456789.123456789.123456789.123456789.123456789.123456789.1234",
                "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.0.1.2.3.4.5",
                "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.0.1.2.3.4.5.6",
        };
        table_new(64, 0, 0);
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                uint32_t len = (uint32_t)strlen(names[i]);
                uint64_t h;
                int want = dp_subject_check(names[i], len, false) == 0 ? 0 : -EINVAL;
                cr_assert_eq(dp_table_create(&table, &proto, names[i], len, &h), want,
                             "name '%s'", names[i]);
                struct dp_name nm = { names[i], len };
                int rc;
                uint64_t again;
                dp_table_create_burst(&table, &proto, &nm, 1, &again, &rc);
                cr_assert_eq(rc, want == 0 ? -EEXIST : -EINVAL, "burst, name '%s'", names[i]);
        }
        table_free();
}

/* A table attached again after churn finds what was live and keeps
 * working; a table of another layout version is refused. */
Test(dp_table, attach_after_churn_finds_the_live_entities)
{
        uint64_t h[64], found;
        char name[16];
        struct dp_table again;
        table_new(64, 0, 1);
        for (int i = 0; i < 64; i++) {
                snprintf(name, sizeof(name), "att.%d", i);
                cr_assert_eq(create_named(name, &h[i]), 0);
        }
        for (int i = 0; i < 64; i += 3)
                cr_assert_eq(dp_table_destroy(&table, h[i]), 0);
        struct dp_table_config cfg = { .shard = 1, .capacity = 64 };
        size_t len = dp_table_bytes(&cfg);
        /* The slots ever taken: all 64. A header that says fewer (written
         * before the field, or cut short by a crash) is raised to the
         * highest live slot at attach. */
        cr_assert_eq(table.hdr->top, 64);
        uint32_t highest = 0;
        for (uint32_t i = 0; i < 64; i++)
                if (table.slots[i].flags & DP_ENT_F_LIVE)
                        highest = i + 1;
        cr_assert_gt(highest, 3);
        table.hdr->top = 3;
        cr_assert_eq(dp_table_attach(&again, table_mem, len), 0);
        cr_assert_eq(again.hdr->top, highest, "raised to the highest live slot");
        cr_assert_eq(again.index.count, table.index.count);
        for (int i = 0; i < 64; i++) {
                snprintf(name, sizeof(name), "att.%d", i);
                int rc = dp_table_find(&again, name, (uint32_t)strlen(name), &found);
                cr_assert_eq(rc, i % 3 == 0 ? -ENOENT : 0, "name %s", name);
                if (rc == 0)
                        cr_assert_eq(found, h[i]);
        }
        cr_assert_eq(dp_table_create(&again, &proto, "att.0", 5, &h[0]), 0, "reuses a slot");
        /* An index entry whose slot lies outside the table. */
        uint32_t *entry = NULL;
        for (uint32_t i = 0; entry == NULL && i <= again.index.gmask; i++)
                for (unsigned k = 0; entry == NULL && k < DP_INDEX_GROUP_KEYS; k++)
                        if (again.index.g[i].tag[k] != 0)
                                entry = &again.index.g[i].slot[k];
        cr_assert_not_null(entry);
        uint32_t slot = *entry;
        *entry = 64;
        cr_assert_eq(dp_table_attach(&again, table_mem, len), -EBADMSG);
        *entry = slot;
        again.hdr->version = DP_TABLE_VERSION - 1;
        cr_assert_eq(dp_table_attach(&again, table_mem, len), -EPROTO);
        table_free();
}

/* The index on its own, with hashes chosen to pile keys into one home
 * group: keys overflow into the groups after it, every one stays findable
 * while others come and go, and the overflow counts return to 0. */
static bool index_eq_slot(void *arg, uint32_t slot)
{
        return *(const uint32_t *)arg == slot;
}

static uint64_t index_hash(uint32_t home, uint32_t key)
{
        return (uint64_t)home << 32 | (key * 2654435761u & 0xffff0000u) | (key & 0xffff);
}

Test(dp_index, overflowing_groups_stay_exact)
{
        enum { KEYS = 200 };
        struct dp_index ix;
        size_t len = dp_index_bytes(KEYS);
        void *mem = aligned_alloc(64, len);
        cr_assert_not_null(mem);
        cr_assert_eq(dp_index_init(&ix, mem, len, KEYS), 0);
        uint32_t home = ix.gmask;       /* the last group: overflow wraps to 0 */
        bool in[KEYS] = { false };
        srand(11);
        for (int step = 0; step < 20000; step++) {
                uint32_t key = (uint32_t)rand() % KEYS;
                /* Most keys share one home group; some have homes of their
                 * own nearby, so chains cross other keys' homes. */
                uint32_t kh = key % 4 == 0 ? (home + key / 4) & ix.gmask : home;
                uint64_t hash = index_hash(kh, key);
                uint64_t at = 0;
                int64_t got = dp_index_probe(&ix, hash, index_eq_slot, &key, &at);
                if (!in[key]) {
                        cr_assert_eq(got, -ENOENT, "key %u", key);
                        cr_assert_eq(dp_index_insert_at(&ix, at, hash, key), 0);
                } else {
                        cr_assert_eq(got, key, "key %u", key);
                        cr_assert_eq(dp_index_remove(&ix, hash, key), 0);
                        cr_assert_eq(dp_index_remove(&ix, hash, key), -ENOENT);
                }
                in[key] = !in[key];
        }
        for (uint32_t key = 0; key < KEYS; key++) {
                uint32_t kh = key % 4 == 0 ? (home + key / 4) & ix.gmask : home;
                uint64_t hash = index_hash(kh, key);
                cr_assert_eq(dp_index_find(&ix, hash, index_eq_slot, &key),
                             in[key] ? (int64_t)key : -ENOENT);
                if (in[key])
                        cr_assert_eq(dp_index_remove(&ix, hash, key), 0);
        }
        cr_assert_eq(ix.count, 0);
        for (uint32_t g = 0; g <= ix.gmask; g++)
                cr_assert_eq(ix.g[g].overflow, 0, "group %u", g);
        free(mem);
}

/* dp_table_find_burst answers each name as dp_table_find would, over a
 * burst longer than its pipeline, with absent and unusable names mixed in. */
Test(dp_table, burst_find_reports_each_name)
{
        enum { N = 300 };
        static char buf[N][24];
        static struct dp_name names[N];
        static uint64_t handles[N], found[N];
        static int rcs[N];
        char toolong[DP_NAME_MAX + 1];
        memset(toolong, 'x', sizeof(toolong));
        table_new(N, 0, 4);
        for (int i = 0; i < N; i++) {
                snprintf(buf[i], sizeof(buf[i]), "find.%d", i);
                names[i] = (struct dp_name){ buf[i], (uint32_t)strlen(buf[i]) };
        }
        cr_assert_eq(dp_table_create_burst(&table, &proto, names, N, handles, rcs), N);
        for (int i = 0; i < N; i += 3)
                cr_assert_eq(dp_table_destroy(&table, handles[i]), 0);
        names[10] = (struct dp_name){ NULL, 3 };
        names[11] = (struct dp_name){ buf[11], 0 };
        names[12] = (struct dp_name){ toolong, sizeof(toolong) };
        names[13] = names[14];                          /* found twice */
        uint32_t want_found = 0;
        for (int i = 0; i < N; i++)
                want_found += i % 3 != 0 && (i < 10 || i > 12);
        cr_assert_eq(dp_table_find_burst(&table, names, N, found, rcs), want_found);
        for (int i = 0; i < N; i++) {
                bool gone = i % 3 == 0 || (i >= 10 && i <= 12);
                cr_assert_eq(rcs[i], gone ? -ENOENT : 0, "name %d", i);
                if (!gone)
                        cr_assert_eq(found[i], handles[i == 13 ? 14 : i], "name %d", i);
        }
        cr_assert_eq(dp_table_find_burst(&table, names, 0, found, rcs), 0, "an empty burst");
        table_free();
}

/* A dataplane killed in the middle of a destroy runs it again after its
 * restart. Killed after the name left the index but before the slot was
 * freed, the replay must finish the destroy, not abort. */
Test(dp_table, a_destroy_replayed_after_a_crash_mid_way_completes)
{
        uint64_t h, other;
        table_new(8, 0, 0);
        cr_assert_eq(create_named("crash.victim", &h), 0);
        cr_assert_eq(create_named("crash.bystander", &other), 0);
        /* What the killed dataplane did of the destroy: the index entry. */
        struct dp_entity *e;
        cr_assert_eq(dp_table_get(&table, h, &e), 0);
        uint32_t len;
        const char *name = dp_table_name(&table, e, &len);
        cr_assert_eq(dp_index_remove(&table.index, XXH3_64bits(name, len), dp_handle_slot(h)), 0);

        cr_assert_eq(dp_table_destroy(&table, h), 0, "the replay finishes");
        cr_assert_eq(dp_table_get(&table, h, &e), -ESTALE);
        cr_assert_eq(dp_table_destroy(&table, h), -ESTALE, "and a second replay is refused");
        cr_assert_eq(table.hdr->live, 1);
        uint64_t found;
        cr_assert_eq(dp_table_find(&table, "crash.bystander", 15, &found), 0);
        cr_assert_eq(found, other);
        cr_assert_eq(create_named("crash.victim", &h), 0, "the name can be taken again");
        table_free();
}
