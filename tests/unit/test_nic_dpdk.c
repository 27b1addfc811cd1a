/* test_nic_dpdk.c - the DPDK backend's packet helpers (nic/nic_dpdk_pkt.c)
 * over plain byte buffers, without an EAL: the checksum against RFC 1071's
 * example and a byte-at-a-time reference, every truncation of a good
 * datagram, bad header lengths, versions, fragments, UDP lengths past the
 * end, bad and absent checksums (and what the NIC said of them), frames not
 * for us, other protocols, sources we must not answer, ARP requests into
 * the exact reply bytes, ICMP echo into a reply with right checksums, and
 * datagrams built, swapped and parsed back.
 *
 *      meson test -C build-dpdk nic_dpdk
 *      build-dpdk/tests/test_nic_dpdk --verbose
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <string.h>

#include "nic/nic_dpdk_pvt.h"

#define FRAME_MAX 2048

static const struct nic_pkt_me us = {
        .mac = {0x02, 0xaa, 0x00, 0x00, 0x00, 0x02},
};
static const struct nic_pkt_me peer = {
        .mac = {0x02, 0xbb, 0x00, 0x00, 0x00, 0x01},
};
static struct nic_pkt_me me_us, me_peer;

static void setup(void)
{
        me_us = us;
        me_us.ip = inet_addr("10.77.0.2");
        me_us.port = htons(9000);
        me_peer = peer;
        me_peer.ip = inet_addr("10.77.0.1");
        me_peer.port = htons(40000);
}

/* RFC 1071, one 16-bit big-endian word at a time: the reference. */
static uint16_t ref_sum(const uint8_t *p, size_t n, uint32_t s)
{
        for (size_t i = 0; i + 1 < n; i += 2)
                s += (uint32_t)(p[i] << 8 | p[i + 1]);
        if (n & 1)
                s += (uint32_t)p[n - 1] << 8;
        while (s >> 16)
                s = (s & 0xffff) + (s >> 16);
        return (uint16_t)s;
}

static uint16_t rd16(const uint8_t *p)
{
        return (uint16_t)(p[0] << 8 | p[1]);
}

static void wr16(uint8_t *p, uint16_t v)
{
        p[0] = (uint8_t)(v >> 8);
        p[1] = (uint8_t)v;
}

/* The reference UDP checksum of the frame f (IPv4 at 14, header ihl). */
static uint16_t ref_udp_sum(const uint8_t *f)
{
        const uint8_t *ip = f + 14;
        unsigned ihl = (ip[0] & 15u) * 4u;
        uint16_t ulen = rd16(ip + ihl + 4);
        uint8_t ph[12];
        memcpy(ph, ip + 12, 8);
        ph[8] = 0;
        ph[9] = 17;
        wr16(ph + 10, ulen);
        return ref_sum(ip + ihl, ulen, ref_sum(ph, 12, 0));
}

static void fix_ip_csum(uint8_t *f)
{
        uint8_t *ip = f + 14;
        unsigned ihl = (ip[0] & 15u) * 4u;
        wr16(ip + 10, 0);
        wr16(ip + 10, (uint16_t)~ref_sum(ip, ihl, 0));
}

static void fix_udp_csum(uint8_t *f)
{
        uint8_t *u = f + 14 + (f[14] & 15u) * 4u;
        wr16(u + 6, 0);
        wr16(u + 6, (uint16_t)~ref_udp_sum(f));
}

/* A datagram from the peer to us, checksums in software. */
static size_t mk_udp(uint8_t *f, const void *payload, size_t len)
{
        struct nic_dgram_addr to = {.ip = me_us.ip, .port = me_us.port};
        memcpy(to.mac, me_us.mac, 6);
        memcpy(f + NIC_PKT_HDRS_LEN, payload, len);
        nic_pkt_udp_build(f, &me_peer, &to, len, false);
        return NIC_PKT_HDRS_LEN + len;
}

static enum nic_pkt_verdict parse(const uint8_t *f, size_t len, struct nic_pkt_info *info)
{
        return nic_pkt_parse(&me_us, f, len, 0, info);
}

TestSuite(nic_dpdk, .init = setup);

Test(nic_dpdk, checksum_matches_rfc1071_and_reference)
{
        /* RFC 1071 section 3: these 8 bytes sum to 0xddf2. */
        const uint8_t ex[8] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
        uint16_t s = nic_pkt_csum_fold(nic_pkt_csum_add(0, ex, 8));
        cr_assert_eq(memcmp(&s, "\xdd\xf2", 2), 0, "sum stored in memory order");
        uint8_t buf[301];
        for (size_t i = 0; i < sizeof buf; i++)
                buf[i] = (uint8_t)(i * 37 + 11);
        for (size_t n = 0; n <= sizeof buf; n++) {
                uint16_t got = nic_pkt_csum_fold(nic_pkt_csum_add(0, buf, n));
                uint8_t b[2];
                memcpy(b, &got, 2);
                cr_assert_eq(rd16(b), ref_sum(buf, n, 0), "length %zu", n);
        }
}

Test(nic_dpdk, good_datagram_gives_payload_and_peer)
{
        uint8_t f[FRAME_MAX];
        struct nic_pkt_info info;
        size_t len = mk_udp(f, "hello, atomq", 12);
        cr_assert_eq(parse(f, len, &info), NIC_PKT_UDP);
        cr_assert_eq(info.len, 12);
        cr_assert_eq(memcmp(f + info.off, "hello, atomq", 12), 0);
        cr_assert_eq(info.from.ip, me_peer.ip);
        cr_assert_eq(info.from.port, me_peer.port);
        cr_assert_eq(memcmp(info.from.mac, me_peer.mac, 6), 0);
        /* The builder's headers, checked against the reference. */
        cr_assert_eq(ref_sum(f + 14, 20, 0), 0xffff, "IP header checksum");
        cr_assert_eq(ref_udp_sum(f), 0xffff, "UDP checksum");
        cr_assert_eq(rd16(f + 14 + 6), 0x4000, "DF, no fragment");
        cr_assert_eq(rd16(f + 14 + 2), 20 + 8 + 12);
}

Test(nic_dpdk, every_truncation_is_malformed)
{
        uint8_t f[FRAME_MAX];
        struct nic_pkt_info info;
        size_t len = mk_udp(f, "0123456789abcdef", 16);
        for (size_t n = 0; n < len; n++)
                cr_assert_eq(parse(f, n, &info), NIC_PKT_MALFORMED, "cut at %zu", n);
}

Test(nic_dpdk, ethernet_padding_is_ignored)
{
        uint8_t f[FRAME_MAX];
        struct nic_pkt_info info;
        size_t len = mk_udp(f, "x", 1);
        memset(f + len, 0xee, 60 - len);  /* a minimum-size frame's padding */
        cr_assert_eq(parse(f, 60, &info), NIC_PKT_UDP);
        cr_assert_eq(info.len, 1);
        cr_assert_eq(f[info.off], 'x');
}

Test(nic_dpdk, bad_version_and_header_lengths_are_malformed)
{
        uint8_t f[FRAME_MAX], g[FRAME_MAX];
        struct nic_pkt_info info;
        size_t len = mk_udp(f, "payload", 7);
        const uint8_t vihl[] = {0x65, 0x44, 0x40, 0x4f, 0x46};
        for (size_t i = 0; i < sizeof vihl; i++) {
                memcpy(g, f, len);
                g[14] = vihl[i];
                if ((vihl[i] & 15u) >= 5u && (vihl[i] & 15u) * 4u <= len - 14)
                        fix_ip_csum(g);
                cr_assert_eq(parse(g, len, &info), NIC_PKT_MALFORMED, "ver/ihl 0x%02x", vihl[i]);
        }
        /* Total length shorter than the header, or past the frame. */
        const uint16_t tot[] = {0, 19, (uint16_t)(len - 14 + 1), 0xffff};
        for (size_t i = 0; i < sizeof tot / sizeof tot[0]; i++) {
                memcpy(g, f, len);
                wr16(g + 16, tot[i]);
                fix_ip_csum(g);
                cr_assert_eq(parse(g, len, &info), NIC_PKT_MALFORMED, "total length %u", tot[i]);
        }
}

Test(nic_dpdk, ip_options_are_skipped)
{
        uint8_t f[FRAME_MAX], g[FRAME_MAX];
        struct nic_pkt_info info;
        size_t len = mk_udp(f, "opt", 3);
        /* Insert 4 bytes of options (NOPs) after the 20-byte header. */
        memcpy(g, f, 34);
        memset(g + 34, 1, 4);
        memcpy(g + 38, f + 34, len - 34);
        g[14] = 0x46;
        wr16(g + 16, (uint16_t)(rd16(f + 16) + 4));
        fix_ip_csum(g);
        fix_udp_csum(g);
        cr_assert_eq(parse(g, len + 4, &info), NIC_PKT_UDP);
        cr_assert_eq(info.l3_len, 24);
        cr_assert_eq(memcmp(g + info.off, "opt", 3), 0);
}

Test(nic_dpdk, fragments_are_malformed)
{
        uint8_t f[FRAME_MAX];
        struct nic_pkt_info info;
        size_t len = mk_udp(f, "frag", 4);
        const uint16_t frag[] = {0x2000 /* MF */, 0x0001 /* offset 8 */, 0x4001, 0x3fff};
        for (size_t i = 0; i < 4; i++) {
                wr16(f + 20, frag[i]);
                fix_ip_csum(f);
                cr_assert_eq(parse(f, len, &info), NIC_PKT_MALFORMED, "flags 0x%04x", frag[i]);
        }
}

Test(nic_dpdk, udp_length_past_the_end_or_short_is_malformed)
{
        uint8_t f[FRAME_MAX];
        struct nic_pkt_info info;
        size_t len = mk_udp(f, "abcdef", 6);
        const uint16_t ulen[] = {0, 7, 15, 0xffff};
        for (size_t i = 0; i < 4; i++) {
                /* The checksum is left as it was: the length is refused
                 * before it (and summing 0xffff bytes would overrun f). */
                wr16(f + 34 + 4, ulen[i]);
                cr_assert_eq(parse(f, len, &info), NIC_PKT_MALFORMED, "udp length %u", ulen[i]);
        }
        /* Shorter than the IP payload is fine: the rest is ignored. */
        wr16(f + 34 + 4, 8 + 2);
        fix_udp_csum(f);
        cr_assert_eq(parse(f, len, &info), NIC_PKT_UDP);
        cr_assert_eq(info.len, 2);
}

Test(nic_dpdk, checksums_bad_absent_and_offloaded)
{
        uint8_t f[FRAME_MAX];
        struct nic_pkt_info info;
        size_t len = mk_udp(f, "checksum", 8);
        f[len - 1] ^= 0x40;  /* payload flipped: the UDP checksum fails */
        cr_assert_eq(parse(f, len, &info), NIC_PKT_BAD_CSUM);
        cr_assert_eq(nic_pkt_parse(&me_us, f, len, NIC_PKT_CSUM_L4_GOOD, &info), NIC_PKT_UDP,
                     "the NIC said good");
        wr16(f + 34 + 6, 0);  /* no checksum: accepted */
        cr_assert_eq(parse(f, len, &info), NIC_PKT_UDP);
        fix_udp_csum(f);
        cr_assert_eq(parse(f, len, &info), NIC_PKT_UDP);
        cr_assert_eq(nic_pkt_parse(&me_us, f, len, NIC_PKT_CSUM_L4_BAD, &info), NIC_PKT_BAD_CSUM);
        cr_assert_eq(nic_pkt_parse(&me_us, f, len, NIC_PKT_CSUM_IP_BAD, &info), NIC_PKT_BAD_CSUM);
        f[14 + 8] = 3;  /* TTL changed, IP checksum not: bad */
        cr_assert_eq(parse(f, len, &info), NIC_PKT_BAD_CSUM);
        cr_assert_eq(nic_pkt_parse(&me_us, f, len, NIC_PKT_CSUM_IP_GOOD, &info), NIC_PKT_UDP);
}

Test(nic_dpdk, not_for_us)
{
        uint8_t f[FRAME_MAX], g[FRAME_MAX];
        struct nic_pkt_info info;
        size_t len = mk_udp(f, "who", 3);
        memcpy(g, f, len);
        g[5] ^= 1;  /* another MAC */
        cr_assert_eq(parse(g, len, &info), NIC_PKT_NOT_FOR_US);
        memset(g, 0xff, 6);  /* broadcast: not for a unicast datagram */
        cr_assert_eq(parse(g, len, &info), NIC_PKT_NOT_FOR_US);
        memcpy(g, f, len);
        g[14 + 19] ^= 1;  /* another IP */
        fix_ip_csum(g);
        cr_assert_eq(parse(g, len, &info), NIC_PKT_NOT_FOR_US);
        memcpy(g, f, len);
        g[34 + 3] ^= 1;  /* another port */
        fix_udp_csum(g);
        cr_assert_eq(parse(g, len, &info), NIC_PKT_NOT_FOR_US);
}

Test(nic_dpdk, other_protocols_and_bogus_sources)
{
        uint8_t f[FRAME_MAX], g[FRAME_MAX];
        struct nic_pkt_info info;
        size_t len = mk_udp(f, "src", 3);
        memcpy(g, f, len);
        wr16(g + 12, 0x86dd);  /* IPv6 */
        cr_assert_eq(parse(g, len, &info), NIC_PKT_OTHER);
        memcpy(g, f, len);
        g[14 + 9] = 6;  /* TCP */
        fix_ip_csum(g);
        cr_assert_eq(parse(g, len, &info), NIC_PKT_OTHER);
        memcpy(g, f, len);
        g[6] |= 1;  /* a multicast source MAC */
        cr_assert_eq(parse(g, len, &info), NIC_PKT_MALFORMED);
        const char *bogus[] = {"0.0.0.0", "255.255.255.255", "224.0.0.1", "127.0.0.1"};
        for (size_t i = 0; i < 4; i++) {
                memcpy(g, f, len);
                uint32_t ip = inet_addr(bogus[i]);
                memcpy(g + 14 + 12, &ip, 4);
                fix_ip_csum(g);
                fix_udp_csum(g);
                cr_assert_eq(parse(g, len, &info), NIC_PKT_MALFORMED, "source %s", bogus[i]);
        }
        memcpy(g, f, len);
        wr16(g + 34, 0);  /* source port 0 */
        fix_udp_csum(g);
        cr_assert_eq(parse(g, len, &info), NIC_PKT_MALFORMED);
}

/* An ARP request from the peer for ip, padded to 60 bytes. */
static size_t mk_arp(uint8_t *f, uint32_t spa, uint32_t tpa, uint16_t op)
{
        memset(f, 0, 60);
        memset(f, 0xff, 6);
        memcpy(f + 6, me_peer.mac, 6);
        wr16(f + 12, 0x0806);
        wr16(f + 14, 1);
        wr16(f + 16, 0x0800);
        f[18] = 6;
        f[19] = 4;
        wr16(f + 20, op);
        memcpy(f + 22, me_peer.mac, 6);
        memcpy(f + 28, &spa, 4);
        memcpy(f + 38, &tpa, 4);
        return 60;
}

Test(nic_dpdk, arp_request_becomes_exact_reply)
{
        uint8_t f[FRAME_MAX];
        struct nic_pkt_info info;
        size_t len = mk_arp(f, me_peer.ip, me_us.ip, 1);
        cr_assert_eq(parse(f, len, &info), NIC_PKT_ARP_REQUEST);
        size_t rlen = nic_pkt_arp_reply(&me_us, f, &info);
        cr_assert_eq(rlen, 42);
        uint8_t want[42] = {0};
        memcpy(want, me_peer.mac, 6);
        memcpy(want + 6, me_us.mac, 6);
        wr16(want + 12, 0x0806);
        wr16(want + 14, 1);
        wr16(want + 16, 0x0800);
        want[18] = 6;
        want[19] = 4;
        wr16(want + 20, 2);
        memcpy(want + 22, me_us.mac, 6);
        memcpy(want + 28, &me_us.ip, 4);
        memcpy(want + 32, me_peer.mac, 6);
        memcpy(want + 38, &me_peer.ip, 4);
        cr_assert_eq(memcmp(f, want, 42), 0, "reply bytes");
}

Test(nic_dpdk, arp_that_is_not_a_question_for_us)
{
        uint8_t f[FRAME_MAX];
        struct nic_pkt_info info;
        mk_arp(f, me_peer.ip, inet_addr("10.77.0.9"), 1);
        cr_assert_eq(parse(f, 60, &info), NIC_PKT_NOT_FOR_US, "another IP");
        mk_arp(f, me_peer.ip, me_us.ip, 2);
        cr_assert_eq(parse(f, 60, &info), NIC_PKT_OTHER, "a reply");
        mk_arp(f, me_us.ip, me_us.ip, 1);
        cr_assert_eq(parse(f, 60, &info), NIC_PKT_OTHER, "gratuitous");
        mk_arp(f, 0, me_us.ip, 1);
        cr_assert_eq(parse(f, 60, &info), NIC_PKT_ARP_REQUEST, "an RFC 5227 probe");
        mk_arp(f, me_peer.ip, me_us.ip, 1);
        cr_assert_eq(parse(f, 41, &info), NIC_PKT_MALFORMED, "truncated");
        f[19] = 16;
        cr_assert_eq(parse(f, 60, &info), NIC_PKT_MALFORMED, "protocol address length");
        mk_arp(f, me_peer.ip, me_us.ip, 1);
        f[22] |= 1;
        cr_assert_eq(parse(f, 60, &info), NIC_PKT_MALFORMED, "group sender address");
}

/* An ICMP echo request from the peer to us with n data bytes. */
static size_t mk_icmp(uint8_t *f, size_t n)
{
        size_t len = mk_udp(f, "", 0);  /* Ethernet + IPv4 from the builder */
        uint8_t *c = f + 34;
        f[14 + 9] = 1;
        wr16(f + 16, (uint16_t)(20 + 8 + n));
        fix_ip_csum(f);
        c[0] = 8;
        c[1] = 0;
        wr16(c + 4, 0x1234);  /* id */
        wr16(c + 6, 7);       /* sequence */
        for (size_t i = 0; i < n; i++)
                c[8 + i] = (uint8_t)(i + 1);
        wr16(c + 2, 0);
        wr16(c + 2, (uint16_t)~ref_sum(c, 8 + n, 0));
        return len - 8 + 8 + n;
}

Test(nic_dpdk, icmp_echo_becomes_reply_with_right_checksums)
{
        uint8_t f[FRAME_MAX];
        struct nic_pkt_info info;
        size_t len = mk_icmp(f, 57);  /* odd: the checksum's last byte */
        cr_assert_eq(parse(f, len, &info), NIC_PKT_ICMP_ECHO);
        size_t rlen = nic_pkt_icmp_reply(&me_us, f, &info);
        cr_assert_eq(rlen, len);
        cr_assert_eq(memcmp(f, me_peer.mac, 6), 0);
        cr_assert_eq(memcmp(f + 6, me_us.mac, 6), 0);
        cr_assert_eq(memcmp(f + 26, &me_us.ip, 4), 0);
        cr_assert_eq(memcmp(f + 30, &me_peer.ip, 4), 0);
        cr_assert_eq(ref_sum(f + 14, 20, 0), 0xffff, "IP checksum");
        cr_assert_eq(f[34], 0, "echo reply");
        cr_assert_eq(ref_sum(f + 34, 8 + 57, 0), 0xffff, "ICMP checksum");
        cr_assert_eq(rd16(f + 38), 0x1234);
        cr_assert_eq(rd16(f + 40), 7);
        for (size_t i = 0; i < 57; i++)
                cr_assert_eq(f[42 + i], (uint8_t)(i + 1));
}

Test(nic_dpdk, icmp_bad_checksum_other_types_and_short)
{
        uint8_t f[FRAME_MAX];
        struct nic_pkt_info info;
        size_t len = mk_icmp(f, 8);
        f[len - 1] ^= 1;
        cr_assert_eq(parse(f, len, &info), NIC_PKT_BAD_CSUM);
        len = mk_icmp(f, 8);
        f[34] = 13;  /* timestamp */
        cr_assert_eq(parse(f, len, &info), NIC_PKT_OTHER);
        len = mk_icmp(f, 0);
        wr16(f + 16, 20 + 4);
        fix_ip_csum(f);
        cr_assert_eq(parse(f, len, &info), NIC_PKT_MALFORMED);
}

Test(nic_dpdk, offloaded_build_leaves_pseudo_header_sum)
{
        uint8_t f[FRAME_MAX];
        struct nic_dgram_addr to = {.ip = me_peer.ip, .port = me_peer.port};
        memcpy(to.mac, me_peer.mac, 6);
        memcpy(f + NIC_PKT_HDRS_LEN, "offload", 7);
        nic_pkt_udp_build(f, &me_us, &to, 7, true);
        cr_assert_eq(rd16(f + 24), 0, "IP checksum left to the NIC");
        uint8_t ph[12];
        memcpy(ph, f + 26, 8);
        ph[8] = 0;
        ph[9] = 17;
        wr16(ph + 10, 15);
        cr_assert_eq(rd16(f + 40), ref_sum(ph, 12, 0), "pseudo-header sum, not complemented");
}

Test(nic_dpdk, swapped_datagram_parses_back_with_valid_checksums)
{
        uint8_t f[FRAME_MAX];
        struct nic_pkt_info info, back;
        size_t len = mk_udp(f, "echo me", 7);
        cr_assert_eq(parse(f, len, &info), NIC_PKT_UDP);
        nic_pkt_udp_swap(f, &info);
        cr_assert_eq(nic_pkt_parse(&me_peer, f, len, 0, &back), NIC_PKT_UDP);
        cr_assert_eq(back.from.ip, me_us.ip);
        cr_assert_eq(back.from.port, me_us.port);
        cr_assert_eq(memcmp(back.from.mac, me_us.mac, 6), 0);
        cr_assert_eq(memcmp(f + back.off, "echo me", 7), 0);
}

Test(nic_dpdk, computed_zero_udp_checksum_is_sent_as_ffff)
{
        uint8_t f[FRAME_MAX];
        struct nic_pkt_info info;
        /* Find a 2-byte payload whose UDP checksum computes to 0. */
        for (uint32_t v = 0; v <= 0xffff; v++) {
                uint8_t p[2] = {(uint8_t)(v >> 8), (uint8_t)v};
                size_t len = mk_udp(f, p, 2);
                if (rd16(f + 40) != 0xffff)
                        continue;
                cr_assert_eq(parse(f, len, &info), NIC_PKT_UDP);
                cr_assert_eq(ref_udp_sum(f), 0xffff);
                return;
        }
        cr_assert_fail("no payload gives a zero checksum");
}
