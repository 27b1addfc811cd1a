/* dp_seglog.h - the disk atom's log: one append-only log per worker, kept
 * as segment files in a directory of its own, written through a private
 * io_uring, checksummed per record (CRC32C) and recovered after a crash.
 *
 * Files. A log owns a directory (created if missing, one level). Segments
 * are named by the sequence number of their first record, zero-padded to 20
 * digits: 00000000000000000001.seg. Other names are ignored. A segment takes
 * records until the next one would pass segment_bytes; that record starts a
 * new segment (a "roll"). A new segment file is preallocated to
 * segment_bytes with fallocate(FALLOC_FL_KEEP_SIZE), so its size grows with
 * the data and the space is reserved. The directory is flock()ed while open:
 * a second process gets -EBUSY.
 *
 * Record format (little-endian, every record starts 8-byte aligned):
 *
 *      off  size
 *        0     4  crc        CRC32C of bytes [4, len): header rest, key, payload
 *        4     4  len        40 + key_len + payload_len (before padding)
 *        8     2  type       the caller's record kind, passed back untouched
 *       10     2  flags      the caller's, passed back untouched
 *       12     2  key_len    the entity's name, so recovery can rebuild it
 *       14     1  version    DP_SEGLOG_VERSION
 *       15     1  reserved   0
 *       16     8  seq        per log, +1 per record, never 0
 *       24     8  entity     opaque to the log
 *       32     8  expiry_ns  absolute unix-epoch ns, 0 = none
 *       40        key bytes, then payload bytes, then zeros to a multiple of 8
 *
 * A record takes align8(len) bytes, at most record_bytes_max (-EMSGSIZE
 * above). There is no segment header: the first record's seq must equal the
 * file's name, and each record carries the format version. Zeros where a
 * record header should be mean "no more records" (a segment written with
 * O_DIRECT ends in zero padding up to 4096 bytes; a crash may leave zeros).
 *
 * Writes. dp_seglog_append only copies the record into an in-memory write
 * buffer; it never blocks and never enters the kernel. dp_seglog_poll, called
 * from the owner's loop, writes the buffered bytes at their file offset and
 * starts an fdatasync through the io_uring when the sync policy asks; later
 * polls reap it. Buffered logs write with pwrite(2) in the poll itself (a
 * page-cache copy), also while an fdatasync is in flight; a sync covers what
 * was written before it was submitted, and records written meanwhile wait
 * for the next one: that is the group commit. O_DIRECT logs submit the
 * write to the io_uring too, with the fdatasync linked behind it
 * (IOSQE_IO_LINK); one write (and its fdatasync) is in flight at a time and
 * records appended meanwhile collect in the next buffer. There are `buffers`
 * write buffers of buffer_bytes; when all hold unwritten records, append
 * returns -ENOBUFS and the caller polls and retries (back-pressure, not an
 * error of the log).
 *
 * I/O modes. DP_SEGLOG_IO_BUFFERED: page-cache writes of exactly the new
 * bytes. DP_SEGLOG_IO_DIRECT: O_DIRECT writes from 4096-aligned buffers of
 * whole 4096-byte blocks; the tail of the last block is zero padding, and the
 * next write starts at that block again, re-writing its records (the same
 * bytes, so a torn re-write cannot damage them) followed by the new ones.
 * If the filesystem refuses O_DIRECT, or needs more than 4096-byte
 * alignment, open fails with -EINVAL and says so in dp_seglog_error(): it
 * does not fall back to buffered writes behind the caller's back.
 *
 * Sync policies (group commit). The log tracks written_seq (every record up
 * to it is written) and durable_seq (every record up to it survives a power
 * loss), and calls on_durable(durable_arg, durable_seq) from dp_seglog_poll
 * when the latter moves.
 *   DP_SEGLOG_SYNC_ALWAYS  each poll writes what was appended and syncs it:
 *                          records are durable once their fdatasync completed.
 *   DP_SEGLOG_SYNC_BATCH   write and sync once batch_us have passed since a
 *                          poll first saw an undurable record, or once
 *                          batch_bytes of record bytes are undurable. Full
 *                          buffers are written (not synced) at once.
 *   DP_SEGLOG_SYNC_NONE    each poll writes what was appended, never syncs
 *                          for durability: durable_seq is written_seq.
 * A record appended with DP_SEGLOG_APPEND_SYNC makes the next poll write and
 * sync everything up to it, whatever the policy.
 *
 * Rolls and crash consistency. Before the first write to a new segment, the
 * previous one gets an fdatasync (under every policy, `none` included: once
 * per segment) and the new file's directory entry an fsync. So after any
 * crash only the last segment can be torn, and recovery can tell a torn tail
 * (last segment: cut it off) from damage (any other segment: refuse).
 *
 * Recovery (dp_seglog_open on a directory with segments). Segments are read
 * in sequence order through one write buffer (memory stays bounded: records
 * are at most record_bytes_max, which a buffer always holds). Each record's
 * header, CRC and sequence (exactly the previous + 1, starting at the file's
 * name) are checked and replay() gets every valid one, in order. In the last
 * segment the first bad, short or torn record ends the log: the file is
 * truncated there (ftruncate + fdatasync) and appends continue after the last
 * good record. In any other segment a bad record fails open with -EBADMSG,
 * naming the file and offset in dp_seglog_error(). So does a record whose
 * CRC is right but whose sequence is wrong, in any segment: that is not a
 * torn write, and cutting it off would throw away good data. Reopen with a
 * record_bytes_max at least as large as the log was written with: a longer
 * record reads as damage.
 *
 * Limits. dir_bytes_max bounds the disk space of the log: the finished
 * segments' sizes (rounded up to 4096-byte blocks) plus the whole
 * preallocated active segment. Only a roll can pass it, so an append that
 * needs a roll the limit does not allow returns -ENOSPC and writes nothing;
 * smaller records that still fit in the active segment are accepted. A real
 * write or fdatasync error (ENOSPC, EIO, EFBIG) puts the log in a failed
 * state: appends and polls return that error from then on, nothing is
 * re-written or truncated, so what was durable stays durable. The caller
 * closes the log and may reopen it (recovery cuts any torn tail).
 *
 * Reclaiming. dp_seglog_drop_before unlinks whole segments whose records are
 * all below a sequence; which records are still live is the caller's call.
 * To compact, the caller reads a segment with the iterator and re-appends
 * its live records, then drops it.
 *
 * Threads. dp_seglog_open may run on any thread; the first poll (or close)
 * binds the io_uring to its caller (IORING_SETUP_SINGLE_ISSUER where the
 * kernel has it), and every later call belongs on that thread.
 *
 *      struct dp_seglog *log = calloc(1, dp_seglog_size());
 *      struct dp_seglog_config cfg;
 *      dp_seglog_config_default(&cfg);
 *      cfg.dir = "/var/lib/atomq/w0";
 *      cfg.on_durable = acked, cfg.durable_arg = worker;
 *      if (dp_seglog_open(log, &cfg, rebuild_entity, shard) < 0)
 *              log_error(dp_seglog_error(log));
 *      dp_seglog_append(log, &rec, 0, &seq);        // in the loop
 *      work += dp_seglog_poll(log, now_ns);         // acked() runs here
 *      dp_seglog_close(log);
 */
#ifndef ATOMQ_DP_SEGLOG_H
#define ATOMQ_DP_SEGLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DP_SEGLOG_VERSION 1
#define DP_SEGLOG_HDR_BYTES 40u
/* O_DIRECT block and buffer alignment: the page size, and the logical block
 * of every disk we target (512 or 4096). */
#define DP_SEGLOG_ALIGN 4096u
/* A 1 MiB payload with the longest key (u16) and the header, padded. */
#define DP_SEGLOG_RECORD_BYTES_DEFAULT ((1u << 20) + (1u << 16) + 64u)
#define DP_SEGLOG_RECORD_BYTES_MAX (64u << 20)
#define DP_SEGLOG_SEGMENT_BYTES_DEFAULT (64ull << 20)
#define DP_SEGLOG_SEGMENT_BYTES_MAX (1ull << 40)
#define DP_SEGLOG_BUFFERS_MAX 16u
#define DP_SEGLOG_SEGMENTS_LIMIT (1u << 20)
/* "%020" PRIu64 ".seg" and its NUL. */
#define DP_SEGLOG_NAME_BYTES 25u

/* dp_seglog_append's opts. */
#define DP_SEGLOG_APPEND_SYNC 1u  /* make it durable at the next poll */

/* A record's header as it sits on disk (all fields little-endian). */
struct dp_seglog_rec_hdr {
        uint32_t crc;
        uint32_t len;
        uint16_t type;
        uint16_t flags;
        uint16_t key_len;
        uint8_t version;
        uint8_t reserved;
        uint64_t seq;
        uint64_t entity;
        uint64_t expiry_ns;
};
_Static_assert(sizeof(struct dp_seglog_rec_hdr) == DP_SEGLOG_HDR_BYTES, "record header");
_Static_assert(__builtin_offsetof(struct dp_seglog_rec_hdr, len) == 4, "len after crc");
_Static_assert(__builtin_offsetof(struct dp_seglog_rec_hdr, key_len) == 12, "key_len");
_Static_assert(__builtin_offsetof(struct dp_seglog_rec_hdr, version) == 14, "version");
_Static_assert(__builtin_offsetof(struct dp_seglog_rec_hdr, seq) == 16, "seq");
_Static_assert(__builtin_offsetof(struct dp_seglog_rec_hdr, expiry_ns) == 32, "expiry");

/* A record: what append takes (seq is ignored) and what replay and the
 * iterator give (key and payload point into the log's read buffer and are
 * valid only until the callback returns or the next iter call). */
struct dp_seglog_rec {
        uint64_t seq;
        uint64_t entity;
        uint64_t expiry_ns;
        const void *key;
        const void *payload;
        uint32_t payload_len;
        uint16_t key_len;
        uint16_t type;
        uint16_t flags;
};

enum dp_seglog_io {
        DP_SEGLOG_IO_BUFFERED = 0,
        DP_SEGLOG_IO_DIRECT = 1,
};

enum dp_seglog_sync {
        DP_SEGLOG_SYNC_ALWAYS = 0,
        DP_SEGLOG_SYNC_BATCH = 1,
        DP_SEGLOG_SYNC_NONE = 2,
};

/* Recovery calls it for each valid record, in order. A negative return
 * stops recovery: dp_seglog_open returns it. */
typedef int dp_seglog_replay_fn(void *arg, const struct dp_seglog_rec *rec);

/* durable_seq moved up to this (from dp_seglog_poll or dp_seglog_close).
 * It may call dp_seglog_append (-EBADF while the log closes), not poll,
 * close or drop_before. */
typedef void dp_seglog_durable_fn(void *arg, uint64_t durable_seq);

struct dp_seglog_config {
        const char *dir;             /* the log's directory; only read by open */
        enum dp_seglog_io io;
        enum dp_seglog_sync sync;
        uint64_t segment_bytes;      /* >= record_bytes_max */
        uint64_t dir_bytes_max;      /* 0: no limit; else >= segment_bytes */
        uint32_t record_bytes_max;   /* padded record, multiple of 8, <= DP_SEGLOG_RECORD_BYTES_MAX */
        uint32_t buffer_bytes;       /* multiple of 4096, >= record_bytes_max + 4096 */
        uint32_t buffers;            /* 2 .. DP_SEGLOG_BUFFERS_MAX */
        uint32_t segments_max;       /* 2 .. DP_SEGLOG_SEGMENTS_LIMIT */
        uint32_t batch_us;           /* DP_SEGLOG_SYNC_BATCH's interval */
        uint64_t batch_bytes;        /* ... and its byte trigger */
        uint64_t first_seq;          /* of a new log, >= 1 */
        uint32_t close_timeout_ms;   /* close's wait for the I/O in flight */
        dp_seglog_durable_fn *on_durable;  /* NULL: no calls */
        void *durable_arg;
};

/* A segment, as dp_seglog_segments lists it. */
struct dp_seglog_segment {
        uint64_t first_seq;
        uint64_t last_seq;           /* first_seq - 1 while it holds no record */
        uint64_t bytes;              /* record bytes appended to it */
        uint64_t written_bytes;      /* of those, on disk (their write completed) */
};

/* Counters: one writer, the owner thread. */
struct dp_seglog_stats {
        uint64_t appends;
        uint64_t append_bytes;       /* padded record bytes */
        uint64_t writes;             /* write requests submitted: the flushes */
        uint64_t write_bytes;        /* bytes written, re-written blocks and padding included */
        uint64_t syncs;              /* fdatasyncs completed */
        uint64_t sync_ns_max;        /* longest submit-to-reap of a write+sync, in poll now_ns */
        uint64_t rolls;              /* segments started after open */
        uint64_t dropped_segments;
        uint64_t refused_size;       /* appends refused: -EMSGSIZE */
        uint64_t refused_space;      /* -ENOSPC: dir_bytes_max or segments_max */
        uint64_t refused_busy;       /* -ENOBUFS: every buffer waits for the disk */
        uint64_t errors;             /* I/O errors (the first one fails the log) */
        uint64_t recovered_records;
        uint64_t recovered_segments;
        uint64_t truncated_bytes;    /* cut off the last segment by recovery */
};

/* Why open failed, or why the log is failed. */
struct dp_seglog_error {
        int rc;                      /* 0: no error */
        const char *what;            /* a static sentence, never NULL */
        char file[DP_SEGLOG_NAME_BYTES + 7]; /* a segment's name in dir, or "" */
        uint64_t offset;             /* the bad record's offset in file */
};

/* Reads one segment's records in order (for compaction). Fields are private. */
struct dp_seglog_iter {
        int fd;
        uint64_t size;               /* bytes to read: the written extent */
        uint64_t base;               /* file offset of buf[0] */
        uint8_t *buf;
        size_t cap;
        size_t have;
        size_t at;
        uint64_t next_seq;
        uint64_t last_seq;
        uint32_t record_bytes_max;
};

struct dp_seglog; /* defined in dp_seglog_pvt.h */

/* Buffered I/O, batch sync (1 ms or 1 MiB), 64 MiB segments, no directory
 * limit, records up to DP_SEGLOG_RECORD_BYTES_DEFAULT, 4 buffers of 2 MiB,
 * 4096 segments, first sequence 1, 5 s close timeout. dir stays NULL. */
void dp_seglog_config_default(struct dp_seglog_config *cfg);

/* Bytes to allocate for a struct dp_seglog (opaque). */
size_t dp_seglog_size(void);

/* Opens (creating the directory and the first segment if needed) and
 * recovers the log, calling replay (may be NULL) for each record.
 * -EINVAL: bad config, or O_DIRECT refused or misaligned for this filesystem;
 * -EBUSY: another process has the directory open; -EBADMSG: a damaged
 * record outside the torn tail, or segments that do not follow on;
 * -E2BIG: more segment files than segments_max; -ENOMEM; io_uring's errors
 * (-ENOSYS, -EPERM); -errno from mkdir, open, read, ftruncate, fdatasync;
 * replay's own negative return. On error dp_seglog_error() says what and
 * where, nothing stays open, and the struct may be opened again. */
int dp_seglog_open(struct dp_seglog *log, const struct dp_seglog_config *cfg,
                   dp_seglog_replay_fn *replay, void *arg);

/* The reason for open's error or for the failed state (rc 0 when none). */
const struct dp_seglog_error *dp_seglog_error(const struct dp_seglog *log);

/* Copies a record into the write buffer; *seq (may be NULL) gets its
 * sequence number. opts: 0 or DP_SEGLOG_APPEND_SYNC. Never blocks.
 * -EMSGSIZE: above record_bytes_max; -ENOSPC: it needs a new segment that
 * dir_bytes_max or segments_max does not allow (nothing written);
 * -ENOBUFS: every write buffer waits for the disk: poll, then retry;
 * -EINVAL: bad opts, or a NULL key or payload with a length;
 * -EBADF: not open; the failed state's error. */
int dp_seglog_append(struct dp_seglog *log, const struct dp_seglog_rec *rec, unsigned opts,
                     uint64_t *seq);

/* Reaps completions, starts the next write or sync the policy asks for, and
 * reports durability through on_durable. now_ns: CLOCK_MONOTONIC (the batch
 * interval and sync latency are measured in it). Returns the work done (>0),
 * 0 when idle, or the failed state's error (<0); -EBADF: not open. */
int dp_seglog_poll(struct dp_seglog *log, uint64_t now_ns);

/* Has the kernel signal eventfd fd at each completion of the log's I/O, so
 * a caller asleep elsewhere (another ring watching fd) wakes for it. On the
 * owner's thread (it binds the ring). -EBADF: not open; io_uring's -errno. */
int dp_seglog_set_eventfd(struct dp_seglog *log, int fd);

/* Sleeps until the I/O in flight completes or wait_ns pass (at most); the
 * next poll reaps it. Returns at once when nothing is in flight. For a
 * caller that must not go on before the log is where it asked. */
void dp_seglog_wait(struct dp_seglog *log, uint64_t wait_ns);

/* When the next poll has something to do: 0 while I/O is in flight or can
 * start, the batch deadline while one waits, UINT64_MAX when idle. */
uint64_t dp_seglog_next_ns(const struct dp_seglog *log);

/* The next sequence append will give; the last written; the last durable. */
uint64_t dp_seglog_next_seq(const struct dp_seglog *log);
uint64_t dp_seglog_written_seq(const struct dp_seglog *log);
uint64_t dp_seglog_durable_seq(const struct dp_seglog *log);

const struct dp_seglog_stats *dp_seglog_stats(const struct dp_seglog *log);

/* Copies up to max segments, oldest first, into out; returns how many the
 * log has (which may be more than max). */
uint32_t dp_seglog_segments(const struct dp_seglog *log, struct dp_seglog_segment *out,
                            uint32_t max);

/* Unlinks, oldest first, each whole segment whose records all have a
 * sequence below seq, stopping at the first that has not (and never taking
 * the segment being written). Blocks on unlink and one directory fsync: call
 * it from a maintenance point, not per message. Returns the number dropped;
 * -errno from unlinkat or fsync (segments unlinked before it stay dropped);
 * -EBADF: not open. */
int dp_seglog_drop_before(struct dp_seglog *log, uint64_t seq);

/* Bytes of buffer an iterator needs: record_bytes_max. */
size_t dp_seglog_iter_bytes(const struct dp_seglog *log);

/* Starts reading the segment whose first sequence is seg_first, up to what
 * is written (records <= dp_seglog_written_seq), with the caller's buffer.
 * Reads block (pread): maintenance only. -ENOENT: no such segment;
 * -EINVAL: len below dp_seglog_iter_bytes; -EBADF: not open; -errno from
 * openat. */
int dp_seglog_iter_init(struct dp_seglog_iter *it, const struct dp_seglog *log,
                        uint64_t seg_first, void *buf, size_t len);

/* The next record in *rec: 1, or 0 at the end. -EBADMSG: a written record
 * does not read back; -errno from pread. */
int dp_seglog_iter_next(struct dp_seglog_iter *it, struct dp_seglog_rec *rec);

void dp_seglog_iter_fini(struct dp_seglog_iter *it);

/* Writes and fdatasyncs every record appended so far, whatever the policy,
 * and waits for it (up to close_timeout_ms; on_durable is called as usual).
 * 0; -ETIMEDOUT; the failed state's error; -EBADF: not open. Blocks: for a
 * log being prepared (compaction), not on the path of a request. */
int dp_seglog_sync_now(struct dp_seglog *log);

/* Changes the sync policy, batch interval and on_durable callback of an
 * open log (one opened with a provisional policy, then adopted). What is
 * durable at the call is not reported to the new callback. -EINVAL: bad
 * sync; -EBADF: not open. */
int dp_seglog_set_policy(struct dp_seglog *log, enum dp_seglog_sync sync, uint32_t batch_us,
                         dp_seglog_durable_fn *on_durable, void *durable_arg);

/* Writes what is buffered (and syncs it, unless the policy is `none`),
 * waits up to close_timeout_ms for the I/O in flight, and releases the
 * files, the ring and the buffers. Returns 0; the failed state's error;
 * -ETIMEDOUT when the I/O did not finish (the buffers are then leaked, not
 * freed under the kernel). Closing a log that is not open returns 0. */
int dp_seglog_close(struct dp_seglog *log);

#endif /* ATOMQ_DP_SEGLOG_H */
