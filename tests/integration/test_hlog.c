/*
 * bench --hlog against an independent reader: the log `ioplex bench
 * --hlog` writes is read back by hdr-histogram-js (npm; hdrjs.h), whose
 * count must equal the messages of bench's JSON exactly and whose
 * percentiles must match the JSON's within the histogram's resolution
 * (the width of the value's slot: bench reports a slot's middle,
 * HdrHistogram its highest value). The log must also hold one interval
 * per --interval and end with bench's result.
 *
 * No timing assertions: counts and formats only.
 */
#define _GNU_SOURCE
#include "harness.h"
#include "hdrjs.h"
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

#include <cmocka.h>

#define RUN_TIMEOUT_MS 60000

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* bench's value (ms in its JSON) is within the slot HdrHistogram names. */
static void expect_close(const char *what, double bench_ms, double hdr_ns, double width_ns)
{
    double ns = bench_ms * 1e6;
    double tol = width_ns + ns * 1e-5 + 1; /* the JSON's 6 significant digits */
    if (!(fabs(ns - hdr_ns) <= tol))
        fail_msg("%s: bench says %.0f ns, hdr-histogram-js %.0f ns (slot width %.0f)", what,
                 ns, hdr_ns, width_ns);
}

static void test_log_read_by_hdr_histogram_js(void **state)
{
    (void)state;
    char err[1024];
    if (hdrjs_setup(err, sizeof err) != 0)
        fail_msg("%s", err);
    struct server s;
    assert_int_equal(server_startl(&s, "-m", "epoll", "-S", "echo", "127.0.0.1", "0", NULL), 0);
    char port[16], log[512];
    snprintf(port, sizeof port, "%u", s.port);
    assert_non_null(harness_tmp_path(log, sizeof log, "bench"));
    /* Random sizes and pipelining spread the latencies over many slots. */
    const char *args[] = {"bench", "--json", "-q", "-c", "3", "-P", "4", "-s", "16-4096",
                          "-d", "2", "--warmup", "0.2", "--interval", "0.5",
                          "--interval-file", "/dev/null", "--timeout", "10", "--hlog", log,
                          "127.0.0.1", port, NULL};
    static struct tool_result r;
    tool_run(&r, args, RUN_TIMEOUT_MS);
    if (r.code != 0) {
        tool_show("bench --hlog", &r);
        fail_msg("bench --hlog failed");
    }
    double messages = tool_json_number(r.out, "messages");
    assert_true(messages > 100);

    const char *text = slurp(log);
    assert_non_null(text);
    assert_true(strncmp(text, "#[Histogram log format version 1.3]\n", 36) == 0);
    assert_non_null(strstr(text, "\n#[StartTime: "));
    assert_non_null(strstr(text, "\n#[BaseTime: "));
    const char *result = strstr(text, "\n#ioplex-result {");
    assert_non_null(result);
    assert_true(tool_json_number(result, "messages") == messages);

    struct hdrjs_hist h;
    const char *logs[] = {log};
    if (hdrjs_read(logs, 1, &h, NULL, err, sizeof err) != 0)
        fail_msg("%s", err);
    fprintf(stderr, "hdr-histogram-js: %.0f intervals, %.0f values, p50 %.0f p99 %.0f max %.0f "
                    "ns; bench: %.0f messages, p50 %g p99 %g max %g ms\n",
            h.intervals, h.count, h.p50, h.p99, h.max, messages, tool_json_number(r.out, "p50"),
            tool_json_number(r.out, "p99"), tool_json_number(r.out, "max"));
    /* 2 s in 0.5 s intervals: 4, and a short last one if the end lags. */
    assert_true(h.intervals >= 4 && h.intervals <= 5);
    if (h.count != messages)
        fail_msg("hdr-histogram-js counts %.0f values, bench's JSON %.0f messages", h.count,
                 messages);
    expect_close("p50", tool_json_number(r.out, "p50"), h.p50, h.p50_w);
    expect_close("p90", tool_json_number(r.out, "p90"), h.p90, h.p90_w);
    expect_close("p99", tool_json_number(r.out, "p99"), h.p99, h.p99_w);
    expect_close("p99.9", tool_json_number(r.out, "p99_9"), h.p99_9, h.p99_9_w);
    /* HdrHistogram's max is its slot's highest value, bench's the exact one. */
    double max_ns = tool_json_number(r.out, "max") * 1e6;
    assert_true(max_ns <= h.max + 1 + max_ns * 1e-5 && h.max - max_ns <= h.max / 128 + 1);
    server_stop_clean(&s);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_log_read_by_hdr_histogram_js, harness_teardown),
    };
    return cmocka_run_group_tests_name("hlog", tests, NULL, NULL);
}
