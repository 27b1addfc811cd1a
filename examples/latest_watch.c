/* latest_watch.c - a latest-value entity: one value per key, read with get
 * and pushed to watchers as it changes.
 *
 * The publisher keeps "config" (mode latest) with a key per setting. A
 * watcher (a separate process) reads the current value with get, then
 * watches the entity and prints every change until it sees the last one.
 *
 *      cc -o latest_watch latest_watch.c $(pkg-config --cflags --libs atomq)
 *      atomqd --control /tmp/aq.sock &
 *      ./latest_watch /tmp/aq.sock
 */
#include <atomq/atomq.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SECOND_NS 1000000000LL
#define UPDATES 5

static int fail(const char *what, int rc)
{
        fprintf(stderr, "latest_watch: %s: %s\n", what, atomq_strerror(rc));
        return 1;
}

static int put(struct atomq *a, uint64_t h, const char *key, const char *value)
{
        return atomq_send(a, h, NULL, key, value, (uint32_t)strlen(value), NULL, NULL);
}

/* Reads the value under key now: get answers with the stored message. */
static int show(struct atomq *a, uint64_t h, const char *key)
{
        struct atomq_batch b;
        struct atomq_delivery d;
        int rc = atomq_get(a, h, key, &b);
        if (rc == -ENOENT) {
                printf("watcher: %s is not set\n", key);
                return 0;
        }
        if (rc < 0 || atomq_batch_next(&b, &d) != 1)
                return fail("get", rc < 0 ? rc : -EPROTO);
        printf("watcher: %s = %.*s (get)\n", key, (int)d.len, (const char *)d.data);
        return 0;
}

static int watch(const char *path, int ready)
{
        struct atomq *a;
        struct atomq_delivery d;
        uint64_t h;
        int rc = atomq_connect(path, &a);
        if (rc == 0)
                rc = atomq_lookup(a, "config", &h);
        if (rc < 0)
                return fail("watcher", rc);
        if (show(a, h, "config.rate") != 0)
                return 1;
        /* A watcher is told of each value as it is stored (sid 5). */
        if ((rc = atomq_watch(a, h, NULL, 5, 0, 0)) < 0)
                return fail("watch", rc);
        (void)!write(ready, "w", 1);
        while ((rc = atomq_recv(a, &d, 5 * SECOND_NS)) == 1) {
                printf("watcher: %.*s = %.*s (sid %u, seq %llu)\n", (int)d.subject_len,
                       d.subject, (int)d.len, (const char *)d.data, d.sid,
                       (unsigned long long)d.seq);
                if (d.len == 4 && memcmp(d.data, "done", 4) == 0)
                        break;
        }
        atomq_close(a);
        fflush(stdout); /* the caller leaves with _exit */
        return rc == 1 ? 0 : fail("recv", rc);
}

int main(int argc, char **argv)
{
        const char *path = argc > 1 ? argv[1] : NULL;
        struct atomq *a;
        uint64_t h;
        int ready[2], status;
        char c, v[16];
        if (pipe(ready) != 0)
                return 1;
        int rc = atomq_connect(path, &a);
        if (rc == 0)
                rc = atomq_create(a, ATOMQ_MODE_LATEST, "config", NULL, &h);
        if (rc == 0)
                rc = put(a, h, "config.rate", "100");
        if (rc < 0)
                return fail("publisher", rc);
        pid_t pid = fork();
        if (pid == 0)
                _exit(watch(path, ready[1]));
        if (pid < 0 || read(ready[0], &c, 1) != 1)
                return 1;
        for (int i = 1; i <= UPDATES && rc == 0; i++) {
                snprintf(v, sizeof(v), "%d", 100 + i * 10);
                rc = put(a, h, "config.rate", v);
        }
        if (rc == 0)
                rc = put(a, h, "config.state", "done");
        if (rc < 0)
                return fail("put", rc);
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return 1;
        rc = atomq_destroy(a, h, NULL);
        atomq_close(a);
        return rc < 0 ? fail("destroy", rc) : 0;
}
