/*
 * TLS configuration, once (serve --tls-*):
 *   bad_files    a missing certificate or key, one that is not PEM, a
 *                directory, a certificate file without the key it is
 *                taken from, a key that does not match the certificate,
 *                verifying clients without a CA file: exit 2 and one line
 *                naming the file and saying why in words
 *   bad_usage    --tls-cert over UDP (no DTLS), --tls-key without
 *                --tls-cert: exit 2, one line
 *   root_key     a key only root may read, with --user nobody: read before
 *                the drop, so the server serves TLS; a reload after the
 *                drop cannot read it, keeps the old one and says why
 *   flood        --max-conns counts handshakes: 4 peers that connect and
 *                never handshake hold every slot, so a TLS client is
 *                turned away (one "refusing" line); once they go, it is
 *                served (epoll and thread)
 *   reload       SIGHUP, under epoll, thread, fork, prefork and pool: new
 *                connections get the new certificate, one open before
 *                keeps going; a reload of a broken file keeps the old one
 *                with one line
 */
#define _GNU_SOURCE
#include "harness.h"
#include "harness_tls.h"
#include "tool.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/x509.h>

#define IO_MS HARNESS_IO_TIMEOUT_MS

static int teardown(void **state) { return harness_teardown(state); }


static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "r"), *out = fopen(to, "w");
    assert_non_null(in);
    assert_non_null(out);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void bad_files(void **state)
{
    (void)state;
    char junk[512];
    snprintf(junk, sizeof junk, "%s/junk.pem", tls_certs());
    write_file(junk, "not a certificate\n");
    struct tool_result *r = malloc(sizeof *r);
    assert_non_null(r);

    tool_run(r, (const char *[]){"serve", "--tls-cert", "/nonexistent/cert.pem", "127.0.0.1",
                                 "0", NULL}, IO_MS);
    tool_expect_error("missing cert", r, 2, "ioplex serve: ", "/nonexistent/cert.pem",
                      "No such file", NULL);
    tool_run(r, (const char *[]){"serve", "--tls-cert", tls_cert("server.pem"), "--tls-key",
                                 "/nonexistent/key.pem", "127.0.0.1", "0", NULL}, IO_MS);
    tool_expect_error("missing key", r, 2, "ioplex serve: ", "/nonexistent/key.pem", NULL);
    tool_run(r, (const char *[]){"serve", "--tls-cert", junk, "--tls-key", tls_cert("server.key"),
                                 "127.0.0.1", "0", NULL}, IO_MS);
    tool_expect_error("junk cert", r, 2, "ioplex serve: ", junk, "no certificate in it", NULL);
    tool_run(r, (const char *[]){"serve", "--tls-cert", tls_cert("server.pem"), "127.0.0.1", "0",
                                 NULL}, IO_MS);
    tool_expect_error("no key in the cert file", r, 2, "ioplex serve: ", "server.pem",
                      "no private key in it", NULL);
    tool_run(r, (const char *[]){"serve", "--tls-cert", tls_certs(), "--tls-key",
                                 tls_cert("server.key"), "127.0.0.1", "0", NULL}, IO_MS);
    tool_expect_error("a directory", r, 2, "ioplex serve: ", "Is a directory", NULL);
    tool_run(r, (const char *[]){"serve", "--tls-cert", tls_cert("server.pem"), "--tls-key",
                                 tls_cert("other.key"), "127.0.0.1", "0", NULL}, IO_MS);
    tool_expect_error("mismatched key", r, 2, "ioplex serve: ", "other.key",
                      "does not match", NULL);
    tool_run(r, (const char *[]){"serve", "--tls-cert", tls_cert("server.pem"), "--tls-key",
                                 tls_cert("server.key"), "--tls-verify-client", "127.0.0.1", "0",
                                 NULL}, IO_MS);
    tool_expect_error("verify without CA", r, 2, "ioplex serve: ", "CA", NULL);
    free(r);
}

static void bad_usage(void **state)
{
    (void)state;
    struct tool_result *r = malloc(sizeof *r);
    assert_non_null(r);
    tool_run(r, (const char *[]){"serve", "-u", "--tls-cert", tls_cert("server.pem"), "--tls-key",
                                 tls_cert("server.key"), "127.0.0.1", "0", NULL}, IO_MS);
    tool_expect_error("TLS over UDP", r, 2, "ioplex serve: ", "stream", NULL);
    tool_run(r, (const char *[]){"serve", "--tls-key", tls_cert("server.key"), "127.0.0.1", "0",
                                 NULL}, IO_MS);
    tool_expect_error("key without cert", r, 2, "ioplex serve: ", "--tls-cert", NULL);
    free(r);
}

/* The issuer's common name of the certificate the server shows now. */
static void issuer_cn(struct server *s, char *out, size_t cap, SSL **keep, int *keep_fd)
{
    int fd = client_connect(s);
    CHECK(s, fd >= 0);
    char why[256];
    SSL *ssl = tls_client(fd, NULL, IO_MS, why, sizeof why);
    if (!ssl) {
        server_dump(s);
        fail_msg("handshake: %s", why);
    }
    X509 *x = SSL_get1_peer_certificate(ssl);
    CHECK(s, x != NULL);
    X509_NAME_get_text_by_NID(X509_get_issuer_name(x), NID_commonName, out, (int)cap);
    X509_free(x);
    if (keep) {
        *keep = ssl;
        *keep_fd = fd;
        return;
    }
    SSL_shutdown(ssl);
    tls_client_free(ssl);
    client_close(fd);
}

/* SIGHUP to the server; wait for the line it causes (at the next accept:
 * connections are made to get there), and for new connections to be
 * shown the certificate issued by `want` (a prefork parent passes the
 * reload on to its children: it reaches them a moment later). */
static void hup(struct server *s, const char *line, const char *want, const char *model)
{
    int before = server_stderr_count(s, line);
    CHECK(s, kill(s->pid, SIGHUP) == 0);
    long long until = now_ms() + IO_MS;
    char cn[128];
    do {
        issuer_cn(s, cn, sizeof cn, NULL, NULL);
        server_pump(s);
    } while ((server_stderr_count(s, line) == before || strcmp(cn, want) != 0) &&
             now_ms() < until);
    CHECK(s, server_stderr_count(s, line) == before + 1);
    for (int i = 0; i < 8; i++) { /* and it stays so */
        issuer_cn(s, cn, sizeof cn, NULL, NULL);
        if (strcmp(cn, want) != 0) {
            server_dump(s);
            fail_msg("%s: after '%s', a connection shows a certificate by '%s', not '%s'",
                     model, line, cn, want);
        }
    }
}

static void reload_under(const char *model)
{
    char live_cert[512], live_key[512];
    snprintf(live_cert, sizeof live_cert, "%s/live-%s.pem", tls_certs(), model);
    snprintf(live_key, sizeof live_key, "%s/live-%s.key", tls_certs(), model);
    copy_file(tls_cert("server.pem"), live_cert);
    copy_file(tls_cert("server.key"), live_key);
    struct server s;
    if (server_startl(&s, "-m", model, "-S", "echo", "--tls-cert", live_cert, "--tls-key",
                      live_key, "127.0.0.1", "0", NULL) != 0)
        fail_msg("cannot start a TLS server under %s", model);
    char cn[128];
    SSL *open_before;
    int open_fd;
    issuer_cn(&s, cn, sizeof cn, &open_before, &open_fd);
    CHECK(&s, strcmp(cn, "ioplex test CA") == 0);

    copy_file(tls_cert("other.pem"), live_cert); /* self-signed: its own issuer */
    copy_file(tls_cert("other.key"), live_key);
    hup(&s, "TLS: reloaded", "localhost", model);
    char buf[8];
    CHECK(&s, tls_send_all(open_before, "old\n", 4) == 0);
    CHECK(&s, tls_recv_exact(open_before, buf, 4, IO_MS) == 4 && memcmp(buf, "old\n", 4) == 0);

    write_file(live_cert, "broken\n");
    hup(&s, "TLS reload failed", "localhost", model);
    SSL_shutdown(open_before);
    tls_client_free(open_before);
    client_close(open_fd);
    server_stop_clean(&s);
}

static void reload(void **state)
{
    (void)state;
    /* prefork with two children, one holding the connection kept open:
     * each child reads the files again at its next accept after the
     * parent's reload, so with more, one that has not accepted since
     * would read the broken file of the second step (docs/models.md). */
    const char *models[] = {"epoll", "thread", "fork", "prefork:2", "pool"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
        reload_under(models[i]);
}

static void flood_under(const char *model)
{
    struct server s;
    if (server_startl(&s, "-m", model, "-S", "echo", "--max-conns", "4", "--tls-cert",
                      tls_cert("server.pem"), "--tls-key", tls_cert("server.key"), "127.0.0.1", "0",
                      NULL) != 0)
        fail_msg("cannot start a TLS server under %s", model);
    int idle[4];
    for (int i = 0; i < 4; i++) {
        idle[i] = client_connect(&s);
        CHECK(&s, idle[i] >= 0);
    }
    /* Taken (or refused) in order: once the 4 are in, the next is over. */
    int fd = client_connect(&s);
    char why[256];
    SSL *ssl = tls_client(fd, NULL, IO_MS, why, sizeof why);
    CHECK(&s, ssl == NULL);
    CHECK(&s, server_wait_stderr(&s, "refusing", IO_MS));
    client_close(fd);
    for (int i = 0; i < 4; i++)
        client_close(idle[i]);
    /* The slots come free as the server sees the closes: bounded retries. */
    long long until = now_ms() + IO_MS;
    do {
        fd = client_connect(&s);
        ssl = tls_client(fd, NULL, IO_MS, why, sizeof why);
        if (!ssl)
            client_close(fd);
    } while (!ssl && now_ms() < until);
    CHECK(&s, ssl != NULL);
    char buf[4];
    CHECK(&s, tls_send_all(ssl, "ok\n", 3) == 0);
    CHECK(&s, tls_recv_exact(ssl, buf, 3, IO_MS) == 3 && memcmp(buf, "ok\n", 3) == 0);
    SSL_shutdown(ssl);
    tls_client_free(ssl);
    client_close(fd);
    server_stop_clean(&s);
}

static void flood(void **state)
{
    (void)state;
    flood_under("epoll");
    flood_under("thread");
}

static void root_key(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        fprintf(stderr, "test_tls_config: root_key skipped: needs root\n");
        skip();
    }
    char dir[512], key[600];
    snprintf(dir, sizeof dir, "%s/rootonly", tls_certs());
    mkdir(dir, 0700);
    snprintf(key, sizeof key, "%s/server.key", dir);
    copy_file(tls_cert("server.key"), key);
    assert_int_equal(chmod(key, 0600), 0);
    struct server s;
    if (server_startl(&s, "--user", "nobody", "-S", "echo", "--tls-cert", tls_cert("server.pem"),
                      "--tls-key", key, "127.0.0.1", "0", NULL) != 0)
        fail_msg("cannot start as nobody with a key only root reads");
    char cn[128];
    issuer_cn(&s, cn, sizeof cn, NULL, NULL);
    CHECK(&s, strcmp(cn, "ioplex test CA") == 0);
    hup(&s, "TLS reload failed", "ioplex test CA", "epoll"); /* nobody cannot read it */
    CHECK(&s, server_wait_stderr(&s, "Permission denied", IO_MS));
    server_stop_clean(&s);
}

int main(void)
{
    if (!tls_certs())
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(bad_files, teardown),
        cmocka_unit_test_teardown(bad_usage, teardown),
        cmocka_unit_test_teardown(flood, teardown),
        cmocka_unit_test_teardown(root_key, teardown),
        cmocka_unit_test_teardown(reload, teardown),
    };
    return cmocka_run_group_tests_name("test_tls_config", tests, NULL, NULL);
}
