/*
 * What /proc says about a server's process tree: its children, and their
 * descriptors, threads, memory and CPU time, as the integration tests
 * judge them from outside.
 *
 * Each reader makes one pass over what it reads (nothing waits) and
 * answers -1 where /proc cannot tell. A process may exit while it is
 * read: the tree readers then count it for nothing.
 */
#ifndef IOPLEX_TEST_PROCFS_H
#define IOPLEX_TEST_PROCFS_H

#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Read a small /proc file (one read(), as the kernel serves such files)
 * into buf, NUL-terminated. Returns the bytes read, or -1. */
ssize_t proc_read_text(const char *path, char *buf, size_t cap);

/* ---- children ------------------------------------------------------------ */

/* The processes whose parent is ppid (from /proc/<pid>/stat): their PIDs in
 * out, the scan ending once max are found; zombies (state 'Z') too only
 * with with_zombies. Returns how many were stored, -1 if /proc cannot be
 * read. */
int proc_children(pid_t ppid, pid_t *out, int max, int with_zombies);
/* Count the processes whose parent is ppid; with zombies_only, only those
 * in state 'Z'. -1 if /proc cannot be read. */
int count_children(pid_t ppid, int zombies_only);

/* ---- descriptors, threads, memory -------------------------------------- */

/* Open descriptors of pid (entries of /proc/<pid>/fd), threads of pid
 * (entries of /proc/<pid>/task); -1 if unreadable. */
int count_fds(pid_t pid);
int count_threads(pid_t pid);
/* The threads of pid, leaving out io_uring's kernel workers ("iou-wrk-",
 * "iou-sqp-"): the kernel starts them for operations it cannot complete
 * at once (a send to a full socket) and ends them when it sees fit, not
 * when the connection closes. -1 if unreadable. */
int count_threads_no_iou(pid_t pid);
/* Descriptors of pid (-1 if unreadable) plus those of its children that
 * are not zombies (fork, prefork). */
int proc_tree_fds(pid_t pid);

/* VmRSS of pid in KiB, -1 if unreadable (or a zombie: no VmRSS line). */
long proc_rss_kb(pid_t pid);
/* VmRSS of pid and of its children that are not zombies, KiB. */
long proc_tree_rss_kb(pid_t pid);

/* ---- CPU time ------------------------------------------------------------ */

/* utime + stime, in clock ticks, from a stat file (/proc/<pid>/stat or
 * /proc/<pid>/task/<tid>/stat); -1 if unreadable. */
long long proc_stat_ticks(const char *path);
/* The same for pid. */
long long proc_cpu_ticks(pid_t pid);
/* The CPU ticks of each thread of pid: its tid in tids[], its ticks in
 * ticks[], up to max threads (those unreadable left out). Returns how
 * many, -1 if unreadable. */
int proc_thread_ticks(pid_t pid, int *tids, long long *ticks, int max);
/* The CPU ticks of pid and its children (zombies too with with_zombies);
 * -1 if pid's own cannot be read. */
long long proc_tree_ticks(pid_t pid, int with_zombies);

#ifdef __cplusplus
}
#endif
#endif
