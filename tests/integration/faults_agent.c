/* faults_agent.c - a libatomq agent driven one command a line on stdin, for
 * tests/integration/faults_test.py: the test makes it take a delivery or a
 * fetched batch and keep it borrowed, then stops it with SIGSTOP, floods
 * it, lets it go on with SIGCONT or kills it, and asks it what it saw.
 *
 *     faults_agent CONTROL-SOCKET
 *     > sub faults.> 7            ok 1099511627777
 *     > recv_hold 1000            ok 7 5 hello     (sid, length, payload; kept borrowed)
 *     > fetch_hold jobs 8         ok 3 0 1 2      (count, seqs; the batch kept borrowed)
 *     > drain 200                 ok 412           (deliveries until 200 ms pass without one)
 *     > dropped                   ok 96            (atomq_dropped)
 *
 * Every command is answered with one line, "ok ..." or "err RC TEXT", so
 * the test always reads exactly one line per command. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <atomq/atomq.h>

#define MS 1000000ll

/* The payload's first bytes, printable, for the test to compare. */
static void print_data(const void *data, uint32_t len)
{
        const unsigned char *p = data;
        uint32_t n = len < 64 ? len : 64;
        for (uint32_t i = 0; i < n; i++)
                putchar(p[i] > ' ' && p[i] < 127 ? p[i] : '_');
}

static void err(int rc)
{
        printf("err %d %s\n", rc, atomq_strerror(rc));
}

/* "ok" (with u when has_u), or the error. */
static void answer(int rc, int has_u, uint64_t u)
{
        if (rc < 0)
                err(rc);
        else if (has_u)
                printf("ok %llu\n", (unsigned long long)u);
        else
                printf("ok\n");
}

/* Takes deliveries, releasing each, until none came for quiet_ms. */
static void drain(struct atomq *a, long quiet_ms)
{
        struct atomq_delivery d;
        uint64_t n = 0;
        int rc;
        while ((rc = atomq_recv(a, &d, quiet_ms * MS)) == 1)
                n++;
        atomq_release(a);
        if (rc != -ETIMEDOUT && rc != -EAGAIN)
                err(rc);
        else
                printf("ok %llu\n", (unsigned long long)n);
}

static void fetch_hold(struct atomq *a, struct atomq_batch *b, const char *name, unsigned max)
{
        struct atomq_delivery d;
        int n = atomq_fetch(a, 0, name, 0, max, b);
        if (n < 0) {
                err(n);
                return;
        }
        printf("ok %d", n);
        while (atomq_batch_next(b, &d) == 1)
                printf(" %llu", (unsigned long long)d.seq);
        putchar('\n');
        /* Not released: the batch stays borrowed until the next call. */
}

static int run(struct atomq *a, char *line)
{
        char cmd[32] = "", s1[256] = "", s2[256] = "";
        long n = 0;
        uint64_t u = 0;
        struct atomq_delivery d;
        static struct atomq_batch b;
        int rc;
        if (sscanf(line, "%31s %255s %255s", cmd, s1, s2) < 1)
                return 0;
        if (strcmp(cmd, "sub") == 0) {
                rc = atomq_subscribe(a, s1, NULL, (uint32_t)strtoul(s2, NULL, 10), &u);
                answer(rc, 1, u);
        } else if (strcmp(cmd, "recv_hold") == 0) {
                rc = atomq_recv(a, &d, strtol(s1, NULL, 10) * MS);
                if (rc != 1) {
                        err(rc);
                } else {
                        printf("ok %u %u ", d.sid, d.len);
                        print_data(d.data, d.len);
                        putchar('\n');
                }
        } else if (strcmp(cmd, "fetch_hold") == 0) {
                fetch_hold(a, &b, s1, (unsigned)strtoul(s2, NULL, 10));
        } else if (strcmp(cmd, "ack") == 0) {
                rc = atomq_lookup(a, s1, &u);
                if (rc == 0)
                        rc = atomq_ack(a, u, strtoull(s2, NULL, 10));
                answer(rc, 0, 0);
        } else if (strcmp(cmd, "drain") == 0) {
                n = strtol(s1, NULL, 10);
                drain(a, n);
        } else if (strcmp(cmd, "dropped") == 0) {
                printf("ok %llu\n", (unsigned long long)atomq_dropped(a));
        } else if (strcmp(cmd, "publish") == 0) {
                rc = atomq_publish(a, s1, s2, (uint32_t)strlen(s2), NULL);
                if (rc == 0)
                        rc = atomq_flush(a);
                answer(rc, 0, 0);
        } else if (strcmp(cmd, "send") == 0) {
                rc = atomq_send(a, 0, s1, NULL, s2, (uint32_t)strlen(s2), NULL, &u);
                answer(rc, 1, u);
        } else if (strcmp(cmd, "quit") == 0) {
                printf("ok\n");
                return 1;
        } else {
                printf("err %d unknown command\n", -EINVAL);
        }
        return 0;
}

int main(int argc, char **argv)
{
        struct atomq *a;
        char line[1024];
        if (argc != 2) {
                fprintf(stderr, "usage: faults_agent CONTROL-SOCKET\n");
                return 2;
        }
        setvbuf(stdout, NULL, _IOLBF, 0);
        int rc = atomq_connect(argv[1], &a);
        if (rc < 0) {
                printf("err %d %s\n", rc, atomq_strerror(rc));
                return 1;
        }
        atomq_set_timeout(a, 5000 * MS);
        printf("ok connected\n");
        while (fgets(line, sizeof(line), stdin) != NULL)
                if (run(a, line))
                        break;
        atomq_close(a);
        return 0;
}
