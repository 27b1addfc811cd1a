/* atomq.h - the public agent API of libatomq.
 *
 * Agents are processes on the dataplane's host that talk to atomq through
 * shared memory instead of sockets: error text, direct channels between
 * two agents, and the agent connection with the whole mode set.
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

/* As atomq_channel_attach, for end 0 or 1 of a channel that atomqd made
 * with neither end claimed (atomq_channel_open, atomq_channel_join).
 * -EINVAL: end > 1; otherwise the errors of atomq_channel_attach. */
int atomq_channel_attach_end(struct atomq_channel *ch, int fd, unsigned end);

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


/* ------------------------------------------------------------------ agents
 *
 * An agent attaches to atomqd through its control socket (atomq_connect)
 * and gets its own rings in a memfd of its own: commands go to the
 * dataplane's workers, completions and deliveries come back, with no
 * syscall on the hot path and no access to anything but those rings.
 * docs/agents.md explains the calls with examples.
 *
 * Threads: a connection is used by one thread at a time (it has no lock);
 * open one connection per thread that needs one.
 *
 * Entities are named (up to 255 bytes, subject syntax) or anonymous and
 * are known by a 64-bit handle; calls that take `handle, name` use the
 * handle when it is not 0, else the name.
 *
 * Errors common to every call below (not repeated on each):
 *   -ECONNRESET  atomqd took the connection back (the agent broke its
 *                rings, or atomqd stopped): close and connect again; over
 *                UDP, the session's lease ran out (no call for
 *                --udp-lease-ms);
 *   -ETIMEDOUT   no answer within the call timeout (atomq_set_timeout;
 *                10 s by default), e.g. while the dataplane restarts;
 *   -EPROTO      the agent's own rings are corrupt;
 *   -ENOTSUP     a remote agent (udp://): a call, or an argument, that
 *                atomq datagrams do not carry (docs/agents.md).
 */

struct atomq;   /* a connection: opaque */

enum atomq_mode {
        ATOMQ_MODE_BROADCAST = 0, /* storage none, match routing, fan-out */
        ATOMQ_MODE_MAILBOX = 1,   /* a queue: send, fetch, ack; lives until its TTL */
        ATOMQ_MODE_LATEST = 2,    /* one value per key (subject): put, get, watch */
        ATOMQ_MODE_REQUEST = 3,   /* a one-shot reply inbox (atomq_request makes them) */
        ATOMQ_MODE_CHANNEL = 4,   /* two ends through the dataplane */
        ATOMQ_MODE_LOG = 5,       /* ordered offsets, read and commit per group */
};

enum atomq_storage {
        ATOMQ_STORAGE_DEFAULT = -1, /* the mode's (or the entity's, per message) */
        ATOMQ_STORAGE_NONE = 0,
        ATOMQ_STORAGE_MEM = 1,
        ATOMQ_STORAGE_DISK = 2,
};

/* Options of atomq_create; NULL or all zero: the mode's defaults. */
struct atomq_create_opts {
        uint32_t ttl_ms;     /* entity TTL; 0: none */
        int8_t storage;      /* enum atomq_storage; 0 here means DEFAULT unless storage_set */
        uint8_t storage_set; /* 1: storage applies */
        uint8_t ttl_idle;    /* 1: the TTL counts from the last use */
        uint8_t reserved;
        uint32_t max_msgs;   /* 0: no per-entity limit */
        uint32_t max_bytes;
};

/* Options of a message (send, publish, request); NULL: none. */
struct atomq_msg_opts {
        uint32_t ttl_ms;        /* per-message TTL; 0: none */
        int8_t storage;         /* enum atomq_storage, per message */
        uint8_t end;            /* channel: 1 + the sending end; 0: none */
        uint8_t reserved[2];
        uint64_t reply;         /* a handle replies go to; 0: none */
        const void *headers;    /* a NATS/1.0 header block, or NULL */
        uint32_t headers_len;
        uint32_t reserved2;
};

/* A message handed to the agent, borrowed from its ring: every pointer
 * stays valid until atomq_release() or the next atomq_recv(). */
struct atomq_delivery {
        const char *subject;
        uint32_t subject_len;
        uint32_t headers_len;
        const void *headers;
        const void *data;
        uint32_t len;
        uint32_t sid;           /* the subscription or watch it came through */
        uint64_t entity;        /* the entity it came from; 0: a subject publish */
        uint64_t seq;           /* its sequence number in that entity */
        uint64_t reply;         /* where a reply goes (atomq_reply); 0: none */
        uint16_t status;        /* 0; 503: no responders; 408: request timed out */
        uint16_t flags;         /* ATOMQ_DELIVERY_F_* */
        uint32_t reply_subject_len;
        const char *reply_subject; /* a NATS client's reply-to subject (publish
                                    * the answer there); NULL: none */
};
#define ATOMQ_DELIVERY_F_REDELIVERY 1u /* delivered before and not acked */

/* The messages of a fetch, get or read, borrowed from the ring: valid
 * until the next call on the connection or atomq_batch_release(). */
struct atomq_batch {
        uint32_t count;
        uint32_t bytes;
        const void *rec;        /* internal */
        uint32_t rec_len;
        uint32_t off;           /* internal: the walk */
        int worker;             /* internal */
        uint32_t reserved;
};

/* Connects to atomqd's control socket at path (NULL: $ATOMQ_CONTROL, else
 * /run/atomq/control.sock for root, $XDG_RUNTIME_DIR/atomq/control.sock
 * otherwise), attaches, maps the rings. *out is the connection.
 * -ENOENT, -ECONNREFUSED: no atomqd there; -EACCES: the socket is another
 * user's; -EPERM: atomqd refused this user; -EUSERS: every agent slot is
 * taken; -ENODEV: atomqd has no agent slots; -EPROTO: not an atomqd, or
 * an answer that does not add up; -ENOMEM; other -errno of socket,
 * connect, recvmsg, mmap.
 *
 * A remote agent: path (or $ATOMQ_CONTROL) "udp://A.B.C.D:PORT" opens a
 * session of atomq datagrams with atomqd's --udp port instead (an IPv4
 * address in numbers, no host name; "?timeout_ms=N" after the port sets the
 * call timeout from the start, the handshake included, else 10 s). The
 * calls below then run over UDP, as far as the protocol carries them;
 * docs/agents.md "Remote agents over UDP" lists what differs, and the
 * calls it has no operation for (create_many, destroy_many, lookup, get,
 * watch, unwatch, read, commit, channel_open, channel_join) return
 * -ENOTSUP. Errors of this form:
 *   -EINVAL     not such an address (a host name, no or a zero port, a
 *               port above 65535, IPv6, anything after the port but
 *               "?timeout_ms=N");
 *   -ETIMEDOUT  no answer within the timeout (no atomqd on that port, or
 *               the path loses everything);
 *   -EUSERS     atomqd's worker holds --udp-sessions sessions already;
 *   -EPROTO     an answer without a lease; -ENOMEM; -errno of socket. */
int atomq_connect(const char *path, struct atomq **out);

/* Detaches (atomqd drops the agent's subscriptions, watches and channel
 * ends; its mailboxes live on until their TTL), unmaps, frees. NULL is
 * fine. */
void atomq_close(struct atomq *a);

/* How long a call waits for its answer; < 0: forever. */
void atomq_set_timeout(struct atomq *a, int64_t timeout_ns);

/* The eventfd to poll(2)/epoll for deliveries. Arm it first with
 * atomq_poll_arm; it is readable once a delivery arrived after that. */
int atomq_fd(const struct atomq *a);

/* Arms the pollable fd. Returns 1 when a delivery already waits (do not
 * sleep: call atomq_recv), 0 when armed. Reads the fd clear. */
int atomq_poll_arm(struct atomq *a);

/* -- entities -- */

/* Creates an entity; name NULL: anonymous. *handle gets its handle.
 * -EINVAL: a bad mode, name or option; -EEXIST: the name is taken;
 * -ENOSPC: the table or name heap is full. */
int atomq_create(struct atomq *a, enum atomq_mode mode, const char *name,
                 const struct atomq_create_opts *o, uint64_t *handle);

/* Creates n named entities of one mode, pipelined (far faster than n
 * calls). handles[i] gets each handle, or 0 when that one failed; returns
 * how many were created, or a common error. */
int atomq_create_many(struct atomq *a, enum atomq_mode mode, const char *const *names,
                      uint32_t n, const struct atomq_create_opts *o, uint64_t *handles);

/* Destroys n entities by handle, pipelined. Returns how many went. */
int atomq_destroy_many(struct atomq *a, const uint64_t *handles, uint32_t n);

/* Destroys an entity (its messages, parties and timers go with it).
 * -ENOENT: no such name; -ESTALE: the handle's entity is gone;
 * -EINVAL: neither handle nor name. */
int atomq_destroy(struct atomq *a, uint64_t handle, const char *name);

/* The handle of the entity called name. -ENOENT: none. */
int atomq_lookup(struct atomq *a, const char *name, uint64_t *handle);

/* -- messages -- */

/* Gives a message to an entity: a mailbox, a log, a latest entity (under
 * key), a channel (o->end). key: the subject the message carries (the key
 * of a latest entity; may be NULL elsewhere). *seq (may be NULL) gets
 * its sequence number or log offset.
 * -ENOBUFS: the entity is full and refuses; -EMSGSIZE: too large for a
 * command (about 15.7 KiB); -ENOENT/-ESTALE: no such entity. */
int atomq_send(struct atomq *a, uint64_t handle, const char *name, const char *key,
               const void *data, uint32_t len, const struct atomq_msg_opts *o, uint64_t *seq);

/* Publishes to a subject (match routing: every subscription whose pattern
 * matches, one member per queue group). Asynchronous, like NATS: it
 * returns once the command is in the ring; atomq_flush waits for the
 * answers and reports the first error. -EINVAL: a bad subject (checked
 * here too); -EMSGSIZE; -ETIMEDOUT: the ring stayed full. */
int atomq_publish(struct atomq *a, const char *subject, const void *data, uint32_t len,
                  const struct atomq_msg_opts *o);

/* Waits until every asynchronous command has been answered. Returns 0, or
 * the first error one of them met since the last flush. */
int atomq_flush(struct atomq *a);

/* Subscribes to a pattern (tokens split by '.', '*' one token, '>' the
 * rest). group NULL: every match is delivered; else one member of the
 * group gets each. sid is echoed in each delivery. *sub gets the id for
 * atomq_unsubscribe. -EINVAL: a bad pattern; -EDQUOT: the agent's
 * subscription quota (--agent-max-subs) is reached; -ENOSPC: the
 * dataplane's subscriptions are exhausted. */
int atomq_subscribe(struct atomq *a, const char *pattern, const char *group, uint32_t sid,
                    uint64_t *sub);

/* -ENOENT: no such subscription; -EPERM: another agent's. */
int atomq_unsubscribe(struct atomq *a, uint64_t sub);

/* Takes the next delivery (subscriptions, watches, request replies),
 * waiting up to timeout_ns (0: not at all; < 0: forever). Returns 1 with
 * *d borrowed (see struct atomq_delivery), -EAGAIN when timeout_ns is 0
 * and nothing waits, -ETIMEDOUT, -EINTR. Releases the previous one. */
int atomq_recv(struct atomq *a, struct atomq_delivery *d, int64_t timeout_ns);

/* Gives the borrowed delivery back (its ring space is reused). */
void atomq_release(struct atomq *a);

/* Deliveries dropped because the agent's delivery ring was full. */
uint64_t atomq_dropped(const struct atomq *a);

/* -- mailbox, latest, log: pulling -- */

/* Takes up to max (1..64) messages from a mailbox or channel end (end: 1 +
 * the fetching end of a channel, else 0) into *b. A mailbox's messages
 * stay in flight until acked and come again after the ack wait. Returns
 * the count (0: none waiting). -EOPNOTSUPP: a log (use atomq_read). */
int atomq_fetch(struct atomq *a, uint64_t handle, const char *name, uint8_t end,
                unsigned max, struct atomq_batch *b);

/* Walks a batch: 1 with *d filled (borrowed like the batch), 0 at its end,
 * -EPROTO when the batch is corrupt. */
int atomq_batch_next(struct atomq_batch *b, struct atomq_delivery *d);

/* Gives a batch's ring space back before the next call would. */
void atomq_batch_release(struct atomq *a, struct atomq_batch *b);

/* Acknowledges (removes) message seq of a mailbox. -ENOENT: no such
 * message in flight. */
int atomq_ack(struct atomq *a, uint64_t handle, uint64_t seq);

/* The latest value under key: 1 with it in *b, -ENOENT when none. */
int atomq_get(struct atomq *a, uint64_t handle, const char *key, struct atomq_batch *b);

/* Becomes a party of an entity. A watcher (hold 0) is pushed each
 * message as it arrives (atomq_recv, with sid); a holder (hold 1) is told
 * nothing and pulls; it holds channel end `end` and keeps an auto-destroy
 * entity alive. -EBUSY: that channel end is held; -EDQUOT: quota. */
int atomq_watch(struct atomq *a, uint64_t handle, const char *name, uint32_t sid, int hold,
                uint8_t end);

/* Leaves: the party of sid. An auto-destroy entity (a channel) goes with
 * its last party. -ENOENT: not bound. */
int atomq_unwatch(struct atomq *a, uint64_t handle, const char *name, uint32_t sid);

/* Reads up to max (1..64) messages of a log: from offset (group NULL), or
 * from the group's committed cursor (created at the oldest offset).
 * Returns the count. -ENOSPC: no free cursor. */
int atomq_read(struct atomq *a, uint64_t handle, const char *group, uint64_t offset,
               unsigned max, struct atomq_batch *b);

/* Moves group's cursor to offset (the next it will read). -ERANGE: past
 * the end of the log. */
int atomq_commit(struct atomq *a, uint64_t handle, const char *group, uint64_t offset);

/* -- request / reply -- */

/* Publishes a request on subject with a one-shot reply inbox that lives
 * timeout_ms. The reply arrives through atomq_recv with sid and
 * entity == *inbox; with nobody listening a delivery of status 503 comes
 * at once, and one of status 408 when the time runs out. Returns the
 * number of responders reached (0: none). Responders must live on the
 * requester's worker for now (docs/agents.md, "Limits"). */
int atomq_request(struct atomq *a, const char *subject, const void *data, uint32_t len,
                  uint32_t timeout_ms, uint32_t sid, uint64_t *inbox);

/* -- direct channels through atomqd -- */

/* Opens a direct channel called name (1..63 printable bytes, no spaces)
 * and makes *ch its end 0: atomqd makes the memfd (ring_bytes per
 * direction, 0: ATOMQ_CHANNEL_RING_BYTES) and hands it over; the data path
 * is then the two agents' alone (atomq_channel_send/recv/close). atomqd
 * owns the lifecycle: when the other end's agent dies or detaches, or
 * ttl_ms (0: none) passes, this end's calls return -EPIPE once everything
 * sent has been read.
 * -EEXIST: the name is taken; -EINVAL: a bad name or ring size; -ENOSPC:
 * atomqd's --max-channels reached; errors of atomq_channel_attach_end. */
int atomq_channel_open(struct atomq *a, const char *name, uint32_t ring_bytes, uint32_t ttl_ms,
                       struct atomq_channel *ch);

/* Joins the channel another agent opened: *ch becomes its end 1.
 * -ENOENT: no such channel; -EBUSY: end 1 is taken (or its agent left). */
int atomq_channel_join(struct atomq *a, const char *name, struct atomq_channel *ch);

/* Answers a request: sends data to the reply handle of delivery d, or,
 * for a request from a NATS client or a UDP agent (a reply subject and no
 * handle), publishes it to the reply subject. -EINVAL: d carries neither;
 * -ESTALE: the requester gave up. */
int atomq_reply(struct atomq *a, const struct atomq_delivery *d, const void *data,
                uint32_t len);

#ifdef __cplusplus
}
#endif

#endif /* ATOMQ_ATOMQ_H */
