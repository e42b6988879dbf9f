/*
 * ioplex connect --tls against other TLS servers and against bad
 * certificates:
 *   - openssl s_server, ncat --ssl -l and socat OPENSSL-LISTEN: 1 MiB of
 *     random bytes through, byte-exact, each way (socat: an echo);
 *   - ioplex serve with an expired certificate, one for another name, a
 *     self-signed one, and a good one with no CA given (the system store
 *     does not know the test CA): one line with the reason, exit 7;
 *     --insecure gets through all of them;
 *   - --sni: the name is sent (s_server picks its second certificate by
 *     it) and is the name checked;
 *   - mutual TLS against serve --tls-verify-client, with and without
 *     --tls-cert/--tls-key;
 *   - the TLS options' usage errors.
 * The certificates are made at test time (tests/tls/make-certs.sh).
 */
#define _GNU_SOURCE
#include "harness.h"
#include "tls_peers.h"
#include "tool.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define MIB (1u << 20)
#define RUN_MS 30000
#define EXIT_TLS 7

static char sent[MIB];
static char got[2 * MIB];
static unsigned seed;

static int teardown(void **state) { return harness_teardown(state); }

/* make setup installs every peer: one missing is a failure, not a skip. */
#define REQUIRE(tool)                                                          \
    do {                                                                       \
        if (!tls_have(tool))                                                   \
            fail_msg("%s is not installed (make setup installs it)", tool);    \
    } while (0)

static const char *quoted(const char *s)
{
    static char ring[8][700];
    static unsigned next;
    char *b = ring[next++ % 8];
    snprintf(b, sizeof ring[0], "'%s'", s);
    return b;
}

/* `ioplex connect ARGS...` (NULL-terminated) with stdin fed `in`; stdout
 * into got[]. Returns its exit code; err holds its stderr. */
static int connect_run(const char *in, size_t inlen, size_t *outlen, char *err, size_t errcap,
                       ...)
{
    const char *argv[32] = {ioplex_bin(), "connect"};
    size_t n = 2;
    va_list ap;
    va_start(ap, errcap);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < 31)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    return run_cmd(argv, in, inlen, got, sizeof got, outlen, err, errcap, RUN_MS);
}

/* Poll a file until it holds `len` bytes (bounded); its length then. */
static ssize_t wait_file(const char *path, size_t len, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    struct stat st;
    for (;;) {
        if (stat(path, &st) == 0 && (size_t)st.st_size >= len)
            break;
        if (now_ms() >= end)
            break;
        sleep_ms(20);
    }
    return tls_read_file(path, got, sizeof got);
}

static void expect_same(const char *what, ssize_t n, const char *err)
{
    if (n != (ssize_t)MIB || memcmp(got, sent, MIB) != 0) {
        fprintf(stderr, "--- %s: stderr: %s\n", what, err ? err : "");
        fail_msg("%s: %zd bytes arrived, %s", what, n,
                 n == (ssize_t)MIB ? "not the bytes sent" : "not 1 MiB");
    }
}

/*
 * connect with stdin held open until `len` bytes have come out of it: a
 * server that ends the session at our close_notify (s_server, ncat) must
 * have said everything first. Returns its exit code; its stderr in err.
 */
static int connect_until(const char *port, size_t len, char *err, size_t errcap)
{
    char fifo[512], out[600], cmd[2048];
    snprintf(fifo, sizeof fifo, "%s/connect.%d.in", harness_tmpdir(), (int)(now_ms() % 100000));
    snprintf(out, sizeof out, "%s.out", fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    snprintf(cmd, sizeof cmd, "exec %s connect --tls --tls-ca %s 127.0.0.1 %s < %s > %s",
             quoted(ioplex_bin()), quoted(tls_cert("ca.pem")), port, quoted(fifo), quoted(out));
    pid_t pid = tls_peer_start(cmd);
    int w = open(fifo, O_WRONLY | O_CLOEXEC); /* the shell opens its end at once */
    assert_true(w >= 0);
    ssize_t n = wait_file(out, len, RUN_MS);
    close(w); /* stdin's end: close_notify */
    int code = tls_peer_wait(pid, RUN_MS);
    snprintf(err, errcap, "%s", tls_peer_stderr(pid));
    n = tls_read_file(out, got, sizeof got);
    expect_same("what the server sent", n, err);
    return code;
}

static pid_t start_peer(const char *cmd, unsigned port)
{
    pid_t pid = tls_peer_start(cmd);
    if (!tls_wait_listening(port, 10000))
        fail_msg("the peer did not listen on port %u: %s\n(%s)", port, cmd,
                 tls_peer_stderr(pid));
    return pid;
}

/* ---- other servers -------------------------------------------------------- */

static void test_s_server(void **state)
{
    (void)state;
    REQUIRE("openssl");
    tls_random_file("sserver.in", sent, MIB, &seed);
    char err[4096], cmd[2048], out[512], port[16];
    size_t outlen;

    /* connect -> s_server: what it prints is what it received. */
    unsigned p = harness_free_port(SOCK_STREAM);
    snprintf(port, sizeof port, "%u", p);
    snprintf(out, sizeof out, "%s/sserver.out", harness_tmpdir());
    snprintf(cmd, sizeof cmd, "sleep 60 | exec timeout 60 openssl s_server -quiet -naccept 1 "
             "-accept 127.0.0.1:%u -cert %s -key %s > %s", p, quoted(tls_cert("server.pem")),
             quoted(tls_cert("server.key")), quoted(out));
    pid_t peer = start_peer(cmd, p);
    int code = connect_run(sent, MIB, &outlen, err, sizeof err, "--tls", "--tls-ca",
                           tls_cert("ca.pem"), "127.0.0.1", port, NULL);
    if (code != 0)
        fail_msg("connect to s_server: exit %d: %s", code, err);
    expect_same("what s_server received", wait_file(out, MIB, 10000), err);
    tls_peer_wait(peer, 0); /* its stdin's sleep */

    /* s_server -> connect: s_server -WWW serves the file (its sending
     * from stdin stalls now and then after one record, connect or not). */
    p = harness_free_port(SOCK_STREAM);
    snprintf(port, sizeof port, "%u", p);
    snprintf(cmd, sizeof cmd, "cd %s && exec timeout 60 openssl s_server -quiet -naccept 1 "
             "-WWW -accept 127.0.0.1:%u -cert %s -key %s", quoted(harness_tmpdir()), p,
             quoted(tls_cert("server.pem")), quoted(tls_cert("server.key")));
    peer = start_peer(cmd, p);
    static const char get[] = "GET /sserver.in HTTP/1.0\r\n\r\n";
    code = connect_run(get, sizeof get - 1, &outlen, err, sizeof err, "--tls", "--tls-ca",
                       tls_cert("ca.pem"), "127.0.0.1", port, NULL);
    if (code != 0 || !strstr(got, "HTTP/1.0 200 ok\r\n"))
        fail_msg("connect from s_server: exit %d: %s", code, err);
    const char *body = strstr(got, "\r\n\r\n");
    assert_non_null(body);
    body += 4;
    if ((size_t)(got + outlen - body) != MIB || memcmp(body, sent, MIB) != 0)
        fail_msg("from s_server: %zu bytes of body, or not the file's", (size_t)(got + outlen - body));
    tls_peer_wait(peer, 10000);
}

static void test_ncat(void **state)
{
    (void)state;
    REQUIRE("ncat");
    const char *file = tls_random_file("ncat.in", sent, MIB, &seed);
    char err[4096], cmd[2048], out[512], port[16];
    size_t outlen;

    unsigned p = harness_free_port(SOCK_STREAM);
    snprintf(port, sizeof port, "%u", p);
    snprintf(out, sizeof out, "%s/ncat.out", harness_tmpdir());
    snprintf(cmd, sizeof cmd, "sleep 60 | exec timeout 60 ncat --ssl --ssl-cert %s "
             "--ssl-key %s -l 127.0.0.1 %u > %s", quoted(tls_cert("server.pem")),
             quoted(tls_cert("server.key")), p, quoted(out));
    pid_t peer = start_peer(cmd, p);
    int code = connect_run(sent, MIB, &outlen, err, sizeof err, "--tls", "--tls-ca",
                           tls_cert("ca.pem"), "127.0.0.1", port, NULL);
    if (code != 0)
        fail_msg("connect to ncat: exit %d: %s", code, err);
    expect_same("what ncat received", wait_file(out, MIB, 10000), err);
    tls_peer_wait(peer, 0);

    p = harness_free_port(SOCK_STREAM);
    snprintf(port, sizeof port, "%u", p);
    snprintf(cmd, sizeof cmd, "exec timeout 60 ncat --ssl --ssl-cert %s --ssl-key %s "
             "-l 127.0.0.1 %u < %s", quoted(tls_cert("server.pem")),
             quoted(tls_cert("server.key")), p, quoted(file));
    start_peer(cmd, p);
    code = connect_until(port, MIB, err, sizeof err);
    /* ncat ends without close_notify: noted, not failed. */
    if (code != 0)
        fail_msg("connect from ncat: exit %d: %s", code, err);
}

static void test_socat(void **state)
{
    (void)state;
    REQUIRE("socat");
    fill_random(sent, MIB, &seed);
    char err[4096], cmd[2048], port[16];
    size_t outlen;
    unsigned p = harness_free_port(SOCK_STREAM);
    snprintf(port, sizeof port, "%u", p);
    /* An echo; -t 5: after our close_notify it still sends what cat has. */
    snprintf(cmd, sizeof cmd, "exec timeout 60 socat -t 5 OPENSSL-LISTEN:%u,bind=127.0.0.1,"
             "cert=%s,key=%s,verify=0 EXEC:cat", p, tls_cert("server.pem"),
             tls_cert("server.key"));
    pid_t peer = start_peer(cmd, p);
    int code = connect_run(sent, MIB, &outlen, err, sizeof err, "--tls", "--tls-ca",
                           tls_cert("ca.pem"), "127.0.0.1", port, NULL);
    if (code != 0)
        fail_msg("connect to socat: exit %d: %s", code, err);
    expect_same("socat's echo", (ssize_t)outlen, err);
    tls_peer_wait(peer, 10000);
}

/* ---- bad certificates ------------------------------------------------------- */

/* serve -S echo with this certificate and key. */
static void serve_with(struct server *s, const char *cert, const char *key)
{
    if (server_startl(s, "-S", "echo", "--tls-cert", tls_cert(cert), "--tls-key",
                      tls_cert(key), "127.0.0.1", "0", NULL) != 0)
        fail_msg("the TLS server did not start");
}

/* `ioplex connect --tls ARGS` (an array, NULL-terminated) with stdin fed
 * "hello\n". */
static int connect_args(const char *const args[], size_t *outlen, char *err, size_t errcap)
{
    const char *argv[32] = {ioplex_bin(), "connect", "--tls"};
    size_t n = 3;
    for (size_t i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return run_cmd(argv, "hello\n", 6, got, sizeof got, outlen, err, errcap, RUN_MS);
}

static void expect_refused(const char *reason, const char *const args[])
{
    char err[4096];
    size_t outlen;
    int code = connect_args(args, &outlen, err, sizeof err);
    if (code != EXIT_TLS || count_lines(err) != 1 || !strstr(err, reason) ||
        strncmp(err, "ioplex connect: ", 16) != 0 || outlen != 0) {
        fprintf(stderr, "--- exit %d, stdout %zu bytes\n--- stderr: %s", code, outlen, err);
        fail_msg("expected exit 7 and one line naming '%s'", reason);
    }
}

static void expect_echo(const char *const args[])
{
    char err[4096];
    size_t outlen;
    int code = connect_args(args, &outlen, err, sizeof err);
    if (code != 0 || outlen != 6 || memcmp(got, "hello\n", 6) != 0) {
        fprintf(stderr, "--- stdout %zu bytes\n--- stderr: %s", outlen, err);
        fail_msg("expected the echo and exit 0, got exit %d", code);
    }
}

static void test_bad_certificates(void **state)
{
    (void)state;
    static const struct {
        const char *cert, *key, *reason;
    } cases[] = {
        {"expired.pem", "expired.key", "certificate has expired"},
        {"wrongname.pem", "wrongname.key", "IP address mismatch"},
        {"other.pem", "other.key", "self-signed certificate"},
    };
    char port[16];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct server s;
        serve_with(&s, cases[i].cert, cases[i].key);
        snprintf(port, sizeof port, "%u", s.port);
        const char *ca[] = {"--tls-ca", tls_cert("ca.pem"), "127.0.0.1", port, NULL};
        expect_refused(cases[i].reason, ca);
        const char *insecure[] = {"--insecure", "127.0.0.1", port, NULL};
        expect_echo(insecure);
        server_stop_clean(&s);
    }
    /* A good certificate, but no CA given: the system's store does not
     * know the test CA. */
    struct server s;
    serve_with(&s, "server.pem", "server.key");
    snprintf(port, sizeof port, "%u", s.port);
    const char *none[] = {"127.0.0.1", port, NULL};
    expect_refused("unable to get local issuer certificate", none);
    const char *ca[] = {"--tls-ca", tls_cert("ca.pem"), "127.0.0.1", port, NULL};
    expect_echo(ca);
    /* By name: localhost is in the certificate too. */
    const char *byname[] = {"--tls-ca", tls_cert("ca.pem"), "localhost", port, NULL};
    expect_echo(byname);
    server_stop_clean(&s);
}

/* ---- SNI ---------------------------------------------------------------------- */

static void test_sni(void **state)
{
    (void)state;
    REQUIRE("openssl");
    char cmd[2048], port[16], err[4096];
    size_t outlen;
    /* s_server answers the name elsewhere.example with its second
     * certificate (made for that name), any other with the first. */
    for (int sni = 0; sni < 2; sni++) {
        unsigned p = harness_free_port(SOCK_STREAM);
        snprintf(port, sizeof port, "%u", p);
        snprintf(cmd, sizeof cmd, "sleep 60 | exec timeout 60 openssl s_server -quiet "
                 "-naccept 1 -accept 127.0.0.1:%u -cert %s -key %s -servername "
                 "elsewhere.example -cert2 %s -key2 %s > /dev/null", p,
                 quoted(tls_cert("server.pem")), quoted(tls_cert("server.key")),
                 quoted(tls_cert("wrongname.pem")), quoted(tls_cert("wrongname.key")));
        pid_t peer = start_peer(cmd, p);
        int code = connect_run("hi\n", 3, &outlen, err, sizeof err, "--tls", "--tls-ca",
                               tls_cert("ca.pem"), "--sni",
                               sni ? "elsewhere.example" : "localhost", "127.0.0.1", port,
                               NULL);
        /* Sent and checked: elsewhere.example gets the certificate for
         * that name; localhost gets the one for localhost. */
        if (code != 0)
            fail_msg("--sni %s: exit %d: %s", sni ? "elsewhere.example" : "localhost", code,
                     err);
        tls_peer_wait(peer, 0);
    }
    /* The name checked is --sni's: a server that has only the localhost
     * certificate fails it. */
    struct server s;
    serve_with(&s, "server.pem", "server.key");
    snprintf(port, sizeof port, "%u", s.port);
    int code = connect_run("hi\n", 3, &outlen, err, sizeof err, "--tls", "--tls-ca",
                           tls_cert("ca.pem"), "--sni", "elsewhere.example", "127.0.0.1",
                           port, NULL);
    if (code != EXIT_TLS || count_lines(err) != 1 || !strstr(err, "hostname mismatch"))
        fail_msg("--sni elsewhere.example against localhost's certificate: exit %d: %s",
                 code, err);
    server_stop_clean(&s);
}

/* ---- mutual TLS ----------------------------------------------------------------- */

static void test_mutual(void **state)
{
    (void)state;
    struct server s;
    if (server_startl(&s, "-S", "echo", "--tls-cert", tls_cert("server.pem"), "--tls-key",
                      tls_cert("server.key"), "--tls-ca", tls_cert("ca.pem"),
                      "--tls-verify-client", "127.0.0.1", "0", NULL) != 0)
        fail_msg("the TLS server did not start");
    char port[16], err[4096];
    size_t outlen;
    snprintf(port, sizeof port, "%u", s.port);
    int code = connect_run("hello\n", 6, &outlen, err, sizeof err, "--tls", "--tls-ca",
                           tls_cert("ca.pem"), "--tls-cert", tls_cert("client.pem"),
                           "--tls-key", tls_cert("client.key"), "127.0.0.1", port, NULL);
    if (code != 0 || outlen != 6 || memcmp(got, "hello\n", 6) != 0)
        fail_msg("with a client certificate: exit %d, %zu bytes: %s", code, outlen, err);
    /* Without one the server refuses it (in TLS 1.3 after the client's
     * side of the handshake is done): no echo, and a line saying so. */
    code = connect_run("hello\n", 6, &outlen, err, sizeof err, "--tls", "--tls-ca",
                       tls_cert("ca.pem"), "127.0.0.1", port, NULL);
    if (outlen != 0 || count_lines(err) != 1)
        fail_msg("without a client certificate: exit %d, %zu bytes: %s", code, outlen, err);
    CHECK(&s, server_wait_stderr(&s, "peer did not return a certificate", 5000));
    server_stop_clean(&s);
}

/* ---- close_notify ------------------------------------------------------------ */

/* At the end of stdin connect sends close_notify: the server (-v) hears
 * the end of the stream as TLS's, not a bare FIN it calls truncation. */
static void test_close_notify(void **state)
{
    (void)state;
    struct server s;
    if (server_startl(&s, "-v", "-S", "echo", "--tls-cert", tls_cert("server.pem"),
                      "--tls-key", tls_cert("server.key"), "127.0.0.1", "0", NULL) != 0)
        fail_msg("the TLS server did not start");
    char port[16];
    snprintf(port, sizeof port, "%u", s.port);
    const char *ca[] = {"--tls-ca", tls_cert("ca.pem"), "127.0.0.1", port, NULL};
    expect_echo(ca);
    CHECK(&s, server_wait_stderr(&s, "close 127.0.0.1", 5000));
    CHECK(&s, server_stderr_count(&s, "without TLS close_notify") == 0);
    /* The control: a client killed mid-session is truncation to it. */
    int fd = client_connect(&s);
    assert_true(fd >= 0);
    assert_int_equal(send_all(fd, "\x16\x03\x01", 3), 0);
    client_close(fd);
    CHECK(&s, server_wait_stderr(&s, "without TLS close_notify", 5000));
    server_stop_clean(&s);
}

/* ---- usage ------------------------------------------------------------------------ */

static void test_usage(void **state)
{
    (void)state;
    struct tool_result r;
    const char *no_tls[] = {"connect", "--insecure", "127.0.0.1", "9", NULL};
    tool_run(&r, no_tls, RUN_MS);
    tool_expect_error("--insecure without --tls", &r, 2, "ioplex connect: ", "--tls", NULL);
    const char *udp[] = {"connect", "--tls", "-u", "127.0.0.1", "9", NULL};
    tool_run(&r, udp, RUN_MS);
    tool_expect_error("--tls -u", &r, 2, "ioplex connect: ", "datagrams", NULL);
    const char *both[] = {"connect", "--tls", "--insecure", "--tls-ca", tls_cert("ca.pem"),
                          "127.0.0.1", "9", NULL};
    tool_run(&r, both, RUN_MS);
    tool_expect_error("--insecure --tls-ca", &r, 2, "ioplex connect: ", "--insecure", NULL);
    const char *missing[] = {"connect", "--tls", "--tls-ca", "/nonexistent/ca.pem",
                             "127.0.0.1", "9", NULL};
    tool_run(&r, missing, RUN_MS);
    tool_expect_error("a missing CA file", &r, 2, "ioplex connect: ", "/nonexistent/ca.pem",
                      "No such file", NULL);
    const char *badkey[] = {"connect", "--tls", "--tls-cert", tls_cert("client.pem"),
                            "--tls-key", tls_cert("server.key"), "127.0.0.1", "9", NULL};
    tool_run(&r, badkey, RUN_MS);
    tool_expect_error("a key that is not the certificate's", &r, 2, "ioplex connect: ",
                      "mismatch", NULL);
}

/* A server that does not speak TLS: one that answers (echo sends the
 * ClientHello back) fails the handshake at once; a silent one, at -w. */
static void test_plaintext_server(void **state)
{
    (void)state;
    struct server s;
    assert_int_equal(server_startl(&s, "-S", "echo", "127.0.0.1", "0", NULL), 0);
    expect_refused("TLS handshake failed", (const char *[]){"--insecure", s.address, NULL});
    server_stop_clean(&s);
    assert_int_equal(server_startl(&s, "-S", "discard", "127.0.0.1", "0", NULL), 0);
    struct tool_result r;
    tool_run(&r, (const char *[]){"connect", "--tls", "--insecure", "-w", "1", s.address, NULL},
             RUN_MS);
    tool_expect_error("--tls against a silent plain server", &r, 5, "ioplex connect: ",
                      "TLS handshake", NULL);
    server_stop_clean(&s);
}

int main(void)
{
    seed = harness_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_s_server, teardown),
        cmocka_unit_test_teardown(test_ncat, teardown),
        cmocka_unit_test_teardown(test_socat, teardown),
        cmocka_unit_test_teardown(test_bad_certificates, teardown),
        cmocka_unit_test_teardown(test_sni, teardown),
        cmocka_unit_test_teardown(test_mutual, teardown),
        cmocka_unit_test_teardown(test_close_notify, teardown),
        cmocka_unit_test_teardown(test_plaintext_server, teardown),
        cmocka_unit_test_teardown(test_usage, teardown),
    };
    return cmocka_run_group_tests_name("integration.tls_connect", tests, NULL, NULL);
}
