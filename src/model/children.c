/*
 * Child processes of a server: see children.h.
 */
#define _GNU_SOURCE
#include "children.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int chld_wake = -1;       /* write end of the self-pipe, for the handler */
static iop_server *child_server; /* in a child: the server it serves for */

static void on_sigchld(int sig)
{
    (void)sig;
    int saved = errno;
    ssize_t n = write(chld_wake, "c", 1);
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

int iop__children_open(struct iop__children *c)
{
    memset(c, 0, sizeof *c);
    if (pipe2(c->pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        c->pipe[0] = c->pipe[1] = -1;
        return -errno;
    }
    chld_wake = c->pipe[1];
    struct sigaction sa = {.sa_handler = on_sigchld,
                           .sa_flags = SA_RESTART | SA_NOCLDSTOP};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, &c->old_chld);
    return 0;
}

void iop__children_close(struct iop__children *c)
{
    sigaction(SIGCHLD, &c->old_chld, NULL);
    chld_wake = -1;
    for (int i = 0; i < 2; i++)
        if (c->pipe[i] >= 0)
            close(c->pipe[i]);
    c->pipe[0] = c->pipe[1] = -1;
    free(c->pid);
    c->pid = NULL;
    c->n = c->cap = 0;
}

static int add(struct iop__children *c, pid_t pid)
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

static int remove_pid(struct iop__children *c, pid_t pid)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->pid[i] == pid) {
            c->pid[i] = c->pid[--c->n];
            return 1;
        }
    return 0;
}

pid_t iop__children_fork(struct iop__children *c, iop_server *s)
{
    sigset_t stop, old;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigprocmask(SIG_BLOCK, &stop, &old);
    pid_t pid = fork();
    if (pid == 0) {
        close(c->pipe[0]);
        close(c->pipe[1]);
        c->pipe[0] = c->pipe[1] = -1;
        chld_wake = -1;
        signal(SIGCHLD, SIG_DFL);
        child_server = s;
        struct sigaction sa = {.sa_handler = on_child_stop}; /* no SA_RESTART */
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigprocmask(SIG_UNBLOCK, &stop, NULL);
        return 0;
    }
    int e = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid < 0)
        return -e;
    if (add(c, pid) != 0) /* untracked, it is still reaped; only stop cannot signal it */
        iop_report(s, IOP_LOG_ERROR, "out of memory tracking child %d", (int)pid);
    return pid;
}

void iop__children_reap(struct iop__children *c, iop__child_exit_fn *fn, void *arg)
{
    char drain[64];
    while (read(c->pipe[0], drain, sizeof drain) > 0)
        ;
    pid_t pid;
    int status;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        int tracked = remove_pid(c, pid);
        if (fn)
            fn(arg, pid, status, tracked);
    }
}

void iop__children_signal(const struct iop__children *c, int sig)
{
    for (size_t i = 0; i < c->n; i++)
        kill(c->pid[i], sig);
}

void iop__children_wait(struct iop__children *c, int ms, iop__child_exit_fn *fn,
                        void *arg)
{
    uint64_t end = iop__now_ms() + (uint64_t)(ms > 0 ? ms : 0);
    while (c->n > 0) {
        int left = -1;
        if (ms >= 0) {
            uint64_t now = iop__now_ms();
            if (now >= end)
                break;
            left = (int)(end - now);
        }
        struct pollfd p = {.fd = c->pipe[0], .events = POLLIN};
        if (poll(&p, 1, left) < 0 && errno != EINTR)
            break;
        iop__children_reap(c, fn, arg);
    }
}
