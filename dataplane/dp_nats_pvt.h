/* dp_nats_pvt.h - what dp_nats.c and dp_nats_subs.c share. */
#ifndef ATOMQ_DP_NATS_PVT_H
#define ATOMQ_DP_NATS_PVT_H

#include "dataplane/dp_nats.h"
#include "dataplane/dp_nats_aq.h"
#include "dataplane/dp_nats_parse.h"
#include "dataplane/dp_worker.h"

/* One subscription of a connection; its index is the shard's sid. */
struct dp_nats_sub {
        uint32_t trie_id;    /* the shard's subscription */
        uint32_t group;      /* queue group id; 0: none */
        uint32_t next_free;  /* free list: index + 1, 0 ends it */
        uint64_t max;        /* UNSUB max: removed after this many; 0: none */
        uint64_t delivered;
        bool live;
        bool doomed;         /* reached max during a publish: removed after it */
        uint8_t sid_len;
        char sid[DP_NATS_SID_MAX];
};

struct dp_nats_conn {
        uint32_t id;           /* the nic's connection id; 0: slot free */
        bool verbose;
        bool echo;
        bool headers;
        bool no_responders;
        bool closing;          /* no more input or output is handled */
        bool authed;           /* credentials accepted, or none asked for */
        bool on_doomed_list;
        uint32_t pings_out;
        uint32_t next_doomed;  /* list of connections with doomed subs: slot + 1 */
        uint64_t last_ping_ns;
        struct dp_nats_parser parser;
        struct dp_nats_sub *subs;
        uint32_t subs_cap;
        uint32_t subs_live;
        uint32_t free_head;
        uint32_t *index;       /* sid -> sub index + 1 (open addressing) */
        uint32_t index_cap;
        uint32_t index_used;   /* slots ever filled since the last build */
};

/* A request from one of our clients that no subscriber on our shard took:
 * waiting for the other shards' counts (DP_PUB_F_COUNT) to know whether
 * nobody anywhere did, and it gets a 503. */
struct dp_nats_nr {
        uint64_t pub_id;
        uint64_t deadline_ns;
        uint32_t remaining;      /* shards yet to answer */
        uint32_t reply_len;
        char reply[ATOMQ_FRAME_SUBJECT_MAX];
};
/* Requests waiting at once; more get no 503 (they time out, as with a
 * server that does not support no_responders). */
/* Publishes parsed ahead of their handling in one read (dp_nats.c): 16
 * hides a table miss behind the handling of the ones before it. */
#define DP_NATS_AHEAD 16u
/* Output a read left for its connection that is sent at once, not at the
 * end of the worker's pass (dp_nats_on_data). */
#define DP_NATS_FLUSH_EARLY (8u * 1024)
#define DP_NATS_NR_MAX 1024u
#define DP_NATS_NR_WAIT_NS (1000ull * 1000 * 1000)

struct dp_nats {
        struct dp_worker *w;
        struct nic_uring *nic;
        struct dp_nats_config cfg;
        struct dp_nats_conn *conns;   /* [cfg.max_conns], by slot */
        uint32_t doomed_head;         /* slot + 1 */
        uint64_t ping_sweep_ns;
        struct dp_nats_stats *stats;  /* the worker's, in the arena */
        struct dp_aq_parked *parked;  /* [DP_AQ_PARKED_MAX] */
        uint32_t parked_count;
        struct dp_nats_nr *nr;        /* [DP_NATS_NR_MAX] */
        uint32_t nr_count;
        uint32_t info_len;
        char info[512];               /* the INFO line, CRLF included */
};

/* dp_nats_subs.c. Returns the index, -ENOENT. */
int dp_nats_sub_find(const struct dp_nats_conn *c, const char *sid, uint32_t len);
/* A new live entry for sid: its index, or -EINVAL (sid empty or above
 * DP_NATS_SID_MAX), -ENOSPC (max reached), -ENOMEM. */
int dp_nats_sub_add(struct dp_nats_conn *c, const char *sid, uint32_t len, uint32_t max);
/* Frees entry i (the caller unsubscribed it from the shard). */
void dp_nats_sub_drop(struct dp_nats_conn *c, uint32_t i);
void dp_nats_subs_free(struct dp_nats_conn *c);

#endif /* ATOMQ_DP_NATS_PVT_H */
