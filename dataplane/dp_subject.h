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

#endif /* ATOMQ_DP_SUBJECT_H */
