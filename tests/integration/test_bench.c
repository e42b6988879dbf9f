/*
 * ioplex bench end to end: against good servers (ioplex serve's echo,
 * discard and bytes) the counts are exact and there are no errors; against
 * a deliberately misbehaving server (a child of this test that closes
 * early, sends wrong bytes, or stalls) each failure is counted under the
 * right kind and explained in words; bad flags and unreachable targets end
 * with one line and the documented exit code; --json is checked with jq,
 * --hgrm and --interval for their layout.
 *
 * No timing assertions (these machines are noisy): counts, kinds, formats,
 * and that every run ends within a generous bound.
 */
#define _GNU_SOURCE
#include "harness.h"
#include "tool.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define RUN_TIMEOUT_MS 60000 /* a run that should take a second or two */
/* Runs that must see no error wait long for answers: a loaded machine can
 * stall a process for a second, and that is not the server's fault. */
#define SLACK "--timeout", "10"

/* ---- running ioplex bench and jq ----------------------------------------- */


/* `ioplex bench ARGS...`; the arguments end with NULL. */
#define bench(r, ...) tool_runl(r, RUN_TIMEOUT_MS, "bench", __VA_ARGS__)

static int have_jq(void)
{
    const char *argv[] = {"jq", "--version", NULL};
    char out[256];
    return run_cmd(argv, NULL, 0, out, sizeof out, NULL, NULL, 0, 10000) == 0;
}

/* jq -r FILTER over json; the output without its last newline. */
static void jq(const char *json, const char *filter, char *out, size_t cap)
{
    const char *argv[] = {"jq", "-r", filter, NULL};
    char err[1024];
    int code = run_cmd(argv, json, strlen(json), out, cap, NULL, err, sizeof err, 10000);
    if (code != 0)
        fail_msg("jq '%s' failed (%d): %s\ninput: %s", filter, code, err, json);
    size_t len = strlen(out);
    while (len > 0 && out[len - 1] == '\n')
        out[--len] = '\0';
}

static int jq_true(const char *json, const char *filter)
{
    char out[64];
    jq(json, filter, out, sizeof out);
    return strcmp(out, "true") == 0;
}

static void expect_jq(const char *json, const char *filter)
{
    if (!jq_true(json, filter))
        fail_msg("expected jq '%s' to be true on: %s", filter, json);
}

/*
 * Every NULL-terminated filter is true of json. One jq run for them all
 * (jq takes a while to start); a failure names the filters that were not.
 */
static void expect_all(const char *json, ...)
{
    const char *filters[32];
    size_t n = 0;
    va_list ap;
    va_start(ap, json);
    const char *f;
    while ((f = va_arg(ap, const char *)) != NULL) {
        assert_true(n < sizeof filters / sizeof filters[0]);
        filters[n++] = f;
    }
    va_end(ap);
    char prog[8192] = "[";
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(prog);
        snprintf(prog + len, sizeof prog - len, "%s((%s) == true)", i ? "," : "", filters[i]);
    }
    size_t len = strlen(prog);
    snprintf(prog + len, sizeof prog - len,
             "] | to_entries | map(select(.value | not) | .key) | map(tostring) | join(\" \")");
    char out[256];
    jq(json, prog, out, sizeof out);
    if (out[0] == '\0')
        return;
    fprintf(stderr, "--- JSON: %s\n", json);
    char *save = NULL;
    for (char *tok = strtok_r(out, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
        fprintf(stderr, "--- not true: %s\n", filters[atoi(tok)]);
    fail_msg("%s", "some filters were not true (listed above)");
}

#define REQUIRE_JQ()                                                                \
    do {                                                                            \
        if (!have_jq()) {                                                           \
            fprintf(stderr, "jq is not installed (scripts/setup.sh installs it)\n"); \
            skip();                                                                 \
        }                                                                           \
    } while (0)

/* Exit `code` and exactly one stderr line, "ioplex bench: ..." naming each
 * NULL-terminated needle. */
#define expect_error(what, r, code, ...) \
    tool_expect_error(what, r, code, "ioplex bench: ", __VA_ARGS__)

/* The run succeeded and printed one JSON object on stdout. */
static void expect_json_ok(const char *what, const struct tool_result *r)
{
    if (r->code != 0 || !jq_true(r->out, "type == \"object\"")) {
        tool_show(what, r);
        fail_msg("%s: expected exit 0 and a JSON object", what);
    }
}

/* ---- a misbehaving server -------------------------------------------------- */

/*
 * A child process with a small blocking accept loop on 127.0.0.1, one
 * client at a time (the bench runs with -c 1 against it). Each behaviour
 * is one way a real server fails; the bench must name it.
 */
enum misbehaviour {
    CLOSES_EARLY, /* reads a message, sends half of it back, closes */
    WRONG_BYTES,  /* answers every message with as many 'x' bytes */
    STALLS,       /* accepts, never reads, never answers */
};

static pid_t bad_pid = -1;

/* Read exactly len bytes (bounded); the count read (< len at EOF). */
static size_t read_msg(int fd, char *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5000) <= 0)
            break;
        ssize_t n = read(fd, buf + got, len - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return got;
}

static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n <= 0)
            return;
        buf += n;
        len -= (size_t)n;
    }
}

static void misbehave(int lfd, enum misbehaviour how, size_t msg)
{
    char buf[4096];
    int held[32];
    size_t n_held = 0;
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            continue;
        switch (how) {
        case STALLS:
            /* Keep it open and silent; the oldest goes when full. */
            if (n_held == sizeof held / sizeof held[0]) {
                close(held[0]);
                memmove(held, held + 1, (n_held - 1) * sizeof held[0]);
                n_held--;
            }
            held[n_held++] = fd;
            continue;
        case CLOSES_EARLY:
            if (read_msg(fd, buf, msg) == msg)
                write_all(fd, buf, msg / 2);
            break;
        case WRONG_BYTES:
            memset(buf, 'x', msg);
            while (read_msg(fd, buf + msg, msg) == msg)
                write_all(fd, buf, msg);
            break;
        }
        close(fd);
    }
}

/* Start it; the port it listens on. */
static unsigned bad_server_start(enum misbehaviour how, size_t msg)
{
    assert_true(msg * 2 <= 4096);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(listen(lfd, 64), 0);
    socklen_t len = sizeof sin;
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        alarm(120);
        signal(SIGPIPE, SIG_IGN);
        misbehave(lfd, how, msg);
        _exit(0);
    }
    close(lfd);
    bad_pid = pid;
    return ntohs(sin.sin_port);
}

static void bad_server_stop(void)
{
    if (bad_pid > 0) {
        kill(bad_pid, SIGKILL);
        waitpid(bad_pid, NULL, 0);
        bad_pid = -1;
    }
}

static int teardown(void **state)
{
    bad_server_stop();
    return harness_teardown(state);
}

/* ---- helpers over a server ------------------------------------------------- */

static void port_str(char *buf, size_t cap, unsigned port)
{
    snprintf(buf, cap, "%u", port);
}

/* The latency object has every field, in order, all in milliseconds. */
#define LATENCY_OK                                                                  \
    ".latency_ms | [.min,.mean,.stddev,.p50,.p90,.p99,.p99_9,.max] "                \
    "| all(type == \"number\")",                                                     \
    ".latency_ms | .min <= .p50 and .p50 <= .p90 and .p90 <= .p99 and .p99 <= .p99_9 " \
    "and .p99_9 <= .max and .min > 0"

/* ---- the tests ---------------------------------------------------------------- */

/* A good echo server: exact counts, no errors, every field as documented. */
static void test_pingpong_counts(void **state)
{
    (void)state;
    REQUIRE_JQ();
    struct server s;
    assert_int_equal(server_startl(&s, "-m", "thread", "-S", "echo", "127.0.0.1", "0", NULL), 0);
    struct tool_result r;
    bench(&r, "-c", "4", "-P", "2", "-s", "16-1024", "-n", "2000", "--warmup", "0", SLACK,
          "--json", s.address, NULL);
    expect_json_ok("pingpong -n 2000", &r);
    expect_all(r.out, ".messages == 2000", ".messages_failed == 0", ".errors.total == 0",
               ".connections_opened == 4", ".mode == \"pingpong\"", ".transport == \"tcp\"",
               ".threads == 1", ".connections == 4", ".pipeline == 2", ".framing == \"raw\"",
               ".size_min == 16", ".size_max == 1024", ".stopped_by == \"count\"",
               ".bytes_sent == .bytes_received", ".bytes_sent >= 2000 * 16",
               ".bytes_sent <= 2000 * 1024", ".rate == null", ".messages_per_s > 0",
               ".measured_s > 0", ".explanations == []", ".in_flight_at_end == 0",
               LATENCY_OK, NULL);

    /* Two threads, each its own loop: the same total. */
    bench(&r, "-c", "6", "-t", "2", "-s", "100", "-n", "3000", "--warmup", "0", SLACK, "--json",
          s.address, NULL);
    expect_json_ok("pingpong -t 2", &r);
    expect_all(r.out, ".messages == 3000", ".errors.total == 0", ".threads == 2",
               ".bytes_received == 300000", NULL);
    server_stop(&s, 0);
}

/* The summary for people: rates, latency with units, errors in words. */
static void test_pingpong_human(void **state)
{
    (void)state;
    struct server s;
    assert_int_equal(server_startl(&s, "-m", "thread", "-S", "echo", "127.0.0.1", "0", NULL), 0);
    struct tool_result r;
    bench(&r, "-c", "2", "-n", "500", "--warmup", "0", SLACK, s.address, NULL);
    if (r.code != 0 || !strstr(r.out, "500 answered") || !strstr(r.out, "p99.9 ") ||
        !strstr(r.out, "MB/s") || !strstr(r.out, "errors       none") ||
        !(strstr(r.out, " us") || strstr(r.out, " ms"))) {
        tool_show("human summary", &r);
        fail_msg("the summary lacks counts, units or the errors line");
    }
    assert_string_equal(r.err, ""); /* no progress line off a terminal */
    server_stop(&s, 0);
}

/* Line and len32 framing against an echo that frames the same way. */
static void test_framing(void **state)
{
    (void)state;
    REQUIRE_JQ();
    static const char *const kinds[] = {"line", "len32"};
    for (size_t i = 0; i < 2; i++) {
        struct server s;
        assert_int_equal(server_startl(&s, "-m", "thread", "-S", "echo", "-F", kinds[i],
                                       "127.0.0.1", "0", NULL), 0);
        struct tool_result r;
        bench(&r, "--framing", kinds[i], "-c", "3", "-P", "3", "-s", "1-2000", "-n",
              "1500", "--warmup", "0", SLACK, "--json", s.address, NULL);
        expect_json_ok(kinds[i], &r);
        char framing[64];
        snprintf(framing, sizeof framing, ".framing == \"%s\"", kinds[i]);
        expect_all(r.out, ".messages == 1500", ".errors.total == 0", framing, NULL);
        server_stop(&s, 0);
    }
}

/* Datagrams: one per message; whatever is lost times out, nothing hangs. */
static void test_udp(void **state)
{
    (void)state;
    REQUIRE_JQ();
    struct server s;
    assert_int_equal(server_startl(&s, "-m", "iterative", "-u", "-S", "echo", "127.0.0.1",
                                   "0", NULL), 0);
    struct tool_result r;
    bench(&r, "-u", "-c", "2", "-P", "2", "-s", "8-1400", "-n", "600", "--warmup", "0",
          "--timeout", "0.5", "--json", s.address, NULL);
    expect_json_ok("udp", &r);
    /* Loss is possible (UDP) and counts as timed out: the counts add up. */
    expect_all(r.out, ".transport == \"udp\"", ".messages + .messages_failed == 600",
               ".messages > 0", ".errors.timed_out == .messages_failed",
               ".errors.total == .errors.timed_out", NULL);
    server_stop(&s, 0);

    /* Nobody at the port: ICMP says refused; exit 4, in one line. */
    char port[16];
    port_str(port, sizeof port, harness_free_port(SOCK_DGRAM));
    bench(&r, "-u", "-n", "3", "--warmup", "0", "127.0.0.1", port, NULL);
    expect_error("udp refused", &r, 4, "refused", NULL);
}

static void test_unix(void **state)
{
    (void)state;
    REQUIRE_JQ();
    struct server s;
    char path[108];
    assert_non_null(harness_tmp_path(path, sizeof path, "bench"));
    assert_int_equal(server_startl(&s, "-m", "thread", "-S", "echo", "-U", path, NULL), 0);
    struct tool_result r;
    bench(&r, "-U", path, "-c", "2", "-P", "4", "-n", "1000", "--warmup", "0", SLACK, "--json",
          NULL);
    expect_json_ok("unix", &r);
    expect_all(r.out, ".messages == 1000", ".errors.total == 0", ".transport == \"unix\"",
               NULL);
    server_stop(&s, 0);
}

/* Bulk one way: MB/s sent, an echo checked, no latency. */
static void test_stream_mode(void **state)
{
    (void)state;
    REQUIRE_JQ();
    struct server s;
    assert_int_equal(server_startl(&s, "-m", "thread", "-S", "echo", "127.0.0.1", "0", NULL), 0);
    struct tool_result r;
    bench(&r, "-m", "stream", "-c", "2", "-d", "0.5", "--warmup", "0", SLACK, "--json", s.address,
          NULL);
    expect_json_ok("stream to echo", &r);
    expect_all(r.out, ".latency_ms == null", ".messages == null", ".messages_per_s == null",
               ".bytes_sent > 0", ".bytes_received > 0", ".mb_per_s_sent > 0",
               ".errors.total == 0", NULL);
    server_stop(&s, 0);

    assert_int_equal(server_startl(&s, "-m", "thread", "-S", "discard", "127.0.0.1", "0", NULL), 0);
    bench(&r, "-m", "stream", "-s", "4k", "-d", "0.5", "--warmup", "0", SLACK, "--json",
          s.address, NULL);
    expect_json_ok("stream to discard", &r);
    expect_all(r.out, ".bytes_sent > 0", ".bytes_received == 0", ".mb_per_s_received == 0",
               ".errors.total == 0", ".size_max == 4096", NULL);
    server_stop(&s, 0);
}

/* Open loop: exactly the scheduled number of messages, answered or not. */
static void test_rate_mode(void **state)
{
    (void)state;
    REQUIRE_JQ();
    struct server s;
    assert_int_equal(server_startl(&s, "-m", "thread", "-S", "echo", "127.0.0.1", "0", NULL), 0);
    struct tool_result r;
    bench(&r, "-m", "rate", "-R", "200", "-c", "2", "-d", "1", "--warmup", "0", "--json",
          s.address, NULL);
    expect_json_ok("rate", &r);
    expect_all(r.out, ".messages + .messages_failed == 200", ".messages > 0", ".rate == 200",
               ".mode == \"rate\"", ".measured_s == 1", NULL);
    server_stop(&s, 0);
}

/* Stevens' client: a connection per request, N bytes each. */
static void test_connect_mode(void **state)
{
    (void)state;
    REQUIRE_JQ();
    struct server s;
    assert_int_equal(server_startl(&s, "-m", "thread", "-S", "bytes", "127.0.0.1", "0", NULL), 0);
    struct tool_result r;
    bench(&r, "-m", "connect", "-c", "4", "-s", "1000", "-n", "300", "--warmup", "0", SLACK,
          "--json", s.address, NULL);
    expect_json_ok("connect", &r);
    expect_all(r.out, ".messages == 300", ".messages_failed == 0", ".errors.total == 0",
               ".connections_opened == 300", ".bytes_received == 300000",
               ".bytes_sent == 300 * 5" /* "1000\n" */, ".pipeline == null", LATENCY_OK,
               NULL);
    server_stop(&s, 0);
}

/* --hgrm: HdrHistogram's percentile table and its footer. */
static void test_hgrm(void **state)
{
    (void)state;
    REQUIRE_JQ();
    struct server s;
    assert_int_equal(server_startl(&s, "-m", "thread", "-S", "echo", "127.0.0.1", "0", NULL), 0);
    char path[108];
    assert_non_null(harness_tmp_path(path, sizeof path, "latency"));
    struct tool_result r;
    bench(&r, "-n", "1000", "--warmup", "0", "--json", "--hgrm", path, s.address, NULL);
    expect_json_ok("hgrm", &r);
    server_stop(&s, 0);

    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[256], a[32], b[32], c[32], d[32];
    assert_non_null(fgets(line, sizeof line, f));
    assert_int_equal(sscanf(line, "%31s %31s %31s %31s", a, b, c, d), 4);
    assert_string_equal(a, "Value");
    assert_string_equal(b, "Percentile");
    assert_string_equal(c, "TotalCount");
    assert_string_equal(d, "1/(1-Percentile)");
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "\n");
    double value, pct, inv, last_value = 0, last_pct = -1;
    unsigned long long count, last_count = 0;
    int rows = 0, footer = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') {
            footer++;
            const char *want = footer == 1 ? "#[Mean    = " : footer == 2 ? "#[Max     = "
                                                                           : "#[Buckets = ";
            assert_memory_equal(line, want, strlen(want));
            if (footer == 2) {
                double max;
                unsigned long long total;
                assert_int_equal(sscanf(line, "#[Max = %lf, Total count = %llu]", &max,
                                        &total), 2);
                assert_int_equal(total, 1000);
                assert_true(max >= last_value - 1e-9 && max > 0);
            }
            continue;
        }
        assert_int_equal(footer, 0); /* the table comes before the footer */
        int n = sscanf(line, "%lf %lf %llu %lf", &value, &pct, &count, &inv);
        assert_true(n == 4 || (n == 3 && pct == 1.0)); /* the 100% line has no 4th */
        assert_true(value >= last_value && pct >= last_pct && count >= last_count);
        assert_true(pct >= 0 && pct <= 1.0);
        last_value = value;
        last_pct = pct;
        last_count = count;
        rows++;
    }
    fclose(f);
    assert_int_equal(footer, 3);
    assert_true(rows > 10);
    assert_true(last_pct == 1.0);
    assert_int_equal(last_count, 1000);
}

/* --interval: JSON Lines whose messages add up to the total. */
static void test_intervals(void **state)
{
    (void)state;
    REQUIRE_JQ();
    struct server s;
    assert_int_equal(server_startl(&s, "-m", "thread", "-S", "echo", "127.0.0.1", "0", NULL), 0);
    char path[108];
    assert_non_null(harness_tmp_path(path, sizeof path, "intervals"));
    struct tool_result r;
    bench(&r, "-c", "2", "-d", "1", "--warmup", "0.2", "--interval", "0.25",
          "--interval-file", path, "--json", s.address, NULL);
    expect_json_ok("intervals", &r);
    server_stop(&s, 0);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char lines[TOOL_OUT_CAP];
    size_t len = fread(lines, 1, sizeof lines - 1, f);
    fclose(f);
    lines[len] = '\0';
    /* Four of 0.25 s, give or take the last; fewer only if this process
     * was starved past the end (the rest then goes into the last line). */
    int n = count_lines(lines);
    assert_true(n >= 1 && n <= 6);
    expect_jq(lines, "[., inputs] | (.[:-1] | all(.t_s * 4 | . == floor)) and "
                     "(map(.t_s) | . == sort) and (.[-1].t_s == 1)");
    /* Each line alone is an object (jq fails on a bad line), and their
     * messages add up to the run's. */
    char total[64], filter[128];
    jq(r.out, ".messages", total, sizeof total);
    snprintf(filter, sizeof filter, "[., inputs] | map(.messages) | add == %s", total);
    char count[16];
    snprintf(count, sizeof count, "%d", n);
    char lines_filter[64];
    snprintf(lines_filter, sizeof lines_filter, "[., inputs] | length == %s", count);
    /* (the filters read all the lines; one jq run each) */
    expect_jq(lines, lines_filter);
    /* An interval without an answer (a loaded machine can stall that long)
     * has no latency: null, not zeros. */
    expect_jq(lines, "[., inputs] | all(type == \"object\" and (.t_s | type) == \"number\" "
                     "and ((.latency_ms | type) == \"object\") == (.messages > 0))");
    expect_jq(lines, filter);
    /* Intervals go to stderr without --interval-file. */
    assert_int_equal(server_startl(&s, "-m", "thread", "-S", "echo", "127.0.0.1", "0", NULL), 0);
    bench(&r, "-d", "0.5", "--warmup", "0", "--interval", "0.25", "--json", s.address, NULL);
    expect_json_ok("intervals on stderr", &r);
    expect_jq(r.err, "[., inputs] | length >= 2 and all(type == \"object\" and "
                     "has(\"messages_per_s\"))");
    server_stop(&s, 0);
}

/* ---- errors, counted and explained ------------------------------------------ */

/* Run against a misbehaving server: -c 1 -n 3, every message fails. A
 * short --timeout only where the timeout is what is tested; elsewhere a
 * stall of the machine must not turn into one. */
static void against_bad(struct tool_result *r, enum misbehaviour how, int json)
{
    char port[16];
    port_str(port, sizeof port, bad_server_start(how, 64));
    const char *timeout = how == STALLS ? "0.3" : "10";
    if (json)
        bench(r, "-c", "1", "-n", "3", "-s", "64", "--warmup", "0", "--timeout", timeout,
              "--json", "127.0.0.1", port, NULL);
    else
        bench(r, "-c", "1", "-n", "3", "-s", "64", "--warmup", "0", "--timeout", timeout,
              "127.0.0.1", port, NULL);
    bad_server_stop();
    assert_true(r->ms < 30000);
}

static void expect_classified(const char *what, enum misbehaviour how, const char *key,
                              int code, const char *words)
{
    REQUIRE_JQ();
    struct tool_result r;
    against_bad(&r, how, 1);
    if (r.code != code || !jq_true(r.out, "type == \"object\"")) {
        tool_show(what, &r);
        fail_msg("%s: expected exit %d and a JSON report", what, code);
    }
    char count[64], words_filter[256];
    snprintf(count, sizeof count, ".errors.%s == 3", key);
    snprintf(words_filter, sizeof words_filter, ".explanations[0] | contains(\"%s\")", words);
    expect_all(r.out, count, ".errors.total == 3", ".messages == 0",
               ".messages_failed == 3", ".latency_ms == null", ".explanations | length == 1",
               words_filter, NULL);
    /* The same run for people: the sentence in the summary, and one line
     * on stderr saying nothing got through. */
    against_bad(&r, how, 0);
    if (!strstr(r.out, words) || !strstr(r.out, "3 in all")) {
        tool_show(what, &r);
        fail_msg("%s: the summary does not explain the errors", what);
    }
    expect_error(what, &r, code, "no message got through", words, NULL);
}

static void test_server_closes_early(void **state)
{
    (void)state;
    expect_classified("closes early", CLOSES_EARLY, "short_read", 1,
                      "before the full answer arrived (short read)");
}

static void test_server_sends_wrong_bytes(void **state)
{
    (void)state;
    expect_classified("wrong bytes", WRONG_BYTES, "mismatch", 1, "wrong bytes (mismatch)");
}

static void test_server_stalls(void **state)
{
    (void)state;
    expect_classified("stalls", STALLS, "timed_out", 5, "no answer within 300 ms");
}

/* A stalled server cannot stretch a timed run past its hard stop. */
static void test_stall_bounded(void **state)
{
    (void)state;
    char port[16];
    port_str(port, sizeof port, bad_server_start(STALLS, 64));
    struct tool_result r;
    bench(&r, "-c", "3", "-d", "1", "--warmup", "0.5", "--timeout", "5", "127.0.0.1", port,
          NULL);
    bad_server_stop();
    assert_true(r.ms < 15000);
    /* Nothing answered within the run: exit non-zero, one line. */
    assert_int_not_equal(r.code, 0);
}

/* ---- bad flags and unreachable targets ---------------------------------------- */

static void test_usage_errors(void **state)
{
    (void)state;
    static const struct { const char *args[6]; const char *says; } cases[] = {
        {{"-c", "0", "127.0.0.1", "1"}, "-c"},
        {{"-m", "nosuch", "127.0.0.1", "1"}, "unknown mode"},
        {{"-m", "rate", "127.0.0.1", "1"}, "-R"},
        {{"-R", "10", "127.0.0.1", "1"}, "-R applies"},
        {{"-s", "9-3", "127.0.0.1", "1"}, "-s"},
        {{"-s", "0", "127.0.0.1", "1"}, "-s"},
        {{"-d", "soon", "127.0.0.1", "1"}, "-d"},
        {{"--timeout", "-1", "127.0.0.1", "1"}, "--timeout"},
        {{"--framing", "xml", "127.0.0.1", "1"}, "framing"},
        {{"-u", "-m", "connect", "127.0.0.1", "1"}, "stream socket"},
        {{"-u", "-s", "70000", "127.0.0.1", "1"}, "datagram"},
        {{"-m", "stream", "-n", "5", "127.0.0.1", "1"}, "-n"},
        {{"--bogus", "127.0.0.1", "1"}, "unknown option"},
        {{"-c"}, "needs a value"},
        {{"127.0.0.1", "1", "extra"}, "too many"},
        {{NULL}, "missing address"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *args[12] = {"bench"};
        size_t n = 1;
        for (size_t j = 0; j < 6 && cases[i].args[j]; j++)
            args[n++] = cases[i].args[j];
        args[n] = NULL;
        struct tool_result r;
        tool_run(&r, args, RUN_TIMEOUT_MS);
        expect_error(cases[i].says, &r, 2, cases[i].says, NULL);
    }
    struct tool_result r;
    bench(&r, "--help", NULL);
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.out, "usage: ioplex bench"));
}

static void test_unreachable(void **state)
{
    (void)state;
    char port[16];
    port_str(port, sizeof port, harness_free_port(SOCK_STREAM));
    struct tool_result r;
    bench(&r, "-c", "10", "-d", "1", "127.0.0.1", port, NULL);
    expect_error("refused", &r, 4, "refused", "is the server running", NULL);
    assert_string_equal(r.out, "");

    bench(&r, "nosuch.invalid", "80", NULL);
    expect_error("unresolvable", &r, 3, "nosuch.invalid", NULL);

    char path[108];
    assert_non_null(harness_tmp_path(path, sizeof path, "nobody"));
    bench(&r, "-U", path, NULL);
    expect_error("no unix server", &r, 4, path, NULL);
}

/*
 * Bench ends its connections as a client should: FIN, not RST. A -v
 * server logs each close, and "Connection reset by peer" for a reset;
 * the runs end with messages in flight (pingpong, -P 4, by time) or bytes
 * still coming back (stream to echo), where close() with unread input
 * resets.
 */
static void no_reset(const char *what, const char *const args[], unsigned conns)
{
    struct server s;
    assert_int_equal(server_startl(&s, "-v", "-m", "thread", "-S", "echo", "127.0.0.1", "0",
                                   NULL),
                     0);
    const char *argv[24] = {"bench"};
    size_t n = 1;
    for (size_t i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n++] = s.address;
    argv[n] = NULL;
    struct tool_result r;
    tool_run(&r, argv, RUN_TIMEOUT_MS);
    if (r.code != 0) {
        tool_show(what, &r);
        fail_msg("%s: want exit 0", what);
    }
    /* Every connection's close logged (the probe's too), then none reset. */
    long long deadline = now_ms() + HARNESS_IO_TIMEOUT_MS;
    while (server_stderr_count(&s, "close ") < (int)conns + 1 && now_ms() < deadline) {
        server_pump(&s);
        sleep_ms(10);
    }
    CHECK(&s, server_stderr_count(&s, "close ") == (int)conns + 1);
    if (server_stderr_count(&s, "reset by peer") != 0) {
        tool_show(what, &r);
        server_dump(&s);
        fail_msg("%s: the server saw %d of bench's connections reset", what,
                 server_stderr_count(&s, "reset by peer"));
    }
    server_stop_clean(&s);
}

static void test_clean_close(void **state)
{
    (void)state;
    no_reset("pingpong -c 8 -P 4",
             (const char *const[]){"-c", "8", "-P", "4", "-d", "0.5", "--warmup", "0", SLACK,
                                   NULL},
             8);
    no_reset("stream -c 4", (const char *const[]){"-m", "stream", "-c", "4", "-d", "0.5",
                                                  "--warmup", "0", SLACK, NULL},
             4);
}

/* stdout is one JSON object for an error: expect_all() alone passes on
 * empty input (jq prints nothing, so no filter is false). */
static void expect_json_error(const char *what, const struct tool_result *r, int code)
{
    if (!jq_true(r->out, "type == \"object\" and (.error | type) == \"string\"")) {
        tool_show(what, r);
        fail_msg("%s: expected one JSON object with the error on stdout", what);
    }
    char filter[64];
    snprintf(filter, sizeof filter, ".exit_code == %d", code);
    expect_all(r->out, filter, ".tool == \"ioplex bench\"", NULL);
}

/* `ioplex bench ARGS...` under RLIMIT_NOFILE soft:hard (prlimit, from
 * util-linux, sets it before exec). */
static void bench_limited(struct tool_result *r, unsigned soft, unsigned hard,
                          const char *const args[])
{
    char nofile[64];
    snprintf(nofile, sizeof nofile, "--nofile=%u:%u", soft, hard);
    const char *const wrapper[] = {"prlimit", nofile, "--", NULL};
    const char *argv[32] = {"bench"};
    size_t n = 1;
    for (size_t i = 0; args[i]; i++) {
        assert_true(n < sizeof argv / sizeof argv[0] - 1);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    tool_run_under(r, wrapper, argv, RUN_TIMEOUT_MS);
    if (r->code == 127 || r->code < 0) {
        tool_show("prlimit ... ioplex bench", r);
        fail_msg("could not run ioplex bench under prlimit");
    }
}

/* The descriptors bench needs: -c beyond the hard limit is refused at the
 * start in one line (and as JSON with --json), exit 2; beyond the soft
 * limit only, the soft one is raised and the run is clean. */
static void test_fd_limit(void **state)
{
    (void)state;
    REQUIRE_JQ();
    struct server s;
    assert_int_equal(server_startl(&s, "-m", "epoll", "-S", "echo", "127.0.0.1", "0", NULL), 0);
    struct tool_result r;
    bench_limited(&r, 256, 256,
                  (const char *const[]){"-c", "1000", "-d", "1", s.address, NULL});
    expect_error("-c 1000 under a hard limit of 256", &r, 2, "-c 1000", "descriptors",
                 "256", NULL);
    assert_string_equal(r.out, "");

    bench_limited(&r, 256, 256,
                  (const char *const[]){"--json", "-c", "1000", "-d", "1", s.address, NULL});
    expect_error("--json -c 1000 under a hard limit of 256", &r, 2, "-c 1000", NULL);
    expect_json_error("--json -c 1000 under a hard limit of 256", &r, 2);
    expect_all(r.out, ".error | test(\"-c 1000 needs [0-9]+ descriptors, but only 256\")",
               NULL);

    /* Soft 128, hard 4096: 500 connections run, every message answered. */
    bench_limited(&r, 128, 4096,
                  (const char *const[]){"-c", "500", "-n", "2000", "--warmup", "0", SLACK,
                                        "--json", s.address, NULL});
    expect_json_ok("-c 500 above the soft limit, below the hard", &r);
    expect_all(r.out, ".messages == 2000", ".errors.total == 0",
               ".connections_opened == 500", NULL);
    server_stop_clean(&s);
}

/* --json: a run that cannot start still prints one JSON object with its
 * error, and the exit code is the one without --json. */
static void test_json_errors(void **state)
{
    (void)state;
    REQUIRE_JQ();
    char port[16];
    port_str(port, sizeof port, harness_free_port(SOCK_STREAM));
    struct tool_result r;
    bench(&r, "--json", "-c", "10", "-d", "1", "127.0.0.1", port, NULL);
    expect_error("--json, refused", &r, 4, "refused", NULL);
    expect_json_error("--json, refused", &r, 4);
    expect_all(r.out, ".error | test(\"refused\")", NULL);

    bench(&r, "--json", "nosuch.invalid", "80", NULL);
    expect_error("--json, unresolvable", &r, 3, "nosuch.invalid", NULL);
    expect_json_error("--json, unresolvable", &r, 3);
    expect_all(r.out, ".error | test(\"nosuch.invalid\")", NULL);

    /* A bad flag before --json is seen is still reported as JSON. */
    bench(&r, "-c", "0", "127.0.0.1", port, "--json", NULL);
    expect_error("-c 0 --json", &r, 2, "-c", NULL);
    expect_json_error("-c 0 --json", &r, 2);
    expect_all(r.out, ".error | test(\"-c\")", NULL);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_usage_errors, teardown),
        cmocka_unit_test_teardown(test_unreachable, teardown),
        cmocka_unit_test_teardown(test_fd_limit, teardown),
        cmocka_unit_test_teardown(test_json_errors, teardown),
        cmocka_unit_test_teardown(test_clean_close, teardown),
        cmocka_unit_test_teardown(test_pingpong_counts, teardown),
        cmocka_unit_test_teardown(test_pingpong_human, teardown),
        cmocka_unit_test_teardown(test_framing, teardown),
        cmocka_unit_test_teardown(test_udp, teardown),
        cmocka_unit_test_teardown(test_unix, teardown),
        cmocka_unit_test_teardown(test_stream_mode, teardown),
        cmocka_unit_test_teardown(test_rate_mode, teardown),
        cmocka_unit_test_teardown(test_connect_mode, teardown),
        cmocka_unit_test_teardown(test_hgrm, teardown),
        cmocka_unit_test_teardown(test_intervals, teardown),
        cmocka_unit_test_teardown(test_server_closes_early, teardown),
        cmocka_unit_test_teardown(test_server_sends_wrong_bytes, teardown),
        cmocka_unit_test_teardown(test_server_stalls, teardown),
        cmocka_unit_test_teardown(test_stall_bounded, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
