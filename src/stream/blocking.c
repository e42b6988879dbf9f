/*
 * The blocking I/O path, shared by the iterative, fork and thread models:
 * one thread of control per connection, which sleeps in recv() and send().
 * recv() may return any part of what the peer sent, and send() may write
 * only part of what it was given (the course's notes on partial I/O), so
 * input is framed from a buffer and output is written until none is left.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK 16384

/* Once the server is stopping, output gets drain_ms to go out: a peer that
 * does not read must not hold the stop forever. A send() already blocked
 * when the stop came is interrupted by the stop signal (EINTR, or a short
 * count) and comes back here, where the wait is bounded. */
static int wait_writable_for_drain(iop_conn *c)
{
    if (c->drain_deadline == 0)
        c->drain_deadline = iop__now_ms() + (uint64_t)c->server->cfg.drain_ms;
    uint64_t now = iop__now_ms();
    if (now >= c->drain_deadline)
        return -ETIMEDOUT;
    struct pollfd p = {.fd = c->fd, .events = POLLOUT};
    int n = poll(&p, 1, (int)(c->drain_deadline - now));
    if (n < 0 && errno != EINTR)
        return -errno;
    return n == 0 ? -ETIMEDOUT : 0;
}

static int flush_all(iop_conn *c)
{
    while (iop_buf_used(&c->out) > 0) {
        int flags = MSG_NOSIGNAL;
        if (iop__stopping(c->server)) {
            int r = wait_writable_for_drain(c);
            if (r != 0)
                return r;
            flags |= MSG_DONTWAIT;
        }
        /* MSG_NOSIGNAL: a peer that has gone makes send() fail with EPIPE
         * instead of killing the process with SIGPIPE. */
        ssize_t n = send(c->fd, iop_buf_head(&c->out), iop_buf_used(&c->out),
                         flags);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return -errno;
        }
        iop_buf_consume(&c->out, (size_t)n);
    }
    return 0;
}

/* Let a producing service (chargen, bytes) write for as long as it has
 * something to say and the peer takes it. */
static int produce(iop_conn *c)
{
    while (c->svc->on_drain && !c->closing && !iop__stopping(c->server)) {
        c->svc->on_drain(c);
        if (iop_buf_used(&c->out) == 0)
            return 0;
        int r = flush_all(c);
        if (r != 0)
            return r;
    }
    return 0;
}

/* Read once; returns bytes read, 0 at end of stream, or a negative errno. */
static ssize_t read_some(iop_conn *c)
{
    char *p = iop_buf_reserve(&c->in, READ_CHUNK);
    if (!p)
        return -ENOMEM;
    for (;;) {
        ssize_t n = recv(c->fd, p, READ_CHUNK, 0);
        if (n >= 0) {
            iop_buf_commit(&c->in, (size_t)n);
            return n;
        }
        if (errno != EINTR)
            return -errno;
    }
}

void iop__serve_blocking(iop_server *s, int fd,
                         const struct sockaddr_storage *peer, socklen_t peerlen)
{
    iop_conn c;
    iop__conn_init(&c, s, fd, peer, peerlen);
    iop_report(s, IOP_LOG_DEBUG, "open %s (connection %llu)", c.peer_name,
               (unsigned long long)c.id);
    if (c.svc->on_open)
        c.svc->on_open(&c);
    int err = 0;
    for (;;) {
        err = flush_all(&c);
        if (err == 0)
            err = produce(&c);
        if (err != 0 || c.closing)
            break;
        ssize_t n = read_some(&c);
        if (n < 0) {
            err = (int)n;
            break;
        }
        if (n == 0) {
            /* End of stream (the peer's half-close, or our own SHUT_RD at
             * stop): answer what was received, then close. */
            iop__conn_eof(&c);
            err = flush_all(&c);
            break;
        }
        err = iop__conn_dispatch(&c);
        if (err == -EMSGSIZE) {
            iop_report(s, IOP_LOG_INFO, "closing %s: message longer than %zu bytes",
                       c.peer_name, c.max_frame);
            flush_all(&c);
            break;
        }
    }
    if (err != 0 && err != -EMSGSIZE)
        iop_report(s, IOP_LOG_DEBUG, "connection %s: %s", c.peer_name,
                   iop_strerror(err));
    if (c.svc->on_close)
        c.svc->on_close(&c, err);
    iop_report(s, IOP_LOG_DEBUG, "close %s", c.peer_name);
    iop__conn_release(&c);
}
