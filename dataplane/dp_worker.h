/* dp_worker.h - one dataplane worker: a thread that alone owns one shard.
 *
 * Share-nothing: a worker is the only thread that writes its shard. Work
 * reaches it through rings in the arena:
 *
 *   command ring (shm_mpsc)      clients (control plane, agents, tests) -> w
 *   mesh rings (shm_vring)       worker j -> w, one SPSC ring per pair
 *   completion rings (shm_vring) w -> client c, one per client
 *
 * and it answers through completion rings, delivers through a callback
 * (later: the network and agent outboxes), and reports through counters in
 * the arena that only it writes.
 *
 * One pass of the loop (dp_worker_do_work): fire due timers, drain up to
 * DP_CMD_DRAIN_MAX commands, drain each inbound mesh ring (DP_MESH_BURST
 * records at most), then wake whoever was given work. Commands for an
 * entity of another shard are forwarded through the mesh to their owner;
 * a publish is matched here and forwarded to every other worker, so it
 * reaches subscriptions on every shard, and since each mesh ring is FIFO a
 * publisher's messages to one subject arrive in order everywhere.
 *
 * Back-pressure: when a mesh or completion ring has no room, the worker
 * does not block and drops nothing: it leaves the command in its ring and
 * stops draining that input until the next pass (see dp_worker.c).
 */
#ifndef ATOMQ_DP_WORKER_H
#define ATOMQ_DP_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "dataplane/dp_cmd.h"
#include "dataplane/dp_counter.h"
#include "dataplane/dp_idle.h"
#include "dataplane/dp_shard.h"
#include "nic/nic_dgram.h"
#include "shm/shm_base.h"
#include "shm/shm_mpsc.h"
#include "shm/shm_vring.h"

#ifndef DP_WORKERS_MAX
#define DP_WORKERS_MAX 64
#endif
#ifndef DP_CMD_DRAIN_MAX
#define DP_CMD_DRAIN_MAX 256
#endif
/* Records taken from one inbound mesh ring per pass: enough to keep up
 * with a busy peer, few enough that one peer cannot starve the others. */
#define DP_MESH_BURST 64u
/* Timers fired per pass: a burst of expiries is spread over passes. */
#define DP_TICK_MAX 256u

_Static_assert(DP_WORKERS_MAX >= 1 && DP_WORKERS_MAX <= DP_SHARDS_MAX,
               "a worker owns one shard, and handles name at most DP_SHARDS_MAX");

/* The NATS sessions' counters of a worker (dataplane/dp_nats*.c). */
struct dp_nats_stats {
        dp_counter conns_opened;
        dp_counter conns_closed;
        dp_counter msgs_in;
        dp_counter msgs_out;
        dp_counter protocol_errors;   /* -ERR sent and closed: bad input */
        dp_counter slow_consumers;    /* cut off: output above --max-pending */
        dp_counter stale_conns;       /* PINGs unanswered */
        dp_counter auth_failures;     /* 'Authorization Violation' sent */
        dp_counter no_responders;     /* 503 status messages sent */
        dp_counter publish_dropped;   /* a mesh ring stayed full */
        dp_counter aq_requests;       /* $AQ requests from this worker's clients */
        dp_counter aq_lost;           /* $AQ answers that could not be fanned out */
        dp_counter aq_parked;         /* fetches that waited for a message */
};

/* The disk tier's counters of a worker (dataplane/dp_disk.c): the log's
 * own counted as it goes, the answers that waited for it. */
struct dp_disk_counters {
        dp_counter records;           /* records appended to the log */
        dp_counter writes;            /* writes of the log's buffers */
        dp_counter write_bytes;
        dp_counter syncs;             /* fdatasyncs completed */
        dp_counter io_errors;         /* write or fdatasync errors (each stops the log) */
        dp_counter refused;           /* appends refused: too large, --disk-max, buffers busy */
        dp_counter journal_errors;    /* changes the log refused (they stayed in memory) */
        dp_counter parked;            /* NATS answers that waited for the log */
        dp_counter parked_full;       /* requests that waited: DP_DISK_PARKED_MAX were parked */
        dp_counter waited;            /* agent and control completions that waited in place */
        dp_counter compactions;
        dp_counter compact_errors;
};

/* The datagram sessions' counters of a worker (dataplane/dp_dgram*.c). */
struct dp_dgram_stats {
        dp_counter sessions_opened;
        dp_counter sessions_closed;   /* by the peer (DESTROY of handle 0) */
        dp_counter sessions_expired;  /* the lease ran out */
        dp_counter sessions_refused;  /* max_sessions were open */
        dp_counter frames_in;         /* frames executed (copies answered from the window too) */
        dp_counter frames_out;        /* frames sent: answers and messages */
        dp_counter bad_frames;        /* truncated, bad header or lengths, bad op: dropped */
        dp_counter bad_crc;           /* no CRC or a wrong one: dropped */
        dp_counter spoofed;           /* unknown session, or another peer's: dropped */
        dp_counter retransmits;       /* copies of a request answered from the window */
        dp_counter stale;             /* requests older than the window: dropped */
        dp_counter busy;              /* requests held back (a ring was full): dropped, resent */
        dp_counter tx_dropped;        /* datagrams the backend refused (full) or too large */
        dp_counter request_timeouts;  /* requests answered -ETIMEDOUT */
};

/* A polled datagram backend's counters (a DPDK queue), added up from the
 * backend's own every DP_NET_STATS_NS: they carry on across dataplane
 * restarts, as the arena does. */
struct dp_nic_counters {
        dp_counter rx_pkts;
        dp_counter rx_malformed;
        dp_counter rx_bad_csum;
        dp_counter rx_not_for_us;
        dp_counter rx_other;
        dp_counter arp_replies;
        dp_counter icmp_replies;
        dp_counter tx_pkts;
        dp_counter tx_full;
        dp_counter tx_dropped;
        dp_counter no_mbufs;
};

/* A worker's counters: in the arena, one writer (the worker), read by
 * anyone with dp_counter_get. Whole cache-line pairs of their own per
 * worker, so the adjacent-line prefetcher does not pair them with a
 * neighbour's. */
struct dp_worker_stats {
        dp_counter loops;          /* passes of the loop */
        dp_counter work;           /* sum of what the passes returned */
        dp_counter cmds;           /* commands taken from the own ring */
        dp_counter executed;       /* commands executed on this shard */
        dp_counter forwarded;      /* commands sent to their owner */
        dp_counter cpls;           /* completions written */
        dp_counter mesh_in;        /* records taken from inbound mesh rings */
        dp_counter mesh_out;       /* records written to outbound mesh rings */
        dp_counter fanouts;        /* publishes received from other workers */
        dp_counter mesh_full;      /* times an input was held back: a mesh ring was full */
        dp_counter cpl_full;       /* times an input was held back: a completion ring was full */
        dp_counter bad_records;    /* malformed records counted and skipped/answered */
        dp_counter ring_errors;    /* -EPROTO from a ring (corrupt shared memory) */
        dp_counter cpl_lost;       /* completions that could not be written (corrupt ring) */
        dp_counter fetch_overflow; /* fetched messages too large for the completion */
        dp_counter deliveries;     /* dispatches handed to the delivery callback */
        dp_counter timers;         /* timers fired */
        struct dp_idle_counters idle;
        struct dp_nats_stats nats;
        struct dp_disk_counters disk;
        struct dp_dgram_stats dgram;
        struct dp_nic_counters nic;
        dp_counter net_errors;     /* the network backend's poll or flush failed (-errno
                                    * of io_uring_enter, a polled queue's poll) */
};
#define DP_WORKER_STATS_BYTES 640u
_Static_assert(sizeof(struct dp_worker_stats) <= DP_WORKER_STATS_BYTES, "stats fit their lines");

struct dp_worker;
struct dp_worker_agent;
struct dp_nats;
struct dp_dgram;
struct nic_uring;

/* Called on the worker's thread for every dispatch of its shard (a message
 * to an endpoint or a status). The message buffer is valid for the call;
 * read it with dp_shard_msg_view(dp_worker_shard(w), d->buf, ...) and take
 * a reference (shm_slab_ref) to keep it. */
typedef void dp_worker_deliver_fn(void *arg, struct dp_worker *w, const struct dp_dispatch *d);

struct dp_engine;

struct dp_worker {
        struct dp_engine *engine;
        uint32_t index;
        uint32_t workers;             /* N: the shard count */
        uint32_t clients;             /* the engine's client columns */
        uint32_t clients_all;         /* clients + agent slots: the columns a command may name */
        uint32_t agents;              /* agent slots (dp_agent.h) */
        uint32_t agents_live;         /* slots this worker serves now */
        uint32_t agents_epoch;        /* the engine's agents_epoch last synced */
        bool agents_synced;
        struct dp_worker_agent *agent;/* [agents]: views of each slot's rings */
        uint32_t *agent_live;         /* [agents]: the slots served, agents_live of them */
        struct shm_wake **doorbells;  /* [agents + 1]: their doorbells and net_wake, for
                                       * the idle sleep (dp_worker_extra_words) */
        struct shm_wake *net_wake;    /* the datagram column's word; NULL: none */
        bool blocked;                 /* the last pass held an input back */
        bool started;                 /* a thread was created (owner: the engine) */
        struct dp_shard shard;
        struct dp_worker_stats *stats;
        struct shm_mpsc cmd;          /* consumer view of the own command ring */
        struct shm_wake *wake;        /* the command ring's word: we sleep on it */
        struct shm_vring *cpl;        /* producer views, one per client */
        struct shm_wake **client_wake;/* the engine's per-client words */
        struct shm_vring *mesh_out;   /* producer views to worker j (j != index) */
        struct shm_vring *mesh_in;    /* consumer views from worker j (j != index) */
        struct shm_wake **peer_wake;  /* worker j's command-ring word */
        uint64_t *cpl_dirty;          /* clients to wake after this pass (bitmap) */
        uint64_t *mesh_dirty;         /* workers to wake after this pass (bitmap) */
        uint8_t *cmd_copy;            /* DP_CMD_BYTES_MAX: a command, copied out */
        uint8_t *cpl_scratch;         /* DP_CPL_BYTES_MAX: a fetch answer */
        struct dp_match_cache *match_cache; /* the shard's match results (dp_route.c) */
        dp_worker_deliver_fn *deliver;
        void *deliver_arg;
        struct nic_uring *nic;        /* the io_uring network backend; NULL: none */
        struct dp_nats *nats;         /* the NATS listener's sessions; NULL: none */
        struct dp_dgram *dgram;       /* the datagram sessions; NULL: none */
        struct dp_dgram_port *udp_port; /* the kernel UDP socket's sessions' port */
        void *dgram_q;                /* the polled backend's queue (engine dgram_nic) */
        struct nic_dgram_stats dgram_q_seen; /* its counters as last added to stats->nic */
        uint64_t dgram_q_stats_ns;    /* when */
        struct dp_dgram_port *dgram_q_port; /* its sessions' port */
        struct dp_disk *disk;         /* the disk tier's log; NULL: none (dp_disk.h) */
        bool disk_watched;            /* the NATS ring's sleep wakes for the log's I/O */
        uint32_t publish_origin;      /* endpoint whose publish is being matched now */
        uint64_t pub_seq;             /* numbers this worker's network publishes (pub_id) */
        uint64_t last_pub_id;         /* the id dp_worker_publish_msg gave its last publish */
        struct dp_groups *groups;     /* the engine's (dp_groups.h) */
        bool mesh_waiting;            /* inside dp_worker_publish_msg's wait for room */
        bool mesh_draining;           /* inside dp_worker_mesh_drain */
        struct dp_idle idle;
        _Atomic bool running;
        _Atomic int init_rc;          /* the thread's set-up: 0 pending, 1 done, < 0 failed */
        pthread_t thread;
};

/* One pass over everything this worker owns: timers, commands, mesh.
 * Returns the work done (> 0), 0 when idle, or a ring's -EPROTO when
 * nothing else was done (the ring is corrupt; counted in ring_errors). */
int dp_worker_do_work(struct dp_worker *w);

/* The runner: `while (running) dp_idle_run(&idle, dp_worker_do_work(w))`,
 * pinned first under --busy-poll=always. Ends when dp_worker_stop_signal
 * was called. */
void dp_worker_run(struct dp_worker *w);

/* Asks the runner to end after its pass and wakes it. Any thread. */
void dp_worker_stop_signal(struct dp_worker *w);

/* Is there input waiting (the idle strategy's re-check before sleeping)? */
bool dp_worker_ready(void *w);

static inline struct dp_shard *dp_worker_shard(struct dp_worker *w)
{
        return &w->shard;
}

#endif /* ATOMQ_DP_WORKER_H */
