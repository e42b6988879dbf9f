/*
 * The TLS layer's input path (src/tls/session.c through
 * src/stream/layers.c): ciphertext handed in by the model in runs of any
 * size, fed to OpenSSL through our BIO, the plaintext framed for the
 * service, and TLS's answers queued on the connection's output.
 *
 * Two modes, by the first byte:
 *  - raw: the rest is what a peer sent, in runs whose sizes the input
 *    picks; only the sanitizers judge (a failure must be a clean -EPROTO);
 *  - dialogue: a real client (OpenSSL, memory BIOs) handshakes and sends
 *    lines to the echo service; the input picks how each flight of the
 *    client's bytes is cut into runs, and may flip one byte of it.
 *    Properties: untouched, the handshake completes and every line comes
 *    back exactly; touched, the server fails cleanly (-EPROTO) or the
 *    damage was somewhere harmless, and nothing is echoed that was not
 *    sent.
 *
 * The server's key and certificate are made once, at start (EC P-256,
 * self-signed), into temporary files the context reads like serve does.
 */
#include "fuzz_util.h"
#include "internal.h"
#include "stream/layers.h"
#include "tls/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static iop_server srv;
static SSL_CTX *client_ctx;

static void discard_report(void *ctx, enum iop_log level, const char *line)
{
    (void)ctx, (void)level, (void)line;
}

static void write_pem(char *path, EVP_PKEY *key, X509 *cert)
{
    int fd = mkstemp(path);
    FUZZ_CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    FUZZ_CHECK(f);
    FUZZ_CHECK(key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
                   : PEM_write_X509(f, cert));
    fclose(f);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    FUZZ_CHECK(key && cert);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
    X509_set_pubkey(cert, key);
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost",
                               -1, -1, 0);
    X509_set_issuer_name(cert, name);
    FUZZ_CHECK(X509_sign(cert, key, EVP_sha256()));
    char cert_path[] = "/tmp/ioplex-fuzz-cert.XXXXXX", key_path[] = "/tmp/ioplex-fuzz-key.XXXXXX";
    write_pem(cert_path, NULL, cert);
    write_pem(key_path, key, NULL);
    X509_free(cert);
    EVP_PKEY_free(key);

    iop_server_config_init(&srv.cfg);
    srv.cfg.report = discard_report;
    srv.cfg.report_debug = 1;
    srv.cfg.tls_cert = cert_path;
    srv.cfg.tls_key = key_path;
    srv.svc = iop_service_find("echo");
    srv.framing = IOP_FRAMING_LINE;
    srv.max_frame = 1024;
    char err[IOP_ERR_LEN];
    FUZZ_CHECK(iop__tls_server_new(&srv.tls, &srv.cfg, err) == 0);
    unlink(cert_path);
    unlink(key_path);
    client_ctx = SSL_CTX_new(TLS_client_method());
    FUZZ_CHECK(client_ctx);
    return 0;
}

/* Feed p[0, n) in runs whose sizes come from the input. */
static int feed(iop_conn *c, struct fuzz_in *in, const char *p, size_t n)
{
    while (n > 0) {
        size_t k = 1 + fuzz_byte(in) % 64 * (fuzz_byte(in) % 4 + 1);
        if (k > n)
            k = n;
        int r = iop__conn_input(c, p, k);
        FUZZ_CHECK(r == 0 || r == -EPROTO || r == -EMSGSIZE);
        if (r != 0)
            return r;
        p += k;
        n -= k;
    }
    return 0;
}

/* What the server queued for the peer, taken off its queue. */
static size_t take_output(iop_conn *c, char *buf, size_t cap)
{
    size_t n = 0;
    struct iovec v[16];
    int k;
    while ((k = iop__outq_iov(&c->out, v, 16)) > 0) {
        size_t took = 0;
        for (int i = 0; i < k; i++) {
            size_t m = v[i].iov_len < cap - n ? v[i].iov_len : cap - n;
            memcpy(buf + n, v[i].iov_base, m);
            n += m;
            took += v[i].iov_len;
        }
        iop__outq_consume(&c->out, took);
    }
    return n;
}

static void dialogue(iop_conn *c, struct fuzz_in *in)
{
    SSL *cl = SSL_new(client_ctx);
    BIO *to_server = BIO_new(BIO_s_mem()), *to_client = BIO_new(BIO_s_mem());
    FUZZ_CHECK(cl && to_server && to_client);
    SSL_set_bio(cl, to_client, to_server);
    SSL_set_connect_state(cl);
    int flip_at = fuzz_byte(in) < 32 ? (int)fuzz_u16(in) : -1; /* one byte damaged, or none */
    static char buf[1 << 16], echoed[4096];
    size_t sent = 0, got = 0, total = 0;
    static const char line[] = "hello over tls\n";
    int failed = 0;
    for (int round = 0; round < 8 && !failed; round++) {
        if (SSL_is_init_finished(cl) && sent < 3 * (sizeof line - 1)) {
            size_t w;
            FUZZ_CHECK(SSL_write_ex(cl, line, sizeof line - 1, &w) == 1);
            sent += w;
        } else {
            SSL_do_handshake(cl);
        }
        int n = BIO_read(to_server, buf, sizeof buf);
        if (n > 0) {
            if (flip_at >= (int)total && flip_at < (int)total + n)
                buf[flip_at - (int)total] ^= (char)(1 + fuzz_byte(in) % 255);
            total += (size_t)n;
            failed = feed(c, in, buf, (size_t)n) != 0;
        }
        size_t m = take_output(c, buf, sizeof buf);
        if (m > 0)
            BIO_write(to_client, buf, (int)m);
        size_t r;
        while (SSL_is_init_finished(cl) &&
               SSL_read_ex(cl, echoed + got, sizeof echoed - got, &r) == 1)
            got += r;
        ERR_clear_error();
    }
    FUZZ_CHECK(got <= sent);
    for (size_t i = 0; i < got; i++) /* nothing echoed that was not sent */
        FUZZ_CHECK(echoed[i] == line[i % (sizeof line - 1)]);
    if (flip_at < 0 || flip_at >= (int)total) { /* untouched: all of it back */
        FUZZ_CHECK(!failed);
        FUZZ_CHECK(iop__tls_established(c->tls));
        FUZZ_CHECK(got == sent && sent > 0);
    }
    SSL_free(cl);
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size)
{
    struct fuzz_in in = {bytes, size};
    int mode = fuzz_byte(&in) & 1;
    iop_conn c;
    iop__conn_init(&c, &srv, -1, NULL, 0);
    FUZZ_CHECK(iop__conn_start(&c) == 0);
    if (mode == 0) {
        /* Runs of the rest: sizes from the front, the bytes from the back. */
        size_t n = in.n / 2;
        struct fuzz_in sizes = {in.p, n};
        if (feed(&c, &sizes, (const char *)in.p + n, in.n - n) == 0)
            iop__conn_input_end(&c);
    } else {
        dialogue(&c, &in);
    }
    iop__conn_last_words(&c);
    iop__conn_release(&c);
    return 0;
}
