/* ctl_parse.h - parsing of operator input: sizes, durations, enums.
 * Every parser refuses trailing junk, overflow and negative values. */
#ifndef ATOMQ_CTL_PARSE_H
#define ATOMQ_CTL_PARSE_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "shm/shm_arena.h"

/* "4096", "64K", "256M", "1G", "1T" (binary multiples) into *bytes.
 * -EINVAL: not a size; -ERANGE: 2^63 or more. */
int ctl_parse_bytes(const char *s, uint64_t *bytes);

/* A decimal integer within [min, max]; no blanks, no '+'. -EINVAL / -ERANGE. */
int ctl_parse_int(const char *s, long long min, long long max, long long *out);

/* "auto", "on", "off". -EINVAL otherwise. */
int ctl_parse_hugepages(const char *s, enum shm_hugepages *out);

/* "true", "false", "yes", "no", "on", "off", "1", "0". -EINVAL otherwise. */
int ctl_parse_bool(const char *s, bool *out);

/* "ADDR:PORT" into *out (network byte order): ADDR a dotted IPv4 address
 * or "localhost" (127.0.0.1; no resolver is asked, so parsing never
 * blocks), PORT a decimal number from 1 to 65535. -EINVAL otherwise, and
 * *why (when not NULL) gets a phrase saying which part is wrong, written to
 * follow the offending text: "'x:1': ADDR is not ...". */
int ctl_parse_addr(const char *s, struct sockaddr_in *out, const char **why);

#endif /* ATOMQ_CTL_PARSE_H */
