/* dp_timer.h - a hierarchical timer wheel, one per dataplane shard, for
 * entity TTLs (absolute and idle), per-message TTLs, ack-wait redelivery
 * and request timeouts.
 *
 * The wheel lives in caller-provided memory (it may sit in the shared-memory
 * arena and survive a dataplane restart): a header, then one 16-byte node per
 * timer, then one list head per wheel slot. Links are 32-bit indexes, never
 * pointers; nothing is allocated after dp_timer_init. Timers are named by a
 * caller-chosen id in [0, node_count) that the caller maps to an entity slot
 * or a message record; an id holds at most one pending deadline.
 *
 * Geometry: DP_TIMER_LEVELS levels of DP_TIMER_SLOTS slots, so one 64-bit
 * occupancy word per level. Level L slot s holds timers whose tick shares
 * every bit above level L with the wheel's time and has digit s at level L;
 * coarser levels therefore only ever hold later timers than finer ones, and
 * the next event is the lowest set bit of the lowest non-empty level. That
 * makes arm, re-arm and cancel O(1), and skipping an idle stretch of any
 * length O(levels). 6 x 64 covers 2^36 ticks: 795 days at a 1 ms tick.
 * Deadlines beyond the current 2^36-tick epoch wait on a "far" list. Once
 * the wheel holds nothing earlier, its time jumps to the start of the epoch
 * of the earliest far deadline and the list is re-placed from there. A far
 * timer thus moves once per epoch it waits through and still fires on time,
 * never early; dp_timer_next_ns may report that epoch start, one spurious
 * wake-up per epoch.
 *
 * Time is in ticks of tick_ns. A deadline is rounded *up* to a tick and the
 * clock *down*, so a timer never fires before its deadline and at most one
 * tick (plus the caller's polling gap) after it. Timers due in the same tick
 * fire in any order; otherwise in deadline order.
 *
 * One thread owns a wheel (the shard's worker): there are no locks. The
 * counters are the only words another process may read.
 *
 *      size_t len = dp_timer_bytes(1 << 20);
 *      dp_timer_init(&w, mem, len, 1 << 20, 1000000, now_ns);   // 1 ms tick
 *      dp_timer_arm(&w, slot, now_ns + ttl_ns);
 *      ...
 *      work += dp_timer_expire(&w, now_ns, on_timer, shard, 256);
 *      sleep_until = dp_timer_next_ns(&w);
 */
#ifndef ATOMQ_DP_TIMER_H
#define ATOMQ_DP_TIMER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shm/shm_base.h"

#define DP_TIMER_MAGIC 0x524d4954514d5441ull /* "ATMQTIMR" */
#define DP_TIMER_VERSION 1
#define DP_TIMER_LEVEL_BITS 6
#define DP_TIMER_SLOTS (1u << DP_TIMER_LEVEL_BITS)
#define DP_TIMER_LEVELS 6
#define DP_TIMER_RANGE_BITS (DP_TIMER_LEVELS * DP_TIMER_LEVEL_BITS)
/* 2^30 timers is 16 GiB of nodes, far above any shard; it also keeps every
 * id and list-head index below DP_TIMER_NONE. */
#define DP_TIMER_NODES_MAX (1u << 30)
#define DP_TIMER_NONE UINT32_MAX

/* List heads after the timer nodes, as offsets from node_count: the wheel
 * slots (level-major), then four lists the expiry path uses. */
#define DP_TIMER_LIST_FAR (DP_TIMER_LEVELS * DP_TIMER_SLOTS) /* beyond 2^36 ticks */
#define DP_TIMER_LIST_STAGE (DP_TIMER_LIST_FAR + 1)   /* cascading, to re-place */
#define DP_TIMER_LIST_DUE (DP_TIMER_LIST_FAR + 2)     /* armed in the past */
#define DP_TIMER_LIST_FIRE (DP_TIMER_LIST_FAR + 3)    /* due, firing now */
#define DP_TIMER_LISTS (DP_TIMER_LIST_FAR + 4)

/* Cascading moves one dp_timer_expire call may make: at least this many,
 * and DP_TIMER_LEVELS per allowed fire (a timer moves down at most once per
 * level), so the wheel keeps up with the fire rate while one crowded coarse
 * slot cannot stall a worker pass. */
#define DP_TIMER_MOVES_MIN 1024u

/* A timer, or a list head. next == DP_TIMER_NONE: not armed. */
struct dp_timer_node {
        uint64_t deadline_ns;
        uint32_t next;
        uint32_t prev;
};
_Static_assert(sizeof(struct dp_timer_node) == 16, "timer node");
_Static_assert(offsetof(struct dp_timer_node, next) == 8, "timer node next");

/* The shared part of a wheel; the nodes follow it. */
struct dp_timer_hdr {
        uint64_t magic;
        uint32_t version;
        uint32_t node_count;
        uint64_t tick_ns;
        uint64_t now_tick;              /* the wheel's time; never goes back */
        uint64_t far_min_tick;          /* lower bound of the far list's ticks */
        uint64_t occupied[DP_TIMER_LEVELS]; /* bit s: slot s is not empty */
        /* Statistics: written by the owning worker only, read by anyone
         * (relaxed), on their own line so readers do not slow the wheel. */
        SHM_ALIGNED_LINE _Atomic uint64_t armed;
        _Atomic uint64_t fired;
        _Atomic uint64_t moved;         /* re-placements while cascading */
        _Atomic uint64_t steps;         /* slot visits while advancing */
};
_Static_assert(offsetof(struct dp_timer_hdr, tick_ns) == 16, "timer hdr tick");
_Static_assert(offsetof(struct dp_timer_hdr, occupied) == 40, "timer hdr bitmaps");
_Static_assert(offsetof(struct dp_timer_hdr, armed) == 2 * SHM_CACHE_LINE, "timer counters line");
_Static_assert(sizeof(struct dp_timer_hdr) == 3 * SHM_CACHE_LINE, "timer hdr");
_Static_assert(DP_TIMER_SLOTS == 64, "one occupancy word per level");

/* A process-local view; geometry is our own copy, never re-read. */
struct dp_timer_wheel {
        struct dp_timer_hdr *hdr;
        struct dp_timer_node *nodes;    /* node_count timers, then the list heads */
        uint32_t node_count;
        uint64_t tick_ns;
};

struct dp_timer_stats {
        uint64_t armed;
        uint64_t fired;
        uint64_t moved;
        uint64_t steps;
};

/* Called for each expired timer. The timer is already disarmed: the callback
 * may re-arm it, arm or cancel any other timer, but not call dp_timer_expire.
 * A deadline it arms at or before the wheel's time (the tick being fired)
 * fires on the next dp_timer_expire call, so a timer re-armed in the past
 * cannot keep one call busy; a later one up to now_ns fires in this call. */
typedef void dp_timer_fn(uint32_t id, uint64_t deadline_ns, void *arg);

/* Bytes a wheel of node_count timers needs, or 0 when node_count is 0 or
 * above DP_TIMER_NODES_MAX. */
size_t dp_timer_bytes(uint32_t node_count);

/* Formats a wheel with no timer armed and its time at now_ns.
 * -EINVAL: bad node_count, tick_ns 0, mem not cache-line aligned;
 * -ENOSPC: len below dp_timer_bytes(). */
int dp_timer_init(struct dp_timer_wheel *w, void *mem, size_t len, uint32_t node_count,
                  uint64_t tick_ns, uint64_t now_ns);

/* Attaches to a formatted wheel (after a dataplane restart): its timers stay
 * armed. -EPROTO: bad magic or version; -EINVAL: bad geometry or alignment;
 * -ENOSPC: the header claims more than len. The memory must not be writable
 * by agents: links are trusted (asserted in debug builds only). */
int dp_timer_attach(struct dp_timer_wheel *w, void *mem, size_t len);

/* Arms timer id for deadline_ns, moving it if already armed. A deadline at or
 * before the wheel's time fires on the next dp_timer_expire call.
 * -EINVAL: id >= node_count. */
int dp_timer_arm(struct dp_timer_wheel *w, uint32_t id, uint64_t deadline_ns);

/* Disarms timer id. -EINVAL: id >= node_count; -ENOENT: not armed. */
int dp_timer_cancel(struct dp_timer_wheel *w, uint32_t id);

/* Whether id is armed (false for a bad id). */
bool dp_timer_armed(const struct dp_timer_wheel *w, uint32_t id);

/* The deadline id is armed for, or UINT64_MAX when it is not (or bad). */
uint64_t dp_timer_deadline(const struct dp_timer_wheel *w, uint32_t id);

/* Fires, through fn, every timer whose deadline (rounded up to a tick) is at
 * or before now_ns, at most max of them: the rest fire on the next call, none
 * is lost. Returns the number fired. Each call also re-places at most
 * max(DP_TIMER_MOVES_MIN, max * DP_TIMER_LEVELS) cascading timers; timers
 * waiting behind an unfinished cascade fire on a later call, still in order. */
int dp_timer_expire(struct dp_timer_wheel *w, uint64_t now_ns, dp_timer_fn *fn, void *arg,
                    unsigned max);

/* When the next timer may be due: at or before the earliest deadline rounded
 * up to a tick (a coarse slot reports its start, so a worker may wake once
 * to cascade it), at or before the wheel's time when a timer is due already,
 * UINT64_MAX when none is armed. A worker may sleep until then. */
uint64_t dp_timer_next_ns(const struct dp_timer_wheel *w);

/* Timers armed now. */
uint32_t dp_timer_armed_count(const struct dp_timer_wheel *w);

/* All counters (relaxed reads; safe from another thread or process). */
void dp_timer_stats(const struct dp_timer_wheel *w, struct dp_timer_stats *out);

#endif /* ATOMQ_DP_TIMER_H */
