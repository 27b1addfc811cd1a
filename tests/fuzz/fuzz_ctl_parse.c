/* fuzz_ctl_parse.c - libFuzzer target for the control socket's input side:
 * the tokenizer, the value parsers, and whole command lines through
 * ctl_cmd_exec in a session that has no dataplane engine.
 *
 * The input is a script: lines split at '\n', each handled as atomqd
 * handles one line of a control client. For every line
 *   - ctl_args_split must keep its contract (counts, offsets and lengths
 *     inside the line, each word a NUL-terminated copy of its bytes, `more`
 *     exactly when words were left over);
 *   - every word, and the value of every key=value word, goes through
 *     ctl_parse_bytes/int/bool/hugepages/addr and ctl_parse_duration as an
 *     exact-size heap string (ASan sees a read past its NUL), and each
 *     result is compared with what the grammar in ctl_parse.h and ctl_cmd.h
 *     says it should be (a number too large is -ERANGE only when the rest
 *     is a valid unit: this target found it -ERANGE before the junk was
 *     seen, fixed since); each word is also checked
 *     as an entity name (dp_subject_check against its quick path);
 *   - ctl_cmd_exec runs the line; its reply must end with an empty line,
 *     be one JSON object (valid UTF-8, checked by a small validator here)
 *     when `json` came first, and in text carry no control byte that could
 *     break the framing.
 * Without an engine, commands flagged CTL_CMD_F_ENGINE are refused before
 * their arguments are parsed; help, show info and quit run whole. Odd
 * lines see an atomqd that is stopping. Nothing persists between inputs.
 *
 *      sh tests/fuzz/run.sh build-fuzz/tests/fuzz/fuzz_ctl_parse \
 *              tests/fuzz/corpus/ctl_parse build-fuzz/tests/fuzz/ctl_parse
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/ctl_cmd.h"
#include "control/ctl_parse.h"
#include "dataplane/dp_subject.h"

/* A broken invariant: say which, and crash so libFuzzer keeps the input. */
#define FZ_NAME "fuzz_ctl_parse"
#include "tests/fuzz/fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* --- reference grammar: what the headers document, written apart from the
 * code under test so the two can disagree ---------------------------------- */

static bool fz_digit(char c)
{
        return c >= '0' && c <= '9';
}

/* Digits at s into *v; false when they overflow 64 bits. *end: first
 * non-digit. */
static bool fz_digits(const char *s, uint64_t *v, const char **end)
{
        bool ok = true;
        *v = 0;
        for (; fz_digit(*s); s++) {
                uint64_t d = (uint64_t)(*s - '0');
                if (*v > (UINT64_MAX - d) / 10)
                        ok = false;
                else
                        *v = *v * 10 + d;
        }
        *end = s;
        return ok;
}

/* ctl_parse_int: '-'? digits, nothing else, within [min, max]. */
static int fz_ref_int(const char *s, long long min, long long max, long long *out)
{
        bool neg = s[0] == '-';
        const char *p = s + neg, *end;
        uint64_t mag;
        if (!fz_digit(*p))
                return -EINVAL;
        bool fits = fz_digits(p, &mag, &end);
        if (*end != '\0')
                return -EINVAL;
        if (!fits || mag > (uint64_t)LLONG_MAX + neg)
                return -ERANGE;
        /* -2^63 has no positive twin: step around it. */
        long long v = neg ? -(long long)(mag - 1) - 1 : (long long)mag;
        if (v < min || v > max)
                return -ERANGE;
        *out = v;
        return 0;
}

/* ctl_parse_bytes: digits, then K, M, G or T (binary; "KiB" and "KB"
 * spellings too), at most 2^63 - 1 bytes. */
static int fz_ref_bytes(const char *s, uint64_t *out)
{
        static const char units[] = "KMGT";
        const char *end;
        uint64_t v;
        if (!fz_digit(*s))
                return -EINVAL;
        bool overflowed = !fz_digits(s, &v, &end);
        unsigned shift = 0;
        if (*end != '\0') {
                const char *u = memchr(units, *end, 4);
                if (u == NULL)
                        return -EINVAL;
                shift = 10u * (unsigned)(u - units + 1);
                end++;
                end += *end == 'i';
                end += *end == 'B';
                if (*end != '\0')
                        return -EINVAL;
        }
        if (overflowed || v > (UINT64_MAX >> 1) >> shift)
                return -ERANGE;
        *out = v << shift;
        return 0;
}

/* ctl_parse_duration: digits and one of ms, s, m, h, d; or a bare 0. */
static int fz_ref_duration(const char *s, uint32_t *out)
{
        static const struct { const char *unit; uint64_t ms; } units[] = {
                { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
                { "d", 86400000 },
        };
        const char *end;
        uint64_t v;
        if (!fz_digit(*s))
                return -EINVAL;
        /* No duration in any unit fits once the number alone is above
         * UINT32_MAX: that counts as overflow, whatever follows. */
        bool overflowed = !fz_digits(s, &v, &end) || v > UINT32_MAX;
        if (*end == '\0') {
                if (overflowed || v != 0)
                        return -EINVAL;
                *out = 0;
                return 0;
        }
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
                if (strcmp(end, units[i].unit) != 0)
                        continue;
                if (overflowed || v > UINT32_MAX / units[i].ms)
                        return -ERANGE;
                *out = (uint32_t)(v * units[i].ms);
                return 0;
        }
        return -EINVAL;
}

/* --- the value parsers ------------------------------------------------- */

static void fz_check_int(const char *s, long long min, long long max)
{
        const long long sentinel = 0x5a5a5a5a;
        long long got = sentinel, want = sentinel;
        int rc = ctl_parse_int(s, min, max, &got);
        int ref = fz_ref_int(s, min, max, &want);
        FZ_CHECK(rc == ref);
        FZ_CHECK(got == want);  /* the value, or untouched on error */
        if (rc == 0)
                FZ_CHECK(got >= min && got <= max);
}

static void fz_check_bytes(const char *s)
{
        const uint64_t sentinel = 0xa5a5a5a5a5a5a5a5ull;
        uint64_t got = sentinel, want = sentinel;
        int rc = ctl_parse_bytes(s, &got);
        int ref = fz_ref_bytes(s, &want);
        FZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ERANGE);
        FZ_CHECK(rc == ref);
        if (rc == 0) {
                FZ_CHECK(got == want);
                FZ_CHECK(got <= (UINT64_MAX >> 1));
        } else {
                FZ_CHECK(got == sentinel);
        }
}

static void fz_check_duration(const char *s)
{
        const uint32_t sentinel = 0x5a5a5a5au;
        uint32_t got = sentinel, want = sentinel;
        int rc = ctl_parse_duration(s, &got);
        int ref = fz_ref_duration(s, &want);
        FZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ERANGE);
        FZ_CHECK(rc == ref);
        FZ_CHECK(rc == 0 ? got == want : got == sentinel);
}

static void fz_check_words(const char *s)
{
        static const char *const yes[] = { "true", "yes", "on", "1" };
        static const char *const no[] = { "false", "no", "off", "0" };
        int want = -EINVAL;
        bool b = false, bv = false;
        for (size_t i = 0; i < 4; i++) {
                if (strcmp(s, yes[i]) == 0)
                        want = 0, bv = true;
                if (strcmp(s, no[i]) == 0)
                        want = 0, bv = false;
        }
        int rc = ctl_parse_bool(s, &b);
        FZ_CHECK(rc == want);
        FZ_CHECK(rc != 0 || b == bv);

        enum shm_hugepages h = (enum shm_hugepages)77;
        rc = ctl_parse_hugepages(s, &h);
        if (strcmp(s, "auto") == 0)
                FZ_CHECK(rc == 0 && h == SHM_HUGEPAGES_AUTO);
        else if (strcmp(s, "on") == 0)
                FZ_CHECK(rc == 0 && h == SHM_HUGEPAGES_ON);
        else if (strcmp(s, "off") == 0)
                FZ_CHECK(rc == 0 && h == SHM_HUGEPAGES_OFF);
        else
                FZ_CHECK(rc == -EINVAL && h == (enum shm_hugepages)77);
}

/* ctl_parse_addr: "ADDR:PORT" split at the last ':', ADDR localhost or a
 * dotted IPv4 address of at most 15 bytes, PORT 1..65535. */
static void fz_check_addr(const char *s)
{
        struct sockaddr_in sa;
        const char *why = NULL;
        memset(&sa, 0x5a, sizeof(sa));
        int rc = ctl_parse_addr(s, &sa, (s[0] & 1) ? &why : NULL);
        FZ_CHECK(rc == 0 || rc == -EINVAL);

        const char *colon = strrchr(s, ':');
        bool ok = colon != NULL && colon > s && colon - s <= 15;
        char host[16] = { 0 };
        struct in_addr ip = { 0 };
        long long port = 0;
        if (ok) {
                memcpy(host, s, (size_t)(colon - s));
                if (strcmp(host, "localhost") == 0)
                        ip.s_addr = htonl(INADDR_LOOPBACK);
                else
                        ok = inet_pton(AF_INET, host, &ip) == 1;
        }
        ok = ok && fz_ref_int(colon + 1, 1, 65535, &port) == 0;
        FZ_CHECK((rc == 0) == ok);
        if (rc != 0) {
                FZ_CHECK(!(s[0] & 1) || why != NULL);
                return;
        }
        FZ_CHECK(sa.sin_family == AF_INET);
        FZ_CHECK(ntohs(sa.sin_port) == port);
        FZ_CHECK(sa.sin_addr.s_addr == ip.s_addr);
}

/* Subjects name entities: the quick test may only say yes to what the
 * full check accepts. */
static void fz_check_subject(const char *s, size_t len)
{
        int lit = dp_subject_check(s, len, false);
        int wild = dp_subject_check(s, len, true);
        FZ_CHECK(lit == 0 || lit == -EINVAL || lit == -ENAMETOOLONG);
        FZ_CHECK(wild == 0 || wild == -EINVAL || wild == -ENAMETOOLONG);
        FZ_CHECK(lit != 0 || wild == 0);
        if (len >= 1 && len <= 64 && dp_subject_literal_quick(s, len))
                FZ_CHECK(lit == 0);
}

/* Every parser on s[0..len) as an exact-size heap string. */
static void fz_check_value(const char *p, size_t len)
{
        char *s = malloc(len + 1);
        FZ_CHECK(s != NULL);
        memcpy(s, p, len);
        s[len] = '\0';
        fz_check_int(s, 0, UINT32_MAX);
        fz_check_int(s, 1, 64);
        fz_check_int(s, LLONG_MIN, LLONG_MAX);
        fz_check_int(s, -5, -1);
        fz_check_bytes(s);
        fz_check_duration(s);
        fz_check_words(s);
        fz_check_addr(s);
        free(s);
        /* Without the NUL: a subject is a length, not a C string. */
        s = malloc(len ? len : 1);
        FZ_CHECK(s != NULL);
        memcpy(s, p, len);
        fz_check_subject(s, len);
        free(s);
}

/* --- the tokenizer ------------------------------------------------------ */

static bool fz_blank(char c)
{
        return c == ' ' || c == '\t';
}

/* The contract of ctl_args_split on line[0..len), and the parsers on each
 * word. Returns the split for the caller to reuse. */
static void fz_check_split(const char *line, uint32_t len, struct ctl_args *a)
{
        int rc = ctl_args_split(a, line, len);
        if (len >= CTL_LINE_MAX) {
                FZ_CHECK(rc == -EMSGSIZE && a->count == 0 && !a->more);
                return;
        }
        FZ_CHECK(rc == 0);
        FZ_CHECK(a->count <= CTL_ARGS_MAX);
        uint32_t pos = 0;      /* first byte not yet accounted for */
        for (uint32_t i = 0; i < a->count; i++) {
                uint32_t off = a->off[i], n = a->len[i];
                FZ_CHECK(n > 0 && off >= pos && off + n <= len);
                for (uint32_t k = pos; k < off; k++)
                        FZ_CHECK(fz_blank(line[k]));
                for (uint32_t k = off; k < off + n; k++)
                        FZ_CHECK(!fz_blank(line[k]));
                FZ_CHECK(off + n == len || fz_blank(line[off + n]));
                FZ_CHECK(a->v[i] >= a->buf &&
                         a->v[i] + n < a->buf + sizeof(a->buf));
                FZ_CHECK(memcmp(a->v[i], line + off, n) == 0 && a->v[i][n] == '\0');
                pos = off + n;
        }
        /* more: a word was left over, and only then. */
        bool rest = false;
        for (uint32_t k = pos; k < len; k++)
                rest = rest || !fz_blank(line[k]);
        FZ_CHECK(a->more == rest);
        FZ_CHECK(!a->more || a->count == CTL_ARGS_MAX);
}

static void fz_check_words_of(const struct ctl_args *a, const char *line)
{
        for (uint32_t i = 0; i < a->count; i++) {
                const char *w = line + a->off[i];
                fz_check_value(w, a->len[i]);
                const char *eq = memchr(w, '=', a->len[i]);
                if (eq != NULL)
                        fz_check_value(eq + 1, a->len[i] - (uint32_t)(eq + 1 - w));
        }
}

/* --- a minimal JSON validator (RFC 8259), for the replies ---------------- */

struct fz_json {
        const uint8_t *p;
        const uint8_t *end;
        int depth;
};

static bool fz_json_value(struct fz_json *j);

static void fz_json_ws(struct fz_json *j)
{
        while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\r'))
                j->p++;
}

static bool fz_json_eat(struct fz_json *j, char c)
{
        fz_json_ws(j);
        if (j->p >= j->end || *j->p != (uint8_t)c)
                return false;
        j->p++;
        return true;
}

/* Bytes of the well-formed UTF-8 sequence at p (RFC 3629 table 3), 0 if
 * it is not one. */
static uint32_t fz_utf8(const uint8_t *p, const uint8_t *end)
{
        uint32_t cp, n;
        if (p[0] < 0x80)
                return 1;
        if ((p[0] & 0xe0) == 0xc0)
                cp = p[0] & 0x1fu, n = 2;
        else if ((p[0] & 0xf0) == 0xe0)
                cp = p[0] & 0x0fu, n = 3;
        else if ((p[0] & 0xf8) == 0xf0)
                cp = p[0] & 0x07u, n = 4;
        else
                return 0;
        if ((size_t)(end - p) < n)
                return 0;
        for (uint32_t i = 1; i < n; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (p[i] & 0x3fu);
        }
        static const uint32_t min[5] = { 0, 0, 0x80, 0x800, 0x10000 };
        if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return n;
}

static bool fz_json_string(struct fz_json *j)
{
        if (!fz_json_eat(j, '"'))
                return false;
        while (j->p < j->end) {
                uint8_t c = *j->p;
                if (c == '"') {
                        j->p++;
                        return true;
                }
                if (c < 0x20)
                        return false;
                if (c != '\\') {
                        uint32_t n = fz_utf8(j->p, j->end);
                        if (n == 0)
                                return false;
                        j->p += n;
                        continue;
                }
                if (j->end - j->p < 2)
                        return false;
                c = j->p[1];
                j->p += 2;
                if (c == 'u') {
                        if (j->end - j->p < 4)
                                return false;
                        for (int i = 0; i < 4; i++, j->p++)
                                if (!strchr("0123456789abcdefABCDEF", *j->p) || *j->p == 0)
                                        return false;
                } else if (!strchr("\"\\/bfnrt", c) || c == 0) {
                        return false;
                }
        }
        return false;
}

static bool fz_json_digits(struct fz_json *j)
{
        const uint8_t *start = j->p;
        while (j->p < j->end && fz_digit((char)*j->p))
                j->p++;
        return j->p > start;
}

static bool fz_json_number(struct fz_json *j)
{
        if (j->p < j->end && *j->p == '-')
                j->p++;
        if (j->p < j->end && *j->p == '0')
                j->p++;
        else if (!fz_json_digits(j))
                return false;
        if (j->p < j->end && *j->p == '.') {
                j->p++;
                if (!fz_json_digits(j))
                        return false;
        }
        if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
                j->p++;
                if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
                        j->p++;
                if (!fz_json_digits(j))
                        return false;
        }
        return true;
}

static bool fz_json_word(struct fz_json *j, const char *w)
{
        size_t n = strlen(w);
        if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n) != 0)
                return false;
        j->p += n;
        return true;
}

/* The members of an object or the elements of an array, after its opener. */
static bool fz_json_items(struct fz_json *j, char close, bool keyed)
{
        if (fz_json_eat(j, close))
                return true;
        do {
                if (keyed && (!fz_json_string(j) || !fz_json_eat(j, ':')))
                        return false;
                if (!fz_json_value(j))
                        return false;
        } while (fz_json_eat(j, ','));
        return fz_json_eat(j, close);
}

static bool fz_json_value(struct fz_json *j)
{
        fz_json_ws(j);
        if (j->p >= j->end || ++j->depth > 32)
                return false;
        bool ok;
        uint8_t c = *j->p;
        if (c == '{' || c == '[') {
                j->p++;
                ok = fz_json_items(j, c == '{' ? '}' : ']', c == '{');
        } else if (c == '"') {
                ok = fz_json_string(j);
        } else if (c == 't' || c == 'f' || c == 'n') {
                ok = fz_json_word(j, c == 't' ? "true" : c == 'f' ? "false" : "null");
        } else {
                ok = fz_json_number(j);
        }
        j->depth--;
        return ok;
}

/* --- whole lines through ctl_cmd_exec ------------------------------------ */

static struct ctl_config fz_cfg;
static struct ctl_ctx fz_ctx;
static struct ctl_env fz_env;
static struct ctl_session fz_ses;
static char *fz_out;    /* CTL_REPLY_MAX bytes, as ctl_cmd_exec needs */

/* Does `json` come first, as ctl_cmd_exec looks at a line (its \r
 * dropped)? a is scratch. */
static bool fz_wants_json(struct ctl_args *a, const char *line, uint32_t len)
{
        if (len > 0 && line[len - 1] == '\r')
                len--;
        if (len >= CTL_LINE_MAX)
                return len > 5 && memcmp(line, "json", 4) == 0 && fz_blank(line[4]);
        fz_check_split(line, len, a);
        return memchr(line, 0, len) == NULL && a->count > 0 && strcmp(a->v[0], "json") == 0;
}

static void fz_check_reply(const char *r, uint32_t n, bool json)
{
        FZ_CHECK(n >= 1 && r[n - 1] == '\n');
        if (n == 1)
                return;         /* an empty line: an empty reply */
        FZ_CHECK(n >= 2 && r[n - 2] == '\n');
        /* The empty line ends the reply: none before it. */
        FZ_CHECK(memmem(r, n - 1, "\n\n", 2) == NULL);
        if (json) {
                /* One object on one line. */
                struct fz_json j = { (const uint8_t *)r, (const uint8_t *)r + n - 2, 0 };
                FZ_CHECK(n > 8 && memcmp(r, "{\"ok\":", 6) == 0);
                FZ_CHECK(memchr(r, '\n', n - 2) == NULL);
                FZ_CHECK(fz_json_value(&j) && j.p == j.end);
                return;
        }
        FZ_CHECK(r[0] != '{');
        for (uint32_t i = 0; i < n; i++)
                FZ_CHECK(r[i] == '\n' || ((uint8_t)r[i] >= 0x20 && r[i] != 0x7f));
}

static void fz_exec(const char *line, uint32_t len, bool json)
{
        struct ctl_out o;
        ctl_out_init(&o, fz_out, CTL_REPLY_MAX, 0, false);
        enum ctl_run r = ctl_cmd_exec(&fz_ses, line, len, &o);
        /* Long commands need the engine: nothing runs in slices here. */
        FZ_CHECK(r == CTL_RUN_DONE || r == CTL_RUN_QUIT);
        FZ_CHECK(!ctl_session_busy(&fz_ses));
        FZ_CHECK(!o.overflow && o.len <= CTL_REPLY_MAX);
        fz_check_reply(fz_out, o.len, json);
        if (r == CTL_RUN_QUIT && json)
                FZ_CHECK(memmem(fz_out, o.len, "\"bye\"", 5) != NULL);
        if (r == CTL_RUN_QUIT && !json)
                FZ_CHECK(o.len == 9 && memcmp(fz_out, "ok: bye\n\n", 9) == 0);
}

static void fz_greeting(void)
{
        struct ctl_out o;
        ctl_out_init(&o, fz_out, CTL_REPLY_MAX, 0, false);
        ctl_cmd_greeting(&fz_ses, &o);
        FZ_CHECK(o.len > 2 && memcmp(fz_out, "atomqd ", 7) == 0);
        FZ_CHECK(fz_out[o.len - 1] == '\n' && fz_out[o.len - 2] == '\n');
}

/* One line as an exact-size heap copy: ASan catches a read past its end. */
static void fz_line(const uint8_t *p, size_t size, uint32_t index)
{
        uint32_t len = size > UINT32_MAX ? UINT32_MAX : (uint32_t)size;
        char *line = malloc(len ? len : 1);
        FZ_CHECK(line != NULL);
        memcpy(line, p, len);
        struct ctl_args *a = malloc(sizeof(*a));
        FZ_CHECK(a != NULL);
        fz_check_split(line, len, a);
        if (len < CTL_LINE_MAX)
                fz_check_words_of(a, line);
        bool json = fz_wants_json(a, line, len);
        fz_ctx.stopping = (int)(index & 1);
        fz_exec(line, len, json);
        free(a);
        free(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (fz_out == NULL) {
                fz_out = malloc(CTL_REPLY_MAX);
                FZ_CHECK(fz_out != NULL);
        }
        /* A fresh atomqd for every input: nothing carries over. */
        memset(&fz_cfg, 0, sizeof(fz_cfg));
        fz_cfg.inprocess = size & 1;
        fz_ctx = (struct ctl_ctx){ .cfg = &fz_cfg, .started_realtime_ns = 1 };
        fz_env = (struct ctl_env){ .ctx = &fz_ctx, .dp = NULL, .control_path = "/fuzz",
                                   .clients = 1, .clients_max = 8 };
        ctl_session_init(&fz_ses, &fz_env);
        fz_greeting();

        uint32_t index = 0;
        const uint8_t *end = data + size;
        for (const uint8_t *p = data; p < end; index++) {
                const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
                size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
                fz_line(p, n, index);
                p += n + 1;
        }
        FZ_CHECK(fz_env.commands == index);
        FZ_CHECK(fz_env.errors <= fz_env.commands);
        return 0;
}
