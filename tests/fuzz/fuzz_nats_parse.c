/* fuzz_nats_parse.c - libFuzzer target for the NATS client protocol parser
 * (dataplane/dp_nats_parse.h), fed the way a connection feeds it.
 *
 *      sh tests/fuzz/run.sh build-fuzz/tests/fuzz/fuzz_nats_parse \
 *              tests/fuzz/corpus/nats_parse build-fuzz/tests/fuzz/nats_parse
 *
 * Input: byte 0 picks the parser's max_payload, byte 1 how the stream is
 * cut into reads (one read, single bytes, or runs of pseudo-random length
 * seeded by byte 1 itself); the rest is the byte stream a client sends.
 * The seeds start with two digits, readable and meaningful: "0".."5" is the
 * max_payload index, "0".."3" the cut ("02PUB foo 2\r\nhi\r\n").
 *
 * Each read is copied into a buffer of exactly its size, so a parser that
 * reads past what it was given, or keeps a pointer into a read after the
 * call that consumed it, is caught by ASan. The caller's loop is
 * dp_nats_on_data's (dataplane/dp_nats.c): parse until the parser needs
 * more (0) or refuses (< 0, where the server closes the connection).
 *
 * Checked on every call, as dp_nats_parse.h promises:
 *   - rc is 1, 0, an enum dp_nats_err or -ENOMEM; used <= len; 0 means
 *     every byte was taken (so a caller has nothing to keep over); 1
 *     consumed at least one byte (the loop cannot spin);
 *   - each pointer of an op lies in the read or in the parser's buffer, a
 *     NULL one has length 0, fields the op's kind does not use are empty;
 *   - tokens hold no separator or line end; sizes are at most 9 digits;
 *     headers + payload <= max_payload; a payload is followed by CRLF;
 *     HPUB's headers end where its payload starts;
 *   - the buffer never grows past a line and a payload; the parser owns no
 *     memory after a 0 with nothing half-read, nor after an error; errors
 *     stick (the next call gives the same one and takes no bytes).
 * And across runs: the stream cut as byte 1 says gives the same ops and the
 * same end as the stream given in one read ("any split of the same bytes
 * gives the same answer", dp_nats_parse.c).
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/dp_nats_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Small limits reach E_PAYLOAD and the gather path with small inputs; 0 is
 * the server's default (1 MiB). All stay far below the 9-digit cap, so a
 * stalled big PUB costs at most a few MiB here, as on a connection. */
static const uint32_t fz_max_payloads[] = { 0, 1, 8, 64, 1024, 65536 };
#define FZ_MAX_PAYLOADS (sizeof(fz_max_payloads) / sizeof(fz_max_payloads[0]))

/* What one run produced: compared between the one-read and the cut run. */
struct fz_trace {
        uint64_t hash;          /* FNV-1a over every op's fields */
        uint32_t ops;
        int end;                /* the last rc: 0, or the error */
};

#define FZ_NAME "fuzz_nats_parse"
#include "tests/fuzz/fuzz_check.h"

static void fz_hash(uint64_t *h, const void *p, size_t n)
{
        const uint8_t *b = p;

        for (size_t i = 0; i < n; i++) {
                *h ^= b[i];
                *h *= 0x100000001b3ull;
        }
}

/* A field by length and bytes, with NULL apart from empty. */
static void fz_hash_field(uint64_t *h, const void *p, uint32_t n)
{
        uint8_t null = p == NULL;

        fz_hash(h, &null, 1);
        fz_hash(h, &n, sizeof(n));
        if (p != NULL)
                fz_hash(h, p, n);
}

static void fz_trace_op(struct fz_trace *t, const struct dp_nats_op *op)
{
        uint32_t kind = (uint32_t)op->kind;

        fz_hash(&t->hash, &kind, sizeof(kind));
        fz_hash_field(&t->hash, op->subject, op->subject_len);
        fz_hash_field(&t->hash, op->reply, op->reply_len);
        fz_hash_field(&t->hash, op->queue, op->queue_len);
        fz_hash_field(&t->hash, op->sid, op->sid_len);
        fz_hash(&t->hash, &op->max_msgs, sizeof(op->max_msgs));
        fz_hash_field(&t->hash, op->json, op->json_len);
        fz_hash_field(&t->hash, op->headers, op->headers_len);
        fz_hash_field(&t->hash, op->payload, op->payload_len);
        t->ops++;
}

/* Is [p, p + n) inside [base, base + len)? An empty range may sit at the end. */
static bool fz_within(const void *p, size_t n, const void *base, size_t len)
{
        uintptr_t a = (uintptr_t)p, b = (uintptr_t)base;

        return base != NULL && a >= b && a - b <= len && n <= len - (a - b);
}

/* The op's bytes are either in the caller's read (zero copy) or in what the
 * parser gathered; nothing else is valid once the call returns. */
static void fz_check_range(const struct dp_nats_parser *p, const uint8_t *data, size_t len,
                           const void *ptr, size_t n)
{
        FZ_CHECK(fz_within(ptr, n, data, len) || fz_within(ptr, n, p->buf, p->buf_len));
}

/* A token of a control line: non-empty, no separator and no line end. */
static void fz_check_token(const struct dp_nats_parser *p, const uint8_t *data, size_t len,
                           const char *s, uint32_t n)
{
        FZ_CHECK(s != NULL && n > 0 && n <= DP_NATS_CONTROL_MAX);
        fz_check_range(p, data, len, s, n);
        for (uint32_t i = 0; i < n; i++)
                FZ_CHECK(s[i] != ' ' && s[i] != '\t' && s[i] != '\n');
}

/* A field that may be absent: NULL only with length 0. */
static void fz_check_opt_token(const struct dp_nats_parser *p, const uint8_t *data, size_t len,
                               const char *s, uint32_t n)
{
        if (s == NULL)
                FZ_CHECK(n == 0);
        else
                fz_check_token(p, data, len, s, n);
}

/* PUB and HPUB: the payload lies in one region with its CRLF after it. */
static void fz_check_payload(const struct dp_nats_parser *p, const uint8_t *data, size_t len,
                             const struct dp_nats_op *op)
{
        uint64_t total = (uint64_t)op->headers_len + op->payload_len;
        uint32_t max = p->max_payload;

        FZ_CHECK(op->subject != NULL);
        fz_check_token(p, data, len, op->subject, op->subject_len);
        fz_check_opt_token(p, data, len, op->reply, op->reply_len);
        FZ_CHECK(total <= max && total <= 999999999u);
        FZ_CHECK(op->payload != NULL);
        fz_check_range(p, data, len, op->payload, (size_t)op->payload_len + 2);
        FZ_CHECK(op->payload[op->payload_len] == '\r' && op->payload[op->payload_len + 1] == '\n');
        if (op->kind == DP_NATS_PUB) {
                FZ_CHECK(op->headers == NULL && op->headers_len == 0);
                return;
        }
        FZ_CHECK(op->headers != NULL && op->headers + op->headers_len == op->payload);
        fz_check_range(p, data, len, op->headers, op->headers_len);
}

/* What each kind fills: everything else must stay zero (the op is cleared
 * before a line is parsed, so a stale field would mean a missed clear). */
static void fz_check_unused(const struct dp_nats_op *op)
{
        bool pub = op->kind == DP_NATS_PUB || op->kind == DP_NATS_HPUB;
        bool sub = op->kind == DP_NATS_SUB;
        bool unsub = op->kind == DP_NATS_UNSUB;
        bool text = op->kind == DP_NATS_CONNECT || op->kind == DP_NATS_ERR;

        if (!pub && !sub)
                FZ_CHECK(op->subject == NULL && op->subject_len == 0);
        if (!pub)
                FZ_CHECK(op->reply == NULL && op->payload == NULL && op->payload_len == 0 &&
                         op->headers == NULL && op->headers_len == 0);
        if (!sub)
                FZ_CHECK(op->queue == NULL && op->queue_len == 0);
        if (!sub && !unsub)
                FZ_CHECK(op->sid == NULL && op->sid_len == 0);
        if (!unsub)
                FZ_CHECK(op->max_msgs == 0);
        if (!text)
                FZ_CHECK(op->json == NULL && op->json_len == 0);
}

static void fz_check_op(const struct dp_nats_parser *p, const uint8_t *data, size_t len,
                        const struct dp_nats_op *op)
{
        FZ_CHECK(op->kind >= DP_NATS_CONNECT && op->kind <= DP_NATS_ERR);
        fz_check_unused(op);
        switch (op->kind) {
        case DP_NATS_PUB:
        case DP_NATS_HPUB:
                fz_check_payload(p, data, len, op);
                break;
        case DP_NATS_SUB:
                fz_check_token(p, data, len, op->subject, op->subject_len);
                fz_check_opt_token(p, data, len, op->queue, op->queue_len);
                fz_check_token(p, data, len, op->sid, op->sid_len);
                break;
        case DP_NATS_UNSUB:
                fz_check_token(p, data, len, op->sid, op->sid_len);
                FZ_CHECK(op->max_msgs <= 999999999u);
                break;
        case DP_NATS_CONNECT:
        case DP_NATS_ERR:
                /* The rest of the line after the separators: never empty,
                 * never the line end itself. */
                FZ_CHECK(op->json != NULL && op->json_len > 0 &&
                         op->json_len <= DP_NATS_CONTROL_MAX);
                fz_check_range(p, data, len, op->json, op->json_len);
                FZ_CHECK(op->json[0] != ' ' && op->json[0] != '\t');
                FZ_CHECK(memchr(op->json, '\n', op->json_len) == NULL);
                break;
        default:
                break;
        }
}

/* The parser's memory: within its bounds at every return. */
static void fz_check_parser(const struct dp_nats_parser *p, int rc)
{
        FZ_CHECK((p->buf == NULL) == (p->buf_cap == 0));
        FZ_CHECK(p->buf_len <= p->buf_cap);
        FZ_CHECK(p->line_len <= p->buf_len);
        /* A whole line (CR included) and then one payload with its CRLF. */
        FZ_CHECK((uint64_t)p->buf_cap <= (uint64_t)DP_NATS_LINE_MAX + p->max_payload + 2);
        if (rc < 0)
                FZ_CHECK(p->buf == NULL);
        if (rc == 0 && p->buf_len == 0)
                FZ_CHECK(p->buf == NULL);
}

static void fz_check_call(const struct dp_nats_parser *p, const uint8_t *data, size_t len,
                          size_t used, int rc, const struct dp_nats_op *op)
{
        FZ_CHECK(used <= len);
        FZ_CHECK(rc == 1 || rc == 0 || rc == -ENOMEM ||
                 (rc >= DP_NATS_E_TRAILER && rc <= DP_NATS_E_UNKNOWN_OP));
        if (rc == 0)
                FZ_CHECK(used == len);
        if (rc == 1) {
                FZ_CHECK(used > 0);
                fz_check_op(p, data, len, op);
        }
        fz_check_parser(p, rc);
}

/* One read, as dp_nats_on_data handles it: parse until the parser needs
 * more or refuses. The read is ours only for this call (a socket buffer).
 * Returns the last rc. */
static int fz_feed(struct dp_nats_parser *p, const uint8_t *bytes, size_t n, struct fz_trace *t)
{
        /* Exactly n bytes (at least 1 so malloc cannot return NULL for 0):
         * ASan sees any read past the end of what the socket gave. */
        uint8_t *copy = malloc(n > 0 ? n : 1);
        const uint8_t *data = copy;
        size_t len = n;
        int rc;

        FZ_CHECK(copy != NULL);
        if (n > 0)
                memcpy(copy, bytes, n);
        for (;;) {
                size_t used = (size_t)-1;
                struct dp_nats_op op;

                rc = dp_nats_parse(p, data, len, &used, &op);
                fz_check_call(p, data, len, used, rc, &op);
                if (rc == 1)
                        fz_trace_op(t, &op);
                data += used;
                len -= used;
                if (rc <= 0)
                        break;
        }
        if (rc < 0) {
                /* Sticky: the same error, and nothing taken, on any bytes. */
                size_t used = (size_t)-1;
                struct dp_nats_op op;
                const char *text = dp_nats_err_text(rc);

                /* What the server sends in its -ERR before it closes. */
                FZ_CHECK(text != NULL && text[0] != '\0');

                FZ_CHECK(dp_nats_parse(p, copy, n, &used, &op) == rc);
                FZ_CHECK(used == 0);
                fz_check_parser(p, rc);
        }
        free(copy);
        return rc;
}

/* xorshift64: read lengths from the input's own bytes, reproducible. */
static uint64_t fz_next(uint64_t *s)
{
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        return *s;
}

/* Read lengths for cut: 0 one read, 1 single bytes, 2 runs of 1..16 bytes
 * (splits inside op names and CRLFs), 3 runs of 1..1024 (splits inside
 * long lines and payloads). */
static size_t fz_read_len(uint8_t cut, uint64_t *s, size_t left)
{
        size_t n;

        switch (cut & 3) {
        case 0:
                n = left;
                break;
        case 1:
                n = 1;
                break;
        case 2:
                n = 1 + (size_t)(fz_next(s) % 16);
                break;
        default:
                n = 1 + (size_t)(fz_next(s) % 1024);
                break;
        }
        return n < left ? n : left;
}

static void fz_run(const uint8_t *stream, size_t len, uint32_t max_payload, uint8_t cut,
                   struct fz_trace *t)
{
        struct dp_nats_parser p;
        uint64_t s = 0x9e3779b97f4a7c15ull ^ ((uint64_t)cut << 32) ^ len;
        size_t off = 0;
        int rc = 0;

        memset(t, 0, sizeof(*t));
        t->hash = 0xcbf29ce484222325ull;
        dp_nats_parser_init(&p, max_payload);
        FZ_CHECK(p.buf == NULL);
        while (off < len && rc >= 0) {
                size_t n = fz_read_len(cut, &s, len - off);

                rc = fz_feed(&p, stream + off, n, t);
                off += n;
        }
        /* The connection ends: a read of nothing must not change anything. */
        if (rc >= 0)
                rc = fz_feed(&p, stream + off, 0, t);
        t->end = rc;
        dp_nats_parser_fini(&p);
        FZ_CHECK(p.buf == NULL && p.buf_cap == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct fz_trace whole, cut;

        if (size < 2)
                return 0;
        uint32_t max_payload = fz_max_payloads[data[0] % FZ_MAX_PAYLOADS];
        fz_run(data + 2, size - 2, max_payload, 0, &whole);
        if ((data[1] & 3) == 0)
                return 0;
        fz_run(data + 2, size - 2, max_payload, data[1], &cut);
        if (whole.ops != cut.ops || whole.hash != cut.hash || whole.end != cut.end) {
                fprintf(stderr, "fuzz_nats_parse: one read gave %u ops (end %d), cut %#x gave "
                        "%u ops (end %d), hashes %s\n", whole.ops, whole.end, data[1], cut.ops,
                        cut.end, whole.hash == cut.hash ? "equal" : "differ");
                __builtin_trap();
        }
        return 0;
}
