/* dp_agent.h - agent slots: who may use which agent file, and the handshake
 * by which atomqd gives a slot to an agent and takes it back.
 *
 * An engine configured with A agent slots has, per slot, one agent file
 * (shm/shm_agent.h: a memfd with the agent's rings and doorbells) and one
 * eventfd (the agent's pollable descriptor), both created by atomqd at
 * start and inherited by the dataplane at exec, and one struct dp_agent_slot
 * in the arena's dp.engine region, which agents never see.
 *
 *   state     FREE --atomqd: attach--> LIVE --atomqd: detach--> CLOSING
 *             CLOSING --every worker acked--> FREE (atomqd reaps it)
 *
 * atomqd formats the file, bumps gen, then stores LIVE with a release and
 * bumps the engine's agents_epoch; a worker that sees the epoch move looks
 * at every slot: a LIVE slot of a new gen gets views and is polled; a slot
 * no longer LIVE is purged from the worker's shard (its subscriptions and
 * bindings) and the worker sets its bit in acks. Only when all N bits are
 * set does atomqd free the slot, so no worker still reads a file atomqd
 * formats for the next agent. A worker that finds the agent's memory
 * corrupt stops reading it and sets its bit in bad; atomqd then detaches the
 * agent (and counts it).
 *
 * An agent is the endpoint dp_agent_endpoint(slot, gen): deliveries to an
 * endpoint of an older gen are dropped, so a slot's next tenant never sees
 * its predecessor's messages.
 */
#ifndef ATOMQ_DP_AGENT_H
#define ATOMQ_DP_AGENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "shm/shm_agent.h"

/* Slots an engine may have: the wait of an idle worker watches its own
 * word plus one doorbell per slot, and futex_waitv takes at most 128. */
#define DP_AGENTS_MAX 127u
/* Ring sizes of an agent file, per worker. A completion ring must hold the
 * largest completion (a fetch answer), a command ring the largest command. */
#define DP_AGENT_CMD_RING_BYTES (64u * 1024)
#define DP_AGENT_CPL_RING_BYTES (128u * 1024)
#define DP_AGENT_DLV_RING_BYTES_DEFAULT (256u * 1024)

/* Agent endpoints: bit 30 set, then 14 bits of gen and 8 of slot (slot
 * < 128 needs 7). Below DP_ENDPOINT_MAX; connections use ids below 2^30. */
#define DP_AGENT_ENDPOINT_BIT (1u << 30)

enum dp_agent_state {
        DP_AGENT_FREE = 0,
        DP_AGENT_LIVE = 1,
        DP_AGENT_CLOSING = 2,
};

/* One slot, in the arena; written by atomqd (state, gen, pid, uid, quotas)
 * and by workers (acks, bad, subs, entities, counters). One line. */
struct dp_agent_slot {
        _Atomic uint32_t state;      /* enum dp_agent_state */
        uint32_t gen;                /* tenant number, never 0 */
        int32_t pid;
        uint32_t uid;
        _Atomic uint64_t acks;       /* CLOSING: workers done with it (bit w) */
        _Atomic uint64_t bad;        /* workers that found its memory corrupt */
        _Atomic uint32_t subs;       /* subscriptions and watches it holds */
        uint32_t max_subs;           /* quota; 0: none */
        _Atomic uint64_t cmds;       /* commands taken from it */
        _Atomic uint64_t dlv_drops;  /* deliveries dropped: its ring was full */
        _Atomic uint32_t entities;   /* entities it created that still live */
        uint32_t max_entities;       /* quota; 0: none */
};
_Static_assert(sizeof(struct dp_agent_slot) == 64, "an agent slot is one line");

/* A slot's file and eventfd as one process holds them. */
struct dp_agent_file {
        int fd;                      /* the memfd, -1: none */
        int efd;                     /* the eventfd, -1: none */
        uint8_t *map;                /* the whole file, shared read-write */
        uint64_t bytes;
};

static inline uint32_t dp_agent_endpoint(uint32_t slot, uint32_t gen)
{
        return DP_AGENT_ENDPOINT_BIT | (gen & 0x3fffu) << 8 | (slot & 0xffu);
}

/* Bit 30 with bit 29 clear: both set is a datagram session's
 * (dp_dgram.h). */
static inline bool dp_agent_endpoint_is(uint32_t endpoint)
{
        return (endpoint & (DP_AGENT_ENDPOINT_BIT | 1u << 29)) == DP_AGENT_ENDPOINT_BIT;
}

static inline uint32_t dp_agent_endpoint_slot(uint32_t endpoint)
{
        return endpoint & 0xffu;
}

struct dp_engine;

/* atomqd: creates the memfd (sealed at its size) and eventfd of every slot
 * and maps them. -ENOMEM, -EMFILE and other -errno of memfd_create, eventfd,
 * ftruncate, fcntl, mmap. */
int dp_agent_files_create(struct dp_engine *e);

/* The dataplane: adopts the inherited descriptors fd_base + 2 * slot
 * (memfd) and fd_base + 2 * slot + 1 (eventfd) and maps them; each must be
 * a memfd of exactly the expected size, sealed against resizing, and an
 * eventfd. -EBADF: a descriptor missing or of the wrong kind; -EBADMSG: a
 * file of the wrong size or unsealed. */
int dp_agent_files_adopt(struct dp_engine *e, int fd_base);

/* Both: unmaps and closes what the engine holds. */
void dp_agent_files_close(struct dp_engine *e);

/* The geometry of e's agent files. */
void dp_agent_layout_of(const struct dp_engine *e, struct shm_agent_layout *l);

/* atomqd: gives a free slot to an agent (pid, uid): formats its file,
 * publishes it LIVE and wakes the workers. *slot and *gen tell the agent
 * which. -EUSERS: every slot is taken (or still closing). */
struct dp_agent_quota {
        uint32_t max_subs;           /* subscriptions and watches; 0: none */
        uint32_t max_entities;       /* entities created and still alive; 0: none */
};

int dp_agent_open(struct dp_engine *e, int32_t pid, uint32_t uid,
                  const struct dp_agent_quota *q, uint32_t *slot, uint32_t *gen);

/* atomqd: takes slot back (LIVE -> CLOSING), marks the file revoked and
 * wakes the workers and the agent. Idempotent. */
void dp_agent_close(struct dp_engine *e, uint32_t slot);

/* atomqd: frees a CLOSING slot whose workers have all acked. Returns true
 * when the slot is FREE afterwards. */
bool dp_agent_reap(struct dp_engine *e, uint32_t slot);

/* Is slot marked bad by some worker? */
bool dp_agent_bad(const struct dp_engine *e, uint32_t slot);

/* The arena record of slot (< the engine's agents). */
struct dp_agent_slot *dp_agent_slot_at(const struct dp_engine *e, uint32_t slot);

#endif /* ATOMQ_DP_AGENT_H */
