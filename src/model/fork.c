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
 * fork() failing (RLIMIT_NPROC, EAGAIN; ENOMEM): the new connection is
 * closed at once (its client sees a clean end-of-stream), the failure is
 * reported once, and the parent stops accepting for FORK_PAUSE_MS, or
 * until a child exits and frees a process slot, so a full backlog is not
 * accepted and dropped in a tight loop. "fork: recovered" comes once the
 * parent has caught up: a fork has worked since the last failure and no
 * client is waiting (not at the first fork that works: at the limit, each
 * child that exits lets one through, and two lines per client would be a
 * flood).
 *
 * Stop: the parent sends SIGTERM to each child it started (by PID); a
 * child's handler shuts its socket's reading side, so the child answers
 * what it has received and exits. Children still alive after drain_ms
 * get SIGKILL.
 */
#define _GNU_SOURCE
#include "internal.h"
#include "net/acceptor.h"
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
    iop__serve_inline(s, fd, peer, peerlen);
    _exit(0);
}

#define FORK_PAUSE_MS 100

struct forker {
    iop_server *s;
    struct iop__children kids;
    struct iop__episode failing; /* fork() failures */
    uint64_t paused_until; /* not accepting until then (fork failed) */
};

/* Returns 0 if a child serves fd, else a negative errno (fd closed). */
static int spawn(struct forker *f, int fd, struct sockaddr_storage *peer,
                 socklen_t peerlen)
{
    iop_server *s = f->s;
    pid_t pid = iop__children_fork(&f->kids, s);
    if (pid == 0)
        child_main(s, fd, peer, peerlen);
    close(fd);
    if (pid < 0) {
        if (iop__episode_fail(&f->failing, (int)pid))
            iop_report(s, IOP_LOG_ERROR, "fork: %s; closing new connections "
                       "until a process can be started", strerror((int)-pid));
        f->paused_until = iop__now_ms() + FORK_PAUSE_MS;
        return (int)pid;
    }
    iop__episode_ok(&f->failing);
    return 0;
}

/* The ends of failure episodes (see the top, and net/acceptor.h). */
static void caught_up(struct forker *f)
{
    iop__accept_caught_up(f->s);
    if (iop__episode_may_end(&f->failing) && iop__acceptor_listener_idle(&f->s->acceptor)) {
        iop_report(f->s, IOP_LOG_INFO, "fork: recovered");
        iop__episode_end(&f->failing);
    }
}

/* The poll() timeout while accepting is paused, -1 if it is not. */
static int pause_left(struct forker *f)
{
    if (!f->paused_until)
        return -1;
    uint64_t now = iop__now_ms();
    if (now >= f->paused_until) {
        f->paused_until = 0;
        return -1;
    }
    return (int)(f->paused_until - now);
}

static int run_fork(iop_server *s)
{
    struct forker f = {.s = s};
    struct iop__children *c = &f.kids;
    int r = iop__children_open(c);
    if (r != 0)
        return r;
    unsigned long served = 0;
    while (!(s->cfg.once && served > 0 && c->n == 0)) {
        caught_up(&f);
        struct pollfd p[3] = {
            {.fd = s->stop_pipe[0], .events = POLLIN},
            {.fd = iop__children_fd(c), .events = POLLIN},
            {.fd = s->listen_fd, .events = POLLIN},
        };
        /* With --once, stop listening after the first client; after a
         * failed fork, for a while. */
        int timeout = pause_left(&f);
        int nfds = (s->cfg.once && served > 0) || timeout >= 0 ? 2 : 3;
        int n = poll(p, (nfds_t)nfds, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            break;
        }
        if (p[0].revents)
            break;
        if (p[1].revents) {
            iop__children_reap(c, NULL, NULL);
            f.paused_until = 0; /* a process slot may have been freed */
        }
        if (nfds < 3 || !p[2].revents)
            continue;
        struct sockaddr_storage peer;
        socklen_t peerlen;
        int fd = iop__acceptor_accept(&s->acceptor, &peer, &peerlen, 0);
        if (fd < 0) {
            if (fd != -EAGAIN)
                iop__accept_failed(s, fd);
            continue;
        }
        if (!iop__acceptor_take(&s->acceptor, fd, (unsigned)c->n))
            continue; /* refused (and closed) */
        if (spawn(&f, fd, &peer, peerlen) == 0)
            served++;
    }
    if (iop__stopping(s) && c->n > 0) {
        iop__children_signal(c, SIGTERM);
        iop__children_wait(c, s->cfg.drain_ms, NULL, NULL);
        iop__children_signal(c, SIGKILL);
    }
    iop__children_wait(c, -1, NULL, NULL);
    iop__children_close(c);
    return r;
}

const struct iop__model iop__model_fork = {
    .info = {
        .name = "fork",
        .summary = "a process per client, zombies reaped",
        .datagram = 0,
        .shared_state = 0,
    },
    .one_listener = 1,
    .run = run_fork,
};
