/* ctl_main.c - atomqd, the control-plane process.
 *
 *      atomqd --workers 2 --max-entities 1000000 --control /run/atomq/control.sock
 *      atomqd --config /etc/atomq/atomqd.conf
 *
 * atomqd owns the shared-memory arena: it builds the dataplane engine in it
 * (one shard per worker, the rings between them), starts atomq-dataplane
 * handed the arena's fd and supervises it, serves the control socket and
 * the metrics port, all from one epoll loop (ctl_loop). With --inprocess the
 * workers run as threads of atomqd instead (for debugging). SIGTERM or
 * SIGINT: stop accepting, stop the dataplane, exit 0.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "control/ctl.h"
#include "control/ctl_config.h"
#include "control/ctl_http.h"
#include "control/ctl_server.h"
#include "control/ctl_super.h"
#include "shm/shm_clock.h"
#include "shm/shm_log.h"

/* Large members (the HTTP server keeps its buffers inline): static, one
 * instance per process. */
static struct ctl_config cfg;
static struct ctl_loop loop;
static struct dp_engine engine;
static struct ctl_server server;
static struct ctl_http http;
static struct ctl_super super;
static struct ctl_ctx ctx;
static int agent_fds[CTL_SUPER_AGENT_FDS_MAX];

static void ctl_on_signal(void *arg, int fd, uint32_t events)
{
        struct signalfd_siginfo si;
        (void)arg;
        (void)events;
        while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                if (!ctx.stopping)
                        shm_log(SHM_LOG_INFO, "%s: stopping", strsignal((int)si.ssi_signo));
                ctx.stopping = 1;
        }
}

/* SIGTERM and SIGINT arrive through a signalfd in the loop, so a handler
 * never runs between two halves of anything. */
static int ctl_signals_open(void)
{
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
                return -errno;
        int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
        if (fd < 0)
                return -errno;
        return ctl_loop_add(&loop, fd, EPOLLIN, ctl_on_signal, NULL);
}

/* The dataplane binary: as configured, or, when that default does not
 * exist, where a build tree puts it (build/dataplane/ beside build/control/). */
static void ctl_dataplane_resolve(char *path, size_t len)
{
        char exe[PATH_MAX];
        if (access(path, X_OK) == 0)
                return;
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (n <= 0)
                return;
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash == NULL)
                return;
        *slash = '\0';
        char alt[PATH_MAX];
        if (snprintf(alt, sizeof(alt), "%s/../dataplane/atomq-dataplane", exe) < (int)sizeof(alt) &&
            access(alt, X_OK) == 0 && strlen(alt) < len)
                snprintf(path, len, "%s", alt);
}

/* The NATS listener the workers run (off: none), from the flags. */
static struct dp_nats_config nats_cfg;
static struct dp_disk_config disk_cfg;
static struct dp_dgram_config dgram_cfg;

/* The datagram sockets the workers run (off: none), from the flags. */
static int ctl_dgram_config(void)
{
        dp_dgram_config_default(&dgram_cfg);
        bool kernel = strcmp(cfg.udp_addr, "off") != 0 && cfg.udp_addr[0] != '\0';
        bool dpdk = cfg.dpdk_args[0] != '\0';
        if (dpdk && (cfg.dpdk_addr[0] == '\0' || cfg.inprocess)) {
                shm_log(SHM_LOG_ERR, cfg.inprocess ? "--dpdk-args: not with --inprocess (DPDK "
                                                     "runs in atomq-dataplane)"
                                                   : "--dpdk-args needs --dpdk-addr IPv4:PORT");
                return -EINVAL;
        }
        if (!kernel && !dpdk)
                return 0;
        char spec[128];
        /* Without --udp the sessions come through the DPDK port alone. */
        snprintf(spec, sizeof(spec), "%s,sessions=%u,lease_ms=%u,kernel=%d",
                 kernel ? cfg.udp_addr : "0.0.0.0:0", cfg.udp_sessions, cfg.udp_lease_ms,
                 kernel ? 1 : 0);
        if (dp_dgram_spec_parse(&dgram_cfg, spec) != 0) {
                shm_log(SHM_LOG_ERR, "--udp %s: not IPv4:PORT with a numeric address",
                        cfg.udp_addr);
                return -EINVAL;
        }
        return 0;
}

static int ctl_nats_config(void)
{
        dp_nats_config_default(&nats_cfg);
        if (strcmp(cfg.nats_addr, "off") == 0 || cfg.nats_addr[0] == '\0') {
                nats_cfg.enabled = false;
                return 0;
        }
        if (dp_nats_config_addr(&nats_cfg, cfg.nats_addr) != 0) {
                shm_log(SHM_LOG_ERR, "--nats %s: not HOST:PORT with a numeric host",
                        cfg.nats_addr);
                return -EINVAL;
        }
        nats_cfg.max_conns = cfg.max_conns;
        nats_cfg.max_payload = (uint32_t)cfg.max_payload;
        nats_cfg.max_pending = cfg.max_pending;
        nats_cfg.max_subs = cfg.max_subs_per_conn;
        nats_cfg.ping_interval_ms = cfg.ping_interval_ms;
        if (cfg.nats_token[0] != '\0' && cfg.nats_user[0] != '\0') {
                shm_log(SHM_LOG_ERR, "--nats-token and --nats-user: one or the other");
                return -EINVAL;
        }
        if ((cfg.nats_user[0] == '\0') != (cfg.nats_pass[0] == '\0')) {
                shm_log(SHM_LOG_ERR, "--nats-user and --nats-pass go together");
                return -EINVAL;
        }
        snprintf(nats_cfg.auth_token, sizeof(nats_cfg.auth_token), "%s", cfg.nats_token);
        snprintf(nats_cfg.auth_user, sizeof(nats_cfg.auth_user), "%s", cfg.nats_user);
        snprintf(nats_cfg.auth_pass, sizeof(nats_cfg.auth_pass), "%s", cfg.nats_pass);
        /* The dataplane takes them from its environment, not its command
         * line (/proc/PID/cmdline is world-readable, environ is not). */
        if ((cfg.nats_token[0] && setenv(DP_NATS_ENV_TOKEN, cfg.nats_token, 1) != 0) ||
            (cfg.nats_user[0] && (setenv(DP_NATS_ENV_USER, cfg.nats_user, 1) != 0 ||
                                  setenv(DP_NATS_ENV_PASS, cfg.nats_pass, 1) != 0)))
                return -errno;
        /* Authentication is off only on loopback unless asked for. */
        if (!dp_nats_auth_required(&nats_cfg) && strncmp(nats_cfg.host, "127.", 4) != 0 &&
            strcmp(nats_cfg.host, "::1") != 0) {
                if (!cfg.nats_no_auth) {
                        shm_log(SHM_LOG_ERR, "--nats %s: a listener beyond loopback needs "
                                "credentials (--nats-token, or --nats-user and --nats-pass); "
                                "--nats-no-auth serves it without", cfg.nats_addr);
                        return -EINVAL;
                }
                shm_log(SHM_LOG_WARN, "NATS listener on %s without authentication "
                        "(--nats-no-auth): any host that reaches it may publish and subscribe",
                        nats_cfg.host);
        }
        return 0;
}

/* The data directory holds one log per worker, and an entity's worker is
 * a hash of its name over the worker count: a directory written by N
 * workers is only read back by N. It says so in a file of its own, and a
 * start with another count is refused with what to do. */
static int ctl_disk_layout(void)
{
        char path[512];
        uint32_t workers = cfg.workers != 0 ? cfg.workers : dp_engine_workers_default();
        if (mkdir(cfg.data_dir, 0700) != 0 && errno != EEXIST) {
                shm_log(SHM_LOG_ERR, "--data-dir %s: %s", cfg.data_dir, strerror(errno));
                return -errno;
        }
        snprintf(path, sizeof(path), "%s/layout", cfg.data_dir);
        FILE *f = fopen(path, "r");
        if (f != NULL) {
                unsigned was = 0;
                int n = fscanf(f, "workers %u", &was);
                fclose(f);
                if (n != 1) {
                        shm_log(SHM_LOG_ERR, "%s: not an atomq layout file", path);
                        return -EINVAL;
                }
                if (was != workers) {
                        shm_log(SHM_LOG_ERR, "--data-dir %s was written by %u workers: start "
                                "with --workers %u, or with another --data-dir", cfg.data_dir,
                                was, was);
                        return -EINVAL;
                }
                return 0;
        }
        f = fopen(path, "w");
        if (f == NULL || fprintf(f, "workers %u\n", workers) < 0 || fclose(f) != 0) {
                shm_log(SHM_LOG_ERR, "%s: %s", path, strerror(errno));
                return -errno;
        }
        return 0;
}

static int ctl_engine_build(void)
{
        struct dp_engine_config ec;
        int rc = ctl_nats_config();
        if (rc == 0)
                rc = ctl_dgram_config();
        if (rc != 0)
                return rc;
        dp_engine_config_default(&ec, cfg.max_entities);
        ec.workers = cfg.workers;
        ec.hugepages = cfg.hugepages;
        ec.idle.kind = cfg.busy_poll;
        ec.shard.ack_wait_ns = (uint64_t)cfg.ack_wait_ms * 1000000;
        ec.agents = cfg.max_agents;
        ec.agent_dlv_ring_bytes = (uint32_t)cfg.agent_ring_bytes;
        if (!shm_is_pow2_u64(cfg.agent_ring_bytes)) {
                shm_log(SHM_LOG_ERR, "--agent-ring-size %llu is not a power of two (e.g. 256K, 1M)",
                        (unsigned long long)cfg.agent_ring_bytes);
                return -EINVAL;
        }
        ec.nats = &nats_cfg;
        ec.dgram = &dgram_cfg;
        ec.net_clients = dgram_cfg.enabled;
        if (cfg.disk) {
                rc = ctl_disk_layout();
                if (rc != 0)
                        return rc;
                disk_cfg = (struct dp_disk_config){ .data_dir = cfg.data_dir,
                                                    .dir_bytes_max = cfg.disk_max,
                                                    .batch_us = cfg.disk_sync_us,
                                                    .direct = cfg.disk_direct,
                                                    .segment_bytes = cfg.disk_segment };
                ec.disk = &disk_cfg;
        }
        rc = dp_engine_init(&engine, &ec);
        if (rc != 0) {
                shm_log(SHM_LOG_ERR, "cannot build the dataplane (%u entities a shard): %s",
                        cfg.max_entities, strerror(-rc));
                return rc;
        }
        if (cfg.arena_bytes != 0 && engine.arena.bytes > cfg.arena_bytes) {
                shm_log(SHM_LOG_ERR, "--arena-size %llu is too small for these limits: they "
                        "need %llu bytes (lower --max-entities or --workers, or raise it)",
                        (unsigned long long)cfg.arena_bytes,
                        (unsigned long long)engine.arena.bytes);
                return -ENOSPC;
        }
        shm_log(SHM_LOG_INFO, "atomqd %s: %u workers, %u entities each, arena of %llu MiB "
                "(%s pages), idle %s, NATS %s", ATOMQ_VERSION, engine.workers, cfg.max_entities,
                (unsigned long long)(engine.arena.bytes >> 20),
                engine.arena.hugepages ? "huge" : "4 KiB",
                cfg.busy_poll == DP_IDLE_ALWAYS ? "always (busy-poll)" : "adaptive",
                nats_cfg.enabled ? cfg.nats_addr : "off");
        return 0;
}

/* Opens what clients reach: the control socket, then the metrics port. */
static int ctl_listeners_open(void)
{
        int rc = ctl_server_open(&server, &ctx);
        if (rc == -EADDRINUSE) {
                shm_log(SHM_LOG_ERR, "another atomqd is serving the control socket %s; "
                        "refusing to start a second one", cfg.control_path);
                return rc;
        }
        if (rc != 0) {
                shm_log(SHM_LOG_ERR, "control socket %s: %s", cfg.control_path, strerror(-rc));
                return rc;
        }
        rc = ctl_http_open(&http, &ctx);
        if (rc != 0)
                ctl_server_close(&server);
        return rc;
}

static int ctl_dataplane_start(void)
{
        if (cfg.inprocess) {
                shm_log(SHM_LOG_INFO, "workers run as threads of atomqd (--inprocess)");
                return dp_engine_start(&engine);
        }
        struct ctl_super_config sc;
        ctl_super_config_default(&sc);
        ctl_dataplane_resolve(cfg.dataplane_path, sizeof(cfg.dataplane_path));
        int rc = ctl_super_init(&super, &ctx, cfg.dataplane_path, engine.arena.fd, &sc);
        /* The agent files cross exec after the arena (dp_agent.h). */
        for (uint32_t i = 0; i < engine.agents; i++) {
                agent_fds[2 * i] = engine.agent_files[i].fd;
                agent_fds[2 * i + 1] = engine.agent_files[i].efd;
        }
        if (rc == 0)
                rc = ctl_super_set_agent_fds(&super, agent_fds, 2 * engine.agents);
        char spec[160];
        if (rc == 0 && nats_cfg.enabled) {
                rc = dp_nats_spec_format(&nats_cfg, spec, sizeof(spec));
                if (rc >= 0)
                        rc = ctl_super_set_nats(&super, spec);
        }
        if (rc == 0 && dgram_cfg.enabled) {
                rc = dp_dgram_spec_format(&dgram_cfg, spec, sizeof(spec));
                if (rc >= 0)
                        rc = ctl_super_set_udp(&super, spec);
        }
        if (rc == 0 && cfg.dpdk_args[0] != '\0')
                rc = ctl_super_set_dpdk(&super, cfg.dpdk_args, cfg.dpdk_addr);
        if (rc == 0 && cfg.disk)
                rc = ctl_super_set_disk(&super, cfg.data_dir, cfg.disk_max, cfg.disk_sync_us,
                                        cfg.disk_direct, cfg.disk_segment);
        if (rc == 0)
                rc = ctl_super_start(&super);
        if (rc != 0)
                shm_log(SHM_LOG_ERR, "cannot start the dataplane %s: %s", cfg.dataplane_path,
                        strerror(-rc));
        return rc;
}

static void ctl_dataplane_stop(void)
{
        if (cfg.inprocess) {
                dp_engine_stop(&engine);
                return;
        }
        ctl_super_stop(&super, CTL_SUPER_STOP_MS_DEFAULT);
        ctl_super_fini(&super);
}

static int ctl_run(void)
{
        int rc = ctl_listeners_open();
        if (rc != 0)
                return rc;
        rc = ctl_dataplane_start();
        if (rc == 0) {
                shm_log(SHM_LOG_INFO, "running: control %s, metrics %s; stop with SIGTERM",
                        cfg.control_path, cfg.metrics_addr[0] ? cfg.metrics_addr : "off");
                while (!ctx.stopping)
                        ctl_loop_run_once(&loop, 1000);
                /* Supervision that gave up stops atomqd with status 1, so
                 * its service manager can start it afresh. */
                if (!cfg.inprocess && super.state == CTL_SUPER_FAILED)
                        rc = -ECHILD;
        }
        /* Stop accepting first, so nothing new arrives while the
         * dataplane finishes what it holds. */
        ctl_server_close(&server);
        ctl_http_close(&http);
        ctl_dataplane_stop();
        return rc;
}

int main(int argc, char **argv)
{
        char err[512];
        ctl_config_defaults(&cfg);
        int rc = ctl_config_parse_args(&cfg, argc, argv, err, sizeof(err));
        if (rc < 0) {
                fprintf(stderr, "atomqd: %s\n", err);
                return 2;
        }
        if (rc > 0)
                return 0;
        if (ctl_engine_build() != 0)
                return 1;
        if (cfg.once) {
                dp_engine_fini(&engine);
                return 0;
        }
        ctx = (struct ctl_ctx){ .cfg = &cfg, .loop = &loop, .engine = &engine,
                                .started_realtime_ns = shm_clock_realtime_ns() };
        rc = ctl_loop_init(&loop);
        if (rc == 0)
                rc = ctl_signals_open();
        if (rc == 0)
                rc = ctl_run();
        dp_engine_fini(&engine);
        ctl_loop_fini(&loop);
        return rc != 0 ? 1 : 0;
}
