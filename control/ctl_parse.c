/* ctl_parse.c - parsing of operator input (see ctl_parse.h). */
#include "control/ctl_parse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int ctl_parse_int(const char *s, long long min, long long max, long long *out)
{
        char *end;
        /* strtoll would skip leading blanks and take a '+': operator input
         * is a plain decimal number or it is refused. */
        if (s == NULL || !((*s >= '0' && *s <= '9') || (*s == '-' && s[1] >= '0' && s[1] <= '9')))
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
        /* Too large, but only -ERANGE once the rest is a size too. */
        bool over = errno == ERANGE;
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
        if (over || v > (UINT64_MAX >> 1) >> shift)
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

int ctl_parse_bool(const char *s, bool *out)
{
        static const char *const yes[] = { "true", "yes", "on", "1" };
        static const char *const no[] = { "false", "no", "off", "0" };

        for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
                if (strcmp(s, yes[i]) == 0) {
                        *out = true;
                        return 0;
                }
                if (strcmp(s, no[i]) == 0) {
                        *out = false;
                        return 0;
                }
        }
        return -EINVAL;
}

/* Longest ADDR we accept: "255.255.255.255" and "localhost" both fit. */
#define CTL_ADDR_HOST_MAX 15

int ctl_parse_addr(const char *s, struct sockaddr_in *out, const char **why)
{
        const char *dummy;
        if (why == NULL)
                why = &dummy;
        const char *colon = s != NULL ? strrchr(s, ':') : NULL;
        if (colon == NULL) {
                *why = "expected ADDR:PORT, e.g. 127.0.0.1:8222";
                return -EINVAL;
        }
        size_t host_len = (size_t)(colon - s);
        char host[CTL_ADDR_HOST_MAX + 1];
        if (host_len == 0) {
                *why = "ADDR is missing (use 0.0.0.0 for every interface)";
                return -EINVAL;
        }
        struct in_addr ip;
        if (host_len > CTL_ADDR_HOST_MAX) {
                *why = "ADDR is not an IPv4 address or localhost";
                return -EINVAL;
        }
        memcpy(host, s, host_len);
        host[host_len] = '\0';
        if (strcmp(host, "localhost") == 0) {
                ip.s_addr = htonl(INADDR_LOOPBACK);
        } else if (inet_pton(AF_INET, host, &ip) != 1) {
                *why = "ADDR is not an IPv4 address or localhost";
                return -EINVAL;
        }
        long long port;
        if (ctl_parse_int(colon + 1, 1, 65535, &port) != 0) {
                *why = "PORT is not a number from 1 to 65535";
                return -EINVAL;
        }
        memset(out, 0, sizeof(*out));
        out->sin_family = AF_INET;
        out->sin_port = htons((uint16_t)port);
        out->sin_addr = ip;
        return 0;
}
