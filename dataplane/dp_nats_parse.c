/* dp_nats_parse.c - the NATS client protocol, parsed incrementally (see
 * dp_nats_parse.h for the contract).
 *
 * A control line is found with memchr and parsed where it lies; only a
 * line or payload cut by the end of the caller's bytes is copied, into one
 * buffer that holds the raw line and then, sized once, its payload.
 *
 * Checked against the reference server, nats-server v2.9.10, over raw TCP
 * (python3 sockets, CONNECT {"verbose":true}, then the input below):
 *   - "sub foo 1", "PuB foo 2", "PiNg": op names are case-insensitive.
 *   - "SUB\tfoo \t 1", "PUB  foo\t\t 2": spaces and tabs, repeated, separate
 *     arguments; "PUB foo 2 ", "SUB foo 1 ": trailing separators are fine.
 *   - "SUB foo 1\n": a bare LF ends a control line; but "hi\n" after a
 *     2-byte payload is -ERR 'Unknown Protocol Operation': the payload
 *     trailer must be CRLF (also "hixx", "hi\r" + "P", "PUB foo 0" + "PING").
 *   - "UNSUB 1 2" delivers 2 messages then stops; "UNSUB 1 0", "UNSUB 1 -1"
 *     and "UNSUB 1 x" all unsubscribe at once (refused here as E_ARGS when
 *     not a size); "UNSUB 1 2 3" closes silently.
 *   - "HPUB foo 10 5" (header size above total): the connection is closed
 *     with no -ERR (log: "Header Size larger then TotalSize"); it wins over
 *     a total above max_payload ("HPUB foo 2000000 1048577").
 *   - "HPUB foo 12 14" delivers HMSG; "HPUB foo 0 2" is delivered as a
 *     plain MSG; "HPUB foo 12 12" (no payload) is fine.
 *   - "PUB foo x", "PUB foo -2", "PUB foo +2", "PUB foo 999..." (23
 *     digits), "PUB foo 0000000002" (10 digits), "PUB a b c 2", "SUB foo",
 *     "SUB a b c d", "PUB \r\n", "CONNECT\r\n", "-ERR \r\n": closed with
 *     no -ERR (log: "Bad or Missing Size", "Parse Error"): E_ARGS here.
 *     "PUB foo 000000002" (9 digits) is a size of 2.
 *   - "PUB foo 1048577", "HPUB foo 10 1048577": -ERR 'Maximum Payload
 *     Violation' right after the control line, before any payload.
 *   - "PUB\r\n", "UNSUB\r\n", "-ERR\r\n" (no separator after an op that
 *     takes arguments), "FOO bar", "\r\n", " PING": -ERR 'Unknown Protocol
 *     Operation'.
 *   - "PUB " + 4096 bytes of arguments passes, 4097 gives -ERR 'maximum
 *     control line exceeded' (lower case, unlike older servers); so do a
 *     6000-byte CONNECT, 5000 bytes with no newline at all, and 6 x 1000
 *     bytes sent apart.
 *   - "PING foo", "PINGX", "PING\rPING": PONG (refused here: op names end
 *     at a separator); "+OK", "PONG": ignored; "-ERR 'bad'" from a client
 *     closes its connection (the caller's business, here it is an op).
 *   - a payload of "\r\n\0\r\n\0" is delivered as is; byte-by-byte sends
 *     of a pipelined SUB/PUB/PING give the same answers as one send.
 *   - 376 random one- or two-byte mutations of valid ops, sent to the
 *     server and given to this parser, differed only where the header says
 *     this parser is stricter (junk glued to an op name, UNSUB's max), on
 *     CONNECT JSON that does not parse (the caller's check), and on one
 *     server quirk: "PUB \nfoo 5" does not end the line at that LF.
 */
#include "dataplane/dp_nats_parse.h"

#include <errno.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "shm/shm_base.h"

enum dp_nats_state {
        DP_NATS_ST_LINE = 0,    /* in a control line, maybe partly in buf */
        DP_NATS_ST_PAYLOAD,     /* gathering pending's payload and CRLF in buf */
        DP_NATS_ST_HANDED,      /* op pointed into buf: release on the next call */
        DP_NATS_ST_FAILED,      /* err is returned for ever */
};

/* A split control line starts in a small buffer that doubles up to
 * DP_NATS_LINE_MAX: most lines that straddle two reads are short. */
#define DP_NATS_BUF_MIN 128u
/* What a buffer may keep from one operation to the next within a burst; a
 * bigger one (a payload) is freed by the call after the one that handed
 * its operation out, and any buffer by a call that ends with nothing
 * half-read. */
#define DP_NATS_BUF_KEEP DP_NATS_LINE_MAX
/* nats-server's parseSize takes at most 9 digits (999999999). */
#define DP_NATS_SIZE_DIGITS_MAX 9u
/* The longest op name, "CONNECT". */
#define DP_NATS_NAME_MAX 7u
/* HPUB has the most arguments: subject, reply, header size, total size. */
#define DP_NATS_ARGS_MAX 4u

struct dp_nats_opdef {
        char name[8];           /* upper case */
        uint8_t len;
        uint8_t kind;           /* enum dp_nats_kind */
        bool args;              /* takes arguments (else the rest is ignored) */
};

static const struct dp_nats_opdef dp_nats_ops[] = {
        { "PUB", 3, DP_NATS_PUB, true },    { "HPUB", 4, DP_NATS_HPUB, true },
        { "SUB", 3, DP_NATS_SUB, true },    { "UNSUB", 5, DP_NATS_UNSUB, true },
        { "PING", 4, DP_NATS_PING, false }, { "PONG", 4, DP_NATS_PONG, false },
        { "CONNECT", 7, DP_NATS_CONNECT, true }, { "+OK", 3, DP_NATS_OK, false },
        { "-ERR", 4, DP_NATS_ERR, true },
};
#define DP_NATS_OPS_N (sizeof(dp_nats_ops) / sizeof(dp_nats_ops[0]))

struct dp_nats_tok {
        const uint8_t *s;
        uint32_t n;
};

static inline bool dp_nats_is_sep(uint8_t c)
{
        return c == ' ' || c == '\t';
}

/* ASCII only: the locale must not change what a wire byte means. */
static inline uint8_t dp_nats_upper(uint8_t c)
{
        return c >= 'a' && c <= 'z' ? (uint8_t)(c - 'a' + 'A') : c;
}

/* Whether s[0..n) equals the first n bytes of an op name, ignoring case. */
static bool dp_nats_name_starts(const struct dp_nats_opdef *d, const uint8_t *s, size_t n)
{
        if (n > d->len)
                return false;
        for (size_t i = 0; i < n; i++)
                if (dp_nats_upper(s[i]) != (uint8_t)d->name[i])
                        return false;
        return true;
}

static const struct dp_nats_opdef *dp_nats_op_lookup(const uint8_t *s, size_t n)
{
        for (size_t i = 0; i < DP_NATS_OPS_N; i++)
                if (dp_nats_ops[i].len == n && dp_nats_name_starts(&dp_nats_ops[i], s, n))
                        return &dp_nats_ops[i];
        return NULL;
}

/* Whether the start s[0..n) of a line that has not ended yet can still
 * become a known op. Refusing early, as nats-server does at the first
 * wrong byte, matters when a client sends garbage and then waits. */
static bool dp_nats_head_may_be_valid(const uint8_t *s, size_t n)
{
        size_t k = 0;

        /* Only the name is looked at, so a long line costs no rescans. */
        while (k < n && k <= DP_NATS_NAME_MAX && !dp_nats_is_sep(s[k]))
                k++;
        if (k < n && dp_nats_is_sep(s[k]))
                return dp_nats_op_lookup(s, k) != NULL;
        if (k < n)
                return false;   /* a name longer than any op's */
        /* The name is still open: a CR at the end may yet be the line end
         * ("CONNECT\r" is 8 bytes and may still become "CONNECT\r\n"). */
        if (n > 0 && s[n - 1] == '\r' && dp_nats_op_lookup(s, n - 1) != NULL)
                return true;
        for (size_t i = 0; i < DP_NATS_OPS_N; i++)
                if (dp_nats_name_starts(&dp_nats_ops[i], s, n))
                        return true;
        return false;
}

/* A size as nats-server's parseSize takes it: 1 to 9 decimal digits, no
 * sign. Longer numbers are refused even when their value is small. */
static int dp_nats_size_parse(const struct dp_nats_tok *t, uint32_t *out)
{
        uint32_t v = 0;

        if (t->n == 0 || t->n > DP_NATS_SIZE_DIGITS_MAX)
                return DP_NATS_E_ARGS;
        for (uint32_t i = 0; i < t->n; i++) {
                if (t->s[i] < '0' || t->s[i] > '9')
                        return DP_NATS_E_ARGS;
                v = v * 10u + (uint32_t)(t->s[i] - '0');
        }
        *out = v;
        return 0;
}

#if defined(__SSE2__)
/* Bit i: s[i] is a separator, for the 16 bytes at s. */
static inline uint32_t dp_nats_sep_bits16(const uint8_t *s)
{
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)s);
        __m128i sep = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(' ')),
                                   _mm_cmpeq_epi8(v, _mm_set1_epi8('\t')));
        return (uint32_t)_mm_movemask_epi8(sep);
}
#endif

/* Bit i: s[i] is a separator, for the m <= 64 bytes at s; the bits from m
 * on are set, as if separators followed. Never reads past s[m - 1]: the
 * last 16 bytes are loaded where they lie, overlapping the ones before,
 * and OR-ing a byte's bit twice is exact. */
static inline uint64_t dp_nats_sep_mask(const uint8_t *s, size_t m)
{
        uint64_t mask = m < 64 ? ~0ull << m : 0;
        size_t i = 0;
#if defined(__SSE2__)
        if (m >= 16) {
                for (; i + 16 <= m; i += 16)
                        mask |= (uint64_t)dp_nats_sep_bits16(s + i) << i;
                if (i < m)
                        mask |= (uint64_t)dp_nats_sep_bits16(s + m - 16) << (m - 16);
                return mask;
        }
#endif
        for (; i < m; i++)
                mask |= (uint64_t)dp_nats_is_sep(s[i]) << i;
        return mask;
}

/* Splits s[0..n) at runs of separators into at most max + 1 tokens (one
 * more than any op takes, so too many arguments show); returns the count.
 * 64 bytes at a time: a mask of the separators, then one bit scan per
 * token edge instead of a test per byte. */
static size_t dp_nats_args_split(const uint8_t *s, size_t n, struct dp_nats_tok *t, size_t max)
{
        size_t count = 0, start = 0;
        bool open = false;      /* in a token that started at start */

        for (size_t o = 0; o < n; o += 64) {
                uint64_t tok = ~dp_nats_sep_mask(s + o, n - o < 64 ? n - o : 64);
                unsigned pos = 0;
                while (pos < 64) {
                        /* The next edge: a token byte when outside one, a
                         * separator when inside. */
                        uint64_t look = (open ? ~tok : tok) & (~0ull << pos);
                        if (look == 0)
                                break;
                        unsigned b = (unsigned)__builtin_ctzll(look);
                        if (!open) {
                                start = o + b;
                        } else {
                                t[count].s = s + start;
                                t[count].n = (uint32_t)(o + b - start);
                                if (++count > max)
                                        return count;
                        }
                        open = !open;
                        pos = b + 1;
                }
        }
        if (open) {
                t[count].s = s + start;
                t[count].n = (uint32_t)(n - start);
                count++;
        }
        return count;
}

static void dp_nats_tok_set(const struct dp_nats_tok *t, const char **s, uint32_t *n)
{
        *s = (const char *)t->s;
        *n = t->n;
}

/* PUB <subject> [reply] <#bytes>: the size is checked against max_payload
 * here, before a byte of payload is waited for, as nats-server does. */
static int dp_nats_args_pub(const struct dp_nats_parser *p, const struct dp_nats_tok *t,
                            size_t count, struct dp_nats_op *op)
{
        uint32_t size;

        if (count != 2 && count != 3)
                return DP_NATS_E_ARGS;
        if (dp_nats_size_parse(&t[count - 1], &size) < 0)
                return DP_NATS_E_ARGS;
        if (size > p->max_payload)
                return DP_NATS_E_PAYLOAD;
        dp_nats_tok_set(&t[0], &op->subject, &op->subject_len);
        if (count == 3)
                dp_nats_tok_set(&t[1], &op->reply, &op->reply_len);
        op->payload_len = size;
        return 0;
}

/* HPUB <subject> [reply] <#header bytes> <#total bytes>. The order of the
 * checks is nats-server's processHeaderPub: sizes, then header above total,
 * then total above max_payload. */
static int dp_nats_args_hpub(const struct dp_nats_parser *p, const struct dp_nats_tok *t,
                             size_t count, struct dp_nats_op *op)
{
        uint32_t hdr, total;

        if (count != 3 && count != 4)
                return DP_NATS_E_ARGS;
        if (dp_nats_size_parse(&t[count - 2], &hdr) < 0 ||
            dp_nats_size_parse(&t[count - 1], &total) < 0)
                return DP_NATS_E_ARGS;
        if (hdr > total)
                return DP_NATS_E_HEADERS;
        if (total > p->max_payload)
                return DP_NATS_E_PAYLOAD;
        dp_nats_tok_set(&t[0], &op->subject, &op->subject_len);
        if (count == 4)
                dp_nats_tok_set(&t[1], &op->reply, &op->reply_len);
        op->headers_len = hdr;
        op->payload_len = total - hdr;
        return 0;
}

/* SUB <subject> [queue] <sid> and UNSUB <sid> [max]. */
static int dp_nats_args_sub(const struct dp_nats_tok *t, size_t count, struct dp_nats_op *op)
{
        if (op->kind == DP_NATS_UNSUB) {
                uint32_t max = 0;

                if (count != 1 && count != 2)
                        return DP_NATS_E_ARGS;
                if (count == 2 && dp_nats_size_parse(&t[1], &max) < 0)
                        return DP_NATS_E_ARGS;
                dp_nats_tok_set(&t[0], &op->sid, &op->sid_len);
                op->max_msgs = max;
                return 0;
        }
        if (count != 2 && count != 3)
                return DP_NATS_E_ARGS;
        dp_nats_tok_set(&t[0], &op->subject, &op->subject_len);
        if (count == 3)
                dp_nats_tok_set(&t[1], &op->queue, &op->queue_len);
        dp_nats_tok_set(&t[count - 1], &op->sid, &op->sid_len);
        return 0;
}

static int dp_nats_args_parse(const struct dp_nats_parser *p, const uint8_t *s, size_t n,
                              struct dp_nats_op *op)
{
        struct dp_nats_tok t[DP_NATS_ARGS_MAX + 1];
        size_t count;

        switch (op->kind) {
        case DP_NATS_CONNECT:
        case DP_NATS_ERR:
                /* The rest of the line, as sent: JSON or quoted text. */
                if (n == 0)
                        return DP_NATS_E_ARGS;
                op->json = (const char *)s;
                op->json_len = (uint32_t)n;
                return 0;
        case DP_NATS_PING:
        case DP_NATS_PONG:
        case DP_NATS_OK:
                return 0;       /* nats-server ignores the rest of these lines */
        default:
                break;
        }
        count = dp_nats_args_split(s, n, t, DP_NATS_ARGS_MAX);
        if (op->kind == DP_NATS_PUB)
                return dp_nats_args_pub(p, t, count, op);
        if (op->kind == DP_NATS_HPUB)
                return dp_nats_args_hpub(p, t, count, op);
        return dp_nats_args_sub(t, count, op);
}

/* Parses one whole control line s[0..n), its LF excluded, into op. The
 * checks run in an order that does not depend on how the line arrived, so
 * any split of the same bytes gives the same answer: op name, then lengths,
 * then arguments. */
static int dp_nats_line_parse(const struct dp_nats_parser *p, const uint8_t *s, size_t n,
                              struct dp_nats_op *op)
{
        const struct dp_nats_opdef *d;
        size_t k = 0, a;

        memset(op, 0, sizeof(*op));
        if (n > 0 && s[n - 1] == '\r')
                n--;
        while (k < n && !dp_nats_is_sep(s[k]))
                k++;
        d = dp_nats_op_lookup(s, k);
        if (d == NULL)
                return DP_NATS_E_UNKNOWN_OP;
        op->kind = (enum dp_nats_kind)d->kind;
        /* nats-server's state machine wants a separator after PUB, SUB,
         * UNSUB, HPUB and -ERR, and calls its absence an unknown op; after
         * CONNECT the JSON may follow at once, so there it is empty JSON. */
        if (k == n && d->args)
                return op->kind == DP_NATS_CONNECT ? DP_NATS_E_ARGS : DP_NATS_E_UNKNOWN_OP;
        for (a = k; a < n && dp_nats_is_sep(s[a]); a++)
                ;
        if (a > DP_NATS_HEAD_MAX || n - a > DP_NATS_CONTROL_MAX)
                return DP_NATS_E_CONTROL_LINE;
        return dp_nats_args_parse(p, s + a, n - a, op);
}

/* What a control line that would outgrow DP_NATS_LINE_MAX is: an unknown
 * op if its name says so, as dp_nats_line_parse would answer once the line
 * ended, else too long. head holds its first bytes (at least 8). */
static int dp_nats_line_overflow(const uint8_t *head, size_t n)
{
        size_t k = 0;

        while (k < n && !dp_nats_is_sep(head[k]))
                k++;
        return dp_nats_op_lookup(head, k) != NULL ? DP_NATS_E_CONTROL_LINE
                                                   : DP_NATS_E_UNKNOWN_OP;
}

/* Makes room for want bytes in buf. A line grows by doubling up to
 * DP_NATS_LINE_MAX; a payload (exact) gets what it needs in one step. */
static int dp_nats_buf_reserve(struct dp_nats_parser *p, size_t want, bool exact)
{
        size_t cap = p->buf_cap;
        uint8_t *nb;

        DP_ASSERT(want <= UINT32_MAX);
        if (want <= cap)
                return 0;
        if (exact) {
                cap = want;
        } else {
                cap = cap < DP_NATS_BUF_MIN ? DP_NATS_BUF_MIN : cap;
                while (cap < want)
                        cap *= 2;
                if (cap > DP_NATS_LINE_MAX && want <= DP_NATS_LINE_MAX)
                        cap = DP_NATS_LINE_MAX;
        }
        nb = realloc(p->buf, cap);
        if (nb == NULL)
                return -ENOMEM;
        p->buf = nb;
        p->buf_cap = (uint32_t)cap;
        return 0;
}

static void dp_nats_buf_free(struct dp_nats_parser *p)
{
        free(p->buf);
        p->buf = NULL;
        p->buf_len = 0;
        p->buf_cap = 0;
        p->line_len = 0;
}

/* Points op's headers and payload at base, where its payload starts. */
static void dp_nats_payload_set(struct dp_nats_op *op, const uint8_t *base)
{
        if (op->kind == DP_NATS_HPUB) {
                op->headers = base;
                base += op->headers_len;
        }
        op->payload = base;
}

/* Appends n bytes of payload and trailer to buf (room was reserved when
 * the control line was parsed) and checks the trailer bytes among them. */
static int dp_nats_gather(struct dp_nats_parser *p, const uint8_t *src, size_t n)
{
        uint32_t trailer = p->line_len + p->pending.headers_len + p->pending.payload_len;
        uint32_t end = p->buf_len + (uint32_t)n;

        DP_ASSERT(n <= p->need);
        DP_ASSERT(end <= p->buf_cap);
        memcpy(p->buf + p->buf_len, src, n);
        for (uint32_t i = p->buf_len > trailer ? p->buf_len : trailer; i < end; i++)
                if (p->buf[i] != (uint8_t)"\r\n"[i - trailer])
                        return DP_NATS_E_TRAILER;
        p->buf_len = end;
        p->need -= (uint32_t)n;
        return 0;
}

/* The control line s[0..n) of a PUB or HPUB is parsed into op; rest[0..avail)
 * follows its LF. Hands out the op in place when its payload and CRLF are
 * all there; else moves line and payload into buf to gather the rest. */
static int dp_nats_payload_begin(struct dp_nats_parser *p, const uint8_t *s, size_t n,
                                 const uint8_t *rest, size_t avail, size_t *used,
                                 struct dp_nats_op *op)
{
        size_t total = (size_t)op->headers_len + op->payload_len;
        int rc;

        if (avail >= total + 2) {
                if (rest[total] != '\r' || rest[total + 1] != '\n')
                        return DP_NATS_E_TRAILER;
                dp_nats_payload_set(op, rest);
                *used += total + 2;
                if (p->buf_len > 0)
                        p->state = DP_NATS_ST_HANDED;   /* the line is in buf */
                return 1;
        }
        rc = dp_nats_buf_reserve(p, n + total + 2, true);
        if (rc < 0)
                return rc;
        if (p->buf_len == 0)
                memcpy(p->buf, s, n);
        p->buf_len = p->line_len = (uint32_t)n;
        /* Parse again from buf: the pointers must outlive the caller's bytes.
         * The same bytes give the same answer. */
        rc = dp_nats_line_parse(p, p->buf, n, &p->pending);
        DP_VERIFY(rc == 0);
        p->need = (uint32_t)(total + 2);
        p->state = DP_NATS_ST_PAYLOAD;
        *used += avail;
        return dp_nats_gather(p, rest, avail);
}

/* In a control line: finds its end in data, or keeps what there is of it
 * in buf, never more than DP_NATS_LINE_MAX bytes. */
static int dp_nats_line_take(struct dp_nats_parser *p, const uint8_t *data, size_t len,
                             size_t *used, struct dp_nats_op *op)
{
        size_t room = DP_NATS_LINE_MAX + 1u - p->buf_len;   /* the LF included */
        size_t window = len < room ? len : room;
        const uint8_t *nl = memchr(data, '\n', window);
        const uint8_t *s = data;
        bool gathered = p->buf_len > 0 || nl == NULL;
        size_t n;
        int rc;

        if (nl == NULL && p->buf_len + window > DP_NATS_LINE_MAX) {
                uint8_t head[DP_NATS_HEAD_MAX];
                size_t from_buf = p->buf_len < sizeof(head) ? p->buf_len : sizeof(head);
                size_t from_data = window < sizeof(head) - from_buf ? window
                                                                    : sizeof(head) - from_buf;

                if (from_buf > 0)       /* buf may be NULL */
                        memcpy(head, p->buf, from_buf);
                memcpy(head + from_buf, data, from_data);
                *used = window;
                return dp_nats_line_overflow(head, from_buf + from_data);
        }
        n = nl != NULL ? (size_t)(nl - data) : len;
        if (gathered) {
                rc = dp_nats_buf_reserve(p, p->buf_len + n, false);
                if (rc < 0)
                        return rc;
                memcpy(p->buf + p->buf_len, data, n);
                p->buf_len += (uint32_t)n;
                s = p->buf;
                n = p->buf_len;
        }
        if (nl == NULL) {
                *used = len;
                return dp_nats_head_may_be_valid(p->buf, p->buf_len) ? 0 : DP_NATS_E_UNKNOWN_OP;
        }
        *used = (size_t)(nl - data) + 1;
        rc = dp_nats_line_parse(p, s, n, op);
        if (rc < 0)
                return rc;
        if (op->kind == DP_NATS_PUB || op->kind == DP_NATS_HPUB)
                return dp_nats_payload_begin(p, s, n, nl + 1, len - *used, used, op);
        if (p->buf_len > 0)
                p->state = DP_NATS_ST_HANDED;
        return 1;
}

/* Gathering a payload: takes what is still needed of it and its CRLF. */
static int dp_nats_payload_take(struct dp_nats_parser *p, const uint8_t *data, size_t len,
                                size_t *used, struct dp_nats_op *op)
{
        size_t take = len < p->need ? len : p->need;
        int rc = dp_nats_gather(p, data, take);

        *used = take;
        if (rc < 0 || p->need > 0)
                return rc;
        *op = p->pending;
        dp_nats_payload_set(op, p->buf + p->line_len);
        p->state = DP_NATS_ST_HANDED;
        return 1;
}

void dp_nats_parser_init(struct dp_nats_parser *p, uint32_t max_payload)
{
        memset(p, 0, sizeof(*p));
        p->max_payload = max_payload != 0 ? max_payload : DP_NATS_PAYLOAD_DEFAULT;
        p->state = DP_NATS_ST_LINE;
}

void dp_nats_parser_fini(struct dp_nats_parser *p)
{
        dp_nats_buf_free(p);
        p->state = DP_NATS_ST_LINE;
}

int dp_nats_parse(struct dp_nats_parser *p, const uint8_t *data, size_t len, size_t *used,
                  struct dp_nats_op *op)
{
        int rc;

        *used = 0;
        if (p->state == DP_NATS_ST_FAILED)
                return p->err;
        if (p->state == DP_NATS_ST_HANDED) {
                /* The op handed out last time pointed into buf; it is done. */
                p->buf_len = p->line_len = 0;
                if (p->buf_cap > DP_NATS_BUF_KEEP)
                        dp_nats_buf_free(p);
                p->state = DP_NATS_ST_LINE;
        }
        if (len == 0)
                rc = 0;
        else if (p->state == DP_NATS_ST_PAYLOAD)
                rc = dp_nats_payload_take(p, data, len, used, op);
        else
                rc = dp_nats_line_take(p, data, len, used, op);
        if (rc < 0) {
                /* The connection is closed: keep nothing but the answer. */
                dp_nats_buf_free(p);
                p->state = DP_NATS_ST_FAILED;
                p->err = rc;
        } else if (rc == 0 && p->state == DP_NATS_ST_LINE && p->buf_len == 0) {
                dp_nats_buf_free(p);    /* idle between operations: own nothing */
        }
        return rc;
}

const char *dp_nats_err_text(int err)
{
        switch (err) {
        case DP_NATS_E_UNKNOWN_OP:
        case DP_NATS_E_TRAILER:
                return "Unknown Protocol Operation";
        case DP_NATS_E_CONTROL_LINE:
                return "maximum control line exceeded";
        case DP_NATS_E_PAYLOAD:
                return "Maximum Payload Violation";
        case -ENOMEM:
                return "Out of Memory";
        default:
                /* E_ARGS, E_HEADERS: nats-server closes without a -ERR. */
                return "Parser Error";
        }
}
