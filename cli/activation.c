/* serve's sockets made by another process: systemd, inetd (activation.h). */
#define _GNU_SOURCE
#include "activation.h"
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#define SD_LISTEN_FDS_START 3

/* A decimal number from 1 to max, whole string; else -1. */
static long env_number(const char *v, long max)
{
    if (!v || !*v || strspn(v, "0123456789") != strlen(v) || strlen(v) > 9)
        return -1;
    long n = strtol(v, NULL, 10);
    return n >= 1 && n <= max ? n : -1;
}

/* What one passed descriptor is. */
static int inspect(struct activation *a, unsigned i, const char *what)
{
    int fd = a->fds[i];
    int listening = 0;
    if (fcntl(fd, F_GETFD) < 0) {
        cli_error("serve", "%s: descriptor %d ('%s') is not open", what, fd, a->names[i]);
        return -1;
    }
    int r = iop_socket_address(fd, &a->addrs[i], &listening);
    if (r != 0) {
        cli_error("serve", "%s: descriptor %d ('%s') is %s", what, fd, a->names[i],
                  r == -ENOTSOCK ? "not a socket" : "not a TCP, UDP or Unix socket");
        return -1;
    }
    int stream = iop_transport_is_stream(a->addrs[i].transport);
    if (stream && !listening && !a->inetd && a->n > 1) {
        cli_error("serve", "%s: descriptor %d ('%s') is a connection, not a listening "
                  "socket (Accept=yes passes one alone)", what, fd, a->names[i]);
        return -1;
    }
    if (stream && listening && a->inetd) {
        cli_error("serve", "%s: descriptor %d is a listening socket, not the connection "
                  "inetd passes with nowait (for a listener, run serve without --inetd "
                  "under socket activation)", what, fd);
        return -1;
    }
    if (stream && !listening) /* Accept=yes without StandardInput=socket */
        a->inetd = 1;
    return 0;
}

int activation_from_env(struct activation *a)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    const char *names = getenv("LISTEN_FDNAMES");
    long lp = env_number(pid, 0x7fffffffL), n = env_number(fds, ACTIVATION_MAX);
    char fdnames[ACTIVATION_MAX * ACTIVATION_NAME_MAX] = "";
    if (names)
        snprintf(fdnames, sizeof fdnames, "%s", names);
    int given = pid || fds;
    /* Unset whatever happens: they are this process's or no one's. */
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (!given || lp != (long)getpid())
        return 0; /* meant for another process (sd_listen_fds() returns 0) */
    if (n < 0) {
        cli_error("serve", "socket activation: LISTEN_FDS wants a number from 1 to %d, "
                  "not '%s'", ACTIVATION_MAX, fds ? fds : "");
        return -1;
    }
    memset(a, 0, sizeof *a);
    a->n = (unsigned)n;
    char *save = NULL, *name = fdnames[0] ? strtok_r(fdnames, ":", &save) : NULL;
    for (unsigned i = 0; i < a->n; i++) {
        a->fds[i] = SD_LISTEN_FDS_START + (int)i;
        /* "unknown" is the name systemd gives one not named. */
        snprintf(a->names[i], sizeof a->names[i], "%s", name ? name : "unknown");
        name = name ? strtok_r(NULL, ":", &save) : NULL;
        /* Not for the processes this one starts (sd_listen_fds() does it). */
        int fl = fcntl(a->fds[i], F_GETFD);
        if (fl >= 0)
            fcntl(a->fds[i], F_SETFD, fl | FD_CLOEXEC);
    }
    for (unsigned i = 0; i < a->n; i++)
        if (inspect(a, i, "socket activation") != 0)
            return -1;
    return 1;
}

int activation_from_stdin(struct activation *a)
{
    memset(a, 0, sizeof *a);
    a->n = 1;
    a->inetd = 1;
    a->fds[0] = STDIN_FILENO;
    snprintf(a->names[0], sizeof a->names[0], "stdin");
    return inspect(a, 0, "--inetd") == 0 ? 1 : -1;
}

int activation_configure(struct activation *a, struct iop_server_config *cfg,
                         int dgram, int family, int has_address)
{
    const char *how = a->inetd && a->fds[0] == STDIN_FILENO ? "--inetd"
                      : "socket activation";
    if (has_address) {
        cli_error("serve", "%s: the socket%s passed, so give no address (and no -U)",
                  how, a->n > 1 ? "s are" : " is");
        return -1;
    }
    for (unsigned i = 0; i < a->n; i++) {
        const struct iop_addr *ad = &a->addrs[i];
        char where[IOP_HOST_MAX + IOP_PATH_MAX + 32];
        iop_addr_format(ad, where, sizeof where);
        int stream = iop_transport_is_stream(ad->transport);
        if (dgram && stream) {
            cli_error("serve", "%s: descriptor %d ('%s') is a stream socket (%s), but -u "
                      "asks for datagrams", how, a->fds[i], a->names[i], where);
            return -1;
        }
        if (i > 0 && stream != iop_transport_is_stream(a->addrs[0].transport)) {
            cli_error("serve", "%s: descriptor %d ('%s') is a %s socket but descriptor %d "
                      "('%s') a %s one: a server serves streams or datagrams, not both",
                      how, a->fds[i], a->names[i], stream ? "stream" : "datagram",
                      a->fds[0], a->names[0], stream ? "datagram" : "stream");
            return -1;
        }
        if (family != AF_UNSPEC && ad->family != family && !iop_transport_is_unix(ad->transport)) {
            cli_error("serve", "%s: descriptor %d ('%s') is %s (%s), but %s asks for %s",
                      how, a->fds[i], a->names[i], ad->family == AF_INET ? "IPv4" : "IPv6",
                      where, family == AF_INET ? "-4" : "-6",
                      family == AF_INET ? "IPv4" : "IPv6");
            return -1;
        }
    }
    cfg->addr = a->addrs[0];
    cfg->listen_fds = a->fds;
    cfg->n_listen_fds = a->n;
    cfg->inetd = a->inetd;
    if (a->inetd && !cfg->model)
        cfg->model = "iterative"; /* one connection, or one socket until idle */
    return 0;
}

void activation_describe(const struct activation *a, const char *service,
                         const char *model)
{
    char list[1024] = "";
    size_t off = 0;
    for (unsigned i = 0; i < a->n && off < sizeof list; i++)
        off += (size_t)snprintf(list + off, sizeof list - off, "%s%d '%s'", i ? ", " : "",
                                a->fds[i], a->names[i]);
    fprintf(stderr, "ioplex serve: %s: %u socket%s passed (%s)\n",
            a->inetd && a->fds[0] == STDIN_FILENO ? "inetd" : "socket activation", a->n,
            a->n > 1 ? "s" : "", list);
    for (unsigned i = 0; i < a->n; i++) {
        char where[IOP_HOST_MAX + IOP_PATH_MAX + 32];
        iop_addr_format(&a->addrs[i], where, sizeof where);
        fprintf(stderr, "ioplex serve: %s on %s (model %s)\n", service, where, model);
    }
}

int activation_is_socket(const struct activation *a, int fd)
{
    if (!a->inetd || a->n != 1)
        return 0;
    struct stat s0, s1;
    return fstat(a->fds[0], &s0) == 0 && fstat(fd, &s1) == 0 && s0.st_dev == s1.st_dev &&
           s0.st_ino == s1.st_ino;
}

void activation_syslog(enum iop_log level, const char *line)
{
    static int opened;
    if (!opened) {
        openlog("ioplex", LOG_PID | LOG_NDELAY, LOG_DAEMON);
        opened = 1;
    }
    int prio = level == IOP_LOG_ERROR ? LOG_ERR : level == IOP_LOG_DEBUG ? LOG_DEBUG
               : LOG_INFO;
    syslog(prio, "%s", line);
}
