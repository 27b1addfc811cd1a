/* shm_base.c - the out-of-line half of shm_base.h. */
#include "shm/shm_base.h"

#include <stdio.h>
#include <stdlib.h>

_Noreturn void shm_panic(const char *file, int line, const char *what)
{
        fprintf(stderr, "atomq: invariant violated at %s:%d: %s\n", file, line, what);
        fflush(stderr);
        abort();
}
