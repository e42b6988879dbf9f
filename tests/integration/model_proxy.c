/*
 * The PROXY protocol (serve --proxy-protocol), under every model. Run as
 * `model_proxy MODEL`. The witness of what the service sees is the -v
 * open line, made from the same address iop_conn_peer() returns.
 *
 *   good_headers  (over TCP and a Unix socket, as HAProxy can send to
 *                 either) v1 TCP4 and v2 TCP6 (with TLVs) each with data in the
 *                 same write, both again cut into single bytes sent 2 ms
 *                 apart: the open line names the header's client "via"
 *                 the real peer, and the data after the header is echoed
 *                 whole; a v2 LOCAL (a balancer's health check) and a v1
 *                 UNKNOWN keep the real peer (no "via")
 *   bad_headers   plaintext first, a malformed v1 line, a header cut by
 *                 the client's FIN, a v2 header longer than 4096 bytes, a
 *                 v1 line with no CRLF in its 107 bytes: each connection
 *                 is closed (EOF or reset) with exactly one "PROXY header"
 *                 line saying why, and never opened; a connection closed
 *                 before its first byte gets no line (a port probe); the
 *                 server still serves, and exits 0 (leaks: ASan's)
 *   slow_header   --idle-timeout 1: a header trickled a byte every 200 ms
 *                 and never finished is closed, with one line
 */
#define _GNU_SOURCE
#include "harness.h"
#include "harness_cases.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define IO_MS HARNESS_IO_TIMEOUT_MS
#define SIG "\r\n\r\n\0\r\nQUIT\n"

static const char *model;

static void start_on(struct server *s, const char *transport, const char *const extra[])
{
    if (server_start_on(s, model, transport, "echo", extra) != 0)
        fail_msg("cannot start echo on %s under %s with --proxy-protocol", transport, model);
}

static void start(struct server *s, const char *const extra[]) { start_on(s, "tcp4", extra); }

static unsigned local_port(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return 0;
    return ntohs(a.sin_port);
}

/* How the server names the client socket fd when no header replaces it. */
static void real_name(const struct server *s, int fd, char *buf, size_t cap)
{
    if (s->transport == SERVER_UNIX)
        snprintf(buf, cap, "unix:(unnamed)");
    else
        snprintf(buf, cap, "127.0.0.1:%u", local_port(fd));
}

/* Send p[0, n) a byte at a time, 2 ms apart: most bytes a read of their own. */
static int send_bytewise(int fd, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (send_all(fd, p + i, 1) != 0)
            return -1;
        sleep_ms(2);
    }
    return 0;
}

/* The server closes fd within IO_MS: EOF, or a reset (it closed with our
 * bytes unread). 1 if so. */
static int closed_by_server(int fd)
{
    char buf[256];
    long long end = now_ms() + IO_MS;
    while (now_ms() < end) {
        if (wait_readable(fd, (int)(end - now_ms())) != 1)
            return 0;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return 1;
        if (n < 0)
            return 0;
    }
    return 0;
}

/* One connection: header and data (split: a byte at a time), the echo of
 * data back, and the open line `open` in the server's log. */
static void through(struct server *s, const char *hdr, size_t hn, int split,
                    const char *open)
{
    int fd = client_connect(s);
    CHECK(s, fd >= 0);
    char msg[512];
    CHECK(s, hn + 6 <= sizeof msg);
    memcpy(msg, hdr, hn);
    memcpy(msg + hn, "hello\n", 6);
    if (split)
        CHECK(s, send_bytewise(fd, msg, hn + 6) == 0);
    else
        CHECK(s, send_all(fd, msg, hn + 6) == 0);
    char back[7] = "";
    CHECK(s, recv_exact(fd, back, 6, IO_MS) == 6);
    CHECK(s, memcmp(back, "hello\n", 6) == 0);
    char line[200], real[64];
    real_name(s, fd, real, sizeof real);
    if (open)
        snprintf(line, sizeof line, "open %s via %s (connection", open, real);
    else /* the real peer, and no "via" */
        snprintf(line, sizeof line, "open %s (connection", real);
    CHECK(s, server_wait_stderr(s, line, IO_MS));
    client_close(fd);
}

static void good_headers(void **state)
{
    struct server s;
    static const char *const extra[] = {"-v", "--proxy-protocol", NULL};
    start_on(&s, *state, extra);
    static const char v1[] = "PROXY TCP4 192.0.2.1 198.51.100.2 5555 80\r\n";
    /* PROXY, TCP over IPv6, 2001:db8::7 port 4444 to ::1 port 80, then
     * two TLVs (ALPN "h2", a NOOP of 3 bytes). */
    static const char v2[] = SIG "\x21\x21\x00\x2f"
        "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x07"
        "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01"
        "\x11\x5c" "\x00\x50"
        "\x01\x00\x02" "h2"
        "\x04\x00\x03" "abc";
    static const char local[] = SIG "\x20\x00\x00\x00";
    static const char unknown[] = "PROXY UNKNOWN whatever follows\r\n";
    for (int split = 0; split <= 1; split++) {
        through(&s, v1, sizeof v1 - 1, split, "192.0.2.1:5555");
        through(&s, v2, sizeof v2 - 1, split, "[2001:db8::7]:4444");
    }
    through(&s, local, sizeof local - 1, 0, NULL);
    through(&s, unknown, sizeof unknown - 1, 0, NULL);
    server_stop_clean(&s);
    CHECK(&s, server_stderr_count(&s, ": PROXY header: ") == 0);
}

/* A connection that sends `bad` (then its FIN if fin) is closed, and the
 * server says `why`. */
static void refused(struct server *s, const char *bad, size_t n, int fin, const char *why)
{
    int fd = client_connect(s);
    CHECK(s, fd >= 0);
    CHECK(s, send_all(fd, bad, n) == 0);
    if (fin)
        shutdown(fd, SHUT_WR);
    CHECK(s, closed_by_server(fd));
    char line[200];
    snprintf(line, sizeof line, "closing 127.0.0.1:%u: PROXY header: %s", local_port(fd), why);
    CHECK(s, server_wait_stderr(s, line, IO_MS));
    client_close(fd);
}

static void bad_headers(void **state)
{
    (void)state;
    struct server s;
    static const char *const extra[] = {"-v", "--proxy-protocol", NULL};
    start(&s, extra);
    /* A port probe: connected, closed, nothing sent. No line. */
    int probe = client_connect(&s);
    CHECK(&s, probe >= 0);
    client_close(probe);

    refused(&s, "hello\n", 6, 0, "not a PROXY header");
    refused(&s, "PROXY TCP4 192.0.2.1 198.51.100.2 99999 80\r\nhello\n", 50, 0,
            "v1 line: a port that is not a number");
    refused(&s, "PROXY TCP4 192.0", 16, 1, "cut off after 16 bytes");
    static const char huge[] = SIG "\x21\x11\xff\xff";
    refused(&s, huge, sizeof huge - 1, 0, "v2 header longer than 4096 bytes");
    char endless[200];
    memcpy(endless, "PROXY UNKNOWN ", 14);
    memset(endless + 14, 'x', sizeof endless - 14);
    refused(&s, endless, sizeof endless, 0, "v1 line longer than 107 bytes");

    /* Still serving. */
    static const char v1[] = "PROXY TCP4 192.0.2.1 198.51.100.2 5555 80\r\n";
    through(&s, v1, sizeof v1 - 1, 0, "192.0.2.1:5555");
    server_stop_clean(&s);
    /* One line per bad connection, none for the probe; none was opened:
     * the only open line is the good client's. */
    CHECK(&s, server_stderr_count(&s, ": PROXY header: ") == 5);
    CHECK(&s, server_stderr_count(&s, ": open ") == 1);
}

static void slow_header(void **state)
{
    (void)state;
    struct server s;
    static const char *const extra[] = {"-v", "--proxy-protocol", "--idle-timeout", "1",
                                        NULL};
    start(&s, extra);
    static const char v1[] = "PROXY TCP4 192.0.2.1 198.51.100.2 5555 80"; /* no CRLF */
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    int closed = 0;
    long long end = now_ms() + IO_MS;
    for (size_t i = 0; i < sizeof v1 - 1 && now_ms() < end && !closed; i++) {
        if (send(fd, v1 + i, 1, MSG_NOSIGNAL) != 1) {
            closed = 1;
            break;
        }
        if (wait_readable(fd, 200) == 1) {
            char b;
            ssize_t n = recv(fd, &b, 1, 0);
            closed = n == 0 || (n < 0 && errno == ECONNRESET);
        }
    }
    CHECK(&s, closed);
    CHECK(&s, server_wait_stderr(&s, "PROXY header: not complete within 1000 ms", IO_MS));
    client_close(fd);
    server_stop_clean(&s);
    CHECK(&s, server_stderr_count(&s, ": PROXY header: ") == 1);
    CHECK(&s, server_stderr_count(&s, ": open ") == 0);
}

int main(int argc, char **argv)
{
    static struct harness_cases cases;
    model = harness_model_checked(argc, argv, NULL);
    harness_add_case(&cases, "tcp4", "good_headers", good_headers, "tcp4");
    harness_add_case(&cases, "unix", "good_headers", good_headers, "unix");
    harness_add_case(&cases, "tcp4", "bad_headers", bad_headers, NULL);
    harness_add_case(&cases, "tcp4", "slow_header", slow_header, NULL);
    return harness_run_cases(&cases, "model_proxy", model);
}
