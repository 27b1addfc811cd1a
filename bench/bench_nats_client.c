/* bench_nats_client.c - the tiny blocking NATS client of scenario "nats"
 * (bench_nats_pvt.h): connect and handshake, buffered writes, and a parser
 * of what servers send (INFO, MSG, HMSG, PING, PONG, +OK, -ERR).
 *
 *      struct bench_nats_conn c;
 *      bench_nats_conn_open(&c, &server);   INFO, CONNECT, PING -> PONG
 *      bench_nats_sub(&c, "bench.x", NULL, 1);
 *      bench_nats_sync(&c);                 the SUB is in place
 *      while (...) bench_nats_poll(&c);     c.msgs counts deliveries
 *
 * Everything the server sends is input from the network: it is checked
 * and turned into -EPROTO with a reason in c->err, never asserted on.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench/bench_nats_pvt.h"
#include "shm/shm_base.h"
#include "shm/shm_clock.h"

/* What real clients send; "headers" and "no_responders" ask for the
 * status message 503 when a request has no responder, so reqrep fails
 * fast instead of timing out. */
static const char bench_nats_connect_line[] =
        "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,"
        "\"no_responders\":true,\"echo\":true,\"lang\":\"c\","
        "\"version\":\"atomq-bench\",\"protocol\":1,\"name\":\"atomq-bench\"}\r\n";

/* MSG has 3 or 4 arguments, HMSG 4 or 5. */
#define BENCH_NATS_ARGS_MAX 5u
/* A payload size with more digits than this is not one we could take. */
#define BENCH_NATS_SIZE_DIGITS_MAX 10u
#define BENCH_NATS_PAYLOAD_MAX (64ull << 20)

int bench_nats_url_parse(struct bench_nats_server *s, const char *url)
{
        memset(s, 0, sizeof(*s));
        size_t len = strlen(url);
        if (len == 0 || len >= sizeof(s->url) || strchr(url, '@') != NULL)
                return -EINVAL;
        memcpy(s->url, url, len + 1);
        const char *p = strncmp(url, "nats://", 7) == 0 ? url + 7 : url;
        const char *host = p, *port = NULL;
        size_t host_len;
        if (*p == '[') {
                const char *end = strchr(p, ']');
                if (end == NULL || (end[1] != '\0' && end[1] != ':'))
                        return -EINVAL;
                host = p + 1;
                host_len = (size_t)(end - host);
                port = end[1] == ':' ? end + 2 : NULL;
        } else {
                const char *colon = strrchr(p, ':');
                host_len = colon != NULL ? (size_t)(colon - p) : strlen(p);
                port = colon != NULL ? colon + 1 : NULL;
        }
        if (host_len == 0 || host_len >= sizeof(s->host))
                return -EINVAL;
        memcpy(s->host, host, host_len);
        s->host[host_len] = '\0';
        if (port == NULL)
                port = BENCH_NATS_PORT_DEFAULT;
        char *end;
        errno = 0;
        unsigned long v = strtoul(port, &end, 10);
        if (end == port || *end != '\0' || errno != 0 || v == 0 || v > 65535 || *port == '+' ||
            *port == '-')
                return -EINVAL;
        snprintf(s->port, sizeof(s->port), "%lu", v);
        /* Until a server answers, it is known by its address. */
        snprintf(s->system, sizeof(s->system), "%.*s", (int)(sizeof(s->system) - 1), p);
        return 0;
}

/* Blocking again after the connect, with timeouts so no call sleeps for
 * longer than BENCH_NATS_IO_TIMEOUT_MS; no Nagle delay on the small
 * writes of reqrep. */
static int bench_nats_sock_setup(int fd)
{
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0)
                return -errno;
        int one = 1;
        struct timeval tv = { .tv_sec = 0, .tv_usec = BENCH_NATS_IO_TIMEOUT_MS * 1000 };
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0)
                return -errno;
        return 0;
}

/* One address: a non-blocking connect bounded by
 * BENCH_NATS_CONNECT_TIMEOUT_MS. The socket, or -errno. */
static int bench_nats_connect_one(const struct addrinfo *ai)
{
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        ai->ai_protocol);
        if (fd < 0)
                return -errno;
        int rc = 0;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
                rc = -errno;
                if (rc == -EINPROGRESS) {
                        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
                        int n = poll(&pfd, 1, BENCH_NATS_CONNECT_TIMEOUT_MS);
                        int err = 0;
                        socklen_t err_len = sizeof(err);
                        if (n == 0)
                                rc = -ETIMEDOUT;
                        else if (n < 0 ||
                                 getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0)
                                rc = -errno;
                        else
                                rc = -err;
                }
        }
        if (rc == 0)
                rc = bench_nats_sock_setup(fd);
        if (rc != 0) {
                close(fd);
                return rc;
        }
        return fd;
}

static int bench_nats_connect(const struct bench_nats_server *s)
{
        struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
        struct addrinfo *res = NULL;
        if (getaddrinfo(s->host, s->port, &hints, &res) != 0)
                return -EHOSTUNREACH;
        int fd = -ECONNREFUSED;
        for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
                fd = bench_nats_connect_one(ai);
                if (fd >= 0)
                        break;
        }
        freeaddrinfo(res);
        return fd;
}

/* Keeps a reason in c->err: what, then the printable characters of text
 * (quoted unless it is an -ERR's text, which comes quoted). */
static void bench_nats_note(struct bench_nats_conn *c, const char *what, const char *text,
                            size_t len, bool quote)
{
        char clean[96];
        size_t n = 0;
        for (size_t i = 0; i < len && n < sizeof(clean) - 1; i++)
                clean[n++] = text[i] >= 0x20 && text[i] < 0x7f ? text[i] : '?';
        clean[n] = '\0';
        snprintf(c->err, sizeof(c->err), quote ? "%s '%s'" : "%s %s", what, clean);
}

static int bench_nats_fail(struct bench_nats_conn *c, const char *what, const char *text,
                           size_t len)
{
        bench_nats_note(c, what, text, len, true);
        return -EPROTO;
}

/* The value after "key": in a flat JSON object, or NULL; *rest gets the
 * bytes left from there. Runs for every answer of a durable bench, so it
 * matches the key at each quote in place (no pattern built per call). */
const char *bench_nats_json_find(const char *json, size_t len, const char *key, size_t *rest)
{
        size_t klen = strlen(key);
        const char *end = json + len;
        /* The key is the quoted word followed by a colon: the same word
         * as a value ("server_name":"go") is passed over. */
        for (const char *p = json; p < end;) {
                p = memchr(p, '"', (size_t)(end - p));
                if (p == NULL || (size_t)(end - p) < klen + 2)
                        return NULL;
                if (memcmp(p + 1, key, klen) != 0 || p[1 + klen] != '"') {
                        p++;
                        continue;
                }
                p += klen + 2;
                while (p < end && *p == ' ')
                        p++;
                if (p == end || *p != ':')
                        continue;
                for (p++; p < end && *p == ' '; p++)
                        ;
                *rest = (size_t)(end - p);
                return p;
        }
        return NULL;
}

static void bench_nats_json_str(const char *json, size_t len, const char *key, char *out,
                                size_t out_len)
{
        size_t rest = 0;
        const char *p = bench_nats_json_find(json, len, key, &rest);
        out[0] = '\0';
        if (p == NULL || rest == 0 || *p != '"')
                return;
        size_t n = 0;
        for (p++, rest--; rest > 0 && *p != '"' && *p != '\\' && n < out_len - 1; p++, rest--)
                out[n++] = *p >= 0x20 && *p < 0x7f ? *p : '?';
        out[n] = '\0';
}

static void bench_nats_info_parse(struct bench_nats_conn *c, const char *json, size_t len)
{
        struct bench_nats_info *in = &c->info;
        bench_nats_json_str(json, len, "server_name", in->server_name, sizeof(in->server_name));
        bench_nats_json_str(json, len, "go", in->go, sizeof(in->go));
        bench_nats_json_str(json, len, "version", in->version, sizeof(in->version));
        size_t rest = 0;
        const char *p = bench_nats_json_find(json, len, "max_payload", &rest);
        uint64_t v = 0;
        for (unsigned i = 0; p != NULL && i < rest && i < 12 && p[i] >= '0' && p[i] <= '9'; i++)
                v = v * 10 + (uint64_t)(p[i] - '0');
        in->max_payload = v;
        p = bench_nats_json_find(json, len, "headers", &rest);
        in->headers = p != NULL && rest >= 4 && memcmp(p, "true", 4) == 0;
        in->seen = true;
}

/* The arguments of a control line, split at spaces and tabs. */
struct bench_nats_args {
        const char *tok[BENCH_NATS_ARGS_MAX];
        size_t len[BENCH_NATS_ARGS_MAX];
        unsigned n;
};

static int bench_nats_split(const char *p, size_t len, struct bench_nats_args *a)
{
        a->n = 0;
        size_t i = 0;
        for (;;) {
                while (i < len && (p[i] == ' ' || p[i] == '\t'))
                        i++;
                if (i == len)
                        return 0;
                if (a->n == BENCH_NATS_ARGS_MAX)
                        return -EPROTO;
                size_t start = i;
                while (i < len && p[i] != ' ' && p[i] != '\t')
                        i++;
                a->tok[a->n] = p + start;
                a->len[a->n++] = i - start;
        }
}

static int bench_nats_size(const char *p, size_t len, uint64_t *out)
{
        if (len == 0 || len > BENCH_NATS_SIZE_DIGITS_MAX)
                return -EPROTO;
        uint64_t v = 0;
        for (size_t i = 0; i < len; i++) {
                if (p[i] < '0' || p[i] > '9')
                        return -EPROTO;
                v = v * 10 + (uint64_t)(p[i] - '0');
        }
        if (v > BENCH_NATS_PAYLOAD_MAX)
                return -EPROTO;
        *out = v;
        return 0;
}

/* "MSG subject sid [reply] size" or "HMSG subject sid [reply] hdr total":
 * counted, handed to on_msg, and its payload skipped. A keep_payload
 * connection hands it over only once the payload is in rbuf after the line
 * (c->rpos is past the line): 1 until then, and the line is parsed again
 * after the next read. */
static int bench_nats_on_msg_line(struct bench_nats_conn *c, const char *line, size_t len,
                                  bool hmsg)
{
        struct bench_nats_args a;
        size_t op = hmsg ? 4 : 3;
        unsigned sizes = hmsg ? 2 : 1;
        if (bench_nats_split(line + op, len - op, &a) != 0 || a.n < 2 + sizes ||
            a.n > 3 + sizes)
                return bench_nats_fail(c, "malformed", line, len);
        struct bench_nats_msg m = { .subject = a.tok[0], .subject_len = a.len[0], .hmsg = hmsg };
        if (a.n == 3 + sizes) {
                m.reply = a.tok[2];
                m.reply_len = a.len[2];
        }
        uint64_t hdr = 0;
        if (bench_nats_size(a.tok[a.n - 1], a.len[a.n - 1], &m.payload_bytes) != 0 ||
            (hmsg && (bench_nats_size(a.tok[a.n - 2], a.len[a.n - 2], &hdr) != 0 ||
                      hdr > m.payload_bytes)))
                return bench_nats_fail(c, "bad size in", line, len);
        if (c->keep_payload) {
                if (m.payload_bytes > BENCH_NATS_KEEP_MAX)
                        return bench_nats_fail(c, "payload too large to keep in", line, len);
                if (c->rlen - c->rpos < m.payload_bytes + 2)
                        return 1;
                m.payload = c->rbuf + c->rpos;
        }
        c->msgs++;
        c->hmsgs += hmsg;
        if (c->on_msg != NULL)
                c->on_msg(c->on_msg_arg, c, &m);
        c->skip = m.payload_bytes;
        c->want_crlf = true;
        return 0;
}

/* Whether the line is op (upper case), in any case, alone or followed by
 * a blank. By hand: it runs for every line read. */
static bool bench_nats_is(const char *line, size_t len, const char *op)
{
        size_t n = 0;
        for (; op[n] != '\0'; n++) {
                char ch = line[n];
                if (n == len || (ch >= 'a' && ch <= 'z' ? (char)(ch - 32) : ch) != op[n])
                        return false;
        }
        return len == n || line[n] == ' ' || line[n] == '\t';
}

/* One control line (without its CRLF). 0, 1 (a kept payload is not all
 * in yet) or -EPROTO. */
static int bench_nats_line(struct bench_nats_conn *c, const char *line, size_t len)
{
        if (bench_nats_is(line, len, "INFO")) {
                bench_nats_info_parse(c, line + 4, len - 4);
                return 0;
        }
        if (!c->info.seen)
                return bench_nats_fail(c, "no INFO first but", line, len);
        if (bench_nats_is(line, len, "MSG"))
                return bench_nats_on_msg_line(c, line, len, false);
        if (bench_nats_is(line, len, "HMSG"))
                return bench_nats_on_msg_line(c, line, len, true);
        if (bench_nats_is(line, len, "PONG")) {
                c->pongs++;
                return 0;
        }
        if (bench_nats_is(line, len, "PING")) {
                /* Sent by poll() once the whole read is parsed. */
                c->pong_due = true;
                return 0;
        }
        if (bench_nats_is(line, len, "+OK"))
                return 0;
        if (bench_nats_is(line, len, "-ERR")) {
                c->errs++;
                size_t skip = len > 5 ? 5 : len;
                bench_nats_note(c, "-ERR", line + skip, len - skip, false);
                return 0;
        }
        return bench_nats_fail(c, "unexpected", line, len);
}

/* Parses rbuf[rpos, rlen) up to the last complete item. 0 or -EPROTO. */
static int bench_nats_parse(struct bench_nats_conn *c)
{
        for (;;) {
                size_t avail = c->rlen - c->rpos;
                char *p = c->rbuf + c->rpos;
                if (c->skip != 0) {
                        size_t n = avail < c->skip ? avail : (size_t)c->skip;
                        c->rpos += n;
                        c->skip -= n;
                        if (c->skip != 0)
                                return 0;
                        continue;
                }
                if (c->want_crlf) {
                        if (avail < 2)
                                return 0;
                        if (p[0] != '\r' || p[1] != '\n')
                                return bench_nats_fail(c, "payload not followed by CRLF but",
                                                       p, avail < 16 ? avail : 16);
                        c->rpos += 2;
                        c->want_crlf = false;
                        continue;
                }
                char *nl = memchr(p, '\n', avail);
                size_t len = nl != NULL ? (size_t)(nl - p) : avail;
                if (len > BENCH_NATS_LINE_MAX)
                        return bench_nats_fail(c, "control line too long:", p, 32);
                if (nl == NULL)
                        return 0;
                size_t line_bytes = len + 1;
                c->rpos += line_bytes;
                if (len > 0 && p[len - 1] == '\r')
                        len--;
                int rc = bench_nats_line(c, p, len);
                if (rc > 0) {
                        /* A kept payload still coming: the line again later. */
                        c->rpos -= line_bytes;
                        return 0;
                }
                if (rc != 0)
                        return rc;
        }
}

static int bench_nats_send_all(struct bench_nats_conn *c, const char *p, size_t len)
{
        while (len > 0) {
                ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
                if (n > 0) {
                        p += n;
                        len -= (size_t)n;
                        continue;
                }
                if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                        return -errno;
                /* The send timeout: the server reads nothing for now. */
                if (shm_clock_ns() > c->give_up_ns)
                        return -ETIMEDOUT;
        }
        return 0;
}

int bench_nats_flush(struct bench_nats_conn *c)
{
        int rc = bench_nats_send_all(c, c->wbuf, c->wlen);
        c->wlen = 0;
        return rc;
}

int bench_nats_put(struct bench_nats_conn *c, const void *p, size_t len)
{
        if (c->wlen + len > BENCH_NATS_WBUF_BYTES) {
                int rc = bench_nats_flush(c);
                if (rc != 0)
                        return rc;
                if (len > BENCH_NATS_WBUF_BYTES)
                        return bench_nats_send_all(c, p, len);
        }
        memcpy(c->wbuf + c->wlen, p, len);
        c->wlen += len;
        return 0;
}

int bench_nats_write(struct bench_nats_conn *c, const void *p, size_t len)
{
        int rc = bench_nats_flush(c);
        return rc != 0 ? rc : bench_nats_send_all(c, p, len);
}

int bench_nats_sub(struct bench_nats_conn *c, const char *subject, const char *queue,
                   unsigned sid)
{
        char line[512];
        int n = snprintf(line, sizeof(line), "SUB %s%s%s %u\r\n", subject,
                         queue != NULL ? " " : "", queue != NULL ? queue : "", sid);
        if (n < 0 || (size_t)n >= sizeof(line))
                return -EINVAL;
        return bench_nats_put(c, line, (size_t)n);
}

int bench_nats_ping(struct bench_nats_conn *c)
{
        c->pings_out++;
        return bench_nats_put(c, "PING\r\n", 6);
}

int bench_nats_poll(struct bench_nats_conn *c)
{
        /* What is left is a partial control line (or CRLF): to the front. */
        size_t left = c->rlen - c->rpos;
        if (left != 0 && c->rpos != 0)
                memmove(c->rbuf, c->rbuf + c->rpos, left);
        c->rlen = left;
        c->rpos = 0;
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, BENCH_NATS_RBUF_BYTES - c->rlen, 0);
        if (n == 0)
                return -ECONNRESET;
        if (n < 0)
                return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
        c->rlen += (size_t)n;
        int rc = bench_nats_parse(c);
        if (rc == 0 && c->pong_due) {
                c->pong_due = false;
                rc = bench_nats_put(c, "PONG\r\n", 6);
                if (rc == 0)
                        rc = bench_nats_flush(c);
        }
        return rc != 0 ? rc : (int)n;
}

int bench_nats_pongs_wait(struct bench_nats_conn *c, uint64_t allowed)
{
        while (c->pings_out - c->pongs >= allowed && c->pongs < c->pings_out) {
                int rc = bench_nats_poll(c);
                if (rc < 0)
                        return rc;
                if (rc == 0 && shm_clock_ns() > c->give_up_ns)
                        return -ETIMEDOUT;
        }
        return 0;
}

int bench_nats_sync(struct bench_nats_conn *c)
{
        int rc = bench_nats_ping(c);
        if (rc == 0)
                rc = bench_nats_flush(c);
        return rc != 0 ? rc : bench_nats_pongs_wait(c, 1);
}

void bench_nats_conn_close(struct bench_nats_conn *c)
{
        if (c->fd >= 0)
                close(c->fd);
        free(c->rbuf);
        free(c->wbuf);
        c->fd = -1;
        c->rbuf = c->wbuf = NULL;
}

/* INFO, then CONNECT and a PING whose PONG says CONNECT was taken. */
static int bench_nats_handshake(struct bench_nats_conn *c)
{
        while (!c->info.seen) {
                int rc = bench_nats_poll(c);
                if (rc < 0)
                        return rc;
                if (rc == 0 && shm_clock_ns() > c->give_up_ns)
                        return -ETIMEDOUT;
        }
        int rc = bench_nats_put(c, bench_nats_connect_line, sizeof(bench_nats_connect_line) - 1);
        if (rc == 0)
                rc = bench_nats_sync(c);
        if (rc == 0 && c->errs != 0)
                rc = -EPROTO;
        return rc;
}

int bench_nats_conn_open(struct bench_nats_conn *c, const struct bench_nats_server *s)
{
        memset(c, 0, sizeof(*c));
        c->fd = -1;
        c->rbuf = malloc(BENCH_NATS_RBUF_BYTES);
        c->wbuf = malloc(BENCH_NATS_WBUF_BYTES);
        int rc = c->rbuf == NULL || c->wbuf == NULL ? -ENOMEM : bench_nats_connect(s);
        if (rc >= 0) {
                c->fd = rc;
                c->give_up_ns = shm_clock_ns() + BENCH_NATS_HANDSHAKE_NS;
                rc = bench_nats_handshake(c);
        }
        if (rc < 0)
                bench_nats_conn_close(c);
        return rc < 0 ? rc : 0;
}
