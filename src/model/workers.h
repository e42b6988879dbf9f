/*
 * The multi-worker event models (-w N: epoll, poll, select, kqueue, uring)
 * run N loops, one per thread, and the calling thread is worker 0.
 */
#ifndef IOP_MODEL_WORKERS_H
#define IOP_MODEL_WORKERS_H

#include "internal.h"

/* The listener worker i of n starts with: the server's own for worker 0,
 * and for all of them on a Unix socket (SO_REUSEPORT balances only IP
 * ports) or with one worker; -1 means the worker binds its own with
 * SO_REUSEPORT. */
int iop__worker_listen_fd(const iop_server *s, unsigned i, unsigned n);

/* Run main() on each of the n elements of workers (each `size` bytes):
 * worker 0 on the calling thread, the others on threads of their own,
 * then join them. A thread that cannot be started is reported and stops
 * the server, so the workers already running wind down. */
void iop__run_workers(iop_server *s, void *workers, unsigned n, size_t size,
                      void *(*main)(void *));

#endif
