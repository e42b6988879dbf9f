/*
 * poll() backend (POSIX). The kernel is handed the whole array on every
 * call, so the cost of one wait grows with the number of descriptors
 * watched, busy or not: that is what the micro-benchmark shows against
 * epoll. A descriptor's place in the array is kept in `slot` so a change
 * of interest is O(1); removal swaps the last entry into the hole.
 */
#include "loop.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

struct poll_state {
    struct pollfd *fds;
    int *slot; /* slot[fd] = index in fds, or -1 */
    int n;
};

static int pl_create(iop__loop *l)
{
    int size = iop__loop_setsize(l);
    struct poll_state *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    st->fds = calloc((size_t)size, sizeof *st->fds);
    st->slot = malloc((size_t)size * sizeof *st->slot);
    if (!st->fds || !st->slot) {
        free(st->fds);
        free(st->slot);
        free(st);
        return -ENOMEM;
    }
    memset(st->slot, -1, (size_t)size * sizeof *st->slot);
    *iop__loop_backend_state(l) = st;
    return 0;
}

static void pl_destroy(iop__loop *l)
{
    struct poll_state *st = *iop__loop_backend_state(l);
    free(st->fds);
    free(st->slot);
    free(st);
}

static int pl_resize(iop__loop *l, int setsize)
{
    struct poll_state *st = *iop__loop_backend_state(l);
    int old = iop__loop_setsize(l);
    struct pollfd *fds = realloc(st->fds, (size_t)setsize * sizeof *fds);
    if (!fds)
        return -ENOMEM;
    st->fds = fds;
    int *slot = realloc(st->slot, (size_t)setsize * sizeof *slot);
    if (!slot)
        return -ENOMEM;
    memset(slot + old, -1, (size_t)(setsize - old) * sizeof *slot);
    st->slot = slot;
    return 0;
}

static short to_events(unsigned mask)
{
    return (short)(((mask & IOP_EV_READ) ? POLLIN : 0) | ((mask & IOP_EV_WRITE) ? POLLOUT : 0));
}

static int pl_set(iop__loop *l, int fd, unsigned old_mask, unsigned new_mask)
{
    struct poll_state *st = *iop__loop_backend_state(l);
    (void)old_mask;
    int i = st->slot[fd];
    if (new_mask == 0) {
        if (i < 0)
            return 0;
        st->fds[i] = st->fds[--st->n];
        st->slot[st->fds[i].fd] = i;
        st->slot[fd] = -1;
        return 0;
    }
    if (i < 0) {
        i = st->n++;
        st->slot[fd] = i;
        st->fds[i].fd = fd;
    }
    st->fds[i].events = to_events(new_mask);
    return 0;
}

static int pl_poll(iop__loop *l, int timeout_ms)
{
    struct poll_state *st = *iop__loop_backend_state(l);
    int n = poll(st->fds, (nfds_t)st->n, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < st->n && n > 0; i++) {
        short re = st->fds[i].revents;
        if (!re)
            continue;
        n--;
        unsigned mask = 0;
        if (re & POLLIN)
            mask |= IOP_EV_READ;
        if (re & POLLOUT)
            mask |= IOP_EV_WRITE;
        if (re & (POLLERR | POLLHUP | POLLNVAL))
            mask |= IOP_EV_READ | IOP_EV_WRITE;
        iop__loop_fired(l, st->fds[i].fd, mask);
    }
    return 0;
}

const struct iop__backend iop__backend_poll = {
    .name = "poll",
    .create = pl_create,
    .destroy = pl_destroy,
    .resize = pl_resize,
    .set = pl_set,
    .poll = pl_poll,
    .fd_limit = 1 << 30,
};
