/* dp_msg.c - the message record pool and queue links (see dp_msg.h). */
#include "dataplane/dp_msg.h"

#include <errno.h>
#include <string.h>

size_t dp_msgs_bytes(uint32_t capacity)
{
        if (capacity == 0)
                return 0;
        return sizeof(struct dp_msgs_hdr) + (size_t)capacity * sizeof(struct dp_msg);
}

int dp_msgs_init(struct dp_msgs *m, void *mem, size_t len, uint32_t capacity)
{
        if (capacity == 0 || (uintptr_t)mem % SHM_CACHE_LINE != 0)
                return -EINVAL;
        if (len < dp_msgs_bytes(capacity))
                return -ENOSPC;
        struct dp_msgs_hdr *h = mem;
        memset(h, 0, sizeof(*h));
        h->capacity = capacity;
        m->hdr = h;
        m->recs = (struct dp_msg *)(h + 1);
        m->capacity = capacity;
        for (uint32_t i = 0; i < capacity; i++)
                m->recs[i].next = i + 1 < capacity ? i + 2 : 0;
        h->free_head = 1;
        h->magic = DP_MSGS_MAGIC;
        return 0;
}

int dp_msgs_attach(struct dp_msgs *m, void *mem, size_t len)
{
        struct dp_msgs_hdr *h = mem;
        if (len < sizeof(*h) || h->magic != DP_MSGS_MAGIC)
                return -EPROTO;
        if (h->capacity == 0 || len < dp_msgs_bytes(h->capacity) || h->free_head > h->capacity)
                return -ENOSPC;
        m->hdr = h;
        m->recs = (struct dp_msg *)(h + 1);
        m->capacity = h->capacity;
        return 0;
}

int dp_msgs_alloc(struct dp_msgs *m, uint32_t *idx)
{
        struct dp_msgs_hdr *h = m->hdr;
        if (h->free_head == 0)
                return -ENOMEM;
        uint32_t i = h->free_head - 1;
        h->free_head = m->recs[i].next;
        memset(&m->recs[i], 0, sizeof(m->recs[i]));
        h->in_use++;
        *idx = i;
        return 0;
}

void dp_msgs_free(struct dp_msgs *m, uint32_t idx)
{
        struct dp_msgs_hdr *h = m->hdr;
        DP_ASSERT(idx < m->capacity);
        m->recs[idx].next = h->free_head;
        h->free_head = idx + 1;
        h->in_use--;
}

void dp_msgq_append(struct dp_msgs *m, struct dp_entity *e, uint32_t idx)
{
        m->recs[idx].next = 0;
        if (e->q_tail == 0)
                e->q_head = idx + 1;
        else
                m->recs[e->q_tail - 1].next = idx + 1;
        e->q_tail = idx + 1;
}

void dp_msgq_unlink(struct dp_msgs *m, struct dp_entity *e, uint32_t prev, uint32_t idx)
{
        uint32_t next = m->recs[idx].next;
        if (prev == UINT32_MAX) {
                DP_ASSERT(e->q_head == idx + 1);
                e->q_head = next;
        } else {
                m->recs[prev].next = next;
        }
        if (e->q_tail == idx + 1)
                e->q_tail = prev == UINT32_MAX ? 0 : prev + 1;
}
