/*
 * Real clients against `ioplex serve`, and our client against real
 * servers: OpenBSD netcat (nc) and socat from Debian talk to every model
 * over TCP, Unix stream and datagram sockets, and `ioplex connect` (netcat
 * mode: stdin is a pipe) talks to ioplex serve, nc -l and socat servers.
 * Every exchange is checked byte for byte.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define CMD_TIMEOUT_MS 10000
#define ACK "I got your message\n"

static const char *const models[] = {"iterative", "fork", "thread"};
#define N_MODELS (sizeof models / sizeof models[0])

/* ---- processes of our own (third-party servers) ----------------------------- */

struct bg {
    pid_t pid;
    int out_fd, err_fd;
    char out[65536];
    size_t out_len;
    char err[8192];
    size_t err_len;
    int status; /* once reaped */
};

static pid_t bg_pids[16];

static void bg_forget(pid_t pid)
{
    for (size_t i = 0; i < sizeof bg_pids / sizeof bg_pids[0]; i++)
        if (bg_pids[i] == pid)
            bg_pids[i] = 0;
}

/* SIGKILL a process we started (and its group), reap it, bounded. */
static void kill_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    kill(-pid, SIGKILL);
    long long deadline = now_ms() + 5000;
    while (now_ms() < deadline) {
        pid_t r = waitpid(pid, NULL, WNOHANG);
        if (r == pid || r < 0)
            break;
        sleep_ms(2);
    }
    bg_forget(pid);
}

static int teardown(void **state)
{
    for (size_t i = 0; i < sizeof bg_pids / sizeof bg_pids[0]; i++)
        if (bg_pids[i] > 0)
            kill_reap(bg_pids[i]);
    return harness_teardown(state);
}

/* Start argv with stdin fed `in` (then closed), stdout and stderr piped,
 * in its own process group. */
static void bg_start(struct bg *b, const char *const argv[], const char *in)
{
    memset(b, 0, sizeof *b);
    int inp[2], outp[2], errp[2];
    assert_int_equal(pipe2(inp, O_CLOEXEC), 0);
    assert_int_equal(pipe2(outp, O_CLOEXEC), 0);
    assert_int_equal(pipe2(errp, O_CLOEXEC), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0);
        dup2(inp[0], 0);
        dup2(outp[1], 1);
        dup2(errp[1], 2);
        signal(SIGPIPE, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid);
    for (size_t i = 0; i < sizeof bg_pids / sizeof bg_pids[0]; i++)
        if (bg_pids[i] == 0) {
            bg_pids[i] = pid;
            break;
        }
    close(inp[0]);
    close(outp[1]);
    close(errp[1]);
    if (in) {
        size_t n = strlen(in);
        assert_int_equal(write(inp[1], in, n), (ssize_t)n); /* fits the pipe */
    }
    close(inp[1]);
    b->pid = pid;
    b->out_fd = outp[0];
    b->err_fd = errp[0];
    fcntl(b->out_fd, F_SETFL, O_NONBLOCK);
    fcntl(b->err_fd, F_SETFL, O_NONBLOCK);
}

/* Read what is there (waiting at most ms). */
static void bg_pump(struct bg *b, int ms)
{
    struct pollfd p[2];
    nfds_t n = 0;
    if (b->out_fd >= 0)
        p[n++] = (struct pollfd){.fd = b->out_fd, .events = POLLIN};
    if (b->err_fd >= 0)
        p[n++] = (struct pollfd){.fd = b->err_fd, .events = POLLIN};
    if (n == 0) {
        sleep_ms(ms);
        return;
    }
    if (poll(p, n, ms) <= 0)
        return;
    for (nfds_t i = 0; i < n; i++) {
        if (!p[i].revents)
            continue;
        int is_out = p[i].fd == b->out_fd;
        char *dst = is_out ? b->out : b->err;
        size_t cap = is_out ? sizeof b->out : sizeof b->err;
        size_t *len = is_out ? &b->out_len : &b->err_len;
        char tmp[4096];
        ssize_t r = read(p[i].fd, tmp, sizeof tmp);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (r <= 0) {
            close(p[i].fd);
            if (is_out)
                b->out_fd = -1;
            else
                b->err_fd = -1;
            continue;
        }
        size_t take = (size_t)r < cap - 1 - *len ? (size_t)r : cap - 1 - *len;
        memcpy(dst + *len, tmp, take);
        *len += take;
        dst[*len] = '\0';
    }
}

/* Wait until `needle` appears on its stderr. 1 if seen. */
static int bg_wait_err(struct bg *b, const char *needle, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    while (!strstr(b->err, needle) && now_ms() < deadline && b->err_fd >= 0)
        bg_pump(b, 20);
    return strstr(b->err, needle) != NULL;
}

/* Wait for it to exit by itself: its exit status (128+N for a signal),
 * or -1 at the timeout. Its output is read to the end. */
static int bg_wait_exit(struct bg *b, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(b->pid, &st, WNOHANG);
        if (r == b->pid) {
            bg_forget(b->pid);
            long long drain = now_ms() + 500;
            while ((b->out_fd >= 0 || b->err_fd >= 0) && now_ms() < drain)
                bg_pump(b, 20);
            b->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            return b->status;
        }
        if (now_ms() >= deadline)
            return -1;
        bg_pump(b, 10);
    }
}

static void bg_close(struct bg *b)
{
    if (b->pid > 0 && waitpid(b->pid, NULL, WNOHANG) == 0)
        kill_reap(b->pid);
    bg_forget(b->pid);
    if (b->out_fd >= 0)
        close(b->out_fd);
    if (b->err_fd >= 0)
        close(b->err_fd);
    b->out_fd = b->err_fd = -1;
}

/* The number after the last space of the line containing `tag`. */
static unsigned port_after(const char *text, const char *tag, char sep)
{
    const char *p = strstr(text, tag);
    assert_non_null(p);
    const char *eol = strchr(p, '\n');
    assert_non_null(eol);
    const char *q = eol;
    while (q > p && q[-1] != sep)
        q--;
    unsigned port = (unsigned)strtoul(q, NULL, 10);
    assert_true(port > 0 && port < 65536);
    return port;
}

/* ---- running clients ----------------------------------------------------- */

struct run {
    int code;
    char out[1 << 16];
    size_t out_len;
    char err[8192];
    long long ms;
};

static void run(struct run *r, const char *const argv[], const char *in, size_t inlen)
{
    memset(r, 0, sizeof *r);
    long long t0 = now_ms();
    r->code = run_cmd(argv, in, inlen, r->out, sizeof r->out, &r->out_len, r->err,
                      sizeof r->err, CMD_TIMEOUT_MS);
    r->ms = now_ms() - t0;
}

static void what_of(char *buf, size_t cap, const char *const argv[])
{
    buf[0] = '\0';
    for (size_t i = 0; argv[i]; i++) {
        strncat(buf, argv[i], cap - strlen(buf) - 2);
        strncat(buf, " ", cap - strlen(buf) - 1);
    }
}

/* Run a client with stdin `in`; it must exit 0 and print exactly `want`. */
static void expect_client(struct server *s, const char *const argv[], const char *in,
                          const char *want)
{
    struct run r;
    run(&r, argv, in, strlen(in));
    if (r.code != 0 || r.out_len != strlen(want) || memcmp(r.out, want, r.out_len) != 0) {
        char what[512];
        what_of(what, sizeof what, argv);
        fprintf(stderr, "--- %s: exit %d after %lld ms\n--- stdout (%zu bytes):\n%s\n"
                "--- stderr:\n%s---\n", what, r.code, r.ms, r.out_len, r.out, r.err);
        if (s)
            server_dump(s);
        fail_msg("%s: want exit 0 and exactly '%s'", what, want);
    }
}

/* The ack server printed the message `times` times in all. */
static void expect_printed(struct server *s, const char *msg, int times)
{
    char line[256];
    snprintf(line, sizeof line, "Here is the message: %s\n", msg);
    long long deadline = now_ms() + HARNESS_IO_TIMEOUT_MS;
    while (server_output_count(s, line) < times && now_ms() < deadline) {
        server_pump(s);
        sleep_ms(5);
    }
    if (server_output_count(s, line) != times) {
        server_dump(s);
        fail_msg("the server printed '%s' %d times, want %d", msg,
                 server_output_count(s, line), times);
    }
}

static const char *answer_of(const char *service)
{
    return strcmp(service, "ack") == 0 ? ACK : "hello\n";
}

/* ---- nc and socat against ioplex serve --------------------------------------- */

static void test_third_party_tcp(void **state)
{
    (void)state;
    static const char *const services[] = {"ack", "echo"};
    for (size_t m = 0; m < N_MODELS; m++)
        for (size_t v = 0; v < 2; v++) {
            struct server s;
            assert_int_equal(server_startl(&s, "-m", models[m], "-S", services[v],
                                           "127.0.0.1", "0", NULL),
                             0);
            char port[16], addr[64];
            snprintf(port, sizeof port, "%u", s.port);
            snprintf(addr, sizeof addr, "TCP:127.0.0.1:%u", s.port);
            const char *want = answer_of(services[v]);
            expect_client(&s, (const char *const[]){"nc", "-N", "127.0.0.1", port, NULL},
                          "hello\n", want);
            expect_client(&s, (const char *const[]){"socat", "-", addr, NULL},
                          "hello\n", want);
            if (v == 0)
                expect_printed(&s, "hello", 2);
            assert_int_equal(server_stop(&s, 0), 0);
            if (v == 1)
                assert_int_equal(server_output_count(&s, "Here is the message"), 0);
        }
}

static void test_third_party_unix(void **state)
{
    (void)state;
    static const char *const services[] = {"ack", "echo"};
    for (size_t m = 0; m < N_MODELS; m++)
        for (size_t v = 0; v < 2; v++) {
            char path[200], addr[256];
            assert_non_null(harness_tmp_path(path, sizeof path, "nc"));
            struct server s;
            assert_int_equal(server_startl(&s, "-m", models[m], "-S", services[v],
                                           "-U", path, NULL),
                             0);
            snprintf(addr, sizeof addr, "UNIX-CONNECT:%s", path);
            const char *want = answer_of(services[v]);
            expect_client(&s, (const char *const[]){"nc", "-U", "-N", path, NULL},
                          "hello\n", want);
            expect_client(&s, (const char *const[]){"socat", "-", addr, NULL},
                          "hello\n", want);
            if (v == 0)
                expect_printed(&s, "hello", 2);
            assert_int_equal(server_stop(&s, 0), 0);
            struct stat st;
            assert_int_not_equal(lstat(path, &st), 0); /* removed at stop */
        }
}

static void test_third_party_datagram(void **state)
{
    (void)state;
    static const char *const services[] = {"ack", "echo"};
    for (size_t v = 0; v < 2; v++) {
        const char *want = answer_of(services[v]);
        /* UDP */
        struct server s;
        assert_int_equal(server_startl(&s, "-m", "iterative", "-S", services[v], "-u",
                                       "127.0.0.1", "0", NULL),
                         0);
        char port[16], addr[64];
        snprintf(port, sizeof port, "%u", s.port);
        snprintf(addr, sizeof addr, "UDP:127.0.0.1:%u", s.port);
        expect_client(&s, (const char *const[]){"nc", "-u", "-w1", "127.0.0.1", port, NULL},
                      "hello\n", want);
        expect_client(&s, (const char *const[]){"socat", "-", addr, NULL}, "hello\n", want);
        if (v == 0)
            expect_printed(&s, "hello", 2);
        assert_int_equal(server_stop(&s, 0), 0);

        /* Unix datagram: socat binds a name of its own to get the answer. */
        char path[200], cpath[200], uaddr[512];
        assert_non_null(harness_tmp_path(path, sizeof path, "dg"));
        assert_non_null(harness_tmp_path(cpath, sizeof cpath, "dgc"));
        assert_int_equal(server_startl(&s, "-m", "iterative", "-S", services[v], "-u",
                                       "-U", path, NULL),
                         0);
        snprintf(uaddr, sizeof uaddr, "UNIX-SENDTO:%s,bind=%s", path, cpath);
        expect_client(&s, (const char *const[]){"socat", "-", uaddr, NULL}, "hello\n",
                      want);
        unlink(cpath);
        if (v == 0)
            expect_printed(&s, "hello", 1);
        assert_int_equal(server_stop(&s, 0), 0);
    }
}

/* ---- ioplex connect against ioplex serve ------------------------------------ */

static void test_connect_ack(void **state)
{
    (void)state;
    const char *bin = ioplex_bin();
    /* TCP under every model, both address forms. */
    for (size_t m = 0; m < N_MODELS; m++) {
        struct server s;
        assert_int_equal(server_startl(&s, "-m", models[m], "127.0.0.1", "0", NULL), 0);
        char port[16], addr[64];
        snprintf(port, sizeof port, "%u", s.port);
        snprintf(addr, sizeof addr, "tcp://127.0.0.1:%u", s.port);
        expect_client(&s, (const char *const[]){bin, "connect", "127.0.0.1", port, NULL},
                      "hello\n", ACK);
        expect_client(&s, (const char *const[]){bin, "connect", addr, NULL},
                      "hello again\n", ACK);
        expect_printed(&s, "hello", 1);
        expect_printed(&s, "hello again", 1);
        assert_int_equal(server_stop(&s, 0), 0);
    }
    /* Unix stream. */
    char path[200], addr[256];
    assert_non_null(harness_tmp_path(path, sizeof path, "ack"));
    struct server s;
    assert_int_equal(server_startl(&s, "-U", path, NULL), 0);
    snprintf(addr, sizeof addr, "unix://%s", path);
    expect_client(&s, (const char *const[]){bin, "connect", "-U", path, NULL}, "hello\n", ACK);
    expect_client(&s, (const char *const[]){bin, "connect", addr, NULL}, "hello\n", ACK);
    expect_printed(&s, "hello", 2);
    assert_int_equal(server_stop(&s, 0), 0);
}

/* One datagram, one answer: the client exits when it has it, well before
 * the 2 s of silence it would otherwise wait. */
static void expect_dgram_client(struct server *s, const char *const argv[])
{
    struct run r;
    run(&r, argv, "hello\n", 6);
    char what[512];
    what_of(what, sizeof what, argv);
    if (r.code != 0 || r.out_len != strlen(ACK) || memcmp(r.out, ACK, r.out_len) != 0) {
        fprintf(stderr, "--- %s: exit %d\n--- stdout:\n%s\n--- stderr:\n%s---\n", what,
                r.code, r.out, r.err);
        server_dump(s);
        fail_msg("%s: want exit 0 and exactly the ack", what);
    }
    if (r.ms >= 1500)
        fail_msg("%s: took %lld ms although its one answer came at once", what, r.ms);
}

static void test_connect_ack_datagram(void **state)
{
    (void)state;
    const char *bin = ioplex_bin();
    struct server s;
    assert_int_equal(server_startl(&s, "-m", "iterative", "-u", "127.0.0.1", "0", NULL), 0);
    char port[16], addr[64];
    snprintf(port, sizeof port, "%u", s.port);
    snprintf(addr, sizeof addr, "udp://127.0.0.1:%u", s.port);
    expect_dgram_client(&s, (const char *const[]){bin, "connect", "-u", "127.0.0.1", port, NULL});
    expect_dgram_client(&s, (const char *const[]){bin, "connect", addr, NULL});
    expect_printed(&s, "hello", 2);
    assert_int_equal(server_stop(&s, 0), 0);

    char path[200], uaddr[256];
    assert_non_null(harness_tmp_path(path, sizeof path, "ackdg"));
    assert_int_equal(server_startl(&s, "-m", "iterative", "-u", "-U", path, NULL), 0);
    snprintf(uaddr, sizeof uaddr, "unixgram://%s", path);
    expect_dgram_client(&s, (const char *const[]){bin, "connect", "-u", "-U", path, NULL});
    expect_dgram_client(&s, (const char *const[]){bin, "connect", uaddr, NULL});
    expect_printed(&s, "hello", 2);
    assert_int_equal(server_stop(&s, 0), 0);
}

/* 1 MiB of random bytes piped through `ioplex connect` to the echo server
 * comes back byte for byte. */
static void echo_mib(struct server *s, const char *const argv[])
{
    enum { SIZE = 1 << 20 };
    char *in = malloc(SIZE);
    assert_non_null(in);
    unsigned seed = harness_seed();
    fill_random(in, SIZE, &seed);
    char *out = malloc(SIZE + 1);
    if (!out)
        free(in);
    assert_non_null(out);
    char err[4096];
    size_t outlen = 0;
    long long t0 = now_ms();
    int code = run_cmd(argv, in, SIZE, out, SIZE + 1, &outlen, err, sizeof err, 20000);
    long long ms = now_ms() - t0;
    int same = outlen == SIZE && memcmp(in, out, SIZE) == 0;
    size_t first_diff = 0;
    while (first_diff < outlen && first_diff < SIZE && in[first_diff] == out[first_diff])
        first_diff++;
    free(in);
    free(out);
    if (code != 0 || !same) {
        char what[512];
        what_of(what, sizeof what, argv);
        fprintf(stderr, "--- %s: exit %d after %lld ms, %zu bytes back, first "
                "difference at %zu\n--- stderr:\n%s---\n", what, code, ms, outlen,
                first_diff, err);
        server_dump(s);
        fail_msg("%s: 1 MiB echo not returned intact", what);
    }
}

static void test_connect_echo_mib(void **state)
{
    (void)state;
    const char *bin = ioplex_bin();
    static const char *const echo_models[] = {"thread", "iterative"};
    for (size_t m = 0; m < 2; m++) {
        struct server s;
        assert_int_equal(server_startl(&s, "-m", echo_models[m], "-S", "echo",
                                       "127.0.0.1", "0", NULL),
                         0);
        char port[16];
        snprintf(port, sizeof port, "%u", s.port);
        echo_mib(&s, (const char *const[]){bin, "connect", "127.0.0.1", port, NULL});
        assert_int_equal(server_stop(&s, 0), 0);
    }
    char path[200];
    assert_non_null(harness_tmp_path(path, sizeof path, "echo"));
    struct server s;
    assert_int_equal(server_startl(&s, "-m", "fork", "-S", "echo", "-U", path, NULL), 0);
    echo_mib(&s, (const char *const[]){bin, "connect", "-U", path, NULL});
    assert_int_equal(server_stop(&s, 0), 0);
}

/* ---- ioplex connect against servers that are not ioplex --------------------- */

/* nc -l sends "pong\n" (its stdin), half-closes (-N), prints what it got. */
static void against_nc(const char *const nc_argv[], const char *ready,
                       const char *const connect_argv_tail[], int need_port)
{
    struct bg nc;
    bg_start(&nc, nc_argv, "pong\n");
    if (!bg_wait_err(&nc, ready, 5000)) {
        fprintf(stderr, "nc said:\n%s\n", nc.err);
        fail_msg("nc -l did not start listening");
    }
    const char *argv[16];
    size_t n = 0;
    char port[16];
    argv[n++] = ioplex_bin();
    argv[n++] = "connect";
    for (size_t i = 0; connect_argv_tail[i]; i++)
        argv[n++] = connect_argv_tail[i];
    if (need_port) {
        snprintf(port, sizeof port, "%u", port_after(nc.err, ready, ' '));
        argv[n++] = port;
    }
    argv[n] = NULL;
    struct run r;
    run(&r, argv, "ping\n", 5);
    int st = bg_wait_exit(&nc, 5000);
    int ok = r.code == 0 && r.out_len == 5 && memcmp(r.out, "pong\n", 5) == 0 &&
             st == 0 && strcmp(nc.out, "ping\n") == 0;
    if (!ok) {
        char what[512];
        what_of(what, sizeof what, argv);
        fprintf(stderr, "--- %s: exit %d\n--- stdout:\n%s\n--- stderr:\n%s---\n"
                "--- nc: status %d\n--- nc stdout:\n%s\n--- nc stderr:\n%s\n---\n",
                what, r.code, r.out, r.err, st, nc.out, nc.err);
        bg_close(&nc);
        fail_msg("%s against nc -l: want pong back, ping delivered, both exit 0", what);
    }
    bg_close(&nc);
}

static void test_connect_against_nc(void **state)
{
    (void)state;
    against_nc((const char *const[]){"nc", "-l", "-N", "-n", "-v", "127.0.0.1", "0", NULL},
               "Listening on", (const char *const[]){"127.0.0.1", NULL}, 1);
    char path[200];
    assert_non_null(harness_tmp_path(path, sizeof path, "ncl"));
    /* nc -lU says nothing when ready: wait for its socket file. */
    struct bg nc;
    bg_start(&nc, (const char *const[]){"nc", "-l", "-N", "-U", path, NULL}, "pong\n");
    struct stat st;
    long long deadline = now_ms() + 5000;
    while (lstat(path, &st) != 0 && now_ms() < deadline)
        sleep_ms(5);
    assert_int_equal(lstat(path, &st), 0);
    struct run r;
    run(&r, (const char *const[]){ioplex_bin(), "connect", "-U", path, NULL}, "ping\n", 5);
    int status = bg_wait_exit(&nc, 5000);
    if (r.code != 0 || strcmp(r.out, "pong\n") != 0 || status != 0 ||
        strcmp(nc.out, "ping\n") != 0) {
        fprintf(stderr, "connect: exit %d out '%s' err '%s'; nc: status %d out '%s' err '%s'\n",
                r.code, r.out, r.err, status, nc.out, nc.err);
        fail_msg("ioplex connect -U against nc -lU");
    }
    bg_close(&nc);
    unlink(path);

    /* UDP: nc -lu answers the first sender with its stdin. nc never ends
     * a UDP session by itself: it is killed after the check. */
    struct bg ncu;
    bg_start(&ncu, (const char *const[]){"nc", "-l", "-u", "-n", "-v", "127.0.0.1", "0", NULL},
             "pong\n");
    assert_true(bg_wait_err(&ncu, "Bound on", 5000));
    char port[16];
    snprintf(port, sizeof port, "%u", port_after(ncu.err, "Bound on", ' '));
    run(&r, (const char *const[]){ioplex_bin(), "connect", "-u", "127.0.0.1", port, NULL},
        "ping\n", 5);
    deadline = now_ms() + 2000;
    while (strcmp(ncu.out, "ping\n") != 0 && now_ms() < deadline)
        bg_pump(&ncu, 20);
    if (r.code != 0 || strcmp(r.out, "pong\n") != 0 || strcmp(ncu.out, "ping\n") != 0) {
        fprintf(stderr, "connect -u: exit %d out '%s' err '%s'; nc: out '%s' err '%s'\n",
                r.code, r.out, r.err, ncu.out, ncu.err);
        bg_close(&ncu);
        fail_msg("ioplex connect -u against nc -lu");
    }
    bg_close(&ncu);
}

/* socat as an echo server (PIPE): 64 KiB of random bytes come back. */
static void socat_echo(const char *listen, const char *const tail[], int need_port)
{
    struct bg so;
    bg_start(&so, (const char *const[]){"socat", "-d", "-d", listen, "PIPE", NULL}, NULL);
    if (!bg_wait_err(&so, "listening on", 5000)) {
        fprintf(stderr, "socat said:\n%s\n", so.err);
        fail_msg("socat %s did not start listening", listen);
    }
    const char *argv[16];
    size_t n = 0;
    char port[16];
    argv[n++] = ioplex_bin();
    argv[n++] = "connect";
    for (size_t i = 0; tail[i]; i++)
        argv[n++] = tail[i];
    if (need_port) {
        snprintf(port, sizeof port, "%u", port_after(so.err, "listening on", ':'));
        argv[n++] = port;
    }
    argv[n] = NULL;

    enum { SIZE = 64 * 1024 };
    static char in[SIZE], out[SIZE + 1];
    unsigned seed = harness_seed();
    fill_random(in, SIZE, &seed);
    char err[4096];
    size_t outlen = 0;
    int code = run_cmd(argv, in, SIZE, out, sizeof out, &outlen, err, sizeof err,
                       CMD_TIMEOUT_MS);
    int st = bg_wait_exit(&so, 5000);
    if (code != 0 || outlen != SIZE || memcmp(in, out, SIZE) != 0) {
        char what[512];
        what_of(what, sizeof what, argv);
        fprintf(stderr, "--- %s: exit %d, %zu bytes back\n--- stderr:\n%s---\n"
                "--- socat: status %d\n%s\n", what, code, outlen, err, st, so.err);
        bg_close(&so);
        fail_msg("%s against socat %s PIPE: echo not intact", what, listen);
    }
    bg_close(&so);
}

static void test_connect_against_socat(void **state)
{
    (void)state;
    /* "listening on AF=2 127.0.0.1:PORT" */
    socat_echo("TCP-LISTEN:0,bind=127.0.0.1", (const char *const[]){"127.0.0.1", NULL}, 1);
    char path[200], listen[256];
    assert_non_null(harness_tmp_path(path, sizeof path, "socat"));
    snprintf(listen, sizeof listen, "UNIX-LISTEN:%s", path);
    socat_echo(listen, (const char *const[]){"-U", path, NULL}, 0);
    unlink(path);
}

/* ---- ioplex connect against a peer of the test's own ------------------------- */

enum peer_kind {
    PEER_SHUT_WR, /* shuts its write side at once, then reads to the end */
    PEER_RESET,   /* reads RESET_AFTER bytes, then resets (RST) */
};
#define RESET_AFTER 65536

/* What the peer saw, written to the test down a pipe. */
struct peer_result {
    long long got;   /* bytes read before end-of-file */
    long long same;  /* of them, equal to what the test sent */
    int eof;         /* read to a clean end-of-file */
};

struct peer {
    pid_t pid;
    int result_fd;
    unsigned port;
};

/* A peer in a child process on 127.0.0.1, port chosen by the kernel;
 * `want` is what the client should deliver (compared byte by byte). */
static void peer_start(struct peer *pe, enum peer_kind kind, const char *want, size_t len)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 1), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    int rp[2];
    assert_int_equal(pipe2(rp, O_CLOEXEC), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(rp[0]);
        alarm(30); /* bounds the peer whatever the client does */
        struct peer_result res = {0};
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            _exit(1);
        if (kind == PEER_SHUT_WR)
            shutdown(fd, SHUT_WR);
        char buf[16384];
        for (;;) {
            size_t want_now = sizeof buf;
            if (kind == PEER_RESET && RESET_AFTER - res.got < (long long)want_now)
                want_now = (size_t)(RESET_AFTER - res.got);
            if (want_now == 0)
                break;
            ssize_t n = read(fd, buf, want_now);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                res.eof = n == 0;
                break;
            }
            for (ssize_t i = 0; i < n; i++)
                if ((size_t)(res.got + i) < len && buf[i] == want[res.got + i])
                    res.same++;
            res.got += n;
        }
        if (kind == PEER_RESET) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0}; /* close sends RST */
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        close(fd);
        ssize_t w = write(rp[1], &res, sizeof res);
        _exit(w == (ssize_t)sizeof res ? 0 : 1);
    }
    close(lfd);
    close(rp[1]);
    for (size_t i = 0; i < sizeof bg_pids / sizeof bg_pids[0]; i++)
        if (bg_pids[i] == 0) {
            bg_pids[i] = pid;
            break;
        }
    pe->pid = pid;
    pe->result_fd = rp[0];
    pe->port = ntohs(sa.sin_port);
}

/* The peer's result (bounded wait); the peer is reaped. */
static void peer_finish(struct peer *pe, struct peer_result *res)
{
    memset(res, 0, sizeof *res);
    res->got = -1;
    struct pollfd p = {.fd = pe->result_fd, .events = POLLIN};
    if (poll(&p, 1, 10000) == 1 && read(pe->result_fd, res, sizeof *res) != sizeof *res)
        res->got = -1;
    close(pe->result_fd);
    kill_reap(pe->pid);
}

/* 1 MiB of random bytes piped to `ioplex connect` to a peer that behaves
 * as `how` says; what the client did in *r, what the peer read in *res. */
enum { PEER_INPUT = 1 << 20 };
static void connect_to_peer(enum peer_kind how, struct run *r, struct peer_result *res)
{
    char *in = malloc(PEER_INPUT);
    assert_non_null(in);
    unsigned seed = harness_seed();
    fill_random(in, PEER_INPUT, &seed);
    struct peer pe;
    peer_start(&pe, how, in, PEER_INPUT);
    char port[16];
    snprintf(port, sizeof port, "%u", pe.port);
    run(r, (const char *const[]){ioplex_bin(), "connect", "127.0.0.1", port, NULL}, in,
        PEER_INPUT);
    free(in);
    peer_finish(&pe, res);
}

/* A peer's FIN ends reading, not writing: piped stdin is delivered whole
 * to a peer that shuts its write side at once (nc -l -N < /dev/null), as
 * nc -N does, then half-closed, and the client exits 0. */
static void test_connect_peer_half_closed(void **state)
{
    (void)state;
    enum { SIZE = PEER_INPUT };
    struct run r;
    struct peer_result res;
    connect_to_peer(PEER_SHUT_WR, &r, &res);
    if (r.code != 0 || r.out_len != 0 || r.err[0] || res.got != SIZE || res.same != SIZE ||
        !res.eof) {
        fprintf(stderr, "--- connect: exit %d, %zu bytes out\n--- stderr:\n%s---\n"
                "--- peer: read %lld bytes (%lld as sent), %s\n", r.code, r.out_len, r.err,
                res.got, res.same, res.eof ? "then end-of-file" : "no clean end");
        fail_msg("want all %d bytes delivered to a peer that shut its write side, "
                 "then end-of-file, exit 0 and nothing on stderr", SIZE);
    }
}

/* A peer that resets before all of stdin is sent: the input was not
 * delivered, so the client exits non-zero with one line. */
static void test_connect_peer_resets(void **state)
{
    (void)state;
    enum { SIZE = PEER_INPUT };
    struct run r;
    struct peer_result res;
    connect_to_peer(PEER_RESET, &r, &res);
    int lines = 0;
    for (const char *c = r.err; *c; c++)
        lines += *c == '\n';
    if (r.code == 0 || r.code < 0 || r.code >= 128 || lines != 1 ||
        strncmp(r.err, "ioplex connect: ", 16) != 0 || res.got != RESET_AFTER) {
        fprintf(stderr, "--- connect: exit %d\n--- stderr:\n%s---\n--- peer: read %lld bytes\n",
                r.code, r.err, res.got);
        fail_msg("want a non-zero exit and one line when the peer resets before "
                 "stdin is delivered");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_third_party_tcp, teardown),
        cmocka_unit_test_teardown(test_third_party_unix, teardown),
        cmocka_unit_test_teardown(test_third_party_datagram, teardown),
        cmocka_unit_test_teardown(test_connect_ack, teardown),
        cmocka_unit_test_teardown(test_connect_ack_datagram, teardown),
        cmocka_unit_test_teardown(test_connect_echo_mib, teardown),
        cmocka_unit_test_teardown(test_connect_against_nc, teardown),
        cmocka_unit_test_teardown(test_connect_against_socat, teardown),
        cmocka_unit_test_teardown(test_connect_peer_half_closed, teardown),
        cmocka_unit_test_teardown(test_connect_peer_resets, teardown),
    };
    return cmocka_run_group_tests_name("integration.clients", tests, NULL, NULL);
}
