/*
 * A mailbox: how iop_post() reaches a connection owned by another thread.
 *
 * Every thread that owns connections of a service flagged
 * IOP_SERVICE_SHARED_STATE has one: an event-loop worker one for all its
 * connections (struct iop__evctx), a blocking-path thread one for its
 * single connection (blocking.c). conn->mbox points at it; the other
 * services have none, and for them iop_post() is iop_send().
 *
 * A post copies the bytes once into a message, however many receivers it
 * has (iop_post_many(): a broadcast is one allocation, which holds the
 * bytes and one entry per receiver, and is freed when the last receiver
 * has taken it). Under the mailbox's mutex, each receiver's entry goes on
 * that receiver's own queue, and the receiver on the mailbox's list of
 * connections with news; the owner is woken through an eventfd (only when
 * that list was empty: one wake-up covers a burst). The owner, on its own
 * thread, drains: each entry's bytes are appended to its connection's
 * output queue (iop_send) and the owner is kicked to write them. A closed
 * connection's posts are dropped from its own queue: closing costs what
 * was posted to that connection, not what waits for all the others. A post from the owner's own thread skips the mailbox when
 * it is empty (no lock, no allocation), so a single-threaded model pays
 * nothing for it; when the mailbox is not empty the post queues behind
 * what is there, so every receiver gets the posts in the order they were
 * made.
 *
 * Limits, at post time: a post that would take the receiver's backlog
 * (its queued output and what waits for it in the mailbox, together, each
 * waiting post counted with its entry and header, so that tiny posts are
 * counted at what they cost) past the server's high watermark (cfg.high_water, 256 KiB by default) is
 * dropped, and so is every later one; the connection goes on the
 * mailbox's overflow list, and the owner marks it IOP__CONN_OVERFLOW,
 * closes it at once and reports "closing PEER: not reading (N bytes
 * queued)", as Redis' client-output-buffer-limit does for pub/sub. So a
 * connection holds at most high_water bytes of posts, whatever its owner
 * is doing.
 *
 * Lifetime: a poster must only name a connection between its on_open and
 * the return of its on_close (the service's lock guarantees that); after
 * on_close returns, the owner purges what is still posted to it, so no
 * entry outlives its connection.
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
    iop_conn *ready;              /* with posts, or over their limit: under lock */
    struct iop__msg *batch;       /* being delivered: the owner's thread only */
    atomic_size_t pending;        /* entries posted, not yet delivered nor purged */
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
/* Let go of whatever is still posted, and free the descriptor. */
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
