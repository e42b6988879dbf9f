/*
 * The PROXY protocol between processes: ioplex's own clients sending it,
 * the server refusing it where it cannot apply, the header before a TLS
 * handshake, and HAProxy in front of two instances.
 *
 *   connect_send_proxy  `connect --send-proxy` (v1) and `--send-proxy=v2`
 *                       against `serve --proxy-protocol -v`: echoed, and
 *                       the open line names the client's own address via
 *                       the same address (what getsockname() gave)
 *   bench_send_proxy    `bench --send-proxy-v2 -c 3`: no error, and three
 *                       open lines with "via"
 *   datagram_refused    --proxy-protocol with -u: usage error, exit 2
 *   tls_after_header    --proxy-protocol with --tls-cert: a v2 header,
 *                       then the TLS handshake on the same connection; the
 *                       open line names the header's client
 *   haproxy             HAProxy (mode tcp, send-proxy-v2, checks every
 *                       200 ms) balancing over two `serve
 *                       --proxy-protocol` instances; clients from
 *                       127.0.0.2 and 127.0.0.3: each is served by exactly
 *                       one instance, whose log names its true address and
 *                       port, and both instances serve some; HAProxy's
 *                       checks (LOCAL headers) keep their real peer. One
 *                       instance is killed; once HAProxy says it is DOWN,
 *                       every new client is served by the other, with no
 *                       error.
 *   haproxy_hosts       the same with each instance a host of its own: a
 *                       network namespace, joined by a veth pair to the
 *                       balancer's (HAProxy and the clients), instance N
 *                       at 198.18.N.2, the balancer at 198.18.N.1, which
 *                       the instances' logs show as "via" (skipped only
 *                       where namespaces cannot be made: not root)
 */
#define _GNU_SOURCE
#include "harness.h"
#include "netns.h"
#include "tool.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define IO_MS HARNESS_IO_TIMEOUT_MS
#define SIG "\r\n\r\n\0\r\nQUIT\n"
#define HAPROXY "/usr/sbin/haproxy"

static pid_t haproxy_pid = -1;

static int teardown(void **state)
{
    if (haproxy_pid > 0) { /* ours: started by this test, by its PID */
        kill(haproxy_pid, SIGKILL);
        waitpid(haproxy_pid, NULL, 0);
        haproxy_pid = -1;
    }
    return harness_teardown(state);
}

/* Open lines "open A:P via B:Q" in s's log where A:P == B:Q. */
static int self_via_lines(struct server *s)
{
    server_pump(s);
    int n = 0;
    for (const char *p = s->err; (p = strstr(p, "open ")) != NULL; p++) {
        char a[64], b[64];
        if (sscanf(p, "open %63s via %63s", a, b) == 2 && strcmp(a, b) == 0)
            n++;
    }
    return n;
}

static void connect_send_proxy(void **state)
{
    (void)state;
    struct server s;
    static const char *const extra[] = {"-v", "--proxy-protocol", NULL};
    CHECK(&s, server_start_on(&s, NULL, "tcp4", "echo", extra) == 0);
    char port[16];
    snprintf(port, sizeof port, "%u", s.port);
    static const char *const versions[] = {"--send-proxy", "--send-proxy=v2"};
    for (int i = 0; i < 2; i++) {
        const char *argv[] = {ioplex_bin(), "connect", versions[i], "127.0.0.1", port, NULL};
        char out[256], err[512];
        int rc = run_cmd(argv, "hello\n", 6, out, sizeof out, NULL, err, sizeof err, IO_MS);
        CHECK(&s, rc == 0);
        CHECK(&s, strcmp(out, "hello\n") == 0);
        long long end = now_ms() + IO_MS;
        while (self_via_lines(&s) < i + 1 && now_ms() < end)
            sleep_ms(20);
        CHECK(&s, self_via_lines(&s) == i + 1);
    }
    /* A version that does not exist: a usage error. */
    const char *bad[] = {ioplex_bin(), "connect", "--send-proxy=v3", "127.0.0.1", port, NULL};
    char err[512];
    CHECK(&s, run_cmd(bad, NULL, 0, NULL, 0, NULL, err, sizeof err, IO_MS) == 2);
    server_stop_clean(&s);
    CHECK(&s, server_stderr_count(&s, ": PROXY header: ") == 0);
}

static void bench_send_proxy(void **state)
{
    (void)state;
    struct server s;
    static const char *const extra[] = {"-v", "--proxy-protocol", NULL};
    CHECK(&s, server_start_on(&s, NULL, "tcp4", "echo", extra) == 0);
    char port[16];
    snprintf(port, sizeof port, "%u", s.port);
    const char *argv[] = {ioplex_bin(), "bench", "--send-proxy-v2", "-c", "3", "-n", "300",
                          "--warmup", "0", "--json", "127.0.0.1", port, NULL};
    static char out[65536];
    char err[1024];
    int rc = run_cmd(argv, NULL, 0, out, sizeof out, NULL, err, sizeof err, 60000);
    if (rc != 0)
        fprintf(stderr, "bench: %s\n%s\n", out, err);
    CHECK(&s, rc == 0);
    CHECK(&s, strstr(out, "\"messages\": 300") || strstr(out, "\"messages\":300"));
    server_stop_clean(&s);
    CHECK(&s, self_via_lines(&s) == 3);
    CHECK(&s, server_stderr_count(&s, ": PROXY header: ") == 0);
}

static void datagram_refused(void **state)
{
    (void)state;
    const char *argv[] = {ioplex_bin(), "serve", "--proxy-protocol", "-u", "127.0.0.1", "0",
                          NULL};
    char err[512] = "";
    int rc = run_cmd(argv, NULL, 0, NULL, 0, NULL, err, sizeof err, IO_MS);
    if (rc != 2)
        fprintf(stderr, "exit %d: %s\n", rc, err);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(err, "PROXY protocol needs a stream transport"));
    /* The clients refuse it too: a header has no place in a datagram. */
    struct tool_result *r = malloc(sizeof *r);
    assert_non_null(r);
    tool_run(r, (const char *[]){"connect", "--send-proxy", "-u", "127.0.0.1", "9", NULL}, IO_MS);
    tool_expect_error("connect --send-proxy -u", r, 2, "ioplex connect: ", "--send-proxy",
                      "stream", NULL);
    tool_run(r, (const char *[]){"bench", "--send-proxy-v2", "-u", "127.0.0.1", "9", NULL},
             IO_MS);
    tool_expect_error("bench --send-proxy-v2 -u", r, 2, "ioplex bench: ", "--send-proxy-v2",
                      "stream", NULL);
    free(r);
}

/* ---- TLS after the header ------------------------------------------------ */

static void tls_after_header(void **state)
{
    (void)state;
    char dir[512], cmd[1200];
    snprintf(dir, sizeof dir, "%s/certs", harness_tmpdir());
    const char *here = __FILE__;
    const char *slash = strrchr(here, '/');
    snprintf(cmd, sizeof cmd, "sh '%.*s/../tls/make-certs.sh' '%s'",
             slash ? (int)(slash - here) : 1, slash ? here : ".", dir);
    assert_int_equal(system(cmd), 0);
    char cert[600], key[600];
    snprintf(cert, sizeof cert, "%s/server.pem", dir);
    snprintf(key, sizeof key, "%s/server.key", dir);
    struct server s;
    const char *const extra[] = {"-v", "--proxy-protocol", "--tls-cert", cert, "--tls-key",
                                 key, NULL};
    CHECK(&s, server_start_on(&s, NULL, "tcp4", "echo", extra) == 0);
    int fd = client_connect(&s);
    CHECK(&s, fd >= 0);
    /* PROXY, TCP4, 203.0.113.9:7777 to 127.0.0.1:443, sent before the
     * ClientHello (as HAProxy sends it in front of a TLS server). */
    static const char hdr[] = SIG "\x21\x11\x00\x0c" "\xcb\x00\x71\x09" "\x7f\0\0\x01"
                              "\x1e\x61" "\x01\xbb";
    CHECK(&s, send_all(fd, hdr, sizeof hdr - 1) == 0);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    CHECK(&s, ctx != NULL);
    SSL *ssl = SSL_new(ctx);
    CHECK(&s, ssl != NULL);
    SSL_set_fd(ssl, fd);
    struct timeval tv = {.tv_sec = IO_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv); /* bounds every read */
    int ok = SSL_connect(ssl) == 1 && SSL_write(ssl, "hello\n", 6) == 6;
    char back[7] = "";
    int got = 0;
    while (ok && got < 6) {
        int n = SSL_read(ssl, back + got, 6 - got);
        if (n <= 0)
            break;
        got += n;
    }
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    CHECK(&s, ok && got == 6 && memcmp(back, "hello\n", 6) == 0);
    CHECK(&s, server_wait_stderr(&s, "open 203.0.113.9:7777 via 127.0.0.1:", IO_MS));
    client_close(fd);
    server_stop_clean(&s);
}

/* ---- HAProxy in front ---------------------------------------------------- */

/* What HAProxy wrote on stderr so far (its server state changes). */
static int haproxy_said(const char *log, const char *needle)
{
    static char buf[65536];
    int fd = open(log, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return strstr(buf, needle) != NULL;
}

static pid_t haproxy_start(const char *cfg, const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
            _exit(127);
        dup2(fd, 1);
        dup2(fd, 2);
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2(null, 0);
        signal(SIGPIPE, SIG_DFL);
        execl(HAPROXY, "haproxy", "-db", "-f", cfg, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* A client from source address src through HAProxy: one echo. Returns
 * its source port, or 0 if the echo failed. */
static unsigned client_from(const char *src, unsigned fe)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in me = {.sin_family = AF_INET}, to = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &me.sin_addr);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    to.sin_port = htons((uint16_t)fe);
    socklen_t len = sizeof me;
    unsigned port = 0;
    if (bind(fd, (struct sockaddr *)&me, sizeof me) == 0 &&
        connect(fd, (struct sockaddr *)&to, sizeof to) == 0 &&
        getsockname(fd, (struct sockaddr *)&me, &len) == 0 &&
        echo_line(fd, "through the balancer\n", IO_MS))
        port = ntohs(me.sin_port);
    close(fd);
    return port;
}

/* Which of the n servers logged the client src:port (1-based), waiting
 * up to IO_MS; 0 if none did, -1 if more than one did. */
static int served_by(struct server *sv, int n, const char *src, unsigned port)
{
    char needle[128];
    snprintf(needle, sizeof needle, "open %s:%u via ", src, port);
    long long end = now_ms() + IO_MS;
    while (now_ms() < end) {
        int who = 0;
        for (int i = 0; i < n; i++)
            if (server_stderr_count(&sv[i], needle) > 0)
                who = who ? -1 : i + 1;
        if (who)
            return who;
        sleep_ms(20);
    }
    return 0;
}

/* ---- the instances as hosts of their own (network namespaces) ------------ */

/* The balancer's namespace (HAProxy and the clients) and one per instance,
 * joined by a veth pair each: balancer 198.18.N.1, instance N 198.18.N.2
 * (RFC 2544's benchmarking range). Named with our PID; nothing is added
 * to the namespace the test started in. */
static char ns_names[3][32];
static int ns_made, home_ns = -1;

static void go_home(void)
{
    if (home_ns >= 0 && setns(home_ns, CLONE_NEWNET) != 0)
        fail_msg("setns back home: %s", strerror(errno));
}

static void delete_namespaces(void)
{
    if (home_ns >= 0)
        setns(home_ns, CLONE_NEWNET);
    for (int i = 0; i < 3 && ns_made; i++)
        netns_cmd(NULL, NULL, 0, NULL, 0, "ip", "netns", "delete", ns_names[i], NULL);
    ns_made = 0;
}

/* Returns 0, or 1 where namespaces cannot be made (not root, or not
 * permitted: the case is skipped); fails on any other error. */
static int make_namespaces(void)
{
    if (geteuid() != 0)
        return 1;
    home_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home_ns < 0)
        return 1;
    int pid = (int)getpid();
    snprintf(ns_names[0], sizeof ns_names[0], "ioppB%d", pid);
    snprintf(ns_names[1], sizeof ns_names[1], "ioppH1x%d", pid);
    snprintf(ns_names[2], sizeof ns_names[2], "ioppH2x%d", pid);
    char why[256];
    if (netns_add(ns_names[0], why, sizeof why) != 0)
        return 1;
    ns_made = 1;
    NETNS_MUST("ip", "netns", "add", ns_names[1]);
    NETNS_MUST("ip", "netns", "add", ns_names[2]);
    NETNS_MUST("ip", "-n", ns_names[0], "link", "set", "lo", "up");
    for (int h = 1; h <= 2; h++) {
        char vb[16], vh[16], ab[32], ah[32];
        snprintf(vb, sizeof vb, "ippb%d%d", h, pid % 1000000);
        snprintf(vh, sizeof vh, "ipph%d%d", h, pid % 1000000);
        snprintf(ab, sizeof ab, "198.18.%d.1/24", h);
        snprintf(ah, sizeof ah, "198.18.%d.2/24", h);
        NETNS_MUST("ip", "link", "add", vb, "netns", ns_names[0], "type", "veth", "peer", "name", vh,
                "netns", ns_names[h]);
        NETNS_MUST("ip", "-n", ns_names[0], "addr", "add", ab, "dev", vb);
        NETNS_MUST("ip", "-n", ns_names[h], "addr", "add", ah, "dev", vh);
        NETNS_MUST("ip", "-n", ns_names[0], "link", "set", vb, "up");
        NETNS_MUST("ip", "-n", ns_names[h], "link", "set", vh, "up");
        NETNS_MUST("ip", "-n", ns_names[h], "link", "set", "lo", "up");
    }
    return 0;
}

/* ---- HAProxy over two instances ------------------------------------------- */

static void haproxy_run(int hosts)
{
    struct stat st;
    if (stat(HAPROXY, &st) != 0)
        fail_msg("%s is missing: `make setup` installs Debian's haproxy package", HAPROXY);
    static struct server sv[2];
    /* What each instance sees HAProxy as: its checks (no "via") and the
     * "via" of the clients it relays. */
    char addr[2][32], balancer[2][32];
    for (int i = 0; i < 2; i++) {
        snprintf(addr[i], sizeof addr[i], hosts ? "198.18.%d.2" : "127.0.0.1", i + 1);
        snprintf(balancer[i], sizeof balancer[i], hosts ? "198.18.%d.1" : "127.0.0.1", i + 1);
        if (hosts && netns_enter(ns_names[i + 1]) != 0)
            fail_msg("setns into %s: %s", ns_names[i + 1], strerror(errno));
        int r = server_startl(&sv[i], "-v", "--proxy-protocol", "-S", "echo", addr[i], "0",
                              (char *)NULL);
        if (hosts)
            go_home();
        CHECK(&sv[i], r == 0);
    }
    /* HAProxy and the clients: in the balancer's namespace (this thread
     * stays there until the end of the case). */
    if (hosts && netns_enter(ns_names[0]) != 0)
        fail_msg("setns into %s: %s", ns_names[0], strerror(errno));
    char cfg[600], log[600];
    snprintf(cfg, sizeof cfg, "%s/haproxy%d.cfg", harness_tmpdir(), hosts);
    snprintf(log, sizeof log, "%s/haproxy%d.log", harness_tmpdir(), hosts);
    unsigned fe = 0;
    for (int attempt = 0; attempt < 3 && haproxy_pid < 0; attempt++) {
        fe = harness_free_port(SOCK_STREAM);
        FILE *f = fopen(cfg, "w");
        assert_non_null(f);
        /* docs/deployment.md shows this configuration. */
        fprintf(f,
                "defaults\n"
                "    mode tcp\n"
                "    timeout connect 2s\n"
                "    timeout client 30s\n"
                "    timeout server 30s\n"
                "frontend fe\n"
                "    bind 127.0.0.1:%u\n"
                "    default_backend ioplex\n"
                "backend ioplex\n"
                "    balance roundrobin\n"
                "    server s1 %s:%u send-proxy-v2 check inter 200ms fall 1 rise 1\n"
                "    server s2 %s:%u send-proxy-v2 check inter 200ms fall 1 rise 1\n",
                fe, addr[0], sv[0].port, addr[1], sv[1].port);
        fclose(f);
        haproxy_pid = haproxy_start(cfg, log);
        assert_true(haproxy_pid > 0);
        /* Its checks reach both instances: a LOCAL header each, which
         * keeps the real peer (HAProxy's own address, no "via"). */
        int up = 1;
        for (int i = 0; i < 2 && up; i++) {
            char check[64];
            snprintf(check, sizeof check, "open %s:", balancer[i]);
            up = server_wait_stderr(&sv[i], check, IO_MS);
        }
        int status;
        if (!up || waitpid(haproxy_pid, &status, WNOHANG) != 0) { /* its port taken? */
            kill(haproxy_pid, SIGKILL);
            waitpid(haproxy_pid, NULL, 0);
            haproxy_pid = -1;
        }
    }
    if (haproxy_pid < 0)
        fail_msg("HAProxy did not start or check the instances (see %s)", log);

    /* Round robin over both; each client's true address in the log of
     * exactly the instance that served it, with HAProxy's as "via". */
    static const char *const srcs[] = {"127.0.0.2", "127.0.0.3"};
    int count[2] = {0, 0};
    for (int k = 0; k < 8; k++) {
        unsigned port = client_from(srcs[k % 2], fe);
        CHECK(&sv[0], port != 0);
        int who = served_by(sv, 2, srcs[k % 2], port);
        CHECK(&sv[0], who == 1 || who == 2);
        char needle[128];
        snprintf(needle, sizeof needle, "open %s:%u via %s:", srcs[k % 2], port,
                 balancer[who - 1]);
        CHECK(&sv[who - 1], server_stderr_count(&sv[who - 1], needle) == 1);
        count[who - 1]++;
    }
    CHECK(&sv[0], count[0] > 0 && count[1] > 0);

    /* s1 dies; HAProxy's check sees it within a few of its 200 ms. */
    server_kill(&sv[0]);
    long long end = now_ms() + IO_MS;
    while (!haproxy_said(log, "Server ioplex/s1 is DOWN") && now_ms() < end)
        sleep_ms(50);
    CHECK(&sv[1], haproxy_said(log, "Server ioplex/s1 is DOWN"));
    int before = server_stderr_count(&sv[1], " via ");
    for (int k = 0; k < 10; k++) {
        unsigned port = client_from(srcs[k % 2], fe);
        CHECK(&sv[1], port != 0); /* no error: served */
        char needle[128];
        snprintf(needle, sizeof needle, "open %s:%u via %s:", srcs[k % 2], port, balancer[1]);
        CHECK(&sv[1], server_wait_stderr(&sv[1], needle, IO_MS));
    }
    CHECK(&sv[1], server_stderr_count(&sv[1], " via ") == before + 10);
    kill(haproxy_pid, SIGTERM);
    waitpid(haproxy_pid, NULL, 0);
    haproxy_pid = -1;
    if (hosts)
        go_home();
    server_stop_clean(&sv[1]);
    CHECK(&sv[1], server_stderr_count(&sv[1], ": PROXY header: ") == 0);
}

static void haproxy(void **state)
{
    (void)state;
    haproxy_run(0);
}

static void haproxy_hosts(void **state)
{
    (void)state;
    if (make_namespaces() != 0) {
        fprintf(stderr, "haproxy_hosts: network namespaces cannot be made here\n");
        skip();
    }
    haproxy_run(1);
}

static int teardown_hosts(void **state)
{
    teardown(state);
    delete_namespaces();
    return 0;
}

int main(void)
{
    harness_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(connect_send_proxy, teardown),
        cmocka_unit_test_teardown(bench_send_proxy, teardown),
        cmocka_unit_test_teardown(datagram_refused, teardown),
        cmocka_unit_test_teardown(tls_after_header, teardown),
        cmocka_unit_test_teardown(haproxy, teardown),
        cmocka_unit_test_teardown(haproxy_hosts, teardown_hosts),
    };
    return cmocka_run_group_tests_name("test_proxy_protocol", tests, NULL, NULL);
}
