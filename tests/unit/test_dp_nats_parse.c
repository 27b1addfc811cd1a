/* test_dp_nats_parse.c - the NATS client protocol parser: every op and its
 * fields, the same answers for every way a stream can be cut (byte by byte,
 * at any one or two points), zero copy when an op is whole, binary and
 * large payloads, each error with the stream split every way, and the
 * memory bounds: an endless line, the buffer freed after a big payload and
 * at fini. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/dp_nats_parse.h"

#define LIT(s) (const uint8_t *)(s), sizeof(s) - 1

/* A growable string of what a parse produced, to compare runs. */
struct out {
        char *s;
        size_t len, cap;
};

static void out_add(struct out *o, const void *p, size_t n)
{
        if (o->len + n + 1 > o->cap) {
                o->cap = (o->len + n + 1) * 2;
                o->s = realloc(o->s, o->cap);
                cr_assert_not_null(o->s);
        }
        memcpy(o->s + o->len, p, n);
        o->len += n;
        o->s[o->len] = '\0';
}

/* A field as "[len:bytes]", or "-" when NULL, so NULL and empty differ. */
static void out_field(struct out *o, const void *p, uint32_t n)
{
        char hdr[32];

        if (p == NULL) {
                cr_expect_eq(n, 0u);
                out_add(o, "-|", 2);
                return;
        }
        snprintf(hdr, sizeof(hdr), "[%u:", n);
        out_add(o, hdr, strlen(hdr));
        /* Escaped, so outputs are C strings even for binary payloads. */
        for (uint32_t i = 0; i < n; i++) {
                uint8_t c = ((const uint8_t *)p)[i];
                char e[8];

                if (c >= 0x20 && c < 0x7f && c != '\\') {
                        out_add(o, &c, 1);
                } else {
                        snprintf(e, sizeof(e), "\\x%02x", c);
                        out_add(o, e, 4);
                }
        }
        out_add(o, "]|", 2);
}

static void out_op(struct out *o, const struct dp_nats_op *op)
{
        char k[48];

        snprintf(k, sizeof(k), "%d/%llu|", (int)op->kind, (unsigned long long)op->max_msgs);
        out_add(o, k, strlen(k));
        out_field(o, op->subject, op->subject_len);
        out_field(o, op->reply, op->reply_len);
        out_field(o, op->queue, op->queue_len);
        out_field(o, op->sid, op->sid_len);
        out_field(o, op->json, op->json_len);
        out_field(o, op->headers, op->headers_len);
        out_field(o, op->payload, op->payload_len);
        out_add(o, "\n", 1);
}

/* Feeds one chunk the way the header's loop does; records ops and the
 * error. Returns the error (<0) or 0. */
static int feed(struct dp_nats_parser *p, const uint8_t *data, size_t len, struct out *o)
{
        for (;;) {
                struct dp_nats_op op;
                size_t used = (size_t)-1;
                int rc = dp_nats_parse(p, data, len, &used, &op);

                cr_assert_leq(used, len, "used %zu of %zu", used, len);
                data += used, len -= used;
                if (rc < 0) {
                        char e[24];
                        snprintf(e, sizeof(e), "error %d\n", rc);
                        out_add(o, e, strlen(e));
                        return rc;
                }
                if (rc == 0) {
                        cr_assert_eq(len, 0u, "0 returned with %zu bytes left", len);
                        return 0;
                }
                cr_assert_eq(rc, 1);
                out_op(o, &op);
        }
}

/* Parses s[0..n) cut at cuts[0..ncuts) (ascending) into o (the caller
 * frees o->s). Each chunk lives in its own allocation, freed right after,
 * so a pointer kept into an old chunk would read freed memory. */
static void run_keep(uint32_t max_payload, const uint8_t *s, size_t n, const size_t *cuts,
                     size_t ncuts, struct out *o)
{
        struct dp_nats_parser p;
        size_t from = 0;

        dp_nats_parser_init(&p, max_payload);
        for (size_t i = 0; i <= ncuts; i++) {
                size_t to = i < ncuts ? cuts[i] : n;
                uint8_t *chunk = malloc(to - from + 1);

                cr_assert_not_null(chunk);
                memcpy(chunk, s + from, to - from);
                int rc = feed(&p, chunk, to - from, o);
                free(chunk);
                from = to;
                if (rc < 0)
                        break;
                cr_assert_leq(p.buf_cap, DP_NATS_LINE_MAX + p.max_payload + 2u);
        }
        dp_nats_parser_fini(&p);
}

/* Checks that every way of cutting s gives the output of one whole call:
 * byte by byte, every chunk size, every single cut, and (when two_cuts)
 * every pair of cuts. */
static void expect_split_invariant(uint32_t max_payload, const uint8_t *s, size_t n,
                                   bool two_cuts, const char *want_tail)
{
        struct out ref = { 0 }, got = { 0 };
        size_t *cuts = malloc((n + 1) * sizeof(*cuts));

        cr_assert_not_null(cuts);
        run_keep(max_payload, s, n, NULL, 0, &ref);
        if (want_tail != NULL) {
                size_t t = strlen(want_tail);
                cr_assert_geq(ref.len, t);
                cr_assert_str_eq(ref.s + ref.len - t, want_tail, "whole stream gave:\n%s", ref.s);
        }
        for (size_t step = 1; step < n; step++) {
                size_t k = 0;
                for (size_t c = step; c < n; c += step)
                        cuts[k++] = c;
                run_keep(max_payload, s, n, cuts, k, &got);
                cr_assert_str_eq(got.s, ref.s, "chunks of %zu:\n%s\nvs whole:\n%s", step, got.s, ref.s);
                free(got.s);
                got = (struct out){ 0 };
        }
        for (size_t a = 1; a < n; a++) {
                cuts[0] = a;
                run_keep(max_payload, s, n, cuts, 1, &got);
                cr_assert_str_eq(got.s, ref.s, "cut at %zu", a);
                free(got.s);
                got = (struct out){ 0 };
                for (size_t b = a + 1; two_cuts && b < n; b++) {
                        cuts[1] = b;
                        run_keep(max_payload, s, n, cuts, 2, &got);
                        cr_assert_str_eq(got.s, ref.s, "cut at %zu and %zu", a, b);
                        free(got.s);
                        got = (struct out){ 0 };
                }
        }
        free(ref.s);
        free(cuts);
}

/* One whole op from a string; *used checked against the whole string. */
static int parse_str(struct dp_nats_parser *p, const char *s, size_t n, struct dp_nats_op *op)
{
        size_t used = (size_t)-1;
        int rc = dp_nats_parse(p, (const uint8_t *)s, n, &used, op);

        cr_assert_leq(used, n);
        if (rc == 1)
                cr_expect_eq(used, n, "op of \"%s\" used %zu of %zu", s, used, n);
        return rc;
}

static void expect_bytes(const void *p, uint32_t n, const char *want)
{
        cr_assert_not_null(p, "want \"%s\"", want);
        cr_expect_eq(n, strlen(want), "want \"%s\" (%zu), got %u bytes", want, strlen(want), n);
        if (n == strlen(want))
                cr_expect_eq(memcmp(p, want, n), 0, "want \"%s\", got \"%.*s\"", want, (int)n,
                             (const char *)p);
}

#define ONE(p, s, op) parse_str((p), (s), sizeof(s) - 1, (op))

Test(dp_nats_parse, connect_and_err_keep_the_rest_of_the_line)
{
        struct dp_nats_parser p;
        struct dp_nats_op op;

        dp_nats_parser_init(&p, 0);
        cr_assert_eq(ONE(&p, "CONNECT {\"verbose\":false, \"name\":\"a b\"}\r\n", &op), 1);
        cr_expect_eq(op.kind, DP_NATS_CONNECT);
        expect_bytes(op.json, op.json_len, "{\"verbose\":false, \"name\":\"a b\"}");
        cr_expect_null(op.subject);
        cr_assert_eq(ONE(&p, "connect\t \t{}\n", &op), 1);
        expect_bytes(op.json, op.json_len, "{}");
        cr_assert_eq(ONE(&p, "-ERR 'Authorization Violation'\r\n", &op), 1);
        cr_expect_eq(op.kind, DP_NATS_ERR);
        expect_bytes(op.json, op.json_len, "'Authorization Violation'");
        dp_nats_parser_fini(&p);
}

Test(dp_nats_parse, pub_with_and_without_reply)
{
        struct dp_nats_parser p;
        struct dp_nats_op op;

        dp_nats_parser_init(&p, 0);
        cr_assert_eq(ONE(&p, "PUB orders.eu 5\r\nhello\r\n", &op), 1);
        cr_expect_eq(op.kind, DP_NATS_PUB);
        expect_bytes(op.subject, op.subject_len, "orders.eu");
        cr_expect_null(op.reply);
        cr_expect_eq(op.reply_len, 0u);
        cr_expect_null(op.headers);
        expect_bytes(op.payload, op.payload_len, "hello");
        cr_assert_eq(ONE(&p, "pub  a\t_INBOX.x  \t 3 \r\nabc\r\n", &op), 1);
        expect_bytes(op.subject, op.subject_len, "a");
        expect_bytes(op.reply, op.reply_len, "_INBOX.x");
        expect_bytes(op.payload, op.payload_len, "abc");
        /* An empty payload still has its CRLF; a 9-digit size with zeros
         * is a size (nats-server's parseSize). */
        cr_assert_eq(ONE(&p, "PUB e 0\r\n\r\n", &op), 1);
        cr_expect_eq(op.payload_len, 0u);
        cr_expect_not_null(op.payload);
        cr_assert_eq(ONE(&p, "PUB e 000000002\nhi\r\n", &op), 1);
        expect_bytes(op.payload, op.payload_len, "hi");
        dp_nats_parser_fini(&p);
}

Test(dp_nats_parse, hpub_splits_headers_from_payload)
{
        struct dp_nats_parser p;
        struct dp_nats_op op;

        dp_nats_parser_init(&p, 0);
        cr_assert_eq(ONE(&p, "HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n", &op), 1);
        cr_expect_eq(op.kind, DP_NATS_HPUB);
        expect_bytes(op.subject, op.subject_len, "foo");
        cr_expect_null(op.reply);
        expect_bytes(op.headers, op.headers_len, "NATS/1.0\r\n\r\n");
        expect_bytes(op.payload, op.payload_len, "hi");
        cr_assert_eq(ONE(&p, "hPuB foo bar 18 18\r\nNATS/1.0\r\nA: b\r\n\r\n\r\n", &op), 1);
        expect_bytes(op.reply, op.reply_len, "bar");
        expect_bytes(op.headers, op.headers_len, "NATS/1.0\r\nA: b\r\n\r\n");
        cr_expect_eq(op.payload_len, 0u);
        /* Header size 0: nats-server delivers it as a plain MSG. */
        cr_assert_eq(ONE(&p, "HPUB foo 0 2\r\nhi\r\n", &op), 1);
        cr_expect_eq(op.headers_len, 0u);
        expect_bytes(op.payload, op.payload_len, "hi");
        dp_nats_parser_fini(&p);
}

Test(dp_nats_parse, sub_and_unsub)
{
        struct dp_nats_parser p;
        struct dp_nats_op op;

        dp_nats_parser_init(&p, 0);
        cr_assert_eq(ONE(&p, "SUB foo.* 1\r\n", &op), 1);
        cr_expect_eq(op.kind, DP_NATS_SUB);
        expect_bytes(op.subject, op.subject_len, "foo.*");
        cr_expect_null(op.queue);
        expect_bytes(op.sid, op.sid_len, "1");
        cr_assert_eq(ONE(&p, "sub\tfoo.>\t\tworkers  sid-77 \r\n", &op), 1);
        expect_bytes(op.subject, op.subject_len, "foo.>");
        expect_bytes(op.queue, op.queue_len, "workers");
        expect_bytes(op.sid, op.sid_len, "sid-77");
        cr_assert_eq(ONE(&p, "UNSUB 1\r\n", &op), 1);
        cr_expect_eq(op.kind, DP_NATS_UNSUB);
        expect_bytes(op.sid, op.sid_len, "1");
        cr_expect_eq(op.max_msgs, 0u);
        cr_expect_null(op.subject);
        cr_assert_eq(ONE(&p, "Unsub sid-77 999999999\n", &op), 1);
        expect_bytes(op.sid, op.sid_len, "sid-77");
        cr_expect_eq(op.max_msgs, 999999999u);
        dp_nats_parser_fini(&p);
}

Test(dp_nats_parse, ping_pong_ok_ignore_the_rest_of_their_line)
{
        static const struct {
                const char *s;
                enum dp_nats_kind kind;
        } t[] = {
                { "PING\r\n", DP_NATS_PING }, { "ping\n", DP_NATS_PING },
                { "PING foo\r\n", DP_NATS_PING }, { "PONG\r\n", DP_NATS_PONG },
                { "pOnG\t\r\n", DP_NATS_PONG }, { "+OK\r\n", DP_NATS_OK },
                { "+ok hello\r\n", DP_NATS_OK },
        };
        struct dp_nats_parser p;
        struct dp_nats_op op;

        dp_nats_parser_init(&p, 0);
        for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
                cr_assert_eq(parse_str(&p, t[i].s, strlen(t[i].s), &op), 1, "%s", t[i].s);
                cr_expect_eq(op.kind, t[i].kind, "%s", t[i].s);
                cr_expect_null(op.json);
                cr_expect_null(op.payload);
        }
        dp_nats_parser_fini(&p);
}

Test(dp_nats_parse, returns_one_op_per_call_and_always_sets_used)
{
        static const char s[] = "PING\r\nPONG\r\nSUB a 1\r\n";
        struct dp_nats_parser p;
        struct dp_nats_op op;
        const uint8_t *d = (const uint8_t *)s;
        size_t len = sizeof(s) - 1, used = 12345;

        dp_nats_parser_init(&p, 0);
        cr_assert_eq(dp_nats_parse(&p, d, len, &used, &op), 1);
        cr_expect_eq(op.kind, DP_NATS_PING);
        cr_expect_eq(used, 6u);
        d += used, len -= used, used = 12345;
        cr_assert_eq(dp_nats_parse(&p, d, len, &used, &op), 1);
        cr_expect_eq(op.kind, DP_NATS_PONG);
        cr_expect_eq(used, 6u);
        d += used, len -= used, used = 12345;
        cr_assert_eq(dp_nats_parse(&p, d, len, &used, &op), 1);
        cr_expect_eq(op.kind, DP_NATS_SUB);
        cr_expect_eq(used, 9u);
        used = 12345;
        cr_expect_eq(dp_nats_parse(&p, d + 9, 0, &used, &op), 0);
        cr_expect_eq(used, 0u);
        used = 12345;
        cr_expect_eq(dp_nats_parse(&p, LIT("PU"), &used, &op), 0);
        cr_expect_eq(used, 2u);
        dp_nats_parser_fini(&p);
}

/* Several ops of every kind, with binary payloads, bare LFs and tabs. */
static const char stream[] =
        "CONNECT {\"verbose\":false,\"name\":\"a b\"}\r\n"
        "sub foo.* q 1\r\n"
        "SUB\tbar\t\t2\n"
        "PUB foo.x 5\r\nhello\r\n"
        "pub foo.y _INBOX.1 6\r\n\r\n\0\r\n\0\r\n"
        "HPUB foo.z 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"
        "PUB e 0\r\n\r\n"
        "UNSUB 1\r\nunsub 2 10\r\n"
        "PING\r\nPONG\r\n+OK\r\n-ERR 'x y'\r\n"
        "hpub r.s rep 12 13\nNATS/1.0\r\n\r\n\n\r\n"
        "PING\n";

Test(dp_nats_parse, every_split_of_a_pipelined_stream_gives_the_same_ops)
{
        struct out ref = { 0 };
        size_t ops = 0;

        run_keep(0, LIT(stream), NULL, 0, &ref);
        /* One output line per op: fields are escaped. */
        for (size_t i = 0; i < ref.len; i++)
                ops += ref.s[i] == '\n';
        cr_assert_null(strstr(ref.s, "error"), "%s", ref.s);
        cr_assert_eq(ops, 15u, "%s", ref.s);
        cr_expect_not_null(strstr(ref.s, "[6:\\x0d\\x0a\\x00\\x0d\\x0a\\x00]|"), "%s", ref.s);
        free(ref.s);
        expect_split_invariant(0, LIT(stream), true, NULL);
}

Test(dp_nats_parse, whole_ops_point_into_the_callers_bytes)
{
        static const char s[] = "PUB a.b r 3\r\nxyz\r\nHPUB h 12 13\r\nNATS/1.0\r\n\r\n!\r\n"
                                "SUB a q 9\r\nCONNECT {}\r\n";
        struct dp_nats_parser p;
        struct dp_nats_op op;
        const uint8_t *d = (const uint8_t *)s, *end = d + sizeof(s) - 1;
        size_t len = sizeof(s) - 1, used;

        dp_nats_parser_init(&p, 0);
#define INSIDE(ptr) cr_expect((const uint8_t *)(ptr) >= d && (const uint8_t *)(ptr) < end)
        cr_assert_eq(dp_nats_parse(&p, d, len, &used, &op), 1);
        INSIDE(op.subject);
        INSIDE(op.reply);
        INSIDE(op.payload);
        cr_expect_eq((const uint8_t *)op.subject, d + 4);
        d += used, len -= used;
        cr_assert_eq(dp_nats_parse(&p, d, len, &used, &op), 1);
        INSIDE(op.headers);
        INSIDE(op.payload);
        d += used, len -= used;
        cr_assert_eq(dp_nats_parse(&p, d, len, &used, &op), 1);
        INSIDE(op.queue);
        INSIDE(op.sid);
        d += used, len -= used;
        cr_assert_eq(dp_nats_parse(&p, d, len, &used, &op), 1);
        INSIDE(op.json);
#undef INSIDE
        /* Nothing was copied: the parser never allocated. */
        cr_expect_null(p.buf);
        cr_expect_eq(p.buf_cap, 0u);
        dp_nats_parser_fini(&p);
}

Test(dp_nats_parse, split_ops_are_gathered_and_a_whole_payload_is_not_copied)
{
        struct dp_nats_parser p;
        struct dp_nats_op op;
        static const char a[] = "PUB subj 4\r\nab", b[] = "cd\r\n";
        static const char c[] = "PUB sub", e[] = "j2 4\r\nwxyz\r\n";
        size_t used;

        dp_nats_parser_init(&p, 0);
        /* Line whole, payload cut: both gathered into buf. */
        cr_assert_eq(dp_nats_parse(&p, LIT(a), &used, &op), 0);
        cr_expect_eq(used, sizeof(a) - 1);
        cr_assert_eq(dp_nats_parse(&p, LIT(b), &used, &op), 1);
        cr_expect_eq(used, 4u);
        cr_expect((const uint8_t *)op.subject >= p.buf &&
                  (const uint8_t *)op.subject < p.buf + p.buf_cap);
        cr_expect(op.payload >= p.buf && op.payload < p.buf + p.buf_cap);
        expect_bytes(op.subject, op.subject_len, "subj");
        expect_bytes(op.payload, op.payload_len, "abcd");
        /* Line cut, payload whole in the next bytes: taken in place. */
        cr_assert_eq(dp_nats_parse(&p, LIT(c), &used, &op), 0);
        cr_assert_eq(dp_nats_parse(&p, LIT(e), &used, &op), 1);
        cr_expect_eq(used, sizeof(e) - 1);
        expect_bytes(op.subject, op.subject_len, "subj2");
        cr_expect(op.payload >= (const uint8_t *)e && op.payload < (const uint8_t *)e + sizeof(e));
        expect_bytes(op.payload, op.payload_len, "wxyz");
        dp_nats_parser_fini(&p);
}

Test(dp_nats_parse, binary_payload_with_crlf_nul_and_fake_ops)
{
        uint8_t s[600];
        size_t n = 0;
        struct dp_nats_parser p;
        struct dp_nats_op op;
        size_t used;
        static const char fake[] = "\r\nPUB x 1\r\n\r\n-ERR\r\n\0";

        n += (size_t)snprintf((char *)s, sizeof(s), "PUB bin %zu\r\n", 256 + sizeof(fake));
        size_t start = n;
        for (int i = 0; i < 256; i++)
                s[n++] = (uint8_t)i;
        memcpy(s + n, fake, sizeof(fake));
        n += sizeof(fake);
        s[n++] = '\r';
        s[n++] = '\n';
        dp_nats_parser_init(&p, 0);
        cr_assert_eq(dp_nats_parse(&p, s, n, &used, &op), 1);
        cr_expect_eq(used, n);
        cr_assert_eq(op.payload_len, 256 + sizeof(fake));
        cr_expect_eq(memcmp(op.payload, s + start, op.payload_len), 0);
        dp_nats_parser_fini(&p);
        expect_split_invariant(0, s, n, false, NULL);
}

/* "PUB big <n>\r\n" + n pattern bytes + "\r\nPING\r\n" in a fresh buffer. */
static uint8_t *big_pub(size_t payload, size_t *len, size_t *start)
{
        uint8_t *s = malloc(payload + 64);

        cr_assert_not_null(s);
        *start = (size_t)snprintf((char *)s, 64, "PUB big %zu\r\n", payload);
        for (size_t i = 0; i < payload; i++)
                s[*start + i] = (uint8_t)(i * 7 + (i >> 11));
        memcpy(s + *start + payload, "\r\nPING\r\n", 8);
        *len = *start + payload + 8;
        return s;
}

Test(dp_nats_parse, one_mib_payload_gathered_over_64_kib_reads_then_freed)
{
        const size_t mib = 1024 * 1024, chunk = 64 * 1024;
        size_t len, start, off = 0, used;
        uint8_t *s = big_pub(mib, &len, &start);
        struct dp_nats_parser p;
        struct dp_nats_op op;
        int ops = 0, pings = 0;

        dp_nats_parser_init(&p, 0);
        while (off < len) {
                size_t n = len - off < chunk ? len - off : chunk;
                const uint8_t *d = s + off;
                for (;;) {
                        int rc = dp_nats_parse(&p, d, n, &used, &op);
                        cr_assert_geq(rc, 0);
                        d += used, n -= used, off += used;
                        cr_assert_leq(p.buf_cap, DP_NATS_LINE_MAX + mib + 2u);
                        if (rc == 0)
                                break;
                        if (op.kind == DP_NATS_PING) {
                                pings++;
                                continue;
                        }
                        ops++;
                        cr_assert_eq(op.kind, DP_NATS_PUB);
                        cr_assert_eq(op.payload_len, mib);
                        cr_expect_eq(memcmp(op.payload, s + start, mib), 0);
                        /* Gathered: a copy in the parser, not the reader's bytes. */
                        cr_expect(op.payload >= p.buf && op.payload < p.buf + p.buf_cap);
                }
        }
        cr_expect_eq(ops, 1);
        cr_expect_eq(pings, 1);
        /* The loop ended on a 0 with nothing half-read: nothing is kept. */
        cr_expect_null(p.buf);
        cr_expect_eq(p.buf_cap, 0u);
        dp_nats_parser_fini(&p);
        free(s);
}

Test(dp_nats_parse, big_buffer_is_freed_on_the_next_call_and_the_parser_goes_on)
{
        const size_t big = 200 * 1000;
        size_t len, start, used;
        uint8_t *s = big_pub(big, &len, &start);
        struct dp_nats_parser p;
        struct dp_nats_op op;

        dp_nats_parser_init(&p, 0);
        cr_assert_eq(dp_nats_parse(&p, s, 100, &used, &op), 0);
        cr_assert_eq(dp_nats_parse(&p, s + 100, len - 100, &used, &op), 1);
        cr_expect_eq(op.payload_len, big);
        cr_expect_geq(p.buf_cap, big);
        /* The next call, which carries the pipelined PING, drops the big
         * buffer before anything else: the op it held has been handled. */
        size_t off = 100 + used;
        cr_assert_eq(dp_nats_parse(&p, s + off, len - off, &used, &op), 1);
        cr_expect_eq(op.kind, DP_NATS_PING);
        cr_expect_leq(p.buf_cap, DP_NATS_LINE_MAX);
        cr_expect_null(p.buf);
        /* And a 0-length call is enough when the big op came last. */
        cr_assert_eq(dp_nats_parse(&p, s, 100, &used, &op), 0);
        cr_assert_eq(dp_nats_parse(&p, s + 100, len - 106, &used, &op), 1);
        cr_expect_geq(p.buf_cap, big);
        cr_assert_eq(dp_nats_parse(&p, s, 0, &used, &op), 0);
        cr_expect_null(p.buf);
        cr_expect_eq(p.buf_cap, 0u);
        dp_nats_parser_fini(&p);
        free(s);
}

Test(dp_nats_parse, small_split_line_is_kept_until_idle)
{
        struct dp_nats_parser p;
        struct dp_nats_op op;
        size_t used;

        dp_nats_parser_init(&p, 0);
        cr_assert_eq(dp_nats_parse(&p, LIT("SUB a"), &used, &op), 0);
        cr_expect_not_null(p.buf);
        cr_expect_leq(p.buf_cap, 256u);
        cr_assert_eq(dp_nats_parse(&p, LIT(" 1\r\nPING\r\n"), &used, &op), 1);
        expect_bytes(op.sid, op.sid_len, "1");
        cr_assert_eq(dp_nats_parse(&p, LIT("PING\r\n"), &used, &op), 1);
        cr_assert_eq(dp_nats_parse(&p, LIT(""), &used, &op), 0);
        cr_expect_null(p.buf);
        cr_expect_eq(p.buf_cap, 0u);
        dp_nats_parser_fini(&p);
}

Test(dp_nats_parse, fini_frees_a_half_gathered_op)
{
        struct dp_nats_parser p;
        struct dp_nats_op op;
        size_t used;

        dp_nats_parser_init(&p, 0);
        cr_assert_eq(dp_nats_parse(&p, LIT("PUB a 100000\r\nxx"), &used, &op), 0);
        cr_expect_geq(p.buf_cap, 100000u);
        dp_nats_parser_fini(&p);
        cr_expect_null(p.buf);
        cr_expect_eq(p.buf_cap, 0u);
        cr_expect_eq(p.buf_len, 0u);
        dp_nats_parser_fini(&p);        /* twice is harmless */
        dp_nats_parser_init(&p, 0);
        cr_assert_eq(dp_nats_parse(&p, LIT("PING\r\n"), &used, &op), 1);
        dp_nats_parser_fini(&p);
}

struct bad {
        const char *s;
        int err;
};

static const struct bad bad[] = {
        { "FOO bar\r\n", DP_NATS_E_UNKNOWN_OP },
        { "\r\n", DP_NATS_E_UNKNOWN_OP },
        { " PING\r\n", DP_NATS_E_UNKNOWN_OP },
        { "PINGX\r\n", DP_NATS_E_UNKNOWN_OP },
        { "PING\rPING\r\n", DP_NATS_E_UNKNOWN_OP },
        { "MSG a 1 2\r\nhi\r\n", DP_NATS_E_UNKNOWN_OP },
        { "INFO {}\r\n", DP_NATS_E_UNKNOWN_OP },
        { "PUB\r\n", DP_NATS_E_UNKNOWN_OP },
        { "UNSUB\r\n", DP_NATS_E_UNKNOWN_OP },
        { "-ERR\r\n", DP_NATS_E_UNKNOWN_OP },
        { "CONNECTX {}\r\n", DP_NATS_E_UNKNOWN_OP },
        { "PUB foo 1048577\r\n", DP_NATS_E_PAYLOAD },
        { "HPUB foo 10 1048577\r\n", DP_NATS_E_PAYLOAD },
        { "PUB foo 999999999\r\n", DP_NATS_E_PAYLOAD },
        { "HPUB foo 10 5\r\n0123456789\r\n", DP_NATS_E_HEADERS },
        { "HPUB foo 2000000 1048577\r\n", DP_NATS_E_HEADERS },
        { "PUB foo x\r\nhi\r\n", DP_NATS_E_ARGS },
        { "PUB foo -2\r\nhi\r\n", DP_NATS_E_ARGS },
        { "PUB foo +2\r\nhi\r\n", DP_NATS_E_ARGS },
        { "PUB foo 2x\r\nhi\r\n", DP_NATS_E_ARGS },
        { "PUB foo 99999999999999999999999\r\nhi\r\n", DP_NATS_E_ARGS },
        { "PUB foo 0000000002\r\nhi\r\n", DP_NATS_E_ARGS },
        { "PUB foo\r\n", DP_NATS_E_ARGS },
        { "PUB \r\n", DP_NATS_E_ARGS },
        { "PUB a b c 2\r\nhi\r\n", DP_NATS_E_ARGS },
        { "HPUB foo\r\n", DP_NATS_E_ARGS },
        { "HPUB foo 2\r\nhi\r\n", DP_NATS_E_ARGS },
        { "HPUB foo x 14\r\n", DP_NATS_E_ARGS },
        { "HPUB foo -1 2\r\n", DP_NATS_E_ARGS },
        { "HPUB a b c 1 2\r\n", DP_NATS_E_ARGS },
        { "SUB foo\r\n", DP_NATS_E_ARGS },
        { "SUB a b c d\r\n", DP_NATS_E_ARGS },
        { "UNSUB 1 2 3\r\n", DP_NATS_E_ARGS },
        { "UNSUB 1 x\r\n", DP_NATS_E_ARGS },
        { "UNSUB 1 -1\r\n", DP_NATS_E_ARGS },
        { "UNSUB 1 1234567890\r\n", DP_NATS_E_ARGS },
        { "CONNECT\r\n", DP_NATS_E_ARGS },
        { "CONNECT \r\n", DP_NATS_E_ARGS },
        { "-ERR \r\n", DP_NATS_E_ARGS },
        { "PUB foo 2\r\nhixx", DP_NATS_E_TRAILER },
        { "PUB foo 2\r\nhi\nPING\r\n", DP_NATS_E_TRAILER },
        { "PUB foo 2\r\nhi\rPING\r\n", DP_NATS_E_TRAILER },
        { "PUB foo 0\r\nPING\r\n", DP_NATS_E_TRAILER },
        { "HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\n\n", DP_NATS_E_TRAILER },
};

Test(dp_nats_parse, each_error_whole_and_split_every_way)
{
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                /* After a good op, so the error comes mid-stream. */
                char s[128], tail[32];
                int n = snprintf(s, sizeof(s), "PING\r\n%s", bad[i].s);

                snprintf(tail, sizeof(tail), "error %d\n", bad[i].err);
                expect_split_invariant(0, (const uint8_t *)s, (size_t)n, true, tail);
        }
}

Test(dp_nats_parse, payload_limit_is_decided_on_the_control_line)
{
        struct dp_nats_parser p;
        struct dp_nats_op op;
        size_t used;

        /* No payload byte is sent: the answer must not wait for one. */
        dp_nats_parser_init(&p, 10);
        cr_expect_eq(dp_nats_parse(&p, LIT("PUB a 11\r\n"), &used, &op), DP_NATS_E_PAYLOAD);
        cr_expect_null(p.buf);
        dp_nats_parser_fini(&p);
        dp_nats_parser_init(&p, 10);
        cr_expect_eq(dp_nats_parse(&p, LIT("HPUB a 5 11\r\n"), &used, &op), DP_NATS_E_PAYLOAD);
        dp_nats_parser_fini(&p);
        dp_nats_parser_init(&p, 10);
        cr_expect_eq(dp_nats_parse(&p, LIT("PUB a 10\r\n0123456789\r\n"), &used, &op), 1);
        cr_expect_eq(dp_nats_parse(&p, LIT("HPUB a 4 10\r\n0123456789\r\n"), &used, &op), 1);
        cr_expect_eq(dp_nats_parse(&p, LIT("HPUB a 11 10\r\n"), &used, &op), DP_NATS_E_HEADERS);
        dp_nats_parser_fini(&p);
        /* 0 takes nats-server's default. */
        dp_nats_parser_init(&p, 0);
        cr_expect_eq(p.max_payload, DP_NATS_PAYLOAD_DEFAULT);
        dp_nats_parser_fini(&p);
}

Test(dp_nats_parse, errors_stick)
{
        struct dp_nats_parser p;
        struct dp_nats_op op;
        size_t used;

        dp_nats_parser_init(&p, 0);
        cr_assert_eq(dp_nats_parse(&p, LIT("FOO\r\n"), &used, &op), DP_NATS_E_UNKNOWN_OP);
        used = 99;
        cr_expect_eq(dp_nats_parse(&p, LIT("PING\r\n"), &used, &op), DP_NATS_E_UNKNOWN_OP);
        cr_expect_eq(used, 0u);
        cr_expect_null(p.buf);
        dp_nats_parser_fini(&p);
}

Test(dp_nats_parse, error_texts_are_nats_servers)
{
        cr_expect_str_eq(dp_nats_err_text(DP_NATS_E_UNKNOWN_OP), "Unknown Protocol Operation");
        cr_expect_str_eq(dp_nats_err_text(DP_NATS_E_CONTROL_LINE),
                         "maximum control line exceeded");
        cr_expect_str_eq(dp_nats_err_text(DP_NATS_E_PAYLOAD), "Maximum Payload Violation");
        cr_expect_str_eq(dp_nats_err_text(DP_NATS_E_TRAILER), "Unknown Protocol Operation");
        cr_expect_str_eq(dp_nats_err_text(DP_NATS_E_ARGS), "Parser Error");
        cr_expect_str_eq(dp_nats_err_text(DP_NATS_E_HEADERS), "Parser Error");
        cr_expect_not_null(dp_nats_err_text(-ENOMEM));
        cr_expect_not_null(dp_nats_err_text(-1000));
}

/* "PUB " + a subject padded so the arguments are args bytes long + " 1"
 * + line end + "x\r\nPING\r\n". */
static size_t long_pub(char *s, size_t args, const char *eol)
{
        size_t n = 0;

        memcpy(s, "PUB ", 4);
        n = 4;
        memset(s + n, 's', args - 2);
        n += args - 2;
        memcpy(s + n, " 1", 2);
        n += 2;
        n += (size_t)sprintf(s + n, "%sx\r\nPING\r\n", eol);
        return n;
}

Test(dp_nats_parse, control_line_bound_is_4096_bytes_of_arguments)
{
        static char s[DP_NATS_CONTROL_MAX + 64];
        size_t n;
        char ok_tail[64];

        /* As nats-server: 4096 bytes after "PUB " pass, 4097 do not. */
        snprintf(ok_tail, sizeof(ok_tail), "%d/0|-|-|-|-|-|-|-|\n", (int)DP_NATS_PING);
        n = long_pub(s, DP_NATS_CONTROL_MAX, "\r\n");
        expect_split_invariant(0, (const uint8_t *)s, n, false, ok_tail);
        n = long_pub(s, DP_NATS_CONTROL_MAX, "\n");
        expect_split_invariant(0, (const uint8_t *)s, n, false, ok_tail);
        n = long_pub(s, DP_NATS_CONTROL_MAX + 1, "\r\n");
        expect_split_invariant(0, (const uint8_t *)s, n, false, "error -2\n");
        n = long_pub(s, DP_NATS_CONTROL_MAX + 1, "\n");
        expect_split_invariant(0, (const uint8_t *)s, n, false, "error -2\n");
        /* Many separators after the op name: bounded too. */
        memset(s, ' ', sizeof(s));
        memcpy(s, "SUB", 3);
        memcpy(s + DP_NATS_HEAD_MAX + 1, "a 1\r\n", 5);
        expect_split_invariant(0, (const uint8_t *)s, DP_NATS_HEAD_MAX + 6, false, "error -2\n");
        memcpy(s + DP_NATS_HEAD_MAX, "a 1\r\n", 5);
        expect_split_invariant(0, (const uint8_t *)s, DP_NATS_HEAD_MAX + 5, false, "[1:1]|-|-|-|\n");
}

/* Feeds an endless line in chunks of 7: an error must come, and the
 * buffer must stay within a control line. */
static void expect_endless_line_bounded(const char *start, int err)
{
        struct dp_nats_parser p;
        struct dp_nats_op op;
        uint8_t chunk[7];
        size_t fed = 0, used;
        uint32_t cap_max = 0;
        int rc;

        dp_nats_parser_init(&p, 0);
        rc = dp_nats_parse(&p, (const uint8_t *)start, strlen(start), &used, &op);
        memset(chunk, 'a', sizeof(chunk));
        while (rc == 0 && fed < 1000000) {
                rc = dp_nats_parse(&p, chunk, sizeof(chunk), &used, &op);
                fed += used;
                cap_max = p.buf_cap > cap_max ? p.buf_cap : cap_max;
        }
        cr_expect_eq(rc, err, "%s: rc %d after %zu bytes", start, rc, fed);
        cr_expect_leq(fed, DP_NATS_LINE_MAX + sizeof(chunk));
        cr_expect_leq(cap_max, DP_NATS_CONTROL_MAX + DP_NATS_HEAD_MAX + 1u);
        cr_expect_null(p.buf);
        dp_nats_parser_fini(&p);
}

Test(dp_nats_parse, endless_control_line_in_small_chunks_stays_bounded)
{
        expect_endless_line_bounded("PUB ", DP_NATS_E_CONTROL_LINE);
        expect_endless_line_bounded("CONNECT {\"", DP_NATS_E_CONTROL_LINE);
        expect_endless_line_bounded("PING ", DP_NATS_E_CONTROL_LINE);
        expect_endless_line_bounded("-ERR ", DP_NATS_E_CONTROL_LINE);
        /* An unknown op is refused at once, without waiting for a line end. */
        expect_endless_line_bounded("X", DP_NATS_E_UNKNOWN_OP);
        expect_endless_line_bounded("CONNEC", DP_NATS_E_UNKNOWN_OP);
}

Test(dp_nats_parse, endless_separators_stay_bounded)
{
        struct dp_nats_parser p;
        struct dp_nats_op op;
        size_t used, fed = 0;
        int rc = 0;

        dp_nats_parser_init(&p, 0);
        cr_assert_eq(dp_nats_parse(&p, LIT("SUB"), &used, &op), 0);
        while (rc == 0 && fed < 1000000) {
                rc = dp_nats_parse(&p, LIT(" \t "), &used, &op);
                fed += used;
                cr_assert_leq(p.buf_cap, DP_NATS_LINE_MAX);
        }
        cr_expect_eq(rc, DP_NATS_E_CONTROL_LINE);
        dp_nats_parser_fini(&p);
}

Test(dp_nats_parse, line_in_one_call_longer_than_the_bound_is_refused_at_the_bound)
{
        static char s[3 * DP_NATS_CONTROL_MAX];
        struct dp_nats_parser p;
        struct dp_nats_op op;
        size_t used;

        memset(s, 'a', sizeof(s));
        memcpy(s, "PUB ", 4);
        memcpy(s + sizeof(s) - 5, " 1\r\n", 4);
        dp_nats_parser_init(&p, 0);
        cr_expect_eq(dp_nats_parse(&p, (const uint8_t *)s, sizeof(s) - 1, &used, &op),
                     DP_NATS_E_CONTROL_LINE);
        cr_expect_leq(used, DP_NATS_LINE_MAX + 1u);
        cr_expect_null(p.buf);
        dp_nats_parser_fini(&p);
}

/* The arguments are split a block of bytes at a time (16 and 64): tokens
 * and runs of separators that start, end or straddle a block edge, and
 * lines shorter than a block, give the tokens a byte-wise split gives. */
Test(dp_nats_parse, arguments_split_the_same_at_every_block_edge)
{
        static const char *const seps[] = { " ", "\t", " \t", "\t \t", "   " };
        char line[512], subject[200], reply[200];
        struct dp_nats_parser p;
        struct dp_nats_op op;

        for (size_t sl = 1; sl <= 140; sl++) {
                for (size_t k = 0; k < sl; k++)
                        subject[k] = (char)('a' + k % 26);
                subject[sl] = '\0';
                for (size_t rl = 0; rl <= 70; rl += 7) {
                        for (size_t k = 0; k < rl; k++)
                                reply[k] = (char)('A' + k % 26);
                        reply[rl] = '\0';
                        const char *a = seps[(sl + rl) % 5], *b = seps[(sl * 3 + rl) % 5];
                        /* Leading and trailing separators too, now and then. */
                        const char *lead = sl % 4 == 0 ? "\t " : " ";
                        const char *trail = rl % 3 == 0 ? " \t" : "";
                        int n = rl != 0 ? snprintf(line, sizeof(line), "PUB%s%s%s%s%s3%s\r\nxyz\r\n",
                                                   lead, subject, a, reply, b, trail)
                                        : snprintf(line, sizeof(line), "PUB%s%s%s3%s\r\nxyz\r\n",
                                                   lead, subject, a, trail);
                        cr_assert_lt((size_t)n, sizeof(line));
                        dp_nats_parser_init(&p, 0);
                        cr_assert_eq(parse_str(&p, line, (size_t)n, &op), 1,
                                     "line %s", line);
                        cr_expect_eq(op.kind, DP_NATS_PUB);
                        cr_expect_eq(op.subject_len, sl, "line %s", line);
                        cr_expect_eq(memcmp(op.subject, subject, sl), 0);
                        if (rl != 0) {
                                cr_expect_eq(op.reply_len, rl, "line %s", line);
                                cr_expect_eq(memcmp(op.reply, reply, rl), 0);
                        } else {
                                cr_expect_null(op.reply);
                        }
                        cr_expect_eq(op.payload_len, 3u);
                        dp_nats_parser_fini(&p);
                }
        }
}
