/*
 * Sockets to a fixed loopback port or Unix path, for the tests where
 * another program (systemd-socket-activate, inetd) makes the server's
 * socket, so there is no "ioplex serve: ... on ADDRESS" line to read
 * before the first client: a free port picked here, connects retried
 * (bounded) until that program has bound it. Every socket is registered
 * so that local_close_all() (the tests' teardown) closes it.
 */
#ifndef IOPLEX_TEST_LOCAL_SOCKETS_H
#define IOPLEX_TEST_LOCAL_SOCKETS_H

#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int local_fds[64];
static size_t n_local_fds;

static inline int local_keep(int fd)
{
    if (fd >= 0 && n_local_fds < sizeof local_fds / sizeof local_fds[0])
        local_fds[n_local_fds++] = fd;
    return fd;
}

static inline void local_close(int fd)
{
    for (size_t i = 0; i < n_local_fds; i++)
        if (local_fds[i] == fd) {
            local_fds[i] = local_fds[--n_local_fds];
            break;
        }
    if (fd >= 0)
        close(fd);
}

static inline void local_close_all(void)
{
    for (size_t i = 0; i < n_local_fds; i++)
        close(local_fds[i]);
    n_local_fds = 0;
}

static inline int local_try_connect(int family, int type, const struct sockaddr *sa, socklen_t len,
                             int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        int fd = socket(family, type | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -1;
        if (connect(fd, sa, len) == 0) {
            /* Nothing listening on a port in the ephemeral range, the
             * kernel can connect a socket to itself (TCP simultaneous
             * open): not a server. */
            struct sockaddr_storage me, peer;
            socklen_t ml = sizeof me, pl = sizeof peer;
            if (family == AF_UNIX || getsockname(fd, (struct sockaddr *)&me, &ml) != 0 ||
                getpeername(fd, (struct sockaddr *)&peer, &pl) != 0 || ml != pl ||
                memcmp(&me, &peer, ml) != 0)
                return local_keep(fd);
            errno = ECONNREFUSED;
        }
        int e = errno;
        close(fd);
        if ((e != ECONNREFUSED && e != ENOENT) || now_ms() >= deadline) {
            fprintf(stderr, "test: connect: %s\n", strerror(e));
            return -1;
        }
        sleep_ms(20);
    }
}

/* A TCP (SOCK_STREAM) or connected UDP (SOCK_DGRAM) socket to
 * 127.0.0.1:port, retried until something listens there (TCP). */
static inline int local_connect_ip(int type, unsigned port, int timeout_ms)
{
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    return local_try_connect(AF_INET, type, (struct sockaddr *)&in, sizeof in, timeout_ms);
}

static inline int local_connect_unix(const char *path, int timeout_ms)
{
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    memcpy(un.sun_path, path, strnlen(path, sizeof un.sun_path - 1));
    return local_try_connect(AF_UNIX, SOCK_STREAM, (struct sockaddr *)&un, sizeof un,
                             timeout_ms);
}

#endif
