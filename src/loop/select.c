/*
 * select() backend (POSIX), the course's single-process server. Its trap:
 * an fd_set is a fixed bitmap of FD_SETSIZE (1024) bits, and FD_SET() on a
 * larger descriptor writes past it. The limit is declared as fd_limit, so
 * the loop refuses such a descriptor with -EMFILE before it gets here.
 * Each wait copies the sets (select overwrites them) and scans up to the
 * highest descriptor: cost grows with the descriptors watched.
 */
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>

struct select_state {
    fd_set rd, wr;
    int maxfd;
};

static int sl_create(iop__loop *l)
{
    struct select_state *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    FD_ZERO(&st->rd);
    FD_ZERO(&st->wr);
    st->maxfd = -1;
    *iop__loop_backend_state(l) = st;
    return 0;
}

static void sl_destroy(iop__loop *l) { free(*iop__loop_backend_state(l)); }

static int sl_resize(iop__loop *l, int setsize)
{
    (void)l, (void)setsize; /* fd_limit keeps setsize within FD_SETSIZE */
    return 0;
}

static int sl_set(iop__loop *l, int fd, unsigned old_mask, unsigned new_mask)
{
    struct select_state *st = *iop__loop_backend_state(l);
    (void)old_mask;
    if (new_mask & IOP_EV_READ)
        FD_SET(fd, &st->rd);
    else
        FD_CLR(fd, &st->rd);
    if (new_mask & IOP_EV_WRITE)
        FD_SET(fd, &st->wr);
    else
        FD_CLR(fd, &st->wr);
    if (new_mask && fd > st->maxfd)
        st->maxfd = fd;
    while (st->maxfd >= 0 && !FD_ISSET(st->maxfd, &st->rd) && !FD_ISSET(st->maxfd, &st->wr))
        st->maxfd--;
    return 0;
}

static int sl_poll(iop__loop *l, int timeout_ms)
{
    struct select_state *st = *iop__loop_backend_state(l);
    fd_set rd, wr;
    memcpy(&rd, &st->rd, sizeof rd);
    memcpy(&wr, &st->wr, sizeof wr);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    int n = select(st->maxfd + 1, &rd, &wr, NULL, timeout_ms < 0 ? NULL : &tv);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (int fd = 0; fd <= st->maxfd && n > 0; fd++) {
        unsigned mask = (FD_ISSET(fd, &rd) ? IOP_EV_READ : 0) |
                        (FD_ISSET(fd, &wr) ? IOP_EV_WRITE : 0);
        if (mask) {
            n -= (mask == (IOP_EV_READ | IOP_EV_WRITE)) ? 2 : 1;
            iop__loop_fired(l, fd, mask);
        }
    }
    return 0;
}

const struct iop__backend iop__backend_select = {
    .name = "select",
    .create = sl_create,
    .destroy = sl_destroy,
    .resize = sl_resize,
    .set = sl_set,
    .poll = sl_poll,
    .fd_limit = FD_SETSIZE,
};
