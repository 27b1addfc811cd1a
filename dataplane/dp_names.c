/* dp_names.c - the compact heap of entity names (see dp_names.h). */
#include "dataplane/dp_names.h"

#include <errno.h>
#include <string.h>

static uint32_t dp_names_units_for(uint32_t len)
{
        return (len + 1 + DP_NAME_UNIT_BYTES - 1) / DP_NAME_UNIT_BYTES;
}

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

static uint8_t *dp_names_unit(const struct dp_names *n, uint32_t unit)
{
        return n->units + (size_t)unit * DP_NAME_UNIT_BYTES;
}

int dp_names_alloc(struct dp_names *n, const char *s, uint32_t len, uint32_t *ref)
{
        if (len == 0 || len > DP_NAME_MAX)
                return -EINVAL;
        struct dp_names_hdr *h = n->hdr;
        uint32_t size = dp_names_units_for(len);
        uint32_t unit;
        uint32_t head = h->free_head[size - 1];

        if (head != 0) {
                unit = head - 1;
                DP_ASSERT(unit + size <= n->unit_count);
                uint32_t next;
                memcpy(&next, dp_names_unit(n, unit), sizeof(next));
                h->free_head[size - 1] = next;
        } else {
                if (n->unit_count - h->top < size)
                        return -ENOSPC;
                unit = h->top;
                h->top += size;
        }
        uint8_t *b = dp_names_unit(n, unit);
        b[0] = (uint8_t)len;
        memcpy(b + 1, s, len);
        h->used += size;
        *ref = unit;
        return 0;
}

const char *dp_names_get(const struct dp_names *n, uint32_t ref, uint32_t *len)
{
        if (ref >= n->unit_count)
                return NULL;
        const uint8_t *b = dp_names_unit(n, ref);
        uint32_t l = b[0];
        /* A reader in another process may see a block being rewritten: the
         * length it reads must still keep it inside the heap. */
        if (l == 0 || ref + dp_names_units_for(l) > n->unit_count)
                return NULL;
        *len = l;
        return (const char *)b + 1;
}

int dp_names_free(struct dp_names *n, uint32_t ref)
{
        uint32_t len;
        if (dp_names_get(n, ref, &len) == NULL)
                return -EINVAL;
        uint32_t size = dp_names_units_for(len);
        uint8_t *b = dp_names_unit(n, ref);
        struct dp_names_hdr *h = n->hdr;
        memcpy(b, &h->free_head[size - 1], sizeof(uint32_t));
        h->free_head[size - 1] = ref + 1;
        h->used -= size;
        return 0;
}
