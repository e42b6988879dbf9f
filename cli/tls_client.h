/*
 * TLS for the tool's clients (connect, bench): the client SSL_CTX (which
 * CAs, whether to verify, a client certificate, a session cache for
 * resumption), one SSL per socket, and OpenSSL's non-blocking results put
 * the way a poll or epoll loop wants them: bytes, end of stream, "wait for
 * POLLIN/POLLOUT", or a failure with its reason in one line.
 *
 * The sockets stay non-blocking: OpenSSL reads and writes the socket
 * itself (SSL_set_fd), and a loop waits for what the last call asked for.
 */
#ifndef IOPLEX_CLI_TLS_CLIENT_H
#define IOPLEX_CLI_TLS_CLIENT_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <sys/types.h>

#define TLS_WHY_LEN 256

struct tls_client_cfg {
    int verify;           /* check the server's chain and name */
    const char *ca_file;  /* the CAs to check it with; NULL: the system's store */
    const char *cert_file, *key_file; /* a client certificate (mutual TLS) */
};

/* A client context; NULL with the reason in why (one line, naming the
 * file at fault). */
SSL_CTX *tls_client_ctx(const struct tls_client_cfg *cfg, char *why);

/* An SSL on fd. name: the server's name, sent as SNI unless it is an IP
 * address, and, when the context verifies, the name (DNS or IP) its
 * certificate must carry; NULL: none sent, none checked. */
SSL *tls_client_ssl(SSL_CTX *ctx, int fd, const char *name, char *why);

/*
 * The result of an SSL call on a non-blocking socket:
 *   > 0  bytes read or written
 *   TLS_EOF     the peer's close_notify (reads)
 *   TLS_WANT    retry once fd is ready for *want (POLLIN or POLLOUT)
 *   TLS_FAILED  failed: why holds the reason; *err an errno when the
 *               socket failed (ECONNRESET, EPIPE), else 0
 *   TLS_TRUNCATED  the peer closed without close_notify (reads)
 */
enum { TLS_EOF = 0, TLS_WANT = -1, TLS_FAILED = -2, TLS_TRUNCATED = -3 };

/* One handshake step: 1 done, or TLS_WANT / TLS_FAILED as above. A
 * failed verification gives the certificate's fault in why
 * ("certificate verify failed: certificate has expired"). */
int tls_client_handshake(SSL *ssl, short *want, int *err, char *why);
ssize_t tls_client_read(SSL *ssl, void *buf, size_t len, short *want, int *err, char *why);
ssize_t tls_client_write(SSL *ssl, const void *buf, size_t len, short *want, int *err,
                         char *why);
/* The whole handshake on fd, waiting with poll() at most timeout_ms
 * (-1: no bound): 1 done, TLS_FAILED (why says), or 0 at the timeout. */
int tls_client_handshake_wait(SSL *ssl, int fd, int timeout_ms, char *why);
/* Send close_notify: 1 sent, TLS_WANT, or TLS_FAILED. */
int tls_client_close_notify(SSL *ssl, short *want, int *err, char *why);

/* "TLSv1.3 TLS_AES_256_GCM_SHA384", for -v lines and reports. */
void tls_client_describe(SSL *ssl, char *buf, size_t len);

#endif
