/* dp_engine.h - the dataplane's workers: N share-nothing workers, their
 * shards and the rings between them in one shared-memory arena.
 *
 * Arena layout: five regions, whatever N, so the region table never runs
 * out (SHM_ARENA_REGIONS_MAX is 32 and N can be 64):
 *
 *   dp.engine  struct dp_engine_hdr (geometry and offsets), one wake word
 *              per client, one struct dp_worker_stats per worker
 *   dp.shards  N shards (dp_shard_init with the engine's shard config)
 *   dp.cmd     N command rings (shm_mpsc: clients -> worker)
 *   dp.cpl     N * C completion rings (shm_vring: worker -> client c)
 *   dp.mesh    N * (N - 1) mesh rings (shm_vring: worker i -> worker j)
 *
 * Everything is found from the header by offsets, so a dataplane process
 * can attach the published arena later (dp_engine_attach: the shards keep
 * their entities, messages and timers). The engine then starts one thread
 * per worker (dp_worker_run) and stops and joins them. One process at a
 * time runs an arena's workers: owner_pid in the header says which.
 *
 * Processes (docs/architecture.md): atomqd creates the arena with
 * dp_engine_init and never starts the workers; it is client 0. The
 * atomq-dataplane process (dp_main.c) attaches the arena by its fd and runs
 * the workers; atomqd restarts it when it dies (control/ctl_super.c).
 *
 * Routing is a pure function of the command: a named entity lives on
 * dp_engine_shard_of_name(name), a handle names its shard, the members of a
 * queue group share the group's shard. dp_engine_submit puts a command on
 * its owner's ring; dp_engine_submit_to puts it on any worker's ring, which
 * forwards it to the owner through the mesh. A publish goes to the worker
 * of its subject (so one publisher's messages to one subject take one path
 * and stay in order) and from there to every shard.
 *
 * Clients: up to DP_CLIENTS_MAX, each one thread at a time, each with a
 * completion ring per worker. Any thread may submit with any client index;
 * the completion comes back in that client's rings.
 *
 *      struct dp_engine_config cfg;
 *      dp_engine_config_default(&cfg, 4096);
 *      cfg.workers = 2;
 *      dp_engine_init(&e, &cfg);
 *      dp_engine_start(&e);
 *      struct dp_cmd c = { .op = ATOMQ_OP_CREATE, .req_id = 1, .name_len = 5,
 *                          .args.create.mode = DP_MODE_MAILBOX };
 *      dp_engine_submit(&e, &c, "inbox", NULL);
 *      dp_engine_wait(&e, 0, on_cpl, arg, 16, 1000000000);
 *      dp_engine_stop(&e);
 *      dp_engine_fini(&e);
 */
#ifndef ATOMQ_DP_ENGINE_H
#define ATOMQ_DP_ENGINE_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "dataplane/dp_agent.h"
#include "dataplane/dp_cmd.h"
#include "dataplane/dp_dgram.h"
#include "dataplane/dp_idle.h"
#include "dataplane/dp_disk.h"
#include "dataplane/dp_nats.h"

struct dp_groups;
#include "dataplane/dp_shard.h"
#include "dataplane/dp_worker.h"
#include "shm/shm_arena.h"

#define DP_ENGINE_MAGIC 0x454e494745514d41ull /* "AMQEGINE" */
#define DP_ENGINE_VERSION 6 /* 2: shard and idle config, owner, audit; 3: agents;
                             * 4: NATS counters in the worker stats (384 bytes);
                             * 5: datagram counters (512 bytes), net client columns;
                             * 6: a polled backend's counters (640 bytes) */
#define DP_REGION_ENGINE (SHM_REGION_USER + 1)
#define DP_REGION_SHARDS (SHM_REGION_USER + 2)
/* Ring sizes a command (DP_CMD_BYTES_MAX) or a completion (DP_CPL_BYTES_MAX)
 * fits in: a ring's largest record is capacity / 2 - 8. */
#define DP_CMD_RING_BYTES_MIN (64u * 1024)
#define DP_CPL_RING_BYTES_MIN (128u * 1024)
#define DP_RING_BYTES_MAX (1u << 30)

struct dp_engine_config {
        uint32_t workers;           /* N; 0: dp_engine_workers_default() */
        uint32_t clients;           /* completion-ring columns, 1 .. DP_CLIENTS_MAX */
        bool net_clients;           /* one more column per worker, for its datagram
                                     * sessions' commands (dp_engine_net_client) */
        uint32_t cmd_ring_bytes;    /* per worker, a power of two */
        uint32_t cpl_ring_bytes;    /* per worker and client */
        uint32_t mesh_ring_bytes;   /* per ordered pair of workers */
        uint32_t agents;            /* agent slots, 0 .. DP_AGENTS_MAX (dp_agent.h) */
        uint32_t agent_dlv_ring_bytes; /* per agent and worker; 0: the default */
        struct dp_shard_config shard; /* every shard's; .shard is set per worker */
        struct dp_idle_config idle;
        enum shm_hugepages hugepages;
        dp_worker_deliver_fn *deliver;  /* NULL: deliveries are only counted */
        void *deliver_arg;
        const struct dp_nats_config *nats; /* NULL or not enabled: no NATS listener */
        const struct dp_disk_config *disk; /* NULL or no data_dir: no disk tier */
        const struct dp_dgram_config *dgram; /* NULL or not enabled: no datagrams
                                              * (needs net_clients) */
};

/* What dp_engine_attach found in the shards it attached (sums over the
 * shards): the damage a dataplane killed in the middle of a command can
 * leave, which attach accepts but counts (dp_engine_attach.c explains it). */
struct dp_engine_audit {
        uint32_t leaked_slots;    /* entity slots neither live nor free */
        uint32_t leaked_msgs;     /* message records neither queued nor free */
        uint32_t unindexed;       /* live named entities their name does not find */
        uint32_t count_skew;      /* counters that disagree with what they count */
        uint32_t cmd_rings_stuck; /* command rings whose oldest record never commits */
        uint32_t reserved[3];
};
_Static_assert(sizeof(struct dp_engine_audit) == 32, "audit record");

/* The head of the dp.engine region. Offsets are from the arena's base.
 * Written by the creator before it publishes the arena; afterwards only
 * owner_pid, attaches and audit change (by the process that attaches). */
struct dp_engine_hdr {
        uint64_t magic;
        uint32_t version;
        uint32_t workers;
        uint32_t clients;
        uint32_t cmd_ring_bytes;
        uint32_t cpl_ring_bytes;
        uint32_t mesh_ring_bytes;
        uint64_t shards_off, shard_stride;
        uint64_t cmd_off, cmd_stride;
        uint64_t cpl_off, cpl_stride;    /* ring (w, c) at cpl_off + (w * C + c) * stride */
        uint64_t mesh_off, mesh_stride;  /* ring (i, j) at dp_engine_mesh_index(N, i, j) */
        uint64_t wake_off;               /* C words, one line each */
        uint64_t stats_off;              /* N struct dp_worker_stats, DP_WORKER_STATS_BYTES each */
        _Atomic int32_t owner_pid;       /* the process running the workers; 0: none */
        uint32_t attaches;               /* successful dp_engine_attach calls */
        uint64_t reserved;
        struct dp_shard_config shard;    /* every shard's geometry (.shard 0) */
        struct dp_idle_config idle;      /* the creator's idle strategy */
        struct dp_engine_audit audit;    /* what the last attach found */
        uint32_t agents;                 /* agent slots */
        uint32_t agent_dlv_ring_bytes;
        uint64_t agents_off;             /* agents struct dp_agent_slot */
        _Atomic uint32_t agents_epoch;   /* bumped by atomqd at every slot change */
        uint32_t net_client_base;        /* worker i's net column is base + i; 0: none */
        uint8_t reserved2[24];
};
_Static_assert(sizeof(struct dp_engine_hdr) == 320, "engine header is five lines");
_Static_assert(offsetof(struct dp_engine_hdr, shards_off) == 32, "shards_off offset");
_Static_assert(offsetof(struct dp_engine_hdr, stats_off) == 104, "stats_off offset");
_Static_assert(offsetof(struct dp_engine_hdr, owner_pid) == 112, "owner_pid offset");
_Static_assert(offsetof(struct dp_engine_hdr, shard) == 128, "shard config offset");
_Static_assert(offsetof(struct dp_engine_hdr, idle) == 208, "idle config offset");
_Static_assert(offsetof(struct dp_engine_hdr, audit) == 240, "audit offset");
_Static_assert(offsetof(struct dp_engine_hdr, agents_off) == 280, "agents_off offset");

/* A completion as a client receives it: valid for the call only. */
typedef void dp_cpl_fn(void *arg, const struct dp_cpl *c, uint32_t len);

/* A process's view of the engine, the creator's (dp_engine_init) or an
 * attacher's (dp_engine_attach): process-local, pointers allowed. */
struct dp_engine {
        struct shm_arena arena;
        struct dp_engine_hdr *hdr;
        uint32_t workers;
        uint32_t clients;
        struct dp_worker *w;            /* N workers */
        struct shm_mpsc *cmd_prod;      /* producer views: read only, any thread */
        struct shm_vring *cpl_cons;     /* client side, [c * N + w] */
        struct shm_vring *cpl_prod;     /* worker side, [w * C + c] */
        struct shm_vring *mesh_prod;    /* [i * N + j]: i -> j, producer (i) side */
        struct shm_vring *mesh_cons;    /* [j * N + i]: i -> j, consumer (j) side */
        struct shm_wake **client_wake;  /* C words in the arena */
        struct shm_wake **worker_wake;  /* N command-ring words */
        uint32_t *poll_next;            /* per client: the worker its next poll starts at */
        uint32_t agents;                /* agent slots (dp_agent.h) */
        struct dp_agent_slot *agent_slots; /* in the arena */
        struct dp_agent_file *agent_files; /* process-local: fds and mappings */
        bool owner;                     /* this view holds hdr->owner_pid (dp_engine_claim) */
        struct dp_nats_config nats;     /* process-local: each worker's listener */
        struct dp_disk_config disk;     /* process-local: each worker's log (data_dir NULL: none) */
        struct dp_dgram_config dgram;   /* process-local: each worker's datagram sessions */
        struct nic_dgram_backend dgram_nic; /* process-local: a polled datagram backend
                                             * (DPDK), set before dp_engine_start */
        struct dp_groups *groups;       /* process-local: queue groups across shards (dp_groups.h) */
};

/* Online CPUs minus one (one core is left to the control plane and the
 * system), at least 1, at most DP_WORKERS_MAX. */
uint32_t dp_engine_workers_default(void);

/* Defaults: workers 0 (the default count), 1 client, 1 MiB command and mesh
 * rings, 256 KiB completion rings, shards of dp_shard_config_default with
 * max_entities, adaptive idle, hugepages when reserved. */
void dp_engine_config_default(struct dp_engine_config *cfg, uint32_t max_entities);

/* Builds the arena, formats every shard and ring, publishes the arena.
 * Threads are not started. Allocates its process-local views here (the
 * data path never does).
 * -EINVAL: workers above DP_WORKERS_MAX or DP_SHARDS_MAX, clients 0 or
 *          above DP_CLIENTS_MAX, a ring size not a power of two, below its
 *          minimum or above DP_RING_BYTES_MAX, a bad shard or idle config;
 * -ENOMEM: no memory for the views; errors of shm_arena_create. */
int dp_engine_init(struct dp_engine *e, const struct dp_engine_config *cfg);

/* How dp_engine_attach sets up the workers it attaches. */
struct dp_engine_attach_opts {
        const struct dp_idle_config *idle; /* NULL: the creator's (in the header) */
        dp_worker_deliver_fn *deliver;     /* NULL: deliveries are only counted */
        void *deliver_arg;
        int agent_fd_base;                 /* arenas with agent slots: the first of
                                            * their inherited fds (dp_agent_files_adopt) */
        const struct dp_nats_config *nats; /* NULL or not enabled: no NATS listener */
        const struct dp_disk_config *disk; /* NULL or no data_dir: no disk tier */
        const struct dp_dgram_config *dgram; /* NULL or not enabled: no datagrams
                                              * (the arena needs net columns) */
};

/* Maps the arena behind arena_fd (which stays the caller's), published by
 * another process's dp_engine_init, and builds the same views
 * dp_engine_init builds, without formatting anything: each shard is
 * re-attached with its entities, messages and timers, each ring carries on
 * from its shared indexes. dp_engine_start then runs the workers here.
 * Makes this process the arena's worker owner (owner_pid), and records in
 * the header what it found (hdr->audit, hdr->attaches). o may be NULL.
 * -EBADF: arena_fd is not a file;
 * -EINVAL: the file is too small to be an arena, or o->idle is invalid;
 * -EPROTO: not a published arena, no dp.engine region, or its magic or
 *          version is not this build's; a shard or ring that was never
 *          formatted;
 * -EPROTONOSUPPORT: another arena layout version;
 * -EBADMSG: a size, offset, stride or count in the arena or engine header
 *           that does not add up, a shard in the wrong place, a broken
 *           link in a shard (a free-list cycle, a record owned twice);
 * -EBUSY: another live process runs this arena's workers;
 * -ENOMEM: no memory for the views; other -errno of mmap or fcntl. */
int dp_engine_attach(struct dp_engine *e, int arena_fd, const struct dp_engine_attach_opts *o);

/* atomq-dataplane's exit status (dp_main.c), read by its supervisor
 * (control/ctl_super.c): 0 after SIGTERM or SIGINT, 1 for a failure a
 * restart may cure, and these two, which a restart cannot cure. */
#define DP_EXIT_USAGE 2   /* a bad command line */
#define DP_EXIT_REFUSED 3 /* the arena fd was refused (not a file, not an engine, corrupt) */

/* Starts every worker not running.
 * -EBUSY: another live process runs this arena's workers;
 * other -errno of pthread_create (workers already started keep running;
 * dp_engine_stop stops them). */
int dp_engine_start(struct dp_engine *e);

/* Starts worker i alone (tests hold others back). -EINVAL: i >= N;
 * -EALREADY: running; -EBUSY: as dp_engine_start. */
int dp_engine_start_worker(struct dp_engine *e, uint32_t i);

/* Stops and joins every running worker. What is left in the rings stays
 * there: a restart carries on with it. */
void dp_engine_stop(struct dp_engine *e);

/* Stops the workers, gives up the worker ownership when this process held
 * it, unmaps the arena, frees the views. Safe on a zeroed engine. */
void dp_engine_fini(struct dp_engine *e);

/* The shard of a name: xxHash3 of its bytes modulo N. The one place that
 * decides where named things live. */
uint32_t dp_engine_shard_of_name(const struct dp_engine *e, const char *name, uint32_t len);

/* The shard of a queue group: all its members subscribe there, so a
 * publish, which reaches every shard once, picks one member of the group. */
uint32_t dp_engine_shard_of_group(const struct dp_engine *e, uint32_t group);

/* The worker that must execute c (name: its name section):
 * returns 0 with *owner set; 1 when any worker may (anonymous create,
 * subscription without group or entity, publish); -EINVAL when c names a
 * handle of no shard of this engine (0, or a shard >= N). */
int dp_engine_owner(const struct dp_engine *e, const struct dp_cmd *c, const char *name,
                    uint32_t *owner);

/* Submits a command to the ring of the worker that owns it (for "any": the
 * subject's worker for a publish, the pattern's for a subscription, req_id
 * modulo N for an anonymous create). c->name_len bytes of name are copied;
 * m is the message of a send or publish. Any thread.
 * -ENOBUFS: the ring is full now (poll completions and retry);
 * -EMSGSIZE: the record would exceed DP_CMD_BYTES_MAX;
 * -EINVAL: client out of range, unknown op, a message missing or given to
 *          an op without one, or an owner of -EINVAL above;
 * -EBUSY, -EPROTO: as shm_mpsc_reserve. */
int dp_engine_submit(struct dp_engine *e, const struct dp_cmd *c, const char *name,
                     const struct dp_msg_in *m);

/* As dp_engine_submit, onto worker w's ring whoever owns the command. */
int dp_engine_submit_to(struct dp_engine *e, uint32_t w, const struct dp_cmd *c,
                        const char *name, const struct dp_msg_in *m);

/* Hands up to max completions of `client` (from all workers) to fn.
 * Returns the count, or -EINVAL for a bad client. One thread per client.
 * Records that are not completions are skipped. */
int dp_engine_poll(struct dp_engine *e, uint32_t client, dp_cpl_fn *fn, void *arg,
                   unsigned max);

/* As dp_engine_poll, but sleeps on the client's wake word up to timeout_ns
 * (< 0: no limit) when there is nothing. Returns the count (0 after the
 * timeout or a signal), or -EINVAL for a bad client. */
int dp_engine_wait(struct dp_engine *e, uint32_t client, dp_cpl_fn *fn, void *arg,
                   unsigned max, int64_t timeout_ns);

/* The completion column of worker w's datagram sessions, or -ENOENT when
 * the engine was built without net columns. */
static inline int dp_engine_net_client(const struct dp_engine *e, uint32_t w)
{
        if (e->hdr->net_client_base == 0)
                return -ENOENT;
        return (int)(e->hdr->net_client_base + w);
}

static inline const struct dp_worker_stats *dp_engine_stats(const struct dp_engine *e,
                                                            uint32_t i)
{
        return e->w[i].stats;
}

/* The index of ring (i -> j), i != j, among the N * (N - 1) mesh rings. */
static inline uint32_t dp_engine_mesh_index(uint32_t n, uint32_t i, uint32_t j)
{
        return i * (n - 1) + (j < i ? j : j - 1);
}

#endif /* ATOMQ_DP_ENGINE_H */
