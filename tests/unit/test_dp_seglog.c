/* test_dp_seglog.c - the disk atom's segment log: round trips under every
 * sync policy and both I/O modes, durability reports (always, batch by time
 * and by bytes, per-record sync), torn tails cut at every offset of the last
 * record and at random offsets, flipped bytes and misplaced records, zero
 * padding, segment rolls with drop_before and the iterator, O_DIRECT block
 * re-writes, the limits (directory bytes, record size, buffers, configs), a
 * second opener, a real write error from the kernel (a file size limit), and
 * a log synced on demand and adopted under another policy (compaction).
 *
 * Logs live in temporary directories under /tmp (O_DIRECT cases: the first
 * of /tmp and /var/tmp that takes O_DIRECT writes, skipped if neither does),
 * removed by the suite's fini even when a test fails. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataplane/dp_crc32c.h"
#include "dataplane/dp_seglog.h"
#include "shm/shm_clock.h"

#define MS 1000000ull
#define SEC (1000 * MS)
#define KEY_MAX 24u

/* --- temporary directories ------------------------------------------------ */

static char tmp_root[PATH_MAX];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)flag;
        (void)ftw;
        return remove(path);
}

static void rm_rf(const char *path)
{
        (void)nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void suite_fini(void)
{
        if (tmp_root[0] != '\0')
                rm_rf(tmp_root);
        tmp_root[0] = '\0';
}

TestSuite(dp_seglog, .fini = suite_fini);

static void path_join(char *out, const char *a, const char *b)
{
        int n = snprintf(out, PATH_MAX, "%s/%s", a, b);
        cr_assert(n > 0 && n < PATH_MAX);
}

/* A fresh temporary directory under root, removed at the test's end. */
static void tmp_make(const char *root)
{
        int n = snprintf(tmp_root, sizeof(tmp_root), "%s/seglog-XXXXXX", root);
        cr_assert(n > 0 && n < (int)sizeof(tmp_root));
        cr_assert_not_null(mkdtemp(tmp_root), "mkdtemp under %s: %s", root, strerror(errno));
}

/* The first of /tmp and /var/tmp that takes an aligned O_DIRECT write. */
static const char *direct_root(void)
{
        static const char *roots[] = { "/tmp", "/var/tmp" };
        void *block = NULL;
        cr_assert_eq(posix_memalign(&block, 4096, 4096), 0);
        memset(block, 0, 4096);
        const char *found = NULL;
        for (size_t i = 0; i < 2 && found == NULL; i++) {
                char path[PATH_MAX];
                snprintf(path, sizeof(path), "%s/seglog-dio-%d", roots[i], (int)getpid());
                int fd = open(path, O_CREAT | O_RDWR | O_DIRECT | O_CLOEXEC, 0600);
                if (fd >= 0 && pwrite(fd, block, 4096, 0) == 4096)
                        found = roots[i];
                if (fd >= 0)
                        close(fd);
                unlink(path);
        }
        free(block);
        return found;
}

static const char *root_for(enum dp_seglog_io io)
{
        if (io == DP_SEGLOG_IO_BUFFERED)
                return "/tmp";
        const char *root = direct_root();
        if (root == NULL)
                cr_skip_test("neither /tmp nor /var/tmp takes O_DIRECT writes: O_DIRECT cases skipped");
        return root;
}

static void copy_file(const char *src, const char *dst)
{
        int in = open(src, O_RDONLY | O_CLOEXEC);
        int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        cr_assert(in >= 0 && out >= 0, "copy %s: %s", src, strerror(errno));
        static char buf[65536];
        ssize_t n;
        while ((n = read(in, buf, sizeof(buf))) > 0)
                cr_assert_eq(write(out, buf, (size_t)n), n);
        cr_assert_eq(n, 0);
        close(in);
        close(out);
}

static void copy_dir(const char *src, const char *dst)
{
        cr_assert_eq(mkdir(dst, 0700), 0);
        DIR *d = opendir(src);
        cr_assert_not_null(d);
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
                if (e->d_name[0] == '.')
                        continue;
                char a[PATH_MAX], b[PATH_MAX];
                path_join(a, src, e->d_name);
                path_join(b, dst, e->d_name);
                copy_file(a, b);
        }
        closedir(d);
}

static void seg_path(char *out, const char *dir, uint64_t first_seq)
{
        char name[32];
        snprintf(name, sizeof(name), "%020llu.seg", (unsigned long long)first_seq);
        path_join(out, dir, name);
}

static int64_t file_size(const char *path)
{
        struct stat st;
        return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

/* Files and their total size in dir. */
static uint32_t dir_files(const char *dir, uint64_t *bytes)
{
        DIR *d = opendir(dir);
        cr_assert_not_null(d);
        struct dirent *e;
        uint32_t n = 0;
        *bytes = 0;
        while ((e = readdir(d)) != NULL) {
                if (e->d_name[0] == '.')
                        continue;
                char p[PATH_MAX];
                path_join(p, dir, e->d_name);
                *bytes += (uint64_t)file_size(p);
                n++;
        }
        closedir(d);
        return n;
}

/* --- records: each is a pure function of its sequence ------------------- */

static const uint32_t payload_sizes[] = { 0, 1, 7, 8, 33, 100, 511, 1000, 2048, 4000, 9000, 16000 };
#define NSIZES (sizeof(payload_sizes) / sizeof(payload_sizes[0]))

struct gen_rec {
        struct dp_seglog_rec r;
        char key[KEY_MAX];
        uint8_t payload[1u << 16];
};

static uint32_t gen_payload_len(uint64_t seq, uint32_t payload_max)
{
        uint32_t len = payload_sizes[(seq * 7) % NSIZES];
        return len < payload_max ? len : payload_max;
}

static void gen(struct gen_rec *g, uint64_t seq, uint32_t payload_max)
{
        int kl = seq % 11 == 0 ? 0 : snprintf(g->key, sizeof(g->key), "orders.%llu",
                                                (unsigned long long)seq);
        uint32_t pl = gen_payload_len(seq, payload_max);
        for (uint32_t i = 0; i < pl; i++)
                g->payload[i] = (uint8_t)(seq * 131 + i * 7);
        g->r = (struct dp_seglog_rec){
                .entity = seq * 1000003,
                .expiry_ns = seq % 3 ? 0 : 1700000000000000000ull + seq,
                .key = g->key,
                .key_len = (uint16_t)kl,
                .payload = g->payload,
                .payload_len = pl,
                .type = (uint16_t)(seq % 5),
                .flags = (uint16_t)(seq * 3),
        };
}

/* Bytes the record of seq takes on disk. */
static uint64_t gen_bytes(uint64_t seq, uint32_t payload_max)
{
        static struct gen_rec g;
        gen(&g, seq, payload_max);
        return (40u + g.r.key_len + g.r.payload_len + 7) & ~7ull;
}

static void expect_rec(const struct dp_seglog_rec *r, uint32_t payload_max)
{
        static struct gen_rec g;
        gen(&g, r->seq, payload_max);
        cr_assert_eq(r->type, g.r.type, "seq %llu type", (unsigned long long)r->seq);
        cr_assert_eq(r->flags, g.r.flags);
        cr_assert_eq(r->entity, g.r.entity);
        cr_assert_eq(r->expiry_ns, g.r.expiry_ns);
        cr_assert_eq(r->key_len, g.r.key_len, "seq %llu key_len", (unsigned long long)r->seq);
        cr_assert_eq(r->payload_len, g.r.payload_len, "seq %llu payload_len %u, want %u",
                     (unsigned long long)r->seq, r->payload_len, g.r.payload_len);
        cr_assert_eq(memcmp(r->key, g.r.key, g.r.key_len), 0);
        cr_assert_eq(memcmp(r->payload, g.r.payload, g.r.payload_len), 0,
                     "seq %llu payload differs", (unsigned long long)r->seq);
}

/* What replay saw: every record strictly in order and, with a payload_max,
 * checked against gen. */
struct seen {
        uint64_t n;
        uint64_t first;
        uint64_t last;
        uint32_t payload_max;
};

static int replay_check(void *arg, const struct dp_seglog_rec *r)
{
        struct seen *s = arg;
        if (s->n == 0)
                s->first = r->seq;
        else
                cr_assert_eq(r->seq, s->last + 1, "replayed out of order");
        if (s->payload_max != 0)
                expect_rec(r, s->payload_max);
        s->last = r->seq;
        s->n++;
        return 0;
}

/* The durability callback's view. */
struct durable_log {
        uint64_t last;
        uint32_t calls;
};

static void on_durable(void *arg, uint64_t seq)
{
        struct durable_log *d = arg;
        cr_assert_gt(seq, d->last, "durable_seq moves only forward");
        d->last = seq;
        d->calls++;
}

/* --- the log --------------------------------------------------------------- */

static struct dp_seglog *log_new(void)
{
        struct dp_seglog *log = calloc(1, dp_seglog_size());
        cr_assert_not_null(log);
        return log;
}

/* Small geometry: records up to 16 KiB, 32 KiB buffers, 256 KiB segments. */
static void cfg_small(struct dp_seglog_config *cfg, const char *dir, enum dp_seglog_io io,
                      enum dp_seglog_sync sync)
{
        dp_seglog_config_default(cfg);
        cfg->dir = dir;
        cfg->io = io;
        cfg->sync = sync;
        cfg->record_bytes_max = 16384;
        cfg->buffer_bytes = 32768;
        cfg->segment_bytes = 256 * 1024;
        cfg->batch_us = 2000;
        cfg->batch_bytes = 64 * 1024;
}

static uint32_t payload_max_of(const struct dp_seglog_config *cfg)
{
        return cfg->record_bytes_max - 40 - KEY_MAX - 8;
}

/* Opens, or skips when O_DIRECT is refused; pmax 0: records not from gen. */
static void open_ok(struct dp_seglog *log, const struct dp_seglog_config *cfg, struct seen *s,
                    uint32_t pmax)
{
        memset(s, 0, sizeof(*s));
        s->payload_max = pmax;
        int rc = dp_seglog_open(log, cfg, replay_check, s);
        const struct dp_seglog_error *e = dp_seglog_error(log);
        if (rc == -EINVAL && cfg->io == DP_SEGLOG_IO_DIRECT && strstr(e->what, "O_DIRECT") != NULL)
                cr_skip_test("%s: O_DIRECT cases skipped", e->what);
        cr_assert_eq(rc, 0, "open: %d (%s) file '%s' offset %llu", rc, e->what, e->file,
                     (unsigned long long)e->offset);
}

/* Polls (sleeping 100 us between, never spinning) until cond holds, 5 s at most. */
#define POLL_UNTIL(log, cond)                                                           \
        do {                                                                            \
                uint64_t deadline_ = shm_clock_ns() + 5 * SEC;                          \
                while (!(cond)) {                                                       \
                        int prc_ = dp_seglog_poll((log), shm_clock_ns());               \
                        cr_assert_geq(prc_, 0, "poll: %d", prc_);                       \
                        if (cond)                                                       \
                                break;                                                  \
                        cr_assert_lt(shm_clock_ns(), deadline_, "timed out: %s", #cond); \
                        usleep(100);                                                    \
                }                                                                       \
        } while (0)

/* Appends gen(seq), polling while the buffers are all busy. */
static void append_gen(struct dp_seglog *log, uint64_t seq, uint32_t payload_max, unsigned opts)
{
        static struct gen_rec g;
        gen(&g, seq, payload_max);
        uint64_t got = 0;
        uint64_t deadline = shm_clock_ns() + 5 * SEC;
        int rc;
        while ((rc = dp_seglog_append(log, &g.r, opts, &got)) == -ENOBUFS) {
                cr_assert_geq(dp_seglog_poll(log, shm_clock_ns()), 0);
                cr_assert_lt(shm_clock_ns(), deadline, "buffers never freed");
                usleep(50);
        }
        cr_assert_eq(rc, 0, "append seq %llu: %d", (unsigned long long)seq, rc);
        cr_assert_eq(got, seq);
}

/* A record of exactly `bytes` on disk (a multiple of 8, >= 40). */
static int append_sized(struct dp_seglog *log, uint32_t bytes, unsigned opts, uint64_t *seq)
{
        static uint8_t payload[1u << 16];
        struct dp_seglog_rec r = { .payload = payload, .payload_len = bytes - 40, .type = 9 };
        return dp_seglog_append(log, &r, opts, seq);
}

/* --- round trips ------------------------------------------------------------ */

/* N records of mixed sizes (several segments), close, reopen: all back,
 * once, in order, byte-identical; the sequence goes on, and again. */
static void roundtrip(enum dp_seglog_io io, enum dp_seglog_sync sync)
{
        tmp_make(root_for(io));
        char dir[PATH_MAX];
        path_join(dir, tmp_root, "w0");
        struct dp_seglog_config cfg;
        struct durable_log dl = { 0 };
        cfg_small(&cfg, dir, io, sync);
        cfg.on_durable = on_durable;
        cfg.durable_arg = &dl;
        uint32_t pmax = payload_max_of(&cfg);
        struct dp_seglog *log = log_new();
        struct seen s;
        open_ok(log, &cfg, &s, pmax);
        cr_assert_eq(s.n, 0);
        cr_assert_eq(dp_seglog_next_seq(log), 1);
        const uint64_t n = 400;
        for (uint64_t seq = 1; seq <= n; seq++) {
                append_gen(log, seq, pmax, 0);
                if (seq % 3 == 0)
                        cr_assert_geq(dp_seglog_poll(log, shm_clock_ns()), 0);
        }
        /* (Under batch, by the interval.) A segment file is made when its
         * first write is due: then the rolls are all counted. */
        POLL_UNTIL(log, dp_seglog_written_seq(log) == n);
        struct dp_seglog_segment segs[64];
        uint32_t nsegs = dp_seglog_segments(log, segs, 64);
        cr_assert_geq(nsegs, 3, "%u segments: the test wants rolls", nsegs);
        cr_assert_eq(dp_seglog_stats(log)->rolls + 1, nsegs);
        cr_assert_eq(dp_seglog_stats(log)->appends, n);
        cr_assert_eq(dp_seglog_close(log), 0);
        cr_assert_eq(dl.last, n, "close reports the end");
        cr_assert_leq(dl.calls, n);

        open_ok(log, &cfg, &s, pmax);
        cr_assert_eq(s.n, n);
        cr_assert_eq(s.first, 1);
        cr_assert_eq(s.last, n);
        cr_assert_eq(dp_seglog_next_seq(log), n + 1);
        cr_assert_eq(dp_seglog_durable_seq(log), n);
        cr_assert_eq(dp_seglog_stats(log)->recovered_records, n);
        cr_assert_eq(dp_seglog_stats(log)->recovered_segments, nsegs);
        for (uint64_t seq = n + 1; seq <= n + 50; seq++)
                append_gen(log, seq, pmax, 0);
        cr_assert_eq(dp_seglog_close(log), 0);

        open_ok(log, &cfg, &s, pmax);
        cr_assert_eq(s.n, n + 50);
        cr_assert_eq(s.last, n + 50);
        cr_assert_eq(dp_seglog_close(log), 0);
        free(log);
}

/* A log opened with a provisional policy (a compaction's): sync_now makes
 * everything durable whatever the policy, survives a rename of its
 * directory, and set_policy gives it its callback and policy from then on,
 * without reporting what was durable before. */
static void sync_now_and_adopt(enum dp_seglog_io io)
{
        tmp_make(root_for(io));
        char dir[PATH_MAX], moved[PATH_MAX];
        path_join(dir, tmp_root, "w0.next");
        path_join(moved, tmp_root, "w0");
        struct dp_seglog_config cfg;
        cfg_small(&cfg, dir, io, DP_SEGLOG_SYNC_BATCH);
        cfg.batch_us = 10u * 1000 * 1000;   /* never by the clock in this test */
        cfg.batch_bytes = 1u << 30;
        uint32_t pmax = payload_max_of(&cfg);
        struct dp_seglog *log = log_new();
        struct seen s;
        open_ok(log, &cfg, &s, pmax);
        for (uint64_t seq = 1; seq <= 40; seq++)
                append_gen(log, seq, pmax, 0);
        cr_assert_eq(dp_seglog_durable_seq(log), 0, "nothing synced by the policy yet");
        cr_assert_eq(dp_seglog_sync_now(log), 0);
        cr_assert_eq(dp_seglog_durable_seq(log), 40);
        cr_assert_eq(dp_seglog_written_seq(log), 40);
        cr_assert_eq(rename(dir, moved), 0);
        struct durable_log dl = { 0 };
        cr_assert_eq(dp_seglog_set_policy(log, 99, 0, NULL, NULL), -EINVAL);
        cr_assert_eq(dp_seglog_set_policy(log, DP_SEGLOG_SYNC_ALWAYS, 0, on_durable, &dl), 0);
        for (uint64_t seq = 41; seq <= 45; seq++)
                append_gen(log, seq, pmax, 0);
        POLL_UNTIL(log, dp_seglog_durable_seq(log) == 45);
        cr_assert_eq(dl.last, 45, "the new callback hears of the new records");
        cr_assert_geq(dl.calls, 1);
        cr_assert_eq(dp_seglog_close(log), 0);
        cr_assert_eq(dl.last, 45);
        /* Everything is where the directory went. */
        cfg.dir = moved;
        open_ok(log, &cfg, &s, pmax);
        cr_assert_eq(s.n, 45);
        cr_assert_eq(s.last, 45);
        cr_assert_eq(dp_seglog_close(log), 0);
        cr_assert_eq(dp_seglog_sync_now(log), -EBADF, "not open");
        free(log);
}

Test(dp_seglog, sync_now_and_adopt_buffered) { sync_now_and_adopt(DP_SEGLOG_IO_BUFFERED); }
Test(dp_seglog, sync_now_and_adopt_direct) { sync_now_and_adopt(DP_SEGLOG_IO_DIRECT); }

Test(dp_seglog, roundtrip_buffered_always) { roundtrip(DP_SEGLOG_IO_BUFFERED, DP_SEGLOG_SYNC_ALWAYS); }
Test(dp_seglog, roundtrip_buffered_batch) { roundtrip(DP_SEGLOG_IO_BUFFERED, DP_SEGLOG_SYNC_BATCH); }
Test(dp_seglog, roundtrip_buffered_none) { roundtrip(DP_SEGLOG_IO_BUFFERED, DP_SEGLOG_SYNC_NONE); }
Test(dp_seglog, roundtrip_direct_always) { roundtrip(DP_SEGLOG_IO_DIRECT, DP_SEGLOG_SYNC_ALWAYS); }
Test(dp_seglog, roundtrip_direct_batch) { roundtrip(DP_SEGLOG_IO_DIRECT, DP_SEGLOG_SYNC_BATCH); }
Test(dp_seglog, roundtrip_direct_none) { roundtrip(DP_SEGLOG_IO_DIRECT, DP_SEGLOG_SYNC_NONE); }

/* O_DIRECT writes whole blocks, zero-padded, and re-writes the last one;
 * recovery in either mode reads the other's files. */
Test(dp_seglog, direct_pads_blocks_rewrites_the_tail_and_reads_back_buffered)
{
        tmp_make(root_for(DP_SEGLOG_IO_DIRECT));
        char dir[PATH_MAX], seg[PATH_MAX];
        path_join(dir, tmp_root, "w0");
        seg_path(seg, dir, 1);
        struct dp_seglog_config cfg;
        cfg_small(&cfg, dir, DP_SEGLOG_IO_DIRECT, DP_SEGLOG_SYNC_ALWAYS);
        struct dp_seglog *log = log_new();
        struct seen s;
        open_ok(log, &cfg, &s, 0);
        uint64_t seq;
        cr_assert_eq(append_sized(log, 104, 0, &seq), 0);
        POLL_UNTIL(log, dp_seglog_durable_seq(log) == 1);
        cr_assert_eq(file_size(seg), 4096, "one padded block");
        cr_assert_eq(dp_seglog_stats(log)->write_bytes, 4096);
        cr_assert_eq(append_sized(log, 200, 0, &seq), 0);
        POLL_UNTIL(log, dp_seglog_durable_seq(log) == 2);
        cr_assert_eq(file_size(seg), 4096);
        cr_assert_eq(dp_seglog_stats(log)->write_bytes, 8192, "the block went out again");
        /* Past the block: two blocks written, the first re-written. */
        cr_assert_eq(append_sized(log, 4096, 0, &seq), 0);
        POLL_UNTIL(log, dp_seglog_durable_seq(log) == 3);
        cr_assert_eq(file_size(seg), 8192);
        cr_assert_eq(dp_seglog_close(log), 0);

        cfg.io = DP_SEGLOG_IO_BUFFERED;
        memset(&s, 0, sizeof(s));
        cr_assert_eq(dp_seglog_open(log, &cfg, NULL, NULL), 0);
        cr_assert_eq(dp_seglog_next_seq(log), 4);
        cr_assert_eq(file_size(seg), 104 + 200 + 4096, "recovery cut the padding");
        cr_assert_eq(dp_seglog_stats(log)->truncated_bytes, 8192 - (104 + 200 + 4096));
        cr_assert_eq(append_sized(log, 48, 0, &seq), 0);
        cr_assert_eq(dp_seglog_close(log), 0);
        cfg.io = DP_SEGLOG_IO_DIRECT;
        cr_assert_eq(dp_seglog_open(log, &cfg, NULL, NULL), 0);
        cr_assert_eq(dp_seglog_next_seq(log), 5);
        cr_assert_eq(append_sized(log, 48, 0, &seq), 0);
        cr_assert_eq(seq, 5);
        cr_assert_eq(dp_seglog_close(log), 0);
        cr_assert_eq(dp_seglog_open(log, &cfg, NULL, NULL), 0);
        cr_assert_eq(dp_seglog_next_seq(log), 6);
        cr_assert_eq(dp_seglog_stats(log)->recovered_records, 5);
        cr_assert_eq(dp_seglog_close(log), 0);
        free(log);
}

/* --- durability ---------------------------------------------------------------- */

/* A buffered log in a fresh temp directory, reporting durability to dl. */
static struct dp_seglog *durable_log_open(struct dp_seglog_config *cfg, struct durable_log *dl,
                                          enum dp_seglog_sync sync)
{
        struct seen s;
        tmp_make("/tmp");
        cfg_small(cfg, tmp_root, DP_SEGLOG_IO_BUFFERED, sync);
        cfg->on_durable = on_durable;
        cfg->durable_arg = dl;
        struct dp_seglog *log = log_new();
        open_ok(log, cfg, &s, 0);
        return log;
}

Test(dp_seglog, always_reports_durable_only_after_a_poll_reaps_the_fdatasync)
{
        struct dp_seglog_config cfg;
        struct durable_log dl = { 0 };
        struct dp_seglog *log = durable_log_open(&cfg, &dl, DP_SEGLOG_SYNC_ALWAYS);
        uint32_t pmax = payload_max_of(&cfg);
        for (uint64_t seq = 1; seq <= 3; seq++)
                append_gen(log, seq, pmax, 0);
        cr_assert_eq(dp_seglog_written_seq(log), 0, "append writes nothing");
        cr_assert_eq(dp_seglog_durable_seq(log), 0);
        cr_assert_eq(dp_seglog_next_ns(log), 0, "work to do");
        cr_assert_gt(dp_seglog_poll(log, shm_clock_ns()), 0, "the poll submits");
        cr_assert_eq(dp_seglog_durable_seq(log), 0, "a poll reaps before it submits");
        /* However long the kernel takes, nothing is reported without a poll. */
        usleep(20000);
        cr_assert_eq(dp_seglog_durable_seq(log), 0);
        cr_assert_eq(dl.calls, 0);
        POLL_UNTIL(log, dp_seglog_durable_seq(log) == 3);
        cr_assert_eq(dl.last, 3);
        cr_assert_eq(dl.calls, 1);
        cr_assert_eq(dp_seglog_written_seq(log), 3);
        const struct dp_seglog_stats *st = dp_seglog_stats(log);
        cr_assert_eq(st->syncs, 1);
        cr_assert_eq(st->writes, 1, "one write for the three: a group commit");
        cr_assert_gt(st->sync_ns_max, 0);
        append_gen(log, 4, pmax, 0);
        cr_assert_eq(dp_seglog_durable_seq(log), 3);
        POLL_UNTIL(log, dp_seglog_durable_seq(log) == 4);
        cr_assert_eq(dl.last, 4);
        cr_assert_eq(dl.calls, 2);
        cr_assert_eq(dp_seglog_next_ns(log), UINT64_MAX, "idle");
        cr_assert_eq(dp_seglog_close(log), 0);
        free(log);
}

/* Under batch what is appended is written at the next poll but not
 * synced: written, not durable, until the fdatasync. */
Test(dp_seglog, written_is_not_durable_until_the_fdatasync)
{
        tmp_make("/tmp");
        struct dp_seglog_config cfg;
        struct durable_log dl = { 0 };
        cfg_small(&cfg, tmp_root, DP_SEGLOG_IO_BUFFERED, DP_SEGLOG_SYNC_BATCH);
        cfg.batch_us = 3600u * 1000 * 1000;
        cfg.batch_bytes = 1u << 30;
        cfg.on_durable = on_durable;
        cfg.durable_arg = &dl;
        struct dp_seglog *log = log_new();
        struct seen s;
        open_ok(log, &cfg, &s, 0);
        uint64_t seq;
        for (int i = 0; i < 40; i++)   /* 40000 bytes: one 32 KiB buffer fills */
                cr_assert_eq(append_sized(log, 1000, 0, &seq), 0);
        POLL_UNTIL(log, dp_seglog_written_seq(log) == 40);
        for (int i = 0; i < 5; i++) {
                cr_assert_eq(dp_seglog_poll(log, shm_clock_ns()), 0);
                usleep(1000);
        }
        cr_assert_eq(dp_seglog_written_seq(log), 40, "written at once");
        cr_assert_eq(dp_seglog_durable_seq(log), 0, "not synced before the interval");
        cr_assert_eq(dl.calls, 0);
        cr_assert_eq(dp_seglog_stats(log)->syncs, 0);
        cr_assert_eq(append_sized(log, 1000, DP_SEGLOG_APPEND_SYNC, &seq), 0);
        POLL_UNTIL(log, dp_seglog_durable_seq(log) == 41);
        cr_assert_eq(dl.last, 41);
        cr_assert_eq(dp_seglog_stats(log)->syncs, 1);
        cr_assert_eq(dp_seglog_close(log), 0);
        free(log);
}

/* A record appended while a write+sync is in flight was not in that write:
 * its completion must not report the record durable. */
Test(dp_seglog, a_sync_covers_only_what_was_written_before_it)
{
        struct dp_seglog_config cfg;
        struct durable_log dl = { 0 };
        struct dp_seglog *log = durable_log_open(&cfg, &dl, DP_SEGLOG_SYNC_ALWAYS);
        uint64_t seq;
        cr_assert_eq(append_sized(log, 64, 0, &seq), 0);
        cr_assert_gt(dp_seglog_poll(log, shm_clock_ns()), 0);
        cr_assert_eq(append_sized(log, 64, 0, &seq), 0);
        POLL_UNTIL(log, dl.calls >= 1);
        cr_assert_eq(dl.last, 1, "the first sync reports record 1 only");
        POLL_UNTIL(log, dp_seglog_durable_seq(log) == 2);
        cr_assert_eq(dl.calls, 2);
        cr_assert_eq(dp_seglog_stats(log)->syncs, 2);
        cr_assert_eq(dp_seglog_close(log), 0);
        free(log);
}

/* A buffered log writes at each poll even while an fdatasync is in flight
 * (it runs on the io_uring; the write is inline), and that sync still
 * reports only what it covered. */
Test(dp_seglog, buffered_writes_do_not_wait_for_a_sync_in_flight)
{
        struct dp_seglog_config cfg;
        struct durable_log dl = { 0 };
        struct dp_seglog *log = durable_log_open(&cfg, &dl, DP_SEGLOG_SYNC_ALWAYS);
        uint64_t seq;
        for (uint64_t n = 1; n <= 20; n++) {
                cr_assert_eq(append_sized(log, 64, 0, &seq), 0);
                cr_assert_geq(dp_seglog_poll(log, shm_clock_ns()), 0);
                /* A poll reaps before it writes and submits: the sync it
                 * started cannot have been reaped by it. */
                cr_assert_eq(dp_seglog_written_seq(log), n, "written in the poll itself");
                cr_assert_lt(dp_seglog_durable_seq(log), n);
                cr_assert_eq(dl.last, dp_seglog_durable_seq(log));
        }
        POLL_UNTIL(log, dp_seglog_durable_seq(log) == 20);
        const struct dp_seglog_stats *st = dp_seglog_stats(log);
        cr_assert_eq(st->writes, 20);
        cr_assert_leq(st->syncs, 20);
        cr_assert_eq(dp_seglog_close(log), 0);
        free(log);
}

/* Polls at a fixed (fake) now until durable reaches seq. */
static void poll_at_until_durable(struct dp_seglog *log, uint64_t now_ns, uint64_t seq)
{
        uint64_t deadline = shm_clock_ns() + 5 * SEC;
        while (dp_seglog_durable_seq(log) < seq) {
                cr_assert_geq(dp_seglog_poll(log, now_ns), 0);
                cr_assert_lt(shm_clock_ns(), deadline);
                usleep(100);
        }
}

Test(dp_seglog, batch_syncs_once_the_interval_has_passed)
{
        tmp_make("/tmp");
        struct dp_seglog_config cfg;
        struct durable_log dl = { 0 };
        cfg_small(&cfg, tmp_root, DP_SEGLOG_IO_BUFFERED, DP_SEGLOG_SYNC_BATCH);
        cfg.batch_us = 10000;
        cfg.batch_bytes = 1u << 30;
        cfg.on_durable = on_durable;
        cfg.durable_arg = &dl;
        struct dp_seglog *log = log_new();
        struct seen s;
        open_ok(log, &cfg, &s, 0);
        uint32_t pmax = payload_max_of(&cfg);
        const uint64_t t0 = 1000 * SEC;
        for (uint64_t seq = 1; seq <= 5; seq++)
                append_gen(log, seq, pmax, 0);
        cr_assert_gt(dp_seglog_poll(log, t0), 0, "written at once; the interval starts");
        const struct dp_seglog_stats *st = dp_seglog_stats(log);
        uint64_t deadline = shm_clock_ns() + 5 * SEC;
        while (dp_seglog_written_seq(log) < 5) {
                cr_assert_geq(dp_seglog_poll(log, t0), 0);
                cr_assert_lt(shm_clock_ns(), deadline);
                usleep(100);
        }
        cr_assert_eq(dp_seglog_next_ns(log), t0 + 10 * MS);
        /* Real time passes; the caller's clock says 9.999 ms. */
        usleep(20000);
        cr_assert_eq(dp_seglog_poll(log, t0 + 10 * MS - 1), 0);
        cr_assert_eq(st->writes, 1, "the records went out at once");
        cr_assert_eq(st->syncs, 0);
        cr_assert_eq(dp_seglog_durable_seq(log), 0);
        cr_assert_gt(dp_seglog_poll(log, t0 + 10 * MS), 0, "due: the sync");
        poll_at_until_durable(log, t0 + 10 * MS, 5);
        cr_assert_eq(st->writes, 1);
        cr_assert_eq(st->syncs, 1);
        cr_assert_eq(dl.last, 5);
        cr_assert_eq(dl.calls, 1);
        /* The next record's interval starts at the poll that sees it. */
        append_gen(log, 6, pmax, 0);
        const uint64_t t1 = t0 + 50 * MS;
        cr_assert_gt(dp_seglog_poll(log, t1), 0, "written at once");
        while (dp_seglog_written_seq(log) < 6) {
                cr_assert_geq(dp_seglog_poll(log, t1), 0);
                usleep(100);
        }
        cr_assert_eq(dp_seglog_poll(log, t1 + 9 * MS), 0);
        cr_assert_eq(dp_seglog_durable_seq(log), 5);
        poll_at_until_durable(log, t1 + 10 * MS, 6);
        cr_assert_eq(st->syncs, 2);
        cr_assert_eq(dp_seglog_close(log), 0);
        free(log);
}

Test(dp_seglog, batch_syncs_once_the_bytes_are_buffered)
{
        tmp_make("/tmp");
        struct dp_seglog_config cfg;
        cfg_small(&cfg, tmp_root, DP_SEGLOG_IO_BUFFERED, DP_SEGLOG_SYNC_BATCH);
        cfg.batch_us = 3600u * 1000 * 1000;   /* an hour: only bytes can trigger */
        cfg.batch_bytes = 8192;
        struct dp_seglog *log = log_new();
        struct seen s;
        open_ok(log, &cfg, &s, 0);
        uint64_t seq;
        for (int i = 0; i < 8; i++)
                cr_assert_eq(append_sized(log, 1000, 0, &seq), 0);
        POLL_UNTIL(log, dp_seglog_written_seq(log) == 8);
        for (int i = 0; i < 5; i++) {
                cr_assert_eq(dp_seglog_poll(log, shm_clock_ns()), 0);
                usleep(2000);
        }
        cr_assert_eq(dp_seglog_durable_seq(log), 0, "8000 bytes are below the trigger");
        cr_assert_eq(dp_seglog_stats(log)->syncs, 0);
        cr_assert_eq(append_sized(log, 1000, 0, &seq), 0);
        POLL_UNTIL(log, dp_seglog_durable_seq(log) == 9);
        cr_assert_eq(dp_seglog_stats(log)->syncs, 1);
        cr_assert_eq(dp_seglog_close(log), 0);
        free(log);
}

Test(dp_seglog, a_sync_flagged_record_overrides_a_lazy_policy)
{
        tmp_make("/tmp");
        struct dp_seglog_config cfg;
        cfg_small(&cfg, tmp_root, DP_SEGLOG_IO_BUFFERED, DP_SEGLOG_SYNC_BATCH);
        cfg.batch_us = 3600u * 1000 * 1000;
        cfg.batch_bytes = 1u << 30;
        struct dp_seglog *log = log_new();
        struct seen s;
        open_ok(log, &cfg, &s, 0);
        uint64_t seq;
        for (int i = 0; i < 3; i++)
                cr_assert_eq(append_sized(log, 64, 0, &seq), 0);
        POLL_UNTIL(log, dp_seglog_written_seq(log) == 3);
        cr_assert_eq(dp_seglog_poll(log, shm_clock_ns()), 0, "batch: no sync due");
        cr_assert_eq(dp_seglog_durable_seq(log), 0);
        cr_assert_eq(append_sized(log, 64, DP_SEGLOG_APPEND_SYNC, &seq), 0);
        cr_assert_eq(dp_seglog_next_ns(log), 0);
        POLL_UNTIL(log, dp_seglog_durable_seq(log) == 4);
        cr_assert_eq(dp_seglog_stats(log)->syncs, 1);
        cr_assert_eq(dp_seglog_close(log), 0);

        /* Under `none` the flag still buys an fdatasync. */
        cfg.sync = DP_SEGLOG_SYNC_NONE;
        open_ok(log, &cfg, &s, 0);
        cr_assert_eq(append_sized(log, 64, 0, &seq), 0);
        POLL_UNTIL(log, dp_seglog_written_seq(log) == 5);
        cr_assert_eq(dp_seglog_durable_seq(log), 5, "none: durable is written");
        cr_assert_eq(dp_seglog_stats(log)->syncs, 0);
        cr_assert_eq(append_sized(log, 64, DP_SEGLOG_APPEND_SYNC, &seq), 0);
        POLL_UNTIL(log, dp_seglog_stats(log)->syncs == 1);
        cr_assert_eq(dp_seglog_durable_seq(log), 6);
        cr_assert_eq(dp_seglog_close(log), 0);
        free(log);
}

Test(dp_seglog, none_writes_without_syncing)
{
        struct dp_seglog_config cfg;
        struct durable_log dl = { 0 };
        struct dp_seglog *log = durable_log_open(&cfg, &dl, DP_SEGLOG_SYNC_NONE);
        uint64_t seq;
        for (int i = 0; i < 100; i++) {
                cr_assert_eq(append_sized(log, 512, 0, &seq), 0);
                cr_assert_geq(dp_seglog_poll(log, shm_clock_ns()), 0);
        }
        POLL_UNTIL(log, dp_seglog_written_seq(log) == 100);
        cr_assert_eq(dp_seglog_durable_seq(log), 100);
        cr_assert_eq(dl.last, 100);
        cr_assert_eq(dp_seglog_stats(log)->syncs, 0, "one segment: no roll barrier either");
        cr_assert_eq(dp_seglog_close(log), 0);
        cr_assert_eq(dp_seglog_stats(log)->syncs, 0, "close does not sync under none");
        free(log);
}

/* --- torn tails and damage ---------------------------------------------------- */

/* A log of several small segments, written once per test, and where the
 * records of its last segment end. */
struct pristine {
        char dir[PATH_MAX];
        struct dp_seglog_config cfg;
        uint32_t pmax;
        uint64_t n;                 /* records */
        struct dp_seglog_segment segs[32];
        uint32_t nsegs;
        uint64_t ends[256];         /* end offsets of the last segment's records */
        uint32_t nlast;
};

/* 47 records: gen gives the 47th a 100-byte payload and a 9-byte key, 152
 * bytes on disk, so "every offset of the last record" stays cheap. */
static void pristine_make(struct pristine *p)
{
        tmp_make("/tmp");
        path_join(p->dir, tmp_root, "pristine");
        cfg_small(&p->cfg, p->dir, DP_SEGLOG_IO_BUFFERED, DP_SEGLOG_SYNC_NONE);
        p->cfg.record_bytes_max = 4096;
        p->cfg.buffer_bytes = 8192;
        p->cfg.segment_bytes = 16384;
        p->pmax = payload_max_of(&p->cfg);
        p->n = 47;
        struct dp_seglog *log = log_new();
        struct seen s;
        open_ok(log, &p->cfg, &s, p->pmax);
        for (uint64_t seq = 1; seq <= p->n; seq++)
                append_gen(log, seq, p->pmax, 0);
        POLL_UNTIL(log, dp_seglog_written_seq(log) == p->n);
        p->nsegs = dp_seglog_segments(log, p->segs, 32);
        cr_assert_geq(p->nsegs, 3);
        cr_assert_eq(dp_seglog_close(log), 0);
        free(log);
        const struct dp_seglog_segment *last = &p->segs[p->nsegs - 1];
        cr_assert_eq(last->last_seq, p->n);
        uint64_t off = 0;
        p->nlast = 0;
        for (uint64_t seq = last->first_seq; seq <= last->last_seq; seq++) {
                off += gen_bytes(seq, p->pmax);
                p->ends[p->nlast++] = off;
        }
        cr_assert_eq(off, last->bytes);
        cr_assert_eq(gen_bytes(p->n, p->pmax), 152);
}

/* The copy of the pristine log in work, with the last segment cut at cut:
 * recovery must give exactly the records that end at or before it, cut the
 * file there, and take (and keep) a new record after them. */
static void cut_case(const struct pristine *p, const char *work, uint64_t cut,
                     enum dp_seglog_io io)
{
        const struct dp_seglog_segment *last = &p->segs[p->nsegs - 1];
        char seg[PATH_MAX];
        copy_dir(p->dir, work);
        seg_path(seg, work, last->first_seq);
        cr_assert_eq(truncate(seg, (off_t)cut), 0);
        uint32_t k = 0;
        while (k < p->nlast && p->ends[k] <= cut)
                k++;
        uint64_t good_end = k == 0 ? 0 : p->ends[k - 1];
        uint64_t want_last = last->first_seq - 1 + k;

        struct dp_seglog_config cfg = p->cfg;
        cfg.dir = work;
        cfg.io = io;
        struct dp_seglog *log = log_new();
        struct seen s;
        open_ok(log, &cfg, &s, p->pmax);
        cr_assert_eq(s.n, want_last, "cut at %llu: %llu records, want %llu",
                     (unsigned long long)cut, (unsigned long long)s.n,
                     (unsigned long long)want_last);
        cr_assert_eq(file_size(seg), (int64_t)good_end, "cut at %llu", (unsigned long long)cut);
        cr_assert_eq(dp_seglog_stats(log)->truncated_bytes, cut - good_end);
        cr_assert_eq(dp_seglog_next_seq(log), want_last + 1);
        append_gen(log, want_last + 1, p->pmax, 0);
        cr_assert_eq(dp_seglog_close(log), 0);
        open_ok(log, &cfg, &s, p->pmax);
        cr_assert_eq(s.n, want_last + 1, "the new record is recoverable (cut %llu)",
                     (unsigned long long)cut);
        cr_assert_eq(dp_seglog_close(log), 0);
        free(log);
        rm_rf(work);
}

Test(dp_seglog, torn_tail_at_every_offset_of_the_last_record)
{
        static struct pristine p;
        pristine_make(&p);
        char work[PATH_MAX];
        path_join(work, tmp_root, "work");
        uint64_t start = p.ends[p.nlast - 2];
        for (uint64_t cut = start; cut <= p.ends[p.nlast - 1]; cut++)
                cut_case(&p, work, cut, DP_SEGLOG_IO_BUFFERED);
}

Test(dp_seglog, torn_tail_at_random_offsets_in_the_last_segment)
{
        static struct pristine p;
        pristine_make(&p);
        const char *droot = direct_root();
        char work[PATH_MAX];
        path_join(work, tmp_root, "work");
        uint64_t size = p.ends[p.nlast - 1];
        srand(20240611);
        for (int i = 0; i < 40; i++) {
                uint64_t cut = i == 0 ? 0 : (uint64_t)rand() % (size + 1);
                /* Every other one resumes under O_DIRECT: the partial block
                 * a cut leaves must be re-written whole, correctly. */
                bool direct = droot != NULL && i % 2 == 1;
                cut_case(&p, work, cut, direct ? DP_SEGLOG_IO_DIRECT : DP_SEGLOG_IO_BUFFERED);
        }
}

/* Flips one byte of file at off. */
static void flip_byte(const char *path, uint64_t off)
{
        int fd = open(path, O_RDWR | O_CLOEXEC);
        cr_assert_geq(fd, 0);
        uint8_t b;
        cr_assert_eq(pread(fd, &b, 1, (off_t)off), 1);
        b ^= 0x40;
        cr_assert_eq(pwrite(fd, &b, 1, (off_t)off), 1);
        close(fd);
}

Test(dp_seglog, a_flipped_byte_in_the_last_record_drops_it)
{
        static struct pristine p;
        pristine_make(&p);
        const struct dp_seglog_segment *last = &p.segs[p.nsegs - 1];
        uint64_t rec_off = p.ends[p.nlast - 2];
        char seg[PATH_MAX];
        seg_path(seg, p.dir, last->first_seq);
        flip_byte(seg, rec_off + 40 + 9 + 50);   /* in its payload */
        struct dp_seglog_config cfg = p.cfg;
        struct dp_seglog *log = log_new();
        struct seen s;
        open_ok(log, &cfg, &s, p.pmax);
        cr_assert_eq(s.n, p.n - 1);
        cr_assert_eq(file_size(seg), (int64_t)rec_off);
        cr_assert_eq(dp_seglog_stats(log)->truncated_bytes, 152);
        cr_assert_eq(dp_seglog_next_seq(log), p.n);
        cr_assert_eq(dp_seglog_close(log), 0);
        free(log);
}

Test(dp_seglog, a_flipped_length_in_the_last_record_drops_it)
{
        static struct pristine p;
        pristine_make(&p);
        const struct dp_seglog_segment *last = &p.segs[p.nsegs - 1];
        uint64_t rec_off = p.ends[p.nlast - 2];
        char seg[PATH_MAX];
        seg_path(seg, p.dir, last->first_seq);
        flip_byte(seg, rec_off + 5);   /* len: now past the file's end */
        struct dp_seglog *log = log_new();
        struct seen s;
        open_ok(log, &p.cfg, &s, p.pmax);
        cr_assert_eq(s.n, p.n - 1);
        cr_assert_eq(file_size(seg), (int64_t)rec_off);
        cr_assert_eq(dp_seglog_close(log), 0);
        free(log);
}

/* Offset of the record of seq within its segment. */
static uint64_t rec_offset(const struct pristine *p, uint32_t segi, uint64_t seq)
{
        uint64_t off = 0;
        for (uint64_t q = p->segs[segi].first_seq; q < seq; q++)
                off += gen_bytes(q, p->pmax);
        return off;
}

static void seg_name(char *out, uint64_t first_seq)
{
        snprintf(out, 32, "%020llu.seg", (unsigned long long)first_seq);
}

Test(dp_seglog, a_flipped_byte_in_an_earlier_segment_fails_open_with_ebadmsg)
{
        static struct pristine p;
        pristine_make(&p);
        char seg[PATH_MAX], name[32];
        uint64_t seq = p.segs[1].first_seq + 2;
        uint64_t off = rec_offset(&p, 1, seq);
        seg_path(seg, p.dir, p.segs[1].first_seq);
        flip_byte(seg, off + 20);   /* in its seq */
        int64_t sizes[32];
        for (uint32_t i = 0; i < p.nsegs; i++) {
                char path[PATH_MAX];
                seg_path(path, p.dir, p.segs[i].first_seq);
                sizes[i] = file_size(path);
        }
        struct dp_seglog *log = log_new();
        struct seen s = { .payload_max = p.pmax };
        cr_assert_eq(dp_seglog_open(log, &p.cfg, replay_check, &s), -EBADMSG);
        const struct dp_seglog_error *e = dp_seglog_error(log);
        seg_name(name, p.segs[1].first_seq);
        cr_assert_eq(e->rc, -EBADMSG);
        cr_assert_str_eq(e->file, name);
        cr_assert_eq(e->offset, off);
        cr_assert_not_null(strstr(e->what, "CRC"), "what: %s", e->what);
        cr_assert_eq(s.last, seq - 1, "replay stopped before the damage");
        for (uint32_t i = 0; i < p.nsegs; i++) {
                char path[PATH_MAX];
                seg_path(path, p.dir, p.segs[i].first_seq);
                cr_assert_eq(file_size(path), sizes[i], "nothing cut in segment %u", i);
        }
        cr_assert_eq(dp_seglog_poll(log, 0), -EBADF, "not open");
        free(log);
}

/* A record with a sound CRC but the wrong sequence is not a torn write:
 * even in the last segment it fails open instead of being cut away. */
Test(dp_seglog, a_sound_record_out_of_sequence_fails_open)
{
        static struct pristine p;
        pristine_make(&p);
        const struct dp_seglog_segment *last = &p.segs[p.nsegs - 1];
        uint64_t off = p.ends[p.nlast - 2];
        char seg[PATH_MAX];
        seg_path(seg, p.dir, last->first_seq);
        int fd = open(seg, O_RDWR | O_CLOEXEC);
        cr_assert_geq(fd, 0);
        uint8_t rec[152];
        cr_assert_eq(pread(fd, rec, sizeof(rec), (off_t)off), (ssize_t)sizeof(rec));
        uint64_t seq;
        memcpy(&seq, rec + 16, 8);
        seq += 5;
        memcpy(rec + 16, &seq, 8);
        uint32_t len;
        memcpy(&len, rec + 4, 4);
        uint32_t crc = dp_crc32c(0, rec + 4, len - 4);
        memcpy(rec, &crc, 4);
        cr_assert_eq(pwrite(fd, rec, sizeof(rec), (off_t)off), (ssize_t)sizeof(rec));
        close(fd);
        struct dp_seglog *log = log_new();
        cr_assert_eq(dp_seglog_open(log, &p.cfg, NULL, NULL), -EBADMSG);
        cr_assert_not_null(strstr(dp_seglog_error(log)->what, "sequence"));
        cr_assert_eq(dp_seglog_error(log)->offset, off);
        cr_assert_eq(file_size(seg), (int64_t)last->bytes, "not cut");
        free(log);
}

/* Zeros after the records of an earlier segment (the padding O_DIRECT
 * leaves) are its end; anything after them is damage. */
Test(dp_seglog, zero_padding_ends_a_segment_and_garbage_after_it_does_not)
{
        static struct pristine p;
        pristine_make(&p);
        char seg[PATH_MAX];
        seg_path(seg, p.dir, p.segs[0].first_seq);
        int fd = open(seg, O_RDWR | O_CLOEXEC);
        cr_assert_geq(fd, 0);
        cr_assert_eq(ftruncate(fd, (off_t)(p.segs[0].bytes + 3000)), 0);
        close(fd);
        struct dp_seglog *log = log_new();
        struct seen s;
        open_ok(log, &p.cfg, &s, p.pmax);
        cr_assert_eq(s.n, p.n);
        cr_assert_eq(dp_seglog_close(log), 0);
        fd = open(seg, O_RDWR | O_CLOEXEC);
        cr_assert_eq(pwrite(fd, "x", 1, (off_t)(p.segs[0].bytes + 2000)), 1);
        close(fd);
        cr_assert_eq(dp_seglog_open(log, &p.cfg, NULL, NULL), -EBADMSG);
        cr_assert_eq(dp_seglog_error(log)->offset, p.segs[0].bytes);
        free(log);
}

Test(dp_seglog, a_missing_segment_fails_open)
{
        static struct pristine p;
        pristine_make(&p);
        char seg[PATH_MAX];
        seg_path(seg, p.dir, p.segs[1].first_seq);
        cr_assert_eq(unlink(seg), 0);
        struct dp_seglog *log = log_new();
        cr_assert_eq(dp_seglog_open(log, &p.cfg, NULL, NULL), -EBADMSG);
        cr_assert_not_null(strstr(dp_seglog_error(log)->what, "follow"));
        free(log);
}

static int replay_refuse(void *arg, const struct dp_seglog_rec *r)
{
        (void)arg;
        return r->seq == 10 ? -ENOSPC : 0;
}

Test(dp_seglog, replay_can_stop_recovery)
{
        static struct pristine p;
        pristine_make(&p);
        struct dp_seglog *log = log_new();
        cr_assert_eq(dp_seglog_open(log, &p.cfg, replay_refuse, NULL), -ENOSPC);
        cr_assert_eq(dp_seglog_open(log, &p.cfg, NULL, NULL), 0, "the failed open let go");
        cr_assert_eq(dp_seglog_next_seq(log), p.n + 1);
        cr_assert_eq(dp_seglog_close(log), 0);
        free(log);
}

/* --- segments -------------------------------------------------------------------- */

/* A buffered log in a fresh temp directory whose 8 KiB segments take a few
 * records each: rolls come quickly. */
static void cfg_tiny(struct dp_seglog_config *cfg, enum dp_seglog_sync sync)
{
        tmp_make("/tmp");
        cfg_small(cfg, tmp_root, DP_SEGLOG_IO_BUFFERED, sync);
        cfg->record_bytes_max = 4096;
        cfg->buffer_bytes = 8192;
        cfg->segment_bytes = 8192;
}

Test(dp_seglog, rolls_recover_across_segments_and_drop_only_whole_ones)
{
        struct dp_seglog_config cfg;
        cfg_tiny(&cfg, DP_SEGLOG_SYNC_NONE);
        const uint32_t pmax = 1000;
        struct dp_seglog *log = log_new();
        struct seen s;
        open_ok(log, &cfg, &s, pmax);
        const uint64_t n = 300;
        for (uint64_t seq = 1; seq <= n; seq++) {
                append_gen(log, seq, pmax, 0);
                cr_assert_geq(dp_seglog_poll(log, shm_clock_ns()), 0);
        }
        POLL_UNTIL(log, dp_seglog_written_seq(log) == n);
        static struct dp_seglog_segment segs[128];
        uint32_t nsegs = dp_seglog_segments(log, segs, 128);
        cr_assert_geq(nsegs, 8);
        cr_assert_eq(segs[0].first_seq, 1);
        cr_assert_eq(segs[nsegs - 1].last_seq, n);
        for (uint32_t i = 0; i < nsegs; i++) {
                char path[PATH_MAX];
                seg_path(path, tmp_root, segs[i].first_seq);
                cr_assert_leq(segs[i].bytes, cfg.segment_bytes);
                cr_assert_eq(segs[i].written_bytes, segs[i].bytes);
                cr_assert_eq(file_size(path), (int64_t)segs[i].bytes, "segment %u", i);
                if (i > 0)
                        cr_assert_eq(segs[i].first_seq, segs[i - 1].last_seq + 1);
        }
        cr_assert_eq(dp_seglog_stats(log)->rolls, nsegs - 1);
        /* A roll syncs the segment it leaves, under `none` too. */
        cr_assert_eq(dp_seglog_stats(log)->syncs, nsegs - 1);

        /* The iterator over a middle segment gives its records as written. */
        void *buf = malloc(dp_seglog_iter_bytes(log));
        struct dp_seglog_iter it;
        struct dp_seglog_rec r;
        cr_assert_eq(dp_seglog_iter_init(&it, log, segs[2].first_seq, buf, 100), -EINVAL);
        cr_assert_eq(dp_seglog_iter_init(&it, log, segs[2].first_seq + 1, buf, 4096), -ENOENT);
        cr_assert_eq(dp_seglog_iter_init(&it, log, segs[2].first_seq, buf,
                                         dp_seglog_iter_bytes(log)), 0);
        uint64_t want = segs[2].first_seq;
        int rc;
        while ((rc = dp_seglog_iter_next(&it, &r)) == 1) {
                cr_assert_eq(r.seq, want++);
                expect_rec(&r, pmax);
        }
        cr_assert_eq(rc, 0);
        cr_assert_eq(want, segs[2].last_seq + 1);
        dp_seglog_iter_fini(&it);

        /* Segments 0..2 end below segs[3].first_seq + 1; segment 3 does not. */
        cr_assert_eq(dp_seglog_drop_before(log, segs[3].first_seq + 1), 3);
        for (uint32_t i = 0; i < nsegs; i++) {
                char path[PATH_MAX];
                seg_path(path, tmp_root, segs[i].first_seq);
                cr_assert_eq(access(path, F_OK) == 0, i >= 3, "segment %u", i);
        }
        cr_assert_eq(dp_seglog_drop_before(log, segs[3].first_seq + 1), 0);
        struct dp_seglog_segment now[128];
        cr_assert_eq(dp_seglog_segments(log, now, 128), nsegs - 3);
        cr_assert_eq(now[0].first_seq, segs[3].first_seq);
        cr_assert_eq(dp_seglog_close(log), 0);

        open_ok(log, &cfg, &s, pmax);
        cr_assert_eq(s.first, segs[3].first_seq);
        cr_assert_eq(s.last, n);
        cr_assert_eq(dp_seglog_segments(log, now, 128), nsegs - 3);
        /* Never the segment being written, whatever the caller asks. */
        cr_assert_eq(dp_seglog_drop_before(log, UINT64_MAX), (int)(nsegs - 4));
        cr_assert_eq(dp_seglog_segments(log, now, 128), 1);
        cr_assert_eq(now[0].last_seq, n);
        cr_assert_eq(dp_seglog_stats(log)->dropped_segments, nsegs - 4);
        append_gen(log, n + 1, pmax, 0);
        cr_assert_eq(dp_seglog_close(log), 0);
        cr_assert_eq(dp_seglog_open(log, &cfg, NULL, NULL), 0);
        cr_assert_eq(dp_seglog_next_seq(log), n + 2);
        cr_assert_eq(dp_seglog_close(log), 0);
        free(buf);
        free(log);
}

Test(dp_seglog, the_iterator_sees_only_written_records)
{
        tmp_make("/tmp");
        struct dp_seglog_config cfg;
        cfg_small(&cfg, tmp_root, DP_SEGLOG_IO_BUFFERED, DP_SEGLOG_SYNC_BATCH);
        cfg.batch_us = 3600u * 1000 * 1000;
        struct dp_seglog *log = log_new();
        struct seen s;
        open_ok(log, &cfg, &s, 0);
        uint32_t pmax = payload_max_of(&cfg);
        for (uint64_t seq = 1; seq <= 5; seq++)
                append_gen(log, seq, pmax, 0);
        void *buf = malloc(dp_seglog_iter_bytes(log));
        struct dp_seglog_iter it;
        struct dp_seglog_rec r;
        cr_assert_eq(dp_seglog_iter_init(&it, log, 1, buf, dp_seglog_iter_bytes(log)), 0);
        cr_assert_eq(dp_seglog_iter_next(&it, &r), 0, "buffered, not written");
        dp_seglog_iter_fini(&it);
        append_gen(log, 6, pmax, DP_SEGLOG_APPEND_SYNC);
        POLL_UNTIL(log, dp_seglog_durable_seq(log) == 6);
        append_gen(log, 7, pmax, 0);
        cr_assert_eq(dp_seglog_iter_init(&it, log, 1, buf, dp_seglog_iter_bytes(log)), 0);
        uint64_t got = 0;
        while (dp_seglog_iter_next(&it, &r) == 1) {
                expect_rec(&r, pmax);
                got = r.seq;
        }
        cr_assert_eq(got, 6);
        dp_seglog_iter_fini(&it);
        cr_assert_eq(dp_seglog_close(log), 0);
        free(buf);
        free(log);
}

/* --- limits -------------------------------------------------------------------- */

Test(dp_seglog, the_directory_limit_refuses_a_roll_and_writes_nothing)
{
        struct dp_seglog_config cfg;
        cfg_tiny(&cfg, DP_SEGLOG_SYNC_ALWAYS);
        cfg.dir_bytes_max = 3 * 8192;
        struct dp_seglog *log = log_new();
        struct seen s;
        open_ok(log, &cfg, &s, 0);
        uint64_t seq, accepted = 0;
        int rc;
        while ((rc = append_sized(log, 1000, 0, &seq)) == 0) {
                accepted++;
                POLL_UNTIL(log, dp_seglog_durable_seq(log) == accepted);
                cr_assert_lt(accepted, 100);
        }
        cr_assert_eq(rc, -ENOSPC);
        cr_assert_eq(dp_seglog_stats(log)->refused_space, 1);
        cr_assert_eq(dp_seglog_stats(log)->appends, accepted);
        cr_assert_eq(dp_seglog_next_seq(log), accepted + 1, "no sequence taken");
        cr_assert_eq(dp_seglog_segments(log, NULL, 0), 3);
        /* A record that still fits the active segment is taken. */
        cr_assert_eq(append_sized(log, 48, 0, &seq), 0);
        accepted++;
        cr_assert_eq(dp_seglog_close(log), 0);
        uint64_t bytes;
        cr_assert_eq(dir_files(tmp_root, &bytes), 3);
        cr_assert_leq(bytes, cfg.dir_bytes_max);

        open_ok(log, &cfg, &s, 0);
        cr_assert_eq(dp_seglog_stats(log)->recovered_records, accepted);
        cr_assert_eq(dp_seglog_stats(log)->truncated_bytes, 0, "no partial record");
        cr_assert_eq(append_sized(log, 1000, 0, &seq), -ENOSPC);
        struct dp_seglog_segment segs[4];
        cr_assert_eq(dp_seglog_segments(log, segs, 4), 3);
        cr_assert_eq(dp_seglog_drop_before(log, segs[1].first_seq), 1);
        cr_assert_eq(append_sized(log, 1000, 0, &seq), 0, "room again");
        cr_assert_eq(dp_seglog_close(log), 0);
        free(log);
}

Test(dp_seglog, records_above_the_maximum_are_emsgsize)
{
        tmp_make("/tmp");
        struct dp_seglog_config cfg;
        cfg_small(&cfg, tmp_root, DP_SEGLOG_IO_BUFFERED, DP_SEGLOG_SYNC_NONE);
        struct dp_seglog *log = log_new();
        struct seen s;
        open_ok(log, &cfg, &s, 0);
        uint64_t seq;
        cr_assert_eq(append_sized(log, cfg.record_bytes_max, 0, &seq), 0, "the maximum fits");
        static uint8_t payload[1u << 16];
        struct dp_seglog_rec r = { .key = "k", .key_len = 1, .payload = payload,
                                   .payload_len = cfg.record_bytes_max - 40 };  /* 1 over */
        cr_assert_eq(dp_seglog_append(log, &r, 0, &seq), -EMSGSIZE);
        r.payload_len = 1u << 16;
        cr_assert_eq(dp_seglog_append(log, &r, 0, &seq), -EMSGSIZE);
        cr_assert_eq(dp_seglog_stats(log)->refused_size, 2);
        cr_assert_eq(dp_seglog_next_seq(log), 2);
        r.payload = NULL;
        r.payload_len = 10;
        cr_assert_eq(dp_seglog_append(log, &r, 0, &seq), -EINVAL, "NULL payload with a length");
        r.payload_len = 0;
        cr_assert_eq(dp_seglog_append(log, &r, 8, &seq), -EINVAL, "unknown option");
        cr_assert_eq(dp_seglog_append(log, &r, 0, &seq), 0, "a key alone is a record");
        cr_assert_eq(dp_seglog_close(log), 0);
        cr_assert_eq(dp_seglog_append(log, &r, 0, &seq), -EBADF, "closed");
        cr_assert_eq(dp_seglog_close(log), 0, "closing twice is harmless");
        free(log);
}

Test(dp_seglog, bad_configs_are_einval)
{
        tmp_make("/tmp");
        struct dp_seglog_config cfg;
        struct dp_seglog *log = log_new();
        for (int i = 0; i < 12; i++) {
                cfg_small(&cfg, tmp_root, DP_SEGLOG_IO_BUFFERED, DP_SEGLOG_SYNC_NONE);
                const char *what = "";
                switch (i) {
                case 0: cfg.segment_bytes = 0; what = "zero segment size"; break;
                case 1: cfg.segment_bytes = cfg.record_bytes_max - 8; what = "segment below the record"; break;
                case 2: cfg.buffer_bytes = cfg.record_bytes_max; what = "buffer without block room"; break;
                case 3: cfg.buffer_bytes = 32768 + 100; what = "buffer not block-aligned"; break;
                case 4: cfg.record_bytes_max = 1001; what = "record not a multiple of 8"; break;
                case 5: cfg.record_bytes_max = 16; what = "record below a header"; break;
                case 6: cfg.buffers = 1; what = "one buffer"; break;
                case 7: cfg.dir = NULL; what = "no directory"; break;
                case 8: cfg.dir_bytes_max = cfg.segment_bytes - 1; what = "limit below a segment"; break;
                case 9: cfg.first_seq = 0; what = "first sequence 0"; break;
                case 10: cfg.sync = (enum dp_seglog_sync)7; what = "sync policy"; break;
                case 11: cfg.segments_max = 1; what = "one segment"; break;
                }
                cr_assert_eq(dp_seglog_open(log, &cfg, NULL, NULL), -EINVAL, "%s", what);
                cr_assert_str_eq(dp_seglog_error(log)->what, "bad configuration");
        }
        uint64_t bytes;
        cr_assert_eq(dir_files(tmp_root, &bytes), 0, "nothing created");
        free(log);
}

Test(dp_seglog, full_buffers_push_back_with_enobufs)
{
        tmp_make("/tmp");
        struct dp_seglog_config cfg;
        cfg_small(&cfg, tmp_root, DP_SEGLOG_IO_BUFFERED, DP_SEGLOG_SYNC_ALWAYS);
        cfg.record_bytes_max = 4096;
        cfg.buffer_bytes = 8192;
        cfg.buffers = 2;
        struct dp_seglog *log = log_new();
        struct seen s;
        open_ok(log, &cfg, &s, 0);
        uint64_t seq, accepted = 0;
        int rc;
        while ((rc = append_sized(log, 1000, 0, &seq)) == 0)
                accepted++;
        cr_assert_eq(rc, -ENOBUFS);
        cr_assert_eq(accepted, 16, "two buffers of 8 records, nothing polled");
        cr_assert_eq(dp_seglog_stats(log)->refused_busy, 1);
        POLL_UNTIL(log, append_sized(log, 1000, 0, &seq) == 0);
        accepted++;
        POLL_UNTIL(log, dp_seglog_durable_seq(log) == accepted);
        cr_assert_eq(dp_seglog_close(log), 0);
        open_ok(log, &cfg, &s, 0);
        cr_assert_eq(dp_seglog_stats(log)->recovered_records, accepted);
        cr_assert_eq(dp_seglog_close(log), 0);
        free(log);
}

Test(dp_seglog, a_second_opener_gets_ebusy)
{
        tmp_make("/tmp");
        struct dp_seglog_config cfg;
        cfg_small(&cfg, tmp_root, DP_SEGLOG_IO_BUFFERED, DP_SEGLOG_SYNC_NONE);
        struct dp_seglog *a = log_new(), *b = log_new();
        struct seen s;
        open_ok(a, &cfg, &s, 0);
        cr_assert_eq(dp_seglog_open(b, &cfg, NULL, NULL), -EBUSY);
        cr_assert_not_null(strstr(dp_seglog_error(b)->what, "in use"));
        cr_assert_eq(dp_seglog_close(a), 0);
        cr_assert_eq(dp_seglog_open(b, &cfg, NULL, NULL), 0);
        cr_assert_eq(dp_seglog_close(b), 0);
        free(a);
        free(b);
}

/* A file size limit makes the kernel fail a write (a short write, then
 * EFBIG): the log fails, keeps its durable records, and recovers after. */
Test(dp_seglog, a_kernel_write_error_fails_the_log_and_spares_durable_records)
{
        tmp_make("/tmp");
        struct dp_seglog_config cfg;
        cfg_small(&cfg, tmp_root, DP_SEGLOG_IO_BUFFERED, DP_SEGLOG_SYNC_ALWAYS);
        struct dp_seglog *log = log_new();
        struct seen s;
        open_ok(log, &cfg, &s, 0);
        uint64_t seq;
        for (int i = 0; i < 10; i++)
                cr_assert_eq(append_sized(log, 1000, 0, &seq), 0);
        POLL_UNTIL(log, dp_seglog_durable_seq(log) == 10);
        char seg[PATH_MAX], name[32];
        seg_path(seg, tmp_root, 1);
        seg_name(name, 1);
        cr_assert_eq(file_size(seg), 10000);

        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl;
        cr_assert_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
        struct rlimit small = { .rlim_cur = 10100, .rlim_max = rl.rlim_max };
        cr_assert_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
        for (int i = 0; i < 5; i++)
                cr_assert_eq(append_sized(log, 1000, 0, &seq), 0);
        uint64_t deadline = shm_clock_ns() + 5 * SEC;
        int rc;
        while ((rc = dp_seglog_poll(log, shm_clock_ns())) >= 0) {
                cr_assert_lt(shm_clock_ns(), deadline, "the write error never came");
                usleep(100);
        }
        cr_assert_eq(rc, -EFBIG);
        const struct dp_seglog_error *e = dp_seglog_error(log);
        cr_assert_eq(e->rc, -EFBIG);
        cr_assert_str_eq(e->file, name);
        cr_assert_eq(e->offset, 10100, "the short write got this far");
        cr_assert_eq(dp_seglog_append(log, &(struct dp_seglog_rec){ 0 }, 0, &seq), -EFBIG);
        cr_assert_eq(dp_seglog_poll(log, shm_clock_ns()), -EFBIG, "failed stays failed");
        cr_assert_eq(dp_seglog_durable_seq(log), 10);
        cr_assert_geq(dp_seglog_stats(log)->errors, 1);
        cr_assert_eq(dp_seglog_close(log), -EFBIG);
        cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);

        open_ok(log, &cfg, &s, 0);
        cr_assert_eq(dp_seglog_stats(log)->recovered_records, 10);
        cr_assert_eq(dp_seglog_stats(log)->truncated_bytes, 100, "the torn record");
        cr_assert_eq(file_size(seg), 10000);
        cr_assert_eq(append_sized(log, 1000, 0, &seq), 0);
        cr_assert_eq(seq, 11);
        cr_assert_eq(dp_seglog_close(log), 0);
        free(log);
}

Test(dp_seglog, an_empty_log_opens_closes_and_names_its_first_segment)
{
        tmp_make("/tmp");
        char dir[PATH_MAX], seg[PATH_MAX];
        path_join(dir, tmp_root, "w7");
        struct dp_seglog_config cfg;
        cfg_small(&cfg, dir, DP_SEGLOG_IO_BUFFERED, DP_SEGLOG_SYNC_BATCH);
        cfg.first_seq = 1000;
        struct dp_seglog *log = log_new();
        struct seen s;
        open_ok(log, &cfg, &s, 0);
        seg_path(seg, dir, 1000);
        cr_assert_eq(file_size(seg), 0, "the first segment exists, empty");
        cr_assert_eq(dp_seglog_next_seq(log), 1000);
        cr_assert_eq(dp_seglog_next_ns(log), UINT64_MAX);
        cr_assert_eq(dp_seglog_close(log), 0);
        cfg.first_seq = 1;   /* only for a new log */
        open_ok(log, &cfg, &s, 0);
        cr_assert_eq(dp_seglog_next_seq(log), 1000);
        cr_assert_eq(s.n, 0);
        cr_assert_eq(dp_seglog_close(log), 0);
        free(log);
}
