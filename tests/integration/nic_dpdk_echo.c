/* nic_dpdk_echo.c - a UDP echo server on the DPDK backend (nic/nic_dpdk.h),
 * for the integration tests and as a bare benchmark on virtual devices.
 *
 * Serve: answers ARP and ping (dgram mode), echoes every datagram to our
 * address and port, until SIGTERM/SIGINT or --seconds; prints "ready ..."
 * when the port is up and "stats ..." (key=value) when it stops.
 *      nic_dpdk_echo --eal "--no-huge -m 256 --no-pci --no-shconf -l 0 \
 *          --vdev=net_af_packet0,iface=veth0" --ip 10.77.0.2 --port 9000 \
 *          --mac 02:aa:00:00:00:02 [--mode dgram|bare] [--seconds 20]
 * dgram mode runs the worker's path (nic_dpdk_poll, a callback that calls
 * nic_dpdk_send, nic_dpdk_flush); bare mode is nic_dpdk_echo_burst only.
 *
 * Ring bench: on a net_ring port (what it sends comes back to it), puts
 * --inflight datagrams to ourselves on the wire and echoes them around for
 * the given seconds; prints "bench mode=... pps=...".
 *      nic_dpdk_echo --eal "--no-huge -m 256 --no-pci --no-shconf -l 0 \
 *          --vdev=net_ring0" --ip 10.0.0.2 --port 9000 --ring-bench 2 --mode bare
 *
 * The EAL arguments must contain --no-pci (a test must never take over a
 * real NIC) unless ATOMQ_DPDK_ALLOW_PCI=1 is set. Exit status: 0, 1 on an
 * error, 2 on bad usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nic/nic_dpdk.h"

static volatile sig_atomic_t stop;

struct echo_ctx {
        struct nic_dpdk_queue *q;
        uint64_t send_errors;
};

static void on_signal(int sig)
{
        (void)sig;
        stop = 1;
}

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void on_dgram(void *arg, const struct nic_dgram_addr *from, const uint8_t *data, size_t len)
{
        struct echo_ctx *c = arg;
        if (nic_dpdk_send(c->q, from, data, len) != 0)
                c->send_errors++;
}

static int step(struct echo_ctx *c, bool bare)
{
        int work = bare ? nic_dpdk_echo_burst(c->q) : nic_dpdk_poll(c->q, on_dgram, c);
        nic_dpdk_flush(c->q);
        return work;
}

static void print_stats(const struct echo_ctx *c)
{
        const struct nic_dpdk_stats *s = nic_dpdk_stats(c->q);
        printf("stats rx_pkts=%llu rx_bytes=%llu rx_dgrams=%llu rx_malformed=%llu "
               "rx_not_for_us=%llu rx_bad_csum=%llu rx_other=%llu arp_replies=%llu "
               "icmp_replies=%llu tx_pkts=%llu tx_bytes=%llu tx_full=%llu tx_dropped=%llu "
               "no_mbufs=%llu send_errors=%llu\n",
               (unsigned long long)s->rx_pkts, (unsigned long long)s->rx_bytes,
               (unsigned long long)s->rx_dgrams, (unsigned long long)s->rx_malformed,
               (unsigned long long)s->rx_not_for_us, (unsigned long long)s->rx_bad_csum,
               (unsigned long long)s->rx_other, (unsigned long long)s->arp_replies,
               (unsigned long long)s->icmp_replies, (unsigned long long)s->tx_pkts,
               (unsigned long long)s->tx_bytes, (unsigned long long)s->tx_full,
               (unsigned long long)s->tx_dropped, (unsigned long long)s->no_mbufs,
               (unsigned long long)c->send_errors);
        fflush(stdout);
}

/* Until stopped or the deadline: idle passes back off to a 50 us sleep so
 * a test on two shared cores leaves room for its clients. */
static void serve(struct echo_ctx *c, bool bare, double seconds)
{
        double end = now_s() + seconds;
        unsigned idle = 0;
        while (!stop && now_s() < end) {
                if (step(c, bare) > 0) {
                        idle = 0;
                        continue;
                }
                if (++idle > 64)
                        usleep(50);
        }
}

static int ring_bench(struct echo_ctx *c, bool bare, double seconds, unsigned inflight)
{
        struct nic_dgram_addr self = {.ip = c->q->ip, .port = c->q->udp_port};
        uint8_t payload[64];
        memcpy(self.mac, c->q->mac, 6);
        memset(payload, 'b', sizeof payload);
        for (unsigned i = 0; i < inflight; i++) {
                int rc = nic_dpdk_send(c->q, &self, payload, sizeof payload);
                if (rc != 0) {
                        fprintf(stderr, "nic_dpdk_echo: send %u: %s\n", i, strerror(-rc));
                        return 1;
                }
        }
        nic_dpdk_flush(c->q);
        uint64_t d0 = nic_dpdk_stats(c->q)->rx_dgrams;
        double t0 = now_s(), t1;
        do {
                for (int i = 0; i < 1024; i++)
                        step(c, bare);
                t1 = now_s();
        } while (!stop && t1 - t0 < seconds);
        uint64_t n = nic_dpdk_stats(c->q)->rx_dgrams - d0;
        printf("bench mode=%s seconds=%.3f inflight=%u payload=%zu echoes=%llu pps=%.0f\n",
               bare ? "bare" : "dgram", t1 - t0, inflight, sizeof payload, (unsigned long long)n,
               (double)n / (t1 - t0));
        return n > 0 ? 0 : 1;
}

static int usage(void)
{
        fprintf(stderr, "usage: nic_dpdk_echo --eal ARGS --ip A --port P [--mac M] "
                "[--mode dgram|bare] [--seconds S | --ring-bench S [--inflight N]]\n");
        return 2;
}

static int parse_args(int argc, char **argv, struct nic_dpdk_config *cfg, bool *bare,
                      double *seconds, double *bench, unsigned *inflight)
{
        static const struct option opts[] = {
                {"eal", required_argument, 0, 'e'},   {"ip", required_argument, 0, 'i'},
                {"port", required_argument, 0, 'p'},  {"mac", required_argument, 0, 'm'},
                {"mode", required_argument, 0, 'o'},  {"seconds", required_argument, 0, 's'},
                {"ring-bench", required_argument, 0, 'b'},
                {"inflight", required_argument, 0, 'n'}, {0, 0, 0, 0},
        };
        int ch;
        while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                switch (ch) {
                case 'e': snprintf(cfg->eal_args, sizeof cfg->eal_args, "%s", optarg); break;
                case 'i': if (inet_pton(AF_INET, optarg, &cfg->ip) != 1) return -1; break;
                case 'p': cfg->udp_port = htons((uint16_t)atoi(optarg)); break;
                case 'm':
                        if (sscanf(optarg, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &cfg->mac[0],
                                   &cfg->mac[1], &cfg->mac[2], &cfg->mac[3], &cfg->mac[4],
                                   &cfg->mac[5]) != 6)
                                return -1;
                        break;
                case 'o': *bare = strcmp(optarg, "bare") == 0; break;
                case 's': *seconds = atof(optarg); break;
                case 'b': *bench = atof(optarg); break;
                case 'n': *inflight = (unsigned)atoi(optarg); break;
                default: return -1;
                }
        }
        return 0;
}

int main(int argc, char **argv)
{
        static struct nic_dpdk d;
        struct nic_dpdk_config cfg;
        struct echo_ctx c = {0};
        bool bare = false;
        double seconds = 30, bench = 0;
        unsigned inflight = 256;
        nic_dpdk_config_default(&cfg);
        if (parse_args(argc, argv, &cfg, &bare, &seconds, &bench, &inflight) != 0)
                return usage();
        const char *allow = getenv("ATOMQ_DPDK_ALLOW_PCI");
        if (strstr(cfg.eal_args, "--no-pci") == NULL && (allow == NULL || strcmp(allow, "1") != 0)) {
                fprintf(stderr, "nic_dpdk_echo: the EAL arguments lack --no-pci "
                        "(set ATOMQ_DPDK_ALLOW_PCI=1 to use real NICs)\n");
                return 2;
        }
        signal(SIGTERM, on_signal);
        signal(SIGINT, on_signal);
        int rc = nic_dpdk_init(&d, &cfg);
        if (rc != 0) {
                fprintf(stderr, "nic_dpdk_echo: init: %s\n", strerror(-rc));
                return 1;
        }
        c.q = nic_dpdk_queue(&d, 0);
        printf("ready mac=%02x:%02x:%02x:%02x:%02x:%02x payload_max=%zu mode=%s\n", d.mac[0],
               d.mac[1], d.mac[2], d.mac[3], d.mac[4], d.mac[5], nic_dpdk_payload_max(c.q),
               bare ? "bare" : "dgram");
        fflush(stdout);
        int status = 0;
        if (bench > 0)
                status = ring_bench(&c, bare, bench, inflight);
        else
                serve(&c, bare, seconds);
        print_stats(&c);
        nic_dpdk_fini(&d);
        return status;
}
