/* dp_names.c - the compact heap of entity names (see dp_names.h; the
 * per-name calls are inline there). */
#include "dataplane/dp_names.h"

#include <errno.h>
#include <string.h>

size_t dp_names_bytes(uint32_t units)
{
        if (units == 0)
                return 0;
        return sizeof(struct dp_names_hdr) + (size_t)units * DP_NAME_UNIT_BYTES;
}

int dp_names_init(struct dp_names *n, void *mem, size_t len, uint32_t units)
{
        if (units == 0 || (uintptr_t)mem % 16 != 0)
                return -EINVAL;
        if (len < dp_names_bytes(units))
                return -ENOSPC;
        struct dp_names_hdr *h = mem;
        memset(h, 0, sizeof(*h));
        h->units = units;
        h->magic = DP_NAMES_MAGIC;
        n->hdr = h;
        n->units = (uint8_t *)(h + 1);
        n->unit_count = units;
        return 0;
}

int dp_names_attach(struct dp_names *n, void *mem, size_t len)
{
        struct dp_names_hdr *h = mem;
        if (len < sizeof(*h) || h->magic != DP_NAMES_MAGIC)
                return -EPROTO;
        if (h->units == 0 || len < dp_names_bytes(h->units) || h->top > h->units)
                return -ENOSPC;
        n->hdr = h;
        n->units = (uint8_t *)(h + 1);
        n->unit_count = h->units;
        return 0;
}

int dp_names_split(struct dp_names *n, uint32_t size, uint32_t *unit)
{
        struct dp_names_hdr *h = n->hdr;
        for (uint32_t big = size + 1; big <= DP_NAME_UNITS_MAX; big++) {
                uint32_t head = h->free_head[big - 1];
                if (head == 0)
                        continue;
                uint32_t u = head - 1;
                DP_ASSERT(u + big <= n->unit_count);
                h->free_head[big - 1] = dp_names_load32(dp_names_unit(n, u));
                dp_names_push(n, u + size, big - size);
                h->splits++;
                *unit = u;
                return 0;
        }
        return -ENOSPC;
}
