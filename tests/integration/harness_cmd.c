/* Running a command (the tool or anything on $PATH) to completion,
 * bounded, with its stdin fed and its stdout and stderr captured. */
#define _GNU_SOURCE
#include "harness_private.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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
        harness__child_prepare();
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "harness: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid);
    close(inp[0]);
    close(outp[1]);
    close(errp[1]);
    harness__reg_server_add(pid, -1, -1); /* killed by teardown if we longjmp away */
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
        int ms = harness__left_ms(deadline);
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
            harness__kill_and_reap(pid);
        else
            kill(-pid, SIGKILL);
        result = -1;
    } else {
        if (!reaped) { /* cannot happen: the loop ends reaped or killed */
            harness__kill_and_reap(pid);
            result = -1;
        } else {
            result = harness__decode_status(st);
        }
        if (kill(-pid, 0) == 0) /* leftovers in its group */
            kill(-pid, SIGKILL);
    }
    harness__reg_server_remove(pid);
    return result;
}
