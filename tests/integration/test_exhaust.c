/*
 * Out of processes and threads: the server runs as an unprivileged uid
 * under a real RLIMIT_NPROC (which root ignores), so fork() and
 * pthread_create() really fail with EAGAIN.
 *
 *   fork_nproc     -m fork, limit 3 (the server and two children): two
 *                  clients are served; while they stay, each new client
 *                  gets a clean end-of-stream, "fork: ...; closing new
 *                  connections" is printed once, the server's CPU stays
 *                  under CPU_RATIO_MAX of the wall time, and the two keep
 *                  being served; one leaves: new clients are served again,
 *                  with "fork: recovered"
 *   thread_nproc   the same with -m thread (the main thread and two):
 *                  "cannot start a thread", "thread: recovered"
 *   prefork_nproc  -m prefork:4, limit 3: two children start and serve,
 *                  "serving with 2 of 4 children" once, the parent retries
 *                  without spinning; two other processes of its uid end:
 *                  four children, "fork: recovered"; limit 1: no child,
 *                  the server exits 1, its reason in one line
 *   pool_nproc     -m pool:4, limit 2: one worker, "serving with fewer",
 *                  clients served; limit 1: no worker, the server exits 1,
 *                  its reason in one line (it used to print two)
 *   workers_nproc  -m epoll -w 4 (and uring), limit 2: a worker thread that
 *                  cannot start fails the server, exit 1 with the one line
 *                  "cannot start worker 3 of 4" (it used to stop and exit
 *                  0, unserved)
 *
 * How the server gets its uid and limit: the harness starts IOPLEX_BIN
 * (the environment variable); it is pointed at this test's own binary,
 * which, started with EXHAUST_WRAP=UID:NPROC in its environment, drops
 * to that uid and gid with that limit and executes the real ioplex. The
 * uid is one no one else uses (from UID_BASE + 16 x this process's PID,
 * a new one per server), so other tests running at the same time, or a
 * server before, do not count against the limit.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define EXHAUST_MS 1200
#define CPU_RATIO_MAX 0.30
#define IO_MS HARNESS_IO_TIMEOUT_MS
#define UID_BASE 3000000
#define MAX_PIDS 64

/* ---- the wrapper: this binary as the server's first step --------------------- */

static void wrap_exec(const char *spec, char **argv)
{
    unsigned long uid, nproc;
    if (sscanf(spec, "%lu:%lu", &uid, &nproc) != 2) {
        fprintf(stderr, "test_exhaust: bad EXHAUST_WRAP '%s'\n", spec);
        _exit(127);
    }
    const char *real = getenv("EXHAUST_REAL_BIN");
    if (!real || !*real)
        real = IOPLEX_BIN;
    struct rlimit r = {.rlim_cur = nproc, .rlim_max = nproc};
    if (setgroups(0, NULL) != 0 || setgid((gid_t)uid) != 0 ||
        setrlimit(RLIMIT_NPROC, &r) != 0 || setuid((uid_t)uid) != 0) {
        fprintf(stderr, "test_exhaust: cannot become uid %lu with RLIMIT_NPROC %lu: %s\n",
                uid, nproc, strerror(errno));
        _exit(127);
    }
    /* A change of uid clears the parent-death signal the harness set. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    unsetenv("EXHAUST_WRAP");
    argv[0] = (char *)real;
    execv(real, argv);
    fprintf(stderr, "test_exhaust: cannot run %s: %s\n", real, strerror(errno));
    _exit(127);
}

static char self_path[PATH_MAX];

/* Only root can start a server as another uid (and root ignores the
 * limit itself, hence the uid). */
static void need_root(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "skipped: running a server as another uid needs root\n");
        skip();
    }
}

/* A fresh uid per server: what is left of the last one (children still
 * exiting) does not count against this one. */
static unsigned long next_uid(void)
{
    static unsigned n;
    return (unsigned long)UID_BASE + (unsigned long)getpid() * 16 + n++ % 16;
}

/* Start `ioplex serve ARGS` as uid with RLIMIT_NPROC nproc. */
static int start_as(struct server *s, unsigned long uid, unsigned long nproc,
                    const char *const args[])
{
    char spec[64];
    snprintf(spec, sizeof spec, "%lu:%lu", uid, nproc);
    const char *was = getenv("IOPLEX_BIN");
    setenv("EXHAUST_REAL_BIN", was && *was ? was : IOPLEX_BIN, 1);
    setenv("IOPLEX_BIN", self_path, 1);
    setenv("EXHAUST_WRAP", spec, 1);
    int r = server_start(s, args);
    unsetenv("EXHAUST_WRAP");
    setenv("IOPLEX_BIN", getenv("EXHAUST_REAL_BIN"), 1);
    return r;
}

/* ---- hogs: processes of the server's uid that hold a slot of its limit ---- */

#define MAX_HOGS 4
static pid_t hogs[MAX_HOGS];
static int nhogs;

/* A process of `uid` that only waits: returned once it has become that
 * uid (it counts against the uid's RLIMIT_NPROC only from then on; a
 * server started before, on a loaded machine, could fork more children
 * than the test means to allow). -1 if it could not be made. */
static pid_t hog_start(unsigned long uid)
{
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (setgroups(0, NULL) != 0 || setgid((gid_t)uid) != 0 || setuid((uid_t)uid) != 0)
            _exit(127);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* cleared by the change of uid */
        if (write(ready[1], "u", 1) != 1)
            _exit(127);
        for (;;)
            pause();
    }
    close(ready[1]);
    char b;
    int became = pid > 0 && read(ready[0], &b, 1) == 1;
    close(ready[0]);
    if (pid > 0 && nhogs < MAX_HOGS)
        hogs[nhogs++] = pid;
    if (pid > 0 && !became) {
        errno = EPERM;
        return -1;
    }
    return pid;
}

/* Kill and reap them: a zombie still counts against the limit. */
static void hogs_end(void)
{
    while (nhogs > 0) {
        pid_t pid = hogs[--nhogs];
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}

static int teardown(void **state)
{
    hogs_end();
    return harness_teardown(state);
}

/* ---- clients ----------------------------------------------------------------- */

/* A new client that must be turned away: a clean end-of-stream. */
static void expect_turned_away(struct server *s)
{
    int c = client_connect(s);
    CHECK(s, c >= 0);
    CHECK(s, expect_eof(c, IO_MS) == 1);
    client_close(c);
}

/* New clients until one is served (a child or thread that ended frees
 * its slot a little after its client saw the end). 1 if one was. */
static int served_again(struct server *s)
{
    long long until = now_ms() + IO_MS;
    while (now_ms() < until) {
        int c = client_connect(s);
        CHECK(s, c >= 0);
        int ok = echo_line(c, "again\n", IO_MS);
        client_close(c);
        if (ok)
            return 1;
        sleep_ms(50);
    }
    return 0;
}

/* ---- fork and thread: one process or thread per client ---------------------------- */

static void per_client(const char *model, const char *failed, const char *recovered)
{
    need_root();
    struct server s;
    const char *const args[] = {"-m", model, "-S", "echo", "127.0.0.1", "0", NULL};
    /* The server and two children (threads): two clients at a time. */
    if (start_as(&s, next_uid(), 3, args) != 0)
        fail_msg("cannot start echo under %s as an unprivileged uid", model);
    int old[2];
    char line[64];
    for (int i = 0; i < 2; i++) {
        old[i] = client_connect(&s);
        CHECK(&s, old[i] >= 0);
        snprintf(line, sizeof line, "old %d\n", i);
        CHECK(&s, echo_line(old[i], line, IO_MS));
    }
    expect_turned_away(&s);
    CHECK(&s, server_wait_stderr(&s, failed, IO_MS));

    /* The pressure lasts: a new client every 100 ms, each turned away;
     * the old ones served; no spin. */
    long long c0 = proc_tree_ticks(s.pid, 0), w0 = now_ms();
    int turned = 0;
    while (now_ms() - w0 < EXHAUST_MS) {
        expect_turned_away(&s);
        turned++;
        for (int i = 0; i < 2; i++) {
            snprintf(line, sizeof line, "old %d, turn %d\n", i, turned);
            CHECK(&s, echo_line(old[i], line, IO_MS));
        }
        sleep_ms(100);
    }
    long long c1 = proc_tree_ticks(s.pid, 0);
    double wall = (double)(now_ms() - w0) / 1000.0;
    double cpu = (double)(c1 - c0) / (double)sysconf(_SC_CLK_TCK);
    fprintf(stderr, "%s_nproc: %d clients turned away; %.2f s CPU in %.2f s (%.0f%%)\n",
            model, turned + 1, cpu, wall, 100.0 * cpu / wall);
    CHECK(&s, c0 >= 0 && c1 >= c0);
    CHECK(&s, cpu / wall < CPU_RATIO_MAX);
    CHECK(&s, server_stderr_count(&s, failed) == 1);
    CHECK(&s, server_stderr_count(&s, recovered) == 0);

    /* One leaves: its slot serves new clients again. */
    client_close(old[0]);
    CHECK(&s, served_again(&s));
    CHECK(&s, server_wait_stderr(&s, recovered, IO_MS));
    CHECK(&s, echo_line(old[1], "old 1, after\n", IO_MS));
    client_close(old[1]);
    CHECK(&s, server_stderr_count(&s, failed) == 1);
    server_stop_clean(&s);
}

static void fork_nproc(void **state)
{
    (void)state;
    per_client("fork", "closing new connections until a process can be started",
               "fork: recovered");
}

static void thread_nproc(void **state)
{
    (void)state;
    per_client("thread", "cannot start a thread", "thread: recovered");
}

/* ---- a server that cannot start its processes or threads ---------------------------- */

/* Under a limit of `nproc` tasks the server cannot start what it needs: it
 * exits 1 and says why in one line (after its address line, if it printed
 * it before starting them). Under ASan, LeakSanitizer needs a task of its
 * own at exit, which a limit of one forbids: no leak check there. */
static void expect_cannot_start(const char *const *args, unsigned nproc, const char *why)
{
    struct server s;
    const char *asan = getenv("ASAN_OPTIONS");
    char *saved = asan ? strdup(asan) : NULL;
    if (nproc == 1) {
        char opts[512];
        snprintf(opts, sizeof opts, "%s%sdetect_leaks=0", asan ? asan : "",
                 asan && *asan ? ":" : "");
        setenv("ASAN_OPTIONS", opts, 1);
    }
    int started = start_as(&s, next_uid(), nproc, args);
    if (saved) {
        setenv("ASAN_OPTIONS", saved, 1);
        free(saved);
    } else {
        unsetenv("ASAN_OPTIONS");
    }
    if (started == 0) {
        int st = server_wait_exit(&s, IO_MS);
        server_pump(&s);
        if (st != 1)
            server_dump(&s);
        CHECK(&s, st == 1);
    } else {
        CHECK(&s, s.exited && s.status == 1);
    }
    CHECK(&s, server_stderr_count(&s, why) == 1);
    if (server_stderr_count(&s, "\n") != (started == 0 ? 2 : 1)) {
        server_dump(&s);
        fail_msg("expected one line saying \"%s\"", why);
    }
}

/* ---- prefork: a child that cannot be started --------------------------------------- */

static void prefork_nproc(void **state)
{
    (void)state;
    need_root();
    struct server s;
    const char *const args[] = {"-m", "prefork:4", "-S", "echo", "127.0.0.1", "0", NULL};
    /* The limit is 5: the parent, two children, and two hogs of the same
     * uid that end later (a raised limit would do, but prlimit(2) on a
     * process of another uid needs CAP_SYS_RESOURCE, which the test's
     * root may lack). */
    unsigned long uid = next_uid();
    for (int i = 0; i < 2; i++)
        if (hog_start(uid) < 0)
            fail_msg("fork: %s", strerror(errno));
    if (start_as(&s, uid, 5, args) != 0)
        fail_msg("cannot start echo under prefork as an unprivileged uid");
    CHECK(&s, server_wait_stderr(&s, "serving with 2 of 4 children", IO_MS));

    /* Two children serve; the parent retries without spinning. */
    int c[4];
    long long c0 = proc_tree_ticks(s.pid, 0), w0 = now_ms();
    for (int i = 0; i < 2; i++) {
        c[i] = client_connect(&s);
        CHECK(&s, c[i] >= 0);
    }
    int rounds = 0;
    while (now_ms() - w0 < EXHAUST_MS) {
        for (int i = 0; i < 2; i++)
            CHECK(&s, echo_line(c[i], "two at a time\n", IO_MS));
        rounds++;
        sleep_ms(100);
    }
    long long c1 = proc_tree_ticks(s.pid, 0);
    double wall = (double)(now_ms() - w0) / 1000.0;
    double cpu = (double)(c1 - c0) / (double)sysconf(_SC_CLK_TCK);
    pid_t kids[MAX_PIDS];
    int nkids = proc_children(s.pid, kids, MAX_PIDS, 0);
    fprintf(stderr, "prefork_nproc: %d children of 4; %.2f s CPU in %.2f s (%.0f%%)\n",
            nkids, cpu, wall, 100.0 * cpu / wall);
    CHECK(&s, nkids == 2);
    CHECK(&s, c0 >= 0 && c1 >= c0);
    CHECK(&s, cpu / wall < CPU_RATIO_MAX);
    CHECK(&s, server_stderr_count(&s, "fork: ") == 1);
    for (int i = 0; i < 2; i++)
        client_close(c[i]);

    /* The hogs end: the missing two start. */
    hogs_end();
    CHECK(&s, server_wait_stderr(&s, "fork: recovered", IO_MS));
    long long until = now_ms() + IO_MS;
    while ((nkids = proc_children(s.pid, kids, MAX_PIDS, 0)) < 4 && now_ms() < until)
        sleep_ms(20);
    CHECK(&s, nkids == 4);
    for (int i = 0; i < 4; i++) { /* four at a time now */
        c[i] = client_connect(&s);
        CHECK(&s, c[i] >= 0);
    }
    for (int i = 0; i < 4; i++)
        CHECK(&s, echo_line(c[i], "four at a time\n", IO_MS));
    for (int i = 0; i < 4; i++)
        client_close(c[i]);
    CHECK(&s, server_stderr_count(&s, "fork: ") == 2); /* the failure, the recovery */
    server_stop_clean(&s);

    /* No child at all: an error exit, the reason in one line. */
    expect_cannot_start(args, 1, "no child could be started");
}

/* ---- pool: its threads are made at start ----------------------------------------- */

static void pool_nproc(void **state)
{
    (void)state;
    need_root();
    struct server s;
    const char *const args[] = {"-m", "pool:4", "-S", "echo", "127.0.0.1", "0", NULL};
    /* The main thread and one worker. */
    if (start_as(&s, next_uid(), 2, args) != 0)
        fail_msg("cannot start echo under pool as an unprivileged uid");
    CHECK(&s, server_wait_stderr(&s, "serving with fewer", IO_MS));
    for (int i = 0; i < 3; i++) {
        int c = client_connect(&s);
        CHECK(&s, c >= 0);
        CHECK(&s, echo_line(c, "one worker\n", IO_MS));
        client_close(c);
    }
    CHECK(&s, server_stderr_count(&s, "cannot start thread") == 1);
    server_stop_clean(&s);

    /* No worker at all: an error exit, the reason in one line. */
    expect_cannot_start(args, 1, "cannot start thread 1 of 4");
}

static void workers_nproc(void **state)
{
    (void)state;
    need_root();
    static const char *const models[] = {"epoll", "uring"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        if (model_serves_datagrams(models[i]) < 0)
            continue; /* uring not compiled in */
        const char *const args[] = {"-m", models[i], "-w", "4", "-S", "echo",
                                    "127.0.0.1", "0", NULL};
        /* The main thread and one more: workers 0 and 1 run, 2 cannot. */
        expect_cannot_start(args, 2, "cannot start worker 3 of 4");
    }
}

int main(int argc, char **argv)
{
    const char *wrap = getenv("EXHAUST_WRAP");
    if (wrap && argc > 1 && strcmp(argv[1], "serve") == 0)
        wrap_exec(wrap, argv); /* does not return */
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (n <= 0) {
        fprintf(stderr, "test_exhaust: readlink /proc/self/exe: %s\n", strerror(errno));
        return 1;
    }
    self_path[n] = '\0';
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(fork_nproc, teardown),
        cmocka_unit_test_teardown(thread_nproc, teardown),
        cmocka_unit_test_teardown(prefork_nproc, teardown),
        cmocka_unit_test_teardown(pool_nproc, teardown),
        cmocka_unit_test_teardown(workers_nproc, teardown),
    };
    return cmocka_run_group_tests_name("test_exhaust", tests, NULL, teardown);
}
