/* ctl_parse.c - parsing of operator input (see ctl_parse.h). */
#include "control/ctl_parse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int ctl_parse_int(const char *s, long long min, long long max, long long *out)
{
        char *end;
        if (s == NULL || *s == '\0')
                return -EINVAL;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (*end != '\0')
                return -EINVAL;
        if (errno == ERANGE || v < min || v > max)
                return -ERANGE;
        *out = v;
        return 0;
}

int ctl_parse_bytes(const char *s, uint64_t *bytes)
{
        static const char units[] = "KMGT";
        char *end;

        if (s == NULL || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        int shift = 0;
        if (*end != '\0') {
                const char *u = strchr(units, *end);
                if (u == NULL || *u == '\0')
                        return -EINVAL;
                shift = 10 * (int)(u - units + 1);
                end++;
                if (*end == 'i')        /* accept "MiB"-style spellings too */
                        end++;
                if (*end == 'B')
                        end++;
                if (*end != '\0')
                        return -EINVAL;
        }
        if (v > (UINT64_MAX >> 1) >> shift)
                return -ERANGE;
        *bytes = (uint64_t)v << shift;
        return 0;
}

int ctl_parse_hugepages(const char *s, enum shm_hugepages *out)
{
        if (strcmp(s, "auto") == 0)
                *out = SHM_HUGEPAGES_AUTO;
        else if (strcmp(s, "on") == 0)
                *out = SHM_HUGEPAGES_ON;
        else if (strcmp(s, "off") == 0)
                *out = SHM_HUGEPAGES_OFF;
        else
                return -EINVAL;
        return 0;
}
