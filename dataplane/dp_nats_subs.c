/* dp_nats_subs.c - a NATS connection's subscriptions: the table of its
 * subscriptions (the shard's deliveries name them by index, so the hot
 * path does no lookup) and an index by sid for UNSUB (open addressing,
 * linear probing, rebuilt when it grows or fills with tombstones).
 *
 * Both arrays grow by doubling up to the connection limit (max_subs) and
 * are freed with the connection: an idle connection with no subscriptions
 * holds none.
 */
#include "dataplane/dp_nats_pvt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/dp_shard_pvt.h"

#define DP_NATS_SLOT_EMPTY 0u
#define DP_NATS_SLOT_GONE UINT32_MAX
#define DP_NATS_SUBS_MIN 8u

static uint32_t dp_nats_sid_hash(const char *sid, uint32_t len)
{
        return dp_hash32(sid, len);
}

/* Rebuilds the index at cap slots (a power of two) from the live subs. */
static int dp_nats_index_build(struct dp_nats_conn *c, uint32_t cap)
{
        uint32_t *index = calloc(cap, sizeof(*index));
        if (index == NULL)
                return -ENOMEM;
        for (uint32_t i = 0; i < c->subs_cap; i++) {
                const struct dp_nats_sub *s = &c->subs[i];
                if (!s->live)
                        continue;
                uint32_t h = dp_nats_sid_hash(s->sid, s->sid_len) & (cap - 1);
                while (index[h] != DP_NATS_SLOT_EMPTY)
                        h = (h + 1) & (cap - 1);
                index[h] = i + 1;
        }
        free(c->index);
        c->index = index;
        c->index_cap = cap;
        c->index_used = c->subs_live;
        return 0;
}

int dp_nats_sub_find(const struct dp_nats_conn *c, const char *sid, uint32_t len)
{
        if (c->index_cap == 0)
                return -ENOENT;
        uint32_t mask = c->index_cap - 1;
        for (uint32_t h = dp_nats_sid_hash(sid, len) & mask, n = 0; n < c->index_cap;
             h = (h + 1) & mask, n++) {
                uint32_t v = c->index[h];
                if (v == DP_NATS_SLOT_EMPTY)
                        return -ENOENT;
                if (v == DP_NATS_SLOT_GONE)
                        continue;
                const struct dp_nats_sub *s = &c->subs[v - 1];
                if (s->sid_len == len && memcmp(s->sid, sid, len) == 0)
                        return (int)(v - 1);
        }
        return -ENOENT;
}

/* Room for one more subscription: the table doubles up to max. */
static int dp_nats_subs_grow(struct dp_nats_conn *c, uint32_t max)
{
        if (c->free_head != 0)
                return 0;
        if (c->subs_cap >= max)
                return -ENOSPC;
        uint32_t cap = c->subs_cap == 0 ? DP_NATS_SUBS_MIN : c->subs_cap * 2;
        if (cap > max)
                cap = max;
        struct dp_nats_sub *subs = realloc(c->subs, (size_t)cap * sizeof(*subs));
        if (subs == NULL)
                return -ENOMEM;
        memset(subs + c->subs_cap, 0, (size_t)(cap - c->subs_cap) * sizeof(*subs));
        /* The new entries join the free list, lowest index first. */
        for (uint32_t i = cap; i > c->subs_cap; i--) {
                subs[i - 1].next_free = c->free_head;
                c->free_head = i;
        }
        c->subs = subs;
        c->subs_cap = cap;
        return 0;
}

int dp_nats_sub_add(struct dp_nats_conn *c, const char *sid, uint32_t len, uint32_t max)
{
        if (len == 0 || len > DP_NATS_SID_MAX)
                return -EINVAL;
        int rc = dp_nats_subs_grow(c, max);
        if (rc != 0)
                return rc;
        /* Keep the index at most half full, tombstones included. */
        if ((c->index_used + 1) * 2 > c->index_cap) {
                uint32_t cap = c->index_cap == 0 ? 2 * DP_NATS_SUBS_MIN : c->index_cap;
                while ((c->subs_live + 1) * 2 > cap)
                        cap *= 2;
                rc = dp_nats_index_build(c, cap);
                if (rc != 0)
                        return rc;
        }
        uint32_t i = c->free_head - 1;
        struct dp_nats_sub *s = &c->subs[i];
        c->free_head = s->next_free;
        *s = (struct dp_nats_sub){ .live = true, .sid_len = (uint8_t)len };
        memcpy(s->sid, sid, len);
        uint32_t mask = c->index_cap - 1;
        uint32_t h = dp_nats_sid_hash(sid, len) & mask;
        while (c->index[h] != DP_NATS_SLOT_EMPTY && c->index[h] != DP_NATS_SLOT_GONE)
                h = (h + 1) & mask;
        if (c->index[h] == DP_NATS_SLOT_EMPTY)
                c->index_used++;
        c->index[h] = i + 1;
        c->subs_live++;
        return (int)i;
}

void dp_nats_sub_drop(struct dp_nats_conn *c, uint32_t i)
{
        struct dp_nats_sub *s = &c->subs[i];
        DP_ASSERT(s->live);
        uint32_t mask = c->index_cap - 1;
        for (uint32_t h = dp_nats_sid_hash(s->sid, s->sid_len) & mask;; h = (h + 1) & mask) {
                DP_ASSERT(c->index[h] != DP_NATS_SLOT_EMPTY);
                if (c->index[h] == i + 1) {
                        c->index[h] = DP_NATS_SLOT_GONE;
                        break;
                }
        }
        s->live = false;
        s->next_free = c->free_head;
        c->free_head = i + 1;
        c->subs_live--;
}

void dp_nats_subs_free(struct dp_nats_conn *c)
{
        free(c->subs);
        free(c->index);
        c->subs = NULL;
        c->index = NULL;
        c->subs_cap = c->index_cap = c->index_used = c->subs_live = c->free_head = 0;
}
