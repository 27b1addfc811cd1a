/* shm_mpsc.h - multi-producer single-consumer ring of variable-length
 * records in shared memory, for worker command rings.
 *
 * Many producers (threads or processes) feed one consumer. The layout is
 * shm_vring's: a shared header (struct shm_mpsc_hdr) followed by `capacity`
 * data bytes holding 8-byte aligned records, each an 8-byte header (a length
 * word, a type) and a payload; a record never wraps, the end of the data
 * area is filled with a padding record instead.
 *
 * Protocol:
 *  - A producer claims [head, head + bytes) with a CAS on the shared head;
 *    the bytes include the padding when the record would not fit before the
 *    end, so padding and record are claimed at once. The producer publishes
 *    the padding at once and the record at commit, each by a release store
 *    of its header's length word. A zero length word means "not committed
 *    yet": records become visible one by one, in claim order, whatever the
 *    order of the commits.
 *  - The consumer reads the length word at tail with an acquire load and
 *    stops at a zero. After consuming a record it zeroes all its bytes (any
 *    8-byte word of them may hold a header on the next lap), then advances
 *    tail with a release store. So the area past head is always zero and a
 *    stale header is never taken for a committed one.
 *  - Every length, index and header read from shared memory is checked
 *    against our own geometry: a corrupt one is reported as -EPROTO.
 *
 * Producer calls only read the view (struct shm_mpsc), so the threads of one
 * process may share one; the consumer's view is its own. The data area must
 * start zeroed: shm_mpsc_init zeroes it.
 *
 * Known limit: a producer that dies between reserve and commit stalls the
 * consumer at that record for good; the owner of the ring must detect that
 * (no progress with a non-zero head - tail) and reformat the ring.
 *
 * Example:
 *      shm_mpsc_init(&cons, mem, len, 1 << 16);        // consumer
 *      shm_mpsc_attach(&prod, mem, len);               // each producer process
 *      shm_mpsc_write(&prod, CMD_CREATE, &cmd, sizeof(cmd));
 *      shm_mpsc_notify(&prod);
 *      n = shm_mpsc_read_burst(&cons, apply_cmd, worker, DP_CMD_DRAIN_MAX);
 */
#ifndef ATOMQ_SHM_MPSC_H
#define ATOMQ_SHM_MPSC_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "shm/shm_base.h"
#include "shm/shm_wake.h"

#define SHM_MPSC_MAGIC 0x4d514d41u /* "AMQM" little-endian */
#define SHM_MPSC_VERSION 2
/* 64 bytes hold one record of up to 24 payload bytes; smaller is useless. */
#define SHM_MPSC_CAPACITY_MIN 64u
/* Keeps lengths below bit 31, which marks a committed record. */
#define SHM_MPSC_CAPACITY_MAX (1u << 30)
/* Reserved record type marking padding at the end of the data area. */
#define SHM_MPSC_TYPE_PAD UINT32_MAX
/* Set in a header's length word when the record is committed. */
#define SHM_MPSC_COMMITTED (1u << 31)
#define SHM_MPSC_ALIGN 8u
/* A producer gives up claiming room after this many lost CAS races, so a
 * producer that floods the ring cannot hold another in a loop forever. */
#define SHM_MPSC_RESERVE_TRIES_MAX 4096u

/* The shared part. Geometry is written once by shm_mpsc_init. */
struct shm_mpsc_hdr {
        uint32_t magic;
        uint16_t version;
        uint16_t reserved;
        uint32_t capacity;                      /* data bytes, a power of two */
        SHM_ALIGNED_LINE _Atomic uint64_t head; /* producers: next byte to claim */
        SHM_ALIGNED_LINE _Atomic uint64_t tail; /* consumer: next byte to read */
        _Atomic uint64_t release_to;            /* consumer: end of the release under way */
        SHM_ALIGNED_LINE struct shm_wake wake;  /* a consumer sleeping on empty */
};
_Static_assert(sizeof(struct shm_mpsc_hdr) == 4 * SHM_CACHE_LINE, "mpsc header layout");
_Static_assert(offsetof(struct shm_mpsc_hdr, capacity) == 8, "mpsc capacity offset");
_Static_assert(offsetof(struct shm_mpsc_hdr, head) == 1 * SHM_CACHE_LINE, "head line");
_Static_assert(offsetof(struct shm_mpsc_hdr, tail) == 2 * SHM_CACHE_LINE, "tail line");
_Static_assert(offsetof(struct shm_mpsc_hdr, wake) == 3 * SHM_CACHE_LINE, "wake line");

/* The header in front of every record in the data area. */
struct shm_mpsc_rec_hdr {
        _Atomic uint32_t len_word; /* payload bytes | SHM_MPSC_COMMITTED; 0: not committed */
        _Atomic uint32_t type;     /* caller's type, or SHM_MPSC_TYPE_PAD */
};
_Static_assert(sizeof(struct shm_mpsc_rec_hdr) == SHM_MPSC_ALIGN, "record header layout");
_Static_assert(offsetof(struct shm_mpsc_rec_hdr, type) == 4, "record type offset");

/* One side's view. Producers only read it; the consumer keeps its own. */
struct shm_mpsc {
        struct shm_mpsc_hdr *hdr;
        uint8_t *data;
        uint64_t mask;
        uint32_t capacity;
        uint32_t rec_max;  /* largest payload: capacity / 2 - header */
        uint64_t head;     /* consumer: cached head, to bounds-check records */
        uint64_t tail;     /* consumer: own tail */
        uint64_t peek_end; /* consumer: tail after the peeked record */
        bool peeked;       /* a record is peeked (not peek_end == 0: it can wrap to 0) */
};

/* A claimed, not yet committed record: the token shm_mpsc_commit needs. */
struct shm_mpsc_resv {
        void *data;   /* the payload to fill, 8-byte aligned */
        uint32_t len; /* payload bytes */
        uint32_t off; /* data-area offset of the record header */
};

/* A record as the consumer sees it. data points into the ring and stays
 * valid until the record is released. The payload is shared memory a
 * producer can still write: copy it before validating its contents when the
 * producers are not trusted. */
struct shm_mpsc_rec {
        const void *data;
        uint32_t len;
        uint32_t type;
};

/* Bytes of shared memory a ring of this capacity needs, or 0 when the
 * capacity is invalid (see shm_mpsc_init). */
size_t shm_mpsc_bytes(uint32_t capacity);

/* Largest payload one record may carry: capacity / 2 - 8. */
static inline uint32_t shm_mpsc_rec_max(const struct shm_mpsc *r)
{
        return r->rec_max;
}

/* Formats a ring in mem[0..len), zeroing its data area, and attaches `r`.
 * -EINVAL: capacity not a power of two, below SHM_MPSC_CAPACITY_MIN or above
 *          SHM_MPSC_CAPACITY_MAX; mem not cache-line aligned;
 * -ENOSPC: len smaller than shm_mpsc_bytes(capacity). */
int shm_mpsc_init(struct shm_mpsc *r, void *mem, size_t len, uint32_t capacity);

/* Attaches `r` to a ring another side formatted, checking its header.
 * -EPROTO: bad magic or version, or head and tail impossible (misaligned or
 *          further apart than the capacity);
 * -EINVAL: bad capacity, mem not cache-line aligned, or len too short to
 *          hold the header;
 * -ENOSPC: the header claims more memory than len. */
int shm_mpsc_attach(struct shm_mpsc *r, void *mem, size_t len);

/* Producer: claims room for a record of len payload bytes and fills *resv.
 * Returns 0, or
 * -EMSGSIZE: len > shm_mpsc_rec_max(r);
 * -ENOBUFS:  not enough free room now;
 * -EBUSY:    lost SHM_MPSC_RESERVE_TRIES_MAX CAS races in a row;
 * -EPROTO:   head or tail impossible (a corrupt or hostile peer).
 * The record stays invisible, and holds back every later record, until
 * shm_mpsc_commit(): commit soon, and always. */
int shm_mpsc_reserve(const struct shm_mpsc *r, uint32_t len, struct shm_mpsc_resv *resv);

/* Producer: publishes the claimed record with the given type, which must
 * not be SHM_MPSC_TYPE_PAD. Does not wake the consumer: see
 * shm_mpsc_notify(). */
void shm_mpsc_commit(const struct shm_mpsc *r, const struct shm_mpsc_resv *resv,
                     uint32_t type);

/* Producer: reserve, copy len bytes from buf, commit.
 * Returns 0, -EINVAL (type is SHM_MPSC_TYPE_PAD), or an error of
 * shm_mpsc_reserve (-EMSGSIZE, -ENOBUFS, -EBUSY, -EPROTO). */
int shm_mpsc_write(const struct shm_mpsc *r, uint32_t type, const void *buf, uint32_t len);

/* Consumer: looks at the oldest record, skipping padding. Returns 1 and
 * fills *out, 0 when the ring is empty or the oldest record is not committed
 * yet, or -EPROTO when a header is impossible (a non-zero length word without
 * the committed bit, a length past the end of the data area or past head, a
 * padding record that does not end the data area, a head further than the
 * capacity ahead). Peeking again without release returns the same record. */
int shm_mpsc_peek(struct shm_mpsc *r, struct shm_mpsc_rec *out);

/* Consumer: zeroes the record the last successful peek returned and frees
 * it. Calling it without one is a bug and panics. */
void shm_mpsc_release(struct shm_mpsc *r);

/* Consumer taking over from a consumer that was killed (call it once, from
 * the new consumer, before reading). A release zeroes the consumed bytes
 * before it moves tail; a consumer killed between the two left zeroed
 * bytes that no producer will ever commit, and the ring would wait on them
 * for good. The release journals its end in release_to first, so this
 * finishes it. Returns 1 when it finished one, 0 when there was none, or
 * -EPROTO when release_to is impossible (nothing is changed then). */
int shm_mpsc_recover(struct shm_mpsc *r);

/* Consumer: hands up to max committed records, oldest first, to fn, then
 * frees them all with one store of tail. fn must not keep rec->data.
 * Returns the number handled (0 when none is ready), or -EPROTO as
 * shm_mpsc_peek when the first record is impossible; an impossible record
 * after good ones ends the burst and is reported by the next call. */
int shm_mpsc_read_burst(struct shm_mpsc *r,
                        void (*fn)(void *arg, const struct shm_mpsc_rec *rec),
                        void *arg, unsigned max);

/* Producer: wakes a consumer sleeping in shm_mpsc_read_wait, if any; costs
 * a fence, and a syscall only when someone sleeps. */
static inline void shm_mpsc_notify(const struct shm_mpsc *r)
{
        shm_wake_notify(&r->hdr->wake);
}

/* Consumer: like shm_mpsc_peek, but sleeps on the ring's futex word while
 * no record is ready, up to timeout_ns (< 0: forever). Returns 1 with *out
 * filled, -ETIMEDOUT, -EINTR or -EPROTO. Every producer must call
 * shm_mpsc_notify() after committing. */
int shm_mpsc_read_wait(struct shm_mpsc *r, struct shm_mpsc_rec *out, int64_t timeout_ns);

#endif /* ATOMQ_SHM_MPSC_H */
