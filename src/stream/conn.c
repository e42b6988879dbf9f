/*
 * The connection as a service sees it: input cut into messages by the
 * framing layer, and an output queue that iop_send() appends to. How bytes
 * move in and out is the model's business: blocking.c for the blocking
 * models, evconn.c for the event loops.
 */
#include "internal.h"
#include "stream/layers.h"
#include "stream/mailbox.h"
#include "tls/tls.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void iop__conn_init(iop_conn *c, iop_server *s, int fd,
                    const struct sockaddr_storage *peer, socklen_t peerlen)
{
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->server = s;
    c->id = atomic_fetch_add(&s->next_conn_id, 1) + 1;
    if (peer && peerlen >= sizeof(sa_family_t)) {
        if (peer->ss_family == AF_UNIX)
            peerlen = sizeof(sa_family_t);
        if (peerlen <= sizeof c->peer) {
            memcpy(&c->peer, peer, peerlen);
            c->peerlen = peerlen;
        }
    }
}

void iop__conn_opened(iop_conn *c, const struct sockaddr *via, socklen_t vialen)
{
    char name[IOP_PATH_MAX + 16], by[IOP_PATH_MAX + 16] = ""; /* a debug line: no allocation */
    if (iop__reporting(c->server, IOP_LOG_DEBUG)) {
        if (via) { /* the client, then the balancer it came through */
            memcpy(by, " via ", 5);
            iop_sockaddr_format(via, vialen, by + 5, sizeof by - 5);
        }
        const char *subject = c->tls ? iop_conn_tls_peer(c) : NULL;
        iop_report(c->server, IOP_LOG_DEBUG, "open %s%s (connection %llu%s%s%s)",
                   iop__conn_peer_str(c, name, sizeof name), by, (unsigned long long)c->id,
                   c->tls ? ", TLS" : "", subject ? " " : "", subject ? subject : "");
    }
    if (c->server->svc->on_open)
        c->server->svc->on_open(c);
}

/* Why c closes, where that is news (before on_close, while its backlog is
 * still there to count). */
static void report_why(iop_conn *c, int err)
{
    iop_server *s = c->server;
    if (err == -ETIMEDOUT && iop__conn_proxy_pending(c))
        /* (news, unlike an idle client: a client that does not speak the
         * PROXY protocol, waiting for the server to speak first) */
        iop_report(s, IOP_LOG_INFO, "closing %s: PROXY header: not complete within %d ms",
                   iop_conn_peer_name(c), s->pol.idle_ms);
    else if (err == -ETIMEDOUT)
        iop_report(s, IOP_LOG_DEBUG, "closing %s: idle for %d ms", iop_conn_peer_name(c),
                   s->pol.idle_ms);
    else if (err == -ENOBUFS && (c->flags & IOP__CONN_OVERFLOW))
        iop__mailbox_report_overflow(c);
    else if (err && err != -ECONNRESET && err != -EPIPE && err != -ECANCELED &&
             err != -EPROTO)
        /* (a reset, a peer gone, a stop: routine, not news; a layer's
         * protocol error: said by the layer) */
        iop_report(s, IOP_LOG_DEBUG, "connection %s: %s", iop_conn_peer_name(c),
                   iop_strerror(err));
}

void iop__conn_notify_close(iop_conn *c, int err)
{
    if (c->flags & IOP__CONN_NOTIFIED)
        return;
    c->flags |= IOP__CONN_NOTIFIED;
    report_why(c, err);
    /* A connection the service never heard of (its PROXY header or TLS
     * handshake failed) is not news to it. */
    if ((c->flags & IOP__CONN_OPENED) && c->server->svc->on_close)
        c->server->svc->on_close(c, err);
}

void iop__conn_close_line(iop_conn *c)
{
    char name[IOP_PATH_MAX + 16]; /* a debug line: no allocation */
    if (iop__reporting(c->server, IOP_LOG_DEBUG))
        iop_report(c->server, IOP_LOG_DEBUG, "close %s",
                   iop__conn_peer_str(c, name, sizeof name));
}

void iop__conn_too_long(iop_conn *c)
{
    iop_report(c->server, IOP_LOG_INFO, "closing %s: message longer than %zu bytes",
               iop_conn_peer_name(c), c->server->max_frame);
    iop_close(c);
}

/* Deliver every whole frame in p[0, n); returns bytes consumed or -EMSGSIZE. */
static ssize_t deliver(iop_conn *c, const char *p, size_t n)
{
    const iop_server *s = c->server;
    size_t used = 0;
    while (!(c->flags & IOP__CONN_CLOSING) && used < n) {
        struct iop_frame f;
        int r = iop_frame_next(s->framing, s->max_frame, p + used, n - used, &f);
        if (r < 0)
            return r;
        if (r == 0)
            break;
        if (s->svc->on_message)
            s->svc->on_message(c, p + used + f.payload_off, f.payload_len);
        used += f.frame_len;
        c->progress++;
    }
    return (ssize_t)used;
}

int iop__conn_dispatch(iop_conn *c)
{
    ssize_t used = deliver(c, iop__buf_head(&c->in), iop__buf_used(&c->in));
    if (used < 0)
        return (int)used;
    iop__buf_consume(&c->in, (size_t)used);
    return 0;
}

int iop__conn_dispatch_bytes(iop_conn *c, const char *p, size_t n)
{
    if (iop__buf_used(&c->in) > 0) { /* a partial frame is waiting: join it */
        if (iop__buf_append(&c->in, p, n) != 0)
            return -ENOMEM;
        return iop__conn_dispatch(c);
    }
    ssize_t used = deliver(c, p, n);
    if (used < 0)
        return (int)used;
    if (c->flags & IOP__CONN_CLOSING)
        return 0; /* the rest will never be read */
    return iop__buf_append(&c->in, p + used, n - (size_t)used);
}

void iop__conn_eof(iop_conn *c)
{
    size_t n = iop__buf_used(&c->in);
    if ((c->flags & IOP__CONN_CLOSING) || n == 0 || c->server->framing != IOP_FRAMING_LINE)
        return;
    if (n <= c->server->max_frame && c->server->svc->on_message)
        c->server->svc->on_message(c, iop__buf_head(&c->in), n);
    iop__buf_consume(&c->in, n);
}

void iop__conn_release(iop_conn *c)
{
    iop__conn_layers_free(c);
    iop__buf_free(&c->in);
    iop__outq_free(&c->out);
    free(c->peer_name);
    c->peer_name = NULL;
}

int iop_send(iop_conn *c, const void *data, size_t len)
{
    if ((c->flags & IOP__CONN_CLOSING) || c->error)
        return -EPIPE;
    if (c->tls) {
        struct iovec v = {.iov_base = (void *)data, .iov_len = len};
        return iop__tls_send(c, &v, 1);
    }
    return iop__outq_append(&c->out, data, len);
}

int iop_send_frame(iop_conn *c, const void *msg, size_t len)
{
    if ((c->flags & IOP__CONN_CLOSING) || c->error)
        return -EPIPE;
    enum iop_framing framing = c->server->framing;
    if (framing == IOP_FRAMING_LEN32 && len > UINT32_MAX)
        return -EMSGSIZE;
    char hdr[4];
    size_t hn = iop_frame_header(framing, len, hdr);
    size_t tn = framing == IOP_FRAMING_LINE ? 1 : 0;
    if (c->tls) { /* one record for a small frame */
        struct iovec v[3] = {{hdr, hn}, {(void *)msg, len}, {"\n", tn}};
        return iop__tls_send(c, v, 3);
    }
    /* Reserve the whole frame first so a failure queues nothing. */
    if (iop__outq_reserve(&c->out, hn + len + tn) != 0)
        return -ENOMEM;
    iop__outq_append(&c->out, hdr, hn);
    iop__outq_append(&c->out, msg, len);
    iop__outq_append(&c->out, "\n", tn);
    return 0;
}

void iop_close(iop_conn *c) { c->flags |= IOP__CONN_CLOSING; }

const struct sockaddr *iop_conn_peer(const iop_conn *c, socklen_t *len)
{
    if (len)
        *len = c->peerlen;
    return &c->peer.sa;
}

const char *iop__conn_peer_str(const iop_conn *c, char *buf, size_t len)
{
    if (c->peer_name)
        return c->peer_name;
    iop_sockaddr_format(&c->peer.sa, c->peerlen, buf, len);
    return buf;
}

const char *iop_conn_peer_name(const iop_conn *c)
{
    iop_conn *m = (iop_conn *)c; /* the name is a cache, not state */
    if (!m->peer_name) {
        char buf[IOP_PATH_MAX + 16];
        iop_sockaddr_format(&c->peer.sa, c->peerlen, buf, sizeof buf);
        m->peer_name = strdup(buf);
    }
    return m->peer_name ? m->peer_name : "(unknown peer)";
}

uint64_t iop_conn_id(const iop_conn *c) { return c->id; }
void *iop_conn_data(const iop_conn *c) { return c->data; }
void iop_conn_set_data(iop_conn *c, void *data) { c->data = data; }
iop_server *iop_conn_server(const iop_conn *c) { return c->server; }
