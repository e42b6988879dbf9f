/*
 * Datagram services that must not be turned against others (audit
 * finding 5): every datagram a server receives goes through one gate
 * (src/net/dgram.c), the same under every model that serves datagrams.
 * Run as `model_dgram MODEL`, for the models that serve datagrams only.
 *
 *   privileged_source  (root) 50 datagrams to echo from a port below 1024:
 *                      none answered, one "dropping datagrams" line, and
 *                      their count once the server stops; a normal client
 *                      is answered meanwhile
 *   echo_itself        (root) one datagram forged with the echo server's
 *                      own address as its source: it is dropped, not
 *                      answered to itself (watched on a raw socket that
 *                      sees every UDP datagram on the host: exactly the
 *                      forged one goes to that port)
 *   echo_chargen_loop  (root) one datagram forged from chargen's address
 *                      to echo: chargen's rate limit ends the loop; under
 *                      2 x (20 + 10/s) datagrams pass between them in a
 *                      second, where there were ~66,000
 *   chargen_rate       200 datagrams from one client to chargen: at most
 *                      the burst (20) plus 10 a second are answered, one
 *                      line says so; a normal client is answered after
 *   blocked_client     (Unix datagram, audit finding 6) a client that floods
 *                      echo with sendto() and never reads its answers: the
 *                      others are still answered (the server dropped what
 *                      it could not send at once: one line, then the count)
 *   oversized          (Unix datagram) 10 datagrams over 64 KiB, from a
 *                      client whose socket path holds an escape sequence
 *                      and a newline: one line, the path escaped, then the
 *                      count; a normal client is answered
 *
 * Root: binding a port below 1024, and forging a source on a raw socket.
 * Those cases are skipped, with one line, when not root; CI runs as root.
 */
#define _GNU_SOURCE
#include "harness.h"
#include "harness_cases.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#define IO_MS HARNESS_IO_TIMEOUT_MS
/* The gate's limit (src/net/dgram.c) on answers to one source. */
#define RATE_BURST 20
#define RATE_PER_SEC 10

static const char *model;

static const char *transport_of(void **state) { return *state; }

static void start(struct server *s, const char *transport, const char *service)
{
    if (server_start_on(s, model, transport, service, NULL) != 0)
        fail_msg("cannot start %s on %s under %s", service, transport, model);
}

static int need_root(void)
{
    if (geteuid() == 0)
        return 1;
    fprintf(stderr, "model_dgram: skipped: needs root (a port below 1024, or a raw "
                    "socket to forge a source)\n");
    return 0;
}

/* A new client gets its datagram echoed (echo) or answered (others), retried
 * every 200 ms while a rate limit may still hold (bounded by IO_MS). */
static int answered(struct server *s, const char *msg)
{
    int fd = client_connect(s);
    if (fd < 0)
        return 0;
    char buf[1024];
    int ok = 0;
    for (long long until = now_ms() + IO_MS; !ok && now_ms() < until;) {
        /* Never waits for room: a server that stopped reading must not
         * hang the test (EAGAIN: try again). */
        if (send(fd, msg, strlen(msg), MSG_DONTWAIT) < 0 && errno != EAGAIN)
            break;
        ok = recv_dgram(fd, buf, sizeof buf, 200) > 0;
    }
    client_close(fd);
    return ok;
}

/* The server's stderr, once it has stopped: the episode's start line, once,
 * and its end, with count. */
static void expect_episode(struct server *s, const char *reason, unsigned count)
{
    char end[128];
    snprintf(end, sizeof end, "dropped %u datagram%s in ", count, count == 1 ? "" : "s");
    CHECK(s, server_stderr_count(s, "dropping datagrams: ") == 1);
    CHECK(s, server_stderr_count(s, reason) == 2);
    CHECK(s, server_stderr_count(s, "dropped ") == 1);
    CHECK(s, strstr(s->err, end) != NULL);
}

/* ---- a privileged source port -------------------------------------------------- */

/* A UDP socket bound to a port below 1024 on the server's loopback,
 * connected to the server. -1 if none of a few could be bound. */
static int low_port_client(const struct server *s, unsigned *port)
{
    for (unsigned p = 600 + (unsigned)getpid() % 400, tries = 0; tries < 16; tries++, p++) {
        if (p >= 1024)
            p = 600;
        int fd = socket(s->family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -1;
        struct sockaddr_storage me = {0}, to = {0};
        socklen_t len;
        if (s->family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&me, *b = (struct sockaddr_in *)&to;
            a->sin_family = b->sin_family = AF_INET;
            inet_pton(AF_INET, s->host, &a->sin_addr);
            b->sin_addr = a->sin_addr;
            a->sin_port = htons((uint16_t)p);
            b->sin_port = htons((uint16_t)s->port);
            len = sizeof *a;
        } else {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&me, *b = (struct sockaddr_in6 *)&to;
            a->sin6_family = b->sin6_family = AF_INET6;
            inet_pton(AF_INET6, s->host, &a->sin6_addr);
            b->sin6_addr = a->sin6_addr;
            a->sin6_port = htons((uint16_t)p);
            b->sin6_port = htons((uint16_t)s->port);
            len = sizeof *a;
        }
        if (bind(fd, (struct sockaddr *)&me, len) == 0 &&
            connect(fd, (struct sockaddr *)&to, len) == 0) {
            *port = p;
            return fd;
        }
        close(fd);
    }
    return -1;
}

static void privileged_source(void **state)
{
    const char *t = transport_of(state);
    if (!need_root() || (harness_transport(t)->ipv6 && !have_ipv6_loopback()))
        skip();
    struct server s;
    start(&s, t, "echo");
    unsigned port;
    int low = low_port_client(&s, &port);
    CHECK(&s, low >= 0);
    for (int i = 0; i < 50; i++)
        CHECK(&s, send(low, "x", 1, 0) == 1);
    /* The server answers in order: once a later client has its answer,
     * the 50 have been handled. */
    CHECK(&s, answered(&s, "after"));
    CHECK(&s, wait_readable(low, 200) == 0);
    close(low);
    CHECK(&s, server_wait_stderr(&s, "dropping datagrams: from a well-known port", IO_MS));
    server_stop_clean(&s);
    expect_episode(&s, "from a well-known port", 50);
}

/* ---- forged sources (IPv4, raw sockets) -------------------------------------------- */

/* Send a UDP datagram from 127.0.0.1:sport to 127.0.0.1:dport, whatever
 * holds sport: the UDP header is ours (checksum 0: none, as IPv4 allows). */
static void forge(struct server *s, unsigned sport, unsigned dport, const char *payload)
{
    int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_UDP);
    CHECK(s, fd >= 0);
    size_t len = strlen(payload);
    unsigned char pkt[256];
    CHECK(s, 8 + len <= sizeof pkt);
    uint16_t h[4] = {htons((uint16_t)sport), htons((uint16_t)dport), htons((uint16_t)(8 + len)), 0};
    memcpy(pkt, h, 8);
    memcpy(pkt + 8, payload, len);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ssize_t n = sendto(fd, pkt, 8 + len, 0, (struct sockaddr *)&to, sizeof to);
    close(fd);
    CHECK(s, n == (ssize_t)(8 + len));
}

/* A raw socket that sees a copy of every IPv4 UDP datagram the host gets. */
static int tap_open(struct server *s)
{
    int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_UDP);
    CHECK(s, fd >= 0);
    return fd;
}

/* Datagrams the tap sees in the next ms milliseconds whose ports are
 * a -> b or b -> a. Stops counting past cap. */
static unsigned tap_count(int tap, unsigned a, unsigned b, int ms, unsigned cap)
{
    unsigned n = 0;
    unsigned char buf[70000];
    for (long long until = now_ms() + ms; n < cap;) {
        int left = (int)(until - now_ms());
        if (left <= 0)
            break;
        struct pollfd p = {.fd = tap, .events = POLLIN};
        if (poll(&p, 1, left) <= 0)
            continue;
        ssize_t r;
        while (n < cap && (r = recv(tap, buf, sizeof buf, 0)) >= 20) {
            size_t ihl = (size_t)(buf[0] & 15) * 4;
            if ((size_t)r < ihl + 8)
                continue;
            unsigned sp = (unsigned)buf[ihl] << 8 | buf[ihl + 1];
            unsigned dp = (unsigned)buf[ihl + 2] << 8 | buf[ihl + 3];
            if ((sp == a && dp == b) || (sp == b && dp == a))
                n++;
        }
    }
    return n;
}

static void echo_itself(void **state)
{
    (void)state;
    if (!need_root())
        skip();
    struct server s;
    start(&s, "udp4", "echo");
    int tap = tap_open(&s);
    forge(&s, s.port, s.port, "round and round");
    /* Without the gate: ~220,000 a second. */
    unsigned n = tap_count(tap, s.port, s.port, 1000, 1000);
    close(tap);
    if (n != 1) {
        server_dump(&s);
        fail_msg("%u datagrams from the echo server's port to itself in 1 s; want only the "
                 "forged one", n);
    }
    CHECK(&s, server_wait_stderr(&s, "dropping datagrams: from the server's own address", IO_MS));
    CHECK(&s, answered(&s, "still there"));
    server_stop_clean(&s);
    expect_episode(&s, "from the server's own address", 1);
}

static void echo_chargen_loop(void **state)
{
    (void)state;
    if (!need_root())
        skip();
    struct server echo, chargen;
    start(&echo, "udp4", "echo");
    start(&chargen, "udp4", "chargen");
    int tap = tap_open(&echo);
    forge(&echo, chargen.port, echo.port, "x");
    /* Without the gate, the loop never ends: ~66,000 a second. */
    unsigned want = 2 * (RATE_BURST + 2 * RATE_PER_SEC) + 1;
    unsigned n = tap_count(tap, echo.port, chargen.port, 1000, 100000);
    close(tap);
    if (n > want) {
        server_dump(&chargen);
        fail_msg("%u datagrams between echo and chargen in 1 s; want at most %u", n, want);
    }
    CHECK(&chargen, server_wait_stderr(&chargen, "dropping datagrams: over the per-source "
                                       "rate limit", IO_MS));
    CHECK(&echo, answered(&echo, "still there"));
    server_stop_clean(&echo);
    server_stop_clean(&chargen);
    CHECK(&chargen, server_stderr_count(&chargen, "dropping datagrams: ") == 1);
}

/* ---- chargen's rate limit ---------------------------------------------------------- */

static void drain(int fd, unsigned *got)
{
    char buf[1024];
    while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0)
        ++*got;
}

static void chargen_rate(void **state)
{
    const char *t = transport_of(state);
    struct server s;
    start(&s, t, "chargen");
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    unsigned got = 0;
    long long t0 = now_ms();
    for (int i = 0; i < 200; i++) {
        CHECK(&s, send(fd, "x", 1, 0) == 1);
        drain(fd, &got);
    }
    /* Then whatever is still coming (nothing for 300 ms: done). */
    while (wait_readable(fd, 300) == 1)
        drain(fd, &got);
    long long secs = (now_ms() - t0 + 999) / 1000;
    client_close(fd);
    unsigned most = RATE_BURST + (unsigned)(RATE_PER_SEC * secs);
    if (got < 1 || got > most) {
        server_dump(&s);
        fail_msg("200 datagrams to chargen in %lld s: %u answered, want 1 to %u", secs, got,
                 most);
    }
    CHECK(&s, server_wait_stderr(&s, "dropping datagrams: over the per-source rate limit",
                                 IO_MS));
    CHECK(&s, answered(&s, "x"));
    server_stop_clean(&s);
    CHECK(&s, server_stderr_count(&s, "dropping datagrams: ") == 1);
    CHECK(&s, server_stderr_count(&s, "dropped ") == 1);
}

/* ---- a client that does not read ----------------------------------------------- */

/* A Unix datagram socket with a name of its own (autobind), not connected:
 * it sends with sendto(), as most datagram clients do. */
static int unconnected_client(struct server *s, struct sockaddr_un *to)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(s, fd >= 0);
    sa_family_t fam = AF_UNIX;
    CHECK(s, bind(fd, (struct sockaddr *)&fam, sizeof fam) == 0);
    memset(to, 0, sizeof *to);
    to->sun_family = AF_UNIX;
    memcpy(to->sun_path, s->path, strlen(s->path));
    return fd;
}

/* A client that floods echo and never reads its answers. The kernel keeps
 * at most net.unix.max_dgram_qlen (10) of them queued for it; a server
 * that then waits for room in its sendto() answers nobody else. (A client
 * connect()ed to the server is exempt from that limit: what it does not
 * read fills the server's whole send buffer, and then no model can answer
 * anyone until it reads or closes. Not tested here: nothing the server
 * does can avoid it.) */
static void blocked_client(void **state)
{
    (void)state;
    struct server s;
    start(&s, "unixgram", "echo");
    struct sockaddr_un to;
    int flood = unconnected_client(&s, &to);
    /* Many more than its queue holds; once the server stops reading, the
     * sends fail with EAGAIN: stop after 500 ms of that. */
    char msg[1024];
    memset(msg, 'f', sizeof msg);
    int sent = 0;
    for (long long stuck = 0; sent < 200;) {
        if (sendto(flood, msg, sizeof msg, MSG_DONTWAIT, (struct sockaddr *)&to,
                   sizeof to) == (ssize_t)sizeof msg) {
            sent++;
            stuck = 0;
            continue;
        }
        CHECK(&s, errno == EAGAIN || errno == EWOULDBLOCK);
        if (!stuck)
            stuck = now_ms() + 500;
        else if (now_ms() > stuck)
            break;
        sleep_ms(5);
    }
    /* Another client is answered while the flooder still reads nothing. */
    if (!answered(&s, "not blocked")) {
        server_dump(&s);
        close(flood);
        fail_msg("-m %s: a client that never reads (%d datagrams sent) blocks the server: "
                 "another client got no answer", model, sent);
    }
    CHECK(&s, server_wait_stderr(&s, "dropping datagrams: answers the peer had no room for",
                                 IO_MS));
    close(flood);
    server_stop_clean(&s);
    CHECK(&s, server_stderr_count(&s, "dropping datagrams: ") == 1);
    CHECK(&s, server_stderr_count(&s, "dropped ") == 1);
    CHECK(&s, server_stderr_count(&s, "answers the peer had no room for") == 2);
}

/* ---- oversized, from a path that holds control bytes ------------------------------- */

static void oversized(void **state)
{
    (void)state;
    struct server s;
    start(&s, "unixgram", "echo");
    char dir[200], path[108];
    assert_non_null(harness_tmp_path(dir, sizeof dir, "d"));
    int n = snprintf(path, sizeof path, "%.*s/\x1b[31mred\nioplex serve: forged", 60, dir);
    CHECK(&s, n > 0 && (size_t)n < sizeof path);
    CHECK(&s, mkdir(dir, 0700) == 0);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(&s, fd >= 0);
    struct sockaddr_un me = {.sun_family = AF_UNIX}, to = {.sun_family = AF_UNIX};
    memcpy(me.sun_path, path, strlen(path));
    memcpy(to.sun_path, s.path, strlen(s.path));
    CHECK(&s, bind(fd, (struct sockaddr *)&me, sizeof me) == 0);
    CHECK(&s, connect(fd, (struct sockaddr *)&to, sizeof to) == 0);
    int big = 200000;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    static char over[70000];
    for (int i = 0; i < 10; i++)
        CHECK(&s, send(fd, over, sizeof over, 0) == (ssize_t)sizeof over);
    CHECK(&s, answered(&s, "after"));
    close(fd);
    unlink(path);
    rmdir(dir);
    CHECK(&s, server_wait_stderr(&s, "dropping datagrams: longer than", IO_MS));
    server_stop_clean(&s);
    expect_episode(&s, "longer than the receive buffer", 10);
    /* The path came out escaped, on its one line. */
    CHECK(&s, strstr(s.err, "\\x1B[31mred\\x0Aioplex serve: forged") != NULL);
    CHECK(&s, strchr(s.err, '\x1b') == NULL);
    CHECK(&s, server_stderr_count(&s, "\nioplex serve: forged") == 0);
}

/* ---- registration --------------------------------------------------------------- */

static struct harness_cases cases;

static void add(const char *name, CMUnitTestFunction fn, const char *transport)
{
    harness_add_case(&cases, transport, name, fn, (void *)transport);
}

int main(int argc, char **argv)
{
    int dgram;
    model = harness_model_checked(argc, argv, &dgram);
    if (!dgram) {
        fprintf(stderr, "model_dgram: model %s does not serve datagrams; run this under "
                        "those that do only (tests/integration/CMakeLists.txt)\n", model);
        return 1;
    }
    add("privileged_source", privileged_source, "udp4");
    add("privileged_source", privileged_source, "udp6");
    add("echo_itself", echo_itself, "udp4");
    add("echo_chargen_loop", echo_chargen_loop, "udp4");
    add("chargen_rate", chargen_rate, "udp4");
    add("chargen_rate", chargen_rate, "unixgram");
    add("blocked_client", blocked_client, "unixgram");
    add("oversized", oversized, "unixgram");
    return harness_run_cases(&cases, "model_dgram", model);
}
