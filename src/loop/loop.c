/*
 * The loop core: descriptor table, timer heap, wake-up pipe, signals.
 *
 * One iteration: compute the time to the next timer, ask the backend to
 * wait that long, call the callbacks of what fired, then run the timers
 * that are due. A callback may close any descriptor, including one that
 * fired later in the same batch: before each call the fired events are
 * masked with the descriptor's current interest (as ae does), so a closed
 * descriptor is skipped. If the number was reused by a new socket in the
 * same iteration, that socket may see one spurious wake-up; every I/O path
 * is non-blocking and treats EAGAIN as "not yet", so that is harmless.
 */
#define _GNU_SOURCE
#include "loop.h"

#include "../internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct io {
    iop__io_fn *fn;
    void *arg;
    unsigned mask;
};

struct fired {
    int fd;
    unsigned events;
};

struct iop__loop {
    const struct iop__backend *be;
    void *backend;
    struct io *io; /* indexed by descriptor */
    struct fired *fired; /* grown on demand: as many as fire at once */
    int setsize, nfired, firedcap;
    struct iop__timer **heap;
    size_t ntimers, heapcap;
    uint64_t now;
    atomic_int stopped; /* iop__loop_stop() may come from another thread */
    int wake[2]; /* pipe: a 0 byte wakes, a signal number delivers it */
    struct {
        iop__timer_fn *fn;
        void *arg;
    } sig[65];
};

/* ---- descriptors ----------------------------------------------------------- */

/* The table indexed by descriptor doubles while small, then grows by a
 * quarter: at 10,000 connections a doubled table would be 64% empty, and
 * idle connections are what it costs memory for. */
static int next_setsize(int size, int fd)
{
    while (size <= fd)
        size += size < 4096 ? size : size / 4;
    return size;
}

static int grow(iop__loop *l, int fd)
{
    if (fd >= l->be->fd_limit)
        return -EMFILE;
    int size = next_setsize(l->setsize, fd);
    if (size > l->be->fd_limit)
        size = l->be->fd_limit;
    struct io *io = realloc(l->io, (size_t)size * sizeof *io);
    if (!io)
        return -ENOMEM;
    l->io = io;
    memset(io + l->setsize, 0, (size_t)(size - l->setsize) * sizeof *io);
    int r = l->be->resize(l, size);
    if (r != 0)
        return r;
    l->setsize = size;
    return 0;
}

int iop__loop_io(iop__loop *l, int fd, unsigned mask, iop__io_fn *fn, void *arg)
{
    if (fd < 0)
        return -EBADF;
    if (fd >= l->setsize) {
        if (mask == 0)
            return 0;
        int r = grow(l, fd);
        if (r != 0)
            return r;
    }
    struct io *io = &l->io[fd];
    if (io->mask != mask) {
        int r = l->be->set(l, fd, io->mask, mask);
        if (r != 0)
            return r;
    }
    io->mask = mask;
    io->fn = mask ? fn : NULL;
    io->arg = mask ? arg : NULL;
    return 0;
}

unsigned iop__loop_mask(const iop__loop *l, int fd)
{
    return fd >= 0 && fd < l->setsize ? l->io[fd].mask : 0;
}

void iop__loop_fired(iop__loop *l, int fd, unsigned events)
{
    if (l->nfired == l->firedcap) {
        int cap = l->firedcap * 2;
        struct fired *f = realloc(l->fired, (size_t)cap * sizeof *f);
        if (!f)
            return; /* level-triggered: it is reported again next time */
        l->fired = f;
        l->firedcap = cap;
    }
    l->fired[l->nfired++] = (struct fired){fd, events};
}

void **iop__loop_backend_state(iop__loop *l) { return &l->backend; }
int iop__loop_setsize(const iop__loop *l) { return l->setsize; }
const char *iop__loop_backend(const iop__loop *l) { return l->be->name; }
uint64_t iop__loop_now(const iop__loop *l) { return l->now; }

/* ---- timers: a binary min-heap of deadlines ----------------------------------- */

static void heap_place(iop__loop *l, size_t i, struct iop__timer *t)
{
    l->heap[i] = t;
    t->slot = i + 1;
}

static void sift_up(iop__loop *l, size_t i)
{
    struct iop__timer *t = l->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (l->heap[parent]->when <= t->when)
            break;
        heap_place(l, i, l->heap[parent]);
        i = parent;
    }
    heap_place(l, i, t);
}

static void sift_down(iop__loop *l, size_t i)
{
    struct iop__timer *t = l->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= l->ntimers)
            break;
        if (child + 1 < l->ntimers && l->heap[child + 1]->when < l->heap[child]->when)
            child++;
        if (t->when <= l->heap[child]->when)
            break;
        heap_place(l, i, l->heap[child]);
        i = child;
    }
    heap_place(l, i, t);
}

void iop__timer_stop(iop__loop *l, struct iop__timer *t)
{
    if (!t->slot)
        return;
    size_t i = t->slot - 1;
    t->slot = 0;
    struct iop__timer *last = l->heap[--l->ntimers];
    if (i == l->ntimers)
        return;
    heap_place(l, i, last);
    sift_down(l, i);
    sift_up(l, last->slot - 1);
}

void iop__timer_start(iop__loop *l, struct iop__timer *t, uint64_t after_ms,
                      iop__timer_fn *fn, void *arg)
{
    iop__timer_stop(l, t);
    t->when = iop__now_ms() + after_ms;
    t->fn = fn;
    t->arg = arg;
    if (l->ntimers == l->heapcap) {
        size_t cap = l->heapcap ? l->heapcap * 2 : 16;
        struct iop__timer **h = realloc(l->heap, cap * sizeof *h);
        if (!h) {
            /* Cannot happen for a few timers; fire it at once rather than lose it. */
            fn(l, arg);
            return;
        }
        l->heap = h;
        l->heapcap = cap;
    }
    heap_place(l, l->ntimers++, t);
    sift_up(l, l->ntimers - 1);
}

static void run_timers(iop__loop *l)
{
    while (l->ntimers > 0 && l->heap[0]->when <= l->now) {
        struct iop__timer *t = l->heap[0];
        iop__timer_stop(l, t);
        t->fn(l, t->arg); /* may restart t */
    }
}

static int next_timeout(const iop__loop *l)
{
    if (l->ntimers == 0)
        return -1;
    uint64_t when = l->heap[0]->when, now = iop__now_ms();
    if (when <= now)
        return 0;
    uint64_t ms = when - now;
    return ms > 60000 ? 60000 : (int)ms;
}

/* ---- wake-ups and signals -------------------------------------------------------- */

/* The write end of the wake pipe of the loop that owns each signal. */
static atomic_int signal_pipe[65];

static void on_signal(int sig)
{
    int saved = errno;
    int fd = atomic_load(&signal_pipe[sig]);
    if (fd >= 0) {
        unsigned char b = (unsigned char)sig;
        ssize_t n = write(fd, &b, 1);
        (void)n; /* a full pipe already holds a wake-up */
    }
    errno = saved;
}

void iop__loop_wake(iop__loop *l)
{
    unsigned char b = 0;
    ssize_t n = write(l->wake[1], &b, 1);
    (void)n; /* a full pipe already holds a wake-up */
}

static void on_wake(iop__loop *l, int fd, unsigned events, void *arg)
{
    (void)events, (void)arg;
    unsigned char buf[256];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] > 0 && buf[i] < 65 && l->sig[buf[i]].fn)
                l->sig[buf[i]].fn(l, l->sig[buf[i]].arg);
}

int iop__loop_signal(iop__loop *l, int sig, iop__timer_fn *fn, void *arg)
{
    if (sig <= 0 || sig >= 65)
        return -EINVAL;
    l->sig[sig].fn = fn;
    l->sig[sig].arg = arg;
    atomic_store(&signal_pipe[sig], l->wake[1]);
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    return sigaction(sig, &sa, NULL) == 0 ? 0 : -errno;
}

/* ---- life cycle ---------------------------------------------------------------- */

static const struct iop__backend *find_backend(const char *name)
{
    for (const struct iop__backend *const *b = iop__backends(); *b; b++)
        if (!name || strcmp((*b)->name, name) == 0)
            return *b;
    return NULL;
}

int iop__loop_create(iop__loop **out, const char *name)
{
    static atomic_flag init = ATOMIC_FLAG_INIT;
    if (!atomic_flag_test_and_set(&init))
        for (int i = 0; i < 65; i++)
            atomic_store(&signal_pipe[i], -1);
    const struct iop__backend *be = find_backend(name);
    if (!be)
        return -ENOENT;
    iop__loop *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->be = be;
    l->now = iop__now_ms();
    l->wake[0] = l->wake[1] = -1;
    l->setsize = 64 < be->fd_limit ? 64 : be->fd_limit;
    l->io = calloc((size_t)l->setsize, sizeof *l->io);
    l->firedcap = 64;
    l->fired = calloc((size_t)l->firedcap, sizeof *l->fired);
    int r = (l->io && l->fired) ? be->create(l) : -ENOMEM;
    if (r != 0) {
        free(l->io);
        free(l->fired);
        free(l);
        return r;
    }
    if (pipe2(l->wake, O_CLOEXEC | O_NONBLOCK) != 0)
        r = -errno;
    else
        r = iop__loop_io(l, l->wake[0], IOP_EV_READ, on_wake, NULL);
    if (r != 0) {
        iop__loop_destroy(l);
        return r;
    }
    *out = l;
    return 0;
}

void iop__loop_destroy(iop__loop *l)
{
    if (!l)
        return;
    for (int i = 0; i < 65; i++) {
        int fd = l->wake[1];
        if (fd >= 0)
            atomic_compare_exchange_strong(&signal_pipe[i], &fd, -1);
    }
    l->be->destroy(l);
    for (int i = 0; i < 2; i++)
        if (l->wake[i] >= 0)
            close(l->wake[i]);
    free(l->io);
    free(l->fired);
    free(l->heap);
    free(l);
}

void iop__loop_stop(iop__loop *l) { atomic_store_explicit(&l->stopped, 1, memory_order_relaxed); }

int iop__loop_once(iop__loop *l, int timeout_ms)
{
    int next = next_timeout(l);
    if (timeout_ms < 0 || (next >= 0 && next < timeout_ms))
        timeout_ms = next;
    l->nfired = 0;
    int r = l->be->poll(l, timeout_ms);
    if (r != 0)
        return r;
    l->now = iop__now_ms();
    for (int i = 0; i < l->nfired && !atomic_load_explicit(&l->stopped, memory_order_relaxed); i++) {
        int fd = l->fired[i].fd;
        if (fd >= l->setsize)
            continue;
        struct io *io = &l->io[fd];
        unsigned ev = l->fired[i].events & io->mask;
        if (ev)
            io->fn(l, fd, ev, io->arg);
    }
    run_timers(l);
    return l->nfired;
}

int iop__loop_run(iop__loop *l)
{
    atomic_store_explicit(&l->stopped, 0, memory_order_relaxed);
    while (!atomic_load_explicit(&l->stopped, memory_order_relaxed)) {
        int r = iop__loop_once(l, -1);
        if (r < 0)
            return r;
    }
    return 0;
}
