/*
 * ioplex report: runs merged exactly, and every bad input refused in one
 * line with exit code 2.
 *
 *   - two bench runs against one echo server (different connections and
 *     pipelining), each with --json and --hlog: the report of their logs,
 *     of their JSON, and of one of each sums messages, bytes and
 *     connections exactly, names the busiest and quietest run, and its
 *     per-interval rows add up to the messages;
 *   - bench's JSON counts are exact integers past a million (they were
 *     printed with %.6g: 1000003 came out as 1e+06, which no sum survives);
 *   - an empty file, a text file, an HdrHistogram log not bench's, a log
 *     cut inside an interval line or before its result, cut JSON, runs of
 *     different modes or message sizes (accepted with --mix), no files;
 *     bench --start-at in the past or not a time.
 */
#define _GNU_SOURCE
#include "harness.h"
#include "tool.h"

#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define RUN_TIMEOUT_MS 60000

/* `ioplex ARGS...`, NULL-terminated. */
#define tool(r, ...) tool_runl(r, RUN_TIMEOUT_MS, __VA_ARGS__)

static void must_succeed(const char *what, const struct tool_result *r)
{
    if (r->code != 0) {
        tool_show(what, r);
        fail_msg("%s failed (%d)", what, r->code);
    }
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc(1 << 20);
    assert_non_null(buf);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* Two runs against s: a (1 connection) and b (3, 8 in flight). */
struct two {
    char a_json[512], b_json[512], a_log[512], b_log[512];
    double a_msgs, b_msgs, a_bytes, b_bytes;
};

static void bench_to(const struct server *s, const char *conns, const char *pipeline,
                     const char *x1, const char *x2, char *json_path, char *log_path, double *msgs,
                     double *bytes)
{
    char port[16];
    snprintf(port, sizeof port, "%u", s->port);
    assert_non_null(harness_tmp_path(json_path, 512, "run"));
    assert_non_null(harness_tmp_path(log_path, 512, "log"));
    static struct tool_result r;
    tool(&r, "bench", "--json", "-q", "-c", conns, "-P", pipeline, "-d", "1", "--warmup",
         "0.2", "--interval", "0.25", "--interval-file", "/dev/null", "--timeout", "10",
         "--hlog", log_path, x1 ? x1 : "-4", x2 ? x2 : "-4", "127.0.0.1", port, NULL);
    must_succeed("bench", &r);
    write_file(json_path, r.out, strlen(r.out));
    *msgs = tool_json_number(r.out, "messages");
    *bytes = tool_json_number(r.out, "bytes_sent");
    assert_true(*msgs > 0);
}

static void check_merged(const char *what, const char *out, const struct two *t,
                         const char *busiest, const char *quietest)
{
    double msgs = tool_json_number(out, "messages"), bytes = tool_json_number(out, "bytes_sent");
    double conns = tool_json_number(out, "connections");
    if (msgs != t->a_msgs + t->b_msgs || bytes != t->a_bytes + t->b_bytes || conns != 4)
        fail_msg("%s: messages %.0f (want %.0f), bytes %.0f (want %.0f), connections %.0f "
                 "(want 4): %.600s", what, msgs, t->a_msgs + t->b_msgs, bytes,
                 t->a_bytes + t->b_bytes, conns, out);
    const char *b = strstr(out, "\"busiest\":{\"file\":\"");
    const char *q = strstr(out, "\"quietest\":{\"file\":\"");
    assert_non_null(b);
    assert_non_null(q);
    if (strncmp(b + 19, busiest, strlen(busiest)) != 0 ||
        strncmp(q + 20, quietest, strlen(quietest)) != 0)
        fail_msg("%s: busiest should be %s, quietest %s: %.300s / %.300s", what, busiest,
                 quietest, b, q);
}

static void test_merge(void **state)
{
    (void)state;
    struct server s;
    assert_int_equal(server_startl(&s, "-m", "epoll", "-S", "echo", "127.0.0.1", "0", NULL), 0);
    struct two t;
    bench_to(&s, "1", "1", NULL, NULL, t.a_json, t.a_log, &t.a_msgs, &t.a_bytes);
    bench_to(&s, "3", "8", NULL, NULL, t.b_json, t.b_log, &t.b_msgs, &t.b_bytes);
    const char *busiest = t.a_msgs > t.b_msgs ? t.a_log : t.b_log;
    const char *quietest = t.a_msgs > t.b_msgs ? t.b_log : t.a_log;
    static struct tool_result r;

    tool(&r, "report", "--json", t.a_log, t.b_log, NULL);
    must_succeed("report of two logs", &r);
    check_merged("two logs", r.out, &t, busiest, quietest);
    /* The rows across the runs add up to the messages. */
    double rows = 0;
    for (const char *p = strstr(r.out, "\"intervals\":["); p && (p = strstr(p, "\"t_s\":"));
         p++)
        rows += tool_json_number(p, "messages");
    assert_true(rows == t.a_msgs + t.b_msgs);

    tool(&r, "report", "--json", t.a_json, t.b_json, NULL);
    must_succeed("report of two JSON results", &r);
    check_merged("two JSON", r.out, &t, t.a_msgs > t.b_msgs ? t.a_json : t.b_json,
                 t.a_msgs > t.b_msgs ? t.b_json : t.a_json);
    char p99_json[64];
    snprintf(p99_json, sizeof p99_json, "%g", tool_json_number(r.out, "p99"));

    tool(&r, "report", "--json", t.a_json, t.b_log, NULL);
    must_succeed("report of a JSON and a log", &r);
    check_merged("JSON and log", r.out, &t, t.a_msgs > t.b_msgs ? t.a_json : t.b_log,
                 t.a_msgs > t.b_msgs ? t.b_log : t.a_json);
    /* The same histograms, whichever file carried them. */
    char p99_mixed[64];
    snprintf(p99_mixed, sizeof p99_mixed, "%g", tool_json_number(r.out, "p99"));
    assert_string_equal(p99_json, p99_mixed);

    /* The table: one line per run, and the sum. */
    tool(&r, "report", t.a_log, t.b_log, NULL);
    must_succeed("report (table)", &r);
    assert_non_null(strstr(r.out, "busiest"));
    assert_non_null(strstr(r.out, "quietest"));
    assert_non_null(strstr(r.out, "per interval"));
    char answered[64];
    snprintf(answered, sizeof answered, "%.0f answered", t.a_msgs + t.b_msgs);
    if (!strstr(r.out, answered))
        fail_msg("the table does not say '%s': %s", answered, r.out);
    server_stop_clean(&s);
}

static void test_exact_counts(void **state)
{
    (void)state;
    struct server s;
    assert_int_equal(server_startl(&s, "-m", "epoll", "-S", "echo", "127.0.0.1", "0", NULL), 0);
    char port[16];
    snprintf(port, sizeof port, "%u", s.port);
    static struct tool_result r;
    tool(&r, "bench", "--json", "-q", "-n", "1000003", "-c", "4", "-P", "64", "-s", "1",
         "--warmup", "0", "--timeout", "10", "127.0.0.1", port, NULL);
    must_succeed("bench -n 1000003", &r);
    if (!strstr(r.out, "\"messages\":1000003,"))
        fail_msg("bench's JSON does not say \"messages\":1000003: %.400s", r.out);
    server_stop_clean(&s);
}

static void expect_refused(const char *what, const struct tool_result *r, const char *needle)
{
    tool_expect_error(what, r, 2, "ioplex ", needle, NULL);
}

static void test_bad_input(void **state)
{
    (void)state;
    struct server s;
    assert_int_equal(server_startl(&s, "-m", "epoll", "-S", "echo", "127.0.0.1", "0", NULL), 0);
    struct two t;
    bench_to(&s, "1", "1", NULL, NULL, t.a_json, t.a_log, &t.a_msgs, &t.a_bytes);
    static struct tool_result r;
    char path[512];
    char *log = slurp(t.a_log);

    assert_non_null(harness_tmp_path(path, sizeof path, "empty"));
    write_file(path, "", 0);
    tool(&r, "report", path, NULL);
    expect_refused("an empty file", &r, "empty");

    assert_non_null(harness_tmp_path(path, sizeof path, "text"));
    write_file(path, "hello, world\n", 13);
    tool(&r, "report", path, NULL);
    expect_refused("a text file", &r, "neither");

    /* Cut in the middle of the second interval's histogram. */
    char *second = strstr(log, "\n0.250,");
    assert_non_null(second);
    assert_non_null(harness_tmp_path(path, sizeof path, "cut"));
    write_file(path, log, (size_t)(second - log) + 40);
    tool(&r, "report", path, NULL);
    expect_refused("a log cut inside an interval", &r, "truncated");

    /* Cut before the result line. */
    char *result = strstr(log, "\n#ioplex-result ");
    assert_non_null(result);
    write_file(path, log, (size_t)(result - log) + 1);
    tool(&r, "report", path, NULL);
    expect_refused("a log cut before its result", &r, "truncated");

    /* An HdrHistogram log of another tool: bench's own lines taken out. */
    assert_non_null(harness_tmp_path(path, sizeof path, "foreign"));
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (char *line = log; *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) + 1 : strlen(line);
        if (strncmp(line, "#ioplex", 7) != 0 && strncmp(line, "#[ioplex", 8) != 0)
            fwrite(line, 1, n, f);
        line += n;
    }
    fclose(f);
    tool(&r, "report", path, NULL);
    expect_refused("a foreign HdrHistogram log", &r, "not written by ioplex bench");

    char *json = slurp(t.a_json);
    assert_non_null(harness_tmp_path(path, sizeof path, "cutjson"));
    write_file(path, json, strlen(json) / 2);
    tool(&r, "report", path, NULL);
    expect_refused("cut JSON", &r, "truncated");
    free(json);

    /* Another mode, another size: refused, unless --mix. */
    char rate_json[512], rate_log[512], big_json[512], big_log[512];
    double m, b;
    bench_to(&s, "1", "1", "-mrate", "-R2000", rate_json, rate_log, &m, &b);
    (void)m;
    (void)b;
    tool(&r, "report", t.a_json, rate_json, NULL);
    expect_refused("different modes", &r, "mode rate, not pingpong");
    tool(&r, "report", "--mix", t.a_json, rate_json, NULL);
    must_succeed("report --mix", &r);
    bench_to(&s, "1", "1", "-s128", NULL, big_json, big_log, &m, &b);
    tool(&r, "report", t.a_log, big_log, NULL);
    expect_refused("different sizes", &r, "message size");

    tool(&r, "report", NULL);
    expect_refused("no files", &r, "no files");

    /* A start already past, or not a time. */
    char port[16], past[32];
    snprintf(port, sizeof port, "%u", s.port);
    snprintf(past, sizeof past, "%lld", (long long)time(NULL) - 5);
    tool(&r, "bench", "--start-at", past, "127.0.0.1", port, NULL);
    expect_refused("--start-at in the past", &r, "in the past");
    tool(&r, "bench", "--start-at", "2020-01-01T00:00:00Z", "127.0.0.1", port, NULL);
    expect_refused("--start-at in 2020", &r, "in the past");
    tool(&r, "bench", "--start-at", "tomorrow", "127.0.0.1", port, NULL);
    expect_refused("--start-at tomorrow", &r, "RFC 3339");
    free(log);
    server_stop_clean(&s);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_merge, harness_teardown),
        cmocka_unit_test_teardown(test_exact_counts, harness_teardown),
        cmocka_unit_test_teardown(test_bad_input, harness_teardown),
    };
    return cmocka_run_group_tests_name("report", tests, NULL, NULL);
}
