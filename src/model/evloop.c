/*
 * select, poll, epoll, kqueue: the single-process concurrent server of the
 * course. One thread, non-blocking sockets, and a loop that waits for any
 * of them to be ready (src/loop/); the four models differ only in the
 * loop's backend. The connections' I/O path is src/stream/evconn.c.
 *
 * Workers (-w N): N threads, each with a loop of its own and, for TCP and
 * UDP, a listener of its own bound with SO_REUSEPORT (by iop_server_open(),
 * with the first: model/workers.h); the kernel spreads
 * new connections (datagrams) over the listeners by a hash of the
 * addresses. Chosen over one shared listener with EPOLLEXCLUSIVE because
 * it works with every backend, not only epoll, and no two loops ever race
 * for the same connection. Its costs, written down: a worker busy with
 * long requests still gets its share of new connections, and connections
 * waiting in a listener's queue are reset if that worker stops first.
 * Unix sockets have no SO_REUSEPORT: the workers share one listener, each
 * accepting non-blocking (a wake-up may find nothing: EAGAIN).
 *
 * Traps handled here:
 * - Accept in batches (ACCEPT_BATCH) with accept4(SOCK_NONBLOCK |
 *   SOCK_CLOEXEC), so a connection storm neither starves open connections
 *   nor costs an fcntl() per socket.
 * - EMFILE/ENFILE: the pending connection stays in the kernel's queue and
 *   the listener stays readable, so a level-triggered loop would spin on
 *   it. As nginx does, accepting pauses (the listener leaves the loop)
 *   until a connection closes or the pause (policy.h) passes; the waiting
 *   clients are served once descriptors free up. (libuv instead closes a
 *   reserved descriptor to accept and drop them; that loses clients.)
 * - select cannot watch a descriptor >= FD_SETSIZE: such a connection is
 *   refused with a report instead of corrupting an fd_set.
 * - SIGPIPE: every write uses MSG_NOSIGNAL.
 */
#define _GNU_SOURCE
#include "internal.h"
#include "loop/loop.h"
#include "net/dgram.h"
#include "model/workers.h"
#include "net/acceptor.h"
#include "stream/evconn.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/uio.h>
#include <unistd.h>

#define ACCEPT_BATCH 64
#define DATAGRAM_BATCH 64
#define DATAGRAM_MAX 65536

struct worker {
    struct iop__worker base; /* server, listener, acceptor: model/workers.h */
    iop__loop *loop;
    struct iop__evctx x;
    int accept_paused;
    int accepted;      /* for --once */
    struct iop__timer accept_resume;
    struct iop__dgram *gate; /* datagram transports: net/dgram.c */
};

static void on_accept(iop__loop *loop, int fd, unsigned events, void *arg);
static void on_datagrams(iop__loop *loop, int fd, unsigned events, void *arg);

static int is_stream(const iop_server *s) { return iop_transport_is_stream(s->cfg.addr.transport); }

/* The listeners a worker watches: its own, or every socket passed in
 * (socket activation: net/listeners.c), shared by all workers. */
static unsigned listeners(const struct worker *w, const int **fds)
{
    const iop_server *s = w->base.s;
    if (s->n_listeners > 1) {
        *fds = s->listeners;
        return s->n_listeners;
    }
    *fds = &w->base.listen_fd;
    return 1;
}

static void watch_listener(struct worker *w, int on)
{
    iop__io_fn *fn = is_stream(w->base.s) ? on_accept : on_datagrams;
    const int *fds;
    for (unsigned i = 0, n = listeners(w, &fds); i < n; i++)
        iop__loop_io(w->loop, fds[i], on ? IOP_EV_READ : 0, fn, w);
}

/* A timer callback: the pause is over, or a descriptor was freed. The
 * listener is tried at once, not only watched: with no client waiting it
 * would not wake us, and its EAGAIN is what ends the episode. */
static void resume_accept(iop__loop *loop, void *arg)
{
    struct worker *w = arg;
    if (!w->accept_paused || w->x.set.stopping)
        return;
    w->accept_paused = 0;
    iop__timer_stop(w->loop, &w->accept_resume);
    watch_listener(w, 1);
    const int *fds;
    for (unsigned i = 0, n = listeners(w, &fds); i < n && !w->accept_paused; i++)
        on_accept(loop, fds[i], IOP_EV_READ, w);
}

/* Out of the loop until a connection closes or the pause is over: the
 * listener stays readable while the failure lasts (nginx's accept pause). */
static void pause_accept(struct worker *w, int ms)
{
    w->accept_paused = 1;
    watch_listener(w, 0);
    iop__timer_start(w->loop, &w->accept_resume, (uint64_t)ms, resume_accept, w);
}

static void conn_closed(struct iop__evctx *x)
{
    struct worker *w = x->owner;
    atomic_fetch_sub(w->base.live, 1);
    if (w->accept_paused) { /* a descriptor was just freed: resume after this event */
        iop__timer_stop(w->loop, &w->accept_resume);
        iop__timer_start(w->loop, &w->accept_resume, 0, resume_accept, w);
    }
    if (w->base.s->cfg.once && w->accepted && atomic_load(w->base.live) == 0)
        iop_server_stop(w->base.s);
}

static void take(struct worker *w, int fd, struct sockaddr_storage *peer, socklen_t len)
{
    iop_server *s = w->base.s;
    if (!iop__acceptor_take(&w->base.acc, fd, atomic_load(w->base.live)))
        return; /* refused (and closed) */
    atomic_fetch_add(w->base.live, 1);
    int r = iop__evconn_open(&w->x, fd, peer, len);
    if (r != 0) {
        atomic_fetch_sub(w->base.live, 1);
        if (r == -EMFILE) /* a refusal, not an accept() failure: no "recovered" */
            iop__acceptor_refuse(&w->base.acc, r, "descriptor %d is beyond what %s can watch",
                                 fd, iop__loop_backend(w->loop));
        else
            iop__acceptor_refuse(&w->base.acc, r, "cannot serve a connection: %s",
                                 iop_strerror(r));
        return;
    }
    w->accepted = 1;
    if (s->cfg.once) /* the first client only */
        watch_listener(w, 0);
}

static void on_accept(iop__loop *loop, int lfd, unsigned events, void *arg)
{
    (void)loop, (void)events;
    struct worker *w = arg;
    w->base.acc.listen_fd = lfd; /* several listeners: the one ready */
    for (int i = 0; i < ACCEPT_BATCH && !w->accept_paused; i++) {
        struct sockaddr_storage peer;
        socklen_t len;
        int fd = iop__acceptor_accept(&w->base.acc, &peer, &len, SOCK_NONBLOCK);
        if (fd == -EAGAIN) { /* caught up: no client waits */
            iop__acceptor_caught_up(&w->base.acc);
            return;
        }
        if (fd < 0) {
            int ms = iop__acceptor_failed(&w->base.acc, fd); /* EMFILE, ENFILE, ENOBUFS, ... */
            if (ms > 0) {
                pause_accept(w, ms);
                return;
            }
            continue;
        }
        take(w, fd, &peer, len);
        if (w->base.s->cfg.once)
            return;
    }
}

static void on_datagrams(iop__loop *loop, int fd, unsigned events, void *arg)
{
    (void)loop, (void)events;
    struct worker *w = arg;
    iop_server *s = w->base.s;
    for (int i = 0; i < DATAGRAM_BATCH; i++) {
        struct iop_peer p = {.server = s, .fd = fd};
        struct iovec iov = {.iov_base = w->x.scratch, .iov_len = DATAGRAM_MAX};
        struct msghdr msg = {
            .msg_name = &p.addr, .msg_namelen = sizeof p.addr,
            .msg_iov = &iov, .msg_iovlen = 1,
        };
        ssize_t n = recvmsg(fd, &msg, 0);
        if (n < 0)
            return; /* EAGAIN: drained; an ICMP error on UDP: nothing to do */
        p.addrlen = msg.msg_namelen;
        /* Checked, counted or served: net/dgram.c. */
        if (iop__dgram_input(w->gate, &p, w->x.scratch, (size_t)n,
                             !!(msg.msg_flags & MSG_TRUNC)) && s->cfg.once) {
            iop_server_stop(s);
            return;
        }
    }
}

static void on_stop(iop__loop *loop, int fd, unsigned events, void *arg)
{
    (void)events;
    struct worker *w = arg;
    iop__loop_io(loop, fd, 0, NULL, NULL); /* readable forever: watch it no more */
    iop__timer_stop(loop, &w->accept_resume);
    w->accept_paused = 0;
    watch_listener(w, 0);
    if (w->base.owns_listener) {
        close(w->base.listen_fd);
        w->base.listen_fd = -1;
    }
    iop__evctx_stop(&w->x);
}

/* Everything a worker needs before it accepts, done for every worker
 * before any accepts: a worker set up later could find the descriptors
 * taken by the first clients (a low RLIMIT_NOFILE) and fail the server. */
static int worker_setup(struct worker *w)
{
    iop_server *s = w->base.s;
    int r = iop__loop_create(&w->loop, s->model->backend);
    if (r != 0)
        return r;
    r = iop__evctx_init(&w->x, s, w->loop);
    w->x.owner = w;
    w->x.conn_closed = conn_closed;
    const int *fds;
    for (unsigned i = 0, n = listeners(w, &fds); r == 0 && i < n; i++)
        r = iop__set_nonblocking(fds[i]);
    if (r == 0 && !is_stream(s) && !(w->gate = iop__dgram_new(s, w->base.listen_fd)))
        r = -ENOMEM;
    if (r == 0)
        r = iop__loop_io(w->loop, s->stop_pipe[0], IOP_EV_READ, on_stop, w);
    return r;
}

static void worker_teardown(struct worker *w)
{
    if (!w->loop)
        return;
    iop__evctx_free(&w->x);
    iop__dgram_free(w->gate); /* an episode still open is reported */
    w->gate = NULL;
    iop__timer_stop(w->loop, &w->accept_resume);
    iop__loop_destroy(w->loop);
    w->loop = NULL;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    iop__evctx_adopt(&w->x); /* set up by the thread that started the workers */
    watch_listener(w, 1);
    int r = iop__loop_run(w->loop);
    worker_teardown(w); /* on its own thread: its output chunks go back to its cache */
    w->base.result = r;
    if (r != 0)
        iop_server_stop(w->base.s); /* one worker failing stops the others */
    return NULL;
}

static int run_evloop(iop_server *s)
{
    unsigned n = s->cfg.workers ? s->cfg.workers : 1;
    struct worker *ws = calloc(n, sizeof *ws);
    if (!ws)
        return -ENOMEM;
    atomic_uint live = 0;
    int r = 0;
    for (unsigned i = 0; i < n; i++) {
        iop__worker_init(&ws[i].base, s, i, &live);
        if (r == 0)
            r = worker_setup(&ws[i]);
    }
    if (r == 0)
        r = iop__run_workers(s, ws, n, sizeof *ws, worker_main);
    for (unsigned i = 0; i < n; i++) {
        worker_teardown(&ws[i]); /* if it never ran */
        int wr = iop__worker_done(&ws[i].base);
        if (r == 0)
            r = wr;
    }
    free(ws);
    return r;
}

#define EVENT_MODEL(id, nm, what, ceiling)                                    \
    const struct iop__model iop__model_##id = {                                \
        .info = {.name = nm, .summary = what, .datagram = 1, .shared_state = 1}, \
        .backend = nm,                                                         \
        .fd_ceiling = ceiling,                                                 \
        .run = run_evloop,                                                     \
    }

EVENT_MODEL(epoll, "epoll", "one process, an epoll event loop (-w N: N loops)", 0);
EVENT_MODEL(kqueue, "kqueue", "one process, a kqueue event loop (-w N: N loops)", 0);
EVENT_MODEL(poll, "poll", "one process, a poll() event loop (-w N: N loops)", 0);
EVENT_MODEL(select, "select", "one process, a select() event loop (-w N: N loops)",
            FD_SETSIZE);
