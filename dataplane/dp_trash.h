/* dp_trash.h - removing a worker's old log directories without blocking it.
 *
 * Compaction leaves the old log's directory behind, segment files of up to
 * 64 MiB each. unlink(2) of such a file frees its page cache and extents
 * before it returns: 20-40 ms each on ext4 here, measured on the worker
 * (perf trace), which stalled every connection of that worker for the
 * whole directory (the longest ack of a durable bench: 133 ms). The trash
 * takes the directory instead: it is renamed to <base>.trash.<n> at once
 * (one rename), then its files are unlinked through an io_uring of the
 * trash's own (IORING_OP_UNLINKAT, handed to io-wq threads, at most
 * DP_TRASH_INFLIGHT at a time) and the emptied directory is removed the
 * same way. The owner's loop calls dp_trash_poll to reap and go on.
 *
 * A crash leaves <base>.trash.<n> directories: dp_trash_sweep removes them,
 * blocking (start-up). The ring is created at the first dp_trash_dir, on
 * the caller's thread; nothing here is shared between threads.
 *
 *      struct dp_trash t;
 *      dp_trash_init(&t, "/var/lib/atomq/w0");      // trash: w0.trash.<n>
 *      dp_trash_sweep(&t);                          // what a crash left
 *      if (dp_trash_dir(&t, "/var/lib/atomq/w0.next") < 0)
 *              ... remove it some other way ...
 *      work += dp_trash_poll(&t);                   // in the loop
 *      dp_trash_fini(&t);                           // waits for the rest
 */
#ifndef ATOMQ_DP_TRASH_H
#define ATOMQ_DP_TRASH_H

#include <dirent.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#define DP_TRASH_DIRS 4u        /* directories being removed at once */
#define DP_TRASH_INFLIGHT 16u   /* unlinks in flight */
#define DP_TRASH_PATH_BYTES 4160u

struct dp_trash_slot {
        bool used;
        bool listed;               /* every entry has been submitted */
        bool rmdir_sent;
        uint32_t inflight;         /* its unlinks in flight */
        DIR *dir;                  /* the entries still to submit */
        char path[DP_TRASH_PATH_BYTES];
};

struct dp_trash_stats {
        uint64_t dirs;             /* directories taken */
        uint64_t files;            /* files unlinked */
        uint64_t errors;           /* unlinks or removals that failed */
        uint64_t refused;          /* dp_trash_dir refused: every slot busy, or the rename failed */
};

struct dp_trash {
        char base[DP_TRASH_PATH_BYTES];
        struct io_uring ring;
        bool ring_ready;
        int efd;                   /* signalled at each completion; -1: none */
        uint64_t serial;           /* the <n> of the next trash name */
        uint32_t inflight;         /* requests in flight, all slots */
        char names[DP_TRASH_INFLIGHT][256];  /* entry names until their submit */
        struct dp_trash_slot slots[DP_TRASH_DIRS];
        struct dp_trash_stats stats;
};

/* base: the path the trash names derive from (<base>.trash.<n>). -ENAMETOOLONG. */
int dp_trash_init(struct dp_trash *t, const char *base);

/* Has the ring signal eventfd fd at each completion (from the next
 * dp_trash_dir on), so a sleeping owner wakes to poll. */
void dp_trash_set_eventfd(struct dp_trash *t, int fd);

/* Removes every <base>.trash.<n> (and its files) now, blocking. Returns
 * how many directories it removed. */
int dp_trash_sweep(struct dp_trash *t);

/* Takes directory path (files in it, no subdirectories): renames it to a
 * trash name and starts unlinking its files. 0; -EBUSY: DP_TRASH_DIRS are
 * being removed already; -EOPNOTSUPP: the kernel has no IORING_OP_UNLINKAT
 * (before 5.11); -errno of the rename, of opening it, or of io_uring
 * set-up. On error path is untouched and the caller removes it. */
int dp_trash_dir(struct dp_trash *t, const char *path);

/* Reaps completions and submits what comes next. Returns the work done. */
int dp_trash_poll(struct dp_trash *t);

/* Whether removals are under way. */
bool dp_trash_busy(const struct dp_trash *t);

/* Waits for what is in flight (5 s at most for each completion), removes
 * the rest blocking, frees the ring. A directory whose unlinks did not
 * complete is left (with its descriptor) for the next start's sweep. */
void dp_trash_fini(struct dp_trash *t);

#endif /* ATOMQ_DP_TRASH_H */
