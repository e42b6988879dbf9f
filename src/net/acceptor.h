/*
 * The accept policy, one for every model (nginx has one accept path for
 * every event module): taking a client (--max-conns, the socket options
 * every connection gets), and the failures of accept() itself.
 *
 * Both come in episodes (struct iop__episode): a descriptor limit makes
 * accept() fail again and again, a flood at --max-conns refuses thousands.
 * Each episode is reported when it starts (or changes kind), and its end
 * once, when the acceptor has caught up: it has succeeded since the last
 * failure and no client is left waiting. Not at the first success: at a
 * limit each freed slot lets one through before the next fails, and a
 * line for each would be a flood.
 *
 * One acceptor per thread that accepts (an event loop's worker, the
 * accepting thread of a blocking model, a prefork child); prefork's
 * children share what they have reported, so that one line starts an
 * episode and one ends it whichever child sees it.
 */
#ifndef IOP_ACCEPTOR_H
#define IOP_ACCEPTOR_H

#include "../internal.h"

#include <stdatomic.h>

/* struct iop__acceptor is in internal.h (the server holds one). */

void iop__acceptor_init(struct iop__acceptor *a, iop_server *s, int listen_fd);

/* accept4() once, without waiting (flags: SOCK_NONBLOCK for the event
 * loops; CLOEXEC always): the descriptor, -EAGAIN if no client waits, or
 * another negative errno for iop__acceptor_failed(). */
int iop__acceptor_accept(struct iop__acceptor *a, struct sockaddr_storage *peer,
                         socklen_t *peerlen, int flags);

/* A client taken, with `live` connections open: 1 if it is to be served
 * (its options set: TCP_NODELAY), 0 if it was refused and closed. */
int iop__acceptor_take(struct iop__acceptor *a, int fd, unsigned live);
/* A client taken but not served for another reason (select cannot watch
 * its descriptor, no memory): said once per episode; the caller closes it. */
void iop__acceptor_refuse(struct iop__acceptor *a, int kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* accept() failed: reported once per episode. Returns how long to leave
 * the listener alone (ms), since it stays readable while the failure
 * lasts; 0 to go on at once (a client that gave up before it was taken). */
int iop__acceptor_failed(struct iop__acceptor *a, int err);

/* No client waits (EAGAIN, or iop__acceptor_listener_idle()): end the
 * episodes that have seen a success since their last failure, a line each. */
void iop__acceptor_caught_up(struct iop__acceptor *a);
/* 1 if an episode is open that a catch-up could end: callers whose test
 * for waiting clients costs a poll() ask this first. */
int iop__acceptor_may_catch_up(const struct iop__acceptor *a);
/* 1 if no client waits on the listener (a poll() that does not wait). */
int iop__acceptor_listener_idle(const struct iop__acceptor *a);

#endif
