/* shm_vring.h - single-producer single-consumer ring of variable-length
 * records in shared memory, for frames.
 *
 * The ring lives in shared memory (struct shm_vring_hdr followed by
 * `capacity` data bytes); each side works through its own process-local view
 * (struct shm_vring) that keeps the geometry and a cached copy of the other
 * side's index, as shm_ring does. Every offset is masked with our own copy of
 * the mask and every length read from the data area is checked against our
 * own capacity, so a peer that scribbles over the shared memory can make us
 * report -EPROTO but never index outside the ring.
 *
 * head and tail are free-running 64-bit byte indexes (8-byte aligned); head
 * is written only by the producer, tail only by the consumer. A record is an
 * 8-byte header (payload length, type) followed by the payload, padded to a
 * multiple of 8. A record never wraps: when it does not fit before the end of
 * the data area, the producer fills the rest with a padding record (type
 * SHM_VRING_TYPE_PAD) and puts the record at offset 0. The consumer skips
 * padding; callers never see it.
 *
 * The record header is the commit, as in Aeron's ring buffers: its length
 * word carries SHM_VRING_COMMITTED and is stored last, with release. The
 * consumer polls the header at tail and never reads head, so a message costs
 * the transfer of the cache lines it occupies and nothing else; reading the
 * producer's head line for every message halved the throughput (measured in
 * docs/benchmarks.md). What makes a stale header from an earlier lap
 * impossible to mistake for a new one: before committing a record the
 * producer zeroes the header word that follows it, so the header at head is
 * always zero. head is still published after each commit, for a producer
 * that attaches later (a restarted dataplane) and for observers.
 *
 * Writing is two-phase for zero copy: shm_vring_reserve() hands out the
 * payload area, shm_vring_commit() publishes it by storing its header. Until
 * then the record is invisible to the consumer. Reading is shm_vring_peek()
 * (a pointer into the ring, valid until release) then shm_vring_release().
 *
 * Example (one thread each side):
 *      size_t len = shm_vring_bytes(1 << 16);
 *      shm_vring_init(&prod, mem, len, 1 << 16);
 *      shm_vring_attach(&cons, mem, len);
 *      void *p = shm_vring_reserve(&prod, 100);
 *      memcpy(p, frame, 100);
 *      shm_vring_commit(&prod, FRAME_TYPE);
 *      shm_vring_notify(&prod);
 *      struct shm_vring_rec rec;
 *      if (shm_vring_peek(&cons, &rec) == 1) {
 *              handle(rec.type, rec.data, rec.len);
 *              shm_vring_release(&cons);
 *      }
 */
#ifndef ATOMQ_SHM_VRING_H
#define ATOMQ_SHM_VRING_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "shm/shm_base.h"
#include "shm/shm_wake.h"

#define SHM_VRING_MAGIC 0x56514d41u /* "AMQV" little-endian */
#define SHM_VRING_VERSION 2
/* 64 bytes hold one record of up to 24 payload bytes; smaller is useless. */
#define SHM_VRING_CAPACITY_MIN 64u
/* Keeps every length and offset in 32 bits. */
#define SHM_VRING_CAPACITY_MAX (1u << 30)
/* Reserved record type marking padding at the end of the data area. */
#define SHM_VRING_TYPE_PAD UINT32_MAX
#define SHM_VRING_ALIGN 8u
/* Set in a record header's length word when the record is published. */
#define SHM_VRING_COMMITTED (1u << 31)

/* The shared part. Geometry is written once by shm_vring_init. */
struct shm_vring_hdr {
        uint32_t magic;
        uint16_t version;
        uint16_t reserved;
        uint32_t capacity;                      /* data bytes, a power of two */
        SHM_ALIGNED_LINE _Atomic uint64_t head; /* producer: next byte to write */
        SHM_ALIGNED_LINE _Atomic uint64_t tail; /* consumer: next byte to read */
        SHM_ALIGNED_LINE struct shm_wake wake;  /* a consumer sleeping on empty */
};
_Static_assert(sizeof(struct shm_vring_hdr) == 4 * SHM_CACHE_LINE, "vring header layout");
_Static_assert(offsetof(struct shm_vring_hdr, capacity) == 8, "vring capacity offset");
_Static_assert(offsetof(struct shm_vring_hdr, head) == 1 * SHM_CACHE_LINE, "head line");
_Static_assert(offsetof(struct shm_vring_hdr, tail) == 2 * SHM_CACHE_LINE, "tail line");
_Static_assert(offsetof(struct shm_vring_hdr, wake) == 3 * SHM_CACHE_LINE, "wake line");

/* The header in front of every record in the data area. Both words are read
 * once, as atomics, so a peer rewriting them cannot change a value between
 * our check and our use of it. */
struct shm_vring_rec_hdr {
        _Atomic uint32_t len;  /* SHM_VRING_COMMITTED | payload bytes (without
                                * header or padding); 0: not published yet */
        _Atomic uint32_t type; /* caller's type, or SHM_VRING_TYPE_PAD */
};
_Static_assert(sizeof(struct shm_vring_rec_hdr) == SHM_VRING_ALIGN, "record header layout");
_Static_assert(offsetof(struct shm_vring_rec_hdr, type) == 4, "record type offset");

/* One side's view. Each side (producer, consumer) keeps its own. */
struct shm_vring {
        struct shm_vring_hdr *hdr;
        uint8_t *data;
        uint64_t mask;
        uint32_t capacity;
        uint32_t rec_max;  /* largest payload: capacity / 2 - header */
        uint64_t head;     /* producer: own head (unused by the consumer) */
        uint64_t tail;     /* consumer: own tail; producer: cached tail */
        uint64_t resv_end; /* producer: head after the reserved record */
        uint32_t resv_off; /* producer: data offset of the reserved record's header */
        uint32_t resv_len; /* producer: payload bytes of the reserved record */
        uint32_t resv_pad; /* producer: padding bytes before it at the wrap, 0: none */
        uint64_t peek_end; /* consumer: tail after the peeked record */
        int reserve_err;   /* producer: why the last reserve returned NULL */
        /* A record is reserved (producer) / peeked (consumer). Not the ends
         * being 0: the indexes start where the shared header says, which
         * the peer writes, so an end can wrap to 0 (found by fuzzing). */
        bool reserved;
        bool peeked;
};

/* A record as the consumer sees it. data points into the ring and stays
 * valid until shm_vring_release(). The payload is shared memory the peer can
 * still write: copy it before validating its contents if the peer is not
 * trusted. */
struct shm_vring_rec {
        const void *data;
        uint32_t len;
        uint32_t type;
};

/* Bytes of shared memory a ring of this capacity needs, or 0 when the
 * capacity is invalid (see shm_vring_init). */
size_t shm_vring_bytes(uint32_t capacity);

/* Largest payload one record may carry: capacity / 2 - 8. A record of that
 * size always fits in an empty ring, wherever head stands. */
static inline uint32_t shm_vring_rec_max(const struct shm_vring *r)
{
        return r->rec_max;
}

/* Formats a ring in mem[0..len) and attaches `r` to it. Only the header and
 * the first record header are written: the rest of the data area may hold
 * anything (a reused buffer), the consumer never reads an unpublished header.
 * -EINVAL: capacity not a power of two, below SHM_VRING_CAPACITY_MIN or
 *          above SHM_VRING_CAPACITY_MAX; mem not cache-line aligned;
 * -ENOSPC: len smaller than shm_vring_bytes(capacity). */
int shm_vring_init(struct shm_vring *r, void *mem, size_t len, uint32_t capacity);

/* Attaches `r` to a ring another side formatted, checking its header. A
 * producer attaching after another one died (a restarted dataplane) resumes
 * after the last published record: the view's head walks over records the
 * dead producer committed but had not yet counted in head.
 * -EPROTO: bad magic or version, or head and tail impossible (misaligned or
 *          further apart than the capacity);
 * -EINVAL: bad capacity, mem not cache-line aligned, or len too short to
 *          hold the header;
 * -ENOSPC: the header claims more memory than len. */
int shm_vring_attach(struct shm_vring *r, void *mem, size_t len);

/* Producer: reserves room for a record of len payload bytes and returns a
 * pointer to its (8-byte aligned) payload, or NULL with the reason in
 * r->reserve_err:
 * -EMSGSIZE: len > shm_vring_rec_max(r);
 * -ENOBUFS:  not enough free room now (try again after the consumer moved);
 * -EPROTO:   the consumer's tail is impossible (a corrupt or hostile peer).
 * The record stays invisible until shm_vring_commit(). A second reserve
 * before commit abandons the first reservation. */
void *shm_vring_reserve(struct shm_vring *r, uint32_t len);

/* Producer: publishes the reserved record with the given type, which must
 * not be SHM_VRING_TYPE_PAD. Calling it without a reservation is a bug and
 * panics. Does not wake a sleeping consumer: see shm_vring_notify(). */
void shm_vring_commit(struct shm_vring *r, uint32_t type);

/* Producer: reserve, copy len bytes from buf, commit.
 * Returns 0, -EINVAL (type is SHM_VRING_TYPE_PAD), or an error of
 * shm_vring_reserve (-EMSGSIZE, -ENOBUFS, -EPROTO). */
int shm_vring_write(struct shm_vring *r, uint32_t type, const void *buf, uint32_t len);

/* Consumer: looks at the oldest record, skipping padding. Returns 1 and
 * fills *out, 0 when the ring is empty, or -EPROTO when a record header is
 * impossible (a nonzero length word without SHM_VRING_COMMITTED, a length
 * above rec_max or past the end of the data area, a padding record that does
 * not end the data area). Peeking again without release returns the same
 * record. */
int shm_vring_peek(struct shm_vring *r, struct shm_vring_rec *out);

/* Consumer: frees the record the last successful peek returned. Calling it
 * without one is a bug and panics. */
void shm_vring_release(struct shm_vring *r);

/* Producer: wakes a consumer sleeping in shm_vring_read_wait, if any; costs
 * a fence, and a syscall only when someone sleeps. Call it after a batch. */
static inline void shm_vring_notify(struct shm_vring *r)
{
        shm_wake_notify(&r->hdr->wake);
}

/* Consumer: like shm_vring_peek, but sleeps on the ring's futex word while
 * the ring is empty, up to timeout_ns (< 0: forever). Returns 1 with *out
 * filled, -ETIMEDOUT, -EINTR or -EPROTO. The producer must call
 * shm_vring_notify() after committing. */
int shm_vring_read_wait(struct shm_vring *r, struct shm_vring_rec *out,
                        int64_t timeout_ns);

#endif /* ATOMQ_SHM_VRING_H */
