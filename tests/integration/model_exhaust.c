/*
 * Running out of descriptors (EMFILE), under every model; run as
 * `model_exhaust MODEL`.
 *
 *   emfile_live   the server serves two clients (iterative: none, it
 *                 serves one at a time); then the soft RLIMIT_NOFILE of
 *                 the processes that accept (the server, or prefork's
 *                 children) is lowered, on the running processes
 *                 (prlimit(2)), to their lowest free descriptor, so the
 *                 next accept() fails. Four new clients connect and send a
 *                 line. While the limit lasts (EXHAUST_MS): the existing
 *                 clients keep getting their echoes, the new ones get
 *                 nothing, "pausing new connections" is printed once (one
 *                 line, whatever the number of attempts or children), and
 *                 the server's CPU time (utime + stime of it and its
 *                 children, /proc/PID/stat) stays under CPU_RATIO_MAX of
 *                 the wall time: it does not spin. Then the limit is put
 *                 back: the four are answered, "accept: recovered" is
 *                 printed, and a fresh client is served. prefork runs it
 *                 with --accept-lock too.
 *   emfile_full   (models whose connections hold the accepting process's
 *                 descriptors: thread, pool, aio and the event loops)
 *                 the server starts under RLIMIT_NOFILE 64 and 100
 *                 clients connect and send a line: some are served, the
 *                 others wait (once "pausing new connections", little
 *                 CPU); the served leave, and every waiting client is then
 *                 served, with "accept: recovered".
 *
 * fork, prefork and iterative hold no descriptor per client in the
 * accepting process (a child has it, or the one client is closed before
 * the next accept), so only a lowered limit exhausts them: emfile_live.
 * uring runs emfile_full only: its multishot accept reads RLIMIT_NOFILE
 * once, when it is armed (io_uring's accept prep), so a limit lowered on
 * the running process does not reach it until it is armed again.
 * Fork and thread failures (RLIMIT_NPROC) are test_exhaust.c.
 */
#define _GNU_SOURCE
#include "harness.h"
#include "harness_cases.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define EXHAUST_MS 1200    /* how long the pressure lasts */
#define CPU_RATIO_MAX 0.30 /* server CPU / wall time while it lasts */
#define IO_MS HARNESS_IO_TIMEOUT_MS
#define NEW_CLIENTS 4
#define OLD_CLIENTS 2
#define FULL_LIMIT 64
#define FULL_CLIENTS 100
#define MAX_PIDS 64

static const char *model;

/* ---- the server's processes -------------------------------------------------- */

/* The lowest descriptor number pid has free, -1 if /proc cannot tell. */
static int lowest_free_fd(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    static unsigned char used[4096];
    memset(used, 0, sizeof used);
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        if (!*end && fd >= 0 && fd < (long)sizeof used)
            used[fd] = 1;
    }
    closedir(d);
    for (int i = 0; i < (int)sizeof used; i++)
        if (!used[i])
            return i;
    return -1;
}

/* The same once it has stopped changing: a prefork child just started
 * still closes descriptors (the parent's self-pipe), and the hole that
 * leaves would take a client past the limit computed before it. */
static int settled_lowest_free_fd(pid_t pid)
{
    int last = lowest_free_fd(pid), same = 0;
    long long until = now_ms() + 3000;
    while (same < 3 && now_ms() < until) {
        sleep_ms(30);
        int low = lowest_free_fd(pid);
        same = low == last ? same + 1 : 0;
        last = low;
    }
    return last;
}

/* Set the soft RLIMIT_NOFILE of a running process; the old soft limit in
 * *old. Returns 0 or -1. */
static int set_live_nofile(pid_t pid, rlim_t soft, rlim_t *old)
{
    struct rlimit cur;
    if (prlimit(pid, RLIMIT_NOFILE, NULL, &cur) != 0)
        return -1;
    if (old)
        *old = cur.rlim_cur;
    struct rlimit nl = {.rlim_cur = soft, .rlim_max = cur.rlim_max};
    return prlimit(pid, RLIMIT_NOFILE, &nl, NULL);
}

/* This process's soft RLIMIT_NOFILE (a server started now inherits it). */
static rlim_t set_own_nofile(rlim_t soft)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0)
        return 0;
    rlim_t old = r.rlim_cur;
    r.rlim_cur = soft < r.rlim_max ? soft : r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
    return old;
}

/* ---- emfile_live ------------------------------------------------------------- */

static void emfile_live(void **state)
{
    int iterative = strcmp(model, "iterative") == 0;
    int prefork = strcmp(model, "prefork") == 0;
    /* prefork: four children, two busy with the old clients and two idle,
     * both of which meet the limit (and must report it once between them);
     * *state may add "--accept-lock". */
    const char *extra_prefork[] = {"-w", "4", *state, NULL};
    struct server s;
    if (server_start_on(&s, model, "tcp4", "echo", prefork ? extra_prefork : NULL) != 0)
        fail_msg("cannot start echo under %s", model);

    int nold = iterative ? 0 : OLD_CLIENTS;
    int old[OLD_CLIENTS];
    char line[128];
    for (int i = 0; i < nold; i++) {
        old[i] = client_connect(&s);
        CHECK(&s, old[i] >= 0);
        snprintf(line, sizeof line, "old %d\n", i);
        CHECK(&s, echo_line(old[i], line, IO_MS));
    }
    if (iterative) {
        /* One client at a time: served, gone, and its descriptor closed
         * before the limit is computed. */
        int fds0 = count_fds(s.pid);
        int c = client_connect(&s);
        CHECK(&s, c >= 0);
        CHECK(&s, echo_line(c, "before\n", IO_MS));
        client_close(c);
        long long until = now_ms() + IO_MS;
        while (count_fds(s.pid) > fds0 && now_ms() < until)
            sleep_ms(10);
        CHECK(&s, count_fds(s.pid) == fds0);
    }

    /* The processes that accept, and their limits lowered. */
    pid_t acc[MAX_PIDS];
    rlim_t before[MAX_PIDS];
    int nacc = 1;
    acc[0] = s.pid;
    if (prefork) {
        long long until = now_ms() + IO_MS;
        while ((nacc = proc_children(s.pid, acc, MAX_PIDS, 1)) < 4 && now_ms() < until)
            sleep_ms(10);
        CHECK(&s, nacc == 4);
    }
    for (int i = 0; i < nacc; i++) {
        int low = settled_lowest_free_fd(acc[i]);
        CHECK(&s, low > 2);
        if (set_live_nofile(acc[i], (rlim_t)low, &before[i]) != 0) {
            server_dump(&s);
            fail_msg("prlimit(%d, RLIMIT_NOFILE, %d): %s", (int)acc[i], low, strerror(errno));
        }
        CHECK(&s, lowest_free_fd(acc[i]) == low);
    }

    /* New clients: connected (the kernel's backlog), never accepted. */
    int nw[NEW_CLIENTS];
    for (int i = 0; i < NEW_CLIENTS; i++) {
        nw[i] = client_connect(&s);
        CHECK(&s, nw[i] >= 0);
        snprintf(line, sizeof line, "new %d\n", i);
        CHECK(&s, send_all(nw[i], line, strlen(line)) == 0);
    }
    CHECK(&s, server_wait_stderr(&s, "pausing new connections", IO_MS));

    /* The pressure lasts: old clients served, no spin. */
    long long c0 = proc_tree_ticks(s.pid, 1), w0 = now_ms();
    int rounds = 0;
    while (now_ms() - w0 < EXHAUST_MS) {
        for (int i = 0; i < nold; i++) {
            snprintf(line, sizeof line, "old %d round %d\n", i, rounds);
            CHECK(&s, echo_line(old[i], line, IO_MS));
        }
        rounds++;
        sleep_ms(100);
    }
    long long c1 = proc_tree_ticks(s.pid, 1);
    double wall = (double)(now_ms() - w0) / 1000.0;
    double cpu = (double)(c1 - c0) / (double)sysconf(_SC_CLK_TCK);
    CHECK(&s, c0 >= 0 && c1 >= c0);
    fprintf(stderr, "emfile_live %s: %.2f s CPU in %.2f s out of descriptors (%.0f%%), "
            "%d rounds for %d old clients\n", model, cpu, wall, 100.0 * cpu / wall,
            rounds, nold);
    CHECK(&s, cpu / wall < CPU_RATIO_MAX);
    for (int i = 0; i < NEW_CLIENTS; i++)
        CHECK(&s, wait_readable(nw[i], 0) == 0);
    CHECK(&s, server_stderr_count(&s, "pausing new connections") == 1);
    CHECK(&s, server_stderr_count(&s, "recovered") == 0);

    /* The pressure goes: the waiting are answered, once "recovered". */
    long long r0 = now_ms();
    for (int i = 0; i < nacc; i++)
        CHECK(&s, set_live_nofile(acc[i], before[i], NULL) == 0);
    for (int i = 0; i < NEW_CLIENTS; i++) {
        char buf[64];
        snprintf(line, sizeof line, "new %d\n", i);
        ssize_t n = recv_exact(nw[i], buf, strlen(line), IO_MS);
        CHECK(&s, n == (ssize_t)strlen(line) && memcmp(buf, line, (size_t)n) == 0);
        client_close(nw[i]);
    }
    fprintf(stderr, "emfile_live %s: the %d waiting clients answered %lld ms after "
            "the limit was raised\n", model, NEW_CLIENTS, now_ms() - r0);
    CHECK(&s, server_wait_stderr(&s, "accept: recovered", IO_MS));
    int c = client_connect(&s);
    CHECK(&s, c >= 0);
    CHECK(&s, echo_line(c, "after\n", IO_MS));
    client_close(c);
    for (int i = 0; i < nold; i++) {
        CHECK(&s, echo_line(old[i], "old, after\n", IO_MS));
        client_close(old[i]);
    }
    CHECK(&s, server_stderr_count(&s, "pausing new connections") == 1);
    CHECK(&s, server_stderr_count(&s, "accept: recovered") == 1);
    server_stop_clean(&s);
}

/* ---- emfile_full -------------------------------------------------------------- */

/* Poll the unserved clients for their answers until `quiet_ms` pass with
 * none new (or none is left), at most max_ms; with close_served, each is
 * closed once answered. Returns how many were answered. */
static int collect(struct server *s, int *fd, char (*msg)[32], int *served, int n,
                   int quiet_ms, int max_ms, int close_served)
{
    struct pollfd pfs[FULL_CLIENTS];
    int idx[FULL_CLIENTS], got = 0;
    long long until = now_ms() + max_ms, last = now_ms();
    for (;;) {
        int k = 0;
        for (int i = 0; i < n; i++)
            if (!served[i]) {
                pfs[k] = (struct pollfd){.fd = fd[i], .events = POLLIN};
                idx[k++] = i;
            }
        if (k == 0 || now_ms() >= until || (quiet_ms > 0 && now_ms() - last >= quiet_ms))
            break;
        int r = poll(pfs, (nfds_t)k, 50);
        CHECK(s, r >= 0);
        for (int j = 0; j < k; j++) {
            if (!pfs[j].revents)
                continue;
            int i = idx[j];
            char buf[64];
            size_t len = strlen(msg[i]);
            ssize_t m = recv_exact(fd[i], buf, len, IO_MS);
            if (m != (ssize_t)len || memcmp(buf, msg[i], len) != 0) {
                server_dump(s);
                fail_msg("client %d: got %zd bytes, expected its line back", i, m);
            }
            served[i] = 1;
            got++;
            last = now_ms();
            if (close_served) {
                client_close(fd[i]);
                fd[i] = -1;
            }
        }
    }
    return got;
}

static void emfile_full(void **state)
{
    (void)state;
    struct server s;
    rlim_t before = set_own_nofile(FULL_LIMIT); /* the server inherits it */
    /* --max-conns above the limit: descriptors run out first (the default
     * would refuse clients before that: default_max_conns). */
    static const char *const extra[] = {"--max-conns", "1000", NULL};
    int ok = server_start_on(&s, model, "tcp4", "echo", extra);
    set_own_nofile(before);
    if (ok != 0)
        fail_msg("cannot start echo under %s with RLIMIT_NOFILE %d", model, FULL_LIMIT);
    int fds0 = count_fds(s.pid);
    CHECK(&s, fds0 > 0 && fds0 < FULL_LIMIT);

    int fd[FULL_CLIENTS], served[FULL_CLIENTS] = {0};
    char msg[FULL_CLIENTS][32];
    for (int i = 0; i < FULL_CLIENTS; i++) {
        fd[i] = client_connect(&s);
        CHECK(&s, fd[i] >= 0);
        snprintf(msg[i], sizeof msg[i], "client %d\n", i);
        CHECK(&s, send_all(fd[i], msg[i], strlen(msg[i])) == 0);
    }
    int nserved = collect(&s, fd, msg, served, FULL_CLIENTS, 300, 3000, 0);
    fprintf(stderr, "emfile_full %s: %d descriptors at start, %d of %d clients served "
            "under RLIMIT_NOFILE %d\n", model, fds0, nserved, FULL_CLIENTS, FULL_LIMIT);
    CHECK(&s, nserved > 0 && nserved < FULL_CLIENTS);
    CHECK(&s, server_wait_stderr(&s, "pausing new connections", IO_MS));

    long long c0 = proc_tree_ticks(s.pid, 1), w0 = now_ms();
    sleep_ms(EXHAUST_MS);
    long long c1 = proc_tree_ticks(s.pid, 1);
    double wall = (double)(now_ms() - w0) / 1000.0;
    double cpu = (double)(c1 - c0) / (double)sysconf(_SC_CLK_TCK);
    fprintf(stderr, "emfile_full %s: %.2f s CPU in %.2f s out of descriptors (%.0f%%)\n",
            model, cpu, wall, 100.0 * cpu / wall);
    CHECK(&s, c0 >= 0 && c1 >= c0);
    CHECK(&s, cpu / wall < CPU_RATIO_MAX);
    for (int i = 0; i < FULL_CLIENTS; i++)
        if (!served[i])
            CHECK(&s, wait_readable(fd[i], 0) == 0);
    CHECK(&s, server_stderr_count(&s, "pausing new connections") == 1);

    /* The served leave; every waiting client is served in turn. */
    for (int i = 0; i < FULL_CLIENTS; i++)
        if (served[i]) {
            client_close(fd[i]);
            fd[i] = -1;
        }
    nserved += collect(&s, fd, msg, served, FULL_CLIENTS, 0, 20000, 1);
    fprintf(stderr, "emfile_full %s: %d of %d clients served in the end\n", model,
            nserved, FULL_CLIENTS);
    CHECK(&s, nserved == FULL_CLIENTS);
    CHECK(&s, server_wait_stderr(&s, "accept: recovered", IO_MS));
    int paused = server_stderr_count(&s, "pausing new connections");
    int recovered = server_stderr_count(&s, "accept: recovered");
    fprintf(stderr, "emfile_full %s: %d 'pausing' and %d 'recovered' lines in all\n", model,
            paused, recovered);
    /* One episode, though descriptors came back one at a time while
     * clients waited. */
    CHECK(&s, paused == 1);
    CHECK(&s, recovered == 1);
    server_stop_clean(&s);
}

/* Models whose connections hold descriptors of the accepting process. */
static int holds_descriptors(const char *m)
{
    return strcmp(m, "iterative") != 0 && strcmp(m, "fork") != 0 &&
           strcmp(m, "prefork") != 0;
}

int main(int argc, char **argv)
{
    model = harness_model_checked(argc, argv, NULL);
    static struct harness_cases l;
    if (strcmp(model, "uring") != 0)
        harness_add_case(&l, "tcp4", "emfile_live", emfile_live, NULL);
    if (strcmp(model, "prefork") == 0)
        harness_add_case(&l, "accept_lock", "emfile_live", emfile_live, (void *)"--accept-lock");
    if (holds_descriptors(model))
        harness_add_case(&l, "tcp4", "emfile_full", emfile_full, NULL);
    return harness_run_cases(&l, "model_exhaust", model);
}
