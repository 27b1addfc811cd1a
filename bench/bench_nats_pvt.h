/* bench_nats_pvt.h - what the files of scenario "nats" share: a tiny
 * blocking NATS client (bench_nats_client.c) and its limits, and the
 * scenario's state, cases and tallies, which bench_nats.c (options, the
 * run loop, the report) hands to the throughput cases (bench_nats_stream.c)
 * and to the latency case (bench_nats_reqrep.c).
 *
 *      atomq-bench nats pubsub --url nats://127.0.0.1:4222 --json
 *
 * The client speaks the NATS client protocol to any server (atomqd's
 * --nats listener, nats-server): it reads INFO, sends CONNECT and syncs
 * with PING/PONG, buffers what it writes so that many PUBs go out in one
 * send(), and parses MSG/HMSG control lines, skipping their payloads (only
 * the line matters to a load generator; the trailing CRLF is checked so a
 * framing error shows) unless the connection keeps them to read answers
 * (churn --path nats). A connection belongs to one thread at a time: no
 * locks. Sockets are blocking with a receive and send timeout of
 * BENCH_NATS_IO_TIMEOUT_MS, so a thread blocked on a silent server wakes up
 * to look at its flags and at the give-up time instead of hanging.
 */
#ifndef ATOMQ_BENCH_NATS_PVT_H
#define ATOMQ_BENCH_NATS_PVT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench/bench_clock.h"
#include "bench/bench_report.h"
#include "bench/bench_scenario.h"
#include "shm/shm_base.h"

/* --url takes a comma-separated list of servers, alternated run by run. */
#define BENCH_NATS_URLS_MAX 4u
#define BENCH_NATS_URL_BYTES 256u
#define BENCH_NATS_PORT_DEFAULT "4222"
/* A control line (INFO, MSG, -ERR) longer than this is a protocol error.
 * nats-server's own limit is 4 KiB for what clients send; its INFO grows
 * with connect_urls in a cluster, hence the room. */
#define BENCH_NATS_LINE_MAX 16384u
/* One recv() takes up to this much: thousands of small MSGs a call. */
#define BENCH_NATS_RBUF_BYTES (256u * 1024u)
/* What put() gathers before a send(). */
#define BENCH_NATS_WBUF_BYTES (64u * 1024u)
#define BENCH_NATS_IO_TIMEOUT_MS 50
#define BENCH_NATS_CONNECT_TIMEOUT_MS 2000
/* The handshake (INFO, CONNECT, PING -> PONG) must be done by then. */
#define BENCH_NATS_HANDSHAKE_NS 5000000000ull
/* The largest payload a keep_payload connection takes: a control line
 * and it, with its CRLF, must fit the receive buffer at once. */
#define BENCH_NATS_KEEP_MAX (BENCH_NATS_RBUF_BYTES - BENCH_NATS_LINE_MAX - 2u)
#define BENCH_NATS_ERR_BYTES 160u
#define BENCH_NATS_INFO_STR_BYTES 64u

/* What the server said about itself in INFO. */
struct bench_nats_info {
        char server_name[BENCH_NATS_INFO_STR_BYTES];
        char go[BENCH_NATS_INFO_STR_BYTES];     /* nats-server: "go1.19.8" */
        char version[BENCH_NATS_INFO_STR_BYTES];
        uint64_t max_payload;                   /* 0: not announced */
        bool headers;
        bool seen;
};

/* One server of --url: where it is and what it turned out to be. */
struct bench_nats_server {
        char url[BENCH_NATS_URL_BYTES];         /* as given */
        char host[BENCH_NATS_URL_BYTES];
        char port[8];
        char system[BENCH_NAME_BYTES];          /* "atomq", "nats-server", ... */
        bool known;                             /* system is from INFO */
        uint64_t max_payload;
};

/* A MSG or HMSG as its control line gave it. The payload is skipped
 * unless the connection keeps payloads (keep_payload). */
struct bench_nats_msg {
        const char *subject;
        size_t subject_len;
        const char *reply;                      /* NULL when there is none */
        size_t reply_len;
        uint64_t payload_bytes;                 /* headers included (HMSG) */
        const char *payload;                    /* NULL unless keep_payload */
        bool hmsg;
};

struct bench_nats_conn;
typedef void bench_nats_msg_fn(void *arg, struct bench_nats_conn *c,
                               const struct bench_nats_msg *m);

struct bench_nats_conn {
        int fd;
        uint64_t give_up_ns;    /* shm_clock_ns(): blocking loops fail past it */
        bench_nats_msg_fn *on_msg;  /* NULL: messages are only counted */
        void *on_msg_arg;
        /* on_msg is called once the whole payload is in, and sees it (at
         * most BENCH_NATS_KEEP_MAX bytes: answers, not bulk data). */
        bool keep_payload;
        /* Receiving: rbuf[rpos, rlen) is unparsed. */
        char *rbuf;
        size_t rpos, rlen;
        uint64_t skip;          /* payload bytes still to skip */
        bool want_crlf;         /* a payload ended: its CRLF comes next */
        bool pong_due;          /* the server PINGed: PONG after this read */
        /* Sending. */
        char *wbuf;
        size_t wlen;
        /* Counters: one writer, the thread owning the connection. */
        uint64_t msgs;          /* MSG and HMSG received */
        uint64_t hmsgs;
        uint64_t pings_out;     /* our PINGs ... */
        uint64_t pongs;         /* ... and the PONGs for them */
        uint64_t errs;          /* -ERR received */
        char err[BENCH_NATS_ERR_BYTES]; /* the last -ERR or parse error */
        struct bench_nats_info info;
};

/* Fills s from "nats://HOST:PORT", "HOST:PORT", "HOST" or "[V6]:PORT"
 * (port 4222 when left out). -EINVAL: empty, too long, user info, or a
 * port that is not a number from 1 to 65535. */
int bench_nats_url_parse(struct bench_nats_server *s, const char *url);

/* Connects to s, reads INFO, sends CONNECT and syncs with PING/PONG.
 * -ENOMEM; -errno of connect (-ECONNREFUSED, -ETIMEDOUT after
 * BENCH_NATS_CONNECT_TIMEOUT_MS); -EHOSTUNREACH when the name does not
 * resolve; -EPROTO when the server does not speak NATS or answered CONNECT
 * with -ERR (c->err says what). On error c holds no resources. */
int bench_nats_conn_open(struct bench_nats_conn *c, const struct bench_nats_server *s);

void bench_nats_conn_close(struct bench_nats_conn *c);

/* Appends to the write buffer, sending it first when p does not fit
 * (a p larger than the buffer is sent straight). 0 or a send error. */
int bench_nats_put(struct bench_nats_conn *c, const void *p, size_t len);

/* Sends what is buffered, then p straight from where it is (a block of
 * PUBs built once). Errors as bench_nats_flush. */
int bench_nats_write(struct bench_nats_conn *c, const void *p, size_t len);

/* "SUB subject [queue] sid": appended, not sent. -EINVAL when too long. */
int bench_nats_sub(struct bench_nats_conn *c, const char *subject, const char *queue,
                   unsigned sid);

/* A PING appended (not sent), counted in pings_out. */
int bench_nats_ping(struct bench_nats_conn *c);

/* Sends the write buffer. -EPIPE or -ECONNRESET when the server went,
 * -ETIMEDOUT when past give_up_ns, other -errno of send(). */
int bench_nats_flush(struct bench_nats_conn *c);

/* One recv() (waits at most BENCH_NATS_IO_TIMEOUT_MS) and everything it
 * completed parsed: MSGs counted (and handed to on_msg), PONGs counted,
 * server PINGs answered at once. Returns the bytes received, 0 after the
 * timeout, -ECONNRESET when the server closed (c->err holds its last -ERR
 * if it sent one), -EPROTO on something that is not NATS, or an error of
 * flushing the answer to a PING. */
int bench_nats_poll(struct bench_nats_conn *c);

/* PING, then reads until its PONG (and every earlier one) is in: the
 * server has handled everything sent before. Errors of poll and flush;
 * -ETIMEDOUT past give_up_ns. */
int bench_nats_sync(struct bench_nats_conn *c);

/* Reads until fewer than `allowed` of our PINGs are unanswered. */
int bench_nats_pongs_wait(struct bench_nats_conn *c, uint64_t allowed);

/* Where the value of "key" starts in the JSON text json[0, len) (a flat
 * object, or the first such key at any depth), or NULL; *rest gets the
 * bytes left from there. Keys shorter than BENCH_NATS_INFO_STR_BYTES - 2.
 * Also used on answers to requests (scenario durable). */
const char *bench_nats_json_find(const char *json, size_t len, const char *key, size_t *rest);

/* ---- the scenario: bench_nats.c, bench_nats_stream.c, bench_nats_reqrep.c */

/* Subscriber connections of fanout and queue: a thread each. */
#define BENCH_NATS_SUBS_MAX 64u
/* A run not over this long after its window closed has failed. */
#define BENCH_NATS_STALL_NS 5000000000ull
#define BENCH_NATS_SUBJECT_BYTES 96u
/* What different threads write is kept two cache lines apart: the
 * spatial prefetcher pulls lines in pairs. */
#define BENCH_NATS_GUARD (2 * SHM_CACHE_LINE)

enum bench_nats_kind {
        BENCH_NATS_PUB,
        BENCH_NATS_PUBSUB,
        BENCH_NATS_FANOUT,
        BENCH_NATS_QUEUE,
        BENCH_NATS_REQREP,
        BENCH_NATS_KINDS,
};

/* The case words, which are also the results' case names (bench_nats.c). */
extern const char *const bench_nats_kind_names[BENCH_NATS_KINDS];

/* What the scenario keeps across its cases. */
struct bench_nats_env {
        const struct bench_opts *o;
        struct bench_progress *pg;
        struct bench_clock clock;
        struct bench_nats_server servers[BENCH_NATS_URLS_MAX];
        unsigned servers_n;
        bool kinds[BENCH_NATS_KINDS];
        unsigned sizes_n, sizes_bytes[BENCH_LIST_MAX];
        unsigned subs_n, subs[BENCH_LIST_MAX];
        unsigned serial; /* runs so far: every run has subjects of its own */
};

/* One case: what is measured, with which message size and subscribers. */
struct bench_nats_case {
        enum bench_nats_kind kind;
        unsigned msg_bytes;
        unsigned subs; /* subscriber connections; 0 for pub and reqrep */
};

/* The share of the time a thread was ready to run that it ran. */
struct bench_nats_share {
        uint64_t run_ns, wait_ns;
};

/* What --runs runs of a case against one server add up to. */
struct bench_nats_tally {
        double rates[BENCH_RUNS_MAX];
        double sent_rates[BENCH_RUNS_MAX];
        struct bench_latency lats[BENCH_RUNS_MAX];
        uint64_t sent, received, lost, dups, late, errors;
        double share;
        int rc;         /* the first failure: no more runs, no result */
};

static inline void bench_nats_tally_share(struct bench_nats_tally *t, double share)
{
        t->share = share < t->share ? share : t->share;
}

/* A thread's schedstat now (zeros where the kernel has none) ... */
void bench_nats_schedstat(struct bench_nats_share *s);

/* ... and its share since start: 1.0 when nothing is known. */
double bench_nats_share_end(const struct bench_nats_share *start);

/* Ends the progress line and says on stderr which connection of a run
 * failed (who) and why: strerror(-rc), and c's last -ERR when c is given. */
void bench_nats_say(const struct bench_nats_env *env, const struct bench_nats_case *cs,
                    const struct bench_nats_server *s, const char *who, int rc,
                    const struct bench_nats_conn *c);

/* --url's comma-separated servers into env->servers. -EINVAL after saying
 * why, naming the scenario (also used by scenario durable). */
int bench_nats_urls(struct bench_nats_env *env, const char *list, const char *scenario);

/* The first time s answers: its system name from INFO ("atomq",
 * "nats-server"; a second server of one kind is "atomq-2") and its
 * max_payload. Later calls change nothing. */
void bench_nats_server_learn(struct bench_nats_env *env, struct bench_nats_server *s,
                             const struct bench_nats_info *in);

/* A run's first connection is open: s learns its name from c's INFO.
 * -EMSGSIZE (said on stderr) when cs's messages are above its max_payload. */
int bench_nats_greeted(struct bench_nats_env *env, const struct bench_nats_case *cs,
                       struct bench_nats_server *s, const struct bench_nats_conn *c);

/* A run's window from now on, after --warmup, for --duration; give_up_ns
 * is BENCH_NATS_STALL_NS past its end. */
void bench_nats_times(const struct bench_nats_env *env, uint64_t *open_ticks,
                      uint64_t *close_ticks, uint64_t *give_up_ns);

/* One run of pub, pubsub, fanout or queue against s, added to t as run
 * number `run` (bench_nats_stream.c). 0, or the -errno of the first
 * failure, already said on stderr. */
int bench_nats_tput_once(struct bench_nats_env *env, const struct bench_nats_case *cs,
                         struct bench_nats_server *s, struct bench_nats_tally *t,
                         unsigned run);

/* One run of reqrep against s, added to t as run number `run`
 * (bench_nats_reqrep.c). 0, or the -errno of the first failure; a failed
 * connection is said on stderr (-EHOSTUNREACH: no responders). */
int bench_nats_rr_once(struct bench_nats_env *env, const struct bench_nats_case *cs,
                       struct bench_nats_server *s, struct bench_nats_tally *t,
                       unsigned run);

#endif /* ATOMQ_BENCH_NATS_PVT_H */
