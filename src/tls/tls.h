/*
 * TLS (OpenSSL 3) for every stream model, as a layer of the connection
 * (stream/layers.h): the model moves bytes as it always does, and this
 * layer turns the ciphertext it receives into plaintext for the framing,
 * and the service's plaintext into records on c->out.
 *
 * One way for every model: OpenSSL reads from the bytes the model hands
 * in and writes into the connection's output queue, through a BIO of our
 * own (session.c) instead of the socket. The blocking models, the
 * readiness loops and the completion models (uring, aio) then share one
 * TLS path, and OpenSSL never holds decrypted data the loop does not know
 * of: each run of input is decrypted to its end before the call returns.
 */
#ifndef IOP_TLS_H
#define IOP_TLS_H

#include "../internal.h"

#include <sys/uio.h>

/* The server's TLS: its SSL_CTX, replaced as a whole by a reload. */
struct iop__tls;

/* Read the certificate (its chain), the key and the CA file named in cfg
 * and make the context. On failure a negative errno, and err (256 bytes)
 * says which file and why, in one line. */
int iop__tls_server_new(struct iop__tls **out, const struct iop_server_config *cfg,
                        char *err);
void iop__tls_server_free(struct iop__tls *t);
/* A reload asked for (iop_server_reload_tls(), a signal handler) is done
 * here, by the thread about to start a connection: new connections get
 * the new files, open ones keep theirs; a reload that fails keeps the old
 * context and says why once. */
void iop__tls_server_check_reload(iop_server *s);
/* prefork: the parent reloads when asked (1 if it did, and the files were
 * good) and passes the request on to its children (SIGHUP), which reload
 * without a line of their own: the parent's says it once. */
int iop__tls_server_reload_now(iop_server *s);
void iop__tls_server_follow(iop_server *s);

/* A new session on the context in force (an SSL *, as void * so that
 * this header does not need OpenSSL's). */
struct ssl_st;
struct ssl_st *iop__tls_server_ssl(struct iop__tls *t);

/* A detached thread that served TLS is about to end: OpenSSL's state for
 * it (its random generators) freed now, while the server still waits for
 * it, not by a destructor that a process exiting meanwhile never runs. */
void iop__tls_thread_done(iop_server *s);

/* ---- one connection (session.c) ---- */

int iop__tls_conn_new(iop_conn *c, struct iop__tls *t);
void iop__tls_conn_free(iop_conn *c);
/* The handshake is done; the peer has sent its close_notify. */
int iop__tls_established(const struct iop__tls_conn *tc);
int iop__tls_peer_closed(const struct iop__tls_conn *tc);
/* Ciphertext from the peer: the handshake advanced, each run of
 * plaintext handed to deliver (from a buffer on the stack: nothing is
 * allocated per record), whatever TLS answers queued on c->out. 0,
 * deliver's error, -EPROTO (a failed handshake, a bad record: said) or
 * -ENOMEM. */
typedef int (*iop__tls_deliver)(iop_conn *c, const char *plain, size_t len);
int iop__tls_input(iop_conn *c, const char *p, size_t n, iop__tls_deliver deliver);
/* The peer's stream ended: without its close_notify, said (-v) as a
 * truncation. */
void iop__tls_input_end(iop_conn *c);
/* Queue close_notify once, after the handshake; 1 if it was queued now. */
int iop__tls_close_notify(iop_conn *c);
/* The service's plaintext, as records on c->out (small pieces gathered
 * into one record). 0, or a negative errno. */
int iop__tls_send(iop_conn *c, const struct iovec *v, int n);

#endif
