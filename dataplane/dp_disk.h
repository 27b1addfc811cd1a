/* dp_disk.h - a worker's disk tier: its shard's journal (dp_shard.h, "The
 * disk tier's journal") kept in a segment log of its own (dp_seglog.h), the
 * rebuild of the disk entities from it after a restart, and the answers
 * that wait for their records to be durable.
 *
 * One log per worker, in <data-dir>/w<index>. Every change to an entity
 * with storage disk is a record: CREATE (its options), MSG (the whole
 * frame, with the message's sequence number and absolute expiry), ACK,
 * COMMIT (a consumer group's offset), DESTROY, FORGET (the entity left the
 * disk tier). The shard keeps disk entities in memory as it keeps mem ones
 * (fetches, reads and gets are served from there); the log is what makes
 * them survive: a fresh arena (atomqd restarted) is rebuilt by replaying
 * it, a dataplane restart on the same arena only reopens it.
 *
 * Durability is per record: sync always asks the log for an fdatasync at
 * the next poll (records appended in the same pass share it: group
 * commit) and its answer waits for it; batch is answered once the record
 * is written (it survives the process) and synced by the log's next group
 * commit, at most batch_us later (then it survives the machine); none is
 * answered at once. A request says what its answer waits for
 * (dp_disk_request_*), and the answer is a publish parked here until then.
 *
 *      dp_disk_open(&w->disk, w, &cfg);           // replays into the shard
 *      dp_disk_request_begin(d);                  // an $AQ request ...
 *      ... dp_shard_send(...) ...                  // ... journals records
 *      if ((lsn = dp_disk_request_end(d)) != 0)
 *              dp_disk_park(d, lsn, &answer);     // published once durable
 *      work += dp_disk_poll(d, now_ns);           // in the worker's loop
 */
#ifndef ATOMQ_DP_DISK_H
#define ATOMQ_DP_DISK_H

#include <stdbool.h>
#include <stdint.h>

#include "dataplane/dp_shard.h"

struct dp_worker;
struct dp_disk;

/* What a request's answer waits for: its log records written up to
 * `written` (sync batch) and synced up to `durable` (sync always). */
struct dp_disk_wait {
        uint64_t written;
        uint64_t durable;
};

/* Answers waiting for durability on one worker at most; past it a request
 * waits (polling the log) before it is answered: back-pressure. */
#define DP_DISK_PARKED_MAX 65536u
/* How long a journal append may wait for a write buffer (the disk is
 * slower than the senders) before the send is refused with -ENOBUFS. */
#define DP_DISK_BUSY_WAIT_NS (200ull * 1000 * 1000)
/* A log of this many segments (and, after a compaction, of twice what the
 * compaction left) is compacted: rewritten with only what is live. */
#define DP_DISK_COMPACT_SEGMENTS 4u
/* How long open waits for the log directory's lock, which a dataplane
 * killed just before may hold a little longer (its io_uring workers). */
#define DP_DISK_LOCK_WAIT_NS (5000ull * 1000 * 1000)
/* While the log has I/O in flight, the worker sleeps at most this long
 * between looks (its completions do not wake it). */
#define DP_DISK_POLL_NS (20ull * 1000)
/* Group commit interval of sync batch, by default. */
#define DP_DISK_BATCH_US_DEFAULT 1000u

struct dp_disk_config {
        const char *data_dir;       /* the worker's log goes in <data_dir>/w<index> */
        uint64_t dir_bytes_max;     /* per worker; 0: no limit */
        uint32_t batch_us;          /* sync batch's group commit interval */
        uint64_t segment_bytes;     /* 0: the log's default */
        bool direct;                /* O_DIRECT writes (else buffered + fdatasync) */
};

/* What dp_disk_open found and did. What happens later is counted in the
 * worker's arena counters (struct dp_disk_counters, dp_worker.h). */
struct dp_disk_stats {
        uint64_t replayed;          /* records applied at open */
        uint64_t replay_skipped;    /* records for entities gone or expired */
        uint64_t entities;          /* entities rebuilt */
};

/* Opens the worker's log and sets it as its shard's journal. When the shard
 * has not been rebuilt from it yet (a fresh arena), replays every record
 * into it first. -errno of the log (dp_disk_error says what and where),
 * -ENOMEM. */
int dp_disk_open(struct dp_disk **out, struct dp_worker *w, const struct dp_disk_config *cfg);

/* Flushes and syncs what is buffered (bounded), closes the log, and
 * publishes the answers whose records became durable. NULL is a no-op. */
void dp_disk_close(struct dp_disk *d);

/* The reason of the last open or log failure, for the log line. */
const char *dp_disk_error(const struct dp_disk *d, char *buf, size_t len);

/* The worker's loop: reaps and starts the log's I/O, publishes answers
 * that became durable. Returns the work done. */
int dp_disk_poll(struct dp_disk *d, uint64_t now_ns);

/* Whether the log has I/O in flight or a group commit due: the worker must
 * not sleep long. */
bool dp_disk_busy(const struct dp_disk *d);

/* An eventfd the log's completions signal (-1: none): a worker that
 * sleeps on its NATS ring watches it (nic_uring_watch) and need not wake
 * on a timer while the log works. */
int dp_disk_eventfd(const struct dp_disk *d);

/* A read's requests are handled: polls the log, which writes what they
 * appended (buffered logs write inline), and publishes the answers that
 * waited only for that, so they leave with the read's other answers rather
 * than after the rest of the worker's pass. Nothing to do without parked
 * answers; NULL is a no-op. */
void dp_disk_settle(struct dp_disk *d);

/* Brackets the handling of one request: end says whether its answer must
 * wait, and for what (sync always: the records synced; batch: written). */
void dp_disk_request_begin(struct dp_disk *d);
bool dp_disk_request_end(struct dp_disk *d, struct dp_disk_wait *wait);

/* Waits, polling the log, until it has done what wait asks: for an answer
 * that cannot be parked (an agent's or the control socket's completion,
 * which its reader sees the moment it is committed). batch costs the write
 * of the log's buffer, now; always blocks the worker for the fdatasync.
 * 0, the log's error, or -ETIMEDOUT after DP_DISK_BUSY_WAIT_NS. */
int dp_disk_wait(struct dp_disk *d, const struct dp_disk_wait *wait);

/* Publishes payload on subject once the log has done what wait asks. 0,
 * or -ENOMEM / -ENOBUFS (the caller answers at once). With
 * DP_DISK_PARKED_MAX parked, it first waits (polling the log, bounded) for
 * the oldest to go. */
int dp_disk_park(struct dp_disk *d, const struct dp_disk_wait *wait, const char *subject,
                 uint32_t subject_len, const void *payload, uint32_t payload_len);

const struct dp_disk_stats *dp_disk_stats(const struct dp_disk *d);

/* Writes the live disk entities into a fresh log that takes the old one's
 * place (dp_disk.c, "compaction"); dp_disk_poll calls it when the log has
 * grown. 0 or -errno (the old log stays in use when the swap did not
 * happen). */
int dp_disk_compact(struct dp_disk *d);

#endif /* ATOMQ_DP_DISK_H */
