/* dp_worker_agent.c - a worker's side of the agents (dp_agent.h): which
 * slots it serves, reading their command rings, writing their completions
 * and deliveries, waking them, and letting go of them.
 *
 * Everything in an agent file is agent-writable. The worker's views hold
 * their own geometry (the sizes come from the arena, and a view whose ring
 * header disagrees is refused), a command is copied out of the ring before
 * it is parsed, and the fields that say who the agent is (the client
 * column, its endpoint) are overwritten in the copy: an agent can act only
 * as itself. A ring that reports an impossible index (-EPROTO) marks the
 * agent bad: the worker stops reading it, and atomqd disconnects it.
 *
 * An agent's command runs on the worker it was submitted to (libatomq sends
 * each to its owner); one meant for another worker is answered -EXDEV
 * rather than forwarded, so an agent that stops reading its completions
 * holds back only its own command ring, never a mesh ring every agent
 * shares.
 */
#include "dataplane/dp_worker_pvt.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

/* Commands taken from one agent's ring per pass: enough to keep up with a
 * busy agent, few enough that one agent cannot starve the others. */
#define DP_AGENT_BURST 64u

static void dp_worker_agent_mark_bad(struct dp_worker *w, uint32_t slot)
{
        struct dp_worker_agent *a = &w->agent[slot];
        if (a->bad)
                return;
        a->bad = true;
        dp_counter_inc(&w->stats->ring_errors);
        struct dp_agent_slot *s = dp_agent_slot_at(w->engine, slot);
        atomic_fetch_or_explicit(&s->bad, 1ull << w->index, memory_order_relaxed);
}

/* Views of slot's three rings for this worker, each checked against the
 * size the arena says it has. */
static int dp_worker_agent_open(struct dp_worker *w, uint32_t slot, uint32_t gen)
{
        struct dp_engine *e = w->engine;
        struct dp_worker_agent *a = &w->agent[slot];
        struct shm_agent_layout l;
        uint8_t *base = e->agent_files[slot].map;
        dp_agent_layout_of(e, &l);
        int rc = shm_vring_attach(&a->cmd, base + shm_agent_cmd_off(&l, w->index), l.cmd_stride);
        if (rc == 0)
                rc = shm_vring_attach(&a->cpl, base + shm_agent_cpl_off(&l, w->index),
                                      l.cpl_stride);
        if (rc == 0)
                rc = shm_vring_attach(&a->dlv, base + shm_agent_dlv_off(&l, w->index),
                                      l.dlv_stride);
        if (rc == 0 && (a->cmd.capacity != DP_AGENT_CMD_RING_BYTES ||
                        a->cpl.capacity != DP_AGENT_CPL_RING_BYTES ||
                        a->dlv.capacity != e->hdr->agent_dlv_ring_bytes))
                rc = -EPROTO;
        a->hdr = (struct shm_agent_hdr *)base;
        a->doorbell = (struct shm_wake *)(base + l.doorbell_off + w->index * SHM_CACHE_LINE);
        /* Only this worker ever sleeps on this doorbell, and it is awake:
         * a count left raised by a dataplane killed in its sleep would make
         * every submit of the agent pay a futex syscall. */
        atomic_store_explicit(&a->doorbell->sleepers, 0, memory_order_relaxed);
        a->efd = e->agent_files[slot].efd;
        a->gen = gen;
        a->endpoint = dp_agent_endpoint(slot, gen);
        a->bad = false;
        a->live = true;
        if (rc != 0)
                dp_worker_agent_mark_bad(w, slot);
        return rc;
}

/* Lets go of whatever this shard holds for endpoint: subscriptions,
 * watches, channel ends. */
static void dp_worker_agent_purge(struct dp_worker *w, uint32_t slot, uint32_t endpoint)
{
        /* Its entities live on (a mailbox until its TTL), owned by nobody:
         * the slot's next tenant starts its quota at zero. */
        (void)dp_shard_disown_all(&w->shard, (uint8_t)(slot + 1));
        uint32_t n = dp_shard_purge_endpoint(&w->shard, endpoint);
        struct dp_agent_slot *s = dp_agent_slot_at(w->engine, slot);
        /* The quota count goes down by what this shard held; it never
         * underflows, since it went up once per subscription here. */
        if (n > 0)
                atomic_fetch_sub_explicit(&s->subs, n, memory_order_relaxed);
}

/* One slot, after the epoch moved. */
static void dp_worker_agent_sync_one(struct dp_worker *w, uint32_t slot)
{
        struct dp_agent_slot *s = dp_agent_slot_at(w->engine, slot);
        struct dp_worker_agent *a = &w->agent[slot];
        /* Pairs with the release store of state in dp_agent_open and
         * dp_agent_close: gen and the formatted file are seen with it. */
        uint32_t st = atomic_load_explicit(&s->state, memory_order_acquire);
        uint32_t gen = s->gen;
        if (st == DP_AGENT_LIVE && a->live && a->gen == gen)
                return;
        if (a->live) {
                dp_worker_agent_purge(w, slot, a->endpoint);
                a->live = false;
        }
        if (st == DP_AGENT_LIVE) {
                (void)dp_worker_agent_open(w, slot, gen);
                return;
        }
        if (st == DP_AGENT_CLOSING && a->acked_gen != gen) {
                /* Also when this worker never saw it live (a dataplane
                 * restarted meanwhile): its shard may hold the agent's
                 * subscriptions from before. */
                dp_worker_agent_purge(w, slot, dp_agent_endpoint(slot, gen));
                a->acked_gen = gen;
                /* Pairs with the acquire load of acks in dp_agent_reap:
                 * this worker is done with the file before atomqd reuses it. */
                atomic_fetch_or_explicit(&s->acks, 1ull << w->index, memory_order_release);
        }
}

void dp_worker_agents_sync(struct dp_worker *w)
{
        if (w->agents == 0)
                return;
        /* Pairs with the release increment in dp_agent_epoch_bump. */
        uint32_t epoch = atomic_load_explicit(&w->engine->hdr->agents_epoch, memory_order_acquire);
        if (w->agents_synced && epoch == w->agents_epoch)
                return;
        w->agents_epoch = epoch;
        w->agents_synced = true;
        w->agents_live = 0;
        for (uint32_t i = 0; i < w->agents; i++) {
                dp_worker_agent_sync_one(w, i);
                if (w->agent[i].live) {
                        w->agent_live[w->agents_live] = i;
                        w->doorbells[w->agents_live] = w->agent[i].doorbell;
                        w->agents_live++;
                }
        }
        dp_worker_extra_words(w);
}

void dp_worker_extra_words(struct dp_worker *w)
{
        uint32_t n = w->agents_live;
        if (w->net_wake != NULL)
                w->doorbells[n++] = w->net_wake;
        w->idle.extra = w->doorbells;
        w->idle.extra_count = n;
}

struct shm_vring *dp_worker_cpl_ring(struct dp_worker *w, uint32_t client)
{
        if (client < w->clients)
                return &w->cpl[client];
        struct dp_worker_agent *a = &w->agent[client - w->clients];
        return a->live && !a->bad ? &a->cpl : NULL;
}

void dp_worker_cpl_corrupt(struct dp_worker *w, uint32_t client)
{
        if (client >= w->clients)
                dp_worker_agent_mark_bad(w, client - w->clients);
}

/* Makes the command copied from agent slot's ring speak for that agent
 * only: its client column and, where the op names one, its endpoint. */
static void dp_worker_agent_stamp(struct dp_worker *w, uint32_t slot, struct dp_cmd *c)
{
        uint32_t endpoint = w->agent[slot].endpoint;
        c->client = (uint16_t)(w->clients + slot);
        switch (c->op) {
        case ATOMQ_OP_SUB:
                c->args.sub.endpoint = endpoint;
                break;
        case DP_OP_BIND:
        case DP_OP_UNBIND:
                c->args.bind.endpoint = endpoint;
                break;
        case ATOMQ_OP_REQUEST:
                c->args.request.endpoint = endpoint;
                break;
        default:
                break;
        }
}

/* Up to DP_AGENT_BURST commands from one agent. */
static int dp_worker_agent_drain_one(struct dp_worker *w, uint32_t slot)
{
        struct dp_worker_agent *a = &w->agent[slot];
        struct dp_agent_slot *s = dp_agent_slot_at(w->engine, slot);
        int work = 0;
        for (unsigned n = 0; n < DP_AGENT_BURST && !a->bad; n++) {
                struct shm_vring_rec rec;
                int rc = shm_vring_peek(&a->cmd, &rec);
                if (rc == 0)
                        break;
                if (rc < 0) {
                        dp_worker_agent_mark_bad(w, slot);
                        break;
                }
                enum dp_take t = DP_TAKE_DONE;
                if (rec.type != DP_REC_CMD || rec.len < sizeof(struct dp_cmd)) {
                        dp_counter_inc(&w->stats->bad_records);
                } else {
                        uint32_t copy = rec.len < DP_CMD_BYTES_MAX ? rec.len : DP_CMD_BYTES_MAX;
                        memcpy(w->cmd_copy, rec.data, copy);
                        dp_worker_agent_stamp(w, slot, (struct dp_cmd *)w->cmd_copy);
                        t = dp_worker_cmd_run(w, w->cmd_copy, rec.len, true);
                }
                if (t == DP_TAKE_HOLD) {
                        w->blocked = true;
                        break;
                }
                shm_vring_release(&a->cmd);
                work++;
        }
        /* One add per burst, not per command: a locked add waits for every
         * store ahead of it to leave the store buffer, and those are ring
         * lines the agent is reading (a transfer between cores each). Per
         * command it was a fifth of a worker's time under a publish flood. */
        if (work > 0)
                atomic_fetch_add_explicit(&s->cmds, (uint64_t)work, memory_order_relaxed);
        return work;
}

int dp_worker_agents_drain(struct dp_worker *w)
{
        int work = 0;
        for (uint32_t i = 0; i < w->agents_live; i++)
                work += dp_worker_agent_drain_one(w, w->agent_live[i]);
        return work;
}

bool dp_worker_agents_ready(struct dp_worker *w)
{
        struct shm_vring_rec rec;
        for (uint32_t i = 0; i < w->agents_live; i++) {
                struct dp_worker_agent *a = &w->agent[w->agent_live[i]];
                if (!a->bad && shm_vring_peek(&a->cmd, &rec) != 0)
                        return true;
        }
        /* A slot opened or closed is work too. */
        return w->agents > 0 &&
               atomic_load_explicit(&w->engine->hdr->agents_epoch, memory_order_relaxed) !=
                       w->agents_epoch;
}

bool dp_worker_agent_deliver(struct dp_worker *w, const struct dp_dispatch *d)
{
        uint32_t slot = dp_agent_endpoint_slot(d->endpoint);
        if (slot >= w->agents)
                return false;
        struct dp_worker_agent *a = &w->agent[slot];
        if (!a->live || a->bad || a->endpoint != d->endpoint)
                return false;
        struct atomq_frame f;
        const uint8_t *data = NULL;
        uint32_t len = 0;
        if (d->buf != SHM_BUF_NONE) {
                data = shm_slab_data(&w->shard.bufs, d->buf, &len);
                if (data == NULL || len < sizeof(f))
                        return false;
                memcpy(&f, data, sizeof(f));
        } else {
                atomq_frame_init(&f, ATOMQ_OP_MSG, 0, 0, 0);
                len = sizeof(f);
        }
        f.op = ATOMQ_OP_MSG;
        f.handle = d->entity;
        f.seq = d->seq;
        struct shm_agent_dlv *p = shm_vring_reserve(&a->dlv, (uint32_t)sizeof(*p) + len);
        if (p == NULL) {
                if (a->dlv.reserve_err == -EPROTO)
                        dp_worker_agent_mark_bad(w, slot);
                else {
                        atomic_fetch_add_explicit(&dp_agent_slot_at(w->engine, slot)->dlv_drops, 1,
                                                  memory_order_relaxed);
                        /* The agent's own copy, for atomq_dropped. */
                        atomic_fetch_add_explicit(&a->hdr->dropped, 1, memory_order_relaxed);
                }
                return false;
        }
        *p = (struct shm_agent_dlv){ .sid = d->sid, .status = d->status, .entity = d->entity };
        memcpy(p + 1, &f, sizeof(f));
        if (len > sizeof(f))
                memcpy((uint8_t *)(p + 1) + sizeof(f), data + sizeof(f), len - sizeof(f));
        shm_vring_commit(&a->dlv, SHM_AGENT_REC_DLV);
        a->dlv_pending = true;
        dp_bit_set(w->cpl_dirty, w->clients + slot);
        return true;
}

void dp_worker_agent_wake(struct dp_worker *w, uint32_t slot)
{
        struct dp_worker_agent *a = &w->agent[slot];
        if (!a->live)
                return;
        shm_wake_notify(&a->hdr->wake);
        /* The eventfd says "a delivery is there", so completions alone do
         * not fire it. The fence in shm_wake_notify orders our records
         * before this load; pairs with the agent's store of armed and its
         * re-check of the rings (atomq_poll_arm). */
        if (!a->dlv_pending)
                return;
        a->dlv_pending = false;
        if (atomic_load_explicit(&a->hdr->armed, memory_order_relaxed) != 0 &&
            atomic_exchange_explicit(&a->hdr->armed, 0, memory_order_relaxed) != 0) {
                uint64_t one = 1;
                (void)!write(a->efd, &one, sizeof(one));
        }
}

void dp_worker_agent_disown(void *arg, uint8_t owner)
{
        struct dp_worker *w = arg;
        if (owner == 0 || owner > w->agents)
                return;
        atomic_fetch_sub_explicit(&dp_agent_slot_at(w->engine, owner - 1u)->entities, 1,
                                  memory_order_relaxed);
}

int dp_worker_agent_entity_take(struct dp_worker *w, uint16_t client)
{
        if (client < w->clients)
                return 0;
        struct dp_agent_slot *s = dp_agent_slot_at(w->engine, client - w->clients);
        uint32_t n = atomic_fetch_add_explicit(&s->entities, 1, memory_order_relaxed);
        if (s->max_entities != 0 && n >= s->max_entities) {
                atomic_fetch_sub_explicit(&s->entities, 1, memory_order_relaxed);
                return -EDQUOT;
        }
        return 0;
}

void dp_worker_agent_entity_made(struct dp_worker *w, uint16_t client, int rc, uint64_t handle)
{
        if (client < w->clients)
                return;
        uint32_t slot = client - w->clients;
        if (rc == 0 && dp_shard_set_owner(&w->shard, handle, (uint8_t)(slot + 1)) == 0)
                return;
        atomic_fetch_sub_explicit(&dp_agent_slot_at(w->engine, slot)->entities, 1,
                                  memory_order_relaxed);
}
