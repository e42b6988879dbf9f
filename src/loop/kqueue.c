/*
 * kqueue backend (FreeBSD, macOS, the other BSDs). Compiled only where
 * <sys/event.h> exists, so CI on Linux neither builds nor runs it: it was
 * written against the FreeBSD kqueue(2) man page and Redis' ae_kqueue.c,
 * and kept as small as the interface allows.
 *
 * kqueue has one filter per direction (EVFILT_READ, EVFILT_WRITE), each
 * added or deleted on its own; a kevent() reports one filter per entry,
 * so a descriptor readable and writable at once comes back twice, and is
 * merged here into one fired event. Traps: a kqueue is not inherited by a
 * child after fork() (unlike epoll, it is simply not there); closing a
 * descriptor removes its filters, so deleting afterwards fails with
 * ENOENT, which is ignored.
 */
#if defined(__has_include)
#if __has_include(<sys/event.h>)
#define IOP_HAVE_KQUEUE 1
#endif
#endif

#ifdef IOP_HAVE_KQUEUE
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/event.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>

struct kqueue_state {
    int kq;
    struct kevent *events;
    unsigned char *merged; /* per descriptor: mask already fired this round */
    int size;
};

static int kq_create(iop__loop *l)
{
    struct kqueue_state *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    st->size = iop__loop_setsize(l);
    st->events = calloc((size_t)st->size, sizeof *st->events);
    st->merged = calloc((size_t)st->size, 1);
    st->kq = kqueue();
    if (!st->events || !st->merged || st->kq < 0) {
        int e = st->kq < 0 ? -errno : -ENOMEM;
        if (st->kq >= 0)
            close(st->kq);
        free(st->events);
        free(st->merged);
        free(st);
        return e;
    }
    *iop__loop_backend_state(l) = st;
    return 0;
}

static void kq_destroy(iop__loop *l)
{
    struct kqueue_state *st = *iop__loop_backend_state(l);
    close(st->kq);
    free(st->events);
    free(st->merged);
    free(st);
}

static int kq_resize(iop__loop *l, int setsize)
{
    struct kqueue_state *st = *iop__loop_backend_state(l);
    struct kevent *ev = realloc(st->events, (size_t)setsize * sizeof *ev);
    if (!ev)
        return -ENOMEM;
    st->events = ev;
    unsigned char *m = realloc(st->merged, (size_t)setsize);
    if (!m)
        return -ENOMEM;
    for (int i = st->size; i < setsize; i++)
        m[i] = 0;
    st->merged = m;
    st->size = setsize;
    return 0;
}

static int kq_change(int kq, int fd, short filter, unsigned short flags)
{
    struct kevent ke;
    EV_SET(&ke, fd, filter, flags, 0, 0, NULL);
    if (kevent(kq, &ke, 1, NULL, 0, NULL) == 0)
        return 0;
    return (flags & EV_DELETE) && (errno == ENOENT || errno == EBADF) ? 0 : -errno;
}

static int kq_set(iop__loop *l, int fd, unsigned old_mask, unsigned new_mask)
{
    struct kqueue_state *st = *iop__loop_backend_state(l);
    static const struct {
        unsigned bit;
        short filter;
    } filters[] = {{IOP_EV_READ, EVFILT_READ}, {IOP_EV_WRITE, EVFILT_WRITE}};
    for (int i = 0; i < 2; i++) {
        unsigned bit = filters[i].bit;
        if ((old_mask & bit) == (new_mask & bit))
            continue;
        int r = kq_change(st->kq, fd, filters[i].filter,
                          (new_mask & bit) ? EV_ADD : EV_DELETE);
        if (r != 0)
            return r;
    }
    return 0;
}

static int kq_poll(iop__loop *l, int timeout_ms)
{
    struct kqueue_state *st = *iop__loop_backend_state(l);
    struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000};
    int n = kevent(st->kq, NULL, 0, st->events, st->size, timeout_ms < 0 ? NULL : &ts);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        int fd = (int)st->events[i].ident;
        unsigned mask = st->events[i].filter == EVFILT_READ ? IOP_EV_READ : IOP_EV_WRITE;
        if (st->events[i].flags & (EV_EOF | EV_ERROR))
            mask |= IOP_EV_READ | IOP_EV_WRITE;
        st->merged[fd] |= (unsigned char)mask;
    }
    for (int i = 0; i < n; i++) {
        int fd = (int)st->events[i].ident;
        if (st->merged[fd]) {
            iop__loop_fired(l, fd, st->merged[fd]);
            st->merged[fd] = 0;
        }
    }
    return 0;
}

const struct iop__backend iop__backend_kqueue = {
    .name = "kqueue",
    .create = kq_create,
    .destroy = kq_destroy,
    .resize = kq_resize,
    .set = kq_set,
    .poll = kq_poll,
    .fd_limit = 1 << 30,
};
#else
/* ISO C forbids an empty translation unit. */
typedef int iop__no_kqueue_here;
#endif
