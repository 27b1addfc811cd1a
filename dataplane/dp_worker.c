/* dp_worker.c - the worker loop: one pass over the worker's timers, its
 * command ring and its inbound mesh rings, and the runner around it.
 *
 * A command taken from the own ring is copied out first (its producers are
 * clients, which may write the ring while we read it), parsed, and then
 * executed here, forwarded to its owner, or fanned out (a publish). Each
 * record is released only once handled, so a command held back by a full
 * output ring is simply found again by the next pass (dp_worker_mesh.c
 * explains the choice).
 */
#include "dataplane/dp_worker_pvt.h"

#include "dataplane/dp_groups.h"
#include "dataplane/dp_dgram.h"
#include "dataplane/dp_disk.h"
#include "dataplane/dp_nats.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "shm/shm_clock.h"

static void dp_worker_on_deliver(void *arg, const struct dp_dispatch *d)
{
        struct dp_worker *w = arg;
        dp_counter_inc(&w->stats->deliveries);
        if (dp_agent_endpoint_is(d->endpoint)) {
                (void)dp_worker_agent_deliver(w, d);
                return;
        }
        if (w->dgram != NULL && dp_dgram_endpoint_is(d->endpoint)) {
                dp_dgram_deliver(w->dgram, d);
                return;
        }
        if (w->nats != NULL && dp_nats_endpoint_is(d->endpoint)) {
                dp_nats_deliver(w->nats, d);
                return;
        }
        if (w->deliver != NULL)
                w->deliver(w->deliver_arg, w, d);
}

static bool dp_worker_group_gate(void *arg, uint32_t group, uint64_t pub_id)
{
        struct dp_worker *w = arg;
        return w->groups == NULL || dp_groups_serve(w->groups, group, w->index, pub_id);
}

static uint32_t dp_bitmap_words(uint32_t bits)
{
        return (bits + 63) / 64;
}

int dp_worker_init(struct dp_worker *w, struct dp_engine *e, uint32_t index, void *shard_mem,
                   size_t shard_len, const struct dp_engine_config *cfg, bool format)
{
        struct dp_shard_config sc = cfg->shard;
        sc.shard = index;
        w->engine = e;
        w->index = index;
        w->workers = e->workers;
        w->clients = e->clients;
        w->agents = e->agents;
        w->clients_all = e->clients + e->agents;
        w->deliver = cfg->deliver;
        w->deliver_arg = cfg->deliver_arg;
        atomic_init(&w->running, false);
        int rc = format ? dp_shard_init(&w->shard, shard_mem, shard_len, &sc,
                                        dp_worker_on_deliver, w)
                        : dp_shard_attach(&w->shard, shard_mem, shard_len, dp_worker_on_deliver, w);
        if (rc != 0)
                return rc;
        dp_shard_set_disown_fn(&w->shard, dp_worker_agent_disown, w);
        w->groups = e->groups;
        dp_shard_set_group_gate(&w->shard, dp_worker_group_gate, w);
        rc = dp_idle_init(&w->idle, &cfg->idle, w->wake, dp_worker_ready, w, &w->stats->idle);
        if (rc != 0)
                return rc;
        w->cpl_dirty = calloc(dp_bitmap_words(w->clients_all), sizeof(uint64_t));
        w->mesh_dirty = calloc(dp_bitmap_words(w->workers), sizeof(uint64_t));
        w->cmd_copy = aligned_alloc(SHM_CACHE_LINE, DP_CMD_BYTES_MAX);
        w->match_cache = malloc(dp_match_cache_bytes());
        w->cpl_scratch = aligned_alloc(SHM_CACHE_LINE, DP_CPL_BYTES_MAX);
        if (w->cpl_dirty == NULL || w->mesh_dirty == NULL || w->cmd_copy == NULL ||
            w->cpl_scratch == NULL || w->match_cache == NULL)
                return -ENOMEM;
        dp_shard_set_match_cache(&w->shard, w->match_cache);
        /* The doorbells of the agents served, and one more word: the
         * datagram sessions' completion column (dp_worker_net_word). */
        w->doorbells = calloc(w->agents + 1, sizeof(*w->doorbells));
        if (w->doorbells == NULL)
                return -ENOMEM;
        if (w->agents > 0) {
                w->agent = calloc(w->agents, sizeof(*w->agent));
                w->agent_live = calloc(w->agents, sizeof(*w->agent_live));
                if (w->agent == NULL || w->agent_live == NULL)
                        return -ENOMEM;
        }
        return 0;
}

void dp_worker_fini(struct dp_worker *w)
{
        free(w->cpl_dirty);
        free(w->mesh_dirty);
        free(w->cmd_copy);
        free(w->cpl_scratch);
        dp_shard_set_match_cache(&w->shard, NULL);
        if (w->shard.hdr != NULL)
                dp_shard_publish_buf_release(&w->shard);
        free(w->match_cache);
        w->match_cache = NULL;
        free(w->agent);
        free(w->agent_live);
        free(w->doorbells);
        w->agent = NULL;
        w->agent_live = NULL;
        w->doorbells = NULL;
        w->cpl_dirty = w->mesh_dirty = NULL;
        w->cmd_copy = w->cpl_scratch = NULL;
}

/* One command from the own ring. */
static enum dp_take dp_worker_cmd_one(struct dp_worker *w, const struct shm_mpsc_rec *rec)
{
        if (rec->type != DP_REC_CMD) {
                dp_counter_inc(&w->stats->bad_records);
                return DP_TAKE_DONE;
        }
        /* A record above DP_CMD_BYTES_MAX is not copied whole: dp_cmd_parse
         * reads only its header and answers -EMSGSIZE. */
        memcpy(w->cmd_copy, rec->data, rec->len < DP_CMD_BYTES_MAX ? rec->len : DP_CMD_BYTES_MAX);
        return dp_worker_cmd_run(w, w->cmd_copy, rec->len, false);
}

enum dp_take dp_worker_cmd_run(struct dp_worker *w, uint8_t *buf, uint32_t len, bool from_agent)
{
        struct dp_cmd_view v;
        uint32_t owner;
        int rc = dp_cmd_parse(buf, len, w->clients_all, &v);
        if (rc == -EPROTO) {
                dp_counter_inc(&w->stats->bad_records);
                return DP_TAKE_DONE;
        }
        if (rc != 0) {
                enum dp_take t = dp_worker_fail(w, v.hdr, rc);
                if (t != DP_TAKE_HOLD)
                        dp_counter_inc(&w->stats->bad_records);
                return t;
        }
        /* Only agents name the agent columns: a command from the engine's
         * own ring that does is refused like any other bad header. */
        if (!from_agent && v.hdr->client >= w->clients) {
                dp_counter_inc(&w->stats->bad_records);
                return DP_TAKE_DONE;
        }
        rc = dp_engine_owner(w->engine, v.hdr, v.name, &owner);
        if (rc < 0)
                return dp_worker_fail(w, v.hdr, rc);
        if (v.hdr->op == ATOMQ_OP_PUB)
                return dp_worker_publish(w, &v, buf, len);
        if (rc == 0 && owner != w->index) {
                if (from_agent)
                        return dp_worker_fail(w, v.hdr, -EXDEV);
                return dp_worker_forward(w, owner, buf, len);
        }
        return dp_worker_exec(w, &v);
}

/* Takes up to max commands from the own ring. Returns the count, or the
 * ring's -EPROTO when it is corrupt and none was taken. */
static int dp_worker_cmd_drain(struct dp_worker *w, unsigned max)
{
        int work = 0;
        for (unsigned n = 0; n < max; n++) {
                struct shm_mpsc_rec rec;
                int rc = shm_mpsc_peek(&w->cmd, &rec);
                if (rc == 0)
                        break;
                if (rc < 0) {
                        dp_counter_inc(&w->stats->ring_errors);
                        return work > 0 ? work : rc;
                }
                if (dp_worker_cmd_one(w, &rec) == DP_TAKE_HOLD) {
                        w->blocked = true;
                        break;
                }
                /* One release per record (not one per burst as in
                 * shm_mpsc_read_burst): a held-back record must stay. */
                shm_mpsc_release(&w->cmd);
                dp_counter_inc(&w->stats->cmds);
                work++;
        }
        return work;
}

/* Wakes the workers and clients this pass gave work to: one notify each,
 * after the whole pass, not one per record. A peer's notify pairs with
 * shm_wake_prepare in its dp_idle_sleep (it sleeps on its command ring's
 * word, which mesh producers notify too); a client's with the prepare in
 * dp_engine_wait. */
static void dp_worker_flush(struct dp_worker *w)
{
        for (uint32_t i = 0; i < dp_bitmap_words(w->workers); i++) {
                for (uint64_t m = w->mesh_dirty[i]; m != 0; m &= m - 1)
                        shm_wake_notify(w->peer_wake[i * 64 + (uint32_t)__builtin_ctzll(m)]);
                w->mesh_dirty[i] = 0;
        }
        for (uint32_t i = 0; i < dp_bitmap_words(w->clients_all); i++) {
                for (uint64_t m = w->cpl_dirty[i]; m != 0; m &= m - 1) {
                        uint32_t c = i * 64 + (uint32_t)__builtin_ctzll(m);
                        if (c < w->clients)
                                shm_wake_notify(w->client_wake[c]);
                        else
                                dp_worker_agent_wake(w, c - w->clients);
                }
                w->cpl_dirty[i] = 0;
        }
}

int dp_worker_do_work(struct dp_worker *w)
{
        uint64_t now_ns = shm_clock_ns();
        int err = 0;
        w->blocked = false;
        /* Timers first: dp_shard_tick also sets the shard's clock, which the
         * commands below read (a TTL is armed from it). */
        int fired = dp_shard_tick(&w->shard, now_ns, DP_TICK_MAX);
        int work = fired;
        dp_worker_agents_sync(w);
        int rc = dp_worker_cmd_drain(w, DP_CMD_DRAIN_MAX);
        if (rc < 0)
                err = rc;
        else
                work += rc;
        work += dp_worker_agents_drain(w);
        work += dp_worker_net_poll(w, now_ns);
        /* A polled backend (DPDK) has nothing to wake a sleep: its frames
         * wait in the NIC's ring for at most this long. */
        w->idle.sleep_cap_ns = w->dgram_q != NULL ? DP_NET_POLL_NS : 0;
        if (w->disk != NULL) {
                work += dp_disk_poll(w->disk, now_ns);
                /* Answers wait on the log's I/O. Its completions wake a
                 * sleep on the NATS ring (which watches the log's eventfd);
                 * any other sleep is kept short while the log works. */
                if (dp_disk_busy(w->disk) && !w->disk_watched)
                        w->idle.sleep_cap_ns = DP_DISK_POLL_NS;
        }
        rc = dp_worker_mesh_drain(w);
        if (rc < 0)
                err = rc;
        else
                work += rc;
        dp_worker_flush(w);
        dp_worker_net_flush(w);
        dp_counter_inc(&w->stats->loops);
        dp_counter_add(&w->stats->work, (uint64_t)work);
        dp_counter_add(&w->stats->timers, (uint64_t)fired);
        return work > 0 ? work : err;
}

bool dp_worker_ready(void *arg)
{
        struct dp_worker *w = arg;
        struct shm_mpsc_rec cr;
        struct shm_vring_rec vr;
        /* Pairs with the release store in dp_worker_stop_signal. */
        if (!atomic_load_explicit(&w->running, memory_order_acquire))
                return true;
        /* Input held back by a full output ring is not "work": the worker
         * sleeps (bounded by the idle strategy's timeout) and retries,
         * instead of spinning until the client or peer has read. New input
         * still wakes it through the notify. */
        if (w->blocked)
                return false;
        if (shm_mpsc_peek(&w->cmd, &cr) != 0)
                return true;
        if (w->dgram != NULL && dp_dgram_ready(w->dgram))
                return true;
        for (uint32_t j = 0; j < w->workers; j++)
                if (j != w->index && shm_vring_peek(&w->mesh_in[j], &vr) != 0)
                        return true;
        return dp_worker_agents_ready(w);
}

void dp_worker_run(struct dp_worker *w)
{
        if (w->idle.cfg.kind == DP_IDLE_ALWAYS && dp_idle_pin(w->index) < 0)
                dp_counter_inc(&w->stats->idle.pin_errors);
        /* A restarted worker starts awake, not where its last run left off. */
        dp_idle_run(&w->idle, 1);
        /* Pairs with the release store in dp_worker_stop_signal. */
        while (atomic_load_explicit(&w->running, memory_order_acquire))
                dp_idle_run(&w->idle, dp_worker_do_work(w));
}

void dp_worker_stop_signal(struct dp_worker *w)
{
        /* Pairs with the acquire loads in dp_worker_run and
         * dp_worker_ready. */
        atomic_store_explicit(&w->running, false, memory_order_release);
        /* A worker asleep on its word sees the store when woken; one about
         * to sleep sees it in dp_worker_ready (the eventcount's re-check). */
        shm_wake_notify(w->wake);
}
