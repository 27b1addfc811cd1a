/* ctl_loop.c - atomqd's epoll loop (see ctl_loop.h). */
#include "control/ctl_loop.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define CTL_LOOP_EVENTS_MAX 64

int ctl_loop_init(struct ctl_loop *l)
{
        memset(l, 0, sizeof(*l));
        l->epfd = epoll_create1(EPOLL_CLOEXEC);
        return l->epfd < 0 ? -errno : 0;
}

static struct ctl_loop_slot *ctl_loop_find(struct ctl_loop *l, int fd)
{
        for (uint32_t i = 0; i < l->count; i++)
                if (l->slots[i].fd == fd)
                        return &l->slots[i];
        return NULL;
}

int ctl_loop_add(struct ctl_loop *l, int fd, uint32_t events, ctl_loop_fn *fn, void *arg)
{
        if (ctl_loop_find(l, fd) != NULL)
                return -EEXIST;
        if (l->count >= CTL_LOOP_FDS_MAX)
                return -ENOSPC;
        struct epoll_event ev = { .events = events, .data.fd = fd };
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
                return -errno;
        l->slots[l->count++] = (struct ctl_loop_slot){ .fn = fn, .arg = arg, .fd = fd };
        return 0;
}

int ctl_loop_mod(struct ctl_loop *l, int fd, uint32_t events)
{
        if (ctl_loop_find(l, fd) == NULL)
                return -ENOENT;
        struct epoll_event ev = { .events = events, .data.fd = fd };
        return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) != 0 ? -errno : 0;
}

int ctl_loop_del(struct ctl_loop *l, int fd)
{
        struct ctl_loop_slot *s = ctl_loop_find(l, fd);
        if (s == NULL)
                return -ENOENT;
        epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
        *s = l->slots[--l->count];
        return 0;
}

int ctl_loop_run_once(struct ctl_loop *l, int timeout_ms)
{
        struct epoll_event ev[CTL_LOOP_EVENTS_MAX];
        int n = epoll_wait(l->epfd, ev, CTL_LOOP_EVENTS_MAX, timeout_ms);
        if (n < 0)
                return errno == EINTR ? 0 : -errno;
        int ran = 0;
        for (int i = 0; i < n; i++) {
                /* Looked up per event: an earlier handler in this batch may
                 * have removed (and closed) this fd. */
                struct ctl_loop_slot *s = ctl_loop_find(l, ev[i].data.fd);
                if (s == NULL)
                        continue;
                s->fn(s->arg, s->fd, ev[i].events);
                ran++;
        }
        return ran;
}

void ctl_loop_fini(struct ctl_loop *l)
{
        if (l->epfd > 0)
                close(l->epfd);
        memset(l, 0, sizeof(*l));
}
