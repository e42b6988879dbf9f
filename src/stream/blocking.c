/*
 * The blocking I/O path, shared by the iterative, fork, thread, prefork
 * and pool models: one thread of control per connection, which sleeps in
 * recv() and send(). recv() may return any part of what the peer sent,
 * and send() may write only part of what it was given (the course's notes
 * on partial I/O), so input is framed from a buffer and output is written
 * until none is left.
 *
 * A service with shared state may be posted to from other threads
 * (iop_post): its connection gets a mailbox of its own, and the thread
 * waits with poll() on the socket and the mailbox's eventfd instead of
 * sleeping in recv() or send(), so posts are written as they come and a
 * peer that does not read is closed at the high watermark (mailbox.h).
 * Every other service keeps the plain blocking calls.
 *
 * The idle timeout (--idle-timeout, the policy's idle_ms = T). A
 * connection is idle when for T it has made no progress: no complete
 * message received (delivered to on_message) and no byte of output
 * written. Bytes that do not complete a message do not count, so a peer
 * trickling one byte a second into a frame it never finishes (slowloris)
 * is closed T after its last complete message, and so is a peer that
 * stops reading while output is waiting for it. (A peer that keeps
 * sending whole messages, or keeps reading what it is sent, however
 * slowly, is not idle.) The event paths apply the same rule (evconn.c,
 * uring_conn.c, aio.c). Here it costs no system call per message:
 * SO_RCVTIMEO bounds every blocking recv() by T, and only while a partial
 * frame waits is it shortened to what is left of T (one setsockopt() per
 * read, the trickler's cost, not a well-behaved client's); output is sent
 * with MSG_DONTWAIT, and only when the socket takes nothing more does
 * poll() wait, for what is left of T (a blocking send() with SO_SNDTIMEO
 * would report a partial write only when its timeout ends, which could
 * let a stalled peer live for nearly 2T). With a mailbox, poll() waits at
 * most what is left of T. An idle connection is closed at once (no
 * lingering close): on_close gets -ETIMEDOUT.
 */
#define _GNU_SOURCE
#include "internal.h"
#include "stream/layers.h"
#include "stream/mailbox.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define READ_CHUNK 16384
/* The receive timeout is set again only when it is further than this
 * from what it should be. */
#define IDLE_SLACK_MS 50

/* The connection and what only this path keeps for it: the service sees
 * &b->c, and these fields stay out of struct iop_conn. */
struct bconn {
    iop_conn c;
    uint64_t progress; /* last complete message in, or bytes out (ms) */
    int rcv_ms;        /* SO_RCVTIMEO as set now, ms (0: none) */
};

static struct bconn *of(iop_conn *c) { return (struct bconn *)c; }
static int closing(const iop_conn *c) { return c->flags & IOP__CONN_CLOSING; }
static int idle_ms(const iop_conn *c) { return c->server->pol.idle_ms; }
static void progress(iop_conn *c) { of(c)->progress = iop__now_ms(); }

/* Milliseconds left before c is idle: -1 without an idle timeout, 0 once
 * it is idle. */
static int idle_left(iop_conn *c)
{
    int idle = idle_ms(c);
    if (idle <= 0)
        return -1;
    uint64_t end = of(c)->progress + (uint64_t)idle, now = iop__now_ms();
    return now >= end ? 0 : (int)(end - now);
}

static int set_timeout(int fd, int opt, int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    return setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof tv) == 0 ? 0 : -errno;
}

/* Before a blocking recv(): its timeout, so that it returns (EAGAIN) by
 * the idle deadline. Returns 0, -ETIMEDOUT if c is idle already, or the
 * setsockopt() error. */
static int arm_recv_timeout(iop_conn *c)
{
    int idle = idle_ms(c);
    if (idle <= 0)
        return 0;
    int left = idle_left(c);
    if (left == 0)
        return -ETIMEDOUT;
    /* No partial frame: progress was just made (the last read completed
     * its messages, or the connection is new), so T is what is left. A
     * connection still in its layers' start (a PROXY header, a TLS
     * handshake) holds its partial bytes there: what is left, too. */
    int partial = iop__buf_used(&c->in) > 0 || !(c->flags & IOP__CONN_OPENED);
    int want = partial ? left : idle;
    struct bconn *b = of(c);
    if (b->rcv_ms >= want - IDLE_SLACK_MS && b->rcv_ms <= want + IDLE_SLACK_MS)
        return 0; /* close enough: no system call */
    int r = set_timeout(c->fd, SO_RCVTIMEO, want);
    if (r == 0)
        b->rcv_ms = want;
    return r;
}

/* With a mailbox: wait until the socket is ready for `events`, delivering
 * posts meanwhile. Returns 1 if the socket is ready, 0 if only posts came
 * (or a signal, or the stop), -ENOBUFS if a post overflowed the output
 * queue, -ETIMEDOUT once the connection is idle. Waiting to write, the
 * stop pipe is watched too, so the drain_ms bound of a stop applies at
 * once (the stop shuts only the reading side, which does not end a wait
 * for POLLOUT); waiting to read, the stop's SHUT_RD ends it, and the
 * pipe, readable for good, would spin. */
static int wait_socket_or_mail(iop_conn *c, short events)
{
    if (c->flags & IOP__CONN_OVERFLOW) /* by a post from this very thread */
        return -ENOBUFS;
    int left = idle_left(c);
    if (left == 0)
        return -ETIMEDOUT;
    struct pollfd p[3] = {
        {.fd = c->fd, .events = events},
        {.fd = iop__mailbox_fd(c->mbox), .events = POLLIN},
        {.fd = c->server->stop_pipe[0], .events = POLLIN},
    };
    int n = poll(p, events == POLLOUT ? 3 : 2, left);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    if (n == 0)
        return idle_left(c) == 0 ? -ETIMEDOUT : 0;
    if (p[1].revents & POLLIN)
        iop__mailbox_drain(c->mbox);
    if (c->flags & IOP__CONN_OVERFLOW)
        return -ENOBUFS;
    return p[0].revents ? 1 : 0;
}

/* Once the server is stopping, output gets drain_ms to go out: a peer that
 * does not read must not hold the stop forever. A send() already blocked
 * when the stop came is interrupted by the stop signal (EINTR, or a short
 * count) and comes back here, where the wait is bounded. */
static int wait_writable_for_drain(iop_conn *c)
{
    if (c->deadline == 0)
        c->deadline = iop__now_ms() + (uint64_t)c->server->pol.drain_ms;
    uint64_t now = iop__now_ms();
    if (now >= c->deadline)
        return -ETIMEDOUT;
    struct pollfd p = {.fd = c->fd, .events = POLLOUT};
    int n = poll(&p, 1, (int)(c->deadline - now));
    if (n < 0 && errno != EINTR)
        return -errno;
    return n == 0 ? -ETIMEDOUT : 0;
}

/* With an idle timeout (and no mailbox): wait until the socket takes
 * output, for at most what is left of T. The stop pipe is watched too, so
 * a stop's drain_ms bound applies at once. Returns 0 (writable, or
 * stopping), -ETIMEDOUT once idle, or another negative errno. */
static int wait_writable_for_idle(iop_conn *c)
{
    int left = idle_left(c);
    if (left == 0)
        return -ETIMEDOUT;
    struct pollfd p[2] = {
        {.fd = c->fd, .events = POLLOUT},
        {.fd = c->server->stop_pipe[0], .events = POLLIN},
    };
    int n = poll(p, 2, left);
    if (n < 0 && errno != EINTR)
        return -errno;
    return n == 0 && idle_left(c) == 0 ? -ETIMEDOUT : 0;
}

static int flush_all(iop_conn *c)
{
    while (c->out.bytes > 0) {
        /* A plain blocking send() unless it must be bounded (an idle
         * timeout) or must not block (posts to deliver meanwhile). The
         * non-blocking send costs nothing more while the socket takes the
         * output, and tells the moment it stops taking it. */
        int flags = c->mbox || idle_ms(c) > 0 ? MSG_DONTWAIT : 0;
        int stopping = iop__stopping(c->server);
        if (stopping) {
            int r = wait_writable_for_drain(c);
            if (r != 0)
                return r;
            flags = MSG_DONTWAIT;
        }
        ssize_t n = iop__outq_write(&c->out, c->fd, flags);
        if (n > 0) {
            progress(c);
            continue;
        }
        if (n == -EAGAIN && !stopping) {
            int r = c->mbox ? wait_socket_or_mail(c, POLLOUT) : wait_writable_for_idle(c);
            if (r < 0)
                return r;
            continue;
        }
        if (n < 0 && n != -EINTR && n != -EAGAIN)
            return (int)n;
    }
    return 0;
}

/* Let a producing service (chargen, bytes) write for as long as it has
 * something to say and the peer takes it. */
static int produce(iop_conn *c)
{
    const struct iop_service *svc = c->server->svc;
    while (svc->on_drain && (c->flags & IOP__CONN_OPENED) && !closing(c) &&
           !iop__stopping(c->server)) {
        svc->on_drain(c);
        if (c->out.bytes == 0)
            return 0;
        int r = flush_all(c);
        if (r != 0)
            return r;
    }
    return 0;
}

/* Read once into p; returns bytes read, 0 at end of stream, or a
 * negative errno (-EAGAIN: the receive timeout passed). */
static ssize_t read_some(iop_conn *c, char *p)
{
    int r = arm_recv_timeout(c);
    if (r != 0)
        return r;
    for (;;) {
        ssize_t n = recv(c->fd, p, READ_CHUNK, 0);
        if (n >= 0 || errno != EINTR)
            return n >= 0 ? n : -errno;
    }
}

/* Read and deliver what came: a plain connection's bytes straight into
 * c->in, framed there; a layered one's through its layers (layers.h).
 * Returns bytes read, 0 at end of stream, or a negative errno. */
static ssize_t read_and_dispatch(iop_conn *c, int *err)
{
    ssize_t n;
    *err = 0;
    if (iop__conn_layered(c)) {
        char buf[READ_CHUNK];
        n = read_some(c, buf);
        if (n > 0)
            *err = iop__conn_input(c, buf, (size_t)n);
        return n;
    }
    char *p = iop__buf_reserve(&c->in, READ_CHUNK);
    if (!p)
        return -ENOMEM;
    n = read_some(c, p);
    if (n > 0) {
        iop__buf_commit(&c->in, (size_t)n);
        *err = iop__conn_dispatch(c);
    }
    return n;
}

/* The connection is done: a layer's last word (TLS's close_notify) goes
 * out before the FIN. */
static void last_words(iop_conn *c)
{
    if (iop__conn_last_words(c))
        flush_all(c);
}

/* We close while the peer may still be sending: closing a socket with
 * unread input makes the kernel send RST, which can destroy the answer we
 * just wrote before the peer reads it. So shut our side, then read and
 * discard until the peer closes too, for at most the linger time (nginx's
 * lingering close). */
static void linger(iop_conn *c)
{
    if (shutdown(c->fd, SHUT_WR) != 0)
        return;
    uint64_t end = iop__now_ms() + (uint64_t)c->server->pol.linger_ms;
    char sink[4096];
    for (;;) {
        ssize_t n = recv(c->fd, sink, sizeof sink, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return;
        if (n > 0)
            continue;
        uint64_t now = iop__now_ms();
        if (now >= end)
            return;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, (int)(end - now)) == 0)
            return;
    }
}

void iop__serve_inline(iop_server *s, int fd,
                       const struct sockaddr_storage *peer, socklen_t peerlen)
{
    atomic_store(&s->inline_fd, fd);
    if (iop__stopping(s)) /* a stop that came first finds no inline_fd */
        shutdown(fd, SHUT_RD);
    iop__serve_blocking(s, fd, peer, peerlen);
    atomic_store(&s->inline_fd, -1);
    close(fd);
}

void iop__serve_blocking(iop_server *s, int fd,
                         const struct sockaddr_storage *peer, socklen_t peerlen)
{
    const struct iop_service *svc = s->svc;
    struct bconn b = {.rcv_ms = 0};
    iop_conn *c = &b.c;
    iop__conn_init(c, s, fd, peer, peerlen);
    b.progress = iop__now_ms();
    if (idle_ms(c) > 0) {
        /* Every blocking recv() returns within T. */
        int r = set_timeout(fd, SO_RCVTIMEO, idle_ms(c));
        if (r == 0)
            b.rcv_ms = idle_ms(c);
        if (r != 0) {
            iop_report(s, IOP_LOG_ERROR, "cannot serve %s: socket timeouts: %s",
                       iop_conn_peer_name(c), iop_strerror(r));
            iop__conn_release(c);
            return;
        }
    }
    struct iop__mailbox mbox;
    if (svc->flags & IOP_SERVICE_SHARED_STATE) {
        int r = iop__mailbox_init(&mbox, s, NULL, NULL);
        if (r != 0) {
            iop_report(s, IOP_LOG_ERROR, "cannot serve %s: %s",
                       iop_conn_peer_name(c), iop_strerror(r));
            iop__conn_release(c);
            return;
        }
        c->mbox = &mbox;
    }
    int err = iop__conn_start(c);
    if (err != 0) {
        iop_report(s, IOP_LOG_ERROR, "cannot serve %s: %s", iop_conn_peer_name(c),
                   iop_strerror(err));
        if (c->mbox)
            iop__mailbox_destroy(c->mbox);
        iop__conn_release(c);
        return;
    }
    for (;;) {
        err = flush_all(c);
        if (err == 0)
            err = produce(c);
        if (err != 0 || closing(c))
            break;
        if (c->mbox) {
            int r = wait_socket_or_mail(c, POLLIN);
            if (r < 0) {
                err = r;
                break;
            }
            if (r == 0)
                continue; /* posts: write them, then wait again */
        }
        uint32_t before = c->progress;
        ssize_t n = read_and_dispatch(c, &err);
        if (n == -EAGAIN && idle_ms(c) > 0)
            continue; /* SO_RCVTIMEO: read_some() judges the idle time */
        if (n < 0) {
            err = (int)n;
            break;
        }
        if (n == 0 || (c->flags & IOP__CONN_PEER_EOF)) {
            /* End of stream (the peer's half-close, a layer's end, or our
             * own SHUT_RD at stop): answer what was received, then close. */
            if (n == 0)
                iop__conn_input_end(c);
            err = flush_all(c);
            if (err == 0) /* a producer that last line started goes on */
                err = produce(c);
            break;
        }
        if (c->progress != before)
            progress(c); /* a message was completed (and delivered) */
        if (err == -EMSGSIZE) {
            iop__conn_too_long(c);
            flush_all(c);
            break;
        }
        if (err != 0)
            break;
    }
    if (err == -EMSGSIZE)
        err = 0; /* said already; an orderly close after the output */
    if (err == 0)
        last_words(c);
    /* The service hears of the close before the lingering close, as on
     * the event paths: a chat member must not stay in the room, and be
     * posted to, for the linger time its peer may take to close. */
    iop__conn_notify_close(c, err);
    if (c->mbox) {
        iop__mailbox_destroy(c->mbox); /* what is still posted goes with it */
        c->mbox = NULL;
    }
    if (err == 0 && !(c->flags & IOP__CONN_PEER_EOF))
        linger(c);
    iop__conn_close_line(c);
    iop__conn_release(c);
}
