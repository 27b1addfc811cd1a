/* mailbox_restart.c - two agents exchange work through a mailbox while the
 * consumer restarts: nothing is lost, because the mailbox outlives every
 * connection and a message stays in flight until it is acked.
 *
 *   producer     creates mailbox "jobs" (TTL 60 s), sends JOBS messages and
 *                disconnects: the mailbox lives on until its TTL.
 *   consumer 1   a separate process: fetches and acks FIRST_ACKS jobs, takes
 *                one more batch and "crashes" (exits without acking it).
 *   consumer 2   a new process: fetches and acks the rest; the jobs the
 *                first one held come again after the ack wait, flagged as
 *                redeliveries.
 *
 *      cc -o mailbox_restart mailbox_restart.c $(pkg-config --cflags --libs atomq)
 *      atomqd --control /tmp/aq.sock --ack-wait-ms 500 &
 *      ./mailbox_restart /tmp/aq.sock
 */
#include <atomq/atomq.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define JOBS 20
#define FIRST_ACKS 8      /* consumer 1 acks this many, then holds a batch */
#define TIMEOUT_S 40      /* longer than the default ack wait (30 s) */

static int fail(const char *what, int rc)
{
        fprintf(stderr, "mailbox_restart: %s: %s\n", what, atomq_strerror(rc));
        return 1;
}

static int produce(const char *path)
{
        struct atomq *a;
        uint64_t box;
        int rc = atomq_connect(path, &a);
        if (rc < 0)
                return fail("producer: connect", rc);
        struct atomq_create_opts o = { .ttl_ms = 60000 };
        rc = atomq_create(a, ATOMQ_MODE_MAILBOX, "jobs", &o, &box);
        for (int i = 0; rc == 0 && i < JOBS; i++) {
                char job[32];
                int len = snprintf(job, sizeof(job), "job-%d", i);
                rc = atomq_send(a, box, NULL, NULL, job, (uint32_t)len, NULL, NULL);
        }
        atomq_close(a); /* the mailbox stays */
        return rc < 0 ? fail("producer", rc) : 0;
}

/* Fetches from "jobs" and acks until `acks` are acked. With crash set it
 * then exits in the middle of a batch, like a crashed process. */
static int consume(const char *path, int acks, int crash)
{
        struct atomq *a;
        uint64_t box;
        int acked = 0, again = 0, rc = atomq_connect(path, &a);
        if (rc < 0)
                return fail("consumer: connect", rc);
        if ((rc = atomq_lookup(a, "jobs", &box)) < 0)
                return fail("consumer: lookup", rc);
        time_t give_up = time(NULL) + TIMEOUT_S;
        while ((acked < acks || crash) && time(NULL) < give_up) {
                struct atomq_batch b;
                struct atomq_delivery d;
                uint64_t seq[4];
                int n = 0;
                if ((rc = atomq_fetch(a, box, NULL, 0, 4, &b)) < 0)
                        return fail("consumer: fetch", rc);
                if (rc == 0) {
                        usleep(10000); /* nothing due yet: held jobs come back later */
                        continue;
                }
                /* The batch is borrowed until the next call: read it first. */
                while (atomq_batch_next(&b, &d) == 1) {
                        seq[n++] = d.seq;
                        again += (d.flags & ATOMQ_DELIVERY_F_REDELIVERY) != 0;
                }
                for (int i = 0; i < n; i++) {
                        if (acked == acks && crash) {
                                printf("consumer 1: acked %d, crashing with %d held\n", acked,
                                       n - i);
                                fflush(stdout);
                                _exit(0); /* no acks, no close: a crash */
                        }
                        if ((rc = atomq_ack(a, box, seq[i])) < 0)
                                return fail("consumer: ack", rc);
                        acked++;
                }
        }
        printf("consumer %d: acked %d jobs, %d of them redelivered\n", crash ? 1 : 2, acked,
               again);
        fflush(stdout); /* the caller leaves with _exit */
        atomq_close(a);
        return acked == acks ? 0 : 1;
}

static int run_child(const char *path, int acks, int crash)
{
        pid_t pid = fork();
        if (pid == 0)
                _exit(consume(path, acks, crash));
        int status;
        if (pid < 0 || waitpid(pid, &status, 0) != pid)
                return 1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int main(int argc, char **argv)
{
        const char *path = argc > 1 ? argv[1] : NULL; /* NULL: $ATOMQ_CONTROL */
        if (produce(path) != 0 || run_child(path, FIRST_ACKS, 1) != 0 ||
            run_child(path, JOBS - FIRST_ACKS, 0) != 0)
                return 1;
        /* Clean up: nothing may be left in the mailbox. */
        struct atomq *a;
        struct atomq_batch b;
        int rc = atomq_connect(path, &a);
        if (rc == 0)
                rc = atomq_fetch(a, 0, "jobs", 0, 1, &b);
        if (rc != 0)
                return rc < 0 ? fail("check", rc) : (fprintf(stderr, "jobs left over\n"), 1);
        rc = atomq_destroy(a, 0, "jobs");
        atomq_close(a);
        printf("all %d jobs done once each, none lost\n", JOBS);
        return rc < 0 ? fail("destroy", rc) : 0;
}
