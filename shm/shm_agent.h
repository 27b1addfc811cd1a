/* shm_agent.h - the memory one agent shares with the dataplane: its own
 * memfd, nothing else of the appliance.
 *
 * atomqd creates one such file per agent slot at start (--max-agents) and
 * hands it to the agent that attaches to the slot (SCM_RIGHTS over the
 * control socket) and to the dataplane (inherited at exec). The agent maps
 * only this file: it cannot see the arena, the shards, or another agent's
 * messages. Everything in it is agent-writable, so the dataplane reads it
 * through views that hold their own geometry (computed from the arena, never
 * from this header) and validates every record before use.
 *
 *   0        struct shm_agent_hdr: geometry as atomqd formatted it, the
 *            agent's wake word, the poll flag, the revoked word
 *   +        N doorbells, one line each: the agent wakes worker w
 *   hdr_bytes   per worker w, three rings (shm_vring):
 *               cmd[w]  agent -> worker w: commands (struct dp_cmd records)
 *               cpl[w]  worker w -> agent: completions (struct dp_cpl)
 *               dlv[w]  worker w -> agent: deliveries (struct shm_agent_dlv
 *                       followed by an atomq frame)
 *
 * shm_agent_layout() is the one function both sides use to place the rings.
 */
#ifndef ATOMQ_SHM_AGENT_H
#define ATOMQ_SHM_AGENT_H

#include <stdatomic.h>
#include <stdint.h>

#include "shm/shm_base.h"
#include "shm/shm_wake.h"

#define SHM_AGENT_MAGIC 0x544e454741514d41ull /* "AMQAGENT" */
#define SHM_AGENT_VERSION 1
/* Most workers an agent file has doorbells and rings for. */
#define SHM_AGENT_WORKERS_MAX 64u
/* Ring record types (the vring's type word). */
#define SHM_AGENT_REC_DLV 0x31564c44u /* "DLV1": a delivery */

/* Written by atomqd when it gives the slot to an agent. The agent may
 * scribble over all of it: it can only hurt itself. */
struct shm_agent_hdr {
        uint64_t magic;
        uint32_t version;
        uint32_t workers;
        uint32_t slot;
        uint32_t gen;
        uint32_t cmd_ring_bytes;
        uint32_t cpl_ring_bytes;
        uint32_t dlv_ring_bytes;
        uint32_t reserved;
        uint64_t file_bytes;
        SHM_ALIGNED_LINE struct shm_wake wake;    /* workers -> agent: completions, deliveries */
        SHM_ALIGNED_LINE _Atomic uint32_t armed;  /* agent polls its eventfd: workers write it */
        SHM_ALIGNED_LINE _Atomic uint32_t revoked;/* atomqd took the slot back */
        uint32_t reserved2;
        _Atomic uint64_t dropped;                 /* workers: deliveries dropped, ring full */
};
_Static_assert(sizeof(struct shm_agent_hdr) == 4 * SHM_CACHE_LINE, "agent header is four lines");
_Static_assert(offsetof(struct shm_agent_hdr, wake) == SHM_CACHE_LINE, "agent wake line");
_Static_assert(offsetof(struct shm_agent_hdr, armed) == 2 * SHM_CACHE_LINE, "agent armed line");

/* The head of a delivery record; the atomq frame follows (op MSG, handle:
 * the entity delivered from or 0, seq, reply handle, sections). A status
 * delivery (no responders, timeout) has status set and an empty frame. */
struct shm_agent_dlv {
        uint32_t sid;       /* the agent's subscription/watch id */
        uint16_t status;    /* 0, 503 (no responders), 408 (timeout) */
        uint16_t reserved;
        uint64_t entity;    /* handle delivered from; 0 for a subject publish */
};
_Static_assert(sizeof(struct shm_agent_dlv) == 16, "delivery head");

/* Where things are in an agent file. */
struct shm_agent_layout {
        uint64_t doorbell_off;   /* N lines */
        uint64_t rings_off;      /* first ring */
        uint64_t cmd_stride, cpl_stride, dlv_stride;
        uint64_t worker_stride;  /* cmd + cpl + dlv */
        uint64_t file_bytes;     /* page-rounded */
};

/* Fills l for an agent file of `workers` workers and these ring sizes.
 * -EINVAL: workers 0 or above SHM_AGENT_WORKERS_MAX, a ring size that
 * shm_vring refuses. */
int shm_agent_layout(uint32_t workers, uint32_t cmd_ring_bytes, uint32_t cpl_ring_bytes,
                     uint32_t dlv_ring_bytes, struct shm_agent_layout *l);

static inline uint64_t shm_agent_cmd_off(const struct shm_agent_layout *l, uint32_t w)
{
        return l->rings_off + w * l->worker_stride;
}

static inline uint64_t shm_agent_cpl_off(const struct shm_agent_layout *l, uint32_t w)
{
        return shm_agent_cmd_off(l, w) + l->cmd_stride;
}

static inline uint64_t shm_agent_dlv_off(const struct shm_agent_layout *l, uint32_t w)
{
        return shm_agent_cpl_off(l, w) + l->cpl_stride;
}

#endif /* ATOMQ_SHM_AGENT_H */
