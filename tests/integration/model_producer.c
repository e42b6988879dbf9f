/*
 * Producers (services with on_drain: bytes, chargen) under every model,
 * and the end of a connection. Run as `model_producer MODEL`; the event
 * models (select, poll, epoll, uring) run every case twice, as variant
 * w1 (one loop) and w2 (-w 2).
 *
 *   bytes_fast      "67108864\n" answered with exactly 64 MiB of 'x',
 *                   read at full speed, then nothing more (our FIN: EOF)
 *   bytes_slow      8 MiB, read by a reader that pauses now and then
 *   chargen_fast    16 MiB of the endless RFC 864 stream, byte-exact
 *   chargen_slow    4 MiB of it, read with pauses
 *   fin_bytes       "200000\n" then our FIN: exactly 200,000 bytes, then
 *                   the server closes (a peer's FIN ends input, not output)
 *   fin_bytes_slow  "16777216\n" then our FIN, read with pauses: the same
 *   fin_pipelined   "100000\n150000\n" then FIN: 250,000 and EOF;
 *                   "100000\n70000" (no "\n") then FIN: 170,000 and EOF
 *   fin_chargen     a line, then FIN: chargen goes on (4 MiB read), no EOF
 *   open_close      -v: one "open " and one "close " line per connection,
 *                   for clients that close, half-close, or are closed by
 *                   the server (a bad request)
 *
 * Every read is bounded: STALL_MS without a byte ends it (a stalled
 * producer fails the count, not the suite's timeout), READ_MS in all.
 */
#define _GNU_SOURCE
#include "harness.h"
#include "harness_cases.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#define IO_MS HARNESS_IO_TIMEOUT_MS
#define STALL_MS 5000
#define READ_MS 60000
#define MiB (1u << 20)
#define OPEN_CLOSE_CLIENTS 6

static const char *model;
static unsigned seed;

/* A variant: the extra arguments every server of the case gets. */
struct variant {
    const char *name;
    const char *workers; /* -w N, or NULL */
};

static const struct variant w1 = {"w1", NULL}, w2 = {"w2", "2"};

static void start(struct server *s, void **state, const char *service, int verbose)
{
    const struct variant *v = *state;
    const char *extra[5];
    int n = 0;
    if (verbose)
        extra[n++] = "-v";
    if (v->workers) {
        extra[n++] = "-w";
        extra[n++] = v->workers;
    }
    extra[n] = NULL;
    if (server_start_on(s, model, "tcp4", service, extra) != 0)
        fail_msg("cannot start %s under %s (%s)", service, model, v->name);
}

/* ---- reading a producer's stream ------------------------------------------------ */

enum kind { BYTES, CHARGEN };

struct got {
    size_t bytes;  /* read and correct */
    int eof;       /* the stream ended (after `bytes`) */
    int bad;       /* a wrong byte at position `bytes` */
    int stalled;   /* STALL_MS without a byte (or READ_MS in all) */
    int err;       /* a read error (errno) */
};

/* Read up to `want` bytes of a `kind` stream, checking every byte. slow:
 * reads of 1..16 KiB, and now and then a pause of 1..20 ms. */
static struct got read_stream(int fd, enum kind kind, size_t want, int slow)
{
    static char buf[256 * 1024];
    struct got g = {0};
    long long end = now_ms() + READ_MS;
    while (g.bytes < want) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        long long left = end - now_ms();
        int r = poll(&p, 1, left < STALL_MS ? (int)(left > 0 ? left : 0) : STALL_MS);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            g.err = errno;
            break;
        }
        if (r == 0) {
            g.stalled = 1;
            break;
        }
        size_t room = want - g.bytes < sizeof buf ? want - g.bytes : sizeof buf;
        if (slow) {
            size_t piece = 1024 + rng_next(&seed) % (16 * 1024);
            if (piece < room)
                room = piece;
        }
        ssize_t n = recv(fd, buf, room, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            g.err = errno;
            break;
        }
        if (n == 0) {
            g.eof = 1;
            break;
        }
        for (size_t i = 0; i < (size_t)n; i++) {
            char exp = kind == BYTES ? 'x' : chargen_at(g.bytes);
            if (buf[i] != exp) {
                fprintf(stderr, "byte %zu is 0x%02x, expected 0x%02x\n", g.bytes,
                        (unsigned char)buf[i], (unsigned char)exp);
                g.bad = 1;
                return g;
            }
            g.bytes++;
        }
        if (slow && rng_next(&seed) % 8 == 0)
            sleep_ms(1 + (int)(rng_next(&seed) % 20));
    }
    return g;
}

static void show(const char *what, const struct got *g, size_t want)
{
    fprintf(stderr, "%s under %s: %zu of %zu bytes%s%s%s%s%s\n", what, model, g->bytes,
            want, g->eof ? ", then EOF" : "", g->bad ? ", then a wrong byte" : "",
            g->stalled ? ", then nothing (stalled)" : "", g->err ? ", then " : "",
            g->err ? strerror(g->err) : "");
}

/* Exactly `want` bytes of `kind` and nothing stalled or wrong. */
static void expect_stream(struct server *s, int fd, const char *what, enum kind kind,
                          size_t want, int slow)
{
    struct got g = read_stream(fd, kind, want, slow);
    if (g.bytes != want)
        show(what, &g, want);
    CHECK(s, g.bytes == want);
}

/* Exactly `want` bytes of 'x', then the server's close (EOF). */
static void expect_bytes_then_eof(struct server *s, int fd, const char *what, size_t want,
                                  int slow)
{
    struct got g = read_stream(fd, BYTES, want + 1, slow);
    if (g.bytes != want || !g.eof)
        show(what, &g, want);
    CHECK(s, g.bytes == want && g.eof);
}

/* ---- at full speed, and slowly --------------------------------------------------- */

static void bytes_case(void **state, size_t n, int slow)
{
    struct server s;
    start(&s, state, "bytes", 0);
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    char req[32];
    int len = snprintf(req, sizeof req, "%zu\n", n);
    CHECK(&s, send_all(fd, req, (size_t)len) == 0);
    expect_stream(&s, fd, "bytes", BYTES, n, slow);
    /* Nothing more: our FIN, and the next thing is the server's. */
    CHECK(&s, shutdown(fd, SHUT_WR) == 0);
    CHECK(&s, expect_eof(fd, IO_MS) == 1);
    client_close(fd);
    server_stop_clean(&s);
}

static void bytes_fast(void **state) { bytes_case(state, 64 * MiB, 0); }
static void bytes_slow(void **state) { bytes_case(state, 8 * MiB, 1); }

static void chargen_case(void **state, size_t n, int slow)
{
    struct server s;
    start(&s, state, "chargen", 0);
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    expect_stream(&s, fd, "chargen", CHARGEN, n, slow);
    client_close(fd); /* leaving with output unread */
    server_stop_clean(&s);
}

static void chargen_fast(void **state) { chargen_case(state, 16 * MiB, 0); }
static void chargen_slow(void **state) { chargen_case(state, 4 * MiB, 1); }

/* ---- the peer's FIN ends input, not output ------------------------------------------ */

/* Send req, then our FIN; exactly `want` bytes come back, then EOF. */
static void fin_exchange(void **state, const char *req, size_t want, int slow)
{
    struct server s;
    start(&s, state, "bytes", 0);
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    CHECK(&s, send_all(fd, req, strlen(req)) == 0);
    CHECK(&s, shutdown(fd, SHUT_WR) == 0);
    expect_bytes_then_eof(&s, fd, "bytes after FIN", want, slow);
    client_close(fd);
    server_stop_clean(&s);
}

static void fin_bytes(void **state) { fin_exchange(state, "200000\n", 200000, 0); }
static void fin_bytes_slow(void **state) { fin_exchange(state, "16777216\n", 16 * MiB, 1); }

static void fin_pipelined(void **state)
{
    fin_exchange(state, "100000\n150000\n", 250000, 0);
    /* A last line without its "\n" is a request too (framing at EOF). */
    fin_exchange(state, "100000\n70000", 170000, 0);
}

static void fin_chargen(void **state)
{
    struct server s;
    start(&s, state, "chargen", 0);
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    CHECK(&s, send_all(fd, "ignored\n", 8) == 0);
    CHECK(&s, shutdown(fd, SHUT_WR) == 0);
    /* An endless producer goes on after the peer's FIN. */
    expect_stream(&s, fd, "chargen after FIN", CHARGEN, 4 * MiB, 0);
    client_close(fd);
    server_stop_clean(&s);
}

/* ---- -v: one open and one close line per connection ---------------------------------- */

static void open_close(void **state)
{
    struct server s;
    start(&s, state, "bytes", 1);
    for (int i = 0; i < OPEN_CLOSE_CLIENTS; i++) {
        int fd = client_connect(&s);
        CHECK(&s, fd >= 0);
        char buf[256];
        switch (i % 3) {
        case 0: /* we close */
            CHECK(&s, send_all(fd, "1\n", 2) == 0);
            CHECK(&s, recv_exact(fd, buf, 1, IO_MS) == 1);
            break;
        case 1: /* we half-close; the server closes after the answer */
            CHECK(&s, send_all(fd, "1\n", 2) == 0);
            CHECK(&s, shutdown(fd, SHUT_WR) == 0);
            CHECK(&s, recv_all(fd, buf, sizeof buf, IO_MS) == 1);
            break;
        default: /* a bad request: the server answers ERROR and closes */
            CHECK(&s, send_all(fd, "abc\n", 4) == 0);
            CHECK(&s, recv_all(fd, buf, sizeof buf, IO_MS) > 5);
            break;
        }
        client_close(fd);
    }
    /* Each close is printed when its connection closes, not at the stop. */
    long long end = now_ms() + IO_MS;
    while (server_stderr_count(&s, "ioplex serve: close ") < OPEN_CLOSE_CLIENTS &&
           now_ms() < end)
        sleep_ms(20);
    int opens = server_stderr_count(&s, "ioplex serve: open ");
    int closes = server_stderr_count(&s, "ioplex serve: close ");
    if (opens != OPEN_CLOSE_CLIENTS || closes != OPEN_CLOSE_CLIENTS)
        fprintf(stderr, "open_close under %s: %d open and %d close lines for %d "
                "connections\n", model, opens, closes, OPEN_CLOSE_CLIENTS);
    CHECK(&s, opens == OPEN_CLOSE_CLIENTS);
    CHECK(&s, closes == OPEN_CLOSE_CLIENTS);
    server_stop_clean(&s);
    /* And no second line at the stop. */
    CHECK(&s, server_stderr_count(&s, "ioplex serve: open ") == OPEN_CLOSE_CLIENTS);
    CHECK(&s, server_stderr_count(&s, "ioplex serve: close ") == OPEN_CLOSE_CLIENTS);
}

/* ---- registration ---------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        CMUnitTestFunction fn;
    } list[] = {
        {"bytes_fast", bytes_fast},     {"bytes_slow", bytes_slow},
        {"chargen_fast", chargen_fast}, {"chargen_slow", chargen_slow},
        {"fin_bytes", fin_bytes},       {"fin_bytes_slow", fin_bytes_slow},
        {"fin_pipelined", fin_pipelined}, {"fin_chargen", fin_chargen},
        {"open_close", open_close},
    };
    static struct harness_cases cases;
    model = harness_model_checked(argc, argv, NULL);
    seed = harness_seed();
    const struct variant *vs[] = {&w1, harness_is_event_model(model) ? &w2 : NULL};
    for (size_t v = 0; v < 2 && vs[v]; v++)
        for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
            harness_add_case(&cases, vs[v]->name, list[i].name, list[i].fn, (void *)vs[v]);
    return harness_run_cases(&cases, "model_producer", model);
}
