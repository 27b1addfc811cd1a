/* ctl.h - what atomqd's modules share: the configuration and the context
 * every handler receives. One instance, in ctl_main.c. */
#ifndef ATOMQ_CTL_H
#define ATOMQ_CTL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "control/ctl_loop.h"
#include "dataplane/dp_engine.h"

#define CTL_PATH_MAX 108 /* sun_path */

/* Every key of --help and of the config file (the same names). */
struct ctl_config {
        char control_path[CTL_PATH_MAX]; /* --control */
        char control_group[64];          /* --control-group: the socket's group, mode 0660 */
        char agent_uids[512];            /* --agent-uids: who may attach; "": root, our euid */
        char nats_addr[64];              /* --nats ADDR:PORT, "off": none */
        uint32_t max_conns;              /* --max-conns: NATS connections per worker */
        uint64_t max_payload;            /* --max-payload */
        uint64_t max_pending;            /* --max-pending: unsent output per connection */
        uint32_t max_subs_per_conn;      /* --max-subs-per-conn */
        uint32_t ping_interval_ms;       /* --ping-interval-ms */
        char nats_token[128];            /* --nats-token: clients must send it */
        char nats_user[64];              /* --nats-user and --nats-pass */
        char nats_pass[128];
        bool nats_no_auth;               /* --nats-no-auth: a non-loopback listener without
                                          * credentials is allowed */
        char udp_addr[64];               /* --udp ADDR:PORT, "off": no atomq datagrams */
        uint32_t udp_sessions;           /* --udp-sessions: per worker */
        uint32_t udp_lease_ms;           /* --udp-lease-ms */
        char dpdk_args[1024];            /* --dpdk-args: the EAL's; "": no DPDK port */
        char dpdk_addr[64];              /* --dpdk-addr IPv4:PORT: ours on that port */
        char metrics_addr[64];           /* --metrics ADDR:PORT, "" or "off": none */
        char data_dir[256];              /* --data-dir */
        bool disk;                       /* --disk: the disk tier in data_dir */
        uint64_t disk_max;               /* --disk-max: a worker's log, 0: no limit */
        uint32_t disk_sync_us;           /* --disk-sync-us: sync batch's group commit */
        bool disk_direct;                /* --disk-direct: O_DIRECT log writes */
        uint64_t disk_segment;           /* --disk-segment: a log segment's size */
        char dataplane_path[256];        /* --dataplane: the atomq-dataplane binary */
        uint32_t workers;                /* --workers, 0: default */
        uint64_t arena_bytes;            /* --arena-size, 0: as the limits need */
        uint32_t max_entities;           /* --max-entities, per shard */
        uint32_t ack_wait_ms;            /* --ack-wait-ms: at-least-once redelivery */
        uint32_t control_clients_max;    /* --control-clients */
        uint32_t max_agents;             /* --max-agents: agent slots (dp_agent.h) */
        uint32_t agent_max_subs;         /* --agent-max-subs: quota per agent */
        uint32_t agent_max_entities;     /* --agent-max-entities: quota per agent */
        uint32_t max_channels;           /* --max-channels: direct channels atomqd manages */
        uint64_t agent_ring_bytes;       /* --agent-ring-size: delivery ring per worker */
        enum shm_hugepages hugepages;    /* --hugepages */
        uint32_t busy_poll;              /* --busy-poll: enum dp_idle_kind */
        bool inprocess;                  /* --inprocess: workers as threads of atomqd */
        bool once;                       /* --once: build everything, report, exit */
        char config_path[256];           /* --config: the file read, "" for none */
};

/* The running appliance, as every module of atomqd sees it. */
struct ctl_ctx {
        const struct ctl_config *cfg;
        struct ctl_loop *loop;
        struct dp_engine *engine;        /* atomqd's view: creator and client 0 */
        uint64_t started_realtime_ns;
        pid_t dataplane_pid;             /* 0 while none runs */
        uint32_t dataplane_restarts;
        volatile int stopping;           /* SIGTERM seen: refuse new work */
        uint64_t control_refused_uid;    /* control clients refused: peer not allowed */
        uint64_t agents_refused_uid;     /* attaches refused: uid not on --agent-uids */
};

#endif /* ATOMQ_CTL_H */
