/* bench_main.c - atomq-bench, the bundled load generator: command line,
 * scenario table and output.
 *
 *      atomq-bench ring
 *      atomq-bench ring --runs 5 --json > ring.jsonl
 *      atomq-bench ring --svg /tmp/ring.svg --quiet
 *      atomq-bench churn --entities 1000000,10000000 --json
 *      atomq-bench ipc --runs 3 --json
 *      atomq-bench ipc --control /tmp/aq/control.sock --runs 3 --json
 *      atomq-bench churn --path agent --control /tmp/aq/control.sock --json
 *      atomq-bench churn --path nats --url nats://127.0.0.1:4222 --json
 *      atomq-bench route --subs 10000,1000000 --svg /tmp/route.svg
 *      atomq-bench nats pubsub --url nats://127.0.0.1:4222 --json
 *      atomq-bench durable send --url nats://127.0.0.1:4222 --sync batch --json
 *
 * A scenario is a function that appends results to a report
 * (bench_scenario.h); adding one is a file and a row in bench_scenarios[].
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench_cpu.h"
#include "bench/bench_progress.h"
#include "bench/bench_report.h"
#include "bench/bench_scenario.h"
#include "bench/bench_svg.h"
#include "shm/shm_log.h"

/* Defaults sized so `atomq-bench ring` (8 cases x 3 runs) takes ~17 s:
 * long enough for stable medians, short enough to run on every change. */
#define BENCH_DURATION_DEFAULT_S 0.5
#define BENCH_WARMUP_DEFAULT_S 0.2
#define BENCH_RUNS_DEFAULT 3
#define BENCH_DURATION_MIN_S 0.001
#define BENCH_LIST_VALUE_MAX 65536u

static const struct bench_scenario bench_scenarios[] = {
        { "churn", "entity table: create, hold and destroy N named mailboxes in one shard",
          "for each --entities N (default 1000000, at most 10000000): a table and a\n"
          "timer wheel for N in an shm arena (hugepages when reserved); each run creates\n"
          "N mailboxes churn.<i> in bursts of 32, checks all are live and finds a sample\n"
          "by name, destroys them by handle (path table), then again destroying by name\n"
          "(path table-byname). The names are formatted before timing: it measures the\n"
          "table, not snprintf. One table per N serves every run; a first cold cycle on\n"
          "the fresh table (first-touch page faults) is reported apart as\n"
          "cold_creates_per_s. Runs on the first CPU of --cpus.\n"
          "--path control: `create mailboxes` and `destroy prefix` through the control\n"
          "socket of the atomqd at --control; --path agent: one libatomq connection to\n"
          "it creates the N mailboxes with atomq_create_many and destroys them with\n"
          "atomq_destroy_many (pipelined; atomqd needs --max-entities of at least N).\n"
          "--path nats: one NATS connection to the atomqd at --url creates N (default\n"
          "200000) mailboxes with $AQ.MAILBOX.CREATE and destroys them with\n"
          "$AQ.MAILBOX.DESTROY.<name>, pipelined (1024 requests in flight, each answer\n"
          "checked); timed from the first request to the last answer.",
          BENCH_OPTF_CPUS | BENCH_OPTF_ENTITIES | BENCH_OPTF_PATH | BENCH_OPTF_CONTROL |
                  BENCH_OPTF_URL,
          bench_churn_run },
        { "durable", "acknowledged durable publishes: atomq mailbox/log against JetStream",
          "`durable CASE --url nats://HOST:PORT[,...]`; CASE is send or append (none:\n"
          "both). One connection per run publishes messages of --sizes bytes (default 16)\n"
          "as requests, each with a reply subject of its own, at most --window (default\n"
          "256) unacknowledged, written in batches; an ack is the answer that says the\n"
          "message is stored. What the server is comes from its INFO:\n"
          "atomq        each run creates durbench.<pid>.<n>[.<gen>] with storage --storage\n"
          "             (default disk) and sync --sync (always, batch (default) or none):\n"
          "             send: a mailbox, $AQ.MAILBOX.SEND.<name>, ack {\"ok\":true,\"seq\":N};\n"
          "             a fresh mailbox every --rotate sends (default 1024; 0: one a run),\n"
          "             created and destroyed in the pipeline, since nobody fetches and a\n"
          "             full mailbox refuses sends (FULL); append: a log (it drops its\n"
          "             oldest past 16384 messages or 2 MiB), $AQ.LOG.APPEND.<name>, ack\n"
          "             {\"ok\":true,\"offset\":N}. An error answer to the create (e.g.\n"
          "             NOT_SUPPORTED) fails the case, printed.\n"
          "nats-server  JetStream: each run creates a file stream (limits, max_msgs -1) on\n"
          "             durbench.<pid>.<n> and deletes it after; ack: the PubAck\n"
          "             {\"stream\":...,\"seq\":N}; --sync does not apply (2.9 writes before\n"
          "             the ack and fsyncs every 2 minutes). Needs nats-server -js -sd DIR.\n"
          "msgs_per_s: acks read in the window; p50/p99/p999: publish written to ack\n"
          "read. Wrong or error answers are errors (the first is printed). Several --url\n"
          "servers are alternated run by run.",
          BENCH_OPTF_DURATION | BENCH_OPTF_SIZES | BENCH_OPTF_URL | BENCH_OPTF_CASE |
                  BENCH_OPTF_SYNC | BENCH_OPTF_STORAGE | BENCH_OPTF_WINDOW | BENCH_OPTF_ROTATE,
          bench_durable_run },
        { "ipc", "direct channels between two colocated agents, against the bare ring",
          "32-byte messages over a channel of 64 KiB rings between two threads pinned to\n"
          "--cpus, each end with its own mapping of the memfd: ipc-channel (msgs/s one\n"
          "way, send + recv/release), ipc-channel-pingpong (round trips, p50/p99/p999 ns),\n"
          "channel-open (create + attach + close, 10000 per run, on one thread) and\n"
          "ring-baseline (the bare shm_ring, 32-byte slots, same CPUs, same run).\n"
          "ipc-pubsub and ipc-pingpong need a running atomqd (--control PATH): two\n"
          "agent connections, one publishing 32-byte messages through a dataplane\n"
          "worker to the other (msgs/s received, sent_per_s, dropped, ring_ratio over\n"
          "ring-baseline), and one connection's round trips through the worker to its\n"
          "own subscription (p50/p99/p999 ns). Unpinned unless --cpus is given; with\n"
          "--cpus A,A, or unpinned with fewer than 3 CPUs, one thread publishes a burst\n"
          "and then receives, in turn (three busy threads on two CPUs drop deliveries).\n"
          "With --control also channel-open-atomqd: atomq_channel_open by one agent,\n"
          "atomq_channel_join by another, both close (500 per run, p50/p99/p999 ns).",
          BENCH_OPTF_DURATION | BENCH_OPTF_CPUS | BENCH_OPTF_CONTROL, bench_ipc_run },
        { "nats", "NATS client protocol load on any NATS server (atomqd --nats, nats-server)",
          "`nats CASE --url nats://HOST:PORT`; CASE is one of (none: all five):\n"
          "pub     one publisher, no subscriber: msgs/s the server took (PING/PONG sync at\n"
          "        both ends of the window);\n"
          "pubsub  one publisher, one subscriber connection: msgs/s received;\n"
          "fanout  one publisher, --subs N subscriber connections (default 4, at most 64):\n"
          "        msgs/s delivered in all;\n"
          "queue   the same, the N in one queue group: each message exactly once;\n"
          "reqrep  one responder, one requester doing sequential requests: p50/p99/p999 ns\n"
          "        and requests/s (round-trips/s).\n"
          "Messages of --sizes bytes (default 16). PUBs go out in blocks of up to 1024 per\n"
          "send(), each ended by a PING, at most 16 unanswered; the publisher keeps at\n"
          "most 4 MiB of messages ahead of its slowest subscriber, so no subscriber is a\n"
          "slow consumer. Lost, duplicated or wrong messages and -ERRs are errors. Every\n"
          "run uses new connections; several servers in --url (comma-separated, at most\n"
          "4) are alternated run by run, and each result's system is what the server's\n"
          "INFO says (atomq, nats-server). cpu_share: the share of the time a client\n"
          "thread was ready to run that it ran (they block on sockets).",
          BENCH_OPTF_DURATION | BENCH_OPTF_SIZES | BENCH_OPTF_SUBS | BENCH_OPTF_URL |
                  BENCH_OPTF_CASE,
          bench_nats_run },
        { "ring", "SPSC shm_ring between two pinned threads: throughput and ping-pong latency",
          "throughput for --sizes (default 8,32,256 bytes) x --bursts (default 1,32);\n"
          "round trips of an 8-byte message over two rings (case pingpong), and over\n"
          "two bare cache lines (system baseline, case cacheline: the hardware's floor)",
          BENCH_OPTF_DURATION | BENCH_OPTF_CPUS | BENCH_OPTF_SIZES | BENCH_OPTF_BURSTS,
          bench_ring_run },
        { "route", "match routing: published subjects through a subject trie of N subscriptions",
          "for each --subs N (default 10000,1000000, at most 10000000): a trie in an shm\n"
          "arena holding N - 6 subscriptions user.<i>.inbox and 6 wildcard ones\n"
          "(user.*.inbox, user.>, *.*.inbox, ...); then dp_trie_match for --duration over\n"
          "a pre-generated random sequence of 2^20 subjects (90% user.<i>.inbox, 1 in 65\n"
          "of them with no exact subscriber; 5% user.<i>.outbox; 5% svc.<i>.inbox).\n"
          "msgs_per_s = matches_per_s (one message, one match call); every delivery is\n"
          "counted and checked. Runs on the first CPU of --cpus.",
          BENCH_OPTF_DURATION | BENCH_OPTF_CPUS | BENCH_OPTF_SUBS, bench_route_run },
        { "udp", "atomq datagrams: the DPDK backend, the io_uring UDP backend, a bare DPDK forwarder",
          "sets up what it needs in this process: an engine of one busy-polling worker\n"
          "(first CPU of --cpus, default 0) serving atomq datagrams from a DPDK port made\n"
          "of two software rings (backend dpdk), the same port echoed by the bare\n"
          "forwarder (dpdk-forwarder: the ceiling), and an engine serving a kernel UDP\n"
          "socket on 127.0.0.1 (uring); the client on the second CPU (default 1).\n"
          "msgs_per_s: 64-byte messages back per second, 256 in flight (atomq: publishes\n"
          "to a subject the client's session subscribes to, each delivered back; the\n"
          "forwarder: echoes); p50/p99 ns: one request at a time (atomq: a publish with\n"
          "ACK_REQ answered by STATUS; the forwarder: one echo). The dpdk line carries\n"
          "vs_forwarder and vs_uring. Without DPDK in the build: uring alone.",
          BENCH_OPTF_DURATION | BENCH_OPTF_CPUS, bench_udp_run },
};

#define BENCH_SCENARIOS_N (sizeof(bench_scenarios) / sizeof(bench_scenarios[0]))

static void bench_usage_scenarios(FILE *f)
{
        for (size_t i = 0; i < BENCH_SCENARIOS_N; i++) {
                fprintf(f, "  %-8s %s\n", bench_scenarios[i].name, bench_scenarios[i].summary);
                /* Indent every line of the details under the name. */
                const char *d = bench_scenarios[i].details;
                while (*d) {
                        size_t len = strcspn(d, "\n");
                        fprintf(f, "           %.*s\n", (int)len, d);
                        d += len + (d[len] == '\n');
                }
        }
}

static void bench_usage(FILE *f)
{
        fprintf(f, "usage: atomq-bench SCENARIO [CASE] [options]\n\nScenarios:\n");
        bench_usage_scenarios(f);
        fprintf(f,
                "\n"
                "Options:\n"
                "  --duration SECONDS  ring, route, nats, durable: length of each timed run\n"
                "                      (default %.1f)\n"
                "  --warmup SECONDS    ring, route, nats, durable: untimed run-in before each\n"
                "                      timed run\n"
                "                      (default %.1f)\n"
                "  --runs N            timed runs per case, medians reported (default %d, max %d)\n"
                "  --cpus A,B          pin the two threads to CPUs A and B (default: the first\n"
                "                      two this process may use); churn and route run on A\n"
                "  --sizes LIST        ring, nats, durable: message sizes in bytes,\n"
                "                      comma-separated\n"
                "                      (at most %d)\n"
                "  --bursts LIST       ring: messages per burst, comma-separated (at most %d)\n"
                "  --entities LIST     churn: entity counts, comma-separated (at most %d)\n"
                "  --path table|control|agent|nats\n"
                "                      churn: the table in this process (default), bulk\n"
                "                      create/destroy through atomqd's control socket,\n"
                "                      pipelined through a libatomq agent connection, or\n"
                "                      pipelined $AQ requests on a NATS connection (--url)\n"
                "  --control PATH      the running atomqd's control socket: churn --path\n"
                "                      control|agent; ipc adds ipc-pubsub and ipc-pingpong\n"
                "  --subs LIST         route: subscription counts; nats fanout and queue:\n"
                "                      subscriber connections; comma-separated (at most %d)\n"
                "  --url URL[,URL]     nats, durable: the servers, nats://HOST:PORT (default\n"
                "                      nats://127.0.0.1:4222); several are alternated;\n"
                "                      churn --path nats: one server\n"
                "  --sync always|batch|none\n"
                "                      durable: atomq's sync policy for its entities\n"
                "                      (default batch)\n"
                "  --storage disk|mem  durable: atomq's storage for its entities (default disk)\n"
                "  --window N          durable: unacknowledged publishes at most (default 256,\n"
                "                      at most %u)\n"
                "  --rotate N          durable send: sends per atomq mailbox (default 1024;\n"
                "                      0: one mailbox a run)\n"
                "  --json              one JSON object per result line on stdout, no table\n"
                "  --svg FILE          also draw the results as an SVG picture\n"
                "  --quiet             no progress line and no notes on stderr\n"
                "  -h, --help          this text\n"
                "\n"
                "Examples:\n"
                "  atomq-bench ring\n"
                "  atomq-bench ring --runs 5 --json > ring.jsonl\n"
                "  atomq-bench ring --cpus 0,1 --sizes 8 --bursts 32 --duration 2\n"
                "  atomq-bench ring --svg /tmp/ring.svg --quiet\n"
                "  atomq-bench churn --entities 1000000,10000000 --json\n"
                "  atomq-bench churn --path agent --control /tmp/aq/control.sock --json\n"
                "  atomq-bench churn --path nats --url nats://127.0.0.1:4222 --json\n"
                "  atomq-bench ipc --control /tmp/aq/control.sock --cpus 1,1 --json\n"
                "  atomq-bench route --subs 1000000 --duration 2 --svg /tmp/route.svg\n"
                "  atomq-bench nats pubsub --url nats://127.0.0.1:4222 --runs 3 --json\n"
                "  atomq-bench nats --url nats://127.0.0.1:4222,nats://127.0.0.1:4223\n"
                "  atomq-bench durable send --url nats://127.0.0.1:4222 --sync always --json\n"
                "  atomq-bench durable --url nats://127.0.0.1:4222,nats://127.0.0.1:4223\n"
                "\n"
                "Output: a table, or with --json one object a line with system, scenario, case,\n"
                "msg_bytes, burst (throughput cases), msgs_per_s (round trips for latency\n"
                "cases), bytes_per_s, p50_ns p90_ns p99_ns p999_ns max_ns (latency cases),\n"
                "cpu_share (below 0.95: something else ran on the benchmark's CPUs) and errors.\n"
                "churn and route add their own fields after case (entities, creates_per_s,\n"
                "destroys_per_s, bytes_per_entity, rss_bytes_per_entity, hugepages; subs,\n"
                "matches_per_s, deliveries_per_s, ...) and have no msg_bytes; churn has no\n"
                "msgs_per_s or duration_s. nats pubsub, fanout and queue add subs (fanout,\n"
                "queue), sent_per_s, sent, lost and dups (queue); msgs_per_s is what arrived.\n"
                "durable adds storage, sync, window, rotate and version (the server's) after\n"
                "case; msgs_per_s is acks read, p50_ns ... publish written to ack read.\n"
                "\n"
                "Exit status: 0 done; 1 a run failed or counted errors (ordering, loss, a\n"
                "wrong lookup or match); 2 bad usage.\n",
                BENCH_DURATION_DEFAULT_S, BENCH_WARMUP_DEFAULT_S, BENCH_RUNS_DEFAULT,
                BENCH_RUNS_MAX, BENCH_LIST_MAX, BENCH_LIST_MAX, BENCH_LIST_MAX, BENCH_LIST_MAX,
                BENCH_WINDOW_MAX);
}

static int bench_usage_error(const char *opt, const char *want, const char *got)
{
        fprintf(stderr, "atomq-bench: %s: expected %s, got '%s' (see --help)\n", opt, want, got);
        return BENCH_EXIT_USAGE;
}

static int bench_parse_seconds(const char *opt, const char *s, double min_s, double max_s,
                               double *out_s)
{
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (end == s || *end != '\0' || errno != 0 || !isfinite(v) || v < min_s || v > max_s) {
                char want[64];
                snprintf(want, sizeof(want), "seconds from %g to %g", min_s, max_s);
                return bench_usage_error(opt, want, s);
        }
        *out_s = v;
        return 0;
}

static int bench_parse_unsigned(const char *s, unsigned max, unsigned *out)
{
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (end == s || errno != 0 || v == 0 || v > max || *s == '-' || *s == '+')
                return -EINVAL;
        *out = (unsigned)v;
        return (int)(end - s);
}

/* "8,32,256": 1 to BENCH_LIST_MAX numbers from 1 to max. */
static int bench_parse_list(const char *opt, const char *s, unsigned max, unsigned *out,
                            unsigned *n)
{
        const char *p = s;
        *n = 0;
        for (;;) {
                int used = -EINVAL;
                if (*n < BENCH_LIST_MAX)
                        used = bench_parse_unsigned(p, max, &out[*n]);
                if (used < 0) {
                        char want[96];
                        snprintf(want, sizeof(want), "a comma-separated list of up to %d "
                                                     "numbers from 1 to %u", BENCH_LIST_MAX, max);
                        return bench_usage_error(opt, want, s);
                }
                (*n)++;
                p += used;
                if (*p == '\0')
                        return 0;
                if (*p++ != ',')
                        return bench_usage_error(opt, "numbers separated by commas", s);
        }
}

enum bench_opt_id {
        BENCH_OPT_DURATION = 256,
        BENCH_OPT_WARMUP,
        BENCH_OPT_RUNS,
        BENCH_OPT_CPUS,
        BENCH_OPT_SIZES,
        BENCH_OPT_BURSTS,
        BENCH_OPT_ENTITIES,
        BENCH_OPT_SUBS,
        BENCH_OPT_PATH,
        BENCH_OPT_CONTROL,
        BENCH_OPT_URL,
        BENCH_OPT_SYNC,
        BENCH_OPT_STORAGE,
        BENCH_OPT_WINDOW,
        BENCH_OPT_ROTATE,
        BENCH_OPT_JSON,
        BENCH_OPT_SVG,
        BENCH_OPT_QUIET,
};

static const struct option bench_long_opts[] = {
        { "duration", required_argument, NULL, BENCH_OPT_DURATION },
        { "warmup", required_argument, NULL, BENCH_OPT_WARMUP },
        { "runs", required_argument, NULL, BENCH_OPT_RUNS },
        { "cpus", required_argument, NULL, BENCH_OPT_CPUS },
        { "sizes", required_argument, NULL, BENCH_OPT_SIZES },
        { "bursts", required_argument, NULL, BENCH_OPT_BURSTS },
        { "entities", required_argument, NULL, BENCH_OPT_ENTITIES },
        { "subs", required_argument, NULL, BENCH_OPT_SUBS },
        { "path", required_argument, NULL, BENCH_OPT_PATH },
        { "control", required_argument, NULL, BENCH_OPT_CONTROL },
        { "url", required_argument, NULL, BENCH_OPT_URL },
        { "sync", required_argument, NULL, BENCH_OPT_SYNC },
        { "storage", required_argument, NULL, BENCH_OPT_STORAGE },
        { "window", required_argument, NULL, BENCH_OPT_WINDOW },
        { "rotate", required_argument, NULL, BENCH_OPT_ROTATE },
        { "json", no_argument, NULL, BENCH_OPT_JSON },
        { "svg", required_argument, NULL, BENCH_OPT_SVG },
        { "quiet", no_argument, NULL, BENCH_OPT_QUIET },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
};

/* The options of scenario durable; 0 or an exit status. */
static int bench_opt_apply_durable(struct bench_opts *o, int id, const char *arg)
{
        _Static_assert(BENCH_WINDOW_MAX == 16384u && BENCH_COUNT_MAX == 10000000u,
                       "the messages below name the bounds");
        switch (id) {
        case BENCH_OPT_SYNC:
                o->given |= BENCH_OPTF_SYNC;
                if (strcmp(arg, "always") != 0 && strcmp(arg, "batch") != 0 &&
                    strcmp(arg, "none") != 0)
                        return bench_usage_error("--sync", "always, batch or none", arg);
                o->sync = arg;
                return 0;
        case BENCH_OPT_STORAGE:
                o->given |= BENCH_OPTF_STORAGE;
                if (strcmp(arg, "disk") != 0 && strcmp(arg, "mem") != 0)
                        return bench_usage_error("--storage", "disk or mem", arg);
                o->storage = arg;
                return 0;
        case BENCH_OPT_WINDOW:
                o->given |= BENCH_OPTF_WINDOW;
                if (bench_parse_unsigned(arg, BENCH_WINDOW_MAX, &o->window) < 0 ||
                    arg[strspn(arg, "0123456789")] != '\0')
                        return bench_usage_error("--window", "a whole number from 1 to 16384",
                                                 arg);
                return 0;
        case BENCH_OPT_ROTATE:
                o->given |= BENCH_OPTF_ROTATE;
                o->rotate_set = true;
                o->rotate = 0;
                if (strcmp(arg, "0") == 0)
                        return 0;
                if (bench_parse_unsigned(arg, BENCH_COUNT_MAX, &o->rotate) < 0 ||
                    arg[strspn(arg, "0123456789")] != '\0')
                        return bench_usage_error("--rotate", "a whole number from 0 to 10000000",
                                                 arg);
                return 0;
        }
        return BENCH_EXIT_USAGE;
}

/* Applies one option; returns 0 or an exit status. */
static int bench_opt_apply(struct bench_opts *o, int id, const char *arg)
{
        switch (id) {
        case BENCH_OPT_DURATION:
                o->given |= BENCH_OPTF_DURATION;
                return bench_parse_seconds("--duration", arg, BENCH_DURATION_MIN_S,
                                           BENCH_DURATION_MAX_S, &o->duration_s);
        case BENCH_OPT_WARMUP:
                o->given |= BENCH_OPTF_DURATION;
                return bench_parse_seconds("--warmup", arg, 0, BENCH_WARMUP_MAX_S, &o->warmup_s);
        case BENCH_OPT_RUNS:
                if (bench_parse_unsigned(arg, BENCH_RUNS_MAX, &o->runs) < 0 ||
                    arg[strspn(arg, "0123456789")] != '\0')
                        return bench_usage_error("--runs", "a whole number from 1 to 31", arg);
                return 0;
        case BENCH_OPT_CPUS:
                if (bench_cpus_parse(arg, o->cpus) != 0)
                        return bench_usage_error("--cpus", "two CPU numbers like 0,1", arg);
                o->cpus_set = true;
                o->given |= BENCH_OPTF_CPUS;
                return 0;
        case BENCH_OPT_SIZES:
                o->given |= BENCH_OPTF_SIZES;
                return bench_parse_list("--sizes", arg, BENCH_LIST_VALUE_MAX, o->sizes_bytes,
                                        &o->sizes_n);
        case BENCH_OPT_BURSTS:
                o->given |= BENCH_OPTF_BURSTS;
                return bench_parse_list("--bursts", arg, BENCH_LIST_VALUE_MAX, o->bursts,
                                        &o->bursts_n);
        case BENCH_OPT_ENTITIES:
                o->given |= BENCH_OPTF_ENTITIES;
                return bench_parse_list("--entities", arg, BENCH_COUNT_MAX, o->entities,
                                        &o->entities_n);
        case BENCH_OPT_SUBS:
                o->given |= BENCH_OPTF_SUBS;
                return bench_parse_list("--subs", arg, BENCH_COUNT_MAX, o->subs, &o->subs_n);
        case BENCH_OPT_PATH:
                o->given |= BENCH_OPTF_PATH;
                if (strcmp(arg, "table") != 0 && strcmp(arg, "control") != 0 &&
                    strcmp(arg, "agent") != 0 && strcmp(arg, "nats") != 0)
                        return bench_usage_error("--path", "table, control, agent or nats", arg);
                o->churn_path = arg;
                return 0;
        case BENCH_OPT_CONTROL:
                o->given |= BENCH_OPTF_CONTROL;
                o->control_path = arg;
                return 0;
        case BENCH_OPT_URL:
                /* Split and checked by the scenario, which knows the form. */
                o->given |= BENCH_OPTF_URL;
                o->url = arg;
                return 0;
        case BENCH_OPT_SYNC:
        case BENCH_OPT_STORAGE:
        case BENCH_OPT_WINDOW:
        case BENCH_OPT_ROTATE:
                return bench_opt_apply_durable(o, id, arg);
        case BENCH_OPT_JSON:
                o->json = true;
                return 0;
        case BENCH_OPT_SVG:
                o->svg_path = arg;
                return 0;
        case BENCH_OPT_QUIET:
                o->quiet = true;
                return 0;
        }
        return BENCH_EXIT_USAGE;
}

/* An option the scenario does not take is refused rather than ignored, so
 * `atomq-bench churn --sizes 64` cannot pass for a measurement of something.
 * Returns -1 (fine) or BENCH_EXIT_USAGE. */
static int bench_opts_check(const struct bench_opts *o, const struct bench_scenario *sc)
{
        static const struct {
                unsigned flag;
                const char *names;
        } optfs[] = {
                { BENCH_OPTF_DURATION, "--duration and --warmup" },
                { BENCH_OPTF_CPUS, "--cpus" },
                { BENCH_OPTF_SIZES, "--sizes" },
                { BENCH_OPTF_BURSTS, "--bursts" },
                { BENCH_OPTF_ENTITIES, "--entities" },
                { BENCH_OPTF_SUBS, "--subs" },
                { BENCH_OPTF_PATH, "--path" },
                { BENCH_OPTF_CONTROL, "--control" },
                { BENCH_OPTF_URL, "--url" },
                { BENCH_OPTF_SYNC, "--sync" },
                { BENCH_OPTF_STORAGE, "--storage" },
                { BENCH_OPTF_WINDOW, "--window" },
                { BENCH_OPTF_ROTATE, "--rotate" },
        };
        for (size_t i = 0; i < sizeof(optfs) / sizeof(optfs[0]); i++) {
                if ((o->given & optfs[i].flag) && !(sc->opts & optfs[i].flag)) {
                        fprintf(stderr, "atomq-bench: %s: %s do%s not apply (see --help)\n",
                                sc->name, optfs[i].names,
                                optfs[i].flag == BENCH_OPTF_DURATION ? "" : "es");
                        return BENCH_EXIT_USAGE;
                }
        }
        return -1;
}

/* Fills o and *scenario from argv. Returns -1 to go on, or the status to
 * exit with (0 after --help). */
static int bench_opts_parse(int argc, char **argv, struct bench_opts *o,
                            const struct bench_scenario **scenario)
{
        *o = (struct bench_opts){ .duration_s = BENCH_DURATION_DEFAULT_S,
                                  .warmup_s = BENCH_WARMUP_DEFAULT_S,
                                  .runs = BENCH_RUNS_DEFAULT };
        opterr = 0; /* our messages name the option */
        for (;;) {
                int id = getopt_long(argc, argv, ":h", bench_long_opts, NULL);
                if (id == -1)
                        break;
                if (id == 'h') {
                        bench_usage(stdout);
                        return BENCH_EXIT_OK;
                }
                if (id == '?' || id == ':') {
                        const char *what = id == '?' ? "unknown option" : "missing value for";
                        if (optopt != 0 && optopt < 256)
                                fprintf(stderr, "atomq-bench: %s '-%c' (see --help)\n", what,
                                        optopt);
                        else
                                fprintf(stderr, "atomq-bench: %s '%s' (see --help)\n", what,
                                        argv[optind - 1]);
                        return BENCH_EXIT_USAGE;
                }
                int rc = bench_opt_apply(o, id, optarg);
                if (rc != 0)
                        return rc;
        }
        if (optind >= argc) {
                fprintf(stderr, "atomq-bench: which scenario? (see --help)\n");
                bench_usage(stderr);
                return BENCH_EXIT_USAGE;
        }
        for (size_t i = 0; i < BENCH_SCENARIOS_N; i++)
                if (strcmp(argv[optind], bench_scenarios[i].name) == 0)
                        *scenario = &bench_scenarios[i];
        if (*scenario == NULL) {
                fprintf(stderr, "atomq-bench: unknown scenario '%s' (see --help)\n", argv[optind]);
                return BENCH_EXIT_USAGE;
        }
        /* A case word, for the scenarios that take one; it checks it. */
        int words = (*scenario)->opts & BENCH_OPTF_CASE ? 2 : 1;
        if (words == 2 && optind + 1 < argc)
                o->case_word = argv[optind + 1];
        if (optind + words < argc) {
                fprintf(stderr, "atomq-bench: unexpected argument '%s' (see --help)\n",
                        argv[optind + words]);
                return BENCH_EXIT_USAGE;
        }
        return bench_opts_check(o, *scenario);
}

int bench_opts_cpu(const struct bench_opts *o, const char *scenario, int *cpu)
{
        struct bench_cpus cpus;
        int bad_cpu = -1;
        int rc = bench_cpus_pick(&cpus, o->cpus_set ? o->cpus : NULL, &bad_cpu);
        if (rc == -EINVAL) {
                fprintf(stderr, "atomq-bench: --cpus: CPU %d is not available to this process "
                                "(see taskset -p %d)\n", bad_cpu, (int)getpid());
                return rc;
        }
        if (rc != 0) {
                fprintf(stderr, "atomq-bench: %s: sched_getaffinity: %s\n", scenario,
                        strerror(-rc));
                return rc;
        }
        *cpu = cpus.cpu[0];
        if (!o->quiet && *cpu >= 0)
                fprintf(stderr, "%s: pinned to CPU %d\n", scenario, *cpu);
        return 0;
}

/* Prints (and draws) what the report holds; returns an exit status. */
static int bench_output(const struct bench_opts *o, const struct bench_report *rep)
{
        int status = BENCH_EXIT_OK;
        if (o->json)
                bench_report_print_json(rep, stdout);
        else
                bench_report_print_table(rep, stdout);
        if (fflush(stdout) != 0 || ferror(stdout)) {
                fprintf(stderr, "atomq-bench: writing results: %s\n", strerror(errno));
                status = BENCH_EXIT_FAIL;
        }
        if (o->svg_path != NULL) {
                int rc = bench_svg_write(rep, o->svg_path);
                if (rc != 0) {
                        fprintf(stderr, "atomq-bench: --svg %s: %s\n", o->svg_path, strerror(-rc));
                        status = BENCH_EXIT_FAIL;
                }
        }
        uint64_t errors = bench_report_errors(rep);
        if (errors != 0) {
                fprintf(stderr, "atomq-bench: %llu errors counted (ordering, loss, wrong "
                                "lookups or matches): the results are not valid\n",
                        (unsigned long long)errors);
                status = BENCH_EXIT_FAIL;
        }
        return status;
}

int main(int argc, char **argv)
{
        struct bench_opts o;
        const struct bench_scenario *scenario = NULL;
        int status = bench_opts_parse(argc, argv, &o, &scenario);
        if (status >= 0)
                return status;

        /* ~200 KB: static rather than on the stack. */
        static struct bench_report rep;
        struct bench_progress pg;
        bench_report_init(&rep, o.duration_s, o.warmup_s, o.runs);
        if (o.quiet)
                shm_log_set_level(SHM_LOG_WARN); /* the arena's notes, such as no hugepages */
        bench_progress_init(&pg, !o.quiet && isatty(STDERR_FILENO));

        int rc = scenario->run(&o, &pg, &rep);
        if (rc == -EINVAL)
                return BENCH_EXIT_USAGE; /* the scenario said which option */
        /* Results of the cases that finished are still worth printing. */
        status = bench_output(&o, &rep);
        return rc != 0 ? BENCH_EXIT_FAIL : status;
}
