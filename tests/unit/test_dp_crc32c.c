/* test_dp_crc32c.c - CRC32C: the published check values (the usual
 * "123456789" and RFC 3720's appendix B.4), the SSE4.2 path against the
 * table path on every length 0..300 at every alignment and on every length
 * 0..8192 at every 8-byte offset (where its three-chain rounds start), both
 * against a bit-at-a-time reference around the round sizes, piecewise
 * computation, and the dispatcher's forced software path. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/dp_crc32c.h"

/* Both paths, and the dispatcher either way: all must agree on v. */
static void check_all_paths(const void *buf, size_t len, uint32_t v, const char *what)
{
        cr_assert_eq(dp_crc32c_sw(0, buf, len), v, "%s: sw %08x", what, dp_crc32c_sw(0, buf, len));
        if (dp_crc32c_hw_available())
                cr_assert_eq(dp_crc32c_hw(0, buf, len), v, "%s: hw", what);
        dp_crc32c_force_sw(true);
        cr_assert_eq(dp_crc32c(0, buf, len), v, "%s: forced sw", what);
        dp_crc32c_force_sw(false);
        cr_assert_eq(dp_crc32c(0, buf, len), v, "%s: dispatch", what);
}

Test(dp_crc32c, check_value_123456789)
{
        check_all_paths("123456789", 9, 0xe3069283u, "123456789");
}

Test(dp_crc32c, empty_buffer_is_zero_and_keeps_the_seed)
{
        check_all_paths("", 0, 0, "empty");
        cr_assert_eq(dp_crc32c(0xdeadbeefu, NULL, 0), 0xdeadbeefu);
}

/* RFC 3720 (iSCSI), appendix B.4, "CRC Examples". */
Test(dp_crc32c, rfc3720_vectors)
{
        uint8_t buf[48];
        memset(buf, 0, 32);
        check_all_paths(buf, 32, 0x8a9136aau, "32 bytes of zeros");
        memset(buf, 0xff, 32);
        check_all_paths(buf, 32, 0x62a8ab43u, "32 bytes of ones");
        for (int i = 0; i < 32; i++)
                buf[i] = (uint8_t)i;
        check_all_paths(buf, 32, 0x46dd794eu, "32 incrementing bytes");
        for (int i = 0; i < 32; i++)
                buf[i] = (uint8_t)(31 - i);
        check_all_paths(buf, 32, 0x113fdb5cu, "32 decrementing bytes");
        static const uint8_t read10[48] = {
                0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
                0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
                0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        };
        check_all_paths(read10, sizeof(read10), 0xd9963a56u, "iSCSI SCSI Read (10) PDU");
}

Test(dp_crc32c, sse_equals_table_on_every_length_and_alignment)
{
        if (!dp_crc32c_hw_available())
                cr_skip_test("this CPU has no SSE4.2: only the table path exists");
        uint8_t *mem = malloc(300 + 16);
        cr_assert_not_null(mem);
        srand(3720);
        for (int round = 0; round < 4; round++) {
                for (size_t i = 0; i < 316; i++)
                        mem[i] = (uint8_t)rand();
                for (size_t align = 0; align < 16; align++)
                        for (size_t len = 0; len <= 300; len++) {
                                const uint8_t *p = mem + align;
                                uint32_t seed = round == 0 ? 0 : (uint32_t)rand();
                                cr_assert_eq(dp_crc32c_hw(seed, p, len), dp_crc32c_sw(seed, p, len),
                                             "len %zu at offset %zu, seed %08x", len, align, seed);
                        }
        }
        free(mem);
}

/* Fills len bytes at p from rand(), which the caller seeds. */
static void fill_random(uint8_t *p, size_t len)
{
        for (size_t i = 0; i < len; i++)
                p[i] = (uint8_t)rand();
}

/* The SSE4.2 path runs rounds of three 1024-byte blocks while 3072 bytes
 * are left, then of three 96-byte blocks while 288 are left, then one
 * chain; every length to 8192 crosses each way in and out of them. Both a
 * zero and a nonzero seed, since the running state is what the rounds
 * carry from one to the next. */
Test(dp_crc32c, sse_equals_table_on_every_length_to_8192_at_every_offset)
{
        if (!dp_crc32c_hw_available())
                cr_skip_test("this CPU has no SSE4.2: only the table path exists");
        enum { LEN_MAX = 8192 };
        uint8_t *mem = malloc(LEN_MAX + 8);
        cr_assert_not_null(mem);
        srand(8192);
        fill_random(mem, LEN_MAX + 8);
        for (size_t off = 0; off < 8; off++)
                for (size_t len = 0; len <= LEN_MAX; len++) {
                        const uint8_t *p = mem + off;
                        uint32_t seed = (uint32_t)rand() | 1u;
                        cr_assert_eq(dp_crc32c_hw(0, p, len), dp_crc32c_sw(0, p, len),
                                     "len %zu at offset %zu", len, off);
                        cr_assert_eq(dp_crc32c_hw(seed, p, len), dp_crc32c_sw(seed, p, len),
                                     "len %zu at offset %zu, seed %08x", len, off, seed);
                }
        free(mem);
}

/* CRC32C one bit at a time, straight from the polynomial: shares no table
 * with dp_crc32c.c, so a wrong table in both paths cannot hide here. */
static uint32_t crc32c_bitwise(uint32_t crc, const uint8_t *p, size_t len)
{
        uint32_t c = ~crc;
        for (size_t i = 0; i < len; i++) {
                c ^= p[i];
                for (int b = 0; b < 8; b++)
                        c = (c >> 1) ^ ((c & 1) ? 0x82f63b78u : 0);
        }
        return ~c;
}

/* Lengths one word and one byte either side of whole rounds: 288 and 3072
 * bytes are the short and long rounds of dp_crc32c.c, 384 what a 128-byte
 * short block would use. Sums of both kinds, and past 8192 (where the
 * test above stops) up to 64 KiB. */
Test(dp_crc32c, sse_equals_table_and_bitwise_around_the_round_sizes)
{
        if (!dp_crc32c_hw_available())
                cr_skip_test("this CPU has no SSE4.2: only the table path exists");
        static const size_t bases[] = {
                288,        2 * 288,           3 * 288,         10 * 288,
                384,        2 * 384,           3 * 384,
                3072,       2 * 3072,          3 * 3072,
                3072 + 288, 2 * 3072 + 2 * 288, 21 * 3072 + 288, 65536,
        };
        static const long deltas[] = { -9, -8, -1, 0, 1, 7, 8 };
        enum { MEM_LEN = 65536 + 8, OFF_MAX = 8 };   /* the largest base and delta */
        uint8_t *mem = malloc(MEM_LEN + OFF_MAX);
        cr_assert_not_null(mem);
        srand(3072);
        fill_random(mem, MEM_LEN + OFF_MAX);
        for (size_t b = 0; b < sizeof(bases) / sizeof(bases[0]); b++)
                for (size_t d = 0; d < sizeof(deltas) / sizeof(deltas[0]); d++)
                        for (size_t off = 0; off < OFF_MAX; off++) {
                                size_t len = (size_t)((long)bases[b] + deltas[d]);
                                cr_assert_leq(len, MEM_LEN);
                                const uint8_t *p = mem + off;
                                uint32_t seed = off == 0 ? 0 : (uint32_t)rand();
                                uint32_t want = crc32c_bitwise(seed, p, len);
                                cr_assert_eq(dp_crc32c_sw(seed, p, len), want,
                                             "sw: len %zu at offset %zu", len, off);
                                cr_assert_eq(dp_crc32c_hw(seed, p, len), want,
                                             "hw: len %zu at offset %zu, seed %08x", len, off,
                                             seed);
                        }
        free(mem);
}

/* All-zero and all-one buffers long enough for every kind of round: the
 * chains of a round start from zero, so zeros check that the joins do not
 * lose the running state, and ones that they do not lose the chains. */
Test(dp_crc32c, sse_equals_table_on_long_runs_of_zeros_and_ones)
{
        if (!dp_crc32c_hw_available())
                cr_skip_test("this CPU has no SSE4.2: only the table path exists");
        enum { LEN = 2 * 3072 + 3 * 288 + 100 };
        uint8_t *mem = malloc(LEN);
        cr_assert_not_null(mem);
        for (int fill = 0; fill < 2; fill++) {
                memset(mem, fill ? 0xff : 0, LEN);
                for (uint32_t seed = 0; seed < 3; seed++)
                        cr_assert_eq(dp_crc32c_hw(seed * 0x9e3779b9u, mem, LEN),
                                     crc32c_bitwise(seed * 0x9e3779b9u, mem, LEN),
                                     "fill %02x, seed %u", fill ? 0xff : 0, seed);
        }
        free(mem);
}

Test(dp_crc32c, pieces_chain_to_the_whole)
{
        uint8_t buf[1000];
        for (size_t i = 0; i < sizeof(buf); i++)
                buf[i] = (uint8_t)(i * 7 + 3);
        uint32_t whole = dp_crc32c(0, buf, sizeof(buf));
        for (size_t cut = 0; cut <= sizeof(buf); cut += 37) {
                uint32_t c = dp_crc32c(0, buf, cut);
                cr_assert_eq(dp_crc32c(c, buf + cut, sizeof(buf) - cut), whole, "cut at %zu", cut);
                c = dp_crc32c_sw(0, buf, cut);
                cr_assert_eq(dp_crc32c_sw(c, buf + cut, sizeof(buf) - cut), whole, "sw cut at %zu", cut);
        }
}

Test(dp_crc32c, a_flipped_bit_changes_the_value)
{
        uint8_t buf[64] = { 0 };
        uint32_t base = dp_crc32c(0, buf, sizeof(buf));
        for (size_t bit = 0; bit < sizeof(buf) * 8; bit++) {
                buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
                cr_assert_neq(dp_crc32c(0, buf, sizeof(buf)), base, "bit %zu", bit);
                buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
}
