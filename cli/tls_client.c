/*
 * The clients' TLS (tls_client.h). The policy, as curl's and OpenSSL's
 * s_client's defaults: TLS 1.2 and 1.3, verification against the system's
 * CA store unless told otherwise, the server's name checked (DNS name or
 * IP address, RFC 6125), SNI sent for names, never for addresses (RFC 6066
 * forbids literal addresses in it).
 */
#define _GNU_SOURCE
#include "tls_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

/* OpenSSL's last error in words, the queue emptied. */
static void ssl_reason(char *why, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    snprintf(why, TLS_WHY_LEN, "%s%s%s", what, r ? ": " : "", r ? r : "");
}

static int readable(const char *what, const char *path, char *why)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(why, TLS_WHY_LEN, "TLS %s %s: %s", what, path, strerror(errno));
        return -1;
    }
    fclose(f);
    return 0;
}

SSL_CTX *tls_client_ctx(const struct tls_client_cfg *cfg, char *why)
{
    if ((cfg->ca_file && readable("CA file", cfg->ca_file, why)) ||
        (cfg->cert_file && readable("certificate", cfg->cert_file, why)) ||
        (cfg->key_file && readable("key", cfg->key_file, why)))
        return NULL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        ssl_reason(why, "TLS");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* SSL_write as send(): a part written is returned, and a retry may
     * come from the same bytes at another address. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (cfg->verify) {
        int ok = cfg->ca_file ? SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL)
                              : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            char what[TLS_WHY_LEN];
            snprintf(what, sizeof what, "TLS CA file %s",
                     cfg->ca_file ? cfg->ca_file : "(the system's)");
            ssl_reason(why, what);
            goto fail;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    if (cfg->cert_file) {
        const char *key = cfg->key_file ? cfg->key_file : cfg->cert_file;
        char what[TLS_WHY_LEN];
        if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file) != 1) {
            snprintf(what, sizeof what, "TLS certificate %s", cfg->cert_file);
            ssl_reason(why, what);
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
            snprintf(what, sizeof what, "TLS key %s", key);
            ssl_reason(why, what);
            goto fail;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            snprintf(why, TLS_WHY_LEN, "TLS key %s does not match the certificate %s", key,
                     cfg->cert_file);
            ERR_clear_error();
            goto fail;
        }
    }
    /* The caller keeps the sessions it offers (SSL_get1_session). No
     * client cache: OpenSSL removes a TLS 1.3 session it has resumed from
     * that cache, which marks it not resumable, so one kept session would
     * resume once only. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static int is_ip(const char *name)
{
    unsigned char a[16];
    return inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;
}

SSL *tls_client_ssl(SSL_CTX *ctx, int fd, const char *name, char *why)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl) {
        ssl_reason(why, "TLS");
        return NULL;
    }
    if (SSL_set_fd(ssl, fd) != 1)
        goto fail;
    SSL_set_connect_state(ssl);
    if (name && name[0]) {
        int ip = is_ip(name);
        if (!ip && SSL_set_tlsext_host_name(ssl, name) != 1)
            goto fail;
        if (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) {
            X509_VERIFY_PARAM *p = SSL_get0_param(ssl);
            /* No wildcard over more than one label, no partial ones. */
            X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            if ((ip ? X509_VERIFY_PARAM_set1_ip_asc(p, name)
                    : X509_VERIFY_PARAM_set1_host(p, name, 0)) != 1)
                goto fail;
        }
    }
    return ssl;
fail:
    ssl_reason(why, "TLS");
    SSL_free(ssl);
    return NULL;
}

/* What an SSL call's result means for the loop. */
static int outcome(SSL *ssl, int ret, short *want, int *err, char *why, const char *what)
{
    int saved = errno;
    int e = SSL_get_error(ssl, ret);
    *err = 0;
    switch (e) {
    case SSL_ERROR_WANT_READ:
        *want = POLLIN;
        return TLS_WANT;
    case SSL_ERROR_WANT_WRITE:
        *want = POLLOUT;
        return TLS_WANT;
    case SSL_ERROR_ZERO_RETURN:
        return TLS_EOF;
    case SSL_ERROR_SYSCALL:
        /* The socket failed (a reset); errno 0 is an end without
         * close_notify in OpenSSL before 3. */
        ERR_clear_error();
        if (saved == 0) {
            snprintf(why, TLS_WHY_LEN, "%s: the peer closed the connection", what);
            return TLS_TRUNCATED;
        }
        *err = saved;
        snprintf(why, TLS_WHY_LEN, "%s: %s", what, strerror(saved));
        return TLS_FAILED;
    case SSL_ERROR_SSL:
        break;
    default:
        snprintf(why, TLS_WHY_LEN, "%s: OpenSSL error %d", what, e);
        ERR_clear_error();
        return TLS_FAILED;
    }
    unsigned long last = ERR_peek_last_error();
    if (ERR_GET_LIB(last) == ERR_LIB_SSL &&
        ERR_GET_REASON(last) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ERR_clear_error();
        snprintf(why, TLS_WHY_LEN, "%s: the peer closed the connection", what);
        return TLS_TRUNCATED;
    }
    long v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK) {
        /* The certificate's fault, in X509's words: "certificate has
         * expired", "hostname mismatch", "self-signed certificate". */
        ERR_clear_error();
        snprintf(why, TLS_WHY_LEN, "%s: certificate verify failed: %s", what,
                 X509_verify_cert_error_string(v));
        return TLS_FAILED;
    }
    char ctx[64];
    snprintf(ctx, sizeof ctx, "%s", what);
    ssl_reason(why, ctx);
    return TLS_FAILED;
}

int tls_client_handshake(SSL *ssl, short *want, int *err, char *why)
{
    errno = 0;
    ERR_clear_error();
    int r = SSL_do_handshake(ssl);
    if (r == 1)
        return 1;
    r = outcome(ssl, r, want, err, why, "TLS handshake failed");
    if (r == TLS_EOF || r == TLS_TRUNCATED) {
        snprintf(why, TLS_WHY_LEN, "TLS handshake failed: the server closed the connection");
        r = TLS_FAILED;
    }
    return r;
}

int tls_client_handshake_wait(SSL *ssl, int fd, int timeout_ms, char *why)
{
    for (;;) {
        short want = POLLIN;
        int err;
        int r = tls_client_handshake(ssl, &want, &err, why);
        if (r != TLS_WANT)
            return r;
        struct pollfd p = {.fd = fd, .events = want};
        int n = poll(&p, 1, timeout_ms); /* each wait bounded: a slow trickle is the caller's -w */
        if (n < 0 && errno != EINTR) {
            snprintf(why, TLS_WHY_LEN, "TLS handshake failed: poll: %s", strerror(errno));
            return TLS_FAILED;
        }
        if (n == 0) {
            snprintf(why, TLS_WHY_LEN, "TLS handshake: no answer within %d ms", timeout_ms);
            return 0;
        }
    }
}

ssize_t tls_client_read(SSL *ssl, void *buf, size_t len, short *want, int *err, char *why)
{
    size_t got = 0;
    errno = 0;
    ERR_clear_error();
    int r = SSL_read_ex(ssl, buf, len, &got);
    if (r == 1)
        return (ssize_t)got;
    return outcome(ssl, r, want, err, why, "TLS");
}

ssize_t tls_client_write(SSL *ssl, const void *buf, size_t len, short *want, int *err,
                         char *why)
{
    size_t put = 0;
    errno = 0;
    ERR_clear_error();
    int r = SSL_write_ex(ssl, buf, len, &put);
    if (r == 1)
        return (ssize_t)put;
    r = outcome(ssl, r, want, err, why, "TLS");
    if (r == TLS_EOF || r == TLS_TRUNCATED) { /* no more writing after the peer's end */
        *err = EPIPE;
        r = TLS_FAILED;
    }
    return r;
}

int tls_client_close_notify(SSL *ssl, short *want, int *err, char *why)
{
    errno = 0;
    ERR_clear_error();
    int r = SSL_shutdown(ssl); /* 0: ours is sent, the peer's not yet come */
    if (r >= 0)
        return 1;
    r = outcome(ssl, r, want, err, why, "TLS close_notify");
    return r == TLS_WANT ? TLS_WANT : TLS_FAILED;
}

void tls_client_describe(SSL *ssl, char *buf, size_t len)
{
    const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
    snprintf(buf, len, "%s %s%s", SSL_get_version(ssl), c ? SSL_CIPHER_get_name(c) : "?",
             SSL_session_reused(ssl) ? " (resumed)" : "");
}
