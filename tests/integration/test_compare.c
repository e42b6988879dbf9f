/*
 * ioplex compare end to end: two models, two scenarios, short runs. The
 * table, results.json (checked with jq) and the plots must be there and
 * agree; bad flags end with one line and exit 2. No timing assertions:
 * that every run produced a result, not how fast.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define RUN_TIMEOUT_MS 120000

static char out[65536], err[65536];

static int run(const char *const argv[])
{
    size_t n;
    return run_cmd(argv, NULL, 0, out, sizeof out, &n, err, sizeof err, RUN_TIMEOUT_MS);
}

static int file_nonempty(const char *dir, const char *name)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0 && st.st_size > 0;
}

/* jq -e FILTER FILE: exit 0 only if the filter's result is true. */
static int jq_true(const char *file, const char *filter)
{
    const char *argv[] = {"jq", "-e", filter, file, NULL};
    return run(argv) == 0;
}

static void two_models_end_to_end(void **state)
{
    (void)state;
    char dir[256];
    snprintf(dir, sizeof dir, "%s/cmp", harness_tmpdir());
    const char *argv[] = {ioplex_bin(), "compare", "--quick", "-m", "epoll,thread",
                          "--scenarios", "pp1,stevens", "-d", "0.3", "-o", dir, NULL};
    int rc = run(argv);
    if (rc != 0)
        fprintf(stderr, "compare exited %d:\n%s\n%s\n", rc, out, err);
    assert_int_equal(rc, 0);
    /* The table names both models under both scenarios. */
    assert_non_null(strstr(out, "### ping-pong, 64 B, 1 connection"));
    assert_non_null(strstr(out, "### Stevens: 1,000 connections"));
    assert_non_null(strstr(out, "| epoll | "));
    assert_non_null(strstr(out, "| thread | "));
    assert_null(strstr(out, "no result"));
    /* Progress went to stderr, one line per run: 2 models x 2 scenarios. */
    assert_non_null(strstr(err, "[4/4"));

    char json[512];
    snprintf(json, sizeof json, "%s/results.json", dir);
    assert_true(jq_true(json, ".tool == \"ioplex compare\" and .repeat == 1"));
    assert_true(jq_true(json, "[.scenarios[].name] == [\"pp1\",\"stevens\"]"));
    assert_true(jq_true(json, ".results | length == 4"));
    assert_true(jq_true(json, "all(.results[]; .runs_ok == 1 and .per_s > 0 and .errors == 0)"));
    /* Stevens' workload: exactly the 1,000 requests, each answered. */
    assert_true(jq_true(json, "all(.results[] | select(.scenario == \"stevens\"); .cpu_us_per_msg > 0)"));
    assert_true(jq_true(json, "all(.results[]; .peak_rss_mib > 0)"));
    assert_true(file_nonempty(dir, "results.md"));
    assert_true(file_nonempty(dir, "cpu_stevens.svg"));
    assert_true(file_nonempty(dir, "cpu_stevens.png"));
    assert_true(file_nonempty(dir, "rate_stevens.svg"));
}

static void bad_flags(void **state)
{
    (void)state;
    static const char *const cases[][6] = {
        {"compare", "--bogus", NULL},
        {"compare", "-m", "nosuchmodel", NULL},
        {"compare", "--scenarios", "nosuch", NULL},
        {"compare", "-r", "0", NULL},
        {"compare", "-d", "abc", NULL},
        {"compare", "extra-argument", NULL},
        {"compare", "--peers", "/nonexistent-dir", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *argv[8] = {ioplex_bin()};
        for (int k = 0; cases[i][k]; k++)
            argv[k + 1] = cases[i][k];
        int rc = run(argv);
        size_t lines = 0;
        for (const char *p = err; *p; p++)
            lines += *p == '\n';
        if (rc != 2 || lines != 1 || strncmp(err, "ioplex compare: ", 16) != 0)
            fprintf(stderr, "case %zu (%s %s): exit %d, stderr:\n%s", i, cases[i][0],
                    cases[i][1], rc, err);
        assert_int_equal(rc, 2);
        assert_int_equal(lines, 1);
        assert_int_equal(strncmp(err, "ioplex compare: ", 16), 0);
    }
}

/* ---- what compare hands the programs it runs ------------------------------ */

static pid_t cmp_pid; /* a compare run in the background, killed by teardown */

static int teardown(void **state)
{
    if (cmp_pid > 0) {
        kill(cmp_pid, SIGKILL);
        kill(-cmp_pid, SIGKILL);
        waitpid(cmp_pid, NULL, 0);
        cmp_pid = 0;
    }
    return harness_teardown(state);
}

/* 1 if pid's command line is `ioplex serve ...` (after its exec). */
static int is_serve(pid_t pid)
{
    char path[64], cmd[256];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    ssize_t n = proc_read_text(path, cmd, sizeof cmd);
    if (n <= 0)
        return 0;
    size_t first = strnlen(cmd, (size_t)n);
    return first + 1 < (size_t)n && strcmp(cmd + first + 1, "serve") == 0;
}

/* pid's descriptors from 3 up, "fd -> target" each on a line, into buf;
 * how many of them are /dev/null. -1 if /proc cannot tell. */
static int extra_fds(pid_t pid, char *buf, size_t cap)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int devnull = 0;
    buf[0] = '\0';
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.' || fd < 3)
            continue;
        char link[320], target[256];
        snprintf(link, sizeof link, "%s/%s", dir, e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n < 0)
            continue;
        target[n] = '\0';
        devnull += strcmp(target, "/dev/null") == 0;
        size_t used = strlen(buf);
        snprintf(buf + used, cap - used, "  %d -> %s\n", fd, target);
    }
    closedir(d);
    return devnull;
}

/* The server compare starts has only its own descriptors beyond 0-2: none
 * left over from compare (its /dev/null was one, in every server and
 * bench it ran). */
static void no_stray_descriptors(void **state)
{
    (void)state;
    char dir[256], log[300];
    snprintf(dir, sizeof dir, "%s/cmpfd", harness_tmpdir());
    snprintf(log, sizeof log, "%s/cmpfd.log", harness_tmpdir());
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int lfd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (lfd < 0)
            _exit(127);
        dup2(lfd, 1);
        dup2(lfd, 2);
        /* Nothing of ours (or of whatever started us) goes to compare. */
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
        signal(SIGPIPE, SIG_DFL);
        execl(ioplex_bin(), ioplex_bin(), "compare", "--quick", "-m", "epoll", "--scenarios",
              "pp1", "-d", "1", "-o", dir, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    cmp_pid = pid;

    /* Catch the server while it runs (the run lasts seconds). */
    char fds[4096] = "";
    int devnull = -1, status = -1;
    pid_t server = 0;
    long long deadline = now_ms() + 60000;
    while (now_ms() < deadline) {
        pid_t kids[16];
        int n = proc_children(pid, kids, 16, 0);
        for (int i = 0; i < n && devnull < 0; i++)
            if (is_serve(kids[i]) && (devnull = extra_fds(kids[i], fds, sizeof fds)) >= 0)
                server = kids[i];
        if (devnull >= 0)
            break;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            cmp_pid = 0;
            status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            break;
        }
        sleep_ms(5);
    }
    if (devnull < 0)
        fail_msg("no ioplex serve child of compare seen (compare ended %d; log %s)", status,
                 log);
    if (devnull != 0) {
        fprintf(stderr, "--- descriptors of the server compare started (pid %d), from 3:\n%s",
                (int)server, fds);
        fail_msg("%d stray /dev/null %s in the server compare started", devnull,
                 devnull == 1 ? "descriptor" : "descriptors");
    }
    /* Let the run end by itself: it must still succeed. */
    while (cmp_pid > 0 && now_ms() < deadline) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            cmp_pid = 0;
            status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        } else {
            sleep_ms(20);
        }
    }
    assert_int_equal(status, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(no_stray_descriptors, teardown),
        cmocka_unit_test_teardown(two_models_end_to_end, harness_teardown),
        cmocka_unit_test_teardown(bad_flags, harness_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, harness_teardown);
}
