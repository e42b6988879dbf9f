/*
 * The course's interactive exchange, on a pseudo-terminal: with stdin a
 * terminal, `ioplex connect` prompts "Please enter the message: ", reads
 * one line, sends it, prints the server's answer and exits 0; the ack
 * server prints "Here is the message: <line>". Over TCP (every model),
 * UDP, Unix stream and Unix datagram sockets.
 *
 * Services that talk first, on the terminal: daytime's answer shows (and
 * the client exits 0) with nothing typed, in the course's mode and with
 * -D; with -D (full duplex) a chat member sees another's line while typing
 * nothing, its own typed line reaches the others, and ^D ends it.
 */
#define _GNU_SOURCE
#include "harness.h"
#include "tls_peers.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define PROMPT "Please enter the message: "
#define ACK "I got your message"
#define LINE "hello from a terminal"
#define STEP_MS 5000

/* The client on the terminal: killed by teardown if a test fails. */
static pid_t tty_pid;
static int tty_fd = -1;

static void tty_end(void)
{
    if (tty_pid > 0) {
        kill(tty_pid, SIGKILL);
        long long deadline = now_ms() + 5000;
        while (now_ms() < deadline) {
            pid_t r = waitpid(tty_pid, NULL, WNOHANG);
            if (r == tty_pid || r < 0)
                break;
            sleep_ms(2);
        }
        tty_pid = 0;
    }
    if (tty_fd >= 0)
        close(tty_fd);
    tty_fd = -1;
}

static int teardown(void **state)
{
    tty_end();
    return harness_teardown(state);
}

/* Run `ioplex connect ARGS...` with a pseudo-terminal as its stdin, stdout
 * and stderr; tty_fd is the master side. */
static void tty_start(const char *const args[])
{
    const char *argv[16];
    size_t n = 0;
    argv[n++] = ioplex_bin();
    argv[n++] = "connect";
    for (size_t i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    struct winsize ws = {.ws_row = 24, .ws_col = 80};
    fflush(stdout);
    fflush(stderr);
    int master;
    pid_t pid = forkpty(&master, NULL, NULL, &ws);
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGPIPE, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    fcntl(master, F_SETFD, FD_CLOEXEC);
    tty_pid = pid;
    tty_fd = master;
}

struct screen {
    char text[8192];
    size_t len;
    int closed; /* the slave side is gone (EIO) */
};

/* Read from the terminal until `needle` shows (1), or the timeout or the
 * end of the terminal (0). */
static int tty_read_until(struct screen *sc, const char *needle, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    while (!strstr(sc->text, needle) && !sc->closed) {
        long long left = deadline - now_ms();
        if (left <= 0)
            break;
        struct pollfd p = {.fd = tty_fd, .events = POLLIN};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        char buf[1024];
        ssize_t n = read(tty_fd, buf, sizeof buf);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0) {
            sc->closed = 1; /* EIO: every slave descriptor is closed */
            break;
        }
        size_t take = (size_t)n < sizeof sc->text - 1 - sc->len
                          ? (size_t)n : sizeof sc->text - 1 - sc->len;
        memcpy(sc->text + sc->len, buf, take);
        sc->len += take;
        sc->text[sc->len] = '\0';
    }
    return strstr(sc->text, needle) != NULL;
}

/* Wait for the client to exit, reading the terminal meanwhile. Returns
 * its exit code (128+N for signal N), or -1 at the timeout. */
static int tty_wait_exit(struct screen *sc, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(tty_pid, &st, WNOHANG);
        if (r == tty_pid) {
            tty_pid = 0;
            tty_read_until(sc, "\x01never\x01", 100); /* what is left */
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        if (now_ms() >= deadline)
            return -1;
        if (sc->closed)
            sleep_ms(5);
        else
            tty_read_until(sc, "\x01never\x01", 10);
    }
}

static void show(const struct screen *sc, struct server *s)
{
    fprintf(stderr, "---- terminal (%zu bytes):\n", sc->len);
    for (size_t i = 0; i < sc->len; i++) {
        unsigned char c = (unsigned char)sc->text[i];
        if (c == '\n' || (c >= 32 && c < 127))
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\n----\n");
    server_dump(s);
}

/*
 * The whole exchange: prompt, type `line` ended by `eol` ("\r" as the
 * Enter key sends, or "\n"), see the ack, exit 0; the server printed it.
 */
static void exchange(struct server *s, const char *const args[], const char *line,
                     const char *eol)
{
    tty_start(args);
    struct screen sc = {0};
    if (!tty_read_until(&sc, PROMPT, STEP_MS)) {
        show(&sc, s);
        fail_msg("no prompt '%s' on the terminal", PROMPT);
    }
    /* Nothing is sent before the line is entered. */
    assert_int_equal(server_output_count(s, "Here is the message"), 0);

    char typed[256];
    snprintf(typed, sizeof typed, "%s%s", line, eol);
    assert_int_equal(write(tty_fd, typed, strlen(typed)), (ssize_t)strlen(typed));
    if (!tty_read_until(&sc, ACK, STEP_MS)) {
        show(&sc, s);
        fail_msg("the answer '%s' did not appear on the terminal", ACK);
    }
    int code = tty_wait_exit(&sc, STEP_MS);
    if (code != 0) {
        show(&sc, s);
        fail_msg("the interactive client ended with %d, want exit 0", code);
    }

    /* The prompt comes first, then the typed line (the terminal's echo),
     * then the answer on a line of its own, once. */
    const char *prompt = strstr(sc.text, PROMPT);
    const char *echoed = strstr(sc.text, line);
    const char *ack = strstr(sc.text, ACK);
    if (!(prompt && echoed && ack && prompt < echoed && echoed < ack) ||
        strstr(ack + 1, ACK) || !strstr(ack, ACK "\r\n") ||
        (ack > sc.text && ack[-1] != '\n')) {
        show(&sc, s);
        fail_msg("the terminal does not show prompt, line, then the answer on "
                 "its own line, once");
    }

    char want[300];
    snprintf(want, sizeof want, "Here is the message: %s\n", line);
    if (!server_wait_output(s, want, HARNESS_IO_TIMEOUT_MS)) {
        show(&sc, s);
        fail_msg("the server did not print '%s'", want);
    }
    assert_int_equal(server_output_count(s, "Here is the message"), 1);
    tty_end();
}

/* The year now, as daytime prints it (", 2025 "). */
static void year_now(char *buf, size_t cap)
{
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(buf, cap, ", %Y ", &tm);
}

/* daytime talks first and closes: its answer shows without anything
 * typed, and the client exits 0 by itself. */
static void daytime_shows(struct server *s, int duplex)
{
    char port[16], year[16], year2[16];
    snprintf(port, sizeof port, "%u", s->port);
    year_now(year, sizeof year);
    if (duplex)
        tty_start((const char *const[]){"-D", "127.0.0.1", port, NULL});
    else
        tty_start((const char *const[]){"127.0.0.1", port, NULL});
    struct screen sc = {0};
    int seen = tty_read_until(&sc, year, STEP_MS);
    year_now(year2, sizeof year2); /* midnight on New Year's Eve */
    if (!seen)
        seen = tty_read_until(&sc, year2, 100);
    if (!seen) {
        show(&sc, s);
        fail_msg("%s: daytime's answer did not show with nothing typed",
                 duplex ? "-D" : "course mode");
    }
    int code = tty_wait_exit(&sc, STEP_MS);
    if (code != 0) {
        show(&sc, s);
        fail_msg("%s: the client ended with %d after daytime closed, want exit 0",
                 duplex ? "-D" : "course mode", code);
    }
    const char *prompt = strstr(sc.text, PROMPT);
    const char *date = strstr(sc.text, year) ? strstr(sc.text, year) : strstr(sc.text, year2);
    if (duplex ? prompt != NULL : !(prompt && strstr(prompt, PROMPT "\r\n") == prompt &&
                                     date > prompt)) {
        show(&sc, s);
        fail_msg("%s", duplex ? "-D shows no prompt"
                              : "course mode: want the prompt, then the date on a line "
                                "of its own");
    }
    tty_end();
}

static void test_daytime(void **state)
{
    (void)state;
    struct server s;
    assert_int_equal(server_startl(&s, "-m", "thread", "-S", "daytime", "127.0.0.1", "0",
                                   NULL),
                     0);
    daytime_shows(&s, 0);
    daytime_shows(&s, 1);
    assert_int_equal(server_stop(&s, 0), 0);
}

/* Full duplex on a terminal (-D): what the room says shows while nothing
 * is typed; a typed line goes out at once; ^D ends the session. */
static void test_chat_duplex(void **state)
{
    (void)state;
    struct server s;
    assert_int_equal(server_startl(&s, "-v", "-m", "thread", "-S", "chat", "127.0.0.1",
                                   "0", NULL),
                     0);
    char port[16];
    snprintf(port, sizeof port, "%u", s.port);
    tty_start((const char *const[]){"-D", "127.0.0.1", port, NULL});
    CHECK(&s, server_wait_stderr(&s, "has joined", STEP_MS)); /* the terminal's member */

    int fd = client_connect(&s);
    assert_true(fd >= 0);
    struct screen sc = {0};
    if (!tty_read_until(&sc, " has joined", STEP_MS)) {
        show(&sc, &s);
        fail_msg("-D: another member's join did not show with nothing typed");
    }
    assert_int_equal(send_all(fd, "hello from the room\n", 20), 0);
    if (!tty_read_until(&sc, "> hello from the room", STEP_MS)) {
        show(&sc, &s);
        fail_msg("-D: another member's line did not show with nothing typed");
    }
    assert_null(strstr(sc.text, PROMPT));

    const char *typed = "hi from the terminal\r";
    assert_int_equal(write(tty_fd, typed, strlen(typed)), (ssize_t)strlen(typed));
    char line[256];
    ssize_t n = recv_line(fd, line, sizeof line, STEP_MS);
    if (n <= 0 || strncmp(line, "<user", 5) != 0 ||
        !strstr(line, "> hi from the terminal\n")) {
        show(&sc, &s);
        fail_msg("-D: the typed line did not reach the room (got '%s')", n > 0 ? line : "");
    }
    client_close(fd);
    if (!tty_read_until(&sc, " has left", STEP_MS)) {
        show(&sc, &s);
        fail_msg("-D: the other member's leaving did not show");
    }

    /* ^D: end of input, the client half-closes, the server closes. */
    assert_int_equal(write(tty_fd, "\x04", 1), 1);
    int code = tty_wait_exit(&sc, STEP_MS);
    if (code != 0) {
        show(&sc, &s);
        fail_msg("-D: the client ended with %d after ^D, want exit 0", code);
    }
    tty_end();
    assert_int_equal(server_stop(&s, 0), 0);
}

static void test_tcp(void **state)
{
    (void)state;
    static const char *const models[] = {"iterative", "fork", "thread"};
    for (size_t m = 0; m < 3; m++) {
        struct server s;
        assert_int_equal(server_startl(&s, "-m", models[m], "127.0.0.1", "0", NULL), 0);
        char port[16];
        snprintf(port, sizeof port, "%u", s.port);
        exchange(&s, (const char *const[]){"127.0.0.1", port, NULL}, LINE,
                 m == 1 ? "\n" : "\r");
        assert_int_equal(server_stop(&s, 0), 0);
    }
}

static void test_tcp_once(void **state)
{
    (void)state;
    /* The lab's pair exactly: a server that serves one client and exits. */
    struct server s;
    assert_int_equal(server_startl(&s, "-m", "iterative", "--once", "127.0.0.1", "0",
                                   NULL),
                     0);
    char addr[64];
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%u", s.port);
    exchange(&s, (const char *const[]){addr, NULL}, LINE, "\r");
    assert_int_equal(server_wait_exit(&s, STEP_MS), 0);
}

/* The course's exchange over TLS (connect --tls): the same on the screen. */
static void test_tls(void **state)
{
    (void)state;
    struct server s;
    assert_int_equal(server_startl(&s, "--tls-cert", tls_cert("server.pem"), "--tls-key",
                                   tls_cert("server.key"), "127.0.0.1", "0", NULL),
                     0);
    char port[16];
    snprintf(port, sizeof port, "%u", s.port);
    exchange(&s, (const char *const[]){"--tls", "--tls-ca", tls_cert("ca.pem"), "127.0.0.1",
                                       port, NULL},
             LINE, "\r");
    assert_int_equal(server_stop(&s, 0), 0);
}

static void test_udp(void **state)
{
    (void)state;
    struct server s;
    assert_int_equal(server_startl(&s, "-m", "iterative", "-u", "127.0.0.1", "0", NULL), 0);
    char port[16];
    snprintf(port, sizeof port, "%u", s.port);
    exchange(&s, (const char *const[]){"-u", "127.0.0.1", port, NULL}, LINE, "\r");
    assert_int_equal(server_stop(&s, 0), 0);
}

static void test_unix(void **state)
{
    (void)state;
    char path[200];
    assert_non_null(harness_tmp_path(path, sizeof path, "pty"));
    struct server s;
    assert_int_equal(server_startl(&s, "-U", path, NULL), 0);
    exchange(&s, (const char *const[]){"-U", path, NULL}, LINE, "\n");
    assert_int_equal(server_stop(&s, 0), 0);
}

static void test_unixgram(void **state)
{
    (void)state;
    char path[200];
    assert_non_null(harness_tmp_path(path, sizeof path, "ptydg"));
    struct server s;
    assert_int_equal(server_startl(&s, "-m", "iterative", "-u", "-U", path, NULL), 0);
    exchange(&s, (const char *const[]){"-u", "-U", path, NULL}, LINE, "\r");
    assert_int_equal(server_stop(&s, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_tcp, teardown),
        cmocka_unit_test_teardown(test_tcp_once, teardown),
        cmocka_unit_test_teardown(test_tls, teardown),
        cmocka_unit_test_teardown(test_udp, teardown),
        cmocka_unit_test_teardown(test_unix, teardown),
        cmocka_unit_test_teardown(test_unixgram, teardown),
        cmocka_unit_test_teardown(test_daytime, teardown),
        cmocka_unit_test_teardown(test_chat_duplex, teardown),
    };
    return cmocka_run_group_tests_name("integration.pty", tests, NULL, NULL);
}
