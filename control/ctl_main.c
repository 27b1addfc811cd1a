/* ctl_main.c - atomqd, the appliance's main process.
 *
 *      atomqd --workers 2 --max-entities 1000000 --hugepages auto
 *
 * Today it builds the dataplane engine in its own process: the shared-memory
 * arena with one shard per worker and the rings between them, then runs the
 * workers until SIGINT or SIGTERM. The control socket, a separate
 * dataplane process and its supervision come with the control-plane issue
 * (see docs/architecture.md).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control/ctl_parse.h"
#include "dataplane/dp_engine.h"
#include "shm/shm_log.h"

#define CTL_MAX_ENTITIES_DEFAULT 1000000
#define CTL_MAX_ENTITIES_MAX 100000000

static volatile sig_atomic_t ctl_stop;

static void ctl_on_signal(int sig)
{
        (void)sig;
        ctl_stop = 1;
}

static void ctl_usage(FILE *out)
{
        fprintf(out,
                "usage: atomqd [options]\n"
                "\n"
                "The atomq appliance: the shared-memory arena and the dataplane workers.\n"
                "\n"
                "options:\n"
                "  --workers N              dataplane workers, one thread and one shard\n"
                "                           each (default: CPUs - 1, at least 1)\n"
                "  --max-entities N         entities each shard holds (default 1000000)\n"
                "  --busy-poll adaptive|always\n"
                "                           idle workers back off (adaptive, default) or\n"
                "                           spin pinned to a CPU each (always: dedicated\n"
                "                           cores only; it starves anything sharing them)\n"
                "  --hugepages auto|on|off  back the arena with hugepages (default auto:\n"
                "                           when reserved, else plain memfd; on: or fail)\n"
                "  --once                   build everything, report it and exit\n"
                "  -h, --help               this text\n"
                "  -V, --version            print the version\n"
                "\n"
                "example:\n"
                "  atomqd --workers 2 --busy-poll always --hugepages on\n");
}

struct ctl_opts {
        struct dp_engine_config engine;
        uint32_t max_entities;
        bool once;
};

#define CTL_STR_(x) #x
#define CTL_STR(x) CTL_STR_(x)

static int ctl_opt_error(const char *opt, const char *value, const char *want)
{
        fprintf(stderr, "atomqd: %s: '%s' is not %s\n", opt, value, want);
        return -1;
}

/* Parses argv into o; returns 0, 1 when the program should exit 0 (help,
 * version) or -1 after printing an error that names the option. */
static int ctl_opts_parse(struct ctl_opts *o, int argc, char **argv)
{
        static const struct option longopts[] = {
                { "workers", required_argument, NULL, 'w' },
                { "max-entities", required_argument, NULL, 'm' },
                { "busy-poll", required_argument, NULL, 'b' },
                { "hugepages", required_argument, NULL, 'H' },
                { "once", no_argument, NULL, '1' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { NULL, 0, NULL, 0 },
        };
        int c, kind;
        long long v;

        while ((c = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
                switch (c) {
                case 'w':
                        if (ctl_parse_int(optarg, 1, DP_WORKERS_MAX, &v) != 0)
                                return ctl_opt_error("--workers", optarg,
                                                     "a worker count from 1 to "
                                                     CTL_STR(DP_WORKERS_MAX));
                        o->engine.workers = (uint32_t)v;
                        break;
                case 'm':
                        if (ctl_parse_int(optarg, 1, CTL_MAX_ENTITIES_MAX, &v) != 0)
                                return ctl_opt_error("--max-entities", optarg,
                                                     "a count from 1 to 100000000");
                        o->max_entities = (uint32_t)v;
                        break;
                case 'b':
                        kind = dp_idle_kind_parse(optarg);
                        if (kind < 0 || strcmp(optarg, "auto") == 0)
                                return ctl_opt_error("--busy-poll", optarg,
                                                     "one of adaptive, always");
                        o->engine.idle.kind = (uint32_t)kind;
                        break;
                case 'H':
                        if (ctl_parse_hugepages(optarg, &o->engine.hugepages) != 0)
                                return ctl_opt_error("--hugepages", optarg,
                                                     "one of auto, on, off");
                        break;
                case '1':
                        o->once = true;
                        break;
                case 'h':
                        ctl_usage(stdout);
                        return 1;
                case 'V':
                        printf("atomqd %s\n", ATOMQ_VERSION);
                        return 1;
                default:
                        ctl_usage(stderr);
                        return -1;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "atomqd: unexpected argument '%s'\n", argv[optind]);
                return -1;
        }
        return 0;
}

int main(int argc, char **argv)
{
        struct ctl_opts o = { .max_entities = CTL_MAX_ENTITIES_DEFAULT };
        dp_engine_config_default(&o.engine, CTL_MAX_ENTITIES_DEFAULT);
        int rc = ctl_opts_parse(&o, argc, argv);
        if (rc != 0)
                return rc > 0 ? 0 : 2;
        if (o.max_entities != CTL_MAX_ENTITIES_DEFAULT) {
                struct dp_engine_config d;
                dp_engine_config_default(&d, o.max_entities);
                o.engine.shard = d.shard;
        }

        struct dp_engine engine;
        rc = dp_engine_init(&engine, &o.engine);
        if (rc != 0) {
                shm_log(SHM_LOG_ERR, "cannot build the dataplane (%u workers, %u entities "
                        "each): %s", o.engine.workers, o.max_entities, strerror(-rc));
                return 1;
        }
        shm_log(SHM_LOG_INFO, "atomqd %s: %u workers, %u entities each, arena of %llu MiB "
                "(%s pages), idle %s", ATOMQ_VERSION, engine.workers, o.max_entities,
                (unsigned long long)(engine.arena.bytes >> 20),
                engine.arena.hugepages ? "huge" : "4 KiB",
                o.engine.idle.kind == DP_IDLE_ALWAYS ? "always (busy-poll)" : "adaptive");
        if (o.once) {
                dp_engine_fini(&engine);
                return 0;
        }
        struct sigaction sa = { .sa_handler = ctl_on_signal };
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        rc = dp_engine_start(&engine);
        if (rc != 0) {
                shm_log(SHM_LOG_ERR, "cannot start the workers: %s", strerror(-rc));
                dp_engine_fini(&engine);
                return 1;
        }
        shm_log(SHM_LOG_INFO, "running; stop with Ctrl-C or SIGTERM");
        while (!ctl_stop)
                pause();
        shm_log(SHM_LOG_INFO, "stopping");
        dp_engine_stop(&engine);
        dp_engine_fini(&engine);
        return 0;
}
