/*
 * The layers between a connection's socket and its service, written once
 * for every model: what comes before the service hears of a connection (a
 * PROXY protocol header, a TLS handshake), and what every byte passes
 * through after it (TLS records). A plain connection has no layer: its
 * bytes go straight to the framing, as before.
 *
 * A model calls these instead of framing and dispatching itself:
 *   iop__conn_start()      once the connection is accepted;
 *   iop__conn_input()      with each run of bytes it receives;
 *   iop__conn_input_end()  at the peer's end of stream;
 *   iop__conn_last_words() when the connection is done, before its FIN.
 * Whatever a layer has to send (handshake records, alerts) it queues on
 * c->out, which the model writes like any other output.
 */
#ifndef IOP_STREAM_LAYERS_H
#define IOP_STREAM_LAYERS_H

#include "../internal.h"

/* A new connection: its layers set up, and the service told of it
 * (on_open) now, or once the layers are through their start. 0, or a
 * negative errno: close it. */
int iop__conn_start(iop_conn *c);
/* n bytes from the socket (n > 0): through the layers, then framed and
 * delivered. 0, -EMSGSIZE (a message over --max-frame: not said yet), or
 * another negative errno: close the connection (the reason said already,
 * where it is news). */
int iop__conn_input(iop_conn *c, const char *p, size_t n);
/* 1 if c's bytes must go through iop__conn_input() (the blocking path
 * otherwise reads straight into c->in and dispatches it). */
static inline int iop__conn_layered(const iop_conn *c) { return c->proxy || c->tls; }
/* The peer's stream ended: its FIN, or a layer's end (TLS close_notify,
 * which iop__conn_input() passes on here, setting IOP__CONN_PEER_EOF:
 * the model stops reading at that flag as at a FIN). */
void iop__conn_input_end(iop_conn *c);
/* c is done (closing, or past the peer's end, with its output written):
 * 1 if a layer queued a last word on c->out (TLS's close_notify), to be
 * written before the connection is finished. */
int iop__conn_last_words(iop_conn *c);
/* 1 while c's PROXY header (serve --proxy-protocol) is still to come. */
int iop__conn_proxy_pending(const iop_conn *c);
/* The layers' state freed (iop__conn_release() calls it). */
void iop__conn_layers_free(iop_conn *c);

#endif
