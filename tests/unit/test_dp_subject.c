/* test_dp_subject.c - NATS subject syntax: accepted subjects and patterns,
 * a table of refused ones with their error, the length and token bounds,
 * and the token split the trie relies on. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "dataplane/dp_subject.h"

static int check(const char *s, bool wild)
{
        return dp_subject_check(s, strlen(s), wild);
}

/* Builds "t.t.t..." with n one-byte tokens into buf; returns its length. */
static size_t tokens_make(char *buf, uint32_t n)
{
        size_t len = 0;
        for (uint32_t i = 0; i < n; i++) {
                if (i > 0)
                        buf[len++] = '.';
                buf[len++] = 't';
        }
        buf[len] = '\0';
        return len;
}

Test(dp_subject, accepts_plain_subjects)
{
        static const char *const ok[] = {
                "a", "a.b", "orders.eu.created", "user.1234567.inbox", "$AQ.create",
                "_INBOX.abc-DEF_123", "a-b.c_d.e~f", "caf\xc3\xa9.men\xc3\xbc", "1.2.3",
        };
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
                cr_expect_eq(check(ok[i], false), 0, "%s", ok[i]);
                cr_expect_eq(check(ok[i], true), 0, "%s", ok[i]);
        }
}

Test(dp_subject, accepts_wildcard_patterns_only_when_allowed)
{
        static const char *const pats[] = {
                "*", ">", "a.*", "a.>", "*.b", "a.*.c", "*.*.>", "a.*.c.>",
        };
        for (size_t i = 0; i < sizeof(pats) / sizeof(pats[0]); i++) {
                cr_expect_eq(check(pats[i], true), 0, "%s", pats[i]);
                cr_expect_eq(check(pats[i], false), -EINVAL, "%s", pats[i]);
        }
}

Test(dp_subject, refuses_bad_strings_with_einval)
{
        static const char *const bad[] = {
                "", ".", "..", "a..b", "a.", ".a", "a b", " a", "a ", "a.>.b", ">.a",
                "a*", "*a", ">a", "a>", "a.**", "a.>>", "a.b*c", "a\tb", "a\nb", "a\rb",
                "a.\x01", "a\x7f", "a.b.", "a\x1b.b",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                cr_expect_eq(check(bad[i], true), -EINVAL, "pattern \"%s\"", bad[i]);
                cr_expect_eq(check(bad[i], false), -EINVAL, "subject \"%s\"", bad[i]);
        }
}

Test(dp_subject, refuses_nul_byte_and_null_pointer)
{
        cr_expect_eq(dp_subject_check("a\0b", 3, false), -EINVAL);
        cr_expect_eq(dp_subject_check(NULL, 3, false), -EINVAL);
        cr_expect_eq(dp_subject_check("abc", 0, false), -EINVAL);
}

Test(dp_subject, honours_len_not_nul)
{
        /* Subjects come out of frames: they are not NUL-terminated. */
        cr_expect_eq(dp_subject_check("a.b..", 3, false), 0);
        cr_expect_eq(dp_subject_check("a.", 1, false), 0);
        cr_expect_eq(dp_subject_check("a.>x", 3, true), 0);
}

Test(dp_subject, length_bound_is_255_bytes)
{
        char buf[300];
        memset(buf, 'x', sizeof(buf));
        cr_expect_eq(dp_subject_check(buf, DP_SUBJECT_MAX, false), 0);
        cr_expect_eq(dp_subject_check(buf, DP_SUBJECT_MAX + 1, false), -ENAMETOOLONG);
        cr_expect_eq(dp_subject_check(buf, sizeof(buf), true), -ENAMETOOLONG);
}

Test(dp_subject, token_bound_is_32)
{
        char buf[128];
        size_t len = tokens_make(buf, DP_SUBJECT_TOKENS_MAX);
        cr_expect_eq(dp_subject_check(buf, len, false), 0);
        len = tokens_make(buf, DP_SUBJECT_TOKENS_MAX + 1);
        cr_expect_eq(dp_subject_check(buf, len, false), -ENAMETOOLONG);
        cr_expect_eq(dp_subject_check(buf, len, true), -ENAMETOOLONG);
}

Test(dp_subject, split_reports_offsets_lengths_and_wildcards)
{
        struct dp_subject_tokens t;
        const char *s = "ab.*.cde.>";
        cr_assert_eq(dp_subject_split(s, strlen(s), true, &t), 4);
        cr_expect_eq(t.count, 4);
        cr_expect_eq(t.off[0], 0);
        cr_expect_eq(t.len[0], 2);
        cr_expect_eq(t.off[1], 3);
        cr_expect_eq(t.len[1], 1);
        cr_expect_eq(t.off[2], 5);
        cr_expect_eq(t.len[2], 3);
        cr_expect_eq(t.off[3], 9);
        cr_expect_eq(t.len[3], 1);
        cr_expect_eq(t.wild, 1u << 1 | 1u << 3);
        cr_expect(dp_subject_token_is_star(s, &t, 1));
        cr_expect(!dp_subject_token_is_gt(s, &t, 1));
        cr_expect(dp_subject_token_is_gt(s, &t, 3));
        cr_expect(!dp_subject_token_is_star(s, &t, 0));
}

Test(dp_subject, split_of_a_full_subject_keeps_byte_offsets)
{
        /* The last token of a 255-byte subject starts at byte 254. */
        char buf[DP_SUBJECT_MAX];
        struct dp_subject_tokens t;
        memset(buf, 'y', sizeof(buf));
        buf[DP_SUBJECT_MAX - 2] = '.';
        cr_assert_eq(dp_subject_split(buf, sizeof(buf), false, &t), 2);
        cr_expect_eq(t.len[0], DP_SUBJECT_MAX - 2);
        cr_expect_eq(t.off[1], DP_SUBJECT_MAX - 1);
        cr_expect_eq(t.len[1], 1);
        cr_expect_eq(t.wild, 0);
}

/* The quick yes is never wrong: for every byte value at every position of
 * subjects of 1 to 64 bytes (and with dots around it), a quick yes means
 * the full check accepts the subject with and without wildcards. And it
 * does say yes to the subjects it exists for, $AQ's among them. */
Test(dp_subject, quick_yes_implies_the_full_check_accepts)
{
        char s[64];
        for (size_t len = 1; len <= sizeof(s); len++) {
                for (size_t pos = 0; pos < len; pos++) {
                        for (unsigned b = 0; b < 256; b++) {
                                memset(s, 'x', len);
                                if (len > 4)
                                        s[len / 2] = '.';
                                s[pos] = (char)b;
                                if (!dp_subject_literal_quick(s, len))
                                        continue;
                                cr_assert_eq(dp_subject_check(s, len, false), 0,
                                             "byte %#x at %zu of %zu", b, pos, len);
                                cr_assert_eq(dp_subject_check(s, len, true), 0,
                                             "byte %#x at %zu of %zu", b, pos, len);
                        }
                }
        }
        static const char *const yes[] = {
                "$AQ.MAILBOX.CREATE", "$AQ.MAILBOX.DESTROY.nc1234.0.567",
                "_INBOX.abcdefghijklmnop.1_99", "a#b.c%d.e&f", "x",
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde",
        };
        for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
                cr_expect(dp_subject_literal_quick(yes[i], strlen(yes[i])), "%s", yes[i]);
        static const char *const no[] = { "a b", "a*", "a.>", "a..b", ".a", "a.", "a\tb", "a\x7f" };
        for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
                cr_expect(!dp_subject_literal_quick(no[i], strlen(no[i])), "%s", no[i]);
}
