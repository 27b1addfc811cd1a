/* test_dp_groups.c - the queue-group gate (dataplane/dp_groups.c): for each
 * publish exactly one of the shards that hold members serves a group, the
 * choice spreads over them, and members joining and leaving move it. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "dataplane/dp_groups.h"

static struct dp_groups *g;

static void setup(void)
{
        g = calloc(1, sizeof(*g));
        cr_assert_not_null(g);
}

static void teardown(void)
{
        free(g);
}

TestSuite(dp_groups, .init = setup, .fini = teardown);

/* How many of shards 0..n-1 would serve group for pub_id. */
static unsigned servers(uint32_t group, uint32_t n, uint64_t pub_id, uint32_t *which)
{
        unsigned count = 0;
        for (uint32_t s = 0; s < n; s++)
                if (dp_groups_serve(g, group, s, pub_id)) {
                        count++;
                        *which = s;
                }
        return count;
}

Test(dp_groups, one_shard_of_those_with_members_serves_each_publish)
{
        dp_groups_member(g, 77, 0, 1);
        dp_groups_member(g, 77, 2, 1);
        dp_groups_member(g, 77, 2, 1);
        unsigned per[4] = { 0 };
        for (uint64_t id = 1; id <= 4000; id++) {
                uint32_t which = 99;
                /* Shards 1 and 3 have no members: the gate lets them pass
                 * (they match none of this group), so only 0 and 2 count. */
                unsigned n = 0;
                for (uint32_t s = 0; s < 4; s += 2)
                        if (dp_groups_serve(g, 77, s, id)) {
                                n++;
                                which = s;
                        }
                cr_assert_eq(n, 1, "publish %llu served by %u shards", (unsigned long long)id, n);
                per[which]++;
        }
        cr_expect_gt(per[0], 1500, "spread: %u / %u", per[0], per[2]);
        cr_expect_gt(per[2], 1500, "spread: %u / %u", per[0], per[2]);
}

Test(dp_groups, members_leaving_move_the_choice)
{
        dp_groups_member(g, 5, 0, 1);
        dp_groups_member(g, 5, 1, 1);
        dp_groups_member(g, 5, 1, -1);
        uint32_t which = 99;
        for (uint64_t id = 1; id <= 100; id++) {
                cr_assert_eq(servers(5, 1, id, &which), 1);
                cr_assert_eq(which, 0);
        }
        cr_expect(dp_groups_serve(g, 5, 1, 3), "a shard without counted members is not gated");
        dp_groups_member(g, 5, 0, -1);
        dp_groups_member(g, 5, 0, -1); /* one too many: ignored */
        cr_expect(dp_groups_serve(g, 5, 0, 3));
}

Test(dp_groups, ungated_without_an_id_or_an_entry)
{
        dp_groups_member(g, 9, 0, 1);
        dp_groups_member(g, 9, 1, 1);
        cr_expect(dp_groups_serve(g, 9, 0, 0) && dp_groups_serve(g, 9, 1, 0), "pub_id 0");
        cr_expect(dp_groups_serve(g, 1234, 0, 42), "a group nobody counted");
}

Test(dp_groups, a_full_table_is_counted_not_fatal)
{
        for (uint32_t grp = 1; grp <= DP_GROUPS_MAX; grp++)
                dp_groups_member(g, grp, 0, 1);
        cr_expect_eq(atomic_load(&g->full), 0);
        dp_groups_member(g, DP_GROUPS_MAX + 1, 0, 1);
        cr_expect_eq(atomic_load(&g->full), 1);
        cr_expect(dp_groups_serve(g, DP_GROUPS_MAX + 1, 0, 7), "not gated");
}
