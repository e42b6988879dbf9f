/*
 * The readiness mechanism under a connection set (connset.h), for the
 * select, poll, epoll and kqueue models: read when readable (up to a
 * budget, so one busy peer cannot starve the others), write what the
 * service queued at once and the rest when writable.
 *
 * An evctx is one loop's share of the connections; each worker thread has
 * its own, so nothing here is locked.
 */
#ifndef IOP_EVCONN_H
#define IOP_EVCONN_H

#include "../internal.h"
#include "../loop/loop.h"
#include "connset.h"

struct iop__evctx {
    struct iop__connset set;    /* the rules; set.owner is this evctx */
    iop__loop *loop;
    char *scratch;              /* one read buffer shared by this loop's connections */
    struct iop__timer sweep;    /* idle timeouts and lingering closes */
    struct iop__timer drain;    /* the end of a graceful stop */
    struct iop__timer kick;     /* posts: settled at the end of the iteration */
    /* Called after a connection closed and its descriptor was freed (the
     * acceptor resumes if descriptors had run out). */
    void (*conn_closed)(struct iop__evctx *x);
    void *owner;                /* the model's worker */
};

/* The calling thread owns the context's mailbox; a context set up for
 * another thread is handed over with iop__evctx_adopt() on that thread,
 * before its loop runs. */
int iop__evctx_init(struct iop__evctx *x, iop_server *s, iop__loop *loop);
void iop__evctx_adopt(struct iop__evctx *x);
void iop__evctx_free(struct iop__evctx *x);

/* Take over an accepted, non-blocking socket: on_open, then serve it.
 * On failure the socket is closed and a negative errno returned. */
int iop__evconn_open(struct iop__evctx *x, int fd,
                     const struct sockaddr_storage *peer, socklen_t peerlen);

/* Graceful stop: answer what each connection has sent, flush within
 * drain_ms, close. The loop is stopped when the last one is gone. */
void iop__evctx_stop(struct iop__evctx *x);

#endif
