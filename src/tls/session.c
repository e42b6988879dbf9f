/*
 * One connection's TLS session (tls.h). OpenSSL reads and writes through
 * a BIO of ours: reads take from the bytes the model just received (and
 * say "retry" when they run out, as a non-blocking socket would), writes
 * append to the connection's output queue. No copy through a memory BIO,
 * no system call of OpenSSL's own, and the model keeps doing its I/O its
 * way (recv, io_uring, aio).
 */
#define _GNU_SOURCE
#include "tls/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* The largest TLS record's plaintext: the unit SSL_read and SSL_write work in. */
#define RECORD_MAX 16384

struct iop__tls_conn {
    SSL *ssl;
    const char *in; /* received ciphertext not yet taken by OpenSSL */
    size_t in_len;
    unsigned established : 1, peer_closed : 1, closed : 1, failed : 1;
    char *peer_subject; /* iop_conn_tls_peer(), made on first use */
};

/* ---- the BIO: OpenSSL's side of the connection ---- */

static int bio_write(BIO *b, const char *p, int n)
{
    iop_conn *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    return iop__outq_append(&c->out, p, (size_t)n) == 0 ? n : -1;
}

static int bio_read(BIO *b, char *p, int n)
{
    iop_conn *c = BIO_get_data(b);
    struct iop__tls_conn *tc = c->tls;
    BIO_clear_retry_flags(b);
    if (tc->in_len == 0) {
        BIO_set_retry_read(b); /* as EAGAIN: more comes with the next input */
        return -1;
    }
    size_t k = tc->in_len < (size_t)n ? tc->in_len : (size_t)n;
    memcpy(p, tc->in, k);
    tc->in += k;
    tc->in_len -= k;
    return (int)k;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0; /* the queue is written by the model */
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *conn_method;
static void make_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ioplex conn");
    if (m && BIO_meth_set_write(m, bio_write) && BIO_meth_set_read(m, bio_read) &&
        BIO_meth_set_ctrl(m, bio_ctrl) && BIO_meth_set_create(m, bio_create))
        conn_method = m;
    else
        BIO_meth_free(m);
}

/* ---- the session ---- */

static void say_failure(iop_conn *c, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    iop_report(c->server, IOP_LOG_INFO, "closing %s: TLS %s failed: %s", iop_conn_peer_name(c),
               what, why ? why : "the peer's data is not TLS");
}

int iop__tls_conn_new(iop_conn *c, struct iop__tls *t)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, make_method);
    if (!conn_method)
        return -ENOMEM;
    struct iop__tls_conn *tc = calloc(1, sizeof *tc);
    if (!tc)
        return -ENOMEM;
    BIO *bio = NULL;
    if (!(tc->ssl = iop__tls_server_ssl(t)) || !(bio = BIO_new(conn_method))) {
        SSL_free(tc->ssl);
        free(tc);
        ERR_clear_error();
        return -ENOMEM;
    }
    BIO_set_data(bio, c);
    SSL_set_bio(tc->ssl, bio, bio); /* one reference, for both */
    SSL_set_accept_state(tc->ssl);
    c->tls = tc;
    return 0;
}

void iop__tls_conn_free(iop_conn *c)
{
    SSL_free(c->tls->ssl);
    free(c->tls->peer_subject);
    free(c->tls);
    c->tls = NULL;
}

int iop_conn_tls(const iop_conn *c) { return c->tls != NULL; }

const char *iop_conn_tls_peer(const iop_conn *c)
{
    struct iop__tls_conn *tc = c->tls;
    if (!tc || !tc->established)
        return NULL;
    if (!tc->peer_subject) {
        X509 *cert = SSL_get0_peer_certificate(tc->ssl);
        if (!cert || SSL_get_verify_result(tc->ssl) != X509_V_OK)
            return NULL;
        BIO *m = BIO_new(BIO_s_mem());
        if (!m)
            return NULL;
        X509_NAME_print_ex(m, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
        char *p;
        long len = BIO_get_mem_data(m, &p);
        if (len > 0 && (tc->peer_subject = malloc((size_t)len + 1))) {
            memcpy(tc->peer_subject, p, (size_t)len);
            tc->peer_subject[len] = '\0';
        }
        BIO_free(m);
    }
    return tc->peer_subject;
}

int iop__tls_established(const struct iop__tls_conn *tc) { return tc->established; }
int iop__tls_peer_closed(const struct iop__tls_conn *tc) { return tc->peer_closed; }

/* Decrypt what OpenSSL can, a record at a time, and hand it on. */
static int read_plaintext(iop_conn *c, struct iop__tls_conn *tc, iop__tls_deliver deliver)
{
    char plain[RECORD_MAX];
    for (;;) {
        size_t got = 0;
        if (SSL_read_ex(tc->ssl, plain, sizeof plain, &got) == 1) {
            int r = deliver(c, plain, got);
            if (r != 0)
                return r;
            continue;
        }
        switch (SSL_get_error(tc->ssl, 0)) {
        case SSL_ERROR_WANT_READ:
            return 0; /* all taken: more comes with the next input */
        case SSL_ERROR_ZERO_RETURN:
            tc->peer_closed = 1; /* close_notify: the peer's end, as a FIN */
            return 0;
        default:
            tc->failed = 1;
            say_failure(c, "read");
            return -EPROTO;
        }
    }
}

int iop__tls_input(iop_conn *c, const char *p, size_t n, iop__tls_deliver deliver)
{
    struct iop__tls_conn *tc = c->tls;
    if (tc->failed || tc->peer_closed)
        return 0; /* nothing more is read after a close_notify */
    tc->in = p;
    tc->in_len = n;
    int r = 0;
    if (!tc->established) {
        int h = SSL_do_handshake(tc->ssl);
        if (h == 1) {
            tc->established = 1;
        } else if (SSL_get_error(tc->ssl, h) != SSL_ERROR_WANT_READ) {
            tc->failed = 1;
            say_failure(c, "handshake");
            r = -EPROTO;
        }
    }
    if (r == 0 && tc->established)
        r = read_plaintext(c, tc, deliver);
    tc->in = NULL;
    tc->in_len = 0;
    return r;
}

void iop__tls_input_end(iop_conn *c)
{
    struct iop__tls_conn *tc = c->tls;
    if (tc->peer_closed || tc->failed || !iop__reporting(c->server, IOP_LOG_DEBUG))
        return;
    /* The peer's FIN without close_notify: what it sent may have been cut
     * short by someone else (nginx and HAProxy say it at info). */
    iop_report(c->server, IOP_LOG_DEBUG, "%s closed%s without TLS close_notify (truncated)",
               iop_conn_peer_name(c), tc->established ? "" : " during the handshake,");
}

int iop__tls_close_notify(iop_conn *c)
{
    struct iop__tls_conn *tc = c->tls;
    if (tc->closed || tc->failed || !tc->established)
        return 0;
    tc->closed = 1;
    size_t before = c->out.bytes;
    SSL_shutdown(tc->ssl); /* sends ours; the peer's is not waited for */
    ERR_clear_error();
    return c->out.bytes != before;
}

int iop__tls_send(iop_conn *c, const struct iovec *v, int n)
{
    struct iop__tls_conn *tc = c->tls;
    if (tc->closed || tc->failed)
        return -EPIPE;
    char gather[RECORD_MAX];
    size_t used = 0;
    for (int i = 0; i <= n; i++) {
        size_t len = i < n ? v[i].iov_len : 0;
        const char *p = i < n ? v[i].iov_base : NULL;
        /* Small pieces are gathered into one record; a large one goes as
         * it is (OpenSSL cuts it into records). */
        if (i < n && used + len <= sizeof gather) {
            memcpy(gather + used, p, len);
            used += len;
            continue;
        }
        size_t w;
        if (used > 0 && SSL_write_ex(tc->ssl, gather, used, &w) != 1)
            goto fail;
        used = 0;
        if (len > 0 && SSL_write_ex(tc->ssl, p, len, &w) != 1)
            goto fail;
    }
    return 0;
fail:
    ERR_clear_error();
    return -ENOMEM; /* the queue could not take the records */
}
