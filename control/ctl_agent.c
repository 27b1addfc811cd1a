/* ctl_agent.c - agents attaching through the control socket (ctl_agent.h). */
#include "control/ctl_agent.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "shm/shm_clock.h"
#include "shm/shm_log.h"

static void ctl_agents_why(char *why, size_t len, const char *text)
{
        snprintf(why, len, "%s", text);
}

/* --- who may attach --- */

/* Room getpwnam_r may need for one entry; a larger one (an enormous gecos
 * field) is refused as if unknown, with the reason. */
#define CTL_PW_BUF_BYTES 16384u

bool ctl_uids_has(const struct ctl_uids *u, uid_t uid)
{
        for (uint32_t i = 0; i < u->count; i++)
                if (u->uid[i] == uid)
                        return true;
        return false;
}

static int ctl_uids_add(struct ctl_uids *u, uid_t uid, char *why, size_t whylen)
{
        if (ctl_uids_has(u, uid))
                return 0;
        if (u->count == CTL_AGENT_UIDS_MAX) {
                snprintf(why, whylen, "more than %u users", CTL_AGENT_UIDS_MAX);
                return -EINVAL;
        }
        u->uid[u->count++] = uid;
        return 0;
}

/* One entry of the list, name[0..len): a user name, else a decimal uid. */
static int ctl_uids_entry(const char *name, size_t len, uid_t *uid, char *why, size_t whylen)
{
        char user[256], buf[CTL_PW_BUF_BYTES];
        struct passwd pw, *found = NULL;
        if (len >= sizeof(user)) {
                snprintf(why, whylen, "'%.40s...' is too long for a user name", name);
                return -EINVAL;
        }
        memcpy(user, name, len);
        user[len] = '\0';
        int rc = getpwnam_r(user, &pw, buf, sizeof(buf), &found);
        if (rc == 0 && found != NULL) {
                *uid = pw.pw_uid;
                return 0;
        }
        /* A number names a uid whether or not the host lists a user for it
         * (containers map uids that have no passwd entry). (uid_t)-1 is
         * "no uid" to the kernel's calls, never a peer's. */
        char *end;
        errno = 0;
        unsigned long long v = len > 0 && user[0] >= '0' && user[0] <= '9'
                                       ? strtoull(user, &end, 10) : 0;
        if (len > 0 && user[0] >= '0' && user[0] <= '9' && errno == 0 && *end == '\0' &&
            v < (uid_t)-1) {
                *uid = (uid_t)v;
                return 0;
        }
        if (rc != 0 && rc != ENOENT && rc != ESRCH)
                snprintf(why, whylen, "cannot look up the user '%s': %s", user, strerror(rc));
        else
                snprintf(why, whylen, "'%s' is not a user on this host", user);
        return -EINVAL;
}

int ctl_uids_parse(const char *text, struct ctl_uids *u, char *why, size_t whylen)
{
        memset(u, 0, sizeof(*u));
        if (text == NULL || text[0] == '\0') {
                u->uid[u->count++] = 0;
                return ctl_uids_add(u, geteuid(), why, whylen);
        }
        const char *p = text;
        for (;;) {
                const char *comma = strchr(p, ',');
                const char *end = comma != NULL ? comma : p + strlen(p);
                const char *b = p;
                while (b < end && (*b == ' ' || *b == '\t'))
                        b++;
                const char *e = end;
                while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
                        e--;
                uid_t uid;
                if (e == b) {
                        snprintf(why, whylen, "'%.80s' has an empty entry", text);
                        return -EINVAL;
                }
                int rc = ctl_uids_entry(b, (size_t)(e - b), &uid, why, whylen);
                if (rc == 0)
                        rc = ctl_uids_add(u, uid, why, whylen);
                if (rc != 0)
                        return rc;
                if (comma == NULL)
                        return 0;
                p = comma + 1;
        }
}

int ctl_agents_uids_check(const char *value, char *why, size_t whylen)
{
        struct ctl_uids u;
        return ctl_uids_parse(value, &u, why, whylen);
}

/* The agent's process exited: its connection may live on in a child it
 * forked, but the agent is gone. */
static void ctl_agents_on_exit(void *arg, int fd, uint32_t events)
{
        struct ctl_agents *a = arg;
        (void)events;
        for (uint32_t i = 0; i < a->slots; i++) {
                if (a->conn[i].pidfd != fd || a->conn[i].conn == NULL)
                        continue;
                shm_log(SHM_LOG_INFO, "agent %u (pid %d) exited", i, (int)a->conn[i].pid);
                a->close_conn(a->conn[i].conn);
                return;
        }
}

/* Every tick: slots whose workers are all done are freed, agents a worker
 * found corrupt are disconnected. */
static void ctl_agents_on_tick(void *arg, int fd, uint32_t events)
{
        struct ctl_agents *a = arg;
        uint64_t n;
        (void)events;
        if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
                return;
        for (uint32_t i = 0; i < a->slots; i++) {
                if (a->conn[i].conn != NULL && dp_agent_bad(a->engine, i)) {
                        a->corrupt++;
                        shm_log(SHM_LOG_WARN, "agent %u (pid %d): its rings are corrupt; "
                                "disconnected", i, (int)a->conn[i].pid);
                        a->close_conn(a->conn[i].conn);
                }
                if (a->conn[i].conn == NULL)
                        (void)dp_agent_reap(a->engine, i);
        }
        ctl_chans_tick(&a->chans, shm_clock_ns());
}

int ctl_agents_init(struct ctl_agents *a, struct ctl_ctx *ctx, ctl_agent_close_fn *close_conn)
{
        memset(a, 0, sizeof(*a));
        a->ctx = ctx;
        a->timerfd = -1;
        a->close_conn = close_conn;
        char why[160];
        if (ctl_uids_parse(ctx->cfg != NULL ? ctx->cfg->agent_uids : NULL, &a->allowed, why,
                           sizeof(why)) != 0) {
                shm_log(SHM_LOG_ERR, "--agent-uids: %s", why);
                return -EINVAL;
        }
        if (ctx->engine == NULL || ctx->engine->agents == 0)
                return 0;
        a->engine = ctx->engine;
        a->slots = ctx->engine->agents;
        a->conn = calloc(a->slots, sizeof(*a->conn));
        if (a->conn == NULL)
                return -ENOMEM;
        int rc = ctl_chans_init(&a->chans, ctx->cfg->max_channels);
        if (rc != 0)
                return rc;
        for (uint32_t i = 0; i < a->slots; i++)
                a->conn[i].pidfd = -1;
        a->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (a->timerfd < 0)
                return -errno;
        struct itimerspec t = {
                .it_value = { .tv_nsec = CTL_AGENT_TICK_MS * 1000000L },
                .it_interval = { .tv_nsec = CTL_AGENT_TICK_MS * 1000000L },
        };
        if (timerfd_settime(a->timerfd, 0, &t, NULL) != 0)
                return -errno;
        return ctl_loop_add(ctx->loop, a->timerfd, EPOLLIN, ctl_agents_on_tick, a);
}

void ctl_agents_fini(struct ctl_agents *a)
{
        for (uint32_t i = 0; a->conn != NULL && i < a->slots; i++)
                if (a->conn[i].conn != NULL)
                        ctl_agents_detach(a, i);
        if (a->timerfd >= 0) {
                ctl_loop_del(a->ctx->loop, a->timerfd);
                close(a->timerfd);
        }
        ctl_chans_fini(&a->chans);
        free(a->conn);
        memset(a, 0, sizeof(*a));
        a->timerfd = -1;
}

bool ctl_agents_is_attach(const char *line, uint32_t len)
{
        while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\r'))
                len--;
        return len == 6 && memcmp(line, "attach", 6) == 0;
}

int ctl_send_fds(int fd, const char *text, size_t len, const int *fds, unsigned n)
{
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(2 * sizeof(int))];
        } ctl;
        struct iovec iov = { .iov_base = (void *)text, .iov_len = len };
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
        if (n > 2)
                return -EINVAL;
        if (n > 0) {
                memset(ctl.buf, 0, sizeof(ctl.buf));
                m.msg_control = ctl.buf;
                m.msg_controllen = CMSG_SPACE(n * sizeof(int));
                struct cmsghdr *c = CMSG_FIRSTHDR(&m);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(n * sizeof(int));
                memcpy(CMSG_DATA(c), fds, n * sizeof(int));
        }
        ssize_t sent;
        do
                sent = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (sent < 0 && errno == EINTR);
        if (sent < 0)
                return -errno;
        /* The descriptors went with the first byte; a short write of so
         * small an answer on a socket with nothing else queued does not
         * happen, but the caller must not hand out half an answer. */
        return (size_t)sent == len ? 0 : -EAGAIN;
}

/* Sends the answer with the slot's two descriptors. */
static int ctl_agents_send(struct ctl_agents *a, int fd, uint32_t slot, uint32_t gen)
{
        const struct dp_agent_file *f = &a->engine->agent_files[slot];
        const struct dp_agent_slot *s = dp_agent_slot_at(a->engine, slot);
        char text[160];
        int len = snprintf(text, sizeof(text),
                           "agent slot=%u gen=%u workers=%u ring=%u file=%llu max-subs=%u\n\n",
                           slot, gen, a->engine->workers, a->engine->hdr->agent_dlv_ring_bytes,
                           (unsigned long long)f->bytes, s->max_subs);
        int fds[2] = { f->fd, f->efd };
        return ctl_send_fds(fd, text, (size_t)len, fds, 2);
}

int ctl_agents_attach(struct ctl_agents *a, int fd, void *conn, char *why, size_t whylen)
{
        struct ucred cred;
        socklen_t clen = sizeof(cred);
        uint32_t slot, gen;
        if (a->slots == 0) {
                ctl_agents_why(why, whylen, "this atomqd has no agent slots (--max-agents 0)");
                return -ENODEV;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0) {
                ctl_agents_why(why, whylen, "cannot read the peer's credentials");
                return -errno;
        }
        /* Before any memory is touched for it: a refused peer gets a line
         * of text and nothing else. */
        if (!ctl_uids_has(&a->allowed, cred.uid)) {
                a->refused++;
                uint64_t n = ++a->ctx->agents_refused_uid;
                snprintf(why, whylen, "uid %u may not attach agents (not on --agent-uids)",
                         (unsigned)cred.uid);
                /* Logged on the 1st, 2nd, 4th, 8th, ... refusal: a peer
                 * retrying in a loop cannot flood the log. */
                if ((n & (n - 1)) == 0)
                        shm_log(SHM_LOG_WARN, "agent attach refused: pid %d uid %u is not on "
                                "--agent-uids (%llu refused so far)", (int)cred.pid,
                                (unsigned)cred.uid, (unsigned long long)n);
                return -EPERM;
        }
        int pidfd = pidfd_open(cred.pid, 0);
        if (pidfd < 0) {
                ctl_agents_why(why, whylen, "cannot watch the agent's process");
                return -errno;
        }
        struct dp_agent_quota q = { .max_subs = a->ctx->cfg->agent_max_subs,
                                    .max_entities = a->ctx->cfg->agent_max_entities };
        int rc = dp_agent_open(a->engine, cred.pid, cred.uid, &q, &slot, &gen);
        if (rc == -EUSERS) {
                a->refused++;
                ctl_agents_why(why, whylen, "every agent slot is taken (raise --max-agents)");
        } else if (rc != 0) {
                ctl_agents_why(why, whylen, "cannot prepare the agent's memory");
        }
        if (rc == 0) {
                rc = ctl_agents_send(a, fd, slot, gen);
                if (rc != 0) {
                        dp_agent_close(a->engine, slot);
                        ctl_agents_why(why, whylen, "cannot send the agent its memory");
                }
        }
        if (rc == 0)
                rc = ctl_loop_add(a->ctx->loop, pidfd, EPOLLIN, ctl_agents_on_exit, a);
        if (rc != 0) {
                close(pidfd);
                return rc;
        }
        a->conn[slot] = (struct ctl_agent_conn){ .conn = conn, .pidfd = pidfd, .pid = cred.pid };
        a->attached++;
        shm_log(SHM_LOG_INFO, "agent %u attached: pid %d uid %u", slot, (int)cred.pid,
                (unsigned)cred.uid);
        return (int)slot;
}

void ctl_agents_detach(struct ctl_agents *a, uint32_t slot)
{
        if (slot >= a->slots || a->conn[slot].conn == NULL)
                return;
        struct ctl_agent_conn *c = &a->conn[slot];
        ctl_chans_agent_gone(&a->chans, (int32_t)slot);
        dp_agent_close(a->engine, slot);
        if (c->pidfd >= 0) {
                ctl_loop_del(a->ctx->loop, c->pidfd);
                close(c->pidfd);
        }
        shm_log(SHM_LOG_INFO, "agent %u (pid %d) detached", slot, (int)c->pid);
        *c = (struct ctl_agent_conn){ .pidfd = -1 };
        a->detached++;
}

int ctl_agents_channel(struct ctl_agents *a, int fd, int32_t slot, const char *args,
                       uint32_t len)
{
        return ctl_chans_command(&a->chans, fd, slot, args, len);
}

uint32_t ctl_agents_count(const struct ctl_agents *a)
{
        uint32_t n = 0;
        for (uint32_t i = 0; i < a->slots; i++)
                n += a->conn[i].conn != NULL;
        return n;
}
