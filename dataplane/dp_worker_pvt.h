/* dp_worker_pvt.h - what the worker's files (dp_worker.c, dp_worker_exec.c,
 * dp_worker_mesh.c) and dp_engine.c share and nobody else needs. */
#ifndef ATOMQ_DP_WORKER_PVT_H
#define ATOMQ_DP_WORKER_PVT_H

#include "dataplane/dp_engine.h"
#include "dataplane/dp_worker.h"

/* What handling one input record came to. */
enum dp_take {
        DP_TAKE_DONE = 0, /* handled (or counted and skipped): release it */
        DP_TAKE_HOLD = 1, /* an output ring is full: leave it, stop this input */
        DP_TAKE_DROP = 2, /* not executed, counted (a corrupt completion ring): release it */
};

/* The largest frame a command can carry: what a fetch answer must still
 * have room for before it takes one more message. */
#define DP_CMD_FRAME_MAX (DP_CMD_BYTES_MAX - (uint32_t)sizeof(struct dp_cmd))

/* Subscription ids handed to clients: the shard in the handle's shard bits
 * (so unsubscribe routes like a handle), the trie's id in the slot bits,
 * generation 1 so an id is never 0. */
static inline uint64_t dp_sub_id_make(uint32_t shard, uint32_t trie_id)
{
        return dp_handle_make(shard, trie_id, 1);
}

static inline void dp_bit_set(uint64_t *map, uint32_t i)
{
        map[i / 64] |= 1ull << (i % 64);
}

/* A worker's view of one agent slot (dp_worker_agent.c). */
struct dp_worker_agent {
        bool live;                    /* served: views open */
        bool bad;                     /* its memory was found corrupt: not read again */
        uint32_t gen;                 /* the tenant the views are for */
        uint32_t acked_gen;           /* the last tenant whose close this worker acked */
        uint32_t endpoint;            /* dp_agent_endpoint(slot, gen) */
        struct shm_vring cmd;         /* consumer */
        struct shm_vring cpl;         /* producer */
        struct shm_vring dlv;         /* producer */
        struct shm_agent_hdr *hdr;
        struct shm_wake *doorbell;    /* the agent wakes this worker here */
        int efd;
        bool dlv_pending;             /* a delivery since the last wake: the eventfd may fire */
};

/* dp_worker.c */

/* Runs one command copied to buf (len bytes as the ring said; at most
 * DP_CMD_BYTES_MAX of them copied): parse, then execute here, forward to
 * its owner, or fan out. from_agent: a command of another owner is
 * answered -EXDEV instead of forwarded. */
enum dp_take dp_worker_cmd_run(struct dp_worker *w, uint8_t *buf, uint32_t len, bool from_agent);

/* Sets up worker index of e. format: formats its shard in shard_mem with
 * cfg->shard; otherwise re-attaches the shard found there (a restarted
 * dataplane, dp_engine_attach). -ENOMEM, errors of dp_shard_init or
 * dp_shard_attach, and of dp_idle_init. */
int dp_worker_init(struct dp_worker *w, struct dp_engine *e, uint32_t index, void *shard_mem,
                   size_t shard_len, const struct dp_engine_config *cfg, bool format);
void dp_worker_fini(struct dp_worker *w);

/* dp_worker_exec.c */

/* Executes a command this worker owns (or, for a publish, matches it on
 * this shard) and writes its completion. DP_TAKE_HOLD when the client's
 * completion ring has no room, DP_TAKE_DROP when it is corrupt: in both
 * cases nothing was done. */
enum dp_take dp_worker_exec(struct dp_worker *w, const struct dp_cmd_view *v);

/* Answers a command with status alone. DP_TAKE_HOLD and DP_TAKE_DROP as
 * dp_worker_exec. */
enum dp_take dp_worker_fail(struct dp_worker *w, const struct dp_cmd *h, int status);

/* dp_worker_mesh.c */

/* Sends a command (rec, len bytes) to its owner through the mesh.
 * DP_TAKE_HOLD when the mesh ring to the owner has no room. */
enum dp_take dp_worker_forward(struct dp_worker *w, uint32_t owner, const void *rec,
                               uint32_t len);

/* Publishes a command from the own ring: matched here and fanned out to
 * every other worker, all or nothing. DP_TAKE_HOLD when a mesh ring or the
 * completion ring has no room (nothing was done). */
enum dp_take dp_worker_publish(struct dp_worker *w, const struct dp_cmd_view *v,
                               const void *rec, uint32_t len);

/* How long a publish from the network waits for room in a full mesh ring
 * (draining its own inbound rings meanwhile) before it is dropped and
 * counted: a network client cannot be held back inside a read. */
#define DP_MESH_WAIT_NS (50ull * 1000 * 1000)

/* Publishes a message that arrived on this worker from the network: matched
 * here and fanned out to every other worker as a publish command, all or
 * nothing. m's subject must have passed dp_subject_check (every caller
 * checks what its client sent once; the shard does not check again).
 * origin is the publishing endpoint (deliveries to it see it in
 * w->publish_origin: echo suppression), 0 for none. Returns the deliveries on
 * this shard (>= 0), -ENOBUFS when a mesh ring stayed full for
 * DP_MESH_WAIT_NS (nothing was done), -EMSGSIZE when the message exceeds a
 * frame's bounds, or an error of dp_shard_publish. */
int dp_worker_publish_msg(struct dp_worker *w, const struct dp_msg_in *m, uint32_t origin,
                          uint32_t flags);
/* Sends message m to worker owner alone as a record of type `type` (a
 * publish command), or, when it is too large for one, by reference to a
 * buffer of this shard as a record of type ref_type (struct dp_mesh_ref).
 * 0, -ENOBUFS (the ring is full), -EMSGSIZE, or a buffer error. */
int dp_worker_forward_msg(struct dp_worker *w, uint32_t owner, const struct dp_msg_in *m,
                          uint32_t type, uint32_t ref_type);

/* flags of dp_worker_publish_msg: every other worker answers how many it
 * delivered (DP_REC_MESH_COUNT, dp_nats_count_reply): a request's "no
 * responders" over all shards. The publish's id is left in w->last_pub_id. */
#define DP_PUB_F_COUNT 1u

/* Takes up to DP_MESH_BURST records from each inbound mesh ring. Returns
 * the records taken, or -EPROTO when a ring is corrupt and none was. */
int dp_worker_mesh_drain(struct dp_worker *w);

/* dp_worker_agent.c */

/* Looks at the agent slots again when atomqd changed one. */
void dp_worker_agents_sync(struct dp_worker *w);

/* Takes commands from every served agent. Returns the count. */
int dp_worker_agents_drain(struct dp_worker *w);

/* The words the idle sleep waits on beside its own: the served agents'
 * doorbells and w->net_wake. */
void dp_worker_extra_words(struct dp_worker *w);

/* Does an agent's ring hold a command, or did a slot change? */
bool dp_worker_agents_ready(struct dp_worker *w);

/* Writes a delivery to an agent endpoint's ring. false: dropped (the
 * agent left, its ring is full or corrupt; counted). */
bool dp_worker_agent_deliver(struct dp_worker *w, const struct dp_dispatch *d);

/* Wakes agent slot (its futex word, and its eventfd when it polls). */
void dp_worker_agent_wake(struct dp_worker *w, uint32_t slot);

/* The completion ring of client (an engine column or an agent slot), or
 * NULL for an agent that is gone or bad. */
struct shm_vring *dp_worker_cpl_ring(struct dp_worker *w, uint32_t client);

/* Per-agent entity quota: room for one more entity created by client
 * (an agent column; others have no quota), -EDQUOT when there is none;
 * then, after the create, made records rc: the entity is the agent's, or
 * the room is given back. dp_worker_agent_disown (the shard's disown
 * callback) gives it back when the entity goes, whatever destroys it. */
int dp_worker_agent_entity_take(struct dp_worker *w, uint16_t client);
void dp_worker_agent_entity_made(struct dp_worker *w, uint16_t client, int rc, uint64_t handle);
void dp_worker_agent_disown(void *arg, uint8_t owner);

/* A completion ring answered -EPROTO: an agent's is marked bad. */
void dp_worker_cpl_corrupt(struct dp_worker *w, uint32_t client);

/* dp_worker_net.c */

/* The longest idle sleep of a worker that polls a DPDK queue (adaptive
 * idle; --busy-poll=always never sleeps): what a frame may wait in the
 * NIC's ring when the worker was idle. */
#define DP_NET_POLL_NS (100ull * 1000)
/* How often a polled backend's counters reach the arena. */
#define DP_NET_STATS_NS (100ull * 1000 * 1000)

/* Opens the worker's network (on its own thread): the io_uring backend
 * with the NATS listener and/or the datagram socket the engine's config
 * asks for, the protocol layers on it, and the idle sleep on its ring.
 * 0 when neither is asked for. Errors of nic_uring_init, dp_nats_init,
 * dp_dgram_init; -EINVAL: datagrams in an arena without net columns. */
int dp_worker_net_open(struct dp_worker *w);
void dp_worker_net_close(struct dp_worker *w);
/* Takes what the backend received (the protocols' callbacks run here) and
 * runs their timed work. Returns the work done. */
int dp_worker_net_poll(struct dp_worker *w, uint64_t now_ns);
/* Sends what the pass produced: one submit. */
void dp_worker_net_flush(struct dp_worker *w);

#endif /* ATOMQ_DP_WORKER_PVT_H */
