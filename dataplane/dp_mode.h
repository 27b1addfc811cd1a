/* dp_mode.h - the six modes as rows of atom choices.
 *
 * A mode is nothing but a row in dp_modes[]: creating an entity of a mode
 * copies the row's choices into the entity, and from then on every
 * operation looks at the atoms only. Options given at creation (storage,
 * TTL, limits, overflow) override single atoms of the row. A new mode that
 * cannot be written as a row needs a new atom, not a special case.
 *
 *   mode       storage  retention  routing  delivery       lifecycle
 *   broadcast  none     all        match    at-most-once   -
 *   mailbox    mem      until-ack  direct   at-least-once  ttl
 *   latest     mem      latest     match    at-most-once   -
 *   request    none     all        direct   at-most-once   ttl, one-shot
 *   channel    mem      all        direct   at-most-once   auto-destroy
 *   log        mem      all        direct   ordered        -
 */
#ifndef ATOMQ_DP_MODE_H
#define ATOMQ_DP_MODE_H

#include <stdint.h>

enum dp_mode {
        DP_MODE_BROADCAST = 0,
        DP_MODE_MAILBOX = 1,
        DP_MODE_LATEST = 2,
        DP_MODE_REQUEST = 3,
        DP_MODE_CHANNEL = 4,
        DP_MODE_LOG = 5,
        DP_MODE_COUNT_,
};

struct dp_mode_row {
        const char *name;
        uint8_t storage;   /* enum dp_storage */
        uint8_t retention; /* enum dp_retention */
        uint8_t routing;   /* enum dp_routing */
        uint8_t delivery;  /* enum dp_delivery */
        uint8_t overflow;  /* enum dp_overflow */
        uint8_t lifecycle; /* enum dp_lifecycle_flags */
};

extern const struct dp_mode_row dp_modes[DP_MODE_COUNT_];

/* The mode called name, or -EINVAL. */
int dp_mode_parse(const char *name);

/* Names of the atom values, for tools and errors ("mem", "until-ack", ...);
 * "?" for a value out of range. */
const char *dp_storage_name(unsigned v);
const char *dp_retention_name(unsigned v);
const char *dp_routing_name(unsigned v);
const char *dp_delivery_name(unsigned v);

/* "none", "mem", "disk" into *out, or -EINVAL. */
int dp_storage_parse(const char *name, uint8_t *out);

/* enum dp_sync: "always", "batch", "none" (DP_SYNC_DEFAULT is named
 * "batch", what it means for an entity). */
const char *dp_sync_name(unsigned v);
int dp_sync_parse(const char *name, uint8_t *out);

#endif /* ATOMQ_DP_MODE_H */
