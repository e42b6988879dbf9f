/*
 * The layers between the socket and the service (layers.h).
 */
#include "stream/layers.h"
#include "net/proxy_header.h"
#include "tls/tls.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- the PROXY protocol header (serve --proxy-protocol) ---------------- */

/* A connection's PROXY header, from its accept until its service hears of
 * it: the header's first bytes while it is incomplete (most headers come
 * whole in the first read and are parsed where they lie, never copied),
 * then, while a TLS handshake still follows, the balancer's address for
 * the open line. */
struct iop__proxy_reader {
    struct iop__buf held;
    int done;                   /* the header is read */
    union iop__peer_addr via;   /* the real peer, if the header replaced it */
    socklen_t vialen;
};

static void proxy_free(iop_conn *c)
{
    if (!c->proxy)
        return;
    iop__buf_free(&c->proxy->held);
    free(c->proxy);
    c->proxy = NULL;
}

int iop__conn_proxy_pending(const iop_conn *c) { return c->proxy && !c->proxy->done; }

/* The header says who the client is: the service and the logs see it from
 * now on. LOCAL (the balancer's own health check), v1 UNKNOWN and v2
 * UNSPEC keep the real peer, as the spec says. */
static void proxy_apply(iop_conn *c, const struct iop__proxy_header *h)
{
    struct iop__proxy_reader *r = c->proxy;
    if (h->command != IOP__PROXY_CMD_PROXY || h->family == AF_UNSPEC)
        return;
    r->via = c->peer;
    r->vialen = c->peerlen;
    memset(&c->peer, 0, sizeof c->peer);
    if (h->family == AF_UNIX) { /* kept by its family only, as accept()'s */
        c->peer.sa.sa_family = AF_UNIX;
        c->peerlen = sizeof(sa_family_t);
    } else {
        memcpy(&c->peer, &h->src, h->srclen);
        c->peerlen = h->srclen;
    }
    free(c->peer_name); /* named again, as the client */
    c->peer_name = NULL;
}

/* Feed p[0, n) to the header. 0 with *used set to the bytes of p that were
 * the header's (the rest is the connection's first data) once it is read,
 * or with the reader still pending; -EPROTO (said) or -ENOMEM. */
static int proxy_input(iop_conn *c, const char *p, size_t n, size_t *used)
{
    struct iop__proxy_reader *r = c->proxy;
    size_t held = iop__buf_used(&r->held);
    const char *q = p;
    size_t qn = n;
    if (held > 0) { /* a header split over reads: join its pieces */
        size_t take = n < IOP__PROXY_MAX - held ? n : IOP__PROXY_MAX - held;
        if (iop__buf_append(&r->held, p, take) != 0)
            return -ENOMEM;
        q = iop__buf_head(&r->held);
        qn = held + take;
    }
    struct iop__proxy_header h;
    const char *why = "";
    ssize_t len = iop__proxy_parse(q, qn, &h, &why);
    if (len < 0) {
        iop_report(c->server, IOP_LOG_INFO, "closing %s: PROXY header: %s",
                   iop_conn_peer_name(c), why);
        return -EPROTO;
    }
    if (len == 0) { /* never with IOP__PROXY_MAX bytes: the parser decides by then */
        *used = n;
        return held > 0 ? 0 : iop__buf_append(&r->held, p, n) != 0 ? -ENOMEM : 0;
    }
    *used = (size_t)len - held; /* > held: held alone was not a header */
    iop__buf_free(&r->held);
    r->done = 1;
    proxy_apply(c, &h);
    return 0;
}

/* ---- the connection's start and input ---------------------------------- */

/* The layers' start is over (or there was none): the service hears of c. */
static void open_now(iop_conn *c)
{
    c->flags |= IOP__CONN_OPENED;
    c->progress++;
    if (c->proxy && c->proxy->vialen)
        iop__conn_opened(c, &c->proxy->via.sa, c->proxy->vialen);
    else
        iop__conn_opened(c, NULL, 0);
    proxy_free(c);
}

/* A run of plaintext from TLS: the service hears of c first (the
 * handshake is over), then its messages, framed where they lie (only a
 * partial frame is kept, in c->in), as a plain connection's bytes are. */
static int deliver_plain(iop_conn *c, const char *p, size_t n)
{
    if (!(c->flags & IOP__CONN_OPENED))
        open_now(c);
    return iop__conn_dispatch_bytes(c, p, n);
}

int iop__conn_start(iop_conn *c)
{
    iop_server *s = c->server;
    if (s->cfg.proxy_protocol) {
        c->proxy = calloc(1, sizeof *c->proxy);
        if (!c->proxy)
            return -ENOMEM;
    }
    if (s->tls) {
        int r = iop__tls_conn_new(c, s->tls);
        if (r != 0)
            return r;
    }
    if (!c->proxy && !c->tls)
        open_now(c);
    return 0;
}

int iop__conn_input(iop_conn *c, const char *p, size_t n)
{
    if (iop__conn_proxy_pending(c)) {
        /* The header comes first, before any TLS handshake (as HAProxy's
         * accept-proxy and nginx's proxy_protocol on an ssl listener). */
        size_t used = 0;
        int r = proxy_input(c, p, n, &used);
        if (r < 0 || !c->proxy->done)
            return r;
        p += used;
        n -= used;
        if (!c->tls)
            open_now(c);
        if (n == 0)
            return 0;
    }
    if (!c->tls)
        return iop__conn_dispatch_bytes(c, p, n);
    int r = iop__tls_input(c, p, n, deliver_plain);
    if (r == -EPROTO && c->out.bytes > 0) {
        /* OpenSSL queued its alert (a client without the certificate
         * asked for learns "certificate required", not a bare EOF): it
         * goes out, then the connection closes as after iop_close(). */
        c->flags |= IOP__CONN_CLOSING;
        return 0;
    }
    if (r < 0)
        return r;
    if (!(c->flags & IOP__CONN_OPENED) && iop__tls_established(c->tls))
        open_now(c); /* a handshake that ended without data after it */
    if (iop__tls_peer_closed(c->tls) && !(c->flags & IOP__CONN_PEER_EOF))
        iop__conn_input_end(c); /* close_notify: the end of the peer's stream */
    return r;
}

void iop__conn_input_end(iop_conn *c)
{
    c->flags |= IOP__CONN_PEER_EOF;
    if (iop__conn_proxy_pending(c)) {
        /* A connection closed before it sent a byte is no error (a port
         * probe, a plain TCP health check); one cut in its header is. */
        size_t held = iop__buf_used(&c->proxy->held);
        if (held > 0)
            iop_report(c->server, IOP_LOG_INFO,
                       "closing %s: PROXY header: cut off after %zu bytes by the peer's end "
                       "of stream", iop_conn_peer_name(c), held);
        return;
    }
    if (c->tls)
        iop__tls_input_end(c);
    if (c->flags & IOP__CONN_OPENED)
        iop__conn_eof(c);
}

int iop__conn_last_words(iop_conn *c)
{
    return c->tls ? iop__tls_close_notify(c) : 0;
}

void iop__conn_layers_free(iop_conn *c)
{
    proxy_free(c);
    if (c->tls)
        iop__tls_conn_free(c);
}
