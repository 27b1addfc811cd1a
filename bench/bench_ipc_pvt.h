/* bench_ipc_pvt.h - what the files of scenario "ipc" share: the scenario's
 * state, and the cases through atomqd (bench_ipc_agent.c).
 *
 *      atomq-bench ipc --control /tmp/atomq/control.sock --json
 */
#ifndef ATOMQ_BENCH_IPC_PVT_H
#define ATOMQ_BENCH_IPC_PVT_H

#include <stdbool.h>
#include <stdint.h>

#include "bench/bench_clock.h"
#include "bench/bench_cpu.h"
#include "bench/bench_progress.h"
#include "bench/bench_report.h"
#include "bench/bench_scenario.h"

#define BENCH_IPC_MSG_BYTES 32u

/* What the scenario keeps across its cases. */
struct bench_ipc_env {
        const struct bench_opts *o;
        struct bench_progress *pg;
        struct bench_cpus cpus;
        struct bench_clock clock;
};

/* A timed side's measurement window, read every so many messages: the
 * first clock reading at or past open starts it (*t0, and *n0 the count
 * then). *t gets the reading. Returns true once the reading is at or past
 * close. */
static inline bool bench_ipc_window(const struct bench_clock *clock, uint64_t open_ticks,
                                    uint64_t close_ticks, uint64_t count, uint64_t *t,
                                    uint64_t *t0, uint64_t *n0)
{
        *t = bench_clock_ticks(clock);
        if (*t0 == 0 && *t >= open_ticks) {
                *t0 = *t;
                *n0 = count;
        }
        return *t >= close_ticks;
}

/* The two cases through a running atomqd's dataplane (--control): adds
 * ipc-pubsub and ipc-pingpong to rep and sets *pubsub to the former (NULL
 * when it could not run), for the ratio to ring-baseline. 0, or -errno after
 * saying what failed. */
int bench_ipc_agent_cases(const struct bench_ipc_env *env, struct bench_report *rep,
                          struct bench_result **pubsub);

#endif /* ATOMQ_BENCH_IPC_PVT_H */
