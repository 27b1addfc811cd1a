/* ctl_dp.h - atomqd's client side of the dataplane engine, for the control
 * socket's handlers: engine commands run to their completion (create,
 * destroy, set, send, fetch, ack, stat), and batches that keep many
 * commands in flight and count their completions as they arrive.
 *
 * atomqd is one client of the engine (ctx->engine, client index
 * `client`, 0 today) and single-threaded; this module is the only reader
 * of that client's completion rings, so every completion passes through
 * ctl_dp_dispatch, which routes it by request id:
 *
 *   req_id = tag << 40 | sequence      tag 0: the synchronous call waited for
 *                                      tag n: batch n (ids never reused soon)
 *
 * A completion nobody waits for any more (a call that timed out, a batch
 * whose client went away) is counted as an orphan and dropped.
 *
 * Flow control: a worker that cannot write a completion holds back its
 * whole command ring, agents' commands included. So in-flight commands per
 * worker are capped at what its completion ring holds with room to spare
 * (inflight_max); a batch submit beyond it answers -EAGAIN, and the caller
 * drains completions and retries. The command ring being full is -EAGAIN
 * too.
 *
 *      struct ctl_dp dp;
 *      ctl_dp_init(&dp, &engine, 0);
 *      ctl_dp_create(&dp, "inbox.a", 7, &(struct dp_cmd_create){ .mode = 1 }, &h);
 *
 *      struct ctl_dp_batch b;
 *      ctl_dp_batch_begin(&dp, &b);
 *      while (more) { rc = ctl_dp_batch_submit(&dp, &b, &cmd, name);
 *                     if (rc == -EAGAIN) ctl_dp_drain(&dp, 1000000); }
 *      while (b.completed < b.submitted) ctl_dp_drain(&dp, 1000000);
 *      ctl_dp_batch_end(&dp, &b);
 */
#ifndef ATOMQ_CTL_DP_H
#define ATOMQ_CTL_DP_H

#include <stdbool.h>
#include <stdint.h>

#include "dataplane/dp_cmd.h"
#include "dataplane/dp_engine.h"

/* How long a synchronous call waits for its completion, and how long a
 * batch may go without one before its owner gives up. A worker answers in
 * microseconds; seconds mean the dataplane is gone (being restarted). */
#define CTL_DP_TIMEOUT_NS (2ull * 1000 * 1000 * 1000)
/* Batches in flight at once (bulk commands of different clients). */
#define CTL_DP_BATCHES_MAX 16u
/* Distinct errors a batch counts by name; the rest are "other". */
#define CTL_DP_ERRS_MAX 4u

struct ctl_dp_err {
        int err;            /* -errno */
        uint64_t count;
};

struct ctl_dp_batch {
        uint32_t id;        /* 0: not registered */
        uint64_t submitted;
        uint64_t completed;
        uint64_t failed;    /* completions with a status other than 0 */
        uint64_t last_ns;   /* last submit or completion (ctl_dp_now_ns) */
        struct ctl_dp_err errs[CTL_DP_ERRS_MAX];
        uint64_t errs_other;
};

/* Called with each completion of a synchronous call (valid for the call). */
typedef void ctl_dp_cpl_fn(void *arg, const struct dp_cpl *c, uint32_t len);
/* Called with each message of a fetch answer: the index-th of total. */
typedef void ctl_dp_msg_fn(void *arg, const struct dp_cpl_msg *m, uint32_t index,
                           uint32_t total);

struct ctl_dp_stats {
        uint64_t calls;     /* synchronous calls */
        uint64_t timeouts;  /* calls and batch waits given up */
        uint64_t orphans;   /* completions nobody waited for any more */
        uint64_t submits;   /* commands submitted, calls and batches */
};

struct ctl_dp {
        struct dp_engine *e;
        uint32_t client;
        uint32_t inflight_max;          /* per worker */
        uint32_t next_batch;
        uint64_t next_seq;
        /* The synchronous call waited for (req 0: none). */
        uint64_t call_req;
        bool call_done;
        int call_status;
        ctl_dp_cpl_fn *call_fn;
        void *call_arg;
        uint32_t inflight[DP_WORKERS_MAX];
        struct ctl_dp_batch *batches[CTL_DP_BATCHES_MAX];
        struct ctl_dp_stats stats;
};

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t ctl_dp_now_ns(void);

/* -EINVAL: no engine, or client out of its range. */
int ctl_dp_init(struct ctl_dp *d, struct dp_engine *e, uint32_t client);

/* Submits c (client and req_id are filled in) and waits for its
 * completion, handing it to fn (may be NULL). Returns the completion's
 * status (0 or the worker's -errno), or
 * -ETIMEDOUT: no answer within CTL_DP_TIMEOUT_NS (the command may still
 *             run later; its completion is then an orphan);
 * -EINVAL, -EMSGSIZE: as dp_engine_submit. */
int ctl_dp_call(struct ctl_dp *d, struct dp_cmd *c, const char *name,
                const struct dp_msg_in *m, ctl_dp_cpl_fn *fn, void *arg);

/* Synchronous helpers by name (the owner resolves it). Errors: those of
 * ctl_dp_call, and the worker's: -EEXIST (create: taken), -ENOENT (no such
 * entity), -ENOSPC (table full), -EINVAL (bad name or option),
 * -EOPNOTSUPP (storage disk; fetch on a log), -ENOBUFS (send: full). */
int ctl_dp_create(struct ctl_dp *d, const char *name, uint32_t len,
                  const struct dp_cmd_create *a, uint64_t *handle);
int ctl_dp_destroy(struct ctl_dp *d, const char *name, uint32_t len, uint64_t *handle);
int ctl_dp_set(struct ctl_dp *d, const char *name, uint32_t len, const struct dp_cmd_set *a);
int ctl_dp_send(struct ctl_dp *d, const char *name, uint32_t len, const void *payload,
                uint32_t payload_len, uint64_t *seq);
/* Up to max (1 .. DP_FETCH_MAX) messages, each handed to fn; returns the
 * count, or -errno. -EPROTO: a message of the answer did not check (those
 * before it were handed out). *handle gets the entity's handle. */
int ctl_dp_fetch(struct ctl_dp *d, const char *name, uint32_t len, uint32_t max,
                 ctl_dp_msg_fn *fn, void *arg, uint64_t *handle);
/* Acknowledges n messages of entity handle, all in flight at once; returns
 * how many were acknowledged (an at-most-once entity has none to ack). */
int ctl_dp_ack_many(struct ctl_dp *d, uint64_t handle, const uint64_t *seqs, uint32_t n);
/* The entity's record, read by its owner. *handle (may be NULL) gets its
 * handle. -ENOENT: no such entity; -EPROTO: a short answer. */
int ctl_dp_stat(struct ctl_dp *d, const char *name, uint32_t len, struct dp_cpl_stat *out,
                uint64_t *handle);

/* --- batches --- */

/* Registers b (zeroed here). -EBUSY: CTL_DP_BATCHES_MAX batches run. */
int ctl_dp_batch_begin(struct ctl_dp *d, struct ctl_dp_batch *b);

/* Submits c (client, req_id filled in) as part of b.
 * -EAGAIN: the owner has inflight_max commands out, or its command ring
 *          is full: drain and retry;
 * -EINVAL, -EMSGSIZE: as dp_engine_submit (counted by the caller). */
int ctl_dp_batch_submit(struct ctl_dp *d, struct ctl_dp_batch *b, struct dp_cmd *c,
                        const char *name);

/* Counts a command of b that could not be submitted (an -errno other than
 * -EAGAIN) as submitted and failed, so b's counts add up. */
void ctl_dp_batch_fail(struct ctl_dp_batch *b, int err);

/* Unregisters b: completions still to come are orphans. Safe twice. */
void ctl_dp_batch_end(struct ctl_dp *d, struct ctl_dp_batch *b);

/* Takes the completions that are there (waiting up to wait_ns for the
 * first when there are none; 0: no wait) and dispatches them. Returns how
 * many. */
int ctl_dp_drain(struct ctl_dp *d, int64_t wait_ns);

/* Forgets the in-flight counts: after the dataplane restarted, commands
 * it lost never complete and would hold their worker's cap for ever.
 * Completions that still come are not counted below 0. */
void ctl_dp_forget_inflight(struct ctl_dp *d);

/* Commands out, over all workers (for tests and show stats). */
uint64_t ctl_dp_inflight(const struct ctl_dp *d);

#endif /* ATOMQ_CTL_DP_H */
