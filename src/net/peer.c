/* The sender of one datagram, as the service's on_datagram sees it. */
#include "internal.h"
#include "net/dgram.h"

#include <errno.h>
#include <stddef.h>
#include <sys/un.h>

int iop_peer_send(iop_peer *p, const void *data, size_t len)
{
    /* A Unix datagram client that never bound a name cannot be answered. */
    if (!iop__peer_answerable(p))
        return -EDESTADDRREQ;
    if (p->gate && !iop__dgram_may_send(p->gate, p, len))
        return -EAGAIN;
    /* Never waits (net/dgram.c): a peer with no room for it loses it. */
    ssize_t n = sendto(p->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT,
                       (struct sockaddr *)&p->addr, p->addrlen);
    if (n < 0) {
        int e = errno;
        if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) {
            if (p->gate)
                iop__dgram_drop(p->gate, IOP__DROP_FULL, p);
            return -EAGAIN;
        }
        iop_report(p->server, IOP_LOG_DEBUG, "sendto: %s", iop_strerror(-e));
        return -e;
    }
    p->sent += len;
    return 0;
}

const struct sockaddr *iop_peer_addr(const iop_peer *p, socklen_t *len)
{
    if (len)
        *len = p->addrlen;
    return (const struct sockaddr *)&p->addr;
}

iop_server *iop_peer_server(const iop_peer *p) { return p->server; }
