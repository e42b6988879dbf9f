/*
 * The integration-test harness: start `ioplex serve` as a child process,
 * learn the address it printed, talk to it over our own sockets, stop it.
 *
 * Rules every function keeps:
 *   - Every wait is bounded (poll() with a timeout); nothing can hang.
 *   - Only processes the harness started are signalled, by PID (and the
 *     process group each server is put in, so a fork server's children
 *     go too).
 *   - Ports are always 0: the real address is read from the server's
 *     "ioplex serve: <service> on <address> (model <model>)" line. Hence
 *     never pass -q to server_start().
 *   - Unix sockets live in one mkdtemp() directory per test process under
 *     /tmp (harness_tmp_path()), removed at exit.
 *
 * Tests use cmocka. Assertions longjmp out of a test, so a test must not
 * rely on its own cleanup: give every test (or the group) the teardown
 * harness_teardown(), which kills every server still running and closes
 * every client socket still registered. An atexit() handler does the same
 * for whatever is left when the process ends.
 *
 * SIGPIPE is ignored in the test process (a write to a closed socket
 * returns EPIPE instead of killing the test); servers and commands started
 * by the harness get the default disposition back before exec.
 *
 * The parts, one file each: harness_tool.c (the tool, its services),
 * harness_server.c (a server's start and end), harness_output.c (what it
 * wrote), harness_transport.c (transports, the address it prints),
 * harness_client.c (client sockets), harness_io.c (I/O on them),
 * harness_cmd.c (run_cmd()), harness_proc.c (what the harness started,
 * the temporary directory, the teardown), harness_support.c (the clock,
 * the random numbers); harness_private.h is what they share.
 */
#ifndef IOPLEX_TEST_HARNESS_H
#define IOPLEX_TEST_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* What /proc says of a server's processes (count_children(), count_fds(),
 * count_threads(), ...). */
#include "procfs.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Default bounds (milliseconds). */
#define HARNESS_START_TIMEOUT_MS 10000 /* server's address line */
#define HARNESS_STOP_TIMEOUT_MS 10000  /* exit after SIGTERM */
#define HARNESS_IO_TIMEOUT_MS 10000    /* a reply the test expects */

/* ---- the tool ---------------------------------------------------------- */

/* Path of the ioplex binary (compiled in; $IOPLEX_BIN overrides). */
const char *ioplex_bin(void);

/* The model named on the command line of a model_*.c test (argv[1]);
 * prints usage and exits 2 if missing. */
const char *harness_model(int argc, char **argv);

/* 1 for the event-loop models (one loop per -w worker). */
int harness_is_event_model(const char *model);

/* The chargen stream (RFC 864) at byte pos of a connection: line k,
 * character i is ' ' + (k + i) % 95, 72 of them, then "\r\n". */
char chargen_at(size_t pos);

/* 1 if a socket can be bound to ::1 on this machine. */
int have_ipv6_loopback(void);

/* ---- servers ----------------------------------------------------------- */

enum server_transport {
    SERVER_TCP = 1,
    SERVER_UDP,
    SERVER_UNIX,      /* Unix-domain stream */
    SERVER_UNIXGRAM,  /* Unix-domain datagram */
};

struct server {
    pid_t pid;              /* also its process group */
    int out_fd, err_fd;     /* the server's stdout and stderr (read ends) */
    char address[300];      /* as printed: "tcp://127.0.0.1:41234" */
    char service[32];       /* as printed */
    char model[32];         /* as printed */
    enum server_transport transport;
    int family;             /* AF_INET, AF_INET6 or AF_UNIX */
    char host[64];          /* IP: "127.0.0.1", "::1" (no brackets) */
    unsigned port;          /* IP: the real port */
    char path[108];         /* Unix: the socket path */
    /* Everything read so far from stdout and stderr, NUL-terminated
     * (kept after the server exits). Should stdout outgrow out[], its
     * oldest half is dropped (out_dropped counts the bytes). */
    char out[1 << 17];
    size_t out_len, out_dropped;
    char err[1 << 15];
    size_t err_len;
    /* server_watch_stderr(): a needle counted as stderr streams in, so a
     * line is seen even once it has been pushed out of err[]. */
    char watch[128];
    int watched;
    int exited;             /* reaped: status is valid */
    int status;             /* exit code, 128+N for signal N, -1 killed by us */
    int leftovers;          /* processes of its group outlived it (killed) */
};

/*
 * Start `ioplex serve ARGS...` (args: what follows "serve", NULL-terminated,
 * e.g. {"-m", "fork", "-S", "echo", "127.0.0.1", "0", NULL}). stdin is
 * /dev/null. Waits (bounded) for the address line on its stderr and fills
 * *s. Returns 0, or -1 after printing why on stderr (with what the server
 * wrote) and making sure the process is gone.
 */
int server_start(struct server *s, const char *const args[]);
/* The same with the arguments listed inline, NULL-terminated. */
int server_startl(struct server *s, ...);
/* Start a whole command line (argv[0] looked up in $PATH), as
 * server_start() does, without waiting for anything: a wrapper that runs
 * `ioplex serve` later (systemd-socket-activate waits for the first
 * client), or inetd. The harness stops and cleans it up the same way. */
int server_start_cmd(struct server *s, const char *const argv[]);
/* server_start()'s wait for the address line, bounded: 0, or -1 after
 * saying why (the process is gone then). */
int server_wait_address(struct server *s, int timeout_ms);

/*
 * The transports the tests name, and how `ioplex serve` is told to use
 * them (address always on port 0 or a fresh harness_tmp_path()):
 *   "tcp4"      127.0.0.1 0          "udp4"      -u 127.0.0.1 0
 *   "tcp6"      -6 ::1 0             "udp6"      -u -6 ::1 0
 *   "unix"      -U PATH              "unixgram"  -u -U PATH
 */
struct test_transport {
    const char *name;
    enum server_transport kind;
    int ipv6; /* needs have_ipv6_loopback() */
};
/* All of them, ended by an entry with a NULL name. */
extern const struct test_transport harness_transports[];
const struct test_transport *harness_transport(const char *name);
int transport_is_dgram(const struct test_transport *t);

/*
 * Start `ioplex serve [-m MODEL] [-S SERVICE] EXTRA... <address args>` on
 * the named transport. model, service and extra may be NULL.
 */
int server_start_on(struct server *s, const char *model, const char *transport,
                    const char *service, const char *const extra[]);

/* What the library says of a model (iop_models()): 1 if it serves datagram
 * transports, 0 if not, -1 if no such model is compiled in. */
int model_serves_datagrams(const char *model);

/* Read whatever the server wrote so far (never waits). Returns 0, or 1 if
 * both its stdout and stderr have reached end-of-file. */
int server_pump(struct server *s);

/* Wait until `needle` appears in the server's accumulated stdout.
 * Returns 1 when seen, 0 on timeout or if the server's output ended. */
int server_wait_output(struct server *s, const char *needle, int timeout_ms);
/* The same on its stderr. */
int server_wait_stderr(struct server *s, const char *needle, int timeout_ms);
/* Occurrences of `needle` in the stdout read so far (non-overlapping). */
int server_output_count(struct server *s, const char *needle);
/* The same in its stderr. */
int server_stderr_count(struct server *s, const char *needle);
/* Count `needle` in stderr from now on (what err[] holds of it counts
 * too), however much the server says meanwhile; server_watched() pumps
 * and returns the count. One needle per server. */
void server_watch_stderr(struct server *s, const char *needle);
int server_watched(struct server *s);

/* Is the server process still running (not exited)? Reaps it if it has
 * exited, storing its status. */
int server_running(struct server *s);

/*
 * Wait (bounded) for the server to exit by itself (--once). Returns its
 * status: the exit code, or 128+N if killed by signal N; -1 if it is still
 * running at the timeout (it is left running).
 */
int server_wait_exit(struct server *s, int timeout_ms);

/*
 * SIGTERM, wait up to timeout_ms (<= 0: HARNESS_STOP_TIMEOUT_MS) for exit,
 * then SIGKILL (to its process group too). Drains its output into s->out
 * and s->err, closes the pipes. Returns the status as server_wait_exit()
 * does, or -1 if it had to be killed. Calling it again returns the stored
 * status.
 */
int server_stop(struct server *s, int timeout_ms);
/* SIGKILL at once (process group too), reap, close the pipes. */
void server_kill(struct server *s);
/* In a cmocka test: server_stop() (SIGTERM), and fail the test, showing
 * the server's output, unless it exited 0 with no process of its group
 * left over. */
void server_stop_clean(struct server *s);

/* Print the server's command line, address, stdout and stderr on stderr
 * (for a failing test's log). */
void server_dump(struct server *s);

/* ---- clients ----------------------------------------------------------- */

/* A loopback port nothing is bound to now (SOCK_STREAM or SOCK_DGRAM):
 * bound to port 0 and let go, for a peer that must be told its port
 * before it runs (HAProxy, inetd, s_server) or for one nothing listens
 * on. Another process could take it meanwhile; on a test machine's
 * loopback that is rare, and it shows as a failure to bind, not a wrong
 * result. 0 (after printing why) if none can be had. */
unsigned harness_free_port(int type);

/*
 * A socket connected to the server's address: TCP (v4 or v6, with
 * TCP_NODELAY), Unix stream, or a connected UDP / Unix datagram socket
 * (the latter bound to an autobind address first, so the server can
 * answer). Blocking, CLOEXEC; the connect itself is bounded (5 s).
 * Registered, so harness_teardown() closes it; close it with
 * client_close(). Returns the descriptor, or -1 after printing why.
 */
int client_connect(const struct server *s);
/* Close a client socket and unregister it. Ignores fd < 0. */
void client_close(int fd);

/*
 * Write all of buf in pieces of random size (1 .. max(1, len/8) capped at
 * 4096, smaller pieces being likelier) with an occasional 1 ms pause
 * between them. Handles partial writes and non-blocking sockets (waits
 * for POLLOUT, bounded by HARNESS_IO_TIMEOUT_MS per piece). Returns 0, or
 * -1 with errno set.
 */
int send_fragmented(int fd, const void *buf, size_t len, unsigned *seed);
/* Write all of buf at once (looping over partial writes, bounded).
 * Returns 0 or -1. */
int send_all(int fd, const void *buf, size_t len);

/* Read exactly len bytes, unless end-of-file or the timeout (for the
 * whole call) comes first. Returns the bytes read (< len on EOF), or -1
 * on timeout / error (errno ETIMEDOUT / the error); on timeout the bytes
 * read so far are still in buf. */
ssize_t recv_exact(int fd, void *buf, size_t len, int timeout_ms);
/* Read until end-of-file. Returns the bytes read (buf NUL-terminated if
 * room), or -1 on timeout (ETIMEDOUT), error, or more than cap bytes
 * (EMSGSIZE). */
ssize_t recv_all(int fd, char *buf, size_t cap, int timeout_ms);
/* Read one line (through "\n") into buf, NUL-terminated. Reads byte by
 * byte, so nothing after the line is consumed. Returns its length with
 * the "\n", 0 at EOF before any byte, -1 on timeout / error / overlong. */
ssize_t recv_line(int fd, char *buf, size_t cap, int timeout_ms);
/* Receive one datagram. Returns its length, or -1 on timeout / error. */
ssize_t recv_dgram(int fd, void *buf, size_t cap, int timeout_ms);

/*
 * A buffered line reader for a stream socket: reads as much as there is,
 * and what follows a line stays in buf for the next. Set off = len = 0
 * for each new connection; off == len when nothing is buffered.
 */
struct line_reader {
    size_t off, len; /* buf[off .. len): received, not yet returned */
    char buf[65536];
};
/* The next line from fd ("\n" stripped, NUL-terminated in out) if one is
 * complete within timeout_ms (0: only what has arrived): its length; -1
 * on timeout, -2 at end of stream or error, -3 for a line too long (for
 * cap, or for buf). Never blocks longer, on a blocking socket too. */
ssize_t line_reader_next(struct line_reader *r, int fd, char *out, size_t cap,
                         int timeout_ms);

/* 1 if fd becomes readable (data or EOF) within timeout_ms, 0 if not,
 * -1 on error. Consumes nothing. */
int wait_readable(int fd, int timeout_ms);
/* 1 if the next thing on fd is end-of-file (within timeout_ms), 0 if data
 * arrived instead (one byte consumed), -1 on timeout or error (a
 * connection reset counts as an error). */
int expect_eof(int fd, int timeout_ms);

/*
 * A full-duplex exchange: write all of out in random fragments (as
 * send_fragmented) while reading whatever comes back, then shut down the
 * writing side and read until end-of-file. Neither side can deadlock the
 * other on full buffers. in/incap: where the reply goes (more than incap
 * bytes is an error). Returns the reply's length, or -1 on timeout
 * (timeout_ms for the whole exchange) or error.
 */
ssize_t stream_exchange(int fd, const void *out, size_t outlen, char *in,
                        size_t incap, unsigned *seed, int timeout_ms);

/* ---- the echo and ack services ----------------------------------------- */

/* Send line (at most 128 bytes) to an echo server and read as many bytes
 * back. 1 if the same came back within timeout_ms, else 0. */
int echo_line(int fd, const char *line, int timeout_ms);
/* Read an ack server's answer through end-of-file: 1 if it is
 * "I got your message\n" (within timeout_ms), else 0. */
int recv_ack(int fd, int timeout_ms);
/* A new client sends line to an ack server and gets the answer
 * (recv_ack(), HARNESS_IO_TIMEOUT_MS); closed after. 1 if it did. */
int ack_exchange(struct server *s, const char *line);

/* ---- commands ---------------------------------------------------------- */

/*
 * Run argv (argv[0] is a path, or a name looked up in $PATH) with stdin a
 * pipe fed stdin_data (then closed; NULL: closed at once), capturing
 * stdout and stderr (each NUL-terminated if room; the excess over
 * outcap / errcap is read and dropped; out / err may be NULL). Kills it
 * after timeout_ms. Returns its exit code, 128+N if a signal N ended it,
 * or -1 if it had to be killed at the timeout or could not be run.
 */
int run_cmd(const char *const argv[], const char *stdin_data, size_t stdin_len,
            char *out, size_t outcap, size_t *outlen, char *err,
            size_t errcap, int timeout_ms);

/* ---- test support ------------------------------------------------------ */

/* cmocka teardown (per test or per group): kill every server still
 * running, close every registered client. Always returns 0. */
int harness_teardown(void **state);

/* This process's temporary directory (created on first use, removed with
 * its contents at exit). NULL if it cannot be created. */
const char *harness_tmpdir(void);
/* A fresh, unused path in it ("<dir>/<stem>.<n>.sock"). Returns buf, or
 * NULL if it does not fit. */
char *harness_tmp_path(char *buf, size_t cap, const char *stem);

/* A seed for the random helpers: $IOPLEX_TEST_SEED if set, else from the
 * clock; printed on stderr once, so a failure can be replayed. */
unsigned harness_seed(void);
/* xorshift32: the next pseudo-random number; *seed must not be 0 (0 is
 * replaced by a constant). */
uint32_t rng_next(unsigned *seed);
void fill_random(void *buf, size_t len, unsigned *seed);

/* Milliseconds of a monotonic clock. */
long long now_ms(void);
void sleep_ms(int ms);

/*
 * In a test: if cond is false, show the server's command line and output
 * (server_dump()), then fail with "file:line: cond". fail_msg() is
 * cmocka's; the macro expands where it is used, after <cmocka.h>.
 */
#define CHECK(s, cond)                                                   \
    do {                                                                 \
        if (!(cond)) {                                                   \
            server_dump(s);                                              \
            fail_msg("%s:%d: %s", __FILE__, __LINE__, #cond);            \
        }                                                                \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
