/*
 * The multi-worker event models (-w N: epoll, poll, select, kqueue, uring)
 * run N loops, one per thread, and the calling thread is worker 0.
 */
#ifndef IOP_MODEL_WORKERS_H
#define IOP_MODEL_WORKERS_H

#include "internal.h"
#include "net/acceptor.h"

#include <stdatomic.h>

/* What every event-model worker has, whatever its loop: the server, its
 * listener (its own SO_REUSEPORT one, or the shared one), the accept
 * policy, the count of open connections all workers share (--max-conns),
 * and how it ended. Each model's worker struct starts with one. */
struct iop__worker {
    iop_server *s;
    int listen_fd;
    int owns_listener;        /* its own SO_REUSEPORT socket, closed at stop */
    struct iop__acceptor acc; /* net/acceptor.h */
    atomic_uint *live;
    int result;               /* negative errno if the worker failed */
};
/* Worker i of s, sharing `live`: its listener taken, its acceptor set. */
void iop__worker_init(struct iop__worker *w, iop_server *s, unsigned i, atomic_uint *live);
/* After the run: its own listener closed if the worker left it open (it
 * failed first, or never ran); returns its result. */
int iop__worker_done(struct iop__worker *w);

/* Bind the listeners of workers 1..n-1 (SO_REUSEPORT, on the address the
 * first got) into s->worker_fds, for an event model on an IP address with
 * -w n > 1; nothing otherwise. Called by iop_server_open(), so that every
 * bind is done before privileges are dropped (cfg.user) and before any
 * worker starts: the kernel admits to one SO_REUSEPORT group only sockets
 * of the same effective user, and a port below 1024 needs root anyway.
 * Returns 0 or a negative errno with a sentence in err; what was bound
 * stays in s->worker_fds for iop__worker_listeners_close(). */
int iop__worker_listeners_bind(iop_server *s, char *err);
/* Close whatever no worker took (iop_server_close()). */
void iop__worker_listeners_close(iop_server *s);
/* The listener worker i serves: the server's own for worker 0, and for
 * all of them on a Unix socket (SO_REUSEPORT balances only IP ports) or
 * with one worker; else the one bound for it, which is the worker's from
 * then on (it closes it). */
int iop__worker_take_listener(iop_server *s, unsigned i);

/* Run main() on each of the n elements of workers (each `size` bytes):
 * worker 0 on the calling thread, the others on threads of their own,
 * then join them. A thread that cannot be started is reported and stops
 * the server, so the workers already running wind down, and its error
 * (negative errno) is returned: a server short of a worker fails rather
 * than exit 0 having served nothing. Returns 0 otherwise. */
int iop__run_workers(iop_server *s, void *workers, unsigned n, size_t size,
                     void *(*main)(void *));

#endif
