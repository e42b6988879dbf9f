/*
 * An LD_PRELOAD interposer for test_sockfile_race: it plays the writer of
 * the socket's directory and wins the race every time. Inactive unless
 * IOPLEX_RACE_PATH is set; then, for that path only:
 *
 *   fchmodat(..., AT_SYMLINK_NOFOLLOW) fails with EOPNOTSUPP, as glibc
 *     2.32-2.38 does without /proc (or when the path is a symlink);
 *   right after the first lstat() or open() of the path returns, the
 *     socket is renamed to PATH.real and a symlink to IOPLEX_RACE_TARGET
 *     takes its place: whatever the server does next through the path
 *     lands on the target;
 *   with IOPLEX_RACE_NOPROC=1, a path under /proc/self/fd/ is missing
 *     (ENOENT), as where /proc is not mounted.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int is_race(const char *path)
{
    const char *p = getenv("IOPLEX_RACE_PATH");
    return p && path && strcmp(p, path) == 0;
}

static int no_proc(const char *path)
{
    const char *e = getenv("IOPLEX_RACE_NOPROC");
    return e && strcmp(e, "1") == 0 && path && strncmp(path, "/proc/self/fd/", 14) == 0;
}

static void swap_in_symlink(const char *path)
{
    static int done;
    const char *target = getenv("IOPLEX_RACE_TARGET");
    if (done || !target)
        return;
    done = 1;
    int e = errno;
    char aside[4096];
    snprintf(aside, sizeof aside, "%s.real", path);
    if (rename(path, aside) == 0)
        symlink(target, path);
    errno = e;
}

#define REAL(name, type) ((type)dlsym(RTLD_NEXT, name))

int fchmodat(int dirfd, const char *path, mode_t mode, int flags)
{
    if (is_race(path) && (flags & AT_SYMLINK_NOFOLLOW)) {
        errno = EOPNOTSUPP;
        return -1;
    }
    if (no_proc(path)) {
        errno = ENOENT;
        return -1;
    }
    return REAL("fchmodat", int (*)(int, const char *, mode_t, int))(dirfd, path, mode, flags);
}

int chmod(const char *path, mode_t mode)
{
    if (no_proc(path)) {
        errno = ENOENT;
        return -1;
    }
    return REAL("chmod", int (*)(const char *, mode_t))(path, mode);
}

int lstat(const char *path, struct stat *st)
{
    int r = REAL("lstat", int (*)(const char *, struct stat *))(path, st);
    if (is_race(path))
        swap_in_symlink(path);
    return r;
}

#define OPEN_LIKE(name)                                                        \
    int name(const char *path, int flags, ...)                                 \
    {                                                                          \
        mode_t mode = 0;                                                       \
        if (flags & (O_CREAT | O_TMPFILE)) {                                   \
            va_list ap;                                                        \
            va_start(ap, flags);                                               \
            mode = (mode_t)va_arg(ap, int);                                    \
            va_end(ap);                                                        \
        }                                                                      \
        int r = REAL(#name, int (*)(const char *, int, ...))(path, flags, mode); \
        if (is_race(path))                                                     \
            swap_in_symlink(path);                                             \
        return r;                                                              \
    }
OPEN_LIKE(open)
OPEN_LIKE(open64)

#define OPENAT_LIKE(name)                                                      \
    int name(int dirfd, const char *path, int flags, ...)                      \
    {                                                                          \
        mode_t mode = 0;                                                       \
        if (flags & (O_CREAT | O_TMPFILE)) {                                   \
            va_list ap;                                                        \
            va_start(ap, flags);                                               \
            mode = (mode_t)va_arg(ap, int);                                    \
            va_end(ap);                                                        \
        }                                                                      \
        int r = REAL(#name, int (*)(int, const char *, int, ...))(dirfd, path, flags, mode); \
        if (is_race(path))                                                     \
            swap_in_symlink(path);                                             \
        return r;                                                              \
    }
OPENAT_LIKE(openat)
OPENAT_LIKE(openat64)
