/* dp_seglog_pvt.h - the segment log's insides, shared by dp_seglog.c (open,
 * append, the write path) and dp_seglog_recover.c (segment files, reading
 * them back, recovery, reclaiming). Not for other modules.
 *
 * Write buffers form a ring, used in order: wbuf is the oldest busy one
 * (the next to write, or the one being written), fbuf the one appends fill;
 * the nbusy buffers from wbuf to fbuf are busy, the rest free. A buffer is
 * written once, whole, then freed; writing the fill buffer first "seals" it
 * and opens the next as the fill buffer. Every buffer between wbuf and fbuf
 * holds at least one record.
 */
#ifndef ATOMQ_DP_SEGLOG_PVT_H
#define ATOMQ_DP_SEGLOG_PVT_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#include "dataplane/dp_seglog.h"
#include "shm/shm_base.h"

#define DP_SEGLOG_NOBUF UINT32_MAX

/* io_uring user_data: what a completion is for. */
enum dp_seglog_ud {
        DP_SEGLOG_UD_WRITE = 1,
        DP_SEGLOG_UD_SYNC = 2,
};

struct dp_seglog_buf {
        uint8_t *mem;            /* buffer_bytes, DP_SEGLOG_ALIGN-aligned */
        uint64_t seg_first;      /* the segment it goes to */
        uint64_t off;            /* file offset of mem[0]; aligned under O_DIRECT */
        uint32_t len;            /* bytes in mem */
        uint32_t keep;           /* leading bytes already on disk, re-written (O_DIRECT) */
        uint64_t last_seq;       /* its last record, 0: none yet */
        uint64_t rec_bytes;      /* record bytes it adds */
};

/* The one io_uring job in flight: a write (O_DIRECT) and/or an fdatasync.
 * Buffered writes are not jobs: they run inline, also while a sync job is
 * in flight. */
struct dp_seglog_job {
        bool active;
        bool sync;               /* an fdatasync follows the write (or is the job) */
        uint64_t cover_seq;      /* the sync makes the records up to here durable */
        uint64_t cover_rec_bytes;  /* ... and written_rec_bytes up to here */
        uint32_t buf;            /* buffer written, DP_SEGLOG_NOBUF: a lone sync */
        uint32_t pos;            /* bytes of it written so far */
        uint32_t end;            /* bytes to write: len, padded under O_DIRECT */
        uint32_t pending;        /* completions awaited this round */
        int wres;                /* the write's error this round, 0 if none */
        int sres;                /* the fdatasync's result this round */
        uint64_t start_ns;
};

struct dp_seglog {
        struct dp_seglog_config cfg;     /* dir is NULL after open */
        bool open;
        bool closing;
        int failed;                      /* 0, or the error that stopped the log */
        int dirfd;                       /* O_DIRECTORY, flock()ed */
        int wfd;                         /* the segment being written */
        uint64_t wseg_first;
        bool wseg_dirty;                 /* written since its last fdatasync */

        struct io_uring ring;
        bool ring_ready;
        bool ring_disabled;              /* IORING_SETUP_R_DISABLED, not enabled yet */
        bool submit_again;               /* the last submit was refused for now */

        struct dp_seglog_buf bufs[DP_SEGLOG_BUFFERS_MAX];
        uint32_t wbuf;
        uint32_t fbuf;
        uint32_t nbusy;
        struct dp_seglog_job job;

        struct dp_seglog_segment *segs;  /* segments_max, oldest first; the last is active */
        uint32_t nsegs;
        uint64_t closed_disk_bytes;      /* block-rounded sizes of all but the active one */

        uint64_t next_seq;
        uint64_t written_seq;
        uint64_t synced_seq;             /* covered by a completed fdatasync */
        uint64_t durable_seq;
        uint64_t durable_told;           /* last value given to on_durable */
        uint64_t sync_req_seq;           /* last record appended with DP_SEGLOG_APPEND_SYNC */
        uint64_t written_rec_bytes;      /* record bytes written ... */
        uint64_t synced_rec_bytes;       /* ... and synced */
        bool undurable_seen;             /* a poll saw undurable records at ... */
        uint64_t undurable_since_ns;     /* ... this time */

        struct dp_seglog_stats stats;
        struct dp_seglog_error err;
};

static inline uint64_t dp_seglog_align8(uint64_t x)
{
        return shm_align_up(x, 8);
}

static inline uint64_t dp_seglog_disk_bytes(uint64_t bytes)
{
        return shm_align_up(bytes, DP_SEGLOG_ALIGN);
}

static inline struct dp_seglog_segment *dp_seglog_active(struct dp_seglog *log)
{
        DP_ASSERT(log->nsegs > 0);
        return &log->segs[log->nsegs - 1];
}

/* --- dp_seglog.c ------------------------------------------------------------ */

/* Records the first error (what is a static sentence, seg_first 0: no
 * file) and returns rc. */
int dp_seglog_set_error(struct dp_seglog *log, int rc, const char *what, uint64_t seg_first,
                        uint64_t offset);

/* --- dp_seglog_recover.c ---------------------------------------------------- */

/* The file name of the segment starting at first_seq. */
void dp_seglog_seg_name(char out[DP_SEGLOG_NAME_BYTES], uint64_t first_seq);

/* Creates, preallocates and opens for writing the segment starting at
 * first_seq, and makes its directory entry durable. Returns the fd, or
 * -errno with the reason in *what. */
int dp_seglog_seg_create(struct dp_seglog *log, uint64_t first_seq, const char **what);

/* The segment starting at seg_first, or NULL. */
struct dp_seglog_segment *dp_seglog_seg_find(const struct dp_seglog *log, uint64_t seg_first);

/* Lists and checks the segments, replays their records, cuts a torn tail
 * and sets up the active segment (wfd, fill buffer) and the sequences: or,
 * in an empty directory, creates the first segment. */
int dp_seglog_recover(struct dp_seglog *log, dp_seglog_replay_fn *replay, void *arg);

#endif /* ATOMQ_DP_SEGLOG_PVT_H */
