/*
 * The uring model's stream connection (the design is in uring.c): what
 * each recv and send completion does to a connection, and the state
 * machine that decides what to submit next (settle()), with the same
 * rules as the readiness path in src/stream/evconn.c: watermarks,
 * producers asked for more below the low watermark, lingering close,
 * idle timeout over an LRU list, graceful stop.
 *
 * A connection is freed only when it is closed (dead) and no operation of
 * it is in flight (u->inflight == 0), so no completion ever finds a freed
 * connection; its descriptor is closed at that moment too, so the number
 * cannot be reused while an operation still names it.
 */
#define _GNU_SOURCE
#include "uring.h"

#ifdef IOPLEX_HAVE_URING

#include "stream/mailbox.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PRODUCE_ROUNDS 16   /* on_drain calls per completion, for fairness */
#define LINGER_MS 2000
#define STOP_READS 16       /* synchronous reads per connection at stop */

/* ---- lists ------------------------------------------------------------------ */

static struct uconn *of(iop_conn *c) { return (struct uconn *)c; }
static int kick(struct uworker *w, struct uconn *u);

/* Activity moves a connection to the tail: the idle sweep looks at the head.
 * Activity is progress, as in evconn.c: a complete message received or
 * bytes sent, not bytes that only add to a partial frame. */
static void touch(struct uworker *w, struct uconn *u)
{
    iop_conn *c = &u->c;
    c->last_active = w->now;
    if (w->active.tail != c && !(c->flags & IOP__CONN_LINGER) && !u->dead) {
        iop__connlist_remove(&w->active, c);
        iop__connlist_append(&w->active, c);
    }
}

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

void uring_slots_free(struct uworker *w)
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

/* ---- closing ------------------------------------------------------------------ */

static void notify_close(iop_conn *c, int err)
{
    if (c->flags & IOP__CONN_NOTIFIED)
        return;
    c->flags |= IOP__CONN_NOTIFIED;
    if (c->server->svc->on_close)
        c->server->svc->on_close(c, err);
}

static void maybe_free(struct uworker *w, struct uconn *u)
{
    if (!u->dead || u->inflight > 0)
        return;
    iop__connlist_remove(&w->dying, &u->c);
    close(u->c.fd);
    iop__conn_release(&u->c);
    free(u->sm);
    if (u->slot)
        slot_put(w, u->slot, u->slot_big);
    free(u);
    w->nconns--;
    uring_conn_closed(w);
}

void uring_conn_close(struct uworker *w, struct uconn *u, int err)
{
    iop_conn *c = &u->c;
    if (u->dead)
        return;
    if (err && err != -ECONNRESET && err != -EPIPE && err != -ECANCELED &&
        err != -ETIMEDOUT)
        iop_report(w->s, IOP_LOG_DEBUG, "connection %s: %s",
                   iop_conn_peer_name(c), iop_strerror(err));
    notify_close(c, err);
    if (w->mbox) /* on_close has returned: nothing can be posted to c now */
        iop__mailbox_purge(w->mbox, c);
    char name[IOP_PATH_MAX + 16];
    iop_report(w->s, IOP_LOG_DEBUG, "close %s", iop__conn_peer_str(c, name, sizeof name));
    if (c->flags & IOP__CONN_KICKED) {
        for (size_t i = 0; i < w->nkicked; i++)
            if (w->kicked[i] == u)
                w->kicked[i] = NULL;
        c->flags &= ~IOP__CONN_KICKED;
    }
    iop__connlist_remove((c->flags & IOP__CONN_LINGER) ? &w->lingering : &w->active, c);
    u->dead = 1;
    iop__connlist_append(&w->dying, c);
    /* Operations still in flight end with -ECANCELED; the last one frees. */
    if (u->recv_on && !u->recv_cancel) {
        uring_cancel(w, uring_ud(u, COP_RECV));
        u->recv_cancel = 1;
    }
    if (u->send_on && !u->send_cancel) {
        uring_cancel(w, uring_ud(u, COP_SEND));
        u->send_cancel = 1;
    }
    maybe_free(w, u);
}

/* ---- submitting ----------------------------------------------------------------- */

static void arm_recv(struct uworker *w, struct uconn *u)
{
    /* The kernel picks a buffer from the worker's group when bytes come:
     * an idle connection holds none. */
    struct io_uring_sqe *sqe = uring_sqe(w, uring_ud(u, COP_RECV));
    if (w->ms_recv)
        io_uring_prep_recv_multishot(sqe, u->c.fd, NULL, 0, 0);
    else
        io_uring_prep_recv(sqe, u->c.fd, NULL, w->buf_size, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = URING_BGID;
    u->recv_on = 1;
    u->inflight++;
}

/* One send of what is queued: a plain send for one chunk, a sendmsg over
 * up to URING_SEND_IOV chunks otherwise. The chunks stay where they are
 * until the completion says how much the socket took. */
static void send_slot(struct uworker *w, struct uconn *u)
{
    io_uring_prep_send(uring_sqe(w, uring_ud(u, COP_SEND)), u->c.fd, u->slot + u->slot_off,
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
    if (u->send_on || u->dead || c->out.bytes == 0)
        return;
    int big = c->out.bytes > URING_SLOT_SMALL;
    if (c->out.bytes <= URING_SLOT_BIG && (u->slot = slot_get(w, big)) != NULL) {
        u->slot_big = (unsigned char)big;
        struct iovec iov[URING_SEND_IOV];
        int n = iop_outq_iov(&c->out, iov, URING_SEND_IOV);
        size_t len = 0;
        for (int i = 0; i < n; i++) {
            memcpy(u->slot + len, iov[i].iov_base, iov[i].iov_len);
            len += iov[i].iov_len;
        }
        iop_outq_consume(&c->out, len);
        u->slot_off = 0;
        u->slot_len = (unsigned short)len;
        send_slot(w, u);
        return;
    }
    struct iovec one;
    int n = iop_outq_iov(&c->out, &one, 1);
    if (n == 0)
        return;
    if (one.iov_len < c->out.bytes && (u->sm || (u->sm = malloc(sizeof *u->sm)))) {
        n = iop_outq_iov(&c->out, u->sm->iov, URING_SEND_IOV);
        memset(&u->sm->msg, 0, sizeof u->sm->msg);
        u->sm->msg.msg_iov = u->sm->iov;
        u->sm->msg.msg_iovlen = (size_t)n;
        io_uring_prep_sendmsg(uring_sqe(w, uring_ud(u, COP_SEND)), c->fd, &u->sm->msg,
                              MSG_NOSIGNAL);
    } else { /* one chunk (or no memory for more) */
        io_uring_prep_send(uring_sqe(w, uring_ud(u, COP_SEND)), c->fd, one.iov_base,
                           one.iov_len, MSG_NOSIGNAL);
    }
    u->send_on = 1;
    u->inflight++;
}

/* ---- the state machine ------------------------------------------------------------ */

/* Our side is done and flushed. If the peer may still send, a plain
 * close() would answer with RST and could destroy what we just wrote
 * before the peer reads it: shut our side and discard input until the
 * peer closes, for at most LINGER_MS. */
static void finish(struct uworker *w, struct uconn *u)
{
    iop_conn *c = &u->c;
    notify_close(c, 0); /* before our FIN: see evconn.c's finish() */
    if ((c->flags & IOP__CONN_PEER_EOF) || shutdown(c->fd, SHUT_WR) != 0) {
        uring_conn_close(w, u, 0);
        return;
    }
    iop__connlist_remove(&w->active, c);
    c->flags |= IOP__CONN_LINGER;
    c->flags &= ~IOP__CONN_PAUSED;
    c->deadline = w->now + LINGER_MS;
    iop__connlist_append(&w->lingering, c); /* same duration for all: deadline order */
    iop_buf_free(&c->in);
    if (!u->recv_on)
        arm_recv(w, u);
    uring_arm_sweep(w);
}

/* Decide what the connection needs next: more output from a producer,
 * a send, the end, a recv armed or cancelled. */
static void settle(struct uworker *w, struct uconn *u)
{
    iop_conn *c = &u->c;
    if (u->dead || (c->flags & IOP__CONN_LINGER))
        return;
    const struct iop_service *svc = w->s->svc;
    for (int round = 0; round < PRODUCE_ROUNDS && svc->on_drain; round++) {
        if (c->out.bytes > w->low_water || w->stopping || (c->flags & IOP__CONN_CLOSING))
            break;
        size_t before = c->out.bytes;
        svc->on_drain(c);
        if (c->out.bytes == before)
            break;
    }
    if (c->out.bytes > 0) {
        start_send(w, u);
    } else if ((c->flags & (IOP__CONN_CLOSING | IOP__CONN_PEER_EOF)) && !u->send_on) {
        /* Closing, or past the peer's FIN (it ends input, not output)
         * with nothing more from the producer; not while a small send is
         * in flight (it left the queue empty). */
        finish(w, u);
        return;
    }
    if (c->out.bytes >= w->high_water)
        c->flags |= IOP__CONN_PAUSED;
    else if (c->out.bytes <= w->low_water)
        c->flags &= ~IOP__CONN_PAUSED;
    int want = !(c->flags & (IOP__CONN_PAUSED | IOP__CONN_PEER_EOF | IOP__CONN_CLOSING)) &&
               !w->stopping;
    if (want && !u->recv_on) {
        arm_recv(w, u);
    } else if ((c->flags & IOP__CONN_PAUSED) && u->recv_on && !u->recv_cancel) {
        /* Backpressure: a multishot recv would go on reading; what it has
         * already read still comes, and is delivered. */
        uring_cancel(w, uring_ud(u, COP_RECV));
        u->recv_cancel = 1;
    }
}

/* Input as evconn's read_input() takes it, from `data` (n > 0). Returns 0,
 * or -1 if the connection was closed. */
static int take_input(struct uworker *w, struct uconn *u, const char *data, size_t n)
{
    iop_conn *c = &u->c;
    if (c->flags & IOP__CONN_CLOSING)
        return 0; /* no more messages: discarded */
    size_t before = iop_buf_used(&c->in);
    int r = iop__conn_dispatch_bytes(c, data, n);
    if (r == 0 && iop_buf_used(&c->in) < before + n)
        touch(w, u); /* a message was completed: a partial frame is no progress */
    if (r == -EMSGSIZE) {
        iop_report(w->s, IOP_LOG_INFO, "closing %s: message longer than %zu bytes",
                   iop_conn_peer_name(c), w->s->max_frame);
        iop_close(c);
    } else if (r != 0) {
        uring_conn_close(w, u, r);
        return -1;
    }
    if (iop_buf_used(&c->in) == 0)
        iop_buf_free(&c->in); /* idle connections hold no buffer */
    return 0;
}

static void peer_eof(iop_conn *c)
{
    c->flags |= IOP__CONN_PEER_EOF;
    iop__conn_eof(c); /* a last line without "\n" is a message too */
}

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
        if (n < 0) {
            uring_conn_close(w, u, -errno);
            return;
        }
        if (n == 0) {
            peer_eof(c);
            break;
        }
        if (take_input(w, u, w->scratch, (size_t)n) != 0)
            return;
    }
    iop__conn_eof(c); /* as the blocking path: stop ends the input */
    iop_close(c);
    settle(w, u);
}

static void on_recv(struct uworker *w, struct uconn *u, int res, unsigned flags)
{
    iop_conn *c = &u->c;
    const char *data = NULL;
    int bid = -1; /* a provided buffer this CQE hands back to the ring */
    if (flags & IORING_CQE_F_BUFFER) {
        unsigned b = flags >> IORING_CQE_BUFFER_SHIFT;
        data = uring_buf_data(w, b, res, flags, &bid);
    }
    if (!(flags & IORING_CQE_F_MORE)) {
        u->recv_on = 0;
        u->recv_cancel = 0;
        u->inflight--;
    }
    if (u->dead) {
        if (bid >= 0)
            uring_buf_return(w, (unsigned)bid);
        maybe_free(w, u);
        return;
    }
    /* From here on, a close may free u: nothing touches it after one. */
    int closed = 0, starved = 0;
    if (res > 0) {
        if (w->ms_recv)
            w->recv_proven = 1;
        if (!(c->flags & IOP__CONN_LINGER)) /* lingering: discarded */
            closed = take_input(w, u, data, (size_t)res) != 0;
    } else if (res == 0) {
        if (c->flags & IOP__CONN_LINGER) {
            uring_conn_close(w, u, 0);
            closed = 1;
        } else {
            peer_eof(c);
        }
    } else if (res == -ENOBUFS) {
        w->enobufs++; /* the ring ran dry */
        starved = 1;
    } else if (res == -EINVAL && w->ms_recv && !w->recv_proven) {
        w->ms_recv = 0;
        iop_report(w->s, IOP_LOG_INFO, "uring: no multishot recv on this kernel; "
                   "using single-shot recv");
    } else if (res != -ECANCELED && res != -EINTR && res != -EAGAIN) {
        uring_conn_close(w, u, res);
        closed = 1;
    }
    if (bid >= 0)
        uring_buf_return(w, (unsigned)bid);
    if (closed)
        return;
    /* A recv ended by a dry ring is armed again at the end of the turn,
     * after the buffers handed back in it are published: armed now, it
     * could be submitted (a full SQ) into a ring just as dry, again and
     * again. */
    if (starved && !u->recv_on && !(u->stop_read && w->stopping) && kick(w, u) == 0)
        return;
    if (c->flags & IOP__CONN_LINGER) {
        if (!u->recv_on)
            arm_recv(w, u); /* go on discarding until EOF or the deadline */
        return;
    }
    if (!u->recv_on && u->stop_read && w->stopping) {
        stop_conn(w, u);
        return;
    }
    settle(w, u);
}

static void on_send(struct uworker *w, struct uconn *u, int res)
{
    u->send_on = 0;
    u->send_cancel = 0;
    u->inflight--;
    if (u->dead) {
        maybe_free(w, u);
        return;
    }
    if (res <= 0) {
        uring_conn_close(w, u, res < 0 ? res : -EPIPE);
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
        iop_outq_consume(&u->c.out, (size_t)res);
    }
    if (u->c.out.bytes == 0 && u->sm) {
        free(u->sm);
        u->sm = NULL;
    }
    touch(w, u);
    settle(w, u);
}

void uring_conn_cqe(struct uworker *w, struct uconn *u, unsigned op, int res,
                    unsigned flags)
{
    if (op == COP_RECV)
        on_recv(w, u, res, flags);
    else if (op == COP_SEND)
        on_send(w, u, res);
}

/* ---- life cycle ---------------------------------------------------------------------- */

void uring_conn_open(struct uworker *w, int fd, const struct sockaddr_storage *peer,
                     socklen_t len)
{
    struct uconn *u = calloc(1, sizeof *u);
    if (!u) {
        close(fd);
        iop_report(w->s, IOP_LOG_ERROR, "cannot serve a connection: %s",
                   iop_strerror(-ENOMEM));
        uring_conn_closed(w);
        return;
    }
    iop_conn *c = &u->c;
    iop__conn_init(c, w->s, fd, peer, len);
    c->owner = w;
    c->mbox = w->mbox;
    c->last_active = w->now;
    w->nconns++;
    iop__connlist_append(&w->active, c);
    uring_arm_sweep(w);
    char name[IOP_PATH_MAX + 16];
    iop_report(w->s, IOP_LOG_DEBUG, "open %s (connection %llu)",
               iop__conn_peer_str(c, name, sizeof name), (unsigned long long)c->id);
    if (w->s->svc->on_open)
        w->s->svc->on_open(c);
    settle(w, u);
}

/* Graceful stop: each connection answers what it has received, flushes
 * and closes. A recv in flight is cancelled first and the rest is read
 * when it has ended (on_recv), so the order of the input is kept. */
void uring_conns_stop(struct uworker *w)
{
    for (iop_conn *c = w->active.head, *next; c; c = next) {
        next = c->next;
        struct uconn *u = of(c);
        u->stop_read = 1;
        if (u->recv_on) {
            if (!u->recv_cancel) {
                uring_cancel(w, uring_ud(u, COP_RECV));
                u->recv_cancel = 1;
            }
        } else {
            stop_conn(w, u);
        }
    }
}

void uring_arm_sweep(struct uworker *w)
{
    if (w->sweep_on)
        return;
    int idle = w->s->cfg.idle_timeout_ms;
    if (idle <= 0 && !w->lingering.head)
        return;
    uint64_t every = idle > 0 ? (uint64_t)(idle / 4 > 0 ? idle / 4 : 1) : 250;
    if (every > 250)
        every = 250;
    w->sweep_ts.tv_sec = (long long)(every / 1000);
    w->sweep_ts.tv_nsec = (long long)(every % 1000) * 1000000;
    io_uring_prep_timeout(uring_sqe(w, UOP_SWEEP), &w->sweep_ts, 0, 0);
    w->sweep_on = 1;
}

void uring_sweep(struct uworker *w)
{
    while (w->lingering.head && w->lingering.head->deadline <= w->now)
        uring_conn_close(w, of(w->lingering.head), 0);
    int idle = w->s->cfg.idle_timeout_ms;
    while (idle > 0 && w->active.head &&
           w->active.head->last_active + (uint64_t)idle <= w->now) {
        iop_report(w->s, IOP_LOG_DEBUG, "closing %s: idle for %d ms",
                   iop_conn_peer_name(w->active.head), idle);
        uring_conn_close(w, of(w->active.head), -ETIMEDOUT);
    }
    uring_arm_sweep(w);
}

/* ---- posts (iop_post) ------------------------------------------------------------------ */

/* Note u for the end of the turn (uring_run_kicked): 0, or -ENOMEM. */
static int kick(struct uworker *w, struct uconn *u)
{
    if (u->c.flags & IOP__CONN_KICKED)
        return 0;
    if (w->nkicked == w->kickcap) {
        size_t cap = w->kickcap ? w->kickcap * 2 : 16;
        struct uconn **k = realloc(w->kicked, cap * sizeof *k);
        if (!k)
            return -ENOMEM;
        w->kicked = k;
        w->kickcap = cap;
    }
    w->kicked[w->nkicked++] = u;
    u->c.flags |= IOP__CONN_KICKED;
    return 0;
}

/* The mailbox's hook: c got output outside its own completions, maybe
 * inside another connection's callback with the service's lock held, so
 * only note it; uring_run_kicked() settles it at the end of the turn
 * (without memory for the note, at the connection's next completion). */
void uring_kick(iop_conn *c, void *arg)
{
    kick(arg, of(c));
}

void uring_run_kicked(struct uworker *w)
{
    /* In the order kicked (fair to connections a dry ring starved);
     * settling may close (an entry becomes NULL) or kick more (appended). */
    for (size_t i = 0; i < w->nkicked; i++) {
        struct uconn *u = w->kicked[i];
        if (!u)
            continue;
        w->kicked[i] = NULL;
        iop_conn *c = &u->c;
        c->flags &= ~IOP__CONN_KICKED;
        if (u->dead)
            continue;
        if (c->flags & IOP__CONN_LINGER) { /* a dry ring ended its recv */
            if (!u->recv_on)
                arm_recv(w, u);
            continue;
        }
        if (c->flags & IOP__CONN_OVERFLOW) {
            iop__mailbox_report_overflow(c);
            uring_conn_close(w, u, -ENOBUFS);
        } else {
            settle(w, u);
        }
    }
    w->nkicked = 0;
}

void uring_conns_free_all(struct uworker *w)
{
    while (w->dying.head) {
        struct uconn *u = of(w->dying.head);
        u->inflight = 0;
        maybe_free(w, u);
    }
}

#endif /* IOPLEX_HAVE_URING */
