/* dp_msg.h - message records and the per-entity message queue.
 *
 * A queued message is a 40-byte record in a per-shard pool plus a
 * reference on a slab buffer that holds the message as an atomq frame
 * (include/atomq/frame.h): header, subject, headers, payload. The record
 * carries what the atoms need per message: sequence (log offset), expiry
 * (per-message TTL), in-flight state and redelivery count (at-least-once),
 * and a key hash (retention latest). Fan-out hands the same buffer to many
 * readers with a reference each; the record belongs to one entity.
 *
 * An entity's queue is a singly linked FIFO of records (dp_entity.q_head /
 * q_tail, indexes + 1). Everything here runs on the shard's worker only.
 */
#ifndef ATOMQ_DP_MSG_H
#define ATOMQ_DP_MSG_H

#include <stdint.h>

#include "dataplane/dp_entity.h"
#include "shm/shm_base.h"

#define DP_MSGS_MAGIC 0x5347534d51544f41ull /* "AOTQMSGS" */

enum dp_msg_flags {
        DP_MSG_F_INFLIGHT = 1u << 0, /* fetched, waiting for its ack */
};

struct dp_msg {
        uint32_t buf;        /* slab buffer id of the frame */
        uint32_t next;       /* next record in the queue + 1; free-list link */
        uint64_t seq;        /* entity sequence number, the log offset */
        uint64_t expire_ns;  /* per-message TTL deadline; 0: none */
        uint64_t ack_ns;     /* in flight: redeliver after this */
        uint32_t key_hash;   /* retention latest: hash of the subject (key) */
        uint16_t deliveries; /* times handed out */
        uint16_t flags;      /* enum dp_msg_flags */
};
_Static_assert(sizeof(struct dp_msg) == 40, "message record");

struct dp_msgs_hdr {
        uint64_t magic;
        uint32_t capacity;
        uint32_t free_head;  /* index + 1, 0: exhausted */
        uint32_t in_use;
        uint8_t reserved[44];
};
_Static_assert(sizeof(struct dp_msgs_hdr) == 64, "message pool header");

struct dp_msgs {
        struct dp_msgs_hdr *hdr;
        struct dp_msg *recs;
        uint32_t capacity;
};

size_t dp_msgs_bytes(uint32_t capacity);

/* -EINVAL: capacity 0 or mem unaligned; -ENOSPC: len short. */
int dp_msgs_init(struct dp_msgs *m, void *mem, size_t len, uint32_t capacity);

/* Attaches to a pool formatted earlier. -EPROTO: no magic; -ENOSPC: len
 * short for its capacity. */
int dp_msgs_attach(struct dp_msgs *m, void *mem, size_t len);

/* A zeroed record; its index in *idx. -ENOMEM: pool exhausted. */
int dp_msgs_alloc(struct dp_msgs *m, uint32_t *idx);

/* Returns a record to the pool (the caller released its buffer). */
void dp_msgs_free(struct dp_msgs *m, uint32_t idx);

static inline struct dp_msg *dp_msgs_get(const struct dp_msgs *m, uint32_t idx)
{
        DP_ASSERT(idx < m->capacity);
        return &m->recs[idx];
}

/* Queue operations on an entity's FIFO. Links are index + 1 (0 = none). */
void dp_msgq_append(struct dp_msgs *m, struct dp_entity *e, uint32_t idx);

/* Unlinks record idx, whose predecessor is prev (UINT32_MAX when idx is the
 * head). */
void dp_msgq_unlink(struct dp_msgs *m, struct dp_entity *e, uint32_t prev, uint32_t idx);

#endif /* ATOMQ_DP_MSG_H */
