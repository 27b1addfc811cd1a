/* dp_index.c - the name index's sizing, formatting and attaching; the
 * probes are inline in dp_index.h. */
#include "dataplane/dp_index.h"

#include <errno.h>
#include <string.h>

/* Sized as the linear-probing index that came before it: 8-byte buckets, a
 * power of two at or above max_keys / 0.7, so the bytes stay the same. */
#define DP_INDEX_GROUP_BUCKETS 8u
#define DP_INDEX_GROUPS_MAX (1ull << 29)

uint64_t dp_index_groups(uint32_t max_keys)
{
        uint64_t need = (uint64_t)max_keys * 10 / 7 + 1;
        uint64_t b = DP_INDEX_GROUP_BUCKETS;
        while (b < need)
                b <<= 1;
        return b / DP_INDEX_GROUP_BUCKETS;
}

size_t dp_index_bytes(uint32_t max_keys)
{
        if (max_keys == 0)
                return 0;
        uint64_t groups = dp_index_groups(max_keys);
        if (groups > DP_INDEX_GROUPS_MAX)
                return 0;
        return (size_t)groups * sizeof(struct dp_index_group);
}

static int dp_index_setup(struct dp_index *ix, void *mem, size_t len, uint32_t max_keys)
{
        size_t bytes = dp_index_bytes(max_keys);
        if (bytes == 0 || (uintptr_t)mem % SHM_CACHE_LINE != 0)
                return -EINVAL;
        if (len < bytes)
                return -ENOSPC;
        ix->g = mem;
        ix->gmask = (uint32_t)(dp_index_groups(max_keys) - 1);
        ix->max_keys = max_keys;
        ix->count = 0;
        return 0;
}

int dp_index_init(struct dp_index *ix, void *mem, size_t len, uint32_t max_keys)
{
        int rc = dp_index_setup(ix, mem, len, max_keys);
        if (rc == 0)
                memset(mem, 0, dp_index_bytes(max_keys));
        return rc;
}

int dp_index_attach(struct dp_index *ix, void *mem, size_t len, uint32_t max_keys)
{
        int rc = dp_index_setup(ix, mem, len, max_keys);
        if (rc != 0)
                return rc;
        /* The slots become array indexes in the caller's compares: one a
         * dataplane that died mid-write left out of range is refused here. */
        for (uint64_t i = 0; i <= ix->gmask; i++) {
                for (unsigned k = 0; k < DP_INDEX_GROUP_KEYS; k++) {
                        if (ix->g[i].tag[k] == 0)
                                continue;
                        if (ix->g[i].slot[k] >= max_keys)
                                return -EBADMSG;
                        ix->count++;
                }
        }
        return 0;
}
