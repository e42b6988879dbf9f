/*
 * Every built-in service, byte-exact, over every transport the model
 * serves: TCP over 127.0.0.1 and ::1, Unix stream, and for a model that
 * serves datagrams UDP (v4, v6) and Unix datagram. Run as
 * `model_exchange MODEL`; a case that does not apply to the model is not
 * registered at all.
 */
#include "harness.h"
#include "harness_cases.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#define IO_MS HARNESS_IO_TIMEOUT_MS
#define ACK "I got your message\n"

static const char *model;
static unsigned seed;

static const struct test_transport *transport_of(void **state)
{
    return *state;
}

static void start(struct server *s, void **state, const char *service,
                  const char *const extra[])
{
    const struct test_transport *t = transport_of(state);
    if (server_start_on(s, model, t->name, service, extra) != 0)
        fail_msg("cannot start %s on %s under %s", service, t->name, model);
}

/* ---- streams ------------------------------------------------------------ */

static void stream_ack(void **state)
{
    struct server s;
    start(&s, state, "ack", NULL);
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    CHECK(&s, send_fragmented(fd, "hello world\n", 12, &seed) == 0);
    char buf[256];
    ssize_t n = recv_all(fd, buf, sizeof buf, IO_MS); /* through EOF */
    CHECK(&s, n == (ssize_t)strlen(ACK));
    CHECK(&s, memcmp(buf, ACK, strlen(ACK)) == 0);
    client_close(fd);
    CHECK(&s, server_wait_output(&s, "Here is the message: hello world\n", IO_MS));
    server_stop_clean(&s);
    CHECK(&s, server_output_count(&s, "Here is the message: ") == 1);
}

static void stream_echo(void **state)
{
    struct server s;
    start(&s, state, "echo", NULL);
    size_t len = 256 * 1024;
    char *data = malloc(len), *back = malloc(len + 1);
    assert_non_null(data);
    assert_non_null(back);
    fill_random(data, len, &seed);
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    ssize_t n = stream_exchange(fd, data, len, back, len + 1, &seed, 30000);
    int same = n == (ssize_t)len && memcmp(data, back, len) == 0;
    if (!same)
        fprintf(stderr, "echo: sent %zu bytes, received %zd\n", len, n);
    free(data);
    free(back);
    client_close(fd);
    CHECK(&s, same);
    server_stop_clean(&s);
}

static void stream_discard(void **state)
{
    struct server s;
    start(&s, state, "discard", NULL);
    size_t len = 64 * 1024;
    char *data = malloc(len);
    assert_non_null(data);
    fill_random(data, len, &seed);
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    int sent = send_fragmented(fd, data, len, &seed);
    free(data);
    CHECK(&s, sent == 0);
    CHECK(&s, shutdown(fd, SHUT_WR) == 0);
    /* Nothing comes back; the server closes once it has read our EOF. */
    CHECK(&s, expect_eof(fd, IO_MS) == 1);
    client_close(fd);
    server_stop_clean(&s);
}

static void check_daytime_line(struct server *s, const char *buf, ssize_t n)
{
    CHECK(s, n >= 3);
    CHECK(s, buf[n - 2] == '\r' && buf[n - 1] == '\n');
    for (ssize_t i = 0; i < n - 2; i++)
        CHECK(s, buf[i] >= ' ' && buf[i] <= '~');
}

static void stream_daytime(void **state)
{
    struct server s;
    start(&s, state, "daytime", NULL);
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    char buf[512];
    ssize_t n = recv_all(fd, buf, sizeof buf, IO_MS); /* one line, then EOF */
    client_close(fd);
    check_daytime_line(&s, buf, n);
    server_stop_clean(&s);
}

static void check_chargen(struct server *s, const char *buf, size_t n)
{
    for (size_t p = 0; p < n; p++)
        if (buf[p] != chargen_at(p)) {
            fprintf(stderr, "chargen: byte %zu is 0x%02x, expected 0x%02x\n", p,
                    (unsigned char)buf[p], (unsigned char)chargen_at(p));
            CHECK(s, buf[p] == chargen_at(p));
        }
}

static void stream_chargen(void **state)
{
    struct server s;
    start(&s, state, "chargen", NULL);
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    static char buf[10000];
    ssize_t n = recv_exact(fd, buf, sizeof buf, IO_MS);
    CHECK(&s, n == (ssize_t)sizeof buf);
    check_chargen(&s, buf, sizeof buf);
    /* Leaving with output unread: the server must survive it. */
    client_close(fd);
    fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    n = recv_exact(fd, buf, 740, IO_MS); /* a new client starts at line 0 */
    CHECK(&s, n == 740);
    check_chargen(&s, buf, 740);
    client_close(fd);
    server_stop_clean(&s);
}

static void stream_bytes(void **state)
{
    struct server s;
    start(&s, state, "bytes", NULL);
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    /* "0" answers nothing, "1" one byte: exactly one 'x' arrives. */
    CHECK(&s, send_fragmented(fd, "0\n1\n", 4, &seed) == 0);
    char one;
    CHECK(&s, recv_exact(fd, &one, 1, IO_MS) == 1);
    CHECK(&s, one == 'x');
    CHECK(&s, wait_readable(fd, 200) == 0);
    CHECK(&s, send_fragmented(fd, "100000\n", 7, &seed) == 0);
    static char big[100000];
    CHECK(&s, recv_exact(fd, big, sizeof big, IO_MS) == (ssize_t)sizeof big);
    for (size_t i = 0; i < sizeof big; i++)
        CHECK(&s, big[i] == 'x');
    /* A bad count: the next bytes are one ERROR line, then EOF, so the
     * counts above were exact (no stray 'x' before it). */
    CHECK(&s, send_fragmented(fd, "abc\n", 4, &seed) == 0);
    char buf[256];
    ssize_t n = recv_all(fd, buf, sizeof buf, IO_MS);
    CHECK(&s, n > 6);
    CHECK(&s, strncmp(buf, "ERROR", 5) == 0);
    CHECK(&s, buf[n - 1] == '\n' && memchr(buf, '\n', (size_t)n) == buf + n - 1);
    client_close(fd);

    /* Pipelined: a large answer owed, then a count over the limit. The
     * answer comes whole, then the ERROR line, then EOF; a request after
     * the bad one is not answered. */
    fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    static const char req[] = "300000\n67108865\n5\n";
    CHECK(&s, send_fragmented(fd, req, sizeof req - 1, &seed) == 0);
    static char all[300000 + 256];
    n = recv_all(fd, all, sizeof all, IO_MS);
    size_t xs = 0;
    while (xs < (size_t)n && all[xs] == 'x')
        xs++;
    if (xs != 300000 || n < 300000 + 6 || strncmp(all + xs, "ERROR", 5) != 0 ||
        all[n - 1] != '\n' || memchr(all + xs, '\n', (size_t)n - xs) != all + n - 1)
        fprintf(stderr, "bytes, pipelined past the limit: %zd bytes back, %zu 'x' "
                "before '%.8s'\n", n, xs, xs < (size_t)n ? all + xs : "");
    CHECK(&s, xs == 300000);
    CHECK(&s, n > 300000 + 6 && strncmp(all + xs, "ERROR", 5) == 0);
    CHECK(&s, all[n - 1] == '\n' && memchr(all + xs, '\n', (size_t)n - xs) == all + n - 1);
    client_close(fd);
    server_stop_clean(&s);
}

static void stream_echo_line(void **state)
{
    struct server s;
    static const char *const extra[] = {"-F", "line", NULL};
    start(&s, state, "echo", extra);
    /* ~1000 lines of 0..200 printable bytes; one sent with "\r\n", which
     * line framing reads as the same line. */
    size_t cap = 1000 * 203, in_len = 0, exp_len = 0;
    char *in = malloc(cap), *expect = malloc(cap), *back = malloc(cap + 1);
    assert_true(in && expect && back);
    for (int l = 0; l < 1000; l++) {
        size_t n = l == 1 ? 0 : rng_next(&seed) % 201;
        for (size_t i = 0; i < n; i++) {
            char c = (char)(' ' + rng_next(&seed) % 95);
            in[in_len++] = c;
            expect[exp_len++] = c;
        }
        if (l == 2)
            in[in_len++] = '\r';
        in[in_len++] = '\n';
        expect[exp_len++] = '\n';
    }
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    ssize_t n = stream_exchange(fd, in, in_len, back, cap + 1, &seed, 30000);
    int same = n == (ssize_t)exp_len && memcmp(back, expect, exp_len) == 0;
    if (!same)
        fprintf(stderr, "echo -F line: expected %zu bytes back, got %zd\n", exp_len, n);
    free(in);
    free(expect);
    free(back);
    client_close(fd);
    CHECK(&s, same);
    server_stop_clean(&s);
}

static void stream_echo_len32(void **state)
{
    struct server s;
    static const char *const extra[] = {"-F", "len32", NULL};
    start(&s, state, "echo", extra);
    /* 100 frames of 0..4000 random bytes (the first empty), each after
     * its 32-bit big-endian length; they come back identical. */
    size_t cap = 100 * 4004, len = 0;
    char *out = malloc(cap), *back = malloc(cap + 1);
    assert_true(out && back);
    for (int f = 0; f < 100; f++) {
        uint32_t n = f == 0 ? 0 : rng_next(&seed) % 4001;
        out[len++] = (char)(n >> 24);
        out[len++] = (char)(n >> 16);
        out[len++] = (char)(n >> 8);
        out[len++] = (char)n;
        fill_random(out + len, n, &seed);
        len += n;
    }
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    ssize_t n = stream_exchange(fd, out, len, back, cap + 1, &seed, 30000);
    int same = n == (ssize_t)len && memcmp(back, out, len) == 0;
    if (!same)
        fprintf(stderr, "echo -F len32: expected %zu bytes back, got %zd\n", len, n);
    free(out);
    free(back);
    client_close(fd);
    CHECK(&s, same);
    server_stop_clean(&s);
}

/* ---- datagrams ------------------------------------------------------------ */

static void dgram_ack(void **state)
{
    struct server s;
    start(&s, state, "ack", NULL);
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    CHECK(&s, send_all(fd, "hello world\n", 12) == 0);
    char buf[256];
    ssize_t n = recv_dgram(fd, buf, sizeof buf, IO_MS);
    CHECK(&s, n == (ssize_t)strlen(ACK));
    CHECK(&s, memcmp(buf, ACK, strlen(ACK)) == 0);
    CHECK(&s, server_wait_output(&s, "Here is the message: hello world\n", IO_MS));
    /* A second datagram from the same socket: the server keeps serving. */
    CHECK(&s, send_all(fd, "again\n", 6) == 0);
    n = recv_dgram(fd, buf, sizeof buf, IO_MS);
    CHECK(&s, n == (ssize_t)strlen(ACK));
    CHECK(&s, server_wait_output(&s, "Here is the message: again\n", IO_MS));
    client_close(fd);
    server_stop_clean(&s);
}

static void dgram_echo(void **state)
{
    struct server s;
    start(&s, state, "echo", NULL);
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    static const size_t sizes[] = {1, 2, 100, 512, 1400, 1500, 4000, 8192, 30000};
    static char out[30000], in[65536];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t len = sizes[i];
        fill_random(out, len, &seed);
        CHECK(&s, send_all(fd, out, len) == 0);
        ssize_t n = recv_dgram(fd, in, sizeof in, IO_MS);
        if (n != (ssize_t)len)
            fprintf(stderr, "echo: sent a %zu-byte datagram, got %zd bytes\n", len, n);
        CHECK(&s, n == (ssize_t)len);
        CHECK(&s, memcmp(in, out, len) == 0);
    }
    client_close(fd);
    server_stop_clean(&s);
}

static void dgram_daytime(void **state)
{
    struct server s;
    start(&s, state, "daytime", NULL);
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    CHECK(&s, send_all(fd, "\n", 1) == 0);
    char buf[512];
    ssize_t n = recv_dgram(fd, buf, sizeof buf, IO_MS);
    client_close(fd);
    check_daytime_line(&s, buf, n);
    CHECK(&s, memchr(buf, '\n', (size_t)n) == buf + n - 1);
    server_stop_clean(&s);
}

static void dgram_chargen(void **state)
{
    struct server s;
    start(&s, state, "chargen", NULL);
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    CHECK(&s, send_all(fd, "x", 1) == 0);
    char buf[2048];
    ssize_t n = recv_dgram(fd, buf, sizeof buf, IO_MS);
    client_close(fd);
    CHECK(&s, n == 6 * 74);
    check_chargen(&s, buf, (size_t)n);
    server_stop_clean(&s);
}

/* ---- a model without datagrams refuses them --------------------------------- */

static void dgram_refused(void **state)
{
    const struct test_transport *t = transport_of(state);
    char path[108];
    const char *argv[12];
    size_t n = 0;
    argv[n++] = ioplex_bin();
    argv[n++] = "serve";
    argv[n++] = "-m";
    argv[n++] = model;
    argv[n++] = "-u";
    if (t->kind == SERVER_UNIXGRAM) {
        assert_non_null(harness_tmp_path(path, sizeof path, "refused"));
        argv[n++] = "-U";
        argv[n++] = path;
    } else {
        argv[n++] = "127.0.0.1";
        argv[n++] = "0";
    }
    argv[n] = NULL;
    char out[1024], err[1024];
    int st = run_cmd(argv, NULL, 0, out, sizeof out, NULL, err, sizeof err, 10000);
    if (st != 2)
        fprintf(stderr, "stdout: %s\nstderr: %s\n", out, err);
    assert_int_equal(st, 2);
    assert_non_null(strstr(err, "ioplex serve: "));
    if (t->kind == SERVER_UNIXGRAM)
        assert_int_equal(access(path, F_OK), -1); /* nothing left behind */
}

/* ---- registration --------------------------------------------------------------- */

struct tcase {
    const char *name;
    CMUnitTestFunction fn;
};

static const struct tcase stream_cases[] = {
    {"ack", stream_ack},
    {"echo", stream_echo},
    {"discard", stream_discard},
    {"daytime", stream_daytime},
    {"chargen", stream_chargen},
    {"bytes", stream_bytes},
    {"echo_line", stream_echo_line},
    {"echo_len32", stream_echo_len32},
};

static const struct tcase dgram_cases[] = {
    {"ack", dgram_ack},
    {"echo", dgram_echo},
    {"daytime", dgram_daytime},
    {"chargen", dgram_chargen},
};

static struct harness_cases cases;

static void add(const struct test_transport *t, const struct tcase *c)
{
    harness_add_case(&cases, t->name, c->name, c->fn, (void *)t);
}

int main(int argc, char **argv)
{
    int dgram;
    model = harness_model_checked(argc, argv, &dgram);
    seed = harness_seed();
    int v6 = have_ipv6_loopback();
    if (!v6)
        fprintf(stderr, "%s: ::1 is not available here; the tcp6 and udp6 cases "
                "are omitted\n", argv[0]);
    for (const struct test_transport *t = harness_transports; t->name; t++) {
        if (t->ipv6 && !v6)
            continue;
        if (!transport_is_dgram(t)) {
            for (size_t i = 0; i < sizeof stream_cases / sizeof stream_cases[0]; i++)
                add(t, &stream_cases[i]);
        } else if (dgram) {
            for (size_t i = 0; i < sizeof dgram_cases / sizeof dgram_cases[0]; i++)
                add(t, &dgram_cases[i]);
        } else if (!t->ipv6) {
            static const struct tcase refused = {"refused", dgram_refused};
            add(t, &refused);
        }
    }
    return harness_run_cases(&cases, "model_exchange", model);
}
