/*
 * The uring model's stream connection (the design is in uring.c): what
 * each recv and send completion does to a connection, and what to submit
 * next (settle()). The rules (watermarks, producers, lingering close,
 * idle timeout, posts, stop) are the connection set's, src/stream/connset.c,
 * as for every event model; this is the completion mechanism under them.
 *
 * A connection is freed only when it is closed (dead) and no operation of
 * it is in flight (u->inflight == 0), so no completion ever finds a freed
 * connection; its descriptor is closed at that moment too, so the number
 * cannot be reused while an operation still names it.
 */
#define _GNU_SOURCE
#include "uring.h"

#ifdef IOPLEX_HAVE_URING

#include "stream/connset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define STOP_READS 16       /* synchronous reads per connection at stop */

static struct uconn *of(iop_conn *c) { return (struct uconn *)c; }
static struct uworker *worker_of(struct iop__connset *set) { return set->owner; }

/* Sends from slots. Sent straight from the output queue, each send in
 * flight would hold a chunk of it (4 KiB at least) until its completion:
 * with a hundred connections those chunks, allocated and freed together
 * batch after batch, make malloc's heap grow and shrink (brk, page
 * faults, TLB flushes: a third of the server's time at 64-byte echoes).
 * So output up to URING_SLOT_BIG is copied into a slot that comes from a
 * free list of the worker's and goes back to it, and the queue's chunks
 * are freed at once, as in the readiness path. Larger output is sent from
 * the chunks themselves (the copy would cost more than the churn). */
static char *slot_get(struct uworker *w, int big)
{
    void *p = w->slots[big];
    if (p) {
        memcpy(&w->slots[big], p, sizeof(void *));
        w->nslots[big]--;
        return p;
    }
    return malloc(big ? URING_SLOT_BIG : URING_SLOT_SMALL);
}

static void slot_put(struct uworker *w, char *p, int big)
{
    if (w->nslots[big] >= URING_SLOTS_KEPT) {
        free(p);
        return;
    }
    memcpy(p, &w->slots[big], sizeof(void *));
    w->slots[big] = p;
    w->nslots[big]++;
}

void iop__uring_slots_free(struct uworker *w)
{
    for (int big = 0; big < 2; big++) {
        char *p;
        while ((p = w->slots[big]) != NULL) {
            memcpy(&w->slots[big], p, sizeof(void *));
            free(p);
        }
        w->nslots[big] = 0;
    }
}

/* ---- letting a connection go --------------------------------------------------- */

/* Freed only when nothing of it is in flight: no completion can find freed
 * memory, and the descriptor number is not reused while an operation
 * names it. */
static void maybe_free(struct uworker *w, struct uconn *u)
{
    if (!(u->c.flags & IOP__CONN_GONE) || u->inflight > 0)
        return;
    iop__connlist_remove(&w->dying, &u->c);
    close(u->c.fd);
    iop__conn_release(&u->c);
    free(u->sm);
    if (u->slot)
        slot_put(w, u->slot, u->slot_big);
    free(u);
    w->nconns--;
    iop__uring_conn_closed(w);
}

static void release(struct iop__connset *set, iop_conn *c)
{
    struct uworker *w = worker_of(set);
    struct uconn *u = of(c);
    iop__connlist_append(&w->dying, c);
    /* Operations still in flight end with -ECANCELED; the last one frees. */
    if (u->recv_on && !u->recv_cancel) {
        iop__uring_cancel(w, iop__uring_ud(u, COP_RECV));
        u->recv_cancel = 1;
    }
    if (u->send_on && !u->send_cancel) {
        iop__uring_cancel(w, iop__uring_ud(u, COP_SEND));
        u->send_cancel = 1;
    }
    maybe_free(w, u);
}

/* ---- submitting ----------------------------------------------------------------- */

static void arm_recv(struct uworker *w, struct uconn *u)
{
    /* The kernel picks a buffer from the worker's group when bytes come:
     * an idle connection holds none. */
    struct io_uring_sqe *sqe = iop__uring_sqe(w, iop__uring_ud(u, COP_RECV));
    if (w->ms_recv)
        io_uring_prep_recv_multishot(sqe, u->c.fd, NULL, 0, 0);
    else
        io_uring_prep_recv(sqe, u->c.fd, NULL, w->buf_size, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = URING_BGID;
    u->recv_on = 1;
    u->inflight++;
}

static int discard_input(struct iop__connset *set, iop_conn *c)
{
    struct uconn *u = of(c);
    if (!u->recv_on)
        arm_recv(worker_of(set), u);
    return 0;
}

static void send_slot(struct uworker *w, struct uconn *u)
{
    io_uring_prep_send(iop__uring_sqe(w, iop__uring_ud(u, COP_SEND)), u->c.fd, u->slot + u->slot_off,
                       (size_t)(u->slot_len - u->slot_off), MSG_NOSIGNAL);
    u->send_on = 1;
    u->inflight++;
}

/* One send of what is queued: output up to URING_SLOT_BIG copied into a
 * slot; else a plain send for one chunk, a sendmsg over up to
 * URING_SEND_IOV chunks otherwise, the chunks staying where they are
 * until the completion says how much the socket took. */
static void start_send(struct uworker *w, struct uconn *u)
{
    iop_conn *c = &u->c;
    if (u->send_on || (c->flags & IOP__CONN_GONE) || c->out.bytes == 0)
        return;
    int big = c->out.bytes > URING_SLOT_SMALL;
    if (c->out.bytes <= URING_SLOT_BIG && (u->slot = slot_get(w, big)) != NULL) {
        u->slot_big = (unsigned char)big;
        struct iovec iov[URING_SEND_IOV];
        int n = iop__outq_iov(&c->out, iov, URING_SEND_IOV);
        size_t len = 0;
        for (int i = 0; i < n; i++) {
            memcpy(u->slot + len, iov[i].iov_base, iov[i].iov_len);
            len += iov[i].iov_len;
        }
        iop__outq_consume(&c->out, len);
        u->slot_off = 0;
        u->slot_len = (unsigned short)len;
        send_slot(w, u);
        return;
    }
    struct iovec one;
    int n = iop__outq_iov(&c->out, &one, 1);
    if (n == 0)
        return;
    if (one.iov_len < c->out.bytes && (u->sm || (u->sm = malloc(sizeof *u->sm)))) {
        n = iop__outq_iov(&c->out, u->sm->iov, URING_SEND_IOV);
        memset(&u->sm->msg, 0, sizeof u->sm->msg);
        u->sm->msg.msg_iov = u->sm->iov;
        u->sm->msg.msg_iovlen = (size_t)n;
        io_uring_prep_sendmsg(iop__uring_sqe(w, iop__uring_ud(u, COP_SEND)), c->fd, &u->sm->msg,
                              MSG_NOSIGNAL);
    } else { /* one chunk (or no memory for more) */
        io_uring_prep_send(iop__uring_sqe(w, iop__uring_ud(u, COP_SEND)), c->fd, one.iov_base,
                           one.iov_len, MSG_NOSIGNAL);
    }
    u->send_on = 1;
    u->inflight++;
}

/* ---- what to submit next ---------------------------------------------------------- */

/* A producer's next output, a send, the end, a recv armed or cancelled. */
static void settle(struct iop__connset *set, iop_conn *c)
{
    struct uworker *w = worker_of(set);
    struct uconn *u = of(c);
    if (c->flags & IOP__CONN_GONE)
        return;
    if (c->flags & IOP__CONN_LINGER) { /* kicked: a dry ring ended its recv */
        discard_input(set, c);
        return;
    }
    iop__connset_produce(set, c);
    /* Not while a small send is in flight (it left the queue empty). */
    if (c->out.bytes == 0 && !u->send_on && iop__connset_done(set, c)) {
        iop__connset_finish(set, c);
        return;
    }
    /* What is queued, or the last words (TLS close_notify) that done()
     * has just queued: nothing else would send those. */
    if (c->out.bytes > 0)
        start_send(w, u);
    iop__connset_watermarks(set, c);
    if (iop__connset_wants_input(set, c) && !u->recv_on) {
        arm_recv(w, u);
    } else if ((c->flags & IOP__CONN_PAUSED) && u->recv_on && !u->recv_cancel) {
        /* Backpressure: a multishot recv would go on reading; what it has
         * already read still comes, and is delivered. */
        iop__uring_cancel(w, iop__uring_ud(u, COP_RECV));
        u->recv_cancel = 1;
    }
}

static void arm_timer(struct iop__connset *set, uint64_t at)
{
    struct uworker *w = worker_of(set);
    uint64_t ms = at > set->now ? at - set->now : 0;
    w->sweep_ts.tv_sec = (long long)(ms / 1000);
    w->sweep_ts.tv_nsec = (long long)(ms % 1000) * 1000000;
    io_uring_prep_timeout(iop__uring_sqe(w, UOP_SWEEP), &w->sweep_ts, 0, 0);
    w->sweep_on++;
}

const struct iop__connset_ops iop__uring_conn_ops = {
    .release = release,
    .settle = settle,
    .discard_input = discard_input,
    .arm_timer = arm_timer,
};

/* Stopping: answer what has arrived (read synchronously, now that no recv
 * is in flight to race with), then close after the output. */
static void stop_conn(struct uworker *w, struct uconn *u)
{
    iop_conn *c = &u->c;
    u->stop_read = 0;
    for (int i = 0; i < STOP_READS; i++) {
        if (c->flags & (IOP__CONN_CLOSING | IOP__CONN_PAUSED | IOP__CONN_PEER_EOF))
            break;
        ssize_t n = recv(c->fd, w->scratch, URING_SCRATCH, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n == 0) {
            iop__connset_peer_eof(&w->set, c);
            break;
        }
        int r = n < 0 ? -errno : iop__connset_input(&w->set, c, w->scratch, (size_t)n);
        if (r != 0) {
            iop__connset_close(&w->set, c, r);
            return;
        }
    }
    iop__connset_stop_conn(&w->set, c);
}

static void on_recv(struct uworker *w, struct uconn *u, int res, unsigned flags)
{
    iop_conn *c = &u->c;
    const char *data = NULL;
    int bid = -1; /* a provided buffer this CQE hands back to the ring */
    if (flags & IORING_CQE_F_BUFFER) {
        unsigned b = flags >> IORING_CQE_BUFFER_SHIFT;
        data = iop__uring_buf_data(w, b, res, flags, &bid);
    }
    if (!(flags & IORING_CQE_F_MORE)) {
        u->recv_on = 0;
        u->recv_cancel = 0;
        u->inflight--;
    }
    if (c->flags & IOP__CONN_GONE) {
        if (bid >= 0)
            iop__uring_buf_return(w, (unsigned)bid);
        maybe_free(w, u);
        return;
    }
    /* From here on, a close may free u: nothing touches it after one. */
    int err = 0, starved = 0;
    if (res > 0) {
        if (w->ms_recv)
            w->recv_proven = 1;
        if (!(c->flags & IOP__CONN_LINGER)) /* lingering: discarded */
            err = iop__connset_input(&w->set, c, data, (size_t)res);
    } else if (res == 0) {
        if (c->flags & IOP__CONN_LINGER)
            err = 1; /* the peer closed: done */
        else
            iop__connset_peer_eof(&w->set, c);
    } else if (res == -ENOBUFS) {
        w->enobufs++; /* the ring ran dry */
        starved = 1;
    } else if (res == -EINVAL && w->ms_recv && !w->recv_proven) {
        w->ms_recv = 0;
        iop_report(w->base.s, IOP_LOG_INFO, "uring: no multishot recv on this kernel; "
                   "using single-shot recv");
    } else if (res != -ECANCELED && res != -EINTR && res != -EAGAIN) {
        err = res;
    }
    if (bid >= 0)
        iop__uring_buf_return(w, (unsigned)bid);
    if (err) {
        iop__connset_close(&w->set, c, err > 0 ? 0 : err);
        return;
    }
    /* A recv ended by a dry ring is armed again at the end of the turn,
     * after the buffers handed back in it are published: armed now, it
     * could be submitted (a full SQ) into a ring just as dry, again and
     * again. */
    if (starved && !u->recv_on && !(u->stop_read && w->set.stopping)) {
        iop__connset_kick(c, &w->set);
        if (c->flags & IOP__CONN_KICKED)
            return;
    }
    if (c->flags & IOP__CONN_LINGER) {
        discard_input(&w->set, c); /* go on discarding until EOF or the deadline */
        return;
    }
    if (!u->recv_on && u->stop_read && w->set.stopping) {
        stop_conn(w, u);
        return;
    }
    settle(&w->set, c);
}

static void on_send(struct uworker *w, struct uconn *u, int res)
{
    u->send_on = 0;
    u->send_cancel = 0;
    u->inflight--;
    if (u->c.flags & IOP__CONN_GONE) {
        maybe_free(w, u);
        return;
    }
    if (res <= 0) {
        iop__connset_close(&w->set, &u->c, res < 0 ? res : -EPIPE);
        return;
    }
    if (u->slot) {
        u->slot_off = (unsigned short)(u->slot_off + res);
        if (u->slot_off < u->slot_len) { /* a partial send: the rest first */
            send_slot(w, u);
            return;
        }
        slot_put(w, u->slot, u->slot_big);
        u->slot = NULL;
    } else {
        iop__outq_consume(&u->c.out, (size_t)res);
    }
    if (u->c.out.bytes == 0 && u->sm) {
        free(u->sm);
        u->sm = NULL;
    }
    iop__connset_sent(&w->set, &u->c);
    settle(&w->set, &u->c);
}

void iop__uring_conn_cqe(struct uworker *w, struct uconn *u, unsigned op, int res,
                    unsigned flags)
{
    if (op == COP_RECV)
        on_recv(w, u, res, flags);
    else if (op == COP_SEND)
        on_send(w, u, res);
}

/* ---- life cycle ---------------------------------------------------------------------- */

void iop__uring_conn_open(struct uworker *w, int fd, const struct sockaddr_storage *peer,
                     socklen_t len)
{
    struct uconn *u = calloc(1, sizeof *u);
    if (!u) {
        close(fd);
        iop_report(w->base.s, IOP_LOG_ERROR, "cannot serve a connection: %s",
                   iop_strerror(-ENOMEM));
        iop__uring_conn_closed(w);
        return;
    }
    w->nconns++;
    iop__connset_open(&w->set, &u->c, fd, peer, len);
    settle(&w->set, &u->c);
}

/* Graceful stop: each connection answers what it has received, flushes
 * and closes. A recv in flight is cancelled first and the rest is read
 * when it has ended (on_recv), so the order of the input is kept. */
void iop__uring_conns_stop(struct uworker *w)
{
    for (iop_conn *c = w->set.active.head, *next; c; c = next) {
        next = c->next;
        struct uconn *u = of(c);
        u->stop_read = 1;
        if (u->recv_on) {
            if (!u->recv_cancel) {
                iop__uring_cancel(w, iop__uring_ud(u, COP_RECV));
                u->recv_cancel = 1;
            }
        } else {
            stop_conn(w, u);
        }
    }
}

void iop__uring_conns_free_all(struct uworker *w)
{
    while (w->dying.head) {
        struct uconn *u = of(w->dying.head);
        u->inflight = 0;
        maybe_free(w, u);
    }
}

#endif /* IOPLEX_HAVE_URING */
