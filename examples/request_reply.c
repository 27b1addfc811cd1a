/* request_reply.c - a responder agent and a requester agent.
 *
 * The responder (a child process) subscribes to "svc.upper" and answers
 * each request with its payload in upper case. The requester sends three
 * requests and waits for each reply, then shows the two other outcomes a
 * request can have: nobody listening ("no responders", status 503, at
 * once) and a responder that never answers (status 408 after the timeout).
 *
 *      cc -o request_reply request_reply.c $(pkg-config --cflags --libs atomq)
 *      atomqd --control /tmp/aq.sock --workers 1 &
 *      ./request_reply /tmp/aq.sock
 */
#include <atomq/atomq.h>
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SECOND_NS 1000000000LL

static int fail(const char *what, int rc)
{
        fprintf(stderr, "request_reply: %s: %s\n", what, atomq_strerror(rc));
        return 1;
}

/* Answers requests on svc.upper until its parent goes; ignores svc.slow. */
static int respond(const char *path, int ready)
{
        struct atomq *a;
        struct atomq_delivery d;
        int rc = atomq_connect(path, &a);
        if (rc == 0)
                rc = atomq_subscribe(a, "svc.upper", NULL, 1, NULL);
        if (rc == 0)
                rc = atomq_subscribe(a, "svc.slow", NULL, 2, NULL);
        if (rc < 0)
                return fail("responder", rc);
        (void)!write(ready, "r", 1);
        while ((rc = atomq_recv(a, &d, 10 * SECOND_NS)) == 1) {
                if (d.sid != 1)
                        continue; /* svc.slow: never answered */
                char up[256];
                uint32_t n = d.len < sizeof(up) ? d.len : sizeof(up);
                for (uint32_t i = 0; i < n; i++)
                        up[i] = (char)toupper(((const unsigned char *)d.data)[i]);
                if ((rc = atomq_reply(a, &d, up, n)) < 0)
                        return fail("reply", rc);
        }
        atomq_close(a);
        return 0;
}

/* One request; prints what came back. Returns the status (0: a reply). */
static int ask(struct atomq *a, const char *subject, const char *text, uint32_t timeout_ms)
{
        uint64_t inbox;
        struct atomq_delivery d;
        int n = atomq_request(a, subject, text, (uint32_t)strlen(text), timeout_ms, 7, &inbox);
        if (n < 0)
                return fail("request", n);
        int rc = atomq_recv(a, &d, 5 * SECOND_NS);
        if (rc != 1)
                return fail("waiting for the reply", rc);
        if (d.status != 0) {
                printf("%s \"%s\": status %u (%s)\n", subject, text, d.status,
                       d.status == 503 ? "no responders" : "timed out");
                return d.status;
        }
        printf("%s \"%s\" -> \"%.*s\" (responders reached: %d)\n", subject, text, (int)d.len,
               (const char *)d.data, n);
        return 0;
}

int main(int argc, char **argv)
{
        const char *path = argc > 1 ? argv[1] : NULL;
        struct atomq *a;
        int ready[2], rc = 0;
        if (pipe(ready) != 0)
                return 1;
        /* Nobody listens yet: no responders, answered at once. */
        if ((rc = atomq_connect(path, &a)) < 0)
                return fail("connect", rc);
        if (ask(a, "svc.upper", "anyone?", 1000) != 503)
                return 1;
        pid_t pid = fork();
        if (pid == 0)
                _exit(respond(path, ready[1]));
        char c;
        if (pid < 0 || read(ready[0], &c, 1) != 1)
                return 1;
        const char *words[] = { "hello", "shared", "memory" };
        for (int i = 0; i < 3 && rc == 0; i++)
                rc = ask(a, "svc.upper", words[i], 1000);
        /* Someone listens but never answers: the inbox times out. */
        if (rc == 0 && ask(a, "svc.slow", "are you there?", 200) != 408)
                rc = 1;
        atomq_close(a);
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        return rc;
}
