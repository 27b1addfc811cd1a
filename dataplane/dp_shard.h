/* dp_shard.h - one shard of the router: the entities, subscriptions, timers
 * and messages that one worker owns, and the operations on them.
 *
 * Everything here runs on the owning worker's thread only (share-nothing);
 * other threads reach a shard through its rings. Operations dispatch on the
 * entity's atoms (dp_atoms.h), never on its mode: a mode is only the row of
 * atoms it was created from (dp_mode.h).
 *
 * Time is the shard's clock, set by dp_shard_tick(), which also fires the
 * timers (entity TTLs, request timeouts); tests drive it by hand.
 *
 * Delivery to parties outside the shard (connections, agents) goes through
 * the dp_deliver_fn the shard was given: it receives a reference on the
 * message buffer for the length of the call and takes its own reference
 * (shm_slab_ref) if it keeps the buffer.
 *
 *      struct dp_shard_config cfg;
 *      dp_shard_config_default(&cfg, 0, 1 << 20);
 *      dp_shard_init(&s, mem, dp_shard_bytes(&cfg), &cfg, deliver, arg);
 *      dp_shard_create(&s, &(struct dp_create_opts){ .mode = DP_MODE_MAILBOX },
 *                      "inbox.alice", 11, &h);
 *      dp_shard_send(&s, h, &msg, &seq);
 *      dp_shard_fetch(&s, h, 0, out, 16);
 */
#ifndef ATOMQ_DP_SHARD_H
#define ATOMQ_DP_SHARD_H

#include <stdbool.h>
#include <stdint.h>

#include "dataplane/dp_mode.h"
#include "dataplane/dp_msg.h"
#include "dataplane/dp_table.h"
#include "dataplane/dp_timer.h"
#include "dataplane/dp_trie.h"
#include "shm/shm_pool.h"

#define DP_SHARD_MAGIC 0x44524148535154ull /* "TQSHARD" */
#define DP_SHARD_VERSION 2 /* 2: entity owners */
#define DP_SHARD_BUF_CLASSES 4
/* Most queue groups one publish chooses among, and most members of all
 * groups a publish collects before choosing (bounds the stack array). */
#define DP_PUBLISH_GROUPS_MAX 64
#define DP_PUBLISH_MEMBERS_MAX 1024
/* Status codes carried by dp_dispatch.status, as NATS uses them. */
#define DP_STATUS_NO_RESPONDERS 503
#define DP_STATUS_TIMEOUT 408
/* Endpoints are 31-bit ids: a subscription's target word tags entities
 * with bit 63 and packs endpoint and sid below it. */
#define DP_ENDPOINT_MAX (1u << 31)

/* Per-shard counters: one writer (the worker), read by anyone. */
struct dp_shard_stats {
        uint64_t creates;
        uint64_t destroys;
        uint64_t expired_entities;   /* destroyed by their TTL */
        uint64_t msgs_in;            /* messages accepted (stored or routed) */
        uint64_t bytes_in;
        uint64_t deliveries;         /* handed to a party or fetched */
        uint64_t drops_full;         /* refused or dropped by a limit */
        uint64_t drops_expired;      /* per-message TTL passed before delivery */
        uint64_t drops_no_party;     /* storage none and nobody to take it */
        uint64_t drops_max_deliver;  /* redelivered max_deliver times */
        uint64_t no_responders;
        uint64_t request_timeouts;
        uint64_t pool_exhausted;     /* message records or buffers ran out */
};

struct dp_shard_config {
        uint32_t shard;
        uint32_t max_entities;
        uint32_t max_msgs;       /* queued messages over all entities */
        uint32_t max_subs;       /* subject subscriptions */
        uint32_t max_trie_nodes;
        uint32_t trie_token_bytes;
        uint32_t max_bindings;   /* parties bound to entities */
        uint32_t max_cursors;    /* log consumer-group cursors */
        uint64_t ack_wait_ns;    /* at-least-once: redeliver after this */
        uint16_t max_deliver;    /* at-least-once: give up after this many */
        struct shm_slab_class bufs[DP_SHARD_BUF_CLASSES]; /* message buffers */
};

/* Someone outside the shard receives a message or a status. */
struct dp_dispatch {
        uint32_t endpoint;  /* the party: connection or agent, < DP_ENDPOINT_MAX */
        uint32_t sid;       /* the party's subscription id */
        uint32_t buf;       /* slab buffer of the frame; SHM_BUF_NONE for a status */
        uint64_t entity;    /* handle delivered from; 0 for a subject publish */
        uint64_t seq;
        uint16_t status;    /* 0, DP_STATUS_NO_RESPONDERS, DP_STATUS_TIMEOUT */
};
typedef void dp_deliver_fn(void *arg, const struct dp_dispatch *d);

/* Called when an entity with an owner (dp_shard_set_owner) is destroyed,
 * by any path (destroy, TTL, one-shot, auto-destroy). */
typedef void dp_disown_fn(void *arg, uint8_t owner);

/* Optional: may this shard serve queue group `group` for the publish with
 * pub_id? (dp_groups.h: a group with members on several shards is served
 * by one of them.) */
typedef bool dp_group_gate_fn(void *arg, uint32_t group, uint64_t pub_id);

/* Optional: the load of a party, for least-loaded group routing. */
typedef uint32_t dp_load_fn(void *arg, uint32_t endpoint);

/* A message handed to the shard. The shard copies it into a buffer. */
struct dp_msg_in {
        const char *subject;     /* the key for retention latest */
        uint32_t subject_len;
        const void *headers;     /* NATS/1.0 header block, or NULL */
        uint32_t headers_len;
        const void *payload;
        uint32_t payload_len;
        uint32_t ttl_ms;         /* per-message TTL; 0: none */
        int8_t storage;          /* per-message override; -1: the entity's */
        uint8_t end;             /* channel: 1 + the sending end; 0: none */
        uint8_t sync;            /* enum dp_sync, for a disk entity; 0: the entity's */
        uint64_t reply;          /* handle replies go to; 0: none */
        uint64_t pub_id;         /* the same on every shard a publish reaches; 0: none */
        const char *reply_subject; /* NATS reply-to subject; NULL: none */
        uint32_t reply_subject_len; /* subject_len + this <= ATOMQ_FRAME_SUBJECT_MAX */
};

/* One message handed out by fetch, get or read. The caller owns one
 * reference on buf and must shm_slab_put it. */
struct dp_fetched {
        uint32_t buf;
        uint16_t deliveries;
        uint16_t reserved;
        uint64_t seq;
};

struct dp_create_opts {
        uint8_t mode;        /* enum dp_mode */
        int8_t storage;      /* -1 (or 0 with storage_set false): the mode's */
        bool storage_set;
        int8_t overflow;     /* -1: the mode's */
        bool ttl_idle;       /* TTL counts from the last use, not creation */
        bool least_loaded;   /* group routing: least loaded, not round-robin */
        uint32_t ttl_ms;     /* 0: no entity TTL */
        uint32_t max_msgs;   /* 0: no per-entity limit */
        uint32_t max_bytes;
        uint8_t sync;        /* enum dp_sync, for storage disk; 0: batch */
};

/* The shared part of a shard: everything a restarted dataplane needs to
 * carry on (dp_shard_attach), so no state lives only in a process. */
struct dp_journal; /* below, with dp_shard_set_journal */
typedef int dp_journal_fn(void *arg, const struct dp_journal *j);

struct dp_shard_hdr {
        uint64_t magic;
        uint32_t version;
        uint32_t shard;
        struct dp_shard_config cfg;   /* the geometry it was formatted with */
        uint32_t bind_free;           /* first free binding + 1 */
        uint32_t cursor_free;         /* first free cursor + 1 */
        uint32_t rr;                  /* round-robin position, group routing */
        uint32_t journal_loaded;      /* 1: the disk journal was replayed into it */
        SHM_ALIGNED_LINE struct dp_shard_stats stats;
};

struct dp_shard {
        struct dp_shard_hdr *hdr;
        struct dp_shard_stats *stats;
        struct dp_table table;
        struct dp_trie trie;
        struct dp_timer_wheel timers;
        struct dp_msgs msgs;
        struct shm_slab bufs;
        struct dp_binding *bindings;
        struct dp_cursor *cursors;
        uint32_t max_bindings;
        uint32_t max_cursors;
        uint64_t now_ns;
        uint64_t ack_wait_ns;
        uint16_t max_deliver;
        dp_deliver_fn *deliver;
        void *deliver_arg;
        dp_load_fn *load;
        void *load_arg;
        dp_group_gate_fn *group_gate; /* process-local, optional */
        void *group_gate_arg;
        struct dp_match_cache *match_cache; /* process-local, optional (dp_shard_set_match_cache) */
        uint32_t publish_buf;         /* process-local: a small buffer publishes reuse while
                                       * nobody keeps it (SHM_BUF_NONE: none) */
        uint8_t *owners;              /* per entity slot: who created it (0: nobody) */
        dp_disown_fn *disown;
        void *disown_arg;
        dp_journal_fn *journal;       /* the disk tier's (NULL: none) */
        void *journal_arg;
        bool replaying;               /* applying the journal: tell it nothing */
};

/* Fills cfg with defaults for max_entities entities (message records,
 * buffers and subscriptions in proportion). */
void dp_shard_config_default(struct dp_shard_config *cfg, uint32_t shard,
                             uint32_t max_entities);

/* Bytes for this configuration, or 0 when it is invalid. */
size_t dp_shard_bytes(const struct dp_shard_config *cfg);

/* Formats a shard in mem. -EINVAL: bad config or alignment; -ENOSPC: len
 * short. deliver may be NULL (deliveries are then only counted). */
int dp_shard_init(struct dp_shard *s, void *mem, size_t len, const struct dp_shard_config *cfg,
                  dp_deliver_fn *deliver, void *arg);

/* Re-attaches to a shard formatted earlier (by a dataplane that has since
 * died): entities, subscriptions, timers and queued messages carry on.
 * The configuration comes from the shard's own header.
 * -EPROTO: not a shard or another version; -EINVAL/-ENOSPC: its geometry
 * does not fit len; errors of the parts' attach functions. */
int dp_shard_attach(struct dp_shard *s, void *mem, size_t len, dp_deliver_fn *deliver,
                    void *arg);

void dp_shard_set_load_fn(struct dp_shard *s, dp_load_fn *fn, void *arg);
void dp_shard_set_group_gate(struct dp_shard *s, dp_group_gate_fn *fn, void *arg);

/* A cache of subject match results (what nats-server's sublist cache is):
 * a publish to a subject seen before, with no subscription changed since,
 * skips the trie walk. Process-local memory the caller owns (NULL: none);
 * DP_MATCH_CACHE_BYTES of it. Subjects up to 64 bytes with up to 8
 * matches are cached. */
struct dp_match_cache;
#define DP_MATCH_CACHE_SLOTS 1024u
size_t dp_match_cache_bytes(void);
void dp_shard_set_match_cache(struct dp_shard *s, struct dp_match_cache *c);

/* The disk tier's journal. A shard with one (dp_shard_set_journal) takes
 * storage disk for named entities and tells the journal, in order, every
 * change to them: creates (with their options), messages kept (the whole
 * frame), acks, commits, destroys, and an entity leaving the disk tier
 * (FORGET). A message or create the journal refuses is refused to its
 * caller with the journal's error and changes nothing; an ack, commit or
 * destroy it cannot record still happens in memory (the journal counts it:
 * after a restart that message comes back, at-least-once). Replaying the
 * journal into an empty shard (dp_shard_replay_*) rebuilds the entities. */
enum dp_journal_kind {
        DP_JOURNAL_CREATE = 1,
        DP_JOURNAL_MSG = 2,
        DP_JOURNAL_ACK = 3,
        DP_JOURNAL_COMMIT = 4,
        DP_JOURNAL_DESTROY = 5,
        DP_JOURNAL_FORGET = 6,
        DP_JOURNAL_TTL = 7,      /* the entity's TTL set anew (ttl_ms; 0: none) */
};

struct dp_journal {
        uint16_t kind;           /* enum dp_journal_kind */
        uint8_t sync;            /* enum dp_sync in force (never DEFAULT) */
        const struct dp_entity *e;
        const char *name;        /* the entity's */
        uint32_t name_len;
        uint64_t seq;            /* MSG and ACK: the message's; COMMIT: the offset */
        uint32_t buf;            /* MSG: the frame's buffer */
        uint32_t ttl_ms;         /* MSG: the message's TTL (0: none) */
        const char *group;       /* COMMIT */
        uint32_t group_len;
};

/* fn NULL: no journal, storage disk is refused (-EOPNOTSUPP). */
void dp_shard_set_journal(struct dp_shard *s, dp_journal_fn *fn, void *arg);

/* Replay: a journal's MSG record, m (with its remaining TTL) kept as
 * message seq of the entity, whose counter moves past it; -EALREADY for a
 * seq below it. The other records replay through the ordinary calls with
 * s->replaying set (dp_disk.c). */
int dp_shard_replay_msg(struct dp_shard *s, uint64_t handle, const struct dp_msg_in *m,
                        uint64_t seq);

/* Compaction restates an entity's consumer groups by their hash (a cursor
 * keeps no name): calls fn for each; and sets one back from it. */
typedef int dp_cursor_fn(void *arg, uint64_t group_hash, uint64_t offset);
int dp_shard_cursors_each(struct dp_shard *s, uint64_t handle, dp_cursor_fn *fn, void *arg);
int dp_shard_cursor_restore(struct dp_shard *s, uint64_t handle, uint64_t group_hash,
                            uint64_t offset);

/* Owners: one byte per entity slot, in the shard (so a restarted dataplane
 * keeps them), naming who created the entity (an agent slot + 1; 0:
 * nobody), for per-agent entity quotas. */
void dp_shard_set_disown_fn(struct dp_shard *s, dp_disown_fn *fn, void *arg);

/* Marks the entity of handle as owner's. Errors as dp_table_get. */
int dp_shard_set_owner(struct dp_shard *s, uint64_t handle, uint8_t owner);

/* Forgets owner on every entity (an agent that left: its entities live on,
 * owned by nobody). O(max_entities). Returns how many it owned here. */
uint32_t dp_shard_disown_all(struct dp_shard *s, uint8_t owner);

/* Advances the shard's clock and fires due timers (at most max). Returns
 * the number fired. */
int dp_shard_tick(struct dp_shard *s, uint64_t now_ns, unsigned max);

/* --- entities (dp_shard.c) --- */

/* -EINVAL: bad mode, option or name; -EEXIST: name taken; -ENOSPC: table
 * or name heap full. */
int dp_shard_create(struct dp_shard *s, const struct dp_create_opts *o,
                    const char *name, uint32_t name_len, uint64_t *handle);

/* Destroys the entity and releases its messages, bindings and timer.
 * -ESTALE, -EXDEV, -EINVAL as dp_table_get. */
int dp_shard_destroy(struct dp_shard *s, uint64_t handle);

/* Switches the storage atom live. Messages already queued stay and are
 * delivered; from now on new ones follow the new choice.
 * -EINVAL: storage out of range; -EOPNOTSUPP: disk (not built yet). */
int dp_shard_set_storage(struct dp_shard *s, uint64_t handle, uint8_t storage);

/* Sets or clears (ttl_ms 0) the entity's TTL, counted from now. */
int dp_shard_set_ttl(struct dp_shard *s, uint64_t handle, uint32_t ttl_ms);

/* --- parties (dp_route.c) --- */

/* A party bound to an entity. A watcher (hold false) is told of each
 * message as it arrives, chosen by the entity's routing atom: the owner of
 * a request inbox, a member of a group, a party with a header filter. A
 * holder (hold true) receives nothing pushed: it counts as a party for the
 * lifecycle atom (auto-destroy when the last one leaves) and pulls with
 * fetch; the two ends of a channel are holders. */
struct dp_bind {
        uint32_t endpoint;       /* < DP_ENDPOINT_MAX */
        uint32_t sid;
        uint32_t group;          /* group routing: members of one group */
        bool hold;
        uint8_t end;             /* channel end (0 or 1) of a holder */
        const char *hdr_name;    /* headers routing filter; NULL: none */
        const char *hdr_value;
};

/* -ENOSPC: no free binding; -EINVAL: endpoint too large, end > 1, or a
 * filter with a name but no value; -EBUSY: that channel end is held. */
int dp_shard_bind(struct dp_shard *s, uint64_t handle, const struct dp_bind *b);

/* Removes a party; an entity with auto-destroy goes when its last party
 * leaves. -ENOENT when endpoint/sid is not bound. */
int dp_shard_unbind(struct dp_shard *s, uint64_t handle, uint32_t endpoint, uint32_t sid);

/* Removes every subscription and binding of endpoint (an agent that left):
 * entities with auto-destroy whose last party it was go too. O(max_subs +
 * max_bindings). Returns the subscriptions and bindings removed. */
uint32_t dp_shard_purge_endpoint(struct dp_shard *s, uint32_t endpoint);

/* The endpoint subscription sub_id delivers to (0 when it feeds an
 * entity). -ENOENT: no such subscription. */
int dp_shard_sub_endpoint(const struct dp_shard *s, uint32_t sub_id, uint32_t *endpoint);

/* Subject subscriptions (match routing). target_entity, when not 0, makes
 * the subscription feed that entity (a mailbox that collects a subject)
 * instead of endpoint/sid. Errors as dp_trie_insert. */
int dp_shard_subscribe(struct dp_shard *s, const char *pattern, uint32_t len, uint32_t group,
                       uint32_t endpoint, uint32_t sid, uint64_t target_entity,
                       uint32_t *sub_id);
int dp_shard_unsubscribe(struct dp_shard *s, uint32_t sub_id);

/* Lets the buffer publishes reuse go (before the shard's memory is freed or
 * handed to another process). */
void dp_shard_publish_buf_release(struct dp_shard *s);

/* Routes a message by subject to every matching subscription (one member
 * per queue group). Returns the number of deliveries, or -EINVAL for a bad
 * subject, -EMSGSIZE when the message exceeds the largest buffer, -ENOMEM
 * when no buffer is free. */
int dp_shard_publish(struct dp_shard *s, const struct dp_msg_in *m);

/* dp_shard_publish for a subject the caller has checked already
 * (dp_subject_check, no wildcards): the same, without the second check. */
int dp_shard_publish_valid(struct dp_shard *s, const struct dp_msg_in *m);

/* A request: creates a one-shot reply inbox owned by endpoint/sid with a
 * TTL of timeout_ms, publishes m with it as the reply handle, and answers
 * DP_STATUS_NO_RESPONDERS at once when nobody listens (the inbox is then
 * gone) or DP_STATUS_TIMEOUT when the TTL passes. *inbox gets the handle (also with no
 * responders: the 503 names it, though the inbox is gone).
 * Returns the number of responders reached (0: no responders). */
int dp_shard_request(struct dp_shard *s, const struct dp_msg_in *m, uint32_t endpoint,
                     uint32_t sid, uint32_t timeout_ms, uint64_t *inbox);

/* --- storage, retention, delivery (dp_store.c) --- */

/* Gives a message to an entity: stored by its storage and retention atoms
 * (and limits), then routed to its parties by its routing atom.
 * *seq (may be NULL) gets the sequence number (the offset of a log).
 * -ENOBUFS: the entity is full and refuses (overflow reject);
 * -EMSGSIZE / -ENOMEM: no buffer large enough / free; -ENOENT: storage none
 * and no party to take it (counted, not an error for broadcast);
 * errors of dp_table_get for the handle. */
int dp_shard_send(struct dp_shard *s, uint64_t handle, const struct dp_msg_in *m,
                  uint64_t *seq);

/* Takes up to max messages in order. at-most-once: they leave the entity;
 * at-least-once: they stay in flight until acked, and come again after
 * ack-wait (up to max_deliver times). end is 1 + the fetching channel end
 * (which takes only what the other end sent) or 0. Returns the count (0:
 * none waiting), or -EOPNOTSUPP for an ordered entity (use read). */
int dp_shard_fetch(struct dp_shard *s, uint64_t handle, uint8_t end, struct dp_fetched *out,
                   unsigned max);

/* Acknowledges (and removes) message seq. -ENOENT: no such message. */
int dp_shard_ack(struct dp_shard *s, uint64_t handle, uint64_t seq);

/* Retention latest: the value stored under key. -ENOENT: none. */
int dp_shard_get(struct dp_shard *s, uint64_t handle, const char *key, uint32_t key_len,
                 struct dp_fetched *out);

/* Ordered: up to max messages from offset on (not removed). */
int dp_shard_read(struct dp_shard *s, uint64_t handle, uint64_t offset, struct dp_fetched *out,
                  unsigned max);

/* Ordered: reads from group's committed cursor (creating it at the oldest
 * offset). -ENOSPC: no free cursor. */
int dp_shard_read_group(struct dp_shard *s, uint64_t handle, const char *group,
                        struct dp_fetched *out, unsigned max);

/* Ordered: moves group's cursor to offset (the next offset it will read).
 * -ERANGE: offset beyond the log's end; -ENOSPC: no free cursor. */
int dp_shard_commit(struct dp_shard *s, uint64_t handle, const char *group, uint64_t offset);

/* The group's committed offset in *offset. -ENOENT: no such group. */
int dp_shard_cursor(struct dp_shard *s, uint64_t handle, const char *group, uint64_t *offset);

/* Reads a frame buffer: the sections of the message in buffer buf. */
struct dp_msg_view {
        const char *subject;
        uint32_t subject_len;
        const uint8_t *headers;
        uint32_t headers_len;
        const uint8_t *payload;
        uint32_t payload_len;
        uint64_t reply;
        const char *reply_subject;  /* NULL: none */
        uint32_t reply_subject_len;
};
int dp_shard_msg_view(const struct dp_shard *s, uint32_t buf, struct dp_msg_view *v);

#endif /* ATOMQ_DP_SHARD_H */
