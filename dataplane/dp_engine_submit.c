/* dp_engine_submit.c - the client side of the engine: where a command goes
 * (routing), putting it on a command ring, and reading completions.
 *
 * Submitting is lock-free and allocation-free: the record is encoded in
 * place in the owner's command ring (one copy), committed, and the worker
 * is notified (a fence; a syscall only when it sleeps).
 */
#include "dataplane/dp_engine.h"

#include <errno.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

uint32_t dp_engine_shard_of_name(const struct dp_engine *e, const char *name, uint32_t len)
{
        return (uint32_t)(XXH3_64bits(name, len) % e->workers);
}

uint32_t dp_engine_shard_of_group(const struct dp_engine *e, uint32_t group)
{
        /* Little-endian bytes: the same group lands on the same shard in
         * every process (atomq builds for little-endian hosts only). */
        char b[4];
        memcpy(b, &group, sizeof(b));
        return dp_engine_shard_of_name(e, b, sizeof(b));
}

static int dp_engine_handle_owner(const struct dp_engine *e, uint64_t handle, uint32_t *owner)
{
        if (handle == DP_HANDLE_NONE || dp_handle_shard(handle) >= e->workers)
                return -EINVAL;
        *owner = dp_handle_shard(handle);
        return 0;
}

int dp_engine_owner(const struct dp_engine *e, const struct dp_cmd *c, const char *name,
                    uint32_t *owner)
{
        switch (c->op) {
        case ATOMQ_OP_CREATE:
                if (c->name_len == 0)
                        return 1;
                *owner = dp_engine_shard_of_name(e, name, c->name_len);
                return 0;
        case ATOMQ_OP_SEND:
        case ATOMQ_OP_DESTROY:
        case ATOMQ_OP_FETCH:
        case DP_OP_SET:
        case DP_OP_STAT:
        case DP_OP_BIND:
        case DP_OP_UNBIND:
                /* By handle, or with handle 0 by name. */
                if (c->handle == DP_HANDLE_NONE) {
                        if (c->name_len == 0)
                                return -EINVAL;
                        *owner = dp_engine_shard_of_name(e, name, c->name_len);
                        return 0;
                }
                return dp_engine_handle_owner(e, c->handle, owner);
        case ATOMQ_OP_ACK:
        case ATOMQ_OP_UNSUB:
        case DP_OP_GET:
        case DP_OP_READ:
        case DP_OP_COMMIT:
                return dp_engine_handle_owner(e, c->handle, owner);
        case ATOMQ_OP_SUB:
                /* A subscription that feeds an entity lives with it; a queue
                 * group's members live together (see shard_of_group); any
                 * other subscription may live anywhere, since every publish
                 * reaches every shard. */
                if (c->handle != DP_HANDLE_NONE)
                        return dp_engine_handle_owner(e, c->handle, owner);
                if (c->args.sub.group != 0) {
                        *owner = dp_engine_shard_of_group(e, c->args.sub.group);
                        return 0;
                }
                return 1;
        case ATOMQ_OP_PUB:
        case ATOMQ_OP_REQUEST:
        case DP_OP_SYNC:
                return 1;
        default:
                return -EINVAL;
        }
}

int dp_engine_submit_to(struct dp_engine *e, uint32_t w, const struct dp_cmd *c,
                        const char *name, const struct dp_msg_in *m)
{
        if (w >= e->workers || c->client >= e->clients || !dp_cmd_op_valid(c->op) ||
            dp_cmd_op_has_msg(c->op) != (m != NULL) || (c->name_len != 0 && name == NULL))
                return -EINVAL;
        uint32_t len = dp_cmd_bytes(c->name_len, m);
        if (len == 0)
                return -EMSGSIZE;
        struct shm_mpsc *r = &e->cmd_prod[w];
        struct shm_mpsc_resv resv;
        int rc = shm_mpsc_reserve(r, len, &resv);
        if (rc != 0)
                return rc;
        dp_cmd_encode(resv.data, len, c, name, m);
        shm_mpsc_commit(r, &resv, DP_REC_CMD);
        /* Pairs with shm_wake_prepare in the worker's dp_idle_sleep: a worker
         * about to sleep either sees the record or is woken. */
        shm_mpsc_notify(r);
        return 0;
}

int dp_engine_submit(struct dp_engine *e, const struct dp_cmd *c, const char *name,
                     const struct dp_msg_in *m)
{
        uint32_t w;
        if (c->name_len != 0 && name == NULL)
                return -EINVAL;
        int rc = dp_engine_owner(e, c, name, &w);
        if (rc < 0)
                return rc;
        if (rc == 1) {
                /* Any worker may: spread by what the command is about. */
                if ((c->op == ATOMQ_OP_PUB || c->op == ATOMQ_OP_REQUEST) && m != NULL)
                        w = dp_engine_shard_of_name(e, m->subject, m->subject_len);
                else if (c->op == ATOMQ_OP_SUB)
                        w = dp_engine_shard_of_name(e, name, c->name_len);
                else
                        w = (uint32_t)(c->req_id % e->workers);
        }
        return dp_engine_submit_to(e, w, c, name, m);
}

/* Up to max completions from one ring. */
static unsigned dp_engine_poll_ring(struct shm_vring *r, dp_cpl_fn *fn, void *arg, unsigned max)
{
        unsigned n = 0;
        while (n < max) {
                struct shm_vring_rec rec;
                /* -EPROTO (a corrupt ring) reads as empty: the client can do
                 * nothing about it but stop waiting, which its timeout does. */
                if (shm_vring_peek(r, &rec) <= 0)
                        break;
                if (rec.type == DP_REC_CPL && rec.len >= sizeof(struct dp_cpl)) {
                        fn(arg, rec.data, rec.len);
                        n++;
                }
                shm_vring_release(r);
        }
        return n;
}

int dp_engine_poll(struct dp_engine *e, uint32_t client, dp_cpl_fn *fn, void *arg, unsigned max)
{
        if (client >= e->clients)
                return -EINVAL;
        uint32_t nw = e->workers, first = e->poll_next[client];
        unsigned n = 0;
        /* Start one worker further each call, so a busy worker's answers
         * cannot keep another's waiting when max is small. */
        for (uint32_t k = 0; k < nw && n < max; k++) {
                uint32_t w = (first + k) % nw;
                n += dp_engine_poll_ring(&e->cpl_cons[client * nw + w], fn, arg, max - n);
        }
        e->poll_next[client] = (first + 1) % nw;
        return (int)n;
}

int dp_engine_wait(struct dp_engine *e, uint32_t client, dp_cpl_fn *fn, void *arg,
                   unsigned max, int64_t timeout_ns)
{
        int n = dp_engine_poll(e, client, fn, arg, max);
        if (n != 0)
                return n;
        /* The eventcount of shm_wake.h: prepare pairs with the fence in the
         * workers' shm_wake_notify (dp_worker_flush), so a completion written
         * after this poll either is seen by the next one or wakes us. */
        struct shm_wake *wk = e->client_wake[client];
        uint32_t seq = shm_wake_prepare(wk);
        n = dp_engine_poll(e, client, fn, arg, max);
        if (n != 0) {
                shm_wake_cancel(wk);
                return n;
        }
        (void)shm_wake_wait(wk, seq, timeout_ns);
        return dp_engine_poll(e, client, fn, arg, max);
}
