/* dp_engine_pvt.h - what dp_engine.c and dp_engine_attach.c share: the
 * arena layout of a configuration and the one function that builds a
 * process's views, formatting (the creator) or attaching (a restarted
 * dataplane). Nobody else needs it. */
#ifndef ATOMQ_DP_ENGINE_PVT_H
#define ATOMQ_DP_ENGINE_PVT_H

#include <stdbool.h>

#include "dataplane/dp_engine.h"

/* Sizes and strides of the five regions for one configuration. */
struct dp_engine_layout {
        uint64_t engine_bytes;
        uint64_t shard_stride;
        uint64_t cmd_stride;
        uint64_t cpl_stride;
        uint64_t mesh_stride;
        uint64_t arena_bytes;
};

/* The layout of configuration c with n workers. -EINVAL as
 * dp_engine_init. */
int dp_engine_layout(const struct dp_engine_config *c, uint32_t n, struct dp_engine_layout *l);

/* The smallest delivery ring an agent may have: a delivery carries one
 * message of the largest size a command can. */
#define DP_AGENT_DLV_RING_BYTES_MIN (64u * 1024)

/* c's delivery ring size per agent and worker (its default when 0). */
uint32_t dp_engine_dlv_ring_bytes(const struct dp_engine_config *c);

/* Allocates the process-local views of e (e->workers and e->clients set)
 * and wires them to the regions that h describes: with format, formats
 * every ring and shard first (dp_engine_init); without, attaches to what is
 * there (dp_engine_attach). h is the creator's header, or the attacher's
 * checked copy of it. -ENOMEM, or errors of the rings' and shards' init or
 * attach functions. */
int dp_engine_views_build(struct dp_engine *e, const struct dp_engine_hdr *h,
                          const struct dp_engine_config *c, bool format);

/* Makes this process the one that runs the arena's workers: takes
 * hdr->owner_pid when it is free, ours, or names a process that no longer
 * exists (a dataplane that was killed; a zombie still counts as alive, so
 * its parent must reap it first). -EBUSY otherwise. */
int dp_engine_claim(struct dp_engine *e);

#endif /* ATOMQ_DP_ENGINE_PVT_H */
