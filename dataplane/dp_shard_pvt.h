/* dp_shard_pvt.h - what the shard's files (dp_shard.c, dp_store.c,
 * dp_route.c) share and nobody else needs. */
#ifndef ATOMQ_DP_SHARD_PVT_H
#define ATOMQ_DP_SHARD_PVT_H

#include "dataplane/dp_shard.h"

/* A party bound to an entity. 32 bytes, in a per-shard pool. */
struct dp_binding {
        uint32_t endpoint;
        uint32_t sid;
        uint32_t group;   /* group routing: members of one group share it */
        uint32_t hname;   /* headers routing: hash of the header name; 0: none */
        uint32_t hvalue;  /* and of the value it must have */
        uint32_t next;    /* next binding of the entity + 1; free-list link */
        uint16_t end;     /* channel end this party holds (0 or 1) */
        uint16_t hold;    /* 1: a holder (pulls), 0: a watcher (pushed to) */
        uint32_t entity;  /* the entity's slot (dp_shard_purge_endpoint) */
};
_Static_assert(sizeof(struct dp_binding) == 32, "binding record");

/* A consumer group's position in a log. 24 bytes. */
struct dp_cursor {
        uint64_t group_hash;
        uint64_t offset;  /* the next offset the group reads */
        uint32_t next;    /* next cursor of the entity + 1; free-list link */
        uint32_t reserved;
};
_Static_assert(sizeof(struct dp_cursor) == 24, "cursor record");

/* Tagged trie values: bit 63 set: an entity handle; clear: endpoint << 32 | sid. */
#define DP_TARGET_ENTITY (1ull << 63)

static inline uint64_t dp_target_endpoint(uint32_t endpoint, uint32_t sid)
{
        return (uint64_t)endpoint << 32 | sid;
}

/* dp_store.c */
int dp_buf_make(struct dp_shard *s, const struct dp_msg_in *m, uint32_t *buf);
int dp_send_buf(struct dp_shard *s, uint64_t handle, const struct dp_msg_in *m, uint32_t buf,
                uint64_t *seq);
void dp_store_purge(struct dp_shard *s, struct dp_entity *e);
void dp_cursors_release(struct dp_shard *s, struct dp_entity *e);
uint32_t dp_hash32(const void *p, size_t len);
uint64_t dp_hash64(const void *p, size_t len);

/* dp_route.c */
void dp_route_entity(struct dp_shard *s, struct dp_entity *e, uint64_t handle, uint32_t buf,
                     uint64_t seq, const struct dp_msg_in *m, unsigned *delivered);
int dp_publish_buf(struct dp_shard *s, const struct dp_msg_in *m, uint32_t buf,
                   bool feed_entities);
void dp_bindings_release(struct dp_shard *s, struct dp_entity *e);
void dp_deliver_status(struct dp_shard *s, struct dp_entity *e, uint64_t handle,
                       uint16_t status);

/* dp_shard.c */
void dp_entity_touch(struct dp_shard *s, struct dp_entity *e);
int dp_entity_destroy(struct dp_shard *s, struct dp_entity *e);
/* Tells the journal about an entity's change (name, sync and e filled in
 * here); 0 when e is not on the disk tier, there is no journal, or it is
 * being replayed. */
int dp_journal_tell(struct dp_shard *s, struct dp_entity *e, struct dp_journal *j);
/* The sync policy in force for a message m (or an entity change: m NULL). */
uint8_t dp_journal_sync(const struct dp_entity *e, const struct dp_msg_in *m);
/* Journals every message e holds (an entity moving to the disk tier). */
int dp_store_journal_all(struct dp_shard *s, struct dp_entity *e);

#endif /* ATOMQ_DP_SHARD_PVT_H */
