/*
 * The floor: a minimal hand-written epoll echo server, what any framework
 * is measured against. No framing, no callbacks, no abstraction: read
 * what is there, write it back, keep what the socket did not take and
 * wait for EPOLLOUT. One thread, level-triggered, TCP_NODELAY.
 *
 *   epoll_echo PORT [HOST]     (HOST defaults to 127.0.0.1)
 *
 * It stops on SIGINT/SIGTERM. It is a benchmark tool, not a server to
 * deploy: a peer that never reads makes it buffer without bound.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 16384
#define MAXEV 256

struct conn {
    int fd;
    char *pending; /* bytes the socket did not take yet */
    size_t len;
};

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static void drop(int ep, struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->pending);
    free(c);
}

/* Write buf; keep what did not fit. Returns -1 if the connection died. */
static int send_or_keep(int ep, struct conn *c, const char *buf, size_t n)
{
    ssize_t w = send(c->fd, buf, n, MSG_NOSIGNAL);
    if (w < 0 && errno != EAGAIN)
        return -1;
    size_t done = w < 0 ? 0 : (size_t)w;
    if (done == n)
        return 0;
    char *p = realloc(c->pending, c->len + n - done);
    if (!p)
        return -1;
    memcpy(p + c->len, buf + done, n - done);
    c->pending = p;
    c->len += n - done;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c}; /* stop reading until drained */
    return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static int flush_pending(int ep, struct conn *c)
{
    ssize_t w = send(c->fd, c->pending, c->len, MSG_NOSIGNAL);
    if (w < 0)
        return errno == EAGAIN ? 0 : -1;
    memmove(c->pending, c->pending + w, c->len - (size_t)w);
    c->len -= (size_t)w;
    if (c->len > 0)
        return 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: epoll_echo PORT [HOST]\n");
        return 2;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    if (inet_pton(AF_INET, argc > 2 ? argv[2] : "127.0.0.1", &sa.sin_addr) != 1) {
        fprintf(stderr, "epoll_echo: bad host\n");
        return 2;
    }
    struct sigaction act = {.sa_handler = on_signal};
    sigaction(SIGINT, &act, NULL);
    sigaction(SIGTERM, &act, NULL);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, SOMAXCONN) != 0) {
        perror("epoll_echo: listen");
        return 1;
    }
    socklen_t sl = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    fprintf(stderr, "epoll_echo: listening on 127.0.0.1:%u\n", ntohs(sa.sin_port));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    static char buf[BUF];
    struct epoll_event evs[MAXEV];
    while (!stop) {
        int n = epoll_wait(ep, evs, MAXEV, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) { /* the listener */
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    if (!c || (c->fd = fd, epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)) != 0) {
                        close(fd);
                        free(c);
                    }
                }
                continue;
            }
            if (evs[i].events & EPOLLOUT) {
                if (flush_pending(ep, c) != 0)
                    drop(ep, c);
                continue;
            }
            ssize_t r = recv(c->fd, buf, sizeof buf, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN) ||
                (r > 0 && send_or_keep(ep, c, buf, (size_t)r) != 0))
                drop(ep, c);
        }
    }
    return 0;
}
