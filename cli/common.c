#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static char last_error[1024];

void cli_error(const char *cmd, const char *fmt, ...)
{
    va_list ap, copy;
    va_start(ap, fmt);
    va_copy(copy, ap);
    fprintf(stderr, "ioplex %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    vsnprintf(last_error, sizeof last_error, fmt, copy);
    va_end(copy);
    va_end(ap);
}

const char *cli_last_error(void)
{
    return last_error;
}

int cli_exit_code(int err)
{
    switch (err) {
    case 0:
        return EXIT_OK;
    case IOP_EADDR: case -ENAMETOOLONG: case IOP_EMODEL: case IOP_ESERVICE:
    case IOP_EUNFIT: case -EINVAL:
        return EXIT_USAGE;
    case IOP_ERESOLVE: case IOP_ERESOLVE_AGAIN:
        return EXIT_RESOLVE;
    case -ECONNREFUSED: case -ENOENT:
        return EXIT_REFUSED;
    case -ETIMEDOUT:
        return EXIT_TIMEOUT;
    case -EADDRINUSE: case -EACCES: case -EADDRNOTAVAIL: case -EPERM:
        return EXIT_BIND;
    }
    return EXIT_ERROR;
}

void cli_option_error(const char *cmd, int c, char **argv)
{
    const char *arg = optind > 0 ? argv[optind - 1] : "?";
    if (c == ':')
        cli_error(cmd, "option '%s' needs a value (try ioplex %s --help)", arg, cmd);
    else if (optopt > 0 && optopt < 128)
        cli_error(cmd, "unknown option '-%c' (try ioplex %s --help)", optopt, cmd);
    else
        cli_error(cmd, "unknown option '%s' (try ioplex %s --help)", arg, cmd);
}

static int report_addr_error(const char *cmd, int r, const char *what)
{
    if (r == -ENAMETOOLONG)
        cli_error(cmd, "Unix socket path too long (at most %d bytes): %s",
                  IOP_PATH_MAX - 1, what);
    else
        cli_error(cmd, "bad address '%s' (expected [HOST] PORT, HOST:PORT, "
                  "[IPv6]:PORT, tcp://, udp://, unix:///PATH)", what);
    return r;
}

int cli_parse_address(const char *cmd, struct iop_addr *a, enum iop_transport t,
                      int family, const char *unix_path, int argc, char **argv,
                      int server)
{
    int r;
    if (unix_path) {
        if (argc != 0) {
            cli_error(cmd, "-U PATH takes no HOST or PORT (got '%s')", argv[0]);
            return -EINVAL;
        }
        r = iop_addr_set_unix(a, t == IOP_UDP ? IOP_UNIX_DGRAM : IOP_UNIX, unix_path);
        return r ? report_addr_error(cmd, r, unix_path) : 0;
    }
    if (argc == 2) {
        r = iop_addr_set_host(a, t, argv[0], argv[1]);
        if (r) {
            char both[IOP_HOST_MAX + IOP_PORT_MAX + 2];
            snprintf(both, sizeof both, "%s %s", argv[0], argv[1]);
            return report_addr_error(cmd, r, both);
        }
    } else if (argc == 1) {
        r = iop_addr_parse(a, argv[0], t);
        if (r)
            return report_addr_error(cmd, r, argv[0]);
        if (!server && !iop_transport_is_unix(a->transport) && !a->host[0]) {
            cli_error(cmd, "missing HOST (usage: ioplex %s HOST PORT)", cmd);
            return -EINVAL;
        }
    } else {
        cli_error(cmd, argc == 0 ? "missing address (try --help)"
                                 : "too many arguments (try --help)");
        return -EINVAL;
    }
    if (family != AF_UNSPEC && !iop_transport_is_unix(a->transport)) {
        if (a->family != AF_UNSPEC && a->family != family) {
            cli_error(cmd, "-%d conflicts with the address given", family == AF_INET ? 4 : 6);
            return -EINVAL;
        }
        a->family = family;
    }
    return 0;
}
