/*
 * Listening sockets (net/socket.c): SO_REUSEPORT for workers, a Unix
 * socket file made with its mode and owner.
 */
#ifndef IOP_NET_SOCKET_H
#define IOP_NET_SOCKET_H

#include "ioplex.h"

#include <sys/types.h>

/* ---- sockets ------------------------------------------------------------ */

enum { IOP__LISTEN_REUSEPORT = 1u << 0 };
/* iop_listen() with options: SO_REUSEPORT lets each event-loop worker
 * bind a listener of its own to the same address. */
int iop__listen(const struct iop_addr *a, int backlog, unsigned flags, int *fd,
                struct iop_addr *bound, char *err);
/* O_NONBLOCK on: 0 or a negative errno. */
int iop__set_nonblocking(int fd);
/* A Unix listener's socket file: its mode (0: as bind() makes it) and
 * owner (-1: left to the binding process). */
struct iop__sockfile {
    unsigned mode;
    uid_t uid;
    gid_t gid;
};
/* iop__listen(), with a Unix socket's file made as `file` says (NULL: as
 * bind() makes it). A mode above 07777, or one for an IP address, is
 * -EINVAL before anything is bound. */
int iop__listen_file(const struct iop_addr *a, int backlog, unsigned flags,
                     const struct iop__sockfile *file, int *fd,
                     struct iop_addr *bound, char *err);

#endif
