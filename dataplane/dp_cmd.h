/* dp_cmd.h - command and completion records: how the control plane, agents
 * and tests ask a worker to act on its shard, and how the answer comes back.
 *
 * A command is one record in a worker's command ring (shm_mpsc, type
 * DP_REC_CMD); a command forwarded between workers is the same bytes in a
 * mesh ring (shm_vring, type DP_REC_MESH_EXEC or DP_REC_MESH_FANOUT):
 *
 *   0              64             64 + pad8(name_len)
 *   +--------------+--------------+------------------------------------+
 *   | struct dp_cmd| name/pattern | atomq frame (send, publish only):  |
 *   |              | (name_len)   | header, subject, headers, payload  |
 *   +--------------+--------------+------------------------------------+
 *
 * The op is an atomq frame op (include/atomq/frame.h): CREATE, DESTROY,
 * SEND, PUB, SUB, UNSUB, FETCH, ACK; or one of the control ops that never
 * travel in a frame (DP_OP_SET, DP_OP_STAT, above the frame ops' range).
 * The message of a send or publish is carried inline as an atomq frame, so
 * what an agent writes into a ring is what travels over UDP. Every record
 * is at most DP_CMD_BYTES_MAX bytes.
 *
 * Destroy, fetch, set and stat name their entity by handle, or, with
 * handle 0, by name (as send does): the owner resolves the name on its own
 * shard, so nobody else ever reads another worker's index.
 *
 * Every command gets exactly one completion (struct dp_cpl, type
 * DP_REC_CPL) in the completion ring of its client (dp_cmd.client) from
 * the worker that owns the entity: request id, status (0 or -errno),
 * handle, sequence, count, and for a fetch the messages, each an atomq
 * frame (op MSG, handle the entity, seq the message's) padded to 8 bytes.
 *
 * A record whose header is unusable (bad magic, version, client, op, or a
 * length that does not add up) is counted and skipped: with no trustworthy
 * client there is nobody to answer. A record with a usable header and a bad
 * body is answered -EINVAL (or -EMSGSIZE). Nothing read from a ring is
 * asserted on.
 *
 * Shared layouts: _Static_asserts below fix sizes and offsets; a change
 * bumps DP_CMD_VERSION.
 */
#ifndef ATOMQ_DP_CMD_H
#define ATOMQ_DP_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "atomq/frame.h"
#include "dataplane/dp_shard.h"

#define DP_CMD_MAGIC 0x4443u /* "CD" */
#define DP_CPL_MAGIC 0x4c43u /* "CL" */
#define DP_CMD_VERSION 3 /* 2: DP_OP_SET, DP_OP_STAT, destroy/fetch by name;
                          * 3: bind, unbind, request, get, read, commit,
                          * sync, flags (quiet) */

/* Ring record types (the ring's own type word, not the op). */
#define DP_REC_CMD 0x31444d43u         /* "CMD1": a client's command */
#define DP_REC_CPL 0x314c5043u         /* "CPL1": a completion */
#define DP_REC_MESH_EXEC 0x31584d4du   /* "MEX1": execute here, then complete */
#define DP_REC_MESH_FANOUT 0x31464d4du /* "MFO1": publish here only, no completion */
#define DP_REC_MESH_AQ 0x3151414du     /* "MAQ1": an $AQ request for its owner (dp_nats_aq.c) */
#define DP_REC_MESH_FANOUT_REF 0x3152464du /* "MFR1": a publish too large for a record, by
                                            * reference to the sender's buffer */
#define DP_REC_MESH_COUNT 0x3143464du      /* "MFC1": deliveries of a publish, to its origin */
#define DP_REC_MESH_AQ_REF 0x3251414du     /* "MAQ2": an $AQ request by reference */

/* A command record, header included. 16 KiB carries any control command
 * and messages up to ~15.7 KiB; bigger messages take the network path. The
 * rings that carry commands must hold one: capacity / 2 - 8 >= this. */
#define DP_CMD_BYTES_MAX (16u * 1024)
/* A completion record. Twice a command, so a fetch answer holds at least
 * one message of the largest size a command can carry, and many small. */
#define DP_CPL_BYTES_MAX (32u * 1024)
/* Most messages one fetch hands out. */
#define DP_FETCH_MAX 64u
/* Most clients (completion-ring columns) an engine serves. */
#define DP_CLIENTS_MAX 64u
/* Names and patterns are subjects: at most 255 bytes. */
#define DP_CMD_NAME_MAX ATOMQ_FRAME_SUBJECT_MAX

/* Control ops: commands only, never in a frame, so they sit above the
 * frame ops (ATOMQ_OP_MAX_) and a frame can never be mistaken for one. */
#define DP_OP_SET 0x40u   /* change an entity's storage and/or TTL live */
#define DP_OP_STAT 0x41u  /* read an entity: struct dp_cpl_stat after the completion */
#define DP_OP_BIND 0x42u  /* become a party of an entity: watcher or holder */
#define DP_OP_UNBIND 0x43u /* leave it (endpoint and sid) */
#define DP_OP_GET 0x44u   /* retention latest: the value under a key (the name section) */
#define DP_OP_READ 0x45u  /* ordered: read by offset, or a group's cursor (name: group) */
#define DP_OP_COMMIT 0x46u /* ordered: move a group's cursor (name: group, seq: offset) */
#define DP_OP_SYNC 0x47u  /* nothing: answered after every command before it on its ring */

enum dp_cmd_create_flags {
        DP_CMD_CREATE_F_STORAGE = 1u << 0,      /* storage overrides the mode's */
        DP_CMD_CREATE_F_TTL_IDLE = 1u << 1,     /* TTL counts from last use */
        DP_CMD_CREATE_F_LEAST_LOADED = 1u << 2, /* group routing: least loaded */
        DP_CMD_CREATE_SYNC_SHIFT = 3,           /* bits 3-4: enum dp_sync (disk) */
        DP_CMD_CREATE_SYNC_MASK = 3u << 3,
};

struct dp_cmd_create {
        uint8_t mode;       /* enum dp_mode */
        int8_t storage;     /* with DP_CMD_CREATE_F_STORAGE */
        int8_t overflow;    /* -1: the mode's; else enum dp_overflow */
        uint8_t flags;      /* enum dp_cmd_create_flags */
        uint32_t ttl_ms;
        uint32_t max_msgs;
        uint32_t max_bytes;
};

struct dp_cmd_sub {
        uint32_t group;     /* 0: none; members of one group share a shard */
        uint32_t endpoint;  /* < DP_ENDPOINT_MAX */
        uint32_t sid;
        uint32_t reserved;
};

struct dp_cmd_fetch {
        uint32_t max;       /* 1 .. DP_FETCH_MAX */
        uint8_t end;        /* channel: 1 + the fetching end; 0: none */
        uint8_t reserved[11];
};

enum dp_cmd_send_flags {
        DP_CMD_SEND_F_STORAGE = 1u << 0, /* storage overrides the entity's */
};

struct dp_cmd_send {
        uint8_t flags;      /* enum dp_cmd_send_flags */
        int8_t storage;
        uint8_t end;        /* channel: 1 + the sending end; 0: none */
        uint8_t reserved[13];
};

enum dp_cmd_set_flags {
        DP_CMD_SET_F_STORAGE = 1u << 0, /* switch storage (dp_shard_set_storage) */
        DP_CMD_SET_F_TTL = 1u << 1,     /* set the TTL from now, 0 clears it */
};

struct dp_cmd_set {
        uint8_t flags;      /* enum dp_cmd_set_flags, at least one */
        uint8_t storage;    /* with DP_CMD_SET_F_STORAGE */
        uint8_t reserved[2];
        uint32_t ttl_ms;    /* with DP_CMD_SET_F_TTL */
        uint8_t reserved2[16];
};

struct dp_cmd_bind {
        uint32_t endpoint;  /* the party; forced to the agent's own for agents */
        uint32_t sid;
        uint32_t group;     /* group routing: members of one group */
        uint8_t hold;       /* 1: a holder (pulls, keeps it alive), 0: a watcher */
        uint8_t end;        /* channel end of a holder (0 or 1) */
        uint8_t reserved[10];
};

struct dp_cmd_request {
        uint32_t timeout_ms; /* 1 .. */
        uint32_t endpoint;   /* the reply's party; forced for agents */
        uint32_t sid;
        uint8_t reserved[12];
};

struct dp_cmd_read {
        uint32_t max;        /* 1 .. DP_FETCH_MAX */
        uint32_t reserved;
        uint64_t offset;     /* without a group: the first offset */
        uint8_t reserved2[8];
};

union dp_cmd_args {
        struct dp_cmd_create create;
        struct dp_cmd_bind bind;
        struct dp_cmd_request request;
        struct dp_cmd_read read;
        struct dp_cmd_sub sub;
        struct dp_cmd_fetch fetch;
        struct dp_cmd_send send;
        struct dp_cmd_set set;
        uint8_t raw[24];
};

enum dp_cmd_flags {
        /* Answer only a failure: an asynchronous publish that succeeds
         * costs no completion record. A client learns that everything
         * before was handled from a DP_OP_SYNC's answer. */
        DP_CMD_F_QUIET = 1u << 0,
        /* A fanout publish: seq carries the publish's id (dp_msg_in.pub_id). */
        DP_CMD_F_PUB_ID = 1u << 1,
        /* A fanout publish whose origin wants the count delivered here. */
        DP_CMD_F_COUNT = 1u << 2,
};

/* The fixed head of every command record. handle is the target of
 * destroy, send, fetch, set, stat, bind and unbind (0 with a name: the
 * entity of that name), of ack, get, read and commit (a handle is
 * required: their name section is the key or group), the entity a
 * subscription feeds (0: the endpoint) and the subscription id of an
 * unsubscribe. */
struct dp_cmd {
        uint16_t magic;      /* DP_CMD_MAGIC (filled by dp_cmd_encode) */
        uint8_t version;     /* DP_CMD_VERSION (filled by dp_cmd_encode) */
        uint8_t op;          /* enum atomq_frame_op */
        uint16_t client;     /* completion ring column, < the engine's clients */
        uint16_t name_len;   /* name (create, send by name) or pattern (sub) */
        uint32_t frame_len;  /* bytes of the frame after the name (filled) */
        uint32_t flags;      /* enum dp_cmd_flags */
        uint64_t req_id;     /* chosen by the client, echoed in the completion */
        uint64_t handle;
        uint64_t seq;        /* ack: the message */
        union dp_cmd_args args;
};
_Static_assert(sizeof(struct dp_cmd) == 64, "command header is one line");
_Static_assert(offsetof(struct dp_cmd, op) == 3, "op offset");
_Static_assert(offsetof(struct dp_cmd, client) == 4, "client offset");
_Static_assert(offsetof(struct dp_cmd, frame_len) == 8, "frame_len offset");
_Static_assert(offsetof(struct dp_cmd, req_id) == 16, "req_id offset");
_Static_assert(offsetof(struct dp_cmd, handle) == 24, "handle offset");
_Static_assert(offsetof(struct dp_cmd, seq) == 32, "seq offset");
_Static_assert(offsetof(struct dp_cmd, args) == 40, "args offset");
_Static_assert(sizeof(union dp_cmd_args) == 24, "args size");

/* The fixed head of every completion record. */
struct dp_cpl {
        uint16_t magic;      /* DP_CPL_MAGIC */
        uint8_t version;     /* DP_CMD_VERSION */
        uint8_t op;          /* the command's op */
        int32_t status;      /* 0 or -errno */
        uint64_t req_id;
        uint64_t handle;     /* create, send: the entity; sub: subscription id */
        uint64_t seq;        /* send: the message's sequence number */
        uint32_t count;      /* publish: deliveries on the first shard; fetch: messages */
        uint32_t msgs_bytes; /* fetch: bytes of the frames after this header */
        uint16_t worker;     /* the worker that executed the command */
        uint16_t reserved16;
        uint32_t reserved;
};
_Static_assert(sizeof(struct dp_cpl) == 48, "completion header");
_Static_assert(offsetof(struct dp_cpl, status) == 4, "status offset");
_Static_assert(offsetof(struct dp_cpl, req_id) == 8, "req_id offset");
_Static_assert(offsetof(struct dp_cpl, count) == 32, "count offset");
_Static_assert(offsetof(struct dp_cpl, worker) == 40, "worker offset");

/* The answer of DP_OP_STAT, after its struct dp_cpl (msgs_bytes holds its
 * size): a copy of the entity's atoms, limits and counts taken by its
 * owner, so the reader sees one consistent moment. */
struct dp_cpl_stat {
        uint8_t mode;        /* enum dp_mode */
        uint8_t storage;     /* enum dp_storage */
        uint8_t retention;
        uint8_t routing;
        uint8_t delivery;
        uint8_t overflow;
        uint8_t lifecycle;   /* enum dp_lifecycle_flags */
        uint8_t flags;       /* enum dp_entity_flags */
        uint32_t msgs;
        uint32_t bytes;
        uint32_t max_msgs;
        uint32_t max_bytes;
        uint32_t ttl_ms;
        uint32_t parties;
        uint64_t seq;        /* next sequence number or log offset */
};
_Static_assert(sizeof(struct dp_cpl_stat) == 40, "stat answer");
_Static_assert(offsetof(struct dp_cpl_stat, msgs) == 8, "stat msgs offset");
_Static_assert(offsetof(struct dp_cpl_stat, seq) == 32, "stat seq offset");

/* A command as a worker sees it after dp_cmd_parse. Pointers go into the
 * buffer that was parsed. */
struct dp_cmd_view {
        const struct dp_cmd *hdr;
        const char *name;       /* NULL when name_len is 0 */
        bool has_msg;
        struct dp_msg_in msg;   /* send, publish */
};

/* A message of a fetch completion, as dp_cpl_msg_next hands it out. */
struct dp_cpl_msg {
        struct atomq_frame frame;   /* handle: entity; seq: the message's */
        const char *subject;
        const uint8_t *headers;
        const uint8_t *payload;
};

/* Is op one a command may carry? */
static inline bool dp_cmd_op_valid(uint8_t op)
{
        switch (op) {
        case ATOMQ_OP_CREATE:
        case ATOMQ_OP_DESTROY:
        case ATOMQ_OP_SEND:
        case ATOMQ_OP_PUB:
        case ATOMQ_OP_SUB:
        case ATOMQ_OP_UNSUB:
        case ATOMQ_OP_FETCH:
        case ATOMQ_OP_ACK:
        case ATOMQ_OP_REQUEST:
        case DP_OP_SET:
        case DP_OP_STAT:
        case DP_OP_BIND:
        case DP_OP_UNBIND:
        case DP_OP_GET:
        case DP_OP_READ:
        case DP_OP_COMMIT:
        case DP_OP_SYNC:
                return true;
        default:
                return false;
        }
}

/* Is the answer to op a list of messages (struct dp_cpl then frames)? */
static inline bool dp_cmd_op_answers_msgs(uint8_t op)
{
        return op == ATOMQ_OP_FETCH || op == DP_OP_GET || op == DP_OP_READ;
}

/* Does a command of this op carry a message (a frame)? */
static inline bool dp_cmd_op_has_msg(uint8_t op)
{
        return op == ATOMQ_OP_SEND || op == ATOMQ_OP_PUB || op == ATOMQ_OP_REQUEST;
}

/* Bytes of m as an atomq frame (subject and reply subject, headers,
 * payload), or 0 when a section exceeds its frame bound. */
uint64_t dp_frame_bytes(const struct dp_msg_in *m);

/* Writes m as a frame of op at out (dp_frame_bytes(m) bytes): one writer
 * for the rings and the shard's buffers. */
void dp_frame_write(void *out, enum atomq_frame_op op, const struct dp_msg_in *m);

/* Reads the sections of a frame atomq_frame_check accepted (f, the bytes
 * at frame) into m: subject, reply subject (NATS reply-to), headers,
 * payload, reply handle, TTL. storage -1, end 0. */
void dp_frame_read(const struct atomq_frame *f, const uint8_t *frame, struct dp_msg_in *m);

/* Bytes of the record for a command with a name of name_len bytes and
 * message m (NULL: none), or 0 when it would exceed DP_CMD_BYTES_MAX or a
 * section its bound. */
uint32_t dp_cmd_bytes(uint32_t name_len, const struct dp_msg_in *m);

/* Writes the record into out (len = dp_cmd_bytes(hdr->name_len, m), 8-byte
 * aligned): hdr with magic, version and frame_len filled in, the name, and
 * m as a frame of op hdr->op. */
void dp_cmd_encode(void *out, uint32_t len, const struct dp_cmd *hdr, const char *name,
                   const struct dp_msg_in *m);

/* Parses a record of len bytes at rec (8-byte aligned; a private copy when
 * the producer is not trusted) for an engine of `clients` clients.
 * Returns 0 with *v filled;
 * -EPROTO: the header is unusable (too short, magic, version, client or op)
 *          and v->hdr is NULL: count and skip;
 * -EINVAL: the header is usable (v->hdr set) but the lengths do not add up,
 *          the frame is bad or does not belong to the op: answer it;
 * -EMSGSIZE: as -EINVAL, for a record above DP_CMD_BYTES_MAX. */
int dp_cmd_parse(const void *rec, uint32_t len, uint32_t clients, struct dp_cmd_view *v);

/* Walks the messages of a fetch completion of len bytes: *off starts at 0.
 * Returns 1 with *m filled and *off moved on, 0 at the end, -EPROTO when a
 * frame does not fit or does not check. */
int dp_cpl_msg_next(const struct dp_cpl *c, uint32_t len, uint32_t *off, struct dp_cpl_msg *m);

#endif /* ATOMQ_DP_CMD_H */
