/* dp_timer.c - the hierarchical timer wheel (see dp_timer.h).
 *
 * Placement rule: a timer due at tick t goes to the level of the highest bit
 * where t differs from the wheel's time now_tick, in the slot given by t's
 * digit at that level. Three consequences carry the whole design:
 *  - at level L >= 1 every occupied slot's digit is above now_tick's digit,
 *    at level 0 at or above it, so the first set bit of an occupancy word is
 *    the earliest slot of that level, with no wrap-around to reason about;
 *  - every timer at level L is later than every timer at a level below L, so
 *    the next event is the first slot of the lowest non-empty level;
 *  - moving now_tick forward to the start of that slot (or to any tick before
 *    it) keeps every other timer's placement valid, so the wheel jumps over
 *    idle stretches instead of walking them tick by tick.
 * A coarse slot that comes due is moved whole to the STAGE list and each of
 * its timers re-placed against the new time (the cascade). While STAGE is
 * not empty nothing else fires, since one of its timers may be due at
 * now_tick; that is what keeps order when a cascade is cut short by its
 * per-call budget.
 */
#include "dataplane/dp_timer.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#define DP_TIMER_LEVEL_MASK ((uint64_t)DP_TIMER_SLOTS - 1)
#define DP_TIMER_RANGE_MASK ((1ull << DP_TIMER_RANGE_BITS) - 1)
#define DP_TIMER_WHEEL_LISTS (DP_TIMER_LEVELS * DP_TIMER_SLOTS)

static inline struct dp_timer_node *dp_timer_node(const struct dp_timer_wheel *w, uint32_t i)
{
        DP_ASSERT(i < w->node_count + DP_TIMER_LISTS);
        return &w->nodes[i];
}

/* The node index of list head `list` (a DP_TIMER_LIST_* or a slot). */
static inline uint32_t dp_timer_head(const struct dp_timer_wheel *w, uint32_t list)
{
        return w->node_count + list;
}

static inline bool dp_timer_list_empty(const struct dp_timer_wheel *w, uint32_t list)
{
        uint32_t head = dp_timer_head(w, list);
        return dp_timer_node(w, head)->next == head;
}

/* Counters have one writer, this thread, so a relaxed load and store is
 * enough (no locked add); the atomics are for readers in other processes. */
static inline void dp_timer_count(_Atomic uint64_t *c, int64_t delta)
{
        uint64_t v = atomic_load_explicit(c, memory_order_relaxed);
        atomic_store_explicit(c, v + (uint64_t)delta, memory_order_relaxed);
}

/* Deadlines round up so that a timer never fires early. */
static inline uint64_t dp_timer_tick_ceil(const struct dp_timer_wheel *w, uint64_t ns)
{
        return ns / w->tick_ns + (ns % w->tick_ns != 0);
}

static uint64_t dp_timer_tick_ns(const struct dp_timer_wheel *w, uint64_t tick)
{
        if (tick > UINT64_MAX / w->tick_ns)
                return UINT64_MAX;
        return tick * w->tick_ns;
}

static void dp_timer_link_tail(struct dp_timer_wheel *w, uint32_t list, uint32_t x)
{
        uint32_t head = dp_timer_head(w, list);
        struct dp_timer_node *h = dp_timer_node(w, head);
        struct dp_timer_node *n = dp_timer_node(w, x);
        DP_ASSERT(x < w->node_count);
        DP_ASSERT(n->next == DP_TIMER_NONE);
        n->prev = h->prev;
        n->next = head;
        dp_timer_node(w, h->prev)->next = x;
        h->prev = x;
}

/* Unlinks x from whatever list holds it. Its neighbours tell us, without a
 * search, whether that emptied a slot whose occupancy bit must go. */
static void dp_timer_unlink(struct dp_timer_wheel *w, uint32_t x)
{
        struct dp_timer_node *n = dp_timer_node(w, x);
        uint32_t prev = n->prev;
        uint32_t next = n->next;

        DP_ASSERT(x < w->node_count);
        DP_ASSERT(next != DP_TIMER_NONE);
        dp_timer_node(w, prev)->next = next;
        dp_timer_node(w, next)->prev = prev;
        n->next = DP_TIMER_NONE;
        n->prev = DP_TIMER_NONE;
        /* Only a list head can be its own neighbour on both sides. */
        if (prev != next || prev < w->node_count)
                return;
        uint32_t list = prev - w->node_count;
        if (list < DP_TIMER_WHEEL_LISTS)
                w->hdr->occupied[list / DP_TIMER_SLOTS] &= ~(1ull << (list % DP_TIMER_SLOTS));
        else if (list == DP_TIMER_LIST_FAR)
                w->hdr->far_min_tick = UINT64_MAX;
}

/* Moves every node of list src to the front of list dst, in O(1). */
static void dp_timer_splice_front(struct dp_timer_wheel *w, uint32_t dst, uint32_t src)
{
        uint32_t dst_head = dp_timer_head(w, dst);
        uint32_t src_head = dp_timer_head(w, src);
        struct dp_timer_node *d = dp_timer_node(w, dst_head);
        struct dp_timer_node *s = dp_timer_node(w, src_head);

        if (s->next == src_head)
                return;
        uint32_t first = s->next;
        uint32_t last = s->prev;
        uint32_t after = d->next;
        d->next = first;
        dp_timer_node(w, first)->prev = dst_head;
        dp_timer_node(w, last)->next = after;
        dp_timer_node(w, after)->prev = last;
        s->next = src_head;
        s->prev = src_head;
}

/* Puts x, due at tick >= now_tick, into its slot (see the placement rule at
 * the top), or on the far list when it lies beyond the current 2^36-tick
 * epoch. */
static void dp_timer_place(struct dp_timer_wheel *w, uint32_t x, uint64_t tick)
{
        struct dp_timer_hdr *h = w->hdr;
        uint64_t diff = tick ^ h->now_tick;

        DP_ASSERT(tick >= h->now_tick);
        if (diff > DP_TIMER_RANGE_MASK) {
                if (tick < h->far_min_tick)
                        h->far_min_tick = tick;
                dp_timer_link_tail(w, DP_TIMER_LIST_FAR, x);
                return;
        }
        unsigned level = 0;
        if (diff >= DP_TIMER_SLOTS)
                level = (unsigned)(63 - __builtin_clzll(diff)) / DP_TIMER_LEVEL_BITS;
        unsigned slot = (unsigned)(tick >> (level * DP_TIMER_LEVEL_BITS) & DP_TIMER_LEVEL_MASK);
        dp_timer_link_tail(w, level * DP_TIMER_SLOTS + slot, x);
        h->occupied[level] |= 1ull << slot;
}

/* The earliest non-empty slot (or the far list) and the tick it starts at.
 * The far list "starts" at the epoch of its earliest timer (of a lower
 * bound, when that one was cancelled). Not at the timer itself: the wheel's
 * time must never enter the epoch of a timer still on the far list, or
 * timers armed there later would go into the wheel and fire ahead of it. */
static bool dp_timer_next_slot(const struct dp_timer_wheel *w, uint64_t *start, uint32_t *list)
{
        const struct dp_timer_hdr *h = w->hdr;

        for (unsigned level = 0; level < DP_TIMER_LEVELS; level++) {
                uint64_t bits = h->occupied[level];
                if (bits == 0)
                        continue;
                unsigned shift = level * DP_TIMER_LEVEL_BITS;
                unsigned slot = (unsigned)__builtin_ctzll(bits);
                uint64_t span_mask = (1ull << (shift + DP_TIMER_LEVEL_BITS)) - 1;
                *start = (h->now_tick & ~span_mask) | (uint64_t)slot << shift;
                *list = level * DP_TIMER_SLOTS + slot;
                return true;
        }
        if (dp_timer_list_empty(w, DP_TIMER_LIST_FAR))
                return false;
        *start = h->far_min_tick & ~DP_TIMER_RANGE_MASK;
        *list = DP_TIMER_LIST_FAR;
        return true;
}

/* Moves the wheel's time toward now_tick, stopping at the next non-empty
 * slot if it is due: a level-0 slot goes to FIRE, a coarser slot or the far
 * list to STAGE. Returns false when nothing more is due by now_tick. Costs
 * O(levels) whatever the gap, which is what makes idle stretches cheap. */
static bool dp_timer_advance(struct dp_timer_wheel *w, uint64_t now_tick)
{
        struct dp_timer_hdr *h = w->hdr;
        uint64_t start;
        uint32_t list;

        DP_ASSERT(dp_timer_list_empty(w, DP_TIMER_LIST_FIRE));
        DP_ASSERT(dp_timer_list_empty(w, DP_TIMER_LIST_STAGE));
        dp_timer_count(&h->steps, 1);
        if (!dp_timer_next_slot(w, &start, &list) || start > now_tick) {
                /* Nothing due before now_tick: every timer stays valid when
                 * the wheel's time jumps there (see the top of the file). */
                if (now_tick > h->now_tick)
                        h->now_tick = now_tick;
                return false;
        }
        DP_VERIFY(start >= h->now_tick);
        h->now_tick = start;
        if (list < DP_TIMER_SLOTS) {
                dp_timer_splice_front(w, DP_TIMER_LIST_FIRE, list);
                h->occupied[0] &= ~(1ull << list);
        } else if (list < DP_TIMER_WHEEL_LISTS) {
                dp_timer_splice_front(w, DP_TIMER_LIST_STAGE, list);
                h->occupied[list / DP_TIMER_SLOTS] &= ~(1ull << (list % DP_TIMER_SLOTS));
        } else {
                dp_timer_splice_front(w, DP_TIMER_LIST_STAGE, DP_TIMER_LIST_FAR);
                h->far_min_tick = UINT64_MAX;
        }
        return true;
}

/* Re-places the first staged timer against the wheel's new time. */
static void dp_timer_move_one(struct dp_timer_wheel *w)
{
        uint32_t x = dp_timer_node(w, dp_timer_head(w, DP_TIMER_LIST_STAGE))->next;
        uint64_t tick = dp_timer_tick_ceil(w, dp_timer_node(w, x)->deadline_ns);

        dp_timer_unlink(w, x);
        dp_timer_place(w, x, tick);
        dp_timer_count(&w->hdr->moved, 1);
}

/* Disarms the first due timer, then calls fn: the callback sees a timer it
 * may re-arm, and lists that are consistent whatever it changes. */
static void dp_timer_fire_one(struct dp_timer_wheel *w, dp_timer_fn *fn, void *arg)
{
        uint32_t x = dp_timer_node(w, dp_timer_head(w, DP_TIMER_LIST_FIRE))->next;
        uint64_t deadline_ns = dp_timer_node(w, x)->deadline_ns;

        dp_timer_unlink(w, x);
        dp_timer_count(&w->hdr->armed, -1);
        dp_timer_count(&w->hdr->fired, 1);
        fn(x, deadline_ns, arg);
}

size_t dp_timer_bytes(uint32_t node_count)
{
        if (node_count == 0 || node_count > DP_TIMER_NODES_MAX)
                return 0;
        size_t nodes = (size_t)node_count + DP_TIMER_LISTS;
        return shm_align_up(sizeof(struct dp_timer_hdr) + nodes * sizeof(struct dp_timer_node),
                            SHM_CACHE_LINE);
}

static void dp_timer_view_set(struct dp_timer_wheel *w, struct dp_timer_hdr *h)
{
        w->hdr = h;
        w->nodes = (struct dp_timer_node *)(h + 1);
        w->node_count = h->node_count;
        w->tick_ns = h->tick_ns;
}

int dp_timer_init(struct dp_timer_wheel *w, void *mem, size_t len, uint32_t node_count,
                  uint64_t tick_ns, uint64_t now_ns)
{
        size_t need = dp_timer_bytes(node_count);
        if (need == 0 || tick_ns == 0 || (uintptr_t)mem % SHM_CACHE_LINE != 0)
                return -EINVAL;
        if (len < need)
                return -ENOSPC;

        struct dp_timer_hdr *h = mem;
        memset(h, 0, sizeof(*h));
        h->version = DP_TIMER_VERSION;
        h->node_count = node_count;
        h->tick_ns = tick_ns;
        h->now_tick = now_ns / tick_ns;
        h->far_min_tick = UINT64_MAX;
        dp_timer_view_set(w, h);
        for (uint32_t i = 0; i < node_count; i++) {
                w->nodes[i] = (struct dp_timer_node){ .deadline_ns = 0,
                                                      .next = DP_TIMER_NONE,
                                                      .prev = DP_TIMER_NONE };
        }
        for (uint32_t l = 0; l < DP_TIMER_LISTS; l++) {
                uint32_t head = dp_timer_head(w, l);
                w->nodes[head] = (struct dp_timer_node){ .next = head, .prev = head };
        }
        /* The magic goes last: a crash half-way leaves a wheel that
         * dp_timer_attach refuses. */
        h->magic = DP_TIMER_MAGIC;
        return 0;
}

int dp_timer_attach(struct dp_timer_wheel *w, void *mem, size_t len)
{
        struct dp_timer_hdr *h = mem;

        if ((uintptr_t)mem % SHM_CACHE_LINE != 0 || len < sizeof(*h))
                return -EINVAL;
        if (h->magic != DP_TIMER_MAGIC || h->version != DP_TIMER_VERSION)
                return -EPROTO;
        size_t need = dp_timer_bytes(h->node_count);
        if (need == 0 || h->tick_ns == 0)
                return -EINVAL;
        if (len < need)
                return -ENOSPC;
        dp_timer_view_set(w, h);
        return 0;
}

int dp_timer_arm(struct dp_timer_wheel *w, uint32_t id, uint64_t deadline_ns)
{
        if (id >= w->node_count)
                return -EINVAL;
        struct dp_timer_node *n = dp_timer_node(w, id);
        if (n->next != DP_TIMER_NONE)
                dp_timer_unlink(w, id);
        else
                dp_timer_count(&w->hdr->armed, 1);
        n->deadline_ns = deadline_ns;
        uint64_t tick = dp_timer_tick_ceil(w, deadline_ns);
        /* At or before the wheel's time: overdue. DUE is fired at the start
         * of the next expire call, never the current one, so a callback that
         * re-arms in the past cannot keep one call busy. */
        if (tick <= w->hdr->now_tick)
                dp_timer_link_tail(w, DP_TIMER_LIST_DUE, id);
        else
                dp_timer_place(w, id, tick);
        return 0;
}

int dp_timer_cancel(struct dp_timer_wheel *w, uint32_t id)
{
        if (id >= w->node_count)
                return -EINVAL;
        if (dp_timer_node(w, id)->next == DP_TIMER_NONE)
                return -ENOENT;
        dp_timer_unlink(w, id);
        dp_timer_count(&w->hdr->armed, -1);
        return 0;
}

bool dp_timer_armed(const struct dp_timer_wheel *w, uint32_t id)
{
        return id < w->node_count && dp_timer_node(w, id)->next != DP_TIMER_NONE;
}

uint64_t dp_timer_deadline(const struct dp_timer_wheel *w, uint32_t id)
{
        if (!dp_timer_armed(w, id))
                return UINT64_MAX;
        return dp_timer_node(w, id)->deadline_ns;
}

int dp_timer_expire(struct dp_timer_wheel *w, uint64_t now_ns, dp_timer_fn *fn, void *arg,
                    unsigned max)
{
        uint64_t now_tick = now_ns / w->tick_ns;
        unsigned fired = 0;

        DP_ASSERT(fn != NULL);
        if (max > INT_MAX)
                max = INT_MAX;
        uint64_t moves = (uint64_t)max * DP_TIMER_LEVELS;
        if (moves < DP_TIMER_MOVES_MIN)
                moves = DP_TIMER_MOVES_MIN;
        /* Overdue timers are due at or before the wheel's time, so before
         * anything still in the wheel and before leftovers of the last call
         * (due at exactly the wheel's time). */
        dp_timer_splice_front(w, DP_TIMER_LIST_FIRE, DP_TIMER_LIST_DUE);
        /* Each pass fires one timer, re-places one, or takes one slot that
         * holds at least one timer: bounded by max + moves + 1 passes. */
        while (fired < max) {
                if (!dp_timer_list_empty(w, DP_TIMER_LIST_FIRE)) {
                        dp_timer_fire_one(w, fn, arg);
                        fired++;
                } else if (!dp_timer_list_empty(w, DP_TIMER_LIST_STAGE)) {
                        if (moves == 0)
                                break;
                        dp_timer_move_one(w);
                        moves--;
                } else if (!dp_timer_advance(w, now_tick)) {
                        break;
                }
        }
        return (int)fired;
}

uint64_t dp_timer_next_ns(const struct dp_timer_wheel *w)
{
        uint64_t start;
        uint32_t list;

        if (!dp_timer_list_empty(w, DP_TIMER_LIST_FIRE) ||
            !dp_timer_list_empty(w, DP_TIMER_LIST_DUE) ||
            !dp_timer_list_empty(w, DP_TIMER_LIST_STAGE))
                return dp_timer_tick_ns(w, w->hdr->now_tick);
        if (!dp_timer_next_slot(w, &start, &list))
                return UINT64_MAX;
        return dp_timer_tick_ns(w, start);
}

uint32_t dp_timer_armed_count(const struct dp_timer_wheel *w)
{
        return (uint32_t)atomic_load_explicit(&w->hdr->armed, memory_order_relaxed);
}

void dp_timer_stats(const struct dp_timer_wheel *w, struct dp_timer_stats *out)
{
        out->armed = atomic_load_explicit(&w->hdr->armed, memory_order_relaxed);
        out->fired = atomic_load_explicit(&w->hdr->fired, memory_order_relaxed);
        out->moved = atomic_load_explicit(&w->hdr->moved, memory_order_relaxed);
        out->steps = atomic_load_explicit(&w->hdr->steps, memory_order_relaxed);
}
