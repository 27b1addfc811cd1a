/* dp_trie.h - the per-shard subject trie behind `match` routing: which
 * subscriptions (patterns with '*' and '>') a published subject reaches.
 *
 * The trie lives in memory the caller provides, normally a region of the
 * shared-memory arena, so a restarted dataplane can reattach to it. That
 * memory holds no pointers, only 32-bit indexes, and every pool in it is
 * sized at init: running out is -ENOSPC, never a crash or a malloc. One
 * worker owns a trie; nothing in it is atomic (share-nothing, DESIGN.md).
 *
 * Layout (each region starts on a cache line):
 *
 *   hdr     struct dp_trie_hdr: geometry, free lists, counters
 *   nodes   (max_nodes + 1) x 32 B; node 0 is the root (the empty prefix)
 *   subs    max_subs x 32 B, each on its node's doubly linked list
 *   slots   slot_count x 8 B: one open-addressing table (linear probing) for
 *           the literal children of every node, keyed by (parent, token)
 *   chunks  token_bytes / 28 (rounded up) x 32 B: storage for tokens longer
 *           than DP_TRIE_TOKEN_INLINE bytes, chained by index
 *
 * A node is one pattern prefix. Its '*' and '>' children sit in the node
 * (no hashing); its literal children are found in the shared table, so a
 * node with a million children (user.<id>.inbox) costs the same to search
 * as one with two, and a node with none (counted in the node) costs no
 * probe. Tokens up to 8 bytes live inside the node, compared as one word.
 * A subscription costs 32 B plus its pattern's nodes not shared with other
 * patterns, each 32 B + 11.4 B of table: user.<id>.inbox, 1 M times, is
 * 119 B a subscription with the pools sized exactly.
 *
 * Complexity (L = subject bytes, k = its tokens, m = matches):
 *   insert  O(L) expected: one hash per token, one probe sequence per level;
 *   remove  O(k) expected: unlink the sub, free the nodes it alone used;
 *   match   O(L + V + m) expected, V = trie nodes visited; a node is visited
 *           at most once per match (it is one pattern prefix), and V <= 2^k
 *           only when every level holds both a literal and a '*' branch;
 *           without wildcards V <= k + 1.
 * The table is sized to a load of at most 0.7 when every node is in use, so
 * a probe sequence is short (about 2 slots hit, 6 miss, 8 slots per line).
 * A big trie is bound by memory latency: a literal level costs a slot and a
 * node cache miss, and match prefetches the next level's slot as soon as it
 * knows the child, so the two overlap.
 * Token hashes are XXH3 with a per-trie seed (random unless configured), so
 * remote clients cannot aim subjects at one probe chain.
 *
 *      struct dp_trie_config cfg = { .max_nodes = 4096, .max_subs = 1024,
 *                                    .token_bytes = 16384 };
 *      size_t len = dp_trie_bytes(&cfg);
 *      dp_trie_init(&t, mem, len, &cfg);
 *      dp_trie_insert(&t, "user.*.inbox", 12, 0, value, &id);
 *      int n = dp_trie_match(&t, "user.42.inbox", 13, on_match, ctx);  // 1
 *      dp_trie_remove(&t, id);
 */
#ifndef ATOMQ_DP_TRIE_H
#define ATOMQ_DP_TRIE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DP_TRIE_MAGIC 0x4549525451504441ull /* "ADPQTRIE" */
#define DP_TRIE_VERSION 1
#define DP_TRIE_NIL UINT32_MAX
/* 2^24 subscriptions leave at least 8 bits of generation in a sub id;
 * 2^28 nodes keep the hash table (1/0.7 slots a node) under 2^29 slots. */
#define DP_TRIE_SUBS_MAX (1u << 24)
#define DP_TRIE_NODES_MAX (1u << 28)
#define DP_TRIE_TOKEN_INLINE 8u
#define DP_TRIE_CHUNK_DATA 28u
#define DP_TRIE_CHUNKS_MAX (1u << 28)

/* Limits, fixed at init. */
struct dp_trie_config {
        uint32_t max_nodes;     /* pattern prefixes, root excluded: a pattern
                                 * of k tokens needs up to k new ones */
        uint32_t max_subs;      /* subscriptions */
        uint64_t token_bytes;   /* storage for tokens longer than
                                 * DP_TRIE_TOKEN_INLINE, used in chunks of
                                 * DP_TRIE_CHUNK_DATA bytes; 0 forbids them */
        uint64_t hash_seed;     /* 0: random (getrandom) */
};

struct dp_trie_hdr;
struct dp_trie_node;
struct dp_trie_sub;
struct dp_trie_slot;
struct dp_trie_chunk;

/* A process-local view; geometry is our own copy, never re-read. */
struct dp_trie {
        struct dp_trie_hdr *hdr;
        struct dp_trie_node *nodes;
        struct dp_trie_sub *subs;
        struct dp_trie_slot *slots;
        struct dp_trie_chunk *chunks;
        uint64_t hash_seed;
        uint32_t node_count;    /* root included */
        uint32_t sub_count;
        uint32_t slot_count;
        uint32_t chunk_count;
        uint32_t sub_id_bits;
        uint64_t gen;           /* process-local: bumped by every insert and remove,
                                 * so a cache of match results knows when it is stale */
};

/* Pool usage, for stats and leak checks. */
struct dp_trie_usage {
        uint32_t nodes;         /* root excluded */
        uint32_t subs;
        uint32_t chunks;
};

/* Called once per matching subscription. */
typedef void dp_trie_match_fn(void *arg, uint32_t sub_id, uint32_t group, uint64_t value);

/* Bytes a trie of this geometry needs, or 0 when it is invalid (max_nodes or
 * max_subs 0 or above their _MAX, token_bytes above DP_TRIE_CHUNKS_MAX
 * chunks). */
size_t dp_trie_bytes(const struct dp_trie_config *cfg);

/* Formats an empty trie in mem. -EINVAL: bad geometry (as dp_trie_bytes) or
 * mem not cache-line aligned; -ENOSPC: len below dp_trie_bytes(). */
int dp_trie_init(struct dp_trie *t, void *mem, size_t len, const struct dp_trie_config *cfg);

/* Attaches to a trie formatted by dp_trie_init (after a dataplane restart)
 * and checks it with dp_trie_verify, so later calls may trust its indexes.
 * -EPROTO: bad magic or version, or verification failed; -EINVAL: bad
 * geometry or alignment; -ENOSPC: the header claims more than len. */
int dp_trie_attach(struct dp_trie *t, void *mem, size_t len);

/* Adds a subscription to pattern (wildcards allowed); its id goes to
 * *sub_id. group 0 means no queue group; group and value are opaque here
 * and handed back by dp_trie_match. Several subscriptions may share a
 * pattern. Nothing changes on error:
 * -EINVAL, -ENAMETOOLONG: pattern refused by dp_subject_split;
 * -ENOSPC: no free subscription, or too few free nodes or token chunks. */
int dp_trie_insert(struct dp_trie *t, const char *pattern, size_t len, uint32_t group,
                   uint64_t value, uint32_t *sub_id);

/* Removes a subscription and frees the nodes and token storage that only it
 * used. -ENOENT: sub_id is not a live subscription (never issued, removed
 * already, or stale after its record was reused). A sub id is a generation
 * above the record index, so an old id aliases a new subscription only once
 * its record has been reused 2^(32 - index bits) - 1 times: 255 at
 * DP_TRIE_SUBS_MAX, 4095 at 1 M subs. Free records are reused oldest first,
 * which spreads reuse over all of them. */
int dp_trie_remove(struct dp_trie *t, uint32_t sub_id);

/* Calls fn for every subscription whose pattern matches subject (no
 * wildcards): a literal token matches itself, '*' exactly one token, '>' one
 * or more trailing tokens. Each subscription is reported once. Returns the
 * number of calls, or -EINVAL / -ENAMETOOLONG when dp_subject_split refuses
 * the subject (fn is then never called). fn must not modify the trie. */
int dp_trie_match(const struct dp_trie *t, const char *subject, size_t len,
                  dp_trie_match_fn *fn, void *arg);

/* As dp_trie_match, and *tail_free says whether any other last token (the
 * rest of subject the same) would match the same subscriptions: true when
 * no pattern could have taken that token as a literal, so only '*' and '>'
 * did or none. A reply subject _INBOX.<id>.<n> under a subscription to
 * _INBOX.<id>.* is one: a cache keyed by the rest serves every <n>. */
int dp_trie_match_tail(const struct dp_trie *t, const char *subject, size_t len,
                       dp_trie_match_fn *fn, void *arg, bool *tail_free);

/* Subscriptions in the trie. */
uint32_t dp_trie_count(const struct dp_trie *t);

/* The value and group of live subscription sub_id. -ENOENT: no such
 * subscription (never issued, removed, or its slot reused). */
int dp_trie_sub_get(const struct dp_trie *t, uint32_t sub_id, uint64_t *value, uint32_t *group);

/* Calls fn for every live subscription, in slot order: O(max_subs). fn may
 * remove the subscription it is given (and no other). Returns the count. */
uint32_t dp_trie_walk_subs(struct dp_trie *t, dp_trie_match_fn *fn, void *arg);

/* Pool usage now. */
void dp_trie_usage(const struct dp_trie *t, struct dp_trie_usage *u);

/* Checks every index and invariant in the trie: free lists, node links,
 * use counts, the hash table and token chains. O(size of the trie), no
 * allocation. 0, or -EPROTO at the first inconsistency. */
int dp_trie_verify(const struct dp_trie *t);

#endif /* ATOMQ_DP_TRIE_H */
