/*
 * Bad input has a clear outcome: for `ioplex serve` and `ioplex connect`,
 * every mistake ends with the documented exit code and one line on stderr
 * that names the problem; and the server's own limits (oversized frames,
 * --max-conns, socket files, a second SIGTERM) hurt only what they should.
 *
 * Exit codes: 0 ok, 1 network/system error, 2 usage, 3 name does not
 * resolve, 4 refused / no server at the path, 5 timed out, 6 cannot bind.
 */
#include "harness.h"
#include "tool.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <netinet/in.h>
#include <arpa/inet.h>
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
#include <sys/types.h>
#include <unistd.h>

#include <cmocka.h>

#include "ioplex.h"

#define CMD_TIMEOUT_MS 10000

/* Sockets this file opens itself (not through client_connect), closed in
 * teardown even when an assertion leaves a test early. */
static int extra_fds[8];
static size_t n_extra_fds;

static int keep_fd(int fd)
{
    if (fd >= 0 && n_extra_fds < sizeof extra_fds / sizeof extra_fds[0])
        extra_fds[n_extra_fds++] = fd;
    return fd;
}

static int teardown(void **state)
{
    for (size_t i = 0; i < n_extra_fds; i++)
        close(extra_fds[i]);
    n_extra_fds = 0;
    return harness_teardown(state);
}

/* ---- running the tool ----------------------------------------------------- */


/* "/tmp/aaaa...a" of exactly n characters. */
static void long_path(char *buf, size_t n)
{
    strcpy(buf, "/tmp/");
    size_t i = strlen(buf);
    for (; i < n; i++)
        buf[i] = 'a';
    buf[n] = '\0';
}

/* One request/answer with the ack service over a fresh connection. */
static void expect_ack(struct server *s, const char *line)
{
    int fd = client_connect(s);
    assert_true(fd >= 0);
    char msg[256];
    snprintf(msg, sizeof msg, "%s\n", line);
    assert_int_equal(send_all(fd, msg, strlen(msg)), 0);
    char buf[256];
    ssize_t n = recv_all(fd, buf, sizeof buf, HARNESS_IO_TIMEOUT_MS);
    assert_int_equal(n, (ssize_t)strlen("I got your message\n"));
    assert_string_equal(buf, "I got your message\n");
    client_close(fd);
    snprintf(msg, sizeof msg, "Here is the message: %s\n", line);
    if (!server_wait_output(s, msg, HARNESS_IO_TIMEOUT_MS)) {
        server_dump(s);
        fail_msg("server did not print '%s'", msg);
    }
}

/* ---- binding and resolving ------------------------------------------------ */

static void test_port_in_use(void **state)
{
    (void)state;
    struct server s;
    assert_int_equal(server_startl(&s, "127.0.0.1", "0", NULL), 0);
    char port[16];
    snprintf(port, sizeof port, "%u", s.port);

    struct tool_result r;
    tool_run(&r, (const char *const[]){"serve", "127.0.0.1", port, NULL}, CMD_TIMEOUT_MS);
    tool_expect_error("serve on a port in use", &r, 6, "ioplex serve: ", port, NULL);
    /* The same through an ADDRESS. */
    char addr[64];
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%s", port);
    tool_run(&r, (const char *const[]){"serve", addr, NULL}, CMD_TIMEOUT_MS);
    tool_expect_error("serve tcp:// on a port in use", &r, 6, "ioplex serve: ", port, NULL);

    /* The first server did not notice. */
    expect_ack(&s, "still here");
    assert_int_equal(server_stop(&s, 0), 0);
}

static void test_unknown_host(void **state)
{
    (void)state;
    struct tool_result r;
    tool_run(&r, (const char *const[]){"serve", "nosuchhost.invalid", "0", NULL}, CMD_TIMEOUT_MS);
    tool_expect_error("serve nosuchhost.invalid", &r, 3, "ioplex serve: ",
                 "nosuchhost.invalid", NULL);
    tool_run(&r, (const char *const[]){"connect", "nosuchhost.invalid", "80", NULL},
             CMD_TIMEOUT_MS);
    tool_expect_error("connect nosuchhost.invalid", &r, 3, "ioplex connect: ",
                 "nosuchhost.invalid", NULL);
}

static void test_unix_path_too_long(void **state)
{
    (void)state;
    char path[256];
    long_path(path, 200);
    struct tool_result r;
    tool_run(&r, (const char *const[]){"serve", "-U", path, NULL}, CMD_TIMEOUT_MS);
    tool_expect_error("serve -U <200 chars>", &r, 2, "ioplex serve: ", "too long", NULL);
    struct stat st;
    assert_int_not_equal(lstat(path, &st), 0); /* nothing was created */

    char addr[300];
    snprintf(addr, sizeof addr, "unix://%s", path);
    tool_run(&r, (const char *const[]){"serve", addr, NULL}, CMD_TIMEOUT_MS);
    tool_expect_error("serve unix://<200 chars>", &r, 2, "ioplex serve: ", "too long", NULL);

    tool_run(&r, (const char *const[]){"connect", "-U", path, NULL}, CMD_TIMEOUT_MS);
    tool_expect_error("connect -U <200 chars>", &r, 2, "ioplex connect: ", "too long", NULL);

    /* 108 bytes (sun_path's size) is one too many: the NUL must fit. */
    long_path(path, 108);
    tool_run(&r, (const char *const[]){"serve", "-U", path, NULL}, CMD_TIMEOUT_MS);
    tool_expect_error("serve -U <108 chars>", &r, 2, "ioplex serve: ", "too long", NULL);
}

/* ---- usage errors ----------------------------------------------------------- */

struct usage_case {
    const char *args[10];
    const char *needle; /* what the message must name */
};

static void run_usage_cases(const char *cmd, const struct usage_case *cases,
                            size_t n)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "ioplex %s: ", cmd);
    int failures = 0;
    for (size_t i = 0; i < n; i++) {
        const char *args[16];
        size_t k = 0;
        args[k++] = cmd;
        for (size_t j = 0; cases[i].args[j]; j++)
            args[k++] = cases[i].args[j];
        args[k] = NULL;
        char what[256] = "";
        for (size_t j = 0; args[j]; j++) {
            strncat(what, args[j], sizeof what - strlen(what) - 2);
            strncat(what, " ", sizeof what - strlen(what) - 1);
        }
        struct tool_result r;
        tool_run(&r, args, CMD_TIMEOUT_MS);
        int ok = r.code == 2 && count_lines(r.err) == 1 &&
                 strncmp(r.err, prefix, strlen(prefix)) == 0 &&
                 strstr(r.err, cases[i].needle);
        if (!ok) {
            fprintf(stderr, "FAILED: ioplex %s: want exit 2 and one line "
                    "'%s...%s...'\n", what, prefix, cases[i].needle);
            tool_show(what, &r);
            failures++;
        }
    }
    if (failures)
        fail_msg("%d of %zu usage errors of '%s' were not reported as one "
                 "line with exit 2", failures, n, cmd);
}

static void test_serve_usage_errors(void **state)
{
    (void)state;
    static const struct usage_case cases[] = {
        {{"-m", "nosuchmodel", "127.0.0.1", "0", NULL}, "nosuchmodel"},
        {{"-S", "nosuchservice", "127.0.0.1", "0", NULL}, "nosuchservice"},
        {{"-F", "nosuchframing", "127.0.0.1", "0", NULL}, "nosuchframing"},
        {{"-m", "fork", "-u", "127.0.0.1", "0", NULL}, "fork"},
        {{"-m", "thread", "-u", "127.0.0.1", "0", NULL}, "thread"},
        {{"--max-conns", "abc", "127.0.0.1", "0", NULL}, "abc"},
        {{"--max-conns", "-1", "127.0.0.1", "0", NULL}, "--max-conns"},
        {{"--max-frame", "0", "127.0.0.1", "0", NULL}, "--max-frame"},
        {{"--max-frame", "12x", "127.0.0.1", "0", NULL}, "12x"},
        {{"--drain-ms", "soon", "127.0.0.1", "0", NULL}, "--drain-ms"},
        {{"127.0.0.1", NULL}, "127.0.0.1"},        /* a host is no port */
        {{"127.0.0.1", "99999", NULL}, "99999"},   /* a port out of range */
        {{"bogus://x:1", NULL}, "bogus://x:1"},    /* unknown scheme */
        {{"[::1:80", NULL}, "[::1:80"},            /* malformed */
        {{"-U", "/tmp/x.sock", "127.0.0.1", NULL}, "-U"},
        {{NULL}, "address"},                       /* no address */
        {{"127.0.0.1", "0", "extra", NULL}, "too many"},
        {{"--no-such-flag", "127.0.0.1", "0", NULL}, "--no-such-flag"},
        {{"-Z", "127.0.0.1", "0", NULL}, "Z"},
        {{"127.0.0.1", "0", "-m", NULL}, "m'"},    /* option without value */
        {{"--", "-1", NULL}, "-1"},                /* neither a port nor a name */
        {{"--", "127.0.0.1", "-echo", NULL}, "-echo"},
        /* one member at a time: no member would ever hear another */
        {{"-S", "chat", "-m", "iterative", "127.0.0.1", "0", NULL}, "iterative"},
    };
    run_usage_cases("serve", cases, sizeof cases / sizeof cases[0]);
}

static void test_connect_usage_errors(void **state)
{
    (void)state;
    static const struct usage_case cases[] = {
        {{NULL}, "address"},
        {{"127.0.0.1", "80", "extra", NULL}, "too many"},
        {{"--no-such-flag", "127.0.0.1", "80", NULL}, "--no-such-flag"},
        {{"-w", "abc", "127.0.0.1", "80", NULL}, "abc"},
        {{"127.0.0.1", "99999", NULL}, "99999"},
        {{"bogus://x:1", NULL}, "bogus://x:1"},
    };
    run_usage_cases("connect", cases, sizeof cases / sizeof cases[0]);
}

static void test_top_level(void **state)
{
    (void)state;
    struct tool_result r;

    tool_run(&r, (const char *const[]){NULL}, CMD_TIMEOUT_MS);
    if (r.code != 2 || r.err[0] == '\0') {
        tool_show("ioplex", &r);
        fail_msg("ioplex without arguments: want exit 2 and usage on stderr");
    }

    tool_run(&r, (const char *const[]){"bogus", NULL}, CMD_TIMEOUT_MS);
    tool_expect_error("ioplex bogus", &r, 2, "ioplex", "bogus", NULL);

    tool_run(&r, (const char *const[]){"--version", NULL}, CMD_TIMEOUT_MS);
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.out, IOPLEX_VERSION));

    /* Every --help exits 0 on stdout and lists the exit codes. */
    static const char *const helps[][3] = {
        {"--help", NULL}, {"serve", "--help", NULL}, {"connect", "--help", NULL},
    };
    for (size_t i = 0; i < sizeof helps / sizeof helps[0]; i++) {
        tool_run(&r, helps[i], CMD_TIMEOUT_MS);
        int ok = r.code == 0 && r.err[0] == '\0';
        static const char *const codes[] = {"0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "6 "};
        const char *ec = strstr(r.out, "Exit codes");
        ok = ok && ec;
        for (size_t j = 0; ok && j < sizeof codes / sizeof codes[0]; j++)
            ok = strstr(ec, codes[j]) != NULL;
        if (!ok) {
            tool_show(helps[i][0], &r);
            fail_msg("ioplex %s %s: want exit 0 and the exit codes on stdout",
                     helps[i][0], helps[i][1] ? helps[i][1] : "");
        }
    }

    /* serve --help lists the models it can run, and the services. */
    tool_run(&r, (const char *const[]){"serve", "--help", NULL}, CMD_TIMEOUT_MS);
    assert_int_equal(r.code, 0);
    for (const struct iop_model_info *const *m = iop_models(); *m; m++)
        if (!strstr(r.out, (*m)->name))
            fail_msg("serve --help does not list the model '%s'", (*m)->name);
    static const char *const models[] = {"iterative", "fork", "thread"};
    for (size_t i = 0; i < 3; i++)
        assert_non_null(strstr(r.out, models[i]));
    static const char *const services[] = {"ack", "echo", "discard", "daytime",
                                           "chargen", "bytes"};
    for (size_t i = 0; i < 6; i++)
        assert_non_null(strstr(r.out, services[i]));
}

/* ---- connect: refused, missing path, idle timeout --------------------------- */

static void test_connect_refused(void **state)
{
    (void)state;
    char port[16];
    snprintf(port, sizeof port, "%u", harness_free_port(SOCK_STREAM));
    struct tool_result r;
    tool_run(&r, (const char *const[]){"connect", "127.0.0.1", port, NULL}, CMD_TIMEOUT_MS);
    tool_expect_error("connect to a closed port", &r, 4, "ioplex connect: ", port, NULL);

    char path[256];
    assert_non_null(harness_tmp_path(path, sizeof path, "missing"));
    tool_run(&r, (const char *const[]){"connect", "-U", path, NULL}, CMD_TIMEOUT_MS);
    tool_expect_error("connect -U to a missing path", &r, 4, "ioplex connect: ", path, NULL);
    char addr[300];
    snprintf(addr, sizeof addr, "unix://%s", path);
    tool_run(&r, (const char *const[]){"connect", addr, NULL}, CMD_TIMEOUT_MS);
    tool_expect_error("connect unix:// to a missing path", &r, 4, "ioplex connect: ", path, NULL);
}

static void test_connect_idle_timeout(void **state)
{
    (void)state;
    /* A listener that never accepts and never answers: the kernel
     * completes the connection, then nothing ever comes. */
    int lfd = keep_fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    assert_true(lfd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(listen(lfd, 8), 0);
    socklen_t len = sizeof sin;
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
    char port[16];
    snprintf(port, sizeof port, "%u", ntohs(sin.sin_port));

    struct tool_result r;
    tool_run(&r, (const char *const[]){"connect", "-w", "1", "127.0.0.1", port, NULL},
             CMD_TIMEOUT_MS);
    tool_expect_error("connect -w 1 to a silent peer", &r, 5, "ioplex connect: ", NULL);
    if (r.ms < 800 || r.ms > 5000) {
        tool_show("connect -w 1", &r);
        fail_msg("connect -w 1 gave up after %lld ms, want about 1000", r.ms);
    }
}

/* ---- oversized frames ----------------------------------------------------- */

static void put_be32(char *p, uint32_t v)
{
    p[0] = (char)(v >> 24);
    p[1] = (char)(v >> 16);
    p[2] = (char)(v >> 8);
    p[3] = (char)v;
}

/* A message framed for `framing` ("line" or "len32"); returns its length. */
static size_t frame(const char *framing, const char *payload, size_t n, char *out)
{
    if (strcmp(framing, "line") == 0) {
        memcpy(out, payload, n);
        out[n] = '\n';
        return n + 1;
    }
    put_be32(out, (uint32_t)n);
    memcpy(out + 4, payload, n);
    return n + 4;
}

/* Send one framed message and expect the echo server to return it as is. */
static void echo_roundtrip(int fd, const char *framing, const char *payload, size_t n)
{
    char msg[512], back[512];
    size_t len = frame(framing, payload, n, msg);
    assert_int_equal(send_all(fd, msg, len), 0);
    ssize_t got = recv_exact(fd, back, len, HARNESS_IO_TIMEOUT_MS);
    assert_int_equal(got, (ssize_t)len);
    assert_memory_equal(back, msg, len);
}

static void oversized_frame(const char *model, const char *framing)
{
    struct server s;
    assert_int_equal(server_startl(&s, "-m", model, "-S", "echo", "-F", framing,
                                   "--max-frame", "100", "127.0.0.1", "0", NULL),
                     0);
    char max[100], over[200];
    memset(max, 'm', sizeof max);
    memset(over, 'x', sizeof over);

    /* `good` is being served when the offender arrives. */
    int good = client_connect(&s);
    assert_true(good >= 0);
    echo_roundtrip(good, framing, "before", 6);
    echo_roundtrip(good, framing, max, sizeof max); /* the limit itself is fine */

    /* The offenders, each its own connection. */
    char bad_msgs[3][256];
    size_t bad_lens[3];
    size_t n_bad = 0;
    if (strcmp(framing, "line") == 0) {
        /* 101 bytes and a newline: one byte over. */
        bad_lens[n_bad] = frame(framing, over, 101, bad_msgs[n_bad]);
        n_bad++;
        /* 200 bytes and no newline yet: bound to be too long. */
        memcpy(bad_msgs[n_bad], over, 200);
        bad_lens[n_bad++] = 200;
    } else {
        /* A header announcing 1 GiB, and a few bytes of it. */
        put_be32(bad_msgs[n_bad], 1u << 30);
        memcpy(bad_msgs[n_bad] + 4, "xxxx", 4);
        bad_lens[n_bad++] = 8;
        /* One byte over the limit, complete. */
        bad_lens[n_bad] = frame(framing, over, 101, bad_msgs[n_bad]);
        n_bad++;
    }
    for (size_t i = 0; i < n_bad; i++) {
        int bad = client_connect(&s);
        assert_true(bad >= 0);
        assert_int_equal(send_all(bad, bad_msgs[i], bad_lens[i]), 0);
        int e = expect_eof(bad, HARNESS_IO_TIMEOUT_MS);
        if (e != 1) {
            server_dump(&s);
            fail_msg("-m %s -F %s: oversized message %zu: want end-of-file, got %s",
                     model, framing, i, e == 0 ? "data" : "timeout or reset");
        }
        client_close(bad);
        /* Only that connection closed: `good` is still served. */
        echo_roundtrip(good, framing, "during", 6);
    }
    assert_true(server_running(&s));

    /* A new client afterwards is served too. */
    int late = client_connect(&s);
    assert_true(late >= 0);
    echo_roundtrip(late, framing, "after", 5);
    client_close(late);
    echo_roundtrip(good, framing, "last", 4);
    client_close(good);

    if (!server_wait_stderr(&s, "longer than 100", HARNESS_IO_TIMEOUT_MS)) {
        server_dump(&s);
        fail_msg("the server did not say why it closed the connection");
    }
    assert_int_equal(server_stop(&s, 0), 0);
}

static void test_oversized_line_thread(void **state) { (void)state; oversized_frame("thread", "line"); }
static void test_oversized_line_fork(void **state) { (void)state; oversized_frame("fork", "line"); }
static void test_oversized_len32_thread(void **state) { (void)state; oversized_frame("thread", "len32"); }
static void test_oversized_len32_fork(void **state) { (void)state; oversized_frame("fork", "len32"); }

/* Iterative: no second client at once, but the offender is closed and the
 * next client is served. */
static void test_oversized_iterative(void **state)
{
    (void)state;
    static const char *const framings[] = {"line", "len32"};
    for (size_t f = 0; f < 2; f++) {
        struct server s;
        assert_int_equal(server_startl(&s, "-m", "iterative", "-S", "echo", "-F",
                                       framings[f], "--max-frame", "100",
                                       "127.0.0.1", "0", NULL),
                         0);
        int bad = client_connect(&s);
        assert_true(bad >= 0);
        char hdr[8];
        put_be32(hdr, 1u << 30);
        memcpy(hdr + 4, "xxxx", 4);
        char line[300];
        memset(line, 'x', sizeof line);
        if (f == 0)
            assert_int_equal(send_all(bad, line, sizeof line), 0);
        else
            assert_int_equal(send_all(bad, hdr, sizeof hdr), 0);
        assert_int_equal(expect_eof(bad, HARNESS_IO_TIMEOUT_MS), 1);
        client_close(bad);
        int next = client_connect(&s);
        assert_true(next >= 0);
        echo_roundtrip(next, framings[f], "next", 4);
        client_close(next);
        assert_int_equal(server_stop(&s, 0), 0);
    }
}

/* ---- --max-conns ---------------------------------------------------------- */

static void max_conns(const char *model)
{
    struct server s;
    assert_int_equal(server_startl(&s, "-m", model, "-S", "echo", "--max-conns", "1",
                                   "127.0.0.1", "0", NULL),
                     0);
    int first = client_connect(&s);
    assert_true(first >= 0);
    echo_roundtrip(first, "line", "one", 3); /* accepted and being served */

    /* A second client at the same time: accepted and closed at once, with
     * no answer (it sends nothing, so the close is a clean FIN). */
    int second = client_connect(&s);
    assert_true(second >= 0);
    int e = expect_eof(second, HARNESS_IO_TIMEOUT_MS);
    if (e != 1) {
        server_dump(&s);
        fail_msg("-m %s --max-conns 1: the second client got %s, want end-of-file",
                 model, e == 0 ? "data" : "a timeout or reset");
    }
    client_close(second);
    assert_true(server_wait_stderr(&s, "max-conns", HARNESS_IO_TIMEOUT_MS));

    /* The first is still served. */
    echo_roundtrip(first, "line", "two", 3);
    client_close(first);

    /* Once it has gone, a new client is served (the server notices the
     * close asynchronously: retry, bounded). */
    long long deadline = now_ms() + 5000;
    int served = 0;
    while (!served && now_ms() < deadline) {
        int fd = client_connect(&s);
        assert_true(fd >= 0);
        char back[8];
        assert_int_equal(send_all(fd, "three\n", 6), 0);
        ssize_t n = recv_exact(fd, back, 6, 2000);
        served = n == 6 && memcmp(back, "three\n", 6) == 0;
        client_close(fd);
        if (!served)
            sleep_ms(50);
    }
    if (!served) {
        server_dump(&s);
        fail_msg("-m %s --max-conns 1: no client served after the first left", model);
    }
    assert_int_equal(server_stop(&s, 0), 0);
}

static void test_max_conns_thread(void **state) { (void)state; max_conns("thread"); }
static void test_max_conns_fork(void **state) { (void)state; max_conns("fork"); }

/* ---- Unix socket files ------------------------------------------------------ */

static void test_unix_path_is_regular_file(void **state)
{
    (void)state;
    char path[256];
    assert_non_null(harness_tmp_path(path, sizeof path, "regular"));
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "keep me\n", 8), 8);
    close(fd);

    struct tool_result r;
    tool_run(&r, (const char *const[]){"serve", "-U", path, NULL}, CMD_TIMEOUT_MS);
    tool_expect_error("serve -U <regular file>", &r, 6, "ioplex serve: ", path, NULL);
    tool_run(&r, (const char *const[]){"serve", "-m", "iterative", "-u", "-U", path, NULL},
             CMD_TIMEOUT_MS);
    tool_expect_error("serve -u -U <regular file>", &r, 6, "ioplex serve: ", path, NULL);

    /* The file is untouched. */
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_size, 8);
    char buf[16] = "";
    fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, buf, sizeof buf), 8);
    close(fd);
    assert_memory_equal(buf, "keep me\n", 8);
    unlink(path);
}

/* A socket path in a directory that does not exist cannot be bound (6),
 * which is not "no server there" (4) as it is for connect. */
static void test_unix_path_missing_directory(void **state)
{
    (void)state;
    char path[256], sock[300];
    assert_non_null(harness_tmp_path(path, sizeof path, "no-such-dir"));
    snprintf(sock, sizeof sock, "%s/x.sock", path);
    struct tool_result r;
    tool_run(&r, (const char *const[]){"serve", "-U", sock, NULL}, CMD_TIMEOUT_MS);
    tool_expect_error("serve -U <missing dir>/x.sock", &r, 6, "ioplex serve: ", sock, NULL);
    tool_run(&r, (const char *const[]){"serve", "-m", "iterative", "-u", "-U", sock, NULL},
             CMD_TIMEOUT_MS);
    tool_expect_error("serve -u -U <missing dir>/x.sock", &r, 6, "ioplex serve: ", sock,
                      NULL);
}

static void test_unix_stale_socket_replaced(void **state)
{
    (void)state;
    char path[256];
    assert_non_null(harness_tmp_path(path, sizeof path, "stale"));
    struct server s;
    assert_int_equal(server_startl(&s, "-U", path, NULL), 0);
    expect_ack(&s, "first life");

    /* A live server's socket is not taken over. */
    struct tool_result r;
    tool_run(&r, (const char *const[]){"serve", "-U", path, NULL}, CMD_TIMEOUT_MS);
    tool_expect_error("serve -U <a live server's socket>", &r, 6, "ioplex serve: ",
                 path, NULL);
    expect_ack(&s, "still first");

    /* Killed, it leaves its socket file behind... */
    server_kill(&s);
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));

    /* ...which the next server replaces. */
    struct server s2;
    assert_int_equal(server_startl(&s2, "-U", path, NULL), 0);
    expect_ack(&s2, "second life");
    assert_int_equal(server_stop(&s2, 0), 0);
    /* And a server that stops normally removes its socket. */
    assert_int_not_equal(lstat(path, &st), 0);
    assert_int_equal(errno, ENOENT);
}

/* ---- stopping ------------------------------------------------------------- */

/* One SIGTERM: the message already received is answered, then exit 0. */
static void graceful_stop(const char *model)
{
    struct server s;
    assert_int_equal(server_startl(&s, "-m", model, "127.0.0.1", "0", NULL), 0);
    int fd = client_connect(&s);
    assert_true(fd >= 0);
    /* A last line without its newline: the stop ends the stream, and the
     * server still answers it. */
    assert_int_equal(send_all(fd, "unfinished", 10), 0);
    sleep_ms(200); /* let the server read it */
    assert_int_equal(kill(s.pid, SIGTERM), 0);
    char buf[128];
    ssize_t n = recv_all(fd, buf, sizeof buf, HARNESS_IO_TIMEOUT_MS);
    if (n != 19 || strcmp(buf, "I got your message\n") != 0) {
        server_dump(&s);
        fail_msg("-m %s: after SIGTERM the pending message got %zd bytes, want the ack",
                 model, n);
    }
    client_close(fd);
    int status = server_wait_exit(&s, 5000);
    if (status != 0) {
        server_dump(&s);
        fail_msg("-m %s: SIGTERM: exit status %d, want 0", model, status);
    }
    assert_true(server_wait_output(&s, "Here is the message: unfinished", 1000));
}

static void test_graceful_stop(void **state)
{
    (void)state;
    graceful_stop("thread");
    graceful_stop("iterative");
    graceful_stop("fork");
}

/*
 * Fill the path from a client that never reads to the server: send until
 * nothing more is taken for `quiet_ms`. The echo server is then blocked in
 * send() with its answer, and its own receive buffer is full. Returns the
 * bytes sent.
 */
static size_t stuff_until_blocked(int fd, int quiet_ms)
{
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0);
    assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
    static char chunk[65536];
    memset(chunk, 'z', sizeof chunk);
    size_t total = 0;
    long long deadline = now_ms() + 10000;
    while (now_ms() < deadline && total < ((size_t)256 << 20)) {
        ssize_t n = send(fd, chunk, sizeof chunk, MSG_NOSIGNAL);
        if (n > 0) {
            total += (size_t)n;
            continue;
        }
        assert_true(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, quiet_ms) == 0)
            return total; /* nothing taken for quiet_ms: both sides are full */
    }
    fail_msg("the echo server kept taking data (%zu bytes) from a client "
             "that never reads", total);
    return total;
}

static void test_sigterm_twice(void **state)
{
    (void)state;
    struct server s;
    assert_int_equal(server_startl(&s, "-m", "thread", "-S", "echo", "--drain-ms",
                                   "60000", "127.0.0.1", "0", NULL),
                     0);
    int fd = client_connect(&s);
    assert_true(fd >= 0);
    /* The echo flows, then the client stops reading and keeps sending. */
    char buf[4];
    assert_int_equal(send_all(fd, "ping", 4), 0);
    assert_int_equal(recv_exact(fd, buf, 4, HARNESS_IO_TIMEOUT_MS), 4);
    size_t sent = stuff_until_blocked(fd, 300);
    assert_true(sent > 0);

    assert_int_equal(kill(s.pid, SIGTERM), 0);
    /* A graceful stop answers what was received: the server keeps trying
     * to echo to a client that does not read, for up to --drain-ms. */
    sleep_ms(500);
    if (!server_running(&s)) {
        server_dump(&s);
        fail_msg("the server exited on the first SIGTERM (status %d) while a "
                 "client still had %zu bytes of answer pending and --drain-ms "
                 "was 60000", s.status, sent);
    }
    long long t0 = now_ms();
    assert_int_equal(kill(s.pid, SIGTERM), 0);
    int status = server_wait_exit(&s, 5000);
    long long ms = now_ms() - t0;
    if (status < 0) {
        server_dump(&s);
        fail_msg("a second SIGTERM did not end the server within 5 s");
    }
    /* "exits at once": 128 + SIGTERM, as a shell reports it. */
    assert_int_equal(status, 128 + SIGTERM);
    assert_true(ms < 5000);
    client_close(fd);
}

/* A producer (chargen) whose client never reads does not hold a stop:
 * nothing was received that needs an answer, so one SIGTERM ends it. */
static void test_sigterm_chargen_not_reading(void **state)
{
    (void)state;
    struct server s;
    assert_int_equal(server_startl(&s, "-m", "thread", "-S", "chargen", "--drain-ms",
                                   "3000", "127.0.0.1", "0", NULL),
                     0);
    int fd = client_connect(&s);
    assert_true(fd >= 0);
    char buf[74];
    assert_int_equal(recv_exact(fd, buf, sizeof buf, HARNESS_IO_TIMEOUT_MS),
                     (ssize_t)sizeof buf);
    sleep_ms(300); /* the socket buffers fill; chargen blocks in send */
    long long t0 = now_ms();
    /* Whether the kernel lets the blocked send finish or the drain bound
     * (3 s) runs out, the server ends by itself with status 0. */
    int status = server_stop(&s, 8000);
    if (status != 0) {
        server_dump(&s);
        fail_msg("chargen with a client that does not read: SIGTERM gave "
                 "status %d, want 0", status);
    }
    assert_true(now_ms() - t0 < 8000);
    client_close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_port_in_use, teardown),
        cmocka_unit_test_teardown(test_unknown_host, teardown),
        cmocka_unit_test_teardown(test_unix_path_too_long, teardown),
        cmocka_unit_test_teardown(test_serve_usage_errors, teardown),
        cmocka_unit_test_teardown(test_connect_usage_errors, teardown),
        cmocka_unit_test_teardown(test_top_level, teardown),
        cmocka_unit_test_teardown(test_connect_refused, teardown),
        cmocka_unit_test_teardown(test_connect_idle_timeout, teardown),
        cmocka_unit_test_teardown(test_oversized_line_thread, teardown),
        cmocka_unit_test_teardown(test_oversized_line_fork, teardown),
        cmocka_unit_test_teardown(test_oversized_len32_thread, teardown),
        cmocka_unit_test_teardown(test_oversized_len32_fork, teardown),
        cmocka_unit_test_teardown(test_oversized_iterative, teardown),
        cmocka_unit_test_teardown(test_max_conns_thread, teardown),
        cmocka_unit_test_teardown(test_max_conns_fork, teardown),
        cmocka_unit_test_teardown(test_unix_path_is_regular_file, teardown),
        cmocka_unit_test_teardown(test_unix_path_missing_directory, teardown),
        cmocka_unit_test_teardown(test_unix_stale_socket_replaced, teardown),
        cmocka_unit_test_teardown(test_graceful_stop, teardown),
        cmocka_unit_test_teardown(test_sigterm_twice, teardown),
        cmocka_unit_test_teardown(test_sigterm_chargen_not_reading, teardown),
    };
    return cmocka_run_group_tests_name("integration.errors", tests, NULL, NULL);
}
