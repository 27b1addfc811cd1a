/* dp_disk.c - a worker's disk tier (see dp_disk.h). */
#include "dataplane/dp_disk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "atomq/frame.h"
#include "dataplane/dp_cmd.h"
#include "dataplane/dp_seglog.h"
#include "dataplane/dp_shard_pvt.h"
#include "dataplane/dp_trash.h"
#include "dataplane/dp_worker_pvt.h"
#include "shm/shm_clock.h"
#include "shm/shm_log.h"

/* A CREATE record's payload: the entity's options, little-endian. */
struct dp_disk_create {
        uint8_t version;
        uint8_t mode;
        uint8_t overflow;
        uint8_t flags;           /* DP_DISK_CREATE_F_* */
        uint8_t sync;            /* enum dp_sync */
        uint8_t reserved[3];
        uint32_t ttl_ms;
        uint32_t max_msgs;
        uint32_t max_bytes;
        uint32_t reserved2;
};
_Static_assert(sizeof(struct dp_disk_create) == 24, "create record");

/* A record kind of the disk tier's own, beside enum dp_journal_kind: a
 * consumer group's offset by the group's hash (compaction restates cursors,
 * which keep no name). */
#define DP_DISK_REC_CURSOR 16u

#define DP_DISK_CREATE_VERSION 1
#define DP_DISK_CREATE_F_TTL_IDLE 1u
#define DP_DISK_CREATE_F_LEAST_LOADED 2u

/* An answer waiting for its records: one allocation, subject then payload. */
struct dp_disk_parked {
        struct dp_disk_wait wait;
        uint32_t subject_len;
        uint32_t payload_len;
        char *data;
};

struct dp_disk {
        struct dp_worker *w;
        struct dp_seglog *log;
        struct dp_seglog *target;      /* the journal writes here: log, or a compaction's */
        struct dp_seglog_config lc;    /* log's configuration (dir points at dir) */
        uint32_t compact_after;        /* segments that start the next compaction */
        uint64_t compact_retry_ns;     /* a full log's compaction failed: not before this */
        struct dp_disk_wait wait; /* the request being handled: what its records need */
        const struct dp_entity *restating; /* compaction: the entity being written */
        bool in_request;
        struct dp_disk_parked *parked; /* a FIFO ring of DP_DISK_PARKED_MAX */
        uint32_t parked_head, parked_count;
        struct dp_disk_stats stats;
        struct dp_seglog_stats told;   /* log's counts already in the worker's counters */
        char dir[4096];
        char next_dir[4096 + 8];       /* dir ".next": a compaction's new log */
        int efd;                       /* the log's completions signal it; -1: none */
        int failed_told;               /* the failed state already logged (its rc) */
        uint64_t trash_errors_told;
        struct dp_trash trash;         /* old logs' directories being removed */
};

static uint64_t dp_disk_realtime_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct dp_disk_counters *dp_disk_ctr(const struct dp_disk *d)
{
        return &d->w->stats->disk;
}

/* Adds what a log counted since told to the worker's counters. */
static void dp_disk_count(struct dp_disk *d, const struct dp_seglog_stats *now,
                          struct dp_seglog_stats *told)
{
        struct dp_disk_counters *c = dp_disk_ctr(d);
        dp_counter_add(&c->records, now->appends - told->appends);
        dp_counter_add(&c->writes, now->writes - told->writes);
        dp_counter_add(&c->write_bytes, now->write_bytes - told->write_bytes);
        dp_counter_add(&c->syncs, now->syncs - told->syncs);
        dp_counter_add(&c->io_errors, now->errors - told->errors);
        dp_counter_add(&c->refused, now->refused_size + now->refused_space + now->refused_busy -
                                            told->refused_size - told->refused_space -
                                            told->refused_busy);
        *told = *now;
}

/* ---- answers that wait ------------------------------------------------------ */

/* Publishes the parked answers whose records are where their sync asked
 * (all of them with everything true: the log was closed synced). */
static void dp_disk_publish_ready(struct dp_disk *d, bool everything)
{
        uint64_t written = dp_seglog_written_seq(d->log);
        uint64_t durable = dp_seglog_durable_seq(d->log);
        while (d->parked_count > 0) {
                struct dp_disk_parked *p = &d->parked[d->parked_head];
                if (!everything && (p->wait.written > written || p->wait.durable > durable))
                        break;
                struct dp_msg_in m = { .subject = p->data, .subject_len = p->subject_len,
                                       .payload = p->data + p->subject_len,
                                       .payload_len = p->payload_len, .storage = -1 };
                (void)dp_worker_publish_msg(d->w, &m, 0, 0);
                free(p->data);
                p->data = NULL;
                d->parked_head = (d->parked_head + 1) % DP_DISK_PARKED_MAX;
                d->parked_count--;
        }
}

static void dp_disk_on_durable(void *arg, uint64_t durable)
{
        (void)durable;
        dp_disk_publish_ready(arg, false);
}

int dp_disk_park(struct dp_disk *d, const struct dp_disk_wait *wait, const char *subject,
                 uint32_t subject_len, const void *payload, uint32_t payload_len)
{
        /* Full: wait for the oldest to become durable (the log is busy; so
         * is the client that filled it). Bounded by the log's own sync. */
        if (d->parked_count == DP_DISK_PARKED_MAX) {
                dp_counter_inc(&dp_disk_ctr(d)->parked_full);
                uint64_t give_up = shm_clock_ns() + DP_DISK_BUSY_WAIT_NS;
                while (d->parked_count == DP_DISK_PARKED_MAX && shm_clock_ns() < give_up) {
                        if (dp_seglog_poll(d->log, shm_clock_ns()) < 0)
                                break;
                        dp_disk_publish_ready(d, false);
                }
                if (d->parked_count == DP_DISK_PARKED_MAX)
                        return -ENOBUFS;
        }
        char *data = malloc((size_t)subject_len + payload_len);
        if (data == NULL)
                return -ENOMEM;
        memcpy(data, subject, subject_len);
        memcpy(data + subject_len, payload, payload_len);
        uint32_t at = (d->parked_head + d->parked_count) % DP_DISK_PARKED_MAX;
        d->parked[at] = (struct dp_disk_parked){ .wait = *wait, .subject_len = subject_len,
                                                 .payload_len = payload_len, .data = data };
        d->parked_count++;
        dp_counter_inc(&dp_disk_ctr(d)->parked);
        return 0;
}

static bool dp_disk_reached(const struct dp_disk *d, const struct dp_disk_wait *wait)
{
        return wait->written <= dp_seglog_written_seq(d->log) &&
               wait->durable <= dp_seglog_durable_seq(d->log);
}

int dp_disk_wait(struct dp_disk *d, const struct dp_disk_wait *wait)
{
        dp_counter_inc(&dp_disk_ctr(d)->waited);
        uint64_t give_up = shm_clock_ns() + DP_DISK_BUSY_WAIT_NS;
        for (;;) {
                uint64_t now = shm_clock_ns();
                int rc = dp_seglog_poll(d->log, now);
                if (rc < 0)
                        return rc;
                if (dp_disk_reached(d, wait))
                        return 0;
                if (now >= give_up)
                        return -ETIMEDOUT;
                /* Bounded so that a batch deadline falling due is polled. */
                dp_seglog_wait(d->log, 100000);
        }
}

/* The log is failed (rc, from dp_seglog_poll): a write or fdatasync error
 * stopped it, so answers still parked wait for records that will never be
 * written. Each is answered with an error instead, and the failure is
 * logged once: without this a request whose record was appended just
 * before the failure (the first one into a segment the full disk refused,
 * say) was never answered at all. Its message may still be in memory
 * (the shard took it before the log failed), so the error says it is not
 * durable rather than not kept. A rare path: it may format text. */
static void dp_disk_failed(struct dp_disk *d, int rc)
{
        char why[4400];
        if (d->failed_told != rc) {
                d->failed_told = rc;
                shm_log(SHM_LOG_ERR, "worker %u: disk log failed: %s: %s; storage disk is "
                        "refused on this worker until atomqd restarts",
                        d->w->index, dp_disk_error(d, why, sizeof(why)), strerror(-rc));
        }
        dp_disk_publish_ready(d, false);
        if (d->parked_count == 0)
                return;
        char text[256];
        int len = snprintf(text, sizeof(text),
                           "{\"ok\":false,\"error\":\"%s\",\"message\":\"the disk log failed "
                           "before this request's records were written (%s): not durable\"}",
                           rc == -ENOSPC || rc == -EDQUOT ? "DISK_FULL" : "DISK_ERROR",
                           strerror(-rc));
        if (len < 0 || (size_t)len >= sizeof(text))
                len = snprintf(text, sizeof(text), "{\"ok\":false,\"error\":\"DISK_ERROR\"}");
        while (d->parked_count > 0) {
                struct dp_disk_parked *p = &d->parked[d->parked_head];
                struct dp_msg_in m = { .subject = p->data, .subject_len = p->subject_len,
                                       .payload = text, .payload_len = (uint32_t)len,
                                       .storage = -1 };
                (void)dp_worker_publish_msg(d->w, &m, 0, 0);
                free(p->data);
                p->data = NULL;
                d->parked_head = (d->parked_head + 1) % DP_DISK_PARKED_MAX;
                d->parked_count--;
        }
}

void dp_disk_settle(struct dp_disk *d)
{
        if (d == NULL || d->parked_count == 0)
                return;
        int rc = dp_seglog_poll(d->log, shm_clock_ns());
        if (rc >= 0)
                dp_disk_publish_ready(d, false);
        else
                dp_disk_failed(d, rc);
}

void dp_disk_request_begin(struct dp_disk *d)
{
        if (d == NULL)
                return;
        d->in_request = true;
        d->wait = (struct dp_disk_wait){ 0 };
}

bool dp_disk_request_end(struct dp_disk *d, struct dp_disk_wait *wait)
{
        if (d == NULL)
                return false;
        d->in_request = false;
        *wait = d->wait;
        /* Already where it must be (a sync that raced ahead): no wait. */
        return !dp_disk_reached(d, wait);
}

/* ---- the journal ---------------------------------------------------------------- */

static int dp_disk_compact_now(struct dp_disk *d);

/* Appends, waiting (polling the log) while every write buffer is busy. A
 * log at its directory limit is compacted once first: what is no longer
 * live may make the room. */
static int dp_disk_append(struct dp_disk *d, const struct dp_seglog_rec *rec, unsigned opts,
                          uint64_t *lsn)
{
        int rc = dp_seglog_append(d->target, rec, opts, lsn);
        if (rc == -ENOSPC && d->target == d->log && dp_disk_compact_now(d) == 0)
                rc = dp_seglog_append(d->target, rec, opts, lsn);
        uint64_t give_up = 0;
        while (rc == -ENOBUFS) {
                uint64_t now = shm_clock_ns();
                if (give_up == 0)
                        give_up = now + DP_DISK_BUSY_WAIT_NS;
                if (now > give_up)
                        break;
                int prc = dp_seglog_poll(d->target, now);
                if (prc < 0)
                        return prc;
                rc = dp_seglog_append(d->target, rec, opts, lsn);
        }
        return rc;
}

/* A CREATE record: the entity's options as its payload (c holds them). */
static void dp_disk_create_rec(const struct dp_journal *j, struct dp_disk_create *c,
                               struct dp_seglog_rec *rec)
{
        const struct dp_entity *e = j->e;
        bool idle = (e->lifecycle & DP_LIFE_TTL_IDLE) != 0;
        *c = (struct dp_disk_create){
                .version = DP_DISK_CREATE_VERSION, .mode = e->mode, .overflow = e->overflow,
                .flags = (uint8_t)((idle ? DP_DISK_CREATE_F_TTL_IDLE : 0) |
                                   ((e->flags & DP_ENT_F_LEAST_LOADED) ? DP_DISK_CREATE_F_LEAST_LOADED
                                                                       : 0)),
                .sync = (uint8_t)((e->flags & DP_ENT_F_SYNC_MASK) >> DP_ENT_F_SYNC_SHIFT),
                .ttl_ms = e->ttl_ms, .max_msgs = e->max_msgs, .max_bytes = e->max_bytes,
        };
        rec->payload = c;
        rec->payload_len = sizeof(*c);
        /* An absolute TTL runs on across restarts: keep its deadline (a
         * compaction's restatement passes what is left of it). */
        if (e->ttl_ms != 0 && !idle)
                rec->expiry_ns = dp_disk_realtime_ns() +
                                 (uint64_t)(j->ttl_ms != 0 ? j->ttl_ms : e->ttl_ms) * 1000000;
}

static int dp_disk_journal(void *arg, const struct dp_journal *j)
{
        struct dp_disk *d = arg;
        struct dp_shard *s = &d->w->shard;
        struct dp_disk_create c;
        struct dp_seglog_rec rec = { .type = j->kind, .key = j->name,
                                     .key_len = (uint16_t)j->name_len };
        if (j->name == NULL || j->name_len == 0 || j->name_len > UINT16_MAX)
                return -EINVAL;
        switch (j->kind) {
        case DP_JOURNAL_CREATE:
                dp_disk_create_rec(j, &c, &rec);
                break;
        case DP_JOURNAL_MSG: {
                uint32_t len = 0;
                rec.payload = shm_slab_data(&s->bufs, j->buf, &len);
                rec.payload_len = len;
                rec.entity = j->seq;
                if (j->ttl_ms != 0)
                        rec.expiry_ns = dp_disk_realtime_ns() + (uint64_t)j->ttl_ms * 1000000;
                break;
        }
        case DP_JOURNAL_ACK:
                rec.entity = j->seq;
                break;
        case DP_JOURNAL_COMMIT:
                rec.entity = j->seq;
                rec.payload = j->group;
                rec.payload_len = j->group_len;
                break;
        case DP_JOURNAL_DESTROY:
        case DP_JOURNAL_FORGET:
                break;
        case DP_JOURNAL_TTL:
                /* An absolute TTL keeps its deadline across restarts. */
                rec.entity = j->ttl_ms;
                if (j->ttl_ms != 0 && !(j->e->lifecycle & DP_LIFE_TTL_IDLE))
                        rec.expiry_ns = dp_disk_realtime_ns() + (uint64_t)j->ttl_ms * 1000000;
                break;
        default:
                return -EINVAL;
        }
        uint64_t lsn = 0;
        int rc = dp_disk_append(d, &rec, j->sync == DP_SYNC_ALWAYS ? DP_SEGLOG_APPEND_SYNC : 0,
                                &lsn);
        if (rc != 0) {
                dp_counter_inc(&dp_disk_ctr(d)->journal_errors);
                /* The directory limit is the disk tier's "full", not the
                 * table's -ENOSPC. */
                return rc == -ENOSPC ? -EDQUOT : rc;
        }
        /* always: answered once synced; batch: once written (the sync
         * follows within batch_us); none: at once. */
        if (d->in_request && j->sync == DP_SYNC_ALWAYS && lsn > d->wait.durable)
                d->wait.durable = lsn;
        if (d->in_request && j->sync == DP_SYNC_BATCH && lsn > d->wait.written)
                d->wait.written = lsn;
        return 0;
}

/* ---- replay ------------------------------------------------------------------------ */

static int dp_disk_find(struct dp_shard *s, const struct dp_seglog_rec *rec, uint64_t *h)
{
        return dp_table_find(&s->table, rec->key, rec->key_len, h);
}

static void dp_disk_replay_create(struct dp_disk *d, const struct dp_seglog_rec *rec,
                                  uint64_t now_real)
{
        struct dp_shard *s = &d->w->shard;
        struct dp_disk_create c;
        uint64_t h;
        if (rec->payload_len != sizeof(c)) {
                d->stats.replay_skipped++;
                return;
        }
        memcpy(&c, rec->payload, sizeof(c));
        struct dp_create_opts o = {
                .mode = c.mode, .storage = DP_STORAGE_DISK, .storage_set = true,
                .overflow = (int8_t)c.overflow,
                .ttl_idle = (c.flags & DP_DISK_CREATE_F_TTL_IDLE) != 0,
                .least_loaded = (c.flags & DP_DISK_CREATE_F_LEAST_LOADED) != 0,
                .ttl_ms = c.ttl_ms, .max_msgs = c.max_msgs, .max_bytes = c.max_bytes,
                .sync = c.sync,
        };
        if (rec->expiry_ns != 0) {
                if (rec->expiry_ns <= now_real) {
                        d->stats.replay_skipped++;     /* it expired while we were down */
                        return;
                }
                uint64_t left_ms = (rec->expiry_ns - now_real) / 1000000 + 1;
                o.ttl_ms = left_ms < o.ttl_ms ? (uint32_t)left_ms : o.ttl_ms;
        }
        /* Entering the disk tier again after a FORGET that replayed as a
         * destroy, or twice: the newer options win. */
        if (dp_disk_find(s, rec, &h) == 0)
                dp_shard_destroy(s, h);
        if (dp_shard_create(s, &o, rec->key, rec->key_len, &h) == 0)
                d->stats.entities++;
        else
                d->stats.replay_skipped++;
}

static void dp_disk_replay_msg(struct dp_disk *d, const struct dp_seglog_rec *rec, uint64_t h,
                               uint64_t now_real)
{
        struct dp_shard *s = &d->w->shard;
        struct atomq_frame f;
        struct dp_msg_in m;
        if (atomq_frame_check(rec->payload, rec->payload_len, &f) != ATOMQ_FRAME_OK) {
                d->stats.replay_skipped++;
                return;
        }
        dp_frame_read(&f, rec->payload, &m);
        m.ttl_ms = 0;
        if (rec->expiry_ns != 0) {
                if (rec->expiry_ns <= now_real) {
                        /* Expired: only the number is used up. */
                        struct dp_entity *e;
                        if (dp_table_get(&s->table, h, &e) == 0 && e->seq <= rec->entity)
                                e->seq = rec->entity + 1;
                        d->stats.replay_skipped++;
                        return;
                }
                uint64_t left_ms = (rec->expiry_ns - now_real) / 1000000 + 1;
                m.ttl_ms = left_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)left_ms;
        }
        if (dp_shard_replay_msg(s, h, &m, rec->entity) != 0)
                d->stats.replay_skipped++;
}

static int dp_disk_replay(void *arg, const struct dp_seglog_rec *rec)
{
        struct dp_disk *d = arg;
        struct dp_shard *s = &d->w->shard;
        uint64_t now_real = dp_disk_realtime_ns();
        uint64_t h;
        d->stats.replayed++;
        if (rec->type == DP_JOURNAL_CREATE) {
                dp_disk_replay_create(d, rec, now_real);
                return 0;
        }
        if (dp_disk_find(s, rec, &h) != 0) {
                d->stats.replay_skipped++;     /* destroyed or expired before */
                return 0;
        }
        char group[DP_NAME_MAX + 1];
        switch (rec->type) {
        case DP_JOURNAL_MSG:
                dp_disk_replay_msg(d, rec, h, now_real);
                break;
        case DP_JOURNAL_ACK:
                (void)dp_shard_ack(s, h, rec->entity);
                break;
        case DP_JOURNAL_COMMIT:
                if (rec->payload_len == 0 || rec->payload_len > DP_NAME_MAX)
                        break;
                memcpy(group, rec->payload, rec->payload_len);
                group[rec->payload_len] = '\0';
                (void)dp_shard_commit(s, h, group, rec->entity);
                break;
        case DP_JOURNAL_DESTROY:
        case DP_JOURNAL_FORGET:
                /* FORGET: the entity went on in memory only, and memory did
                 * not survive. */
                dp_shard_destroy(s, h);
                break;
        case DP_JOURNAL_TTL: {
                uint64_t ttl = rec->entity;
                if (rec->expiry_ns != 0) {
                        if (rec->expiry_ns <= now_real) {
                                dp_shard_destroy(s, h);   /* it ran out while we were down */
                                break;
                        }
                        uint64_t left_ms = (rec->expiry_ns - now_real) / 1000000 + 1;
                        ttl = left_ms < ttl ? left_ms : ttl;
                }
                (void)dp_shard_set_ttl(s, h, (uint32_t)ttl);
                break;
        }
        case DP_DISK_REC_CURSOR: {
                uint64_t gh;
                if (rec->payload_len != sizeof(gh))
                        break;
                memcpy(&gh, rec->payload, sizeof(gh));
                (void)dp_shard_cursor_restore(s, h, gh, rec->entity);
                break;
        }
        default:
                d->stats.replay_skipped++;
                break;
        }
        return 0;
}

/* ---- compaction ---------------------------------------------------------------------
 * The live disk entities are written afresh, as a replay would rebuild
 * them, into a new log beside the old one (<dir>.next), synced, and the two
 * directories swap places with one renameat2(RENAME_EXCHANGE): a crash
 * before the swap leaves the old log (and a .next that the next open
 * removes), a crash after it the new one. Everything the old log held that
 * is no longer live (acked, expired, destroyed, superseded) is gone with
 * it. It runs on the worker's thread between requests and blocks it for as
 * long as the live data takes to write; the old log's files are unlinked
 * in the background (dp_trash.h: each unlink of a full segment took the
 * worker 20-40 ms). */

static void dp_disk_rmdir(const char *path)
{
        DIR *dir = opendir(path);
        if (dir == NULL)
                return;
        struct dirent *de;
        while ((de = readdir(dir)) != NULL)
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                        (void)unlinkat(dirfd(dir), de->d_name, 0);
        closedir(dir);
        (void)rmdir(path);
}

static int dp_disk_cursor_rec(void *arg, uint64_t group_hash, uint64_t offset)
{
        struct dp_disk *d = arg;
        const struct dp_entity *e = d->restating;
        struct dp_shard *s = &d->w->shard;
        uint32_t name_len;
        const char *name = dp_table_name(&s->table, e, &name_len);
        struct dp_seglog_rec rec = { .type = DP_DISK_REC_CURSOR, .key = name,
                                     .key_len = (uint16_t)name_len, .entity = offset,
                                     .payload = &group_hash,
                                     .payload_len = sizeof(group_hash) };
        uint64_t lsn;
        return dp_disk_append(d, &rec, 0, &lsn);
}

/* Every live, named disk entity into the log d->target points at. */
static int dp_disk_restate(struct dp_disk *d)
{
        struct dp_shard *s = &d->w->shard;
        struct dp_table *t = &s->table;
        int rc = 0;
        /* Up to the highest slot ever taken, not the whole table: slots are
         * reused last freed first, so the live ones sit low, and a walk over
         * a million slots took 10 ms. */
        uint32_t top = t->hdr->top < t->capacity ? t->hdr->top : t->capacity;
        for (uint32_t slot = 0; slot < top && rc == 0; slot++) {
                struct dp_entity *e = &t->slots[slot];
                if (!(e->flags & DP_ENT_F_LIVE) || !(e->flags & DP_ENT_F_NAMED) ||
                    e->storage != DP_STORAGE_DISK)
                        continue;
                struct dp_journal j = { .kind = DP_JOURNAL_CREATE };
                uint64_t deadline = dp_timer_deadline(&s->timers, slot);
                if (e->ttl_ms != 0 && !(e->lifecycle & DP_LIFE_TTL_IDLE) &&
                    deadline != UINT64_MAX)
                        j.ttl_ms = deadline > s->now_ns
                                           ? (uint32_t)((deadline - s->now_ns) / 1000000 + 1)
                                           : 1;
                d->restating = e;
                rc = dp_journal_tell(s, e, &j);
                if (rc == 0)
                        rc = dp_store_journal_all(s, e);
                if (rc == 0)
                        rc = dp_shard_cursors_each(s, dp_table_handle(t, e), dp_disk_cursor_rec,
                                                   d);
        }
        d->restating = NULL;
        return rc;
}

/* fsync of the directory that holds dir (and dir.next): after the swap. */
static int dp_disk_parent_sync(const struct dp_disk *d)
{
        char parent[sizeof(d->dir)];
        memcpy(parent, d->dir, sizeof(parent));
        char *slash = strrchr(parent, '/');
        if (slash == NULL)
                strcpy(parent, ".");
        else if (slash == parent)
                parent[1] = '\0';
        else
                *slash = '\0';
        int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        int rc = fsync(fd) != 0 ? -errno : 0;
        close(fd);
        return rc;
}

static int dp_disk_compact_failed(struct dp_disk *d, int rc)
{
        dp_counter_inc(&dp_disk_ctr(d)->compact_errors);
        return rc;
}

int dp_disk_compact(struct dp_disk *d)
{
        uint64_t t0 = shm_clock_ns();
        uint32_t segs_before = dp_seglog_segments(d->log, NULL, 0);
        struct dp_seglog *nl = calloc(1, dp_seglog_size());
        if (nl == NULL)
                return -ENOMEM;
        dp_disk_rmdir(d->next_dir);
        struct dp_seglog_config c = d->lc;
        c.dir = d->next_dir;
        c.on_durable = NULL;
        c.sync = DP_SEGLOG_SYNC_BATCH;  /* synced once, at the end */
        c.batch_us = 10u * 1000 * 1000;
        int rc = dp_seglog_open(nl, &c, NULL, NULL);
        if (rc == 0) {
                d->target = nl;
                rc = dp_disk_restate(d);
                d->target = d->log;
                if (rc == 0)
                        rc = dp_seglog_sync_now(nl);
        }
        if (rc != 0) {
                (void)dp_seglog_close(nl);
                struct dp_seglog_stats none = { 0 };
                dp_disk_count(d, dp_seglog_stats(nl), &none);
                free(nl);
                dp_disk_rmdir(d->next_dir);
                return dp_disk_compact_failed(d, rc);
        }
        /* The old log closes synced (its parked answers go out); then the
         * swap. The new log stays open across it (its descriptors follow
         * the rename) and becomes the worker's log: no reopen, no second
         * read of what was just written. */
        (void)dp_seglog_close(d->log);
        dp_disk_count(d, dp_seglog_stats(d->log), &d->told);
        rc = renameat2(AT_FDCWD, d->next_dir, AT_FDCWD, d->dir, RENAME_EXCHANGE) != 0 ? -errno : 0;
        /* The swap itself made durable before anything is acknowledged from
         * the new log: a crash must not bring the old directory back. */
        if (rc == 0 && dp_disk_parent_sync(d) != 0)
                dp_counter_inc(&dp_disk_ctr(d)->compact_errors);
        int orc = 0;
        if (rc == 0) {
                free(d->log);
                d->log = d->target = nl;
                /* The restate's writes count too. */
                d->told = (struct dp_seglog_stats){ 0 };
                dp_disk_count(d, dp_seglog_stats(nl), &d->told);
                orc = dp_seglog_set_policy(nl, d->lc.sync, d->lc.batch_us, d->lc.on_durable,
                                           d->lc.durable_arg);
                /* At next_dir now: the old log. */
                if (dp_trash_dir(&d->trash, d->next_dir) != 0)
                        dp_disk_rmdir(d->next_dir);
        } else {
                /* The swap failed: the new log goes, the old one opens again. */
                (void)dp_seglog_close(nl);
                free(nl);
                dp_disk_rmdir(d->next_dir);
                orc = dp_seglog_open(d->log, &d->lc, NULL, NULL);
                d->told = *dp_seglog_stats(d->log);
        }
        /* If the new ring cannot signal it, the eventfd stays (the NATS
         * ring watches it) and goes quiet: the worker's sleep is bounded. */
        if (orc == 0 && d->efd >= 0)
                (void)dp_seglog_set_eventfd(d->log, d->efd);
        /* Whatever was parked is durable now: in the closed old log, and in
         * the new one. */
        dp_disk_publish_ready(d, true);
        if (orc != 0) {
                /* No log to journal into: storage disk is refused from now. */
                dp_shard_set_journal(&d->w->shard, NULL, NULL);
                return dp_disk_compact_failed(d, orc);
        }
        if (rc != 0)
                return dp_disk_compact_failed(d, rc);
        dp_counter_inc(&dp_disk_ctr(d)->compactions);
        uint32_t n = dp_seglog_segments(d->log, NULL, 0);
        d->compact_after = 2 * n > DP_DISK_COMPACT_SEGMENTS ? 2 * n : DP_DISK_COMPACT_SEGMENTS;
        /* Rare (the log doubled since the last one) and blocking: worth a
         * line with what it took. */
        shm_log(SHM_LOG_INFO, "worker %u: disk log compacted from %u segments to %u in %llu ms",
                d->w->index, segs_before, n,
                (unsigned long long)((shm_clock_ns() - t0) / 1000000));
        return 0;
}

/* Compaction in the middle of a request: everything before it is durable
 * now, and the new log numbers its records afresh. */
static int dp_disk_compact_now(struct dp_disk *d)
{
        /* A full log that compaction could not shrink is not tried again
         * on every append, only once a second. */
        uint64_t now = shm_clock_ns();
        if (now < d->compact_retry_ns)
                return -ENOSPC;
        int rc = dp_disk_compact(d);
        if (rc == 0)
                d->wait = (struct dp_disk_wait){ 0 };
        else
                d->compact_retry_ns = now + 1000000000ull;
        return rc;
}

/* ---- life ------------------------------------------------------------------------- */

/* The worker's log: batch policy (records written at each poll, synced on
 * the group-commit timer or when a record asks), in d->dir. */
static void dp_disk_log_config(struct dp_disk *d, const struct dp_disk_config *cfg,
                               struct dp_seglog_config *lc)
{
        dp_seglog_config_default(lc);
        lc->dir = d->dir;
        lc->io = cfg->direct ? DP_SEGLOG_IO_DIRECT : DP_SEGLOG_IO_BUFFERED;
        lc->sync = DP_SEGLOG_SYNC_BATCH;
        lc->batch_us = cfg->batch_us != 0 ? cfg->batch_us : DP_DISK_BATCH_US_DEFAULT;
        lc->dir_bytes_max = cfg->dir_bytes_max;
        if (cfg->segment_bytes != 0)
                lc->segment_bytes = cfg->segment_bytes;
        if (lc->dir_bytes_max != 0 && lc->dir_bytes_max < lc->segment_bytes)
                lc->segment_bytes = lc->dir_bytes_max;
        lc->on_durable = dp_disk_on_durable;
        lc->durable_arg = d;
}

int dp_disk_open(struct dp_disk **out, struct dp_worker *w, const struct dp_disk_config *cfg)
{
        struct dp_disk *d = calloc(1, sizeof(*d));
        if (d == NULL)
                return -ENOMEM;
        d->w = w;
        d->efd = -1;
        d->log = calloc(1, dp_seglog_size());
        d->parked = calloc(DP_DISK_PARKED_MAX, sizeof(*d->parked));
        int n = snprintf(d->dir, sizeof(d->dir), "%s/w%u", cfg->data_dir, w->index);
        if (d->log == NULL || d->parked == NULL || n < 0 || (size_t)n >= sizeof(d->dir)) {
                free(d->log);
                free(d->parked);
                free(d);
                return n < 0 || (size_t)n >= sizeof(d->dir) ? -ENAMETOOLONG : -ENOMEM;
        }
        struct dp_seglog_config lc;
        dp_disk_log_config(d, cfg, &lc);
        d->lc = lc;
        d->target = d->log;
        d->compact_after = DP_DISK_COMPACT_SEGMENTS;
        snprintf(d->next_dir, sizeof(d->next_dir), "%s.next", d->dir);
        dp_disk_rmdir(d->next_dir);    /* a compaction that did not finish */
        (void)dp_trash_init(&d->trash, d->dir);   /* dir is shorter than its bound */
        (void)dp_trash_sweep(&d->trash);          /* removals a crash cut short */
        struct dp_shard *s = &w->shard;
        /* The journal is set first: replaying a create of storage disk
         * needs one, and replaying tells it nothing. */
        dp_shard_set_journal(s, dp_disk_journal, d);
        bool replay = s->hdr->journal_loaded == 0;
        /* TTLs are armed from the shard's clock, which the worker's first
         * pass has not set yet. */
        uint64_t now = shm_clock_ns();
        if (s->now_ns < now)
                s->now_ns = now;
        s->replaying = true;
        int rc = dp_seglog_open(d->log, &lc, replay ? dp_disk_replay : NULL, d);
        /* A dataplane killed a moment ago may hold the directory's lock a
         * while longer: its io_uring workers finish their I/O (and let go
         * of its files) after it died. Wait for it, bounded. */
        for (uint64_t give_up = shm_clock_ns() + DP_DISK_LOCK_WAIT_NS;
             rc == -EBUSY && shm_clock_ns() < give_up;) {
                struct timespec ts = { 0, 10 * 1000 * 1000 };
                nanosleep(&ts, NULL);
                rc = dp_seglog_open(d->log, &lc, replay ? dp_disk_replay : NULL, d);
        }
        s->replaying = false;
        if (rc != 0) {
                dp_shard_set_journal(s, NULL, NULL);
                *out = d;    /* for dp_disk_error; dp_disk_close frees it */
                return rc;
        }
        s->hdr->journal_loaded = 1;
        d->told = *dp_seglog_stats(d->log);
        /* Completions signal an eventfd the worker's sleep can watch
         * (dp_disk_eventfd); without one it sleeps briefly instead. */
        d->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (d->efd >= 0 && dp_seglog_set_eventfd(d->log, d->efd) != 0) {
                close(d->efd);
                d->efd = -1;
        }
        dp_trash_set_eventfd(&d->trash, d->efd);
        *out = d;
        return 0;
}

int dp_disk_eventfd(const struct dp_disk *d)
{
        return d != NULL ? d->efd : -1;
}

const char *dp_disk_error(const struct dp_disk *d, char *buf, size_t len)
{
        const struct dp_seglog_error *e = dp_seglog_error(d->log);
        if (e->file[0] != '\0')
                snprintf(buf, len, "%s: %s (%s at offset %llu)", d->dir, e->what, e->file,
                         (unsigned long long)e->offset);
        else
                snprintf(buf, len, "%s: %s", d->dir, e->what);
        return buf;
}

void dp_disk_close(struct dp_disk *d)
{
        if (d == NULL)
                return;
        if (d->w->shard.journal_arg == d)
                dp_shard_set_journal(&d->w->shard, NULL, NULL);
        dp_seglog_close(d->log);
        dp_disk_count(d, dp_seglog_stats(d->log), &d->told);
        dp_disk_publish_ready(d, false);
        dp_trash_fini(&d->trash);
        if (d->efd >= 0)
                close(d->efd);
        for (uint32_t i = 0; i < d->parked_count; i++)
                free(d->parked[(d->parked_head + i) % DP_DISK_PARKED_MAX].data);
        free(d->parked);
        free(d->log);
        free(d);
}

int dp_disk_poll(struct dp_disk *d, uint64_t now_ns)
{
        int trashed = dp_trash_poll(&d->trash);
        if (d->trash.stats.errors != d->trash_errors_told) {
                d->trash_errors_told = d->trash.stats.errors;
                shm_log(SHM_LOG_WARN, "worker %u: %llu removals of old disk logs failed "
                        "(what is left is in %s.trash.*, removed at the next start)",
                        d->w->index, (unsigned long long)d->trash_errors_told, d->dir);
        }
        int rc = dp_seglog_poll(d->log, now_ns);
        dp_disk_count(d, dp_seglog_stats(d->log), &d->told);
        if (rc < 0) {
                dp_disk_failed(d, rc);
        } else {
                d->failed_told = 0;   /* working again (a compaction replaced it) */
                if (d->parked_count > 0)
                        dp_disk_publish_ready(d, false);
        }
        /* Between requests, with no I/O in flight or due: a log grown to
         * compact_after segments is written afresh. */
        if (rc == 0 && dp_seglog_segments(d->log, NULL, 0) >= d->compact_after &&
            dp_seglog_next_ns(d->log) > now_ns)
                (void)dp_disk_compact(d);
        return (rc > 0 ? rc : 0) + trashed;
}

bool dp_disk_busy(const struct dp_disk *d)
{
        return d != NULL &&
               (dp_seglog_next_ns(d->log) != UINT64_MAX || dp_trash_busy(&d->trash));
}

const struct dp_disk_stats *dp_disk_stats(const struct dp_disk *d)
{
        return &d->stats;
}
