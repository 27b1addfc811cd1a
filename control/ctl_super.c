/* ctl_super.c - starting, watching, restarting and stopping the
 * atomq-dataplane child (see ctl_super.h).
 *
 * The child is forked and exec'd: between the two it makes only
 * async-signal-safe calls (signal dispositions and mask back to default,
 * close-on-exec on every fd but the arena's, execv), and an exec failure
 * comes back through a close-on-exec pipe, so ctl_super_start reports it.
 * Its exit is learnt from a pidfd in the loop (no SIGCHLD handler) and
 * reaped with waitid(P_PIDFD); a pending restart is a timerfd in the loop.
 */
#include "control/ctl_super.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/pidfd.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm/shm_clock.h"
#include "shm/shm_log.h"

#define CTL_NS_PER_MS 1000000ull

static char ctl_super_opt_fd[] = "--arena-fd";
static char ctl_super_opt_agent_fds[] = "--agent-fds";
/* Where the child puts what it inherits: the arena, then the agent files. */
#define CTL_SUPER_CHILD_ARENA_FD 3

void ctl_super_config_default(struct ctl_super_config *cfg)
{
        cfg->restarts_max = CTL_SUPER_RESTARTS_DEFAULT;
        cfg->window_ms = CTL_SUPER_WINDOW_MS_DEFAULT;
        cfg->delay_min_ms = CTL_SUPER_DELAY_MIN_MS_DEFAULT;
        cfg->delay_max_ms = CTL_SUPER_DELAY_MAX_MS_DEFAULT;
}

static int ctl_super_config_check(const struct ctl_super_config *c)
{
        if (c->restarts_max == 0 || c->restarts_max > CTL_SUPER_RESTARTS_MAX)
                return -EINVAL;
        if (c->window_ms == 0 || c->window_ms > CTL_SUPER_MS_MAX || c->delay_min_ms == 0 ||
            c->delay_max_ms < c->delay_min_ms || c->delay_max_ms > CTL_SUPER_MS_MAX)
                return -EINVAL;
        return 0;
}

/* Arms the restart timer for delay_ms (0: disarms it). */
static int ctl_super_timer_arm(struct ctl_super *s, uint32_t delay_ms)
{
        struct itimerspec t = { .it_value = { .tv_sec = delay_ms / 1000,
                                              .tv_nsec = (long)(delay_ms % 1000) * 1000000 } };
        return timerfd_settime(s->timerfd, 0, &t, NULL) != 0 ? -errno : 0;
}

/* How a child ended, as a phrase: "exited with status 1", "was killed by
 * signal 9 (SIGKILL)". */
static void ctl_super_describe(const siginfo_t *si, char *buf, size_t len)
{
        const char *name = NULL;
        if (si->si_code == CLD_KILLED || si->si_code == CLD_DUMPED)
                name = sigabbrev_np(si->si_status);
        switch (si->si_code) {
        case CLD_EXITED:
                snprintf(buf, len, "exited with status %d", si->si_status);
                break;
        case CLD_KILLED:
        case CLD_DUMPED:
                snprintf(buf, len, "was killed by signal %d (SIG%s)%s", si->si_status,
                         name != NULL ? name : "?",
                         si->si_code == CLD_DUMPED ? " and dumped core" : "");
                break;
        default:
                snprintf(buf, len, "ended in a way waitid could not tell");
                break;
        }
}

/* Forgets the child: its pidfd leaves the loop and is closed. */
static void ctl_super_forget(struct ctl_super *s)
{
        ctl_loop_del(s->ctx->loop, s->pidfd);
        close(s->pidfd);
        s->pidfd = -1;
        s->pid = 0;
        s->ctx->dataplane_pid = 0;
}

/* Reaps the child if it has ended and logs how. Returns 1 when it is gone
 * (*si says how; si_code 0 when waitid failed, and it is forgotten all the
 * same, so that a pidfd that stays readable cannot spin the loop), 0 while
 * it runs. */
static int ctl_super_reap(struct ctl_super *s, siginfo_t *si)
{
        char how[96];
        memset(si, 0, sizeof(*si));
        int rc = waitid(P_PIDFD, (id_t)s->pidfd, si, WEXITED | WNOHANG) != 0 ? -errno : 0;
        if (rc == 0 && si->si_pid == 0)
                return 0;
        if (rc != 0)
                snprintf(how, sizeof(how), "could not be waited for (%s)", strerror(-rc));
        else
                ctl_super_describe(si, how, sizeof(how));
        double up_s = (double)(shm_clock_ns() - s->started_ns) / 1e9;
        shm_log(s->state == CTL_SUPER_RUNNING ? SHM_LOG_ERR : SHM_LOG_INFO,
                "dataplane (pid %d) %s after %.1f s", (int)s->pid, how, up_s);
        ctl_super_forget(s);
        return 1;
}

static void ctl_super_give_up(struct ctl_super *s, const char *why)
{
        s->state = CTL_SUPER_FAILED;
        s->ctx->stopping = 1;
        shm_log(SHM_LOG_ERR, "dataplane supervision gives up: %s; atomqd stops with status 1 "
                "so that its service manager can start it afresh", why);
}

/* Restarts within the last window. */
static uint32_t ctl_super_recent(const struct ctl_super *s, uint64_t now_ns)
{
        uint64_t window_ns = (uint64_t)s->cfg.window_ms * CTL_NS_PER_MS;
        uint32_t kept = s->restarts < CTL_SUPER_RESTARTS_MAX ? s->restarts : CTL_SUPER_RESTARTS_MAX;
        uint32_t n = 0;
        for (uint32_t i = 0; i < kept; i++)
                n += now_ns - s->restart_ns[i] < window_ns;
        return n;
}

/* The child died on its own: schedule a restart, or give up. */
static void ctl_super_after_death(struct ctl_super *s, const siginfo_t *si)
{
        char why[128];
        if (si->si_code == CLD_EXITED &&
            (si->si_status == DP_EXIT_USAGE || si->si_status == DP_EXIT_REFUSED)) {
                ctl_super_give_up(s, "the dataplane refused its command line or its arena, "
                                  "which a restart cannot change");
                return;
        }
        uint32_t recent = ctl_super_recent(s, shm_clock_ns());
        if (recent >= s->cfg.restarts_max) {
                snprintf(why, sizeof(why), "the dataplane died again after %u restarts within "
                         "%u ms", recent, s->cfg.window_ms);
                ctl_super_give_up(s, why);
                return;
        }
        /* The delay doubles with every recent restart, up to the maximum. */
        uint64_t delay_ms = s->cfg.delay_min_ms;
        for (uint32_t i = 0; i < recent && delay_ms < s->cfg.delay_max_ms; i++)
                delay_ms *= 2;
        if (delay_ms > s->cfg.delay_max_ms)
                delay_ms = s->cfg.delay_max_ms;
        int rc = ctl_super_timer_arm(s, (uint32_t)delay_ms);
        if (rc != 0) {
                snprintf(why, sizeof(why), "the restart timer failed (%s)", strerror(-rc));
                ctl_super_give_up(s, why);
                return;
        }
        s->state = CTL_SUPER_WAITING;
        shm_log(SHM_LOG_WARN, "restarting the dataplane in %llu ms (restart %u of at most %u "
                "within %u ms)", (unsigned long long)delay_ms, recent + 1, s->cfg.restarts_max,
                s->cfg.window_ms);
}

/* The loop's handler of the child's pidfd: readable once it has ended. */
static void ctl_super_on_exit(void *arg, int fd, uint32_t events)
{
        struct ctl_super *s = arg;
        siginfo_t si;
        (void)fd;
        (void)events;
        bool was_running = s->state == CTL_SUPER_RUNNING;
        if (ctl_super_reap(s, &si) == 0)
                return;
        /* A child we were stopping, or atomqd is on its way out. */
        if (!was_running || s->ctx->stopping)
                return;
        ctl_super_after_death(s, &si);
}

/* The child: moves the arena to fd 3 and the agent files after it. Each
 * is first copied above every fd involved, so no move can overwrite a
 * source not yet moved: the sources are distinct fds >= 3, so the highest
 * is at least 3 + n - 1 and every copy lands above every target. Returns
 * 0 or an errno value. Async-signal-safe. */
static int ctl_super_child_fds(const struct ctl_super *s)
{
        int tmp[1 + CTL_SUPER_AGENT_FDS_MAX];
        uint32_t n = 1 + s->agent_fd_count;
        int hi = s->arena_fd;
        for (uint32_t i = 0; i < s->agent_fd_count; i++)
                hi = s->agent_fds[i] > hi ? s->agent_fds[i] : hi;
        for (uint32_t i = 0; i < n; i++) {
                int src = i == 0 ? s->arena_fd : s->agent_fds[i - 1];
                tmp[i] = fcntl(src, F_DUPFD_CLOEXEC, hi + 1);
                if (tmp[i] < 0)
                        return errno;
        }
        /* dup2 clears close-on-exec on the target: these cross exec. */
        for (uint32_t i = 0; i < n; i++)
                if (dup2(tmp[i], CTL_SUPER_CHILD_ARENA_FD + (int)i) < 0)
                        return errno;
        return 0;
}

/* The child, between fork and exec: async-signal-safe calls only. */
static _Noreturn void ctl_super_child(const struct ctl_super *s, int errfd)
{
        static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD };
        struct sigaction dfl = { .sa_handler = SIG_DFL };
        sigset_t none;
        int err = 0;
        /* Dispositions set to ignore and the blocked mask survive exec:
         * the dataplane starts from the defaults instead. */
        for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
                sigaction(sigs[i], &dfl, NULL);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        /* Only the arena and the agent files cross exec besides 0, 1 and
         * 2: anything atomqd opened without O_CLOEXEC is marked now. */
        close_range(3, ~0u, CLOSE_RANGE_CLOEXEC);
        err = ctl_super_child_fds(s);
        if (err == 0) {
                execv(s->path, s->argv);
                err = errno;
        }
        if (write(errfd, &err, sizeof(err)) < 0)
                _exit(127);
        _exit(127);
}

/* Watches a started child: pidfd into the loop. Kills and reaps it on
 * failure. */
static int ctl_super_watch(struct ctl_super *s, pid_t pid)
{
        int pidfd = pidfd_open(pid, 0);
        int rc = pidfd < 0 ? -errno : 0;
        if (rc == 0)
                rc = ctl_loop_add(s->ctx->loop, pidfd, EPOLLIN, ctl_super_on_exit, s);
        if (rc != 0) {
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
                if (pidfd >= 0)
                        close(pidfd);
                return rc;
        }
        s->pidfd = pidfd;
        s->pid = pid;
        s->ctx->dataplane_pid = pid;
        s->started_ns = shm_clock_ns();
        s->state = CTL_SUPER_RUNNING;
        return 0;
}

/* fork + exec; the exec's error, if any, comes back through errpipe. */
static int ctl_super_spawn(struct ctl_super *s)
{
        int errpipe[2], child_errno = 0;
        if (pipe2(errpipe, O_CLOEXEC) != 0)
                return -errno;
        pid_t pid = fork();
        if (pid == 0)
                ctl_super_child(s, errpipe[1]);
        int rc = pid < 0 ? -errno : 0;
        close(errpipe[1]);
        if (rc != 0) {
                close(errpipe[0]);
                return rc;
        }
        /* EOF: the exec closed the pipe. Bounded by the child reaching
         * exec, which only a few syscalls stand before. */
        ssize_t n;
        do
                n = read(errpipe[0], &child_errno, sizeof(child_errno));
        while (n < 0 && errno == EINTR);
        close(errpipe[0]);
        if (n == (ssize_t)sizeof(child_errno)) {
                waitpid(pid, NULL, 0);
                shm_log(SHM_LOG_ERR, "cannot run %s: %s", s->path, strerror(child_errno));
                return -child_errno;
        }
        rc = ctl_super_watch(s, pid);
        if (rc != 0)
                return rc;
        shm_log(SHM_LOG_INFO, "dataplane started: pid %d (%s --arena-fd %d%s%s%s%s%s%s%s%s)",
                (int)pid, s->path, CTL_SUPER_CHILD_ARENA_FD,
                s->agent_fd_count > 0 ? " --agent-fds " : "",
                s->agent_fd_count > 0 ? s->agent_fd_arg : "", s->nats_arg[0] ? " --nats " : "",
                s->nats_arg, s->udp_arg[0] ? " --udp " : "", s->udp_arg,
                s->data_dir_arg[0] ? " --data-dir " : "", s->data_dir_arg);
        return 0;
}

/* The loop's handler of the restart timer. */
static void ctl_super_on_timer(void *arg, int fd, uint32_t events)
{
        struct ctl_super *s = arg;
        uint64_t expirations;
        (void)events;
        /* Non-blocking: a stale wake-up reads EAGAIN. */
        if (read(fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
                shm_log(SHM_LOG_WARN, "restart timer: %s", strerror(errno));
        if (s->state != CTL_SUPER_WAITING || s->ctx->stopping)
                return;
        /* Every attempt counts against the limit, a failed one too. */
        s->restart_ns[s->restarts % CTL_SUPER_RESTARTS_MAX] = shm_clock_ns();
        s->restarts++;
        int rc = ctl_super_spawn(s);
        if (rc == 0) {
                s->ctx->dataplane_restarts++;
                return;
        }
        shm_log(SHM_LOG_ERR, "cannot restart the dataplane: %s", strerror(-rc));
        ctl_super_after_death(s, &(siginfo_t){ .si_code = 0 });
}

static char ctl_super_opt_nats[] = "--nats";
static char ctl_super_opt_udp[] = "--udp";
static char ctl_super_opt_dpdk_args[] = "--dpdk-args";
static char ctl_super_opt_dpdk_addr[] = "--dpdk-addr";
static char ctl_super_opt_data_dir[] = "--data-dir";
static char ctl_super_opt_disk_max[] = "--disk-max";
static char ctl_super_opt_disk_sync[] = "--disk-sync-us";
static char ctl_super_opt_disk_direct[] = "--disk-direct";
static char ctl_super_opt_disk_segment[] = "--disk-segment";

/* path --arena-fd N [--agent-fds M] [--nats SPEC]: rebuilt whenever one
 * of them changes. */
static void ctl_super_argv_build(struct ctl_super *s)
{
        int i = 0;
        s->argv[i++] = s->path;
        s->argv[i++] = ctl_super_opt_fd;
        s->argv[i++] = s->fd_arg;
        if (s->agent_fd_count > 0) {
                s->argv[i++] = ctl_super_opt_agent_fds;
                s->argv[i++] = s->agent_fd_arg;
        }
        if (s->nats_arg[0] != '\0') {
                s->argv[i++] = ctl_super_opt_nats;
                s->argv[i++] = s->nats_arg;
        }
        if (s->udp_arg[0] != '\0') {
                s->argv[i++] = ctl_super_opt_udp;
                s->argv[i++] = s->udp_arg;
        }
        if (s->dpdk_args[0] != '\0') {
                s->argv[i++] = ctl_super_opt_dpdk_args;
                s->argv[i++] = s->dpdk_args;
                s->argv[i++] = ctl_super_opt_dpdk_addr;
                s->argv[i++] = s->dpdk_addr;
        }
        if (s->data_dir_arg[0] != '\0') {
                s->argv[i++] = ctl_super_opt_data_dir;
                s->argv[i++] = s->data_dir_arg;
                s->argv[i++] = ctl_super_opt_disk_max;
                s->argv[i++] = s->disk_max_arg;
                s->argv[i++] = ctl_super_opt_disk_sync;
                s->argv[i++] = s->disk_sync_arg;
                s->argv[i++] = ctl_super_opt_disk_segment;
                s->argv[i++] = s->disk_segment_arg;
                if (s->disk_direct)
                        s->argv[i++] = ctl_super_opt_disk_direct;
        }
        s->argv[i] = NULL;
}

int ctl_super_set_agent_fds(struct ctl_super *s, const int *fds, uint32_t count)
{
        if (count > CTL_SUPER_AGENT_FDS_MAX)
                return -EINVAL;
        for (uint32_t i = 0; i < count; i++)
                if (fds[i] < 3)
                        return -EINVAL;
        s->agent_fds = fds;
        s->agent_fd_count = count;
        snprintf(s->agent_fd_arg, sizeof(s->agent_fd_arg), "%d", CTL_SUPER_CHILD_ARENA_FD + 1);
        ctl_super_argv_build(s);
        return 0;
}

/* Keeps a protocol's spec (NULL: none) in arg[size] for the command line. */
static int ctl_super_set_spec(struct ctl_super *s, char *arg, size_t size, const char *spec)
{
        if (spec != NULL && strlen(spec) >= size)
                return -EINVAL;
        snprintf(arg, size, "%s", spec != NULL ? spec : "");
        ctl_super_argv_build(s);
        return 0;
}

int ctl_super_set_dpdk(struct ctl_super *s, const char *eal_args, const char *addr)
{
        if (strlen(eal_args) >= sizeof(s->dpdk_args) || strlen(addr) >= sizeof(s->dpdk_addr))
                return -EINVAL;
        strcpy(s->dpdk_addr, addr);
        return ctl_super_set_spec(s, s->dpdk_args, sizeof(s->dpdk_args), eal_args);
}

int ctl_super_set_udp(struct ctl_super *s, const char *spec)
{
        return ctl_super_set_spec(s, s->udp_arg, sizeof(s->udp_arg), spec);
}

int ctl_super_set_nats(struct ctl_super *s, const char *spec)
{
        return ctl_super_set_spec(s, s->nats_arg, sizeof(s->nats_arg), spec);
}

int ctl_super_set_disk(struct ctl_super *s, const char *data_dir, uint64_t max_bytes,
                       uint32_t sync_us, bool direct, uint64_t segment_bytes)
{
        if (data_dir != NULL && strlen(data_dir) >= sizeof(s->data_dir_arg))
                return -EINVAL;
        snprintf(s->data_dir_arg, sizeof(s->data_dir_arg), "%s", data_dir != NULL ? data_dir : "");
        snprintf(s->disk_max_arg, sizeof(s->disk_max_arg), "%llu", (unsigned long long)max_bytes);
        snprintf(s->disk_sync_arg, sizeof(s->disk_sync_arg), "%u", sync_us);
        snprintf(s->disk_segment_arg, sizeof(s->disk_segment_arg), "%llu",
                 (unsigned long long)segment_bytes);
        s->disk_direct = direct;
        ctl_super_argv_build(s);
        return 0;
}

int ctl_super_init(struct ctl_super *s, struct ctl_ctx *ctx, const char *dataplane_path,
                   int arena_fd, const struct ctl_super_config *cfg)
{
        memset(s, 0, sizeof(*s));
        s->pidfd = s->timerfd = -1;
        if (cfg != NULL)
                s->cfg = *cfg;
        else
                ctl_super_config_default(&s->cfg);
        if (ctl_super_config_check(&s->cfg) != 0 || arena_fd < 3 ||
            strlen(dataplane_path) >= sizeof(s->path))
                return -EINVAL;
        if (access(dataplane_path, X_OK) != 0)
                return -errno;
        memcpy(s->path, dataplane_path, strlen(dataplane_path) + 1);
        snprintf(s->fd_arg, sizeof(s->fd_arg), "%d", CTL_SUPER_CHILD_ARENA_FD);
        ctl_super_argv_build(s);
        s->arena_fd = arena_fd;
        s->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (s->timerfd < 0)
                return -errno;
        int rc = ctl_loop_add(ctx->loop, s->timerfd, EPOLLIN, ctl_super_on_timer, s);
        if (rc != 0) {
                close(s->timerfd);
                s->timerfd = -1;
                return rc;
        }
        s->ctx = ctx;
        s->state = CTL_SUPER_IDLE;
        return 0;
}

int ctl_super_start(struct ctl_super *s)
{
        if (s->ctx == NULL || s->state == CTL_SUPER_FAILED)
                return -EPERM;
        if (s->state != CTL_SUPER_IDLE)
                return -EALREADY;
        return ctl_super_spawn(s);
}

/* Waits up to timeout_ms for the child to end and reaps it. */
static bool ctl_super_wait(struct ctl_super *s, int timeout_ms)
{
        uint64_t deadline_ns = shm_clock_ns() + (uint64_t)timeout_ms * CTL_NS_PER_MS;
        for (;;) {
                siginfo_t si;
                if (ctl_super_reap(s, &si) != 0)
                        return true;
                uint64_t now_ns = shm_clock_ns();
                if (now_ns >= deadline_ns)
                        return false;
                struct pollfd p = { .fd = s->pidfd, .events = POLLIN };
                /* Rounded up, so the last poll does not return early. */
                uint64_t left_ms = (deadline_ns - now_ns + CTL_NS_PER_MS - 1) / CTL_NS_PER_MS;
                (void)poll(&p, 1, (int)left_ms);
        }
}

int ctl_super_stop(struct ctl_super *s, int timeout_ms)
{
        if (timeout_ms < 0)
                return -EINVAL;
        if (s->ctx == NULL)
                return 0;
        (void)ctl_super_timer_arm(s, 0);
        /* From here its exit is no crash: no restart follows. */
        if (s->state != CTL_SUPER_FAILED)
                s->state = CTL_SUPER_IDLE;
        if (s->pidfd < 0)
                return 0;
        pid_t pid = s->pid;
        (void)pidfd_send_signal(s->pidfd, SIGTERM, NULL, 0);
        if (ctl_super_wait(s, timeout_ms))
                return 0;
        shm_log(SHM_LOG_WARN, "dataplane (pid %d) did not stop within %d ms of SIGTERM: "
                "sending SIGKILL", (int)pid, timeout_ms);
        (void)pidfd_send_signal(s->pidfd, SIGKILL, NULL, 0);
        if (ctl_super_wait(s, CTL_SUPER_KILL_WAIT_MS))
                return 1;
        shm_log(SHM_LOG_ERR, "dataplane (pid %d) is still there %d ms after SIGKILL", (int)pid,
                CTL_SUPER_KILL_WAIT_MS);
        return -ETIMEDOUT;
}

void ctl_super_fini(struct ctl_super *s)
{
        if (s->ctx == NULL)
                return;
        (void)ctl_super_stop(s, CTL_SUPER_STOP_MS_DEFAULT);
        if (s->pidfd >= 0)
                ctl_super_forget(s);
        ctl_loop_del(s->ctx->loop, s->timerfd);
        close(s->timerfd);
        s->timerfd = -1;
        s->ctx = NULL;
}
