/* atomq_channel.c - direct channels of include/atomq/atomq.h: two colocated
 * agents, one memfd, two shm_vring rings, no worker in between.
 *
 * Layout of the memfd (every part cache-line aligned):
 *
 *      0                       struct atomq_channel_hdr (3 lines)
 *      ring_off[0]             shm_vring: end 0 sends, end 1 receives
 *      ring_off[1]             shm_vring: end 1 sends, end 0 receives
 *      map_bytes               (rounded up to a page)
 *
 * The header is written once by the creator before the descriptor leaves the
 * process; afterwards each end writes only its own state word. The attacher
 * trusts nothing: it checks the seals (so the file cannot shrink under our
 * mapping and SIGBUS us), the header against the file size, and both rings
 * with shm_vring_attach, whose views mask every offset with our own copy of
 * the geometry.
 *
 *      struct atomq_channel a, b;
 *      atomq_channel_create(&a, 0);
 *      atomq_channel_attach(&b, atomq_channel_fd(&a));  // in the peer
 */
#include "atomq/atomq.h"

#include <errno.h>
#include <fcntl.h>
#include <stdalign.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shm/atomq_channel_pvt.h"
#include "shm/shm_base.h"
#include "shm/shm_vring.h"

#define ATOMQ_CHANNEL_MAGIC 0x48435141u /* "AQCH" little-endian */
#define ATOMQ_CHANNEL_VERSION 1
#define ATOMQ_CHANNEL_PAGE 4096u
/* Channel messages carry no type of their own yet; 0 on the wire. */
#define ATOMQ_CHANNEL_REC_TYPE 0u
/* End state bits, each word written only by its own end. */
#define ATOMQ_CHANNEL_ATTACHED 1u
#define ATOMQ_CHANNEL_CLOSED 2u
/* The most send_wait sleeps between looks at a full ring: short enough to
 * keep a slow receiver's latency in check, long enough not to spin. */
#define ATOMQ_CHANNEL_SEND_PAUSE_MAX_NS 50000
#define ATOMQ_CHANNEL_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

struct atomq_channel_end {
        SHM_ALIGNED_LINE _Atomic uint32_t state; /* ATOMQ_CHANNEL_* bits */
};

struct atomq_channel_hdr {
        uint32_t magic;
        uint16_t version;
        uint16_t hdr_bytes;
        uint32_t ring_bytes;   /* data bytes of each ring */
        uint32_t reserved;
        uint64_t map_bytes;    /* the file's size */
        uint64_t ring_off[2];  /* [e]: the ring end e sends on */
        struct atomq_channel_end end[2];
};
_Static_assert(sizeof(struct atomq_channel_hdr) == 3 * SHM_CACHE_LINE, "channel header");
_Static_assert(offsetof(struct atomq_channel_hdr, ring_bytes) == 8, "ring_bytes offset");
_Static_assert(offsetof(struct atomq_channel_hdr, map_bytes) == 16, "map_bytes offset");
_Static_assert(offsetof(struct atomq_channel_hdr, ring_off) == 24, "ring_off offset");
_Static_assert(offsetof(struct atomq_channel_hdr, end) == SHM_CACHE_LINE, "end lines");

/* The public struct keeps the ring views as opaque words so the installed
 * header needs no shm/ header. They are only ever accessed as struct
 * shm_vring, through the two accessors below. */
_Static_assert(sizeof(struct shm_vring) <= ATOMQ_CHANNEL_VIEW_WORDS * sizeof(uint64_t),
               "ring view fits struct atomq_channel");
_Static_assert(alignof(struct shm_vring) <= alignof(uint64_t), "ring view alignment");
_Static_assert(ATOMQ_CHANNEL_RING_BYTES_MIN == SHM_VRING_CAPACITY_MIN, "min ring");
_Static_assert(ATOMQ_CHANNEL_RING_BYTES_MAX == SHM_VRING_CAPACITY_MAX, "max ring");

static inline struct shm_vring *atomq_channel_tx(struct atomq_channel *ch)
{
        return (struct shm_vring *)(void *)ch->tx_view;
}

static inline struct shm_vring *atomq_channel_rx(struct atomq_channel *ch)
{
        return (struct shm_vring *)(void *)ch->rx_view;
}

static inline struct atomq_channel_hdr *atomq_channel_hdr(const struct atomq_channel *ch)
{
        return ch->map;
}

static int atomq_channel_ring_check(uint32_t ring_bytes)
{
        return shm_vring_bytes(ring_bytes) == 0 ? -EINVAL : 0;
}

size_t atomq_channel_map_bytes(uint32_t ring_bytes)
{
        if (ring_bytes == 0)
                ring_bytes = ATOMQ_CHANNEL_RING_BYTES;
        size_t ring = shm_vring_bytes(ring_bytes);
        if (ring == 0)
                return 0;
        return (size_t)shm_align_up(sizeof(struct atomq_channel_hdr) + 2 * ring,
                                    ATOMQ_CHANNEL_PAGE);
}

static void atomq_channel_reset(struct atomq_channel *ch)
{
        memset(ch, 0, sizeof(*ch));
        ch->fd = -1;
}

/* Formats the header and both rings; end 0's views are set up here. */
static int atomq_channel_format(struct atomq_channel *ch, uint32_t ring_bytes)
{
        struct atomq_channel_hdr *h = ch->map;
        size_t ring = shm_vring_bytes(ring_bytes);
        h->version = ATOMQ_CHANNEL_VERSION;
        h->hdr_bytes = sizeof(*h);
        h->ring_bytes = ring_bytes;
        h->map_bytes = ch->map_bytes;
        h->ring_off[0] = sizeof(*h);
        h->ring_off[1] = sizeof(*h) + ring;
        atomic_store_explicit(&h->end[0].state, ATOMQ_CHANNEL_ATTACHED, memory_order_relaxed);
        atomic_store_explicit(&h->end[1].state, 0, memory_order_relaxed);
        uint8_t *base = ch->map;
        int rc = shm_vring_init(atomq_channel_tx(ch), base + h->ring_off[0], ring, ring_bytes);
        if (rc == 0)
                rc = shm_vring_init(atomq_channel_rx(ch), base + h->ring_off[1], ring,
                                    ring_bytes);
        /* The fresh memfd is zero, so the magic is all that is left; the
         * descriptor has not left this process yet, so no ordering needed
         * beyond what handing it over (a syscall) gives. */
        h->magic = ATOMQ_CHANNEL_MAGIC;
        return rc;
}

int atomq_channel_create(struct atomq_channel *ch, uint32_t ring_bytes)
{
        return atomq_channel_make(ch, ring_bytes, true);
}

int atomq_channel_make(struct atomq_channel *ch, uint32_t ring_bytes, bool claim)
{
        atomq_channel_reset(ch);
        if (ring_bytes == 0)
                ring_bytes = ATOMQ_CHANNEL_RING_BYTES;
        if (atomq_channel_ring_check(ring_bytes) != 0)
                return -EINVAL;
        size_t map_bytes = atomq_channel_map_bytes(ring_bytes);

        int fd = memfd_create("atomq-channel", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                return -errno;
        int rc = 0;
        if (ftruncate(fd, (off_t)map_bytes) != 0 ||
            fcntl(fd, F_ADD_SEALS, ATOMQ_CHANNEL_SEALS) != 0)
                rc = -errno;
        void *map = MAP_FAILED;
        if (rc == 0) {
                map = mmap(NULL, map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                if (map == MAP_FAILED)
                        rc = -errno;
        }
        if (rc != 0) {
                close(fd);
                return rc;
        }
        ch->map = map;
        ch->map_bytes = map_bytes;
        ch->fd = fd;
        ch->end = 0;
        rc = atomq_channel_format(ch, ring_bytes);
        DP_VERIFY(rc == 0); /* geometry checked above, mmap is page-aligned */
        if (!claim)
                atomic_store_explicit(&atomq_channel_hdr(ch)->end[0].state, 0,
                                      memory_order_relaxed);
        return 0;
}

void atomq_channel_end_kill(struct atomq_channel *ch, unsigned end)
{
        struct atomq_channel_hdr *h = atomq_channel_hdr(ch);
        /* As atomq_channel_close for that end: the survivor's next call
         * sees -EPIPE, a sleeping receiver is woken on both rings. */
        atomic_fetch_or_explicit(&h->end[end & 1].state, ATOMQ_CHANNEL_CLOSED,
                                 memory_order_release);
        shm_vring_notify(atomq_channel_tx(ch));
        shm_vring_notify(atomq_channel_rx(ch));
}

bool atomq_channel_end_closed(const struct atomq_channel *ch, unsigned end)
{
        const struct atomq_channel_hdr *h = atomq_channel_hdr(ch);
        return (atomic_load_explicit(&h->end[end & 1].state, memory_order_acquire) &
                ATOMQ_CHANNEL_CLOSED) != 0;
}

bool atomq_channel_ends_closed(const struct atomq_channel *ch)
{
        return atomq_channel_end_closed(ch, 0) && atomq_channel_end_closed(ch, 1);
}

uint32_t atomq_channel_ring_bytes(const struct atomq_channel *ch)
{
        return atomq_channel_hdr(ch)->ring_bytes;
}

void atomq_channel_unmap(struct atomq_channel *ch)
{
        if (ch->map != NULL)
                munmap(ch->map, ch->map_bytes);
        if (ch->fd >= 0)
                close(ch->fd);
        atomq_channel_reset(ch);
}

int atomq_channel_fd(const struct atomq_channel *ch)
{
        if (ch->map == NULL || ch->end != 0 || ch->fd < 0)
                return -EBADF;
        return ch->fd;
}

/* The file behind fd: a sealed memfd of a plausible size, or why not. */
static int atomq_channel_file_check(int fd, size_t *size)
{
        struct stat st;
        if (fstat(fd, &st) != 0)
                return errno == EBADF ? -EBADF : -errno;
        if (!S_ISREG(st.st_mode))
                return -ENODEV;
        int seals = fcntl(fd, F_GET_SEALS);
        if (seals < 0)
                return -ENODEV; /* EINVAL: a file without sealing support */
        if ((seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW))
                return -EPERM;
        if (st.st_size < (off_t)sizeof(struct atomq_channel_hdr) ||
            (uint64_t)st.st_size > atomq_channel_map_bytes(ATOMQ_CHANNEL_RING_BYTES_MAX))
                return -EPROTO;
        *size = (size_t)st.st_size;
        return 0;
}

/* Checks the header the creator wrote against the file's real size. Every
 * field is read once into a local; the rings are attached from those. */
static int atomq_channel_hdr_check(const struct atomq_channel_hdr *h, size_t size,
                                   uint32_t *ring_bytes, uint64_t off[2])
{
        uint32_t rb = h->ring_bytes;
        if (h->magic != ATOMQ_CHANNEL_MAGIC || h->version != ATOMQ_CHANNEL_VERSION ||
            h->hdr_bytes != sizeof(*h) || atomq_channel_ring_check(rb) != 0 ||
            h->map_bytes != size || atomq_channel_map_bytes(rb) != size)
                return -EPROTO;
        size_t ring = shm_vring_bytes(rb);
        off[0] = h->ring_off[0];
        off[1] = h->ring_off[1];
        if (off[0] != sizeof(*h) || off[1] != sizeof(*h) + ring)
                return -EPROTO;
        *ring_bytes = rb;
        return 0;
}

/* Attaches both ring views of end ch->end; a ring of another geometry is
 * -EPROTO. */
static int atomq_channel_rings_attach(struct atomq_channel *ch, uint32_t ring_bytes,
                                      const uint64_t off[2])
{
        uint8_t *base = ch->map;
        size_t ring = shm_vring_bytes(ring_bytes);
        /* End e sends on ring e and receives on the other. */
        struct shm_vring *tx = atomq_channel_tx(ch), *rx = atomq_channel_rx(ch);
        if (shm_vring_attach(tx, base + off[ch->end], ring) != 0 ||
            shm_vring_attach(rx, base + off[1 - ch->end], ring) != 0 ||
            tx->capacity != ring_bytes || rx->capacity != ring_bytes)
                return -EPROTO;
        return 0;
}

int atomq_channel_attach(struct atomq_channel *ch, int fd)
{
        return atomq_channel_attach_end(ch, fd, 1);
}

int atomq_channel_attach_end(struct atomq_channel *ch, int fd, unsigned end)
{
        atomq_channel_reset(ch);
        if (end > 1)
                return -EINVAL;
        size_t size = 0;
        int rc = atomq_channel_file_check(fd, &size);
        if (rc != 0)
                return rc;
        void *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED)
                return -errno;
        ch->map = map;
        ch->map_bytes = size;
        ch->end = end;
        uint32_t ring_bytes = 0;
        uint64_t off[2];
        rc = atomq_channel_hdr_check(map, size, &ring_bytes, off);
        if (rc == 0)
                rc = atomq_channel_rings_attach(ch, ring_bytes, off);
        if (rc == 0) {
                /* One attacher per end: claim it. Release pairs with the
                 * acquire loads of the state in the peer's calls. */
                uint32_t expect = 0;
                if (!atomic_compare_exchange_strong_explicit(
                            &atomq_channel_hdr(ch)->end[end].state, &expect,
                            ATOMQ_CHANNEL_ATTACHED, memory_order_acq_rel,
                            memory_order_relaxed))
                        rc = -EBUSY;
        }
        if (rc != 0) {
                munmap(map, size);
                atomq_channel_reset(ch);
        }
        return rc;
}

/* Whether the peer has closed. Acquire pairs with the release store in
 * atomq_channel_close: every message the peer committed before closing is
 * visible once we see the flag. */
static inline bool atomq_channel_peer_closed(const struct atomq_channel *ch)
{
        const struct atomq_channel_hdr *h = atomq_channel_hdr(ch);
        return (atomic_load_explicit(&h->end[1 - ch->end].state, memory_order_acquire) &
                ATOMQ_CHANNEL_CLOSED) != 0;
}

static inline int atomq_channel_reserve_err(int err)
{
        return err == -ENOBUFS ? -EAGAIN : err;
}

int atomq_channel_reserve(struct atomq_channel *ch, uint32_t len, void **buf)
{
        if (shm_unlikely(ch->map == NULL))
                return -EBADF;
        if (shm_unlikely(atomq_channel_peer_closed(ch)))
                return -EPIPE;
        struct shm_vring *tx = atomq_channel_tx(ch);
        void *p = shm_vring_reserve(tx, len);
        if (shm_unlikely(p == NULL))
                return atomq_channel_reserve_err(tx->reserve_err);
        *buf = p;
        return 0;
}

int atomq_channel_commit(struct atomq_channel *ch)
{
        if (shm_unlikely(ch->map == NULL))
                return -EBADF;
        struct shm_vring *tx = atomq_channel_tx(ch);
        if (shm_unlikely(!tx->reserved))
                return -ENOENT;
        shm_vring_commit(tx, ATOMQ_CHANNEL_REC_TYPE);
        return 0;
}

void atomq_channel_notify(struct atomq_channel *ch)
{
        if (ch->map != NULL)
                shm_vring_notify(atomq_channel_tx(ch));
}

int atomq_channel_send(struct atomq_channel *ch, const void *buf, uint32_t len)
{
        void *p;
        int rc = atomq_channel_reserve(ch, len, &p);
        if (shm_unlikely(rc != 0))
                return rc;
        memcpy(p, buf, len);
        struct shm_vring *tx = atomq_channel_tx(ch);
        shm_vring_commit(tx, ATOMQ_CHANNEL_REC_TYPE);
        shm_vring_notify(tx);
        return 0;
}

static uint64_t atomq_channel_now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int atomq_channel_send_wait(struct atomq_channel *ch, const void *buf, uint32_t len,
                            int64_t timeout_ns)
{
        int rc = atomq_channel_send(ch, buf, len);
        if (rc != -EAGAIN || timeout_ns == 0)
                return rc == -EAGAIN ? -ETIMEDOUT : rc;
        uint64_t deadline_ns = timeout_ns < 0 ? UINT64_MAX
                                              : atomq_channel_now_ns() + (uint64_t)timeout_ns;
        long pause_ns = 1000;
        for (;;) {
                uint64_t now_ns = atomq_channel_now_ns();
                if (now_ns >= deadline_ns)
                        return -ETIMEDOUT;
                long sleep_ns = pause_ns;
                if ((uint64_t)sleep_ns > deadline_ns - now_ns)
                        sleep_ns = (long)(deadline_ns - now_ns);
                struct timespec ts = { .tv_sec = 0, .tv_nsec = sleep_ns };
                nanosleep(&ts, NULL); /* a signal just means an earlier look */
                if (pause_ns < ATOMQ_CHANNEL_SEND_PAUSE_MAX_NS)
                        pause_ns *= 2;
                rc = atomq_channel_send(ch, buf, len);
                if (rc != -EAGAIN)
                        return rc;
        }
}

/* recv without the closed check on the fast path: the flag is read only
 * when the ring is empty. */
static int atomq_channel_try_recv(struct atomq_channel *ch, struct atomq_msg *m)
{
        struct shm_vring *rx = atomq_channel_rx(ch);
        struct shm_vring_rec rec;
        int rc = shm_vring_peek(rx, &rec);
        if (shm_unlikely(rc == 0)) {
                if (shm_likely(!atomq_channel_peer_closed(ch)))
                        return 0;
                /* Closed: what it committed before is visible now (acquire
                 * above), so one more look decides between data and EOF. */
                rc = shm_vring_peek(rx, &rec);
                if (rc == 0)
                        return -EPIPE;
        }
        if (shm_unlikely(rc < 0))
                return rc;
        m->data = rec.data;
        m->len = rec.len;
        m->reserved = 0;
        return 1;
}

int atomq_channel_recv(struct atomq_channel *ch, struct atomq_msg *m)
{
        if (shm_unlikely(ch->map == NULL))
                return -EBADF;
        return atomq_channel_try_recv(ch, m);
}

struct atomq_channel_wait {
        struct atomq_channel *ch;
        struct atomq_msg *m;
};

static int atomq_channel_try_fn(void *arg)
{
        struct atomq_channel_wait *w = arg;
        return atomq_channel_try_recv(w->ch, w->m);
}

int atomq_channel_recv_wait(struct atomq_channel *ch, struct atomq_msg *m,
                            int64_t timeout_ns)
{
        if (ch->map == NULL)
                return -EBADF;
        struct atomq_channel_wait w = { ch, m };
        /* The peer's send and close both notify this ring's wake word. */
        return shm_wake_until(&atomq_channel_rx(ch)->hdr->wake, timeout_ns,
                              atomq_channel_try_fn, &w);
}

int atomq_channel_release(struct atomq_channel *ch)
{
        if (shm_unlikely(ch->map == NULL))
                return -EBADF;
        struct shm_vring *rx = atomq_channel_rx(ch);
        if (shm_unlikely(!rx->peeked))
                return -ENOENT;
        shm_vring_release(rx);
        return 0;
}

void atomq_channel_close(struct atomq_channel *ch)
{
        if (ch->map == NULL)
                return;
        struct atomq_channel_hdr *h = atomq_channel_hdr(ch);
        /* Release pairs with the acquire in atomq_channel_peer_closed: our
         * committed messages are visible to a peer that sees the flag. */
        atomic_fetch_or_explicit(&h->end[ch->end].state, ATOMQ_CHANNEL_CLOSED,
                                 memory_order_release);
        /* A peer asleep in recv_wait re-checks and sees -EPIPE. */
        shm_vring_notify(atomq_channel_tx(ch));
        munmap(ch->map, ch->map_bytes);
        if (ch->fd >= 0)
                close(ch->fd);
        atomq_channel_reset(ch);
}
