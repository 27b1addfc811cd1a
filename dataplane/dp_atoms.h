/* dp_atoms.h - the atoms of ../../docs/architecture.md ("The atoms"): one
 * enum per row. An entity records one choice from each; none of the rows
 * knows about the others, and a mode is only a row of choices (dp_mode.c).
 */
#ifndef ATOMQ_DP_ATOMS_H
#define ATOMQ_DP_ATOMS_H

enum dp_storage {
        DP_STORAGE_NONE = 0, /* pass-through: delivered to who is there, kept by nobody */
        DP_STORAGE_MEM = 1,  /* per-entity queue of refcounted buffers in the arena */
        DP_STORAGE_DISK = 2, /* local append log (the disk tier plugs in here) */
        DP_STORAGE_COUNT_,
};

/* When a disk entity's records must be on disk: an acknowledged send waits
 * for its fdatasync (always), for the worker's next group commit (batch,
 * the default), or not at all (none). Per entity, overridable per message;
 * 0 in a message means the entity's. */
enum dp_sync {
        DP_SYNC_DEFAULT = 0, /* a message: the entity's; an entity: batch */
        DP_SYNC_ALWAYS = 1,
        DP_SYNC_BATCH = 2,
        DP_SYNC_NONE = 3,
        DP_SYNC_COUNT_,
};

enum dp_retention {
        DP_RETENTION_ALL = 0,       /* queue or log: keep every message */
        DP_RETENTION_LATEST = 1,    /* one value per key */
        DP_RETENTION_UNTIL_ACK = 2, /* keep until acknowledged */
        DP_RETENTION_COUNT_,
};

enum dp_routing {
        DP_ROUTING_DIRECT = 0,  /* to one entity */
        DP_ROUTING_FANOUT = 1,  /* to every subscriber */
        DP_ROUTING_MATCH = 2,   /* subject patterns with * and > */
        DP_ROUTING_GROUP = 3,   /* one member of a named group */
        DP_ROUTING_HEADERS = 4, /* match on header values */
        DP_ROUTING_COUNT_,
};

enum dp_delivery {
        DP_DELIVERY_AT_MOST_ONCE = 0,
        DP_DELIVERY_AT_LEAST_ONCE = 1, /* ack, redelivery after ack-wait */
        DP_DELIVERY_ORDERED = 2,       /* offsets, cursor per consumer group */
        DP_DELIVERY_COUNT_,
};

enum dp_overflow {
        DP_OVERFLOW_REJECT = 0,      /* a full entity refuses new messages */
        DP_OVERFLOW_DROP_OLDEST = 1, /* a full entity drops its oldest */
        DP_OVERFLOW_COUNT_,
};

/* Lifecycle is a set of flags rather than one choice: an entity may have an
 * absolute TTL, an idle TTL and auto-destroy at once. */
enum dp_lifecycle_flags {
        DP_LIFE_TTL_ABSOLUTE = 1u << 0, /* destroyed ttl_ms after creation */
        DP_LIFE_TTL_IDLE = 1u << 1,     /* destroyed ttl_ms after last use */
        DP_LIFE_AUTO_DESTROY = 1u << 2, /* destroyed when the last party leaves */
        DP_LIFE_DELETE_ON_ACK = 1u << 3,
        DP_LIFE_ONE_SHOT = 1u << 4,     /* destroyed after its first delivery */
};

#endif /* ATOMQ_DP_ATOMS_H */
