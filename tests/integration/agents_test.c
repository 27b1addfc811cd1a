/* agents_test.c - libatomq agents against the real atomqd: separate
 * processes that attach through atomqd's control socket and talk to the
 * dataplane through their own rings (shm/atomq_agent.c, control/ctl_agent.c,
 * dataplane/dp_agent.c, dp_worker_agent.c, dp_worker_exec.c).
 *
 * Each test starts atomqd (and so its atomq-dataplane child) in a fresh
 * temporary directory with one worker (requests reach only responders on
 * the requester's worker for now), forks the agents, which connect on
 * their own, and stops atomqd with SIGTERM: it must exit 0.
 *
 * An agent is not criterion's process: it checks with KID_CHECK/KID_RC (a
 * message on stderr, exit status 1), reports to the test through a pipe of
 * 8-byte words, and leaves with _exit() so that criterion's exit handlers
 * never run in it. Everything a test starts dies with it
 * (PR_SET_PDEATHSIG), and the suite's fini kills what a failed test left
 * and prints atomqd's log.
 *
 *      meson test -C build agents --print-errorlogs
 *      ATOMQ_ATOMQD=build/control/atomqd \
 *      ATOMQ_DATAPLANE=build/dataplane/atomq-dataplane \
 *              build/tests/test_agents --jobs 1 --verbose
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "atomq/atomq.h"
#include "tests/integration/atomqd_child.h"

#define MS 1000000ll /* nanoseconds */
#define KIDS_MAX 8
/* How long anything the test waits for may take before it is a failure:
 * far above what these steps take (milliseconds), well below the suite's
 * criterion timeout. */
#define WAIT_MS 10000
/* The agents' call timeout: a call that hangs is reported by the agent
 * before the test gives up on it. */
#define CALL_TIMEOUT_NS (5000 * MS)
/* A departed agent's slot and subscriptions go within a tick or two of
 * atomqd (CTL_AGENT_TICK_MS, 20 ms); this is the deadline, not a wait. */
#define GONE_MS 3000

struct kid {
        const char *name;
        pid_t pid;      /* 0: a free entry */
        int to;         /* test -> agent */
        int from;       /* agent -> test */
};

/* The test's side: atomqd and the agents it forked. */
static struct {
        pid_t pid;      /* atomqd; 0 when it is not running */
        bool clean;     /* atomqd stopped on SIGTERM with status 0 */
        char dir[128];
        char sock[160];
        char log[160];
        struct kid kids[KIDS_MAX];
} t;

/* An agent's side: who it is and its ends of the two pipes. */
static struct {
        const char *name;
        int in;
        int out;
} self;

/* ---- atomqd ------------------------------------------------------------ */

/* The pid of atomqd's running atomq-dataplane child; 0 when there is none
 * (a killed one that atomqd has not reaped yet is a zombie, not running). */
static pid_t dataplane_pid(void)
{
        DIR *d = opendir("/proc");
        struct dirent *e;
        pid_t found = 0;
        while (d != NULL && found == 0 && (e = readdir(d)) != NULL) {
                char path[300], buf[512], state;
                int pid = atoi(e->d_name), ppid;
                if (pid <= 0)
                        continue;
                snprintf(path, sizeof(path), "/proc/%d/stat", pid);
                FILE *f = fopen(path, "r");
                size_t n = f != NULL ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
                if (f != NULL)
                        fclose(f);
                buf[n] = 0;
                /* "pid (comm) state ppid ...": comm may hold spaces and
                 * parentheses, so it ends at the last ')'. */
                char *open = strchr(buf, '('), *close_ = strrchr(buf, ')');
                if (open == NULL || close_ == NULL ||
                    sscanf(close_ + 1, " %c %d", &state, &ppid) != 2)
                        continue;
                *close_ = 0;
                if (ppid == t.pid && state != 'Z' && strcmp(open + 1, "atomq-dataplane") == 0)
                        found = pid;
        }
        if (d != NULL)
                closedir(d);
        return found;
}

/* Up: the control socket accepts and the dataplane runs, so no test step
 * counts the dataplane's start-up against its own deadline. */
static bool dataplane_runs(void)
{
        return dataplane_pid() != 0;
}

/* Starts atomqd with the flags every test uses and `extra` (NULL-ended)
 * in a fresh temporary directory. */
static void daemon_run(const char *const *extra);

static void daemon_start(const char *const *extra)
{
        atomqd_tmpdir(t.dir, sizeof(t.dir), "atomq-agents");
        daemon_run(extra);
}

/* Starts atomqd again in the same directory (its data dir too). */
static void daemon_run(const char *const *extra)
{
        const char *atomqd = env_path("ATOMQ_ATOMQD"), *dp = env_path("ATOMQ_DATAPLANE");
        snprintf(t.sock, sizeof(t.sock), "%s/ctl.sock", t.dir);
        snprintf(t.log, sizeof(t.log), "%s/atomqd.log", t.dir);
        /* A small table keeps the arena (and so the start) small. */
        const char *argv[32] = { atomqd, "--control", t.sock, "--metrics", "off",
                                 "--nats", "off", "--workers", "1", "--hugepages", "off",
                                 "--max-entities", "10000", "--data-dir", t.dir,
                                 "--dataplane", dp };
        int n = 17;
        for (int i = 0; extra != NULL && extra[i] != NULL; i++) {
                cr_assert_lt(n, 31, "too many flags");
                argv[n++] = extra[i];
        }
        t.pid = atomqd_spawn(t.log, argv);
        atomqd_wait_ready(&t.pid, t.sock, dataplane_runs, WAIT_MS);
}

/* SIGTERM: atomqd must exit 0 within WAIT_MS. */
static void daemon_stop(void)
{
        atomqd_stop(&t.pid, WAIT_MS);
        t.clean = true;
}

static bool log_has(const char *text)
{
        char buf[65536];
        FILE *f = fopen(t.log, "r");
        size_t n = f != NULL ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
        if (f != NULL)
                fclose(f);
        buf[n] = 0;
        return strstr(buf, text) != NULL;
}

static void kid_forget(struct kid *k)
{
        close(k->to);
        close(k->from);
        *k = (struct kid){ .pid = 0, .to = -1, .from = -1 };
}

/* The suite's fini: whatever a test left (it failed) is killed, atomqd's
 * log is shown unless atomqd stopped cleanly, the directory goes. */
static void teardown(void)
{
        for (int i = 0; i < KIDS_MAX; i++) {
                if (t.kids[i].pid == 0)
                        continue;
                if (t.kids[i].pid > 0) {
                        kill(t.kids[i].pid, SIGKILL);
                        waitpid(t.kids[i].pid, NULL, 0);
                }
                kid_forget(&t.kids[i]);
        }
        if (t.pid > 0) {
                kill(t.pid, SIGKILL);
                waitpid(t.pid, NULL, 0);
                t.pid = 0;
        }
        if (!t.clean && t.dir[0] != 0)
                atomqd_log_dump(t.log);
        atomqd_rm_tree(t.dir);
}

TestSuite(agents, .fini = teardown, .timeout = 40);

/* ---- agents: the test's side ------------------------------------------ */

typedef void kid_fn(const void *arg);

/* Forks an agent that runs fn(arg) and exits 0 when fn returns. */
static struct kid *kid_start(const char *name, kid_fn *fn, const void *arg)
{
        struct kid *k = NULL;
        int down[2], up[2];
        for (int i = 0; i < KIDS_MAX && k == NULL; i++)
                if (t.kids[i].pid == 0)
                        k = &t.kids[i];
        cr_assert_not_null(k, "more than %d agents at once", KIDS_MAX);
        cr_assert_eq(pipe2(down, O_CLOEXEC), 0);
        cr_assert_eq(pipe2(up, O_CLOEXEC), 0);
        pid_t parent = getpid();
        pid_t pid = fork();
        cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
        if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                        _exit(3);
                /* Only its own pipe ends: a sibling holding another
                 * agent's would hide that agent's end of file. */
                for (int i = 0; i < KIDS_MAX; i++)
                        if (t.kids[i].pid > 0)
                                kid_forget(&t.kids[i]);
                close(down[1]);
                close(up[0]);
                self.name = name;
                self.in = down[0];
                self.out = up[1];
                fn(arg);
                _exit(0);
        }
        close(down[0]);
        close(up[1]);
        *k = (struct kid){ .name = name, .pid = pid, .to = down[1], .from = up[0] };
        return k;
}

static void kid_tell(struct kid *k, uint64_t v)
{
        cr_assert_eq(write(k->to, &v, sizeof(v)), (ssize_t)sizeof(v),
                     "cannot tell agent %s: %s", k->name, strerror(errno));
}

/* The agent's next report. Writes of 8 bytes to a pipe are atomic, so a
 * read that finds one finds all of it. */
static uint64_t kid_hear(struct kid *k)
{
        uint64_t v;
        struct pollfd p = { .fd = k->from, .events = POLLIN };
        int n = poll(&p, 1, WAIT_MS);
        if (n == 1 && read(k->from, &v, sizeof(v)) == (ssize_t)sizeof(v))
                return v;
        int st = 0;
        char why[64] = "still running";
        if (wait_pid_ms(k->pid, &st, 1000) == k->pid) {
                status_text(st, why, sizeof(why));
                k->pid = -1; /* reaped: fini must not wait for it */
        }
        cr_assert_fail("agent %s: no report within %d ms (%s)", k->name, WAIT_MS, why);
        return 0;
}

/* The agent must exit 0 (every check it made held). */
static void kid_join(struct kid *k)
{
        int st = 0;
        char why[64];
        pid_t got = wait_pid_ms(k->pid, &st, WAIT_MS);
        cr_assert_eq(got, k->pid, "agent %s did not finish within %d ms", k->name, WAIT_MS);
        kid_forget(k);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "agent %s %s", k->name,
                  status_text(st, why, sizeof(why)));
}

static void kid_kill9(struct kid *k)
{
        int st = 0;
        cr_assert_eq(kill(k->pid, SIGKILL), 0);
        cr_assert_eq(waitpid(k->pid, &st, 0), k->pid);
        kid_forget(k);
        cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "agent died before the kill");
}

/* ---- agents: their own side ---------------------------------------------- */

static const char *rc_text(int rc)
{
        return rc < 0 ? atomq_strerror(rc) : "success or a count";
}

__attribute__((noreturn))
static void kid_vfail(int line, const char *cond, const char *fmt, va_list ap)
{
        fprintf(stderr, "agent %s (pid %d), agents_test.c:%d: ", self.name, (int)getpid(), line);
        if (cond != NULL)
                fprintf(stderr, "check failed: %s: ", cond);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        _exit(1);
}

__attribute__((format(printf, 2, 3), noreturn))
static void kid_fail(int line, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        kid_vfail(line, NULL, fmt, ap);
}

__attribute__((format(printf, 3, 4), noreturn))
static void kid_fail_check(int line, const char *cond, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        kid_vfail(line, cond, fmt, ap);
}

#define KID_CHECK(cond, ...)                                                              \
        do {                                                                              \
                if (!(cond))                                                              \
                        kid_fail_check(__LINE__, #cond, __VA_ARGS__);                     \
        } while (0)

/* expr (an atomq call) must return want. */
#define KID_RC(expr, want)                                                                \
        do {                                                                              \
                int rc_ = (expr), want_ = (want);                                         \
                if (rc_ != want_)                                                         \
                        kid_fail(__LINE__, "%s returned %d (%s), want %d (%s)", #expr,    \
                                 rc_, rc_text(rc_), want_, rc_text(want_));               \
        } while (0)

static void tell(uint64_t v)
{
        if (write(self.out, &v, sizeof(v)) != (ssize_t)sizeof(v))
                kid_fail(__LINE__, "cannot report to the test: %s", strerror(errno));
}

/* The test's next word. No timeout: an agent whose test died is killed
 * with it (PR_SET_PDEATHSIG). */
static uint64_t hear(void)
{
        uint64_t v;
        ssize_t n;
        do
                n = read(self.in, &v, sizeof(v));
        while (n < 0 && errno == EINTR);
        if (n != (ssize_t)sizeof(v))
                kid_fail(__LINE__, "the test went away");
        return v;
}

static struct atomq *kid_connect_at(int line)
{
        struct atomq *a = NULL;
        int rc = atomq_connect(t.sock, &a);
        if (rc != 0)
                kid_fail(line, "atomq_connect(%s): %d (%s)", t.sock, rc, rc_text(rc));
        atomq_set_timeout(a, CALL_TIMEOUT_NS);
        return a;
}
#define kid_connect() kid_connect_at(__LINE__)

/* Connects, waiting out -EUSERS until GONE_MS: a slot another agent left
 * is free once every worker let go of it. */
static struct atomq *kid_connect_when_free(int line)
{
        struct atomq *a = NULL;
        int64_t deadline = now_ms() + GONE_MS;
        int rc;
        while ((rc = atomq_connect(t.sock, &a)) == -EUSERS && now_ms() < deadline)
                nap_ms(5);
        if (rc != 0)
                kid_fail(line, "atomq_connect after a slot came free: %d (%s)", rc, rc_text(rc));
        atomq_set_timeout(a, CALL_TIMEOUT_NS);
        return a;
}

static void kid_recv_at(int line, struct atomq *a, struct atomq_delivery *d)
{
        int rc = atomq_recv(a, d, CALL_TIMEOUT_NS);
        if (rc != 1)
                kid_fail(line, "atomq_recv: %d (%s), want a delivery", rc, rc_text(rc));
}
#define KID_RECV(a, d) kid_recv_at(__LINE__, a, d)

static bool bytes_are(const void *p, uint32_t len, const char *want)
{
        return len == strlen(want) && memcmp(p, want, len) == 0;
}

/* Does d carry data on subject (NULL: any subject)? */
static bool dl_is(const struct atomq_delivery *d, const char *subject, const char *data)
{
        return (subject == NULL || bytes_are(d->subject, d->subject_len, subject)) &&
               bytes_are(d->data, d->len, data);
}

#define DL_FMT "sid %u status %u entity %#llx subject '%.*s' data '%.*s'"
#define DL_ARGS(d)                                                                        \
        (d)->sid, (d)->status, (unsigned long long)(d)->entity, (int)(d)->subject_len,   \
                (d)->subject, (int)(d)->len, (const char *)(d)->data

/* The next delivery of sid, passing others by; returns its status. */
static int await_sid(int line, struct atomq *a, uint32_t sid, struct atomq_delivery *d)
{
        for (;;) {
                kid_recv_at(line, a, d);
                if (d->sid == sid)
                        return d->status;
        }
}

/* Requests on subject until nobody answers (503), up to GONE_MS: a
 * departed agent's subscriptions are dropped once atomqd noticed. */
static void wait_no_responders(int line, struct atomq *a, const char *subject)
{
        int64_t deadline = now_ms() + GONE_MS;
        struct atomq_delivery d;
        uint64_t inbox;
        for (uint32_t sid = 100;; sid++) {
                int n = atomq_request(a, subject, "?", 1, 200, sid, &inbox);
                if (n < 0)
                        kid_fail(line, "request on %s: %d (%s)", subject, n, rc_text(n));
                int st = await_sid(line, a, sid, &d);
                if (n == 0 && st == 503)
                        return;
                if (n == 0 || now_ms() >= deadline)
                        kid_fail(line, "request on %s: %d responders, status %d (want 0 and "
                                 "503 within %d ms)", subject, n, st, GONE_MS);
        }
}

/* ---- 1. connecting -------------------------------------------------------- */

/* A socket file nobody listens on. */
static void dead_socket(const char *path)
{
        struct sockaddr_un sa;
        KID_CHECK(sun_make(&sa, path), "%s is too long", path);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        KID_CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "%s",
                  strerror(errno));
        close(fd);
}

static void kid_connects(const void *arg)
{
        struct atomq *a = NULL;
        char path[200];
        uint64_t h;
        (void)arg;
        snprintf(path, sizeof(path), "%s/absent.sock", t.dir);
        KID_RC(atomq_connect(path, &a), -ENOENT);
        KID_CHECK(a == NULL, "a failed connect hands out no connection");
        snprintf(path, sizeof(path), "%s/dead.sock", t.dir);
        dead_socket(path);
        KID_RC(atomq_connect(path, &a), -ECONNREFUSED);
        atomq_close(NULL); /* documented as harmless */
        for (int round = 0; round < 2; round++) {
                a = kid_connect();
                /* A round trip through the worker each time. */
                KID_RC(atomq_lookup(a, "no.such.entity", &h), -ENOENT);
                KID_RC(atomq_create(a, ATOMQ_MODE_MAILBOX, NULL, NULL, &h), 0);
                KID_CHECK(h != 0, "an anonymous entity has a handle");
                atomq_close(a);
        }
        a = kid_connect();
        tell(1);
        hear(); /* atomqd stopped */
        KID_RC(atomq_lookup(a, "no.such.entity", &h), -ECONNRESET);
        atomq_close(a);
}

Test(agents, connects_closes_and_sees_atomqd_stop)
{
        daemon_start(NULL);
        struct kid *k = kid_start("connector", kid_connects, NULL);
        cr_assert_eq(kid_hear(k), 1);
        daemon_stop();
        kid_tell(k, 1);
        kid_join(k);
}

/* Holds a slot until told, closes (the process lives on: closing alone
 * must free the slot), reports, and exits when told. */
static void kid_holds_slot(const void *arg)
{
        (void)arg;
        struct atomq *a = kid_connect();
        tell(1);
        hear();
        atomq_close(a);
        tell(2);
        hear();
}

static void kid_waits_for_slot(const void *arg)
{
        struct atomq *a = NULL;
        uint64_t h;
        (void)arg;
        KID_RC(atomq_connect(t.sock, &a), -EUSERS);
        tell(1);
        hear(); /* a slot was given back */
        a = kid_connect_when_free(__LINE__);
        KID_RC(atomq_lookup(a, "no.such.entity", &h), -ENOENT);
        tell(2);
        hear();
        atomq_close(a);
}

static void kid_refused(const void *arg)
{
        struct atomq *a = NULL;
        (void)arg;
        KID_RC(atomq_connect(t.sock, &a), -EUSERS);
        KID_CHECK(a == NULL, "a refused connect hands out no connection");
}

Test(agents, max_agents_refuses_a_third_and_reuses_a_closed_slot)
{
        daemon_start((const char *[]){ "--max-agents", "2", NULL });
        struct kid *first = kid_start("first", kid_holds_slot, NULL);
        cr_assert_eq(kid_hear(first), 1);
        struct kid *second = kid_start("second", kid_holds_slot, NULL);
        cr_assert_eq(kid_hear(second), 1);
        struct kid *third = kid_start("third", kid_waits_for_slot, NULL);
        cr_assert_eq(kid_hear(third), 1);
        kid_tell(first, 1);
        cr_assert_eq(kid_hear(first), 2);
        kid_tell(third, 1);
        cr_assert_eq(kid_hear(third), 2);
        /* second and third hold both slots now. */
        kid_join(kid_start("fourth", kid_refused, NULL));
        kid_tell(first, 1);
        kid_join(first);
        kid_tell(second, 1);
        cr_assert_eq(kid_hear(second), 2);
        kid_tell(second, 1);
        kid_join(second);
        kid_tell(third, 1);
        kid_join(third);
        daemon_stop();
}

/* ---- 2. the modes, across agents --------------------------------------- */

static int cmp_str(const void *x, const void *y)
{
        return strcmp(x, y);
}

#define SEEN_MAX 16
#define SEEN_LEN 48

/* Subscribes with wildcards, then takes every delivery up to the marker
 * (sid 4) and checks they are exactly the matches. */
static void kid_wildcard_sub(const void *arg)
{
        static const char *const want[] = { "1 orders.eu", "2 orders.eu", "2 orders.eu.new",
                                            "2 orders.us.old.x", "3 orders.eu.new" };
        const size_t nwant = sizeof(want) / sizeof(want[0]);
        char seen[SEEN_MAX][SEEN_LEN];
        struct atomq_delivery d;
        uint64_t id;
        size_t n = 0;
        (void)arg;
        struct atomq *a = kid_connect();
        KID_RC(atomq_subscribe(a, "orders.*", NULL, 1, &id), 0);
        KID_RC(atomq_subscribe(a, "orders.>", NULL, 2, &id), 0);
        KID_RC(atomq_subscribe(a, "orders.eu.new", NULL, 3, &id), 0);
        KID_RC(atomq_subscribe(a, "end.>", NULL, 4, &id), 0);
        tell(1);
        for (;;) {
                KID_RECV(a, &d);
                KID_CHECK(d.status == 0 && d.entity == 0 && d.reply == 0 && d.flags == 0,
                          DL_FMT, DL_ARGS(&d));
                /* The publisher sends each subject as its own payload. */
                KID_CHECK(d.len == d.subject_len && memcmp(d.data, d.subject, d.len) == 0,
                          "payload is not the subject: " DL_FMT, DL_ARGS(&d));
                if (d.sid == 4)
                        break;
                KID_CHECK(n < SEEN_MAX, "too many deliveries");
                snprintf(seen[n++], SEEN_LEN, "%u %.*s", d.sid, (int)d.subject_len, d.subject);
        }
        /* One worker delivers in publish order, but the matches of one
         * publish come in no set order: compare as sorted lists. */
        qsort(seen, n, SEEN_LEN, cmp_str);
        for (size_t i = 0; i < n || i < nwant; i++)
                KID_CHECK(i < n && i < nwant && strcmp(seen[i], want[i]) == 0,
                          "delivery %zu: got '%s', want '%s'", i, i < n ? seen[i] : "(none)",
                          i < nwant ? want[i] : "(none)");
}

static void kid_wildcard_pub(const void *arg)
{
        /* "orders" matches neither '*' nor '>' (both need one more token);
         * "ordersx.eu" and "other.eu" match nothing. */
        static const char *const subjects[] = { "orders.eu", "orders.eu.new", "orders",
                                                "ordersx.eu", "other.eu", "orders.us.old.x",
                                                "end.now" };
        (void)arg;
        struct atomq *a = kid_connect();
        hear();
        for (size_t i = 0; i < sizeof(subjects) / sizeof(subjects[0]); i++)
                KID_RC(atomq_publish(a, subjects[i], subjects[i], (uint32_t)strlen(subjects[i]),
                                     NULL), 0);
        KID_RC(atomq_flush(a), 0);
        tell(1);
}

Test(agents, pubsub_wildcards_deliver_exactly_the_matches)
{
        daemon_start(NULL);
        struct kid *sub = kid_start("subscriber", kid_wildcard_sub, NULL);
        cr_assert_eq(kid_hear(sub), 1);
        struct kid *pub = kid_start("publisher", kid_wildcard_pub, NULL);
        kid_tell(pub, 1);
        cr_assert_eq(kid_hear(pub), 1);
        kid_join(pub);
        kid_join(sub);
        daemon_stop();
}

#define WORK_N 20u

/* Subscribes to work.items (in group arg, or alone when arg is NULL) and
 * to work.done; reports the bitmask of the items it got. */
static void kid_worker(const void *arg)
{
        const char *group = arg;
        struct atomq_delivery d;
        uint64_t id, mask = 0;
        struct atomq *a = kid_connect();
        KID_RC(atomq_subscribe(a, "work.items", group, 7, &id), 0);
        KID_RC(atomq_subscribe(a, "work.done", NULL, 8, &id), 0);
        tell(1);
        for (;;) {
                KID_RECV(a, &d);
                if (d.sid == 8)
                        break;
                unsigned i = WORK_N;
                char num[8] = "";
                memcpy(num, d.data, d.len < sizeof(num) - 1 ? d.len : sizeof(num) - 1);
                KID_CHECK(d.sid == 7 && sscanf(num, "%u", &i) == 1 && i < WORK_N,
                          DL_FMT, DL_ARGS(&d));
                KID_CHECK(!(mask & (1ull << i)), "item %u came twice", i);
                mask |= 1ull << i;
        }
        tell(mask);
}

static void kid_work_pub(const void *arg)
{
        (void)arg;
        struct atomq *a = kid_connect();
        for (unsigned i = 0; i < WORK_N; i++) {
                char num[8];
                int len = snprintf(num, sizeof(num), "%u", i);
                KID_RC(atomq_publish(a, "work.items", num, (uint32_t)len, NULL), 0);
        }
        KID_RC(atomq_publish(a, "work.done", "", 0, NULL), 0);
        KID_RC(atomq_flush(a), 0);
}

Test(agents, queue_group_gives_each_message_to_exactly_one_member)
{
        const uint64_t all = (1ull << WORK_N) - 1;
        daemon_start(NULL);
        struct kid *solo = kid_start("solo", kid_worker, NULL);
        struct kid *m1 = kid_start("member1", kid_worker, "crew");
        struct kid *m2 = kid_start("member2", kid_worker, "crew");
        cr_assert_eq(kid_hear(solo), 1);
        cr_assert_eq(kid_hear(m1), 1);
        cr_assert_eq(kid_hear(m2), 1);
        kid_join(kid_start("publisher", kid_work_pub, NULL));
        uint64_t got_solo = kid_hear(solo), got1 = kid_hear(m1), got2 = kid_hear(m2);
        cr_assert_eq(got_solo, all, "a plain subscriber gets every item: %#llx",
                     (unsigned long long)got_solo);
        cr_assert_eq(got1 & got2, 0, "items went to both members: %#llx",
                     (unsigned long long)(got1 & got2));
        cr_assert_eq(got1 | got2, all, "items reached no member: %#llx",
                     (unsigned long long)(all & ~(got1 | got2)));
        /* Members are picked round-robin (dp_route.c). */
        cr_assert(got1 != 0 && got2 != 0, "one member got everything: %#llx / %#llx",
                  (unsigned long long)got1, (unsigned long long)got2);
        kid_join(solo);
        kid_join(m1);
        kid_join(m2);
        daemon_stop();
}

static void kid_mailbox_owner(const void *arg)
{
        uint64_t h, other, seq[3];
        (void)arg;
        struct atomq *a = kid_connect();
        KID_RC(atomq_create(a, ATOMQ_MODE_MAILBOX, "mb.orders", NULL, &h), 0);
        KID_RC(atomq_create(a, ATOMQ_MODE_MAILBOX, "mb.orders", NULL, &other), -EEXIST);
        for (int i = 0; i < 3; i++) {
                char m[8];
                int len = snprintf(m, sizeof(m), "m%d", i);
                KID_RC(atomq_send(a, h, NULL, NULL, m, (uint32_t)len, NULL, &seq[i]), 0);
                KID_CHECK(i == 0 || seq[i] > seq[i - 1], "sequence numbers grow");
        }
        tell(h);
        hear(); /* the reader took and acked them */
        KID_RC(atomq_destroy(a, 0, "mb.orders"), 0);
        KID_RC(atomq_lookup(a, "mb.orders", &other), -ENOENT);
        KID_RC(atomq_destroy(a, 0, "mb.orders"), -ENOENT);
        KID_RC(atomq_destroy(a, h, NULL), -ESTALE);
        KID_RC(atomq_send(a, h, NULL, NULL, "late", 4, NULL, NULL), -ESTALE);
        KID_RC(atomq_send(a, 0, "mb.orders", NULL, "late", 4, NULL, NULL), -ENOENT);
        tell(1);
}

static void kid_mailbox_reader(const void *arg)
{
        struct atomq_batch b;
        struct atomq_delivery d;
        uint64_t h, found, seq[3];
        (void)arg;
        struct atomq *a = kid_connect();
        h = hear();
        KID_RC(atomq_lookup(a, "mb.orders", &found), 0);
        KID_CHECK(found == h, "lookup %#llx, created %#llx", (unsigned long long)found,
                  (unsigned long long)h);
        KID_RC(atomq_fetch(a, h, NULL, 0, 64, &b), 3);
        for (int i = 0; i < 3; i++) {
                char m[8];
                snprintf(m, sizeof(m), "m%d", i);
                KID_RC(atomq_batch_next(&b, &d), 1);
                KID_CHECK(bytes_are(d.data, d.len, m) && d.entity == h && d.flags == 0,
                          "message %d: " DL_FMT, i, DL_ARGS(&d));
                seq[i] = d.seq;
        }
        KID_RC(atomq_batch_next(&b, &d), 0);
        atomq_batch_release(a, &b);
        KID_RC(atomq_ack(a, h, seq[0]), 0);
        KID_RC(atomq_ack(a, h, seq[0]), -ENOENT);
        KID_RC(atomq_ack(a, h, seq[2] + 1000), -ENOENT);
        KID_RC(atomq_ack(a, h, seq[1]), 0);
        /* m2 is in flight, unacked, until the ack wait (30 s): a fetch now
         * (by name this time) does not hand it out again. */
        KID_RC(atomq_fetch(a, 0, "mb.orders", 0, 64, &b), 0);
        KID_RC(atomq_fetch(a, h, NULL, 0, 0, &b), -EINVAL);
        KID_RC(atomq_fetch(a, h, NULL, 0, 65, &b), -EINVAL);
        KID_RC(atomq_ack(a, h, seq[2]), 0);
        tell(1);
}

Test(agents, mailbox_create_send_fetch_ack_destroy)
{
        daemon_start(NULL);
        struct kid *owner = kid_start("owner", kid_mailbox_owner, NULL);
        struct kid *reader = kid_start("reader", kid_mailbox_reader, NULL);
        kid_tell(reader, kid_hear(owner));
        cr_assert_eq(kid_hear(reader), 1);
        kid_tell(owner, 1);
        cr_assert_eq(kid_hear(owner), 1);
        kid_join(reader);
        kid_join(owner);
        daemon_stop();
}

static void kid_latest_writer(const void *arg)
{
        struct atomq_batch b;
        struct atomq_delivery d;
        uint64_t h;
        (void)arg;
        struct atomq *a = kid_connect();
        KID_RC(atomq_create(a, ATOMQ_MODE_LATEST, "cfg", NULL, &h), 0);
        tell(h);
        hear(); /* the watcher watches */
        KID_RC(atomq_send(a, h, NULL, "cfg.a", "1", 1, NULL, NULL), 0);
        KID_RC(atomq_send(a, h, NULL, "cfg.b", "x", 1, NULL, NULL), 0);
        KID_RC(atomq_send(a, 0, "cfg", "cfg.a", "2", 1, NULL, NULL), 0);
        /* A latest value needs its key. */
        KID_RC(atomq_send(a, h, NULL, NULL, "3", 1, NULL, NULL), -EINVAL);
        KID_RC(atomq_get(a, h, "cfg.a", &b), 1);
        KID_RC(atomq_batch_next(&b, &d), 1);
        KID_CHECK(dl_is(&d, "cfg.a", "2"), "get cfg.a: " DL_FMT, DL_ARGS(&d));
        KID_RC(atomq_get(a, h, "cfg.b", &b), 1);
        KID_RC(atomq_batch_next(&b, &d), 1);
        KID_CHECK(dl_is(&d, "cfg.b", "x"), "get cfg.b: " DL_FMT, DL_ARGS(&d));
        KID_RC(atomq_get(a, h, "cfg.none", &b), -ENOENT);
        tell(1);
        hear(); /* the watcher unwatched */
        KID_RC(atomq_send(a, h, NULL, "cfg.a", "3", 1, NULL, NULL), 0);
        tell(2);
        hear(); /* it watches again, as sid 6 */
        KID_RC(atomq_send(a, h, NULL, "cfg.a", "4", 1, NULL, NULL), 0);
        tell(3);
}

static void kid_latest_watcher(const void *arg)
{
        static const char *const want[][2] = { { "cfg.a", "1" }, { "cfg.b", "x" },
                                               { "cfg.a", "2" } };
        struct atomq_delivery d;
        struct atomq_batch b;
        (void)arg;
        struct atomq *a = kid_connect();
        uint64_t h = hear();
        KID_RC(atomq_watch(a, 0, "cfg", 5, 0, 0), 0);
        tell(1);
        for (int i = 0; i < 3; i++) {
                KID_RECV(a, &d);
                KID_CHECK(d.sid == 5 && d.entity == h && dl_is(&d, want[i][0], want[i][1]),
                          "value %d: " DL_FMT, i, DL_ARGS(&d));
        }
        KID_RC(atomq_unwatch(a, h, NULL, 5), 0);
        KID_RC(atomq_unwatch(a, h, NULL, 5), -ENOENT);
        tell(1);
        hear(); /* "3" was written while we did not watch */
        KID_RC(atomq_watch(a, h, NULL, 6, 0, 0), 0);
        tell(2);
        hear(); /* "4" was written */
        /* One worker delivers in order: had "3" come through the old watch,
         * it would be first. */
        KID_RECV(a, &d);
        KID_CHECK(d.sid == 6 && dl_is(&d, "cfg.a", "4"), DL_FMT, DL_ARGS(&d));
        KID_RC(atomq_get(a, h, "cfg.a", &b), 1);
        KID_RC(atomq_batch_next(&b, &d), 1);
        KID_CHECK(dl_is(&d, "cfg.a", "4"), "get cfg.a: " DL_FMT, DL_ARGS(&d));
}

Test(agents, latest_keeps_one_value_per_key_and_pushes_to_watchers)
{
        daemon_start(NULL);
        struct kid *writer = kid_start("writer", kid_latest_writer, NULL);
        struct kid *watcher = kid_start("watcher", kid_latest_watcher, NULL);
        kid_tell(watcher, kid_hear(writer));
        cr_assert_eq(kid_hear(watcher), 1);
        kid_tell(writer, 1);
        cr_assert_eq(kid_hear(writer), 1);
        cr_assert_eq(kid_hear(watcher), 1);
        kid_tell(writer, 1);
        cr_assert_eq(kid_hear(writer), 2);
        kid_tell(watcher, 1);
        cr_assert_eq(kid_hear(watcher), 2);
        kid_tell(writer, 1);
        cr_assert_eq(kid_hear(writer), 3);
        kid_tell(watcher, 1);
        kid_join(watcher);
        kid_join(writer);
        daemon_stop();
}

static void kid_responder(const void *arg)
{
        struct atomq_delivery d, none = { .reply = 0 };
        uint64_t id;
        char out[64];
        (void)arg;
        struct atomq *a = kid_connect();
        KID_RC(atomq_subscribe(a, "svc.echo", NULL, 1, &id), 0);
        KID_RC(atomq_subscribe(a, "svc.silent", NULL, 2, &id), 0);
        tell(1);
        KID_RECV(a, &d);
        KID_CHECK(d.sid == 1 && d.reply != 0 && d.status == 0 && dl_is(&d, "svc.echo", "hi"),
                  DL_FMT, DL_ARGS(&d));
        int len = snprintf(out, sizeof(out), "echo:%.*s", (int)d.len, (const char *)d.data);
        KID_RC(atomq_reply(a, &d, out, (uint32_t)len), 0);
        /* The silent request is answered only after its requester gave up. */
        KID_RECV(a, &d);
        KID_CHECK(d.sid == 2 && d.reply != 0 && dl_is(&d, "svc.silent", "y"),
                  DL_FMT, DL_ARGS(&d));
        struct atomq_delivery late = { .reply = d.reply };
        atomq_release(a);
        tell(2);
        hear(); /* the requester saw its 408 */
        KID_RC(atomq_reply(a, &late, "late", 4), -ESTALE);
        KID_RC(atomq_reply(a, &none, "x", 1), -EINVAL);
        tell(3);
}

static void kid_requester(const void *arg)
{
        struct atomq_delivery d;
        uint64_t in1 = 0, in2 = 0, in3 = 0;
        (void)arg;
        struct atomq *a = kid_connect();
        hear(); /* the responder listens */
        KID_RC(atomq_request(a, "svc.echo", "hi", 2, 1000, 11, &in1), 1);
        KID_CHECK(in1 != 0, "a request that reached a responder has an inbox");
        KID_RECV(a, &d);
        KID_CHECK(d.sid == 11 && d.entity == in1 && d.status == 0 && d.reply == 0 &&
                  bytes_are(d.data, d.len, "echo:hi"), DL_FMT, DL_ARGS(&d));
        /* Nobody listens: 503 at once, whatever the timeout. */
        KID_RC(atomq_request(a, "svc.nobody", "x", 1, 60000, 12, &in2), 0);
        KID_RECV(a, &d);
        KID_CHECK(d.sid == 12 && d.status == 503 && d.len == 0, DL_FMT, DL_ARGS(&d));
        /* A responder that does not answer: 408 when the time runs out.
         * Had the answered request's inbox (1000 ms) not gone with its
         * reply, its 408 would come first, on this one worker. */
        int64_t t0 = now_ms();
        KID_RC(atomq_request(a, "svc.silent", "y", 1, 1200, 13, &in3), 1);
        KID_RECV(a, &d);
        int64_t waited = now_ms() - t0;
        KID_CHECK(d.sid == 13 && d.entity == in3 && d.status == 408 && d.len == 0,
                  DL_FMT, DL_ARGS(&d));
        /* The timer may round, but never by a tenth of the timeout. */
        KID_CHECK(waited >= 1080, "the 408 came after %lld ms of 1200", (long long)waited);
        KID_RC(atomq_recv(a, &d, 0), -EAGAIN);
        tell(1);
        hear(); /* the responder answered too late */
        KID_RC(atomq_recv(a, &d, 0), -EAGAIN);
        KID_RC(atomq_request(a, "svc.*", "z", 1, 1000, 14, &in2), -EINVAL);
        KID_RC(atomq_request(a, "svc.echo", "z", 1, 0, 14, &in2), -EINVAL);
}

Test(agents, request_reply_503_and_408)
{
        daemon_start(NULL);
        struct kid *resp = kid_start("responder", kid_responder, NULL);
        cr_assert_eq(kid_hear(resp), 1);
        struct kid *req = kid_start("requester", kid_requester, NULL);
        kid_tell(req, 1);
        cr_assert_eq(kid_hear(resp), 2);
        cr_assert_eq(kid_hear(req), 1);
        kid_tell(resp, 1);
        cr_assert_eq(kid_hear(resp), 3);
        kid_tell(req, 1);
        kid_join(req);
        kid_join(resp);
        daemon_stop();
}

/* A channel's message: end is 1 + the sending end. */
static int chan_send(struct atomq *a, uint64_t h, uint8_t own_end, const char *text)
{
        struct atomq_msg_opts o = { .end = (uint8_t)(1 + own_end), .storage = -1 };
        return atomq_send(a, h, NULL, NULL, text, (uint32_t)strlen(text), &o, NULL);
}

/* Takes one message from the other end; checks it is text. */
static void chan_take(int line, struct atomq *a, uint64_t h, uint8_t own_end, const char *text)
{
        struct atomq_batch b;
        struct atomq_delivery d;
        int rc = atomq_fetch(a, h, NULL, (uint8_t)(1 + own_end), 64, &b);
        if (rc != 1)
                kid_fail(line, "fetch on end %u: %d (%s), want 1 message", own_end, rc,
                         rc_text(rc));
        if (atomq_batch_next(&b, &d) != 1 || !bytes_are(d.data, d.len, text))
                kid_fail(line, "end %u took " DL_FMT ", want '%s'", own_end, DL_ARGS(&d), text);
        atomq_batch_release(a, &b);
}

static void kid_channel_end0(const void *arg)
{
        struct atomq_batch b;
        uint64_t h;
        (void)arg;
        struct atomq *a = kid_connect();
        KID_RC(atomq_create(a, ATOMQ_MODE_CHANNEL, "chan.pair", NULL, &h), 0);
        KID_RC(atomq_watch(a, h, NULL, 1, 1, 0), 0);
        tell(h);
        hear(); /* end 1 is held */
        KID_RC(chan_send(a, h, 0, "a2b"), 0);
        /* Our own message is not ours to take. */
        KID_RC(atomq_fetch(a, h, NULL, 1, 64, &b), 0);
        tell(1);
        hear(); /* end 1 took it and answered */
        chan_take(__LINE__, a, h, 0, "b2a");
        KID_RC(atomq_fetch(a, h, NULL, 1, 64, &b), 0);
        KID_RC(atomq_unwatch(a, h, NULL, 1), 0);
        tell(2);
}

static void kid_channel_end1(const void *arg)
{
        struct atomq_batch b;
        uint64_t h, found;
        (void)arg;
        struct atomq *a = kid_connect();
        h = hear();
        KID_RC(atomq_lookup(a, "chan.pair", &found), 0);
        KID_CHECK(found == h, "lookup finds the channel end 0 created");
        KID_RC(atomq_watch(a, h, NULL, 1, 1, 0), -EBUSY);
        KID_RC(atomq_watch(a, h, NULL, 1, 1, 2), -EINVAL);
        KID_RC(atomq_watch(a, h, NULL, 2, 1, 1), 0);
        tell(1);
        hear(); /* end 0 sent */
        chan_take(__LINE__, a, h, 1, "a2b");
        KID_RC(atomq_fetch(a, h, NULL, 2, 64, &b), 0);
        KID_RC(chan_send(a, h, 1, "b2a"), 0);
        tell(2);
        hear(); /* end 0 left: we keep the channel alive */
        KID_RC(atomq_lookup(a, "chan.pair", &found), 0);
        /* Leave without unwatching: atomqd drops our end, the last. */
        atomq_close(a);
        tell(3);
}

static void kid_waits_for_channel_end(const void *arg)
{
        uint64_t found;
        int rc;
        (void)arg;
        struct atomq *a = kid_connect();
        int64_t deadline = now_ms() + GONE_MS;
        while ((rc = atomq_lookup(a, "chan.pair", &found)) == 0 && now_ms() < deadline)
                nap_ms(5);
        KID_RC(rc, -ENOENT);
}

Test(agents, channel_through_the_dataplane_with_both_ends)
{
        daemon_start(NULL);
        struct kid *end0 = kid_start("end0", kid_channel_end0, NULL);
        struct kid *end1 = kid_start("end1", kid_channel_end1, NULL);
        kid_tell(end1, kid_hear(end0));
        cr_assert_eq(kid_hear(end1), 1);
        kid_tell(end0, 1);
        cr_assert_eq(kid_hear(end0), 1);
        kid_tell(end1, 1);
        cr_assert_eq(kid_hear(end1), 2);
        kid_tell(end0, 1);
        cr_assert_eq(kid_hear(end0), 2);
        kid_join(end0);
        kid_tell(end1, 1);
        cr_assert_eq(kid_hear(end1), 3);
        /* The channel goes with its last party. */
        kid_join(kid_start("checker", kid_waits_for_channel_end, NULL));
        kid_join(end1);
        daemon_stop();
}

#define LOG_N 5

static void kid_log_writer(const void *arg)
{
        uint64_t h, seq;
        (void)arg;
        struct atomq *a = kid_connect();
        KID_RC(atomq_create(a, ATOMQ_MODE_LOG, "log.events", NULL, &h), 0);
        for (uint64_t i = 0; i < LOG_N; i++) {
                char e[8];
                int len = snprintf(e, sizeof(e), "e%u", (unsigned)i);
                KID_RC(atomq_send(a, h, NULL, NULL, e, (uint32_t)len, NULL, &seq), 0);
                KID_CHECK(seq == i, "entry %u has offset %llu", (unsigned)i,
                          (unsigned long long)seq);
        }
        tell(h);
        hear(); /* the reader's group is at the end */
        KID_RC(atomq_send(a, h, NULL, NULL, "e5", 2, NULL, &seq), 0);
        KID_CHECK(seq == LOG_N, "offset %llu", (unsigned long long)seq);
        tell(1);
}

/* Reads and checks the entries of a read: offsets first, first + 1, ... */
static void log_expect(int line, struct atomq *a, uint64_t h, const char *group,
                       uint64_t offset, unsigned max, uint64_t first, int count)
{
        struct atomq_batch b;
        struct atomq_delivery d;
        int rc = atomq_read(a, h, group, offset, max, &b);
        if (rc != count)
                kid_fail(line, "read %s from %llu max %u: %d (%s), want %d entries",
                         group != NULL ? group : "(by offset)", (unsigned long long)offset, max,
                         rc, rc_text(rc), count);
        for (int i = 0; i < count; i++) {
                char e[8];
                snprintf(e, sizeof(e), "e%u", (unsigned)(first + (uint64_t)i));
                if (atomq_batch_next(&b, &d) != 1 || d.seq != first + (uint64_t)i ||
                    !bytes_are(d.data, d.len, e))
                        kid_fail(line, "entry %d: seq %llu data '%.*s', want %s at %llu", i,
                                 (unsigned long long)d.seq, (int)d.len, (const char *)d.data, e,
                                 (unsigned long long)(first + (uint64_t)i));
        }
        if (atomq_batch_next(&b, &d) != 0)
                kid_fail(line, "more entries than the count");
}

static void kid_log_reader(const void *arg)
{
        struct atomq_batch b;
        (void)arg;
        struct atomq *a = kid_connect();
        uint64_t h = hear();
        log_expect(__LINE__, a, h, NULL, 0, 64, 0, LOG_N);
        log_expect(__LINE__, a, h, NULL, 2, 2, 2, 2);
        log_expect(__LINE__, a, h, NULL, LOG_N, 64, 0, 0);
        /* A new group starts at the oldest entry; reading does not move
         * it, committing does. */
        log_expect(__LINE__, a, h, "g1", 0, 64, 0, LOG_N);
        log_expect(__LINE__, a, h, "g1", 0, 64, 0, LOG_N);
        KID_RC(atomq_commit(a, h, "g1", 3), 0);
        log_expect(__LINE__, a, h, "g1", 0, 64, 3, 2);
        KID_RC(atomq_commit(a, h, "g1", LOG_N + 1), -ERANGE);
        KID_RC(atomq_commit(a, h, "g1", LOG_N), 0);
        log_expect(__LINE__, a, h, "g1", 0, 64, 0, 0);
        /* Groups are independent. */
        log_expect(__LINE__, a, h, "g2", 0, 3, 0, 3);
        log_expect(__LINE__, a, h, "g2", 0, 64, 0, LOG_N);
        /* A log is read, not fetched or acked. */
        KID_RC(atomq_fetch(a, h, NULL, 0, 64, &b), -EOPNOTSUPP);
        KID_RC(atomq_ack(a, h, 0), -EOPNOTSUPP);
        tell(1);
        hear(); /* e5 was appended */
        log_expect(__LINE__, a, h, "g1", 0, 64, LOG_N, 1);
}

Test(agents, log_appends_reads_by_offset_and_by_group)
{
        daemon_start(NULL);
        struct kid *writer = kid_start("writer", kid_log_writer, NULL);
        struct kid *reader = kid_start("reader", kid_log_reader, NULL);
        kid_tell(reader, kid_hear(writer));
        cr_assert_eq(kid_hear(reader), 1);
        kid_tell(writer, 1);
        cr_assert_eq(kid_hear(writer), 1);
        kid_tell(reader, 1);
        kid_join(reader);
        kid_join(writer);
        daemon_stop();
}

/* ---- 3. an agent killed with its subscription ---------------------------- */

/* Answers every request on subject arg with its own data, until killed. */
static void kid_echo_forever(const void *arg)
{
        struct atomq_delivery d;
        uint64_t id;
        struct atomq *a = kid_connect();
        KID_RC(atomq_subscribe(a, arg, NULL, 1, &id), 0);
        tell(1);
        for (;;) {
                int rc = atomq_recv(a, &d, -1);
                KID_CHECK(rc == 1, "recv: %d (%s)", rc, rc_text(rc));
                if (d.reply != 0)
                        KID_RC(atomq_reply(a, &d, d.data, d.len), 0);
        }
}

static void kid_asks_until_nobody(const void *arg)
{
        struct atomq_delivery d;
        uint64_t inbox;
        struct atomq *a = kid_connect();
        hear();
        KID_RC(atomq_request(a, arg, "ping", 4, 2000, 3, &inbox), 1);
        KID_RC(await_sid(__LINE__, a, 3, &d), 0);
        KID_CHECK(d.entity == inbox && bytes_are(d.data, d.len, "ping"), DL_FMT, DL_ARGS(&d));
        tell(1);
        hear(); /* the responder was killed */
        wait_no_responders(__LINE__, a, arg);
        tell(2);
        hear();
}

static void kid_newcomer(const void *arg)
{
        uint64_t id;
        struct atomq *a = kid_connect_when_free(__LINE__);
        KID_RC(atomq_subscribe(a, arg, NULL, 1, &id), 0);
        KID_RC(atomq_unsubscribe(a, id), 0);
}

Test(agents, sigkill_drops_the_agents_subscriptions_and_frees_its_slot)
{
        daemon_start((const char *[]){ "--max-agents", "2", NULL });
        struct kid *resp = kid_start("responder", kid_echo_forever, "svc.kill");
        cr_assert_eq(kid_hear(resp), 1);
        struct kid *req = kid_start("requester", kid_asks_until_nobody, "svc.kill");
        kid_tell(req, 1);
        cr_assert_eq(kid_hear(req), 1);
        kid_kill9(resp);
        kid_tell(req, 1);
        cr_assert_eq(kid_hear(req), 2);
        /* The requester holds one slot of two: the newcomer gets the dead
         * agent's. */
        kid_join(kid_start("newcomer", kid_newcomer, "svc.kill"));
        kid_tell(req, 1);
        kid_join(req);
        daemon_stop();
}

/* ---- 4. an agent that scribbles over its own rings ---------------------- */

/* The agent file's mapping in this process. */
static void agent_map_find(uint8_t **lo, uint8_t **hi)
{
        char line[512];
        unsigned long from, to;
        FILE *f = fopen("/proc/self/maps", "r");
        *lo = *hi = NULL;
        while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
                if (strstr(line, "memfd:atomq-agent") == NULL ||
                    sscanf(line, "%lx-%lx", &from, &to) != 2)
                        continue;
                KID_CHECK(*lo == NULL, "one mapping of the agent file");
                *lo = (uint8_t *)(uintptr_t)from;
                *hi = (uint8_t *)(uintptr_t)to;
        }
        if (f != NULL)
                fclose(f);
        KID_CHECK(*lo != NULL, "the agent file is mapped");
}

/* The agent's control connection: the socket whose peer is atomqd's
 * (criterion has sockets of its own in this process). */
static int agent_sock_find(void)
{
        int found = -1;
        for (int fd = 0; fd < 1024; fd++) {
                struct sockaddr_un sa;
                socklen_t len = sizeof(sa);
                if (getpeername(fd, (struct sockaddr *)&sa, &len) != 0 ||
                    sa.sun_family != AF_UNIX || len <= offsetof(struct sockaddr_un, sun_path))
                        continue;
                if (strncmp(sa.sun_path, t.sock, sizeof(sa.sun_path)) == 0) {
                        KID_CHECK(found < 0, "one connection to atomqd");
                        found = fd;
                }
        }
        KID_CHECK(found >= 0, "a connection to %s", t.sock);
        return found;
}

static void kid_scribbler(const void *arg)
{
        uint8_t *lo, *hi;
        uint64_t id, h;
        char c;
        (void)arg;
        struct atomq *a = kid_connect();
        KID_RC(atomq_subscribe(a, "bad.x", NULL, 1, &id), 0);
        int sock = agent_sock_find();
        agent_map_find(&lo, &hi);
        KID_CHECK(hi - lo > 8192, "agent file of %td bytes", hi - lo);
        tell(1);
        hear();
        /* Past the first 8 KiB: the command ring's data from its 3841st
         * byte on, and the completion and delivery rings' headers. The
         * next call may fail (it met an index of all ones) or succeed (the
         * worker's completion wrote a sound head first): all ones reads as
         * index -1, and each side overwrites its own index as it moves. It
         * must come back, not crash or hang. */
        memset(lo + 8192, 0xff, (size_t)(hi - lo - 8192));
        atomq_set_timeout(a, 500 * MS);
        int rc = atomq_subscribe(a, "bad.y", NULL, 2, &id);
        KID_CHECK(rc == 0 || rc == -ECONNRESET || rc == -EPROTO || rc == -ETIMEDOUT,
                  "a call on scribbled rings: %d (%s)", rc, rc_text(rc));
        tell((uint64_t)-rc);
        /* Then the rest of the rings, from the first page after the header
         * and doorbells (shm_agent_layout, one worker): the command ring's
         * header, whose head the worker reads on every pass. No call until
         * atomqd hung up: committing a command would mend that head. */
        memset(lo + 4096, 0xff, 4096);
        /* atomqd hangs up on us... */
        struct pollfd p = { .fd = sock, .events = POLLIN | POLLRDHUP };
        KID_CHECK(poll(&p, 1, WAIT_MS) == 1, "atomqd kept the connection for %d ms", WAIT_MS);
        ssize_t n = recv(sock, &c, 1, MSG_DONTWAIT);
        KID_CHECK(n == 0 || (n < 0 && errno == ECONNRESET), "recv on the connection: %zd (%s)",
                  n, n < 0 ? strerror(errno) : "data");
        /* ...and every call says what to do: close and connect again. */
        KID_RC(atomq_lookup(a, "bad.x", &h), -ECONNRESET);
        KID_RC(atomq_subscribe(a, "bad.z", NULL, 3, &id), -ECONNRESET);
        atomq_close(a);
        a = kid_connect();
        KID_RC(atomq_lookup(a, "bad.x", &h), -ENOENT);
        atomq_close(a);
        tell(2);
}

static void kid_good_citizen(const void *arg)
{
        struct atomq_delivery d;
        uint64_t id;
        (void)arg;
        struct atomq *a = kid_connect();
        KID_RC(atomq_subscribe(a, "good.ping", NULL, 1, &id), 0);
        tell(1);
        hear(); /* the scribbler was disconnected */
        /* Its subscription went with it. */
        wait_no_responders(__LINE__, a, "bad.x");
        tell(2);
        KID_RECV(a, &d);
        KID_CHECK(d.sid == 1 && dl_is(&d, "good.ping", "still here"), DL_FMT, DL_ARGS(&d));
        tell(3);
}

static void kid_pinger(const void *arg)
{
        (void)arg;
        struct atomq *a = kid_connect();
        KID_RC(atomq_publish(a, "good.ping", "still here", 10, NULL), 0);
        KID_RC(atomq_flush(a), 0);
}

Test(agents, scribbler_is_disconnected_and_others_keep_working)
{
        daemon_start((const char *[]){ "--max-agents", "4", NULL });
        struct kid *good = kid_start("good", kid_good_citizen, NULL);
        struct kid *bad = kid_start("scribbler", kid_scribbler, NULL);
        cr_assert_eq(kid_hear(good), 1);
        cr_assert_eq(kid_hear(bad), 1);
        kid_tell(bad, 1);
        uint64_t err = kid_hear(bad);
        cr_log_info("the call after the first scribble returned -%llu",
                    (unsigned long long)err);
        cr_assert_eq(kid_hear(bad), 2);
        kid_join(bad);
        cr_assert(log_has("rings are corrupt; disconnected"),
                  "atomqd did not say why it disconnected the scribbler");
        kid_tell(good, 1);
        cr_assert_eq(kid_hear(good), 2);
        kid_join(kid_start("pinger", kid_pinger, NULL));
        cr_assert_eq(kid_hear(good), 3);
        kid_join(good);
        daemon_stop();
}

/* ---- 5. quotas ------------------------------------------------------------- */

static void subscribe_n(int line, struct atomq *a, unsigned n, uint64_t *ids)
{
        for (unsigned i = 0; i < n; i++) {
                char subj[16];
                snprintf(subj, sizeof(subj), "q.%u", i);
                int rc = atomq_subscribe(a, subj, NULL, i, &ids[i]);
                if (rc != 0)
                        kid_fail(line, "subscription %u of the quota: %d (%s)", i, rc,
                                 rc_text(rc));
        }
}

static void kid_quota(const void *arg)
{
        uint64_t ids[3], id, h;
        (void)arg;
        struct atomq *a = kid_connect();
        subscribe_n(__LINE__, a, 3, ids);
        KID_RC(atomq_subscribe(a, "q.3", NULL, 3, &id), -EDQUOT);
        /* Watches count too. */
        KID_RC(atomq_create(a, ATOMQ_MODE_LATEST, NULL, NULL, &h), 0);
        KID_RC(atomq_watch(a, h, NULL, 9, 0, 0), -EDQUOT);
        /* One given back, exactly one more: refusals took nothing. */
        KID_RC(atomq_unsubscribe(a, ids[1]), 0);
        KID_RC(atomq_subscribe(a, "q.3", NULL, 3, &id), 0);
        KID_RC(atomq_subscribe(a, "q.4", NULL, 4, &id), -EDQUOT);
        tell(1);
        hear(); /* the other agent holds its whole quota too */
        /* A new connection starts with the whole quota. */
        atomq_close(a);
        a = kid_connect();
        subscribe_n(__LINE__, a, 3, ids);
        KID_RC(atomq_subscribe(a, "q.3", NULL, 3, &id), -EDQUOT);
        atomq_close(a);
}

Test(agents, subscription_quota_is_per_agent)
{
        daemon_start((const char *[]){ "--agent-max-subs", "3", NULL });
        struct kid *one = kid_start("one", kid_quota, NULL);
        struct kid *two = kid_start("two", kid_quota, NULL);
        cr_assert_eq(kid_hear(one), 1);
        cr_assert_eq(kid_hear(two), 1);
        kid_tell(one, 1);
        kid_tell(two, 1);
        kid_join(one);
        kid_join(two);
        daemon_stop();
}

/* ---- 6. the dataplane restarts under a connected agent -------------------- */

static void kid_survivor(const void *arg)
{
        struct atomq_batch b;
        struct atomq_delivery d;
        uint64_t h, found, id;
        int rc;
        (void)arg;
        struct atomq *a = kid_connect();
        KID_RC(atomq_create(a, ATOMQ_MODE_MAILBOX, "mb.restart", NULL, &h), 0);
        for (int i = 0; i < 3; i++) {
                char m[8];
                int len = snprintf(m, sizeof(m), "r%d", i);
                KID_RC(atomq_send(a, h, NULL, NULL, m, (uint32_t)len, NULL, NULL), 0);
        }
        tell(1);
        hear(); /* the dataplane was killed */
        /* Calls made while no dataplane runs time out; a harmless one is
         * retried until the new dataplane answers. (A fetch that timed out
         * would still run later and take the messages in flight.) */
        atomq_set_timeout(a, 200 * MS);
        int64_t t0 = now_ms();
        while ((rc = atomq_lookup(a, "mb.restart", &found)) == -ETIMEDOUT &&
               now_ms() - t0 < WAIT_MS - 2000)
                ;
        KID_RC(rc, 0);
        KID_CHECK(found == h, "the mailbox kept its handle");
        tell((uint64_t)(now_ms() - t0));
        atomq_set_timeout(a, CALL_TIMEOUT_NS);
        KID_RC(atomq_fetch(a, h, NULL, 0, 64, &b), 3);
        for (int i = 0; i < 3; i++) {
                char m[8];
                snprintf(m, sizeof(m), "r%d", i);
                KID_RC(atomq_batch_next(&b, &d), 1);
                KID_CHECK(bytes_are(d.data, d.len, m), "message %d: " DL_FMT, i, DL_ARGS(&d));
        }
        /* And pub/sub reaches this agent through the new dataplane. */
        KID_RC(atomq_subscribe(a, "after.restart", NULL, 5, &id), 0);
        KID_RC(atomq_publish(a, "after.restart", "hello", 5, NULL), 0);
        KID_RC(atomq_flush(a), 0);
        KID_RECV(a, &d);
        KID_CHECK(d.sid == 5 && dl_is(&d, "after.restart", "hello"), DL_FMT, DL_ARGS(&d));
        tell(2);
}

Test(agents, dataplane_restart_keeps_the_agent_and_its_mailbox)
{
        daemon_start(NULL);
        struct kid *k = kid_start("survivor", kid_survivor, NULL);
        cr_assert_eq(kid_hear(k), 1);
        pid_t old = dataplane_pid(), now = 0;
        cr_assert_gt(old, 0, "no atomq-dataplane child of atomqd %d", (int)t.pid);
        cr_assert_eq(kill(old, SIGKILL), 0);
        kid_tell(k, 1);
        int64_t deadline = now_ms() + WAIT_MS;
        while (((now = dataplane_pid()) == 0 || now == old) && now_ms() < deadline)
                nap_ms(5);
        cr_assert(now != 0 && now != old, "atomqd did not restart the dataplane");
        uint64_t back_ms = kid_hear(k);
        cr_log_info("dataplane %d killed, %d took over; the agent's calls worked again "
                    "after %llu ms", (int)old, (int)now, (unsigned long long)back_ms);
        cr_assert_eq(kid_hear(k), 2);
        kid_join(k);
        daemon_stop();
}

/* ---- 6b. disk mailboxes: acknowledged sends survive SIGKILL -------------- */

#define DISK_SENDS 400

/* One command on the control socket; its reply (up to the empty line that
 * ends it) in out. */
static void ctl_run(const char *cmd, char *out, size_t len)
{
        struct sockaddr_un sa;
        cr_assert(sun_make(&sa, t.sock));
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0,
                  "control socket: %s", strerror(errno));
        for (int part = 0; part < 2; part++) {
                /* The banner, then the reply. */
                size_t got = 0;
                out[0] = 0;
                while (strstr(out, "\n\n") == NULL) {
                        cr_assert_lt(got + 1, len, "a reply longer than %zu bytes", len);
                        struct pollfd p = { .fd = fd, .events = POLLIN };
                        cr_assert_eq(poll(&p, 1, WAIT_MS), 1, "no reply to '%s'", cmd);
                        ssize_t n = read(fd, out + got, len - 1 - got);
                        cr_assert_gt(n, 0, "control socket closed during '%s'", cmd);
                        got += (size_t)n;
                        out[got] = 0;
                }
                if (part == 0) {
                        size_t cl = strlen(cmd);
                        cr_assert_eq(write(fd, cmd, cl), (ssize_t)cl);
                        cr_assert_eq(write(fd, "\n", 1), 1);
                }
        }
        close(fd);
}

/* Sends DISK_SENDS messages, each acknowledged, alternately to mb.batch
 * (storage disk made here: sync batch, the default) and mb.always (made
 * by the test on the control socket with sync always). */
static void kid_disk_sender(const void *arg)
{
        struct atomq_create_opts o = { .storage = ATOMQ_STORAGE_DISK, .storage_set = 1 };
        uint64_t h[2];
        (void)arg;
        struct atomq *a = kid_connect();
        KID_RC(atomq_create(a, ATOMQ_MODE_MAILBOX, "mb.batch", &o, &h[0]), 0);
        KID_RC(atomq_lookup(a, "mb.always", &h[1]), 0);
        for (uint32_t i = 0; i < DISK_SENDS; i++) {
                char m[16];
                int len = snprintf(m, sizeof(m), "d%u", i);
                uint64_t seq = UINT64_MAX;
                KID_RC(atomq_send(a, h[i % 2], NULL, NULL, m, (uint32_t)len, NULL, &seq), 0);
                KID_CHECK(seq == i / 2, "message %u acknowledged as seq %llu", i,
                          (unsigned long long)seq);
        }
        tell(1);
        hear(); /* killed with atomqd */
}

/* After the restart: both mailboxes hold every message, once, in order. */
static void kid_disk_reader(const void *arg)
{
        static const char *const names[2] = { "mb.batch", "mb.always" };
        struct atomq_batch b;
        struct atomq_delivery d;
        (void)arg;
        struct atomq *a = kid_connect();
        for (uint32_t box = 0; box < 2; box++) {
                uint64_t h;
                KID_RC(atomq_lookup(a, names[box], &h), 0);
                uint32_t next = box;
                int n;
                while ((n = atomq_fetch(a, h, NULL, 0, 64, &b)) > 0) {
                        while (atomq_batch_next(&b, &d) == 1) {
                                char m[16];
                                snprintf(m, sizeof(m), "d%u", next);
                                KID_CHECK(bytes_are(d.data, d.len, m),
                                          "%s: want %s, got " DL_FMT, names[box], m,
                                          DL_ARGS(&d));
                                KID_RC(atomq_ack(a, h, d.seq), 0);
                                next += 2;
                        }
                        atomq_batch_release(a, &b);
                }
                KID_RC(n, 0);
                KID_CHECK(next == DISK_SENDS + box, "%s: %u of %u messages came back",
                          names[box], (next - box) / 2, DISK_SENDS / 2);
        }
        tell(1);
}

/* An agent's send to a disk mailbox is answered once its record is where
 * the mailbox's sync asks (written for batch, fdatasync'ed for always):
 * atomqd and its dataplane killed right after the last answer, every
 * answered message is back when atomqd starts again on the same data. */
Test(agents, disk_sends_acknowledged_to_an_agent_survive_sigkill)
{
        char reply[512];
        daemon_start(NULL);
        ctl_run("create mailbox mb.always storage=disk sync=always", reply, sizeof(reply));
        cr_assert(strncmp(reply, "ok:", 3) == 0, "create mb.always: %s", reply);
        struct kid *k = kid_start("disk-sender", kid_disk_sender, NULL);
        cr_assert_eq(kid_hear(k), 1);
        pid_t dp = dataplane_pid();
        cr_assert_gt(dp, 0);
        cr_assert_eq(kill(dp, SIGKILL), 0);
        cr_assert_eq(kill(t.pid, SIGKILL), 0);
        cr_assert_eq(waitpid(t.pid, NULL, 0), t.pid);
        t.pid = 0;
        kid_kill9(k);
        /* The killed dataplane's io_uring may hold the log's lock a moment
         * longer: the new one waits for it. */
        daemon_run(NULL);
        struct kid *r = kid_start("disk-reader", kid_disk_reader, NULL);
        cr_assert_eq(kid_hear(r), 1);
        kid_join(r);
        daemon_stop();
}

/* ---- 7. bad input ---------------------------------------------------------- */

static void kid_bad_input(const void *arg)
{
        static const char *const bad[] = { "", "a..b", ".a", "a.", "a b", "a.*", "a.>",
                                           "a\tb" };
        struct atomq_batch b;
        uint64_t id, h;
        (void)arg;
        struct atomq *a = kid_connect();
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                KID_CHECK(atomq_publish(a, bad[i], "x", 1, NULL) == -EINVAL,
                          "publish on '%s' is refused", bad[i]);
        KID_RC(atomq_publish(a, NULL, "x", 1, NULL), -EINVAL);
        KID_RC(atomq_flush(a), 0); /* nothing was sent, so nothing failed */
        KID_RC(atomq_subscribe(a, "", NULL, 1, &id), -EINVAL);
        KID_RC(atomq_subscribe(a, "a..b", NULL, 1, &id), -EINVAL);
        KID_RC(atomq_subscribe(a, "a.b", "", 1, &id), -EINVAL);
        /* These pass the library's check and are the dataplane's to refuse:
         * '>' must end a pattern, a wildcard is a whole token. */
        KID_RC(atomq_subscribe(a, "a.>.b", NULL, 1, &id), -EINVAL);
        KID_RC(atomq_subscribe(a, "a.b*", NULL, 1, &id), -EINVAL);
        KID_RC(atomq_create(a, (enum atomq_mode)99, "x", NULL, &h), -EINVAL);
        KID_RC(atomq_unsubscribe(a, 0), -ENOENT);
        KID_RC(atomq_subscribe(a, "mine", NULL, 1, &id), 0);
        KID_RC(atomq_create(a, ATOMQ_MODE_MAILBOX, "bad.mb", NULL, &h), 0);
        KID_RC(atomq_ack(a, h, 12345), -ENOENT);
        KID_RC(atomq_ack(a, 0, 0), -EINVAL);
        KID_RC(atomq_send(a, 0, "no.such.box", NULL, "x", 1, NULL, NULL), -ENOENT);
        KID_RC(atomq_fetch(a, 0, "no.such.box", 0, 1, &b), -ENOENT);
        tell(id);
        hear(); /* another agent tried to take our subscription */
        KID_RC(atomq_unsubscribe(a, id), 0);
        KID_RC(atomq_unsubscribe(a, id), -ENOENT);
        tell(1);
}

static void kid_thief(const void *arg)
{
        (void)arg;
        struct atomq *a = kid_connect();
        uint64_t theirs = hear();
        KID_RC(atomq_unsubscribe(a, theirs), -EPERM);
        KID_RC(atomq_unsubscribe(a, theirs + 1000), -ENOENT);
        tell(1);
}

Test(agents, bad_input_gets_an_error_not_a_crash)
{
        daemon_start(NULL);
        struct kid *owner = kid_start("owner", kid_bad_input, NULL);
        struct kid *thief = kid_start("thief", kid_thief, NULL);
        kid_tell(thief, kid_hear(owner));
        cr_assert_eq(kid_hear(thief), 1);
        kid_join(thief);
        kid_tell(owner, 1);
        cr_assert_eq(kid_hear(owner), 1);
        kid_join(owner);
        daemon_stop();
}

/* ---- agents and NATS clients in one subject space ---- */

/* A free loopback port (bound, read back, released). */
static int free_port(void)
{
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        cr_assert_geq(fd, 0);
        cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
        close(fd);
        return ntohs(sa.sin_port);
}

/* Reads from fd until `want` has arrived (or WAIT_MS passed); returns the
 * bytes read so far in buf. */
static bool nats_expect(int fd, char *buf, size_t cap, const char *want)
{
        size_t got = 0;
        int64_t deadline = now_ms() + WAIT_MS;
        buf[0] = 0;
        while (strstr(buf, want) == NULL && now_ms() < deadline && got + 1 < cap) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                if (poll(&p, 1, 50) <= 0)
                        continue;
                ssize_t n = read(fd, buf + got, cap - 1 - got);
                if (n <= 0)
                        break;
                got += (size_t)n;
                buf[got] = 0;
        }
        return strstr(buf, want) != NULL;
}

static void nats_send(int fd, const char *s)
{
        cr_assert_eq(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

/* An agent that takes what a NATS client published (with its reply
 * subject) and answers on that subject. */
static void kid_mixer(const void *arg)
{
        (void)arg;
        struct atomq_delivery d;
        uint64_t id;
        struct atomq *a = kid_connect();
        KID_RC(atomq_subscribe(a, "mix.to_agent", NULL, 3, &id), 0);
        tell(1);
        KID_RECV(a, &d);
        KID_CHECK(d.sid == 3 && bytes_are(d.data, d.len, "hello"), DL_FMT, DL_ARGS(&d));
        KID_CHECK(d.reply_subject != NULL && bytes_are(d.reply_subject, d.reply_subject_len,
                                                       "mix.reply"), "reply subject");
        KID_RC(atomq_publish(a, "mix.reply", "world", 5, NULL), 0);
        KID_RC(atomq_flush(a), 0);
        tell(2);
}

Test(agents, network_clients_and_agents_share_one_subject_space)
{
        char addr[32], buf[4096];
        snprintf(addr, sizeof(addr), "127.0.0.1:%d", free_port());
        const char *extra[] = { "--nats", addr, NULL };
        daemon_start(extra);
        struct sockaddr_in sa = { .sin_family = AF_INET,
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                  .sin_port = htons((uint16_t)atoi(strchr(addr, ':') + 1)) };
        /* The workers bind their listeners as they start: retry a while. */
        int fd = -1;
        for (int64_t deadline = now_ms() + WAIT_MS; fd < 0 && now_ms() < deadline;) {
                fd = socket(AF_INET, SOCK_STREAM, 0);
                cr_assert_geq(fd, 0);
                if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
                        close(fd);
                        fd = -1;
                        nap_ms(10);
                }
        }
        cr_assert_geq(fd, 0, "nothing listens on --nats %s", addr);
        cr_assert(nats_expect(fd, buf, sizeof(buf), "INFO {"), "no INFO: %s", buf);
        nats_send(fd, "CONNECT {\"verbose\":false}\r\nSUB mix.reply 1\r\nPING\r\n");
        cr_assert(nats_expect(fd, buf, sizeof(buf), "PONG\r\n"), "no PONG: %s", buf);
        struct kid *k = kid_start("mixer", kid_mixer, NULL);
        cr_assert_eq(kid_hear(k), 1);
        nats_send(fd, "PUB mix.to_agent mix.reply 5\r\nhello\r\n");
        cr_assert_eq(kid_hear(k), 2, "the agent got the NATS client's message and answered");
        cr_assert(nats_expect(fd, buf, sizeof(buf), "MSG mix.reply 1 5\r\nworld\r\n"),
                  "the NATS client did not get the agent's answer: %s", buf);
        kid_join(k);
        close(fd);
        daemon_stop();
}

