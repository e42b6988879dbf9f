/*
 * Stopping: SIGTERM or SIGINT stops accepting, answers what was received
 * and exits 0; a second signal exits at once. Run as
 * `model_signals MODEL`.
 */
#include "harness.h"
#include "harness_cases.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#define IO_MS HARNESS_IO_TIMEOUT_MS
#define EXIT_MS 10000 /* bound on exiting after a stop signal */
#define ACK "I got your message\n"

static const char *model;
static unsigned seed;

static const char *transport_of(void **state)
{
    return *state ? *state : "tcp4";
}

static void start(struct server *s, void **state, const char *service,
                  const char *const extra[])
{
    const char *t = transport_of(state);
    if (server_start_on(s, model, t, service, extra) != 0)
        fail_msg("cannot start %s on %s under %s", service, t, model);
}

/* The server exits with `want` within EXIT_MS of the signal already sent. */
static void expect_exit(struct server *s, int want)
{
    long long t0 = now_ms();
    int st = server_wait_exit(s, EXIT_MS);
    if (st != want) {
        if (!s->exited)
            fprintf(stderr, "server still running %d ms after the signal\n", EXIT_MS);
        else
            fprintf(stderr, "server exited with status %d, expected %d\n", st, want);
        server_kill(s);
        server_dump(s);
        fail_msg("exit status %d, expected %d (after %lld ms)", st, want, now_ms() - t0);
    }
}

/* A Unix socket's file is removed when the server stops. */
static void check_unix_file_gone(struct server *s)
{
    if (s->transport == SERVER_UNIX || s->transport == SERVER_UNIXGRAM)
        CHECK(s, access(s->path, F_OK) == -1);
}

static void idle_signal(void **state, int sig)
{
    struct server s;
    start(&s, state, "ack", NULL);
    CHECK(&s, kill(s.pid, sig) == 0);
    expect_exit(&s, 0);
    CHECK(&s, !s.leftovers);
    check_unix_file_gone(&s);
}

static void idle_sigterm(void **state) { idle_signal(state, SIGTERM); }
static void idle_sigint(void **state) { idle_signal(state, SIGINT); }

/* After serving some clients, SIGTERM still exits 0. */
static void sigterm_after_clients(void **state)
{
    struct server s;
    start(&s, state, "ack", NULL);
    for (int i = 0; i < 5; i++) {
        int fd = client_connect(&s);
        CHECK(&s, fd >= 0);
        CHECK(&s, send_all(fd, "hi\n", 3) == 0);
        char buf[64];
        CHECK(&s, recv_all(fd, buf, sizeof buf, IO_MS) == (ssize_t)strlen(ACK));
        client_close(fd);
    }
    CHECK(&s, kill(s.pid, SIGTERM) == 0);
    expect_exit(&s, 0);
    CHECK(&s, !s.leftovers);
    check_unix_file_gone(&s);
}

/* echo: the client sends 32 KiB and does not read yet; SIGTERM; it still
 * gets the echo of all of it, then EOF, and the server exits 0. */
static void sigterm_mid_echo(void **state)
{
    struct server s;
    start(&s, state, "echo", NULL);
    enum { LEN = 32 * 1024 };
    static char data[LEN], back[2 * LEN];
    fill_random(data, LEN, &seed);
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    CHECK(&s, send_fragmented(fd, data, LEN, &seed) == 0);
    CHECK(&s, wait_readable(fd, IO_MS) == 1); /* the echo has begun */
    sleep_ms(100);
    CHECK(&s, kill(s.pid, SIGTERM) == 0);
    ssize_t n = recv_all(fd, back, sizeof back, IO_MS);
    if (n != LEN)
        fprintf(stderr, "sent %d bytes before SIGTERM, got %zd back\n", LEN, n);
    CHECK(&s, n == LEN);
    CHECK(&s, memcmp(data, back, LEN) == 0);
    client_close(fd);
    expect_exit(&s, 0);
    CHECK(&s, !s.leftovers);
    check_unix_file_gone(&s);
}

/* echo -F line: complete lines are echoed; a last line without its
 * newline is still a message at stop, so it is echoed framed too. */
static void sigterm_partial_line(void **state)
{
    struct server s;
    static const char *const extra[] = {"-F", "line", NULL};
    start(&s, state, "echo", extra);
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    CHECK(&s, send_fragmented(fd, "one\ntwo\nthr", 11, &seed) == 0);
    char buf[64];
    CHECK(&s, recv_exact(fd, buf, 8, IO_MS) == 8);
    CHECK(&s, memcmp(buf, "one\ntwo\n", 8) == 0);
    sleep_ms(50);
    CHECK(&s, kill(s.pid, SIGTERM) == 0);
    ssize_t n = recv_all(fd, buf, sizeof buf, IO_MS);
    CHECK(&s, n == 4);
    CHECK(&s, memcmp(buf, "thr\n", 4) == 0);
    client_close(fd);
    expect_exit(&s, 0);
}

/* ack: a connected client that has sent nothing gets EOF (nothing was
 * received, so nothing is answered); the server exits 0. */
static void sigterm_silent_client(void **state)
{
    struct server s;
    start(&s, state, "ack", NULL);
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    sleep_ms(100); /* accepted */
    CHECK(&s, kill(s.pid, SIGTERM) == 0);
    char buf[64];
    ssize_t n = recv_all(fd, buf, sizeof buf, IO_MS);
    CHECK(&s, n == 0);
    client_close(fd);
    expect_exit(&s, 0);
    CHECK(&s, server_output_count(&s, "Here is the message") == 0);
}

/* ack: a line begun but not ended is answered at stop. */
static void sigterm_ack_partial(void **state)
{
    struct server s;
    start(&s, state, "ack", NULL);
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    CHECK(&s, send_all(fd, "hello", 5) == 0);
    sleep_ms(100);
    CHECK(&s, kill(s.pid, SIGTERM) == 0);
    char buf[64];
    ssize_t n = recv_all(fd, buf, sizeof buf, IO_MS);
    CHECK(&s, n == (ssize_t)strlen(ACK) && memcmp(buf, ACK, strlen(ACK)) == 0);
    client_close(fd);
    expect_exit(&s, 0);
    CHECK(&s, server_output_count(&s, "Here is the message: hello\n") == 1);
}

/* chargen to a client that stopped reading: the server is blocked
 * sending. SIGTERM with --drain-ms 300 must still end it (exit 0) soon
 * after the drain bound, not hang on the stuck peer. */
static void sigterm_stuck_reader(void **state)
{
    struct server s;
    static const char *const extra[] = {"--drain-ms", "300", NULL};
    start(&s, state, "chargen", extra);
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    char buf[1000];
    CHECK(&s, recv_exact(fd, buf, sizeof buf, IO_MS) == (ssize_t)sizeof buf);
    sleep_ms(300); /* the socket buffers fill; the server blocks in send() */
    long long t0 = now_ms();
    CHECK(&s, kill(s.pid, SIGTERM) == 0);
    expect_exit(&s, 0);
    long long took = now_ms() - t0;
    fprintf(stderr, "exited %lld ms after SIGTERM (drain 300 ms)\n", took);
    client_close(fd);
    CHECK(&s, !s.leftovers);
}

/* A second SIGTERM while the first stop waits (default drain 5 s on a
 * stuck peer) exits at once with 128+SIGTERM. */
static void second_sigterm(void **state)
{
    struct server s;
    start(&s, state, "chargen", NULL);
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    char buf[1000];
    CHECK(&s, recv_exact(fd, buf, sizeof buf, IO_MS) == (ssize_t)sizeof buf);
    sleep_ms(300);
    CHECK(&s, kill(s.pid, SIGTERM) == 0);
    sleep_ms(200);
    if (server_running(&s)) {
        CHECK(&s, kill(s.pid, SIGTERM) == 0);
        int st = server_wait_exit(&s, 2000);
        client_close(fd);
        if (st == -1)
            server_kill(&s);
        CHECK(&s, st == 128 + SIGTERM);
    } else {
        /* Already gone within 200 ms of the first: a clean exit then. */
        client_close(fd);
        CHECK(&s, s.status == 0);
    }
}

/* ---- registration ---------------------------------------------------------- */

static struct harness_cases cases;

static void add(const char *name, CMUnitTestFunction fn, const char *transport)
{
    harness_add_case(&cases, transport, name, fn, (void *)transport);
}

int main(int argc, char **argv)
{
    int dgram;
    model = harness_model_checked(argc, argv, &dgram);
    seed = harness_seed();

    add("idle_sigterm", idle_sigterm, "tcp4");
    add("idle_sigint", idle_sigint, "tcp4");
    add("idle_sigterm", idle_sigterm, "unix");
    if (dgram) {
        add("idle_sigterm", idle_sigterm, "udp4");
        add("idle_sigterm", idle_sigterm, "unixgram");
    }
    add("sigterm_after_clients", sigterm_after_clients, "tcp4");
    add("sigterm_after_clients", sigterm_after_clients, "unix");
    add("sigterm_mid_echo", sigterm_mid_echo, "tcp4");
    add("sigterm_mid_echo", sigterm_mid_echo, "unix");
    add("sigterm_partial_line", sigterm_partial_line, "tcp4");
    add("sigterm_silent_client", sigterm_silent_client, "tcp4");
    add("sigterm_silent_client", sigterm_silent_client, "unix");
    add("sigterm_ack_partial", sigterm_ack_partial, "tcp4");
    add("sigterm_stuck_reader", sigterm_stuck_reader, "tcp4");
    add("sigterm_stuck_reader", sigterm_stuck_reader, "unix");
    add("second_sigterm", second_sigterm, "tcp4");

    return harness_run_cases(&cases, "model_signals", model);
}
