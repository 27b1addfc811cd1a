/* atomq/dgram.h - atomq datagrams: atomq frames (atomq/frame.h) over UDP,
 * the protocol docs/protocol.md describes in full.
 *
 * One UDP payload is the session id (8 bytes, little-endian) and one or
 * more whole frames back to back:
 *
 *   0         8                       8 + frame_bytes
 *   +---------+-----------------------+---------------------+---
 *   | session | frame (48 B header,   | frame ...           |
 *   |  (u64)  |  sections)            |                     |
 *   +---------+-----------------------+---------------------+---
 *
 * Every frame carries ATOMQ_FRAME_F_CRC and a CRC32C (Castagnoli) over the
 * session id's 8 bytes followed by the frame with its crc32c field zero:
 * a frame is bound to its session, and a frame moved into another
 * session's datagram fails its check.
 *
 * Sessions: a client opens one with a PING in a datagram of session 0; the
 * server answers PONG in a datagram that carries the new session id, with
 * the lease in ttl_ms. The session belongs to the address and port it was
 * opened from: a datagram with its id from anywhere else is dropped
 * (counted as spoofed), as is one with an id the server does not know.
 * Any valid frame renews the lease; a session not heard from for a lease
 * ends, and its subscriptions with it.
 *
 * What arrives when: a publish (PUB) is at most once. Every other request
 * carries a sequence number in seq (1, 2, ... per session) and is answered
 * (STATUS, PONG or REPLY with the same seq); a client that gets no answer
 * sends the same frame again with the same seq, and the server executes a
 * send, ack, subscribe, unsubscribe, create or destroy once whatever number
 * of copies arrive (it keeps the answers of the last ATOMQ_DGRAM_WINDOW
 * sequence numbers and answers a copy from there). A fetch or request
 * copy that arrives after its answer is executed again: a fetched message
 * nobody acks is delivered again after the mailbox's ack wait anyway.
 */
#ifndef ATOMQ_DGRAM_H
#define ATOMQ_DGRAM_H

#include <stdint.h>

#include "atomq/frame.h"

#define ATOMQ_DGRAM_SESSION_BYTES 8u
/* Answers kept per session for retransmitted requests. */
#define ATOMQ_DGRAM_WINDOW 64u
/* The default UDP port of atomq datagrams. */
#define ATOMQ_DGRAM_PORT 4223u

/* The body of a STATUS frame: what the request came to. */
struct atomq_dgram_status {
        int32_t status;     /* 0 or -errno (Linux numbers) */
        uint32_t count;     /* fetch: messages that follow (MSG frames) */
        uint64_t handle;    /* create, send: the entity; subscribe: the subscription */
        uint64_t seq;       /* send: the message's sequence number */
};
_Static_assert(sizeof(struct atomq_dgram_status) == 24, "status body");

/* The body of a CREATE frame (the name is the subject section, empty for
 * an anonymous entity). Values as in atomq.h: mode enum atomq_mode,
 * storage -1 for the mode's, ttl_ms 0 for none. */
struct atomq_dgram_create {
        uint8_t mode;
        int8_t storage;
        uint8_t reserved[2];
        uint32_t ttl_ms;
        uint32_t max_msgs;  /* 0: the server's default */
        uint32_t max_bytes; /* 0: the server's default */
};
_Static_assert(sizeof(struct atomq_dgram_create) == 16, "create body");

#endif /* ATOMQ_DGRAM_H */
