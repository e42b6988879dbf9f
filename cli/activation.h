/*
 * serve's sockets made by another process: systemd's socket activation
 * (sd_listen_fds(3): LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES; descriptors
 * 3...) and inetd (--inetd: standard input), and the readiness protocol
 * (sd_notify(3): NOTIFY_SOCKET), written by hand (notify.c).
 */
#ifndef IOPLEX_CLI_ACTIVATION_H
#define IOPLEX_CLI_ACTIVATION_H

#include "ioplex.h"

#define ACTIVATION_MAX 64     /* what one server takes (src/net/listeners.c) */
#define ACTIVATION_NAME_MAX 256 /* systemd's FileDescriptorName= is at most 255 */

struct activation {
    unsigned n;
    int inetd;                /* the one socket is inetd's (or Accept=yes) */
    int fds[ACTIVATION_MAX];
    char names[ACTIVATION_MAX][ACTIVATION_NAME_MAX];
    struct iop_addr addrs[ACTIVATION_MAX];
};

/* The sockets systemd passed this process, if LISTEN_PID names it; the
 * variables are unset in any case, so that children do not take them for
 * theirs (sd_listen_fds(1) does the same). A lone connected stream socket
 * is Accept=yes: served as inetd's. Returns 0 (none), 1, or -1 after a
 * one-line error (a usage error: exit 2). */
int activation_from_env(struct activation *a);
/* --inetd: the socket on standard input. 1, or -1 after a one-line error. */
int activation_from_stdin(struct activation *a);
/* Check the sockets against what the command line asks (dgram: -u;
 * family: -4/-6; an address or -U is refused: the sockets are given) and
 * fill cfg. 0, or -1 after a one-line error. */
int activation_configure(struct activation *a, struct iop_server_config *cfg,
                         int dgram, int family, int has_address);
/* Print the sockets served, one "ioplex serve: SVC on ADDR (model M)" line
 * each (the harness and people read it), after a line naming them. */
void activation_describe(const struct activation *a, const char *service,
                         const char *model);
/* inetd passes the socket as standard output and error too: a line meant
 * for one that is the socket goes to syslog instead (as inetd's own
 * services log). 1 if descriptor fd is the socket. */
int activation_is_socket(const struct activation *a, int fd);
void activation_syslog(enum iop_log level, const char *line);

/* sd_notify(3) (notify.c): NOTIFY_SOCKET read and unset, and a socket
 * connected to it, at start (before --user drops privileges). 0 if none
 * is set, 1 if ready, -1 after a one-line warning (serving goes on). */
int notify_open(void);
/* Send one message ("READY=1"); nothing if none. Async-signal-safe. */
void notify_send(const char *msg);

#endif
