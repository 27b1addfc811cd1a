/* atomqd_child.h - what the C integration tests (agents_test.c,
 * agents_udp_test.c) need to run a real atomqd as their child: clocks and
 * naps, the binaries' paths from meson, starting it with its output in a
 * log, waiting for its control socket, stopping it and cleaning up.
 * Header-only (static functions): each test is one program. */
#ifndef ATOMQ_TESTS_ATOMQD_CHILD_H
#define ATOMQ_TESTS_ATOMQD_CHILD_H

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static inline int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void nap_ms(long ms)
{
        nanosleep(&(struct timespec){ .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L },
                  NULL);
}

/* waitpid with a deadline: pid, or 0 when it is still running. */
static inline pid_t wait_pid_ms(pid_t pid, int *status, int timeout_ms)
{
        int64_t deadline = now_ms() + timeout_ms;
        for (;;) {
                pid_t got = waitpid(pid, status, WNOHANG);
                if (got != 0 || now_ms() >= deadline)
                        return got;
                nap_ms(2);
        }
}

static inline const char *status_text(int st, char *buf, size_t len)
{
        if (WIFEXITED(st))
                snprintf(buf, len, "exited with status %d", WEXITSTATUS(st));
        else if (WIFSIGNALED(st))
                snprintf(buf, len, "killed by signal %d", WTERMSIG(st));
        else
                snprintf(buf, len, "status 0x%x", st);
        return buf;
}

/* A binary's path from the environment meson sets; the test is skipped
 * without it. */
static inline const char *env_path(const char *name)
{
        const char *p = getenv(name);
        if (p == NULL || p[0] == 0)
                cr_skip_test("%s is not set (meson test sets it to the binary)", name);
        return p;
}

/* A unix address for path; false when path is too long for one. */
static inline bool sun_make(struct sockaddr_un *sa, const char *path)
{
        size_t len = strlen(path);
        *sa = (struct sockaddr_un){ .sun_family = AF_UNIX };
        if (len >= sizeof(sa->sun_path))
                return false;
        memcpy(sa->sun_path, path, len + 1);
        return true;
}

static inline bool sock_accepts(const char *path)
{
        struct sockaddr_un sa;
        if (!sun_make(&sa, path))
                return false;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        if (fd >= 0)
                close(fd);
        return ok;
}

/* A fresh directory <TMPDIR or /tmp>/<prefix>-XXXXXX in dir (len bytes). */
static inline void atomqd_tmpdir(char *dir, size_t len, const char *prefix)
{
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, len, "%s/%s-XXXXXX", tmp != NULL && tmp[0] == '/' ? tmp : "/tmp", prefix);
        cr_assert_not_null(mkdtemp(dir), "mkdtemp %s: %s", dir, strerror(errno));
}

/* Forks and execs argv[0] with argv, stdout and stderr into log. The child
 * dies with the test (PR_SET_PDEATHSIG), even when criterion kills the test
 * on its timeout; the dataplane follows atomqd. Returns its pid. */
static inline pid_t atomqd_spawn(const char *log, const char *const *argv)
{
        pid_t parent = getpid();
        pid_t pid = fork();
        cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
        if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                if (getppid() != parent || fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
                        _exit(127);
                execv(argv[0], (char *const *)argv);
                _exit(127);
        }
        return pid;
}

/* Waits up to wait_ms until sock accepts and ready() (NULL: nothing more)
 * holds; fails the test (and sets *pid to 0) if atomqd exits first. */
static inline void atomqd_wait_ready(pid_t *pid, const char *sock, bool (*ready)(void),
                                     int wait_ms)
{
        int64_t deadline = now_ms() + wait_ms;
        while (!sock_accepts(sock) || (ready != NULL && !ready())) {
                int st;
                char why[64];
                if (waitpid(*pid, &st, WNOHANG) == *pid) {
                        *pid = 0;
                        cr_assert_fail("atomqd %s at start", status_text(st, why, sizeof(why)));
                }
                cr_assert_lt(now_ms(), deadline, "atomqd was not up within %d ms", wait_ms);
                nap_ms(5);
        }
}

/* SIGTERM: atomqd must exit 0 within wait_ms; *pid becomes 0. */
static inline void atomqd_stop(pid_t *pid, int wait_ms)
{
        int st;
        char why[64];
        cr_assert_eq(kill(*pid, SIGTERM), 0);
        pid_t got = wait_pid_ms(*pid, &st, wait_ms);
        cr_assert_eq(got, *pid, "atomqd did not stop within %d ms of SIGTERM", wait_ms);
        *pid = 0;
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "atomqd %s after SIGTERM",
                  status_text(st, why, sizeof(why)));
}

static inline void atomqd_log_dump(const char *log)
{
        char buf[4096];
        FILE *f = fopen(log, "r");
        size_t n;
        if (f == NULL)
                return;
        fprintf(stderr, "---- %s ----\n", log);
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
                fwrite(buf, 1, n, stderr);
        fprintf(stderr, "---- end of atomqd's log ----\n");
        fclose(f);
}

static inline int atomqd_rm_one(const char *path, const struct stat *st, int flag,
                                struct FTW *ftw)
{
        (void)st;
        (void)flag;
        (void)ftw;
        remove(path);
        return 0;
}

/* Removes dir and everything in it (nothing when dir is ""). */
static inline void atomqd_rm_tree(const char *dir)
{
        if (dir[0] != 0)
                nftw(dir, atomqd_rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

#endif /* ATOMQ_TESTS_ATOMQD_CHILD_H */
