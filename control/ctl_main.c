/* ctl_main.c - atomqd, the control-plane process.
 *
 *      atomqd --arena-size 256M --hugepages auto
 *
 * Today it owns the shared-memory arena: creates it, publishes its header,
 * reports what it made and holds it until SIGINT or SIGTERM. The dataplane,
 * the control socket and supervision come with the control-plane issue
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
#include "shm/shm_arena.h"
#include "shm/shm_log.h"

#define CTL_ARENA_BYTES_DEFAULT (256ull << 20)

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
                "The atomq control-plane process: owns the shared-memory arena.\n"
                "\n"
                "options:\n"
                "  --arena-size SIZE        arena bytes, with K/M/G suffix (default 256M)\n"
                "  --hugepages auto|on|off  back the arena with hugepages (default auto:\n"
                "                           when reserved, else plain memfd; on: or fail)\n"
                "  --numa-node N            NUMA node for the arena (default: local)\n"
                "  --once                   create the arena, report it and exit\n"
                "  -h, --help               this text\n"
                "  -V, --version            print the version\n"
                "\n"
                "example:\n"
                "  atomqd --arena-size 1G --hugepages on\n");
}

struct ctl_opts {
        struct shm_arena_config arena;
        bool once;
};

/* Parses argv into o; returns 0, 1 when the program should exit 0 (help,
 * version) or -1 after printing an error that names the option. */
static int ctl_opts_parse(struct ctl_opts *o, int argc, char **argv)
{
        static const struct option longopts[] = {
                { "arena-size", required_argument, NULL, 's' },
                { "hugepages", required_argument, NULL, 'H' },
                { "numa-node", required_argument, NULL, 'n' },
                { "once", no_argument, NULL, '1' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { NULL, 0, NULL, 0 },
        };
        int c;
        long long node;

        while ((c = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
                switch (c) {
                case 's':
                        if (ctl_parse_bytes(optarg, &o->arena.bytes) != 0) {
                                fprintf(stderr, "atomqd: --arena-size: '%s' is not a size "
                                        "like 64M or 1G\n", optarg);
                                return -1;
                        }
                        break;
                case 'H':
                        if (ctl_parse_hugepages(optarg, &o->arena.hugepages) != 0) {
                                fprintf(stderr, "atomqd: --hugepages: '%s' is not one of "
                                        "auto, on, off\n", optarg);
                                return -1;
                        }
                        break;
                case 'n':
                        if (ctl_parse_int(optarg, 0, 1023, &node) != 0) {
                                fprintf(stderr, "atomqd: --numa-node: '%s' is not a node "
                                        "number\n", optarg);
                                return -1;
                        }
                        o->arena.numa_node = (int)node;
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
        struct ctl_opts o = {
                .arena = { .bytes = CTL_ARENA_BYTES_DEFAULT, .hugepages = SHM_HUGEPAGES_AUTO,
                           .numa_node = -1, .name = "atomq-arena" },
        };
        int rc = ctl_opts_parse(&o, argc, argv);
        if (rc != 0)
                return rc > 0 ? 0 : 2;

        struct shm_arena arena;
        rc = shm_arena_create(&arena, &o.arena);
        if (rc == 0)
                rc = shm_arena_publish(&arena);
        if (rc != 0) {
                shm_log(SHM_LOG_ERR, "cannot create the arena (%llu bytes): %s",
                        (unsigned long long)o.arena.bytes, strerror(-rc));
                return 1;
        }
        shm_log(SHM_LOG_INFO, "atomqd %s: arena of %llu MiB (%s pages) published as fd %d",
                ATOMQ_VERSION, (unsigned long long)(arena.bytes >> 20),
                arena.hugepages ? "huge" : "4 KiB", arena.fd);
        if (o.once) {
                shm_arena_close(&arena);
                return 0;
        }

        struct sigaction sa = { .sa_handler = ctl_on_signal };
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        shm_log(SHM_LOG_INFO, "running; stop with Ctrl-C or SIGTERM");
        while (!ctl_stop)
                pause();
        shm_log(SHM_LOG_INFO, "stopping");
        shm_arena_close(&arena);
        return 0;
}
