/* dp_crc32c.c - CRC32C on SSE4.2 or slice-by-8 tables (see dp_crc32c.h).
 *
 * The table path is Intel's slice-by-8: eight 256-entry tables, where
 * table k maps a byte to the CRC of that byte followed by k zero bytes, so
 * one 8-byte word costs eight lookups and no carried dependency between
 * them. The tables (8 KiB) and the CPU check are made once, by a
 * constructor, before main and before any thread exists.
 *
 * The SSE4.2 path runs three crc32 chains over three blocks side by side
 * and joins them with "shift" tables (see dp_crc32c_hw); those are made by
 * the same constructor, from the byte table, so they need no SSE4.2.
 */
#include "dataplane/dp_crc32c.h"

#include "atomq/frame.h"

#include <endian.h>
#include <stdatomic.h>
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

/* The reflected Castagnoli polynomial (RFC 3720, B.4). */
#define DP_CRC32C_POLY 0x82f63b78u

static uint32_t dp_crc32c_table[8][256];

#if defined(__x86_64__)
/* The three-chain blocks of the SSE4.2 path, in bytes (see dp_crc32c_hw).
 * A round of three long blocks keeps the crc32 unit busy for ~400 cycles,
 * which hides its joins; it needs 3 KiB, though, so buffers of a few
 * hundred bytes to 3 KiB take rounds of three short blocks. 96 rather than
 * 128 or 64: it pays off from 288 bytes on and was as fast as 128 on 1 KiB,
 * where 64 makes the joins the critical path. Multiples of 8, since the
 * chains take 8-byte words. */
#define DP_CRC32C_BLOCK_LONG 1024
#define DP_CRC32C_BLOCK_SHORT 96
_Static_assert(DP_CRC32C_BLOCK_LONG % 8 == 0, "chains step by 8-byte words");
_Static_assert(DP_CRC32C_BLOCK_SHORT % 8 == 0, "chains step by 8-byte words");

/* t[k][v] is the raw CRC state v << 8k after one block of zero bytes: the
 * update is linear, so any state moves past a block in four lookups.
 * 4 KiB each. A struct, because C11 does not convert uint32_t (*)[256] to
 * a pointer to const arrays. */
struct dp_crc32c_shift {
        uint32_t t[4][256];
};
static struct dp_crc32c_shift dp_crc32c_shift_long;
static struct dp_crc32c_shift dp_crc32c_shift_short;
#endif

/* Set once by the constructor; dp_crc32c_force_sw clears it for tests. */
static _Atomic bool dp_crc32c_use_hw;
static bool dp_crc32c_have_hw;

static inline uint32_t dp_crc32c_byte(uint32_t c, uint8_t b)
{
        return dp_crc32c_table[0][(c ^ b) & 0xff] ^ (c >> 8);
}

#if defined(__x86_64__)
/* Fills shift (see struct dp_crc32c_shift) for blocks of len_bytes, from the
 * byte table, which must be ready. Only the 32 one-bit states go through
 * the zeros byte by byte (32 * 1024 steps, tens of microseconds at load);
 * every other entry is the XOR of the one-bit entries for its set bits. */
static void dp_crc32c_shift_init(struct dp_crc32c_shift *shift, size_t len_bytes)
{
        uint32_t bit[32];
        for (int i = 0; i < 32; i++) {
                uint32_t c = 1u << i;
                for (size_t n = 0; n < len_bytes; n++)
                        c = dp_crc32c_byte(c, 0);
                bit[i] = c;
        }
        for (int k = 0; k < 4; k++) {
                shift->t[k][0] = 0;
                for (uint32_t v = 1; v < 256; v++) {
                        /* v without its lowest set bit came earlier. */
                        uint32_t rest = v & (v - 1);
                        shift->t[k][v] = shift->t[k][rest] ^ bit[8 * k + __builtin_ctz(v)];
                }
        }
}
#endif

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
        dp_crc32c_shift_init(&dp_crc32c_shift_long, DP_CRC32C_BLOCK_LONG);
        dp_crc32c_shift_init(&dp_crc32c_shift_short, DP_CRC32C_BLOCK_SHORT);
        /* A constructor may run before libgcc's, which fills the CPU model
         * __builtin_cpu_supports reads: ask for it explicitly. */
        __builtin_cpu_init();
        dp_crc32c_have_hw = __builtin_cpu_supports("sse4.2");
#endif
        atomic_store_explicit(&dp_crc32c_use_hw, dp_crc32c_have_hw, memory_order_relaxed);
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
/* The raw state c (no inversions) after one block of zero bytes. */
static inline uint32_t dp_crc32c_shift_apply(const struct dp_crc32c_shift *shift, uint32_t c)
{
        const uint32_t (*t)[256] = shift->t;
        return t[0][c & 0xff] ^ t[1][(c >> 8) & 0xff] ^ t[2][(c >> 16) & 0xff] ^ t[3][c >> 24];
}

/* Runs the raw state *c over as many rounds of three blocks of block_bytes
 * as fit in the len bytes at p, and returns the bytes taken. The crc32
 * unit starts one instruction a cycle but each takes 3 to finish, so one
 * chain leaves it idle two cycles in three: three chains over the three
 * blocks, each from state 0, keep it busy. The raw update is linear over
 * GF(2), raw(s, X||Y) = shift_|Y|(raw(s, X)) ^ raw(0, Y), which joins
 * them. The running state goes through three shifts per round instead of
 * seeding chain A, so the next round's chains need not wait for the join
 * and the out-of-order core runs them side by side (1 KiB: ~65 ns, against
 * ~88 with chain A seeded). Always inlined so block_bytes is a constant. */
__attribute__((target("sse4.2"), always_inline))
static inline size_t dp_crc32c_hw_3way(uint32_t *c, const uint8_t *p, size_t len,
                                       size_t block_bytes, const struct dp_crc32c_shift *shift)
{
        size_t done = 0;
        uint32_t s = *c;
        while (len - done >= 3 * block_bytes) {
                const uint8_t *q = p + done;
                uint64_t a = 0, b = 0, d = 0;
                for (size_t i = 0; i < block_bytes; i += 8) {
                        uint64_t wa, wb, wd;
                        memcpy(&wa, q + i, 8);
                        memcpy(&wb, q + block_bytes + i, 8);
                        memcpy(&wd, q + 2 * block_bytes + i, 8);
                        a = _mm_crc32_u64(a, wa);
                        b = _mm_crc32_u64(b, wb);
                        d = _mm_crc32_u64(d, wd);
                }
                s = dp_crc32c_shift_apply(shift, s) ^ (uint32_t)a;
                s = dp_crc32c_shift_apply(shift, s) ^ (uint32_t)b;
                s = dp_crc32c_shift_apply(shift, s) ^ (uint32_t)d;
                done += 3 * block_bytes;
        }
        *c = s;
        return done;
}

/* Long rounds, then short ones; returns the bytes taken. Out of line, so
 * that buffers too short for a round do not pay on every call for the
 * registers it needs (64 bytes went from 10 to 13 ns inlined). */
__attribute__((target("sse4.2"), noinline))
static size_t dp_crc32c_hw_rounds(uint32_t *c, const uint8_t *p, size_t len)
{
        size_t done = dp_crc32c_hw_3way(c, p, len, DP_CRC32C_BLOCK_LONG, &dp_crc32c_shift_long);
        return done + dp_crc32c_hw_3way(c, p + done, len - done, DP_CRC32C_BLOCK_SHORT,
                                        &dp_crc32c_shift_short);
}

/* One dependent chain of crc32 instructions runs 8 bytes per 3 cycles,
 * and that put this function at 7-11% of a worker's CPU with 1 KiB log
 * records. So from 288 bytes on, three chains run side by side
 * (dp_crc32c_hw_3way): 1 KiB went from ~130 to ~60 ns, 64 KiB from ~8.6
 * to ~2.9 us. Shorter buffers, and the under-288-byte tail the rounds
 * leave, take the single chain. */
__attribute__((target("sse4.2")))
uint32_t dp_crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
        const uint8_t *p = buf;
        uint64_t c = (uint32_t)~crc;
        while (len > 0 && ((uintptr_t)p & 7) != 0) {
                c = _mm_crc32_u8((uint32_t)c, *p++);
                len--;
        }
        if (len >= 3 * DP_CRC32C_BLOCK_SHORT) {
                uint32_t s = (uint32_t)c;
                size_t done = dp_crc32c_hw_rounds(&s, p, len);
                c = s;
                p += done;
                len -= done;
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

uint32_t dp_crc32c_dgram(uint64_t session, const void *f, uint32_t len)
{
        static const uint8_t zero[4];
        const uint32_t at = (uint32_t)offsetof(struct atomq_frame, crc32c);
        const uint8_t *p = f;
        uint32_t c = dp_crc32c(0, &session, sizeof(session));
        c = dp_crc32c(c, p, at);
        c = dp_crc32c(c, zero, sizeof(zero));
        return dp_crc32c(c, p + at + sizeof(zero), len - at - (uint32_t)sizeof(zero));
}
