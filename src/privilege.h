/*
 * Dropping root (privilege.c).
 */
#ifndef IOP_PRIVILEGE_H
#define IOP_PRIVILEGE_H

#include "ioplex.h"

#include <sys/types.h>

/* ---- privileges (privilege.c) ------------------------------------------- */

struct iop__user {
    uid_t uid;
    gid_t gid;
};
/* Look the user up, before anything is bound: -EINVAL for an unknown
 * user or, without allow_root, one with uid 0; -EPERM if this process is
 * not root. */
int iop__user_lookup(const char *name, int allow_root, struct iop__user *u,
                     char *err);
/* Become the user looked up: supplementary groups, group, then user, and
 * check that it took (root cannot be regained). */
int iop__user_become(const char *name, const struct iop__user *u, char *err);

#endif
