/*
 * The chat service (src/service/chat.c), under every model that takes it
 * (those not built here are skipped), and through it iop_post() across
 * threads (thread and pool: every connection on a thread of its own;
 * epoll -w 2: connections on two loops).
 *
 *   room        5 clients join, each sees the later ones' joins; a line
 *               reaches every other client once, with the sender's name,
 *               and not the sender; a last line without "\n"; leaves
 *   concurrent  3 senders x 200 lines at once: all arrive, each sender's
 *               in order, and every client sees the one same order
 *   slow        a client that never reads while another floods the room
 *               is disconnected at the high watermark, the server's RSS
 *               stays bounded, the others keep chatting
 *   oversize    a line longer than --max-frame closes its sender, who is
 *               out of the room at once: while the server still lingers
 *               on its connection (its side shut, the sender's open), a
 *               line said after the sender saw its end of stream reaches
 *               the others after "has left", not before
 *   refused     fork and prefork (if built) refuse -S chat: exit 2 and a
 *               message naming chat and the model; so does iterative,
 *               which serves one member at a time (nobody hears anyone)
 *
 * A client's name is user<id>, the connection id, which the test reads
 * from the server's -v line "open 127.0.0.1:PORT (connection ID)".
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
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

#define IO_MS HARNESS_IO_TIMEOUT_MS
#define QUIET_MS 300 /* "nothing arrives": this long */
#define MAX_CLIENTS 8

struct model_cfg {
    const char *name;    /* test name suffix */
    const char *model;
    const char *workers; /* -w, or NULL */
};

static const struct model_cfg configs[] = {
    {"thread", "thread", NULL},
    {"select", "select", NULL},
    {"poll", "poll", NULL},
    {"epoll", "epoll", NULL},
    {"epoll-w2", "epoll", "2"},
    {"pool", "pool", NULL},  /* blocking path on a pool's threads */
    {"aio", "aio", NULL},
    {"uring", "uring", NULL}, /* skipped where liburing was not found */
    {"uring-w2", "uring", "2"},
};

/* ---- clients with a buffered line reader ------------------------------------ */

struct client {
    int fd;
    uint64_t id;
    unsigned port;
    struct line_reader in;
};

static struct server srv;
static struct client clients[MAX_CLIENTS];

/* The next line, "\n" stripped, NUL-terminated. Returns its length, or < 0
 * on timeout, end of stream or error (line_reader_next()). */
static ssize_t next_line(struct client *c, char *out, size_t cap, int timeout_ms)
{
    return line_reader_next(&c->in, c->fd, out, cap, timeout_ms);
}

static void expect_line(struct client *c, const char *want)
{
    char got[4096];
    ssize_t n = next_line(c, got, sizeof got, IO_MS);
    if (n < 0 || strcmp(got, want) != 0) {
        server_dump(&srv);
        fail_msg("client user%" PRIu64 ": expected \"%s\", got %s%s%s", c->id, want,
                 n < 0 ? "nothing (timeout or EOF)" : "\"", n < 0 ? "" : got,
                 n < 0 ? "" : "\"");
    }
}

/* Nothing arrives (nothing buffered either) until `end` (now_ms()). */
static void expect_quiet_until(struct client *c, long long end)
{
    CHECK(&srv, c->in.len == c->in.off);
    long long left = end - now_ms();
    int r = wait_readable(c->fd, left > 0 ? (int)left : 0);
    if (r != 0) {
        char got[4096];
        ssize_t n = next_line(c, got, sizeof got, 100);
        server_dump(&srv);
        fail_msg("client user%" PRIu64 " expected nothing, got \"%s\"", c->id,
                 n < 0 ? "(EOF or a partial line)" : got);
    }
}

/* Nothing arrives for QUIET_MS. */
static void expect_quiet(struct client *c)
{
    expect_quiet_until(c, now_ms() + QUIET_MS);
}

/* Nothing arrives at clients 0..n-1 for QUIET_MS, watched together. */
static void expect_quiet_first(int n)
{
    long long end = now_ms() + QUIET_MS;
    for (int k = 0; k < n; k++)
        expect_quiet_until(&clients[k], end);
}

static void say(struct client *c, const char *text)
{
    CHECK(&srv, send_all(c->fd, text, strlen(text)) == 0);
}

static unsigned local_port(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return 0;
    return ntohs(a.sin_port);
}

/* Connect client k, learn its id from the server's "open" line, and wait
 * until it is in the room ("chat: userN has joined", logged after the
 * announcement), so it cannot miss the next client's join. */
static void connect_client(int k)
{
    struct client *c = &clients[k];
    c->in.off = c->in.len = 0;
    c->fd = client_connect(&srv);
    CHECK(&srv, c->fd >= 0);
    c->port = local_port(c->fd);
    char needle[64];
    snprintf(needle, sizeof needle, "open 127.0.0.1:%u (connection ", c->port);
    CHECK(&srv, server_wait_stderr(&srv, needle, IO_MS));
    const char *at = strstr(srv.err, needle);
    CHECK(&srv, at != NULL);
    c->id = strtoull(at + strlen(needle), NULL, 10);
    CHECK(&srv, c->id > 0);
    snprintf(needle, sizeof needle, "chat: user%" PRIu64 " has joined\n", c->id);
    CHECK(&srv, server_wait_stderr(&srv, needle, IO_MS));
}

/* Client k joins a room where clients 0..k-1 are: each of them is told. */
static void join(int k)
{
    connect_client(k);
    char want[64];
    snprintf(want, sizeof want, "* user%" PRIu64 " has joined", clients[k].id);
    for (int i = 0; i < k; i++)
        expect_line(&clients[i], want);
}

static void leave(int k, int others[], int nothers)
{
    client_close(clients[k].fd);
    clients[k].fd = -1;
    char want[64];
    snprintf(want, sizeof want, "* user%" PRIu64 " has left", clients[k].id);
    for (int i = 0; i < nothers; i++)
        expect_line(&clients[others[i]], want);
}

static void start_chat(const struct model_cfg *m, const char *const extra[])
{
    if (model_serves_datagrams(m->model) < 0)
        skip(); /* not built here */
#if defined(__SANITIZE_THREAD__)
    /* aio servers crash inside TSan's runtime (glibc's AIO helper
     * threads are unknown to it; see TSAN_TESTS in the Makefile). */
    if (strcmp(m->model, "aio") == 0)
        skip();
#endif
    const char *args[24];
    int n = 0;
    args[n++] = "-m";
    args[n++] = m->model;
    if (m->workers) {
        args[n++] = "-w";
        args[n++] = m->workers;
    }
    args[n++] = "-v";
    args[n++] = "-S";
    args[n++] = "chat";
    for (int i = 0; extra && extra[i]; i++)
        args[n++] = extra[i];
    args[n++] = "127.0.0.1";
    args[n++] = "0";
    args[n] = NULL;
    if (server_start(&srv, args) != 0)
        fail_msg("cannot start chat under %s", m->model);
    for (int i = 0; i < MAX_CLIENTS; i++)
        clients[i].fd = -1;
}

static void stop_chat(void)
{
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (clients[i].fd >= 0) {
            client_close(clients[i].fd);
            clients[i].fd = -1;
        }
    server_stop_clean(&srv);
}

/* ---- room: joins, lines, leaves ------------------------------------------------ */

static void test_room(void **state)
{
    const struct model_cfg *m = *state;
    start_chat(m, NULL);
    for (int k = 0; k < 5; k++)
        join(k);
    for (int k = 0; k < 5; k++)
        for (int j = k + 1; j < 5; j++)
            CHECK(&srv, clients[k].id != clients[j].id);

    /* A line from client 0 reaches 1..4 with its name, and not 0. */
    say(&clients[0], "hello\n");
    char want[256];
    snprintf(want, sizeof want, "<user%" PRIu64 "> hello", clients[0].id);
    for (int k = 1; k < 5; k++)
        expect_line(&clients[k], want);
    expect_quiet(&clients[0]);

    /* "\r\n" is a line end too; an empty line is relayed as one. */
    say(&clients[1], "bye now\r\n\n");
    for (int k = 0; k < 5; k++) {
        if (k == 1)
            continue;
        snprintf(want, sizeof want, "<user%" PRIu64 "> bye now", clients[1].id);
        expect_line(&clients[k], want);
        snprintf(want, sizeof want, "<user%" PRIu64 "> ", clients[1].id);
        expect_line(&clients[k], want);
    }

    /* Client 4 leaves: the next thing 0..3 get is its leave, so nothing
     * came twice (and 0 and 1 never got their own lines). */
    int rest[] = {0, 1, 2, 3};
    leave(4, rest, 4);

    /* A last line without "\n", then end of stream: still a line. */
    say(&clients[3], "no newline");
    CHECK(&srv, shutdown(clients[3].fd, SHUT_WR) == 0);
    snprintf(want, sizeof want, "<user%" PRIu64 "> no newline", clients[3].id);
    for (int k = 0; k < 3; k++)
        expect_line(&clients[k], want);
    snprintf(want, sizeof want, "* user%" PRIu64 " has left", clients[3].id);
    for (int k = 0; k < 3; k++)
        expect_line(&clients[k], want);
    CHECK(&srv, expect_eof(clients[3].fd, IO_MS) == 1);

    expect_quiet_first(3);
    stop_chat();
}

/* ---- concurrent senders ---------------------------------------------------- */

#define SENDERS 3
#define LINES_EACH 200

struct sender {
    int fd;
    int index;
    unsigned seed;
    int ok;
};

static void *send_lines(void *arg)
{
    struct sender *s = arg;
    char *text = malloc(LINES_EACH * 32);
    size_t len = 0;
    if (!text)
        return NULL;
    for (int i = 0; i < LINES_EACH; i++)
        len += (size_t)sprintf(text + len, "s%d line %d\n", s->index, i);
    /* In random pieces, so lines are cut anywhere. */
    s->ok = send_fragmented(s->fd, text, len, &s->seed) == 0;
    free(text);
    return NULL;
}

static void test_concurrent(void **state)
{
    const struct model_cfg *m = *state;
    start_chat(m, NULL);
    for (int k = 0; k < 5; k++)
        join(k); /* 0..2 send, 3 and 4 only listen */

    struct sender snd[SENDERS];
    pthread_t th[SENDERS];
    unsigned seed = harness_seed();
    for (int i = 0; i < SENDERS; i++) {
        snd[i] = (struct sender){.fd = clients[i].fd, .index = i,
                                 .seed = seed + (unsigned)i * 7919u + 1, .ok = 0};
        CHECK(&srv, pthread_create(&th[i], NULL, send_lines, &snd[i]) == 0);
    }
    for (int i = 0; i < SENDERS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < SENDERS; i++)
        CHECK(&srv, snd[i].ok);

    /* What listener 3 sees is the room's order; everyone else must see
     * the same order, less their own lines. */
    static char order[SENDERS * LINES_EACH][256];
    static int order_from[SENDERS * LINES_EACH];
    for (int k = 3; k < 5; k++) {
        int next[SENDERS] = {0};
        for (int n = 0; n < SENDERS * LINES_EACH; n++) {
            char got[256];
            if (next_line(&clients[k], got, sizeof got, IO_MS) < 0) {
                server_dump(&srv);
                fail_msg("listener %d: line %d of %d did not arrive", k, n,
                         SENDERS * LINES_EACH);
            }
            uint64_t id;
            int idx, seq, used = 0;
            if (sscanf(got, "<user%" SCNu64 "> s%d line %d%n", &id, &idx, &seq, &used) != 3 ||
                got[used] != '\0' || idx < 0 || idx >= SENDERS || id != clients[idx].id) {
                server_dump(&srv);
                fail_msg("listener %d: unexpected line \"%s\"", k, got);
            }
            if (seq != next[idx]) {
                server_dump(&srv);
                fail_msg("listener %d: from s%d got line %d, expected %d (order)", k,
                         idx, seq, next[idx]);
            }
            next[idx]++;
            if (k == 3) {
                snprintf(order[n], sizeof order[n], "%s", got);
                order_from[n] = idx;
            } else if (strcmp(order[n], got) != 0) {
                server_dump(&srv);
                fail_msg("listener 4 saw \"%s\" where listener 3 saw \"%s\"", got, order[n]);
            }
        }
    }
    for (int k = 0; k < SENDERS; k++) {
        for (int n = 0; n < SENDERS * LINES_EACH; n++) {
            if (order_from[n] == k)
                continue;
            char got[256];
            if (next_line(&clients[k], got, sizeof got, IO_MS) < 0 ||
                strcmp(got, order[n]) != 0) {
                server_dump(&srv);
                fail_msg("sender %d: expected \"%s\" (room order), got \"%s\"", k,
                         order[n], got);
            }
        }
    }
    expect_quiet_first(5); /* and nothing more, nor twice */
    stop_chat();
}

/* ---- a client that does not read ------------------------------------------------- */

#define FLOOD_LINE 1000            /* bytes per line sent, "\n" included */
#define FLOOD_ROUND 64             /* lines per round: 64 KB */
/* The server's RSS may grow by a quarter of the flood, or half under a
 * sanitizer, whose own bookkeeping (ASan's quarantine, TSan's shadow)
 * grows with the traffic; a server that kept what the mute client does
 * not read would grow by the flood less a few MB of kernel buffers. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define FLOOD_ROUNDS 512           /* 32 MB */
#define RSS_BOUND_KB (16 * 1024)
#else
#define FLOOD_ROUNDS 256           /* 16 MB */
#define RSS_BOUND_KB (4 * 1024)
#endif

static void test_slow_receiver(void **state)
{
    const struct model_cfg *m = *state;
    start_chat(m, NULL); /* default high watermark: 256 KiB */
    join(0);             /* the talker */
    join(1);             /* a listener, who reads */
    join(2);             /* never reads */
    struct client *talker = &clients[0], *listener = &clients[1], *mute = &clients[2];
    /* The kernel holds some of what the mute client does not read (the
     * server's send buffer grows to a few MB): the flood is well beyond. */

    long rss0 = proc_rss_kb(srv.pid);
    CHECK(&srv, rss0 > 0);
    static char round[FLOOD_ROUND * FLOOD_LINE];
    for (int i = 0; i < FLOOD_ROUND; i++) {
        memset(round + i * FLOOD_LINE, 'a' + i % 26, FLOOD_LINE - 1);
        round[i * FLOOD_LINE + FLOOD_LINE - 1] = '\n';
    }
    char left[64];
    snprintf(left, sizeof left, "* user%" PRIu64 " has left", mute->id);
    int saw_left = 0;
    long rss_max = rss0;
    for (int r = 0; r < FLOOD_ROUNDS; r++) {
        CHECK(&srv, send_all(talker->fd, round, sizeof round) == 0);
        /* The listener keeps up: it takes this round's lines before the
         * next, so only the mute client falls behind. */
        for (int i = 0; i < FLOOD_ROUND;) {
            static char got[FLOOD_LINE + 64];
            if (next_line(listener, got, sizeof got, IO_MS) < 0) {
                server_dump(&srv);
                fail_msg("round %d: the listener's line %d did not arrive", r, i);
            }
            if (strcmp(got, left) == 0) {
                saw_left++;
                continue;
            }
            CHECK(&srv, strlen(got) > FLOOD_LINE - 1 && got[strlen(got) - 1] == 'a' + i % 26);
            i++;
        }
        if (r % 16 == 15) {
            long kb = proc_rss_kb(srv.pid);
            if (kb > rss_max)
                rss_max = kb;
        }
    }
    /* The mute client was cut off, said so at INFO, and seen to leave. */
    char needle[96];
    snprintf(needle, sizeof needle, "closing 127.0.0.1:%u: not reading (", mute->port);
    CHECK(&srv, server_wait_stderr(&srv, needle, IO_MS));
    if (!saw_left)
        expect_line(listener, left);
    else
        CHECK(&srv, saw_left == 1);
    expect_line(talker, left);
    fprintf(stderr, "test_chat: %s: server RSS %ld kB before a %d MB flood, "
            "at most %ld kB during it\n", m->name, rss0, FLOOD_ROUNDS / 16, rss_max);
    CHECK(&srv, rss_max - rss0 < RSS_BOUND_KB);

    /* Its socket ends (EOF, or a reset once what the kernel held is read). */
    char sink[65536];
    long long end = now_ms() + IO_MS;
    ssize_t n;
    while ((n = recv(mute->fd, sink, sizeof sink, MSG_DONTWAIT)) != 0) {
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            break; /* ECONNRESET: the server closed with our input unread */
        CHECK(&srv, now_ms() < end);
        if (n < 0)
            wait_readable(mute->fd, 100);
    }
    client_close(mute->fd);
    mute->fd = -1;

    /* The others keep chatting. */
    say(talker, "still here\n");
    char want[64];
    snprintf(want, sizeof want, "<user%" PRIu64 "> still here", talker->id);
    expect_line(listener, want);
    say(listener, "me too\n");
    snprintf(want, sizeof want, "<user%" PRIu64 "> me too", listener->id);
    expect_line(talker, want);
    stop_chat();
}

/* ---- a line too long ------------------------------------------------------------- */

static void test_oversize(void **state)
{
    const struct model_cfg *m = *state;
    static const char *const extra[] = {"--max-frame", "64", NULL};
    start_chat(m, extra);
    join(0); /* hears it all */
    join(1); /* sends a line too long */
    join(2); /* talks after */
    static char big[200];
    memset(big, 'z', sizeof big);
    CHECK(&srv, send_all(clients[1].fd, big, sizeof big) == 0);
    /* The server closes 1: its end of stream, while 1 keeps its side
     * open. The server lingers on it now, for as long as 1 stays open (up
     * to 2 s). */
    char got[4096], want[64];
    CHECK(&srv, next_line(&clients[1], got, sizeof got, IO_MS) < 0 &&
                    clients[1].in.len == clients[1].in.off);
    CHECK(&srv, expect_eof(clients[1].fd, 0) == 1);
    /* Said now, after 1's end: 1 left before it, so 0 hears the leave first
     * (posts to 0 keep their order). A server that kept 1 in the room
     * while lingering would tell 0 the line first and the leave later. */
    say(&clients[2], "after\n");
    snprintf(want, sizeof want, "* user%" PRIu64 " has left", clients[1].id);
    expect_line(&clients[0], want);
    expect_line(&clients[2], want);
    snprintf(want, sizeof want, "<user%" PRIu64 "> after", clients[2].id);
    expect_line(&clients[0], want);
    char needle[96];
    snprintf(needle, sizeof needle, "closing 127.0.0.1:%u: message longer than 64 bytes",
             clients[1].port);
    CHECK(&srv, server_wait_stderr(&srv, needle, IO_MS));
    stop_chat();
}

/* ---- refused by the models without shared memory --------------------------------- */

static void refused_by(const char *model)
{
    if (model_serves_datagrams(model) < 0)
        skip(); /* not built here */
    const char *argv[] = {ioplex_bin(), "serve", "-m", model, "-S", "chat",
                          "127.0.0.1", "0", NULL};
    char out[4096], err[4096];
    int code = run_cmd(argv, NULL, 0, out, sizeof out, NULL, err, sizeof err, IO_MS);
    char quoted[64];
    snprintf(quoted, sizeof quoted, "'%s'", model);
    if (code != 2 || !strstr(err, "'chat'") || !strstr(err, quoted) || strchr(err, '\n') != strrchr(err, '\n'))
        fail_msg("ioplex serve -m %s -S chat: exit %d, stderr \"%s\"; expected exit 2 "
                 "and one line naming 'chat' and %s", model, code, err, quoted);
}

static void test_refused_fork(void **state)
{
    (void)state;
    refused_by("fork");
}

static void test_refused_prefork(void **state)
{
    (void)state;
    refused_by("prefork");
}

static void test_refused_iterative(void **state)
{
    (void)state;
    refused_by("iterative");
}

/* ---- the list --------------------------------------------------------------------- */

int main(void)
{
    /* Under ASan, freed memory sits in a quarantine (256 MB by default),
     * which would read as growth in the RSS check: keep it small for the
     * servers started from here. Harmless without ASan. */
    char asan[512];
    const char *prev = getenv("ASAN_OPTIONS");
    snprintf(asan, sizeof asan, "%s%squarantine_size_mb=4", prev ? prev : "",
             prev && *prev ? ":" : "");
    setenv("ASAN_OPTIONS", asan, 1);

    enum { NCFG = sizeof configs / sizeof configs[0] };
    static const struct {
        const char *what;
        CMUnitTestFunction fn;
    } kinds[] = {
        {"room", test_room},
        {"concurrent", test_concurrent},
        {"slow_receiver", test_slow_receiver},
        {"oversize", test_oversize},
    };
    enum { NKINDS = sizeof kinds / sizeof kinds[0] };
    static char names[NKINDS * NCFG][64];
    struct CMUnitTest tests[NKINDS * NCFG + 3];
    size_t n = 0;
    for (size_t k = 0; k < NKINDS; k++)
        for (size_t i = 0; i < NCFG; i++) {
            snprintf(names[n], sizeof names[n], "%s/%s", kinds[k].what, configs[i].name);
            tests[n] = (struct CMUnitTest){names[n], kinds[k].fn, NULL, harness_teardown,
                                           (void *)&configs[i]};
            n++;
        }
    tests[n++] = (struct CMUnitTest)cmocka_unit_test_teardown(test_refused_iterative, harness_teardown);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test_teardown(test_refused_fork, harness_teardown);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test_teardown(test_refused_prefork, harness_teardown);
    return _cmocka_run_group_tests("chat", tests, n, NULL, NULL);
}
