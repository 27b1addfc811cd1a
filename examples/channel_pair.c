/* channel_pair.c - two processes talking over a direct atomq channel.
 *
 * The parent creates the channel (end 0) and forks; the child inherits the
 * memfd and attaches it (end 1). A real pair of agents would pass the
 * descriptor over a unix socket with SCM_RIGHTS instead of fork.
 *
 *      cc -o channel_pair channel_pair.c $(pkg-config --cflags --libs atomq)
 *      ./channel_pair
 */
#include <atomq/atomq.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PINGS 5
#define TIMEOUT_NS 2000000000LL /* 2 s: a silent peer is an error, not a hang */

/* The child: echoes every message back until the parent closes. */
static int echo(int fd)
{
        struct atomq_channel ch;
        int rc = atomq_channel_attach(&ch, fd);
        if (rc < 0) {
                fprintf(stderr, "attach: %s\n", atomq_strerror(rc));
                return 1;
        }
        struct atomq_msg m;
        while ((rc = atomq_channel_recv_wait(&ch, &m, TIMEOUT_NS)) == 1) {
                /* m.data points into the ring: send from it, then release. */
                rc = atomq_channel_send_wait(&ch, m.data, m.len, TIMEOUT_NS);
                atomq_channel_release(&ch);
                if (rc < 0)
                        break;
        }
        atomq_channel_close(&ch);
        return rc == -EPIPE ? 0 : 1; /* -EPIPE: the parent closed, all read */
}

int main(void)
{
        struct atomq_channel ch;
        int rc = atomq_channel_create(&ch, 0); /* 0: 64 KiB each way */
        if (rc < 0) {
                fprintf(stderr, "create: %s\n", atomq_strerror(rc));
                return 1;
        }
        pid_t pid = fork();
        if (pid == 0)
                _exit(echo(atomq_channel_fd(&ch)));
        for (int i = 0; i < PINGS && pid > 0; i++) {
                char buf[32];
                int len = snprintf(buf, sizeof(buf), "ping %d", i);
                struct atomq_msg m;
                rc = atomq_channel_send(&ch, buf, (uint32_t)len + 1);
                if (rc == 0)
                        rc = atomq_channel_recv_wait(&ch, &m, TIMEOUT_NS);
                if (rc != 1) {
                        fprintf(stderr, "ping %d: %s\n", i, atomq_strerror(rc));
                        break;
                }
                printf("echo: %s\n", (const char *)m.data);
                atomq_channel_release(&ch);
        }
        atomq_channel_close(&ch); /* the child's recv_wait now gives -EPIPE */
        int status = 1;
        if (pid > 0)
                waitpid(pid, &status, 0);
        return rc == 1 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
