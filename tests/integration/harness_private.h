/*
 * What the harness's own files share and the tests do not see: the
 * registries of what it started (harness_proc.c), the bounded waits
 * (harness_support.c), and a few steps of a server's life that two files
 * take. Tests include harness.h only.
 */
#ifndef IOPLEX_TEST_HARNESS_PRIVATE_H
#define IOPLEX_TEST_HARNESS_PRIVATE_H

#include "harness.h"

#include <poll.h>
#include <sys/types.h>

/* ---- time (harness_support.c) ---------------------------------------------- */

/* Milliseconds left until deadline, at least 0. */
int harness__left_ms(long long deadline);
/* poll() that retries on EINTR within the same bound. */
int harness__poll_until(struct pollfd *p, nfds_t n, long long deadline);

/* ---- what the harness started (harness_proc.c) ----------------------------- */

/* Servers and commands: killed (with their group) by harness_teardown()
 * and at exit; out_fd / err_fd (-1: none) closed then. */
void harness__reg_server_add(pid_t pid, int out_fd, int err_fd);
void harness__reg_server_remove(pid_t pid);
/* The server's stdout (is_out) or stderr pipe is closed already. */
void harness__reg_server_closed_fd(pid_t pid, int is_out);
/* Client sockets: closed by harness_teardown() and at exit. remove
 * returns 1 if fd was registered. */
void harness__reg_client_add(int fd);
int harness__reg_client_remove(int fd);

/* Kill a process we started and its group, and reap it (bounded). Returns
 * the wait status, or -1 if it could not be reaped. */
int harness__kill_and_reap(pid_t pid);
/* In a child before exec: default signal dispositions, nothing blocked,
 * only descriptors 0-2 open, its own process group, killed if the test
 * process dies. */
void harness__child_prepare(void);
/* A wait status as the harness reports it: the exit code, 128+N for
 * signal N, else -1. */
int harness__decode_status(int st);

/* ---- a server's output (harness_output.c) ---------------------------------- */

/* Wait for either of its pipes to have something, bounded by deadline and
 * by max_ms (< 0: no such bound). */
void harness__wait_pipes(struct server *s, long long deadline, int max_ms);

/* ---- the address a server prints (harness_transport.c) --------------------- */

/* Look for "ioplex serve: <svc> on <addr> (model <m>)" in the complete
 * lines of its stderr; fill s's address fields. 1 found, 0 not yet, -1
 * unparsable (said on stderr). */
int harness__find_address_line(struct server *s);

/* ---- sockets (harness_client.c) -------------------------------------------- */

/* O_NONBLOCK on or off. Returns whether it was on (1, 0), or -1. */
int harness__set_nonblock(int fd, int on);

#endif
