/*
 * The readiness mechanism (see evconn.h); the rules are the connection
 * set's (connset.c).
 *
 * Memory: an idle connection is its iop_conn and nothing else. Reads go
 * into the loop's shared scratch buffer and whole frames are delivered
 * from there; only a partial frame is copied into the connection's own
 * buffer, which is freed as soon as it empties. Output chunks are freed as
 * they are written.
 *
 * Writes: what a service queues while handling a batch of input is
 * written in one sendmsg() right after the batch, without waiting for a
 * writability event; only what the socket does not take waits for one.
 * A producer (on_drain) is asked again each time the socket has taken all,
 * at most IOP__PRODUCE_ROUNDS times a wake-up: its last round's output
 * stays queued, so write interest brings the loop back once it has
 * served the others (broken off with an empty queue, nothing would).
 *
 * Posts: the loop watches the set's mailbox and drains it on this thread;
 * the connections it kicks are settled by a timer due at once, at the end
 * of the iteration (connset.h).
 */
#define _GNU_SOURCE
#include "evconn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SCRATCH_SIZE 65536
#define READS_PER_WAKE 4 /* the per-wake-up budget: 4 x 64 KiB */

static struct iop__evctx *ctx_of(struct iop__connset *set) { return set->owner; }
static struct iop__evctx *ctx_of_conn(iop_conn *c) { return ctx_of(c->owner); }

static void on_io(iop__loop *loop, int fd, unsigned events, void *arg);

/* ---- the mechanism the set calls ---------------------------------------------- */

static void release(struct iop__connset *set, iop_conn *c)
{
    struct iop__evctx *x = ctx_of(set);
    iop__loop_io(x->loop, c->fd, 0, NULL, NULL);
    close(c->fd);
    iop__conn_release(c);
    free(c);
    if (x->conn_closed)
        x->conn_closed(x);
    if (set->stopping && set->nconns == 0)
        iop__loop_stop(x->loop);
}

static int discard_input(struct iop__connset *set, iop_conn *c)
{
    return iop__loop_io(ctx_of(set)->loop, c->fd, IOP_EV_READ, on_io, c);
}

static void on_sweep(iop__loop *loop, void *arg)
{
    (void)loop;
    iop__connset_sweep(arg);
}

static void arm_timer(struct iop__connset *set, uint64_t at)
{
    struct iop__evctx *x = ctx_of(set);
    uint64_t now = iop__loop_now(x->loop);
    iop__timer_stop(x->loop, &x->sweep);
    iop__timer_start(x->loop, &x->sweep, at > now ? at - now : 0, on_sweep, set);
}

static void run_kicked(iop__loop *loop, void *arg)
{
    struct iop__connset *set = arg;
    set->now = iop__loop_now(loop);
    iop__connset_run_kicked(set);
}

static void kicked(struct iop__connset *set)
{
    struct iop__evctx *x = ctx_of(set);
    if (!iop__timer_active(&x->kick))
        iop__timer_start(x->loop, &x->kick, 0, run_kicked, set);
}

static void settle(struct iop__connset *set, iop_conn *c);

static const struct iop__connset_ops ops = {
    .release = release,
    .settle = settle,
    .discard_input = discard_input,
    .arm_timer = arm_timer,
    .kicked = kicked,
};

/* ---- the I/O --------------------------------------------------------------------- */

/* Set the interest the connection's state calls for. */
static int update_interest(struct iop__evctx *x, iop_conn *c)
{
    unsigned mask = iop__connset_wants_input(&x->set, c) ? IOP_EV_READ : 0;
    if (c->out.bytes > 0)
        mask |= IOP_EV_WRITE;
    if (mask == iop__loop_mask(x->loop, c->fd))
        return 0;
    return iop__loop_io(x->loop, c->fd, mask, on_io, c);
}

/* Write what is queued, let a producer add more, and settle the state
 * (c may be gone after). */
static void settle(struct iop__connset *set, iop_conn *c)
{
    struct iop__evctx *x = ctx_of(set);
    if (c->flags & (IOP__CONN_GONE | IOP__CONN_LINGER))
        return;
    for (int round = 0;; round++) {
        while (c->out.bytes > 0) {
            ssize_t n = iop__outq_write(&c->out, c->fd, 0);
            if (n == -EAGAIN)
                break;
            if (n < 0 && n != -EINTR) {
                iop__connset_close(set, c, (int)n);
                return;
            }
            if (n > 0)
                iop__connset_sent(set, c);
        }
        if (c->out.bytes > 0 || !iop__connset_produce_once(set, c) ||
            round + 1 >= IOP__PRODUCE_ROUNDS)
            break; /* (the last round's output stays queued: see the top) */
    }
    if (iop__connset_done(set, c)) {
        iop__connset_finish(set, c);
        return;
    }
    iop__connset_watermarks(set, c);
    if (update_interest(x, c) != 0)
        iop__connset_close(set, c, -ENOMEM);
}

/* Discard input on a lingering connection until the peer closes. */
static void drain_lingering(struct iop__evctx *x, iop_conn *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, x->scratch, SCRATCH_SIZE, 0);
        if (n > 0)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        iop__connset_close(&x->set, c, 0);
        return;
    }
}

/* Read up to the budget and dispatch. Returns 0, or -1 if c was closed. */
static int read_input(struct iop__evctx *x, iop_conn *c)
{
    for (int i = 0; i < READS_PER_WAKE; i++) {
        if (c->flags & (IOP__CONN_CLOSING | IOP__CONN_PAUSED | IOP__CONN_PEER_EOF))
            break;
        ssize_t n = recv(c->fd, x->scratch, SCRATCH_SIZE, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            iop__connset_close(&x->set, c, -errno);
            return -1;
        }
        if (n == 0) {
            iop__connset_peer_eof(&x->set, c);
            break;
        }
        int r = iop__connset_input(&x->set, c, x->scratch, (size_t)n);
        if (r != 0) {
            iop__connset_close(&x->set, c, r);
            return -1;
        }
        if ((size_t)n < SCRATCH_SIZE)
            break; /* a short read: the socket is very likely empty */
        iop__connset_watermarks(&x->set, c);
    }
    return 0;
}

static void on_io(iop__loop *loop, int fd, unsigned events, void *arg)
{
    (void)loop, (void)fd;
    iop_conn *c = arg;
    struct iop__evctx *x = ctx_of_conn(c);
    x->set.now = iop__loop_now(loop);
    if (c->flags & IOP__CONN_LINGER) {
        drain_lingering(x, c);
        return;
    }
    if (iop__connset_overflowed(&x->set, c))
        return;
    if ((events & IOP_EV_READ) && read_input(x, c) != 0)
        return;
    settle(&x->set, c);
}

static void on_mail(iop__loop *loop, int fd, unsigned events, void *arg)
{
    (void)fd, (void)events;
    struct iop__evctx *x = arg;
    x->set.now = iop__loop_now(loop);
    iop__mailbox_drain(x->set.mbox);
}

/* ---- life cycle ---------------------------------------------------------------- */

int iop__evctx_init(struct iop__evctx *x, iop_server *s, iop__loop *loop)
{
    memset(x, 0, sizeof *x);
    x->loop = loop;
    int r = iop__connset_init(&x->set, s, &ops, x);
    if (r != 0)
        return r;
    if (!(x->scratch = malloc(SCRATCH_SIZE)))
        return -ENOMEM;
    if (x->set.mbox)
        return iop__loop_io(loop, iop__connset_mailbox_fd(&x->set), IOP_EV_READ, on_mail, x);
    return 0;
}

void iop__evctx_adopt(struct iop__evctx *x) { iop__connset_adopt(&x->set); }

void iop__evctx_free(struct iop__evctx *x)
{
    if (!x->set.s)
        return; /* never set up */
    if (x->set.mbox)
        iop__loop_io(x->loop, iop__connset_mailbox_fd(&x->set), 0, NULL, NULL);
    iop__connset_free(&x->set);
    iop__timer_stop(x->loop, &x->kick);
    iop__timer_stop(x->loop, &x->sweep);
    iop__timer_stop(x->loop, &x->drain);
    free(x->scratch);
    x->scratch = NULL;
}

int iop__evconn_open(struct iop__evctx *x, int fd,
                     const struct sockaddr_storage *peer, socklen_t peerlen)
{
    iop_conn *c = malloc(sizeof *c);
    if (!c) {
        close(fd);
        return -ENOMEM;
    }
    /* Watched before it is announced: a descriptor the backend cannot
     * watch (select: FD_SETSIZE) is refused, never opened. */
    int r = iop__loop_io(x->loop, fd, IOP_EV_READ, on_io, c);
    if (r != 0) {
        close(fd);
        free(c);
        return r;
    }
    x->set.now = iop__loop_now(x->loop);
    iop__connset_open(&x->set, c, fd, peer, peerlen);
    settle(&x->set, c);
    return 0;
}

static void drain_expired(iop__loop *loop, void *arg)
{
    (void)loop;
    struct iop__evctx *x = arg;
    iop__connset_drain_expired(&x->set); /* closing the last stops the loop */
}

void iop__evctx_stop(struct iop__evctx *x)
{
    struct iop__connset *set = &x->set;
    if (set->stopping)
        return;
    set->stopping = 1;
    if (set->nconns == 0) {
        iop__loop_stop(x->loop);
        return;
    }
    iop__timer_start(x->loop, &x->drain, (uint64_t)set->pol->drain_ms, drain_expired, x);
    /* Answer what has arrived, then close each after its output. */
    for (iop_conn *c = set->active.head, *next; c; c = next) {
        next = c->next;
        if (read_input(x, c) == 0)
            iop__connset_stop_conn(set, c);
    }
    /* Lingering connections finish on their own, well within drain_ms;
     * drain_expired() closes whatever is left. */
}
