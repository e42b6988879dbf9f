/*
 * Load from several hosts, merged: a server host and two generator hosts,
 * each a network namespace ("iopmhS<pid>", "iopmhA<pid>", "iopmhB<pid>"),
 * the server's joined to each generator's by its own veth pair
 * (198.18.1.0/24 and 198.18.2.0/24, RFC 2544's benchmarking range).
 *
 * Both generators run `ioplex bench --hlog --json` with the same
 * --start-at, so they connect and warm up first and measure the same
 * window. Their latencies differ on purpose, with the same mode and size,
 * so that report takes them: A has one connection, one message in flight,
 * over a plain veth; B four connections, sixteen in flight each, over a
 * link shaped to 2 Mbit/s (tc tbf), on which its messages queue.
 *
 * Then `ioplex report` of the two logs must give:
 *   - messages: the sum of the two runs' (from their own JSON), exactly;
 *   - p99: that of the union of every latency of both logs, computed here
 *     by an independent HdrHistogram (hdr-histogram-js, hdrjs.h), within
 *     one slot's width; and the test checks that the average of the two
 *     runs' p99s is NOT within that, so an averaging report would fail;
 *   - per-interval rows in which both generators appear (the windows line
 *     up).
 * Each run must say how far its host's clock was from the start.
 *
 * Skipped (cmocka skip, one line) only where namespaces cannot be created
 * (not root, or not permitted), as test_netns is.
 */
#define _GNU_SOURCE
#include "harness.h"
#include "hdrjs.h"
#include "netns.h"
#include "tool.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define START_AHEAD_S 3         /* generators connect and warm up until then */
#define MEASURE_S "2"
#define JOBS_DEADLINE_MS 40000  /* bounds a hang, far above the ~5 s it takes */
#define REPORT_TIMEOUT_MS 30000
#define LINK_RATE "2mbit"       /* B's link: its latency far above A's */

static char ns_srv[32], ns_a[32], ns_b[32];
static int ns_created;
static char skip_reason[256];
static pid_t owner_pid;

static void delete_namespaces(void)
{
    if (!ns_created)
        return;
    ns_created = 0;
    netns_cmd(NULL, NULL, 0, NULL, 0, "ip", "netns", "delete", ns_srv, NULL);
    netns_cmd(NULL, NULL, 0, NULL, 0, "ip", "netns", "delete", ns_a, NULL);
    netns_cmd(NULL, NULL, 0, NULL, 0, "ip", "netns", "delete", ns_b, NULL);
}

/* The server's namespace joined to a generator's by a veth pair. */
static void link_to(const char *ns, char side, int subnet, int shaped)
{
    char if_s[16], if_g[16], ip_s[32], ip_g[32];
    snprintf(if_s, sizeof if_s, "iopmS%c%d", side, (int)getpid());
    snprintf(if_g, sizeof if_g, "iopm%c%d", side, (int)getpid());
    snprintf(ip_s, sizeof ip_s, "198.18.%d.1/24", subnet);
    snprintf(ip_g, sizeof ip_g, "198.18.%d.2/24", subnet);
    NETNS_MUST("ip", "link", "add", if_s, "netns", ns_srv, "type", "veth", "peer", "name", if_g,
               "netns", ns);
    NETNS_MUST("ip", "-n", ns_srv, "addr", "add", ip_s, "dev", if_s);
    NETNS_MUST("ip", "-n", ns, "addr", "add", ip_g, "dev", if_g);
    NETNS_MUST("ip", "-n", ns_srv, "link", "set", if_s, "up");
    NETNS_MUST("ip", "-n", ns, "link", "set", if_g, "up");
    if (shaped) { /* a slow link: what is in flight queues on it */
        NETNS_MUST("tc", "-n", ns_srv, "qdisc", "add", "dev", if_s, "root", "tbf", "rate",
                   LINK_RATE, "burst", "16kb", "latency", "100ms");
        NETNS_MUST("tc", "-n", ns, "qdisc", "add", "dev", if_g, "root", "tbf", "rate",
                   LINK_RATE, "burst", "16kb", "latency", "100ms");
    }
}

static int create_namespaces(void)
{
    snprintf(ns_srv, sizeof ns_srv, "iopmhS%d", (int)getpid());
    snprintf(ns_a, sizeof ns_a, "iopmhA%d", (int)getpid());
    snprintf(ns_b, sizeof ns_b, "iopmhB%d", (int)getpid());
    if (geteuid() == 0)
        netns_delete_stale("iopmh");
    if (netns_add(ns_srv, skip_reason, sizeof skip_reason) != 0)
        return 1;
    ns_created = 1;
    NETNS_MUST("ip", "netns", "add", ns_a);
    NETNS_MUST("ip", "netns", "add", ns_b);
    link_to(ns_a, 'a', 1, 0);
    link_to(ns_b, 'b', 2, 1);
    return 0;
}

static void cleanup(void)
{
    netns_kill_jobs();
    harness_teardown(NULL);
    delete_namespaces();
}

static void at_exit_cleanup(void)
{
    if (getpid() == owner_pid)
        cleanup();
}

static int teardown(void **state)
{
    (void)state;
    cleanup();
    return 0;
}

static void show(const struct netns_job *j)
{
    char *out = netns_slurp(j->out_path, NULL), *err = netns_slurp(j->err_path, NULL);
    fprintf(stderr, "--- %s: status %d after %lld ms\n--- stdout: %.2000s\n--- stderr: %.2000s\n",
            j->what, j->status, j->ms, out ? out : "", err ? err : "");
    free(out);
    free(err);
}

static void two_generators_merge_exactly(void **state)
{
    (void)state;
    if (create_namespaces() != 0) {
        fprintf(stderr, "test_multihost: skipped: %s\n", skip_reason);
        skip();
    }
    char err[1024];
    if (hdrjs_setup(err, sizeof err) != 0)
        fail_msg("%s", err);

    /* The server, born in its namespace. */
    int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    assert_true(home >= 0);
    struct server s;
    if (netns_enter(ns_srv) != 0)
        fail_msg("setns into %s: %s", ns_srv, strerror(errno));
    int started = server_startl(&s, "-m", "epoll", "-S", "echo", "0.0.0.0", "0", NULL);
    if (setns(home, CLONE_NEWNET) != 0)
        fail_msg("setns back home: %s", strerror(errno));
    close(home);
    if (started != 0)
        fail_msg("ioplex serve did not start in namespace %s", ns_srv);

    char port[16], start[32], log_a[512], log_b[512];
    snprintf(port, sizeof port, "%u", s.port);
    snprintf(start, sizeof start, "%lld", (long long)time(NULL) + START_AHEAD_S);
    assert_non_null(harness_tmp_path(log_a, sizeof log_a, "a"));
    assert_non_null(harness_tmp_path(log_b, sizeof log_b, "b"));
    const char *bench_a[] = {ioplex_bin(), "bench", "--json", "-q", "-c", "1", "-P", "1",
                             "-d", MEASURE_S, "--start-at", start, "--timeout", "10",
                             "--hlog", log_a, "198.18.1.1", port, NULL};
    const char *bench_b[] = {ioplex_bin(), "bench", "--json", "-q", "-c", "4", "-P", "16",
                             "-d", MEASURE_S, "--start-at", start, "--timeout", "10",
                             "--hlog", log_b, "198.18.2.1", port, NULL};
    struct netns_job *a = netns_spawn(ns_a, "generator A", NULL, bench_a);
    struct netns_job *b = netns_spawn(ns_b, "generator B", NULL, bench_b);
    netns_wait_jobs(now_ms() + JOBS_DEADLINE_MS);
    if (a->status != 0 || b->status != 0) {
        show(a);
        show(b);
        fail_msg("a generator failed");
    }
    char *ja = netns_slurp(a->out_path, NULL), *jb = netns_slurp(b->out_path, NULL);
    assert_non_null(ja);
    assert_non_null(jb);
    double ma = tool_json_number(ja, "messages"), mb = tool_json_number(jb, "messages");
    assert_true(ma > 0 && mb > 0);
    /* Each says how far its clock was from the start; both had the same. */
    assert_true(isfinite(tool_json_number(ja, "start_offset_ms")) &&
                isfinite(tool_json_number(jb, "start_offset_ms")));
    assert_true(tool_json_number(ja, "start_at") == atof(start) &&
                tool_json_number(jb, "start_at") == atof(start));

    static struct tool_result r;
    const char *report[] = {"report", "--json", log_a, log_b, NULL};
    tool_run(&r, report, REPORT_TIMEOUT_MS);
    if (r.code != 0) {
        tool_show("report", &r);
        fail_msg("ioplex report failed");
    }
    struct hdrjs_hist all, each[2];
    const char *logs[] = {log_a, log_b};
    if (hdrjs_read(logs, 2, &all, each, err, sizeof err) != 0)
        fail_msg("%s", err);
    double p99 = tool_json_number(r.out, "p99") * 1e6; /* ms -> ns */
    double avg = (each[0].p99 + each[1].p99) / 2;
    double tol = all.p99_w + p99 * 1e-5 + 1;
    fprintf(stderr, "test_multihost: A %.0f messages, p99 %.0f ns; B %.0f messages, p99 %.0f "
                    "ns; union (hdr-histogram-js) %.0f values, p99 %.0f ns (slot %.0f); "
                    "report %.0f messages, p99 %.0f ns; the average of the p99s %.0f ns\n",
            ma, each[0].p99, mb, each[1].p99, all.count, all.p99, all.p99_w,
            tool_json_number(r.out, "messages"), p99, avg);
    double merged = tool_json_number(r.out, "messages");
    if (merged != ma + mb)
        fail_msg("report: %.0f messages, the runs %.0f + %.0f", merged, ma, mb);
    if (all.count != ma + mb)
        fail_msg("the logs hold %.0f latencies, the runs %.0f + %.0f messages", all.count, ma,
                 mb);
    if (!(fabs(p99 - all.p99) <= tol))
        fail_msg("report's p99 %.0f ns is not the union's %.0f ns (slot %.0f)", p99, all.p99,
                 all.p99_w);
    /* The setup must tell merging from averaging, or the check above is vacuous. */
    if (fabs(avg - all.p99) <= tol)
        fail_msg("the two runs' p99s average to the union's p99 (%.0f vs %.0f ns): the "
                 "latencies do not differ enough for this test", avg, all.p99);
    /* The windows line up: intervals where both generators appear. */
    int both = 0;
    for (const char *p = strstr(r.out, "\"intervals\":["); p && (p = strstr(p, "\"generators\":"));
         p++)
        both += tool_json_number(p, "generators") == 2;
    if (both < 2)
        fail_msg("fewer than two intervals hold both generators: %s", strstr(r.out, "\"intervals\""));
    free(ja);
    free(jb);
    server_stop_clean(&s);
}

int main(void)
{
    owner_pid = getpid();
    atexit(at_exit_cleanup);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(two_generators_merge_exactly, teardown),
    };
    return cmocka_run_group_tests_name("multihost", tests, NULL, NULL);
}
