/* dp_seglog_recover.c - the segment log's files (see dp_seglog.h): segment
 * names, creating a segment, the O_DIRECT checks, the streaming record
 * reader that recovery and the iterator share, recovery itself, the
 * iterator, the segment list and reclaiming (drop_before).
 *
 * The reader goes through a segment with one fixed buffer (a write buffer
 * during recovery, the caller's for the iterator): it reads as much as fits,
 * parses records in place, and moves the unparsed rest to the front when a
 * record would cross the buffer's end. A record is at most record_bytes_max,
 * which the buffer holds, so memory stays bounded whatever the file holds.
 */
#include "dataplane/dp_seglog_pvt.h"

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataplane/dp_crc32c.h"

/* How a segment's records end. */
enum dp_seglog_end_kind {
        DP_SEGLOG_END_CLEAN,   /* the file ends after a record */
        DP_SEGLOG_END_ZEROS,   /* zeros from here to the end of the file */
        DP_SEGLOG_END_TORN,    /* a bad, short or torn record */
        DP_SEGLOG_END_BADSEQ,  /* a sound record with the wrong sequence */
};

struct dp_seglog_end {
        enum dp_seglog_end_kind kind;
        const char *what;
        uint64_t offset;       /* where the records end */
};

/* --- segment files -------------------------------------------------------- */

/* Digits by hand: this runs at a roll, on the write path, which formats no
 * strings. */
void dp_seglog_seg_name(char out[DP_SEGLOG_NAME_BYTES], uint64_t first_seq)
{
        for (int i = 19; i >= 0; i--) {
                out[i] = (char)('0' + first_seq % 10);
                first_seq /= 10;
        }
        memcpy(out + 20, ".seg", 5);
}

static bool dp_seglog_name_parse(const char *name, uint64_t *first_seq)
{
        if (strlen(name) != DP_SEGLOG_NAME_BYTES - 1 || strcmp(name + 20, ".seg") != 0)
                return false;
        uint64_t v = 0;
        for (int i = 0; i < 20; i++) {
                if (name[i] < '0' || name[i] > '9')
                        return false;
                unsigned d = (unsigned)(name[i] - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return false;
                v = v * 10 + d;
        }
        *first_seq = v;
        return v != 0;
}

/* Whether an O_DIRECT file takes our writes. A filesystem without O_DIRECT
 * at all fails the open with EINVAL; statx (Linux 6.1+) also tells the
 * alignment it needs. Where statx cannot tell, the first write will. */
static int dp_seglog_dio_check(int fd, const char **what)
{
        struct statx stx;
        if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) < 0 ||
            !(stx.stx_mask & STATX_DIOALIGN))
                return 0;
        if (stx.stx_dio_offset_align == 0) {
                *what = "O_DIRECT refused by the filesystem (use buffered I/O)";
                return -EINVAL;
        }
        if (stx.stx_dio_offset_align > DP_SEGLOG_ALIGN || stx.stx_dio_mem_align > DP_SEGLOG_ALIGN) {
                *what = "O_DIRECT needs more than 4096-byte alignment here (use buffered I/O)";
                return -EINVAL;
        }
        return 0;
}

/* Opens a segment for the write path (O_DIRECT in that mode). */
static int dp_seglog_seg_open(struct dp_seglog *log, const char *name, int extra_flags,
                              const char **what)
{
        bool direct = log->cfg.io == DP_SEGLOG_IO_DIRECT;
        int fd = openat(log->dirfd, name, O_RDWR | O_CLOEXEC | extra_flags | (direct ? O_DIRECT : 0),
                        0600);
        if (fd < 0) {
                int rc = -errno;
                *what = rc == -EINVAL && direct ? "O_DIRECT refused by the filesystem (use buffered I/O)"
                                                : "cannot open a segment";
                return rc;
        }
        int rc = direct ? dp_seglog_dio_check(fd, what) : 0;
        if (rc < 0) {
                close(fd);
                return rc;
        }
        return fd;
}

int dp_seglog_seg_create(struct dp_seglog *log, uint64_t first_seq, const char **what)
{
        char name[DP_SEGLOG_NAME_BYTES];
        dp_seglog_seg_name(name, first_seq);
        int fd = dp_seglog_seg_open(log, name, O_CREAT | O_EXCL, what);
        int rc = fd < 0 ? fd : 0;
        /* The space is reserved now, so a full disk shows here and not in
         * the middle of a segment. KEEP_SIZE: the size still tracks the
         * data. Where fallocate is missing, nothing is reserved. */
        if (rc == 0 && fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)log->cfg.segment_bytes) < 0 &&
            errno != EOPNOTSUPP && errno != ENOSYS) {
                rc = -errno;
                *what = "cannot preallocate a segment";
        }
        /* The new name must survive a crash before any record in it counts
         * as durable: the file's fdatasync does not cover the directory. */
        if (rc == 0 && fsync(log->dirfd) < 0) {
                rc = -errno;
                *what = "cannot sync the log directory";
        }
        if (rc == 0)
                return fd;
        if (fd >= 0)
                close(fd);
        /* O_CREAT may have made the file before O_DIRECT was refused. */
        if (rc != -EEXIST)
                (void)unlinkat(log->dirfd, name, 0);
        return rc;
}

/* --- the reader ------------------------------------------------------------ */

static void dp_seglog_reader_init(struct dp_seglog_iter *rd, int fd, uint64_t size, void *buf,
                                  size_t cap, uint64_t first_seq, uint64_t last_seq,
                                  uint32_t record_bytes_max)
{
        *rd = (struct dp_seglog_iter){ .fd = fd, .size = size, .buf = buf, .cap = cap,
                                       .next_seq = first_seq, .last_seq = last_seq,
                                       .record_bytes_max = record_bytes_max };
}

/* Makes need (<= cap) bytes available at rd->at, or all the file has left.
 * Returns the bytes available, or -errno. */
static ssize_t dp_seglog_reader_fill(struct dp_seglog_iter *rd, size_t need)
{
        DP_ASSERT(need <= rd->cap);
        if (rd->have - rd->at >= need)
                return (ssize_t)(rd->have - rd->at);
        if (rd->at + need > rd->cap) {
                memmove(rd->buf, rd->buf + rd->at, rd->have - rd->at);
                rd->base += rd->at;
                rd->have -= rd->at;
                rd->at = 0;
        }
        while (rd->have - rd->at < need) {
                uint64_t pos = rd->base + rd->have;
                if (pos >= rd->size)
                        break;
                uint64_t want = rd->cap - rd->have;
                if (want > rd->size - pos)
                        want = rd->size - pos;
                ssize_t n = pread(rd->fd, rd->buf + rd->have, want, (off_t)pos);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;   /* the file is shorter than it was */
                rd->have += (size_t)n;
        }
        return (ssize_t)(rd->have - rd->at);
}

static int dp_seglog_reader_end(struct dp_seglog_end *end, enum dp_seglog_end_kind kind,
                                const char *what)
{
        end->kind = kind;
        end->what = what;
        return 0;
}

/* The rest of the file: all zeros is the end of the records (O_DIRECT
 * padding, or what a crash left); anything else is damage. */
static int dp_seglog_reader_zeros(struct dp_seglog_iter *rd, struct dp_seglog_end *end,
                                  const char *what)
{
        for (;;) {
                for (size_t i = rd->at; i < rd->have; i++)
                        if (rd->buf[i] != 0)
                                return dp_seglog_reader_end(end, DP_SEGLOG_END_TORN, what);
                rd->at = rd->have;
                ssize_t n = dp_seglog_reader_fill(rd, 1);
                if (n < 0)
                        return (int)n;
                if (n == 0)
                        return dp_seglog_reader_end(end, DP_SEGLOG_END_ZEROS, "zero padding");
        }
}

/* The next record in *rec: 1; or 0 at the end of the records, described by
 * *end; or -errno when a read fails. */
static int dp_seglog_reader_next(struct dp_seglog_iter *rd, struct dp_seglog_rec *rec,
                                 struct dp_seglog_end *end)
{
        end->offset = rd->base + rd->at;
        ssize_t n = dp_seglog_reader_fill(rd, DP_SEGLOG_HDR_BYTES);
        if (n < 0)
                return (int)n;
        if (n == 0)
                return dp_seglog_reader_end(end, DP_SEGLOG_END_CLEAN, "end of file");
        if ((size_t)n < DP_SEGLOG_HDR_BYTES)
                return dp_seglog_reader_zeros(rd, end, "record header cut short");
        struct dp_seglog_rec_hdr h;
        memcpy(&h, rd->buf + rd->at, sizeof(h));
        uint32_t len = le32toh(h.len);
        uint16_t key_len = le16toh(h.key_len);
        if (len == 0)
                return dp_seglog_reader_zeros(rd, end, "bad record header");
        size_t padded = dp_seglog_align8(len);
        if (len < DP_SEGLOG_HDR_BYTES || padded > rd->record_bytes_max ||
            h.version != DP_SEGLOG_VERSION || h.reserved != 0 ||
            DP_SEGLOG_HDR_BYTES + (uint32_t)key_len > len)
                return dp_seglog_reader_end(end, DP_SEGLOG_END_TORN, "bad record header");
        n = dp_seglog_reader_fill(rd, padded);
        if (n < 0)
                return (int)n;
        if ((size_t)n < padded)
                return dp_seglog_reader_end(end, DP_SEGLOG_END_TORN, "record cut short");
        const uint8_t *p = rd->buf + rd->at;
        if (dp_crc32c(0, p + 4, len - 4) != le32toh(h.crc))
                return dp_seglog_reader_end(end, DP_SEGLOG_END_TORN, "CRC mismatch");
        uint64_t seq = le64toh(h.seq);
        if (seq != rd->next_seq)
                return dp_seglog_reader_end(end, DP_SEGLOG_END_BADSEQ, "sequence out of order");
        *rec = (struct dp_seglog_rec){
                .seq = seq,
                .entity = le64toh(h.entity),
                .expiry_ns = le64toh(h.expiry_ns),
                .key = p + DP_SEGLOG_HDR_BYTES,
                .payload = p + DP_SEGLOG_HDR_BYTES + key_len,
                .payload_len = len - DP_SEGLOG_HDR_BYTES - key_len,
                .key_len = key_len,
                .type = le16toh(h.type),
                .flags = le16toh(h.flags),
        };
        rd->at += padded;
        rd->next_seq++;
        return 1;
}

/* --- recovery --------------------------------------------------------------- */

static int dp_seglog_seg_cmp(const void *a, const void *b)
{
        uint64_t x = ((const struct dp_seglog_segment *)a)->first_seq;
        uint64_t y = ((const struct dp_seglog_segment *)b)->first_seq;
        return (x > y) - (x < y);
}

/* Fills segs with the segment files' first sequences, in order. */
static int dp_seglog_list(struct dp_seglog *log)
{
        int fd = openat(log->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = fd < 0 ? NULL : fdopendir(fd);
        if (d == NULL) {
                int rc = -errno;
                if (fd >= 0)
                        close(fd);
                return dp_seglog_set_error(log, rc, "cannot list the log directory", 0, 0);
        }
        struct dirent *e;
        int rc = 0;
        errno = 0;
        while ((e = readdir(d)) != NULL) {
                uint64_t first;
                if (!dp_seglog_name_parse(e->d_name, &first))
                        continue;
                if (log->nsegs == log->cfg.segments_max) {
                        rc = dp_seglog_set_error(log, -E2BIG, "more segment files than segments_max",
                                                 0, 0);
                        break;
                }
                log->segs[log->nsegs++] = (struct dp_seglog_segment){ .first_seq = first };
        }
        if (rc == 0 && errno != 0)
                rc = dp_seglog_set_error(log, -errno, "cannot list the log directory", 0, 0);
        closedir(d);
        if (rc == 0)
                qsort(log->segs, log->nsegs, sizeof(*log->segs), dp_seglog_seg_cmp);
        return rc;
}

/* Cuts the last segment after its last good record, and makes the cut and
 * what stays durable before anything is appended after it. */
static int dp_seglog_cut(struct dp_seglog *log, int fd, const struct dp_seglog_segment *s,
                         uint64_t size, uint64_t end)
{
        if (size > end && ftruncate(fd, (off_t)end) < 0)
                return dp_seglog_set_error(log, -errno, "cannot truncate the torn tail",
                                           s->first_seq, end);
        if (fdatasync(fd) < 0)
                return dp_seglog_set_error(log, -errno, "cannot sync the last segment",
                                           s->first_seq, end);
        log->stats.truncated_bytes += size - end;
        return 0;
}

/* Reads segment i through, replaying its records; *expect is the sequence
 * its first record must have, and the one after its last on return. */
static int dp_seglog_scan(struct dp_seglog *log, uint32_t i, uint64_t *expect,
                          dp_seglog_replay_fn *replay, void *arg)
{
        struct dp_seglog_segment *s = &log->segs[i];
        bool last = i + 1 == log->nsegs;
        if (i > 0 && s->first_seq != *expect)
                return dp_seglog_set_error(log, -EBADMSG, "segments do not follow on",
                                           s->first_seq, 0);
        char name[DP_SEGLOG_NAME_BYTES];
        dp_seglog_seg_name(name, s->first_seq);
        int fd = openat(log->dirfd, name, (last ? O_RDWR : O_RDONLY) | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) {
                int rc = -errno;
                if (fd >= 0)
                        close(fd);
                return dp_seglog_set_error(log, rc, "cannot open a segment", s->first_seq, 0);
        }
        struct dp_seglog_iter rd;
        dp_seglog_reader_init(&rd, fd, (uint64_t)st.st_size, log->bufs[0].mem,
                              log->cfg.buffer_bytes, s->first_seq, UINT64_MAX,
                              log->cfg.record_bytes_max);
        struct dp_seglog_rec rec;
        struct dp_seglog_end end = { 0 };
        int rc;
        while ((rc = dp_seglog_reader_next(&rd, &rec, &end)) == 1) {
                log->stats.recovered_records++;
                rc = replay != NULL ? replay(arg, &rec) : 0;
                if (rc < 0) {
                        rc = dp_seglog_set_error(log, rc, "the replay callback stopped recovery",
                                                 s->first_seq, end.offset);
                        break;
                }
        }
        if (rc < 0 && log->err.rc == 0)
                rc = dp_seglog_set_error(log, rc, "cannot read a segment", s->first_seq,
                                         rd.base + rd.at);
        else if (rc == 0 && (end.kind == DP_SEGLOG_END_BADSEQ ||
                             (end.kind == DP_SEGLOG_END_TORN && !last)))
                rc = dp_seglog_set_error(log, -EBADMSG, end.what, s->first_seq, end.offset);
        if (rc == 0) {
                s->last_seq = rd.next_seq - 1;
                s->bytes = s->written_bytes = end.offset;
                *expect = rd.next_seq;
                log->stats.recovered_segments++;
                if (last)
                        rc = dp_seglog_cut(log, fd, s, (uint64_t)st.st_size, end.offset);
                else
                        log->closed_disk_bytes += dp_seglog_disk_bytes(s->bytes);
        }
        close(fd);
        return rc;
}

/* Sets the write side up on the active (last) segment, open in fd. */
static int dp_seglog_resume(struct dp_seglog *log, int fd)
{
        struct dp_seglog_segment *a = dp_seglog_active(log);
        struct dp_seglog_buf *b = &log->bufs[0];
        log->wfd = fd;
        log->wseg_first = a->first_seq;
        *b = (struct dp_seglog_buf){ .mem = b->mem, .seg_first = a->first_seq, .off = a->bytes };
        if (log->cfg.io == DP_SEGLOG_IO_DIRECT) {
                /* The next write starts at the block the records end in:
                 * the buffer starts with that block's bytes. */
                b->off = a->bytes & ~(uint64_t)(DP_SEGLOG_ALIGN - 1);
                b->keep = b->len = (uint32_t)(a->bytes - b->off);
        }
        if (b->keep > 0) {
                char name[DP_SEGLOG_NAME_BYTES];
                dp_seglog_seg_name(name, a->first_seq);
                int rfd = openat(log->dirfd, name, O_RDONLY | O_CLOEXEC);
                ssize_t n = rfd < 0 ? -1 : pread(rfd, b->mem, b->keep, (off_t)b->off);
                int rc = n < 0 ? -errno : n != b->keep ? -EIO : 0;
                if (rfd >= 0)
                        close(rfd);
                if (rc < 0)
                        return dp_seglog_set_error(log, rc, "cannot read the last block",
                                                   a->first_seq, b->off);
        }
        log->wbuf = log->fbuf = 0;
        log->nbusy = 1;
        log->next_seq = a->last_seq + 1;
        log->written_seq = log->synced_seq = log->durable_seq = log->durable_told = a->last_seq;
        return 0;
}

int dp_seglog_recover(struct dp_seglog *log, dp_seglog_replay_fn *replay, void *arg)
{
        int rc = dp_seglog_list(log);
        if (rc < 0)
                return rc;
        const char *what = NULL;
        if (log->nsegs == 0) {
                uint64_t first = log->cfg.first_seq;
                int fd = dp_seglog_seg_create(log, first, &what);
                if (fd < 0)
                        return dp_seglog_set_error(log, fd, what, first, 0);
                log->segs[0] = (struct dp_seglog_segment){ .first_seq = first,
                                                           .last_seq = first - 1 };
                log->nsegs = 1;
                return dp_seglog_resume(log, fd);
        }
        /* The write side's file first: a refused O_DIRECT fails open before
         * replay has seen a record or a tail was cut. */
        struct dp_seglog_segment *a = dp_seglog_active(log);
        char name[DP_SEGLOG_NAME_BYTES];
        dp_seglog_seg_name(name, a->first_seq);
        int fd = dp_seglog_seg_open(log, name, 0, &what);
        if (fd < 0)
                return dp_seglog_set_error(log, fd, what, a->first_seq, 0);
        uint64_t expect = log->segs[0].first_seq;
        for (uint32_t i = 0; i < log->nsegs && rc == 0; i++)
                rc = dp_seglog_scan(log, i, &expect, replay, arg);
        /* Space given back by a cut, or never reserved: best effort, a
         * full disk shows in the writes. */
        if (rc == 0)
                (void)fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)log->cfg.segment_bytes);
        if (rc == 0)
                rc = dp_seglog_resume(log, fd);
        if (rc < 0 && log->wfd != fd)
                close(fd);
        return rc;
}

/* --- the iterator ------------------------------------------------------------ */

size_t dp_seglog_iter_bytes(const struct dp_seglog *log)
{
        return log->cfg.record_bytes_max;
}

int dp_seglog_iter_init(struct dp_seglog_iter *it, const struct dp_seglog *log,
                        uint64_t seg_first, void *buf, size_t len)
{
        it->fd = -1;
        if (!log->open)
                return -EBADF;
        const struct dp_seglog_segment *s = dp_seglog_seg_find(log, seg_first);
        if (s == NULL)
                return -ENOENT;
        if (buf == NULL || len < log->cfg.record_bytes_max)
                return -EINVAL;
        char name[DP_SEGLOG_NAME_BYTES];
        dp_seglog_seg_name(name, seg_first);
        int fd = openat(log->dirfd, name, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        /* Only what the disk has: written_bytes and written_seq move
         * together, at a write's completion. */
        uint64_t last = s->last_seq < log->written_seq ? s->last_seq : log->written_seq;
        dp_seglog_reader_init(it, fd, s->written_bytes, buf, len, s->first_seq, last,
                              log->cfg.record_bytes_max);
        return 0;
}

int dp_seglog_iter_next(struct dp_seglog_iter *it, struct dp_seglog_rec *rec)
{
        if (it->fd < 0 || it->next_seq > it->last_seq)
                return 0;
        struct dp_seglog_end end = { 0 };
        int rc = dp_seglog_reader_next(it, rec, &end);
        /* The end before last_seq: a written record that does not read back. */
        return rc == 0 ? -EBADMSG : rc;
}

void dp_seglog_iter_fini(struct dp_seglog_iter *it)
{
        if (it->fd >= 0)
                close(it->fd);
        it->fd = -1;
}

/* --- the segment list and reclaiming ------------------------------------- */

struct dp_seglog_segment *dp_seglog_seg_find(const struct dp_seglog *log, uint64_t seg_first)
{
        /* From the newest: the write path asks about the last one or two. */
        for (uint32_t i = log->nsegs; i-- > 0;)
                if (log->segs[i].first_seq == seg_first)
                        return &log->segs[i];
        return NULL;
}

uint32_t dp_seglog_segments(const struct dp_seglog *log, struct dp_seglog_segment *out,
                            uint32_t max)
{
        uint32_t n = log->nsegs < max ? log->nsegs : max;
        if (n > 0)
                memcpy(out, log->segs, n * sizeof(*out));
        return log->nsegs;
}

int dp_seglog_drop_before(struct dp_seglog *log, uint64_t seq)
{
        if (!log->open)
                return -EBADF;
        char name[DP_SEGLOG_NAME_BYTES];
        uint32_t n = 0;
        int rc = 0;
        /* Only segments before the one being written: their writes and the
         * roll barrier's fdatasync are done, nothing refers to them. */
        while (n + 1 < log->nsegs && log->segs[n].first_seq < log->wseg_first &&
               log->segs[n].last_seq < seq) {
                dp_seglog_seg_name(name, log->segs[n].first_seq);
                if (unlinkat(log->dirfd, name, 0) < 0 && errno != ENOENT) {
                        rc = -errno;
                        break;
                }
                n++;
        }
        if (n == 0)
                return rc;
        for (uint32_t i = 0; i < n; i++)
                log->closed_disk_bytes -= dp_seglog_disk_bytes(log->segs[i].bytes);
        memmove(log->segs, log->segs + n, (log->nsegs - n) * sizeof(*log->segs));
        log->nsegs -= n;
        log->stats.dropped_segments += n;
        /* Oldest first; but a filesystem might persist a later unlink and
         * not an earlier one, and recovery would find a gap: make them all
         * durable now. */
        if (fsync(log->dirfd) < 0 && rc == 0)
                rc = -errno;
        return rc < 0 ? rc : (int)n;
}
