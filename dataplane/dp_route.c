/* dp_route.c - the routing atom: who is told of a message now.
 *
 * Entities route to the watchers bound to them (direct: the first; fanout:
 * all; group: one member per group, round-robin or least-loaded; headers:
 * those whose filter the message's headers satisfy; match: the subject
 * subscriptions of the trie). Subject publishes route through the trie,
 * one member per queue group; a subscription may feed an entity instead of
 * an endpoint, which is how a mailbox collects a subject while its owner
 * is away. Requests are a one-shot inbox plus a publish.
 */
#include "dataplane/dp_shard_pvt.h"
#include "dataplane/dp_cmd.h"
#include "dataplane/dp_subject.h"

#include <errno.h>
#include <string.h>

static void dp_deliver_to(struct dp_shard *s, uint32_t endpoint, uint32_t sid, uint32_t buf,
                          uint64_t entity, uint64_t seq, uint16_t status)
{
        struct dp_dispatch d = { .endpoint = endpoint, .sid = sid, .buf = buf,
                                 .entity = entity, .seq = seq, .status = status };
        s->stats->deliveries++;
        if (s->deliver != NULL)
                s->deliver(s->deliver_arg, &d);
}

/* --- bindings --- */

int dp_shard_bind(struct dp_shard *s, uint64_t handle, const struct dp_bind *b)
{
        struct dp_entity *e;
        int rc = dp_table_get(&s->table, handle, &e);
        if (rc != 0)
                return rc;
        if (b->endpoint >= DP_ENDPOINT_MAX || b->end > 1 ||
            (b->hdr_name != NULL) != (b->hdr_value != NULL))
                return -EINVAL;
        for (uint32_t i = e->bind_head; i != 0; i = s->bindings[i - 1].next) {
                const struct dp_binding *o = &s->bindings[i - 1];
                if (b->hold && o->hold && o->end == b->end)
                        return -EBUSY;
        }
        if (s->hdr->bind_free == 0)
                return -ENOSPC;
        uint32_t idx = s->hdr->bind_free - 1;
        struct dp_binding *n = &s->bindings[idx];
        s->hdr->bind_free = n->next;
        *n = (struct dp_binding){ .endpoint = b->endpoint, .sid = b->sid, .group = b->group,
                                  .end = b->end, .hold = b->hold,
                                  .entity = dp_handle_slot(handle) };
        if (b->hdr_name != NULL) {
                n->hname = dp_hash32(b->hdr_name, strlen(b->hdr_name)) | 1;
                n->hvalue = dp_hash32(b->hdr_value, strlen(b->hdr_value));
        }
        /* Appended, so "direct" reaches the first party bound. */
        uint32_t *link = &e->bind_head;
        while (*link != 0)
                link = &s->bindings[*link - 1].next;
        n->next = 0;
        *link = idx + 1;
        e->parties++;
        dp_entity_touch(s, e);
        return 0;
}

static void dp_binding_free(struct dp_shard *s, uint32_t idx)
{
        /* No endpoint, so dp_shard_purge_endpoint passes free records by. */
        s->bindings[idx].endpoint = 0;
        s->bindings[idx].next = s->hdr->bind_free;
        s->hdr->bind_free = idx + 1;
}

int dp_shard_unbind(struct dp_shard *s, uint64_t handle, uint32_t endpoint, uint32_t sid)
{
        struct dp_entity *e;
        int rc = dp_table_get(&s->table, handle, &e);
        if (rc != 0)
                return rc;
        for (uint32_t *link = &e->bind_head; *link != 0; link = &s->bindings[*link - 1].next) {
                uint32_t idx = *link - 1;
                if (s->bindings[idx].endpoint != endpoint || s->bindings[idx].sid != sid)
                        continue;
                *link = s->bindings[idx].next;
                dp_binding_free(s, idx);
                e->parties--;
                if (e->parties == 0 && (e->lifecycle & DP_LIFE_AUTO_DESTROY))
                        dp_entity_destroy(s, e);
                return 0;
        }
        return -ENOENT;
}

struct dp_purge {
        struct dp_shard *s;
        uint32_t endpoint;
        uint32_t subs;
};

static void dp_purge_sub(void *arg, uint32_t sub_id, uint32_t group, uint64_t value)
{
        struct dp_purge *p = arg;
        (void)group;
        if ((value & DP_TARGET_ENTITY) || (uint32_t)(value >> 32) != p->endpoint)
                return;
        if (dp_trie_remove(&p->s->trie, sub_id) == 0)
                p->subs++;
}

uint32_t dp_shard_purge_endpoint(struct dp_shard *s, uint32_t endpoint)
{
        struct dp_purge p = { .s = s, .endpoint = endpoint };
        if (endpoint == 0)
                return 0;
        dp_trie_walk_subs(&s->trie, dp_purge_sub, &p);
        for (uint32_t i = 0; i < s->max_bindings; i++) {
                const struct dp_binding *b = &s->bindings[i];
                if (b->endpoint != endpoint || b->entity >= s->table.capacity)
                        continue;
                uint64_t h = dp_table_handle(&s->table, &s->table.slots[b->entity]);
                /* Unbinding may destroy the entity (auto-destroy), which
                 * frees its other bindings: later records are re-read. */
                if (dp_shard_unbind(s, h, endpoint, b->sid) == 0)
                        p.subs++;
        }
        return p.subs;
}

int dp_shard_sub_endpoint(const struct dp_shard *s, uint32_t sub_id, uint32_t *endpoint)
{
        uint64_t value;
        uint32_t group;
        int rc = dp_trie_sub_get(&s->trie, sub_id, &value, &group);
        if (rc != 0)
                return rc;
        *endpoint = (value & DP_TARGET_ENTITY) ? 0 : (uint32_t)(value >> 32);
        return 0;
}

void dp_bindings_release(struct dp_shard *s, struct dp_entity *e)
{
        while (e->bind_head != 0) {
                uint32_t idx = e->bind_head - 1;
                e->bind_head = s->bindings[idx].next;
                dp_binding_free(s, idx);
        }
        e->parties = 0;
}

/* --- the routing atom over an entity's watchers --- */

/* Does a "Name: Value" line of the NATS/1.0 header block match the
 * binding's filter? Names and values compare exactly, after trimming the
 * spaces around the value. */
static bool dp_headers_match(const struct dp_binding *b, const uint8_t *h, uint32_t len)
{
        if (h == NULL || len == 0)
                return false;   /* no header block: no header to match */
        const uint8_t *end = h + len, *line = memchr(h, '\n', len);
        while (line != NULL && line + 1 < end) {
                const uint8_t *start = line + 1;
                line = memchr(start, '\n', (size_t)(end - start));
                const uint8_t *stop = line != NULL ? line : end;
                if (stop > start && stop[-1] == '\r')
                        stop--;
                const uint8_t *colon = memchr(start, ':', (size_t)(stop - start));
                if (colon == NULL)
                        continue;
                const uint8_t *v = colon + 1;
                while (v < stop && *v == ' ')
                        v++;
                const uint8_t *ve = stop;
                while (ve > v && ve[-1] == ' ')
                        ve--;
                if ((dp_hash32(start, (size_t)(colon - start)) | 1) == b->hname &&
                    dp_hash32(v, (size_t)(ve - v)) == b->hvalue)
                        return true;
        }
        return false;
}

/* Group routing: the member of `group` to deliver to: the least loaded
 * (with a load function and the entity's least-loaded flag), else the next
 * in turn of the shard's rotating counter. */
static const struct dp_binding *dp_group_pick(struct dp_shard *s, const struct dp_entity *e,
                                              uint32_t group)
{
        const struct dp_binding *best = NULL;
        uint32_t count = 0, best_load = UINT32_MAX;
        bool least = (e->flags & DP_ENT_F_LEAST_LOADED) && s->load != NULL;
        for (uint32_t i = e->bind_head; i != 0; i = s->bindings[i - 1].next) {
                const struct dp_binding *b = &s->bindings[i - 1];
                if (b->hold || b->group != group)
                        continue;
                count++;
                uint32_t load = least ? s->load(s->load_arg, b->endpoint) : 0;
                /* <=: a member is picked even when every load is UINT32_MAX. */
                if (least && load <= best_load) {
                        best_load = load;
                        best = b;
                }
        }
        if (least || count == 0)
                return best;
        uint32_t pick = s->hdr->rr % count;
        for (uint32_t i = e->bind_head; i != 0; i = s->bindings[i - 1].next) {
                const struct dp_binding *b = &s->bindings[i - 1];
                if (!b->hold && b->group == group && pick-- == 0)
                        return b;
        }
        return NULL;
}

/* Is b the first watcher of its group in e's list (so each group is
 * routed once)? */
static bool dp_group_first(struct dp_shard *s, const struct dp_entity *e,
                           const struct dp_binding *b)
{
        for (uint32_t i = e->bind_head; i != 0; i = s->bindings[i - 1].next) {
                const struct dp_binding *o = &s->bindings[i - 1];
                if (o == b)
                        return true;
                if (!o->hold && o->group == b->group)
                        return false;
        }
        return false;
}

static unsigned dp_route_watchers(struct dp_shard *s, struct dp_entity *e, uint64_t handle,
                                  uint32_t buf, uint64_t seq, const struct dp_msg_in *m)
{
        unsigned n = 0;
        for (uint32_t i = e->bind_head; i != 0; i = s->bindings[i - 1].next) {
                const struct dp_binding *b = &s->bindings[i - 1];
                if (b->hold)
                        continue;
                const struct dp_binding *to = b;
                if (e->routing == DP_ROUTING_GROUP) {
                        if (!dp_group_first(s, e, b))
                                continue;
                        to = dp_group_pick(s, e, b->group);
                        if (to == NULL)
                                continue;
                } else if (e->routing == DP_ROUTING_HEADERS && b->hname != 0 &&
                           !dp_headers_match(b, m->headers, m->headers_len)) {
                        continue;
                }
                dp_deliver_to(s, to->endpoint, to->sid, buf, handle, seq, 0);
                n++;
                if (e->routing == DP_ROUTING_DIRECT)
                        break;
        }
        if (e->routing == DP_ROUTING_GROUP)
                s->hdr->rr++;
        return n;
}

void dp_route_entity(struct dp_shard *s, struct dp_entity *e, uint64_t handle, uint32_t buf,
                     uint64_t seq, const struct dp_msg_in *m, unsigned *delivered)
{
        unsigned n;
        if (e->routing == DP_ROUTING_MATCH) {
                /* Subscribers of the message's subject, and the entity's
                 * own watchers (a latest entity's atomq_watch), which live
                 * on its shard whatever the subject's. */
                int rc = m->subject_len ? dp_publish_buf(s, m, buf, false) : 0;
                n = rc > 0 ? (unsigned)rc : 0;
                if (e->bind_head != 0)
                        n += dp_route_watchers(s, e, handle, buf, seq, m);
        } else {
                n = dp_route_watchers(s, e, handle, buf, seq, m);
        }
        *delivered = n;
        if (n > 0 && (e->lifecycle & DP_LIFE_ONE_SHOT))
                dp_entity_destroy(s, e);
}

void dp_deliver_status(struct dp_shard *s, struct dp_entity *e, uint64_t handle, uint16_t status)
{
        for (uint32_t i = e->bind_head; i != 0; i = s->bindings[i - 1].next) {
                const struct dp_binding *b = &s->bindings[i - 1];
                if (!b->hold)
                        dp_deliver_to(s, b->endpoint, b->sid, SHM_BUF_NONE, handle, 0, status);
        }
}

/* --- subject subscriptions and publish --- */

int dp_shard_subscribe(struct dp_shard *s, const char *pattern, uint32_t len, uint32_t group,
                       uint32_t endpoint, uint32_t sid, uint64_t target_entity,
                       uint32_t *sub_id)
{
        uint64_t value;
        if (target_entity != 0) {
                struct dp_entity *e;
                int rc = dp_table_get(&s->table, target_entity, &e);
                if (rc != 0)
                        return rc;
                value = target_entity | DP_TARGET_ENTITY;
        } else {
                if (endpoint >= DP_ENDPOINT_MAX)
                        return -EINVAL;
                value = dp_target_endpoint(endpoint, sid);
        }
        return dp_trie_insert(&s->trie, pattern, len, group, value, sub_id);
}

int dp_shard_unsubscribe(struct dp_shard *s, uint32_t sub_id)
{
        return dp_trie_remove(&s->trie, sub_id);
}

struct dp_pub {
        struct dp_shard *s;
        const struct dp_msg_in *m;
        uint32_t buf;
        bool feed_entities;
        unsigned delivered;
        unsigned members;        /* grouped matches collected */
        unsigned entities;       /* entity targets collected */
        uint64_t overflow;       /* matches past the collection bounds */
        uint32_t group[DP_PUBLISH_MEMBERS_MAX];
        uint64_t member[DP_PUBLISH_MEMBERS_MAX];
        uint64_t entity[DP_PUBLISH_GROUPS_MAX];
};

static void dp_pub_target(struct dp_pub *p, uint64_t value)
{
        if (value & DP_TARGET_ENTITY) {
                if (!p->feed_entities)
                        return;
                /* Stored later, after the trie walk: an entity's own routing
                 * must not run inside the walk. */
                if (p->entities < DP_PUBLISH_GROUPS_MAX)
                        p->entity[p->entities++] = value & ~DP_TARGET_ENTITY;
                else
                        p->overflow++;
                return;
        }
        dp_deliver_to(p->s, (uint32_t)(value >> 32), (uint32_t)value, p->buf, 0, 0, 0);
        p->delivered++;
}

static void dp_pub_match(void *arg, uint32_t sub_id, uint32_t group, uint64_t value)
{
        struct dp_pub *p = arg;
        (void)sub_id;
        if (group == 0) {
                dp_pub_target(p, value);
        } else if (p->members < DP_PUBLISH_MEMBERS_MAX) {
                p->group[p->members] = group;
                p->member[p->members++] = value;
        } else {
                p->overflow++;
        }
}

/* One member of each queue group, round-robin over the members in match
 * order. */
void dp_shard_set_group_gate(struct dp_shard *s, dp_group_gate_fn *fn, void *arg)
{
        s->group_gate = fn;
        s->group_gate_arg = arg;
}

/* Marks group g's remaining members served without serving any. */
static void dp_pub_group_skip(struct dp_pub *p, unsigned from, uint32_t g)
{
        for (unsigned j = from; j < p->members; j++)
                if (p->group[j] == g)
                        p->group[j] = 0;
}

static void dp_pub_groups(struct dp_pub *p)
{
        for (unsigned i = 0; i < p->members; i++) {
                uint32_t g = p->group[i];
                if (g == 0)
                        continue;  /* already served */
                if (p->s->group_gate != NULL &&
                    !p->s->group_gate(p->s->group_gate_arg, g, p->m->pub_id)) {
                        dp_pub_group_skip(p, i, g); /* another shard serves it */
                        continue;
                }
                unsigned count = 0;
                for (unsigned j = i; j < p->members; j++)
                        count += p->group[j] == g;
                unsigned pick = p->s->hdr->rr % count, k = 0;
                for (unsigned j = i; j < p->members; j++) {
                        if (p->group[j] != g)
                                continue;
                        if (k++ == pick)
                                dp_pub_target(p, p->member[j]);
                        p->group[j] = 0;
                }
        }
        p->s->hdr->rr++;
}

/* ---- the match cache ---- */

#define DP_MATCH_CACHE_SUBJECT 64u
#define DP_MATCH_CACHE_HITS 8u
/* Keeps a head's slot apart from the same bytes as a whole subject. */
#define DP_MATCH_HEAD_SALT 0x9e3779b97f4a7c15ull

struct dp_match_hit {
        uint32_t sub_id;
        uint32_t group;
        uint64_t value;
};

struct dp_match_slot {
        uint64_t gen;    /* the trie's generation when filled; 0: empty */
        uint64_t hash;
        uint16_t len;
        uint8_t n;
        bool head;       /* subject is a head: any one token may follow */
        char subject[DP_MATCH_CACHE_SUBJECT];
        struct dp_match_hit hit[DP_MATCH_CACHE_HITS];
};

struct dp_match_cache {
        struct dp_match_slot slot[DP_MATCH_CACHE_SLOTS];
};

size_t dp_match_cache_bytes(void)
{
        return sizeof(struct dp_match_cache);
}

void dp_shard_set_match_cache(struct dp_shard *s, struct dp_match_cache *c)
{
        if (c != NULL)
                memset(c, 0, sizeof(*c));
        s->match_cache = c;
}

/* A walk that also records what it found, for the cache. */
struct dp_match_fill {
        struct dp_pub *p;
        struct dp_match_hit hit[DP_MATCH_CACHE_HITS];
        unsigned n;
};

static void dp_pub_match(void *arg, uint32_t sub_id, uint32_t group, uint64_t value);

static void dp_match_fill_one(void *arg, uint32_t sub_id, uint32_t group, uint64_t value)
{
        struct dp_match_fill *f = arg;
        if (f->n < DP_MATCH_CACHE_HITS)
                f->hit[f->n] = (struct dp_match_hit){ sub_id, group, value };
        f->n++;
        dp_pub_match(f->p, sub_id, group, value);
}

/* The slot for a subject, or for a head (a subject without its last
 * token, standing for all of them), when it holds valid matches. */
static struct dp_match_slot *dp_match_slot_of(struct dp_shard *s, const char *subject,
                                              uint32_t len, bool head, uint64_t *hash)
{
        uint64_t h = dp_hash64(subject, len) ^ (head ? DP_MATCH_HEAD_SALT : 0);
        struct dp_match_slot *slot = &s->match_cache->slot[h % DP_MATCH_CACHE_SLOTS];
        *hash = h;
        if (slot->gen == s->trie.gen && slot->hash == h && slot->len == len &&
            slot->head == head && memcmp(slot->subject, subject, len) == 0)
                return slot;
        return NULL;
}

static int dp_match_replay(struct dp_pub *p, const struct dp_match_slot *slot)
{
        for (unsigned i = 0; i < slot->n; i++)
                dp_pub_match(p, slot->hit[i].sub_id, slot->hit[i].group, slot->hit[i].value);
        return slot->n;
}

/* Matches through the cache: a hit replays the recorded matches; a miss
 * walks the trie and records them when they fit. A subject whose last
 * token only wildcards could take (an inbox reply subject, unique each
 * time) is recorded under its head, so the next one with another last
 * token hits too. Returns the matches or the walk's error. */
static int dp_match_cached(struct dp_shard *s, struct dp_pub *p)
{
        const struct dp_msg_in *m = p->m;
        uint64_t h, head_h = 0;
        struct dp_match_slot *hit = dp_match_slot_of(s, m->subject, m->subject_len, false, &h);
        if (hit != NULL)
                return dp_match_replay(p, hit);
        const char *dot = memrchr(m->subject, '.', m->subject_len);
        uint32_t head_len = dot != NULL ? (uint32_t)(dot - m->subject) : 0;
        if (head_len != 0) {
                hit = dp_match_slot_of(s, m->subject, head_len, true, &head_h);
                if (hit != NULL)
                        return dp_match_replay(p, hit);
        }
        struct dp_match_fill f = { .p = p };
        uint64_t gen = s->trie.gen;
        bool tail_free = false;
        int rc = dp_trie_match_tail(&s->trie, m->subject, m->subject_len, dp_match_fill_one, &f,
                                    &tail_free);
        if (rc < 0 || f.n > DP_MATCH_CACHE_HITS)
                return rc;
        /* The generation the walk saw: should a delivery during it change
         * the trie, the entry is stale from the start. */
        bool head = tail_free && head_len != 0;
        if (head)
                h = head_h;
        struct dp_match_slot *slot = &s->match_cache->slot[h % DP_MATCH_CACHE_SLOTS];
        slot->hash = h;
        slot->len = (uint16_t)(head ? head_len : m->subject_len);
        slot->head = head;
        slot->n = (uint8_t)f.n;
        memcpy(slot->hit, f.hit, f.n * sizeof(f.hit[0]));
        memcpy(slot->subject, m->subject, slot->len);
        slot->gen = gen;
        return rc;
}

int dp_publish_buf(struct dp_shard *s, const struct dp_msg_in *m, uint32_t buf,
                   bool feed_entities)
{
        /* About 13 KiB on the stack; publishes nest at most twice (a publish
         * feeds an entity whose match routing publishes again, without
         * feeding entities), so the depth is bounded. */
        struct dp_pub pub;
        struct dp_pub *p = &pub;
        p->s = s;
        p->m = m;
        p->buf = buf;
        p->feed_entities = feed_entities;
        p->delivered = p->members = p->entities = 0;
        p->overflow = 0;
        /* The cache holds matches made while no subscription changed; a
         * delivery below may subscribe or unsubscribe (an entity destroyed,
         * a one-shot inbox), which only bumps the generation for next time. */
        int rc = s->match_cache != NULL && m->subject_len <= DP_MATCH_CACHE_SUBJECT
                         ? dp_match_cached(s, p)
                         : dp_trie_match(&s->trie, m->subject, m->subject_len, dp_pub_match, p);
        if (rc < 0)
                return rc;
        dp_pub_groups(p);
        s->stats->drops_full += p->overflow;
        unsigned delivered = p->delivered;
        for (unsigned i = 0; i < p->entities; i++)
                delivered += dp_send_buf(s, p->entity[i], m, buf, NULL) == 0;
        return (int)delivered;
}

void dp_shard_publish_buf_release(struct dp_shard *s)
{
        if (s->publish_buf != SHM_BUF_NONE)
                shm_slab_put(&s->bufs, s->publish_buf);
        s->publish_buf = SHM_BUF_NONE;
}

/* The buffer of a publish: the shard's reusable one when nobody else holds
 * it (most publishes are copied out to their parties at once, so a pool
 * allocation and free per message would be wasted), else a new one. */
static int dp_publish_buf_get(struct dp_shard *s, const struct dp_msg_in *m, uint32_t *buf)
{
        uint64_t len = dp_frame_bytes(m);
        if (len != 0 && s->publish_buf != SHM_BUF_NONE &&
            shm_slab_reuse(&s->bufs, s->publish_buf, (uint32_t)len) == 0) {
                dp_frame_write(shm_slab_data(&s->bufs, s->publish_buf, NULL), ATOMQ_OP_PUB, m);
                *buf = s->publish_buf;
                return 0;
        }
        return dp_buf_make(s, m, buf);
}

/* After the publish: a small buffer nobody else kept becomes (or stays)
 * the reusable one; anything else gives our reference back. */
static void dp_publish_buf_done(struct dp_shard *s, uint32_t buf)
{
        if (buf == s->publish_buf && shm_slab_reuse(&s->bufs, buf, 0) == 0)
                return;
        if (buf == s->publish_buf)
                s->publish_buf = SHM_BUF_NONE; /* kept by a party: ours goes */
        else if (s->publish_buf == SHM_BUF_NONE && buf >> SHM_BUF_CLASS_SHIFT == 0 &&
                 shm_slab_reuse(&s->bufs, buf, 0) == 0) {
                s->publish_buf = buf;
                return;
        }
        shm_slab_put(&s->bufs, buf);
}

int dp_shard_publish(struct dp_shard *s, const struct dp_msg_in *m)
{
        if (dp_subject_check(m->subject, m->subject_len, false) != 0)
                return -EINVAL;
        return dp_shard_publish_valid(s, m);
}

int dp_shard_publish_valid(struct dp_shard *s, const struct dp_msg_in *m)
{
        uint32_t buf;
        DP_ASSERT(dp_subject_check(m->subject, m->subject_len, false) == 0);
        int rc = dp_publish_buf_get(s, m, &buf);
        if (rc != 0)
                return rc;
        s->stats->msgs_in++;
        s->stats->bytes_in += m->payload_len;
        rc = dp_publish_buf(s, m, buf, true);
        dp_publish_buf_done(s, buf);
        if (rc == 0)
                s->stats->drops_no_party++;
        return rc;
}

int dp_shard_request(struct dp_shard *s, const struct dp_msg_in *m, uint32_t endpoint,
                     uint32_t sid, uint32_t timeout_ms, uint64_t *inbox)
{
        struct dp_create_opts o = { .mode = DP_MODE_REQUEST, .overflow = -1,
                                    .ttl_ms = timeout_ms };
        uint64_t h;
        if (timeout_ms == 0 || endpoint >= DP_ENDPOINT_MAX)
                return -EINVAL;
        int rc = dp_shard_create(s, &o, NULL, 0, &h);
        if (rc != 0)
                return rc;
        struct dp_bind owner = { .endpoint = endpoint, .sid = sid };
        rc = dp_shard_bind(s, h, &owner);
        if (rc != 0) {
                dp_shard_destroy(s, h);
                return rc;
        }
        /* Also with no responders: the 503 the owner is told carries this
         * handle, and the caller's answer should name the same inbox. */
        *inbox = h;
        struct dp_msg_in req = *m;
        req.reply = h;
        rc = dp_shard_publish(s, &req);
        if (rc <= 0) {
                struct dp_entity *e;
                /* A responder may have answered (and so destroyed the inbox)
                 * within the publish; only a live inbox is told. */
                if (rc == 0 && dp_table_get(&s->table, h, &e) == 0) {
                        dp_deliver_status(s, e, h, DP_STATUS_NO_RESPONDERS);
                        s->stats->no_responders++;
                }
                dp_shard_destroy(s, h);
                return rc;
        }
        return rc;
}
