/*
 * Socket activation, against the real tool: systemd-socket-activate makes
 * the sockets and execs `ioplex serve` with LISTEN_PID, LISTEN_FDS and
 * LISTEN_FDNAMES (sd_listen_fds(3)); with --inetd -a it accepts and starts
 * `ioplex serve --inetd` per connection on standard input. Type=notify:
 * the test is the service manager, receiving READY=1 and STOPPING=1 on a
 * datagram socket of its own. The example units in examples/systemd are
 * checked by systemd-analyze verify (which needs no systemd running).
 *
 * systemd-socket-activate (systemd 252) binds, then waits for the first
 * client before it execs the server: each test connects first, then
 * reads the server's address line.
 */
#include "harness.h"
#include "local_sockets.h"
#include "tool.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define IO_MS HARNESS_IO_TIMEOUT_MS

static int teardown(void **state)
{
    local_close_all();
    return harness_teardown(state);
}

/* "systemd-socket-activate WRAP... -- ioplex serve ARGS...", started. */
static void start_activated(struct server *s, const char *const wrap[],
                            const char *const args[])
{
    const char *argv[64];
    size_t n = 0;
    argv[n++] = "systemd-socket-activate";
    for (size_t i = 0; wrap[i]; i++)
        argv[n++] = wrap[i];
    argv[n++] = ioplex_bin();
    argv[n++] = "serve";
    for (size_t i = 0; args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    assert_int_equal(server_start_cmd(s, argv), 0);
    /* Bound: a datagram sent before would be lost. */
    CHECK(s, server_wait_stderr(s, "Listening on", HARNESS_START_TIMEOUT_MS));
}

static const char *fmt(char *buf, size_t cap, const char *f, ...)
    __attribute__((format(printf, 3, 4)));
static const char *fmt(char *buf, size_t cap, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, cap, f, ap);
    va_end(ap);
    return buf;
}

/* TCP listeners on 127.0.0.1:port in this network namespace. */
static int count_tcp_listeners(unsigned port)
{
    char text[1 << 16], needle[32];
    if (proc_read_text("/proc/net/tcp", text, sizeof text) < 0)
        return -1;
    snprintf(needle, sizeof needle, "0100007F:%04X 00000000:0000 0A", port);
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* One server, a TCP and a Unix listener passed together, named: each
 * serves, under every model that takes several listeners. */
static void test_two_sockets_one_server(void **state)
{
    (void)state;
    static const char *const models[] = {"epoll", "poll", "select", "iterative",
                                         "thread", "pool", NULL};
    for (size_t m = 0; models[m]; m++) {
        char path[128], lport[64], lunix[160];
        unsigned port = harness_free_port(SOCK_STREAM);
        assert_non_null(harness_tmp_path(path, sizeof path, "act"));
        const char *wrap[] = {"-l", fmt(lport, sizeof lport, "127.0.0.1:%u", port),
                              "-l", fmt(lunix, sizeof lunix, "%s", path),
                              "--fdname=web:local", NULL};
        const char *args[] = {"-m", models[m], "-S", "echo", NULL};
        struct server s;
        start_activated(&s, wrap, args);
        int u = local_connect_unix(path, IO_MS); /* systemd-socket-activate execs now */
        assert_true(u >= 0);
        assert_int_equal(server_wait_address(&s, HARNESS_START_TIMEOUT_MS), 0);
        CHECK(&s, strstr(s.err, "socket activation: 2 sockets passed (3 'web', 4 'local')"));
        CHECK(&s, server_wait_stderr(&s, fmt(lport, sizeof lport, "echo on tcp://127.0.0.1:%u",
                                             port), IO_MS));
        CHECK(&s, server_wait_stderr(&s, fmt(lunix, sizeof lunix, "echo on unix://%s", path),
                                     IO_MS));
        CHECK(&s, echo_line(u, "over the unix socket\n", IO_MS));
        local_close(u);
        int t = local_connect_ip(SOCK_STREAM, port, IO_MS);
        CHECK(&s, t >= 0 && echo_line(t, "over tcp\n", IO_MS));
        local_close(t);
        /* The sockets are systemd-socket-activate's: bound once, by it. */
        CHECK(&s, count_tcp_listeners(port) == 1);
        server_stop_clean(&s);
        /* The socket file is whoever made it's to remove: still there. */
        struct stat st;
        assert_int_equal(lstat(path, &st), 0);
        unlink(path);
    }
}

/* The models that take one listener serve one passed in (and uring's
 * rings share it with -w 2). */
static void test_one_socket_other_models(void **state)
{
    (void)state;
    static const char *const models[] = {"fork", "prefork", "aio", "uring", NULL};
    for (size_t m = 0; models[m]; m++) {
        if (model_serves_datagrams(models[m]) < 0)
            continue; /* not compiled in (uring without liburing) */
        char l[64];
        unsigned port = harness_free_port(SOCK_STREAM);
        const char *wrap[] = {"-l", fmt(l, sizeof l, "127.0.0.1:%u", port), NULL};
        const char *args[] = {"-m", models[m], "-w", "2", "-S", "echo", NULL};
        struct server s;
        start_activated(&s, wrap, args);
        /* one after the other: prefork:2 serves two at a time */
        for (int i = 0; i < 4; i++) {
            int c = local_connect_ip(SOCK_STREAM, port, IO_MS);
            assert_true(c >= 0);
            if (i == 0)
                assert_int_equal(server_wait_address(&s, HARNESS_START_TIMEOUT_MS), 0);
            CHECK(&s, echo_line(c, "one listener\n", IO_MS));
            local_close(c);
        }
        CHECK(&s, count_tcp_listeners(port) == 1);
        server_stop_clean(&s);
    }
}

/* -w 4: the workers share the one passed listener (they cannot bind
 * SO_REUSEPORT sockets of their own beside it), and all of them serve. */
static void test_workers_share_listener(void **state)
{
    (void)state;
    char l[64];
    unsigned port = harness_free_port(SOCK_STREAM);
    const char *wrap[] = {"-l", fmt(l, sizeof l, "127.0.0.1:%u", port), NULL};
    const char *args[] = {"-m", "epoll", "-w", "4", "-S", "echo", NULL};
    struct server s;
    start_activated(&s, wrap, args);
    int fds[16];
    fds[0] = local_connect_ip(SOCK_STREAM, port, IO_MS);
    assert_true(fds[0] >= 0);
    assert_int_equal(server_wait_address(&s, HARNESS_START_TIMEOUT_MS), 0);
    for (int i = 1; i < 16; i++)
        CHECK(&s, (fds[i] = local_connect_ip(SOCK_STREAM, port, IO_MS)) >= 0);
    for (int i = 0; i < 16; i++)
        CHECK(&s, echo_line(fds[i], "shared\n", IO_MS));
    CHECK(&s, count_tcp_listeners(port) == 1);
    /* One worker may have served them all before the others started:
     * wait (bounded) for all four. */
    long long deadline = now_ms() + IO_MS;
    while (count_threads(s.pid) < 4 && now_ms() < deadline)
        sleep_ms(20);
    CHECK(&s, count_threads(s.pid) == 4);
    server_stop_clean(&s);
}

/* A datagram socket passed in (--datagram), under an event loop and the
 * iterative server. */
static void test_datagram(void **state)
{
    (void)state;
    static const char *const models[] = {"epoll", "iterative", NULL};
    for (size_t m = 0; models[m]; m++) {
        char l[64], buf[64];
        unsigned port = harness_free_port(SOCK_DGRAM);
        const char *wrap[] = {"--datagram", "-l", fmt(l, sizeof l, "127.0.0.1:%u", port),
                              NULL};
        const char *args[] = {"-m", models[m], "-S", "echo", NULL};
        struct server s;
        start_activated(&s, wrap, args);
        int u = local_connect_ip(SOCK_DGRAM, port, IO_MS);
        assert_true(u >= 0);
        /* The first datagram wakes systemd-socket-activate, then the server
         * reads it. */
        assert_int_equal(send(u, "ping", 4, 0), 4);
        assert_int_equal(server_wait_address(&s, HARNESS_START_TIMEOUT_MS), 0);
        CHECK(&s, server_wait_stderr(&s, fmt(buf, sizeof buf, "echo on udp://127.0.0.1:%u",
                                             port), IO_MS));
        ssize_t n = recv_dgram(u, buf, sizeof buf, IO_MS);
        CHECK(&s, n == 4 && memcmp(buf, "ping", 4) == 0);
        server_stop_clean(&s);
    }
}

/* What does not fit is one clear line and exit 2, before serving. */
static void expect_refused(const char *const wrap[], const char *const args[], int dgram,
                           unsigned port, const char *needle1, const char *needle2)
{
    struct server s;
    start_activated(&s, wrap, args);
    int c = local_connect_ip(dgram ? SOCK_DGRAM : SOCK_STREAM, port, IO_MS);
    assert_true(c >= 0);
    if (dgram)
        assert_int_equal(send(c, "x", 1, 0), 1);
    int st = server_wait_exit(&s, HARNESS_STOP_TIMEOUT_MS);
    server_pump(&s);
    CHECK(&s, st == 2);
    CHECK(&s, strstr(s.err, needle1) && strstr(s.err, needle2));
    CHECK(&s, server_stderr_count(&s, "ioplex serve: ") == 1);
    server_stop(&s, 0);
}

static void test_misfits(void **state)
{
    (void)state;
    char l[64], l2[160], path[128];
    unsigned port = harness_free_port(SOCK_STREAM);
    fmt(l, sizeof l, "127.0.0.1:%u", port);
    {   /* a stream socket, and -u */
        const char *wrap[] = {"-l", l, NULL};
        const char *args[] = {"-u", "-S", "echo", NULL};
        expect_refused(wrap, args, 0, port, "descriptor 3 ('unknown') is a stream socket",
                       "-u asks for datagrams");
    }
    {   /* an address besides the sockets passed */
        const char *wrap[] = {"-l", l, NULL};
        const char *args[] = {"-S", "echo", "127.0.0.1", "7", NULL};
        expect_refused(wrap, args, 0, port, "socket activation", "give no address");
    }
    /* Models that accept from one listener refuse two, in one line. */
    static const char *const one[] = {"fork", "prefork", "aio", NULL};
    for (size_t m = 0; one[m]; m++) {
        assert_non_null(harness_tmp_path(path, sizeof path, "one"));
        const char *wrap[] = {"-l", l, "-l", fmt(l2, sizeof l2, "%s", path), NULL};
        const char *args[] = {"-m", one[m], "-S", "echo", NULL};
        char want[64];
        expect_refused(wrap, args, 0, port,
                       fmt(want, sizeof want, "model '%s' accepts from one listener", one[m]),
                       "not 2");
    }
    {   /* a datagram socket, and a model with no datagram form */
        unsigned dport = harness_free_port(SOCK_DGRAM);
        char d[64];
        const char *wrap[] = {"--datagram", "-l", fmt(d, sizeof d, "127.0.0.1:%u", dport),
                              NULL};
        const char *args[] = {"-m", "thread", "-S", "echo", NULL};
        expect_refused(wrap, args, 1, dport, "model 'thread' does not serve udp", "iterative");
    }
    if (have_ipv6_loopback()) { /* an IPv6 socket, and -4 */
        unsigned p6 = harness_free_port(SOCK_STREAM);
        char a6[64];
        const char *wrap[] = {"-l", fmt(a6, sizeof a6, "[::1]:%u", p6), NULL};
        const char *args[] = {"-4", "-S", "echo", NULL};
        struct server s;
        start_activated(&s, wrap, args);
        struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)p6),
                                   .sin6_addr = IN6ADDR_LOOPBACK_INIT};
        assert_true(local_try_connect(AF_INET6, SOCK_STREAM, (struct sockaddr *)&in6,
                                      sizeof in6, IO_MS) >= 0);
        CHECK(&s, server_wait_exit(&s, HARNESS_STOP_TIMEOUT_MS) == 2);
        server_pump(&s);
        CHECK(&s, strstr(s.err, "is IPv6") && strstr(s.err, "-4 asks for IPv4"));
        server_stop(&s, 0);
    }
}

/* LISTEN_PID naming another process: the variables are not ours (they
 * were left for a parent), so serve binds its own address as usual. */
static void test_not_ours(void **state)
{
    (void)state;
    setenv("LISTEN_PID", "1", 1);
    setenv("LISTEN_FDS", "1", 1);
    setenv("LISTEN_FDNAMES", "web", 1);
    struct server s;
    int r = server_startl(&s, "-S", "echo", "127.0.0.1", "0", NULL);
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    assert_int_equal(r, 0);
    CHECK(&s, !strstr(s.err, "socket activation"));
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0 && echo_line(fd, "mine\n", IO_MS));
    client_close(fd);
    server_stop_clean(&s);
}

/* Accept=yes, inetd style: a `serve --inetd` per connection, the
 * connection on standard input and output. The ack service's own line
 * ("Here is the message: ...") goes to syslog, not into the connection:
 * the client gets exactly the answer. */
static void test_inetd_accept(void **state)
{
    (void)state;
    char l[64];
    unsigned port = harness_free_port(SOCK_STREAM);
    const char *wrap[] = {"--inetd", "-a", "-l", fmt(l, sizeof l, "127.0.0.1:%u", port), NULL};
    const char *args[] = {"--inetd", "-S", "ack", NULL};
    struct server s;
    start_activated(&s, wrap, args);
    for (int i = 0; i < 3; i++) {
        int c = local_connect_ip(SOCK_STREAM, port, IO_MS);
        assert_true(c >= 0);
        CHECK(&s, send_all(c, "hello\n", 6) == 0);
        CHECK(&s, recv_ack(c, IO_MS));
        local_close(c);
    }
    /* Each connection was its own `serve --inetd`, which said so (its
     * stderr is the test's: systemd-socket-activate passes stdin and stdout). */
    long long deadline = now_ms() + IO_MS;
    while (server_stderr_count(&s, "inetd: 1 socket passed (0 'stdin')") < 3 &&
           now_ms() < deadline) {
        server_pump(&s);
        sleep_ms(20);
    }
    CHECK(&s, server_stderr_count(&s, "inetd: 1 socket passed (0 'stdin')") == 3);
    CHECK(&s, server_stderr_count(&s, "(model iterative)") == 3);
    server_stop(&s, 0); /* systemd-socket-activate itself; it has no exit code to keep */
}

/* Accept=yes without StandardInput=socket: the connection comes as
 * descriptor 3 under LISTEN_FDS=1, and is served as inetd's would be;
 * --inetd with another model than iterative is refused in one line. */
static void test_accept_yes_listen_fds(void **state)
{
    (void)state;
    char l[64];
    unsigned port = harness_free_port(SOCK_STREAM);
    const char *wrap[] = {"-a", "-l", fmt(l, sizeof l, "127.0.0.1:%u", port), NULL};
    const char *args[] = {"-S", "echo", NULL};
    struct server s;
    start_activated(&s, wrap, args);
    for (int i = 0; i < 2; i++) {
        int c = local_connect_ip(SOCK_STREAM, port, IO_MS);
        assert_true(c >= 0);
        CHECK(&s, echo_line(c, "accepted\n", IO_MS));
        CHECK(&s, shutdown(c, SHUT_WR) == 0 && expect_eof(c, IO_MS) == 1);
        local_close(c);
    }
    CHECK(&s, server_stderr_count(&s, "(model iterative)") == 2);
    server_stop(&s, 0);

    const char *wrap2[] = {"--inetd", "-a", "-l", fmt(l, sizeof l, "127.0.0.1:%u", port), NULL};
    const char *args2[] = {"--inetd", "-m", "epoll", "-S", "echo", NULL};
    start_activated(&s, wrap2, args2);
    int c = local_connect_ip(SOCK_STREAM, port, IO_MS);
    assert_true(c >= 0);
    CHECK(&s, expect_eof(c, IO_MS) == 1); /* closed unserved */
    CHECK(&s, server_wait_stderr(&s, "inetd's socket is served by the iterative model, "
                                 "not 'epoll'", IO_MS));
    CHECK(&s, server_wait_stderr(&s, "died with code 2", IO_MS));
    server_stop(&s, 0);
}

/* serve under `sh -c SCRIPT`, which sets the variables for its own PID
 * and then execs the tool in place: LISTEN_PID is then the tool's. */
static void run_sh(struct tool_result *r, const char *script, const char *const args[])
{
    char full[512];
    snprintf(full, sizeof full, "%s; exec \"$0\" \"$@\"", script);
    const char *wrapper[] = {"sh", "-c", full, NULL};
    tool_run_under(r, wrapper, args, 10000);
}

/* What the environment or the descriptors get wrong is one line, exit 2. */
static void test_bad_environment(void **state)
{
    (void)state;
    static struct tool_result r;
    const char *args[] = {"serve", "-S", "echo", NULL};
    run_sh(&r, "export LISTEN_PID=$$ LISTEN_FDS=two", args);
    tool_expect_error("LISTEN_FDS=two", &r, 2, "ioplex serve: socket activation: ",
                      "LISTEN_FDS wants a number", "'two'", NULL);
    run_sh(&r, "export LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES=a:b; exec 3</dev/null 4<&-",
           args);
    tool_expect_error("descriptor 3 a file", &r, 2, "ioplex serve: socket activation: ",
                      "descriptor 3 ('a') is not a socket", NULL);
    run_sh(&r, "export LISTEN_PID=$$ LISTEN_FDS=1; exec 3<&-", args);
    tool_expect_error("descriptor 3 closed", &r, 2, "ioplex serve: socket activation: ",
                      "descriptor 3 ('unknown') is not open", NULL);
    const char *inetd[] = {"serve", "--inetd", "-S", "echo", NULL};
    run_sh(&r, "exec 0</dev/null", inetd);
    tool_expect_error("--inetd, stdin a file", &r, 2, "ioplex serve: --inetd: ",
                      "descriptor 0 ('stdin') is not a socket", NULL);
}

/* Type=notify: READY=1 once listening (a client connects at once), and
 * STOPPING=1 at SIGTERM; to a socket file and to an abstract name. */
static void notify_case(int abstract)
{
    char path[128], env[160];
    int fd = local_keep(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    assert_true(fd >= 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    socklen_t len;
    if (abstract) {
        snprintf(env, sizeof env, "@ioplex-test-notify-%ld", (long)getpid());
        memcpy(un.sun_path + 1, env + 1, strlen(env) - 1);
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(env));
    } else {
        assert_non_null(harness_tmp_path(path, sizeof path, "notify"));
        snprintf(env, sizeof env, "%s", path);
        memcpy(un.sun_path, path, strnlen(path, sizeof un.sun_path - 1));
        len = sizeof un;
    }
    assert_int_equal(bind(fd, (struct sockaddr *)&un, len), 0);
    setenv("NOTIFY_SOCKET", env, 1);
    struct server s;
    int r = server_startl(&s, "-S", "echo", "127.0.0.1", "0", NULL);
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(r, 0);
    char msg[256];
    ssize_t n = recv_dgram(fd, msg, sizeof msg - 1, IO_MS);
    CHECK(&s, n > 0);
    msg[n] = '\0';
    CHECK(&s, strcmp(msg, "READY=1") == 0);
    int c = client_connect(&s);
    CHECK(&s, c >= 0 && echo_line(c, "ready\n", IO_MS));
    client_close(c);
    CHECK(&s, server_stop(&s, 0) == 0);
    n = recv_dgram(fd, msg, sizeof msg - 1, IO_MS);
    CHECK(&s, n > 0);
    msg[n] = '\0';
    CHECK(&s, strcmp(msg, "STOPPING=1") == 0);
    if (!abstract)
        unlink(path);
}

static void test_notify_path(void **state)
{
    (void)state;
    notify_case(0);
}

static void test_notify_abstract(void **state)
{
    (void)state;
    notify_case(1);
}

/* systemd-analyze verify on the example units, ExecStart pointed at the
 * binary under test (verify checks it is executable). A copy with a
 * missing binary must fail: the verification is real. */
static int verify_units(const char *execstart, char *err, size_t errcap)
{
    const char *dir = harness_tmpdir();
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "set -e; d=%s/units; rm -rf \"$d\"; mkdir \"$d\"; "
             "for f in %s/examples/systemd/*; do "
             "sed 's|^ExecStart=/usr/local/bin/ioplex |ExecStart=%s |' \"$f\" "
             "> \"$d/$(basename \"$f\")\"; done; "
             "! grep -l '/usr/local/bin/ioplex' \"$d\"/* || exit 9; "
             "cd \"$d\"; systemd-analyze verify --man=no *",
             dir, IOPLEX_SOURCE_DIR, execstart);
    const char *argv[] = {"sh", "-c", cmd, NULL};
    return run_cmd(argv, NULL, 0, NULL, 0, NULL, err, errcap, 60000);
}

static void test_units_verify(void **state)
{
    (void)state;
    char err[8192] = "";
    int r = verify_units(ioplex_bin(), err, sizeof err);
    if (r != 0 || err[0])
        fail_msg("systemd-analyze verify: exit %d:\n%s", r, err);
    r = verify_units("/nonexistent/ioplex", err, sizeof err);
    assert_int_not_equal(r, 0);
    assert_non_null(strstr(err, "/nonexistent/ioplex"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_two_sockets_one_server, teardown),
        cmocka_unit_test_teardown(test_one_socket_other_models, teardown),
        cmocka_unit_test_teardown(test_workers_share_listener, teardown),
        cmocka_unit_test_teardown(test_datagram, teardown),
        cmocka_unit_test_teardown(test_misfits, teardown),
        cmocka_unit_test_teardown(test_not_ours, teardown),
        cmocka_unit_test_teardown(test_bad_environment, teardown),
        cmocka_unit_test_teardown(test_inetd_accept, teardown),
        cmocka_unit_test_teardown(test_accept_yes_listen_fds, teardown),
        cmocka_unit_test_teardown(test_notify_path, teardown),
        cmocka_unit_test_teardown(test_notify_abstract, teardown),
        cmocka_unit_test_teardown(test_units_verify, teardown),
    };
    return cmocka_run_group_tests_name("integration.activation", tests, NULL, NULL);
}
