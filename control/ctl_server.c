/* ctl_server.c - the control socket: binding (with the stale-socket
 * probe), accepting within the client limit, and moving bytes between
 * each client's bounded buffers and the command layer (ctl_cmd.c), all
 * non-blocking inside atomqd's loop.
 *
 * A client's life: accepted, greeted; each complete line runs as one
 * command when its output buffer has room for the largest reply; a long
 * command (ctl_cmd.h) holds the client's later lines back and runs in
 * slices from the kick eventfd, which stays readable while some long
 * command can make progress; the client is closed after `quit` once its
 * output is sent, after its end of file once everything it sent is
 * answered, or at once when the connection fails.
 *
 *      socat - UNIX-CONNECT:/run/atomq/control.sock
 */
#include "control/ctl_server.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "shm/shm_log.h"

/* --- the group --- */

/* Room getgrnam_r may need for one entry; a group with more members than
 * fit is refused with the reason. */
#define CTL_GR_BUF_BYTES 65536u

int ctl_server_group_parse(const char *name, gid_t *gid, char *why, size_t whylen)
{
        static char buf[CTL_GR_BUF_BYTES];   /* atomqd is one thread; off the stack */
        struct group gr, *found = NULL;
        int rc = getgrnam_r(name, &gr, buf, sizeof(buf), &found);
        if (rc == 0 && found != NULL) {
                *gid = gr.gr_gid;
                return 0;
        }
        /* A number is a gid whether or not the host names it. */
        char *end;
        errno = 0;
        unsigned long long v = name[0] >= '0' && name[0] <= '9' ? strtoull(name, &end, 10) : 0;
        if (name[0] >= '0' && name[0] <= '9' && errno == 0 && *end == '\0' && v < (gid_t)-1) {
                *gid = (gid_t)v;
                return 0;
        }
        if (rc == ERANGE)
                snprintf(why, whylen, "'%.80s': its entry is larger than %u bytes", name,
                         CTL_GR_BUF_BYTES);
        else if (rc != 0 && rc != ENOENT && rc != ESRCH)
                snprintf(why, whylen, "cannot look up the group '%.80s': %s", name, strerror(rc));
        else
                snprintf(why, whylen, "'%.80s' is not a group on this host", name);
        return -EINVAL;
}

int ctl_server_group_check(const char *value, char *why, size_t whylen)
{
        gid_t gid;
        return ctl_server_group_parse(value, &gid, why, whylen);
}

/* --- binding --- */

/* chown to a group needs CAP_CHOWN, or membership of the group. */
#define CTL_GROUP_EPERM_HINT " (atomqd's user must be root or a member of that group)"

/* Creates the socket's directory (one level) when it is missing: 0700, or
 * 0750 with the socket's group so that its members can reach the socket.
 * A directory that exists is left as it is (it may be /run or /tmp); when
 * the group cannot pass through it, that is logged. */
static int ctl_server_mkdir(const struct ctl_server *s)
{
        char dir[CTL_PATH_MAX];
        struct stat st;
        const char *slash = strrchr(s->path, '/');
        if (slash == NULL || slash == s->path)
                return 0;
        size_t len = (size_t)(slash - s->path);
        memcpy(dir, s->path, len);
        dir[len] = 0;
        if (mkdir(dir, 0700) == 0) {
                /* chmod, not mkdir's mode: the umask may take group bits. */
                if (s->has_group && (chown(dir, (uid_t)-1, s->gid) != 0 || chmod(dir, 0750) != 0)) {
                        int err = errno;
                        shm_log(SHM_LOG_ERR, "control: cannot give the directory %s the group "
                                "%s: %s%s", dir, s->ctx->cfg->control_group, strerror(err),
                                err == EPERM ? CTL_GROUP_EPERM_HINT : "");
                        return -err;
                }
                return 0;
        }
        if (errno != EEXIST)
                return -errno;
        if (s->has_group && stat(dir, &st) == 0 && !(st.st_mode & S_IXOTH) &&
            !((st.st_mode & S_IXGRP) && st.st_gid == s->gid))
                shm_log(SHM_LOG_WARN, "control: members of the group %s cannot reach %s: its "
                        "directory %s is mode %04o, group %u (make it 0750 with that group)",
                        s->ctx->cfg->control_group, s->path, dir, (unsigned)(st.st_mode & 07777),
                        (unsigned)st.st_gid);
        return 0;
}

/* The bound socket's owner group and mode: 0600, or 0660 with the group.
 * The socket was bound 0600 (the umask), so it is never open to a group
 * it should not have. */
static int ctl_server_chmod(const struct ctl_server *s)
{
        if (!s->has_group)
                return chmod(s->path, 0600) == 0 ? 0 : -errno;
        /* lchown: the path is the socket just bound, never a link to follow. */
        if (lchown(s->path, (uid_t)-1, s->gid) != 0) {
                int err = errno;
                shm_log(SHM_LOG_ERR, "control: cannot give %s the group %s: %s%s", s->path,
                        s->ctx->cfg->control_group, strerror(err),
                        err == EPERM ? CTL_GROUP_EPERM_HINT : "");
                return -err;
        }
        return chmod(s->path, 0660) == 0 ? 0 : -errno;
}

/* The path is taken. Returns 0 when it was a stale socket (now removed),
 * -EADDRINUSE when an atomqd answers there, -EEXIST when it is not a
 * socket (left alone), or another -errno. */
static int ctl_server_probe(const struct sockaddr_un *sa)
{
        struct stat st;
        if (lstat(sa->sun_path, &st) != 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISSOCK(st.st_mode))
                return -EEXIST;
        /* Non-blocking: a live atomqd with a full backlog answers EAGAIN
         * instead of holding us. */
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        int rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
        int err = rc == 0 ? 0 : errno;
        close(fd);
        if (rc == 0 || err == EAGAIN || err == EINPROGRESS)
                return -EADDRINUSE;
        if (err != ECONNREFUSED)
                return -err;
        if (unlink(sa->sun_path) != 0 && errno != ENOENT)
                return -errno;
        shm_log(SHM_LOG_INFO, "control: removed the stale socket %s", sa->sun_path);
        return 0;
}

static int ctl_server_bind_once(int fd, const struct sockaddr_un *sa)
{
        /* The umask makes the socket 0600 from its first moment. */
        mode_t old = umask(0177);
        int rc = bind(fd, (const struct sockaddr *)sa, sizeof(*sa));
        int err = errno;
        umask(old);
        return rc == 0 ? 0 : -err;
}

static int ctl_server_bind(struct ctl_server *s)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(s->path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, s->path, strlen(s->path) + 1);
        int rc = ctl_server_mkdir(s);
        if (rc != 0)
                return rc;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        rc = ctl_server_bind_once(fd, &sa);
        if (rc == -EADDRINUSE) {
                rc = ctl_server_probe(&sa);
                if (rc == 0)
                        rc = ctl_server_bind_once(fd, &sa);
        }
        bool bound = rc == 0;
        struct stat st;
        if (rc == 0)
                rc = ctl_server_chmod(s);
        if (rc == 0 && stat(s->path, &st) != 0)
                rc = -errno;
        if (rc == 0 && listen(fd, SOMAXCONN) != 0)
                rc = -errno;
        if (rc != 0) {
                if (bound)
                        unlink(s->path);   /* ours, just bound: no socket left behind */
                close(fd);
                return rc;
        }
        s->sock_dev = st.st_dev;
        s->sock_ino = st.st_ino;
        s->listen_fd = fd;
        return 0;
}

/* --- clients --- */

static void ctl_client_close(struct ctl_client *c)
{
        struct ctl_server *s = c->srv;
        if (c->agent_slot >= 0)
                ctl_agents_detach(&s->agents, (uint32_t)c->agent_slot);
        c->agent_slot = -1;
        ctl_loop_del(s->ctx->loop, c->fd);
        close(c->fd);
        ctl_cmd_abort(&c->session);
        free(c->in);
        c->in = c->out = NULL;
        c->fd = -1;
        s->env.clients--;
}

static void ctl_kick_arm(struct ctl_server *s)
{
        uint64_t one = 1;
        if (!s->kick_armed && write(s->kick_fd, &one, sizeof(one)) == sizeof(one))
                s->kick_armed = true;
}

static void ctl_kick_disarm(struct ctl_server *s)
{
        uint64_t v;
        if (s->kick_armed && read(s->kick_fd, &v, sizeof(v)) == sizeof(v))
                s->kick_armed = false;
}

/* Sends what is buffered. -errno when the connection failed. */
static int ctl_client_flush(struct ctl_client *c)
{
        while (c->out_off < c->out_len) {
                ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n > 0) {
                        c->out_off += (uint32_t)n;
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        break;
                return n < 0 ? -errno : -EPIPE;
        }
        if (c->out_off == c->out_len)
                c->out_off = c->out_len = 0;
        return 0;
}

/* Free output room, moving unsent bytes to the front when that helps. */
static uint32_t ctl_client_room(struct ctl_client *c, uint32_t want)
{
        if (CTL_OUT_BYTES - c->out_len < want && c->out_off > 0) {
                memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
                c->out_len -= c->out_off;
                c->out_off = 0;
        }
        return CTL_OUT_BYTES - c->out_len;
}

static void ctl_client_consume(struct ctl_client *c, uint32_t n)
{
        memmove(c->in, c->in + n, c->in_len - n);
        c->in_len -= n;
}

static void ctl_client_close_conn(void *conn)
{
        ctl_client_close(conn);
}

/* `attach`: the agent's answer carries descriptors, so it is sent here
 * with sendmsg, after every earlier reply (ctl_agent.h). An error is an
 * ordinary reply. */
static void ctl_client_attach(struct ctl_client *c, struct ctl_out *o)
{
        char why[128];
        int rc = c->agent_slot >= 0 ? -EISCONN : ctl_client_flush(c);
        if (rc == 0 && c->out_len != 0)
                rc = -EBUSY;
        if (rc == 0) {
                rc = ctl_agents_attach(&c->srv->agents, c->fd, c, why, sizeof(why));
                if (rc >= 0) {
                        c->agent_slot = rc;
                        return;
                }
        } else {
                snprintf(why, sizeof(why), "%s", rc == -EISCONN ? "already attached"
                                                 : "earlier replies are still unsent");
        }
        c->srv->env.errors++;
        ctl_out_printf(o, "error: attach: %s (%s)\n\n", why, ctl_errno_name(-rc));
}

/* Runs one line; returns false when the client must stop taking lines. */
static bool ctl_client_line(struct ctl_client *c, uint32_t len, uint32_t consumed)
{
        struct ctl_out o;
        ctl_out_init(&o, c->out, CTL_OUT_BYTES, c->out_len, false);
        if (ctl_agents_is_attach(c->in, len)) {
                ctl_client_attach(c, &o);
                c->out_len = o.len;
                ctl_client_consume(c, consumed);
                return true;
        }
        if (len > 8 && memcmp(c->in, "channel ", 8) == 0) {
                /* Answered with a descriptor, after every earlier reply. */
                if (ctl_client_flush(c) == 0 && c->out_len == 0)
                        (void)ctl_agents_channel(&c->srv->agents, c->fd, c->agent_slot,
                                                 c->in + 8, len - 8);
                else
                        ctl_out_printf(&o, "error: channel: earlier replies are still unsent "
                                       "(EBUSY)\n\n");
                c->out_len = o.len;
                ctl_client_consume(c, consumed);
                return true;
        }
        enum ctl_run r = ctl_cmd_exec(&c->session, c->in, len, &o);
        c->out_len = o.len;
        ctl_client_consume(c, consumed);
        if (r == CTL_RUN_MORE)
                ctl_kick_arm(c->srv);
        if (r == CTL_RUN_QUIT)
                c->quit = true;
        return r == CTL_RUN_DONE;
}

/* Runs the complete lines waiting, as far as output room allows. */
static void ctl_client_lines(struct ctl_client *c)
{
        while (!c->quit && !ctl_session_busy(&c->session) &&
               ctl_client_room(c, CTL_REPLY_MAX) >= CTL_REPLY_MAX) {
                char *nl = memchr(c->in, '\n', c->in_len);
                if (nl != NULL) {
                        uint32_t len = (uint32_t)(nl - c->in);
                        if (!ctl_client_line(c, len, len + 1))
                                break;
                        continue;
                }
                if (c->in_len == CTL_LINE_MAX) {
                        /* No newline in a full buffer: over-long. Answer
                         * now, skip the rest of it as it arrives. */
                        struct ctl_out o;
                        ctl_out_init(&o, c->out, CTL_OUT_BYTES, c->out_len, false);
                        ctl_cmd_line_too_long(&c->session, c->in, c->in_len, &o);
                        c->out_len = o.len;
                        c->in_len = 0;
                        c->discarding = true;
                        continue;
                }
                if (c->eof && c->in_len > 0) {
                        /* A last line without its newline still counts. */
                        if (!ctl_client_line(c, c->in_len, c->in_len))
                                break;
                        continue;
                }
                break;
        }
}

/* Reads what the socket has, up to the input buffer's room. -errno when
 * the connection failed. */
static int ctl_client_read(struct ctl_client *c)
{
        while (!c->eof && c->in_len < CTL_LINE_MAX) {
                ssize_t n = recv(c->fd, c->in + c->in_len, CTL_LINE_MAX - c->in_len, MSG_DONTWAIT);
                if (n == 0) {
                        c->eof = true;
                        break;
                }
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                break;
                        return -errno;
                }
                c->in_len += (uint32_t)n;
                if (c->discarding) {
                        char *nl = memchr(c->in, '\n', c->in_len);
                        if (nl == NULL) {
                                c->in_len = 0;
                                continue;
                        }
                        ctl_client_consume(c, (uint32_t)(nl - c->in) + 1);
                        c->discarding = false;
                }
        }
        return 0;
}

/* Flushes, then closes the client when it is finished, or sets the
 * events to watch. Returns false when it was closed. */
static bool ctl_client_settle(struct ctl_client *c)
{
        if (ctl_client_flush(c) != 0) {
                ctl_client_close(c);
                return false;
        }
        bool pending = c->out_len > c->out_off;
        bool idle = !ctl_session_busy(&c->session);
        bool has_line = memchr(c->in, '\n', c->in_len) != NULL || (c->eof && c->in_len > 0);
        if (!pending && idle && (c->quit || (c->eof && !has_line))) {
                ctl_client_close(c);
                return false;
        }
        uint32_t want = 0;
        if (!c->eof && !c->quit && c->in_len < CTL_LINE_MAX)
                want |= EPOLLIN;
        if (pending)
                want |= EPOLLOUT;
        if (want != c->events && ctl_loop_mod(c->srv->ctx->loop, c->fd, want) == 0)
                c->events = want;
        return true;
}

/* Whether the peer really hung up: an event may be stale when its fd was
 * closed and reused within one batch of the loop. */
static bool ctl_client_hung_up(const struct ctl_client *c)
{
        struct pollfd p = { .fd = c->fd, .events = 0 };
        return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR));
}

/* A restarted dataplane may have lost commands that were in flight. */
static void ctl_server_sync(struct ctl_server *s)
{
        if (s->env.dp != NULL && s->ctx->dataplane_restarts != s->restarts_seen) {
                s->restarts_seen = s->ctx->dataplane_restarts;
                ctl_dp_forget_inflight(s->env.dp);
        }
}

static void ctl_on_client(void *arg, int fd, uint32_t events)
{
        struct ctl_client *c = arg;
        (void)fd;
        ctl_server_sync(c->srv);
        if ((events & (EPOLLHUP | EPOLLERR)) && ctl_client_hung_up(c)) {
                /* Nobody can read our answers any more. */
                ctl_client_close(c);
                return;
        }
        if ((events & EPOLLIN) && ctl_client_read(c) != 0) {
                ctl_client_close(c);
                return;
        }
        if ((events & EPOLLOUT) && ctl_client_flush(c) != 0) {
                ctl_client_close(c);
                return;
        }
        if (ctl_session_busy(&c->session) && ctl_client_room(c, CTL_ITEM_MAX) >= CTL_ITEM_MAX)
                ctl_kick_arm(c->srv);
        ctl_client_lines(c);
        ctl_client_settle(c);
}

/* Whether the peer on fd may use the control socket (ctl_server.h,
 * "peers"): 0, or -EACCES with its uid in *uid; -errno when its
 * credentials cannot be read. */
static int ctl_server_peer_check(struct ctl_server *s, int fd, uid_t *uid)
{
        struct ucred cred;
        socklen_t len = sizeof(cred);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
                return -errno;
        *uid = cred.uid;
        if (cred.uid == 0 || cred.uid == geteuid() || ctl_uids_has(&s->agents.allowed, cred.uid))
                return 0;
        if (!s->has_group)
                return -EACCES;
        if (cred.gid == s->gid)
                return 0;
        /* The peer's supplementary groups as they were at connect(). */
        len = (socklen_t)(CTL_PEER_GROUPS_MAX * sizeof(gid_t));
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, s->peer_groups, &len) != 0)
                return -errno;
        for (size_t i = 0; i < len / sizeof(gid_t); i++)
                if (s->peer_groups[i] == s->gid)
                        return 0;
        return -EACCES;
}

/* A peer that may not use the socket: told why, counted, closed. */
static void ctl_server_refuse_peer(struct ctl_server *s, int fd, int err, uid_t uid)
{
        char line[200];
        uint64_t n = ++s->ctx->control_refused_uid;
        int len = err == -EACCES
                ? snprintf(line, sizeof(line), "error: uid %u may not use this control socket "
                           "(not root, atomqd's user, on --agent-uids or in --control-group) "
                           "(EACCES)\n\n", (unsigned)uid)
                : snprintf(line, sizeof(line), "error: cannot read the peer's credentials "
                           "(%s)\n\n", ctl_errno_name(-err));
        if (len > 0)
                (void)send(fd, line, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
        close(fd);
        /* The 1st, 2nd, 4th, ... : a peer retrying cannot flood the log. */
        if ((n & (n - 1)) == 0)
                shm_log(SHM_LOG_WARN, "control: refused a client with uid %u: %s (%llu refused "
                        "so far; is the socket's mode or directory wider than configured?)",
                        (unsigned)uid, err == -EACCES ? "not allowed" : strerror(-err),
                        (unsigned long long)n);
}

/* A client over the limit: told why, then closed. */
static void ctl_server_refuse(struct ctl_server *s, int fd, int err, const char *why)
{
        char line[160];
        int n = snprintf(line, sizeof(line), "error: %s (%s)\n\n", why, ctl_errno_name(err));
        if (n > 0)
                (void)send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
        close(fd);
        s->env.clients_refused++;
}

static int ctl_client_start(struct ctl_server *s, struct ctl_client *c, int fd)
{
        char *mem = malloc(CTL_LINE_MAX + CTL_OUT_BYTES);
        if (mem == NULL)
                return -ENOMEM;
        int rc = ctl_loop_add(s->ctx->loop, fd, EPOLLIN, ctl_on_client, c);
        if (rc != 0) {
                free(mem);
                return rc;
        }
        *c = (struct ctl_client){ .srv = s, .fd = fd, .events = EPOLLIN, .in = mem, .agent_slot = -1,
                                  .out = mem + CTL_LINE_MAX };
        ctl_session_init(&c->session, &s->env);
        s->env.clients++;
        s->env.clients_accepted++;
        struct ctl_out o;
        ctl_out_init(&o, c->out, CTL_OUT_BYTES, 0, false);
        ctl_cmd_greeting(&c->session, &o);
        c->out_len = o.len;
        ctl_client_settle(c);
        return 0;
}

static struct ctl_client *ctl_server_free_slot(struct ctl_server *s)
{
        for (uint32_t i = 0; i < s->clients_max; i++)
                if (s->clients[i].fd < 0)
                        return &s->clients[i];
        return NULL;
}

static void ctl_on_accept(void *arg, int fd, uint32_t events)
{
        struct ctl_server *s = arg;
        (void)events;
        for (uint32_t i = 0; i < CTL_ACCEPT_BURST; i++) {
                int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        if (errno != EAGAIN && errno != EWOULDBLOCK)
                                shm_log(SHM_LOG_WARN, "control: accept: %s", strerror(errno));
                        return;
                }
                uid_t uid = (uid_t)-1;
                int rc = ctl_server_peer_check(s, cfd, &uid);
                if (rc != 0) {
                        ctl_server_refuse_peer(s, cfd, rc, uid);
                        continue;
                }
                struct ctl_client *c = ctl_server_free_slot(s);
                if (c == NULL) {
                        ctl_server_refuse(s, cfd, -EUSERS, "too many control clients");
                        continue;
                }
                rc = ctl_client_start(s, c, cfd);
                if (rc != 0)
                        ctl_server_refuse(s, cfd, rc, "cannot serve another client now");
        }
}

/* Gives each long command that has output room one slice. */
static void ctl_on_kick(void *arg, int fd, uint32_t events)
{
        struct ctl_server *s = arg;
        bool runnable = false;
        (void)fd;
        (void)events;
        ctl_server_sync(s);
        for (uint32_t i = 0; i < s->clients_max; i++) {
                struct ctl_client *c = &s->clients[i];
                if (c->fd < 0 || !ctl_session_busy(&c->session))
                        continue;
                if (ctl_client_room(c, CTL_REPLY_MAX) < CTL_ITEM_MAX)
                        continue;       /* its EPOLLOUT re-arms the kick */
                struct ctl_out o;
                ctl_out_init(&o, c->out, CTL_OUT_BYTES, c->out_len, false);
                enum ctl_run r = ctl_cmd_resume(&c->session, &o, CTL_SLICE_NS);
                c->out_len = o.len;
                if (r == CTL_RUN_QUIT)
                        c->quit = true;
                if (r == CTL_RUN_MORE)
                        runnable = true;
                else
                        ctl_client_lines(c);
                if (ctl_client_settle(c) && ctl_session_busy(&c->session))
                        runnable = true;
        }
        if (!runnable)
                ctl_kick_disarm(s);
}

/* --- open, close --- */

static int ctl_server_setup(struct ctl_server *s, struct ctl_ctx *ctx)
{
        const struct ctl_config *cfg = ctx->cfg;
        int rc;
        if (cfg != NULL && cfg->control_path[0] != 0) {
                if (strlen(cfg->control_path) >= sizeof(s->path))
                        return -ENAMETOOLONG;
                memcpy(s->path, cfg->control_path, strlen(cfg->control_path) + 1);
        } else if ((rc = ctl_server_default_path(s->path, sizeof(s->path))) != 0) {
                return rc;
        }
        s->clients_max = cfg != NULL && cfg->control_clients_max != 0 ? cfg->control_clients_max
                                                                      : CTL_CLIENTS_DEFAULT;
        s->clients = calloc(s->clients_max, sizeof(*s->clients));
        if (s->clients == NULL)
                return -ENOMEM;
        for (uint32_t i = 0; i < s->clients_max; i++)
                s->clients[i].fd = -1;
        s->env = (struct ctl_env){ .ctx = ctx, .control_path = s->path,
                                   .clients_max = s->clients_max };
        s->restarts_seen = ctx->dataplane_restarts;
        if (ctx->engine != NULL) {
                rc = ctl_dp_init(&s->dp, ctx->engine, CTL_ENGINE_CLIENT);
                if (rc != 0)
                        return rc;
                s->env.dp = &s->dp;
        }
        if (cfg != NULL && cfg->control_group[0] != '\0') {
                char why[160];
                if (ctl_server_group_parse(cfg->control_group, &s->gid, why, sizeof(why)) != 0) {
                        shm_log(SHM_LOG_ERR, "--control-group: %s", why);
                        return -EINVAL;
                }
                s->has_group = true;
                s->peer_groups = calloc(CTL_PEER_GROUPS_MAX, sizeof(gid_t));
                if (s->peer_groups == NULL)
                        return -ENOMEM;
        }
        s->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (s->kick_fd < 0)
                return -errno;
        s->env.agents = &s->agents;
        return ctl_agents_init(&s->agents, ctx, ctl_client_close_conn);
}

int ctl_server_open(struct ctl_server *s, struct ctl_ctx *ctx)
{
        memset(s, 0, sizeof(*s));
        s->ctx = ctx;
        s->listen_fd = s->kick_fd = -1;
        s->agents.timerfd = -1;  /* ctl_server_close before ctl_agents_init closes none */
        s->opened = true;
        int rc = ctl_server_setup(s, ctx);
        if (rc == 0)
                rc = ctl_server_bind(s);
        if (rc == 0)
                rc = ctl_loop_add(ctx->loop, s->kick_fd, EPOLLIN, ctl_on_kick, s);
        if (rc == 0) {
                rc = ctl_loop_add(ctx->loop, s->listen_fd, EPOLLIN, ctl_on_accept, s);
                if (rc != 0)
                        ctl_loop_del(ctx->loop, s->kick_fd);
        }
        if (rc != 0) {
                ctl_server_close(s);
                return rc;
        }
        char uids[160];
        size_t n = 0;
        for (uint32_t i = 0; i < s->agents.allowed.count && n < sizeof(uids); i++) {
                int w = snprintf(uids + n, sizeof(uids) - n, "%s%u", i > 0 ? "," : "",
                                 (unsigned)s->agents.allowed.uid[i]);
                n += w > 0 ? (size_t)w : 0;
        }
        if (s->has_group)
                shm_log(SHM_LOG_INFO, "control: listening on %s (mode 0660, group %s; at most "
                        "%u clients; agents may attach as uids %s)", s->path,
                        ctx->cfg->control_group, s->clients_max, uids);
        else
                shm_log(SHM_LOG_INFO, "control: listening on %s (mode 0600; at most %u clients; "
                        "agents may attach as uids %s)", s->path, s->clients_max, uids);
        return 0;
}

void ctl_server_close(struct ctl_server *s)
{
        if (!s->opened)
                return;
        for (uint32_t i = 0; s->clients != NULL && i < s->clients_max; i++)
                if (s->clients[i].fd >= 0)
                        ctl_client_close(&s->clients[i]);
        ctl_agents_fini(&s->agents);
        free(s->clients);
        s->clients = NULL;
        free(s->peer_groups);
        s->peer_groups = NULL;
        if (s->listen_fd >= 0) {
                struct stat st;
                ctl_loop_del(s->ctx->loop, s->listen_fd);
                close(s->listen_fd);
                /* Only our own socket: another atomqd may have taken the
                 * path since (after removing ours as stale). */
                if (stat(s->path, &st) == 0 && st.st_dev == s->sock_dev &&
                    st.st_ino == s->sock_ino)
                        unlink(s->path);
        }
        if (s->kick_fd >= 0) {
                ctl_loop_del(s->ctx->loop, s->kick_fd);
                close(s->kick_fd);
        }
        s->listen_fd = s->kick_fd = -1;
        s->opened = false;
}

uint32_t ctl_server_clients(const struct ctl_server *s)
{
        return s->env.clients;
}
