/*
 * The chat service under churn (from an audit: memory and threads without
 * bound, a room that stopped working, servers that no longer stopped),
 * under every model that takes chat: thread, pool, select, poll, epoll,
 * uring, aio, and epoll and uring with -w 2 (those not built here are
 * skipped). One server each, with --max-frame 1024 and --high-water 64 KiB.
 *
 *   1. churn   a member that never reads (a small window, so the kernel
 *              holds little for it) joins; then clients come BATCH at a
 *              time (never more open at once), as fast as they can: each
 *              joins and talks, then by turns sends a line longer than
 *              --max-frame (the server closes it), resets (SO_LINGER 0),
 *              just leaves, or talks more and leaves. CHURN_SESSIONS of
 *              them, within CHURN_MS. Then the server must catch up: no
 *              client left waiting to be accepted, its descriptors back
 *              to where they were.
 *   2. mute    the member that never reads is dropped as a never-reader
 *              ("closing PEER: not reading (N bytes queued)"), by the
 *              churners' lines or, if they were too few, by a talker's
 *              (4 MB at most), and its connection ends.
 *   3. room    new members join one by one, each saying who it is: the
 *              first hears every later one; exactly ROOM_MAX are let in
 *              and the next is told "* room is full" and closed. So no
 *              churner stayed in the room. (A churner still leaving when
 *              a new member is refused: the refusal is retried once the
 *              first member has seen someone leave.) The first member is
 *              heard by the others.
 *   4. stop    SIGTERM with the room full: exit 0 (server_stop_clean()).
 *
 * Throughout, the server's RSS and thread count stay under a bound derived
 * from the configuration (see bounds()). Every wait reads the server's
 * stderr, which must never fill up (a server blocked writing its log
 * serves no one).
 *
 * Under a sanitizer the server is slower: fewer sessions, the same
 * properties.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
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
#define MAX_FRAME 1024
#define HIGH_WATER (64 * 1024)
#define DRAIN_MS 2000
#define BATCH 40      /* churners open at once, at most */
#define ROOM_MAX 100  /* src/service/chat.c */
/* --max-conns: a full room, one turned away, and a batch of churners the
 * server has yet to see closed. */
#define MAX_CONNS (ROOM_MAX + BATCH + 8)
/* Descriptors a server may open once running, after its address line
 * (loops, eventfds, -w 2's second listener): fewer than a connection's. */
#define FDS_SLACK 8
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZER 1
#define CHURN_SESSIONS 1000
#define CHURN_MS 4000
#else
#define SANITIZER 0
#define CHURN_SESSIONS 3000
#define CHURN_MS 3000
#endif

struct model_cfg {
    const char *name;
    const char *model;
    const char *workers;
};

static const struct model_cfg configs[] = {
    {"thread", "thread", NULL},
    /* A pool serves N clients at once, the rest wait their turn: N must
     * cover a full room and one more to be turned away. */
    {"pool", "pool", "104"},
    {"select", "select", NULL},
    {"poll", "poll", NULL},
    {"epoll", "epoll", NULL},
    {"epoll-w2", "epoll", "2"},
    {"aio", "aio", NULL},
    {"uring", "uring", NULL},
    {"uring-w2", "uring", "2"},
};

static struct server srv;

/* ---- sockets ----------------------------------------------------------------- */

static int open_fds[ROOM_MAX + BATCH + 8]; /* closed by the teardown */

static void track(int fd)
{
    for (size_t i = 0; i < sizeof open_fds / sizeof open_fds[0]; i++)
        if (open_fds[i] < 0) {
            open_fds[i] = fd;
            return;
        }
    close(fd);
    fail_msg("too many sockets open");
}

static void untrack_close(int fd)
{
    if (fd < 0)
        return;
    for (size_t i = 0; i < sizeof open_fds / sizeof open_fds[0]; i++)
        if (open_fds[i] == fd)
            open_fds[i] = -1;
    close(fd);
}

/* A TCP connection to the server, non-blocking. `mute`: a small receive
 * buffer and MSS, set before connecting, so that the server's kernel
 * holds little for it (a loopback peer's 64 KiB MSS would let the
 * server's send buffer grow to megabytes) and its backlog shows in the
 * server. Fails the test if it cannot connect within IO_MS. */
static int dial(int mute)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    CHECK(&srv, fd >= 0);
    track(fd);
    if (mute) {
        int rcvbuf = 4096, mss = 536;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        setsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof mss);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv.port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int r = connect(fd, (struct sockaddr *)&a, sizeof a);
    if (r != 0 && errno == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int e = 0;
        socklen_t el = sizeof e;
        r = poll(&p, 1, IO_MS) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0 &&
                    e == 0 ? 0 : -1;
    }
    if (r != 0) {
        server_dump(&srv);
        fail_msg("cannot connect to the server within %d ms", IO_MS);
    }
    return fd;
}

/* Send all of it, waiting (bounded) while the socket is full. 0, or -1
 * (the server closed us, say). */
static int put(int fd, const void *p, size_t n)
{
    long long end = now_ms() + IO_MS;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p = (const char *)p + w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            return -1;
        struct pollfd q = {.fd = fd, .events = POLLOUT};
        if (now_ms() >= end || poll(&q, 1, 100) < 0)
            return -1;
    }
    return 0;
}

static void reset_close(int fd)
{
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    untrack_close(fd);
}

static unsigned local_port(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    return getsockname(fd, (struct sockaddr *)&a, &len) == 0 ? ntohs(a.sin_port) : 0;
}

/* ---- lines ------------------------------------------------------------------- */

struct member {
    int fd;
    struct line_reader in;
};

/* The next line ("\n" stripped, NUL-terminated) if one is complete within
 * timeout_ms: its length; -1 on timeout, -2 at end of stream or error, -3
 * for a line too long (line_reader_next()). */
static ssize_t read_line(struct member *m, char *out, size_t cap, int timeout_ms)
{
    return line_reader_next(&m->in, m->fd, out, cap, timeout_ms);
}

/* The rx_queue of the server's sockets on 127.0.0.1:port in
 * /proc/net/tcp: for peer 0, its listeners' (clients waiting to be
 * accepted); else the connection's from 127.0.0.1:peer (bytes the server
 * has not read). -1 if unreadable. */
static int server_rx(unsigned port, unsigned peer)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    if (!f)
        return -1;
    char line[512], want[32], want_peer[32];
    snprintf(want, sizeof want, "0100007F:%04X", port);
    snprintf(want_peer, sizeof want_peer, "0100007F:%04X", peer);
    int total = 0;
    while (fgets(line, sizeof line, f)) {
        char local[64], remote[64];
        unsigned st, tx, rx;
        if (sscanf(line, " %*d: %63s %63s %x %x:%x", local, remote, &st, &tx, &rx) == 5 &&
            strcmp(local, want) == 0 &&
            (peer ? strcmp(remote, want_peer) == 0 : st == 0x0A))
            total += (int)rx;
    }
    fclose(f);
    return total;
}

/* Wait (bounded) until the server has read all that 127.0.0.1:peer sent. */
static void wait_server_read(unsigned peer)
{
    long long end = now_ms() + IO_MS;
    while (server_rx(srv.port, peer) > 0 && now_ms() < end) {
        server_pump(&srv);
        sleep_ms(5);
    }
}

/* ---- the bounds ----------------------------------------------------------------- */

struct sample {
    long rss0, rss_max;
    int threads0, threads_max;
    int fds0;
};

static void take_sample(struct sample *s)
{
    long kb = proc_rss_kb(srv.pid);
    int th = count_threads_no_iou(srv.pid);
    if (kb > s->rss_max)
        s->rss_max = kb;
    if (th > s->threads_max)
        s->threads_max = th;
}

/* What the configuration allows. Connections at once: --max-conns (a
 * thread-per-connection server falls behind a client that churns as fast
 * as it can, so without it nothing but the client bounds its threads).
 * Threads: the blocking models have one per connection; aio's glibc has
 * two helpers per connection at most (aio_init() is told so). Memory:
 * each connection holds at most the high watermark of output (posts
 * included: iop_post() enforces it when posting) and a frame of input,
 * and, under the blocking models, its thread's stack and chunk cache:
 * 128 KiB each covers those. */
static void bounds(const struct model_cfg *m, const struct sample *s)
{
    int conns = MAX_CONNS;
    /* A thread leaves the count of connections just before it exits:
     * under load a batch of them can be on their way out (seen: 18; under
     * ASan, where a thread's exit is slow, 59): bounded by the churn, not
     * by the thousands the old code reached. */
    int threads = s->threads0 + conns + (SANITIZER ? conns : BATCH);
    if (strcmp(m->model, "aio") == 0)
        threads = s->threads0 + 2 * conns + 2;
    long rss = (long)conns * ((HIGH_WATER + MAX_FRAME) / 1024 + 128);
    if (SANITIZER)
        rss *= 3; /* shadow memory, quarantine, allocator metadata */
#if defined(__SANITIZE_THREAD__)
    rss += (long)s->threads_max * 2048; /* TSan's own state: 1.5 MB a thread seen */
#endif
    if (s->threads_max > threads || s->rss_max - s->rss0 > rss) {
        server_dump(&srv);
        fail_msg("%s: the server grew to %d threads (bound %d) and by %ld kB of RSS "
                 "(bound %ld kB)", m->name, s->threads_max, threads, s->rss_max - s->rss0,
                 rss);
    }
}

/* ---- 1. churn -------------------------------------------------------------------- */

/* Churn: CHURN_SESSIONS, within CHURN_MS; *seen once `needle` (the mute
 * member's drop, watched: server_watch_stderr()) is in the server's
 * stderr. Returns the sessions. */
static long churn(struct sample *smp, int *seen)
{
    static char oversize[2 * MAX_FRAME];
    memset(oversize, 'x', sizeof oversize);
    char talk[MAX_FRAME - 24];
    memset(talk, 't', sizeof talk);
    talk[sizeof talk - 1] = '\n';
    int fds[BATCH];
    long sessions = 0;
    long long start = now_ms();
    while (sessions < CHURN_SESSIONS && now_ms() - start < CHURN_MS) {
        for (int k = 0; k < BATCH; k++)
            fds[k] = dial(0);
        for (int k = 0; k < BATCH; k++) {
            char hello[64];
            int n = snprintf(hello, sizeof hello, "hello from session %ld\n", sessions + k);
            /* Either may fail: the server may have closed it (no matter). */
            if (put(fds[k], hello, (size_t)n) == 0)
                put(fds[k], talk, sizeof talk);
        }
        for (int k = 0; k < BATCH; k++) {
            switch ((sessions + k) % 4) {
            case 0: /* a line too long: the server closes it; we close last */
                put(fds[k], oversize, sizeof oversize);
                break;
            case 1: /* reset */
                reset_close(fds[k]);
                break;
            case 2: /* leave, after reading what came */
            {
                char sink[4096];
                while (recv(fds[k], sink, sizeof sink, MSG_DONTWAIT) > 0)
                    ;
                shutdown(fds[k], SHUT_WR);
                untrack_close(fds[k]);
                break;
            }
            default: /* talk more, then leave */
                for (int i = 0; i < 4; i++)
                    put(fds[k], talk, sizeof talk);
                untrack_close(fds[k]);
                break;
            }
        }
        for (int k = 0; k < BATCH; k++)
            if ((sessions + k) % 4 == 0)
                untrack_close(fds[k]);
        sessions += BATCH;
        server_pump(&srv); /* its stderr must not fill up */
        if (!*seen && server_watched(&srv) > 0)
            *seen = 1;
        take_sample(smp);
    }
    return sessions;
}

/* ---- 2. the room after it -------------------------------------------------------- */

static struct member members[ROOM_MAX + 1];

static void join_member(int k)
{
    members[k].fd = dial(0);
    members[k].in.off = members[k].in.len = 0;
}

/* The server's answer to member k, who says "I am k" (again every 200 ms:
 * under -w 2 the first member may be let in after k has spoken): 1 once
 * the first member hears it (*id is k's), 0 if k is told "* room is
 * full" and closed, -1 if the first member is. The first member's other
 * lines (churners still leaving) are skipped; *left counts the leaves. */
static int admitted(int k, uint64_t *id, int *left)
{
    struct member *first = &members[0], *me = &members[k];
    char want[32], hello[32], line[256];
    snprintf(want, sizeof want, "> I am %d", k);
    int hn = snprintf(hello, sizeof hello, "I am %d\n", k);
    long long end = now_ms() + IO_MS, again = 0;
    while (now_ms() < end) {
        if (now_ms() >= again) {
            put(me->fd, hello, (size_t)hn); /* fails once the server closed it */
            again = now_ms() + 200;
        }
        ssize_t n = read_line(first, line, sizeof line, 0);
        if (n >= 0) {
            const char *at = strstr(line, want);
            uint64_t who;
            if (at && !at[strlen(want)] && sscanf(line, "<user%" SCNu64 ">", &who) == 1) {
                *id = who;
                return 1;
            }
            if (strcmp(line, "* room is full") == 0)
                return -1;
            if (strstr(line, " has left"))
                (*left)++;
            continue;
        }
        if (n != -1) {
            server_dump(&srv);
            fail_msg("the first new member (port %u) was closed waiting for member %d",
                     local_port(first->fd), k);
        }
        n = read_line(me, line, sizeof line, 0);
        if (n >= 0 && strcmp(line, "* room is full") == 0) {
            if (read_line(me, line, sizeof line, IO_MS) != -2) {
                server_dump(&srv);
                fail_msg("member %d was told the room is full, and not closed", k);
            }
            return 0;
        }
        if (n >= 0)
            continue; /* what others said: k is in; the first will hear it */
        struct pollfd q[2] = {{.fd = first->fd, .events = POLLIN},
                              {.fd = me->fd, .events = POLLIN}};
        poll(q, 2, 50);
        server_pump(&srv);
    }
    server_dump(&srv);
    fail_msg("member %d: neither heard by the first member nor turned away in %d ms", k,
             IO_MS);
    return -1;
}

/* Fill the room: exactly ROOM_MAX get in, then one is turned away. */
static void fill_room(struct sample *smp)
{
    for (int k = 0; k <= ROOM_MAX; k++)
        members[k].fd = -1;
    uint64_t id;
    int left = 0;
    /* The first member is in once it hears the second. Until then the room
     * may still be full of churners on their way out: try again. */
    long long end = now_ms() + IO_MS;
    for (;;) {
        join_member(0);
        join_member(1);
        int r = admitted(1, &id, &left);
        if (r == 1)
            break;
        untrack_close(members[0].fd);
        untrack_close(members[1].fd);
        if (now_ms() >= end) {
            server_dump(&srv);
            fail_msg("two new members cannot meet in the room after the churn");
        }
        sleep_ms(100);
    }
    for (int k = 2; k <= ROOM_MAX; k++) {
        for (;;) {
            join_member(k);
            int before = left;
            int r = admitted(k, &id, &left);
            if (r == 1 && k == ROOM_MAX) {
                server_dump(&srv);
                fail_msg("the room let in member %d of %d", k + 1, ROOM_MAX);
            }
            if (r == 1)
                break;
            if (r < 0) {
                server_dump(&srv);
                fail_msg("the first member was turned away");
            }
            untrack_close(members[k].fd);
            members[k].fd = -1;
            if (k == ROOM_MAX)
                break; /* turned away, as it should be */
            /* Full with fewer: churners not gone yet. Again once one is. */
            long long until = now_ms() + IO_MS;
            char line[256];
            while (left == before && now_ms() < until) {
                ssize_t n = read_line(&members[0], line, sizeof line, 100);
                if (n >= 0 && strstr(line, " has left"))
                    left++;
                server_pump(&srv);
                take_sample(smp);
            }
            if (left == before) {
                server_dump(&srv);
                fail_msg("the room is full with %d new members and nobody leaves: "
                         "churners stayed in it", k);
            }
        }
        take_sample(smp);
    }
    /* The first member is heard by the second and the last. */
    CHECK(&srv, put(members[0].fd, "pong\n", 5) == 0);
    int ks[] = {1, ROOM_MAX - 1};
    for (int i = 0; i < 2; i++) {
        char line[256];
        long long until = now_ms() + IO_MS;
        int heard = 0;
        while (!heard && now_ms() < until) {
            ssize_t n = read_line(&members[ks[i]], line, sizeof line, 100);
            server_pump(&srv);
            if (n == -2)
                break;
            uint64_t who;
            int used = 0;
            heard = n > 0 && sscanf(line, "<user%" SCNu64 "> pong%n", &who, &used) == 1 &&
                    !line[used];
        }
        if (!heard) {
            server_dump(&srv);
            fail_msg("member %d did not hear the first member", ks[i]);
        }
    }
}

/* ---- the test --------------------------------------------------------------------- */

static void start_server(const struct model_cfg *m)
{
    if (model_serves_datagrams(m->model) < 0)
        skip(); /* not built here */
#if defined(__SANITIZE_THREAD__)
    if (strcmp(m->model, "aio") == 0)
        skip(); /* see TSAN_TESTS in the Makefile */
#endif
    char mf[16], hw[16], dm[16], mc[16];
    snprintf(mc, sizeof mc, "%d", MAX_CONNS);
    snprintf(mf, sizeof mf, "%d", MAX_FRAME);
    snprintf(hw, sizeof hw, "%d", HIGH_WATER);
    snprintf(dm, sizeof dm, "%d", DRAIN_MS);
    const char *args[24];
    int n = 0;
    args[n++] = "-m";
    args[n++] = m->model;
    if (m->workers) {
        args[n++] = "-w";
        args[n++] = m->workers;
    }
    const char *rest[] = {"-S", "chat", "--max-frame", mf, "--high-water", hw,
                          "--drain-ms", dm, "--max-conns", mc, "127.0.0.1", "0", NULL};
    for (int i = 0; rest[i]; i++)
        args[n++] = rest[i];
    args[n] = NULL;
    if (server_start(&srv, args) != 0)
        fail_msg("cannot start chat under %s", m->name);
}

static void test_churn(void **state)
{
    const struct model_cfg *m = *state;
    start_server(m);
    struct sample smp = {0};
    smp.rss0 = smp.rss_max = proc_rss_kb(srv.pid);
    smp.threads0 = smp.threads_max = count_threads_no_iou(srv.pid);
    smp.fds0 = count_fds(srv.pid);
    CHECK(&srv, smp.rss0 > 0 && smp.threads0 > 0 && smp.fds0 > 0);

    int mute = dial(1);
    char needle[96];
    snprintf(needle, sizeof needle, "closing 127.0.0.1:%u: not reading (", local_port(mute));
    server_watch_stderr(&srv, needle); /* seen even once pushed out of what is kept */
    int dropped = 0;
    long long t0 = now_ms();
    long sessions = churn(&smp, &dropped);
    long long churn_ms = now_ms() - t0;
    fprintf(stderr, "test_chat_churn: %s: %ld sessions in %lld ms; server RSS %ld -> at "
            "most %ld kB, threads %d -> at most %d\n", m->name, sessions, churn_ms,
            smp.rss0, smp.rss_max, smp.threads0, smp.threads_max);
    bounds(m, &smp);

    /* The churn is over once the server has accepted and closed what it
     * left: from then on, what a new member hears is the room's, not the
     * churners' last lines (which would come in a burst: past the high
     * watermark). */
    long long end = now_ms() + IO_MS;
    int fds = 0, backlog = 0;
    while (((fds = count_fds(srv.pid)) > smp.fds0 + FDS_SLACK ||
            (backlog = server_rx(srv.port, 0)) != 0) &&
           now_ms() < end) {
        server_pump(&srv);
        if (!dropped && server_watched(&srv) > 0)
            dropped = 1; /* before it is pushed out of what is kept */
        take_sample(&smp);
        sleep_ms(20);
    }
    if (fds > smp.fds0 + FDS_SLACK || backlog != 0) {
        server_dump(&srv);
        fail_msg("%d ms after the churn the server still holds %d descriptors (%d at "
                 "start) and %d clients wait to be accepted", IO_MS, fds, smp.fds0,
                 backlog);
    }

    /* The member that never reads: dropped, by a talker's lines if the
     * churners' were too few. */
    if (!dropped && server_watched(&srv) > 0)
        dropped = 1;
    if (!dropped) {
        int talker = dial(0);
        static char talk[16 * 1000];
        memset(talk, 'f', sizeof talk);
        for (size_t i = 999; i < sizeof talk; i += 1000)
            talk[i] = '\n';
        end = now_ms() + IO_MS;
        /* Each 16 KB read by the server before the next: none of it is
         * left to reach the members that join next, in a burst. */
        for (long sent = 0; !dropped && sent < 4 * 1024 * 1024 && now_ms() < end;
             sent += (long)sizeof talk) {
            CHECK(&srv, put(talker, talk, sizeof talk) == 0);
            wait_server_read(local_port(talker));
            server_pump(&srv);
            dropped = server_watched(&srv) > 0;
        }
        untrack_close(talker);
    }
    if (!dropped && server_wait_stderr(&srv, needle, IO_MS))
        dropped = 1;
    if (!dropped) {
        server_dump(&srv);
        fail_msg("the member that never reads was not dropped");
    }
    /* Its socket ends (EOF, or a reset once what the kernel held is read). */
    char sink[65536];
    end = now_ms() + IO_MS;
    ssize_t n;
    while ((n = recv(mute, sink, sizeof sink, MSG_DONTWAIT)) != 0) {
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            break; /* ECONNRESET: the server closed with our input unread */
        CHECK(&srv, now_ms() < end);
        if (n < 0) {
            wait_readable(mute, 100);
            server_pump(&srv);
        }
    }
    untrack_close(mute);
    take_sample(&smp);

    fill_room(&smp);
    take_sample(&smp);
    fprintf(stderr, "test_chat_churn: %s: and with the room full: at most %ld kB, %d "
            "threads\n", m->name, smp.rss_max, smp.threads_max);
    bounds(m, &smp);

    server_stop_clean(&srv); /* with the room full */
}

static int teardown(void **state)
{
    harness_teardown(state);
    for (size_t i = 0; i < sizeof open_fds / sizeof open_fds[0]; i++)
        if (open_fds[i] >= 0) {
            close(open_fds[i]);
            open_fds[i] = -1;
        }
    return 0;
}

int main(void)
{
    for (size_t i = 0; i < sizeof open_fds / sizeof open_fds[0]; i++)
        open_fds[i] = -1;
    /* Under ASan, freed memory sits in a quarantine (256 MB by default),
     * which would read as growth: keep it small for the servers started
     * from here. Harmless without ASan. */
    char asan[512];
    const char *prev = getenv("ASAN_OPTIONS");
    snprintf(asan, sizeof asan, "%s%squarantine_size_mb=4", prev ? prev : "",
             prev && *prev ? ":" : "");
    setenv("ASAN_OPTIONS", asan, 1);

    enum { NCFG = sizeof configs / sizeof configs[0] };
    static char names[NCFG][64];
    struct CMUnitTest tests[NCFG];
    for (size_t i = 0; i < NCFG; i++) {
        snprintf(names[i], sizeof names[i], "churn/%s", configs[i].name);
        tests[i] = (struct CMUnitTest){names[i], test_churn, NULL, teardown,
                                       (void *)&configs[i]};
    }
    return _cmocka_run_group_tests("chat_churn", tests, NCFG, NULL, NULL);
}
