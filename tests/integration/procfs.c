/* What /proc says about a server's process tree; see procfs.h. */
#define _GNU_SOURCE
#include "procfs.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The most children a tree reader looks at (a server has a handful). */
#define TREE_MAX 256

ssize_t proc_read_text(const char *path, char *buf, size_t cap)
{
    if (cap == 0)
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return n;
}

/* A directory entry of /proc that names a process: its PID, else 0. */
static long pid_entry(const char *name)
{
    char *end;
    long pid = strtol(name, &end, 10);
    return *end || end == name || pid <= 0 ? 0 : pid;
}

/* State and parent of a process, from the fields after its name in
 * /proc/<pid>/stat (the name may hold spaces and ')'). 0, or -1. */
static int stat_state(long pid, char *state, int *ppid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    if (proc_read_text(path, buf, sizeof buf) <= 0)
        return -1;
    const char *rp = strrchr(buf, ')');
    return rp && sscanf(rp + 1, " %c %d", state, ppid) == 2 ? 0 : -1;
}

enum which { ANY, LIVE, ZOMBIES };

/* The children of ppid that `which` selects: stored in out until max are
 * found, or (out NULL) all of them counted. -1 if /proc is unreadable. */
static int scan_children(pid_t ppid, enum which which, pid_t *out, int max)
{
    DIR *d = opendir("/proc");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((!out || n < max) && (e = readdir(d)) != NULL) {
        long pid = pid_entry(e->d_name);
        char state;
        int pp;
        if (!pid || stat_state(pid, &state, &pp) != 0 || pp != (int)ppid)
            continue;
        if ((which == LIVE && state == 'Z') || (which == ZOMBIES && state != 'Z'))
            continue;
        if (out)
            out[n] = (pid_t)pid;
        n++;
    }
    closedir(d);
    return n;
}

int proc_children(pid_t ppid, pid_t *out, int max, int with_zombies)
{
    return scan_children(ppid, with_zombies ? ANY : LIVE, out, max);
}

int count_children(pid_t ppid, int zombies_only)
{
    return scan_children(ppid, zombies_only ? ZOMBIES : ANY, NULL, 0);
}

/* ---- descriptors, threads, memory -------------------------------------- */

static int count_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

int count_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    return count_dir(path);
}

int count_threads(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    return count_dir(path);
}

/* Call fn(directory of the task, its tid, ctx) for each task (thread) of
 * pid, until fn returns < 0. Returns the sum of what fn returned (>= 0),
 * -1 if pid's task directory cannot be read. */
static int each_task(pid_t pid, int (*fn)(const char *dir, int tid, void *ctx), void *ctx)
{
    char tasks[64];
    snprintf(tasks, sizeof tasks, "/proc/%d/task", (int)pid);
    DIR *d = opendir(tasks);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long tid = pid_entry(e->d_name);
        if (!tid)
            continue;
        char dir[320];
        snprintf(dir, sizeof dir, "%s/%s", tasks, e->d_name);
        int r = fn(dir, (int)tid, ctx);
        if (r < 0)
            break;
        n += r;
    }
    closedir(d);
    return n;
}

/* 1 unless the task is one of io_uring's workers. */
static int not_iou(const char *dir, int tid, void *ctx)
{
    (void)tid;
    (void)ctx;
    char path[384], comm[32] = "";
    snprintf(path, sizeof path, "%s/comm", dir);
    if (proc_read_text(path, comm, sizeof comm) < 0)
        comm[0] = '\0'; /* a thread just gone: counted, as it was listed */
    return strncmp(comm, "iou-", 4) != 0;
}

int count_threads_no_iou(pid_t pid)
{
    return each_task(pid, not_iou, NULL);
}

struct ticks_out {
    int *tids;
    long long *ticks;
    int n, max;
};

/* Store the task's tid and CPU ticks (1), or skip it if unreadable (0). */
static int task_ticks(const char *dir, int tid, void *ctx)
{
    struct ticks_out *o = ctx;
    if (o->n >= o->max)
        return -1;
    char path[384];
    snprintf(path, sizeof path, "%s/stat", dir);
    long long t = proc_stat_ticks(path);
    if (t < 0)
        return 0;
    o->tids[o->n] = tid;
    o->ticks[o->n++] = t;
    return 1;
}

int proc_thread_ticks(pid_t pid, int *tids, long long *ticks, int max)
{
    struct ticks_out o = {.tids = tids, .ticks = ticks, .n = 0, .max = max};
    return each_task(pid, task_ticks, &o);
}

int proc_tree_fds(pid_t pid)
{
    pid_t kids[TREE_MAX];
    int total = count_fds(pid);
    int n = proc_children(pid, kids, TREE_MAX, 0);
    for (int i = 0; i < n; i++) {
        int k = count_fds(kids[i]);
        if (k > 0) /* (a child that has just exited counts nothing) */
            total += k;
    }
    return total;
}

long proc_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

long proc_tree_rss_kb(pid_t pid)
{
    pid_t kids[TREE_MAX];
    long own = proc_rss_kb(pid), total = own > 0 ? own : 0;
    int n = proc_children(pid, kids, TREE_MAX, 0);
    for (int i = 0; i < n; i++) {
        long k = proc_rss_kb(kids[i]);
        if (k > 0)
            total += k;
    }
    return total;
}

/* ---- CPU time ------------------------------------------------------------ */

long long proc_stat_ticks(const char *path)
{
    char buf[1024];
    if (proc_read_text(path, buf, sizeof buf) <= 0)
        return -1;
    const char *p = strrchr(buf, ')'); /* the name may hold spaces */
    /* After ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime(14) stime(15). */
    unsigned long long ut, st;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                     &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

long long proc_cpu_ticks(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    return proc_stat_ticks(path);
}

long long proc_tree_ticks(pid_t pid, int with_zombies)
{
    pid_t kids[TREE_MAX];
    int n = proc_children(pid, kids, TREE_MAX, with_zombies);
    long long t = proc_cpu_ticks(pid);
    for (int i = 0; i < n && t >= 0; i++) {
        long long k = proc_cpu_ticks(kids[i]);
        if (k > 0)
            t += k; /* a child that just exited: gone from the sum */
    }
    return t;
}
