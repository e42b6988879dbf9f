/*
 * Terminal and log injection (audit finding 7): the ack server prints what
 * a peer sent ("Here is the message: ..."). Escape sequences, a carriage
 * return, a newline followed by a forged "ioplex serve: accept: recovered"
 * line, C1 controls and invalid UTF-8, over TCP, UDP and Unix datagram
 * sockets: the server's stdout has exactly one line per message, each the
 * message with those bytes escaped as \xNN, and neither stdout nor stderr
 * holds a control byte or invalid UTF-8 (checked with iop__escape(), which
 * must find nothing to change). Plain text and printable UTF-8 are printed
 * exactly as sent: the course's "Here is the message: hello".
 */
#define _GNU_SOURCE
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h" /* iop__escape() */

#define IO_MS 10000
#define ACK "I got your message\n"

struct payload {
    const char *sent; /* without the line's "\n" */
    const char *line; /* what stdout must show; NULL: as the datagram one */
    const char *dgram_line;
};

#define P "Here is the message: "
static const struct payload payloads[] = {
    {"hello", P "hello", P "hello"},
    {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", P "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
     P "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
    {"\x1b]0;owned\x07\x1b[2J\x1b[31mred\x1b[0m",
     P "\\x1B]0;owned\\x07\\x1B[2J\\x1B[31mred\\x1B[0m",
     P "\\x1B]0;owned\\x07\\x1B[2J\\x1B[31mred\\x1B[0m"},
    {"ok\rioplex serve: accept: recovered", P "ok\\x0Dioplex serve: accept: recovered",
     P "ok\\x0Dioplex serve: accept: recovered"},
    /* A stream's line ends at the "\n" (and ack closes after one line);
     * a datagram is one message, newline and all. */
    {"x\nioplex serve: accept: recovered", P "x",
     P "x\\x0Aioplex serve: accept: recovered"},
    {"\xc2\x9b" "31m\x9b" "0m\x7f", P "\\xC2\\x9B31m\\x9B0m\\x7F", P "\\xC2\\x9B31m\\x9B0m\\x7F"},
    {"\xff\xfe\xc0\xaf\xed\xa0\x80\xe2\x82", P "\\xFF\\xFE\\xC0\\xAF\\xED\\xA0\\x80\\xE2\\x82",
     P "\\xFF\\xFE\\xC0\\xAF\\xED\\xA0\\x80\\xE2\\x82"},
};
#define NPAYLOADS (sizeof payloads / sizeof payloads[0])

static int teardown(void **state) { return harness_teardown(state); }

/* Nothing in buf that iop__escape() would change: no control byte but the
 * newlines that end lines, no invalid UTF-8. */
static void expect_clean(struct server *s, const char *what, const char *buf)
{
    size_t len = strlen(buf);
    char *esc = malloc(4 * len + 1);
    assert_non_null(esc);
    for (const char *line = buf; *line;) {
        size_t n = strcspn(line, "\n");
        iop__escape(esc, 4 * len + 1, line, n);
        if (strlen(esc) != n || memcmp(esc, line, n) != 0) {
            server_dump(s);
            free(esc);
            fail_msg("%s holds a control byte or invalid UTF-8 in the line \"%.*s\"", what,
                     (int)n, line);
        }
        line += n + (line[n] == '\n');
    }
    free(esc);
}

static void exchange(struct server *s, const struct payload *p, int dgram)
{
    int fd = client_connect(s);
    CHECK(s, fd >= 0);
    char msg[128];
    int len = snprintf(msg, sizeof msg, "%s\n", p->sent);
    CHECK(s, send_all(fd, msg, (size_t)len) == 0);
    if (dgram) {
        char got[64];
        ssize_t n = recv_dgram(fd, got, sizeof got, IO_MS);
        CHECK(s, n == (ssize_t)strlen(ACK) && memcmp(got, ACK, (size_t)n) == 0);
    } else {
        CHECK(s, recv_ack(fd, IO_MS));
    }
    client_close(fd);
}

static void injection(void **state)
{
    const char *transport = *state;
    const struct test_transport *t = harness_transport(transport);
    if (t->ipv6 && !have_ipv6_loopback())
        skip();
    int dgram = transport_is_dgram(t);
    struct server s;
    if (server_start_on(&s, NULL, transport, "ack", NULL) != 0)
        fail_msg("cannot start ack on %s", transport);
    char want[4096] = "";
    for (size_t i = 0; i < NPAYLOADS; i++) {
        exchange(&s, &payloads[i], dgram);
        const char *line = dgram ? payloads[i].dgram_line : payloads[i].line;
        strcat(want, line);
        strcat(want, "\n");
        /* Printed before the answer; wait until it has been read. */
        long long until = now_ms() + IO_MS;
        while (server_output_count(&s, P) < (int)i + 1 && now_ms() < until) {
            server_pump(&s);
            sleep_ms(2);
        }
    }
    server_stop_clean(&s);
    if (strcmp(s.out, want) != 0) {
        server_dump(&s);
        fail_msg("stdout is not one escaped line per message; want:\n%s", want);
    }
    expect_clean(&s, "stdout", s.out);
    expect_clean(&s, "stderr", s.err);
    CHECK(&s, strstr(s.err, "accept: recovered") == NULL);
}

int main(void)
{
#define T(name) {"injection." name, injection, NULL, teardown, (void *)(name)}
    const struct CMUnitTest tests[] = {T("tcp4"), T("udp4"), T("unixgram"), T("unix")};
    return cmocka_run_group_tests_name("test_log_injection", tests, NULL, NULL);
}
