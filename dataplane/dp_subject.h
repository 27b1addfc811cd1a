/* dp_subject.h - NATS subject syntax: validation and splitting into tokens.
 *
 * A subject is tokens separated by '.', e.g. "orders.eu.created". The rules
 * follow the NATS subject specification, tightened where the server is
 * lenient, so that the trie never has to guess:
 *   - no empty token (no leading, trailing or doubled dot) and not empty;
 *   - no whitespace or control byte (0x00-0x20, 0x7f); bytes >= 0x80 are
 *     allowed so UTF-8 subjects work;
 *   - '*' (exactly one token) and '>' (one or more trailing tokens) are
 *     wildcards only as a whole token, '>' only as the last one; a '*' or
 *     '>' inside a longer token ("a*", ">a") is refused rather than taken
 *     as a literal, so a typo never silently subscribes to nothing;
 *   - wildcards only where the caller allows them (SUB, not PUB);
 *   - at most DP_SUBJECT_MAX bytes (the frame format's subject_len bound)
 *     and DP_SUBJECT_TOKENS_MAX tokens (bounds the trie walk's depth).
 *
 *      struct dp_subject_tokens tok;
 *      int n = dp_subject_split("a.*.c", 5, true, &tok);   // 3
 *      // tok.off[1] == 2, tok.len[1] == 1, tok.wild == 1u << 1
 *
 * Subjects come from the network: these functions return errors, they never
 * assert on their input.
 */
#ifndef ATOMQ_DP_SUBJECT_H
#define ATOMQ_DP_SUBJECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define DP_SUBJECT_MAX 255u
#define DP_SUBJECT_TOKENS_MAX 32u

/* One split subject. Offsets and lengths fit a byte because a subject is at
 * most DP_SUBJECT_MAX bytes; wild fits a word because there are at most 32
 * tokens. */
struct dp_subject_tokens {
        uint32_t count;                         /* tokens in use */
        uint32_t wild;                          /* bit i: token i is '*' or '>' */
        uint8_t off[DP_SUBJECT_TOKENS_MAX];     /* first byte of token i */
        uint8_t len[DP_SUBJECT_TOKENS_MAX];     /* bytes in token i, >= 1 */
};
_Static_assert(DP_SUBJECT_MAX <= UINT8_MAX, "offsets are bytes");
_Static_assert(DP_SUBJECT_TOKENS_MAX <= 32, "wild is a 32-bit mask");

/* Validates s[0..len) and splits it into *out (which is left undefined on
 * error). Returns the number of tokens, or
 *   -EINVAL:       empty, an empty token, a whitespace or control byte, a
 *                  '*' or '>' inside a token, '>' before the last token, or
 *                  a wildcard when allow_wildcards is false;
 *   -ENAMETOOLONG: more than DP_SUBJECT_MAX bytes or more than
 *                  DP_SUBJECT_TOKENS_MAX tokens. */
int dp_subject_split(const char *s, size_t len, bool allow_wildcards,
                     struct dp_subject_tokens *out);

/* As dp_subject_split without the tokens: 0, -EINVAL or -ENAMETOOLONG. */
int dp_subject_check(const char *s, size_t len, bool allow_wildcards);

/* True when token i of a split subject is the '>' wildcard. */
static inline bool dp_subject_token_is_gt(const char *s, const struct dp_subject_tokens *t,
                                          uint32_t i)
{
        return (t->wild >> i & 1u) && s[t->off[i]] == '>';
}

/* True when token i of a split subject is the '*' wildcard. */
static inline bool dp_subject_token_is_star(const char *s, const struct dp_subject_tokens *t,
                                            uint32_t i)
{
        return (t->wild >> i & 1u) && s[t->off[i]] == '*';
}

/* The quick answer for the common case, inline for callers that check
 * millions of names (the entity table): true when s[0..len) is certainly a
 * valid literal subject, so dp_subject_check would return 0 for it with or
 * without wildcards. False says nothing: ask dp_subject_check.
 *
 * It takes 1 to 64 bytes, 16 at a time with SSE2 or else 8 at a time in a
 * word (SWAR), and says yes when no byte is below 0x21, '*', or one of 0x3e
 * 0x3f 0x7e 0x7f (a superset of whitespace, control bytes, DEL, '*' and '>'
 * that is cheap to test: the few printable bytes it also catches, '?' and
 * '~', just go the slow way; '$' of the $AQ and $SYS subjects does not)
 * and no '.' leaves a token empty. 64
 * bytes keep one bit per byte in a word, and the tokens within bounds: with
 * no empty token, 64 bytes hold at most 32. */
static inline bool dp_subject_literal_quick(const char *s, size_t len);

#define DP_SUBJECT_LANES_LOW 0x0101010101010101ull
#define DP_SUBJECT_LANES_HIGH 0x8080808080808080ull

/* SWAR lane tests: each sets the high bit of every byte lane that passes.
 * Both are exact, with no carry from one lane into the next. */

/* Lanes of w equal to c. */
static inline uint64_t dp_subject_lanes_eq(uint64_t w, uint8_t c)
{
        uint64_t x = w ^ (DP_SUBJECT_LANES_LOW * c);
        /* A lane's high bit ends up set when x's lane is not zero: its low
         * seven bits plus 0x7f carry into it (and no further), or it was
         * set already. */
        uint64_t t = ((x & ~DP_SUBJECT_LANES_HIGH) + ~DP_SUBJECT_LANES_HIGH) | x;
        return ~t & DP_SUBJECT_LANES_HIGH;
}

/* Lanes of w below n, for 1 <= n <= 0x80. */
static inline uint64_t dp_subject_lanes_below(uint64_t w, uint8_t n)
{
        /* Lane b < 0x80 plus 0x80 - n reaches 0x80 exactly when b >= n, and
         * stays below 0x100; a lane of 0x80 or more is never below n. */
        uint64_t y = (w & ~DP_SUBJECT_LANES_HIGH) + DP_SUBJECT_LANES_LOW * (uint8_t)(0x80 - n);
        return ~(y | w) & DP_SUBJECT_LANES_HIGH;
}

/* The lanes' high bits as 8 bits, bit i for lane i. The multiply moves lane
 * i's bit (at 8i after the shift) to bit 56 + i; the other products land
 * below bit 56 without reaching it, or above bit 63. */
static inline uint64_t dp_subject_lanes_bits(uint64_t m)
{
        return ((m >> 7) * 0x0102040810204080ull) >> 56;
}

/* Lanes that may not be in a plain literal (see dp_subject_literal_quick):
 * below 0x21, '*', or 0x3e 0x3f 0x7e 0x7f, the bytes that OR 0x41 makes
 * 0x7f. */
static inline uint64_t dp_subject_lanes_odd(uint64_t w)
{
        return dp_subject_lanes_below(w, 0x21) | dp_subject_lanes_eq(w, '*') |
               dp_subject_lanes_eq(w | DP_SUBJECT_LANES_LOW * 0x41, 0x7f);
}

/* 8 bytes of s, byte i in lane i whatever the host's byte order. */
static inline uint64_t dp_subject_load8(const char *s)
{
        uint64_t w;
        memcpy(&w, s, sizeof(w));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        w = __builtin_bswap64(w);
#endif
        return w;
}

/* 1 to 7 bytes of s in lanes 0 to len - 1 (the others zero), read without
 * touching s[len]: two overlapping 4-byte loads, or up to three bytes. */
static inline uint64_t dp_subject_load_short(const char *s, size_t len)
{
        const uint8_t *b = (const uint8_t *)s;
        if (len >= 4) {
                uint32_t lo, hi;
                memcpy(&lo, s, 4);
                memcpy(&hi, s + len - 4, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
                lo = __builtin_bswap32(lo);
                hi = __builtin_bswap32(hi);
#endif
                /* The lanes both loads cover get the same byte twice. */
                return lo | (uint64_t)hi << (8 * (len - 4));
        }
        return b[0] | (uint64_t)b[len / 2] << (8 * (len / 2)) |
               (uint64_t)b[len - 1] << (8 * (len - 1));
}

#if defined(__SSE2__)
#include <emmintrin.h>

/* SSE2 (every x86-64): one vector holds 16 bytes of the subject; each test
 * is a compare of all 16 lanes and a byte mask. Returns the lanes that may
 * not be in a plain literal, and in *dots the lanes holding '.'. */
static inline uint32_t dp_subject_vec_bits(__m128i v, uint32_t *dots)
{
        /* Unsigned v <= 0x20: min(v, 0x20) == v. Bytes of 0x80 and up
         * (UTF-8) stay plain, as the rules want. */
        __m128i low = _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x20)), v),
                                   _mm_cmpeq_epi8(v, _mm_set1_epi8('*')));
        __m128i top = _mm_cmpeq_epi8(_mm_or_si128(v, _mm_set1_epi8(0x41)), _mm_set1_epi8(0x7f));
        *dots = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('.')));
        return (uint32_t)_mm_movemask_epi8(_mm_or_si128(low, top));
}

/* 8 to 16 bytes of s in one vector: s[0..8) in lanes 0-7 and s[len-8..len)
 * in lanes 8-15 (the same bytes twice when len < 16), read without
 * touching s[len]. */
static inline __m128i dp_subject_vec_load(const char *s, size_t len)
{
        uint64_t lo, hi;
        memcpy(&lo, s, 8);
        memcpy(&hi, s + len - 8, 8);
        return _mm_set_epi64x((long long)hi, (long long)lo);
}

/* Bit i of the result: byte i is '.'; lanes 8-15 of a dp_subject_vec_load
 * vector stand for bytes off + len - 8 on. OR-ing the bits of a byte seen
 * twice is exact: both lanes hold it. */
static inline uint64_t dp_subject_vec_dots(uint32_t dots, size_t len)
{
        return (uint64_t)(dots & 0xff) | (uint64_t)(dots >> 8) << (len - 8);
}
#endif

static inline bool dp_subject_literal_quick(const char *s, size_t len)
{
        uint64_t odd, dots;
        if (s == NULL || len == 0 || len > 64)
                return false;
        _Static_assert(DP_SUBJECT_TOKENS_MAX >= 32, "64 bytes hold 32 tokens");
#if defined(__SSE2__)
        uint32_t d;
        if (len < 8) {
                __m128i v = _mm_cvtsi64_si128((long long)dp_subject_load_short(s, len));
                uint32_t lanes = (1u << len) - 1;
                odd = dp_subject_vec_bits(v, &d) & lanes;
                dots = d & lanes;
        } else if (len <= 16) {
                odd = dp_subject_vec_bits(dp_subject_vec_load(s, len), &d);
                dots = dp_subject_vec_dots(d, len);
        } else {
                /* 16 bytes at 0, 16, ... and the last 16, overlapping the
                 * ones before them. */
                odd = dots = 0;
                for (size_t off = 0;; off += 16) {
                        if (off + 16 > len)
                                off = len - 16;
                        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + off));
                        odd |= dp_subject_vec_bits(v, &d);
                        dots |= (uint64_t)d << off;
                        if (off + 16 == len)
                                break;
                }
        }
#else
        if (len < 8) {
                uint64_t w = dp_subject_load_short(s, len);
                uint64_t lanes = DP_SUBJECT_LANES_HIGH >> (8 * (8 - len));
                odd = dp_subject_lanes_odd(w) & lanes;
                dots = dp_subject_lanes_bits(dp_subject_lanes_eq(w, '.') & lanes);
        } else {
                /* Words at 0, 8, ... and one ending at len, overlapping the
                 * one before it: overlapping lanes hold the same bytes, so
                 * OR-ing their bits in place is exact. */
                odd = dots = 0;
                for (size_t off = 0;; off += 8) {
                        if (off + 8 > len)
                                off = len - 8;
                        uint64_t w = dp_subject_load8(s + off);
                        odd |= dp_subject_lanes_odd(w);
                        dots |= dp_subject_lanes_bits(dp_subject_lanes_eq(w, '.')) << off;
                        if (off + 8 == len)
                                break;
                }
        }
#endif
        /* Bit i of dots: byte i is '.'. No leading, trailing or doubled
         * dot: no empty token. */
        return odd == 0 && (dots & 1) == 0 && (dots >> (len - 1)) == 0 &&
               (dots & (dots >> 1)) == 0;
}

#endif /* ATOMQ_DP_SUBJECT_H */
