/*
 * The non-blocking connection path (see evconn.h).
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
 *
 * Backpressure: above the high watermark of queued output the connection
 * stops being read, so a peer that sends without reading cannot grow the
 * server's memory past high_water + one read budget. Reading resumes
 * below the low watermark. A producer (on_drain) is asked for more only
 * below the low watermark.
 *
 * Posts (iop_post, services with shared state): the loop watches its
 * mailbox's eventfd and drains it on this thread (mailbox.h). Output given
 * to a connection outside its own callbacks (a post, from this thread or
 * drained) is not written on the spot, since the poster may hold the
 * service's lock: the connection is "kicked" into a list that a timer due
 * at once flushes at the end of the iteration, one sendmsg() per
 * connection for all that was posted to it. A connection a post has
 * overflowed (IOP__CONN_OVERFLOW) is closed there.
 */
#define _GNU_SOURCE
#include "evconn.h"
#include "mailbox.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SCRATCH_SIZE 65536
#define READS_PER_WAKE 4    /* the per-wake-up budget: 4 x 64 KiB */
#define PRODUCE_ROUNDS 16   /* on_drain calls per wake-up, for fairness */
#define LINGER_MS 2000
#define HIGH_WATER_DEFAULT (256 * 1024)

/* ---- lists ------------------------------------------------------------------- */

/* Activity moves a connection to the tail, so the head is always the one
 * silent longest: the idle sweep stops at the first that is not expired.
 * Activity is progress (the rule of src/stream/blocking.c): a complete
 * message received or bytes written. Bytes that only add to a partial
 * frame are not, so a peer trickling a frame it never finishes is idle. */
static void touch(struct iop__evctx *x, iop_conn *c)
{
    c->last_active = iop__loop_now(x->loop);
    if (x->active.tail != c && !(c->flags & IOP__CONN_LINGER)) {
        iop__connlist_remove(&x->active, c);
        iop__connlist_append(&x->active, c);
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

static void unkick(struct iop__evctx *x, iop_conn *c)
{
    for (size_t i = 0; i < x->nkicked; i++)
        if (x->kicked[i] == c)
            x->kicked[i] = NULL;
    c->flags &= ~IOP__CONN_KICKED;
}

static void close_now(struct iop__evctx *x, iop_conn *c, int err)
{
    if (err && err != -ECONNRESET && err != -EPIPE && err != -ETIMEDOUT)
        iop_report(x->s, IOP_LOG_DEBUG, "connection %s: %s",
                   iop_conn_peer_name(c), iop_strerror(err));
    notify_close(c, err);
    if (x->mbox) /* on_close has returned: nothing can be posted to c now */
        iop__mailbox_purge(x->mbox, c);
    char name[IOP_PATH_MAX + 16];
    iop_report(x->s, IOP_LOG_DEBUG, "close %s", iop__conn_peer_str(c, name, sizeof name));
    if (c->flags & IOP__CONN_KICKED)
        unkick(x, c);
    iop__loop_io(x->loop, c->fd, 0, NULL, NULL);
    close(c->fd);
    iop__connlist_remove((c->flags & IOP__CONN_LINGER) ? &x->lingering : &x->active, c);
    iop__conn_release(c);
    free(c);
    x->nconns--;
    if (x->conn_closed)
        x->conn_closed(x);
    if (x->stopping && x->nconns == 0)
        iop__loop_stop(x->loop);
}

static void sweep(iop_loop *loop, void *arg);
static void on_io(iop_loop *loop, int fd, unsigned events, void *arg);

static void arm_sweep(struct iop__evctx *x)
{
    if (iop__timer_active(&x->sweep))
        return;
    int idle = x->s->cfg.idle_timeout_ms;
    uint64_t every = idle > 0 ? (uint64_t)(idle / 4 > 0 ? idle / 4 : 1) : 250;
    if (every > 250)
        every = 250;
    if (idle > 0 || x->lingering.head)
        iop__timer_start(x->loop, &x->sweep, every, sweep, x);
}

/* Our side is done and flushed. If the peer is still sending, a plain
 * close() would answer with RST and could destroy what we just wrote
 * before the peer reads it: shut our side and discard input until the
 * peer closes, for at most LINGER_MS (nginx's lingering close). */
static void finish(struct iop__evctx *x, iop_conn *c)
{
    /* on_close before our FIN: a peer that sees its end of stream must find
     * the service done with it (chat: its leave said before any later
     * line of another member). */
    notify_close(c, 0);
    if ((c->flags & IOP__CONN_PEER_EOF) || shutdown(c->fd, SHUT_WR) != 0) {
        close_now(x, c, 0);
        return;
    }
    iop__connlist_remove(&x->active, c);
    c->flags |= IOP__CONN_LINGER;
    c->deadline = iop__loop_now(x->loop) + LINGER_MS;
    iop__connlist_append(&x->lingering, c); /* same duration for all: deadline order */
    iop_buf_free(&c->in);
    if (iop__loop_io(x->loop, c->fd, IOP_EV_READ, on_io, c) != 0)
        close_now(x, c, 0);
    arm_sweep(x);
}

static void sweep(iop_loop *loop, void *arg)
{
    struct iop__evctx *x = arg;
    uint64_t now = iop__loop_now(loop);
    while (x->lingering.head && x->lingering.head->deadline <= now)
        close_now(x, x->lingering.head, 0);
    int idle = x->s->cfg.idle_timeout_ms;
    while (idle > 0 && x->active.head &&
           x->active.head->last_active + (uint64_t)idle <= now) {
        iop_report(x->s, IOP_LOG_DEBUG, "closing %s: idle for %d ms",
                   iop_conn_peer_name(x->active.head), idle);
        close_now(x, x->active.head, -ETIMEDOUT);
    }
    arm_sweep(x);
}

/* ---- the I/O ------------------------------------------------------------------- */

/* Set the interest the connection's state calls for. */
static int update_interest(struct iop__evctx *x, iop_conn *c)
{
    unsigned mask = 0;
    if (!(c->flags & (IOP__CONN_PAUSED | IOP__CONN_PEER_EOF | IOP__CONN_CLOSING)))
        mask |= IOP_EV_READ;
    if (c->out.bytes > 0)
        mask |= IOP_EV_WRITE;
    if (mask == iop__loop_mask(x->loop, c->fd))
        return 0;
    return iop__loop_io(x->loop, c->fd, mask, on_io, c);
}

/* Write what is queued, let a producer add more, and settle the state.
 * Returns 0, or -1 if the connection was closed (c is gone). */
static int flush(struct iop__evctx *x, iop_conn *c)
{
    const struct iop_service *svc = x->s->svc;
    for (int round = 0;; round++) {
        while (c->out.bytes > 0) {
            ssize_t n = iop_outq_write(&c->out, c->fd, 0);
            if (n == -EAGAIN)
                break;
            if (n < 0 && n != -EINTR) {
                close_now(x, c, (int)n);
                return -1;
            }
            touch(x, c);
        }
        if (c->out.bytes > 0 || !svc->on_drain || (c->flags & IOP__CONN_CLOSING) ||
            x->stopping)
            break;
        size_t before = c->out.bytes;
        svc->on_drain(c);
        if (c->out.bytes == before)
            break;
        /* Fairness: the last round's output stays queued, so write
         * interest brings the loop back here once it has served others.
         * (Broken off with an empty queue, nothing would.) */
        if (round + 1 >= PRODUCE_ROUNDS)
            break;
    }
    /* The peer's FIN ends input, not output (TCP's half-close; sshd too
     * sends a command's output after the client's EOF): close once the
     * producer, if any, has nothing more, as the blocking path does. */
    if (c->out.bytes == 0 && (c->flags & (IOP__CONN_CLOSING | IOP__CONN_PEER_EOF))) {
        finish(x, c);
        return -1;
    }
    if (c->out.bytes >= x->high_water)
        c->flags |= IOP__CONN_PAUSED;
    else if (c->out.bytes <= x->low_water)
        c->flags &= ~IOP__CONN_PAUSED;
    if (update_interest(x, c) != 0) {
        close_now(x, c, -ENOMEM);
        return -1;
    }
    return 0;
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
        close_now(x, c, 0);
        return;
    }
}

/* Read up to the budget and dispatch. Returns 0, or -1 if c was closed. */
static int read_input(struct iop__evctx *x, iop_conn *c)
{
    iop_server *s = x->s;
    for (int i = 0; i < READS_PER_WAKE; i++) {
        if (c->flags & (IOP__CONN_CLOSING | IOP__CONN_PAUSED | IOP__CONN_PEER_EOF))
            break;
        ssize_t n = recv(c->fd, x->scratch, SCRATCH_SIZE, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            close_now(x, c, -errno);
            return -1;
        }
        if (n == 0) {
            c->flags |= IOP__CONN_PEER_EOF;
            iop__conn_eof(c); /* a last line without "\n" is a message too */
            break;
        }
        size_t before = iop_buf_used(&c->in);
        int r = iop__conn_dispatch_bytes(c, x->scratch, (size_t)n);
        if (r == 0 && iop_buf_used(&c->in) < before + (size_t)n)
            touch(x, c); /* a message was completed: a partial frame is no progress */
        if (r == -EMSGSIZE) {
            iop_report(s, IOP_LOG_INFO, "closing %s: message longer than %zu bytes",
                       iop_conn_peer_name(c), s->max_frame);
            iop_close(c);
        } else if (r != 0) {
            close_now(x, c, r);
            return -1;
        }
        if (iop_buf_used(&c->in) == 0)
            iop_buf_free(&c->in); /* idle connections hold no buffer */
        if ((size_t)n < SCRATCH_SIZE)
            break; /* a short read: the socket is very likely empty */
        if (c->out.bytes >= x->high_water)
            c->flags |= IOP__CONN_PAUSED;
    }
    return 0;
}

static void close_overflowed(struct iop__evctx *x, iop_conn *c)
{
    iop__mailbox_report_overflow(c);
    close_now(x, c, -ENOBUFS);
}

static void on_io(iop_loop *loop, int fd, unsigned events, void *arg)
{
    (void)loop, (void)fd;
    iop_conn *c = arg;
    struct iop__evctx *x = c->owner;
    if (c->flags & IOP__CONN_LINGER) {
        drain_lingering(x, c);
        return;
    }
    if (c->flags & IOP__CONN_OVERFLOW) {
        close_overflowed(x, c);
        return;
    }
    if ((events & IOP_EV_READ) && read_input(x, c) != 0)
        return;
    flush(x, c);
}

/* ---- posts ------------------------------------------------------------------------ */

/* The kicked connections, at the end of the iteration that kicked them. */
static void run_kicked(iop_loop *loop, void *arg)
{
    (void)loop;
    struct iop__evctx *x = arg;
    while (x->nkicked > 0) { /* flushing may close, and closing may kick more */
        iop_conn *c = x->kicked[--x->nkicked];
        if (!c)
            continue;
        c->flags &= ~IOP__CONN_KICKED;
        if (c->flags & IOP__CONN_LINGER)
            continue;
        if (c->flags & IOP__CONN_OVERFLOW)
            close_overflowed(x, c);
        else
            flush(x, c);
    }
}

/* The mailbox's hook (iop__kick_fn): schedule, never write or close here. */
static void kick(iop_conn *c, void *arg)
{
    struct iop__evctx *x = arg;
    if (c->flags & IOP__CONN_KICKED)
        return;
    if (x->nkicked == x->kickcap) {
        size_t cap = x->kickcap ? x->kickcap * 2 : 16;
        iop_conn **k = realloc(x->kicked, cap * sizeof *k);
        if (!k) { /* let the loop write it when writable instead */
            iop__loop_io(x->loop, c->fd, iop__loop_mask(x->loop, c->fd) | IOP_EV_WRITE,
                         on_io, c);
            return;
        }
        x->kicked = k;
        x->kickcap = cap;
    }
    x->kicked[x->nkicked++] = c;
    c->flags |= IOP__CONN_KICKED;
    if (!iop__timer_active(&x->kick))
        iop__timer_start(x->loop, &x->kick, 0, run_kicked, x);
}

static void on_mail(iop_loop *loop, int fd, unsigned events, void *arg)
{
    (void)loop, (void)fd, (void)events;
    struct iop__evctx *x = arg;
    iop__mailbox_drain(x->mbox);
}

static int open_mailbox(struct iop__evctx *x)
{
    x->mbox = malloc(sizeof *x->mbox);
    if (!x->mbox)
        return -ENOMEM;
    int r = iop__mailbox_init(x->mbox, x->s, kick, x);
    if (r != 0) {
        free(x->mbox);
        x->mbox = NULL;
        return r;
    }
    return iop__loop_io(x->loop, iop__mailbox_fd(x->mbox), IOP_EV_READ, on_mail, x);
}

static void close_mailbox(struct iop__evctx *x)
{
    iop__timer_stop(x->loop, &x->kick);
    free(x->kicked);
    x->kicked = NULL;
    x->nkicked = x->kickcap = 0;
    if (!x->mbox)
        return;
    iop__loop_io(x->loop, iop__mailbox_fd(x->mbox), 0, NULL, NULL);
    iop__mailbox_destroy(x->mbox);
    free(x->mbox);
    x->mbox = NULL;
}

/* ---- life cycle ---------------------------------------------------------------- */

int iop__evctx_init(struct iop__evctx *x, iop_server *s, iop_loop *loop)
{
    memset(x, 0, sizeof *x);
    x->s = s;
    x->loop = loop;
    x->high_water = s->cfg.high_water ? s->cfg.high_water : HIGH_WATER_DEFAULT;
    x->low_water = s->cfg.low_water ? s->cfg.low_water : x->high_water / 4;
    x->scratch = malloc(SCRATCH_SIZE);
    if (!x->scratch)
        return -ENOMEM;
    if (s->svc->flags & IOP_SERVICE_SHARED_STATE)
        return open_mailbox(x);
    return 0;
}

void iop__evctx_adopt(struct iop__evctx *x)
{
    if (x->mbox)
        iop__mailbox_adopt(x->mbox);
}

void iop__evctx_free(struct iop__evctx *x)
{
    while (x->active.head)
        close_now(x, x->active.head, -ECANCELED);
    while (x->lingering.head)
        close_now(x, x->lingering.head, 0);
    close_mailbox(x);
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
    iop__conn_init(c, x->s, fd, peer, peerlen);
    c->owner = x;
    c->mbox = x->mbox;
    int r = iop__loop_io(x->loop, fd, IOP_EV_READ, on_io, c);
    if (r != 0) {
        close(fd);
        free(c);
        return r;
    }
    x->nconns++;
    c->last_active = iop__loop_now(x->loop);
    iop__connlist_append(&x->active, c);
    arm_sweep(x);
    char name[IOP_PATH_MAX + 16];
    iop_report(x->s, IOP_LOG_DEBUG, "open %s (connection %llu)",
               iop__conn_peer_str(c, name, sizeof name), (unsigned long long)c->id);
    if (x->s->svc->on_open)
        x->s->svc->on_open(c);
    flush(x, c);
    return 0;
}

static void drain_expired(iop_loop *loop, void *arg)
{
    (void)loop;
    struct iop__evctx *x = arg;
    if (x->nconns > 0)
        iop_report(x->s, IOP_LOG_INFO, "%zu connections still busy after %d ms; "
                   "closing them", x->nconns, x->s->cfg.drain_ms);
    iop__evctx_free(x); /* closes every connection, which stops the loop */
}

void iop__evctx_stop(struct iop__evctx *x)
{
    if (x->stopping)
        return;
    x->stopping = 1;
    if (x->nconns == 0) {
        iop__loop_stop(x->loop);
        return;
    }
    iop__timer_start(x->loop, &x->drain, (uint64_t)x->s->cfg.drain_ms,
                     drain_expired, x);
    /* Answer what has arrived, then close each after its output. */
    for (iop_conn *c = x->active.head, *next; c; c = next) {
        next = c->next;
        if (read_input(x, c) != 0)
            continue;
        iop__conn_eof(c); /* as the blocking path: stop ends the input */
        iop_close(c);
        flush(x, c);
    }
    /* Lingering connections finish on their own, well within drain_ms;
     * drain_expired() closes whatever is left. */
}
