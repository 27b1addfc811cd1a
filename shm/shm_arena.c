/* shm_arena.c - creating, publishing and attaching the shared-memory arena. */
#include "shm/shm_arena.h"

#include <errno.h>
#include <fcntl.h>
#include <numa.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shm/shm_clock.h"
#include "shm/shm_log.h"

#define SHM_PAGE_BYTES 4096u

/* The default hugepage size from /proc/meminfo, or 0 when there is none. */
static uint64_t shm_hugepage_bytes(void)
{
        FILE *f = fopen("/proc/meminfo", "re");
        char line[128];
        unsigned long long kib = 0;

        if (f == NULL)
                return 0;
        while (fgets(line, sizeof(line), f) != NULL)
                if (sscanf(line, "Hugepagesize: %llu kB", &kib) == 1)
                        break;
        fclose(f);
        return (uint64_t)kib * 1024;
}

/* memfd + size + seals + mapping. Returns 0 or -errno; logs nothing. */
static int shm_arena_map_new(struct shm_arena *a, const char *name, uint64_t bytes,
                             unsigned int extra_flags)
{
        int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING | extra_flags);
        if (fd < 0)
                return -errno;
        if (ftruncate(fd, (off_t)bytes) != 0) {
                int rc = -errno;
                close(fd);
                return rc;
        }
        /* No process can resize the arena under the others (a shrink would
         * turn their next access into SIGBUS). */
        (void)fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
        void *base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (base == MAP_FAILED) {
                int rc = -errno;
                close(fd);
                return rc;
        }
        a->fd = fd;
        a->base = base;
        a->bytes = bytes;
        return 0;
}

/* Tries hugepages as the config asks; fills a or returns -errno. */
static int shm_arena_map_huge(struct shm_arena *a, const struct shm_arena_config *cfg,
                              const char *name)
{
        static bool fallback_logged; /* "say so once in the log" */
        uint64_t huge_bytes = shm_hugepage_bytes();
        int rc = -ENOENT;

        if (cfg->hugepages != SHM_HUGEPAGES_OFF && huge_bytes != 0) {
                rc = shm_arena_map_new(a, name, shm_align_up(cfg->bytes, huge_bytes),
                                       MFD_HUGETLB);
                if (rc == 0) {
                        a->hugepages = true;
                        return 0;
                }
        }
        if (cfg->hugepages == SHM_HUGEPAGES_ON) {
                shm_log(SHM_LOG_ERR,
                        "hugepages=on but %llu bytes of hugepages could not be mapped (%s); "
                        "reserve them with: echo N > /proc/sys/vm/nr_hugepages",
                        (unsigned long long)cfg->bytes, strerror(-rc));
                return -ENOMEM;
        }
        if (cfg->hugepages == SHM_HUGEPAGES_AUTO && !fallback_logged) {
                fallback_logged = true;
                shm_log(SHM_LOG_INFO,
                        "no hugepages available (%s): the arena uses plain memfd pages",
                        rc == -ENOENT ? "none configured" : strerror(-rc));
        }
        return shm_arena_map_new(a, name, shm_align_up(cfg->bytes, SHM_PAGE_BYTES), 0);
}

/* Binds the arena's pages to one NUMA node when the host has several. */
static void shm_arena_numa_bind(struct shm_arena *a, int node)
{
        if (numa_available() < 0 || numa_max_node() == 0)
                return;
        if (node < 0)
                node = numa_node_of_cpu(sched_getcpu());
        if (node < 0 || node > numa_max_node())
                return;
        numa_tonode_memory(a->base, a->bytes, node);
        shm_log(SHM_LOG_INFO, "arena bound to NUMA node %d", node);
}

int shm_arena_create(struct shm_arena *a, const struct shm_arena_config *cfg)
{
        memset(a, 0, sizeof(*a));
        a->fd = -1;
        if (cfg->bytes < SHM_ARENA_BYTES_MIN || cfg->bytes > SHM_ARENA_BYTES_MAX)
                return -EINVAL;

        int rc = shm_arena_map_huge(a, cfg, cfg->name != NULL ? cfg->name : "atomq-arena");
        if (rc != 0)
                return rc;
        shm_arena_numa_bind(a, cfg->numa_node);

        struct shm_arena_hdr *h = (struct shm_arena_hdr *)a->base;
        a->hdr = h;
        a->owner = true;
        h->layout_version = SHM_ARENA_LAYOUT_VERSION;
        h->hdr_bytes = sizeof(*h);
        h->arena_bytes = a->bytes;
        h->page_bytes = a->hugepages ? shm_hugepage_bytes() : SHM_PAGE_BYTES;
        h->created_realtime_ns = shm_clock_realtime_ns();
        h->creator_pid = (int32_t)getpid();
        h->flags = a->hugepages ? SHM_ARENA_F_HUGEPAGES : 0;
        h->regions_max = SHM_ARENA_REGIONS_MAX;
        h->used_bytes = shm_align_up(sizeof(*h), SHM_CACHE_LINE);
        return 0;
}

int shm_arena_region_add(struct shm_arena *a, uint32_t kind, const char *name,
                         uint64_t bytes, uint64_t *offset)
{
        struct shm_arena_hdr *h = a->hdr;

        if (bytes == 0 || kind == SHM_REGION_FREE ||
            (name != NULL && strlen(name) >= SHM_ARENA_NAME_MAX))
                return -EINVAL;
        if (!a->owner || a->published)
                return -EBUSY;
        if (h->region_count >= SHM_ARENA_REGIONS_MAX)
                return -ENOSPC;
        /* Large regions start on a page so they can be mapped on their own
         * (read-only views for agents come with the agents issue). */
        uint64_t align = bytes >= SHM_PAGE_BYTES ? SHM_PAGE_BYTES : SHM_CACHE_LINE;
        uint64_t start = shm_align_up(h->used_bytes, align);
        bytes = shm_align_up(bytes, SHM_CACHE_LINE);
        if (start > a->bytes || a->bytes - start < bytes)
                return -ENOSPC;

        struct shm_arena_region *r = &h->regions[h->region_count];
        r->kind = kind;
        r->offset = start;
        r->bytes = bytes;
        if (name != NULL)
                memcpy(r->name, name, strlen(name) + 1);
        h->region_count++;
        h->used_bytes = start + bytes;
        *offset = start;
        return 0;
}

int shm_arena_publish(struct shm_arena *a)
{
        if (!a->owner || a->published)
                return -EBUSY;
        a->published = true;
        /* Pairs with the acquire load of magic in shm_arena_attach: the
         * header and every formatted region happen before it. */
        atomic_store_explicit(&a->hdr->magic, SHM_ARENA_MAGIC, memory_order_release);
        return 0;
}

/* Checks the header fields an attacher must not trust. */
static int shm_arena_hdr_check(const struct shm_arena_hdr *h, uint64_t file_bytes)
{
        if (h->hdr_bytes != sizeof(*h) || h->regions_max != SHM_ARENA_REGIONS_MAX)
                return -EBADMSG;
        if (h->arena_bytes != file_bytes || h->region_count > SHM_ARENA_REGIONS_MAX)
                return -EBADMSG;
        if (h->used_bytes > file_bytes)
                return -EBADMSG;
        for (uint32_t i = 0; i < h->region_count; i++) {
                const struct shm_arena_region *r = &h->regions[i];
                if (r->offset < sizeof(*h) || r->offset % SHM_CACHE_LINE != 0)
                        return -EBADMSG;
                if (r->offset > file_bytes || file_bytes - r->offset < r->bytes)
                        return -EBADMSG;
                if (memchr(r->name, '\0', sizeof(r->name)) == NULL)
                        return -EBADMSG;
        }
        return 0;
}

int shm_arena_attach(struct shm_arena *a, int fd)
{
        struct stat st;

        memset(a, 0, sizeof(*a));
        a->fd = -1;
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
                return -EBADF;
        if ((uint64_t)st.st_size < sizeof(struct shm_arena_hdr))
                return -EINVAL;
        int own_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (own_fd < 0)
                return -errno;
        void *base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                          own_fd, 0);
        if (base == MAP_FAILED) {
                int rc = -errno;
                close(own_fd);
                return rc;
        }
        a->fd = own_fd;
        a->base = base;
        a->bytes = (uint64_t)st.st_size;
        a->hdr = base;

        int rc = 0;
        /* Pairs with the release store in shm_arena_publish. */
        if (atomic_load_explicit(&a->hdr->magic, memory_order_acquire) != SHM_ARENA_MAGIC)
                rc = -EPROTO;
        else if (a->hdr->layout_version != SHM_ARENA_LAYOUT_VERSION)
                rc = -EPROTONOSUPPORT;
        else
                rc = shm_arena_hdr_check(a->hdr, a->bytes);
        if (rc != 0) {
                shm_arena_close(a);
                return rc;
        }
        a->published = true;
        a->hugepages = (a->hdr->flags & SHM_ARENA_F_HUGEPAGES) != 0;
        return 0;
}

void *shm_arena_ptr(const struct shm_arena *a, uint64_t offset, uint64_t bytes)
{
        if (offset > a->bytes || a->bytes - offset < bytes)
                return NULL;
        return a->base + offset;
}

const struct shm_arena_region *shm_arena_region_find(const struct shm_arena *a,
                                                     uint32_t kind, const char *name)
{
        for (uint32_t i = 0; i < a->hdr->region_count && i < SHM_ARENA_REGIONS_MAX; i++) {
                const struct shm_arena_region *r = &a->hdr->regions[i];
                if (r->kind == kind && (name == NULL || strncmp(r->name, name,
                                                                 SHM_ARENA_NAME_MAX) == 0))
                        return r;
        }
        return NULL;
}

void shm_arena_close(struct shm_arena *a)
{
        /* base and fd are set together, so a zeroed view (fd 0) closes
         * nothing. */
        if (a->base != NULL) {
                munmap(a->base, a->bytes);
                close(a->fd);
        }
        memset(a, 0, sizeof(*a));
        a->fd = -1;
}
