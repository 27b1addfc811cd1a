/* bench_control.c - churn through atomqd's control socket (path control).
 *
 *      atomq-bench churn --path control --control /run/atomq/control.sock \
 *              --entities 1000000 --json
 *
 * Against a running atomqd: one `create mailboxes PREFIX N` and one
 * `destroy prefix PREFIX` per run, timed from the client's side (from
 * writing the command to reading the whole reply), so the figures include
 * the socket, atomqd's batching into the workers' command rings and the
 * workers' completions. The reply's own counts are checked: a run that
 * created or destroyed fewer than N counts as an error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "bench/bench_report.h"
#include "bench/bench_scenario.h"
#include "shm/shm_clock.h"

#define BENCH_CTL_REPLY_MAX 65536

struct bench_ctl {
        int fd;
        char buf[BENCH_CTL_REPLY_MAX];
};

/* Reads up to the empty line that ends every reply. Returns its length or
 * -errno (-EMSGSIZE for a reply larger than the buffer). */
static int bench_ctl_reply(struct bench_ctl *c)
{
        size_t len = 0;
        for (;;) {
                if (len >= sizeof(c->buf) - 1)
                        return -EMSGSIZE;
                ssize_t n = read(c->fd, c->buf + len, sizeof(c->buf) - 1 - len);
                if (n <= 0)
                        return n == 0 ? -ECONNRESET : -errno;
                len += (size_t)n;
                c->buf[len] = '\0';
                if (len >= 2 && strcmp(c->buf + len - 2, "\n\n") == 0)
                        return (int)len;
        }
}

static int bench_ctl_open(struct bench_ctl *c, const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                return -errno;
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
                int rc = -errno;
                close(c->fd);
                return rc;
        }
        int rc = bench_ctl_reply(c);     /* the greeting */
        return rc < 0 ? rc : 0;
}

/* Sends one command and times it to the end of its reply; the reply's
 * number under key goes to *count (0 when missing or "ok" is not true). */
static int bench_ctl_timed(struct bench_ctl *c, const char *cmd, const char *key,
                           double *elapsed_s, uint64_t *count)
{
        char pat[64];
        uint64_t t0_ns = shm_clock_ns();
        size_t len = strlen(cmd);
        if (write(c->fd, cmd, len) != (ssize_t)len)
                return -EIO;
        int rc = bench_ctl_reply(c);
        *elapsed_s = (double)(shm_clock_ns() - t0_ns) / 1e9;
        if (rc < 0)
                return rc;
        snprintf(pat, sizeof(pat), "\"%s\":", key);
        const char *at = strstr(c->buf, pat);
        *count = strstr(c->buf, "\"ok\":true") && at ? strtoull(at + strlen(pat), NULL, 10) : 0;
        return 0;
}

/* One N: --runs creates and destroys; medians into one result. */
static int bench_ctl_case(const struct bench_opts *o, struct bench_ctl *c, uint32_t n,
                          struct bench_report *rep)
{
        double create_s[BENCH_RUNS_MAX], destroy_s[BENCH_RUNS_MAX];
        uint64_t errors = 0, got;
        char cmd[160], prefix[64];
        /* Short, as the table path's churn.<i>: names under 16 bytes take one
         * unit of the name heap. */
        snprintf(prefix, sizeof(prefix), "ch%d.", (int)getpid() % 100000);
        for (unsigned r = 0; r < o->runs; r++) {
                snprintf(cmd, sizeof(cmd), "json create mailboxes %s %u\n", prefix, n);
                int rc = bench_ctl_timed(c, cmd, "created", &create_s[r], &got);
                if (rc != 0)
                        return rc;
                if (got != n)
                        fprintf(stderr, "atomq-bench: created %llu of %u: %.200s\n",
                                (unsigned long long)got, n, c->buf);
                errors += got != n;
                snprintf(cmd, sizeof(cmd), "json destroy prefix %s\n", prefix);
                rc = bench_ctl_timed(c, cmd, "destroyed", &destroy_s[r], &got);
                if (rc != 0)
                        return rc;
                if (got != n)
                        fprintf(stderr, "atomq-bench: destroyed %llu of %u: %.200s\n",
                                (unsigned long long)got, n, c->buf);
                errors += got != n;
                if (!o->quiet)
                        fprintf(stderr, "churn control %u run %u: create %.3f s, destroy %.3f s\n",
                                n, r + 1, create_s[r], destroy_s[r]);
        }
        struct bench_result *res = bench_report_add(rep, "atomq", "churn", "control");
        if (res == NULL)
                return -ENOSPC;
        res->runs = o->runs;
        res->no_msgs = true;
        res->fixed_work = true;
        res->errors = errors;
        res->cpu_share = 1.0;
        double cs = bench_median_f64(create_s, o->runs), ds = bench_median_f64(destroy_s, o->runs);
        bench_result_str(res, "path", "control");
        bench_result_u64(res, "entities", n);
        bench_result_rate(res, "creates_per_s", n / cs);
        bench_result_rate(res, "destroys_per_s", n / ds);
        bench_result_f64(res, "create_s", cs);
        bench_result_f64(res, "destroy_s", ds);
        return 0;
}

int bench_churn_control(const struct bench_opts *o, struct bench_progress *pg,
                        struct bench_report *rep)
{
        static struct bench_ctl c;
        (void)pg;
        if (o->control_path == NULL) {
                fprintf(stderr, "atomq-bench: churn --path control needs --control PATH "
                        "(the socket of a running atomqd)\n");
                return -EINVAL;
        }
        int rc = bench_ctl_open(&c, o->control_path);
        if (rc != 0) {
                fprintf(stderr, "atomq-bench: --control %s: %s\n", o->control_path,
                        strerror(-rc));
                return rc;
        }
        unsigned cases = o->entities_n ? o->entities_n : 1;
        for (unsigned i = 0; i < cases && rc == 0; i++)
                rc = bench_ctl_case(o, &c, o->entities_n ? o->entities[i] : 1000000, rep);
        close(c.fd);
        return rc;
}
