/* Client sockets: connected to a server's address (bounded), registered
 * so the teardown closes them. */
#include "harness_private.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CONNECT_TIMEOUT_MS 5000

int harness__set_nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -1;
    int nfl = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
    if (nfl != fl && fcntl(fd, F_SETFL, nfl) < 0)
        return -1;
    return fl & O_NONBLOCK ? 1 : 0;
}

int client_connect(const struct server *s)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    memset(&ss, 0, sizeof ss);
    int dgram = s->transport == SERVER_UDP || s->transport == SERVER_UNIXGRAM;
    if (s->family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)s->port);
        inet_pton(AF_INET, s->host, &a->sin_addr);
        len = sizeof *a;
    } else if (s->family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)s->port);
        inet_pton(AF_INET6, s->host, &a->sin6_addr);
        len = sizeof *a;
    } else if (s->family == AF_UNIX) {
        struct sockaddr_un *a = (struct sockaddr_un *)&ss;
        a->sun_family = AF_UNIX;
        snprintf(a->sun_path, sizeof a->sun_path, "%s", s->path);
        len = (socklen_t)sizeof *a;
    } else {
        fprintf(stderr, "harness: client_connect: server has no address\n");
        return -1;
    }
    int fd = socket(s->family, (dgram ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "harness: socket: %s\n", strerror(errno));
        return -1;
    }
    if (s->transport == SERVER_UNIXGRAM) {
        sa_family_t fam = AF_UNIX; /* autobind: an abstract name */
        if (bind(fd, (struct sockaddr *)&fam, sizeof fam) != 0) {
            fprintf(stderr, "harness: autobind: %s\n", strerror(errno));
            close(fd);
            return -1;
        }
    }
    if (s->transport == SERVER_TCP) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    harness__set_nonblock(fd, 1);
    int r = connect(fd, (struct sockaddr *)&ss, len);
    if (r != 0 && (errno == EINPROGRESS || errno == EAGAIN)) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        r = harness__poll_until(&p, 1, now_ms() + CONNECT_TIMEOUT_MS);
        if (r == 0) {
            errno = ETIMEDOUT;
            r = -1;
        } else if (r > 0) {
            int e = 0;
            socklen_t el = sizeof e;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el);
            errno = e;
            r = e ? -1 : 0;
        }
    }
    if (r != 0) {
        fprintf(stderr, "harness: connect to %s: %s\n", s->address, strerror(errno));
        close(fd);
        return -1;
    }
    harness__set_nonblock(fd, 0);
    harness__reg_client_add(fd);
    return fd;
}

void client_close(int fd)
{
    if (fd < 0)
        return;
    harness__reg_client_remove(fd);
    close(fd);
}

unsigned harness_free_port(int type)
{
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof in;
    unsigned port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&in, sizeof in) == 0 &&
        getsockname(fd, (struct sockaddr *)&in, &len) == 0)
        port = ntohs(in.sin_port);
    if (port == 0)
        fprintf(stderr, "harness: no free loopback port: %s\n", strerror(errno));
    if (fd >= 0)
        close(fd);
    return port;
}
