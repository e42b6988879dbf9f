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
 * loop. Note that this reaps every child of the process.
 *
 * Stop: the parent sends SIGTERM to each child it started (by PID); a
 * child's handler shuts its socket's reading side, so the child answers
 * what it has received and exits. Children still alive after drain_ms
 * get SIGKILL.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int child_pipe[2] = {-1, -1};
static iop_server *child_server; /* the server a child process serves for */

static void on_sigchld(int sig)
{
    (void)sig;
    int saved = errno;
    ssize_t n = write(child_pipe[1], "c", 1);
    (void)n; /* full pipe: a wake-up is already pending, which is enough */
    errno = saved;
}

static void on_child_stop(int sig)
{
    (void)sig;
    int saved = errno;
    if (child_server)
        iop_server_stop(child_server);
    errno = saved;
}

struct children {
    pid_t *pid;
    size_t n, cap;
};

static int children_add(struct children *c, pid_t pid)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        pid_t *p = realloc(c->pid, cap * sizeof *p);
        if (!p)
            return -ENOMEM;
        c->pid = p;
        c->cap = cap;
    }
    c->pid[c->n++] = pid;
    return 0;
}

static void children_remove(struct children *c, pid_t pid)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->pid[i] == pid) {
            c->pid[i] = c->pid[--c->n];
            return;
        }
}

static void reap(struct children *c)
{
    char drain[64];
    while (read(child_pipe[0], drain, sizeof drain) > 0)
        ;
    pid_t pid;
    while ((pid = waitpid(-1, NULL, WNOHANG)) > 0)
        children_remove(c, pid);
}

static void signal_all(struct children *c, int sig)
{
    for (size_t i = 0; i < c->n; i++)
        kill(c->pid[i], sig);
}

/* The child: its own stop handler, no listener, one client, then _exit
 * (exit() would run the parent's atexit handlers and flush its stdio). */
static void child_main(iop_server *s, int fd, struct sockaddr_storage *peer,
                       socklen_t peerlen)
{
    close(s->listen_fd);
    close(child_pipe[0]);
    close(child_pipe[1]);
    signal(SIGCHLD, SIG_DFL);
    child_server = s;
    atomic_store(&s->inline_fd, fd);
    struct sigaction sa = {.sa_handler = on_child_stop};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigset_t unblock;
    sigemptyset(&unblock);
    sigaddset(&unblock, SIGTERM);
    sigaddset(&unblock, SIGINT);
    sigprocmask(SIG_UNBLOCK, &unblock, NULL);
    if (iop__stopping(s))
        shutdown(fd, SHUT_RD);
    iop__serve_blocking(s, fd, peer, peerlen);
    _exit(0);
}

static int spawn(iop_server *s, struct children *c, int fd,
                 struct sockaddr_storage *peer, socklen_t peerlen)
{
    /* Block the stop signals across fork() so the child cannot take one
     * before its own handler is installed. */
    sigset_t stop, old;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigprocmask(SIG_BLOCK, &stop, &old);
    pid_t pid = fork();
    if (pid == 0)
        child_main(s, fd, peer, peerlen);
    int e = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(fd);
    if (pid < 0) {
        iop_report(s, IOP_LOG_ERROR, "fork: %s; closing the new connection",
                   strerror(e));
        return -e;
    }
    if (children_add(c, pid) != 0) {
        /* Untracked, it is still reaped; only stop cannot signal it. */
        iop_report(s, IOP_LOG_ERROR, "out of memory tracking child %d", (int)pid);
    }
    return 0;
}

/* Wait for children to finish, reaping, for at most ms (-1: forever). */
static void wait_children(struct children *c, int ms)
{
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (c->n > 0) {
        int left = -1;
        if (ms >= 0) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            long spent = (now.tv_sec - start.tv_sec) * 1000 +
                         (now.tv_nsec - start.tv_nsec) / 1000000;
            if (spent >= ms)
                break;
            left = (int)(ms - spent);
        }
        struct pollfd p = {.fd = child_pipe[0], .events = POLLIN};
        if (poll(&p, 1, left) < 0 && errno != EINTR)
            break;
        reap(c);
    }
}

static int run_fork(iop_server *s)
{
    if (pipe2(child_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        return -errno;
    struct sigaction sa = {.sa_handler = on_sigchld, .sa_flags = SA_RESTART | SA_NOCLDSTOP};
    struct sigaction old_chld;
    sigaction(SIGCHLD, &sa, &old_chld);
    struct children c = {0};
    unsigned long accepted = 0;
    int r = 0;
    while (!(s->cfg.once && accepted > 0 && c.n == 0)) {
        struct pollfd p[3] = {
            {.fd = s->stop_pipe[0], .events = POLLIN},
            {.fd = child_pipe[0], .events = POLLIN},
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
            reap(&c);
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
        signal_all(&c, SIGTERM);
        wait_children(&c, s->cfg.drain_ms);
        signal_all(&c, SIGKILL);
    }
    wait_children(&c, -1);
    sigaction(SIGCHLD, &old_chld, NULL);
    close(child_pipe[0]);
    close(child_pipe[1]);
    child_pipe[0] = child_pipe[1] = -1;
    free(c.pid);
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
