/* atomq.h - the public agent API of libatomq.
 *
 * Agents are processes on the dataplane's host that talk to atomq through
 * shared memory instead of sockets. This header grows with the agents issue;
 * it starts with error text and direct channels.
 *
 * Conventions: every call returns 0 (or a count, or 1 for "got one") on
 * success and a negative errno value on failure, never sets errno, and
 * documents each value it returns. atomq_strerror() turns them into text.
 *
 * Build against it with pkg-config:
 *      cc -o app app.c $(pkg-config --cflags --libs atomq)
 */
#ifndef ATOMQ_ATOMQ_H
#define ATOMQ_ATOMQ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ errors */

/* Text for a value an atomq call returned: err is a negative (or positive)
 * errno value; atomq's own meaning is given where it differs from the
 * system's ("-EPIPE: the peer closed its end of the channel"). Never NULL;
 * the string is static and must not be freed. Thread-safe. */
const char *atomq_strerror(int err);

/* ---------------------------------------------------------------- channels
 *
 * A direct channel joins two agents on one host with no worker in between:
 * one memfd holds a small header and two SPSC record rings, one per
 * direction. End 0 creates the memfd (atomq_channel_create) and hands its
 * descriptor to end 1 (atomq_channel_fd, e.g. over SCM_RIGHTS or by fork),
 * which maps it (atomq_channel_attach). Each end then sends on its own ring
 * and receives on the other; each side is single-threaded (one sender and one
 * receiver thread per end at most, which may be the same thread).
 *
 * Groundwork: today the two agents set the channel up themselves. A later
 * step lets the dataplane do it over the control socket (SCM_RIGHTS) and own
 * the lifecycle (TTL, either side leaving); the calls below stay the same.
 *
 * Memory: ATOMQ_CHANNEL_RING_BYTES per direction by default (64 KiB), so a
 * channel maps about 2 x 64 KiB + 704 bytes of headers, rounded to pages.
 */

#define ATOMQ_CHANNEL_RING_BYTES (64u * 1024u) /* per direction, the default */
#define ATOMQ_CHANNEL_RING_BYTES_MIN 64u
#define ATOMQ_CHANNEL_RING_BYTES_MAX (1u << 30)
/* Room a process-local ring view takes inside struct atomq_channel. */
#define ATOMQ_CHANNEL_VIEW_WORDS 16

/* One end of a channel. Every field is private to libatomq and may change
 * between versions: use the functions below. The struct is plain so it can
 * live wherever the caller wants (stack, array, another struct) with no
 * allocation; a zeroed struct is not a channel until create or attach. */
struct atomq_channel {
        void *map;          /* private: the mapping of the memfd */
        size_t map_bytes;   /* private */
        int fd;             /* private: creator's memfd, -1 on end 1 */
        int end;            /* private: 0 creator, 1 attacher */
        /* private: this end's views of its send and receive rings */
        uint64_t tx_view[ATOMQ_CHANNEL_VIEW_WORDS];
        uint64_t rx_view[ATOMQ_CHANNEL_VIEW_WORDS];
};

/* A received message, borrowed from the ring: data and len stay valid until
 * atomq_channel_release() (or close). The bytes are shared memory the peer
 * could still write if it misbehaves: copy them before validating them when
 * the peer is not trusted. */
struct atomq_msg {
        const void *data;
        uint32_t len;
        uint32_t reserved; /* 0 */
};

/* Bytes of memory one channel with ring_bytes per direction maps (0: the
 * default), or 0 when ring_bytes is invalid. */
size_t atomq_channel_map_bytes(uint32_t ring_bytes);

/* Creates a channel and makes *ch its end 0: a memfd (close-on-exec) sized
 * for two rings of ring_bytes data bytes each (0: ATOMQ_CHANNEL_RING_BYTES),
 * sealed against shrinking and growing so the peer can never make our
 * mapping fault, then mapped and formatted. The largest message is
 * ring_bytes / 2 - 8 bytes.
 * -EINVAL: ring_bytes not a power of two, or outside
 *          ATOMQ_CHANNEL_RING_BYTES_MIN .. ATOMQ_CHANNEL_RING_BYTES_MAX;
 * -EMFILE, -ENFILE: no file descriptor left (memfd_create);
 * -ENOMEM: no memory for the memfd or the mapping;
 * -errno:  any other failure of memfd_create, ftruncate, fcntl or mmap. */
int atomq_channel_create(struct atomq_channel *ch, uint32_t ring_bytes);

/* The memfd of a channel this process created, to hand to the peer; it
 * stays owned by the channel (closed by atomq_channel_close).
 * -EBADF: ch is end 1 (an attached end has no descriptor) or closed. */
int atomq_channel_fd(const struct atomq_channel *ch);

/* Attaches *ch as end 1 of the channel in memfd fd. Everything the peer
 * wrote is checked before it is trusted: the file, its seals, the header and
 * both ring headers. fd is not taken over: the caller may close it as soon
 * as this returns (the mapping stays).
 * -EBADF:  fd is not an open descriptor;
 * -ENODEV: fd is not a memfd (no seals: a device, a pipe, a plain file);
 * -EPERM:  the memfd is not sealed against shrinking and growing (a peer
 *          could truncate it and crash us with SIGBUS);
 * -EPROTO: not a channel of this version: bad magic, version, geometry,
 *          file size or ring header;
 * -EBUSY:  end 1 of this channel is already attached (or was, and closed);
 * -ENOMEM: no memory for the mapping; -errno: another failure of mmap. */
int atomq_channel_attach(struct atomq_channel *ch, int fd);

/* Sends len bytes from buf (copied), and wakes the peer if it sleeps in
 * atomq_channel_recv_wait (a memory fence; a syscall only when it sleeps).
 * Never blocks.
 * -EAGAIN:   the ring is full: try again once the peer has received;
 * -EMSGSIZE: len is above ring_bytes / 2 - 8;
 * -EPIPE:    the peer closed its end (nothing sent);
 * -EPROTO:   the peer corrupted the ring's shared indexes;
 * -EBADF:    ch is closed. */
int atomq_channel_send(struct atomq_channel *ch, const void *buf, uint32_t len);

/* Like atomq_channel_send, but waits while the ring is full, up to
 * timeout_ns (< 0: forever; 0: do not wait). Waiting for room polls with
 * a growing pause (up to 50 us): the receiver does not signal freed room.
 * -ETIMEDOUT: still full after timeout_ns;
 * -EMSGSIZE, -EPIPE, -EPROTO, -EBADF: as atomq_channel_send. */
int atomq_channel_send_wait(struct atomq_channel *ch, const void *buf, uint32_t len,
                            int64_t timeout_ns);

/* Zero-copy send, first phase: reserves room for a message of len bytes and
 * sets *buf to where its bytes go (8-byte aligned). The message is invisible
 * to the peer until atomq_channel_commit. A second reserve before commit
 * abandons the first. Errors: -EAGAIN, -EMSGSIZE, -EPIPE, -EPROTO, -EBADF
 * as atomq_channel_send. */
int atomq_channel_reserve(struct atomq_channel *ch, uint32_t len, void **buf);

/* Zero-copy send, second phase: publishes the reserved message. It does not
 * wake a sleeping peer: call atomq_channel_notify after a batch (it is what
 * atomq_channel_send does after every message).
 * -ENOENT: nothing is reserved; -EBADF: ch is closed. */
int atomq_channel_commit(struct atomq_channel *ch);

/* Wakes the peer if it sleeps in atomq_channel_recv_wait. Safe to call on a
 * closed channel (does nothing). */
void atomq_channel_notify(struct atomq_channel *ch);

/* Borrows the oldest message into *m without copying. Returns 1 with *m
 * filled, 0 when nothing is waiting. The message stays in the ring until
 * atomq_channel_release; receiving again before that returns the same one.
 * -EPIPE:  the peer closed its end and every message it sent was received;
 * -EPROTO: the peer corrupted the ring (an impossible index or record);
 * -EBADF:  ch is closed. */
int atomq_channel_recv(struct atomq_channel *ch, struct atomq_msg *m);

/* Like atomq_channel_recv, but sleeps on a futex in the shared ring while
 * nothing is waiting, up to timeout_ns (< 0: forever). Returns 1 with *m
 * filled, or:
 * -ETIMEDOUT: nothing arrived within timeout_ns;
 * -EINTR:     a signal arrived while sleeping;
 * -EPIPE, -EPROTO, -EBADF: as atomq_channel_recv. */
int atomq_channel_recv_wait(struct atomq_channel *ch, struct atomq_msg *m,
                            int64_t timeout_ns);

/* Gives the borrowed message's room back to the peer; m->data is invalid
 * afterwards.
 * -ENOENT: no message is borrowed; -EBADF: ch is closed. */
int atomq_channel_release(struct atomq_channel *ch);

/* Closes this end: marks it closed in the shared header (the peer's sends
 * fail with -EPIPE at once, its receives after draining what we sent),
 * wakes the peer if it sleeps, unmaps the memory and, on end 0, closes the
 * memfd. The memory itself goes when both ends have unmapped it and every
 * copy of the descriptor is closed. Closing a closed or zeroed channel does
 * nothing. */
void atomq_channel_close(struct atomq_channel *ch);

#ifdef __cplusplus
}
#endif

#endif /* ATOMQ_ATOMQ_H */
