/*
 * TLS under every stream model (serve --tls-cert/--tls-key), the server's
 * side. Run as `model_tls MODEL`; the event models run every case twice,
 * as w1 (one loop) and w2 (-w 2). Certificates: tests/tls/make-certs.sh.
 *
 *   exchange_tcp4/6, exchange_unix
 *                    64 KiB of random bytes through `-S echo -F raw`,
 *                    verified against the test CA; the client's
 *                    close_notify is answered with the server's
 *   services         ack (the course's exchange, then the server's
 *                    close_notify), daytime (sent at on_open), chargen
 *                    (a producer: 256 KiB of its stream, byte-exact)
 *   plaintext_client a plaintext peer on the TLS port is closed with one
 *                    "TLS handshake failed" line; a TLS client connected
 *                    before it goes on unharmed
 *   stalled          a handshake begun and never finished is closed by
 *                    --idle-timeout (1 s)
 *   truncated        a peer that closes without close_notify: -v says so
 *   mutual           --tls-ca --tls-verify-client: a client without a
 *                    certificate fails and is told why (the server's
 *                    "certificate required" alert), one with it is served,
 *                    and the -v open line names its subject
 */
#define _GNU_SOURCE
#include "harness.h"
#include "harness_cases.h"
#include "harness_tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define IO_MS HARNESS_IO_TIMEOUT_MS

static const char *model;
static unsigned seed;

struct variant {
    const char *name;
    const char *workers; /* -w N, or NULL */
};
static const struct variant w1 = {"w1", NULL}, w2 = {"w2", "2"};

/* Start SERVICE with the test certificate, and extra arguments. */
static void start(struct server *s, void **state, const char *transport, const char *service,
                  const char *const more[])
{
    const struct variant *v = *state;
    const char *extra[16] = {"--tls-cert", tls_cert("server.pem"), "--tls-key",
                             tls_cert("server.key")};
    int n = 4;
    if (v->workers) {
        extra[n++] = "-w";
        extra[n++] = v->workers;
    }
    for (int i = 0; more && more[i]; i++)
        extra[n++] = more[i];
    extra[n] = NULL;
    if (server_start_on(s, model, transport, service, extra) != 0)
        fail_msg("cannot start %s with TLS under %s (%s)", service, model, v->name);
}

static SSL *handshake(struct server *s, int fd, const struct tls_client_opts *o)
{
    char why[256];
    SSL *ssl = tls_client(fd, o, IO_MS, why, sizeof why);
    if (!ssl) {
        server_dump(s);
        fail_msg("TLS handshake with the server under %s: %s", model, why);
    }
    return ssl;
}

static struct tls_client_opts verified(void)
{
    struct tls_client_opts o = {.ca = tls_cert("ca.pem")};
    return o;
}

/* ---- exchanges ---------------------------------------------------------------------- */

static void exchange_on(void **state, const char *transport)
{
    if (strcmp(transport, "tcp6") == 0 && !have_ipv6_loopback())
        skip();
    struct server s;
    start(&s, state, transport, "echo", (const char *[]){"-F", "raw", NULL});
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    struct tls_client_opts o = verified();
    if (strcmp(transport, "unix") == 0)
        o.ca = NULL; /* no name to check on a Unix socket: any certificate */
    SSL *ssl = handshake(&s, fd, &o);
    enum { LEN = 64 * 1024 };
    char *out = malloc(LEN), *in = malloc(LEN);
    fill_random(out, LEN, &seed);
    /* In pieces no bigger than the server's buffers take, read as we go. */
    for (size_t off = 0; off < LEN; off += 8192) {
        CHECK(&s, tls_send_all(ssl, out + off, 8192) == 0);
        CHECK(&s, tls_recv_exact(ssl, in + off, 8192, IO_MS) == 8192);
    }
    CHECK(&s, memcmp(in, out, LEN) == 0);
    CHECK(&s, SSL_shutdown(ssl) >= 0); /* our close_notify */
    CHECK(&s, tls_expect_close_notify(ssl, IO_MS) == 1);
    tls_client_free(ssl);
    client_close(fd);
    free(out);
    free(in);
    server_stop_clean(&s);
}

static void exchange_tcp4(void **state) { exchange_on(state, "tcp4"); }
static void exchange_tcp6(void **state) { exchange_on(state, "tcp6"); }
static void exchange_unix(void **state) { exchange_on(state, "unix"); }

static void services(void **state)
{
    struct tls_client_opts o = verified();
    struct server s;
    char buf[512];

    start(&s, state, "tcp4", "ack", NULL);
    int fd = client_connect(&s);
    SSL *ssl = handshake(&s, fd, &o);
    CHECK(&s, tls_send_all(ssl, "hello\n", 6) == 0);
    static const char ack[] = "I got your message\n";
    CHECK(&s, tls_recv_exact(ssl, buf, sizeof ack - 1, IO_MS) == sizeof ack - 1);
    CHECK(&s, memcmp(buf, ack, sizeof ack - 1) == 0);
    CHECK(&s, tls_expect_close_notify(ssl, IO_MS) == 1); /* ack closes: cleanly */
    CHECK(&s, server_wait_output(&s, "Here is the message: hello", IO_MS));
    tls_client_free(ssl);
    client_close(fd);
    server_stop_clean(&s);

    start(&s, state, "tcp4", "daytime", NULL);
    fd = client_connect(&s);
    ssl = handshake(&s, fd, &o);
    ssize_t n = tls_recv_exact(ssl, buf, sizeof buf, IO_MS); /* to its close_notify */
    CHECK(&s, n > 10 && buf[n - 1] == '\n');
    tls_client_free(ssl);
    client_close(fd);
    server_stop_clean(&s);

    start(&s, state, "tcp4", "chargen", NULL);
    fd = client_connect(&s);
    ssl = handshake(&s, fd, &o);
    enum { LEN = 256 * 1024 };
    char *got = malloc(LEN);
    CHECK(&s, tls_recv_exact(ssl, got, LEN, IO_MS) == LEN);
    for (size_t i = 0; i < LEN; i++)
        if (got[i] != chargen_at(i))
            fail_msg("chargen over TLS under %s: wrong byte at %zu", model, i);
    free(got);
    tls_client_free(ssl);
    client_close(fd);
    server_stop_clean(&s);
}

/* ---- bad peers ---------------------------------------------------------------------- */

static void plaintext_client(void **state)
{
    struct tls_client_opts o = verified();
    struct server s;
    start(&s, state, "tcp4", "echo", NULL);
    /* iterative serves one client at a time: the TLS one comes after. */
    int one_at_a_time = strcmp(model, "iterative") == 0;
    int good = -1;
    SSL *ssl = NULL;
    if (!one_at_a_time) {
        good = client_connect(&s);
        ssl = handshake(&s, good, &o);
    }
    int bad = client_connect(&s);
    CHECK(&s, send_all(bad, "hello\n", 6) == 0);
    CHECK(&s, expect_eof(bad, IO_MS) == 1);
    CHECK(&s, server_wait_stderr(&s, "TLS handshake failed", IO_MS));
    if (one_at_a_time) {
        good = client_connect(&s);
        ssl = handshake(&s, good, &o);
    }
    CHECK(&s, tls_send_all(ssl, "still here\n", 11) == 0);
    char buf[16];
    CHECK(&s, tls_recv_exact(ssl, buf, 11, IO_MS) == 11 && memcmp(buf, "still here\n", 11) == 0);
    tls_client_free(ssl);
    client_close(good);
    client_close(bad);
    server_stop_clean(&s);
    CHECK(&s, server_stderr_count(&s, "TLS handshake failed") == 1);
}

static void stalled(void **state)
{
    struct server s;
    start(&s, state, "tcp4", "echo", (const char *[]){"--idle-timeout", "1", NULL});
    int fd = client_connect(&s);
    /* The first bytes of a ClientHello record, and nothing more. */
    CHECK(&s, send_all(fd, "\x16\x03\x01\x02", 4) == 0);
    CHECK(&s, expect_eof(fd, IO_MS) == 1);
    client_close(fd);
    server_stop_clean(&s);
}

static void truncated(void **state)
{
    struct tls_client_opts o = verified();
    struct server s;
    start(&s, state, "tcp4", "echo", (const char *[]){"-v", NULL});
    int fd = client_connect(&s);
    SSL *ssl = handshake(&s, fd, &o);
    CHECK(&s, tls_send_all(ssl, "x\n", 2) == 0);
    char buf[4];
    CHECK(&s, tls_recv_exact(ssl, buf, 2, IO_MS) == 2);
    tls_client_free(ssl); /* no SSL_shutdown: no close_notify */
    client_close(fd);
    CHECK(&s, server_wait_stderr(&s, "without TLS close_notify (truncated)", IO_MS));
    server_stop_clean(&s);
}

static void mutual(void **state)
{
    struct server s;
    start(&s, state, "tcp4", "echo",
          (const char *[]){"-v", "--tls-ca", tls_cert("ca.pem"), "--tls-verify-client", NULL});
    /* Without a certificate: refused (in TLS 1.3 the client may finish
     * first and learn it at its first read). */
    int fd = client_connect(&s);
    char why[256];
    struct tls_client_opts o = verified();
    SSL *ssl = tls_client(fd, &o, IO_MS, why, sizeof why);
    if (ssl) {
        char buf[4];
        tls_send_all(ssl, "x\n", 2);
        CHECK(&s, tls_recv_exact(ssl, buf, 2, IO_MS) < 2);
        snprintf(why, sizeof why, "%s", tls_read_error());
        tls_client_free(ssl);
    }
    client_close(fd);
    CHECK(&s, server_wait_stderr(&s, "TLS handshake failed", IO_MS));
    /* The server's alert said why, not a bare end of stream. */
    if (!strstr(why, "certificate required")) {
        server_dump(&s);
        fail_msg("under %s, a client without a certificate saw '%s'", model, why);
    }
    /* With one: served, and named. */
    o.cert = tls_cert("client.pem");
    o.key = tls_cert("client.key");
    fd = client_connect(&s);
    ssl = handshake(&s, fd, &o);
    char buf[4];
    CHECK(&s, tls_send_all(ssl, "y\n", 2) == 0);
    CHECK(&s, tls_recv_exact(ssl, buf, 2, IO_MS) == 2 && memcmp(buf, "y\n", 2) == 0);
    CHECK(&s, server_wait_stderr(&s, "TLS CN=alice,O=ioplex tests", IO_MS));
    SSL_shutdown(ssl);
    tls_client_free(ssl);
    client_close(fd);
    server_stop_clean(&s);
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        CMUnitTestFunction fn;
    } list[] = {
        {"exchange_tcp4", exchange_tcp4}, {"exchange_tcp6", exchange_tcp6},
        {"exchange_unix", exchange_unix}, {"services", services},
        {"plaintext_client", plaintext_client}, {"stalled", stalled},
        {"truncated", truncated}, {"mutual", mutual},
    };
    static struct harness_cases cases;
    model = harness_model_checked(argc, argv, NULL);
    seed = harness_seed();
    if (!tls_certs())
        return 1;
    /* Under valgrind (scripts/valgrind.sh) one loop only: the same code
     * on two loops would double a run that is slow enough already. */
    int two = harness_is_event_model(model) && !getenv("IOPLEX_VG_REAL");
    const struct variant *vs[] = {&w1, two ? &w2 : NULL};
    for (size_t v = 0; v < 2 && vs[v]; v++)
        for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
            harness_add_case(&cases, vs[v]->name, list[i].name, list[i].fn, (void *)vs[v]);
    return harness_run_cases(&cases, "model_tls", model);
}
