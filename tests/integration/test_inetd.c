/*
 * A real inetd (Debian's openbsd-inetd, /usr/sbin/inetd) runs `ioplex
 * serve --inetd` from a configuration file this test writes: the test's
 * own instance, in the foreground (-d -i), on free loopback ports; the
 * system's /etc/inetd.conf and any system inetd are left alone.
 *
 *   stream tcp nowait: a `serve --inetd -S ack` per connection, the
 *     connection on its standard input, output and error; the ack
 *     service's own line goes to syslog, so the client gets exactly the
 *     answer.
 *   dgram udp wait: `serve --inetd -S echo --idle-timeout 1` serves the
 *     socket until idle for a second, exits 0, and inetd watches the
 *     socket again: the next datagram starts a new one.
 */
#include "harness.h"
#include "local_sockets.h"

#include <dirent.h>
#include <pwd.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define INETD "/usr/sbin/inetd"
#define IO_MS HARNESS_IO_TIMEOUT_MS

/* The argv[0] inetd gives the servers it starts: ours alone have it. */
static char marker[64];

/* inetd puts each server in a session of its own, out of the process
 * group the harness kills: a server that outlived a failed test is found
 * by its argv[0] and killed here. */
static void kill_leftover_servers(void)
{
    DIR *d = opendir("/proc");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[300], argv0[64] = "";
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
        if (proc_read_text(path, argv0, sizeof argv0) > 0 && strcmp(argv0, marker) == 0) {
            fprintf(stderr, "test: killing a server inetd left: %s\n", e->d_name);
            kill((pid_t)atoi(e->d_name), SIGKILL);
        }
    }
    closedir(d);
}

static int teardown(void **state)
{
    local_close_all();
    int r = harness_teardown(state); /* inetd first: it starts no more */
    kill_leftover_servers();
    return r;
}

/* Wait until inetd's debug output has `needle` at least n times. */
static int wait_count(struct server *s, const char *needle, int n)
{
    long long deadline = now_ms() + IO_MS;
    while (server_stderr_count(s, needle) < n && now_ms() < deadline) {
        server_pump(s);
        sleep_ms(20);
    }
    return server_stderr_count(s, needle) >= n;
}

static void test_inetd(void **state)
{
    (void)state;
    if (access(INETD, X_OK) != 0)
        fail_msg("%s is missing: scripts/setup.sh installs openbsd-inetd", INETD);
    unsigned tport = harness_free_port(SOCK_STREAM), uport = harness_free_port(SOCK_DGRAM);
    struct passwd *pw = getpwuid(getuid());
    assert_non_null(pw);
    char conf[128];
    snprintf(conf, sizeof conf, "%s/inetd.conf", harness_tmpdir());
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    snprintf(marker, sizeof marker, "ioplex-inetd-test-%ld", (long)getpid());
    fprintf(f, "127.0.0.1:%u stream tcp nowait %s %s %s serve --inetd -S ack\n",
            tport, pw->pw_name, ioplex_bin(), marker);
    fprintf(f, "127.0.0.1:%u dgram udp wait %s %s %s serve --inetd -S echo "
            "--idle-timeout 1\n", uport, pw->pw_name, ioplex_bin(), marker);
    assert_int_equal(fclose(f), 0);

    struct server s;
    const char *argv[] = {INETD, "-d", "-i", conf, NULL};
    assert_int_equal(server_start_cmd(&s, argv), 0);
    char added[64];
    snprintf(added, sizeof added, "ADD: 127.0.0.1:%u", uport);
    CHECK(&s, server_wait_stderr(&s, added, HARNESS_START_TIMEOUT_MS));

    /* nowait: a process per connection */
    for (int i = 0; i < 3; i++) {
        int c = local_connect_ip(SOCK_STREAM, tport, IO_MS);
        CHECK(&s, c >= 0);
        CHECK(&s, send_all(c, "hello\n", 6) == 0);
        CHECK(&s, recv_ack(c, IO_MS));
        local_close(c);
    }

    /* wait: served until idle, then inetd's again */
    int u = local_connect_ip(SOCK_DGRAM, uport, IO_MS);
    CHECK(&s, u >= 0);
    char buf[64], wants[64];
    snprintf(wants, sizeof wants, "someone wants %u", uport);
    CHECK(&s, send(u, "one", 3, 0) == 3);
    CHECK(&s, recv_dgram(u, buf, sizeof buf, IO_MS) == 3 && memcmp(buf, "one", 3) == 0);
    CHECK(&s, send(u, "two", 3, 0) == 3); /* the same server, still running */
    CHECK(&s, recv_dgram(u, buf, sizeof buf, IO_MS) == 3 && memcmp(buf, "two", 3) == 0);
    char restored[64];
    snprintf(restored, sizeof restored, "restored %u", uport);
    CHECK(&s, wait_count(&s, restored, 1)); /* it exited when idle: inetd has it back */
    CHECK(&s, server_stderr_count(&s, wants) == 1);
    CHECK(&s, send(u, "three", 5, 0) == 5);
    CHECK(&s, recv_dgram(u, buf, sizeof buf, IO_MS) == 5 && memcmp(buf, "three", 5) == 0);
    CHECK(&s, wait_count(&s, restored, 2));
    CHECK(&s, server_stderr_count(&s, wants) == 2);
    /* Every server inetd started (3 + 2) exited 0. */
    CHECK(&s, wait_count(&s, "reaped, status 0", 5));
    CHECK(&s, server_stderr_count(&s, "reaped, status") == 5);
    server_stop(&s, 0); /* inetd: SIGTERM */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_inetd, teardown),
    };
    return cmocka_run_group_tests_name("integration.inetd", tests, NULL, NULL);
}
