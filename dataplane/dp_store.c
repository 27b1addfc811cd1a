/* dp_store.c - the storage, retention and delivery atoms: what an entity
 * keeps, for how long, and how it hands messages out (fetch, ack, get,
 * read, consumer-group cursors).
 *
 * Per-message TTLs are enforced lazily: an expired message is dropped when
 * a walk meets it (fetch, get, read, or a send that finds the entity full),
 * so it is never delivered and never holds a limit hostage, without a timer
 * per message.
 */
#include "dataplane/dp_shard_pvt.h"

#include <errno.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "atomq/frame.h"
#include "dataplane/dp_cmd.h"
#include "dataplane/dp_subject.h"

/* Message flags for the channel end that sent a message. */
#define DP_MSG_END_SHIFT 8
#define DP_MSG_END_MASK (3u << DP_MSG_END_SHIFT)

uint32_t dp_hash32(const void *p, size_t len)
{
        return (uint32_t)XXH3_64bits(p, len);
}

uint64_t dp_hash64(const void *p, size_t len)
{
        return XXH3_64bits(p, len);
}

int dp_buf_make(struct dp_shard *s, const struct dp_msg_in *m, uint32_t *buf)
{
        uint64_t total = dp_frame_bytes(m);
        if (total == 0)
                return -EMSGSIZE;
        int rc = shm_slab_alloc(&s->bufs, (uint32_t)total, buf);
        if (rc == -ENOMEM)
                s->stats->pool_exhausted++;
        if (rc != 0)
                return rc;
        dp_frame_write(shm_slab_data(&s->bufs, *buf, NULL), ATOMQ_OP_PUB, m);
        return 0;
}

int dp_shard_msg_view(const struct dp_shard *s, uint32_t buf, struct dp_msg_view *v)
{
        uint32_t len;
        const uint8_t *p = shm_slab_data(&s->bufs, buf, &len);
        struct atomq_frame f;
        if (p == NULL || atomq_frame_check(p, len, &f) != ATOMQ_FRAME_OK)
                return -EINVAL;
        struct dp_msg_in m;
        dp_frame_read(&f, p, &m);
        *v = (struct dp_msg_view){
                .subject = m.subject,
                .subject_len = m.subject_len,
                .headers = p + sizeof(f) + f.subject_len,
                .headers_len = m.headers_len,
                .payload = m.payload,
                .payload_len = m.payload_len,
                .reply = m.reply,
                .reply_subject = m.reply_subject,
                .reply_subject_len = m.reply_subject_len,
        };
        return 0;
}

static uint32_t dp_buf_len(const struct dp_shard *s, uint32_t buf)
{
        uint32_t len = 0;
        shm_slab_data(&s->bufs, buf, &len);
        return len;
}

/* Unlinks record idx (predecessor prev, UINT32_MAX at the head) and lets
 * its buffer go, unless keep_buf (the reference moves to a caller). */
static void dp_msg_remove(struct dp_shard *s, struct dp_entity *e, uint32_t prev, uint32_t idx,
                          bool keep_buf)
{
        struct dp_msg *r = dp_msgs_get(&s->msgs, idx);
        dp_msgq_unlink(&s->msgs, e, prev, idx);
        e->msgs--;
        e->bytes -= dp_buf_len(s, r->buf);
        if (!keep_buf)
                shm_slab_put(&s->bufs, r->buf);
        dp_msgs_free(&s->msgs, idx);
}

static bool dp_msg_expired(const struct dp_shard *s, const struct dp_msg *r)
{
        return r->expire_ns != 0 && r->expire_ns <= s->now_ns;
}

/* Drops every expired message of e; returns how many. */
static uint32_t dp_store_expire(struct dp_shard *s, struct dp_entity *e)
{
        uint32_t prev = UINT32_MAX, n = 0;
        for (uint32_t i = e->q_head; i != 0;) {
                uint32_t idx = i - 1;
                i = dp_msgs_get(&s->msgs, idx)->next;
                if (dp_msg_expired(s, dp_msgs_get(&s->msgs, idx))) {
                        dp_msg_remove(s, e, prev, idx, false);
                        n++;
                } else {
                        prev = idx;
                }
        }
        s->stats->drops_expired += n;
        return n;
}

void dp_store_purge(struct dp_shard *s, struct dp_entity *e)
{
        while (e->q_head != 0)
                dp_msg_remove(s, e, UINT32_MAX, e->q_head - 1, false);
}

static bool dp_store_full(const struct dp_entity *e, uint32_t len)
{
        return (e->max_msgs != 0 && e->msgs >= e->max_msgs) ||
               (e->max_bytes != 0 && (uint64_t)e->bytes + len > e->max_bytes);
}

/* Makes room for a message of len bytes as the overflow atom says.
 * -ENOBUFS when the entity refuses it. */
static int dp_store_room(struct dp_shard *s, struct dp_entity *e, uint32_t len)
{
        if (!dp_store_full(e, len))
                return 0;
        if (e->max_bytes != 0 && len > e->max_bytes)
                return -ENOBUFS;
        /* Refusing: expired messages anywhere make room first. Dropping
         * the oldest (a full log, each append): only from the head, so an
         * append stays O(1) however much the entity keeps; an expired
         * message further in goes when a walk meets it. */
        if (e->overflow == DP_OVERFLOW_REJECT) {
                dp_store_expire(s, e);
                if (dp_store_full(e, len))
                        return -ENOBUFS;
                return 0;
        }
        while (dp_store_full(e, len) && e->q_head != 0) {
                bool expired = dp_msg_expired(s, dp_msgs_get(&s->msgs, e->q_head - 1));
                dp_msg_remove(s, e, UINT32_MAX, e->q_head - 1, false);
                if (expired)
                        s->stats->drops_expired++;
                else
                        s->stats->drops_full++;
        }
        return 0;
}

/* Retention latest: the record holding key, and its predecessor. */
static int64_t dp_store_find_key(struct dp_shard *s, struct dp_entity *e, const char *key,
                                 uint32_t key_len, uint32_t *prev_out)
{
        uint32_t hash = dp_hash32(key, key_len), prev = UINT32_MAX;
        for (uint32_t i = e->q_head; i != 0;) {
                uint32_t idx = i - 1;
                struct dp_msg *r = dp_msgs_get(&s->msgs, idx);
                struct dp_msg_view v;
                if (r->key_hash == hash && dp_shard_msg_view(s, r->buf, &v) == 0 &&
                    v.subject_len == key_len && memcmp(v.subject, key, key_len) == 0) {
                        *prev_out = prev;
                        return idx;
                }
                prev = idx;
                i = r->next;
        }
        return -ENOENT;
}

/* Links record idx, holding buf under seq, at the tail of e's queue. */
static void dp_store_link(struct dp_shard *s, struct dp_entity *e, uint32_t idx, uint32_t buf,
                          uint32_t len, uint64_t seq, const struct dp_msg_in *m)
{
        struct dp_msg *r = dp_msgs_get(&s->msgs, idx);
        r->buf = buf;
        r->seq = seq;
        r->expire_ns = m->ttl_ms ? s->now_ns + (uint64_t)m->ttl_ms * 1000000 : 0;
        r->key_hash = m->subject_len ? dp_hash32(m->subject, m->subject_len) : 0;
        r->flags = (uint16_t)((m->end & 3u) << DP_MSG_END_SHIFT);
        dp_msgq_append(&s->msgs, e, idx);
        e->msgs++;
        e->bytes += len;
}

/* Retention latest with a value already under the key: would the new one
 * fit once the old one (record old, len old_len) has made way? */
static bool dp_store_fits_replacing(const struct dp_entity *e, uint32_t old_len, uint32_t len)
{
        return (e->max_msgs == 0 || e->msgs - 1 < e->max_msgs) &&
               (e->max_bytes == 0 || (uint64_t)e->bytes - old_len + len <= e->max_bytes);
}

/* Makes room for the new message as retention and overflow say. The key's
 * old value (retention latest) goes only once the new one is sure to be
 * stored, so a refused send never loses the current value. */
static int dp_store_make_room(struct dp_shard *s, struct dp_entity *e, uint32_t len,
                              const struct dp_msg_in *m)
{
        uint32_t prev;
        int64_t old = -1;
        if (e->retention == DP_RETENTION_LATEST)
                old = dp_store_find_key(s, e, m->subject, m->subject_len, &prev);
        if (old < 0)
                return dp_store_room(s, e, len);
        uint32_t old_len = dp_buf_len(s, dp_msgs_get(&s->msgs, (uint32_t)old)->buf);
        if (e->max_bytes != 0 && len > e->max_bytes)
                return -ENOBUFS;
        if (!dp_store_fits_replacing(e, old_len, len) && e->overflow == DP_OVERFLOW_REJECT)
                return -ENOBUFS;
        dp_msg_remove(s, e, prev, (uint32_t)old, false);
        return dp_store_room(s, e, len);
}

/* Keeps buf (the caller's reference moves to the queue) under seq. The
 * record is taken first: when the pool is empty nothing has changed. */
/* Stored messages leave the last 1/32 of their buffer class to messages in
 * transit: deliveries and the answers that tell a client its entity is
 * full. Without it a shard whose buffers all hold stored messages (a
 * rebuilt disk tier, say) could not answer at all. Classes of fewer than
 * DP_STORE_RESERVE_MIN_BLOCKS blocks (the large ones, and test shards)
 * keep no reserve. */
#define DP_STORE_RESERVE_MIN_BLOCKS 256u
static bool dp_store_headroom(const struct dp_shard *s, uint32_t buf)
{
        uint32_t c = buf >> SHM_BUF_CLASS_SHIFT;
        if (c >= s->bufs.class_count)
                return false;
        const struct shm_pool *p = &s->bufs.pools[c];
        if (p->block_count < DP_STORE_RESERVE_MIN_BLOCKS)
                return true;
        return shm_pool_in_use(p) + p->block_count / 32 <= p->block_count;
}

static int dp_store_put(struct dp_shard *s, struct dp_entity *e, uint32_t buf, uint64_t seq,
                        const struct dp_msg_in *m)
{
        uint32_t idx, len = dp_buf_len(s, buf);
        if (!dp_store_headroom(s, buf)) {
                s->stats->pool_exhausted++;
                return -ENOMEM;
        }
        if (dp_msgs_alloc(&s->msgs, &idx) != 0) {
                s->stats->pool_exhausted++;
                return -ENOMEM;
        }
        int rc = dp_store_make_room(s, e, len, m);
        if (rc != 0) {
                dp_msgs_free(&s->msgs, idx);
                s->stats->drops_full++;
                return rc;
        }
        dp_store_link(s, e, idx, buf, len, seq, m);
        return 0;
}

static int dp_send_check(const struct dp_entity *e, const struct dp_msg_in *m, uint8_t *storage)
{
        if (m->storage >= DP_STORAGE_COUNT_ || m->end > 2 || m->sync >= DP_SYNC_COUNT_)
                return -EINVAL;
        *storage = m->storage >= 0 ? (uint8_t)m->storage : e->storage;
        /* A message goes to disk only with its entity: the journal knows
         * entities on the disk tier, not single messages of others. */
        if (*storage == DP_STORAGE_DISK && e->storage != DP_STORAGE_DISK)
                return -EOPNOTSUPP;
        if (e->retention == DP_RETENTION_LATEST && m->subject_len == 0)
                return -EINVAL;
        if (m->subject_len != 0 && dp_subject_check(m->subject, m->subject_len, false) != 0)
                return -EINVAL;
        return 0;
}

/* Gives an already built buffer to an entity; the caller keeps its own
 * reference. */
int dp_send_buf(struct dp_shard *s, uint64_t handle, const struct dp_msg_in *m, uint32_t buf,
                uint64_t *seq)
{
        struct dp_entity *e;
        uint8_t storage;
        unsigned delivered = 0;
        int rc = dp_table_get(&s->table, handle, &e);
        if (rc == 0)
                rc = dp_send_check(e, m, &storage);
        if (rc != 0)
                return rc;
        uint64_t sq = e->seq;
        /* Journal first: a message the disk refuses is refused, nothing
         * kept. One the queue then refuses (full) is struck out again. */
        if (storage == DP_STORAGE_DISK) {
                struct dp_journal j = { .kind = DP_JOURNAL_MSG, .seq = sq, .buf = buf,
                                        .ttl_ms = m->ttl_ms, .sync = dp_journal_sync(e, m) };
                rc = dp_journal_tell(s, e, &j);
                if (rc != 0)
                        return rc;
        }
        /* Keep first (the queue takes a reference), route second: a watcher
         * told of the message can already fetch it. */
        if (storage != DP_STORAGE_NONE) {
                shm_slab_ref(&s->bufs, buf, 1);
                rc = dp_store_put(s, e, buf, sq, m);
                if (rc != 0) {
                        shm_slab_put(&s->bufs, buf);
                        if (storage == DP_STORAGE_DISK) {
                                struct dp_journal j = { .kind = DP_JOURNAL_ACK, .seq = sq };
                                (void)dp_journal_tell(s, e, &j);
                                e->seq++;  /* the journal used the number */
                        }
                        return rc;
                }
        }
        e->seq++;
        s->stats->msgs_in++;
        s->stats->bytes_in += m->payload_len;
        dp_entity_touch(s, e);
        dp_route_entity(s, e, handle, buf, sq, m, &delivered);
        if (seq != NULL)
                *seq = sq;
        if (storage == DP_STORAGE_NONE && delivered == 0) {
                s->stats->drops_no_party++;
                return -ENOENT;
        }
        return 0;
}

int dp_shard_send(struct dp_shard *s, uint64_t handle, const struct dp_msg_in *m, uint64_t *seq)
{
        struct dp_entity *e;
        uint8_t storage;
        uint32_t buf;
        /* Check before building the buffer: a refused message costs no copy. */
        int rc = dp_table_get(&s->table, handle, &e);
        if (rc == 0)
                rc = dp_send_check(e, m, &storage);
        if (rc == 0)
                rc = dp_buf_make(s, m, &buf);
        if (rc != 0)
                return rc;
        rc = dp_send_buf(s, handle, m, buf, seq);
        shm_slab_put(&s->bufs, buf);
        return rc;
}

static int dp_shard_entity(struct dp_shard *s, uint64_t handle, struct dp_entity **e)
{
        int rc = dp_table_get(&s->table, handle, e);
        if (rc == 0)
                dp_entity_touch(s, *e);
        return rc;
}

/* At-least-once: may record idx be handed out now? Drops it (returns
 * false) once it has been delivered max_deliver times. */
static bool dp_fetch_due(struct dp_shard *s, struct dp_entity *e, uint32_t prev, uint32_t idx)
{
        struct dp_msg *r = dp_msgs_get(&s->msgs, idx);
        if (!(r->flags & DP_MSG_F_INFLIGHT))
                return true;
        if (r->ack_ns > s->now_ns)
                return false;
        if (r->deliveries >= s->max_deliver) {
                dp_msg_remove(s, e, prev, idx, false);
                s->stats->drops_max_deliver++;
                return false;
        }
        return true;
}

int dp_shard_fetch(struct dp_shard *s, uint64_t handle, uint8_t end, struct dp_fetched *out,
                   unsigned max)
{
        struct dp_entity *e;
        int rc = dp_shard_entity(s, handle, &e);
        if (rc != 0)
                return rc;
        if (e->delivery == DP_DELIVERY_ORDERED)
                return -EOPNOTSUPP;
        unsigned n = 0;
        uint32_t prev = UINT32_MAX;
        for (uint32_t i = e->q_head; i != 0 && n < max;) {
                uint32_t idx = i - 1;
                struct dp_msg *r = dp_msgs_get(&s->msgs, idx);
                i = r->next;
                uint32_t removed_before = e->msgs;
                if (dp_msg_expired(s, r)) {
                        dp_msg_remove(s, e, prev, idx, false);
                        s->stats->drops_expired++;
                        continue;
                }
                /* A channel end takes only what the other end sent. */
                bool own = end != 0 && ((r->flags & DP_MSG_END_MASK) >> DP_MSG_END_SHIFT) == end;
                if (own || (e->delivery == DP_DELIVERY_AT_LEAST_ONCE &&
                            !dp_fetch_due(s, e, prev, idx))) {
                        if (e->msgs == removed_before)
                                prev = idx;
                        continue;
                }
                out[n] = (struct dp_fetched){ .buf = r->buf, .seq = r->seq,
                                              .deliveries = (uint16_t)(r->deliveries + 1) };
                n++;
                if (e->delivery == DP_DELIVERY_AT_MOST_ONCE) {
                        dp_msg_remove(s, e, prev, idx, true);
                        continue;
                }
                r->flags |= DP_MSG_F_INFLIGHT;
                r->ack_ns = s->now_ns + s->ack_wait_ns;
                r->deliveries++;
                shm_slab_ref(&s->bufs, r->buf, 1);
                prev = idx;
        }
        s->stats->deliveries += n;
        return (int)n;
}

int dp_shard_ack(struct dp_shard *s, uint64_t handle, uint64_t seq)
{
        struct dp_entity *e;
        int rc = dp_shard_entity(s, handle, &e);
        if (rc != 0)
                return rc;
        /* A log is read through cursors: an ack would delete an entry from
         * under every consumer group. */
        if (e->delivery == DP_DELIVERY_ORDERED)
                return -EOPNOTSUPP;
        uint32_t prev = UINT32_MAX;
        for (uint32_t i = e->q_head; i != 0;) {
                uint32_t idx = i - 1;
                struct dp_msg *r = dp_msgs_get(&s->msgs, idx);
                if (r->seq == seq) {
                        dp_msg_remove(s, e, prev, idx, false);
                        struct dp_journal j = { .kind = DP_JOURNAL_ACK, .seq = seq };
                        (void)dp_journal_tell(s, e, &j);
                        return 0;
                }
                if (r->seq > seq)
                        break;  /* queues are in sequence order */
                prev = idx;
                i = r->next;
        }
        return -ENOENT;
}

int dp_shard_get(struct dp_shard *s, uint64_t handle, const char *key, uint32_t key_len,
                 struct dp_fetched *out)
{
        struct dp_entity *e;
        uint32_t prev;
        int rc = dp_shard_entity(s, handle, &e);
        if (rc != 0)
                return rc;
        int64_t idx = dp_store_find_key(s, e, key, key_len, &prev);
        if (idx < 0)
                return -ENOENT;
        struct dp_msg *r = dp_msgs_get(&s->msgs, (uint32_t)idx);
        if (dp_msg_expired(s, r)) {
                dp_msg_remove(s, e, prev, (uint32_t)idx, false);
                s->stats->drops_expired++;
                return -ENOENT;
        }
        shm_slab_ref(&s->bufs, r->buf, 1);
        *out = (struct dp_fetched){ .buf = r->buf, .seq = r->seq, .deliveries = 1 };
        s->stats->deliveries++;
        return 0;
}

static int dp_read_from(struct dp_shard *s, struct dp_entity *e, uint64_t offset,
                        struct dp_fetched *out, unsigned max)
{
        unsigned n = 0;
        dp_store_expire(s, e);
        for (uint32_t i = e->q_head; i != 0 && n < max;) {
                struct dp_msg *r = dp_msgs_get(&s->msgs, i - 1);
                i = r->next;
                if (r->seq < offset)
                        continue;
                shm_slab_ref(&s->bufs, r->buf, 1);
                out[n++] = (struct dp_fetched){ .buf = r->buf, .seq = r->seq, .deliveries = 1 };
        }
        s->stats->deliveries += n;
        return (int)n;
}

int dp_shard_read(struct dp_shard *s, uint64_t handle, uint64_t offset, struct dp_fetched *out,
                  unsigned max)
{
        struct dp_entity *e;
        int rc = dp_shard_entity(s, handle, &e);
        return rc != 0 ? rc : dp_read_from(s, e, offset, out, max);
}

/* The cursor of group on e, created at the oldest offset when create. */
static struct dp_cursor *dp_cursor_find(struct dp_shard *s, struct dp_entity *e,
                                        const char *group, bool create)
{
        uint64_t gh = XXH3_64bits(group, strlen(group));
        for (uint32_t i = e->ext; i != 0; i = s->cursors[i - 1].next)
                if (s->cursors[i - 1].group_hash == gh)
                        return &s->cursors[i - 1];
        if (!create || s->hdr->cursor_free == 0)
                return NULL;
        uint32_t idx = s->hdr->cursor_free - 1;
        struct dp_cursor *c = &s->cursors[idx];
        s->hdr->cursor_free = c->next;
        c->group_hash = gh;
        c->offset = e->q_head ? dp_msgs_get(&s->msgs, e->q_head - 1)->seq : e->seq;
        c->next = e->ext;
        e->ext = idx + 1;
        return c;
}

void dp_cursors_release(struct dp_shard *s, struct dp_entity *e)
{
        while (e->ext != 0) {
                uint32_t idx = e->ext - 1;
                e->ext = s->cursors[idx].next;
                s->cursors[idx].next = s->hdr->cursor_free;
                s->hdr->cursor_free = idx + 1;
        }
}

int dp_shard_read_group(struct dp_shard *s, uint64_t handle, const char *group,
                        struct dp_fetched *out, unsigned max)
{
        struct dp_entity *e;
        int rc = dp_shard_entity(s, handle, &e);
        if (rc != 0)
                return rc;
        struct dp_cursor *c = dp_cursor_find(s, e, group, true);
        return c == NULL ? -ENOSPC : dp_read_from(s, e, c->offset, out, max);
}

int dp_shard_commit(struct dp_shard *s, uint64_t handle, const char *group, uint64_t offset)
{
        struct dp_entity *e;
        int rc = dp_shard_entity(s, handle, &e);
        if (rc != 0)
                return rc;
        if (offset > e->seq)
                return -ERANGE;
        struct dp_cursor *c = dp_cursor_find(s, e, group, true);
        if (c == NULL)
                return -ENOSPC;
        c->offset = offset;
        struct dp_journal j = { .kind = DP_JOURNAL_COMMIT, .seq = offset, .group = group,
                                .group_len = (uint32_t)strlen(group) };
        (void)dp_journal_tell(s, e, &j);
        return 0;
}

int dp_shard_cursor(struct dp_shard *s, uint64_t handle, const char *group, uint64_t *offset)
{
        struct dp_entity *e;
        int rc = dp_table_get(&s->table, handle, &e);
        if (rc != 0)
                return rc;
        struct dp_cursor *c = dp_cursor_find(s, e, group, false);
        if (c == NULL)
                return -ENOENT;
        *offset = c->offset;
        return 0;
}

/* ---- the disk tier ----------------------------------------------------------- */

int dp_store_journal_all(struct dp_shard *s, struct dp_entity *e)
{
        for (uint32_t i = e->q_head; i != 0;) {
                struct dp_msg *r = dp_msgs_get(&s->msgs, i - 1);
                uint64_t left_ns = r->expire_ns > s->now_ns ? r->expire_ns - s->now_ns : 0;
                struct dp_journal j = { .kind = DP_JOURNAL_MSG, .seq = r->seq, .buf = r->buf,
                                        .ttl_ms = r->expire_ns == 0 ? 0
                                                  : (uint32_t)(left_ns / 1000000 + 1) };
                int rc = dp_journal_tell(s, e, &j);
                if (rc != 0)
                        return rc;
                i = r->next;
        }
        return 0;
}

int dp_shard_replay_msg(struct dp_shard *s, uint64_t handle, const struct dp_msg_in *m,
                        uint64_t seq)
{
        struct dp_entity *e;
        uint32_t buf;
        int rc = dp_table_get(&s->table, handle, &e);
        if (rc != 0)
                return rc;
        if (seq < e->seq)
                return -EALREADY;      /* the journal repeats itself: keep the first */
        rc = dp_buf_make(s, m, &buf);
        if (rc != 0)
                return rc;
        rc = dp_store_put(s, e, buf, seq, m);
        if (rc != 0)
                shm_slab_put(&s->bufs, buf);
        e->seq = seq + 1;
        return rc;
}

int dp_shard_cursors_each(struct dp_shard *s, uint64_t handle, dp_cursor_fn *fn, void *arg)
{
        struct dp_entity *e;
        int rc = dp_table_get(&s->table, handle, &e);
        for (uint32_t i = rc == 0 ? e->ext : 0; i != 0 && rc == 0; i = s->cursors[i - 1].next)
                rc = fn(arg, s->cursors[i - 1].group_hash, s->cursors[i - 1].offset);
        return rc;
}

int dp_shard_cursor_restore(struct dp_shard *s, uint64_t handle, uint64_t group_hash,
                            uint64_t offset)
{
        struct dp_entity *e;
        int rc = dp_table_get(&s->table, handle, &e);
        if (rc != 0)
                return rc;
        for (uint32_t i = e->ext; i != 0; i = s->cursors[i - 1].next)
                if (s->cursors[i - 1].group_hash == group_hash) {
                        s->cursors[i - 1].offset = offset;
                        return 0;
                }
        if (s->hdr->cursor_free == 0)
                return -ENOSPC;
        uint32_t idx = s->hdr->cursor_free - 1;
        struct dp_cursor *c = &s->cursors[idx];
        s->hdr->cursor_free = c->next;
        *c = (struct dp_cursor){ .group_hash = group_hash, .offset = offset, .next = e->ext };
        e->ext = idx + 1;
        return 0;
}
