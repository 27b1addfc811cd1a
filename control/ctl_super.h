/* ctl_super.h - atomqd's supervision of the atomq-dataplane process.
 *
 * atomqd builds the arena (dp_engine_init) and never runs the workers: it
 * starts atomq-dataplane with the arena's fd inherited (the only fd it
 * inherits besides stdin, stdout and stderr), watches it through a pidfd in
 * atomqd's loop, and when it dies logs how (status or signal) and starts it
 * again after a delay; the new process re-attaches the arena and carries on
 * with the same entities and queued messages (network connections drop and
 * clients reconnect).
 *
 * Restarts are rate-limited: the delay starts at delay_min_ms and doubles
 * with each restart in the last window_ms, up to delay_max_ms. When the
 * dataplane has died restarts_max times within window_ms and dies again, or
 * when it exits with DP_EXIT_USAGE or DP_EXIT_REFUSED (a restart cannot
 * cure those), supervision gives up: it logs an error, sets ctx->stopping
 * and ctl_super_failed() turns true, and atomqd exits with status 1. We
 * chose that over retrying forever: a dataplane that keeps dying with its
 * state in shared memory most likely dies of that state (a poisoned command
 * at the head of a ring, a corrupt shard), which every restart replays; the
 * service manager (systemd Restart=on-failure) then starts atomqd afresh,
 * with a new arena, and the operator sees a failed unit rather than a
 * process that looks alive and serves nothing.
 *
 *      ctl_super_init(&s, &ctx, "/usr/lib/atomq/atomq-dataplane",
 *                     engine.arena.fd, NULL);
 *      ctl_super_start(&s);
 *      while (!ctx.stopping)
 *              ctl_loop_run_once(ctx.loop, 1000);
 *      ctl_super_fini(&s);        // SIGTERM, bounded wait, then SIGKILL
 *      return ctl_super_failed(&s) ? 1 : 0;
 *
 * The loop must run in the thread that called ctl_super_start (the child's
 * parent-death signal follows that thread), and nothing else in atomqd may
 * reap children (no SIGCHLD SIG_IGN, no waitpid(-1)): the pidfd is opened
 * on the unreaped child.
 */
#ifndef ATOMQ_CTL_SUPER_H
#define ATOMQ_CTL_SUPER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "control/ctl.h"

#define CTL_SUPER_RESTARTS_MAX 64u         /* the most restarts_max may say */
#define CTL_SUPER_RESTARTS_DEFAULT 5u
#define CTL_SUPER_WINDOW_MS_DEFAULT 30000u
#define CTL_SUPER_DELAY_MIN_MS_DEFAULT 100u
#define CTL_SUPER_DELAY_MAX_MS_DEFAULT 5000u
/* Bounds on a configuration: an hour is the longest useful window or
 * delay; ctl_super_stop's timeout is bounded by the caller. */
#define CTL_SUPER_MS_MAX 3600000u
/* How long ctl_super_stop waits for a SIGKILLed child to be gone. */
#define CTL_SUPER_KILL_WAIT_MS 5000
/* What ctl_super_fini gives the child to stop after SIGTERM. */
#define CTL_SUPER_STOP_MS_DEFAULT 2000

struct ctl_super_config {
        uint32_t restarts_max;  /* restarts within window_ms before giving up, 1 .. 64 */
        uint32_t window_ms;
        uint32_t delay_min_ms;  /* the first restart's delay, >= 1 */
        uint32_t delay_max_ms;  /* >= delay_min_ms */
};

enum ctl_super_state {
        CTL_SUPER_IDLE,      /* not started, or stopped */
        CTL_SUPER_RUNNING,   /* a child runs */
        CTL_SUPER_WAITING,   /* the child died; a restart is due on the timer */
        CTL_SUPER_FAILED,    /* gave up: atomqd should exit 1 */
};

struct ctl_super {
        struct ctl_ctx *ctx;
        struct ctl_super_config cfg;
        enum ctl_super_state state;
        int arena_fd;
        int pidfd;                      /* the running child's; -1: none */
        int timerfd;                    /* the restart delay */
        pid_t pid;                      /* the running child; 0: none */
        uint64_t started_ns;            /* when the child was started */
        uint64_t restart_ns[CTL_SUPER_RESTARTS_MAX]; /* recent restarts, a ring */
        uint32_t restarts;              /* every restart attempt, the ring's index */
        char path[256];
        char fd_arg[16];
        char agent_fd_arg[16];
        char nats_arg[160];
        char udp_arg[128];              /* "": no datagrams */
        char dpdk_args[1024];           /* "": no DPDK port */
        char dpdk_addr[64];
        char data_dir_arg[256];         /* "": no disk tier */
        char disk_max_arg[24];
        char disk_sync_arg[16];
        char disk_segment_arg[24];
        bool disk_direct;
        /* path --arena-fd N [--agent-fds M] [--nats SPEC] [--udp SPEC]
         * [--data-dir DIR --disk-max N --disk-sync-us N [--disk-direct]] */
        char *argv[28];
        const int *agent_fds;           /* the agent files (dp_agent.h), the caller's */
        uint32_t agent_fd_count;
};

/* Most agent descriptors a dataplane inherits: two per agent slot. */
#define CTL_SUPER_AGENT_FDS_MAX 254u

/* Fills cfg with the defaults above (5 restarts in 30 s, 100 ms to 5 s). */
void ctl_super_config_default(struct ctl_super_config *cfg);

/* Prepares supervision of dataplane_path running the arena behind
 * arena_fd (which stays the caller's and must stay open), registering its
 * restart timer with ctx->loop. cfg NULL: the defaults. s must not move
 * afterwards (the loop holds a pointer to it).
 * -EINVAL: a cfg value out of its range, a negative fd, a path too long
 *          for s->path;
 * -ENOENT, -EACCES: dataplane_path is no executable file (access(2));
 * -errno of timerfd_create, or of ctl_loop_add (-ENOSPC: the loop is full). */
int ctl_super_init(struct ctl_super *s, struct ctl_ctx *ctx, const char *dataplane_path,
                   int arena_fd, const struct ctl_super_config *cfg);

/* Hands the dataplane its NATS listener (dp_nats_spec_format), or none
 * (NULL): takes effect at the next spawn. -EINVAL: the spec is too long. */
int ctl_super_set_nats(struct ctl_super *s, const char *spec);
/* Hands the dataplane its datagram sockets (dp_dgram_spec_format), or
 * none (NULL). -EINVAL: too long. */
int ctl_super_set_udp(struct ctl_super *s, const char *spec);
/* Hands the dataplane a DPDK port: the EAL's arguments and our address on
 * it. -EINVAL: too long. */
int ctl_super_set_dpdk(struct ctl_super *s, const char *eal_args, const char *addr);

/* The dataplane's disk tier: its logs in data_dir (NULL: none). -EINVAL:
 * a path too long. */
int ctl_super_set_disk(struct ctl_super *s, const char *data_dir, uint64_t max_bytes,
                       uint32_t sync_us, bool direct, uint64_t segment_bytes);

/* The agent files the dataplane inherits besides the arena (count of them,
 * which stay the caller's). In the child the arena becomes fd 3 and these
 * fds 4 .. 4 + count - 1, in order, so atomq-dataplane is run with
 * --arena-fd 3 --agent-fds 4. -EINVAL: count above the max or an fd < 3. */
int ctl_super_set_agent_fds(struct ctl_super *s, const int *fds, uint32_t count);

/* Starts the dataplane: fork, then exec with the arena fd inherited, and
 * the child's pidfd registered with the loop. Sets ctx->dataplane_pid.
 * -EALREADY: a child runs or a restart is pending;
 * -EPERM: supervision failed (ctl_super_failed) or is being torn down;
 * -errno of pipe2, fork, pidfd_open or ctl_loop_add, or of the child's
 * fcntl or execve (reported back through a close-on-exec pipe). */
int ctl_super_start(struct ctl_super *s);

/* Stops the dataplane: cancels a pending restart, sends SIGTERM, waits up
 * to timeout_ms for it to exit, then SIGKILLs it and waits up to
 * CTL_SUPER_KILL_WAIT_MS. No restart follows. Returns 0 when it exited
 * within timeout_ms (or none ran), 1 when it had to be killed,
 * -ETIMEDOUT when even SIGKILL did not end it in time (its pidfd stays
 * watched and the exit is logged when it comes), -EINVAL for a negative
 * timeout_ms. */
int ctl_super_stop(struct ctl_super *s, int timeout_ms);

/* Has supervision given up (atomqd should exit 1)? */
static inline bool ctl_super_failed(const struct ctl_super *s)
{
        return s->state == CTL_SUPER_FAILED;
}

/* ctl_super_stop with CTL_SUPER_STOP_MS_DEFAULT, then unregisters and
 * closes what init opened. Safe on a zeroed ctl_super; keeps the FAILED
 * state readable. */
void ctl_super_fini(struct ctl_super *s);

#endif /* ATOMQ_CTL_SUPER_H */
