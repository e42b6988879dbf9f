/*
 * epoll backend (Linux). Level-triggered, one epoll_ctl() per change of
 * interest. Traps, written down where they are handled:
 * - An epoll set belongs to the open file description, not the process:
 *   after fork() a child shares its parent's set. Every loop here is
 *   created after the fork that gives it its process (prefork, workers),
 *   never inherited, and the descriptor is close-on-exec.
 * - A descriptor closed without EPOLL_CTL_DEL stays in the set while any
 *   duplicate of it is open; the loop always removes interest before a
 *   connection's descriptor is closed.
 * - EPOLLERR and EPOLLHUP are reported whatever was asked for: they are
 *   passed on as both readable and writable, so the read or the write
 *   meets the error itself (as ae does).
 */
#if defined(__linux__)
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

/* At most this many events per epoll_wait(), as libuv does: the array
 * does not grow with the descriptor table, and what is left over stays
 * ready (level-triggered) for the next call. */
#define EP_MAX_EVENTS 1024

struct epoll_state {
    int epfd;
    struct epoll_event *events;
    int size;
};

static int ep_create(iop__loop *l)
{
    struct epoll_state *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    st->size = EP_MAX_EVENTS;
    st->events = calloc((size_t)st->size, sizeof *st->events);
    st->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!st->events || st->epfd < 0) {
        int e = st->epfd < 0 ? -errno : -ENOMEM;
        if (st->epfd >= 0)
            close(st->epfd);
        free(st->events);
        free(st);
        return e;
    }
    *iop__loop_backend_state(l) = st;
    return 0;
}

static void ep_destroy(iop__loop *l)
{
    struct epoll_state *st = *iop__loop_backend_state(l);
    close(st->epfd);
    free(st->events);
    free(st);
}

static int ep_resize(iop__loop *l, int setsize)
{
    (void)l, (void)setsize; /* the events array has a fixed size */
    return 0;
}

static int ep_set(iop__loop *l, int fd, unsigned old_mask, unsigned new_mask)
{
    struct epoll_state *st = *iop__loop_backend_state(l);
    struct epoll_event ev = {.data.fd = fd};
    if (new_mask & IOP_EV_READ)
        ev.events |= EPOLLIN | EPOLLRDHUP;
    if (new_mask & IOP_EV_WRITE)
        ev.events |= EPOLLOUT;
    int op = old_mask == 0 ? EPOLL_CTL_ADD : new_mask == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (epoll_ctl(st->epfd, op, fd, &ev) == 0)
        return 0;
    /* Removing a descriptor that was already closed is not an error. */
    if (op == EPOLL_CTL_DEL && (errno == EBADF || errno == ENOENT))
        return 0;
    return -errno;
}

static int ep_poll(iop__loop *l, int timeout_ms)
{
    struct epoll_state *st = *iop__loop_backend_state(l);
    int n = epoll_wait(st->epfd, st->events, st->size, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        uint32_t e = st->events[i].events;
        unsigned mask = 0;
        if (e & (EPOLLIN | EPOLLRDHUP))
            mask |= IOP_EV_READ;
        if (e & EPOLLOUT)
            mask |= IOP_EV_WRITE;
        if (e & (EPOLLERR | EPOLLHUP))
            mask |= IOP_EV_READ | IOP_EV_WRITE;
        iop__loop_fired(l, st->events[i].data.fd, mask);
    }
    return 0;
}

const struct iop__backend iop__backend_epoll = {
    .name = "epoll",
    .create = ep_create,
    .destroy = ep_destroy,
    .resize = ep_resize,
    .set = ep_set,
    .poll = ep_poll,
    .fd_limit = 1 << 30,
};
#else
typedef int iop__no_epoll_here;
#endif
