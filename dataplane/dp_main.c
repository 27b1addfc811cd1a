/* dp_main.c - atomq-dataplane, the process that runs the dataplane workers.
 *
 *      atomq-dataplane --arena-fd 3 --busy-poll adaptive
 *
 * atomqd builds the shared-memory arena (dp_engine_init), then starts this
 * binary with the arena's fd inherited and supervises it
 * (control/ctl_super.c). It attaches the arena (dp_engine_attach: the
 * shards carry on with their entities and queued messages), runs one
 * thread per worker, and stops them on SIGTERM or SIGINT. It dies with
 * atomqd: the parent-death signal is SIGTERM, and a parent that died
 * before that was set is caught by comparing getppid() with the arena's
 * creator. Exit status: 0 stopped by a signal, 1 a failure a restart may
 * cure, DP_EXIT_USAGE (2) a bad command line, DP_EXIT_REFUSED (3) the
 * arena fd was refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "dataplane/dp_dpdk.h"
#include "dataplane/dp_engine.h"
#include "shm/shm_log.h"

/* How often the main thread looks for its parent besides the death signal
 * (which goes with the thread that forked us, not the whole process). */
#define DP_MAIN_PARENT_CHECK_S 1

struct dp_main_opts {
        int arena_fd;                /* -1: not given */
        int agent_fd_base;           /* -1: not given */
        bool idle_set;
        struct dp_idle_config idle;  /* with idle_set: overrides atomqd's */
        struct dp_nats_config nats;  /* enabled by --nats */
        struct dp_dgram_config dgram; /* enabled by --udp */
        const char *dpdk_args;       /* --dpdk-args: the EAL's; NULL: no DPDK */
        const char *dpdk_addr;       /* --dpdk-addr IPv4:PORT: ours on the DPDK port */
        struct dp_disk_config disk;  /* enabled by --data-dir */
};

static void dp_main_usage(FILE *out)
{
        fprintf(out,
                "usage: atomq-dataplane --arena-fd N [--agent-fds M] [--nats SPEC] [--udp SPEC]\n"
                "                       [--busy-poll adaptive|always] [--data-dir DIR\n"
                "                       [--disk-max BYTES] [--disk-sync-us N] [--disk-direct]\n"
                "                       [--disk-segment BYTES]]\n"
                "\n"
                "Runs the dataplane workers of an arena that atomqd created. atomqd starts\n"
                "it with the arena's file descriptor inherited and restarts it when it dies;\n"
                "the workers carry on with the entities and messages in the arena.\n"
                "It is not meant to be started by hand.\n"
                "\n"
                "options:\n"
                "  --arena-fd N             the inherited arena file descriptor (required)\n"
                "  --agent-fds M            the first of the inherited agent files: slot s has\n"
                "                           its memfd at M + 2s and its eventfd at M + 2s + 1\n"
                "                           (required when the arena has agent slots)\n"
                "  --nats HOST:PORT[,conns=N,payload=N,pending=N,subs=N,ping_ms=N]\n"
                "                           serve the NATS protocol: a listener per worker on\n"
                "                           HOST:PORT (SO_REUSEPORT), at most conns connections\n"
                "                           a worker, payload bytes a message, pending bytes of\n"
                "                           unsent output and subs subscriptions a connection,\n"
                "                           a server PING every ping_ms; credentials come\n"
                "                           from the environment: " DP_NATS_ENV_TOKEN ", or\n"
                "                           " DP_NATS_ENV_USER " and " DP_NATS_ENV_PASS "\n"
                "  --udp HOST:PORT[,sessions=N,lease_ms=N]\n"
                "                           serve atomq datagrams (docs/protocol.md): a UDP\n"
                "                           socket per worker on HOST:PORT (SO_REUSEPORT), at\n"
                "                           most sessions a worker, each ending lease_ms after\n"
                "                           its peer was last heard from (needs an arena made\n"
                "                           with datagrams on: atomqd --udp)\n"
                "  --dpdk-args 'EAL ARGS' --dpdk-addr IPv4:PORT\n"
                "                           also serve atomq datagrams on a DPDK port: the EAL\n"
                "                           from these arguments (always give --no-pci unless a\n"
                "                           NIC is bound), one queue per worker with RSS, our\n"
                "                           address and UDP port on it (needs --udp, which may\n"
                "                           say kernel=0: no kernel socket)\n"
                "  --busy-poll adaptive|always\n"
                "                           override atomqd's idle strategy: back off when\n"
                "                           idle (adaptive) or spin pinned to a CPU (always)\n"
                "  --data-dir DIR           the disk tier: worker i keeps its log in DIR/wi\n"
                "                           (without it, storage disk is refused)\n"
                "  --disk-max BYTES         a worker's log may take this much disk (0: no limit)\n"
                "  --disk-sync-us N         sync batch's group commit interval (default 1000)\n"
                "  --disk-direct            O_DIRECT log writes (default: buffered + fdatasync)\n"
                "  --disk-segment BYTES     a log segment's size (default 64 MiB); a log of 4\n"
                "                           segments is compacted to what is live\n"
                "  -h, --help               this text\n"
                "  -V, --version            print the version\n"
                "\n"
                "exit status: 0 stopped by SIGTERM or SIGINT, 1 failed (a restart may help),\n"
                "2 bad command line, 3 the arena fd was refused\n"
                "\n"
                "example (what atomqd runs, with the arena on fd 3):\n"
                "  atomq-dataplane --arena-fd 3 --agent-fds 4\n");
}

static int dp_main_error(const char *opt, const char *value, const char *want)
{
        fprintf(stderr, "atomq-dataplane: %s: '%s' is not %s\n", opt, value, want);
        return -1;
}

/* A file descriptor number: decimal, 0 .. INT_MAX, nothing after it. */
static int dp_main_fd_parse(const char *s, int *fd)
{
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno != 0 || end == s || *end != '\0' || v < 0 || v > INT_MAX)
                return -EINVAL;
        *fd = (int)v;
        return 0;
}

static int dp_main_u64_parse(const char *s, uint64_t *out)
{
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno != 0 || end == s || *end != '\0' || s[0] == '-')
                return -EINVAL;
        *out = v;
        return 0;
}

/* Returns 0, 1 when the program should exit 0 (help, version), or -1 after
 * printing an error that names the option. */
static int dp_main_parse(struct dp_main_opts *o, int argc, char **argv)
{
        static const struct option longopts[] = {
                { "arena-fd", required_argument, NULL, 'f' },
                { "agent-fds", required_argument, NULL, 'a' },
                { "busy-poll", required_argument, NULL, 'b' },
                { "nats", required_argument, NULL, 'n' },
                { "udp", required_argument, NULL, 'u' },
                { "dpdk-args", required_argument, NULL, 'E' },
                { "dpdk-addr", required_argument, NULL, 'A' },
                { "data-dir", required_argument, NULL, 'd' },
                { "disk-max", required_argument, NULL, 'm' },
                { "disk-sync-us", required_argument, NULL, 's' },
                { "disk-direct", no_argument, NULL, 'D' },
                { "disk-segment", required_argument, NULL, 'S' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { NULL, 0, NULL, 0 },
        };
        int c, kind;
        uint64_t u;
        while ((c = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
                switch (c) {
                case 'f':
                        if (dp_main_fd_parse(optarg, &o->arena_fd) != 0)
                                return dp_main_error("--arena-fd", optarg,
                                                     "a file descriptor number");
                        break;
                case 'a':
                        if (dp_main_fd_parse(optarg, &o->agent_fd_base) != 0)
                                return dp_main_error("--agent-fds", optarg,
                                                     "a file descriptor number");
                        break;
                case 'n':
                        dp_nats_config_default(&o->nats);
                        if (dp_nats_spec_parse(&o->nats, optarg) != 0)
                                return dp_main_error("--nats", optarg,
                                                     "HOST:PORT[,key=N...] (see --help)");
                        if (dp_nats_config_auth_env(&o->nats) != 0) {
                                fprintf(stderr, "atomq-dataplane: bad NATS credentials in "
                                        "the environment (" DP_NATS_ENV_TOKEN ", "
                                        DP_NATS_ENV_USER ", " DP_NATS_ENV_PASS ")\n");
                                return -1;
                        }
                        break;
                case 'u':
                        dp_dgram_config_default(&o->dgram);
                        if (dp_dgram_spec_parse(&o->dgram, optarg) != 0)
                                return dp_main_error("--udp", optarg,
                                                     "IPv4:PORT[,key=N...] (see --help)");
                        break;
                case 'E':
                        o->dpdk_args = optarg;
                        break;
                case 'A':
                        o->dpdk_addr = optarg;
                        break;
                case 'd':
                        if (optarg[0] == '\0')
                                return dp_main_error("--data-dir", optarg, "a directory");
                        o->disk.data_dir = optarg;
                        break;
                case 'm':
                        if (dp_main_u64_parse(optarg, &o->disk.dir_bytes_max) != 0)
                                return dp_main_error("--disk-max", optarg, "a number of bytes");
                        break;
                case 's':
                        if (dp_main_u64_parse(optarg, &u) != 0 || u == 0 || u > 10000000)
                                return dp_main_error("--disk-sync-us", optarg,
                                                     "1 to 10000000 microseconds");
                        o->disk.batch_us = (uint32_t)u;
                        break;
                case 'D':
                        o->disk.direct = true;
                        break;
                case 'S':
                        if (dp_main_u64_parse(optarg, &o->disk.segment_bytes) != 0 ||
                            o->disk.segment_bytes < (2u << 20))
                                return dp_main_error("--disk-segment", optarg,
                                                     "a number of bytes, at least 2 MiB");
                        break;
                case 'b':
                        kind = dp_idle_kind_parse(optarg);
                        if (kind < 0 || strcmp(optarg, "auto") == 0)
                                return dp_main_error("--busy-poll", optarg,
                                                     "one of adaptive, always");
                        dp_idle_config_default(&o->idle);
                        o->idle.kind = (uint32_t)kind;
                        o->idle_set = true;
                        break;
                case 'h':
                        dp_main_usage(stdout);
                        return 1;
                case 'V':
                        printf("atomq-dataplane %s\n", ATOMQ_VERSION);
                        return 1;
                default:
                        dp_main_usage(stderr);
                        return -1;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "atomq-dataplane: unexpected argument '%s'\n", argv[optind]);
                return -1;
        }
        if (o->arena_fd < 0) {
                fprintf(stderr, "atomq-dataplane: --arena-fd is required: this process runs "
                        "the workers of an arena atomqd created and hands down; atomqd "
                        "starts it (see --help)\n");
                return -1;
        }
        if (fcntl(o->arena_fd, F_GETFD) < 0) {
                fprintf(stderr, "atomq-dataplane: --arena-fd %d: not an open file descriptor "
                        "(%s)\n", o->arena_fd, strerror(errno));
                return -1;
        }
        return 0;
}

/* The exit status for an attach error: can a restart with the same fd
 * help? Not when the fd or the arena behind it is wrong. */
static int dp_main_attach_status(int rc)
{
        switch (rc) {
        case -EBADF:
        case -EINVAL:
        case -EPROTO:
        case -EPROTONOSUPPORT:
        case -EBADMSG:
                return DP_EXIT_REFUSED;
        default:
                return 1;
        }
}

static void dp_main_attached_log(const struct dp_engine *e, int fd)
{
        const struct dp_engine_hdr *h = e->hdr;
        const struct dp_engine_audit *a = &h->audit;
        shm_log(SHM_LOG_INFO, "atomq-dataplane %s: attached arena fd %d (created by pid %d, "
                "%llu MiB): %u workers, %u clients, attach #%u", ATOMQ_VERSION, fd,
                (int)e->arena.hdr->creator_pid, (unsigned long long)(e->arena.bytes >> 20),
                e->workers, e->clients, h->attaches);
        if (a->leaked_slots != 0 || a->leaked_msgs != 0 || a->count_skew != 0)
                shm_log(SHM_LOG_WARN, "the previous dataplane left damage: %u entity slots "
                        "and %u message records leaked, %u counters off", a->leaked_slots,
                        a->leaked_msgs, a->count_skew);
        /* These two stop work: see dp_engine_attach.c. */
        if (a->unindexed != 0)
                shm_log(SHM_LOG_ERR, "%u named entities are no longer found by their names "
                        "(killed mid-create or mid-destroy); a replayed destroy of one "
                        "aborts the dataplane", a->unindexed);
        if (a->cmd_rings_stuck != 0)
                shm_log(SHM_LOG_ERR, "%u command rings are stuck on a record that never "
                        "commits: their workers take no more commands", a->cmd_rings_stuck);
}

/* Waits for SIGTERM or SIGINT (blocked, so they stay pending for us) or
 * for the parent to go. Returns 0 for a signal, 1 when the parent left. */
static int dp_main_wait(const sigset_t *stop, pid_t parent)
{
        const struct timespec tick = { DP_MAIN_PARENT_CHECK_S, 0 };
        for (;;) {
                siginfo_t si;
                int sig = sigtimedwait(stop, &si, &tick);
                if (sig > 0) {
                        shm_log(SHM_LOG_INFO, "%s from pid %d: stopping", sigabbrev_np(sig),
                                (int)si.si_pid);
                        return 0;
                }
                if (getppid() != parent) {
                        shm_log(SHM_LOG_ERR, "atomqd (pid %d) is gone: stopping", (int)parent);
                        return 1;
                }
        }
}

static int dp_main_run(const struct dp_main_opts *o, const sigset_t *stop)
{
        struct dp_engine e;
        struct dp_engine_attach_opts ao = { .idle = o->idle_set ? &o->idle : NULL,
                                            .agent_fd_base = o->agent_fd_base,
                                            .nats = &o->nats, .disk = &o->disk,
                                            .dgram = &o->dgram };
        int rc = dp_engine_attach(&e, o->arena_fd, &ao);
        if (rc != 0) {
                shm_log(SHM_LOG_ERR, "cannot attach the arena on fd %d: %s", o->arena_fd,
                        strerror(-rc));
                return dp_main_attach_status(rc);
        }
        /* The death signal is set: a parent that dies from now on sends
         * SIGTERM. One that died before is seen here, since we were
         * re-parented away from the arena's creator. */
        pid_t parent = e.arena.hdr->creator_pid;
        if (getppid() != parent) {
                shm_log(SHM_LOG_ERR, "parent pid %d is not atomqd, the arena's creator "
                        "(pid %d): exiting", (int)getppid(), (int)parent);
                dp_engine_fini(&e);
                return 1;
        }
        /* attach mapped its own copy of the fd (close-on-exec); the
         * inherited one is no longer needed. */
        close(o->arena_fd);
        dp_main_attached_log(&e, o->arena_fd);
        if (o->dpdk_args != NULL) {
                rc = dp_dpdk_open(&e, o->dpdk_args, o->dpdk_addr);
                if (rc != 0) {
                        dp_engine_fini(&e);
                        /* A port that cannot start will not after a restart. */
                        return DP_EXIT_USAGE;
                }
        }
        rc = dp_engine_start(&e);
        if (rc != 0 && o->nats.enabled)
                shm_log(SHM_LOG_ERR, "cannot start the workers with a NATS listener on %s:%u: %s",
                        o->nats.host, o->nats.port, strerror(-rc));
        else if (rc != 0)
                shm_log(SHM_LOG_ERR, "cannot start the workers: %s", strerror(-rc));
        if (rc != 0) {
                dp_engine_stop(&e);
                dp_dpdk_close(&e);
                dp_engine_fini(&e);
                /* A listener that cannot bind will not bind after a restart
                 * either: the supervisor must not loop on it. */
                return rc == -EADDRINUSE || rc == -EADDRNOTAVAIL || rc == -EACCES ||
                                       rc == -EINVAL
                               ? DP_EXIT_USAGE
                               : 1;
        }
        char udp[160] = "", kernel[96] = "";
        if (o->dgram.enabled && o->dgram.kernel)
                snprintf(kernel, sizeof(kernel), " udp %s:%u", o->dgram.host, o->dgram.port);
        if (o->dgram.enabled)
                snprintf(udp, sizeof(udp), "; datagrams on%s%s%s", kernel,
                         o->dpdk_args != NULL ? " DPDK " : "",
                         o->dpdk_args != NULL ? o->dpdk_addr : "");
        if (o->nats.enabled)
                shm_log(SHM_LOG_INFO, "running %u workers; NATS on %s:%u%s", e.workers,
                        o->nats.host, o->nats.port, udp);
        else
                shm_log(SHM_LOG_INFO, "running %u workers%s", e.workers, udp);
        int status = dp_main_wait(stop, parent);
        dp_engine_stop(&e);
        dp_dpdk_close(&e);
        dp_engine_fini(&e);
        shm_log(SHM_LOG_INFO, "stopped");
        return status;
}

int main(int argc, char **argv)
{
        struct dp_main_opts o = { .arena_fd = -1, .agent_fd_base = -1 };
        int rc = dp_main_parse(&o, argc, argv);
        if (rc != 0)
                return rc > 0 ? 0 : DP_EXIT_USAGE;
        /* Blocked before any thread starts, so every worker inherits the
         * mask and the signals wait for sigtimedwait in this thread. */
        sigset_t stop;
        sigemptyset(&stop);
        sigaddset(&stop, SIGTERM);
        sigaddset(&stop, SIGINT);
        sigprocmask(SIG_BLOCK, &stop, NULL);
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) {
                shm_log(SHM_LOG_ERR, "prctl(PR_SET_PDEATHSIG): %s", strerror(errno));
                return 1;
        }
        return dp_main_run(&o, &stop);
}
