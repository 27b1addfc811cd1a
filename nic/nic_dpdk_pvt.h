/* nic_dpdk_pvt.h - the DPDK backend's packet helpers (nic_dpdk_pkt.c):
 * pure functions over byte buffers that parse a received frame and build
 * or rewrite the frames we send. They know Ethernet, ARP, IPv4, ICMP and
 * UDP, and nothing of DPDK, so tests/unit/test_nic_dpdk.c runs them
 * without an EAL; nic_dpdk.c moves mbufs and calls them.
 *
 * Nothing in a frame is trusted: every length and offset read from it is
 * checked against the frame's length before it is used.
 */
#ifndef ATOMQ_NIC_DPDK_PVT_H
#define ATOMQ_NIC_DPDK_PVT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nic/nic_dgram.h"

#define NIC_PKT_ETH_LEN 14u
#define NIC_PKT_ARP_LEN 28u      /* Ethernet/IPv4 ARP body, RFC 826 */
#define NIC_PKT_IP_LEN 20u       /* an IPv4 header without options */
#define NIC_PKT_UDP_LEN 8u
#define NIC_PKT_ICMP_LEN 8u      /* echo: type, code, checksum, id, sequence */
#define NIC_PKT_HDRS_LEN (NIC_PKT_ETH_LEN + NIC_PKT_IP_LEN + NIC_PKT_UDP_LEN)
#define NIC_PKT_TTL 64u          /* RFC 1700's default, as Linux uses */

/* Who we are, as the parser and builders see it. */
struct nic_pkt_me {
        uint32_t ip;             /* network order */
        uint16_t port;           /* network order */
        uint8_t mac[6];
};

/* What the NIC already checked (from mbuf ol_flags): a GOOD bit skips the
 * software check, a BAD bit fails it; neither means check in software. */
enum nic_pkt_csum {
        NIC_PKT_CSUM_IP_GOOD = 1u << 0,
        NIC_PKT_CSUM_IP_BAD = 1u << 1,
        NIC_PKT_CSUM_L4_GOOD = 1u << 2,
        NIC_PKT_CSUM_L4_BAD = 1u << 3,
};

enum nic_pkt_verdict {
        NIC_PKT_UDP = 0,         /* a datagram for us: info says where */
        NIC_PKT_ARP_REQUEST,     /* an ARP request for our IP */
        NIC_PKT_ICMP_ECHO,       /* an ICMP echo request to our IP */
        NIC_PKT_MALFORMED,
        NIC_PKT_BAD_CSUM,
        NIC_PKT_NOT_FOR_US,
        NIC_PKT_OTHER,
};

/* Where a frame's parts are (set for UDP, ARP_REQUEST and ICMP_ECHO). */
struct nic_pkt_info {
        struct nic_dgram_addr from;  /* source IP, port (UDP) and MAC */
        uint16_t l3_len;         /* IPv4 header bytes (options included) */
        uint16_t off;            /* UDP: the payload's offset; ICMP: the ICMP
                                  * message's */
        uint16_t len;            /* UDP: payload bytes; ICMP: message bytes */
};

/* Ones' complement sum (RFC 1071) of len bytes added to sum, in memory
 * order: fold it, complement it, and store the 16 bits as they are. Only
 * the last piece of a sum may have an odd length. */
uint32_t nic_pkt_csum_add(uint32_t sum, const void *p, size_t len);
/* The folded 16-bit sum (not complemented). A region whose stored checksum
 * is right folds to 0xffff. */
uint16_t nic_pkt_csum_fold(uint32_t sum);

/* Classifies the frame (len bytes at f; csum: enum nic_pkt_csum bits) and,
 * for UDP, ARP_REQUEST and ICMP_ECHO, says where its parts are in *info. */
enum nic_pkt_verdict nic_pkt_parse(const struct nic_pkt_me *me, const uint8_t *f, size_t len,
                                   unsigned csum, struct nic_pkt_info *info);

/* Rewrites an ARP request that nic_pkt_parse accepted (ARP_REQUEST) into
 * our reply, in place. Returns the reply's length (42: padding dropped; the
 * NIC pads short frames). */
size_t nic_pkt_arp_reply(const struct nic_pkt_me *me, uint8_t *f, const struct nic_pkt_info *info);

/* Rewrites an ICMP echo request that nic_pkt_parse accepted (ICMP_ECHO)
 * into the echo reply, in place: addresses swapped, TTL reset, both
 * checksums recomputed. Returns the reply's length (Ethernet padding
 * dropped). */
size_t nic_pkt_icmp_reply(const struct nic_pkt_me *me, uint8_t *f, const struct nic_pkt_info *info);

/* Writes the 42 header bytes of a datagram of len payload bytes, which are
 * already at f + NIC_PKT_HDRS_LEN; len <= NIC_DGRAM_BYTES_MAX. With
 * csum_offload the IPv4 checksum is left 0 and the UDP one holds the
 * pseudo-header sum, as DPDK's tx checksum offload wants; without, both are
 * computed. DF is set and the IP id is 0 (RFC 6864: an atomic datagram). */
void nic_pkt_udp_build(uint8_t *f, const struct nic_pkt_me *me, const struct nic_dgram_addr *to,
                       size_t len, bool csum_offload);

/* Turns a UDP frame that nic_pkt_parse accepted back to its sender, in
 * place: Ethernet, IP and UDP source and destination swapped. The
 * checksums stay right (a sum does not depend on the order). */
void nic_pkt_udp_swap(uint8_t *f, const struct nic_pkt_info *info);

#endif /* ATOMQ_NIC_DPDK_PVT_H */
