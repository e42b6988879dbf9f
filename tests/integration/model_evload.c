/*
 * The event-loop models under load and at their limits. Registered only
 * for the event models (IOPLEX_EVENT_MODELS in CMakeLists.txt); run as
 * `model_evload MODEL`.
 *
 *   load            1,000 concurrent clients (900 under select: FD_SETSIZE),
 *                   each 100 echo round trips of 1..4096 random bytes in
 *                   random fragments, byte-exact; one test process drives
 *                   them all with epoll over non-blocking sockets
 *   backpressure    a client that sends and never reads: the server stops
 *                   reading it (the bytes the kernel takes plateau well
 *                   below 64 MiB) and its RSS stays under baseline + 2 MiB
 *                   (+ 1.75 MiB under uring: flood_bound_kb()),
 *                   while another client keeps getting echoes; then it
 *                   reads everything back, byte-exact
 *   emfile          RLIMIT_NOFILE 64 and 100 clients: the server pauses
 *                   accepting instead of spinning (< 0.5 s CPU in 2 s),
 *                   and serves every waiting client once others leave
 *   idle_timeout    --idle-timeout 1 closes a silent client (EOF) within
 *                   a bound, and never an active one
 *   sigterm         50 clients with a request sent, SIGTERM: every one
 *                   gets its whole answer, the server exits 0
 *   workers         -w 2 and -w 4 serve like -w 1 (load, twenty silent
 *                   clients answered in reverse order), TCP connections
 *                   spread over the workers' own listeners; -w 2 on Unix
 *   lazy_memory     1,000 idle connections (900 under select) add less
 *                   than 1 KiB of RSS each
 *   select_fd_setsize  (select only) 1,100 clients: by default those past
 *                   --max-conns's default (FD_SETSIZE - 32) are refused;
 *                   with --max-conns 5000, those whose descriptor would
 *                   pass FD_SETSIZE; one line each way, no false
 *                   "recovered", and the server goes on
 *
 * Sanitizer builds (the server is built with the same flags): the load
 * keeps its 1,000 clients but does 30 round trips each instead of 100
 * (LOAD_ROUNDS: 100 take ~14 s under ASan on two cores, too much for the
 * suite's budget); ASan's quarantine is turned off for the memory cases
 * (freed output chunks would otherwise be held and counted); TSan's
 * shadow memory is allowed for in the RSS bounds (SHADOW_FACTOR: an idle
 * connection measures ~2.4 KB under TSan, ~0.5 KB under ASan, ~270 B
 * without).
 */
#define _GNU_SOURCE
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#if defined(__SANITIZE_ADDRESS__)
#define EV_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define EV_TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EV_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define EV_TSAN 1
#endif
#endif

/* The load: clients x round trips. Under select the server cannot hold
 * more than FD_SETSIZE descriptors, so it gets 900 clients. */
#define LOAD_CLIENTS 1000
#define LOAD_CLIENTS_SELECT 900
#if defined(EV_ASAN) || defined(EV_TSAN)
#define LOAD_ROUNDS 30 /* sanitizers: fewer round trips, same concurrency */
#else
#define LOAD_ROUNDS 100
#endif
#define LOAD_TIMEOUT_MS 60000
#define MSG_MAX 4096
#define POOL_SIZE (1 << 20)

/* RSS bounds: TSan keeps shadow memory for what the program touches
 * (several times the bytes), so its bounds are scaled. */
#ifdef EV_TSAN
#define SHADOW_FACTOR 5
#else
#define SHADOW_FACTOR 1
#endif

#define IO_MS HARNESS_IO_TIMEOUT_MS

static const char *model;
static int is_select;
static unsigned seed;
static unsigned char pool[POOL_SIZE + MSG_MAX];

/* ---- descriptors this file opens itself (the harness registers 1024) ---- */

static int *own_fds;
static size_t nown, ownmax;

static void own_add(int fd)
{
    if (nown == ownmax) {
        ownmax = ownmax ? 2 * ownmax : 1024;
        own_fds = realloc(own_fds, ownmax * sizeof *own_fds);
        if (!own_fds)
            abort();
    }
    own_fds[nown++] = fd;
}

static void own_close(int fd)
{
    for (size_t i = 0; i < nown; i++)
        if (own_fds[i] == fd) {
            own_fds[i] = own_fds[--nown];
            break;
        }
    close(fd);
}

static int teardown(void **state)
{
    while (nown > 0)
        close(own_fds[--nown]);
    return harness_teardown(state);
}

/* ---- the process ------------------------------------------------------------ */

static rlim_t nofile_hard(void)
{
    struct rlimit r;
    return getrlimit(RLIMIT_NOFILE, &r) == 0 ? r.rlim_max : 0;
}

/* Soft RLIMIT_NOFILE: this process's, and so the servers' it starts. */
static void set_nofile(rlim_t soft)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0)
        return;
    r.rlim_cur = soft < r.rlim_max ? soft : r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
}

/* Listening TCP sockets on 127.0.0.1:port (/proc/net/tcp, state 0A). */
static int tcp_listeners(unsigned port)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    if (!f)
        return -1;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned lport, st;
        if (sscanf(line, " %*d: %*8[0-9A-Fa-f]:%x %*8[0-9A-Fa-f]:%*x %x", &lport, &st) == 2 &&
            lport == port && st == 0x0A)
            n++;
    }
    fclose(f);
    return n;
}

/* ASan holds freed blocks in a quarantine (256 MiB by default): a server
 * that has passed megabytes through short-lived output chunks would look
 * as if it kept them. For the memory cases the servers run without it. */
static void no_quarantine(int on)
{
#ifdef EV_ASAN
    static char saved[1024];
    static int have_saved, was_set;
    if (on) {
        const char *cur = getenv("ASAN_OPTIONS");
        was_set = cur != NULL;
        snprintf(saved, sizeof saved, "%s", cur ? cur : "");
        have_saved = 1;
        char v[1200];
        snprintf(v, sizeof v, "%s%squarantine_size_mb=0:thread_local_quarantine_size_kb=0",
                 saved, saved[0] ? ":" : "");
        setenv("ASAN_OPTIONS", v, 1);
    } else if (have_saved) {
        if (was_set)
            setenv("ASAN_OPTIONS", saved, 1);
        else
            unsetenv("ASAN_OPTIONS");
        have_saved = 0;
    }
#else
    (void)on;
#endif
}

/* ---- servers and clients ------------------------------------------------------ */

static void start(struct server *s, const char *transport, const char *const extra[])
{
    if (server_start_on(s, model, transport, "echo", extra) != 0)
        fail_msg("cannot start echo on %s under %s", transport, model);
}

static socklen_t server_sockaddr(const struct server *s, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (s->family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)s->port);
        inet_pton(AF_INET, s->host, &a->sin_addr);
        return sizeof *a;
    }
    if (s->family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)s->port);
        inet_pton(AF_INET6, s->host, &a->sin6_addr);
        return sizeof *a;
    }
    struct sockaddr_un *a = (struct sockaddr_un *)ss;
    a->sun_family = AF_UNIX;
    snprintf(a->sun_path, sizeof a->sun_path, "%s", s->path);
    return sizeof *a;
}

/* A non-blocking stream socket with its connect started (TCP) or done
 * (Unix, whose connect does not go on in the background). Registered in
 * own_fds. Returns the descriptor or -1. */
static int nb_connect(const struct server *s)
{
    struct sockaddr_storage ss;
    socklen_t len = server_sockaddr(s, &ss);
    int fd = socket(s->family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        fprintf(stderr, "socket: %s\n", strerror(errno));
        return -1;
    }
    if (s->family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    long long deadline = now_ms() + 5000;
    for (;;) {
        if (connect(fd, (struct sockaddr *)&ss, len) == 0 || errno == EINPROGRESS)
            break;
        /* A Unix listener with a full backlog says EAGAIN: try again. */
        if (errno == EAGAIN && now_ms() < deadline) {
            sleep_ms(1);
            continue;
        }
        fprintf(stderr, "connect to %s: %s\n", s->address, strerror(errno));
        close(fd);
        return -1;
    }
    own_add(fd);
    return fd;
}

/* ---- the load: many clients, echo round trips, one epoll -------------------- */

struct lclient {
    int fd;
    int state; /* 0 connecting, 1 exchanging, 2 done */
    int rounds_left;
    size_t off, len, sent, rcvd;
};

static void next_message(struct lclient *c, unsigned *sd)
{
    c->off = rng_next(sd) % POOL_SIZE;
    c->len = 1 + rng_next(sd) % MSG_MAX;
    c->sent = c->rcvd = 0;
}

/* A random piece of what is left: often tiny, sometimes all of it. */
static size_t fragment(size_t left, unsigned *sd)
{
    size_t n;
    switch (rng_next(sd) % 4) {
    case 0: n = 1 + rng_next(sd) % 16; break;
    case 1: n = 1 + rng_next(sd) % 512; break;
    case 2: n = 1 + rng_next(sd) % left; break;
    default: n = left; break;
    }
    return n < left ? n : left;
}

/*
 * nclients clients connect at once and each does `rounds` round trips.
 * Returns 0, or -1 after describing the failure in why.
 */
static int run_load(const struct server *s, int nclients, int rounds, int timeout_ms,
                    char *why, size_t whylen)
{
    unsigned sd = seed ^ 0x5bd1e995u;
    struct lclient *cl = calloc((size_t)nclients, sizeof *cl);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int ret = -1, left = nclients;
    long long t0 = now_ms(), deadline = t0 + timeout_ms;
    static char buf[65536];
    if (!cl || ep < 0) {
        snprintf(why, whylen, "out of memory or epoll: %s", strerror(errno));
        goto out;
    }
    own_add(ep);
    for (int i = 0; i < nclients; i++) {
        cl[i].fd = nb_connect(s);
        if (cl[i].fd < 0) {
            snprintf(why, whylen, "client %d of %d could not connect", i, nclients);
            goto out;
        }
        cl[i].rounds_left = rounds;
        struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, cl[i].fd, &ev) != 0) {
            snprintf(why, whylen, "epoll_ctl: %s", strerror(errno));
            goto out;
        }
    }
    while (left > 0) {
        long long ms = deadline - now_ms();
        if (ms <= 0) {
            int st[3] = {0, 0, 0};
            long long rounds_done = 0;
            for (int i = 0; i < nclients; i++) {
                st[cl[i].state]++;
                rounds_done += rounds - cl[i].rounds_left;
            }
            snprintf(why, whylen, "timed out after %d ms: %d clients connecting, %d "
                     "exchanging, %d done; %lld of %lld round trips", timeout_ms,
                     st[0], st[1], st[2], rounds_done, (long long)nclients * rounds);
            goto out;
        }
        struct epoll_event evs[256];
        int n = epoll_wait(ep, evs, 256, ms > 1000 ? 1000 : (int)ms);
        if (n < 0 && errno != EINTR) {
            snprintf(why, whylen, "epoll_wait: %s", strerror(errno));
            goto out;
        }
        for (int k = 0; k < n; k++) {
            struct lclient *c = &cl[evs[k].data.u32];
            uint32_t e = evs[k].events;
            int idx = (int)evs[k].data.u32;
            if (c->state == 2)
                continue;
            if (c->state == 0) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err) {
                    snprintf(why, whylen, "client %d: connect: %s", idx, strerror(err));
                    goto out;
                }
                c->state = 1;
                next_message(c, &sd);
                struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)idx};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                continue;
            }
            if (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                ssize_t r = recv(c->fd, buf, sizeof buf, 0);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                    snprintf(why, whylen, "client %d: %s after %d round trips "
                             "(%zu of %zu bytes sent, %zu echoed)", idx,
                             r == 0 ? "end-of-file" : strerror(errno),
                             rounds - c->rounds_left, c->sent, c->len, c->rcvd);
                    goto out;
                }
                if (r > 0) {
                    if (c->rcvd + (size_t)r > c->sent) {
                        snprintf(why, whylen, "client %d: %zu bytes echoed, only %zu sent",
                                 idx, c->rcvd + (size_t)r, c->sent);
                        goto out;
                    }
                    if (memcmp(buf, pool + c->off + c->rcvd, (size_t)r) != 0) {
                        snprintf(why, whylen, "client %d: echo differs within bytes "
                                 "%zu..%zu of a %zu-byte message (round %d)", idx,
                                 c->rcvd, c->rcvd + (size_t)r, c->len,
                                 rounds - c->rounds_left + 1);
                        goto out;
                    }
                    c->rcvd += (size_t)r;
                    if (c->rcvd == c->len) {
                        if (--c->rounds_left == 0) {
                            c->state = 2;
                            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                            own_close(c->fd);
                            c->fd = -1;
                            left--;
                            continue;
                        }
                        next_message(c, &sd);
                        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT,
                                                 .data.u32 = (uint32_t)idx};
                        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                        continue;
                    }
                }
            }
            if ((e & EPOLLOUT) && c->sent < c->len) {
                size_t piece = fragment(c->len - c->sent, &sd);
                ssize_t w = send(c->fd, pool + c->off + c->sent, piece, MSG_NOSIGNAL);
                if (w < 0 && errno != EAGAIN && errno != EINTR) {
                    snprintf(why, whylen, "client %d: send: %s", idx, strerror(errno));
                    goto out;
                }
                if (w > 0)
                    c->sent += (size_t)w;
                if (c->sent == c->len) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)idx};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
            }
        }
    }
    ret = 0;
    fprintf(stderr, "load: %d clients x %d round trips in %lld ms\n", nclients, rounds,
            now_ms() - t0);
out:
    if (cl)
        for (int i = 0; i < nclients; i++)
            if (cl[i].fd > 0 && cl[i].state != 2)
                own_close(cl[i].fd);
    if (ep >= 0)
        own_close(ep);
    free(cl);
    return ret;
}

static int load_clients(void)
{
    return is_select ? LOAD_CLIENTS_SELECT : LOAD_CLIENTS;
}

static void load(void **state)
{
    (void)state;
    struct server s;
    start(&s, "tcp4", NULL);
    char why[512];
    int r = run_load(&s, load_clients(), LOAD_ROUNDS, LOAD_TIMEOUT_MS, why, sizeof why);
    if (r != 0) {
        server_dump(&s);
        fail_msg("%s", why);
    }
    server_stop_clean(&s);
}

/* One echo round trip of len random bytes on a blocking client. */
static int echo_once(int fd, size_t len, unsigned *sd)
{
    char out[MSG_MAX], in[MSG_MAX];
    fill_random(out, len, sd);
    if (send_fragmented(fd, out, len, sd) != 0)
        return 0;
    return recv_exact(fd, in, len, IO_MS) == (ssize_t)len && memcmp(in, out, len) == 0;
}

/* ---- backpressure --------------------------------------------------------------- */

#define FLOOD_MAX ((size_t)64 << 20)
#define PLATEAU_MS 1000
#define FLOOD_HIGH_WATER_KB 64

/* What a server that stopped reading may have grown by, in KiB: the high
 * watermark, plus what it may read past it (evconn: one wake-up's budget,
 * 4 reads of 64 KiB; uring: up to its provided-buffer ring, URING_* in
 * src/model/uring.h, before the cancellation lands, and the ring itself,
 * touched as traffic comes: 1 MiB each allowed), plus 1.75 MiB of slack
 * (allocator, stacks, pages first touched). About baseline + 2 MiB for
 * the readiness models. */
static long flood_bound_kb(void)
{
    long budget = strcmp(model, "uring") == 0 ? 2048 : 256;
    return (FLOOD_HIGH_WATER_KB + budget + 1792) * SHADOW_FACTOR;
}

/* The flooding client's stream: byte i is pool[i % POOL_SIZE]. */
static size_t flood_send(int fd, size_t sent, size_t max)
{
    size_t off = sent % POOL_SIZE;
    size_t n = POOL_SIZE - off;
    if (n > 65536)
        n = 65536;
    if (n > max - sent)
        n = max - sent;
    ssize_t w = send(fd, pool + off, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    return w > 0 ? (size_t)w : 0;
}

static void backpressure(void **state)
{
    (void)state;
    struct server s;
    static const char *const extra[] = {"--high-water", "65536", NULL}; /* FLOOD_HIGH_WATER_KB */
    no_quarantine(1);
    start(&s, "tcp4", extra);
    no_quarantine(0);
    unsigned sd = seed;

    /* Baseline: the server after some echo traffic (its read buffer and
     * output chunks have been allocated once). */
    int y = client_connect(&s);
    CHECK(&s, y >= 0);
    for (int i = 0; i < 50; i++)
        CHECK(&s, echo_once(y, 1 + rng_next(&sd) % MSG_MAX, &sd));
    sleep_ms(100);
    long base = proc_rss_kb(s.pid);
    CHECK(&s, base > 0);

    /* X sends and never reads, until the kernel takes nothing more for
     * PLATEAU_MS or 64 MiB are gone. */
    int x = nb_connect(&s);
    CHECK(&s, x >= 0);
    struct pollfd pf = {.fd = x, .events = POLLOUT};
    CHECK(&s, poll(&pf, 1, IO_MS) == 1);
    size_t sent = 0;
    long long last_progress = now_ms(), t_end = now_ms() + 30000;
    while (sent < FLOOD_MAX && now_ms() - last_progress < PLATEAU_MS && now_ms() < t_end) {
        size_t w = flood_send(x, sent, FLOOD_MAX);
        if (w > 0) {
            sent += w;
            last_progress = now_ms();
            continue;
        }
        pf.revents = 0;
        poll(&pf, 1, 50);
    }
    long rss = proc_rss_kb(s.pid);
    fprintf(stderr, "backpressure: the kernel took %zu bytes%s; server RSS %ld KiB -> "
            "%ld KiB\n", sent, sent < FLOOD_MAX ? ", then nothing for 1 s" : " (all of them)",
            base, rss);
    CHECK(&s, sent < FLOOD_MAX);
    CHECK(&s, now_ms() - last_progress >= PLATEAU_MS);
    CHECK(&s, rss - base < flood_bound_kb());

    /* Others are still served, and X is still not read. */
    for (int i = 0; i < 50; i++)
        CHECK(&s, echo_once(y, 1 + rng_next(&sd) % MSG_MAX, &sd));
    size_t more = flood_send(x, sent, FLOOD_MAX); /* a late window update at most */
    sent += more;
    CHECK(&s, more <= 65536);
    CHECK(&s, proc_rss_kb(s.pid) - base < flood_bound_kb());

    /* X reads: the server resumes below the low watermark and echoes
     * every byte, in order, then closes after X's end-of-file. */
    CHECK(&s, shutdown(x, SHUT_WR) == 0);
    static char buf[65536];
    size_t got = 0;
    long long deadline = now_ms() + 30000;
    for (;;) {
        pf.events = POLLIN;
        pf.revents = 0;
        int r = poll(&pf, 1, (int)(deadline - now_ms() > 0 ? deadline - now_ms() : 0));
        CHECK(&s, r == 1);
        ssize_t n = recv(x, buf, sizeof buf, 0);
        CHECK(&s, n >= 0 || errno == EAGAIN);
        if (n == 0)
            break;
        if (n < 0)
            continue;
        CHECK(&s, got + (size_t)n <= sent);
        for (size_t done = 0; done < (size_t)n;) {
            size_t off = (got + done) % POOL_SIZE;
            size_t k = POOL_SIZE - off < (size_t)n - done ? POOL_SIZE - off : (size_t)n - done;
            CHECK(&s, memcmp(buf + done, pool + off, k) == 0);
            done += k;
        }
        got += (size_t)n;
    }
    CHECK(&s, got == sent);
    own_close(x);
    CHECK(&s, echo_once(y, 100, &sd));
    client_close(y);
    server_stop_clean(&s);
}

/* ---- descriptor exhaustion --------------------------------------------------- */

#define EMFILE_LIMIT 64
#define EMFILE_CLIENTS 100

static void emfile(void **state)
{
    (void)state;
    struct server s;
    /* --max-conns above the limit: descriptors run out first (the default
     * would refuse clients before that). */
    static const char *const extra[] = {"-v", "--max-conns", "1000", NULL};
    rlim_t before = 0;
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0)
        before = lim.rlim_cur;
    /* The server inherits the limit (set here around its start only). */
    set_nofile(EMFILE_LIMIT);
    int ok = server_start_on(&s, model, "tcp4", "echo", extra);
    set_nofile(before);
    if (ok != 0)
        fail_msg("cannot start echo under %s with RLIMIT_NOFILE %d", model, EMFILE_LIMIT);
    int fds0 = count_fds(s.pid);
    CHECK(&s, fds0 > 0 && fds0 < EMFILE_LIMIT);

    /* Every client connects (the kernel completes the handshake into the
     * listen backlog) and sends its line at once. */
    int fd[EMFILE_CLIENTS];
    char msg[EMFILE_CLIENTS][32];
    int served[EMFILE_CLIENTS] = {0};
    for (int i = 0; i < EMFILE_CLIENTS; i++) {
        fd[i] = nb_connect(&s);
        CHECK(&s, fd[i] >= 0);
    }
    for (int i = 0; i < EMFILE_CLIENTS; i++) {
        struct pollfd pf = {.fd = fd[i], .events = POLLOUT};
        CHECK(&s, poll(&pf, 1, IO_MS) == 1);
        snprintf(msg[i], sizeof msg[i], "client %d\n", i);
        CHECK(&s, send(fd[i], msg[i], strlen(msg[i]), MSG_NOSIGNAL) == (ssize_t)strlen(msg[i]));
    }

    /* Collect answers: those accepted answer at once. Until 300 ms pass
     * without a new one (at most 3 s). */
    int nserved = 0;
    struct pollfd pfs[EMFILE_CLIENTS];
    long long until = now_ms() + 3000, last_new = now_ms();
    while (now_ms() < until && (nserved == 0 || now_ms() - last_new < 300)) {
        int n = 0, idx[EMFILE_CLIENTS];
        for (int i = 0; i < EMFILE_CLIENTS; i++)
            if (!served[i]) {
                pfs[n] = (struct pollfd){.fd = fd[i], .events = POLLIN};
                idx[n++] = i;
            }
        int r = poll(pfs, (nfds_t)n, 100);
        CHECK(&s, r >= 0);
        for (int k = 0; k < n; k++)
            if (pfs[k].revents) {
                int i = idx[k];
                char buf[64];
                ssize_t got = recv(fd[i], buf, sizeof buf, 0);
                CHECK(&s, got == (ssize_t)strlen(msg[i]) && memcmp(buf, msg[i], (size_t)got) == 0);
                served[i] = 1;
                nserved++;
                last_new = now_ms();
            }
    }
    fprintf(stderr, "emfile: %d descriptors open at start, %d of %d clients served "
            "under RLIMIT_NOFILE %d\n", fds0, nserved, EMFILE_CLIENTS, EMFILE_LIMIT);
    CHECK(&s, nserved > 0);
    CHECK(&s, nserved < EMFILE_CLIENTS);
    CHECK(&s, server_wait_stderr(&s, "pausing new connections", IO_MS));

    /* Waiting without spinning: little CPU over 2 s, nothing answered. */
    long long c0 = proc_cpu_ticks(s.pid);
    long long w0 = now_ms();
    sleep_ms(2000);
    long long c1 = proc_cpu_ticks(s.pid);
    double cpu_s = (double)(c1 - c0) / (double)sysconf(_SC_CLK_TCK);
    double wall_s = (double)(now_ms() - w0) / 1000.0;
    fprintf(stderr, "emfile: server used %.2f s of CPU in %.2f s while out of descriptors\n",
            cpu_s, wall_s);
    CHECK(&s, c0 >= 0 && c1 >= 0);
    CHECK(&s, cpu_s < 0.5);
    for (int i = 0; i < EMFILE_CLIENTS; i++)
        if (!served[i])
            CHECK(&s, wait_readable(fd[i], 0) == 0);

    /* The served leave; the waiting are all served as descriptors free up,
     * each leaving once answered. */
    for (int i = 0; i < EMFILE_CLIENTS; i++)
        if (served[i]) {
            own_close(fd[i]);
            fd[i] = -1;
        }
    long long deadline = now_ms() + 20000;
    while (nserved < EMFILE_CLIENTS && now_ms() < deadline) {
        int n = 0, idx[EMFILE_CLIENTS];
        for (int i = 0; i < EMFILE_CLIENTS; i++)
            if (!served[i]) {
                pfs[n] = (struct pollfd){.fd = fd[i], .events = POLLIN};
                idx[n++] = i;
            }
        int r = poll(pfs, (nfds_t)n, 100);
        CHECK(&s, r >= 0);
        for (int k = 0; k < n; k++)
            if (pfs[k].revents) {
                int i = idx[k];
                char buf[64];
                ssize_t got = recv(fd[i], buf, sizeof buf, 0);
                if (got != (ssize_t)strlen(msg[i]) || memcmp(buf, msg[i], (size_t)got) != 0) {
                    server_dump(&s);
                    fail_msg("client %d: got %zd bytes, expected its line back", i, got);
                }
                served[i] = 1;
                nserved++;
                own_close(fd[i]);
                fd[i] = -1;
            }
    }
    fprintf(stderr, "emfile: %d of %d clients served in the end\n", nserved, EMFILE_CLIENTS);
    CHECK(&s, nserved == EMFILE_CLIENTS);
    CHECK(&s, server_wait_stderr(&s, "accept: recovered", IO_MS));
    server_stop_clean(&s);
}

/* ---- idle timeout ---------------------------------------------------------------- */

/* The test process itself may be held off the CPU on a loaded machine:
 * then its "active" client was silent too, and timing checks say nothing.
 * STALL_MS is the longest pause between two of its round trips that still
 * counts as active under --idle-timeout 1. */
#define STALL_MS 800

static void idle_timeout(void **state)
{
    (void)state;
    struct server s;
    static const char *const extra[] = {"--idle-timeout", "1", NULL};
    start(&s, "tcp4", extra);
    unsigned sd = seed;
    int silent = client_connect(&s);
    int active = client_connect(&s);
    CHECK(&s, silent >= 0 && active >= 0);
    long long t0 = now_ms(), closed_at = -1, last_io = t0, stall = 0;
    int active_ok = 1;
    /* 2.5 s: the active client sends every 200 ms; watch the silent one. */
    while (now_ms() - t0 < 2500) {
        if (now_ms() - last_io > stall)
            stall = now_ms() - last_io;
        if (!echo_once(active, 1 + rng_next(&sd) % 64, &sd)) {
            active_ok = 0;
            break;
        }
        last_io = now_ms();
        if (closed_at < 0 && wait_readable(silent, 200) == 1) {
            closed_at = now_ms();
            CHECK(&s, expect_eof(silent, IO_MS) == 1);
        } else if (closed_at >= 0) {
            sleep_ms(200);
        }
    }
    if (active_ok && now_ms() - last_io > stall)
        stall = now_ms() - last_io;
    if (active_ok && wait_readable(active, 0) != 0)
        active_ok = 0; /* closed meanwhile */
    if (closed_at < 0 && expect_eof(silent, IO_MS) == 1)
        closed_at = now_ms();
    long long after = closed_at - t0;
    fprintf(stderr, "idle_timeout: silent client closed after %lld ms; the active one "
            "%s (longest pause between its round trips: %lld ms)\n", after,
            active_ok ? "served throughout" : "closed", stall);
    CHECK(&s, closed_at >= 0);
    /* --idle-timeout 1: not before ~1 s (whatever the load). */
    CHECK(&s, after >= 900);
    if (stall >= STALL_MS) {
        fprintf(stderr, "idle_timeout: this process stalled for %lld ms; the upper bound "
                "and the active client are not judged\n", stall);
    } else {
        /* Within the sweep's period (250 ms) plus slack, and never the
         * active one. */
        CHECK(&s, after <= 2500);
        CHECK(&s, active_ok);
        CHECK(&s, echo_once(active, 100, &sd));
    }
    client_close(silent);
    /* Once silent itself, it goes too (if the stall closed it already, a
     * reset for its last request is fine). */
    int eof = expect_eof(active, 3000);
    CHECK(&s, eof == 1 || (stall >= STALL_MS && eof == -1));
    client_close(active);
    server_stop_clean(&s);
}

/* ---- SIGTERM with requests in flight ---------------------------------------------- */

#define INFLIGHT_CLIENTS 50

static void sigterm_in_flight(void **state)
{
    (void)state;
    struct server s;
    start(&s, "tcp4", NULL);
    unsigned sd = seed;
    int fd[INFLIGHT_CLIENTS];
    static char req[INFLIGHT_CLIENTS][8192];
    size_t len[INFLIGHT_CLIENTS];
    /* Each is accepted (one round trip), then sends its request. */
    for (int i = 0; i < INFLIGHT_CLIENTS; i++) {
        fd[i] = client_connect(&s);
        CHECK(&s, fd[i] >= 0);
        CHECK(&s, echo_once(fd[i], 10, &sd));
    }
    for (int i = 0; i < INFLIGHT_CLIENTS; i++) {
        len[i] = 1 + rng_next(&sd) % sizeof req[i];
        fill_random(req[i], len[i], &sd);
        CHECK(&s, send_all(fd[i], req[i], len[i]) == 0);
    }
    CHECK(&s, kill(s.pid, SIGTERM) == 0);
    static char in[8192 + 1];
    for (int i = 0; i < INFLIGHT_CLIENTS; i++) {
        ssize_t n = recv_all(fd[i], in, sizeof in, IO_MS);
        if (n != (ssize_t)len[i] || memcmp(in, req[i], len[i]) != 0) {
            server_dump(&s);
            fail_msg("client %d: %zd bytes back before end-of-file, expected its %zu",
                     i, n, len[i]);
        }
        client_close(fd[i]);
    }
    int st = server_wait_exit(&s, IO_MS);
    CHECK(&s, st == 0);
    server_stop_clean(&s);
}

/* ---- workers ------------------------------------------------------------------------ */

/* Twenty silent clients answered in reverse order of connection. */
static void twenty_silent(struct server *s)
{
    unsigned sd = seed;
    int fd[20];
    for (int i = 0; i < 20; i++) {
        fd[i] = client_connect(s);
        CHECK(s, fd[i] >= 0);
    }
    for (int i = 19; i >= 0; i--) {
        CHECK(s, echo_once(fd[i], 1 + rng_next(&sd) % MSG_MAX, &sd));
        client_close(fd[i]);
    }
}

static void workers(void **state)
{
    const char *w = *state;
    int nw = atoi(w);
    struct server s;
    const char *const extra[] = {"-w", w, NULL};
    start(&s, "tcp4", extra);
    /* The listeners are all bound before the address line, the worker
     * threads started after it: wait for the threads, or early
     * connections all go to the first worker. */
    long long deadline = now_ms() + IO_MS;
    int nl = tcp_listeners(s.port);
    CHECK(&s, nl < 0 || nl == nw);
    while (count_threads(s.pid) < nw && now_ms() < deadline)
        sleep_ms(10);
    CHECK(&s, count_threads(s.pid) >= nw);

    int tids[64];
    long long t0[64], t1[64];
    int n0 = proc_thread_ticks(s.pid, tids, t0, 64);
    int clients = 300, rounds = LOAD_ROUNDS / 2 > 5 ? LOAD_ROUNDS / 2 : 5;
    char why[512];
    if (run_load(&s, clients, rounds, LOAD_TIMEOUT_MS, why, sizeof why) != 0) {
        server_dump(&s);
        fail_msg("-w %s: %s", w, why);
    }
    twenty_silent(&s);
    int tids1[64];
    int n1 = proc_thread_ticks(s.pid, tids1, t1, 64);
    /* Spread: the nw busiest threads each did a real share of the work
     * (CPU ticks; /proc has no finer per-thread clock here). */
    if (n0 > 0 && n1 == n0 && memcmp(tids, tids1, sizeof tids[0] * (size_t)n0) == 0) {
        long long d[64];
        for (int i = 0; i < n0; i++)
            d[i] = t1[i] - t0[i];
        for (int i = 0; i < n0; i++) /* sort descending */
            for (int j = i + 1; j < n0; j++)
                if (d[j] > d[i]) {
                    long long t = d[i];
                    d[i] = d[j];
                    d[j] = t;
                }
        fprintf(stderr, "workers: -w %d: CPU ticks per thread:", nw);
        for (int i = 0; i < n0; i++)
            fprintf(stderr, " %lld", d[i]);
        fprintf(stderr, "\n");
        if (d[0] >= 5) {
            CHECK(&s, n0 >= nw);
            CHECK(&s, d[nw - 1] * 10 >= d[0]);
        } else {
            fprintf(stderr, "workers: too little CPU time to judge the spread\n");
        }
    } else {
        fprintf(stderr, "workers: per-thread CPU times unreadable; spread not checked\n");
    }
    server_stop_clean(&s);
}

/* Unix sockets have no SO_REUSEPORT: the workers share one listener. */
static void workers_unix(void **state)
{
    (void)state;
    struct server s;
    static const char *const extra[] = {"-w", "2", NULL};
    start(&s, "unix", extra);
    char why[512];
    if (run_load(&s, 200, LOAD_ROUNDS / 4 > 5 ? LOAD_ROUNDS / 4 : 5, LOAD_TIMEOUT_MS,
                 why, sizeof why) != 0) {
        server_dump(&s);
        fail_msg("-w 2 on unix: %s", why);
    }
    twenty_silent(&s);
    server_stop_clean(&s);
}

/* ---- memory of idle connections ----------------------------------------------------- */

#define IDLE_BYTES_BOUND 1024 /* per connection: generous; the target is 256 */

static void lazy_memory(void **state)
{
    (void)state;
    struct server s;
    no_quarantine(1);
    start(&s, "tcp4", NULL);
    no_quarantine(0);
    unsigned sd = seed;
    /* Warm up: one connection served and gone. */
    int y = client_connect(&s);
    CHECK(&s, y >= 0);
    CHECK(&s, echo_once(y, MSG_MAX, &sd));
    client_close(y);
    sleep_ms(200);
    int fds0 = count_fds(s.pid);
    long base = proc_rss_kb(s.pid);
    CHECK(&s, fds0 > 0 && base > 0);

    int n = load_clients();
    int *fd = calloc((size_t)n, sizeof *fd);
    CHECK(&s, fd != NULL);
    for (int i = 0; i < n; i++) {
        fd[i] = nb_connect(&s);
        if (fd[i] < 0) {
            free(fd);
            fail_msg("idle client %d could not connect", i);
        }
    }
    long long deadline = now_ms() + 20000;
    int fds;
    while ((fds = count_fds(s.pid)) < fds0 + n && now_ms() < deadline)
        sleep_ms(20);
    sleep_ms(200);
    long rss = proc_rss_kb(s.pid);
    long per = (rss - base) * 1024 / n;
    fprintf(stderr, "lazy_memory: %d idle connections: server RSS %ld KiB -> %ld KiB, "
            "%ld bytes each\n", n, base, rss, per);
    if (fds < fds0 + n) {
        free(fd);
        server_dump(&s);
        fail_msg("the server holds %d descriptors, expected %d + %d", fds, fds0, n);
    }
    CHECK(&s, (rss - base) * 1024 < (long)n * IDLE_BYTES_BOUND * SHADOW_FACTOR);
    /* They are connections, not just descriptors: a few are served. */
    for (int i = 0; i < n; i += n / 10) {
        int b = fcntl(fd[i], F_GETFL);
        fcntl(fd[i], F_SETFL, b & ~O_NONBLOCK);
        CHECK(&s, echo_once(fd[i], 1 + rng_next(&sd) % MSG_MAX, &sd));
    }
    for (int i = 0; i < n; i++)
        own_close(fd[i]);
    free(fd);
    server_stop_clean(&s);
}

/* ---- select and FD_SETSIZE ------------------------------------------------------ */

#define SETSIZE_CLIENTS 1100

/* 1,100 clients at once on a select server started with `extra`: each is
 * echoed or closed, none left waiting; returns how many were echoed. */
static int setsize_flood(struct server *s, int *fds0)
{
    sleep_ms(200); /* the loop's own descriptors exist once it runs */
    *fds0 = count_fds(s->pid);
    CHECK(s, *fds0 > 0);
    static int fd[SETSIZE_CLIENTS];
    static int outcome[SETSIZE_CLIENTS]; /* 0 waiting, 1 echoed, 2 closed */
    memset(outcome, 0, sizeof outcome);
    for (int i = 0; i < SETSIZE_CLIENTS; i++) {
        fd[i] = nb_connect(s);
        CHECK(s, fd[i] >= 0);
    }
    for (int i = 0; i < SETSIZE_CLIENTS; i++) {
        struct pollfd pf = {.fd = fd[i], .events = POLLOUT};
        CHECK(s, poll(&pf, 1, IO_MS) == 1);
        /* Refused ones may already be closed: a reset is an outcome too. */
        if (send(fd[i], "x", 1, MSG_NOSIGNAL) != 1)
            outcome[i] = 2;
    }
    static struct pollfd pfs[SETSIZE_CLIENTS];
    static int idx[SETSIZE_CLIENTS];
    int echoed = 0, closed = 0;
    long long deadline = now_ms() + 20000;
    for (;;) {
        int n = 0;
        for (int i = 0; i < SETSIZE_CLIENTS; i++)
            if (outcome[i] == 0) {
                pfs[n] = (struct pollfd){.fd = fd[i], .events = POLLIN};
                idx[n++] = i;
            }
        if (n == 0 || now_ms() > deadline)
            break;
        CHECK(s, poll(pfs, (nfds_t)n, 100) >= 0);
        for (int k = 0; k < n; k++)
            if (pfs[k].revents) {
                char c;
                ssize_t r = recv(fd[idx[k]], &c, 1, 0);
                if (r == 1 && c == 'x')
                    outcome[idx[k]] = 1;
                else if (r == 0 || (r < 0 && errno != EAGAIN))
                    outcome[idx[k]] = 2;
                else
                    fail_msg("client %d: unexpected byte", idx[k]);
            }
    }
    for (int i = 0; i < SETSIZE_CLIENTS; i++) {
        echoed += outcome[i] == 1;
        closed += outcome[i] == 2;
    }
    fprintf(stderr, "select_fd_setsize: %d descriptors at start; of %d clients %d "
            "served, %d closed, %d with no answer\n", *fds0, SETSIZE_CLIENTS, echoed,
            closed, SETSIZE_CLIENTS - echoed - closed);
    CHECK(s, echoed + closed == SETSIZE_CLIENTS);
    CHECK(s, server_running(s));
    for (int i = 0; i < SETSIZE_CLIENTS; i++)
        own_close(fd[i]);
    return echoed;
}

/* After a flood: once the descriptors are free, a new client is served and
 * the refusals' episode ends, with one line for the whole flood; no
 * "accept: recovered" (accept() never failed). */
static void setsize_after(struct server *s, int fds0, const char *refusal)
{
    unsigned sd = seed;
    long long until = now_ms() + IO_MS;
    while (count_fds(s->pid) > fds0 && now_ms() < until)
        sleep_ms(20);
    int y = client_connect(s);
    CHECK(s, y >= 0);
    CHECK(s, echo_once(y, 1000, &sd));
    client_close(y);
    CHECK(s, server_wait_stderr(s, "accepting new connections again", IO_MS));
    CHECK(s, server_stderr_count(s, refusal) == 1);
    CHECK(s, server_stderr_count(s, "refusing new connections") == 1);
    CHECK(s, server_stderr_count(s, "accepting new connections again") == 1);
    CHECK(s, server_stderr_count(s, "recovered") == 0);
    server_stop_clean(s);
}

/* select by default: --max-conns defaults to what select can watch, so a
 * flood past FD_SETSIZE is refused at that count, reported once. */
static void select_fd_setsize(void **state)
{
    (void)state;
    struct server s;
    start(&s, "tcp4", NULL);
    int fds0;
    int echoed = setsize_flood(&s, &fds0);
    CHECK(&s, echoed == FD_SETSIZE - 32); /* the default: 32 kept back */
    setsize_after(&s, fds0, "(--max-conns's default");
}

/* select with a --max-conns it cannot reach: connections whose descriptor
 * would be >= FD_SETSIZE are closed at once (one report for them all),
 * never watched (FD_SET() past the bitmap would corrupt memory: ASan would
 * see it); those below are served, and the server goes on serving once
 * descriptors are free again. */
static void select_fd_setsize_explicit(void **state)
{
    (void)state;
    struct server s;
    static const char *const extra[] = {"--max-conns", "5000", NULL};
    start(&s, "tcp4", extra);
    int fds0;
    int echoed = setsize_flood(&s, &fds0);
    /* Every descriptor below FD_SETSIZE serves a client. */
    CHECK(&s, echoed >= FD_SETSIZE - fds0 - 4 && echoed <= FD_SETSIZE - fds0);
    setsize_after(&s, fds0, "beyond what select can watch");
}

/* ---- registration ------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    model = harness_model(argc, argv);
    if (model_serves_datagrams(model) < 0) {
        fprintf(stderr, "%s: no model '%s' in this build\n", argv[0], model);
        return 1;
    }
    if (!harness_is_event_model(model)) {
        fprintf(stderr, "%s: '%s' is not an event-loop model; these tests are for "
                "select, poll, epoll, kqueue and uring\n", argv[0], model);
        return 1;
    }
    is_select = strcmp(model, "select") == 0;
    seed = harness_seed();
    unsigned sd = seed;
    fill_random(pool, sizeof pool, &sd);
    /* Room for a thousand clients here and in the servers (which inherit
     * the limit). */
    set_nofile(nofile_hard());
    rlim_t hard = nofile_hard();
    if (hard < (rlim_t)(2 * LOAD_CLIENTS + 100))
        fprintf(stderr, "%s: RLIMIT_NOFILE hard limit %llu is low for %d clients\n",
                argv[0], (unsigned long long)hard, LOAD_CLIENTS);

    static const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(load, teardown),
        cmocka_unit_test_teardown(backpressure, teardown),
        cmocka_unit_test_teardown(emfile, teardown),
        cmocka_unit_test_teardown(idle_timeout, teardown),
        cmocka_unit_test_teardown(sigterm_in_flight, teardown),
        {"workers.2", workers, NULL, teardown, (void *)"2"},
        {"workers.4", workers, NULL, teardown, (void *)"4"},
        cmocka_unit_test_teardown(workers_unix, teardown),
        cmocka_unit_test_teardown(lazy_memory, teardown),
        cmocka_unit_test_teardown(select_fd_setsize, teardown),
        cmocka_unit_test_teardown(select_fd_setsize_explicit, teardown),
    };
    size_t ntests = sizeof tests / sizeof tests[0];
    if (!is_select) /* the last two are select's own */
        ntests -= 2;
    else if (hard < FD_SETSIZE + SETSIZE_CLIENTS)
        fail_msg("%s: RLIMIT_NOFILE hard limit %llu cannot hold %d clients past "
                 "FD_SETSIZE: the select cases cannot run", argv[0],
                 (unsigned long long)hard, SETSIZE_CLIENTS);
    char group[64];
    snprintf(group, sizeof group, "model_evload.%s", model);
    return _cmocka_run_group_tests(group, tests, ntests, NULL, teardown);
}
