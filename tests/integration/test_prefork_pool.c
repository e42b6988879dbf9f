/*
 * What only prefork, pool and aio do: prefork keeps N children (replacing
 * one that dies, at a bounded rate), leaves no zombie, serves with the
 * accept lock (also when a child dies holding it) and leaves no child
 * behind at stop; pool serves N clients at once and queues the next, and
 * --max-conns counts the queued; aio refuses beyond --max-conns and
 * closes an oversized sender without touching the others.
 */
#include "harness.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "ioplex.h"

#define IO_MS HARNESS_IO_TIMEOUT_MS
#define MAX_KIDS 64

/* ---- helpers ------------------------------------------------------------------- */

/* Wait (bounded) until pid has exactly n children, none a zombie. */
static int wait_children(pid_t pid, int n, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        if (count_children(pid, 0) == n && count_children(pid, 1) == 0)
            return 1;
        if (now_ms() >= deadline)
            return 0;
        sleep_ms(10);
    }
}

static int contains(const pid_t *pids, int n, pid_t p)
{
    for (int i = 0; i < n; i++)
        if (pids[i] == p)
            return 1;
    return 0;
}

/* Wait (bounded) until the child `victim` has been reaped and replaced:
 * gone from the list, which is back to n, none a zombie. (A child just
 * sent SIGKILL still counts as one while it dies.) */
static int wait_replaced(pid_t pid, pid_t victim, int n, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        pid_t pids[MAX_KIDS];
        int k = proc_children(pid, pids, MAX_KIDS, 1);
        if (k == n && !contains(pids, k < MAX_KIDS ? k : MAX_KIDS, victim) &&
            count_children(pid, 1) == 0)
            return 1;
        if (now_ms() >= deadline)
            return 0;
        sleep_ms(10);
    }
}

/* ---- prefork ------------------------------------------------------------------- */

/* prefork:3 has three children, and still three after serving clients. */
static void prefork_keeps_n(void **state)
{
    (void)state;
    struct server s;
    CHECK(&s, server_startl(&s, "-m", "prefork:3", "127.0.0.1", "0", NULL) == 0);
    CHECK(&s, wait_children(s.pid, 3, IO_MS));
    for (int i = 0; i < 10; i++)
        CHECK(&s, ack_exchange(&s, "hello\n"));
    CHECK(&s, wait_children(s.pid, 3, IO_MS));
    server_stop_clean(&s);
}

/* The default is twice the cores and at least 4; -w says the same as :N;
 * --max-conns below N starts that many. */
static void prefork_counts(void **state)
{
    (void)state;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int dflt = cores > 0 ? (int)cores * 2 : 4;
    if (dflt < 4)
        dflt = 4;
    if (dflt > MAX_KIDS)
        skip();
    struct server s;
    CHECK(&s, server_startl(&s, "-m", "prefork", "127.0.0.1", "0", NULL) == 0);
    CHECK(&s, wait_children(s.pid, dflt, IO_MS));
    server_stop_clean(&s);
    CHECK(&s, server_startl(&s, "-m", "prefork", "-w", "2", "127.0.0.1", "0", NULL) == 0);
    CHECK(&s, wait_children(s.pid, 2, IO_MS));
    server_stop_clean(&s);
    CHECK(&s, server_startl(&s, "-m", "prefork:5", "--max-conns", "2", "127.0.0.1",
                            "0", NULL) == 0);
    CHECK(&s, wait_children(s.pid, 2, IO_MS));
    server_stop_clean(&s);
}

/* A child killed with SIGKILL is replaced by a new one, and the server
 * goes on serving. */
static void prefork_replaces_killed(void **state)
{
    (void)state;
    struct server s;
    CHECK(&s, server_startl(&s, "-m", "prefork:3", "127.0.0.1", "0", NULL) == 0);
    CHECK(&s, wait_children(s.pid, 3, IO_MS));
    pid_t before[MAX_KIDS], after[MAX_KIDS];
    CHECK(&s, proc_children(s.pid, before, MAX_KIDS, 1) == 3);
    pid_t victim = before[1];
    CHECK(&s, kill(victim, SIGKILL) == 0);
    CHECK(&s, wait_replaced(s.pid, victim, 3, IO_MS));
    int n = proc_children(s.pid, after, MAX_KIDS, 1);
    CHECK(&s, n == 3);
    int fresh = 0;
    for (int i = 0; i < n; i++)
        fresh += !contains(before, 3, after[i]);
    CHECK(&s, fresh == 1);
    CHECK(&s, server_wait_stderr(&s, "killed by signal 9", IO_MS));
    for (int i = 0; i < 5; i++)
        CHECK(&s, ack_exchange(&s, "after\n"));
    server_stop_clean(&s);
}

/* --max-conns 2 with both children serving: a third client is turned
 * away at once. A child killed while serving frees its slot, so the
 * parent does not turn clients away for a slot that only looks busy: with
 * the replacement stopped (SIGSTOP), a new client waits in the backlog
 * instead of being closed, and is served once the replacement runs. */
static void prefork_max_conns_slot_freed(void **state)
{
    (void)state;
    struct server s;
    CHECK(&s, server_startl(&s, "-m", "prefork:2", "--max-conns", "2", "-S", "echo",
                            "127.0.0.1", "0", NULL) == 0);
    CHECK(&s, wait_children(s.pid, 2, IO_MS));
    int held[2];
    for (int i = 0; i < 2; i++) {
        held[i] = client_connect(&s);
        CHECK(&s, held[i] >= 0 && echo_line(held[i], "held\n", IO_MS));
    }
    int extra = client_connect(&s);
    CHECK(&s, extra >= 0 && expect_eof(extra, IO_MS) == 1);
    client_close(extra);

    pid_t kids[MAX_KIDS];
    CHECK(&s, proc_children(s.pid, kids, MAX_KIDS, 1) == 2);
    CHECK(&s, kill(kids[0], SIGKILL) == 0);
    CHECK(&s, wait_replaced(s.pid, kids[0], 2, IO_MS));
    pid_t now[MAX_KIDS];
    CHECK(&s, proc_children(s.pid, now, MAX_KIDS, 1) == 2);
    pid_t fresh = now[0] == kids[1] ? now[1] : now[0]; /* the replacement */
    CHECK(&s, kill(fresh, SIGSTOP) == 0);
    int next = client_connect(&s);
    CHECK(&s, next >= 0);
    int closed = wait_readable(next, 500); /* turned away: EOF within ms */
    kill(fresh, SIGCONT);
    CHECK(&s, closed == 0);
    CHECK(&s, echo_line(next, "served\n", IO_MS));
    client_close(next);
    for (int i = 0; i < 2; i++)
        client_close(held[i]);
    server_stop_clean(&s);
}

/* Children dying over and over are replaced at a bounded rate (a burst of
 * N, then one every 200 ms), said once, and the server recovers. */
static int count_in(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static void prefork_restart_throttle(void **state)
{
    (void)state;
    struct server s;
    CHECK(&s, server_startl(&s, "-m", "prefork:2", "127.0.0.1", "0", NULL) == 0);
    CHECK(&s, wait_children(s.pid, 2, IO_MS));
    /* Kill every child as soon as it appears, until the parent says it is
     * holding back (bounded). */
    long long t0 = now_ms(), deadline = t0 + IO_MS;
    int throttled = 0;
    while (!throttled && now_ms() < deadline) {
        pid_t pids[MAX_KIDS];
        int n = proc_children(s.pid, pids, MAX_KIDS, 1);
        for (int i = 0; i < n && i < MAX_KIDS; i++)
            kill(pids[i], SIGKILL);
        sleep_ms(5);
        server_pump(&s);
        throttled = strstr(s.err, "dying faster than they can be replaced") != NULL;
    }
    long long took = now_ms() - t0;
    CHECK(&s, throttled);
    /* Restarts so far: at most the burst (2) plus one per 200 ms. */
    int restarts = count_in(s.err, "starting another");
    fprintf(stderr, "test_prefork_pool: %d restarts in %lld ms before the throttle\n",
            restarts, took);
    CHECK(&s, restarts <= 2 + (int)(took / 200) + 2);
    CHECK(&s, wait_children(s.pid, 2, IO_MS));
    CHECK(&s, ack_exchange(&s, "recovered\n"));
    CHECK(&s, count_in(s.err, "dying faster") == 1);
    server_stop_clean(&s);
}

/* 200 clients, each fully served: no zombie, still N children. */
static void prefork_no_zombies(void **state)
{
    (void)state;
    struct server s;
    CHECK(&s, server_startl(&s, "-m", "prefork:4", "127.0.0.1", "0", NULL) == 0);
    CHECK(&s, wait_children(s.pid, 4, IO_MS));
    for (int i = 0; i < 200; i++)
        CHECK(&s, ack_exchange(&s, "zombie?\n"));
    CHECK(&s, wait_children(s.pid, 4, IO_MS));
    CHECK(&s, count_children(s.pid, 1) == 0);
    CHECK(&s, server_output_count(&s, "Here is the message: zombie?\n") == 200);
    server_stop_clean(&s);
}

/* --accept-lock: 50 clients served, two silent ones at once, and a child
 * killed while it may hold the lock (the one waiting for a client does)
 * does not lock the others out. */
static void prefork_accept_lock(void **state)
{
    (void)state;
    struct server s;
    CHECK(&s, server_startl(&s, "-m", "prefork:3", "--accept-lock", "127.0.0.1", "0",
                            NULL) == 0);
    CHECK(&s, wait_children(s.pid, 3, IO_MS));
    for (int i = 0; i < 50; i++)
        CHECK(&s, ack_exchange(&s, "locked\n"));
    CHECK(&s, server_output_count(&s, "Here is the message: locked\n") == 50);
    int a = client_connect(&s), b = client_connect(&s);
    CHECK(&s, a >= 0 && b >= 0);
    CHECK(&s, ack_exchange(&s, "third\n")); /* two children busy, the third serves */
    CHECK(&s, send_all(b, "b\n", 2) == 0 && recv_ack(b, IO_MS));
    CHECK(&s, send_all(a, "a\n", 2) == 0 && recv_ack(a, IO_MS));
    client_close(a);
    client_close(b);
    /* Kill a child, three times over: whichever held the lock, the
     * replacements get it (a robust mutex). */
    for (int round = 0; round < 3; round++) {
        pid_t pids[MAX_KIDS];
        CHECK(&s, proc_children(s.pid, pids, MAX_KIDS, 1) == 3);
        pid_t victim = pids[round % 3];
        CHECK(&s, kill(victim, SIGKILL) == 0);
        CHECK(&s, ack_exchange(&s, "still\n"));
        CHECK(&s, wait_replaced(s.pid, victim, 3, IO_MS));
    }
    for (int i = 0; i < 10; i++)
        CHECK(&s, ack_exchange(&s, "again\n"));
    server_stop_clean(&s);
}

/* SIGTERM with clients connected: exit 0, every child gone, the silent
 * client gets EOF and the one that sent a line gets its answer. */
static void prefork_sigterm(void **state)
{
    (void)state;
    struct server s;
    CHECK(&s, server_startl(&s, "-m", "prefork:3", "127.0.0.1", "0", NULL) == 0);
    CHECK(&s, wait_children(s.pid, 3, IO_MS));
    pid_t pids[MAX_KIDS];
    CHECK(&s, proc_children(s.pid, pids, MAX_KIDS, 1) == 3);
    int silent = client_connect(&s), partial = client_connect(&s);
    CHECK(&s, silent >= 0 && partial >= 0);
    CHECK(&s, send_all(partial, "half", 4) == 0);
    sleep_ms(100);
    CHECK(&s, kill(s.pid, SIGTERM) == 0);
    CHECK(&s, expect_eof(silent, IO_MS) == 1);
    CHECK(&s, recv_ack(partial, IO_MS));
    int st = server_wait_exit(&s, IO_MS);
    CHECK(&s, st == 0);
    CHECK(&s, !s.leftovers);
    for (int i = 0; i < 3; i++)
        CHECK(&s, kill(pids[i], 0) == -1 && errno == ESRCH);
    client_close(silent);
    client_close(partial);
}

/* A child stuck sending to a client that does not read is ended after
 * --drain-ms, and the server still exits 0 with no child left. */
static void prefork_stuck_reader(void **state)
{
    (void)state;
    struct server s;
    CHECK(&s, server_startl(&s, "-m", "prefork:2", "-S", "chargen", "--drain-ms", "300",
                            "127.0.0.1", "0", NULL) == 0);
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    char buf[1000];
    CHECK(&s, recv_exact(fd, buf, sizeof buf, IO_MS) == (ssize_t)sizeof buf);
    sleep_ms(300);
    long long t0 = now_ms();
    CHECK(&s, kill(s.pid, SIGTERM) == 0);
    CHECK(&s, server_wait_exit(&s, IO_MS) == 0);
    CHECK(&s, now_ms() - t0 < 5000);
    CHECK(&s, !s.leftovers);
    client_close(fd);
}

/* A shared-state service is refused, as under fork. */
static void prefork_refuses_shared_state(void **state)
{
    (void)state;
    const char *shared = NULL;
    for (const struct iop_service *const *sv = iop_services(); *sv; sv++)
        if ((*sv)->flags & IOP_SERVICE_SHARED_STATE)
            shared = (*sv)->name;
    if (!shared)
        skip();
    const char *argv[] = {ioplex_bin(), "serve", "-m", "prefork", "-S", shared,
                          "127.0.0.1", "0", NULL};
    char err[1024];
    int code = run_cmd(argv, NULL, 0, NULL, 0, NULL, err, sizeof err, IO_MS);
    assert_int_equal(code, 2);
    assert_non_null(strstr(err, "shares state"));
}

/* ---- pool ------------------------------------------------------------------------ */

/* pool:2: two silent clients are served at once (both hold a thread); a
 * third waits, queued, until one of them is done. */
static void pool_two_at_once(void **state)
{
    (void)state;
    struct server s;
    CHECK(&s, server_startl(&s, "-m", "pool:2", "127.0.0.1", "0", NULL) == 0);
    long long deadline = now_ms() + IO_MS; /* the main thread and two workers */
    while (count_threads(s.pid) != 3 && now_ms() < deadline)
        sleep_ms(10);
    CHECK(&s, count_threads(s.pid) == 3);
    int a = client_connect(&s), b = client_connect(&s);
    CHECK(&s, a >= 0 && b >= 0);
    sleep_ms(100);
    int c = client_connect(&s);
    CHECK(&s, c >= 0);
    CHECK(&s, send_all(c, "third\n", 6) == 0);
    CHECK(&s, wait_readable(c, 500) == 0); /* queued: no thread for it */
    CHECK(&s, server_output_count(&s, "Here is the message: third") == 0);
    /* Both silent ones are in service: either answers at once. */
    CHECK(&s, send_all(b, "b\n", 2) == 0 && recv_ack(b, IO_MS));
    CHECK(&s, recv_ack(c, IO_MS)); /* b's thread took it */
    CHECK(&s, send_all(a, "a\n", 2) == 0 && recv_ack(a, IO_MS));
    long pb = -1, pc = -1;
    server_pump(&s);
    const char *q = strstr(s.out, "Here is the message: b\n");
    const char *r = strstr(s.out, "Here is the message: third\n");
    if (q)
        pb = q - s.out;
    if (r)
        pc = r - s.out;
    CHECK(&s, pb >= 0 && pc > pb);
    client_close(a);
    client_close(b);
    client_close(c);
    server_stop_clean(&s);
}

/* pool:1 --max-conns 2: one in service, one queued, the third refused
 * (accepted and closed: EOF, no answer); the queued one is served later. */
static void pool_max_conns_counts_queue(void **state)
{
    (void)state;
    struct server s;
    CHECK(&s, server_startl(&s, "-m", "pool:1", "--max-conns", "2", "127.0.0.1", "0",
                            NULL) == 0);
    int a = client_connect(&s);
    CHECK(&s, a >= 0);
    sleep_ms(100);
    int b = client_connect(&s);
    CHECK(&s, b >= 0);
    CHECK(&s, send_all(b, "queued\n", 7) == 0);
    sleep_ms(100);
    int c = client_connect(&s);
    CHECK(&s, c >= 0);
    CHECK(&s, expect_eof(c, IO_MS) == 1);
    CHECK(&s, server_wait_stderr(&s, "max-conns", IO_MS));
    client_close(c);
    CHECK(&s, wait_readable(b, 200) == 0);
    CHECK(&s, send_all(a, "first\n", 6) == 0 && recv_ack(a, IO_MS));
    CHECK(&s, recv_ack(b, IO_MS));
    client_close(a);
    client_close(b);
    server_stop_clean(&s);
}

/* SIGTERM with a client in service and one queued (pool:1): both answered
 * what they sent, exit 0, and the threads are gone with the process. */
static void pool_sigterm_with_queue(void **state)
{
    (void)state;
    struct server s;
    CHECK(&s, server_startl(&s, "-m", "pool:1", "127.0.0.1", "0", NULL) == 0);
    int a = client_connect(&s);
    CHECK(&s, a >= 0);
    CHECK(&s, send_all(a, "in service", 10) == 0);
    sleep_ms(100);
    int b = client_connect(&s);
    CHECK(&s, b >= 0);
    CHECK(&s, send_all(b, "queued\n", 7) == 0);
    sleep_ms(100);
    CHECK(&s, kill(s.pid, SIGTERM) == 0);
    CHECK(&s, recv_ack(a, IO_MS));
    CHECK(&s, recv_ack(b, IO_MS));
    CHECK(&s, server_wait_exit(&s, IO_MS) == 0);
    CHECK(&s, server_output_count(&s, "Here is the message: in service\n") == 1);
    CHECK(&s, server_output_count(&s, "Here is the message: queued\n") == 1);
    client_close(a);
    client_close(b);
}

/* ---- aio ------------------------------------------------------------------------- */

/* --max-conns 1: the second client is accepted and closed; once the first
 * has gone, a new one is served. */
static void aio_max_conns(void **state)
{
    (void)state;
    struct server s;
    CHECK(&s, server_startl(&s, "-m", "aio", "--max-conns", "1", "127.0.0.1", "0",
                            NULL) == 0);
    int a = client_connect(&s);
    CHECK(&s, a >= 0);
    sleep_ms(100);
    int b = client_connect(&s);
    CHECK(&s, b >= 0);
    CHECK(&s, expect_eof(b, IO_MS) == 1);
    client_close(b);
    CHECK(&s, send_all(a, "one\n", 4) == 0 && recv_ack(a, IO_MS));
    client_close(a);
    long long deadline = now_ms() + 5000;
    int served = 0;
    while (!served && now_ms() < deadline) {
        served = ack_exchange(&s, "later\n");
        if (!served)
            sleep_ms(50);
    }
    CHECK(&s, served);
    server_stop_clean(&s);
}

/* echo --max-frame 100: an oversized line closes that connection only;
 * another, connected meanwhile, is still echoed. */
static void aio_oversized(void **state)
{
    (void)state;
    struct server s;
    CHECK(&s, server_startl(&s, "-m", "aio", "-S", "echo", "-F", "line", "--max-frame",
                            "100", "127.0.0.1", "0", NULL) == 0);
    int good = client_connect(&s);
    CHECK(&s, good >= 0);
    char back[16];
    CHECK(&s, send_all(good, "before\n", 7) == 0);
    CHECK(&s, recv_exact(good, back, 7, IO_MS) == 7 && memcmp(back, "before\n", 7) == 0);
    int bad = client_connect(&s);
    CHECK(&s, bad >= 0);
    char over[300];
    memset(over, 'x', sizeof over);
    CHECK(&s, send_all(bad, over, sizeof over) == 0);
    CHECK(&s, expect_eof(bad, IO_MS) == 1);
    client_close(bad);
    CHECK(&s, send_all(good, "after\n", 6) == 0);
    CHECK(&s, recv_exact(good, back, 6, IO_MS) == 6 && memcmp(back, "after\n", 6) == 0);
    client_close(good);
    CHECK(&s, server_wait_stderr(&s, "longer than 100", IO_MS));
    server_stop_clean(&s);
}

/* 300 sequential clients of bytes (Stevens' request): each gets exactly
 * what it asked for; then no descriptor is left behind. */
static void aio_many_short(void **state)
{
    (void)state;
    struct server s;
    CHECK(&s, server_startl(&s, "-m", "aio", "-S", "bytes", "127.0.0.1", "0", NULL) == 0);
    int fds0 = -1;
    static char buf[5000];
    for (int i = 0; i < 300; i++) {
        int fd = client_connect(&s);
        CHECK(&s, fd >= 0);
        CHECK(&s, send_all(fd, "4000\n", 5) == 0);
        CHECK(&s, recv_exact(fd, buf, 4000, IO_MS) == 4000);
        client_close(fd);
        if (i == 0) {
            sleep_ms(50);
            fds0 = count_fds(s.pid);
        }
    }
    long long deadline = now_ms() + 5000;
    while (count_fds(s.pid) > fds0 && now_ms() < deadline)
        sleep_ms(20);
    CHECK(&s, count_fds(s.pid) <= fds0);
    server_stop_clean(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(prefork_keeps_n, harness_teardown),
        cmocka_unit_test_teardown(prefork_counts, harness_teardown),
        cmocka_unit_test_teardown(prefork_replaces_killed, harness_teardown),
        cmocka_unit_test_teardown(prefork_max_conns_slot_freed, harness_teardown),
        cmocka_unit_test_teardown(prefork_restart_throttle, harness_teardown),
        cmocka_unit_test_teardown(prefork_no_zombies, harness_teardown),
        cmocka_unit_test_teardown(prefork_accept_lock, harness_teardown),
        cmocka_unit_test_teardown(prefork_sigterm, harness_teardown),
        cmocka_unit_test_teardown(prefork_stuck_reader, harness_teardown),
        cmocka_unit_test_teardown(prefork_refuses_shared_state, harness_teardown),
        cmocka_unit_test_teardown(pool_two_at_once, harness_teardown),
        cmocka_unit_test_teardown(pool_max_conns_counts_queue, harness_teardown),
        cmocka_unit_test_teardown(pool_sigterm_with_queue, harness_teardown),
        cmocka_unit_test_teardown(aio_max_conns, harness_teardown),
        cmocka_unit_test_teardown(aio_oversized, harness_teardown),
        cmocka_unit_test_teardown(aio_many_short, harness_teardown),
    };
    return cmocka_run_group_tests_name("test_prefork_pool", tests, NULL, harness_teardown);
}
