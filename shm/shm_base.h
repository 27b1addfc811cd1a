/* shm_base.h - the few definitions every atomq module shares: cache-line
 * size, assertion macros, branch hints and small integer helpers.
 *
 * DP_VERIFY(x) is always on; DP_ASSERT(x) is compiled out in release builds
 * (NDEBUG) but stays type-checked. Both are for our own invariants only:
 * network, agent and admin input gets an error reply and a counter, never an
 * assertion (../shared/STYLE.md, "Errors").
 */
#ifndef ATOMQ_SHM_BASE_H
#define ATOMQ_SHM_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Every x86-64 and most arm64 parts we target use 64-byte lines. Shared
 * words written by different threads sit on lines of their own. */
#define SHM_CACHE_LINE 64
#define SHM_ALIGNED_LINE _Alignas(SHM_CACHE_LINE)

#define shm_likely(x) __builtin_expect(!!(x), 1)
#define shm_unlikely(x) __builtin_expect(!!(x), 0)

_Noreturn void shm_panic(const char *file, int line, const char *what);

#define DP_VERIFY(x)                                                    \
        do {                                                            \
                if (shm_unlikely(!(x)))                                 \
                        shm_panic(__FILE__, __LINE__, #x);              \
        } while (0)

#ifdef NDEBUG
#define DP_ASSERT(x) ((void)sizeof(!(x)))
#else
#define DP_ASSERT(x) DP_VERIFY(x)
#endif

static inline bool shm_is_pow2_u64(uint64_t x)
{
        return x != 0 && (x & (x - 1)) == 0;
}

/* Rounds up to a multiple of align, which must be a power of two. */
static inline uint64_t shm_align_up(uint64_t x, uint64_t align)
{
        return (x + align - 1) & ~(align - 1);
}

/* A spin-wait hint: lets the sibling hyperthread run and saves power. */
static inline void shm_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ __volatile__("yield" ::: "memory");
#endif
}

/* Writes v in decimal at out (at most 20 bytes, no NUL) and returns how
 * many: for lines built per message, where snprintf costs more than the
 * rest of the line. */
static inline size_t shm_u64_dec(char *out, uint64_t v)
{
        char tmp[20];
        size_t n = 0;
        do {
                tmp[n++] = (char)('0' + v % 10);
                v /= 10;
        } while (v != 0);
        for (size_t i = 0; i < n; i++)
                out[i] = tmp[n - 1 - i];
        return n;
}

#endif /* ATOMQ_SHM_BASE_H */
