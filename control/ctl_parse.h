/* ctl_parse.h - parsing of operator input: sizes, durations, enums.
 * Every parser refuses trailing junk, overflow and negative values. */
#ifndef ATOMQ_CTL_PARSE_H
#define ATOMQ_CTL_PARSE_H

#include <stdint.h>

#include "shm/shm_arena.h"

/* "4096", "64K", "256M", "1G", "1T" (binary multiples) into *bytes.
 * -EINVAL: not a size; -ERANGE: over 2^63. */
int ctl_parse_bytes(const char *s, uint64_t *bytes);

/* A decimal integer within [min, max]. -EINVAL / -ERANGE. */
int ctl_parse_int(const char *s, long long min, long long max, long long *out);

/* "auto", "on", "off". -EINVAL otherwise. */
int ctl_parse_hugepages(const char *s, enum shm_hugepages *out);

#endif /* ATOMQ_CTL_PARSE_H */
