/* dp_crc32c.c - CRC32C on SSE4.2 or slice-by-8 tables (see dp_crc32c.h).
 *
 * The table path is Intel's slice-by-8: eight 256-entry tables, where
 * table k maps a byte to the CRC of that byte followed by k zero bytes, so
 * one 8-byte word costs eight lookups and no carried dependency between
 * them. The tables (8 KiB) and the CPU check are made once, by a
 * constructor, before main and before any thread exists.
 */
#include "dataplane/dp_crc32c.h"

#include <endian.h>
#include <stdatomic.h>
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

/* The reflected Castagnoli polynomial (RFC 3720, B.4). */
#define DP_CRC32C_POLY 0x82f63b78u

static uint32_t dp_crc32c_table[8][256];
/* Set once by the constructor; dp_crc32c_force_sw clears it for tests. */
static _Atomic bool dp_crc32c_use_hw;
static bool dp_crc32c_have_hw;

__attribute__((constructor)) static void dp_crc32c_init(void)
{
        for (uint32_t i = 0; i < 256; i++) {
                uint32_t c = i;
                for (int b = 0; b < 8; b++)
                        c = (c >> 1) ^ ((c & 1) ? DP_CRC32C_POLY : 0);
                dp_crc32c_table[0][i] = c;
        }
        for (uint32_t i = 0; i < 256; i++)
                for (int k = 1; k < 8; k++) {
                        uint32_t prev = dp_crc32c_table[k - 1][i];
                        dp_crc32c_table[k][i] = (prev >> 8) ^ dp_crc32c_table[0][prev & 0xff];
                }
#if defined(__x86_64__)
        /* A constructor may run before libgcc's, which fills the CPU model
         * __builtin_cpu_supports reads: ask for it explicitly. */
        __builtin_cpu_init();
        dp_crc32c_have_hw = __builtin_cpu_supports("sse4.2");
#endif
        atomic_store_explicit(&dp_crc32c_use_hw, dp_crc32c_have_hw, memory_order_relaxed);
}

static inline uint32_t dp_crc32c_byte(uint32_t c, uint8_t b)
{
        return dp_crc32c_table[0][(c ^ b) & 0xff] ^ (c >> 8);
}

uint32_t dp_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
        const uint8_t *p = buf;
        uint32_t c = ~crc;
        /* Byte by byte up to an 8-byte boundary, so the words load aligned. */
        while (len > 0 && ((uintptr_t)p & 7) != 0) {
                c = dp_crc32c_byte(c, *p++);
                len--;
        }
        uint32_t (*t)[256] = dp_crc32c_table;
        while (len >= 8) {
                uint64_t w;
                memcpy(&w, p, 8);
                w = le64toh(w);   /* the CRC is defined on the byte stream */
                uint32_t lo = (uint32_t)w ^ c;
                uint32_t hi = (uint32_t)(w >> 32);
                c = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^
                    t[4][lo >> 24] ^ t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^
                    t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
                p += 8;
                len -= 8;
        }
        while (len > 0) {
                c = dp_crc32c_byte(c, *p++);
                len--;
        }
        return ~c;
}

#if defined(__x86_64__)
/* One dependent chain of crc32 instructions: 8 bytes per 3 cycles of
 * latency, about 8 GB/s at 3 GHz, so a 1 MiB record costs ~130 us. Three
 * interleaved chains (and a combine step) would triple that; not worth the
 * code until a profile says so. */
__attribute__((target("sse4.2")))
uint32_t dp_crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
        const uint8_t *p = buf;
        uint64_t c = (uint32_t)~crc;
        while (len > 0 && ((uintptr_t)p & 7) != 0) {
                c = _mm_crc32_u8((uint32_t)c, *p++);
                len--;
        }
        while (len >= 8) {
                uint64_t w;
                memcpy(&w, p, 8);
                c = _mm_crc32_u64(c, w);
                p += 8;
                len -= 8;
        }
        while (len > 0) {
                c = _mm_crc32_u8((uint32_t)c, *p++);
                len--;
        }
        return ~(uint32_t)c;
}
#else
uint32_t dp_crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
        return dp_crc32c_sw(crc, buf, len);
}
#endif

uint32_t dp_crc32c(uint32_t crc, const void *buf, size_t len)
{
        if (atomic_load_explicit(&dp_crc32c_use_hw, memory_order_relaxed))
                return dp_crc32c_hw(crc, buf, len);
        return dp_crc32c_sw(crc, buf, len);
}

bool dp_crc32c_hw_available(void)
{
        return dp_crc32c_have_hw;
}

void dp_crc32c_force_sw(bool on)
{
        atomic_store_explicit(&dp_crc32c_use_hw, dp_crc32c_have_hw && !on, memory_order_relaxed);
}
