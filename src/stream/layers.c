/*
 * The layers between the socket and the service (layers.h).
 */
#include "stream/layers.h"
#include "tls/tls.h"

#include <errno.h>

/* The layers' start is over (or there was none): the service hears of c. */
static void open_now(iop_conn *c)
{
    c->flags |= IOP__CONN_OPENED;
    c->progress++;
    iop__conn_opened(c);
}

int iop__conn_start(iop_conn *c)
{
    iop_server *s = c->server;
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
    if (!c->tls)
        return iop__conn_dispatch_bytes(c, p, n);
    int was_open = iop__tls_established(c->tls);
    int r = iop__tls_input(c, p, n); /* plaintext appended to c->in */
    if (r < 0)
        return r;
    if (!was_open && iop__tls_established(c->tls))
        open_now(c);
    if (!(c->flags & IOP__CONN_OPENED))
        return 0;
    r = iop__conn_dispatch(c);
    if (r == 0 && iop__tls_peer_closed(c->tls) && !(c->flags & IOP__CONN_PEER_EOF))
        iop__conn_input_end(c); /* close_notify: the end of the peer's stream */
    return r;
}

void iop__conn_input_end(iop_conn *c)
{
    c->flags |= IOP__CONN_PEER_EOF;
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
    if (c->tls)
        iop__tls_conn_free(c);
}
