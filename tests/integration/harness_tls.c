/*
 * TLS for the tests (harness_tls.h).
 */
#define _GNU_SOURCE
#include "harness.h"
#include "harness_tls.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

const char *tls_certs(void)
{
    static char dir[512];
    if (dir[0])
        return dir;
    const char *tmp = harness_tmpdir();
    if (!tmp)
        return NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/certs", tmp);
    const char *argv[] = {"sh", IOPLEX_SOURCE_DIR "/tests/tls/make-certs.sh", path, NULL};
    char err[2048] = "";
    int r = run_cmd(argv, NULL, 0, NULL, 0, NULL, err, sizeof err, 60000);
    if (r != 0) {
        fprintf(stderr, "make-certs.sh failed (%d): %s\n", r, err);
        return NULL;
    }
    snprintf(dir, sizeof dir, "%s", path);
    return dir;
}

const char *tls_cert(const char *name)
{
    static char ring[8][600];
    static unsigned next;
    const char *dir = tls_certs();
    if (!dir)
        fail_msg("no test certificates (tests/tls/make-certs.sh failed)");
    char *b = ring[next++ % 8];
    snprintf(b, sizeof ring[0], "%s/%s", dir, name);
    return b;
}

/* Wait for what OpenSSL wants from the socket. 0, or -1 at the deadline. */
static int wait_for(SSL *ssl, int want, long long until)
{
    long long left = until - now_ms();
    if (left <= 0)
        return -1;
    struct pollfd p = {.fd = SSL_get_fd(ssl),
                       .events = want == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN};
    return poll(&p, 1, (int)left) > 0 ? 0 : -1;
}

static void reason(char *err, size_t cap, const char *what)
{
    unsigned long e = ERR_get_error();
    snprintf(err, cap, "%s: %s", what, e ? ERR_reason_error_string(e) : "closed");
    ERR_clear_error();
}

SSL *tls_client(int fd, const struct tls_client_opts *o, int timeout_ms, char *err,
                size_t errcap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    if (!ctx)
        goto fail;
    if (o && o->ca) {
        if (SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1)
            goto fail;
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    if (o && o->cert && (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1 ||
                         SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1))
        goto fail;
    if (!(ssl = SSL_new(ctx)))
        goto fail;
    SSL_CTX_free(ctx); /* the session holds its own reference */
    ctx = NULL;
    const char *sni = o && o->sni ? o->sni : "localhost";
    SSL_set_tlsext_host_name(ssl, sni);
    if (o && o->ca)
        SSL_set1_host(ssl, sni);
    SSL_set_fd(ssl, fd);
    /* Non-blocking for the handshake, so the timeout holds. */
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    long long until = now_ms() + timeout_ms;
    for (;;) {
        int r = SSL_connect(ssl);
        if (r == 1)
            break;
        int e = SSL_get_error(ssl, r);
        if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) ||
            wait_for(ssl, e, until) != 0) {
            reason(err, errcap, "handshake");
            fcntl(fd, F_SETFL, fl);
            SSL_free(ssl);
            return NULL;
        }
    }
    fcntl(fd, F_SETFL, fl);
    return ssl;
fail:
    reason(err, errcap, "client set-up");
    SSL_CTX_free(ctx);
    SSL_free(ssl);
    return NULL;
}

void tls_client_free(SSL *ssl) { SSL_free(ssl); }

int tls_send_all(SSL *ssl, const void *buf, size_t len)
{
    size_t done;
    return len == 0 || SSL_write_ex(ssl, buf, len, &done) == 1 ? 0 : -1;
}

static char read_error[256];
const char *tls_read_error(void) { return read_error; }

/* One SSL_read bounded by the deadline: bytes, 0 at close_notify, -2 at
 * a FIN without one, -1 on timeout or error. */
static ssize_t read_some(SSL *ssl, void *buf, size_t len, long long until)
{
    int fd = SSL_get_fd(ssl);
    for (;;) {
        if (SSL_pending(ssl) == 0) {
            long long left = until - now_ms();
            struct pollfd p = {.fd = fd, .events = POLLIN};
            if (left <= 0 || poll(&p, 1, (int)left) <= 0)
                return -1;
        }
        size_t got;
        if (SSL_read_ex(ssl, buf, len, &got) == 1)
            return (ssize_t)got;
        int e = SSL_get_error(ssl, 0);
        unsigned long why = ERR_peek_last_error();
        snprintf(read_error, sizeof read_error, "%s",
                 why && ERR_reason_error_string(why) ? ERR_reason_error_string(why) : "");
        ERR_clear_error();
        if (e == SSL_ERROR_ZERO_RETURN)
            return 0;
        if (e == SSL_ERROR_WANT_READ)
            continue;
        if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_SSL)
            return -2; /* OpenSSL 3: "unexpected eof" is an SSL error */
        return -1;
    }
}

ssize_t tls_recv_exact(SSL *ssl, void *buf, size_t len, int timeout_ms)
{
    long long until = now_ms() + timeout_ms;
    size_t have = 0;
    while (have < len) {
        ssize_t n = read_some(ssl, (char *)buf + have, len - have, until);
        if (n == -1)
            return -1;
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    return (ssize_t)have;
}

int tls_expect_close_notify(SSL *ssl, int timeout_ms)
{
    char c;
    ssize_t n = read_some(ssl, &c, 1, now_ms() + timeout_ms);
    return n == 0 ? 1 : n == -2 ? 0 : -1;
}
