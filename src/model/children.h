/*
 * Child processes of a server (the fork and prefork models): the table of
 * their PIDs, SIGCHLD caught with the self-pipe trick, reaping, signalling
 * them by PID, and the stop handler each child installs for itself.
 *
 * SIGCHLD: the handler only writes a byte to a pipe, so nothing unsafe
 * runs in it; the parent polls the pipe's read end (iop__children_fd())
 * along with whatever else it waits for, and reaps with waitpid(WNOHANG)
 * until none is left (one signal may stand for several exits). This reaps
 * every child of the process, tracked or not.
 *
 * One table per process at a time: the SIGCHLD handler is process-wide.
 */
#ifndef IOP_CHILDREN_H
#define IOP_CHILDREN_H

#include "../internal.h"

#include <signal.h>
#include <sys/types.h>

struct iop__children {
    pid_t *pid;
    size_t n, cap;
    int pipe[2];                 /* SIGCHLD self-pipe */
    struct sigaction old_chld;   /* restored by iop__children_close() */
};

/* Create the self-pipe and catch SIGCHLD. Returns 0 or a negative errno. */
int iop__children_open(struct iop__children *c);
/* Restore SIGCHLD, close the pipe, free the table (children already
 * reaped: see iop__children_wait()). */
void iop__children_close(struct iop__children *c);
/* Readable when a child may have exited. */
static inline int iop__children_fd(const struct iop__children *c) { return c->pipe[0]; }

/*
 * fork() a child that serves for s. The stop signals (SIGTERM, SIGINT) are
 * blocked across the fork, so the child cannot take one before its own
 * handler is in place. In the child: the self-pipe is closed, SIGCHLD is
 * back to its default, SIGTERM and SIGINT call iop_server_stop(s), and they
 * are unblocked; 0 is returned. In the parent: the PID is returned and
 * tracked, or a negative errno if fork() failed.
 */
pid_t iop__children_fork(struct iop__children *c, iop_server *s);

/* Called for each child reaped: tracked says it was in the table (it has
 * been removed); status as from waitpid(). */
typedef void iop__child_exit_fn(void *arg, pid_t pid, int status, int tracked);

/* Drain the self-pipe and reap every child that has exited. fn may be NULL. */
void iop__children_reap(struct iop__children *c, iop__child_exit_fn *fn, void *arg);
/* Send sig to every tracked child, by PID. */
void iop__children_signal(const struct iop__children *c, int sig);
/* Reap until no tracked child is left, for at most ms (-1: no limit). */
void iop__children_wait(struct iop__children *c, int ms, iop__child_exit_fn *fn,
                        void *arg);

#endif
