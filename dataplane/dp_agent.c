/* dp_agent.c - agent slots and files: creating them (atomqd), adopting
 * them (the dataplane), and the open/close/reap handshake (dp_agent.h).
 */
#include "dataplane/dp_agent.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataplane/dp_engine.h"
#include "shm/shm_vring.h"

#define DP_AGENT_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

struct dp_agent_slot *dp_agent_slot_at(const struct dp_engine *e, uint32_t slot)
{
        DP_VERIFY(slot < e->agents);
        return &e->agent_slots[slot];
}

void dp_agent_layout_of(const struct dp_engine *e, struct shm_agent_layout *l)
{
        int rc = shm_agent_layout(e->workers, DP_AGENT_CMD_RING_BYTES, DP_AGENT_CPL_RING_BYTES,
                                  e->hdr->agent_dlv_ring_bytes, l);
        /* dp_engine_layout accepted these sizes. */
        DP_VERIFY(rc == 0);
}

static int dp_agent_files_alloc(struct dp_engine *e)
{
        e->agent_files = calloc(e->agents, sizeof(*e->agent_files));
        if (e->agent_files == NULL)
                return -ENOMEM;
        for (uint32_t i = 0; i < e->agents; i++)
                e->agent_files[i] = (struct dp_agent_file){ .fd = -1, .efd = -1 };
        return 0;
}

static int dp_agent_map(struct dp_agent_file *f, uint64_t bytes)
{
        void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
        if (p == MAP_FAILED)
                return -errno;
        f->map = p;
        f->bytes = bytes;
        return 0;
}

static int dp_agent_file_create(struct dp_agent_file *f, uint64_t bytes)
{
        f->fd = memfd_create("atomq-agent", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (f->fd < 0)
                return -errno;
        /* Sealed at its size: neither the agent nor anyone else can shrink
         * it under the dataplane and turn a worker's access into SIGBUS. */
        if (ftruncate(f->fd, (off_t)bytes) != 0 || fcntl(f->fd, F_ADD_SEALS, DP_AGENT_SEALS) != 0)
                return -errno;
        f->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (f->efd < 0)
                return -errno;
        return dp_agent_map(f, bytes);
}

int dp_agent_files_create(struct dp_engine *e)
{
        struct shm_agent_layout l;
        dp_agent_layout_of(e, &l);
        int rc = dp_agent_files_alloc(e);
        for (uint32_t i = 0; rc == 0 && i < e->agents; i++)
                rc = dp_agent_file_create(&e->agent_files[i], l.file_bytes);
        return rc;
}

/* Is fd an eventfd? Its /proc link reads "anon_inode:[eventfd]". */
static bool dp_agent_is_eventfd(int fd)
{
        char path[64], link[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(path, link, sizeof(link) - 1);
        if (n < 0)
                return false;
        link[n] = 0;
        return strcmp(link, "anon_inode:[eventfd]") == 0;
}

static int dp_agent_file_adopt(struct dp_agent_file *f, int fd, int efd, uint64_t bytes)
{
        struct stat st;
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || !dp_agent_is_eventfd(efd))
                return -EBADF;
        int seals = fcntl(fd, F_GET_SEALS);
        if ((uint64_t)st.st_size != bytes || seals < 0 ||
            (seals & DP_AGENT_SEALS) != DP_AGENT_SEALS)
                return -EBADMSG;
        f->fd = fd;
        f->efd = efd;
        /* Close-on-exec from here on: nothing this process starts needs them. */
        (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
        (void)fcntl(efd, F_SETFD, FD_CLOEXEC);
        return dp_agent_map(f, bytes);
}

int dp_agent_files_adopt(struct dp_engine *e, int fd_base)
{
        struct shm_agent_layout l;
        if (fd_base < 0)
                return -EBADF;
        dp_agent_layout_of(e, &l);
        int rc = dp_agent_files_alloc(e);
        for (uint32_t i = 0; rc == 0 && i < e->agents; i++)
                rc = dp_agent_file_adopt(&e->agent_files[i], fd_base + 2 * (int)i,
                                         fd_base + 2 * (int)i + 1, l.file_bytes);
        return rc;
}

void dp_agent_files_close(struct dp_engine *e)
{
        for (uint32_t i = 0; e->agent_files != NULL && i < e->agents; i++) {
                struct dp_agent_file *f = &e->agent_files[i];
                if (f->map != NULL)
                        munmap(f->map, f->bytes);
                if (f->fd >= 0)
                        close(f->fd);
                if (f->efd >= 0)
                        close(f->efd);
        }
        free(e->agent_files);
        e->agent_files = NULL;
}

/* Writes a fresh header, doorbells and rings into slot's file. No worker
 * reads it now: the slot is FREE, and every worker acked its last close. */
static int dp_agent_format(struct dp_engine *e, uint32_t slot, uint32_t gen)
{
        struct shm_agent_layout l;
        struct dp_agent_file *f = &e->agent_files[slot];
        struct shm_vring r;
        dp_agent_layout_of(e, &l);
        struct shm_agent_hdr *h = (struct shm_agent_hdr *)f->map;
        memset(h, 0, l.rings_off);
        *h = (struct shm_agent_hdr){
                .magic = SHM_AGENT_MAGIC, .version = SHM_AGENT_VERSION, .workers = e->workers,
                .slot = slot, .gen = gen, .cmd_ring_bytes = DP_AGENT_CMD_RING_BYTES,
                .cpl_ring_bytes = DP_AGENT_CPL_RING_BYTES,
                .dlv_ring_bytes = e->hdr->agent_dlv_ring_bytes, .file_bytes = l.file_bytes,
        };
        for (uint32_t w = 0; w < e->workers; w++) {
                int rc = shm_vring_init(&r, f->map + shm_agent_cmd_off(&l, w), l.cmd_stride,
                                        DP_AGENT_CMD_RING_BYTES);
                if (rc == 0)
                        rc = shm_vring_init(&r, f->map + shm_agent_cpl_off(&l, w), l.cpl_stride,
                                            DP_AGENT_CPL_RING_BYTES);
                if (rc == 0)
                        rc = shm_vring_init(&r, f->map + shm_agent_dlv_off(&l, w), l.dlv_stride,
                                            e->hdr->agent_dlv_ring_bytes);
                if (rc != 0)
                        return rc;
        }
        /* A leftover count from the last tenant would make poll() wake. */
        uint64_t drain;
        while (read(f->efd, &drain, sizeof(drain)) == (ssize_t)sizeof(drain))
                ;
        return 0;
}

static void dp_agent_epoch_bump(struct dp_engine *e)
{
        /* Pairs with the acquire load of the epoch in the workers' sync:
         * a worker that sees the new epoch sees the slot's new state. */
        atomic_fetch_add_explicit(&e->hdr->agents_epoch, 1, memory_order_release);
        for (uint32_t w = 0; w < e->workers; w++)
                shm_wake_notify(e->worker_wake[w]);
}

int dp_agent_open(struct dp_engine *e, int32_t pid, uint32_t uid,
                  const struct dp_agent_quota *q, uint32_t *slot, uint32_t *gen)
{
        for (uint32_t i = 0; i < e->agents; i++) {
                struct dp_agent_slot *s = &e->agent_slots[i];
                if (atomic_load_explicit(&s->state, memory_order_acquire) != DP_AGENT_FREE)
                        continue;
                uint32_t g = s->gen + 1 > 0x3fffu ? 1 : s->gen + 1;
                int rc = dp_agent_format(e, i, g);
                if (rc != 0)
                        return rc;
                s->gen = g;
                s->pid = pid;
                s->uid = uid;
                s->max_subs = q->max_subs;
                s->max_entities = q->max_entities;
                atomic_store_explicit(&s->entities, 0, memory_order_relaxed);
                atomic_store_explicit(&s->acks, 0, memory_order_relaxed);
                atomic_store_explicit(&s->bad, 0, memory_order_relaxed);
                atomic_store_explicit(&s->subs, 0, memory_order_relaxed);
                atomic_store_explicit(&s->cmds, 0, memory_order_relaxed);
                atomic_store_explicit(&s->dlv_drops, 0, memory_order_relaxed);
                /* Pairs with the acquire load of state in the workers' sync:
                 * a worker that sees LIVE sees the formatted file. */
                atomic_store_explicit(&s->state, DP_AGENT_LIVE, memory_order_release);
                dp_agent_epoch_bump(e);
                *slot = i;
                *gen = g;
                return 0;
        }
        return -EUSERS;
}

void dp_agent_close(struct dp_engine *e, uint32_t slot)
{
        struct dp_agent_slot *s = dp_agent_slot_at(e, slot);
        if (atomic_load_explicit(&s->state, memory_order_acquire) != DP_AGENT_LIVE)
                return;
        atomic_store_explicit(&s->acks, 0, memory_order_relaxed);
        atomic_store_explicit(&s->state, DP_AGENT_CLOSING, memory_order_release);
        /* Tell the agent too, in case it still runs: its calls fail with
         * -ECONNRESET instead of waiting for a worker that stopped reading. */
        struct shm_agent_hdr *h = (struct shm_agent_hdr *)e->agent_files[slot].map;
        atomic_store_explicit(&h->revoked, 1, memory_order_release);
        shm_wake_notify(&h->wake);
        uint64_t one = 1;
        (void)!write(e->agent_files[slot].efd, &one, sizeof(one));
        dp_agent_epoch_bump(e);
}

bool dp_agent_reap(struct dp_engine *e, uint32_t slot)
{
        struct dp_agent_slot *s = dp_agent_slot_at(e, slot);
        uint32_t st = atomic_load_explicit(&s->state, memory_order_acquire);
        if (st != DP_AGENT_CLOSING)
                return st == DP_AGENT_FREE;
        uint64_t all = e->workers == 64 ? UINT64_MAX : (1ull << e->workers) - 1;
        /* Pairs with the release fetch_or of each worker's ack: its purge
         * and its last look at the file happened before. */
        if ((atomic_load_explicit(&s->acks, memory_order_acquire) & all) != all)
                return false;
        atomic_store_explicit(&s->state, DP_AGENT_FREE, memory_order_release);
        return true;
}

bool dp_agent_bad(const struct dp_engine *e, uint32_t slot)
{
        return atomic_load_explicit(&dp_agent_slot_at(e, slot)->bad, memory_order_relaxed) != 0;
}
