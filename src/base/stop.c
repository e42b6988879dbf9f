/*
 * Stopping a server, and waiting on a descriptor without missing a stop:
 * what every model and the blocking connection path use. A leaf: it calls
 * nothing of ours above it.
 *
 * iop_server_stop() writes the stop pipe once and never reads it, so it
 * stays readable: every poll() that includes it wakes, and keeps waking.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

void iop_server_stop(iop_server *s)
{
    /* Only async-signal-safe calls here: atomics, write(), shutdown(). */
    if (atomic_exchange(&s->stopping, 1) == 0) {
        ssize_t n = write(s->stop_pipe[1], "x", 1);
        (void)n; /* the pipe is empty and non-blocking: it cannot fail */
    }
    int fd = atomic_load(&s->inline_fd);
    if (fd >= 0)
        shutdown(fd, SHUT_RD);
}

int iop__stopping(const iop_server *s) { return atomic_load(&s->stopping); }

int iop__wait_fd(iop_server *s, int fd, short events, int timeout_ms)
{
    struct pollfd p[2] = {
        {.fd = s->stop_pipe[0], .events = POLLIN},
        {.fd = fd, .events = events},
    };
    for (;;) {
        if (iop__stopping(s))
            return -ECANCELED;
        int n = poll(p, fd >= 0 ? 2 : 1, timeout_ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return 0;
        if (p[0].revents)
            return -ECANCELED;
        return 1;
    }
}
