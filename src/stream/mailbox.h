/*
 * A mailbox: how iop_post() reaches a connection owned by another thread.
 *
 * Every thread that owns connections of a service flagged
 * IOP_SERVICE_SHARED_STATE has one: an event-loop worker one for all its
 * connections (struct iop__evctx), a blocking-path thread one for its
 * single connection (blocking.c). conn->mbox points at it; the other
 * services have none, and for them iop_post() is iop_send().
 *
 * A post from a foreign thread copies the bytes into a message, appends it
 * under the mailbox's mutex, and wakes the owner through an eventfd (only
 * when the list was empty: one wake-up covers a burst). The owner, on its
 * own thread, drains: each message is appended to its connection's output
 * queue (iop_send) and the owner is kicked to write it. A post from the
 * owner's own thread skips the mailbox when it is empty (no lock, no
 * allocation), so a single-threaded model pays nothing for it; when the
 * mailbox is not empty the post queues behind what is there, so every
 * receiver gets the posts in the order they were made.
 *
 * Limits: delivering a post that would take the connection's queued
 * output past the server's high watermark (cfg.high_water, 256 KiB by
 * default) drops it and marks the connection IOP__CONN_OVERFLOW; the owner
 * then closes it at once and reports "closing PEER: not reading (N bytes
 * queued)", as Redis' client-output-buffer-limit does for pub/sub.
 *
 * Lifetime: a poster must only name a connection between its on_open and
 * the return of its on_close (the service's lock guarantees that); after
 * on_close returns, the owner purges what is still posted to it, so no
 * message outlives its connection.
 */
#ifndef IOP_MAILBOX_H
#define IOP_MAILBOX_H

#include "../internal.h"

#include <pthread.h>
#include <stdatomic.h>

struct iop__msg;

/* The owner's hook: bytes were queued on c outside its I/O path, or c was
 * marked IOP__CONN_OVERFLOW. Called on the owner's thread, possibly inside
 * another connection's callback with the service's lock held: it must only
 * schedule the write (or the close), never do it. NULL if the owner writes
 * anyway after draining (the blocking path). */
typedef void iop__kick_fn(iop_conn *c, void *arg);

struct iop__mailbox {
    pthread_mutex_t lock;
    struct iop__msg *head, *tail; /* posted: under lock */
    struct iop__msg *batch;       /* being delivered: the owner's thread only */
    atomic_size_t pending;        /* posted, not yet delivered nor purged */
    pthread_t thread;             /* the owner's thread */
    int wake_fd;                  /* eventfd: readable while posts wait */
    size_t high_water;
    iop__kick_fn *kick;
    void *kick_arg;
};

/* Owned by the calling thread (see iop__mailbox_adopt()). Returns 0 or a
 * negative errno (no descriptor). */
int iop__mailbox_init(struct iop__mailbox *m, const iop_server *s,
                      iop__kick_fn *kick, void *kick_arg);
/* Make the calling thread the owner: for a mailbox set up by one thread
 * for another, before any connection of the new owner exists. */
void iop__mailbox_adopt(struct iop__mailbox *m);
/* Free whatever is still posted and the descriptor. */
void iop__mailbox_destroy(struct iop__mailbox *m);
/* Readable (POLLIN) while posts wait: poll it, or watch it in the loop. */
static inline int iop__mailbox_fd(const struct iop__mailbox *m) { return m->wake_fd; }
/* Owner: take the wake-up and deliver what was posted. */
void iop__mailbox_drain(struct iop__mailbox *m);
/* Owner, after c's on_close has returned: drop what is posted to c. */
void iop__mailbox_purge(struct iop__mailbox *m, iop_conn *c);
/* The report for a connection closed for IOP__CONN_OVERFLOW. */
void iop__mailbox_report_overflow(const iop_conn *c);

#endif
