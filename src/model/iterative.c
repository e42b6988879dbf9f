/*
 * iterative: the course's first server. One client at a time: accept,
 * serve that client to the end, accept the next. While a client is being
 * served, the next one waits in the listen backlog; that is this design's
 * drawback, and the reason the other models exist.
 *
 * Datagram transports are served here too: the course's "iterative,
 * connectionless server" (recvfrom, answer with sendto, repeat).
 */
#define _GNU_SOURCE
#include "internal.h"
#include "net/acceptor.h"
#include "net/dgram.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

static int serve_datagrams(iop_server *s);

static int run_iterative(iop_server *s)
{
    if (!iop_transport_is_stream(s->cfg.addr.transport))
        return serve_datagrams(s); /* the iterative connectionless server */
    for (;;) {
        struct sockaddr_storage peer;
        socklen_t peerlen;
        int fd = iop__accept(s, &peer, &peerlen);
        if (fd == -ECANCELED)
            return 0;
        if (fd < 0) {
            iop__accept_failed(s, fd);
            continue;
        }
        iop__acceptor_take(&s->acceptor, fd, 0); /* one at a time: never over a limit */
        iop__serve_inline(s, fd, &peer, peerlen); /* this thread takes the stop signal */
        if (s->cfg.once)
            return 0;
    }
}

const struct iop__model iop__model_iterative = {
    .info = {
        .name = "iterative",
        .summary = "one client at a time, the course's first server",
        .datagram = 1,
        .shared_state = 1,
    },
    .one_at_a_time = 1,
    .run = run_iterative,
};

/* ---- the connectionless server ------------------------------------------ */

#define DATAGRAM_MAX 65536

static int serve_datagrams(iop_server *s)
{
    char *buf = malloc(DATAGRAM_MAX);
    struct iop__dgram *gate = iop__dgram_new(s, s->listen_fd);
    if (!buf || !gate) {
        free(buf);
        iop__dgram_free(gate);
        return -ENOMEM;
    }
    /* inetd's wait: served until idle, then inetd watches the socket
     * again (as in.tftpd's --timeout). */
    int idle = s->cfg.inetd && s->cfg.idle_timeout_ms > 0 ? s->cfg.idle_timeout_ms : -1;
    int r = 0;
    while (r == 0) {
        r = iop__wait_fd(s, s->listen_fd, POLLIN, idle);
        if (r == 0) { /* idle for idle_timeout_ms */
            iop_report(s, IOP_LOG_DEBUG, "no datagram for %d s: exiting (inetd wait)",
                       idle / 1000);
            r = 1;
            break;
        }
        if (r < 0)
            break;
        struct iop_peer p = {.server = s, .fd = s->listen_fd};
        struct iovec iov = {.iov_base = buf, .iov_len = DATAGRAM_MAX};
        struct msghdr msg = {
            .msg_name = &p.addr, .msg_namelen = sizeof p.addr,
            .msg_iov = &iov, .msg_iovlen = 1,
        };
        ssize_t n = recvmsg(s->listen_fd, &msg, 0);
        if (n < 0) {
            r = (errno == EINTR || errno == EAGAIN) ? 0 : -errno;
            continue;
        }
        p.addrlen = msg.msg_namelen;
        /* Checked, counted or served: net/dgram.c. */
        int served = iop__dgram_input(gate, &p, buf, (size_t)n, !!(msg.msg_flags & MSG_TRUNC));
        r = s->cfg.once && served ? 1 : 0;
    }
    iop__dgram_free(gate);
    free(buf);
    return r == -ECANCELED || r == 1 ? 0 : r;
}
