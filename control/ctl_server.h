/* ctl_server.h - atomqd's control socket: a unix stream socket served from
 * atomqd's event loop (ctl_loop), non-blocking, with hard limits.
 *
 *   path     ctx->cfg->control_path, or ctl_server_default_path() when
 *            empty: /run/atomq/control.sock for root,
 *            $XDG_RUNTIME_DIR/atomq/control.sock otherwise (the directory
 *            is created 0700 when missing). The socket is mode 0600.
 *   group    with cfg->control_group the socket gets that group and mode
 *            0660 (a directory we create gets it too, mode 0750), so its
 *            members may connect and run commands. An agent's attach
 *            needs its uid on --agent-uids as well (ctl_agent.h).
 *   peers    each connection's SO_PEERCRED is checked again on accept:
 *            root, atomqd's own user, the --agent-uids and (with a
 *            group) its members are served; anyone else, who could only
 *            have connected through a mode widened by hand, gets an error
 *            line and is closed (ctx->control_refused_uid).
 *   stale    a socket file left by a dead atomqd is probed with connect():
 *            refused means stale (unlinked, then bound); accepted means
 *            another atomqd is alive (-EADDRINUSE).
 *   limits   at most cfg->control_clients_max clients (0: 128); the next
 *            one gets an error line and is closed. A line is at most
 *            CTL_LINE_MAX - 1 bytes: a longer one is answered with an error
 *            and skipped, and the connection stays usable. Replies wait in
 *            a per-client output buffer of CTL_OUT_BYTES; a client that
 *            does not read stops being read (its commands wait), it never
 *            makes atomqd buffer without bound.
 *
 * The protocol and the commands are in ctl_cmd.h.
 *
 * atomqd's main:
 *
 *      struct ctl_server srv;
 *      int rc = ctl_server_open(&srv, &ctx);    // after ctx.loop, ctx.engine
 *      if (rc == -EADDRINUSE) -> "another atomqd serves PATH", exit 1
 *      while (!stop) ctl_loop_run_once(&loop, 100);
 *      ctl_server_close(&srv);                  // before the engine goes
 */
#ifndef ATOMQ_CTL_SERVER_H
#define ATOMQ_CTL_SERVER_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control/ctl.h"
#include "control/ctl_agent.h"
#include "control/ctl_cmd.h"
#include "control/ctl_dp.h"

#define CTL_CLIENTS_DEFAULT 128u
/* Per-client output buffer: room for the largest reply that is not
 * streamed (CTL_REPLY_MAX) and some pipelined small ones. */
#define CTL_OUT_BYTES (256u * 1024)
_Static_assert(CTL_OUT_BYTES > CTL_REPLY_MAX + CTL_ITEM_MAX, "a reply fits the output buffer");
/* Connections taken per wake-up of the listener. */
#define CTL_ACCEPT_BURST 64u
/* The engine client atomqd uses. */
#define CTL_ENGINE_CLIENT 0u
/* Supplementary groups a peer may have: the kernel's NGROUPS_MAX (65536),
 * so that membership is always decided, never cut off. 256 KiB, allocated
 * at open only when --control-group is given. */
#define CTL_PEER_GROUPS_MAX 65536u

struct ctl_server;

struct ctl_client {
        struct ctl_server *srv;
        int fd;                 /* -1: free */
        uint32_t events;        /* what the loop watches now */
        uint32_t in_len;
        uint32_t out_off;       /* sent up to here */
        uint32_t out_len;
        bool discarding;        /* skipping the rest of an over-long line */
        bool eof;               /* the peer shut its side: finish, then close */
        bool quit;              /* close once the output is sent */
        int32_t agent_slot;     /* the agent attached through it; -1: none */
        char *in;               /* CTL_LINE_MAX */
        char *out;              /* CTL_OUT_BYTES */
        struct ctl_session session;
};

struct ctl_server {
        struct ctl_ctx *ctx;
        bool opened;
        int listen_fd;
        int kick_fd;            /* eventfd: readable while long commands can run */
        bool kick_armed;
        dev_t sock_dev;         /* what we bound, so close unlinks only ours */
        ino_t sock_ino;
        char path[CTL_PATH_MAX];
        uint32_t clients_max;
        struct ctl_client *clients;
        struct ctl_dp dp;
        struct ctl_env env;
        struct ctl_agents agents;
        uint32_t restarts_seen;  /* ctx->dataplane_restarts when last looked */
        bool has_group;          /* --control-group given */
        gid_t gid;               /* its gid */
        gid_t *peer_groups;      /* [CTL_PEER_GROUPS_MAX]: SO_PEERGROUPS, with a group */
};

/* Writes the default control socket path into buf (see above).
 * -ENAMETOOLONG: it does not fit len; -ENOENT: not root and no
 * XDG_RUNTIME_DIR. */
static inline int ctl_server_default_path(char *buf, size_t len)
{
        const char *dir = "/run";
        if (geteuid() != 0) {
                dir = getenv("XDG_RUNTIME_DIR");
                if (dir == NULL || dir[0] != '/')
                        return -ENOENT;
        }
        int n = snprintf(buf, len, "%s/atomq/control.sock", dir);
        return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* Resolves a --control-group value: a group name, else a decimal gid.
 * -EINVAL with why ("'x' is not a group on this host"). */
int ctl_server_group_parse(const char *name, gid_t *gid, char *why, size_t whylen);

/* The config key's check (ctl_config.h): ctl_server_group_parse's errors. */
int ctl_server_group_check(const char *value, char *why, size_t whylen);

/* Binds the control socket and registers it with ctx->loop. ctx->engine
 * may be NULL (commands that need it then answer ENODEV).
 * -EINVAL: --control-group or --agent-uids does not resolve (logged);
 * -EPERM: the socket cannot be given the group (logged: atomqd's user
 * must be root or a member of it);
 * -EADDRINUSE: another atomqd answers on the path;
 * -EEXIST: the path exists and is not a socket (left alone);
 * -ENAMETOOLONG: the path does not fit a sockaddr_un;
 * -ENOMEM; other -errno of mkdir, socket, bind, listen, eventfd or
 * ctl_loop_add. On error nothing is left open or bound. */
int ctl_server_open(struct ctl_server *s, struct ctl_ctx *ctx);

/* Closes every client (long commands stop), the listener, and unlinks the
 * socket if it is still the one we bound. Safe on a zeroed server and
 * twice. */
void ctl_server_close(struct ctl_server *s);

/* Clients connected now. */
uint32_t ctl_server_clients(const struct ctl_server *s);

#endif /* ATOMQ_CTL_SERVER_H */
