/* ctl_dp.c - engine commands for atomqd's control socket: synchronous
 * calls, batches, and the one dispatcher of atomqd's completions (the
 * model is in ctl_dp.h). */
#include "control/ctl_dp.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#define CTL_DP_TAG_SHIFT 40
#define CTL_DP_SEQ_MASK ((1ull << CTL_DP_TAG_SHIFT) - 1)
/* Completions taken per poll: one ring's worth is never needed at once. */
#define CTL_DP_POLL_MAX 256u
/* A wait inside a call or a full ring: short, so a deadline is kept. */
#define CTL_DP_WAIT_SLICE_NS (1000 * 1000)

uint64_t ctl_dp_now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int ctl_dp_init(struct ctl_dp *d, struct dp_engine *e, uint32_t client)
{
        memset(d, 0, sizeof(*d));
        if (e == NULL || e->hdr == NULL || client >= e->clients)
                return -EINVAL;
        d->e = e;
        d->client = client;
        /* A completion ring must keep room for one fetch answer (the
         * largest record) beside the plain completions in flight, each 48
         * bytes plus the ring's record header, with a factor 2 to spare
         * for padding at the wrap. */
        uint32_t ring = e->hdr->cpl_ring_bytes;
        uint32_t spare = ring > 2 * DP_CPL_BYTES_MAX ? ring - 2 * DP_CPL_BYTES_MAX : ring / 2;
        d->inflight_max = spare / 128;
        if (d->inflight_max < 16)
                d->inflight_max = 16;
        d->next_batch = 1;
        return 0;
}

static uint64_t ctl_dp_req(struct ctl_dp *d, uint32_t tag)
{
        d->next_seq++;
        return (uint64_t)tag << CTL_DP_TAG_SHIFT | (d->next_seq & CTL_DP_SEQ_MASK);
}

static struct ctl_dp_batch *ctl_dp_batch_find(struct ctl_dp *d, uint32_t id)
{
        for (uint32_t i = 0; i < CTL_DP_BATCHES_MAX; i++)
                if (d->batches[i] != NULL && d->batches[i]->id == id)
                        return d->batches[i];
        return NULL;
}

static void ctl_dp_batch_count(struct ctl_dp_batch *b, int status)
{
        b->completed++;
        b->last_ns = ctl_dp_now_ns();
        if (status == 0)
                return;
        b->failed++;
        for (uint32_t i = 0; i < CTL_DP_ERRS_MAX; i++) {
                if (b->errs[i].count == 0)
                        b->errs[i].err = status;
                if (b->errs[i].err == status) {
                        b->errs[i].count++;
                        return;
                }
        }
        b->errs_other++;
}

/* Every completion of our client comes through here (dp_cpl_fn). */
static void ctl_dp_dispatch(void *arg, const struct dp_cpl *c, uint32_t len)
{
        struct ctl_dp *d = arg;
        /* The executing worker wrote it into its ring: that ring has room
         * again. A worker index out of range is a corrupt record: it still
         * reaches its waiter by request id. */
        if (c->worker < d->e->workers && d->inflight[c->worker] > 0)
                d->inflight[c->worker]--;
        uint32_t tag = (uint32_t)(c->req_id >> CTL_DP_TAG_SHIFT);
        if (tag == 0) {
                if (c->req_id != d->call_req || d->call_done) {
                        d->stats.orphans++;
                        return;
                }
                d->call_status = c->status;
                if (d->call_fn != NULL)
                        d->call_fn(d->call_arg, c, len);
                d->call_done = true;
                return;
        }
        struct ctl_dp_batch *b = ctl_dp_batch_find(d, tag);
        if (b == NULL) {
                d->stats.orphans++;
                return;
        }
        ctl_dp_batch_count(b, c->status);
}

int ctl_dp_drain(struct ctl_dp *d, int64_t wait_ns)
{
        int n = wait_ns > 0 ? dp_engine_wait(d->e, d->client, ctl_dp_dispatch, d, CTL_DP_POLL_MAX,
                                             wait_ns)
                            : dp_engine_poll(d->e, d->client, ctl_dp_dispatch, d, CTL_DP_POLL_MAX);
        /* A full poll may have left more: take a bounded few more rounds. */
        for (int round = 0; n > 0 && round < 4 && n % CTL_DP_POLL_MAX == 0; round++) {
                int more = dp_engine_poll(d->e, d->client, ctl_dp_dispatch, d, CTL_DP_POLL_MAX);
                if (more <= 0)
                        break;
                n += more;
        }
        return n < 0 ? 0 : n;
}

void ctl_dp_forget_inflight(struct ctl_dp *d)
{
        memset(d->inflight, 0, sizeof(d->inflight));
}

uint64_t ctl_dp_inflight(const struct ctl_dp *d)
{
        uint64_t n = 0;
        for (uint32_t w = 0; w < d->e->workers; w++)
                n += d->inflight[w];
        return n;
}

/* Puts c on its owner's ring. -EAGAIN: the owner's in-flight cap or ring
 * is full. */
static int ctl_dp_submit(struct ctl_dp *d, struct dp_cmd *c, const char *name,
                         const struct dp_msg_in *m)
{
        uint32_t w;
        int rc = dp_engine_owner(d->e, c, name, &w);
        if (rc < 0)
                return rc;
        if (rc == 1)
                w = (uint32_t)(c->req_id % d->e->workers);
        if (d->inflight[w] >= d->inflight_max)
                return -EAGAIN;
        c->client = (uint16_t)d->client;
        rc = dp_engine_submit_to(d->e, w, c, name, m);
        if (rc == -ENOBUFS)
                return -EAGAIN;
        if (rc != 0)
                return rc;
        d->inflight[w]++;
        d->stats.submits++;
        return 0;
}

int ctl_dp_call(struct ctl_dp *d, struct dp_cmd *c, const char *name,
                const struct dp_msg_in *m, ctl_dp_cpl_fn *fn, void *arg)
{
        uint64_t deadline = ctl_dp_now_ns() + CTL_DP_TIMEOUT_NS;
        c->req_id = ctl_dp_req(d, 0);
        d->stats.calls++;
        int rc;
        while ((rc = ctl_dp_submit(d, c, name, m)) == -EAGAIN) {
                if (ctl_dp_now_ns() >= deadline) {
                        d->stats.timeouts++;
                        return -ETIMEDOUT;
                }
                ctl_dp_drain(d, CTL_DP_WAIT_SLICE_NS);
        }
        if (rc != 0)
                return rc;
        d->call_req = c->req_id;
        d->call_done = false;
        d->call_fn = fn;
        d->call_arg = arg;
        while (!d->call_done) {
                uint64_t now = ctl_dp_now_ns();
                if (now >= deadline) {
                        d->stats.timeouts++;
                        rc = -ETIMEDOUT;
                        break;
                }
                ctl_dp_drain(d, (int64_t)(deadline - now));
        }
        if (d->call_done)
                rc = d->call_status;
        d->call_req = 0;
        d->call_fn = NULL;
        return rc;
}

static void ctl_dp_take_handle(void *arg, const struct dp_cpl *c, uint32_t len)
{
        (void)len;
        *(uint64_t *)arg = c->handle;
}

static void ctl_dp_take_seq(void *arg, const struct dp_cpl *c, uint32_t len)
{
        (void)len;
        *(uint64_t *)arg = c->seq;
}

int ctl_dp_create(struct ctl_dp *d, const char *name, uint32_t len,
                  const struct dp_cmd_create *a, uint64_t *handle)
{
        struct dp_cmd c = { .op = ATOMQ_OP_CREATE, .name_len = (uint16_t)len,
                            .args.create = *a };
        uint64_t h = 0;
        if (len == 0 || len > DP_CMD_NAME_MAX)
                return -EINVAL;
        int rc = ctl_dp_call(d, &c, name, NULL, ctl_dp_take_handle, &h);
        if (handle != NULL)
                *handle = h;
        return rc;
}

int ctl_dp_destroy(struct ctl_dp *d, const char *name, uint32_t len, uint64_t *handle)
{
        struct dp_cmd c = { .op = ATOMQ_OP_DESTROY, .name_len = (uint16_t)len };
        uint64_t h = 0;
        if (len == 0 || len > DP_CMD_NAME_MAX)
                return -EINVAL;
        int rc = ctl_dp_call(d, &c, name, NULL, ctl_dp_take_handle, &h);
        if (handle != NULL)
                *handle = h;
        return rc;
}

int ctl_dp_set(struct ctl_dp *d, const char *name, uint32_t len, const struct dp_cmd_set *a)
{
        struct dp_cmd c = { .op = DP_OP_SET, .name_len = (uint16_t)len, .args.set = *a };
        if (len == 0 || len > DP_CMD_NAME_MAX)
                return -EINVAL;
        return ctl_dp_call(d, &c, name, NULL, NULL, NULL);
}

int ctl_dp_send(struct ctl_dp *d, const char *name, uint32_t len, const void *payload,
                uint32_t payload_len, uint64_t *seq)
{
        struct dp_cmd c = { .op = ATOMQ_OP_SEND, .name_len = (uint16_t)len };
        /* The subject is the entity's name: the key of retention latest. */
        struct dp_msg_in m = { .subject = name, .subject_len = len, .payload = payload,
                               .payload_len = payload_len, .storage = -1 };
        uint64_t s = 0;
        if (len == 0 || len > DP_CMD_NAME_MAX)
                return -EINVAL;
        int rc = ctl_dp_call(d, &c, name, &m, ctl_dp_take_seq, &s);
        if (seq != NULL)
                *seq = s;
        return rc;
}

struct ctl_dp_fetch_ctx {
        ctl_dp_msg_fn *fn;
        void *arg;
        uint64_t handle;
        int count;
        int err;
};

static void ctl_dp_fetch_cpl(void *arg, const struct dp_cpl *c, uint32_t len)
{
        struct ctl_dp_fetch_ctx *f = arg;
        struct dp_cpl_msg m;
        uint32_t off = 0;
        int rc;
        uint32_t total = 0;
        f->handle = c->handle;
        if (c->status != 0)
                return;
        /* Count first (the handler opens its reply with the count), then
         * hand out the messages that check. */
        while ((rc = dp_cpl_msg_next(c, len, &off, &m)) == 1)
                total++;
        if (rc < 0)
                f->err = rc;
        off = 0;
        for (uint32_t i = 0; i < total && dp_cpl_msg_next(c, len, &off, &m) == 1; i++) {
                f->fn(f->arg, &m, i, total);
                f->count++;
        }
}

int ctl_dp_fetch(struct ctl_dp *d, const char *name, uint32_t len, uint32_t max,
                 ctl_dp_msg_fn *fn, void *arg, uint64_t *handle)
{
        struct dp_cmd c = { .op = ATOMQ_OP_FETCH, .name_len = (uint16_t)len,
                            .args.fetch.max = max };
        struct ctl_dp_fetch_ctx f = { .fn = fn, .arg = arg };
        if (len == 0 || len > DP_CMD_NAME_MAX || max == 0 || max > DP_FETCH_MAX)
                return -EINVAL;
        int rc = ctl_dp_call(d, &c, name, NULL, ctl_dp_fetch_cpl, &f);
        if (handle != NULL)
                *handle = f.handle;
        if (rc != 0)
                return rc;
        return f.err != 0 ? f.err : f.count;
}

int ctl_dp_ack_many(struct ctl_dp *d, uint64_t handle, const uint64_t *seqs, uint32_t n)
{
        struct ctl_dp_batch b;
        int rc = ctl_dp_batch_begin(d, &b);
        if (rc != 0)
                return rc;
        uint32_t i = 0;
        uint64_t deadline = ctl_dp_now_ns() + CTL_DP_TIMEOUT_NS;
        while ((i < n || b.completed < b.submitted) && ctl_dp_now_ns() < deadline) {
                while (i < n) {
                        struct dp_cmd c = { .op = ATOMQ_OP_ACK, .handle = handle, .seq = seqs[i] };
                        rc = ctl_dp_batch_submit(d, &b, &c, NULL);
                        if (rc == -EAGAIN)
                                break;
                        i++;
                }
                if (b.completed < b.submitted)
                        ctl_dp_drain(d, CTL_DP_WAIT_SLICE_NS);
        }
        if (b.completed < b.submitted)
                d->stats.timeouts++;
        int acked = (int)(b.completed - b.failed);
        ctl_dp_batch_end(d, &b);
        return acked;
}

struct ctl_dp_stat_ctx {
        struct dp_cpl_stat *out;
        uint64_t handle;
        bool whole;
};

static void ctl_dp_stat_cpl(void *arg, const struct dp_cpl *c, uint32_t len)
{
        struct ctl_dp_stat_ctx *s = arg;
        s->handle = c->handle;
        if (c->status != 0 || len < sizeof(*c) + sizeof(*s->out) ||
            c->msgs_bytes != sizeof(*s->out))
                return;
        memcpy(s->out, c + 1, sizeof(*s->out));
        s->whole = true;
}

int ctl_dp_stat(struct ctl_dp *d, const char *name, uint32_t len, struct dp_cpl_stat *out,
                uint64_t *handle)
{
        struct dp_cmd c = { .op = DP_OP_STAT, .name_len = (uint16_t)len };
        struct ctl_dp_stat_ctx s = { .out = out };
        if (len == 0 || len > DP_CMD_NAME_MAX)
                return -EINVAL;
        int rc = ctl_dp_call(d, &c, name, NULL, ctl_dp_stat_cpl, &s);
        if (handle != NULL)
                *handle = s.handle;
        if (rc == 0 && !s.whole)
                rc = -EPROTO;
        return rc;
}

int ctl_dp_batch_begin(struct ctl_dp *d, struct ctl_dp_batch *b)
{
        memset(b, 0, sizeof(*b));
        for (uint32_t i = 0; i < CTL_DP_BATCHES_MAX; i++) {
                if (d->batches[i] != NULL)
                        continue;
                /* Ids are 24 bits (the tag above the sequence) and skip 0,
                 * the synchronous call's tag. */
                b->id = d->next_batch;
                d->next_batch = (d->next_batch + 1) & 0xffffffu;
                if (d->next_batch == 0)
                        d->next_batch = 1;
                b->last_ns = ctl_dp_now_ns();
                d->batches[i] = b;
                return 0;
        }
        return -EBUSY;
}

int ctl_dp_batch_submit(struct ctl_dp *d, struct ctl_dp_batch *b, struct dp_cmd *c,
                        const char *name)
{
        c->req_id = ctl_dp_req(d, b->id);
        int rc = ctl_dp_submit(d, c, name, NULL);
        if (rc != 0)
                return rc;
        b->submitted++;
        b->last_ns = ctl_dp_now_ns();
        return 0;
}

void ctl_dp_batch_fail(struct ctl_dp_batch *b, int err)
{
        b->submitted++;
        ctl_dp_batch_count(b, err);
}

void ctl_dp_batch_end(struct ctl_dp *d, struct ctl_dp_batch *b)
{
        for (uint32_t i = 0; i < CTL_DP_BATCHES_MAX; i++)
                if (d->batches[i] == b)
                        d->batches[i] = NULL;
        b->id = 0;
}
