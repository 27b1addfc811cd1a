/* dp_seglog.c - the segment log (see dp_seglog.h): open and close, append
 * and the write path on io_uring. Segment files, recovery, the iterator,
 * the segment list and reclaiming are in dp_seglog_recover.c.
 *
 * The write path. Buffered logs write inline: each poll pwrite()s the
 * busy buffers (a page-cache copy of a few KiB), and an fdatasync, when the
 * policy wants one, goes to the io_uring and runs while later polls go on
 * writing; it covers what was written before it was submitted. io_uring
 * would hand every buffered write on ext4 to an io-wq thread, a wake-up
 * and a second CPU for a memcpy (docs/architecture.md has the figures).
 * O_DIRECT logs write through the io_uring, one job at a time (struct
 * dp_seglog_job): a write of the oldest busy buffer, with an fdatasync
 * linked behind it when the policy wants durability and the buffer carries
 * the last record appended; or an fdatasync alone. dp_seglog_poll reaps the
 * job's completions and, once it is done, starts the next one. A segment
 * change is a step of its own: sync the finished segment (a job), then
 * create the next file (blocking, in poll: once per segment_bytes).
 */
#include "dataplane/dp_seglog_pvt.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataplane/dp_crc32c.h"
#include "shm/shm_clock.h"

/* A job has at most two requests (write, fdatasync); 8 leaves slack. */
#define DP_SEGLOG_RING_ENTRIES 8u
/* The longest single sleep of close while it waits for a completion. */
#define DP_SEGLOG_CLOSE_WAIT_NS 100000000ull
/* The largest write buffer: a record at its largest, with room to spare. */
#define DP_SEGLOG_BUFFER_BYTES_MAX (256u << 20)

/* --- configuration and errors ------------------------------------------- */

void dp_seglog_config_default(struct dp_seglog_config *cfg)
{
        *cfg = (struct dp_seglog_config){
                .io = DP_SEGLOG_IO_BUFFERED,
                .sync = DP_SEGLOG_SYNC_BATCH,
                .segment_bytes = DP_SEGLOG_SEGMENT_BYTES_DEFAULT,
                .record_bytes_max = DP_SEGLOG_RECORD_BYTES_DEFAULT,
                .buffer_bytes = 2u << 20,
                .buffers = 4,
                .segments_max = 4096,
                .batch_us = 1000,
                .batch_bytes = 1u << 20,
                .first_seq = 1,
                .close_timeout_ms = 5000,
        };
}

size_t dp_seglog_size(void)
{
        return sizeof(struct dp_seglog);
}

static int dp_seglog_config_check(const struct dp_seglog_config *cfg)
{
        if (cfg->dir == NULL || cfg->dir[0] == '\0' || strlen(cfg->dir) >= PATH_MAX)
                return -EINVAL;
        if (cfg->io != DP_SEGLOG_IO_BUFFERED && cfg->io != DP_SEGLOG_IO_DIRECT)
                return -EINVAL;
        if (cfg->sync != DP_SEGLOG_SYNC_ALWAYS && cfg->sync != DP_SEGLOG_SYNC_BATCH &&
            cfg->sync != DP_SEGLOG_SYNC_NONE)
                return -EINVAL;
        if (cfg->record_bytes_max < DP_SEGLOG_HDR_BYTES + 8 ||
            cfg->record_bytes_max > DP_SEGLOG_RECORD_BYTES_MAX || cfg->record_bytes_max % 8 != 0)
                return -EINVAL;
        /* A buffer holds a whole record after the re-written block's head. */
        if (cfg->buffer_bytes % DP_SEGLOG_ALIGN != 0 || cfg->buffer_bytes > DP_SEGLOG_BUFFER_BYTES_MAX ||
            (uint64_t)cfg->buffer_bytes < (uint64_t)cfg->record_bytes_max + DP_SEGLOG_ALIGN)
                return -EINVAL;
        /* An empty segment takes any record: a roll always makes progress. */
        if (cfg->segment_bytes < cfg->record_bytes_max ||
            cfg->segment_bytes > DP_SEGLOG_SEGMENT_BYTES_MAX)
                return -EINVAL;
        if (cfg->buffers < 2 || cfg->buffers > DP_SEGLOG_BUFFERS_MAX)
                return -EINVAL;
        if (cfg->segments_max < 2 || cfg->segments_max > DP_SEGLOG_SEGMENTS_LIMIT)
                return -EINVAL;
        if (cfg->dir_bytes_max != 0 && cfg->dir_bytes_max < dp_seglog_disk_bytes(cfg->segment_bytes))
                return -EINVAL;
        /* 0 means "none" in written_seq and friends. */
        if (cfg->first_seq == 0 || cfg->first_seq > UINT64_MAX / 2)
                return -EINVAL;
        return 0;
}

int dp_seglog_set_error(struct dp_seglog *log, int rc, const char *what, uint64_t seg_first,
                        uint64_t offset)
{
        if (log->err.rc != 0)
                return rc;
        log->err.rc = rc;
        log->err.what = what;
        log->err.offset = offset;
        log->err.file[0] = '\0';
        if (seg_first != 0)
                dp_seglog_seg_name(log->err.file, seg_first);
        return rc;
}

const struct dp_seglog_error *dp_seglog_error(const struct dp_seglog *log)
{
        return &log->err;
}

/* The failed state: the first I/O error stops the log (see the header). */
static int dp_seglog_fail(struct dp_seglog *log, int rc, const char *what, uint64_t offset)
{
        log->stats.errors++;
        if (log->failed == 0) {
                log->failed = rc;
                (void)dp_seglog_set_error(log, rc, what, log->wseg_first, offset);
        }
        return rc;
}

/* --- set-up and tear-down ------------------------------------------------- */

/* Makes a directory we created survive a crash: its entry is in the
 * parent, which gets an fsync of its own. */
static int dp_seglog_parent_sync(const char *dir)
{
        char path[PATH_MAX];
        strcpy(path, dir);   /* checked shorter than PATH_MAX */
        int fd = open(dirname(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        int rc = fsync(fd) < 0 ? -errno : 0;
        close(fd);
        return rc;
}

static int dp_seglog_dir_open(struct dp_seglog *log, const char *dir)
{
        bool made = mkdir(dir, 0700) == 0;
        if (!made && errno != EEXIST)
                return dp_seglog_set_error(log, -errno, "cannot create the log directory", 0, 0);
        log->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (log->dirfd < 0)
                return dp_seglog_set_error(log, -errno, "cannot open the log directory", 0, 0);
        /* Two writers on one log would interleave sequences: refuse the
         * second. The lock goes with the descriptor, at close or exit. */
        if (flock(log->dirfd, LOCK_EX | LOCK_NB) < 0)
                return dp_seglog_set_error(log, errno == EWOULDBLOCK ? -EBUSY : -errno,
                                           "the log directory is in use", 0, 0);
        int rc = made ? dp_seglog_parent_sync(dir) : 0;
        if (rc < 0)
                return dp_seglog_set_error(log, rc, "cannot sync the log directory's parent", 0, 0);
        return 0;
}

static int dp_seglog_mem_setup(struct dp_seglog *log)
{
        for (uint32_t i = 0; i < log->cfg.buffers; i++) {
                void *m = NULL;
                if (posix_memalign(&m, DP_SEGLOG_ALIGN, log->cfg.buffer_bytes) != 0)
                        return dp_seglog_set_error(log, -ENOMEM, "out of memory", 0, 0);
                /* Touched now, so that appends take no page faults. */
                memset(m, 0, log->cfg.buffer_bytes);
                log->bufs[i].mem = m;
        }
        log->segs = calloc(log->cfg.segments_max, sizeof(*log->segs));
        if (log->segs == NULL)
                return dp_seglog_set_error(log, -ENOMEM, "out of memory", 0, 0);
        return 0;
}

/* Created disabled, like nic_uring's ring: it binds to its single issuer
 * at the first poll, so open may run on another thread than the owner. */
static int dp_seglog_ring_setup(struct dp_seglog *log)
{
        struct io_uring_params p = {
                .flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_R_DISABLED,
        };
        int rc = io_uring_queue_init_params(DP_SEGLOG_RING_ENTRIES, &log->ring, &p);
        if (rc == -EINVAL) {
                /* Before 6.0: no IORING_SETUP_SINGLE_ISSUER. */
                p = (struct io_uring_params){ 0 };
                rc = io_uring_queue_init_params(DP_SEGLOG_RING_ENTRIES, &log->ring, &p);
        }
        if (rc < 0)
                return dp_seglog_set_error(log, rc, "io_uring is unavailable", 0, 0);
        log->ring_ready = true;
        log->ring_disabled = (p.flags & IORING_SETUP_R_DISABLED) != 0;
        return 0;
}

static int dp_seglog_ring_enable(struct dp_seglog *log)
{
        if (shm_likely(!log->ring_disabled))
                return 0;
        /* liburing 2.3 declares io_uring_enable_rings but does not export it. */
        int rc = io_uring_register(log->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
        if (rc < 0)
                return rc;
        log->ring_disabled = false;
        return 0;
}

/* leak_bufs: I/O may still be in flight (close timed out): the kernel may
 * yet read the buffers, so they are not freed. */
static void dp_seglog_release(struct dp_seglog *log, bool leak_bufs)
{
        if (log->wfd >= 0)
                close(log->wfd);
        if (log->dirfd >= 0)
                close(log->dirfd);
        log->wfd = log->dirfd = -1;
        if (log->ring_ready)
                io_uring_queue_exit(&log->ring);
        log->ring_ready = false;
        for (uint32_t i = 0; i < DP_SEGLOG_BUFFERS_MAX; i++) {
                if (!leak_bufs)
                        free(log->bufs[i].mem);
                log->bufs[i].mem = NULL;
        }
        free(log->segs);
        log->segs = NULL;
        log->nsegs = 0;
        log->open = false;
}

int dp_seglog_open(struct dp_seglog *log, const struct dp_seglog_config *cfg,
                   dp_seglog_replay_fn *replay, void *arg)
{
        memset(log, 0, sizeof(*log));
        log->dirfd = log->wfd = -1;
        log->err.what = "no error";
        int rc = dp_seglog_config_check(cfg);
        if (rc < 0)
                return dp_seglog_set_error(log, rc, "bad configuration", 0, 0);
        log->cfg = *cfg;
        log->cfg.dir = NULL;
        rc = dp_seglog_dir_open(log, cfg->dir);
        if (rc == 0)
                rc = dp_seglog_mem_setup(log);
        if (rc == 0)
                rc = dp_seglog_ring_setup(log);
        if (rc == 0)
                rc = dp_seglog_recover(log, replay, arg);
        if (rc < 0) {
                dp_seglog_release(log, false);
                return rc;
        }
        log->open = true;
        return 0;
}

/* --- append --------------------------------------------------------------- */

/* Opens the buffer after the fill buffer as the new fill buffer, for
 * segment seg_first: at its start (new_seg), or where the fill buffer
 * ends. Under O_DIRECT it starts at the block that one ends in, with a copy
 * of that block's bytes (keep), which its write will put back unchanged. */
static void dp_seglog_buf_next(struct dp_seglog *log, uint64_t seg_first, bool new_seg)
{
        DP_ASSERT(log->nbusy < log->cfg.buffers);
        const struct dp_seglog_buf *p = &log->bufs[log->fbuf];
        uint32_t ni = log->fbuf + 1 == log->cfg.buffers ? 0 : log->fbuf + 1;
        struct dp_seglog_buf *n = &log->bufs[ni];
        n->seg_first = seg_first;
        n->last_seq = 0;
        n->rec_bytes = 0;
        n->keep = n->len = 0;
        if (new_seg) {
                n->off = 0;
        } else if (log->cfg.io == DP_SEGLOG_IO_DIRECT) {
                uint64_t end = p->off + p->len;
                n->off = end & ~(uint64_t)(DP_SEGLOG_ALIGN - 1);
                DP_ASSERT(n->off >= p->off);
                n->keep = n->len = (uint32_t)(end - n->off);
                memcpy(n->mem, p->mem + (n->off - p->off), n->keep);
        } else {
                n->off = p->off + p->len;
        }
        log->fbuf = ni;
        log->nbusy++;
}

/* Makes room for a record of rec_bytes in the fill buffer: a new buffer
 * when it is full, a new segment when the active one is. Changes nothing
 * when it fails. */
static int dp_seglog_room(struct dp_seglog *log, uint32_t rec_bytes)
{
        struct dp_seglog_segment *a = dp_seglog_active(log);
        struct dp_seglog_buf *f = &log->bufs[log->fbuf];
        bool all_busy = log->nbusy == log->cfg.buffers;
        if (a->bytes + rec_bytes <= log->cfg.segment_bytes) {
                if (f->len + rec_bytes <= log->cfg.buffer_bytes)
                        return 0;
                if (all_busy) {
                        log->stats.refused_busy++;
                        return -ENOBUFS;
                }
                /* Only a buffer holding records fills up: keep is below a
                 * block, and a block plus a record fits (config check). */
                DP_ASSERT(f->last_seq != 0);
                dp_seglog_buf_next(log, a->first_seq, false);
                return 0;
        }
        /* A roll: the active segment's disk space is now its size, and the
         * new one reserves a whole segment. */
        uint64_t disk = log->closed_disk_bytes + dp_seglog_disk_bytes(a->bytes) +
                        dp_seglog_disk_bytes(log->cfg.segment_bytes);
        if ((log->cfg.dir_bytes_max != 0 && disk > log->cfg.dir_bytes_max) ||
            log->nsegs == log->cfg.segments_max) {
                log->stats.refused_space++;
                return -ENOSPC;
        }
        if (f->last_seq != 0 && all_busy) {
                log->stats.refused_busy++;
                return -ENOBUFS;
        }
        log->closed_disk_bytes += dp_seglog_disk_bytes(a->bytes);
        log->segs[log->nsegs++] = (struct dp_seglog_segment){
                .first_seq = log->next_seq, .last_seq = log->next_seq - 1 };
        if (f->last_seq != 0) {
                dp_seglog_buf_next(log, log->next_seq, true);
        } else {
                /* Nothing new in it (at most a copy of a written block):
                 * it starts the new segment itself. */
                f->seg_first = log->next_seq;
                f->off = 0;
                f->len = f->keep = 0;
                f->rec_bytes = 0;
        }
        return 0;
}

/* Lays out one record at p (see the header for the format). */
static void dp_seglog_encode(uint8_t *p, const struct dp_seglog_rec *rec, uint64_t seq,
                             uint32_t len, uint32_t padded)
{
        struct dp_seglog_rec_hdr h = {
                .len = htole32(len),
                .type = htole16(rec->type),
                .flags = htole16(rec->flags),
                .key_len = htole16(rec->key_len),
                .version = DP_SEGLOG_VERSION,
                .seq = htole64(seq),
                .entity = htole64(rec->entity),
                .expiry_ns = htole64(rec->expiry_ns),
        };
        memcpy(p, &h, sizeof(h));
        if (rec->key_len != 0)
                memcpy(p + DP_SEGLOG_HDR_BYTES, rec->key, rec->key_len);
        if (rec->payload_len != 0)
                memcpy(p + DP_SEGLOG_HDR_BYTES + rec->key_len, rec->payload, rec->payload_len);
        memset(p + len, 0, padded - len);
        uint32_t crc = htole32(dp_crc32c(0, p + 4, len - 4));
        memcpy(p, &crc, 4);
}

int dp_seglog_append(struct dp_seglog *log, const struct dp_seglog_rec *rec, unsigned opts,
                     uint64_t *seq)
{
        if (!log->open || log->closing)
                return -EBADF;
        if (log->failed != 0)
                return log->failed;
        if ((opts & ~DP_SEGLOG_APPEND_SYNC) != 0 || (rec->key_len != 0 && rec->key == NULL) ||
            (rec->payload_len != 0 && rec->payload == NULL))
                return -EINVAL;
        uint64_t len = (uint64_t)DP_SEGLOG_HDR_BYTES + rec->key_len + rec->payload_len;
        uint64_t padded = dp_seglog_align8(len);
        if (padded > log->cfg.record_bytes_max) {
                log->stats.refused_size++;
                return -EMSGSIZE;
        }
        int rc = dp_seglog_room(log, (uint32_t)padded);
        if (rc < 0)
                return rc;
        struct dp_seglog_buf *b = &log->bufs[log->fbuf];
        struct dp_seglog_segment *a = dp_seglog_active(log);
        DP_ASSERT(b->len + padded <= log->cfg.buffer_bytes);
        DP_ASSERT(b->seg_first == a->first_seq);
        DP_ASSERT(b->off + b->len == a->bytes);
        uint64_t s = log->next_seq++;
        dp_seglog_encode(b->mem + b->len, rec, s, (uint32_t)len, (uint32_t)padded);
        b->len += (uint32_t)padded;
        b->last_seq = s;
        b->rec_bytes += padded;
        a->last_seq = s;
        a->bytes += padded;
        log->stats.appends++;
        log->stats.append_bytes += padded;
        if (opts & DP_SEGLOG_APPEND_SYNC)
                log->sync_req_seq = s;
        if (seq != NULL)
                *seq = s;
        return 0;
}

/* --- the write path ------------------------------------------------------- */

/* Puts the current job's requests in the SQ and submits them. */
static int dp_seglog_issue(struct dp_seglog *log)
{
        struct dp_seglog_job *j = &log->job;
        struct io_uring_sqe *sqe;
        j->pending = 0;
        j->wres = j->sres = 0;
        if (j->buf != DP_SEGLOG_NOBUF) {
                const struct dp_seglog_buf *b = &log->bufs[j->buf];
                sqe = io_uring_get_sqe(&log->ring);
                DP_VERIFY(sqe != NULL);   /* a job takes 2 of DP_SEGLOG_RING_ENTRIES */
                io_uring_prep_write(sqe, log->wfd, b->mem + j->pos, j->end - j->pos, b->off + j->pos);
                io_uring_sqe_set_data64(sqe, DP_SEGLOG_UD_WRITE);
                /* The fdatasync starts only after the write completed in
                 * full; an error or a short write cancels it. */
                if (j->sync)
                        sqe->flags |= IOSQE_IO_LINK;
                j->pending++;
                log->stats.writes++;
        }
        if (j->sync) {
                sqe = io_uring_get_sqe(&log->ring);
                DP_VERIFY(sqe != NULL);
                io_uring_prep_fsync(sqe, log->wfd, IORING_FSYNC_DATASYNC);
                io_uring_sqe_set_data64(sqe, DP_SEGLOG_UD_SYNC);
                j->pending++;
        }
        int rc = io_uring_submit(&log->ring);
        /* Refused for now (a full CQ, a signal): the entries stay in the SQ
         * ring and the next poll's submit hands them over. */
        log->submit_again = rc == -EBUSY || rc == -EAGAIN || rc == -EINTR;
        if (rc < 0 && !log->submit_again)
                return dp_seglog_fail(log, rc, "io_uring submit failed", 0);
        return 1;
}

/* Starts a job: a write of buffer bi (DP_SEGLOG_NOBUF: none) and/or an
 * fdatasync. Under O_DIRECT the write covers whole blocks, zero-padded. */
static int dp_seglog_submit(struct dp_seglog *log, uint32_t bi, bool sync, uint64_t now_ns)
{
        struct dp_seglog_job *j = &log->job;
        *j = (struct dp_seglog_job){ .active = true, .sync = sync, .buf = bi, .start_ns = now_ns,
                                     .cover_seq = log->written_seq,
                                     .cover_rec_bytes = log->written_rec_bytes };
        if (bi != DP_SEGLOG_NOBUF) {
                struct dp_seglog_buf *b = &log->bufs[bi];
                DP_ASSERT(b->last_seq != 0);
                j->cover_seq = b->last_seq;
                j->cover_rec_bytes += b->rec_bytes;
                j->end = b->len;
                if (log->cfg.io == DP_SEGLOG_IO_DIRECT) {
                        j->end = (uint32_t)shm_align_up(b->len, DP_SEGLOG_ALIGN);
                        memset(b->mem + b->len, 0, j->end - b->len);
                }
                DP_ASSERT(j->end <= log->cfg.buffer_bytes);
        }
        return dp_seglog_issue(log);
}

static void dp_seglog_durable_set(struct dp_seglog *log)
{
        log->durable_seq = log->cfg.sync == DP_SEGLOG_SYNC_NONE ? log->written_seq : log->synced_seq;
}

/* Buffer b is on disk (not necessarily durable): account and free it. */
static void dp_seglog_written(struct dp_seglog *log, struct dp_seglog_buf *b)
{
        struct dp_seglog_segment *s = dp_seglog_seg_find(log, b->seg_first);
        /* drop_before takes only segments before the one being written. */
        DP_VERIFY(s != NULL);
        s->written_bytes = b->off + b->len;
        DP_ASSERT(b->last_seq > log->written_seq);
        log->written_seq = b->last_seq;
        log->written_rec_bytes += b->rec_bytes;
        log->wseg_dirty = true;
        b->last_seq = 0;
        log->wbuf = log->wbuf + 1 == log->cfg.buffers ? 0 : log->wbuf + 1;
        log->nbusy--;
        dp_seglog_durable_set(log);
}

/* Every completion of the job's round is in. */
static void dp_seglog_job_done(struct dp_seglog *log, uint64_t now_ns)
{
        struct dp_seglog_job *j = &log->job;
        bool has_buf = j->buf != DP_SEGLOG_NOBUF;
        if (j->wres < 0) {
                j->active = false;
                (void)dp_seglog_fail(log, j->wres, "a segment write failed",
                                     log->bufs[j->buf].off + j->pos);
                return;
        }
        if (has_buf && j->pos < j->end) {
                /* A short write (a file size limit, a nearly full disk): its
                 * linked fdatasync was cancelled. Write the rest, which fails
                 * with the reason if it cannot progress at all. */
                (void)dp_seglog_issue(log);
                return;
        }
        j->active = false;
        if (j->sync && j->sres < 0) {
                (void)dp_seglog_fail(log, j->sres, "fdatasync failed", 0);
                return;
        }
        if (has_buf)
                dp_seglog_written(log, &log->bufs[j->buf]);
        if (j->sync) {
                /* Inline writes may have gone on meanwhile: not covered. */
                log->synced_seq = j->cover_seq;
                log->synced_rec_bytes = j->cover_rec_bytes;
                log->wseg_dirty = log->written_seq > j->cover_seq;
                log->undurable_seen = false;
                log->stats.syncs++;
                uint64_t ns = now_ns > j->start_ns ? now_ns - j->start_ns : 0;
                if (ns > log->stats.sync_ns_max)
                        log->stats.sync_ns_max = ns;
        }
        dp_seglog_durable_set(log);
}

static void dp_seglog_on_cqe(struct dp_seglog *log, uint64_t ud, int res)
{
        struct dp_seglog_job *j = &log->job;
        DP_ASSERT(j->pending > 0);
        j->pending--;
        if (ud == DP_SEGLOG_UD_WRITE) {
                if (res > 0) {
                        DP_ASSERT(j->pos + (uint32_t)res <= j->end);
                        j->pos += (uint32_t)res;
                        log->stats.write_bytes += (uint64_t)res;
                } else {
                        /* 0 for a write of more: no progress is possible. */
                        j->wres = res < 0 ? res : -EIO;
                }
        } else {
                DP_ASSERT(ud == DP_SEGLOG_UD_SYNC);
                j->sres = res;
        }
}

/* Takes the job's completions. Bounded: a round has at most two, and a
 * re-issue after a short write needs a new completion to go on. */
static int dp_seglog_reap(struct dp_seglog *log, uint64_t now_ns)
{
        struct io_uring_cqe *cqe;
        int n = 0;
        while (log->job.pending > 0 && io_uring_peek_cqe(&log->ring, &cqe) == 0) {
                uint64_t ud = io_uring_cqe_get_data64(cqe);
                int res = cqe->res;
                io_uring_cqe_seen(&log->ring, cqe);
                n++;
                dp_seglog_on_cqe(log, ud, res);
                if (log->job.pending == 0)
                        dp_seglog_job_done(log, now_ns);
        }
        return n;
}

static bool dp_seglog_sync_due(const struct dp_seglog *log, uint64_t now_ns)
{
        uint64_t last = log->next_seq - 1;
        if (last <= log->synced_seq)
                return false;
        if (log->sync_req_seq > log->synced_seq)
                return true;
        switch (log->cfg.sync) {
        case DP_SEGLOG_SYNC_ALWAYS:
                return true;
        case DP_SEGLOG_SYNC_BATCH:
                if (log->closing ||
                    log->stats.append_bytes - log->synced_rec_bytes >= log->cfg.batch_bytes)
                        return true;
                return log->undurable_seen &&
                       now_ns - log->undurable_since_ns >= (uint64_t)log->cfg.batch_us * 1000;
        case DP_SEGLOG_SYNC_NONE:
                return false;
        }
        return false;
}

/* Moves the write side to segment seg_first, the previous one being synced:
 * blocking calls, once per segment. */
static int dp_seglog_switch(struct dp_seglog *log, uint64_t seg_first)
{
        DP_ASSERT(!log->wseg_dirty);
        close(log->wfd);
        log->wfd = -1;
        log->wseg_first = seg_first;
        const char *what = NULL;
        int fd = dp_seglog_seg_create(log, seg_first, &what);
        if (fd < 0)
                return dp_seglog_fail(log, fd, what, 0);
        log->wfd = fd;
        log->stats.rolls++;
        return 0;
}

/* Writes buffer b whole with pwrite(2) (buffered logs). A short write goes
 * on from where it stopped; one that cannot progress fails the log. */
static int dp_seglog_pwrite(struct dp_seglog *log, struct dp_seglog_buf *b)
{
        DP_ASSERT(b->keep == 0);
        uint32_t pos = 0;
        log->stats.writes++;
        while (pos < b->len) {
                ssize_t n = pwrite(log->wfd, b->mem + pos, b->len - pos, (off_t)(b->off + pos));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return dp_seglog_fail(log, n < 0 ? -errno : -EIO, "a segment write failed",
                                              b->off + pos);
                pos += (uint32_t)n;
                log->stats.write_bytes += (uint64_t)n;
        }
        dp_seglog_written(log, b);
        return 1;
}

/* The oldest busy buffer, ready to be written (the fill buffer is sealed
 * first when it holds records); NULL when none is, or when a roll waits
 * for the finished segment's sync: a sync job in flight may be the one,
 * else this submits it (counted in *work, as is a failed switch). */
static struct dp_seglog_buf *dp_seglog_next_buf(struct dp_seglog *log, uint64_t now_ns,
                                                int *work)
{
        const struct dp_seglog_buf *f = &log->bufs[log->fbuf];
        if (log->nbusy == 1 && f->last_seq != 0)
                dp_seglog_buf_next(log, f->seg_first, false);
        if (log->nbusy == 1)
                return NULL;
        struct dp_seglog_buf *b = &log->bufs[log->wbuf];
        if (b->seg_first != log->wseg_first) {
                /* The roll barrier (see the header). */
                if (log->job.active)
                        return NULL;
                if (log->wseg_dirty) {
                        *work += dp_seglog_submit(log, DP_SEGLOG_NOBUF, true, now_ns);
                        return NULL;
                }
                if (dp_seglog_switch(log, b->seg_first) < 0) {
                        (*work)++;
                        return NULL;
                }
        }
        return b;
}

/* Buffered logs: writes every busy buffer now, up to a roll that waits. */
static int dp_seglog_write_inline(struct dp_seglog *log, uint64_t now_ns)
{
        int work = 0;
        struct dp_seglog_buf *b;
        while ((b = dp_seglog_next_buf(log, now_ns, &work)) != NULL) {
                if (dp_seglog_pwrite(log, b) < 0)
                        return work + 1;
                work++;
        }
        return work;
}

/* Starts the next job, if the job slot is free and there is one; a
 * buffered log writes first. Every policy writes the fill buffer at each
 * poll (so `batch` records reach the kernel at once); `batch` syncs on its
 * own schedule, with a sync-only job when no write carries it. */
static int dp_seglog_start(struct dp_seglog *log, uint64_t now_ns)
{
        if (log->cfg.io == DP_SEGLOG_IO_BUFFERED) {
                int work = dp_seglog_write_inline(log, now_ns);
                if (log->failed != 0 || log->job.active || !dp_seglog_sync_due(log, now_ns))
                        return work;
                return work + dp_seglog_submit(log, DP_SEGLOG_NOBUF, true, now_ns);
        }
        if (log->job.active)
                return 0;
        bool sync = dp_seglog_sync_due(log, now_ns);
        int work = 0;
        if (dp_seglog_next_buf(log, now_ns, &work) != NULL) {
                /* A sync behind each of several queued buffers would be
                 * wasted: it rides with the one holding the last record. */
                bool last = log->nbusy == 2 && log->bufs[log->fbuf].last_seq == 0;
                return dp_seglog_submit(log, log->wbuf, sync && last, now_ns);
        }
        if (work != 0 || !sync)
                return work;
        DP_ASSERT(log->written_seq == log->next_seq - 1);
        return dp_seglog_submit(log, DP_SEGLOG_NOBUF, true, now_ns);
}

int dp_seglog_poll(struct dp_seglog *log, uint64_t now_ns)
{
        if (!log->open)
                return -EBADF;
        int rc = dp_seglog_ring_enable(log);
        if (rc < 0)
                return dp_seglog_fail(log, rc, "cannot enable the io_uring", 0);
        if (log->submit_again) {
                rc = io_uring_submit(&log->ring);
                log->submit_again = rc == -EBUSY || rc == -EAGAIN || rc == -EINTR;
                if (rc < 0 && !log->submit_again)
                        (void)dp_seglog_fail(log, rc, "io_uring submit failed", 0);
        }
        int work = dp_seglog_reap(log, now_ns);
        if (log->failed == 0) {
                /* The batch interval runs from the first poll that saw an
                 * undurable record: appends do not read the clock. */
                if (log->next_seq - 1 <= log->synced_seq) {
                        log->undurable_seen = false;
                } else if (!log->undurable_seen) {
                        log->undurable_seen = true;
                        log->undurable_since_ns = now_ns;
                }
                work += dp_seglog_start(log, now_ns);
        }
        if (log->durable_seq > log->durable_told) {
                log->durable_told = log->durable_seq;
                if (log->cfg.on_durable != NULL)
                        log->cfg.on_durable(log->cfg.durable_arg, log->durable_seq);
        }
        return log->failed != 0 ? log->failed : work;
}

uint64_t dp_seglog_next_ns(const struct dp_seglog *log)
{
        if (!log->open || log->failed != 0)
                return UINT64_MAX;
        if (log->job.active || log->nbusy > 1 || log->sync_req_seq > log->synced_seq)
                return 0;
        uint64_t last = log->next_seq - 1;
        switch (log->cfg.sync) {
        case DP_SEGLOG_SYNC_ALWAYS:
                return last > log->synced_seq ? 0 : UINT64_MAX;
        case DP_SEGLOG_SYNC_NONE:
                return log->bufs[log->fbuf].last_seq != 0 ? 0 : UINT64_MAX;
        case DP_SEGLOG_SYNC_BATCH:
                if (last <= log->synced_seq)
                        return UINT64_MAX;
                if (log->bufs[log->fbuf].last_seq != 0 || !log->undurable_seen ||
                    log->stats.append_bytes - log->synced_rec_bytes >= log->cfg.batch_bytes)
                        return 0;
                return log->undurable_since_ns + (uint64_t)log->cfg.batch_us * 1000;
        }
        return 0;
}

void dp_seglog_wait(struct dp_seglog *log, uint64_t wait_ns)
{
        if (!log->open || !log->job.active)
                return;
        struct __kernel_timespec ts = { .tv_sec = (long long)(wait_ns / 1000000000u),
                                        .tv_nsec = (long long)(wait_ns % 1000000000u) };
        struct io_uring_cqe *cqe;
        (void)io_uring_wait_cqe_timeout(&log->ring, &cqe, &ts);
}

int dp_seglog_sync_now(struct dp_seglog *log)
{
        if (!log->open || log->closing)
                return -EBADF;
        uint64_t last = log->next_seq - 1;
        if (log->sync_req_seq < last)
                log->sync_req_seq = last;   /* makes a sync due, whatever the policy */
        uint64_t deadline_ns = shm_clock_ns() + (uint64_t)log->cfg.close_timeout_ms * 1000000;
        for (;;) {
                uint64_t now_ns = shm_clock_ns();
                (void)dp_seglog_poll(log, now_ns);
                if (log->failed != 0)
                        return log->failed;
                if (log->synced_seq >= last && !log->job.active)
                        return 0;
                if (now_ns >= deadline_ns)
                        return -ETIMEDOUT;
                uint64_t wait_ns = deadline_ns - now_ns;
                dp_seglog_wait(log, wait_ns < DP_SEGLOG_CLOSE_WAIT_NS ? wait_ns
                                                                      : DP_SEGLOG_CLOSE_WAIT_NS);
        }
}

int dp_seglog_set_policy(struct dp_seglog *log, enum dp_seglog_sync sync, uint32_t batch_us,
                         dp_seglog_durable_fn *on_durable, void *durable_arg)
{
        if (!log->open)
                return -EBADF;
        if (sync != DP_SEGLOG_SYNC_ALWAYS && sync != DP_SEGLOG_SYNC_BATCH &&
            sync != DP_SEGLOG_SYNC_NONE)
                return -EINVAL;
        log->cfg.sync = sync;
        log->cfg.batch_us = batch_us;
        log->cfg.on_durable = on_durable;
        log->cfg.durable_arg = durable_arg;
        dp_seglog_durable_set(log);
        /* What is durable now is no news to the new callback. */
        log->durable_told = log->durable_seq;
        return 0;
}

int dp_seglog_close(struct dp_seglog *log)
{
        if (!log->open)
                return 0;
        log->closing = true;
        uint64_t deadline_ns = shm_clock_ns() + (uint64_t)log->cfg.close_timeout_ms * 1000000;
        bool timed_out = false;
        /* Each poll reaps and starts the next job; once a poll leaves none
         * in flight, everything is written (or the log failed). */
        for (;;) {
                uint64_t now_ns = shm_clock_ns();
                (void)dp_seglog_poll(log, now_ns);
                if (!log->job.active)
                        break;
                if (now_ns >= deadline_ns) {
                        timed_out = true;
                        break;
                }
                uint64_t wait_ns = deadline_ns - now_ns;
                dp_seglog_wait(log, wait_ns < DP_SEGLOG_CLOSE_WAIT_NS ? wait_ns
                                                                      : DP_SEGLOG_CLOSE_WAIT_NS);
        }
        int rc = timed_out ? -ETIMEDOUT : log->failed;
        dp_seglog_release(log, timed_out);
        return rc;
}

/* --- sequences and counters ------------------------------------------------ */

uint64_t dp_seglog_next_seq(const struct dp_seglog *log)
{
        return log->next_seq;
}

uint64_t dp_seglog_written_seq(const struct dp_seglog *log)
{
        return log->written_seq;
}

uint64_t dp_seglog_durable_seq(const struct dp_seglog *log)
{
        return log->durable_seq;
}

const struct dp_seglog_stats *dp_seglog_stats(const struct dp_seglog *log)
{
        return &log->stats;
}

int dp_seglog_set_eventfd(struct dp_seglog *log, int fd)
{
        if (!log->open || fd < 0)
                return -EBADF;
        /* On the owner's thread: enabling binds the ring to it. */
        int rc = dp_seglog_ring_enable(log);
        if (rc == 0)
                rc = io_uring_register_eventfd(&log->ring, fd);
        return rc;
}
