/* ctl_http.c - atomqd's HTTP listener (see ctl_http.h).
 *
 *      curl -s http://127.0.0.1:8222/metrics
 *      curl -s 'http://127.0.0.1:8222/entities?prefix=orders.&limit=20'
 *
 * The parts of HTTP/1.1 (RFC 9112) a metrics endpoint needs and no more:
 * the request line and header fields are checked for shape, a 1.1 request
 * must carry Host (RFC 9112 section 3.2), bodies are never read, and every
 * answer closes the connection, so there is no keep-alive state to bound.
 */
#include "control/ctl_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "control/ctl_parse.h"
#include "dataplane/dp_names.h"
#include "shm/shm_log.h"

/* Room kept in front of each answer's body for the status line and
 * headers, so the body is rendered in place and never moved. */
#define CTL_HTTP_HEAD_BYTES 512u
#define CTL_HTTP_BACKLOG 64
/* Connections taken per readiness of the listener: bounds one handler. */
#define CTL_HTTP_ACCEPT_BURST 16

static const char ctl_ct_text[] = "text/plain; charset=utf-8";
static const char ctl_ct_prom[] = "text/plain; version=0.0.4; charset=utf-8";
static const char ctl_ct_json[] = "application/json";
static const char ctl_ct_html[] = "text/html; charset=utf-8";

static uint64_t ctl_http_now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const char *ctl_http_reason(int status)
{
        switch (status) {
        case 200: return "OK";
        case 400: return "Bad Request";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 431: return "Request Header Fields Too Large";
        case 500: return "Internal Server Error";
        case 503: return "Service Unavailable";
        case 505: return "HTTP Version Not Supported";
        default: return "Unknown";
        }
}

static void ctl_http_client_close(struct ctl_http_client *c)
{
        if (c->state == CTL_HTTP_FREE)
                return;
        ctl_loop_del(c->http->ctx->loop, c->fd);
        close(c->fd);
        c->fd = -1;
        c->state = CTL_HTTP_FREE;
}

/* Sends what is left of the answer; when all is out, shuts the write side
 * and waits for the client's EOF (ctl_http.h, CTL_HTTP_DRAIN_BYTES_MAX). */
static void ctl_http_flush(struct ctl_http_client *c)
{
        while (c->out_off < c->out_end) {
                ssize_t n = send(c->fd, c->out + c->out_off, c->out_end - c->out_off,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                        /* EPOLLOUT alone: a client that half-closed after its
                         * request keeps EPOLLRDHUP raised (level-triggered),
                         * which would spin the loop until it reads. */
                        ctl_loop_mod(c->http->ctx->loop, c->fd, EPOLLOUT);
                        return;
                }
                if (n <= 0) {
                        ctl_http_client_close(c);
                        return;
                }
                c->out_off += (uint32_t)n;
                c->last_ns = ctl_http_now_ns();
        }
        shutdown(c->fd, SHUT_WR);
        c->state = CTL_HTTP_DRAINING;
        ctl_loop_mod(c->http->ctx->loop, c->fd, EPOLLIN | EPOLLRDHUP);
}

/* The body is at c->out + CTL_HTTP_HEAD_BYTES; puts the head in front of
 * it and starts sending. */
static void ctl_http_respond(struct ctl_http_client *c, int status, const char *ctype,
                             size_t body_len, const char *extra)
{
        char head[CTL_HTTP_HEAD_BYTES];
        int n = snprintf(head, sizeof(head),
                         "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                         "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                         "Server: atomqd/%s\r\nConnection: close\r\n%s\r\n",
                         status, ctl_http_reason(status), ctype, body_len, ATOMQ_VERSION,
                         extra != NULL ? extra : "");
        DP_VERIFY(n > 0 && (size_t)n < sizeof(head)); /* our own constant text */
        memcpy(c->out + CTL_HTTP_HEAD_BYTES - n, head, (size_t)n);
        c->out_off = CTL_HTTP_HEAD_BYTES - (uint32_t)n;
        c->out_end = CTL_HTTP_HEAD_BYTES + (uint32_t)body_len;
        c->state = CTL_HTTP_WRITING;
        c->http->stats.requests++;
        if (status >= 400)
                c->http->stats.errors++;
        ctl_http_flush(c);
}

__attribute__((format(printf, 4, 5)))
static void ctl_http_error(struct ctl_http_client *c, int status, const char *extra,
                           const char *fmt, ...)
{
        char *body = c->out + CTL_HTTP_HEAD_BYTES;
        size_t room = CTL_HTTP_OUT_BYTES - CTL_HTTP_HEAD_BYTES;
        int n = snprintf(body, room, "%d %s: ", status, ctl_http_reason(status));
        va_list ap;
        va_start(ap, fmt);
        n += vsnprintf(body + n, room - (size_t)n, fmt, ap);
        va_end(ap);
        n += snprintf(body + n, room - (size_t)n, "\n");
        ctl_http_respond(c, status, ctl_ct_text, (size_t)n, extra);
}

/* --- /entities?prefix=P&limit=N --- */

static int ctl_hex(char ch)
{
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        if (ch >= 'a' && ch <= 'f')
                return ch - 'a' + 10;
        if (ch >= 'A' && ch <= 'F')
                return ch - 'A' + 10;
        return -1;
}

/* Percent-decodes s[0..n) (and '+' as a space, as forms send it) into
 * out[0..cap). Returns the length, or -1 for a bad escape or no room. */
static int ctl_url_decode(const char *s, size_t n, char *out, size_t cap)
{
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
                char ch = s[i];
                if (ch == '%') {
                        if (n - i < 3)
                                return -1;
                        int hi = ctl_hex(s[i + 1]), lo = ctl_hex(s[i + 2]);
                        if (hi < 0 || lo < 0)
                                return -1;
                        ch = (char)(hi << 4 | lo);
                        i += 2;
                } else if (ch == '+') {
                        ch = ' ';
                }
                if (o >= cap)
                        return -1;
                out[o++] = ch;
        }
        return (int)o;
}

static void ctl_http_entities(struct ctl_http_client *c, const char *q, size_t qlen)
{
        char prefix[DP_NAME_MAX];
        int prefix_len = 0;
        uint32_t limit = CTL_ENTITIES_LIMIT_DEFAULT;

        for (size_t i = 0; i < qlen;) {
                const char *amp = memchr(q + i, '&', qlen - i);
                size_t end = amp != NULL ? (size_t)(amp - q) : qlen;
                const char *eq = memchr(q + i, '=', end - i);
                size_t klen = eq != NULL ? (size_t)(eq - (q + i)) : end - i;
                const char *v = eq != NULL ? eq + 1 : q + end;
                size_t vlen = (size_t)(q + end - v);
                if (klen == 6 && memcmp(q + i, "prefix", 6) == 0) {
                        prefix_len = ctl_url_decode(v, vlen, prefix, sizeof(prefix));
                        if (prefix_len < 0) {
                                ctl_http_error(c, 400, NULL, "prefix: a bad %%-escape or "
                                               "longer than %u bytes", DP_NAME_MAX);
                                return;
                        }
                } else if (klen == 5 && memcmp(q + i, "limit", 5) == 0) {
                        char num[16];
                        long long l;
                        int nl = ctl_url_decode(v, vlen, num, sizeof(num) - 1);
                        if (nl >= 0)
                                num[nl] = '\0';
                        if (nl < 0 || ctl_parse_int(num, 1, CTL_ENTITIES_LIMIT_MAX, &l) != 0) {
                                ctl_http_error(c, 400, NULL, "limit: not a number from 1 to %u",
                                               CTL_ENTITIES_LIMIT_MAX);
                                return;
                        }
                        limit = (uint32_t)l;
                }
                /* Other parameters are ignored, as HTTP servers do. */
                i = end + 1;
        }
        int n = ctl_metrics_entities_json(&c->http->metrics, prefix, (size_t)prefix_len, limit,
                                          c->out + CTL_HTTP_HEAD_BYTES,
                                          CTL_HTTP_OUT_BYTES - CTL_HTTP_HEAD_BYTES);
        if (n < 0)
                ctl_http_error(c, 500, NULL, "cannot render: %s", strerror(-n));
        else
                ctl_http_respond(c, 200, ctl_ct_json, (size_t)n, NULL);
}

/* --- routing --- */

static void ctl_http_route(struct ctl_http_client *c, const char *path, size_t plen,
                           const char *query, size_t qlen)
{
        struct ctl_metrics *m = &c->http->metrics;
        char *body = c->out + CTL_HTTP_HEAD_BYTES;
        size_t room = CTL_HTTP_OUT_BYTES - CTL_HTTP_HEAD_BYTES;
        const char *ctype = ctl_ct_json;
        int n;

#define CTL_PATH_IS(lit) (plen == sizeof(lit) - 1 && memcmp(path, lit, plen) == 0)
        ctl_metrics_sample(m, ctl_http_now_ns());
        if (CTL_PATH_IS("/entities")) {
                ctl_http_entities(c, query, qlen);
                return;
        }
        if (CTL_PATH_IS("/metrics")) {
                n = ctl_metrics_prometheus(m, body, room);
                ctype = ctl_ct_prom;
        } else if (CTL_PATH_IS("/info")) {
                n = ctl_metrics_info_json(m, body, room);
        } else if (CTL_PATH_IS("/workers")) {
                n = ctl_metrics_workers_json(m, body, room);
        } else if (CTL_PATH_IS("/")) {
                n = ctl_metrics_html(body, room);
                ctype = ctl_ct_html;
        } else {
                ctl_http_error(c, 404, NULL, "no such page; try /, /metrics, /info, /workers "
                               "or /entities");
                return;
        }
#undef CTL_PATH_IS
        if (n < 0)
                ctl_http_error(c, 500, NULL, "the answer exceeds %u bytes", CTL_HTTP_OUT_BYTES);
        else
                ctl_http_respond(c, 200, ctype, (size_t)n, NULL);
}

/* RFC 9110 section 5.6.2: tchar. */
static bool ctl_tchar(unsigned char ch)
{
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
               (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static bool ctl_token(const char *p, const char *end)
{
        if (p == end)
                return false;
        for (; p < end; p++)
                if (!ctl_tchar((unsigned char)*p))
                        return false;
        return true;
}

/* Checks the header fields in [p, end) (each "name: value", ending at the
 * empty line) and whether Host is among them. false: malformed. */
static bool ctl_http_fields(const char *p, const char *end, bool *host)
{
        *host = false;
        while (p < end) {
                const char *eol = memchr(p, '\n', (size_t)(end - p));
                if (eol == NULL)
                        return false;
                size_t len = (size_t)(eol - p);
                if (len > 0 && p[len - 1] == '\r')
                        len--;
                if (len == 0)
                        return true;           /* the empty line ends the head */
                const char *colon = memchr(p, ':', len);
                /* A name is a token: this also refuses "Host :" (RFC 9112
                 * section 5.1) and obsolete line folding. */
                if (colon == NULL || !ctl_token(p, colon))
                        return false;
                if (colon - p == 4 && strncasecmp(p, "host", 4) == 0)
                        *host = true;
                p = eol + 1;
        }
        return false;
}

/* The request line and fields in c->in[0..head_len): 0 with the target in
 * *target, *tlen; else an HTTP status with *why and *extra (a header line)
 * to answer with. */
static int ctl_http_parse(struct ctl_http_client *c, size_t head_len, const char **target,
                          size_t *tlen, const char **why, const char **extra)
{
        const char *p = c->in, *end = c->in + head_len;
        const char *eol = memchr(p, '\n', head_len);   /* ctl_head_end saw one */
        size_t line_len = (size_t)(eol - p);
        if (line_len > 0 && p[line_len - 1] == '\r')
                line_len--;

        /* request-line = method SP request-target SP HTTP-version */
        *extra = NULL;
        *why = "expected 'GET /path HTTP/1.1'";
        const char *sp1 = memchr(p, ' ', line_len);
        if (sp1 == NULL || !ctl_token(p, sp1))
                return 400;
        const char *sp2 = memchr(sp1 + 1, ' ', line_len - (size_t)(sp1 + 1 - p));
        if (sp2 == NULL || sp2 == sp1 + 1)
                return 400;
        const char *ver = sp2 + 1;
        size_t ver_len = (size_t)(p + line_len - ver);
        bool v11 = ver_len == 8 && memcmp(ver, "HTTP/1.1", 8) == 0;
        if (!v11 && !(ver_len == 8 && memcmp(ver, "HTTP/1.0", 8) == 0)) {
                *why = "only HTTP/1.0 and HTTP/1.1 are served";
                return ver_len >= 5 && memcmp(ver, "HTTP/", 5) == 0 ? 505 : 400;
        }
        bool host;
        *why = "malformed header field";
        if (!ctl_http_fields(eol + 1, end, &host))
                return 400;
        *why = "HTTP/1.1 needs a Host header";
        if (v11 && !host)
                return 400;
        *why = "only GET is served";
        *extra = "Allow: GET\r\n";
        if (sp1 - p != 3 || memcmp(p, "GET", 3) != 0)
                return 405;
        *extra = NULL;
        *why = "the target must be a path";
        *target = sp1 + 1;
        *tlen = (size_t)(sp2 - *target);
        if (**target != '/')
                return 400;
        return 0;
}

/* A complete head is in c->in[0..head_len): check it and answer. */
static void ctl_http_request(struct ctl_http_client *c, size_t head_len)
{
        const char *target, *why, *extra;
        size_t tlen;
        int status = ctl_http_parse(c, head_len, &target, &tlen, &why, &extra);
        if (status != 0) {
                ctl_http_error(c, status, extra, "%s", why);
                return;
        }
        const char *qm = memchr(target, '?', tlen);
        size_t plen = qm != NULL ? (size_t)(qm - target) : tlen;
        ctl_http_route(c, target, plen, qm != NULL ? qm + 1 : target + tlen,
                       qm != NULL ? tlen - plen - 1 : 0);
}

/* Where the head ends (past its empty line), or 0 if it has not yet. A
 * bare "\n\n" counts too, as lenient servers take it from hand-typed
 * requests. */
static size_t ctl_head_end(const char *in, size_t len)
{
        for (size_t i = 1; i < len; i++) {
                if (in[i] != '\n')
                        continue;
                if (in[i - 1] == '\n')
                        return i + 1;
                if (i >= 3 && in[i - 1] == '\r' && in[i - 2] == '\n' && in[i - 3] == '\r')
                        return i + 1;
        }
        return 0;
}

static void ctl_http_read(struct ctl_http_client *c)
{
        ssize_t n = recv(c->fd, c->in + c->in_len, CTL_HTTP_REQUEST_BYTES_MAX - c->in_len,
                         MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                return;
        if (n <= 0) {
                ctl_http_client_close(c);  /* gone before finishing its request */
                return;
        }
        c->in_len += (uint32_t)n;
        c->last_ns = ctl_http_now_ns();
        size_t head = ctl_head_end(c->in, c->in_len);
        if (head > 0)
                ctl_http_request(c, head);
        else if (c->in_len < CTL_HTTP_REQUEST_BYTES_MAX)
                return;                    /* more to come */
        else if (memchr(c->in, '\n', c->in_len) == NULL)
                ctl_http_error(c, 400, NULL, "request line longer than %u bytes",
                               CTL_HTTP_REQUEST_BYTES_MAX);
        else
                ctl_http_error(c, 431, NULL, "request head longer than %u bytes",
                               CTL_HTTP_REQUEST_BYTES_MAX);
}

static void ctl_http_drain(struct ctl_http_client *c)
{
        char sink[4096];
        ssize_t n = recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                return;
        if (n > 0 && c->drained + (uint32_t)n <= CTL_HTTP_DRAIN_BYTES_MAX) {
                c->drained += (uint32_t)n;
                return;
        }
        ctl_http_client_close(c);          /* EOF, an error, or enough */
}

static void ctl_http_on_client(void *arg, int fd, uint32_t events)
{
        struct ctl_http_client *c = arg;
        (void)fd;
        switch (c->state) {
        case CTL_HTTP_READING:
                ctl_http_read(c);
                break;
        case CTL_HTTP_WRITING:
                if (events & (EPOLLERR | EPOLLHUP))
                        ctl_http_client_close(c);
                else
                        ctl_http_flush(c);
                break;
        case CTL_HTTP_DRAINING:
                ctl_http_drain(c);
                break;
        default:
                break;
        }
}

/* Every slot busy: a short 503 the kernel takes at once (a fresh socket's
 * buffer is empty), then close. */
static void ctl_http_turn_away(struct ctl_http *h, int fd)
{
        static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                                   "Content-Length: 5\r\nRetry-After: 1\r\nConnection: close\r\n"
                                   "\r\nbusy\n";
        ssize_t n = send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)n;  /* best effort: the client sees a 503 or a closed connection */
        close(fd);
        h->stats.rejected++;
}

static void ctl_http_on_accept(void *arg, int lfd, uint32_t events)
{
        struct ctl_http *h = arg;
        (void)events;
        for (int k = 0; k < CTL_HTTP_ACCEPT_BURST; k++) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        if (errno != EAGAIN && errno != EWOULDBLOCK)
                                shm_log(SHM_LOG_WARN, "metrics: accept: %s", strerror(errno));
                        return;
                }
                struct ctl_http_client *c = NULL;
                for (uint32_t i = 0; i < CTL_HTTP_CLIENTS_MAX && c == NULL; i++)
                        if (h->clients[i].state == CTL_HTTP_FREE)
                                c = &h->clients[i];
                if (c == NULL) {
                        ctl_http_turn_away(h, fd);
                        continue;
                }
                c->fd = fd;
                c->in_len = c->out_off = c->out_end = c->drained = 0;
                c->last_ns = ctl_http_now_ns();
                if (ctl_loop_add(h->ctx->loop, fd, EPOLLIN | EPOLLRDHUP, ctl_http_on_client, c) != 0) {
                        ctl_http_turn_away(h, fd);
                        continue;
                }
                c->state = CTL_HTTP_READING;
        }
}

/* Once a second: closes clients idle for CTL_HTTP_IDLE_NS and closes the
 * idle-ratio window. */
static void ctl_http_on_timer(void *arg, int fd, uint32_t events)
{
        struct ctl_http *h = arg;
        uint64_t ticks;
        (void)events;
        if (read(fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
                shm_log(SHM_LOG_WARN, "metrics: timerfd: %s", strerror(errno));
        uint64_t now = ctl_http_now_ns();
        for (uint32_t i = 0; i < CTL_HTTP_CLIENTS_MAX; i++) {
                struct ctl_http_client *c = &h->clients[i];
                if (c->state == CTL_HTTP_FREE || now - c->last_ns < CTL_HTTP_IDLE_NS)
                        continue;
                if (c->state != CTL_HTTP_DRAINING)
                        h->stats.timeouts++;
                ctl_http_client_close(c);
        }
        ctl_metrics_sample(&h->metrics, now);
}

static int ctl_http_listen(struct ctl_http *h, const struct sockaddr_in *sa)
{
        int one = 1;
        h->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (h->fd < 0)
                return -errno;
        if (setsockopt(h->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
            bind(h->fd, (const struct sockaddr *)sa, sizeof(*sa)) != 0 ||
            listen(h->fd, CTL_HTTP_BACKLOG) != 0)
                return -errno;
        struct sockaddr_in bound;
        socklen_t blen = sizeof(bound);
        if (getsockname(h->fd, (struct sockaddr *)&bound, &blen) != 0)
                return -errno;
        h->port = ntohs(bound.sin_port);

        h->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (h->timer_fd < 0)
                return -errno;
        struct itimerspec its = { .it_interval = { .tv_sec = 1 }, .it_value = { .tv_sec = 1 } };
        if (timerfd_settime(h->timer_fd, 0, &its, NULL) != 0)
                return -errno;
        int rc = ctl_loop_add(h->ctx->loop, h->fd, EPOLLIN, ctl_http_on_accept, h);
        if (rc == 0) {
                rc = ctl_loop_add(h->ctx->loop, h->timer_fd, EPOLLIN, ctl_http_on_timer, h);
                if (rc != 0)
                        ctl_loop_del(h->ctx->loop, h->fd);
        }
        return rc;
}

int ctl_http_open(struct ctl_http *h, struct ctl_ctx *ctx)
{
        const char *addr = ctx->cfg->metrics_addr;
        struct sockaddr_in sa;
        const char *why;

        memset(h, 0, sizeof(*h));
        h->ctx = ctx;
        h->fd = h->timer_fd = -1;
        for (uint32_t i = 0; i < CTL_HTTP_CLIENTS_MAX; i++)
                h->clients[i] = (struct ctl_http_client){ .http = h, .fd = -1 };
        if (addr[0] == '\0' || strcmp(addr, "off") == 0)
                return 0;
        if (ctl_parse_addr(addr, &sa, &why) != 0) {
                shm_log(SHM_LOG_ERR, "metrics: '%s': %s", addr, why);
                return -EINVAL;
        }
        /* calloc of this size maps fresh zero pages: untouched until used. */
        h->out_mem = calloc(CTL_HTTP_CLIENTS_MAX, CTL_HTTP_OUT_BYTES);
        if (h->out_mem == NULL)
                return -ENOMEM;
        for (uint32_t i = 0; i < CTL_HTTP_CLIENTS_MAX; i++)
                h->clients[i].out = h->out_mem + (size_t)i * CTL_HTTP_OUT_BYTES;
        ctl_metrics_init(&h->metrics, ctx, &h->stats);
        int rc = ctl_http_listen(h, &sa);
        if (rc != 0) {
                shm_log(SHM_LOG_ERR, "metrics: cannot listen on %s: %s", addr, strerror(-rc));
                ctl_http_close(h);
                h->ctx = ctx;        /* still "opened", with nothing open */
                h->fd = h->timer_fd = -1;
                return rc;
        }
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof(ip));
        shm_log(SHM_LOG_INFO, "metrics on http://%s:%" PRIu16 "/", ip, h->port);
        return 0;
}

void ctl_http_close(struct ctl_http *h)
{
        if (h->ctx == NULL)
                return;
        for (uint32_t i = 0; i < CTL_HTTP_CLIENTS_MAX; i++)
                ctl_http_client_close(&h->clients[i]);
        if (h->fd >= 0) {
                ctl_loop_del(h->ctx->loop, h->fd);
                close(h->fd);
        }
        if (h->timer_fd >= 0) {
                ctl_loop_del(h->ctx->loop, h->timer_fd);
                close(h->timer_fd);
        }
        free(h->out_mem);
        h->out_mem = NULL;
        h->fd = h->timer_fd = -1;
        h->ctx = NULL;
}
