/* dp_trash.c - removing old log directories off the owner's thread (see
 * dp_trash.h). */
#include "dataplane/dp_trash.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "shm/shm_base.h"

/* io_uring user_data: the slot, and whether it is the directory itself. */
#define DP_TRASH_UD_RMDIR (1ull << 32)
/* Entries in the ring: every unlink in flight and a directory each. */
#define DP_TRASH_RING_ENTRIES 32u
_Static_assert(DP_TRASH_RING_ENTRIES >= DP_TRASH_INFLIGHT + DP_TRASH_DIRS, "trash ring");
/* fini's longest wait for one completion: an unlink that takes longer is
 * left to the kernel, and what is left of its directory is removed. */
#define DP_TRASH_FINI_WAIT_S 5

int dp_trash_init(struct dp_trash *t, const char *base)
{
        memset(t, 0, sizeof(*t));
        t->efd = -1;
        size_t n = strlen(base);
        /* Room for ".trash." and 20 digits. */
        if (n + 28 > sizeof(t->base) - 1)
                return -ENAMETOOLONG;
        memcpy(t->base, base, n + 1);
        return 0;
}

void dp_trash_set_eventfd(struct dp_trash *t, int fd)
{
        t->efd = fd;
        if (t->ring_ready && fd >= 0)
                (void)io_uring_register_eventfd(&t->ring, fd);
}

/* Unlinks what is left in dir and removes it, blocking. */
static int dp_trash_remove_now(const char *path)
{
        DIR *dir = opendir(path);
        if (dir == NULL)
                return errno == ENOENT ? 0 : -errno;
        struct dirent *de;
        while ((de = readdir(dir)) != NULL)
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                        (void)unlinkat(dirfd(dir), de->d_name, 0);
        closedir(dir);
        return rmdir(path) == 0 ? 0 : -errno;
}

/* Whether name is <prefix><digits>. */
static bool dp_trash_is_ours(const char *name, const char *prefix, size_t plen)
{
        if (strncmp(name, prefix, plen) != 0 || name[plen] == '\0')
                return false;
        for (const char *p = name + plen; *p != '\0'; p++)
                if (*p < '0' || *p > '9')
                        return false;
        return true;
}

int dp_trash_sweep(struct dp_trash *t)
{
        char parent[DP_TRASH_PATH_BYTES], leaf[DP_TRASH_PATH_BYTES];
        strcpy(parent, t->base);
        strcpy(leaf, t->base);
        const char *pdir = dirname(parent);
        char prefix[DP_TRASH_PATH_BYTES];
        int plen = snprintf(prefix, sizeof(prefix), "%s.trash.", basename(leaf));
        DIR *dir = opendir(pdir);
        if (dir == NULL || plen < 0)
                return 0;
        int removed = 0;
        struct dirent *de;
        while ((de = readdir(dir)) != NULL) {
                if (!dp_trash_is_ours(de->d_name, prefix, (size_t)plen))
                        continue;
                char path[DP_TRASH_PATH_BYTES * 2];
                snprintf(path, sizeof(path), "%s/%s", pdir, de->d_name);
                if (dp_trash_remove_now(path) == 0)
                        removed++;
                else
                        t->stats.errors++;
        }
        closedir(dir);
        return removed;
}

static int dp_trash_ring(struct dp_trash *t)
{
        if (t->ring_ready)
                return 0;
        int rc = io_uring_queue_init(DP_TRASH_RING_ENTRIES, &t->ring, 0);
        if (rc < 0)
                return rc;
        /* IORING_OP_UNLINKAT came with Linux 5.11: without it every unlink
         * would fail and the old logs stay; the caller removes them itself. */
        struct io_uring_probe *probe = io_uring_get_probe_ring(&t->ring);
        bool ok = probe != NULL && io_uring_opcode_supported(probe, IORING_OP_UNLINKAT);
        if (probe != NULL)
                io_uring_free_probe(probe);
        if (!ok) {
                io_uring_queue_exit(&t->ring);
                return -EOPNOTSUPP;
        }
        t->ring_ready = true;
        if (t->efd >= 0)
                (void)io_uring_register_eventfd(&t->ring, t->efd);
        return 0;
}

int dp_trash_dir(struct dp_trash *t, const char *path)
{
        struct dp_trash_slot *s = NULL;
        for (uint32_t i = 0; i < DP_TRASH_DIRS && s == NULL; i++)
                if (!t->slots[i].used)
                        s = &t->slots[i];
        int rc = s == NULL ? -EBUSY : dp_trash_ring(t);
        if (rc == 0) {
                int n = snprintf(s->path, sizeof(s->path), "%s.trash.%llu", t->base,
                                 (unsigned long long)t->serial++);
                if (n < 0 || (size_t)n >= sizeof(s->path))
                        rc = -ENAMETOOLONG;   /* init checked the base: not reached */
                else if (rename(path, s->path) != 0)
                        rc = -errno;
        }
        if (rc == 0) {
                s->dir = opendir(s->path);
                if (s->dir == NULL) {
                        rc = -errno;
                        (void)rename(s->path, path);   /* give it back */
                }
        }
        if (rc < 0) {
                t->stats.refused++;
                return rc;
        }
        s->used = true;
        s->listed = s->rmdir_sent = false;
        s->inflight = 0;
        t->stats.dirs++;
        (void)dp_trash_poll(t);
        return 0;
}

/* Puts the next requests in the SQ: unlinks of the slots' entries while
 * fewer than DP_TRASH_INFLIGHT are in flight, and the removal of each
 * directory whose files are all gone. Returns how many. */
static unsigned dp_trash_fill(struct dp_trash *t)
{
        unsigned n = 0, names = 0;
        for (uint32_t i = 0; i < DP_TRASH_DIRS; i++) {
                struct dp_trash_slot *s = &t->slots[i];
                if (!s->used)
                        continue;
                while (!s->listed && t->inflight < DP_TRASH_INFLIGHT) {
                        struct dirent *de = readdir(s->dir);
                        if (de == NULL) {
                                s->listed = true;
                                break;
                        }
                        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                                continue;
                        /* The name is copied into the kernel when the
                         * request is submitted, which the caller does
                         * before these buffers are used again. */
                        DP_ASSERT(names < DP_TRASH_INFLIGHT);
                        char *name = t->names[names++];
                        snprintf(name, sizeof(t->names[0]), "%s", de->d_name);
                        struct io_uring_sqe *sqe = io_uring_get_sqe(&t->ring);
                        DP_VERIFY(sqe != NULL);
                        io_uring_prep_unlinkat(sqe, dirfd(s->dir), name, 0);
                        sqe->flags |= IOSQE_ASYNC;
                        io_uring_sqe_set_data64(sqe, i);
                        s->inflight++;
                        t->inflight++;
                        n++;
                }
                if (s->listed && s->inflight == 0 && !s->rmdir_sent) {
                        /* Closed while the directory is still there: the
                         * last close of a removed one evicts it, which
                         * waited on the journal (3-11 ms on the worker). */
                        closedir(s->dir);
                        s->dir = NULL;
                        struct io_uring_sqe *sqe = io_uring_get_sqe(&t->ring);
                        DP_VERIFY(sqe != NULL);
                        io_uring_prep_unlinkat(sqe, AT_FDCWD, s->path, AT_REMOVEDIR);
                        sqe->flags |= IOSQE_ASYNC;
                        io_uring_sqe_set_data64(sqe, i | DP_TRASH_UD_RMDIR);
                        s->rmdir_sent = true;
                        s->inflight++;
                        t->inflight++;
                        n++;
                }
        }
        return n;
}

static void dp_trash_done(struct dp_trash *t, uint64_t ud, int res)
{
        struct dp_trash_slot *s = &t->slots[ud & 0xffffffffu];
        DP_ASSERT(s->used && s->inflight > 0 && t->inflight > 0);
        s->inflight--;
        t->inflight--;
        if (res < 0 && res != -ENOENT)
                t->stats.errors++;
        if (!(ud & DP_TRASH_UD_RMDIR)) {
                t->stats.files += res == 0;
                return;
        }
        s->used = false;
}

int dp_trash_poll(struct dp_trash *t)
{
        if (!t->ring_ready || !dp_trash_busy(t))
                return 0;
        int work = 0;
        struct io_uring_cqe *cqe;
        while (io_uring_peek_cqe(&t->ring, &cqe) == 0) {
                dp_trash_done(t, io_uring_cqe_get_data64(cqe), cqe->res);
                io_uring_cqe_seen(&t->ring, cqe);
                work++;
        }
        /* Requests left in the SQ by a refused submit go first, and no new
         * ones meanwhile: their names are still in the buffers. */
        if (io_uring_sq_ready(&t->ring) == 0 && dp_trash_fill(t) == 0)
                return work;
        int rc = io_uring_submit(&t->ring);
        return work + (rc > 0 ? rc : 0);
}

bool dp_trash_busy(const struct dp_trash *t)
{
        for (uint32_t i = 0; i < DP_TRASH_DIRS; i++)
                if (t->slots[i].used)
                        return true;
        return false;
}

void dp_trash_fini(struct dp_trash *t)
{
        if (t->ring_ready) {
                /* What is in flight completes (what a refused submit left
                 * in the SQ goes now); nothing new is started. */
                (void)io_uring_submit(&t->ring);
                while (t->inflight > 0) {
                        struct io_uring_cqe *cqe;
                        struct __kernel_timespec ts = { .tv_sec = DP_TRASH_FINI_WAIT_S };
                        if (io_uring_wait_cqe_timeout(&t->ring, &cqe, &ts) != 0)
                                break;
                        dp_trash_done(t, io_uring_cqe_get_data64(cqe), cqe->res);
                        io_uring_cqe_seen(&t->ring, cqe);
                }
                io_uring_queue_exit(&t->ring);
                t->ring_ready = false;
        }
        for (uint32_t i = 0; i < DP_TRASH_DIRS; i++) {
                struct dp_trash_slot *s = &t->slots[i];
                if (!s->used)
                        continue;
                s->used = false;
                if (s->inflight != 0) {
                        /* Unlinks that never completed may still run and
                         * name their directory by this descriptor: it is
                         * left open (not reused for another directory),
                         * and the next start sweeps what is left. */
                        t->stats.errors++;
                        continue;
                }
                if (s->dir != NULL)
                        closedir(s->dir);
                s->dir = NULL;
                if (dp_trash_remove_now(s->path) < 0)
                        t->stats.errors++;
        }
}
