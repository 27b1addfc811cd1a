/* ctl_chan.h - direct channels between two agents, set up and ended by
 * atomqd.
 *
 * An attached agent sends, on its control connection,
 *
 *   channel open NAME [ring=BYTES] [ttl=MS]     -> end 0
 *   channel join NAME                           -> end 1
 *
 * atomqd makes the channel's memfd (shm/atomq_channel.c, neither end
 * claimed), keeps its own mapping, and answers
 *
 *   channel NAME end=E ring=BYTES
 *
 * with the memfd attached (SCM_RIGHTS); the agent maps it and claims its
 * end. The data path is the two agents' alone. atomqd owns the lifecycle:
 * when an agent holding an end detaches or dies, or the TTL passes, it marks
 * the end(s) closed, so the survivor's calls return -EPIPE once it has read
 * what was sent; when both ends are closed it drops its mapping. Errors are
 * `error: channel: WHY (ENAME)`: -EEXIST (open: the name is taken),
 * -ENOENT (join: no such channel), -EBUSY (join: end 1 taken), -EINVAL,
 * -ENOSPC (--max-channels reached).
 */
#ifndef ATOMQ_CTL_CHAN_H
#define ATOMQ_CTL_CHAN_H

#include <stdbool.h>
#include <stdint.h>

#include "atomq/atomq.h"
#include "control/ctl.h"

#define CTL_CHAN_NAME_MAX 64u
/* ctl_chan.holder values besides an agent slot. */
#define CTL_CHAN_NOBODY (-1) /* not joined yet */
#define CTL_CHAN_GONE (-2)   /* its agent left: the end cannot be joined again */

struct ctl_chan {
        char name[CTL_CHAN_NAME_MAX];
        struct atomq_channel mgr;       /* atomqd's mapping; mgr.map NULL: free entry */
        int32_t holder[2];              /* agent slot of each end, or CTL_CHAN_NOBODY/GONE */
        uint64_t deadline_ns;           /* TTL; 0: none */
};

struct ctl_chans {
        uint32_t max;
        uint32_t used;
        struct ctl_chan *c;             /* [max] */
        uint64_t opened;
        uint64_t ended_ttl;
        uint64_t ended_death;
};

int ctl_chans_init(struct ctl_chans *t, uint32_t max);
void ctl_chans_fini(struct ctl_chans *t);

/* Handles a `channel ...` line (args after the word "channel") from the
 * agent in slot, on connection fd: sends the answer (with the memfd) or an
 * error line itself. Returns 0 or -errno (the error was answered). */
int ctl_chans_command(struct ctl_chans *t, int fd, int32_t slot, const char *args,
                      uint32_t len);

/* The agent in slot is gone: its ends are closed for it. */
void ctl_chans_agent_gone(struct ctl_chans *t, int32_t slot);

/* TTLs and channels both ends have left: called from atomqd's tick. */
void ctl_chans_tick(struct ctl_chans *t, uint64_t now_ns);

#endif /* ATOMQ_CTL_CHAN_H */
