/* nic_dpdk.h - the DPDK backend: a worker owns one RX/TX queue of a DPDK
 * port and exchanges UDP datagrams (nic_dgram.h) through it. The backend
 * builds and parses Ethernet, IPv4 and UDP itself, answers ARP requests and
 * ICMP echo requests for our address, and drops everything else with a
 * counter. Built only when libdpdk is found (ATOMQ_HAVE_DPDK is defined for
 * users of nic_dpdk_dep); this header needs no DPDK header.
 *
 * Process-wide, on the main thread, once:
 *      nic_dpdk_init(d, cfg)     rte_eal_init, the port, its queues, start
 *      nic_dpdk_fini(d)          stop and close the port, rte_eal_cleanup
 * Per queue, on the owning worker's thread only:
 *      nic_dpdk_thread_register() once per worker thread, before its first
 *                                call: gives the thread a DPDK lcore id so
 *                                the mbuf pool's per-lcore cache is used
 *                                (without it every alloc/free goes to the
 *                                shared pool ring: correct, but slower)
 *      nic_dpdk_poll(q, fn, arg) one rx burst: datagrams to fn, ARP and
 *                                ICMP answers queued for tx
 *      nic_dpdk_send(q, to, ..)  one datagram queued for tx
 *      nic_dpdk_flush(q)         tx burst of what is queued
 *      nic_dpdk_echo_burst(q)    the bare forwarder (benchmarks)
 *
 * There is no idle sleep: a DPDK queue has no file descriptor here (rx
 * interrupts are not used), so an idle worker backs off with a bounded
 * timed sleep of its own and polls again.
 *
 * rte_eal_init runs once per process: after nic_dpdk_fini, or after an
 * nic_dpdk_init that failed past rte_eal_init, a new nic_dpdk_init returns
 * -EALREADY. Configuration errors (-EINVAL) are found before rte_eal_init,
 * so they leave the process free to try again.
 *
 * Example (a worker per queue; see tests/integration/nic_dpdk_echo.c):
 *      struct nic_dpdk_config cfg;
 *      nic_dpdk_config_default(&cfg);
 *      snprintf(cfg.eal_args, sizeof cfg.eal_args,
 *               "--no-huge -m 256 --no-pci --no-shconf -l 0 --vdev=net_ring0");
 *      cfg.ip = inet_addr("10.0.0.2");
 *      cfg.udp_port = htons(9000);
 *      static struct nic_dpdk d;
 *      if (nic_dpdk_init(&d, &cfg) != 0) ...
 *      // on worker i's thread:
 *      nic_dpdk_thread_register();
 *      struct nic_dpdk_queue *q = nic_dpdk_queue(&d, i);
 *      for (;;) {
 *              int work = nic_dpdk_poll(q, on_dgram, ctx);  // may send
 *              nic_dpdk_flush(q);
 *              ...
 *      }
 */
#ifndef ATOMQ_NIC_DPDK_H
#define ATOMQ_NIC_DPDK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nic/nic_dgram.h"
#include "shm/shm_base.h"

/* Most queues (workers) on one port. 16 is what DPDK's ring and many
 * virtual PMDs offer, and more than a two-socket box has workers for. */
#define NIC_DPDK_QUEUES_MAX 16u
/* One rx or tx burst: DPDK's vector paths work in 32s. */
#define NIC_DPDK_BURST 32u
/* Frames a queue holds for tx between flushes (nic_dpdk_send refuses more
 * with -ENOBUFS): 16 bursts ride out a NIC that is briefly full. */
#define NIC_DPDK_TX_PENDING_MAX 512u
/* EAL argument string: its bytes (NUL included) and its words. */
#define NIC_DPDK_EAL_ARGS_BYTES 1024u
#define NIC_DPDK_EAL_ARGV_MAX 64u

struct nic_dpdk_config {
        /* Whitespace-separated EAL arguments (no quoting), e.g.
         * "--no-huge -m 256 --no-pci --no-shconf -l 0 --vdev=net_ring0". */
        char eal_args[NIC_DPDK_EAL_ARGS_BYTES];
        /* The caller runs the EAL (it made a port of its own, say with
         * rte_eth_from_rings): eal_args are not used, and fini leaves the
         * EAL to the caller. */
        bool eal_external;
        int32_t eth_port;        /* DPDK port id; < 0: the first available */
        uint16_t queues;         /* 1..NIC_DPDK_QUEUES_MAX; RSS spreads them */
        /* queues > 1 on a port that cannot spread IPv4/UDP over them (no
         * RSS, or fewer queues): false falls back to one queue with a
         * warning, true fails with -ENOTSUP. */
        bool queues_exact;
        uint32_t ip;             /* our IPv4 address, network byte order */
        uint16_t udp_port;       /* our UDP port, network byte order */
        /* Our MAC; all zero: the port's own. Another MAC is used in
         * software (ARP answers, frames we build, the rx filter) and the
         * port is put in promiscuous mode so frames to it arrive; the
         * port's own address is left alone (an af_packet port would
         * otherwise rename its kernel interface's MAC). */
        uint8_t mac[6];
        uint16_t rx_desc;        /* rx ring entries; 0: 1024 */
        uint16_t tx_desc;        /* tx ring entries; 0: 1024 */
        uint32_t mbufs;          /* mbufs in each queue's pool; 0: 4095 */
};

/* A queue's counters: one writer, the owning worker; read them on its
 * thread (or accept torn reads of a moment ago from elsewhere). */
struct nic_dpdk_stats {
        uint64_t rx_pkts;        /* frames taken from the NIC */
        uint64_t rx_bytes;       /* their bytes (Ethernet header on) */
        uint64_t rx_dgrams;      /* datagrams handed to fn */
        uint64_t rx_malformed;   /* truncated, bad header fields, IP fragments,
                                  * multi-segment, a broadcast source */
        uint64_t rx_not_for_us;  /* another MAC, IP or UDP port */
        uint64_t rx_bad_csum;    /* IP, UDP or ICMP checksum wrong */
        uint64_t rx_other;       /* other ethertypes, IP protocols, ICMP types,
                                  * ARP replies and gratuitous ARP */
        uint64_t arp_replies;    /* ARP requests answered */
        uint64_t icmp_replies;   /* ICMP echo requests answered */
        uint64_t tx_pkts;        /* frames the NIC took */
        uint64_t tx_bytes;
        uint64_t tx_full;        /* nic_dpdk_send refused: tx pending full */
        uint64_t tx_dropped;     /* replies and echoes freed: no room */
        uint64_t no_mbufs;       /* nic_dpdk_send refused: the pool was empty */
};

struct rte_mempool;
struct rte_mbuf;

/* One RX/TX queue pair: the fields are the backend's; a worker uses the
 * calls below. */
struct nic_dpdk_queue {
        struct rte_mempool *pool;    /* this queue's mbufs, on the port's socket */
        uint16_t port_id;
        uint16_t queue_id;
        uint16_t payload_max;        /* the largest UDP payload we send */
        uint8_t mac[6];              /* ours */
        uint32_t ip;                 /* ours, network order */
        uint16_t udp_port;           /* ours, network order */
        bool tx_csum_offload;        /* the NIC fills IPv4 and UDP checksums */
        bool rx_csum_offload;        /* the NIC checks them (mbuf ol_flags) */
        uint32_t tx_count;           /* frames in tx[] */
        struct rte_mbuf *tx[NIC_DPDK_TX_PENDING_MAX];
        uint16_t tx_len[NIC_DPDK_TX_PENDING_MAX];  /* their frame lengths */
        SHM_ALIGNED_LINE struct nic_dpdk_stats stats;
};

/* The port and its queues (process-wide; about 90 KB: static or heap, not
 * a stack). */
struct nic_dpdk {
        uint16_t port_id;
        uint16_t queue_count;        /* may be less than cfg.queues: see queues_exact */
        bool started;
        bool promiscuous;
        bool eal_external;           /* the caller's EAL: not cleaned up here */
        uint8_t mac[6];
        char eal_buf[NIC_DPDK_EAL_ARGS_BYTES];   /* the argv's words: the EAL may
                                                  * keep pointers into them */
        char *eal_argv[NIC_DPDK_EAL_ARGV_MAX + 1];
        struct nic_dpdk_queue queues[NIC_DPDK_QUEUES_MAX];
};

/* No EAL arguments (the caller must set them), the first port, one queue,
 * no address, the port's MAC, default ring and pool sizes. */
void nic_dpdk_config_default(struct nic_dpdk_config *cfg);

/* Initialises the EAL from cfg->eal_args, then the port: cfg->queues rx
 * and tx queues (RSS over IPv4/UDP when more than one), one mbuf pool per
 * queue on the port's NUMA socket, IPv4/UDP checksum offload where the port
 * has it (checksums in software otherwise), and starts it. Call once, on
 * the main thread; the calling thread's CPU affinity is restored afterwards
 * (the EAL pins it to its main lcore, and threads created later would
 * inherit that). Logs one line on success and one on each failure.
 * Errors: -EINVAL: bad config (queues, address, port, MAC, sizes, EAL
 * arguments too long or too many; also the EAL refusing its arguments);
 * -EALREADY: the EAL was already initialised in this process; -ENODEV: no
 * such port, or no port at all; -ENOTSUP: queues > 1 without RSS and
 * queues_exact; -ENOMEM: a pool could not be made; other -errno from the
 * EAL and ethdev. On failure nothing is left running. */
int nic_dpdk_init(struct nic_dpdk *d, const struct nic_dpdk_config *cfg);

/* Frees what the queues hold, stops and closes the port, frees the pools
 * and cleans up the EAL. The workers must have stopped. Safe after a failed
 * init (it does nothing then). */
void nic_dpdk_fini(struct nic_dpdk *d);

/* Queue i (NULL when i >= queue_count). */
struct nic_dpdk_queue *nic_dpdk_queue(struct nic_dpdk *d, uint16_t i);

/* Registers the calling (non-EAL) thread with DPDK: call once on each
 * worker thread before its first queue call. 0 (also when the thread is
 * already an EAL or registered thread), or -ENOMEM / -EINVAL when no lcore
 * id is free (RTE_MAX_LCORE) or the EAL is not initialised. */
int nic_dpdk_thread_register(void);
/* Gives the lcore id back (a worker thread that ends). */
void nic_dpdk_thread_unregister(void);

/* One rx burst (at most NIC_DPDK_BURST frames): every well-formed IPv4 UDP
 * datagram to our MAC, IP and UDP port goes to fn (from: the source IP,
 * port and MAC; the payload is valid during the call); ARP requests for our
 * IP and ICMP echo requests to it are answered (queued for the next flush;
 * dropped and counted when tx is full); everything else is counted and
 * freed. fn may call nic_dpdk_send on q. A datagram may be longer than
 * nic_dpdk_payload_max (a port with a larger MTU on the peer's side, or
 * net_af_packet, whose kernel socket reassembles IP fragments): it is
 * delivered, and an answer as long fails with -EMSGSIZE. Returns the frames
 * taken (0: idle). No error today (the int return is the worker loop's
 * convention). */
int nic_dpdk_poll(struct nic_dpdk_queue *q, nic_dgram_fn *fn, void *arg);

/* Builds Ethernet (dst to->mac, src ours) + IPv4 + UDP around a copy of
 * data in an mbuf and queues it for tx; a full burst is flushed at once.
 * 0, -EMSGSIZE (len > nic_dpdk_payload_max), -ENOBUFS (no mbuf: no_mbufs
 * counted; or NIC_DPDK_TX_PENDING_MAX frames wait and the NIC takes none:
 * tx_full counted). Nothing is queued on error: the caller decides. */
int nic_dpdk_send(struct nic_dpdk_queue *q, const struct nic_dgram_addr *to, const void *data,
                  size_t len);

/* Hands what is queued to the NIC (tx bursts until it is all taken or the
 * NIC takes no more); what the NIC did not take stays queued, in order,
 * for the next flush (at most NIC_DPDK_TX_PENDING_MAX: send refuses more).
 * Returns the frames the NIC took. */
int nic_dpdk_flush(struct nic_dpdk_queue *q);

/* The bare forwarder, the ceiling atomq is measured against: one rx burst;
 * each UDP datagram to us gets MAC, IP and UDP source and destination
 * swapped in place (checksums stay valid: they do not depend on the order)
 * and goes straight back out in one tx burst; frames the NIC does not take
 * are freed (tx_dropped). Checksums are not verified, nor ARP and ICMP
 * answered: no other work. Returns the frames taken (0: idle). */
int nic_dpdk_echo_burst(struct nic_dpdk_queue *q);

/* The largest UDP payload nic_dpdk_send takes: the port's MTU less the
 * IPv4 and UDP headers, and what fits in one mbuf. */
size_t nic_dpdk_payload_max(const struct nic_dpdk_queue *q);

const struct nic_dpdk_stats *nic_dpdk_stats(const struct nic_dpdk_queue *q);

#endif /* ATOMQ_NIC_DPDK_H */
