/*
 * TLS for the tests: the test certificates (made at test time by
 * tests/tls/make-certs.sh, nothing secret committed) and a small blocking
 * TLS client over a harness socket, bounded in time.
 */
#ifndef IOPLEX_TEST_HARNESS_TLS_H
#define IOPLEX_TEST_HARNESS_TLS_H

#include <stddef.h>
#include <sys/types.h>

#include <openssl/ssl.h>

/* The directory holding the test certificates (made on first use, in
 * harness_tmpdir()), or NULL after printing why. */
const char *tls_certs(void);
/* "<tls_certs()>/<name>" (e.g. "server.pem"), in a static ring of 8
 * buffers; the test fails if the certificates cannot be made. */
const char *tls_cert(const char *name);

struct tls_client_opts {
    const char *ca;   /* verify the server against this CA file; NULL: no check */
    const char *cert; /* a client certificate (mutual TLS), and its key */
    const char *key;
    const char *sni;  /* server name sent, and checked if ca */
};
/* A TLS session on the connected socket fd, handshaken within
 * timeout_ms. NULL on failure, with OpenSSL's reason in err. The socket
 * stays the caller's (tls_client_free() does not close it). */
SSL *tls_client(int fd, const struct tls_client_opts *o, int timeout_ms, char *err,
                size_t errcap);
void tls_client_free(SSL *ssl);
int tls_send_all(SSL *ssl, const void *buf, size_t len);
/* Read exactly len bytes within timeout_ms; fewer at the peer's end
 * (close_notify or FIN). -1 on timeout or error. */
ssize_t tls_recv_exact(SSL *ssl, void *buf, size_t len, int timeout_ms);
/* OpenSSL's reason for the last failed read (tls_recv_exact()), or "". */
const char *tls_read_error(void);
/* 1 if the next thing is the peer's close_notify, 0 if its FIN without
 * one, -1 if data, a timeout or an error. */
int tls_expect_close_notify(SSL *ssl, int timeout_ms);

#endif
