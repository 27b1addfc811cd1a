/* test_shm_arena.c - arena creation with and without hugepages, regions,
 * publication, and attach refusing anything that is not a sound arena. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm/shm_arena.h"
#include "shm/shm_log.h"

#define MiB (1024ull * 1024)

static int log_lines;
static char log_last[1024];

static void log_capture(enum shm_log_level level, const char *line, void *arg)
{
        (void)level;
        (void)arg;
        log_lines++;
        snprintf(log_last, sizeof(log_last), "%s", line);
}

static unsigned long hugepages_free(void)
{
        FILE *f = fopen("/proc/meminfo", "r");
        char line[128];
        unsigned long n = 0;
        while (f != NULL && fgets(line, sizeof(line), f) != NULL)
                if (sscanf(line, "HugePages_Free: %lu", &n) == 1)
                        break;
        if (f != NULL)
                fclose(f);
        return n;
}

static void arena_new(struct shm_arena *a, uint64_t bytes, enum shm_hugepages hp)
{
        struct shm_arena_config cfg = { .bytes = bytes, .hugepages = hp, .numa_node = -1 };
        cr_assert_eq(shm_arena_create(a, &cfg), 0);
}

Test(shm_arena, creates_plain_memfd_with_hugepages_off)
{
        struct shm_arena a;
        arena_new(&a, 4 * MiB, SHM_HUGEPAGES_OFF);
        cr_assert_not(a.hugepages);
        cr_assert_eq(a.bytes, 4 * MiB);
        cr_assert_eq(a.hdr->page_bytes, 4096);
        cr_assert_eq(a.hdr->creator_pid, getpid());
        cr_assert_gt(a.hdr->created_realtime_ns, 0);
        shm_arena_close(&a);
}

Test(shm_arena, auto_without_hugepages_falls_back_and_logs_once)
{
        if (hugepages_free() > 0)
                cr_skip_test("the host has free hugepages, so auto does not fall back");
        shm_log_set_sink(log_capture, NULL);
        struct shm_arena a, b;
        arena_new(&a, 1 * MiB, SHM_HUGEPAGES_AUTO);
        arena_new(&b, 1 * MiB, SHM_HUGEPAGES_AUTO);
        cr_assert_not(a.hugepages);
        cr_assert_eq(log_lines, 1, "the fallback is logged exactly once");
        cr_assert(strstr(log_last, "plain memfd") != NULL, "log says why: %s", log_last);
        shm_arena_close(&a);
        shm_arena_close(&b);
}

Test(shm_arena, hugepages_on_without_reserved_pages_is_a_clear_error)
{
        if (hugepages_free() > 0)
                cr_skip_test("the host has free hugepages reserved");
        shm_log_set_sink(log_capture, NULL);
        struct shm_arena a;
        struct shm_arena_config cfg = { .bytes = 4 * MiB, .hugepages = SHM_HUGEPAGES_ON,
                                        .numa_node = -1 };
        cr_assert_eq(shm_arena_create(&a, &cfg), -ENOMEM);
        cr_assert(strstr(log_last, "nr_hugepages") != NULL, "tells how to fix: %s", log_last);
        shm_arena_close(&a);
}

Test(shm_arena, hugepages_on_maps_hugepages_when_reserved)
{
        if (hugepages_free() < 2)
                cr_skip_test("needs 2 free hugepages (echo 64 > /proc/sys/vm/nr_hugepages)");
        struct shm_arena a;
        arena_new(&a, 1 * MiB, SHM_HUGEPAGES_ON);
        cr_assert(a.hugepages);
        cr_assert(a.hdr->flags & SHM_ARENA_F_HUGEPAGES);
        cr_assert_geq(a.bytes, a.hdr->page_bytes, "rounded up to a whole hugepage");
        shm_arena_close(&a);
}

Test(shm_arena, refuses_sizes_out_of_bounds)
{
        struct shm_arena a;
        struct shm_arena_config cfg = { .bytes = 100, .hugepages = SHM_HUGEPAGES_OFF };
        cr_assert_eq(shm_arena_create(&a, &cfg), -EINVAL);
        cfg.bytes = SHM_ARENA_BYTES_MAX + 1;
        cr_assert_eq(shm_arena_create(&a, &cfg), -EINVAL);
}

Test(shm_arena, regions_are_aligned_zeroed_and_bounded)
{
        struct shm_arena a;
        uint64_t off1, off2, off3;
        arena_new(&a, 1 * MiB, SHM_HUGEPAGES_OFF);
        cr_assert_eq(shm_arena_region_add(&a, SHM_REGION_RING, "small", 100, &off1), 0);
        cr_assert_eq(shm_arena_region_add(&a, SHM_REGION_SLAB, "big", 64 * 1024, &off2), 0);
        cr_assert_eq(off1 % 64, 0);
        cr_assert_eq(off2 % 4096, 0, "large regions start on a page");
        cr_assert_geq(off2, off1 + 128);
        const uint8_t *p = shm_arena_ptr(&a, off2, 64 * 1024);
        for (size_t i = 0; i < 64 * 1024; i++)
                cr_assert_eq(p[i], 0);
        cr_assert_eq(shm_arena_region_add(&a, SHM_REGION_RING, "huge", 2 * MiB, &off3), -ENOSPC);
        cr_assert_eq(shm_arena_region_add(&a, SHM_REGION_FREE, "x", 64, &off3), -EINVAL);
        cr_assert_eq(shm_arena_region_add(&a, SHM_REGION_RING, NULL, 0, &off3), -EINVAL);
        char long_name[SHM_ARENA_NAME_MAX + 1];
        memset(long_name, 'n', sizeof(long_name) - 1);
        long_name[SHM_ARENA_NAME_MAX] = '\0';
        cr_assert_eq(shm_arena_region_add(&a, SHM_REGION_RING, long_name, 64, &off3), -EINVAL);
        cr_assert_null(shm_arena_ptr(&a, a.bytes - 8, 16));
        cr_assert_null(shm_arena_ptr(&a, UINT64_MAX, 1));
        cr_assert_eq(shm_arena_publish(&a), 0);
        cr_assert_eq(shm_arena_region_add(&a, SHM_REGION_RING, "late", 64, &off3), -EBUSY);
        shm_arena_close(&a);
}

Test(shm_arena, region_table_full_is_enospc)
{
        struct shm_arena a;
        uint64_t off;
        arena_new(&a, 1 * MiB, SHM_HUGEPAGES_OFF);
        for (int i = 0; i < SHM_ARENA_REGIONS_MAX; i++)
                cr_assert_eq(shm_arena_region_add(&a, SHM_REGION_USER, NULL, 64, &off), 0);
        cr_assert_eq(shm_arena_region_add(&a, SHM_REGION_USER, NULL, 64, &off), -ENOSPC);
        shm_arena_close(&a);
}

Test(shm_arena, another_process_attaches_by_fd_and_sees_the_regions)
{
        struct shm_arena a;
        uint64_t off;
        arena_new(&a, 1 * MiB, SHM_HUGEPAGES_OFF);
        cr_assert_eq(shm_arena_region_add(&a, SHM_REGION_USER, "greeting", 64, &off), 0);
        strcpy(shm_arena_ptr(&a, off, 64), "written by the creator");
        cr_assert_eq(shm_arena_publish(&a), 0);

        pid_t pid = fork();
        if (pid == 0) {
                struct shm_arena b;
                if (shm_arena_attach(&b, a.fd) != 0)
                        _exit(1);
                const struct shm_arena_region *r = shm_arena_region_find(&b, SHM_REGION_USER,
                                                                         "greeting");
                if (r == NULL || r->offset != off)
                        _exit(2);
                char *text = shm_arena_ptr(&b, r->offset, r->bytes);
                if (strcmp(text, "written by the creator") != 0)
                        _exit(3);
                strcpy(text, "answered by the attacher");
                shm_arena_close(&b);
                _exit(0);
        }
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status));
        cr_assert_eq(WEXITSTATUS(status), 0, "child failed at step %d", WEXITSTATUS(status));
        cr_assert_str_eq(shm_arena_ptr(&a, off, 64), "answered by the attacher");
        cr_assert_null(shm_arena_region_find(&a, SHM_REGION_USER, "nope"));
        shm_arena_close(&a);
}

Test(shm_arena, attach_refuses_an_unpublished_arena)
{
        struct shm_arena a, b;
        arena_new(&a, 1 * MiB, SHM_HUGEPAGES_OFF);
        cr_assert_eq(shm_arena_attach(&b, a.fd), -EPROTO);
        shm_arena_close(&a);
}

/* Publishes an arena with one region, lets `mutate` damage its header, and
 * returns what a fresh attach says. */
static int attach_after(void (*mutate)(struct shm_arena_hdr *h))
{
        struct shm_arena a, b;
        uint64_t off;
        arena_new(&a, 1 * MiB, SHM_HUGEPAGES_OFF);
        cr_assert_eq(shm_arena_region_add(&a, SHM_REGION_USER, "r", 4096, &off), 0);
        cr_assert_eq(shm_arena_publish(&a), 0);
        mutate(a.hdr);
        int rc = shm_arena_attach(&b, a.fd);
        if (rc == 0)
                shm_arena_close(&b);
        shm_arena_close(&a);
        return rc;
}

static void bad_magic(struct shm_arena_hdr *h) { h->magic ^= 1; }
static void bad_version(struct shm_arena_hdr *h) { h->layout_version = 99; }
static void bad_size(struct shm_arena_hdr *h) { h->arena_bytes *= 2; }
static void bad_count(struct shm_arena_hdr *h) { h->region_count = SHM_ARENA_REGIONS_MAX + 1; }
static void region_past_end(struct shm_arena_hdr *h) { h->regions[0].bytes = 2 * MiB; }
static void region_wraps(struct shm_arena_hdr *h) { h->regions[0].offset = UINT64_MAX - 63; }
static void region_in_header(struct shm_arena_hdr *h) { h->regions[0].offset = 64; }
static void name_unterminated(struct shm_arena_hdr *h)
{
        memset(h->regions[0].name, 'x', SHM_ARENA_NAME_MAX);
}
static void untouched(struct shm_arena_hdr *h) { (void)h; }

Test(shm_arena, attach_refuses_a_bad_header)
{
        cr_assert_eq(attach_after(untouched), 0);
        cr_assert_eq(attach_after(bad_magic), -EPROTO);
        cr_assert_eq(attach_after(bad_version), -EPROTONOSUPPORT);
        cr_assert_eq(attach_after(bad_size), -EBADMSG);
        cr_assert_eq(attach_after(bad_count), -EBADMSG);
        cr_assert_eq(attach_after(region_past_end), -EBADMSG);
        cr_assert_eq(attach_after(region_wraps), -EBADMSG);
        cr_assert_eq(attach_after(region_in_header), -EBADMSG);
        cr_assert_eq(attach_after(name_unterminated), -EBADMSG);
}

Test(shm_arena, attach_refuses_files_that_are_not_arenas)
{
        struct shm_arena b;
        int devnull = open("/dev/null", O_RDONLY);
        cr_assert_eq(shm_arena_attach(&b, devnull), -EBADF);
        close(devnull);
        int small = memfd_create("small", 0);
        cr_assert_eq(ftruncate(small, 128), 0);
        cr_assert_eq(shm_arena_attach(&b, small), -EINVAL);
        cr_assert_eq(ftruncate(small, 1 * MiB), 0);
        cr_assert_eq(shm_arena_attach(&b, small), -EPROTO, "all zeroes: no magic");
        close(small);
        cr_assert_eq(shm_arena_attach(&b, -1), -EBADF);
}

Test(shm_arena, the_arena_cannot_be_resized_by_an_attacher)
{
        struct shm_arena a;
        arena_new(&a, 1 * MiB, SHM_HUGEPAGES_OFF);
        cr_assert_neq(ftruncate(a.fd, 4096), 0, "shrinking is sealed");
        cr_assert_eq(errno, EPERM);
        shm_arena_close(&a);
}

Test(shm_arena, close_is_safe_on_a_zeroed_view)
{
        struct shm_arena a;
        int fds[2];
        cr_assert_eq(pipe(fds), 0);
        cr_assert_eq(dup2(fds[0], 0), 0, "fd 0 is open and ours");
        memset(&a, 0, sizeof(a));
        shm_arena_close(&a);
        cr_assert_geq(fcntl(0, F_GETFD), 0, "a zeroed view must not close fd 0");
}
