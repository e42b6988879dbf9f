/*
 * What the TLS tests share: the test certificates (made at test time by
 * tests/tls/make-certs.sh, nothing secret committed), and other TLS
 * programs (openssl s_server / s_client, ncat, socat) run as peers in the
 * background, each in its own process group under `timeout`, killed by
 * harness_teardown() like a server.
 */
#ifndef IOPLEX_TEST_TLS_PEERS_H
#define IOPLEX_TEST_TLS_PEERS_H

#include <stddef.h>
#include <sys/types.h>

#include "harness_tls.h" /* the test certificates: tls_certs(), tls_cert() */

/* 1 if `name` runs from $PATH. */
int tls_have(const char *name);

/* Start `sh -c cmd` in the background (stdin /dev/null unless cmd says
 * otherwise; stdout and stderr into files of the temporary directory).
 * Returns its pid; the test fails if it cannot be started. */
pid_t tls_peer_start(const char *cmd);
/* Wait (bounded) for it to exit by itself: its status as the harness
 * gives it, or -1 if it had to be killed at the timeout. */
int tls_peer_wait(pid_t pid, int timeout_ms);
/* What it wrote on stderr so far (NUL-terminated, static). */
const char *tls_peer_stderr(pid_t pid);

/*
 * Run `sh -c "CMD < FIFO > FILE"`: data is written into its stdin (a
 * FIFO, kept open) while it runs, and stdin is closed only once `want`
 * bytes have come out (or the timeout): a client that ends the session
 * at the end of its stdin (s_client) has had its answer by then. Its
 * stdout into out (at most cap, *outlen); its exit status as
 * tls_peer_wait() gives it.
 */
int tls_pipe_through(const char *cmd, const char *data, size_t len, char *out, size_t cap,
                     size_t *outlen, size_t want, int timeout_ms);

/* 1 once something listens on 127.0.0.1:port (read from /proc/net/tcp,
 * so a one-connection peer's accept is not spent), 0 at the timeout. */
int tls_wait_listening(unsigned port, int timeout_ms);

/* A file of len random bytes in the temporary directory; its path. */
const char *tls_random_file(const char *stem, char *data, size_t len, unsigned *seed);
/* The whole file into buf (at most cap): its length, or -1. */
ssize_t tls_read_file(const char *path, char *buf, size_t cap);

#endif
