/*
 * Hostile and broken peers, under every model. Run as `model_hostile MODEL`.
 *
 *   slow_and_silent   --idle-timeout 1, line echo: a peer trickling a byte
 *                     every 200 ms into a line it never ends, and a silent
 *                     one, are both closed (EOF or reset) after about 1 s:
 *                     bytes that complete no message are not activity.
 *                     Meanwhile a third client keeps getting echoes; under
 *                     iterative, which serves one client at a time, the
 *                     third is answered only once the timeouts have freed
 *                     the server from the other two, in order.
 *   stalled_reader    --idle-timeout 1, bytes: a peer that asks for 64 MiB
 *                     and never reads is closed once its output has not
 *                     moved for 1 s (it then reads what was buffered, and
 *                     EOF well before 64 MiB); another client is served
 *                     meanwhile (iterative: right after)
 *   nonreader_memory  no timeout, echo: a peer that sends without reading
 *                     until the kernel takes nothing more does not grow the
 *                     server's memory (RSS of its process tree) by more
 *                     than MEM_BOUND_KB; others are still served (except
 *                     under iterative); its reset leaves no descriptor
 *   abrupt_peers      bytes, 4 rounds: peers reset mid-request (SO_LINGER
 *                     0), killed mid-reply (a 64 MiB answer reset after
 *                     64 KiB), half-open (shutdown(SHUT_WR), never
 *                     reading, then gone): after each round the
 *                     descriptors of the server's process tree, its
 *                     processes (fork, prefork) and its threads
 *                     (io_uring's kernel workers aside) return to what
 *                     they were; the last two rounds add less than 768 KiB
 *                     of RSS (after a warm-up); it still serves, and exits
 *                     0 (under ASan, LeakSanitizer finds no leak)
 *   max_conns_flood   --max-conns 4, 4 clients holding, 50 more: each of
 *                     the 50 sees EOF or a reset within a bound (not a
 *                     hang), the 4 are still served, and once they leave
 *                     4 new clients are served together (prefork: its 4
 *                     children busy, the parent turns the 50 away).
 *                     iterative (one client at a time) refuses no one:
 *                     the 50 wait in the listen backlog, unanswered while
 *                     the holder stays, and are all served once it leaves.
 *
 * Every wait is bounded; timing is judged only from below (a timeout
 * cannot fire early) and with generous upper bounds, and the active
 * client of slow_and_silent is judged only if this process was not held
 * off the CPU (STALL_MS).
 */
#define _GNU_SOURCE
#include "harness.h"
#include "harness_cases.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define HOSTILE_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define HOSTILE_TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HOSTILE_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define HOSTILE_TSAN 1
#endif
#endif

/* TSan keeps shadow memory for what the program touches; ASan gives
 * each thread allocator caches of its own (the pool has 16 threads). */
#ifdef HOSTILE_TSAN
#define SHADOW_FACTOR 5
#elif defined(HOSTILE_ASAN)
#define SHADOW_FACTOR 2
#else
#define SHADOW_FACTOR 1
#endif

#define IO_MS HARNESS_IO_TIMEOUT_MS
#define SETTLE_MS 10000      /* descriptors, processes, threads back */
#define STALL_MS 800         /* a longer pause of ours: the active client was idle too */
#define TRICKLE_MS 200       /* the slow sender's pace */
#define FLOOD_MAX ((size_t)64 << 20)
#define PLATEAU_MS 1000
#define HIGH_WATER "65536"   /* event models and aio: --high-water */
#define BYTES_BIG "67108864" /* the bytes service's largest answer */
#define FLOOD_HOLDERS 4
#define FLOOD_EXTRA 50
#define ABRUPT_EACH 6
#define ABRUPT_ROUNDS 4
#define ABRUPT_WARM 2
#define ABRUPT_RSS_KB 768
#define WARM_CLIENTS 16 /* the pool's threads here (-w) */

static const char *model;
static int one_at_a_time; /* iterative */
static int queues_extra;  /* iterative: --max-conns refuses no one */
static int serves_few;    /* iterative, prefork: fewer clients at once than WARM_CLIENTS */
static unsigned seed;

/* ---- the server's process tree ------------------------------------------------- */

/* The server's children that are not zombies (fork, prefork). */
static int nchildren(pid_t pid)
{
    pid_t kids[256];
    return proc_children(pid, kids, 256, 0);
}

/* Poll (up to SETTLE_MS) until f(pid) <= limit; returns the last value. */
static int settle(int (*f)(pid_t), pid_t pid, int limit)
{
    long long deadline = now_ms() + SETTLE_MS;
    int n;
    while ((n = f(pid)) > limit && now_ms() < deadline)
        sleep_ms(20);
    return n;
}

/* ASan holds freed blocks in a quarantine: for the memory case the
 * server runs without it (as in model_evload). */
static void no_quarantine(int on)
{
#ifdef HOSTILE_ASAN
    static char saved[1024];
    static int was_set;
    if (on) {
        const char *cur = getenv("ASAN_OPTIONS");
        was_set = cur != NULL;
        snprintf(saved, sizeof saved, "%s", cur ? cur : "");
        char v[1200];
        snprintf(v, sizeof v, "%s%squarantine_size_mb=0:thread_local_quarantine_size_kb=0",
                 saved, saved[0] ? ":" : "");
        setenv("ASAN_OPTIONS", v, 1);
    } else if (was_set) {
        setenv("ASAN_OPTIONS", saved, 1);
    } else {
        unsetenv("ASAN_OPTIONS");
    }
#else
    (void)on;
#endif
}

/* ---- servers and clients ------------------------------------------------------- */

static void start(struct server *s, const char *transport, const char *service,
                  const char *const extra[])
{
    if (server_start_on(s, model, transport, service, extra) != 0)
        fail_msg("cannot start %s on %s under %s", service, transport, model);
}

/* One raw echo round trip of len random bytes. */
static int echo_once(int fd, size_t len)
{
    char out[512], in[512];
    if (len > sizeof out)
        len = sizeof out;
    fill_random(out, len, &seed);
    if (send_all(fd, out, len) != 0)
        return 0;
    return recv_exact(fd, in, len, IO_MS) == (ssize_t)len && memcmp(in, out, len) == 0;
}

/* One line echo round trip. */
static int line_once(int fd, int i)
{
    char out[64], in[64];
    int n = snprintf(out, sizeof out, "ping %d\n", i);
    if (send_all(fd, out, (size_t)n) != 0)
        return 0;
    return recv_line(fd, in, sizeof in, IO_MS) == n && memcmp(in, out, (size_t)n) == 0;
}

/* The bytes service: ask for n bytes and read them all. */
static int bytes_once(int fd, size_t n)
{
    char req[32], in[4096];
    int len = snprintf(req, sizeof req, "%zu\n", n);
    if (n > sizeof in || send_all(fd, req, (size_t)len) != 0)
        return 0;
    return recv_exact(fd, in, n, IO_MS) == (ssize_t)n;
}

/* Has the server closed fd? 1 on end-of-file or a reset within timeout_ms,
 * 0 if still open at the timeout, -1 if data came or another error. */
static int peer_closed(int fd, int timeout_ms)
{
    int r = wait_readable(fd, timeout_ms);
    if (r <= 0)
        return r;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE)))
        return 1;
    return n < 0 && (errno == EAGAIN || errno == EINTR) ? 0 : -1;
}

/* Close with a reset (SO_LINGER 0) instead of a FIN. */
static void close_reset(int fd)
{
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    client_close(fd);
}

/* A new client of an echo server, answered; retried for a while, since a
 * server at --max-conns may still be counting a client that has just
 * left (a child not yet reaped, a thread not yet gone). -1 if none. */
static int served_client(struct server *s)
{
    long long deadline = now_ms() + IO_MS;
    while (now_ms() < deadline) {
        int fd = client_connect(s);
        if (fd >= 0 && echo_once(fd, 64))
            return fd;
        client_close(fd);
        sleep_ms(50);
    }
    return -1;
}

/* ---- slow and silent peers --------------------------------------------------- */

static void slow_and_silent(void **state)
{
    (void)state;
    struct server s;
    static const char *const extra[] = {"-F", "line", "--idle-timeout", "1", NULL};
    start(&s, "tcp4", "echo", extra);
    int slow = client_connect(&s);
    CHECK(&s, slow >= 0);
    long long slow_t0 = now_ms();
    if (one_at_a_time)
        sleep_ms(200); /* the server takes it first and is held by it */
    int silent = client_connect(&s);
    int active = client_connect(&s);
    CHECK(&s, silent >= 0 && active >= 0);
    long long t0 = now_ms(), slow_at = -1, silent_at = -1, active_at = -1;
    long long last = t0, stall = 0;
    int rounds = 0, active_ok = 1;
    char in[64];
    if (one_at_a_time)
        CHECK(&s, send_all(active, "queued\n", 7) == 0);
    while (now_ms() - t0 < 8000) {
        if (slow_at < 0) {
            send(slow, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT); /* never a newline */
            int r = peer_closed(slow, 0);
            CHECK(&s, r >= 0); /* a partial line is never echoed */
            if (r == 1)
                slow_at = now_ms();
        }
        if (silent_at < 0) {
            int r = peer_closed(silent, 0);
            CHECK(&s, r >= 0);
            if (r == 1)
                silent_at = now_ms();
        }
        if (one_at_a_time) {
            if (active_at < 0 && wait_readable(active, 0) == 1) {
                CHECK(&s, recv_line(active, in, sizeof in, IO_MS) == 7);
                CHECK(&s, memcmp(in, "queued\n", 7) == 0);
                active_at = now_ms();
            }
            if (active_at >= 0)
                break;
        } else {
            if (now_ms() - last > stall)
                stall = now_ms() - last;
            if (active_ok && !line_once(active, rounds++))
                active_ok = 0;
            last = now_ms();
            if (slow_at >= 0 && silent_at >= 0)
                break;
        }
        sleep_ms(TRICKLE_MS);
    }
    fprintf(stderr, "slow_and_silent: the slow sender was closed after %lld ms, the "
            "silent one after %lld ms; ", slow_at < 0 ? -1 : slow_at - slow_t0,
            silent_at < 0 ? -1 : silent_at - t0);
    if (one_at_a_time)
        fprintf(stderr, "the queued client was answered after %lld ms\n",
                active_at < 0 ? -1 : active_at - t0);
    else
        fprintf(stderr, "the active client made %d round trips (%s; longest pause "
                "%lld ms)\n", rounds, active_ok ? "all answered" : "then closed", stall);
    CHECK(&s, slow_at >= 0 && silent_at >= 0);
    /* --idle-timeout 1: not before ~1 s. */
    CHECK(&s, slow_at - slow_t0 >= 900 && silent_at - t0 >= 900);
    if (one_at_a_time) {
        /* In order: each was served in turn, for its own timeout. */
        CHECK(&s, active_at >= 0);
        CHECK(&s, silent_at >= slow_at);
        CHECK(&s, silent_at - slow_at >= 700);
        CHECK(&s, active_at >= silent_at - 250); /* (polled every TRICKLE_MS) */
        CHECK(&s, line_once(active, 1));
    } else if (stall < STALL_MS) {
        CHECK(&s, active_ok);
        CHECK(&s, line_once(active, rounds));
    } else {
        fprintf(stderr, "slow_and_silent: this process stalled for %lld ms; the active "
                "client is not judged\n", stall);
    }
    client_close(slow);
    client_close(silent);
    client_close(active);
    server_stop_clean(&s);
}

/* ---- a peer that stops reading, with an idle timeout ---------------------------- */

static void stalled_reader(void **state)
{
    (void)state;
    struct server s;
    static const char *const extra[] = {"-v", "--idle-timeout", "1", NULL};
    /* A Unix socket: its buffers fill at once and then take nothing more
     * (on gVisor's TCP loopback a stalled window still lets a few KiB
     * through every second, which counts as output progress). */
    start(&s, "unix", "bytes", extra);
    int x = client_connect(&s);
    CHECK(&s, x >= 0);
    CHECK(&s, send_all(x, BYTES_BIG "\n", sizeof BYTES_BIG) == 0);
    long long t0 = now_ms();
    if (!one_at_a_time) {
        int y = client_connect(&s);
        CHECK(&s, y >= 0);
        CHECK(&s, bytes_once(y, 1000));
        client_close(y);
    }
    CHECK(&s, server_wait_stderr(&s, "idle for 1000 ms", IO_MS));
    long long closed_after = now_ms() - t0;
    /* What was buffered, then the end: the server gave up on the rest. */
    static char sink[65536];
    size_t got = 0;
    long long deadline = now_ms() + IO_MS;
    ssize_t n;
    while ((n = recv(x, sink, sizeof sink, MSG_DONTWAIT)) != 0 && now_ms() < deadline) {
        if (n > 0)
            got += (size_t)n;
        else if (errno == EAGAIN || errno == EINTR)
            wait_readable(x, 100);
        else
            break;
    }
    fprintf(stderr, "stalled_reader: closed after %lld ms, having sent %zu bytes\n",
            closed_after, got);
    CHECK(&s, n == 0);
    CHECK(&s, got > 0 && got < FLOOD_MAX);
    client_close(x);
    if (one_at_a_time) {
        int y = client_connect(&s);
        CHECK(&s, y >= 0);
        CHECK(&s, bytes_once(y, 1000));
        client_close(y);
    }
    server_stop_clean(&s);
}

/* ---- a peer that never reads, without a timeout: memory -------------------------- */

/* What the server may grow by while a peer floods without reading: the
 * blocking models hold one read buffer and one message's echo; the event
 * models and aio stop reading at the high watermark (64 KiB) plus one
 * wake-up's reads (uring: its provided-buffer ring, up to 2 MiB); plus
 * slack for the allocator and pages first touched. */
static long mem_bound_kb(void)
{
    long budget = strcmp(model, "uring") == 0 ? 2048 : 256;
    return (64 + budget + 3072) * SHADOW_FACTOR;
}

static void nonreader_memory(void **state)
{
    (void)state;
    struct server s;
    int event = strcmp(model, "select") == 0 || strcmp(model, "poll") == 0 ||
                strcmp(model, "epoll") == 0 || strcmp(model, "uring") == 0 ||
                strcmp(model, "aio") == 0;
    static const char *const hw[] = {"--high-water", HIGH_WATER, NULL};
    no_quarantine(1);
    start(&s, "tcp4", "echo", event ? hw : NULL);
    no_quarantine(0);
    int w = client_connect(&s);
    CHECK(&s, w >= 0 && echo_once(w, 200));
    client_close(w);
    sleep_ms(100);
    int fds0 = proc_tree_fds(s.pid);
    int x = client_connect(&s);
    CHECK(&s, x >= 0 && echo_once(x, 200));
    int y = -1;
    if (!one_at_a_time) {
        y = client_connect(&s);
        CHECK(&s, y >= 0 && echo_once(y, 200));
    }
    sleep_ms(100);
    long base = proc_tree_rss_kb(s.pid);
    CHECK(&s, base > 0);

    /* X sends and never reads, until the kernel takes nothing more for
     * PLATEAU_MS or 64 MiB are gone. */
    CHECK(&s, fcntl(x, F_SETFL, fcntl(x, F_GETFL) | O_NONBLOCK) == 0);
    static char chunk[65536];
    fill_random(chunk, sizeof chunk, &seed);
    size_t sent = 0;
    long long last_progress = now_ms(), t_end = now_ms() + 30000;
    while (sent < FLOOD_MAX && now_ms() - last_progress < PLATEAU_MS && now_ms() < t_end) {
        ssize_t n = send(x, chunk, sizeof chunk, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            sent += (size_t)n;
            last_progress = now_ms();
            continue;
        }
        struct pollfd pf = {.fd = x, .events = POLLOUT};
        poll(&pf, 1, 50);
    }
    long rss = proc_tree_rss_kb(s.pid);
    fprintf(stderr, "nonreader_memory: the kernel took %zu bytes%s; server RSS %ld KiB "
            "-> %ld KiB (bound +%ld KiB)\n", sent,
            sent < FLOOD_MAX ? ", then nothing for 1 s" : " (all of them)", base, rss,
            mem_bound_kb());
    CHECK(&s, sent < FLOOD_MAX); /* the server stopped reading */
    CHECK(&s, rss - base < mem_bound_kb());
    if (y >= 0) { /* others are still served */
        for (int i = 0; i < 10; i++)
            CHECK(&s, echo_once(y, 1 + rng_next(&seed) % 500));
        client_close(y);
    }
    close_reset(x);
    int fds = settle(proc_tree_fds, s.pid, fds0);
    if (fds > fds0)
        fprintf(stderr, "nonreader_memory: %d descriptors before, %d after\n", fds0, fds);
    CHECK(&s, fds <= fds0);
    int z = served_client(&s);
    CHECK(&s, z >= 0);
    client_close(z);
    server_stop_clean(&s);
}

/* ---- resets, half-open peers, clients killed mid-reply --------------------------- */

/* One round of every kind of abrupt peer, ABRUPT_EACH of each. */
static void abrupt_round(struct server *s)
{
    for (int i = 0; i < ABRUPT_EACH; i++) {
        /* Reset in the middle of a request line. */
        int r = client_connect(s);
        CHECK(s, r >= 0);
        CHECK(s, send_all(r, "123", 3) == 0);
        sleep_ms(5);
        close_reset(r);
        /* Killed while a 64 MiB answer streams in. */
        int k = client_connect(s);
        CHECK(s, k >= 0);
        CHECK(s, send_all(k, BYTES_BIG "\n", sizeof BYTES_BIG) == 0);
        static char buf[65536];
        CHECK(s, recv_exact(k, buf, sizeof buf, IO_MS) == (ssize_t)sizeof buf);
        close_reset(k);
    }
    /* Half-open: a big request, our side shut, never reading; left
     * connected for a while. (Those beyond what iterative and prefork
     * serve at once wait in the backlog.) */
    int halfopen[ABRUPT_EACH];
    for (int i = 0; i < ABRUPT_EACH; i++) {
        halfopen[i] = client_connect(s);
        CHECK(s, halfopen[i] >= 0);
        CHECK(s, send_all(halfopen[i], BYTES_BIG "\n", sizeof BYTES_BIG) == 0);
        CHECK(s, shutdown(halfopen[i], SHUT_WR) == 0);
    }
    sleep_ms(100);
    for (int i = 0; i < ABRUPT_EACH; i++)
        client_close(halfopen[i]); /* unread data: the kernel resets */
}

/* Have every thread or process of the server serve once, so the pages
 * each touches the first time (its stack: the bytes service writes from a
 * 16 KiB buffer on it) are in the RSS before it is measured: WARM_CLIENTS
 * held at once (as many as the pool's threads), or one after another
 * where the server serves fewer at once (iterative, prefork). */
static void warm_up(struct server *s)
{
    int fd[WARM_CLIENTS];
    for (int i = 0; i < WARM_CLIENTS; i++) {
        fd[i] = client_connect(s);
        CHECK(s, fd[i] >= 0 && bytes_once(fd[i], 4000));
        if (serves_few)
            client_close(fd[i]);
    }
    if (!serves_few)
        for (int i = 0; i < WARM_CLIENTS; i++)
            client_close(fd[i]);
}

static void abrupt_peers(void **state)
{
    (void)state;
    struct server s;
    /* One malloc arena: glibc would give threads arenas of their own as
     * they first serve, which grows the RSS for a while (the pool's 16
     * threads: ~1.5 MiB over the first dozen rounds) and hides a leak. */
    setenv("MALLOC_ARENA_MAX", "1", 1);
    static const char *const pool_n[] = {"-w", "16", NULL}; /* WARM_CLIENTS */
    no_quarantine(1);
    start(&s, "tcp4", "bytes", strcmp(model, "pool") == 0 ? pool_n : NULL);
    no_quarantine(0);
    unsetenv("MALLOC_ARENA_MAX");
    warm_up(&s);
    sleep_ms(200);
    int fds0 = proc_tree_fds(s.pid);
    int kids0 = nchildren(s.pid), threads0 = count_threads_no_iou(s.pid);
    long rss[ABRUPT_ROUNDS + 1];
    rss[0] = proc_tree_rss_kb(s.pid);
    CHECK(&s, fds0 > 0 && kids0 >= 0 && threads0 > 0);
    int fds = 0, kids = 0, threads = 0;
    for (int round = 1; round <= ABRUPT_ROUNDS; round++) {
        abrupt_round(&s);
        fds = settle(proc_tree_fds, s.pid, fds0);
        kids = settle(nchildren, s.pid, kids0);
        threads = settle(count_threads_no_iou, s.pid, threads0);
        rss[round] = proc_tree_rss_kb(s.pid);
        fprintf(stderr, "abrupt_peers: round %d, %d peers each reset mid-request, killed "
                "mid-reply, half-open: descriptors %d -> %d, processes %d -> %d, threads "
                "%d -> %d, RSS %ld KiB -> %ld KiB\n", round, ABRUPT_EACH, fds0, fds,
                1 + kids0, 1 + kids, threads0, threads, rss[round - 1], rss[round]);
        CHECK(&s, fds <= fds0);
        CHECK(&s, kids <= kids0);
        CHECK(&s, threads <= threads0);
    }
    /* Memory: the first rounds warm the allocator up; after that two
     * rounds (36 connections) must not add what a leak of ~20 KiB per
     * connection would. */
    long grew = rss[ABRUPT_ROUNDS] - rss[ABRUPT_WARM];
    fprintf(stderr, "abrupt_peers: RSS grew by %ld KiB over the last %d rounds (bound %d)\n",
            grew, ABRUPT_ROUNDS - ABRUPT_WARM, ABRUPT_RSS_KB * SHADOW_FACTOR);
    CHECK(&s, grew < ABRUPT_RSS_KB * SHADOW_FACTOR);
    int z = client_connect(&s);
    CHECK(&s, z >= 0 && bytes_once(z, 4000));
    client_close(z);
    server_stop_clean(&s); /* (sanitizer builds: a leak fails the exit status) */
}

/* ---- a connection flood beyond --max-conns ----------------------------------------- */

static void max_conns_flood(void **state)
{
    (void)state;
    struct server s;
    static const char *const extra[] = {"--max-conns", "4", NULL};
    start(&s, "tcp4", "echo", extra);
    int w = client_connect(&s);
    CHECK(&s, w >= 0 && echo_once(w, 10));
    client_close(w);
    sleep_ms(200);
    int fds0 = proc_tree_fds(s.pid);

    int nhold = one_at_a_time ? 1 : FLOOD_HOLDERS;
    int hold[FLOOD_HOLDERS], extra_fd[FLOOD_EXTRA];
    for (int i = 0; i < nhold; i++) {
        hold[i] = served_client(&s);
        CHECK(&s, hold[i] >= 0);
    }
    long long t0 = now_ms();
    for (int i = 0; i < FLOOD_EXTRA; i++) {
        extra_fd[i] = client_connect(&s);
        CHECK(&s, extra_fd[i] >= 0);
    }
    if (queues_extra) {
        /* Waiting in the backlog: each says something, unanswered. */
        for (int i = 0; i < FLOOD_EXTRA; i++) {
            char msg[16];
            int n = snprintf(msg, sizeof msg, "extra %02d", i);
            CHECK(&s, send_all(extra_fd[i], msg, (size_t)n) == 0);
            CHECK(&s, shutdown(extra_fd[i], SHUT_WR) == 0);
        }
        CHECK(&s, wait_readable(extra_fd[0], 300) == 0);
        for (int i = 0; i < nhold; i++)
            CHECK(&s, echo_once(hold[i], 100));
        for (int i = 0; i < nhold; i++)
            client_close(hold[i]);
        for (int i = 0; i < FLOOD_EXTRA; i++) {
            char want[16], in[32];
            int n = snprintf(want, sizeof want, "extra %02d", i);
            CHECK(&s, recv_all(extra_fd[i], in, sizeof in, IO_MS) == n);
            CHECK(&s, memcmp(in, want, (size_t)n) == 0);
            client_close(extra_fd[i]);
        }
        fprintf(stderr, "max_conns_flood: %d extra clients queued in the backlog, all "
                "served in %lld ms once the holders left\n", FLOOD_EXTRA, now_ms() - t0);
    } else {
        /* Refused: each sees the end (or a reset) promptly. */
        int eof = 0;
        for (int i = 0; i < FLOOD_EXTRA; i++) {
            int r = peer_closed(extra_fd[i], IO_MS);
            if (r != 1)
                fprintf(stderr, "max_conns_flood: extra client %d: %s\n", i,
                        r == 0 ? "not closed" : "data or an error");
            CHECK(&s, r == 1);
            eof++;
            client_close(extra_fd[i]);
        }
        long long refused_in = now_ms() - t0;
        /* A flood is one episode: one line for all FLOOD_EXTRA. */
        CHECK(&s, server_stderr_count(&s, "refusing new connections: 4 clients already "
                                          "(--max-conns)") == 1);
        for (int i = 0; i < nhold; i++)
            CHECK(&s, echo_once(hold[i], 100));
        for (int i = 0; i < nhold; i++)
            client_close(hold[i]);
        /* Room again: FLOOD_HOLDERS new clients served together. */
        int fresh[FLOOD_HOLDERS];
        for (int i = 0; i < FLOOD_HOLDERS; i++) {
            fresh[i] = served_client(&s);
            CHECK(&s, fresh[i] >= 0);
        }
        for (int i = 0; i < FLOOD_HOLDERS; i++) {
            CHECK(&s, echo_once(fresh[i], 100));
            client_close(fresh[i]);
        }
        fprintf(stderr, "max_conns_flood: %d extra clients all closed by the server "
                "within %lld ms; the holders served throughout\n", eof, refused_in);
        /* Its end, once clients are served again. (A fresh client may be
         * refused while a holder is still counted, and start another.) */
        CHECK(&s, server_wait_stderr(&s, "accepting new connections again", IO_MS));
        int refusing = server_stderr_count(&s, "refusing new connections");
        int again = server_stderr_count(&s, "accepting new connections again");
        CHECK(&s, refusing - again == 0 || refusing - again == 1);
    }
    int fds = settle(proc_tree_fds, s.pid, fds0);
    if (fds > fds0)
        fprintf(stderr, "max_conns_flood: %d descriptors before, %d after\n", fds0, fds);
    CHECK(&s, fds <= fds0);
    server_stop_clean(&s);
}

/* ---- --max-conns by default ---------------------------------------------------------- */

#define DEFAULT_NOFILE 64

/* Without --max-conns, a server under RLIMIT_NOFILE 64 serves what the
 * limit holds (the -v "limits:" line says how many) and refuses the rest
 * at once, with one line for the flood: it neither runs out of
 * descriptors nor lets a flood take them all. */
static void default_max_conns(void **state)
{
    (void)state;
    struct server s;
    /* pool: threads for every client the limit admits (16 by default here,
     * the rest would wait queued, unanswered). */
    static const char *const extra[] = {"-v", NULL}, *const extra_pool[] = {"-v", "-w", "40", NULL};
    struct rlimit lim, low;
    CHECK(&s, getrlimit(RLIMIT_NOFILE, &lim) == 0);
    low = lim;
    low.rlim_cur = DEFAULT_NOFILE; /* the server inherits it */
    CHECK(&s, setrlimit(RLIMIT_NOFILE, &low) == 0);
    int ok = server_start_on(&s, model, "tcp4", "echo",
                             strcmp(model, "pool") == 0 ? extra_pool : extra);
    setrlimit(RLIMIT_NOFILE, &lim);
    if (ok != 0)
        fail_msg("cannot start echo under %s with RLIMIT_NOFILE %d", model, DEFAULT_NOFILE);
    CHECK(&s, server_wait_stderr(&s, "clients (default)", IO_MS));
    const char *p = strstr(s.err, "limits: ");
    int max = p ? atoi(p + 8) : 0;
    /* 32 kept back from 64; aio holds two descriptors a connection. */
    CHECK(&s, max == (strcmp(model, "aio") == 0 ? 16 : 32));

    int hold[32], extra_fd[FLOOD_EXTRA];
    for (int i = 0; i < max; i++) {
        hold[i] = served_client(&s);
        CHECK(&s, hold[i] >= 0);
    }
    for (int i = 0; i < FLOOD_EXTRA; i++) {
        extra_fd[i] = client_connect(&s);
        CHECK(&s, extra_fd[i] >= 0);
    }
    for (int i = 0; i < FLOOD_EXTRA; i++) {
        CHECK(&s, peer_closed(extra_fd[i], IO_MS) == 1);
        client_close(extra_fd[i]);
    }
    CHECK(&s, server_stderr_count(&s, "refusing new connections") == 1);
    CHECK(&s, server_stderr_count(&s, "--max-conns's default") == 1);
    /* Never out of descriptors; but uring's multishot accept takes the
     * whole backlog in the kernel before a refusal closes one, so a flood
     * can meet the limit there (one episode, reported and recovered). */
    if (strcmp(model, "uring") != 0)
        CHECK(&s, server_stderr_count(&s, "pausing") == 0);
    for (int i = 0; i < max; i++) {
        CHECK(&s, echo_once(hold[i], 100));
        client_close(hold[i]);
    }
    int z = served_client(&s);
    CHECK(&s, z >= 0);
    client_close(z);
    CHECK(&s, server_wait_stderr(&s, "accepting new connections again", IO_MS));
    server_stop_clean(&s);
}

/* ---- registration ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    static struct harness_cases cases;
    model = harness_model_checked(argc, argv, NULL);
    one_at_a_time = strcmp(model, "iterative") == 0;
    queues_extra = one_at_a_time;
    serves_few = one_at_a_time || strcmp(model, "prefork") == 0;
    seed = harness_seed();
    harness_add_case(&cases, "tcp4", "slow_and_silent", slow_and_silent, NULL);
    harness_add_case(&cases, "unix", "stalled_reader", stalled_reader, NULL);
    harness_add_case(&cases, "tcp4", "nonreader_memory", nonreader_memory, NULL);
    harness_add_case(&cases, "tcp4", "abrupt_peers", abrupt_peers, NULL);
    harness_add_case(&cases, "tcp4", "max_conns_flood", max_conns_flood, NULL);
    /* iterative serves one at a time; prefork's N children bound it (its
     * clients beyond N wait in the backlog unless --max-conns is given). */
    if (!serves_few)
        harness_add_case(&cases, "tcp4", "default_max_conns", default_max_conns, NULL);
    return harness_run_cases(&cases, "model_hostile", model);
}
