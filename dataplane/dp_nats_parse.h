/* dp_nats_parse.h - an incremental parser of the NATS client protocol (what
 * a client sends a server): CONNECT, PUB, HPUB, SUB, UNSUB, PING, PONG, and
 * the +OK / -ERR a client may echo back.
 *
 * Bytes arrive as the socket gives them: an operation may be split at any
 * byte across calls, and one call may hold many pipelined operations. Each
 * call of dp_nats_parse returns at most one operation; the caller loops:
 *
 *      size_t used;
 *      struct dp_nats_op op;
 *      for (;;) {
 *              int rc = dp_nats_parse(&p, data, len, &used, &op);
 *              data += used, len -= used;
 *              if (rc < 0) { send "-ERR '<dp_nats_err_text(rc)>'"; close; break; }
 *              if (rc == 0) break;        // all consumed, need more bytes
 *              handle(&op);               // pointers valid until the next call
 *      }
 *
 * The loop ends on a call that returns 0, with len 0 if need be: that call
 * is what lets the parser free a buffer it gathered a large operation in,
 * whose bytes op pointed at until then. A parser whose last call returned
 * 0 with no operation half-read owns no memory at all.
 *
 * Zero copy where possible: when a whole operation (control line and
 * payload) lies in the caller's bytes, op points into them; otherwise the
 * parser gathers it in its own buffer, which grows only as far as the
 * limits allow (control line DP_NATS_LINE_MAX, payload max_payload) and
 * shrinks back once the operation is handed out. A control line that was
 * gathered is followed by a payload taken in place when the payload and its
 * CRLF are whole in the caller's bytes: op may point into both.
 *
 * Operation names are case-insensitive ("pub", "Sub"); arguments are
 * separated by spaces or tabs, repeated separators allowed; lines end with
 * CRLF (a bare LF is accepted, as nats-server does). Payloads are binary:
 * only the length from the control line counts, and the payload must be
 * followed by CRLF.
 *
 * Errors (negative returns) are protocol violations after which the
 * connection is closed, as nats-server does: the texts of dp_nats_err_text
 * are nats-server's, without the surrounding quotes. An error sticks: every
 * later call returns it again and takes no bytes.
 *
 * Where nats-server v2.9 is looser than this parser (dp_nats_parse.c lists
 * what was checked against it): an op name must end at a separator or the
 * line end ("PINGX" is refused, nats-server answers it with PONG); UNSUB's
 * max must be a size ("UNSUB 1 x" is refused, nats-server unsubscribes at
 * once); at most DP_NATS_HEAD_MAX bytes of op name and separators precede
 * the arguments; PING, PONG and +OK lines are bounded like any other.
 */
#ifndef ATOMQ_DP_NATS_PARSE_H
#define ATOMQ_DP_NATS_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* nats-server's MAX_CONTROL_LINE_SIZE. As in nats-server it bounds the
 * arguments: the bytes after the op name and its separators, without the
 * line end ("PUB " and 4096 bytes of arguments pass, 4097 do not). */
#define DP_NATS_CONTROL_MAX 4096u
/* Op name and the separators after it. nats-server skips any number of
 * separators without storing them; a parser that gathers the raw line needs
 * a bound, and no client sends more than one. */
#define DP_NATS_HEAD_MAX 64u
/* The longest control line ever gathered, CR included, LF not: this bounds
 * what an endless line costs before it is refused. */
#define DP_NATS_LINE_MAX (DP_NATS_HEAD_MAX + DP_NATS_CONTROL_MAX + 1u)
/* nats-server's default max_payload. */
#define DP_NATS_PAYLOAD_DEFAULT (1024u * 1024u)

enum dp_nats_kind {
        DP_NATS_CONNECT = 1, /* json: the CONNECT object, unparsed */
        DP_NATS_PUB,         /* subject, reply (may be empty), payload */
        DP_NATS_HPUB,        /* subject, reply, headers, payload */
        DP_NATS_SUB,         /* subject, queue (may be empty), sid */
        DP_NATS_UNSUB,       /* sid, max_msgs (0: none given) */
        DP_NATS_PING,
        DP_NATS_PONG,
        DP_NATS_OK,          /* +OK from the client: ignored by servers */
        DP_NATS_ERR,         /* -ERR from the client: text in json */
};

/* Protocol violations, with the -ERR text nats-server v2.9.10 sends for
 * each. For E_ARGS and E_HEADERS nats-server sends no -ERR at all: it logs
 * ("processPub Bad or Missing Size", "processHeaderPub Header Size larger
 * then TotalSize") and closes; 'Parser Error' is our text, and a caller
 * that wants to behave byte for byte like nats-server skips the -ERR for
 * those two. */
enum dp_nats_err {
        DP_NATS_E_UNKNOWN_OP = -1,    /* 'Unknown Protocol Operation' */
        DP_NATS_E_CONTROL_LINE = -2,  /* 'maximum control line exceeded' (lower case) */
        DP_NATS_E_PAYLOAD = -3,       /* 'Maximum Payload Violation' */
        DP_NATS_E_ARGS = -4,          /* 'Parser Error': wrong argument count or size */
        DP_NATS_E_HEADERS = -5,       /* 'Parser Error': header size above total size */
        DP_NATS_E_TRAILER = -6,       /* 'Unknown Protocol Operation': payload not followed by CRLF */
};

struct dp_nats_op {
        enum dp_nats_kind kind;
        const char *subject;
        uint32_t subject_len;
        const char *reply;        /* PUB/HPUB reply-to; NULL when none */
        uint32_t reply_len;
        const char *queue;        /* SUB queue group; NULL when none */
        uint32_t queue_len;
        const char *sid;          /* SUB/UNSUB subscription id, as sent */
        uint32_t sid_len;
        uint64_t max_msgs;        /* UNSUB: auto-unsubscribe after; 0: now */
        const char *json;         /* CONNECT argument, -ERR text */
        uint32_t json_len;
        const uint8_t *headers;   /* HPUB: the header block (NATS/1.0 ...) */
        uint32_t headers_len;
        const uint8_t *payload;   /* PUB/HPUB: payload without headers */
        uint32_t payload_len;
};

/* The parser's state. Opaque apart from the limit; buf_cap may be read to
 * see what a connection costs. */
struct dp_nats_parser {
        uint32_t max_payload;     /* HPUB: headers + payload; PUB: payload */
        uint32_t state;           /* where in an operation (dp_nats_parse.c) */
        int32_t err;              /* the error repeated once one was returned */
        uint32_t need;            /* payload bytes (+2 for CRLF) still to gather */
        uint8_t *buf;             /* gathered line + payload; NULL when none */
        uint32_t buf_len;
        uint32_t buf_cap;
        uint32_t line_len;        /* bytes of the pending control line in buf */
        struct dp_nats_op pending;/* the control line, parsed, while the payload is gathered */
};

/* max_payload as announced in INFO (0: DP_NATS_PAYLOAD_DEFAULT). */
void dp_nats_parser_init(struct dp_nats_parser *p, uint32_t max_payload);

/* Frees what the parser gathered. */
void dp_nats_parser_fini(struct dp_nats_parser *p);

/* Parses from data[0..len): returns 1 with *op filled (pointers valid until
 * the next call or fini), 0 when every byte was taken and more are needed,
 * or an enum dp_nats_err. *used gets the bytes consumed in every case.
 * -ENOMEM when the gather buffer cannot grow (sticky, like the others).
 * Sizes are at most 9 digits, as nats-server's parseSize takes them, so a
 * max_payload above 999999999 allows no more than that. */
int dp_nats_parse(struct dp_nats_parser *p, const uint8_t *data, size_t len, size_t *used,
                  struct dp_nats_op *op);

/* nats-server's text for an error (without quotes), e.g. "Unknown Protocol
 * Operation". */
const char *dp_nats_err_text(int err);

#endif /* ATOMQ_DP_NATS_PARSE_H */
