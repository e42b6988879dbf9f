/*
 * The live progress line of bench and compare: on a terminal (stderr a
 * pseudo-terminal here) it shows and is redrawn with \r (bench: rate, p99
 * so far, errors, time left; compare: model, scenario, runs left); with
 * --quiet, or when stderr is not a terminal, it does not.
 */
#define _GNU_SOURCE
#include "harness.h"
#include "tool.h"

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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define RUN_TIMEOUT_MS 60000

static pid_t tty_pid;

static int teardown(void **state)
{
    if (tty_pid > 0) {
        kill(tty_pid, SIGKILL);
        waitpid(tty_pid, NULL, 0);
        tty_pid = 0;
    }
    return harness_teardown(state);
}

/* Run ioplex ARGS on a pseudo-terminal (stdin, stdout, stderr) to its end;
 * everything it wrote in out. Returns its exit code, -1 at the timeout. */
static int on_tty(const char *const args[], char *out, size_t cap)
{
    const char *argv[32] = {ioplex_bin()};
    size_t n = 1;
    for (size_t i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    struct winsize ws = {.ws_row = 24, .ws_col = 200};
    fflush(stdout);
    fflush(stderr);
    int master;
    pid_t pid = forkpty(&master, NULL, NULL, &ws);
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGPIPE, SIG_DFL);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    tty_pid = pid;
    size_t len = 0;
    long long deadline = now_ms() + RUN_TIMEOUT_MS;
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0)
            return -1;
        struct pollfd p = {.fd = master, .events = POLLIN};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        char buf[4096];
        ssize_t got = read(master, buf, sizeof buf);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break; /* EIO: the terminal's other side is closed: it ended */
        size_t take = (size_t)got < cap - 1 - len ? (size_t)got : cap - 1 - len;
        memcpy(out + len, buf, take);
        len += take;
    }
    out[len] = '\0';
    close(master);
    int st;
    waitpid(pid, &st, 0);
    tty_pid = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_bench(void **state)
{
    (void)state;
    struct server s;
    assert_int_equal(server_startl(&s, "-m", "epoll", "-S", "echo", "127.0.0.1", "0", NULL), 0);
    char port[16];
    snprintf(port, sizeof port, "%u", s.port);
    static char out[1 << 16];
    const char *live[] = {"bench", "-d", "2.5", "--warmup", "0.2", "--timeout", "10",
                          "127.0.0.1", port, NULL};
    int rc = on_tty(live, out, sizeof out);
    if (rc != 0 || !strstr(out, "\r\033[K[") || !strstr(out, " msg/s") ||
        !strstr(out, "p99 ") || !strstr(out, " errors") || !strstr(out, " s left"))
        fail_msg("bench on a terminal (exit %d): no live line with rate, p99, errors and "
                 "time left:\n%s", rc, out);

    const char *quiet[] = {"bench", "-q", "-d", "1.5", "--warmup", "0.2", "--timeout", "10",
                           "127.0.0.1", port, NULL};
    rc = on_tty(quiet, out, sizeof out);
    if (rc != 0 || strstr(out, " s left") || !strstr(out, "answered"))
        fail_msg("bench -q on a terminal (exit %d): a live line, or no summary:\n%s", rc, out);

    /* Not a terminal: no live line. */
    static struct tool_result r;
    const char *piped[] = {"bench", "-d", "1.5", "--warmup", "0.2", "--timeout", "10",
                           "127.0.0.1", port, NULL};
    tool_run(&r, piped, RUN_TIMEOUT_MS);
    assert_int_equal(r.code, 0);
    if (strstr(r.err, "s left") || strchr(r.err, '\r'))
        fail_msg("bench with stderr not a terminal drew a live line: %s", r.err);
    server_stop_clean(&s);
}

static void test_compare(void **state)
{
    (void)state;
    char dir[512];
    assert_non_null(harness_tmp_path(dir, sizeof dir, "cmp"));
    static char out[1 << 16];
    const char *live[] = {"compare", "--quick", "-m", "epoll,poll", "--scenarios", "pp1",
                          "-r", "1", "-d", "1", "-o", dir, NULL};
    int rc = on_tty(live, out, sizeof out);
    if (rc != 0 || !strstr(out, "\r\033[K[1/2") || !strstr(out, "epoll, pp1, run 1/1") ||
        !strstr(out, "1 run left after this") || !strstr(out, "0 runs left after this"))
        fail_msg("compare on a terminal (exit %d): no live line with the model, scenario and "
                 "runs left:\n%s", rc, out);

    const char *quiet[] = {"compare", "-q", "--quick", "-m", "epoll", "--scenarios", "pp1",
                           "-r", "1", "-d", "1", "-o", dir, NULL};
    rc = on_tty(quiet, out, sizeof out);
    if (rc != 0 || strstr(out, "left after this") || strstr(out, "[1/1"))
        fail_msg("compare -q on a terminal (exit %d): progress shown:\n%s", rc, out);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_bench, teardown),
        cmocka_unit_test_teardown(test_compare, teardown),
    };
    return cmocka_run_group_tests_name("progress", tests, NULL, NULL);
}
