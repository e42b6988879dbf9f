/* A server's life: start `ioplex serve` with its output on two pipes,
 * wait for the address it prints, see whether it still runs, wait for
 * its exit, stop or kill it, and check that it stopped clean. */
#define _GNU_SOURCE
#include "harness_private.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* cmocka, for server_stop_clean()'s failure (after what it needs). */
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

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
            harness__wait_pipes(s, deadline, 50);
            server_pump(s);
        }
    }
    if (s->out_fd >= 0)
        close(s->out_fd);
    if (s->err_fd >= 0)
        close(s->err_fd);
    s->out_fd = s->err_fd = -1;
    harness__reg_server_remove(s->pid);
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
    s->status = r == s->pid ? harness__decode_status(st) : -1;
    finish(s);
    return 0;
}

static char last_cmdline[1024];

/* Fork and exec argv with the server's pipes; no waiting. */
static int spawn(struct server *s, const char *const argv[])
{
    memset(s, 0, offsetof(struct server, out));
    s->out_len = s->out_dropped = s->err_len = 0;
    s->out[0] = s->err[0] = '\0';
    s->exited = s->status = s->leftovers = 0;
    s->out_fd = s->err_fd = -1;

    size_t off = 0;
    last_cmdline[0] = '\0';
    for (size_t i = 0; argv[i] && off < sizeof last_cmdline; i++)
        off += (size_t)snprintf(last_cmdline + off, sizeof last_cmdline - off, "%s%s",
                                i ? " " : "", argv[i]);

    int outp[2], errp[2];
    if (pipe2(outp, O_CLOEXEC) != 0)
        return -1;
    if (pipe2(errp, O_CLOEXEC) != 0) {
        close(outp[0]);
        close(outp[1]);
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("harness: fork");
        close(outp[0]), close(outp[1]), close(errp[0]), close(errp[1]);
        return -1;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);
        if (null < 0 || dup2(null, 0) < 0 || dup2(outp[1], 1) < 0 || dup2(errp[1], 2) < 0)
            _exit(127);
        harness__child_prepare();
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "harness: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid); /* also done by the child: whichever runs first */
    close(outp[1]);
    close(errp[1]);
    s->pid = pid;
    s->out_fd = outp[0];
    s->err_fd = errp[0];
    fcntl(s->out_fd, F_SETFL, O_NONBLOCK);
    fcntl(s->err_fd, F_SETFL, O_NONBLOCK);
    fcntl(s->out_fd, F_SETPIPE_SZ, 1 << 20); /* best effort */
    harness__reg_server_add(pid, s->out_fd, s->err_fd);
    return 0;
}

int server_wait_address(struct server *s, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    const char *why = "timed out";
    for (;;) {
        int eof = server_pump(s);
        int r = harness__find_address_line(s);
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
        harness__wait_pipes(s, deadline, 50);
    }
    fprintf(stderr, "harness: server_start failed (%s): %s\n", why, last_cmdline);
    if (!s->exited) {
        harness__kill_and_reap(s->pid);
        s->exited = 1;
        s->status = -1;
        finish(s);
    } else {
        fprintf(stderr, "harness: it exited with status %d\n", s->status);
    }
    fprintf(stderr, "harness: its stderr:\n%s\nharness: its stdout:\n%s\n", s->err, s->out);
    return -1;
}

int server_start_cmd(struct server *s, const char *const argv[])
{
    return spawn(s, argv);
}

int server_start(struct server *s, const char *const args[])
{
    size_t nargs = 0;
    while (args[nargs])
        nargs++;
    const char **argv = calloc(nargs + 3, sizeof *argv);
    if (!argv)
        return -1;
    argv[0] = ioplex_bin();
    argv[1] = "serve";
    for (size_t i = 0; i < nargs; i++)
        argv[i + 2] = args[i];
    int r = spawn(s, argv);
    free(argv);
    return r == 0 ? server_wait_address(s, HARNESS_START_TIMEOUT_MS) : -1;
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

int server_wait_exit(struct server *s, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        if (!server_running(s))
            return s->status;
        if (now_ms() >= deadline)
            return -1;
        server_pump(s);
        harness__wait_pipes(s, deadline, 10);
    }
}

void server_kill(struct server *s)
{
    if (s->pid <= 0 || s->exited)
        return;
    int st = harness__kill_and_reap(s->pid);
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
