/* dp_trie.c - the subject trie in caller memory (see dp_trie.h for the layout,
 * the API and the complexity figures).
 *
 * Invariants dp_trie_verify checks, and everything else relies on:
 *   - a used non-root node is exactly one child of its parent: the parent's
 *     star (kind star), its gt (kind gt) or one slot of the table (literal);
 *   - lits counts a node's literal children; a non-root node that is idle
 *     (no subscription, no child: dp_trie_node_idle) does not exist, since
 *     remove frees it at once, then its parent if that became idle...;
 *   - the table always has an empty slot (load <= 0.7), so a probe ends;
 *   - every index stored anywhere is below its pool's size.
 */
#include "dataplane/dp_trie.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* XXH3 inlined: a token is usually 1-16 bytes, where the call would cost as
 * much as the hash. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "dataplane/dp_subject.h"
#include "shm/shm_base.h"

enum dp_trie_kind {
        DP_TRIE_FREE = 0,
        DP_TRIE_ROOT,
        DP_TRIE_LITERAL,
        DP_TRIE_STAR,
        DP_TRIE_GT,
};

/* A prefix node. parent doubles as the free-list link while kind is free. */
struct dp_trie_node {
        uint32_t parent;
        uint32_t subs;          /* first subscription on this prefix */
        uint32_t star;          /* the '*' child */
        uint32_t gt;            /* the '>' child */
        uint32_t lits;          /* literal children: 0 spares the walk a probe */
        uint8_t token_len;
        uint8_t kind;           /* enum dp_trie_kind */
        uint16_t reserved;
        union {
                uint8_t bytes[DP_TRIE_TOKEN_INLINE];
                uint32_t chunk;         /* first chunk of a longer token */
        } token;
};
_Static_assert(sizeof(struct dp_trie_node) == 32, "two nodes a cache line");
_Static_assert(offsetof(struct dp_trie_node, lits) == 16, "node layout");
_Static_assert(offsetof(struct dp_trie_node, token_len) == 20, "node layout");
_Static_assert(offsetof(struct dp_trie_node, token) == 24, "node layout");
_Static_assert(DP_SUBJECT_MAX <= UINT8_MAX, "token_len is a byte");

/* A subscription. node is DP_TRIE_NIL while it is free; gen is the
 * generation its id carries, bumped on remove so old ids are refused. */
struct dp_trie_sub {
        uint64_t value;
        uint32_t node;
        uint32_t group;
        uint32_t next;          /* on the node's list, or the free list */
        uint32_t prev;
        uint32_t gen;
        uint32_t reserved;
};
_Static_assert(sizeof(struct dp_trie_sub) == 32, "two subs a cache line");
_Static_assert(offsetof(struct dp_trie_sub, node) == 8, "sub layout");
_Static_assert(offsetof(struct dp_trie_sub, gen) == 24, "sub layout");

/* A literal child: its node (DP_TRIE_NIL when empty) and the 32-bit hash of
 * (parent, token). The hash turns away almost every wrong slot without a
 * node load, and gives the slot's home for backward-shift deletion. */
struct dp_trie_slot {
        uint32_t node;
        uint32_t hash;
};
_Static_assert(sizeof(struct dp_trie_slot) == 8, "eight slots a cache line");

/* The rest of a long token, chained. */
struct dp_trie_chunk {
        uint32_t next;
        uint8_t bytes[DP_TRIE_CHUNK_DATA];
};
_Static_assert(sizeof(struct dp_trie_chunk) == 32, "chunk layout");

/* The shared header. */
struct dp_trie_hdr {
        uint64_t magic;
        uint32_t version;
        uint32_t max_nodes;     /* geometry, as configured */
        uint32_t max_subs;      /* slot count and sub id bits derive from */
        uint32_t chunk_count;   /* these (dp_trie_geom_make) */
        uint64_t hash_seed;
        uint32_t node_free;     /* LIFO: reuse what is warm in cache */
        uint32_t chunk_free;
        uint32_t sub_free_head; /* FIFO: an index is reused as late as */
        uint32_t sub_free_tail; /* possible, which keeps stale ids stale */
        uint32_t nodes_used;    /* root excluded */
        uint32_t chunks_used;
        uint32_t subs_used;
        uint32_t reserved;
};
_Static_assert(sizeof(struct dp_trie_hdr) == SHM_CACHE_LINE, "trie header");
_Static_assert(offsetof(struct dp_trie_hdr, hash_seed) == 24, "trie header");
_Static_assert(offsetof(struct dp_trie_hdr, node_free) == 32, "trie header");
_Static_assert(offsetof(struct dp_trie_hdr, nodes_used) == 48, "trie header");

/* Where each region starts, derived from the geometry alone. */
struct dp_trie_geom {
        uint32_t node_count;
        uint32_t sub_count;
        uint32_t slot_count;
        uint32_t chunk_count;
        uint32_t sub_id_bits;
        size_t nodes_off;
        size_t subs_off;
        size_t slots_off;
        size_t chunks_off;
        size_t total;
};

static int dp_trie_geom_make(uint32_t max_nodes, uint32_t max_subs, uint64_t chunk_count,
                             struct dp_trie_geom *g)
{
        if (max_nodes == 0 || max_nodes > DP_TRIE_NODES_MAX ||
            max_subs == 0 || max_subs > DP_TRIE_SUBS_MAX || chunk_count > DP_TRIE_CHUNKS_MAX)
                return -EINVAL;
        g->node_count = max_nodes + 1;
        g->sub_count = max_subs;
        /* Load <= 0.7 with every node in use: linear probing stays short
         * (about 2 slots on a hit, 6 on a miss) and a slot is always empty.
         * Not a power of two: homes come from a multiply (dp_trie_home). */
        g->slot_count = (uint32_t)(((uint64_t)g->node_count * 10 + 6) / 7);
        g->chunk_count = (uint32_t)chunk_count;
        g->sub_id_bits = 1;
        while ((1u << g->sub_id_bits) < max_subs)
                g->sub_id_bits++;

        size_t off = sizeof(struct dp_trie_hdr);
        g->nodes_off = off;
        off = shm_align_up(off + (size_t)g->node_count * sizeof(struct dp_trie_node),
                           SHM_CACHE_LINE);
        g->subs_off = off;
        off = shm_align_up(off + (size_t)g->sub_count * sizeof(struct dp_trie_sub),
                           SHM_CACHE_LINE);
        g->slots_off = off;
        off = shm_align_up(off + (size_t)g->slot_count * sizeof(struct dp_trie_slot),
                           SHM_CACHE_LINE);
        g->chunks_off = off;
        g->total = shm_align_up(off + (size_t)g->chunk_count * sizeof(struct dp_trie_chunk),
                                SHM_CACHE_LINE);
        return 0;
}

static uint64_t dp_trie_chunks_for(uint64_t token_bytes)
{
        if (token_bytes > (uint64_t)DP_TRIE_CHUNKS_MAX * DP_TRIE_CHUNK_DATA)
                return (uint64_t)DP_TRIE_CHUNKS_MAX + 1;        /* refused by geom_make */
        return (token_bytes + DP_TRIE_CHUNK_DATA - 1) / DP_TRIE_CHUNK_DATA;
}

size_t dp_trie_bytes(const struct dp_trie_config *cfg)
{
        struct dp_trie_geom g;
        if (cfg == NULL ||
            dp_trie_geom_make(cfg->max_nodes, cfg->max_subs, dp_trie_chunks_for(cfg->token_bytes),
                              &g) < 0)
                return 0;
        return g.total;
}

static void dp_trie_view_set(struct dp_trie *t, struct dp_trie_hdr *h,
                             const struct dp_trie_geom *g)
{
        uint8_t *base = (uint8_t *)h;

        t->hdr = h;
        t->nodes = (struct dp_trie_node *)(base + g->nodes_off);
        t->subs = (struct dp_trie_sub *)(base + g->subs_off);
        t->slots = (struct dp_trie_slot *)(base + g->slots_off);
        t->chunks = (struct dp_trie_chunk *)(base + g->chunks_off);
        t->hash_seed = h->hash_seed;
        t->node_count = g->node_count;
        t->sub_count = g->sub_count;
        t->slot_count = g->slot_count;
        t->chunk_count = g->chunk_count;
        t->sub_id_bits = g->sub_id_bits;
        /* A fresh view: caches of match results (dp_route.c) start empty,
         * their slots hold generation 0. */
        t->gen = 1;
}

/* A seed remote clients cannot guess, so they cannot pick subjects that
 * share one probe chain. The clock is a fallback for a starved entropy pool
 * at boot: weak, but the table still works, only less defended. */
static uint64_t dp_trie_seed_pick(uint64_t configured, const void *mem)
{
        uint64_t seed = configured;
        if (seed == 0 && getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                seed = XXH3_64bits_withSeed(&ts, sizeof(ts), (uint64_t)(uintptr_t)mem);
        }
        return seed != 0 ? seed : 0x9e3779b97f4a7c15ull;
}

/* Chains every free record in index order; the root is node 0. */
static void dp_trie_pools_format(struct dp_trie *t)
{
        struct dp_trie_node *root = &t->nodes[0];
        memset(root, 0, sizeof(*root));
        root->parent = root->subs = root->star = root->gt = DP_TRIE_NIL;
        root->kind = DP_TRIE_ROOT;
        for (uint32_t i = 1; i < t->node_count; i++) {
                memset(&t->nodes[i], 0, sizeof(t->nodes[i]));
                t->nodes[i].parent = i + 1 < t->node_count ? i + 1 : DP_TRIE_NIL;
        }
        for (uint32_t i = 0; i < t->sub_count; i++) {
                memset(&t->subs[i], 0, sizeof(t->subs[i]));
                t->subs[i].node = DP_TRIE_NIL;
                t->subs[i].prev = DP_TRIE_NIL;
                t->subs[i].gen = 1;
                t->subs[i].next = i + 1 < t->sub_count ? i + 1 : DP_TRIE_NIL;
        }
        for (uint32_t i = 0; i < t->slot_count; i++)
                t->slots[i] = (struct dp_trie_slot){ .node = DP_TRIE_NIL, .hash = 0 };
        for (uint32_t i = 0; i < t->chunk_count; i++) {
                memset(&t->chunks[i], 0, sizeof(t->chunks[i]));
                t->chunks[i].next = i + 1 < t->chunk_count ? i + 1 : DP_TRIE_NIL;
        }
}

int dp_trie_init(struct dp_trie *t, void *mem, size_t len, const struct dp_trie_config *cfg)
{
        struct dp_trie_geom g;

        if (cfg == NULL || mem == NULL || (uintptr_t)mem % SHM_CACHE_LINE != 0)
                return -EINVAL;
        if (dp_trie_geom_make(cfg->max_nodes, cfg->max_subs,
                              dp_trie_chunks_for(cfg->token_bytes), &g) < 0)
                return -EINVAL;
        if (len < g.total)
                return -ENOSPC;

        struct dp_trie_hdr *h = mem;
        memset(h, 0, sizeof(*h));
        h->version = DP_TRIE_VERSION;
        h->max_nodes = cfg->max_nodes;
        h->max_subs = cfg->max_subs;
        h->chunk_count = g.chunk_count;
        h->hash_seed = dp_trie_seed_pick(cfg->hash_seed, mem);
        h->node_free = g.node_count > 1 ? 1 : DP_TRIE_NIL;
        h->chunk_free = g.chunk_count > 0 ? 0 : DP_TRIE_NIL;
        h->sub_free_head = 0;
        h->sub_free_tail = g.sub_count - 1;
        dp_trie_view_set(t, h, &g);
        dp_trie_pools_format(t);
        /* The magic goes last: a trie half formatted when we crashed is
         * refused by attach. */
        h->magic = DP_TRIE_MAGIC;
        return 0;
}

int dp_trie_attach(struct dp_trie *t, void *mem, size_t len)
{
        struct dp_trie_hdr *h = mem;
        struct dp_trie_geom g;

        if (mem == NULL || (uintptr_t)mem % SHM_CACHE_LINE != 0 || len < sizeof(*h))
                return -EINVAL;
        if (h->magic != DP_TRIE_MAGIC || h->version != DP_TRIE_VERSION)
                return -EPROTO;
        if (dp_trie_geom_make(h->max_nodes, h->max_subs, h->chunk_count, &g) < 0)
                return -EINVAL;
        if (len < g.total)
                return -ENOSPC;
        dp_trie_view_set(t, h, &g);
        /* Everything below trusts the indexes it reads; a trie written by a
         * process that crashed mid-update earns that trust here. */
        return dp_trie_verify(t) < 0 ? -EPROTO : 0;
}

uint32_t dp_trie_count(const struct dp_trie *t)
{
        return t->hdr->subs_used;
}

void dp_trie_usage(const struct dp_trie *t, struct dp_trie_usage *u)
{
        u->nodes = t->hdr->nodes_used;
        u->subs = t->hdr->subs_used;
        u->chunks = t->hdr->chunks_used;
}

/* ---- hashing and the child table ---------------------------------------- */

/* A token being looked up: its bytes, its hash, and for an inline-sized
 * token its bytes as one zero-padded word, so comparing it with a node is
 * one 64-bit compare instead of a memcmp call. */
struct dp_trie_key {
        const char *tok;
        uint32_t len;
        uint64_t hash;
        uint64_t word;
};

/* Keeps the first n (1..8) bytes, in memory order, of a loaded word. */
static inline uint64_t dp_trie_word_head(uint64_t w, uint32_t n)
{
        uint32_t drop = 8 * (DP_TRIE_TOKEN_INLINE - n);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        return drop == 0 ? w : w & (UINT64_MAX >> drop);
#else
        return drop == 0 ? w : w & (UINT64_MAX << drop);
#endif
}

/* Moves the last n (1..8) bytes of a loaded word to its head. */
static inline uint64_t dp_trie_word_tail(uint64_t w, uint32_t n)
{
        uint32_t drop = 8 * (DP_TRIE_TOKEN_INLINE - n);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        return w >> drop;
#else
        return w << drop;
#endif
}

/* The key of s[off..off+len), s being s_len bytes long. The word is built
 * from one 8-byte load that stays inside s: forward when 8 bytes follow the
 * token's start, else backward from its end (the last token of a subject),
 * else byte by byte (a subject shorter than 8 bytes). */
static inline void dp_trie_key_make(const struct dp_trie *t, const char *s, size_t s_len,
                                    size_t off, uint32_t len, struct dp_trie_key *k)
{
        uint64_t w = 0;

        k->tok = s + off;
        k->len = len;
        k->hash = XXH3_64bits_withSeed(s + off, len, t->hash_seed);
        if (len <= DP_TRIE_TOKEN_INLINE) {
                if (off + 8 <= s_len) {
                        memcpy(&w, s + off, 8);
                        w = dp_trie_word_head(w, len);
                } else if (off + len >= 8) {
                        memcpy(&w, s + off + len - 8, 8);
                        w = dp_trie_word_tail(w, len);
                } else {
                        memcpy(&w, s + off, len);
                }
        }
        k->word = w;
}

/* Folds the parent into a token hash. The token is hashed once per call
 * whatever the number of parents it is looked up under (a '*' branch looks
 * the next token up under two); this mix is a multiply and two shifts. */
static inline uint32_t dp_trie_key_hash(uint64_t token_hash, uint32_t parent)
{
        uint64_t k = token_hash ^ ((uint64_t)parent * 0x9e3779b97f4a7c15ull);
        k ^= k >> 32;
        k *= 0xd6e8feb86659fd93ull;
        return (uint32_t)(k ^ (k >> 32));
}

/* The slot a hash would like: its high bits scaled to slot_count (Lemire's
 * multiply-shift), which spares a power-of-two table twice the size. */
static inline uint32_t dp_trie_home(const struct dp_trie *t, uint32_t hash)
{
        return (uint32_t)(((uint64_t)hash * t->slot_count) >> 32);
}

/* The token of node n in buf (at least DP_SUBJECT_MAX bytes); its length. */
static uint32_t dp_trie_token_copy(const struct dp_trie *t, const struct dp_trie_node *n,
                                   char *buf)
{
        uint32_t len = n->token_len;
        if (len <= DP_TRIE_TOKEN_INLINE) {
                memcpy(buf, n->token.bytes, len);
                return len;
        }
        uint32_t c = n->token.chunk;
        for (uint32_t done = 0; done < len; done += DP_TRIE_CHUNK_DATA) {
                DP_ASSERT(c < t->chunk_count);
                uint32_t part = len - done < DP_TRIE_CHUNK_DATA ? len - done : DP_TRIE_CHUNK_DATA;
                memcpy(buf + done, t->chunks[c].bytes, part);
                c = t->chunks[c].next;
        }
        return len;
}

static bool dp_trie_token_eq(const struct dp_trie *t, const struct dp_trie_node *n,
                             const struct dp_trie_key *k)
{
        if (n->token_len != k->len)
                return false;
        if (k->len <= DP_TRIE_TOKEN_INLINE) {
                uint64_t w;
                memcpy(&w, n->token.bytes, sizeof(w));  /* zero-padded by token_set */
                return w == k->word;
        }
        const char *tok = k->tok;
        uint32_t len = k->len;
        uint32_t c = n->token.chunk;
        for (uint32_t done = 0; done < len; done += DP_TRIE_CHUNK_DATA) {
                DP_ASSERT(c < t->chunk_count);
                uint32_t part = len - done < DP_TRIE_CHUNK_DATA ? len - done : DP_TRIE_CHUNK_DATA;
                if (memcmp(t->chunks[c].bytes, tok + done, part) != 0)
                        return false;
                c = t->chunks[c].next;
        }
        return true;
}

/* The literal child of parent named by k, or DP_TRIE_NIL. When next is not
 * NULL, the slot where the candidate child's own child named next lives is
 * prefetched before the candidate is read: the two cache misses of a level
 * (the child node, the next slot) then overlap instead of queueing. */
static uint32_t dp_trie_child_find(const struct dp_trie *t, uint32_t parent,
                                   const struct dp_trie_key *k, const struct dp_trie_key *next)
{
        uint32_t hash = dp_trie_key_hash(k->hash, parent);
        uint32_t i = dp_trie_home(t, hash);

        /* Ends at an empty slot, which exists (load <= 0.7); the bound
         * only keeps a corrupt table from spinning. */
        for (uint32_t probes = 0; probes < t->slot_count; probes++) {
                const struct dp_trie_slot *s = &t->slots[i];
                if (s->node == DP_TRIE_NIL)
                        return DP_TRIE_NIL;
                if (s->hash == hash) {
                        DP_ASSERT(s->node < t->node_count);
                        if (next != NULL) {
                                uint32_t h2 = dp_trie_key_hash(next->hash, s->node);
                                __builtin_prefetch(&t->slots[dp_trie_home(t, h2)]);
                        }
                        const struct dp_trie_node *n = &t->nodes[s->node];
                        if (n->parent == parent && dp_trie_token_eq(t, n, k))
                                return s->node;
                }
                if (++i == t->slot_count)
                        i = 0;
        }
        return DP_TRIE_NIL;
}

/* The key of node n's own token, copied to buf (DP_SUBJECT_MAX bytes). */
static void dp_trie_node_key(const struct dp_trie *t, const struct dp_trie_node *n, char *buf,
                             struct dp_trie_key *k)
{
        uint32_t len = dp_trie_token_copy(t, n, buf);
        dp_trie_key_make(t, buf, len, 0, len, k);
}

static void dp_trie_slot_add(struct dp_trie *t, uint32_t node, uint32_t hash)
{
        uint32_t i = dp_trie_home(t, hash);
        for (uint32_t probes = 0; t->slots[i].node != DP_TRIE_NIL; probes++) {
                DP_VERIFY(probes < t->slot_count);
                if (++i == t->slot_count)
                        i = 0;
        }
        t->slots[i] = (struct dp_trie_slot){ .node = node, .hash = hash };
}

/* Distance from a slot's home to where it sits, going forward and around. */
static inline uint32_t dp_trie_slot_dist(const struct dp_trie *t, uint32_t from, uint32_t to)
{
        return to >= from ? to - from : to + t->slot_count - from;
}

/* Removes node from the table by backward shift: later members of the probe
 * run move up into the hole when that does not put them before their home.
 * No tombstones, so churn never lengthens probes. */
static void dp_trie_slot_del(struct dp_trie *t, uint32_t node, uint32_t hash)
{
        uint32_t hole = dp_trie_home(t, hash);
        for (uint32_t probes = 0; t->slots[hole].node != node; probes++) {
                DP_VERIFY(probes < t->slot_count && t->slots[hole].node != DP_TRIE_NIL);
                if (++hole == t->slot_count)
                        hole = 0;
        }
        uint32_t j = hole;
        for (uint32_t probes = 0;; probes++) {
                DP_VERIFY(probes < t->slot_count);
                if (++j == t->slot_count)
                        j = 0;
                const struct dp_trie_slot s = t->slots[j];
                if (s.node == DP_TRIE_NIL)
                        break;
                uint32_t home = dp_trie_home(t, s.hash);
                if (dp_trie_slot_dist(t, home, j) >= dp_trie_slot_dist(t, hole, j)) {
                        t->slots[hole] = s;
                        hole = j;
                }
        }
        t->slots[hole] = (struct dp_trie_slot){ .node = DP_TRIE_NIL, .hash = 0 };
}

/* ---- node and token storage --------------------------------------------- */

static uint32_t dp_trie_chunks_needed(uint32_t len)
{
        if (len <= DP_TRIE_TOKEN_INLINE)
                return 0;
        return (len + DP_TRIE_CHUNK_DATA - 1) / DP_TRIE_CHUNK_DATA;
}

/* Stores tok in n. The caller checked that enough chunks are free. */
static void dp_trie_token_set(struct dp_trie *t, struct dp_trie_node *n, const char *tok,
                              uint32_t len)
{
        n->token_len = (uint8_t)len;
        memset(&n->token, 0, sizeof(n->token));
        if (len <= DP_TRIE_TOKEN_INLINE) {
                memcpy(n->token.bytes, tok, len);
                return;
        }
        uint32_t *link = &n->token.chunk;
        for (uint32_t done = 0; done < len; done += DP_TRIE_CHUNK_DATA) {
                uint32_t c = t->hdr->chunk_free;
                DP_VERIFY(c < t->chunk_count);
                t->hdr->chunk_free = t->chunks[c].next;
                t->hdr->chunks_used++;
                uint32_t part = len - done < DP_TRIE_CHUNK_DATA ? len - done : DP_TRIE_CHUNK_DATA;
                memcpy(t->chunks[c].bytes, tok + done, part);
                *link = c;
                link = &t->chunks[c].next;
        }
        *link = DP_TRIE_NIL;
}

static void dp_trie_token_free(struct dp_trie *t, struct dp_trie_node *n)
{
        if (n->token_len <= DP_TRIE_TOKEN_INLINE)
                return;
        uint32_t c = n->token.chunk;
        for (uint32_t k = dp_trie_chunks_needed(n->token_len); k > 0; k--) {
                DP_VERIFY(c < t->chunk_count);
                uint32_t next = t->chunks[c].next;
                t->chunks[c].next = t->hdr->chunk_free;
                t->hdr->chunk_free = c;
                t->hdr->chunks_used--;
                c = next;
        }
}

/* Makes the child of parent named tok (of the given kind; hash is its table
 * hash when literal) and links it in. The caller checked that a node and
 * the chunks are free. */
static uint32_t dp_trie_node_add(struct dp_trie *t, uint32_t parent, const char *tok,
                                 uint32_t len, enum dp_trie_kind kind, uint32_t hash)
{
        uint32_t idx = t->hdr->node_free;
        DP_VERIFY(idx < t->node_count);
        struct dp_trie_node *n = &t->nodes[idx];
        DP_ASSERT(n->kind == DP_TRIE_FREE);
        t->hdr->node_free = n->parent;
        t->hdr->nodes_used++;

        n->parent = parent;
        n->subs = n->star = n->gt = DP_TRIE_NIL;
        n->lits = 0;
        n->kind = (uint8_t)kind;
        n->reserved = 0;
        dp_trie_token_set(t, n, tok, len);

        struct dp_trie_node *p = &t->nodes[parent];
        if (kind == DP_TRIE_STAR) {
                p->star = idx;
        } else if (kind == DP_TRIE_GT) {
                p->gt = idx;
        } else {
                dp_trie_slot_add(t, idx, hash);
                p->lits++;
        }
        return idx;
}

static bool dp_trie_node_idle(const struct dp_trie_node *n)
{
        return n->subs == DP_TRIE_NIL && n->star == DP_TRIE_NIL && n->gt == DP_TRIE_NIL &&
               n->lits == 0;
}

/* Unlinks and frees node idx, which has no subscriptions and no children. */
static void dp_trie_node_del(struct dp_trie *t, uint32_t idx)
{
        struct dp_trie_node *n = &t->nodes[idx];
        DP_ASSERT(dp_trie_node_idle(n));
        DP_ASSERT(n->kind != DP_TRIE_FREE && n->kind != DP_TRIE_ROOT);
        struct dp_trie_node *p = &t->nodes[n->parent];

        if (n->kind == DP_TRIE_STAR) {
                DP_ASSERT(p->star == idx);
                p->star = DP_TRIE_NIL;
        } else if (n->kind == DP_TRIE_GT) {
                DP_ASSERT(p->gt == idx);
                p->gt = DP_TRIE_NIL;
        } else {
                char buf[DP_SUBJECT_MAX];
                struct dp_trie_key k;
                dp_trie_node_key(t, n, buf, &k);
                dp_trie_slot_del(t, idx, dp_trie_key_hash(k.hash, n->parent));
                DP_ASSERT(p->lits > 0);
                p->lits--;
        }
        dp_trie_token_free(t, n);
        n->kind = DP_TRIE_FREE;
        n->parent = t->hdr->node_free;
        t->hdr->node_free = idx;
        t->hdr->nodes_used--;
}

/* ---- insert and remove -------------------------------------------------- */

/* A split subject with the keys of its tokens: each is hashed once. */
struct dp_trie_path {
        const char *s;
        struct dp_subject_tokens tok;
        struct dp_trie_key key[DP_SUBJECT_TOKENS_MAX];
};

static int dp_trie_path_make(const struct dp_trie *t, const char *s, size_t len, bool wild,
                             struct dp_trie_path *p)
{
        int n = dp_subject_split(s, len, wild, &p->tok);
        if (n < 0)
                return n;
        p->s = s;
        for (uint32_t i = 0; i < p->tok.count; i++)
                dp_trie_key_make(t, s, len, p->tok.off[i], p->tok.len[i], &p->key[i]);
        return n;
}

static enum dp_trie_kind dp_trie_path_kind(const struct dp_trie_path *p, uint32_t i)
{
        if (dp_subject_token_is_star(p->s, &p->tok, i))
                return DP_TRIE_STAR;
        if (dp_subject_token_is_gt(p->s, &p->tok, i))
                return DP_TRIE_GT;
        return DP_TRIE_LITERAL;
}

/* The child of node for token i of a pattern, or DP_TRIE_NIL. */
static uint32_t dp_trie_path_child(const struct dp_trie *t, uint32_t node,
                                   const struct dp_trie_path *p, uint32_t i)
{
        switch (dp_trie_path_kind(p, i)) {
        case DP_TRIE_STAR:
                return t->nodes[node].star;
        case DP_TRIE_GT:
                return t->nodes[node].gt;
        default:
                return dp_trie_child_find(t, node, &p->key[i], NULL);
        }
}

/* Checks that the missing tokens from depth on can be stored: the insert
 * either fits entirely or changes nothing. */
static int dp_trie_room_check(const struct dp_trie *t, const struct dp_trie_path *p,
                              uint32_t depth)
{
        const struct dp_trie_hdr *h = t->hdr;
        uint64_t chunks = 0;

        for (uint32_t i = depth; i < p->tok.count; i++)
                chunks += dp_trie_chunks_needed(p->tok.len[i]);
        if (h->sub_free_head == DP_TRIE_NIL)
                return -ENOSPC;
        if ((uint64_t)h->nodes_used + (p->tok.count - depth) > t->node_count - 1)
                return -ENOSPC;
        if ((uint64_t)h->chunks_used + chunks > t->chunk_count)
                return -ENOSPC;
        return 0;
}

/* Takes the oldest free subscription and puts it first on node's list. */
static uint32_t dp_trie_sub_add(struct dp_trie *t, uint32_t node, uint32_t group, uint64_t value)
{
        struct dp_trie_hdr *h = t->hdr;
        uint32_t idx = h->sub_free_head;
        DP_VERIFY(idx < t->sub_count);
        struct dp_trie_sub *s = &t->subs[idx];
        DP_ASSERT(s->node == DP_TRIE_NIL);
        h->sub_free_head = s->next;
        if (h->sub_free_head == DP_TRIE_NIL)
                h->sub_free_tail = DP_TRIE_NIL;

        struct dp_trie_node *n = &t->nodes[node];
        s->value = value;
        s->node = node;
        s->group = group;
        s->prev = DP_TRIE_NIL;
        s->next = n->subs;
        if (n->subs != DP_TRIE_NIL)
                t->subs[n->subs].prev = idx;
        n->subs = idx;
        h->subs_used++;
        return s->gen << t->sub_id_bits | idx;
}

int dp_trie_insert(struct dp_trie *t, const char *pattern, size_t len, uint32_t group,
                   uint64_t value, uint32_t *sub_id)
{
        t->gen++;
        struct dp_trie_path p;
        int rc = dp_trie_path_make(t, pattern, len, true, &p);
        if (rc < 0)
                return rc;

        /* Follow what exists, then check room for the rest before touching
         * anything, so there is nothing to roll back. */
        uint32_t node = 0, depth = 0;
        while (depth < p.tok.count) {
                uint32_t child = dp_trie_path_child(t, node, &p, depth);
                if (child == DP_TRIE_NIL)
                        break;
                node = child;
                depth++;
        }
        rc = dp_trie_room_check(t, &p, depth);
        if (rc < 0)
                return rc;
        for (; depth < p.tok.count; depth++) {
                node = dp_trie_node_add(t, node, p.s + p.tok.off[depth], p.tok.len[depth],
                                        dp_trie_path_kind(&p, depth),
                                        dp_trie_key_hash(p.key[depth].hash, node));
        }
        *sub_id = dp_trie_sub_add(t, node, group, value);
        return 0;
}

/* Returns sub idx to the tail of the free list with its next generation. */
static void dp_trie_sub_free(struct dp_trie *t, uint32_t idx)
{
        struct dp_trie_hdr *h = t->hdr;
        struct dp_trie_sub *s = &t->subs[idx];
        uint32_t gen_max = UINT32_MAX >> t->sub_id_bits;

        s->node = DP_TRIE_NIL;
        s->prev = DP_TRIE_NIL;
        s->next = DP_TRIE_NIL;
        s->value = 0;
        s->group = 0;
        /* Generation 0 is skipped, so id 0 is never issued. */
        s->gen = s->gen >= gen_max ? 1 : s->gen + 1;
        if (h->sub_free_tail == DP_TRIE_NIL)
                h->sub_free_head = idx;
        else
                t->subs[h->sub_free_tail].next = idx;
        h->sub_free_tail = idx;
        h->subs_used--;
}

int dp_trie_remove(struct dp_trie *t, uint32_t sub_id)
{
        t->gen++;
        uint32_t idx = sub_id & ((1u << t->sub_id_bits) - 1);
        uint32_t gen = sub_id >> t->sub_id_bits;
        if (idx >= t->sub_count)
                return -ENOENT;
        struct dp_trie_sub *s = &t->subs[idx];
        if (s->node == DP_TRIE_NIL || s->gen != gen)
                return -ENOENT;

        uint32_t node = s->node;
        struct dp_trie_node *n = &t->nodes[node];
        if (s->prev == DP_TRIE_NIL)
                n->subs = s->next;
        else
                t->subs[s->prev].next = s->next;
        if (s->next != DP_TRIE_NIL)
                t->subs[s->next].prev = s->prev;
        dp_trie_sub_free(t, idx);

        /* Free the prefixes this subscription alone kept alive, bottom up. */
        while (node != 0 && dp_trie_node_idle(&t->nodes[node])) {
                uint32_t parent = t->nodes[node].parent;
                dp_trie_node_del(t, node);
                node = parent;
        }
        return 0;
}

static uint32_t dp_trie_sub_id(const struct dp_trie *t, uint32_t idx)
{
        return t->subs[idx].gen << t->sub_id_bits | idx;
}

int dp_trie_sub_get(const struct dp_trie *t, uint32_t sub_id, uint64_t *value, uint32_t *group)
{
        uint32_t idx = sub_id & ((1u << t->sub_id_bits) - 1);
        if (idx >= t->sub_count)
                return -ENOENT;
        const struct dp_trie_sub *s = &t->subs[idx];
        if (s->node == DP_TRIE_NIL || s->gen != sub_id >> t->sub_id_bits)
                return -ENOENT;
        *value = s->value;
        *group = s->group;
        return 0;
}

uint32_t dp_trie_walk_subs(struct dp_trie *t, dp_trie_match_fn *fn, void *arg)
{
        uint32_t n = 0;
        for (uint32_t i = 0; i < t->sub_count; i++) {
                const struct dp_trie_sub *s = &t->subs[i];
                if (s->node == DP_TRIE_NIL)
                        continue;
                n++;
                fn(arg, dp_trie_sub_id(t, i), s->group, s->value);
        }
        return n;
}

/* ---- match -------------------------------------------------------------- */

struct dp_trie_walk {
        const struct dp_trie *t;
        const struct dp_trie_path *p;
        dp_trie_match_fn *fn;
        void *arg;
        int count;
        bool tail_literal;      /* a node at the last token had literal children */
};

static void dp_trie_emit(struct dp_trie_walk *w, uint32_t node)
{
        const struct dp_trie *t = w->t;
        for (uint32_t i = t->nodes[node].subs; i != DP_TRIE_NIL; i = t->subs[i].next) {
                const struct dp_trie_sub *s = &t->subs[i];
                DP_ASSERT(s->node == node);
                w->fn(w->arg, s->gen << t->sub_id_bits | i, s->group, s->value);
                w->count++;
        }
}

/* Matches tokens depth.. of the subject below node. The literal branch is
 * followed in the loop and only '*' recurses, so the stack depth is the
 * number of '*' levels taken, at most DP_SUBJECT_TOKENS_MAX. */
static void dp_trie_walk(struct dp_trie_walk *w, uint32_t node, uint32_t depth)
{
        const struct dp_trie *t = w->t;
        const struct dp_trie_path *p = w->p;

        for (;;) {
                const struct dp_trie_node *n = &t->nodes[node];
                if (depth == p->tok.count) {
                        dp_trie_emit(w, node);
                        return;
                }
                /* '>' takes every remaining token (there is at least one). */
                if (n->gt != DP_TRIE_NIL)
                        dp_trie_emit(w, n->gt);
                if (n->star != DP_TRIE_NIL)
                        dp_trie_walk(w, n->star, depth + 1);
                if (n->lits == 0)
                        return;
                if (depth + 1 == p->tok.count)
                        w->tail_literal = true; /* another last token may differ */
                const struct dp_trie_key *next =
                        depth + 1 < p->tok.count ? &p->key[depth + 1] : NULL;
                node = dp_trie_child_find(t, node, &p->key[depth], next);
                if (node == DP_TRIE_NIL)
                        return;
                depth++;
        }
}

int dp_trie_match_tail(const struct dp_trie *t, const char *subject, size_t len,
                       dp_trie_match_fn *fn, void *arg, bool *tail_free)
{
        struct dp_trie_path p;
        int rc = dp_trie_path_make(t, subject, len, false, &p);
        if (rc < 0)
                return rc;
        struct dp_trie_walk w = { .t = t, .p = &p, .fn = fn, .arg = arg, .count = 0 };
        dp_trie_walk(&w, 0, 0);
        *tail_free = !w.tail_literal;
        return w.count;
}

int dp_trie_match(const struct dp_trie *t, const char *subject, size_t len,
                  dp_trie_match_fn *fn, void *arg)
{
        bool tail_free;
        return dp_trie_match_tail(t, subject, len, fn, arg, &tail_free);
}

/* ---- verification --------------------------------------------------------
 * Each check is bounded by a pool size, so a corrupt trie (a cycle in a
 * list, an index out of range) yields -EPROTO, never a hang or a wild read.
 */

/* What the node pass counts, for the totals in the header. */
struct dp_trie_tally {
        uint64_t lits;
        uint64_t subs;
        uint64_t literals;
        uint64_t chunks;
        uint64_t nodes;
};

static bool dp_trie_idx_ok(uint32_t idx, uint32_t count)
{
        return idx < count;
}

static int dp_trie_verify_header(const struct dp_trie *t)
{
        const struct dp_trie_hdr *h = t->hdr;
        const struct dp_trie_node *root = &t->nodes[0];

        if (h->nodes_used > h->max_nodes || h->subs_used > t->sub_count ||
            h->chunks_used > t->chunk_count)
                return -EPROTO;
        if (root->kind != DP_TRIE_ROOT || root->parent != DP_TRIE_NIL)
                return -EPROTO;
        if ((h->sub_free_head == DP_TRIE_NIL) != (h->sub_free_tail == DP_TRIE_NIL))
                return -EPROTO;
        return 0;
}

static int dp_trie_verify_free_lists(const struct dp_trie *t)
{
        const struct dp_trie_hdr *h = t->hdr;
        uint32_t n = 0, last = DP_TRIE_NIL;

        for (uint32_t i = h->node_free; i != DP_TRIE_NIL; i = t->nodes[i].parent, n++)
                if (i == 0 || !dp_trie_idx_ok(i, t->node_count) || n >= t->node_count ||
                    t->nodes[i].kind != DP_TRIE_FREE)
                        return -EPROTO;
        if (n != t->node_count - 1 - h->nodes_used)
                return -EPROTO;
        n = 0;
        for (uint32_t i = h->chunk_free; i != DP_TRIE_NIL; i = t->chunks[i].next, n++)
                if (!dp_trie_idx_ok(i, t->chunk_count) || n >= t->chunk_count)
                        return -EPROTO;
        if (n != t->chunk_count - h->chunks_used)
                return -EPROTO;
        n = 0;
        for (uint32_t i = h->sub_free_head; i != DP_TRIE_NIL; last = i, i = t->subs[i].next, n++)
                if (!dp_trie_idx_ok(i, t->sub_count) || n >= t->sub_count ||
                    t->subs[i].node != DP_TRIE_NIL)
                        return -EPROTO;
        if (last != h->sub_free_tail || n != t->sub_count - h->subs_used)
                return -EPROTO;
        return 0;
}

/* The token of used node i: its chunk chain, and for wildcards their byte. */
static int dp_trie_verify_token(const struct dp_trie *t, uint32_t i, struct dp_trie_tally *y)
{
        const struct dp_trie_node *n = &t->nodes[i];

        if (n->token_len == 0)
                return -EPROTO;
        if (n->kind == DP_TRIE_STAR || n->kind == DP_TRIE_GT) {
                char want = n->kind == DP_TRIE_STAR ? '*' : '>';
                return n->token_len == 1 && n->token.bytes[0] == (uint8_t)want ? 0 : -EPROTO;
        }
        if (n->token_len <= DP_TRIE_TOKEN_INLINE)
                return 0;
        uint32_t c = n->token.chunk;
        for (uint32_t k = dp_trie_chunks_needed(n->token_len); k > 0; k--) {
                if (!dp_trie_idx_ok(c, t->chunk_count))
                        return -EPROTO;
                c = t->chunks[c].next;
                y->chunks++;
        }
        return c == DP_TRIE_NIL ? 0 : -EPROTO;
}

/* Used node i is where its parent says: star, gt or the table. */
static int dp_trie_verify_link(const struct dp_trie *t, uint32_t i)
{
        const struct dp_trie_node *n = &t->nodes[i];
        const struct dp_trie_node *p = &t->nodes[n->parent];
        char buf[DP_SUBJECT_MAX];

        if (n->kind == DP_TRIE_STAR)
                return p->star == i ? 0 : -EPROTO;
        if (n->kind == DP_TRIE_GT)
                return p->gt == i && n->star == DP_TRIE_NIL && n->gt == DP_TRIE_NIL ? 0 : -EPROTO;
        struct dp_trie_key k;
        dp_trie_node_key(t, n, buf, &k);
        return dp_trie_child_find(t, n->parent, &k, NULL) == i ? 0 : -EPROTO;
}

/* The subscription list of node i, and its use count against it. */
static int dp_trie_verify_subs_of(const struct dp_trie *t, uint32_t i, struct dp_trie_tally *y)
{
        const struct dp_trie_node *n = &t->nodes[i];
        uint32_t gen_max = UINT32_MAX >> t->sub_id_bits;
        uint32_t prev = DP_TRIE_NIL, k = 0;

        for (uint32_t s = n->subs; s != DP_TRIE_NIL; prev = s, s = t->subs[s].next, k++) {
                if (!dp_trie_idx_ok(s, t->sub_count) || k >= t->sub_count)
                        return -EPROTO;
                const struct dp_trie_sub *sub = &t->subs[s];
                if (sub->node != i || sub->prev != prev || sub->gen == 0 || sub->gen > gen_max)
                        return -EPROTO;
        }
        if (i != 0 && dp_trie_node_idle(n))
                return -EPROTO;
        y->subs += k;
        y->lits += n->lits;
        return 0;
}

static int dp_trie_verify_node(const struct dp_trie *t, uint32_t i, struct dp_trie_tally *y)
{
        const struct dp_trie_node *n = &t->nodes[i];

        if (n->kind != DP_TRIE_ROOT) {
                if (n->kind != DP_TRIE_LITERAL && n->kind != DP_TRIE_STAR && n->kind != DP_TRIE_GT)
                        return -EPROTO;
                if (!dp_trie_idx_ok(n->parent, t->node_count) ||
                    t->nodes[n->parent].kind == DP_TRIE_FREE ||
                    t->nodes[n->parent].kind == DP_TRIE_GT)
                        return -EPROTO;
                /* The root is within DP_SUBJECT_TOKENS_MAX steps: no cycles,
                 * and match recursion stays bounded. */
                uint32_t up = n->parent;
                for (uint32_t steps = 1; up != 0; steps++)
                        if (steps == DP_SUBJECT_TOKENS_MAX ||
                            !dp_trie_idx_ok(up = t->nodes[up].parent, t->node_count))
                                return -EPROTO;
                if (dp_trie_verify_token(t, i, y) < 0)
                        return -EPROTO;
                y->nodes++;
                y->literals += n->kind == DP_TRIE_LITERAL;
        }
        if ((n->star != DP_TRIE_NIL && (!dp_trie_idx_ok(n->star, t->node_count) ||
                                        t->nodes[n->star].kind != DP_TRIE_STAR ||
                                        t->nodes[n->star].parent != i)) ||
            (n->gt != DP_TRIE_NIL && (!dp_trie_idx_ok(n->gt, t->node_count) ||
                                      t->nodes[n->gt].kind != DP_TRIE_GT ||
                                      t->nodes[n->gt].parent != i)))
                return -EPROTO;
        return dp_trie_verify_subs_of(t, i, y);
}

static int dp_trie_verify_slots(const struct dp_trie *t, uint64_t literals)
{
        uint64_t used = 0;
        for (uint32_t i = 0; i < t->slot_count; i++) {
                uint32_t node = t->slots[i].node;
                if (node == DP_TRIE_NIL)
                        continue;
                if (!dp_trie_idx_ok(node, t->node_count) ||
                    t->nodes[node].kind != DP_TRIE_LITERAL)
                        return -EPROTO;
                used++;
        }
        /* Every literal node is then found by a probe (verify_link); as many
         * slots as literals means no slot is stray or doubled. */
        return used == literals && used < t->slot_count ? 0 : -EPROTO;
}

int dp_trie_verify(const struct dp_trie *t)
{
        const struct dp_trie_hdr *h = t->hdr;
        struct dp_trie_tally y = { 0 };

        if (dp_trie_verify_header(t) < 0 || dp_trie_verify_free_lists(t) < 0)
                return -EPROTO;
        /* Structure first, so the probes in verify_link read sane nodes. */
        for (uint32_t i = 0; i < t->node_count; i++)
                if (t->nodes[i].kind != DP_TRIE_FREE && dp_trie_verify_node(t, i, &y) < 0)
                        return -EPROTO;
        if (y.nodes != h->nodes_used || y.subs != h->subs_used || y.chunks != h->chunks_used)
                return -EPROTO;
        /* Each literal node counts once in its parent's lits. */
        if (y.lits != y.literals)
                return -EPROTO;
        /* Slots before links: the probes in verify_link follow them. */
        if (dp_trie_verify_slots(t, y.literals) < 0)
                return -EPROTO;
        for (uint32_t i = 1; i < t->node_count; i++)
                if (t->nodes[i].kind != DP_TRIE_FREE && dp_trie_verify_link(t, i) < 0)
                        return -EPROTO;
        return 0;
}
