/* What the harness started, and cleaning up after it: the registries of
 * servers, commands and client sockets, the temporary directory, the
 * teardown and the exit handler, and the preparation of a child before
 * exec. */
#define _GNU_SOURCE
#include "harness_private.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_SERVERS 64
#define MAX_CLIENTS 1024
#define KILL_WAIT_MS 5000

struct reg_server {
    pid_t pid;
    int out_fd, err_fd;
};

static struct reg_server servers[MAX_SERVERS];
static int clients[MAX_CLIENTS];
static size_t nclients;
static char tmpdir[64];
static pid_t owner_pid;

void harness__reg_server_add(pid_t pid, int out_fd, int err_fd)
{
    for (size_t i = 0; i < MAX_SERVERS; i++)
        if (servers[i].pid == 0) {
            servers[i] = (struct reg_server){pid, out_fd, err_fd};
            return;
        }
    fprintf(stderr, "harness: more than %d servers at once; %d is not tracked\n",
            MAX_SERVERS, (int)pid);
}

void harness__reg_server_remove(pid_t pid)
{
    for (size_t i = 0; i < MAX_SERVERS; i++)
        if (servers[i].pid == pid)
            servers[i].pid = 0;
}

/* pump_fd() (harness_output.c) closed one of a server's pipes. */
void harness__reg_server_closed_fd(pid_t pid, int is_out)
{
    for (size_t i = 0; i < MAX_SERVERS; i++)
        if (servers[i].pid == pid && pid > 0) {
            if (is_out)
                servers[i].out_fd = -1;
            else
                servers[i].err_fd = -1;
        }
}

void harness__reg_client_add(int fd)
{
    if (nclients < MAX_CLIENTS)
        clients[nclients++] = fd;
}

int harness__reg_client_remove(int fd)
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
int harness__kill_and_reap(pid_t pid)
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
        harness__kill_and_reap(servers[i].pid);
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
void harness__child_prepare(void)
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

int harness__decode_status(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

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
