/* ctl_agent.h - agents attaching through the control socket.
 *
 * An agent (libatomq's atomq_connect) connects to the control socket, reads
 * the greeting and sends the line `attach`. atomqd checks the peer's
 * credentials (SO_PEERCRED: its uid must be on --agent-uids, by default
 * root and atomqd's own user) before anything else, gives it a free agent
 * slot (dp_agent_open) and answers with one line and an empty line,
 *
 *   agent slot=S gen=G workers=N ring=BYTES file=BYTES max-subs=Q
 *
 * carrying the slot's memfd and eventfd as SCM_RIGHTS. The connection then
 * stays open for the agent's lifetime: when it closes, or the agent's
 * process exits (its pidfd), or a worker finds the agent's memory corrupt,
 * atomqd takes the slot back (dp_agent_close); the workers drop the agent's
 * subscriptions, watches and channel ends, and the slot is free again once
 * every worker has acked (dp_agent_reap, checked every CTL_AGENT_TICK_MS).
 */
#ifndef ATOMQ_CTL_AGENT_H
#define ATOMQ_CTL_AGENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "control/ctl.h"
#include "control/ctl_chan.h"

#define CTL_AGENT_TICK_MS 20u
/* Users --agent-uids may name: a bound on the list, far above what a host
 * runs agents as. */
#define CTL_AGENT_UIDS_MAX 64u

/* The uids allowed to attach agents (and to use the control socket). */
struct ctl_uids {
        uint32_t count;
        uid_t uid[CTL_AGENT_UIDS_MAX];
};

/* Closes the control connection an agent attached through (the server's
 * own close, which calls ctl_agents_detach). */
typedef void ctl_agent_close_fn(void *conn);

struct ctl_agent_conn {
        void *conn;             /* the control client; NULL: slot not ours */
        int pidfd;              /* the agent process; -1: none */
        pid_t pid;
};

struct ctl_agents {
        struct ctl_ctx *ctx;
        struct dp_engine *engine;
        uint32_t slots;
        struct ctl_agent_conn *conn;   /* [slots] */
        ctl_agent_close_fn *close_conn;
        int timerfd;
        uint64_t attached;             /* attaches that succeeded */
        uint64_t refused;              /* attaches refused (credentials, no slot) */
        struct ctl_uids allowed;       /* --agent-uids, or root and our euid */
        uint64_t detached;             /* agents gone: connection closed or process exit */
        uint64_t corrupt;              /* disconnected: their memory was found corrupt */
        struct ctl_chans chans;        /* direct channels between agents (ctl_chan.h) */
};

/* Parses an --agent-uids list into u: comma-separated user names or
 * decimal uids, blanks around each allowed, at most CTL_AGENT_UIDS_MAX
 * (duplicates kept once). "" gives the default: root and geteuid().
 * -EINVAL with why ("'bob' is not a user on this host", "an empty entry",
 * "more than 64 users"). Names are looked up once, here: a user created
 * later needs a restart. */
int ctl_uids_parse(const char *text, struct ctl_uids *u, char *why, size_t whylen);

/* Whether uid is in u. */
bool ctl_uids_has(const struct ctl_uids *u, uid_t uid);

/* The config key's check (ctl_config.h): ctl_uids_parse's errors. */
int ctl_agents_uids_check(const char *value, char *why, size_t whylen);

/* Sets up for ctx->engine's agent slots (none: attach answers ENODEV) and
 * the uids of ctx->cfg->agent_uids (cfg NULL: the default).
 * -EINVAL: the list does not parse (ctl_uids_parse; logged);
 * -ENOMEM, -errno of timerfd_create or ctl_loop_add. */
int ctl_agents_init(struct ctl_agents *a, struct ctl_ctx *ctx, ctl_agent_close_fn *close_conn);
void ctl_agents_fini(struct ctl_agents *a);

/* Is this control line an attach request? */
bool ctl_agents_is_attach(const char *line, uint32_t len);

/* Attaches the agent at the other end of fd (the control client conn,
 * whose output is flushed): sends the answer and the descriptors itself.
 * Returns the slot (>= 0), or -errno with a reason in why:
 * -ENODEV no agent slots configured; -EPERM a uid not on --agent-uids
 * (counted in refused and ctx->agents_refused_uid); -EUSERS every
 * slot taken; -EAGAIN the socket did not take the answer at once; other
 * -errno of getsockopt, pidfd_open, sendmsg. The caller answers errors. */
int ctl_agents_attach(struct ctl_agents *a, int fd, void *conn, char *why, size_t whylen);

/* A `channel ...` line from the connection of slot (-1: not attached);
 * answered on fd (ctl_chan.h). */
int ctl_agents_channel(struct ctl_agents *a, int fd, int32_t slot, const char *args,
                       uint32_t len);

/* The connection of slot went away: takes the slot back. */
void ctl_agents_detach(struct ctl_agents *a, uint32_t slot);

/* Sends text (len bytes) on a unix socket with up to two descriptors as
 * SCM_RIGHTS, without blocking. -EAGAIN: not all of it went; -errno of
 * sendmsg. */
int ctl_send_fds(int fd, const char *text, size_t len, const int *fds, unsigned n);

/* Agents attached now. */
uint32_t ctl_agents_count(const struct ctl_agents *a);

#endif /* ATOMQ_CTL_AGENT_H */
