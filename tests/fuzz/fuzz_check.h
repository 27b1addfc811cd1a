/* fuzz_check.h - the fuzz targets' check. A broken invariant names the
 * target (FZ_NAME, defined before the include), the place and the
 * condition, and traps, so that libFuzzer keeps the input as a crash. */
#ifndef ATOMQ_FUZZ_CHECK_H
#define ATOMQ_FUZZ_CHECK_H

#include <stdio.h>

#define FZ_CHECK(cond)                                                                  \
        do {                                                                            \
                if (!(cond)) {                                                          \
                        fprintf(stderr, "%s: %s:%d: %s\n", FZ_NAME, __FILE__, __LINE__, \
                                #cond);                                                 \
                        __builtin_trap();                                               \
                }                                                                       \
        } while (0)

#endif /* ATOMQ_FUZZ_CHECK_H */
