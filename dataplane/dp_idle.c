/* dp_idle.c - idle strategies of the worker loop: adaptive back-off and
 * pinned busy-polling (see dp_idle.h). */
#include "dataplane/dp_idle.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>

#include "shm/shm_base.h"

void dp_idle_config_default(struct dp_idle_config *cfg)
{
        *cfg = (struct dp_idle_config){
                .kind = DP_IDLE_ADAPTIVE,
                .spins = DP_IDLE_SPINS_DEFAULT,
                .yields = DP_IDLE_YIELDS_DEFAULT,
                .sleep_min_ns = DP_IDLE_SLEEP_MIN_NS_DEFAULT,
                .sleep_max_ns = DP_IDLE_SLEEP_MAX_NS_DEFAULT,
        };
}

int dp_idle_kind_parse(const char *name)
{
        if (strcmp(name, "auto") == 0 || strcmp(name, "adaptive") == 0)
                return DP_IDLE_ADAPTIVE;
        if (strcmp(name, "always") == 0)
                return DP_IDLE_ALWAYS;
        return -EINVAL;
}

int dp_idle_config_check(const struct dp_idle_config *cfg)
{
        if (cfg->kind >= DP_IDLE_KIND_COUNT_)
                return -EINVAL;
        if (cfg->spins > DP_IDLE_SPINS_MAX || cfg->yields > DP_IDLE_YIELDS_MAX)
                return -EINVAL;
        if (cfg->sleep_min_ns == 0 || cfg->sleep_min_ns > cfg->sleep_max_ns ||
            cfg->sleep_max_ns > DP_IDLE_SLEEP_MAX_NS_MAX)
                return -EINVAL;
        return 0;
}

int dp_idle_init(struct dp_idle *s, const struct dp_idle_config *cfg, struct shm_wake *wake,
                 dp_idle_ready_fn *ready, void *ready_arg, struct dp_idle_counters *ctr)
{
        int rc = dp_idle_config_check(cfg);
        if (rc != 0)
                return rc;
        DP_VERIFY(wake != NULL);
        DP_VERIFY(ready != NULL);
        DP_VERIFY(ctr != NULL);
        *s = (struct dp_idle){ .cfg = *cfg, .wake = wake, .ready = ready,
                               .ready_arg = ready_arg, .ctr = ctr,
                               .sleep_ns = cfg->sleep_min_ns };
        return 0;
}

/* The next sleep's bound: the back-off's, or the owner's cap if shorter. */
static uint64_t dp_idle_timeout(const struct dp_idle *s)
{
        return s->sleep_cap_ns != 0 && s->sleep_cap_ns < s->sleep_ns ? s->sleep_cap_ns
                                                                       : s->sleep_ns;
}

/* As dp_idle_sleep, on the own word and the extra words together. */
static void dp_idle_sleep_many(struct dp_idle *s)
{
        struct shm_wake *w[SHM_WAKE_MANY_MAX];
        uint32_t seq[SHM_WAKE_MANY_MAX];
        uint32_t n = 1 + s->extra_count;
        w[0] = s->wake;
        for (uint32_t i = 1; i < n; i++)
                w[i] = s->extra[i - 1];
        for (uint32_t i = 0; i < n; i++)
                seq[i] = shm_wake_prepare(w[i]);
        if (s->ready(s->ready_arg)) {
                for (uint32_t i = 0; i < n; i++)
                        shm_wake_cancel(w[i]);
                return;
        }
        dp_counter_inc(&s->ctr->sleeps);
        if (s->waiter != NULL) {
                int rc = s->waiter(s->waiter_arg, w, seq, n, (int64_t)dp_idle_timeout(s));
                for (uint32_t i = 0; i < n; i++)
                        shm_wake_cancel(w[i]);
                if (rc == 0)
                        dp_counter_inc(&s->ctr->wakeups);
                return;
        }
        if (shm_wake_wait_many(w, seq, n, (int64_t)dp_idle_timeout(s)) == 0)
                dp_counter_inc(&s->ctr->wakeups);
}

void dp_idle_set_waiter(struct dp_idle *s, dp_idle_wait_fn *fn, void *arg)
{
        s->waiter = fn;
        s->waiter_arg = arg;
}

/* Sleeps on the wake word unless work arrived since the caller looked. */
static void dp_idle_sleep(struct dp_idle *s)
{
        if (s->extra_count > 0 || s->waiter != NULL) {
                dp_idle_sleep_many(s);
                s->sleep_ns = s->sleep_ns * 2 > s->cfg.sleep_max_ns ? s->cfg.sleep_max_ns
                                                                     : s->sleep_ns * 2;
                return;
        }
        /* The eventcount of shm_wake.h: prepare pairs with the fence in the
         * producer's shm_wake_notify, so either ready() sees the producer's
         * record or the producer sees us sleeping and wakes us. */
        uint32_t seq = shm_wake_prepare(s->wake);
        if (s->ready(s->ready_arg)) {
                shm_wake_cancel(s->wake);
                return;
        }
        dp_counter_inc(&s->ctr->sleeps);
        if (shm_wake_wait(s->wake, seq, (int64_t)dp_idle_timeout(s)) == 0)
                dp_counter_inc(&s->ctr->wakeups);
        s->sleep_ns *= 2;
        if (s->sleep_ns > s->cfg.sleep_max_ns)
                s->sleep_ns = s->cfg.sleep_max_ns;
}

void dp_idle_run(struct dp_idle *s, int work)
{
        if (work > 0) {
                s->idle_passes = 0;
                s->sleep_ns = s->cfg.sleep_min_ns;
                return;
        }
        /* One writer (this worker), on its own lines: a plain increment. */
        dp_counter_inc(&s->ctr->passes);
        if (s->cfg.kind == DP_IDLE_ALWAYS) {
                shm_cpu_relax();
                return;
        }
        uint32_t pass = s->idle_passes;
        if (pass < UINT32_MAX)
                s->idle_passes = pass + 1;
        if (pass < s->cfg.spins) {
                shm_cpu_relax();
        } else if (pass - s->cfg.spins < s->cfg.yields) {
                dp_counter_inc(&s->ctr->yields);
                sched_yield();
        } else {
                dp_idle_sleep(s);
        }
}

int dp_idle_pin(uint32_t worker)
{
        cpu_set_t allowed, one;
        /* The CPUs this process may use (a container or taskset may give
         * fewer than are online): worker i takes the (i % count)-th. */
        if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
                return -errno;
        int count = CPU_COUNT(&allowed);
        if (count <= 0)
                return -ENODEV;
        int pick = (int)(worker % (uint32_t)count);
        for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
                if (!CPU_ISSET(cpu, &allowed) || pick-- != 0)
                        continue;
                CPU_ZERO(&one);
                CPU_SET(cpu, &one);
                int rc = pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
                return rc != 0 ? -rc : cpu;
        }
        return -ENODEV;
}
