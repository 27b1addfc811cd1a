/* dp_groups.h - which workers' shards hold members of each queue group of
 * network clients, so that a publish fanned out to every shard reaches one
 * member of the group, not one per shard.
 *
 * A NATS client's subscription lives in its own worker's shard; members of
 * one queue group may so sit on several shards, and every shard matches
 * every publish. Each shard counts its members here (one writer per
 * (group, worker) count: that worker), and before serving a group a shard
 * asks dp_groups_serve: of the shards that hold members, the one picked by
 * a hash of the message's id (the same on every shard: the publishing
 * worker stamps it, dp_msg_in.pub_id) serves it; the others skip it.
 *
 * Process-local (the workers are threads of one process; a dataplane
 * restart ends every network connection, and with them these counts).
 * Bounded: DP_GROUPS_MAX groups; a group that finds the table full is not
 * gated (each shard serves it, as before) and counted.
 */
#ifndef ATOMQ_DP_GROUPS_H
#define ATOMQ_DP_GROUPS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "dataplane/dp_worker.h"

#define DP_GROUPS_MAX 4096u

struct dp_group_slot {
        _Atomic uint32_t group;            /* 0: free */
        _Atomic uint64_t shards;           /* bit i: shard i holds members */
        uint32_t count[DP_WORKERS_MAX];    /* members on shard i: written by worker i only */
};

struct dp_groups {
        struct dp_group_slot slot[DP_GROUPS_MAX];
        _Atomic uint64_t full;             /* groups that found no slot */
};

/* A member of group joined (delta 1) or left (delta -1) shard's shard. */
void dp_groups_member(struct dp_groups *g, uint32_t group, uint32_t shard, int delta);

/* Does shard serve group for the message with pub_id (0: not gated)? */
bool dp_groups_serve(const struct dp_groups *g, uint32_t group, uint32_t shard, uint64_t pub_id);

#endif /* ATOMQ_DP_GROUPS_H */
