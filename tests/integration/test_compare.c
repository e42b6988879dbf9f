/*
 * ioplex compare end to end: two models, two scenarios, short runs. The
 * table, results.json (checked with jq) and the plots must be there and
 * agree; bad flags end with one line and exit 2. No timing assertions:
 * that every run produced a result, not how fast.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(two_models_end_to_end, harness_teardown),
        cmocka_unit_test_teardown(bad_flags, harness_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, harness_teardown);
}
