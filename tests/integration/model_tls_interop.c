/*
 * ioplex serve --tls-cert/--tls-key under one model (argv[1]) answers
 * other TLS clients byte for byte: 1 MiB of random bytes through
 * `-S echo -F raw`, from openssl s_client, ncat --ssl and socat OPENSSL:,
 * each verifying the server against the test CA (s_client with
 * -nocommands: a line of random bytes starting "Q" would end it). Under
 * epoll, -w 2 too.
 * The certificates are made at test time (tests/tls/make-certs.sh).
 */
#define _GNU_SOURCE
#include "harness.h"
#include "tls_peers.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define MIB (1u << 20)
#define RUN_MS 60000

static const char *model;
static char sent[MIB];
static char got[2 * MIB];
static unsigned seed;

static int teardown(void **state) { return harness_teardown(state); }

static void serve(struct server *s, const char *workers)
{
    const char *args[16] = {"-m", model, "-S", "echo", "-F", "raw", "--tls-cert",
                            tls_cert("server.pem"), "--tls-key", tls_cert("server.key")};
    size_t n = 10;
    if (workers) {
        args[n++] = "-w";
        args[n++] = workers;
    }
    args[n++] = "127.0.0.1";
    args[n++] = "0";
    args[n] = NULL;
    if (server_start(s, args) != 0)
        fail_msg("the TLS server did not start under %s", model);
}

/* The client command (a shell line, %u the port, %s the CA file) sends
 * 1 MiB; all of it must come back, and the client end by itself. hold:
 * its stdin stays open until the echo is back (s_client ends the session
 * at the end of its stdin); ncat and socat half-close and read on. */
static void through(struct server *s, const char *tool, const char *fmt, int hold)
{
    if (!tls_have(tool)) /* scripts/setup.sh installs it: its absence is a failure */
        fail_msg("%s is not installed (make setup installs it)", tool);
    fill_random(sent, MIB, &seed);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, fmt, s->port, tls_cert("ca.pem"));
    size_t n = 0;
    int code = tls_pipe_through(cmd, sent, MIB, got, sizeof got, &n, hold ? MIB : 0, RUN_MS);
    int same = n == MIB && memcmp(got, sent, MIB) == 0;
    if (code != 0 || !same) {
        server_dump(s);
        fail_msg("%s under %s: exit %d (-1: did not end), %zu bytes back%s", tool, model, code,
                 n, n == MIB && !same ? ", not the bytes sent" : "");
    }
}

#define S_CLIENT "exec timeout 60 openssl s_client -quiet -no_ign_eof -nocommands -verify_return_error " \
                 "-connect 127.0.0.1:%u -CAfile '%s' 2>/dev/null"
/* ncat checks DNS names only: the certificate's localhost, over IPv4.
 * (ncat reads 8 KiB at a time and does not look at what OpenSSL holds:
 * the last half record shows only at the end of its stdin.) */
#define NCAT "exec timeout 60 ncat -4 --ssl --ssl-verify localhost %u --ssl-trustfile '%s'"
#define SOCAT "exec timeout 60 socat -t 5 - OPENSSL:127.0.0.1:%u,cafile='%s',verify=1"

static void test_clients(void **state)
{
    (void)state;
    struct server s;
    serve(&s, NULL);
    through(&s, "openssl", S_CLIENT, 1);
    through(&s, "ncat", NCAT, 0);
    through(&s, "socat", SOCAT, 0);
    server_stop_clean(&s);
}

/* Two event loops (epoll only): each client may land on either. */
static void test_workers(void **state)
{
    (void)state;
    struct server s;
    serve(&s, "2");
    for (int i = 0; i < 2; i++) {
        through(&s, "openssl", S_CLIENT, 1);
        through(&s, "socat", SOCAT, 0);
    }
    server_stop_clean(&s);
}

int main(int argc, char **argv)
{
    model = harness_model(argc, argv);
    seed = harness_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_clients, teardown),
        cmocka_unit_test_teardown(test_workers, teardown),
    };
    size_t n = strcmp(model, "epoll") == 0 ? 2 : 1; /* -w 2 under epoll only */
    return _cmocka_run_group_tests("tls_interop", tests, n, NULL, NULL);
}
