/*
 * ioplex bench --tls against ioplex serve --tls-cert/--tls-key: every
 * mode over TLS with exact counts and no errors; connect mode with a full
 * handshake per request, and with --tls-resume resumed ones, the JSON's
 * "handshake" counting both; --tls-ca verifies (an expired certificate is
 * one line, exit 7), and by default nothing is verified; a server that is
 * not TLS is one line, exit 7; the TLS options' usage errors. Counts and
 * kinds only: no timing assertions. Certificates made at test time.
 */
#define _GNU_SOURCE
#include "harness.h"
#include "tls_peers.h"
#include "tool.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define RUN_MS 60000
#define SLACK "--timeout", "10"

static int teardown(void **state) { return harness_teardown(state); }

#define bench(r, ...) tool_runl(r, RUN_MS, "bench", __VA_ARGS__)

/* Every NULL-terminated jq filter is true of the JSON (one jq run). */
static void expect_all(const char *what, const struct tool_result *r, ...)
{
    if (!tls_have("jq")) /* make setup installs it */
        fail_msg("jq is not installed (make setup installs it)");
    char prog[8192] = "[";
    const char *filters[32];
    size_t n = 0;
    va_list ap;
    va_start(ap, r);
    const char *f;
    while ((f = va_arg(ap, const char *)) != NULL && n < 32) {
        filters[n] = f;
        size_t len = strlen(prog);
        snprintf(prog + len, sizeof prog - len, "%s((%s) == true)", n ? "," : "", f);
        n++;
    }
    va_end(ap);
    size_t len = strlen(prog);
    snprintf(prog + len, sizeof prog - len,
             "] | to_entries | map(select(.value | not) | .key) | map(tostring) | join(\" \")");
    const char *argv[] = {"jq", "-r", prog, NULL};
    char out[256], err[1024];
    int code = run_cmd(argv, r->out, strlen(r->out), out, sizeof out, NULL, err, sizeof err,
                       10000);
    if (r->code == 0 && code == 0 && (out[0] == '\0' || out[0] == '\n'))
        return;
    tool_show(what, r);
    char *save = NULL;
    for (char *t = strtok_r(out, " \n", &save); t; t = strtok_r(NULL, " \n", &save))
        fprintf(stderr, "--- not true: %s\n", filters[atoi(t)]);
    fail_msg("%s: exit %d, jq %d %s", what, r->code, code, err);
}

static void serve_tls(struct server *s, const char *service, const char *cert, const char *key)
{
    if (server_startl(s, "-m", "epoll", "-S", service, "--tls-cert", tls_cert(cert),
                      "--tls-key", tls_cert(key), "127.0.0.1", "0", NULL) != 0)
        fail_msg("the TLS server did not start");
}

static void test_modes(void **state)
{
    (void)state;
    struct server s;
    serve_tls(&s, "echo", "server.pem", "server.key");
    struct tool_result r;
    bench(&r, "--tls", "-c", "4", "-P", "2", "-s", "16-4096", "-n", "2000", "--warmup", "0",
          SLACK, "--json", s.address, NULL);
    expect_all("pingpong --tls", &r, ".messages == 2000", ".errors.total == 0", ".tls == true",
               ".connections_opened == 4", ".handshake.count == 4",
               ".handshake.resumed == 0", ".handshake.verified == false",
               ".handshake.latency_ms.p50 > 0", ".bytes_sent == .bytes_received", NULL);
    /* Records bigger than a read, several in flight: 64 KiB messages. */
    bench(&r, "--tls", "-c", "2", "-P", "4", "-s", "64k", "-n", "400", "--warmup", "0", SLACK,
          "--json", s.address, NULL);
    expect_all("pingpong --tls 64k", &r, ".messages == 400", ".errors.total == 0",
               ".bytes_received == 400 * 65536", NULL);
    bench(&r, "--tls", "-m", "rate", "-R", "2000", "-c", "4", "-d", "1", "--warmup", "0", SLACK,
          "--json", s.address, NULL);
    expect_all("rate --tls", &r, ".messages > 0", ".errors.total == 0",
               ".handshake.count == 4", NULL);
    bench(&r, "--tls", "-m", "stream", "-c", "2", "-d", "2", "--warmup", "0", SLACK, "--json",
          s.address, NULL);
    expect_all("stream --tls", &r, ".bytes_received > 0", ".errors.total == 0",
               ".handshake.count == 2", NULL);
    /* Plain, the field is null. */
    struct server p;
    assert_int_equal(server_startl(&p, "-S", "echo", "127.0.0.1", "0", NULL), 0);
    bench(&r, "-n", "100", "--warmup", "0", "--json", p.address, NULL);
    expect_all("plain", &r, ".tls == false", ".handshake == null", NULL);
    server_stop_clean(&p);
    server_stop_clean(&s);
}

static void test_connect_handshakes(void **state)
{
    (void)state;
    struct server s;
    serve_tls(&s, "bytes", "server.pem", "server.key");
    struct tool_result r;
    bench(&r, "--tls", "-m", "connect", "-c", "4", "-s", "1000", "-n", "300", "--warmup", "0",
          SLACK, "--json", s.address, NULL);
    expect_all("connect --tls", &r, ".messages == 300", ".errors.total == 0",
               ".connections_opened == 300", ".handshake.count == 300",
               ".handshake.resumed == 0", ".bytes_received == 300000",
               ".handshake.per_s > 0", ".handshake.latency_ms.max >= .handshake.latency_ms.p50",
               NULL);
    /* Resumed: only connections begun before their thread's first
     * session was kept (at most -c of them in all) have a full handshake.
     * Two threads, each its own session. */
    bench(&r, "--tls", "--tls-resume", "--tls-ca", tls_cert("ca.pem"), "-m", "connect", "-c",
          "4", "-t", "2", "-s", "1000", "-n", "300", "--warmup", "0", SLACK, "--json", s.address, NULL);
    expect_all("connect --tls --tls-resume", &r, ".messages == 300", ".errors.total == 0",
               ".handshake.count == 300", ".handshake.resumed >= 296",
               ".handshake.verified == true", NULL);
    server_stop_clean(&s);
}

static void test_failures(void **state)
{
    (void)state;
    struct server s;
    serve_tls(&s, "echo", "expired.pem", "expired.key");
    struct tool_result r;
    const char *verify[] = {"bench", "--tls", "--tls-ca", tls_cert("ca.pem"), "-n", "10",
                            s.address, NULL};
    tool_run(&r, verify, RUN_MS);
    tool_expect_error("--tls-ca, an expired certificate", &r, 7, "ioplex bench: ",
                      "certificate has expired", NULL);
    /* Not verified by default: it measures. */
    bench(&r, "--tls", "-n", "100", "--warmup", "0", SLACK, "--json", s.address, NULL);
    expect_all("--tls, an expired certificate unverified", &r, ".messages == 100",
               ".errors.total == 0", NULL);
    server_stop_clean(&s);

    /* A plain echo server sends the ClientHello back: not TLS. */
    struct server p;
    assert_int_equal(server_startl(&p, "-S", "echo", "127.0.0.1", "0", NULL), 0);
    const char *plain[] = {"bench", "--tls", "-n", "10", p.address, NULL};
    tool_run(&r, plain, RUN_MS);
    tool_expect_error("--tls against a plain server", &r, 7, "ioplex bench: ",
                      "TLS handshake failed", NULL);
    server_stop_clean(&p);
}

static void test_usage(void **state)
{
    (void)state;
    struct tool_result r;
    const char *resume[] = {"bench", "--tls-resume", "127.0.0.1", "9", NULL};
    tool_run(&r, resume, RUN_MS);
    tool_expect_error("--tls-resume alone", &r, 2, "ioplex bench: ", "--tls", NULL);
    const char *udp[] = {"bench", "--tls", "-u", "127.0.0.1", "9", NULL};
    tool_run(&r, udp, RUN_MS);
    tool_expect_error("--tls -u", &r, 2, "ioplex bench: ", "datagrams", NULL);
    const char *ca[] = {"bench", "--tls", "--tls-ca", "/nonexistent.pem", "127.0.0.1", "9",
                        NULL};
    tool_run(&r, ca, RUN_MS);
    tool_expect_error("a missing CA file", &r, 2, "ioplex bench: ", "/nonexistent.pem", NULL);
}

/* compare's TLS scenarios: its own certificate, a result for each. */
static void test_compare(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/compare", harness_tmpdir());
    const char *argv[] = {ioplex_bin(), "compare", "--quick", "-m", "epoll", "--scenarios",
                          "tlspp100,tlshs", "-d", "0.5", "-o", dir, NULL};
    static struct tool_result r;
    r.code = run_cmd(argv, NULL, 0, r.out, sizeof r.out, NULL, r.err, sizeof r.err, RUN_MS);
    if (r.code != 0) {
        tool_show("compare --scenarios tlspp100,tlshs", &r);
        fail_msg("compare failed");
    }
    char path[600];
    snprintf(path, sizeof path, "%s/results.json", dir);
    static char json[65536];
    ssize_t n = tls_read_file(path, json, sizeof json - 1);
    assert_true(n > 0);
    json[n] = '\0';
    memcpy(r.out, json, (size_t)n + 1);
    expect_all("compare's results.json", &r,
               "[.scenarios[].name] == [\"tlspp100\",\"tlshs\"]",
               /* A result from each; the handshake scenario counts its
                * requests (-n), so some got through. Nothing timed: a
                * loaded machine may spend a short run on handshakes. */
               "all(.results[]; .runs_ok == 1)",
               ".results[] | select(.scenario == \"tlshs\") | .per_s > 0", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_modes, teardown),
        cmocka_unit_test_teardown(test_connect_handshakes, teardown),
        cmocka_unit_test_teardown(test_failures, teardown),
        cmocka_unit_test_teardown(test_usage, teardown),
        cmocka_unit_test_teardown(test_compare, teardown),
    };
    return cmocka_run_group_tests_name("integration.bench_tls", tests, NULL, NULL);
}
