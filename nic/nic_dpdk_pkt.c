/* nic_dpdk_pkt.c - parsing and building the frames of the DPDK backend
 * (nic_dpdk_pvt.h): Ethernet II, ARP for IPv4 over Ethernet (RFC 826),
 * IPv4 (RFC 791), ICMP echo (RFC 792) and UDP (RFC 768), over plain byte
 * buffers.
 *
 * Offsets below are fixed by those RFCs; every variable one (the IPv4
 * header length, total length, UDP length) comes from the frame and is
 * checked against the bytes we actually have before anything is read
 * through it.
 */
#include "nic/nic_dpdk_pvt.h"

#include <string.h>

#include "shm/shm_base.h"

#define ETHERTYPE_IPV4 0x0800u
#define ETHERTYPE_ARP 0x0806u
#define IPPROTO_ICMP_ 1u
#define IPPROTO_UDP_ 17u
#define ICMP_ECHO_REPLY 0u
#define ICMP_ECHO_REQUEST 8u
#define ARP_OP_REQUEST 1u
#define ARP_OP_REPLY 2u
#define IP_FLAG_DF 0x4000u
#define IP_FRAG_MASK 0x3fffu     /* MF and the fragment offset */

/* Frame offsets: Ethernet, then the ARP body or the IPv4 header. */
#define ETH_DST 0u
#define ETH_SRC 6u
#define ETH_TYPE 12u
#define ARP_SHA (NIC_PKT_ETH_LEN + 8u)
#define ARP_SPA (NIC_PKT_ETH_LEN + 14u)
#define ARP_THA (NIC_PKT_ETH_LEN + 18u)
#define ARP_TPA (NIC_PKT_ETH_LEN + 24u)
#define IP_OFF NIC_PKT_ETH_LEN
#define IP_SRC (IP_OFF + 12u)
#define IP_DST (IP_OFF + 16u)

static inline uint16_t rd16(const uint8_t *p)
{
        return (uint16_t)(p[0] << 8 | p[1]);
}

static inline void wr16(uint8_t *p, uint16_t v)
{
        p[0] = (uint8_t)(v >> 8);
        p[1] = (uint8_t)v;
}

static inline uint32_t rd32_raw(const uint8_t *p)
{
        uint32_t v;
        memcpy(&v, p, 4);
        return v;
}

/* Multicast and broadcast MACs have the group bit: nothing to answer. */
static inline bool mac_is_group(const uint8_t *mac)
{
        return (mac[0] & 1u) != 0;
}

static inline bool mac_is_broadcast(const uint8_t *mac)
{
        static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
        return memcmp(mac, bcast, 6) == 0;
}

/* A source we must never answer: 0.0.0.0, 255.255.255.255, multicast
 * (224/4) and loopback (127/8) are not a peer on this wire. */
static bool ip_src_is_bogus(uint32_t ip_net)
{
        const uint8_t *b = (const uint8_t *)&ip_net;
        return ip_net == 0 || ip_net == 0xffffffffu || (b[0] & 0xf0u) == 0xe0u || b[0] == 127u;
}

/* --- checksums ----------------------------------------------------------- */

/* Adds w to s with the carry out wrapped back in (ones' complement). */
static inline uint64_t add_carry(uint64_t s, uint64_t w)
{
        s += w;
        return s + (s < w);
}

uint32_t nic_pkt_csum_add(uint32_t sum, const void *p, size_t len)
{
        /* 64-bit words in memory order, with end-around carry, folded at
         * the end: the same ones' complement sum as 16-bit words (RFC 1071
         * section 2: the sum can be taken in larger words and in either
         * byte order), so it stays in memory order and is stored without a
         * swap. Four words a round: the headers we sum are 20 to 1500
         * bytes, and this was most of a datagram's cost one word at a time. */
        const uint8_t *b = p;
        uint64_t s = sum, w0, w1, w2, w3;
        uint32_t w;
        uint16_t h;
        for (; len >= 32; len -= 32, b += 32) {
                memcpy(&w0, b, 8);
                memcpy(&w1, b + 8, 8);
                memcpy(&w2, b + 16, 8);
                memcpy(&w3, b + 24, 8);
                s = add_carry(add_carry(add_carry(add_carry(s, w0), w1), w2), w3);
        }
        for (; len >= 8; len -= 8, b += 8) {
                memcpy(&w0, b, 8);
                s = add_carry(s, w0);
        }
        if (len >= 4) {
                memcpy(&w, b, 4);
                s = add_carry(s, w);
                b += 4;
                len -= 4;
        }
        if (len >= 2) {
                memcpy(&h, b, 2);
                s = add_carry(s, h);
                b += 2;
                len -= 2;
        }
        if (len == 1) {
                uint8_t last[2] = {b[0], 0};  /* padded with a zero byte (RFC 768) */
                memcpy(&h, last, 2);
                s = add_carry(s, h);
        }
        s = (s & 0xffffffffu) + (s >> 32);
        s = (s & 0xffffffffu) + (s >> 32);
        return (uint32_t)s;
}

uint16_t nic_pkt_csum_fold(uint32_t sum)
{
        sum = (sum & 0xffffu) + (sum >> 16);
        sum = (sum & 0xffffu) + (sum >> 16);
        return (uint16_t)sum;
}

/* The UDP pseudo-header (RFC 768): source, destination, zero, protocol,
 * UDP length, summed from the IPv4 header at ip. */
static uint32_t udp_pseudo_sum(const uint8_t *ip, uint16_t udp_len)
{
        uint8_t ph[12];
        memcpy(ph, ip + 12, 8);
        ph[8] = 0;
        ph[9] = IPPROTO_UDP_;
        wr16(ph + 10, udp_len);
        return nic_pkt_csum_add(0, ph, sizeof ph);
}

/* Stores the complemented sum of n bytes at p into the 16 bits at field
 * (which is inside them and zeroed first). */
static void csum_store(uint8_t *field, const uint8_t *p, size_t n, uint32_t sum)
{
        uint16_t c;
        field[0] = 0;
        field[1] = 0;
        c = (uint16_t)~nic_pkt_csum_fold(nic_pkt_csum_add(sum, p, n));
        memcpy(field, &c, 2);
}

/* --- parsing --------------------------------------------------------------- */

static enum nic_pkt_verdict parse_arp(const struct nic_pkt_me *me, const uint8_t *f, size_t len,
                                      struct nic_pkt_info *info)
{
        const uint8_t *a = f + NIC_PKT_ETH_LEN;
        uint32_t spa, tpa;
        if (len < NIC_PKT_ETH_LEN + NIC_PKT_ARP_LEN)
                return NIC_PKT_MALFORMED;
        /* Ethernet hardware (1), IPv4 protocol, 6- and 4-byte addresses:
         * the only ARP we speak. */
        if (rd16(a) != 1u || rd16(a + 2) != ETHERTYPE_IPV4 || a[4] != 6u || a[5] != 4u)
                return NIC_PKT_MALFORMED;
        if (mac_is_group(f + ARP_SHA) || mac_is_group(f + ETH_SRC))
                return NIC_PKT_MALFORMED;
        if (!mac_is_broadcast(f + ETH_DST) && memcmp(f + ETH_DST, me->mac, 6) != 0)
                return NIC_PKT_NOT_FOR_US;
        tpa = rd32_raw(f + ARP_TPA);
        spa = rd32_raw(f + ARP_SPA);
        if (tpa != me->ip)
                return NIC_PKT_NOT_FOR_US;
        /* Replies, and gratuitous ARP claiming our address (another host
         * with our IP: the operator's problem, not one to answer), are
         * not questions. An RFC 5227 probe (spa 0) is, and gets a reply. */
        if (rd16(a + 6) != ARP_OP_REQUEST || spa == tpa)
                return NIC_PKT_OTHER;
        info->from.ip = spa;
        info->from.port = 0;
        memcpy(info->from.mac, f + ARP_SHA, 6);
        info->l3_len = 0;
        info->off = NIC_PKT_ETH_LEN;
        info->len = NIC_PKT_ARP_LEN;
        return NIC_PKT_ARP_REQUEST;
}

static enum nic_pkt_verdict parse_udp(const struct nic_pkt_me *me, const uint8_t *f,
                                      uint16_t l4_off, uint16_t l4_len, unsigned csum,
                                      struct nic_pkt_info *info)
{
        const uint8_t *u = f + l4_off;
        uint16_t ulen;
        if (l4_len < NIC_PKT_UDP_LEN)
                return NIC_PKT_MALFORMED;
        ulen = rd16(u + 4);
        /* The UDP length may be less than the IP payload (trailing bytes
         * are ignored) but never more, nor less than its header. */
        if (ulen < NIC_PKT_UDP_LEN || ulen > l4_len)
                return NIC_PKT_MALFORMED;
        if (memcmp(u + 2, &me->port, 2) != 0)
                return NIC_PKT_NOT_FOR_US;
        if (rd16(u) == 0)  /* source port 0: no one to answer */
                return NIC_PKT_MALFORMED;
        /* A zero checksum is "none sent" over IPv4 (RFC 768). */
        if (rd16(u + 6) != 0 && !(csum & NIC_PKT_CSUM_L4_GOOD)) {
                if (csum & NIC_PKT_CSUM_L4_BAD)
                        return NIC_PKT_BAD_CSUM;
                uint32_t s = udp_pseudo_sum(f + IP_OFF, ulen);
                if (nic_pkt_csum_fold(nic_pkt_csum_add(s, u, ulen)) != 0xffffu)
                        return NIC_PKT_BAD_CSUM;
        }
        memcpy(&info->from.port, u, 2);
        info->off = (uint16_t)(l4_off + NIC_PKT_UDP_LEN);
        info->len = (uint16_t)(ulen - NIC_PKT_UDP_LEN);
        return NIC_PKT_UDP;
}

static enum nic_pkt_verdict parse_icmp(const uint8_t *f, uint16_t l4_off, uint16_t l4_len,
                                       struct nic_pkt_info *info)
{
        const uint8_t *c = f + l4_off;
        if (l4_len < NIC_PKT_ICMP_LEN)
                return NIC_PKT_MALFORMED;
        if (c[0] != ICMP_ECHO_REQUEST || c[1] != 0)
                return NIC_PKT_OTHER;
        /* Never offloaded: the NIC does not check ICMP. */
        if (nic_pkt_csum_fold(nic_pkt_csum_add(0, c, l4_len)) != 0xffffu)
                return NIC_PKT_BAD_CSUM;
        info->from.port = 0;
        info->off = l4_off;
        info->len = l4_len;
        return NIC_PKT_ICMP_ECHO;
}

static enum nic_pkt_verdict parse_ipv4(const struct nic_pkt_me *me, const uint8_t *f, size_t len,
                                       unsigned csum, struct nic_pkt_info *info)
{
        const uint8_t *ip = f + IP_OFF;
        size_t avail = len - NIC_PKT_ETH_LEN;  /* len >= 14: checked by the caller */
        uint16_t ihl, tot;
        if (avail < NIC_PKT_IP_LEN)
                return NIC_PKT_MALFORMED;
        ihl = (uint16_t)((ip[0] & 0x0fu) * 4u);
        tot = rd16(ip + 2);
        if ((ip[0] >> 4) != 4u || ihl < NIC_PKT_IP_LEN || ihl > avail)
                return NIC_PKT_MALFORMED;
        /* The total length must hold the header and fit in what arrived
         * (more bytes than it says is Ethernet padding). */
        if (tot < ihl || tot > avail)
                return NIC_PKT_MALFORMED;
        if ((rd16(ip + 6) & IP_FRAG_MASK) != 0)  /* no reassembly: MF or offset */
                return NIC_PKT_MALFORMED;
        if (mac_is_group(f + ETH_SRC) || ip_src_is_bogus(rd32_raw(f + IP_SRC)))
                return NIC_PKT_MALFORMED;
        if (memcmp(f + ETH_DST, me->mac, 6) != 0 || rd32_raw(f + IP_DST) != me->ip)
                return NIC_PKT_NOT_FOR_US;
        if (!(csum & NIC_PKT_CSUM_IP_GOOD)) {
                if ((csum & NIC_PKT_CSUM_IP_BAD) ||
                    nic_pkt_csum_fold(nic_pkt_csum_add(0, ip, ihl)) != 0xffffu)
                        return NIC_PKT_BAD_CSUM;
        }
        info->from.ip = rd32_raw(f + IP_SRC);
        memcpy(info->from.mac, f + ETH_SRC, 6);
        info->l3_len = ihl;
        uint16_t l4_off = (uint16_t)(IP_OFF + ihl);
        uint16_t l4_len = (uint16_t)(tot - ihl);
        if (ip[9] == IPPROTO_UDP_)
                return parse_udp(me, f, l4_off, l4_len, csum, info);
        if (ip[9] == IPPROTO_ICMP_)
                return parse_icmp(f, l4_off, l4_len, info);
        return NIC_PKT_OTHER;
}

enum nic_pkt_verdict nic_pkt_parse(const struct nic_pkt_me *me, const uint8_t *f, size_t len,
                                   unsigned csum, struct nic_pkt_info *info)
{
        if (len < NIC_PKT_ETH_LEN)
                return NIC_PKT_MALFORMED;
        /* An mbuf segment is at most 64 KiB; anything longer is not a frame
         * we made room for, and 16-bit offsets below rely on it. */
        if (len > 0xffffu)
                return NIC_PKT_MALFORMED;
        switch (rd16(f + ETH_TYPE)) {
        case ETHERTYPE_IPV4:
                return parse_ipv4(me, f, len, csum, info);
        case ETHERTYPE_ARP:
                return parse_arp(me, f, len, info);
        default:
                return NIC_PKT_OTHER;  /* IPv6, VLAN tags, LLDP, ... */
        }
}

/* --- building -------------------------------------------------------------- */

size_t nic_pkt_arp_reply(const struct nic_pkt_me *me, uint8_t *f, const struct nic_pkt_info *info)
{
        /* RFC 826: swap sender and target, put our addresses in as the
         * sender, opcode reply, sent to the asker's hardware address. */
        memcpy(f + ETH_DST, info->from.mac, 6);
        memcpy(f + ETH_SRC, me->mac, 6);
        wr16(f + NIC_PKT_ETH_LEN + 6, ARP_OP_REPLY);
        memcpy(f + ARP_THA, info->from.mac, 6);
        memcpy(f + ARP_TPA, &info->from.ip, 4);
        memcpy(f + ARP_SHA, me->mac, 6);
        memcpy(f + ARP_SPA, &me->ip, 4);
        return NIC_PKT_ETH_LEN + NIC_PKT_ARP_LEN;
}

size_t nic_pkt_icmp_reply(const struct nic_pkt_me *me, uint8_t *f, const struct nic_pkt_info *info)
{
        uint8_t *ip = f + IP_OFF;
        uint8_t *c = f + info->off;
        memcpy(f + ETH_DST, info->from.mac, 6);
        memcpy(f + ETH_SRC, me->mac, 6);
        memcpy(ip + 16, &info->from.ip, 4);
        memcpy(ip + 12, &me->ip, 4);
        ip[8] = NIC_PKT_TTL;
        csum_store(ip + 10, ip, info->l3_len, 0);
        /* RFC 792: the reply is the request with type 0, same id, sequence
         * and data; its checksum is over the whole ICMP message. */
        c[0] = ICMP_ECHO_REPLY;
        csum_store(c + 2, c, info->len, 0);
        return (size_t)info->off + info->len;
}

void nic_pkt_udp_build(uint8_t *f, const struct nic_pkt_me *me, const struct nic_dgram_addr *to,
                       size_t len, bool csum_offload)
{
        uint8_t *ip = f + IP_OFF;
        uint8_t *u = ip + NIC_PKT_IP_LEN;
        uint16_t ulen = (uint16_t)(NIC_PKT_UDP_LEN + len);
        DP_ASSERT(len <= NIC_DGRAM_BYTES_MAX);
        memcpy(f + ETH_DST, to->mac, 6);
        memcpy(f + ETH_SRC, me->mac, 6);
        wr16(f + ETH_TYPE, ETHERTYPE_IPV4);
        ip[0] = 0x45;                    /* version 4, 5 words: no options */
        ip[1] = 0;
        wr16(ip + 2, (uint16_t)(NIC_PKT_IP_LEN + ulen));
        wr16(ip + 4, 0);
        wr16(ip + 6, IP_FLAG_DF);
        ip[8] = NIC_PKT_TTL;
        ip[9] = IPPROTO_UDP_;
        wr16(ip + 10, 0);
        memcpy(ip + 12, &me->ip, 4);
        memcpy(ip + 16, &to->ip, 4);
        memcpy(u, &me->port, 2);
        memcpy(u + 2, &to->port, 2);
        wr16(u + 4, ulen);
        if (csum_offload) {
                /* DPDK's contract for RTE_MBUF_F_TX_UDP_CKSUM: the field
                 * holds the pseudo-header sum, not complemented. */
                uint16_t ph = nic_pkt_csum_fold(udp_pseudo_sum(ip, ulen));
                memcpy(u + 6, &ph, 2);
                return;
        }
        csum_store(ip + 10, ip, NIC_PKT_IP_LEN, 0);
        csum_store(u + 6, u, ulen, udp_pseudo_sum(ip, ulen));
        /* A computed 0 is sent as 0xffff: 0 means "no checksum". */
        if (u[6] == 0 && u[7] == 0)
                wr16(u + 6, 0xffffu);
}

void nic_pkt_udp_swap(uint8_t *f, const struct nic_pkt_info *info)
{
        uint8_t tmp[6];
        uint8_t *u = f + IP_OFF + info->l3_len;
        memcpy(tmp, f + ETH_DST, 6);
        memcpy(f + ETH_DST, f + ETH_SRC, 6);
        memcpy(f + ETH_SRC, tmp, 6);
        memcpy(tmp, f + IP_SRC, 4);
        memcpy(f + IP_SRC, f + IP_DST, 4);
        memcpy(f + IP_DST, tmp, 4);
        memcpy(tmp, u, 2);
        memcpy(u, u + 2, 2);
        memcpy(u + 2, tmp, 2);
}
