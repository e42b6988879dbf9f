/*
 * sd_notify(3) by hand: one datagram per message to the AF_UNIX socket
 * NOTIFY_SOCKET names (a path, or "@name" in the abstract namespace).
 * Not libsystemd: the protocol is small, stable and documented, HAProxy
 * and OpenSSH (since 9.8) send it themselves too, and serve then needs
 * no library that a machine without systemd lacks.
 */
#define _GNU_SOURCE
#include "activation.h"
#include "cli.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int notify_fd = -1;

int notify_open(void)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path)
        return 0;
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    int ok = (path[0] == '/' || path[0] == '@') && len >= 2 && len < sizeof un.sun_path;
    if (ok)
        memcpy(un.sun_path, path, len);
    if (path[0] == '@')
        un.sun_path[0] = '\0'; /* abstract: the name is the bytes given, no NUL */
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
                                  (path[0] == '@' ? 0 : 1));
    char shown[sizeof un.sun_path + 1];
    snprintf(shown, sizeof shown, "%s", path);
    /* Children (fork, prefork) must not speak for the service. */
    unsetenv("NOTIFY_SOCKET");
    if (!ok) {
        cli_error("serve", "NOTIFY_SOCKET '%s' is neither a path nor @name; not "
                  "notifying", shown);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    /* Connected now, while the process may still be root (--user): the
     * right to send is checked at connect. */
    if (fd < 0 || connect(fd, (struct sockaddr *)&un, salen) != 0) {
        cli_error("serve", "NOTIFY_SOCKET %s: %s; not notifying", shown, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    notify_fd = fd;
    return 1;
}

void notify_send(const char *msg)
{
    if (notify_fd < 0)
        return;
    int e = errno; /* from a signal handler: leave errno as it was */
    (void)!send(notify_fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT);
    errno = e;
}
