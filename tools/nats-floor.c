/* nats-floor.c - the least a NATS server can do for `atomq-bench nats
 * reqrep`: a yardstick for latency, not a server.
 *
 * One thread, blocking epoll, no routing beyond a list of subscriptions
 * compared byte by byte: it speaks INFO, CONNECT, PING/PONG, SUB (an exact
 * subject, or one ending in ".*" that takes one more token), UNSUB and PUB,
 * and writes each publish as MSG to every matching subscription at once
 * with one write(2). What a request/reply round trip costs through it is
 * the loopback TCP stack, the wake-ups of the two client threads and its
 * own epoll wake-up: the floor that any server on this host sits on. With
 * --spin it polls epoll without sleeping, as a busy-polling server does, so
 * its own wake-up drops out too.
 *
 *      nats-floor [--spin] 127.0.0.1:4444 &
 *      atomq-bench nats reqrep --url nats://127.0.0.1:4444,nats://127.0.0.1:4222
 *
 * Not for anything else: no limits beyond fixed buffers (a connection that
 * overflows one is closed), no authentication, no queue groups, no
 * headers, no flow control (writes block).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define FLOOR_CONNS 64
#define FLOOR_SUBS 256
#define FLOOR_RBUF (256u << 10)
#define FLOOR_SUBJECT 128

struct floor_conn {
        int fd;
        size_t have;
        char rbuf[FLOOR_RBUF];
};

struct floor_sub {
        int conn;                 /* index in conns, -1: free */
        char sid[32];
        char subject[FLOOR_SUBJECT];
        size_t len;
        bool wild;                /* subject ends in ".*": one more token */
};

static struct floor_conn conns[FLOOR_CONNS];
static struct floor_sub subs[FLOOR_SUBS];

static const char floor_info[] =
        "INFO {\"server_id\":\"nats-floor\",\"version\":\"0.0.0\",\"proto\":1,"
        "\"headers\":false,\"max_payload\":1048576}\r\n";

static int floor_write(int fd, const char *p, size_t len)
{
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -1;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

static bool floor_match(const struct floor_sub *s, const char *subj, size_t len)
{
        if (!s->wild)
                return len == s->len && memcmp(subj, s->subject, len) == 0;
        /* "a.b.*": the prefix "a.b." and one token without a dot after it. */
        size_t pre = s->len - 1;
        return len > pre && memcmp(subj, s->subject, pre) == 0 &&
               memchr(subj + pre, '.', len - pre) == NULL;
}

static void floor_close(int ci)
{
        close(conns[ci].fd);
        conns[ci].fd = -1;
        for (int i = 0; i < FLOOR_SUBS; i++)
                if (subs[i].conn == ci)
                        subs[i].conn = -1;
}

/* Splits a control line into at most 4 words. */
static int floor_words(char *line, char *w[4])
{
        int n = 0;
        for (char *t = strtok(line, " \t"); t != NULL && n < 4; t = strtok(NULL, " \t"))
                w[n++] = t;
        return n;
}

static int floor_sub(int ci, char *w[4], int n)
{
        if (n < 3 || strlen(w[1]) >= FLOOR_SUBJECT || strlen(w[n - 1]) >= sizeof(subs[0].sid))
                return -1;
        for (int i = 0; i < FLOOR_SUBS; i++) {
                struct floor_sub *s = &subs[i];
                if (s->conn >= 0)
                        continue;
                s->conn = ci;
                s->len = strlen(w[1]);
                memcpy(s->subject, w[1], s->len + 1);
                strcpy(s->sid, w[n - 1]);
                s->wild = s->len >= 2 && strcmp(s->subject + s->len - 2, ".*") == 0;
                return 0;
        }
        return -1;
}

/* PUB subject [reply] size, then size bytes and CRLF at body. */
static int floor_pub(char *w[4], int n, const char *body, size_t size)
{
        const char *subj = w[1];
        size_t slen = strlen(subj);
        const char *reply = n == 4 ? w[2] : NULL;
        char out[FLOOR_RBUF + 512];
        for (int i = 0; i < FLOOR_SUBS; i++) {
                const struct floor_sub *s = &subs[i];
                if (s->conn < 0 || !floor_match(s, subj, slen))
                        continue;
                int h = snprintf(out, 512, "MSG %s %s%s%s %zu\r\n", subj, s->sid,
                                 reply != NULL ? " " : "", reply != NULL ? reply : "", size);
                memcpy(out + h, body, size + 2);
                if (floor_write(conns[s->conn].fd, out, (size_t)h + size + 2) < 0)
                        floor_close(s->conn);
        }
        return 0;
}

/* Handles every whole op in the connection's buffer; -1 closes it. */
static int floor_parse(int ci)
{
        struct floor_conn *c = &conns[ci];
        size_t at = 0;
        for (;;) {
                char *line = c->rbuf + at;
                char *crlf = memmem(line, c->have - at, "\r\n", 2);
                if (crlf == NULL)
                        break;
                size_t llen = (size_t)(crlf - line);
                char copy[1024];
                if (llen >= sizeof(copy))
                        return -1;
                memcpy(copy, line, llen);
                copy[llen] = '\0';
                char *w[4];
                int n = floor_words(copy, w);
                size_t next = at + llen + 2;
                if (n == 0) {
                        at = next;
                        continue;
                }
                if (strcasecmp(w[0], "PUB") == 0) {
                        if (n < 3)
                                return -1;
                        size_t size = strtoul(w[n - 1], NULL, 10);
                        if (size > FLOOR_RBUF - 1024)
                                return -1;
                        if (c->have - next < size + 2)
                                break;                  /* the body is not all in */
                        floor_pub(w, n, c->rbuf + next, size);
                        next += size + 2;
                } else if (strcasecmp(w[0], "PING") == 0) {
                        if (floor_write(c->fd, "PONG\r\n", 6) < 0)
                                return -1;
                } else if (strcasecmp(w[0], "SUB") == 0) {
                        if (floor_sub(ci, w, n) < 0)
                                return -1;
                } else if (strcasecmp(w[0], "UNSUB") == 0) {
                        for (int i = 0; n >= 2 && i < FLOOR_SUBS; i++)
                                if (subs[i].conn == ci && strcmp(subs[i].sid, w[1]) == 0)
                                        subs[i].conn = -1;
                }
                /* CONNECT, PONG and anything else: nothing to answer. */
                at = next;
        }
        memmove(c->rbuf, c->rbuf + at, c->have - at);
        c->have -= at;
        return c->have == FLOOR_RBUF ? -1 : 0;
}

static int floor_listen(const char *addr)
{
        char host[64];
        const char *colon = strrchr(addr, ':');
        if (colon == NULL || (size_t)(colon - addr) >= sizeof(host))
                return -1;
        memcpy(host, addr, (size_t)(colon - addr));
        host[colon - addr] = '\0';
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1)) };
        if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
                return -1;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0)
                return -1;
        return fd;
}

int main(int argc, char **argv)
{
        static const char usage[] = "usage: nats-floor [--spin] HOST:PORT\n"
                                    "a yardstick for atomq-bench nats reqrep (see the source)\n";
        if (argc == 2 && strcmp(argv[1], "--help") == 0) {
                fputs(usage, stdout);
                return 0;
        }
        bool spin = argc == 3 && strcmp(argv[1], "--spin") == 0;
        if (argc != 2 + spin) {
                fputs(usage, stderr);
                return 2;
        }
        int lfd = floor_listen(argv[argc - 1]);
        int ep = epoll_create1(EPOLL_CLOEXEC);
        if (lfd < 0 || ep < 0) {
                perror("nats-floor: listen");
                return 1;
        }
        for (int i = 0; i < FLOOR_CONNS; i++)
                conns[i].fd = -1;
        for (int i = 0; i < FLOOR_SUBS; i++)
                subs[i].conn = -1;
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = FLOOR_CONNS };
        epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
        for (;;) {
                struct epoll_event evs[16];
                int n = epoll_wait(ep, evs, 16, spin ? 0 : -1);
                for (int k = 0; k < n; k++) {
                        uint32_t ci = evs[k].data.u32;
                        if (ci == FLOOR_CONNS) {
                                int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                                int slot = 0;
                                while (slot < FLOOR_CONNS && conns[slot].fd >= 0)
                                        slot++;
                                if (fd < 0)
                                        continue;
                                int one = 1;
                                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                                if (slot == FLOOR_CONNS ||
                                    floor_write(fd, floor_info, sizeof(floor_info) - 1) < 0) {
                                        close(fd);
                                        continue;
                                }
                                conns[slot].fd = fd;
                                conns[slot].have = 0;
                                struct epoll_event cev = { .events = EPOLLIN, .data.u32 = (uint32_t)slot };
                                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                                continue;
                        }
                        struct floor_conn *c = &conns[ci];
                        if (c->fd < 0)
                                continue;
                        ssize_t r = read(c->fd, c->rbuf + c->have, FLOOR_RBUF - c->have);
                        if (r <= 0 || (c->have += (size_t)r, floor_parse((int)ci) < 0))
                                floor_close((int)ci);
                }
        }
}
