/*
 * The accept policy (acceptor.h).
 */
#define _GNU_SOURCE
#include "acceptor.h"
#include "../tls/tls.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

void iop__acceptor_init(struct iop__acceptor *a, iop_server *s, int listen_fd)
{
    *a = (struct iop__acceptor){.s = s, .listen_fd = listen_fd};
}

int iop__acceptor_accept(struct iop__acceptor *a, struct sockaddr_storage *peer,
                         socklen_t *peerlen, int flags)
{
    int fd;
    do {
        *peerlen = sizeof *peer;
        fd = accept4(a->listen_fd, (struct sockaddr *)peer, peerlen, SOCK_CLOEXEC | flags);
    } while (fd < 0 && errno == EINTR);
    int r = fd >= 0 ? fd : errno == EWOULDBLOCK ? -EAGAIN : -errno;
    /* Linux takes a descriptor before it looks at the queue: EAGAIN too
     * says that one was free, so it counts for ending an EMFILE episode
     * (else the last client taking the last descriptor would pause
     * accepting with nobody left to end it). */
    if (r >= 0 || r == -EAGAIN)
        iop__episode_ok(&a->failing);
    return r;
}

void iop__acceptor_refuse(struct iop__acceptor *a, int kind, const char *fmt, ...)
{
    if (!iop__episode_fail(&a->refusing, kind))
        return;
    char why[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    iop_report(a->s, IOP_LOG_INFO, "refusing new connections: %s", why);
}

int iop__acceptor_take(struct iop__acceptor *a, int fd, unsigned live)
{
    iop__tls_server_check_reload(a->s); /* before the connection that gets it */
    iop_server *s = a->s;
    iop__episode_ok(&a->failing); /* (uring's accepts come from the kernel) */
    if (live >= s->max_conns) {
        iop__acceptor_refuse(a, -EUSERS, "%u clients already (--max-conns%s)", s->max_conns,
                             s->cfg.max_conns ? "" : "'s default; see serve --help");
        close(fd);
        return 0;
    }
    iop__episode_ok(&a->refusing);
    /* Sockets passed in may mix TCP and Unix: the option fails
     * harmlessly on a Unix one. */
    if (s->cfg.addr.transport == IOP_TCP || s->n_listeners > 1) {
        int one = 1; /* replies are small and latency matters */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return 1;
}

int iop__acceptor_failed(struct iop__acceptor *a, int err)
{
    if (err == -ECONNABORTED || err == -EPROTO || err == -EINTR)
        return 0; /* the client gave up before we took it: nothing to do */
    int fresh = iop__episode_fail(&a->failing, err);
    if (a->shared) /* another child may have reported it */
        fresh = atomic_exchange(a->shared, err) != err;
    if (fresh)
        iop_report(a->s, IOP_LOG_ERROR, "accept: %s; pausing new connections",
                   iop_strerror(err));
    return a->s->pol.accept_pause_ms;
}

int iop__acceptor_may_catch_up(const struct iop__acceptor *a)
{
    return iop__episode_may_end(&a->failing) || iop__episode_may_end(&a->refusing) ||
           (a->shared && a->failing.err);
}

int iop__acceptor_listener_idle(const struct iop__acceptor *a)
{
    struct pollfd p = {.fd = a->listen_fd, .events = POLLIN};
    return poll(&p, 1, 0) == 0;
}

void iop__acceptor_caught_up(struct iop__acceptor *a)
{
    struct iop__episode *e = &a->refusing;
    if (iop__episode_may_end(e)) {
        iop_report(a->s, IOP_LOG_INFO, "accepting new connections again (%lu refused)",
                   e->count);
        iop__episode_end(e);
    }
    e = &a->failing;
    /* Shared (prefork): only the child that ends the episode reports it;
     * the others find it ended already, or a newer failure reported. */
    if (a->shared && e->err && atomic_load(a->shared) == 0) {
        iop__episode_end(e); /* another child ended it */
        return;
    }
    if (!iop__episode_may_end(e))
        return;
    int expected = e->err;
    if (!a->shared || atomic_compare_exchange_strong(a->shared, &expected, 0))
        iop_report(a->s, IOP_LOG_INFO, "accept: recovered");
    iop__episode_end(e);
}
