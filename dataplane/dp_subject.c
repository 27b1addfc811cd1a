/* dp_subject.c - NATS subject validation and splitting (see dp_subject.h). */
#include "dataplane/dp_subject.h"

#include <errno.h>

#include "shm/shm_base.h"

/* Byte classes. Everything but the few bytes the rules name is ordinary,
 * so the scan costs one load and one branch per byte. */
enum dp_subject_class {
        DP_SUBJECT_PLAIN = 0,
        DP_SUBJECT_BAD,         /* whitespace, control, DEL */
        DP_SUBJECT_DOT,
        DP_SUBJECT_WILD,        /* '*' or '>' */
};

#define DP_SUBJECT_BAD_X8 DP_SUBJECT_BAD, DP_SUBJECT_BAD, DP_SUBJECT_BAD, DP_SUBJECT_BAD, \
        DP_SUBJECT_BAD, DP_SUBJECT_BAD, DP_SUBJECT_BAD, DP_SUBJECT_BAD
static const uint8_t dp_subject_class[256] = {
        DP_SUBJECT_BAD_X8, DP_SUBJECT_BAD_X8, DP_SUBJECT_BAD_X8, DP_SUBJECT_BAD_X8, /* 0x00-0x1f */
        [' '] = DP_SUBJECT_BAD,
        ['.'] = DP_SUBJECT_DOT,
        ['*'] = DP_SUBJECT_WILD,
        ['>'] = DP_SUBJECT_WILD,
        [0x7f] = DP_SUBJECT_BAD,
};
#undef DP_SUBJECT_BAD_X8

/* Closes the token s[start..end) as token number t->count. last says whether
 * it ends the subject, which is where '>' must be. */
static int dp_subject_token_close(const char *s, size_t start, size_t end, bool has_wild,
                                  bool last, bool allow_wildcards,
                                  struct dp_subject_tokens *t)
{
        size_t n = end - start;

        if (n == 0)
                return -EINVAL;
        if (t->count == DP_SUBJECT_TOKENS_MAX)
                return -ENAMETOOLONG;
        if (has_wild) {
                /* '*' and '>' are wildcards only as a whole token. */
                if (n != 1 || !allow_wildcards)
                        return -EINVAL;
                if (s[start] == '>' && !last)
                        return -EINVAL;
                t->wild |= 1u << t->count;
        }
        t->off[t->count] = (uint8_t)start;
        t->len[t->count] = (uint8_t)n;
        t->count++;
        return 0;
}

int dp_subject_split(const char *s, size_t len, bool allow_wildcards,
                     struct dp_subject_tokens *out)
{
        if (s == NULL || len == 0)
                return -EINVAL;
        if (len > DP_SUBJECT_MAX)
                return -ENAMETOOLONG;

        out->count = 0;
        out->wild = 0;
        size_t start = 0;
        bool has_wild = false;
        for (size_t i = 0; i < len; i++) {
                uint8_t cls = dp_subject_class[(unsigned char)s[i]];
                if (shm_likely(cls == DP_SUBJECT_PLAIN))
                        continue;
                if (cls == DP_SUBJECT_BAD)
                        return -EINVAL;
                if (cls == DP_SUBJECT_WILD) {
                        has_wild = true;
                } else {
                        int rc = dp_subject_token_close(s, start, i, has_wild, false,
                                                        allow_wildcards, out);
                        if (rc < 0)
                                return rc;
                        start = i + 1;
                        has_wild = false;
                }
        }
        int rc = dp_subject_token_close(s, start, len, has_wild, true, allow_wildcards, out);
        return rc < 0 ? rc : (int)out->count;
}

int dp_subject_check(const char *s, size_t len, bool allow_wildcards)
{
        /* Most subjects are plain: answer those without the byte loop. */
        if (dp_subject_literal_quick(s, len))
                return 0;
        struct dp_subject_tokens t;
        int rc = dp_subject_split(s, len, allow_wildcards, &t);
        return rc < 0 ? rc : 0;
}
