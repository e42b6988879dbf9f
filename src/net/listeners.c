/*
 * Sockets made by another process: systemd's socket activation (the
 * sd_listen_fds(3) descriptors 3...) and inetd (standard input). The
 * library reads no environment: the caller (serve, cli/activation.c)
 * finds the descriptors and passes them in cfg.listen_fds.
 *
 * Several listeners in one server: the models that accept through
 * iop__accept() (iterative, thread, pool) wait on all of them in one
 * poll(), and the event loops watch each; the models with a loop of
 * their own over s->listen_fd (fork, prefork, aio, uring) take one.
 */
#define _GNU_SOURCE
#include "../internal.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_LISTENERS 64 /* one poll() array on the stack */

int iop_socket_address(int fd, struct iop_addr *a, int *listening)
{
    int type = 0, acc = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
        return -errno; /* ENOTSOCK, EBADF */
    struct sockaddr_storage ss;
    len = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -errno;
    int stream = type == SOCK_STREAM || type == SOCK_SEQPACKET;
    if (type != SOCK_STREAM && type != SOCK_DGRAM)
        return -ESOCKTNOSUPPORT; /* seqpacket, raw: no transport of ours */
    memset(a, 0, sizeof *a);
    a->family = AF_UNSPEC;
    if (ss.ss_family == AF_UNIX) {
        a->transport = stream ? IOP_UNIX : IOP_UNIX_DGRAM;
        const struct sockaddr_un *un = (const struct sockaddr_un *)&ss;
        size_t n = len > offsetof(struct sockaddr_un, sun_path)
                   ? len - offsetof(struct sockaddr_un, sun_path) : 0;
        if (n > 0 && un->sun_path[0] == '\0') { /* abstract: "@name" */
            a->path[0] = '@';
            n = n - 1 < sizeof a->path - 2 ? n - 1 : sizeof a->path - 2;
            memcpy(a->path + 1, un->sun_path + 1, n);
        } else {
            memcpy(a->path, un->sun_path, strnlen(un->sun_path, n < sizeof a->path - 1
                                                  ? n : sizeof a->path - 1));
        }
    } else if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
        a->transport = stream ? IOP_TCP : IOP_UDP;
        a->family = ss.ss_family;
        if (getnameinfo((struct sockaddr *)&ss, len, a->host, sizeof a->host, a->port,
                        sizeof a->port, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
            return -EINVAL;
    } else {
        return -EAFNOSUPPORT;
    }
    if (listening) {
        len = sizeof acc;
        *listening = stream && getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) == 0 &&
                     acc;
    }
    return 0;
}

/* One descriptor against what the server was told it serves. */
static int check_one(const iop_server *s, int fd, struct iop_addr *a, char *err)
{
    enum iop_transport want = s->cfg.addr.transport;
    int listening = 0;
    int r = iop_socket_address(fd, a, &listening);
    if (r != 0) {
        snprintf(err, IOP_ERR_LEN, "descriptor %d: %s", fd, r == -ENOTSOCK
                 ? "not a socket" : r == -EAFNOSUPPORT || r == -ESOCKTNOSUPPORT
                 ? "not a TCP, UDP or Unix stream or datagram socket" : strerror(-r));
        return -EINVAL;
    }
    const char *kind = iop_transport_name(a->transport);
    if (iop_transport_is_stream(a->transport) != iop_transport_is_stream(want)) {
        snprintf(err, IOP_ERR_LEN, "descriptor %d is a %s socket, but the server was "
                 "set up for %s", fd, kind, iop_transport_name(want));
        return -EINVAL;
    }
    if (iop_transport_is_stream(want) && s->cfg.inetd && listening) {
        snprintf(err, IOP_ERR_LEN, "descriptor %d is a listening %s socket, not the "
                 "connection inetd passes (nowait; systemd: Accept=yes)", fd, kind);
        return -EINVAL;
    }
    if (iop_transport_is_stream(want) && !s->cfg.inetd && !listening) {
        snprintf(err, IOP_ERR_LEN, "descriptor %d is a %s socket that is not listening "
                 "(a connection: that is inetd's nowait, systemd's Accept=yes)", fd, kind);
        return -EINVAL;
    }
    return 0;
}

int iop__listeners_adopt(iop_server *s, char *err)
{
    const struct iop_server_config *c = &s->cfg;
    unsigned n = c->n_listen_fds;
    const char *m = s->model->info.name;
    if (n == 0 || !c->listen_fds) {
        snprintf(err, IOP_ERR_LEN, "inetd: no socket was given");
        return -EINVAL;
    }
    if (n > MAX_LISTENERS) {
        snprintf(err, IOP_ERR_LEN, "%u sockets passed; a server takes at most %d", n,
                 MAX_LISTENERS);
        return -EINVAL;
    }
    if (c->inetd && n > 1) {
        snprintf(err, IOP_ERR_LEN, "inetd passes one socket, not %u", n);
        return -EINVAL;
    }
    if (c->inetd && strcmp(m, "iterative") != 0) {
        snprintf(err, IOP_ERR_LEN, "inetd's socket is served by the iterative model, "
                 "not '%s' (one connection, or one datagram socket until idle)", m);
        return IOP_EUNFIT;
    }
    if (n > 1 && !iop_transport_is_stream(c->addr.transport)) {
        snprintf(err, IOP_ERR_LEN, "a datagram server serves one socket, not %u "
                 "(run one server per socket)", n);
        return IOP_EUNFIT;
    }
    if (n > 1 && s->model->one_listener) {
        snprintf(err, IOP_ERR_LEN, "model '%s' accepts from one listener, not %u (use "
                 "iterative, thread, pool or an event loop, or pass one socket)", m, n);
        return IOP_EUNFIT;
    }
    if (c->unix_mode) {
        snprintf(err, IOP_ERR_LEN, "a socket file mode applies to a socket this server "
                 "makes, not one passed to it");
        return -EINVAL;
    }
    int *fds = malloc(n * sizeof *fds);
    if (!fds) {
        snprintf(err, IOP_ERR_LEN, "out of memory");
        return -ENOMEM;
    }
    for (unsigned i = 0; i < n; i++) {
        struct iop_addr a;
        int r = check_one(s, c->listen_fds[i], &a, err);
        if (r != 0) {
            free(fds);
            return r;
        }
        if (i == 0)
            s->bound = a;
        fds[i] = c->listen_fds[i];
    }
    s->listeners = fds;
    s->n_listeners = n;
    s->listen_fd = fds[0];
    return 0;
}

void iop__listeners_release(iop_server *s)
{
    free(s->listeners);
    s->listeners = NULL;
    s->n_listeners = 0;
    s->listen_fd = -1;
}

void iop__listeners_close(iop_server *s)
{
    /* listen_fd is listeners[0]: closed by iop_server_close() itself, or
     * handed to the connection (inetd) and closed with it. */
    for (unsigned i = 1; i < s->n_listeners; i++)
        close(s->listeners[i]);
    iop__listeners_release(s);
}

int iop__listeners_wait(iop_server *s, int *fd)
{
    struct pollfd p[1 + MAX_LISTENERS];
    unsigned n = s->n_listeners;
    p[0] = (struct pollfd){.fd = s->stop_pipe[0], .events = POLLIN};
    for (unsigned i = 0; i < n; i++)
        p[1 + i] = (struct pollfd){.fd = s->listeners[i], .events = POLLIN};
    for (;;) {
        if (iop__stopping(s))
            return -ECANCELED;
        int r = poll(p, 1 + n, -1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (p[0].revents)
            return -ECANCELED;
        /* Start after the last one served: a busy listener cannot starve
         * the others. */
        for (unsigned k = 0; k < n; k++) {
            unsigned i = (s->next_listener + k) % n;
            if (p[1 + i].revents) {
                s->next_listener = i + 1;
                *fd = s->listeners[i];
                return 1;
            }
        }
    }
}

int iop__listeners_take_conn(iop_server *s, struct sockaddr_storage *peer,
                             socklen_t *peerlen)
{
    if (s->listen_fd < 0 || iop__stopping(s))
        return -ECANCELED;
    int fd = s->listen_fd;
    s->listen_fd = -1; /* the connection's now: closed when it is served */
    *peerlen = sizeof *peer;
    if (getpeername(fd, (struct sockaddr *)peer, peerlen) != 0) {
        memset(peer, 0, sizeof *peer);
        peer->ss_family = AF_UNIX;
        *peerlen = sizeof(sa_family_t);
    }
    return fd;
}
