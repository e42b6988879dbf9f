/*
 * The server's TLS context: the certificate, key and CA files read into an
 * SSL_CTX, and replaced whole when a reload is asked for.
 *
 * The policy, as nginx's and HAProxy's defaults: TLS 1.2 and 1.3 (1.3
 * preferred, OpenSSL's own order), no renegotiation (a client-driven
 * CPU cost and a history of bugs), no compression (CRIME), session
 * tickets on, buffers released while a connection is idle (an idle TLS
 * connection then costs about what a plain one does).
 */
#define _GNU_SOURCE
#include "tls/tls.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct iop__tls {
    pthread_mutex_t lock;
    SSL_CTX *ctx;             /* under lock: a reload replaces it */
    atomic_int reload_wanted; /* set by iop_server_reload_tls() */
    int follower;             /* a prefork child: its parent reports */
    char *cert, *key, *ca;    /* the files, read again at a reload */
    int verify_client;
};

/* The reason for OpenSSL's failure, in words; the queue emptied. The
 * first error queued is the cause; the last is only where it surfaced
 * ("PEM lib"). A file without the object wanted says so in OpenSSL's
 * terms ("no start line", the decoder's "unsupported"): `none` instead. */
static const char *ssl_reason(const char *none)
{
    unsigned long e = ERR_peek_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    if ((ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) ||
        (ERR_GET_LIB(e) == ERR_LIB_OSSL_DECODER && ERR_GET_REASON(e) == ERR_R_UNSUPPORTED))
        r = none;
    ERR_clear_error();
    return r ? r : "unknown error";
}

/* The file must be there, readable and a file: errno's words say why not
 * better than OpenSSL's "system lib" or "PEM lib". */
static int readable(const char *what, const char *path, char *err)
{
    FILE *f = fopen(path, "r");
    struct stat st;
    int e = !f ? errno : fstat(fileno(f), &st) != 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
    if (f)
        fclose(f);
    if (e != 0) {
        snprintf(err, IOP_ERR_LEN, "TLS %s %s: %s", what, path, strerror(e));
        return -EINVAL; /* the configuration is wrong: a usage error */
    }
    return 0;
}

static SSL_CTX *make_ctx(const struct iop__tls *t, char *err)
{
    if (readable("certificate", t->cert, err) != 0 || readable("key", t->key, err) != 0 ||
        (t->ca && readable("CA file", t->ca, err) != 0))
        return NULL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, IOP_ERR_LEN, "TLS: %s", ssl_reason("out of memory"));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* Resumption (tickets, and the cache for a client certificate) needs
     * an id for this context. */
    static const unsigned char sid[] = "ioplex";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1);
    if (SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1) {
        snprintf(err, IOP_ERR_LEN, "TLS certificate %s: %s", t->cert,
                 ssl_reason("no certificate in it (PEM)"));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, t->key, SSL_FILETYPE_PEM) != 1 &&
        ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH) {
        snprintf(err, IOP_ERR_LEN, "TLS key %s: %s", t->key,
                 ssl_reason("no private key in it (PEM)"));
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, IOP_ERR_LEN, "TLS key %s does not match the certificate %s", t->key, t->cert);
        ERR_clear_error();
        goto fail;
    }
    if (t->ca) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->ca);
        if (SSL_CTX_load_verify_locations(ctx, t->ca, NULL) != 1 || !names) {
            snprintf(err, IOP_ERR_LEN, "TLS CA file %s: %s", t->ca,
                     ssl_reason("no certificate in it (PEM)"));
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
    }
    if (t->verify_client)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int iop__tls_server_new(struct iop__tls **out, const struct iop_server_config *cfg, char *err)
{
    *out = NULL;
    if (!cfg->tls_cert)
        return 0;
    if (cfg->tls_verify_client && !cfg->tls_ca) {
        snprintf(err, IOP_ERR_LEN, "TLS: verifying clients needs the CAs to verify them with (a CA file)");
        return -EINVAL;
    }
    struct iop__tls *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->cert = strdup(cfg->tls_cert);
    t->key = strdup(cfg->tls_key ? cfg->tls_key : cfg->tls_cert);
    t->ca = cfg->tls_ca ? strdup(cfg->tls_ca) : NULL;
    t->verify_client = cfg->tls_verify_client;
    if (!t->cert || !t->key || (cfg->tls_ca && !t->ca)) {
        iop__tls_server_free(t);
        return -ENOMEM;
    }
    pthread_mutex_init(&t->lock, NULL);
    if (!(t->ctx = make_ctx(t, err))) {
        iop__tls_server_free(t);
        return -EINVAL;
    }
    *out = t;
    return 0;
}

void iop__tls_server_free(struct iop__tls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    if (t->ctx)
        pthread_mutex_destroy(&t->lock);
    free(t->cert);
    free(t->key);
    free(t->ca);
    free(t);
}

void iop_server_reload_tls(iop_server *s)
{
    if (s->tls) /* async-signal-safe: a flag, read before the next connection */
        atomic_store(&s->tls->reload_wanted, 1);
}

int iop__tls_server_reload_now(iop_server *s)
{
    struct iop__tls *t = s->tls;
    if (!t || !atomic_load_explicit(&t->reload_wanted, memory_order_relaxed) ||
        !atomic_exchange(&t->reload_wanted, 0))
        return 0;
    char err[IOP_ERR_LEN];
    SSL_CTX *ctx = make_ctx(t, err);
    if (!ctx) {
        if (!t->follower)
            iop_report(s, IOP_LOG_ERROR,
                       "TLS reload failed, keeping the certificate in use: %s", err);
        return 0;
    }
    pthread_mutex_lock(&t->lock);
    SSL_CTX *old = t->ctx;
    t->ctx = ctx;
    pthread_mutex_unlock(&t->lock);
    SSL_CTX_free(old); /* its connections hold references of their own */
    if (!t->follower)
        iop_report(s, IOP_LOG_INFO, "TLS: reloaded %s", t->cert);
    return 1;
}

void iop__tls_server_check_reload(iop_server *s) { iop__tls_server_reload_now(s); }

void iop__tls_thread_done(iop_server *s)
{
    if (s->tls)
        OPENSSL_thread_stop();
}

void iop__tls_server_follow(iop_server *s)
{
    if (s->tls)
        s->tls->follower = 1;
}

SSL *iop__tls_server_ssl(struct iop__tls *t)
{
    pthread_mutex_lock(&t->lock);
    SSL *ssl = SSL_new(t->ctx);
    pthread_mutex_unlock(&t->lock);
    return ssl;
}
