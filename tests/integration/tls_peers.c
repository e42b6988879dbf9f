/* The TLS tests' certificates and peers (tls_peers.h). */
#define _GNU_SOURCE
#include "tls_peers.h"
#include "harness_private.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#ifndef IOPLEX_SOURCE_DIR
#error "IOPLEX_SOURCE_DIR must name the source tree (for tests/tls/make-certs.sh)"
#endif

int tls_have(const char *name)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", name);
    const char *argv[] = {"sh", "-c", cmd, NULL};
    return run_cmd(argv, NULL, 0, NULL, 0, NULL, NULL, 0, 10000) == 0;
}

/* Peers started, and where their stderr goes. */
#define PEERS_MAX 16
static struct {
    pid_t pid;
    char err_path[512];
} peers[PEERS_MAX];

pid_t tls_peer_start(const char *cmd)
{
    static unsigned n;
    int slot = -1;
    for (int i = 0; i < PEERS_MAX && slot < 0; i++)
        if (peers[i].pid <= 0 || kill(peers[i].pid, 0) != 0)
            slot = i;
    assert_true(slot >= 0);
    snprintf(peers[slot].err_path, sizeof peers[slot].err_path, "%s/peer.%u.err",
             harness_tmpdir(), n++);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        int out = open(peers[slot].err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
            _exit(127);
        harness__child_prepare();
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    harness__reg_server_add(pid, -1, -1); /* killed by the teardown */
    peers[slot].pid = pid;
    return pid;
}

int tls_peer_wait(pid_t pid, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            harness__reg_server_remove(pid);
            if (kill(-pid, 0) == 0)
                kill(-pid, SIGKILL); /* what it left in its group */
            return harness__decode_status(st);
        }
        if (r < 0 || now_ms() >= end)
            break;
        sleep_ms(10);
    }
    harness__kill_and_reap(pid);
    harness__reg_server_remove(pid);
    return -1;
}

const char *tls_peer_stderr(pid_t pid)
{
    static char buf[8192];
    buf[0] = '\0';
    for (int i = 0; i < PEERS_MAX; i++)
        if (peers[i].pid == pid) {
            ssize_t n = tls_read_file(peers[i].err_path, buf, sizeof buf - 1);
            buf[n > 0 ? n : 0] = '\0';
        }
    return buf;
}

int tls_pipe_through(const char *cmd, const char *data, size_t len, char *out, size_t cap,
                     size_t *outlen, size_t want, int timeout_ms)
{
    static unsigned n;
    char fifo[512], file[600], full[4096];
    snprintf(fifo, sizeof fifo, "%s/pipe.%u.in", harness_tmpdir(), n++);
    snprintf(file, sizeof file, "%s.out", fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    snprintf(full, sizeof full, "%s < '%s' > '%s'", cmd, fifo, file);
    long long end = now_ms() + timeout_ms;
    pid_t pid = tls_peer_start(full);
    /* Non-blocking: open fails (ENXIO) until the shell has opened its end. */
    int w = -1;
    while ((w = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC)) < 0 && now_ms() < end)
        sleep_ms(5);
    assert_true(w >= 0);
    size_t off = 0;
    struct stat st;
    while (now_ms() < end) {
        if (off < len) {
            struct pollfd p = {.fd = w, .events = POLLOUT};
            if (poll(&p, 1, 20) > 0) {
                ssize_t k = write(w, data + off, len - off);
                if (k > 0)
                    off += (size_t)k;
                else if (k < 0 && errno != EAGAIN && errno != EINTR)
                    break; /* it stopped reading (EPIPE): its output says the rest */
            }
        } else {
            sleep_ms(10);
        }
        if (stat(file, &st) == 0 && (size_t)st.st_size >= want && off == len)
            break;
        siginfo_t si = {0};
        if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid)
            break; /* over (not reaped yet): nothing more will come */
    }
    close(w);
    int left = (int)(end - now_ms());
    int code = tls_peer_wait(pid, left > 1000 ? left : 1000);
    ssize_t got = tls_read_file(file, out, cap);
    *outlen = got > 0 ? (size_t)got : 0;
    unlink(fifo);
    return code;
}

int tls_wait_listening(unsigned port, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    char want[32];
    snprintf(want, sizeof want, "0100007F:%04X", port);
    do {
        FILE *f = fopen("/proc/net/tcp", "r");
        char line[512];
        while (f && fgets(line, sizeof line, f)) {
            char local[64], remote[64];
            unsigned state;
            if (sscanf(line, " %*d: %63s %63s %x", local, remote, &state) == 3 &&
                strcmp(local, want) == 0 && state == 0x0A) {
                fclose(f);
                return 1;
            }
        }
        if (f)
            fclose(f);
        sleep_ms(20);
    } while (now_ms() < end);
    return 0;
}

const char *tls_random_file(const char *stem, char *data, size_t len, unsigned *seed)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", harness_tmpdir(), stem);
    fill_random(data, len, seed);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

ssize_t tls_read_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t got = 0;
    for (;;) {
        if (got == cap) {
            char extra;
            ssize_t n = read(fd, &extra, 1);
            close(fd);
            return n == 0 ? (ssize_t)got : -1;
        }
        ssize_t n = read(fd, buf + got, cap - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close(fd);
            return n == 0 ? (ssize_t)got : -1;
        }
        got += (size_t)n;
    }
}
