/*
 * fork: a process per client, the lab's "enhanced server". The parent
 * accepts; each child closes the listener, serves its one client and
 * exits; the parent closes its copy of the client's socket.
 *
 * Zombies: a child that exits stays a zombie until its parent waits for
 * it. The parent catches SIGCHLD with a handler that only writes a byte
 * to a pipe (the self-pipe trick: nothing unsafe runs in the handler), and
 * the accept loop, which polls that pipe too, reaps with waitpid(WNOHANG)
 * until none is left. One signal may stand for several exits, hence the
 * loop. Note that this reaps every child of the process. (The table of
 * children, the reaping and the signalling are src/model/children.c,
 * shared with prefork.)
 *
 * Stop: the parent sends SIGTERM to each child it started (by PID); a
 * child's handler shuts its socket's reading side, so the child answers
 * what it has received and exits. Children still alive after drain_ms
 * get SIGKILL.
 */
#define _GNU_SOURCE
#include "internal.h"
#include "model/children.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

/* The child (its stop handler installed by iop__children_fork()): no
 * listener, one client, then _exit (exit() would run the parent's atexit
 * handlers and flush its stdio). */
static void child_main(iop_server *s, int fd, struct sockaddr_storage *peer,
                       socklen_t peerlen)
{
    close(s->listen_fd);
    atomic_store(&s->inline_fd, fd);
    if (iop__stopping(s))
        shutdown(fd, SHUT_RD);
    iop__serve_blocking(s, fd, peer, peerlen);
    _exit(0);
}

static int spawn(iop_server *s, struct iop__children *c, int fd,
                 struct sockaddr_storage *peer, socklen_t peerlen)
{
    pid_t pid = iop__children_fork(c, s);
    if (pid == 0)
        child_main(s, fd, peer, peerlen);
    close(fd);
    if (pid < 0) {
        iop_report(s, IOP_LOG_ERROR, "fork: %s; closing the new connection",
                   strerror((int)-pid));
        return (int)pid;
    }
    return 0;
}

static int run_fork(iop_server *s)
{
    struct iop__children c;
    int r = iop__children_open(&c);
    if (r != 0)
        return r;
    unsigned long accepted = 0;
    while (!(s->cfg.once && accepted > 0 && c.n == 0)) {
        struct pollfd p[3] = {
            {.fd = s->stop_pipe[0], .events = POLLIN},
            {.fd = iop__children_fd(&c), .events = POLLIN},
            {.fd = s->listen_fd, .events = POLLIN},
        };
        /* With --once, stop listening after the first client. */
        int nfds = s->cfg.once && accepted > 0 ? 2 : 3;
        if (poll(p, (nfds_t)nfds, -1) < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            break;
        }
        if (p[0].revents)
            break;
        if (p[1].revents)
            iop__children_reap(&c, NULL, NULL);
        if (nfds < 3 || !p[2].revents)
            continue;
        struct sockaddr_storage peer;
        socklen_t peerlen;
        int fd = iop__accept_one(s, &peer, &peerlen);
        if (fd < 0) {
            if (fd != -EAGAIN)
                iop__accept_failed(s, fd);
            continue;
        }
        iop__accept_ok(s);
        if (s->cfg.max_conns && c.n >= s->cfg.max_conns) {
            iop_report(s, IOP_LOG_INFO, "refusing a connection: %zu clients "
                       "already (--max-conns)", c.n);
            close(fd);
            continue;
        }
        accepted++;
        spawn(s, &c, fd, &peer, peerlen);
    }
    if (iop__stopping(s) && c.n > 0) {
        iop__children_signal(&c, SIGTERM);
        iop__children_wait(&c, s->cfg.drain_ms, NULL, NULL);
        iop__children_signal(&c, SIGKILL);
    }
    iop__children_wait(&c, -1, NULL, NULL);
    iop__children_close(&c);
    return r;
}

const struct iop__model iop__model_fork = {
    .info = {
        .name = "fork",
        .summary = "a process per client, zombies reaped",
        .datagram = 0,
        .shared_state = 0,
    },
    .run = run_fork,
};
