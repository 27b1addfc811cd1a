/* dp_mode.c - the mode table (see dp_mode.h) and atom names. */
#include "dataplane/dp_mode.h"

#include <errno.h>
#include <string.h>

#include "dataplane/dp_atoms.h"

const struct dp_mode_row dp_modes[DP_MODE_COUNT_] = {
        [DP_MODE_BROADCAST] = { "broadcast", DP_STORAGE_NONE, DP_RETENTION_ALL,
                                DP_ROUTING_MATCH, DP_DELIVERY_AT_MOST_ONCE,
                                DP_OVERFLOW_REJECT, 0 },
        [DP_MODE_MAILBOX] = { "mailbox", DP_STORAGE_MEM, DP_RETENTION_UNTIL_ACK,
                              DP_ROUTING_DIRECT, DP_DELIVERY_AT_LEAST_ONCE,
                              DP_OVERFLOW_REJECT, DP_LIFE_TTL_ABSOLUTE },
        [DP_MODE_LATEST] = { "latest", DP_STORAGE_MEM, DP_RETENTION_LATEST,
                             DP_ROUTING_MATCH, DP_DELIVERY_AT_MOST_ONCE,
                             DP_OVERFLOW_REJECT, 0 },
        [DP_MODE_REQUEST] = { "request", DP_STORAGE_NONE, DP_RETENTION_ALL,
                              DP_ROUTING_DIRECT, DP_DELIVERY_AT_MOST_ONCE,
                              DP_OVERFLOW_REJECT, DP_LIFE_TTL_ABSOLUTE | DP_LIFE_ONE_SHOT },
        [DP_MODE_CHANNEL] = { "channel", DP_STORAGE_MEM, DP_RETENTION_ALL,
                              DP_ROUTING_DIRECT, DP_DELIVERY_AT_MOST_ONCE,
                              DP_OVERFLOW_REJECT, DP_LIFE_AUTO_DESTROY },
        [DP_MODE_LOG] = { "log", DP_STORAGE_MEM, DP_RETENTION_ALL, DP_ROUTING_DIRECT,
                          DP_DELIVERY_ORDERED, DP_OVERFLOW_DROP_OLDEST, 0 },
};

int dp_mode_parse(const char *name)
{
        for (int i = 0; i < DP_MODE_COUNT_; i++)
                if (strcmp(dp_modes[i].name, name) == 0)
                        return i;
        return -EINVAL;
}

static const char *dp_name_of(const char *const *names, unsigned n, unsigned v)
{
        return v < n ? names[v] : "?";
}

const char *dp_storage_name(unsigned v)
{
        static const char *const n[] = { "none", "mem", "disk" };
        return dp_name_of(n, 3, v);
}

const char *dp_sync_name(unsigned v)
{
        static const char *const n[] = { "batch", "always", "batch", "none" };
        return dp_name_of(n, 4, v);
}

int dp_sync_parse(const char *name, uint8_t *out)
{
        for (unsigned i = DP_SYNC_ALWAYS; i < DP_SYNC_COUNT_; i++)
                if (strcmp(dp_sync_name(i), name) == 0) {
                        *out = (uint8_t)i;
                        return 0;
                }
        return -EINVAL;
}

const char *dp_retention_name(unsigned v)
{
        static const char *const n[] = { "all", "latest", "until-ack" };
        return dp_name_of(n, 3, v);
}

const char *dp_routing_name(unsigned v)
{
        static const char *const n[] = { "direct", "fanout", "match", "group", "headers" };
        return dp_name_of(n, 5, v);
}

const char *dp_delivery_name(unsigned v)
{
        static const char *const n[] = { "at-most-once", "at-least-once", "ordered" };
        return dp_name_of(n, 3, v);
}

int dp_storage_parse(const char *name, uint8_t *out)
{
        for (unsigned i = 0; i < DP_STORAGE_COUNT_; i++)
                if (strcmp(dp_storage_name(i), name) == 0) {
                        *out = (uint8_t)i;
                        return 0;
                }
        return -EINVAL;
}
