/* atomq_channel_pvt.h - direct channels as atomqd manages them: made with
 * neither end claimed, handed to two agents, and ended by atomqd when one of
 * them dies or the channel's TTL passes (control/ctl_chan.c). Not part of
 * the public API. */
#ifndef ATOMQ_CHANNEL_PVT_H
#define ATOMQ_CHANNEL_PVT_H

#include <stdbool.h>

#include "atomq/atomq.h"

/* As atomq_channel_create; with claim false neither end is attached yet,
 * and both are left to atomq_channel_attach_end. */
int atomq_channel_make(struct atomq_channel *ch, uint32_t ring_bytes, bool claim);

/* Marks an end closed for its owner (who died) and wakes the survivor. */
void atomq_channel_end_kill(struct atomq_channel *ch, unsigned end);

/* Has end closed (by close or by atomq_channel_end_kill)? */
bool atomq_channel_end_closed(const struct atomq_channel *ch, unsigned end);

/* Data bytes of each of the channel's rings. */
uint32_t atomq_channel_ring_bytes(const struct atomq_channel *ch);

/* Have both ends closed (by close or by atomq_channel_end_kill)? */
bool atomq_channel_ends_closed(const struct atomq_channel *ch);

/* Drops the manager's mapping and descriptor; the ends keep theirs. */
void atomq_channel_unmap(struct atomq_channel *ch);

#endif /* ATOMQ_CHANNEL_PVT_H */
