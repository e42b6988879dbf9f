/*
 * The uring model's own cases (the model_* suites run under it as under
 * every model):
 *
 *   unavailable    with io_uring unusable (simulated by the test hook
 *                  IOPLEX_URING_DISABLE=1: ENOSYS), `serve -m uring` exits
 *                  1 before binding, with one line "io_uring is not
 *                  available here: <reason>"
 *   fallbacks      IOPLEX_URING_FALLBACK=0..3 takes the paths of older
 *                  kernels (classic buffer ring, single-shot accept and
 *                  recv, buffers without a ring): each serves a 1 MiB echo
 *                  byte-exact and twenty concurrent clients
 *   dry_ring       IOPLEX_URING_BUFFERS=2 (and the classic ring, and no
 *                  ring): 600 clients send at once, again and again, so
 *                  the receive buffers run out (-ENOBUFS) in every round;
 *                  every echo still comes back, byte-exact
 *   max_conns      --max-conns 2: a third client is closed, the two are
 *                  served
 *   dgram_workers  -w 2 over UDP and Unix datagrams: every datagram answered
 *
 * Skipped (all of them) when the build has no uring model.
 */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "ioplex.h"

#define IO_MS HARNESS_IO_TIMEOUT_MS

static unsigned seed;

static int have_uring(void)
{
    return model_serves_datagrams("uring") >= 0;
}

static int teardown(void **state)
{
    unsetenv("IOPLEX_URING_DISABLE");
    unsetenv("IOPLEX_URING_FALLBACK");
    unsetenv("IOPLEX_URING_BUFFERS");
    return harness_teardown(state);
}

/* ---- io_uring unavailable ------------------------------------------------------ */

static void unavailable(void **state)
{
    (void)state;
    if (!have_uring())
        skip();
    char path[256];
    assert_non_null(harness_tmp_path(path, sizeof path, "uring-off"));
    setenv("IOPLEX_URING_DISABLE", "1", 1);
    static const char *const cases[][8] = {
        {"serve", "-m", "uring", "127.0.0.1", "0", NULL},
        {"serve", "-m", "uring", "-S", "echo", "-w", "2", NULL}, /* + -U path */
    };
    for (size_t i = 0; i < 2; i++) {
        const char *argv[12];
        size_t n = 0;
        argv[n++] = ioplex_bin();
        for (size_t j = 0; cases[i][j]; j++)
            argv[n++] = cases[i][j];
        if (i == 1) {
            argv[n++] = "-U";
            argv[n++] = path;
        }
        argv[n] = NULL;
        char out[4096], err[4096];
        int code = run_cmd(argv, NULL, 0, out, sizeof out, NULL, err, sizeof err, 10000);
        static const char prefix[] = "ioplex serve: io_uring is not available here: ";
        int lines = 0;
        for (const char *p = err; *p; p++)
            lines += *p == '\n';
        if (code != 1 || lines != 1 || strncmp(err, prefix, strlen(prefix)) != 0 ||
            !strstr(err, "Function not implemented") || strstr(err, " on ")) {
            fprintf(stderr, "--- exit %d, stdout:\n%s--- stderr:\n%s---\n", code, out, err);
            fail_msg("case %zu: want exit 1 and one line '%s...'", i, prefix);
        }
    }
    /* It failed before binding: no socket file was made. */
    assert_int_equal(access(path, F_OK), -1);
    unsetenv("IOPLEX_URING_DISABLE");
}

/* ---- the fallback paths ------------------------------------------------------------ */

static const char *const fallback_says[] = {
    "incremental buffer ring",
    "multishot recv from a buffer ring",
    "single-shot recv from a buffer ring",
    "provided buffers (no ring)",
};

static void fallback(void **state)
{
    if (!have_uring())
        skip();
    int level = (int)(intptr_t)*state;
    char v[8];
    snprintf(v, sizeof v, "%d", level);
    setenv("IOPLEX_URING_FALLBACK", v, 1);
    struct server s;
    static const char *const extra[] = {"-v", NULL};
    if (server_start_on(&s, "uring", "tcp4", "echo", extra) != 0)
        fail_msg("cannot start echo under uring (fallback %d)", level);
    unsetenv("IOPLEX_URING_FALLBACK");
    CHECK(&s, server_wait_stderr(&s, fallback_says[level], IO_MS));
    if (level >= 2)
        CHECK(&s, server_wait_stderr(&s, "single-shot accept", IO_MS));

    /* 1 MiB each way, in random fragments, byte-exact. */
    enum { LEN = 1 << 20 };
    char *data = malloc(LEN), *back = malloc(LEN + 1);
    CHECK(&s, data && back);
    fill_random(data, LEN, &seed);
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    ssize_t n = stream_exchange(fd, data, LEN, back, LEN + 1, &seed, 30000);
    int same = n == LEN && memcmp(data, back, LEN) == 0;
    free(data);
    free(back);
    client_close(fd);
    CHECK(&s, same);

    /* Twenty clients at once, answered in reverse order of connection. */
    int c[20];
    for (int i = 0; i < 20; i++) {
        c[i] = client_connect(&s);
        CHECK(&s, c[i] >= 0);
    }
    for (int i = 19; i >= 0; i--) {
        char line[32], got[32];
        int len = snprintf(line, sizeof line, "client %d\n", i);
        CHECK(&s, send_all(c[i], line, (size_t)len) == 0);
        CHECK(&s, recv_exact(c[i], got, (size_t)len, IO_MS) == len);
        CHECK(&s, memcmp(line, got, (size_t)len) == 0);
        client_close(c[i]);
    }
    server_stop_clean(&s);
}

/* ---- the receive buffers run dry ------------------------------------------------------ */

#define DRY_CLIENTS 600
#define DRY_ROUNDS 10

static void dry_ring(void **state)
{
    if (!have_uring())
        skip();
    int level = (int)(intptr_t)*state;
    char v[8];
    snprintf(v, sizeof v, "%d", level);
    setenv("IOPLEX_URING_FALLBACK", v, 1);
    setenv("IOPLEX_URING_BUFFERS", "2", 1);
    struct server s;
    int r = server_start_on(&s, "uring", "tcp4", "echo", NULL);
    unsetenv("IOPLEX_URING_FALLBACK");
    unsetenv("IOPLEX_URING_BUFFERS");
    if (r != 0)
        fail_msg("cannot start echo under uring with 2 buffers");
    static int fd[DRY_CLIENTS];
    for (int i = 0; i < DRY_CLIENTS; i++) {
        fd[i] = client_connect(&s);
        CHECK(&s, fd[i] >= 0);
    }
    /* Each round: every client sends, then every answer is read. */
    for (int round = 0; round < DRY_ROUNDS; round++) {
        char msg[DRY_CLIENTS][48];
        int len[DRY_CLIENTS];
        for (int i = 0; i < DRY_CLIENTS; i++) {
            len[i] = snprintf(msg[i], sizeof msg[i], "round %d client %d %08x\n", round, i,
                              rng_next(&seed));
            CHECK(&s, send_all(fd[i], msg[i], (size_t)len[i]) == 0);
        }
        for (int i = 0; i < DRY_CLIENTS; i++) {
            char got[48];
            CHECK(&s, recv_exact(fd[i], got, (size_t)len[i], IO_MS) == len[i]);
            CHECK(&s, memcmp(got, msg[i], (size_t)len[i]) == 0);
        }
    }
    for (int i = 0; i < DRY_CLIENTS; i++)
        client_close(fd[i]);
    server_stop_clean(&s);
}

/* ---- --max-conns ------------------------------------------------------------------- */

static void max_conns(void **state)
{
    (void)state;
    if (!have_uring())
        skip();
    struct server s;
    static const char *const extra[] = {"--max-conns", "2", NULL};
    if (server_start_on(&s, "uring", "tcp4", "echo", extra) != 0)
        fail_msg("cannot start echo under uring");
    int a = client_connect(&s), b = client_connect(&s);
    CHECK(&s, a >= 0 && b >= 0);
    char buf[16];
    CHECK(&s, send_all(a, "a\n", 2) == 0 && recv_exact(a, buf, 2, IO_MS) == 2);
    CHECK(&s, send_all(b, "b\n", 2) == 0 && recv_exact(b, buf, 2, IO_MS) == 2);
    int c = client_connect(&s); /* accepted by the kernel, then closed */
    CHECK(&s, c >= 0);
    CHECK(&s, expect_eof(c, IO_MS) == 1);
    CHECK(&s, server_wait_stderr(&s, "--max-conns", IO_MS));
    client_close(c);
    CHECK(&s, send_all(a, "x\n", 2) == 0 && recv_exact(a, buf, 2, IO_MS) == 2);
    client_close(a);
    client_close(b);
    server_stop_clean(&s);
}

/* ---- datagrams with workers ----------------------------------------------------------- */

static void dgram_workers(void **state)
{
    const char *transport = *state;
    if (!have_uring())
        skip();
    struct server s;
    static const char *const extra[] = {"-w", "2", NULL};
    if (server_start_on(&s, "uring", transport, "echo", extra) != 0)
        fail_msg("cannot start echo on %s under uring -w 2", transport);
    for (int k = 0; k < 8; k++) {
        int fd = client_connect(&s); /* a new source address each time */
        CHECK(&s, fd >= 0);
        for (int i = 0; i < 10; i++) {
            char msg[64], got[64];
            int len = snprintf(msg, sizeof msg, "datagram %d.%d", k, i);
            CHECK(&s, send_all(fd, msg, (size_t)len) == 0);
            CHECK(&s, recv_dgram(fd, got, sizeof got, IO_MS) == len);
            CHECK(&s, memcmp(msg, got, (size_t)len) == 0);
        }
        client_close(fd);
    }
    server_stop_clean(&s);
}

int main(void)
{
    seed = harness_seed();
#define T(name, fn, st) {name, fn, NULL, teardown, (void *)(st)}
    const struct CMUnitTest tests[] = {
        T("unavailable", unavailable, NULL),
        T("fallback.0", fallback, 0),
        T("fallback.1", fallback, 1),
        T("fallback.2", fallback, 2),
        T("fallback.3", fallback, 3),
        T("dry_ring.0", dry_ring, 0),
        T("dry_ring.1", dry_ring, 1),
        T("dry_ring.3", dry_ring, 3),
        T("max_conns", max_conns, NULL),
        T("dgram_workers.udp4", dgram_workers, "udp4"),
        T("dgram_workers.unixgram", dgram_workers, "unixgram"),
    };
    return cmocka_run_group_tests_name("test_uring", tests, NULL, harness_teardown);
}
