/*
 * iop_post() from a thread that is no part of the server (this test's
 * main thread), with the server running in-process under each model that
 * serves shared-state services:
 *
 *   ticks      1000 posts reach the client whole and in order
 *   overflow   a client that does not read is closed once a post would
 *              pass the high watermark: on_close gets -ENOBUFS and the
 *              server reports "closing PEER: not reading (N bytes queued)"
 *   backlog    the limit holds when posting: with the connection's owner
 *              busy (in a callback that waits), posts are refused
 *              (-ENOBUFS) once what waits for it would pass the high
 *              watermark, not queued without end; the owner then closes
 *              it and reports at most that much queued
 *   backlog_tiny  the same with posts of one byte: they are counted at
 *              what they hold in memory (an entry and a header each), so
 *              far fewer than high-watermark-many are taken
 *   purge      posts racing a client's close are dropped with it (ASan and
 *              LSan see no use after free and no leak; TSan no race)
 *   many       iop_post_many(): 1000 broadcasts reach 3 clients whole and
 *              in order, each counted for all 3
 *   many_purge broadcasts to two clients while one of them closes: the
 *              other gets them all, the closed one's share is dropped
 *              (ASan, LSan, TSan: the shared copy is freed once, by
 *              whoever takes it last)
 *
 * The lifetime rule is kept as a service must keep it: connections are
 * listed under a mutex, added in on_open, removed in on_close, and posted
 * to only while holding it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ioplex.h"

#define WAIT_MS 10000

/* ---- the service ------------------------------------------------------------ */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static iop_conn *members[8];
static int nmembers, ncloses, last_close_err;
static char reports[8192];
static size_t reports_len;

static void push_open(iop_conn *c)
{
    pthread_mutex_lock(&lock);
    if (nmembers < 8)
        members[nmembers++] = c;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

/* A line from a client holds its owner here while `hold` is set: the
 * owner cannot drain its mailbox meanwhile. */
static pthread_mutex_t hold_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_changed = PTHREAD_COND_INITIALIZER;
static int hold, held;

static void push_message(iop_conn *c, const char *msg, size_t len)
{
    (void)c, (void)msg, (void)len;
    pthread_mutex_lock(&hold_lock);
    held = 1;
    pthread_cond_broadcast(&hold_changed);
    while (hold)
        pthread_cond_wait(&hold_changed, &hold_lock);
    held = 0;
    pthread_mutex_unlock(&hold_lock);
}

static void push_close(iop_conn *c, int error)
{
    pthread_mutex_lock(&lock);
    for (int i = 0; i < nmembers; i++)
        if (members[i] == c)
            members[i] = members[--nmembers];
    ncloses++;
    last_close_err = error;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

static const struct iop_service push = {
    .name = "push",
    .framing = IOP_FRAMING_LINE,
    .flags = IOP_SERVICE_SHARED_STATE,
    .on_open = push_open,
    .on_message = push_message,
    .on_close = push_close,
};

static void report(void *ctx, enum iop_log level, const char *line)
{
    (void)ctx, (void)level;
    pthread_mutex_lock(&lock);
    size_t n = strlen(line);
    if (reports_len + n + 2 < sizeof reports) {
        memcpy(reports + reports_len, line, n);
        reports_len += n;
        reports[reports_len++] = '\n';
        reports[reports_len] = '\0';
    }
    pthread_mutex_unlock(&lock);
}

/* Wait, with lock held, until nmembers == n. Returns 0 on timeout. */
static int wait_members(int n)
{
    struct timespec end;
    clock_gettime(CLOCK_REALTIME, &end);
    end.tv_sec += WAIT_MS / 1000;
    while (nmembers != n)
        if (pthread_cond_timedwait(&changed, &lock, &end) == ETIMEDOUT)
            return nmembers == n;
    return 1;
}

/* ---- the server, in a thread of its own ------------------------------------------ */

struct model_cfg {
    const char *model;
    unsigned workers;
};

static iop_server *server;
static pthread_t server_thread;
static int server_running;
static unsigned short port;

static void *run_server(void *arg)
{
    (void)arg;
    iop_server_run(server);
    return NULL;
}

static int model_built(const char *name)
{
    for (const struct iop_model_info *const *m = iop_models(); *m; m++)
        if (strcmp((*m)->name, name) == 0)
            return 1;
    return 0;
}

static void start(const struct model_cfg *m, size_t high_water)
{
    if (!model_built(m->model))
        skip();
#if defined(__SANITIZE_THREAD__)
    if (strcmp(m->model, "aio") == 0)
        skip(); /* glibc's AIO helper threads and TSan: see the Makefile */
#endif
    nmembers = ncloses = last_close_err = 0;
    reports_len = 0;
    reports[0] = '\0';
    struct iop_server_config cfg;
    iop_server_config_init(&cfg);
    assert_int_equal(iop_addr_parse(&cfg.addr, "tcp://127.0.0.1:0", IOP_TCP), 0);
    cfg.service = &push;
    cfg.model = m->model;
    cfg.workers = m->workers;
    cfg.high_water = high_water;
    cfg.drain_ms = 2000;
    cfg.report = report;
    char err[IOP_ERR_LEN];
    int r = iop_server_open(&server, &cfg, err);
    if (r != 0)
        fail_msg("iop_server_open(%s): %s", m->model, err);
    const char *a = strrchr(iop_server_address(server), ':');
    assert_non_null(a);
    port = (unsigned short)atoi(a + 1);
    assert_int_equal(pthread_create(&server_thread, NULL, run_server, NULL), 0);
    server_running = 1;
}

static int teardown(void **state)
{
    (void)state;
    if (server_running) {
        iop_server_stop(server);
        pthread_join(server_thread, NULL);
        server_running = 0;
    }
    if (server) {
        iop_server_close(server);
        server = NULL;
    }
    return 0;
}

static int client(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Close fd and wait until the server has closed its connection too. */
static void close_client(int fd)
{
    close(fd);
    pthread_mutex_lock(&lock);
    int ok = wait_members(0);
    pthread_mutex_unlock(&lock);
    assert_true(ok);
}

/* Read exactly len bytes within WAIT_MS; says why not on stderr. */
static int read_exact(int fd, char *buf, size_t len)
{
    size_t got = 0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (got < len) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        long ms = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = ms >= WAIT_MS ? 0 : poll(&p, 1, (int)(WAIT_MS - ms));
        if (r < 0 && errno == EINTR)
            continue; /* a signal of the server's (aio's) taken by this thread */
        if (r != 1) {
            fprintf(stderr, "read_exact: %zu of %zu bytes, then %s\n", got, len,
                    r == 0 ? "nothing until the timeout" : strerror(errno));
            return -1;
        }
        ssize_t n = recv(fd, buf + got, len - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "read_exact: %zu of %zu bytes, then %s\n", got, len,
                    n == 0 ? "end of stream" : strerror(errno));
            return -1;
        }
        got += (size_t)n;
    }
    return 0;
}

/* ---- the tests -------------------------------------------------------------------- */

#define TICKS 1000

static void test_ticks(void **state)
{
    start(*state, 0);
    int fd = client();
    static char expect[TICKS * 16];
    size_t len = 0;
    int joined, failed = 0;
    /* No assertion with the lock held: the server's threads need it. */
    pthread_mutex_lock(&lock);
    joined = wait_members(1);
    for (int i = 0; joined && i < TICKS; i++) {
        char line[16];
        int n = snprintf(line, sizeof line, "tick %d\n", i);
        if (iop_post(members[0], line, (size_t)n) != 0)
            failed++;
        memcpy(expect + len, line, (size_t)n);
        len += (size_t)n;
    }
    pthread_mutex_unlock(&lock);
    assert_true(joined);
    assert_int_equal(failed, 0);
    static char got[TICKS * 16];
    assert_int_equal(read_exact(fd, got, len), 0);
    assert_memory_equal(got, expect, len);
    close_client(fd);
}

static void test_overflow(void **state)
{
    start(*state, 64 * 1024);
    int fd = client(); /* never reads */
    pthread_mutex_lock(&lock);
    int joined = wait_members(1);
    pthread_mutex_unlock(&lock);
    assert_true(joined);
    static char line[1024];
    memset(line, 'x', sizeof line - 1);
    line[sizeof line - 1] = '\n';
    /* The kernel takes a few MB first; 256 MB is far beyond. */
    int gone = 0, failed = 0;
    for (int i = 0; i < 256 * 1024 && !gone; i++) {
        pthread_mutex_lock(&lock);
        if (nmembers == 1) {
            int r = iop_post(members[0], line, sizeof line);
            failed += r != 0 && r != -ENOBUFS; /* -ENOBUFS: over, being closed */
        } else {
            gone = 1;
        }
        pthread_mutex_unlock(&lock);
        if (i % 1024 == 1023)
            usleep(1000); /* let the owner drain */
    }
    pthread_mutex_lock(&lock);
    int ok = wait_members(0);
    int err = last_close_err, closes = ncloses;
    int reported = strstr(reports, "not reading (") != NULL;
    pthread_mutex_unlock(&lock);
    close(fd);
    assert_int_equal(failed, 0);
    assert_true(ok);
    assert_int_equal(closes, 1);
    assert_int_equal(err, -ENOBUFS);
    if (!reported)
        fail_msg("no \"not reading\" report; reports:\n%s", reports);
}

enum { HW = 64 * 1024 };

/* With the owner held in on_message, post `size` bytes at a time (up to
 * 16 MB) until refused; release it; it closes the connection. Returns how
 * many posts were taken. */
static size_t post_while_held(void **state, size_t size)
{
    start(*state, HW);
    int fd = client();
    pthread_mutex_lock(&lock);
    int joined = wait_members(1);
    pthread_mutex_unlock(&lock);
    assert_true(joined);
    /* Hold the owner in on_message. */
    pthread_mutex_lock(&hold_lock);
    hold = 1;
    pthread_mutex_unlock(&hold_lock);
    assert_int_equal(send(fd, "x\n", 2, MSG_NOSIGNAL), 2);
    struct timespec end;
    clock_gettime(CLOCK_REALTIME, &end);
    end.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&hold_lock);
    while (!held && pthread_cond_timedwait(&hold_changed, &hold_lock, &end) == 0)
        ;
    int was_held = held;
    pthread_mutex_unlock(&hold_lock);
    static char line[1024];
    memset(line, 'y', sizeof line - 1);
    line[sizeof line - 1] = '\n';
    size_t accepted = 0, posts = 0;
    int refused = 0, other = 0;
    for (size_t i = 0; was_held && i < 16 * 1024 * 1024 / size && !refused; i++) {
        pthread_mutex_lock(&lock);
        int r = nmembers == 1 ? iop_post(members[0], line + sizeof line - size, size) : -EPIPE;
        pthread_mutex_unlock(&lock);
        if (r == 0)
            accepted += size, posts++;
        else if (r == -ENOBUFS)
            refused = 1;
        else
            other = r;
    }
    pthread_mutex_lock(&hold_lock);
    hold = 0;
    pthread_cond_broadcast(&hold_changed);
    pthread_mutex_unlock(&hold_lock);
    pthread_mutex_lock(&lock);
    int ok = wait_members(0);
    int err = last_close_err;
    pthread_mutex_unlock(&lock);
    close(fd);
    assert_true(was_held);
    if (!refused)
        fail_msg("the owner busy, %zu bytes of posts were taken (high watermark %d)%s",
                 accepted, HW, other ? "; then an error" : "");
    assert_true(accepted <= HW);
    assert_true(ok);
    assert_int_equal(err, -ENOBUFS);
    /* The report says what was queued: at most the high watermark. */
    pthread_mutex_lock(&lock);
    const char *at = strstr(reports, "not reading (");
    size_t queued = at ? strtoull(at + strlen("not reading ("), NULL, 10) : 0;
    pthread_mutex_unlock(&lock);
    if (!at || queued == 0 || queued > HW)
        fail_msg("expected \"not reading (N bytes queued)\" with 0 < N <= %d; reports:\n%s",
                 HW, reports);
    return posts;
}

static void test_backlog(void **state)
{
    post_while_held(state, 1024);
}

static void test_backlog_tiny(void **state)
{
    /* An entry holds two pointers at least: 16 bytes and more a post. */
    size_t posts = post_while_held(state, 1);
    if (posts > HW / 16)
        fail_msg("%zu posts of one byte were taken (high watermark %d)", posts, HW);
}

static void test_purge(void **state)
{
    start(*state, 0);
    for (int round = 0; round < 20; round++) {
        int fd = client();
        pthread_mutex_lock(&lock);
        int joined = wait_members(1);
        pthread_mutex_unlock(&lock);
        assert_true(joined);
        close(fd); /* the server closes it while posts keep coming */
        for (int i = 0; i < 100000; i++) {
            pthread_mutex_lock(&lock);
            int open = nmembers == 1;
            if (open)
                iop_post(members[0], "late\n", 5);
            pthread_mutex_unlock(&lock);
            if (!open)
                break;
        }
        pthread_mutex_lock(&lock);
        int ok = wait_members(0);
        pthread_mutex_unlock(&lock);
        assert_true(ok);
    }
}

/* Connect n clients and wait until all are members. */
static void clients(int *fd, int n)
{
    for (int i = 0; i < n; i++)
        fd[i] = client();
    pthread_mutex_lock(&lock);
    int joined = wait_members(n);
    pthread_mutex_unlock(&lock);
    assert_true(joined);
}

/* Iterative serves one client at a time: no two are ever members. */
static void skip_iterative(void **state)
{
    if (strcmp(((const struct model_cfg *)*state)->model, "iterative") == 0)
        skip();
}

static void test_many(void **state)
{
    skip_iterative(state);
    start(*state, 0);
    enum { N = 3 };
    int fd[N];
    clients(fd, N);
    static char expect[TICKS * 16];
    size_t len = 0;
    int wrong = 0;
    for (int i = 0; i < TICKS; i++) {
        char line[16];
        int n = snprintf(line, sizeof line, "tick %d\n", i);
        pthread_mutex_lock(&lock);
        wrong += iop_post_many(members, (size_t)nmembers, line, (size_t)n) != N;
        pthread_mutex_unlock(&lock);
        memcpy(expect + len, line, (size_t)n);
        len += (size_t)n;
    }
    assert_int_equal(wrong, 0);
    static char got[TICKS * 16];
    for (int k = 0; k < N; k++) {
        assert_int_equal(read_exact(fd[k], got, len), 0);
        assert_memory_equal(got, expect, len);
    }
    for (int k = 0; k < N; k++)
        close(fd[k]);
    pthread_mutex_lock(&lock);
    int ok = wait_members(0);
    pthread_mutex_unlock(&lock);
    assert_true(ok);
}

static void test_many_purge(void **state)
{
    skip_iterative(state);
    start(*state, 0);
    /* 100 bytes a post, 1000 at most: 100 KB, with what each post holds
     * (see backlog_tiny) under the high watermark (256 KiB) of the one
     * that stays, which reads only after. */
    static char late[100];
    memset(late, 'l', sizeof late - 1);
    late[sizeof late - 1] = '\n';
    for (int round = 0; round < 20; round++) {
        int fd[2];
        clients(fd, 2);
        pthread_mutex_lock(&lock);
        iop_conn *stays = members[0];
        pthread_mutex_unlock(&lock);
        /* Which client is `stays`? The one that hears a post to it alone. */
        pthread_mutex_lock(&lock);
        int r = iop_post(stays, "you\n", 4);
        pthread_mutex_unlock(&lock);
        assert_int_equal(r, 0);
        struct pollfd p[2] = {{.fd = fd[0], .events = POLLIN}, {.fd = fd[1], .events = POLLIN}};
        assert_true(poll(p, 2, WAIT_MS) >= 1);
        int k = (p[0].revents & POLLIN) ? 0 : 1;
        char you[4];
        assert_int_equal(read_exact(fd[k], you, 4), 0);
        close(fd[1 - k]); /* the other closes while broadcasts keep coming */
        size_t sent = 0;
        for (int i = 0; i < 1000; i++) {
            pthread_mutex_lock(&lock);
            int both = nmembers == 2;
            r = iop_post_many(members, (size_t)nmembers, late, sizeof late);
            pthread_mutex_unlock(&lock);
            assert_true(r >= 1); /* the one that stays, at least */
            sent += sizeof late;
            if (!both)
                break;
            if (i % 10 == 9)
                usleep(100); /* give the close time to come */
        }
        pthread_mutex_lock(&lock);
        int one = wait_members(1);
        pthread_mutex_unlock(&lock);
        assert_true(one);
        /* What the one that stays was sent, all of it. */
        static char got[1000 * sizeof late];
        assert_int_equal(read_exact(fd[k], got, sent), 0);
        for (size_t i = 0; i < sent; i += sizeof late)
            assert_memory_equal(got + i, late, sizeof late);
        close(fd[k]);
        pthread_mutex_lock(&lock);
        int ok = wait_members(0);
        pthread_mutex_unlock(&lock);
        assert_true(ok);
    }
}

static const struct model_cfg configs[] = {
    {"iterative", 0}, {"thread", 0}, {"select", 0}, {"poll", 0},
    {"epoll", 0},     {"epoll", 2},  {"pool", 0},   {"aio", 0},
    {"uring", 0},     {"uring", 2},
};

int main(void)
{
    enum { NCFG = sizeof configs / sizeof configs[0] };
    static const struct {
        const char *what;
        CMUnitTestFunction fn;
    } kinds[] = {{"ticks", test_ticks},         {"overflow", test_overflow},
                 {"backlog", test_backlog},     {"backlog_tiny", test_backlog_tiny},
                 {"purge", test_purge},
                 {"many", test_many},           {"many_purge", test_many_purge}};
    enum { NKINDS = sizeof kinds / sizeof kinds[0] };
    static char names[NKINDS * NCFG][48];
    struct CMUnitTest tests[NKINDS * NCFG];
    size_t n = 0;
    /* Under valgrind (scripts/valgrind.sh), uring is left out: valgrind
     * cannot follow what the kernel does in a ring. Said, not skipped. */
    const char *vg = getenv("IOPLEX_VALGRIND");
    int no_uring = vg && *vg && strcmp(vg, "0") != 0;
    if (no_uring)
        fprintf(stderr, "test_post: the uring configurations are left out under valgrind\n");
    for (size_t k = 0; k < NKINDS; k++)
        for (size_t i = 0; i < NCFG; i++) {
            if (no_uring && strcmp(configs[i].model, "uring") == 0)
                continue;
            snprintf(names[n], sizeof names[n], "%s/%s%s", kinds[k].what, configs[i].model,
                     configs[i].workers ? "-w2" : "");
            tests[n] = (struct CMUnitTest){names[n], kinds[k].fn, NULL, teardown,
                                           (void *)&configs[i]};
            n++;
        }
    return _cmocka_run_group_tests("post", tests, n, NULL, NULL);
}
