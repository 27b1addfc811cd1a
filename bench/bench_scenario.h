/* bench_scenario.h - what a scenario of atomq-bench receives and provides.
 *
 * bench_main.c parses the common options into struct bench_opts, looks the
 * scenario up in its table and calls its run function, which appends results
 * to a struct bench_report. A new scenario is one file, one prototype below
 * and one entry in the table in bench_main.c:
 *
 *      atomq-bench ring --runs 5 --json
 */
#ifndef ATOMQ_BENCH_SCENARIO_H
#define ATOMQ_BENCH_SCENARIO_H

#include <stdbool.h>

struct bench_progress;
struct bench_report;

/* Exit statuses: a usage error is 2 so scripts can tell it from a failed or
 * dishonest run (1). */
#define BENCH_EXIT_OK 0
#define BENCH_EXIT_FAIL 1
#define BENCH_EXIT_USAGE 2

/* Bounds on what the command line can ask for. */
#define BENCH_RUNS_MAX 31
#define BENCH_LIST_MAX 8           /* entries in --sizes and --bursts */
#define BENCH_DURATION_MAX_S 3600.0
#define BENCH_WARMUP_MAX_S 600.0
/* --entities and --subs: 10 M is the live-entity target of one shard
 * (docs/benchmarks.md); a churn table that size is ~1.2 GB of arena. */
#define BENCH_COUNT_MAX 10000000u

/* Options a scenario takes beyond --runs, --json, --svg and --quiet; any
 * other on the command line is a usage error, not silently ignored. */
#define BENCH_OPTF_DURATION (1u << 0) /* --duration, --warmup */
#define BENCH_OPTF_CPUS (1u << 1)
#define BENCH_OPTF_SIZES (1u << 2)
#define BENCH_OPTF_BURSTS (1u << 3)
#define BENCH_OPTF_ENTITIES (1u << 4)
#define BENCH_OPTF_SUBS (1u << 5)
#define BENCH_OPTF_PATH (1u << 6)
#define BENCH_OPTF_CONTROL (1u << 7)
#define BENCH_OPTF_URL (1u << 8)
/* Not an option: the scenario takes a word after its name (nats pubsub). */
#define BENCH_OPTF_CASE (1u << 9)
/* Scenario durable's: --sync, --storage, --window, --rotate. */
#define BENCH_OPTF_SYNC (1u << 10)
#define BENCH_OPTF_STORAGE (1u << 11)
#define BENCH_OPTF_WINDOW (1u << 12)
#define BENCH_OPTF_ROTATE (1u << 13)

/* --window: requests in flight on one connection; more would only queue in
 * socket buffers. --rotate: sends per mailbox, at most BENCH_COUNT_MAX. */
#define BENCH_WINDOW_MAX 16384u

struct bench_opts {
        double duration_s;    /* each timed run */
        double warmup_s;      /* before each timed run, not measured */
        unsigned runs;        /* timed runs per case; the median is reported */
        bool json;            /* one JSON object per result line on stdout */
        bool quiet;           /* no progress line, no notes on stderr */
        const char *svg_path; /* NULL: no SVG */
        bool cpus_set;        /* --cpus given: pin to cpus[0] and cpus[1] */
        int cpus[2];
        unsigned sizes_n;     /* 0: the scenario's default message sizes */
        unsigned sizes_bytes[BENCH_LIST_MAX];
        unsigned bursts_n;    /* 0: the scenario's default bursts */
        unsigned bursts[BENCH_LIST_MAX];
        unsigned entities_n;  /* 0: the scenario's default entity counts */
        unsigned entities[BENCH_LIST_MAX];
        const char *churn_path;   /* churn --path: "table" (NULL), "control", "agent" or "nats" */
        const char *control_path; /* --control: atomqd's control socket */
        unsigned subs_n;      /* 0: the scenario's default subscription counts */
        unsigned subs[BENCH_LIST_MAX];
        const char *url;      /* --url: NATS servers, comma-separated; NULL: default */
        const char *case_word; /* the word after the scenario's name; NULL: none */
        const char *sync;     /* --sync: "always", "batch" or "none"; NULL: default */
        const char *storage;  /* --storage: "disk" or "mem"; NULL: default */
        unsigned window;      /* --window: 1 to BENCH_WINDOW_MAX; 0: default */
        bool rotate_set;      /* --rotate given (its 0 means never) */
        unsigned rotate;
        unsigned given;       /* BENCH_OPTF_* of the options on the command line */
};

/* A scenario's run function returns 0 when it ran (errors it counted are in
 * the results), -EINVAL when an option does not fit it (it has printed which
 * one; exit 2) or another -errno when it could not run (exit 1). */
typedef int bench_scenario_run_fn(const struct bench_opts *o,
                                  struct bench_progress *pg,
                                  struct bench_report *rep);

struct bench_scenario {
        const char *name;
        const char *summary;  /* one line for --help */
        const char *details;  /* what it measures and its defaults, for --help */
        unsigned opts;        /* BENCH_OPTF_* it takes */
        bench_scenario_run_fn *run;
};

/* The CPU a one-thread scenario runs on: the first of --cpus, else the
 * first this process may use; -1 (not pinned) when it may use only one.
 * -EINVAL after saying so when a --cpus CPU is not available to it; -errno
 * when the affinity mask cannot be read. Defined in bench_main.c. */
int bench_opts_cpu(const struct bench_opts *o, const char *scenario, int *cpu);

bench_scenario_run_fn bench_churn_run;
bench_scenario_run_fn bench_ipc_run;
bench_scenario_run_fn bench_nats_run;
bench_scenario_run_fn bench_ring_run;
bench_scenario_run_fn bench_churn_control;
bench_scenario_run_fn bench_churn_agent;
bench_scenario_run_fn bench_churn_nats;
bench_scenario_run_fn bench_durable_run;
bench_scenario_run_fn bench_route_run;
bench_scenario_run_fn bench_udp_run;

#endif /* ATOMQ_BENCH_SCENARIO_H */
