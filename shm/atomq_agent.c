/* atomq_agent.c - libatomq's agent connection: attach through atomqd's
 * control socket, then talk to the workers through the agent's own rings
 * (shm/shm_agent.h). The calls are in include/atomq/atomq.h.
 *
 * A command goes to the ring of the worker that owns it (the shard of its
 * name, of its handle, or of a publish's subject: the same functions the
 * dataplane uses), so no worker forwards an agent's command. Calls wait for
 * their own completion, which is the next one on that worker's completion
 * ring that carries their request id; completions of asynchronous commands
 * (publish) met on the way are counted and their first error is kept for
 * atomq_flush. Waiting spins briefly (a reply within microseconds is the
 * common case), then sleeps on the agent's futex word, which workers notify
 * after each pass that gave the agent something.
 *
 * Nothing read from the rings is trusted: every record is length-checked
 * and every frame goes through atomq_frame_check before it is handed out.
 */
#include "atomq/atomq.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "dataplane/dp_agent.h"
#include "dataplane/dp_cmd.h"
#include "dataplane/dp_handle.h"
#include "shm/atomq_udp_pvt.h"
#include "shm/shm_agent.h"
#include "shm/shm_clock.h"
#include "shm/shm_vring.h"

#define ATOMQ_TIMEOUT_NS_DEFAULT (10ll * 1000000000)
/* Polls of a ring before a waiter sleeps: about 20-50 us of spinning. */
#define ATOMQ_SPINS 4000u
/* Commands of a pipelined call in flight on one worker before it reads
 * the answers that came back. */
#define ATOMQ_ASYNC_DRAIN 1024u
#define ATOMQ_ANSWER_MAX 512u

struct atomq {
        struct atomq_udp *udp;  /* a remote agent over UDP (atomq_udp.c); NULL: shm */
        int sock;
        int memfd;
        int efd;
        uint8_t *map;
        uint64_t map_bytes;
        struct shm_agent_hdr *hdr;
        uint32_t workers;
        uint32_t slot;
        uint32_t gen;
        uint32_t max_subs;
        int64_t timeout_ns;
        uint64_t next_req;
        int async_err;          /* first error of an asynchronous command since flush */
        int dlv_held;           /* worker of the borrowed delivery; -1: none */
        int cpl_held;           /* worker of the borrowed batch; -1: none */
        uint32_t recv_next;     /* the delivery ring atomq_recv looks at first */
        uint64_t bad_records;   /* records of ours that did not check */
        uint32_t *inflight;     /* [workers]: commands not yet answered */
        uint32_t *quiet;        /* [workers]: quiet publishes since the last flush */
        struct shm_vring *cmd;  /* [workers]: producer */
        struct shm_vring *cpl;  /* [workers]: consumer */
        struct shm_vring *dlv;  /* [workers]: consumer */
        struct shm_wake **doorbell;
};

/* ---- connecting ---------------------------------------------------------- */

static int atomq_default_path(char *buf, size_t len)
{
        const char *env = getenv("ATOMQ_CONTROL");
        int n;
        if (env != NULL && env[0] != 0) {
                n = snprintf(buf, len, "%s", env);
        } else if (geteuid() == 0) {
                n = snprintf(buf, len, "/run/atomq/control.sock");
        } else {
                const char *dir = getenv("XDG_RUNTIME_DIR");
                if (dir == NULL || dir[0] != '/')
                        return -ENOENT;
                n = snprintf(buf, len, "%s/atomq/control.sock", dir);
        }
        return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int atomq_sock_open(const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
                int err = errno;
                close(fd);
                return -err;
        }
        return fd;
}

/* Reads one reply (up to its empty line) into buf; takes the descriptors
 * that come with it (at most 2) into fds. */
static int atomq_sock_reply(int fd, char *buf, size_t len, int *fds, int *nfds)
{
        size_t have = 0;
        while (have + 1 < len) {
                union {
                        struct cmsghdr h;
                        char b[CMSG_SPACE(2 * sizeof(int))];
                } ctl;
                struct iovec iov = { .iov_base = buf + have, .iov_len = len - 1 - have };
                struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
                                    .msg_controllen = sizeof(ctl.b) };
                ssize_t n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : -EPROTO;
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c)) {
                        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                                continue;
                        int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                        int got[2];
                        memcpy(got, CMSG_DATA(c), (size_t)(k < 2 ? k : 2) * sizeof(int));
                        for (int i = 0; i < k; i++) {
                                int v;
                                memcpy(&v, CMSG_DATA(c) + (size_t)i * sizeof(int), sizeof(v));
                                if (*nfds < 2)
                                        fds[(*nfds)++] = v;
                                else
                                        close(v);
                        }
                }
                have += (size_t)n;
                buf[have] = 0;
                if (have >= 2 && strstr(buf, "\n\n") != NULL)
                        return 0;
        }
        return -EPROTO;
}

/* An error reply, "error: attach: WHY (ENAME)", as -errno. */
static int atomq_reply_errno(const char *text)
{
        static const struct { const char *name; int err; } names[] = {
                { "(EUSERS)", EUSERS }, { "(EPERM)", EPERM },     { "(ENODEV)", ENODEV },
                { "(EBUSY)", EBUSY },   { "(EISCONN)", EISCONN }, { "(ENOMEM)", ENOMEM },
                { "(EEXIST)", EEXIST }, { "(ENOENT)", ENOENT },   { "(EINVAL)", EINVAL },
                { "(ENOSPC)", ENOSPC }, { "(ENOTCONN)", ENOTCONN },
        };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                if (strstr(text, names[i].name) != NULL)
                        return -names[i].err;
        return -EPROTO;
}

static int atomq_alloc(struct atomq **out, uint32_t workers)
{
        struct atomq *a = calloc(1, sizeof(*a));
        if (a == NULL)
                return -ENOMEM;
        a->sock = a->memfd = a->efd = -1;
        a->dlv_held = a->cpl_held = -1;
        a->timeout_ns = ATOMQ_TIMEOUT_NS_DEFAULT;
        a->workers = workers;
        a->inflight = calloc(workers, sizeof(*a->inflight));
        a->quiet = calloc(workers, sizeof(*a->quiet));
        a->cmd = calloc(workers, sizeof(*a->cmd));
        a->cpl = calloc(workers, sizeof(*a->cpl));
        a->dlv = calloc(workers, sizeof(*a->dlv));
        a->doorbell = calloc(workers, sizeof(*a->doorbell));
        *out = a;
        if (a->inflight == NULL || a->quiet == NULL || a->cmd == NULL || a->cpl == NULL || a->dlv == NULL ||
            a->doorbell == NULL)
                return -ENOMEM;
        return 0;
}

/* Maps the agent file and opens the views of every worker's rings, checked
 * against the geometry atomqd announced. */
static int atomq_map(struct atomq *a, uint32_t ring_bytes, uint64_t file_bytes)
{
        struct shm_agent_layout l;
        struct stat st;
        if (shm_agent_layout(a->workers, DP_AGENT_CMD_RING_BYTES, DP_AGENT_CPL_RING_BYTES,
                             ring_bytes, &l) != 0 || l.file_bytes != file_bytes)
                return -EPROTO;
        if (fstat(a->memfd, &st) != 0 || (uint64_t)st.st_size != file_bytes)
                return -EPROTO;
        void *p = mmap(NULL, file_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, a->memfd, 0);
        if (p == MAP_FAILED)
                return -errno;
        a->map = p;
        a->map_bytes = file_bytes;
        a->hdr = p;
        if (a->hdr->magic != SHM_AGENT_MAGIC || a->hdr->version != SHM_AGENT_VERSION)
                return -EPROTO;
        for (uint32_t w = 0; w < a->workers; w++) {
                int rc = shm_vring_attach(&a->cmd[w], a->map + shm_agent_cmd_off(&l, w),
                                          l.cmd_stride);
                if (rc == 0)
                        rc = shm_vring_attach(&a->cpl[w], a->map + shm_agent_cpl_off(&l, w),
                                              l.cpl_stride);
                if (rc == 0)
                        rc = shm_vring_attach(&a->dlv[w], a->map + shm_agent_dlv_off(&l, w),
                                              l.dlv_stride);
                if (rc != 0)
                        return -EPROTO;
                a->doorbell[w] = (struct shm_wake *)(a->map + l.doorbell_off +
                                                     (uint64_t)w * SHM_CACHE_LINE);
        }
        return 0;
}

int atomq_connect(const char *path, struct atomq **out)
{
        char def[256], buf[ATOMQ_ANSWER_MAX];
        int fds[2] = { -1, -1 }, nfds = 0;
        unsigned slot, gen, workers, ring, subs;
        unsigned long long file;
        struct atomq *a = NULL;
        *out = NULL;
        if (path == NULL) {
                int rc = atomq_default_path(def, sizeof(def));
                if (rc != 0)
                        return rc;
                path = def;
        }
        if (atomq_udp_is_url(path)) {
                /* A remote agent: a datagram session instead of the rings. */
                a = calloc(1, sizeof(*a));
                if (a == NULL)
                        return -ENOMEM;
                a->sock = a->memfd = a->efd = -1;
                int rc = atomq_udp_connect(path, &a->udp);
                if (rc != 0) {
                        free(a);
                        return rc;
                }
                *out = a;
                return 0;
        }
        int fd = atomq_sock_open(path);
        if (fd < 0)
                return fd;
        int rc = atomq_sock_reply(fd, buf, sizeof(buf), fds, &nfds);
        if (rc == 0 && strncmp(buf, "atomqd ", 7) != 0)
                rc = -EPROTO;
        if (rc == 0 && send(fd, "attach\n", 7, MSG_NOSIGNAL) != 7)
                rc = -errno;
        if (rc == 0)
                rc = atomq_sock_reply(fd, buf, sizeof(buf), fds, &nfds);
        if (rc == 0 && strncmp(buf, "agent ", 6) != 0)
                rc = atomq_reply_errno(buf);
        if (rc == 0 && (sscanf(buf, "agent slot=%u gen=%u workers=%u ring=%u file=%llu "
                               "max-subs=%u", &slot, &gen, &workers, &ring, &file, &subs) != 6 ||
                        nfds != 2 || workers == 0 || workers > SHM_AGENT_WORKERS_MAX))
                rc = -EPROTO;
        if (rc == 0)
                rc = atomq_alloc(&a, workers);
        if (a != NULL) {
                a->sock = fd;
                a->memfd = fds[0];
                a->efd = fds[1];
                fd = fds[0] = fds[1] = -1;
        }
        if (rc == 0) {
                a->slot = slot;
                a->gen = gen;
                a->max_subs = subs;
                rc = atomq_map(a, ring, file);
        }
        if (rc != 0) {
                atomq_close(a);
                for (int i = 0; i < 2; i++)
                        if (fds[i] >= 0)
                                close(fds[i]);
                if (fd >= 0)
                        close(fd);
                return rc;
        }
        *out = a;
        return 0;
}

void atomq_close(struct atomq *a)
{
        if (a == NULL)
                return;
        if (a->udp != NULL) {
                atomq_udp_close(a->udp);
                free(a);
                return;
        }
        /* Closing the socket is the detach: atomqd takes the slot back. */
        if (a->sock >= 0)
                close(a->sock);
        if (a->map != NULL)
                munmap(a->map, a->map_bytes);
        if (a->memfd >= 0)
                close(a->memfd);
        if (a->efd >= 0)
                close(a->efd);
        free(a->inflight);
        free(a->quiet);
        free(a->cmd);
        free(a->cpl);
        free(a->dlv);
        free(a->doorbell);
        free(a);
}

void atomq_set_timeout(struct atomq *a, int64_t timeout_ns)
{
        if (a->udp != NULL)
                atomq_udp_set_timeout(a->udp, timeout_ns);
        a->timeout_ns = timeout_ns;
}

int atomq_fd(const struct atomq *a)
{
        if (a->udp != NULL)
                return atomq_udp_fd(a->udp);
        return a->efd;
}

uint64_t atomq_dropped(const struct atomq *a)
{
        if (a->udp != NULL)
                return atomq_udp_dropped(a->udp);
        /* Kept by the workers in the agent's own file (atomqd's copy, in
         * the arena, is what `show agents` prints). */
        return atomic_load_explicit(&a->hdr->dropped, memory_order_relaxed);
}

/* ---- rings --------------------------------------------------------------- */

static bool atomq_revoked(const struct atomq *a)
{
        /* Pairs with the release store in dp_agent_close. */
        return atomic_load_explicit(&a->hdr->revoked, memory_order_acquire) != 0;
}

static uint64_t atomq_deadline(const struct atomq *a)
{
        return a->timeout_ns < 0 ? UINT64_MAX : shm_clock_ns() + (uint64_t)a->timeout_ns;
}

/* try_fn returns > 0 (found) or < 0 (error) to finish, 0 to go on. Spins,
 * then sleeps on the agent's word until deadline_ns. */
static int atomq_wait(struct atomq *a, uint64_t deadline_ns, int (*try_fn)(void *), void *arg)
{
        for (unsigned i = 0; i < ATOMQ_SPINS; i++) {
                int rc = try_fn(arg);
                if (rc != 0)
                        return rc;
                shm_cpu_relax();
        }
        for (;;) {
                if (atomq_revoked(a))
                        return -ECONNRESET;
                uint64_t now = shm_clock_ns();
                if (now >= deadline_ns)
                        return -ETIMEDOUT;
                /* Bounded sleeps: atomqd's revocation wakes us too, but a
                 * dataplane that died mid-answer does not. */
                int64_t left = deadline_ns - now > 100000000 ? 100000000
                                                             : (int64_t)(deadline_ns - now);
                int rc = shm_wake_until(&a->hdr->wake, left, try_fn, arg);
                if (rc != -ETIMEDOUT)
                        return rc;
        }
}

/* The completion at the head of worker w's ring, checked; NULL when the
 * ring is empty. A record that does not check is dropped and counted. */
static int atomq_cpl_peek(struct atomq *a, uint32_t w, const struct dp_cpl **c, uint32_t *len)
{
        struct shm_vring_rec rec;
        for (;;) {
                int rc = shm_vring_peek(&a->cpl[w], &rec);
                if (rc <= 0)
                        return rc;
                const struct dp_cpl *p = rec.data;
                /* A stat answer keeps its full size when it fails
                 * (msgs_bytes 0): the record may be longer than it says. */
                if (rec.type == DP_REC_CPL && rec.len >= sizeof(*p) && p->magic == DP_CPL_MAGIC &&
                    (uint64_t)sizeof(*p) + p->msgs_bytes <= rec.len) {
                        *c = p;
                        *len = (uint32_t)sizeof(*p) + p->msgs_bytes;
                        return 1;
                }
                a->bad_records++;
                shm_vring_release(&a->cpl[w]);
        }
}

/* Takes an answer that nobody waits for (an asynchronous command's). */
static void atomq_cpl_async(struct atomq *a, uint32_t w, const struct dp_cpl *c)
{
        if (c->status < 0 && a->async_err == 0)
                a->async_err = c->status;
        /* A publish is quiet (DP_CMD_F_QUIET): it was never counted in
         * flight, and is answered only when it failed. */
        if (c->op != ATOMQ_OP_PUB && a->inflight[w] > 0)
                a->inflight[w]--;
        shm_vring_release(&a->cpl[w]);
}

/* Reads every answer waiting on worker w (none is waited for now). */
static int atomq_cpl_drain(struct atomq *a, uint32_t w)
{
        const struct dp_cpl *c;
        uint32_t len;
        int rc;
        while ((rc = atomq_cpl_peek(a, w, &c, &len)) == 1)
                atomq_cpl_async(a, w, c);
        return rc < 0 ? -EPROTO : 0;
}

static void atomq_batch_drop(struct atomq *a)
{
        if (a->cpl_held >= 0) {
                shm_vring_release(&a->cpl[a->cpl_held]);
                a->cpl_held = -1;
        }
}

void atomq_batch_release(struct atomq *a, struct atomq_batch *b)
{
        if (a->udp != NULL) {
                atomq_udp_batch_release(a->udp, b);
                return;
        }
        if (b != NULL && b->worker >= 0 && b->worker == a->cpl_held)
                atomq_batch_drop(a);
        if (b != NULL)
                b->worker = -1;
}

struct atomq_pipe;
static void atomq_pipe_take(struct atomq *a, uint32_t w, struct atomq_pipe *p);

/* Puts a command on worker w's ring, waiting (and reading answers that
 * came back meanwhile) while it is full. The answers read go to pipe, the
 * pipelined call in progress, when it is not NULL: taken as asynchronous
 * ones, a pipeline's answers would be lost to it (its handles left 0). */
static int atomq_submit(struct atomq *a, uint32_t w, struct dp_cmd *c, const char *name,
                        const struct dp_msg_in *m, struct atomq_pipe *pipe)
{
        uint32_t len = dp_cmd_bytes(c->name_len, m);
        uint64_t deadline_ns = 0;
        if (len == 0)
                return m != NULL ? -EMSGSIZE : -EINVAL;
        /* A connection atomqd took back takes no more commands, and says
         * so before anything is read from its rings: no worker reads them
         * now, and their corruption may be why it was taken back (a call
         * would report -EPROTO, or wait out its timeout, instead of
         * -ECONNRESET). Pairs with the release store in dp_agent_close. */
        if (atomq_revoked(a))
                return -ECONNRESET;
        c->req_id = ++a->next_req;
        c->client = 0; /* the worker writes our own column */
        for (;;) {
                void *p = shm_vring_reserve(&a->cmd[w], len);
                if (p != NULL) {
                        dp_cmd_encode(p, len, c, name, m);
                        shm_vring_commit(&a->cmd[w], DP_REC_CMD);
                        if (c->flags & DP_CMD_F_QUIET)
                                a->quiet[w]++;
                        else
                                a->inflight[w]++;
                        /* Pairs with the worker's prepare on its doorbell: it
                         * sees the record, or we see it asleep and wake it. */
                        shm_wake_notify(a->doorbell[w]);
                        return 0;
                }
                if (a->cmd[w].reserve_err != -ENOBUFS)
                        return a->cmd[w].reserve_err;
                shm_wake_notify(a->doorbell[w]);
                if (pipe != NULL)
                        atomq_pipe_take(a, w, pipe);
                else if (atomq_cpl_drain(a, w) != 0)
                        return -EPROTO;
                if (atomq_revoked(a))
                        return -ECONNRESET;
                if (deadline_ns == 0)
                        deadline_ns = atomq_deadline(a);
                else if (shm_clock_ns() >= deadline_ns)
                        return -ETIMEDOUT;
                shm_cpu_relax();
        }
}

struct atomq_want {
        struct atomq *a;
        uint32_t w;
        uint64_t req_id;
        const struct dp_cpl *c;
        uint32_t len;
};

static int atomq_want_try(void *arg)
{
        struct atomq_want *x = arg;
        const struct dp_cpl *c;
        uint32_t len;
        int rc;
        while ((rc = atomq_cpl_peek(x->a, x->w, &c, &len)) == 1) {
                if (c->req_id == x->req_id) {
                        x->c = c;
                        x->len = len;
                        if (x->a->inflight[x->w] > 0)
                                x->a->inflight[x->w]--;
                        return 1;
                }
                atomq_cpl_async(x->a, x->w, c);
        }
        return rc < 0 ? -EPROTO : 0;
}

/* Submits c to worker w and waits for its answer, which stays at the head
 * of the completion ring (held) until atomq_cpl_done. */
static int atomq_call(struct atomq *a, uint32_t w, struct dp_cmd *c, const char *name,
                      const struct dp_msg_in *m, struct atomq_want *x)
{
        atomq_batch_drop(a);
        if (a->dlv_held >= 0 && atomq_revoked(a))
                return -ECONNRESET;
        int rc = atomq_submit(a, w, c, name, m, NULL);
        if (rc != 0)
                return rc;
        *x = (struct atomq_want){ .a = a, .w = w, .req_id = c->req_id };
        rc = atomq_wait(a, atomq_deadline(a), atomq_want_try, x);
        return rc == 1 ? 0 : rc;
}

static void atomq_cpl_done(struct atomq *a, const struct atomq_want *x)
{
        shm_vring_release(&a->cpl[x->w]);
}

/* A call whose answer is one status (and a handle, a sequence, a count). */
static int atomq_call_simple(struct atomq *a, uint32_t w, struct dp_cmd *c, const char *name,
                             const struct dp_msg_in *m, struct dp_cpl *out)
{
        struct atomq_want x;
        int rc = atomq_call(a, w, c, name, m, &x);
        if (rc != 0)
                return rc;
        if (out != NULL)
                *out = *x.c;
        rc = x.c->status;
        atomq_cpl_done(a, &x);
        return rc;
}

/* ---- routing (as dp_engine_owner) ---------------------------------------- */

static uint32_t atomq_worker_of_name(const struct atomq *a, const char *name, size_t len)
{
        return (uint32_t)(XXH3_64bits(name, len) % a->workers);
}

/* The worker of an entity named by handle or name; -EINVAL: neither, or a
 * handle of no worker. */
static int atomq_worker_of(const struct atomq *a, uint64_t handle, const char *name,
                           uint32_t *w)
{
        if (handle != DP_HANDLE_NONE) {
                *w = dp_handle_shard(handle);
                return *w < a->workers ? 0 : -EINVAL;
        }
        if (name == NULL || name[0] == 0 || strlen(name) > DP_CMD_NAME_MAX)
                return -EINVAL;
        *w = atomq_worker_of_name(a, name, strlen(name));
        return 0;
}

static uint32_t atomq_worker_of_group(const struct atomq *a, uint32_t group)
{
        uint8_t b[4] = { (uint8_t)group, (uint8_t)(group >> 8), (uint8_t)(group >> 16),
                         (uint8_t)(group >> 24) };
        return atomq_worker_of_name(a, (const char *)b, sizeof(b));
}

static void atomq_msg_in(struct dp_msg_in *m, const char *key, const void *data, uint32_t len,
                         const struct atomq_msg_opts *o)
{
        *m = (struct dp_msg_in){ .subject = key, .subject_len = key != NULL ? (uint32_t)strlen(key) : 0,
                                 .payload = data, .payload_len = len, .storage = -1 };
        if (o != NULL) {
                m->ttl_ms = o->ttl_ms;
                m->reply = o->reply;
                m->headers = o->headers;
                m->headers_len = o->headers != NULL ? o->headers_len : 0;
                m->storage = o->storage;
                m->end = o->end;
        }
}

/* ---- entities ------------------------------------------------------------ */

static int atomq_create_cmd(struct dp_cmd *c, enum atomq_mode mode, const char *name,
                            const struct atomq_create_opts *o)
{
        size_t len = name != NULL ? strlen(name) : 0;
        if ((unsigned)mode > ATOMQ_MODE_LOG || len > DP_CMD_NAME_MAX)
                return -EINVAL;
        *c = (struct dp_cmd){ .op = ATOMQ_OP_CREATE, .name_len = (uint16_t)len };
        c->args.create.mode = (uint8_t)mode;
        c->args.create.overflow = -1;
        if (o != NULL) {
                c->args.create.ttl_ms = o->ttl_ms;
                c->args.create.max_msgs = o->max_msgs;
                c->args.create.max_bytes = o->max_bytes;
                if (o->storage_set) {
                        c->args.create.flags |= DP_CMD_CREATE_F_STORAGE;
                        c->args.create.storage = o->storage;
                }
                if (o->ttl_idle)
                        c->args.create.flags |= DP_CMD_CREATE_F_TTL_IDLE;
        }
        return 0;
}

int atomq_create(struct atomq *a, enum atomq_mode mode, const char *name,
                 const struct atomq_create_opts *o, uint64_t *handle)
{
        if (a->udp != NULL)
                return atomq_udp_create(a->udp, mode, name, o, handle);
        struct dp_cmd c;
        struct dp_cpl r;
        int rc = atomq_create_cmd(&c, mode, name, o);
        if (rc != 0)
                return rc;
        /* An anonymous entity may live anywhere: spread them. */
        uint32_t w = c.name_len != 0 ? atomq_worker_of_name(a, name, c.name_len)
                                     : (uint32_t)(a->next_req % a->workers);
        rc = atomq_call_simple(a, w, &c, name, NULL, &r);
        if (rc == 0 && handle != NULL)
                *handle = r.handle;
        return rc;
}

/* Pipelined calls: answers come back in order per worker, so the k-th
 * answer of worker w belongs to the k-th command sent to w. */
struct atomq_pipe {
        uint64_t first_req;
        uint32_t *index;        /* req_id - first_req -> caller's index */
        uint64_t *handles;
        int done;
        int first_err;
};

static void atomq_pipe_take(struct atomq *a, uint32_t w, struct atomq_pipe *p)
{
        const struct dp_cpl *c;
        uint32_t len;
        while (atomq_cpl_peek(a, w, &c, &len) == 1) {
                /* Ours only if this pipeline issued that id: a replayed
                 * or stale answer must not index past what was sent. */
                uint64_t k = c->req_id - p->first_req;
                if (c->req_id >= p->first_req && c->req_id <= a->next_req && p->index != NULL) {
                        if (p->handles != NULL)
                                p->handles[p->index[k]] = c->status == 0 ? c->handle : 0;
                        if (c->status == 0)
                                p->done++;
                        else if (p->first_err == 0)
                                p->first_err = c->status;
                        shm_vring_release(&a->cpl[w]);
                        if (a->inflight[w] > 0)
                                a->inflight[w]--;
                        continue;
                }
                atomq_cpl_async(a, w, c);
        }
}

/* Is an answer waiting on a ring that owes some (or is it corrupt: the
 * caller's next read says which)? */
static int atomq_idle_try(void *arg)
{
        struct atomq *a = arg;
        struct shm_vring_rec rec;
        for (uint32_t w = 0; w < a->workers; w++)
                if (a->inflight[w] > 0 && shm_vring_peek(&a->cpl[w], &rec) != 0)
                        return 1;
        return 0;
}

/* Waits until every command in flight is answered, handing answers to p
 * (NULL: asynchronous ones only). */
static int atomq_settle(struct atomq *a, struct atomq_pipe *p)
{
        uint64_t deadline_ns = atomq_deadline(a);
        for (;;) {
                bool busy = false;
                for (uint32_t w = 0; w < a->workers; w++) {
                        if (p != NULL)
                                atomq_pipe_take(a, w, p);
                        else if (atomq_cpl_drain(a, w) != 0)
                                return -EPROTO;
                        busy |= a->inflight[w] > 0;
                }
                if (!busy)
                        return 0;
                int rc = atomq_wait(a, deadline_ns, atomq_idle_try, a);
                if (rc < 0)
                        return rc;
        }
}

/* Sends cmds[i] (for i in [0, n)) pipelined: make(i, &c, &name, &w) builds
 * each, answers go to p. */
typedef int atomq_make_fn(void *arg, uint32_t i, struct dp_cmd *c, const char **name,
                          uint32_t *w);

static int atomq_pipeline(struct atomq *a, uint32_t n, atomq_make_fn *make, void *arg,
                          uint64_t *handles)
{
        struct atomq_pipe p = { .first_req = a->next_req + 1, .handles = handles };
        uint32_t *index = malloc((size_t)n * sizeof(*index));
        if (n > 0 && index == NULL)
                return -ENOMEM;
        p.index = index;
        atomq_batch_drop(a);
        int rc = 0;
        for (uint32_t i = 0; i < n && rc == 0; i++) {
                struct dp_cmd c;
                const char *name;
                uint32_t w;
                if (handles != NULL)
                        handles[i] = 0;
                rc = make(arg, i, &c, &name, &w);
                if (rc == -EINVAL) {
                        /* This one only; its request id is never used. */
                        a->next_req++;
                        index[i] = i;
                        if (p.first_err == 0)
                                p.first_err = rc;
                        rc = 0;
                        continue;
                }
                index[a->next_req + 1 - p.first_req] = i;
                if (rc == 0)
                        rc = atomq_submit(a, w, &c, name, NULL, &p);
                if (rc == 0 && a->inflight[w] >= ATOMQ_ASYNC_DRAIN)
                        atomq_pipe_take(a, w, &p);
        }
        int src = atomq_settle(a, &p);
        free(index);
        if (rc == 0)
                rc = src;
        if (rc != 0)
                return rc;
        return p.done > 0 || p.first_err == 0 ? p.done : p.first_err;
}

struct atomq_create_arg {
        const struct atomq *a;
        enum atomq_mode mode;
        const char *const *names;
        const struct atomq_create_opts *o;
};

static int atomq_create_make(void *arg, uint32_t i, struct dp_cmd *c, const char **name,
                             uint32_t *w)
{
        struct atomq_create_arg *x = arg;
        *name = x->names[i];
        if (*name == NULL || (*name)[0] == 0)
                return -EINVAL;
        int rc = atomq_create_cmd(c, x->mode, *name, x->o);
        if (rc == 0)
                *w = atomq_worker_of_name(x->a, *name, c->name_len);
        return rc;
}

int atomq_create_many(struct atomq *a, enum atomq_mode mode, const char *const *names,
                      uint32_t n, const struct atomq_create_opts *o, uint64_t *handles)
{
        if (a->udp != NULL)
                return -ENOTSUP; /* no pipelined create in the datagram protocol */
        struct atomq_create_arg x = { a, mode, names, o };
        return atomq_pipeline(a, n, atomq_create_make, &x, handles);
}

struct atomq_destroy_arg {
        const struct atomq *a;
        const uint64_t *handles;
};

static int atomq_destroy_make(void *arg, uint32_t i, struct dp_cmd *c, const char **name,
                              uint32_t *w)
{
        struct atomq_destroy_arg *x = arg;
        *name = NULL;
        *c = (struct dp_cmd){ .op = ATOMQ_OP_DESTROY, .handle = x->handles[i] };
        if (x->handles[i] == DP_HANDLE_NONE)
                return -EINVAL;
        return atomq_worker_of(x->a, x->handles[i], NULL, w);
}

int atomq_destroy_many(struct atomq *a, const uint64_t *handles, uint32_t n)
{
        if (a->udp != NULL)
                return -ENOTSUP;
        struct atomq_destroy_arg x = { a, handles };
        return atomq_pipeline(a, n, atomq_destroy_make, &x, NULL);
}

/* A command on one entity, by handle or name. */
static int atomq_entity_cmd(struct atomq *a, struct dp_cmd *c, uint64_t handle,
                            const char *name, uint32_t *w)
{
        int rc = atomq_worker_of(a, handle, name, w);
        if (rc != 0)
                return rc;
        c->handle = handle;
        c->name_len = handle == DP_HANDLE_NONE ? (uint16_t)strlen(name) : 0;
        return 0;
}

int atomq_destroy(struct atomq *a, uint64_t handle, const char *name)
{
        if (a->udp != NULL)
                return atomq_udp_destroy(a->udp, handle, name);
        struct dp_cmd c = { .op = ATOMQ_OP_DESTROY };
        uint32_t w;
        int rc = atomq_entity_cmd(a, &c, handle, name, &w);
        return rc != 0 ? rc : atomq_call_simple(a, w, &c, name, NULL, NULL);
}

int atomq_lookup(struct atomq *a, const char *name, uint64_t *handle)
{
        if (a->udp != NULL)
                return -ENOTSUP; /* no STAT op over UDP */
        struct dp_cmd c = { .op = DP_OP_STAT };
        struct dp_cpl r;
        uint32_t w;
        int rc = atomq_entity_cmd(a, &c, DP_HANDLE_NONE, name, &w);
        if (rc == 0)
                rc = atomq_call_simple(a, w, &c, name, NULL, &r);
        if (rc == 0)
                *handle = r.handle;
        return rc;
}

/* ---- messages ------------------------------------------------------------ */

int atomq_send(struct atomq *a, uint64_t handle, const char *name, const char *key,
               const void *data, uint32_t len, const struct atomq_msg_opts *o, uint64_t *seq)
{
        if (a->udp != NULL)
                return atomq_udp_send(a->udp, handle, name, key, data, len, o, seq);
        struct dp_cmd c = { .op = ATOMQ_OP_SEND };
        struct dp_msg_in m;
        struct dp_cpl r;
        uint32_t w;
        int rc = atomq_entity_cmd(a, &c, handle, name, &w);
        if (rc != 0)
                return rc;
        atomq_msg_in(&m, key, data, len, o);
        if (o != NULL && o->storage != ATOMQ_STORAGE_DEFAULT) {
                c.args.send.flags = DP_CMD_SEND_F_STORAGE;
                c.args.send.storage = o->storage;
        }
        if (o != NULL)
                c.args.send.end = o->end;
        rc = atomq_call_simple(a, w, &c, name, &m, &r);
        if (rc == 0 && seq != NULL)
                *seq = r.seq;
        return rc;
}

/* Subjects: tokens of [^ .*>] split by '.', wildcards only where allowed
 * (shared with atomq_udp.c through atomq_udp_pvt.h). */
bool atomq_subject_ok(const char *s, size_t len, bool wildcards)
{
        if (len == 0 || len > DP_CMD_NAME_MAX || s[0] == '.' || s[len - 1] == '.')
                return false;
        for (size_t i = 0; i < len; i++) {
                char ch = s[i];
                if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == 0)
                        return false;
                if (ch == '.' && s[i + 1] == '.')
                        return false;
                if ((ch == '*' || ch == '>') && !wildcards)
                        return false;
        }
        return true;
}

int atomq_publish(struct atomq *a, const char *subject, const void *data, uint32_t len,
                  const struct atomq_msg_opts *o)
{
        if (a->udp != NULL)
                return atomq_udp_publish(a->udp, subject, data, len, o);
        /* Quiet: answered only if it fails (atomq_flush collects those). */
        struct dp_cmd c = { .op = ATOMQ_OP_PUB, .flags = DP_CMD_F_QUIET };
        struct dp_msg_in m;
        size_t slen = subject != NULL ? strlen(subject) : 0;
        if (!atomq_subject_ok(subject, slen, false))
                return -EINVAL;
        uint32_t w = atomq_worker_of_name(a, subject, slen);
        atomq_msg_in(&m, subject, data, len, o);
        atomq_batch_drop(a);
        return atomq_submit(a, w, &c, NULL, &m, NULL);
}

int atomq_flush(struct atomq *a)
{
        if (a->udp != NULL)
                return atomq_udp_flush(a->udp);
        atomq_batch_drop(a);
        /* A sync on each ring that carried quiet publishes: its answer
         * comes after theirs (a ring is handled in order), failures
         * included. */
        for (uint32_t w = 0; w < a->workers; w++) {
                if (a->quiet[w] == 0)
                        continue;
                struct dp_cmd c = { .op = DP_OP_SYNC };
                int rc = atomq_submit(a, w, &c, NULL, NULL, NULL);
                if (rc != 0)
                        return rc;
                a->quiet[w] = 0;
        }
        int rc = atomq_settle(a, NULL);
        if (rc != 0)
                return rc;
        rc = a->async_err;
        a->async_err = 0;
        return rc;
}

int atomq_subscribe(struct atomq *a, const char *pattern, const char *group, uint32_t sid,
                    uint64_t *sub)
{
        if (a->udp != NULL)
                return atomq_udp_subscribe(a->udp, pattern, group, sid, sub);
        struct dp_cmd c = { .op = ATOMQ_OP_SUB };
        struct dp_cpl r;
        size_t len = pattern != NULL ? strlen(pattern) : 0;
        if (!atomq_subject_ok(pattern, len, true))
                return -EINVAL;
        c.name_len = (uint16_t)len;
        c.args.sub.sid = sid;
        uint32_t w = atomq_worker_of_name(a, pattern, len);
        if (group != NULL) {
                if (group[0] == 0)
                        return -EINVAL;
                /* Nonzero, so "no group" stays 0. */
                c.args.sub.group = (uint32_t)XXH3_64bits(group, strlen(group)) | 1u;
                w = atomq_worker_of_group(a, c.args.sub.group);
        }
        int rc = atomq_call_simple(a, w, &c, pattern, NULL, &r);
        if (rc == 0 && sub != NULL)
                *sub = r.handle;
        return rc;
}

int atomq_unsubscribe(struct atomq *a, uint64_t sub)
{
        if (a->udp != NULL)
                return atomq_udp_unsubscribe(a->udp, sub);
        struct dp_cmd c = { .op = ATOMQ_OP_UNSUB, .handle = sub };
        uint32_t w;
        int rc = atomq_worker_of(a, sub, NULL, &w);
        if (rc != 0 || sub == 0)
                return -ENOENT;
        return atomq_call_simple(a, w, &c, NULL, NULL, NULL);
}

/* ---- deliveries ---------------------------------------------------------- */

/* Fills d from a frame of len bytes at p (checked). */
static int atomq_delivery_fill(struct atomq_delivery *d, const uint8_t *p, uint32_t len)
{
        struct atomq_frame f;
        if (atomq_frame_check(p, len, &f) != ATOMQ_FRAME_OK)
                return -EPROTO;
        struct dp_msg_in m;
        dp_frame_read(&f, p, &m);
        d->subject = m.subject;
        d->subject_len = m.subject_len;
        d->headers = p + sizeof(f) + f.subject_len;
        d->headers_len = m.headers_len;
        d->data = m.payload;
        d->len = m.payload_len;
        d->entity = f.handle;
        d->seq = f.seq;
        d->reply = m.reply;
        d->reply_subject = m.reply_subject;
        d->reply_subject_len = m.reply_subject_len;
        d->flags = (f.flags & ATOMQ_FRAME_F_REDELIVERY) ? ATOMQ_DELIVERY_F_REDELIVERY : 0;
        return 0;
}

void atomq_release(struct atomq *a)
{
        if (a->udp != NULL) {
                atomq_udp_release(a->udp);
                return;
        }
        if (a->dlv_held >= 0) {
                shm_vring_release(&a->dlv[a->dlv_held]);
                a->dlv_held = -1;
        }
}

struct atomq_rx {
        struct atomq *a;
        struct atomq_delivery *d;
};

static int atomq_recv_try(void *arg)
{
        struct atomq_rx *x = arg;
        struct atomq *a = x->a;
        struct shm_vring_rec rec;
        for (uint32_t k = 0; k < a->workers; k++) {
                uint32_t w = (a->recv_next + k) % a->workers;
                for (;;) {
                        int rc = shm_vring_peek(&a->dlv[w], &rec);
                        if (rc < 0)
                                return -EPROTO;
                        if (rc == 0)
                                break;
                        const struct shm_agent_dlv *h = rec.data;
                        if (rec.type == SHM_AGENT_REC_DLV && rec.len >= sizeof(*h) &&
                            atomq_delivery_fill(x->d, (const uint8_t *)(h + 1),
                                                rec.len - (uint32_t)sizeof(*h)) == 0) {
                                x->d->sid = h->sid;
                                x->d->status = h->status;
                                a->dlv_held = (int)w;
                                a->recv_next = (w + 1) % a->workers;
                                return 1;
                        }
                        a->bad_records++;
                        shm_vring_release(&a->dlv[w]);
                }
        }
        return 0;
}

int atomq_recv(struct atomq *a, struct atomq_delivery *d, int64_t timeout_ns)
{
        if (a->udp != NULL)
                return atomq_udp_recv(a->udp, d, timeout_ns);
        struct atomq_rx x = { a, d };
        atomq_release(a);
        int rc = atomq_recv_try(&x);
        if (rc != 0)
                return rc;
        if (timeout_ns == 0)
                return atomq_revoked(a) ? -ECONNRESET : -EAGAIN;
        uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : shm_clock_ns() + (uint64_t)timeout_ns;
        return atomq_wait(a, deadline, atomq_recv_try, &x);
}

int atomq_poll_arm(struct atomq *a)
{
        if (a->udp != NULL)
                return atomq_udp_poll_arm(a->udp);
        uint64_t v;
        struct atomq_delivery d;
        struct atomq_rx x = { a, &d };
        while (read(a->efd, &v, sizeof(v)) == (ssize_t)sizeof(v))
                ;
        /* seq_cst store then re-check: pairs with the worker's fence in
         * shm_wake_notify before it reads armed (dp_worker_agent_wake). */
        atomic_store_explicit(&a->hdr->armed, 1, memory_order_seq_cst);
        if (a->dlv_held >= 0 || atomq_revoked(a))
                return 1;
        int rc = atomq_recv_try(&x);
        if (rc == 1) {
                /* Seen, not taken: atomq_recv hands it out. */
                a->dlv_held = -1;
                return 1;
        }
        return rc < 0 ? rc : 0;
}

/* ---- pulling: fetch, get, read -------------------------------------------- */

static int atomq_batch_call(struct atomq *a, uint32_t w, struct dp_cmd *c, const char *name,
                            struct atomq_batch *b)
{
        struct atomq_want x;
        *b = (struct atomq_batch){ .worker = -1 };
        int rc = atomq_call(a, w, c, name, NULL, &x);
        if (rc != 0)
                return rc;
        if (x.c->status != 0) {
                rc = x.c->status;
                atomq_cpl_done(a, &x);
                return rc;
        }
        *b = (struct atomq_batch){ .count = x.c->count, .bytes = x.c->msgs_bytes, .rec = x.c,
                                   .rec_len = x.len, .worker = (int)w };
        a->cpl_held = (int)w;
        return (int)b->count;
}

int atomq_batch_next(struct atomq_batch *b, struct atomq_delivery *d)
{
        struct dp_cpl_msg m;
        if (b->reserved == ATOMQ_UDP_BATCH_TAG)
                return atomq_udp_batch_next(b, d);
        if (b->worker < 0 || b->rec == NULL)
                return 0;
        int rc = dp_cpl_msg_next(b->rec, b->rec_len, &b->off, &m);
        if (rc != 1)
                return rc;
        *d = (struct atomq_delivery){ .subject = m.subject, .subject_len = m.frame.subject_len,
                                      .headers = m.headers, .headers_len = m.frame.headers_len,
                                      .data = m.payload, .len = m.frame.payload_len,
                                      .entity = m.frame.handle, .seq = m.frame.seq,
                                      .reply = m.frame.reply };
        if (m.frame.flags & ATOMQ_FRAME_F_REDELIVERY)
                d->flags = ATOMQ_DELIVERY_F_REDELIVERY;
        return 1;
}

int atomq_fetch(struct atomq *a, uint64_t handle, const char *name, uint8_t end, unsigned max,
                struct atomq_batch *b)
{
        if (a->udp != NULL)
                return atomq_udp_fetch(a->udp, handle, name, end, max, b);
        struct dp_cmd c = { .op = ATOMQ_OP_FETCH };
        uint32_t w;
        *b = (struct atomq_batch){ .worker = -1 };
        if (max == 0 || max > DP_FETCH_MAX)
                return -EINVAL;
        int rc = atomq_entity_cmd(a, &c, handle, name, &w);
        if (rc != 0)
                return rc;
        c.args.fetch.max = max;
        c.args.fetch.end = end;
        return atomq_batch_call(a, w, &c, name, b);
}

int atomq_ack(struct atomq *a, uint64_t handle, uint64_t seq)
{
        if (a->udp != NULL)
                return atomq_udp_ack(a->udp, handle, seq);
        struct dp_cmd c = { .op = ATOMQ_OP_ACK, .handle = handle, .seq = seq };
        uint32_t w;
        if (handle == DP_HANDLE_NONE || atomq_worker_of(a, handle, NULL, &w) != 0)
                return -EINVAL;
        return atomq_call_simple(a, w, &c, NULL, NULL, NULL);
}

/* A command whose name section is a key or group (the entity by handle). */
static int atomq_keyed_cmd(const struct atomq *a, struct dp_cmd *c, uint64_t handle,
                           const char *key, uint32_t *w)
{
        size_t len = key != NULL ? strlen(key) : 0;
        if (handle == DP_HANDLE_NONE || len > DP_CMD_NAME_MAX ||
            atomq_worker_of(a, handle, NULL, w) != 0)
                return -EINVAL;
        c->handle = handle;
        c->name_len = (uint16_t)len;
        return 0;
}

int atomq_get(struct atomq *a, uint64_t handle, const char *key, struct atomq_batch *b)
{
        struct dp_cmd c = { .op = DP_OP_GET };
        uint32_t w;
        *b = (struct atomq_batch){ .worker = -1 };
        if (a->udp != NULL)
                return -ENOTSUP;
        if (key == NULL || key[0] == 0 || atomq_keyed_cmd(a, &c, handle, key, &w) != 0)
                return -EINVAL;
        return atomq_batch_call(a, w, &c, key, b);
}

int atomq_read(struct atomq *a, uint64_t handle, const char *group, uint64_t offset,
               unsigned max, struct atomq_batch *b)
{
        struct dp_cmd c = { .op = DP_OP_READ };
        uint32_t w;
        *b = (struct atomq_batch){ .worker = -1 };
        if (a->udp != NULL)
                return -ENOTSUP;
        if (max == 0 || max > DP_FETCH_MAX || (group != NULL && group[0] == 0) ||
            atomq_keyed_cmd(a, &c, handle, group, &w) != 0)
                return -EINVAL;
        c.args.read.max = max;
        c.args.read.offset = offset;
        return atomq_batch_call(a, w, &c, group, b);
}

int atomq_commit(struct atomq *a, uint64_t handle, const char *group, uint64_t offset)
{
        if (a->udp != NULL)
                return -ENOTSUP;
        struct dp_cmd c = { .op = DP_OP_COMMIT, .seq = offset };
        uint32_t w;
        if (group == NULL || group[0] == 0 || atomq_keyed_cmd(a, &c, handle, group, &w) != 0)
                return -EINVAL;
        return atomq_call_simple(a, w, &c, group, NULL, NULL);
}

/* ---- parties, request/reply ------------------------------------------------ */

static int atomq_bind(struct atomq *a, uint8_t op, uint64_t handle, const char *name,
                      uint32_t sid, int hold, uint8_t end)
{
        struct dp_cmd c = { .op = op };
        uint32_t w;
        if (hold < 0 || hold > 1 || end > 1)
                return -EINVAL;
        int rc = atomq_entity_cmd(a, &c, handle, name, &w);
        if (rc != 0)
                return rc;
        c.args.bind.sid = sid;
        c.args.bind.hold = (uint8_t)hold;
        c.args.bind.end = end;
        return atomq_call_simple(a, w, &c, name, NULL, NULL);
}

int atomq_watch(struct atomq *a, uint64_t handle, const char *name, uint32_t sid, int hold,
                uint8_t end)
{
        if (a->udp != NULL)
                return -ENOTSUP; /* no parties over UDP: subscribe instead */
        return atomq_bind(a, DP_OP_BIND, handle, name, sid, hold, end);
}

int atomq_unwatch(struct atomq *a, uint64_t handle, const char *name, uint32_t sid)
{
        if (a->udp != NULL)
                return -ENOTSUP;
        return atomq_bind(a, DP_OP_UNBIND, handle, name, sid, 0, 0);
}

int atomq_request(struct atomq *a, const char *subject, const void *data, uint32_t len,
                  uint32_t timeout_ms, uint32_t sid, uint64_t *inbox)
{
        if (a->udp != NULL)
                return atomq_udp_request(a->udp, subject, data, len, timeout_ms, sid, inbox);
        struct dp_cmd c = { .op = ATOMQ_OP_REQUEST };
        struct dp_msg_in m;
        struct dp_cpl r;
        size_t slen = subject != NULL ? strlen(subject) : 0;
        if (!atomq_subject_ok(subject, slen, false) || timeout_ms == 0)
                return -EINVAL;
        c.args.request.timeout_ms = timeout_ms;
        c.args.request.sid = sid;
        atomq_msg_in(&m, subject, data, len, NULL);
        int rc = atomq_call_simple(a, atomq_worker_of_name(a, subject, slen), &c, NULL, &m, &r);
        if (rc != 0)
                return rc;
        if (inbox != NULL)
                *inbox = r.handle;
        return (int)r.count;
}

/* A reply to a requester known by subject, not handle: a NATS client's
 * reply-to, or a UDP agent's inbox (_AQD.<session>.<seq>, dataplane/
 * dp_dgram.c). A publish there, routed as atomq_publish routes it, but
 * waited for rather than quiet: atomq_reply then reports a failure itself,
 * as its send to a reply handle does. The subject points into the
 * delivery ring, which stays borrowed while the command is written (a
 * call releases only completions). */
static int atomq_reply_subject(struct atomq *a, const struct atomq_delivery *d,
                               const void *data, uint32_t len)
{
        struct dp_cmd c = { .op = ATOMQ_OP_PUB };
        struct dp_msg_in m = { .subject = d->reply_subject, .subject_len = d->reply_subject_len,
                               .payload = data, .payload_len = len, .storage = -1 };
        if (!atomq_subject_ok(d->reply_subject, d->reply_subject_len, false))
                return -EINVAL;
        uint32_t w = atomq_worker_of_name(a, d->reply_subject, d->reply_subject_len);
        return atomq_call_simple(a, w, &c, NULL, &m, NULL);
}

int atomq_reply(struct atomq *a, const struct atomq_delivery *d, const void *data,
                uint32_t len)
{
        if (a->udp != NULL)
                return atomq_udp_reply(a->udp, d, data, len);
        /* A reply handle first: a shared-memory requester's inbox. */
        if (d->reply != DP_HANDLE_NONE)
                return atomq_send(a, d->reply, NULL, NULL, data, len, NULL, NULL);
        if (d->reply_subject != NULL && d->reply_subject_len != 0)
                return atomq_reply_subject(a, d, data, len);
        return -EINVAL;
}

/* ---- direct channels through atomqd ---------------------------------------- */

/* Channel names: 1..63 bytes of printable non-space characters. */
static bool atomq_chan_name_ok(const char *name)
{
        size_t len = name != NULL ? strlen(name) : 0;
        if (len == 0 || len >= 64)
                return false;
        for (size_t i = 0; i < len; i++)
                if (name[i] <= ' ' || name[i] == 0x7f)
                        return false;
        return true;
}

/* Sends a `channel` line on the control connection and attaches the end
 * the answer hands over. */
static int atomq_chan_request(struct atomq *a, const char *line, size_t len,
                              struct atomq_channel *ch)
{
        char buf[ATOMQ_ANSWER_MAX];
        int fds[2] = { -1, -1 }, nfds = 0;
        unsigned end, ring;
        if (send(a->sock, line, len, MSG_NOSIGNAL) != (ssize_t)len)
                return errno == EPIPE || errno == ECONNRESET ? -ECONNRESET : -errno;
        int rc = atomq_sock_reply(a->sock, buf, sizeof(buf), fds, &nfds);
        if (rc == 0 && strncmp(buf, "channel ", 8) != 0)
                rc = atomq_reply_errno(buf);
        else if (rc == 0 && (nfds != 1 ||
                             sscanf(buf, "channel %*s end=%u ring=%u", &end, &ring) != 2 ||
                             end > 1))
                rc = -EPROTO;
        if (rc == 0)
                rc = atomq_channel_attach_end(ch, fds[0], end);
        for (int i = 0; i < nfds; i++)
                close(fds[i]); /* the mapping keeps the memory */
        return rc;
}

int atomq_channel_open(struct atomq *a, const char *name, uint32_t ring_bytes, uint32_t ttl_ms,
                       struct atomq_channel *ch)
{
        if (a->udp != NULL)
                return -ENOTSUP; /* a channel's memfd cannot cross hosts */
        char line[160];
        if (!atomq_chan_name_ok(name))
                return -EINVAL;
        int len = snprintf(line, sizeof(line), "channel open %s ring=%u ttl=%u\n", name,
                           ring_bytes != 0 ? ring_bytes : ATOMQ_CHANNEL_RING_BYTES, ttl_ms);
        return atomq_chan_request(a, line, (size_t)len, ch);
}

int atomq_channel_join(struct atomq *a, const char *name, struct atomq_channel *ch)
{
        if (a->udp != NULL)
                return -ENOTSUP;
        char line[96];
        if (!atomq_chan_name_ok(name))
                return -EINVAL;
        int len = snprintf(line, sizeof(line), "channel join %s\n", name);
        return atomq_chan_request(a, line, (size_t)len, ch);
}
