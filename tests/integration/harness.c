/* The integration-test harness; see harness.h. */
#define _GNU_SOURCE
#include "harness.h"
#include "ioplex.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* cmocka, for server_stop_clean()'s failure (after what it needs). */
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#ifndef IOPLEX_BIN
#error "IOPLEX_BIN must name the ioplex binary"
#endif

#define MAX_SERVERS 64
#define MAX_CLIENTS 1024
#define CONNECT_TIMEOUT_MS 5000
#define KILL_WAIT_MS 5000

/* ---- time ---------------------------------------------------------------- */

long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void sleep_ms(int ms)
{
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
}

/* Milliseconds left until deadline, at least 0. */
static int left_ms(long long deadline)
{
    long long l = deadline - now_ms();
    return l < 0 ? 0 : l > 1000000 ? 1000000 : (int)l;
}

/* poll() that retries on EINTR within the same bound. */
static int poll_until(struct pollfd *p, nfds_t n, long long deadline)
{
    for (;;) {
        int r = poll(p, n, left_ms(deadline));
        if (r >= 0 || errno != EINTR)
            return r;
    }
}

/* ---- registries of what the harness started ------------------------------ */

struct reg_server {
    pid_t pid;
    int out_fd, err_fd;
};

static struct reg_server servers[MAX_SERVERS];
static int clients[MAX_CLIENTS];
static size_t nclients;
static char tmpdir[64];
static pid_t owner_pid;

static void reg_server_add(pid_t pid, int out_fd, int err_fd)
{
    for (size_t i = 0; i < MAX_SERVERS; i++)
        if (servers[i].pid == 0) {
            servers[i] = (struct reg_server){pid, out_fd, err_fd};
            return;
        }
    fprintf(stderr, "harness: more than %d servers at once; %d is not tracked\n",
            MAX_SERVERS, (int)pid);
}

static void reg_server_remove(pid_t pid)
{
    for (size_t i = 0; i < MAX_SERVERS; i++)
        if (servers[i].pid == pid)
            servers[i].pid = 0;
}

static void reg_client_add(int fd)
{
    if (nclients < MAX_CLIENTS)
        clients[nclients++] = fd;
}

static int reg_client_remove(int fd)
{
    for (size_t i = 0; i < nclients; i++)
        if (clients[i] == fd) {
            clients[i] = clients[--nclients];
            return 1;
        }
    return 0;
}

/* Kill a process we started and its group, and reap it (bounded). Returns
 * the wait status, or -1 if it could not be reaped. */
static int kill_and_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    kill(-pid, SIGKILL);
    long long deadline = now_ms() + KILL_WAIT_MS;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        if (r < 0 || now_ms() >= deadline)
            return -1;
        sleep_ms(2);
    }
}

static void kill_all(void)
{
    for (size_t i = 0; i < MAX_SERVERS; i++) {
        if (servers[i].pid == 0)
            continue;
        fprintf(stderr, "harness: killing server %d left running\n",
                (int)servers[i].pid);
        kill_and_reap(servers[i].pid);
        if (servers[i].out_fd >= 0)
            close(servers[i].out_fd);
        if (servers[i].err_fd >= 0)
            close(servers[i].err_fd);
        servers[i].pid = 0;
    }
    while (nclients > 0)
        close(clients[--nclients]);
}

static void remove_tmpdir(void)
{
    if (!tmpdir[0])
        return;
    DIR *d = opendir(tmpdir);
    if (d) {
        struct dirent *e;
        char p[sizeof tmpdir + 256];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(tmpdir);
    tmpdir[0] = '\0';
}

static void at_exit(void)
{
    if (getpid() != owner_pid) /* a forked child that failed to exec */
        return;
    kill_all();
    remove_tmpdir();
}

__attribute__((constructor)) static void harness_init(void)
{
    owner_pid = getpid();
    signal(SIGPIPE, SIG_IGN);
    atexit(at_exit);
}

int harness_teardown(void **state)
{
    (void)state;
    kill_all();
    return 0;
}

/* In a child before exec: default signal dispositions, nothing blocked,
 * only descriptors 0-2 open, its own process group, killed if the test
 * process dies. */
static void child_prepare(void)
{
    setpgid(0, 0);
    /* Should the test process die without cleaning up (killed at a ctest
     * timeout), take the child with it. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != owner_pid)
        _exit(127);
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536)
        max = 65536;
    for (int fd = 3; fd < max; fd++)
        close(fd);
}

/* ---- the tool -------------------------------------------------------------- */

const char *ioplex_bin(void)
{
    const char *e = getenv("IOPLEX_BIN");
    return e && *e ? e : IOPLEX_BIN;
}

const char *harness_model(int argc, char **argv)
{
    if (argc < 2 || !argv[1][0]) {
        fprintf(stderr, "usage: %s MODEL\n", argc > 0 ? argv[0] : "test");
        exit(2);
    }
    return argv[1];
}

int harness_is_event_model(const char *m)
{
    static const char *const ev[] = {"select", "poll", "epoll", "kqueue", "uring", NULL};
    for (int i = 0; ev[i]; i++)
        if (strcmp(m, ev[i]) == 0)
            return 1;
    return 0;
}

char chargen_at(size_t pos)
{
    size_t k = pos / 74, i = pos % 74;
    if (i == 72)
        return '\r';
    if (i == 73)
        return '\n';
    return (char)(' ' + (k + i) % 95);
}

int have_ipv6_loopback(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* ---- servers --------------------------------------------------------------- */

/* Append to a NUL-terminated buffer of cap bytes; when it would overflow,
 * drop the oldest half (or more), counting the dropped bytes. */
static void append(char *buf, size_t cap, size_t *len, size_t *dropped,
                   const char *data, size_t n)
{
    size_t room = cap - 1;
    if (n > room) {
        *dropped += *len + n - room;
        data += n - room;
        n = room;
        *len = 0;
    }
    if (*len + n > room) {
        size_t drop = *len / 2;
        if (*len - drop + n > room)
            drop = *len + n - room;
        memmove(buf, buf + drop, *len - drop);
        *len -= drop;
        *dropped += drop;
    }
    memcpy(buf + *len, data, n);
    *len += n;
    buf[*len] = '\0';
}

/* Read what is there from one of the server's pipes; closes it at EOF. */
static void pump_fd(struct server *s, int *fd, int is_out)
{
    char buf[16384];
    size_t err_dropped = 0;
    while (*fd >= 0) {
        ssize_t n = read(*fd, buf, sizeof buf);
        if (n > 0) {
            if (is_out)
                append(s->out, sizeof s->out, &s->out_len, &s->out_dropped, buf, (size_t)n);
            else
                append(s->err, sizeof s->err, &s->err_len, &err_dropped, buf, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EINTR))
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        close(*fd); /* EOF or a real error */
        *fd = -1;
        for (size_t i = 0; i < MAX_SERVERS; i++)
            if (servers[i].pid == s->pid && s->pid > 0) {
                if (is_out)
                    servers[i].out_fd = -1;
                else
                    servers[i].err_fd = -1;
            }
    }
}

int server_pump(struct server *s)
{
    pump_fd(s, &s->out_fd, 1);
    pump_fd(s, &s->err_fd, 0);
    return s->out_fd < 0 && s->err_fd < 0;
}

/* Wait for either pipe to have something, bounded by deadline. */
static void wait_pipes(struct server *s, long long deadline, int max_ms)
{
    struct pollfd p[2];
    nfds_t n = 0;
    if (s->out_fd >= 0)
        p[n++] = (struct pollfd){.fd = s->out_fd, .events = POLLIN};
    if (s->err_fd >= 0)
        p[n++] = (struct pollfd){.fd = s->err_fd, .events = POLLIN};
    int ms = left_ms(deadline);
    if (max_ms >= 0 && ms > max_ms)
        ms = max_ms;
    if (n == 0) {
        sleep_ms(ms);
        return;
    }
    poll(p, n, ms);
}

static int decode_status(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

/* After the server process is gone: read the rest of its output, kill any
 * process of its group that outlived it, close the pipes. */
static void finish(struct server *s)
{
    /* Whatever it wrote before exiting is in the pipes already. */
    server_pump(s);
    if (kill(-s->pid, 0) == 0) {
        s->leftovers = 1;
        fprintf(stderr, "harness: server %d exited leaving processes in its "
                "group; killing them\n", (int)s->pid);
        kill(-s->pid, SIGKILL);
        long long deadline = now_ms() + 1000;
        while ((s->out_fd >= 0 || s->err_fd >= 0) && now_ms() < deadline) {
            wait_pipes(s, deadline, 50);
            server_pump(s);
        }
    }
    if (s->out_fd >= 0)
        close(s->out_fd);
    if (s->err_fd >= 0)
        close(s->err_fd);
    s->out_fd = s->err_fd = -1;
    reg_server_remove(s->pid);
}

int server_running(struct server *s)
{
    if (s->exited || s->pid <= 0)
        return 0;
    int st;
    pid_t r = waitpid(s->pid, &st, WNOHANG);
    if (r == 0)
        return 1;
    s->exited = 1;
    s->status = r == s->pid ? decode_status(st) : -1;
    finish(s);
    return 0;
}

/* Parse "tcp://127.0.0.1:41234", "tcp://[::1]:5", "unix:///p", ... */
static int parse_address(struct server *s, const char *a)
{
    static const struct {
        const char *scheme;
        enum server_transport t;
    } schemes[] = {
        {"tcp://", SERVER_TCP}, {"udp://", SERVER_UDP},
        {"unixgram://", SERVER_UNIXGRAM}, {"unix://", SERVER_UNIX},
    };
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        size_t n = strlen(schemes[i].scheme);
        if (strncmp(a, schemes[i].scheme, n) != 0)
            continue;
        const char *rest = a + n;
        s->transport = schemes[i].t;
        if (s->transport == SERVER_UNIX || s->transport == SERVER_UNIXGRAM) {
            if (rest[0] != '/' || strlen(rest) >= sizeof s->path)
                return -1;
            s->family = AF_UNIX;
            strcpy(s->path, rest);
            return 0;
        }
        const char *colon;
        if (rest[0] == '[') {
            const char *end = strchr(rest, ']');
            if (!end || end[1] != ':' || (size_t)(end - rest - 1) >= sizeof s->host)
                return -1;
            memcpy(s->host, rest + 1, (size_t)(end - rest - 1));
            s->host[end - rest - 1] = '\0';
            colon = end + 1;
        } else {
            colon = strrchr(rest, ':');
            if (!colon || (size_t)(colon - rest) >= sizeof s->host)
                return -1;
            memcpy(s->host, rest, (size_t)(colon - rest));
            s->host[colon - rest] = '\0';
        }
        char *end;
        unsigned long port = strtoul(colon + 1, &end, 10);
        if (*end || port == 0 || port > 65535)
            return -1;
        s->port = (unsigned)port;
        struct in6_addr a6;
        struct in_addr a4;
        if (inet_pton(AF_INET, s->host, &a4) == 1)
            s->family = AF_INET;
        else if (inet_pton(AF_INET6, s->host, &a6) == 1)
            s->family = AF_INET6;
        else
            return -1; /* "*" (any address): the tests always name a host */
        return 0;
    }
    return -1;
}

/* Copy, truncating to fit. */
static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Look for "ioplex serve: <svc> on <addr> (model <m>)" in complete lines. */
static int find_address_line(struct server *s)
{
    static const char prefix[] = "ioplex serve: ";
    const char *line = s->err;
    for (;;) {
        const char *nl = strchr(line, '\n');
        if (!nl)
            return 0;
        if (strncmp(line, prefix, sizeof prefix - 1) == 0) {
            char buf[512];
            size_t n = (size_t)(nl - line);
            if (n < sizeof buf) {
                memcpy(buf, line, n);
                buf[n] = '\0';
                char *svc = buf + sizeof prefix - 1;
                char *on = strstr(svc, " on ");
                char *model = on ? strstr(on, " (model ") : NULL;
                if (on && model && buf[n - 1] == ')') {
                    *on = '\0';
                    *model = '\0';
                    buf[n - 1] = '\0';
                    copy_str(s->service, sizeof s->service, svc);
                    copy_str(s->address, sizeof s->address, on + 4);
                    copy_str(s->model, sizeof s->model, model + 8);
                    if (parse_address(s, s->address) != 0) {
                        fprintf(stderr, "harness: cannot parse the address '%s'\n",
                                s->address);
                        return -1;
                    }
                    return 1;
                }
            }
        }
        line = nl + 1;
    }
}

static char last_cmdline[1024];

int server_start(struct server *s, const char *const args[])
{
    memset(s, 0, offsetof(struct server, out));
    s->out_len = s->out_dropped = s->err_len = 0;
    s->out[0] = s->err[0] = '\0';
    s->exited = s->status = s->leftovers = 0;
    s->out_fd = s->err_fd = -1;

    size_t nargs = 0;
    while (args[nargs])
        nargs++;
    const char **argv = calloc(nargs + 3, sizeof *argv);
    if (!argv)
        return -1;
    argv[0] = ioplex_bin();
    argv[1] = "serve";
    size_t off = (size_t)snprintf(last_cmdline, sizeof last_cmdline, "%s serve", argv[0]);
    for (size_t i = 0; i < nargs; i++) {
        argv[i + 2] = args[i];
        if (off < sizeof last_cmdline)
            off += (size_t)snprintf(last_cmdline + off, sizeof last_cmdline - off,
                                    " %s", args[i]);
    }

    int outp[2], errp[2];
    if (pipe2(outp, O_CLOEXEC) != 0) {
        free(argv);
        return -1;
    }
    if (pipe2(errp, O_CLOEXEC) != 0) {
        close(outp[0]);
        close(outp[1]);
        free(argv);
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("harness: fork");
        close(outp[0]), close(outp[1]), close(errp[0]), close(errp[1]);
        free(argv);
        return -1;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);
        if (null < 0 || dup2(null, 0) < 0 || dup2(outp[1], 1) < 0 || dup2(errp[1], 2) < 0)
            _exit(127);
        child_prepare();
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "harness: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    free(argv);
    setpgid(pid, pid); /* also done by the child: whichever runs first */
    close(outp[1]);
    close(errp[1]);
    s->pid = pid;
    s->out_fd = outp[0];
    s->err_fd = errp[0];
    fcntl(s->out_fd, F_SETFL, O_NONBLOCK);
    fcntl(s->err_fd, F_SETFL, O_NONBLOCK);
    fcntl(s->out_fd, F_SETPIPE_SZ, 1 << 20); /* best effort */
    reg_server_add(pid, s->out_fd, s->err_fd);

    long long deadline = now_ms() + HARNESS_START_TIMEOUT_MS;
    const char *why = "timed out";
    for (;;) {
        int eof = server_pump(s);
        int r = find_address_line(s);
        if (r > 0)
            return 0;
        if (r < 0) {
            why = "unparsable address line";
            break;
        }
        if (eof || !server_running(s)) {
            server_running(s);
            why = "the server ended before printing its address";
            break;
        }
        if (now_ms() >= deadline)
            break;
        wait_pipes(s, deadline, 50);
    }
    fprintf(stderr, "harness: server_start failed (%s): %s\n", why, last_cmdline);
    if (!s->exited) {
        kill_and_reap(s->pid);
        s->exited = 1;
        s->status = -1;
        finish(s);
    } else {
        fprintf(stderr, "harness: it exited with status %d\n", s->status);
    }
    fprintf(stderr, "harness: its stderr:\n%s\nharness: its stdout:\n%s\n", s->err, s->out);
    return -1;
}

const struct test_transport harness_transports[] = {
    {"tcp4", SERVER_TCP, 0},  {"tcp6", SERVER_TCP, 1},  {"unix", SERVER_UNIX, 0},
    {"udp4", SERVER_UDP, 0},  {"udp6", SERVER_UDP, 1},  {"unixgram", SERVER_UNIXGRAM, 0},
    {NULL, 0, 0},
};

const struct test_transport *harness_transport(const char *name)
{
    for (const struct test_transport *t = harness_transports; t->name; t++)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

int transport_is_dgram(const struct test_transport *t)
{
    return t->kind == SERVER_UDP || t->kind == SERVER_UNIXGRAM;
}

int server_start_on(struct server *s, const char *model, const char *transport,
                    const char *service, const char *const extra[])
{
    const struct test_transport *t = harness_transport(transport);
    if (!t) {
        fprintf(stderr, "harness: unknown transport '%s'\n", transport);
        return -1;
    }
    const char *args[64];
    size_t n = 0;
    char path[108];
    if (model) {
        args[n++] = "-m";
        args[n++] = model;
    }
    if (service) {
        args[n++] = "-S";
        args[n++] = service;
    }
    for (size_t i = 0; extra && extra[i]; i++) {
        if (n >= 50) {
            fprintf(stderr, "harness: too many arguments\n");
            return -1;
        }
        args[n++] = extra[i];
    }
    if (transport_is_dgram(t))
        args[n++] = "-u";
    if (t->kind == SERVER_UNIX || t->kind == SERVER_UNIXGRAM) {
        if (!harness_tmp_path(path, sizeof path, t->name))
            return -1;
        args[n++] = "-U";
        args[n++] = path;
    } else {
        if (t->ipv6)
            args[n++] = "-6";
        args[n++] = t->ipv6 ? "::1" : "127.0.0.1";
        args[n++] = "0";
    }
    args[n] = NULL;
    return server_start(s, args);
}

int model_serves_datagrams(const char *model)
{
    for (const struct iop_model_info *const *m = iop_models(); *m; m++)
        if (strcmp((*m)->name, model) == 0)
            return (*m)->datagram ? 1 : 0;
    return -1;
}

int server_startl(struct server *s, ...)
{
    const char *args[64];
    size_t n = 0;
    va_list ap;
    va_start(ap, s);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        if (n + 1 >= sizeof args / sizeof args[0]) {
            va_end(ap);
            fprintf(stderr, "harness: too many arguments to server_startl\n");
            return -1;
        }
        args[n++] = a;
    }
    va_end(ap);
    args[n] = NULL;
    return server_start(s, args);
}

static int wait_needle(struct server *s, int on_stdout, const char *needle,
                       int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    size_t nlen = strlen(needle);
    for (;;) {
        server_pump(s);
        const char *buf = on_stdout ? s->out : s->err;
        size_t len = on_stdout ? s->out_len : s->err_len;
        if (memmem(buf, len, needle, nlen))
            return 1;
        if ((on_stdout ? s->out_fd : s->err_fd) < 0 || now_ms() >= deadline)
            return 0;
        wait_pipes(s, deadline, 100);
    }
}

int server_wait_output(struct server *s, const char *needle, int timeout_ms)
{
    return wait_needle(s, 1, needle, timeout_ms);
}

int server_wait_stderr(struct server *s, const char *needle, int timeout_ms)
{
    return wait_needle(s, 0, needle, timeout_ms);
}

/* Non-overlapping occurrences of needle in buf[0 .. len). */
static int count_in(const char *buf, size_t len, const char *needle)
{
    size_t nlen = strlen(needle);
    if (nlen == 0)
        return 0;
    int count = 0;
    const char *p = buf, *end = buf + len;
    while ((p = memmem(p, (size_t)(end - p), needle, nlen)) != NULL) {
        count++;
        p += nlen;
    }
    return count;
}

int server_output_count(struct server *s, const char *needle)
{
    server_pump(s);
    return count_in(s->out, s->out_len, needle);
}

int server_stderr_count(struct server *s, const char *needle)
{
    server_pump(s);
    return count_in(s->err, s->err_len, needle);
}

int server_wait_exit(struct server *s, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        if (!server_running(s))
            return s->status;
        if (now_ms() >= deadline)
            return -1;
        server_pump(s);
        wait_pipes(s, deadline, 10);
    }
}

void server_kill(struct server *s)
{
    if (s->pid <= 0 || s->exited)
        return;
    int st = kill_and_reap(s->pid);
    s->exited = 1;
    s->status = -1;
    (void)st;
    finish(s);
}

int server_stop(struct server *s, int timeout_ms)
{
    if (s->pid <= 0)
        return -1;
    if (!server_running(s))
        return s->status;
    if (timeout_ms <= 0)
        timeout_ms = HARNESS_STOP_TIMEOUT_MS;
    kill(s->pid, SIGTERM);
    int r = server_wait_exit(s, timeout_ms);
    if (r == -1 && !s->exited) {
        fprintf(stderr, "harness: server %d did not exit within %d ms of SIGTERM; "
                "killing it\n", (int)s->pid, timeout_ms);
        server_kill(s);
        return -1;
    }
    return r;
}

void server_stop_clean(struct server *s)
{
    int st = server_stop(s, 0);
    if (st != 0) {
        server_dump(s);
        fail_msg("server exited with status %d after SIGTERM, expected 0", st);
    }
    if (s->leftovers) {
        server_dump(s);
        fail_msg("processes of the server's group outlived it (killed)");
    }
}

void server_dump(struct server *s)
{
    server_pump(s);
    fprintf(stderr, "---- server %d: %s\n", (int)s->pid, s->address);
    if (s->exited)
        fprintf(stderr, "---- exited, status %d\n", s->status);
    fprintf(stderr, "---- stderr (%zu bytes):\n%s", s->err_len, s->err);
    fprintf(stderr, "---- stdout (%zu bytes, %zu dropped):\n%.4000s%s\n----\n",
            s->out_len, s->out_dropped, s->out, s->out_len > 4000 ? "..." : "");
}

/* ---- clients --------------------------------------------------------------- */

static int set_nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -1;
    int nfl = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
    if (nfl != fl && fcntl(fd, F_SETFL, nfl) < 0)
        return -1;
    return fl & O_NONBLOCK ? 1 : 0;
}

int client_connect(const struct server *s)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    memset(&ss, 0, sizeof ss);
    int dgram = s->transport == SERVER_UDP || s->transport == SERVER_UNIXGRAM;
    if (s->family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)s->port);
        inet_pton(AF_INET, s->host, &a->sin_addr);
        len = sizeof *a;
    } else if (s->family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)s->port);
        inet_pton(AF_INET6, s->host, &a->sin6_addr);
        len = sizeof *a;
    } else if (s->family == AF_UNIX) {
        struct sockaddr_un *a = (struct sockaddr_un *)&ss;
        a->sun_family = AF_UNIX;
        snprintf(a->sun_path, sizeof a->sun_path, "%s", s->path);
        len = (socklen_t)sizeof *a;
    } else {
        fprintf(stderr, "harness: client_connect: server has no address\n");
        return -1;
    }
    int fd = socket(s->family, (dgram ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "harness: socket: %s\n", strerror(errno));
        return -1;
    }
    if (s->transport == SERVER_UNIXGRAM) {
        sa_family_t fam = AF_UNIX; /* autobind: an abstract name */
        if (bind(fd, (struct sockaddr *)&fam, sizeof fam) != 0) {
            fprintf(stderr, "harness: autobind: %s\n", strerror(errno));
            close(fd);
            return -1;
        }
    }
    if (s->transport == SERVER_TCP) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    set_nonblock(fd, 1);
    int r = connect(fd, (struct sockaddr *)&ss, len);
    if (r != 0 && (errno == EINPROGRESS || errno == EAGAIN)) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        r = poll_until(&p, 1, now_ms() + CONNECT_TIMEOUT_MS);
        if (r == 0) {
            errno = ETIMEDOUT;
            r = -1;
        } else if (r > 0) {
            int e = 0;
            socklen_t el = sizeof e;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el);
            errno = e;
            r = e ? -1 : 0;
        }
    }
    if (r != 0) {
        fprintf(stderr, "harness: connect to %s: %s\n", s->address, strerror(errno));
        close(fd);
        return -1;
    }
    set_nonblock(fd, 0);
    reg_client_add(fd);
    return fd;
}

void client_close(int fd)
{
    if (fd < 0)
        return;
    reg_client_remove(fd);
    close(fd);
}

/* ---- I/O --------------------------------------------------------------------- */

uint32_t rng_next(unsigned *seed)
{
    uint32_t x = *seed ? (uint32_t)*seed : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *seed = x;
    return x;
}

void fill_random(void *buf, size_t len, unsigned *seed)
{
    unsigned char *p = buf;
    while (len >= 4) {
        uint32_t r = rng_next(seed);
        memcpy(p, &r, 4);
        p += 4;
        len -= 4;
    }
    if (len) {
        uint32_t r = rng_next(seed);
        memcpy(p, &r, len);
    }
}

unsigned harness_seed(void)
{
    static unsigned seed;
    if (seed)
        return seed;
    const char *e = getenv("IOPLEX_TEST_SEED");
    if (e && *e)
        seed = (unsigned)strtoul(e, NULL, 0);
    else
        seed = (unsigned)(now_ms() ^ ((long long)getpid() << 16));
    if (!seed)
        seed = 1;
    fprintf(stderr, "harness: seed %u (set IOPLEX_TEST_SEED=%u to replay)\n", seed, seed);
    return seed;
}

/* A random piece size for a write of `left` bytes out of `total`. */
static size_t piece_size(size_t total, size_t left, unsigned *seed)
{
    size_t max = total / 4;
    if (max < 1)
        max = 1;
    if (max > 4096)
        max = 4096;
    size_t n = 1 + rng_next(seed) % max;
    if (rng_next(seed) & 1)
        n = 1 + rng_next(seed) % n; /* smaller pieces likelier */
    return n < left ? n : left;
}

/* Wait for fd to be ready for `events` until deadline: 1 ready, 0 timeout,
 * -1 error. */
static int wait_fd(int fd, short events, long long deadline)
{
    struct pollfd p = {.fd = fd, .events = events};
    int r = poll_until(&p, 1, deadline);
    if (r < 0)
        return -1;
    if (r == 0) {
        errno = ETIMEDOUT;
        return 0;
    }
    return 1;
}

/* Write n bytes, waiting (bounded) when the socket is full. */
static int write_piece(int fd, const char *p, size_t n, long long deadline)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_fd(fd, POLLOUT, deadline) <= 0)
                return -1;
            continue;
        }
        return -1;
    }
    return 0;
}

int send_fragmented(int fd, const void *buf, size_t len, unsigned *seed)
{
    const char *p = buf;
    size_t left = len;
    while (left > 0) {
        size_t n = piece_size(len, left, seed);
        if (write_piece(fd, p, n, now_ms() + HARNESS_IO_TIMEOUT_MS) != 0)
            return -1;
        p += n;
        left -= n;
        if (left > 0 && rng_next(seed) % 16 == 0)
            sleep_ms(1);
    }
    return 0;
}

int send_all(int fd, const void *buf, size_t len)
{
    return write_piece(fd, buf, len, now_ms() + HARNESS_IO_TIMEOUT_MS);
}

/* read() on a descriptor that may be non-blocking: waits (bounded) first.
 * Returns bytes, 0 at EOF, -1 on error or timeout. */
static ssize_t read_some(int fd, void *buf, size_t cap, long long deadline)
{
    for (;;) {
        int r = wait_fd(fd, POLLIN, deadline);
        if (r <= 0)
            return -1;
        ssize_t n = recv(fd, buf, cap, MSG_DONTWAIT);
        if (n < 0 && errno == ENOTSOCK)
            n = read(fd, buf, cap);
        if (n >= 0)
            return n;
        if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
    }
}

ssize_t recv_exact(int fd, void *buf, size_t len, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    size_t got = 0;
    while (got < len) {
        ssize_t n = read_some(fd, (char *)buf + got, len - got, deadline);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

ssize_t recv_all(int fd, char *buf, size_t cap, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    size_t got = 0;
    for (;;) {
        char extra;
        char *dst = got < cap ? buf + got : &extra;
        size_t room = got < cap ? cap - got : 1;
        ssize_t n = read_some(fd, dst, room, deadline);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        if (got >= cap) {
            errno = EMSGSIZE;
            return -1;
        }
        got += (size_t)n;
    }
    if (got < cap)
        buf[got] = '\0';
    return (ssize_t)got;
}

ssize_t recv_line(int fd, char *buf, size_t cap, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    size_t got = 0;
    while (got + 1 < cap) {
        ssize_t n = read_some(fd, buf + got, 1, deadline);
        if (n < 0)
            return -1;
        if (n == 0) {
            buf[got] = '\0';
            return got == 0 ? 0 : -1;
        }
        if (buf[got++] == '\n') {
            buf[got] = '\0';
            return (ssize_t)got;
        }
    }
    if (cap)
        buf[got] = '\0';
    errno = EMSGSIZE;
    return -1;
}

ssize_t recv_dgram(int fd, void *buf, size_t cap, int timeout_ms)
{
    return read_some(fd, buf, cap, now_ms() + timeout_ms);
}

int wait_readable(int fd, int timeout_ms)
{
    int r = wait_fd(fd, POLLIN, now_ms() + timeout_ms);
    return r < 0 ? -1 : r;
}

int expect_eof(int fd, int timeout_ms)
{
    char c;
    ssize_t n = read_some(fd, &c, 1, now_ms() + timeout_ms);
    if (n < 0)
        return -1;
    return n == 0 ? 1 : 0;
}

ssize_t stream_exchange(int fd, const void *out, size_t outlen, char *in,
                        size_t incap, unsigned *seed, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    int was = set_nonblock(fd, 1);
    const char *p = out;
    size_t sent = 0, got = 0;
    int shut = 0, ret = -1;
    for (;;) {
        if (sent == outlen && !shut) {
            if (shutdown(fd, SHUT_WR) != 0)
                goto out;
            shut = 1;
        }
        struct pollfd pf = {.fd = fd, .events = POLLIN | (shut ? 0 : POLLOUT)};
        int r = poll_until(&pf, 1, deadline);
        if (r <= 0) {
            if (r == 0) {
                fprintf(stderr, "harness: stream_exchange timed out: sent %zu of %zu, "
                        "received %zu\n", sent, outlen, got);
                errno = ETIMEDOUT;
            }
            goto out;
        }
        if (pf.revents & (POLLIN | POLLHUP | POLLERR)) {
            char extra[4096];
            char *dst = got < incap ? in + got : extra;
            size_t room = got < incap ? incap - got : sizeof extra;
            ssize_t n = recv(fd, dst, room, 0);
            if (n == 0) {
                ret = (ssize_t)got;
                goto out;
            }
            if (n > 0) {
                if (got >= incap) {
                    errno = EMSGSIZE;
                    goto out;
                }
                got += (size_t)n;
            } else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
                goto out;
            }
        }
        if (!shut && (pf.revents & POLLOUT)) {
            size_t n = piece_size(outlen, outlen - sent, seed);
            ssize_t w = send(fd, p + sent, n, MSG_NOSIGNAL);
            if (w > 0)
                sent += (size_t)w;
            else if (w < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
                goto out;
            if (rng_next(seed) % 32 == 0)
                sleep_ms(1);
        }
    }
out:
    if (was == 0)
        set_nonblock(fd, 0);
    if (ret >= 0 && (size_t)ret < incap)
        in[ret] = '\0';
    return ret;
}

/* ---- the echo and ack services ------------------------------------------------ */

int echo_line(int fd, const char *line, int timeout_ms)
{
    size_t len = strlen(line);
    char buf[128];
    if (len > sizeof buf || send_all(fd, line, len) != 0)
        return 0;
    return recv_exact(fd, buf, len, timeout_ms) == (ssize_t)len &&
           memcmp(buf, line, len) == 0;
}

/* What the ack service answers to every message. */
static const char ack_reply[] = "I got your message\n";

int recv_ack(int fd, int timeout_ms)
{
    char buf[256];
    ssize_t n = recv_all(fd, buf, sizeof buf, timeout_ms);
    return n == (ssize_t)strlen(ack_reply) && memcmp(buf, ack_reply, strlen(ack_reply)) == 0;
}

int ack_exchange(struct server *s, const char *line)
{
    int fd = client_connect(s);
    if (fd < 0)
        return 0;
    int ok = send_all(fd, line, strlen(line)) == 0 && recv_ack(fd, HARNESS_IO_TIMEOUT_MS);
    client_close(fd);
    return ok;
}

/* ---- commands ---------------------------------------------------------- */

int run_cmd(const char *const argv[], const char *stdin_data, size_t stdin_len,
            char *out, size_t outcap, size_t *outlen, char *err, size_t errcap,
            int timeout_ms)
{
    int inp[2], outp[2], errp[2];
    if (outlen)
        *outlen = 0;
    if (out && outcap)
        out[0] = '\0';
    if (err && errcap)
        err[0] = '\0';
    if (pipe2(inp, O_CLOEXEC) != 0)
        return -1;
    if (pipe2(outp, O_CLOEXEC) != 0) {
        close(inp[0]), close(inp[1]);
        return -1;
    }
    if (pipe2(errp, O_CLOEXEC) != 0) {
        close(inp[0]), close(inp[1]), close(outp[0]), close(outp[1]);
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(inp[0]), close(inp[1]), close(outp[0]), close(outp[1]);
        close(errp[0]), close(errp[1]);
        return -1;
    }
    if (pid == 0) {
        if (dup2(inp[0], 0) < 0 || dup2(outp[1], 1) < 0 || dup2(errp[1], 2) < 0)
            _exit(127);
        child_prepare();
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "harness: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid);
    close(inp[0]);
    close(outp[1]);
    close(errp[1]);
    reg_server_add(pid, -1, -1); /* killed by teardown if we longjmp away */
    int fds[3] = {inp[1], outp[0], errp[0]};
    for (int i = 0; i < 3; i++)
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
    if (!stdin_data || stdin_len == 0) {
        close(fds[0]);
        fds[0] = -1;
    }
    size_t in_off = 0, olen = 0, elen = 0;
    long long deadline = now_ms() + timeout_ms;
    long long exited_at = -1;
    int st = 0, killed = 0, reaped = 0;
    while (fds[1] >= 0 || fds[2] >= 0 || !reaped) {
        if (!reaped) {
            pid_t r = waitpid(pid, &st, WNOHANG);
            if (r == pid) {
                reaped = 1;
                exited_at = now_ms();
            }
        }
        /* Its pipes held open by something it left behind: stop reading
         * half a second after it exited. */
        if (reaped && exited_at >= 0 && now_ms() - exited_at > 500)
            break;
        if (now_ms() >= deadline) {
            killed = 1;
            break;
        }
        struct pollfd p[3];
        int idx[3];
        nfds_t n = 0;
        if (fds[0] >= 0) {
            p[n] = (struct pollfd){.fd = fds[0], .events = POLLOUT};
            idx[n++] = 0;
        }
        for (int i = 1; i < 3; i++)
            if (fds[i] >= 0) {
                p[n] = (struct pollfd){.fd = fds[i], .events = POLLIN};
                idx[n++] = i;
            }
        int ms = left_ms(deadline);
        if (ms > 20)
            ms = 20; /* to notice its exit */
        if (n == 0)
            sleep_ms(ms);
        else if (poll(p, n, ms) < 0 && errno != EINTR)
            break;
        for (nfds_t k = 0; k < n; k++) {
            int i = idx[k];
            if (!p[k].revents)
                continue;
            if (i == 0) {
                ssize_t w = write(fds[0], stdin_data + in_off, stdin_len - in_off);
                if (w > 0)
                    in_off += (size_t)w;
                if ((w < 0 && errno != EAGAIN && errno != EINTR) || in_off == stdin_len) {
                    close(fds[0]);
                    fds[0] = -1;
                }
                continue;
            }
            char buf[8192];
            ssize_t r = read(fds[i], buf, sizeof buf);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0) {
                close(fds[i]);
                fds[i] = -1;
                continue;
            }
            char *dst = i == 1 ? out : err;
            size_t cap = i == 1 ? outcap : errcap;
            size_t *len = i == 1 ? &olen : &elen;
            if (dst && cap > 0 && *len < cap - 1) {
                size_t take = (size_t)r < cap - 1 - *len ? (size_t)r : cap - 1 - *len;
                memcpy(dst + *len, buf, take);
                *len += take;
                dst[*len] = '\0';
            }
        }
    }
    for (int i = 0; i < 3; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    if (outlen)
        *outlen = olen;
    int result;
    if (killed) {
        fprintf(stderr, "harness: run_cmd: %s did not finish within %d ms; killed\n",
                argv[0], timeout_ms);
        if (!reaped)
            kill_and_reap(pid);
        else
            kill(-pid, SIGKILL);
        result = -1;
    } else {
        if (!reaped) { /* cannot happen: the loop ends reaped or killed */
            kill_and_reap(pid);
            result = -1;
        } else {
            result = decode_status(st);
        }
        if (kill(-pid, 0) == 0) /* leftovers in its group */
            kill(-pid, SIGKILL);
    }
    reg_server_remove(pid);
    return result;
}

/* ---- test support ------------------------------------------------------ */

const char *harness_tmpdir(void)
{
    if (!tmpdir[0]) {
        char t[] = "/tmp/ioplex-test.XXXXXX";
        if (!mkdtemp(t)) {
            fprintf(stderr, "harness: mkdtemp: %s\n", strerror(errno));
            return NULL;
        }
        snprintf(tmpdir, sizeof tmpdir, "%s", t);
    }
    return tmpdir;
}

char *harness_tmp_path(char *buf, size_t cap, const char *stem)
{
    static unsigned counter;
    const char *d = harness_tmpdir();
    if (!d)
        return NULL;
    int n = snprintf(buf, cap, "%s/%s.%u.sock", d, stem ? stem : "s", ++counter);
    if (n < 0 || (size_t)n >= cap || (size_t)n >= 108) {
        fprintf(stderr, "harness: temporary path too long\n");
        return NULL;
    }
    return buf;
}
