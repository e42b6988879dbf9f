/*
 * A connection set: the connections one thread owns under an event model
 * (a select/poll/epoll loop, an io_uring ring, the aio loop), and every
 * rule they obey whatever the mechanism. This file is the policy; the
 * model supplies only its mechanism (struct iop__connset_ops): how to
 * start discarding input, how to let a connection go, when to run a timer.
 *
 * The rules, each written once here:
 * - open: the "open" line at -v, on_open;
 * - input: framing and dispatch, progress on a complete message only, a
 *   message over --max-frame closes that connection ("closing PEER:
 *   message longer than N bytes"); the peer's FIN ends input, not output;
 * - output: producers (on_drain) asked for more while the queued output
 *   is at or below the low watermark; reading paused at the high
 *   watermark and resumed at the low;
 * - idle timeout: connections on a list, least recently active first; one
 *   timer, due when the head expires;
 * - lingering close: once the service is done and its output written,
 *   our side is shut and input discarded until the peer closes, for at
 *   most the linger time (nginx's lingering close), so a close with
 *   unread input cannot reset the answer away;
 * - close: on_close once, what was posted to the connection dropped, the
 *   "close" line at -v (and the reason, where it is not a routine one);
 * - posts (iop_post, services with shared state): the mailbox, and the
 *   connections given output outside their own I/O ("kicked"), settled at
 *   the end of the owner's turn; one overflowed is closed there;
 * - stop: answer what has arrived, flush within drain_ms, then close.
 *
 * Nothing here is locked: a set and its connections belong to one thread.
 */
#ifndef IOP_CONNSET_H
#define IOP_CONNSET_H

#include "../internal.h"

struct iop__connset;

struct iop__connset_ops {
    /* Let c go: on_close has run and c is off every list. Close its
     * descriptor and free it, now, or once what it has in flight ends. */
    void (*release)(struct iop__connset *set, iop_conn *c);
    /* Write, read or finish as c's state calls for (after a kick, after
     * the stop asked it to close). */
    void (*settle)(struct iop__connset *set, iop_conn *c);
    /* c lingers: discard what it reads until the peer closes (then
     * iop__connset_close(set, c, 0)). 0, or a negative errno to close it
     * now. */
    int (*discard_input)(struct iop__connset *set, iop_conn *c);
    /* Run iop__connset_sweep() at `at` (ms, iop__now_ms()'s clock), or
     * sooner; NULL if the model bounds its own wait with
     * iop__connset_next_deadline(). */
    void (*arm_timer)(struct iop__connset *set, uint64_t at);
    /* The first kick of a turn: run iop__connset_run_kicked() at its end;
     * NULL if the model does after every turn anyway. */
    void (*kicked)(struct iop__connset *set);
};

struct iop__connset {
    iop_server *s;
    const struct iop__policy *pol;
    const struct iop__connset_ops *ops;
    void *owner;                          /* the model's worker */
    struct iop__connlist active;          /* least recently active first */
    struct iop__connlist lingering;       /* by deadline */
    size_t nconns;                        /* open: on one of the lists */
    uint64_t now;                         /* the owner's clock, set each turn */
    uint64_t timer_at;                    /* the sweep armed for; 0: none */
    int stopping;
    /* IOP_SERVICE_SHARED_STATE only: posts from other threads land in the
     * mailbox (its descriptor is the model's to watch). */
    struct iop__mailbox *mbox;
    iop_conn **kicked;
    size_t nkicked, kickcap;
};

/* Set up for the calling thread (the mailbox's owner: a set made for
 * another thread is handed over with iop__connset_adopt() on it). */
int iop__connset_init(struct iop__connset *set, iop_server *s,
                      const struct iop__connset_ops *ops, void *owner);
void iop__connset_adopt(struct iop__connset *set);
/* Close what is left (-ECANCELED) and free the set's own memory. */
void iop__connset_free(struct iop__connset *set);
static inline int iop__connset_mailbox_fd(const struct iop__connset *set);

/* A new connection, c allocated by the model (fd accepted): initialised,
 * listed, announced, on_open called. The model then settles it. */
void iop__connset_open(struct iop__connset *set, iop_conn *c, int fd,
                       const struct sockaddr_storage *peer, socklen_t peerlen);

/* n bytes received (n > 0), framed and dispatched. 0, or a negative errno:
 * the connection is to be closed with it. Ignored while lingering. */
int iop__connset_input(struct iop__connset *set, iop_conn *c, const char *data, size_t n);
/* The peer's end of stream: a last line without "\n" is a message too. */
void iop__connset_peer_eof(struct iop__connset *set, iop_conn *c);
/* n bytes of output written (n > 0): progress. */
void iop__connset_sent(struct iop__connset *set, iop_conn *c);

/* Ask c's producer (on_drain) once, if it may be asked: 1 if it queued
 * output. */
int iop__connset_produce_once(struct iop__connset *set, iop_conn *c);
/* Ask it while the queued output is at or below the low watermark, at
 * most IOP__PRODUCE_ROUNDS times (fairness). */
void iop__connset_produce(struct iop__connset *set, iop_conn *c);
/* Watermarks: set or clear IOP__CONN_PAUSED from the queued output. */
void iop__connset_watermarks(struct iop__connset *set, iop_conn *c);
/* 1 if c should be reading: not paused, not past its input's end, not
 * closing, not stopping. */
int iop__connset_wants_input(const struct iop__connset *set, const iop_conn *c);
/* 1 if c is done: closing (or past the peer's FIN) with nothing queued
 * (a layer's last word, TLS's close_notify, is queued then: 0, and
 * written like any output); the model calls iop__connset_finish() once nothing is in flight. */
int iop__connset_done(const struct iop__connset *set, iop_conn *c);
/* The service is done and the output written: linger, or close now. */
void iop__connset_finish(struct iop__connset *set, iop_conn *c);

/* Close now: on_close (err 0 for an orderly close, else a negative
 * errno), then ops->release. Harmless on a connection already closed. */
void iop__connset_close(struct iop__connset *set, iop_conn *c, int err);
/* A post overflowed c (IOP__CONN_OVERFLOW): closed, reported; 1 if so. */
int iop__connset_overflowed(struct iop__connset *set, iop_conn *c);

/* Timers: the next moment a connection expires (idle or lingering), or
 * UINT64_MAX; and the sweep that closes the expired and arms the next. */
uint64_t iop__connset_next_deadline(const struct iop__connset *set);
void iop__connset_sweep(struct iop__connset *set);

/* The mailbox's hook, and what the model runs at the end of its turn. */
void iop__connset_kick(iop_conn *c, void *set);
void iop__connset_run_kicked(struct iop__connset *set);

/* Stopping: c has read what it will; answer it, and close after the
 * output (ops->settle). */
void iop__connset_stop_conn(struct iop__connset *set, iop_conn *c);
/* drain_ms has passed: say how many were still busy and close them. */
void iop__connset_drain_expired(struct iop__connset *set);

#include "mailbox.h"
static inline int iop__connset_mailbox_fd(const struct iop__connset *set)
{
    return set->mbox ? iop__mailbox_fd(set->mbox) : -1;
}

#endif
