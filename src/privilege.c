/*
 * Dropping root (iop_server_config.user): the server binds as root, for a
 * port below 1024, then becomes an ordinary user before it serves
 * anything. The order is the only one that works (CERT POS36-C): the
 * supplementary groups and the group while still root, the user last,
 * since after setuid() nothing more can be changed. Then a check that it
 * took (POS37-C): every ID is the user's, and root cannot be regained, so
 * a call that failed silently, or a saved set-user-ID left at 0, cannot
 * pass unnoticed.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/capability.h>
#include <sys/syscall.h>
#endif

#define PWBUF_MAX (1 << 20)

/* getpwnam_r() with a buffer grown until the entry fits. Returns 0 with
 * *found set or NULL (no such user), or an errno value. */
static int find_user(const char *name, uid_t *uid, gid_t *gid, int *found)
{
    struct passwd pw, *res = NULL;
    char *buf = NULL;
    size_t cap = 1024;
    int e;
    for (;;) {
        char *nb = realloc(buf, cap);
        if (!nb) {
            e = ENOMEM;
            break;
        }
        buf = nb;
        e = getpwnam_r(name, &pw, buf, cap, &res);
        if (e != ERANGE || cap >= PWBUF_MAX)
            break;
        cap *= 2;
    }
    *found = e == 0 && res;
    if (*found) {
        *uid = pw.pw_uid;
        *gid = pw.pw_gid;
    }
    free(buf);
    /* No such user is 0 and no entry, but some back ends say so with
     * ENOENT, ESRCH, EBADF or EPERM (getpwnam(3)). */
    if (e == ENOENT || e == ESRCH || e == EBADF || e == EPERM)
        e = 0;
    return e;
}

/* 1 if the user's primary or a supplementary group is 0. */
static int in_group_root(const char *name, gid_t gid)
{
    if (gid == 0)
        return 1;
    int n = 64;
    for (int tries = 0; tries < 8; tries++) {
        gid_t *groups = malloc((size_t)n * sizeof *groups);
        if (!groups)
            return 1; /* cannot tell: assume the worst */
        int want = n;
        int r = getgrouplist(name, gid, groups, &want);
        int found = 0;
        for (int i = 0; r >= 0 && i < want; i++)
            found |= groups[i] == 0;
        free(groups);
        if (r >= 0)
            return found;
        n = want > n ? want : n * 2;
    }
    return 1;
}

int iop__user_lookup(const char *name, int allow_root, struct iop__user *u,
                     char *err)
{
    if (geteuid() != 0) {
        snprintf(err, IOP_ERR_LEN, "changing to user '%s' needs root (this "
                 "process runs as uid %ld)", name, (long)geteuid());
        return -EPERM;
    }
    int found;
    int e = find_user(name, &u->uid, &u->gid, &found);
    if (e != 0) {
        snprintf(err, IOP_ERR_LEN, "cannot look up user '%s': %s", name, strerror(e));
        return -e;
    }
    if (!found) {
        snprintf(err, IOP_ERR_LEN, "unknown user '%s'", name);
        return -EINVAL;
    }
    if (u->uid == 0 && !allow_root) {
        snprintf(err, IOP_ERR_LEN, "user '%s' has uid 0: refusing to serve as "
                 "root (--allow-root to insist)", name);
        return -EINVAL;
    }
    /* Group 0 owns, and can often write, files root left group-readable
     * (/etc, /var/log, sockets): dropping to it is not dropping root's
     * reach, so it takes the same --allow-root as uid 0. */
    if (!allow_root && in_group_root(name, u->gid)) {
        snprintf(err, IOP_ERR_LEN, "user '%s' is in group 0 (root): refusing "
                 "to serve with root's group (--allow-root to insist)", name);
        return -EINVAL;
    }
    return 0;
}

#ifdef __linux__
/* 1 if any capability is still permitted (it could be raised again). */
static int caps_left(void)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
    if (syscall(SYS_capget, &h, d) != 0)
        return 1; /* cannot tell: assume the worst */
    for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
        if (d[i].permitted)
            return 1;
    return 0;
}
#else
static int caps_left(void) { return 0; }
#endif

/* Did it take? Real, effective and saved IDs are the user's; and unless
 * the user is root, root is out of reach. */
static const char *not_taken(const struct iop__user *u)
{
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0)
        return "cannot read the process's IDs";
    if (ru != u->uid || eu != u->uid || su != u->uid)
        return "a user ID is not the user's";
    if (rg != u->gid || eg != u->gid || sg != u->gid)
        return "a group ID is not the user's group";
    if (u->uid == 0)
        return NULL; /* root allowed: nothing to lose */
    if (setuid(0) == 0 || seteuid(0) == 0)
        return "root could be regained";
    if (u->gid != 0 && (setgid(0) == 0 || setegid(0) == 0))
        return "group 0 could be regained";
    if (caps_left())
        return "capabilities are still permitted";
    return NULL;
}

int iop__user_become(const char *name, const struct iop__user *u, char *err)
{
    const char *step = NULL;
    if (initgroups(name, u->gid) != 0)
        step = "initgroups";
    else if (setgid(u->gid) != 0)
        step = "setgid";
    else if (setuid(u->uid) != 0)
        step = "setuid";
    if (step) {
        int e = errno;
        snprintf(err, IOP_ERR_LEN, "cannot become user '%s': %s: %s", name, step,
                 strerror(e));
        return -e;
    }
    const char *why = not_taken(u);
    if (why) {
        snprintf(err, IOP_ERR_LEN, "became user '%s' only in part: %s", name, why);
        return -EPERM;
    }
    return 0;
}
