/* test_dp_trash.c - old log directories removed in the background: the
 * directory leaves its name at once, its files and then itself are unlinked
 * through the trash's io_uring while the owner polls; leftovers of a crash
 * are swept (and nothing else); a path that cannot be taken is refused and
 * left as it was; fini removes what is still there.
 *
 * Everything lives in a temporary directory under /tmp, removed by the
 * suite's fini. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataplane/dp_trash.h"
#include "shm/shm_clock.h"

static char root[64];   /* "/tmp/atomq-trash-XXXXXX" */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st, (void)flag, (void)ftw;
        return remove(path);
}

static void setup(void)
{
        strcpy(root, "/tmp/atomq-trash-XXXXXX");
        cr_assert_not_null(mkdtemp(root));
}

static void teardown(void)
{
        (void)nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(dp_trash, .init = setup, .fini = teardown);

static bool exists(const char *path)
{
        struct stat st;
        return stat(path, &st) == 0;
}

/* A directory of n files of `bytes` bytes each. */
static void make_dir(const char *path, unsigned n, size_t bytes)
{
        cr_assert_eq(mkdir(path, 0700), 0, "mkdir %s", path);
        char *buf = calloc(1, bytes + 1);
        cr_assert_not_null(buf);
        for (unsigned i = 0; i < n; i++) {
                char f[PATH_MAX + 32];
                snprintf(f, sizeof(f), "%.*s/%020u.seg", PATH_MAX - 1, path, i);
                int fd = open(f, O_CREAT | O_WRONLY, 0600);
                cr_assert_geq(fd, 0);
                cr_assert_eq(write(fd, buf, bytes), (ssize_t)bytes);
                close(fd);
        }
        free(buf);
}

/* Polls until the trash is idle; false after 10 s. */
static bool drain(struct dp_trash *t)
{
        uint64_t give_up = shm_clock_ns() + 10000000000ull;
        while (dp_trash_busy(t)) {
                if (shm_clock_ns() > give_up)
                        return false;
                (void)dp_trash_poll(t);
                usleep(100);
        }
        return true;
}

Test(dp_trash, a_directory_leaves_at_once_and_is_removed_while_polled)
{
        char base[PATH_MAX], old[PATH_MAX + 8], gone[PATH_MAX + 32];
        snprintf(base, sizeof(base), "%s/w0", root);
        snprintf(old, sizeof(old), "%s.next", base);
        /* More files than may be in flight at once. */
        make_dir(old, 3 * DP_TRASH_INFLIGHT + 5, 64 << 10);
        struct dp_trash t;
        cr_assert_eq(dp_trash_init(&t, base), 0);
        cr_assert_eq(dp_trash_dir(&t, old), 0);
        cr_assert(!exists(old), "the directory left its name at once");
        snprintf(gone, sizeof(gone), "%s.trash.0", base);
        cr_assert(drain(&t), "the trash went idle");
        cr_assert(!exists(gone), "the trash directory is removed");
        cr_assert_eq(t.stats.dirs, 1);
        cr_assert_eq(t.stats.files, 3 * DP_TRASH_INFLIGHT + 5);
        cr_assert_eq(t.stats.errors, 0);
        /* And again: the next one takes the next name. */
        make_dir(old, 2, 16);
        cr_assert_eq(dp_trash_dir(&t, old), 0);
        snprintf(gone, sizeof(gone), "%s.trash.1", base);
        cr_assert(exists(gone) || t.stats.dirs == 2);
        cr_assert(drain(&t));
        cr_assert(!exists(gone));
        cr_assert_eq(t.stats.files, 3 * DP_TRASH_INFLIGHT + 7);
        dp_trash_fini(&t);
}

Test(dp_trash, sweep_removes_what_a_crash_left_and_nothing_else)
{
        char base[PATH_MAX], p[PATH_MAX + 32];
        snprintf(base, sizeof(base), "%s/w3", root);
        const char *ours[] = { "w3.trash.7", "w3.trash.12" };
        const char *others[] = { "w3.trash.x", "w3.trashy.1", "w30.trash.1", "w3.trash." };
        for (unsigned i = 0; i < 2; i++) {
                snprintf(p, sizeof(p), "%s/%s", root, ours[i]);
                make_dir(p, 3, 100);
        }
        for (unsigned i = 0; i < 4; i++) {
                snprintf(p, sizeof(p), "%s/%s", root, others[i]);
                make_dir(p, 1, 10);
        }
        struct dp_trash t;
        cr_assert_eq(dp_trash_init(&t, base), 0);
        cr_assert_eq(dp_trash_sweep(&t), 2);
        for (unsigned i = 0; i < 2; i++) {
                snprintf(p, sizeof(p), "%s/%s", root, ours[i]);
                cr_assert(!exists(p), "%s swept", ours[i]);
        }
        for (unsigned i = 0; i < 4; i++) {
                snprintf(p, sizeof(p), "%s/%s", root, others[i]);
                cr_assert(exists(p), "%s kept", others[i]);
        }
        dp_trash_fini(&t);
}

Test(dp_trash, a_path_it_cannot_take_is_refused_and_left_alone)
{
        char base[PATH_MAX], missing[PATH_MAX + 16];
        snprintf(base, sizeof(base), "%s/w1", root);
        snprintf(missing, sizeof(missing), "%s.missing", base);
        struct dp_trash t;
        cr_assert_eq(dp_trash_init(&t, base), 0);
        cr_assert_eq(dp_trash_dir(&t, missing), -ENOENT);
        cr_assert_eq(t.stats.refused, 1);
        cr_assert(!dp_trash_busy(&t));
        char longer[DP_TRASH_PATH_BYTES];   /* no room left for ".trash.<n>" */
        memset(longer, 'a', sizeof(longer) - 1);
        longer[sizeof(longer) - 1] = '\0';
        cr_assert_eq(dp_trash_init(&t, longer), -ENAMETOOLONG);
        dp_trash_fini(&t);
}

Test(dp_trash, fini_removes_what_is_left)
{
        char base[PATH_MAX], old[PATH_MAX + 8], gone[PATH_MAX + 32];
        snprintf(base, sizeof(base), "%s/w2", root);
        snprintf(old, sizeof(old), "%s.next", base);
        make_dir(old, 200, 4096);
        struct dp_trash t;
        cr_assert_eq(dp_trash_init(&t, base), 0);
        cr_assert_eq(dp_trash_dir(&t, old), 0);
        dp_trash_fini(&t);
        snprintf(gone, sizeof(gone), "%s.trash.0", base);
        cr_assert(!exists(old));
        cr_assert(!exists(gone), "fini left nothing");
        cr_assert_eq(t.stats.errors, 0);
}
