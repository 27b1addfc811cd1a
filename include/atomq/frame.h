/* atomq/frame.h - the atomq frame: one binary format for the shared-memory
 * rings between agents and workers and for atomq datagrams over UDP.
 *
 * A frame is a 48-byte header followed by the subject, the headers block and
 * the payload, in that order, with no padding between them:
 *
 *   0      2    3   4      6            8            12           16
 *   +------+----+---+------+------------+------------+------------+
 *   |magic |ver |op |flags |subject_len |headers_len |payload_len |
 *   +------+----+---+------+------------+------------+------------+
 *   16 handle (u64)     24 seq (u64)     32 reply (u64)
 *   40 ttl_ms (u32)     44 crc32c (u32)
 *   48 subject | headers | payload
 * With ATOMQ_FRAME_F_REPLY_SUBJECT the subject section is the subject and
 * then a reply subject of `reply` bytes (atomq_frame_reply_len).
 *
 * All fields are little-endian; atomq builds only for little-endian hosts
 * (checked below), so the header is read in place. `crc32c` covers the whole
 * frame with the crc32c field taken as zero; it is filled where a frame
 * crosses a network and zero in shared-memory rings (ATOMQ_FRAME_F_CRC says
 * which). A reader never trusts the lengths: atomq_frame_check() validates
 * them against the bytes actually received before anything else is read.
 */
#ifndef ATOMQ_FRAME_H
#define ATOMQ_FRAME_H

#include <stddef.h>
#include <stdint.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "atomq frames are little-endian and read in place: big-endian hosts are not supported"
#endif

#define ATOMQ_FRAME_MAGIC 0x5141u /* "AQ" */
#define ATOMQ_FRAME_VERSION 1
#define ATOMQ_FRAME_HDR_BYTES 48u
/* Bounds a reader enforces before it believes a length. */
#define ATOMQ_FRAME_SUBJECT_MAX 255u
#define ATOMQ_FRAME_HEADERS_MAX (64u * 1024)
#define ATOMQ_FRAME_PAYLOAD_MAX (64u * 1024 * 1024)

enum atomq_frame_op {
        ATOMQ_OP_NOP = 0,
        ATOMQ_OP_PUB = 1,      /* publish to a subject (match routing) */
        ATOMQ_OP_MSG = 2,      /* delivery to a subscriber */
        ATOMQ_OP_SUB = 3,
        ATOMQ_OP_UNSUB = 4,
        ATOMQ_OP_SEND = 5,     /* direct send to an entity handle */
        ATOMQ_OP_FETCH = 6,
        ATOMQ_OP_ACK = 7,
        ATOMQ_OP_REQUEST = 8,
        ATOMQ_OP_REPLY = 9,
        ATOMQ_OP_CREATE = 10,
        ATOMQ_OP_DESTROY = 11,
        ATOMQ_OP_STATUS = 12,  /* a result: payload holds an error code */
        ATOMQ_OP_PING = 13,
        ATOMQ_OP_PONG = 14,
        ATOMQ_OP_MAX_ = 15,    /* first value that is not an op */
};

enum atomq_frame_flags {
        ATOMQ_FRAME_F_CRC = 1u << 0,      /* crc32c is filled */
        ATOMQ_FRAME_F_ACK_REQ = 1u << 1,  /* sender wants an acknowledgement */
        ATOMQ_FRAME_F_REDELIVERY = 1u << 2,
        ATOMQ_FRAME_F_NO_RESPONDERS = 1u << 3,
        /* The subject section ends with a reply subject (NATS reply-to) of
         * `reply` bytes: subject_len counts both, reply is then a length,
         * not a handle. */
        ATOMQ_FRAME_F_REPLY_SUBJECT = 1u << 4,
};

struct atomq_frame {
        uint16_t magic;
        uint8_t version;
        uint8_t op;
        uint16_t flags;
        uint16_t subject_len;
        uint32_t headers_len;
        uint32_t payload_len;
        uint64_t handle;   /* target entity: shard, slot, generation */
        uint64_t seq;      /* sender's sequence number */
        uint64_t reply;    /* entity handle for a reply, 0 for none */
        uint32_t ttl_ms;   /* message TTL, 0 for none */
        uint32_t crc32c;
};
_Static_assert(sizeof(struct atomq_frame) == ATOMQ_FRAME_HDR_BYTES, "frame header size");
_Static_assert(offsetof(struct atomq_frame, op) == 3, "op offset");
_Static_assert(offsetof(struct atomq_frame, subject_len) == 6, "subject_len offset");
_Static_assert(offsetof(struct atomq_frame, headers_len) == 8, "headers_len offset");
_Static_assert(offsetof(struct atomq_frame, payload_len) == 12, "payload_len offset");
_Static_assert(offsetof(struct atomq_frame, handle) == 16, "handle offset");
_Static_assert(offsetof(struct atomq_frame, seq) == 24, "seq offset");
_Static_assert(offsetof(struct atomq_frame, reply) == 32, "reply offset");
_Static_assert(offsetof(struct atomq_frame, ttl_ms) == 40, "ttl_ms offset");
_Static_assert(offsetof(struct atomq_frame, crc32c) == 44, "crc32c offset");

/* Bytes of a whole frame with these section lengths. */
static inline uint64_t atomq_frame_bytes(uint32_t subject_len, uint32_t headers_len,
                                         uint32_t payload_len)
{
        return (uint64_t)ATOMQ_FRAME_HDR_BYTES + subject_len + headers_len + payload_len;
}

/* Fills a header (crc32c zero) for the given op and section lengths. */
static inline void atomq_frame_init(struct atomq_frame *f, enum atomq_frame_op op,
                                    uint16_t subject_len, uint32_t headers_len,
                                    uint32_t payload_len)
{
        *f = (struct atomq_frame){
                .magic = ATOMQ_FRAME_MAGIC,
                .version = ATOMQ_FRAME_VERSION,
                .op = (uint8_t)op,
                .subject_len = subject_len,
                .headers_len = headers_len,
                .payload_len = payload_len,
        };
}

enum atomq_frame_error {
        ATOMQ_FRAME_OK = 0,
        ATOMQ_FRAME_ETRUNC = 1,   /* fewer bytes than the header or its lengths */
        ATOMQ_FRAME_EMAGIC = 2,
        ATOMQ_FRAME_EVERSION = 3,
        ATOMQ_FRAME_EOP = 4,
        ATOMQ_FRAME_ELEN = 5,     /* a length above its bound */
        ATOMQ_FRAME_ETRAIL = 6,   /* bytes left over after the payload */
};

/* Validates a frame of exactly `len` bytes at buf (need not be aligned for
 * the header read: it is copied). Checks magic, version, op, each length
 * against its bound and the sum against len, with no overflow. CRC is
 * checked separately by the network layer. */
static inline enum atomq_frame_error atomq_frame_check(const void *buf, size_t len,
                                                       struct atomq_frame *out)
{
        struct atomq_frame f;
        if (len < ATOMQ_FRAME_HDR_BYTES)
                return ATOMQ_FRAME_ETRUNC;
        __builtin_memcpy(&f, buf, sizeof(f));
        if (f.magic != ATOMQ_FRAME_MAGIC)
                return ATOMQ_FRAME_EMAGIC;
        if (f.version != ATOMQ_FRAME_VERSION)
                return ATOMQ_FRAME_EVERSION;
        if (f.op == ATOMQ_OP_NOP || f.op >= ATOMQ_OP_MAX_)
                return ATOMQ_FRAME_EOP;
        if (f.subject_len > ATOMQ_FRAME_SUBJECT_MAX || f.headers_len > ATOMQ_FRAME_HEADERS_MAX ||
            f.payload_len > ATOMQ_FRAME_PAYLOAD_MAX)
                return ATOMQ_FRAME_ELEN;
        if ((f.flags & ATOMQ_FRAME_F_REPLY_SUBJECT) && f.reply >= f.subject_len)
                return ATOMQ_FRAME_ELEN;
        /* Each term is bounded above, so the 64-bit sum cannot overflow. */
        uint64_t total = atomq_frame_bytes(f.subject_len, f.headers_len, f.payload_len);
        if (total > len)
                return ATOMQ_FRAME_ETRUNC;
        if (total < len)
                return ATOMQ_FRAME_ETRAIL;
        if (out != NULL)
                *out = f;
        return ATOMQ_FRAME_OK;
}

/* Bytes of the reply subject at the end of a checked frame's subject
 * section (0: none). atomq_frame_check made sure it leaves a subject. */
static inline uint32_t atomq_frame_reply_len(const struct atomq_frame *f)
{
        return (f->flags & ATOMQ_FRAME_F_REPLY_SUBJECT) ? (uint32_t)f->reply : 0;
}

#endif /* ATOMQ_FRAME_H */
