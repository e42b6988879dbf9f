/* Network namespaces for the tests (see netns.h); moved out of test_netns.c. */
#define _GNU_SOURCE
#include "netns.h"
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define CMD_TIMEOUT_MS 10000
#define MAX_JOBS 128

const char *netns_tool(const char *name)
{
    static const char *const names[] = {"ip", "nft", "tc"};
    static const char *const dirs[] = {"/usr/sbin", "/sbin", "/usr/bin", "/bin"};
    static char found[3][64];
    int slot = 0;
    while (slot < 3 && strcmp(names[slot], name) != 0)
        slot++;
    if (slot == 3)
        return name; /* not one of ours: $PATH */
    if (found[slot][0])
        return found[slot];
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(found[slot], sizeof found[slot], "%s/%s", dirs[i], name);
        if (access(found[slot], X_OK) == 0)
            return found[slot];
    }
    snprintf(found[slot], sizeof found[slot], "%s", name); /* $PATH, then */
    return found[slot];
}

int netns_cmd(const char *in, char *out, size_t outcap, char *err, size_t errcap, ...)
{
    const char *argv[32];
    size_t n = 0;
    va_list ap;
    va_start(ap, errcap);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < sizeof argv / sizeof argv[0] - 1)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    argv[0] = netns_tool(argv[0]);
    return run_cmd(argv, in, in ? strlen(in) : 0, out, outcap, NULL, err, errcap,
                   CMD_TIMEOUT_MS);
}

void netns_delete_stale(const char *prefix)
{
    DIR *d = opendir("/run/netns");
    if (!d)
        return;
    size_t plen = strlen(prefix);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        if (strncmp(n, prefix, plen) != 0 || n[plen] < 'A' || n[plen] > 'Z')
            continue;
        char *end;
        long pid = strtol(n + plen + 1, &end, 10);
        if (*end || pid <= 0 || pid == getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        fprintf(stderr, "netns: deleting namespace %s of a run that is gone\n", n);
        netns_cmd(NULL, NULL, 0, NULL, 0, "ip", "netns", "delete", n, NULL);
    }
    closedir(d);
}

int netns_add(const char *name, char *skip, size_t skiplen)
{
    if (geteuid() != 0) {
        snprintf(skip, skiplen, "network namespaces need root (euid %d)", (int)geteuid());
        return 1;
    }
    char err[1024];
    int c = netns_cmd(NULL, NULL, 0, err, sizeof err, "ip", "netns", "add", name, NULL);
    if (c != 0 && (strstr(err, "not permitted") || strstr(err, "Permission denied"))) {
        snprintf(skip, skiplen, "cannot create a network namespace here: %.200s", err);
        skip[strcspn(skip, "\n")] = '\0';
        return 1;
    }
    if (c != 0)
        fail_msg("`ip netns add %s` failed (%d): %s (is iproute2 installed?)", name, c, err);
    return 0;
}

int netns_enter(const char *name)
{
    char path[128];
    snprintf(path, sizeof path, "/run/netns/%s", name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = setns(fd, CLONE_NEWNET);
    close(fd);
    return r;
}

static struct netns_job jobs[MAX_JOBS];
static size_t njobs;

void netns_kill_jobs(void)
{
    for (size_t i = 0; i < njobs; i++) {
        if (jobs[i].done || jobs[i].pid <= 0)
            continue;
        kill(-jobs[i].pid, SIGKILL);
        kill(jobs[i].pid, SIGKILL);
        long long deadline = now_ms() + 5000;
        while (waitpid(jobs[i].pid, NULL, WNOHANG) == 0 && now_ms() < deadline)
            sleep_ms(5);
        jobs[i].done = 1;
        jobs[i].status = -1;
    }
}

struct netns_job *netns_spawn(const char *ns, const char *what, const char *in_path,
                              const char *const argv[])
{
    assert_true(njobs < MAX_JOBS);
    struct netns_job *j = &jobs[njobs];
    memset(j, 0, sizeof *j);
    snprintf(j->what, sizeof j->what, "%s", what);
    assert_non_null(harness_tmp_path(j->out_path, sizeof j->out_path, "out"));
    assert_non_null(harness_tmp_path(j->err_path, sizeof j->err_path, "err"));
    pid_t parent = getpid();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent || netns_enter(ns) != 0)
            _exit(126);
        int in = open(in_path ? in_path : "/dev/null", O_RDONLY);
        int out = open(j->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int err = open(j->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (in < 0 || out < 0 || err < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 ||
            dup2(err, 2) < 0)
            _exit(126);
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
        signal(SIGPIPE, SIG_DFL);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    setpgid(pid, pid);
    j->pid = pid;
    j->t0 = now_ms();
    njobs++;
    return j;
}

void netns_wait_jobs(long long deadline)
{
    for (;;) {
        size_t left = 0;
        for (size_t i = 0; i < njobs; i++) {
            struct netns_job *j = &jobs[i];
            if (j->done)
                continue;
            int st;
            if (waitpid(j->pid, &st, WNOHANG) == j->pid) {
                j->done = 1;
                j->ms = now_ms() - j->t0;
                j->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            } else {
                left++;
            }
        }
        if (left == 0)
            return;
        if (now_ms() >= deadline) {
            for (size_t i = 0; i < njobs; i++)
                if (!jobs[i].done)
                    jobs[i].ms = now_ms() - jobs[i].t0;
            netns_kill_jobs();
            return;
        }
        sleep_ms(20);
    }
}

char *netns_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n < cap)
            break;
        char *bigger = realloc(buf, cap * 2 + 1);
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        if (len)
            *len = n;
    }
    return buf;
}
