/* test_dp_crc32c.c - CRC32C: the published check values (the usual
 * "123456789" and RFC 3720's appendix B.4), the SSE4.2 path against the
 * table path on every length 0..300 at every alignment, piecewise
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
