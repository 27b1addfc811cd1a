/* test_ctl_http.c - the metrics listener and its renderers: a real
 * ctl_loop on a thread, an in-process dp_engine (its arena and shards, no
 * workers unless a test starts them), and a client on a loopback socket
 * fetching each endpoint and checking status, content type and that the
 * body parses (Prometheus lines, JSON through jansson); then what must be
 * refused: unknown paths, other methods, bad and oversized requests, one
 * client too many.
 *
 *      meson test -C build ctl_http
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <regex.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "control/ctl_config.h"
#include "control/ctl_http.h"
#include "control/ctl_metrics.h"
#include "dataplane/dp_engine.h"
#include "shm/shm_log.h"

#define WORKERS 2u

static struct ctl_config cfg;
static struct ctl_loop loop;
static struct dp_engine engine;
static struct ctl_ctx ctx;
static struct ctl_http http;
static pthread_t loop_thread;
static atomic_bool loop_stop;
static bool loop_running;

static void *loop_main(void *arg)
{
        (void)arg;
        while (!atomic_load(&loop_stop))
                ctl_loop_run_once(&loop, 20);
        return NULL;
}

/* A port that was free a moment ago (bind to 0, read it, close). */
static uint16_t free_port(void)
{
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sa);
        cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
        close(fd);
        return ntohs(sa.sin_port);
}

static void quiet(enum shm_log_level level, const char *line, void *arg)
{
        (void)level, (void)line, (void)arg;
}

static void create(const char *name, uint8_t mode)
{
        uint64_t h;
        uint32_t s = name != NULL ? dp_engine_shard_of_name(&engine, name, (uint32_t)strlen(name)) : 1;
        struct dp_create_opts o = { .mode = mode, .storage = -1, .overflow = -1 };
        cr_assert_eq(dp_shard_create(&engine.w[s].shard, &o, name,
                                     name != NULL ? (uint32_t)strlen(name) : 0, &h), 0, "%s", name);
        if (mode == DP_MODE_MAILBOX) {
                struct dp_msg_in m = { .subject = name, .subject_len = (uint32_t)strlen(name),
                                       .payload = "hello", .payload_len = 5, .storage = -1 };
                cr_assert_eq(dp_shard_send(&engine.w[s].shard, h, &m, NULL), 0);
        }
}

/* The engine's shards are written here, by the test thread, before the
 * loop thread starts reading them: no worker runs. */
static void setup(void)
{
        shm_log_set_sink(quiet, NULL);
        ctl_config_defaults(&cfg);
        snprintf(cfg.metrics_addr, sizeof(cfg.metrics_addr), "127.0.0.1:%u", free_port());
        cfg.workers = WORKERS;
        cfg.max_entities = 256;
        struct dp_engine_config ec;
        dp_engine_config_default(&ec, cfg.max_entities);
        ec.workers = WORKERS;
        ec.hugepages = SHM_HUGEPAGES_OFF;
        cr_assert_eq(dp_engine_init(&engine, &ec), 0);
        cr_assert_eq(ctl_loop_init(&loop), 0);
        ctx = (struct ctl_ctx){ .cfg = &cfg, .loop = &loop, .engine = &engine,
                                .started_realtime_ns = 1700000000ull * 1000000000ull,
                                .dataplane_restarts = 3 };
        create("orders.eu.1", DP_MODE_MAILBOX);
        create("orders.eu.2", DP_MODE_MAILBOX);
        create("orders.us.1", DP_MODE_LOG);
        create("users.ann", DP_MODE_LATEST);
        create("caf\xc3\xa9.\"q\"", DP_MODE_BROADCAST);  /* UTF-8 and a quote */
        create(NULL, DP_MODE_CHANNEL);                    /* anonymous */
        cr_assert_eq(ctl_http_open(&http, &ctx), 0);
        cr_assert(ctl_http_enabled(&http));
        atomic_store(&loop_stop, false);
        cr_assert_eq(pthread_create(&loop_thread, NULL, loop_main, NULL), 0);
        loop_running = true;
}

static void teardown(void)
{
        if (loop_running) {
                atomic_store(&loop_stop, true);
                pthread_join(loop_thread, NULL);
                loop_running = false;
        }
        ctl_http_close(&http);
        dp_engine_fini(&engine);
        ctl_loop_fini(&loop);
}

TestSuite(ctl_http, .init = setup, .fini = teardown, .timeout = 30);

/* --- a small client --- */

struct reply {
        int status;
        char head[2048];
        char *body;     /* NUL-terminated, in buf */
        size_t body_len;
        char buf[CTL_HTTP_OUT_BYTES + 4096];
};
static struct reply r;

static int dial(void)
{
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(http.port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        struct timeval tv = { .tv_sec = 5 };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
        while (n > 0) {
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
                if (k < 0)
                        return;      /* the server may close on an oversized request */
                p += k;
                n -= (size_t)k;
        }
}

/* Reads the answer to EOF and splits it. */
static void read_reply(int fd)
{
        size_t len = 0;
        ssize_t k;
        while (len < sizeof(r.buf) - 1 && (k = recv(fd, r.buf + len, sizeof(r.buf) - 1 - len, 0)) > 0)
                len += (size_t)k;
        close(fd);
        r.buf[len] = '\0';
        char *sep = strstr(r.buf, "\r\n\r\n");
        cr_assert_not_null(sep, "no head in %zu bytes: %.200s", len, r.buf);
        size_t hl = (size_t)(sep - r.buf);
        cr_assert_lt(hl, sizeof(r.head));
        memcpy(r.head, r.buf, hl);
        r.head[hl] = '\0';
        r.body = sep + 4;
        r.body_len = len - hl - 4;
        cr_assert_eq(sscanf(r.head, "HTTP/1.1 %d ", &r.status), 1, "%s", r.head);
        const char *cl = strcasestr(r.head, "\r\nContent-Length: ");
        cr_assert_not_null(cl);
        cr_assert_eq(strtoull(cl + 18, NULL, 10), r.body_len, "Content-Length matches the body");
        cr_assert_not_null(strcasestr(r.head, "\r\nConnection: close"));
}

static void request(const char *raw)
{
        int fd = dial();
        send_all(fd, raw, strlen(raw));
        read_reply(fd);
}

static void get(const char *path)
{
        char req[1024];
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n", path);
        request(req);
}

static bool has_header(const char *line)
{
        return strcasestr(r.head, line) != NULL;
}

static json_t *body_json(void)
{
        json_error_t e;
        json_t *j = json_loadb(r.body, r.body_len, 0, &e);
        cr_assert_not_null(j, "JSON at line %d: %s\n%.300s", e.line, e.text, r.body);
        return j;
}

/* --- endpoints --- */

Test(ctl_http, metrics_is_prometheus_text)
{
        get("/metrics");
        cr_assert_eq(r.status, 200);
        cr_assert(has_header("Content-Type: text/plain; version=0.0.4"), "%s", r.head);

        /* Every sample line is `name{labels} value`; every family has HELP
         * and TYPE before its samples. */
        regex_t sample, help, type;
        cr_assert_eq(regcomp(&sample, "^[a-zA-Z_:][a-zA-Z0-9_:]*"
                             "(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\"(,[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\")*\\})?"
                             " -?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?$", REG_EXTENDED | REG_NOSUB), 0);
        cr_assert_eq(regcomp(&help, "^# HELP [a-z_]+ .+$", REG_EXTENDED | REG_NOSUB), 0);
        cr_assert_eq(regcomp(&type, "^# TYPE [a-z_]+ (counter|gauge)$", REG_EXTENDED | REG_NOSUB), 0);
        char family[128] = "";
        unsigned samples = 0;
        for (char *save, *line = strtok_r(r.body, "\n", &save); line != NULL;
             line = strtok_r(NULL, "\n", &save)) {
                if (strncmp(line, "# HELP ", 7) == 0) {
                        cr_assert_eq(regexec(&help, line, 0, NULL, 0), 0, "%s", line);
                        sscanf(line + 7, "%127s", family);
                        continue;
                }
                if (line[0] == '#') {
                        cr_assert_eq(regexec(&type, line, 0, NULL, 0), 0, "%s", line);
                        continue;
                }
                cr_assert_eq(regexec(&sample, line, 0, NULL, 0), 0, "not a sample: '%s'", line);
                cr_assert(strncmp(line, family, strlen(family)) == 0 &&
                          (line[strlen(family)] == '{' || line[strlen(family)] == ' '),
                          "%s outside its family %s", line, family);
                samples++;
        }
        regfree(&sample);
        regfree(&help);
        regfree(&type);
        cr_assert_gt(samples, 50);

        get("/metrics");
        cr_assert(strstr(r.body, "atomq_info{version=\"" ATOMQ_VERSION "\"} 1\n") != NULL);
        cr_assert(strstr(r.body, "atomq_workers 2\n") != NULL);
        cr_assert(strstr(r.body, "atomq_dataplane_restarts_total 3\n") != NULL);
        cr_assert(strstr(r.body, "atomq_drops_total{worker=\"1\",reason=\"no_party\"} ") != NULL);
        cr_assert(strstr(r.body, "atomq_drops_total{worker=\"0\",reason=\"max_deliver\"} ") != NULL);
        cr_assert(strstr(r.body, "atomq_cmd_ring_capacity_bytes{worker=\"1\"} ") != NULL);
        cr_assert(strstr(r.body, "atomq_worker_loops_total{worker=\"0\"} 0\n") != NULL);
        cr_assert(strstr(r.body, "atomq_http_requests_total 1\n") != NULL, "the first request counted");
        /* Entities: 6 made, over both shards; 2 mailbox messages. */
        unsigned long long e0 = 0, e1 = 0, m0 = 0, m1 = 0;
        cr_assert_eq(sscanf(strstr(r.body, "atomq_entities{worker=\"0\"}"), "atomq_entities{worker=\"0\"} %llu", &e0), 1);
        cr_assert_eq(sscanf(strstr(r.body, "atomq_entities{worker=\"1\"}"), "atomq_entities{worker=\"1\"} %llu", &e1), 1);
        cr_assert_eq(e0 + e1, 6);
        cr_assert_eq(sscanf(strstr(r.body, "atomq_messages_total{worker=\"0\"}"), "atomq_messages_total{worker=\"0\"} %llu", &m0), 1);
        cr_assert_eq(sscanf(strstr(r.body, "atomq_messages_total{worker=\"1\"}"), "atomq_messages_total{worker=\"1\"} %llu", &m1), 1);
        cr_assert_eq(m0 + m1, 2);
}

Test(ctl_http, info_is_json_with_every_config_key)
{
        get("/info");
        cr_assert_eq(r.status, 200);
        cr_assert(has_header("Content-Type: application/json"));
        json_t *j = body_json();
        cr_assert_str_eq(json_string_value(json_object_get(j, "version")), ATOMQ_VERSION);
        cr_assert_eq(json_integer_value(json_object_get(j, "pid")), getpid());
        cr_assert_eq(json_integer_value(json_object_get(j, "workers")), WORKERS);
        cr_assert_eq(json_integer_value(json_object_get(j, "entities")), 6);
        cr_assert_eq(json_integer_value(json_object_get(j, "dataplane_restarts")), 3);
        cr_assert_eq((uint64_t)json_integer_value(json_object_get(j, "arena_bytes")), engine.arena.bytes);
        cr_assert(json_is_false(json_object_get(j, "hugepages")));
        cr_assert_str_eq(json_string_value(json_object_get(j, "start")), "2023-11-14T22:13:20Z");
        cr_assert_gt(json_integer_value(json_object_get(j, "uptime_seconds")), 0);
        cr_assert(json_is_string(json_object_get(j, "uptime")));
        json_t *conf = json_object_get(j, "config");
        cr_assert(json_is_object(conf));
        size_t count;
        const struct ctl_config_key *k = ctl_config_keys(&count);
        for (size_t i = 0; i < count; i++)
                if (k[i].kind != CTL_KEY_ACTION)
                        cr_assert(json_is_string(json_object_get(conf, k[i].name)), "config.%s", k[i].name);
        cr_assert_str_eq(json_string_value(json_object_get(conf, "metrics")), cfg.metrics_addr);
        cr_assert_str_eq(json_string_value(json_object_get(conf, "max-entities")), "256");
        json_decref(j);
}

Test(ctl_http, workers_is_a_json_array)
{
        get("/workers");
        cr_assert_eq(r.status, 200);
        cr_assert(has_header("Content-Type: application/json"));
        json_t *j = body_json();
        cr_assert(json_is_array(j));
        cr_assert_eq(json_array_size(j), WORKERS);
        json_int_t entities = 0, msgs = 0;
        for (size_t i = 0; i < WORKERS; i++) {
                json_t *w = json_array_get(j, i);
                cr_assert_eq(json_integer_value(json_object_get(w, "worker")), (json_int_t)i);
                cr_assert(json_is_integer(json_object_get(w, "loops")));
                cr_assert(json_is_integer(json_object_get(w, "idle_sleeps")));
                cr_assert(json_is_null(json_object_get(w, "idle_ratio")), "no worker ran");
                json_t *ring = json_object_get(w, "cmd_ring");
                cr_assert_eq(json_integer_value(json_object_get(ring, "used_bytes")), 0);
                cr_assert_gt(json_integer_value(json_object_get(ring, "capacity_bytes")), 0);
                json_t *s = json_object_get(w, "shard");
                entities += json_integer_value(json_object_get(s, "entities"));
                msgs += json_integer_value(json_object_get(s, "messages"));
                cr_assert_eq(json_integer_value(json_object_get(s, "capacity")), 256);
                cr_assert(json_is_integer(json_object_get(json_object_get(s, "drops"), "full")));
        }
        cr_assert_eq(entities, 6);
        cr_assert_eq(msgs, 2);
        json_decref(j);
}

/* The names in an /entities answer, in order, joined by spaces. */
static json_t *entities(const char *query, char *names, size_t len)
{
        char path[256];
        snprintf(path, sizeof(path), "/entities%s", query);
        get(path);
        cr_assert_eq(r.status, 200, "%s: %s", path, r.body);
        json_t *j = body_json();
        json_t *list = json_object_get(j, "entities");
        cr_assert(json_is_array(list));
        cr_assert_eq(json_integer_value(json_object_get(j, "count")), (json_int_t)json_array_size(list));
        names[0] = '\0';
        for (size_t i = 0; i < json_array_size(list); i++) {
                json_t *name = json_object_get(json_array_get(list, i), "name");
                const char *s = json_is_null(name) ? "(anon)" : json_string_value(name);
                snprintf(names + strlen(names), len - strlen(names), "%s%s", i ? " " : "", s);
        }
        return j;
}

Test(ctl_http, entities_by_prefix_and_limit)
{
        char names[1024];
        json_t *j = entities("", names, sizeof(names));
        cr_assert_eq(json_integer_value(json_object_get(j, "count")), 6, "%s", names);
        cr_assert(strstr(names, "(anon)") != NULL, "no prefix: anonymous ones too");
        cr_assert(strstr(names, "caf\xc3\xa9.\"q\"") != NULL, "UTF-8 and quote survive: %s", names);
        cr_assert(json_is_false(json_object_get(j, "truncated")));
        json_decref(j);

        j = entities("?prefix=orders.eu.", names, sizeof(names));
        cr_assert_eq(json_integer_value(json_object_get(j, "count")), 2, "%s", names);
        cr_assert(strstr(names, "orders.eu.1") && strstr(names, "orders.eu.2"));
        json_t *e = json_array_get(json_object_get(j, "entities"), 0);
        cr_assert_str_eq(json_string_value(json_object_get(e, "mode")), "mailbox");
        cr_assert_str_eq(json_string_value(json_object_get(e, "storage")), "mem");
        cr_assert_eq(json_integer_value(json_object_get(e, "msgs")), 1);
        cr_assert_eq(strncmp(json_string_value(json_object_get(e, "handle")), "0x", 2), 0);
        json_decref(j);

        j = entities("?prefix=orders&limit=2", names, sizeof(names));
        cr_assert_eq(json_integer_value(json_object_get(j, "count")), 2);
        cr_assert(json_is_true(json_object_get(j, "truncated")), "a third order exists");
        json_decref(j);

        j = entities("?limit=3&prefix=orders", names, sizeof(names));
        cr_assert_eq(json_integer_value(json_object_get(j, "count")), 3);
        cr_assert(json_is_false(json_object_get(j, "truncated")), "exactly three");
        json_decref(j);

        j = entities("?prefix=caf%C3%A9.%22", names, sizeof(names));
        cr_assert_eq(json_integer_value(json_object_get(j, "count")), 1, "percent-decoded");
        json_decref(j);

        j = entities("?prefix=nothing&other=ignored", names, sizeof(names));
        cr_assert_eq(json_integer_value(json_object_get(j, "count")), 0);
        json_decref(j);
}

Test(ctl_http, entities_bad_parameters)
{
        static const char *const bad[] = {
                "/entities?limit=0", "/entities?limit=10001", "/entities?limit=ten",
                "/entities?limit=", "/entities?prefix=%zz", "/entities?prefix=%4",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                get(bad[i]);
                cr_assert_eq(r.status, 400, "%s -> %d", bad[i], r.status);
        }
        get("/entities?limit=10000");
        cr_assert_eq(r.status, 200);
}

Test(ctl_http, status_page)
{
        get("/");
        cr_assert_eq(r.status, 200);
        cr_assert(has_header("Content-Type: text/html"));
        cr_assert(strstr(r.body, "<html") != NULL);
        cr_assert(strstr(r.body, "fetch('/info')") != NULL);
        cr_assert(strstr(r.body, "fetch('/workers')") != NULL);
        cr_assert(strstr(r.body, "http-equiv=\"refresh\"") != NULL, "works without JS too");
}

/* --- what is refused --- */

Test(ctl_http, unknown_path_is_404)
{
        get("/nope");
        cr_assert_eq(r.status, 404);
        get("/metrics/");
        cr_assert_eq(r.status, 404);
        get("/metricsx");
        cr_assert_eq(r.status, 404);
}

Test(ctl_http, other_methods_are_405)
{
        static const char *const methods[] = { "POST", "PUT", "DELETE", "HEAD", "OPTIONS" };
        for (size_t i = 0; i < 5; i++) {
                char req[128];
                snprintf(req, sizeof(req), "%s /metrics HTTP/1.1\r\nHost: x\r\n\r\n", methods[i]);
                request(req);
                cr_assert_eq(r.status, 405, "%s", methods[i]);
                cr_assert(has_header("\r\nAllow: GET"), "%s", r.head);
        }
}

Test(ctl_http, malformed_requests_are_400)
{
        static const struct { const char *req; int status; } bad[] = {
                { "garbage\r\n\r\n", 400 },
                { "GET\r\n\r\n", 400 },
                { "GET /metrics\r\n\r\n", 400 },
                { "GET  /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
                { "GET /metrics HTTP/1.1\r\n\r\n", 400 },               /* no Host */
                { "GET /metrics HTTP/1.1\r\nHost x\r\n\r\n", 400 },
                { "GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n", 400 },
                { "GET metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
                { "G(T /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
                { "GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n", 505 },
                { "GET /metrics FTP/1.1\r\nHost: x\r\n\r\n", 400 },
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                request(bad[i].req);
                cr_assert_eq(r.status, bad[i].status, "'%s' -> %d", bad[i].req, r.status);
        }
        /* HTTP/1.0 needs no Host; bare newlines are taken. */
        request("GET /info HTTP/1.0\n\n");
        cr_assert_eq(r.status, 200);
}

Test(ctl_http, oversized_head_is_431)
{
        static char req[CTL_HTTP_REQUEST_BYTES_MAX + 4096];
        int n = snprintf(req, sizeof(req), "GET /metrics HTTP/1.1\r\nHost: x\r\n");
        while ((size_t)n < CTL_HTTP_REQUEST_BYTES_MAX + 100)
                n += snprintf(req + n, sizeof(req) - (size_t)n, "X-Pad: %0100d\r\n", 0);
        snprintf(req + n, sizeof(req) - (size_t)n, "\r\n");
        request(req);
        cr_assert_eq(r.status, 431);

        memset(req, 'a', CTL_HTTP_REQUEST_BYTES_MAX + 10);
        memcpy(req, "GET /", 5);
        req[CTL_HTTP_REQUEST_BYTES_MAX + 10] = '\0';
        request(req);
        cr_assert_eq(r.status, 400, "a request line that never ends");

        get("/info");
        cr_assert_eq(r.status, 200, "the server carries on");
}

Test(ctl_http, request_in_pieces)
{
        static const char req[] = "GET /workers HTTP/1.1\r\nHost: x\r\n\r\n";
        int fd = dial();
        for (size_t i = 0; i < sizeof(req) - 1; i += 5) {
                send_all(fd, req + i, sizeof(req) - 1 - i < 5 ? sizeof(req) - 1 - i : 5);
                usleep(2000);
        }
        read_reply(fd);
        cr_assert_eq(r.status, 200);
}

/* Waits (bounded) until `busy` client slots are taken. The loop thread
 * writes the states; reading them here is good enough for a test. */
static void wait_slots(uint32_t busy)
{
        for (int tries = 0; tries < 500; tries++) {
                uint32_t n = 0;
                for (uint32_t i = 0; i < CTL_HTTP_CLIENTS_MAX; i++)
                        n += __atomic_load_n(&http.clients[i].state, __ATOMIC_RELAXED) != CTL_HTTP_FREE;
                if (n == busy)
                        return;
                usleep(10000);
        }
        cr_assert_fail("never %u busy client slots", busy);
}

/* An answer larger than the socket takes at once waits for EPOLLOUT; a
 * client that half-closes after its request still gets all of it. */
Test(ctl_http, slow_reader_gets_the_whole_answer)
{
        char name[32];
        for (int i = 0; i < 300; i++) {
                snprintf(name, sizeof(name), "bulk.%03d", i);
                create(name, DP_MODE_LATEST);
        }
        static const char req[] = "GET /entities?prefix=bulk.&limit=10000 HTTP/1.1\r\nHost: x\r\n\r\n";
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int small = 4096;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(http.port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        /* Shrink the server side's send buffer too (the fd is in this
         * process), so the answer cannot all go out at once. */
        usleep(50000);
        int shrunk = 0;
        for (uint32_t i = 0; i < CTL_HTTP_CLIENTS_MAX; i++)
                if (http.clients[i].state == CTL_HTTP_READING &&
                    setsockopt(http.clients[i].fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)) == 0)
                        shrunk++;
        cr_assert_eq(shrunk, 1);
        send_all(fd, req, sizeof(req) - 1);
        shutdown(fd, SHUT_WR);
        usleep(200000);   /* the server fills the window and waits */
        read_reply(fd);
        cr_assert_eq(r.status, 200);
        cr_assert_gt(r.body_len, 300u * 100);
        json_t *j = body_json();
        cr_assert_eq(json_integer_value(json_object_get(j, "count")), 300);
        json_decref(j);
}

Test(ctl_http, one_client_too_many_is_503)
{
        int idle[CTL_HTTP_CLIENTS_MAX];
        for (uint32_t i = 0; i < CTL_HTTP_CLIENTS_MAX; i++)
                idle[i] = dial();
        wait_slots(CTL_HTTP_CLIENTS_MAX);   /* the loop accepted them all */
        int fd = dial();
        read_reply(fd);
        cr_assert_eq(r.status, 503);
        for (uint32_t i = 0; i < CTL_HTTP_CLIENTS_MAX; i++)
                close(idle[i]);
        wait_slots(0);                      /* the loop saw them go */
        get("/info");
        cr_assert_eq(r.status, 200);
        json_t *j = body_json();
        cr_assert_eq(json_integer_value(json_object_get(json_object_get(j, "http"), "rejected")), 1);
        json_decref(j);
}

/* --- the listener itself --- */

Test(ctl_http, port_in_use_is_an_error)
{
        struct ctl_http second;
        cr_assert_eq(ctl_http_open(&second, &ctx), -EADDRINUSE);
        cr_assert_not(ctl_http_enabled(&second));
        ctl_http_close(&second);
        ctl_http_close(&second);
}

Test(ctl_http, metrics_off_opens_nothing)
{
        struct ctl_config off = cfg;
        struct ctl_ctx c2 = ctx;
        struct ctl_http h;
        strcpy(off.metrics_addr, "off");
        c2.cfg = &off;
        cr_assert_eq(ctl_http_open(&h, &c2), 0);
        cr_assert_not(ctl_http_enabled(&h));
        ctl_http_close(&h);
        struct ctl_http zero;
        memset(&zero, 0, sizeof(zero));
        ctl_http_close(&zero);
}

/* --- renderers, without HTTP --- */

Test(ctl_http, renderers_report_a_short_buffer)
{
        struct ctl_metrics m;
        static char buf[1 << 20];
        ctl_metrics_init(&m, &ctx, NULL);
        int n = ctl_metrics_prometheus(&m, buf, sizeof(buf));
        cr_assert_gt(n, 0);
        cr_assert_eq(ctl_metrics_prometheus(&m, buf, (size_t)n), -ENOSPC);
        cr_assert_eq(ctl_metrics_prometheus(&m, buf, (size_t)n + 1), n);
        cr_assert_eq(ctl_metrics_info_json(&m, buf, 64), -ENOSPC);
        cr_assert_eq(ctl_metrics_workers_json(&m, buf, 64), -ENOSPC);
        cr_assert_eq(ctl_metrics_html(buf, 64), -ENOSPC);
        cr_assert_eq(ctl_metrics_entities_json(&m, "", 0, 0, buf, sizeof(buf)), -EINVAL);
        cr_assert_eq(ctl_metrics_entities_json(&m, "", 0, CTL_ENTITIES_LIMIT_MAX + 1, buf,
                                               sizeof(buf)), -EINVAL);
}

/* A buffer too small for every row cuts the list at a row and stays JSON. */
Test(ctl_http, entities_cut_by_the_buffer_stay_json)
{
        struct ctl_metrics m;
        static char buf[1 << 16];
        ctl_metrics_init(&m, &ctx, NULL);
        int full = ctl_metrics_entities_json(&m, "", 0, 100, buf, sizeof(buf));
        cr_assert_gt(full, 0);
        for (size_t len = 400; len < (size_t)full; len += 97) {
                int n = ctl_metrics_entities_json(&m, "", 0, 100, buf, len);
                cr_assert_gt(n, 0, "len %zu", len);
                json_error_t e;
                json_t *j = json_loadb(buf, (size_t)n, 0, &e);
                cr_assert_not_null(j, "len %zu: %s\n%s", len, e.text, buf);
                cr_assert(json_is_true(json_object_get(j, "truncated")), "len %zu", len);
                cr_assert_lt(json_integer_value(json_object_get(j, "count")), 6);
                json_decref(j);
        }
}

/* Idle workers yield and sleep: the ratio over a window is in (0, 1]. */
Test(ctl_http, idle_ratio_from_running_workers)
{
        struct ctl_metrics m;
        static char buf[1 << 16];
        ctl_metrics_init(&m, &ctx, NULL);
        uint64_t t0 = m.window_start_ns;
        cr_assert_eq(dp_engine_start(&engine), 0);
        usleep(100000);
        ctl_metrics_sample(&m, t0 + CTL_METRICS_WINDOW_NS / 2);
        cr_assert_eq(m.idle_ppm[0], -1, "the window is not closed yet");
        ctl_metrics_sample(&m, t0 + CTL_METRICS_WINDOW_NS);
        dp_engine_stop(&engine);
        for (uint32_t i = 0; i < WORKERS; i++)
                cr_assert(m.idle_ppm[i] > 0 && m.idle_ppm[i] <= 1000000, "worker %u: %d ppm", i,
                          m.idle_ppm[i]);
        int n = ctl_metrics_prometheus(&m, buf, sizeof(buf));
        cr_assert_gt(n, 0);
        cr_assert(strstr(buf, "atomq_worker_idle_ratio{worker=\"1\"} 0.") != NULL ||
                  strstr(buf, "atomq_worker_idle_ratio{worker=\"1\"} 1.0") != NULL);
}
