/* ctl_loop.h - atomqd's event loop: one epoll set, a handler per fd.
 *
 * atomqd is single-threaded: the control socket, the metrics listener, the
 * signal fd and the dataplane child's pidfd all register here, and each
 * handler runs to completion. Nothing here is on the data path.
 *
 *      ctl_loop_init(&loop);
 *      ctl_loop_add(&loop, fd, EPOLLIN, on_ready, arg);
 *      while (!stop)
 *              ctl_loop_run_once(&loop, 100);
 */
#ifndef ATOMQ_CTL_LOOP_H
#define ATOMQ_CTL_LOOP_H

#include <stdint.h>

#define CTL_LOOP_FDS_MAX 1024

typedef void ctl_loop_fn(void *arg, int fd, uint32_t events);

struct ctl_loop_slot {
        ctl_loop_fn *fn;
        void *arg;
        int fd;
};

struct ctl_loop {
        int epfd;
        uint32_t count;
        struct ctl_loop_slot slots[CTL_LOOP_FDS_MAX];
};

/* -errno of epoll_create1. */
int ctl_loop_init(struct ctl_loop *l);

/* Watches fd for events (EPOLLIN, EPOLLOUT, ...), calling fn when ready.
 * -ENOSPC: CTL_LOOP_FDS_MAX fds watched already; -EEXIST: fd is watched;
 * other -errno of epoll_ctl. */
int ctl_loop_add(struct ctl_loop *l, int fd, uint32_t events, ctl_loop_fn *fn, void *arg);

/* Changes the events watched on fd. -ENOENT: fd is not watched. */
int ctl_loop_mod(struct ctl_loop *l, int fd, uint32_t events);

/* Stops watching fd (does not close it). -ENOENT: fd is not watched. */
int ctl_loop_del(struct ctl_loop *l, int fd);

/* Waits up to timeout_ms (-1: forever) and runs the handlers of ready
 * fds. Returns the number run, 0 on timeout or EINTR, or -errno. */
int ctl_loop_run_once(struct ctl_loop *l, int timeout_ms);

void ctl_loop_fini(struct ctl_loop *l);

#endif /* ATOMQ_CTL_LOOP_H */
