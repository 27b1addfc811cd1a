/* ctl_cmd_long.c - the commands that run in slices: show entities (a
 * listing that may be longer than the output buffer), create mailboxes
 * (bulk creation with many commands in flight) and destroy prefix.
 *
 * Each keeps its state in the session's struct ctl_cont and does at most
 * CTL_SLICE_NS of work per call, so atomqd's loop serves its other fds in
 * between. Listings and prefix destruction read the shards' entity tables
 * straight from shared memory, never stopping a worker: a slot is copied,
 * its name read through the bounds-checked name heap, and the copy kept
 * only if the slot's generation did not move meanwhile. The result is a
 * walk over a table that changes under it: an entity created or destroyed
 * during the walk may or may not be seen, and the order is shard by
 * shard, slot by slot (not sorted).
 *
 *      atomqctl create mailboxes agent. 1000000 ttl=60s
 *      atomqctl destroy prefix agent.
 */
#include "control/ctl_cmd_pvt.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "control/ctl_parse.h"
#include "dataplane/dp_subject.h"

/* Slots looked at between two looks at the clock. */
#define CTL_SCAN_CHUNK 4096u
/* Longest a slice sleeps for completions at once. */
#define CTL_WAIT_NS (1000 * 1000)
/* Most mailboxes one bulk command creates. */
#define CTL_BULK_MAX 1000000000ll

bool ctl_peek_slot(const struct dp_table *t, uint32_t slot, struct ctl_peek *p)
{
        const struct dp_entity *e = &t->slots[slot];
        uint32_t gen = __atomic_load_n(&e->gen, __ATOMIC_ACQUIRE);
        uint8_t flags = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);
        if ((flags & (DP_ENT_F_LIVE | DP_ENT_F_NAMED)) != (DP_ENT_F_LIVE | DP_ENT_F_NAMED))
                return false;
        memcpy(&p->e, e, sizeof(p->e));
        uint32_t len = 0;
        const char *name = dp_table_name(t, &p->e, &len);
        if (name == NULL || len == 0 || len > DP_CMD_NAME_MAX)
                return false;
        memcpy(p->name, name, len);
        p->name[len] = 0;
        p->name_len = len;
        /* Pairs with the worker's stores of a destroy: a slot freed or
         * reused while we copied it shows a new generation or no LIVE. */
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&e->gen, __ATOMIC_RELAXED) != gen ||
            !(__atomic_load_n(&e->flags, __ATOMIC_RELAXED) & DP_ENT_F_LIVE) || p->e.gen != gen)
                return false;
        p->shard = t->shard;
        p->handle = dp_handle_make(t->shard, slot, gen);
        return true;
}

static bool ctl_cont_match(const struct ctl_cont *k, const struct ctl_peek *p)
{
        return p->name_len >= k->prefix_len && memcmp(p->name, k->prefix, k->prefix_len) == 0;
}

/* Starts a long command: prefix copied, mode kept, and the first slice
 * run at once. */
static enum ctl_run ctl_cont_start(struct ctl_session *s, const struct ctl_call *c,
                                   struct ctl_out *o, enum ctl_cont_kind kind,
                                   const char *prefix, uint32_t prefix_len)
{
        struct ctl_cont *k = &s->cont;
        k->kind = kind;
        k->json = c->json;
        memcpy(k->prefix, prefix, prefix_len);
        k->prefix[prefix_len] = 0;
        k->prefix_len = prefix_len;
        k->started_ns = ctl_dp_now_ns();
        return ctl_cont_step(s, o, k->started_ns + CTL_SLICE_NS);
}

/* --- show entities --- */

enum ctl_run ctl_do_show_entities(struct ctl_session *s, const struct ctl_call *c,
                                  struct ctl_out *o)
{
        const char *prefix = c->nargs > 0 ? c->arg[0] : "";
        uint32_t len = c->nargs > 0 ? c->arg_len[0] : 0;
        if (len > DP_CMD_NAME_MAX)
                return ctl_fail(s, o, -ENAMETOOLONG, c->def->usage, "prefix over %u bytes",
                                DP_CMD_NAME_MAX);
        s->cont.limit = (c->opts.set & CTL_OPT_BIT(CTL_OPT_LIMIT)) ? c->opts.limit
                                                                  : CTL_LIST_LIMIT_DEFAULT;
        return ctl_cont_start(s, c, o, CTL_CONT_LIST, prefix, len);
}

static void ctl_list_item(struct ctl_out *o, const struct ctl_peek *p)
{
        ctl_out_rec_begin(o, CTL_REC_INLINE);
        ctl_out_str(o, "name", p->name, p->name_len);
        ctl_out_cstr(o, "kind", p->e.mode < DP_MODE_COUNT_ ? dp_modes[p->e.mode].name : "?");
        ctl_out_cstr(o, "storage", dp_storage_name(p->e.storage));
        ctl_out_u64(o, "ttl_ms", p->e.ttl_ms);
        ctl_out_u64(o, "msgs", p->e.msgs);
        ctl_out_u64(o, "bytes", p->e.bytes);
        ctl_out_u64(o, "shard", p->shard);
        ctl_out_rec_end(o);
}

static enum ctl_run ctl_list_done(struct ctl_session *s, struct ctl_out *o)
{
        struct ctl_cont *k = &s->cont;
        ctl_show_begin(o);
        ctl_out_u64(o, "shown", k->shown);
        ctl_out_bool(o, "truncated", k->truncated);
        ctl_out_u64(o, "limit", k->limit);
        ctl_out_u64(o, "scanned_slots", k->scanned);
        ctl_out_rec_end(o);
        ctl_cmd_abort(s);
        return CTL_RUN_DONE;
}

static enum ctl_run ctl_list_step(struct ctl_session *s, struct ctl_out *o, uint64_t deadline)
{
        struct ctl_cont *k = &s->cont;
        const struct dp_engine *e = s->env->dp->e;
        struct ctl_peek p;
        while (k->shard < e->workers) {
                const struct dp_table *t = &e->w[k->shard].shard.table;
                uint32_t end = t->capacity - k->slot > CTL_SCAN_CHUNK ? k->slot + CTL_SCAN_CHUNK
                                                                       : t->capacity;
                for (; k->slot < end; k->slot++) {
                        if (ctl_out_room(o) < CTL_ITEM_MAX)
                                return CTL_RUN_MORE;    /* wait for the client to read */
                        k->scanned++;
                        if (!ctl_peek_slot(t, k->slot, &p) || !ctl_cont_match(k, &p))
                                continue;
                        if (k->shown == k->limit) {
                                k->truncated = true;
                                return ctl_list_done(s, o);
                        }
                        ctl_list_item(o, &p);
                        k->shown++;
                }
                if (k->slot == t->capacity) {
                        k->shard++;
                        k->slot = 0;
                }
                if (ctl_dp_now_ns() >= deadline)
                        return CTL_RUN_MORE;
        }
        return ctl_list_done(s, o);
}

/* --- batches: create mailboxes, destroy prefix --- */

/* The counts and errors of a finished batch, into the open reply. */
static void ctl_batch_report(struct ctl_out *o, const struct ctl_cont *k, uint64_t done_ok)
{
        double ms = (double)(ctl_dp_now_ns() - k->started_ns) / 1e6;
        const struct ctl_dp_batch *b = &k->batch;
        ctl_out_u64(o, "failed", b->failed);
        ctl_out_fixed(o, "elapsed_ms", ms, 3);
        ctl_out_u64(o, "rate_per_s", ms > 0 ? (uint64_t)((double)done_ok * 1000.0 / ms) : 0);
        ctl_out_obj_begin(o, "errors");
        for (uint32_t i = 0; i < CTL_DP_ERRS_MAX && b->errs[i].count != 0; i++)
                ctl_out_u64(o, ctl_errno_name(b->errs[i].err), b->errs[i].count);
        if (b->errs_other != 0)
                ctl_out_u64(o, "other", b->errs_other);
        ctl_out_obj_end(o);
}

/* Waits a little for completions when a slice could do nothing else;
 * -ETIMEDOUT when the batch has had none for CTL_DP_TIMEOUT_NS. */
static int ctl_batch_wait(struct ctl_session *s, uint64_t deadline)
{
        struct ctl_cont *k = &s->cont;
        uint64_t now = ctl_dp_now_ns();
        if (k->batch.completed < k->batch.submitted && now - k->batch.last_ns > CTL_DP_TIMEOUT_NS) {
                s->env->dp->stats.timeouts++;
                return -ETIMEDOUT;
        }
        if (now < deadline)
                ctl_dp_drain(s->env->dp, (int64_t)(deadline - now < CTL_WAIT_NS ? deadline - now
                                                                                 : CTL_WAIT_NS));
        return 0;
}

enum ctl_run ctl_do_create_mailboxes(struct ctl_session *s, const struct ctl_call *c,
                                     struct ctl_out *o)
{
        const char *prefix = c->arg[0];
        uint32_t len = c->arg_len[0];
        long long count;
        char name[DP_CMD_NAME_MAX + 32];
        if (ctl_parse_int(c->arg[1], 1, CTL_BULK_MAX, &count) != 0)
                return ctl_fail(s, o, -EINVAL, c->def->usage,
                                "bad COUNT '%.32s': want 1 to %lld", c->arg[1], CTL_BULK_MAX);
        /* Every name is PREFIX + digits: PREFIX0 and the longest decide. */
        int n = snprintf(name, sizeof(name), "%.*s%lld", (int)len, prefix, count - 1);
        if (ctl_check_name(s, o, c, name, (uint32_t)n) != 0)
                return CTL_RUN_DONE;
        if (ctl_check_name(s, o, c, name, (uint32_t)snprintf(name, sizeof(name), "%.*s0",
                                                           (int)len, prefix)) != 0)
                return CTL_RUN_DONE;
        int rc = ctl_dp_batch_begin(s->env->dp, &s->cont.batch);
        if (rc != 0)
                return ctl_fail(s, o, rc, NULL, "%u bulk commands are running; try again later",
                                CTL_DP_BATCHES_MAX);
        ctl_create_args(&c->opts, DP_MODE_MAILBOX, &s->cont.create);
        s->cont.count = (uint64_t)count;
        return ctl_cont_start(s, c, o, CTL_CONT_BULK, prefix, len);
}

static enum ctl_run ctl_bulk_done(struct ctl_session *s, struct ctl_out *o, int err)
{
        struct ctl_cont *k = &s->cont;
        const struct ctl_dp_batch *b = &k->batch;
        uint64_t created = b->completed - b->failed;
        if (err == 0 && b->failed != 0)
                err = b->errs[0].err;
        if (err != 0)
                s->env->errors++;
        ctl_reply_begin(o, err, "created %" PRIu64 " of %" PRIu64 " mailboxes %s0 .. %s%" PRIu64
                        "%s", created, k->count, k->prefix, k->prefix, k->count - 1,
                        err == -ETIMEDOUT ? ": the dataplane stopped answering" : "");
        ctl_out_u64(o, "requested", k->count);
        ctl_out_u64(o, "created", created);
        ctl_batch_report(o, k, created);
        ctl_reply_end(o);
        ctl_cmd_abort(s);
        return CTL_RUN_DONE;
}

static enum ctl_run ctl_bulk_step(struct ctl_session *s, struct ctl_out *o, uint64_t deadline)
{
        struct ctl_cont *k = &s->cont;
        struct ctl_dp *dp = s->env->dp;
        char name[DP_CMD_NAME_MAX + 32];
        for (;;) {
                uint32_t sent = 0;
                ctl_dp_drain(dp, 0);
                while (k->next < k->count) {
                        int n = snprintf(name, sizeof(name), "%s%" PRIu64, k->prefix, k->next);
                        struct dp_cmd c = { .op = ATOMQ_OP_CREATE, .name_len = (uint16_t)n,
                                            .args.create = k->create };
                        int rc = ctl_dp_batch_submit(dp, &k->batch, &c, name);
                        if (rc == -EAGAIN)
                                break;
                        if (rc != 0)
                                ctl_dp_batch_fail(&k->batch, rc);
                        k->next++;
                        if (++sent % 256 == 0 && ctl_dp_now_ns() >= deadline)
                                return CTL_RUN_MORE;
                }
                if (k->next == k->count && k->batch.completed == k->batch.submitted)
                        return ctl_bulk_done(s, o, 0);
                if (ctl_dp_now_ns() >= deadline)
                        return CTL_RUN_MORE;
                if (sent == 0 && ctl_batch_wait(s, deadline) != 0)
                        return ctl_bulk_done(s, o, -ETIMEDOUT);
        }
}

enum ctl_run ctl_do_destroy_prefix(struct ctl_session *s, const struct ctl_call *c,
                                   struct ctl_out *o)
{
        if (c->arg_len[0] > DP_CMD_NAME_MAX)
                return ctl_fail(s, o, -ENAMETOOLONG, c->def->usage, "prefix over %u bytes",
                                DP_CMD_NAME_MAX);
        int rc = ctl_dp_batch_begin(s->env->dp, &s->cont.batch);
        if (rc != 0)
                return ctl_fail(s, o, rc, NULL, "%u bulk commands are running; try again later",
                                CTL_DP_BATCHES_MAX);
        return ctl_cont_start(s, c, o, CTL_CONT_PURGE, c->arg[0], c->arg_len[0]);
}

static enum ctl_run ctl_purge_done(struct ctl_session *s, struct ctl_out *o, int err)
{
        struct ctl_cont *k = &s->cont;
        const struct ctl_dp_batch *b = &k->batch;
        uint64_t destroyed = b->completed - b->failed;
        /* An entity that expired or was destroyed by someone else between
         * the scan and its command (-ESTALE, -ENOENT) is gone as asked. */
        uint64_t gone = 0;
        for (uint32_t i = 0; i < CTL_DP_ERRS_MAX; i++)
                if (b->errs[i].err == -ESTALE || b->errs[i].err == -ENOENT)
                        gone += b->errs[i].count;
        if (err == 0 && b->failed > gone) {
                for (uint32_t i = 0; i < CTL_DP_ERRS_MAX && err == 0; i++)
                        if (b->errs[i].err != -ESTALE && b->errs[i].err != -ENOENT)
                                err = b->errs[i].err;
                if (err == 0)
                        err = -EIO;
        }
        if (err != 0)
                s->env->errors++;
        ctl_reply_begin(o, err, "destroyed %" PRIu64 " entities with prefix %s%s", destroyed,
                        k->prefix, err == -ETIMEDOUT ? ": the dataplane stopped answering" : "");
        ctl_out_u64(o, "destroyed", destroyed);
        ctl_out_u64(o, "gone_meanwhile", gone);
        ctl_out_u64(o, "scanned_slots", k->scanned);
        ctl_batch_report(o, k, destroyed);
        ctl_reply_end(o);
        ctl_cmd_abort(s);
        return CTL_RUN_DONE;
}

/* Scans for the next matches and submits their destruction; returns the
 * number submitted. Stays on a slot whose command could not go yet. */
static uint32_t ctl_purge_scan(struct ctl_session *s, uint64_t deadline)
{
        struct ctl_cont *k = &s->cont;
        const struct dp_engine *e = s->env->dp->e;
        struct ctl_peek p;
        uint32_t sent = 0;
        while (k->shard < e->workers) {
                const struct dp_table *t = &e->w[k->shard].shard.table;
                uint32_t end = t->capacity - k->slot > CTL_SCAN_CHUNK ? k->slot + CTL_SCAN_CHUNK
                                                                       : t->capacity;
                for (; k->slot < end; k->slot++) {
                        if (!ctl_peek_slot(t, k->slot, &p) || !ctl_cont_match(k, &p)) {
                                k->scanned++;
                                continue;
                        }
                        struct dp_cmd c = { .op = ATOMQ_OP_DESTROY, .handle = p.handle };
                        int rc = ctl_dp_batch_submit(s->env->dp, &k->batch, &c, NULL);
                        if (rc == -EAGAIN)
                                return sent;
                        if (rc != 0)
                                ctl_dp_batch_fail(&k->batch, rc);
                        k->scanned++;
                        sent++;
                }
                if (k->slot == t->capacity) {
                        k->shard++;
                        k->slot = 0;
                }
                if (ctl_dp_now_ns() >= deadline)
                        return sent;
        }
        k->scan_done = true;
        return sent;
}

static enum ctl_run ctl_purge_step(struct ctl_session *s, struct ctl_out *o, uint64_t deadline)
{
        struct ctl_cont *k = &s->cont;
        for (;;) {
                ctl_dp_drain(s->env->dp, 0);
                uint32_t sent = k->scan_done ? 0 : ctl_purge_scan(s, deadline);
                if (k->scan_done && k->batch.completed == k->batch.submitted)
                        return ctl_purge_done(s, o, 0);
                if (ctl_dp_now_ns() >= deadline)
                        return CTL_RUN_MORE;
                if (sent == 0 && ctl_batch_wait(s, deadline) != 0)
                        return ctl_purge_done(s, o, -ETIMEDOUT);
        }
}

enum ctl_run ctl_cont_step(struct ctl_session *s, struct ctl_out *o, uint64_t deadline_ns)
{
        switch (s->cont.kind) {
        case CTL_CONT_LIST:
                return ctl_list_step(s, o, deadline_ns);
        case CTL_CONT_BULK:
                return ctl_bulk_step(s, o, deadline_ns);
        case CTL_CONT_PURGE:
                return ctl_purge_step(s, o, deadline_ns);
        default:
                return CTL_RUN_DONE;
        }
}
